/*
 * rt_admin: rt_admin_respond() for every path, method and ready state, and
 * the real lws server on a loopback port, spoken to with a tiny HTTP client
 * written here (no dependency on rt_testsupport).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "rt_admin.h"
#include "rt_log.h"

#define PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"

/* ---- a readiness callback the tests flip ------------------------------ */

static atomic_bool ready_flag;

static bool ready_cb(void *arg, char *why, size_t why_size)
{
    const char *reason = arg;
    if (atomic_load(&ready_flag))
        return true;
    snprintf(why, why_size, "%s", reason ? reason : "");
    return false;
}

/* ---- rt_admin_respond -------------------------------------------------- */

static void expect(const char *method, const char *path, rt_metrics *metrics,
                   rt_admin_ready_fn ready, void *ready_arg, int status, const char *body)
{
    rt_admin_response r;
    rt_admin_respond(&r, method, path, metrics, ready, ready_arg);
    assert_int_equal(r.status, status);
    assert_non_null(r.content_type);
    assert_non_null(r.body);
    if (body) {
        assert_int_equal(r.body_len, strlen(body));
        assert_memory_equal(r.body, body, r.body_len);
    }
    free(r.body);
}

static void test_respond_healthz(void **state)
{
    (void)state;
    expect("GET", "/healthz", NULL, NULL, NULL, 200, "ok\n");
    expect("HEAD", "/healthz", NULL, NULL, NULL, 200, "ok\n");
    expect("GET", "/healthz?verbose=1", NULL, NULL, NULL, 200, "ok\n");
    /* Liveness does not depend on readiness. */
    atomic_store(&ready_flag, false);
    expect("GET", "/healthz", NULL, ready_cb, "nats down", 200, "ok\n");

    rt_admin_response r;
    rt_admin_respond(&r, "GET", "/healthz", NULL, NULL, NULL);
    assert_string_equal(r.content_type, "text/plain; charset=utf-8");
    free(r.body);
}

static void test_respond_readyz(void **state)
{
    (void)state;
    /* No callback: always ready. */
    expect("GET", "/readyz", NULL, NULL, NULL, 200, "ready\n");
    atomic_store(&ready_flag, true);
    expect("GET", "/readyz", NULL, ready_cb, "nats down", 200, "ready\n");
    expect("HEAD", "/readyz?x", NULL, ready_cb, "nats down", 200, "ready\n");
    atomic_store(&ready_flag, false);
    expect("GET", "/readyz", NULL, ready_cb, "nats down", 503, "not ready: nats down\n");
    expect("HEAD", "/readyz", NULL, ready_cb, "draining", 503, "not ready: draining\n");
    expect("GET", "/readyz", NULL, ready_cb, "", 503, "not ready\n");
}

static void test_respond_metrics(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_counter_add(rt_metrics_counter(m, "unpuzzle_test_things_total", "Things.", "k=\"v\""), 4);

    const char *expected = "# HELP unpuzzle_test_things_total Things.\n"
                           "# TYPE unpuzzle_test_things_total counter\n"
                           "unpuzzle_test_things_total{k=\"v\"} 4\n";
    expect("GET", "/metrics", m, NULL, NULL, 200, expected);
    expect("HEAD", "/metrics?x=y", m, NULL, NULL, 200, expected);
    /* /metrics answers even when not ready. */
    atomic_store(&ready_flag, false);
    expect("GET", "/metrics", m, ready_cb, "nats down", 200, expected);

    rt_admin_response r;
    rt_admin_respond(&r, "GET", "/metrics", m, NULL, NULL);
    assert_string_equal(r.content_type, PROMETHEUS_TEXT);
    free(r.body);

    /* No registry: an empty exposition. */
    expect("GET", "/metrics", NULL, NULL, NULL, 200, "");
    rt_metrics_destroy(m);
}

static void test_respond_not_found(void **state)
{
    (void)state;
    const char *paths[] = {"/",          "/nope",   "/healthz/", "/healthzz", "/HEALTHZ",
                           "/metrics/x", "healthz", "",          "/readyz/"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        expect("GET", paths[i], NULL, NULL, NULL, 404, "not found\n");
        /* Unknown paths are 404 whatever the method. */
        expect("POST", paths[i], NULL, NULL, NULL, 404, "not found\n");
    }
    expect("GET", NULL, NULL, NULL, NULL, 404, "not found\n");
}

static void test_respond_method_not_allowed(void **state)
{
    (void)state;
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "get", ""};
    const char *paths[] = {"/healthz", "/readyz", "/metrics", "/metrics?x=1"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        for (size_t j = 0; j < sizeof(paths) / sizeof(paths[0]); j++)
            expect(methods[i], paths[j], NULL, NULL, NULL, 405, "method not allowed\n");
    expect(NULL, "/healthz", NULL, NULL, NULL, 405, "method not allowed\n");
}

/* ---- a tiny HTTP/1.1 client ------------------------------------------- */

typedef struct http_reply {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body;
    size_t body_len;
    bool closed; /* the server closed the connection after the reply */
} http_reply;

static void reply_free(http_reply *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The value of header `name` in r->head, copied into out; false if absent. */
static bool reply_header(const http_reply *r, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line && line[2]) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= out_size)
                n = out_size - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const char *data)
{
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

/*
 * Reads one reply on fd: the head, then Content-Length bytes of body (none
 * for HEAD), then checks whether the server closed the connection.
 */
static void read_reply(int fd, bool head_request, bool expect_close, http_reply *r)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    char *end_of_head = NULL;

    memset(r, 0, sizeof(*r));
    while (!end_of_head) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        /* Byte by byte, so nothing of a later reply is consumed. */
        ssize_t n = recv(fd, buf + len, 1, 0);
        assert_true(n == 1);
        len++;
        buf[len] = '\0';
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
            end_of_head = buf + len;
    }
    r->head = buf;
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1);

    char value[64];
    size_t body_len = 0;
    assert_true(reply_header(r, "content-length", value, sizeof(value)));
    body_len = strtoul(value, NULL, 10);
    r->body = malloc(body_len + 1);
    if (!head_request) {
        size_t got = 0;
        while (got < body_len) {
            ssize_t n = recv(fd, r->body + got, body_len - got, 0);
            assert_true(n > 0);
            got += (size_t)n;
        }
        r->body_len = body_len;
    }
    r->body[r->body_len] = '\0';
    if (expect_close) {
        char extra;
        ssize_t n = recv(fd, &extra, 1, 0);
        /* Nothing after the declared body; then EOF. */
        assert_int_equal(n, 0);
        r->closed = true;
    }
}

static void http_do(int port, const char *method, const char *path, http_reply *r)
{
    char request[512];
    int fd = connect_loopback(port);
    snprintf(request, sizeof(request),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
    send_all(fd, request);
    read_reply(fd, strcmp(method, "HEAD") == 0, true, r);
    close(fd);
}

static int count_open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- the real server -------------------------------------------------- */

static rt_admin *start_server(const char *bind_address, rt_metrics *m, const char *reason)
{
    rt_admin *admin = NULL;
    rt_admin_options o = {
        .bind_address = bind_address,
        .port = 0,
        .metrics = m,
        .ready = ready_cb,
        .ready_arg = (void *)reason,
    };
    rt_status s = rt_admin_start(&admin, &o);
    if (s != RT_OK)
        fprintf(stderr, "rt_admin_start: %s\n", rt_error_message());
    assert_int_equal(s, RT_OK);
    assert_non_null(admin);
    assert_true(rt_admin_port(admin) > 0);
    assert_true(rt_admin_port(admin) <= 65535);
    return admin;
}

static void test_server_healthz_readyz_404_405(void **state)
{
    (void)state;
    http_reply r;
    char value[128];
    atomic_store(&ready_flag, false);
    rt_admin *admin = start_server("127.0.0.1", NULL, "nats down");
    int port = rt_admin_port(admin);

    http_do(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    assert_true(reply_header(&r, "content-type", value, sizeof(value)));
    assert_string_equal(value, "text/plain; charset=utf-8");
    reply_free(&r);

    http_do(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: nats down\n");
    reply_free(&r);

    atomic_store(&ready_flag, true);
    http_do(port, "GET", "/readyz?probe=k8s", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    reply_free(&r);

    http_do(port, "GET", "/nope", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "not found\n");
    reply_free(&r);

    http_do(port, "DELETE", "/metrics", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.body, "method not allowed\n");
    assert_true(reply_header(&r, "allow", value, sizeof(value)));
    assert_string_equal(value, "GET, HEAD");
    reply_free(&r);

    /* No registry: an empty exposition, Content-Length 0. */
    http_do(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_true(r.closed);
    reply_free(&r);

    /* HEAD: the GET headers (with its Content-Length), no body. */
    http_do(port, "HEAD", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_true(reply_header(&r, "content-length", value, sizeof(value)));
    assert_string_equal(value, "3");
    assert_int_equal(r.body_len, 0);
    assert_true(r.closed);
    reply_free(&r);

    rt_admin_stop(admin);
}

static void test_server_post_with_body(void **state)
{
    (void)state;
    http_reply r;
    rt_admin *admin = start_server("127.0.0.1", NULL, NULL);
    int fd = connect_loopback(rt_admin_port(admin));
    send_all(fd, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Connection: close\r\n\r\nhello");
    read_reply(fd, false, true, &r);
    assert_int_equal(r.status, 405);
    close(fd);
    reply_free(&r);

    /* Keep-alive: the answer may come before the body; the body is then
     * skipped and the next request on the connection is served. */
    fd = connect_loopback(rt_admin_port(admin));
    send_all(fd, "PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    read_reply(fd, false, false, &r);
    assert_int_equal(r.status, 405);
    reply_free(&r);
    send_all(fd, "hello");
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_reply(fd, false, true, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    reply_free(&r);
    close(fd);
    rt_admin_stop(admin);
}

static void test_server_keep_alive(void **state)
{
    (void)state;
    http_reply r;
    atomic_store(&ready_flag, true);
    rt_admin *admin = start_server(NULL, NULL, NULL);
    int fd = connect_loopback(rt_admin_port(admin));

    for (int i = 0; i < 3; i++) {
        send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        read_reply(fd, false, false, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok\n");
        reply_free(&r);
        send_all(fd, "HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        read_reply(fd, true, false, &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    send_all(fd, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_reply(fd, false, true, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    close(fd);
    rt_admin_stop(admin);
}

static void test_server_large_metrics(void **state)
{
    (void)state;
    http_reply r;
    char value[128];
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    for (int i = 0; i < 3000; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "room=\"room-%05d\"", i);
        rt_counter_add(rt_metrics_counter(m, "unpuzzle_test_room_messages_total",
                                          "Messages per room.", labels),
                       (uint64_t)i * 7);
    }
    char *expected = NULL;
    size_t expected_len = 0;
    assert_int_equal(rt_metrics_render(&expected, &expected_len, m), RT_OK);
    assert_true(expected_len > 64 * 1024);

    rt_admin *admin = start_server(NULL, m, NULL);
    http_do(rt_admin_port(admin), "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_true(reply_header(&r, "content-type", value, sizeof(value)));
    assert_string_equal(value, PROMETHEUS_TEXT);
    assert_int_equal(r.body_len, expected_len);
    assert_memory_equal(r.body, expected, expected_len);
    reply_free(&r);

    http_do(rt_admin_port(admin), "HEAD", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_true(reply_header(&r, "content-length", value, sizeof(value)));
    assert_int_equal(strtoul(value, NULL, 10), expected_len);
    assert_int_equal(r.body_len, 0);
    reply_free(&r);

    rt_admin_stop(admin);
    free(expected);
    rt_metrics_destroy(m);
}

static int listen_on(const char *address, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, address, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void expect_port_in_use(const char *bind_address, int port)
{
    char port_text[16];
    rt_admin *admin = NULL;
    rt_admin_options o = {.bind_address = bind_address, .port = port};

    rt_error_clear();
    assert_int_equal(rt_admin_start(&admin, &o), RT_ERR_IO);
    assert_null(admin);
    assert_int_equal(rt_error_status(), RT_ERR_IO);
    snprintf(port_text, sizeof(port_text), "%d", port);
    assert_non_null(strstr(rt_error_message(), port_text));
    assert_non_null(strstr(rt_error_message(), "in use"));
}

static void test_server_port_in_use(void **state)
{
    (void)state;
    int port;
    int fds_before = count_open_fds();
    FILE *log = tmpfile();
    assert_non_null(log);
    rt_log_set_stream(log);

    int loopback_fd = listen_on("127.0.0.1", &port);
    expect_port_in_use("127.0.0.1", port);
    close(loopback_fd);

    int any_fd = listen_on("0.0.0.0", &port);
    expect_port_in_use(NULL, port);
    expect_port_in_use("", port);
    close(any_fd);

    rt_log_set_stream(NULL);
    /* lws's own error lines went through rt_log. */
    long size = ftell(log);
    char *lines = calloc(1, (size_t)(size > 0 ? size : 0) + 1);
    rewind(log);
    assert_int_equal(fread(lines, 1, (size_t)size, log), (size_t)size);
    assert_non_null(strstr(lines, "\"msg\":\"libwebsockets\""));
    assert_non_null(strstr(lines, "\"level\":\"error\""));
    free(lines);
    fclose(log);

    /* Nothing left open by the failed starts. */
    assert_int_equal(count_open_fds(), fds_before);

    /* Bad arguments. */
    rt_admin *admin = NULL;
    rt_admin_options bad = {.port = 70000};
    assert_int_equal(rt_admin_start(&admin, &bad), RT_ERR_INVALID_ARG);
    assert_int_equal(rt_admin_start(&admin, NULL), RT_ERR_INVALID_ARG);
    assert_null(admin);
}

static void test_server_start_stop_repeatedly(void **state)
{
    (void)state;
    http_reply r;
    int fds_before = count_open_fds();
    rt_admin_stop(NULL);
    atomic_store(&ready_flag, true);
    for (int i = 0; i < 20; i++) {
        rt_admin *admin = start_server(i % 2 ? "127.0.0.1" : NULL, NULL, NULL);
        if (i % 4 == 0) {
            http_do(rt_admin_port(admin), "GET", "/healthz", &r);
            assert_int_equal(r.status, 200);
            reply_free(&r);
        }
        if (i % 4 == 1) {
            /* A client still connected at stop time. */
            int fd = connect_loopback(rt_admin_port(admin));
            rt_admin_stop(admin);
            close(fd);
            continue;
        }
        rt_admin_stop(admin);
    }
    /* Every socket, pipe and eventfd of every context was released. */
    assert_int_equal(count_open_fds(), fds_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_respond_healthz),
        cmocka_unit_test(test_respond_readyz),
        cmocka_unit_test(test_respond_metrics),
        cmocka_unit_test(test_respond_not_found),
        cmocka_unit_test(test_respond_method_not_allowed),
        cmocka_unit_test(test_server_healthz_readyz_404_405),
        cmocka_unit_test(test_server_post_with_body),
        cmocka_unit_test(test_server_keep_alive),
        cmocka_unit_test(test_server_large_metrics),
        cmocka_unit_test(test_server_port_in_use),
        cmocka_unit_test(test_server_start_stop_repeatedly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
