/*
 * edge_limits: token bucket and strike counter (see the header).
 *
 * Time is kept as uint32 milliseconds, so elapsed time is the unsigned
 * difference of two readings: correct across the wrap at 2^32 ms (49.7 days)
 * as long as two readings of one connection are less than 24.8 days (2^31 ms)
 * apart; a larger difference is taken for a reading from the past.
 */
#include "edge_limits.h"

/* Accuracy: the refill is computed in double from the whole time since the
 * last granted token, and stored (rounded to float) only when a token is
 * taken. A denied frame leaves the bucket untouched, so polling often never
 * accumulates rounding error; the only rounding is one float store per
 * granted frame. A token counts as present from 1 - TAKE_EPSILON on, so that
 * this rounding cannot make it arrive a millisecond late. */
#define TAKE_EPSILON 1e-7

static uint32_t ms_of(uint64_t now_ns)
{
    return (uint32_t)(now_ns / 1000000u); /* truncation = the wrap we handle */
}

void edge_bucket_init(edge_bucket *bucket, float burst, uint64_t now_ns)
{
    bucket->tokens = burst > 0 ? burst : 0;
    bucket->last_ms = ms_of(now_ns);
}

bool edge_bucket_take(edge_bucket *bucket, float rate_per_sec, float burst, uint64_t now_ns)
{
    uint32_t now_ms = ms_of(now_ns);
    uint32_t elapsed = now_ms - bucket->last_ms; /* modulo 2^32: wraps correctly */
    double tokens = bucket->tokens;

    if (!(burst > 0)) /* also NaN */
        burst = 0;
    if (!(tokens > 0)) /* also NaN */
        tokens = 0;
    if (elapsed >= UINT32_C(0x80000000)) {
        /* A reading older than the last one (or a gap over 24.8 days): no
         * refill, but restart from now so the bucket never sticks. */
        bucket->last_ms = now_ms;
        elapsed = 0;
    }
    if (rate_per_sec > 0)
        tokens += (double)elapsed * (double)rate_per_sec / 1000.0;
    if (!(tokens < burst)) /* also +inf */
        tokens = burst;
    if (tokens < 1.0 - TAKE_EPSILON)
        return false; /* state untouched: the refill is recomputed next time */
    tokens = tokens > 1.0 ? tokens - 1.0 : 0.0;
    bucket->tokens = (float)tokens;
    bucket->last_ms = now_ms;
    return true;
}

bool edge_strikes_add(edge_strikes *strikes, uint16_t max, uint32_t window_ms, uint64_t now_ns)
{
    uint32_t now_ms = ms_of(now_ns);

    if (strikes->count == 0 || (uint32_t)(now_ms - strikes->window_start_ms) >= window_ms) {
        strikes->window_start_ms = now_ms;
        strikes->count = 0;
    }
    if (strikes->count < UINT16_MAX)
        strikes->count++;
    return strikes->count > max;
}
