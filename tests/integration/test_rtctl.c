/*
 * rtctl, the operator CLI, against the real stack (nats-server, PostgreSQL,
 * auth, one ws-edge): its tokens verify, what it publishes reaches a room in
 * order with seq/prevSeq (seen by `rtctl tail`), bad payloads are refused
 * naming the field, a repeated event id is stored once, and tail reports
 * refusals on stderr with a non-zero exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_teststack.h"
#include "rt_time.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x

static rt_test_stack *stack;
static char nats_env[160];
static char ws_url[96];
static const char *const rtctl_env[] = {nats_env, "SUPABASE_JWT_SECRET=" RT_TEST_JWT_SECRET, NULL};

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK ||
        rt_test_pg_exec(stack->pg,
                        "INSERT INTO realtime.course_members (course_id, user_id, role) VALUES"
                        " ('c1', 'stu-1', 'student');") != RT_OK ||
        rt_test_stack_start_auth(stack, NULL) != RT_OK ||
        rt_test_stack_start_edge(stack, NULL, NULL) != RT_OK) {
        fprintf(stderr, "stack: %s\n", rt_error_message());
        return -1;
    }
    snprintf(nats_env, sizeof(nats_env), "NATS_URL=%s", rt_test_nats_url(stack->nats));
    snprintf(ws_url, sizeof(ws_url), "ws://127.0.0.1:%d/ws", stack->edges[0].port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0;
    if (!f)
        return rt_strdup("");
    FILE *mem = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    fclose(mem);
    return text;
}

/* Waits up to timeout_ms for `proc` to exit on its own; returns its exit
 * code (-1 if it had to be killed or died of a signal). */
static int wait_exit(rt_test_proc *proc, int timeout_ms)
{
    int status = 0;
    for (int waited = 0; waited < timeout_ms && rt_test_proc_running(proc); waited += 20)
        usleep(20 * 1000);
    if (rt_test_proc_stop(proc, SIGKILL, 2000, &status) != RT_OK || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Runs rtctl to completion; *output gets its stdout+stderr (caller frees). */
static int run_rtctl(char **output, const char *const *argv)
{
    rt_test_proc *proc = NULL;
    assert_int_equal(rt_test_proc_start(&proc, "rtctl", argv, rtctl_env), RT_OK);
    int code = wait_exit(proc, 20000);
    *output = read_file(rt_test_proc_log_path(proc));
    rt_test_proc_destroy(proc);
    return code;
}

static char *mint(const char *user, const char *role)
{
    char *out = NULL;
    const char *argv[] = {"token", user, role ? "--role" : NULL, role, NULL};
    assert_int_equal(run_rtctl(&out, argv), 0);
    out[strcspn(out, "\r\n")] = '\0';
    return out;
}

static void token_verifies_with_auth(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__VerifyReply *reply = NULL;
    char *token = mint("stu-1", NULL);

    assert_int_equal(rt_test_verify(&reply, stack, token), RT_OK);
    assert_true(reply->ok);
    assert_string_equal(reply->user_id, "stu-1");
    assert_int_equal(reply->role, ROLE(STUDENT));
    assert_true(reply->expires_at && reply->expires_at->seconds > rt_time_now_ms() / 1000 + 3000);
    unpuzzle__rt__v1__verify_reply__free_unpacked(reply, NULL);
    free(token);

    token = mint("teach-9", "instructor");
    assert_int_equal(rt_test_verify(&reply, stack, token), RT_OK);
    assert_true(reply->ok);
    assert_string_equal(reply->user_id, "teach-9");
    assert_int_equal(reply->role, ROLE(INSTRUCTOR));
    unpuzzle__rt__v1__verify_reply__free_unpacked(reply, NULL);
    free(token);
}

static void token_refuses_without_secret(void **state)
{
    (void)state;
    rt_test_proc *proc = NULL;
    const char *argv[] = {"token", "u1", NULL};
    const char *env[] = {"SUPABASE_JWT_SECRET=", NULL};

    assert_int_equal(rt_test_proc_start(&proc, "rtctl", argv, env), RT_OK);
    assert_int_equal(wait_exit(proc, 5000), 2);
    char *out = read_file(rt_test_proc_log_path(proc));
    assert_non_null(strstr(out, "SUPABASE_JWT_SECRET"));
    free(out);
    rt_test_proc_destroy(proc);
}

static uint64_t publish(const char *event_id, const char *text, bool *duplicate)
{
    char payload[256], *out = NULL;
    unsigned long long seq = 0;
    snprintf(payload, sizeof(payload),
             "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":12.5,"
             "\"text\":\"%s\"}",
             text);
    const char *argv[] = {"publish", "course:c1", "confusion", "create",
                          payload,   "--user-id", "stu-1",     event_id ? "--event-id" : NULL,
                          event_id,  NULL};
    int code = run_rtctl(&out, argv);
    if (code != 0)
        fail_msg("rtctl publish exited %d: %s", code, out);
    const char *line = strstr(out, "published course:c1 seq=");
    assert_non_null(line);
    assert_int_equal(sscanf(line, "published course:c1 seq=%llu", &seq), 1);
    if (duplicate)
        *duplicate = strstr(line, " duplicate") != NULL;
    free(out);
    return seq;
}

/* The first JSON line of `log` whose payload text is `text`. */
static json_t *find_message(const char *log, const char *text)
{
    for (const char *p = log; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_t *obj = json_loadb(p, len, 0, NULL);
        const char *t = json_string_value(json_object_get(json_object_get(obj, "payload"), "text"));
        if (t && strcmp(t, text) == 0)
            return obj;
        json_decref(obj);
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static void published_messages_reach_tail_in_order(void **state)
{
    (void)state;
    char *token = mint("stu-1", NULL);
    rt_test_proc *tail = NULL;
    const char *argv[] = {"tail",    "course:c1", "--token",   token, "--url", ws_url,
                          "--count", "2",         "--timeout", "20",  NULL};

    assert_int_equal(rt_test_proc_start(&tail, "rtctl", argv, rtctl_env), RT_OK);
    assert_int_equal(rt_test_proc_wait_log(tail, "\"type\":\"subscribed\"", 10000), RT_OK);

    uint64_t seq1 = publish(NULL, "first", NULL);
    uint64_t seq2 = publish(NULL, "second", NULL);
    assert_true(seq2 > seq1);

    assert_int_equal(wait_exit(tail, 10000), 0);
    char *log = read_file(rt_test_proc_log_path(tail));
    json_t *m1 = find_message(log, "first"), *m2 = find_message(log, "second");
    if (!m1 || !m2)
        fail_msg("tail output lacks the messages:\n%s", log);
    assert_true(strstr(log, "\"first\"") < strstr(log, "\"second\""));
    assert_string_equal(json_string_value(json_object_get(m1, "type")), "confusion");
    assert_string_equal(json_string_value(json_object_get(m1, "action")), "create");
    assert_string_equal(json_string_value(json_object_get(m1, "room")), "course:c1");
    assert_string_equal(json_string_value(json_object_get(m1, "userId")), "stu-1");
    assert_int_equal(json_integer_value(json_object_get(m1, "seq")), seq1);
    assert_int_equal(json_integer_value(json_object_get(m2, "seq")), seq2);
    assert_int_equal(json_integer_value(json_object_get(m2, "prevSeq")), seq1);
    /* The payload's eventId and userId were filled from the message's. */
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(m1, "payload"), "userId")), "stu-1");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(m1, "payload"), "eventId")),
        json_string_value(json_object_get(m1, "eventId")));
    json_decref(m1);
    json_decref(m2);
    free(log);
    rt_test_proc_destroy(tail);
    free(token);
}

static void unknown_payload_field_exits_2(void **state)
{
    (void)state;
    char *out = NULL;
    const char *argv[] = {
        "publish", "course:c1", "question", "create", "{\"courseId\":\"c1\",\"txet\":\"typo\"}",
        NULL};

    assert_int_equal(run_rtctl(&out, argv), 2);
    assert_non_null(strstr(out, "txet"));
    assert_non_null(strstr(out, "unknown field"));
    assert_null(strstr(out, "published"));
    free(out);

    const char *bad_json[] = {"publish", "course:c1", "question", "create", "{\"courseId\":", NULL};
    assert_int_equal(run_rtctl(&out, bad_json), 2);
    free(out);
    const char *bad_room[] = {"publish", "course:c.1", "question", "create", "{}", NULL};
    assert_int_equal(run_rtctl(&out, bad_room), 2);
    free(out);
}

static void same_event_id_is_stored_once(void **state)
{
    (void)state;
    bool dup1 = true, dup2 = false;
    uint64_t seq1 = publish("rtctl-dup-1", "once", &dup1);
    uint64_t seq2 = publish("rtctl-dup-1", "once", &dup2);

    assert_false(dup1);
    assert_true(dup2);
    assert_int_equal(seq1, seq2);
}

static void tail_reports_refusals(void **state)
{
    (void)state;
    char *token = mint("stu-1", NULL), *out = NULL;
    const char *forbidden[] = {"tail", "course:c2", "--token", token, "--url",
                               ws_url, "--timeout", "10",      NULL};

    assert_int_equal(run_rtctl(&out, forbidden), 1);
    assert_non_null(strstr(out, "forbidden"));
    free(out);

    const char *unauthorized[] = {"tail", "course:c1", "--token", "not-a-token", "--url",
                                  ws_url, "--timeout", "10",      NULL};
    assert_int_equal(run_rtctl(&out, unauthorized), 1);
    assert_non_null(strstr(out, "unauthorized"));
    free(out);
    free(token);
}

static void tail_ends_on_timeout_and_ctrl_c(void **state)
{
    (void)state;
    char *token = mint("stu-1", NULL), *out = NULL;
    rt_test_proc *tail = NULL;
    int status = -1;

    /* --count not reached within --timeout: exit 3. */
    const char *short_wait[] = {"tail",    "course:c1", "--token",   token, "--url", ws_url,
                                "--count", "50",        "--timeout", "1",   NULL};
    assert_int_equal(run_rtctl(&out, short_wait), 3);
    assert_non_null(strstr(out, "timed out"));
    free(out);

    /* Ctrl-C is the ordinary way to stop a tail. */
    const char *forever[] = {"tail", "course:c1", "--token", token, "--url", ws_url, NULL};
    assert_int_equal(rt_test_proc_start(&tail, "rtctl", forever, rtctl_env), RT_OK);
    assert_int_equal(rt_test_proc_wait_log(tail, "\"type\":\"subscribed\"", 10000), RT_OK);
    assert_int_equal(rt_test_proc_stop(tail, SIGINT, 5000, &status), RT_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    rt_test_proc_destroy(tail);

    /* Nothing listening: exit 1 with the reason on stderr. */
    char dead_url[64];
    snprintf(dead_url, sizeof(dead_url), "ws://127.0.0.1:%d/ws", rt_test_free_port());
    const char *dead[] = {"tail", "course:c1", "--token", token, "--url", dead_url, NULL};
    assert_int_equal(run_rtctl(&out, dead), 1);
    assert_non_null(strstr(out, "cannot connect"));
    free(out);
    free(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_verifies_with_auth),
        cmocka_unit_test(token_refuses_without_secret),
        cmocka_unit_test(published_messages_reach_tail_in_order),
        cmocka_unit_test(unknown_payload_field_exits_2),
        cmocka_unit_test(same_event_id_is_stored_once),
        cmocka_unit_test(tail_reports_refusals),
        cmocka_unit_test(tail_ends_on_timeout_and_ctrl_c),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
