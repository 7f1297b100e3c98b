/*
 * Self-test of the integration harness (tests/support/rt_testenv): if this
 * fails, every other integration test would fail for a reason that has
 * nothing to do with the services.
 *
 * It proves what the other tests rely on: nats-server comes up with
 * JetStream and keeps its streams over a restart; PostgreSQL comes up, runs
 * SQL, refuses connections while stopped and keeps its data over a restart;
 * a child process is started, its log watched and stopped by signal; the
 * HTTP client and the Prometheus parser read what services serve, and fail
 * the way a test expects when nothing answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "rt_testenv.h"

#define STREAM_NAME "RT_TESTENV"

/* Fails the test with the harness's own error message. */
#define assert_rt_ok(expr)                                                                         \
    do {                                                                                           \
        rt_status s_ = (expr);                                                                     \
        if (s_ != RT_OK)                                                                           \
            fail_msg("%s -> %s: %s [%s]", #expr, rt_status_text(s_), rt_error_message(),           \
                     rt_error_origin());                                                           \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- temp dirs and ports ---- */

static void test_tmpdir_and_free_port(void **state)
{
    (void)state;
    int a = rt_test_free_port(), b = rt_test_free_port();
    assert_true(a > 0 && a < 65536);
    assert_true(b > 0 && b < 65536);

    char *dir = rt_test_tmpdir("self");
    assert_non_null(dir);
    assert_true(strncmp(dir, "/tmp/rt-test-self-", 18) == 0);
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/a/b", dir) > 0);
    char *a_dir = strndup(sub, strlen(sub) - 2);
    assert_int_equal(mkdir(a_dir, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    rt_test_rmtree(dir);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
    rt_test_rmtree(NULL); /* harmless */
    free(a_dir);
    free(sub);
    free(dir);
}

/* ---- nats-server with JetStream ---- */

static void connect_js(natsConnection **nc, jsCtx **js, const char *url)
{
    natsStatus ns = natsConnection_ConnectTo(nc, url);
    if (ns != NATS_OK)
        fail_msg("connect %s: %s", url, natsStatus_GetText(ns));
    ns = natsConnection_JetStream(js, *nc, NULL);
    if (ns != NATS_OK)
        fail_msg("JetStream context: %s", natsStatus_GetText(ns));
}

static void test_nats_jetstream_survives_restart(void **state)
{
    (void)state;
    rt_test_nats *nats = NULL;
    assert_rt_ok(rt_test_nats_start(&nats, "max_payload: 1048576"));
    char expected_url[64];
    snprintf(expected_url, sizeof(expected_url), "nats://127.0.0.1:%d", rt_test_nats_port(nats));
    assert_string_equal(rt_test_nats_url(nats), expected_url);

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    connect_js(&nc, &js, rt_test_nats_url(nats));

    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"rt.testenv.>"};
    cfg.Name = STREAM_NAME;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (ns != NATS_OK)
        fail_msg("add stream: %s (jerr %d)", natsStatus_GetText(ns), (int)jerr);
    jsStreamInfo_Destroy(si);
    jsPubAck *ack = NULL;
    ns = js_Publish(&ack, js, "rt.testenv.hello", "hi", 2, NULL, &jerr);
    if (ns != NATS_OK)
        fail_msg("publish: %s (jerr %d)", natsStatus_GetText(ns), (int)jerr);
    assert_int_equal(ack->Sequence, 1);
    jsPubAck_Destroy(ack);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    /* The monitoring port answers plain HTTP. */
    int status = 0;
    char *body = NULL;
    assert_rt_ok(rt_test_http_get(&status, &body, rt_test_nats_monitor_port(nats), "/varz", 2000));
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"server_id\""));
    free(body);

    int port_before = rt_test_nats_port(nats);
    assert_rt_ok(rt_test_nats_restart(nats));
    assert_int_equal(rt_test_nats_port(nats), port_before);

    connect_js(&nc, &js, rt_test_nats_url(nats));
    si = NULL;
    ns = js_GetStreamInfo(&si, js, STREAM_NAME, NULL, &jerr);
    if (ns != NATS_OK)
        fail_msg("stream after restart: %s (jerr %d)", natsStatus_GetText(ns), (int)jerr);
    assert_int_equal(si->State.Msgs, 1);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    /* Stopped means stopped: nothing listens any more. */
    assert_rt_ok(rt_test_nats_stop(nats));
    nc = NULL;
    natsOptions *opts = NULL;
    assert_int_equal(natsOptions_Create(&opts), NATS_OK);
    natsOptions_SetURL(opts, expected_url);
    natsOptions_SetTimeout(opts, 500);
    natsOptions_SetMaxReconnect(opts, 0);
    assert_int_not_equal(natsConnection_Connect(&nc, opts), NATS_OK);
    natsOptions_Destroy(opts);

    rt_test_nats_destroy(nats);
    rt_test_nats_destroy(NULL);
}

/* ---- PostgreSQL ---- */

static void test_pg_survives_restart(void **state)
{
    (void)state;
    rt_test_pg *pg = NULL;
    assert_rt_ok(rt_test_pg_start(&pg));
    char expected_url[80];
    snprintf(expected_url, sizeof(expected_url), "postgresql://unpuzzle@127.0.0.1:%d/unpuzzle",
             rt_test_pg_port(pg));
    assert_string_equal(rt_test_pg_url(pg), expected_url);
    assert_rt_ok(rt_test_pg_migrate(pg));
    assert_rt_ok(rt_test_pg_migrate(pg)); /* idempotent */

    assert_rt_ok(rt_test_pg_exec(pg, "CREATE TABLE testenv_probe (id int PRIMARY KEY, v text);"
                                     "INSERT INTO testenv_probe VALUES (1, 'kept'), (2, NULL);"));
    char *value = NULL;
    assert_rt_ok(rt_test_pg_query_value(&value, pg, "SELECT v FROM testenv_probe WHERE id = 1"));
    assert_string_equal(value, "kept");
    free(value);
    assert_rt_ok(rt_test_pg_query_value(&value, pg, "SELECT v FROM testenv_probe WHERE id = 2"));
    assert_null(value);
    assert_rt_ok(rt_test_pg_query_value(&value, pg, "SELECT v FROM testenv_probe WHERE id = 3"));
    assert_null(value);
    assert_rt_ok(rt_test_pg_query_value(&value, pg, "SELECT current_user"));
    assert_string_equal(value, "unpuzzle");
    free(value);
    /* Bad SQL is RT_ERR_PG with the server's message. */
    assert_int_equal(rt_test_pg_exec(pg, "SELECT * FROM no_such_table"), RT_ERR_PG);
    assert_non_null(strstr(rt_error_message(), "no_such_table"));

    assert_rt_ok(rt_test_pg_stop(pg));
    assert_int_equal(rt_test_pg_exec(pg, "SELECT 1"), RT_ERR_UNAVAILABLE);
    assert_int_equal(rt_test_pg_query_value(&value, pg, "SELECT 1"), RT_ERR_UNAVAILABLE);

    assert_rt_ok(rt_test_pg_start_again(pg));
    assert_string_equal(rt_test_pg_url(pg), expected_url);
    assert_rt_ok(rt_test_pg_query_value(&value, pg, "SELECT count(*) FROM testenv_probe"));
    assert_string_equal(value, "2");
    free(value);

    rt_test_pg_destroy(pg);
    rt_test_pg_destroy(NULL);
}

/* ---- child processes ---- */

static void test_proc_log_and_stop(void **state)
{
    (void)state;
    rt_test_proc *proc = NULL;
    const char *argv[] = {"-c", "echo \"hello $RT_TESTENV_GREETING\"; sleep 30", NULL};
    const char *env[] = {"RT_TESTENV_GREETING=world", NULL};
    assert_rt_ok(rt_test_proc_start(&proc, "/bin/sh", argv, env));
    assert_true(rt_test_proc_pid(proc) > 0);
    assert_rt_ok(rt_test_proc_wait_log(proc, "hello world", 5000));
    assert_true(rt_test_proc_running(proc));
    /* Not there: times out, quickly. */
    assert_int_equal(rt_test_proc_wait_log(proc, "never printed", 50), RT_ERR_TIMEOUT);

    /* SIGTERM reaches the whole group, so the shell's `sleep` goes too. */
    int exit_status = 0;
    assert_rt_ok(rt_test_proc_stop(proc, SIGTERM, 5000, &exit_status));
    assert_true(WIFSIGNALED(exit_status));
    assert_int_equal(WTERMSIG(exit_status), SIGTERM);
    assert_false(rt_test_proc_running(proc));
    /* The group is gone once init has reaped the orphaned `sleep`. */
    double deadline = now_s() + 3.0;
    while (kill(-rt_test_proc_pid(proc), 0) == 0 && now_s() < deadline)
        usleep(10 * 1000);
    assert_int_equal(kill(-rt_test_proc_pid(proc), 0), -1);
    rt_test_proc_destroy(proc);
    rt_test_proc_destroy(NULL);
}

static void test_proc_failures_are_early_and_clear(void **state)
{
    (void)state;
    rt_test_proc *proc = NULL;
    /* A binary that does not exist fails at start, not later. */
    assert_int_equal(rt_test_proc_start(&proc, "/nonexistent/rt-test-binary", NULL, NULL),
                     RT_ERR_IO);
    assert_non_null(strstr(rt_error_message(), "No such file"));
    assert_null(proc);

    /* A process that dies makes wait_http fail at once, not at the timeout.
     * Its log tail is printed on destroy (expected in this test's output). */
    const char *argv[] = {"-c", "echo 'config error: RT_TESTENV_X is bad' >&2; exit 3", NULL};
    assert_rt_ok(rt_test_proc_start(&proc, "/bin/sh", argv, NULL));
    int port = rt_test_free_port();
    double t0 = now_s();
    assert_int_equal(rt_test_proc_wait_http(proc, port, "/healthz", 200, 10000),
                     RT_ERR_UNAVAILABLE);
    assert_true(now_s() - t0 < 2.0);
    assert_non_null(strstr(rt_error_message(), "exited with status 3"));
    assert_rt_ok(rt_test_proc_wait_log(proc, "RT_TESTENV_X is bad", 1000));
    int exit_status = 0;
    assert_rt_ok(rt_test_proc_stop(proc, SIGTERM, 1000, &exit_status));
    assert_true(WIFEXITED(exit_status));
    assert_int_equal(WEXITSTATUS(exit_status), 3);
    rt_test_proc_destroy(proc);
}

/* ---- HTTP client against a tiny listener ---- */

typedef struct {
    int listen_fd;
    const char *response;
} tiny_server;

static void *tiny_server_run(void *arg)
{
    tiny_server *srv = arg;
    int fd = accept(srv->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char buf[2048];
    size_t got = 0;
    while (got < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    size_t len = strlen(srv->response);
    if (write(fd, srv->response, len) != (ssize_t)len)
        fprintf(stderr, "tiny_server: short write\n");
    close(fd);
    return NULL;
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

static const char metrics_body[] =
    "# HELP unpuzzle_auth_verify_total Token verifications.\n"
    "# TYPE unpuzzle_auth_verify_total counter\n"
    "unpuzzle_auth_verify_total{result=\"ok\"} 42\n"
    "unpuzzle_auth_verify_total{result=\"expired\"} 3\n"
    "unpuzzle_auth_up 1\n"
    "unpuzzle_auth_latency_seconds_bucket{le=\"+Inf\",path=\"a}b\"} 7\n"
    "unpuzzle_auth_ratio 0.25 1700000000000\n";

static void test_http_get(void **state)
{
    (void)state;
    int port = 0;
    int fd = listen_loopback(&port);

    /* Chunked body, split across two chunks. */
    tiny_server srv = {.listen_fd = fd,
                       .response = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: text/plain; version=0.0.4\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n"
                                   "6\r\nhello \r\n"
                                   "5\r\nworld\r\n"
                                   "0\r\n\r\n"};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, tiny_server_run, &srv), 0);
    int status = 0;
    char *body = NULL;
    assert_rt_ok(rt_test_http_get(&status, &body, port, "/metrics", 2000));
    pthread_join(thread, NULL);
    assert_int_equal(status, 200);
    assert_string_equal(body, "hello world");
    free(body);

    /* Content-Length body, status other than 200, body not wanted. */
    srv.response = "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nnot ready";
    assert_int_equal(pthread_create(&thread, NULL, tiny_server_run, &srv), 0);
    assert_rt_ok(rt_test_http_get(&status, NULL, port, "/readyz", 2000));
    pthread_join(thread, NULL);
    assert_int_equal(status, 503);

    /* A listener that never answers: a timeout, on time. */
    double t0 = now_s();
    assert_int_equal(rt_test_http_get(&status, &body, port, "/slow", 200), RT_ERR_TIMEOUT);
    assert_null(body);
    assert_true(now_s() - t0 < 1.0);
    close(fd);

    /* Nobody listening: unavailable. */
    assert_int_equal(rt_test_http_get(&status, NULL, rt_test_free_port(), "/", 1000),
                     RT_ERR_UNAVAILABLE);
    /* wait_http without a process polls until its timeout. */
    assert_int_equal(rt_test_proc_wait_http(NULL, rt_test_free_port(), "/", 200, 100),
                     RT_ERR_TIMEOUT);
}

/* ---- Prometheus text ---- */

static void test_metric_value(void **state)
{
    (void)state;
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_verify_total{result=\"ok\"}") ==
                42.0);
    assert_true(rt_test_metric_value(metrics_body,
                                     "unpuzzle_auth_verify_total{result=\"expired\"}") == 3.0);
    /* Unlabelled name: the first labelled sample. */
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_verify_total") == 42.0);
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_up") == 1.0);
    /* Quoted '}' in a label value, and a timestamp after the value. */
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_latency_seconds_bucket") == 7.0);
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_ratio") == 0.25);
    /* A prefix of another name, a missing series, a comment: absent. */
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_verify") == -1);
    assert_true(rt_test_metric_value(metrics_body, "unpuzzle_auth_missing") == -1);
    assert_true(rt_test_metric_value(metrics_body, "# HELP") == -1);
    assert_true(rt_test_metric_value(NULL, "x") == -1);
    assert_true(rt_test_metric_value("x_total 5", "x") == -1);
}

static double started_at;

static int group_setup(void **state)
{
    (void)state;
    started_at = now_s();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nats_CloseAndWait(2000);
    fprintf(stderr, "test_testenv: %.2f s\n", now_s() - started_at);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tmpdir_and_free_port),
        cmocka_unit_test(test_metric_value),
        cmocka_unit_test(test_http_get),
        cmocka_unit_test(test_proc_log_and_stop),
        cmocka_unit_test(test_proc_failures_are_early_and_clear),
        cmocka_unit_test(test_nats_jetstream_survives_restart),
        cmocka_unit_test(test_pg_survives_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
