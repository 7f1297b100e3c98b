/*
 * rt_metrics: exact Prometheus text for each metric type, label and help
 * escaping, get-or-create identity, misuse handling, and exact totals under
 * concurrent updates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "rt_log.h"
#include "rt_metrics.h"

static char *render(rt_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rt_metrics_render(&text, &len, m), RT_OK);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    return text;
}

static void assert_render(rt_metrics *m, const char *expected)
{
    char *text = render(m);
    assert_string_equal(text, expected);
    free(text);
}

static void test_empty_registry(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    assert_render(m, "");
    assert_render(NULL, "");
    rt_metrics_destroy(m);
    rt_metrics_destroy(NULL);
}

static void test_counter_with_labels(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_counter *ok =
        rt_metrics_counter(m, "unpuzzle_auth_tokens_total", "Tokens checked.", "result=\"ok\"");
    rt_counter *expired = rt_metrics_counter(m, "unpuzzle_auth_tokens_total", "Tokens checked.",
                                             "result=\"expired\"");
    rt_counter *plain = rt_metrics_counter(m, "unpuzzle_auth_requests_total", "Requests.", NULL);
    rt_counter_add(ok, 3);
    rt_counter_inc(expired);
    rt_counter_add(plain, 1234567890123ULL);
    assert_int_equal(rt_counter_value(ok), 3);

    assert_render(m, "# HELP unpuzzle_auth_requests_total Requests.\n"
                     "# TYPE unpuzzle_auth_requests_total counter\n"
                     "unpuzzle_auth_requests_total 1234567890123\n"
                     "# HELP unpuzzle_auth_tokens_total Tokens checked.\n"
                     "# TYPE unpuzzle_auth_tokens_total counter\n"
                     "unpuzzle_auth_tokens_total{result=\"expired\"} 1\n"
                     "unpuzzle_auth_tokens_total{result=\"ok\"} 3\n");
    rt_metrics_destroy(m);
}

static void test_gauge(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_gauge *g = rt_metrics_gauge(m, "unpuzzle_edge_connections", "Open sockets.", NULL);
    rt_gauge_set(g, 5);
    rt_gauge_add(g, -7);
    assert_int_equal(rt_gauge_value(g), -2);
    assert_render(m, "# HELP unpuzzle_edge_connections Open sockets.\n"
                     "# TYPE unpuzzle_edge_connections gauge\n"
                     "unpuzzle_edge_connections -2\n");
    rt_metrics_destroy(m);
}

static int fn_calls;

static double fn_value(void *arg)
{
    fn_calls++;
    return *(double *)arg;
}

static void test_gauge_fn(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    double connected = 1.0, ratio = 0.5;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_metrics_gauge_fn(m, "unpuzzle_auth_nats_connected", "1 when NATS is connected.", NULL,
                        fn_value, &connected);
    rt_metrics_gauge_fn(m, "unpuzzle_auth_pool_ratio", "Pool use.", "pool=\"pg\"", fn_value,
                        &ratio);
    fn_calls = 0;
    assert_render(m, "# HELP unpuzzle_auth_nats_connected 1 when NATS is connected.\n"
                     "# TYPE unpuzzle_auth_nats_connected gauge\n"
                     "unpuzzle_auth_nats_connected 1\n"
                     "# HELP unpuzzle_auth_pool_ratio Pool use.\n"
                     "# TYPE unpuzzle_auth_pool_ratio gauge\n"
                     "unpuzzle_auth_pool_ratio{pool=\"pg\"} 0.5\n");
    assert_int_equal(fn_calls, 2);

    /* Read at render time, not at registration. */
    connected = 0.0;
    char *text = render(m);
    assert_non_null(strstr(text, "unpuzzle_auth_nats_connected 0\n"));
    free(text);
    assert_int_equal(fn_calls, 4);
    rt_metrics_destroy(m);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = {0.5, 1, 5};
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_histogram *h = rt_metrics_histogram(m, "unpuzzle_edge_join_seconds", "Join latency.",
                                           "op=\"join\"", bounds, 3);
    /* 0.5 is on a bound: le is inclusive. */
    const double values[] = {0.25, 0.5, 0.75, 2, 8};
    for (size_t i = 0; i < 5; i++)
        rt_histogram_observe(h, values[i]);
    assert_int_equal(rt_histogram_count(h), 5);

    assert_render(m, "# HELP unpuzzle_edge_join_seconds Join latency.\n"
                     "# TYPE unpuzzle_edge_join_seconds histogram\n"
                     "unpuzzle_edge_join_seconds_bucket{op=\"join\",le=\"0.5\"} 2\n"
                     "unpuzzle_edge_join_seconds_bucket{op=\"join\",le=\"1\"} 3\n"
                     "unpuzzle_edge_join_seconds_bucket{op=\"join\",le=\"5\"} 4\n"
                     "unpuzzle_edge_join_seconds_bucket{op=\"join\",le=\"+Inf\"} 5\n"
                     "unpuzzle_edge_join_seconds_sum{op=\"join\"} 11.5\n"
                     "unpuzzle_edge_join_seconds_count{op=\"join\"} 5\n");
    rt_metrics_destroy(m);
}

static void test_histogram_unlabelled_and_latency_buckets(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    assert_int_equal(rt_metrics_latency_buckets_count, 16);
    rt_histogram *h = rt_metrics_histogram(m, "x_seconds", "X.", NULL, rt_metrics_latency_buckets,
                                           rt_metrics_latency_buckets_count);
    rt_histogram_observe(h, 0.003);
    assert_render(m, "# HELP x_seconds X.\n"
                     "# TYPE x_seconds histogram\n"
                     "x_seconds_bucket{le=\"0.0001\"} 0\n"
                     "x_seconds_bucket{le=\"0.00025\"} 0\n"
                     "x_seconds_bucket{le=\"0.0005\"} 0\n"
                     "x_seconds_bucket{le=\"0.001\"} 0\n"
                     "x_seconds_bucket{le=\"0.0025\"} 0\n"
                     "x_seconds_bucket{le=\"0.005\"} 1\n"
                     "x_seconds_bucket{le=\"0.01\"} 1\n"
                     "x_seconds_bucket{le=\"0.025\"} 1\n"
                     "x_seconds_bucket{le=\"0.05\"} 1\n"
                     "x_seconds_bucket{le=\"0.1\"} 1\n"
                     "x_seconds_bucket{le=\"0.25\"} 1\n"
                     "x_seconds_bucket{le=\"0.5\"} 1\n"
                     "x_seconds_bucket{le=\"1\"} 1\n"
                     "x_seconds_bucket{le=\"2.5\"} 1\n"
                     "x_seconds_bucket{le=\"5\"} 1\n"
                     "x_seconds_bucket{le=\"10\"} 1\n"
                     "x_seconds_bucket{le=\"+Inf\"} 1\n"
                     "x_seconds_sum 0.003\n"
                     "x_seconds_count 1\n");
    rt_metrics_destroy(m);
}

static void test_histogram_trailing_inf_and_no_bounds(void **state)
{
    (void)state;
    static const double with_inf[] = {1, __builtin_inf()};
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_histogram *a = rt_metrics_histogram(m, "a", "A.", NULL, with_inf, 2);
    rt_histogram *b = rt_metrics_histogram(m, "b", "B.", NULL, NULL, 0);
    rt_histogram_observe(a, 2);
    rt_histogram_observe(b, -1.5);
    assert_render(m, "# HELP a A.\n# TYPE a histogram\n"
                     "a_bucket{le=\"1\"} 0\n"
                     "a_bucket{le=\"+Inf\"} 1\n"
                     "a_sum 2\n"
                     "a_count 1\n"
                     "# HELP b B.\n# TYPE b histogram\n"
                     "b_bucket{le=\"+Inf\"} 1\n"
                     "b_sum -1.5\n"
                     "b_count 1\n");
    rt_metrics_destroy(m);
}

static void test_label_and_help_escaping(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    /* A lone backslash, a raw newline, and an already escaped quote. */
    rt_counter *c = rt_metrics_counter(m, "esc_total", "Line one\nback\\slash.",
                                       "path=\"C:\\dir\",msg=\"a\nb\",q=\"say \\\"hi\\\"\"");
    rt_counter_inc(c);
    assert_render(m, "# HELP esc_total Line one\\nback\\\\slash.\n"
                     "# TYPE esc_total counter\n"
                     "esc_total{path=\"C:\\\\dir\",msg=\"a\\nb\",q=\"say \\\"hi\\\"\"} 1\n");

    /* The escaped form names the same series. */
    rt_counter *same = rt_metrics_counter(m, "esc_total", "Line one\nback\\slash.",
                                          "path=\"C:\\\\dir\",msg=\"a\\nb\",q=\"say \\\"hi\\\"\"");
    assert_ptr_equal(c, same);
    rt_metrics_destroy(m);
}

static void test_get_or_create_identity(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    rt_counter *a = rt_metrics_counter(m, "c_total", "C.", "k=\"1\",j=\"2\"");
    rt_counter *b = rt_metrics_counter(m, "c_total", "C.", " k = \"1\" , j=\"2\" ");
    rt_counter *other = rt_metrics_counter(m, "c_total", "C.", "k=\"2\"");
    rt_counter *none = rt_metrics_counter(m, "c_total", "C.", NULL);
    rt_counter *empty = rt_metrics_counter(m, "c_total", "C.", "");
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, other);
    assert_ptr_equal(none, empty);
    rt_counter_inc(a);
    rt_counter_inc(b);
    assert_int_equal(rt_counter_value(a), 2);

    rt_gauge *g1 = rt_metrics_gauge(m, "g", "G.", NULL);
    rt_gauge *g2 = rt_metrics_gauge(m, "g", "G.", NULL);
    assert_ptr_equal(g1, g2);
    static const double bounds[] = {1, 2};
    rt_histogram *h1 = rt_metrics_histogram(m, "h", "H.", NULL, bounds, 2);
    rt_histogram *h2 = rt_metrics_histogram(m, "h", "H.", NULL, bounds, 2);
    assert_ptr_equal(h1, h2);

    /* Families sorted by name, series by labels; HELP/TYPE once per name. */
    assert_render(m, "# HELP c_total C.\n# TYPE c_total counter\n"
                     "c_total 0\n"
                     "c_total{k=\"1\",j=\"2\"} 2\n"
                     "c_total{k=\"2\"} 0\n"
                     "# HELP g G.\n# TYPE g gauge\n"
                     "g 0\n"
                     "# HELP h H.\n# TYPE h histogram\n"
                     "h_bucket{le=\"1\"} 0\n"
                     "h_bucket{le=\"2\"} 0\n"
                     "h_bucket{le=\"+Inf\"} 0\n"
                     "h_sum 0\n"
                     "h_count 0\n");
    rt_metrics_destroy(m);
}

static void test_misuse_is_detached_and_logged(void **state)
{
    (void)state;
    rt_metrics *m = NULL;
    FILE *log = tmpfile();
    assert_non_null(log);
    rt_log_set_stream(log);
    assert_int_equal(rt_metrics_create(&m), RT_OK);

    rt_counter *c = rt_metrics_counter(m, "dup", "D.", NULL);
    rt_gauge *wrong_type = rt_metrics_gauge(m, "dup", "D.", NULL);
    rt_counter *bad_name = rt_metrics_counter(m, "1bad-name", "B.", NULL);
    rt_counter *bad_labels = rt_metrics_counter(m, "ok_total", "B.", "unquoted=1");
    static const double descending[] = {2, 1};
    rt_histogram *bad_bounds = rt_metrics_histogram(m, "hist", "H.", NULL, descending, 2);
    assert_non_null(wrong_type);
    assert_non_null(bad_name);
    assert_non_null(bad_labels);
    assert_non_null(bad_bounds);
    /* Detached metrics still work... */
    rt_gauge_set(wrong_type, 7);
    rt_counter_inc(bad_name);
    rt_counter_inc(bad_labels);
    rt_histogram_observe(bad_bounds, 1);
    assert_int_equal(rt_gauge_value(wrong_type), 7);
    assert_int_equal(rt_histogram_count(bad_bounds), 1);
    rt_counter_inc(c);
    /* ...but are never rendered. */
    assert_render(m, "# HELP dup D.\n# TYPE dup counter\ndup 1\n");

    rt_log_set_stream(NULL);
    long size = ftell(log);
    assert_true(size > 0);
    char *lines = calloc(1, (size_t)size + 1);
    rewind(log);
    assert_int_equal(fread(lines, 1, (size_t)size, log), (size_t)size);
    assert_non_null(strstr(lines, "\"level\":\"error\""));
    assert_non_null(strstr(lines, "another type"));
    assert_non_null(strstr(lines, "invalid metric name"));
    assert_non_null(strstr(lines, "malformed labels"));
    assert_non_null(strstr(lines, "ascending"));
    free(lines);
    fclose(log);

    /* NULL registry and NULL metrics are harmless. */
    assert_null(rt_metrics_counter(NULL, "x", "X.", NULL));
    rt_counter_inc(NULL);
    rt_gauge_add(NULL, 1);
    rt_histogram_observe(NULL, 1);
    assert_int_equal(rt_counter_value(NULL), 0);
    rt_metrics_destroy(m);
}

#define THREADS 4
#define PER_THREAD 200000

typedef struct worker_args {
    rt_metrics *metrics;
    rt_counter *counter;
    rt_gauge *gauge;
    rt_histogram *histogram;
} worker_args;

static atomic_int lookup_mismatches;

static void *worker(void *arg)
{
    worker_args *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        rt_counter_inc(w->counter);
        rt_gauge_add(w->gauge, 1);
        rt_gauge_add(w->gauge, -1);
        rt_histogram_observe(w->histogram, 0.5);
        /* Lookups race with updates and renders (cmocka asserts are not
         * thread-safe, so count mismatches instead). */
        if (i % 20000 == 0 &&
            rt_metrics_counter(w->metrics, "hits_total", "Hits.", NULL) != w->counter)
            atomic_fetch_add(&lookup_mismatches, 1);
    }
    return NULL;
}

static atomic_bool render_stop;

static void *renderer(void *arg)
{
    while (!atomic_load(&render_stop)) {
        char *text = render(arg);
        free(text);
    }
    return NULL;
}

static void test_concurrent_updates_exact(void **state)
{
    (void)state;
    static const double bounds[] = {0.25, 1};
    rt_metrics *m = NULL;
    assert_int_equal(rt_metrics_create(&m), RT_OK);
    worker_args w = {
        .metrics = m,
        .counter = rt_metrics_counter(m, "hits_total", "Hits.", NULL),
        .gauge = rt_metrics_gauge(m, "busy", "Busy.", NULL),
        .histogram = rt_metrics_histogram(m, "lat_seconds", "Lat.", NULL, bounds, 2),
    };
    pthread_t threads[THREADS], render_thread;
    atomic_store(&render_stop, false);
    atomic_store(&lookup_mismatches, 0);
    assert_int_equal(pthread_create(&render_thread, NULL, renderer, m), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, worker, &w), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    atomic_store(&render_stop, true);
    pthread_join(render_thread, NULL);

    assert_int_equal(atomic_load(&lookup_mismatches), 0);
    assert_int_equal(rt_counter_value(w.counter), (uint64_t)THREADS * PER_THREAD);
    assert_int_equal(rt_gauge_value(w.gauge), 0);
    assert_int_equal(rt_histogram_count(w.histogram), (uint64_t)THREADS * PER_THREAD);
    char *text = render(m);
    /* 0.5 * 800000 is exact in binary: the CAS sum loses nothing. */
    assert_non_null(strstr(text, "hits_total 800000\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"0.25\"} 0\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"1\"} 800000\n"));
    assert_non_null(strstr(text, "lat_seconds_sum 400000\n"));
    assert_non_null(strstr(text, "lat_seconds_count 800000\n"));
    free(text);
    rt_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_counter_with_labels),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_gauge_fn),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_unlabelled_and_latency_buckets),
        cmocka_unit_test(test_histogram_trailing_inf_and_no_bounds),
        cmocka_unit_test(test_label_and_help_escaping),
        cmocka_unit_test(test_get_or_create_identity),
        cmocka_unit_test(test_misuse_is_detached_and_logged),
        cmocka_unit_test(test_concurrent_updates_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
