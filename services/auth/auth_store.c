#include "auth_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x
#define CHANGE(x) UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_##x

struct auth_store {
    rt_pg_pool *pool;
    int timeout_ms;
};

rt_status auth_store_create(auth_store **out, rt_pg_pool *pool, int acquire_timeout_ms)
{
    auth_store *store = rt_calloc(1, sizeof(*store));
    store->pool = pool;
    store->timeout_ms = acquire_timeout_ms;
    *out = store;
    return RT_OK;
}

void auth_store_destroy(auth_store *store)
{
    free(store);
}

/* Runs a one-row, one-column query; *value is a copy of the text or NULL. */
static rt_status query_one(char **value, auth_store *store, const char *sql, int n,
                           const char *const *params)
{
    PGconn *conn = NULL;
    PGresult *res = NULL;
    bool failed = false;
    rt_status s = rt_pg_acquire(&conn, store->pool, store->timeout_ms);

    *value = NULL;
    if (s != RT_OK)
        return s;
    s = rt_pg_exec(&res, &failed, conn, sql, n, params);
    if (s == RT_OK) {
        if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
            *value = rt_strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
    }
    rt_pg_release(store->pool, conn, failed);
    return s;
}

rt_status auth_store_user_role(auth_role *out, bool *found, auth_store *store, const char *user_id)
{
    const char *params[] = {user_id};
    char *role = NULL;
    rt_status s = query_one(&role, store, "SELECT role FROM realtime.user_roles WHERE user_id = $1",
                            1, params);

    *found = false;
    if (s != RT_OK)
        return s;
    if (role) {
        *found = true;
        if (strcmp(role, "admin") == 0)
            *out = ROLE(ADMIN);
        else if (strcmp(role, "instructor") == 0)
            *out = ROLE(INSTRUCTOR);
        else
            *out = ROLE(STUDENT);
        free(role);
    }
    return RT_OK;
}

rt_status auth_store_member_role(auth_member_role *out, void *ctx, const char *course_id,
                                 const char *user_id)
{
    const char *params[] = {course_id, user_id};
    char *role = NULL;
    rt_status s = query_one(&role, ctx,
                            "SELECT role FROM realtime.course_members"
                            " WHERE course_id = $1 AND user_id = $2 AND status <> 'removed'",
                            2, params);

    *out = MEMBER(UNSPECIFIED);
    if (s != RT_OK)
        return s;
    if (role) {
        *out = strcmp(role, "instructor") == 0 ? MEMBER(INSTRUCTOR) : MEMBER(STUDENT);
        free(role);
    }
    return RT_OK;
}

rt_status auth_store_lesson_course(char out_course_id[RT_ID_MAX + 1], bool *found, void *ctx,
                                   const char *lesson_id)
{
    const char *params[] = {lesson_id};
    char *course = NULL;
    rt_status s = query_one(&course, ctx,
                            "SELECT course_id FROM realtime.lessons"
                            " WHERE lesson_id = $1 AND NOT deleted",
                            1, params);

    *found = false;
    if (s != RT_OK)
        return s;
    if (course) {
        *found = true;
        snprintf(out_course_id, RT_ID_MAX + 1, "%s", course);
        free(course);
    }
    return RT_OK;
}

/* Runs a two-column (id, role) query and feeds each row to fn. */
static rt_status query_pairs(auth_store *store, const char *sql, int n, const char *const *params,
                             size_t limit, void (*fn)(void *arg, const char *id, const char *role),
                             void *arg, size_t *count)
{
    PGconn *conn = NULL;
    PGresult *res = NULL;
    bool failed = false;
    rt_status s = rt_pg_acquire(&conn, store->pool, store->timeout_ms);

    *count = 0;
    if (s != RT_OK)
        return s;
    s = rt_pg_exec(&res, &failed, conn, sql, n, params);
    rt_pg_release(store->pool, conn, failed);
    if (s != RT_OK)
        return s;
    size_t rows = (size_t)PQntuples(res);
    if (rows > limit) {
        PQclear(res);
        return RT_ERR_LIMIT; /* expected for huge tables: no error record */
    }
    for (size_t i = 0; i < rows; i++)
        fn(arg, PQgetvalue(res, (int)i, 0), PQgetvalue(res, (int)i, 1));
    *count = rows;
    PQclear(res);
    return RT_OK;
}

typedef struct member_feed {
    void (*each)(void *arg, const char *user_id, auth_member_role role);
    void *arg;
} member_feed;

static void feed_member(void *arg, const char *id, const char *role)
{
    member_feed *f = arg;
    f->each(f->arg, id, strcmp(role, "instructor") == 0 ? MEMBER(INSTRUCTOR) : MEMBER(STUDENT));
}

rt_status auth_store_course_members(auth_store *store, const char *course_id, size_t limit,
                                    void (*each)(void *arg, const char *user_id,
                                                 auth_member_role role),
                                    void *arg, size_t *count)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", limit + 1);
    const char *params[] = {course_id, lim};
    member_feed f = {each, arg};
    return query_pairs(store,
                       "SELECT user_id, role FROM realtime.course_members"
                       " WHERE course_id = $1 AND status <> 'removed' LIMIT $2::bigint",
                       2, params, limit, feed_member, &f, count);
}

typedef struct role_feed {
    void (*each)(void *arg, const char *user_id, auth_role role);
    void *arg;
} role_feed;

static void feed_role(void *arg, const char *id, const char *role)
{
    role_feed *f = arg;
    f->each(f->arg, id,
            strcmp(role, "admin") == 0        ? ROLE(ADMIN)
            : strcmp(role, "instructor") == 0 ? ROLE(INSTRUCTOR)
                                              : ROLE(STUDENT));
}

rt_status auth_store_all_roles(auth_store *store, size_t limit,
                               void (*each)(void *arg, const char *user_id, auth_role role),
                               void *arg, size_t *count)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", limit + 1);
    const char *params[] = {lim};
    role_feed f = {each, arg};
    return query_pairs(store, "SELECT user_id, role FROM realtime.user_roles LIMIT $1::bigint", 1,
                       params, limit, feed_role, &f, count);
}

static const Google__Protobuf__Timestamp *change_time(const auth_store_change *c)
{
    return c->enrollment ? c->enrollment->occurred_at : c->lesson->occurred_at;
}

bool auth_store_change_valid(const auth_store_change *c, char *why, size_t why_size)
{
    const Google__Protobuf__Timestamp *t;

    if (!!c->enrollment == !!c->lesson) {
        snprintf(why, why_size, "exactly one change expected");
        return false;
    }
    t = change_time(c);
    if (!t || t->seconds <= 0 || t->nanos < 0 || t->nanos > 999999999) {
        snprintf(why, why_size, "occurred_at missing or invalid");
        return false;
    }
    if (c->enrollment) {
        const Unpuzzle__Rt__V1__EnrollmentChanged *e = c->enrollment;
        if (!rt_id_valid(e->course_id) || !rt_id_valid(e->user_id)) {
            snprintf(why, why_size, "course_id or user_id is not a valid id");
            return false;
        }
        if (e->role != MEMBER(STUDENT) && e->role != MEMBER(INSTRUCTOR)) {
            snprintf(why, why_size, "role must be student or instructor");
            return false;
        }
        if (e->change != CHANGE(ADDED) && e->change != CHANGE(REMOVED) &&
            e->change != CHANGE(COMPLETED)) {
            snprintf(why, why_size, "change must be added, removed or completed");
            return false;
        }
        return true;
    }
    if (!rt_id_valid(c->lesson->lesson_id) || !rt_id_valid(c->lesson->course_id)) {
        snprintf(why, why_size, "lesson_id or course_id is not a valid id");
        return false;
    }
    return true;
}

/* Event time as two exact integers, seconds and microseconds (PostgreSQL's
 * precision), combined in SQL: no text formatting, no float rounding. */
static void time_params(char secs[24], char micros[16], const Google__Protobuf__Timestamp *t)
{
    snprintf(secs, 24, "%lld", (long long)t->seconds);
    snprintf(micros, 16, "%d", (int)(t->nanos / 1000));
}

static rt_status apply_one(PGconn *conn, bool *failed, const auth_store_change *c)
{
    char secs[24], micros[16];

    time_params(secs, micros, change_time(c));
    if (c->enrollment) {
        const Unpuzzle__Rt__V1__EnrollmentChanged *e = c->enrollment;
        const char *status = e->change == CHANGE(REMOVED)     ? "removed"
                             : e->change == CHANGE(COMPLETED) ? "completed"
                                                              : "added";
        const char *params[] = {
            e->course_id, e->user_id, e->role == MEMBER(INSTRUCTOR) ? "instructor" : "student",
            status,       secs,       micros};
        return rt_pg_exec(NULL, failed, conn,
                          "INSERT INTO realtime.course_members"
                          " (course_id, user_id, role, status, changed_at)"
                          " VALUES ($1, $2, $3, $4,"
                          " to_timestamp($5::bigint) + $6::bigint * interval '1 microsecond')"
                          " ON CONFLICT (course_id, user_id) DO UPDATE"
                          " SET role = EXCLUDED.role, status = EXCLUDED.status,"
                          "     changed_at = EXCLUDED.changed_at"
                          " WHERE realtime.course_members.changed_at <= EXCLUDED.changed_at",
                          6, params);
    }
    const char *params[] = {c->lesson->lesson_id, c->lesson->course_id,
                            c->lesson->deleted ? "true" : "false", secs, micros};
    return rt_pg_exec(NULL, failed, conn,
                      "INSERT INTO realtime.lessons (lesson_id, course_id, deleted, changed_at)"
                      " VALUES ($1, $2, $3::boolean,"
                      " to_timestamp($4::bigint) + $5::bigint * interval '1 microsecond')"
                      " ON CONFLICT (lesson_id) DO UPDATE"
                      " SET course_id = EXCLUDED.course_id, deleted = EXCLUDED.deleted,"
                      "     changed_at = EXCLUDED.changed_at"
                      " WHERE realtime.lessons.changed_at <= EXCLUDED.changed_at",
                      5, params);
}

rt_status auth_store_apply(auth_store *store, const auth_store_change *changes, size_t n)
{
    PGconn *conn = NULL;
    bool failed = false;
    rt_status s;

    if (n == 0)
        return RT_OK;
    s = rt_pg_acquire(&conn, store->pool, store->timeout_ms);
    if (s != RT_OK)
        return s;
    s = rt_pg_exec(NULL, &failed, conn, "BEGIN", 0, NULL);
    for (size_t i = 0; s == RT_OK && i < n; i++)
        s = apply_one(conn, &failed, &changes[i]);
    if (s == RT_OK)
        s = rt_pg_exec(NULL, &failed, conn, "COMMIT", 0, NULL);
    if (s != RT_OK && !failed) {
        bool ignored;
        rt_status keep = s;
        rt_pg_exec(NULL, &ignored, conn, "ROLLBACK", 0, NULL);
        s = keep;
    }
    rt_pg_release(store->pool, conn, failed);
    return s;
}
