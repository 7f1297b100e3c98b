#include "auth_rooms.h"

#include "rt_names.h"

#include <stdio.h>
#include <string.h>

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x

static auth_decision allow(void)
{
    return (auth_decision){.allowed = true, .reason = DENY(UNSPECIFIED)};
}

static auth_decision deny(auth_deny_reason reason)
{
    return (auth_decision){.allowed = false, .reason = reason};
}

static auth_decision allow_course(const char *course_id, auth_member_role member)
{
    auth_decision d = allow();
    snprintf(d.course_id, sizeof(d.course_id), "%s", course_id);
    d.member_role = member;
    return d;
}

static auth_decision decide_course(const auth_membership_source *source, const char *user_id,
                                   auth_role role, const char *course_id)
{
    auth_member_role member = MEMBER(UNSPECIFIED);

    if (role == ROLE(ADMIN))
        return allow_course(course_id, MEMBER(UNSPECIFIED));
    if (source->member_role(&member, source->ctx, course_id, user_id) != RT_OK)
        return deny(DENY(UNAVAILABLE));
    if (member == MEMBER(STUDENT) || member == MEMBER(INSTRUCTOR))
        return allow_course(course_id, member);
    return deny(DENY(NOT_MEMBER));
}

auth_decision auth_rooms_decide(const auth_membership_source *source, const char *user_id,
                                auth_role role, const char *room_name)
{
    rt_room room;

    if (!rt_id_valid(user_id))
        return deny(DENY(NOT_OWNER));
    if (rt_room_parse(&room, room_name) != RT_OK)
        return deny(DENY(BAD_ROOM));
    switch (room.kind) {
    case RT_ROOM_USER:
        return strcmp(room.id, user_id) == 0 ? allow() : deny(DENY(NOT_OWNER));
    case RT_ROOM_INSTRUCTOR:
        if (role == ROLE(ADMIN))
            return allow();
        if (role == ROLE(INSTRUCTOR) && strcmp(room.id, user_id) == 0)
            return allow();
        return deny(DENY(NOT_OWNER));
    case RT_ROOM_COURSE:
        return decide_course(source, user_id, role, room.id);
    case RT_ROOM_LESSON: {
        char course_id[RT_ID_MAX + 1];
        bool found = false;
        if (source->lesson_course(course_id, &found, source->ctx, room.id) != RT_OK)
            return deny(DENY(UNAVAILABLE));
        if (!found)
            return deny(DENY(UNKNOWN_LESSON));
        return decide_course(source, user_id, role, course_id);
    }
    }
    return deny(DENY(BAD_ROOM));
}

const char *auth_deny_reason_name(auth_deny_reason reason)
{
    return rt_deny_reason_name(reason);
}
