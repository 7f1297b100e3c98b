/*
 * rt_testenv: real servers for integration tests and benchmarks.
 *
 * Each test starts what it needs on free loopback ports, in its own temp
 * dir (removed on destroy unless RT_TEST_KEEP=1), and stops it at the end:
 *   - nats-server with JetStream (store in the temp dir, so a restart keeps
 *     the streams),
 *   - PostgreSQL (initdb + postgres from Debian's postgresql package; when
 *     running as root, the server runs as the "postgres" user, since
 *     PostgreSQL refuses root), with deploy/sql/ migrations applied on demand,
 *   - service binaries from build/bin as child processes with a given
 *     environment, their stdout/stderr captured to a log file.
 * No global state except a per-process registry of children that are killed
 * if the test process exits early (so no orphan servers are left behind):
 * an atexit handler and a SIGINT/SIGTERM/SIGABRT handler kill them, and each
 * child has PR_SET_PDEATHSIG for crashes that skip both (an ASan report).
 * When a child failed, its log's last lines go to stderr on destroy.
 * Not thread-safe; call from the test's main thread (the parent-death signal
 * follows the thread that started a child).
 * Environment: RT_TEST_KEEP=1 keeps the temp dirs; RT_PG_BINDIR overrides
 * the newest /usr/lib/postgresql/<version>/bin.
 */
#ifndef RT_TESTENV_H
#define RT_TESTENV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rt_status.h"

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int rt_test_free_port(void);

/* A new temp dir "/tmp/rt-test-<tag>-XXXXXX"; caller frees the string. */
char *rt_test_tmpdir(const char *tag);
/* rm -rf; harmless on NULL. */
void rt_test_rmtree(const char *path);

/* ---- nats-server ---- */
typedef struct rt_test_nats rt_test_nats;
/* Starts nats-server -js on a free port; returns once it accepts clients.
 * `config_extra` is appended to the generated config file (may be NULL). */
rt_status rt_test_nats_start(rt_test_nats **out, const char *config_extra);
const char *rt_test_nats_url(const rt_test_nats *nats); /* "nats://127.0.0.1:<port>" */
int rt_test_nats_port(const rt_test_nats *nats);
/* The monitoring port (/varz, /jsz, /healthz) and the server's log file. */
int rt_test_nats_monitor_port(const rt_test_nats *nats);
const char *rt_test_nats_log_path(const rt_test_nats *nats);
rt_status rt_test_nats_stop(rt_test_nats *nats);    /* SIGTERM, wait */
rt_status rt_test_nats_restart(rt_test_nats *nats); /* same port, same store; also after stop */
void rt_test_nats_destroy(rt_test_nats *nats);      /* stop + remove dir; NULL harmless */

/* ---- PostgreSQL ---- */
typedef struct rt_test_pg rt_test_pg;
/* initdb (fsync off) + postgres on a free port; returns when it accepts
 * connections. Database "unpuzzle", user "unpuzzle", password-less on
 * loopback. */
rt_status rt_test_pg_start(rt_test_pg **out);
/* "postgresql://unpuzzle@127.0.0.1:<port>/unpuzzle" */
const char *rt_test_pg_url(const rt_test_pg *pg);
int rt_test_pg_port(const rt_test_pg *pg);
/* Applies every deploy/sql/<name>.sql in byte order of names (they are
 * idempotent), each file in one PQexec (several statements allowed). */
rt_status rt_test_pg_migrate(rt_test_pg *pg);
/* Runs SQL (may hold several statements) on a fresh connection as
 * "unpuzzle"; RT_ERR_UNAVAILABLE if the server cannot be reached, RT_ERR_PG
 * if the SQL fails. */
rt_status rt_test_pg_exec(rt_test_pg *pg, const char *sql);
/* Runs a query returning one value; *out is malloc()ed text or NULL for SQL NULL/no row. */
rt_status rt_test_pg_query_value(char **out, rt_test_pg *pg, const char *sql);
rt_status rt_test_pg_stop(rt_test_pg *pg);        /* fast shutdown, wait */
rt_status rt_test_pg_start_again(rt_test_pg *pg); /* same port, same data */
void rt_test_pg_destroy(rt_test_pg *pg);          /* stop + remove dir; NULL harmless */

/* ---- child processes ---- */
typedef struct rt_test_proc rt_test_proc;
/* Starts `path` (absolute, or a name under RT_BIN_DIR) with the arguments
 * `argv` (NULL-terminated, may be NULL; these follow argv[0], which is set to
 * the path: {"-c", "echo hi", NULL} for /bin/sh) and the current environment
 * plus `env` ("NAME=VALUE" strings, NULL-terminated, may be NULL; they
 * replace inherited variables of the same name, and a later entry an earlier
 * one of the same name). The child runs in its own
 * process group. Output goes to a log file in a temp dir. Fails (and nothing
 * runs) if the binary cannot be executed. */
rt_status rt_test_proc_start(rt_test_proc **out, const char *path, const char *const *argv,
                             const char *const *env);
pid_t rt_test_proc_pid(const rt_test_proc *proc);
const char *rt_test_proc_log_path(const rt_test_proc *proc);
/* Polls GET http://127.0.0.1:<port><path> until it answers `status` or
 * timeout. Fails early (RT_ERR_UNAVAILABLE) if the process died; `proc` may
 * be NULL to poll a port alone. */
rt_status rt_test_proc_wait_http(rt_test_proc *proc, int port, const char *path, int status,
                                 int timeout_ms);
/* Polls the log until a line contains `needle` (returns RT_ERR_TIMEOUT
 * otherwise, or RT_ERR_UNAVAILABLE early if the process exited without
 * writing it). */
rt_status rt_test_proc_wait_log(rt_test_proc *proc, const char *needle, int timeout_ms);
bool rt_test_proc_running(rt_test_proc *proc);
/* Sends `sig` to the process group and waits up to timeout_ms for exit;
 * *exit_status gets the wait() status (may be NULL). If the process had
 * already exited, returns RT_OK with how it exited. On timeout it is killed
 * with SIGKILL and RT_ERR_TIMEOUT is returned. */
rt_status rt_test_proc_stop(rt_test_proc *proc, int sig, int timeout_ms, int *exit_status);
/* SIGKILL if still running, reap, remove temp dir; NULL harmless. Prints
 * the log's last lines to stderr when the process had failed: it exited on
 * its own with a non-zero status or a signal, or it did not obey a stop. */
void rt_test_proc_destroy(rt_test_proc *proc);

/* ---- plain HTTP GET on loopback (for /healthz, /readyz, /metrics) ---- */
/* HTTP/1.0 with Connection: close; *body is malloc()ed (pass body = NULL if
 * not wanted). RT_ERR_UNAVAILABLE if nothing listens, RT_ERR_TIMEOUT if the
 * whole exchange takes longer than timeout_ms. */
rt_status rt_test_http_get(int *status, char **body, int port, const char *path, int timeout_ms);

/* Parses a Prometheus sample value from a /metrics body: the first line
 * starting with `series` (e.g. "unpuzzle_auth_verify_total{result=\"ok\"}")
 * followed by the value. A series without labels also matches its first
 * labelled sample ("x" matches "x{a=\"b\"} 1" but never "x_total 1").
 * Returns -1 if absent. */
double rt_test_metric_value(const char *metrics_body, const char *series);

#endif
