/*
 * auth_members: course member sets and the role table, held in memory.
 *
 * A reconnect storm asks "is user U in course C?" for thousands of distinct
 * users of the same few courses; one query per user would make PostgreSQL
 * the bottleneck. The first question about a course loads all its active
 * members at once (up to AUTH_COURSE_SET_MAX; bigger courses are asked per
 * user), kept for AUTHZ_CACHE_TTL_MS and dropped at once when an enrollment
 * of that course changes (the invalidation auth broadcasts after its commit).
 * A set loaded while an invalidation happened is used for that answer but
 * not kept.
 *
 * The role table (realtime.user_roles: instructors and admins, a small
 * table) is loaded whole by auth_members_refresh_roles() from the main
 * thread every ROLE_CACHE_TTL_MS; verification then needs no query. If it
 * has more than AUTH_ROLE_TABLE_MAX rows, or was never loaded, roles are
 * asked per user (auth_cache).
 *
 * Thread-safe (one mutex for sets, one rwlock for the role table).
 */
#ifndef AUTH_MEMBERS_H
#define AUTH_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_rooms.h"
#include "auth_store.h"

typedef struct auth_members auth_members;

rt_status auth_members_create(auth_members **out, auth_store *store, uint64_t set_ttl_ns,
                              size_t max_courses, size_t max_members_per_course, size_t max_roles);
void auth_members_destroy(auth_members *members); /* NULL harmless */

/* auth_membership_source.member_role (ctx is the auth_members). */
rt_status auth_members_member_role(auth_member_role *out, void *ctx, const char *course_id,
                                   const char *user_id);

/* auth_membership_source.lesson_course (ctx is the auth_members): asked of
 * the store each time (lessons move rarely; decisions are cached anyway). */
rt_status auth_members_lesson_course(char out_course_id[RT_ID_MAX + 1], bool *found, void *ctx,
                                     const char *lesson_id);

/* An enrollment in this course changed. */
void auth_members_drop_course(auth_members *members, const char *course_id);

/* Reloads the role table; keeps the old one on failure. */
rt_status auth_members_refresh_roles(auth_members *members);
/* Looks a user's role up in the loaded table. Returns false when there is
 * no usable table (never loaded, or too big); otherwise *found tells whether
 * the user has a row. */
bool auth_members_role(auth_members *members, const char *user_id, auth_role *out, bool *found);

#endif
