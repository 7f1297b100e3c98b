/*
 * rt_room: room names of the browser protocol and their NATS subjects.
 *
 *   course:{courseId}  lesson:{lessonId}  user:{userId}  instructor:{instructorId}
 *
 * Ids match [A-Za-z0-9_-]{1,64} (UUIDs fit), so an id can never smuggle a
 * NATS token separator ('.', '*', '>') or whitespace into a subject.
 * Room "course:42" is published on rt.v1.room.course.42 and re-published by
 * JetStream on rtd.v1.room.course.42.
 */
#ifndef RT_ROOM_H
#define RT_ROOM_H

#include <stdbool.h>
#include <stddef.h>

#include "rt_status.h"

#define RT_ID_MAX 64
/* "instructor:" + id + NUL */
#define RT_ROOM_NAME_MAX (11 + RT_ID_MAX + 1)
/* "rtd.v1.room.instructor." + id + NUL */
#define RT_ROOM_SUBJECT_MAX (23 + RT_ID_MAX + 1)

typedef enum rt_room_kind {
    RT_ROOM_COURSE = 1,
    RT_ROOM_LESSON,
    RT_ROOM_USER,
    RT_ROOM_INSTRUCTOR,
} rt_room_kind;

typedef struct rt_room {
    rt_room_kind kind;
    char id[RT_ID_MAX + 1];
} rt_room;

/* True when `id` matches [A-Za-z0-9_-]{1,64}. */
bool rt_id_valid(const char *id);
/* Same for a length-delimited id. */
bool rt_id_valid_n(const char *id, size_t len);

/* "course:42" -> {RT_ROOM_COURSE, "42"}; RT_ERR_INVALID_ARG with a reason
 * for anything else. */
rt_status rt_room_parse(rt_room *out, const char *name);

/* "course", "lesson", "user", "instructor". */
const char *rt_room_kind_name(rt_room_kind kind);

/* "course:42" */
void rt_room_name(char out[RT_ROOM_NAME_MAX], const rt_room *room);

/* "<prefix>.<kind>.<id>", prefix "rt.v1.room" (publish) or "rtd.v1.room"
 * (re-published delivery). */
void rt_room_subject(char *out, size_t out_size, const char *prefix, const rt_room *room);

#endif
