/*
 * edge_hub: ws-edge's side of NATS, shared by all event loops.
 *
 * Rooms: the hub subscribes to rtd.v1.room.<kind>.<id> only while at least
 * one loop has a member in that room (interest-based routing) and
 * unsubscribes when the last one leaves. Each room message is decoded and
 * rendered to JSON once, with seq/prevSeq from the Nats-Sequence and
 * Nats-Last-Sequence headers, and the same bytes are posted to every loop
 * with members. When a room is first subscribed, its last sequence is looked
 * up in the ROOMS stream (on a worker thread) and announced to the loops, so
 * the first "subscribed" reports the right seq.
 *
 * RPCs: requests to auth go out with a reply subject that names the loop and
 * the request; the reply is posted back to that loop.
 *
 * Thread-safety: every function may be called from any thread; room state is
 * guarded by one mutex held only for map lookups.
 */
#ifndef EDGE_HUB_H
#define EDGE_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edge_actions.h"
#include "edge_config.h"
#include "edge_frames.h"
#include "edge_loop.h"
#include "edge_metrics.h"
#include "rt_nats.h"

typedef struct edge_hub edge_hub;

rt_status edge_hub_create(edge_hub **out, const edge_config *config, edge_metrics *metrics);
/* Gives the hub its loops (before any traffic). */
void edge_hub_set_loops(edge_hub *hub, edge_loop **loops, int n_loops);
/* From now on nothing is posted to the loops (call before stopping them):
 * waits for any post in progress. */
void edge_hub_detach_loops(edge_hub *hub);
/* Connects to NATS (in the background if it is down) and subscribes to RPC
 * replies and cache invalidations. */
rt_status edge_hub_connect(edge_hub *hub);
/* Main thread, periodically: creates/updates the ROOMS stream and refreshes
 * its epoch once NATS is reachable. */
void edge_hub_tick(edge_hub *hub);
/* NATS connected and the ROOMS stream known. */
bool edge_hub_ready(edge_hub *hub, char *why, size_t why_size);
bool edge_hub_failed(edge_hub *hub);

/* The ROOMS stream's epoch (changes when the stream is recreated). */
void edge_hub_epoch(edge_hub *hub, char out[EDGE_EPOCH_MAX + 1]);

/* A loop gains its first member of `room`. *known tells whether the room's
 * last sequence is known now (*last_seq); if not, edge_loop_post_room_ready()
 * follows. Every message the hub takes in after this call is posted to the
 * loop. */
void edge_hub_join(edge_hub *hub, int loop_index, const char *room, bool *known,
                   uint64_t *last_seq);
/* A loop's last member of `room` left. */
void edge_hub_leave(edge_hub *hub, int loop_index, const char *room);

/* Reads the room's history after since_seq up to until_seq (on a worker) and
 * posts it to the loop (edge_loop_post_replay) for connection conn_id. */
void edge_hub_replay(edge_hub *hub, int loop_index, uint64_t conn_id, const char *room,
                     uint64_t since_seq, uint64_t until_seq);

/* Sends an RPC request whose reply goes to edge_loop_post_rpc_reply(loop,
 * request_id, ...). RT_ERR_UNAVAILABLE when NATS is down. */
rt_status edge_hub_request(edge_hub *hub, int loop_index, uint64_t request_id, const char *subject,
                           const void *data, size_t len);

/* Stores an action's events in EVENTS (JetStream, Nats-Msg-Id = event id,
 * retried on timeout) and then shows its room message, on a worker thread,
 * and posts the outcome to edge_loop_post_action_done(loop, request_id,
 * ...). Actions with the same order_key (a connection) are stored in the
 * order they were handed in. Takes ownership of the action. */
void edge_hub_publish_action(edge_hub *hub, int loop_index, uint64_t request_id, uint64_t order_key,
                             edge_action *action);

/* A core NATS publish (presence): fire and forget, RT_ERR_UNAVAILABLE
 * when NATS is down. */
rt_status edge_hub_publish(edge_hub *hub, const char *subject, const void *data, size_t len);

/* Unsubscribes everything and closes NATS. NULL harmless. */
void edge_hub_destroy(edge_hub *hub);

#endif
