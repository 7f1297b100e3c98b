#include "edge_hub.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_map.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_time.h"
#include "rt_workers.h"

#define RTD_PREFIX "rtd.v1.room."
#define MAX_LOOPS 64

typedef struct hub_room {
    char name[RT_ROOM_NAME_MAX];
    char subject[RT_ROOM_SUBJECT_MAX];
    natsSubscription *sub;
    uint64_t loop_mask;
    bool known;        /* last_seq is the room's position */
    uint64_t last_seq; /* when !known: the highest seq seen so far */
} hub_room;

struct edge_hub {
    const edge_config *config;
    edge_metrics *metrics;
    edge_loop **loops;
    int n_loops;
    rt_nats *nats;
    natsSubscription *sub_replies, *sub_inval_enrollment, *sub_inval_lesson;
    char reply_prefix[96];
    rt_workers *lookups;

    pthread_mutex_t lock;
    rt_strmap *rooms; /* subject -> hub_room */
    char epoch[EDGE_EPOCH_MAX + 1];
    bool stream_ready;
    atomic_bool stopping;

    /* NATS callbacks hold it (read) while posting to loops; detaching the
     * loops takes it (write), so no post can reach a loop being freed. */
    pthread_rwlock_t loops_lock;
    bool loops_detached;
};

/* Begins posting to the loops; false once they are detached (shutdown). */
static bool loops_enter(edge_hub *hub)
{
    pthread_rwlock_rdlock(&hub->loops_lock);
    if (!hub->loops_detached)
        return true;
    pthread_rwlock_unlock(&hub->loops_lock);
    return false;
}

static void loops_leave(edge_hub *hub)
{
    pthread_rwlock_unlock(&hub->loops_lock);
}

/* ---- room messages (NATS thread) ---- */

static uint64_t header_u64(natsMsg *msg, const char *name)
{
    const char *value = NULL;
    if (natsMsgHeader_Get(msg, name, &value) != NATS_OK || !value)
        return 0;
    return strtoull(value, NULL, 10);
}

/* "rtd.v1.room.course.42" -> "course:42" */
static bool room_from_subject(char out[RT_ROOM_NAME_MAX], const char *subject)
{
    size_t n = strlen(RTD_PREFIX);
    if (strncmp(subject, RTD_PREFIX, n) != 0)
        return false;
    snprintf(out, RT_ROOM_NAME_MAX, "%s", subject + n);
    char *dot = strchr(out, '.');
    if (!dot)
        return false;
    *dot = ':';
    return true;
}

static void on_room_message(natsConnection *nc, natsSubscription *sub, natsMsg *nmsg, void *closure)
{
    edge_hub *hub = closure;
    uint64_t received = rt_time_mono_ns();
    const char *subject = natsMsg_GetSubject(nmsg);
    char room_name[RT_ROOM_NAME_MAX];
    uint64_t seq = header_u64(nmsg, "Nats-Sequence");
    uint64_t prev = header_u64(nmsg, "Nats-Last-Sequence");
    (void)nc;
    (void)sub;

    rt_counter_inc(hub->metrics->nats_messages_in);
    Unpuzzle__Rt__V1__RoomMessage *rm = unpuzzle__rt__v1__room_message__unpack(
        NULL, (size_t)natsMsg_GetDataLength(nmsg), (const uint8_t *)natsMsg_GetData(nmsg));
    if (!rm || !room_from_subject(room_name, subject) || seq == 0) {
        rt_log_warn("room message dropped: not a RoomMessage from the ROOMS stream", "{s:s}",
                    "subject", subject);
        if (rm)
            unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
        natsMsg_Destroy(nmsg);
        return;
    }
    size_t len = 0;
    char *json = edge_render_room_message(&len, rm, room_name, seq, prev);
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
    /* `subject` points into the message: keep it until the lookup below. */
    char subject_copy[RT_ROOM_SUBJECT_MAX];
    snprintf(subject_copy, sizeof(subject_copy), "%s", subject);
    subject = subject_copy;
    natsMsg_Destroy(nmsg);
    if (!json) {
        rt_log_warn("room message dropped: cannot render", "{s:s}", "room", room_name);
        return;
    }
    edge_msg *msg = edge_msg_new(json, len, seq, prev, received);
    free(json);

    uint64_t mask = 0;
    pthread_mutex_lock(&hub->lock);
    hub_room *room = rt_strmap_get(hub->rooms, subject);
    if (room) {
        mask = room->loop_mask;
        if (seq > room->last_seq)
            room->last_seq = seq;
    }
    pthread_mutex_unlock(&hub->lock);
    if (loops_enter(hub)) {
        for (int i = 0; i < hub->n_loops; i++)
            if (mask & (1ull << i))
                edge_loop_post_room_message(hub->loops[i], room_name, edge_msg_ref(msg));
        loops_leave(hub);
    }
    edge_msg_unref(msg);
}

/* ---- worker jobs: room positions and history replays ---- */

typedef struct hub_job {
    bool replay;                       /* else: look a room's position up */
    char subject[RT_ROOM_SUBJECT_MAX]; /* lookup: "rtd.v1.room.<kind>.<id>" */
    char room[RT_ROOM_NAME_MAX];       /* replay */
    int loop_index;
    uint64_t conn_id, since_seq, until_seq;
} hub_job;

static void replay_room(edge_hub *hub, const hub_job *job);

static void lookup_room(edge_hub *hub, const char *subject)
{
    char stored[RT_ROOM_SUBJECT_MAX];
    int backoff_ms = 50;

    /* Our SUB must be in place before we read the position, so any message
     * stored after the read reaches us live. */
    snprintf(stored, sizeof(stored), "rt.v1.room.%s", subject + strlen(RTD_PREFIX));
    while (!atomic_load(&hub->stopping)) {
        natsMsg *last = NULL;
        jsErrCode jerr = 0;
        uint64_t seq = 0;
        natsStatus s = natsConnection_FlushTimeout(rt_nats_connection(hub->nats), 2000);
        if (s == NATS_OK)
            s = js_GetLastMsg(&last, rt_nats_jetstream(hub->nats), "ROOMS", stored, NULL, &jerr);
        if (s == NATS_OK) {
            seq = natsMsg_GetSequence(last);
            natsMsg_Destroy(last);
        } else if (jerr == JSNoMessageFoundErr) {
            s = NATS_OK; /* an empty room is at seq 0 */
        }
        pthread_mutex_lock(&hub->lock);
        hub_room *room = rt_strmap_get(hub->rooms, subject);
        if (!room || room->known) { /* left meanwhile, or already known */
            pthread_mutex_unlock(&hub->lock);
            break;
        }
        if (s != NATS_OK) {
            pthread_mutex_unlock(&hub->lock);
            rt_log_warn("room position lookup failed; retrying", "{s:s, s:s, s:i}", "subject",
                        stored, "error", natsStatus_GetText(s), "js_error", (int)jerr);
            nats_Sleep(backoff_ms);
            backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 1000;
            continue;
        }
        room->known = true;
        if (seq > room->last_seq)
            room->last_seq = seq;
        uint64_t mask = room->loop_mask;
        char name[RT_ROOM_NAME_MAX];
        snprintf(name, sizeof(name), "%s", room->name);
        pthread_mutex_unlock(&hub->lock);
        /* Loops replay what they received meanwhile with seq > this. */
        if (loops_enter(hub)) {
            for (int i = 0; i < hub->n_loops; i++)
                if (mask & (1ull << i))
                    edge_loop_post_room_ready(hub->loops[i], name, seq);
            loops_leave(hub);
        }
        break;
    }
}

static void run_job(void *arg, void *item)
{
    hub_job *job = item;
    if (job->replay)
        replay_room(arg, job);
    else
        lookup_room(arg, job->subject);
    free(job);
}

static void discard_job(void *arg, void *item)
{
    (void)arg;
    free(item);
}

/* Reads the room's stored messages after since_seq up to until_seq and posts
 * them to the loop. History provably reaches back when the message the
 * client saw last (since_seq) is still stored for this room: retention drops
 * a room's oldest messages first, so nothing after it is gone. Past
 * ROOMS_MAX_RESUME messages, or when that message is gone, nothing is
 * replayed and the client is told recovered:false. */
static void replay_room(edge_hub *hub, const hub_job *job)
{
    rt_room room;
    char stored[RT_ROOM_SUBJECT_MAX];
    jsCtx *js = rt_nats_jetstream(hub->nats);
    edge_replay *rp = rt_calloc(1, sizeof(*rp));
    bool recovered = true;
    size_t cap = 0;

    rp->conn_id = job->conn_id;
    rp->until_seq = job->until_seq;
    snprintf(rp->room, sizeof(rp->room), "%s", job->room);
    if (rt_room_parse(&room, job->room) != RT_OK) {
        recovered = false;
    } else {
        rt_room_subject(stored, sizeof(stored), "rt.v1.room", &room);
        jsDirectGetMsgOptions dg;
        natsMsg *m = NULL;
        if (job->since_seq > 0) {
            jsDirectGetMsgOptions_Init(&dg);
            dg.Sequence = job->since_seq;
            if (js_DirectGetMsg(&m, js, "ROOMS", NULL, &dg) != NATS_OK ||
                strcmp(natsMsg_GetSubject(m), stored) != 0)
                recovered = false;
            natsMsg_Destroy(m);
        } else {
            /* The client saw nothing of the room: only a stream that never
             * dropped anything reaches back. */
            jsStreamInfo *si = NULL;
            jsErrCode jerr = 0;
            if (js_GetStreamInfo(&si, js, "ROOMS", NULL, &jerr) != NATS_OK ||
                si->State.FirstSeq > 1)
                recovered = false;
            jsStreamInfo_Destroy(si);
        }
        uint64_t next = job->since_seq + 1, prev = job->since_seq;
        while (recovered && next <= job->until_seq) {
            m = NULL;
            jsDirectGetMsgOptions_Init(&dg);
            dg.Sequence = next;
            dg.NextBySubject = stored;
            natsStatus s = js_DirectGetMsg(&m, js, "ROOMS", NULL, &dg);
            if (s == NATS_NOT_FOUND)
                break;
            if (s != NATS_OK) {
                recovered = false;
                break;
            }
            uint64_t seq = header_u64(m, "Nats-Sequence");
            if (seq == 0 || seq > job->until_seq) {
                natsMsg_Destroy(m);
                break;
            }
            if (rp->n == (size_t)hub->config->rooms_max_resume) {
                natsMsg_Destroy(m);
                recovered = false;
                break;
            }
            Unpuzzle__Rt__V1__RoomMessage *rm = unpuzzle__rt__v1__room_message__unpack(
                NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
            natsMsg_Destroy(m);
            size_t len = 0;
            char *json = rm ? edge_render_room_message(&len, rm, job->room, seq, prev) : NULL;
            if (rm)
                unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
            if (json) {
                if (rp->n == cap) {
                    cap = cap ? cap * 2 : 16;
                    rp->msgs = rt_realloc(rp->msgs, cap * sizeof(edge_msg *));
                }
                rp->msgs[rp->n++] = edge_msg_new(json, len, seq, prev, 0);
                free(json);
                prev = seq;
            }
            next = seq + 1;
        }
    }
    if (!recovered) {
        for (size_t i = 0; i < rp->n; i++)
            edge_msg_unref(rp->msgs[i]);
        rp->n = 0;
    }
    rp->recovered = recovered;
    if (loops_enter(hub)) {
        edge_loop_post_replay(hub->loops[job->loop_index], rp);
        loops_leave(hub);
    } else {
        edge_replay_free(rp);
    }
}

void edge_hub_replay(edge_hub *hub, int loop_index, uint64_t conn_id, const char *room,
                     uint64_t since_seq, uint64_t until_seq)
{
    hub_job *job = rt_calloc(1, sizeof(*job));
    job->replay = true;
    job->loop_index = loop_index;
    job->conn_id = conn_id;
    job->since_seq = since_seq;
    job->until_seq = until_seq;
    snprintf(job->room, sizeof(job->room), "%s", room);
    if (rt_workers_submit(hub->lookups, job) != RT_OK) {
        /* Queue full: answer at once that nothing was recovered. */
        edge_replay *rp = rt_calloc(1, sizeof(*rp));
        rp->conn_id = conn_id;
        rp->until_seq = until_seq;
        snprintf(rp->room, sizeof(rp->room), "%s", room);
        free(job);
        if (loops_enter(hub)) {
            edge_loop_post_replay(hub->loops[loop_index], rp);
            loops_leave(hub);
        } else {
            edge_replay_free(rp);
        }
    }
}

void edge_hub_join(edge_hub *hub, int loop_index, const char *room_name, bool *known,
                   uint64_t *last_seq)
{
    rt_room room;
    char subject[RT_ROOM_SUBJECT_MAX];

    *known = false;
    *last_seq = 0;
    if (rt_room_parse(&room, room_name) != RT_OK)
        return;
    rt_room_subject(subject, sizeof(subject), "rtd.v1.room", &room);
    pthread_mutex_lock(&hub->lock);
    hub_room *hr = rt_strmap_get(hub->rooms, subject);
    if (!hr) {
        hr = rt_calloc(1, sizeof(*hr));
        snprintf(hr->name, sizeof(hr->name), "%s", room_name);
        snprintf(hr->subject, sizeof(hr->subject), "%s", subject);
        natsStatus s = natsConnection_Subscribe(&hr->sub, rt_nats_connection(hub->nats), subject,
                                                on_room_message, hub);
        if (s == NATS_OK) {
            /* A burst to a big room must be absorbed, not dropped by nats.c. */
            natsSubscription_SetPendingLimits(hr->sub, 1000000, 512 * 1024 * 1024);
            rt_gauge_add(hub->metrics->nats_subscriptions, 1);
        } else {
            rt_log_error("room subscribe failed", "{s:s, s:s}", "subject", subject, "error",
                         natsStatus_GetText(s));
            hr->sub = NULL;
        }
        rt_strmap_put(hub->rooms, subject, hr);
        hub_job *job = rt_calloc(1, sizeof(*job));
        snprintf(job->subject, sizeof(job->subject), "%s", subject);
        if (rt_workers_submit(hub->lookups, job) != RT_OK) {
            free(job);
            rt_log_error("room position lookup queue full", "{s:s}", "subject", subject);
        }
    }
    hr->loop_mask |= 1ull << loop_index;
    *known = hr->known;
    *last_seq = hr->last_seq;
    pthread_mutex_unlock(&hub->lock);
}

void edge_hub_leave(edge_hub *hub, int loop_index, const char *room_name)
{
    rt_room room;
    char subject[RT_ROOM_SUBJECT_MAX];

    if (rt_room_parse(&room, room_name) != RT_OK)
        return;
    rt_room_subject(subject, sizeof(subject), "rtd.v1.room", &room);
    pthread_mutex_lock(&hub->lock);
    hub_room *hr = rt_strmap_get(hub->rooms, subject);
    if (hr) {
        hr->loop_mask &= ~(1ull << loop_index);
        if (!hr->loop_mask) {
            rt_strmap_remove(hub->rooms, subject);
            if (hr->sub) {
                natsSubscription_Unsubscribe(hr->sub);
                natsSubscription_Destroy(hr->sub);
                rt_gauge_add(hub->metrics->nats_subscriptions, -1);
            }
            free(hr);
        }
    }
    pthread_mutex_unlock(&hub->lock);
}

/* ---- RPC replies and invalidations (NATS threads) ---- */

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    edge_hub *hub = closure;
    const char *subject = natsMsg_GetSubject(msg);
    const char *tail = subject + strlen(hub->reply_prefix); /* ".<loop>.<request>" */
    char *end = NULL;
    (void)nc;
    (void)sub;

    long loop = *tail == '.' ? strtol(tail + 1, &end, 10) : -1;
    if (loop < 0 || loop >= hub->n_loops || !end || *end != '.') {
        natsMsg_Destroy(msg);
        return;
    }
    uint64_t request_id = strtoull(end + 1, NULL, 10);
    if (!loops_enter(hub)) {
        natsMsg_Destroy(msg);
        return;
    }
    edge_loop_post_rpc_reply(hub->loops[loop], request_id, msg);
    loops_leave(hub);
}

static void on_invalidation(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    edge_hub *hub = closure;
    (void)nc;

    if (sub == hub->sub_inval_enrollment) {
        Unpuzzle__Rt__V1__EnrollmentChanged *e = unpuzzle__rt__v1__enrollment_changed__unpack(
            NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
        if (e && loops_enter(hub)) {
            for (int i = 0; i < hub->n_loops; i++)
                edge_loop_post_invalidate(hub->loops[i], e->user_id);
            loops_leave(hub);
        }
        if (e)
            unpuzzle__rt__v1__enrollment_changed__free_unpacked(e, NULL);
    } else if (loops_enter(hub)) {
        for (int i = 0; i < hub->n_loops; i++)
            edge_loop_post_invalidate(hub->loops[i], NULL);
        loops_leave(hub);
    }
    natsMsg_Destroy(msg);
}

rt_status edge_hub_request(edge_hub *hub, int loop_index, uint64_t request_id, const char *subject,
                           const void *data, size_t len)
{
    char reply[160];
    snprintf(reply, sizeof(reply), "%s.%d.%llu", hub->reply_prefix, loop_index,
             (unsigned long long)request_id);
    natsStatus s = natsConnection_PublishRequest(rt_nats_connection(hub->nats), subject, reply,
                                                 data, (int)len);
    if (s != NATS_OK)
        return RT_NATS_ERR(s, subject);
    return RT_OK;
}

/* ---- lifecycle ---- */

rt_status edge_hub_create(edge_hub **out, const edge_config *config, edge_metrics *metrics)
{
    edge_hub *hub = rt_calloc(1, sizeof(*hub));
    hub->config = config;
    hub->metrics = metrics;
    hub->rooms = rt_strmap_create();
    pthread_mutex_init(&hub->lock, NULL);
    pthread_rwlock_init(&hub->loops_lock, NULL);
    rt_status s = rt_workers_create(&hub->lookups, 2, 100000, run_job, discard_job, hub);
    if (s != RT_OK) {
        edge_hub_destroy(hub);
        return s;
    }
    *out = hub;
    return RT_OK;
}

void edge_hub_detach_loops(edge_hub *hub)
{
    pthread_rwlock_wrlock(&hub->loops_lock);
    hub->loops_detached = true;
    pthread_rwlock_unlock(&hub->loops_lock);
}

void edge_hub_set_loops(edge_hub *hub, edge_loop **loops, int n_loops)
{
    hub->loops = loops;
    hub->n_loops = n_loops < MAX_LOOPS ? n_loops : MAX_LOOPS;
}

rt_status edge_hub_connect(edge_hub *hub)
{
    const edge_config *c = hub->config;
    rt_nats_options no = {.url = c->nats_url,
                          .name = "ws-edge",
                          .user = c->nats_user,
                          .password = c->nats_password,
                          .creds_file = c->nats_creds_file};
    rt_status s = rt_nats_connect(&hub->nats, &no);
    if (s != RT_OK)
        return s;
    /* Replies come back on this edge's own inbox subtree. */
    snprintf(hub->reply_prefix, sizeof(hub->reply_prefix), "_INBOX.%s.%llx", c->edge_id,
             (unsigned long long)rt_time_now_ms() ^ (unsigned long long)rt_time_mono_ns());
    char wildcard[128];
    snprintf(wildcard, sizeof(wildcard), "%s.*.*", hub->reply_prefix);
    natsConnection *nc = rt_nats_connection(hub->nats);
    natsStatus ns = natsConnection_Subscribe(&hub->sub_replies, nc, wildcard, on_reply, hub);
    if (ns == NATS_OK)
        natsSubscription_SetPendingLimits(hub->sub_replies, 1000000, 256 * 1024 * 1024);
    if (ns == NATS_OK)
        ns = natsConnection_Subscribe(&hub->sub_inval_enrollment, nc,
                                      "auth.v1.invalidated.enrollment", on_invalidation, hub);
    if (ns == NATS_OK)
        ns = natsConnection_Subscribe(&hub->sub_inval_lesson, nc, "auth.v1.invalidated.lesson",
                                      on_invalidation, hub);
    if (ns != NATS_OK)
        return RT_NATS_ERR(ns, "ws-edge subscriptions");
    return RT_OK;
}

void edge_hub_tick(edge_hub *hub)
{
    if (!rt_nats_is_connected(hub->nats))
        return;
    if (!hub->stream_ready) {
        rt_stream_spec spec;
        rt_stream_spec_rooms(&spec, hub->config->rooms_max_age_s, hub->config->rooms_max_per_room,
                             hub->config->rooms_duplicate_window_s);
        if (rt_nats_ensure_stream(hub->nats, &spec) != RT_OK) {
            rt_log_last_error("ROOMS stream not ready; retrying");
            return;
        }
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, rt_nats_jetstream(hub->nats), "ROOMS", NULL, &jerr) != NATS_OK) {
        /* Deleted behind our back: create it again on the next tick. */
        pthread_mutex_lock(&hub->lock);
        hub->stream_ready = false;
        pthread_mutex_unlock(&hub->lock);
        return;
    }
    char epoch[EDGE_EPOCH_MAX + 1];
    snprintf(epoch, sizeof(epoch), "%lld", (long long)si->Created);
    jsStreamInfo_Destroy(si);
    pthread_mutex_lock(&hub->lock);
    if (strcmp(epoch, hub->epoch) != 0 && hub->epoch[0])
        rt_log_warn("ROOMS stream was recreated; new epoch", "{s:s}", "epoch", epoch);
    snprintf(hub->epoch, sizeof(hub->epoch), "%s", epoch);
    hub->stream_ready = true;
    pthread_mutex_unlock(&hub->lock);
}

bool edge_hub_ready(edge_hub *hub, char *why, size_t why_size)
{
    if (!rt_nats_is_connected(hub->nats)) {
        snprintf(why, why_size, "NATS not connected");
        return false;
    }
    pthread_mutex_lock(&hub->lock);
    bool ok = hub->stream_ready;
    pthread_mutex_unlock(&hub->lock);
    if (!ok)
        snprintf(why, why_size, "ROOMS stream not ready");
    return ok;
}

bool edge_hub_failed(edge_hub *hub)
{
    return rt_nats_closed_for_good(hub->nats);
}

void edge_hub_epoch(edge_hub *hub, char out[EDGE_EPOCH_MAX + 1])
{
    pthread_mutex_lock(&hub->lock);
    snprintf(out, EDGE_EPOCH_MAX + 1, "%s", hub->epoch);
    pthread_mutex_unlock(&hub->lock);
}

static void free_room(void *arg, const char *key, void *value)
{
    hub_room *hr = value;
    (void)arg;
    (void)key;
    if (hr->sub) {
        natsSubscription_Unsubscribe(hr->sub);
        natsSubscription_Destroy(hr->sub);
    }
    free(hr);
}

void edge_hub_destroy(edge_hub *hub)
{
    if (!hub)
        return;
    atomic_store(&hub->stopping, true);
    rt_workers_destroy(hub->lookups);
    natsSubscription *subs[] = {hub->sub_replies, hub->sub_inval_enrollment, hub->sub_inval_lesson};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (subs[i]) {
            natsSubscription_Unsubscribe(subs[i]);
            natsSubscription_Destroy(subs[i]);
        }
    }
    rt_strmap_each(hub->rooms, free_room, NULL);
    rt_strmap_destroy(hub->rooms);
    rt_nats_close(hub->nats, 2000);
    pthread_mutex_destroy(&hub->lock);
    pthread_rwlock_destroy(&hub->loops_lock);
    free(hub);
}
