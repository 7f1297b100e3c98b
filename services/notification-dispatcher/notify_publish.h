/*
 * notify_publish: puts room messages into the ROOMS stream in batches and
 * says whether every one of them got there.
 *
 * A batch is published asynchronously (one JetStream context per
 * publisher, so the acks of a 2,000-recipient course update are awaited
 * together, not one round trip each), each message with its Nats-Msg-Id
 * (notify_messages.h), and notify_publish_wait() returns RT_OK only when
 * JetStream acknowledged all of them (a duplicate counts: the stream has
 * it). On any failure or timeout the caller publishes the batch again
 * later; the ids make the stream store each message once.
 *
 * Thread-safety: one publisher per thread (the consumer thread has one,
 * the sweep another).
 */
#ifndef NOTIFY_PUBLISH_H
#define NOTIFY_PUBLISH_H

#include <stddef.h>

#include "notify_messages.h"
#include "rt_nats.h"
#include "rt_proto.h"
#include "rt_status.h"

typedef struct notify_publisher notify_publisher;

/* `nats` is borrowed and must outlive the publisher; timeout_ms bounds the
 * wait for a batch's acks. */
rt_status notify_publisher_create(notify_publisher **out, rt_nats *nats, int timeout_ms);
/* Waits briefly for what is in flight, then frees. NULL harmless. */
void notify_publisher_destroy(notify_publisher *p);

/* Starts a batch. */
void notify_publish_begin(notify_publisher *p);
/* Adds one message to the batch (copied). A failure to hand it to the
 * client is remembered and reported by notify_publish_wait(). */
void notify_publish_add(notify_publisher *p, const char *subject, const uint8_t *data, size_t len,
                        const char *msg_id);
/* Adds a stored notification: its companion (if any), then the notification,
 * to the recipient's user room. RT_ERR_INVALID_ARG (nothing added) when the
 * recipient's id cannot name a room. */
rt_status notify_publish_row(notify_publisher *p, const notify_row *row);
/* Waits for every ack of the batch; *messages (may be NULL) gets how many
 * messages the batch held. */
rt_status notify_publish_wait(notify_publisher *p, size_t *messages);

#endif
