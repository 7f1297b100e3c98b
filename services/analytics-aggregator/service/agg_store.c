#include "agg_store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_pg.h"

/* Advisory lock class of the partitions ("ANAR" as an int). */
#define LOCK_CLASS "1095650418"

struct agg_store {
    pthread_mutex_t lock;
    rt_pg_pool *pool; /* one slot: the session */
    PGconn *conn;     /* held while the session lives */
    char *replica_id;
    int partitions;
    bool lost;
    bool in_tx;
};

uint32_t agg_course_hash(const char *course_id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)course_id; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

rt_status agg_store_open(agg_store **out, const char *database_url, const char *replica_id,
                         int partitions)
{
    agg_store *s = rt_calloc(1, sizeof(*s));
    rt_status st = rt_pg_pool_create(&s->pool, database_url, 1);
    if (st != RT_OK) {
        free(s);
        return st;
    }
    s->replica_id = rt_strdup(replica_id);
    s->partitions = partitions;
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return RT_OK;
}

void agg_store_close(agg_store *s)
{
    if (!s)
        return;
    if (s->conn) /* closing the session releases its locks */
        rt_pg_release(s->pool, s->conn, true);
    rt_pg_pool_destroy(s->pool);
    pthread_mutex_destroy(&s->lock);
    free(s->replica_id);
    free(s);
}

void agg_store_lock(agg_store *s)
{
    pthread_mutex_lock(&s->lock);
}

void agg_store_unlock(agg_store *s)
{
    pthread_mutex_unlock(&s->lock);
}

bool agg_store_session_lost(agg_store *s)
{
    bool lost = s->lost;
    s->lost = false;
    return lost;
}

bool agg_store_healthy(agg_store *s)
{
    return rt_pg_pool_healthy(s->pool);
}

/* The session's connection, opening a new session if there is none. */
static rt_status session(agg_store *s, PGconn **out)
{
    if (!s->conn) {
        rt_status st = rt_pg_acquire(&s->conn, s->pool, 1000);
        if (st != RT_OK) {
            s->conn = NULL;
            return st;
        }
    }
    *out = s->conn;
    return RT_OK;
}

/* Runs a statement on the session; a connection failure ends the session. */
static rt_status exec(agg_store *s, PGresult **out, const char *sql, int n,
                      const char *const *params)
{
    PGconn *conn = NULL;
    rt_status st = session(s, &conn);
    if (st != RT_OK)
        return st;
    bool failed = false;
    st = rt_pg_exec(out, &failed, conn, sql, n, params);
    if (failed) {
        rt_pg_release(s->pool, s->conn, true);
        s->conn = NULL;
        s->lost = true;
        s->in_tx = false;
    }
    return st;
}

rt_status agg_store_heartbeat(agg_store *s, int live_ms, int *live_replicas)
{
    char ms[24];
    snprintf(ms, sizeof(ms), "%d", live_ms);
    const char *p1[] = {s->replica_id};
    rt_status st =
        exec(s, NULL,
             "INSERT INTO realtime.analytics_replicas (replica_id, seen_at)"
             " VALUES ($1, now()) ON CONFLICT (replica_id) DO UPDATE SET seen_at = now()",
             1, p1);
    if (st != RT_OK)
        return st;
    PGresult *r = NULL;
    const char *p2[] = {ms};
    st = exec(s, &r,
              "SELECT count(*) FROM realtime.analytics_replicas"
              " WHERE seen_at > now() - make_interval(secs => $1::int / 1000.0)",
              1, p2);
    if (st != RT_OK)
        return st;
    *live_replicas = atoi(PQgetvalue(r, 0, 0));
    if (*live_replicas < 1)
        *live_replicas = 1;
    PQclear(r);
    return RT_OK;
}

rt_status agg_store_try_claim(agg_store *s, int partition, bool *claimed)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", partition);
    const char *params[] = {p};
    PGresult *r = NULL;
    rt_status st = exec(s, &r, "SELECT pg_try_advisory_lock(" LOCK_CLASS ", $1::int)", 1, params);
    if (st != RT_OK)
        return st;
    *claimed = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (*claimed) {
        char count[16];
        snprintf(count, sizeof(count), "%d", s->partitions);
        const char *up[] = {count, p, s->replica_id};
        st = exec(s, NULL,
                  "INSERT INTO realtime.analytics_partitions (partition_count, partition, owner)"
                  " VALUES ($1::int, $2::int, $3) ON CONFLICT (partition_count, partition)"
                  " DO UPDATE SET owner = $3, updated_at = now()",
                  3, up);
    }
    return st;
}

rt_status agg_store_release(agg_store *s, int partition)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", partition);
    const char *params[] = {p};
    return exec(s, NULL, "SELECT pg_advisory_unlock(" LOCK_CLASS ", $1::int)", 1, params);
}

rt_status agg_store_partition_seq(agg_store *s, int partition, uint64_t *applied_seq)
{
    char count[16], p[16];
    snprintf(count, sizeof(count), "%d", s->partitions);
    snprintf(p, sizeof(p), "%d", partition);
    const char *params[] = {count, p};
    PGresult *r = NULL;
    rt_status st = exec(s, &r,
                        "SELECT applied_seq FROM realtime.analytics_partitions"
                        " WHERE partition_count = $1::int AND partition = $2::int",
                        2, params);
    if (st != RT_OK)
        return st;
    *applied_seq = PQntuples(r) ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return RT_OK;
}

rt_status agg_store_load_partition(agg_store *s, int partition, agg_store_course_fn fn, void *arg)
{
    char count[16], p[16];
    snprintf(count, sizeof(count), "%d", s->partitions);
    snprintf(p, sizeof(p), "%d", partition);
    const char *params[] = {count, p};
    PGresult *r = NULL;
    rt_status st = exec(s, &r,
                        "SELECT course_id, stream_seq, state FROM realtime.analytics_courses"
                        " WHERE course_hash % $1::bigint = $2::bigint",
                        2, params);
    if (st != RT_OK)
        return st;
    for (int i = 0; i < PQntuples(r); i++) {
        size_t len = 0;
        unsigned char *state = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 2), &len);
        if (!state) {
            st = RT_ERR(RT_ERR_PG, "course %s: checkpoint is not bytea", PQgetvalue(r, i, 0));
            PQclear(r);
            return st;
        }
        fn(arg, PQgetvalue(r, i, 0), state, len, strtoull(PQgetvalue(r, i, 1), NULL, 10));
        PQfreemem(state);
    }
    PQclear(r);
    return RT_OK;
}

rt_status agg_store_begin(agg_store *s)
{
    rt_status st = exec(s, NULL, "BEGIN", 0, NULL);
    s->in_tx = st == RT_OK;
    return st;
}

rt_status agg_store_put_course(agg_store *s, const char *course_id, uint64_t stream_seq,
                               const uint8_t *state, size_t len)
{
    char hash[24], seq[24];
    snprintf(hash, sizeof(hash), "%" PRIu32, agg_course_hash(course_id));
    snprintf(seq, sizeof(seq), "%" PRIu64, stream_seq);
    PGconn *conn = NULL;
    rt_status st = session(s, &conn);
    if (st != RT_OK)
        return st;
    /* The state goes as a binary parameter: no hex text twice its size. */
    const char *values[] = {course_id, hash, seq, (const char *)state};
    int lengths[] = {0, 0, 0, (int)len};
    int formats[] = {0, 0, 0, 1};
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO realtime.analytics_courses"
                               " (course_id, course_hash, stream_seq, state, updated_at)"
                               " VALUES ($1, $2::bigint, $3::bigint, $4::bytea, now())"
                               " ON CONFLICT (course_id) DO UPDATE SET stream_seq = $3::bigint,"
                               " state = $4::bytea, updated_at = now()",
                               4, NULL, values, lengths, formats, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        st = PQstatus(conn) == CONNECTION_BAD
                 ? RT_ERR(RT_ERR_UNAVAILABLE, "PostgreSQL session lost: %s", PQerrorMessage(conn))
                 : RT_ERR(RT_ERR_PG, "course checkpoint: %s", PQresultErrorMessage(r));
        if (PQstatus(conn) == CONNECTION_BAD) {
            rt_pg_release(s->pool, s->conn, true);
            s->conn = NULL;
            s->lost = true;
            s->in_tx = false;
        }
    }
    PQclear(r);
    return st;
}

rt_status agg_store_put_partition(agg_store *s, int partition, uint64_t applied_seq)
{
    char count[16], p[16], seq[24];
    snprintf(count, sizeof(count), "%d", s->partitions);
    snprintf(p, sizeof(p), "%d", partition);
    snprintf(seq, sizeof(seq), "%" PRIu64, applied_seq);
    const char *params[] = {count, p, seq, s->replica_id};
    return exec(s, NULL,
                "INSERT INTO realtime.analytics_partitions"
                " (partition_count, partition, applied_seq, owner, updated_at)"
                " VALUES ($1::int, $2::int, $3::bigint, $4, now())"
                " ON CONFLICT (partition_count, partition) DO UPDATE SET"
                " applied_seq = $3::bigint, owner = $4, updated_at = now()",
                4, params);
}

rt_status agg_store_commit(agg_store *s)
{
    rt_status st = exec(s, NULL, "COMMIT", 0, NULL);
    s->in_tx = false;
    return st;
}

void agg_store_rollback(agg_store *s)
{
    if (s->in_tx && s->conn)
        exec(s, NULL, "ROLLBACK", 0, NULL);
    s->in_tx = false;
}
