/*
 * rt_nats: one NATS connection per service, with JetStream.
 *
 * The connection reconnects forever with exponential backoff and jitter
 * (100 ms doubling to 5 s), also when the first connect fails (the service
 * starts and reports not-ready until NATS is there). Disconnects, reconnects,
 * async errors (slow consumers, permission violations) and closes are logged.
 * rt_nats_is_connected() feeds /readyz.
 *
 * Thread-safety: nats.c objects are thread-safe; this wrapper adds only an
 * atomic connected flag. Callbacks run on nats.c threads.
 */
#ifndef RT_NATS_H
#define RT_NATS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "rt_status.h"

typedef struct rt_nats_options {
    const char *url;        /* comma-separated nats:// URLs */
    const char *name;       /* connection name shown by the server (the service) */
    const char *user;       /* optional NATS user (deploy/nats per-service users) */
    const char *password;   /* optional; never logged */
    const char *creds_file; /* optional .creds file (decentralized auth) */
    /* > 0: async subscriptions share this many delivery threads (nats.c's
     * global delivery pool, process-wide) instead of one thread each; for a
     * service with thousands of subscriptions (ws-edge rooms). Order within
     * a subscription is kept. */
    int delivery_threads;
    /* Optional, on a nats.c thread: the connection came back (subscriptions
     * are re-sent; whatever was published meanwhile was missed), and a
     * subscription dropped messages (slow consumer). */
    void (*on_reconnected)(void *arg);
    void (*on_slow_consumer)(natsSubscription *sub, void *arg);
    void *callback_arg;
} rt_nats_options;

typedef struct rt_nats rt_nats;

/* Connects (or keeps trying in the background). Returns RT_OK unless the
 * options are invalid. The caller owns *out (rt_nats_close()). */
rt_status rt_nats_connect(rt_nats **out, const rt_nats_options *options);

bool rt_nats_is_connected(const rt_nats *nats);
/* True once nats.c gave up on the connection for good (for instance the
 * server kept refusing our credentials). The service should exit non-zero so
 * its supervisor restarts it; it will never become ready again. */
bool rt_nats_closed_for_good(const rt_nats *nats);
/* Waits up to timeout_ms for the connection to be up. */
rt_status rt_nats_wait_connected(rt_nats *nats, int timeout_ms);

/* Borrowed pointers; valid until rt_nats_close(). */
natsConnection *rt_nats_connection(rt_nats *nats);
jsCtx *rt_nats_jetstream(rt_nats *nats);

/* Drains subscriptions and pending publishes (up to timeout_ms), then closes
 * and frees. NULL is harmless. */
void rt_nats_close(rt_nats *nats, int timeout_ms);

/* Records a nats.c failure (with nats.c's own error text) as RT_ERR_NATS
 * (or RT_ERR_TIMEOUT / RT_ERR_UNAVAILABLE where that is what happened). */
#define RT_NATS_ERR(s, what) rt_nats_error_record((s), (what), __FILE__, __func__, __LINE__)
rt_status rt_nats_error_record(natsStatus s, const char *what, const char *file, const char *func,
                               int line);

/* A JetStream stream as the services declare it. */
typedef struct rt_stream_spec {
    const char *name;             /* "EVENTS" */
    const char *subject;          /* "evt.v1.>" */
    int64_t max_age_s;            /* 0 = unlimited */
    int64_t max_msgs_per_subject; /* 0 = unlimited */
    int64_t max_bytes;            /* 0 = unlimited */
    int64_t duplicate_window_s;   /* Nats-Msg-Id dedupe window */
    const char *republish_src;    /* NULL = no RePublish */
    const char *republish_dest;
    bool memory_storage; /* false = file storage (survives restarts) */
} rt_stream_spec;

/*
 * Creates the stream, or updates it to `spec` when it exists with other
 * limits. Safe when several services run it at once at start.
 */
rt_status rt_nats_ensure_stream(rt_nats *nats, const rt_stream_spec *spec);

/* The EVENTS stream of spec/subjects.md with the given retention. */
void rt_stream_spec_events(rt_stream_spec *out, int64_t max_age_s, int64_t duplicate_window_s);

/* The ROOMS stream: rt.v1.room.> kept per room (max_per_room messages,
 * max_age_s), re-published to rtd.v1.room.> with Nats-Sequence and
 * Nats-Last-Sequence headers (spec/subjects.md "Room delivery"). */
void rt_stream_spec_rooms(rt_stream_spec *out, int64_t max_age_s, int64_t max_per_room,
                          int64_t duplicate_window_s);

/*
 * Publishes to a JetStream subject with Nats-Msg-Id = msg_id (so a retried
 * publish is stored once), waiting for the stream's ack; retries a timed-out
 * publish up to `attempts` times. *out_seq (may be NULL) gets the stream
 * sequence; *out_duplicate (may be NULL) whether the stream had it already.
 */
rt_status rt_nats_js_publish(uint64_t *out_seq, bool *out_duplicate, rt_nats *nats,
                             const char *subject, const void *data, int len, const char *msg_id,
                             int timeout_ms, int attempts);

/* Request/reply with a deadline; *reply is the caller's (natsMsg_Destroy).
 * No responder or deadline passed -> RT_ERR_TIMEOUT / RT_ERR_UNAVAILABLE. */
rt_status rt_nats_request(natsMsg **reply, rt_nats *nats, const char *subject, const void *data,
                          int len, int timeout_ms);

#endif
