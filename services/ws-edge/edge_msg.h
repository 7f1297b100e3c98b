/*
 * edge_msg: one outbound frame payload, stored once and shared by every
 * connection it goes to (mosquitto's refcounted store). A room message is
 * rendered to JSON once per edge; each member's send queue holds a pointer.
 * The reference count is atomic because the NATS thread creates messages
 * and several event loops release them.
 */
#ifndef EDGE_MSG_H
#define EDGE_MSG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct edge_msg {
    atomic_uint refs;
    uint32_t len;         /* bytes of data, without a trailing newline */
    uint64_t seq;         /* room sequence (0 for replies and errors) */
    uint64_t prev_seq;    /* previous sequence of the same room */
    uint64_t received_ns; /* when NATS handed it over (0: not a room message) */
    uint64_t origin_conn; /* a connection of this edge not to send it to (0: none) */
    char data[];          /* JSON text, NUL-terminated */
} edge_msg;

/* A new message holding a copy of data (refs = 1). */
edge_msg *edge_msg_new(const char *data, size_t len, uint64_t seq, uint64_t prev_seq,
                       uint64_t received_ns);

static inline edge_msg *edge_msg_ref(edge_msg *msg)
{
    atomic_fetch_add_explicit(&msg->refs, 1, memory_order_relaxed);
    return msg;
}

/* Drops one reference; frees on the last. NULL harmless. */
void edge_msg_unref(edge_msg *msg);

#endif
