/*
 * agg_stats and agg_clock: the arithmetic every figure goes through —
 * rounding once to 3 decimals with halves away from zero, null on a zero
 * denominator, nearest-rank percentiles with integers, bands decided on the
 * exact value (boundaries belong to the upper band), "m:ss" without
 * wrapping minutes, UTC days, dates, months and the course clock `end`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "agg_clock.h"
#include "agg_stats.h"

static double r3(agg_i128 num, agg_i128 den)
{
    double v = -12345;
    assert_true(agg_stats_round3(&v, num, den));
    return v;
}

static void test_round3(void **state)
{
    (void)state;
    assert_true(r3(1, 3) == 0.333);
    assert_true(r3(2, 3) == 0.667);
    assert_true(r3(1, 8) == 0.125);         /* exact: no rounding */
    assert_true(r3(10005, 10000) == 1.001); /* 1.0005: half away from zero */
    assert_true(r3(-10005, 10000) == -1.001);
    assert_true(r3(10005, -10000) == -1.001);
    assert_true(r3(10004999, 10000000) == 1.0);
    assert_true(r3(25, 1) == 25.0);
    assert_true(r3(0, 7) == 0.0);
    /* 60 * 127 / 288 minutes per hour = 26.458333... */
    assert_true(r3(60 * 127, 288) == 26.458);
    /* Large numerators stay exact (128-bit). */
    assert_true(r3((agg_i128)INT64_MAX * 1000, (agg_i128)INT64_MAX * 3) == 333.333);
    double untouched = 7;
    assert_false(agg_stats_round3(&untouched, 5, 0));
    assert_true(untouched == 7);
}

static void test_ratio_null(void **state)
{
    (void)state;
    assert_null(agg_stats_new_ratio(1, 0));
    assert_null(agg_stats_new_ratio(0, 0));
    Google__Protobuf__DoubleValue *v = agg_stats_new_ratio(3, 2);
    assert_non_null(v);
    assert_true(v->value == 1.5);
    free(v);
}

static void test_bands(void **state)
{
    (void)state;
    const int64_t *lr = agg_stats_learn_rate_bands, *er = agg_stats_execution_rate_bands;
    assert_string_equal(agg_stats_band(0, 1, lr), "poor");
    assert_string_equal(agg_stats_band(19999, 1000, lr), "poor");
    assert_string_equal(agg_stats_band(20, 1, lr), "fair"); /* boundary: upper band */
    assert_string_equal(agg_stats_band(35, 1, lr), "good");
    assert_string_equal(agg_stats_band(4999, 100, lr), "good");
    assert_string_equal(agg_stats_band(50, 1, lr), "very_good");
    assert_string_equal(agg_stats_band(65, 1, lr), "excellent");
    assert_string_equal(agg_stats_band(1000, 1, lr), "excellent");
    /* Exact, not rounded: 19.9996 prints as 20.000 but is poor. */
    assert_true(r3(199996, 10000) == 20.0);
    assert_string_equal(agg_stats_band(199996, 10000, lr), "poor");
    assert_string_equal(agg_stats_band(1, 0, lr), "");

    assert_string_equal(agg_stats_band(59, 1, er), "poor");
    assert_string_equal(agg_stats_band(60, 1, er), "fair");
    assert_string_equal(agg_stats_band(75, 1, er), "good");
    assert_string_equal(agg_stats_band(85, 1, er), "very_good");
    assert_string_equal(agg_stats_band(1900, 20, er), "excellent");     /* 19 of 20 = 95 */
    assert_string_equal(agg_stats_band(100 * 18, 19, er), "very_good"); /* 94.7 */
    assert_int_equal(agg_stats_compare(-40, -2, 20), 0);
}

static void test_nearest_rank(void **state)
{
    (void)state;
    int64_t four[] = {10, 20, 30, 40};
    assert_int_equal(agg_stats_nearest_rank(four, 4, 50), 20); /* the spec's example */
    assert_int_equal(agg_stats_nearest_rank(four, 4, 90), 40); /* rank ceil(3.6) = 4 */
    int64_t one[] = {7};
    assert_int_equal(agg_stats_nearest_rank(one, 1, 50), 7);
    assert_int_equal(agg_stats_nearest_rank(one, 1, 90), 7);
    int64_t ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(agg_stats_nearest_rank(ten, 10, 50), 5);
    assert_int_equal(agg_stats_nearest_rank(ten, 10, 90), 9); /* exactly rank 9 */
    int64_t eleven[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    assert_int_equal(agg_stats_nearest_rank(eleven, 11, 50), 6);
    assert_int_equal(agg_stats_nearest_rank(eleven, 11, 90), 10); /* ceil(9.9) */
    int64_t unsorted[] = {40, -5, 30, 10};
    agg_stats_sort_i64(unsorted, 4);
    assert_int_equal(unsorted[0], -5);
    assert_int_equal(unsorted[3], 40);
}

static void test_mss(void **state)
{
    (void)state;
    char out[AGG_STATS_MSS_LEN];
    agg_stats_mss(out, 0);
    assert_string_equal(out, "0:00");
    agg_stats_mss(out, 30);
    assert_string_equal(out, "0:30");
    agg_stats_mss(out, 90);
    assert_string_equal(out, "1:30");
    agg_stats_mss(out, 3690);
    assert_string_equal(out, "61:30"); /* minutes not wrapped */
    agg_stats_mss(out, 599);
    assert_string_equal(out, "9:59");
}

static void test_clock(void **state)
{
    (void)state;
    char date[AGG_CLOCK_DATE_LEN];
    const int64_t d0310 = 20522; /* 2026-03-10 */
    int64_t ns = 0;

    assert_int_equal(agg_clock_day(INT64_C(1773100800) * AGG_NS_PER_S), d0310);
    assert_int_equal(agg_clock_day(INT64_C(1773100800) * AGG_NS_PER_S - 1), d0310 - 1);
    assert_int_equal(agg_clock_day(-1), -1);
    agg_clock_date(date, d0310);
    assert_string_equal(date, "2026-03-10");
    agg_clock_date(date, 0);
    assert_string_equal(date, "1970-01-01");
    agg_clock_date(date, d0310 - 29);
    assert_string_equal(date, "2026-02-09");
    agg_clock_date(date, 20513 - 1);
    assert_string_equal(date, "2026-02-28");
    assert_int_equal(agg_clock_month_first_day(d0310), 20513); /* 2026-03-01 */
    assert_int_equal(agg_clock_month_first_day(20513), 20513);
    assert_int_equal(agg_clock_month_first_day(20512), 20485); /* 2026-02-01 */
    agg_clock_date(date, 20485);
    assert_string_equal(date, "2026-02-01");
    agg_clock_date(date, 11016); /* leap day */
    assert_string_equal(date, "2000-02-29");

    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = 1773100800;
    ts.nanos = 5;
    assert_true(agg_clock_from_timestamp(&ns, &ts));
    assert_true(ns == INT64_C(1773100800) * AGG_NS_PER_S + 5);
    ts.nanos = 1000000000;
    assert_false(agg_clock_from_timestamp(&ns, &ts));
    ts.nanos = 0;
    ts.seconds = -1;
    assert_false(agg_clock_from_timestamp(&ns, &ts));
    ts.seconds = AGG_TIME_MAX_S;
    assert_false(agg_clock_from_timestamp(&ns, &ts));
    assert_false(agg_clock_from_timestamp(&ns, NULL));

    Google__Protobuf__Timestamp *back = agg_clock_new_timestamp(ns + 1500000000);
    assert_int_equal(back->seconds, 1773100801);
    assert_int_equal(back->nanos, 500000005);
    free(back);

    /* end: event mode = latest; wall mode = max(latest, wall - lateness). */
    int64_t latest = INT64_C(1773100800) * AGG_NS_PER_S;
    assert_true(agg_clock_end(AGG_CLOCK_EVENT, latest, 1773100800000 + 999999, 120) == latest);
    assert_true(agg_clock_end(AGG_CLOCK_WALL, latest, 1773100800000 + 60000, 120) == latest);
    assert_true(agg_clock_end(AGG_CLOCK_WALL, latest, 1773100800000 + 180000, 120) ==
                latest + 60 * AGG_NS_PER_S);
    /* Window: end - W < t <= end. */
    assert_false(agg_clock_in_window(latest - 3600 * AGG_NS_PER_S, latest, 3600 * AGG_NS_PER_S));
    assert_true(agg_clock_in_window(latest - 3600 * AGG_NS_PER_S + 1, latest, 3600 * AGG_NS_PER_S));
    assert_true(agg_clock_in_window(latest, latest, 3600 * AGG_NS_PER_S));
    assert_false(agg_clock_in_window(latest + 1, latest, 3600 * AGG_NS_PER_S));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round3), cmocka_unit_test(test_ratio_null),
        cmocka_unit_test(test_bands),  cmocka_unit_test(test_nearest_rank),
        cmocka_unit_test(test_mss),    cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
