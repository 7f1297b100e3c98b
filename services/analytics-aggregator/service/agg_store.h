/*
 * agg_store: the analytics-aggregator's PostgreSQL side
 * (deploy/sql/002_analytics_schema.sql): partition ownership and
 * checkpoints.
 *
 * One dedicated connection (a "session") does everything. A partition is
 * owned while this session holds its advisory lock, and checkpoints are
 * written on the same session, so a replica that lost the lock (its
 * session died, e.g. kill -9 or a network cut) can never commit a
 * checkpoint for that partition again: the lock and the writes end
 * together. When the session is lost, agg_store_session_lost() says so once
 * and every partition must be dropped; the next call opens a new session.
 *
 * Shared by the engine thread (heartbeats, claims, loads) and the
 * checkpoint writer (agg_writer): hold agg_store_lock() around every use,
 * a whole transaction at a time.
 */
#ifndef AGG_STORE_H
#define AGG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

typedef struct agg_store agg_store;

rt_status agg_store_open(agg_store **out, const char *database_url, const char *replica_id,
                         int partitions);
void agg_store_close(agg_store *store); /* NULL harmless; releases every lock */

/* The session is used by one thread at a time. */
void agg_store_lock(agg_store *store);
void agg_store_unlock(agg_store *store);

/* True once after the session was lost (every lock with it). */
bool agg_store_session_lost(agg_store *store);
/* Whether the last attempt to reach PostgreSQL worked (readiness). */
bool agg_store_healthy(agg_store *store);

/* Records this replica as alive and counts replicas seen in the last
 * `live_ms` (this one included). */
rt_status agg_store_heartbeat(agg_store *store, int live_ms, int *live_replicas);

/* Tries to take a partition's lock (never waits). */
rt_status agg_store_try_claim(agg_store *store, int partition, bool *claimed);
rt_status agg_store_release(agg_store *store, int partition);

/* The partition's applied sequence (0 when never checkpointed). */
rt_status agg_store_partition_seq(agg_store *store, int partition, uint64_t *applied_seq);
/* Calls fn for every course checkpoint of the partition. */
typedef void (*agg_store_course_fn)(void *arg, const char *course_id, const uint8_t *state,
                                    size_t len, uint64_t stream_seq);
rt_status agg_store_load_partition(agg_store *store, int partition, agg_store_course_fn fn,
                                   void *arg);

/* A checkpoint: begin, put courses and partitions, commit (or rollback). */
rt_status agg_store_begin(agg_store *store);
rt_status agg_store_put_course(agg_store *store, const char *course_id, uint64_t stream_seq,
                               const uint8_t *state, size_t len);
rt_status agg_store_put_partition(agg_store *store, int partition, uint64_t applied_seq);
rt_status agg_store_commit(agg_store *store);
void agg_store_rollback(agg_store *store);

/* The stable hash that decides a course's partition (FNV-1a, 32 bits). */
uint32_t agg_course_hash(const char *course_id);

#endif
