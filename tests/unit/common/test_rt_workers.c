/*
 * rt_workers: every submitted item is handled exactly once by the pool,
 * a full queue answers RT_ERR_LIMIT at once (the caller says "overloaded"),
 * destroy finishes what is queued, and no more than N handlers ever run
 * at the same time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "rt_workers.h"

typedef struct item {
    atomic_int processed;
    atomic_int discarded;
    int value;
} item;

typedef struct pool_state {
    atomic_long sum;
    atomic_int processed, discarded;
    atomic_int active, max_active;
    int wait_for_active; /* handler waits until this many run at once */
    /* A gate that blocks handlers until opened. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool gate_closed;
    int entered;
} pool_state;

static void state_init(pool_state *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void state_fini(pool_state *s)
{
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}

static struct timespec deadline_in_ms(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void handle(void *arg, void *p)
{
    pool_state *s = arg;
    item *it = p;
    int now_active = atomic_fetch_add(&s->active, 1) + 1;
    int seen = atomic_load(&s->max_active);
    while (now_active > seen && !atomic_compare_exchange_weak(&s->max_active, &seen, now_active))
        ;

    pthread_mutex_lock(&s->lock);
    s->entered++;
    pthread_cond_broadcast(&s->cond);
    struct timespec until = deadline_in_ms(5000);
    while (s->gate_closed)
        pthread_cond_wait(&s->cond, &s->lock);
    while (s->wait_for_active && atomic_load(&s->max_active) < s->wait_for_active &&
           pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
        ;
    pthread_mutex_unlock(&s->lock);

    atomic_fetch_add(&it->processed, 1);
    atomic_fetch_add(&s->processed, 1);
    atomic_fetch_add(&s->sum, it->value);
    atomic_fetch_sub(&s->active, 1);
}

static void discard(void *arg, void *p)
{
    pool_state *s = arg;
    item *it = p;
    atomic_fetch_add(&it->discarded, 1);
    atomic_fetch_add(&s->discarded, 1);
}

static void open_gate(pool_state *s)
{
    pthread_mutex_lock(&s->lock);
    s->gate_closed = false;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void wait_entered(pool_state *s, int n)
{
    struct timespec until = deadline_in_ms(5000);
    pthread_mutex_lock(&s->lock);
    while (s->entered < n && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
        ;
    int entered = s->entered;
    pthread_mutex_unlock(&s->lock);
    assert_int_equal(entered, n);
}

static void test_create_refuses_bad_args(void **state)
{
    (void)state;
    rt_workers *w = (rt_workers *)(uintptr_t)0x1;
    pool_state s;
    state_init(&s);
    assert_int_equal(rt_workers_create(&w, 0, 8, handle, discard, &s), RT_ERR_INVALID_ARG);
    assert_int_equal(rt_workers_create(&w, -1, 8, handle, discard, &s), RT_ERR_INVALID_ARG);
    assert_int_equal(rt_workers_create(&w, 2, 0, handle, discard, &s), RT_ERR_INVALID_ARG);
    assert_int_equal(rt_workers_create(&w, 2, 8, NULL, discard, &s), RT_ERR_INVALID_ARG);
    assert_ptr_equal(w, (rt_workers *)(uintptr_t)0x1);
    rt_workers_destroy(NULL);
    state_fini(&s);
}

typedef struct producer {
    rt_workers *w;
    item *items;
    int n;
    int limit_answers;
} producer;

static void *produce(void *p)
{
    producer *pr = p;
    for (int i = 0; i < pr->n; i++) {
        rt_status st;
        while ((st = rt_workers_submit(pr->w, &pr->items[i])) == RT_ERR_LIMIT) {
            pr->limit_answers++;
            sched_yield();
        }
        if (st != RT_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_all_items_processed_once(void **state)
{
    (void)state;
    enum { PRODUCERS = 4, PER_PRODUCER = 2500, TOTAL = PRODUCERS * PER_PRODUCER };
    item *items = calloc(TOTAL, sizeof(item));
    pool_state s;
    rt_workers *w = NULL;
    pthread_t threads[PRODUCERS];
    producer producers[PRODUCERS];
    long expected_sum = 0;

    assert_non_null(items);
    state_init(&s);
    for (int i = 0; i < TOTAL; i++) {
        items[i].value = i + 1;
        expected_sum += i + 1;
    }
    /* A small queue so producers also meet RT_ERR_LIMIT and retry. */
    assert_int_equal(rt_workers_create(&w, 3, 16, handle, discard, &s), RT_OK);
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (producer){w, items + p * PER_PRODUCER, PER_PRODUCER, 0};
        assert_int_equal(pthread_create(&threads[p], NULL, produce, &producers[p]), 0);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        void *ret = NULL;
        pthread_join(threads[p], &ret);
        assert_null(ret);
    }
    rt_workers_destroy(w);

    assert_int_equal(atomic_load(&s.processed) + atomic_load(&s.discarded), TOTAL);
    for (int i = 0; i < TOTAL; i++) {
        int handled = atomic_load(&items[i].processed) + atomic_load(&items[i].discarded);
        if (handled != 1)
            fail_msg("item %d handled %d times", i, handled);
    }
    /* Threads drain the queue before destroy returns, so nothing is discarded. */
    assert_int_equal(atomic_load(&s.discarded), 0);
    assert_int_equal(atomic_load(&s.sum), expected_sum);
    assert_true(atomic_load(&s.max_active) <= 3);
    state_fini(&s);
    free(items);
}

static void test_submit_full_returns_limit(void **state)
{
    (void)state;
    item items[6];
    pool_state s;
    rt_workers *w = NULL;

    memset(items, 0, sizeof(items));
    state_init(&s);
    s.gate_closed = true;
    assert_int_equal(rt_workers_create(&w, 1, 3, handle, discard, &s), RT_OK);
    assert_int_equal(rt_workers_queued(w), 0);

    /* The one thread takes the first item and blocks in the handler ... */
    assert_int_equal(rt_workers_submit(w, &items[0]), RT_OK);
    wait_entered(&s, 1);
    assert_int_equal(rt_workers_queued(w), 0);
    /* ... so exactly `capacity` more fit, then the queue is full. */
    assert_int_equal(rt_workers_submit(w, &items[1]), RT_OK);
    assert_int_equal(rt_workers_submit(w, &items[2]), RT_OK);
    assert_int_equal(rt_workers_submit(w, &items[3]), RT_OK);
    assert_int_equal(rt_workers_queued(w), 3);
    assert_int_equal(rt_workers_submit(w, &items[4]), RT_ERR_LIMIT);
    assert_int_equal(rt_workers_submit(w, &items[5]), RT_ERR_LIMIT);
    assert_int_equal(rt_workers_queued(w), 3);

    open_gate(&s);
    rt_workers_destroy(w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&items[i].processed) + atomic_load(&items[i].discarded), 1);
    /* Refused items stay with the caller: never handled. */
    assert_int_equal(atomic_load(&items[4].processed) + atomic_load(&items[4].discarded), 0);
    assert_int_equal(atomic_load(&items[5].processed) + atomic_load(&items[5].discarded), 0);
    state_fini(&s);
}

static void *destroy_thread(void *p)
{
    rt_workers_destroy(p);
    return NULL;
}

static void test_destroy_drains_queue(void **state)
{
    (void)state;
    enum { QUEUED = 50, EXTRA = 2000 };
    static item items[1 + QUEUED], extras[EXTRA];
    pool_state s;
    rt_workers *w = NULL;
    pthread_t t;

    memset(items, 0, sizeof(items));
    memset(extras, 0, sizeof(extras));
    state_init(&s);
    s.gate_closed = true;
    assert_int_equal(rt_workers_create(&w, 2, 1 + QUEUED + EXTRA, handle, discard, &s), RT_OK);
    assert_int_equal(rt_workers_submit(w, &items[0]), RT_OK);
    assert_int_equal(rt_workers_submit(w, &items[1]), RT_OK);
    wait_entered(&s, 2);
    for (int i = 2; i < 1 + QUEUED; i++)
        assert_int_equal(rt_workers_submit(w, &items[i]), RT_OK);
    assert_int_equal(rt_workers_queued(w), QUEUED - 1);

    /* Destroy while both handlers are blocked: once it has begun stopping,
     * submit refuses new work (the queue is far from full, so RT_ERR_LIMIT
     * here means "stopping"; the caller keeps the item). */
    assert_int_equal(pthread_create(&t, NULL, destroy_thread, w), 0);
    int accepted = 0;
    bool refused = false;
    while (accepted < EXTRA && !refused) {
        if (rt_workers_submit(w, &extras[accepted]) == RT_OK)
            accepted++;
        else
            refused = true;
        usleep(1000);
    }
    assert_true(refused);

    open_gate(&s);
    pthread_join(t, NULL);

    for (int i = 0; i < 1 + QUEUED; i++) {
        int handled = atomic_load(&items[i].processed) + atomic_load(&items[i].discarded);
        if (handled != 1)
            fail_msg("item %d handled %d times", i, handled);
    }
    for (int i = 0; i < EXTRA; i++) {
        int handled = atomic_load(&extras[i].processed) + atomic_load(&extras[i].discarded);
        assert_int_equal(handled, i < accepted ? 1 : 0);
    }
    assert_int_equal(atomic_load(&s.processed), 1 + QUEUED + accepted);
    assert_int_equal(atomic_load(&s.discarded), 0);
    state_fini(&s);
}

static void test_concurrency_is_exact(void **state)
{
    (void)state;
    enum { THREADS = 4, ITEMS = 40 };
    item items[ITEMS];
    pool_state s;
    rt_workers *w = NULL;

    memset(items, 0, sizeof(items));
    state_init(&s);
    /* Handlers wait until THREADS of them have run at once (or 5 s). */
    s.wait_for_active = THREADS;
    assert_int_equal(rt_workers_create(&w, THREADS, ITEMS, handle, discard, &s), RT_OK);
    for (int i = 0; i < ITEMS; i++)
        assert_int_equal(rt_workers_submit(w, &items[i]), RT_OK);
    rt_workers_destroy(w);
    assert_int_equal(atomic_load(&s.processed), ITEMS);
    /* All N threads worked in parallel, and never more than N. */
    assert_int_equal(atomic_load(&s.max_active), THREADS);
    assert_int_equal(atomic_load(&s.active), 0);
    state_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_refuses_bad_args),
        cmocka_unit_test(test_all_items_processed_once),
        cmocka_unit_test(test_submit_full_returns_limit),
        cmocka_unit_test(test_destroy_drains_queue),
        cmocka_unit_test(test_concurrency_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
