/*
 * notify_messages: the room messages the dispatcher publishes, and their
 * Nats-Msg-Ids, built without any I/O (unit-tested alone).
 *
 *   a stored notification  RoomMessage{type NOTIFICATION, action CREATE,
 *                          payload notification} to user:<recipient>,
 *                          Nats-Msg-Id "ntf-<notification_id>"
 *   its companion          the answer / resolution itself (type QUESTION or
 *                          CONFUSION, action UPDATE, payload question_answered
 *                          / confusion_resolved with the asker / student
 *                          filled in) to the same room just before it,
 *                          Nats-Msg-Id "ntf-<notification_id>-event"
 *   a read receipt         RoomMessage{type NOTIFICATION, action UPDATE,
 *                          payload notifications_read} to user:<reader>,
 *                          Nats-Msg-Id "ntf-read-<event_id>"
 * Each id is a function of what is stored, so a publish repeated after a
 * crash is dropped by the ROOMS stream's duplicate window.
 */
#ifndef NOTIFY_MESSAGES_H
#define NOTIFY_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"
#include "rt_room.h"
#include "rt_status.h"

/* "ntf-read-" + event id + NUL, and the longer of the others. */
#define NOTIFY_MSG_ID_MAX (16 + RT_ID_MAX + 1)

/* One stored notification as read back from PostgreSQL. Every string is
 * malloc()ed and owned by the row (notify_row_clear()). */
typedef struct notify_row {
    char *notification_id; /* decimal */
    char *user_id;
    char *kind;
    char *title;
    char *body;
    char *link;
    char *course_id;
    char *source_event_id;
    int64_t created_us; /* microseconds since the epoch */
    int64_t read_us;    /* 0 while unread */
    uint8_t *extra;     /* packed companion RoomMessage, or NULL */
    size_t extra_len;
} notify_row;

void notify_row_clear(notify_row *row);
/* Frees `n` rows and the array. NULL harmless. */
void notify_rows_free(notify_row *rows, size_t n);

void notify_msg_id_notification(char out[NOTIFY_MSG_ID_MAX], const char *notification_id);
void notify_msg_id_companion(char out[NOTIFY_MSG_ID_MAX], const char *notification_id);
void notify_msg_id_read(char out[NOTIFY_MSG_ID_MAX], const char *event_id);

/* rt.v1.room.user.<user_id>; RT_ERR_INVALID_ARG for an invalid id. */
rt_status notify_user_subject(char out[RT_ROOM_SUBJECT_MAX], const char *user_id);

/* A Notification view of `row`: pointers into the row, timestamps in the
 * caller's storage (valid while row and storage live). */
void notify_row_to_proto(Unpuzzle__Rt__V1__Notification *out, Google__Protobuf__Timestamp *created,
                         Google__Protobuf__Timestamp *read, const notify_row *row);

/* The packed RoomMessage of a stored notification. *out is malloc()ed. */
void notify_pack_notification(uint8_t **out, size_t *out_len, const notify_row *row);

/*
 * The packed companion of a QuestionAnswered or ConfusionResolved: the event
 * with the asker / student set to `owner_id` and, when the event has none,
 * the lesson set to `lesson_id`. *out is malloc()ed. RT_ERR_INVALID_ARG for
 * any other event.
 */
rt_status notify_pack_companion(uint8_t **out, size_t *out_len, const ProtobufCMessage *event,
                                const char *owner_id, const char *lesson_id);

/* The packed read receipt for `reader_id`: the event's id and time with
 * only `ids` (the reader's own). *out is malloc()ed. */
void notify_pack_read(uint8_t **out, size_t *out_len, const Unpuzzle__Rt__V1__NotificationsRead *ev,
                      const char *reader_id, char *const *ids, size_t n_ids);

#endif
