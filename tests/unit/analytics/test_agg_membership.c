/*
 * Who is enrolled and how far they are (spec/analytics.md): the latest
 * EnrollmentChanged by event time decides, role included (added or
 * completed = enrolled, removed = not, completed then added = plain
 * enrolled again, ties by arrival); lessons from LessonUpserted (latest
 * wins, deleted removes); completionRate and avgProgress over enrolled
 * students; no lessons and no students give nulls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agg_testutil.h"

static void test_enrollment_rules(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    assert_int_equal(enroll(e, "t1", AT(10), "twice", ADDED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "t2", AT(20), "twice", ADDED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "c1", AT(10), "done", COMPLETED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "r1", AT(10), "removed", ADDED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "r2", AT(20), "removed", REMOVED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "a1", AT(10), "again", COMPLETED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "a2", AT(20), "again", ADDED, STUDENT), AGG_APPLIED);
    /* out of order: the older "added" arrives after the newer "removed" */
    assert_int_equal(enroll(e, "o1", AT(30), "ooo", REMOVED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "o2", AT(25), "ooo", ADDED, STUDENT), AGG_APPLIED);
    /* same time: the later arrival wins */
    assert_int_equal(enroll(e, "s1", AT(40), "tie", ADDED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "s2", AT(40), "tie", REMOVED, STUDENT), AGG_APPLIED);
    /* role included: now an instructor of the course, not a student */
    assert_int_equal(enroll(e, "p1", AT(10), "promoted", ADDED, STUDENT), AGG_APPLIED);
    assert_int_equal(enroll(e, "p2", AT(50), "promoted", ADDED, INSTRUCTOR), AGG_APPLIED);
    assert_int_equal(enroll(e, "i1", AT(10), "ivy", ADDED, INSTRUCTOR), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->enrolled_students, 3);
    assert_int_equal(m->n_students, 3);
    /* listed by user id */
    assert_string_equal(m->students[0]->user_id, "again");
    assert_string_equal(m->students[1]->user_id, "done");
    assert_string_equal(m->students[2]->user_id, "twice");
    /* no lessons: a completed enrollment is 100, others have no progress */
    assert_null_figure(m->students[0]->progress);
    assert_figure(m->students[1]->progress, 100.0);
    assert_null_figure(m->students[2]->progress);
    assert_figure(m->completion_rate, 33.333); /* "done" of 3 */
    assert_figure(m->avg_progress, 100.0);     /* only "done" has a value */
    /* nothing watched, shown or asked */
    assert_null_figure(m->learn_rate);
    assert_string_equal(m->learn_rate_band, "");
    assert_null_figure(m->execution_rate);
    assert_null_figure(m->execution_pace_s);
    assert_null(m->students[0]->last_active_at);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

typedef struct names {
    char list[256];
} names;

static void note_name(void *arg, const char *user_id)
{
    names *n = arg;
    strncat(n->list, user_id, sizeof(n->list) - strlen(n->list) - 2);
    strcat(n->list, " ");
}

static void test_instructors(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    assert_int_equal(enroll(e, "a", AT(0), "ivy", ADDED, INSTRUCTOR), AGG_APPLIED);
    assert_int_equal(enroll(e, "b", AT(0), "ian", ADDED, INSTRUCTOR), AGG_APPLIED);
    assert_int_equal(enroll(e, "c", AT(5), "ian", REMOVED, INSTRUCTOR), AGG_APPLIED);
    assert_int_equal(enroll(e, "d", AT(0), "u1", ADDED, STUDENT), AGG_APPLIED);
    names n = {""};
    agg_engine_each_instructor(e, COURSE, note_name, &n);
    assert_string_equal(n.list, "ivy ");
    n.list[0] = 0;
    agg_engine_each_instructor(e, "other", note_name, &n);
    assert_string_equal(n.list, "");
    agg_engine_destroy(e);
}

static void test_lessons_and_progress(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    const char *users[] = {"a", "b", "c", "d", "f"};
    for (size_t i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "e-%s", users[i]);
        assert_int_equal(
            enroll(e, id, AT(0), users[i], strcmp(users[i], "c") ? ADDED : COMPLETED, STUDENT),
            AGG_APPLIED);
    }
    assert_int_equal(lesson(e, "l1", AT(1), "L1", false), AGG_APPLIED);
    assert_int_equal(lesson(e, "l2", AT(1), "L2", false), AGG_APPLIED);
    assert_int_equal(lesson(e, "l3", AT(1), "L3", false), AGG_APPLIED);
    assert_int_equal(lesson(e, "l3d", AT(90), "L3", true), AGG_APPLIED); /* deleted */
    assert_int_equal(lesson(e, "l4d", AT(100), "L4", true), AGG_APPLIED);
    /* an older upsert arriving after the deletion does not bring L4 back */
    assert_int_equal(lesson(e, "l4", AT(50), "L4", false), AGG_APPLIED);
    assert_int_equal(completed(e, "ca1", AT(100), "a", "L1"), AGG_APPLIED);
    assert_int_equal(completed(e, "ca2", AT(100), "a", "L2"), AGG_APPLIED);
    assert_int_equal(completed(e, "ca3", AT(100), "a", "L2"), AGG_APPLIED); /* again: once */
    assert_int_equal(completed(e, "cb1", AT(100), "b", "L1"), AGG_APPLIED);
    assert_int_equal(completed(e, "cb3", AT(100), "b", "L3"), AGG_APPLIED); /* deleted lesson */
    assert_int_equal(completed(e, "cb4", AT(100), "b", "L4"), AGG_APPLIED); /* deleted lesson */
    assert_int_equal(hb(e, "h", AT(1000), "d", "L1", 0), AGG_APPLIED);
    /* late, and still counted: completion is all-time state */
    assert_int_equal(completed(e, "cf1", AT(200), "f", "L1"), AGG_APPLIED_LATE);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_figure(find_student(m, "a")->progress, 100.0);
    assert_figure(find_student(m, "b")->progress, 50.0);
    assert_figure(find_student(m, "c")->progress, 100.0); /* completed enrollment */
    assert_figure(find_student(m, "d")->progress, 0.0);
    assert_figure(find_student(m, "f")->progress, 50.0);
    assert_figure(m->completion_rate, 40.0); /* a (every lesson) and c (enrollment) of 5 */
    assert_figure(m->avg_progress, 60.0);    /* (100 + 50 + 100 + 0 + 50) / 5 */
    agg_metrics_free(m);

    /* A third lesson: progress in thirds, the mean exact before rounding. */
    assert_int_equal(lesson(e, "l5", AT(1000), "L5", false), AGG_APPLIED);
    m = metrics(e);
    assert_figure(find_student(m, "a")->progress, 66.667);
    assert_figure(find_student(m, "b")->progress, 33.333);
    assert_figure(m->completion_rate, 20.0);
    /* (2 + 1 + 3 + 0 + 1) / (3 x 5) = 7/15 -> 46.667 */
    assert_figure(m->avg_progress, 46.667);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_no_students(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    assert_int_equal(lesson(e, "l1", AT(1), "L1", false), AGG_APPLIED);
    assert_int_equal(hb(e, "h1", AT(10), "x", "L1", 0), AGG_APPLIED);
    assert_int_equal(hb(e, "h2", AT(20), "x", "L1", 10), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->enrolled_students, 0);
    assert_int_equal(m->n_students, 0);
    assert_null_figure(m->completion_rate);
    assert_null_figure(m->avg_progress);
    assert_null_figure(m->learn_rate); /* x is not enrolled */
    assert_null_figure(m->daily[29]->learn_rate);
    assert_string_equal(m->course_id, COURSE);
    assert_int_equal(m->window_s, 3600);
    assert_int_equal(m->end->seconds, 1773100800 + 20);
    agg_metrics_free(m);

    Unpuzzle__Rt__V1__CourseMetrics *none = NULL;
    assert_int_equal(agg_engine_compute(&none, e, "no-such-course", g_wall_ms, NULL),
                     RT_ERR_NOT_FOUND);
    assert_null(none);
    agg_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrollment_rules),
        cmocka_unit_test(test_instructors),
        cmocka_unit_test(test_lessons_and_progress),
        cmocka_unit_test(test_no_students),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
