#include "rt_status.h"

#include <stdio.h>
#include <string.h>

/* Per-thread so that nats.c callback threads and worker threads do not
 * overwrite each other's errors. */
static _Thread_local struct {
    rt_status status;
    char message[512];
    char origin[192];
} last_error;

const char *rt_status_text(rt_status s)
{
    switch (s) {
    case RT_OK:
        return "ok";
    case RT_ERR_INVALID_ARG:
        return "invalid_arg";
    case RT_ERR_CONFIG:
        return "config";
    case RT_ERR_NOMEM:
        return "nomem";
    case RT_ERR_IO:
        return "io";
    case RT_ERR_NATS:
        return "nats";
    case RT_ERR_PG:
        return "postgres";
    case RT_ERR_UNAVAILABLE:
        return "unavailable";
    case RT_ERR_TIMEOUT:
        return "timeout";
    case RT_ERR_DECODE:
        return "decode";
    case RT_ERR_JSON:
        return "json";
    case RT_ERR_NOT_FOUND:
        return "not_found";
    case RT_ERR_LIMIT:
        return "limit";
    case RT_ERR_AUTH:
        return "auth";
    case RT_ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}

rt_status rt_error_record(rt_status s, const char *file, const char *func, int line,
                          const char *fmt, ...)
{
    const char *base = strrchr(file, '/');
    va_list ap;

    last_error.status = s;
    va_start(ap, fmt);
    vsnprintf(last_error.message, sizeof(last_error.message), fmt, ap);
    va_end(ap);
    snprintf(last_error.origin, sizeof(last_error.origin), "%s (%s:%d)", func,
             base ? base + 1 : file, line);
    return s;
}

const char *rt_error_message(void)
{
    return last_error.message;
}

const char *rt_error_origin(void)
{
    return last_error.origin;
}

rt_status rt_error_status(void)
{
    return last_error.status;
}

void rt_error_clear(void)
{
    last_error.status = RT_OK;
    last_error.message[0] = '\0';
    last_error.origin[0] = '\0';
}
