/*
 * Shared by the test_edge_*.c integration tests (included, not linked): the
 * stack with a few users, ws-edge processes, and cmocka-asserting shortcuts
 * over rt_testws for "what the browser sees".
 *
 * Users: stu-1, stu-2 (students of c1), stu-3 (student of c2), teach-1
 * (instructor of c1, platform role instructor). Lessons l1, l2 in c1.
 */
#ifndef EDGE_TESTUTIL_H
#define EDGE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_teststack.h"
#include "rt_testws.h"
#include "rt_time.h"

#define EDGE_WAIT_MS 3000

/* Starts nats + pg, seeds the users, starts auth with `auth_env` and no edge. */
static inline rt_test_stack *edge_test_stack(const char *const *auth_env)
{
    rt_test_stack *st = NULL;
    if (rt_test_stack_start(&st) != RT_OK ||
        rt_test_pg_exec(st->pg,
                        "INSERT INTO realtime.course_members (course_id, user_id, role) VALUES"
                        " ('c1', 'stu-1', 'student'), ('c1', 'stu-2', 'student'),"
                        " ('c1', 'teach-1', 'instructor'), ('c2', 'stu-3', 'student');"
                        "INSERT INTO realtime.user_roles (user_id, role) VALUES"
                        " ('teach-1', 'instructor');"
                        "INSERT INTO realtime.lessons (lesson_id, course_id) VALUES"
                        " ('l1', 'c1'), ('l2', 'c1');") != RT_OK ||
        rt_test_stack_start_auth(st, auth_env) != RT_OK) {
        fprintf(stderr, "stack: %s (%s)\n", rt_error_message(), rt_error_origin());
        rt_test_stack_destroy(st);
        return NULL;
    }
    return st;
}

static inline int edge_test_start_edge(rt_test_stack *st, const char *const *env)
{
    int index = -1;
    if (rt_test_stack_start_edge(st, env, &index) != RT_OK) {
        fprintf(stderr, "ws-edge: %s (%s)\n", rt_error_message(), rt_error_origin());
        return -1;
    }
    return index;
}

/* A token for `sub` valid from now for `ttl_s` seconds. */
static inline char *edge_token_ttl(const char *sub, int64_t ttl_s)
{
    int64_t now = rt_time_now_ms() / 1000;
    char *claims = rt_testtoken_claims(sub, NULL, "session-1", now, now + ttl_s);
    char *token = NULL;
    assert_int_equal(rt_testtoken_mint(&token, "HS256", RT_TEST_JWT_SECRET, NULL, claims), RT_OK);
    free(claims);
    return token;
}

/* Connected (origin + subprotocol), not authenticated. */
static inline rt_testws *ws_connect(int port)
{
    rt_testws *ws = NULL;
    rt_testws_options o = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1"};
    if (rt_testws_connect(&ws, NULL, port, &o) != RT_OK)
        fail_msg("connect: %s", rt_error_message());
    return ws;
}

/* Connected and authenticated as `user` (an hour-long token). */
static inline rt_testws *ws_login(int port, const char *user)
{
    rt_testws *ws = NULL;
    char *token = rt_test_stack_token(user, NULL);
    if (rt_testws_open(&ws, port, token) != RT_OK)
        fail_msg("login %s: %s", user, rt_error_message());
    free(token);
    return ws;
}

static inline void ws_send(rt_testws *ws, const char *text)
{
    if (rt_testws_send_text(ws, text) != RT_OK)
        fail_msg("send: %s", rt_error_message());
}

/* The next JSON object (fails the test after EDGE_WAIT_MS). */
static inline json_t *ws_next(rt_testws *ws)
{
    json_t *m = NULL;
    if (rt_testws_recv_json(&m, ws, EDGE_WAIT_MS) != RT_OK)
        fail_msg("expected a message: %s", rt_error_message());
    return m;
}

/* The next object must be {"type":"error","code":code}; returns it. */
static inline json_t *ws_expect_error(rt_testws *ws, const char *code)
{
    json_t *m = ws_next(ws);
    if (strcmp(rt_json_str(m, "type"), "error") != 0 || strcmp(rt_json_str(m, "code"), code) != 0) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("expected error %s, got %s", code, text);
    }
    return m;
}

/* The next object must have this type; returns it. */
static inline json_t *ws_expect_type(rt_testws *ws, const char *type)
{
    json_t *m = ws_next(ws);
    if (strcmp(rt_json_str(m, "type"), type) != 0) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("expected %s, got %s", type, text);
    }
    return m;
}

/* The server must close with `code` within timeout_ms. */
static inline void ws_expect_close(rt_testws *ws, int code, int timeout_ms)
{
    if (rt_testws_wait_close(ws, timeout_ms) != RT_OK)
        fail_msg("expected close %d: %s", code, rt_error_message());
    if (rt_testws_close_code(ws) != code)
        fail_msg("expected close %d, got %d (%s)", code, rt_testws_close_code(ws),
                 rt_testws_close_reason(ws));
}

/* The connection still answers an application ping. */
static inline void ws_expect_alive(rt_testws *ws, const char *id)
{
    char frame[128];
    snprintf(frame, sizeof(frame), "{\"type\":\"ping\",\"id\":\"%s\"}", id);
    ws_send(ws, frame);
    json_t *m = NULL;
    if (rt_testws_recv_type(&m, ws, "pong", id, EDGE_WAIT_MS) != RT_OK)
        fail_msg("no pong for %s: %s (close %d)", id, rt_error_message(), rt_testws_close_code(ws));
    json_decref(m);
}

/* Subscribes and expects "subscribed"; returns the reply. */
static inline json_t *ws_join(rt_testws *ws, const char *id, const char *room)
{
    json_t *m = NULL;
    if (rt_testws_subscribe(&m, ws, id, room, EDGE_WAIT_MS) != RT_OK) {
        char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
        fail_msg("subscribe %s: %s %s", room, rt_error_message(), text ? text : "");
    }
    return m;
}

/* Sends a subscribe with since:{seq,epoch} (a client coming back). */
static inline void ws_send_resume(rt_testws *ws, const char *id, const char *room, uint64_t seq,
                                  const char *epoch)
{
    json_t *frame = json_pack("{s:s, s:s, s:s, s:{s:I, s:s}}", "type", "subscribe", "id", id,
                              "room", room, "since", "seq", (json_int_t)seq, "epoch", epoch);
    char *text = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);
    ws_send(ws, text);
    free(text);
}

/* Resubscribes with since on a connection new to the room: the next object
 * must be its "subscribed" (nothing of the room comes before it); returns
 * it. */
static inline json_t *ws_resume(rt_testws *ws, const char *id, const char *room, uint64_t seq,
                                const char *epoch)
{
    ws_send_resume(ws, id, room, seq, epoch);
    json_t *m = ws_expect_type(ws, "subscribed");
    if (strcmp(rt_json_str(m, "id"), id) != 0 || strcmp(rt_json_str(m, "room"), room) != 0) {
        char *text = json_dumps(m, JSON_COMPACT);
        fail_msg("expected subscribed %s for %s, got %s", id, room, text);
    }
    return m;
}

/* A sample of an edge's /metrics (-1 when absent). */
static inline double edge_metric(int port, const char *series)
{
    int status = 0;
    char *body = NULL;
    assert_int_equal(rt_test_http_get(&status, &body, port, "/metrics", 2000), RT_OK);
    assert_int_equal(status, 200);
    double v = rt_test_metric_value(body, series);
    free(body);
    return v;
}

/* Is `text` an RFC 3339 UTC time ("2026-11-25T17:30:00Z" or with
 * fractional seconds)? Returns its Unix time in seconds, or -1. */
static inline int64_t rfc3339_seconds(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return -1;
    if (*rest == '.') {
        rest++;
        if (*rest < '0' || *rest > '9')
            return -1;
        while (*rest >= '0' && *rest <= '9')
            rest++;
    }
    if (strcmp(rest, "Z") != 0)
        return -1;
    return (int64_t)timegm(&tm);
}

#endif
