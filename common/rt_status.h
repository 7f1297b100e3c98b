/*
 * rt_status: the one status type every fallible call returns.
 *
 * Convention (nats.c style): a function returns rt_status (RT_OK == 0) and
 * writes its results through out-parameters placed first. Where an error
 * starts, the code records it once with RT_ERR(), which keeps a per-thread
 * "last error" (status, message, file, function, line); callers up the stack
 * just return the status. Errors of libjwt, libpq, protobuf-c, nats.c and
 * libwebsockets are wrapped behind these codes where they happen.
 */
#ifndef RT_STATUS_H
#define RT_STATUS_H

#include <stdarg.h>

typedef enum rt_status {
    RT_OK = 0,
    RT_ERR_INVALID_ARG, /* a caller passed something it must not */
    RT_ERR_CONFIG,      /* an environment variable is missing or invalid */
    RT_ERR_NOMEM,       /* reserved: allocation failure aborts (rt_alloc.h) */
    RT_ERR_IO,          /* file or socket error */
    RT_ERR_NATS,        /* nats.c reported an error */
    RT_ERR_PG,          /* PostgreSQL query failed */
    RT_ERR_UNAVAILABLE, /* a dependency (NATS, PostgreSQL) cannot be reached now */
    RT_ERR_TIMEOUT,     /* a deadline passed */
    RT_ERR_DECODE,      /* bytes that are not the expected protobuf */
    RT_ERR_JSON,        /* JSON that does not parse or does not fit the schema */
    RT_ERR_NOT_FOUND,
    RT_ERR_LIMIT,    /* a size or count cap was passed */
    RT_ERR_AUTH,     /* a credential was refused */
    RT_ERR_INTERNAL, /* a bug or an unexpected library failure */
} rt_status;

/* Short stable name of a status ("invalid_arg", "nats", ...). Never NULL. */
const char *rt_status_text(rt_status s);

/*
 * Records where an error started and returns `s`, so a call site reads
 *     return RT_ERR(RT_ERR_PG, "query failed: %s", PQerrorMessage(c));
 * The message must never contain a secret or a token.
 */
#define RT_ERR(s, ...) rt_error_record((s), __FILE__, __func__, __LINE__, __VA_ARGS__)

rt_status rt_error_record(rt_status s, const char *file, const char *func, int line,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* This thread's last recorded error message ("" when none). */
const char *rt_error_message(void);
/* This thread's last recorded error origin as "func (file:line)" ("" when none). */
const char *rt_error_origin(void);
/* This thread's last recorded status (RT_OK when none). */
rt_status rt_error_status(void);
void rt_error_clear(void);

#endif
