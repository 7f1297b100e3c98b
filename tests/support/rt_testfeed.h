/*
 * rt_testfeed: counting for "nothing lost" tests of room delivery.
 *
 *  - rt_test_publisher: a thread with its own NATS connection that publishes
 *    ConfusionCreated RoomMessages to one room through JetStream at a steady
 *    rate, event ids "<prefix>-<n>" (Nats-Msg-Id). A publish that fails (NATS
 *    down, ack timeout) is retried with the same event id until acknowledged
 *    (a retry whose first attempt was stored after all is acknowledged as a
 *    duplicate, with the original's seq), so the list of acknowledged seqs is
 *    exactly what the room received, in order.
 *  - rt_test_feed: what one client saw of one room: every room message's
 *    seq/prevSeq checked as it arrives (seq above the last one: no duplicate,
 *    nothing out of order; prevSeq equal to the last one: no gap), then the
 *    whole list compared with the publisher's.
 */
#ifndef RT_TESTFEED_H
#define RT_TESTFEED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"
#include "rt_testws.h"

/* ---- publisher thread ---- */

typedef struct rt_test_publisher rt_test_publisher;

typedef struct rt_test_publisher_options {
    const char *nats_url;
    const char *room;         /* "course:c1" */
    const char *event_prefix; /* unique per run of a stream's duplicate window */
    int count;                /* messages to publish */
    int rate_per_s;           /* 0: as fast as acks come */
    size_t text_bytes;        /* payload text size; 0: a few bytes */
    int ack_wait_ms;          /* per attempt; 0: 1000 */
    int give_up_ms;           /* per message, retries included; 0: 30000 */
} rt_test_publisher_options;

/* Connects (the connection reconnects forever by itself) and starts the
 * thread. */
rt_status rt_test_publisher_start(rt_test_publisher **out, const rt_test_publisher_options *o);
/* Acknowledged so far, and the last acknowledged seq (0: none). */
size_t rt_test_publisher_acked(rt_test_publisher *p);
uint64_t rt_test_publisher_last(rt_test_publisher *p);
/* The thread has ended: all published, stopped, or given up. */
bool rt_test_publisher_finished(rt_test_publisher *p);
/* Asks the thread to end after the message in progress is acknowledged. */
void rt_test_publisher_stop(rt_test_publisher *p);
/* Waits up to timeout_ms for the thread to end; RT_OK when it published
 * everything it was asked to (or was stopped), RT_ERR_TIMEOUT when it is
 * still going, else the error that made it give up. */
rt_status rt_test_publisher_wait(rt_test_publisher *p, int timeout_ms);
/* A copy of the acknowledged seqs (malloc()ed, in order); returns the count. */
size_t rt_test_publisher_seqs(rt_test_publisher *p, uint64_t **out);
/* When the message stored at `seq` was first attempted (monotonic ns). */
bool rt_test_publisher_sent_at(rt_test_publisher *p, uint64_t seq, uint64_t *mono_ns);
/* Failed attempts that were retried. */
unsigned rt_test_publisher_retries(rt_test_publisher *p);
/* Stops, joins, disconnects, frees; NULL harmless. */
void rt_test_publisher_destroy(rt_test_publisher *p);

/* ---- one client's view of one room ---- */

typedef struct rt_test_feed {
    uint64_t start_seq; /* the room position the client started from */
    uint64_t last_seq;  /* the highest seq seen (start_seq before any) */
    uint64_t *seqs;     /* every room message's seq, as received */
    size_t n, cap;
    unsigned violations; /* duplicates, out of order, gaps */
    char first_violation[200];
} rt_test_feed;

void rt_test_feed_init(rt_test_feed *f, uint64_t start_seq);
void rt_test_feed_free(rt_test_feed *f);
/* A room message (has integer seq and prevSeq), not a reply. */
bool rt_test_feed_is_room_message(const json_t *m);
/* Records one room message; false (and counted) when its seq is not above
 * the last one or its prevSeq is not the last one. */
bool rt_test_feed_push(rt_test_feed *f, const json_t *m);
/* Did the client see exactly the acknowledged seqs after its start_seq
 * (`expected` ascending), each once, in order, with no violation? If not,
 * `why` says how (counts, first missing or extra seq). */
bool rt_test_feed_check(const rt_test_feed *f, const uint64_t *expected, size_t n_expected,
                        char *why, size_t why_size);
/* Reads room messages from `ws` into the feed until it has seen `seq` (or a
 * higher one). RT_ERR_DECODE for anything but a room message, RT_ERR_TIMEOUT
 * or RT_ERR_IO (closed) otherwise as rt_testws_recv_json. */
rt_status rt_test_feed_read_until(rt_test_feed *f, rt_testws *ws, uint64_t seq, int timeout_ms);

#endif
