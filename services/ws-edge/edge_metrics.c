#include "edge_metrics.h"

#include <stdio.h>

#include "rt_names.h"
#include "rt_proto.h"

static const int close_codes[EDGE_CLOSE_CODES] = {1000, 1001, 1006, 1007, 1008, 1009,
                                                  1012, 1013, 4401, 4408, 4429};

void edge_metrics_register(edge_metrics *m, rt_metrics *r)
{
    char labels[64];

    m->connections =
        rt_metrics_gauge(r, "unpuzzle_edge_connections", "Open WebSocket connections.", NULL);
    m->connections_total = rt_metrics_counter(r, "unpuzzle_edge_connections_total",
                                              "WebSocket connections accepted.", NULL);
    for (int i = 0; i <= EDGE_CLOSE_CODES; i++) {
        if (i < EDGE_CLOSE_CODES)
            snprintf(labels, sizeof(labels), "code=\"%d\"", close_codes[i]);
        else
            snprintf(labels, sizeof(labels), "code=\"other\"");
        m->closes[i] = rt_metrics_counter(r, "unpuzzle_edge_closes_total",
                                          "Closed connections by close code.", labels);
    }
    m->rooms = rt_metrics_gauge(r, "unpuzzle_edge_rooms", "Rooms with members on this edge.", NULL);
    m->nats_subscriptions = rt_metrics_gauge(r, "unpuzzle_edge_nats_subscriptions",
                                             "Room subscriptions held on NATS.", NULL);
    m->nats_messages_in = rt_metrics_counter(r, "unpuzzle_edge_messages_in_total",
                                             "Messages received.", "source=\"nats\"");
    m->browser_frames_in = rt_metrics_counter(r, "unpuzzle_edge_messages_in_total",
                                              "Messages received.", "source=\"browser\"");
    m->browser_bytes_in = rt_metrics_counter(r, "unpuzzle_edge_bytes_in_total",
                                             "Bytes received from browsers.", NULL);
    m->deliveries = rt_metrics_counter(r, "unpuzzle_edge_deliveries_total",
                                       "Room messages written to browsers.", NULL);
    m->frames_out =
        rt_metrics_counter(r, "unpuzzle_edge_frames_out_total",
                           "WebSocket frames written (each may carry several messages).", NULL);
    m->bytes_out = rt_metrics_counter(r, "unpuzzle_edge_bytes_out_total",
                                      "Payload bytes written to browsers.", NULL);
    m->slow_consumers = rt_metrics_counter(r, "unpuzzle_edge_queue_drops_total",
                                           "Connections closed 1013 for a full send queue.", NULL);
    m->dropped_duplicate =
        rt_metrics_counter(r, "unpuzzle_edge_room_messages_dropped_total",
                           "Room messages not delivered, by reason.", "reason=\"duplicate\"");
    m->dropped_unready =
        rt_metrics_counter(r, "unpuzzle_edge_room_messages_dropped_total",
                           "Room messages not delivered, by reason.", "reason=\"room_not_ready\"");
    m->gap_repairs = rt_metrics_counter(
        r, "unpuzzle_edge_gap_repairs_total",
        "Gaps in a room's sequence (a NATS reconnect or slow-consumer drop) by result.",
        "result=\"repaired\"");
    m->gap_repair_failures = rt_metrics_counter(
        r, "unpuzzle_edge_gap_repairs_total",
        "Gaps in a room's sequence (a NATS reconnect or slow-consumer drop) by result.",
        "result=\"failed\"");
    m->gap_repaired_messages =
        rt_metrics_counter(r, "unpuzzle_edge_gap_repaired_messages_total",
                           "Room messages read back from the ROOMS stream to fill gaps.", NULL);
    m->nats_slow_consumer =
        rt_metrics_counter(r, "unpuzzle_edge_nats_slow_consumer_total",
                           "Times nats.c dropped room messages for a full pending buffer.", NULL);
    m->history_reads = rt_metrics_counter(r, "unpuzzle_edge_history_reads_total",
                                          "Room messages read from the ROOMS stream.", NULL);
    m->replays_cached = rt_metrics_counter(
        r, "unpuzzle_edge_resumes_total", "Subscribes with since that replayed history, by source.",
        "source=\"cache\"");
    m->replays_stream = rt_metrics_counter(
        r, "unpuzzle_edge_resumes_total", "Subscribes with since that replayed history, by source.",
        "source=\"stream\"");
    m->resume_continued = rt_metrics_counter(
        r, "unpuzzle_edge_resume_continuations_total",
        "Resumes that fetched more history because the room moved on meanwhile.", NULL);
    m->epoch_resets = rt_metrics_counter(r, "unpuzzle_edge_epoch_resets_total",
                                         "Times the ROOMS stream was found recreated.", NULL);
    m->auth_ok = rt_metrics_counter(r, "unpuzzle_edge_auth_total", "Token checks by result.",
                                    "result=\"ok\"");
    for (int i = 1; i <= UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_UNAVAILABLE; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", rt_verify_error_name(i));
        m->auth_failed[i] =
            rt_metrics_counter(r, "unpuzzle_edge_auth_total", "Token checks by result.", labels);
    }
    m->auth_failed[0] = m->auth_failed[UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_INTERNAL];
    m->authorize_allowed =
        rt_metrics_counter(r, "unpuzzle_edge_authorize_total", "Room access decisions by result.",
                           "result=\"allowed\"");
    for (int i = 1; i <= UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_INTERNAL; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", rt_deny_reason_name(i));
        m->authorize_denied[i] = rt_metrics_counter(r, "unpuzzle_edge_authorize_total",
                                                    "Room access decisions by result.", labels);
    }
    m->authorize_denied[0] = m->authorize_denied[6];
    m->authz_cache_hits = rt_metrics_counter(r, "unpuzzle_edge_authz_cache_hits_total",
                                             "Room decisions answered from the cache.", NULL);
    m->rpc_timeouts = rt_metrics_counter(r, "unpuzzle_edge_rpc_timeouts_total",
                                         "auth requests that got no answer in time.", NULL);
    m->rate_limited = rt_metrics_counter(r, "unpuzzle_edge_rate_limited_total",
                                         "Browser frames refused by the rate limit.", NULL);
    m->bad_frames = rt_metrics_counter(r, "unpuzzle_edge_bad_frames_total",
                                       "Browser frames refused as malformed or invalid.", NULL);
    m->fanout_seconds = rt_metrics_histogram(
        r, "unpuzzle_edge_fanout_latency_seconds",
        "Time from a room message's arrival from NATS to its write to a socket.", NULL,
        rt_metrics_latency_buckets, rt_metrics_latency_buckets_count);
}

rt_counter *edge_metrics_close(edge_metrics *m, int code)
{
    for (int i = 0; i < EDGE_CLOSE_CODES; i++)
        if (close_codes[i] == code)
            return m->closes[i];
    return m->closes[EDGE_CLOSE_CODES];
}
