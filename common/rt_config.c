#include "rt_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_room.h"

static char **string_field(void *config, const rt_config_var *var)
{
    return (char **)((char *)config + var->offset);
}

static rt_status parse_int(int64_t *out, const rt_config_var *var, const char *text)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < var->min || v > var->max)
        return RT_ERR(RT_ERR_CONFIG, "%s: must be an integer from %lld to %lld", var->name,
                      (long long)var->min, (long long)var->max);
    *out = v;
    return RT_OK;
}

static rt_status parse_bool(bool *out, const rt_config_var *var, const char *text)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return RT_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return RT_OK;
        }
    }
    return RT_ERR(RT_ERR_CONFIG, "%s: must be true or false", var->name);
}

static rt_status load_one(void *config, const rt_config_var *var)
{
    const char *value = getenv(var->name);
    bool from_env = value && value[0] != '\0';
    char why[256] = "";

    if (!from_env) {
        if (var->flags & RT_CFG_REQUIRED)
            return RT_ERR(RT_ERR_CONFIG, "%s: is required (%s)", var->name, var->help);
        value = var->default_value ? var->default_value : "";
    }
    switch (var->type) {
    case RT_CFG_TYPE_STRING:
        if (var->check && value[0] != '\0' && !var->check(value, why, sizeof(why)))
            return RT_ERR(RT_ERR_CONFIG, "%s: %s", var->name, why);
        *string_field(config, var) = rt_strdup(value);
        return RT_OK;
    case RT_CFG_TYPE_INT:
        if (value[0] == '\0')
            value = "0";
        return parse_int((int64_t *)((char *)config + var->offset), var, value);
    case RT_CFG_TYPE_BOOL:
        if (value[0] == '\0')
            value = "false";
        return parse_bool((bool *)((char *)config + var->offset), var, value);
    }
    return RT_ERR(RT_ERR_INTERNAL, "%s: unknown config type", var->name);
}

rt_status rt_config_load(void *config, const rt_config_var *vars, size_t n_vars)
{
    for (size_t i = 0; i < n_vars; i++) {
        if (vars[i].type == RT_CFG_TYPE_STRING)
            *string_field(config, &vars[i]) = NULL;
    }
    for (size_t i = 0; i < n_vars; i++) {
        rt_status s = load_one(config, &vars[i]);
        if (s != RT_OK) {
            rt_config_release(config, vars, n_vars);
            return s;
        }
    }
    return RT_OK;
}

void rt_config_release(void *config, const rt_config_var *vars, size_t n_vars)
{
    for (size_t i = 0; i < n_vars; i++) {
        if (vars[i].type == RT_CFG_TYPE_STRING) {
            char **field = string_field(config, &vars[i]);
            free(*field);
            *field = NULL;
        }
    }
}

void rt_config_log(const void *config, const rt_config_var *vars, size_t n_vars)
{
    json_t *fields = json_object();
    json_t *values = json_object();

    for (size_t i = 0; i < n_vars; i++) {
        const rt_config_var *var = &vars[i];
        const char *base = (const char *)config + var->offset;
        if ((var->flags & RT_CFG_SECRET) && var->type != RT_CFG_TYPE_STRING) {
            /* A secret is never logged, whatever its type. */
            json_object_set_new(values, var->name, json_string("***"));
            continue;
        }
        switch (var->type) {
        case RT_CFG_TYPE_STRING: {
            const char *s = *(char *const *)base;
            char redacted[512];
            if (var->flags & RT_CFG_SECRET) {
                json_object_set_new(values, var->name, json_string(s && *s ? "***" : ""));
            } else {
                rt_log_redact_url(redacted, sizeof(redacted), s ? s : "");
                json_object_set_new(values, var->name, json_string(redacted));
            }
            break;
        }
        case RT_CFG_TYPE_INT:
            json_object_set_new(values, var->name, json_integer(*(const int64_t *)base));
            break;
        case RT_CFG_TYPE_BOOL:
            json_object_set_new(values, var->name, json_boolean(*(const bool *)base));
            break;
        }
    }
    json_object_set_new(fields, "config", values);
    rt_log_info("configuration", "o", fields);
}

void rt_config_print_help(const char *service, const rt_config_var *vars, size_t n_vars)
{
    printf("%s is configured with environment variables only:\n\n", service);
    for (size_t i = 0; i < n_vars; i++) {
        const rt_config_var *var = &vars[i];
        printf("  %-28s %s", var->name, var->help);
        if (var->flags & RT_CFG_REQUIRED)
            printf(" (required)");
        else if (var->default_value && *var->default_value)
            printf(" (default %s)", var->default_value);
        printf("\n");
    }
}

bool rt_config_check_nats_url(const char *value, char *why, size_t why_size)
{
    /* One or more comma-separated nats:// or tls:// URLs. */
    const char *p = value;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t scheme = strncmp(p, "nats://", 7) == 0 ? 7 : strncmp(p, "tls://", 6) == 0 ? 6 : 0;
        if (scheme == 0) {
            snprintf(why, why_size, "each URL must start with nats:// or tls://");
            return false;
        }
        /* "nats://" alone would only fail later, at connect time. */
        p += scheme;
        if (*p == '\0' || *p == ',' || *p == ' ' || *p == '/') {
            snprintf(why, why_size, "each URL must name a host");
            return false;
        }
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
    return true;
}

bool rt_config_check_postgres_url(const char *value, char *why, size_t why_size)
{
    if (strncmp(value, "postgresql://", 13) == 0 || strncmp(value, "postgres://", 11) == 0 ||
        strchr(value, '=') != NULL)
        return true;
    snprintf(why, why_size, "must be a postgresql:// URL or a libpq keyword string");
    return false;
}

bool rt_config_check_log_level(const char *value, char *why, size_t why_size)
{
    rt_log_level level;
    if (rt_log_level_parse(&level, value) == RT_OK)
        return true;
    snprintf(why, why_size, "must be debug, info, warn or error");
    return false;
}

bool rt_config_check_optional_file(const char *value, char *why, size_t why_size)
{
    struct stat st;
    if (value[0] == '\0')
        return true; /* unset: the header allows it */
    if (stat(value, &st) != 0 || !S_ISREG(st.st_mode) || access(value, R_OK) != 0) {
        snprintf(why, why_size, "is not a readable file");
        return false;
    }
    return true;
}

char *rt_config_host_id(const char *fallback)
{
    char host[256] = "", id[RT_ID_MAX + 1];
    size_t n = 0;
    gethostname(host, sizeof(host) - 1);
    for (const char *p = host; *p && n < RT_ID_MAX; p++)
        id[n++] = rt_id_valid_n(p, 1) ? *p : '-';
    id[n] = '\0';
    return rt_strdup(n ? id : fallback);
}
