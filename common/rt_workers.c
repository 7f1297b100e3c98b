#include "rt_workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rt_alloc.h"

struct rt_workers {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    void **ring;
    size_t capacity, head, count;
    bool stopping;
    int n_threads;
    pthread_t *threads;
    rt_workers_fn fn;
    rt_workers_discard_fn discard;
    void *arg;
};

static void *worker_main(void *p)
{
    rt_workers *w = p;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->nonempty, &w->lock);
        if (w->count == 0) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        void *item = w->ring[w->head];
        w->head = (w->head + 1) % w->capacity;
        w->count--;
        pthread_mutex_unlock(&w->lock);
        w->fn(w->arg, item);
    }
}

rt_status rt_workers_create(rt_workers **out, int threads, size_t queue_capacity, rt_workers_fn fn,
                            rt_workers_discard_fn discard, void *arg)
{
    rt_workers *w;

    if (threads < 1 || queue_capacity < 1 || !fn)
        return RT_ERR(RT_ERR_INVALID_ARG, "workers need threads, a queue and a function");
    w = rt_calloc(1, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->nonempty, NULL);
    w->ring = rt_calloc(queue_capacity, sizeof(void *));
    w->capacity = queue_capacity;
    w->fn = fn;
    w->discard = discard;
    w->arg = arg;
    w->threads = rt_calloc((size_t)threads, sizeof(pthread_t));
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            rt_workers_destroy(w);
            return RT_ERR(RT_ERR_INTERNAL, "pthread_create failed");
        }
        w->n_threads++;
    }
    *out = w;
    return RT_OK;
}

rt_status rt_workers_submit(rt_workers *w, void *item)
{
    pthread_mutex_lock(&w->lock);
    if (w->stopping || w->count == w->capacity) {
        pthread_mutex_unlock(&w->lock);
        return RT_ERR_LIMIT; /* the hot overload path: no error record */
    }
    w->ring[(w->head + w->count) % w->capacity] = item;
    w->count++;
    pthread_cond_signal(&w->nonempty);
    pthread_mutex_unlock(&w->lock);
    return RT_OK;
}

size_t rt_workers_queued(rt_workers *w)
{
    pthread_mutex_lock(&w->lock);
    size_t n = w->count;
    pthread_mutex_unlock(&w->lock);
    return n;
}

void rt_workers_destroy(rt_workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->nonempty);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    /* Threads drain the queue before exiting; anything left had no thread. */
    while (w->count > 0) {
        void *item = w->ring[w->head];
        w->head = (w->head + 1) % w->capacity;
        w->count--;
        if (w->discard)
            w->discard(w->arg, item);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->nonempty);
    free(w->ring);
    free(w->threads);
    free(w);
}
