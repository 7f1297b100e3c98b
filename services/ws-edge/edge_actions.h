/*
 * edge_actions: what a browser action frame becomes (docs/protocol.md,
 * "Actions"): the domain event(s) to store in EVENTS, who must be allowed,
 * and what to show in a room at once.
 *
 * The payload is checked strictly: only the keys of that action (unknown,
 * missing, and server-set keys such as userId are bad_request, naming the
 * key), then converted by the generic JSON -> protobuf translator (types,
 * UTF-8, 4,000 characters per text) together with the fields the server
 * sets: eventId (derived from the user and the client's request id, so a
 * retried action, even on a new connection, has the same id and JetStream
 * stores it once), occurredAt
 * (now), userId (the verified token's), and the new confusion/question id.
 *
 * Pure: no I/O; any thread.
 */
#ifndef EDGE_ACTIONS_H
#define EDGE_ACTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"
#include "rt_room.h"
#include "rt_status.h"

#define EDGE_ACTION_EVENTS_MAX 2
#define EDGE_EVENT_ID_MAX 36 /* 8-4-4-4-12 hex */

typedef enum edge_action_who {
    EDGE_ACTION_MEMBER,     /* a member of course_id (or an admin) */
    EDGE_ACTION_INSTRUCTOR, /* an instructor of course_id (or an admin) */
    EDGE_ACTION_SELF,       /* the user acts on their own data: no check */
} edge_action_who;

typedef struct edge_action {
    edge_action_who who;
    char course_id[RT_ID_MAX + 1]; /* "" for SELF */
    /* Stored in order; the first is the action's own event. */
    ProtobufCMessage *events[EDGE_ACTION_EVENTS_MAX];
    const char *subjects[EDGE_ACTION_EVENTS_MAX];
    char event_ids[EDGE_ACTION_EVENTS_MAX][EDGE_EVENT_ID_MAX + 1];
    size_t n_events;
    /* For the ack of a create: "confusionId"/"questionId" and its value. */
    const char *entity_key;
    char entity_id[EDGE_EVENT_ID_MAX + 1];
    /* Shown at once after the events are stored (room "" = none): the
     * RoomMessage borrows events[0] as its payload. */
    char fanout_room[RT_ROOM_NAME_MAX];
    Unpuzzle__Rt__V1__RoomMessage *fanout;
    char fanout_msg_id[EDGE_EVENT_ID_MAX + 8];
    char origin[96]; /* the connection id, owned here: the action outlives the frame */
} edge_action;

/*
 * Builds the action `type`/`action` ("confusion"/"create", ...) of user
 * `user_id` on connection `connection_id` with the client's request id.
 * RT_ERR_JSON with a reason for bad_request (naming the field) when the
 * payload does not fit; RT_ERR_NOT_FOUND when type/action is no action.
 * On success edge_action_free() releases it.
 */
rt_status edge_action_build(edge_action *out, const char *type, const char *action,
                            const json_t *payload, const char *user_id, const char *connection_id,
                            const char *client_id, int64_t now_ms, char *why, size_t why_size);
void edge_action_free(edge_action *action);

/* A stable UUID-shaped id from a name (SHA-256 of it, version-5 style). */
void edge_derive_id(char out[EDGE_EVENT_ID_MAX + 1], const char *name);

#endif
