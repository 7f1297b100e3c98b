/*
 * rt_config: service configuration from environment variables, declared as
 * one table per service (name, type, default, bounds, validator; Redis
 * config.c style) and validated at start. A bad value stops the service with
 * a message that names the variable; secrets are never printed.
 *
 *   typedef struct { char *nats_url; int64_t admin_port; } my_config;
 *   static const rt_config_var vars[] = {
 *       RT_CFG_STR(my_config, nats_url, "NATS_URL", "nats://127.0.0.1:4222", 0,
 *                  rt_config_check_nats_url, "NATS server URL(s), comma separated"),
 *       RT_CFG_INT(my_config, admin_port, "ADMIN_PORT", "9101", 0, 1, 65535,
 *                  "port of /healthz, /readyz, /metrics"),
 *   };
 */
#ifndef RT_CONFIG_H
#define RT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

typedef enum rt_config_type {
    RT_CFG_TYPE_STRING, /* char * (malloc()ed; "" when optional and unset) */
    RT_CFG_TYPE_INT,    /* int64_t, within [min, max] */
    RT_CFG_TYPE_BOOL,   /* bool: true/false/1/0/yes/no */
} rt_config_type;

enum {
    RT_CFG_REQUIRED = 1u << 0, /* no default: must be set and non-empty */
    RT_CFG_SECRET = 1u << 1,   /* never logged (shown as "***") */
};

/* Extra check of a string value; writes a reason into why on failure. */
typedef bool (*rt_config_check_fn)(const char *value, char *why, size_t why_size);

typedef struct rt_config_var {
    const char *name; /* environment variable */
    rt_config_type type;
    const char *default_value; /* used when unset; NULL means "" / 0 / false */
    unsigned flags;
    int64_t min, max;         /* RT_CFG_TYPE_INT bounds */
    rt_config_check_fn check; /* optional, RT_CFG_TYPE_STRING only */
    size_t offset;            /* offsetof(config struct, field) */
    const char *help;
} rt_config_var;

#define RT_CFG_STR(type, field, env, def, flags, check, help)                                      \
    {                                                                                              \
        (env), RT_CFG_TYPE_STRING, (def), (flags), 0, 0, (check), offsetof(type, field), (help)    \
    }
#define RT_CFG_INT(type, field, env, def, flags, lo, hi, help)                                     \
    {                                                                                              \
        (env), RT_CFG_TYPE_INT, (def), (flags), (lo), (hi), NULL, offsetof(type, field), (help)    \
    }
#define RT_CFG_BOOL(type, field, env, def, help)                                                   \
    {                                                                                              \
        (env), RT_CFG_TYPE_BOOL, (def), 0, 0, 1, NULL, offsetof(type, field), (help)               \
    }

/* The NATS connection variables every service and tool reads; `type` must
 * have char * fields nats_url, nats_user, nats_password, nats_creds_file. */
#define RT_CFG_NATS_VARS(type)                                                                     \
    RT_CFG_STR(type, nats_url, "NATS_URL", "nats://127.0.0.1:4222", 0, rt_config_check_nats_url,   \
               "NATS server URL(s), comma separated"),                                             \
        RT_CFG_STR(type, nats_user, "NATS_USER", "", 0, NULL, "NATS user (optional)"),             \
        RT_CFG_STR(type, nats_password, "NATS_PASSWORD", "", RT_CFG_SECRET, NULL,                  \
                   "NATS password (optional)"),                                                    \
        RT_CFG_STR(type, nats_creds_file, "NATS_CREDS_FILE", "", 0, rt_config_check_optional_file, \
                   "NATS .creds file (optional)")

/*
 * Fills the struct at `config` from the environment. On failure returns
 * RT_ERR_CONFIG with a message like "ADMIN_PORT: must be an integer from 1 to
 * 65535" (rt_error_message()) and leaves no allocation behind.
 */
rt_status rt_config_load(void *config, const rt_config_var *vars, size_t n_vars);

/* Frees the strings rt_config_load() allocated. */
void rt_config_release(void *config, const rt_config_var *vars, size_t n_vars);

/* Logs the effective configuration as one info line (secrets as "***",
 * passwords inside URLs redacted). */
void rt_config_log(const void *config, const rt_config_var *vars, size_t n_vars);

/* Prints every variable with its default and help (for --help). */
void rt_config_print_help(const char *service, const rt_config_var *vars, size_t n_vars);

/* Common validators. */
bool rt_config_check_nats_url(const char *value, char *why, size_t why_size);
bool rt_config_check_postgres_url(const char *value, char *why, size_t why_size);
bool rt_config_check_log_level(const char *value, char *why, size_t why_size);
/* A readable regular file, or empty (unset). */
bool rt_config_check_optional_file(const char *value, char *why, size_t why_size);

/* The host name as an id ([A-Za-z0-9_-]{1,64}; other characters become
 * '-'), or `fallback` when there is none: the default instance id of a
 * service (EDGE_ID, ANALYTICS_REPLICA_ID). malloc()ed. */
char *rt_config_host_id(const char *fallback);

#endif
