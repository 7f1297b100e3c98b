#include "rt_log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include "rt_time.h"

static char log_service[64] = "unknown";
static rt_log_level log_min_level = RT_LOG_INFO;
static FILE *log_stream;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(rt_log_level level)
{
    switch (level) {
    case RT_LOG_DEBUG:
        return "debug";
    case RT_LOG_INFO:
        return "info";
    case RT_LOG_WARN:
        return "warn";
    case RT_LOG_ERROR:
        return "error";
    }
    return "info";
}

void rt_log_init(const char *service, rt_log_level min_level)
{
    snprintf(log_service, sizeof(log_service), "%s", service);
    log_min_level = min_level;
}

rt_status rt_log_level_parse(rt_log_level *out, const char *text)
{
    static const rt_log_level levels[] = {RT_LOG_DEBUG, RT_LOG_INFO, RT_LOG_WARN, RT_LOG_ERROR};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(text, level_name(levels[i])) == 0) {
            *out = levels[i];
            return RT_OK;
        }
    }
    return RT_ERR(RT_ERR_CONFIG, "log level must be debug, info, warn or error");
}

void rt_log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&log_lock);
    log_stream = stream;
    pthread_mutex_unlock(&log_lock);
}

int rt_log_enabled(rt_log_level level)
{
    return level >= log_min_level;
}

static void emit(rt_log_level level, const char *msg, json_t *fields)
{
    char ts[RT_TIME_RFC3339_LEN];
    json_t *line = json_object();
    char *text;

    rt_time_format_rfc3339(ts, rt_time_now_ms());
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(level_name(level)));
    json_object_set_new(line, "service", json_string(log_service));
    json_object_set_new(line, "msg", json_string(msg ? msg : ""));
    if (fields)
        json_object_update_missing(line, fields);
    text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!text)
        return;
    pthread_mutex_lock(&log_lock);
    FILE *out = log_stream ? log_stream : stdout;
    fputs(text, out);
    fputc('\n', out);
    fflush(out);
    pthread_mutex_unlock(&log_lock);
    free(text);
}

void rt_log_write(rt_log_level level, const char *msg, const char *fields_fmt, ...)
{
    json_t *fields = NULL;

    if (!rt_log_enabled(level))
        return;
    if (fields_fmt) {
        json_error_t err;
        va_list ap;
        va_start(ap, fields_fmt);
        fields = json_vpack_ex(&err, 0, fields_fmt, ap);
        va_end(ap);
        if (!fields) {
            /* A bad format is a programming error; keep the line, say why. */
            fields = json_pack("{s:s}", "log_format_error", err.text);
        }
    }
    emit(level, msg, fields);
    json_decref(fields);
}

void rt_log_last_error(const char *msg)
{
    rt_log_error(msg, "{s:s, s:s, s:s}", "error", rt_status_text(rt_error_status()), "detail",
                 rt_error_message(), "origin", rt_error_origin());
}

/* Appends n bytes to out (bounded, always NUL-terminated). */
static void append(char *out, size_t out_size, size_t *len, const char *s, size_t n)
{
    if (*len + 1 >= out_size)
        return;
    if (n > out_size - 1 - *len)
        n = out_size - 1 - *len;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

/* End of a libpq keyword value starting at p: a '...' quoted string (with
 * backslash escapes) or everything up to the next whitespace. */
static const char *keyword_value_end(const char *p)
{
    if (*p == '\'') {
        for (p++; *p && *p != '\''; p++)
            if (*p == '\\' && p[1])
                p++;
        return *p ? p + 1 : p;
    }
    while (*p && *p != ' ' && *p != '\t' && *p != '\n')
        p++;
    return p;
}

void rt_log_redact_url(char *out, size_t out_size, const char *url)
{
    /* scheme://user:password@host -> scheme://user:***@host for every URL
     * in the text (NATS_URL is a comma-separated list); also hides
     * password=... in libpq keyword strings and URL query strings. */
    size_t len = 0;
    const char *p = url;

    if (out_size == 0)
        return;
    out[0] = '\0';
    while (*p) {
        if (strncmp(p, "://", 3) == 0) {
            const char *auth = p + 3;
            const char *end = auth;
            /* The authority ends at the path or where the next URL's
             * scheme separator starts. */
            while (*end && *end != '/' && strncmp(end, "://", 3) != 0)
                end++;
            const char *at = NULL, *colon = NULL;
            for (const char *q = auth; q < end; q++)
                if (*q == '@')
                    at = q; /* the last '@': a password may contain one */
            for (const char *q = auth; at && q < at && !colon; q++)
                if (*q == ':')
                    colon = q; /* the first ':': a password may contain one */
            append(out, out_size, &len, p, (size_t)(auth - p));
            if (colon) {
                append(out, out_size, &len, auth, (size_t)(colon + 1 - auth));
                append(out, out_size, &len, "***", 3);
                p = at;
            } else {
                p = auth;
            }
            continue;
        }
        /* Any keyword ending in "password" (also sslpassword). */
        if (strncmp(p, "password", 8) == 0) {
            const char *q = p + 8;
            while (*q == ' ' || *q == '\t')
                q++;
            if (*q == '=') {
                q++;
                while (*q == ' ' || *q == '\t')
                    q++;
                append(out, out_size, &len, "password=***", 12);
                p = keyword_value_end(q);
                continue;
            }
        }
        append(out, out_size, &len, p, 1);
        p++;
    }
}
