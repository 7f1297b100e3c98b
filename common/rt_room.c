#include "rt_room.h"

#include <stdio.h>
#include <string.h>

static const struct {
    rt_room_kind kind;
    const char *name;
} room_kinds[] = {
    {RT_ROOM_COURSE, "course"},
    {RT_ROOM_LESSON, "lesson"},
    {RT_ROOM_USER, "user"},
    {RT_ROOM_INSTRUCTOR, "instructor"},
};

bool rt_id_valid_n(const char *id, size_t len)
{
    if (!id || len == 0 || len > RT_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool rt_id_valid(const char *id)
{
    return id && rt_id_valid_n(id, strnlen(id, RT_ID_MAX + 1));
}

rt_status rt_room_parse(rt_room *out, const char *name)
{
    const char *colon = name ? strchr(name, ':') : NULL;

    if (!colon)
        return RT_ERR(RT_ERR_INVALID_ARG, "room must look like kind:id");
    for (size_t i = 0; i < sizeof(room_kinds) / sizeof(room_kinds[0]); i++) {
        size_t klen = strlen(room_kinds[i].name);
        if ((size_t)(colon - name) == klen && strncmp(name, room_kinds[i].name, klen) == 0) {
            if (!rt_id_valid(colon + 1))
                return RT_ERR(RT_ERR_INVALID_ARG, "room id must match [A-Za-z0-9_-]{1,64}");
            out->kind = room_kinds[i].kind;
            snprintf(out->id, sizeof(out->id), "%s", colon + 1);
            return RT_OK;
        }
    }
    return RT_ERR(RT_ERR_INVALID_ARG, "room kind must be course, lesson, user or instructor");
}

const char *rt_room_kind_name(rt_room_kind kind)
{
    for (size_t i = 0; i < sizeof(room_kinds) / sizeof(room_kinds[0]); i++)
        if (room_kinds[i].kind == kind)
            return room_kinds[i].name;
    return "unknown";
}

void rt_room_name(char out[RT_ROOM_NAME_MAX], const rt_room *room)
{
    snprintf(out, RT_ROOM_NAME_MAX, "%s:%s", rt_room_kind_name(room->kind), room->id);
}

void rt_room_subject(char *out, size_t out_size, const char *prefix, const rt_room *room)
{
    snprintf(out, out_size, "%s.%s.%s", prefix, rt_room_kind_name(room->kind), room->id);
}
