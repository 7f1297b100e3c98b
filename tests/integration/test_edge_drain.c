/*
 * ws-edge's SIGTERM drain, as browsers and the load balancer see it:
 * /readyz turns 503 at once, new upgrades are refused, every client is
 * closed 1012 within WS_DRAIN_MS (1000 here), and the process exits 0.
 */
#include "edge_testutil.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static rt_test_stack *stack;

static int setup(void **state)
{
    (void)state;
    const char *edge_env[] = {"WS_DRAIN_MS=1000", NULL};
    if (!(stack = edge_test_stack(NULL)) || edge_test_start_edge(stack, edge_env) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static void sigterm_drains_with_1012_and_exits_0(void **state)
{
    (void)state;
    rt_test_edge *edge = &stack->edges[0];
    rt_testws *clients[4];
    int status = 0, exit_status = -1;

    for (int i = 0; i < 4; i++) {
        clients[i] = ws_login(edge->port, i % 2 ? "stu-2" : "stu-1");
        json_decref(ws_join(clients[i], "s", "course:c1"));
    }
    uint64_t start = rt_time_mono_ns();
    assert_int_equal(kill(rt_test_proc_pid(edge->proc), SIGTERM), 0);

    /* Not ready any more, as soon as the signal is seen. */
    bool unready = false;
    for (int i = 0; i < 40 && !unready; i++) {
        if (rt_test_http_get(&status, NULL, edge->port, "/readyz", 500) == RT_OK && status == 503)
            unready = true;
        else
            usleep(10 * 1000);
    }
    int64_t unready_ms = (int64_t)((rt_time_mono_ns() - start) / 1000000);
    print_message("/readyz 503 after %lld ms\n", (long long)unready_ms);
    assert_true(unready);
    assert_true(unready_ms < 700);
    /* New upgrades are refused while draining. */
    rt_testws *late = NULL;
    rt_testws_options o = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1"};
    assert_int_not_equal(rt_testws_connect(&late, &status, edge->port, &o), RT_OK);
    assert_int_equal(status, 503);

    for (int i = 0; i < 4; i++) {
        ws_expect_close(clients[i], 1012, 3000);
        rt_testws_destroy(clients[i]);
    }
    int64_t closed_ms = (int64_t)((rt_time_mono_ns() - start) / 1000000);
    print_message("all clients closed 1012 after %lld ms (WS_DRAIN_MS=1000)\n",
                  (long long)closed_ms);
    assert_true(closed_ms < 2500);

    /* The process exits by itself, with status 0. */
    assert_int_equal(rt_test_proc_stop(edge->proc, SIGTERM, 5000, &exit_status), RT_OK);
    assert_true(WIFEXITED(exit_status));
    assert_int_equal(WEXITSTATUS(exit_status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sigterm_drains_with_1012_and_exits_0),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
