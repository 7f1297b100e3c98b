#include "rt_pg.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_time.h"

typedef struct pg_slot {
    PGconn *conn;
    bool busy;
    bool needs_reset;
    uint64_t next_attempt_ns; /* backoff after a failed connect */
    uint64_t backoff_ns;
} pg_slot;

struct rt_pg_pool {
    char *conninfo;
    int size;
    pg_slot *slots;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    atomic_bool healthy;
};

rt_status rt_pg_pool_create(rt_pg_pool **out, const char *conninfo, int size)
{
    rt_pg_pool *pool;

    if (!conninfo || !*conninfo || size < 1)
        return RT_ERR(RT_ERR_INVALID_ARG, "pool needs a conninfo and a size >= 1");
    pool = rt_calloc(1, sizeof(*pool));
    pool->conninfo = rt_strdup(conninfo);
    pool->size = size;
    pool->slots = rt_calloc((size_t)size, sizeof(pg_slot));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->freed, NULL);
    atomic_init(&pool->healthy, false);
    *out = pool;
    return RT_OK;
}

void rt_pg_pool_destroy(rt_pg_pool *pool)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->size; i++)
        if (pool->slots[i].conn)
            PQfinish(pool->slots[i].conn);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->freed);
    /* The conninfo may hold a password: wipe it before freeing. */
    memset(pool->conninfo, 0, strlen(pool->conninfo));
    free(pool->conninfo);
    free(pool->slots);
    free(pool);
}

bool rt_pg_pool_healthy(rt_pg_pool *pool)
{
    return atomic_load(&pool->healthy);
}

/* Opens or resets the slot's connection; called without the pool lock held
 * (connecting may take a while), with the slot marked busy. */
static rt_status slot_connect(rt_pg_pool *pool, pg_slot *slot)
{
    uint64_t now = rt_time_mono_ns();

    if (slot->conn && !slot->needs_reset && PQstatus(slot->conn) == CONNECTION_OK)
        return RT_OK;
    if (now < slot->next_attempt_ns)
        return RT_ERR(RT_ERR_UNAVAILABLE, "database unreachable (retrying with backoff)");
    if (slot->conn) {
        PQfinish(slot->conn);
        slot->conn = NULL;
    }
    slot->conn = PQconnectdb(pool->conninfo);
    if (PQstatus(slot->conn) != CONNECTION_OK) {
        char why[256];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(slot->conn));
        why[strcspn(why, "\n")] = '\0';
        PQfinish(slot->conn);
        slot->conn = NULL;
        /* 100 ms doubling to 2 s per slot. */
        slot->backoff_ns = slot->backoff_ns ? slot->backoff_ns * 2 : 100000000u;
        if (slot->backoff_ns > 2000000000u)
            slot->backoff_ns = 2000000000u;
        slot->next_attempt_ns = now + slot->backoff_ns;
        if (atomic_exchange(&pool->healthy, false))
            rt_log_warn("postgres unreachable", "{s:s}", "error", why);
        return RT_ERR(RT_ERR_UNAVAILABLE, "database unreachable: %s", why);
    }
    slot->needs_reset = false;
    slot->backoff_ns = 0;
    slot->next_attempt_ns = 0;
    if (!atomic_exchange(&pool->healthy, true))
        rt_log_info("postgres connected", NULL);
    return RT_OK;
}

rt_status rt_pg_acquire(PGconn **out, rt_pg_pool *pool, int timeout_ms)
{
    struct timespec deadline;
    pg_slot *slot = NULL;
    rt_status s;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        /* Prefer a slot that is already connected. */
        for (int i = 0; i < pool->size && !slot; i++)
            if (!pool->slots[i].busy && pool->slots[i].conn && !pool->slots[i].needs_reset)
                slot = &pool->slots[i];
        for (int i = 0; i < pool->size && !slot; i++)
            if (!pool->slots[i].busy)
                slot = &pool->slots[i];
        if (slot)
            break;
        if (pthread_cond_timedwait(&pool->freed, &pool->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->lock);
            return RT_ERR(RT_ERR_TIMEOUT, "no free database connection after %d ms", timeout_ms);
        }
    }
    slot->busy = true;
    pthread_mutex_unlock(&pool->lock);

    s = slot_connect(pool, slot);
    if (s != RT_OK) {
        pthread_mutex_lock(&pool->lock);
        slot->busy = false;
        pthread_cond_signal(&pool->freed);
        pthread_mutex_unlock(&pool->lock);
        return s;
    }
    *out = slot->conn;
    return RT_OK;
}

void rt_pg_release(rt_pg_pool *pool, PGconn *conn, bool failed)
{
    if (!conn)
        return;
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->size; i++) {
        if (pool->slots[i].conn == conn) {
            pool->slots[i].busy = false;
            if (failed || PQstatus(conn) != CONNECTION_OK)
                pool->slots[i].needs_reset = true;
            break;
        }
    }
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

rt_status rt_pg_exec(PGresult **out, bool *conn_failed, PGconn *conn, const char *sql, int n_params,
                     const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (conn_failed)
        *conn_failed = false;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out)
            *out = res;
        else
            PQclear(res);
        return RT_OK;
    }
    char why[256];
    snprintf(why, sizeof(why), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    why[strcspn(why, "\n")] = '\0';
    PQclear(res);
    if (PQstatus(conn) != CONNECTION_OK) {
        if (conn_failed)
            *conn_failed = true;
        return RT_ERR(RT_ERR_UNAVAILABLE, "database connection lost: %s", why);
    }
    return RT_ERR(RT_ERR_PG, "%s", why);
}
