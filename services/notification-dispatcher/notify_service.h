/*
 * notify_service: the notification-dispatcher process's wiring
 * (docs/notification-dispatcher.md).
 *
 *   EVENTS (evt.v1.>) --durable "notification-dispatcher", shared by every
 *       replica, explicit acks--> consumer thread:
 *       decode + plan (notify_events) -> PostgreSQL (notify_store: record,
 *       look up, insert once per recipient) -> ROOMS (notify_publish:
 *       rt.v1.room.user.<id>, Nats-Msg-Id per notification) -> mark
 *       published -> ack. Invalid events are terminated; PostgreSQL or NATS
 *       trouble naks the event (redelivered after NOTIFY_RETRY_DELAY_MS).
 *   notify.v1.list (queue group "notify") -> NOTIFY_WORKERS threads -> reply.
 *   main thread (notify_service_tick): streams and consumer set-up, and the
 *       sweep that publishes rows left unpublished for NOTIFY_SWEEP_AGE_MS.
 */
#ifndef NOTIFY_SERVICE_H
#define NOTIFY_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_config.h"
#include "rt_metrics.h"
#include "rt_status.h"

typedef struct notify_config {
    char *nats_url;
    char *nats_user;
    char *nats_password;
    char *nats_creds_file;
    char *database_url;
    int64_t admin_port;
    char *log_level;
    int64_t workers;
    int64_t queue_max;
    int64_t pg_pool_size;
    int64_t db_timeout_ms;
    int64_t batch;
    int64_t ack_wait_ms;
    int64_t retry_delay_ms;
    int64_t publish_timeout_ms;
    int64_t max_event_age_s;
    int64_t sweep_interval_ms;
    int64_t sweep_age_ms;
    int64_t events_max_age_s;
    int64_t events_duplicate_window_s;
    int64_t rooms_max_age_s;
    int64_t rooms_max_per_room;
    int64_t rooms_duplicate_window_s;
    int64_t drain_ms;
} notify_config;

extern const rt_config_var notify_config_vars[];
extern const size_t notify_config_var_count;

/* Loads and cross-checks the configuration; errors name the variable. */
rt_status notify_config_load(notify_config *config);
void notify_config_release(notify_config *config);

#define NOTIFY_SUBJECT_LIST "notify.v1.list"
#define NOTIFY_QUEUE_GROUP "notify"
#define NOTIFY_DURABLE "notification-dispatcher"

typedef struct notify_service notify_service;

/* Creates the pool, workers and publishers, connects to NATS (in the
 * background if it is not up yet) and subscribes to notify.v1.list.
 * `config` and `metrics` are borrowed and must outlive the service. */
rt_status notify_service_start(notify_service **out, const notify_config *config,
                               rt_metrics *metrics);

/* Periodic work from the main thread: streams and the consumer once NATS
 * is reachable, the sweep every NOTIFY_SWEEP_INTERVAL_MS. */
void notify_service_tick(notify_service *service);

/* rt_admin ready callback: NATS connected, streams and consumer in place,
 * PostgreSQL reachable, not draining. */
bool notify_service_ready(void *service, char *why, size_t why_size);

/* True when NATS closed the connection for good (main exits non-zero). */
bool notify_service_failed(notify_service *service);

/* Stops taking requests, answers those queued, lets the consumer finish its
 * batch, closes NATS (drain up to NOTIFY_DRAIN_MS) and PostgreSQL, frees.
 * NULL harmless. */
void notify_service_stop(notify_service *service);

#endif
