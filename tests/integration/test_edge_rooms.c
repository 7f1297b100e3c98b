/*
 * ws-edge rooms, as a browser sees them: subscribe to rooms it may join,
 * "forbidden" for the others (the connection stays open), bad room names,
 * unsubscribe, and the per-connection room limit (WS_MAX_ROOMS_PER_CONN=3).
 */
#include "edge_testutil.h"

static rt_test_stack *stack;
static int port;

static int setup(void **state)
{
    (void)state;
    const char *edge_env[] = {"WS_MAX_ROOMS_PER_CONN=3", NULL};
    if (!(stack = edge_test_stack(NULL)) || edge_test_start_edge(stack, edge_env) < 0)
        return -1;
    port = stack->edges[0].port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static void student_subscribes_to_own_course(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    uint64_t seq = 0;

    json_t *m = ws_join(ws, "c1", "course:c1");
    assert_string_equal(rt_json_str(m, "type"), "subscribed");
    assert_string_equal(rt_json_str(m, "id"), "c1");
    assert_string_equal(rt_json_str(m, "room"), "course:c1");
    assert_true(strlen(rt_json_str(m, "epoch")) > 0);
    assert_int_equal(rt_json_int(m, "seq"), 0); /* nothing published yet */
    assert_true(json_is_true(json_object_get(m, "recovered")));
    char epoch[80];
    snprintf(epoch, sizeof(epoch), "%s", rt_json_str(m, "epoch"));
    json_decref(m);

    /* A room with history reports its last sequence. */
    assert_int_equal(
        rt_test_publish_room_confusion(&seq, stack, "lesson:l1", "ev-r1", "stu-2", "hello"), RT_OK);
    m = ws_join(ws, "l1", "lesson:l1");
    assert_int_equal(rt_json_int(m, "seq"), (long long)seq);
    assert_string_equal(rt_json_str(m, "epoch"), epoch);
    json_decref(m);
    /* The own user room too. */
    json_decref(ws_join(ws, "u1", "user:stu-1"));
    rt_testws_destroy(ws);
}

static void instructor_subscribes_to_own_rooms(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "teach-1");
    json_decref(ws_join(ws, "i1", "instructor:teach-1"));
    json_decref(ws_join(ws, "c1", "course:c1"));
    rt_testws_destroy(ws);
}

static void expect_forbidden(rt_testws *ws, const char *id, const char *room)
{
    json_t *m = NULL;
    assert_int_equal(rt_testws_subscribe(&m, ws, id, room, EDGE_WAIT_MS), RT_ERR_AUTH);
    assert_string_equal(rt_json_str(m, "type"), "error");
    assert_string_equal(rt_json_str(m, "code"), "forbidden");
    assert_string_equal(rt_json_str(m, "id"), id);
    assert_string_equal(rt_json_str(m, "room"), room);
    json_decref(m);
}

static void forbidden_rooms_keep_connection_open(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");

    expect_forbidden(ws, "f1", "course:c2");          /* not enrolled */
    expect_forbidden(ws, "f2", "lesson:nope");        /* unknown lesson */
    expect_forbidden(ws, "f3", "user:stu-2");         /* another user's room */
    expect_forbidden(ws, "f4", "instructor:teach-1"); /* an instructor's room */
    expect_forbidden(ws, "f5", "instructor:stu-1");   /* not an instructor at all */
    ws_expect_alive(ws, "p1");
    /* Denials are not counted against the room limit. */
    json_decref(ws_join(ws, "ok1", "course:c1"));
    rt_testws_destroy(ws);
}

static void bad_room_names_are_bad_request(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    const char *bad[] = {"class:1", "course:a.b", "course:"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char frame[160];
        snprintf(frame, sizeof(frame), "{\"type\":\"subscribe\",\"id\":\"b%zu\",\"room\":\"%s\"}",
                 i, bad[i]);
        ws_send(ws, frame);
        json_t *m = ws_expect_error(ws, "bad_request");
        char id[8];
        snprintf(id, sizeof(id), "b%zu", i);
        assert_string_equal(rt_json_str(m, "id"), id);
        assert_true(strlen(rt_json_str(m, "message")) > 0);
        json_decref(m);
    }
    ws_expect_alive(ws, "p1");
    rt_testws_destroy(ws);
}

static void unsubscribe_and_not_found(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");

    json_decref(ws_join(ws, "s1", "course:c1"));
    ws_send(ws, "{\"type\":\"unsubscribe\",\"id\":\"u1\",\"room\":\"course:c1\"}");
    json_t *m = ws_expect_type(ws, "unsubscribed");
    assert_string_equal(rt_json_str(m, "id"), "u1");
    assert_string_equal(rt_json_str(m, "room"), "course:c1");
    json_decref(m);
    /* Twice, or a room never joined: not_found. */
    ws_send(ws, "{\"type\":\"unsubscribe\",\"id\":\"u2\",\"room\":\"course:c1\"}");
    m = ws_expect_error(ws, "not_found");
    assert_string_equal(rt_json_str(m, "id"), "u2");
    json_decref(m);
    ws_send(ws, "{\"type\":\"unsubscribe\",\"id\":\"u3\",\"room\":\"lesson:l2\"}");
    json_decref(ws_expect_error(ws, "not_found"));
    /* Messages of a left room no longer arrive. */
    assert_int_equal(
        rt_test_publish_room_confusion(NULL, stack, "course:c1", "ev-left-1", "stu-2", "x"), RT_OK);
    rt_testws_drain(ws, 300);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
}

static void room_limit_per_connection(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");

    json_decref(ws_join(ws, "r1", "course:c1"));
    json_decref(ws_join(ws, "r2", "lesson:l1"));
    json_decref(ws_join(ws, "r3", "user:stu-1"));
    ws_send(ws, "{\"type\":\"subscribe\",\"id\":\"r4\",\"room\":\"lesson:l2\"}");
    json_t *m = ws_expect_error(ws, "too_many_rooms");
    assert_string_equal(rt_json_str(m, "id"), "r4");
    json_decref(m);
    /* Leaving one makes room for another. */
    ws_send(ws, "{\"type\":\"unsubscribe\",\"id\":\"u1\",\"room\":\"lesson:l1\"}");
    json_decref(ws_expect_type(ws, "unsubscribed"));
    json_decref(ws_join(ws, "r5", "lesson:l2"));
    rt_testws_destroy(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(student_subscribes_to_own_course),
        cmocka_unit_test(instructor_subscribes_to_own_rooms),
        cmocka_unit_test(forbidden_rooms_keep_connection_open),
        cmocka_unit_test(bad_room_names_are_bad_request),
        cmocka_unit_test(unsubscribe_and_not_found),
        cmocka_unit_test(room_limit_per_connection),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
