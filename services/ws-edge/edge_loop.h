/*
 * edge_loop: one libwebsockets event loop on its own thread, owning its
 * connections, its share of the rooms and their send queues.
 *
 * ws-edge runs one loop per core; every loop listens on the same port
 * (SO_REUSEPORT) and the kernel spreads new connections over them. Only the
 * loop's own thread touches its sockets and state. Other threads (NATS
 * callbacks in edge_hub) hand work over through edge_loop_post_*(), which
 * queue an event and wake the loop with lws_cancel_service(); the loop
 * handles its inbox in LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 */
#ifndef EDGE_LOOP_H
#define EDGE_LOOP_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edge_config.h"
#include "edge_metrics.h"
#include "edge_presence.h"
#include "edge_msg.h"
#include "rt_room.h"
#include "rt_admin.h"
#include "rt_status.h"

typedef struct edge_loop edge_loop;
typedef struct edge_hub edge_hub;

typedef struct edge_loop_options {
    int index;                 /* 0..n-1 */
    int port;                  /* port to listen on (the first loop may use 0) */
    const edge_config *config; /* borrowed */
    edge_hub *hub;             /* borrowed */
    edge_metrics *metrics;     /* borrowed */
    edge_presence *presence;   /* borrowed; course: and lesson: memberships */
    rt_metrics *registry;      /* for /metrics */
    rt_admin_ready_fn ready;   /* for /readyz */
    void *ready_arg;
} edge_loop_options;

/* Creates the lws context and its listening socket on the caller's thread
 * (a bind failure is reported here), then starts the loop thread. */
rt_status edge_loop_start(edge_loop **out, const edge_loop_options *options);
/* The port actually bound. */
int edge_loop_port(const edge_loop *loop);
/* Open WebSocket connections of this loop (any thread). */
size_t edge_loop_connections(const edge_loop *loop);

/* The result of a history replay (edge_hub_replay). */
typedef struct edge_replay {
    uint64_t conn_id;
    char room[RT_ROOM_NAME_MAX];
    uint64_t until_seq; /* the room position the replay reaches */
    bool recovered;     /* false: history did not reach back; msgs is empty */
    edge_msg **msgs;    /* rendered, in seq order (references owned) */
    size_t n;
} edge_replay;

void edge_replay_free(edge_replay *replay);

/* ---- from any thread ---- */
/* A room message (the reference is handed over). */
void edge_loop_post_room_message(edge_loop *loop, const char *room, edge_msg *msg);
/* The room's position is known (first subscription on this edge). */
void edge_loop_post_room_ready(edge_loop *loop, const char *room, uint64_t last_seq);
/* An RPC reply for request `request_id` (the message is handed over). */
void edge_loop_post_rpc_reply(edge_loop *loop, uint64_t request_id, natsMsg *reply);
/* A replay finished (the replay is handed over). */
void edge_loop_post_replay(edge_loop *loop, edge_replay *replay);
/* Cached room decisions of a user (or, with NULL, of every lesson room) are stale. */
void edge_loop_post_invalidate(edge_loop *loop, const char *user_id);
/* An action's events were stored (status RT_OK; duplicate: JetStream had
 * them already) or not. */
void edge_loop_post_action_done(edge_loop *loop, uint64_t request_id, rt_status status,
                                bool duplicate);
/* The ROOMS stream was recreated: every room waits for its new position
 * (edge_loop_post_room_ready) and every connection is closed 1012, so
 * clients resume (recovered:false: the epoch changed) and reload. */
void edge_loop_post_rooms_reset(edge_loop *loop);
/* Stop accepting, close every connection with 1012 spread over drain_ms. */
void edge_loop_post_drain(edge_loop *loop, int drain_ms);

/* Stops the thread and frees everything (connections are dropped). NULL harmless. */
void edge_loop_stop(edge_loop *loop);

#endif
