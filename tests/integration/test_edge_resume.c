/*
 * Resume with `since` against the real stack: missed messages are replayed
 * in order before live ones, with no gap and no duplicate at the seam; and
 * recovered:false, with nothing pretended, when history no longer reaches
 * back (per-room retention passed), when the replay would pass
 * ROOMS_MAX_RESUME, or when the stream's epoch changed. And messages the
 * edge's NATS subscription dropped (a slow consumer) are read back from the
 * stream, so clients still get every one, in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "edge_testutil.h"

static rt_test_stack *stack;

static int setup(void **state)
{
    (void)state;
    /* Small limits so each case can pass them with a few messages. */
    const char *edge_env[] = {"ROOMS_MAX_PER_ROOM=6", "ROOMS_MAX_RESUME=4", NULL};
    if (!(stack = edge_test_stack(NULL)) || rt_test_stack_start_edges(stack, 2, edge_env) != RT_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static uint64_t publish(const char *room, const char *event_id)
{
    uint64_t seq = 0;
    assert_int_equal(rt_test_publish_room_confusion(&seq, stack, room, event_id, "stu-2", "x"),
                     RT_OK);
    return seq;
}

/* Joins `room` and returns the room position, copying the epoch. */
static uint64_t join(rt_testws *ws, const char *room, char epoch[80])
{
    json_t *sub = ws_join(ws, "s1", room);
    uint64_t seq = (uint64_t)rt_json_int(sub, "seq");
    snprintf(epoch, 80, "%s", rt_json_str(sub, "epoch"));
    json_decref(sub);
    return seq;
}

static json_t *resubscribe(rt_testws *ws, const char *room, uint64_t since, const char *epoch)
{
    char frame[256];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"subscribe\",\"id\":\"r1\",\"room\":\"%s\","
             "\"since\":{\"seq\":%llu,\"epoch\":\"%s\"}}",
             room, (unsigned long long)since, epoch);
    ws_send(ws, frame);
    return ws_expect_type(ws, "subscribed");
}

static void expect_message(rt_testws *ws, uint64_t seq, uint64_t prev)
{
    json_t *m = ws_next(ws);
    if (rt_json_int(m, "seq") != (long long)seq || rt_json_int(m, "prevSeq") != (long long)prev) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("expected seq %llu prevSeq %llu, got %s", (unsigned long long)seq,
                 (unsigned long long)prev, text);
    }
    json_decref(m);
}

static void missed_messages_replayed_then_live(void **state)
{
    (void)state;
    char epoch[80];
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    uint64_t first = publish("course:c1", "ev-r-0");
    uint64_t seen = join(ws, "course:c1", epoch);
    assert_int_equal(seen, first);
    rt_testws_destroy(ws);

    uint64_t a = publish("course:c1", "ev-r-1");
    uint64_t b = publish("course:c1", "ev-r-2");
    uint64_t c = publish("course:c1", "ev-r-3");

    /* Back on the other edge (new to the room), like after a crash. */
    ws = ws_login(stack->edges[1].port, "stu-1");
    json_t *sub = resubscribe(ws, "course:c1", seen, epoch);
    assert_true(json_is_true(json_object_get(sub, "recovered")));
    assert_int_equal(rt_json_int(sub, "seq"), (long long)c);
    json_decref(sub);
    expect_message(ws, a, seen);
    expect_message(ws, b, a);
    expect_message(ws, c, b);
    /* The seam: the next live message follows with no gap and no double. */
    uint64_t d = publish("course:c1", "ev-r-4");
    expect_message(ws, d, c);
    rt_testws_drain(ws, 300);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
}

static void history_window_passed_is_not_recovered(void **state)
{
    (void)state;
    char epoch[80];
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    publish("course:c2", "ev-w-0");
    uint64_t seen = 0;
    rt_testws_destroy(ws);
    ws = ws_login(stack->edges[0].port, "stu-3");
    seen = join(ws, "course:c2", epoch);
    rt_testws_destroy(ws);
    /* 7 more: with 6 kept per room, the one the client saw is gone. */
    uint64_t last = 0;
    char id[32];
    for (int i = 1; i <= 7; i++) {
        snprintf(id, sizeof(id), "ev-w-%d", i);
        last = publish("course:c2", id);
    }
    ws = ws_login(stack->edges[1].port, "stu-3");
    json_t *sub = resubscribe(ws, "course:c2", seen, epoch);
    assert_false(json_is_true(json_object_get(sub, "recovered")));
    assert_int_equal(rt_json_int(sub, "seq"), (long long)last);
    json_decref(sub);
    /* Nothing older is pretended. */
    rt_testws_drain(ws, 500);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
}

static void too_many_to_replay_is_not_recovered(void **state)
{
    (void)state;
    char epoch[80];
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    publish("lesson:l1", "ev-m-0");
    uint64_t seen = join(ws, "lesson:l1", epoch);
    rt_testws_destroy(ws);
    /* 5 missed, within the 6 kept but past ROOMS_MAX_RESUME=4. */
    char id[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "ev-m-%d", i);
        publish("lesson:l1", id);
    }
    ws = ws_login(stack->edges[0].port, "stu-1");
    json_t *sub = resubscribe(ws, "lesson:l1", seen, epoch);
    assert_false(json_is_true(json_object_get(sub, "recovered")));
    json_decref(sub);
    rt_testws_drain(ws, 500);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
}

static void other_epoch_is_not_recovered(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    json_t *sub = resubscribe(ws, "course:c1", 1, "an-older-stream");
    assert_false(json_is_true(json_object_get(sub, "recovered")));
    json_decref(sub);
    rt_testws_drain(ws, 300);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
}

/* A burst straight into the stream (core publishes, as fast as NATS takes
 * them) to an edge whose room subscription buffers one message: nats.c drops
 * most of them as a slow consumer; the edge reads the gaps back from the
 * stream and the client still gets every message once, in order. */
static void slow_consumer_drops_are_repaired(void **state)
{
    (void)state;
    const char *env[] = {"WS_NATS_PENDING_MSGS=1", NULL};
    int idx = edge_test_start_edge(stack, env);
    assert_true(idx >= 0);
    int port = stack->edges[idx].port;
    char epoch[80];
    rt_testws *ws = ws_login(port, "stu-1");
    uint64_t start = join(ws, "user:stu-1", epoch);

    enum { BURST = 400 };
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__ConfusionCreated cc = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    rm.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_CONFUSION;
    rm.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_CREATE;
    rm.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED;
    rm.confusion_created = &cc;
    cc.course_id = "c3";
    cc.user_id = "stu-2";
    for (int i = 0; i < BURST; i++) {
        char id[32];
        snprintf(id, sizeof(id), "ev-burst-%d", i);
        rm.event_id = id;
        cc.event_id = id;
        uint8_t buf[512];
        size_t len = unpuzzle__rt__v1__room_message__pack(&rm, buf);
        assert_int_equal(natsConnection_Publish(stack->nc, "rt.v1.room.user.stu-1", buf, (int)len),
                         NATS_OK);
    }
    assert_int_equal(natsConnection_FlushTimeout(stack->nc, 5000), NATS_OK);

    uint64_t prev = start;
    for (int i = 0; i < BURST; i++) {
        json_t *m = ws_next(ws);
        uint64_t seq = (uint64_t)rt_json_int(m, "seq");
        if (rt_json_int(m, "prevSeq") != (long long)prev || seq <= prev) {
            char *text = json_dumps(m, JSON_COMPACT);
            fail_msg("message %d after seq %llu: %s", i, (unsigned long long)prev, text);
        }
        prev = seq;
        json_decref(m);
    }
    rt_testws_drain(ws, 300);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
    /* The burst did overflow the subscription, and the gaps were filled. */
    assert_true(edge_metric(port, "unpuzzle_edge_nats_slow_consumer_total") > 0);
    assert_true(edge_metric(port, "unpuzzle_edge_gap_repairs_total{result=\"repaired\"}") > 0);
    assert_true(edge_metric(port, "unpuzzle_edge_gap_repaired_messages_total") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(missed_messages_replayed_then_live),
        cmocka_unit_test(history_window_passed_is_not_recovered),
        cmocka_unit_test(too_many_to_replay_is_not_recovered),
        cmocka_unit_test(other_epoch_is_not_recovered),
        cmocka_unit_test(slow_consumer_drops_are_repaired),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
