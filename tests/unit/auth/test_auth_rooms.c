/*
 * auth_rooms: the full join decision table (every room kind x platform
 * role x membership), over a small in-memory membership source. A source
 * that cannot answer always yields a deny with reason unavailable, never
 * an allow; bad room names and invalid user ids are refused before any
 * query.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth_rooms.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x
#define ALLOW DENY(UNSPECIFIED)

/* ---- fake membership source ---- */

typedef struct fake_member {
    const char *course, *user;
    auth_member_role role;
} fake_member;

typedef struct fake_lesson {
    const char *lesson, *course;
    bool deleted;
} fake_lesson;

static const fake_member members[] = {
    {"c1", "stu", MEMBER(STUDENT)},
    {"c1", "ins", MEMBER(INSTRUCTOR)},
    /* A student on the platform who teaches one course (a TA). */
    {"c3", "stu", MEMBER(INSTRUCTOR)},
};

static const fake_lesson lessons[] = {
    {"l1", "c1", false},
    {"l2", "c2", false},
    {"l3", "c3", false},
    {"gone", "c1", true},
};

typedef struct fake_source {
    bool members_down, lessons_down;
    bool lie_on_failure; /* a broken source that fills *out and fails */
    int member_calls, lesson_calls;
} fake_source;

static rt_status fake_member_role(auth_member_role *out, void *ctx, const char *course_id,
                                  const char *user_id)
{
    fake_source *f = ctx;
    f->member_calls++;
    if (f->members_down) {
        if (f->lie_on_failure)
            *out = MEMBER(INSTRUCTOR);
        return RT_ERR(RT_ERR_UNAVAILABLE, "fake: members down");
    }
    *out = MEMBER(UNSPECIFIED);
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
        if (strcmp(members[i].course, course_id) == 0 && strcmp(members[i].user, user_id) == 0)
            *out = members[i].role;
    return RT_OK;
}

static rt_status fake_lesson_course(char out_course_id[RT_ID_MAX + 1], bool *found, void *ctx,
                                    const char *lesson_id)
{
    fake_source *f = ctx;
    f->lesson_calls++;
    if (f->lessons_down) {
        if (f->lie_on_failure) {
            snprintf(out_course_id, RT_ID_MAX + 1, "c1");
            *found = true;
        }
        return RT_ERR(RT_ERR_PG, "fake: lessons down");
    }
    *found = false;
    for (size_t i = 0; i < sizeof(lessons) / sizeof(lessons[0]); i++)
        if (strcmp(lessons[i].lesson, lesson_id) == 0 && !lessons[i].deleted) {
            snprintf(out_course_id, RT_ID_MAX + 1, "%s", lessons[i].course);
            *found = true;
        }
    return RT_OK;
}

static auth_membership_source make_source(fake_source *f)
{
    memset(f, 0, sizeof(*f));
    return (auth_membership_source){fake_member_role, fake_lesson_course, f};
}

static const char *role_name(auth_role role)
{
    switch (role) {
    case ROLE(STUDENT):
        return "student";
    case ROLE(INSTRUCTOR):
        return "instructor";
    case ROLE(ADMIN):
        return "admin";
    default:
        return "unspecified";
    }
}

typedef struct decision_case {
    const char *user;
    auth_role role;
    const char *room;
    auth_deny_reason expected; /* ALLOW or a deny reason */
} decision_case;

static void run_cases(const auth_membership_source *source, const decision_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const decision_case *c = &cases[i];
        auth_decision d = auth_rooms_decide(source, c->user, c->role, c->room);
        bool want_allowed = c->expected == ALLOW;
        if (d.allowed != want_allowed || d.reason != c->expected)
            fail_msg("%s (%s) -> %s: got %s/%s, want %s", c->user, role_name(c->role), c->room,
                     d.allowed ? "allow" : "deny", auth_deny_reason_name(d.reason),
                     auth_deny_reason_name(c->expected));
    }
}

/* ---- tests ---- */

static void test_course_rooms(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);
    static const decision_case cases[] = {
        /* Members of c1 (either member role) may join; admins always. */
        {"stu", ROLE(STUDENT), "course:c1", ALLOW},
        {"ins", ROLE(INSTRUCTOR), "course:c1", ALLOW},
        {"adm", ROLE(ADMIN), "course:c1", ALLOW},
        {"out", ROLE(STUDENT), "course:c1", DENY(NOT_MEMBER)},
        {"out", ROLE(INSTRUCTOR), "course:c1", DENY(NOT_MEMBER)},
        {"out", ROLE(UNSPECIFIED), "course:c1", DENY(NOT_MEMBER)},
        /* The platform role alone does not make an instructor a member. */
        {"stu", ROLE(STUDENT), "course:c2", DENY(NOT_MEMBER)},
        {"ins", ROLE(INSTRUCTOR), "course:c2", DENY(NOT_MEMBER)},
        {"adm", ROLE(ADMIN), "course:c2", ALLOW},
        /* Membership is what counts, not the platform role. */
        {"stu", ROLE(STUDENT), "course:c3", ALLOW},
        {"stu", ROLE(INSTRUCTOR), "course:c3", ALLOW},
        {"ins", ROLE(INSTRUCTOR), "course:c3", DENY(NOT_MEMBER)},
        /* A course nobody knows is just a course with no members. */
        {"stu", ROLE(STUDENT), "course:nope", DENY(NOT_MEMBER)},
        {"adm", ROLE(ADMIN), "course:nope", ALLOW},
    };
    run_cases(&src, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_lesson_rooms(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);
    static const decision_case cases[] = {
        {"stu", ROLE(STUDENT), "lesson:l1", ALLOW},
        {"ins", ROLE(INSTRUCTOR), "lesson:l1", ALLOW},
        {"adm", ROLE(ADMIN), "lesson:l1", ALLOW},
        {"out", ROLE(STUDENT), "lesson:l1", DENY(NOT_MEMBER)},
        {"stu", ROLE(STUDENT), "lesson:l2", DENY(NOT_MEMBER)},
        {"ins", ROLE(INSTRUCTOR), "lesson:l2", DENY(NOT_MEMBER)},
        {"adm", ROLE(ADMIN), "lesson:l2", ALLOW},
        {"stu", ROLE(STUDENT), "lesson:l3", ALLOW},
        {"ins", ROLE(INSTRUCTOR), "lesson:l3", DENY(NOT_MEMBER)},
        /* Unknown and deleted lessons are refused for everyone. */
        {"stu", ROLE(STUDENT), "lesson:nope", DENY(UNKNOWN_LESSON)},
        {"ins", ROLE(INSTRUCTOR), "lesson:nope", DENY(UNKNOWN_LESSON)},
        {"adm", ROLE(ADMIN), "lesson:nope", DENY(UNKNOWN_LESSON)},
        {"stu", ROLE(STUDENT), "lesson:gone", DENY(UNKNOWN_LESSON)},
        {"ins", ROLE(INSTRUCTOR), "lesson:gone", DENY(UNKNOWN_LESSON)},
        {"adm", ROLE(ADMIN), "lesson:gone", DENY(UNKNOWN_LESSON)},
    };
    run_cases(&src, cases, sizeof(cases) / sizeof(cases[0]));
    /* The lesson's course, not the lesson id, is what membership is asked about. */
    f.member_calls = 0;
    auth_decision d = auth_rooms_decide(&src, "stu", ROLE(STUDENT), "lesson:l1");
    assert_true(d.allowed);
    assert_int_equal(f.member_calls, 1);
    /* The decision names the course (ws-edge's presence), for admins too. */
    assert_string_equal(d.course_id, "c1");
    assert_int_equal(d.member_role, MEMBER(STUDENT));
    assert_int_equal(auth_rooms_decide(&src, "stu", ROLE(STUDENT), "course:c3").member_role,
                     MEMBER(INSTRUCTOR));
    assert_string_equal(auth_rooms_decide(&src, "adm", ROLE(ADMIN), "lesson:l2").course_id, "c2");
    assert_string_equal(auth_rooms_decide(&src, "stu", ROLE(STUDENT), "course:c1").course_id, "c1");
    assert_string_equal(auth_rooms_decide(&src, "stu", ROLE(STUDENT), "user:stu").course_id, "");
    assert_string_equal(auth_rooms_decide(&src, "stu", ROLE(STUDENT), "course:c2").course_id, "");
}

static void test_user_rooms(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);
    static const decision_case cases[] = {
        /* Only the user themself, whatever their role; admins included. */
        {"stu", ROLE(STUDENT), "user:stu", ALLOW},
        {"ins", ROLE(INSTRUCTOR), "user:ins", ALLOW},
        {"adm", ROLE(ADMIN), "user:adm", ALLOW},
        {"out", ROLE(UNSPECIFIED), "user:out", ALLOW},
        {"ins", ROLE(INSTRUCTOR), "user:stu", DENY(NOT_OWNER)},
        {"adm", ROLE(ADMIN), "user:stu", DENY(NOT_OWNER)},
        {"stu", ROLE(STUDENT), "user:ins", DENY(NOT_OWNER)},
        /* Ids are compared exactly: no prefix or case folding. */
        {"stu", ROLE(STUDENT), "user:stu2", DENY(NOT_OWNER)},
        {"stu2", ROLE(STUDENT), "user:stu", DENY(NOT_OWNER)},
        {"stu", ROLE(STUDENT), "user:STU", DENY(NOT_OWNER)},
    };
    run_cases(&src, cases, sizeof(cases) / sizeof(cases[0]));
    /* No query is needed for these rooms. */
    assert_int_equal(f.member_calls + f.lesson_calls, 0);
}

static void test_instructor_rooms(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);
    static const decision_case cases[] = {
        {"ins", ROLE(INSTRUCTOR), "instructor:ins", ALLOW},
        /* Their own room, but not an instructor on the platform. */
        {"ins", ROLE(STUDENT), "instructor:ins", DENY(NOT_OWNER)},
        {"ins", ROLE(UNSPECIFIED), "instructor:ins", DENY(NOT_OWNER)},
        {"stu", ROLE(STUDENT), "instructor:stu", DENY(NOT_OWNER)},
        /* Another instructor's room. */
        {"ins2", ROLE(INSTRUCTOR), "instructor:ins", DENY(NOT_OWNER)},
        {"stu", ROLE(STUDENT), "instructor:ins", DENY(NOT_OWNER)},
        /* Admins: their own and any other. */
        {"adm", ROLE(ADMIN), "instructor:adm", ALLOW},
        {"adm", ROLE(ADMIN), "instructor:ins", ALLOW},
        {"adm", ROLE(ADMIN), "instructor:anyone", ALLOW},
    };
    run_cases(&src, cases, sizeof(cases) / sizeof(cases[0]));
    assert_int_equal(f.member_calls + f.lesson_calls, 0);
}

static void test_source_failure_never_allows(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);

    /* Membership cannot be read. Also when the broken source fills in a
     * member role: the error wins. */
    for (int lie = 0; lie <= 1; lie++) {
        f.members_down = true;
        f.lessons_down = false;
        f.lie_on_failure = lie;
        static const decision_case members_down[] = {
            {"stu", ROLE(STUDENT), "course:c1", DENY(UNAVAILABLE)},
            {"ins", ROLE(INSTRUCTOR), "course:c1", DENY(UNAVAILABLE)},
            {"out", ROLE(STUDENT), "course:c1", DENY(UNAVAILABLE)},
            {"stu", ROLE(STUDENT), "lesson:l1", DENY(UNAVAILABLE)},
            {"ins", ROLE(INSTRUCTOR), "lesson:l1", DENY(UNAVAILABLE)},
            /* A lesson that does not exist is still known not to exist. */
            {"stu", ROLE(STUDENT), "lesson:gone", DENY(UNKNOWN_LESSON)},
            /* What needs no membership is still decided. */
            {"adm", ROLE(ADMIN), "course:c1", ALLOW},
            {"adm", ROLE(ADMIN), "lesson:l1", ALLOW},
            {"stu", ROLE(STUDENT), "user:stu", ALLOW},
            {"ins", ROLE(INSTRUCTOR), "instructor:ins", ALLOW},
            {"stu", ROLE(STUDENT), "course:a.b", DENY(BAD_ROOM)},
        };
        run_cases(&src, members_down, sizeof(members_down) / sizeof(members_down[0]));

        /* Lessons cannot be read: every lesson room is unavailable, admins too. */
        f.members_down = false;
        f.lessons_down = true;
        static const decision_case lessons_down[] = {
            {"stu", ROLE(STUDENT), "lesson:l1", DENY(UNAVAILABLE)},
            {"ins", ROLE(INSTRUCTOR), "lesson:l1", DENY(UNAVAILABLE)},
            {"adm", ROLE(ADMIN), "lesson:l1", DENY(UNAVAILABLE)},
            {"stu", ROLE(STUDENT), "lesson:gone", DENY(UNAVAILABLE)},
            {"stu", ROLE(STUDENT), "course:c1", ALLOW},
        };
        run_cases(&src, lessons_down, sizeof(lessons_down) / sizeof(lessons_down[0]));

        f.members_down = true;
        run_cases(&src, lessons_down, 4);
    }
}

static void test_bad_room_names(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);
    const char *bad[] = {"",
                         "course",
                         "course:",
                         ":c1",
                         "room:c1",
                         "Course:c1",
                         "course:c1.x",
                         "course:*",
                         "lesson:>",
                         "user:stu ",
                         "user:st u",
                         "instructor:ins.>",
                         "course:c1\n",
                         "lesson:l\xc3\xa9",
                         "course:"
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    const auth_role roles[] = {ROLE(STUDENT), ROLE(INSTRUCTOR), ROLE(ADMIN)};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (size_t r = 0; r < 3; r++) {
            auth_decision d = auth_rooms_decide(&src, "adm", roles[r], bad[i]);
            if (d.allowed || d.reason != DENY(BAD_ROOM))
                fail_msg("room \"%s\" (%s): got %s", bad[i], role_name(roles[r]),
                         auth_deny_reason_name(d.reason));
        }
    auth_decision d = auth_rooms_decide(&src, "adm", ROLE(ADMIN), NULL);
    assert_false(d.allowed);
    assert_int_equal(d.reason, DENY(BAD_ROOM));
    assert_int_equal(f.member_calls + f.lesson_calls, 0);
}

static void test_invalid_user_id(void **state)
{
    (void)state;
    fake_source f;
    auth_membership_source src = make_source(&f);
    char long_id[RT_ID_MAX + 2], room[RT_ROOM_NAME_MAX + 8];
    memset(long_id, 'u', RT_ID_MAX + 1);
    long_id[RT_ID_MAX + 1] = '\0';
    const char *bad_ids[] = {"", "a.b", "*", ">", "st u", "stu\n", "s\xc3\xa9", long_id, NULL};
    const char *rooms[] = {"course:c1", "lesson:l1", "user:stu", "instructor:ins"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
        for (size_t r = 0; r < 4; r++)
            for (auth_role role = ROLE(STUDENT); role <= ROLE(ADMIN); role++) {
                auth_decision d = auth_rooms_decide(&src, bad_ids[i], role, rooms[r]);
                if (d.allowed || d.reason == ALLOW)
                    fail_msg("user id \"%s\" allowed into %s", bad_ids[i] ? bad_ids[i] : "(null)",
                             rooms[r]);
                assert_int_equal(d.reason, DENY(NOT_OWNER));
            }
    /* A 65-character id is not the 64-character room it starts with. */
    snprintf(room, sizeof(room), "user:%.*s", RT_ID_MAX, long_id);
    assert_false(auth_rooms_decide(&src, long_id, ROLE(STUDENT), room).allowed);
    /* Bad ids never reach the database. */
    assert_int_equal(f.member_calls + f.lesson_calls, 0);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(auth_deny_reason_name(DENY(UNSPECIFIED)), "allowed");
    assert_string_equal(auth_deny_reason_name(DENY(BAD_ROOM)), "bad_room");
    assert_string_equal(auth_deny_reason_name(DENY(NOT_MEMBER)), "not_member");
    assert_string_equal(auth_deny_reason_name(DENY(NOT_OWNER)), "not_owner");
    assert_string_equal(auth_deny_reason_name(DENY(UNKNOWN_LESSON)), "unknown_lesson");
    assert_string_equal(auth_deny_reason_name(DENY(UNAVAILABLE)), "unavailable");
    assert_string_equal(auth_deny_reason_name(DENY(INTERNAL)), "internal");
    assert_string_equal(auth_deny_reason_name((auth_deny_reason)77), "internal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_course_rooms),
        cmocka_unit_test(test_lesson_rooms),
        cmocka_unit_test(test_user_rooms),
        cmocka_unit_test(test_instructor_rooms),
        cmocka_unit_test(test_source_failure_never_allows),
        cmocka_unit_test(test_bad_room_names),
        cmocka_unit_test(test_invalid_user_id),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
