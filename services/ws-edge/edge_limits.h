/*
 * edge_limits: per-connection rate and abuse limits, a few bytes each.
 *
 * Token bucket (WS_RATE_PER_SEC, WS_RATE_BURST): every inbound frame takes a
 * token; a frame without one is answered rate_limited. Strikes: counts
 * events (rate-limited frames, bad frames) in a sliding window; passing the
 * limit closes the connection (4429 for rate, 1008 for bad frames). Pure
 * functions over caller-owned structs; time is passed in (monotonic ns, e.g.
 * rt_time_mono_ns()) and kept as uint32 milliseconds, which wrap every 49.7
 * days: differences are taken modulo 2^32, so the wrap is harmless. A reading
 * that looks older than the previous one (difference >= 2^31 ms) restarts
 * the clock without a refill. Not thread-safe per struct (one connection =
 * one thread).
 */
#ifndef EDGE_LIMITS_H
#define EDGE_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct edge_bucket {
    float tokens;
    uint32_t last_ms; /* monotonic milliseconds, wraps after 49 days: handled */
} edge_bucket;

/* A full bucket (burst tokens). */
void edge_bucket_init(edge_bucket *bucket, float burst, uint64_t now_ns);
/* Refills at rate_per_sec up to burst, then takes one token if there is one
 * (true) or leaves the bucket as is (false). The refill is computed (in
 * double) from the time since the last granted token and stored only when a
 * token is taken, so no fraction of a token is lost however often it is
 * called. rate_per_sec <= 0 never refills; burst <= 0 never grants. */
bool edge_bucket_take(edge_bucket *bucket, float rate_per_sec, float burst, uint64_t now_ns);

typedef struct edge_strikes {
    uint32_t window_start_ms;
    uint16_t count;
} edge_strikes;

/* Records one strike; returns true when more than `max` strikes fell within
 * `window_ms` (the connection should be closed). The window opens at the
 * first strike and lasts window_ms; the next strike after it opens a new
 * one with count 1 (a fixed window per burst, a few bytes instead of a
 * timestamp per strike). A zeroed struct has no strikes; count saturates. */
bool edge_strikes_add(edge_strikes *strikes, uint16_t max, uint32_t window_ms, uint64_t now_ns);

#endif
