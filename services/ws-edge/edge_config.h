/*
 * edge_config: ws-edge's environment variables (one table, validated at start).
 */
#ifndef EDGE_CONFIG_H
#define EDGE_CONFIG_H

#include <stdint.h>

#include "rt_config.h"

typedef struct edge_config {
    int64_t port;
    char *bind_address;
    char *nats_url;
    char *nats_user;
    char *nats_password;
    char *nats_creds_file;
    char *edge_id;
    char *allowed_origins;
    int64_t auth_timeout_ms;
    int64_t max_message_bytes;
    int64_t max_rooms_per_conn;
    int64_t rate_per_sec;
    int64_t rate_burst;
    int64_t max_bad_frames;
    int64_t ping_interval_ms;
    int64_t send_queue_max_bytes;
    int64_t drain_ms;
    char *tls_cert;
    char *tls_key;
    int64_t threads;
    int64_t coalesce_ms;
    int64_t rpc_timeout_ms;
    int64_t authz_cache_ttl_ms;
    int64_t rooms_max_age_s;
    int64_t rooms_max_per_room;
    int64_t rooms_max_resume;
    int64_t rooms_duplicate_window_s;
    int64_t nats_pending_msgs;
    int64_t presence_interval_ms;
    char *static_dir;
    char *log_level;
} edge_config;

extern const rt_config_var edge_config_vars[];
extern const size_t edge_config_var_count;

/* Loads and cross-checks the configuration (EDGE_ID defaults to the host
 * name; TLS needs both files). Errors name the variable. */
rt_status edge_config_load(edge_config *config);
void edge_config_release(edge_config *config);

#endif
