/*
 * ws-edge's HTTP side and the upgrade, as a browser (or a load balancer)
 * sees it: Origin checks before the upgrade, unknown paths, /healthz,
 * /readyz, /metrics, the subprotocol, protocol pings and the application
 * ping a browser uses.
 */
#include "edge_testutil.h"
#include "rt_alloc.h"

static rt_test_stack *stack;
static int port;

static int setup(void **state)
{
    (void)state;
    const char *edge_env[] = {"WS_ALLOWED_ORIGINS=http://localhost:3000, https://app.example.com",
                              NULL};
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

static int upgrade_status(const char *path, const char *origin, const char *subprotocol)
{
    rt_testws *ws = NULL;
    int status = 0;
    rt_testws_options o = {.path = path, .origin = origin, .subprotocol = subprotocol};
    rt_status s = rt_testws_connect(&ws, &status, port, &o);
    if (s == RT_OK)
        assert_int_equal(status, 101);
    rt_testws_destroy(ws);
    return status;
}

static void disallowed_origin_gets_403(void **state)
{
    (void)state;
    assert_int_equal(upgrade_status("/ws", "https://evil.example.com", "unpuzzle.v1"), 403);
    /* A prefix or a different scheme of an allowed origin is not allowed. */
    assert_int_equal(upgrade_status("/ws", "http://localhost:30000", "unpuzzle.v1"), 403);
    assert_int_equal(upgrade_status("/ws", "https://localhost:3000", "unpuzzle.v1"), 403);
    /* Both listed origins are allowed. */
    assert_int_equal(upgrade_status("/ws", "http://localhost:3000", "unpuzzle.v1"), 101);
    assert_int_equal(upgrade_status("/ws", "https://app.example.com", "unpuzzle.v1"), 101);
}

static void unknown_paths_get_404(void **state)
{
    (void)state;
    int status = 0;
    assert_int_equal(rt_test_http_get(&status, NULL, port, "/other", 2000), RT_OK);
    assert_int_equal(status, 404);
    /* An upgrade anywhere but /ws too. */
    assert_int_equal(upgrade_status("/other", RT_TEST_ORIGIN, "unpuzzle.v1"), 404);
}

static void health_readiness_metrics(void **state)
{
    (void)state;
    int status = 0;
    char *body = NULL;
    assert_int_equal(rt_test_http_get(&status, NULL, port, "/healthz", 2000), RT_OK);
    assert_int_equal(status, 200);
    assert_int_equal(rt_test_http_get(&status, NULL, port, "/readyz", 2000), RT_OK);
    assert_int_equal(status, 200);

    rt_testws *ws = ws_login(port, "stu-1");
    assert_int_equal(rt_test_http_get(&status, &body, port, "/metrics", 2000), RT_OK);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "# TYPE unpuzzle_edge_connections gauge"));
    assert_true(rt_test_metric_value(body, "unpuzzle_edge_connections") == 1);
    assert_true(rt_test_metric_value(body, "unpuzzle_edge_auth_total{result=\"ok\"}") >= 1);
    free(body);
    rt_testws_destroy(ws);
}

static void subprotocol_optional(void **state)
{
    (void)state;
    rt_testws *ws = NULL;
    rt_testws_options with = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1"};
    rt_testws_options without = {.origin = RT_TEST_ORIGIN};
    char *token = rt_test_stack_token("stu-1", NULL);

    assert_int_equal(rt_testws_connect(&ws, NULL, port, &with), RT_OK);
    assert_string_equal(rt_testws_subprotocol(ws), "unpuzzle.v1");
    rt_testws_destroy(ws);

    assert_int_equal(rt_testws_connect(&ws, NULL, port, &without), RT_OK);
    assert_string_equal(rt_testws_subprotocol(ws), "");
    assert_int_equal(rt_testws_auth(NULL, ws, token, EDGE_WAIT_MS), RT_OK);
    ws_expect_alive(ws, "p1");
    rt_testws_destroy(ws);

    /* No Origin at all (not a browser): accepted. */
    assert_int_equal(rt_testws_connect(&ws, NULL, port, NULL), RT_OK);
    assert_int_equal(rt_testws_auth(NULL, ws, token, EDGE_WAIT_MS), RT_OK);
    rt_testws_destroy(ws);
    free(token);
}

static void application_and_protocol_ping(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    int64_t now_s = rt_time_now_ms() / 1000;

    ws_send(ws, "{\"type\":\"ping\",\"id\":\"hb-1\"}");
    json_t *m = ws_expect_type(ws, "pong");
    assert_string_equal(rt_json_str(m, "id"), "hb-1");
    int64_t t = rfc3339_seconds(rt_json_str(m, "serverTime"));
    assert_true(t >= now_s - 5 && t <= now_s + 5);
    json_decref(m);

    /* RFC 6455 ping: answered with a pong carrying the same payload. */
    assert_int_equal(rt_testws_send_frame(ws, RT_WS_OP_PING, true, 0, "abc", 3), RT_OK);
    for (int i = 0; i < 100 && rt_testws_pongs_received(ws) == 0; i++)
        rt_testws_drain(ws, 20);
    assert_int_equal(rt_testws_pongs_received(ws), 1);

    /* A client close is answered with a close (code echoed). */
    assert_int_equal(rt_testws_send_close(ws, 1000, "bye"), RT_OK);
    ws_expect_close(ws, 1000, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
}

/* WS_STATIC_DIR (development): files of that folder on the same port; the
 * admin endpoints and /ws keep working; nothing outside the folder. */
static void static_folder_in_development(void **state)
{
    (void)state;
    char *dir = rt_test_tmpdir("edge-static");
    char *index = rt_asprintf("%s/index.html", dir);
    FILE *f = fopen(index, "w");
    assert_non_null(f);
    fputs("<h1>demo</h1>", f);
    fclose(f);
    char env_dir[600];
    snprintf(env_dir, sizeof(env_dir), "WS_STATIC_DIR=%s", dir);
    const char *env[] = {env_dir, NULL};
    int idx = edge_test_start_edge(stack, env);
    assert_true(idx >= 0);
    int p = stack->edges[idx].port;
    int status = 0;
    char *body = NULL;
    assert_int_equal(rt_test_http_get(&status, &body, p, "/", 2000), RT_OK);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "<h1>demo</h1>"));
    free(body);
    body = NULL;
    assert_int_equal(rt_test_http_get(&status, NULL, p, "/healthz", 2000), RT_OK);
    assert_int_equal(status, 200);
    assert_int_equal(rt_test_http_get(&status, NULL, p, "/missing.js", 2000), RT_OK);
    assert_int_equal(status, 404);
    assert_int_equal(rt_test_http_get(&status, NULL, p, "/../etc/passwd", 2000), RT_OK);
    assert_int_equal(status, 404);
    /* The edge without it serves no files. */
    assert_int_equal(rt_test_http_get(&status, NULL, port, "/", 2000), RT_OK);
    assert_int_equal(status, 404);
    rt_test_rmtree(dir);
    free(index);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disallowed_origin_gets_403),
        cmocka_unit_test(unknown_paths_get_404),
        cmocka_unit_test(health_readiness_metrics),
        cmocka_unit_test(subprotocol_optional),
        cmocka_unit_test(application_and_protocol_ping),
        cmocka_unit_test(static_folder_in_development),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
