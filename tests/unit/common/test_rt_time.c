/*
 * rt_time: RFC 3339 text as logs and protobuf Timestamps need it: exact
 * formatting (milliseconds, before 1970, year 9999), parsing of every form
 * clients send (Z or offsets, 1 to 9+ fraction digits, lowercase t/z), the
 * inputs that must be refused, and format -> parse round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rt_time.h"

static void assert_format(int64_t ms, const char *expected)
{
    char out[RT_TIME_RFC3339_LEN];
    memset(out, '#', sizeof(out));
    rt_time_format_rfc3339(out, ms);
    assert_string_equal(out, expected);
}

static void test_format(void **state)
{
    (void)state;
    assert_format(0, "1970-01-01T00:00:00.000Z");
    assert_format(1795627800123, "2026-11-25T17:30:00.123Z");
    assert_format(1795627800007, "2026-11-25T17:30:00.007Z");
    assert_format(1709208000000, "2024-02-29T12:00:00.000Z");
    /* Before 1970 the milliseconds still count forward within the second. */
    assert_format(-1, "1969-12-31T23:59:59.999Z");
    assert_format(-1000, "1969-12-31T23:59:59.000Z");
    assert_format(-1001, "1969-12-31T23:59:58.999Z");
    assert_format(-14182940000 + 250, "1969-07-20T20:17:40.250Z");
    assert_format(-62135596800000, "0001-01-01T00:00:00.000Z");
    assert_format(253402300799999, "9999-12-31T23:59:59.999Z");
}

static void test_format_now_shape(void **state)
{
    (void)state;
    char out[RT_TIME_RFC3339_LEN];
    int64_t now = rt_time_now_ms();
    rt_time_format_rfc3339(out, now);
    assert_int_equal(strlen(out), 24);
    assert_int_equal(out[10], 'T');
    assert_int_equal(out[23], 'Z');
    /* The wall clock is after 2024 and the monotonic clock moves forward. */
    assert_true(now > 1704067200000);
    uint64_t a = rt_time_mono_ns();
    uint64_t b = rt_time_mono_ns();
    assert_true(b >= a);
}

static void assert_parse(const char *text, int64_t seconds, int32_t nanos)
{
    int64_t s = -12345;
    int32_t n = -1;
    if (rt_time_parse_rfc3339(&s, &n, text) != RT_OK)
        fail_msg("\"%s\" must parse", text);
    if (s != seconds || n != nanos)
        fail_msg("\"%s\": got %lld.%09d, want %lld.%09d", text, (long long)s, (int)n,
                 (long long)seconds, (int)nanos);
}

static void test_parse_valid(void **state)
{
    (void)state;
    assert_parse("1970-01-01T00:00:00Z", 0, 0);
    assert_parse("2026-11-25T17:30:00Z", 1795627800, 0);
    assert_parse("2026-11-25t17:30:00z", 1795627800, 0);
    /* Offsets: local time minus the offset is UTC. */
    assert_parse("2026-11-25T18:30:00+01:00", 1795627800, 0);
    assert_parse("2026-11-25T12:00:00-05:30", 1795627800, 0);
    assert_parse("2026-11-25T17:30:00+00:00", 1795627800, 0);
    assert_parse("2026-11-25T17:30:00-00:00", 1795627800, 0);
    assert_parse("2026-11-26T03:00:00+09:30", 1795627800, 0);
    /* Fractions of 1 to 9 digits are scaled to nanoseconds. */
    assert_parse("2026-11-25T17:30:00.1Z", 1795627800, 100000000);
    assert_parse("2026-11-25T17:30:00.12Z", 1795627800, 120000000);
    assert_parse("2026-11-25T17:30:00.123Z", 1795627800, 123000000);
    assert_parse("2026-11-25T17:30:00.000001Z", 1795627800, 1000);
    assert_parse("2026-11-25T17:30:00.123456789Z", 1795627800, 123456789);
    assert_parse("2026-11-25T17:30:00.000000001Z", 1795627800, 1);
    /* More than nanosecond precision is truncated, not rounded or refused. */
    assert_parse("2026-11-25T17:30:00.1234567899999Z", 1795627800, 123456789);
    assert_parse("2026-11-25T18:30:00.5+01:00", 1795627800, 500000000);
    /* Before 1970 and at the ends of the 4-digit range. */
    assert_parse("1969-12-31T23:59:59Z", -1, 0);
    assert_parse("1969-07-20T20:17:40.25Z", -14182940, 250000000);
    assert_parse("0001-01-01T00:00:00Z", -62135596800, 0);
    assert_parse("9999-12-31T23:59:59.999999999Z", 253402300799, 999999999);
    /* Leap days. */
    assert_parse("2024-02-29T12:00:00Z", 1709208000, 0);
    assert_parse("2000-02-29T00:00:00Z", 951782400, 0);
    /* A leap second is clamped to :59 (protobuf Timestamp cannot hold :60). */
    assert_parse("2016-12-31T23:59:60Z", 1483228799, 0);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "now",
        "2026-11-25",
        "2026-11-25T17:30",
        "2026-11-25T17:30:00", /* no zone */
        "2026-11-25T17:30:00 Z",
        "2026-11-25T17:30:00Z ", /* trailing text */
        "2026-11-25T17:30:00ZZ",
        "2026-11-25X17:30:00Z",
        "2026/11/25T17:30:00Z",
        "26-11-25T17:30:00Z",
        "2026-1-25T17:30:00Z",
        "2026-11-5T17:30:00Z",
        "2026-11-25T7:30:00Z",
        "+2026-11-25T17:30:00Z",
        "2026-00-25T17:30:00Z",
        "2026-13-25T17:30:00Z",
        "2026-11-00T17:30:00Z",
        "2026-11-32T17:30:00Z",
        "2026-11-31T17:30:00Z", /* November has 30 days */
        "2026-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* century, not a leap year */
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T17:60:00Z",
        "2026-11-25T17:30:61Z",
        "2026-11-25T17:30:00.Z", /* empty fraction */
        "2026-11-25T17:30:00,5Z",
        "2026-11-25T17:30:00.5",
        "2026-11-25T17:30:00+01",
        "2026-11-25T17:30:00+0100",
        "2026-11-25T17:30:00+1:00",
        "2026-11-25T17:30:00+24:00",
        "2026-11-25T17:30:00+01:60",
        "2026-11-25T17:30:00+01:00Z",
        "2026-11-25T17:30:00UTC",
        "2026-11-25T17:3a:00Z",
        "\xef\xbc\x92\xef\xbc\x90\xef\xbc\x92\xef\xbc\x96-11-25T17:30:00Z", /* fullwidth digits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t s = 777;
        int32_t n = 777;
        if (rt_time_parse_rfc3339(&s, &n, bad[i]) != RT_ERR_INVALID_ARG)
            fail_msg("\"%s\" must be refused", bad[i]);
        /* Outputs are untouched on failure. */
        assert_int_equal(s, 777);
        assert_int_equal(n, 777);
    }
    int64_t s;
    int32_t n;
    assert_int_equal(rt_time_parse_rfc3339(&s, &n, NULL), RT_ERR_INVALID_ARG);
}

static void test_round_trip(void **state)
{
    (void)state;
    const int64_t values[] = {
        0,
        1,
        999,
        1000,
        -1,
        -999,
        -1000,
        -1001,
        1795627800123,
        1709208000000,
        951782399999,
        -14182939750,
        253402300799999,
        -62135596800000,
        4102444800000,
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char text[RT_TIME_RFC3339_LEN];
        int64_t s;
        int32_t n;
        rt_time_format_rfc3339(text, values[i]);
        assert_int_equal(rt_time_parse_rfc3339(&s, &n, text), RT_OK);
        assert_true(n >= 0 && n < 1000000000);
        assert_int_equal(n % 1000000, 0);
        if (s * 1000 + n / 1000000 != values[i])
            fail_msg("%lld -> %s -> %lld.%09d", (long long)values[i], text, (long long)s, (int)n);
    }
    /* Every millisecond of a day around the epoch, sampled. */
    for (int64_t ms = -86400000; ms <= 86400000; ms += 86400000 / 997) {
        char text[RT_TIME_RFC3339_LEN];
        int64_t s;
        int32_t n;
        rt_time_format_rfc3339(text, ms);
        assert_int_equal(rt_time_parse_rfc3339(&s, &n, text), RT_OK);
        assert_int_equal(s * 1000 + n / 1000000, ms);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),      cmocka_unit_test(test_format_now_shape),
        cmocka_unit_test(test_parse_valid), cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
