/*
 * rt_pg: a small pool of PostgreSQL connections (libpq) that reconnect by
 * themselves.
 *
 * Workers borrow a connection, run parameterized queries only
 * (PQexecParams; no SQL is ever built from input), and give it back. A
 * connection that failed is reset before its next use, with a backoff so a
 * down database is not hammered; while PostgreSQL is down, acquire and
 * queries fail fast with RT_ERR_UNAVAILABLE and callers decide (auth: deny).
 *
 * Thread-safety: the pool is thread-safe; a borrowed connection belongs to
 * one thread until released.
 */
#ifndef RT_PG_H
#define RT_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "rt_status.h"

typedef struct rt_pg_pool rt_pg_pool;

/* Creates `size` connection slots for `conninfo` (a postgresql:// URL or
 * keyword string; copied, never logged with its password). Connections are
 * opened lazily. The caller owns *out. */
rt_status rt_pg_pool_create(rt_pg_pool **out, const char *conninfo, int size);
void rt_pg_pool_destroy(rt_pg_pool *pool); /* all connections must be released; NULL harmless */

/* Borrows a connected connection, waiting up to timeout_ms for a free slot.
 * RT_ERR_UNAVAILABLE when the database cannot be reached, RT_ERR_TIMEOUT when
 * every slot stays busy. */
rt_status rt_pg_acquire(PGconn **out, rt_pg_pool *pool, int timeout_ms);
/* Gives it back. `failed` marks it for a reset before its next use (call
 * with true after a connection-level error). */
void rt_pg_release(rt_pg_pool *pool, PGconn *conn, bool failed);

/* True when the last attempt to reach the database succeeded (for /readyz
 * and metrics; does not query). */
bool rt_pg_pool_healthy(rt_pg_pool *pool);

/*
 * Runs a parameterized statement (text parameters; NULL entries are SQL
 * NULL). On success *out (may be NULL when no rows are wanted) holds the
 * result, which the caller PQclear()s. A lost connection gives
 * RT_ERR_UNAVAILABLE and *conn_failed = true; an SQL error RT_ERR_PG.
 */
rt_status rt_pg_exec(PGresult **out, bool *conn_failed, PGconn *conn, const char *sql, int n_params,
                     const char *const *params);

#endif
