/*
 * edge_history: the tail of one room's message chain, kept by the hub so
 * that resuming clients and gap repairs read JetStream once per edge, not
 * once per connection (10,000 clients resuming the same room after an edge
 * restart cost one stream read, not 10,000).
 *
 * The entries form an unbroken chain: each entry's prev_seq is the seq of
 * the entry before it. So the history covers the open-closed range
 * (first->prev_seq, last->seq]: a client that saw first->prev_seq misses
 * nothing it does not hold. Adding a message that does not continue the
 * chain starts a new chain. At most `cap` newest entries are kept.
 *
 * Not thread-safe: the hub guards each room's history with that room's lock.
 */
#ifndef EDGE_HISTORY_H
#define EDGE_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edge_msg.h"

typedef struct edge_history {
    edge_msg **ring;
    size_t cap, start, count;
} edge_history;

void edge_history_init(edge_history *h, size_t cap);
/* Drops every reference. */
void edge_history_clear(edge_history *h);
void edge_history_free(edge_history *h);

/* Appends msg (a reference is taken) at the newest end; clears first when
 * msg does not continue the chain. Messages at or below the newest seq are
 * ignored. */
void edge_history_push(edge_history *h, edge_msg *msg);
/* Puts an older chain (n messages in seq order, ending where the history
 * begins: msgs[n-1]->seq == first->prev_seq) in front, keeping the newest
 * `cap`. Anything that does not fit the chain is ignored. */
void edge_history_prepend(edge_history *h, edge_msg *const *msgs, size_t n);

/* Lowest `since` the history answers for: first->prev_seq (false if empty). */
bool edge_history_floor(const edge_history *h, uint64_t *floor_seq);
uint64_t edge_history_last_seq(const edge_history *h);

/* References to the entries with since < seq <= until, in order, appended to
 * *out (grown with rt_realloc; *n and *cap updated). The caller checks
 * coverage with edge_history_floor first. Returns how many were added. */
size_t edge_history_copy(const edge_history *h, uint64_t since, uint64_t until, edge_msg ***out,
                         size_t *n, size_t *cap);

#endif
