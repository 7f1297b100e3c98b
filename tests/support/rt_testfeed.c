#include "rt_testfeed.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_alloc.h"
#include "rt_teststack.h"
#include "rt_time.h"

/* ---- publisher thread ---- */

struct rt_test_publisher {
    char *room, *prefix, *text;
    int count, rate_per_s, ack_wait_ms, give_up_ms;
    natsConnection *nc;
    jsCtx *js;
    pthread_t thread;
    bool started, joined;

    pthread_mutex_t lock;
    uint64_t *seqs, *sent_ns; /* acknowledged, in order */
    size_t n, cap;
    unsigned retries;
    rt_status status;
    char error[256];
    atomic_bool stop, finished;
};

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

static void *publisher_main(void *arg)
{
    rt_test_publisher *p = arg;
    uint64_t start = rt_time_mono_ns();
    char event_id[96];

    for (int i = 0; i < p->count && !atomic_load(&p->stop); i++) {
        if (p->rate_per_s > 0) {
            uint64_t due = start + (uint64_t)i * 1000000000u / (uint64_t)p->rate_per_s;
            uint64_t now = rt_time_mono_ns();
            if (due > now)
                sleep_ns(due - now);
        }
        snprintf(event_id, sizeof(event_id), "%s-%d", p->prefix, i);
        uint64_t first = rt_time_mono_ns();
        uint64_t give_up = first + (uint64_t)p->give_up_ms * 1000000u;
        uint64_t seq = 0;
        bool dup = false;
        for (;;) {
            rt_status s = rt_test_publish_room_confusion_js(&seq, &dup, p->js, p->ack_wait_ms,
                                                            p->room, event_id, "stu-2", p->text);
            if (s == RT_OK)
                break;
            if (rt_time_mono_ns() >= give_up) {
                pthread_mutex_lock(&p->lock);
                p->status = s;
                snprintf(p->error, sizeof(p->error), "%s not acknowledged within %d ms: %s",
                         event_id, p->give_up_ms, rt_error_message());
                pthread_mutex_unlock(&p->lock);
                atomic_store(&p->finished, true);
                return NULL;
            }
            pthread_mutex_lock(&p->lock);
            p->retries++;
            pthread_mutex_unlock(&p->lock);
            sleep_ns(50 * 1000000u);
        }
        pthread_mutex_lock(&p->lock);
        /* A duplicate is the first attempt, stored after all: its seq is
         * new to the list unless this very message was already counted. */
        if (!(dup && p->n && p->seqs[p->n - 1] == seq)) {
            if (p->n == p->cap) {
                p->cap = p->cap ? p->cap * 2 : 256;
                p->seqs = rt_realloc(p->seqs, p->cap * sizeof(uint64_t));
                p->sent_ns = rt_realloc(p->sent_ns, p->cap * sizeof(uint64_t));
            }
            p->seqs[p->n] = seq;
            p->sent_ns[p->n] = first;
            p->n++;
        }
        pthread_mutex_unlock(&p->lock);
    }
    atomic_store(&p->finished, true);
    return NULL;
}

rt_status rt_test_publisher_start(rt_test_publisher **out, const rt_test_publisher_options *o)
{
    rt_test_publisher *p = rt_calloc(1, sizeof(*p));
    natsOptions *opts = NULL;
    natsStatus ns;

    *out = NULL;
    p->room = rt_strdup(o->room);
    p->prefix = rt_strdup(o->event_prefix);
    p->count = o->count;
    p->rate_per_s = o->rate_per_s;
    p->ack_wait_ms = o->ack_wait_ms > 0 ? o->ack_wait_ms : 1000;
    p->give_up_ms = o->give_up_ms > 0 ? o->give_up_ms : 30000;
    size_t text_len = o->text_bytes ? o->text_bytes : 8;
    p->text = rt_malloc(text_len + 1);
    memset(p->text, 'x', text_len);
    p->text[text_len] = '\0';
    pthread_mutex_init(&p->lock, NULL);
    atomic_init(&p->stop, false);
    atomic_init(&p->finished, false);

    ns = natsOptions_Create(&opts);
    if (ns == NATS_OK)
        ns = natsOptions_SetURL(opts, o->nats_url);
    if (ns == NATS_OK)
        ns = natsOptions_SetMaxReconnect(opts, -1);
    if (ns == NATS_OK)
        ns = natsOptions_SetReconnectWait(opts, 50);
    if (ns == NATS_OK)
        ns = natsConnection_Connect(&p->nc, opts);
    natsOptions_Destroy(opts);
    if (ns == NATS_OK)
        ns = natsConnection_JetStream(&p->js, p->nc, NULL);
    if (ns != NATS_OK) {
        rt_status s =
            RT_ERR(RT_ERR_NATS, "publisher connect %s: %s", o->nats_url, natsStatus_GetText(ns));
        rt_test_publisher_destroy(p);
        return s;
    }
    if (pthread_create(&p->thread, NULL, publisher_main, p) != 0) {
        rt_test_publisher_destroy(p);
        return RT_ERR(RT_ERR_INTERNAL, "publisher thread");
    }
    p->started = true;
    *out = p;
    return RT_OK;
}

size_t rt_test_publisher_acked(rt_test_publisher *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->n;
    pthread_mutex_unlock(&p->lock);
    return n;
}

uint64_t rt_test_publisher_last(rt_test_publisher *p)
{
    pthread_mutex_lock(&p->lock);
    uint64_t last = p->n ? p->seqs[p->n - 1] : 0;
    pthread_mutex_unlock(&p->lock);
    return last;
}

bool rt_test_publisher_finished(rt_test_publisher *p)
{
    return atomic_load(&p->finished);
}

void rt_test_publisher_stop(rt_test_publisher *p)
{
    atomic_store(&p->stop, true);
}

rt_status rt_test_publisher_wait(rt_test_publisher *p, int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!atomic_load(&p->finished)) {
        if (rt_time_mono_ns() >= deadline)
            return RT_ERR(RT_ERR_TIMEOUT, "publisher still going after %d ms (%zu acknowledged)",
                          timeout_ms, rt_test_publisher_acked(p));
        sleep_ns(5 * 1000000u);
    }
    if (p->started && !p->joined) {
        pthread_join(p->thread, NULL);
        p->joined = true;
    }
    pthread_mutex_lock(&p->lock);
    rt_status s = p->status;
    char error[256];
    snprintf(error, sizeof(error), "%s", p->error);
    pthread_mutex_unlock(&p->lock);
    return s == RT_OK ? RT_OK : RT_ERR(s, "%s", error);
}

size_t rt_test_publisher_seqs(rt_test_publisher *p, uint64_t **out)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->n;
    *out = rt_malloc((n ? n : 1) * sizeof(uint64_t));
    if (n)
        memcpy(*out, p->seqs, n * sizeof(uint64_t));
    pthread_mutex_unlock(&p->lock);
    return n;
}

bool rt_test_publisher_sent_at(rt_test_publisher *p, uint64_t seq, uint64_t *mono_ns)
{
    bool found = false;
    pthread_mutex_lock(&p->lock);
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->seqs[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < p->n && p->seqs[lo] == seq) {
        *mono_ns = p->sent_ns[lo];
        found = true;
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

unsigned rt_test_publisher_retries(rt_test_publisher *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned n = p->retries;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void rt_test_publisher_destroy(rt_test_publisher *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    if (p->started && !p->joined)
        pthread_join(p->thread, NULL);
    jsCtx_Destroy(p->js);
    natsConnection_Destroy(p->nc);
    pthread_mutex_destroy(&p->lock);
    free(p->seqs);
    free(p->sent_ns);
    free(p->room);
    free(p->prefix);
    free(p->text);
    free(p);
}

/* ---- one client's view of one room ---- */

void rt_test_feed_init(rt_test_feed *f, uint64_t start_seq)
{
    memset(f, 0, sizeof(*f));
    f->start_seq = start_seq;
    f->last_seq = start_seq;
}

void rt_test_feed_free(rt_test_feed *f)
{
    free(f->seqs);
    memset(f, 0, sizeof(*f));
}

bool rt_test_feed_is_room_message(const json_t *m)
{
    return json_is_integer(json_object_get(m, "seq")) &&
           json_is_integer(json_object_get(m, "prevSeq"));
}

static void violation(rt_test_feed *f, const char *fmt, unsigned long long a, unsigned long long b,
                      unsigned long long c)
{
    if (!f->violations++)
        snprintf(f->first_violation, sizeof(f->first_violation), fmt, a, b, c);
}

bool rt_test_feed_push(rt_test_feed *f, const json_t *m)
{
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(m, "seq"));
    uint64_t prev = (uint64_t)json_integer_value(json_object_get(m, "prevSeq"));
    bool ok = true;

    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->seqs = rt_realloc(f->seqs, f->cap * sizeof(uint64_t));
    }
    f->seqs[f->n++] = seq;
    if (seq <= f->last_seq) {
        violation(f, "seq %llu (prevSeq %llu) after seq %llu: duplicate or out of order", seq, prev,
                  f->last_seq);
        return false;
    }
    if (prev != f->last_seq) {
        violation(f, "gap: seq %llu has prevSeq %llu but the last one seen was %llu", seq, prev,
                  f->last_seq);
        ok = false;
    }
    f->last_seq = seq;
    return ok;
}

bool rt_test_feed_check(const rt_test_feed *f, const uint64_t *expected, size_t n_expected,
                        char *why, size_t why_size)
{
    size_t first = 0;
    while (first < n_expected && expected[first] <= f->start_seq)
        first++;
    const uint64_t *want = expected + first;
    size_t n_want = n_expected - first;
    bool same = f->violations == 0 && f->n == n_want &&
                (n_want == 0 || memcmp(f->seqs, want, n_want * sizeof(uint64_t)) == 0);
    if (same) {
        if (why_size)
            why[0] = '\0';
        return true;
    }
    /* How: missing (acknowledged, never seen) and extra (seen, not
     * acknowledged, or seen twice), by merging the two ascending lists. */
    size_t missing = 0, extra = 0, i = 0, j = 0;
    uint64_t first_missing = 0, first_extra = 0;
    uint64_t *got = rt_malloc((f->n ? f->n : 1) * sizeof(uint64_t));
    if (f->n)
        memcpy(got, f->seqs, f->n * sizeof(uint64_t));
    for (size_t a = 1; a < f->n; a++) { /* insertion sort: nearly sorted */
        uint64_t v = got[a];
        size_t b = a;
        while (b > 0 && got[b - 1] > v) {
            got[b] = got[b - 1];
            b--;
        }
        got[b] = v;
    }
    while (i < n_want || j < f->n) {
        if (j == f->n || (i < n_want && want[i] < got[j])) {
            if (!missing++)
                first_missing = want[i];
            i++;
        } else if (i == n_want || got[j] < want[i]) {
            if (!extra++)
                first_extra = got[j];
            j++;
        } else {
            i++;
            j++;
        }
    }
    free(got);
    snprintf(why, why_size,
             "received %zu of %zu expected after seq %llu: %zu missing (first %llu), %zu extra "
             "or repeated (first %llu), %u order/chain violations%s%s",
             f->n, n_want, (unsigned long long)f->start_seq, missing,
             (unsigned long long)first_missing, extra, (unsigned long long)first_extra,
             f->violations, f->violations ? ", first: " : "", f->first_violation);
    return false;
}

rt_status rt_test_feed_read_until(rt_test_feed *f, rt_testws *ws, uint64_t seq, int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (f->last_seq < seq) {
        uint64_t now = rt_time_mono_ns();
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000u);
        json_t *m = NULL;
        rt_status s = rt_testws_recv_json(&m, ws, left);
        if (s != RT_OK) {
            char cause[256];
            snprintf(cause, sizeof(cause), "%s", rt_error_message());
            return RT_ERR(s, "waiting for seq %llu (last seen %llu, %zu received): %s",
                          (unsigned long long)seq, (unsigned long long)f->last_seq, f->n, cause);
        }
        if (!rt_test_feed_is_room_message(m)) {
            char *text = json_dumps(m, JSON_COMPACT);
            s = RT_ERR(RT_ERR_DECODE, "expected a room message, got %.200s", text);
            free(text);
            json_decref(m);
            return s;
        }
        rt_test_feed_push(f, m);
        json_decref(m);
    }
    return RT_OK;
}
