#include "edge_hub.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_history.h"
#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_map.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_time.h"
#include "rt_workers.h"

#define RTD_PREFIX "rtd.v1.room."
#define MAX_LOOPS 64
#define PUBLISHERS 4

typedef struct hub_room {
    char name[RT_ROOM_NAME_MAX];
    char subject[RT_ROOM_SUBJECT_MAX]; /* rtd.v1.room.<kind>.<id> (delivery) */
    char stored[RT_ROOM_SUBJECT_MAX];  /* rt.v1.room.<kind>.<id> (in the stream) */
    natsSubscription *sub;
    int refs; /* hub->lock; the map holds one */

    pthread_mutex_t fetch;
    pthread_mutex_t deliver; /* guards the fields below */
    uint64_t loop_mask;      /* loops with members (changed under hub->lock too) */
    bool known;              /* last_seq is the room's position */
    uint64_t last_seq;       /* last seq handed to the loops */
    edge_msg **pending;      /* received before the position was known */
    size_t n_pending, cap_pending;
    edge_history history; /* newest messages, for resumes */
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
    /* Actions: JetStream publishes wait for their ack. One thread each, and
     * a connection always uses the same one, so its actions stay in order. */
    rt_workers *publishers[PUBLISHERS];

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

/* ---- rooms ----
 *
 * Locks: hub->lock guards the map and each room's refs. room->deliver
 * guards what the delivery path touches (loop mask, position, pending,
 * history); whichever thread delivers (a NATS delivery thread, a position
 * lookup, a resync) holds it, which keeps a room's messages in order.
 * room->fetch lets one replay of a room read the stream at a time, so
 * concurrent resumes of the same room read it once. Order: hub->lock before
 * room->deliver; room->fetch before room->deliver; hub->lock is never taken
 * while a room lock is held. */

#define PENDING_MAX 100000 /* held before the position is known; older are refetched */
#define HISTORY_MAX 256    /* newest messages of a room kept for resumes */

static hub_room *room_acquire(edge_hub *hub, const char *subject)
{
    pthread_mutex_lock(&hub->lock);
    hub_room *hr = rt_strmap_get(hub->rooms, subject);
    if (hr)
        hr->refs++;
    pthread_mutex_unlock(&hub->lock);
    return hr;
}

static void room_free(hub_room *hr)
{
    for (size_t i = 0; i < hr->n_pending; i++)
        edge_msg_unref(hr->pending[i]);
    free(hr->pending);
    edge_history_free(&hr->history);
    pthread_mutex_destroy(&hr->deliver);
    pthread_mutex_destroy(&hr->fetch);
    free(hr);
}

static void room_release(edge_hub *hub, hub_room *hr)
{
    pthread_mutex_lock(&hub->lock);
    bool last = --hr->refs == 0;
    pthread_mutex_unlock(&hub->lock);
    if (last)
        room_free(hr);
}

static uint64_t header_u64(natsMsg *msg, const char *name)
{
    const char *value = NULL;
    if (natsMsgHeader_Get(msg, name, &value) != NATS_OK || !value)
        return 0;
    return strtoull(value, NULL, 10);
}

/* The connection of ours an action came from ("<edge_id>-<hex>"), or 0. */
static uint64_t origin_on_this_edge(const edge_hub *hub, const char *origin)
{
    size_t n = strlen(hub->config->edge_id);
    if (!origin || strncmp(origin, hub->config->edge_id, n) != 0 || origin[n] != '-')
        return 0;
    return strtoull(origin + n + 1, NULL, 16);
}

/* Decodes and renders a RoomMessage once; NULL when it is not one. */
static edge_msg *render(const edge_hub *hub, natsMsg *nmsg, const char *room_name, uint64_t seq,
                        uint64_t prev, uint64_t received_ns)
{
    Unpuzzle__Rt__V1__RoomMessage *rm = unpuzzle__rt__v1__room_message__unpack(
        NULL, (size_t)natsMsg_GetDataLength(nmsg), (const uint8_t *)natsMsg_GetData(nmsg));
    if (!rm)
        return NULL;
    size_t len = 0;
    char *json = edge_render_room_message(&len, rm, room_name, seq, prev);
    uint64_t origin = origin_on_this_edge(hub, rm->origin_connection_id);
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
    if (!json)
        return NULL;
    edge_msg *msg = edge_msg_new(json, len, seq, prev, received_ns);
    msg->origin_conn = origin;
    free(json);
    return msg;
}

static void msgs_push(edge_msg ***msgs, size_t *n, size_t *cap, edge_msg *m)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *msgs = rt_realloc(*msgs, *cap * sizeof(edge_msg *));
    }
    (*msgs)[(*n)++] = m;
}

typedef enum fetch_result {
    FETCH_OK,       /* every stored message after since up to until */
    FETCH_GONE,     /* history no longer reaches back to since */
    FETCH_TOO_MANY, /* more than `max` */
    FETCH_FAILED,   /* NATS error */
} fetch_result;

/* Reads a room's stored messages after `since` up to `until`, rendered, in
 * order, appended to *msgs. History provably reaches back when the message
 * `since` is still stored for this room (retention drops a room's oldest
 * messages first, so nothing after it is gone) or, for since 0, when the
 * stream never dropped anything. Each message's prevSeq is the one read
 * before it (the stored copies carry no Nats-Last-Sequence). */
static fetch_result fetch_history(edge_hub *hub, const char *room_name, const char *stored,
                                  uint64_t since, uint64_t until, size_t max, edge_msg ***msgs,
                                  size_t *n, size_t *cap)
{
    jsCtx *js = rt_nats_jetstream(hub->nats);
    jsDirectGetMsgOptions dg;
    natsMsg *m = NULL;

    if (since >= until)
        return FETCH_OK;
    if (since > 0) {
        jsDirectGetMsgOptions_Init(&dg);
        dg.Sequence = since;
        natsStatus s = js_DirectGetMsg(&m, js, "ROOMS", NULL, &dg);
        bool ours = s == NATS_OK && strcmp(natsMsg_GetSubject(m), stored) == 0;
        natsMsg_Destroy(m);
        if (s != NATS_OK && s != NATS_NOT_FOUND)
            return FETCH_FAILED;
        if (!ours)
            return FETCH_GONE;
    } else {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        if (js_GetStreamInfo(&si, js, "ROOMS", NULL, &jerr) != NATS_OK)
            return FETCH_FAILED;
        bool complete = si->State.FirstSeq <= 1;
        jsStreamInfo_Destroy(si);
        if (!complete)
            return FETCH_GONE;
    }
    uint64_t next = since + 1, prev = since, last_read = since;
    size_t read = 0;
    fetch_result result = FETCH_OK;
    while (next <= until) {
        m = NULL;
        jsDirectGetMsgOptions_Init(&dg);
        dg.Sequence = next;
        dg.NextBySubject = stored;
        natsStatus s = js_DirectGetMsg(&m, js, "ROOMS", NULL, &dg);
        if (s == NATS_NOT_FOUND)
            break;
        if (s != NATS_OK) {
            result = FETCH_FAILED;
            break;
        }
        uint64_t seq = header_u64(m, "Nats-Sequence");
        if (seq == 0 || seq > until) {
            natsMsg_Destroy(m);
            break;
        }
        if (read == max) {
            natsMsg_Destroy(m);
            result = FETCH_TOO_MANY;
            break;
        }
        edge_msg *msg = render(hub, m, room_name, seq, prev, 0);
        natsMsg_Destroy(m);
        read++;
        last_read = seq;
        if (msg) {
            msgs_push(msgs, n, cap, msg);
            prev = seq;
        } else {
            rt_log_warn("stored room message skipped: not a RoomMessage", "{s:s, s:I}", "room",
                        room_name, "seq", (json_int_t)seq);
        }
        next = seq + 1;
    }
    rt_counter_add(hub->metrics->history_reads, read);
    /* `until` is a message of this room: a read that does not reach it lost
     * something to retention meanwhile, and must not claim completeness. */
    if (result == FETCH_OK && last_read != until)
        result = FETCH_GONE;
    return result;
}

/* Makes msg the room's position and hands it to every loop with members.
 * deliver held. */
static void room_post_locked(edge_hub *hub, hub_room *hr, edge_msg *msg)
{
    hr->last_seq = msg->seq;
    edge_history_push(&hr->history, msg);
    if (loops_enter(hub)) {
        for (int i = 0; i < hub->n_loops; i++)
            if (hr->loop_mask & (1ull << i))
                edge_loop_post_room_message(hub->loops[i], hr->name, edge_msg_ref(msg));
        loops_leave(hub);
    }
}

/* Fills the loops in from the room's position up to `until` with what the
 * hub never received (published while NATS was reconnecting, or dropped by
 * nats.c as a slow consumer), read from the stream. deliver held. When it
 * cannot, the next message's prevSeq shows clients the gap and they
 * resubscribe with since (the protocol's own recovery). */
static void room_repair_locked(edge_hub *hub, hub_room *hr, uint64_t until)
{
    edge_msg **msgs = NULL;
    size_t n = 0, cap = 0;
    fetch_result r = fetch_history(hub, hr->name, hr->stored, hr->last_seq, until,
                                   (size_t)hub->config->rooms_max_resume, &msgs, &n, &cap);
    for (size_t i = 0; i < n; i++) {
        if (r == FETCH_OK || r == FETCH_FAILED) /* a failed read keeps its prefix */
            room_post_locked(hub, hr, msgs[i]);
        edge_msg_unref(msgs[i]);
    }
    free(msgs);
    if (r == FETCH_OK) {
        rt_counter_inc(hub->metrics->gap_repairs);
        rt_counter_add(hub->metrics->gap_repaired_messages, n);
        rt_log_info("room gap repaired from the stream", "{s:s, s:I, s:I}", "room", hr->name,
                    "messages", (json_int_t)n, "until", (json_int_t)until);
    } else {
        rt_counter_inc(hub->metrics->gap_repair_failures);
        rt_log_warn("room gap not repaired; clients will see it and resubscribe", "{s:s, s:I, s:s}",
                    "room", hr->name, "until", (json_int_t)until, "reason",
                    r == FETCH_GONE       ? "history gone"
                    : r == FETCH_TOO_MANY ? "too many"
                                          : "nats");
    }
}

static void room_deliver_locked(edge_hub *hub, hub_room *hr, edge_msg *msg)
{
    if (!hr->known) { /* held until the position is known */
        if (hr->n_pending == PENDING_MAX) {
            /* The oldest go; the gap is refetched once the room is known. */
            edge_msg_unref(hr->pending[0]);
            memmove(hr->pending, hr->pending + 1, (hr->n_pending - 1) * sizeof(edge_msg *));
            hr->n_pending--;
        }
        msgs_push(&hr->pending, &hr->n_pending, &hr->cap_pending, edge_msg_ref(msg));
        return;
    }
    if (msg->seq <= hr->last_seq) {
        rt_counter_inc(hub->metrics->dropped_duplicate);
        return;
    }
    if (msg->prev_seq > hr->last_seq)
        room_repair_locked(hub, hr, msg->prev_seq);
    room_post_locked(hub, hr, msg);
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
    char room_name[RT_ROOM_NAME_MAX], subject[RT_ROOM_SUBJECT_MAX];
    uint64_t seq = header_u64(nmsg, "Nats-Sequence");
    uint64_t prev = header_u64(nmsg, "Nats-Last-Sequence");
    (void)nc;
    (void)sub;

    rt_counter_inc(hub->metrics->nats_messages_in);
    snprintf(subject, sizeof(subject), "%s", natsMsg_GetSubject(nmsg));
    edge_msg *msg = NULL;
    if (room_from_subject(room_name, subject) && seq != 0)
        msg = render(hub, nmsg, room_name, seq, prev, received);
    natsMsg_Destroy(nmsg);
    if (!msg) {
        rt_log_warn("room message dropped: not a RoomMessage from the ROOMS stream", "{s:s}",
                    "subject", subject);
        return;
    }
    hub_room *hr = room_acquire(hub, subject);
    if (hr) {
        pthread_mutex_lock(&hr->deliver);
        room_deliver_locked(hub, hr, msg);
        pthread_mutex_unlock(&hr->deliver);
        room_release(hub, hr);
    }
    edge_msg_unref(msg);
}

/* ---- worker jobs: room positions, resyncs and history replays ---- */

typedef enum hub_job_kind { JOB_LOOKUP, JOB_RESYNC, JOB_REPLAY } hub_job_kind;

typedef struct hub_job {
    hub_job_kind kind;
    char subject[RT_ROOM_SUBJECT_MAX]; /* lookup, resync: "rtd.v1.room.<kind>.<id>" */
    char room[RT_ROOM_NAME_MAX];       /* replay */
    int loop_index;
    uint64_t conn_id, since_seq, until_seq;
} hub_job;

static void submit_room_job(edge_hub *hub, hub_job_kind kind, const char *subject)
{
    hub_job *job = rt_calloc(1, sizeof(*job));
    job->kind = kind;
    snprintf(job->subject, sizeof(job->subject), "%s", subject);
    if (rt_workers_submit(hub->lookups, job) != RT_OK) {
        free(job);
        rt_log_error("room job queue full", "{s:s}", "subject", subject);
    }
}

/* The stream's last sequence for a room (0: none stored). */
static natsStatus stored_position(edge_hub *hub, const char *stored, uint64_t *seq)
{
    natsMsg *last = NULL;
    jsErrCode jerr = 0;
    /* Our SUB must be in place before we read the position, so any message
     * stored after the read reaches us live. */
    natsStatus s = natsConnection_FlushTimeout(rt_nats_connection(hub->nats), 2000);
    if (s == NATS_OK)
        s = js_GetLastMsg(&last, rt_nats_jetstream(hub->nats), "ROOMS", stored, NULL, &jerr);
    *seq = 0;
    if (s == NATS_OK) {
        *seq = natsMsg_GetSequence(last);
        natsMsg_Destroy(last);
    } else if (jerr == JSNoMessageFoundErr) {
        s = NATS_OK;
    }
    return s;
}

/* Looks the room's position up (first member on this edge, or after an epoch
 * reset), announces it to the loops, then delivers what arrived meanwhile. */
static void lookup_room(edge_hub *hub, const char *subject)
{
    int backoff_ms = 50;
    while (!atomic_load(&hub->stopping)) {
        hub_room *hr = room_acquire(hub, subject);
        if (!hr)
            return; /* left meanwhile */
        uint64_t seq = 0;
        natsStatus s = stored_position(hub, hr->stored, &seq);
        if (s != NATS_OK) {
            rt_log_warn("room position lookup failed; retrying", "{s:s, s:s}", "room", hr->name,
                        "error", natsStatus_GetText(s));
            room_release(hub, hr);
            nats_Sleep(backoff_ms);
            backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 1000;
            continue;
        }
        pthread_mutex_lock(&hr->deliver);
        if (!hr->known) {
            hr->known = true;
            hr->last_seq = seq;
            if (loops_enter(hub)) {
                for (int i = 0; i < hub->n_loops; i++)
                    if (hr->loop_mask & (1ull << i))
                        edge_loop_post_room_ready(hub->loops[i], hr->name, seq);
                loops_leave(hub);
            }
            size_t n = hr->n_pending;
            hr->n_pending = 0;
            for (size_t i = 0; i < n; i++) {
                room_deliver_locked(hub, hr, hr->pending[i]);
                edge_msg_unref(hr->pending[i]);
            }
        }
        pthread_mutex_unlock(&hr->deliver);
        room_release(hub, hr);
        return;
    }
}

/* After a NATS reconnect or a slow-consumer drop: anything stored that the
 * hub did not receive is read from the stream, even if no later message
 * comes to reveal the gap. */
static void resync_room(edge_hub *hub, const char *subject)
{
    for (int attempt = 0; attempt < 5 && !atomic_load(&hub->stopping); attempt++) {
        hub_room *hr = room_acquire(hub, subject);
        if (!hr)
            return;
        uint64_t seq = 0;
        natsStatus s = stored_position(hub, hr->stored, &seq);
        if (s == NATS_OK) {
            pthread_mutex_lock(&hr->deliver);
            if (hr->known && seq > hr->last_seq)
                room_repair_locked(hub, hr, seq);
            pthread_mutex_unlock(&hr->deliver);
        }
        room_release(hub, hr);
        if (s == NATS_OK)
            return;
        nats_Sleep(200 << attempt);
    }
}

/* A resume served from the room's history where it reaches, from the stream
 * before that; what was read goes into the history for the next resume. */
static bool replay_from_room(edge_hub *hub, hub_room *hr, const hub_job *job, edge_replay *rp)
{
    size_t max = (size_t)hub->config->rooms_max_resume, cap = 0;
    uint64_t floor = 0;
    edge_msg **cached = NULL;
    size_t n_cached = 0, cached_cap = 0;

    pthread_mutex_lock(&hr->fetch);
    pthread_mutex_lock(&hr->deliver);
    bool have = edge_history_floor(&hr->history, &floor) &&
                edge_history_last_seq(&hr->history) >= job->until_seq && floor < job->until_seq;
    if (have)
        edge_history_copy(&hr->history, job->since_seq > floor ? job->since_seq : floor,
                          job->until_seq, &cached, &n_cached, &cached_cap);
    pthread_mutex_unlock(&hr->deliver);

    fetch_result r = FETCH_OK;
    if (!have || job->since_seq < floor) {
        uint64_t upto = have ? floor : job->until_seq;
        r = fetch_history(hub, rp->room, hr->stored, job->since_seq, upto, max, &rp->msgs, &rp->n,
                          &cap);
        /* The read must meet the history where it begins. */
        if (r == FETCH_OK && have && (rp->n ? rp->msgs[rp->n - 1]->seq : job->since_seq) != floor)
            r = FETCH_GONE;
        if (r == FETCH_OK) {
            pthread_mutex_lock(&hr->deliver);
            edge_history_prepend(&hr->history, rp->msgs, rp->n);
            pthread_mutex_unlock(&hr->deliver);
        }
        rt_counter_inc(hub->metrics->replays_stream);
    } else {
        rt_counter_inc(hub->metrics->replays_cached);
    }
    pthread_mutex_unlock(&hr->fetch);

    for (size_t i = 0; i < n_cached; i++)
        msgs_push(&rp->msgs, &rp->n, &cap, cached[i]);
    free(cached);
    return r == FETCH_OK && rp->n <= max;
}

/* Posts to the loop the room's history after since_seq up to until_seq, or
 * recovered:false with nothing when it does not reach back, is more than
 * ROOMS_MAX_RESUME, or cannot be read. */
static void replay_room(edge_hub *hub, const hub_job *job)
{
    rt_room room;
    char subject[RT_ROOM_SUBJECT_MAX], stored[RT_ROOM_SUBJECT_MAX];
    edge_replay *rp = rt_calloc(1, sizeof(*rp));
    bool recovered = false;

    rp->conn_id = job->conn_id;
    rp->until_seq = job->until_seq;
    snprintf(rp->room, sizeof(rp->room), "%s", job->room);
    if (rt_room_parse(&room, job->room) == RT_OK) {
        rt_room_subject(subject, sizeof(subject), "rtd.v1.room", &room);
        rt_room_subject(stored, sizeof(stored), "rt.v1.room", &room);
        hub_room *hr = room_acquire(hub, subject);
        if (hr) {
            recovered = replay_from_room(hub, hr, job, rp);
            room_release(hub, hr);
        } else { /* the member left meanwhile; answer anyway */
            size_t cap = 0;
            recovered = fetch_history(hub, job->room, stored, job->since_seq, job->until_seq,
                                      (size_t)hub->config->rooms_max_resume, &rp->msgs, &rp->n,
                                      &cap) == FETCH_OK;
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

static void run_job(void *arg, void *item)
{
    hub_job *job = item;
    switch (job->kind) {
    case JOB_LOOKUP:
        lookup_room(arg, job->subject);
        break;
    case JOB_RESYNC:
        resync_room(arg, job->subject);
        break;
    case JOB_REPLAY:
        replay_room(arg, job);
        break;
    }
    free(job);
}

static void discard_job(void *arg, void *item)
{
    (void)arg;
    free(item);
}

void edge_hub_replay(edge_hub *hub, int loop_index, uint64_t conn_id, const char *room,
                     uint64_t since_seq, uint64_t until_seq)
{
    hub_job *job = rt_calloc(1, sizeof(*job));
    job->kind = JOB_REPLAY;
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
        hr->refs = 1; /* the map's */
        pthread_mutex_init(&hr->deliver, NULL);
        pthread_mutex_init(&hr->fetch, NULL);
        size_t history = hub->config->rooms_max_resume < HISTORY_MAX
                             ? (size_t)hub->config->rooms_max_resume
                             : HISTORY_MAX;
        edge_history_init(&hr->history, history);
        snprintf(hr->name, sizeof(hr->name), "%s", room_name);
        snprintf(hr->subject, sizeof(hr->subject), "%s", subject);
        rt_room_subject(hr->stored, sizeof(hr->stored), "rt.v1.room", &room);
        natsStatus s = natsConnection_Subscribe(&hr->sub, rt_nats_connection(hub->nats), subject,
                                                on_room_message, hub);
        if (s == NATS_OK) {
            /* A burst to a big room must be absorbed, not dropped by nats.c. */
            natsSubscription_SetPendingLimits(hr->sub, (int)hub->config->nats_pending_msgs,
                                              512 * 1024 * 1024);
            rt_gauge_add(hub->metrics->nats_subscriptions, 1);
        } else {
            rt_log_error("room subscribe failed", "{s:s, s:s}", "subject", subject, "error",
                         natsStatus_GetText(s));
            hr->sub = NULL;
        }
        rt_strmap_put(hub->rooms, subject, hr);
        submit_room_job(hub, JOB_LOOKUP, subject);
    }
    pthread_mutex_lock(&hr->deliver);
    hr->loop_mask |= 1ull << loop_index;
    *known = hr->known;
    *last_seq = hr->last_seq;
    pthread_mutex_unlock(&hr->deliver);
    pthread_mutex_unlock(&hub->lock);
}

void edge_hub_leave(edge_hub *hub, int loop_index, const char *room_name)
{
    rt_room room;
    char subject[RT_ROOM_SUBJECT_MAX];
    hub_room *freed = NULL;

    if (rt_room_parse(&room, room_name) != RT_OK)
        return;
    rt_room_subject(subject, sizeof(subject), "rtd.v1.room", &room);
    pthread_mutex_lock(&hub->lock);
    hub_room *hr = rt_strmap_get(hub->rooms, subject);
    if (hr) {
        pthread_mutex_lock(&hr->deliver);
        hr->loop_mask &= ~(1ull << loop_index);
        bool empty = hr->loop_mask == 0;
        pthread_mutex_unlock(&hr->deliver);
        if (empty) {
            rt_strmap_remove(hub->rooms, subject);
            if (hr->sub) {
                natsSubscription_Unsubscribe(hr->sub);
                natsSubscription_Destroy(hr->sub);
                hr->sub = NULL;
                rt_gauge_add(hub->metrics->nats_subscriptions, -1);
            }
            if (--hr->refs == 0)
                freed = hr;
        }
    }
    pthread_mutex_unlock(&hub->lock);
    if (freed)
        room_free(freed);
}

typedef struct subject_list {
    char (*subjects)[RT_ROOM_SUBJECT_MAX];
    size_t n;
    bool reset; /* also forget each room's position (epoch change) */
} subject_list;

static void collect_room(void *arg, const char *key, void *value)
{
    subject_list *list = arg;
    hub_room *hr = value;
    if (list->reset) {
        pthread_mutex_lock(&hr->deliver);
        hr->known = false;
        hr->last_seq = 0;
        for (size_t i = 0; i < hr->n_pending; i++)
            edge_msg_unref(hr->pending[i]);
        hr->n_pending = 0;
        edge_history_clear(&hr->history);
        pthread_mutex_unlock(&hr->deliver);
    }
    snprintf(list->subjects[list->n++], RT_ROOM_SUBJECT_MAX, "%s", key);
}

/* Queues `kind` for every room; with reset, first forgets their positions
 * and tells the loops (under hub->lock, so no room is joined in between). */
static void each_room(edge_hub *hub, hub_job_kind kind, bool reset)
{
    pthread_mutex_lock(&hub->lock);
    subject_list list = {.reset = reset};
    list.subjects = rt_calloc(rt_strmap_count(hub->rooms) + 1, RT_ROOM_SUBJECT_MAX);
    rt_strmap_each(hub->rooms, collect_room, &list);
    if (reset && loops_enter(hub)) {
        for (int i = 0; i < hub->n_loops; i++)
            edge_loop_post_rooms_reset(hub->loops[i]);
        loops_leave(hub);
    }
    pthread_mutex_unlock(&hub->lock);
    for (size_t i = 0; i < list.n; i++)
        submit_room_job(hub, kind, list.subjects[i]);
    free(list.subjects);
}

static void on_nats_reconnected(void *arg)
{
    edge_hub *hub = arg;
    each_room(hub, JOB_RESYNC, false);
}

static void on_nats_slow_consumer(natsSubscription *sub, void *arg)
{
    edge_hub *hub = arg;
    const char *subject = natsSubscription_GetSubject(sub);
    if (!subject || strncmp(subject, RTD_PREFIX, strlen(RTD_PREFIX)) != 0)
        return;
    rt_counter_inc(hub->metrics->nats_slow_consumer);
    submit_room_job(hub, JOB_RESYNC, subject);
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

/* ---- actions (publisher workers) ---- */

typedef struct action_job {
    int loop_index;
    uint64_t request_id;
    edge_action *action;
} action_job;

static rt_status publish_message(edge_hub *hub, const char *subject, const ProtobufCMessage *m,
                                 const char *msg_id, bool *duplicate)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = rt_malloc(len ? len : 1);
    protobuf_c_message_pack(m, buf);
    rt_status s =
        rt_nats_js_publish(NULL, duplicate, hub->nats, subject, buf, (int)len, msg_id, 2000, 3);
    free(buf);
    return s;
}

static void run_action(void *arg, void *item)
{
    edge_hub *hub = arg;
    action_job *job = item;
    edge_action *a = job->action;
    bool duplicate = false;
    rt_status s = RT_OK;
    for (size_t i = 0; i < a->n_events && s == RT_OK; i++) {
        bool dup = false;
        s = publish_message(hub, a->subjects[i], a->events[i], a->event_ids[i], &dup);
        if (i == 0)
            duplicate = dup;
    }
    if (s != RT_OK)
        rt_log_warn("action not stored", "{s:s, s:s}", "subject", a->subjects[0], "error",
                    rt_error_message());
    if (s == RT_OK && a->fanout) {
        rt_room room;
        char subject[RT_ROOM_SUBJECT_MAX];
        if (rt_room_parse(&room, a->fanout_room) == RT_OK) {
            rt_room_subject(subject, sizeof(subject), "rt.v1.room", &room);
            if (publish_message(hub, subject, &a->fanout->base, a->fanout_msg_id, NULL) != RT_OK)
                rt_log_warn("action stored but not shown in its room", "{s:s, s:s}", "room",
                            a->fanout_room, "error", rt_error_message());
        }
    }
    if (loops_enter(hub)) {
        edge_loop_post_action_done(hub->loops[job->loop_index], job->request_id, s, duplicate);
        loops_leave(hub);
    }
    edge_action_free(a);
    free(a);
    free(job);
}

static void discard_action(void *arg, void *item)
{
    action_job *job = item;
    (void)arg;
    edge_action_free(job->action);
    free(job->action);
    free(job);
}

void edge_hub_publish_action(edge_hub *hub, int loop_index, uint64_t request_id, uint64_t order_key,
                             edge_action *action)
{
    action_job *job = rt_calloc(1, sizeof(*job));
    job->loop_index = loop_index;
    job->request_id = request_id;
    job->action = action;
    uint64_t k = order_key * 0x9E3779B97F4A7C15ull + (uint64_t)loop_index;
    if (rt_workers_submit(hub->publishers[(k >> 32) % PUBLISHERS], job) != RT_OK) {
        discard_action(hub, job);
        if (loops_enter(hub)) {
            edge_loop_post_action_done(hub->loops[loop_index], request_id, RT_ERR_UNAVAILABLE,
                                       false);
            loops_leave(hub);
        }
    }
}

rt_status edge_hub_publish(edge_hub *hub, const char *subject, const void *data, size_t len)
{
    natsStatus s = natsConnection_Publish(rt_nats_connection(hub->nats), subject, data, (int)len);
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
    for (int i = 0; i < PUBLISHERS && s == RT_OK; i++)
        s = rt_workers_create(&hub->publishers[i], 1, 100000, run_action, discard_action, hub);
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
                          .creds_file = c->nats_creds_file,
                          /* Thousands of room subscriptions share a few
                           * threads instead of one thread each. */
                          .delivery_threads = 4,
                          .on_reconnected = on_nats_reconnected,
                          .on_slow_consumer = on_nats_slow_consumer,
                          .callback_arg = hub};
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
    bool changed = strcmp(epoch, hub->epoch) != 0 && hub->epoch[0];
    snprintf(hub->epoch, sizeof(hub->epoch), "%s", epoch);
    hub->stream_ready = true;
    pthread_mutex_unlock(&hub->lock);
    if (changed) {
        /* Sequences start again: every room's position is stale, and so is
         * what clients hold. They are closed 1012; resuming with the old
         * epoch tells them recovered:false (reload state). */
        rt_log_warn("ROOMS stream was recreated; new epoch, rooms reset", "{s:s}", "epoch", epoch);
        rt_counter_inc(hub->metrics->epoch_resets);
        each_room(hub, JOB_LOOKUP, true);
    }
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
    room_free(hr); /* the workers are stopped: no other reference */
}

void edge_hub_destroy(edge_hub *hub)
{
    if (!hub)
        return;
    atomic_store(&hub->stopping, true);
    rt_workers_destroy(hub->lookups);
    for (int i = 0; i < PUBLISHERS; i++)
        rt_workers_destroy(hub->publishers[i]);
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
