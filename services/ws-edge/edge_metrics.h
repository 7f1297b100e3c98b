/*
 * edge_metrics: every Prometheus series ws-edge exports, registered once.
 * Pointers are shared by all event loops (updates are atomic).
 */
#ifndef EDGE_METRICS_H
#define EDGE_METRICS_H

#include "rt_metrics.h"

/* Close codes counted separately; anything else is "other". */
#define EDGE_CLOSE_CODES 11

typedef struct edge_metrics {
    rt_gauge *connections;
    rt_counter *connections_total;
    rt_counter *closes[EDGE_CLOSE_CODES + 1];
    rt_gauge *rooms;              /* rooms with members on this edge (all loops) */
    rt_gauge *nats_subscriptions; /* room subscriptions on NATS */
    rt_counter *nats_messages_in; /* room messages received from NATS */
    rt_counter *browser_frames_in;
    rt_counter *browser_bytes_in;
    rt_counter *deliveries; /* room messages written to sockets */
    rt_counter *frames_out;
    rt_counter *bytes_out;
    rt_counter *slow_consumers;    /* closed 1013 */
    rt_counter *dropped_duplicate; /* room messages at or below the last seq */
    rt_counter *dropped_unready;   /* messages lost while a room was being set up */
    rt_counter *gap_repairs;       /* gaps the hub filled from the ROOMS stream */
    rt_counter *gap_repair_failures;
    rt_counter *gap_repaired_messages;
    rt_counter *nats_slow_consumer; /* nats.c dropped room messages (then repaired) */
    rt_counter *history_reads;      /* messages read from the ROOMS stream */
    rt_counter *replays_cached;     /* resumes answered from the hub's history */
    rt_counter *replays_stream;     /* resumes that read the stream */
    rt_counter *resume_continued;   /* resumes that needed another replay to catch up */
    rt_counter *epoch_resets;       /* the ROOMS stream was recreated */
    rt_counter *auth_ok;
    rt_counter *auth_failed[16]; /* by VerifyError */
    rt_counter *authorize_allowed;
    rt_counter *authorize_denied[8]; /* by DenyReason */
    rt_counter *authz_cache_hits;
    rt_counter *rpc_timeouts;
    rt_counter *rate_limited;
    rt_counter *bad_frames;
    rt_histogram *fanout_seconds; /* NATS receive -> written to the socket */
} edge_metrics;

void edge_metrics_register(edge_metrics *m, rt_metrics *registry);
/* The counter for a close code. */
rt_counter *edge_metrics_close(edge_metrics *m, int code);

#endif
