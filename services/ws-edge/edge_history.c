#include "edge_history.h"

#include <stdlib.h>

#include "rt_alloc.h"

static edge_msg *at(const edge_history *h, size_t i)
{
    return h->ring[(h->start + i) % h->cap];
}

void edge_history_init(edge_history *h, size_t cap)
{
    h->cap = cap ? cap : 1;
    h->ring = rt_calloc(h->cap, sizeof(edge_msg *));
    h->start = h->count = 0;
}

void edge_history_clear(edge_history *h)
{
    for (size_t i = 0; i < h->count; i++)
        edge_msg_unref(at(h, i));
    h->start = h->count = 0;
}

void edge_history_free(edge_history *h)
{
    if (!h->ring)
        return;
    edge_history_clear(h);
    free(h->ring);
    h->ring = NULL;
}

uint64_t edge_history_last_seq(const edge_history *h)
{
    return h->count ? at(h, h->count - 1)->seq : 0;
}

bool edge_history_floor(const edge_history *h, uint64_t *floor_seq)
{
    if (!h->count)
        return false;
    *floor_seq = at(h, 0)->prev_seq;
    return true;
}

void edge_history_push(edge_history *h, edge_msg *msg)
{
    if (h->count) {
        uint64_t last = edge_history_last_seq(h);
        if (msg->seq <= last)
            return;
        if (msg->prev_seq != last)
            edge_history_clear(h);
    }
    if (h->count == h->cap) { /* full: the oldest goes */
        edge_msg_unref(at(h, 0));
        h->start = (h->start + 1) % h->cap;
        h->count--;
    }
    h->ring[(h->start + h->count) % h->cap] = edge_msg_ref(msg);
    h->count++;
}

void edge_history_prepend(edge_history *h, edge_msg *const *msgs, size_t n)
{
    if (n == 0)
        return;
    if (h->count && msgs[n - 1]->seq != at(h, 0)->prev_seq)
        return; /* does not end where we begin */
    for (size_t i = 1; i < n; i++)
        if (msgs[i]->prev_seq != msgs[i - 1]->seq)
            return; /* not a chain */
    /* Newest first, while there is room. */
    for (size_t i = n; i-- > 0 && h->count < h->cap;) {
        h->start = (h->start + h->cap - 1) % h->cap;
        h->ring[h->start] = edge_msg_ref(msgs[i]);
        h->count++;
    }
}

size_t edge_history_copy(const edge_history *h, uint64_t since, uint64_t until, edge_msg ***out,
                         size_t *n, size_t *cap)
{
    size_t added = 0;
    for (size_t i = 0; i < h->count; i++) {
        edge_msg *m = at(h, i);
        if (m->seq <= since)
            continue;
        if (m->seq > until)
            break;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *out = rt_realloc(*out, *cap * sizeof(edge_msg *));
        }
        (*out)[(*n)++] = edge_msg_ref(m);
        added++;
    }
    return added;
}
