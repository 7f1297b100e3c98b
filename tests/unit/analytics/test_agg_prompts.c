/*
 * executionRate and executionPace (spec/analytics.md): prompts keyed by
 * (course, student, prompt_id); the first on-time PromptShown counts;
 * completed once any on-time PromptResponded{completed} is seen (a skip
 * never undoes it); pace from the earliest completion; over prompts first
 * shown in W; late events neither show nor complete; the daily series by
 * the day a prompt was first shown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agg_testutil.h"

static agg_engine *setup_engine(void)
{
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    add_student(e, "u1");
    add_student(e, "u2");
    return e;
}

static void test_rate_and_pace(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    assert_int_equal(shown(e, "s1", AT(100), "u1", "p1"), AGG_APPLIED);
    assert_int_equal(responded(e, "r1", AT(130), "u1", "p1", true), AGG_APPLIED);
    /* skip, then complete: completed, pace from the completion */
    assert_int_equal(shown(e, "s2", AT(200), "u1", "p2"), AGG_APPLIED);
    assert_int_equal(responded(e, "r2", AT(210), "u1", "p2", false), AGG_APPLIED);
    assert_int_equal(responded(e, "r3", AT(240), "u1", "p2", true), AGG_APPLIED);
    /* shown and never answered: pending at the window's end */
    assert_int_equal(shown(e, "s3", AT(300), "u1", "p3"), AGG_APPLIED);
    /* complete, then skip: still completed */
    assert_int_equal(shown(e, "s4", AT(400), "u1", "p4"), AGG_APPLIED);
    assert_int_equal(responded(e, "r4", AT(460), "u1", "p4", true), AGG_APPLIED);
    assert_int_equal(responded(e, "r5", AT(470), "u1", "p4", false), AGG_APPLIED);
    /* u2: shown and only skipped */
    assert_int_equal(shown(e, "s5", AT(500), "u2", "q1"), AGG_APPLIED);
    assert_int_equal(responded(e, "r6", AT(510), "u2", "q1", false), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    const Unpuzzle__Rt__V1__StudentInsight *u1 = find_student(m, "u1"), *u2 = find_student(m, "u2");
    assert_figure(u1->execution_rate, 75.0);              /* 3 of 4 */
    assert_string_equal(u1->execution_rate_band, "good"); /* 75 is the good boundary */
    assert_figure(u1->execution_pace_s, 43.333);          /* (30 + 40 + 60) / 3 */
    assert_figure(u2->execution_rate, 0.0);
    assert_string_equal(u2->execution_rate_band, "poor");
    assert_null_figure(u2->execution_pace_s); /* nothing completed */
    assert_figure(m->execution_rate, 60.0);   /* 3 of 5 */
    assert_string_equal(m->execution_rate_band, "fair");
    assert_figure(m->execution_pace_s, 43.333);
    assert_int_equal(u1->last_active_at->seconds, 1773100800 + 470);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_first_shown_and_earliest_completion(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* The later PromptShown arrives first; the earliest on-time one counts. */
    assert_int_equal(shown(e, "s1", AT(520), "u1", "p1"), AGG_APPLIED);
    assert_int_equal(shown(e, "s2", AT(500), "u1", "p1"), AGG_APPLIED);
    assert_int_equal(responded(e, "r1", AT(590), "u1", "p1", true), AGG_APPLIED);
    assert_int_equal(responded(e, "r2", AT(560), "u1", "p1", true), AGG_APPLIED);
    /* The same prompt id of another student is another prompt. */
    assert_int_equal(shown(e, "s3", AT(600), "u2", "p1"), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(find_student(m, "u1")->execution_rate, 100.0);
    assert_string_equal(find_student(m, "u1")->execution_rate_band, "excellent");
    assert_figure(find_student(m, "u1")->execution_pace_s, 60.0); /* 560 - 500 */
    assert_figure(find_student(m, "u2")->execution_rate, 0.0);
    assert_figure(m->execution_rate, 50.0);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_late_prompt_events(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    assert_int_equal(shown(e, "s1", AT(900), "u1", "p1"), AGG_APPLIED);
    assert_int_equal(hb(e, "h", AT(1000), "u2", "L1", 0), AGG_APPLIED); /* latest = 1000 */
    /* A late PromptShown shows nothing, even completed on time afterwards. */
    assert_int_equal(shown(e, "s2", AT(870), "u1", "p2"), AGG_APPLIED_LATE);
    assert_int_equal(responded(e, "r2", AT(990), "u1", "p2", true), AGG_APPLIED);
    /* A late completion completes nothing: p1 stays pending. */
    assert_int_equal(responded(e, "r1", AT(879), "u1", "p1", true), AGG_APPLIED_LATE);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(find_student(m, "u1")->execution_rate, 0.0); /* p1: 0 of 1 */
    assert_null_figure(find_student(m, "u1")->execution_pace_s);
    assert_null_figure(find_student(m, "u2")->execution_rate); /* nothing shown */
    assert_string_equal(find_student(m, "u2")->execution_rate_band, "");
    /* Late events still count as activity. */
    assert_int_equal(find_student(m, "u1")->last_active_at->seconds, 1773100800 + 990);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_window_and_series(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    /* end will be 2026-03-10T02:00:00 (7200 s): W = (3600, 7200]. */
    assert_int_equal(shown(e, "y1", AT(-DAY(1) + 100), "u1", "old"), AGG_APPLIED);
    assert_int_equal(shown(e, "s1", AT(3600), "u1", "edge"), AGG_APPLIED); /* not in W */
    assert_int_equal(shown(e, "s2", AT(3601), "u1", "in"), AGG_APPLIED);
    assert_int_equal(responded(e, "r1", AT(3700), "u1", "edge", true), AGG_APPLIED);
    /* completed today, counted for yesterday (the day it was first shown) */
    assert_int_equal(responded(e, "r0", AT(3800), "u1", "old", true), AGG_APPLIED);
    assert_int_equal(hb(e, "h", AT(7200), "u2", "L1", 0), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(find_student(m, "u1")->execution_rate, 0.0); /* only "in", pending */
    assert_figure(m->daily[29]->execution_rate, 50.0);         /* today: edge done, in pending */
    assert_figure(m->daily[28]->execution_rate, 100.0);        /* yesterday: old, done */
    assert_null_figure(m->daily[27]->execution_rate);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_only_enrolled_students_count(void **state)
{
    (void)state;
    agg_engine *e = setup_engine();
    assert_int_equal(enroll(e, "i", AT(0), "ivy", ADDED, INSTRUCTOR), AGG_APPLIED);
    assert_int_equal(enroll(e, "x", AT(0), "gone", ADDED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "y", AT(50), "gone", REMOVED, STUDENT), AGG_APPLIED);
    assert_int_equal(shown(e, "s1", AT(100), "u1", "p"), AGG_APPLIED);
    assert_int_equal(responded(e, "r1", AT(110), "u1", "p", true), AGG_APPLIED);
    assert_int_equal(shown(e, "s2", AT(100), "ivy", "p"), AGG_APPLIED);
    assert_int_equal(shown(e, "s3", AT(100), "gone", "p"), AGG_APPLIED);
    assert_int_equal(shown(e, "s4", AT(100), "stranger", "p"), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(m->execution_rate, 100.0);
    assert_figure(m->daily[29]->execution_rate, 100.0);
    assert_int_equal(m->n_students, 2);
    assert_null(find_student(m, "ivy"));
    assert_null(find_student(m, "gone"));
    assert_null(find_student(m, "stranger"));
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_and_pace),
        cmocka_unit_test(test_first_shown_and_earliest_completion),
        cmocka_unit_test(test_late_prompt_events),
        cmocka_unit_test(test_window_and_series),
        cmocka_unit_test(test_only_enrolled_students_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
