/*
 * agg_service: the analytics-aggregator process around agg_engine
 * (docs/analytics-aggregator.md).
 *
 * One engine thread owns the engine, the presence table and the PostgreSQL
 * session (agg_store); it
 *   - keeps this replica's share of the course partitions (advisory locks,
 *     rebalanced every second as replicas come and go),
 *   - reads EVENTS through this replica's durable consumer (AckAll) from the
 *     oldest owned partition's checkpoint, applies each event of an owned
 *     course exactly once (stream sequence per course and partition, then
 *     event_id), and forwards confusions, questions and purchases to the
 *     instructor rooms at once,
 *   - checkpoints changed courses with the partitions' applied sequence in
 *     one transaction every ANALYTICS_CHECKPOINT_MS, and acks the stream
 *     only after that commit,
 *   - publishes each changed course's CourseMetrics to its instructor: and
 *     course: rooms at most once per ANALYTICS_PUBLISH_INTERVAL_MS,
 *   - answers analytics.v1.snapshot for its courses (requests for other
 *     partitions are forwarded to analytics.v1.snapshot.p<N>, which only the
 *     owner subscribes to).
 * NATS callbacks only queue work for it (presence, snapshot requests).
 */
#ifndef AGG_SERVICE_H
#define AGG_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_config.h"
#include "rt_metrics.h"
#include "rt_status.h"

typedef struct agg_service_config {
    char *nats_url;
    char *nats_user;
    char *nats_password;
    char *nats_creds_file;
    char *database_url;
    int64_t admin_port;
    char *log_level;
    int64_t window_s;
    int64_t lateness_s;
    int64_t future_s;
    int64_t retention_s;
    char *clock;
    int64_t publish_interval_ms;
    int64_t checkpoint_ms;
    int64_t partitions;
    char *replica_id;
    int64_t batch;
    int64_t events_max_age_s;
    int64_t events_duplicate_window_s;
    int64_t rooms_max_age_s;
    int64_t rooms_max_per_room;
    int64_t rooms_duplicate_window_s;
} agg_service_config;

extern const rt_config_var agg_service_config_vars[];
extern const size_t agg_service_config_var_count;

/* Loads and cross-checks (ANALYTICS_CLOCK, the engine's ranges); the replica
 * id defaults to the host name. Errors name the variable. */
rt_status agg_service_config_load(agg_service_config *config);
void agg_service_config_release(agg_service_config *config);

typedef struct agg_service agg_service;

rt_status agg_service_start(agg_service **out, const agg_service_config *config,
                            rt_metrics *registry);
/* /readyz: NATS connected, PostgreSQL reachable, EVENTS known. */
bool agg_service_ready(void *arg, char *why, size_t why_size);
bool agg_service_failed(agg_service *svc);
/* Checkpoints, releases its partitions (so other replicas take them over at
 * once), stops, frees. NULL harmless. */
void agg_service_stop(agg_service *svc);

#endif
