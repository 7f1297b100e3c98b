/*
 * auth.v1.authorize against the real auth binary, nats-server and
 * PostgreSQL: the room rules for each role and room kind, and enrollment
 * and lesson events taking effect at once (kept current from EVENTS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_teststack.h"
#include "rt_time.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x
#define CHANGE(x) UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x

static rt_test_stack *stack;

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK ||
        rt_test_pg_exec(stack->pg,
                        "INSERT INTO realtime.course_members (course_id, user_id, role) VALUES"
                        " ('c1', 'stu-1', 'student'), ('c1', 'teach-1', 'instructor'),"
                        " ('c2', 'stu-2', 'student');"
                        "INSERT INTO realtime.lessons (lesson_id, course_id) VALUES"
                        " ('l1', 'c1'), ('l2', 'c2');"
                        "INSERT INTO realtime.lessons (lesson_id, course_id, deleted) VALUES"
                        " ('gone', 'c1', true);") != RT_OK) {
        fprintf(stderr, "stack: %s\n", rt_error_message());
        return -1;
    }
    if (rt_test_stack_start_auth(stack, NULL) != RT_OK) {
        fprintf(stderr, "auth: %s\n", rt_error_message());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static void expect(const char *user, Unpuzzle__Rt__V1__Role role, const char *room, bool allowed,
                   Unpuzzle__Rt__V1__DenyReason reason)
{
    Unpuzzle__Rt__V1__AuthorizeReply *r = NULL;
    assert_int_equal(rt_test_authorize(&r, stack, user, role, room), RT_OK);
    if (r->allowed != allowed || r->reason != reason)
        fail_msg("%s (%d) -> %s: allowed=%d reason=%d, expected allowed=%d reason=%d", user, role,
                 room, r->allowed, r->reason, allowed, reason);
    unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
}

static void student_joins_own_course_and_lessons(void **state)
{
    (void)state;
    expect("stu-1", ROLE(STUDENT), "course:c1", true, DENY(UNSPECIFIED));
    expect("stu-1", ROLE(STUDENT), "lesson:l1", true, DENY(UNSPECIFIED));
}

static void student_cannot_join_another_course(void **state)
{
    (void)state;
    expect("stu-1", ROLE(STUDENT), "course:c2", false, DENY(NOT_MEMBER));
    expect("stu-1", ROLE(STUDENT), "lesson:l2", false, DENY(NOT_MEMBER));
}

static void lessons_unknown_or_deleted(void **state)
{
    (void)state;
    expect("stu-1", ROLE(STUDENT), "lesson:nope", false, DENY(UNKNOWN_LESSON));
    expect("stu-1", ROLE(STUDENT), "lesson:gone", false, DENY(UNKNOWN_LESSON));
}

static void user_rooms_are_private(void **state)
{
    (void)state;
    expect("stu-1", ROLE(STUDENT), "user:stu-1", true, DENY(UNSPECIFIED));
    expect("stu-1", ROLE(STUDENT), "user:stu-2", false, DENY(NOT_OWNER));
    expect("admin-1", ROLE(ADMIN), "user:stu-2", false, DENY(NOT_OWNER));
}

static void instructor_rooms(void **state)
{
    (void)state;
    expect("teach-1", ROLE(INSTRUCTOR), "instructor:teach-1", true, DENY(UNSPECIFIED));
    expect("teach-1", ROLE(INSTRUCTOR), "instructor:teach-2", false, DENY(NOT_OWNER));
    /* A student may not open an instructor room, not even one with their id. */
    expect("stu-1", ROLE(STUDENT), "instructor:stu-1", false, DENY(NOT_OWNER));
    expect("stu-1", ROLE(STUDENT), "instructor:teach-1", false, DENY(NOT_OWNER));
    expect("admin-1", ROLE(ADMIN), "instructor:teach-1", true, DENY(UNSPECIFIED));
}

static void instructor_of_course(void **state)
{
    (void)state;
    expect("teach-1", ROLE(INSTRUCTOR), "course:c1", true, DENY(UNSPECIFIED));
    expect("teach-1", ROLE(INSTRUCTOR), "lesson:l1", true, DENY(UNSPECIFIED));
    /* Being an instructor on the platform is not teaching this course. */
    expect("teach-1", ROLE(INSTRUCTOR), "course:c2", false, DENY(NOT_MEMBER));
}

static void admins_join_any_course(void **state)
{
    (void)state;
    expect("admin-1", ROLE(ADMIN), "course:c2", true, DENY(UNSPECIFIED));
    expect("admin-1", ROLE(ADMIN), "lesson:l2", true, DENY(UNSPECIFIED));
    expect("admin-1", ROLE(ADMIN), "lesson:nope", false, DENY(UNKNOWN_LESSON));
}

static void bad_room_names(void **state)
{
    (void)state;
    const char *bad[] = {"course",
                         "course:",
                         "class:1",
                         "course:a.b",
                         "course:a b",
                         "course:*",
                         "user:>",
                         "course:12345678901234567890123456789012345678901234567890123456789012345",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect("stu-1", ROLE(STUDENT), bad[i], false, DENY(BAD_ROOM));
}

static void enrollment_change_takes_effect_at_once(void **state)
{
    (void)state;
    int64_t t0 = rt_time_now_ms() / 1000;
    int elapsed = 0;

    /* Denied first, and that denial is cached by auth. */
    expect("new-1", ROLE(STUDENT), "course:c2", false, DENY(NOT_MEMBER));
    expect("new-1", ROLE(STUDENT), "course:c2", false, DENY(NOT_MEMBER));

    assert_int_equal(rt_test_publish_enrollment(stack, "ev-add-1", "c2", "new-1", CHANGE(ADDED),
                                                MEMBER(STUDENT), t0),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "new-1", ROLE(STUDENT), "course:c2", true, 3000, &elapsed));
    print_message("enrollment took effect after %d ms\n", elapsed);
    assert_true(elapsed < 1000);
    expect("new-1", ROLE(STUDENT), "lesson:l2", true, DENY(UNSPECIFIED));

    assert_int_equal(rt_test_publish_enrollment(stack, "ev-rm-1", "c2", "new-1", CHANGE(REMOVED),
                                                MEMBER(STUDENT), t0 + 10),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "new-1", ROLE(STUDENT), "course:c2", false, 3000, &elapsed));
    assert_true(elapsed < 1000);
}

static void older_event_does_not_undo_newer(void **state)
{
    (void)state;
    int64_t t0 = rt_time_now_ms() / 1000;
    char *value = NULL;

    /* Removal at t0+100, then an "added" from t0+50 arrives late. */
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-ooo-rm", "c1", "late-1", CHANGE(REMOVED),
                                                MEMBER(STUDENT), t0 + 100),
                     RT_OK);
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-ooo-add", "c1", "late-1", CHANGE(ADDED),
                                                MEMBER(STUDENT), t0 + 50),
                     RT_OK);
    /* Then a marker event, so we know both were processed. */
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-ooo-mark", "c1", "marker-1",
                                                CHANGE(ADDED), MEMBER(STUDENT), t0),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "marker-1", ROLE(STUDENT), "course:c1", true, 3000, NULL));
    expect("late-1", ROLE(STUDENT), "course:c1", false, DENY(NOT_MEMBER));
    assert_int_equal(rt_test_pg_query_value(&value, stack->pg,
                                            "SELECT status FROM realtime.course_members"
                                            " WHERE course_id = 'c1' AND user_id = 'late-1'"),
                     RT_OK);
    assert_string_equal(value, "removed");
    free(value);
}

static void redelivered_event_is_idempotent(void **state)
{
    (void)state;
    int64_t t0 = rt_time_now_ms() / 1000;
    char *value = NULL;

    /* The same event id twice: JetStream stores it once; and a second event
     * with identical content is an idempotent upsert. */
    for (int i = 0; i < 2; i++)
        assert_int_equal(rt_test_publish_enrollment(stack, "ev-dup", "c2", "dup-1", CHANGE(ADDED),
                                                    MEMBER(STUDENT), t0),
                         RT_OK);
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-dup-2", "c2", "dup-1", CHANGE(ADDED),
                                                MEMBER(STUDENT), t0),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "dup-1", ROLE(STUDENT), "course:c2", true, 3000, NULL));
    assert_int_equal(rt_test_pg_query_value(&value, stack->pg,
                                            "SELECT count(*) FROM realtime.course_members"
                                            " WHERE user_id = 'dup-1'"),
                     RT_OK);
    assert_string_equal(value, "1");
    free(value);
}

static void completed_enrollment_still_joins(void **state)
{
    (void)state;
    int64_t t0 = rt_time_now_ms() / 1000;
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-done", "c2", "grad-1", CHANGE(COMPLETED),
                                                MEMBER(STUDENT), t0),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "grad-1", ROLE(STUDENT), "course:c2", true, 3000, NULL));
}

static void lesson_events_take_effect(void **state)
{
    (void)state;
    int64_t t0 = rt_time_now_ms() / 1000;
    int elapsed = 0;

    expect("stu-1", ROLE(STUDENT), "lesson:l-new", false, DENY(UNKNOWN_LESSON));
    assert_int_equal(rt_test_publish_lesson(stack, "ev-lesson-1", "l-new", "c1", false, t0), RT_OK);
    assert_true(rt_test_wait_authorize(stack, "stu-1", ROLE(STUDENT), "lesson:l-new", true, 3000,
                                       &elapsed));
    assert_true(elapsed < 1000);
    /* Moved to another course: stu-1 loses it. */
    assert_int_equal(rt_test_publish_lesson(stack, "ev-lesson-2", "l-new", "c2", false, t0 + 1),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "stu-1", ROLE(STUDENT), "lesson:l-new", false, 3000, NULL));
    /* Deleted: nobody gets it. */
    assert_int_equal(rt_test_publish_lesson(stack, "ev-lesson-3", "l-new", "c2", true, t0 + 2),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "stu-2", ROLE(STUDENT), "lesson:l-new", false, 3000, NULL));
}

static void invalid_event_is_dropped_not_retried(void **state)
{
    (void)state;
    int64_t t0 = rt_time_now_ms() / 1000;
    int status = 0;
    char *body = NULL;

    /* A room-unsafe course id can never be stored: it is terminated, and
     * the events after it are still processed. */
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-bad", "c.1", "bad-1", CHANGE(ADDED),
                                                MEMBER(STUDENT), t0),
                     RT_OK);
    assert_int_equal(rt_test_publish_enrollment(stack, "ev-after-bad", "c1", "after-1",
                                                CHANGE(ADDED), MEMBER(STUDENT), t0),
                     RT_OK);
    assert_true(
        rt_test_wait_authorize(stack, "after-1", ROLE(STUDENT), "course:c1", true, 3000, NULL));
    assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/metrics", 2000),
                     RT_OK);
    assert_true(rt_test_metric_value(
                    body, "unpuzzle_auth_membership_events_total{result=\"invalid\"}") >= 1);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(student_joins_own_course_and_lessons),
        cmocka_unit_test(student_cannot_join_another_course),
        cmocka_unit_test(lessons_unknown_or_deleted),
        cmocka_unit_test(user_rooms_are_private),
        cmocka_unit_test(instructor_rooms),
        cmocka_unit_test(instructor_of_course),
        cmocka_unit_test(admins_join_any_course),
        cmocka_unit_test(bad_room_names),
        cmocka_unit_test(enrollment_change_takes_effect_at_once),
        cmocka_unit_test(older_event_does_not_undo_newer),
        cmocka_unit_test(redelivered_event_is_idempotent),
        cmocka_unit_test(completed_enrollment_still_joins),
        cmocka_unit_test(lesson_events_take_effect),
        cmocka_unit_test(invalid_event_is_dropped_not_retried),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
