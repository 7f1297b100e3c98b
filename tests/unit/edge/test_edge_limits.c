/*
 * edge_limits: a client may send a burst, then frames at the configured
 * rate; repeated bad frames within the window close the connection, and
 * neither limit misbehaves when the millisecond clock wraps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "edge_limits.h"

#define MS(x) ((uint64_t)(x)*UINT64_C(1000000))
/* The uint32 millisecond clock wraps when now_ns passes this. */
#define WRAP_NS MS(UINT64_C(1) << 32)

/* Frames granted when `n` frames are sent `step_ms` apart from `start_ms`. */
static int send_frames(edge_bucket *b, float rate, float burst, uint64_t start_ns, int n,
                       uint64_t step_ns)
{
    int granted = 0;
    for (int i = 0; i < n; i++)
        granted += edge_bucket_take(b, rate, burst, start_ns + (uint64_t)i * step_ns);
    return granted;
}

static void test_bucket_burst_then_empty(void **state)
{
    (void)state;
    edge_bucket b;
    uint64_t t0 = MS(5000);

    edge_bucket_init(&b, 10, t0);
    /* Ten frames at once, then nothing until time passes. */
    for (int i = 0; i < 10; i++)
        assert_true(edge_bucket_take(&b, 5, 10, t0));
    assert_false(edge_bucket_take(&b, 5, 10, t0));
    assert_false(edge_bucket_take(&b, 5, 10, t0 + MS(199)));
    /* 5/s: one token every 200 ms. */
    assert_true(edge_bucket_take(&b, 5, 10, t0 + MS(200)));
    assert_false(edge_bucket_take(&b, 5, 10, t0 + MS(200)));
    assert_false(edge_bucket_take(&b, 5, 10, t0 + MS(399)));
    assert_true(edge_bucket_take(&b, 5, 10, t0 + MS(400)));
}

static void test_bucket_refills_at_rate(void **state)
{
    (void)state;
    edge_bucket b;
    uint64_t t0 = MS(1);

    /* Polled every millisecond for 10 s at 20/s after the burst: exactly
     * 20 per second get through, no fraction lost to float rounding. */
    edge_bucket_init(&b, 5, t0);
    assert_int_equal(send_frames(&b, 20, 5, t0, 10001, MS(1)), 5 + 200);

    /* A slow rate polled often: 0.5/s, every ms, over 10 s -> 5 tokens. */
    edge_bucket_init(&b, 1, t0);
    assert_true(edge_bucket_take(&b, 0.5f, 1, t0));
    assert_int_equal(send_frames(&b, 0.5f, 1, t0 + MS(1), 10000, MS(1)), 5);

    /* A very low rate polled every ms: a million refills of 1e-6 tokens
     * would drift in a float; the token arrives at 1000 s, not before. */
    edge_bucket_init(&b, 100, t0);
    assert_int_equal(send_frames(&b, 0.001f, 100, t0, 100, 0), 100);
    assert_int_equal(send_frames(&b, 0.001f, 100, t0 + MS(1), 999998, MS(1)), 0);
    assert_false(edge_bucket_take(&b, 0.001f, 100, t0 + MS(999999)));
    assert_true(edge_bucket_take(&b, 0.001f, 100, t0 + MS(1000000)));
    assert_false(edge_bucket_take(&b, 0.001f, 100, t0 + MS(1000001)));

    /* Refill never passes the burst. */
    edge_bucket_init(&b, 3, t0);
    assert_int_equal(send_frames(&b, 100, 3, t0, 3, 0), 3);
    assert_int_equal(send_frames(&b, 100, 3, t0 + MS(60000), 10, 0), 3);
}

static void test_bucket_fractional_rates(void **state)
{
    (void)state;
    edge_bucket b;
    uint64_t t0 = MS(100);
    edge_bucket_init(&b, 1, t0);
    assert_true(edge_bucket_take(&b, 3, 1, t0));
    /* 3/s = one per 333.3 ms: not at 333 ms, at 334 ms (epsilon aside, the
     * token is not early by more than a rounding error). */
    assert_false(edge_bucket_take(&b, 3, 1, t0 + MS(300)));
    assert_true(edge_bucket_take(&b, 3, 1, t0 + MS(334)));
    /* Over a minute at 3/s sent every 10 ms: 180 frames, when the bucket
     * has room for the fraction that accrues between two polls. */
    edge_bucket_init(&b, 2, t0);
    assert_int_equal(send_frames(&b, 3, 2, t0, 2, 0), 2);
    assert_int_equal(send_frames(&b, 3, 2, t0 + MS(10), 6000, MS(10)), 180);
    /* With burst 1, what accrues while the bucket is full is lost (a
     * token bucket holds at most `burst`): one per 340 ms here. */
    edge_bucket_init(&b, 1, t0);
    assert_true(edge_bucket_take(&b, 3, 1, t0));
    assert_int_equal(send_frames(&b, 3, 1, t0 + MS(10), 6000, MS(10)), 176);
}

static void test_bucket_clock_wrap(void **state)
{
    (void)state;
    edge_bucket b;
    uint64_t t0 = WRAP_NS - MS(100); /* 100 ms before the wrap */

    edge_bucket_init(&b, 2, t0);
    assert_true(edge_bucket_take(&b, 10, 2, t0));
    assert_true(edge_bucket_take(&b, 10, 2, t0));
    assert_false(edge_bucket_take(&b, 10, 2, t0));
    /* 150 ms later, across the wrap: 1.5 tokens. */
    assert_true(edge_bucket_take(&b, 10, 2, t0 + MS(150)));
    assert_false(edge_bucket_take(&b, 10, 2, t0 + MS(150)));
    assert_true(edge_bucket_take(&b, 10, 2, t0 + MS(200)));
    assert_false(edge_bucket_take(&b, 10, 2, t0 + MS(200)));

    /* An earlier reading (another thread's clock) does not refill the bucket
     * as if 49 days had passed. */
    assert_false(edge_bucket_take(&b, 10, 2, t0 + MS(199)));
    assert_false(edge_bucket_take(&b, 10, 2, t0 + MS(250)));
    assert_true(edge_bucket_take(&b, 10, 2, t0 + MS(300)));
}

static void test_bucket_odd_config(void **state)
{
    (void)state;
    edge_bucket b;
    edge_bucket_init(&b, 0, MS(1));
    assert_false(edge_bucket_take(&b, 100, 0, MS(1)));
    assert_false(edge_bucket_take(&b, 100, 0, MS(100000)));
    /* No refill when the rate is 0. */
    edge_bucket_init(&b, 1, MS(1));
    assert_true(edge_bucket_take(&b, 0, 1, MS(1)));
    assert_false(edge_bucket_take(&b, 0, 1, MS(100000)));
    /* A zeroed bucket refills from its first use. */
    memset(&b, 0, sizeof(b));
    assert_true(edge_bucket_take(&b, 1, 5, MS(10000)));
}

static void test_strikes_window(void **state)
{
    (void)state;
    edge_strikes s;
    uint64_t t0 = MS(1000);
    memset(&s, 0, sizeof(s));

    /* max 5 per minute: the 6th within 60 s closes. */
    for (int i = 0; i < 5; i++)
        assert_false(edge_strikes_add(&s, 5, 60000, t0 + MS(i * 1000)));
    assert_true(edge_strikes_add(&s, 5, 60000, t0 + MS(59999)));
    assert_true(edge_strikes_add(&s, 5, 60000, t0 + MS(59999)));
}

static void test_strikes_reset(void **state)
{
    (void)state;
    edge_strikes s;
    uint64_t t0 = MS(1000);
    memset(&s, 0, sizeof(s));

    for (int i = 0; i < 5; i++)
        assert_false(edge_strikes_add(&s, 5, 60000, t0));
    /* The window is over: counting starts again. */
    assert_false(edge_strikes_add(&s, 5, 60000, t0 + MS(60000)));
    assert_int_equal(s.count, 1);
    for (int i = 0; i < 4; i++)
        assert_false(edge_strikes_add(&s, 5, 60000, t0 + MS(60001)));
    assert_true(edge_strikes_add(&s, 5, 60000, t0 + MS(119999)));

    /* max 0: the first strike closes. */
    memset(&s, 0, sizeof(s));
    assert_true(edge_strikes_add(&s, 0, 60000, t0));

    /* The count saturates instead of wrapping to 0. */
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 70000; i++)
        edge_strikes_add(&s, 5, 60000, t0);
    assert_int_equal(s.count, UINT16_MAX);
    assert_true(edge_strikes_add(&s, 5, 60000, t0));
}

static void test_strikes_clock_wrap(void **state)
{
    (void)state;
    edge_strikes s;
    uint64_t t0 = WRAP_NS - MS(30000);
    memset(&s, 0, sizeof(s));

    for (int i = 0; i < 5; i++)
        assert_false(edge_strikes_add(&s, 5, 60000, t0));
    /* 40 s later, past the wrap, still the same window. */
    assert_true(edge_strikes_add(&s, 5, 60000, t0 + MS(40000)));
    /* 61 s after the first strike: a new window. */
    assert_false(edge_strikes_add(&s, 5, 60000, t0 + MS(61000)));
    assert_int_equal(s.count, 1);
    /* A zeroed struct at a time whose ms value is 0 works too. */
    memset(&s, 0, sizeof(s));
    assert_false(edge_strikes_add(&s, 1, 60000, WRAP_NS));
    assert_true(edge_strikes_add(&s, 1, 60000, WRAP_NS + MS(1)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_burst_then_empty),
        cmocka_unit_test(test_bucket_refills_at_rate),
        cmocka_unit_test(test_bucket_fractional_rates),
        cmocka_unit_test(test_bucket_clock_wrap),
        cmocka_unit_test(test_bucket_odd_config),
        cmocka_unit_test(test_strikes_window),
        cmocka_unit_test(test_strikes_reset),
        cmocka_unit_test(test_strikes_clock_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
