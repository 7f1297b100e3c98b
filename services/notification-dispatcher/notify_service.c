#include "notify_service.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify_events.h"
#include "notify_messages.h"
#include "notify_publish.h"
#include "notify_store.h"
#include "rt_alloc.h"
#include "rt_consumer.h"
#include "rt_log.h"
#include "rt_nats.h"
#include "rt_pg.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_time.h"
#include "rt_workers.h"

/* Rows published per claim (one transaction, one batch of acks). */
#define DELIVER_CHUNK 500
/* Claims per sweep (the rest waits for the next sweep). */
#define SWEEP_ROUNDS 20
/* An SQL error (not an outage) is retried this many deliveries, then the
 * event is terminated: it would fail forever. */
#define SQL_ERROR_DELIVERIES 10
/* 9999-12-31T23:59:59Z: a `before` past it bounds nothing. */
#define MAX_BEFORE_S INT64_C(253402300799)

/* ---- configuration ---- */

const rt_config_var notify_config_vars[] = {
    RT_CFG_NATS_VARS(notify_config),
    RT_CFG_STR(notify_config, database_url, "DATABASE_URL", NULL, RT_CFG_REQUIRED,
               rt_config_check_postgres_url, "PostgreSQL connection URL"),
    RT_CFG_INT(notify_config, admin_port, "ADMIN_PORT", "9103", 0, 0, 65535,
               "port of /healthz, /readyz, /metrics (0 picks a free port)"),
    RT_CFG_STR(notify_config, log_level, "LOG_LEVEL", "info", 0, rt_config_check_log_level,
               "debug, info, warn or error"),
    RT_CFG_INT(notify_config, workers, "NOTIFY_WORKERS", "2", 0, 1, 64,
               "threads answering notify.v1.list"),
    RT_CFG_INT(notify_config, queue_max, "NOTIFY_QUEUE_MAX", "10000", 0, 1, 1000000,
               "list requests waiting for a worker before new ones are refused"),
    RT_CFG_INT(notify_config, pg_pool_size, "PG_POOL_SIZE", "4", 0, 2, 64,
               "PostgreSQL connections (consumer, sweep and list workers share them)"),
    RT_CFG_INT(notify_config, db_timeout_ms, "DB_TIMEOUT_MS", "2000", 0, 10, 60000,
               "longest wait for a PostgreSQL connection"),
    RT_CFG_INT(notify_config, batch, "NOTIFY_BATCH", "64", 0, 1, 1000,
               "events fetched at once by the consumer"),
    RT_CFG_INT(notify_config, ack_wait_ms, "NOTIFY_ACK_WAIT_MS", "30000", 0, 1000, 3600000,
               "an event not acked in this time is redelivered (to any replica); all replicas "
               "must agree"),
    RT_CFG_INT(notify_config, retry_delay_ms, "NOTIFY_RETRY_DELAY_MS", "2000", 0, 10, 600000,
               "an event that could not be processed (PostgreSQL or NATS down) is redelivered "
               "after this"),
    RT_CFG_INT(notify_config, publish_timeout_ms, "NOTIFY_PUBLISH_TIMEOUT_MS", "5000", 0, 100,
               600000, "longest wait for the ROOMS stream to store a batch of room messages"),
    RT_CFG_INT(notify_config, max_event_age_s, "NOTIFY_MAX_EVENT_AGE_S", "86400", 0, 0, 31536000,
               "events stored longer ago than this create no notification (0: no limit)"),
    RT_CFG_INT(notify_config, sweep_interval_ms, "NOTIFY_SWEEP_INTERVAL_MS", "1000", 0, 100, 600000,
               "how often unpublished notifications are looked for"),
    RT_CFG_INT(notify_config, sweep_age_ms, "NOTIFY_SWEEP_AGE_MS", "5000", 0, 0, 3600000,
               "a notification still unpublished this long after it was stored is published by "
               "the sweep"),
    RT_CFG_INT(notify_config, events_max_age_s, "EVENTS_MAX_AGE_S", "604800", 0, 60, 31536000,
               "retention of the EVENTS stream, seconds"),
    RT_CFG_INT(notify_config, events_duplicate_window_s, "EVENTS_DUPLICATE_WINDOW_S", "120", 0, 1,
               86400, "JetStream dedupe window of Nats-Msg-Id on EVENTS, seconds"),
    RT_CFG_INT(notify_config, rooms_max_age_s, "ROOMS_MAX_AGE_S", "86400", 0, 60, 31536000,
               "room history kept in the ROOMS stream, seconds (if this service creates it)"),
    RT_CFG_INT(notify_config, rooms_max_per_room, "ROOMS_MAX_PER_ROOM", "1000", 0, 1, 1000000,
               "messages kept per room in the ROOMS stream"),
    RT_CFG_INT(notify_config, rooms_duplicate_window_s, "ROOMS_DUPLICATE_WINDOW_S", "120", 0, 1,
               86400, "JetStream dedupe window of Nats-Msg-Id on ROOMS, seconds"),
    RT_CFG_INT(notify_config, drain_ms, "NOTIFY_DRAIN_MS", "5000", 0, 1, 600000,
               "longest time to finish in-flight work on SIGTERM"),
};
const size_t notify_config_var_count = sizeof(notify_config_vars) / sizeof(notify_config_vars[0]);

rt_status notify_config_load(notify_config *config)
{
    rt_status s = rt_config_load(config, notify_config_vars, notify_config_var_count);
    if (s != RT_OK)
        return s;
    /* An event must not come back to another replica while its room
     * publishes are still being awaited. */
    if (config->publish_timeout_ms * 2 >= config->ack_wait_ms) {
        notify_config_release(config);
        return RT_ERR(RT_ERR_CONFIG,
                      "NOTIFY_ACK_WAIT_MS: must be more than twice NOTIFY_PUBLISH_TIMEOUT_MS");
    }
    return RT_OK;
}

void notify_config_release(notify_config *config)
{
    rt_config_release(config, notify_config_vars, notify_config_var_count);
}

/* ---- state ---- */

typedef enum outcome {
    OUT_APPLIED = 0,    /* notifications stored and published, or receipts applied */
    OUT_RECORDED,       /* a created confusion / question remembered */
    OUT_IGNORED,        /* not the dispatcher's */
    OUT_STALE,          /* older than NOTIFY_MAX_EVENT_AGE_S: no notification */
    OUT_INVALID,        /* terminated: can never be processed */
    OUT_UNKNOWN_THREAD, /* terminated: nobody to tell (no asker / student known) */
    OUT_RETRIED,        /* nak'ed: PostgreSQL or NATS trouble, or waiting for the created event */
    OUT_COUNT
} outcome;

static const char *const outcome_names[OUT_COUNT] = {
    "applied", "recorded", "ignored", "stale", "invalid", "unknown_thread", "retried"};

typedef enum list_result {
    LIST_OK = 0,
    LIST_BAD_REQUEST,
    LIST_UNAVAILABLE,
    LIST_OVERLOADED,
    LIST_COUNT
} list_result;
static const char *const list_result_names[LIST_COUNT] = {"ok", "bad_request", "unavailable",
                                                          "overloaded"};

struct notify_service {
    const notify_config *config;
    rt_metrics *metrics;
    rt_pg_pool *pool;
    notify_store *store;
    rt_workers *workers;
    rt_nats *nats;
    notify_publisher *pub_events; /* consumer thread */
    notify_publisher *pub_sweep;  /* main thread */
    natsSubscription *sub_list;
    rt_consumer *consumer;
    bool streams_ready;
    atomic_bool consumer_ready; /* the durable exists on the server */
    uint64_t last_sweep_ns;
    atomic_bool draining;

    rt_counter *events[OUT_COUNT];
    rt_counter *list_results[LIST_COUNT];
    rt_counter *notifications, *reads, *publish_failures;
    rt_counter *room_messages_event, *room_messages_sweep, *room_messages_read;
    rt_histogram *event_seconds, *list_seconds;
    rt_gauge *unpublished;
};

typedef struct list_request {
    natsMsg *msg;
    uint64_t received_ns;
} list_request;

/* ---- delivery ---- */

/* Publishes every unpublished row of one event (or, for the sweep, of any
 * event older than NOTIFY_SWEEP_AGE_MS), a claim at a time: publish, wait
 * for the stream's acks, mark published, commit. RT_OK when nothing is left
 * that this replica could claim. */
static rt_status deliver(notify_service *svc, notify_publisher *pub, const char *event_id,
                         natsMsg *event_msg, rt_counter *published)
{
    for (int round = 0; event_id || round < SWEEP_ROUNDS; round++) {
        notify_claim *claim = NULL;
        size_t n = 0, messages = 0;
        rt_status st =
            event_id ? notify_store_claim_event(&claim, svc->store, event_id, DELIVER_CHUNK)
                     : notify_store_claim_stale(&claim, svc->store, (int)svc->config->sweep_age_ms,
                                                DELIVER_CHUNK);
        if (st != RT_OK)
            return st;
        const notify_row *rows = notify_claim_rows(claim, &n);
        if (n == 0)
            return notify_store_claim_end(svc->store, claim, false);
        notify_publish_begin(pub);
        for (size_t i = 0; i < n; i++) {
            /* A row no room can hold (written by hand with a bad user id)
             * is marked with the others rather than retried forever. */
            if (notify_publish_row(pub, &rows[i]) != RT_OK)
                rt_log_error("notification for an invalid user id; not deliverable", "{s:s, s:s}",
                             "notification_id", rows[i].notification_id, "source_event_id",
                             rows[i].source_event_id);
        }
        st = notify_publish_wait(pub, &messages);
        if (st != RT_OK) {
            rt_counter_inc(svc->publish_failures);
            notify_store_claim_end(svc->store, claim, false);
            return st;
        }
        rt_counter_add(published, messages);
        /* Marking may still fail: the rows are then published again later,
         * under the same Nats-Msg-Ids, which the stream drops. */
        if ((st = notify_store_claim_end(svc->store, claim, true)) != RT_OK)
            return st;
        if (event_msg && n == DELIVER_CHUNK)
            natsMsg_InProgress(event_msg, NULL); /* a big course: keep the event ours */
    }
    return RT_OK;
}

/* ---- events ---- */

static rt_msg_verdict verdict_for(notify_service *svc, outcome o)
{
    rt_counter_inc(svc->events[o]);
    switch (o) {
    case OUT_INVALID:
    case OUT_UNKNOWN_THREAD:
        return RT_MSG_TERM;
    case OUT_RETRIED:
        return RT_MSG_NAK;
    default:
        return RT_MSG_ACK;
    }
}

/* PostgreSQL or NATS could not do their part: try again later; an SQL
 * error that keeps coming back is terminated rather than retried forever. */
static rt_msg_verdict retry(notify_service *svc, natsMsg *msg, const char *subject, rt_status st)
{
    jsMsgMetaData *meta = NULL;
    uint64_t delivered = 0;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        delivered = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
    }
    if (st == RT_ERR_PG && delivered >= SQL_ERROR_DELIVERIES) {
        rt_log_error("event failed in PostgreSQL on every delivery; dropped", "{s:s, s:s, s:i}",
                     "subject", subject, "error", rt_error_message(), "deliveries", (int)delivered);
        return verdict_for(svc, OUT_INVALID);
    }
    if (st == RT_ERR_PG)
        rt_log_warn("event not processed; will retry", "{s:s, s:s}", "subject", subject, "error",
                    rt_error_message());
    else
        rt_log_debug("event not processed; will retry", "{s:s, s:s}", "subject", subject, "error",
                     rt_error_message());
    return verdict_for(svc, OUT_RETRIED);
}

/* The created event of an answered question / resolved confusion is not
 * recorded. If an earlier event is still in flight (another replica, a
 * retry) it may be the one: wait. Once every earlier event of the stream is
 * settled (the consumer's ack floor is right below this one) nobody can be
 * told: terminate. */
static rt_msg_verdict unknown_thread(notify_service *svc, natsMsg *msg, const notify_plan *plan)
{
    jsMsgMetaData *meta = NULL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    uint64_t seq = 0, floor = 0;

    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
    }
    natsStatus s = js_GetConsumerInfo(&ci, rt_nats_jetstream(svc->nats), "EVENTS", NOTIFY_DURABLE,
                                      NULL, &jerr);
    if (s != NATS_OK || !seq) {
        jsConsumerInfo_Destroy(ci);
        return verdict_for(svc, OUT_RETRIED);
    }
    floor = ci->AckFloor.Stream;
    jsConsumerInfo_Destroy(ci);
    if (floor + 1 < seq) {
        rt_log_debug("thread not recorded yet; waiting for earlier events", "{s:s, s:s}", "kind",
                     notify_thread_kind_name(plan->thread_kind), "id", plan->thread_id);
        return verdict_for(svc, OUT_RETRIED);
    }
    rt_log_warn("no created event for this id; nobody to notify", "{s:s, s:s, s:s}", "kind",
                notify_thread_kind_name(plan->thread_kind), "id", plan->thread_id, "event_id",
                plan->event_id);
    return verdict_for(svc, OUT_UNKNOWN_THREAD);
}

static bool stale(notify_service *svc, natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    bool old = false;
    if (svc->config->max_event_age_s <= 0 || natsMsg_GetMetaData(&meta, msg) != NATS_OK)
        return false;
    int64_t age_ms = rt_time_now_ms() - meta->Timestamp / 1000000;
    old = age_ms > svc->config->max_event_age_s * 1000;
    jsMsgMetaData_Destroy(meta);
    return old;
}

static rt_msg_verdict notify(notify_service *svc, natsMsg *msg, const ProtobufCMessage *event,
                             const notify_plan *plan)
{
    const char *subject = natsMsg_GetSubject(msg);
    char course[RT_ID_MAX + 1], lesson[RT_ID_MAX + 1], student[RT_ID_MAX + 1];
    const char *recipient = plan->recipient;
    uint8_t *extra = NULL;
    size_t extra_len = 0, inserted = 0;
    rt_status st;

    if (stale(svc, msg))
        return verdict_for(svc, OUT_STALE);
    if (plan->action == NOTIFY_TO_THREAD_OWNER) {
        const char *lesson_id = plan->lesson_id;
        recipient = plan->owner_id;
        if (!*recipient) {
            bool found = false;
            st = notify_store_thread(&found, course, lesson, student, svc->store, plan->thread_kind,
                                     plan->thread_id);
            if (st != RT_OK)
                return retry(svc, msg, subject, st);
            if (!found)
                return unknown_thread(svc, msg, plan);
            /* An instructor of one course cannot reach the students of
             * another by naming their question. */
            if (strcmp(course, plan->course_id) != 0) {
                rt_log_error("event names a thread of another course; dropped",
                             "{s:s, s:s, s:s, s:s}", "kind",
                             notify_thread_kind_name(plan->thread_kind), "id", plan->thread_id,
                             "course_id", plan->course_id, "thread_course_id", course);
                return verdict_for(svc, OUT_INVALID);
            }
            recipient = student;
            if (!*lesson_id)
                lesson_id = lesson;
        }
        notify_pack_companion(&extra, &extra_len, event, recipient, lesson_id);
    }

    notify_new n = {.source_event_id = plan->event_id,
                    .kind = plan->kind,
                    .title = plan->title,
                    .body = plan->body,
                    .link = plan->link,
                    .course_id = plan->course_id,
                    .extra = extra,
                    .extra_len = extra_len};
    switch (plan->action) {
    case NOTIFY_TO_STUDENTS:
        st = notify_store_insert_course(&inserted, svc->store, &n, plan->course_id,
                                        NOTIFY_AUDIENCE_STUDENTS);
        break;
    case NOTIFY_TO_INSTRUCTORS:
        st = notify_store_insert_course(&inserted, svc->store, &n, plan->course_id,
                                        NOTIFY_AUDIENCE_INSTRUCTORS);
        break;
    default:
        st = notify_store_insert_user(&inserted, svc->store, &n, recipient);
        break;
    }
    free(extra);
    if (st != RT_OK)
        return retry(svc, msg, subject, st);
    rt_counter_add(svc->notifications, inserted);
    if (inserted > 1)
        rt_log_info("notifications stored", "{s:s, s:s, s:s, s:i}", "kind", plan->kind, "course_id",
                    plan->course_id, "event_id", plan->event_id, "recipients", (int)inserted);
    /* Also when nothing was inserted: a redelivery publishes what an
     * earlier attempt stored but did not get out. */
    st = deliver(svc, svc->pub_events, plan->event_id, msg, svc->room_messages_event);
    if (st != RT_OK)
        return retry(svc, msg, subject, st);
    return verdict_for(svc, OUT_APPLIED);
}

static rt_msg_verdict mark_read(notify_service *svc, natsMsg *msg,
                                const Unpuzzle__Rt__V1__NotificationsRead *ev,
                                const notify_plan *plan)
{
    const char *subject = natsMsg_GetSubject(msg);
    char **ids = NULL, **ordered = NULL;
    size_t n = 0, n_ordered = 0;

    if (plan->n_read_ids == 0)
        return verdict_for(svc, OUT_APPLIED);
    rt_status st =
        notify_store_mark_read(&ids, &n, svc->store, plan->reader_id, plan->read_ids_array);
    if (st != RT_OK)
        return retry(svc, msg, subject, st);
    if (n == 0) {
        notify_ids_free(ids, n);
        rt_log_debug("read receipt names no notification of its user", "{s:s}", "event_id",
                     plan->event_id);
        return verdict_for(svc, OUT_APPLIED);
    }
    /* The reader's ids in the receipt's order, each once. */
    ordered = rt_calloc(n, sizeof(char *));
    for (size_t i = 0; i < ev->n_notification_ids && n_ordered < n; i++) {
        const char *id = ev->notification_ids[i];
        bool mine = false, seen = false;
        for (size_t k = 0; k < n && !mine; k++)
            mine = strcmp(ids[k], id) == 0;
        for (size_t k = 0; k < n_ordered && !seen; k++)
            seen = strcmp(ordered[k], id) == 0;
        if (mine && !seen)
            ordered[n_ordered++] = (char *)id;
    }
    rt_counter_add(svc->reads, n_ordered);

    char room_subject[RT_ROOM_SUBJECT_MAX], msg_id[NOTIFY_MSG_ID_MAX];
    uint8_t *data = NULL;
    size_t len = 0, messages = 0;
    notify_user_subject(room_subject, plan->reader_id);
    notify_msg_id_read(msg_id, plan->event_id);
    notify_pack_read(&data, &len, ev, plan->reader_id, ordered, n_ordered);
    notify_publish_begin(svc->pub_events);
    notify_publish_add(svc->pub_events, room_subject, data, len, msg_id);
    st = notify_publish_wait(svc->pub_events, &messages);
    free(data);
    free(ordered);
    notify_ids_free(ids, n);
    if (st != RT_OK) {
        rt_counter_inc(svc->publish_failures);
        return retry(svc, msg, subject, st);
    }
    rt_counter_add(svc->room_messages_read, messages);
    return verdict_for(svc, OUT_APPLIED);
}

static rt_msg_verdict process(notify_service *svc, natsMsg *msg)
{
    const char *subject = natsMsg_GetSubject(msg);
    const ProtobufCMessageDescriptor *desc = notify_event_descriptor(subject);
    notify_plan plan;
    char why[192];
    rt_msg_verdict v;

    if (!desc)
        return verdict_for(svc, OUT_IGNORED);
    ProtobufCMessage *event = protobuf_c_message_unpack(
        desc, NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (!event) {
        rt_log_error("event is not decodable; dropped", "{s:s}", "subject", subject);
        return verdict_for(svc, OUT_INVALID);
    }
    if (notify_plan_make(&plan, event, why, sizeof(why)) != RT_OK) {
        rt_log_error("invalid event; dropped", "{s:s, s:s}", "subject", subject, "reason", why);
        protobuf_c_message_free_unpacked(event, NULL);
        return verdict_for(svc, OUT_INVALID);
    }
    switch (plan.action) {
    case NOTIFY_IGNORE:
        v = verdict_for(svc, OUT_IGNORED);
        break;
    case NOTIFY_RECORD_THREAD: {
        rt_status st = notify_store_record_thread(svc->store, plan.thread_kind, plan.thread_id,
                                                  plan.course_id, plan.lesson_id, plan.owner_id);
        v = st == RT_OK ? verdict_for(svc, OUT_RECORDED) : retry(svc, msg, subject, st);
        break;
    }
    case NOTIFY_MARK_READ:
        v = mark_read(svc, msg, (const Unpuzzle__Rt__V1__NotificationsRead *)event, &plan);
        break;
    default:
        v = notify(svc, msg, event, &plan);
        break;
    }
    notify_plan_release(&plan);
    protobuf_c_message_free_unpacked(event, NULL);
    return v;
}

/* Consumer thread: one event at a time, in stream order within the batch. */
static void on_events(void *arg, natsMsg **msgs, int n, rt_msg_verdict *verdicts)
{
    notify_service *svc = arg;
    for (int i = 0; i < n; i++) {
        uint64_t start = rt_time_mono_ns();
        verdicts[i] = process(svc, msgs[i]);
        rt_histogram_observe(svc->event_seconds, (double)(rt_time_mono_ns() - start) / 1e9);
    }
}

/* ---- notify.v1.list ---- */

static void reply(notify_service *svc, natsMsg *request,
                  const Unpuzzle__Rt__V1__NotificationList *list, const char *error_code,
                  const char *error_text)
{
    const char *to = natsMsg_GetReply(request);
    Unpuzzle__Rt__V1__NotificationList empty = UNPUZZLE__RT__V1__NOTIFICATION_LIST__INIT;
    natsMsg *m = NULL;

    if (!to || !*to)
        return; /* a publish without reply subject: nobody to answer */
    if (!list)
        list = &empty;
    size_t len = unpuzzle__rt__v1__notification_list__get_packed_size(list);
    uint8_t *buf = rt_malloc(len ? len : 1);
    unpuzzle__rt__v1__notification_list__pack(list, buf);
    natsStatus s = natsMsg_Create(&m, to, NULL, (const char *)buf, (int)len);
    /* Errors follow the NATS service convention, with an empty list as the
     * body so a caller that ignores headers still gets a valid reply. */
    if (s == NATS_OK && error_code) {
        natsMsgHeader_Set(m, "Nats-Service-Error-Code", error_code);
        natsMsgHeader_Set(m, "Nats-Service-Error", error_text);
    }
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(rt_nats_connection(svc->nats), m);
    if (s != NATS_OK)
        rt_log_warn("list reply not sent", "{s:s}", "error", natsStatus_GetText(s));
    natsMsg_Destroy(m);
    free(buf);
}

static void handle_list(notify_service *svc, natsMsg *msg)
{
    Unpuzzle__Rt__V1__ListRequest *req = unpuzzle__rt__v1__list_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    Unpuzzle__Rt__V1__NotificationList *list = NULL;
    int64_t before_us = 0;

    if (!req || !rt_id_valid(req->user_id) ||
        (req->before && (req->before->nanos < 0 || req->before->nanos > 999999999))) {
        rt_log_warn("bad list request; answered with an empty list", "{s:s}", "reason",
                    !req ? "not a ListRequest" : "invalid user_id or before");
        rt_counter_inc(svc->list_results[LIST_BAD_REQUEST]);
        reply(svc, msg, NULL, "400", "bad request: user_id must be an id, before a timestamp");
        if (req)
            unpuzzle__rt__v1__list_request__free_unpacked(req, NULL);
        return;
    }
    if (req->before && req->before->seconds <= MAX_BEFORE_S) {
        /* (Later than year 9999 bounds nothing: as if unset.) */
        before_us = req->before->seconds <= 0
                        ? 0
                        : req->before->seconds * 1000000 + req->before->nanos / 1000;
        if (before_us <= 0) { /* nothing is older than the epoch */
            rt_counter_inc(svc->list_results[LIST_OK]);
            reply(svc, msg, NULL, NULL, NULL);
            unpuzzle__rt__v1__list_request__free_unpacked(req, NULL);
            return;
        }
    }
    rt_status st = notify_store_list(&list, svc->store, req->user_id, req->unread_only,
                                     notify_list_limit(req->limit), before_us);
    if (st != RT_OK) {
        rt_log_warn("list failed", "{s:s}", "error", rt_error_message());
        rt_counter_inc(svc->list_results[LIST_UNAVAILABLE]);
        reply(svc, msg, NULL, "503", "notifications unavailable; try again");
    } else {
        rt_counter_inc(svc->list_results[LIST_OK]);
        reply(svc, msg, list, NULL, NULL);
    }
    notify_list_free(list);
    unpuzzle__rt__v1__list_request__free_unpacked(req, NULL);
}

static void run_list(void *arg, void *item)
{
    notify_service *svc = arg;
    list_request *req = item;
    handle_list(svc, req->msg);
    rt_histogram_observe(svc->list_seconds, (double)(rt_time_mono_ns() - req->received_ns) / 1e9);
    natsMsg_Destroy(req->msg);
    free(req);
}

static void discard_list(void *arg, void *item)
{
    (void)arg;
    list_request *req = item;
    natsMsg_Destroy(req->msg);
    free(req);
}

static void on_list(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    notify_service *svc = closure;
    list_request *req = rt_malloc(sizeof(*req));
    (void)nc;
    (void)sub;
    req->msg = msg;
    req->received_ns = rt_time_mono_ns();
    if (rt_workers_submit(svc->workers, req) == RT_OK)
        return;
    rt_counter_inc(svc->list_results[LIST_OVERLOADED]);
    reply(svc, msg, NULL, "503", "notification-dispatcher overloaded; try again");
    natsMsg_Destroy(msg);
    free(req);
}

/* ---- metrics ---- */

static double gauge_nats_connected(void *arg)
{
    return rt_nats_is_connected(((notify_service *)arg)->nats) ? 1 : 0;
}

static double gauge_postgres_up(void *arg)
{
    return rt_pg_pool_healthy(((notify_service *)arg)->pool) ? 1 : 0;
}

static double gauge_queue(void *arg)
{
    return (double)rt_workers_queued(((notify_service *)arg)->workers);
}

static void register_metrics(notify_service *svc)
{
    rt_metrics *m = svc->metrics;
    char labels[64];

    for (int o = 0; o < OUT_COUNT; o++) {
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_names[o]);
        svc->events[o] = rt_metrics_counter(m, "unpuzzle_notify_events_total",
                                            "EVENTS messages by outcome.", labels);
    }
    for (int r = 0; r < LIST_COUNT; r++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", list_result_names[r]);
        svc->list_results[r] = rt_metrics_counter(m, "unpuzzle_notify_list_total",
                                                  "notify.v1.list requests by result.", labels);
    }
    svc->notifications = rt_metrics_counter(m, "unpuzzle_notify_notifications_total",
                                            "Notifications stored (one per recipient).", NULL);
    svc->reads = rt_metrics_counter(m, "unpuzzle_notify_reads_total",
                                    "Notifications named by read receipts of their user.", NULL);
    svc->room_messages_event = rt_metrics_counter(
        m, "unpuzzle_notify_room_messages_total",
        "Room messages the ROOMS stream acknowledged, by path.", "path=\"event\"");
    svc->room_messages_sweep = rt_metrics_counter(
        m, "unpuzzle_notify_room_messages_total",
        "Room messages the ROOMS stream acknowledged, by path.", "path=\"sweep\"");
    svc->room_messages_read = rt_metrics_counter(
        m, "unpuzzle_notify_room_messages_total",
        "Room messages the ROOMS stream acknowledged, by path.", "path=\"read\"");
    svc->publish_failures =
        rt_metrics_counter(m, "unpuzzle_notify_publish_failures_total",
                           "Batches of room messages not (all) acknowledged; retried.", NULL);
    svc->event_seconds = rt_metrics_histogram(
        m, "unpuzzle_notify_event_duration_seconds", "Time to process one event.", NULL,
        rt_metrics_latency_buckets, rt_metrics_latency_buckets_count);
    svc->list_seconds = rt_metrics_histogram(
        m, "unpuzzle_notify_rpc_duration_seconds", "Time from request receipt to reply.",
        "rpc=\"list\"", rt_metrics_latency_buckets, rt_metrics_latency_buckets_count);
    svc->unpublished = rt_metrics_gauge(
        m, "unpuzzle_notify_unpublished",
        "Stored notifications not yet in the ROOMS stream (as of the last sweep).", NULL);
    rt_metrics_gauge_fn(m, "unpuzzle_notify_nats_connected", "1 when connected to NATS.", NULL,
                        gauge_nats_connected, svc);
    rt_metrics_gauge_fn(m, "unpuzzle_notify_postgres_up",
                        "1 when the last PostgreSQL connection attempt succeeded.", NULL,
                        gauge_postgres_up, svc);
    rt_metrics_gauge_fn(m, "unpuzzle_notify_queue_depth", "List requests waiting for a worker.",
                        NULL, gauge_queue, svc);
}

/* ---- lifecycle ---- */

rt_status notify_service_start(notify_service **out, const notify_config *cfg, rt_metrics *metrics)
{
    notify_service *svc = rt_calloc(1, sizeof(*svc));
    rt_status s;

    svc->config = cfg;
    svc->metrics = metrics;
    atomic_init(&svc->draining, false);
    atomic_init(&svc->consumer_ready, false);
    if ((s = rt_pg_pool_create(&svc->pool, cfg->database_url, (int)cfg->pg_pool_size)) != RT_OK)
        goto fail;
    notify_store_create(&svc->store, svc->pool, (int)cfg->db_timeout_ms);
    s = rt_workers_create(&svc->workers, (int)cfg->workers, (size_t)cfg->queue_max, run_list,
                          discard_list, svc);
    if (s != RT_OK)
        goto fail;
    register_metrics(svc);

    rt_nats_options no = {.url = cfg->nats_url,
                          .name = "notification-dispatcher",
                          .user = cfg->nats_user,
                          .password = cfg->nats_password,
                          .creds_file = cfg->nats_creds_file};
    if ((s = rt_nats_connect(&svc->nats, &no)) != RT_OK ||
        (s = notify_publisher_create(&svc->pub_events, svc->nats, (int)cfg->publish_timeout_ms)) !=
            RT_OK ||
        (s = notify_publisher_create(&svc->pub_sweep, svc->nats, (int)cfg->publish_timeout_ms)) !=
            RT_OK)
        goto fail;
    natsStatus ns =
        natsConnection_QueueSubscribe(&svc->sub_list, rt_nats_connection(svc->nats),
                                      NOTIFY_SUBJECT_LIST, NOTIFY_QUEUE_GROUP, on_list, svc);
    if (ns != NATS_OK) {
        s = RT_NATS_ERR(ns, NOTIFY_SUBJECT_LIST);
        goto fail;
    }
    notify_service_tick(svc);
    *out = svc;
    return RT_OK;
fail:
    notify_service_stop(svc);
    return s;
}

static void sweep(notify_service *svc)
{
    int64_t count = 0;
    rt_status st = deliver(svc, svc->pub_sweep, NULL, NULL, svc->room_messages_sweep);
    if (st != RT_OK)
        rt_log_debug("sweep stopped early", "{s:s}", "error", rt_error_message());
    if (notify_store_unpublished(&count, svc->store) == RT_OK)
        rt_gauge_set(svc->unpublished, count);
}

void notify_service_tick(notify_service *svc)
{
    if (atomic_load(&svc->draining) || !rt_nats_is_connected(svc->nats))
        return;
    if (!svc->streams_ready) {
        rt_stream_spec events, rooms;
        rt_stream_spec_events(&events, svc->config->events_max_age_s,
                              svc->config->events_duplicate_window_s);
        rt_stream_spec_rooms(&rooms, svc->config->rooms_max_age_s, svc->config->rooms_max_per_room,
                             svc->config->rooms_duplicate_window_s);
        if (rt_nats_ensure_stream(svc->nats, &events) != RT_OK ||
            rt_nats_ensure_stream(svc->nats, &rooms) != RT_OK) {
            rt_log_last_error("EVENTS or ROOMS stream not ready; retrying");
            return;
        }
        svc->streams_ready = true;
    }
    if (!svc->consumer) {
        rt_consumer_options co = {.stream = "EVENTS",
                                  .durable = NOTIFY_DURABLE,
                                  .filter_subject = "evt.v1.>",
                                  .batch = (int)svc->config->batch,
                                  .ack_wait_ms = (int)svc->config->ack_wait_ms,
                                  .nak_delay_ms = (int)svc->config->retry_delay_ms,
                                  .handler = on_events,
                                  .arg = svc};
        if (rt_consumer_start(&svc->consumer, svc->nats, &co) != RT_OK)
            rt_log_last_error("event consumer not started");
    }
    if (svc->consumer && !atomic_load(&svc->consumer_ready)) {
        /* The consumer thread creates the durable; ready once it exists. */
        jsConsumerInfo *ci = NULL;
        if (js_GetConsumerInfo(&ci, rt_nats_jetstream(svc->nats), "EVENTS", NOTIFY_DURABLE, NULL,
                               NULL) == NATS_OK)
            atomic_store(&svc->consumer_ready, true);
        jsConsumerInfo_Destroy(ci);
    }
    uint64_t now = rt_time_mono_ns();
    if (now - svc->last_sweep_ns >= (uint64_t)svc->config->sweep_interval_ms * 1000000u) {
        svc->last_sweep_ns = now;
        sweep(svc);
    }
}

bool notify_service_ready(void *arg, char *why, size_t why_size)
{
    notify_service *svc = arg;
    if (atomic_load(&svc->draining)) {
        snprintf(why, why_size, "draining");
        return false;
    }
    if (!rt_nats_is_connected(svc->nats)) {
        snprintf(why, why_size, "NATS not connected");
        return false;
    }
    if (!svc->streams_ready) {
        snprintf(why, why_size, "EVENTS/ROOMS streams not ready");
        return false;
    }
    if (!atomic_load(&svc->consumer_ready)) {
        snprintf(why, why_size, "EVENTS consumer not ready");
        return false;
    }
    if (!rt_pg_pool_healthy(svc->pool)) {
        snprintf(why, why_size, "PostgreSQL unreachable");
        return false;
    }
    return true;
}

bool notify_service_failed(notify_service *svc)
{
    return rt_nats_closed_for_good(svc->nats);
}

void notify_service_stop(notify_service *svc)
{
    if (!svc)
        return;
    atomic_store(&svc->draining, true);
    /* Stop taking requests first; what is queued still gets its answer. */
    if (svc->sub_list)
        natsSubscription_Unsubscribe(svc->sub_list);
    rt_workers_destroy(svc->workers);
    rt_consumer_stop(svc->consumer);
    natsSubscription_Destroy(svc->sub_list);
    notify_publisher_destroy(svc->pub_events);
    notify_publisher_destroy(svc->pub_sweep);
    if (svc->nats)
        rt_nats_close(svc->nats, (int)svc->config->drain_ms);
    notify_store_destroy(svc->store);
    rt_pg_pool_destroy(svc->pool);
    free(svc);
}
