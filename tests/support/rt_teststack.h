/*
 * rt_teststack: the real stack a service test needs, started in one call —
 * nats-server (JetStream), PostgreSQL with the migrations applied, and the
 * auth service as a child process with test keys (an HS256 secret and a JWKS
 * file with an RSA and an EC key) — plus NATS helpers to talk to it the way
 * ws-edge and Django do. Used by integration tests and benchmarks.
 */
#ifndef RT_TESTSTACK_H
#define RT_TESTSTACK_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "rt_proto.h"
#include "rt_testenv.h"
#include "rt_testtoken.h"

#define RT_TEST_JWT_SECRET "test-secret-with-at-least-32-characters!"

#define RT_TEST_MAX_EDGES 4

/* A ws-edge process started by rt_test_stack_start_edge(). */
typedef struct rt_test_edge {
    rt_test_proc *proc;
    int port; /* WS_PORT: /ws, /healthz, /readyz, /metrics */
    char edge_id[32];
} rt_test_edge;

typedef struct rt_test_stack {
    rt_test_nats *nats;
    rt_test_pg *pg;
    rt_testkeys *keys;
    char *dir; /* temp dir for the JWKS file and such */
    char *jwks_path;
    rt_test_proc *auth;
    int auth_admin_port;
    natsConnection *nc; /* the test's own client connection */
    jsCtx *js;
    rt_test_edge edges[RT_TEST_MAX_EDGES];
    int n_edges;
} rt_test_stack;

/* Starts nats + pg (+ migrations) and keys; no service yet. */
rt_status rt_test_stack_start(rt_test_stack **out);
/* Starts the auth binary with the stack's env plus `extra_env` (NULL-
 * terminated "NAME=VALUE", may be NULL; later entries win) and waits for
 * /readyz. */
rt_status rt_test_stack_start_auth(rt_test_stack *stack, const char *const *extra_env);
/*
 * Starts one more ws-edge (stack->edges[*index], index may be NULL) with
 * NATS_URL, WS_PORT=<free port>, EDGE_ID=edge-<n>, WS_ALLOWED_ORIGINS=
 * RT_TEST_ORIGIN ("http://localhost:3000"), WS_THREADS=2, LOG_LEVEL=debug,
 * plus `extra_env` (later entries win), and waits for /readyz on its port
 * (NATS connected, ROOMS stream created). Needs rt_test_stack_start_auth()
 * first for anything but the HTTP endpoints. The edge is stopped by
 * rt_test_stack_destroy() (or earlier with rt_test_proc_stop(edges[i].proc)).
 */
rt_status rt_test_stack_start_edge(rt_test_stack *stack, const char *const *extra_env, int *index);
/* Starts `n` edges with the same extra environment. */
rt_status rt_test_stack_start_edges(rt_test_stack *stack, int n, const char *const *extra_env);

/*
 * Publishes `msg` to the room `room` ("course:42") through JetStream: subject
 * rt.v1.room.<kind>.<id>, Nats-Msg-Id = msg->event_id (when set). *seq (may
 * be NULL) gets the stream sequence and *duplicate (may be NULL) whether
 * JetStream dropped it as a duplicate. The ROOMS stream must exist (an edge
 * creates it).
 */
rt_status rt_test_publish_room(uint64_t *seq, bool *duplicate, rt_test_stack *stack,
                               const char *room, const Unpuzzle__Rt__V1__RoomMessage *msg);
/* A ConfusionCreated RoomMessage (type confusion, action create) with
 * event_id, user_id and text, timestamp now, published to `room`. */
rt_status rt_test_publish_room_confusion(uint64_t *seq, rt_test_stack *stack, const char *room,
                                         const char *event_id, const char *user_id,
                                         const char *text);
/* The same through any JetStream context `js` (e.g. a publisher thread's
 * own connection), waiting up to max_wait_ms for the ack; *duplicate (may be
 * NULL) as in rt_test_publish_room: a duplicate's *seq is the stored
 * original's. */
rt_status rt_test_publish_room_confusion_js(uint64_t *seq, bool *duplicate, jsCtx *js,
                                            int max_wait_ms, const char *room, const char *event_id,
                                            const char *user_id, const char *text);

/* Stops everything; NULL harmless. */
void rt_test_stack_destroy(rt_test_stack *stack);

/* (Re)connects the test's client connection (after a NATS restart). */
rt_status rt_test_stack_connect(rt_test_stack *stack);

/* Mints an HS256 token for `sub` with the stack's secret, valid for an hour. */
char *rt_test_stack_token(const char *sub, const char *app_role);

/* auth.v1.verify; *out is freed with unpuzzle__rt__v1__verify_reply__free_unpacked. */
rt_status rt_test_verify(Unpuzzle__Rt__V1__VerifyReply **out, rt_test_stack *stack,
                         const char *token);
/* auth.v1.authorize. */
rt_status rt_test_authorize(Unpuzzle__Rt__V1__AuthorizeReply **out, rt_test_stack *stack,
                            const char *user_id, Unpuzzle__Rt__V1__Role role, const char *room);

/* Publishes a protobuf event to JetStream with Nats-Msg-Id = event_id. */
rt_status rt_test_publish_event(rt_test_stack *stack, const char *subject,
                                const ProtobufCMessage *event, const char *event_id);

/* EnrollmentChanged / LessonUpserted published to EVENTS at `occurred_s`. */
rt_status rt_test_publish_enrollment(rt_test_stack *stack, const char *event_id,
                                     const char *course_id, const char *user_id,
                                     Unpuzzle__Rt__V1__EnrollmentChange change,
                                     Unpuzzle__Rt__V1__MemberRole role, int64_t occurred_s);
rt_status rt_test_publish_lesson(rt_test_stack *stack, const char *event_id, const char *lesson_id,
                                 const char *course_id, bool deleted, int64_t occurred_s);

/* Polls authorize until `allowed` matches or timeout_ms passes; returns
 * whether it matched. *elapsed_ms (may be NULL) gets the time it took. */
bool rt_test_wait_authorize(rt_test_stack *stack, const char *user_id, Unpuzzle__Rt__V1__Role role,
                            const char *room, bool allowed, int timeout_ms, int *elapsed_ms);

#endif
