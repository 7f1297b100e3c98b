/*
 * notify_store: the dispatcher's PostgreSQL side
 * (deploy/sql/003_notifications_schema.sql), on a pool of connections that
 * reconnect by themselves (rt_pg).
 *
 * Errors: RT_ERR_UNAVAILABLE / RT_ERR_TIMEOUT when PostgreSQL cannot be
 * reached or every connection is busy (the caller retries later), RT_ERR_PG
 * when a statement failed.
 *
 * Thread-safety: every call borrows its own connection, so the consumer
 * thread, the sweep (main thread) and the list workers share one store.
 */
#ifndef NOTIFY_STORE_H
#define NOTIFY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notify_events.h"
#include "notify_messages.h"
#include "rt_pg.h"
#include "rt_proto.h"
#include "rt_status.h"

typedef struct notify_store notify_store;

/* `pool` is borrowed and must outlive the store; timeout_ms is the longest
 * wait for a pooled connection. */
void notify_store_create(notify_store **out, rt_pg_pool *pool, int timeout_ms);
void notify_store_destroy(notify_store *store); /* NULL harmless */
bool notify_store_healthy(notify_store *store);

/* Remembers who raised a confusion / asked a question (first record wins). */
rt_status notify_store_record_thread(notify_store *store, notify_thread_kind kind,
                                     const char *thread_id, const char *course_id,
                                     const char *lesson_id, const char *student_id);
/* Looks a thread up; *found false when unknown. Outputs are RT_ID_MAX + 1
 * bytes each. */
rt_status notify_store_thread(bool *found, char *course_id, char *lesson_id, char *student_id,
                              notify_store *store, notify_thread_kind kind, const char *thread_id);

/* A notification to store for one or more recipients. */
typedef struct notify_new {
    const char *source_event_id;
    const char *kind;
    const char *title;
    const char *body;
    const char *link;
    const char *course_id;
    const uint8_t *extra; /* packed companion RoomMessage, or NULL */
    size_t extra_len;
} notify_new;

typedef enum notify_audience {
    NOTIFY_AUDIENCE_STUDENTS,    /* role student, status added or completed */
    NOTIFY_AUDIENCE_INSTRUCTORS, /* role instructor, status added or completed */
} notify_audience;

/* One row for `user_id` unless the event already made it. *inserted (may
 * be NULL) gets the number of new rows (0 or 1). */
rt_status notify_store_insert_user(size_t *inserted, notify_store *store, const notify_new *n,
                                   const char *user_id);
/* One row per member of `course_id` in `audience` (one INSERT ... SELECT
 * from realtime.course_members), except those the event already made. */
rt_status notify_store_insert_course(size_t *inserted, notify_store *store, const notify_new *n,
                                     const char *course_id, notify_audience audience);

/*
 * Delivery: a claim is an open transaction holding row locks (FOR UPDATE
 * SKIP LOCKED, so replicas never wait for each other) on up to `limit`
 * unpublished rows. The caller publishes them, then ends the claim:
 * published=true marks them published and commits; false rolls back (they
 * stay unpublished for a later try). The claim is freed either way.
 */
typedef struct notify_claim notify_claim;
/* Unpublished rows of one event. */
rt_status notify_store_claim_event(notify_claim **out, notify_store *store, const char *event_id,
                                   int limit);
/* Unpublished rows of any event created more than older_than_ms ago. */
rt_status notify_store_claim_stale(notify_claim **out, notify_store *store, int older_than_ms,
                                   int limit);
const notify_row *notify_claim_rows(const notify_claim *claim, size_t *n);
rt_status notify_store_claim_end(notify_store *store, notify_claim *claim, bool published);

/* Marks the rows of `reader_id` among `ids_array` ("{1,2}") read (the
 * first read time is kept) and returns every one of the reader's ids among
 * them, read before or now, in *ids (malloc()ed strings and array; free
 * with notify_ids_free). Ids of other users are left alone and not
 * returned. */
rt_status notify_store_mark_read(char ***ids, size_t *n_ids, notify_store *store,
                                 const char *reader_id, const char *ids_array);
void notify_ids_free(char **ids, size_t n);

/* notify.v1.list: the user's notifications newest first (created_at, then
 * id), optionally only unread, older than `before_us` (0 = no bound), at
 * most `limit` (already clamped), with has_more and the unread count.
 * *out is freed with notify_list_free(). */
rt_status notify_store_list(Unpuzzle__Rt__V1__NotificationList **out, notify_store *store,
                            const char *user_id, bool unread_only, uint32_t limit,
                            int64_t before_us);
void notify_list_free(Unpuzzle__Rt__V1__NotificationList *list);

/* Rows not yet published (for the unpublished gauge). */
rt_status notify_store_unpublished(int64_t *count, notify_store *store);

#endif
