#include "rt_time.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t rt_time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t rt_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rt_time_format_rfc3339(char out[RT_TIME_RFC3339_LEN], int64_t unix_ms)
{
    int64_t secs = unix_ms / 1000;
    int64_t ms = unix_ms % 1000;
    struct tm tm;
    time_t t;

    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    t = (time_t)secs;
    gmtime_r(&t, &tm);
    snprintf(out, RT_TIME_RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
}

static int read_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so parsing needs no timegm() or TZ tricks. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Days in month `m` (1-12) of year `y` (proleptic Gregorian). */
static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

rt_status rt_time_parse_rfc3339(int64_t *out_seconds, int32_t *out_nanos, const char *text)
{
    const char *p = text;
    int year, mon, day, hour, min, sec, off_h = 0, off_m = 0, sign = 0;
    int32_t nanos = 0;

    if (!text)
        return RT_ERR(RT_ERR_INVALID_ARG, "no time given");
    if (read_digits(&p, 4, &year) || *p++ != '-' || read_digits(&p, 2, &mon) || *p++ != '-' ||
        read_digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' ') || !*p++ ||
        read_digits(&p, 2, &hour) || *p++ != ':' || read_digits(&p, 2, &min) || *p++ != ':' ||
        read_digits(&p, 2, &sec))
        return RT_ERR(RT_ERR_INVALID_ARG, "not an RFC 3339 time");
    if (*p == '.') {
        int digits = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (digits < 9) {
                nanos = nanos * 10 + (*p - '0');
                digits++;
            }
            p++;
        }
        if (digits == 0)
            return RT_ERR(RT_ERR_INVALID_ARG, "empty fraction of a second");
        while (digits++ < 9)
            nanos *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (read_digits(&p, 2, &off_h) || *p++ != ':' || read_digits(&p, 2, &off_m))
            return RT_ERR(RT_ERR_INVALID_ARG, "bad time zone offset");
    } else {
        return RT_ERR(RT_ERR_INVALID_ARG, "time zone missing");
    }
    /* Day checked against the month, so "02-30" is refused rather than
     * silently read as March 2. */
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) ||
        hour > 23 || min > 59 || sec > 60 || off_h > 23 || off_m > 59)
        return RT_ERR(RT_ERR_INVALID_ARG, "time out of range");
    if (sec == 60)
        sec = 59; /* leap second: clamp, protobuf Timestamp cannot hold it */
    *out_seconds = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec -
                   sign * (off_h * 3600 + off_m * 60);
    *out_nanos = nanos;
    return RT_OK;
}
