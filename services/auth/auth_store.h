/*
 * auth_store: what auth reads from and writes to PostgreSQL (deploy/sql/).
 *
 * Reads: platform role (realtime.user_roles), course membership
 * (realtime.course_members), lesson -> course (realtime.lessons).
 * Writes: idempotent upserts from evt.v1.enrollment.changed and
 * evt.v1.lesson.upserted; the newest event by occurred_at wins (ties: the
 * later arrival), so redelivered or out-of-order events converge to the same
 * rows. Every query is parameterized.
 *
 * Thread-safe: each call borrows a pooled connection.
 */
#ifndef AUTH_STORE_H
#define AUTH_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "auth_rooms.h"
#include "rt_pg.h"
#include "rt_proto.h"

typedef struct auth_store auth_store;

/* The pool is borrowed and must outlive the store. */
rt_status auth_store_create(auth_store **out, rt_pg_pool *pool, int acquire_timeout_ms);
void auth_store_destroy(auth_store *store); /* NULL harmless */

/* Platform role from realtime.user_roles; *found false when no row. */
rt_status auth_store_user_role(auth_role *out, bool *found, auth_store *store, const char *user_id);

/* Calls each(arg, user_id, role) for every active member of a course and
 * sets *count. Stops with RT_ERR_LIMIT when the course has more than `limit`
 * members (the caller then asks per user). */
rt_status auth_store_course_members(auth_store *store, const char *course_id, size_t limit,
                                    void (*each)(void *arg, const char *user_id,
                                                 auth_member_role role),
                                    void *arg, size_t *count);

/* Every row of realtime.user_roles, or RT_ERR_LIMIT past `limit` rows. */
rt_status auth_store_all_roles(auth_store *store, size_t limit,
                               void (*each)(void *arg, const char *user_id, auth_role role),
                               void *arg, size_t *count);

/* auth_membership_source callbacks (ctx is the auth_store). */
rt_status auth_store_member_role(auth_member_role *out, void *store, const char *course_id,
                                 const char *user_id);
rt_status auth_store_lesson_course(char out_course_id[RT_ID_MAX + 1], bool *found, void *store,
                                   const char *lesson_id);

/* One change to apply; exactly one pointer is set (borrowed). */
typedef struct auth_store_change {
    const Unpuzzle__Rt__V1__EnrollmentChanged *enrollment;
    const Unpuzzle__Rt__V1__LessonUpserted *lesson;
} auth_store_change;

/* Checks that a change can be stored (ids, role, change kind, time);
 * writes the reason into why. Invalid changes must not be applied. */
bool auth_store_change_valid(const auth_store_change *change, char *why, size_t why_size);

/* Applies all changes in one transaction (all or nothing). */
rt_status auth_store_apply(auth_store *store, const auth_store_change *changes, size_t n);

#endif
