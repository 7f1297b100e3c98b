#include "edge_config.h"

#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_room.h"

static bool check_optional_dir(const char *value, char *why, size_t why_size)
{
    struct stat st;
    if (!*value || (stat(value, &st) == 0 && S_ISDIR(st.st_mode)))
        return true;
    snprintf(why, why_size, "not a directory");
    return false;
}

static bool check_edge_id(const char *value, char *why, size_t why_size)
{
    if (rt_id_valid(value))
        return true;
    snprintf(why, why_size, "must match [A-Za-z0-9_-]{1,64}");
    return false;
}

static bool check_origins(const char *value, char *why, size_t why_size)
{
    /* "*" alone, or a comma list of scheme://host[:port] origins. */
    if (strcmp(value, "*") == 0)
        return true;
    char *copy = rt_strdup(value), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (strncmp(tok, "http://", 7) != 0 && strncmp(tok, "https://", 8) != 0)
            ok = false;
    }
    free(copy);
    if (!ok)
        snprintf(why, why_size, "must be * or a comma list of http(s)://host[:port] origins");
    return ok;
}

const rt_config_var edge_config_vars[] = {
    RT_CFG_INT(edge_config, port, "WS_PORT", "8080", 0, 0, 65535,
               "port of /ws and of /healthz, /readyz, /metrics (0 picks a free port)"),
    RT_CFG_STR(edge_config, bind_address, "WS_BIND", "", 0, NULL,
               "address to listen on (empty: all interfaces)"),
    RT_CFG_NATS_VARS(edge_config),
    RT_CFG_STR(edge_config, edge_id, "EDGE_ID", "", 0, check_edge_id,
               "this instance's id in presence and connection ids (default: host name)"),
    RT_CFG_STR(edge_config, allowed_origins, "WS_ALLOWED_ORIGINS", "", 0, check_origins,
               "browser Origins allowed to connect (comma list, or * explicitly)"),
    RT_CFG_INT(edge_config, auth_timeout_ms, "WS_AUTH_TIMEOUT_MS", "5000", 0, 100, 600000,
               "time allowed for the first auth frame"),
    RT_CFG_INT(edge_config, max_message_bytes, "WS_MAX_MESSAGE_BYTES", "65536", 0, 256, 16777216,
               "largest inbound message, after decompression"),
    RT_CFG_INT(edge_config, max_rooms_per_conn, "WS_MAX_ROOMS_PER_CONN", "64", 0, 1, 4096,
               "rooms one connection may join"),
    RT_CFG_INT(edge_config, rate_per_sec, "WS_RATE_PER_SEC", "20", 0, 1, 1000000,
               "inbound frames per second per connection (token bucket rate)"),
    RT_CFG_INT(edge_config, rate_burst, "WS_RATE_BURST", "40", 0, 1, 1000000, "token bucket size"),
    RT_CFG_INT(edge_config, max_bad_frames, "WS_MAX_BAD_FRAMES", "5", 0, 0, 1000,
               "bad frames tolerated per minute before close 1008"),
    RT_CFG_INT(edge_config, ping_interval_ms, "WS_PING_INTERVAL_MS", "25000", 0, 1000, 3600000,
               "server ping interval; silent peers are dropped after two"),
    RT_CFG_INT(edge_config, send_queue_max_bytes, "WS_SEND_QUEUE_MAX_BYTES", "1048576", 0, 1024,
               1073741824, "outbound bytes queued per connection before close 1013"),
    RT_CFG_INT(edge_config, drain_ms, "WS_DRAIN_MS", "10000", 0, 0, 600000,
               "on SIGTERM, spread the 1012 closes over this long"),
    RT_CFG_STR(edge_config, tls_cert, "WS_TLS_CERT", "", 0, rt_config_check_optional_file,
               "PEM certificate chain (wss:// when set with WS_TLS_KEY)"),
    RT_CFG_STR(edge_config, tls_key, "WS_TLS_KEY", "", RT_CFG_SECRET, rt_config_check_optional_file,
               "PEM private key"),
    RT_CFG_INT(edge_config, threads, "WS_THREADS", "0", 0, 0, 64,
               "event loops (one per core when 0)"),
    RT_CFG_INT(edge_config, coalesce_ms, "WS_COALESCE_MS", "20", 0, 0, 1000,
               "room messages arriving within this window of the last write share a frame"),
    RT_CFG_INT(edge_config, rpc_timeout_ms, "RPC_TIMEOUT_MS", "2000", 0, 50, 60000,
               "deadline of auth requests"),
    RT_CFG_INT(edge_config, authz_cache_ttl_ms, "AUTHZ_CACHE_TTL_MS", "30000", 0, 0, 3600000,
               "how long an allowed room decision is remembered"),
    RT_CFG_INT(edge_config, rooms_max_age_s, "ROOMS_MAX_AGE_S", "86400", 0, 60, 31536000,
               "room history kept in the ROOMS stream, seconds"),
    RT_CFG_INT(edge_config, rooms_max_per_room, "ROOMS_MAX_PER_ROOM", "1000", 0, 1, 1000000,
               "room history kept per room, messages"),
    RT_CFG_INT(edge_config, rooms_max_resume, "ROOMS_MAX_RESUME", "1000", 0, 0, 1000000,
               "messages one resume (subscribe with since) may replay"),
    RT_CFG_INT(edge_config, rooms_duplicate_window_s, "ROOMS_DUPLICATE_WINDOW_S", "120", 0, 1,
               86400, "JetStream dedupe window of Nats-Msg-Id, seconds"),
    RT_CFG_INT(edge_config, nats_pending_msgs, "WS_NATS_PENDING_MSGS", "1000000", 0, 1, 100000000,
               "room messages buffered per room subscription before nats.c drops (then repaired "
               "from the stream)"),
    RT_CFG_INT(edge_config, presence_interval_ms, "PRESENCE_INTERVAL_MS", "10000", 0, 100, 600000,
               "full presence published this often (and at once on join/leave)"),
    RT_CFG_STR(edge_config, static_dir, "WS_STATIC_DIR", "", 0, check_optional_dir,
               "development only: serve this folder's files on the port (the demo pages)"),
    RT_CFG_STR(edge_config, log_level, "LOG_LEVEL", "info", 0, rt_config_check_log_level,
               "debug, info, warn or error"),
};
const size_t edge_config_var_count = sizeof(edge_config_vars) / sizeof(edge_config_vars[0]);

rt_status edge_config_load(edge_config *cfg)
{
    rt_status s = rt_config_load(cfg, edge_config_vars, edge_config_var_count);
    if (s != RT_OK)
        return s;
    if (!!cfg->tls_cert[0] != !!cfg->tls_key[0]) {
        edge_config_release(cfg);
        return RT_ERR(RT_ERR_CONFIG, "WS_TLS_CERT, WS_TLS_KEY: set both or neither");
    }
    if (!cfg->edge_id[0]) {
        free(cfg->edge_id);
        cfg->edge_id = rt_config_host_id("edge");
    }
    return RT_OK;
}

void edge_config_release(edge_config *cfg)
{
    rt_config_release(cfg, edge_config_vars, edge_config_var_count);
}
