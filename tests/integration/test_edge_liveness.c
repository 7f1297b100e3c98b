/*
 * ws-edge liveness against the real stack: the server pings a silent
 * connection after WS_PING_INTERVAL_MS and drops one that has not answered
 * within two intervals; a client that answers stays connected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <unistd.h>

#include "edge_testutil.h"

static rt_test_stack *stack;
static int port;

static int setup(void **state)
{
    (void)state;
    const char *edge_env[] = {"WS_PING_INTERVAL_MS=1000", NULL};
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

static void answering_client_stays_connected(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-1");
    /* Reading answers the server's pings (the client does that by itself). */
    rt_testws_drain(ws, 3500);
    assert_false(rt_testws_closed(ws));
    assert_true(rt_testws_pings_answered(ws) >= 1);
    ws_expect_alive(ws, "still-here");
    rt_testws_destroy(ws);
}

static void silent_peer_is_dropped(void **state)
{
    (void)state;
    double before = edge_metric(port, "unpuzzle_edge_closes_total{code=\"1006\"}");
    rt_testws *ws = ws_login(port, "stu-2");
    /* A dead peer: it reads nothing, so it never answers the ping. */
    usleep(3500 * 1000);
    assert_int_equal(rt_testws_wait_close(ws, 3000), RT_OK);
    assert_true(rt_testws_closed(ws));
    rt_testws_destroy(ws);
    double after = edge_metric(port, "unpuzzle_edge_closes_total{code=\"1006\"}");
    assert_true(after >= before + 1);
    assert_true(edge_metric(port, "unpuzzle_edge_connections") == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answering_client_stays_connected),
        cmocka_unit_test(silent_peer_is_dropped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
