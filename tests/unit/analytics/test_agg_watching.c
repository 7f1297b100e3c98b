/*
 * learnRate and watch minutes from heartbeat pairs (spec/analytics.md):
 * 60 x watched / active over consecutive on-time ProgressUpdated of one
 * student, gap 0 < dt <= 60 s, watched = advance when in the same lesson
 * and 0 <= advance <= 2 dt + 1 s. Seeking, pausing, 2x speed, long gaps,
 * lesson switches, out-of-order heartbeats within the lateness, late ones,
 * ties in arrival order, the window's edges, the day a pair belongs to, and
 * the 30-day series with its empty days.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agg_testutil.h"

/* Event mode, W = 1 h, lateness 120 s; students u1 (and u2) enrolled. */
static agg_engine *setup_engine(void)
{
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    add_student(e, "u1");
    add_student(e, "u2");
    return e;
}

static void beats(agg_engine *e, const char *user, const char *lesson_id, double t0, double step,
                  const double *positions, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "hb-%s-%lld", user, (long long)AT(t0 + step * (double)i));
        assert_int_equal(hb(e, id, AT(t0 + step * (double)i), user, lesson_id, positions[i]),
                         AGG_APPLIED);
    }
}

static void test_seek_and_pause(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* 15 s apart: 1x, 1x, seek forward, 1x, paused, seek back. */
    const double pos[] = {0, 15, 30, 300, 315, 315, 310};
    beats(e, "u1", "L1", 100, 15, pos, 7);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* active 6 x 15 = 90 s, watched 15 + 15 + 15 = 45 s -> 60 * 45 / 90 = 30 */
    const Unpuzzle__Rt__V1__StudentInsight *u1 = find_student(m, "u1");
    assert_figure(u1->learn_rate, 30.0);
    assert_string_equal(u1->learn_rate_band, "fair");
    assert_false(u1->needs_help);
    assert_figure(m->learn_rate, 30.0); /* u2 has no pairs: adds nothing */
    assert_string_equal(m->learn_rate_band, "fair");
    assert_null_figure(find_student(m, "u2")->learn_rate);
    assert_string_equal(find_student(m, "u2")->learn_rate_band, "");
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_double_speed(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* dt 12 s: advance 24 (2x), 25 (2x + 1 s slack, the limit), 26 (over). */
    const double pos[] = {100, 124, 149, 175};
    beats(e, "u1", "L1", 0, 12, pos, 4);
    /* dt 10 s: 21 s is the limit, 21.000001 s is over it (microseconds count). */
    assert_int_equal(hb(e, "a", AT(100), "u2", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(110), "u2", "L1", 21), AGG_APPLIED);
    assert_int_equal(hb(e, "c", AT(120), "u2", "L1", 42.000001), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* u1: watched 49 of active 36 -> 60 * 49 / 36 = 81.666... */
    assert_figure(find_student(m, "u1")->learn_rate, 81.667);
    assert_string_equal(find_student(m, "u1")->learn_rate_band, "excellent");
    /* u2: watched 21 of 20 -> 63 */
    assert_figure(find_student(m, "u2")->learn_rate, 63.0);
    assert_string_equal(find_student(m, "u2")->learn_rate_band, "very_good");
    /* course: 60 * 70 / 56 = 75 */
    assert_figure(m->learn_rate, 75.0);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_gaps(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* 0 -> 61: gap over 60 s adds nothing, but 61 starts the next pair;
     * 61 -> 121: exactly 60 s counts; 121 -> 121: dt 0 adds nothing. */
    assert_int_equal(hb(e, "a", AT(0), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(61), "u1", "L1", 61), AGG_APPLIED);
    assert_int_equal(hb(e, "c", AT(121), "u1", "L1", 121), AGG_APPLIED);
    assert_int_equal(hb(e, "d", AT(121), "u1", "L1", 121), AGG_APPLIED);
    /* a pair across lessons: active, not watched */
    assert_int_equal(hb(e, "e", AT(136), "u1", "L2", 15), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* active 60 + 15 = 75, watched 60 -> 48 */
    assert_figure(find_student(m, "u1")->learn_rate, 48.0);
    assert_string_equal(find_student(m, "u1")->learn_rate_band, "good");
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_paused_only_needs_help(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    const double paused[] = {50, 50, 50, 50};
    beats(e, "u1", "L1", 0, 15, paused, 4);
    /* u2 exactly at the poor/fair boundary: 60 * 15 / 45 = 20 */
    const double slow[] = {0, 5, 10, 15};
    beats(e, "u2", "L1", 0, 15, slow, 4);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    const Unpuzzle__Rt__V1__StudentInsight *u1 = find_student(m, "u1"), *u2 = find_student(m, "u2");
    assert_figure(u1->learn_rate, 0.0); /* active but not watched: 0, not null */
    assert_string_equal(u1->learn_rate_band, "poor");
    assert_true(u1->needs_help); /* learnRate < 20 */
    assert_figure(u2->learn_rate, 20.0);
    assert_string_equal(u2->learn_rate_band, "fair");
    assert_false(u2->needs_help);
    assert_figure(m->learn_rate, 10.0);
    assert_string_equal(m->learn_rate_band, "poor");
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_out_of_order_within_lateness(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    assert_int_equal(hb(e, "a", AT(0), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(30), "u1", "L1", 30), AGG_APPLIED);
    assert_int_equal(hb(e, "c", AT(60), "u1", "L1", 60), AGG_APPLIED);
    /* Arrives last, 45 s behind the latest (on time): it sits between 0 and
     * 30 and, being a seek, spoils both pairs it makes. */
    assert_int_equal(hb(e, "d", AT(15), "u1", "L1", 200), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* pairs 0->15 (seek), 15->30 (back), 30->60 (30 s): 60 * 30 / 60 = 30 */
    assert_figure(find_student(m, "u1")->learn_rate, 30.0);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_out_of_order_after_folding(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* Ten minutes of 1x heartbeats: the early pairs are folded as latest
     * moves on; a heartbeat 119 s behind still splits the right pair. */
    for (int i = 0; i <= 40; i++) {
        char id[32];
        snprintf(id, sizeof(id), "h%d", i);
        assert_int_equal(hb(e, id, AT(15 * i), "u1", "L1", 15 * i), AGG_APPLIED);
    }
    /* latest 600; 481 is on time (119 s behind) and a seek. */
    assert_int_equal(hb(e, "late-ok", AT(481), "u1", "L1", 1000), AGG_APPLIED);
    /* 479 is 121 s behind: late, makes no pair. */
    assert_int_equal(hb(e, "late", AT(479), "u1", "L1", 5000), AGG_APPLIED_LATE);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* 40 pairs = 600 s active; the 480->495 pair is split into 480->481
     * (seek) and 481->495 (back): watched 600 - 15 = 585 -> 58.5 */
    assert_figure(find_student(m, "u1")->learn_rate, 58.5);
    agg_metrics_free(m);

    agg_engine_stats stats;
    agg_engine_stats_get(&stats, e);
    assert_int_equal(stats.late, 1);
    agg_engine_destroy(e);
}

static void test_late_heartbeat_boundary(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    assert_int_equal(hb(e, "a", AT(1000), "u1", "L1", 100), AGG_APPLIED);
    /* exactly the lateness behind: on time */
    assert_int_equal(hb(e, "b", AT(880), "u1", "L1", 0), AGG_APPLIED);
    /* a millisecond more: late, no pair, but it is activity */
    assert_int_equal(hb(e, "c", AT(879.999), "u1", "L1", 0), AGG_APPLIED_LATE);
    assert_int_equal(hb(e, "d", AT(1015), "u1", "L1", 115), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* 880 -> 1000 is a 120 s gap (nothing); 1000 -> 1015: 15 of 15 */
    assert_figure(find_student(m, "u1")->learn_rate, 60.0);
    assert_int_equal(find_student(m, "u1")->last_active_at->seconds, 1773100800 + 1015);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_ties_keep_arrival_order(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    assert_int_equal(hb(e, "a", AT(0), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b1", AT(15), "u1", "L1", 15), AGG_APPLIED);
    assert_int_equal(hb(e, "b2", AT(15), "u1", "L1", 100), AGG_APPLIED);
    assert_int_equal(hb(e, "c", AT(30), "u1", "L1", 115), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    /* 0 -> 15 (b1): 15; b1 -> b2: dt 0, nothing; b2 -> 30: 15 */
    assert_figure(find_student(m, "u1")->learn_rate, 60.0);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_window_edges(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* end will be 7200: W = (3600, 7200]. */
    assert_int_equal(hb(e, "a", AT(3590), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(3600), "u1", "L1", 10), AGG_APPLIED); /* pair at end - W: out */
    assert_int_equal(hb(e, "c", AT(3600.001), "u1", "L1", 10), AGG_APPLIED); /* in, watched 0 */
    assert_int_equal(hb(e, "d", AT(7190), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "f", AT(7200), "u1", "L1", 10), AGG_APPLIED); /* pair at end: in */
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->end->seconds, 1773100800 + 7200);
    /* in W: (3600 -> 3600.001) active 0.001 s watched 0; (7190 -> 7200) 10/10.
     * 60 * 10 / 10.001 = 59.994000... */
    assert_figure(find_student(m, "u1")->learn_rate, 59.994);
    /* The day holds every pair: 10 + 0.001 + 10 active, 20 watched. */
    const Unpuzzle__Rt__V1__DailyPoint *today = m->daily[29];
    assert_string_equal(today->date, "2026-03-10");
    assert_figure(today->learn_rate, 59.997); /* 60 * 20 / 20.001 = 59.99700... */
    assert_true(today->watch_minutes == 0.333);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_daily_series(void **state)
{
    (void)state;
    /* Heartbeats first, in time order; the enrollments come last (late, and
     * still deciding who is enrolled at end). */
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    /* 30 days before today's day: outside the series. */
    assert_int_equal(hb(e, "o1", AT(-DAY(30) + 10), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "o2", AT(-DAY(30) + 40), "u1", "L1", 30), AGG_APPLIED);
    /* The first day of the series (2026-02-09). */
    assert_int_equal(hb(e, "f1", AT(-DAY(29) + 10), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "f2", AT(-DAY(29) + 40), "u1", "L1", 30), AGG_APPLIED);
    /* A pair across midnight belongs to the day of its later heartbeat. */
    assert_int_equal(hb(e, "m1", AT(-DAY(2) - 10), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "m2", AT(-DAY(2) + 5), "u1", "L1", 15), AGG_APPLIED);
    /* A student removed at end: her day does not count. */
    assert_int_equal(hb(e, "r1", AT(-DAY(1) + 100), "u3", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "r2", AT(-DAY(1) + 115), "u3", "L1", 15), AGG_APPLIED);
    /* Today: paused. */
    assert_int_equal(hb(e, "t1", AT(3600), "u2", "L1", 7), AGG_APPLIED);
    assert_int_equal(hb(e, "t2", AT(3615), "u2", "L1", 7), AGG_APPLIED);
    assert_int_equal(enroll(e, "e1", AT(-DAY(40)), "u1", ADDED, STUDENT), AGG_APPLIED_LATE);
    assert_int_equal(enroll(e, "e2", AT(-DAY(40)), "u2", ADDED, STUDENT), AGG_APPLIED_LATE);
    assert_int_equal(enroll(e, "e3", AT(-DAY(40)), "u3", ADDED, STUDENT), AGG_APPLIED_LATE);
    assert_int_equal(enroll(e, "e4", AT(-DAY(1) + 200), "u3", REMOVED, STUDENT), AGG_APPLIED_LATE);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->n_daily, 30);
    assert_string_equal(m->daily[0]->date, "2026-02-09");
    assert_figure(m->daily[0]->learn_rate, 60.0);
    assert_true(m->daily[0]->watch_minutes == 0.5);
    assert_null_figure(m->daily[0]->execution_rate);
    assert_string_equal(m->daily[1]->date, "2026-02-10");
    assert_null_figure(m->daily[1]->learn_rate); /* an empty day */
    assert_true(m->daily[1]->watch_minutes == 0);
    assert_string_equal(m->daily[27]->date, "2026-03-08");
    assert_figure(m->daily[27]->learn_rate, 60.0); /* the midnight pair */
    assert_true(m->daily[27]->watch_minutes == 0.25);
    assert_null_figure(m->daily[26]->learn_rate);
    assert_null_figure(m->daily[28]->learn_rate); /* u3's day, but u3 was removed */
    assert_figure(m->daily[29]->learn_rate, 0.0);
    assert_true(m->daily[29]->watch_minutes == 0);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_long_stream_folds_exactly(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* Three hours at 1x, one heartbeat every 15 s, plus u2 pausing. */
    for (int i = 0; i <= 720; i++) {
        char id[32];
        snprintf(id, sizeof(id), "u1-%d", i);
        assert_int_equal(hb(e, id, AT(15 * i), "u1", "L1", 15 * i), AGG_APPLIED);
        snprintf(id, sizeof(id), "u2-%d", i);
        assert_int_equal(hb(e, id, AT(15 * i), "u2", "L1", 0), AGG_APPLIED);
    }
    agg_engine_prune(e, g_wall_ms);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(find_student(m, "u1")->learn_rate, 60.0);
    assert_figure(find_student(m, "u2")->learn_rate, 0.0);
    assert_figure(m->learn_rate, 30.0);
    assert_true(m->daily[29]->watch_minutes == 180.0);
    assert_figure(m->daily[29]->learn_rate, 30.0);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seek_and_pause),
        cmocka_unit_test(test_double_speed),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_paused_only_needs_help),
        cmocka_unit_test(test_out_of_order_within_lateness),
        cmocka_unit_test(test_out_of_order_after_folding),
        cmocka_unit_test(test_late_heartbeat_boundary),
        cmocka_unit_test(test_ties_keep_arrival_order),
        cmocka_unit_test(test_window_edges),
        cmocka_unit_test(test_daily_series),
        cmocka_unit_test(test_long_stream_folds_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
