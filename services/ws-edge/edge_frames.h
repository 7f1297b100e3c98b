/*
 * edge_frames: the browser protocol's frames (spec/protocol.md, docs/protocol.md).
 *
 * Parsing: one browser frame = one JSON object. edge_frame_parse() checks it
 * completely (known "type", required fields present with the right JSON types,
 * no unknown fields, ids and rooms well-formed, sizes capped) and fills an
 * edge_in_frame, or fails with a one-line reason for a bad_request error that
 * names the problem ("subscribe: missing field room", "unknown field
 * 'rooom'") without echoing values. Pure functions: no I/O, no globals,
 * thread-safe.
 *
 * Rules: "type" is one of auth, refresh, subscribe, unsubscribe, ping,
 * confusion, question, progress, prompt, notification; each allows only its
 * fields (see edge_in_type). "id" is optional except on actions (the ack
 * needs it); "id": null and "since": null count as absent. Duplicate keys
 * (at any depth) are refused. Reasons echo a field name only when it is at
 * most 32 printable ASCII characters without quotes or spaces. The epoch in
 * "since" is 0..64 printable ASCII characters without '"' or '\\'.
 *
 * Rendering: the server's frames as compact JSON text (no newline; the
 * sender joins several with '\n'). Each returns a malloc()ed, NUL-terminated
 * string the caller frees (never NULL, except edge_render_room_message on
 * failure); *out_len (may be NULL) gets strlen. Strings are JSON-escaped and
 * invalid UTF-8 is replaced by U+FFFD, so the output is always valid JSON;
 * a NULL string argument renders as "".
 */
#ifndef EDGE_FRAMES_H
#define EDGE_FRAMES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"
#include "rt_room.h"
#include "rt_status.h"

/* A client-chosen request id: 1..64 printable ASCII characters (no '"',
 * '\\' or control characters); optional on every frame but actions. */
#define EDGE_CLIENT_ID_MAX 64
/* Largest token accepted in a frame (auth refuses > 8 KiB unread anyway). */
#define EDGE_TOKEN_MAX 8192
#define EDGE_EPOCH_MAX 64

typedef enum edge_in_type {
    EDGE_IN_AUTH = 1, /* {"type":"auth","token":"..."} */
    EDGE_IN_REFRESH,  /* {"type":"refresh","token":"..."} */
    EDGE_IN_SUBSCRIBE, /* {"type":"subscribe","id":"c1","room":"course:42","since":{"seq":N,"epoch":"..."}}
                        */
    EDGE_IN_UNSUBSCRIBE, /* {"type":"unsubscribe","id":"c2","room":"course:42"} */
    EDGE_IN_PING,        /* {"type":"ping","id":"..."} */
    EDGE_IN_ACTION, /* {"type":"confusion|question|progress|prompt|notification","action":"create|update","id":"...","payload":{...}}
                     */
} edge_in_type;

typedef struct edge_in_frame {
    edge_in_type type;
    char id[EDGE_CLIENT_ID_MAX + 1]; /* "" when absent */
    /* auth, refresh */
    const char *token; /* points into `root`; valid until release */
    size_t token_len;
    /* subscribe, unsubscribe */
    rt_room room;
    char room_name[RT_ROOM_NAME_MAX];
    bool has_since;
    uint64_t since_seq;
    char since_epoch[EDGE_EPOCH_MAX + 1];
    /* actions (parsed further by the action handler) */
    char action_type[16]; /* "confusion", ... */
    char action[16];      /* "create", "update" */
    json_t *payload;      /* borrowed from `root` */
    json_t *root;         /* owned; freed by edge_frame_release() */
} edge_in_frame;

/*
 * Parses one frame of `len` bytes (not NUL-terminated; must be UTF-8 text).
 * On failure returns RT_ERR_JSON and writes the reason into why (and, when
 * the frame had a usable "id", copies it into out->id so the error can carry
 * it; everything else of *out is zeroed, root included). edge_frame_release()
 * must be called either way. On success, token and payload borrow from root.
 */
rt_status edge_frame_parse(edge_in_frame *out, const char *data, size_t len, char *why,
                           size_t why_size);
void edge_frame_release(edge_in_frame *frame);

/* ---- rendering ---- */

/* {"type":"auth_ok","connectionId":"…","userId":"…","role":"student","expiresAt":"RFC3339"}
 * role: "student", "instructor" or "admin" (ROLE_UNSPECIFIED -> "student"). */
char *edge_render_auth_ok(size_t *out_len, const char *connection_id, const char *user_id,
                          Unpuzzle__Rt__V1__Role role, int64_t expires_at_ms);
/* {"type":"error","id":"…","code":"…","message":"…","room":"…"}; id, message
 * and room are left out when NULL or "". */
char *edge_render_error(size_t *out_len, const char *id, const char *code, const char *message,
                        const char *room);
/* {"type":"subscribed","id":"…","room":"…","epoch":"…","seq":N,"recovered":true|false}
 * id is left out when NULL or "" (likewise in the three renderers below). */
char *edge_render_subscribed(size_t *out_len, const char *id, const char *room, const char *epoch,
                             uint64_t seq, bool recovered);
/* {"type":"unsubscribed","id":"…","room":"…"} */
char *edge_render_unsubscribed(size_t *out_len, const char *id, const char *room);
/* {"type":"pong","id":"…","serverTime":"RFC3339"} */
char *edge_render_pong(size_t *out_len, const char *id, int64_t server_time_ms);
/* {"type":"ack","id":"…","eventId":"…"} */
char *edge_render_ack(size_t *out_len, const char *id, const char *event_id);
/* {"type":"ack","id":"…","eventId":"…","confusionId":"…","duplicate":true}:
 * the entity only when entity_key and entity_id are set, duplicate only when
 * true (JetStream had the event already: a retried action). */
char *edge_render_action_ack(size_t *out_len, const char *id, const char *event_id,
                             const char *entity_key, const char *entity_id, bool duplicate);
/* {"type":"notifications","id":"…","payload":<payload_json>} (payload_json is
 * JSON made by rt_pbjson; "{}" when NULL or ""). */
char *edge_render_notifications(size_t *out_len, const char *id, const char *payload_json);

/*
 * A room message as the browser sees it (spec "Messages to the browser"):
 * {"type":"confusion","action":"create","room":"course:42","seq":1235,
 *  "prevSeq":1230,"payload":{…},"timestamp":"…","userId":"…","eventId":"…"}
 * The payload is the RoomMessage's set oneof member rendered by rt_pbjson
 * (lowerCamelCase keys), "payload":{} when none is set. "timestamp" is left
 * out when unset, "userId" and "eventId" when "". seq and prevSeq are JSON
 * integers. Returns NULL (error recorded with RT_ERR, *out_len = 0) only when
 * rt_pbjson cannot render the message. Rendered once per edge and shared by
 * every member.
 */
char *edge_render_room_message(size_t *out_len, const Unpuzzle__Rt__V1__RoomMessage *msg,
                               const char *room, uint64_t seq, uint64_t prev_seq);

#endif
