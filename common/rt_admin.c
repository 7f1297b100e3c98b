/*
 * rt_admin: /healthz, /readyz and /metrics, as a pure function
 * (rt_admin_respond) and as a small libwebsockets HTTP server on its own
 * thread (rt_admin_start).
 *
 * Server shape (lws minimal-http-server-dynamic): one vhost, one protocol,
 * no mounts, so every request arrives as LWS_CALLBACK_HTTP on our callback.
 * There the whole answer is computed with rt_admin_respond() and kept in the
 * per-request data; the headers go out at once (with Content-Length, so
 * HTTP/1.1 keep-alive works) and the body is written in ADMIN_CHUNK pieces,
 * one per LWS_CALLBACK_HTTP_WRITEABLE, the last with LWS_WRITE_HTTP_FINAL.
 * A slow reader therefore holds at most its own rendered body, and lws closes
 * it after ADMIN_SEND_TIMEOUT_S seconds.
 *
 * Threads: rt_admin_start() creates the context and the listening vhost on
 * the caller's thread (so a bind failure is reported synchronously), then
 * hands the context to the admin thread, which alone services it.
 * rt_admin_stop() sets `stopping` and wakes the loop with lws_cancel_service()
 * (the one lws call that is safe from another thread); the loop sees the flag
 * when lws_service() returns, and once the thread is joined the context is
 * destroyed on the stopping thread.
 */
#include "rt_admin.h"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_log.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"

/* Body bytes handed to lws_write() per WRITEABLE callback. */
#define ADMIN_CHUNK 16384
/* A response must be delivered within this many seconds. */
#define ADMIN_SEND_TIMEOUT_S 10

/* ---- the pure part ---------------------------------------------------- */

static void set_text(rt_admin_response *out, int status, const char *content_type, char *body)
{
    out->status = status;
    out->content_type = content_type;
    out->body = body;
    out->body_len = strlen(body);
}

/*
 * Routing is by path first: an unknown path is 404 whatever the method, a
 * known path with a method other than GET/HEAD is 405 (RFC 9110: 405 means
 * the target exists). For HEAD the response is the same as for GET, body
 * included, so a server can send the right Content-Length; the HTTP layer
 * must not send the body. Any "?query" or "#fragment" is ignored.
 */
void rt_admin_respond(rt_admin_response *out, const char *method, const char *path,
                      rt_metrics *metrics, rt_admin_ready_fn ready, void *ready_arg)
{
    enum { P_NONE, P_HEALTHZ, P_READYZ, P_METRICS } target = P_NONE;

    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (path) {
        size_t len = strcspn(path, "?#");
        if (len == 8 && memcmp(path, "/healthz", 8) == 0)
            target = P_HEALTHZ;
        else if (len == 7 && memcmp(path, "/readyz", 7) == 0)
            target = P_READYZ;
        else if (len == 8 && memcmp(path, "/metrics", 8) == 0)
            target = P_METRICS;
    }
    if (target == P_NONE) {
        set_text(out, 404, TEXT_PLAIN, rt_strdup("not found\n"));
        return;
    }
    if (!method || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
        set_text(out, 405, TEXT_PLAIN, rt_strdup("method not allowed\n"));
        return;
    }

    switch (target) {
    case P_HEALTHZ:
        set_text(out, 200, TEXT_PLAIN, rt_strdup("ok\n"));
        return;
    case P_READYZ: {
        char why[256] = "";
        if (!ready || ready(ready_arg, why, sizeof(why))) {
            set_text(out, 200, TEXT_PLAIN, rt_strdup("ready\n"));
            return;
        }
        why[sizeof(why) - 1] = '\0';
        set_text(out, 503, TEXT_PLAIN,
                 why[0] ? rt_asprintf("not ready: %s\n", why) : rt_strdup("not ready\n"));
        return;
    }
    case P_METRICS: {
        char *text = NULL;
        size_t len = 0;
        if (rt_metrics_render(&text, &len, metrics) != RT_OK) {
            set_text(out, 500, TEXT_PLAIN, rt_strdup("metrics unavailable\n"));
            return;
        }
        out->status = 200;
        out->content_type = PROMETHEUS_TEXT;
        out->body = text;
        out->body_len = len;
        return;
    }
    case P_NONE:
        break;
    }
}

/* ---- the server ------------------------------------------------------- */

struct rt_admin {
    struct lws_context *context; /* serviced only by the admin thread */
    pthread_t thread;
    atomic_bool stopping;
    int port;
    rt_metrics *metrics;
    rt_admin_ready_fn ready;
    void *ready_arg;
    char *bind_address; /* lws keeps the iface pointer: it must outlive the vhost */
    struct lws_protocols protocols[2];
};

typedef rt_admin_http admin_request;

/* lws method index (LWSHUMETH_*) to its name. */
static const char *method_name(int meth)
{
    static const char *const names[] = {
        [LWSHUMETH_GET] = "GET",         [LWSHUMETH_POST] = "POST",
        [LWSHUMETH_OPTIONS] = "OPTIONS", [LWSHUMETH_PUT] = "PUT",
        [LWSHUMETH_PATCH] = "PATCH",     [LWSHUMETH_DELETE] = "DELETE",
        [LWSHUMETH_CONNECT] = "CONNECT", [LWSHUMETH_HEAD] = "HEAD",
    };
    if (meth < 0 || (size_t)meth >= sizeof(names) / sizeof(names[0]) || !names[meth])
        return "UNKNOWN";
    return names[meth];
}

void rt_admin_http_reset(rt_admin_http *req)
{
    free(req->response.body);
    memset(req, 0, sizeof(*req));
}

static void request_reset(admin_request *req)
{
    rt_admin_http_reset(req);
}

int rt_admin_http_begin(struct lws *wsi, rt_admin_http *req, const char *in, rt_metrics *metrics,
                        rt_admin_ready_fn ready, void *ready_arg)
{
    uint8_t buf[LWS_PRE + 1024], *start = &buf[LWS_PRE], *p = start, *end = &buf[sizeof(buf) - 1];
    char *uri = NULL;
    int uri_len = 0;
    int meth = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
    char *path = uri && uri_len > 0 ? rt_strndup(uri, (size_t)uri_len) : rt_strdup(in ? in : "/");

    request_reset(req);
    rt_admin_respond(&req->response, method_name(meth), path, metrics, ready, ready_arg);
    free(path);
    req->active = true;
    req->headonly = meth == LWSHUMETH_HEAD;

    if (lws_add_http_common_headers(wsi, (unsigned int)req->response.status,
                                    req->response.content_type, req->response.body_len, &p, end))
        return 1;
    if (req->response.status == 405 &&
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"allow:", (const unsigned char *)"GET, HEAD", 9, &p, end))
        return 1;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end))
        return 1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;

    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, ADMIN_SEND_TIMEOUT_S);
    lws_callback_on_writable(wsi);
    return 0;
}

int rt_admin_http_writeable(struct lws *wsi, rt_admin_http *req)
{
    uint8_t buf[LWS_PRE + ADMIN_CHUNK];

    if (!req || !req->active)
        return 0;
    size_t left = req->headonly ? 0 : req->response.body_len - req->sent;
    if (left) {
        size_t n = left < ADMIN_CHUNK ? left : ADMIN_CHUNK;
        enum lws_write_protocol kind = n == left ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP;
        memcpy(&buf[LWS_PRE], req->response.body + req->sent, n);
        if (lws_write(wsi, &buf[LWS_PRE], n, kind) != (int)n)
            return -1;
        req->sent += n;
        if (n < left) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    request_reset(req);
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    /* Keep-alive: wait for the next request; otherwise close. */
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    admin_request *req = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        rt_admin *admin = lws_context_user(lws_get_context(wsi));
        if (!req || !admin)
            return -1;
        return rt_admin_http_begin(wsi, req, in, admin->metrics, admin->ready, admin->ready_arg);
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return rt_admin_http_writeable(wsi, req);
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        /* A request body (POST, PUT...) is read and dropped: the answer,
         * already queued in LWS_CALLBACK_HTTP, completes the transaction.
         * The dummy callback would complete it here, cutting that answer. */
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (req)
            request_reset(req);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* lws log lines (errors only) become rt_log lines. */
static void lws_log_emit(int level, const char *line)
{
    char text[512];
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof(text))
        n = sizeof(text) - 1;
    memcpy(text, line, n);
    text[n] = '\0';
    rt_log_write(level & LLL_ERR ? RT_LOG_ERROR : RT_LOG_WARN, "libwebsockets", "{s:s}", "detail",
                 text);
}

void rt_admin_route_lws_logs(void)
{
    lws_set_log_level(LLL_ERR, lws_log_emit);
}

static void *admin_thread(void *arg)
{
    rt_admin *admin = arg;

    while (!atomic_load(&admin->stopping)) {
        if (lws_service(admin->context, 0) < 0) {
            rt_log_error("admin HTTP server loop failed; admin endpoints are down", "{s:i}", "port",
                         admin->port);
            break;
        }
    }
    return NULL;
}

static bool is_ipv4_literal(const char *address)
{
    struct in_addr a;
    return address && inet_pton(AF_INET, address, &a) == 1;
}

/* Listening on all interfaces uses one dual-stack IPv6 socket, unless the
 * kernel has no IPv6 at all. */
static bool ipv6_available(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

rt_status rt_admin_start(rt_admin **out, const rt_admin_options *options)
{
    struct lws_context_creation_info info;
    struct lws_vhost *vhost;

    if (!out || !options)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_admin_start: out and options are required");
    if (options->port < 0 || options->port > 65535)
        return RT_ERR(RT_ERR_INVALID_ARG, "admin port %d is out of range 0..65535", options->port);

    rt_admin *admin = rt_calloc(1, sizeof(*admin));
    atomic_init(&admin->stopping, false);
    admin->metrics = options->metrics;
    admin->ready = options->ready;
    admin->ready_arg = options->ready_arg;
    if (options->bind_address && options->bind_address[0])
        admin->bind_address = rt_strdup(options->bind_address);
    admin->protocols[0] = (struct lws_protocols){
        .name = "http",
        .callback = admin_callback,
        .per_session_data_size = sizeof(admin_request),
    };
    /* protocols[1] is the zeroed terminator. */

    /* Process-wide: lws only reports errors, and through rt_log. */
    rt_admin_route_lws_logs();

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.user = admin;
    admin->context = lws_create_context(&info);
    if (!admin->context) {
        free(admin->bind_address);
        free(admin);
        return RT_ERR(RT_ERR_INTERNAL, "admin HTTP server: lws_create_context failed");
    }

    memset(&info, 0, sizeof(info));
    info.vhost_name = "admin";
    info.port = options->port;
    info.iface = admin->bind_address;
    info.protocols = admin->protocols;
    info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (is_ipv4_literal(admin->bind_address) || (!admin->bind_address && !ipv6_available()))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    vhost = lws_create_vhost(admin->context, &info);
    admin->port = vhost ? lws_get_vhost_listen_port(vhost) : -1;
    if (!vhost || admin->port <= 0) {
        rt_status s = RT_ERR(RT_ERR_IO,
                             "admin HTTP server cannot listen on %s port %d "
                             "(port already in use or address not available)",
                             admin->bind_address ? admin->bind_address : "*", options->port);
        lws_context_destroy(admin->context);
        free(admin->bind_address);
        free(admin);
        return s;
    }

    int rc = pthread_create(&admin->thread, NULL, admin_thread, admin);
    if (rc != 0) {
        lws_context_destroy(admin->context);
        free(admin->bind_address);
        free(admin);
        return RT_ERR(RT_ERR_INTERNAL, "admin HTTP server: pthread_create failed: %s",
                      strerror(rc));
    }
    *out = admin;
    return RT_OK;
}

int rt_admin_port(const rt_admin *admin)
{
    return admin ? admin->port : -1;
}

void rt_admin_stop(rt_admin *admin)
{
    if (!admin)
        return;
    atomic_store(&admin->stopping, true);
    /* The context outlives the thread, so waking it from here is safe. */
    lws_cancel_service(admin->context);
    pthread_join(admin->thread, NULL);
    lws_context_destroy(admin->context);
    free(admin->bind_address);
    free(admin);
}
