#include "edge_msg.h"

#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"

edge_msg *edge_msg_new(const char *data, size_t len, uint64_t seq, uint64_t prev_seq,
                       uint64_t received_ns)
{
    edge_msg *m = rt_malloc(sizeof(*m) + len + 1);
    atomic_init(&m->refs, 1);
    m->len = (uint32_t)len;
    m->seq = seq;
    m->prev_seq = prev_seq;
    m->received_ns = received_ns;
    m->origin_conn = 0;
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    return m;
}

void edge_msg_unref(edge_msg *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}
