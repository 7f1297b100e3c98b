/*
 * Confusions, struggling topics and response times (spec/analytics.md):
 * open / inWindow / total counts, late creations and late resolutions,
 * topics by (lesson, 30-s bucket) with distinct students, "m:ss" buckets,
 * the resolved flag, top 5 ordered by count desc, lesson asc (bytewise),
 * bucket asc; nearest-rank median and p90 of response times over
 * confusions resolved and questions answered in W; waiting and the oldest
 * waiting; needsHelp from an open confusion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agg_testutil.h"

static void assert_topic(const Unpuzzle__Rt__V1__StrugglingTopic *t, const char *lesson_id,
                         const char *mss, uint32_t bucket, uint32_t students, bool resolved_all)
{
    assert_string_equal(t->lesson_id, lesson_id);
    assert_string_equal(t->timestamp, mss);
    assert_int_equal(t->bucket_start_sec, bucket);
    assert_int_equal(t->student_count, students);
    assert_int_equal(t->resolved, resolved_all);
}

static void test_confusions_topics_response(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    const char *users[] = {"u1", "u2", "u3", "u4", "u5"};
    for (size_t i = 0; i < 5; i++)
        add_student(e, users[i]);

    assert_int_equal(question(e, "q0", AT(1000), "q0", "u3"), AGG_APPLIED);
    /* Created before W = (3600, 7200], resolved in it: a response time. */
    assert_int_equal(confusion(e, "c0", AT(3000), "c0", "u1", "L1", 10), AGG_APPLIED);
    assert_int_equal(resolved(e, "r0", AT(3700), "c0"), AGG_APPLIED);
    assert_int_equal(confusion(e, "c1", AT(4000), "c1", "u1", "L1", 75), AGG_APPLIED);
    assert_int_equal(confusion(e, "c2", AT(4100), "c2", "u2", "L1", 89.9), AGG_APPLIED);
    assert_int_equal(confusion(e, "c3", AT(4200), "c3", "u3", "L1", 3690), AGG_APPLIED);
    assert_int_equal(resolved(e, "r3", AT(4260), "c3"), AGG_APPLIED);
    assert_int_equal(resolved(e, "r1", AT(4300), "c1"), AGG_APPLIED);
    assert_int_equal(confusion(e, "c4", AT(4300), "c4", "u2", "L1", 30), AGG_APPLIED);
    assert_int_equal(confusion(e, "c5", AT(4400), "c5", "u1", "L1", 61), AGG_APPLIED);
    assert_int_equal(resolved(e, "r5", AT(4500), "c5"), AGG_APPLIED);
    assert_int_equal(confusion(e, "c7", AT(4510), "c7", "u4", "L2", 0), AGG_APPLIED);
    assert_int_equal(confusion(e, "c8", AT(4520), "c8", "u4", "L2", 120), AGG_APPLIED);
    assert_int_equal(confusion(e, "c9", AT(4530), "c9", "u4", "L10", 0), AGG_APPLIED);
    assert_int_equal(confusion(e, "c10", AT(4540), "c10", "u5", "L2", -3), AGG_APPLIED);
    /* Resolved before its creation arrives: resolved, never open. */
    assert_int_equal(resolved(e, "r11", AT(4600), "c11"), AGG_APPLIED);
    assert_int_equal(confusion(e, "c11", AT(4590), "c11", "u5", "L3", 0), AGG_APPLIED);
    /* A second creation of the same confusion id changes nothing. */
    assert_int_equal(confusion(e, "c11b", AT(4595), "c11", "u1", "L9", 500), AGG_APPLIED);
    /* Late (200 s and 150 s behind 4600): c4 counts as resolved for `open`
     * but not for its topic or response times; c6 counts in total and open
     * only. */
    assert_int_equal(resolved(e, "r4", AT(4400), "c4"), AGG_APPLIED_LATE);
    assert_int_equal(confusion(e, "c6", AT(4450), "c6", "u2", "L2", 10), AGG_APPLIED_LATE);
    assert_int_equal(question(e, "q1", AT(5000), "q1", "u1"), AGG_APPLIED);
    assert_int_equal(answered(e, "a1", AT(5010), "q1"), AGG_APPLIED);
    assert_int_equal(question(e, "q2", AT(5100), "q2", "u2"), AGG_APPLIED);
    assert_int_equal(answered(e, "a2", AT(5120), "q2"), AGG_APPLIED);
    assert_int_equal(question(e, "q3", AT(5200), "q3", "u4"), AGG_APPLIED);
    assert_int_equal(hb(e, "end", AT(7200), "u1", "L1", 0), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->confusions->total, 12);
    assert_int_equal(m->confusions->open, 6); /* c2 c6 c7 c8 c9 c10 */
    assert_int_equal(m->confusions->in_window, 10);

    assert_int_equal(m->n_struggling_topics, 5);
    assert_topic(m->struggling_topics[0], "L1", "1:00", 60, 2, false); /* u1 twice, u2 */
    assert_topic(m->struggling_topics[1], "L2", "0:00", 0, 2, false);  /* -3 s is 0:00 */
    assert_topic(m->struggling_topics[2], "L1", "0:30", 30, 1, false); /* resolved late */
    assert_topic(m->struggling_topics[3], "L1", "61:30", 3690, 1, true);
    assert_topic(m->struggling_topics[4], "L10", "0:00", 0, 1, false); /* "L10" < "L2" */

    /* c0 700, c1 300, c3 60, c5 100, c11 10, q1 10, q2 20 (s):
     * [10 10 20 60 100 300 700]: median rank 4, p90 rank ceil(6.3) = 7 */
    assert_figure(m->response_time->median_s, 60.0);
    assert_figure(m->response_time->p90_s, 700.0);
    assert_int_equal(m->response_time->waiting, 8);            /* 6 confusions + q0 + q3 */
    assert_figure(m->response_time->oldest_waiting_s, 6200.0); /* q0 at 1000 */

    assert_false(find_student(m, "u1")->needs_help);
    assert_true(find_student(m, "u2")->needs_help);
    assert_false(find_student(m, "u3")->needs_help);
    assert_true(find_student(m, "u4")->needs_help);
    assert_true(find_student(m, "u5")->needs_help);
    assert_int_equal(find_student(m, "u4")->last_active_at->seconds, 1773100800 + 5200);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_even_list_and_empty(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    assert_int_equal(hb(e, "start", AT(0), "u1", "L1", 0), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_null_figure(m->response_time->median_s);
    assert_null_figure(m->response_time->p90_s);
    assert_null_figure(m->response_time->oldest_waiting_s);
    assert_int_equal(m->response_time->waiting, 0);
    assert_int_equal(m->n_struggling_topics, 0);
    assert_int_equal(m->confusions->total, 0);
    agg_metrics_free(m);

    /* Four answers: 10, 20, 30, 40 s -> median 20 (rank 2), p90 40 (rank 4). */
    for (int i = 0; i < 4; i++) {
        char qid[8], aid[8];
        snprintf(qid, sizeof(qid), "q%d", i);
        snprintf(aid, sizeof(aid), "a%d", i);
        assert_int_equal(question(e, qid, AT(100 * i + 100), qid, "u1"), AGG_APPLIED);
        assert_int_equal(answered(e, aid, AT(100 * i + 110 + 10 * i), qid), AGG_APPLIED);
    }
    /* An answer that arrives late does not count, but the question is no
     * longer waiting. */
    assert_int_equal(question(e, "q9", AT(500), "q9", "u1"), AGG_APPLIED);
    assert_int_equal(hb(e, "h", AT(1000), "u1", "L1", 0), AGG_APPLIED);
    assert_int_equal(answered(e, "a9", AT(600), "q9"), AGG_APPLIED_LATE);
    /* resolved=false is reserved for reopening and changes nothing. */
    assert_int_equal(confusion(e, "c1", AT(990), "c1", "u1", "L1", 0), AGG_APPLIED);
    {
        Google__Protobuf__Timestamp ts = ts_ms(AT(995));
        Unpuzzle__Rt__V1__ConfusionResolved r = UNPUZZLE__RT__V1__CONFUSION_RESOLVED__INIT;
        r.event_id = "unresolve";
        r.occurred_at = &ts;
        r.course_id = COURSE;
        r.confusion_id = "c1";
        r.resolved = false;
        assert_int_equal(apply_msg(e, &r), AGG_APPLIED);
    }
    m = metrics(e);
    assert_figure(m->response_time->median_s, 20.0);
    assert_figure(m->response_time->p90_s, 40.0);
    assert_int_equal(m->response_time->waiting, 1); /* c1 */
    assert_figure(m->response_time->oldest_waiting_s, 10.0);
    assert_int_equal(m->confusions->open, 1);
    assert_int_equal(m->n_struggling_topics, 1);
    assert_false(m->struggling_topics[0]->resolved);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confusions_topics_response),
        cmocka_unit_test(test_even_list_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
