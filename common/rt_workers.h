/*
 * rt_workers: a fixed pool of threads fed by a bounded queue.
 *
 * NATS delivers RPC requests on its own threads; handlers that may block
 * (PostgreSQL, CPU-heavy verification) must not run there, or one slow
 * query would stall every request behind it. The subscription callback
 * calls rt_workers_submit(), which never blocks: when the queue is full it
 * returns RT_ERR_LIMIT and the caller answers "overloaded" at once.
 *
 * Thread-safety: submit from any thread; the handler runs on a pool thread.
 */
#ifndef RT_WORKERS_H
#define RT_WORKERS_H

#include <stddef.h>

#include "rt_status.h"

typedef struct rt_workers rt_workers;

/* Called on a pool thread for each submitted item; owns `item` then. */
typedef void (*rt_workers_fn)(void *arg, void *item);
/* Called for items still queued when the pool stops (to free them). */
typedef void (*rt_workers_discard_fn)(void *arg, void *item);

rt_status rt_workers_create(rt_workers **out, int threads, size_t queue_capacity, rt_workers_fn fn,
                            rt_workers_discard_fn discard, void *arg);
/* Queues `item`; RT_ERR_LIMIT when full or stopping (the caller keeps it). */
rt_status rt_workers_submit(rt_workers *workers, void *item);
/* Items waiting (for metrics). */
size_t rt_workers_queued(rt_workers *workers);
/* Finishes the queued items, joins the threads and frees. NULL harmless. */
void rt_workers_destroy(rt_workers *workers);

#endif
