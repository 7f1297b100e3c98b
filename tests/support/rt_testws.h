/*
 * rt_testws: a blocking WebSocket client (RFC 6455) for integration tests,
 * written here over a plain loopback TCP socket so that a test sees exactly
 * what a browser would: the HTTP status of a refused upgrade, every frame,
 * the close code and reason.
 *
 *   rt_testws *ws;
 *   rt_testws_options o = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1"};
 *   rt_testws_connect(&ws, port, &o);            // 101 checked, Accept verified
 *   rt_testws_send_text(ws, "{\"type\":\"auth\",\"token\":\"...\"}");
 *   json_t *m = NULL;
 *   rt_testws_recv_json(&m, ws, 2000);           // one JSON object
 *   json_decref(m);
 *   rt_testws_wait_close(ws, 2000);              // close code in rt_testws_close_code()
 *   rt_testws_destroy(ws);
 *
 * Receiving: server text messages are split on '\n' (JSON Lines, several
 * objects per frame) into a FIFO of JSON objects; rt_testws_recv_json() pops
 * it and reads the socket only when it is empty. Pings are answered with a
 * pong at once; a close frame is answered (echoing its code) and recorded.
 * A test that wants a slow reader just stops calling the receive functions
 * (and may shrink SO_RCVBUF with rt_testws_options.rcvbuf).
 * Sending: every frame is masked with a fresh random key; any size (7, 16
 * and 64-bit lengths), fragmented sends, raw frames with arbitrary header
 * bits for protocol-violation tests, and permessage-deflate (raw deflate,
 * RSV1) when it was negotiated.
 *
 * The frame codec (rt_testws_frame_encode/decode) is pure and exported for
 * its unit test. Not thread-safe: one rt_testws per thread. All pointers
 * returned through `json_t **` belong to the caller (json_decref()).
 */
#ifndef RT_TESTWS_H
#define RT_TESTWS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

/* The browser origin the test helpers allow by default (WS_ALLOWED_ORIGINS). */
#define RT_TEST_ORIGIN "http://localhost:3000"

enum {
    RT_WS_OP_CONT = 0x0,
    RT_WS_OP_TEXT = 0x1,
    RT_WS_OP_BINARY = 0x2,
    RT_WS_OP_CLOSE = 0x8,
    RT_WS_OP_PING = 0x9,
    RT_WS_OP_PONG = 0xA,
};

/* ---- frame codec (pure) ---- */

typedef struct rt_testws_frame {
    bool fin, rsv1, rsv2, rsv3, masked;
    uint8_t opcode;
    uint8_t mask[4];
    uint64_t payload_len;
    size_t header_len; /* bytes before the payload */
} rt_testws_frame;

/* Writes a frame header and (masked, if `mask` is not NULL) payload into
 * out (capacity `cap`). Returns the frame's total size; when that is more
 * than cap nothing is written (call again with a bigger buffer). `rsv`
 * holds the RSV1..3 bits as 0x4|0x2|0x1. */
size_t rt_testws_frame_encode(uint8_t *out, size_t cap, uint8_t opcode, bool fin, uint8_t rsv,
                              const uint8_t *mask, const void *payload, size_t len);
/* Parses the header at buf. Returns 1 and fills *out when the header and the
 * whole payload are in buf (the payload starts at buf + out->header_len and
 * is still masked if out->masked), 0 when more bytes are needed, -1 when the
 * header is malformed (64-bit length with the top bit set, a control frame
 * longer than 125 bytes or fragmented). */
int rt_testws_frame_decode(rt_testws_frame *out, const uint8_t *buf, size_t len);
/* XORs data with the mask, starting at mask byte `offset % 4`. */
void rt_testws_mask(void *data, size_t len, const uint8_t mask[4], size_t offset);
/* base64(SHA-1(key + RFC 6455 GUID)): the expected Sec-WebSocket-Accept. */
void rt_testws_accept_key(char out[29], const char *key);

/* ---- client ---- */

typedef struct rt_testws rt_testws;

typedef struct rt_testws_options {
    const char *path;           /* default "/ws" */
    const char *origin;         /* Origin header; NULL: none */
    const char *subprotocol;    /* Sec-WebSocket-Protocol; NULL: none */
    bool deflate;               /* offer permessage-deflate */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
    int rcvbuf;                 /* SO_RCVBUF before connecting; 0: default */
    int timeout_ms;             /* connect + handshake; 0: 5000 */
} rt_testws_options;

/*
 * Connects to 127.0.0.1:port and upgrades. On success *out is the client.
 * If the server answers anything but 101, *out is NULL, *http_status (may be
 * NULL) gets the status and RT_ERR_AUTH is returned; a 101 with a wrong
 * Sec-WebSocket-Accept, or an extension/subprotocol the client did not
 * offer, is RT_ERR_DECODE. `options` may be NULL.
 */
rt_status rt_testws_connect(rt_testws **out, int *http_status, int port,
                            const rt_testws_options *options);
/* Closes the socket and frees; NULL harmless. */
void rt_testws_destroy(rt_testws *ws);

/* What the 101 response said ("" when absent). */
const char *rt_testws_subprotocol(const rt_testws *ws);
const char *rt_testws_extensions(const rt_testws *ws);
bool rt_testws_deflate(const rt_testws *ws); /* permessage-deflate negotiated */
int rt_testws_fd(const rt_testws *ws);

/* ---- sending (RT_ERR_IO once the peer has gone) ---- */
rt_status rt_testws_send_text(rt_testws *ws, const char *text);
/* One message of `opcode` (TEXT/BINARY), compressed when `compress` (needs
 * deflate negotiated), split into frames of at most `fragment` payload bytes
 * (0: one frame). */
rt_status rt_testws_send(rt_testws *ws, uint8_t opcode, const void *data, size_t len, bool compress,
                         size_t fragment);
/* One raw frame, masked, with the given bits (for protocol violations). */
rt_status rt_testws_send_frame(rt_testws *ws, uint8_t opcode, bool fin, uint8_t rsv,
                               const void *payload, size_t len);
/* Bytes as they are, unframed. */
rt_status rt_testws_send_raw(rt_testws *ws, const void *data, size_t len);
/* A close frame with `code` (0: no code) and reason. */
rt_status rt_testws_send_close(rt_testws *ws, uint16_t code, const char *reason);

/* ---- receiving ---- */
/* The next JSON object from the server. RT_ERR_TIMEOUT when none came in
 * time; RT_ERR_IO when the connection closed (or was closed) first, with
 * the queue empty; RT_ERR_JSON when a line was not JSON (the text is in
 * rt_error_message()). */
rt_status rt_testws_recv_json(json_t **out, rt_testws *ws, int timeout_ms);
/* Skips objects until one whose "type" is `type` (and, when `id` is not
 * NULL, whose "id" is `id`); the skipped ones are dropped. */
rt_status rt_testws_recv_type(json_t **out, rt_testws *ws, const char *type, const char *id,
                              int timeout_ms);
/* Reads until the server's close frame (or EOF) arrives; JSON received
 * meanwhile stays queued. RT_ERR_TIMEOUT if the connection is still open. */
rt_status rt_testws_wait_close(rt_testws *ws, int timeout_ms);
/* Reads for up to timeout_ms (less if the connection closes), queueing
 * whatever arrives; for "nothing more comes" checks. */
void rt_testws_drain(rt_testws *ws, int timeout_ms);
/* Objects waiting in the queue. */
size_t rt_testws_queued(const rt_testws *ws);
/* Never waits: reads what the socket holds right now (up to max_bytes; 0:
 * 4 MiB) and processes it like the functions above (JSON queued, pings
 * answered, a close recorded). Returns the bytes read. For driving many
 * clients from one poll() loop over rt_testws_fd(): when the fd is readable,
 * call this, then pop the queue with rt_testws_recv_json(&m, ws, 0) (a zero
 * timeout never reads the socket). */
size_t rt_testws_read_available(rt_testws *ws, size_t max_bytes);

/* The close code the server sent: -1 while open, 1005 for a close frame
 * without code, 1006 when the TCP connection ended without a close frame. */
int rt_testws_close_code(const rt_testws *ws);
const char *rt_testws_close_reason(const rt_testws *ws);
bool rt_testws_closed(const rt_testws *ws);
/* Protocol pings answered and pongs received so far. */
unsigned rt_testws_pings_answered(const rt_testws *ws);
unsigned rt_testws_pongs_received(const rt_testws *ws);
/* Data messages (text or binary) and bytes received so far. */
uint64_t rt_testws_messages_received(const rt_testws *ws);

/* ---- protocol helpers (browser protocol v1) ---- */
/* Sends {"type":"auth","token":...} and waits for the answer: RT_OK with
 * *auth_ok (may be NULL) on auth_ok, RT_ERR_AUTH with *auth_ok = the error
 * object otherwise. */
rt_status rt_testws_auth(json_t **reply, rt_testws *ws, const char *token, int timeout_ms);
/* Connects with the test origin and subprotocol and authenticates. */
rt_status rt_testws_open(rt_testws **out, int port, const char *token);
/* Sends {"type":"subscribe","id":id,"room":room} and waits for the reply with
 * that id ("subscribed" or "error"): *reply gets it; RT_OK only for
 * "subscribed". */
rt_status rt_testws_subscribe(json_t **reply, rt_testws *ws, const char *id, const char *room,
                              int timeout_ms);

/* Convenience for assertions: the string member `key` of `obj` ("" when
 * absent or not a string) and the integer member (-1 when absent). */
const char *rt_json_str(const json_t *obj, const char *key);
long long rt_json_int(const json_t *obj, const char *key);

#endif
