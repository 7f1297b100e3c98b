/*
 * ws-edge first-frame authentication, as a browser sees it: auth_ok, wrong
 * tokens, the auth deadline, frames before auth, repeated auth, token
 * expiry and refresh. Real nats-server, PostgreSQL, auth and one ws-edge.
 * auth runs with JWT_LEEWAY_S=0 so a token expires when it says.
 */
#include "edge_testutil.h"

static rt_test_stack *stack;
static int port;

static int setup(void **state)
{
    (void)state;
    const char *auth_env[] = {"JWT_LEEWAY_S=0", NULL};
    const char *edge_env[] = {"WS_AUTH_TIMEOUT_MS=500", NULL};
    if (!(stack = edge_test_stack(auth_env)) || edge_test_start_edge(stack, edge_env) < 0)
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

static void auth_ok_fields(void **state)
{
    (void)state;
    rt_testws *ws = ws_connect(port);
    json_t *reply = NULL;
    int64_t now_s = rt_time_now_ms() / 1000;
    char *token = rt_test_stack_token("stu-1", NULL);

    assert_int_equal(rt_testws_auth(&reply, ws, token, EDGE_WAIT_MS), RT_OK);
    assert_string_equal(rt_json_str(reply, "type"), "auth_ok");
    assert_string_equal(rt_json_str(reply, "userId"), "stu-1");
    assert_string_equal(rt_json_str(reply, "role"), "student");
    /* connectionId names the edge, so support can find the instance. */
    assert_true(strncmp(rt_json_str(reply, "connectionId"), "edge-0-", 7) == 0);
    int64_t exp = rfc3339_seconds(rt_json_str(reply, "expiresAt"));
    assert_true(exp >= now_s + 3600 - 5 && exp <= now_s + 3600 + 5);
    char first_id[128];
    snprintf(first_id, sizeof(first_id), "%s", rt_json_str(reply, "connectionId"));
    json_decref(reply);
    free(token);

    /* The platform role comes from auth (realtime.user_roles). */
    rt_testws *teacher = ws_connect(port);
    token = rt_test_stack_token("teach-1", NULL);
    assert_int_equal(rt_testws_auth(&reply, teacher, token, EDGE_WAIT_MS), RT_OK);
    assert_string_equal(rt_json_str(reply, "role"), "instructor");
    /* Each connection has its own id. */
    assert_string_not_equal(rt_json_str(reply, "connectionId"), first_id);
    json_decref(reply);
    free(token);
    ws_expect_alive(ws, "p1");
    rt_testws_destroy(teacher);
    rt_testws_destroy(ws);
}

static void wrong_token_is_unauthorized_then_4401(void **state)
{
    (void)state;
    rt_testws *ws = ws_connect(port);
    char *token = rt_test_stack_token("stu-1", NULL);
    json_t *reply = NULL;

    assert_int_equal(rt_testtoken_flip_signature(token), RT_OK);
    assert_int_equal(rt_testws_auth(&reply, ws, token, EDGE_WAIT_MS), RT_ERR_AUTH);
    assert_string_equal(rt_json_str(reply, "type"), "error");
    assert_string_equal(rt_json_str(reply, "code"), "unauthorized");
    assert_true(strlen(rt_json_str(reply, "message")) > 0);
    json_decref(reply);
    ws_expect_close(ws, 4401, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
    free(token);

    /* Not a JWT at all. */
    ws = ws_connect(port);
    assert_int_equal(rt_testws_auth(&reply, ws, "not-a-token", EDGE_WAIT_MS), RT_ERR_AUTH);
    assert_string_equal(rt_json_str(reply, "code"), "unauthorized");
    json_decref(reply);
    ws_expect_close(ws, 4401, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
}

static void no_auth_frame_closes_4408(void **state)
{
    (void)state;
    uint64_t start = rt_time_mono_ns();
    rt_testws *ws = ws_connect(port);

    ws_expect_close(ws, 4408, EDGE_WAIT_MS);
    int64_t elapsed_ms = (int64_t)((rt_time_mono_ns() - start) / 1000000);
    print_message("closed 4408 after %lld ms (WS_AUTH_TIMEOUT_MS=500)\n", (long long)elapsed_ms);
    assert_true(elapsed_ms >= 400 && elapsed_ms < 2000);
    rt_testws_destroy(ws);
}

static void frames_before_auth_are_unauthorized(void **state)
{
    (void)state;
    rt_testws *ws = ws_connect(port);

    ws_send(ws, "{\"type\":\"subscribe\",\"id\":\"s1\",\"room\":\"course:c1\"}");
    json_t *m = ws_expect_error(ws, "unauthorized");
    assert_string_equal(rt_json_str(m, "id"), "s1");
    json_decref(m);
    ws_send(ws, "{\"type\":\"ping\",\"id\":\"p1\"}");
    json_decref(ws_expect_error(ws, "unauthorized"));
    /* Still open: the real auth goes through. */
    char *token = rt_test_stack_token("stu-1", NULL);
    assert_int_equal(rt_testws_auth(NULL, ws, token, EDGE_WAIT_MS), RT_OK);
    free(token);
    ws_expect_alive(ws, "p2");
    rt_testws_destroy(ws);
}

static void second_auth_is_bad_request(void **state)
{
    (void)state;
    rt_testws *ws = ws_connect(port);
    char *token = rt_test_stack_token("stu-1", NULL);
    char frame[2048];
    json_t *m = NULL;

    /* Two auth frames back to back: the second arrives while the first is
     * being verified. */
    snprintf(frame, sizeof(frame), "{\"type\":\"auth\",\"id\":\"a1\",\"token\":\"%s\"}", token);
    ws_send(ws, frame);
    snprintf(frame, sizeof(frame), "{\"type\":\"auth\",\"id\":\"a2\",\"token\":\"%s\"}", token);
    ws_send(ws, frame);
    bool got_ok = false, got_bad = false;
    for (int i = 0; i < 2; i++) {
        m = ws_next(ws);
        if (strcmp(rt_json_str(m, "type"), "auth_ok") == 0) {
            got_ok = true;
        } else {
            assert_string_equal(rt_json_str(m, "code"), "bad_request");
            assert_string_equal(rt_json_str(m, "id"), "a2");
            got_bad = true;
        }
        json_decref(m);
    }
    assert_true(got_ok && got_bad);

    /* After auth_ok, auth again is refused too (refresh is the way). */
    snprintf(frame, sizeof(frame), "{\"type\":\"auth\",\"id\":\"a3\",\"token\":\"%s\"}", token);
    ws_send(ws, frame);
    m = ws_expect_error(ws, "bad_request");
    assert_string_equal(rt_json_str(m, "id"), "a3");
    json_decref(m);
    ws_expect_alive(ws, "p1");
    free(token);
    rt_testws_destroy(ws);
}

static void expired_token_closes_4401(void **state)
{
    (void)state;
    rt_testws *ws = ws_connect(port);
    char *token = edge_token_ttl("stu-1", 3);
    json_t *reply = NULL;

    assert_int_equal(rt_testws_auth(&reply, ws, token, EDGE_WAIT_MS), RT_OK);
    json_decref(reply);
    ws_expect_alive(ws, "p1");
    /* Nothing is sent for the next 2-3 s; then token_expired and 4401. */
    json_t *m = NULL;
    assert_int_equal(rt_testws_recv_json(&m, ws, 6000), RT_OK);
    assert_string_equal(rt_json_str(m, "type"), "error");
    assert_string_equal(rt_json_str(m, "code"), "token_expired");
    json_decref(m);
    ws_expect_close(ws, 4401, EDGE_WAIT_MS);
    free(token);
    rt_testws_destroy(ws);
}

static void refresh_same_user_extends_session(void **state)
{
    (void)state;
    rt_testws *ws = ws_connect(port);
    char *token = edge_token_ttl("stu-1", 3);
    char *longer = edge_token_ttl("stu-1", 7200);
    char frame[2048];
    json_t *reply = NULL;

    assert_int_equal(rt_testws_auth(&reply, ws, token, EDGE_WAIT_MS), RT_OK);
    int64_t first_exp = rfc3339_seconds(rt_json_str(reply, "expiresAt"));
    json_decref(reply);
    snprintf(frame, sizeof(frame), "{\"type\":\"refresh\",\"id\":\"r1\",\"token\":\"%s\"}", longer);
    ws_send(ws, frame);
    json_t *m = ws_expect_type(ws, "auth_ok");
    assert_string_equal(rt_json_str(m, "userId"), "stu-1");
    int64_t second_exp = rfc3339_seconds(rt_json_str(m, "expiresAt"));
    assert_true(second_exp > first_exp + 7000);
    json_decref(m);
    /* Past the first token's expiry the connection is still open. */
    rt_testws_drain(ws, 4000);
    assert_false(rt_testws_closed(ws));
    assert_int_equal(rt_testws_queued(ws), 0);
    ws_expect_alive(ws, "p1");
    free(token);
    free(longer);
    rt_testws_destroy(ws);
}

static void refresh_other_user_is_unauthorized(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    char *other = rt_test_stack_token("stu-2", NULL);
    char frame[2048];

    snprintf(frame, sizeof(frame), "{\"type\":\"refresh\",\"id\":\"r1\",\"token\":\"%s\"}", other);
    ws_send(ws, frame);
    json_t *m = ws_expect_error(ws, "unauthorized");
    assert_string_equal(rt_json_str(m, "id"), "r1");
    json_decref(m);
    /* The connection keeps its old identity and stays usable. */
    ws_expect_alive(ws, "p1");
    json_decref(ws_join(ws, "s1", "user:stu-1"));
    free(other);
    rt_testws_destroy(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auth_ok_fields),
        cmocka_unit_test(wrong_token_is_unauthorized_then_4401),
        cmocka_unit_test(no_auth_frame_closes_4408),
        cmocka_unit_test(frames_before_auth_are_unauthorized),
        cmocka_unit_test(second_auth_is_bad_request),
        cmocka_unit_test(expired_token_closes_4401),
        cmocka_unit_test(refresh_same_user_extends_session),
        cmocka_unit_test(refresh_other_user_is_unauthorized),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
