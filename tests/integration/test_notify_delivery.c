/*
 * notification-dispatcher against the real stack (nats-server with
 * JetStream, PostgreSQL, the service binary), seen from the users' rooms
 * (rtd.v1.room.user.<id>, where ws-edge listens) and notify.v1.list:
 *
 *   - an answer reaches the asker's room (the answer itself, then the
 *     notification) though ws-edge's event does not name the asker: the
 *     dispatcher recorded who asked;
 *   - a resolution reaches the student the same way;
 *   - a course update reaches each of 2,000 enrolled students exactly once
 *     (one bulk insert), not removed members nor instructors, and shows in
 *     their unread list;
 *   - the same events published again (another Nats-Msg-Id) create nothing
 *     and publish nothing;
 *   - a read receipt marks that user's notifications read (not another
 *     user's) and tells the user's other devices;
 *   - the list pages newest first with `before`, counts unread, answers bad
 *     requests at once with an empty list;
 *   - undecodable or invalid events, a question of another course and an
 *     unknown question are terminated and counted;
 *   - a purchase tells the course's instructor.
 */
#include "notify_testutil.h"

#define BIG_STUDENTS 2000

static rt_test_stack *stack;
static notify_proc dispatcher;
static natsSubscription *rooms;

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK ||
        rt_test_pg_exec(stack->pg,
                        "INSERT INTO realtime.course_members (course_id, user_id, role, status)"
                        " VALUES ('c1', 'stu-1', 'student', 'added'),"
                        " ('c1', 'stu-2', 'student', 'completed'),"
                        " ('c1', 'teach-1', 'instructor', 'added'),"
                        " ('c1', 'stu-gone', 'student', 'removed'),"
                        " ('c2', 'stu-3', 'student', 'added'),"
                        " ('big', 'big-teacher', 'instructor', 'added'),"
                        " ('big', 'big-gone', 'student', 'removed');"
                        "INSERT INTO realtime.course_members (course_id, user_id, role)"
                        " SELECT 'big', 'big-' || lpad(i::text, 4, '0'), 'student'"
                        " FROM generate_series(0, 1999) i;") != RT_OK ||
        notify_start(&dispatcher, stack, NULL) != RT_OK) {
        fprintf(stderr, "setup: %s (%s)\n", rt_error_message(), rt_error_origin());
        return -1;
    }
    rooms = notify_rooms_sub(stack, "rtd.v1.room.user.>");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natsSubscription_Destroy(rooms);
    rt_test_proc_destroy(dispatcher.proc);
    rt_test_stack_destroy(stack);
    return 0;
}

/* The next message in the user rooms; fails after timeout_ms. */
static json_t *expect_room(const char *user, const char *type, const char *action, int timeout_ms)
{
    json_t *m = notify_room_next(rooms, timeout_ms);
    if (!m)
        fail_msg("no %s/%s message for %s within %d ms", type, action, user, timeout_ms);
    char subject[128];
    snprintf(subject, sizeof(subject), "rtd.v1.room.user.%s", user);
    if (strcmp(rt_json_str(m, "subject"), subject) != 0 || strcmp(rt_json_str(m, "type"), type) ||
        strcmp(rt_json_str(m, "action"), action)) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("expected %s/%s in %s, got %s", type, action, subject, text);
    }
    return m;
}

static void expect_quiet(int ms)
{
    json_t *m = notify_room_next(rooms, ms);
    if (m) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("unexpected room message %s", text);
    }
}

static void an_answer_reaches_the_asker_who_was_looked_up(void **state)
{
    (void)state;
    notify_publish(stack, "evt.v1.question.created", D(question_created),
                   "{\"eventId\":\"qc-1\",\"questionId\":\"q-1\",\"courseId\":\"c1\","
                   "\"lessonId\":\"l1\",\"userId\":\"stu-1\",\"text\":\"why?\"}");
    int64_t sent = rt_time_now_ms();
    /* As ws-edge publishes it: the instructor's browser does not know the asker. */
    notify_publish(stack, "evt.v1.question.answered", D(question_answered),
                   "{\"eventId\":\"qa-1\",\"occurredAt\":\"2026-11-25T17:30:00Z\","
                   "\"questionId\":\"q-1\",\"courseId\":\"c1\",\"userId\":\"teach-1\","
                   "\"answer\":\"because\"}");
    json_t *answer = expect_room("stu-1", "question", "update", 5000 * NOTIFY_SLOW);
    assert_string_equal(notify_payload_str(answer, "askerUserId"), "stu-1");
    assert_string_equal(notify_payload_str(answer, "answer"), "because");
    assert_string_equal(notify_payload_str(answer, "lessonId"), "l1"); /* from the record */
    assert_string_equal(rt_json_str(answer, "userId"), "teach-1");
    assert_string_equal(rt_json_str(answer, "eventId"), "qa-1");
    json_decref(answer);
    json_t *n = expect_room("stu-1", "notification", "create", 2000);
    printf("answer + notification reached the asker's room in %" PRId64 " ms\n",
           rt_time_now_ms() - sent);
    assert_string_equal(notify_payload_str(n, "kind"), "question_answered");
    assert_string_equal(notify_payload_str(n, "userId"), "stu-1");
    assert_string_equal(notify_payload_str(n, "body"), "because");
    assert_string_equal(notify_payload_str(n, "courseId"), "c1");
    assert_string_equal(notify_payload_str(n, "sourceEventId"), "qa-1");
    assert_true(json_is_null(json_object_get(json_object_get(n, "payload"), "readAt")) ||
                !json_object_get(json_object_get(n, "payload"), "readAt"));
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM realtime.notifications WHERE notification_id = %s"
             " AND user_id = 'stu-1' AND published",
             notify_payload_str(n, "notificationId"));
    json_decref(n);
    /* Marked once every publish of its batch is acknowledged. */
    assert_true(notify_wait_sql(stack, 1, 5000, sql));
}

static void a_resolution_reaches_the_student(void **state)
{
    (void)state;
    notify_publish(stack, "evt.v1.confusion.created", D(confusion_created),
                   "{\"eventId\":\"cc-1\",\"confusionId\":\"cf-1\",\"courseId\":\"c1\","
                   "\"lessonId\":\"l2\",\"userId\":\"stu-2\",\"videoTimestampSec\":42}");
    notify_publish(stack, "evt.v1.confusion.resolved", D(confusion_resolved),
                   "{\"eventId\":\"cr-1\",\"confusionId\":\"cf-1\",\"courseId\":\"c1\","
                   "\"userId\":\"teach-1\",\"resolved\":true,\"response\":\"see 3:20\"}");
    json_t *m = expect_room("stu-2", "confusion", "update", 5000 * NOTIFY_SLOW);
    assert_string_equal(notify_payload_str(m, "studentUserId"), "stu-2");
    assert_string_equal(notify_payload_str(m, "response"), "see 3:20");
    json_decref(m);
    m = expect_room("stu-2", "notification", "create", 2000);
    assert_string_equal(notify_payload_str(m, "kind"), "confusion_resolved");
    assert_string_equal(notify_payload_str(m, "title"), "Your confusion was resolved");
    json_decref(m);

    /* Django names the student itself: no record needed. */
    notify_publish(stack, "evt.v1.confusion.resolved", D(confusion_resolved),
                   "{\"eventId\":\"cr-2\",\"confusionId\":\"cf-unrecorded\",\"courseId\":\"c2\","
                   "\"userId\":\"teach-2\",\"studentUserId\":\"stu-3\",\"resolved\":true}");
    json_decref(expect_room("stu-3", "confusion", "update", 5000 * NOTIFY_SLOW));
    json_decref(expect_room("stu-3", "notification", "create", 2000));
}

static void a_course_update_reaches_every_student_once(void **state)
{
    (void)state;
    json_t *seen = json_object();
    int64_t sent = rt_time_now_ms();
    notify_publish(stack, "evt.v1.course.updated", D(course_updated),
                   "{\"eventId\":\"cu-1\",\"courseId\":\"big\",\"title\":\"Calculus\","
                   "\"summary\":\"New lesson on limits\",\"actorUserId\":\"big-teacher\"}");
    size_t got = 0;
    while (got < BIG_STUDENTS) {
        json_t *m = notify_room_next(rooms, 10000 * NOTIFY_SLOW);
        if (!m)
            fail_msg("only %zu of %d students notified", got, BIG_STUDENTS);
        assert_string_equal(rt_json_str(m, "type"), "notification");
        assert_string_equal(notify_payload_str(m, "kind"), "course_updated");
        assert_string_equal(notify_payload_str(m, "title"), "Calculus was updated");
        const char *user = notify_payload_str(m, "userId");
        char subject[128];
        snprintf(subject, sizeof(subject), "rtd.v1.room.user.%s", user);
        assert_string_equal(rt_json_str(m, "subject"), subject);
        assert_int_equal(strncmp(user, "big-", 4), 0);
        if (json_object_get(seen, user))
            fail_msg("%s notified twice", user);
        json_object_set_new(seen, user, json_true());
        got++;
        json_decref(m);
    }
    printf("%d students notified in %" PRId64 " ms\n", BIG_STUDENTS, rt_time_now_ms() - sent);
    assert_null(json_object_get(seen, "big-gone"));
    assert_null(json_object_get(seen, "big-teacher"));
    json_decref(seen);
    expect_quiet(500);
    assert_true(notify_wait_sql(stack, BIG_STUDENTS, 5000,
                                "SELECT count(*) FROM realtime.notifications"
                                " WHERE source_event_id = 'cu-1' AND published"));

    /* An offline student sees it later in their unread list. */
    char code[8];
    Unpuzzle__Rt__V1__NotificationList *list = notify_list(stack, "big-1234", true, 0, NULL, code);
    assert_string_equal(code, "");
    assert_int_equal(list->n_notifications, 1);
    assert_int_equal(list->unread_count, 1);
    assert_false(list->has_more);
    assert_string_equal(list->notifications[0]->title, "Calculus was updated");
    assert_string_equal(list->notifications[0]->body, "New lesson on limits");
    assert_string_equal(list->notifications[0]->user_id, "big-1234");
    assert_null(list->notifications[0]->read_at);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
}

static void redelivered_events_create_and_publish_nothing(void **state)
{
    (void)state;
    double applied =
        notify_metric(&dispatcher, "unpuzzle_notify_events_total{outcome=\"applied\"}");
    /* The same events again, as a producer retrying after its dedupe window
     * would send them: JetStream stores them anew. */
    notify_publish_msgid(stack, "evt.v1.question.answered", D(question_answered), "qa-1-again",
                         "{\"eventId\":\"qa-1\",\"questionId\":\"q-1\",\"courseId\":\"c1\","
                         "\"userId\":\"teach-1\",\"answer\":\"because\"}");
    notify_publish_msgid(stack, "evt.v1.course.updated", D(course_updated), "cu-1-again",
                         "{\"eventId\":\"cu-1\",\"courseId\":\"big\",\"title\":\"Calculus\","
                         "\"summary\":\"New lesson on limits\"}");
    int64_t until = rt_time_now_ms() + 10000 * NOTIFY_SLOW;
    while (notify_metric(&dispatcher, "unpuzzle_notify_events_total{outcome=\"applied\"}") <
           applied + 2) {
        if (rt_time_now_ms() > until)
            fail_msg("the repeated events were not processed");
        notify_sleep_ms(50);
    }
    expect_quiet(500);
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"
                                            " WHERE source_event_id = 'qa-1'"),
                     1);
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"
                                            " WHERE source_event_id = 'cu-1'"),
                     BIG_STUDENTS);
}

static char *first_id(const char *user)
{
    char *v = NULL;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT min(notification_id)::text FROM realtime.notifications WHERE user_id = '%s'",
             user);
    assert_int_equal(rt_test_pg_query_value(&v, stack->pg, sql), RT_OK);
    assert_non_null(v);
    return v;
}

static void a_read_receipt_marks_read_and_tells_the_other_devices(void **state)
{
    (void)state;
    notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                   "{\"eventId\":\"nr-1\",\"userId\":\"stu-1\",\"kind\":\"announcement\","
                   "\"title\":\"Live session at 5\",\"link\":\"/courses/c1/live\"}");
    json_t *m = expect_room("stu-1", "notification", "create", 5000 * NOTIFY_SLOW);
    assert_string_equal(notify_payload_str(m, "link"), "/courses/c1/live");
    char *second = strdup(notify_payload_str(m, "notificationId"));
    json_decref(m);
    char *first = first_id("stu-1"), *other = first_id("stu-2");

    char code[8];
    Unpuzzle__Rt__V1__NotificationList *list = notify_list(stack, "stu-1", true, 0, NULL, code);
    assert_int_equal(list->unread_count, 2);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);

    /* One device read both (and names another user's id, and junk). */
    notify_publish(stack, "evt.v1.notification.read", D(notifications_read),
                   "{\"eventId\":\"rd-1\",\"userId\":\"stu-1\","
                   "\"notificationIds\":[\"%s\",\"%s\",\"%s\",\"x-1\"]}",
                   second, first, other);
    m = expect_room("stu-1", "notification", "update", 5000 * NOTIFY_SLOW);
    json_t *ids = json_object_get(json_object_get(m, "payload"), "notificationIds");
    assert_int_equal(json_array_size(ids), 2);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), second);
    assert_string_equal(json_string_value(json_array_get(ids, 1)), first);
    json_decref(m);
    expect_quiet(300);

    list = notify_list(stack, "stu-1", true, 0, NULL, code);
    assert_int_equal(list->n_notifications, 0);
    assert_int_equal(list->unread_count, 0);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    list = notify_list(stack, "stu-1", false, 0, NULL, code);
    assert_int_equal(list->n_notifications, 2);
    assert_non_null(list->notifications[0]->read_at);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    /* The other user's notification is untouched. */
    assert_int_equal(notify_sql_long(stack,
                                     "SELECT count(*) FROM realtime.notifications"
                                     " WHERE notification_id = %s AND read_at IS NULL",
                                     other),
                     1);
    free(first);
    free(second);
    free(other);
}

static void the_list_pages_newest_first(void **state)
{
    (void)state;
    for (int i = 1; i <= 5; i++)
        notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                       "{\"eventId\":\"pg-%d\",\"userId\":\"pager\",\"title\":\"n%d\"}", i, i);
    assert_true(notify_wait_sql(stack, 5, 10000 * NOTIFY_SLOW,
                                "SELECT count(*) FROM realtime.notifications"
                                " WHERE user_id = 'pager' AND published"));
    for (int i = 1; i <= 5; i++) {
        json_t *m = expect_room("pager", "notification", "create", 2000);
        char title[8];
        snprintf(title, sizeof(title), "n%d", i);
        assert_string_equal(notify_payload_str(m, "title"), title); /* in stream order */
        json_decref(m);
    }
    char code[8];
    const char *want[] = {"n5", "n4", "n3", "n2", "n1"};
    Google__Protobuf__Timestamp before = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    const Google__Protobuf__Timestamp *bound = NULL;
    int k = 0;
    for (int page = 0; page < 3; page++) {
        Unpuzzle__Rt__V1__NotificationList *list =
            notify_list(stack, "pager", false, 2, bound, code);
        assert_string_equal(code, "");
        assert_int_equal(list->unread_count, 5);
        assert_int_equal(list->n_notifications, page < 2 ? 2 : 1);
        assert_int_equal(list->has_more, page < 2);
        for (size_t i = 0; i < list->n_notifications; i++)
            assert_string_equal(list->notifications[i]->title, want[k++]);
        /* The browser sees milliseconds: page on with what it would send. */
        const Google__Protobuf__Timestamp *last =
            list->notifications[list->n_notifications - 1]->created_at;
        before.seconds = last->seconds;
        before.nanos = last->nanos / 1000000 * 1000000;
        bound = &before;
        unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    }
    assert_int_equal(k, 5);

    /* A bound past any date bounds nothing; one before 1970 leaves nothing. */
    before.seconds = INT64_MAX;
    before.nanos = 0;
    Unpuzzle__Rt__V1__NotificationList *list = notify_list(stack, "pager", false, 0, &before, code);
    assert_int_equal(list->n_notifications, 5);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    before.seconds = -5;
    list = notify_list(stack, "pager", false, 0, &before, code);
    assert_string_equal(code, "");
    assert_int_equal(list->n_notifications, 0);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);

    /* Bad requests are answered at once with an empty list. */
    list = notify_list(stack, "a.b", false, 0, NULL, code);
    assert_string_equal(code, "400");
    assert_int_equal(list->n_notifications, 0);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    natsMsg *reply = NULL;
    assert_int_equal(natsConnection_Request(&reply, stack->nc, "notify.v1.list",
                                            "\x0a\x05"
                                            "ab",
                                            4, 3000),
                     NATS_OK);
    const char *hdr = NULL;
    assert_int_equal(natsMsgHeader_Get(reply, "Nats-Service-Error-Code", &hdr), NATS_OK);
    assert_string_equal(hdr, "400");
    natsMsg_Destroy(reply);
    assert_true(notify_metric(&dispatcher, "unpuzzle_notify_list_total{result=\"bad_request\"}") >=
                2);
}

static void wait_metric(const char *series, double want)
{
    int64_t until = rt_time_now_ms() + 15000 * NOTIFY_SLOW;
    double v;
    while ((v = notify_metric(&dispatcher, series)) < want) {
        if (rt_time_now_ms() > until)
            fail_msg("%s is %g, expected %g", series, v, want);
        notify_sleep_ms(50);
    }
}

static void bad_events_are_terminated_and_counted(void **state)
{
    (void)state;
    const char *invalid = "unpuzzle_notify_events_total{outcome=\"invalid\"}";
    const char *unknown = "unpuzzle_notify_events_total{outcome=\"unknown_thread\"}";
    double invalid0 = notify_metric(&dispatcher, invalid);
    double unknown0 = notify_metric(&dispatcher, unknown);
    if (invalid0 < 0)
        invalid0 = 0;
    if (unknown0 < 0)
        unknown0 = 0;

    notify_publish_raw(stack, "evt.v1.question.answered", "\x0a\xff not protobuf", "raw-1");
    /* An instructor of c2 names c1's question: nobody is told. */
    notify_publish(stack, "evt.v1.question.answered", D(question_answered),
                   "{\"eventId\":\"qa-x\",\"questionId\":\"q-1\",\"courseId\":\"c2\","
                   "\"userId\":\"teach-2\",\"answer\":\"gotcha\"}");
    notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                   "{\"eventId\":\"nr-bad\",\"userId\":\"stu-1\",\"title\":\"click\","
                   "\"link\":\"https://evil.example/\"}");
    /* A question nobody recorded: once everything before it is settled. */
    notify_publish(stack, "evt.v1.question.answered", D(question_answered),
                   "{\"eventId\":\"qa-unknown\",\"questionId\":\"q-none\",\"courseId\":\"c1\","
                   "\"userId\":\"teach-1\",\"answer\":\"?\"}");
    wait_metric(invalid, invalid0 + 3);
    wait_metric(unknown, unknown0 + 1);
    expect_quiet(300);
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"
                                            " WHERE source_event_id IN ('qa-x', 'nr-bad',"
                                            " 'qa-unknown')"),
                     0);
}

static void a_purchase_tells_the_instructor(void **state)
{
    (void)state;
    notify_publish(stack, "evt.v1.purchase.completed", D(purchase_completed),
                   "{\"eventId\":\"pu-1\",\"purchaseId\":\"p1\",\"courseId\":\"c1\","
                   "\"userId\":\"buyer-1\",\"amountCents\":1999,\"currency\":\"USD\"}");
    json_t *m = expect_room("teach-1", "notification", "create", 5000 * NOTIFY_SLOW);
    assert_string_equal(notify_payload_str(m, "kind"), "revenue_update");
    assert_string_equal(notify_payload_str(m, "body"), "Your course was purchased: 19.99 USD");
    json_decref(m);
    expect_quiet(300);
}

static void sigterm_stops_cleanly(void **state)
{
    (void)state;
    int status = -1;
    /* Under ASan this is also the leak check of everything above. */
    assert_int_equal(rt_test_proc_stop(dispatcher.proc, SIGTERM, 10000, &status), RT_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_answer_reaches_the_asker_who_was_looked_up),
        cmocka_unit_test(a_resolution_reaches_the_student),
        cmocka_unit_test(a_course_update_reaches_every_student_once),
        cmocka_unit_test(redelivered_events_create_and_publish_nothing),
        cmocka_unit_test(a_read_receipt_marks_read_and_tells_the_other_devices),
        cmocka_unit_test(the_list_pages_newest_first),
        cmocka_unit_test(bad_events_are_terminated_and_counted),
        cmocka_unit_test(a_purchase_tells_the_instructor),
        cmocka_unit_test(sigterm_stops_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
