/*
 * notification-dispatcher when PostgreSQL goes away (real nats-server,
 * PostgreSQL stopped and started again, the service binary):
 *
 *   - /readyz turns 503 and notify.v1.list answers at once with an error
 *     (an empty list with Nats-Service-Error-Code 503), never a hang;
 *   - events published meanwhile wait in the stream (nak'ed, redelivered)
 *     and nothing reaches the rooms;
 *   - once PostgreSQL is back the service is ready again by itself and
 *     every waiting event is processed, each notification stored and
 *     delivered once — the answer's asker looked up from a question created
 *     during the outage too;
 *   - SIGTERM drains and exits 0.
 */
#include "notify_testutil.h"

static rt_test_stack *stack;
static notify_proc dispatcher;
static natsSubscription *rooms;

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK ||
        rt_test_pg_exec(stack->pg, "INSERT INTO realtime.course_members (course_id, user_id, role)"
                                   " SELECT 'pc', 'pc-' || i, 'student'"
                                   " FROM generate_series(1, 20) i;") != RT_OK ||
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

static void events_wait_for_postgres_then_go_through(void **state)
{
    (void)state;
    assert_int_equal(rt_test_pg_stop(stack->pg), RT_OK);
    int64_t stopped = rt_time_now_ms();
    assert_int_equal(rt_test_proc_wait_http(dispatcher.proc, dispatcher.port, "/readyz", 503,
                                            10000 * NOTIFY_SLOW),
                     RT_OK);
    printf("not ready %" PRId64 " ms after PostgreSQL stopped\n", rt_time_now_ms() - stopped);

    int64_t asked = rt_time_now_ms();
    char code[8];
    Unpuzzle__Rt__V1__NotificationList *list = notify_list(stack, "pc-1", false, 0, NULL, code);
    assert_string_equal(code, "503");
    assert_int_equal(list->n_notifications, 0);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    printf("list answered in %" PRId64 " ms while PostgreSQL is down\n", rt_time_now_ms() - asked);

    notify_publish(stack, "evt.v1.question.created", D(question_created),
                   "{\"eventId\":\"qc-1\",\"questionId\":\"q-1\",\"courseId\":\"pc\","
                   "\"userId\":\"pc-1\",\"text\":\"why?\"}");
    notify_publish(stack, "evt.v1.question.answered", D(question_answered),
                   "{\"eventId\":\"qa-1\",\"questionId\":\"q-1\",\"courseId\":\"pc\","
                   "\"userId\":\"teacher\",\"answer\":\"because\"}");
    for (int i = 1; i <= 3; i++)
        notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                       "{\"eventId\":\"nr-%d\",\"userId\":\"pc-2\",\"title\":\"t%d\"}", i, i);
    notify_publish(stack, "evt.v1.course.updated", D(course_updated),
                   "{\"eventId\":\"cu-1\",\"courseId\":\"pc\",\"summary\":\"new\"}");

    /* Nothing can be stored: nothing is shown, the events are retried. */
    assert_null(notify_room_next(rooms, 1500));
    assert_true(notify_metric(&dispatcher, "unpuzzle_notify_events_total{outcome=\"retried\"}") >
                0);
    assert_int_equal(notify_metric(&dispatcher, "unpuzzle_notify_postgres_up"), 0);

    assert_int_equal(rt_test_pg_start_again(stack->pg), RT_OK);
    int64_t back = rt_time_now_ms();
    assert_int_equal(rt_test_proc_wait_http(dispatcher.proc, dispatcher.port, "/readyz", 200,
                                            10000 * NOTIFY_SLOW),
                     RT_OK);
    printf("ready again %" PRId64 " ms after PostgreSQL returned\n", rt_time_now_ms() - back);

    /* 2 (answer + notification) + 3 + 20 course members. */
    json_t *seen = json_object();
    int got = 0;
    json_t *m;
    while (got < 25 && (m = notify_room_next(rooms, 15000 * NOTIFY_SLOW)) != NULL) {
        char key[128];
        snprintf(key, sizeof(key), "%s/%s:%s", rt_json_str(m, "subject"), rt_json_str(m, "type"),
                 strcmp(rt_json_str(m, "type"), "notification") == 0
                     ? notify_payload_str(m, "sourceEventId")
                     : rt_json_str(m, "eventId"));
        if (json_object_get(seen, key))
            fail_msg("%s delivered twice", key);
        json_object_set_new(seen, key, json_true());
        got++;
        json_decref(m);
    }
    printf("all %d waiting deliveries made %" PRId64 " ms after PostgreSQL returned\n", got,
           rt_time_now_ms() - back);
    assert_int_equal(got, 25);
    assert_non_null(json_object_get(seen, "rtd.v1.room.user.pc-1/question:qa-1"));
    assert_non_null(json_object_get(seen, "rtd.v1.room.user.pc-1/notification:qa-1"));
    assert_non_null(json_object_get(seen, "rtd.v1.room.user.pc-2/notification:nr-3"));
    assert_non_null(json_object_get(seen, "rtd.v1.room.user.pc-20/notification:cu-1"));
    json_decref(seen);
    assert_null(notify_room_next(rooms, 700));
    assert_true(notify_wait_sql(stack, 24, 5000,
                                "SELECT count(*) FROM realtime.notifications WHERE published"));

    list = notify_list(stack, "pc-2", true, 0, NULL, code);
    assert_string_equal(code, "");
    assert_int_equal(list->n_notifications, 4); /* 3 to pc-2 and the course's */
    assert_int_equal(list->unread_count, 4);
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
}

static void sigterm_drains_and_exits_zero(void **state)
{
    (void)state;
    int status = -1;
    int64_t start = rt_time_now_ms();
    assert_int_equal(rt_test_proc_stop(dispatcher.proc, SIGTERM, 10000, &status), RT_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    printf("stopped in %" PRId64 " ms\n", rt_time_now_ms() - start);
    assert_int_equal(rt_test_proc_wait_log(dispatcher.proc, "\"stopped\"", 1000), RT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_wait_for_postgres_then_go_through),
        cmocka_unit_test(sigterm_drains_and_exits_zero),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
