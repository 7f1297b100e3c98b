#include "agg_writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_time.h"

/* ---- checkpoints ---- */

agg_checkpoint *agg_checkpoint_new(void)
{
    agg_checkpoint *cp = rt_calloc(1, sizeof(*cp));
    cp->status = RT_OK;
    return cp;
}

void agg_checkpoint_add_course(agg_checkpoint *cp, const char *course_id, uint64_t stream_seq,
                               uint64_t changes, uint8_t *state, size_t len)
{
    if (cp->n_courses == cp->cap_courses) {
        cp->cap_courses = cp->cap_courses ? cp->cap_courses * 2 : 16;
        cp->courses = rt_realloc(cp->courses, cp->cap_courses * sizeof(*cp->courses));
    }
    cp->courses[cp->n_courses++] = (agg_checkpoint_course){
        .course_id = rt_strdup(course_id),
        .stream_seq = stream_seq,
        .changes = changes,
        .state = state,
        .len = len,
    };
}

void agg_checkpoint_add_partition(agg_checkpoint *cp, int partition, uint64_t applied_seq)
{
    if (cp->n_partitions == cp->cap_partitions) {
        cp->cap_partitions = cp->cap_partitions ? cp->cap_partitions * 2 : 16;
        cp->partitions = rt_realloc(cp->partitions, cp->cap_partitions * sizeof(int));
        cp->applied_seqs = rt_realloc(cp->applied_seqs, cp->cap_partitions * sizeof(uint64_t));
    }
    cp->partitions[cp->n_partitions] = partition;
    cp->applied_seqs[cp->n_partitions++] = applied_seq;
}

void agg_checkpoint_free(agg_checkpoint *cp)
{
    if (!cp)
        return;
    for (size_t i = 0; i < cp->n_courses; i++) {
        free(cp->courses[i].course_id);
        free(cp->courses[i].state);
    }
    free(cp->courses);
    free(cp->partitions);
    free(cp->applied_seqs);
    if (cp->ack)
        natsMsg_Destroy(cp->ack);
    free(cp);
}

/* Commits the checkpoint, then acks what it covers. */
static void write_checkpoint(agg_store *store, agg_checkpoint *cp)
{
    int64_t started = rt_time_mono_ns();
    agg_store_lock(store);
    rt_status st = agg_store_begin(store);
    for (size_t i = 0; i < cp->n_courses && st == RT_OK; i++) {
        const agg_checkpoint_course *c = &cp->courses[i];
        st = agg_store_put_course(store, c->course_id, c->stream_seq, c->state, c->len);
        cp->bytes += c->len;
    }
    for (size_t i = 0; i < cp->n_partitions && st == RT_OK; i++)
        st = agg_store_put_partition(store, cp->partitions[i], cp->applied_seqs[i]);
    if (st == RT_OK)
        st = agg_store_commit(store);
    if (st != RT_OK) {
        snprintf(cp->error, sizeof(cp->error), "%s", rt_error_message());
        agg_store_rollback(store);
    }
    cp->session_lost = agg_store_session_lost(store);
    agg_store_unlock(store);
    cp->status = st;
    cp->write_ms = (rt_time_mono_ns() - started) / 1000000;
    if (st == RT_OK && cp->ack) /* everything up to it is in PostgreSQL now */
        cp->ack_failed = natsMsg_Ack(cp->ack, NULL) != NATS_OK;
    if (cp->ack) {
        natsMsg_Destroy(cp->ack); /* unacked after a failure: redelivered, skipped by seq */
        cp->ack = NULL;
    }
}

/* ---- the thread ---- */

struct agg_writer {
    agg_store *store;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a checkpoint to write, or stop */
    pthread_cond_t done; /* the checkpoint is written */
    agg_checkpoint *pending, *finished;
    bool writing, stop;
};

static void *writer_main(void *arg)
{
    agg_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->pending && !w->stop)
            pthread_cond_wait(&w->wake, &w->lock);
        if (!w->pending)
            break;
        agg_checkpoint *cp = w->pending;
        w->pending = NULL;
        w->writing = true;
        pthread_mutex_unlock(&w->lock);
        write_checkpoint(w->store, cp);
        pthread_mutex_lock(&w->lock);
        w->writing = false;
        w->finished = cp;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

rt_status agg_writer_start(agg_writer **out, agg_store *store)
{
    agg_writer *w = rt_calloc(1, sizeof(*w));
    w->store = store;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->done);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return RT_ERR(RT_ERR_INTERNAL, "cannot start the checkpoint writer thread");
    }
    *out = w;
    return RT_OK;
}

void agg_writer_stop(agg_writer *w)
{
    if (!w)
        return;
    agg_checkpoint_free(agg_writer_wait(w));
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

bool agg_writer_idle(agg_writer *w)
{
    pthread_mutex_lock(&w->lock);
    bool idle = !w->pending && !w->writing && !w->finished;
    pthread_mutex_unlock(&w->lock);
    return idle;
}

void agg_writer_submit(agg_writer *w, agg_checkpoint *cp)
{
    pthread_mutex_lock(&w->lock);
    w->pending = cp;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

agg_checkpoint *agg_writer_take(agg_writer *w)
{
    pthread_mutex_lock(&w->lock);
    agg_checkpoint *cp = w->finished;
    w->finished = NULL;
    pthread_mutex_unlock(&w->lock);
    return cp;
}

agg_checkpoint *agg_writer_wait(agg_writer *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->pending || w->writing)
        pthread_cond_wait(&w->done, &w->lock);
    agg_checkpoint *cp = w->finished;
    w->finished = NULL;
    pthread_mutex_unlock(&w->lock);
    return cp;
}
