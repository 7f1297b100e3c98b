/*
 * activeStudents ("who is watching"): presence from ws-edge's
 * PresenceUpdate, each update replacing its edge's list, kept for 3 x the
 * edge's interval; listed per course, students enrolled at end only, one
 * line per student (the entry present the longest), by user id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "agg_presence.h"
#include "agg_testutil.h"
#include "rt_alloc.h"

typedef struct entry_spec {
    const char *user, *course, *lesson;
    int64_t since_s; /* seconds after T0; 0 = unknown */
} entry_spec;

static void push(agg_presence *p, const char *edge, uint32_t interval_ms, int64_t received_ms,
                 const entry_spec *specs, size_t n)
{
    Unpuzzle__Rt__V1__PresenceUpdate u = UNPUZZLE__RT__V1__PRESENCE_UPDATE__INIT;
    Unpuzzle__Rt__V1__PresenceEntry entries[8], *ptrs[8];
    Google__Protobuf__Timestamp since[8];
    assert_true(n <= 8);
    u.edge_id = (char *)edge;
    u.interval_ms = interval_ms;
    u.n_entries = n;
    u.entries = ptrs;
    for (size_t i = 0; i < n; i++) {
        unpuzzle__rt__v1__presence_entry__init(&entries[i]);
        entries[i].user_id = (char *)specs[i].user;
        entries[i].course_id = (char *)specs[i].course;
        entries[i].lesson_id = (char *)specs[i].lesson;
        if (specs[i].since_s) {
            since[i] = ts_ms(AT(specs[i].since_s));
            entries[i].since = &since[i];
        }
        ptrs[i] = &entries[i];
    }
    assert_int_equal(agg_presence_apply(p, &u, received_ms), RT_OK);
}

static Unpuzzle__Rt__V1__CourseMetrics *metrics_at(agg_engine *e, const agg_presence *p,
                                                   int64_t now_ms)
{
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    assert_int_equal(agg_engine_compute(&m, e, COURSE, now_ms, p), RT_OK);
    return m;
}

static void assert_active(const Unpuzzle__Rt__V1__ActiveStudent *a, const char *user,
                          const char *lesson_id, int64_t since_s)
{
    assert_string_equal(a->user_id, user);
    assert_string_equal(a->lesson_id, lesson_id);
    if (since_s) {
        assert_non_null(a->since);
        assert_int_equal(a->since->seconds, 1773100800 + since_s);
    } else {
        assert_null(a->since);
    }
}

static void test_who_is_watching(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    agg_presence *p = NULL;
    assert_int_equal(agg_presence_create(&p), RT_OK);
    add_student(e, "u1");
    add_student(e, "u2");
    add_student(e, "u3");
    assert_int_equal(enroll(e, "i", AT(0), "ivy", ADDED, INSTRUCTOR), AGG_APPLIED);

    const entry_spec edge1[] = {
        {"u1", "c1", "L1", 100}, {"ivy", "c1", "L1", 10},    {"stranger", "c1", "L1", 10},
        {"u2", "c2", "L9", 10},  {"bad id!", "c1", "L1", 1}, {"u3", "c1", "", 0},
    };
    const entry_spec edge2[] = {{"u1", "c1", "L2", 50}, {"u2", "c1", "L3", 200}};
    push(p, "edge-1", 10000, AT(1000), edge1, 6);
    push(p, "edge-2", 1000, AT(1000), edge2, 2);
    assert_int_equal(agg_presence_edge_count(p), 2);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics_at(e, p, AT(1002));
    assert_int_equal(m->active_student_count, 3);
    assert_int_equal(m->n_active_students, 3);
    assert_active(m->active_students[0], "u1", "L2", 50); /* the earlier `since` of two */
    assert_active(m->active_students[1], "u2", "L3", 200);
    assert_active(m->active_students[2], "u3", "", 0);
    agg_metrics_free(m);

    /* edge-2 said nothing for 3 x 1 s: its users drop out by themselves */
    m = metrics_at(e, p, AT(1003));
    assert_int_equal(m->active_student_count, 2);
    assert_active(m->active_students[0], "u1", "L1", 100);
    agg_metrics_free(m);
    agg_presence_expire(p, AT(1003));
    assert_int_equal(agg_presence_edge_count(p), 1);

    /* a new update replaces the edge's whole list */
    const entry_spec edge1b[] = {{"u2", "c1", "L1", 900}};
    push(p, "edge-1", 10000, AT(1005), edge1b, 1);
    m = metrics_at(e, p, AT(1006));
    assert_int_equal(m->active_student_count, 1);
    assert_active(m->active_students[0], "u2", "L1", 900);
    agg_metrics_free(m);

    /* an empty list forgets the edge */
    push(p, "edge-1", 10000, AT(1007), NULL, 0);
    assert_int_equal(agg_presence_edge_count(p), 0);
    m = metrics_at(e, p, AT(1008));
    assert_int_equal(m->active_student_count, 0);
    agg_metrics_free(m);
    m = metrics_at(e, NULL, AT(1008));
    assert_int_equal(m->active_student_count, 0);
    agg_metrics_free(m);

    Unpuzzle__Rt__V1__PresenceUpdate bad = UNPUZZLE__RT__V1__PRESENCE_UPDATE__INIT;
    bad.edge_id = "no.dots";
    assert_int_equal(agg_presence_apply(p, &bad, AT(0)), RT_ERR_INVALID_ARG);
    agg_presence_destroy(p);
    agg_presence_destroy(NULL);
    agg_engine_destroy(e);
}

static void test_many_edges_and_courses(void **state)
{
    (void)state;
    agg_presence *p = NULL;
    assert_int_equal(agg_presence_create(&p), RT_OK);
    /* Edges come and go in any order; the index stays consistent. */
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 20; k++) {
            char edge[16], course[16];
            snprintf(edge, sizeof(edge), "edge-%d", k);
            snprintf(course, sizeof(course), "c%d", (k + round) % 4);
            const entry_spec specs[] = {{"u1", course, "L1", 1}, {"u2", "c1", "L1", 2}};
            push(p, edge, 1000, AT(round * 10), specs, 2);
        }
    }
    agg_presence_expire(p, AT(22)); /* the last round expires at 23 s */
    assert_int_equal(agg_presence_edge_count(p), 20);
    agg_presence_expire(p, AT(23));
    assert_int_equal(agg_presence_edge_count(p), 0);
    agg_presence_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_who_is_watching),
        cmocka_unit_test(test_many_edges_and_courses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
