/*
 * bench-analytics: events per second one analytics-aggregator ingests with
 * checkpointing on, and how far behind its figures are under a steady load.
 *
 *   build/bin/bench-analytics                  both scenarios, backlog then live,
 *                                              on one self-started stack
 *   build/bin/bench-analytics backlog [N]      N events (500000)
 *   build/bin/bench-analytics live [R [D]]     R events/s (100000) for D s (20)
 *
 * backlog: N events are published while the aggregator is stopped, then it
 *   is started and timed until its /metrics say it has read them all ->
 *   events/s ingested with checkpointing on, the checkpoints it committed,
 *   its CPU time and RSS; the publish rate (nothing consuming) is reported
 *   too.
 * live: R events/s for D s while analytics.v1.snapshot is requested every
 *   100 ms for --sample courses; staleness = the wall clock at the reply
 *   minus the reply's `end`. occurred_at is the wall clock at publish, so
 *   nothing is late and `end` (wall mode: max(latest occurred_at, wall -
 *   lateness)) is the occurred_at of the course's latest event the figures
 *   include. Reports staleness p50/p99/max, the rates published and applied,
 *   the consumer's pending messages when publishing ends and how long the
 *   aggregator took to drain them, and the aggregator's own
 *   unpuzzle_analytics_staleness_seconds histogram (published updates).
 *
 * The stack: without --nats it starts nats-server (JetStream on disk),
 * PostgreSQL (migrations applied) and one analytics-aggregator
 * (ANALYTICS_REPLICA_ID=bench-agg; ANALYTICS_* from the environment, else
 * the service's defaults: wall clock, checkpoint every 1000 ms, 16
 * partitions). --nats URL --database-url URL starts only the aggregator
 * against running servers; --admin-port P (with --nats) uses a running
 * aggregator whose /metrics is on 127.0.0.1:P (--replica-id names its
 * consumer, --pid gives RSS/CPU); backlog then publishes while it runs, so
 * it measures the smaller of the publish and ingest rates.
 *
 * Workload over --courses C (100) with --students S (50) per course: first
 * every course's instructor and students enroll and 5 lessons are upserted;
 * then each event picks a course and a student at random: heartbeats
 * (~87 %; each advances the student's video by 1 s and the 300th completes
 * the lesson), prompts shown and completed (~4.5 %), confusions and their
 * resolutions (~4 %), questions and answers (~3 %), purchases (1 %, USD
 * and EUR). Every event is protobuf-encoded before the clock starts; publishing
 * only puts occurred_at (the wall clock) in front of the encoded bytes (the
 * fields of a protobuf message may come in any order) and calls
 * js_PublishAsync with Nats-Msg-Id = event_id, js_PublishAsyncComplete at
 * the end. --publishers P (2) splits the events over P connections and
 * threads (one publisher does 75-100k events/s on the 2-core box: below the
 * 100,000/s target).
 *
 * Other options: --sample K courses snapshotted (4), --seed X (the mix),
 * --aggregator PATH (another build of the service, e.g. to try a change).
 */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_proto.h"
#include "rt_teststack.h"
#include "rt_time.h"

#define LESSONS 5
#define VIDEO_S 300
#define OPEN_MAX 256
#define MAX_PUBLISHERS 8
#define MAX_SAMPLE 32
#define SNAPSHOT_EVERY_MS 100
#define BODY_MAX 900
#define PACE_NS 1000000 /* live publishers: events due within this go at once */
#define STALL_S 120     /* no progress this long: the aggregator is stuck */
#define DRAIN_MAX_S 60  /* live: longest wait for the backlog left at the end */

/* ---- the events ---- */

enum {
    K_ENROLL,
    K_LESSON,
    K_HEARTBEAT,
    K_LESSON_DONE,
    K_PROMPT_SHOWN,
    K_PROMPT_DONE,
    K_CONFUSION,
    K_RESOLVED,
    K_QUESTION,
    K_ANSWER,
    K_PURCHASE,
    N_KINDS
};

static const char *const SUBJECTS[N_KINDS] = {
    "evt.v1.enrollment.changed", "evt.v1.lesson.upserted",    "evt.v1.progress.updated",
    "evt.v1.lesson.completed",   "evt.v1.prompt.shown",       "evt.v1.prompt.responded",
    "evt.v1.confusion.created",  "evt.v1.confusion.resolved", "evt.v1.question.created",
    "evt.v1.question.answered",  "evt.v1.purchase.completed"};

static const char *const KIND_NAMES[N_KINDS] = {
    "enrollments",   "lessons",           "heartbeats", "lessons completed",
    "prompts shown", "prompts completed", "confusions", "resolutions",
    "questions",     "answers",           "purchases"};

/* One encoded event: its event_id (NUL-terminated) then its protobuf bytes
 * without occurred_at, at `off` in the arena. */
typedef struct event_ref {
    uint64_t off;
    uint16_t body_len;
    uint8_t id_len;
    uint8_t kind;
} event_ref;

typedef struct event_set {
    uint8_t *arena;
    size_t used, cap;
    event_ref *ev;
    size_t n, cap_n;
    uint64_t by_kind[N_KINDS];
} event_set;

static void set_free(event_set *s)
{
    free(s->arena);
    free(s->ev);
    memset(s, 0, sizeof(*s));
}

static void set_add(event_set *s, int kind, const char *event_id, const ProtobufCMessage *msg)
{
    size_t id_len = strlen(event_id), len = protobuf_c_message_get_packed_size(msg);
    if (len > BODY_MAX || id_len > 64) {
        fprintf(stderr, "event too big (%zu bytes)\n", len);
        exit(1);
    }
    if (s->used + id_len + 1 + len > s->cap) {
        s->cap = s->cap ? s->cap * 2 : (size_t)1 << 20;
        s->arena = rt_realloc(s->arena, s->cap);
    }
    if (s->n == s->cap_n) {
        s->cap_n = s->cap_n ? s->cap_n * 2 : 4096;
        s->ev = rt_realloc(s->ev, s->cap_n * sizeof(*s->ev));
    }
    event_ref *e = &s->ev[s->n++];
    e->off = s->used;
    e->id_len = (uint8_t)id_len;
    e->body_len = (uint16_t)len;
    e->kind = (uint8_t)kind;
    memcpy(s->arena + s->used, event_id, id_len + 1);
    protobuf_c_message_pack(msg, s->arena + s->used + id_len + 1);
    s->used += id_len + 1 + len;
    s->by_kind[kind]++;
}

/* ---- the workload generator ---- */

typedef struct gen_student {
    int lesson, position;
    bool prompt_open;
    uint32_t prompt;
} gen_student;

typedef struct gen_ring {
    uint32_t id[OPEN_MAX], student[OPEN_MAX];
    size_t head, count;
} gen_ring;

typedef struct gen_course {
    gen_student *students;
    gen_ring confusions, questions;
    uint32_t next_confusion, next_question, next_purchase, next_prompt;
} gen_course;

typedef struct gen {
    int courses, students;
    char tag[24]; /* makes ids unique per run (a running stack keeps old ones) */
    uint64_t seq, rng;
    gen_course *c;
} gen;

static uint64_t rnd(gen *g)
{
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 2685821657736338717ull;
}

static void gen_init(gen *g, int courses, int students, uint64_t seed)
{
    memset(g, 0, sizeof(*g));
    g->courses = courses;
    g->students = students;
    g->rng = seed ? seed : 88172645463325252ull;
    snprintf(g->tag, sizeof(g->tag), "b%" PRIx64, (uint64_t)rt_time_now_ms());
    g->c = rt_calloc((size_t)courses, sizeof(gen_course));
    for (int c = 0; c < courses; c++)
        g->c[c].students = rt_calloc((size_t)students, sizeof(gen_student));
}

static void gen_free(gen *g)
{
    for (int c = 0; c < g->courses; c++)
        free(g->c[c].students);
    free(g->c);
}

static void course_name(char *out, size_t size, int c)
{
    snprintf(out, size, "bench-c%d", c);
}

static void next_id(gen *g, char out[48])
{
    snprintf(out, 48, "%s-%" PRIu64, g->tag, ++g->seq);
}

/* Every course's instructor and students enroll, then its lessons. */
static void gen_setup(gen *g, event_set *s)
{
    char id[48], course[32], user[32], lesson[32];
    for (int c = 0; c < g->courses; c++) {
        course_name(course, sizeof(course), c);
        for (int u = -1; u < g->students; u++) {
            Unpuzzle__Rt__V1__EnrollmentChanged m = UNPUZZLE__RT__V1__ENROLLMENT_CHANGED__INIT;
            next_id(g, id);
            if (u < 0)
                snprintf(user, sizeof(user), "bench-i%d", c);
            else
                snprintf(user, sizeof(user), "bench-u%d-%d", c, u);
            m.event_id = id;
            m.course_id = course;
            m.user_id = user;
            m.change = UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_ADDED;
            m.role = u < 0 ? UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_INSTRUCTOR
                           : UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_STUDENT;
            set_add(s, K_ENROLL, id, &m.base);
        }
        for (int l = 0; l < LESSONS; l++) {
            Unpuzzle__Rt__V1__LessonUpserted m = UNPUZZLE__RT__V1__LESSON_UPSERTED__INIT;
            next_id(g, id);
            snprintf(lesson, sizeof(lesson), "bench-l%d-%d", c, l);
            m.event_id = id;
            m.course_id = course;
            m.lesson_id = lesson;
            m.title = "lesson";
            m.position = (uint32_t)l;
            set_add(s, K_LESSON, id, &m.base);
        }
    }
}

static bool ring_pop(gen_ring *r, uint32_t *id, uint32_t *student)
{
    if (!r->count)
        return false;
    *id = r->id[r->head];
    *student = r->student[r->head];
    r->head = (r->head + 1) % OPEN_MAX;
    r->count--;
    return true;
}

static bool ring_push(gen_ring *r, uint32_t id, uint32_t student)
{
    if (r->count == OPEN_MAX)
        return false;
    size_t at = (r->head + r->count++) % OPEN_MAX;
    r->id[at] = id;
    r->student[at] = student;
    return true;
}

static void gen_heartbeat(gen *g, event_set *s, int c, int u, const char *course, const char *user)
{
    gen_student *st = &g->c[c].students[u];
    char id[48], lesson[32];
    next_id(g, id);
    snprintf(lesson, sizeof(lesson), "bench-l%d-%d", c, st->lesson);
    if (st->position >= VIDEO_S) { /* the end of the video: completed, next lesson */
        Unpuzzle__Rt__V1__LessonCompleted m = UNPUZZLE__RT__V1__LESSON_COMPLETED__INIT;
        m.event_id = id;
        m.course_id = (char *)course;
        m.lesson_id = lesson;
        m.user_id = (char *)user;
        set_add(s, K_LESSON_DONE, id, &m.base);
        st->position = 0;
        st->lesson = (st->lesson + 1) % LESSONS;
        return;
    }
    Unpuzzle__Rt__V1__ProgressUpdated m = UNPUZZLE__RT__V1__PROGRESS_UPDATED__INIT;
    m.event_id = id;
    m.course_id = (char *)course;
    m.lesson_id = lesson;
    m.user_id = (char *)user;
    m.position_sec = ++st->position; /* 1 s of video per heartbeat */
    m.duration_sec = VIDEO_S;
    m.playing = true;
    set_add(s, K_HEARTBEAT, id, &m.base);
}

/* One event of the steady mix. */
static void gen_mix(gen *g, event_set *s)
{
    int c = (int)(rnd(g) % (uint64_t)g->courses), u = (int)(rnd(g) % (uint64_t)g->students);
    unsigned r = (unsigned)(rnd(g) % 1000);
    gen_course *gc = &g->c[c];
    gen_student *st = &gc->students[u];
    char id[48], course[32], user[32], lesson[32], other[32], thing[64];
    course_name(course, sizeof(course), c);
    snprintf(user, sizeof(user), "bench-u%d-%d", c, u);
    snprintf(lesson, sizeof(lesson), "bench-l%d-%d", c, st->lesson);
    uint32_t n, who;

    if (r < 860) {
        gen_heartbeat(g, s, c, u, course, user);
    } else if (r < 890) {
        Unpuzzle__Rt__V1__PromptShown m = UNPUZZLE__RT__V1__PROMPT_SHOWN__INIT;
        next_id(g, id);
        st->prompt = ++gc->next_prompt;
        st->prompt_open = true;
        snprintf(thing, sizeof(thing), "%s-p%" PRIu32, g->tag, st->prompt);
        m.event_id = id;
        m.course_id = course;
        m.lesson_id = lesson;
        m.user_id = user;
        m.prompt_id = thing;
        m.kind = UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_QUIZ;
        set_add(s, K_PROMPT_SHOWN, id, &m.base);
    } else if (r < 920 && st->prompt_open) {
        Unpuzzle__Rt__V1__PromptResponded m = UNPUZZLE__RT__V1__PROMPT_RESPONDED__INIT;
        next_id(g, id);
        st->prompt_open = false;
        snprintf(thing, sizeof(thing), "%s-p%" PRIu32, g->tag, st->prompt);
        m.event_id = id;
        m.course_id = course;
        m.lesson_id = lesson;
        m.user_id = user;
        m.prompt_id = thing;
        m.kind = UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_QUIZ;
        m.action = UNPUZZLE__RT__V1__PROMPT_ACTION__PROMPT_ACTION_COMPLETED;
        set_add(s, K_PROMPT_DONE, id, &m.base);
    } else if (r >= 920 && r < 940 &&
               ring_push(&gc->confusions, n = ++gc->next_confusion, (uint32_t)u)) {
        Unpuzzle__Rt__V1__ConfusionCreated m = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
        next_id(g, id);
        snprintf(thing, sizeof(thing), "%s-f%" PRIu32, g->tag, n);
        m.event_id = id;
        m.confusion_id = thing;
        m.course_id = course;
        m.lesson_id = lesson;
        m.user_id = user;
        m.video_timestamp_sec = st->position;
        set_add(s, K_CONFUSION, id, &m.base);
    } else if (r >= 940 && r < 960 && ring_pop(&gc->confusions, &n, &who)) {
        Unpuzzle__Rt__V1__ConfusionResolved m = UNPUZZLE__RT__V1__CONFUSION_RESOLVED__INIT;
        next_id(g, id);
        snprintf(thing, sizeof(thing), "%s-f%" PRIu32, g->tag, n);
        snprintf(user, sizeof(user), "bench-i%d", c);
        snprintf(other, sizeof(other), "bench-u%d-%" PRIu32, c, who);
        m.event_id = id;
        m.confusion_id = thing;
        m.course_id = course;
        m.lesson_id = lesson;
        m.user_id = user;
        m.student_user_id = other;
        m.resolved = true;
        set_add(s, K_RESOLVED, id, &m.base);
    } else if (r >= 960 && r < 975 &&
               ring_push(&gc->questions, n = ++gc->next_question, (uint32_t)u)) {
        Unpuzzle__Rt__V1__QuestionCreated m = UNPUZZLE__RT__V1__QUESTION_CREATED__INIT;
        next_id(g, id);
        snprintf(thing, sizeof(thing), "%s-q%" PRIu32, g->tag, n);
        m.event_id = id;
        m.question_id = thing;
        m.course_id = course;
        m.lesson_id = lesson;
        m.user_id = user;
        m.text = "why does this work?";
        set_add(s, K_QUESTION, id, &m.base);
    } else if (r >= 975 && r < 990 && ring_pop(&gc->questions, &n, &who)) {
        Unpuzzle__Rt__V1__QuestionAnswered m = UNPUZZLE__RT__V1__QUESTION_ANSWERED__INIT;
        next_id(g, id);
        snprintf(thing, sizeof(thing), "%s-q%" PRIu32, g->tag, n);
        snprintf(user, sizeof(user), "bench-i%d", c);
        snprintf(other, sizeof(other), "bench-u%d-%" PRIu32, c, who);
        m.event_id = id;
        m.question_id = thing;
        m.course_id = course;
        m.user_id = user;
        m.asker_user_id = other;
        m.answer = "because";
        set_add(s, K_ANSWER, id, &m.base);
    } else if (r >= 990) {
        Unpuzzle__Rt__V1__PurchaseCompleted m = UNPUZZLE__RT__V1__PURCHASE_COMPLETED__INIT;
        next_id(g, id);
        snprintf(thing, sizeof(thing), "%s-o%" PRIu32, g->tag, ++gc->next_purchase);
        m.event_id = id;
        m.purchase_id = thing;
        m.course_id = course;
        m.user_id = user;
        m.amount_cents = 1000 + (int64_t)(rnd(g) % 9000);
        m.currency = rnd(g) % 4 ? "USD" : "EUR";
        set_add(s, K_PURCHASE, id, &m.base);
    } else {
        gen_heartbeat(g, s, c, u, course, user); /* nothing open to answer */
    }
}

/* ---- publishing ---- */

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* occurred_at (field 2, a Timestamp) = `ns`, followed by the encoded body. */
static size_t with_occurred_at(uint8_t *out, const uint8_t *body, size_t len, int64_t ns)
{
    uint8_t ts[24];
    size_t n = 0;
    ts[n++] = 0x08; /* seconds */
    n += put_varint(ts + n, (uint64_t)(ns / 1000000000));
    if (ns % 1000000000) {
        ts[n++] = 0x10; /* nanos */
        n += put_varint(ts + n, (uint64_t)(ns % 1000000000));
    }
    out[0] = 0x12;
    out[1] = (uint8_t)n;
    memcpy(out + 2, ts, n);
    memcpy(out + 2 + n, body, len);
    return 2 + n + len;
}

typedef struct publisher {
    const event_set *set;
    size_t first, step; /* events first, first + step, ... */
    double rate;        /* events/s of this thread; 0: as fast as it can */
    natsConnection *nc;
    jsCtx *js;
    pthread_t thread;
    uint64_t start_ns, end_ns, acked_ns; /* monotonic: first publish, last, all acked */
    atomic_uint_fast64_t sent;
    atomic_uint_fast64_t errors;
    atomic_uint_fast64_t *progress; /* shared by the publishers (may be NULL) */
    const atomic_bool *abort;
} publisher;

static void on_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    publisher *p = closure;
    static atomic_int reported;
    (void)js;
    if (atomic_fetch_add(&reported, 1) < 5)
        fprintf(stderr, "publish failed: %s (%d %s)\n", natsStatus_GetText(pae->Err),
                (int)pae->ErrCode, pae->ErrText ? pae->ErrText : "");
    atomic_fetch_add(&p->errors, 1);
}

static void *publish_main(void *arg)
{
    publisher *p = arg;
    uint8_t buf[BODY_MAX + 64];
    jsPubOptions po;
    uint64_t k = 0;
    p->start_ns = rt_time_mono_ns();
    for (size_t i = p->first; i < p->set->n && !atomic_load(p->abort); i += p->step, k++) {
        if (p->rate > 0) {
            /* Paced in 1 ms steps: what is due within the next millisecond
             * goes now, as many producers' events reach the server together;
             * a sleep per event would cost more than the publish. */
            uint64_t due = p->start_ns + (uint64_t)((double)k * 1e9 / p->rate);
            uint64_t now = rt_time_mono_ns();
            if (now + PACE_NS < due) {
                struct timespec ts = {(time_t)((due - now) / 1000000000),
                                      (long)((due - now) % 1000000000)};
                nanosleep(&ts, NULL);
            }
        }
        const event_ref *e = &p->set->ev[i];
        const uint8_t *at = p->set->arena + e->off;
        size_t len = with_occurred_at(buf, at + e->id_len + 1, e->body_len, wall_ns());
        jsPubOptions_Init(&po);
        po.MsgId = (const char *)at;
        natsStatus s;
        while ((s = js_PublishAsync(p->js, SUBJECTS[e->kind], buf, (int)len, &po)) ==
                   NATS_TIMEOUT &&
               !atomic_load(p->abort))
            ; /* MaxPending in flight for StallWait: try again */
        if (s != NATS_OK)
            atomic_fetch_add(&p->errors, 1);
        atomic_fetch_add_explicit(&p->sent, 1, memory_order_relaxed);
        if (p->progress && (k & 255) == 255)
            atomic_fetch_add_explicit(p->progress, 256, memory_order_relaxed);
    }
    p->end_ns = rt_time_mono_ns();
    if (p->progress)
        atomic_fetch_add(p->progress, (k & 255));
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    natsStatus s = js_PublishAsyncComplete(p->js, &po);
    if (s != NATS_OK)
        fprintf(stderr, "js_PublishAsyncComplete: %s\n", natsStatus_GetText(s));
    p->acked_ns = rt_time_mono_ns();
    return NULL;
}

typedef struct pub_result {
    uint64_t sent, errors;
    double publish_s; /* first publish -> last publish call */
    double acked_s;   /* first publish -> every ack received */
} pub_result;

/* ---- the bench ---- */

typedef struct bench {
    const char *nats_url, *database_url, *agg_path;
    int admin_port;
    pid_t pid;
    char replica_id[80], durable[96];
    int courses, students, publishers, sample, partitions;
    uint64_t seed;
    bool own_agg, setup_done, agg_dead;
    rt_test_stack *stack;
    rt_test_proc *agg;
    natsConnection *nc;
    jsCtx *js;
    atomic_bool abort;
    gen g;
} bench;

/* Publishes the whole set with b->publishers threads (`rate` events/s in
 * all, 0: as fast as they can); *progress (may be NULL) counts what was
 * published so far. Returns once every ack is in. */
static pub_result publish_set(bench *b, const event_set *set, double rate,
                              atomic_uint_fast64_t *progress)
{
    publisher pubs[MAX_PUBLISHERS];
    pub_result r = {0};
    int n = b->publishers;
    memset(pubs, 0, sizeof(pubs));
    for (int t = 0; t < n; t++) {
        publisher *p = &pubs[t];
        p->set = set;
        p->first = (size_t)t;
        p->step = (size_t)n;
        p->rate = rate > 0 ? rate / n : 0;
        p->abort = &b->abort;
        p->progress = progress;
        atomic_init(&p->sent, 0);
        atomic_init(&p->errors, 0);
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = 16384;
        jo.PublishAsync.StallWait = 1000;
        jo.PublishAsync.ErrHandler = on_publish_error;
        jo.PublishAsync.ErrHandlerClosure = p;
        natsOptions *opts = NULL;
        natsOptions_Create(&opts);
        natsOptions_SetURL(opts, b->nats_url);
        natsOptions_SetName(opts, "bench-analytics-publisher");
        if (natsConnection_Connect(&p->nc, opts) != NATS_OK ||
            natsConnection_JetStream(&p->js, p->nc, &jo) != NATS_OK) {
            fprintf(stderr, "publisher %d: cannot connect to %s\n", t, b->nats_url);
            exit(1);
        }
        natsOptions_Destroy(opts);
    }
    for (int t = 0; t < n; t++)
        pthread_create(&pubs[t].thread, NULL, publish_main, &pubs[t]);
    uint64_t start = UINT64_MAX, end = 0, acked = 0;
    for (int t = 0; t < n; t++) {
        pthread_join(pubs[t].thread, NULL);
        publisher *p = &pubs[t];
        r.sent += atomic_load(&p->sent);
        r.errors += atomic_load(&p->errors);
        if (p->start_ns < start)
            start = p->start_ns;
        if (p->end_ns > end)
            end = p->end_ns;
        if (p->acked_ns > acked)
            acked = p->acked_ns;
        jsCtx_Destroy(p->js);
        natsConnection_Destroy(p->nc);
    }
    r.publish_s = (double)(end - start) / 1e9;
    r.acked_s = (double)(acked - start) / 1e9;
    return r;
}

/* ---- the aggregator's figures ---- */

#define MAX_BUCKETS 32

typedef struct agg_counts {
    bool ok;
    double applied, late, duplicate, future, ignored, invalid, not_ours;
    double checkpoints, checkpoint_failures, updates, alerts, publish_failures, snapshots;
    double partitions_owned;
    int n_buckets;
    double le[MAX_BUCKETS], cumulative[MAX_BUCKETS]; /* staleness_seconds, +Inf last */
} agg_counts;

static double metric(const char *body, const char *series)
{
    double v = rt_test_metric_value(body, series);
    return v < 0 ? 0 : v;
}

static bool read_counts(agg_counts *c, int port)
{
    char *body = NULL;
    int status = 0;
    memset(c, 0, sizeof(*c));
    if (rt_test_http_get(&status, &body, port, "/metrics", 5000) != RT_OK || status != 200) {
        free(body);
        return false;
    }
#define EV(o) metric(body, "unpuzzle_analytics_events_total{outcome=\"" o "\"}")
    c->applied = EV("applied");
    c->late = EV("late");
    c->duplicate = EV("duplicate");
    c->future = EV("future");
    c->ignored = EV("ignored");
    c->invalid = EV("invalid");
    c->not_ours = EV("not_ours");
#undef EV
    c->checkpoints = metric(body, "unpuzzle_analytics_checkpoints_total{result=\"ok\"}");
    c->checkpoint_failures =
        metric(body, "unpuzzle_analytics_checkpoints_total{result=\"failed\"}");
    c->updates = metric(body, "unpuzzle_analytics_updates_total");
    c->alerts = metric(body, "unpuzzle_analytics_alerts_total");
    c->publish_failures = metric(body, "unpuzzle_analytics_publish_failures_total");
    c->snapshots = metric(body, "unpuzzle_analytics_snapshots_total");
    c->partitions_owned = metric(body, "unpuzzle_analytics_partitions_owned");
    static const char prefix[] = "unpuzzle_analytics_staleness_seconds_bucket{le=\"";
    for (const char *p = strstr(body, prefix); p && c->n_buckets < MAX_BUCKETS;
         p = strstr(p + 1, prefix)) {
        const char *le = p + strlen(prefix);
        const char *close = strstr(le, "\"} ");
        if (!close)
            break;
        c->le[c->n_buckets] = strncmp(le, "+Inf", 4) == 0 ? INFINITY : strtod(le, NULL);
        c->cumulative[c->n_buckets++] = strtod(close + 3, NULL);
    }
    free(body);
    c->ok = true;
    return true;
}

/* Every EVENTS message the aggregator has read, whatever became of it. */
static double counts_read(const agg_counts *c)
{
    return c->applied + c->late + c->duplicate + c->future + c->ignored + c->invalid + c->not_ours;
}

static bool consumer_state(bench *b, uint64_t *pending, int64_t *ack_pending)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    if (js_GetConsumerInfo(&ci, b->js, "EVENTS", b->durable, NULL, &jerr) != NATS_OK)
        return false;
    *pending = ci->NumPending;
    *ack_pending = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return true;
}

typedef struct proc_stats {
    bool ok;
    double rss_mib, hwm_mib, cpu_s;
} proc_stats;

static proc_stats read_proc(pid_t pid)
{
    proc_stats ps = {0};
    char path[64], line[512];
    if (pid <= 0)
        return ps;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return ps;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            ps.rss_mib = strtod(line + 6, NULL) / 1024;
        else if (strncmp(line, "VmHWM:", 6) == 0)
            ps.hwm_mib = strtod(line + 6, NULL) / 1024;
    }
    fclose(f);
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return ps;
    if (fgets(line, sizeof(line), f)) {
        const char *p = strrchr(line, ')'); /* fields after "(comm)" */
        unsigned long utime = 0, stime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                        &stime) == 2) {
            ps.cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
            ps.ok = true;
        }
    }
    fclose(f);
    return ps;
}

/* CPU seconds of this process and every process it started (nats-server,
 * PostgreSQL and its backends, the aggregator), summed by command name:
 * where the box's two cores went. */
#define TREE_MAX 8

typedef struct cpu_tree {
    int n;
    char comm[TREE_MAX][24];
    double cpu_s[TREE_MAX];
} cpu_tree;

typedef struct proc_row {
    pid_t pid, ppid;
    char comm[24];
    double cpu_s;
} proc_row;

static bool descends_from(const proc_row *rows, size_t n, pid_t pid, pid_t root)
{
    for (int depth = 0; depth < 16 && pid > 1; depth++) {
        if (pid == root)
            return true;
        pid_t parent = 0;
        for (size_t i = 0; i < n && !parent; i++)
            if (rows[i].pid == pid)
                parent = rows[i].ppid;
        pid = parent;
    }
    return false;
}

static cpu_tree read_cpu_tree(void)
{
    cpu_tree t = {0};
    proc_row *rows = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char path[300], line[1024];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(line, sizeof(line), f)) {
            const char *open = strchr(line, '('), *close = strrchr(line, ')');
            int ppid = 0;
            unsigned long ut = 0, st = 0;
            if (open && close && close > open &&
                sscanf(close + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid, &ut,
                       &st) == 3) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 256;
                    rows = rt_realloc(rows, cap * sizeof(*rows));
                }
                proc_row *r = &rows[n++];
                r->pid = (pid_t)atoi(de->d_name);
                r->ppid = (pid_t)ppid;
                snprintf(r->comm, sizeof(r->comm), "%.*s", (int)(close - open - 1), open + 1);
                r->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
            }
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    pid_t self = getpid();
    for (size_t i = 0; i < n; i++) {
        if (!descends_from(rows, n, rows[i].pid, self))
            continue;
        int k = 0;
        while (k < t.n && strcmp(t.comm[k], rows[i].comm) != 0)
            k++;
        if (k == t.n) {
            if (t.n == TREE_MAX)
                continue;
            snprintf(t.comm[t.n++], sizeof(t.comm[0]), "%s", rows[i].comm);
        }
        t.cpu_s[k] += rows[i].cpu_s;
    }
    free(rows);
    return t;
}

/* "nats-server 9.1 us, ..." per event between two readings, and what that
 * means for this box: its cores divided by the sum. */
static void print_cpu_per_event(const char *label, const cpu_tree *a, const cpu_tree *b,
                                double events)
{
    if (events <= 0)
        return;
    double total = 0;
    printf("  %-19s", label);
    for (int k = 0; k < b->n; k++) {
        double before = 0;
        for (int j = 0; j < a->n; j++)
            if (strcmp(a->comm[j], b->comm[k]) == 0)
                before = a->cpu_s[j];
        double us = (b->cpu_s[k] - before) / events * 1e6;
        if (us < 0.05)
            continue;
        total += us;
        printf(" %s %.1f us,", b->comm[k], us);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf(" in all %.1f us of CPU per event: %ld cores carry at most %.0f events/s\n", total,
           cores, total > 0 ? (double)cores * 1e6 / total : 0);
}

/* The 1, 5 and 15 minute load averages ("6.12 6.91 4.57"). */
static void loadavg(char out[64])
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l1 = 0, l5 = 0, l15 = 0;
    if (f && fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
        snprintf(out, 64, "%.2f %.2f %.2f", l1, l5, l15);
    else
        snprintf(out, 64, "?");
    if (f)
        fclose(f);
}

/* Course checkpoints in PostgreSQL: how many, total and largest bytes. */
static void checkpoint_sizes(bench *b)
{
    if (!b->database_url)
        return;
    PGconn *pg = PQconnectdb(b->database_url);
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *r = PQexec(pg, "SELECT count(*), coalesce(sum(octet_length(state)), 0),"
                                 " coalesce(max(octet_length(state)), 0)"
                                 " FROM realtime.analytics_courses");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            printf("  checkpoint state     %s courses, %.1f MiB in all, largest %.2f MiB\n",
                   PQgetvalue(r, 0, 0), atof(PQgetvalue(r, 0, 1)) / 1048576.0,
                   atof(PQgetvalue(r, 0, 2)) / 1048576.0);
        PQclear(r);
    }
    PQfinish(pg);
}

/* ---- the aggregator process ---- */

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

static int start_aggregator(bench *b)
{
    char nats_url[256], db_url[512], port[32], replica[128];
    if (!b->admin_port)
        b->admin_port = rt_test_free_port();
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", b->nats_url);
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", b->database_url);
    snprintf(port, sizeof(port), "ADMIN_PORT=%d", b->admin_port);
    snprintf(replica, sizeof(replica), "ANALYTICS_REPLICA_ID=%s", b->replica_id);
    const char *env[] = {nats_url, db_url, port, replica, NULL};
    if (rt_test_proc_start(&b->agg, b->agg_path, NULL, env) != RT_OK ||
        rt_test_proc_wait_http(b->agg, b->admin_port, "/readyz", 200, 30000) != RT_OK) {
        fprintf(stderr, "analytics-aggregator: %s\n", rt_error_message());
        return -1;
    }
    b->pid = rt_test_proc_pid(b->agg);
    return 0;
}

static void stop_aggregator(bench *b)
{
    int status = 0;
    if (!b->agg)
        return;
    if (rt_test_proc_stop(b->agg, SIGTERM, 30000, &status) != RT_OK)
        fprintf(stderr, "analytics-aggregator did not stop in 30 s: killed\n");
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "analytics-aggregator: SIGTERM ended it with wait status %#x\n", status);
    rt_test_proc_destroy(b->agg);
    b->agg = NULL;
    b->pid = 0;
}

/* False (once said why) when the self-started aggregator is no longer
 * running: crashed, or killed by something else. */
static bool aggregator_alive(bench *b)
{
    int status = 0;
    if (!b->agg || rt_test_proc_running(b->agg))
        return true;
    if (!b->agg_dead) {
        rt_test_proc_stop(b->agg, SIGTERM, 1000, &status); /* already gone: its wait status */
        if (WIFSIGNALED(status))
            fprintf(stderr, "the aggregator died: signal %d (log %s)\n", WTERMSIG(status),
                    rt_test_proc_log_path(b->agg));
        else
            fprintf(stderr, "the aggregator exited with status %d (log %s)\n", WEXITSTATUS(status),
                    rt_test_proc_log_path(b->agg));
        b->agg_dead = true;
    }
    return false;
}

/* Waits until the aggregator owns every partition. */
static int wait_partitions(bench *b, int timeout_ms)
{
    int64_t until = rt_time_now_ms() + timeout_ms;
    agg_counts c;
    while (rt_time_now_ms() < until) {
        if (read_counts(&c, b->admin_port) && (int)c.partitions_owned >= b->partitions)
            return 0;
        nats_Sleep(100);
    }
    fprintf(stderr, "the aggregator owns %g of %d partitions after %d ms\n", c.partitions_owned,
            b->partitions, timeout_ms);
    return -1;
}

/* Waits until the aggregator has read `target` events beyond `base`;
 * returns the seconds it took (from `since`, monotonic ns), or -1.
 * *first_s (may be NULL) gets when the first was seen read (20 ms polls).
 * Gives up after max_s (0: never, as long as it makes progress). */
static double wait_read(bench *b, double base, double target, uint64_t since, bool verbose,
                        double *first_s, double max_s)
{
    agg_counts c;
    double last = -1;
    uint64_t last_change = rt_time_mono_ns(), next_print = since + 1000000000ull;
    for (;;) {
        uint64_t now = rt_time_mono_ns();
        if (!read_counts(&c, b->admin_port)) {
            if (!aggregator_alive(b))
                return -1;
        } else {
            double done = counts_read(&c) - base;
            if (first_s && done > 0 && *first_s < 0)
                *first_s = (double)(now - since) / 1e9;
            if (done >= target)
                return (double)(now - since) / 1e9;
            if (done != last) {
                last = done;
                last_change = now;
            }
            if (verbose && now >= next_print) {
                printf("    %5.1f s  read %10.0f of %.0f  checkpoints %g\n",
                       (double)(now - since) / 1e9, done, target, c.checkpoints);
                fflush(stdout);
                next_print += 1000000000ull;
            }
        }
        if (max_s > 0 && (double)(now - since) / 1e9 > max_s) {
            fprintf(stderr, "gave up after %.0f s (read %.0f of %.0f)\n", max_s, last, target);
            return -1;
        }
        if (now - last_change > (uint64_t)STALL_S * 1000000000ull) {
            fprintf(stderr, "no progress for %d s (read %.0f of %.0f)\n", STALL_S, last, target);
            return -1;
        }
        nats_Sleep(20);
    }
}

/* Publishes every course's enrollments and lessons and waits until they
 * are applied. */
static int run_setup(bench *b)
{
    event_set set = {0};
    agg_counts before;
    gen_setup(&b->g, &set);
    if (!read_counts(&before, b->admin_port))
        return -1;
    pub_result r = publish_set(b, &set, 0, NULL);
    double t = wait_read(b, counts_read(&before), (double)set.n, rt_time_mono_ns(), false, NULL, 0);
    printf("setup: %zu enrollments and lessons of %d courses published and read (%.1f s)\n", set.n,
           b->courses, r.acked_s + (t > 0 ? t : 0));
    set_free(&set);
    if (t < 0 || r.errors)
        return -1;
    b->setup_done = true;
    return 0;
}

static void print_mix(const event_set *set)
{
    printf("  mix                 ");
    for (int k = 0; k < N_KINDS; k++)
        if (set->by_kind[k])
            printf(" %s %.1f%%", KIND_NAMES[k], 100.0 * (double)set->by_kind[k] / (double)set->n);
    printf("\n");
}

static const char *verdict(bool ok)
{
    return ok ? "met" : "NOT met";
}

/* ---- backlog ---- */

static int run_backlog(bench *b, long n)
{
    event_set set = {0};
    char load0[64], load1[64];
    printf("\n== backlog: %ld events published while the aggregator is %s\n", n,
           b->own_agg ? "stopped, then read (timed)" : "running (not ours)");
    if (!b->setup_done)
        gen_setup(&b->g, &set);
    while ((long)set.n < n)
        gen_mix(&b->g, &set);
    printf("  encoded             %zu events, %.1f MiB (%.0f bytes each)\n", set.n,
           (double)set.used / 1048576.0, (double)set.used / (double)set.n);
    print_mix(&set);

    agg_counts base = {0};
    if (b->own_agg)
        stop_aggregator(b);
    else if (!read_counts(&base, b->admin_port))
        return -1;
    loadavg(load0);
    uint64_t t_pub = rt_time_mono_ns();
    proc_stats p0 = read_proc(b->pid);
    cpu_tree tree0 = read_cpu_tree();
    pub_result r = publish_set(b, &set, 0, NULL);
    cpu_tree tree1 = read_cpu_tree();
    printf("  published           %" PRIu64 " in %.2f s: %.0f events/s (all acked after %.2f s: "
           "%.0f/s), %" PRIu64 " errors, %d publisher%s\n",
           r.sent, r.publish_s, (double)r.sent / r.publish_s, r.acked_s, (double)r.sent / r.acked_s,
           r.errors, b->publishers, b->publishers > 1 ? "s" : "");
    b->setup_done = true;

    uint64_t t0 = t_pub;
    if (b->own_agg) {
        t0 = rt_time_mono_ns();
        if (start_aggregator(b) != 0)
            return -1;
        printf("  aggregator started  pid %d, /readyz after %.2f s\n", (int)b->pid,
               (double)(rt_time_mono_ns() - t0) / 1e9);
        p0 = read_proc(b->pid);
    }
    double first = -1;
    double took = wait_read(b, counts_read(&base), (double)set.n, t0, true, &first, 0);
    if (took < 0)
        return -1;
    uint64_t t_done = rt_time_mono_ns();
    proc_stats p1 = read_proc(b->pid);
    cpu_tree tree2 = read_cpu_tree();
    loadavg(load1);
    agg_counts c;
    read_counts(&c, b->admin_port);
    /* The first checkpoint after the last event: then nothing is pending. */
    double ck = c.checkpoints;
    for (int i = 0; i < 100 && c.checkpoints == ck; i++) {
        nats_Sleep(50);
        read_counts(&c, b->admin_port);
    }
    uint64_t pending = 0;
    int64_t ack_pending = -1;
    consumer_state(b, &pending, &ack_pending);

    double rate = (double)set.n / took;
    printf("  read all            %zu events in %.2f s after %s: %.0f events/s (%.0f events/s "
           "from the first read at %.2f s)\n",
           set.n, took, b->own_agg ? "the aggregator's start" : "the first publish", rate,
           (double)set.n / (took - first), first);
    printf("  outcomes            applied %.0f, late %.0f, duplicate %.0f, future %.0f, invalid "
           "%.0f, not ours %.0f\n",
           c.applied - base.applied, c.late - base.late, c.duplicate - base.duplicate,
           c.future - base.future, c.invalid - base.invalid, c.not_ours - base.not_ours);
    printf("  checkpoints         %.0f ok, %.0f failed (ANALYTICS_CHECKPOINT_MS=%d); consumer "
           "pending %" PRIu64 ", unacked %" PRId64 " after the next one\n",
           c.checkpoints - base.checkpoints, c.checkpoint_failures - base.checkpoint_failures,
           env_int("ANALYTICS_CHECKPOINT_MS", 1000), pending, ack_pending);
    printf("  published by it     %.0f alerts, %.0f metrics updates\n", c.alerts - base.alerts,
           c.updates - base.updates);
    if (p1.ok)
        printf("  aggregator          CPU %.1f s over %.1f s (%.0f %% of a core), RSS %.0f MiB, "
               "peak %.0f MiB\n",
               p1.cpu_s - p0.cpu_s, (double)(t_done - t0) / 1e9,
               100 * (p1.cpu_s - p0.cpu_s) / ((double)(t_done - t0) / 1e9), p1.rss_mib, p1.hwm_mib);
    print_cpu_per_event("CPU, publishing", &tree0, &tree1, (double)r.sent);
    print_cpu_per_event("CPU, reading", &tree1, &tree2, (double)set.n);
    checkpoint_sizes(b);
    printf("  load average        %s -> %s\n", load0, load1);
    printf("SUMMARY backlog: %zu events read in %.2f s = %.0f events/s, checkpoints every %d ms "
           "(target >= 100,000: %s); publish %.0f events/s; %.0f checkpoints; RSS %.0f MiB\n",
           set.n, took, rate, env_int("ANALYTICS_CHECKPOINT_MS", 1000), verdict(rate >= 100000),
           (double)r.sent / r.acked_s, c.checkpoints - base.checkpoints, p1.rss_mib);
    fflush(stdout);
    set_free(&set);
    return r.errors ? -1 : 0;
}

/* ---- live ---- */

typedef struct sample {
    double at_s;     /* since the start of publishing */
    double stale_s;  /* wall clock at the reply - end */
    double reply_ms; /* request -> reply */
} sample;

typedef struct sampler {
    bench *b;
    natsConnection *nc;
    char courses[MAX_SAMPLE][32];
    int n;
    uint64_t start_ns;
    atomic_bool stop;
    pthread_mutex_t lock;
    sample *s;
    size_t n_s, cap_s;
    int timeouts, empty;
    pthread_t thread;
} sampler;

static void *sample_main(void *arg)
{
    sampler *sm = arg;
    uint8_t req_buf[64];
    while (!atomic_load(&sm->stop)) {
        uint64_t round = rt_time_mono_ns();
        for (int i = 0; i < sm->n; i++) {
            Unpuzzle__Rt__V1__SnapshotRequest req = UNPUZZLE__RT__V1__SNAPSHOT_REQUEST__INIT;
            req.course_id = sm->courses[i];
            size_t len = unpuzzle__rt__v1__snapshot_request__pack(&req, req_buf);
            natsMsg *reply = NULL;
            uint64_t sent = rt_time_mono_ns();
            natsStatus s = natsConnection_Request(&reply, sm->nc, "analytics.v1.snapshot", req_buf,
                                                  (int)len, 5000);
            int64_t now = wall_ns();
            uint64_t got = rt_time_mono_ns();
            if (s != NATS_OK) {
                pthread_mutex_lock(&sm->lock);
                sm->timeouts++;
                pthread_mutex_unlock(&sm->lock);
                continue;
            }
            Unpuzzle__Rt__V1__CourseMetrics *m =
                unpuzzle__rt__v1__course_metrics__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                         (const uint8_t *)natsMsg_GetData(reply));
            natsMsg_Destroy(reply);
            pthread_mutex_lock(&sm->lock);
            if (!m || !m->end) {
                sm->empty++;
            } else {
                int64_t end = (int64_t)m->end->seconds * 1000000000 + m->end->nanos;
                if (sm->n_s == sm->cap_s) {
                    sm->cap_s = sm->cap_s ? sm->cap_s * 2 : 1024;
                    sm->s = rt_realloc(sm->s, sm->cap_s * sizeof(*sm->s));
                }
                sm->s[sm->n_s++] = (sample){(double)(got - sm->start_ns) / 1e9,
                                            (double)(now - end) / 1e9, (double)(got - sent) / 1e6};
            }
            pthread_mutex_unlock(&sm->lock);
            if (m)
                unpuzzle__rt__v1__course_metrics__free_unpacked(m, NULL);
        }
        uint64_t next = round + SNAPSHOT_EVERY_MS * 1000000ull, now = rt_time_mono_ns();
        if (now < next)
            nats_Sleep((int64_t)((next - now) / 1000000));
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p in [0, 1] of n sorted values. */
static double pct(const double *v, size_t n, double p)
{
    if (!n)
        return NAN;
    size_t i = (size_t)(p * (double)n);
    return v[i < n ? i : n - 1];
}

typedef struct live_args {
    bench *b;
    const event_set *set;
    double rate;
    pub_result result;
    atomic_uint_fast64_t sent;
    atomic_bool done;
} live_args;

static void *live_publish(void *arg)
{
    live_args *a = arg;
    a->result = publish_set(a->b, a->set, a->rate, &a->sent);
    atomic_store(&a->done, true);
    return NULL;
}

static int run_live(bench *b, double rate, int secs)
{
    event_set set = {0};
    char load0[64], load1[64];
    printf("\n== live: %.0f events/s for %d s, analytics.v1.snapshot of %d courses every %d ms\n",
           rate, secs, b->sample, SNAPSHOT_EVERY_MS);
    if (!b->setup_done && run_setup(b) != 0)
        return -1;
    size_t n = (size_t)(rate * secs);
    while (set.n < n)
        gen_mix(&b->g, &set);
    printf("  encoded             %zu events, %.1f MiB\n", set.n, (double)set.used / 1048576.0);
    print_mix(&set);

    sampler sm = {.b = b, .n = b->sample};
    pthread_mutex_init(&sm.lock, NULL);
    for (int i = 0; i < sm.n; i++)
        course_name(sm.courses[i], sizeof(sm.courses[i]), i * b->courses / sm.n);
    if (natsConnection_ConnectTo(&sm.nc, b->nats_url) != NATS_OK)
        return -1;

    agg_counts base, c;
    if (!read_counts(&base, b->admin_port))
        return -1;
    proc_stats p0 = read_proc(b->pid);
    cpu_tree tree0 = read_cpu_tree();
    loadavg(load0);

    live_args a = {.b = b, .set = &set, .rate = rate};
    atomic_init(&a.sent, 0);
    atomic_init(&a.done, false);
    pthread_t pub_thread;
    sm.start_ns = rt_time_mono_ns();
    uint64_t start = sm.start_ns;
    pthread_create(&sm.thread, NULL, sample_main, &sm);
    pthread_create(&pub_thread, NULL, live_publish, &a);
    printf("    time   published/s   read/s    pending  staleness (last snapshot)\n");
    double prev_read = counts_read(&base);
    uint64_t prev_sent = 0;
    for (int tick = 1;; tick++) {
        uint64_t next = start + (uint64_t)tick * 1000000000ull;
        while (rt_time_mono_ns() < next && !atomic_load(&a.done))
            nats_Sleep(10);
        if (atomic_load(&a.done))
            break;
        uint64_t sent = atomic_load(&a.sent), pending = 0;
        int64_t unacked = 0;
        consumer_state(b, &pending, &unacked);
        if (!read_counts(&c, b->admin_port)) {
            if (!aggregator_alive(b)) {
                atomic_store(&b->abort, true); /* the publishers stop */
                break;
            }
            continue;
        }
        double last = NAN;
        pthread_mutex_lock(&sm.lock);
        if (sm.n_s)
            last = sm.s[sm.n_s - 1].stale_s;
        pthread_mutex_unlock(&sm.lock);
        printf("   %4d s  %11" PRIu64 "  %9.0f  %9" PRIu64 "  %.3f s\n", tick, sent - prev_sent,
               counts_read(&c) - prev_read, pending, last);
        fflush(stdout);
        prev_sent = sent;
        prev_read = counts_read(&c);
    }
    pthread_join(pub_thread, NULL);
    if (b->agg_dead) {
        atomic_store(&sm.stop, true);
        pthread_join(sm.thread, NULL);
        natsConnection_Destroy(sm.nc);
        printf("SUMMARY live: aborted after %.1f s: the aggregator died\n",
               (double)(rt_time_mono_ns() - start) / 1e9);
        free(sm.s);
        set_free(&set);
        return -1;
    }
    /* Everything published and acked: how far behind is the aggregator? */
    uint64_t end_ns = rt_time_mono_ns(), pending_end = 0;
    int64_t ack_pending = 0;
    consumer_state(b, &pending_end, &ack_pending);
    read_counts(&c, b->admin_port);
    double read_at_end = counts_read(&c) - counts_read(&base);
    /* How long the rest took to be read. */
    double drain =
        wait_read(b, counts_read(&base), (double)a.result.sent, end_ns, false, NULL, DRAIN_MAX_S);
    atomic_store(&sm.stop, true);
    pthread_join(sm.thread, NULL);
    natsConnection_Destroy(sm.nc);
    proc_stats p1 = read_proc(b->pid);
    cpu_tree tree1 = read_cpu_tree();
    loadavg(load1);
    read_counts(&c, b->admin_port);

    /* Staleness while publishing (the first second excluded: warm-up). */
    double publish_s = a.result.publish_s;
    double *st = rt_calloc(sm.n_s + 1, sizeof(double)), *rt = rt_calloc(sm.n_s + 1, sizeof(double));
    size_t k = 0;
    for (size_t i = 0; i < sm.n_s; i++)
        if (sm.s[i].at_s >= 1.0 && sm.s[i].at_s <= publish_s) {
            st[k] = sm.s[i].stale_s;
            rt[k++] = sm.s[i].reply_ms;
        }
    qsort(st, k, sizeof(double), cmp_double);
    qsort(rt, k, sizeof(double), cmp_double);
    double applied_rate = read_at_end / (double)(end_ns - start) * 1e9;
    double pub_rate = (double)a.result.sent / publish_s;
    printf("  published           %" PRIu64 " in %.2f s: %.0f events/s (target rate %.0f), "
           "%" PRIu64 " errors, %d publisher%s\n",
           a.result.sent, publish_s, pub_rate, rate, a.result.errors, b->publishers,
           b->publishers > 1 ? "s" : "");
    printf("  read while publishing %.0f of %" PRIu64 " by the last ack (%.2f s): %.0f events/s\n",
           read_at_end, a.result.sent, (double)(end_ns - start) / 1e9, applied_rate);
    char drained[64];
    if (drain >= 0)
        snprintf(drained, sizeof(drained), "all read %.2f s after the last ack", drain);
    else
        snprintf(drained, sizeof(drained), "NOT all read %d s after the last ack", DRAIN_MAX_S);
    printf("  pending at the end  %" PRIu64 " not yet delivered, %" PRId64 " unacked; %s\n",
           pending_end, ack_pending, drained);
    printf("  outcomes            applied %.0f, late %.0f, duplicate %.0f, future %.0f, invalid "
           "%.0f\n",
           c.applied - base.applied, c.late - base.late, c.duplicate - base.duplicate,
           c.future - base.future, c.invalid - base.invalid);
    printf("  staleness           %zu snapshots (1 s .. %.1f s): p50 %.3f s, p99 %.3f s, max %.3f "
           "s; %d timed out, %d empty\n",
           k, publish_s, pct(st, k, 0.5), pct(st, k, 0.99), k ? st[k - 1] : NAN, sm.timeouts,
           sm.empty);
    printf("  snapshot reply      p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", pct(rt, k, 0.5),
           pct(rt, k, 0.99), k ? rt[k - 1] : NAN);
    double hist_total = 0;
    for (int i = 0; i < c.n_buckets; i++)
        if (isinf(c.le[i]))
            hist_total = c.cumulative[i] - (i < base.n_buckets ? base.cumulative[i] : 0);
    if (hist_total > 0) {
        printf("  updates' staleness  (the aggregator's histogram, %.0f updates)", hist_total);
        for (int i = 0; i < c.n_buckets && !isinf(c.le[i]); i++)
            printf(" <=%gs %.1f%%", c.le[i],
                   100 * (c.cumulative[i] - (i < base.n_buckets ? base.cumulative[i] : 0)) /
                       hist_total);
        printf("\n");
    }
    printf("  checkpoints         %.0f ok, %.0f failed; %.0f alerts and %.0f updates published\n",
           c.checkpoints - base.checkpoints, c.checkpoint_failures - base.checkpoint_failures,
           c.alerts - base.alerts, c.updates - base.updates);
    if (p1.ok)
        printf("  aggregator          CPU %.1f s over %.1f s (%.0f %% of a core), RSS %.0f MiB, "
               "peak %.0f MiB\n",
               p1.cpu_s - p0.cpu_s, (double)(rt_time_mono_ns() - start) / 1e9,
               100 * (p1.cpu_s - p0.cpu_s) / ((double)(rt_time_mono_ns() - start) / 1e9),
               p1.rss_mib, p1.hwm_mib);
    print_cpu_per_event("CPU per event", &tree0, &tree1, c.applied - base.applied);
    checkpoint_sizes(b);
    printf("  load average        %s -> %s\n", load0, load1);
    bool kept_up = drain >= 0 && drain < 1.5 && pub_rate >= 0.98 * rate;
    double p99 = pct(st, k, 0.99), max = k ? st[k - 1] : NAN;
    printf("SUMMARY live: %.0f events/s offered, %.0f published, %.0f read; staleness p50 %.3f s "
           "p99 %.3f s max %.3f s (target <= 1.5 s: %s); pending at the end %" PRIu64
           ", %s (kept up: %s)\n",
           rate, pub_rate, applied_rate, pct(st, k, 0.5), p99, max,
           verdict(k > 0 && max <= 1.5 && sm.timeouts == 0), pending_end, drained,
           kept_up ? "yes" : "no");
    fflush(stdout);
    free(st);
    free(rt);
    free(sm.s);
    pthread_mutex_destroy(&sm.lock);
    set_free(&set);
    return a.result.errors ? -1 : 0;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench-analytics [backlog [N]] [live [RATE [SECONDS]]]\n"
            "  [--courses C] [--students S] [--publishers P] [--sample K] [--seed X]\n"
            "  [--aggregator PATH (default: analytics-aggregator next to this binary)]\n"
            "  [--nats URL (--database-url URL | --admin-port P [--replica-id ID] [--pid PID])]\n");
}

int main(int argc, char **argv)
{
    bench b = {.courses = 100,
               .students = 50,
               .publishers = 2,
               .sample = 4,
               .agg_path = "analytics-aggregator"};
    const char *replica = NULL;
    static const struct option options[] = {{"nats", required_argument, NULL, 'n'},
                                            {"database-url", required_argument, NULL, 'd'},
                                            {"admin-port", required_argument, NULL, 'a'},
                                            {"replica-id", required_argument, NULL, 'r'},
                                            {"pid", required_argument, NULL, 'p'},
                                            {"courses", required_argument, NULL, 'c'},
                                            {"students", required_argument, NULL, 's'},
                                            {"publishers", required_argument, NULL, 'P'},
                                            {"sample", required_argument, NULL, 'k'},
                                            {"seed", required_argument, NULL, 'x'},
                                            {"aggregator", required_argument, NULL, 'A'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'n':
            b.nats_url = optarg;
            break;
        case 'd':
            b.database_url = optarg;
            break;
        case 'a':
            b.admin_port = atoi(optarg);
            break;
        case 'r':
            replica = optarg;
            break;
        case 'p':
            b.pid = (pid_t)atoi(optarg);
            break;
        case 'c':
            b.courses = atoi(optarg);
            break;
        case 's':
            b.students = atoi(optarg);
            break;
        case 'P':
            b.publishers = atoi(optarg);
            break;
        case 'k':
            b.sample = atoi(optarg);
            break;
        case 'x':
            b.seed = strtoull(optarg, NULL, 0);
            break;
        case 'A':
            b.agg_path = optarg;
            break;
        default:
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    if (b.courses < 1 || b.students < 1 || b.publishers < 1 || b.publishers > MAX_PUBLISHERS ||
        b.sample < 1 || b.sample > MAX_SAMPLE || b.sample > b.courses) {
        fprintf(stderr, "courses, students >= 1; publishers 1..%d; sample 1..%d and <= courses\n",
                MAX_PUBLISHERS, MAX_SAMPLE);
        return 2;
    }
    /* Scenarios: "backlog [N]" and "live [R [D]]", in the order given. */
    long backlog_n = 0;
    double live_rate = 0;
    int live_s = 0;
    bool any = false;
    char order[2] = {0, 0};
    int n_order = 0;
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "backlog") == 0) {
            backlog_n = 500000;
            if (i + 1 < argc && atol(argv[i + 1]) > 0)
                backlog_n = atol(argv[++i]);
            if (n_order < 2)
                order[n_order++] = 'b';
        } else if (strcmp(argv[i], "live") == 0) {
            live_rate = 100000;
            live_s = 20;
            if (i + 1 < argc && atof(argv[i + 1]) > 0)
                live_rate = atof(argv[++i]);
            if (i + 1 < argc && atoi(argv[i + 1]) > 0)
                live_s = atoi(argv[++i]);
            if (n_order < 2)
                order[n_order++] = 'l';
        } else {
            usage();
            return 2;
        }
        any = true;
    }
    if (!any) {
        backlog_n = 500000;
        live_rate = 100000;
        live_s = 20;
        order[0] = 'b';
        order[1] = 'l';
        n_order = 2;
    }
    if (b.nats_url && !b.database_url && !b.admin_port) {
        fprintf(stderr, "--nats needs --database-url (the bench starts the aggregator) or "
                        "--admin-port (a running one)\n");
        return 2;
    }
    b.own_agg = !b.nats_url || !b.admin_port;
    snprintf(b.replica_id, sizeof(b.replica_id), "%s",
             replica                                       ? replica
             : getenv("ANALYTICS_REPLICA_ID") && b.own_agg ? getenv("ANALYTICS_REPLICA_ID")
                                                           : "bench-agg");
    snprintf(b.durable, sizeof(b.durable), "analytics-%s", b.replica_id);
    b.partitions = env_int("ANALYTICS_PARTITIONS", 16);
    atomic_init(&b.abort, false);
    gen_init(&b.g, b.courses, b.students, b.seed);

    if (!b.nats_url) {
        fprintf(stderr, "starting nats-server (JetStream on disk) and PostgreSQL...\n");
        if (rt_test_stack_start(&b.stack) != RT_OK) {
            fprintf(stderr, "stack: %s\n", rt_error_message());
            rt_test_stack_destroy(b.stack);
            return 1;
        }
        b.nats_url = rt_test_nats_url(b.stack->nats);
        b.database_url = rt_test_pg_url(b.stack->pg);
    }
    if (natsConnection_ConnectTo(&b.nc, b.nats_url) != NATS_OK ||
        natsConnection_JetStream(&b.js, b.nc, NULL) != NATS_OK) {
        fprintf(stderr, "cannot connect to %s\n", b.nats_url);
        return 1;
    }
    int rc = 0;
    if (b.own_agg) {
        if (start_aggregator(&b) != 0 || wait_partitions(&b, 30000) != 0)
            rc = 1;
    }
    printf("analytics-aggregator benchmark: %d courses x %d students, %d publisher%s, "
           "consumer %s, ANALYTICS_CHECKPOINT_MS=%d, ANALYTICS_PARTITIONS=%d, %s aggregator "
           "(pid %d)\n",
           b.courses, b.students, b.publishers, b.publishers > 1 ? "s" : "", b.durable,
           env_int("ANALYTICS_CHECKPOINT_MS", 1000), b.partitions,
           b.own_agg ? "self-started" : "running", (int)b.pid);
    for (int i = 0; i < n_order && rc == 0; i++) {
        if (order[i] == 'b')
            rc = run_backlog(&b, backlog_n) != 0;
        else
            rc = run_live(&b, live_rate, live_s) != 0;
    }
    if (b.own_agg)
        stop_aggregator(&b);
    jsCtx_Destroy(b.js);
    natsConnection_Destroy(b.nc);
    gen_free(&b.g);
    rt_test_stack_destroy(b.stack);
    return rc;
}
