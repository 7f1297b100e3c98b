/*
 * Checkpoints and pruning: a course saved and loaded (into another engine,
 * as after a restart or a hand-over between replicas) gives the same
 * metrics, now and after any further events; pruning changes no figure;
 * the state stays bounded over weeks of events; bytes that are not a
 * consistent checkpoint are refused and leave the engine as it was.
 *
 * The stream is pseudo-random (fixed seed) over ~40 days and two courses,
 * every event kind, out-of-order and late events, reused event ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "agg_testutil.h"
#include "rt_alloc.h"
#include "rt_pbjson.h"
#include "unpuzzle/rt/v1/analytics_state.pb-c.h"

typedef struct rng {
    uint64_t s;
} rng;

static uint32_t rnd(rng *r, uint32_t n)
{
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33) % n;
}

typedef struct stream {
    rng r;
    int64_t clock_ms;
    int i;
    double position[6];
} stream;

/* Applies event number s->i to every engine; they must agree on the outcome. */
static void next_event(stream *s, agg_engine **engines, size_t n_engines)
{
    static const char *const users[] = {"u0", "u1", "u2", "u3", "u4", "u5"};
    static const char *const lessons[] = {"L0", "L1", "L2", "L3"};
    static const char *const currencies[] = {"USD", "EUR", "GBP"};
    rng *r = &s->r;
    char id[32], key[32];
    int64_t at;
    agg_outcome first = AGG_INVALID;

    /* Mostly seconds apart, now and then hours; some events from the past. */
    if (rnd(r, 100) == 0)
        s->clock_ms += (int64_t)rnd(r, 9 * 3600) * 1000;
    else
        s->clock_ms += (int64_t)rnd(r, 20001);
    at = s->clock_ms;
    if (rnd(r, 10) == 0)
        at -= (int64_t)rnd(r, 300001);
    if (rnd(r, 30) == 0 && s->i > 60)
        snprintf(id, sizeof(id), "ev-%d", s->i - 1 - (int)rnd(r, 50)); /* a reused id */
    else
        snprintf(id, sizeof(id), "ev-%d", s->i);
    g_course = rnd(r, 10) == 0 ? "c2" : "c1";
    int64_t day = (at - T0_MS) / 86400000;
    uint32_t u = rnd(r, 6), kind = rnd(r, 100);
    const char *user = users[u], *lesson_id = lessons[rnd(r, 4)];

    for (size_t k = 0; k < n_engines; k++) {
        agg_engine *e = engines[k];
        rng again = *r; /* every engine sees the same draws */
        agg_outcome out;
        rng *q = &again;
        if (kind < 50) {
            double pos = s->position[u];
            uint32_t how = rnd(q, 10);
            pos += how < 6 ? rnd(q, 35) : how < 8 ? 0 : (double)rnd(q, 600) - 300;
            out = hb(e, id, at, user, lesson_id, pos);
            if (k + 1 == n_engines)
                s->position[u] = pos;
        } else if (kind < 60) {
            snprintf(key, sizeof(key), "p%lld-%u", (long long)day, rnd(q, 8));
            out = shown(e, id, at, user, key);
        } else if (kind < 70) {
            snprintf(key, sizeof(key), "p%lld-%u", (long long)day, rnd(q, 8));
            out = responded(e, id, at, user, key, rnd(q, 3) != 0);
        } else if (kind < 75) {
            out = completed(e, id, at, user, lesson_id);
        } else if (kind < 78) {
            static const Unpuzzle__Rt__V1__EnrollmentChange changes[] = {ADDED, ADDED, COMPLETED,
                                                                         REMOVED};
            out = enroll(e, id, at, user, changes[rnd(q, 4)], rnd(q, 8) ? STUDENT : INSTRUCTOR);
        } else if (kind < 81) {
            out = lesson(e, id, at, lesson_id, rnd(q, 5) == 0);
        } else if (kind < 87) {
            snprintf(key, sizeof(key), "k%d", s->i);
            out = confusion(e, id, at, key, user, lesson_id, (double)rnd(q, 6000) / 10.0);
        } else if (kind < 90) {
            snprintf(key, sizeof(key), "k%d", s->i - 1 - (int)rnd(q, 40));
            out = resolved(e, id, at, key);
        } else if (kind < 93) {
            snprintf(key, sizeof(key), "q%d", s->i);
            out = question(e, id, at, key, user);
        } else if (kind < 95) {
            snprintf(key, sizeof(key), "q%d", s->i - 1 - (int)rnd(q, 40));
            out = answered(e, id, at, key);
        } else if (kind < 98) {
            snprintf(key, sizeof(key), "b%d", s->i);
            out = purchase(e, id, at, key, (int64_t)rnd(q, 10000) - 500, currencies[rnd(q, 3)]);
        } else {
            Google__Protobuf__Timestamp ts = ts_ms(at);
            Unpuzzle__Rt__V1__QuizSubmitted qs = UNPUZZLE__RT__V1__QUIZ_SUBMITTED__INIT;
            qs.event_id = id;
            qs.occurred_at = &ts;
            qs.course_id = (char *)g_course;
            out = apply_msg(e, &qs);
        }
        if (k == 0)
            first = out;
        else
            assert_int_equal(out, first);
        if (k + 1 == n_engines)
            *r = again;
    }
    assert_int_not_equal(first, AGG_INVALID);
    s->i++;
    g_course = COURSE;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = rt_malloc(*len ? *len : 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* How often the compared metrics had something to compare, so the test
 * shows the stream exercised every figure. */
static struct {
    int compared, learn, execution, pace, topics, response, today, students, progress;
} seen;

static void note_coverage(const Unpuzzle__Rt__V1__CourseMetrics *m)
{
    seen.compared++;
    seen.learn += m->learn_rate != NULL;
    seen.execution += m->execution_rate != NULL;
    seen.pace += m->execution_pace_s != NULL;
    seen.topics += m->n_struggling_topics > 0;
    seen.response += m->response_time->median_s != NULL;
    seen.students += m->n_students > 0;
    seen.progress += m->avg_progress != NULL;
    for (size_t i = 0; i < m->revenue->n_currencies; i++)
        seen.today += m->revenue->currencies[i]->today_cents != 0;
}

/* Same metrics for `course` in both engines (identical packed bytes; on a
 * difference both are printed as JSON). */
static void assert_same_metrics(agg_engine *a, agg_engine *b, const char *course)
{
    Unpuzzle__Rt__V1__CourseMetrics *ma = NULL, *mb = NULL;
    rt_status ra = agg_engine_compute(&ma, a, course, g_wall_ms, NULL);
    rt_status rb = agg_engine_compute(&mb, b, course, g_wall_ms, NULL);
    assert_int_equal(ra, rb);
    if (ra != RT_OK)
        return;
    size_t la, lb;
    uint8_t *pa = pack(&ma->base, &la), *pb = pack(&mb->base, &lb);
    if (la != lb || memcmp(pa, pb, la) != 0) {
        char *ja = NULL, *jb = NULL;
        rt_pbjson_to_string(&ja, NULL, &ma->base, 0);
        rt_pbjson_to_string(&jb, NULL, &mb->base, 0);
        fprintf(stderr, "one:   %s\nother: %s\n", ja, jb);
        free(ja);
        free(jb);
        fail_msg("metrics of %s differ", course);
    }
    note_coverage(ma);
    free(pa);
    free(pb);
    agg_metrics_free(ma);
    agg_metrics_free(mb);
}

/* Saves every course of `from` and loads it into a new engine. */
static agg_engine *reload(agg_engine *from, size_t *bytes)
{
    agg_engine *to = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    const char *courses[] = {"c1", "c2"};
    *bytes = 0;
    for (size_t i = 0; i < 2; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        char loaded[RT_ID_MAX + 1] = "";
        if (agg_engine_save_course(&data, &len, from, courses[i]) != RT_OK)
            continue;
        assert_int_equal(agg_engine_load_course(to, data, len, loaded), RT_OK);
        assert_string_equal(loaded, courses[i]);
        *bytes += len;
        free(data);
    }
    return to;
}

static void test_save_load_prune_change_nothing(void **state)
{
    (void)state;
    stream s = {.r = {20260310}, .clock_ms = T0_MS};
    /* straight: never saved nor pruned; moved: saved, reloaded into a new
     * engine every 997 events and pruned every 500. */
    agg_engine *straight = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    agg_engine *moved = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    size_t max_bytes = 0;

    for (int i = 0; i < 24000; i++) {
        agg_engine *both[] = {straight, moved};
        next_event(&s, both, 2);
        if (i % 500 == 499)
            agg_engine_prune(moved, g_wall_ms);
        if (i % 997 == 996) {
            size_t bytes;
            assert_same_metrics(straight, moved, "c1");
            assert_same_metrics(straight, moved, "c2");
            agg_engine *fresh = reload(moved, &bytes);
            agg_engine_destroy(moved);
            moved = fresh;
            assert_same_metrics(straight, moved, "c1");
            assert_same_metrics(straight, moved, "c2");
            if (bytes > max_bytes)
                max_bytes = bytes;
        }
    }
    assert_same_metrics(straight, moved, "c1");
    assert_same_metrics(straight, moved, "c2");
    /* The stream covered weeks: the 30-day series is full of data. */
    assert_true(s.clock_ms - T0_MS > 35 * INT64_C(86400000));
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    assert_int_equal(agg_engine_compute(&m, straight, "c1", g_wall_ms, NULL), RT_OK);
    assert_true(m->confusions->total > 100);
    agg_metrics_free(m);
    print_message("compared %d times: learn %d, execution %d, pace %d, topics %d, response %d, "
                  "revenue today %d, students %d, progress %d\n",
                  seen.compared, seen.learn, seen.execution, seen.pace, seen.topics, seen.response,
                  seen.today, seen.students, seen.progress);
    assert_true(seen.learn > 5 && seen.execution > 5 && seen.pace > 5 && seen.topics > 5);
    assert_true(seen.response > 5 && seen.today > 5 && seen.students > 5 && seen.progress > 5);
    agg_engine_stats st;
    agg_engine_stats_get(&st, straight);
    assert_true(st.late > 100);
    assert_true(st.duplicates > 100);
    /* Bounded: pruned state of 6 users over weeks stays small. */
    size_t bytes;
    agg_engine *last = reload(moved, &bytes);
    assert_true(bytes < 256 * 1024);
    print_message("checkpoint of both courses: %zu bytes (largest seen %zu)\n", bytes, max_bytes);
    agg_engine_destroy(last);
    agg_engine_destroy(straight);
    agg_engine_destroy(moved);
}

static void test_memory_is_bounded(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    add_student(e, "u1");
    size_t after_31_days = 0, after_40_days = 0;
    /* One heartbeat every 15 s for 40 days (230,400 events). */
    for (int64_t i = 0; i < 40 * 5760; i++) {
        char id[32];
        snprintf(id, sizeof(id), "h%lld", (long long)i);
        assert_int_equal(hb(e, id, AT(15 * i), "u1", "L1", (double)(15 * i % 3600)), AGG_APPLIED);
        if (i == 31 * 5760 || i == 40 * 5760 - 1) {
            uint8_t *data;
            size_t len;
            agg_engine_prune(e, g_wall_ms);
            assert_int_equal(agg_engine_save_course(&data, &len, e, COURSE), RT_OK);
            free(data);
            *(i == 31 * 5760 ? &after_31_days : &after_40_days) = len;
        }
    }
    /* 240 pairs in the window, 30 days, ids of the last 120 s. */
    assert_true(after_40_days < 16 * 1024);
    assert_true(after_40_days <= after_31_days + 64); /* no growth once the series is full */
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_true(m->daily[0]->watch_minutes > 1400); /* every day of the series is full */
    assert_true(m->daily[29]->watch_minutes > 1400);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_bad_checkpoints(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    add_student(e, "u1");
    assert_int_equal(hb(e, "a", AT(0), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(15), "u1", "L1", 15), AGG_APPLIED);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(agg_engine_save_course(&data, &len, e, COURSE), RT_OK);
    assert_int_equal(agg_engine_save_course(&data, &len, e, "nope"), RT_ERR_NOT_FOUND);

    /* Truncated bytes. */
    assert_int_equal(agg_engine_load_course(e, data, len / 2, NULL), RT_ERR_DECODE);
    assert_int_equal(agg_engine_load_course(e, (const uint8_t *)"\xff\xff\xff", 3, NULL),
                     RT_ERR_DECODE);

    /* Well-formed protobuf, inconsistent content: heartbeats out of order. */
    Unpuzzle__Rt__V1__AnalyticsCourseState *st =
        unpuzzle__rt__v1__analytics_course_state__unpack(NULL, len, data);
    assert_non_null(st);
    assert_int_equal(st->n_students, 1);
    assert_int_equal(st->students[0]->n_beats, 2);
    int64_t t = st->students[0]->beats[0]->at_ns;
    st->students[0]->beats[0]->at_ns = st->students[0]->beats[1]->at_ns + 1;
    size_t blen;
    uint8_t *bad = pack(&st->base, &blen);
    assert_int_equal(agg_engine_load_course(e, bad, blen, NULL), RT_ERR_DECODE);
    assert_non_null(strstr(rt_error_message(), "out of order"));
    free(bad);
    st->students[0]->beats[0]->at_ns = t;
    /* An unknown format. */
    st->format = 2;
    bad = pack(&st->base, &blen);
    assert_int_equal(agg_engine_load_course(e, bad, blen, NULL), RT_ERR_DECODE);
    free(bad);
    st->format = 1;
    /* A bad user id. */
    char *saved_user = st->students[0]->user_id;
    st->students[0]->user_id = "not an id";
    bad = pack(&st->base, &blen);
    assert_int_equal(agg_engine_load_course(e, bad, blen, NULL), RT_ERR_DECODE);
    free(bad);
    st->students[0]->user_id = saved_user;
    unpuzzle__rt__v1__analytics_course_state__free_unpacked(st, NULL);

    /* The engine still has its course as it was. */
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(m->learn_rate, 60.0);
    agg_metrics_free(m);
    /* And the good bytes load over it. */
    assert_int_equal(agg_engine_load_course(e, data, len, NULL), RT_OK);
    m = metrics(e);
    assert_figure(m->learn_rate, 60.0);
    agg_metrics_free(m);
    free(data);
    agg_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_prune_change_nothing),
        cmocka_unit_test(test_memory_is_bounded),
        cmocka_unit_test(test_bad_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
