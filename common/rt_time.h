/*
 * rt_time: clocks and RFC 3339 text.
 */
#ifndef RT_TIME_H
#define RT_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

/* Wall clock, milliseconds since the Unix epoch. */
int64_t rt_time_now_ms(void);
/* Monotonic clock in nanoseconds (for latencies and timeouts). */
uint64_t rt_time_mono_ns(void);

/* Formats `unix_ms` as "2026-11-25T17:30:00.123Z" (24 chars + NUL; the
 * buffer is larger so any year fits). */
#define RT_TIME_RFC3339_LEN 64
void rt_time_format_rfc3339(char out[RT_TIME_RFC3339_LEN], int64_t unix_ms);

/* Parses RFC 3339 ("2026-11-25T17:30:00Z", fractional seconds up to
 * nanoseconds, "Z" or "+hh:mm") into seconds and nanoseconds since the epoch. */
rt_status rt_time_parse_rfc3339(int64_t *out_seconds, int32_t *out_nanos, const char *text);

#endif
