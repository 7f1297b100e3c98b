/*
 * rt_status: stable status names, and the per-thread record of where an
 * error started (a second thread never sees the first thread's error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "rt_status.h"

static void test_status_texts(void **state)
{
    (void)state;
    static const struct {
        rt_status s;
        const char *text;
    } cases[] = {
        {RT_OK, "ok"},
        {RT_ERR_INVALID_ARG, "invalid_arg"},
        {RT_ERR_CONFIG, "config"},
        {RT_ERR_NOMEM, "nomem"},
        {RT_ERR_IO, "io"},
        {RT_ERR_NATS, "nats"},
        {RT_ERR_PG, "postgres"},
        {RT_ERR_UNAVAILABLE, "unavailable"},
        {RT_ERR_TIMEOUT, "timeout"},
        {RT_ERR_DECODE, "decode"},
        {RT_ERR_JSON, "json"},
        {RT_ERR_NOT_FOUND, "not_found"},
        {RT_ERR_LIMIT, "limit"},
        {RT_ERR_AUTH, "auth"},
        {RT_ERR_INTERNAL, "internal"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(rt_status_text(cases[i].s), cases[i].text);
    /* A value outside the enum still gets a printable name. */
    assert_string_equal(rt_status_text((rt_status)999), "unknown");
}

static rt_status fail_here(int *line)
{
    *line = __LINE__ + 1;
    return RT_ERR(RT_ERR_PG, "query failed: %s (%d)", "boom", 7);
}

static void test_error_record_origin(void **state)
{
    (void)state;
    int line = 0;
    char expected[128];

    rt_error_clear();
    assert_int_equal(rt_error_status(), RT_OK);
    assert_string_equal(rt_error_message(), "");
    assert_string_equal(rt_error_origin(), "");

    assert_int_equal(fail_here(&line), RT_ERR_PG);
    assert_int_equal(rt_error_status(), RT_ERR_PG);
    assert_string_equal(rt_error_message(), "query failed: boom (7)");
    /* Origin is "func (file:line)" with the file's base name only. */
    snprintf(expected, sizeof(expected), "fail_here (test_rt_status.c:%d)", line);
    assert_string_equal(rt_error_origin(), expected);

    rt_error_clear();
    assert_int_equal(rt_error_status(), RT_OK);
    assert_string_equal(rt_error_message(), "");
    assert_string_equal(rt_error_origin(), "");
}

static void test_error_message_truncated_safely(void **state)
{
    (void)state;
    char big[2048];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(RT_ERR(RT_ERR_IO, "%s", big), RT_ERR_IO);
    size_t len = strlen(rt_error_message());
    assert_true(len > 0 && len < sizeof(big) - 1);
    assert_int_equal(rt_error_message()[0], 'x');
}

typedef struct {
    rt_status seen_status_before;
    char seen_message_before[64];
    rt_status seen_status_after;
    char seen_message_after[64];
} thread_view;

static void *other_thread(void *p)
{
    thread_view *v = p;
    v->seen_status_before = rt_error_status();
    snprintf(v->seen_message_before, sizeof(v->seen_message_before), "%s", rt_error_message());
    (void)RT_ERR(RT_ERR_TIMEOUT, "thread two timed out");
    v->seen_status_after = rt_error_status();
    snprintf(v->seen_message_after, sizeof(v->seen_message_after), "%s", rt_error_message());
    return NULL;
}

static void test_error_is_per_thread(void **state)
{
    (void)state;
    pthread_t t;
    thread_view v;
    memset(&v, 0, sizeof(v));

    (void)RT_ERR(RT_ERR_NATS, "thread one failed");
    assert_int_equal(pthread_create(&t, NULL, other_thread, &v), 0);
    assert_int_equal(pthread_join(t, NULL), 0);

    /* The second thread starts clean and records its own error ... */
    assert_int_equal(v.seen_status_before, RT_OK);
    assert_string_equal(v.seen_message_before, "");
    assert_int_equal(v.seen_status_after, RT_ERR_TIMEOUT);
    assert_string_equal(v.seen_message_after, "thread two timed out");
    /* ... which does not overwrite the first thread's. */
    assert_int_equal(rt_error_status(), RT_ERR_NATS);
    assert_string_equal(rt_error_message(), "thread one failed");
    rt_error_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_texts),
        cmocka_unit_test(test_error_record_origin),
        cmocka_unit_test(test_error_message_truncated_safely),
        cmocka_unit_test(test_error_is_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
