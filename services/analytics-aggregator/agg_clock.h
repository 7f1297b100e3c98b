/*
 * agg_clock: event time as the aggregator counts it (docs/analytics.md).
 *
 * Times are int64 nanoseconds since the Unix epoch (a protobuf Timestamp's
 * seconds and nanos), so sums and differences are exact integers. Days are
 * UTC days numbered from 1970-01-01 (day 0), each [00:00, 24:00).
 *
 * Pure functions; any thread.
 */
#ifndef AGG_CLOCK_H
#define AGG_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "rt_proto.h"

#define AGG_NS_PER_S INT64_C(1000000000)
#define AGG_NS_PER_MS INT64_C(1000000)
#define AGG_NS_PER_DAY (INT64_C(86400) * AGG_NS_PER_S)
/* Event times the aggregator accepts: [1970-01-01, 2200-01-01). Beyond
 * them nanoseconds would not fit comfortably in int64 arithmetic. */
#define AGG_TIME_MAX_S INT64_C(7258118400)

/* How a course's clock `end` is decided. */
typedef enum agg_clock_mode {
    /* end = max(latest occurred_at of the course, wall clock - lateness) */
    AGG_CLOCK_WALL = 0,
    /* end = latest occurred_at of the course (replays, backfills, tests) */
    AGG_CLOCK_EVENT = 1,
} agg_clock_mode;

/* A Timestamp as nanoseconds. False when ts is NULL or outside the accepted
 * range, or its nanos are not in [0, 1e9). */
bool agg_clock_from_timestamp(int64_t *out_ns, const Google__Protobuf__Timestamp *ts);

/* A new Timestamp holding `ns` (rt_malloc()ed; freed with its message by
 * protobuf_c_message_free_unpacked()). */
Google__Protobuf__Timestamp *agg_clock_new_timestamp(int64_t ns);

/* The UTC day of `ns` (floor division, also before 1970). */
int64_t agg_clock_day(int64_t ns);

/* "YYYY-MM-DD" of a day number (years 0-9999; the buffer is larger so any
 * day number fits). */
#define AGG_CLOCK_DATE_LEN 48
void agg_clock_date(char out[AGG_CLOCK_DATE_LEN], int64_t day);

/* The day number of the first day of the UTC month holding `day`. */
int64_t agg_clock_month_first_day(int64_t day);

/* The course clock: see agg_clock_mode. `latest_ns` is the latest
 * occurred_at seen for the course, `now_wall_ms` the wall clock. */
int64_t agg_clock_end(agg_clock_mode mode, int64_t latest_ns, int64_t now_wall_ms,
                      int64_t lateness_s);

/* True when `t` counts in the window of `window_ns` ending at `end`:
 * end - W < t <= end. */
static inline bool agg_clock_in_window(int64_t t, int64_t end, int64_t window_ns)
{
    return t > end - window_ns && t <= end;
}

#endif
