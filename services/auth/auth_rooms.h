/*
 * auth_rooms: who may join which room (spec/protocol.md "Rooms").
 *
 *   course:{c}      admins; members of course c (student or instructor)
 *   lesson:{l}      whoever may join the course lesson l belongs to
 *   user:{u}        user u only (all of their devices)
 *   instructor:{i}  user i when their platform role is instructor (or admin);
 *                   any admin
 *
 * The decision is pure logic over a membership source (PostgreSQL in the
 * service, auth_store; a table in unit tests), so the rules are tested
 * alone. When the source cannot answer, the decision is deny with reason
 * unavailable: never allow.
 */
#ifndef AUTH_ROOMS_H
#define AUTH_ROOMS_H

#include <stdbool.h>

#include "rt_proto.h"
#include "rt_room.h"
#include "rt_status.h"

typedef Unpuzzle__Rt__V1__Role auth_role;
typedef Unpuzzle__Rt__V1__MemberRole auth_member_role;
typedef Unpuzzle__Rt__V1__DenyReason auth_deny_reason;

typedef struct auth_membership_source {
    /* Role of user_id in course_id, or MEMBER_ROLE_UNSPECIFIED when not an
     * active member. RT_ERR_UNAVAILABLE (or any error) when it cannot tell. */
    rt_status (*member_role)(auth_member_role *out, void *ctx, const char *course_id,
                             const char *user_id);
    /* Course of a lesson that exists (not deleted); *found false otherwise. */
    rt_status (*lesson_course)(char out_course_id[RT_ID_MAX + 1], bool *found, void *ctx,
                               const char *lesson_id);
    void *ctx;
} auth_membership_source;

typedef struct auth_decision {
    bool allowed;
    auth_deny_reason reason; /* DENY_REASON_UNSPECIFIED when allowed */
    /* Allowed course: and lesson: rooms: the course the room belongs to
     * (ws-edge reports presence per course); "" otherwise. */
    char course_id[RT_ID_MAX + 1];
    auth_member_role member_role; /* in that course; UNSPECIFIED for admins */
} auth_decision;

/* Decides whether (user_id, role) may join `room` (a room name such as
 * "course:42"). Thread-safe if the source is. */
auth_decision auth_rooms_decide(const auth_membership_source *source, const char *user_id,
                                auth_role role, const char *room);

/* "bad_room", "not_member", ... ("allowed" for UNSPECIFIED). */
const char *auth_deny_reason_name(auth_deny_reason reason);

#endif
