/*
 * ws-edge limits and abuse handling, as a browser sees them: frames over
 * WS_MAX_MESSAGE_BYTES (also after permessage-deflate inflation) close 1009,
 * a flood is answered rate_limited and then closed 4429, malformed frames
 * are answered bad_request and too many close 1008, and a client that stops
 * reading is closed 1013 without holding back the other members of its
 * room. Two edges: edge 0 with a tight rate limit (WS_RATE_PER_SEC=5,
 * WS_RATE_BURST=5), edge 1 with WS_SEND_QUEUE_MAX_BYTES=65536.
 */
#include "edge_testutil.h"

#include <unistd.h>

static rt_test_stack *stack;
static int strict_port, port;

static int setup(void **state)
{
    (void)state;
    const char *strict_env[] = {"WS_RATE_PER_SEC=5", "WS_RATE_BURST=5", NULL};
    const char *edge_env[] = {"WS_SEND_QUEUE_MAX_BYTES=65536", "WS_MAX_MESSAGE_BYTES=65536",
                              "WS_MAX_BAD_FRAMES=5", NULL};
    if (!(stack = edge_test_stack(NULL)) || edge_test_start_edge(stack, strict_env) < 0 ||
        edge_test_start_edge(stack, edge_env) < 0)
        return -1;
    strict_port = stack->edges[0].port;
    port = stack->edges[1].port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

/* {"type":"ping","id":"<id>"   <spaces>   } of exactly `size` bytes. */
static char *padded_ping(const char *id, size_t size)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "{\"type\":\"ping\",\"id\":\"%s\"", id);
    char *text = malloc(size + 1);
    memcpy(text, head, (size_t)n);
    memset(text + n, ' ', size - (size_t)n - 1);
    text[size - 1] = '}';
    text[size] = '\0';
    return text;
}

static void big_frame_under_the_cap_is_accepted(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    char *text = padded_ping("big", 65536);

    /* Whole, then in 4 KiB fragments. */
    assert_int_equal(rt_testws_send(ws, RT_WS_OP_TEXT, text, strlen(text), false, 0), RT_OK);
    json_t *m = ws_expect_type(ws, "pong");
    assert_string_equal(rt_json_str(m, "id"), "big");
    json_decref(m);
    assert_int_equal(rt_testws_send(ws, RT_WS_OP_TEXT, text, strlen(text), false, 4096), RT_OK);
    json_decref(ws_expect_type(ws, "pong"));
    free(text);
    rt_testws_destroy(ws);
}

static void frame_over_the_cap_closes_1009(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    char *text = padded_ping("huge", 65537);

    assert_int_equal(rt_testws_send(ws, RT_WS_OP_TEXT, text, strlen(text), false, 0), RT_OK);
    ws_expect_close(ws, 1009, EDGE_WAIT_MS);
    rt_testws_destroy(ws);

    /* The same message in small fragments is just as big. */
    ws = ws_login(port, "stu-1");
    rt_testws_send(ws, RT_WS_OP_TEXT, text, strlen(text), false, 1000);
    ws_expect_close(ws, 1009, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
    free(text);
}

static void deflated_frame_inflating_past_the_cap_closes_1009(void **state)
{
    (void)state;
    rt_testws *ws = NULL;
    rt_testws_options o = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1", .deflate = true};
    char *token = rt_test_stack_token("stu-1", NULL);

    assert_int_equal(rt_testws_connect(&ws, NULL, port, &o), RT_OK);
    print_message("Sec-WebSocket-Extensions: %s\n", rt_testws_extensions(ws));
    assert_true(rt_testws_deflate(ws));
    assert_int_equal(rt_testws_auth(NULL, ws, token, EDGE_WAIT_MS), RT_OK);
    free(token);

    /* A compressed frame under the cap works. */
    const char *small = "{\"type\":\"ping\",\"id\":\"z1\"}";
    assert_int_equal(rt_testws_send(ws, RT_WS_OP_TEXT, small, strlen(small), true, 0), RT_OK);
    json_t *m = ws_expect_type(ws, "pong");
    assert_string_equal(rt_json_str(m, "id"), "z1");
    json_decref(m);

    /* 200 KiB of spaces compress to a few hundred bytes. */
    char *text = padded_ping("bomb", 200 * 1024);
    assert_int_equal(rt_testws_send(ws, RT_WS_OP_TEXT, text, strlen(text), true, 0), RT_OK);
    free(text);
    ws_expect_close(ws, 1009, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
}

static void flood_is_rate_limited_then_closed_4429(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(strict_port, "stu-1");
    char frame[64];
    int pongs = 0, limited = 0;

    /* The auth frame took one of the 5 tokens: of 8 quick pings about 4
     * pass and the rest are answered rate_limited, one answer each. */
    for (int i = 0; i < 8; i++) {
        snprintf(frame, sizeof(frame), "{\"type\":\"ping\",\"id\":\"p%d\"}", i);
        ws_send(ws, frame);
    }
    for (int i = 0; i < 8; i++) {
        json_t *m = ws_next(ws);
        if (strcmp(rt_json_str(m, "type"), "pong") == 0)
            pongs++;
        else if (strcmp(rt_json_str(m, "code"), "rate_limited") == 0)
            limited++;
        json_decref(m);
    }
    print_message("8 quick pings: %d pong, %d rate_limited\n", pongs, limited);
    assert_true(pongs >= 4 && pongs <= 5);
    assert_int_equal(pongs + limited, 8);
    /* A moment later the bucket has refilled: the connection is fine. */
    usleep(1200 * 1000);
    ws_expect_alive(ws, "after-pause");

    /* Flooding on is closed 4429. */
    for (int i = 0; i < 40 && !rt_testws_closed(ws); i++) {
        snprintf(frame, sizeof(frame), "{\"type\":\"ping\",\"id\":\"f%d\"}", i);
        if (rt_testws_send_text(ws, frame) != RT_OK)
            break;
    }
    ws_expect_close(ws, 4429, EDGE_WAIT_MS);
    /* The answers before the close said rate_limited. */
    json_t *m = NULL;
    bool saw_limited = false;
    while (rt_testws_recv_json(&m, ws, 0) == RT_OK) {
        saw_limited |= strcmp(rt_json_str(m, "code"), "rate_limited") == 0;
        json_decref(m);
    }
    assert_true(saw_limited);
    assert_true(edge_metric(strict_port, "unpuzzle_edge_rate_limited_total") >= 10);
    rt_testws_destroy(ws);
}

static void bad_frame_is_bad_request_connection_stays(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");

    ws_send(ws, "{\"type\":\"subscribe\",\"id\":\"m1\"}");
    json_t *m = ws_expect_error(ws, "bad_request");
    assert_string_equal(rt_json_str(m, "id"), "m1");
    print_message("missing room: %s\n", rt_json_str(m, "message"));
    assert_non_null(strstr(rt_json_str(m, "message"), "room"));
    json_decref(m);

    ws_send(ws, "{\"type\":\"ping\",\"id\":\"m2\",\"rooom\":\"x\"}");
    m = ws_expect_error(ws, "bad_request");
    assert_non_null(strstr(rt_json_str(m, "message"), "rooom"));
    json_decref(m);

    ws_send(ws, "{\"type\":");
    json_decref(ws_expect_error(ws, "bad_request"));
    ws_expect_alive(ws, "still-here");
    rt_testws_destroy(ws);
}

static void too_many_bad_frames_close_1008(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");

    /* WS_MAX_BAD_FRAMES=5: five are answered, the sixth closes. A binary
     * frame counts as a bad frame too. */
    assert_int_equal(rt_testws_send(ws, RT_WS_OP_BINARY, "\x01\x02\x03", 3, false, 0), RT_OK);
    json_decref(ws_expect_error(ws, "bad_request"));
    for (int i = 0; i < 4; i++) {
        ws_send(ws, "not json");
        json_decref(ws_expect_error(ws, "bad_request"));
    }
    assert_false(rt_testws_closed(ws));
    ws_send(ws, "{\"type\":\"nope\"}");
    ws_expect_close(ws, 1008, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
}

static void invalid_utf8_closes_1007(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    assert_int_equal(rt_testws_send(ws, RT_WS_OP_TEXT, "{\"type\":\"\xff\xfe\"}", 13, false, 0),
                     RT_OK);
    ws_expect_close(ws, 1007, EDGE_WAIT_MS);
    rt_testws_destroy(ws);
}

static void slow_reader_closed_1013_others_get_everything(void **state)
{
    (void)state;
    rt_testws *slow = NULL;
    rt_testws_options o = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1", .rcvbuf = 4096};
    char *token = rt_test_stack_token("stu-2", NULL);
    rt_testws *fast = ws_login(port, "stu-1");
    static char text[8001];
    char event_id[32];
    const int max_batches = 40, per_batch = 50;
    int batches = 0;

    assert_int_equal(rt_testws_connect(&slow, NULL, port, &o), RT_OK);
    assert_int_equal(rt_testws_auth(NULL, slow, token, EDGE_WAIT_MS), RT_OK);
    free(token);
    json_decref(ws_join(slow, "s", "course:c1"));
    json_t *sub = ws_join(fast, "s", "course:c1");
    uint64_t prev = (uint64_t)rt_json_int(sub, "seq");
    json_decref(sub);
    double drops_before = edge_metric(port, "unpuzzle_edge_queue_drops_total");

    /* 400 KiB per batch for the room; the slow client reads none of it.
     * Besides WS_SEND_QUEUE_MAX_BYTES, the kernel's socket buffers hold a
     * few MiB (tcp_wmem), so keep going until the edge gives up on it. */
    memset(text, 'x', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    bool dropped = false;
    while (!dropped && batches < max_batches) {
        /* In step with the fast client, which is thus never behind. */
        for (int i = 0; i < per_batch; i++) {
            uint64_t seq = 0;
            snprintf(event_id, sizeof(event_id), "ev-slow-%d-%d", batches, i);
            assert_int_equal(
                rt_test_publish_room_confusion(&seq, stack, "course:c1", event_id, "stu-3", text),
                RT_OK);
            json_t *m = ws_next(fast);
            if (rt_json_int(m, "seq") != (long long)seq ||
                rt_json_int(m, "prevSeq") != (long long)prev) {
                char *dump = json_dumps(m, JSON_COMPACT);
                fail_msg("batch %d #%d: expected seq %llu prevSeq %llu, got %.200s", batches, i,
                         (unsigned long long)seq, (unsigned long long)prev, dump);
            }
            prev = seq;
            json_decref(m);
        }
        batches++;
        dropped = edge_metric(port, "unpuzzle_edge_queue_drops_total") > drops_before;
    }
    print_message("slow reader dropped after %d messages (%d KiB)\n", batches * per_batch,
                  batches * per_batch * 8);
    assert_true(dropped);
    assert_false(rt_testws_closed(fast));
    ws_expect_alive(fast, "fast-still-here");

    /* The slow client, reading again, finds part of the stream and then
     * the 1013 close. */
    ws_expect_close(slow, 1013, 5000);
    print_message("slow reader received %zu messages, then 1013 (%s)\n", rt_testws_queued(slow),
                  rt_testws_close_reason(slow));
    assert_true(rt_testws_queued(slow) < (size_t)(batches * per_batch));
    rt_testws_destroy(slow);
    rt_testws_destroy(fast);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(big_frame_under_the_cap_is_accepted),
        cmocka_unit_test(frame_over_the_cap_closes_1009),
        cmocka_unit_test(deflated_frame_inflating_past_the_cap_closes_1009),
        cmocka_unit_test(flood_is_rate_limited_then_closed_4429),
        cmocka_unit_test(bad_frame_is_bad_request_connection_stays),
        cmocka_unit_test(too_many_bad_frames_close_1008),
        cmocka_unit_test(invalid_utf8_closes_1007),
        cmocka_unit_test(slow_reader_closed_1013_others_get_everything),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
