#include "agg_stats.h"

#include <stdio.h>
#include <stdlib.h>

#include "rt_alloc.h"

const int64_t agg_stats_learn_rate_bands[4] = {20, 35, 50, 65};
const int64_t agg_stats_execution_rate_bands[4] = {60, 75, 85, 95};

bool agg_stats_round3(double *out, agg_i128 num, agg_i128 den)
{
    if (den == 0)
        return false;
    bool negative = (num < 0) != (den < 0);
    agg_i128 n = (num < 0 ? -num : num) * 1000, d = den < 0 ? -den : den;
    /* round(n / d) with halves up, on magnitudes: floor((2n + d) / 2d). */
    agg_i128 q = (2 * n + d) / (2 * d);
    if (negative)
        q = -q;
    /* q is exact in a double (|q| < 2^53 for any figure of this service),
     * so one correctly rounded division gives the double nearest q/1000,
     * the same double a JSON reader makes of the printed decimal. */
    *out = (double)q / 1000.0;
    return true;
}

Google__Protobuf__DoubleValue *agg_stats_new_ratio(agg_i128 num, agg_i128 den)
{
    double v;
    if (!agg_stats_round3(&v, num, den))
        return NULL;
    Google__Protobuf__DoubleValue *dv = rt_malloc(sizeof(*dv));
    google__protobuf__double_value__init(dv);
    dv->value = v;
    return dv;
}

int agg_stats_compare(agg_i128 num, agg_i128 den, int64_t k)
{
    if (den < 0) {
        num = -num;
        den = -den;
    }
    agg_i128 rhs = (agg_i128)k * den;
    return num < rhs ? -1 : num > rhs ? 1 : 0;
}

const char *agg_stats_band(agg_i128 num, agg_i128 den, const int64_t limits[4])
{
    static const char *const names[] = {"poor", "fair", "good", "very_good", "excellent"};
    if (den == 0)
        return "";
    for (int i = 0; i < 4; i++) {
        if (agg_stats_compare(num, den, limits[i]) < 0)
            return names[i];
    }
    return names[4];
}

int64_t agg_stats_nearest_rank(const int64_t *sorted, size_t n, unsigned percent)
{
    size_t rank = (percent * n + 99) / 100; /* ceil(percent * n / 100) */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void agg_stats_sort_i64(int64_t *values, size_t n)
{
    if (n > 1)
        qsort(values, n, sizeof(*values), cmp_i64);
}

void agg_stats_mss(char out[AGG_STATS_MSS_LEN], uint32_t seconds)
{
    snprintf(out, AGG_STATS_MSS_LEN, "%u:%02u", seconds / 60, seconds % 60);
}
