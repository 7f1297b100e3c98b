/*
 * Nothing lost when a client comes back, counted (rt_testfeed: every room
 * message's seq/prevSeq checked, the whole list compared with what
 * JetStream acknowledged to the publisher):
 *  - a duplicate publish (same event_id, Nats-Msg-Id) is stored once and
 *    delivered once, live on two edges and in a resume's replay;
 *  - a client away while exactly 500 messages are published resumes with
 *    since and gets exactly those 500 in order (recovered:true), then the
 *    live ones published during and after the replay, with no duplicate and
 *    no gap at the seam;
 *  - a client that stops reading during a burst is closed 1013 (small
 *    WS_SEND_QUEUE_MAX_BYTES) while another client of the room keeps
 *    getting everything with bounded latency, and the slow one resumes with
 *    since and gets everything;
 *  - the ROOMS stream deleted and recreated: a resume with the old epoch
 *    gets recovered:false and the new epoch, nothing older is pretended, and
 *    new messages flow.
 * Edge 0: WS_SEND_QUEUE_MAX_BYTES default (1 MiB); edge 1: 256 KiB. Both keep
 * 5000 messages per room and replay up to 5000.
 */
#include "edge_testutil.h"
#include "rt_testfeed.h"

#include <unistd.h>

#define SMALL_QUEUE 262144
#define LATENCY_BOUND_MS 1500
/* 2 KB messages at 200/s: 400 KB/s, so a client that reads is closed only
 * if it (or the edge) stalls for more than half a second on this 2-core
 * machine. (Unpaced, a SMALL_QUEUE burst inside one WS_COALESCE_MS window
 * closes even a reader that keeps up: what the edge holds back to coalesce
 * counts against the cap.) */
#define BURST_RATE 200

static rt_test_stack *stack;

/* What a test holds, freed by cleanup() even when the test fails. */
#define MAX_HELD 8
static rt_test_publisher *g_pub;
static rt_testws *g_ws[MAX_HELD];
static rt_test_feed g_feeds[MAX_HELD];
static int g_n_feeds;
static uint64_t *g_acked;

static rt_testws *held(rt_testws *ws)
{
    for (int i = 0; i < MAX_HELD; i++) {
        if (!g_ws[i]) {
            g_ws[i] = ws;
            return ws;
        }
    }
    fail_msg("more than %d connections held", MAX_HELD);
    return NULL;
}

static void release(rt_testws *ws)
{
    for (int i = 0; i < MAX_HELD; i++)
        if (g_ws[i] == ws)
            g_ws[i] = NULL;
    rt_testws_destroy(ws);
}

static rt_test_feed *new_feed(void)
{
    assert_true(g_n_feeds < MAX_HELD);
    return &g_feeds[g_n_feeds++];
}

static rt_testws *login(int port, const char *user)
{
    return held(ws_login(port, user));
}

static int setup(void **state)
{
    (void)state;
    const char *env0[] = {"ROOMS_MAX_PER_ROOM=5000", "ROOMS_MAX_RESUME=5000", NULL};
    const char *env1[] = {"ROOMS_MAX_PER_ROOM=5000", "ROOMS_MAX_RESUME=5000",
                          "WS_SEND_QUEUE_MAX_BYTES=262144", NULL};
    if (!(stack = edge_test_stack(NULL)) || edge_test_start_edge(stack, env0) < 0 ||
        edge_test_start_edge(stack, env1) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    rt_test_publisher_destroy(g_pub);
    g_pub = NULL;
    for (int i = 0; i < MAX_HELD; i++) {
        rt_testws_destroy(g_ws[i]);
        g_ws[i] = NULL;
        rt_test_feed_free(&g_feeds[i]);
    }
    g_n_feeds = 0;
    free(g_acked);
    g_acked = NULL;
    return 0;
}

static uint64_t publish(const char *room, const char *event_id, bool *duplicate)
{
    uint64_t seq = 0;
    if (rt_test_publish_room_confusion_js(&seq, duplicate, stack->js, 5000, room, event_id, "stu-2",
                                          "m") != RT_OK)
        fail_msg("publish %s: %s", event_id, rt_error_message());
    return seq;
}

/* Joins and starts a feed at the room's position; copies the epoch. */
static void join_feed(rt_test_feed *feed, rt_testws *ws, const char *room, char epoch[80])
{
    json_t *sub = ws_join(ws, "s", room);
    snprintf(epoch, 80, "%s", rt_json_str(sub, "epoch"));
    rt_test_feed_init(feed, (uint64_t)rt_json_int(sub, "seq"));
    json_decref(sub);
}

static void read_until(rt_test_feed *feed, rt_testws *ws, uint64_t seq, int timeout_ms,
                       const char *who)
{
    if (rt_test_feed_read_until(feed, ws, seq, timeout_ms) != RT_OK)
        fail_msg("%s: %s (close %d)", who, rt_error_message(), rt_testws_close_code(ws));
}

/* Nothing more arrives (a duplicate would). */
static void expect_quiet(rt_testws *ws, const char *who)
{
    rt_testws_drain(ws, 300);
    json_t *m = NULL;
    if (rt_testws_recv_json(&m, ws, 0) == RT_OK) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("%s: unexpected %.200s", who, text);
    }
}

static void expect_feed(const rt_test_feed *feed, const uint64_t *expected, size_t n,
                        const char *who)
{
    char why[400];
    if (!rt_test_feed_check(feed, expected, n, why, sizeof(why)))
        fail_msg("%s: %s", who, why);
}

static void duplicate_publish_is_delivered_once(void **state)
{
    (void)state;
    const char *room = "lesson:l2";
    char epoch[80];
    rt_test_feed *away = new_feed(), *live0 = new_feed(), *live1 = new_feed();
    bool dup = true;

    /* One client leaves before the publishes and resumes over them. */
    rt_testws *ws = login(stack->edges[0].port, "stu-1");
    join_feed(away, ws, room, epoch);
    release(ws);
    rt_testws *ws0 = login(stack->edges[0].port, "stu-1");
    rt_testws *ws1 = login(stack->edges[1].port, "stu-2");
    join_feed(live0, ws0, room, epoch);
    join_feed(live1, ws1, room, epoch);

    uint64_t a = publish(room, "ev-dupe-a", &dup);
    assert_false(dup);
    uint64_t b = publish(room, "ev-dupe-b", &dup);
    assert_false(dup);
    assert_int_equal(publish(room, "ev-dupe-a", &dup), a);
    assert_true(dup);
    uint64_t c = publish(room, "ev-dupe-c", &dup);
    assert_false(dup);
    assert_int_equal(publish(room, "ev-dupe-a", &dup), a);
    assert_true(dup);
    assert_int_equal(publish(room, "ev-dupe-b", &dup), b);
    assert_true(dup);
    const uint64_t expected[] = {a, b, c};

    read_until(live0, ws0, c, EDGE_WAIT_MS, "edge 0");
    read_until(live1, ws1, c, EDGE_WAIT_MS, "edge 1");
    expect_quiet(ws0, "edge 0");
    expect_quiet(ws1, "edge 1");
    expect_feed(live0, expected, 3, "edge 0");
    expect_feed(live1, expected, 3, "edge 1");

    ws = login(stack->edges[1].port, "stu-1");
    json_t *sub = ws_resume(ws, "r", room, away->start_seq, epoch);
    assert_true(json_is_true(json_object_get(sub, "recovered")));
    assert_int_equal(rt_json_int(sub, "seq"), (long long)c);
    json_decref(sub);
    read_until(away, ws, c, EDGE_WAIT_MS, "resumed");
    expect_quiet(ws, "resumed");
    expect_feed(away, expected, 3, "resumed");

    release(ws);
    release(ws0);
    release(ws1);
}

static void reconnect_gets_the_500_missed_then_live(void **state)
{
    (void)state;
    enum { MISSED = 500, LIVE = 100 };
    const char *room = "course:c1";
    char epoch[80], id[32];
    rt_test_feed *keeper = new_feed(), *client = new_feed();
    uint64_t expected[1 + MISSED + LIVE];
    size_t n_expected = 0;

    /* The keeper stays, so the edge keeps the room (and its recent
     * history) while the client is away. */
    rt_testws *kws = login(stack->edges[0].port, "stu-2");
    rt_testws *ws = login(stack->edges[0].port, "stu-1");
    join_feed(keeper, kws, room, epoch);
    join_feed(client, ws, room, epoch);
    uint64_t seen = publish(room, "ev-rc-first", NULL);
    expected[n_expected++] = seen;
    read_until(client, ws, seen, EDGE_WAIT_MS, "client");
    release(ws);

    for (int i = 0; i < MISSED; i++) {
        snprintf(id, sizeof(id), "ev-rc-%d", i);
        expected[n_expected++] = publish(room, id, NULL);
    }
    uint64_t last_missed = expected[n_expected - 1];

    /* Back, while live messages keep coming (200/s), so some arrive during
     * the replay and meet it at the seam. */
    rt_test_publisher_options o = {.nats_url = rt_test_nats_url(stack->nats),
                                   .room = room,
                                   .event_prefix = "ev-rc-live",
                                   .count = LIVE,
                                   .rate_per_s = 200};
    assert_int_equal(rt_test_publisher_start(&g_pub, &o), RT_OK);
    ws = login(stack->edges[0].port, "stu-1");
    uint64_t start = rt_time_mono_ns();
    json_t *sub = ws_resume(ws, "r", room, seen, epoch);
    if (!json_is_true(json_object_get(sub, "recovered")))
        fail_msg("resume from seq %llu with %d missed: recovered:false", (unsigned long long)seen,
                 MISSED);
    assert_string_equal(rt_json_str(sub, "epoch"), epoch);
    uint64_t position = (uint64_t)rt_json_int(sub, "seq");
    assert_true(position >= last_missed);
    json_decref(sub);
    read_until(client, ws, last_missed, 10000, "resumed client");
    uint64_t replayed_ms = (rt_time_mono_ns() - start) / 1000000u;
    /* Exactly the 500, in order, right after the one it had seen. */
    assert_true(client->n >= 1 + MISSED);
    assert_memory_equal(client->seqs, expected, (1 + MISSED) * sizeof(uint64_t));

    rt_status published = rt_test_publisher_wait(g_pub, 10000);
    if (published != RT_OK)
        fail_msg("publisher: %s", rt_error_message());
    uint64_t *live = NULL;
    size_t n_live = rt_test_publisher_seqs(g_pub, &live);
    assert_int_equal(n_live, LIVE);
    memcpy(expected + n_expected, live, n_live * sizeof(uint64_t));
    n_expected += n_live;
    free(live);
    uint64_t last = expected[n_expected - 1];
    read_until(client, ws, last, 10000, "resumed client");
    read_until(keeper, kws, last, 10000, "keeper");
    expect_quiet(ws, "resumed client");
    expect_quiet(kws, "keeper");
    expect_feed(client, expected, n_expected, "resumed client");
    expect_feed(keeper, expected, n_expected, "keeper");
    size_t live_in_replay = 0;
    for (size_t i = 1 + MISSED; i < n_expected; i++)
        live_in_replay += expected[i] <= position;
    print_message("resume: %d missed replayed in %llu ms (position %llu: %zu live ones "
                  "published meanwhile), then %zu live; %zu messages, no gap, no duplicate\n",
                  MISSED, (unsigned long long)replayed_ms, (unsigned long long)position,
                  live_in_replay, n_live - live_in_replay, client->n);
    release(ws);
    release(kws);
}

/* Pops what `ws` has queued into the feed; false on anything but room
 * messages. */
static bool feed_queued(rt_test_feed *feed, rt_testws *ws)
{
    json_t *m = NULL;
    while (rt_testws_recv_json(&m, ws, 0) == RT_OK) {
        bool room = rt_test_feed_is_room_message(m);
        if (room)
            rt_test_feed_push(feed, m);
        json_decref(m);
        if (!room)
            return false;
    }
    return true;
}

static void slow_reader_closed_1013_others_unaffected_then_resumes(void **state)
{
    (void)state;
    const char *room = "lesson:l1";
    const int port = stack->edges[1].port;
    char epoch[80];
    rt_test_feed *fast_feed = new_feed(), *slow_feed = new_feed();

    rt_testws *fast = login(port, "stu-1");
    join_feed(fast_feed, fast, room, epoch);
    rt_testws *slow = NULL;
    rt_testws_options so = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1", .rcvbuf = 4096};
    char *token = rt_test_stack_token("stu-2", NULL);
    assert_int_equal(rt_testws_connect(&slow, NULL, port, &so), RT_OK);
    held(slow);
    assert_int_equal(rt_testws_auth(NULL, slow, token, EDGE_WAIT_MS), RT_OK);
    free(token);
    join_feed(slow_feed, slow, room, epoch);
    double drops_before = edge_metric(port, "unpuzzle_edge_queue_drops_total");

    /* A burst of 2 KB messages (BURST_RATE); the slow client reads nothing. Past the edge's 256 KiB
     * queue (and the kernel's socket buffers) it must be closed; the burst goes on a little after
     * that, then stops. */
    rt_test_publisher_options o = {.nats_url = rt_test_nats_url(stack->nats),
                                   .room = room,
                                   .event_prefix = "ev-slow",
                                   .count = 4000,
                                   .rate_per_s = BURST_RATE,
                                   .text_bytes = 2000};
    assert_int_equal(rt_test_publisher_start(&g_pub, &o), RT_OK);
    uint64_t start = rt_time_mono_ns(), end = start + 60000ull * 1000000u;
    uint64_t next_check = start, max_latency = 0, sum_latency = 0;
    size_t measured = 0, dropped_at = 0;
    bool dropped = false;
    while (!rt_test_publisher_finished(g_pub) && rt_time_mono_ns() < end) {
        json_t *m = NULL;
        if (rt_testws_recv_json(&m, fast, 20) == RT_OK) {
            uint64_t now = rt_time_mono_ns(), sent = 0;
            if (!rt_test_feed_is_room_message(m)) {
                char *text = json_dumps(m, JSON_COMPACT);
                fail_msg("fast client: unexpected %.200s", text);
            }
            rt_test_feed_push(fast_feed, m);
            if (rt_test_publisher_sent_at(g_pub, (uint64_t)rt_json_int(m, "seq"), &sent) &&
                now > sent) {
                max_latency = now - sent > max_latency ? now - sent : max_latency;
                sum_latency += now - sent;
                measured++;
            }
            json_decref(m);
        }
        if (rt_testws_closed(fast))
            fail_msg("fast client closed %d (%s) after %zu messages, %zu published",
                     rt_testws_close_code(fast), rt_testws_close_reason(fast), fast_feed->n,
                     rt_test_publisher_acked(g_pub));
        if (rt_time_mono_ns() >= next_check) {
            next_check = rt_time_mono_ns() + 100 * 1000000u;
            if (!dropped && edge_metric(port, "unpuzzle_edge_queue_drops_total") > drops_before) {
                dropped = true;
                dropped_at = rt_test_publisher_acked(g_pub);
            }
            if (dropped && rt_test_publisher_acked(g_pub) >= dropped_at + 100)
                rt_test_publisher_stop(g_pub);
        }
    }
    rt_status published = rt_test_publisher_wait(g_pub, 10000);
    if (published != RT_OK)
        fail_msg("publisher: %s", rt_error_message());
    size_t n_acked = rt_test_publisher_seqs(g_pub, &g_acked);
    const uint64_t *acked = g_acked;
    uint64_t last = acked[n_acked - 1];
    print_message("slow reader: closed after %zu of %zu messages (2 KB each)\n", dropped_at,
                  n_acked);
    assert_true(dropped);

    /* The other member got everything, in order, and never waited long. */
    read_until(fast_feed, fast, last, 10000, "fast client");
    expect_quiet(fast, "fast client");
    expect_feed(fast_feed, acked, n_acked, "fast client");
    print_message("fast client: %zu messages, latency mean %.1f ms, max %.1f ms (bound %d)\n",
                  fast_feed->n, measured ? (double)sum_latency / (double)measured / 1e6 : 0.0,
                  (double)max_latency / 1e6, LATENCY_BOUND_MS);
    assert_true(max_latency <= (uint64_t)LATENCY_BOUND_MS * 1000000u);

    /* The slow one, reading again: what the kernel held, then 1013. */
    ws_expect_close(slow, 1013, 10000);
    if (!feed_queued(slow_feed, slow))
        fail_msg("slow client: something other than room messages before the close");
    print_message("slow client: got %zu messages (to seq %llu) before 1013 (%s); %zu to resume\n",
                  slow_feed->n, (unsigned long long)slow_feed->last_seq,
                  rt_testws_close_reason(slow), n_acked - slow_feed->n);
    assert_int_equal(slow_feed->violations, 0);
    assert_true(slow_feed->last_seq < last);
    release(slow);

    /* It comes back to the same edge with since, reading promptly now. */
    slow = login(port, "stu-2");
    ws_send_resume(slow, "r", room, slow_feed->last_seq, epoch);
    json_t *sub = NULL;
    if (rt_testws_recv_json(&sub, slow, EDGE_WAIT_MS) != RT_OK)
        fail_msg("resume from seq %llu (%zu behind, WS_SEND_QUEUE_MAX_BYTES=%d): no subscribed: "
                 "%s (close %d %s)",
                 (unsigned long long)slow_feed->last_seq, n_acked - slow_feed->n, SMALL_QUEUE,
                 rt_error_message(), rt_testws_close_code(slow), rt_testws_close_reason(slow));
    assert_string_equal(rt_json_str(sub, "type"), "subscribed");
    assert_true(json_is_true(json_object_get(sub, "recovered")));
    assert_int_equal(rt_json_int(sub, "seq"), (long long)last);
    json_decref(sub);
    read_until(slow_feed, slow, last, 15000, "resumed slow client");
    expect_quiet(slow, "resumed slow client");
    expect_feed(slow_feed, acked, n_acked, "resumed slow client");
    release(slow);
    release(fast);
}

/* The ROOMS stream's epoch, as ws-edge renders it (its creation time in
 * ns); "" when it does not exist. */
static void stream_epoch(char out[80])
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    out[0] = '\0';
    if (js_GetStreamInfo(&si, stack->js, "ROOMS", NULL, &jerr) == NATS_OK)
        snprintf(out, 80, "%lld", (long long)si->Created);
    jsStreamInfo_Destroy(si);
}

/* Waits until `port`'s edge answers a subscribe with `epoch`. */
static bool edge_has_epoch(int port, const char *room, const char *epoch, int timeout_ms)
{
    uint64_t end = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    char *token = rt_test_stack_token("stu-3", NULL);
    bool same = false;
    while (!same && rt_time_mono_ns() < end) {
        rt_testws *probe = NULL;
        json_t *sub = NULL;
        if (rt_testws_open(&probe, port, token) == RT_OK &&
            rt_testws_subscribe(&sub, probe, "p", room, EDGE_WAIT_MS) == RT_OK)
            same = strcmp(rt_json_str(sub, "epoch"), epoch) == 0;
        json_decref(sub);
        rt_testws_destroy(probe);
        if (!same)
            usleep(100 * 1000);
    }
    free(token);
    return same;
}

static void stream_recreated_resume_is_not_recovered(void **state)
{
    (void)state;
    const char *room = "course:c2";
    char old_epoch[80], new_epoch[80];
    rt_test_feed *feed = new_feed();

    rt_testws *ws = login(stack->edges[0].port, "stu-3");
    join_feed(feed, ws, room, old_epoch);
    uint64_t seen = publish(room, "ev-recreate-1", NULL);
    read_until(feed, ws, seen, EDGE_WAIT_MS, "client");
    rt_test_feed_free(feed);

    jsErrCode jerr = 0;
    assert_int_equal(js_DeleteStream(stack->js, "ROOMS", NULL, &jerr), NATS_OK);
    /* An edge creates it again on its next tick. */
    uint64_t end = rt_time_mono_ns() + 15000ull * 1000000u;
    do {
        usleep(50 * 1000);
        stream_epoch(new_epoch);
    } while (!new_epoch[0] && rt_time_mono_ns() < end);
    print_message("stream recreated: epoch %s -> %s\n", old_epoch, new_epoch);
    assert_true(new_epoch[0]);
    assert_string_not_equal(new_epoch, old_epoch);
    /* The connected client is told to come back (docs/ws-edge.md). */
    ws_expect_close(ws, 1012, 10000);
    release(ws);

    uint64_t position = 0;
    for (int e = 0; e < 2; e++) {
        int port = stack->edges[e].port;
        assert_true(edge_has_epoch(port, room, new_epoch, 15000));
        ws = login(port, "stu-3");
        json_t *sub = ws_resume(ws, "r", room, seen, old_epoch);
        assert_false(json_is_true(json_object_get(sub, "recovered")));
        assert_string_equal(rt_json_str(sub, "epoch"), new_epoch);
        assert_int_equal(rt_json_int(sub, "seq"), (long long)position);
        json_decref(sub);
        /* Nothing older is pretended; new messages flow. */
        expect_quiet(ws, "resumed with the old epoch");
        char id[32];
        snprintf(id, sizeof(id), "ev-recreate-after-%d", e);
        uint64_t seq = publish(room, id, NULL);
        rt_test_feed_init(feed, position);
        read_until(feed, ws, seq, EDGE_WAIT_MS, "resumed with the old epoch");
        expect_quiet(ws, "resumed with the old epoch");
        expect_feed(feed, &seq, 1, "resumed with the old epoch");
        rt_test_feed_free(feed);
        position = seq;
        release(ws);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(duplicate_publish_is_delivered_once, cleanup),
        cmocka_unit_test_teardown(reconnect_gets_the_500_missed_then_live, cleanup),
        cmocka_unit_test_teardown(slow_reader_closed_1013_others_unaffected_then_resumes, cleanup),
        /* Last: it replaces the stream the others use. */
        cmocka_unit_test_teardown(stream_recreated_resume_is_not_recovered, cleanup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
