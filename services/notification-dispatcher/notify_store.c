#include "notify_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_room.h"

struct notify_store {
    rt_pg_pool *pool;
    int timeout_ms;
};

struct notify_claim {
    PGconn *conn;
    notify_row *rows;
    size_t n;
};

void notify_store_create(notify_store **out, rt_pg_pool *pool, int timeout_ms)
{
    notify_store *s = rt_calloc(1, sizeof(*s));
    s->pool = pool;
    s->timeout_ms = timeout_ms;
    *out = s;
}

void notify_store_destroy(notify_store *store)
{
    free(store);
}

bool notify_store_healthy(notify_store *store)
{
    return rt_pg_pool_healthy(store->pool);
}

/* Runs one statement on a pooled connection. */
static rt_status exec1(PGresult **out, notify_store *s, const char *sql, int n,
                       const char *const *params)
{
    PGconn *conn = NULL;
    bool failed = false;
    rt_status st = rt_pg_acquire(&conn, s->pool, s->timeout_ms);
    if (st != RT_OK)
        return st;
    st = rt_pg_exec(out, &failed, conn, sql, n, params);
    rt_pg_release(s->pool, conn, failed);
    return st;
}

/* ---- threads ---- */

rt_status notify_store_record_thread(notify_store *store, notify_thread_kind kind,
                                     const char *thread_id, const char *course_id,
                                     const char *lesson_id, const char *student_id)
{
    const char *params[] = {notify_thread_kind_name(kind), thread_id, course_id,
                            lesson_id ? lesson_id : "", student_id};
    return exec1(NULL, store,
                 "INSERT INTO realtime.notify_threads"
                 " (kind, thread_id, course_id, lesson_id, student_user_id)"
                 " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, thread_id) DO NOTHING",
                 5, params);
}

rt_status notify_store_thread(bool *found, char *course_id, char *lesson_id, char *student_id,
                              notify_store *store, notify_thread_kind kind, const char *thread_id)
{
    const char *params[] = {notify_thread_kind_name(kind), thread_id};
    PGresult *r = NULL;
    rt_status st = exec1(&r, store,
                         "SELECT course_id, lesson_id, student_user_id FROM realtime.notify_threads"
                         " WHERE kind = $1 AND thread_id = $2",
                         2, params);
    if (st != RT_OK)
        return st;
    *found = PQntuples(r) == 1;
    if (*found) {
        snprintf(course_id, RT_ID_MAX + 1, "%s", PQgetvalue(r, 0, 0));
        snprintf(lesson_id, RT_ID_MAX + 1, "%s", PQgetvalue(r, 0, 1));
        snprintf(student_id, RT_ID_MAX + 1, "%s", PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return RT_OK;
}

/* ---- inserting ---- */

/* bytea parameter in hex text form ("\x0a1b..."); NULL when there is none. */
static char *bytea_hex(const uint8_t *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (!data)
        return NULL;
    char *out = rt_malloc(2 * len + 3);
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < len; i++) {
        out[2 + 2 * i] = hex[data[i] >> 4];
        out[3 + 2 * i] = hex[data[i] & 15];
    }
    out[2 + 2 * len] = '\0';
    return out;
}

/* The later of now and the user's newest notification + 1 ms: created_at
 * strictly increases per user, so `before` paging is exact at the
 * millisecond precision browsers see. */
#define CREATED_AT(user_expr)                                                                      \
    "GREATEST(date_trunc('milliseconds', clock_timestamp()),"                                      \
    " (SELECT max(x.created_at) + interval '1 millisecond' FROM realtime.notifications x"          \
    " WHERE x.user_id = " user_expr "))"

static rt_status insert(size_t *inserted, notify_store *store, const char *sql, const notify_new *n,
                        const char *target, const char *role)
{
    char *extra = bytea_hex(n->extra, n->extra_len);
    const char *params[] = {target,
                            n->source_event_id,
                            n->kind,
                            n->title,
                            n->body,
                            n->link,
                            n->course_id ? n->course_id : "",
                            extra,
                            role};
    PGresult *r = NULL;
    rt_status st = exec1(&r, store, sql, role ? 9 : 8, params);
    free(extra);
    if (st != RT_OK)
        return st;
    if (inserted)
        *inserted = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return RT_OK;
}

rt_status notify_store_insert_user(size_t *inserted, notify_store *store, const notify_new *n,
                                   const char *user_id)
{
    return insert(inserted, store,
                  "INSERT INTO realtime.notifications"
                  " (user_id, source_event_id, kind, title, body, link, course_id, room_extra,"
                  " created_at)"
                  " SELECT $1, $2, $3, $4, $5, $6, $7, $8::bytea, " CREATED_AT(
                      "$1") " ON CONFLICT ON CONSTRAINT notifications_once_per_user DO NOTHING",
                  n, user_id, NULL);
}

rt_status notify_store_insert_course(size_t *inserted, notify_store *store, const notify_new *n,
                                     const char *course_id, notify_audience audience)
{
    /* Member ids that could not name a room are left out (rows written by
     * hand could hold anything; auth only stores valid ids). */
    return insert(
        inserted, store,
        "INSERT INTO realtime.notifications"
        " (user_id, source_event_id, kind, title, body, link, course_id, room_extra,"
        " created_at)"
        " SELECT m.user_id, $2, $3, $4, $5, $6, $7, $8::bytea, " CREATED_AT(
            "m.user_id") " FROM realtime.course_members m"
                         " WHERE m.course_id = $1 AND m.role = $9 AND m.status IN ('added', "
                         "'completed')"
                         " AND m.user_id ~ '^[A-Za-z0-9_-]{1,64}$'"
                         " ORDER BY m.user_id"
                         " ON CONFLICT ON CONSTRAINT notifications_once_per_user DO NOTHING",
        n, course_id, audience == NOTIFY_AUDIENCE_STUDENTS ? "student" : "instructor");
}

/* ---- reading rows ---- */

#define ROW_COLUMNS                                                                                \
    "notification_id::text, user_id, kind, title, body, link, course_id, source_event_id,"         \
    " (extract(epoch from created_at) * 1000000)::bigint,"                                         \
    " coalesce((extract(epoch from read_at) * 1000000)::bigint, 0), room_extra"

static void read_row(notify_row *row, PGresult *r, int i)
{
    memset(row, 0, sizeof(*row));
    row->notification_id = rt_strdup(PQgetvalue(r, i, 0));
    row->user_id = rt_strdup(PQgetvalue(r, i, 1));
    row->kind = rt_strdup(PQgetvalue(r, i, 2));
    row->title = rt_strdup(PQgetvalue(r, i, 3));
    row->body = rt_strdup(PQgetvalue(r, i, 4));
    row->link = rt_strdup(PQgetvalue(r, i, 5));
    row->course_id = rt_strdup(PQgetvalue(r, i, 6));
    row->source_event_id = rt_strdup(PQgetvalue(r, i, 7));
    row->created_us = strtoll(PQgetvalue(r, i, 8), NULL, 10);
    row->read_us = strtoll(PQgetvalue(r, i, 9), NULL, 10);
    if (!PQgetisnull(r, i, 10)) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 10), &len);
        if (raw) {
            row->extra = rt_malloc(len ? len : 1);
            memcpy(row->extra, raw, len);
            row->extra_len = len;
            PQfreemem(raw);
        }
    }
}

/* ---- claims ---- */

static rt_status claim(notify_claim **out, notify_store *store, const char *sql, int n,
                       const char *const *params)
{
    PGconn *conn = NULL;
    PGresult *r = NULL;
    bool failed = false;
    rt_status st = rt_pg_acquire(&conn, store->pool, store->timeout_ms);
    if (st != RT_OK)
        return st;
    st = rt_pg_exec(NULL, &failed, conn, "BEGIN", 0, NULL);
    if (st == RT_OK)
        st = rt_pg_exec(&r, &failed, conn, sql, n, params);
    if (st != RT_OK) {
        if (!failed)
            rt_pg_exec(NULL, &failed, conn, "ROLLBACK", 0, NULL);
        rt_pg_release(store->pool, conn, failed);
        return st;
    }
    notify_claim *c = rt_calloc(1, sizeof(*c));
    c->conn = conn;
    c->n = (size_t)PQntuples(r);
    c->rows = rt_calloc(c->n ? c->n : 1, sizeof(notify_row));
    for (size_t i = 0; i < c->n; i++)
        read_row(&c->rows[i], r, (int)i);
    PQclear(r);
    *out = c;
    return RT_OK;
}

rt_status notify_store_claim_event(notify_claim **out, notify_store *store, const char *event_id,
                                   int limit)
{
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *params[] = {event_id, lim};
    return claim(out, store,
                 "SELECT " ROW_COLUMNS " FROM realtime.notifications"
                 " WHERE source_event_id = $1 AND NOT published"
                 " ORDER BY notification_id LIMIT $2::int FOR UPDATE SKIP LOCKED",
                 2, params);
}

rt_status notify_store_claim_stale(notify_claim **out, notify_store *store, int older_than_ms,
                                   int limit)
{
    char age[16], lim[16];
    snprintf(age, sizeof(age), "%d", older_than_ms);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *params[] = {age, lim};
    return claim(out, store,
                 "SELECT " ROW_COLUMNS " FROM realtime.notifications"
                 " WHERE NOT published"
                 " AND created_at < clock_timestamp() - $1::int * interval '1 millisecond'"
                 " ORDER BY notification_id LIMIT $2::int FOR UPDATE SKIP LOCKED",
                 2, params);
}

const notify_row *notify_claim_rows(const notify_claim *claim, size_t *n)
{
    *n = claim->n;
    return claim->rows;
}

rt_status notify_store_claim_end(notify_store *store, notify_claim *c, bool published)
{
    bool failed = false;
    rt_status st = RT_OK;

    if (published && c->n) {
        /* "{1,2,3}" of the claimed ids. */
        size_t cap = 3;
        for (size_t i = 0; i < c->n; i++)
            cap += strlen(c->rows[i].notification_id) + 1;
        char *ids = rt_malloc(cap);
        size_t used = 0;
        ids[used++] = '{';
        for (size_t i = 0; i < c->n; i++) {
            size_t len = strlen(c->rows[i].notification_id);
            if (i)
                ids[used++] = ',';
            memcpy(ids + used, c->rows[i].notification_id, len);
            used += len;
        }
        ids[used++] = '}';
        ids[used] = '\0';
        const char *params[] = {ids};
        st = rt_pg_exec(
            NULL, &failed, c->conn,
            "UPDATE realtime.notifications SET published = true,"
            " published_at = clock_timestamp() WHERE notification_id = ANY($1::bigint[])",
            1, params);
        free(ids);
    }
    if (st == RT_OK && published)
        st = rt_pg_exec(NULL, &failed, c->conn, "COMMIT", 0, NULL);
    else if (!failed)
        rt_pg_exec(NULL, &failed, c->conn, "ROLLBACK", 0, NULL);
    rt_pg_release(store->pool, c->conn, failed);
    notify_rows_free(c->rows, c->n);
    free(c);
    return st;
}

/* ---- read receipts ---- */

rt_status notify_store_mark_read(char ***ids, size_t *n_ids, notify_store *store,
                                 const char *reader_id, const char *ids_array)
{
    const char *params[] = {reader_id, ids_array};
    PGresult *r = NULL;
    *ids = NULL;
    *n_ids = 0;
    rt_status st = exec1(&r, store,
                         "UPDATE realtime.notifications SET read_at = coalesce(read_at, now())"
                         " WHERE user_id = $1 AND notification_id = ANY($2::bigint[])"
                         " RETURNING notification_id::text",
                         2, params);
    if (st != RT_OK)
        return st;
    size_t n = (size_t)PQntuples(r);
    char **out = rt_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = rt_strdup(PQgetvalue(r, (int)i, 0));
    PQclear(r);
    *ids = out;
    *n_ids = n;
    return RT_OK;
}

void notify_ids_free(char **ids, size_t n)
{
    if (!ids)
        return;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* ---- list ---- */

/* A NotificationList built here (not unpacked): each Notification points
 * into its row; rows and timestamps are kept alongside. */
typedef struct list_storage {
    Unpuzzle__Rt__V1__NotificationList list;
    notify_row *rows;
    size_t n_rows;
    Unpuzzle__Rt__V1__Notification *items;
    Unpuzzle__Rt__V1__Notification **ptrs;
    Google__Protobuf__Timestamp *stamps; /* 2 per row */
} list_storage;

/* $3: microseconds since the epoch, exactly. */
#define BEFORE_PARAM "(timestamptz 'epoch' + $3::bigint * interval '1 microsecond')"

rt_status notify_store_list(Unpuzzle__Rt__V1__NotificationList **out, notify_store *store,
                            const char *user_id, bool unread_only, uint32_t limit,
                            int64_t before_us)
{
    char lim[16], before[24];
    PGconn *conn = NULL;
    PGresult *r = NULL, *count = NULL;
    bool failed = false;

    /* Four fixed statements, so each one's plan is an index range scan
     * (user_id, created_at DESC) from `before`, never a filter over the
     * user's newer rows. */
    static const char *const sql[2][2] = {
        {"SELECT " ROW_COLUMNS " FROM realtime.notifications WHERE user_id = $1"
         " ORDER BY created_at DESC, notification_id DESC LIMIT $2::int",
         "SELECT " ROW_COLUMNS " FROM realtime.notifications WHERE user_id = $1"
         " AND created_at < " BEFORE_PARAM
         " ORDER BY created_at DESC, notification_id DESC LIMIT $2::int"},
        {"SELECT " ROW_COLUMNS " FROM realtime.notifications WHERE user_id = $1"
         " AND read_at IS NULL ORDER BY created_at DESC, notification_id DESC LIMIT $2::int",
         "SELECT " ROW_COLUMNS " FROM realtime.notifications WHERE user_id = $1"
         " AND read_at IS NULL AND created_at < " BEFORE_PARAM
         " ORDER BY created_at DESC, notification_id DESC LIMIT $2::int"},
    };
    snprintf(lim, sizeof(lim), "%u", limit + 1); /* one more tells has_more */
    snprintf(before, sizeof(before), "%" PRId64, before_us);
    const char *params[] = {user_id, lim, before};
    rt_status st = rt_pg_acquire(&conn, store->pool, store->timeout_ms);
    if (st != RT_OK)
        return st;
    st = rt_pg_exec(&r, &failed, conn, sql[unread_only][before_us > 0], before_us > 0 ? 3 : 2,
                    params);
    if (st == RT_OK) {
        const char *cparams[] = {user_id};
        st = rt_pg_exec(&count, &failed, conn,
                        "SELECT count(*) FROM realtime.notifications"
                        " WHERE user_id = $1 AND read_at IS NULL",
                        1, cparams);
    }
    rt_pg_release(store->pool, conn, failed);
    if (st != RT_OK) {
        PQclear(r);
        return st;
    }

    list_storage *ls = rt_calloc(1, sizeof(*ls));
    unpuzzle__rt__v1__notification_list__init(&ls->list);
    size_t n = (size_t)PQntuples(r);
    ls->list.has_more = n > limit;
    if (n > limit)
        n = limit;
    ls->n_rows = n;
    ls->rows = rt_calloc(n ? n : 1, sizeof(notify_row));
    ls->items = rt_calloc(n ? n : 1, sizeof(*ls->items));
    ls->ptrs = rt_calloc(n ? n : 1, sizeof(*ls->ptrs));
    ls->stamps = rt_calloc(n ? 2 * n : 1, sizeof(*ls->stamps));
    for (size_t i = 0; i < n; i++) {
        read_row(&ls->rows[i], r, (int)i);
        /* The list is for the browser: the companion is not part of it. */
        free(ls->rows[i].extra);
        ls->rows[i].extra = NULL;
        ls->rows[i].extra_len = 0;
        notify_row_to_proto(&ls->items[i], &ls->stamps[2 * i], &ls->stamps[2 * i + 1],
                            &ls->rows[i]);
        ls->ptrs[i] = &ls->items[i];
    }
    ls->list.n_notifications = n;
    ls->list.notifications = ls->ptrs;
    ls->list.unread_count = (uint32_t)strtoul(PQgetvalue(count, 0, 0), NULL, 10);
    PQclear(r);
    PQclear(count);
    *out = &ls->list; /* first member: notify_list_free() gets the storage back */
    return RT_OK;
}

void notify_list_free(Unpuzzle__Rt__V1__NotificationList *list)
{
    if (!list)
        return;
    list_storage *ls = (list_storage *)list;
    notify_rows_free(ls->rows, ls->n_rows);
    free(ls->items);
    free(ls->ptrs);
    free(ls->stamps);
    free(ls);
}

rt_status notify_store_unpublished(int64_t *count, notify_store *store)
{
    PGresult *r = NULL;
    rt_status st = exec1(
        &r, store, "SELECT count(*) FROM realtime.notifications WHERE NOT published", 0, NULL);
    if (st != RT_OK)
        return st;
    *count = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return RT_OK;
}
