#include "agg_clock.h"

#include <stdio.h>

#include "rt_alloc.h"

bool agg_clock_from_timestamp(int64_t *out_ns, const Google__Protobuf__Timestamp *ts)
{
    if (!ts || ts->seconds < 0 || ts->seconds >= AGG_TIME_MAX_S || ts->nanos < 0 ||
        ts->nanos >= 1000000000)
        return false;
    *out_ns = ts->seconds * AGG_NS_PER_S + ts->nanos;
    return true;
}

Google__Protobuf__Timestamp *agg_clock_new_timestamp(int64_t ns)
{
    Google__Protobuf__Timestamp *ts = rt_malloc(sizeof(*ts));
    int64_t secs = ns / AGG_NS_PER_S, nanos = ns % AGG_NS_PER_S;

    google__protobuf__timestamp__init(ts);
    if (nanos < 0) {
        nanos += AGG_NS_PER_S;
        secs -= 1;
    }
    ts->seconds = secs;
    ts->nanos = (int32_t)nanos;
    return ts;
}

int64_t agg_clock_day(int64_t ns)
{
    int64_t d = ns / AGG_NS_PER_DAY;
    return (ns % AGG_NS_PER_DAY < 0) ? d - 1 : d;
}

/* Civil date of a day number (Howard Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void agg_clock_date(char out[AGG_CLOCK_DATE_LEN], int64_t day)
{
    int64_t y;
    int m, d;
    civil_from_days(day, &y, &m, &d);
    snprintf(out, AGG_CLOCK_DATE_LEN, "%04lld-%02d-%02d", (long long)y, m, d);
}

int64_t agg_clock_month_first_day(int64_t day)
{
    int64_t y;
    int m, d;
    civil_from_days(day, &y, &m, &d);
    return day - (d - 1);
}

int64_t agg_clock_end(agg_clock_mode mode, int64_t latest_ns, int64_t now_wall_ms,
                      int64_t lateness_s)
{
    if (mode == AGG_CLOCK_EVENT)
        return latest_ns;
    int64_t wall = now_wall_ms * AGG_NS_PER_MS - lateness_s * AGG_NS_PER_S;
    return wall > latest_ns ? wall : latest_ns;
}
