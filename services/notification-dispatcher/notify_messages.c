#include "notify_messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"

#define TYPE(x) UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_##x
#define ACTION(x) UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_##x
#define PAYLOAD(x) UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_##x

void notify_row_clear(notify_row *row)
{
    if (!row)
        return;
    free(row->notification_id);
    free(row->user_id);
    free(row->kind);
    free(row->title);
    free(row->body);
    free(row->link);
    free(row->course_id);
    free(row->source_event_id);
    free(row->extra);
    memset(row, 0, sizeof(*row));
}

void notify_rows_free(notify_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++)
        notify_row_clear(&rows[i]);
    free(rows);
}

void notify_msg_id_notification(char out[NOTIFY_MSG_ID_MAX], const char *notification_id)
{
    snprintf(out, NOTIFY_MSG_ID_MAX, "ntf-%s", notification_id);
}

void notify_msg_id_companion(char out[NOTIFY_MSG_ID_MAX], const char *notification_id)
{
    snprintf(out, NOTIFY_MSG_ID_MAX, "ntf-%s-event", notification_id);
}

void notify_msg_id_read(char out[NOTIFY_MSG_ID_MAX], const char *event_id)
{
    snprintf(out, NOTIFY_MSG_ID_MAX, "ntf-read-%s", event_id);
}

rt_status notify_user_subject(char out[RT_ROOM_SUBJECT_MAX], const char *user_id)
{
    rt_room room = {.kind = RT_ROOM_USER};
    if (!user_id || !rt_id_valid(user_id))
        return RT_ERR(RT_ERR_INVALID_ARG, "user id: not an id [A-Za-z0-9_-]{1,64}");
    snprintf(room.id, sizeof(room.id), "%s", user_id);
    rt_room_subject(out, RT_ROOM_SUBJECT_MAX, "rt.v1.room", &room);
    return RT_OK;
}

static void set_us(Google__Protobuf__Timestamp *ts, int64_t us)
{
    google__protobuf__timestamp__init(ts);
    /* Floor division: times before 1970 are not expected, but stay exact. */
    int64_t s = us / 1000000, rem = us % 1000000;
    if (rem < 0) {
        s--;
        rem += 1000000;
    }
    ts->seconds = s;
    ts->nanos = (int32_t)(rem * 1000);
}

void notify_row_to_proto(Unpuzzle__Rt__V1__Notification *out, Google__Protobuf__Timestamp *created,
                         Google__Protobuf__Timestamp *read, const notify_row *row)
{
    unpuzzle__rt__v1__notification__init(out);
    out->notification_id = row->notification_id;
    out->user_id = row->user_id;
    out->kind = row->kind;
    out->title = row->title;
    out->body = row->body;
    out->link = row->link;
    out->course_id = row->course_id;
    out->source_event_id = row->source_event_id;
    set_us(created, row->created_us);
    out->created_at = created;
    if (row->read_us) {
        set_us(read, row->read_us);
        out->read_at = read;
    }
}

static void pack_room_message(uint8_t **out, size_t *out_len,
                              const Unpuzzle__Rt__V1__RoomMessage *rm)
{
    size_t len = unpuzzle__rt__v1__room_message__get_packed_size(rm);
    *out = rt_malloc(len ? len : 1);
    *out_len = unpuzzle__rt__v1__room_message__pack(rm, *out);
}

void notify_pack_notification(uint8_t **out, size_t *out_len, const notify_row *row)
{
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__Notification n;
    Google__Protobuf__Timestamp created, read, at;

    notify_row_to_proto(&n, &created, &read, row);
    set_us(&at, row->created_us);
    rm.type = TYPE(NOTIFICATION);
    rm.action = ACTION(CREATE);
    rm.timestamp = &at;
    rm.user_id = "";
    rm.event_id = row->source_event_id;
    rm.payload_case = PAYLOAD(NOTIFICATION);
    rm.notification = &n;
    pack_room_message(out, out_len, &rm);
}

rt_status notify_pack_companion(uint8_t **out, size_t *out_len, const ProtobufCMessage *event,
                                const char *owner_id, const char *lesson_id)
{
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    rm.action = ACTION(UPDATE);

    if (event && event->descriptor == &unpuzzle__rt__v1__question_answered__descriptor) {
        Unpuzzle__Rt__V1__QuestionAnswered e = *(const Unpuzzle__Rt__V1__QuestionAnswered *)event;
        e.asker_user_id = (char *)owner_id;
        if (!e.lesson_id || !*e.lesson_id)
            e.lesson_id = (char *)(lesson_id ? lesson_id : "");
        rm.type = TYPE(QUESTION);
        rm.timestamp = e.occurred_at;
        rm.user_id = e.user_id;
        rm.event_id = e.event_id;
        rm.payload_case = PAYLOAD(QUESTION_ANSWERED);
        rm.question_answered = &e;
        pack_room_message(out, out_len, &rm);
        return RT_OK;
    }
    if (event && event->descriptor == &unpuzzle__rt__v1__confusion_resolved__descriptor) {
        Unpuzzle__Rt__V1__ConfusionResolved e = *(const Unpuzzle__Rt__V1__ConfusionResolved *)event;
        e.student_user_id = (char *)owner_id;
        if (!e.lesson_id || !*e.lesson_id)
            e.lesson_id = (char *)(lesson_id ? lesson_id : "");
        rm.type = TYPE(CONFUSION);
        rm.timestamp = e.occurred_at;
        rm.user_id = e.user_id;
        rm.event_id = e.event_id;
        rm.payload_case = PAYLOAD(CONFUSION_RESOLVED);
        rm.confusion_resolved = &e;
        pack_room_message(out, out_len, &rm);
        return RT_OK;
    }
    return RT_ERR(RT_ERR_INVALID_ARG, "no companion for this event");
}

void notify_pack_read(uint8_t **out, size_t *out_len, const Unpuzzle__Rt__V1__NotificationsRead *ev,
                      const char *reader_id, char *const *ids, size_t n_ids)
{
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__NotificationsRead r = UNPUZZLE__RT__V1__NOTIFICATIONS_READ__INIT;

    r.event_id = ev->event_id;
    r.occurred_at = ev->occurred_at;
    r.user_id = (char *)reader_id;
    r.n_notification_ids = n_ids;
    r.notification_ids = (char **)ids;
    rm.type = TYPE(NOTIFICATION);
    rm.action = ACTION(UPDATE);
    rm.timestamp = ev->occurred_at;
    rm.user_id = (char *)reader_id;
    rm.event_id = ev->event_id;
    rm.payload_case = PAYLOAD(NOTIFICATIONS_READ);
    rm.notifications_read = &r;
    pack_room_message(out, out_len, &rm);
}
