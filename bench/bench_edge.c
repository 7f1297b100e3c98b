/*
 * bench-edge: load generator for ws-edge (RFC 6455 client written here, epoll,
 * non-blocking, no WebSocket library), with the scenarios of DESIGN.md:
 *
 *   bench-edge idle N     N connections authenticate, subscribe and hold;
 *                         edge RSS per connection from /proc/<pid>/status
 *   bench-edge fanout N   one room of N members; RoomMessages published to
 *                         JetStream at stepped rates; per step deliveries/s,
 *                         p50/p99/max publish->receive latency, lost, dups
 *   bench-edge storm N    N clients connect+auth+subscribe at once; time
 *                         until all are subscribed
 *   bench-edge resume N   N members of --rooms K rooms drop their sockets at
 *                         once; --missed M messages per room are published
 *                         to JetStream; all reconnect at once and subscribe
 *                         with since {seq,epoch}; time until every client has
 *                         its M messages (exactly once, in order, prevSeq
 *                         chain intact, recovered:true) and the edge's peak
 *                         RSS (VmRSS sampled every 20 ms, and VmHWM)
 *   bench-edge probe      one connection to --edge-url, sends each --send
 *                         text frame after the handshake, prints what comes
 *                         back (check against any WebSocket server)
 *   bench-edge selftest   frame codec checks (fragments, pings, close,
 *                         16/64-bit lengths, byte-by-byte delivery)
 *
 * By default the parent starts nats-server + PostgreSQL + auth (rt_teststack)
 * and --edges K ws-edge processes; with --edge-url it targets running edges
 * (--nats URL for the publisher, --secret for tokens, --edge-pid for RSS).
 * The parent mints one HS256 token per user (--users), forks --workers W
 * processes (each below the 20,000 open-file limit), which bind their
 * sockets to 127.0.0.2, 127.0.0.3, ... so ephemeral ports never run out, and
 * report through pipes. Everything is bounded by --deadline.
 *
 * Latency: the publisher puts "bench-<step>-<pubseq>-<CLOCK_MONOTONIC ns>"
 * in RoomMessage.event_id (and the payload's event_id); the monotonic clock
 * is shared by all processes of the machine, so receivers compute
 * publish->receive latency per delivery.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_nats.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_teststack.h"
#include "rt_time.h"

#define MAX_TARGETS 16
#define MAX_WORKERS 16
#define MAX_STEPS 32
#define MAX_SEND 8
#define MAX_EDGE_ENV 16
#define CONNS_PER_SOURCE 20000
#define MAX_ROOMS 1000
#define SCRATCH_MIN (256 * 1024)
#define MAX_FRAME (64u * 1024 * 1024)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MARKER "bench-"

/* ------------------------------------------------------------------ */
/* latency histogram: exact below 64 us, then 32 sub-buckets per power of 2 */

#define HIST_N (64 + 40 * 32)

static int hist_index(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 6 */
    int idx = 64 + (e - 6) * 32 + (int)((v >> (e - 5)) & 31);
    return idx < HIST_N ? idx : HIST_N - 1;
}

static uint64_t hist_value(int idx)
{
    if (idx < 64)
        return (uint64_t)idx;
    int e = (idx - 64) / 32 + 6, sub = (idx - 64) % 32;
    /* upper edge of the bucket (conservative for percentiles) */
    return ((uint64_t)(33 + sub) << (e - 5)) - 1;
}

static uint64_t hist_percentile(const uint32_t *h, double p)
{
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < HIST_N; i++)
        total += h[i];
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total);
    if (want >= total)
        want = total - 1;
    for (int i = 0; i < HIST_N; i++) {
        acc += h[i];
        if (acc > want)
            return hist_value(i);
    }
    return hist_value(HIST_N - 1);
}

/* ------------------------------------------------------------------ */
/* configuration */

enum { SC_IDLE = 1, SC_FANOUT, SC_STORM, SC_RESUME, SC_PROBE, SC_SELFTEST };

typedef struct target {
    struct sockaddr_in addr;
    char hostport[64];
} target;

typedef struct config {
    int scenario;
    int n;
    int edges;
    int workers;
    int users;
    double duration_s;
    double step_s;
    int payload_bytes;
    int concurrency;
    int deadline_s;
    int conn_timeout_ms;
    double max_p99_ms;
    bool keep_going;
    bool core_publish;
    bool verbose;
    bool nats_mode; /* --server nats: clients speak NATS over nats-server's WebSocket */
    int edge_threads;
    int rooms;              /* resume: members spread over this many rooms */
    int missed;             /* resume: messages published per room while away */
    int resume_timeout_s;   /* resume: reconnect start .. everyone caught up */
    int resume_concurrency; /* resume: handshakes in flight per worker at reconnect */
    double drop_pause_s;    /* resume: drop .. publishing */
    const char *edge_urls;
    const char *nats_url;
    const char *secret;
    const char *room;
    const char *role;
    const char *rates;
    const char *path;
    const char *origin;
    const char *edge_bin;
    const char *edge_env[MAX_EDGE_ENV];
    int n_edge_env;
    pid_t edge_pids[MAX_TARGETS];
    int n_edge_pids;
    const char *send[MAX_SEND];
    int n_send;
    target targets[MAX_TARGETS];
    int n_targets;
    char **tokens;
} config;

static config cfg = {
    .edges = 1,
    .rooms = 1,
    .missed = 100,
    .resume_timeout_s = 300,
    .drop_pause_s = 1,
    .duration_s = 5,
    .step_s = 5,
    .payload_bytes = 200,
    .deadline_s = 0,
    .conn_timeout_ms = 30000,
    .max_p99_ms = 50,
    .secret = RT_TEST_JWT_SECRET,
    .role = "student",
    .rates = "10,20,30,40,50,75,100,150,200,300,400,600,800,1000",
    .path = "/ws",
    .origin = "http://bench.local",
};

/* ------------------------------------------------------------------ */
/* worker <-> parent messages */

enum { MSG_READY = 1, MSG_STEP = 2, MSG_DROPPED = 3, MSG_RESUME = 4 };
enum { CMD_GO = 1, CMD_REPORT = 2, CMD_QUIT = 3, CMD_DROP = 4, CMD_ROOM = 5, CMD_RESUME = 6 };

enum {
    FAIL_CONNECT = 0, /* socket/connect errors */
    FAIL_HANDSHAKE,   /* HTTP upgrade refused or bad Sec-WebSocket-Accept */
    FAIL_AUTH,        /* error instead of auth_ok */
    FAIL_SUBSCRIBE,   /* error instead of subscribed */
    FAIL_CLOSED,      /* closed by the server before subscribed */
    FAIL_TIMEOUT,     /* not subscribed within --conn-timeout */
    FAIL_PROTOCOL,    /* bad frame from the server */
    FAIL_N
};
static const char *const fail_names[FAIL_N] = {"connect", "handshake", "auth",    "subscribe",
                                               "closed",  "timeout",   "protocol"};

typedef struct cmd_msg {
    uint32_t type;
    uint32_t step;     /* CMD_ROOM: room index */
    uint64_t expected; /* CMD_ROOM: the room's last acked seq; CMD_RESUME: t0 (ns) */
    uint64_t aux;      /* CMD_ROOM: the room's last pubseq */
} cmd_msg;

typedef struct msg_hdr {
    uint32_t type;
    uint32_t len;
} msg_hdr;

typedef struct ready_report {
    uint32_t worker;
    uint32_t attempted;
    uint32_t subscribed;
    uint32_t failed[FAIL_N];
    uint32_t per_target[MAX_TARGETS];
    uint64_t first_start_ns;
    uint64_t last_subscribed_ns;
    uint64_t last_finished_ns; /* last connection subscribed or failed */
    uint32_t hist[HIST_N];     /* connect -> subscribed, microseconds */
} ready_report;

typedef struct step_stats {
    uint64_t received; /* unique deliveries tagged with this step */
    uint64_t dups;     /* pubseq not above the last one seen by the connection */
    uint64_t gaps;     /* pubseq jumped by more than one */
    uint64_t seq_gaps; /* prevSeq != last seq seen in the room */
    uint64_t bytes;    /* JSON line bytes */
    uint64_t lat_max_us;
    uint64_t first_ns, last_ns; /* receive times */
    uint32_t hist[HIST_N];
} step_stats;

typedef struct step_report {
    uint32_t worker;
    uint32_t step;
    uint32_t short_conns; /* subscribed connections that got fewer than expected */
    uint32_t live;        /* connections still subscribed */
    uint64_t frames, reads, lines, other_lines, errors_seen;
    uint32_t closes[6]; /* 1000/1001, 1008, 1009, 1012, 1013, other */
    step_stats st;
} step_report;

typedef struct drop_report {
    uint32_t worker;
    uint32_t dropped;     /* subscribed connections closed */
    uint32_t not_members; /* connections that never subscribed: not resumed */
} drop_report;

/* resume: one worker's view of the reconnect, sent every 250 ms and when
 * every dropped connection is settled (caught up, recovered:false, failed). */
typedef struct resume_report {
    uint32_t worker;
    uint32_t n;              /* dropped connections, all reconnecting */
    uint32_t settled;        /* caught up, recovered:false, failed or timed out */
    uint32_t subscribed;     /* got subscribed */
    uint32_t recovered;      /* ... with recovered:true */
    uint32_t not_recovered;  /* ... with recovered:false */
    uint32_t epoch_changed;  /* subscribed carried another epoch */
    uint32_t caught;         /* every missed message, in order, recovered:true */
    uint32_t lost_after_sub; /* closed after subscribed, before caught up */
    uint32_t timed_out;      /* not caught up within --resume-timeout */
    uint32_t failed[FAIL_N]; /* before subscribed */
    uint32_t closes[6];
    uint32_t done;
    uint64_t received; /* replayed messages, unique */
    uint64_t expected; /* messages the recovered:true clients were owed */
    uint64_t missing;  /* owed to recovered:true clients, not received (now) */
    uint64_t dups;     /* pubseq not above the last one seen */
    uint64_t pub_gaps; /* pubseq skipped (messages missing in the middle) */
    uint64_t seq_gaps; /* prevSeq != the last seq seen */
    uint64_t extra;    /* messages past the room's last published one */
    uint64_t errors_seen;
    uint64_t bytes;
    uint64_t last_subscribed_ns, last_caught_ns, last_settled_ns;
    uint32_t hist_sub[HIST_N];    /* connect -> subscribed, us */
    uint32_t hist_caught[HIST_N]; /* reconnect start -> caught up, us */
} resume_report;

/* ------------------------------------------------------------------ */
/* worker: connections and the WebSocket client */

enum {
    ST_NEW = 0,
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_AUTH,
    ST_SUBSCRIBING,
    ST_SUBSCRIBED,
    ST_PROBE,
    ST_DONE, /* closed after success, or failed */
};

typedef struct conn {
    int fd;
    uint8_t state;
    uint8_t frag_op;
    uint8_t want_out;
    uint8_t subscribed_once;
    uint8_t dropped;   /* resume: closed by CMD_DROP, reconnects with since */
    uint8_t settled;   /* resume: caught up, recovered:false or failed */
    uint8_t recovered; /* resume: subscribed answered recovered:true */
    uint16_t target;
    uint32_t index;
    uint32_t step_tag, step_count;
    uint32_t last_pub;
    uint64_t last_seq;
    uint64_t since_seq; /* resume: last_seq when dropped */
    uint64_t until_seq; /* resume: seq of the subscribed answer */
    uint64_t start_ns;
    char *epoch; /* resume: from the first subscribed */
    char key[25];
    uint8_t *rbuf;
    uint32_t rlen, rcap, need;
    uint8_t *wbuf;
    uint32_t wlen, wcap;
    uint8_t *frag;
    uint32_t flen, fcap;
    uint8_t *nbuf; /* --server nats: unparsed NATS protocol bytes */
    uint32_t nlen, ncap;
} conn;

typedef struct worker {
    int id;
    int ep;
    int cmd_fd, report_fd;
    conn *conns;
    uint32_t n, lo; /* conns[i] has global index lo + i */
    uint32_t next;  /* next to start */
    uint32_t inflight;
    uint32_t finished; /* subscribed or failed */
    bool go, ready_sent, quit;
    uint8_t *scratch;
    size_t scratch_cap;
    uint64_t rng;
    uint64_t frames, reads, lines, other_lines, errors_seen;
    uint32_t closes[6];
    uint32_t live;
    ready_report ready;
    step_stats steps[MAX_STEPS];
    /* resume */
    int round; /* 0: first connect, 1: reconnect with since */
    int concurrency;
    uint64_t resume_t0, last_resume_report;
    uint64_t *room_last_seq, *room_last_pub; /* per room, from CMD_ROOM */
    resume_report rs;
    /* probe/selftest */
    bool verbose;
    uint64_t pongs_sent;
    uint64_t last_close_code;
} worker;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void base64_encode(char *out, const uint8_t *in, int len)
{
    EVP_EncodeBlock((unsigned char *)out, in, len);
}

/* Sec-WebSocket-Accept for `key` (28 chars + NUL). */
static void ws_accept_for(char out[29], const char *key)
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)buf, (size_t)n, digest);
    base64_encode(out, digest, SHA_DIGEST_LENGTH);
}

static void buf_append(uint8_t **buf, uint32_t *len, uint32_t *cap, const void *data, size_t n)
{
    if (*len + n > *cap) {
        size_t ncap = *cap ? *cap : 256;
        while (ncap < *len + n)
            ncap *= 2;
        *buf = rt_realloc(*buf, ncap);
        *cap = (uint32_t)ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += (uint32_t)n;
}

static void conn_set_events(worker *w, conn *c, bool out)
{
    if (c->fd < 0 || (bool)c->want_out == out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                             .data.u32 = c->index - w->lo};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void conn_flush(worker *w, conn *c)
{
    while (c->fd >= 0 && c->wlen > 0) {
        ssize_t r = write(c->fd, c->wbuf, c->wlen);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            c->wlen = 0; /* the read side will see the error */
            break;
        }
        memmove(c->wbuf, c->wbuf + r, c->wlen - (size_t)r);
        c->wlen -= (uint32_t)r;
    }
    if (c->wlen == 0 && c->wcap > 4096) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
    conn_set_events(w, c, c->wlen > 0);
}

static void conn_send_raw(worker *w, conn *c, const void *data, size_t len)
{
    buf_append(&c->wbuf, &c->wlen, &c->wcap, data, len);
    conn_flush(w, c);
}

/* Sends one masked client frame (RFC 6455 5.2, 5.3). */
static void ws_send_frame(worker *w, conn *c, int opcode, const void *payload, size_t len)
{
    uint8_t stackbuf[4096];
    size_t hl = 2 + (len > 65535 ? 8 : len > 125 ? 2 : 0) + 4;
    uint8_t *f = hl + len <= sizeof(stackbuf) ? stackbuf : rt_malloc(hl + len);
    uint32_t mask = (uint32_t)rng_next(&w->rng);
    uint8_t *m;

    f[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len <= 125) {
        f[1] = (uint8_t)(0x80 | len);
        m = f + 2;
    } else if (len <= 65535) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(len >> 8);
        f[3] = (uint8_t)len;
        m = f + 4;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        m = f + 10;
    }
    memcpy(m, &mask, 4);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        m[4 + i] = p[i] ^ m[i & 3];
    conn_send_raw(w, c, f, hl + len);
    if (f != stackbuf)
        free(f);
}

static void conn_release(worker *w, conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->rbuf);
    free(c->wbuf);
    free(c->frag);
    free(c->nbuf);
    c->rbuf = c->wbuf = c->frag = c->nbuf = NULL;
    c->rlen = c->rcap = c->wlen = c->wcap = c->flen = c->fcap = c->need = 0;
    c->nlen = c->ncap = 0;
}

static void conn_settle(worker *w, conn *c, uint64_t now)
{
    if (c->settled)
        return;
    c->settled = 1;
    w->rs.settled++;
    w->rs.last_settled_ns = now;
}

static void conn_fail(worker *w, conn *c, int why)
{
    if (c->state == ST_DONE)
        return;
    if (w->round > 0 && !c->settled) {
        if (c->state == ST_SUBSCRIBED)
            w->rs.lost_after_sub++;
        else if (c->state != ST_PROBE)
            w->rs.failed[why]++;
        conn_settle(w, c, mono_ns());
    }
    if (c->state == ST_SUBSCRIBED) {
        w->live--;
    } else if (c->state != ST_PROBE) {
        w->ready.failed[why]++;
        w->inflight--;
        w->finished++;
    }
    if (w->verbose)
        fprintf(stderr, "conn %u: %s (state %d)\n", c->index, fail_names[why], c->state);
    c->state = ST_DONE;
    conn_release(w, c);
}

static void record_close(worker *w, unsigned code)
{
    int i = code == 1000 || code == 1001 ? 0
            : code == 1008               ? 1
            : code == 1009               ? 2
            : code == 1012               ? 3
            : code == 1013               ? 4
                                         : 5;
    w->closes[i]++;
    w->last_close_code = code;
}

static void conn_subscribed(worker *w, conn *c, uint64_t now)
{
    c->state = ST_SUBSCRIBED;
    c->subscribed_once = 1;
    w->inflight--;
    w->finished++;
    w->live++;
    w->ready.subscribed++;
    w->ready.per_target[c->target]++;
    if (now > w->ready.last_subscribed_ns)
        w->ready.last_subscribed_ns = now;
    w->ready.hist[hist_index((now - c->start_ns) / 1000)]++;
}

/* resume: room r of --rooms K ("course:bench", or "course:bench-<r>"). */
static const char *resume_room_name(uint32_t r, char *buf, size_t size)
{
    const char *base = cfg.room ? cfg.room : "course:bench";
    if (cfg.rooms <= 1)
        return base;
    snprintf(buf, size, "%s-%u", base, r);
    return buf;
}

static const char *conn_room(const conn *c, char *buf, size_t size)
{
    if (cfg.room && strcmp(cfg.room, "user") == 0) {
        snprintf(buf, size, "user:bu%u", c->index % (uint32_t)cfg.users);
        return buf;
    }
    if (cfg.scenario == SC_RESUME)
        return resume_room_name(c->index % (uint32_t)cfg.rooms, buf, size);
    return cfg.room ? cfg.room : "course:bench";
}

static void conn_send_text(worker *w, conn *c, const char *text)
{
    ws_send_frame(w, c, 0x1, text, strlen(text));
}

static void resume_subscribed(worker *w, conn *c, json_t *j, uint64_t now);

/* The handshake replies and errors: few, parsed with jansson. */
static void conn_on_control_line(worker *w, conn *c, const char *line, size_t len, uint64_t now)
{
    json_error_t jerr;
    json_t *j = json_loadb(line, len, 0, &jerr);
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;

    if (!type) {
        w->other_lines++;
    } else if (c->state == ST_AUTH) {
        if (strcmp(type, "auth_ok") == 0) {
            char msg[512], room[RT_ROOM_NAME_MAX + 16];
            if (w->round > 0 && c->epoch)
                snprintf(msg, sizeof(msg),
                         "{\"type\":\"subscribe\",\"id\":\"s2\",\"room\":\"%s\","
                         "\"since\":{\"seq\":%llu,\"epoch\":\"%s\"}}",
                         conn_room(c, room, sizeof(room)), (unsigned long long)c->since_seq,
                         c->epoch);
            else
                snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"id\":\"s1\",\"room\":\"%s\"}",
                         conn_room(c, room, sizeof(room)));
            c->state = ST_SUBSCRIBING;
            conn_send_text(w, c, msg);
        } else {
            if (w->verbose || w->ready.failed[FAIL_AUTH] == 0)
                fprintf(stderr, "bench-edge: auth answered: %.*s\n", (int)len, line);
            conn_fail(w, c, FAIL_AUTH);
        }
    } else if (c->state == ST_SUBSCRIBING) {
        if (strcmp(type, "subscribed") == 0 && w->round > 0) {
            resume_subscribed(w, c, j, now);
        } else if (strcmp(type, "subscribed") == 0) {
            json_t *seq = json_object_get(j, "seq");
            const char *epoch = json_string_value(json_object_get(j, "epoch"));
            c->last_seq = json_is_integer(seq) ? (uint64_t)json_integer_value(seq) : 0;
            if (epoch && !c->epoch)
                c->epoch = rt_strdup(epoch);
            conn_subscribed(w, c, now);
        } else if (strcmp(type, "error") == 0) {
            if (w->verbose || w->ready.failed[FAIL_SUBSCRIBE] == 0)
                fprintf(stderr, "bench-edge: subscribe answered: %.*s\n", (int)len, line);
            conn_fail(w, c, FAIL_SUBSCRIBE);
        } else {
            w->other_lines++;
        }
    } else {
        if (strcmp(type, "error") == 0) {
            w->errors_seen++;
            if (w->errors_seen <= 3)
                fprintf(stderr, "bench-edge: server error: %.*s\n", (int)len, line);
        } else {
            w->other_lines++;
        }
    }
    json_decref(j);
}

static uint64_t parse_u64(const char *p, const char *end, const char **after)
{
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (after)
        *after = p;
    return v;
}

static bool find_u64(const char *line, size_t len, const char *key, uint64_t *out)
{
    const char *p = memmem(line, len, key, strlen(key));
    if (!p)
        return false;
    p += strlen(key);
    const char *end = line + len;
    while (p < end && *p == ' ')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    *out = parse_u64(p, end, NULL);
    return true;
}

/* "bench-<step>-<pubseq>-<ns>" somewhere in `line` (the first occurrence
 * of "bench-" that has that form: room names may contain "bench-" too). */
static bool parse_marker(const char *line, size_t len, uint64_t *step, uint64_t *pub, uint64_t *ns)
{
    const char *end = line + len, *p = line;
    while ((p = memmem(p, (size_t)(end - p), MARKER, sizeof(MARKER) - 1))) {
        const char *q = p + sizeof(MARKER) - 1, *start = q;
        p = q;
        *step = parse_u64(q, end, &q);
        if (q == start || q >= end || *q != '-')
            continue;
        start = q + 1;
        *pub = parse_u64(start, end, &q);
        if (q == start || q >= end || *q != '-')
            continue;
        start = q + 1;
        *ns = parse_u64(start, end, &q);
        if (q == start)
            continue;
        return *step < MAX_STEPS;
    }
    return false;
}

/* A delivery: "bench-<step>-<pubseq>-<ns>" somewhere in `line` (JSON line of
 * the edge, or headers+payload of a NATS HMSG); seq/prevSeq found by keys. */
static bool record_delivery(worker *w, conn *c, const char *line, size_t len, uint64_t now,
                            const char *seq_key, const char *prev_key)
{
    uint64_t step, pub, ns, seq = 0, prev = 0;

    if (!parse_marker(line, len, &step, &pub, &ns))
        return false;

    step_stats *st = &w->steps[step];
    if (pub <= c->last_pub) {
        st->dups++;
        return true;
    }
    if (c->last_pub && pub != (uint64_t)c->last_pub + 1)
        st->gaps++;
    c->last_pub = (uint32_t)pub;
    if (find_u64(line, len, seq_key, &seq)) {
        if (find_u64(line, len, prev_key, &prev) && c->last_seq && prev != c->last_seq)
            st->seq_gaps++;
        c->last_seq = seq;
    }
    if (c->step_tag != step) {
        c->step_tag = (uint32_t)step;
        c->step_count = 0;
    }
    c->step_count++;
    uint64_t lat_us = now > ns ? (now - ns) / 1000 : 0;
    st->received++;
    st->bytes += len;
    st->hist[hist_index(lat_us)]++;
    if (lat_us > st->lat_max_us)
        st->lat_max_us = lat_us;
    if (!st->first_ns)
        st->first_ns = now;
    st->last_ns = now;
    return true;
}

/* resume: caught up once recovered:true and the room's last published
 * message (pubseq and acked seq) arrived; the chain checks count the rest. */
static void resume_check_caught(worker *w, conn *c, uint64_t now)
{
    uint32_t r = c->index % (uint32_t)cfg.rooms;
    if (c->settled || !c->recovered || !w->room_last_pub)
        return;
    if (c->last_pub < w->room_last_pub[r] || c->last_seq < w->room_last_seq[r])
        return;
    w->rs.caught++;
    if (now > w->rs.last_caught_ns)
        w->rs.last_caught_ns = now;
    w->rs.hist_caught[hist_index(now > w->resume_t0 ? (now - w->resume_t0) / 1000 : 0)]++;
    conn_settle(w, c, now);
}

static void resume_subscribed(worker *w, conn *c, json_t *j, uint64_t now)
{
    json_t *seq = json_object_get(j, "seq");
    const char *epoch = json_string_value(json_object_get(j, "epoch"));
    uint64_t until = json_is_integer(seq) ? (uint64_t)json_integer_value(seq) : 0;
    uint32_t r = c->index % (uint32_t)cfg.rooms;

    c->until_seq = until;
    conn_subscribed(w, c, now);
    w->rs.subscribed++;
    if (now > w->rs.last_subscribed_ns)
        w->rs.last_subscribed_ns = now;
    w->rs.hist_sub[hist_index((now - c->start_ns) / 1000)]++;
    if (!epoch || !c->epoch || strcmp(epoch, c->epoch) != 0)
        w->rs.epoch_changed++;
    if (!json_is_true(json_object_get(j, "recovered"))) {
        /* The edge says history does not reach back: nothing to wait for.
         * c->last_seq stays the since seq (nothing older is replayed). */
        w->rs.not_recovered++;
        if (w->rs.not_recovered <= 3)
            fprintf(stderr,
                    "bench-edge: conn %u resumed from seq %llu: recovered:false (room at %llu)\n",
                    c->index, (unsigned long long)c->since_seq, (unsigned long long)until);
        conn_settle(w, c, now);
        return;
    }
    w->rs.recovered++;
    c->recovered = 1;
    if (w->room_last_pub && w->room_last_pub[r] > c->last_pub)
        w->rs.expected += w->room_last_pub[r] - c->last_pub;
    resume_check_caught(w, c, now);
}

/* resume: a replayed (or live) room message after the reconnect. */
static bool resume_on_room_line(worker *w, conn *c, const char *line, size_t len, uint64_t now)
{
    uint64_t step, pub, ns, seq = 0, prev = 0;
    uint32_t r = c->index % (uint32_t)cfg.rooms;

    if (!parse_marker(line, len, &step, &pub, &ns))
        return false;
    if (pub <= c->last_pub) {
        w->rs.dups++;
        return true;
    }
    if (w->room_last_pub && pub > w->room_last_pub[r])
        w->rs.extra++;
    if (pub != (uint64_t)c->last_pub + 1)
        w->rs.pub_gaps += pub - c->last_pub - 1;
    c->last_pub = (uint32_t)pub;
    if (find_u64(line, len, "\"seq\":", &seq)) {
        if (!find_u64(line, len, "\"prevSeq\":", &prev) || prev != c->last_seq)
            w->rs.seq_gaps++;
        c->last_seq = seq;
    }
    w->rs.received++;
    w->rs.bytes += len;
    resume_check_caught(w, c, now);
    return true;
}

static bool conn_on_room_line(worker *w, conn *c, const char *line, size_t len, uint64_t now)
{
    if (w->round > 0)
        return resume_on_room_line(w, c, line, len, now);
    return record_delivery(w, c, line, len, now, "\"seq\":", "\"prevSeq\":");
}

static void conn_send_text(worker *w, conn *c, const char *text);
static void conn_subscribed(worker *w, conn *c, uint64_t now);
static void conn_fail(worker *w, conn *c, int why);

/* Reference mode (--server nats): the NATS client protocol over nats-server's
 * own WebSocket listener. Protocol ops may straddle WebSocket frames, so the
 * unparsed tail is kept in c->nbuf. Returns bytes consumed. */
static size_t nats_parse(worker *w, conn *c, const char *p, size_t len, uint64_t now)
{
    size_t pos = 0;
    while (pos < len && c->state != ST_DONE) {
        const char *line = p + pos, *crlf = memmem(line, len - pos, "\r\n", 2);
        if (!crlf)
            break;
        size_t ll = (size_t)(crlf - line);
        if (ll >= 4 && (memcmp(line, "MSG ", 4) == 0 || memcmp(line, "HMSG", 4) == 0)) {
            const char *sp = crlf;
            while (sp > line && sp[-1] != ' ')
                sp--;
            uint64_t total = parse_u64(sp, crlf, NULL);
            if ((size_t)(crlf + 2 - p) + total + 2 > len)
                break; /* body incomplete */
            const char *body = crlf + 2;
            w->lines++;
            if (c->state == ST_SUBSCRIBED &&
                !record_delivery(w, c, body, (size_t)total, now,
                                 "Nats-Sequence:", "Nats-Last-Sequence:"))
                w->other_lines++;
            pos = (size_t)(body - p) + total + 2;
            continue;
        }
        if (ll >= 4 && memcmp(line, "PING", 4) == 0) {
            conn_send_text(w, c, "PONG\r\n");
        } else if (ll >= 4 && memcmp(line, "PONG", 4) == 0) {
            if (c->state == ST_SUBSCRIBING) {
                c->last_seq = 0;
                conn_subscribed(w, c, now);
            }
        } else if (ll >= 4 && memcmp(line, "-ERR", 4) == 0) {
            fprintf(stderr, "bench-edge: nats: %.*s\n", (int)ll, line);
            w->errors_seen++;
            if (c->state == ST_SUBSCRIBING)
                conn_fail(w, c, FAIL_SUBSCRIBE);
        }
        pos = (size_t)(crlf - p) + 2;
    }
    return pos;
}

static void nats_on_message(worker *w, conn *c, const uint8_t *data, size_t len, uint64_t now)
{
    if (c->nlen == 0) {
        size_t used = nats_parse(w, c, (const char *)data, len, now);
        if (c->state != ST_DONE && used < len)
            buf_append(&c->nbuf, &c->nlen, &c->ncap, data + used, len - used);
        return;
    }
    buf_append(&c->nbuf, &c->nlen, &c->ncap, data, len);
    size_t used = nats_parse(w, c, (const char *)c->nbuf, c->nlen, now);
    if (c->state == ST_DONE)
        return;
    memmove(c->nbuf, c->nbuf + used, c->nlen - used);
    c->nlen -= (uint32_t)used;
}

static void conn_on_message(worker *w, conn *c, const uint8_t *data, size_t len, uint64_t now)
{
    if (cfg.nats_mode && c->state != ST_PROBE) {
        nats_on_message(w, c, data, len, now);
        return;
    }
    const char *p = (const char *)data, *end = p + len;
    while (p < end && c->state != ST_DONE) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        if (ll > 0) {
            w->lines++;
            if (c->state == ST_PROBE) {
                printf("<< %.*s\n", (int)ll, p);
            } else if (c->state != ST_SUBSCRIBED || !conn_on_room_line(w, c, p, ll, now)) {
                conn_on_control_line(w, c, p, ll, now);
            }
        }
        p = nl ? nl + 1 : end;
    }
}

static void conn_close_frame(worker *w, conn *c, const uint8_t *payload, size_t len)
{
    unsigned code = len >= 2 ? (unsigned)(payload[0] << 8 | payload[1]) : 1005;
    uint8_t reply[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    record_close(w, code);
    if (w->verbose || c->state == ST_PROBE)
        fprintf(stderr, "conn %u: close %u %.*s\n", c->index, code, len > 2 ? (int)len - 2 : 0,
                len > 2 ? (const char *)payload + 2 : "");
    if (code != 1005)
        ws_send_frame(w, c, 0x8, reply, 2);
    else
        ws_send_frame(w, c, 0x8, NULL, 0);
    conn_fail(w, c, FAIL_CLOSED);
}

/* Consumes complete frames from data[0..len); returns bytes used. */
static size_t ws_feed(worker *w, conn *c, uint8_t *data, size_t len, uint64_t now)
{
    size_t pos = 0;
    c->need = 0;
    while (len - pos >= 2 && c->state != ST_DONE) {
        uint8_t *f = data + pos;
        bool fin = f[0] & 0x80, masked = f[1] & 0x80;
        int op = f[0] & 0x0f;
        uint64_t plen = f[1] & 0x7f;
        size_t hl = 2;
        if (f[0] & 0x70) { /* RSV bits: no extension negotiated */
            conn_fail(w, c, FAIL_PROTOCOL);
            break;
        }
        if (plen == 126) {
            if (len - pos < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - pos < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if (plen > MAX_FRAME) {
            conn_fail(w, c, FAIL_PROTOCOL);
            break;
        }
        if (len - pos < hl + plen) {
            c->need = (uint32_t)(hl + plen);
            break;
        }
        uint8_t *pl = f + hl;
        if (masked) {
            const uint8_t *mk = f + hl - 4;
            for (uint64_t i = 0; i < plen; i++)
                pl[i] ^= mk[i & 3];
        }
        pos += hl + plen;
        w->frames++;
        if (op >= 0x8) {
            if (!fin || plen > 125) {
                conn_fail(w, c, FAIL_PROTOCOL);
                break;
            }
            if (op == 0x8) {
                conn_close_frame(w, c, pl, plen);
            } else if (op == 0x9) {
                ws_send_frame(w, c, 0xA, pl, plen);
                w->pongs_sent++;
            } else if (op != 0xA) {
                conn_fail(w, c, FAIL_PROTOCOL);
            }
            continue;
        }
        if (op == 0x1 || op == 0x2) {
            if (c->frag_op) {
                conn_fail(w, c, FAIL_PROTOCOL);
                break;
            }
            if (fin) {
                conn_on_message(w, c, pl, plen, now);
            } else {
                c->frag_op = (uint8_t)op;
                c->flen = 0;
                buf_append(&c->frag, &c->flen, &c->fcap, pl, plen);
            }
        } else if (op == 0x0) {
            if (!c->frag_op) {
                conn_fail(w, c, FAIL_PROTOCOL);
                break;
            }
            if (c->flen + plen > MAX_FRAME) {
                conn_fail(w, c, FAIL_PROTOCOL);
                break;
            }
            buf_append(&c->frag, &c->flen, &c->fcap, pl, plen);
            if (fin) {
                c->frag_op = 0;
                conn_on_message(w, c, c->frag, c->flen, now);
                if (c->state != ST_DONE) {
                    c->flen = 0;
                    if (c->fcap > 65536) {
                        free(c->frag);
                        c->frag = NULL;
                        c->fcap = 0;
                    }
                }
            }
        } else {
            conn_fail(w, c, FAIL_PROTOCOL);
            break;
        }
    }
    return pos;
}

/* rtd.v1.room.<kind>.<id> of the fanout room (what the edge subscribes to). */
static const char *delivery_subject(char *buf, size_t size)
{
    const char *room = cfg.room && strchr(cfg.room, ':') ? cfg.room : "course:bench";
    const char *colon = strchr(room, ':');
    snprintf(buf, size, "rtd.v1.room.%.*s.%s", (int)(colon - room), room, colon + 1);
    return buf;
}

/* The HTTP upgrade answer; returns bytes used, 0 when incomplete, or fails
 * the connection. */
static size_t ws_handshake_reply(worker *w, conn *c, const uint8_t *data, size_t len)
{
    const char *p = (const char *)data;
    const char *end = memmem(p, len, "\r\n\r\n", 4);
    char expected[29];

    if (!end) {
        if (len > 16384)
            conn_fail(w, c, FAIL_HANDSHAKE);
        return 0;
    }
    size_t hlen = (size_t)(end - p) + 4;
    if (hlen < 12 || strncmp(p, "HTTP/1.1 101", 12) != 0) {
        if (w->verbose || w->ready.failed[FAIL_HANDSHAKE] == 0) {
            const char *cr = memchr(p, '\r', hlen);
            fprintf(stderr, "bench-edge: upgrade refused: %.*s\n", (int)(cr - p), p);
        }
        conn_fail(w, c, FAIL_HANDSHAKE);
        return 0;
    }
    ws_accept_for(expected, c->key);
    bool ok = false;
    for (const char *l = p; l < end;) {
        const char *nl = memmem(l, (size_t)(end - l) + 2, "\r\n", 2);
        static const char name[] = "sec-websocket-accept:";
        if ((size_t)(nl - l) > sizeof(name) - 1 && strncasecmp(l, name, sizeof(name) - 1) == 0) {
            const char *v = l + sizeof(name) - 1;
            while (v < nl && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = nl;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            ok = (size_t)(ve - v) == 28 && memcmp(v, expected, 28) == 0;
        }
        l = nl + 2;
    }
    if (!ok) {
        fprintf(stderr, "bench-edge: bad or missing Sec-WebSocket-Accept\n");
        conn_fail(w, c, FAIL_HANDSHAKE);
        return 0;
    }
    if (c->state == ST_HANDSHAKE && cfg.scenario == SC_PROBE) {
        c->state = ST_PROBE;
        fprintf(stderr, "conn %u: upgraded\n", c->index);
        for (int i = 0; i < cfg.n_send; i++)
            conn_send_text(w, c, cfg.send[i]);
    } else if (cfg.nats_mode) {
        char msg[512], subject[RT_ROOM_SUBJECT_MAX + 16];
        snprintf(msg, sizeof(msg),
                 "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,"
                 "\"headers\":true,\"name\":\"bench-%u\"}\r\nSUB %s 1\r\nPING\r\n",
                 c->index, delivery_subject(subject, sizeof(subject)));
        c->state = ST_SUBSCRIBING;
        conn_send_text(w, c, msg);
    } else {
        char msg[4096];
        const char *tok = cfg.tokens[c->index % (uint32_t)cfg.users];
        snprintf(msg, sizeof(msg), "{\"type\":\"auth\",\"token\":\"%s\"}", tok);
        c->state = ST_AUTH;
        conn_send_text(w, c, msg);
    }
    return hlen;
}

/* Processes w->scratch[0..have) for c; keeps the unused tail in c->rbuf. */
static void conn_process(worker *w, conn *c, size_t have, uint64_t now)
{
    size_t used = 0;
    if (c->state == ST_HANDSHAKE) {
        used = ws_handshake_reply(w, c, w->scratch, have);
        if (c->state == ST_DONE || used == 0)
            goto keep;
    }
    used += ws_feed(w, c, w->scratch + used, have - used, now);
keep:
    if (c->state == ST_DONE)
        return;
    c->rlen = 0;
    if (have > used) {
        buf_append(&c->rbuf, &c->rlen, &c->rcap, w->scratch + used, have - used);
    } else if (c->rcap > 65536) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

static void scratch_reserve(worker *w, size_t want)
{
    if (want <= w->scratch_cap)
        return;
    size_t cap = w->scratch_cap ? w->scratch_cap : SCRATCH_MIN;
    while (cap < want)
        cap *= 2;
    w->scratch = rt_realloc(w->scratch, cap);
    w->scratch_cap = cap;
}

static void conn_on_readable(worker *w, conn *c)
{
    size_t have = c->rlen;
    scratch_reserve(w, (size_t)c->rlen + (c->need > c->rlen ? c->need - c->rlen : 0) + 65536);
    if (have)
        memcpy(w->scratch, c->rbuf, have);
    ssize_t r = read(c->fd, w->scratch + have, w->scratch_cap - have);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_fail(w, c, c->state == ST_CONNECTING ? FAIL_CONNECT : FAIL_CLOSED);
        return;
    }
    if (r == 0) {
        if (c->state == ST_SUBSCRIBED || c->state == ST_PROBE)
            record_close(w, 1006);
        conn_fail(w, c, FAIL_CLOSED);
        return;
    }
    w->reads++;
    conn_process(w, c, have + (size_t)r, mono_ns());
}

static void conn_start(worker *w, conn *c)
{
    const target *t = &cfg.targets[c->target];
    struct sockaddr_in src = {.sin_family = AF_INET};
    int one = 1;
    uint8_t rnd[16];

    c->start_ns = mono_ns();
    if (!w->ready.first_start_ns)
        w->ready.first_start_ns = c->start_ns;
    w->ready.attempted++;
    w->inflight++;
    c->state = ST_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        if (w->ready.failed[FAIL_CONNECT] == 0)
            perror("bench-edge: socket");
        conn_fail(w, c, FAIL_CONNECT);
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (t->addr.sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
        /* 127.0.0.2, .3, ...: a source address per CONNS_PER_SOURCE
         * connections; the port is chosen at connect() per 4-tuple. A
         * resume's reconnect uses the next addresses: the dropped
         * connections' ports sit in TIME_WAIT on the first ones. */
        uint32_t sources = ((uint32_t)cfg.n + CONNS_PER_SOURCE - 1) / CONNS_PER_SOURCE;
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        src.sin_addr.s_addr =
            htonl(0x7f000002u + c->index / CONNS_PER_SOURCE + (uint32_t)w->round * sources);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            if (w->ready.failed[FAIL_CONNECT] == 0)
                perror("bench-edge: bind");
            conn_fail(w, c, FAIL_CONNECT);
            return;
        }
    }
    if (connect(c->fd, (const struct sockaddr *)&t->addr, sizeof(t->addr)) != 0 &&
        errno != EINPROGRESS) {
        if (w->ready.failed[FAIL_CONNECT] == 0)
            perror("bench-edge: connect");
        conn_fail(w, c, FAIL_CONNECT);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = c->index - w->lo};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = 1;
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next(&w->rng);
        memcpy(rnd + i, &r, 8);
    }
    base64_encode(c->key, rnd, 16);
}

static void conn_on_connected(worker *w, conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    char req[512];
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        if (w->ready.failed[FAIL_CONNECT] == 0)
            fprintf(stderr, "bench-edge: connect %s: %s\n", cfg.targets[c->target].hostport,
                    strerror(err));
        conn_fail(w, c, FAIL_CONNECT);
        return;
    }
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: unpuzzle.v1\r\n"
                     "Origin: %s\r\n\r\n",
                     cfg.path, cfg.targets[c->target].hostport, c->key, cfg.origin);
    c->state = ST_HANDSHAKE;
    c->want_out = 1; /* conn_flush switches to EPOLLIN only */
    conn_send_raw(w, c, req, (size_t)n);
}

static void worker_send(worker *w, uint32_t type, const void *payload, uint32_t len)
{
    msg_hdr h = {type, len};
    uint8_t *buf = rt_malloc(sizeof(h) + len);
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), payload, len);
    size_t off = 0, total = sizeof(h) + len;
    while (off < total) {
        ssize_t r = write(w->report_fd, buf + off, total - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    free(buf);
}

static void worker_report_step(worker *w, uint32_t step, uint64_t expected)
{
    step_report *r = rt_calloc(1, sizeof(*r));
    r->worker = (uint32_t)w->id;
    r->step = step;
    r->live = w->live;
    r->frames = w->frames;
    r->reads = w->reads;
    r->lines = w->lines;
    r->other_lines = w->other_lines;
    r->errors_seen = w->errors_seen;
    memcpy(r->closes, w->closes, sizeof(r->closes));
    if (step < MAX_STEPS)
        r->st = w->steps[step];
    for (uint32_t i = 0; i < w->n; i++) {
        conn *c = &w->conns[i];
        if (!c->subscribed_once)
            continue;
        uint32_t got = c->step_tag == step ? c->step_count : 0;
        if (got < expected)
            r->short_conns++;
    }
    worker_send(w, MSG_STEP, r, sizeof(*r));
    free(r);
}

/* resume: closes every subscribed connection at once (no close frame: a
 * dropped network), keeping what it needs to come back with since. */
static void worker_drop(worker *w)
{
    drop_report d = {.worker = (uint32_t)w->id};
    for (uint32_t i = 0; i < w->n; i++) {
        conn *c = &w->conns[i];
        if (c->state != ST_SUBSCRIBED) {
            d.not_members++;
            continue;
        }
        c->since_seq = c->last_seq;
        conn_release(w, c);
        c->state = ST_NEW;
        c->frag_op = 0;
        c->want_out = 0;
        c->dropped = 1;
        w->live--;
        d.dropped++;
    }
    worker_send(w, MSG_DROPPED, &d, sizeof(d));
}

static void worker_send_resume(worker *w, uint64_t now)
{
    resume_report *r = &w->rs;
    r->worker = (uint32_t)w->id;
    r->done = r->settled >= r->n;
    memcpy(r->closes, w->closes, sizeof(r->closes));
    r->errors_seen = w->errors_seen;
    r->missing = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        conn *c = &w->conns[i];
        uint32_t room = c->index % (uint32_t)cfg.rooms;
        if (c->dropped && c->recovered && w->room_last_pub && w->room_last_pub[room] > c->last_pub)
            r->missing += w->room_last_pub[room] - c->last_pub;
    }
    r->missing += r->pub_gaps;
    w->last_resume_report = now;
    worker_send(w, MSG_RESUME, r, sizeof(*r));
}

/* resume: reconnect every dropped connection at once, with since. */
static void worker_resume(worker *w, uint64_t t0)
{
    memset(&w->ready, 0, sizeof(w->ready));
    memset(&w->rs, 0, sizeof(w->rs));
    w->ready.worker = (uint32_t)w->id;
    w->round = 1;
    w->resume_t0 = t0;
    w->concurrency = cfg.resume_concurrency;
    w->inflight = w->finished = w->next = 0;
    w->ready_sent = true; /* progress goes as MSG_RESUME */
    for (uint32_t i = 0; i < w->n; i++)
        w->rs.n += w->conns[i].dropped;
    w->go = true;
    worker_send_resume(w, mono_ns());
}

/* resume: the first few clients still owed messages at the end, for the
 * edge's log and the stream to be checked against. */
static void worker_print_stalled(worker *w)
{
    int shown = 0;
    for (uint32_t i = 0; i < w->n && w->round > 0 && w->room_last_pub && shown < 5; i++) {
        conn *c = &w->conns[i];
        uint32_t r = c->index % (uint32_t)cfg.rooms;
        bool owed = c->recovered && c->last_pub < w->room_last_pub[r];
        if (!c->dropped || (c->settled && !owed))
            continue; /* caught up, recovered:false, or failed (counted) */
        shown++;
        fprintf(stderr,
                "bench-edge: conn %u not caught up: state %d, since seq %llu, subscribed seq "
                "%llu%s, last seq %llu, pubseq %u of %llu (room last seq %llu)\n",
                c->index, c->state, (unsigned long long)c->since_seq,
                (unsigned long long)c->until_seq, c->recovered ? " recovered:true" : "",
                (unsigned long long)c->last_seq, c->last_pub,
                (unsigned long long)w->room_last_pub[r], (unsigned long long)w->room_last_seq[r]);
    }
}

static void worker_on_cmd(worker *w)
{
    cmd_msg m;
    ssize_t r = read(w->cmd_fd, &m, sizeof(m));
    if (r == 0) {
        w->quit = true;
        return;
    }
    if (r != (ssize_t)sizeof(m))
        return;
    if (m.type == CMD_GO) {
        w->go = true;
    } else if (m.type == CMD_DROP) {
        worker_drop(w);
    } else if (m.type == CMD_ROOM) {
        if (!w->room_last_pub) {
            w->room_last_pub = rt_calloc((size_t)cfg.rooms, sizeof(uint64_t));
            w->room_last_seq = rt_calloc((size_t)cfg.rooms, sizeof(uint64_t));
        }
        if (m.step < (uint32_t)cfg.rooms) {
            w->room_last_seq[m.step] = m.expected;
            w->room_last_pub[m.step] = m.aux;
        }
    } else if (m.type == CMD_RESUME) {
        worker_resume(w, m.expected);
    } else if (m.type == CMD_REPORT)
        worker_report_step(w, m.step, m.expected);
    else if (m.type == CMD_QUIT) {
        w->quit = true;
        worker_print_stalled(w);
    }
}

static void worker_check_timeouts(worker *w, uint64_t now)
{
    uint64_t limit = (uint64_t)cfg.conn_timeout_ms * 1000000ull;
    if (w->round > 0) {
        /* subscribed answers only after the replay: one limit, from the
         * reconnect start to caught up */
        if (now - w->resume_t0 < (uint64_t)cfg.resume_timeout_s * 1000000000ull)
            return;
        for (uint32_t i = 0; i < w->next; i++) {
            conn *c = &w->conns[i];
            if (c->dropped && !c->settled) {
                w->rs.timed_out++;
                conn_settle(w, c, now);
                if (c->state != ST_DONE && c->state != ST_SUBSCRIBED)
                    conn_fail(w, c, FAIL_TIMEOUT);
            }
        }
        return;
    }
    for (uint32_t i = 0; i < w->next; i++) {
        conn *c = &w->conns[i];
        if (c->state != ST_DONE && c->state != ST_SUBSCRIBED && c->state != ST_PROBE &&
            c->state != ST_NEW && now - c->start_ns > limit)
            conn_fail(w, c, FAIL_TIMEOUT);
    }
}

static void worker_loop(worker *w, uint64_t until_ns)
{
    struct epoll_event evs[1024];
    uint64_t last_check = mono_ns();

    while (!w->quit) {
        if (w->go) {
            while (w->next < w->n &&
                   (w->concurrency <= 0 || w->inflight < (uint32_t)w->concurrency)) {
                conn *c = &w->conns[w->next++];
                if (w->round > 0 && !c->dropped)
                    continue; /* never subscribed: not part of the resume */
                conn_start(w, c);
            }
        }
        int n = epoll_wait(w->ep, evs, 1024, 50);
        uint64_t now = mono_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                worker_on_cmd(w);
                continue;
            }
            conn *c = &w->conns[evs[i].data.u32];
            if (c->fd < 0)
                continue;
            if (c->state == ST_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    conn_on_connected(w, c);
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && c->wlen)
                conn_flush(w, c);
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                conn_on_readable(w, c);
        }
        if (now - last_check > 200000000ull) {
            last_check = now;
            if (w->round > 0 ? w->rs.settled < w->rs.n : w->finished < w->n)
                worker_check_timeouts(w, now);
        }
        if (w->round > 0 && !w->rs.done &&
            (w->rs.settled >= w->rs.n || now - w->last_resume_report >= 250000000ull))
            worker_send_resume(w, now);
        if (w->go && !w->ready_sent && w->finished >= w->n && w->report_fd >= 0) {
            w->ready_sent = true;
            w->ready.last_finished_ns = now;
            worker_send(w, MSG_READY, &w->ready, sizeof(w->ready));
        }
        if (until_ns && now >= until_ns)
            break;
    }
}

static void worker_init(worker *w, int id, uint32_t lo, uint32_t n)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->lo = lo;
    w->n = n;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->cmd_fd = w->report_fd = -1;
    w->rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ mono_ns() ^ ((uint64_t)id << 32);
    if (!w->rng)
        w->rng = 1;
    w->conns = rt_calloc(n ? n : 1, sizeof(conn));
    w->ready.worker = (uint32_t)id;
    w->concurrency = cfg.concurrency;
    for (uint32_t i = 0; i < n; i++) {
        w->conns[i].fd = -1;
        w->conns[i].index = lo + i;
        w->conns[i].target = (uint16_t)((lo + i) % (uint32_t)cfg.n_targets);
        w->conns[i].step_tag = UINT32_MAX;
    }
}

static void worker_destroy(worker *w)
{
    for (uint32_t i = 0; i < w->n; i++) {
        conn_release(w, &w->conns[i]);
        free(w->conns[i].epoch);
    }
    free(w->room_last_pub);
    free(w->room_last_seq);
    free(w->conns);
    free(w->scratch);
    close(w->ep);
}

/* The body of a forked worker process; never returns. */
static void worker_main(int id, uint32_t lo, uint32_t n, int cmd_fd, int report_fd)
{
    static worker w;
    struct sigaction sa = {.sa_handler = SIG_DFL};
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1);
    alarm((unsigned)cfg.deadline_s + 5);

    worker_init(&w, id, lo, n);
    w.cmd_fd = cmd_fd;
    w.report_fd = report_fd;
    w.verbose = cfg.verbose;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(w.ep, EPOLL_CTL_ADD, cmd_fd, &ev);
    worker_loop(&w, 0);
    worker_destroy(&w);
    _exit(0);
}

/* ------------------------------------------------------------------ */
/* selftest: server frames fed through conn_process in every chunking */

static size_t server_frame(uint8_t *out, int op, bool fin, const void *payload, size_t len)
{
    size_t hl = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (len <= 125) {
        out[1] = (uint8_t)len;
    } else if (len <= 65535) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        hl = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(out + hl, payload, len);
    return hl + len;
}

static int selftest_fail(const char *what)
{
    fprintf(stderr, "selftest FAILED: %s\n", what);
    return 1;
}

/* Unmasks the client frames in wbuf; returns the count of frames of `op`
 * whose payload equals `payload`. */
static int client_frames_count(const uint8_t *b, size_t len, int op, const char *payload,
                               size_t plen)
{
    int count = 0;
    size_t pos = 0;
    while (pos + 2 <= len) {
        const uint8_t *f = b + pos;
        uint64_t l = f[1] & 0x7f;
        size_t hl = 2;
        if (!(f[1] & 0x80))
            return -1; /* client frames must be masked */
        if (l == 126) {
            l = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (l == 127) {
            l = 0;
            for (int i = 0; i < 8; i++)
                l = l << 8 | f[2 + i];
            hl = 10;
        }
        const uint8_t *mk = f + hl;
        hl += 4;
        if (pos + hl + l > len)
            return -1;
        if ((f[0] & 0x0f) == op && l == plen) {
            bool same = true;
            for (uint64_t i = 0; i < l; i++)
                if ((uint8_t)(f[hl + i] ^ mk[i & 3]) != (uint8_t)payload[i])
                    same = false;
            count += same;
        }
        pos += hl + l;
    }
    return pos == len ? count : -1;
}

static int selftest(void)
{
    char accept[29];
    ws_accept_for(accept, "dGhlIHNhbXBsZSBub25jZQ==");
    if (strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
        return selftest_fail("Sec-WebSocket-Accept of RFC 6455 example");

    /* A stream of server frames: messages of steps 0..1 with pubseq 1..K. */
    size_t cap = 1 << 20, len = 0;
    uint8_t *stream = rt_malloc(cap);
    char line[512], big[80000];
    int expected = 0;
    uint64_t now = mono_ns();
#define LINE(pub)                                                                                  \
    snprintf(line, sizeof(line),                                                                   \
             "{\"type\":\"progress\",\"room\":\"course:bench\",\"seq\":%d,\"prevSeq\":%d,"         \
             "\"eventId\":\"bench-0-%d-%llu\"}",                                                   \
             (pub) + 100, (pub) + 99, (pub), (unsigned long long)now)
    int pub = 1;
    /* 1: plain text frame with two lines */
    {
        char two[1100];
        LINE(pub);
        pub++;
        int k = snprintf(two, sizeof(two), "%s\n", line);
        LINE(pub);
        pub++;
        snprintf(two + k, sizeof(two) - (size_t)k, "%s", line);
        len += server_frame(stream + len, 0x1, true, two, strlen(two));
        expected += 2;
    }
    /* 2: ping */
    len += server_frame(stream + len, 0x9, true, "hello", 5);
    /* 3: fragmented message with a ping in the middle */
    LINE(pub);
    pub++;
    size_t half = strlen(line) / 2;
    len += server_frame(stream + len, 0x1, false, line, half);
    len += server_frame(stream + len, 0x9, true, "mid", 3);
    len += server_frame(stream + len, 0x0, false, line + half, 3);
    len += server_frame(stream + len, 0x0, true, line + half + 3, strlen(line) - half - 3);
    expected++;
    /* 4: 16-bit length (one line padded past 125 bytes) */
    LINE(pub);
    pub++;
    {
        char padded[600];
        snprintf(padded, sizeof(padded), "%s%*s", line, 200, "");
        len += server_frame(stream + len, 0x1, true, padded, strlen(padded));
        expected++;
    }
    /* 5: 64-bit length: many lines in one frame */
    {
        size_t bl = 0;
        while (bl + 600 < sizeof(big)) {
            LINE(pub);
            pub++;
            bl += (size_t)snprintf(big + bl, sizeof(big) - bl, "%s\n", line);
            expected++;
        }
        len += server_frame(stream + len, 0x1, true, big, bl);
    }
    /* 6: a duplicate (pubseq already seen) */
    LINE(pub - 1);
    len += server_frame(stream + len, 0x1, true, line, strlen(line));
    /* 7: close 1013 */
    len += server_frame(stream + len, 0x8, true, "\x03\xf5slow", 6);

    size_t chunks[] = {1, 2, 3, 7, 64, 1000, 65536, 1 << 20};
    for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
        static const char *const cfg_tokens[1] = {"x"};
        worker w;
        cfg.n_targets = 1;
        cfg.users = 1;
        cfg.tokens = (char **)cfg_tokens;
        worker_init(&w, 0, 0, 1);
        conn *c = &w.conns[0];
        c->state = ST_SUBSCRIBED;
        c->subscribed_once = 1;
        c->last_seq = 100;
        w.live = 1;
        for (size_t off = 0; off < len && c->state != ST_DONE;) {
            size_t k = chunks[ci] < len - off ? chunks[ci] : len - off;
            scratch_reserve(&w, (size_t)c->rlen + k + 16);
            memcpy(w.scratch, c->rbuf, c->rlen);
            memcpy(w.scratch + c->rlen, stream + off, k);
            size_t have = c->rlen + k;
            /* pongs are checked before conn_fail frees wbuf: keep a copy */
            conn_process(&w, c, have, now + 1000);
            off += k;
            if (c->state != ST_DONE && c->wlen) {
                int pongs = client_frames_count(c->wbuf, c->wlen, 0xA, "hello", 5) +
                            client_frames_count(c->wbuf, c->wlen, 0xA, "mid", 3);
                if (pongs < 0)
                    return selftest_fail("client frames not well-formed or unmasked");
            }
        }
        char what[128];
        if (w.steps[0].received != (uint64_t)expected) {
            snprintf(what, sizeof(what), "chunk %zu: received %llu of %d", chunks[ci],
                     (unsigned long long)w.steps[0].received, expected);
            return selftest_fail(what);
        }
        if (w.steps[0].dups != 1 || w.steps[0].gaps != 0 || w.steps[0].seq_gaps != 0)
            return selftest_fail("dup/gap accounting");
        if (w.pongs_sent != 2 || w.last_close_code != 1013 || w.closes[4] != 1)
            return selftest_fail("pongs or close code");
        if (c->state != ST_DONE)
            return selftest_fail("close frame did not end the connection");
        worker_destroy(&w);
    }

    /* client frame encoding: 3 lengths, masked, decodable */
    {
        worker w;
        worker_init(&w, 0, 0, 1);
        conn *c = &w.conns[0];
        static char payload[70000];
        memset(payload, 'a', sizeof(payload));
        size_t sizes[] = {5, 300, sizeof(payload)};
        for (int i = 0; i < 3; i++) {
            c->wlen = 0;
            ws_send_frame(&w, c, 0x1, payload, sizes[i]);
            if (client_frames_count(c->wbuf, c->wlen, 0x1, payload, sizes[i]) != 1)
                return selftest_fail("client frame encoding");
        }
        worker_destroy(&w);
    }
    /* latency histogram */
    {
        uint32_t h[HIST_N] = {0};
        for (uint64_t v = 1; v <= 100000; v++)
            h[hist_index(v)]++;
        uint64_t p50 = hist_percentile(h, 0.5), p99 = hist_percentile(h, 0.99);
        if (p50 < 49000 || p50 > 52000 || p99 < 98000 || p99 > 102500)
            return selftest_fail("histogram percentiles");
    }
    free(stream);
    printf("selftest ok: handshake accept, fragments, pings/pongs, 7/16/64-bit lengths, "
           "close 1013, dup detection, chunkings 1..1M bytes\n");
    return 0;
}

/* ------------------------------------------------------------------ */
/* parent: processes, /proc, reports */

typedef struct parent {
    rt_test_stack *stack;
    rt_test_nats *ref_nats; /* --server nats: nats-server with its WebSocket listener */
    rt_test_proc *edges[MAX_TARGETS];
    pid_t edge_pid[MAX_TARGETS];
    int n_edges;
    pid_t nats_pid;
    pid_t auth_pid;
    pid_t worker_pid[MAX_WORKERS];
    int cmd_fd[MAX_WORKERS], report_fd[MAX_WORKERS];
    int n_workers;
    uint32_t worker_n[MAX_WORKERS];
    const char *nats_url;
} parent;

static parent P;
static volatile sig_atomic_t deadline_hit;

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "bench-edge: global deadline passed, stopping\n";
    deadline_hit = 1;
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    for (int i = 0; i < P.n_workers; i++)
        if (P.worker_pid[i] > 0)
            kill(P.worker_pid[i], SIGKILL);
    raise(SIGTERM); /* rt_testenv's handler stops the servers, then we die */
}

typedef struct proc_mem {
    long rss_kb, hwm_kb;
} proc_mem;

static proc_mem read_mem(pid_t pid)
{
    proc_mem m = {-1, -1};
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return m;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            m.rss_kb = atol(line + 6);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            m.hwm_kb = atol(line + 6);
    }
    fclose(f);
    return m;
}

/* utime+stime in clock ticks, and the parent pid; -1 if gone. */
static long long read_cpu_ticks(pid_t pid, pid_t *ppid, char *comm, size_t comm_size)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *open = strchr(buf, '('), *close_p = strrchr(buf, ')');
    if (!open || !close_p)
        return -1;
    if (comm) {
        size_t cl = (size_t)(close_p - open - 1);
        if (cl >= comm_size)
            cl = comm_size - 1;
        memcpy(comm, open + 1, cl);
        comm[cl] = 0;
    }
    char state;
    int pp;
    unsigned long long ut = 0, st = 0;
    /* fields from 3: state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(close_p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &state, &pp, &ut,
               &st) != 4)
        return -1;
    if (ppid)
        *ppid = pp;
    return (long long)(ut + st);
}

static pid_t find_child_named(const char *name)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0, me = getpid();
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = atoi(e->d_name), pp = 0;
        char comm[64];
        if (read_cpu_ticks(pid, &pp, comm, sizeof(comm)) >= 0 && pp == me &&
            strcmp(comm, name) == 0) {
            found = pid;
            break;
        }
    }
    closedir(d);
    return found;
}

typedef struct cpu_snap {
    uint64_t t_ns;
    long long edges, nats, workers, self, auth;
    long long machine_busy, machine_total;
} cpu_snap;

static void machine_ticks(long long *busy, long long *total)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    *busy = *total = 0;
    if (!f)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += (long long)v[i];
        *busy = *total - (long long)(v[3] + v[4]);
    }
    fclose(f);
}

static cpu_snap cpu_now(void)
{
    cpu_snap s = {.t_ns = mono_ns()};
    for (int i = 0; i < P.n_edges; i++) {
        long long t = read_cpu_ticks(P.edge_pid[i], NULL, NULL, 0);
        s.edges += t > 0 ? t : 0;
    }
    if (P.nats_pid > 0) {
        long long t = read_cpu_ticks(P.nats_pid, NULL, NULL, 0);
        s.nats = t > 0 ? t : 0;
    }
    for (int i = 0; i < P.n_workers; i++) {
        long long t = read_cpu_ticks(P.worker_pid[i], NULL, NULL, 0);
        s.workers += t > 0 ? t : 0;
    }
    s.self = read_cpu_ticks(getpid(), NULL, NULL, 0);
    if (P.auth_pid > 0) {
        long long t = read_cpu_ticks(P.auth_pid, NULL, NULL, 0);
        s.auth = t > 0 ? t : 0;
    }
    machine_ticks(&s.machine_busy, &s.machine_total);
    return s;
}

static void cpu_print(const cpu_snap *a, const cpu_snap *b)
{
    double secs = (double)(b->t_ns - a->t_ns) / 1e9, hz = (double)sysconf(_SC_CLK_TCK);
    if (secs <= 0)
        return;
    double mt = (double)(b->machine_total - a->machine_total);
    printf("    cpu (%% of one core): %s %.0f  nats %.0f  auth %.0f  clients %.0f  publisher %.0f  "
           "| machine busy %.0f%% of %ld cores\n",
           cfg.nats_mode ? "nats-server(ws)" : "edge",
           100.0 * (double)(b->edges - a->edges) / hz / secs,
           P.nats_pid > 0 ? 100.0 * (double)(b->nats - a->nats) / hz / secs : -1.0,
           P.auth_pid > 0 ? 100.0 * (double)(b->auth - a->auth) / hz / secs : -1.0,
           100.0 * (double)(b->workers - a->workers) / hz / secs,
           100.0 * (double)(b->self - a->self) / hz / secs,
           mt > 0 ? 100.0 * (double)(b->machine_busy - a->machine_busy) / mt : 0.0,
           sysconf(_SC_NPROCESSORS_ONLN));
}

static void parent_send(int w, uint32_t type, uint32_t step, uint64_t expected)
{
    cmd_msg m = {type, step, expected, 0};
    if (P.cmd_fd[w] >= 0 && write(P.cmd_fd[w], &m, sizeof(m)) != (ssize_t)sizeof(m))
        fprintf(stderr, "bench-edge: worker %d command pipe: %s\n", w, strerror(errno));
}

static bool read_full(int fd, void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t r = read(fd, (char *)buf + off, len - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        off += (size_t)r;
    }
    return true;
}

/* Waits for one message of `type` from every worker into out[w] (each
 * `size` bytes). Returns how many arrived before timeout. */
static int collect(uint32_t type, void *out, size_t size, int timeout_ms)
{
    bool got[MAX_WORKERS] = {false};
    int count = 0;
    uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (count < P.n_workers && !deadline_hit) {
        struct pollfd pfd[MAX_WORKERS];
        int map[MAX_WORKERS], np = 0;
        for (int i = 0; i < P.n_workers; i++)
            if (!got[i] && P.report_fd[i] >= 0) {
                pfd[np].fd = P.report_fd[i];
                pfd[np].events = POLLIN;
                map[np++] = i;
            }
        if (np == 0)
            break;
        uint64_t now = mono_ns();
        if (now >= end)
            break;
        int r = poll(pfd, (nfds_t)np, (int)((end - now) / 1000000ull) + 1);
        if (r <= 0)
            continue;
        for (int k = 0; k < np; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP)))
                continue;
            int i = map[k];
            msg_hdr h;
            if (!read_full(P.report_fd[i], &h, sizeof(h))) {
                fprintf(stderr, "bench-edge: worker %d went away\n", i);
                close(P.report_fd[i]);
                P.report_fd[i] = -1;
                continue;
            }
            uint8_t *buf = rt_malloc(h.len ? h.len : 1);
            if (!read_full(P.report_fd[i], buf, h.len)) {
                free(buf);
                close(P.report_fd[i]);
                P.report_fd[i] = -1;
                continue;
            }
            if (h.type == type && h.len == size) {
                memcpy((uint8_t *)out + (size_t)i * size, buf, size);
                got[i] = true;
                count++;
            }
            free(buf);
        }
    }
    return count;
}

/* A free listening port below the ephemeral range (32768-60999), so that
 * the clients' own ports, held or in TIME_WAIT from a previous run, never
 * collide with the servers' listeners. */
static int free_server_port(void)
{
    static uint64_t seed;
    if (!seed)
        seed = mono_ns() ^ (uint64_t)getpid() << 16;
    for (int attempt = 0; attempt < 200; attempt++) {
        int port = 20000 + (int)(rng_next(&seed) % 12000);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (fd < 0)
            break;
        bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return port;
    }
    return rt_test_free_port();
}

static rt_status start_edges(void)
{
    for (int k = 0, attempts = 0; k < cfg.edges; k++) {
        char port_env[32], nats_env[160], id_env[48], threads_env[32];
        const char *env[48];
        int n = 0, port = free_server_port();
        snprintf(port_env, sizeof(port_env), "WS_PORT=%d", port);
        snprintf(nats_env, sizeof(nats_env), "NATS_URL=%s", P.nats_url);
        snprintf(id_env, sizeof(id_env), "EDGE_ID=bench-edge-%d", k);
        env[n++] = port_env;
        env[n++] = nats_env;
        env[n++] = id_env;
        env[n++] = "WS_ALLOWED_ORIGINS=*";
        env[n++] = "WS_RATE_PER_SEC=1000";
        env[n++] = "WS_RATE_BURST=1000";
        env[n++] = "WS_SEND_QUEUE_MAX_BYTES=16777216";
        env[n++] = "WS_AUTH_TIMEOUT_MS=60000";
        env[n++] = "LOG_LEVEL=warn";
        if (cfg.edge_threads > 0) {
            snprintf(threads_env, sizeof(threads_env), "WS_THREADS=%d", cfg.edge_threads);
            env[n++] = threads_env;
        }
        for (int i = 0; i < cfg.n_edge_env; i++)
            env[n++] = cfg.edge_env[i];
        env[n] = NULL;
        rt_status s = rt_test_proc_start(&P.edges[k], cfg.edge_bin, NULL, env);
        if (s != RT_OK) {
            fprintf(stderr, "bench-edge: cannot start %s: %s\n", cfg.edge_bin, rt_error_message());
            return s;
        }
        P.n_edges = k + 1;
        P.edge_pid[k] = rt_test_proc_pid(P.edges[k]);
        s = rt_test_proc_wait_http(P.edges[k], port, "/readyz", 200, 20000);
        if (s != RT_OK && !rt_test_proc_running(P.edges[k]) && ++attempts < 3) {
            fprintf(stderr, "bench-edge: edge %d exited at start; retrying on another port\n", k);
            rt_test_proc_destroy(P.edges[k]);
            P.edges[k] = NULL;
            k--;
            continue;
        }
        if (s != RT_OK) {
            fprintf(stderr, "bench-edge: edge %d not ready on port %d (log %s)\n", k, port,
                    rt_test_proc_log_path(P.edges[k]));
            return s;
        }
        target *t = &cfg.targets[cfg.n_targets++];
        t->addr.sin_family = AF_INET;
        t->addr.sin_port = htons((uint16_t)port);
        t->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        snprintf(t->hostport, sizeof(t->hostport), "127.0.0.1:%d", port);
    }
    return RT_OK;
}

static bool parse_targets(const char *list)
{
    char *copy = rt_strdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        if (!colon || cfg.n_targets >= MAX_TARGETS) {
            free(copy);
            return false;
        }
        *colon = 0;
        target *t = &cfg.targets[cfg.n_targets++];
        t->addr.sin_family = AF_INET;
        t->addr.sin_port = htons((uint16_t)atoi(colon + 1));
        if (strcmp(tok, "localhost") == 0)
            tok = "127.0.0.1";
        if (inet_pton(AF_INET, tok, &t->addr.sin_addr) != 1) {
            free(copy);
            return false;
        }
        snprintf(t->hostport, sizeof(t->hostport), "%s:%s", tok, colon + 1);
    }
    free(copy);
    return cfg.n_targets > 0;
}

static void mint_tokens(void)
{
    int64_t now = rt_time_now_ms() / 1000;
    uint64_t t0 = mono_ns();
    cfg.tokens = rt_calloc((size_t)cfg.users, sizeof(char *));
    for (int i = 0; i < cfg.users; i++) {
        char sub[32];
        snprintf(sub, sizeof(sub), "bu%d", i);
        char *claims = rt_testtoken_claims(sub, cfg.role, "bench", now - 10, now + 6 * 3600);
        if (rt_testtoken_mint(&cfg.tokens[i], "HS256", cfg.secret, NULL, claims) != RT_OK) {
            fprintf(stderr, "bench-edge: minting failed: %s\n", rt_error_message());
            exit(1);
        }
        free(claims);
    }
    fprintf(stderr, "bench-edge: %d tokens minted in %.2f s\n", cfg.users,
            (double)(mono_ns() - t0) / 1e9);
}

static void fork_workers(void)
{
    uint32_t per = (uint32_t)((cfg.n + cfg.workers - 1) / cfg.workers), lo = 0;
    fflush(NULL);
    for (int i = 0; i < cfg.workers; i++) {
        uint32_t n = (uint32_t)cfg.n - lo < per ? (uint32_t)cfg.n - lo : per;
        int cmd[2], rep[2];
        if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
            perror("pipe");
            exit(1);
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        if (pid == 0) {
            close(cmd[1]);
            close(rep[0]);
            for (int k = 0; k < i; k++) {
                close(P.cmd_fd[k]);
                close(P.report_fd[k]);
            }
            worker_main(i, lo, n, cmd[0], rep[1]);
        }
        close(cmd[0]);
        close(rep[1]);
        P.worker_pid[i] = pid;
        P.cmd_fd[i] = cmd[1];
        P.report_fd[i] = rep[0];
        P.worker_n[i] = n;
        P.n_workers = i + 1;
        lo += n;
    }
}

static void stop_workers(void)
{
    for (int i = 0; i < P.n_workers; i++) {
        parent_send(i, CMD_QUIT, 0, 0);
        close(P.cmd_fd[i]);
        P.cmd_fd[i] = -1;
    }
    uint64_t end = mono_ns() + 10000000000ull;
    for (int i = 0; i < P.n_workers; i++) {
        int status;
        if (P.worker_pid[i] <= 0)
            continue;
        while (waitpid(P.worker_pid[i], &status, WNOHANG) == 0) {
            if (mono_ns() > end) {
                kill(P.worker_pid[i], SIGKILL);
                waitpid(P.worker_pid[i], &status, 0);
                break;
            }
            usleep(10000);
        }
        if (P.report_fd[i] >= 0)
            close(P.report_fd[i]);
        P.report_fd[i] = -1;
        P.worker_pid[i] = 0;
    }
}

/* Starts the workers connecting; waits until every connection is
 * subscribed or failed; prints the summary. Returns subscribed count. */
static uint32_t connect_all(ready_report *sum, double *elapsed_s)
{
    ready_report *r = rt_calloc((size_t)P.n_workers, sizeof(*r));
    uint64_t t0 = mono_ns();
    for (int i = 0; i < P.n_workers; i++)
        parent_send(i, CMD_GO, 0, 0);
    int got = collect(MSG_READY, r, sizeof(*r), cfg.conn_timeout_ms + 30000 + cfg.n / 10 /* ms */);
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < got || i < P.n_workers; i++) {
        if (r[i].attempted == 0 && r[i].subscribed == 0)
            continue;
        sum->attempted += r[i].attempted;
        sum->subscribed += r[i].subscribed;
        for (int k = 0; k < FAIL_N; k++)
            sum->failed[k] += r[i].failed[k];
        for (int k = 0; k < MAX_TARGETS; k++)
            sum->per_target[k] += r[i].per_target[k];
        if (r[i].last_subscribed_ns > sum->last_subscribed_ns)
            sum->last_subscribed_ns = r[i].last_subscribed_ns;
        if (r[i].last_finished_ns > sum->last_finished_ns)
            sum->last_finished_ns = r[i].last_finished_ns;
        for (int k = 0; k < HIST_N; k++)
            sum->hist[k] += r[i].hist[k];
    }
    if (got < P.n_workers)
        fprintf(stderr, "bench-edge: only %d of %d workers reported ready\n", got, P.n_workers);
    *elapsed_s = sum->last_subscribed_ns > t0 ? (double)(sum->last_subscribed_ns - t0) / 1e9 : 0;
    uint32_t failed = 0;
    for (int k = 0; k < FAIL_N; k++)
        failed += sum->failed[k];
    printf("connect: %u of %d subscribed in %.3f s (%.0f/s), failed %u", sum->subscribed, cfg.n,
           *elapsed_s, *elapsed_s > 0 ? sum->subscribed / *elapsed_s : 0.0, failed);
    for (int k = 0; k < FAIL_N; k++)
        if (sum->failed[k])
            printf(" %s=%u", fail_names[k], sum->failed[k]);
    if (failed)
        printf(" (all settled after %.3f s)",
               sum->last_finished_ns > t0 ? (double)(sum->last_finished_ns - t0) / 1e9 : 0.0);
    printf("\n  per connection connect->subscribed: p50 %.1f ms  p99 %.1f ms  max %.1f ms\n",
           (double)hist_percentile(sum->hist, 0.5) / 1000,
           (double)hist_percentile(sum->hist, 0.99) / 1000,
           (double)hist_percentile(sum->hist, 1.0) / 1000);
    fflush(stdout);
    free(r);
    return sum->subscribed;
}

/* ------------------------------------------------------------------ */
/* scenarios */

static int run_idle(void)
{
    proc_mem before[MAX_TARGETS], after[MAX_TARGETS];
    ready_report sum;
    double el;
    int npids = P.n_edges ? P.n_edges : cfg.n_edge_pids;
    pid_t *pids = P.n_edges ? P.edge_pid : cfg.edge_pids;

    sleep(1);
    for (int i = 0; i < npids; i++)
        before[i] = read_mem(pids[i]);
    connect_all(&sum, &el);
    printf("holding %.0f s ...\n", cfg.duration_s);
    fflush(stdout);
    usleep((useconds_t)(cfg.duration_s * 1e6));
    if (npids == 0)
        printf("no edge pid known (--edge-pid): memory not measured\n");
    for (int i = 0; i < npids; i++) {
        after[i] = read_mem(pids[i]);
        uint32_t conns = npids == cfg.n_targets ? sum.per_target[i] : sum.subscribed;
        printf("edge %d (pid %d): %u connections  VmRSS %ld -> %ld KiB  (+%ld KiB)  VmHWM %ld "
               "KiB  => %.2f KiB per connection (%.0f bytes)\n",
               i, (int)pids[i], conns, before[i].rss_kb, after[i].rss_kb,
               after[i].rss_kb - before[i].rss_kb, after[i].hwm_kb,
               conns ? (double)(after[i].rss_kb - before[i].rss_kb) / conns : 0.0,
               conns ? (double)(after[i].rss_kb - before[i].rss_kb) * 1024.0 / conns : 0.0);
    }
    stop_workers();
    return sum.subscribed == (uint32_t)cfg.n ? 0 : 1;
}

static int run_storm(void)
{
    ready_report sum;
    double el;
    cpu_snap c0 = cpu_now();
    connect_all(&sum, &el);
    cpu_snap c1 = cpu_now();
    printf("storm: %u of %d clients connected+authenticated+subscribed in %.3f s\n", sum.subscribed,
           cfg.n, el);
    cpu_print(&c0, &c1);
    stop_workers();
    return sum.subscribed == (uint32_t)cfg.n ? 0 : 1;
}

/* publisher */
typedef struct publisher {
    natsConnection *nc;
    jsCtx *js;
    rt_nats *rn;
    atomic_ullong acked, errors;
    int payload_pad;
    _Atomic uint64_t *room_acked_max; /* resume: highest acked seq per room */
} publisher;

static publisher PUB;

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)closure;
    if (pa) {
        atomic_fetch_add(&PUB.acked, 1);
        if (PUB.room_acked_max) {
            /* "rt.v1.room.course.bench" or "...bench-<r>" with --rooms */
            const char *subj = natsMsg_GetSubject(msg), *dash = subj ? strrchr(subj, '-') : NULL;
            long r = cfg.rooms > 1 && dash ? atol(dash + 1) : 0;
            if (r >= 0 && r < cfg.rooms) {
                uint64_t cur = atomic_load(&PUB.room_acked_max[r]);
                while (pa->Sequence > cur &&
                       !atomic_compare_exchange_weak(&PUB.room_acked_max[r], &cur, pa->Sequence))
                    ;
            }
        }
    } else if (pae) {
        if (atomic_fetch_add(&PUB.errors, 1) < 3)
            fprintf(stderr, "bench-edge: publish error: %s\n",
                    pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
    }
    natsMsg_Destroy(msg);
}

static int publisher_open(void)
{
    rt_nats_options o = {.url = P.nats_url, .name = "bench-edge-publisher"};
    jsOptions jo;
    if (rt_nats_connect(&PUB.rn, &o) != RT_OK || rt_nats_wait_connected(PUB.rn, 10000) != RT_OK) {
        fprintf(stderr, "bench-edge: publisher cannot reach %s\n", P.nats_url);
        return -1;
    }
    PUB.nc = rt_nats_connection(PUB.rn);
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 8192;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.Wait = 10000;
    if (natsConnection_JetStream(&PUB.js, PUB.nc, &jo) != NATS_OK)
        return -1;
    /* The edge declares ROOMS; give it a moment, else declare it ourselves. */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    for (int i = 0; i < (cfg.nats_mode ? 1 : 50); i++) {
        if (js_GetStreamInfo(&si, PUB.js, "ROOMS", NULL, &jerr) == NATS_OK && si)
            break;
        usleep(100000);
    }
    if (si) {
        jsStreamInfo_Destroy(si);
    } else {
        rt_stream_spec spec;
        rt_stream_spec_rooms(&spec, 24 * 3600, 1000, 120);
        if (rt_nats_ensure_stream(PUB.rn, &spec) != RT_OK) {
            fprintf(stderr, "bench-edge: cannot declare ROOMS: %s\n", rt_error_message());
            return -1;
        }
        fprintf(stderr, "bench-edge: declared stream ROOMS myself\n");
    }
    return 0;
}

static void publisher_close(void)
{
    if (PUB.js)
        jsCtx_Destroy(PUB.js);
    PUB.js = NULL;
    rt_nats_close(PUB.rn, 2000);
    PUB.rn = NULL;
}

static const char *fanout_room_subject(char *buf, size_t size)
{
    const char *room = cfg.room ? cfg.room : "course:bench";
    const char *colon = strchr(room, ':');
    snprintf(buf, size, "rt.v1.room.%.*s.%s", (int)(colon - room), room, colon + 1);
    return buf;
}

static natsStatus publish_one(const char *subject, uint32_t step, uint64_t pubseq)
{
    Unpuzzle__Rt__V1__RoomMessage m = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__ProgressUpdated p = UNPUZZLE__RT__V1__PROGRESS_UPDATED__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char event_id[80], lesson[2048];
    uint8_t buf[4096];
    int64_t now_ms = rt_time_now_ms();
    uint64_t ns = mono_ns();

    snprintf(event_id, sizeof(event_id), "bench-%u-%llu-%llu", step, (unsigned long long)pubseq,
             (unsigned long long)ns);
    int pad = PUB.payload_pad < (int)sizeof(lesson) - 8 ? PUB.payload_pad : (int)sizeof(lesson) - 8;
    snprintf(lesson, sizeof(lesson), "lesson-%0*d", pad > 0 ? pad : 1, 0);
    ts.seconds = now_ms / 1000;
    ts.nanos = (int32_t)(now_ms % 1000) * 1000000;
    p.event_id = event_id;
    p.occurred_at = &ts;
    p.course_id = "bench";
    p.lesson_id = lesson;
    p.user_id = "benchpub";
    p.position_sec = 42.5;
    p.duration_sec = 600;
    p.playing = true;
    m.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_PROGRESS;
    m.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_UPDATE;
    m.timestamp = &ts;
    m.user_id = "benchpub";
    m.event_id = event_id;
    m.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_PROGRESS;
    m.progress = &p;
    size_t len = unpuzzle__rt__v1__room_message__pack(&m, buf);
    if (cfg.core_publish)
        return natsConnection_Publish(PUB.nc, subject, buf, (int)len);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = event_id;
    return js_PublishAsync(PUB.js, subject, buf, (int)len, &po);
}

static size_t packed_size_with_pad(int pad)
{
    int saved = PUB.payload_pad;
    PUB.payload_pad = pad;
    Unpuzzle__Rt__V1__RoomMessage m = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__ProgressUpdated p = UNPUZZLE__RT__V1__PROGRESS_UPDATED__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char event_id[] = "bench-10-1000000-1000000000000000", lesson[2048];
    ts.seconds = 1800000000;
    ts.nanos = 123000000;
    snprintf(lesson, sizeof(lesson), "lesson-%0*d", pad > 0 ? pad : 1, 0);
    p.event_id = event_id;
    p.occurred_at = &ts;
    p.course_id = "bench";
    p.lesson_id = lesson;
    p.user_id = "benchpub";
    p.position_sec = 42.5;
    p.duration_sec = 600;
    p.playing = true;
    m.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_PROGRESS;
    m.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_UPDATE;
    m.timestamp = &ts;
    m.user_id = "benchpub";
    m.event_id = event_id;
    m.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_PROGRESS;
    m.progress = &p;
    PUB.payload_pad = saved;
    return unpuzzle__rt__v1__room_message__get_packed_size(&m);
}

static void sum_steps(step_report *all, step_report *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < P.n_workers; i++) {
        step_report *r = &all[i];
        out->short_conns += r->short_conns;
        out->live += r->live;
        out->frames += r->frames;
        out->reads += r->reads;
        out->lines += r->lines;
        out->other_lines += r->other_lines;
        out->errors_seen += r->errors_seen;
        for (int k = 0; k < 6; k++)
            out->closes[k] += r->closes[k];
        out->st.received += r->st.received;
        out->st.dups += r->st.dups;
        out->st.gaps += r->st.gaps;
        out->st.seq_gaps += r->st.seq_gaps;
        out->st.bytes += r->st.bytes;
        if (r->st.lat_max_us > out->st.lat_max_us)
            out->st.lat_max_us = r->st.lat_max_us;
        if (r->st.first_ns && (!out->st.first_ns || r->st.first_ns < out->st.first_ns))
            out->st.first_ns = r->st.first_ns;
        if (r->st.last_ns > out->st.last_ns)
            out->st.last_ns = r->st.last_ns;
        for (int k = 0; k < HIST_N; k++)
            out->st.hist[k] += r->st.hist[k];
    }
}

static int run_fanout(void)
{
    ready_report sum;
    double el;
    char subject[128];
    int rates[MAX_STEPS], n_rates = 0;
    int exit_code = 0;

    {
        char *copy = rt_strdup(cfg.rates), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t && n_rates < MAX_STEPS - 1;
             t = strtok_r(NULL, ",", &save))
            if (atoi(t) > 0)
                rates[n_rates++] = atoi(t);
        free(copy);
    }
    uint32_t members = connect_all(&sum, &el);
    if (members == 0) {
        stop_workers();
        return 1;
    }
    if (publisher_open() != 0) {
        stop_workers();
        return 1;
    }
    /* pad the payload so the protobuf RoomMessage is ~payload_bytes */
    int pad = 1;
    while (pad < 1900 && packed_size_with_pad(pad) < (size_t)cfg.payload_bytes)
        pad++;
    PUB.payload_pad = pad;
    fanout_room_subject(subject, sizeof(subject));
    printf("fanout: %u members of %s, publishing RoomMessage (%zu bytes protobuf) to %s via %s\n",
           members, cfg.room ? cfg.room : "course:bench", packed_size_with_pad(pad), subject,
           cfg.core_publish ? "core NATS" : "JetStream (async publish)");
    /* warm-up (step 0): one message, the edge's room subscription is live */
    uint64_t pubseq = 0;
    step_report *all = rt_calloc((size_t)P.n_workers, sizeof(*all));
    step_report tot;
    {
        publish_one(subject, 0, ++pubseq);
        if (!cfg.core_publish)
            js_PublishAsyncComplete(PUB.js, NULL);
        uint64_t end = mono_ns() + 5000000000ull;
        do {
            usleep(100000);
            for (int i = 0; i < P.n_workers; i++)
                parent_send(i, CMD_REPORT, 0, 1);
            collect(MSG_STEP, all, sizeof(*all), 5000);
            sum_steps(all, &tot);
        } while (tot.st.received < members && mono_ns() < end);
        printf("warm-up: 1 message reached %llu of %u members (p99 %.1f ms)\n",
               (unsigned long long)tot.st.received, members,
               (double)hist_percentile(tot.st.hist, 0.99) / 1000);
    }
    printf("%6s %8s %10s %10s %9s %9s %9s %8s %6s %6s %7s %6s\n", "rate", "sent", "deliv/s",
           "expected", "p50 ms", "p99 ms", "max ms", "missing", "dup", "gaps", "msg/frm", "live");
    fflush(stdout);
    uint64_t prev_frames = tot.frames, prev_lines = tot.lines;
    int done_rate[MAX_STEPS], n_done = 0;
    uint64_t done_expected[MAX_STEPS], done_live[MAX_STEPS];
    uint32_t live = members;
    for (int s = 0; s < n_rates && !deadline_hit; s++) {
        uint32_t step = (uint32_t)s + 1;
        int rate = rates[s];
        uint64_t acked0 = atomic_load(&PUB.acked), err0 = atomic_load(&PUB.errors);
        uint64_t sent = 0, failed_pub = 0;
        cpu_snap c0 = cpu_now();
        uint64_t t0 = mono_ns(), dur = (uint64_t)(cfg.step_s * 1e9);
        while (!deadline_hit) {
            uint64_t now = mono_ns();
            if (now - t0 >= dur)
                break;
            uint64_t due = (uint64_t)((double)(now - t0) / 1e9 * rate) + 1;
            while (sent < due) {
                if (publish_one(subject, step, ++pubseq) != NATS_OK)
                    failed_pub++;
                sent++;
            }
            struct timespec sl = {0, 500000};
            nanosleep(&sl, NULL);
        }
        uint64_t pub_end = mono_ns();
        if (!cfg.core_publish) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MaxWait = 15000;
            js_PublishAsyncComplete(PUB.js, &po);
        } else {
            natsConnection_FlushTimeout(PUB.nc, 5000);
        }
        uint64_t expected = cfg.core_publish ? sent - failed_pub : atomic_load(&PUB.acked) - acked0;
        uint64_t pub_errors = atomic_load(&PUB.errors) - err0 + failed_pub;
        /* drain: until every live member has them all; give up when nothing
         * arrived for 3 s or 30 s after the end (late deliveries still count:
         * "lost" means never arrived, latency shows lateness) */
        uint64_t drain_end = mono_ns() + 30000000000ull, last_progress = mono_ns();
        uint64_t last_received = 0;
        do {
            usleep(100000);
            for (int i = 0; i < P.n_workers; i++)
                parent_send(i, CMD_REPORT, step, expected);
            collect(MSG_STEP, all, sizeof(*all), 5000);
            sum_steps(all, &tot);
            if (tot.st.received != last_received) {
                last_received = tot.st.received;
                last_progress = mono_ns();
            }
        } while (tot.st.received < expected * live && mono_ns() < drain_end &&
                 mono_ns() - last_progress < 3000000000ull && !deadline_hit);
        cpu_snap c1 = cpu_now();
        double secs = (double)(pub_end - t0) / 1e9;
        /* deliveries/s over the window the messages arrived in */
        double window = tot.st.last_ns > tot.st.first_ns
                            ? (double)(tot.st.last_ns - tot.st.first_ns) / 1e9
                            : secs;
        if (window < secs)
            window = secs;
        uint64_t want = expected * live;
        uint64_t lost = want > tot.st.received ? want - tot.st.received : 0;
        /* members that disconnected during the step lose everything after */
        uint64_t dropped_members = live > tot.live ? live - tot.live : 0;
        double p99 = (double)hist_percentile(tot.st.hist, 0.99) / 1000;
        uint64_t frames = tot.frames - prev_frames, lines = tot.lines - prev_lines;
        prev_frames = tot.frames;
        prev_lines = tot.lines;
        printf("%6d %8llu %10.0f %10llu %9.1f %9.1f %9.1f %8llu %6llu %6llu %7.2f %6u\n", rate,
               (unsigned long long)sent, (double)tot.st.received / window, (unsigned long long)want,
               (double)hist_percentile(tot.st.hist, 0.5) / 1000, p99,
               (double)tot.st.lat_max_us / 1000, (unsigned long long)lost,
               (unsigned long long)tot.st.dups, (unsigned long long)tot.st.gaps,
               frames ? (double)lines / (double)frames : 0.0, tot.live);
        printf(
            "    published %llu acked %llu errors %llu in %.2f s; %llu connections short; "
            "seq gaps %llu; avg line %.0f B; closes 1013=%u 1008=%u 1009=%u 1012=%u other=%u",
            (unsigned long long)sent, (unsigned long long)expected, (unsigned long long)pub_errors,
            secs, (unsigned long long)tot.short_conns, (unsigned long long)tot.st.seq_gaps,
            tot.st.received ? (double)tot.st.bytes / (double)tot.st.received : 0.0, tot.closes[4],
            tot.closes[1], tot.closes[2], tot.closes[3], tot.closes[0] + tot.closes[5]);
        if (dropped_members)
            printf("; %llu members disconnected", (unsigned long long)dropped_members);
        printf("\n");
        cpu_print(&c0, &c1);
        fflush(stdout);
        done_rate[s] = rate;
        done_expected[s] = expected;
        done_live[s] = live;
        n_done = s + 1;
        live = tot.live;
        if (!cfg.keep_going && (p99 > cfg.max_p99_ms || lost > 0 || pub_errors > 0)) {
            printf("stop: %s at %d msg/s\n",
                   lost > 0         ? "messages missing after the drain"
                   : pub_errors > 0 ? "publish errors"
                                    : "p99 above the limit",
                   rate);
            if (lost > 0)
                exit_code = 1;
            break;
        }
    }
    /* Late deliveries (after a step's drain gave up) still count for their
     * step: wait until nothing arrives for 5 s (at most 60 s), then print
     * each step again with its final figures. "lost" is then what never
     * arrived. */
    if (n_done > 0 && !deadline_hit) {
        uint64_t end = mono_ns() + 60000000000ull, last_progress = mono_ns(), last_total = 0;
        uint64_t final_lost = 0;
        step_report fin[MAX_STEPS];
        for (;;) {
            uint64_t total = 0;
            for (int s = 0; s < n_done; s++) {
                for (int i = 0; i < P.n_workers; i++)
                    parent_send(i, CMD_REPORT, (uint32_t)s + 1, done_expected[s]);
                collect(MSG_STEP, all, sizeof(*all), 5000);
                sum_steps(all, &fin[s]);
                total += fin[s].st.received;
            }
            if (total != last_total) {
                last_total = total;
                last_progress = mono_ns();
            }
            bool complete = true;
            for (int s = 0; s < n_done; s++)
                if (fin[s].st.received < done_expected[s] * done_live[s])
                    complete = false;
            if (complete || mono_ns() - last_progress > 5000000000ull || mono_ns() > end ||
                deadline_hit)
                break;
            usleep(500000);
        }
        printf("final (late deliveries included):\n%6s %10s %10s %9s %9s %10s %8s\n", "rate",
               "expected", "received", "p50 ms", "p99 ms", "max ms", "lost");
        for (int s = 0; s < n_done; s++) {
            uint64_t want = done_expected[s] * done_live[s];
            uint64_t lost = want > fin[s].st.received ? want - fin[s].st.received : 0;
            final_lost += lost;
            printf("%6d %10llu %10llu %9.1f %9.1f %10.1f %8llu\n", done_rate[s],
                   (unsigned long long)want, (unsigned long long)fin[s].st.received,
                   (double)hist_percentile(fin[s].st.hist, 0.5) / 1000,
                   (double)hist_percentile(fin[s].st.hist, 0.99) / 1000,
                   (double)fin[s].st.lat_max_us / 1000, (unsigned long long)lost);
        }
        exit_code = final_lost > 0 ? 1 : 0;
    }
    free(all);
    stop_workers();
    publisher_close();
    return exit_code;
}

/* resume: RSS of each edge sampled while the clients come back */
typedef struct mem_track {
    proc_mem before_drop, after_drop, end;
    long peak_kb;
    uint64_t peak_at_ns;
} mem_track;

static void mem_sample(mem_track *m, int n, const pid_t *pids, uint64_t now)
{
    for (int i = 0; i < n; i++) {
        proc_mem pm = read_mem(pids[i]);
        if (pm.rss_kb > m[i].peak_kb) {
            m[i].peak_kb = pm.rss_kb;
            m[i].peak_at_ns = now;
        }
    }
}

static void resume_sum(const resume_report *all, int n, resume_report *out)
{
    memset(out, 0, sizeof(*out));
    out->done = 1;
    for (int i = 0; i < n; i++) {
        const resume_report *r = &all[i];
        out->n += r->n;
        out->settled += r->settled;
        out->subscribed += r->subscribed;
        out->recovered += r->recovered;
        out->not_recovered += r->not_recovered;
        out->epoch_changed += r->epoch_changed;
        out->caught += r->caught;
        out->lost_after_sub += r->lost_after_sub;
        out->timed_out += r->timed_out;
        for (int k = 0; k < FAIL_N; k++)
            out->failed[k] += r->failed[k];
        for (int k = 0; k < 6; k++)
            out->closes[k] += r->closes[k];
        out->done &= r->done;
        out->received += r->received;
        out->expected += r->expected;
        out->missing += r->missing;
        out->dups += r->dups;
        out->pub_gaps += r->pub_gaps;
        out->seq_gaps += r->seq_gaps;
        out->extra += r->extra;
        out->errors_seen += r->errors_seen;
        out->bytes += r->bytes;
        if (r->last_subscribed_ns > out->last_subscribed_ns)
            out->last_subscribed_ns = r->last_subscribed_ns;
        if (r->last_caught_ns > out->last_caught_ns)
            out->last_caught_ns = r->last_caught_ns;
        if (r->last_settled_ns > out->last_settled_ns)
            out->last_settled_ns = r->last_settled_ns;
        for (int k = 0; k < HIST_N; k++) {
            out->hist_sub[k] += r->hist_sub[k];
            out->hist_caught[k] += r->hist_caught[k];
        }
    }
}

/* The warnings and errors a started edge logged (LOG_LEVEL=warn): how many,
 * and the first few. */
static void edge_log_summary(int i, const char *path)
{
    char line[2048];
    int n = 0;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        printf("    edge %d log: cannot read %s: %s\n", i, path ? path : "(none)", strerror(errno));
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, "\"level\":\"warn") && !strstr(line, "\"level\":\"error"))
            continue;
        if (n++ < 3)
            printf("    edge %d log: %.300s%s", i, line, strchr(line, '\n') ? "" : "\n");
    }
    fclose(f);
    printf("    edge %d log: %d warning/error line(s) (%s)\n", i, n, path);
}

/* The edge's own view of the resume (its /metrics): where replays came from. */
static void edge_resume_counters(int i, const char *hostport)
{
    const char *colon = strrchr(hostport, ':');
    int status = 0;
    char *body = NULL;
    if (!colon || rt_test_http_get(&status, &body, atoi(colon + 1), "/metrics", 2000) != RT_OK ||
        status != 200) {
        free(body);
        return;
    }
    printf("    edge %d metrics:", i);
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, "unpuzzle_edge_resumes_total", 27) ||
            !strncmp(line, "unpuzzle_edge_history_reads_total", 33) ||
            !strncmp(line, "unpuzzle_edge_resume_continuations_total", 40))
            printf(" %s", line + strlen("unpuzzle_edge_"));
    printf("\n");
    free(body);
}

static double mib(long kb)
{
    return (double)kb / 1024.0;
}

static int run_resume(void)
{
    ready_report sum;
    double el;
    int npids = P.n_edges;
    const pid_t *pids = P.edge_pid;
    uint32_t rooms = (uint32_t)cfg.rooms;
    mem_track mem[MAX_TARGETS];
    char name[RT_ROOM_NAME_MAX + 16];
    char(*subjects)[RT_ROOM_SUBJECT_MAX + 16] = rt_calloc(rooms, sizeof(*subjects));
    int exit_code = 1;

    memset(mem, 0, sizeof(mem));
    for (uint32_t r = 0; r < rooms; r++) {
        rt_room rr;
        rt_room_parse(&rr, resume_room_name(r, name, sizeof(name))); /* checked in main */
        rt_room_subject(subjects[r], sizeof(subjects[r]), "rt.v1.room", &rr);
    }
    uint32_t members = connect_all(&sum, &el);
    if (members == 0 || publisher_open() != 0) {
        stop_workers();
        free(subjects);
        return 1;
    }
    PUB.room_acked_max = rt_calloc(rooms, sizeof(*PUB.room_acked_max));
    int pad = 1;
    while (pad < 1900 && packed_size_with_pad(pad) < (size_t)cfg.payload_bytes)
        pad++;
    PUB.payload_pad = pad;

    /* warm-up: one message per room, so every member holds a real seq */
    step_report *all = rt_calloc((size_t)P.n_workers, sizeof(*all));
    step_report tot;
    for (uint32_t r = 0; r < rooms; r++) {
        publish_one(subjects[r], 0, 1);
    }
    js_PublishAsyncComplete(PUB.js, NULL);
    {
        uint64_t end = mono_ns() + 10000000000ull;
        do {
            usleep(100000);
            for (int i = 0; i < P.n_workers; i++)
                parent_send(i, CMD_REPORT, 0, 1);
            collect(MSG_STEP, all, sizeof(*all), 5000);
            sum_steps(all, &tot);
        } while (tot.st.received < members && mono_ns() < end && !deadline_hit);
    }
    uint64_t warm_seq = 0;
    for (uint32_t r = 0; r < rooms; r++)
        if (atomic_load(&PUB.room_acked_max[r]) > warm_seq)
            warm_seq = atomic_load(&PUB.room_acked_max[r]);
    printf("resume: %u members in %u room(s); warm-up: 1 message per room reached %llu of %u "
           "(stream seq up to %llu)\n",
           members, rooms, (unsigned long long)tot.st.received, members,
           (unsigned long long)warm_seq);
    free(all);

    /* settle, then the edge's memory with everyone connected */
    sleep(1);
    if (npids == 0)
        printf("no edge pid known (--edge-pid): memory not measured\n");
    for (int i = 0; i < npids; i++)
        mem[i].before_drop = read_mem(pids[i]);

    /* drop */
    drop_report *dr = rt_calloc((size_t)P.n_workers, sizeof(*dr));
    uint64_t td = mono_ns();
    for (int i = 0; i < P.n_workers; i++)
        parent_send(i, CMD_DROP, 0, 0);
    collect(MSG_DROPPED, dr, sizeof(*dr), 30000);
    uint32_t dropped = 0;
    for (int i = 0; i < P.n_workers; i++)
        dropped += dr[i].dropped;
    free(dr);
    printf("drop: %u connections closed at once (no close frame) in %.3f s; pausing %.1f s\n",
           dropped, (double)(mono_ns() - td) / 1e9, cfg.drop_pause_s);
    usleep((useconds_t)(cfg.drop_pause_s * 1e6));

    /* publish what the clients miss, through JetStream, acks awaited */
    uint64_t acked0 = atomic_load(&PUB.acked), err0 = atomic_load(&PUB.errors), failed_pub = 0;
    uint64_t tp = mono_ns();
    for (int k = 0; k < cfg.missed; k++) {
        for (uint32_t r = 0; r < rooms; r++) {
            if (publish_one(subjects[r], 1, 2 + (uint64_t)k) != NATS_OK)
                failed_pub++;
        }
    }
    {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 30000;
        js_PublishAsyncComplete(PUB.js, &po);
    }
    uint64_t acked = atomic_load(&PUB.acked) - acked0;
    uint64_t pub_errors = atomic_load(&PUB.errors) - err0 + failed_pub;
    uint64_t seq_lo = UINT64_MAX, seq_hi = 0;
    for (uint32_t r = 0; r < rooms; r++) {
        uint64_t last = atomic_load(&PUB.room_acked_max[r]);
        seq_lo = last < seq_lo ? last : seq_lo;
        seq_hi = last > seq_hi ? last : seq_hi;
        for (int i = 0; i < P.n_workers; i++) {
            cmd_msg m = {CMD_ROOM, r, last, 1 + (uint64_t)cfg.missed};
            if (P.cmd_fd[i] >= 0 && write(P.cmd_fd[i], &m, sizeof(m)) != (ssize_t)sizeof(m))
                fprintf(stderr, "bench-edge: worker %d command pipe: %s\n", i, strerror(errno));
        }
    }
    printf("published %d messages per room (%llu in all, RoomMessage %zu bytes protobuf) via "
           "JetStream in %.3f s: acked %llu, errors %llu; last seq per room %llu..%llu\n",
           cfg.missed, (unsigned long long)cfg.missed * rooms, packed_size_with_pad(pad),
           (double)(mono_ns() - tp) / 1e9, (unsigned long long)acked,
           (unsigned long long)pub_errors, (unsigned long long)seq_lo, (unsigned long long)seq_hi);
    for (int i = 0; i < npids; i++) {
        mem[i].after_drop = read_mem(pids[i]);
        mem[i].peak_kb = mem[i].after_drop.rss_kb;
    }
    if (pub_errors > 0 || acked != (uint64_t)cfg.missed * rooms) {
        printf("resume FAIL: publishing the missed messages failed (acked %llu of %llu)\n",
               (unsigned long long)acked, (unsigned long long)cfg.missed * rooms);
        stop_workers();
        publisher_close();
        free((void *)PUB.room_acked_max);
        PUB.room_acked_max = NULL;
        free(subjects);
        return 1;
    }

    /* reconnect, all at once, with since */
    resume_report *rep = rt_calloc((size_t)P.n_workers, sizeof(*rep));
    resume_report rs;
    bool *done = rt_calloc((size_t)P.n_workers, sizeof(bool));
    printf("reconnect: %u clients connect + auth + subscribe with since {seq,epoch} at once "
           "(%s handshakes in flight per worker)\n",
           dropped, cfg.resume_concurrency > 0 ? "limited" : "unlimited");
    printf("%9s %10s %10s %11s %7s %8s %12s %14s\n", "t", "subscribed", "caught up", "recov:false",
           "failed", "pending", "replayed", "edge RSS MiB");
    fflush(stdout);
    cpu_snap c0 = cpu_now();
    uint64_t t0 = mono_ns();
    for (int i = 0; i < P.n_workers; i++)
        parent_send(i, CMD_RESUME, 0, t0);
    uint64_t limit = t0 + (uint64_t)cfg.resume_timeout_s * 1000000000ull + 5000000000ull;
    uint64_t next_sample = t0, next_print = t0 + 1000000000ull, last_change = t0;
    uint64_t last_sig = 0;
    int n_done = 0;
    while (n_done < P.n_workers && !deadline_hit) {
        uint64_t now = mono_ns();
        if (now >= next_sample) {
            mem_sample(mem, npids, pids, now);
            next_sample = now + 20000000ull;
        }
        if (now >= limit)
            break;
        struct pollfd pfd[MAX_WORKERS];
        int map[MAX_WORKERS], np = 0;
        for (int i = 0; i < P.n_workers; i++)
            if (P.report_fd[i] >= 0) {
                pfd[np].fd = P.report_fd[i];
                pfd[np].events = POLLIN;
                map[np++] = i;
            }
        if (np == 0)
            break;
        int wait_ms = (int)((next_sample > now ? next_sample - now : 0) / 1000000ull) + 1;
        if (poll(pfd, (nfds_t)np, wait_ms) > 0) {
            for (int k = 0; k < np; k++) {
                if (!(pfd[k].revents & (POLLIN | POLLHUP)))
                    continue;
                int i = map[k];
                msg_hdr h;
                uint8_t *buf = NULL;
                if (!read_full(P.report_fd[i], &h, sizeof(h)) ||
                    !read_full(P.report_fd[i], buf = rt_malloc(h.len ? h.len : 1), h.len)) {
                    fprintf(stderr, "bench-edge: worker %d went away\n", i);
                    free(buf);
                    close(P.report_fd[i]);
                    P.report_fd[i] = -1;
                    if (!done[i]) {
                        done[i] = true;
                        n_done++;
                    }
                    continue;
                }
                if (h.type == MSG_RESUME && h.len == sizeof(resume_report)) {
                    memcpy(&rep[i], buf, sizeof(resume_report));
                    if (rep[i].done && !done[i]) {
                        done[i] = true;
                        n_done++;
                    }
                }
                free(buf);
            }
        }
        now = mono_ns();
        if (now >= next_print) {
            long rss = 0;
            for (int i = 0; i < npids; i++) {
                proc_mem pm = read_mem(pids[i]);
                rss += pm.rss_kb > 0 ? pm.rss_kb : 0;
            }
            resume_sum(rep, P.n_workers, &rs);
            uint32_t failed = rs.lost_after_sub + rs.timed_out;
            for (int k = 0; k < FAIL_N; k++)
                failed += rs.failed[k];
            printf("%7.1f s %10u %10u %11u %7u %8llu %12llu %14.1f\n", (double)(now - t0) / 1e9,
                   rs.subscribed, rs.caught, rs.not_recovered, failed,
                   (unsigned long long)rs.missing, (unsigned long long)rs.received,
                   npids ? mib(rss) : 0.0);
            fflush(stdout);
            uint64_t step = now - t0 < 10000000000ull ? 1000000000ull : 5000000000ull;
            next_print = now + step;
            uint64_t sig = rs.settled + rs.subscribed + rs.received;
            if (sig != last_sig) {
                last_sig = sig;
                last_change = now;
            } else if (now - last_change > 60000000000ull) {
                printf("no progress for 60 s: stopping\n");
                break;
            }
        }
    }
    cpu_snap c1 = cpu_now();
    free(done);
    resume_sum(rep, P.n_workers, &rs);
    free(rep);
    /* memory once the replays are written and freed */
    sleep(1);
    for (int i = 0; i < npids; i++)
        mem[i].end = read_mem(pids[i]);

    uint32_t failed = rs.lost_after_sub + rs.timed_out;
    for (int k = 0; k < FAIL_N; k++)
        failed += rs.failed[k];
    double all_s = rs.last_caught_ns > t0 ? (double)(rs.last_caught_ns - t0) / 1e9 : 0;
    /* percentiles are bucket upper edges (+3 %): never above the exact max */
    double c50 = (double)hist_percentile(rs.hist_caught, 0.5) / 1000,
           c99 = (double)hist_percentile(rs.hist_caught, 0.99) / 1000;
    c50 = c50 < all_s * 1000 ? c50 : all_s * 1000;
    c99 = c99 < all_s * 1000 ? c99 : all_s * 1000;
    double sub_s = rs.last_subscribed_ns > t0 ? (double)(rs.last_subscribed_ns - t0) / 1e9 : 0;
    printf("reconnect: %u of %u subscribed again in %.3f s (recovered:true %u, recovered:false "
           "%u, epoch changed %u), failed %u",
           rs.subscribed, rs.n, sub_s, rs.recovered, rs.not_recovered, rs.epoch_changed, failed);
    for (int k = 0; k < FAIL_N; k++)
        if (rs.failed[k])
            printf(" %s=%u", fail_names[k], rs.failed[k]);
    if (rs.lost_after_sub)
        printf(" closed-after-subscribed=%u", rs.lost_after_sub);
    if (rs.timed_out)
        printf(" not-caught-up-in-%ds=%u", cfg.resume_timeout_s, rs.timed_out);
    printf("\n  per connection connect->subscribed (after its replay): p50 %.1f ms  p99 %.1f ms  "
           "max %.1f ms\n",
           (double)hist_percentile(rs.hist_sub, 0.5) / 1000,
           (double)hist_percentile(rs.hist_sub, 0.99) / 1000,
           (double)hist_percentile(rs.hist_sub, 1.0) / 1000);
    printf("caught up: %u of %u clients, the last %.3f s after the reconnect started; per client "
           "(from the reconnect start) p50 %.1f ms  p99 %.1f ms  max %.1f ms\n",
           rs.caught, rs.n, all_s, c50, c99, all_s * 1000);
    printf("  messages: replayed %llu of %llu owed (%.0f/s, avg line %.0f B); missing %llu, "
           "duplicates %llu, pubseq gaps %llu, prevSeq breaks %llu, unexpected %llu; closes "
           "1013=%u 1008=%u 1009=%u 1012=%u other=%u; server errors %llu\n",
           (unsigned long long)rs.received, (unsigned long long)rs.expected,
           all_s > 0 ? (double)rs.received / all_s : 0.0,
           rs.received ? (double)rs.bytes / (double)rs.received : 0.0,
           (unsigned long long)rs.missing, (unsigned long long)rs.dups,
           (unsigned long long)rs.pub_gaps, (unsigned long long)rs.seq_gaps,
           (unsigned long long)rs.extra, rs.closes[4], rs.closes[1], rs.closes[2], rs.closes[3],
           rs.closes[0] + rs.closes[5], (unsigned long long)rs.errors_seen);
    cpu_print(&c0, &c1);
    for (int i = 0; i < MAX_TARGETS; i++)
        if (P.edges[i])
            edge_log_summary(i, rt_test_proc_log_path(P.edges[i]));
    for (int i = 0; i < cfg.n_targets; i++)
        edge_resume_counters(i, cfg.targets[i].hostport);
    long peak_total = 0, before_total = 0;
    for (int i = 0; i < npids; i++) {
        uint32_t conns = npids == cfg.n_targets ? sum.per_target[i] : sum.subscribed;
        printf("edge %d (pid %d): %u connections  VmRSS before drop %ld KiB, after drop %ld KiB, "
               "peak while resuming %ld KiB (at %.2f s, +%ld KiB over before drop), 1 s after "
               "%ld KiB; VmHWM %ld KiB\n",
               i, (int)pids[i], conns, mem[i].before_drop.rss_kb, mem[i].after_drop.rss_kb,
               mem[i].peak_kb,
               mem[i].peak_at_ns > t0 ? (double)(mem[i].peak_at_ns - t0) / 1e9 : 0.0,
               mem[i].peak_kb - mem[i].before_drop.rss_kb, mem[i].end.rss_kb, mem[i].end.hwm_kb);
        peak_total += mem[i].peak_kb;
        before_total += mem[i].before_drop.rss_kb;
    }
    bool pass = rs.n == members && rs.caught == rs.n && rs.not_recovered == 0 && rs.missing == 0 &&
                rs.dups == 0 && rs.pub_gaps == 0 && rs.seq_gaps == 0 && rs.extra == 0 &&
                failed == 0 && pub_errors == 0 && acked == (uint64_t)cfg.missed * rooms;
    printf("resume %s: %u of %u clients caught up (%d missed messages each, %u room(s)) in "
           "%.3f s (per client p50 %.0f ms, p99 %.0f ms); recovered:false %u, missing %llu, "
           "duplicates %llu, failed %u",
           pass ? "PASS" : "FAIL", rs.caught, rs.n, cfg.missed, rooms, all_s, c50, c99,
           rs.not_recovered, (unsigned long long)rs.missing, (unsigned long long)rs.dups, failed);
    if (npids)
        printf("; edge RSS %.1f MiB before drop, peak %.1f MiB while resuming (+%.1f MiB)",
               mib(before_total), mib(peak_total), mib(peak_total - before_total));
    printf("\n");
    fflush(stdout);
    exit_code = pass ? 0 : 1;
    stop_workers();
    publisher_close();
    free((void *)PUB.room_acked_max);
    PUB.room_acked_max = NULL;
    free(subjects);
    return exit_code;
}

static int run_probe(void)
{
    static worker w;
    static const char *const no_tokens[1] = {""};
    cfg.n = 1;
    cfg.users = 1;
    if (!cfg.tokens)
        cfg.tokens = (char **)no_tokens;
    worker_init(&w, 0, 0, 1);
    w.go = true;
    w.verbose = true;
    worker_loop(&w, mono_ns() + (uint64_t)(cfg.duration_s * 1e9));
    printf("probe: frames %llu lines %llu pongs sent %llu\n", (unsigned long long)w.frames,
           (unsigned long long)w.lines, (unsigned long long)w.pongs_sent);
    int rc = w.ready.failed[FAIL_CONNECT] || w.ready.failed[FAIL_HANDSHAKE] ? 1 : 0;
    worker_destroy(&w);
    return rc;
}

/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench-edge idle|fanout|storm|resume N [options]\n"
            "       bench-edge probe --edge-url HOST:PORT [--path P] [--send TEXT]...\n"
            "       bench-edge selftest\n"
            "options:\n"
            "  --edges K            ws-edge processes to start (default: 1 per 18,000 conns)\n"
            "  --edge-url LIST      host:port,... of running edges (no stack started)\n"
            "  --edge-pid LIST      their pids, for RSS and CPU figures\n"
            "  --nats URL           NATS for the publisher with --edge-url\n"
            "  --secret S           HS256 secret for tokens with --edge-url\n"
            "  --edge-bin PATH      ws-edge binary (default: beside bench-edge)\n"
            "  --edge-env NAME=VAL  extra edge environment (repeatable)\n"
            "  --edge-threads T     WS_THREADS for started edges\n"
            "  --workers W          client processes (default: 1 per 15,000 conns, >= 2 "
            "above 2,000)\n"
            "  --users U            distinct users/tokens (default N)\n"
            "  --room R             room to join: course:<id> (default course:bench) or "
            "'user' (own user room)\n"
            "  --role R             app_metadata.role in tokens (student; admin joins any "
            "course)\n"
            "  --duration S         idle: hold time; probe: run time (5)\n"
            "  --step S             fanout: seconds per rate step (5)\n"
            "  --rates LIST         fanout: msg/s steps (%s)\n"
            "  --max-p99-ms MS      fanout: stop after the step whose p99 passes this (50)\n"
            "  --keep-going         fanout: run every step\n"
            "  --core-publish       fanout: core NATS publish instead of JetStream async\n"
            "  --payload-bytes B    fanout, resume: protobuf RoomMessage size (200)\n"
            "  --rooms K            resume: spread the members over K rooms <room>-0..K-1 (1)\n"
            "  --missed M           resume: messages published per room while away (100)\n"
            "  --drop-pause S       resume: seconds between the drop and publishing (1)\n"
            "  --resume-timeout S   resume: reconnect start .. all caught up limit (300)\n"
            "  --concurrency C      handshakes in flight per worker (idle/fanout 1000, storm "
            "unlimited;\n"
            "                       resume: 1000 first, unlimited at the reconnect; C sets "
            "both)\n"
            "  --conn-timeout MS    per connection connect..subscribed limit (30000)\n"
            "  --deadline S         global deadline, everything stops (auto)\n"
            "  --server edge|nats   measure ws-edge (default) or, as the reference, "
            "nats-server's\n"
            "                       own WebSocket listener (NATS protocol, SUB rtd.v1.room...)\n"
            "  --path P  --origin O --send TEXT (probe)\n",
            cfg.rates);
}

static char *self_dir(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        return rt_strdup(".");
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = 0;
    return rt_strdup(buf);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"edges", required_argument, NULL, 'E'},
                                            {"edge-url", required_argument, NULL, 'U'},
                                            {"edge-pid", required_argument, NULL, 'p'},
                                            {"nats", required_argument, NULL, 'n'},
                                            {"secret", required_argument, NULL, 's'},
                                            {"edge-bin", required_argument, NULL, 'b'},
                                            {"edge-env", required_argument, NULL, 'e'},
                                            {"edge-threads", required_argument, NULL, 'T'},
                                            {"workers", required_argument, NULL, 'w'},
                                            {"users", required_argument, NULL, 'u'},
                                            {"room", required_argument, NULL, 'r'},
                                            {"role", required_argument, NULL, 'R'},
                                            {"duration", required_argument, NULL, 'd'},
                                            {"step", required_argument, NULL, 'S'},
                                            {"rates", required_argument, NULL, 'a'},
                                            {"max-p99-ms", required_argument, NULL, 'm'},
                                            {"keep-going", no_argument, NULL, 'k'},
                                            {"core-publish", no_argument, NULL, 'c'},
                                            {"payload-bytes", required_argument, NULL, 'P'},
                                            {"concurrency", required_argument, NULL, 'C'},
                                            {"conn-timeout", required_argument, NULL, 't'},
                                            {"deadline", required_argument, NULL, 'D'},
                                            {"path", required_argument, NULL, 'x'},
                                            {"origin", required_argument, NULL, 'o'},
                                            {"send", required_argument, NULL, 'X'},
                                            {"server", required_argument, NULL, 'Z'},
                                            {"rooms", required_argument, NULL, 'K'},
                                            {"missed", required_argument, NULL, 'M'},
                                            {"resume-timeout", required_argument, NULL, 'W'},
                                            {"drop-pause", required_argument, NULL, 'Y'},
                                            {"verbose", no_argument, NULL, 'v'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt, concurrency = -1, edges = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'E':
            edges = atoi(optarg);
            break;
        case 'U':
            cfg.edge_urls = optarg;
            break;
        case 'p': {
            char *copy = rt_strdup(optarg), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && cfg.n_edge_pids < MAX_TARGETS;
                 t = strtok_r(NULL, ",", &save))
                cfg.edge_pids[cfg.n_edge_pids++] = atoi(t);
            free(copy);
            break;
        }
        case 'n':
            cfg.nats_url = optarg;
            break;
        case 's':
            cfg.secret = optarg;
            break;
        case 'b':
            cfg.edge_bin = optarg;
            break;
        case 'e':
            if (cfg.n_edge_env < MAX_EDGE_ENV)
                cfg.edge_env[cfg.n_edge_env++] = optarg;
            break;
        case 'T':
            cfg.edge_threads = atoi(optarg);
            break;
        case 'w':
            cfg.workers = atoi(optarg);
            break;
        case 'u':
            cfg.users = atoi(optarg);
            break;
        case 'r':
            cfg.room = optarg;
            break;
        case 'R':
            cfg.role = optarg;
            break;
        case 'd':
            cfg.duration_s = atof(optarg);
            break;
        case 'S':
            cfg.step_s = atof(optarg);
            break;
        case 'a':
            cfg.rates = optarg;
            break;
        case 'm':
            cfg.max_p99_ms = atof(optarg);
            break;
        case 'k':
            cfg.keep_going = true;
            break;
        case 'c':
            cfg.core_publish = true;
            break;
        case 'P':
            cfg.payload_bytes = atoi(optarg);
            break;
        case 'C':
            concurrency = atoi(optarg);
            break;
        case 't':
            cfg.conn_timeout_ms = atoi(optarg);
            break;
        case 'D':
            cfg.deadline_s = atoi(optarg);
            break;
        case 'x':
            cfg.path = optarg;
            break;
        case 'o':
            cfg.origin = optarg;
            break;
        case 'X':
            if (cfg.n_send < MAX_SEND)
                cfg.send[cfg.n_send++] = optarg;
            break;
        case 'v':
            cfg.verbose = true;
            break;
        case 'K':
            cfg.rooms = atoi(optarg);
            break;
        case 'M':
            cfg.missed = atoi(optarg);
            break;
        case 'W':
            cfg.resume_timeout_s = atoi(optarg);
            break;
        case 'Y':
            cfg.drop_pause_s = atof(optarg);
            break;
        case 'Z':
            if (strcmp(optarg, "nats") == 0) {
                cfg.nats_mode = true;
            } else if (strcmp(optarg, "edge") != 0) {
                fprintf(stderr, "--server edge|nats\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *sc = argv[optind];
    if (strcmp(sc, "idle") == 0)
        cfg.scenario = SC_IDLE;
    else if (strcmp(sc, "fanout") == 0)
        cfg.scenario = SC_FANOUT;
    else if (strcmp(sc, "storm") == 0)
        cfg.scenario = SC_STORM;
    else if (strcmp(sc, "resume") == 0)
        cfg.scenario = SC_RESUME;
    else if (strcmp(sc, "probe") == 0)
        cfg.scenario = SC_PROBE;
    else if (strcmp(sc, "selftest") == 0)
        return selftest();
    else {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (cfg.scenario == SC_PROBE) {
        if (!cfg.edge_urls || !parse_targets(cfg.edge_urls)) {
            fprintf(stderr, "probe needs --edge-url HOST:PORT\n");
            return 2;
        }
        return run_probe();
    }
    if (optind + 1 >= argc || atoi(argv[optind + 1]) < 1) {
        fprintf(stderr, "%s needs a connection count N\n", sc);
        return 2;
    }
    cfg.n = atoi(argv[optind + 1]);
    if (cfg.users <= 0)
        cfg.users = cfg.n;
    if (cfg.workers <= 0)
        cfg.workers = cfg.n > 2000 ? (cfg.n + 14999) / 15000 : 1;
    if (cfg.workers < 2 && cfg.n > 2000)
        cfg.workers = 2;
    if (cfg.workers > MAX_WORKERS)
        cfg.workers = MAX_WORKERS;
    if ((cfg.n + cfg.workers - 1) / cfg.workers > 19000) {
        fprintf(stderr, "more than 19,000 connections per worker: raise --workers\n");
        return 2;
    }
    cfg.concurrency = concurrency >= 0 ? concurrency : cfg.scenario == SC_STORM ? 0 : 1000;
    cfg.resume_concurrency = concurrency >= 0 ? concurrency : 0; /* reconnect: all at once */
    if (cfg.deadline_s <= 0) {
        int steps = 1;
        for (const char *p = cfg.rates; *p; p++)
            steps += *p == ',';
        cfg.deadline_s = 180 + cfg.n / 500 + (int)cfg.duration_s +
                         (cfg.scenario == SC_FANOUT ? steps * ((int)cfg.step_s + 40) : 0) +
                         (cfg.scenario == SC_RESUME ? cfg.resume_timeout_s + 60 : 0);
    }
    if (cfg.room && strcmp(cfg.room, "user") != 0) {
        rt_room rr;
        if (rt_room_parse(&rr, cfg.room) != RT_OK) {
            fprintf(stderr, "bad --room %s\n", cfg.room);
            return 2;
        }
    }
    if (cfg.scenario == SC_FANOUT && cfg.room && strcmp(cfg.room, "user") == 0) {
        fprintf(stderr, "fanout needs one shared room (course:<id>)\n");
        return 2;
    }
    if (cfg.scenario == SC_RESUME) {
        char name[RT_ROOM_NAME_MAX + 16];
        rt_room rr;
        if (cfg.room && strcmp(cfg.room, "user") == 0) {
            fprintf(stderr, "resume needs shared rooms (course:<id>, --rooms K)\n");
            return 2;
        }
        if (cfg.nats_mode) {
            fprintf(stderr, "resume measures ws-edge (nats-server's listener has no since)\n");
            return 2;
        }
        if (cfg.rooms < 1 || cfg.rooms > MAX_ROOMS || cfg.rooms > cfg.n || cfg.missed < 1) {
            fprintf(stderr, "resume: --rooms 1..min(N, %d), --missed >= 1\n", MAX_ROOMS);
            return 2;
        }
        if (rt_room_parse(&rr, resume_room_name((uint32_t)cfg.rooms - 1, name, sizeof(name))) !=
            RT_OK) {
            fprintf(stderr, "bad room %s: %s\n", name, rt_error_message());
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)cfg.deadline_s);

    int rc = 1;
    if (cfg.edge_urls) {
        if (!parse_targets(cfg.edge_urls)) {
            fprintf(stderr, "bad --edge-url %s\n", cfg.edge_urls);
            return 2;
        }
        P.nats_url = cfg.nats_url;
        if ((cfg.scenario == SC_FANOUT || cfg.scenario == SC_RESUME) && !P.nats_url) {
            fprintf(stderr, "%s with --edge-url needs --nats URL\n", sc);
            return 2;
        }
        for (int i = 0; i < cfg.n_edge_pids; i++)
            P.edge_pid[i] = cfg.edge_pids[i];
        P.n_edges = 0; /* not ours; CPU from --edge-pid below */
    } else if (cfg.nats_mode) {
        /* the reference: nats-server's own WebSocket listener, same JetStream
         * path (ROOMS re-published to rtd.v1.room.>) */
        int ws_port = free_server_port();
        char *extra = rt_asprintf("websocket {\n  port: %d\n  no_tls: true\n}\n", ws_port);
        rt_status st = rt_test_nats_start(&P.ref_nats, extra);
        free(extra);
        if (st != RT_OK) {
            fprintf(stderr, "bench-edge: nats-server failed: %s\n", rt_error_message());
            return 1;
        }
        P.nats_url = rt_test_nats_url(P.ref_nats);
        /* the server under test: RSS and CPU under the "server" column */
        P.edge_pid[0] = find_child_named("nats-server");
        P.n_edges = 1;
        target *t = &cfg.targets[cfg.n_targets++];
        t->addr.sin_family = AF_INET;
        t->addr.sin_port = htons((uint16_t)ws_port);
        t->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        snprintf(t->hostport, sizeof(t->hostport), "127.0.0.1:%d", ws_port);
        fprintf(stderr, "bench-edge: reference nats-server up (%s, websocket %d)\n", P.nats_url,
                ws_port);
    } else {
        char *dir = self_dir();
        char *bin = cfg.edge_bin ? rt_strdup(cfg.edge_bin) : rt_asprintf("%s/ws-edge", dir);
        if (!cfg.edge_bin && access(bin, X_OK) != 0) {
            free(bin);
            bin = rt_strdup(RT_SOURCE_DIR "/build/bin/ws-edge");
        }
        cfg.edge_bin = bin;
        free(dir);
        if (edges > 0)
            cfg.edges = edges;
        else
            cfg.edges = (cfg.n + 17999) / 18000;
        if (cfg.edges > MAX_TARGETS)
            cfg.edges = MAX_TARGETS;
        uint64_t t0 = mono_ns();
        const char *auth_env[] = {"LOG_LEVEL=warn", NULL};
        if (rt_test_stack_start(&P.stack) != RT_OK ||
            rt_test_stack_start_auth(P.stack, auth_env) != RT_OK) {
            fprintf(stderr, "bench-edge: stack failed: %s\n", rt_error_message());
            rt_test_stack_destroy(P.stack);
            return 1;
        }
        P.nats_url = rt_test_nats_url(P.stack->nats);
        P.nats_pid = find_child_named("nats-server");
        P.auth_pid = rt_test_proc_pid(P.stack->auth);
        /* course membership for every bench user (resume: of the room(s)
         * its connections join) */
        int n_courses = cfg.scenario == SC_RESUME ? cfg.rooms : 1;
        for (int r = 0; r < n_courses; r++) {
            char name[RT_ROOM_NAME_MAX + 16];
            const char *room = cfg.room ? cfg.room : "course:bench";
            char *where = rt_strdup("");
            if (cfg.scenario == SC_RESUME) {
                room = resume_room_name((uint32_t)r, name, sizeof(name));
                if (cfg.rooms > 1 && cfg.users % cfg.rooms == 0) {
                    free(where); /* user u only ever joins room u % K */
                    where = rt_asprintf(" WHERE g %% %d = %d", cfg.rooms, r);
                }
            }
            if (strncmp(room, "course:", 7) != 0) {
                free(where);
                continue;
            }
            char *sql =
                rt_asprintf("INSERT INTO realtime.course_members (course_id, user_id, role) "
                            "SELECT '%s', 'bu' || g, 'student' FROM generate_series(0, %d) g%s "
                            "ON CONFLICT DO NOTHING",
                            room + 7, cfg.users - 1, where);
            if (rt_test_pg_exec(P.stack->pg, sql) != RT_OK)
                fprintf(stderr, "bench-edge: membership insert failed: %s\n", rt_error_message());
            free(sql);
            free(where);
        }
        if (start_edges() != RT_OK)
            goto out;
        fprintf(stderr, "bench-edge: stack + %d edge(s) up in %.1f s (nats %s)\n", P.n_edges,
                (double)(mono_ns() - t0) / 1e9, P.nats_url);
    }
    if (!cfg.nats_mode)
        mint_tokens();
    fork_workers();
    if (cfg.edge_urls) {
        /* CPU figures for edges given by pid */
        P.n_edges = cfg.n_edge_pids;
    }
    printf("bench-edge %s: %d connections, %d worker(s), %d %s(s), %d user(s), room %s\n", sc,
           cfg.n, cfg.workers, cfg.n_targets, cfg.nats_mode ? "nats-server websocket" : "edge",
           cfg.users, cfg.room ? cfg.room : "course:bench");
    if (cfg.scenario == SC_IDLE) {
        rc = run_idle();
    } else if (cfg.scenario == SC_STORM) {
        rc = run_storm();
    } else if (cfg.scenario == SC_RESUME) {
        rc = run_resume();
    } else {
        rc = run_fanout();
    }
out:
    stop_workers();
    for (int i = 0; i < MAX_TARGETS; i++) {
        if (P.edges[i]) {
            rt_test_proc_stop(P.edges[i], SIGTERM, 10000, NULL);
            rt_test_proc_destroy(P.edges[i]);
        }
    }
    rt_test_stack_destroy(P.stack);
    rt_test_nats_destroy(P.ref_nats);
    alarm(0);
    return rc;
}
