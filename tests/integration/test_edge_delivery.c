/*
 * Room delivery through ws-edge: RoomMessages published to the ROOMS stream
 * reach the browser in order with seq/prevSeq and the documented fields,
 * several edges deliver the same room (horizontal scale), an edge without
 * members of a room gets none of its traffic (interest-based routing), and
 * a duplicate publish (same event_id) is delivered once. Three edges.
 */
#include "edge_testutil.h"

static rt_test_stack *stack;

static int setup(void **state)
{
    (void)state;
    if (!(stack = edge_test_stack(NULL)) || rt_test_stack_start_edges(stack, 3, NULL) != RT_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

/* The next object must be the room message with this seq and prevSeq. */
static json_t *expect_room_message(rt_testws *ws, const char *room, uint64_t seq, uint64_t prev_seq)
{
    json_t *m = ws_next(ws);
    if (strcmp(rt_json_str(m, "room"), room) != 0 || rt_json_int(m, "seq") != (long long)seq ||
        rt_json_int(m, "prevSeq") != (long long)prev_seq) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("expected %s seq %llu prevSeq %llu, got %s", room, (unsigned long long)seq,
                 (unsigned long long)prev_seq, text);
    }
    return m;
}

static void messages_arrive_in_order_with_fields(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    uint64_t seq1 = 0, seq2 = 0;
    int64_t now_s = rt_time_now_ms() / 1000;

    json_t *sub = ws_join(ws, "s1", "course:c1");
    uint64_t room_seq = (uint64_t)rt_json_int(sub, "seq");
    json_decref(sub);
    assert_int_equal(rt_test_publish_room_confusion(&seq1, stack, "course:c1", "ev-order-1",
                                                    "stu-2", "first \"quoted\"\nline"),
                     RT_OK);
    assert_int_equal(
        rt_test_publish_room_confusion(&seq2, stack, "course:c1", "ev-order-2", "stu-2", "second"),
        RT_OK);
    assert_true(seq2 > seq1 && seq1 > room_seq);

    json_t *m = expect_room_message(ws, "course:c1", seq1, room_seq);
    assert_string_equal(rt_json_str(m, "type"), "confusion");
    assert_string_equal(rt_json_str(m, "action"), "create");
    assert_string_equal(rt_json_str(m, "userId"), "stu-2");
    assert_string_equal(rt_json_str(m, "eventId"), "ev-order-1");
    int64_t ts = rfc3339_seconds(rt_json_str(m, "timestamp"));
    assert_true(ts >= now_s - 5 && ts <= now_s + 5);
    json_t *payload = json_object_get(m, "payload");
    assert_true(json_is_object(payload));
    assert_string_equal(rt_json_str(payload, "courseId"), "c1");
    assert_string_equal(rt_json_str(payload, "lessonId"), "l1");
    assert_string_equal(rt_json_str(payload, "confusionId"), "ev-order-1");
    /* Text is relayed as data, escaped, newline and quotes intact. */
    assert_string_equal(rt_json_str(payload, "text"), "first \"quoted\"\nline");
    assert_true(json_real_value(json_object_get(payload, "videoTimestampSec")) == 12.5);
    json_decref(m);
    m = expect_room_message(ws, "course:c1", seq2, seq1);
    assert_string_equal(rt_json_str(m, "eventId"), "ev-order-2");
    json_decref(m);
    rt_testws_destroy(ws);
}

static void two_edges_deliver_the_same_room(void **state)
{
    (void)state;
    rt_testws *a = ws_login(stack->edges[0].port, "stu-1");
    rt_testws *b = ws_login(stack->edges[1].port, "stu-2");
    rt_testws *t = ws_login(stack->edges[1].port, "teach-1");
    uint64_t seqs[6] = {0};
    char event_id[32];

    json_t *sa = ws_join(a, "s", "course:c1");
    json_t *sb = ws_join(b, "s", "course:c1");
    json_t *st = ws_join(t, "s", "course:c1");
    /* Same room, same position, same epoch, whichever edge answers. */
    assert_int_equal(rt_json_int(sa, "seq"), rt_json_int(sb, "seq"));
    assert_string_equal(rt_json_str(sa, "epoch"), rt_json_str(sb, "epoch"));
    seqs[0] = (uint64_t)rt_json_int(sa, "seq");
    json_decref(sa);
    json_decref(sb);
    json_decref(st);
    for (int i = 1; i <= 5; i++) {
        snprintf(event_id, sizeof(event_id), "ev-scale-%d", i);
        assert_int_equal(
            rt_test_publish_room_confusion(&seqs[i], stack, "course:c1", event_id, "stu-1", "x"),
            RT_OK);
    }
    rt_testws *all[3] = {a, b, t};
    for (int k = 0; k < 3; k++) {
        for (int i = 1; i <= 5; i++) {
            json_t *m = expect_room_message(all[k], "course:c1", seqs[i], seqs[i - 1]);
            snprintf(event_id, sizeof(event_id), "ev-scale-%d", i);
            assert_string_equal(rt_json_str(m, "eventId"), event_id);
            json_decref(m);
        }
    }
    rt_testws_destroy(a);
    rt_testws_destroy(b);
    rt_testws_destroy(t);
}

static void edge_without_members_gets_no_room_traffic(void **state)
{
    (void)state;
    int quiet_port = stack->edges[2].port;
    rt_testws *member = ws_login(stack->edges[0].port, "stu-1");
    rt_testws *visitor = ws_login(quiet_port, "stu-2");

    json_decref(ws_join(member, "s", "course:c1"));
    /* The third edge has a member for a moment, then none. */
    json_decref(ws_join(visitor, "s", "course:c1"));
    assert_true(edge_metric(quiet_port, "unpuzzle_edge_nats_subscriptions") == 1);
    ws_send(visitor, "{\"type\":\"unsubscribe\",\"id\":\"u\",\"room\":\"course:c1\"}");
    json_decref(ws_expect_type(visitor, "unsubscribed"));
    rt_testws_destroy(visitor);
    double subs = -1;
    for (int i = 0; i < 50 && subs != 0; i++) {
        subs = edge_metric(quiet_port, "unpuzzle_edge_nats_subscriptions");
        if (subs != 0)
            rt_testws_drain(member, 20);
    }
    assert_true(subs == 0);
    double before = edge_metric(quiet_port, "unpuzzle_edge_messages_in_total{source=\"nats\"}");
    assert_true(before == 0);

    for (int i = 0; i < 5; i++) {
        char event_id[32];
        snprintf(event_id, sizeof(event_id), "ev-quiet-%d", i);
        assert_int_equal(
            rt_test_publish_room_confusion(NULL, stack, "course:c1", event_id, "stu-1", "x"),
            RT_OK);
    }
    /* The member's edge got them... */
    for (int i = 0; i < 5; i++)
        json_decref(ws_expect_type(member, "confusion"));
    assert_true(
        edge_metric(stack->edges[0].port, "unpuzzle_edge_messages_in_total{source=\"nats\"}") >= 5);
    /* ...the quiet edge none. */
    assert_true(edge_metric(quiet_port, "unpuzzle_edge_messages_in_total{source=\"nats\"}") == 0);
    assert_true(edge_metric(quiet_port, "unpuzzle_edge_rooms") == 0);
    rt_testws_destroy(member);
}

static void duplicate_event_is_delivered_once(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    Unpuzzle__Rt__V1__RoomMessage msg = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    uint64_t seq1 = 0, seq2 = 0, seq3 = 0;
    bool dup = false;

    json_decref(ws_join(ws, "s", "lesson:l2"));
    msg.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_PRESENCE;
    msg.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_UPDATE;
    msg.event_id = "ev-dup-1";
    assert_int_equal(rt_test_publish_room(&seq1, &dup, stack, "lesson:l2", &msg), RT_OK);
    assert_false(dup);
    assert_int_equal(rt_test_publish_room(&seq2, &dup, stack, "lesson:l2", &msg), RT_OK);
    assert_true(dup);
    assert_int_equal(seq2, seq1);
    msg.event_id = "ev-dup-2";
    assert_int_equal(rt_test_publish_room(&seq3, &dup, stack, "lesson:l2", &msg), RT_OK);

    json_t *m = expect_room_message(ws, "lesson:l2", seq1, 0);
    assert_string_equal(rt_json_str(m, "type"), "presence");
    assert_string_equal(rt_json_str(m, "action"), "update");
    assert_string_equal(rt_json_str(m, "eventId"), "ev-dup-1");
    assert_int_equal(json_object_size(json_object_get(m, "payload")), 0);
    json_decref(m);
    m = expect_room_message(ws, "lesson:l2", seq3, seq1);
    assert_string_equal(rt_json_str(m, "eventId"), "ev-dup-2");
    json_decref(m);
    rt_testws_drain(ws, 200);
    assert_int_equal(rt_testws_queued(ws), 0);
    rt_testws_destroy(ws);
}

/* Subscribes with since on `port` and expects what the spec promises:
 * "subscribed" with recovered:true, then every message after `seen`. */
static void publish_two(const char *room, const char *tag, uint64_t *seq1, uint64_t *seq2);

static void expect_recovery(int port, const char *room, uint64_t seen, const char *epoch,
                            uint64_t seq1, uint64_t seq2)
{
    rt_testws *ws = ws_login(port, "stu-1");
    char frame[256];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"subscribe\",\"id\":\"s2\",\"room\":\"%s\","
             "\"since\":{\"seq\":%llu,\"epoch\":\"%s\"}}",
             room, (unsigned long long)seen, epoch);
    ws_send(ws, frame);
    json_t *m = ws_expect_type(ws, "subscribed");
    char *sub = json_dumps(m, JSON_COMPACT);
    print_message("since %llu -> %s\n", (unsigned long long)seen, sub);
    assert_int_equal(rt_json_int(m, "seq"), (long long)seq2);
    assert_true(json_is_true(json_object_get(m, "recovered")));
    json_decref(m);
    /* Every missed message, in order, before anything live. */
    json_decref(expect_room_message(ws, room, seq1, seen));
    json_decref(expect_room_message(ws, room, seq2, seq1));
    free(sub);
    rt_testws_destroy(ws);
}

/* Coming back at the room's current position: nothing was missed. */
static void since_at_current_position_is_recovered(void **state)
{
    (void)state;
    uint64_t seq1 = 0, seq2 = 0;
    publish_two("course:c1", "since-now", &seq1, &seq2);
    rt_testws *ws = ws_login(stack->edges[1].port, "stu-1");
    json_t *first = ws_join(ws, "s1", "course:c1");
    char frame[256];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"subscribe\",\"id\":\"s2\",\"room\":\"course:c1\","
             "\"since\":{\"seq\":%lld,\"epoch\":\"%s\"}}",
             rt_json_int(first, "seq"), rt_json_str(first, "epoch"));
    json_decref(first);
    ws_send(ws, frame);
    json_t *m = ws_expect_type(ws, "subscribed");
    assert_true(json_is_true(json_object_get(m, "recovered")));
    json_decref(m);
    rt_testws_destroy(ws);
}

static void publish_two(const char *room, const char *tag, uint64_t *seq1, uint64_t *seq2)
{
    char id[32];
    snprintf(id, sizeof(id), "ev-%s-1", tag);
    assert_int_equal(rt_test_publish_room_confusion(seq1, stack, room, id, "stu-2", "a"), RT_OK);
    snprintf(id, sizeof(id), "ev-%s-2", tag);
    assert_int_equal(rt_test_publish_room_confusion(seq2, stack, room, id, "stu-2", "b"), RT_OK);
}

/* A browser saw up to `seen`, lost its connection, and comes back with
 * since (spec "Rooms": every message after since.seq, in order, before any
 * live message; recovered:true when history reaches back). Here the room is
 * new to the edge it reconnects to. */
static void since_on_an_edge_new_to_the_room(void **state)
{
    (void)state;
    uint64_t seq1 = 0, seq2 = 0;
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    json_t *sub = ws_join(ws, "s1", "lesson:l1");
    uint64_t seen = (uint64_t)rt_json_int(sub, "seq");
    char epoch[80];
    snprintf(epoch, sizeof(epoch), "%s", rt_json_str(sub, "epoch"));
    json_decref(sub);
    rt_testws_destroy(ws);
    publish_two("lesson:l1", "since-cold", &seq1, &seq2);
    expect_recovery(stack->edges[1].port, "lesson:l1", seen, epoch, seq1, seq2);
}

/* The same, on an edge where the room already has a member. */
static void since_on_an_edge_with_the_room(void **state)
{
    (void)state;
    uint64_t seq1 = 0, seq2 = 0;
    rt_testws *stay = ws_login(stack->edges[0].port, "stu-2");
    json_t *sub = ws_join(stay, "s1", "lesson:l2");
    uint64_t seen = (uint64_t)rt_json_int(sub, "seq");
    char epoch[80];
    snprintf(epoch, sizeof(epoch), "%s", rt_json_str(sub, "epoch"));
    json_decref(sub);
    publish_two("lesson:l2", "since-warm", &seq1, &seq2);
    json_decref(ws_next(stay));
    json_decref(ws_next(stay));
    expect_recovery(stack->edges[0].port, "lesson:l2", seen, epoch, seq1, seq2);
    rt_testws_destroy(stay);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_arrive_in_order_with_fields),
        cmocka_unit_test(two_edges_deliver_the_same_room),
        cmocka_unit_test(edge_without_members_gets_no_room_traffic),
        cmocka_unit_test(duplicate_event_is_delivered_once),
        cmocka_unit_test(since_on_an_edge_new_to_the_room),
        cmocka_unit_test(since_on_an_edge_with_the_room),
        cmocka_unit_test(since_at_current_position_is_recovered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
