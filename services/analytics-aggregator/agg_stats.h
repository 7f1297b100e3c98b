/*
 * agg_stats: the arithmetic of the metrics, exact until output.
 *
 * Every figure is a ratio of integers (nanoseconds, microseconds of video,
 * counts) kept exact as numerator and denominator (128-bit, so sums over a
 * whole course cannot overflow), and turned into a number once, rounded to
 * 3 decimals with halves away from zero (docs/analytics.md). Bands are
 * decided on the exact ratio, not on the rounded one.
 *
 * Pure functions; any thread.
 */
#ifndef AGG_STATS_H
#define AGG_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"

__extension__ typedef __int128 agg_i128;

/* num/den rounded to 3 decimals, halves away from zero (as the nearest
 * double to that decimal). False, and *out untouched, when den == 0. */
bool agg_stats_round3(double *out, agg_i128 num, agg_i128 den);

/* The same as a new DoubleValue (rt_malloc()ed), or NULL (JSON null) when
 * den == 0. */
Google__Protobuf__DoubleValue *agg_stats_new_ratio(agg_i128 num, agg_i128 den);

/* Sign of num/den - k: -1, 0 or 1 (den != 0). */
int agg_stats_compare(agg_i128 num, agg_i128 den, int64_t k);

/* Band limits, ascending: a value below limits[0] is "poor", below
 * limits[1] "fair", below limits[2] "good", below limits[3] "very_good",
 * else "excellent". */
extern const int64_t agg_stats_learn_rate_bands[4];     /* 20 35 50 65 */
extern const int64_t agg_stats_execution_rate_bands[4]; /* 60 75 85 95 */

/* The band of the exact value num/den; "" when den == 0 (null figure). */
const char *agg_stats_band(agg_i128 num, agg_i128 den, const int64_t limits[4]);

/* Nearest-rank percentile of an ascending list: the value at rank
 * ceil(percent * n / 100), computed with integers (n >= 1; percent 1..100).
 * The median of {10, 20, 30, 40} is 20. */
int64_t agg_stats_nearest_rank(const int64_t *sorted, size_t n, unsigned percent);

/* Sorts int64 values ascending. */
void agg_stats_sort_i64(int64_t *values, size_t n);

/* A video position in whole seconds as "m:ss", minutes not wrapped at an
 * hour: 90 -> "1:30", 3690 -> "61:30". */
#define AGG_STATS_MSS_LEN 24
void agg_stats_mss(char out[AGG_STATS_MSS_LEN], uint32_t seconds);

#endif
