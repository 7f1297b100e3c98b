/*
 * rt_metrics: the Prometheus registry behind /metrics.
 *
 * Layout: the registry holds families (one per metric name, kept sorted by
 * name), each holding its series (one per labels string, kept sorted by
 * labels), so rendering walks them in order and the output is deterministic.
 * Both arrays hold pointers, so a series never moves once created and the
 * pointer handed to the caller stays valid until rt_metrics_destroy().
 *
 * Locking: registration and rendering take `lock`. Updates never do: a
 * counter or gauge is one C11 atomic; a histogram is one atomic count per
 * bucket plus the sum. The sum is a double kept as its IEEE-754 bit pattern
 * in an atomic uint64 and updated with a compare-and-swap loop, so it is
 * exact for any value (negative, fractional, tiny) rather than rounded to a
 * fixed unit. A histogram's _count is the sum of its bucket counts as read
 * at render time, so +Inf always equals _count in one scrape; _sum is read
 * separately and may lag or lead by the observations made during the
 * render (the same race as other Prometheus clients).
 *
 * Callback gauges (rt_metrics_gauge_fn) are called during rendering with
 * the registry lock held: a callback must be quick and must not call into
 * the same registry. Registering a callback again for the same (name,
 * labels) replaces it.
 *
 * Misuse (an invalid name, malformed labels, the same name with another
 * type, descending bucket bounds) is a programming error. It is logged as an
 * error and the caller gets a detached metric that works but is never
 * rendered, so a typo cannot crash a service.
 */
#include "rt_metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_log.h"

const double rt_metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10};
const size_t rt_metrics_latency_buckets_count =
    sizeof(rt_metrics_latency_buckets) / sizeof(rt_metrics_latency_buckets[0]);

typedef enum metric_kind {
    KIND_COUNTER,
    KIND_GAUGE, /* plain and callback gauges */
    KIND_HISTOGRAM,
} metric_kind;

/* The common head of every series; the typed structs start with it. */
typedef struct series {
    metric_kind kind;
    char *labels; /* canonical, "" when none */
} series;

struct rt_counter {
    series head;
    _Atomic uint64_t value;
};

struct rt_gauge {
    series head;
    _Atomic int64_t value;
    double (*fn)(void *arg); /* non-NULL: read at render time */
    void *fn_arg;
};

struct rt_histogram {
    series head;
    size_t n_bounds;
    double *bounds;            /* ascending, without +Inf */
    _Atomic uint64_t *buckets; /* n_bounds + 1 non-cumulative counts; last is +Inf */
    _Atomic uint64_t sum_bits; /* a double's bits */
};

typedef struct family {
    char *name;
    char *help;
    metric_kind kind;
    series **series; /* sorted by labels */
    size_t n_series;
    size_t cap_series;
} family;

struct rt_metrics {
    pthread_mutex_t lock;
    family **families; /* sorted by name */
    size_t n_families;
    size_t cap_families;
    series **detached; /* handed out after misuse; freed, never rendered */
    size_t n_detached;
    size_t cap_detached;
};

/* ---- small helpers ---------------------------------------------------- */

static void series_free(series *s)
{
    if (!s)
        return;
    if (s->kind == KIND_HISTOGRAM) {
        rt_histogram *h = (rt_histogram *)s;
        free(h->bounds);
        free((void *)h->buckets);
    }
    free(s->labels);
    free(s);
}

static void family_free(family *f)
{
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i]);
    free(f->series);
    free(f->name);
    free(f->help);
    free(f);
}

/* Grows a pointer array to hold one more element. */
static void *grow(void *array, size_t count, size_t *cap, size_t elem_size)
{
    if (count < *cap)
        return array;
    *cap = *cap ? *cap * 2 : 8;
    return rt_realloc(array, *cap * elem_size);
}

static bool valid_metric_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != name && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* A growable string; appends never fail (rt_alloc aborts on OOM). */
typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
} strbuf;

static void sb_reserve(strbuf *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 1024;
    while (cap < sb->len + extra + 1)
        cap *= 2;
    sb->data = rt_realloc(sb->data, cap);
    sb->data[sb->len] = '\0';
    sb->cap = cap;
}

static void sb_putn(strbuf *sb, const char *s, size_t n)
{
    sb_reserve(sb, n);
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf *sb, const char *s)
{
    sb_putn(sb, s, strlen(s));
}

static void sb_putc(strbuf *sb, char c)
{
    sb_putn(sb, &c, 1);
}

static void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;

    sb_reserve(sb, 64);
    for (;;) {
        size_t room = sb->cap - sb->len;
        va_start(ap, fmt);
        int n = vsnprintf(sb->data + sb->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->data[sb->len] = '\0';
            return;
        }
        if ((size_t)n < room) {
            sb->len += (size_t)n;
            return;
        }
        sb_reserve(sb, (size_t)n);
    }
}

/*
 * Canonicalises a labels string `name="value",name="value"` so the output is
 * always valid text format: label names are checked; inside a value the
 * escapes \\ \" \n are kept, a raw newline becomes \n and any other
 * backslash is escaped. Whitespace around pairs and a trailing comma are
 * dropped. Returns a new string ("" for NULL or empty input) or NULL when the
 * string cannot be parsed (an unquoted value, an unterminated quote).
 */
static char *canonical_labels(const char *labels)
{
    strbuf sb = {0};
    const char *p = labels ? labels : "";

    sb_reserve(&sb, strlen(p));
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *name = p;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
            goto bad;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (*p >= '0' && *p <= '9'))
            p++;
        size_t name_len = (size_t)(p - name);
        while (*p == ' ')
            p++;
        if (*p++ != '=')
            goto bad;
        while (*p == ' ')
            p++;
        if (*p++ != '"')
            goto bad;
        if (sb.len)
            sb_putc(&sb, ',');
        sb_putn(&sb, name, name_len);
        sb_puts(&sb, "=\"");
        for (;;) {
            char c = *p;
            if (!c)
                goto bad;
            p++;
            if (c == '"')
                break;
            if (c == '\n') {
                sb_puts(&sb, "\\n");
            } else if (c == '\\') {
                if (*p == '\\' || *p == '"' || *p == 'n') {
                    sb_putc(&sb, '\\');
                    sb_putc(&sb, *p++);
                } else {
                    sb_puts(&sb, "\\\\");
                }
            } else {
                sb_putc(&sb, c);
            }
        }
        sb_putc(&sb, '"');
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',')
            p++;
        else if (*p)
            goto bad;
    }
    return sb.data;
bad:
    free(sb.data);
    return NULL;
}

static void help_escape(strbuf *sb, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            sb_puts(sb, "\\\\");
        else if (*p == '\n')
            sb_puts(sb, "\\n");
        else
            sb_putc(sb, *p);
    }
}

/* Formats a double the way Prometheus reads it: the shortest text that
 * parses back to the same value, and NaN, +Inf, -Inf. */
static void format_double(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, size, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(out, size, "%.*g", precision, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static const char *kind_name(metric_kind kind)
{
    switch (kind) {
    case KIND_COUNTER:
        return "counter";
    case KIND_GAUGE:
        return "gauge";
    case KIND_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

/* ---- registry --------------------------------------------------------- */

rt_status rt_metrics_create(rt_metrics **out)
{
    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_metrics_create: out is NULL");
    rt_metrics *m = rt_calloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return RT_OK;
}

void rt_metrics_destroy(rt_metrics *metrics)
{
    if (!metrics)
        return;
    for (size_t i = 0; i < metrics->n_families; i++)
        family_free(metrics->families[i]);
    free(metrics->families);
    for (size_t i = 0; i < metrics->n_detached; i++)
        series_free(metrics->detached[i]);
    free(metrics->detached);
    pthread_mutex_destroy(&metrics->lock);
    free(metrics);
}

/* Binary search; returns the index of `key` or where to insert it. */
static size_t find_family__(const rt_metrics *m, const char *name, bool *found)
{
    size_t lo = 0, hi = m->n_families;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->families[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static size_t find_series__(const family *f, const char *labels, bool *found)
{
    size_t lo = 0, hi = f->n_series;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->series[mid]->labels, labels);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static series *new_series(metric_kind kind, char *labels, const double *bounds, size_t n_bounds)
{
    series *s;
    switch (kind) {
    case KIND_COUNTER: {
        rt_counter *c = rt_calloc(1, sizeof(*c));
        atomic_init(&c->value, 0);
        s = &c->head;
        break;
    }
    case KIND_GAUGE: {
        rt_gauge *g = rt_calloc(1, sizeof(*g));
        atomic_init(&g->value, 0);
        s = &g->head;
        break;
    }
    case KIND_HISTOGRAM:
    default: {
        rt_histogram *h = rt_calloc(1, sizeof(*h));
        h->n_bounds = n_bounds;
        h->bounds = rt_malloc((n_bounds ? n_bounds : 1) * sizeof(double));
        if (n_bounds)
            memcpy(h->bounds, bounds, n_bounds * sizeof(double));
        h->buckets = rt_calloc(n_bounds + 1, sizeof(*h->buckets));
        for (size_t i = 0; i <= n_bounds; i++)
            atomic_init(&h->buckets[i], 0);
        double zero = 0.0;
        uint64_t bits;
        memcpy(&bits, &zero, sizeof(bits));
        atomic_init(&h->sum_bits, bits);
        s = &h->head;
        break;
    }
    }
    s->kind = kind;
    s->labels = labels;
    return s;
}

static series *detach__(rt_metrics *m, metric_kind kind, const double *bounds, size_t n_bounds)
{
    series *s = new_series(kind, rt_strdup(""), bounds, n_bounds);
    m->detached = grow(m->detached, m->n_detached, &m->cap_detached, sizeof(*m->detached));
    m->detached[m->n_detached++] = s;
    return s;
}

/*
 * Get-or-create for every type. Returns the series, or a detached one after
 * a logged misuse. `*existed` tells the caller whether it was already there.
 */
static series *lookup_or_create(rt_metrics *m, metric_kind kind, const char *name, const char *help,
                                const char *labels, const double *bounds, size_t n_bounds,
                                bool *existed)
{
    const char *problem = NULL;
    char *canon = NULL;
    series *s = NULL;

    *existed = false;
    if (!valid_metric_name(name))
        problem = "invalid metric name";
    else if (!(canon = canonical_labels(labels)))
        problem = "malformed labels";

    pthread_mutex_lock(&m->lock);
    if (problem)
        goto misuse;

    bool found;
    size_t fi = find_family__(m, name, &found);
    family *f;
    if (found) {
        f = m->families[fi];
        if (f->kind != kind) {
            problem = "metric name registered with another type";
            goto misuse;
        }
    } else {
        f = rt_calloc(1, sizeof(*f));
        f->name = rt_strdup(name);
        f->help = rt_strdup(help ? help : "");
        f->kind = kind;
        m->families = grow(m->families, m->n_families, &m->cap_families, sizeof(*m->families));
        memmove(&m->families[fi + 1], &m->families[fi],
                (m->n_families - fi) * sizeof(*m->families));
        m->families[fi] = f;
        m->n_families++;
    }

    size_t si = find_series__(f, canon, &found);
    if (found) {
        free(canon);
        s = f->series[si];
        *existed = true;
    } else {
        s = new_series(kind, canon, bounds, n_bounds);
        canon = NULL;
        f->series = grow(f->series, f->n_series, &f->cap_series, sizeof(*f->series));
        memmove(&f->series[si + 1], &f->series[si], (f->n_series - si) * sizeof(*f->series));
        f->series[si] = s;
        f->n_series++;
    }
    pthread_mutex_unlock(&m->lock);
    return s;

misuse:
    s = detach__(m, kind, bounds, n_bounds);
    pthread_mutex_unlock(&m->lock);
    free(canon);
    rt_log_error("metric registration refused; using a detached metric", "{s:s, s:s, s:s, s:s}",
                 "problem", problem, "name", name ? name : "(null)", "labels", labels ? labels : "",
                 "type", kind_name(kind));
    return s;
}

rt_counter *rt_metrics_counter(rt_metrics *metrics, const char *name, const char *help,
                               const char *labels)
{
    bool existed;
    if (!metrics)
        return NULL;
    return (rt_counter *)lookup_or_create(metrics, KIND_COUNTER, name, help, labels, NULL, 0,
                                          &existed);
}

rt_gauge *rt_metrics_gauge(rt_metrics *metrics, const char *name, const char *help,
                           const char *labels)
{
    bool existed;
    if (!metrics)
        return NULL;
    return (rt_gauge *)lookup_or_create(metrics, KIND_GAUGE, name, help, labels, NULL, 0, &existed);
}

void rt_metrics_gauge_fn(rt_metrics *metrics, const char *name, const char *help,
                         const char *labels, double (*fn)(void *arg), void *arg)
{
    bool existed;
    if (!metrics)
        return;
    rt_gauge *g =
        (rt_gauge *)lookup_or_create(metrics, KIND_GAUGE, name, help, labels, NULL, 0, &existed);
    /* Registering the same (name, labels) again replaces the callback; the
     * lock keeps a concurrent render from seeing fn and arg half-updated. */
    pthread_mutex_lock(&metrics->lock);
    g->fn = fn;
    g->fn_arg = arg;
    pthread_mutex_unlock(&metrics->lock);
}

rt_histogram *rt_metrics_histogram(rt_metrics *metrics, const char *name, const char *help,
                                   const char *labels, const double *bounds, size_t n_bounds)
{
    bool existed, ok = true;
    if (!metrics)
        return NULL;
    /* A trailing +Inf is implicit; drop it if the caller gave it. */
    if (n_bounds && bounds && isinf(bounds[n_bounds - 1]) && bounds[n_bounds - 1] > 0)
        n_bounds--;
    if (n_bounds && !bounds)
        ok = false;
    for (size_t i = 0; ok && i < n_bounds; i++)
        if (isnan(bounds[i]) || (i && !(bounds[i] > bounds[i - 1])))
            ok = false;
    if (!ok) {
        rt_log_error("histogram bounds must be strictly ascending; using a detached metric",
                     "{s:s}", "name", name ? name : "(null)");
        pthread_mutex_lock(&metrics->lock);
        series *s = detach__(metrics, KIND_HISTOGRAM, NULL, 0);
        pthread_mutex_unlock(&metrics->lock);
        return (rt_histogram *)s;
    }
    /* When the series exists, its first registration's bounds are kept. */
    return (rt_histogram *)lookup_or_create(metrics, KIND_HISTOGRAM, name, help, labels, bounds,
                                            n_bounds, &existed);
}

/* ---- updates (lock-free) ---------------------------------------------- */

void rt_counter_inc(rt_counter *counter)
{
    if (counter)
        atomic_fetch_add_explicit(&counter->value, 1, memory_order_relaxed);
}

void rt_counter_add(rt_counter *counter, uint64_t n)
{
    if (counter)
        atomic_fetch_add_explicit(&counter->value, n, memory_order_relaxed);
}

uint64_t rt_counter_value(const rt_counter *counter)
{
    return counter ? atomic_load_explicit(&counter->value, memory_order_relaxed) : 0;
}

void rt_gauge_set(rt_gauge *gauge, int64_t value)
{
    if (gauge)
        atomic_store_explicit(&gauge->value, value, memory_order_relaxed);
}

void rt_gauge_add(rt_gauge *gauge, int64_t delta)
{
    if (gauge)
        atomic_fetch_add_explicit(&gauge->value, delta, memory_order_relaxed);
}

int64_t rt_gauge_value(const rt_gauge *gauge)
{
    return gauge ? atomic_load_explicit(&gauge->value, memory_order_relaxed) : 0;
}

void rt_histogram_observe(rt_histogram *histogram, double value)
{
    if (!histogram)
        return;
    size_t i = 0;
    /* NaN compares false everywhere and lands in +Inf, as in other clients. */
    while (i < histogram->n_bounds && !(value <= histogram->bounds[i]))
        i++;
    atomic_fetch_add_explicit(&histogram->buckets[i], 1, memory_order_relaxed);

    uint64_t old_bits = atomic_load_explicit(&histogram->sum_bits, memory_order_relaxed);
    uint64_t new_bits;
    do {
        double sum;
        memcpy(&sum, &old_bits, sizeof(sum));
        sum += value;
        memcpy(&new_bits, &sum, sizeof(new_bits));
    } while (!atomic_compare_exchange_weak_explicit(&histogram->sum_bits, &old_bits, new_bits,
                                                    memory_order_relaxed, memory_order_relaxed));
}

uint64_t rt_histogram_count(const rt_histogram *histogram)
{
    uint64_t total = 0;
    if (!histogram)
        return 0;
    for (size_t i = 0; i <= histogram->n_bounds; i++)
        total += atomic_load_explicit(&histogram->buckets[i], memory_order_relaxed);
    return total;
}

/* ---- rendering -------------------------------------------------------- */

/* name{labels} or name{labels,extra} or name{extra} or name. */
static void put_sample_name(strbuf *sb, const char *name, const char *suffix, const char *labels,
                            const char *extra)
{
    sb_puts(sb, name);
    sb_puts(sb, suffix);
    if (!*labels && !extra)
        return;
    sb_putc(sb, '{');
    sb_puts(sb, labels);
    if (extra) {
        if (*labels)
            sb_putc(sb, ',');
        sb_puts(sb, extra);
    }
    sb_putc(sb, '}');
}

static void render_histogram(strbuf *sb, const char *name, const rt_histogram *h)
{
    char num[64], le[96];
    uint64_t cumulative = 0;

    for (size_t i = 0; i <= h->n_bounds; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds) {
            format_double(num, sizeof(num), h->bounds[i]);
            snprintf(le, sizeof(le), "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        }
        put_sample_name(sb, name, "_bucket", h->head.labels, le);
        sb_printf(sb, " %" PRIu64 "\n", cumulative);
    }
    uint64_t bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    format_double(num, sizeof(num), sum);
    put_sample_name(sb, name, "_sum", h->head.labels, NULL);
    sb_printf(sb, " %s\n", num);
    put_sample_name(sb, name, "_count", h->head.labels, NULL);
    sb_printf(sb, " %" PRIu64 "\n", cumulative);
}

static void render_family__(strbuf *sb, const family *f)
{
    char num[64];

    sb_printf(sb, "# HELP %s ", f->name);
    help_escape(sb, f->help);
    sb_printf(sb, "\n# TYPE %s %s\n", f->name, kind_name(f->kind));
    for (size_t i = 0; i < f->n_series; i++) {
        const series *s = f->series[i];
        switch (s->kind) {
        case KIND_COUNTER:
            put_sample_name(sb, f->name, "", s->labels, NULL);
            sb_printf(sb, " %" PRIu64 "\n", rt_counter_value((const rt_counter *)s));
            break;
        case KIND_GAUGE: {
            const rt_gauge *g = (const rt_gauge *)s;
            put_sample_name(sb, f->name, "", s->labels, NULL);
            if (g->fn) {
                format_double(num, sizeof(num), g->fn(g->fn_arg));
                sb_printf(sb, " %s\n", num);
            } else {
                sb_printf(sb, " %" PRId64 "\n", rt_gauge_value(g));
            }
            break;
        }
        case KIND_HISTOGRAM:
            render_histogram(sb, f->name, (const rt_histogram *)s);
            break;
        }
    }
}

rt_status rt_metrics_render(char **out, size_t *out_len, rt_metrics *metrics)
{
    strbuf sb = {0};

    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_metrics_render: out is NULL");
    sb_reserve(&sb, 0);
    if (metrics) {
        pthread_mutex_lock(&metrics->lock);
        for (size_t i = 0; i < metrics->n_families; i++)
            render_family__(&sb, metrics->families[i]);
        pthread_mutex_unlock(&metrics->lock);
    }
    *out = sb.data;
    if (out_len)
        *out_len = sb.len;
    return RT_OK;
}
