/*
 * rt_metrics: a Prometheus registry (counters, gauges, histograms) rendered
 * in the text exposition format for /metrics.
 *
 * Names follow unpuzzle_<service>_<thing>_<unit>. A metric is identified by
 * (name, labels); `labels` is the inside of Prometheus braces, already
 * formatted, or NULL: "reason=\"expired\"". Registering the same (name,
 * labels) again returns the same object, so code may look a labelled child up
 * at run time; hot paths keep the pointer. All metrics of one name must have
 * the same type and help text.
 *
 * Thread-safety: registration and rendering take the registry lock; updates
 * (inc/add/set/observe) are lock-free atomics, callable from any thread.
 * Ownership: metrics belong to the registry and live until
 * rt_metrics_destroy().
 */
#ifndef RT_METRICS_H
#define RT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

typedef struct rt_metrics rt_metrics;
typedef struct rt_counter rt_counter;
typedef struct rt_gauge rt_gauge;
typedef struct rt_histogram rt_histogram;

rt_status rt_metrics_create(rt_metrics **out);
void rt_metrics_destroy(rt_metrics *metrics); /* NULL is harmless */

rt_counter *rt_metrics_counter(rt_metrics *metrics, const char *name, const char *help,
                               const char *labels);
rt_gauge *rt_metrics_gauge(rt_metrics *metrics, const char *name, const char *help,
                           const char *labels);
/* A gauge whose value is read at render time by calling fn(arg) (for example
 * "is NATS connected"). fn runs on the rendering thread; it must be
 * thread-safe. */
void rt_metrics_gauge_fn(rt_metrics *metrics, const char *name, const char *help,
                         const char *labels, double (*fn)(void *arg), void *arg);
/* `bounds` are the upper bounds of the buckets, ascending (+Inf is added). */
rt_histogram *rt_metrics_histogram(rt_metrics *metrics, const char *name, const char *help,
                                   const char *labels, const double *bounds, size_t n_bounds);

/* Latency buckets in seconds from 100 us to 10 s, for *_seconds histograms. */
extern const double rt_metrics_latency_buckets[];
extern const size_t rt_metrics_latency_buckets_count;

void rt_counter_inc(rt_counter *counter);
void rt_counter_add(rt_counter *counter, uint64_t n);
uint64_t rt_counter_value(const rt_counter *counter);
void rt_gauge_set(rt_gauge *gauge, int64_t value);
void rt_gauge_add(rt_gauge *gauge, int64_t delta);
int64_t rt_gauge_value(const rt_gauge *gauge);
void rt_histogram_observe(rt_histogram *histogram, double value);
uint64_t rt_histogram_count(const rt_histogram *histogram);

/* Renders the whole registry (HELP/TYPE once per name, families sorted by
 * name). *out is malloc()ed, NUL-terminated; the caller frees it. */
rt_status rt_metrics_render(char **out, size_t *out_len, rt_metrics *metrics);

#endif
