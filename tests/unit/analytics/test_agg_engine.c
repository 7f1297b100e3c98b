/*
 * agg_engine's contract around the figures: what apply() does with each
 * event (invalid, not a course's, duplicate by event_id, too far in the
 * future in wall mode, late, on time), the course clock `end` in wall and
 * event mode, lateness as a parameter, courses independent of each other,
 * the bookkeeping calls (info, each, drop, stats) and config checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agg_events.h"
#include "agg_testutil.h"

static void test_invalid_events(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    agg_outcome out = AGG_APPLIED;
    Google__Protobuf__Timestamp ts = ts_ms(AT(0));

    Unpuzzle__Rt__V1__ProgressUpdated p = UNPUZZLE__RT__V1__PROGRESS_UPDATED__INIT;
    p.occurred_at = &ts;
    p.course_id = "c1";
    p.lesson_id = "L1";
    p.user_id = "u1";
    assert_int_equal(agg_engine_apply(&out, e, &p.base, NULL), RT_ERR_INVALID_ARG); /* no id */
    assert_int_equal(out, AGG_INVALID);
    assert_non_null(strstr(rt_error_message(), "event_id"));
    p.event_id = "e1";
    p.user_id = "bad user";
    assert_int_equal(agg_engine_apply(&out, e, &p.base, NULL), RT_ERR_INVALID_ARG);
    assert_non_null(strstr(rt_error_message(), "user_id"));
    p.user_id = "u1";
    p.position_sec = NAN;
    assert_int_equal(agg_engine_apply(&out, e, &p.base, NULL), RT_ERR_INVALID_ARG);
    assert_non_null(strstr(rt_error_message(), "position_sec"));
    p.position_sec = 1;
    p.occurred_at = NULL;
    assert_int_equal(agg_engine_apply(&out, e, &p.base, NULL), RT_ERR_INVALID_ARG);
    assert_non_null(strstr(rt_error_message(), "occurred_at"));
    p.occurred_at = &ts;
    p.course_id = "";
    assert_int_equal(agg_engine_apply(&out, e, &p.base, NULL), RT_ERR_INVALID_ARG);
    assert_non_null(strstr(rt_error_message(), "course_id"));

    Unpuzzle__Rt__V1__PurchaseCompleted pc = UNPUZZLE__RT__V1__PURCHASE_COMPLETED__INIT;
    pc.event_id = "e2";
    pc.occurred_at = &ts;
    pc.course_id = "c1";
    pc.purchase_id = "p1";
    pc.user_id = "u1";
    pc.currency = "usd";
    assert_int_equal(agg_engine_apply(&out, e, &pc.base, NULL), RT_ERR_INVALID_ARG);
    assert_non_null(strstr(rt_error_message(), "currency"));

    assert_int_equal(enroll(e, "e3", AT(0), "u1",
                            UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_UNSPECIFIED,
                            STUDENT),
                     AGG_INVALID);

    /* Not an event at all. */
    Unpuzzle__Rt__V1__SnapshotRequest sr = UNPUZZLE__RT__V1__SNAPSHOT_REQUEST__INIT;
    assert_int_equal(agg_engine_apply(&out, e, &sr.base, NULL), RT_ERR_INVALID_ARG);

    /* Notifications are on EVENTS but no course's. */
    Unpuzzle__Rt__V1__NotificationsRead nr = UNPUZZLE__RT__V1__NOTIFICATIONS_READ__INIT;
    nr.event_id = "n1";
    nr.occurred_at = &ts;
    nr.user_id = "u1";
    assert_int_equal(agg_engine_apply(&out, e, &nr.base, NULL), RT_OK);
    assert_int_equal(out, AGG_IGNORED);

    agg_engine_stats st;
    agg_engine_stats_get(&st, e);
    assert_int_equal(st.invalid, 8);
    assert_int_equal(st.ignored, 1);
    assert_int_equal(st.applied, 0);
    assert_int_equal(agg_engine_course_count(e), 0);
    agg_engine_destroy(e);
}

static void test_subjects(void **state)
{
    (void)state;
    assert_ptr_equal(agg_event_descriptor("evt.v1.progress.updated"),
                     &unpuzzle__rt__v1__progress_updated__descriptor);
    assert_ptr_equal(agg_event_descriptor("evt.v1.notification.read"),
                     &unpuzzle__rt__v1__notifications_read__descriptor);
    assert_ptr_equal(agg_event_descriptor("evt.v1.enrollment.changed"),
                     &unpuzzle__rt__v1__enrollment_changed__descriptor);
    assert_null(agg_event_descriptor("evt.v1.nope"));
    assert_null(agg_event_descriptor(NULL));
    assert_string_equal(agg_event_kind_name(AGG_EVENT_PURCHASE_COMPLETED), "purchase.completed");
    assert_string_equal(agg_outcome_name(AGG_APPLIED_LATE), "late");
    assert_string_equal(agg_outcome_name(AGG_REJECTED_FUTURE), "future");
}

static void test_duplicates_first_wins(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    add_student(e, "u1");
    assert_int_equal(hb(e, "a", AT(0), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(15), "u1", "L1", 15), AGG_APPLIED);
    /* the same event_id with other content: dropped before anything else */
    assert_int_equal(hb(e, "b", AT(15), "u1", "L1", 999), AGG_DUPLICATE);
    assert_int_equal(hb(e, "b", AT(99999), "u1", "L1", 999), AGG_DUPLICATE);
    assert_int_equal(hb(e, "c", AT(30), "u1", "L1", 30), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(find_student(m, "u1")->learn_rate, 60.0);
    assert_int_equal(m->end->seconds, 1773100800 + 30); /* the duplicate moved nothing */
    agg_metrics_free(m);
    agg_course_info info;
    assert_int_equal(agg_engine_course_info(&info, e, COURSE), RT_OK);
    assert_int_equal(info.changes, 4); /* enrollment + 3 heartbeats */
    agg_engine_stats st;
    agg_engine_stats_get(&st, e);
    assert_int_equal(st.duplicates, 2);
    agg_engine_destroy(e);
}

static void test_wall_clock_end_and_future(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_WALL, 3600, 120);
    g_wall_ms = AT(1000);
    /* 300 s ahead of the wall clock is accepted, 301 s is not */
    assert_int_equal(hb(e, "a", AT(1300), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(1301), "u1", "L1", 1), AGG_REJECTED_FUTURE);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->end->seconds, 1773100800 + 1300); /* latest > wall - lateness */
    agg_metrics_free(m);
    /* a rejected event is not remembered: retried later, it counts */
    g_wall_ms = AT(1100);
    assert_int_equal(hb(e, "b", AT(1301), "u1", "L1", 1), AGG_APPLIED);
    g_wall_ms = AT(5000);
    m = metrics(e);
    assert_int_equal(m->end->seconds, 1773100800 + 4880); /* wall - 120 s */
    agg_metrics_free(m);
    agg_engine_stats st;
    agg_engine_stats_get(&st, e);
    assert_int_equal(st.future, 1);
    /* wall mode needs the arrival time */
    agg_outcome out;
    Google__Protobuf__Timestamp ts = ts_ms(AT(0));
    Unpuzzle__Rt__V1__QuizSubmitted q = UNPUZZLE__RT__V1__QUIZ_SUBMITTED__INIT;
    q.event_id = "q";
    q.occurred_at = &ts;
    q.course_id = COURSE;
    assert_int_equal(agg_engine_apply(&out, e, &q.base, NULL), RT_ERR_INVALID_ARG);
    g_wall_ms = T0_MS;
    agg_engine_destroy(e);
}

static void test_event_clock_ignores_wall(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    g_wall_ms = AT(-DAY(365)); /* far behind: nothing is "in the future" */
    Google__Protobuf__Timestamp ts = ts_ms(AT(500));
    Unpuzzle__Rt__V1__QuizSubmitted q = UNPUZZLE__RT__V1__QUIZ_SUBMITTED__INIT;
    q.event_id = "q";
    q.occurred_at = &ts;
    q.course_id = COURSE;
    /* an event no figure uses still moves the course's clock */
    assert_int_equal(apply_msg(e, &q), AGG_APPLIED);
    g_wall_ms = AT(DAY(365));
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->end->seconds, 1773100800 + 500);
    agg_metrics_free(m);
    g_wall_ms = T0_MS;
    agg_engine_destroy(e);
}

static void test_lateness_parameter(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 600, 10);
    assert_int_equal(hb(e, "a", AT(100), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "b", AT(90), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "c", AT(89), "u1", "L1", 0), AGG_APPLIED_LATE);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->window_s, 600);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

typedef struct seen_courses {
    int n;
    bool c1, c2;
} seen_courses;

static void note_course(void *arg, const char *course_id)
{
    seen_courses *s = arg;
    s->n++;
    s->c1 |= strcmp(course_id, "c1") == 0;
    s->c2 |= strcmp(course_id, "c2") == 0;
}

static void test_courses_are_independent(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    g_course = "c1";
    add_student(e, "u1");
    assert_int_equal(hb(e, "a", AT(0), "u1", "L1", 0), AGG_APPLIED);
    g_course = "c2";
    /* c2 is far ahead: that makes nothing of c1 late */
    assert_int_equal(hb(e, "a", AT(DAY(5)), "u1", "L1", 0),
                     AGG_APPLIED); /* same id, other course */
    g_course = "c1";
    assert_int_equal(hb(e, "b", AT(15), "u1", "L1", 15), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->end->seconds, 1773100800 + 15);
    assert_figure(m->learn_rate, 60.0);
    agg_metrics_free(m);

    seen_courses s = {0};
    agg_engine_each_course(e, note_course, &s);
    assert_int_equal(s.n, 2);
    assert_true(s.c1 && s.c2);
    agg_course_info info;
    assert_int_equal(agg_engine_course_info(&info, e, "c2"), RT_OK);
    assert_true(info.latest_ns == (AT(DAY(5))) * 1000000);
    agg_engine_drop_course(e, "c2");
    agg_engine_drop_course(e, "c2");
    assert_int_equal(agg_engine_course_count(e), 1);
    assert_int_equal(agg_engine_course_info(&info, e, "c2"), RT_ERR_NOT_FOUND);
    g_course = COURSE;
    agg_engine_destroy(e);
}

static void test_stream_sequence(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    Google__Protobuf__Timestamp ts = ts_ms(AT(0));
    Unpuzzle__Rt__V1__CourseUpdated cu = UNPUZZLE__RT__V1__COURSE_UPDATED__INIT;
    agg_outcome out;
    agg_arrival arrival = {0, 41};
    cu.event_id = "x";
    cu.occurred_at = &ts;
    cu.course_id = COURSE;
    assert_int_equal(agg_engine_apply(&out, e, &cu.base, &arrival), RT_OK);
    arrival.stream_seq = 7;
    cu.event_id = "y";
    assert_int_equal(agg_engine_apply(&out, e, &cu.base, &arrival), RT_OK);
    agg_course_info info;
    assert_int_equal(agg_engine_course_info(&info, e, COURSE), RT_OK);
    assert_int_equal(info.stream_seq, 41);
    assert_int_equal(info.changes, 2);
    agg_engine_destroy(e);
}

static void test_config_checks(void **state)
{
    (void)state;
    agg_config cfg;
    agg_engine *e = NULL;
    agg_config_defaults(&cfg);
    assert_int_equal(cfg.window_s, 3600);
    assert_int_equal(cfg.lateness_s, 120);
    assert_int_equal(cfg.future_s, 300);
    assert_int_equal(cfg.clock, AGG_CLOCK_WALL);
    cfg.window_s = 0;
    assert_int_equal(agg_engine_create(&e, &cfg), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_error_message(), "window_s"));
    agg_config_defaults(&cfg);
    cfg.lateness_s = -1;
    assert_int_equal(agg_engine_create(&e, &cfg), RT_ERR_CONFIG);
    agg_config_defaults(&cfg);
    cfg.retention_s = 3600;
    assert_int_equal(agg_engine_create(&e, &cfg), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_error_message(), "retention_s"));
    agg_config_defaults(&cfg);
    cfg.clock = (agg_clock_mode)7;
    assert_int_equal(agg_engine_create(&e, &cfg), RT_ERR_CONFIG);
    assert_null(e);
    agg_engine_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_duplicates_first_wins),
        cmocka_unit_test(test_wall_clock_end_and_future),
        cmocka_unit_test(test_event_clock_ignores_wall),
        cmocka_unit_test(test_lateness_parameter),
        cmocka_unit_test(test_courses_are_independent),
        cmocka_unit_test(test_stream_sequence),
        cmocka_unit_test(test_config_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
