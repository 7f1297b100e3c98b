/*
 * rt_admin: the operator endpoints every service serves.
 *
 *   GET /healthz   200 "ok" while the process runs (liveness).
 *   GET /readyz    200 "ready" when the service's ready callback says so,
 *                  else 503 with the reason (readiness: NATS connected, not
 *                  draining, ...).
 *   GET /metrics   200, Prometheus text format 0.0.4 of the registry.
 *   anything else  404; methods other than GET/HEAD 405.
 *
 * Services that talk only to NATS (auth, analytics-aggregator,
 * notification-dispatcher) run rt_admin_start(): a small libwebsockets HTTP
 * server on its own thread and port (ADMIN_PORT). ws-edge serves the same
 * endpoints on its WebSocket port from its own lws context, using
 * rt_admin_respond() to build the answer.
 */
#ifndef RT_ADMIN_H
#define RT_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "rt_metrics.h"
#include "rt_status.h"

/* Returns true when ready; else writes a short reason into why. Called on
 * the admin thread: must be thread-safe and must not block. */
typedef bool (*rt_admin_ready_fn)(void *arg, char *why, size_t why_size);

typedef struct rt_admin_options {
    const char *bind_address; /* NULL or "" = all interfaces */
    int port;                 /* 0 = pick a free port (tests); see rt_admin_port() */
    rt_metrics *metrics;      /* borrowed; must outlive the server */
    rt_admin_ready_fn ready;  /* NULL = always ready */
    void *ready_arg;
} rt_admin_options;

typedef struct rt_admin rt_admin;

/* A response computed without any socket (unit-testable, shared with
 * ws-edge). body is malloc()ed; the caller frees it. */
typedef struct rt_admin_response {
    int status;               /* 200, 404, 405, 503 */
    const char *content_type; /* static string */
    char *body;
    size_t body_len;
} rt_admin_response;

void rt_admin_respond(rt_admin_response *out, const char *method, const char *path,
                      rt_metrics *metrics, rt_admin_ready_fn ready, void *ready_arg);

/*
 * Serving the endpoints from a service's own libwebsockets context
 * (ws-edge): embed an rt_admin_http in the connection's session data, call
 * rt_admin_http_begin() on LWS_CALLBACK_HTTP (`in` is the path lws passes),
 * rt_admin_http_writeable() on LWS_CALLBACK_HTTP_WRITEABLE, and
 * rt_admin_http_reset() when the connection closes. They return what the
 * lws callback should return. lws service thread only.
 */
struct lws;
typedef struct rt_admin_http {
    rt_admin_response response;
    size_t sent;
    bool active;   /* a response is pending */
    bool headonly; /* HEAD: headers only */
} rt_admin_http;

int rt_admin_http_begin(struct lws *wsi, rt_admin_http *req, const char *in, rt_metrics *metrics,
                        rt_admin_ready_fn ready, void *ready_arg);
int rt_admin_http_writeable(struct lws *wsi, rt_admin_http *req);
void rt_admin_http_reset(rt_admin_http *req);

/* Sends libwebsockets' own log lines (errors only) through rt_log as JSON.
 * Process-wide; call before creating any lws context. */
void rt_admin_route_lws_logs(void);

/* Starts the server thread; returns once the port is listening. */
rt_status rt_admin_start(rt_admin **out, const rt_admin_options *options);
/* The bound port (useful when options->port was 0). */
int rt_admin_port(const rt_admin *admin);
/* Stops and joins the thread. NULL is harmless. */
void rt_admin_stop(rt_admin *admin);

#endif
