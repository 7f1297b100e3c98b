/*
 * rt_log: one JSON object per line on stdout.
 *
 *   {"ts":"2026-11-25T17:30:00.123Z","level":"info","service":"auth",
 *    "msg":"nats connected","url":"nats://127.0.0.1:4222"}
 *
 * Fields are given as a jansson json_pack() format for an object plus its
 * arguments, so values are always escaped properly:
 *
 *   rt_log_info("nats connected", "{s:s, s:i}", "url", url, "attempt", n);
 *   rt_log_warn("draining", NULL);
 *
 * Never log a token, a password, a JWT secret or a DATABASE_URL with its
 * password (rt_log_redact_url() helps). Safe to call from any thread; each
 * line is written with one write so lines never interleave.
 */
#ifndef RT_LOG_H
#define RT_LOG_H

#include <stddef.h>
#include <stdio.h>

#include "rt_status.h"

typedef enum rt_log_level {
    RT_LOG_DEBUG = 0,
    RT_LOG_INFO,
    RT_LOG_WARN,
    RT_LOG_ERROR,
} rt_log_level;

/* Sets the service name and the lowest level written. Call once at start;
 * before it, the service name is "unknown" and the level info. */
void rt_log_init(const char *service, rt_log_level min_level);

/* Parses "debug|info|warn|error". */
rt_status rt_log_level_parse(rt_log_level *out, const char *text);

/* Redirects output (tests); NULL restores stdout. */
void rt_log_set_stream(FILE *stream);

int rt_log_enabled(rt_log_level level);

void rt_log_write(rt_log_level level, const char *msg, const char *fields_fmt, ...);

/* Logs the calling thread's last RT_ERR() as an error line with its origin. */
void rt_log_last_error(const char *msg);

/* Copies `url` into `out` with any password replaced by "***". */
void rt_log_redact_url(char *out, size_t out_size, const char *url);

#define rt_log_debug(msg, ...) rt_log_write(RT_LOG_DEBUG, (msg), __VA_ARGS__)
#define rt_log_info(msg, ...) rt_log_write(RT_LOG_INFO, (msg), __VA_ARGS__)
#define rt_log_warn(msg, ...) rt_log_write(RT_LOG_WARN, (msg), __VA_ARGS__)
#define rt_log_error(msg, ...) rt_log_write(RT_LOG_ERROR, (msg), __VA_ARGS__)

#endif
