/*
 * Nothing lost across failures, counted. Clients sit in one room on ws-edge
 * processes while a publisher thread publishes to it at a steady rate
 * through JetStream (rt_testfeed: every publish retried with its event id
 * until acknowledged, so the acknowledged seqs are exactly what the room
 * got), and then:
 *  - edge crash: 200 clients on two edges; one edge is killed with SIGKILL
 *    mid-stream; its clients reconnect to the other edge with since (the
 *    last seq each saw, and the epoch);
 *  - rolling restart: the same, the edge drained with SIGTERM (1012 closes
 *    spread over WS_DRAIN_MS), its clients reconnect to the other edge;
 *  - NATS restart: nats-server stopped and started again on the same port
 *    and store while clients stay connected to their edges; the publisher
 *    retries while it is down; the edges reconnect by themselves.
 * At the end every client must have every acknowledged message exactly once,
 * in seq order, prevSeq chained (no duplicate, no gap), and every resume
 * must say recovered:true. One thread drives all clients with poll().
 */
#include "edge_testutil.h"
#include "rt_testfeed.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_CLIENTS 200
#define RATE_PER_S 200
#define N_MESSAGES 500
#define EVENT_AT 150 /* acknowledged publishes before the failure */
#define COMPLETE_MS 30000
#define MAX_RECONNECT_ATTEMPTS 20

static rt_test_stack *stack;

typedef enum { CL_LIVE, CL_RESUMING, CL_DOWN } cl_state;

typedef struct client {
    rt_testws *ws;
    const char *user;
    int first_edge, edge; /* indexes in stack->edges */
    cl_state state;
    rt_test_feed feed;
    int closes, last_close, resumes, reconnect_attempts;
    bool failed;
    char failure[240];
} client;

typedef struct scenario {
    const char *name, *room;
    client clients[N_CLIENTS];
    int n;
    char epoch[80];
    int reconnect_edge; /* where closed clients go back to; -1: a close is a failure */
    int closes_1006, closes_1012, closes_other;
} scenario;

static int setup(void **state)
{
    (void)state;
    if (!(stack = edge_test_stack(NULL)) || rt_test_stack_start_edges(stack, 2, NULL) != RT_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

/* The running test's publisher and clients, freed even when it fails. */
static rt_test_publisher *g_pub;
static scenario *g_sc;

static void scenario_free(scenario *s);

static int cleanup(void **state)
{
    (void)state;
    rt_test_publisher_destroy(g_pub);
    g_pub = NULL;
    if (g_sc)
        scenario_free(g_sc);
    g_sc = NULL;
    return 0;
}

static void client_fail(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_fail(client *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->failure, sizeof(c->failure), fmt, ap);
    va_end(ap);
}

static scenario *scenario_new(const char *name, const char *room, int reconnect_edge)
{
    scenario *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    sc->name = name;
    sc->room = room;
    sc->reconnect_edge = reconnect_edge;
    return sc;
}

static void scenario_free(scenario *s)
{
    for (int i = 0; i < s->n; i++) {
        rt_testws_destroy(s->clients[i].ws);
        rt_test_feed_free(&s->clients[i].feed);
    }
    free(s);
}

/* n clients, spread over `edges` in turn, all joined to the room before
 * anything is published; they start from the room's position. */
static void clients_join(scenario *sc, const int *edges, int n_edges, int n)
{
    uint64_t start = rt_time_mono_ns();
    for (int i = 0; i < n; i++) {
        client *c = &sc->clients[i];
        c->user = i % 2 ? "stu-2" : "stu-1";
        c->first_edge = c->edge = edges[i % n_edges];
        c->last_close = -1;
        c->ws = ws_login(stack->edges[c->edge].port, c->user);
        json_t *sub = ws_join(c->ws, "s", sc->room);
        if (i == 0)
            snprintf(sc->epoch, sizeof(sc->epoch), "%s", rt_json_str(sub, "epoch"));
        assert_string_equal(rt_json_str(sub, "epoch"), sc->epoch);
        assert_true(json_is_true(json_object_get(sub, "recovered")));
        rt_test_feed_init(&c->feed, (uint64_t)rt_json_int(sub, "seq"));
        json_decref(sub);
        c->state = CL_LIVE;
        sc->n++;
    }
    print_message("%s: %d clients joined %s in %llu ms (epoch %s, position %llu)\n", sc->name, n,
                  sc->room, (unsigned long long)((rt_time_mono_ns() - start) / 1000000u), sc->epoch,
                  (unsigned long long)sc->clients[0].feed.start_seq);
}

static void client_message(scenario *sc, client *c, const json_t *m)
{
    const char *type = rt_json_str(m, "type");
    if (rt_test_feed_is_room_message(m)) {
        if (c->state != CL_LIVE)
            client_fail(c, "room message seq %lld before the resume's subscribed",
                        rt_json_int(m, "seq"));
        if (!rt_test_feed_push(&c->feed, m))
            client_fail(c, "on edge %d: %s", c->edge, c->feed.first_violation);
    } else if (strcmp(type, "subscribed") == 0 && c->state == CL_RESUMING) {
        if (!json_is_true(json_object_get(m, "recovered")))
            client_fail(c, "resume %d on edge %d from seq %llu: recovered:false (room at %lld)",
                        c->resumes, c->edge, (unsigned long long)c->feed.last_seq,
                        rt_json_int(m, "seq"));
        if (strcmp(rt_json_str(m, "epoch"), sc->epoch) != 0)
            client_fail(c, "resume on edge %d: epoch %s, was %s", c->edge, rt_json_str(m, "epoch"),
                        sc->epoch);
        c->state = CL_LIVE;
    } else if (strcmp(type, "pong") != 0) {
        char *text = json_dumps(m, JSON_COMPACT);
        client_fail(c, "unexpected on edge %d: %.160s", c->edge, text);
        free(text);
    }
}

static void client_read(scenario *sc, client *c)
{
    rt_testws_read_available(c->ws, 256 * 1024);
    for (;;) {
        json_t *m = NULL;
        rt_status s = rt_testws_recv_json(&m, c->ws, 0);
        if (s == RT_OK) {
            client_message(sc, c, m);
            json_decref(m);
        } else if (s == RT_ERR_JSON) {
            client_fail(c, "%s", rt_error_message());
        } else {
            break;
        }
    }
    if (!rt_testws_closed(c->ws))
        return;
    int code = rt_testws_close_code(c->ws);
    c->closes++;
    c->last_close = code;
    if (code == 1006)
        sc->closes_1006++;
    else if (code == 1012)
        sc->closes_1012++;
    else
        sc->closes_other++;
    if (sc->reconnect_edge < 0)
        client_fail(c, "closed %d (%s) by edge %d at seq %llu", code, rt_testws_close_reason(c->ws),
                    c->edge, (unsigned long long)c->feed.last_seq);
    rt_testws_destroy(c->ws);
    c->ws = NULL;
    c->state = CL_DOWN;
}

/* Back on reconnect_edge with since = the last seq it saw, as a browser
 * does after a close. */
static void client_reconnect(scenario *sc, client *c)
{
    char *token = rt_test_stack_token(c->user, NULL);
    rt_testws *ws = NULL;
    rt_status s = rt_testws_open(&ws, stack->edges[sc->reconnect_edge].port, token);
    free(token);
    if (s != RT_OK) {
        if (++c->reconnect_attempts == MAX_RECONNECT_ATTEMPTS)
            client_fail(c, "reconnect to edge %d: %s", sc->reconnect_edge, rt_error_message());
        return;
    }
    json_t *frame =
        json_pack("{s:s, s:s, s:s, s:{s:I, s:s}}", "type", "subscribe", "id", "r", "room", sc->room,
                  "since", "seq", (json_int_t)c->feed.last_seq, "epoch", sc->epoch);
    char *text = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);
    s = rt_testws_send_text(ws, text);
    free(text);
    if (s != RT_OK) {
        client_fail(c, "resume send on edge %d: %s", sc->reconnect_edge, rt_error_message());
        rt_testws_destroy(ws);
        return;
    }
    c->ws = ws;
    c->edge = sc->reconnect_edge;
    c->state = CL_RESUMING;
    c->resumes++;
}

/* One round: reads every readable client (a round ends early once `until`
 * has `until_acked` acknowledged, so a failure can be timed mid-stream even
 * when reading lags), then brings closed ones back. */
static void pump_round(scenario *sc, int timeout_ms, rt_test_publisher *until, size_t until_acked)
{
    struct pollfd pfd[N_CLIENTS];
    int idx[N_CLIENTS], n = 0;
    for (int i = 0; i < sc->n; i++) {
        if (!sc->clients[i].ws)
            continue;
        pfd[n].fd = rt_testws_fd(sc->clients[i].ws);
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        idx[n++] = i;
    }
    int ready = n ? poll(pfd, (nfds_t)n, timeout_ms) : 0;
    if (!n)
        usleep((useconds_t)timeout_ms * 1000);
    for (int k = 0; ready > 0 && k < n; k++) {
        if (!pfd[k].revents)
            continue;
        client_read(sc, &sc->clients[idx[k]]);
        if (until && rt_test_publisher_acked(until) >= until_acked)
            return;
    }
    if (sc->reconnect_edge < 0)
        return;
    for (int i = 0; i < sc->n; i++) {
        client *c = &sc->clients[i];
        if (c->state == CL_DOWN && c->reconnect_attempts < MAX_RECONNECT_ATTEMPTS)
            client_reconnect(sc, c);
    }
}

static void pump(scenario *sc, int timeout_ms)
{
    pump_round(sc, timeout_ms, NULL, 0);
}

/* Reads for duration_ms. */
static void pump_for(scenario *sc, int duration_ms)
{
    uint64_t end = rt_time_mono_ns() + (uint64_t)duration_ms * 1000000u;
    while (rt_time_mono_ns() < end)
        pump(sc, 20);
}

/* Reads until the publisher has `acked` acknowledged (false after timeout_ms). */
static bool pump_until_acked(scenario *sc, rt_test_publisher *pub, size_t acked, int timeout_ms)
{
    uint64_t end = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (rt_test_publisher_acked(pub) < acked) {
        if (rt_time_mono_ns() >= end || rt_test_publisher_finished(pub))
            return false;
        pump_round(sc, 10, pub, acked);
    }
    return true;
}

/* Reads until the publisher is done and every client that can still get
 * messages has the last one (false after timeout_ms). */
static bool pump_until_complete(scenario *sc, rt_test_publisher *pub, int timeout_ms)
{
    uint64_t start = rt_time_mono_ns(), end = start + (uint64_t)timeout_ms * 1000000u;
    while (rt_time_mono_ns() < end) {
        pump(sc, 20);
        if (!rt_test_publisher_finished(pub))
            continue;
        uint64_t last = rt_test_publisher_last(pub);
        bool all = true;
        for (int i = 0; i < sc->n && all; i++) {
            client *c = &sc->clients[i];
            bool gone = c->state == CL_DOWN &&
                        (sc->reconnect_edge < 0 || c->reconnect_attempts >= MAX_RECONNECT_ATTEMPTS);
            all = gone || (c->state == CL_LIVE && c->feed.last_seq >= last);
        }
        if (all) {
            /* Anything after the last one would be a duplicate: look. */
            pump_for(sc, 300);
            return true;
        }
    }
    return false;
}

static rt_test_publisher *start_publisher(const char *room, const char *prefix, int count, int rate)
{
    rt_test_publisher *pub = NULL;
    rt_test_publisher_options o = {.nats_url = rt_test_nats_url(stack->nats),
                                   .room = room,
                                   .event_prefix = prefix,
                                   .count = count,
                                   .rate_per_s = rate,
                                   .text_bytes = 64,
                                   .ack_wait_ms = 1000,
                                   .give_up_ms = 30000};
    if (rt_test_publisher_start(&pub, &o) != RT_OK)
        fail_msg("publisher: %s", rt_error_message());
    return pub;
}

/* What the running edges say about it (for a failure's report). */
static void print_edge_metrics(const scenario *sc)
{
    static const char *const series[] = {
        "unpuzzle_edge_room_messages_dropped_total{reason=\"duplicate\"}",
        "unpuzzle_edge_room_messages_dropped_total{reason=\"room_not_ready\"}",
        "unpuzzle_edge_gap_repairs_total{result=\"repaired\"}",
        "unpuzzle_edge_gap_repairs_total{result=\"failed\"}",
        "unpuzzle_edge_gap_repaired_messages_total",
        "unpuzzle_edge_resumes_total{source=\"cache\"}",
        "unpuzzle_edge_resumes_total{source=\"stream\"}",
        "unpuzzle_edge_queue_drops_total",
        "unpuzzle_edge_nats_slow_consumer_total",
    };
    for (int e = 0; e < stack->n_edges; e++) {
        if (!rt_test_proc_running(stack->edges[e].proc))
            continue;
        int status = 0;
        char *body = NULL;
        if (rt_test_http_get(&status, &body, stack->edges[e].port, "/metrics", 2000) != RT_OK) {
            free(body);
            continue;
        }
        for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++)
            print_message("%s: edge-%d %s %.0f\n", sc->name, e, series[i],
                          rt_test_metric_value(body, series[i]));
        free(body);
    }
}

/* Compares every client with the acknowledged list; prints the first few
 * that differ and a summary; returns how many differ. */
static int verify(scenario *sc, rt_test_publisher *pub)
{
    uint64_t *acked = NULL;
    size_t n_acked = rt_test_publisher_seqs(pub, &acked);
    size_t deliveries = 0;
    int bad = 0, resumed = 0;
    char why[400];

    for (int i = 0; i < sc->n; i++) {
        client *c = &sc->clients[i];
        deliveries += c->feed.n;
        resumed += c->resumes > 0;
        bool same = rt_test_feed_check(&c->feed, acked, n_acked, why, sizeof(why));
        if (same && !c->failed)
            continue;
        if (bad < 6)
            print_message("%s: client %d (%s, edge %d -> %d, %d resumes, last close %d): %s%s%s\n",
                          sc->name, i, c->user, c->first_edge, c->edge, c->resumes, c->last_close,
                          c->failed ? c->failure : "", c->failed && !same ? "; " : "",
                          same ? "" : why);
        bad++;
    }
    print_message("%s: %zu acknowledged (seq %llu..%llu, %u publish retries), %d clients, %zu "
                  "deliveries, %d resumed; closes 1006=%d 1012=%d other=%d; %d clients wrong\n",
                  sc->name, n_acked, n_acked ? (unsigned long long)acked[0] : 0ull,
                  n_acked ? (unsigned long long)acked[n_acked - 1] : 0ull,
                  rt_test_publisher_retries(pub), sc->n, deliveries, resumed, sc->closes_1006,
                  sc->closes_1012, sc->closes_other, bad);
    free(acked);
    if (bad)
        print_edge_metrics(sc);
    return bad;
}

/* Clients that were not on `edge` were never closed; those that were, were
 * closed (with `code`) and resumed. */
static void expect_only_edge_clients_moved(scenario *sc, int edge, int code)
{
    int moved = 0;
    for (int i = 0; i < sc->n; i++) {
        client *c = &sc->clients[i];
        if (c->first_edge != edge) {
            if (c->closes)
                fail_msg("%s: client %d on edge %d was closed %d", sc->name, i, c->first_edge,
                         c->last_close);
            continue;
        }
        if (c->resumes < 1)
            fail_msg("%s: client %d on edge %d never resumed", sc->name, i, edge);
        if (code > 0 && c->last_close != code)
            fail_msg("%s: client %d on edge %d was closed %d, expected %d", sc->name, i, edge,
                     c->last_close, code);
        moved++;
    }
    assert_true(moved > 0);
}

static void edge_crash_clients_resume_on_the_other_edge(void **state)
{
    (void)state;
    scenario *sc = g_sc = scenario_new("edge crash", "course:c1", 1);
    const int edges[] = {0, 1};
    clients_join(sc, edges, 2, N_CLIENTS);
    rt_test_publisher *pub = g_pub = start_publisher(sc->room, "ev-crash", N_MESSAGES, RATE_PER_S);

    assert_true(pump_until_acked(sc, pub, EVENT_AT, 20000));
    size_t acked_at_kill = rt_test_publisher_acked(pub);
    uint64_t killed_at = rt_test_publisher_last(pub);
    int status = 0;
    assert_int_equal(rt_test_proc_stop(stack->edges[0].proc, SIGKILL, 5000, &status), RT_OK);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    print_message("edge crash: edge-0 killed (SIGKILL) at seq %llu\n",
                  (unsigned long long)killed_at);
    /* Mid-stream: most of the messages are still to come. */
    assert_true(acked_at_kill < N_MESSAGES / 2);

    uint64_t start = rt_time_mono_ns();
    bool complete = pump_until_complete(sc, pub, COMPLETE_MS);
    print_message("edge crash: %s %llu ms after the kill\n", complete ? "complete" : "INCOMPLETE",
                  (unsigned long long)((rt_time_mono_ns() - start) / 1000000u));
    rt_status published = rt_test_publisher_wait(pub, 5000);
    if (published != RT_OK)
        fail_msg("publisher: %s", rt_error_message());
    int bad = verify(sc, pub);
    assert_int_equal(rt_test_publisher_acked(pub), N_MESSAGES);
    assert_int_equal(bad, 0);
    assert_true(complete);
    expect_only_edge_clients_moved(sc, 0, 1006);
}

static void rolling_restart_clients_resume_on_the_other_edge(void **state)
{
    (void)state;
    const char *drain_env[] = {"WS_DRAIN_MS=1000", NULL};
    int draining = edge_test_start_edge(stack, drain_env);
    assert_true(draining > 0);
    scenario *sc = g_sc = scenario_new("rolling restart", "lesson:l1", 1);
    const int edges[] = {1, draining};
    clients_join(sc, edges, 2, N_CLIENTS);
    rt_test_publisher *pub = g_pub =
        start_publisher(sc->room, "ev-rolling", N_MESSAGES, RATE_PER_S);

    assert_true(pump_until_acked(sc, pub, EVENT_AT, 20000));
    assert_int_equal(kill(rt_test_proc_pid(stack->edges[draining].proc), SIGTERM), 0);
    size_t acked_at_term = rt_test_publisher_acked(pub);
    print_message("rolling restart: edge-%d drained (SIGTERM) at seq %llu\n", draining,
                  (unsigned long long)rt_test_publisher_last(pub));
    assert_true(acked_at_term < N_MESSAGES / 2);

    uint64_t start = rt_time_mono_ns();
    bool complete = pump_until_complete(sc, pub, COMPLETE_MS);
    print_message("rolling restart: %s %llu ms after SIGTERM\n",
                  complete ? "complete" : "INCOMPLETE",
                  (unsigned long long)((rt_time_mono_ns() - start) / 1000000u));
    rt_status published = rt_test_publisher_wait(pub, 5000);
    if (published != RT_OK)
        fail_msg("publisher: %s", rt_error_message());
    int bad = verify(sc, pub);
    assert_int_equal(rt_test_publisher_acked(pub), N_MESSAGES);
    assert_int_equal(bad, 0);
    assert_true(complete);
    expect_only_edge_clients_moved(sc, draining, 1012);
    /* The drained edge exits by itself, with 0. */
    int status = -1;
    assert_int_equal(rt_test_proc_stop(stack->edges[draining].proc, SIGTERM, 10000, &status),
                     RT_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void nats_restart_clients_stay_and_get_every_acknowledged_message(void **state)
{
    (void)state;
    int other = edge_test_start_edge(stack, NULL);
    assert_true(other > 0);
    /* A close is a failure here: the clients stay on their edges. */
    scenario *sc = g_sc = scenario_new("nats restart", "lesson:l2", -1);
    const int edges[] = {1, other};
    clients_join(sc, edges, 2, 60);
    rt_test_publisher *pub = g_pub = start_publisher(sc->room, "ev-natsrestart", 500, 100);

    assert_true(pump_until_acked(sc, pub, 100, 20000));
    uint64_t t0 = rt_time_mono_ns();
    assert_int_equal(rt_test_nats_stop(stack->nats), RT_OK);
    size_t acked_at_stop = rt_test_publisher_acked(pub);
    print_message("nats restart: nats-server stopped at %zu acknowledged (seq %llu) in %llu ms\n",
                  acked_at_stop, (unsigned long long)rt_test_publisher_last(pub),
                  (unsigned long long)((rt_time_mono_ns() - t0) / 1000000u));
    assert_true(acked_at_stop < 250);
    /* Down for a while: the publisher retries, nothing is acknowledged
     * (but one ack received just before the stop may still be counted). */
    pump_for(sc, 1500);
    size_t acked_while_down = rt_test_publisher_acked(pub) - acked_at_stop;
    assert_true(acked_while_down <= 1);
    t0 = rt_time_mono_ns();
    assert_int_equal(rt_test_nats_restart(stack->nats), RT_OK);
    print_message("nats restart: nats-server back (same port and store) in %llu ms\n",
                  (unsigned long long)((rt_time_mono_ns() - t0) / 1000000u));

    uint64_t start = rt_time_mono_ns();
    bool complete = pump_until_complete(sc, pub, COMPLETE_MS);
    print_message("nats restart: %s %llu ms after nats-server was back\n",
                  complete ? "complete" : "INCOMPLETE",
                  (unsigned long long)((rt_time_mono_ns() - start) / 1000000u));
    rt_status published = rt_test_publisher_wait(pub, 5000);
    if (published != RT_OK)
        fail_msg("publisher: %s", rt_error_message());
    for (int k = 0; k < 2; k++) {
        int port = stack->edges[edges[k]].port;
        print_message("nats restart: edge-%d gap repairs %.0f (failed %.0f), repaired messages "
                      "%.0f\n",
                      edges[k],
                      edge_metric(port, "unpuzzle_edge_gap_repairs_total{result=\"repaired\"}"),
                      edge_metric(port, "unpuzzle_edge_gap_repairs_total{result=\"failed\"}"),
                      edge_metric(port, "unpuzzle_edge_gap_repaired_messages_total"));
    }
    int bad = verify(sc, pub);
    assert_true(rt_test_publisher_retries(pub) > 0);
    assert_int_equal(bad, 0);
    assert_true(complete);
    /* The edges are back on NATS by themselves. */
    for (int k = 0; k < 2; k++)
        assert_int_equal(rt_test_proc_wait_http(stack->edges[edges[k]].proc,
                                                stack->edges[edges[k]].port, "/readyz", 200, 15000),
                         RT_OK);

    /* Same store: the stream and its epoch survived. */
    rt_testws *ws = ws_login(stack->edges[other].port, "stu-1");
    json_t *sub = ws_join(ws, "s", sc->room);
    assert_string_equal(rt_json_str(sub, "epoch"), sc->epoch);
    assert_int_equal(rt_json_int(sub, "seq"), (long long)rt_test_publisher_last(pub));
    json_decref(sub);
    rt_testws_destroy(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(edge_crash_clients_resume_on_the_other_edge, cleanup),
        cmocka_unit_test_teardown(rolling_restart_clients_resume_on_the_other_edge, cleanup),
        cmocka_unit_test_teardown(nats_restart_clients_stay_and_get_every_acknowledged_message,
                                  cleanup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
