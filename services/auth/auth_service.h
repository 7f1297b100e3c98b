/*
 * auth_service: the auth process's wiring.
 *
 *   auth.v1.verify     (queue group "auth")  VerifyRequest    -> VerifyReply
 *   auth.v1.authorize  (queue group "auth")  AuthorizeRequest -> AuthorizeReply
 *   durable consumers "auth-enrollments" and "auth-lessons" on EVENTS keep
 *   realtime.course_members and realtime.lessons current; after each commit
 *   the applied events are re-published on auth.v1.invalidated.enrollment /
 *   auth.v1.invalidated.lesson so every auth instance (and ws-edge) drops
 *   its cached decisions at once.
 *
 * Requests are decoded on the NATS thread and handed to a worker pool
 * (AUTH_WORKERS threads), so neither a slow query nor a burst of RSA
 * verifications stalls NATS delivery; a full queue is answered at once
 * with an "overloaded" error rather than waiting.
 */
#ifndef AUTH_SERVICE_H
#define AUTH_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_config.h"
#include "rt_metrics.h"
#include "rt_status.h"

typedef struct auth_config {
    char *nats_url;
    char *nats_user;
    char *nats_password;
    char *nats_creds_file;
    char *database_url;
    int64_t admin_port;
    char *log_level;
    char *jwt_secret;
    char *jwks_file;
    int64_t jwt_leeway_s;
    char *jwt_audience;
    char *jwt_issuer;
    int64_t workers;
    int64_t queue_max;
    int64_t pg_pool_size;
    int64_t db_timeout_ms;
    int64_t authz_cache_ttl_ms;
    int64_t role_cache_ttl_ms;
    int64_t cache_max_users;
    int64_t course_set_max;
    int64_t role_table_max;
    int64_t events_max_age_s;
    int64_t events_duplicate_window_s;
    int64_t drain_ms;
} auth_config;

extern const rt_config_var auth_config_vars[];
extern const size_t auth_config_var_count;

/* Subjects (spec/subjects.md). */
#define AUTH_SUBJECT_VERIFY "auth.v1.verify"
#define AUTH_SUBJECT_AUTHORIZE "auth.v1.authorize"
#define AUTH_SUBJECT_INVALIDATED_ENROLLMENT "auth.v1.invalidated.enrollment"
#define AUTH_SUBJECT_INVALIDATED_LESSON "auth.v1.invalidated.lesson"
#define AUTH_QUEUE_GROUP "auth"

typedef struct auth_service auth_service;

/* Loads the keys, creates the pool, caches and workers, connects to NATS
 * (in the background if it is not up yet) and subscribes. `config` and
 * `metrics` are borrowed and must outlive the service. */
rt_status auth_service_start(auth_service **out, const auth_config *config, rt_metrics *metrics);

/* Periodic work from the main thread: (re)creates the EVENTS stream and the
 * consumers once NATS is reachable. Cheap when nothing is to do. */
void auth_service_tick(auth_service *service);

/* Re-reads SUPABASE_JWKS_FILE (SIGHUP). Keeps the old keys on failure. */
rt_status auth_service_reload_keys(auth_service *service);

/* rt_admin ready callback: NATS connected, subscriptions and consumers in
 * place, not draining. */
bool auth_service_ready(void *service, char *why, size_t why_size);

/* True when the service can never recover by itself (NATS closed the
 * connection for good): main exits non-zero so the supervisor restarts it. */
bool auth_service_failed(auth_service *service);

/* Stops taking requests, finishes those in flight (up to AUTH_DRAIN_MS),
 * stops the consumers, closes NATS and PostgreSQL, frees. NULL harmless. */
void auth_service_stop(auth_service *service);

#endif
