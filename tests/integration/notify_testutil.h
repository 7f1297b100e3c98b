/*
 * Shared by the test_notify_*.c integration tests (included, not linked):
 * the stack (nats-server + PostgreSQL with migrations) with dispatcher
 * processes, events published as Django and ws-edge do (protobuf on
 * EVENTS with a Nats-Msg-Id), what the users' rooms receive (core NATS on
 * rtd.v1.room.user.>, as ws-edge listens), notify.v1.list, and SQL checks.
 */
#ifndef NOTIFY_TESTUTIL_H
#define NOTIFY_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_pbjson.h"
#include "rt_teststack.h"
#include "rt_testws.h"
#include "rt_time.h"

#define D(name) &unpuzzle__rt__v1__##name##__descriptor

#if defined(__SANITIZE_ADDRESS__)
#define NOTIFY_SLOW 3 /* sanitizers slow every hop */
#else
#define NOTIFY_SLOW 1
#endif

/* A dispatcher process. */
typedef struct notify_proc {
    rt_test_proc *proc;
    int port;
} notify_proc;

/* Starts build/bin/notification-dispatcher against the stack with short
 * test timings plus `extra_env` (later entries win) and waits for /readyz. */
static inline rt_status notify_start(notify_proc *d, rt_test_stack *st,
                                     const char *const *extra_env)
{
    char nats_url[128], db_url[256], port[32];
    const char *env[40];
    size_t n = 0;
    rt_status s;

    d->port = rt_test_free_port();
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", rt_test_nats_url(st->nats));
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(st->pg));
    snprintf(port, sizeof(port), "ADMIN_PORT=%d", d->port);
    env[n++] = nats_url;
    env[n++] = db_url;
    env[n++] = port;
    env[n++] = "LOG_LEVEL=info";
    /* A killed replica's events come back within 3 s. */
    env[n++] = "NOTIFY_ACK_WAIT_MS=3000";
    env[n++] = "NOTIFY_PUBLISH_TIMEOUT_MS=1000";
    env[n++] = "NOTIFY_RETRY_DELAY_MS=200";
    env[n++] = "NOTIFY_SWEEP_INTERVAL_MS=200";
    env[n++] = "NOTIFY_SWEEP_AGE_MS=1000";
    for (size_t i = 0; extra_env && extra_env[i] && n < 39; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    if ((s = rt_test_proc_start(&d->proc, "notification-dispatcher", NULL, env)) != RT_OK)
        return s;
    return rt_test_proc_wait_http(d->proc, d->port, "/readyz", 200, 20000);
}

static inline void notify_kill(notify_proc *d)
{
    assert_int_equal(rt_test_proc_stop(d->proc, SIGKILL, 5000, NULL), RT_OK);
    rt_test_proc_destroy(d->proc);
    d->proc = NULL;
}

/* A sample of a dispatcher's /metrics (-1 when absent). */
static inline double notify_metric(const notify_proc *d, const char *series)
{
    int status = 0;
    char *body = NULL;
    assert_int_equal(rt_test_http_get(&status, &body, d->port, "/metrics", 2000), RT_OK);
    assert_int_equal(status, 200);
    double v = rt_test_metric_value(body, series);
    free(body);
    return v;
}

static inline void notify_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- events ---- */

/* Publishes an event given as JSON (with its "eventId") to EVENTS with
 * Nats-Msg-Id `msg_id` (NULL: the eventId, as producers do). */
static inline void notify_publish_msgid(rt_test_stack *st, const char *subject,
                                        const ProtobufCMessageDescriptor *desc, const char *msg_id,
                                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline void notify_publish_msgid(rt_test_stack *st, const char *subject,
                                        const ProtobufCMessageDescriptor *desc, const char *msg_id,
                                        const char *fmt, ...)
{
    char json[8192], err[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(json, sizeof(json), fmt, ap);
    va_end(ap);
    ProtobufCMessage *msg = NULL;
    if (rt_pbjson_from_string(&msg, desc, json, strlen(json), NULL, err, sizeof(err)) != RT_OK)
        fail_msg("test event does not parse: %s: %s", err, json);
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(desc, "event_id");
    const char *event_id = *(char **)((char *)msg + f->offset);
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(msg, buf);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id ? msg_id : event_id;
    po.MaxWait = 5000;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(NULL, st->js, subject, buf, (int)len, &po, &jerr);
    if (s != NATS_OK)
        fail_msg("publish %s: %s (%d)", subject, natsStatus_GetText(s), (int)jerr);
    free(buf);
    protobuf_c_message_free_unpacked(msg, NULL);
}

#define notify_publish(st, subject, desc, ...)                                                     \
    notify_publish_msgid(st, subject, desc, NULL, __VA_ARGS__)

/* Publishes raw bytes (not an event) to an EVENTS subject. */
static inline void notify_publish_raw(rt_test_stack *st, const char *subject, const char *bytes,
                                      const char *msg_id)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = 5000;
    assert_int_equal(js_Publish(NULL, st->js, subject, bytes, (int)strlen(bytes), &po, NULL),
                     NATS_OK);
}

/* ---- user rooms ---- */

/* A subscription to every user room's live delivery, as ws-edge listens. */
static inline natsSubscription *notify_rooms_sub(rt_test_stack *st, const char *subject)
{
    natsSubscription *sub = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&sub, st->nc, subject), NATS_OK);
    natsSubscription_SetPendingLimits(sub, 1000000, 1024 * 1024 * 1024);
    assert_int_equal(natsConnection_Flush(st->nc), NATS_OK);
    return sub;
}

/* The next room message as the browser would see its fields (payload under
 * "payload"), plus "subject"; NULL when none arrives in time. */
static inline json_t *notify_room_next(natsSubscription *sub, int timeout_ms)
{
    natsMsg *m = NULL;
    json_t *out = NULL;
    if (natsSubscription_NextMsg(&m, sub, timeout_ms) != NATS_OK)
        return NULL;
    Unpuzzle__Rt__V1__RoomMessage *rm = unpuzzle__rt__v1__room_message__unpack(
        NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
    assert_non_null(rm);
    assert_int_equal(rt_pbjson_to_json(&out, &rm->base, RT_PBJSON_ONEOF_AS_GROUP), RT_OK);
    json_object_set_new(out, "subject", json_string(natsMsg_GetSubject(m)));
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
    natsMsg_Destroy(m);
    return out;
}

static inline const char *notify_payload_str(const json_t *m, const char *key)
{
    return rt_json_str(json_object_get(m, "payload"), key);
}

/* ---- notify.v1.list ---- */

/* *error_code gets the Nats-Service-Error-Code header ("" when none). */
static inline Unpuzzle__Rt__V1__NotificationList *
notify_list(rt_test_stack *st, const char *user, bool unread_only, uint32_t limit,
            const Google__Protobuf__Timestamp *before, char error_code[8])
{
    Unpuzzle__Rt__V1__ListRequest req = UNPUZZLE__RT__V1__LIST_REQUEST__INIT;
    req.user_id = (char *)user;
    req.unread_only = unread_only;
    req.limit = limit;
    req.before = (Google__Protobuf__Timestamp *)before;
    uint8_t buf[256];
    size_t len = unpuzzle__rt__v1__list_request__pack(&req, buf);
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_Request(&reply, st->nc, "notify.v1.list", buf, (int)len, 3000);
    if (s != NATS_OK)
        fail_msg("notify.v1.list: %s", natsStatus_GetText(s));
    const char *code = NULL;
    if (natsMsgHeader_Get(reply, "Nats-Service-Error-Code", &code) != NATS_OK)
        code = "";
    if (error_code)
        snprintf(error_code, 8, "%s", code);
    Unpuzzle__Rt__V1__NotificationList *list = unpuzzle__rt__v1__notification_list__unpack(
        NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
    natsMsg_Destroy(reply);
    assert_non_null(list);
    return list;
}

/* ---- SQL ---- */

static inline long notify_sql_long(rt_test_stack *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline long notify_sql_long(rt_test_stack *st, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    char *v = NULL;
    if (rt_test_pg_query_value(&v, st->pg, sql) != RT_OK)
        fail_msg("%s: %s", sql, rt_error_message());
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* Polls an SQL count until it equals `want` (returns whether it did). */
static inline bool notify_wait_sql(rt_test_stack *st, long want, int timeout_ms, const char *sql)
{
    int64_t until = rt_time_now_ms() + timeout_ms;
    for (;;) {
        if (notify_sql_long(st, "%s", sql) == want)
            return true;
        if (rt_time_now_ms() > until)
            return false;
        notify_sleep_ms(50);
    }
}

#endif
