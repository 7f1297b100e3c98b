/*
 * notify_messages: what a student's devices get in their user: room — the
 * stored notification (type notification / create), the answer or
 * resolution itself with the asker / student filled in (type question or
 * confusion / update), read receipts (notification / update) — and the
 * Nats-Msg-Ids that make a repeated publish land once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notify_messages.h"

#define TYPE(x) UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_##x
#define ACTION(x) UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_##x
#define PAYLOAD(x) UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_##x

static Unpuzzle__Rt__V1__RoomMessage *unpack(uint8_t *data, size_t len)
{
    Unpuzzle__Rt__V1__RoomMessage *rm = unpuzzle__rt__v1__room_message__unpack(NULL, len, data);
    free(data);
    assert_non_null(rm);
    return rm;
}

static notify_row sample_row(void)
{
    notify_row row = {0};
    row.notification_id = strdup("42");
    row.user_id = strdup("stu-1");
    row.kind = strdup("question_answered");
    row.title = strdup("Your question was answered");
    row.body = strdup("because");
    row.link = strdup("");
    row.course_id = strdup("c1");
    row.source_event_id = strdup("ev-1");
    row.created_us = INT64_C(1795600000123456);
    return row;
}

static void message_ids_are_derived_from_what_is_stored(void **state)
{
    (void)state;
    char id[NOTIFY_MSG_ID_MAX];
    notify_msg_id_notification(id, "42");
    assert_string_equal(id, "ntf-42");
    notify_msg_id_companion(id, "42");
    assert_string_equal(id, "ntf-42-event");
    char event_id[RT_ID_MAX + 1];
    memset(event_id, 'e', RT_ID_MAX);
    event_id[RT_ID_MAX] = '\0';
    notify_msg_id_read(id, event_id); /* the longest event id fits */
    assert_int_equal(strlen(id), strlen("ntf-read-") + RT_ID_MAX);
}

static void user_rooms_are_user_subjects(void **state)
{
    (void)state;
    char subject[RT_ROOM_SUBJECT_MAX];
    assert_int_equal(notify_user_subject(subject, "stu-1"), RT_OK);
    assert_string_equal(subject, "rt.v1.room.user.stu-1");
    assert_int_equal(notify_user_subject(subject, "a.b"), RT_ERR_INVALID_ARG);
    assert_int_equal(notify_user_subject(subject, ""), RT_ERR_INVALID_ARG);
    assert_int_equal(notify_user_subject(subject, NULL), RT_ERR_INVALID_ARG);
}

static void a_notification_is_a_create_in_the_user_room(void **state)
{
    (void)state;
    notify_row row = sample_row();
    uint8_t *data = NULL;
    size_t len = 0;
    notify_pack_notification(&data, &len, &row);
    Unpuzzle__Rt__V1__RoomMessage *rm = unpack(data, len);
    assert_int_equal(rm->type, TYPE(NOTIFICATION));
    assert_int_equal(rm->action, ACTION(CREATE));
    assert_string_equal(rm->event_id, "ev-1");
    assert_int_equal(rm->payload_case, PAYLOAD(NOTIFICATION));
    const Unpuzzle__Rt__V1__Notification *n = rm->notification;
    assert_string_equal(n->notification_id, "42");
    assert_string_equal(n->user_id, "stu-1");
    assert_string_equal(n->kind, "question_answered");
    assert_string_equal(n->body, "because");
    assert_string_equal(n->course_id, "c1");
    assert_string_equal(n->source_event_id, "ev-1");
    assert_int_equal(n->created_at->seconds, INT64_C(1795600000));
    assert_int_equal(n->created_at->nanos, 123456000);
    assert_null(n->read_at); /* unread */
    assert_int_equal(rm->timestamp->seconds, INT64_C(1795600000));
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);

    row.read_us = INT64_C(1795600001000000);
    notify_pack_notification(&data, &len, &row);
    rm = unpack(data, len);
    assert_non_null(rm->notification->read_at);
    assert_int_equal(rm->notification->read_at->seconds, INT64_C(1795600001));
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
    notify_row_clear(&row);
    assert_null(row.notification_id);
}

static void the_answer_reaches_the_asker_with_their_id(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__QuestionAnswered a = UNPUZZLE__RT__V1__QUESTION_ANSWERED__INIT;
    Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    at.seconds = 1795600000;
    a.event_id = "ev-2";
    a.occurred_at = &at;
    a.question_id = "q-1";
    a.course_id = "c1";
    a.user_id = "teach-1";
    a.answer = "because";
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(notify_pack_companion(&data, &len, &a.base, "stu-1", "l1"), RT_OK);
    Unpuzzle__Rt__V1__RoomMessage *rm = unpack(data, len);
    assert_int_equal(rm->type, TYPE(QUESTION));
    assert_int_equal(rm->action, ACTION(UPDATE));
    assert_string_equal(rm->user_id, "teach-1");
    assert_string_equal(rm->event_id, "ev-2");
    assert_int_equal(rm->timestamp->seconds, 1795600000);
    assert_int_equal(rm->payload_case, PAYLOAD(QUESTION_ANSWERED));
    assert_string_equal(rm->question_answered->asker_user_id, "stu-1");
    assert_string_equal(rm->question_answered->lesson_id, "l1"); /* from the record */
    assert_string_equal(rm->question_answered->answer, "because");
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
    /* The event itself is untouched. */
    assert_string_equal(a.asker_user_id, "");

    a.lesson_id = "l2"; /* the event's own lesson wins */
    assert_int_equal(notify_pack_companion(&data, &len, &a.base, "stu-1", "l1"), RT_OK);
    rm = unpack(data, len);
    assert_string_equal(rm->question_answered->lesson_id, "l2");
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
}

static void the_resolution_reaches_the_student(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__ConfusionResolved r = UNPUZZLE__RT__V1__CONFUSION_RESOLVED__INIT;
    r.event_id = "ev-3";
    r.confusion_id = "cf-1";
    r.course_id = "c1";
    r.user_id = "teach-1";
    r.resolved = true;
    r.response = "see 3:20";
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(notify_pack_companion(&data, &len, &r.base, "stu-2", ""), RT_OK);
    Unpuzzle__Rt__V1__RoomMessage *rm = unpack(data, len);
    assert_int_equal(rm->type, TYPE(CONFUSION));
    assert_int_equal(rm->action, ACTION(UPDATE));
    assert_int_equal(rm->payload_case, PAYLOAD(CONFUSION_RESOLVED));
    assert_string_equal(rm->confusion_resolved->student_user_id, "stu-2");
    assert_true(rm->confusion_resolved->resolved);
    assert_string_equal(rm->confusion_resolved->response, "see 3:20");
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);

    Unpuzzle__Rt__V1__CourseUpdated u = UNPUZZLE__RT__V1__COURSE_UPDATED__INIT;
    assert_int_equal(notify_pack_companion(&data, &len, &u.base, "stu-2", ""), RT_ERR_INVALID_ARG);
}

static void read_receipts_name_only_the_readers_ids(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__NotificationsRead ev = UNPUZZLE__RT__V1__NOTIFICATIONS_READ__INIT;
    char *all[] = {"1", "2", "99"};
    char *mine[] = {"1", "2"};
    ev.event_id = "ev-4";
    ev.user_id = "stu-1";
    ev.notification_ids = all;
    ev.n_notification_ids = 3;
    uint8_t *data = NULL;
    size_t len = 0;
    notify_pack_read(&data, &len, &ev, "stu-1", mine, 2);
    Unpuzzle__Rt__V1__RoomMessage *rm = unpack(data, len);
    assert_int_equal(rm->type, TYPE(NOTIFICATION));
    assert_int_equal(rm->action, ACTION(UPDATE));
    assert_int_equal(rm->payload_case, PAYLOAD(NOTIFICATIONS_READ));
    assert_string_equal(rm->notifications_read->user_id, "stu-1");
    assert_string_equal(rm->notifications_read->event_id, "ev-4");
    assert_int_equal(rm->notifications_read->n_notification_ids, 2);
    assert_string_equal(rm->notifications_read->notification_ids[1], "2");
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(message_ids_are_derived_from_what_is_stored),
        cmocka_unit_test(user_rooms_are_user_subjects),
        cmocka_unit_test(a_notification_is_a_create_in_the_user_room),
        cmocka_unit_test(the_answer_reaches_the_asker_with_their_id),
        cmocka_unit_test(the_resolution_reaches_the_student),
        cmocka_unit_test(read_receipts_name_only_the_readers_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
