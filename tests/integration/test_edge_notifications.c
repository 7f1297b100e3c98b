/*
 * Live Q&A and notifications end to end, through the real services:
 * nats-server, PostgreSQL, auth, ws-edge and the notification-dispatcher.
 *
 * A student asks (question/create) -> the instructor answers
 * (question/update) -> both of the student's devices, in their user: room,
 * get the answer and the notification; notifications/list shows it unread;
 * reading it on one device marks it read (list) and tells the other device.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "edge_testutil.h"

static rt_test_stack *stack;
static rt_test_proc *dispatcher;
static int port;

static int setup(void **state)
{
    (void)state;
    char nats_url[128], db_url[256], admin[32];
    if (!(stack = edge_test_stack(NULL)) || edge_test_start_edge(stack, NULL) < 0)
        return -1;
    port = stack->edges[0].port;
    int admin_port = rt_test_free_port();
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", rt_test_nats_url(stack->nats));
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(stack->pg));
    snprintf(admin, sizeof(admin), "ADMIN_PORT=%d", admin_port);
    const char *env[] = {nats_url, db_url, admin, "LOG_LEVEL=debug", NULL};
    if (rt_test_proc_start(&dispatcher, "notification-dispatcher", NULL, env) != RT_OK ||
        rt_test_proc_wait_http(dispatcher, admin_port, "/readyz", 200, 20000) != RT_OK) {
        fprintf(stderr, "notification-dispatcher: %s\n", rt_error_message());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_proc_destroy(dispatcher);
    rt_test_stack_destroy(stack);
    return 0;
}

/* The next frame for request `id`, skipping room traffic. */
static json_t *reply_to(rt_testws *ws, const char *id)
{
    for (;;) {
        json_t *m = ws_next(ws);
        if (json_is_string(json_object_get(m, "id")) && strcmp(rt_json_str(m, "id"), id) == 0)
            return m;
        json_decref(m);
    }
}

/* The next room message of type/action (others are skipped). */
static json_t *room_message(rt_testws *ws, const char *type, const char *action)
{
    for (;;) {
        json_t *m = ws_next(ws);
        if (json_object_get(m, "seq") && strcmp(rt_json_str(m, "type"), type) == 0 &&
            strcmp(rt_json_str(m, "action"), action) == 0)
            return m;
        json_decref(m);
    }
}

static json_t *list(rt_testws *ws, const char *id)
{
    char frame[160];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"notifications\",\"action\":\"list\",\"id\":\"%s\","
             "\"payload\":{\"unreadOnly\":true,\"limit\":10}}",
             id);
    ws_send(ws, frame);
    json_t *m = reply_to(ws, id);
    if (strcmp(rt_json_str(m, "type"), "notifications") != 0) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("notifications list: %s", text);
    }
    return m;
}

static void question_answer_notification_read(void **state)
{
    (void)state;
    rt_testws *phone = ws_login(port, "stu-1");
    rt_testws *laptop = ws_login(port, "stu-1");
    rt_testws *teacher = ws_login(port, "teach-1");
    json_decref(ws_join(phone, "u", "user:stu-1"));
    json_decref(ws_join(laptop, "u", "user:stu-1"));
    json_decref(ws_join(teacher, "c", "course:c1"));

    ws_send(phone, "{\"type\":\"question\",\"action\":\"create\",\"id\":\"q1\",\"payload\":"
                   "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"text\":\"why 42?\"}}");
    json_t *ack = reply_to(phone, "q1");
    assert_string_equal(rt_json_str(ack, "type"), "ack");
    char question_id[64];
    snprintf(question_id, sizeof(question_id), "%s", rt_json_str(ack, "questionId"));
    json_decref(ack);
    /* The instructor sees the question live. */
    json_t *q = room_message(teacher, "question", "create");
    assert_string_equal(rt_json_str(json_object_get(q, "payload"), "questionId"), question_id);
    json_decref(q);

    char frame[512];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"question\",\"action\":\"update\",\"id\":\"a1\",\"payload\":"
             "{\"courseId\":\"c1\",\"questionId\":\"%s\",\"answer\":\"because\"}}",
             question_id);
    ws_send(teacher, frame);
    ack = reply_to(teacher, "a1");
    assert_string_equal(rt_json_str(ack, "type"), "ack");
    json_decref(ack);

    /* Both devices: the answer and the notification. */
    char notification_id[64] = "";
    rt_testws *devices[] = {phone, laptop};
    for (int d = 0; d < 2; d++) {
        json_t *answer = room_message(devices[d], "question", "update");
        assert_string_equal(rt_json_str(json_object_get(answer, "payload"), "answer"), "because");
        json_decref(answer);
        json_t *n = room_message(devices[d], "notification", "create");
        json_t *payload = json_object_get(n, "payload");
        assert_string_equal(rt_json_str(payload, "userId"), "stu-1");
        if (d == 0)
            snprintf(notification_id, sizeof(notification_id), "%s",
                     rt_json_str(payload, "notificationId"));
        else
            assert_string_equal(rt_json_str(payload, "notificationId"), notification_id);
        json_decref(n);
    }

    /* Unread in the list (newest first), read on the phone, gone on both. */
    json_t *l = list(laptop, "l1");
    json_t *items = json_object_get(json_object_get(l, "payload"), "notifications");
    assert_true(json_array_size(items) >= 1);
    assert_string_equal(rt_json_str(json_array_get(items, 0), "notificationId"), notification_id);
    json_decref(l);

    snprintf(frame, sizeof(frame),
             "{\"type\":\"notification\",\"action\":\"update\",\"id\":\"r1\",\"payload\":"
             "{\"notificationIds\":[\"%s\"]}}",
             notification_id);
    ws_send(phone, frame);
    ack = reply_to(phone, "r1");
    assert_string_equal(rt_json_str(ack, "type"), "ack");
    json_decref(ack);
    json_t *read = room_message(laptop, "notification", "update");
    json_t *ids = json_object_get(json_object_get(read, "payload"), "notificationIds");
    assert_string_equal(json_string_value(json_array_get(ids, 0)), notification_id);
    json_decref(read);
    int64_t until = rt_time_now_ms() + 5000;
    for (;;) {
        l = list(laptop, "l2");
        json_t *unread = json_object_get(json_object_get(l, "payload"), "notifications");
        size_t n = json_array_size(unread);
        json_decref(l);
        if (n == 0)
            break;
        if (rt_time_now_ms() > until)
            fail_msg("still %zu unread after reading on the other device", n);
        nats_Sleep(100);
    }
    rt_testws_destroy(teacher);
    rt_testws_destroy(laptop);
    rt_testws_destroy(phone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(question_answer_notification_read),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
