/*
 * agg_writer: the checkpoint writer thread.
 *
 * The engine thread serializes the changed courses and the owned
 * partitions' positions into an agg_checkpoint (a consistent cut: nothing
 * is applied while it does) and hands it over; this thread commits it in
 * one transaction on the store's session and only then acks the stream up
 * to the cut (AckAll on the last message read before it). The engine goes
 * on reading events meanwhile instead of waiting for PostgreSQL.
 *
 * One checkpoint at a time: the engine takes the finished one back
 * (agg_writer_take) to learn what became durable before it hands over the
 * next. A failed checkpoint acks nothing; its courses stay changed and go
 * into the next one.
 */
#ifndef AGG_WRITER_H
#define AGG_WRITER_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_store.h"
#include "rt_status.h"

typedef struct agg_checkpoint_course {
    char *course_id;
    uint64_t stream_seq; /* the course's last applied event */
    uint64_t changes;    /* the engine's change count the state reflects */
    uint8_t *state;
    size_t len;
} agg_checkpoint_course;

typedef struct agg_checkpoint {
    agg_checkpoint_course *courses;
    size_t n_courses, cap_courses;
    int *partitions; /* owned partitions and how far each is applied */
    uint64_t *applied_seqs;
    size_t n_partitions, cap_partitions;
    natsMsg *ack; /* acked after the commit (AckAll); NULL: nothing to ack */

    /* Filled in by the writer. */
    rt_status status;
    bool session_lost; /* the store's session (and every lock) went with it */
    bool ack_failed;
    char error[256];
    int64_t write_ms; /* BEGIN to COMMIT */
    size_t bytes;     /* state written */
} agg_checkpoint;

agg_checkpoint *agg_checkpoint_new(void);
/* Takes ownership of state (malloc'd). */
void agg_checkpoint_add_course(agg_checkpoint *cp, const char *course_id, uint64_t stream_seq,
                               uint64_t changes, uint8_t *state, size_t len);
void agg_checkpoint_add_partition(agg_checkpoint *cp, int partition, uint64_t applied_seq);
void agg_checkpoint_free(agg_checkpoint *cp); /* destroys an ack still held, NULL harmless */

typedef struct agg_writer agg_writer;

rt_status agg_writer_start(agg_writer **out, agg_store *store);
/* Waits for the checkpoint in progress (its result is discarded) and stops. */
void agg_writer_stop(agg_writer *w);

/* False while a checkpoint is being written or its result not taken. */
bool agg_writer_idle(agg_writer *w);
/* Hands a checkpoint over (ownership included); only when idle. */
void agg_writer_submit(agg_writer *w, agg_checkpoint *cp);
/* The finished checkpoint, or NULL while it is still being written (or
 * there is none). The caller frees it. */
agg_checkpoint *agg_writer_take(agg_writer *w);
/* Waits for the checkpoint in progress and returns it (NULL if none). */
agg_checkpoint *agg_writer_wait(agg_writer *w);

#endif
