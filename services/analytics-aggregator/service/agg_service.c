#include "agg_service.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg_engine.h"
#include "agg_events.h"
#include "agg_presence.h"
#include "agg_store.h"
#include "agg_writer.h"
#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_map.h"
#include "rt_names.h"
#include "rt_nats.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_time.h"

#define MAX_PARTITIONS 1024
#define HEARTBEAT_MS 1000
#define LIVE_MS 5000            /* a replica unseen this long is gone */
#define PRUNE_MS 60000          /* engine pruning and presence expiry */
#define FETCH_WAIT_MS 50        /* longest wait for events: bounds RPC and publish latency */
#define GATHER_MIN 64           /* fewer queued than this: let a batch gather first */
#define GATHER_MS 2             /* ... for this long (the latency it adds to an event) */
#define MAX_ACK_PENDING 2000000 /* unacked events in flight: a checkpoint period's worth */
#define SUBJECT_SNAPSHOT "analytics.v1.snapshot"
#define SUBJECT_PRESENCE "presence.v1.edge.*"

/* ---- configuration ---- */

static bool check_clock(const char *value, char *why, size_t why_size)
{
    if (strcmp(value, "wall") == 0 || strcmp(value, "event") == 0)
        return true;
    snprintf(why, why_size, "must be wall or event");
    return false;
}

static bool check_replica_id(const char *value, char *why, size_t why_size)
{
    if (!*value || rt_id_valid(value))
        return true;
    snprintf(why, why_size, "must match [A-Za-z0-9_-]{1,64}");
    return false;
}

const rt_config_var agg_service_config_vars[] = {
    RT_CFG_NATS_VARS(agg_service_config),
    RT_CFG_STR(agg_service_config, database_url, "DATABASE_URL", NULL, RT_CFG_REQUIRED,
               rt_config_check_postgres_url, "PostgreSQL connection URL (checkpoints)"),
    RT_CFG_INT(agg_service_config, admin_port, "ADMIN_PORT", "9102", 0, 0, 65535,
               "port of /healthz, /readyz, /metrics (0 picks a free port)"),
    RT_CFG_STR(agg_service_config, log_level, "LOG_LEVEL", "info", 0, rt_config_check_log_level,
               "debug, info, warn or error"),
    RT_CFG_INT(agg_service_config, window_s, "ANALYTICS_WINDOW_S", "3600", 0, 1, 31536000,
               "the sliding window W, seconds"),
    RT_CFG_INT(agg_service_config, lateness_s, "ANALYTICS_LATENESS_S", "120", 0, 0, 86400,
               "events further behind their course's latest are late, seconds"),
    RT_CFG_INT(agg_service_config, future_s, "ANALYTICS_FUTURE_S", "300", 0, 0, 86400,
               "wall clock mode: events further ahead of the wall clock are rejected, seconds"),
    RT_CFG_INT(agg_service_config, retention_s, "ANALYTICS_RETENTION_S", "2678400", 0, 1, 315360000,
               "how long event ids are remembered against duplicates, seconds"),
    RT_CFG_STR(agg_service_config, clock, "ANALYTICS_CLOCK", "wall", 0, check_clock,
               "wall (live) or event (replays and tests: end = latest occurred_at)"),
    RT_CFG_INT(agg_service_config, publish_interval_ms, "ANALYTICS_PUBLISH_INTERVAL_MS", "1000", 0,
               50, 3600000, "at most one metrics update per course this often"),
    RT_CFG_INT(agg_service_config, checkpoint_ms, "ANALYTICS_CHECKPOINT_MS", "1000", 0, 10, 600000,
               "changed courses are checkpointed (and events acked) this often"),
    RT_CFG_INT(agg_service_config, partitions, "ANALYTICS_PARTITIONS", "16", 0, 1, MAX_PARTITIONS,
               "course partitions shared by the replicas (keep it above the replica count)"),
    RT_CFG_STR(agg_service_config, replica_id, "ANALYTICS_REPLICA_ID", "", 0, check_replica_id,
               "this replica's id (default: host name); unique per replica"),
    RT_CFG_INT(agg_service_config, batch, "ANALYTICS_BATCH", "1000", 0, 1, 100000,
               "events fetched at once"),
    RT_CFG_INT(agg_service_config, events_max_age_s, "EVENTS_MAX_AGE_S", "604800", 0, 60, 31536000,
               "retention of the EVENTS stream, seconds"),
    RT_CFG_INT(agg_service_config, events_duplicate_window_s, "EVENTS_DUPLICATE_WINDOW_S", "120", 0,
               1, 86400, "JetStream dedupe window of Nats-Msg-Id on EVENTS, seconds"),
    RT_CFG_INT(agg_service_config, rooms_max_age_s, "ROOMS_MAX_AGE_S", "86400", 0, 60, 31536000,
               "room history kept in the ROOMS stream, seconds (if this service creates it)"),
    RT_CFG_INT(agg_service_config, rooms_max_per_room, "ROOMS_MAX_PER_ROOM", "1000", 0, 1, 1000000,
               "room history kept per room, messages (if this service creates it)"),
    RT_CFG_INT(agg_service_config, rooms_duplicate_window_s, "ROOMS_DUPLICATE_WINDOW_S", "120", 0,
               1, 86400, "JetStream dedupe window of Nats-Msg-Id on ROOMS, seconds"),
};
const size_t agg_service_config_var_count =
    sizeof(agg_service_config_vars) / sizeof(agg_service_config_vars[0]);

static void engine_config(agg_config *out, const agg_service_config *c)
{
    agg_config_defaults(out);
    out->clock = strcmp(c->clock, "event") == 0 ? AGG_CLOCK_EVENT : AGG_CLOCK_WALL;
    out->window_s = c->window_s;
    out->lateness_s = c->lateness_s;
    out->future_s = c->future_s;
    out->retention_s = c->retention_s;
    /* Restarts skip applied events by stream sequence, and JetStream drops
     * a repeated Nats-Msg-Id within its window: the lateness window's ids
     * need not be checkpointed (they are most of a busy course's state). */
    out->checkpoint_recent_ids = c->events_duplicate_window_s < c->lateness_s;
}

rt_status agg_service_config_load(agg_service_config *c)
{
    rt_status s = rt_config_load(c, agg_service_config_vars, agg_service_config_var_count);
    if (s != RT_OK)
        return s;
    agg_config ec;
    engine_config(&ec, c);
    agg_engine *probe = NULL;
    if ((s = agg_engine_create(&probe, &ec)) != RT_OK) { /* names the field at fault */
        agg_service_config_release(c);
        return s;
    }
    agg_engine_destroy(probe);
    if (!c->replica_id[0]) {
        free(c->replica_id);
        c->replica_id = rt_config_host_id("analytics");
    }
    return RT_OK;
}

void agg_service_config_release(agg_service_config *c)
{
    rt_config_release(c, agg_service_config_vars, agg_service_config_var_count);
}

/* ---- state ---- */

typedef enum inbox_kind { INBOX_PRESENCE, INBOX_SNAPSHOT } inbox_kind;

typedef struct inbox_item {
    inbox_kind kind;
    natsMsg *msg;
} inbox_item;

/* What was last published / checkpointed for a course. */
typedef struct course_marks {
    uint64_t checkpointed_changes;
    uint64_t published_changes;
    uint64_t presence_digest;
    bool published;
} course_marks;

/* Parts of a multi-part PresenceUpdate being assembled, per edge. */
typedef struct presence_parts {
    char instance[64];
    uint64_t sequence;
    uint32_t parts, received;
    Unpuzzle__Rt__V1__PresenceUpdate **got; /* by part */
} presence_parts;

typedef struct agg_metrics_set {
    rt_counter *events[AGG_INVALID + 1]; /* by outcome */
    rt_counter *skipped_other;           /* events of courses owned elsewhere */
    rt_counter *checkpoints, *checkpoint_failures;
    rt_counter *updates_published, *alerts_published, *publish_failures;
    rt_counter *snapshots, *snapshots_forwarded;
    rt_counter *presence_updates;
    rt_gauge *partitions_owned, *courses;
    rt_histogram *staleness; /* event occurred_at -> its metrics published (wall mode) */
} agg_metrics_set;

struct agg_service {
    const agg_service_config *config;
    agg_metrics_set m;
    rt_nats *nats;
    jsCtx *js_async;    /* room publishes: async, acks checked in the background */
    agg_store *store;   /* shared with the writer: agg_store_lock() */
    agg_writer *writer; /* commits checkpoints off this thread */
    agg_engine *engine;
    agg_presence *presence;
    rt_strmap *marks;          /* course_id -> course_marks */
    rt_strmap *presence_parts; /* edge_id -> presence_parts */

    int partitions;
    atomic_bool owned[MAX_PARTITIONS]; /* read by NATS threads (snapshot routing) */
    uint64_t part_seq[MAX_PARTITIONS]; /* highest stream seq considered, per partition */
    natsSubscription *sub_part[MAX_PARTITIONS];
    int n_owned;

    natsSubscription *pull; /* durable consumer, NULL while nothing is owned */
    char durable[96];
    uint64_t reader_pos;  /* last stream sequence read */
    natsMsg *ack_pending; /* acks everything up to it (AckAll) after a checkpoint */
    bool stream_ready;

    natsSubscription *sub_snapshot, *sub_presence;
    pthread_mutex_t inbox_lock;
    inbox_item *inbox;
    size_t inbox_len, inbox_cap;

    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    atomic_bool ready_nats, ready_pg, ready_streams;
    int64_t last_checkpoint_ms, last_publish_ms, last_heartbeat_ms, last_prune_ms;
    int64_t checkpoint_every_ms; /* ANALYTICS_CHECKPOINT_MS, longer while checkpoints are slow */
    uint64_t update_counter;
};

static course_marks *marks_of(agg_service *svc, const char *course_id)
{
    course_marks *m = rt_strmap_get(svc->marks, course_id);
    if (!m) {
        m = rt_calloc(1, sizeof(*m));
        rt_strmap_put(svc->marks, course_id, m);
    }
    return m;
}

static int partition_of(const agg_service *svc, const char *course_id)
{
    return (int)(agg_course_hash(course_id) % (uint32_t)svc->partitions);
}

/* ---- NATS callbacks (NATS threads): queue work for the engine thread ---- */

static void inbox_post(agg_service *svc, inbox_kind kind, natsMsg *msg)
{
    pthread_mutex_lock(&svc->inbox_lock);
    if (svc->inbox_len == svc->inbox_cap) {
        svc->inbox_cap = svc->inbox_cap ? svc->inbox_cap * 2 : 64;
        svc->inbox = rt_realloc(svc->inbox, svc->inbox_cap * sizeof(inbox_item));
    }
    svc->inbox[svc->inbox_len++] = (inbox_item){kind, msg};
    pthread_mutex_unlock(&svc->inbox_lock);
}

static void on_presence(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    inbox_post(closure, INBOX_PRESENCE, msg);
}

/* A snapshot request: answered by the engine thread when the course is ours,
 * else handed to the owner of its partition. */
static void on_snapshot(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    agg_service *svc = closure;
    (void)sub;
    Unpuzzle__Rt__V1__SnapshotRequest *req = unpuzzle__rt__v1__snapshot_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    const char *reply = natsMsg_GetReply(msg);
    if (!req || !reply || !rt_id_valid(req->course_id)) {
        if (req)
            unpuzzle__rt__v1__snapshot_request__free_unpacked(req, NULL);
        natsMsg_Destroy(msg); /* nothing sensible to answer: the caller times out */
        return;
    }
    int p = partition_of(svc, req->course_id);
    unpuzzle__rt__v1__snapshot_request__free_unpacked(req, NULL);
    bool forwarded_here = strcmp(natsMsg_GetSubject(msg), SUBJECT_SNAPSHOT) != 0;
    if (atomic_load(&svc->owned[p]) || forwarded_here) {
        inbox_post(svc, INBOX_SNAPSHOT, msg);
        return;
    }
    char subject[64];
    snprintf(subject, sizeof(subject), SUBJECT_SNAPSHOT ".p%d", p);
    natsConnection_PublishRequest(nc, subject, reply, natsMsg_GetData(msg),
                                  natsMsg_GetDataLength(msg));
    rt_counter_inc(svc->m.snapshots_forwarded);
    natsMsg_Destroy(msg);
}

/* ---- room publishing (engine thread) ---- */

#define PUBLISH_ATTEMPTS 3

/* A room publish JetStream did not confirm: sent again (the same bytes and
 * Nats-Msg-Id, so a publish that did land is stored once) up to
 * PUBLISH_ATTEMPTS times, then counted and logged. */
static void on_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    agg_service *svc = closure;
    const char *tries = NULL;
    int attempt = 1;
    if (pae->Msg && natsMsgHeader_Get(pae->Msg, "Unpuzzle-Attempt", &tries) == NATS_OK && tries)
        attempt = atoi(tries);
    if (pae->Msg && attempt < PUBLISH_ATTEMPTS && !atomic_load(&svc->stop)) {
        char next[16];
        snprintf(next, sizeof(next), "%d", attempt + 1);
        if (natsMsgHeader_Set(pae->Msg, "Unpuzzle-Attempt", next) == NATS_OK &&
            js_PublishMsgAsync(js, &pae->Msg, NULL) == NATS_OK)
            return;
    }
    rt_counter_inc(svc->m.publish_failures);
    rt_log_warn("room publish failed", "{s:s, s:s, s:i}", "subject",
                pae->Msg ? natsMsg_GetSubject(pae->Msg) : "", "error", natsStatus_GetText(pae->Err),
                "attempts", attempt);
}

/* Publishes a RoomMessage to rt.v1.room.<kind>.<id> through JetStream with
 * Nats-Msg-Id = msg_id, so a replay after a crash is stored once. */
static void publish_room(agg_service *svc, const char *room_name,
                         const Unpuzzle__Rt__V1__RoomMessage *rm, const char *msg_id)
{
    rt_room room;
    char subject[RT_ROOM_SUBJECT_MAX];
    if (rt_room_parse(&room, room_name) != RT_OK)
        return;
    rt_room_subject(subject, sizeof(subject), "rt.v1.room", &room);
    size_t len = unpuzzle__rt__v1__room_message__get_packed_size(rm);
    uint8_t *buf = rt_malloc(len ? len : 1);
    unpuzzle__rt__v1__room_message__pack(rm, buf);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    natsStatus s = js_PublishAsync(svc->js_async, subject, buf, (int)len, &po);
    free(buf);
    if (s != NATS_OK) {
        rt_counter_inc(svc->m.publish_failures);
        rt_log_warn("room publish failed", "{s:s, s:s}", "subject", subject, "error",
                    natsStatus_GetText(s));
    }
}

typedef struct room_list {
    char **rooms;
    size_t n, cap;
} room_list;

static void add_instructor(void *arg, const char *user_id)
{
    room_list *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->rooms = rt_realloc(l->rooms, l->cap * sizeof(char *));
    }
    l->rooms[l->n++] = rt_asprintf("instructor:%s", user_id);
}

static void room_list_free(room_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->rooms[i]);
    free(l->rooms);
}

static void set_now(Google__Protobuf__Timestamp *ts, int64_t ms)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = ms / 1000;
    ts->nanos = (int32_t)(ms % 1000) * 1000000;
}

/* Confusions, questions and purchases reach the instructors at once
 * ("instant confusion alerts", "real-time purchase notifications"). */
static void publish_alert(agg_service *svc, const agg_event *ev)
{
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Google__Protobuf__Timestamp ts;
    set_now(&ts, rt_time_now_ms());
    rm.timestamp = &ts;
    rm.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_CREATE;
    rm.event_id = (char *)ev->event_id;
    static const struct {
        agg_event_kind kind;
        int type, payload_case;
    } alerts[] = {
        {AGG_EVENT_CONFUSION_CREATED,
         UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_CONFUSION,
         UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED},
        {AGG_EVENT_QUESTION_CREATED,
         UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_QUESTION,
         UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_QUESTION_CREATED},
        {AGG_EVENT_PURCHASE_COMPLETED,
         UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_PURCHASE,
         UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_PURCHASE},
    };
    size_t a = 0;
    while (a < sizeof(alerts) / sizeof(alerts[0]) && alerts[a].kind != ev->kind)
        a++;
    if (a == sizeof(alerts) / sizeof(alerts[0]))
        return;
    rm.type = alerts[a].type;
    rm.payload_case = alerts[a].payload_case;
    /* The payload members share one pointer in the union. */
    rm.confusion_created = (Unpuzzle__Rt__V1__ConfusionCreated *)ev->msg;
    const ProtobufCFieldDescriptor *user =
        protobuf_c_message_descriptor_get_field_by_name(ev->msg->descriptor, "user_id");
    rm.user_id = user ? *(char **)((char *)ev->msg + user->offset) : "";
    room_list rooms = {0};
    agg_engine_each_instructor(svc->engine, ev->course_id, add_instructor, &rooms);
    for (size_t i = 0; i < rooms.n; i++) {
        char *id = rt_asprintf("alert-%s-%s", rooms.rooms[i] + strlen("instructor:"), ev->event_id);
        publish_room(svc, rooms.rooms[i], &rm, id);
        free(id);
        rt_counter_inc(svc->m.alerts_published);
    }
    room_list_free(&rooms);
}

/* ---- presence ---- */

typedef struct digest_walk {
    uint64_t h;
} digest_walk;

static void digest_entry(void *arg, const agg_presence_entry *e)
{
    digest_walk *w = arg;
    /* Order-independent: a sum of per-entry FNV hashes. */
    uint64_t h = 1469598103934665603ull;
    for (const char *parts[] = {e->user_id, "\x1f", e->lesson_id}, **p = parts; p < parts + 3; p++)
        for (const unsigned char *c = (const unsigned char *)*p; *c; c++)
            h = (h ^ *c) * 1099511628211ull;
    w->h += h ^ (uint64_t)e->since_ns;
}

static uint64_t presence_digest(agg_service *svc, const char *course_id, int64_t now_ms)
{
    digest_walk w = {0};
    agg_presence_each(svc->presence, course_id, now_ms, digest_entry, &w);
    return w.h;
}

static void free_presence_parts(presence_parts *pp)
{
    for (uint32_t i = 0; i < pp->parts; i++)
        if (pp->got[i])
            unpuzzle__rt__v1__presence_update__free_unpacked(pp->got[i], NULL);
    free(pp->got);
    pp->got = NULL;
    pp->parts = pp->received = 0;
}

static void apply_presence(agg_service *svc, const Unpuzzle__Rt__V1__PresenceUpdate *u)
{
    if (agg_presence_apply(svc->presence, u, rt_time_now_ms()) != RT_OK)
        rt_log_warn("presence update ignored", "{s:s}", "error", rt_error_message());
    else
        rt_counter_inc(svc->m.presence_updates);
}

/* An edge's update comes in `parts` messages of one sequence: the whole set
 * replaces the edge's presence once every part is here. */
static void on_presence_msg(agg_service *svc, natsMsg *msg)
{
    Unpuzzle__Rt__V1__PresenceUpdate *u = unpuzzle__rt__v1__presence_update__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (!u) {
        rt_log_warn("presence update is not a PresenceUpdate", "{s:s}", "subject",
                    natsMsg_GetSubject(msg));
        return;
    }
    if (u->parts <= 1 || u->parts > 4096 || u->part >= u->parts || !rt_id_valid(u->edge_id)) {
        apply_presence(svc, u);
        unpuzzle__rt__v1__presence_update__free_unpacked(u, NULL);
        return;
    }
    presence_parts *pp = rt_strmap_get(svc->presence_parts, u->edge_id);
    if (!pp) {
        pp = rt_calloc(1, sizeof(*pp));
        rt_strmap_put(svc->presence_parts, u->edge_id, pp);
    }
    if (pp->sequence != u->sequence || strcmp(pp->instance, u->instance) != 0 ||
        pp->parts != u->parts) {
        free_presence_parts(pp);
        pp->sequence = u->sequence;
        snprintf(pp->instance, sizeof(pp->instance), "%s", u->instance);
        pp->parts = u->parts;
        pp->got = rt_calloc(u->parts, sizeof(*pp->got));
    }
    if (pp->got[u->part]) {
        unpuzzle__rt__v1__presence_update__free_unpacked(u, NULL);
        return;
    }
    pp->got[u->part] = u;
    if (++pp->received < pp->parts)
        return;
    /* All here: one update with every part's entries (borrowed pointers). */
    Unpuzzle__Rt__V1__PresenceUpdate whole = *pp->got[0];
    size_t total = 0;
    for (uint32_t i = 0; i < pp->parts; i++)
        total += pp->got[i]->n_entries;
    whole.entries = rt_calloc(total + 1, sizeof(*whole.entries));
    whole.n_entries = 0;
    for (uint32_t i = 0; i < pp->parts; i++)
        for (size_t k = 0; k < pp->got[i]->n_entries; k++)
            whole.entries[whole.n_entries++] = pp->got[i]->entries[k];
    apply_presence(svc, &whole);
    free(whole.entries);
    free_presence_parts(pp);
}

/* ---- snapshots ---- */

static void reply_metrics(agg_service *svc, const char *reply,
                          const Unpuzzle__Rt__V1__CourseMetrics *m)
{
    size_t len = unpuzzle__rt__v1__course_metrics__get_packed_size(m);
    uint8_t *buf = rt_malloc(len ? len : 1);
    unpuzzle__rt__v1__course_metrics__pack(m, buf);
    natsConnection_Publish(rt_nats_connection(svc->nats), reply, buf, (int)len);
    free(buf);
}

static void on_snapshot_msg(agg_service *svc, natsMsg *msg)
{
    Unpuzzle__Rt__V1__SnapshotRequest *req = unpuzzle__rt__v1__snapshot_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (!req)
        return;
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    if (agg_engine_compute(&m, svc->engine, req->course_id, rt_time_now_ms(), svc->presence) ==
        RT_OK) {
        reply_metrics(svc, natsMsg_GetReply(msg), m);
        agg_metrics_free(m);
    } else {
        /* A course nothing has happened in yet: its empty figures. */
        Unpuzzle__Rt__V1__CourseMetrics empty = UNPUZZLE__RT__V1__COURSE_METRICS__INIT;
        empty.course_id = req->course_id;
        empty.window_s = (uint32_t)svc->config->window_s;
        reply_metrics(svc, natsMsg_GetReply(msg), &empty);
    }
    rt_counter_inc(svc->m.snapshots);
    unpuzzle__rt__v1__snapshot_request__free_unpacked(req, NULL);
}

static void handle_inbox(agg_service *svc)
{
    pthread_mutex_lock(&svc->inbox_lock);
    inbox_item *items = svc->inbox;
    size_t n = svc->inbox_len;
    svc->inbox = NULL;
    svc->inbox_len = svc->inbox_cap = 0;
    pthread_mutex_unlock(&svc->inbox_lock);
    for (size_t i = 0; i < n; i++) {
        if (items[i].kind == INBOX_PRESENCE)
            on_presence_msg(svc, items[i].msg);
        else
            on_snapshot_msg(svc, items[i].msg);
        natsMsg_Destroy(items[i].msg);
    }
    free(items);
}

/* ---- partitions ---- */

typedef struct load_walk {
    agg_service *svc;
    int partition;
    size_t loaded;
} load_walk;

static void load_course(void *arg, const char *course_id, const uint8_t *state, size_t len,
                        uint64_t stream_seq)
{
    load_walk *w = arg;
    char loaded_id[RT_ID_MAX + 1];
    (void)stream_seq;
    if (partition_of(w->svc, course_id) != w->partition)
        return;
    if (agg_engine_load_course(w->svc->engine, state, len, loaded_id) != RT_OK) {
        rt_log_error("course checkpoint unreadable; the course starts empty", "{s:s, s:s}",
                     "course_id", course_id, "error", rt_error_message());
        return;
    }
    agg_course_info info;
    if (agg_engine_course_info(&info, w->svc->engine, loaded_id) == RT_OK) {
        course_marks *m = marks_of(w->svc, loaded_id);
        m->checkpointed_changes = info.changes;
        m->published_changes = info.changes;
    }
    w->loaded++;
}

static void checkpoint_settle(agg_service *svc);

static void drop_consumer(agg_service *svc)
{
    /* A checkpoint being written holds a message of this subscription. */
    checkpoint_settle(svc);
    if (svc->ack_pending) {
        natsMsg_Destroy(svc->ack_pending); /* not acked: redelivered to whoever reads next */
        svc->ack_pending = NULL;
    }
    if (svc->pull) {
        natsSubscription_Destroy(svc->pull); /* the durable stays: recreated at the right seq */
        svc->pull = NULL;
    }
}

typedef struct course_ids {
    char **ids;
    size_t n, cap;
} course_ids;

static void collect_course(void *arg, const char *course_id)
{
    course_ids *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->ids = rt_realloc(l->ids, l->cap * sizeof(char *));
    }
    l->ids[l->n++] = rt_strdup(course_id);
}

/* Forgets the partition's courses (in memory only). */
static void forget_partition(agg_service *svc, int p)
{
    course_ids l = {0};
    agg_engine_each_course(svc->engine, collect_course, &l);
    for (size_t i = 0; i < l.n; i++) {
        if (partition_of(svc, l.ids[i]) == p) {
            agg_engine_drop_course(svc->engine, l.ids[i]);
            free(rt_strmap_remove(svc->marks, l.ids[i]));
        }
        free(l.ids[i]);
    }
    free(l.ids);
    if (svc->sub_part[p]) {
        natsSubscription_Unsubscribe(svc->sub_part[p]);
        natsSubscription_Destroy(svc->sub_part[p]);
        svc->sub_part[p] = NULL;
    }
    atomic_store(&svc->owned[p], false);
    svc->n_owned--;
    rt_gauge_set(svc->m.partitions_owned, svc->n_owned);
}

/* The session (and every lock) is gone: nothing is ours any more. What was
 * applied since the last checkpoint is re-read by whoever owns it next. */
static void lose_everything(agg_service *svc)
{
    for (int p = 0; p < svc->partitions; p++)
        if (atomic_load(&svc->owned[p]))
            forget_partition(svc, p);
    drop_consumer(svc);
    rt_log_warn("PostgreSQL session lost: every partition released", NULL);
}

static bool acquire_partition(agg_service *svc, int p)
{
    uint64_t seq = 0;
    load_walk w = {.svc = svc, .partition = p};
    if (agg_store_partition_seq(svc->store, p, &seq) != RT_OK ||
        agg_store_load_partition(svc->store, p, load_course, &w) != RT_OK) {
        rt_log_last_error("partition could not be loaded; released");
        agg_store_release(svc->store, p);
        return false;
    }
    svc->part_seq[p] = seq;
    char subject[64];
    snprintf(subject, sizeof(subject), SUBJECT_SNAPSHOT ".p%d", p);
    natsConnection_Subscribe(&svc->sub_part[p], rt_nats_connection(svc->nats), subject, on_snapshot,
                             svc);
    atomic_store(&svc->owned[p], true);
    svc->n_owned++;
    rt_gauge_set(svc->m.partitions_owned, svc->n_owned);
    rt_log_info("partition taken", "{s:i, s:I, s:I}", "partition", p, "applied_seq",
                (json_int_t)seq, "courses", (json_int_t)w.loaded);
    return true;
}

static void checkpoint(agg_service *svc);

/* Keeps ceil(partitions / live replicas) partitions: takes free ones (a
 * dead replica's locks are free as soon as its session ends), gives back
 * extras after checkpointing them (a replica joined). Returns true when a
 * partition was taken (the reader may have to go back). */
static bool rebalance(agg_service *svc)
{
    int live = 1;
    agg_store_lock(svc->store);
    if (agg_store_heartbeat(svc->store, LIVE_MS, &live) != RT_OK) {
        atomic_store(&svc->ready_pg, false);
        bool lost = agg_store_session_lost(svc->store);
        agg_store_unlock(svc->store);
        if (lost)
            lose_everything(svc);
        return false;
    }
    atomic_store(&svc->ready_pg, true);
    int target = (svc->partitions + live - 1) / live;
    bool taken = false;
    int start = (int)(agg_course_hash(svc->config->replica_id) % (uint32_t)svc->partitions);
    for (int k = 0; k < svc->partitions && svc->n_owned < target; k++) {
        int p = (start + k) % svc->partitions;
        bool claimed = false;
        if (atomic_load(&svc->owned[p]))
            continue;
        if (agg_store_try_claim(svc->store, p, &claimed) != RT_OK)
            break;
        if (claimed && acquire_partition(svc, p))
            taken = true;
    }
    if (svc->n_owned > target) {
        agg_store_unlock(svc->store); /* the writer needs the session */
        checkpoint(svc);
        agg_store_lock(svc->store);
        for (int k = svc->partitions - 1; k >= 0 && svc->n_owned > target; k--) {
            int p = (start + k) % svc->partitions;
            if (!atomic_load(&svc->owned[p]))
                continue;
            forget_partition(svc, p);
            agg_store_release(svc->store, p);
            rt_log_info("partition handed over", "{s:i}", "partition", p);
        }
    }
    bool lost = agg_store_session_lost(svc->store);
    agg_store_unlock(svc->store);
    if (lost)
        lose_everything(svc);
    return taken;
}

/* (Re)creates the durable consumer at the oldest owned partition's
 * checkpoint: events before it are in every owned course's state. */
static void position_reader(agg_service *svc)
{
    uint64_t from = UINT64_MAX;
    for (int p = 0; p < svc->partitions; p++)
        if (atomic_load(&svc->owned[p]) && svc->part_seq[p] < from)
            from = svc->part_seq[p];
    if (from == UINT64_MAX)
        return;
    if (svc->pull && from >= svc->reader_pos)
        return;      /* already reading far enough back */
    checkpoint(svc); /* ack what we can before moving back */
    drop_consumer(svc);
    jsCtx *js = rt_nats_jetstream(svc->nats);
    jsErrCode jerr = 0;
    js_DeleteConsumer(js, "EVENTS", svc->durable, NULL, &jerr);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "EVENTS";
    so.Config.Durable = svc->durable;
    so.Config.AckPolicy = js_AckAll;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from + 1;
    /* Acks come once per checkpoint, for everything read before it: allow
     * a checkpoint period's worth of events in flight. (nats.c 3.4 does not
     * send a MaxAckPending <= 0: the server's default would be 1,000.) */
    so.Config.MaxAckPending = MAX_ACK_PENDING;
    so.Config.AckWait = (int64_t)60 * 1000000000;
    so.Config.FilterSubject = "evt.v1.>";
    so.ManualAck = true;
    /* A push consumer read with NextMsg: nats.c 3.4.1's pull Fetch can
     * overrun its array when messages are already queued (fixed upstream in
     * 3.10). The server never has more than MaxAckPending unacked, and the
     * buffer holds twice that, so nats.c never drops one (a drop here would
     * be acked by the next AckAll: a loss). */
    natsStatus s = js_SubscribeSync(&svc->pull, js, "evt.v1.>", NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(svc->pull, 2 * MAX_ACK_PENDING, 1024 * 1024 * 1024);
    if (s != NATS_OK) {
        rt_log_warn("EVENTS consumer not created; retrying", "{s:s, s:i}", "error",
                    natsStatus_GetText(s), "js_error", (int)jerr);
        svc->pull = NULL;
        return;
    }
    svc->reader_pos = from;
    rt_log_info("reading EVENTS", "{s:s, s:I}", "consumer", svc->durable, "from_seq",
                (json_int_t)(from + 1));
}

/* ---- events ---- */

static void apply_one(agg_service *svc, natsMsg *msg, uint64_t seq)
{
    const ProtobufCMessageDescriptor *d = agg_event_descriptor(natsMsg_GetSubject(msg));
    if (!d) {
        rt_counter_inc(svc->m.events[AGG_IGNORED]);
        return;
    }
    ProtobufCMessage *event = protobuf_c_message_unpack(d, NULL, (size_t)natsMsg_GetDataLength(msg),
                                                        (const uint8_t *)natsMsg_GetData(msg));
    agg_event ev;
    if (!event || agg_event_read(&ev, event) != RT_OK) {
        rt_counter_inc(svc->m.events[AGG_INVALID]);
        rt_log_warn("event ignored: invalid", "{s:s, s:I, s:s}", "subject", natsMsg_GetSubject(msg),
                    "seq", (json_int_t)seq, "error", event ? rt_error_message() : "not protobuf");
        if (event)
            protobuf_c_message_free_unpacked(event, NULL);
        return;
    }
    if (!ev.course_id) {
        rt_counter_inc(svc->m.events[AGG_IGNORED]);
        protobuf_c_message_free_unpacked(event, NULL);
        return;
    }
    int p = partition_of(svc, ev.course_id);
    agg_course_info info;
    bool applied_before =
        agg_engine_course_info(&info, svc->engine, ev.course_id) == RT_OK && seq <= info.stream_seq;
    if (!atomic_load(&svc->owned[p]) || seq <= svc->part_seq[p] || applied_before) {
        rt_counter_inc(svc->m.skipped_other);
        protobuf_c_message_free_unpacked(event, NULL);
        return;
    }
    agg_arrival arrival = {.wall_ms = rt_time_now_ms(), .stream_seq = seq};
    agg_outcome outcome = AGG_INVALID;
    agg_engine_apply(&outcome, svc->engine, event, &arrival);
    rt_counter_inc(svc->m.events[outcome]);
    if (outcome == AGG_APPLIED)
        publish_alert(svc, &ev);
    protobuf_c_message_free_unpacked(event, NULL);
}

/* Reads what is queued (up to ANALYTICS_BATCH), waiting up to
 * FETCH_WAIT_MS for the first; false when there was nothing to read. */
static bool read_batch(agg_service *svc)
{
    int queued = 0, count = 0;
    natsSubscription_GetPending(svc->pull, &queued, NULL);
    if (queued > 0 && queued < GATHER_MIN) {
        /* Taking events one by one as they arrive costs a thread wake-up
         * (and a futex handoff with nats.c's reader) per event: a third of
         * the CPU at 100k/s. A moment's wait turns them into batches. */
        nats_Sleep(GATHER_MS);
        natsSubscription_GetPending(svc->pull, &queued, NULL);
    }
    int want = queued > 0 ? queued : 1;
    if (want > (int)svc->config->batch)
        want = (int)svc->config->batch;
    for (; count < want; count++) {
        natsMsg *msg = NULL;
        natsStatus s = natsSubscription_NextMsg(&msg, svc->pull, count ? 1 : FETCH_WAIT_MS);
        if (s == NATS_TIMEOUT)
            break;
        if (s == NATS_SLOW_CONSUMER) {
            /* Cannot happen within MaxAckPending; if it does, events were
             * dropped that an AckAll would lose: start over from PostgreSQL. */
            rt_log_error("EVENTS consumer dropped messages; reloading from the checkpoints", NULL);
            lose_everything(svc);
            return false;
        }
        if (s != NATS_OK) {
            rt_log_warn("EVENTS read failed; consumer recreated", "{s:s}", "error",
                        natsStatus_GetText(s));
            drop_consumer(svc);
            nats_Sleep(200);
            return false;
        }
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
            natsMsg_Destroy(msg);
            continue;
        }
        uint64_t seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        if (seq > svc->reader_pos) { /* else redelivered: already read */
            apply_one(svc, msg, seq);
            svc->reader_pos = seq;
        }
        /* Keep the last message: acking it after the checkpoint acks all. */
        if (svc->ack_pending)
            natsMsg_Destroy(svc->ack_pending);
        svc->ack_pending = msg;
    }
    for (int p = 0; p < svc->partitions; p++)
        if (atomic_load(&svc->owned[p]) && svc->part_seq[p] < svc->reader_pos)
            svc->part_seq[p] = svc->reader_pos;
    return count > 0;
}

/* ---- checkpoints ---- */

typedef struct dirty_walk {
    agg_service *svc;
    agg_checkpoint *cp;
    rt_status status;
} dirty_walk;

static void serialize_dirty(void *arg, const char *course_id)
{
    dirty_walk *w = arg;
    agg_course_info info;
    if (w->status != RT_OK || agg_engine_course_info(&info, w->svc->engine, course_id) != RT_OK)
        return;
    course_marks *m = marks_of(w->svc, course_id);
    if (m->checkpointed_changes == info.changes && info.changes > 0)
        return;
    uint8_t *state = NULL;
    size_t len = 0;
    if ((w->status = agg_engine_save_course(&state, &len, w->svc->engine, course_id)) != RT_OK)
        return;
    agg_checkpoint_add_course(w->cp, course_id, info.stream_seq, info.changes, state, len);
}

/* What the writer reports back: the courses it made durable, or a failure
 * (their events stay unacked and they stay changed for the next one). */
static void checkpoint_done(agg_service *svc, agg_checkpoint *cp)
{
    if (cp->status == RT_OK) {
        for (size_t i = 0; i < cp->n_courses; i++) {
            course_marks *m = rt_strmap_get(svc->marks, cp->courses[i].course_id);
            if (m) /* else its partition was given up meanwhile */
                m->checkpointed_changes = cp->courses[i].changes;
        }
        rt_counter_inc(svc->m.checkpoints);
        if (cp->ack_failed)
            rt_log_warn("ack after checkpoint failed; redelivered events are skipped by seq", NULL);
    } else {
        rt_log_error("checkpoint failed; events stay unacked", "{s:s, s:I}", "error", cp->error,
                     "courses", (json_int_t)cp->n_courses);
        rt_counter_inc(svc->m.checkpoint_failures);
    }
    bool lost = cp->session_lost;
    agg_checkpoint_free(cp);
    if (lost)
        lose_everything(svc);
}

/* Applies the writer's result if it has finished. */
static void checkpoint_collect(agg_service *svc)
{
    agg_checkpoint *cp = agg_writer_take(svc->writer);
    if (cp)
        checkpoint_done(svc, cp);
}

/* Waits for the checkpoint being written and applies its result. */
static void checkpoint_settle(agg_service *svc)
{
    if (!svc->writer)
        return;
    agg_checkpoint *cp = agg_writer_wait(svc->writer);
    if (cp)
        checkpoint_done(svc, cp);
}

/* Serializes every changed course and every owned partition's position (a
 * consistent cut: this thread applies nothing meanwhile) and hands them to
 * the writer, which commits them in one transaction and then acks the
 * stream up to the cut. Nothing while the writer is still busy. */
static void checkpoint_start(agg_service *svc)
{
    if (!agg_writer_idle(svc->writer))
        return;
    int64_t started = rt_time_now_ms();
    svc->last_checkpoint_ms = started;
    if (!svc->n_owned)
        return;
    dirty_walk w = {.svc = svc, .cp = agg_checkpoint_new(), .status = RT_OK};
    agg_engine_each_course(svc->engine, serialize_dirty, &w);
    if (w.status != RT_OK) { /* cannot happen short of a bug: nothing acked */
        rt_log_last_error("checkpoint not serialized; events stay unacked");
        rt_counter_inc(svc->m.checkpoint_failures);
        agg_checkpoint_free(w.cp);
        return;
    }
    for (int p = 0; p < svc->partitions; p++)
        if (atomic_load(&svc->owned[p]))
            agg_checkpoint_add_partition(w.cp, p, svc->part_seq[p]);
    w.cp->ack = svc->ack_pending; /* everything read so far is in the cut */
    svc->ack_pending = NULL;
    agg_writer_submit(svc->writer, w.cp);
    /* Serializing costs this thread time in proportion to the state: keep
     * it to about a fifth, so a large state spaces checkpoints out rather
     * than slowing the reading of events. */
    int64_t took = rt_time_now_ms() - started;
    svc->checkpoint_every_ms = svc->config->checkpoint_ms;
    if (took * 4 > svc->checkpoint_every_ms)
        svc->checkpoint_every_ms = took * 4 < 10000 ? took * 4 : 10000;
}

/* A checkpoint of everything applied so far, durable on return (before the
 * reader moves, partitions are handed over, or the service stops). */
static void checkpoint(agg_service *svc)
{
    checkpoint_settle(svc);
    checkpoint_start(svc);
    checkpoint_settle(svc);
}

/* ---- metrics updates ---- */

static void publish_course(agg_service *svc, const char *course_id, int64_t now_ms)
{
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    if (agg_engine_compute(&m, svc->engine, course_id, now_ms, svc->presence) != RT_OK)
        return;
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Google__Protobuf__Timestamp ts;
    set_now(&ts, now_ms);
    rm.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_ANALYTICS;
    rm.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_UPDATE;
    rm.timestamp = &ts;
    rm.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_ANALYTICS;
    rm.analytics = m;
    char *event_id = rt_asprintf("metrics-%s-%s-%" PRIu64, svc->config->replica_id, course_id,
                                 ++svc->update_counter);
    rm.event_id = event_id;

    room_list rooms = {0};
    agg_engine_each_instructor(svc->engine, course_id, add_instructor, &rooms);
    for (size_t i = 0; i < rooms.n; i++) {
        char *id = rt_asprintf("%s-%zu", event_id, i);
        publish_room(svc, rooms.rooms[i], &rm, id);
        free(id);
    }
    /* Students of the course see the course figures, not each other's. */
    size_t n_students = m->n_students;
    m->n_students = 0;
    char *room = rt_asprintf("course:%s", course_id);
    char *id = rt_asprintf("%s-c", event_id);
    publish_room(svc, room, &rm, id);
    m->n_students = n_students;
    free(room);
    free(id);
    room_list_free(&rooms);
    free(event_id);
    rt_counter_inc(svc->m.updates_published);
    if (m->end && strcmp(svc->config->clock, "wall") == 0) {
        int64_t end_ms = (int64_t)m->end->seconds * 1000 + m->end->nanos / 1000000;
        int64_t behind = now_ms - end_ms;
        rt_histogram_observe(svc->m.staleness, behind > 0 ? (double)behind / 1000.0 : 0.0);
    }
    agg_metrics_free(m);
}

typedef struct publish_walk {
    agg_service *svc;
    int64_t now_ms;
} publish_walk;

static void publish_if_changed(void *arg, const char *course_id)
{
    publish_walk *w = arg;
    agg_course_info info;
    if (agg_engine_course_info(&info, w->svc->engine, course_id) != RT_OK)
        return;
    course_marks *m = marks_of(w->svc, course_id);
    uint64_t digest = presence_digest(w->svc, course_id, w->now_ms);
    if (m->published && m->published_changes == info.changes && m->presence_digest == digest)
        return;
    publish_course(w->svc, course_id, w->now_ms);
    m->published = true;
    m->published_changes = info.changes;
    m->presence_digest = digest;
}

/* ---- the engine thread ---- */

static void *engine_main(void *arg)
{
    agg_service *svc = arg;
    while (!atomic_load(&svc->stop)) {
        int64_t now = rt_time_now_ms();
        bool nats_up = rt_nats_is_connected(svc->nats);
        atomic_store(&svc->ready_nats, nats_up);
        if (nats_up && !svc->stream_ready) {
            rt_stream_spec spec;
            rt_stream_spec_events(&spec, svc->config->events_max_age_s,
                                  svc->config->events_duplicate_window_s);
            rt_stream_spec rooms;
            rt_stream_spec_rooms(&rooms, svc->config->rooms_max_age_s,
                                 svc->config->rooms_max_per_room,
                                 svc->config->rooms_duplicate_window_s);
            svc->stream_ready = rt_nats_ensure_stream(svc->nats, &spec) == RT_OK &&
                                rt_nats_ensure_stream(svc->nats, &rooms) == RT_OK;
            atomic_store(&svc->ready_streams, svc->stream_ready);
            if (!svc->stream_ready)
                rt_log_last_error("EVENTS or ROOMS stream not ready; retrying");
        }
        checkpoint_collect(svc);
        if (now - svc->last_heartbeat_ms >= HEARTBEAT_MS && agg_writer_idle(svc->writer)) {
            /* Not while a checkpoint holds the session: next turn instead. */
            svc->last_heartbeat_ms = now;
            rebalance(svc);
        }
        if (nats_up && svc->stream_ready && svc->n_owned)
            position_reader(svc);
        handle_inbox(svc);
        bool busy = svc->pull && read_batch(svc);
        now = rt_time_now_ms();
        if (now - svc->last_checkpoint_ms >= svc->checkpoint_every_ms)
            checkpoint_start(svc);
        if (now - svc->last_publish_ms >= svc->config->publish_interval_ms) {
            svc->last_publish_ms = now;
            publish_walk w = {.svc = svc, .now_ms = now};
            agg_engine_each_course(svc->engine, publish_if_changed, &w);
            rt_gauge_set(svc->m.courses, (int64_t)agg_engine_course_count(svc->engine));
        }
        if (now - svc->last_prune_ms >= PRUNE_MS) {
            svc->last_prune_ms = now;
            agg_engine_prune(svc->engine, now);
            agg_presence_expire(svc->presence, now);
        }
        if (!busy && !svc->pull)
            nats_Sleep(FETCH_WAIT_MS);
    }
    /* Stopping: make everything applied durable, then let the others have
     * our partitions at once instead of after our session times out. */
    handle_inbox(svc);
    checkpoint(svc);
    agg_store_lock(svc->store);
    for (int p = 0; p < svc->partitions; p++)
        if (atomic_load(&svc->owned[p])) {
            forget_partition(svc, p);
            agg_store_release(svc->store, p);
        }
    agg_store_unlock(svc->store);
    drop_consumer(svc);
    return NULL;
}

/* ---- lifecycle ---- */

static void register_metrics(agg_metrics_set *m, rt_metrics *r)
{
    char labels[64];
    for (int o = 0; o <= AGG_INVALID; o++) {
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", agg_outcome_name((agg_outcome)o));
        m->events[o] = rt_metrics_counter(r, "unpuzzle_analytics_events_total",
                                          "EVENTS messages read, by what became of them.", labels);
    }
    m->skipped_other =
        rt_metrics_counter(r, "unpuzzle_analytics_events_total",
                           "EVENTS messages read, by what became of them.", "outcome=\"not_ours\"");
    m->checkpoints = rt_metrics_counter(r, "unpuzzle_analytics_checkpoints_total",
                                        "Checkpoints committed, by result.", "result=\"ok\"");
    m->checkpoint_failures =
        rt_metrics_counter(r, "unpuzzle_analytics_checkpoints_total",
                           "Checkpoints committed, by result.", "result=\"failed\"");
    m->updates_published = rt_metrics_counter(r, "unpuzzle_analytics_updates_total",
                                              "CourseMetrics updates published.", NULL);
    m->alerts_published =
        rt_metrics_counter(r, "unpuzzle_analytics_alerts_total",
                           "Confusions, questions and purchases sent to instructor rooms.", NULL);
    m->publish_failures = rt_metrics_counter(r, "unpuzzle_analytics_publish_failures_total",
                                             "Room publishes JetStream did not confirm.", NULL);
    m->snapshots = rt_metrics_counter(r, "unpuzzle_analytics_snapshots_total",
                                      "analytics.v1.snapshot answered here.", NULL);
    m->snapshots_forwarded =
        rt_metrics_counter(r, "unpuzzle_analytics_snapshots_forwarded_total",
                           "Snapshot requests handed to the owner of the course.", NULL);
    m->presence_updates = rt_metrics_counter(r, "unpuzzle_analytics_presence_updates_total",
                                             "Edge presence updates applied.", NULL);
    m->partitions_owned = rt_metrics_gauge(r, "unpuzzle_analytics_partitions_owned",
                                           "Course partitions this replica owns.", NULL);
    m->courses = rt_metrics_gauge(r, "unpuzzle_analytics_courses", "Courses held in memory.", NULL);
    static const double buckets[] = {0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30, 60};
    m->staleness = rt_metrics_histogram(
        r, "unpuzzle_analytics_staleness_seconds",
        "Wall clock minus the published metrics' end (how far behind the figures are).", NULL,
        buckets, sizeof(buckets) / sizeof(buckets[0]));
}

rt_status agg_service_start(agg_service **out, const agg_service_config *c, rt_metrics *registry)
{
    agg_service *svc = rt_calloc(1, sizeof(*svc));
    rt_status s;
    svc->config = c;
    svc->partitions = (int)c->partitions;
    svc->checkpoint_every_ms = c->checkpoint_ms;
    svc->marks = rt_strmap_create();
    svc->presence_parts = rt_strmap_create();
    pthread_mutex_init(&svc->inbox_lock, NULL);
    for (int p = 0; p < MAX_PARTITIONS; p++)
        atomic_init(&svc->owned[p], false);
    snprintf(svc->durable, sizeof(svc->durable), "analytics-%s", c->replica_id);
    register_metrics(&svc->m, registry);

    agg_config ec;
    engine_config(&ec, c);
    if ((s = agg_engine_create(&svc->engine, &ec)) != RT_OK ||
        (s = agg_presence_create(&svc->presence)) != RT_OK ||
        (s = agg_store_open(&svc->store, c->database_url, c->replica_id, svc->partitions)) !=
            RT_OK ||
        (s = agg_writer_start(&svc->writer, svc->store)) != RT_OK)
        goto fail;
    rt_nats_options no = {.url = c->nats_url,
                          .name = "analytics-aggregator",
                          .user = c->nats_user,
                          .password = c->nats_password,
                          .creds_file = c->nats_creds_file};
    if ((s = rt_nats_connect(&svc->nats, &no)) != RT_OK)
        goto fail;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 65536;
    jo.PublishAsync.ErrHandler = on_publish_error;
    jo.PublishAsync.ErrHandlerClosure = svc;
    natsStatus ns = natsConnection_JetStream(&svc->js_async, rt_nats_connection(svc->nats), &jo);
    natsConnection *nc = rt_nats_connection(svc->nats);
    if (ns == NATS_OK)
        ns = natsConnection_QueueSubscribe(&svc->sub_snapshot, nc, SUBJECT_SNAPSHOT, "analytics",
                                           on_snapshot, svc);
    if (ns == NATS_OK)
        ns = natsConnection_Subscribe(&svc->sub_presence, nc, SUBJECT_PRESENCE, on_presence, svc);
    if (ns != NATS_OK) {
        s = RT_NATS_ERR(ns, "analytics-aggregator subscriptions");
        goto fail;
    }
    natsSubscription_SetPendingLimits(svc->sub_presence, 100000, 256 * 1024 * 1024);
    if (pthread_create(&svc->thread, NULL, engine_main, svc) != 0) {
        s = RT_ERR(RT_ERR_INTERNAL, "cannot start the engine thread");
        goto fail;
    }
    svc->thread_started = true;
    *out = svc;
    return RT_OK;
fail:
    agg_service_stop(svc);
    return s;
}

bool agg_service_ready(void *arg, char *why, size_t why_size)
{
    agg_service *svc = arg;
    if (!atomic_load(&svc->ready_nats)) {
        snprintf(why, why_size, "NATS not connected");
        return false;
    }
    if (!atomic_load(&svc->ready_pg)) {
        snprintf(why, why_size, "PostgreSQL not reachable");
        return false;
    }
    if (!atomic_load(&svc->ready_streams)) {
        snprintf(why, why_size, "EVENTS/ROOMS streams not ready");
        return false;
    }
    return true;
}

bool agg_service_failed(agg_service *svc)
{
    return rt_nats_closed_for_good(svc->nats);
}

static void free_value(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    free(value);
}

static void free_parts_value(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    free_presence_parts(value);
    free(value);
}

void agg_service_stop(agg_service *svc)
{
    if (!svc)
        return;
    atomic_store(&svc->stop, true);
    if (svc->thread_started)
        pthread_join(svc->thread, NULL);
    natsSubscription *subs[] = {svc->sub_snapshot, svc->sub_presence};
    for (size_t i = 0; i < 2; i++)
        if (subs[i]) {
            natsSubscription_Unsubscribe(subs[i]);
            natsSubscription_Destroy(subs[i]);
        }
    if (svc->js_async) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 2000;
        js_PublishAsyncComplete(svc->js_async, &po); /* what is in flight gets its ack */
        jsCtx_Destroy(svc->js_async);
    }
    handle_inbox(svc);            /* frees what is left */
    agg_writer_stop(svc->writer); /* before the connection its acks go out on */
    rt_nats_close(svc->nats, 2000);
    agg_store_close(svc->store);
    agg_engine_destroy(svc->engine);
    agg_presence_destroy(svc->presence);
    rt_strmap_each(svc->marks, free_value, NULL);
    rt_strmap_destroy(svc->marks);
    rt_strmap_each(svc->presence_parts, free_parts_value, NULL);
    rt_strmap_destroy(svc->presence_parts);
    pthread_mutex_destroy(&svc->inbox_lock);
    free(svc);
}
