/*
 * rt_consumer: a durable JetStream pull consumer with explicit acks, run on
 * its own thread.
 *
 * The thread fetches batches and hands them to the handler, which decides
 * per message: ack (its effect is durable), nak (try again later, e.g. the
 * database is down: redelivered after nak_delay_ms) or term (poison: it can
 * never be processed; logged and dropped). Unacked messages are redelivered
 * after ack_wait_ms, so a crash loses nothing; several replicas with the same
 * durable name share the work. If NATS is down or the consumer vanished
 * (stream recreated), the thread re-creates the subscription with backoff.
 */
#ifndef RT_CONSUMER_H
#define RT_CONSUMER_H

#include <nats/nats.h>

#include "rt_nats.h"
#include "rt_status.h"

typedef enum rt_msg_verdict {
    RT_MSG_ACK = 0,
    RT_MSG_NAK,
    RT_MSG_TERM,
} rt_msg_verdict;

/* Called on the consumer thread with n >= 1 messages (borrowed; they are
 * destroyed after the verdicts are applied). Must fill verdicts[0..n-1]. */
typedef void (*rt_consumer_handler)(void *arg, natsMsg **msgs, int n, rt_msg_verdict *verdicts);

typedef struct rt_consumer_options {
    const char *stream;         /* "EVENTS" */
    const char *durable;        /* "auth-enrollments" */
    const char *filter_subject; /* "evt.v1.enrollment.changed" */
    int batch;                  /* messages per fetch (default 64) */
    int max_ack_pending;        /* default 1000 */
    int ack_wait_ms;            /* default 30000 */
    int nak_delay_ms;           /* default 1000 */
    rt_consumer_handler handler;
    void *arg;
} rt_consumer_options;

typedef struct rt_consumer rt_consumer;

/* Starts the thread (strings are copied). The NATS connection is borrowed
 * and must outlive the consumer. */
rt_status rt_consumer_start(rt_consumer **out, rt_nats *nats, const rt_consumer_options *options);
/* Stops after the current batch, joins, frees. NULL harmless. */
void rt_consumer_stop(rt_consumer *consumer);

#endif
