/*
 * auth under failure, with the real processes: PostgreSQL stopped and
 * started again, nats-server restarted, SIGTERM drain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rt_teststack.h"
#include "rt_time.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x
#define VERR(x) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##x
#define CHANGE(x) UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x

static rt_test_stack *stack;

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK ||
        rt_test_pg_exec(stack->pg,
                        "INSERT INTO realtime.course_members (course_id, user_id, role) VALUES"
                        " ('c1', 'stu-1', 'student'), ('c1', 'stu-2', 'student')") != RT_OK) {
        fprintf(stderr, "stack: %s\n", rt_error_message());
        return -1;
    }
    /* Caching off: every decision must come from PostgreSQL, so the test
     * sees exactly what happens while it is down. */
    const char *env[] = {"AUTHZ_CACHE_TTL_MS=0", "ROLE_CACHE_TTL_MS=0", NULL};
    if (rt_test_stack_start_auth(stack, env) != RT_OK) {
        fprintf(stderr, "auth: %s\n", rt_error_message());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static void postgres_down_denies_then_recovers(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__AuthorizeReply *r = NULL;
    Unpuzzle__Rt__V1__VerifyReply *v = NULL;
    char *token = rt_test_stack_token("stu-1", NULL);

    assert_true(
        rt_test_wait_authorize(stack, "stu-1", ROLE(STUDENT), "course:c1", true, 2000, NULL));
    assert_int_equal(rt_test_pg_stop(stack->pg), RT_OK);

    /* Deny with reason unavailable, never allow; answered quickly. */
    uint64_t t0 = rt_time_mono_ns();
    assert_int_equal(rt_test_authorize(&r, stack, "stu-1", ROLE(STUDENT), "course:c1"), RT_OK);
    assert_false(r->allowed);
    assert_int_equal(r->reason, DENY(UNAVAILABLE));
    unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
    assert_true((rt_time_mono_ns() - t0) / 1000000 < 2000);
    /* Room kinds that need no database still work. */
    assert_int_equal(rt_test_authorize(&r, stack, "stu-1", ROLE(STUDENT), "user:stu-1"), RT_OK);
    assert_true(r->allowed);
    unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
    /* The role cannot be read: the token is refused for now, not guessed. */
    assert_int_equal(rt_test_verify(&v, stack, token), RT_OK);
    assert_false(v->ok);
    assert_int_equal(v->error, VERR(UNAVAILABLE));
    unpuzzle__rt__v1__verify_reply__free_unpacked(v, NULL);

    /* Events that arrive meanwhile wait in the stream (nak + redelivery). */
    int64_t now = rt_time_now_ms() / 1000;
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-during-outage", "c1", "stu-3",
                                                CHANGE(ADDED), MEMBER(STUDENT), now),
                     RT_OK);

    assert_int_equal(rt_test_pg_start_again(stack->pg), RT_OK);
    int elapsed = 0;
    assert_true(
        rt_test_wait_authorize(stack, "stu-1", ROLE(STUDENT), "course:c1", true, 10000, &elapsed));
    print_message("recovered %d ms after PostgreSQL came back\n", elapsed);
    assert_true(
        rt_test_wait_authorize(stack, "stu-3", ROLE(STUDENT), "course:c1", true, 10000, NULL));
    assert_int_equal(rt_test_verify(&v, stack, token), RT_OK);
    assert_true(v->ok);
    unpuzzle__rt__v1__verify_reply__free_unpacked(v, NULL);
    free(token);
}

static void nats_restart_is_survived(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__VerifyReply *v = NULL;
    char *token = rt_test_stack_token("stu-2", NULL);
    int status = 0;
    char *body = NULL;

    assert_int_equal(rt_test_nats_restart(stack->nats), RT_OK);
    assert_int_equal(rt_test_stack_connect(stack), RT_OK);

    /* auth reconnects by itself and answers again. */
    bool answered = false;
    for (int i = 0; i < 100 && !answered; i++) {
        if (rt_test_verify(&v, stack, token) == RT_OK) {
            answered = v->ok;
            unpuzzle__rt__v1__verify_reply__free_unpacked(v, NULL);
        }
        if (!answered)
            nats_Sleep(100);
    }
    assert_true(answered);
    assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/readyz", 2000),
                     RT_OK);
    assert_int_equal(status, 200);
    free(body);

    /* The durable consumer and the stream survived (file storage). */
    int64_t now = rt_time_now_ms() / 1000;
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-after-restart", "c1", "stu-4",
                                                CHANGE(ADDED), MEMBER(STUDENT), now),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "stu-4", ROLE(STUDENT), "course:c1", true, 10000, NULL));
    free(token);
}

static void nats_down_makes_not_ready(void **state)
{
    (void)state;
    int status = 0;
    char *body = NULL;

    assert_int_equal(rt_test_nats_stop(stack->nats), RT_OK);
    bool not_ready = false;
    for (int i = 0; i < 50 && !not_ready; i++) {
        assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/readyz", 2000),
                         RT_OK);
        not_ready = status == 503;
        free(body);
        if (!not_ready)
            nats_Sleep(100);
    }
    assert_true(not_ready);
    /* Liveness is unaffected: the process is fine, only NATS is away. */
    assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/healthz", 2000),
                     RT_OK);
    assert_int_equal(status, 200);
    free(body);
    assert_int_equal(rt_test_nats_restart(stack->nats), RT_OK);
    assert_int_equal(
        rt_test_proc_wait_http(stack->auth, stack->auth_admin_port, "/readyz", 200, 15000), RT_OK);
    assert_int_equal(rt_test_stack_connect(stack), RT_OK);
}

static void sigterm_drains_and_exits_zero(void **state)
{
    (void)state;
    int wstatus = -1;
    assert_int_equal(rt_test_proc_stop(stack->auth, SIGTERM, 10000, &wstatus), RT_OK);
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 0);
    assert_int_equal(rt_test_proc_wait_log(stack->auth, "\"msg\":\"stopped\"", 1000), RT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(postgres_down_denies_then_recovers),
        cmocka_unit_test(nats_restart_is_survived),
        cmocka_unit_test(nats_down_makes_not_ready),
        cmocka_unit_test(sigterm_drains_and_exits_zero),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
