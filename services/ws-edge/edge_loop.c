/*
 * edge_loop: see edge_loop.h. This file holds the libwebsockets protocol
 * callback (HTTP admin endpoints, the upgrade checks, browser frames), the
 * per-connection state machine, the loop-local rooms and send queues, and the
 * inbox other threads post to.
 *
 * Fan-out: a room message arrives once per loop (edge_msg, already rendered);
 * each active member's send queue gets a pointer to it. On WRITEABLE a
 * connection writes as many queued messages as fit in one frame, joined by
 * '\n' (JSON Lines), so a connection that fell behind catches up with few
 * syscalls. A queue over WS_SEND_QUEUE_MAX_BYTES closes the connection 1013.
 */
#include "edge_loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_actions.h"
#include "edge_frames.h"
#include "edge_hub.h"
#include "edge_limits.h"
#include "edge_static.h"
#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_map.h"
#include "rt_pbjson.h"
#include "rt_proto.h"
#include "rt_time.h"

#define RECENT_MAX 64                /* per room: messages kept for a new member's seam */
#define FRAME_MAX (64 * 1024)        /* bytes of queued messages joined into one frame */
#define FRAME_CHECK_ROOM (8 * 1024)  /* bigger writes first ask the kernel for room */
#define TICK_US (100 * 1000)         /* RPC deadlines and drain pacing */
#define RATE_STRIKES_MAX 10          /* rate-limited frames tolerated ... */
#define RATE_STRIKES_WINDOW_MS 10000 /* ... within this window before close 4429 */
#define AUTHZ_CACHE_MAX 200000

#define VERR(x) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x

/* ---- types ---- */

typedef struct edge_room edge_room;

typedef struct edge_member {
    edge_room *room; /* NULL: free slot */
    uint32_t index;  /* position in room->members */
    bool active;     /* false until "subscribed" was sent */
    char sub_id[EDGE_CLIENT_ID_MAX + 1];
    /* The subscribe's since, answered when the room's position is known. */
    bool has_since;
    uint64_t since_seq;
    char *since_epoch; /* NULL when !has_since */
    bool replaying;    /* history is being read; live messages wait in the ring */
    bool in_presence;  /* counted in edge_presence (course: and lesson: rooms) */
    bool answered;     /* "subscribed" was sent */
    /* Catching up (inactive): the last seq queued to this member, and the
     * history still to queue as the socket drains. */
    uint64_t last_seq;
    edge_replay *backlog;
    size_t backlog_next;
} edge_member;

typedef enum conn_state {
    CONN_AWAIT_AUTH = 0,
    CONN_AUTHENTICATING,
    CONN_OPEN,
    CONN_CLOSING,
} conn_state;

typedef struct edge_conn {
    struct lws *wsi;
    edge_loop *loop;
    uint64_t id;
    conn_state state;
    bool refreshing;
    bool counted;
    uint8_t role;
    uint16_t close_code; /* set when we decided to close */
    uint16_t peer_close_code;
    const char *close_reason;
    char user_id[RT_ID_MAX + 1];
    int64_t expires_ms;
    edge_member *rooms;
    uint16_t n_rooms, cap_rooms, pending_subs;
    uint16_t n_backlogs;       /* members with history still to queue */
    struct action_queue *actq; /* actions waiting behind one being authorized */
    edge_msg **queue;          /* ring */
    uint32_t q_head, q_len, q_cap;
    size_t q_bytes;
    char *rx;
    size_t rx_len, rx_cap;
    edge_bucket bucket;
    edge_strikes rate_strikes, bad_strikes;
    int64_t last_rx_ms;   /* last frame or pong from the peer */
    bool ping_pending;    /* a ping is to be written */
    bool ping_sent;       /* a ping is out and unanswered */
    int64_t ping_sent_ms; /* when it went out */
    bool dirty;           /* in loop->dirty: room messages to write */
} edge_conn;

typedef struct edge_session {
    bool is_ws;
    union {
        rt_admin_http http;
        edge_conn conn;
    };
} edge_session;

typedef struct room_member_ref {
    edge_conn *conn;
    uint16_t slot; /* index in conn->rooms */
} room_member_ref;

struct edge_room {
    char name[RT_ROOM_NAME_MAX];
    char course_id[RT_ID_MAX + 1]; /* course: and lesson: rooms (presence); else "" */
    const char *lesson_id;         /* inside name for lesson: rooms; else "" */
    room_member_ref *members;
    uint32_t n_members, cap_members;
    bool ready;
    uint64_t last_seq;
    edge_msg *recent[RECENT_MAX]; /* ring of the latest messages */
    uint32_t recent_start, recent_count;
};

typedef enum rpc_kind {
    RPC_VERIFY,
    RPC_REFRESH,
    RPC_AUTHORIZE,      /* subscribe */
    RPC_ACTION_AUTHZ,   /* may this user act in the course? */
    RPC_ACTION_PUBLISH, /* the hub is storing the action's events */
    RPC_NOTIFY_LIST,    /* notify.v1.list */
} rpc_kind;

typedef struct pending_rpc {
    uint64_t conn_id;
    rpc_kind kind;
    uint64_t deadline_ns;
    char client_id[EDGE_CLIENT_ID_MAX + 1];
    char room[RT_ROOM_NAME_MAX];
    bool has_since;
    uint64_t since_seq;
    char since_epoch[EDGE_EPOCH_MAX + 1];
    char course_id[RT_ID_MAX + 1]; /* from the authorize reply (presence) */
    /* actions */
    edge_action *action; /* owned while authorizing (RPC_ACTION_AUTHZ) */
    char event_id[EDGE_EVENT_ID_MAX + 1];
    const char *entity_key;
    char entity_id[EDGE_EVENT_ID_MAX + 1];
} pending_rpc;

static void pending_free(pending_rpc *p)
{
    if (p && p->action) {
        edge_action_free(p->action);
        free(p->action);
    }
    free(p);
}

/* A remembered "allowed" (authz_cache). */
typedef struct authz_entry {
    uint64_t expires_ns;
    char course_id[RT_ID_MAX + 1];
    int member_role; /* Unpuzzle__Rt__V1__MemberRole in that course */
} authz_entry;

typedef struct deadline {
    int64_t at_ms;
    uint64_t conn_id;
} deadline;

typedef struct deadline_fifo {
    deadline *items;
    size_t head, len, cap;
} deadline_fifo;

typedef struct deadline_heap {
    deadline *items;
    size_t len, cap;
} deadline_heap;

typedef enum ev_type {
    EV_ROOM_MSG = 1,
    EV_ROOM_READY,
    EV_RPC_REPLY,
    EV_INVALIDATE,
    EV_DRAIN,
    EV_REPLAY,
    EV_ROOMS_RESET,
    EV_ACTION_DONE
} ev_type;

typedef struct loop_event {
    ev_type type;
    char key[RT_ROOM_NAME_MAX]; /* room, or user id for EV_INVALIDATE ("" = lessons) */
    edge_msg *msg;
    uint64_t value; /* seq, request id, or drain ms */
    natsMsg *reply;
    edge_replay *replay;
    rt_status status; /* EV_ACTION_DONE */
    bool duplicate;
} loop_event;

struct edge_loop {
    int index;
    const edge_config *cfg;
    edge_hub *hub;
    edge_presence *presence;
    edge_metrics *m;
    rt_metrics *registry;
    rt_admin_ready_fn ready;
    void *ready_arg;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    int listen_fd;
    int port;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    atomic_size_t n_conns;

    pthread_mutex_t inbox_lock;
    loop_event *inbox, *inbox_spare;
    size_t inbox_len, inbox_cap, spare_cap;

    /* loop thread only */
    rt_strmap *rooms;       /* name -> edge_room */
    rt_u64map *conns;       /* id -> edge_conn */
    rt_u64map *pending;     /* request id -> pending_rpc */
    rt_strmap *authz_cache; /* "user\x1froom" -> authz_entry */
    uint64_t next_conn_id, next_request_id;
    lws_sorted_usec_list_t sul_tick;
    unsigned char *scratch;
    size_t scratch_cap;
    bool draining;
    uint64_t drain_start_ns, drain_ms;
    uint64_t *drain_ids;
    size_t drain_total, drain_done;
    /* Deadlines live in the loop, not in one lws timer per connection: lws
     * 4.1 keeps timers in a sorted list, so 15,000 per-connection timers made
     * every insertion O(n) and a connect storm quadratic. */
    deadline_fifo auth_deadlines; /* constant timeout: FIFO order = deadline order */
    deadline_heap expiries;       /* token expiries, min-heap */
    unsigned tick_count;
    /* Connections that got room messages since the last flush, by id: a
     * deferred flush must not touch a connection closed meanwhile. */
    uint64_t *dirty;
    uint64_t last_flush_ns;
    bool flush_scheduled;
    lws_sorted_usec_list_t sul_flush;
    size_t n_dirty, cap_dirty;
    uint64_t local_deliveries, local_frames, local_bytes; /* flushed to metrics per tick */
    lws_retry_bo_t no_validity; /* all zero: lws keeps no per-connection validity timer */
    struct lws_protocols protocols[3];
    struct lws_extension extensions[2];
    struct lws_context_creation_info info;
};

/* ---- inbox (any thread) ---- */

static void post(edge_loop *loop, const loop_event *ev)
{
    pthread_mutex_lock(&loop->inbox_lock);
    if (loop->inbox_len == loop->inbox_cap) {
        loop->inbox_cap = loop->inbox_cap ? loop->inbox_cap * 2 : 256;
        loop->inbox = rt_realloc(loop->inbox, loop->inbox_cap * sizeof(loop_event));
    }
    loop->inbox[loop->inbox_len++] = *ev;
    bool first = loop->inbox_len == 1;
    pthread_mutex_unlock(&loop->inbox_lock);
    /* One wake-up per batch: later posts find the loop already woken. */
    if (first && loop->ctx)
        lws_cancel_service(loop->ctx);
}

void edge_loop_post_room_message(edge_loop *loop, const char *room, edge_msg *msg)
{
    loop_event ev = {.type = EV_ROOM_MSG, .msg = msg};
    snprintf(ev.key, sizeof(ev.key), "%s", room);
    post(loop, &ev);
}

void edge_loop_post_room_ready(edge_loop *loop, const char *room, uint64_t last_seq)
{
    loop_event ev = {.type = EV_ROOM_READY, .value = last_seq};
    snprintf(ev.key, sizeof(ev.key), "%s", room);
    post(loop, &ev);
}

void edge_loop_post_rpc_reply(edge_loop *loop, uint64_t request_id, natsMsg *reply)
{
    loop_event ev = {.type = EV_RPC_REPLY, .value = request_id, .reply = reply};
    post(loop, &ev);
}

void edge_replay_free(edge_replay *rp)
{
    if (!rp)
        return;
    for (size_t i = 0; i < rp->n; i++)
        edge_msg_unref(rp->msgs[i]);
    free(rp->msgs);
    free(rp);
}

void edge_loop_post_replay(edge_loop *loop, edge_replay *replay)
{
    loop_event ev = {.type = EV_REPLAY, .replay = replay};
    post(loop, &ev);
}

void edge_loop_post_invalidate(edge_loop *loop, const char *user_id)
{
    loop_event ev = {.type = EV_INVALIDATE};
    snprintf(ev.key, sizeof(ev.key), "%s", user_id ? user_id : "");
    post(loop, &ev);
}

void edge_loop_post_action_done(edge_loop *loop, uint64_t request_id, rt_status status,
                                bool duplicate)
{
    loop_event ev = {
        .type = EV_ACTION_DONE, .value = request_id, .status = status, .duplicate = duplicate};
    post(loop, &ev);
}

void edge_loop_post_rooms_reset(edge_loop *loop)
{
    loop_event ev = {.type = EV_ROOMS_RESET};
    post(loop, &ev);
}

void edge_loop_post_drain(edge_loop *loop, int drain_ms)
{
    loop_event ev = {.type = EV_DRAIN, .value = (uint64_t)drain_ms};
    post(loop, &ev);
}

size_t edge_loop_connections(const edge_loop *loop)
{
    return atomic_load(&((edge_loop *)loop)->n_conns);
}

int edge_loop_port(const edge_loop *loop)
{
    return loop->port;
}

/* ---- deadlines (loop thread) ---- */

static void fifo_push(deadline_fifo *f, deadline d)
{
    if (f->len == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        deadline *items = rt_malloc(cap * sizeof(deadline));
        for (size_t i = 0; i < f->len; i++)
            items[i] = f->items[(f->head + i) % f->cap];
        free(f->items);
        f->items = items;
        f->cap = cap;
        f->head = 0;
    }
    f->items[(f->head + f->len) % f->cap] = d;
    f->len++;
}

static bool fifo_pop_due(deadline_fifo *f, int64_t now_ms, deadline *out)
{
    if (!f->len || f->items[f->head].at_ms > now_ms)
        return false;
    *out = f->items[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return true;
}

static void heap_push(deadline_heap *h, deadline d)
{
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->items = rt_realloc(h->items, h->cap * sizeof(deadline));
    }
    size_t i = h->len++;
    while (i && h->items[(i - 1) / 2].at_ms > d.at_ms) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = d;
}

static bool heap_pop_due(deadline_heap *h, int64_t now_ms, deadline *out)
{
    if (!h->len || h->items[0].at_ms > now_ms)
        return false;
    *out = h->items[0];
    deadline last = h->items[--h->len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && h->items[l].at_ms < (m == i ? last.at_ms : h->items[m].at_ms))
            m = l;
        if (r < h->len && h->items[r].at_ms < (m == i ? last.at_ms : h->items[m].at_ms))
            m = r;
        if (m == i)
            break;
        h->items[i] = h->items[m];
        i = m;
    }
    if (h->len)
        h->items[i] = last;
    return true;
}

/* ---- send queue ---- */

static void conn_close(edge_conn *c, uint16_t code, const char *reason);
static int conn_write_frame(edge_loop *loop, edge_conn *c);
static void conn_pump(edge_conn *c);
static void member_drop_backlog(edge_conn *c, edge_member *mb);
static void actions_authorized(edge_conn *c);
static void actions_free(edge_conn *c);

/* Queues `msg` (takes a new reference). With `batch`, the connection is
 * written once at the end of the inbox batch (flush_dirty), directly, without
 * a WRITEABLE round trip; replies use the WRITEABLE callback. */
static void conn_send_ex(edge_conn *c, edge_msg *msg, bool batch)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->q_bytes + msg->len + 1 > (size_t)c->loop->cfg->send_queue_max_bytes) {
        rt_counter_inc(c->loop->m->slow_consumers);
        conn_close(c, 1013, "send queue full; reconnect with since");
        return;
    }
    if (c->q_len == c->q_cap) {
        uint32_t cap = c->q_cap ? c->q_cap * 2 : 8;
        edge_msg **q = rt_malloc(cap * sizeof(edge_msg *));
        for (uint32_t i = 0; i < c->q_len; i++)
            q[i] = c->queue[(c->q_head + i) % c->q_cap];
        free(c->queue);
        c->queue = q;
        c->q_cap = cap;
        c->q_head = 0;
    }
    c->queue[(c->q_head + c->q_len) % c->q_cap] = edge_msg_ref(msg);
    c->q_len++;
    c->q_bytes += msg->len + 1;
    if (batch) {
        edge_loop *loop = c->loop;
        if (!c->dirty) {
            if (loop->n_dirty == loop->cap_dirty) {
                loop->cap_dirty = loop->cap_dirty ? loop->cap_dirty * 2 : 1024;
                loop->dirty = rt_realloc(loop->dirty, loop->cap_dirty * sizeof(uint64_t));
            }
            loop->dirty[loop->n_dirty++] = c->id;
            c->dirty = true;
        }
        /* Half the cap waiting for the coalescing window: write now rather
         * than close a reader that keeps up (a burst of large messages). */
        if (c->q_bytes > (size_t)loop->cfg->send_queue_max_bytes / 2 && !c->ping_pending &&
            !lws_partial_buffered(c->wsi)) {
            if (conn_write_frame(loop, c) < 0) {
                c->state = CONN_CLOSING;
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            } else if (c->q_len) {
                lws_callback_on_writable(c->wsi);
            }
        }
    } else if (c->q_len == 1) {
        lws_callback_on_writable(c->wsi);
    }
}

static void conn_send(edge_conn *c, edge_msg *msg)
{
    conn_send_ex(c, msg, false);
}

/* Queues a reply rendered by edge_render_* (takes ownership of text). The
 * length comes from the text itself: C leaves the order of argument
 * evaluation open, so a length written by the renderer inside the same call
 * could be read before it is set. */
static void conn_send_text(edge_conn *c, char *text)
{
    if (!text)
        return;
    size_t len = strlen(text);
    edge_msg *m = edge_msg_new(text, len, 0, 0, 0);
    free(text);
    conn_send(c, m);
    edge_msg_unref(m);
}

static void conn_error(edge_conn *c, const char *id, const char *code, const char *message,
                       const char *room)
{
    size_t len = 0;
    conn_send_text(c, edge_render_error(&len, id, code, message, room));
}

static void queue_clear(edge_conn *c)
{
    for (uint32_t i = 0; i < c->q_len; i++)
        edge_msg_unref(c->queue[(c->q_head + i) % c->q_cap]);
    free(c->queue);
    c->queue = NULL;
    c->q_len = c->q_cap = c->q_head = 0;
    c->q_bytes = 0;
}

/* Decides to close; the close frame goes out on the next WRITEABLE, after
 * whatever is queued (an error frame before 4401), except for 1013 and 1009
 * where the queue is dropped. */
static void conn_close(edge_conn *c, uint16_t code, const char *reason)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    c->close_code = code;
    c->close_reason = reason;
    if (code == 1013 || code == 1009 || code == 1012)
        queue_clear(c);
    lws_callback_on_writable(c->wsi);
}

/* Free room in the socket's send buffer (SO_SNDBUF minus what is queued). */
static size_t socket_room(edge_conn *c)
{
    int fd = lws_get_socket_fd(c->wsi), sndbuf = 0, outq = 0;
    socklen_t len = sizeof(sndbuf);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 ||
        ioctl(fd, SIOCOUTQ, &outq) != 0)
        return FRAME_MAX;
    return sndbuf > outq ? (size_t)(sndbuf - outq) : 0;
}

/* Writes one frame: as many queued messages as fit (at least one), joined
 * by '\n'. A large write is cut to what the socket takes now: whatever it
 * does not take, lws would copy and hold (10,000 clients resuming at once
 * would otherwise cost a copy of each one's history); our queue holds only
 * shared references. Returns -1 if the socket failed. */
static int conn_write_frame(edge_loop *loop, edge_conn *c)
{
    size_t total = 0, limit = FRAME_MAX;
    uint32_t n = 0;
    if (c->q_bytes > FRAME_CHECK_ROOM) {
        size_t room = socket_room(c);
        if (room < limit)
            limit = room;
    }
    while (n < c->q_len) {
        edge_msg *m = c->queue[(c->q_head + n) % c->q_cap];
        size_t add = m->len + (n ? 1 : 0);
        if (n && total + add > limit)
            break;
        total += add;
        n++;
    }
    if (loop->scratch_cap < LWS_PRE + total) {
        loop->scratch_cap = LWS_PRE + total;
        loop->scratch = rt_realloc(loop->scratch, loop->scratch_cap);
    }
    unsigned char *p = loop->scratch + LWS_PRE;
    uint64_t oldest_ns = 0;
    uint32_t deliveries = 0;
    for (uint32_t i = 0; i < n; i++) {
        edge_msg *m = c->queue[c->q_head];
        if (i)
            *p++ = '\n';
        memcpy(p, m->data, m->len);
        p += m->len;
        if (m->received_ns) {
            if (!deliveries)
                oldest_ns = m->received_ns;
            deliveries++;
        }
        c->q_bytes -= m->len + 1;
        edge_msg_unref(m);
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
    }
    if (lws_write(c->wsi, loop->scratch + LWS_PRE, total, LWS_WRITE_TEXT) < (int)total)
        return -1;
    /* One observation per frame, of its oldest room message: the worst
     * latency in the frame, without an atomic per delivery. */
    if (deliveries)
        rt_histogram_observe(loop->m->fanout_seconds,
                             (double)(rt_time_mono_ns() - oldest_ns) / 1e9);
    loop->local_frames++;
    loop->local_bytes += total;
    loop->local_deliveries += deliveries;
    return 0;
}

static void flush_local_counters(edge_loop *loop)
{
    rt_counter_add(loop->m->frames_out, loop->local_frames);
    rt_counter_add(loop->m->bytes_out, loop->local_bytes);
    rt_counter_add(loop->m->deliveries, loop->local_deliveries);
    loop->local_frames = loop->local_bytes = loop->local_deliveries = 0;
}

static int conn_writeable(edge_loop *loop, edge_conn *c)
{
    if (c->ping_pending && !c->close_code) {
        /* A one-byte payload: lws 4.1 reports an empty pong to nobody. */
        unsigned char ping[LWS_PRE + 1];
        ping[LWS_PRE] = 'p';
        c->ping_pending = false;
        c->ping_sent = true;
        c->ping_sent_ms = rt_time_now_ms();
        if (lws_write(c->wsi, ping + LWS_PRE, 1, LWS_WRITE_PING) < 0)
            return -1;
        if (c->q_len)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->q_len == 0) {
        if (c->close_code) {
            lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                             (unsigned char *)c->close_reason,
                             c->close_reason ? strlen(c->close_reason) : 0);
            return -1;
        }
        return 0;
    }
    if (conn_write_frame(loop, c) < 0)
        return -1;
    if (c->n_backlogs)
        conn_pump(c);
    if (c->q_len || c->close_code)
        lws_callback_on_writable(c->wsi);
    return 0;
}

static void flush_dirty(edge_loop *loop);

static void flush_timer(lws_sorted_usec_list_t *sul)
{
    edge_loop *loop = lws_container_of(sul, edge_loop, sul_flush);
    loop->flush_scheduled = false;
    flush_dirty(loop);
}

/* Flushes now, or, if the last flush was less than WS_COALESCE_MS ago, at
 * that mark: under a high message rate each write then carries several
 * messages (fewer syscalls here and in every client), while a quiet room
 * still gets each message at once. */
static void flush_soon(edge_loop *loop)
{
    if (!loop->n_dirty || loop->flush_scheduled)
        return;
    uint64_t now = rt_time_mono_ns();
    uint64_t window = (uint64_t)loop->cfg->coalesce_ms * 1000000u;
    if (now - loop->last_flush_ns >= window) {
        flush_dirty(loop);
        return;
    }
    loop->flush_scheduled = true;
    lws_sul_schedule(loop->ctx, 0, &loop->sul_flush, flush_timer,
                     (lws_usec_t)((loop->last_flush_ns + window - now) / 1000));
}

/* Writes the connections that got room messages since the last flush, directly:
 * at this point their sockets are almost always writable, and skipping the
 * WRITEABLE round trip saves two epoll_ctl calls per delivery. */
static void flush_dirty(edge_loop *loop)
{
    loop->last_flush_ns = rt_time_mono_ns();
    for (size_t i = 0; i < loop->n_dirty; i++) {
        edge_conn *c = rt_u64map_get(loop->conns, loop->dirty[i]);
        if (!c)
            continue;
        c->dirty = false;
        if (c->state == CONN_CLOSING || !c->q_len)
            continue;
        if (c->ping_pending || lws_partial_buffered(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (conn_write_frame(loop, c) < 0) {
            c->state = CONN_CLOSING;
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            continue;
        }
        if (c->n_backlogs)
            conn_pump(c);
        if (c->q_len)
            lws_callback_on_writable(c->wsi);
    }
    loop->n_dirty = 0;
}

/* ---- rooms (loop thread) ---- */

static void room_recent_push(edge_room *r, edge_msg *msg)
{
    if (r->recent_count == RECENT_MAX) {
        edge_msg_unref(r->recent[r->recent_start]);
        r->recent_start = (r->recent_start + 1) % RECENT_MAX;
        r->recent_count--;
    }
    r->recent[(r->recent_start + r->recent_count) % RECENT_MAX] = edge_msg_ref(msg);
    r->recent_count++;
}

static void room_free(edge_loop *loop, edge_room *r)
{
    for (uint32_t i = 0; i < r->recent_count; i++)
        edge_msg_unref(r->recent[(r->recent_start + i) % RECENT_MAX]);
    free(r->members);
    rt_strmap_remove(loop->rooms, r->name);
    rt_gauge_add(loop->m->rooms, -1);
    edge_hub_leave(loop->hub, loop->index, r->name);
    free(r);
}

static void send_subscribed_as(edge_conn *c, const char *sub_id, const char *room, uint64_t seq,
                               bool recovered)
{
    char epoch[EDGE_EPOCH_MAX + 1];
    size_t len = 0;
    edge_hub_epoch(c->loop->hub, epoch);
    conn_send_text(c, edge_render_subscribed(&len, sub_id, room, epoch, seq, recovered));
}

/* Answers a subscribe at room position `seq`, replaying history first when
 * the client comes back with a since behind it (same epoch). Returns true
 * when a replay was started: the member stays inactive until it ends. */
static bool answer_subscribe(edge_conn *c, edge_member *mb, const char *room, uint64_t seq,
                             bool has_since, uint64_t since_seq, const char *since_epoch)
{
    char epoch[EDGE_EPOCH_MAX + 1];
    edge_hub_epoch(c->loop->hub, epoch);
    bool same_epoch = has_since && strcmp(since_epoch, epoch) == 0;
    if (same_epoch && since_seq < seq) {
        mb->replaying = true;
        mb->answered = false;
        mb->last_seq = since_seq;
        edge_hub_replay(c->loop->hub, c->loop->index, c->id, room, since_seq, seq);
        return true;
    }
    /* Nothing to replay: recovered unless the client came from another
     * epoch or claims a position the room never reached. */
    send_subscribed_as(c, mb->sub_id, room, seq, !has_since || (same_epoch && since_seq == seq));
    mb->answered = true;
    mb->last_seq = seq;
    return false;
}

/* For a re-subscribe to a joined room (no replay: the member is live). */
static void send_subscribed(edge_conn *c, const char *sub_id, const char *room, uint64_t seq,
                            bool has_since, uint64_t since_seq, const char *since_epoch)
{
    char epoch[EDGE_EPOCH_MAX + 1];
    edge_hub_epoch(c->loop->hub, epoch);
    bool recovered = !has_since || (strcmp(since_epoch, epoch) == 0 && since_seq == seq);
    send_subscribed_as(c, sub_id, room, seq, recovered);
}

static void conn_join(edge_conn *c, const pending_rpc *req)
{
    edge_loop *loop = c->loop;
    edge_room *r = rt_strmap_get(loop->rooms, req->room);

    if (!r) {
        bool known = false;
        uint64_t last = 0;
        r = rt_calloc(1, sizeof(*r));
        snprintf(r->name, sizeof(r->name), "%s", req->room);
        r->lesson_id = strncmp(r->name, "lesson:", 7) == 0 ? r->name + 7 : "";
        rt_strmap_put(loop->rooms, r->name, r);
        rt_gauge_add(loop->m->rooms, 1);
        edge_hub_join(loop->hub, loop->index, r->name, &known, &last);
        r->ready = known;
        r->last_seq = last;
    }
    uint16_t slot = 0;
    while (slot < c->cap_rooms && c->rooms[slot].room)
        slot++;
    if (slot == c->cap_rooms) {
        uint16_t cap = c->cap_rooms ? (uint16_t)(c->cap_rooms * 2) : 2;
        c->rooms = rt_realloc(c->rooms, cap * sizeof(edge_member));
        memset(c->rooms + c->cap_rooms, 0, (cap - c->cap_rooms) * sizeof(edge_member));
        c->cap_rooms = cap;
    }
    if (r->n_members == r->cap_members) {
        r->cap_members = r->cap_members ? r->cap_members * 2 : 4;
        r->members = rt_realloc(r->members, r->cap_members * sizeof(room_member_ref));
    }
    edge_member *mb = &c->rooms[slot];
    mb->room = r;
    mb->index = r->n_members;
    mb->active = r->ready;
    snprintf(mb->sub_id, sizeof(mb->sub_id), "%s", req->client_id);
    if (!r->ready && req->has_since) {
        mb->has_since = true;
        mb->since_seq = req->since_seq;
        mb->since_epoch = rt_strdup(req->since_epoch);
    }
    r->members[r->n_members++] = (room_member_ref){c, slot};
    c->n_rooms++;
    if (!r->course_id[0] && req->course_id[0])
        snprintf(r->course_id, sizeof(r->course_id), "%s", req->course_id);
    if (r->course_id[0]) {
        edge_presence_join(loop->presence, c->user_id, r->course_id, r->lesson_id,
                           rt_time_now_ms());
        mb->in_presence = true;
    }
    if (r->ready) {
        if (answer_subscribe(c, mb, r->name, r->last_seq, req->has_since, req->since_seq,
                             req->since_epoch))
            mb->active = false;
    }
    /* else: "subscribed" follows when the hub announces the room's position. */
}

static void conn_leave_slot(edge_conn *c, uint16_t slot)
{
    edge_member *mb = &c->rooms[slot];
    edge_room *r = mb->room;
    uint32_t i = mb->index;

    r->members[i] = r->members[--r->n_members];
    if (i < r->n_members) {
        room_member_ref moved = r->members[i];
        moved.conn->rooms[moved.slot].index = i;
    }
    if (mb->in_presence)
        edge_presence_leave(c->loop->presence, c->user_id, r->course_id, r->lesson_id);
    member_drop_backlog(c, mb);
    free(mb->since_epoch);
    memset(mb, 0, sizeof(*mb));
    c->n_rooms--;
    if (r->n_members == 0)
        room_free(c->loop, r);
}

static int conn_find_room(edge_conn *c, const char *room)
{
    for (uint16_t i = 0; i < c->cap_rooms; i++)
        if (c->rooms[i].room && strcmp(c->rooms[i].room->name, room) == 0)
            return i;
    return -1;
}

static void room_deliver(edge_loop *loop, edge_room *r, edge_msg *msg)
{
    (void)loop;
    for (uint32_t i = 0; i < r->n_members;) {
        room_member_ref ref = r->members[i];
        uint32_t before = r->n_members;
        /* An action's echo skips the connection it came from. */
        if (ref.conn->rooms[ref.slot].active && ref.conn->id != msg->origin_conn)
            conn_send_ex(ref.conn, msg, true);
        /* A 1013 close does not leave the room until CLOSED, so members do
         * not move under us; guard anyway. */
        if (r->n_members == before)
            i++;
    }
}

static void on_room_message(edge_loop *loop, const char *name, edge_msg *msg)
{
    edge_room *r = rt_strmap_get(loop->rooms, name);
    if (!r)
        return;
    if (r->ready && msg->seq <= r->last_seq) {
        rt_counter_inc(loop->m->dropped_duplicate);
        return;
    }
    if (!r->ready && r->recent_count == RECENT_MAX)
        rt_counter_inc(loop->m->dropped_unready);
    room_recent_push(r, msg);
    if (!r->ready)
        return;
    r->last_seq = msg->seq;
    room_deliver(loop, r, msg);
}

static void on_room_ready(edge_loop *loop, const char *name, uint64_t last_seq)
{
    edge_room *r = rt_strmap_get(loop->rooms, name);
    if (!r || r->ready)
        return;
    r->ready = true;
    r->last_seq = last_seq;
    for (uint32_t i = 0; i < r->n_members; i++) {
        room_member_ref ref = r->members[i];
        edge_member *mb = &ref.conn->rooms[ref.slot];
        if (mb->active || mb->replaying)
            continue;
        mb->active = !answer_subscribe(ref.conn, mb, r->name, last_seq, mb->has_since,
                                       mb->since_seq, mb->since_epoch ? mb->since_epoch : "");
        free(mb->since_epoch);
        mb->since_epoch = NULL;
        mb->has_since = false;
    }
    /* What arrived while the position was being looked up, past it. */
    for (uint32_t k = 0; k < r->recent_count; k++) {
        edge_msg *m = r->recent[(r->recent_start + k) % RECENT_MAX];
        if (m->seq > r->last_seq) {
            r->last_seq = m->seq;
            room_deliver(loop, r, m);
        }
    }
}

/* ---- catching a resuming member up ----
 * A resuming member gets "subscribed", the history the hub read for it, what
 * the room received meanwhile, then live messages, in order. The history is
 * queued as the socket drains (at most half the send queue at a time), so a
 * long resume never trips WS_SEND_QUEUE_MAX_BYTES; and when the room's ring
 * no longer reaches back to where the member is, the hub is asked for the
 * rest (another replay) instead of anything being skipped. */

static void member_drop_backlog(edge_conn *c, edge_member *mb)
{
    if (!mb->backlog)
        return;
    edge_replay_free(mb->backlog);
    mb->backlog = NULL;
    c->n_backlogs--;
}

/* History done: what the ring holds after last_seq, else the hub again. */
static void member_catch_up(edge_conn *c, edge_member *mb)
{
    edge_room *r = mb->room;
    uint32_t k = 0;
    while (k < r->recent_count &&
           r->recent[(r->recent_start + k) % RECENT_MAX]->seq <= mb->last_seq)
        k++;
    if (mb->last_seq >= r->last_seq) {
        mb->active = true;
        return;
    }
    edge_msg *next = k < r->recent_count ? r->recent[(r->recent_start + k) % RECENT_MAX] : NULL;
    if (next && next->prev_seq <= mb->last_seq) {
        for (; k < r->recent_count; k++) {
            edge_msg *m = r->recent[(r->recent_start + k) % RECENT_MAX];
            conn_send(c, m);
            mb->last_seq = m->seq;
        }
        mb->active = true;
        return;
    }
    /* The ring moved on while the history went out: fetch the rest. */
    rt_counter_inc(c->loop->m->resume_continued);
    mb->replaying = true;
    edge_hub_replay(c->loop->hub, c->loop->index, c->id, r->name, mb->last_seq, r->last_seq);
}

/* Queues history while the send queue is under half its cap. */
static void member_pump(edge_conn *c, edge_member *mb)
{
    edge_replay *rp = mb->backlog;
    size_t budget = (size_t)c->loop->cfg->send_queue_max_bytes / 2;
    while (mb->backlog_next < rp->n) {
        if (c->state == CONN_CLOSING)
            return;
        edge_msg *m = rp->msgs[mb->backlog_next];
        if (c->q_len && c->q_bytes + m->len + 1 > budget)
            return; /* more after the next write */
        conn_send(c, m);
        mb->last_seq = m->seq;
        mb->backlog_next++;
    }
    member_drop_backlog(c, mb);
    member_catch_up(c, mb);
}

static void conn_pump(edge_conn *c)
{
    for (uint16_t i = 0; i < c->cap_rooms && c->n_backlogs; i++)
        if (c->rooms[i].room && c->rooms[i].backlog)
            member_pump(c, &c->rooms[i]);
}

/* A replay arrived. Returns true when it was kept (as the member's backlog). */
static bool on_replay(edge_loop *loop, edge_replay *rp)
{
    edge_conn *c = rt_u64map_get(loop->conns, rp->conn_id);
    int slot = c ? conn_find_room(c, rp->room) : -1;
    if (slot < 0 || !c->rooms[slot].replaying || c->state == CONN_CLOSING)
        return false; /* left, or closed, meanwhile */
    edge_member *mb = &c->rooms[slot];
    mb->replaying = false;
    if (!mb->answered) {
        send_subscribed_as(c, mb->sub_id, mb->room->name, rp->until_seq, rp->recovered);
        mb->answered = true;
    }
    if (!rp->recovered) {
        /* Nothing older is pretended: on from the position we answered (a
         * continuation that cannot be read shows the client the gap in
         * prevSeq, and it resubscribes). */
        mb->last_seq = rp->until_seq;
        member_catch_up(c, mb);
        return false;
    }
    mb->backlog = rp;
    mb->backlog_next = 0;
    c->n_backlogs++;
    member_pump(c, mb);
    return true;
}

/* ---- RPCs ---- */

static void free_str_value(void *arg, const char *key, void *value);

static uint64_t rpc_send(edge_conn *c, rpc_kind kind, const char *subject,
                         const ProtobufCMessage *body, pending_rpc *template)
{
    edge_loop *loop = c->loop;
    uint64_t id = ++loop->next_request_id;
    size_t len = protobuf_c_message_get_packed_size(body);
    uint8_t stack[1024], *buf = len <= sizeof(stack) ? stack : rt_malloc(len);

    protobuf_c_message_pack(body, buf);
    rt_status s = edge_hub_request(loop->hub, loop->index, id, subject, buf, len);
    if (buf != stack)
        free(buf);
    if (s != RT_OK)
        return 0;
    pending_rpc *p = rt_malloc(sizeof(*p));
    *p = *template;
    p->conn_id = c->id;
    p->kind = kind;
    p->deadline_ns = rt_time_mono_ns() + (uint64_t)loop->cfg->rpc_timeout_ms * 1000000u;
    rt_u64map_put(loop->pending, id, p);
    return id;
}

static void send_verify(edge_conn *c, rpc_kind kind, const char *token, size_t token_len,
                        const char *client_id)
{
    Unpuzzle__Rt__V1__VerifyRequest req = UNPUZZLE__RT__V1__VERIFY_REQUEST__INIT;
    pending_rpc tmpl = {0};
    char *copy = rt_strndup(token, token_len);

    req.token = copy;
    snprintf(tmpl.client_id, sizeof(tmpl.client_id), "%s", client_id);
    uint64_t id = rpc_send(c, kind, "auth.v1.verify", &req.base, &tmpl);
    memset(copy, 0, token_len); /* tokens do not linger in memory */
    free(copy);
    if (!id) {
        conn_error(c, client_id, "internal", "authentication service unreachable; try again", NULL);
        if (kind == RPC_VERIFY)
            c->state = CONN_AWAIT_AUTH;
        else
            c->refreshing = false;
    }
}

static void arm_expiry(edge_conn *c)
{
    heap_push(&c->loop->expiries, (deadline){c->expires_ms, c->id});
}

static void on_verify_reply(edge_conn *c, const pending_rpc *p, natsMsg *reply)
{
    edge_loop *loop = c->loop;
    Unpuzzle__Rt__V1__VerifyReply *r = unpuzzle__rt__v1__verify_reply__unpack(
        NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
    bool refresh = p->kind == RPC_REFRESH;

    if (refresh)
        c->refreshing = false;
    if (c->state == CONN_CLOSING) {
        if (r)
            unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
        return;
    }
    if (!r || (!r->ok && (r->error == VERR(UNAVAILABLE) || r->error == VERR(INTERNAL)))) {
        rt_counter_inc(loop->m->auth_failed[VERR(INTERNAL)]);
        conn_error(c, p->client_id, "internal", "authentication unavailable; try again", NULL);
        if (!refresh)
            c->state = CONN_AWAIT_AUTH;
    } else if (!r->ok) {
        if ((size_t)r->error < 16)
            rt_counter_inc(loop->m->auth_failed[r->error]);
        conn_error(c, p->client_id, "unauthorized", r->message[0] ? r->message : "invalid token",
                   NULL);
        if (!refresh)
            conn_close(c, 4401, "unauthorized");
    } else if (refresh && strcmp(r->user_id, c->user_id) != 0) {
        conn_error(c, p->client_id, "unauthorized", "refresh token is for another user", NULL);
    } else {
        int64_t exp_ms = r->expires_at ? r->expires_at->seconds * 1000 : 0;
        rt_counter_inc(loop->m->auth_ok);
        snprintf(c->user_id, sizeof(c->user_id), "%s", r->user_id);
        c->role = (uint8_t)r->role;
        c->expires_ms = exp_ms;
        c->state = CONN_OPEN;
        arm_expiry(c);
        char conn_id[96];
        size_t len = 0;
        snprintf(conn_id, sizeof(conn_id), "%s-%llx", loop->cfg->edge_id,
                 (unsigned long long)c->id);
        conn_send_text(c, edge_render_auth_ok(&len, conn_id, c->user_id, r->role, exp_ms));
    }
    if (r)
        unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
}

static void authz_cache_key(char *out, size_t size, const char *user, const char *room)
{
    snprintf(out, size, "%s\x1f%s", user, room);
}

/* Remembers an allowed room decision for AUTHZ_CACHE_TTL_MS. */
static void authz_remember(edge_conn *c, const char *room,
                           const Unpuzzle__Rt__V1__AuthorizeReply *r)
{
    edge_loop *loop = c->loop;
    if (loop->cfg->authz_cache_ttl_ms <= 0)
        return;
    char key[RT_ID_MAX + RT_ROOM_NAME_MAX + 2];
    authz_cache_key(key, sizeof(key), c->user_id, room);
    if (rt_strmap_count(loop->authz_cache) >= AUTHZ_CACHE_MAX) {
        /* Bounded: start over rather than grow (it only costs RPCs). */
        rt_strmap_each(loop->authz_cache, free_str_value, NULL);
        rt_strmap_destroy(loop->authz_cache);
        loop->authz_cache = rt_strmap_create();
    }
    authz_entry *e = rt_calloc(1, sizeof(*e));
    e->expires_ns = rt_time_mono_ns() + (uint64_t)loop->cfg->authz_cache_ttl_ms * 1000000u;
    snprintf(e->course_id, sizeof(e->course_id), "%s", r->course_id ? r->course_id : "");
    e->member_role = r->member_role;
    free(rt_strmap_put(loop->authz_cache, key, e));
}

static void on_authorize_reply(edge_conn *c, const pending_rpc *p, natsMsg *reply)
{
    edge_loop *loop = c->loop;
    Unpuzzle__Rt__V1__AuthorizeReply *r = unpuzzle__rt__v1__authorize_reply__unpack(
        NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));

    c->pending_subs--;
    if (c->state != CONN_OPEN) {
        if (r)
            unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
        return;
    }
    if (!r || (!r->allowed && (r->reason == DENY(UNAVAILABLE) || r->reason == DENY(INTERNAL)))) {
        rt_counter_inc(loop->m->authorize_denied[DENY(UNAVAILABLE)]);
        conn_error(c, p->client_id, "internal", "authorization unavailable; try again", p->room);
    } else if (!r->allowed) {
        if ((size_t)r->reason < 8)
            rt_counter_inc(loop->m->authorize_denied[r->reason]);
        conn_error(c, p->client_id, "forbidden", "you may not join this room", p->room);
    } else {
        rt_counter_inc(loop->m->authorize_allowed);
        authz_remember(c, p->room, r);
        if (conn_find_room(c, p->room) < 0) {
            pending_rpc joined = *p;
            snprintf(joined.course_id, sizeof(joined.course_id), "%s",
                     r->course_id ? r->course_id : "");
            conn_join(c, &joined);
        }
    }
    if (r)
        unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
}

/* ---- actions ---- */

#define ROLE_ADMIN UNPUZZLE__RT__V1__ROLE__ROLE_ADMIN
#define MEMBER_INSTRUCTOR UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_INSTRUCTOR

/* A frame that was well-formed JSON but not a valid request: bad_request,
 * and it counts toward WS_MAX_BAD_FRAMES like a malformed frame. */
static void frame_rejected(edge_conn *c, const char *id, const char *why)
{
    edge_loop *loop = c->loop;
    rt_counter_inc(loop->m->bad_frames);
    conn_error(c, id, "bad_request", why, NULL);
    if (edge_strikes_add(&c->bad_strikes, (uint16_t)loop->cfg->max_bad_frames, 60000,
                         rt_time_mono_ns()))
        conn_close(c, 1008, "too many bad frames");
}

static void connection_id(char *out, size_t size, const edge_conn *c)
{
    snprintf(out, size, "%s-%llx", c->loop->cfg->edge_id, (unsigned long long)c->id);
}

/* Hands the action to the hub to store; the ack follows on EV_ACTION_DONE. */
static void action_publish(edge_conn *c, edge_action *a, const char *client_id)
{
    edge_loop *loop = c->loop;
    uint64_t id = ++loop->next_request_id;
    pending_rpc *p = rt_calloc(1, sizeof(*p));
    p->conn_id = c->id;
    p->kind = RPC_ACTION_PUBLISH;
    /* Publishing retries a timed-out store: allow for it. */
    p->deadline_ns = rt_time_mono_ns() + (uint64_t)loop->cfg->rpc_timeout_ms * 4000000u;
    snprintf(p->client_id, sizeof(p->client_id), "%s", client_id);
    snprintf(p->event_id, sizeof(p->event_id), "%s", a->event_ids[0]);
    p->entity_key = a->entity_key;
    snprintf(p->entity_id, sizeof(p->entity_id), "%s", a->entity_id);
    rt_u64map_put(loop->pending, id, p);
    edge_hub_publish_action(loop->hub, loop->index, id, c->id, a);
}

/* Instructors' actions need the instructor role in that course. */
static bool action_allowed(const edge_conn *c, const edge_action *a, int member_role)
{
    if (a->who != EDGE_ACTION_INSTRUCTOR)
        return true;
    return c->role == ROLE_ADMIN || member_role == MEMBER_INSTRUCTOR;
}

static void action_decided(edge_conn *c, edge_action *a, const char *client_id, int member_role)
{
    if (action_allowed(c, a, member_role)) {
        action_publish(c, a, client_id);
        return;
    }
    conn_error(c, client_id, "forbidden", "only an instructor of the course may do this", NULL);
    edge_action_free(a);
    free(a);
}

static void on_action_authz_reply(edge_conn *c, pending_rpc *p, natsMsg *reply)
{
    edge_loop *loop = c->loop;
    Unpuzzle__Rt__V1__AuthorizeReply *r =
        natsMsg_IsNoResponders(reply)
            ? NULL
            : unpuzzle__rt__v1__authorize_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                        (const uint8_t *)natsMsg_GetData(reply));
    if (c->state != CONN_OPEN) {
        /* closing: the action is dropped with the pending request */
    } else if (!r ||
               (!r->allowed && (r->reason == DENY(UNAVAILABLE) || r->reason == DENY(INTERNAL)))) {
        conn_error(c, p->client_id, "internal", "authorization unavailable; try again", NULL);
    } else if (!r->allowed) {
        if ((size_t)r->reason < 8)
            rt_counter_inc(loop->m->authorize_denied[r->reason]);
        conn_error(c, p->client_id, "forbidden", "you may not act in this course", NULL);
    } else {
        char room[RT_ROOM_NAME_MAX];
        snprintf(room, sizeof(room), "course:%s", p->action->course_id);
        authz_remember(c, room, r);
        edge_action *a = p->action;
        p->action = NULL; /* handed on */
        action_decided(c, a, p->client_id, r->member_role);
    }
    if (r)
        unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
    actions_authorized(c);
}

static void on_action_done(edge_loop *loop, uint64_t request_id, rt_status status, bool duplicate)
{
    pending_rpc *p = rt_u64map_remove(loop->pending, request_id);
    if (!p)
        return; /* timed out already: the client retries with the same id */
    edge_conn *c = rt_u64map_get(loop->conns, p->conn_id);
    if (c && c->state == CONN_OPEN) {
        size_t len = 0;
        if (status == RT_OK)
            conn_send_text(c, edge_render_action_ack(&len, p->client_id, p->event_id, p->entity_key,
                                                     p->entity_id, duplicate));
        else
            conn_error(c, p->client_id, "internal",
                       "could not store the action; retry with the same id", NULL);
    }
    pending_free(p);
}

/* {"type":"notifications","action":"list"}: notify.v1.list for this user. */
static void notifications_list(edge_conn *c, edge_in_frame *f)
{
    Unpuzzle__Rt__V1__ListRequest *in = NULL;
    Unpuzzle__Rt__V1__ListRequest req = UNPUZZLE__RT__V1__LIST_REQUEST__INIT;
    char why[200] = "";
    if (f->payload) {
        if (json_object_get(f->payload, "userId")) {
            frame_rejected(c, f->id, "notifications: field userId is set by the server");
            return;
        }
        ProtobufCMessage *m = NULL;
        if (rt_pbjson_from_json(&m, &unpuzzle__rt__v1__list_request__descriptor, f->payload, NULL,
                                why, sizeof(why)) != RT_OK) {
            char reason[240];
            snprintf(reason, sizeof(reason), "notifications: %s", why);
            frame_rejected(c, f->id, reason);
            return;
        }
        in = (Unpuzzle__Rt__V1__ListRequest *)m;
        if (in->limit > 200) {
            protobuf_c_message_free_unpacked(m, NULL);
            frame_rejected(c, f->id, "notifications: limit must be at most 200");
            return;
        }
        req.unread_only = in->unread_only;
        req.limit = in->limit;
        req.before = in->before;
    }
    req.user_id = c->user_id;
    pending_rpc tmpl = {0};
    snprintf(tmpl.client_id, sizeof(tmpl.client_id), "%s", f->id);
    if (!rpc_send(c, RPC_NOTIFY_LIST, "notify.v1.list", &req.base, &tmpl))
        conn_error(c, f->id, "internal", "notifications unreachable; try again", NULL);
    if (in)
        protobuf_c_message_free_unpacked(&in->base, NULL);
}

static void on_notify_list_reply(edge_conn *c, pending_rpc *p, natsMsg *reply)
{
    if (c->state != CONN_OPEN)
        return;
    Unpuzzle__Rt__V1__NotificationList *list = natsMsg_IsNoResponders(reply)
                                                   ? NULL
                                                   : unpuzzle__rt__v1__notification_list__unpack(
                                                         NULL, (size_t)natsMsg_GetDataLength(reply),
                                                         (const uint8_t *)natsMsg_GetData(reply));
    char *json = NULL;
    size_t len = 0;
    /* The dispatcher says why it answered an empty list in headers. */
    const char *code = NULL;
    if (list && natsMsgHeader_Get(reply, "Nats-Service-Error-Code", &code) == NATS_OK && code) {
        if (strcmp(code, "400") == 0)
            conn_error(c, p->client_id, "bad_request", "notifications: bad request", NULL);
        else
            conn_error(c, p->client_id, "internal", "notifications unavailable; try again", NULL);
    } else if (!list || rt_pbjson_to_string(&json, &len, &list->base, 0) != RT_OK) {
        conn_error(c, p->client_id, "internal", "notifications unavailable; try again", NULL);
    } else {
        conn_send_text(c, edge_render_notifications(&len, p->client_id, json));
    }
    free(json);
    if (list)
        unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
}

/* A connection's actions are authorized and stored in the order they were
 * sent: while one waits for auth.v1.authorize, later ones queue behind it
 * (a cached decision would otherwise overtake an uncached one). */
#define ACTIONS_WAITING_MAX 64

typedef struct action_wait {
    edge_action *action;
    char client_id[EDGE_CLIENT_ID_MAX + 1];
} action_wait;

typedef struct action_queue {
    action_wait items[ACTIONS_WAITING_MAX];
    uint16_t head, len;
    bool authorizing; /* the connection's oldest action waits for auth */
} action_queue;

/* Decides (cache) or asks auth; returns true when it now waits for auth. */
static bool action_start(edge_conn *c, edge_action *a, const char *client_id)
{
    edge_loop *loop = c->loop;
    if (a->who == EDGE_ACTION_SELF) {
        action_publish(c, a, client_id);
        return false;
    }
    char room[RT_ROOM_NAME_MAX], key[RT_ID_MAX + RT_ROOM_NAME_MAX + 2];
    snprintf(room, sizeof(room), "course:%s", a->course_id);
    authz_cache_key(key, sizeof(key), c->user_id, room);
    authz_entry *cached = rt_strmap_get(loop->authz_cache, key);
    if (cached && cached->expires_ns > rt_time_mono_ns()) {
        rt_counter_inc(loop->m->authz_cache_hits);
        action_decided(c, a, client_id, cached->member_role);
        return false;
    }
    Unpuzzle__Rt__V1__AuthorizeRequest ar = UNPUZZLE__RT__V1__AUTHORIZE_REQUEST__INIT;
    ar.user_id = c->user_id;
    ar.role = c->role;
    ar.room = room;
    pending_rpc tmpl = {0};
    snprintf(tmpl.client_id, sizeof(tmpl.client_id), "%s", client_id);
    tmpl.action = a;
    if (!rpc_send(c, RPC_ACTION_AUTHZ, "auth.v1.authorize", &ar.base, &tmpl)) {
        conn_error(c, client_id, "internal", "authorization unreachable; try again", NULL);
        edge_action_free(a);
        free(a);
        return false;
    }
    return true;
}

/* Starts queued actions until one has to wait for auth. */
static void actions_drain(edge_conn *c)
{
    action_queue *q = c->actq;
    while (q && !q->authorizing && q->len && c->state == CONN_OPEN) {
        action_wait w = q->items[q->head];
        q->head = (uint16_t)((q->head + 1) % ACTIONS_WAITING_MAX);
        q->len--;
        q->authorizing = action_start(c, w.action, w.client_id);
    }
}

/* The oldest action got its answer from auth (or none in time). */
static void actions_authorized(edge_conn *c)
{
    if (!c->actq)
        return;
    c->actq->authorizing = false;
    actions_drain(c);
}

static void actions_free(edge_conn *c)
{
    action_queue *q = c->actq;
    if (!q)
        return;
    for (uint16_t i = 0; i < q->len; i++) {
        action_wait *w = &q->items[(q->head + i) % ACTIONS_WAITING_MAX];
        edge_action_free(w->action);
        free(w->action);
    }
    free(q);
    c->actq = NULL;
}

static void handle_action(edge_conn *c, edge_in_frame *f)
{
    char why[240] = "", conn_id[96];

    if (strcmp(f->action_type, "notifications") == 0) {
        if (strcmp(f->action, "list") != 0)
            frame_rejected(c, f->id, "notifications: action must be list");
        else
            notifications_list(c, f);
        return;
    }
    connection_id(conn_id, sizeof(conn_id), c);
    edge_action *a = rt_calloc(1, sizeof(*a));
    if (edge_action_build(a, f->action_type, f->action, f->payload, c->user_id, conn_id, f->id,
                          rt_time_now_ms(), why, sizeof(why)) != RT_OK) {
        free(a);
        frame_rejected(c, f->id, why);
        return;
    }
    if (!c->actq)
        c->actq = rt_calloc(1, sizeof(*c->actq));
    action_queue *q = c->actq;
    if (!q->authorizing && q->len == 0) {
        q->authorizing = action_start(c, a, f->id);
        return;
    }
    if (q->len == ACTIONS_WAITING_MAX) {
        conn_error(c, f->id, "rate_limited", "too many actions waiting; slow down", NULL);
        edge_action_free(a);
        free(a);
        return;
    }
    action_wait *w = &q->items[(q->head + q->len) % ACTIONS_WAITING_MAX];
    w->action = a;
    snprintf(w->client_id, sizeof(w->client_id), "%s", f->id);
    q->len++;
}

static void on_rpc_reply(edge_loop *loop, uint64_t request_id, natsMsg *reply)
{
    pending_rpc *p = rt_u64map_remove(loop->pending, request_id);
    if (!p)
        return; /* timed out already */
    edge_conn *c = rt_u64map_get(loop->conns, p->conn_id);
    if (c) {
        if (p->kind == RPC_AUTHORIZE)
            on_authorize_reply(c, p, reply);
        else if (p->kind == RPC_ACTION_AUTHZ)
            on_action_authz_reply(c, p, reply);
        else if (p->kind == RPC_NOTIFY_LIST)
            on_notify_list_reply(c, p, reply);
        else if (p->kind == RPC_VERIFY || p->kind == RPC_REFRESH)
            on_verify_reply(c, p, reply);
    }
    pending_free(p);
}

typedef struct expired_list {
    uint64_t *ids;
    size_t n, cap;
    uint64_t now;
} expired_list;

static void collect_expired(void *arg, uint64_t key, void *value)
{
    expired_list *l = arg;
    pending_rpc *p = value;
    if (p->deadline_ns > l->now)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->ids = rt_realloc(l->ids, l->cap * sizeof(uint64_t));
    }
    l->ids[l->n++] = key;
}

static void expire_rpcs(edge_loop *loop)
{
    expired_list l = {.now = rt_time_mono_ns()};
    rt_u64map_each(loop->pending, collect_expired, &l);
    for (size_t i = 0; i < l.n; i++) {
        pending_rpc *p = rt_u64map_remove(loop->pending, l.ids[i]);
        edge_conn *c = rt_u64map_get(loop->conns, p->conn_id);
        rt_counter_inc(loop->m->rpc_timeouts);
        if (c && c->state != CONN_CLOSING) {
            if (p->kind == RPC_AUTHORIZE) {
                c->pending_subs--;
                conn_error(c, p->client_id, "internal",
                           "authorization did not answer in time; try again", p->room);
            } else if (p->kind == RPC_ACTION_AUTHZ || p->kind == RPC_ACTION_PUBLISH ||
                       p->kind == RPC_NOTIFY_LIST) {
                conn_error(c, p->client_id, "internal",
                           p->kind == RPC_NOTIFY_LIST
                               ? "notifications did not answer in time; try again"
                               : "not confirmed in time; retry with the same id",
                           NULL);
                if (p->kind == RPC_ACTION_AUTHZ) {
                    pending_free(p); /* before the next action starts */
                    p = NULL;
                    actions_authorized(c);
                }
            } else {
                conn_error(c, p->client_id, "internal",
                           "authentication did not answer in time; try again", NULL);
                if (p->kind == RPC_VERIFY)
                    c->state = CONN_AWAIT_AUTH;
                else
                    c->refreshing = false;
            }
        }
        pending_free(p);
    }
    free(l.ids);
}

/* ---- browser frames ---- */

static void handle_subscribe(edge_conn *c, edge_in_frame *f)
{
    edge_loop *loop = c->loop;
    int slot = conn_find_room(c, f->room_name);

    if (slot >= 0) {
        edge_member *mb = &c->rooms[slot];
        if (!mb->active) {
            conn_error(c, f->id, "bad_request", "subscription already in progress", f->room_name);
            return;
        }
        send_subscribed(c, f->id, f->room_name, mb->room->last_seq, f->has_since, f->since_seq,
                        f->since_epoch);
        return;
    }
    if (c->n_rooms + c->pending_subs >= loop->cfg->max_rooms_per_conn) {
        conn_error(c, f->id, "too_many_rooms", "room limit per connection reached", f->room_name);
        return;
    }
    pending_rpc req = {0};
    snprintf(req.client_id, sizeof(req.client_id), "%s", f->id);
    snprintf(req.room, sizeof(req.room), "%s", f->room_name);
    req.has_since = f->has_since;
    req.since_seq = f->since_seq;
    snprintf(req.since_epoch, sizeof(req.since_epoch), "%s", f->since_epoch);

    char key[RT_ID_MAX + RT_ROOM_NAME_MAX + 2];
    authz_cache_key(key, sizeof(key), c->user_id, f->room_name);
    authz_entry *cached = rt_strmap_get(loop->authz_cache, key);
    if (cached && cached->expires_ns > rt_time_mono_ns()) {
        rt_counter_inc(loop->m->authz_cache_hits);
        snprintf(req.course_id, sizeof(req.course_id), "%s", cached->course_id);
        conn_join(c, &req);
        return;
    }
    Unpuzzle__Rt__V1__AuthorizeRequest ar = UNPUZZLE__RT__V1__AUTHORIZE_REQUEST__INIT;
    ar.user_id = c->user_id;
    ar.role = c->role;
    ar.room = f->room_name;
    if (!rpc_send(c, RPC_AUTHORIZE, "auth.v1.authorize", &ar.base, &req)) {
        conn_error(c, f->id, "internal", "authorization service unreachable; try again",
                   f->room_name);
        return;
    }
    c->pending_subs++;
}

static void handle_frame(edge_conn *c, const char *data, size_t len)
{
    edge_loop *loop = c->loop;
    edge_in_frame f;
    char why[160];
    uint64_t now = rt_time_mono_ns();

    rt_counter_inc(loop->m->browser_frames_in);
    rt_counter_add(loop->m->browser_bytes_in, len);
    if (!edge_bucket_take(&c->bucket, (float)loop->cfg->rate_per_sec, (float)loop->cfg->rate_burst,
                          now)) {
        rt_counter_inc(loop->m->rate_limited);
        conn_error(c, NULL, "rate_limited", "too many frames; slow down", NULL);
        if (edge_strikes_add(&c->rate_strikes, RATE_STRIKES_MAX, RATE_STRIKES_WINDOW_MS, now))
            conn_close(c, 4429, "rate limit exceeded");
        return;
    }
    if (edge_frame_parse(&f, data, len, why, sizeof(why)) != RT_OK) {
        rt_counter_inc(loop->m->bad_frames);
        conn_error(c, f.id, "bad_request", why, NULL);
        edge_frame_release(&f);
        if (edge_strikes_add(&c->bad_strikes, (uint16_t)loop->cfg->max_bad_frames, 60000, now))
            conn_close(c, 1008, "too many bad frames");
        return;
    }
    if (c->state != CONN_OPEN && f.type != EDGE_IN_AUTH) {
        conn_error(c, f.id, "unauthorized", "authenticate first", NULL);
        edge_frame_release(&f);
        return;
    }
    switch (f.type) {
    case EDGE_IN_AUTH:
        if (c->state == CONN_AUTHENTICATING)
            conn_error(c, f.id, "bad_request", "authentication already in progress", NULL);
        else if (c->state == CONN_OPEN)
            conn_error(c, f.id, "bad_request", "already authenticated; use refresh", NULL);
        else {
            c->state = CONN_AUTHENTICATING;
            send_verify(c, RPC_VERIFY, f.token, f.token_len, f.id);
        }
        break;
    case EDGE_IN_REFRESH:
        if (c->refreshing) {
            conn_error(c, f.id, "bad_request", "refresh already in progress", NULL);
        } else {
            c->refreshing = true;
            send_verify(c, RPC_REFRESH, f.token, f.token_len, f.id);
        }
        break;
    case EDGE_IN_SUBSCRIBE:
        handle_subscribe(c, &f);
        break;
    case EDGE_IN_UNSUBSCRIBE: {
        int slot = conn_find_room(c, f.room_name);
        if (slot < 0) {
            conn_error(c, f.id, "not_found", "not subscribed to this room", f.room_name);
        } else {
            size_t rlen = 0;
            conn_leave_slot(c, (uint16_t)slot);
            conn_send_text(c, edge_render_unsubscribed(&rlen, f.id, f.room_name));
        }
        break;
    }
    case EDGE_IN_PING: {
        size_t plen = 0;
        conn_send_text(c, edge_render_pong(&plen, f.id, rt_time_now_ms()));
        break;
    }
    case EDGE_IN_ACTION:
        handle_action(c, &f);
        break;
    }
    edge_frame_release(&f);
}

/* Auth deadlines, token expiries and liveness, from the loop tick. */
static void check_deadlines(edge_loop *loop)
{
    int64_t now = rt_time_now_ms();
    deadline d;

    while (fifo_pop_due(&loop->auth_deadlines, now, &d)) {
        edge_conn *c = rt_u64map_get(loop->conns, d.conn_id);
        if (c && (c->state == CONN_AWAIT_AUTH || c->state == CONN_AUTHENTICATING))
            conn_close(c, 4408, "no auth frame in time");
    }
    while (heap_pop_due(&loop->expiries, now, &d)) {
        edge_conn *c = rt_u64map_get(loop->conns, d.conn_id);
        /* A refresh pushed a later expiry; this entry is then stale. */
        if (c && c->state == CONN_OPEN && c->expires_ms == d.at_ms) {
            conn_error(c, NULL, "token_expired", "token expired; reconnect with a fresh token",
                       NULL);
            conn_close(c, 4401, "token expired");
        }
    }
}

/* Pings a connection silent for WS_PING_INTERVAL_MS and drops it when that
 * ping stays unanswered for another interval: a dead peer goes after about
 * two intervals, and a live one is never dropped for the sweep's timing. */
static void check_liveness_one(void *arg, uint64_t key, void *value)
{
    edge_loop *loop = arg;
    edge_conn *c = value;
    int64_t now = rt_time_now_ms();
    (void)key;

    if (c->state == CONN_CLOSING)
        return;
    if (c->ping_sent && now - c->ping_sent_ms >= loop->cfg->ping_interval_ms) {
        /* Dead peer: nothing to say to it, drop the socket. */
        c->state = CONN_CLOSING;
        c->close_code = 1006;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    } else if (!c->ping_sent && !c->ping_pending &&
               now - c->last_rx_ms >= loop->cfg->ping_interval_ms) {
        c->ping_pending = true;
        lws_callback_on_writable(c->wsi);
    }
}

/* ---- connection lifecycle ---- */

static void conn_established(edge_loop *loop, edge_conn *c, struct lws *wsi)
{
    memset(c, 0, sizeof(*c));
    c->wsi = wsi;
    c->loop = loop;
    c->id = ((uint64_t)loop->index << 48) | ++loop->next_conn_id;
    c->state = CONN_AWAIT_AUTH;
    c->counted = true;
    edge_bucket_init(&c->bucket, (float)loop->cfg->rate_burst, rt_time_mono_ns());
    rt_u64map_put(loop->conns, c->id, c);
    atomic_fetch_add(&loop->n_conns, 1);
    rt_gauge_add(loop->m->connections, 1);
    rt_counter_inc(loop->m->connections_total);
    c->last_rx_ms = rt_time_now_ms();
    fifo_push(&loop->auth_deadlines, (deadline){c->last_rx_ms + loop->cfg->auth_timeout_ms, c->id});
    if (loop->draining)
        conn_close(c, 1012, "server restarting; reconnect");
}

static void conn_closed(edge_loop *loop, edge_conn *c)
{
    if (!c->counted)
        return;
    int code = c->close_code ? c->close_code : c->peer_close_code ? c->peer_close_code : 1006;
    rt_counter_inc(edge_metrics_close(loop->m, code));
    for (uint16_t i = 0; i < c->cap_rooms; i++)
        if (c->rooms[i].room)
            conn_leave_slot(c, i);
    free(c->rooms);
    queue_clear(c);
    actions_free(c);
    free(c->rx);
    rt_u64map_remove(loop->conns, c->id);
    atomic_fetch_sub(&loop->n_conns, 1);
    rt_gauge_add(loop->m->connections, -1);
    c->counted = false;
}

static void conn_receive(edge_conn *c, const char *in, size_t len)
{
    edge_loop *loop = c->loop;
    struct lws *wsi = c->wsi;
    bool first = lws_is_first_fragment(wsi);
    bool last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);

    if (c->state == CONN_CLOSING)
        return;
    c->last_rx_ms = rt_time_now_ms();
    c->ping_sent = false;
    if (lws_frame_is_binary(wsi)) {
        if (last) {
            conn_error(c, NULL, "bad_request", "binary frames are not accepted", NULL);
            rt_counter_inc(loop->m->bad_frames);
            if (edge_strikes_add(&c->bad_strikes, (uint16_t)loop->cfg->max_bad_frames, 60000,
                                 rt_time_mono_ns()))
                conn_close(c, 1008, "too many bad frames");
        }
        return;
    }
    if (first)
        c->rx_len = 0;
    if (c->rx_len + len > (size_t)loop->cfg->max_message_bytes) {
        conn_close(c, 1009, "message too big");
        return;
    }
    if (first && last) { /* the common case: no copy */
        handle_frame(c, in, len);
        return;
    }
    if (c->rx_len + len > c->rx_cap) {
        c->rx_cap = c->rx_len + len + 1024;
        c->rx = rt_realloc(c->rx, c->rx_cap);
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (last) {
        handle_frame(c, c->rx, c->rx_len);
        /* Idle connections keep no reassembly buffer. */
        free(c->rx);
        c->rx = NULL;
        c->rx_len = c->rx_cap = 0;
    }
}

/* ---- upgrade checks ---- */

static bool origin_allowed(const edge_config *cfg, const char *origin)
{
    if (!origin || !*origin)
        return true; /* not a browser: Origin protects browsers only */
    if (strcmp(cfg->allowed_origins, "*") == 0)
        return true;
    size_t n = strlen(origin);
    for (const char *p = cfg->allowed_origins; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && p[len - 1] == ' ')
            len--;
        if (len == n && strncmp(p, origin, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static int filter_upgrade(edge_loop *loop, struct lws *wsi)
{
    char uri[64] = "", origin[256] = "";
    lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0)
        lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
    if (strcmp(uri, "/ws") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "WebSocket endpoint is /ws");
        return -1;
    }
    if (loop->draining) {
        lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "draining");
        return -1;
    }
    if (!origin_allowed(loop->cfg, origin)) {
        lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "origin not allowed");
        return -1;
    }
    return 0;
}

/* ---- inbox, tick, drain (loop thread) ---- */

typedef struct stale_walk {
    char **victims;
    size_t n;
    const char *user; /* "" = every lesson room */
    size_t user_len;
} stale_walk;

static void collect_stale(void *arg, const char *key, void *value)
{
    stale_walk *w = arg;
    (void)value;
    bool match = w->user_len ? strncmp(key, w->user, w->user_len) == 0 && key[w->user_len] == '\x1f'
                             : strstr(key, "\x1flesson:") != NULL;
    if (match)
        w->victims[w->n++] = rt_strdup(key);
}

/* Drops cached room decisions of a user (enrollment changed) or of every
 * lesson room (a lesson moved or was deleted). */
static void invalidate(edge_loop *loop, const char *user_id)
{
    size_t n = rt_strmap_count(loop->authz_cache);
    if (!n)
        return;
    stale_walk w = {
        .victims = rt_calloc(n, sizeof(char *)), .user = user_id, .user_len = strlen(user_id)};
    rt_strmap_each(loop->authz_cache, collect_stale, &w);
    for (size_t i = 0; i < w.n; i++) {
        free(rt_strmap_remove(loop->authz_cache, w.victims[i]));
        free(w.victims[i]);
    }
    free(w.victims);
}

static void drain_step(edge_loop *loop)
{
    uint64_t elapsed = rt_time_mono_ns() - loop->drain_start_ns;
    size_t due = loop->drain_total;
    /* Spread the closes over the drain window so clients do not all
     * reconnect (to the other instances) in the same millisecond. */
    if (loop->drain_ms && elapsed < loop->drain_ms * 1000000u)
        due =
            (size_t)((double)loop->drain_total * (double)elapsed / ((double)loop->drain_ms * 1e6));
    while (loop->drain_done < due) {
        edge_conn *c = rt_u64map_get(loop->conns, loop->drain_ids[loop->drain_done++]);
        if (c)
            conn_close(c, 1012, "server restarting; reconnect with since");
    }
}

typedef struct id_walk {
    uint64_t *ids;
    size_t n;
} id_walk;

static void collect_id(void *arg, uint64_t key, void *value)
{
    id_walk *w = arg;
    (void)value;
    w->ids[w->n++] = key;
}

static void start_drain(edge_loop *loop, uint64_t drain_ms)
{
    if (loop->draining)
        return;
    loop->draining = true;
    loop->drain_ms = drain_ms;
    loop->drain_start_ns = rt_time_mono_ns();
    id_walk w = {.ids = rt_calloc(rt_u64map_count(loop->conns) + 1, sizeof(uint64_t))};
    rt_u64map_each(loop->conns, collect_id, &w);
    loop->drain_ids = w.ids;
    loop->drain_total = w.n;
    loop->drain_done = 0;
    drain_step(loop);
}

static void reset_room(void *arg, const char *key, void *value)
{
    edge_room *r = value;
    (void)arg;
    (void)key;
    r->ready = false;
    r->last_seq = 0;
    for (uint32_t k = 0; k < r->recent_count; k++)
        edge_msg_unref(r->recent[(r->recent_start + k) % RECENT_MAX]);
    r->recent_start = r->recent_count = 0;
    for (uint32_t i = 0; i < r->n_members; i++) {
        edge_member *mb = &r->members[i].conn->rooms[r->members[i].slot];
        mb->active = false;
        mb->replaying = false;
        member_drop_backlog(r->members[i].conn, mb);
    }
}

static void close_for_reset(void *arg, uint64_t key, void *value)
{
    (void)arg;
    (void)key;
    conn_close(value, 1012, "room history was reset; resubscribe with since");
}

/* The ROOMS stream was recreated: what every member holds is of the old
 * epoch. Rooms wait for their new position; connections are closed so the
 * clients resume and learn recovered:false. */
static void rooms_reset(edge_loop *loop)
{
    rt_strmap_each(loop->rooms, reset_room, loop);
    rt_u64map_each(loop->conns, close_for_reset, loop);
}

static void handle_inbox(edge_loop *loop)
{
    pthread_mutex_lock(&loop->inbox_lock);
    loop_event *events = loop->inbox;
    size_t n = loop->inbox_len, events_cap = loop->inbox_cap;
    /* Swap buffers so posters never wait for our processing. */
    loop->inbox = loop->inbox_spare;
    loop->inbox_cap = loop->spare_cap;
    loop->inbox_len = 0;
    loop->inbox_spare = events;
    loop->spare_cap = events_cap;
    pthread_mutex_unlock(&loop->inbox_lock);

    for (size_t i = 0; i < n; i++) {
        loop_event *ev = &events[i];
        switch (ev->type) {
        case EV_ROOM_MSG:
            on_room_message(loop, ev->key, ev->msg);
            edge_msg_unref(ev->msg);
            break;
        case EV_ROOM_READY:
            on_room_ready(loop, ev->key, ev->value);
            break;
        case EV_RPC_REPLY:
            on_rpc_reply(loop, ev->value, ev->reply);
            natsMsg_Destroy(ev->reply);
            break;
        case EV_INVALIDATE:
            invalidate(loop, ev->key);
            break;
        case EV_DRAIN:
            start_drain(loop, ev->value);
            break;
        case EV_REPLAY:
            if (!on_replay(loop, ev->replay))
                edge_replay_free(ev->replay);
            break;
        case EV_ROOMS_RESET:
            rooms_reset(loop);
            break;
        case EV_ACTION_DONE:
            on_action_done(loop, ev->value, ev->status, ev->duplicate);
            break;
        }
    }
    flush_soon(loop);
}

static void loop_tick(lws_sorted_usec_list_t *sul)
{
    edge_loop *loop = lws_container_of(sul, edge_loop, sul_tick);
    expire_rpcs(loop);
    check_deadlines(loop);
    flush_local_counters(loop);
    if (++loop->tick_count % 10 == 0) /* once a second */
        rt_u64map_each(loop->conns, check_liveness_one, loop);
    if (loop->draining)
        drain_step(loop);
    lws_sul_schedule(loop->ctx, 0, &loop->sul_tick, loop_tick, TICK_US);
}

/* ---- the protocol callback ---- */

static int edge_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    edge_session *s = user;
    edge_loop *loop = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (loop)
            handle_inbox(loop);
        return 0;
    case LWS_CALLBACK_HTTP:
        if (!s)
            return -1;
        s->is_ws = false;
        if (loop->cfg->static_dir[0] && in && strcmp(in, "/healthz") != 0 &&
            strcmp(in, "/readyz") != 0 && strcmp(in, "/metrics") != 0) {
            char file[4096];
            const char *mime = NULL;
            if (edge_static_resolve(file, sizeof(file), &mime, loop->cfg->static_dir, in)) {
                int n = lws_serve_http_file(wsi, file, mime, NULL, 0);
                return n < 0 ? -1 : 0;
            }
        }
        return rt_admin_http_begin(wsi, &s->http, in, loop->registry, loop->ready, loop->ready_arg);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return s && !s->is_ws ? rt_admin_http_writeable(wsi, &s->http) : 0;
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s && !s->is_ws)
            rt_admin_http_reset(&s->http);
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter_upgrade(loop, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        if (s) {
            /* The session was used for the HTTP upgrade request: start clean. */
            rt_admin_http_reset(&s->http);
            s->is_ws = true;
            conn_established(loop, &s->conn, wsi);
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (s && s->is_ws)
            conn_receive(&s->conn, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return s && s->is_ws ? conn_writeable(loop, &s->conn) : 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (s && s->is_ws) {
            s->conn.last_rx_ms = rt_time_now_ms();
            s->conn.ping_sent = false;
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (s && s->is_ws && len >= 2) {
            const unsigned char *b = in;
            s->conn.peer_close_code = (uint16_t)((b[0] << 8) | b[1]);
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (s && s->is_ws)
            conn_closed(loop, &s->conn);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- accepting ----
 * lws 4.1 sets SO_REUSEPORT only on Windows, so each loop opens its own
 * listening socket with SO_REUSEPORT (the kernel spreads connections over
 * the loops), watches it as a raw descriptor, and hands every accepted
 * socket to lws as a fresh HTTP connection (which may upgrade to /ws). */

static int accept_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    edge_loop *loop = lws_context_user(lws_get_context(wsi));
    (void)user;
    (void)in;
    (void)len;

    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    for (int i = 0; i < 256; i++) {
        int fd = accept4(loop->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                rt_log_warn("accept failed", "{s:s}", "error", strerror(errno));
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        lws_sock_file_fd_type desc = {.sockfd = fd};
        int type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
        if (loop->cfg->tls_cert[0])
            type |= LWS_ADOPT_ALLOW_SSL;
        /* On failure lws closes the descriptor itself. */
        lws_adopt_descriptor_vhost(loop->vhost, (lws_adoption_type)type, desc, NULL, NULL);
    }
    return 0;
}

static rt_status open_listener(int *out_fd, int *out_port, const char *bind_address, int port)
{
    struct sockaddr_storage ss;
    socklen_t ss_len;
    int one = 1, zero = 0;
    int family = AF_INET6;

    memset(&ss, 0, sizeof(ss));
    if (bind_address && *bind_address) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, bind_address, &v4->sin_addr) == 1) {
            family = AF_INET;
        } else if (inet_pton(AF_INET6, bind_address, &v6->sin6_addr) != 1) {
            return RT_ERR(RT_ERR_CONFIG, "WS_BIND: not an IP address");
        }
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && family == AF_INET6 && !(bind_address && *bind_address)) {
        family = AF_INET; /* no IPv6 on this host */
        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0)
        return RT_ERR(RT_ERR_IO, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        ss_len = sizeof(*v6);
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        ss_len = sizeof(*v4);
    }
    if (bind(fd, (struct sockaddr *)&ss, ss_len) != 0 || listen(fd, 4096) != 0) {
        int err = errno;
        close(fd);
        return RT_ERR(RT_ERR_IO, "cannot listen on port %d: %s", port, strerror(err));
    }
    ss_len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &ss_len);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out_fd = fd;
    return RT_OK;
}

/* ---- thread and lifecycle ---- */

static void *loop_main(void *arg)
{
    edge_loop *loop = arg;
    while (!atomic_load(&loop->stop)) {
        if (lws_service(loop->ctx, 0) < 0)
            break;
    }
    return NULL;
}

rt_status edge_loop_start(edge_loop **out, const edge_loop_options *o)
{
    edge_loop *loop = rt_calloc(1, sizeof(*loop));
    const edge_config *cfg = o->config;

    loop->index = o->index;
    loop->cfg = cfg;
    loop->hub = o->hub;
    loop->presence = o->presence;
    loop->m = o->metrics;
    loop->registry = o->registry;
    loop->ready = o->ready;
    loop->ready_arg = o->ready_arg;
    pthread_mutex_init(&loop->inbox_lock, NULL);
    loop->rooms = rt_strmap_create();
    loop->conns = rt_u64map_create();
    loop->pending = rt_u64map_create();
    loop->authz_cache = rt_strmap_create();

    loop->protocols[0] = (struct lws_protocols){
        .name = "unpuzzle.v1",
        .callback = edge_callback,
        .per_session_data_size = sizeof(edge_session),
        /* Small per-connection receive buffer: idle memory matters more
         * than big frames, which are reassembled on demand. */
        .rx_buffer_size = 2048,
        /* lws writes at most this much per call and copies the rest of a
         * frame into its own buffer (it would default to rx_buffer_size):
         * let a whole frame go to the kernel at once. */
        .tx_packet_size = FRAME_MAX + 16,
    };
    loop->protocols[1] = (struct lws_protocols){
        .name = "edge-accept",
        .callback = accept_callback,
    };
    loop->extensions[0] = (struct lws_extension){
        "permessage-deflate", lws_extension_callback_pm_deflate,
        "permessage-deflate; client_no_context_takeover; client_max_window_bits"};

    loop->listen_fd = -1;
    rt_status ls = open_listener(&loop->listen_fd, &loop->port, cfg->bind_address, o->port);
    if (ls != RT_OK) {
        edge_loop_stop(loop);
        return ls;
    }
    struct lws_context_creation_info *info = &loop->info;
    info->port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info->protocols = loop->protocols;
    info->extensions = loop->extensions;
    info->user = loop;
    /* Liveness is ours (check_liveness_one): lws's own validity timer is
     * re-inserted into a sorted list on every received frame, O(connections)
     * each time. A policy with no hangup time disables it. */
    info->retry_and_idle_policy = &loop->no_validity;
    info->options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
                    LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    info->timeout_secs = 10;
    if (cfg->tls_cert[0]) {
        info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info->ssl_cert_filepath = cfg->tls_cert;
        info->ssl_private_key_filepath = cfg->tls_key;
    }
    loop->ctx = lws_create_context(info);
    loop->vhost = loop->ctx ? lws_get_vhost_by_name(loop->ctx, "default") : NULL;
    if (!loop->vhost) {
        edge_loop_stop(loop);
        return RT_ERR(RT_ERR_IO, "cannot create the WebSocket server (loop %d)", o->index);
    }
    lws_sock_file_fd_type desc = {.filefd = loop->listen_fd};
    if (!lws_adopt_descriptor_vhost(loop->vhost, LWS_ADOPT_RAW_FILE_DESC, desc, "edge-accept",
                                    NULL)) {
        loop->listen_fd = -1; /* lws closed it */
        edge_loop_stop(loop);
        return RT_ERR(RT_ERR_IO, "cannot watch the listening socket (loop %d)", o->index);
    }
    lws_sul_schedule(loop->ctx, 0, &loop->sul_tick, loop_tick, TICK_US);
    if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0) {
        edge_loop_stop(loop);
        return RT_ERR(RT_ERR_INTERNAL, "pthread_create failed");
    }
    loop->thread_started = true;
    *out = loop;
    return RT_OK;
}

static void free_room_entry(void *arg, const char *key, void *value)
{
    edge_room *r = value;
    (void)arg;
    (void)key;
    for (uint32_t i = 0; i < r->recent_count; i++)
        edge_msg_unref(r->recent[(r->recent_start + i) % RECENT_MAX]);
    free(r->members);
    free(r);
}

static void free_pending_value(void *arg, uint64_t key, void *value)
{
    (void)arg;
    (void)key;
    pending_free(value);
}

static void free_str_value(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    free(value);
}

void edge_loop_stop(edge_loop *loop)
{
    if (!loop)
        return;
    atomic_store(&loop->stop, true);
    if (loop->thread_started) {
        lws_cancel_service(loop->ctx);
        pthread_join(loop->thread, NULL);
    }
    /* Destroying the context closes every connection (CLOSED callbacks run
     * here and release their rooms and queues). */
    if (loop->ctx)
        lws_context_destroy(loop->ctx); /* also closes the adopted listener */
    else if (loop->listen_fd >= 0)
        close(loop->listen_fd);
    handle_inbox(loop); /* release what was still queued */
    rt_strmap_each(loop->rooms, free_room_entry, NULL);
    rt_strmap_destroy(loop->rooms);
    rt_u64map_destroy(loop->conns);
    rt_u64map_each(loop->pending, free_pending_value, NULL);
    rt_u64map_destroy(loop->pending);
    rt_strmap_each(loop->authz_cache, free_str_value, NULL);
    rt_strmap_destroy(loop->authz_cache);
    free(loop->inbox);
    free(loop->inbox_spare);
    free(loop->scratch);
    free(loop->drain_ids);
    free(loop->auth_deadlines.items);
    free(loop->dirty);
    free(loop->expiries.items);
    pthread_mutex_destroy(&loop->inbox_lock);
    free(loop);
}
