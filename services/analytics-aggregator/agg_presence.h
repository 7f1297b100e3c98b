/*
 * agg_presence: who is in which course now, from ws-edge's PresenceUpdate
 * (presence.v1.edge.<edge_id>, spec/subjects.md), for the "who is watching"
 * list of CourseMetrics.
 *
 * Each update is the complete presence of one edge and replaces what that
 * edge said before. An edge's presence is kept for 3 x its interval_ms
 * (10 s when it gives none) after it was received, so the users of a
 * crashed edge drop out by themselves. Wall clock only; presence is not
 * checkpointed (edges resend theirs every interval).
 *
 * Costs: an update is O(its entries log its entries); listing one course
 * visits only the entries of that course.
 *
 * Not thread-safe: one owner thread, like agg_engine.
 */
#ifndef AGG_PRESENCE_H
#define AGG_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"
#include "rt_status.h"

typedef struct agg_presence agg_presence;

rt_status agg_presence_create(agg_presence **out);
void agg_presence_destroy(agg_presence *presence); /* NULL harmless */

/* Replaces the presence of update->edge_id, received at `received_ms`
 * (wall clock). Entries without a valid user or course id are skipped.
 * RT_ERR_INVALID_ARG when the edge id is not an id. */
rt_status agg_presence_apply(agg_presence *presence, const Unpuzzle__Rt__V1__PresenceUpdate *update,
                             int64_t received_ms);

/* Forgets edges whose presence has expired at now_ms. */
void agg_presence_expire(agg_presence *presence, int64_t now_ms);

/* One user in one course on one edge. */
typedef struct agg_presence_entry {
    const char *user_id;
    const char *lesson_id; /* "" when unknown */
    int64_t since_ns;      /* 0 when unknown */
} agg_presence_entry;

/* Calls fn for every entry of `course_id` on an edge not expired at now_ms
 * (a user present on two edges or in two lessons comes once per entry). */
void agg_presence_each(const agg_presence *presence, const char *course_id, int64_t now_ms,
                       void (*fn)(void *arg, const agg_presence_entry *entry), void *arg);

/* Edges held (expired ones included until agg_presence_expire()). */
size_t agg_presence_edge_count(const agg_presence *presence);

#endif
