/*
 * rt_room: which ids and room names are accepted (nothing that could
 * smuggle a NATS token separator or whitespace into a subject), and the
 * names and subjects every room kind maps to.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rt_room.h"

static void test_id_valid(void **state)
{
    (void)state;
    char id64[RT_ID_MAX + 1], id65[RT_ID_MAX + 2];
    memset(id64, 'a', RT_ID_MAX);
    id64[RT_ID_MAX] = '\0';
    memset(id65, 'b', RT_ID_MAX + 1);
    id65[RT_ID_MAX + 1] = '\0';

    assert_true(rt_id_valid("42"));
    assert_true(rt_id_valid("a"));
    assert_true(rt_id_valid("Az09_-"));
    assert_true(rt_id_valid("9b2f6a1e-3c44-4f5e-8a7d-2b1c0d9e8f7a"));
    assert_true(rt_id_valid(id64));
    assert_false(rt_id_valid(id65));

    const char *bad[] = {"",     "a.b", "a*",  ">",    "a b",         " a",
                         "a\t",  "a\n", "a:b", "a/b",  "caf\xc3\xa9", "\xe2\x82\xac",
                         "a\\b", "a,b", "a+b", "a%2e", "{a}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (rt_id_valid(bad[i]))
            fail_msg("id \"%s\" must be refused", bad[i]);
    }
    assert_false(rt_id_valid(NULL));
}

static void test_id_valid_n(void **state)
{
    (void)state;
    /* Only the first len bytes count: a valid prefix of a longer buffer. */
    assert_true(rt_id_valid_n("abc.def", 3));
    assert_false(rt_id_valid_n("abc.def", 4));
    assert_false(rt_id_valid_n("abc", 0));
    assert_false(rt_id_valid_n(NULL, 3));
    char buf[RT_ID_MAX + 1];
    memset(buf, 'z', sizeof(buf));
    assert_true(rt_id_valid_n(buf, RT_ID_MAX));
    assert_false(rt_id_valid_n(buf, RT_ID_MAX + 1));
    /* An embedded NUL is not an id character. */
    assert_false(rt_id_valid_n("ab\0cd", 5));
}

static void test_parse_every_kind(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        rt_room_kind kind;
        const char *kind_name;
        const char *id;
        const char *subject;
        const char *delivery;
    } cases[] = {
        {"course:42", RT_ROOM_COURSE, "course", "42", "rt.v1.room.course.42",
         "rtd.v1.room.course.42"},
        {"lesson:L-7_x", RT_ROOM_LESSON, "lesson", "L-7_x", "rt.v1.room.lesson.L-7_x",
         "rtd.v1.room.lesson.L-7_x"},
        {"user:u1", RT_ROOM_USER, "user", "u1", "rt.v1.room.user.u1", "rtd.v1.room.user.u1"},
        {"instructor:i9", RT_ROOM_INSTRUCTOR, "instructor", "i9", "rt.v1.room.instructor.i9",
         "rtd.v1.room.instructor.i9"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rt_room room;
        char name[RT_ROOM_NAME_MAX], subject[RT_ROOM_SUBJECT_MAX];
        memset(&room, 0, sizeof(room));
        assert_int_equal(rt_room_parse(&room, cases[i].name), RT_OK);
        assert_int_equal(room.kind, cases[i].kind);
        assert_string_equal(room.id, cases[i].id);
        assert_string_equal(rt_room_kind_name(room.kind), cases[i].kind_name);
        rt_room_name(name, &room);
        assert_string_equal(name, cases[i].name);
        rt_room_subject(subject, sizeof(subject), "rt.v1.room", &room);
        assert_string_equal(subject, cases[i].subject);
        rt_room_subject(subject, sizeof(subject), "rtd.v1.room", &room);
        assert_string_equal(subject, cases[i].delivery);
    }
    assert_string_equal(rt_room_kind_name((rt_room_kind)0), "unknown");
}

static void test_longest_room_fits(void **state)
{
    (void)state;
    char name[RT_ROOM_NAME_MAX + 8], back[RT_ROOM_NAME_MAX], subject[RT_ROOM_SUBJECT_MAX];
    char id64[RT_ID_MAX + 1];
    rt_room room;
    memset(id64, 'Z', RT_ID_MAX);
    id64[RT_ID_MAX] = '\0';

    snprintf(name, sizeof(name), "instructor:%s", id64);
    assert_int_equal(strlen(name) + 1, RT_ROOM_NAME_MAX);
    assert_int_equal(rt_room_parse(&room, name), RT_OK);
    assert_string_equal(room.id, id64);
    rt_room_name(back, &room);
    assert_string_equal(back, name);
    rt_room_subject(subject, sizeof(subject), "rtd.v1.room", &room);
    assert_int_equal(strlen(subject) + 1, RT_ROOM_SUBJECT_MAX);
    assert_memory_equal(subject, "rtd.v1.room.instructor.", 23);
    assert_string_equal(subject + 23, id64);

    /* One more character is refused, not truncated. */
    snprintf(name, sizeof(name), "instructor:%sZ", id64);
    assert_int_equal(rt_room_parse(&room, name), RT_ERR_INVALID_ARG);
}

static void test_parse_refuses(void **state)
{
    (void)state;
    const char *bad[] = {
        "",           "course",       "course:",    ":42",
        "Course:42",  "courses:42",   "cours:42",   "room:42",
        "course:4.2", "course:*",     "course:>",   "course:4 2",
        "course:42 ", " course:42",   "course:a:b", "lesson:\xc3\xa9",
        "user:a.b",   "instructor:*", "course42",   "COURSE:42",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rt_room room;
        rt_error_clear();
        if (rt_room_parse(&room, bad[i]) != RT_ERR_INVALID_ARG)
            fail_msg("room \"%s\" must be refused", bad[i]);
        /* The reason is recorded for the caller's log line. */
        assert_int_equal(rt_error_status(), RT_ERR_INVALID_ARG);
        assert_true(rt_error_message()[0] != '\0');
    }
    rt_room room;
    assert_int_equal(rt_room_parse(&room, NULL), RT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid),         cmocka_unit_test(test_id_valid_n),
        cmocka_unit_test(test_parse_every_kind), cmocka_unit_test(test_longest_room_fits),
        cmocka_unit_test(test_parse_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
