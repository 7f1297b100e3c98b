/*
 * The fixed event log tests/fixtures/analytics/events.jsonl (one event per
 * line, in arrival order) against the hand-computed metrics next to it,
 * expected.json (how each number was computed: README.md there). The
 * engine's CourseMetrics for course-1 must equal them exactly, field by
 * field, and every line's outcome (applied, late, duplicate, ignored) must
 * be the one the log says. The same must hold when the course is saved and
 * loaded into a new engine after every event, when the engine prunes after
 * every event, and in wall-clock mode with the wall clock just past the log.
 *
 * Configuration: window 3600 s, lateness 120 s, metrics computed at wall
 * clock 2026-03-10T12:00:05Z (presence is kept 3 x its 10 s interval).
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
#include <jansson.h>

#include "agg_engine.h"
#include "agg_events.h"
#include "agg_presence.h"
#include "rt_alloc.h"
#include "rt_pbjson.h"
#include "rt_time.h"

#define FIXTURE_DIR RT_SOURCE_DIR "/tests/fixtures/analytics"
#define COURSE_ID "course-1"
#define NOW_TEXT "2026-03-10T12:00:05Z"

typedef struct log_line {
    int number;
    bool presence; /* a PresenceUpdate rather than an event */
    ProtobufCMessage *msg;
    int64_t received_ms;
    agg_outcome expect;
} log_line;

static log_line *lines;
static size_t n_lines;
static int64_t now_ms;

static int64_t parse_time_ms(const char *text)
{
    int64_t secs;
    int32_t nanos;
    assert_int_equal(rt_time_parse_rfc3339(&secs, &nanos, text), RT_OK);
    return secs * 1000 + nanos / 1000000;
}

static agg_outcome outcome_named(const char *name)
{
    static const agg_outcome all[] = {AGG_APPLIED,         AGG_APPLIED_LATE, AGG_DUPLICATE,
                                      AGG_REJECTED_FUTURE, AGG_IGNORED,      AGG_INVALID};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(agg_outcome_name(all[i]), name) == 0)
            return all[i];
    }
    fail_msg("unknown outcome %s", name);
    return AGG_INVALID;
}

/* Reads the log once for every test: {"subject", "event", "outcome"?,
 * "receivedAt"? (presence), "note"?} per line. */
static int load_log(void **state)
{
    FILE *f = fopen(FIXTURE_DIR "/events.jsonl", "r");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    (void)state;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", FIXTURE_DIR "/events.jsonl");
        return -1;
    }
    now_ms = parse_time_ms(NOW_TEXT);
    while ((len = getline(&buf, &cap, f)) >= 0) {
        json_error_t jerr;
        char err[256] = "";
        if (len <= 1)
            continue;
        json_t *obj = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj) {
            fprintf(stderr, "events.jsonl:%zu: %s\n", n_lines + 1, jerr.text);
            return -1;
        }
        lines = rt_realloc(lines, (n_lines + 1) * sizeof(*lines));
        log_line *l = &lines[n_lines++];
        memset(l, 0, sizeof(*l));
        l->number = (int)n_lines;
        const char *subject = json_string_value(json_object_get(obj, "subject"));
        const char *outcome = json_string_value(json_object_get(obj, "outcome"));
        const ProtobufCMessageDescriptor *desc;
        if (subject && strncmp(subject, "presence.v1.edge.", 17) == 0) {
            l->presence = true;
            desc = &unpuzzle__rt__v1__presence_update__descriptor;
            l->received_ms = parse_time_ms(json_string_value(json_object_get(obj, "receivedAt")));
        } else {
            desc = agg_event_descriptor(subject);
        }
        if (!desc) {
            fprintf(stderr, "events.jsonl:%d: unknown subject\n", l->number);
            return -1;
        }
        if (rt_pbjson_from_json(&l->msg, desc, json_object_get(obj, "event"), NULL, err,
                                sizeof(err)) != RT_OK) {
            fprintf(stderr, "events.jsonl:%d: %s\n", l->number, err);
            return -1;
        }
        l->expect = outcome ? outcome_named(outcome) : AGG_APPLIED;
        json_decref(obj);
    }
    free(buf);
    fclose(f);
    return n_lines > 0 ? 0 : -1;
}

static int free_log(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_lines; i++)
        protobuf_c_message_free_unpacked(lines[i].msg, NULL);
    free(lines);
    return 0;
}

/* The expected metrics, through the protobuf type and back, so the
 * comparison sees exactly the fields and the JSON shape of CourseMetrics. */
static json_t *expected_json(void)
{
    json_error_t jerr;
    char err[256] = "";
    ProtobufCMessage *m = NULL;
    json_t *in = json_load_file(FIXTURE_DIR "/expected.json", JSON_REJECT_DUPLICATES, &jerr);
    if (!in)
        fail_msg("expected.json:%d: %s", jerr.line, jerr.text);
    if (rt_pbjson_from_json(&m, &unpuzzle__rt__v1__course_metrics__descriptor, in, NULL, err,
                            sizeof(err)) != RT_OK)
        fail_msg("expected.json: %s", err);
    json_t *out = NULL;
    assert_int_equal(rt_pbjson_to_json(&out, m, 0), RT_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(in);
    return out;
}

/* Prints every path where two JSON values differ. */
static void print_diff(const char *path, const json_t *want, const json_t *got)
{
    if (json_equal(want, got))
        return;
    if (json_is_object(want) && json_is_object(got)) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)want, key, v)
        {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.%s", path, key);
            print_diff(sub, v, json_object_get(got, key));
        }
        json_object_foreach((json_t *)got, key, v)
        {
            if (!json_object_get(want, key))
                fprintf(stderr, "  %s.%s: unexpected\n", path, key);
        }
        return;
    }
    if (json_is_array(want) && json_is_array(got) &&
        json_array_size(want) == json_array_size(got)) {
        for (size_t i = 0; i < json_array_size(want); i++) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            print_diff(sub, json_array_get(want, i), json_array_get(got, i));
        }
        return;
    }
    char *w =
        want ? json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    char *g =
        got ? json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    fprintf(stderr, "  %s: want %s, got %s\n", path, w ? w : "(missing)", g ? g : "(missing)");
    free(w);
    free(g);
}

static void assert_matches_expected(agg_engine *e, const agg_presence *presence)
{
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    json_t *got = NULL, *want = expected_json();
    assert_int_equal(agg_engine_compute(&m, e, COURSE_ID, now_ms, presence), RT_OK);
    assert_int_equal(rt_pbjson_to_json(&got, &m->base, 0), RT_OK);
    agg_metrics_free(m);
    if (!json_equal(want, got)) {
        fprintf(stderr, "CourseMetrics differ from expected.json:\n");
        print_diff("", want, got);
        json_decref(want);
        json_decref(got);
        fail();
    }
    json_decref(want);
    json_decref(got);
}

static agg_engine *new_fixture_engine(agg_clock_mode mode)
{
    agg_config cfg;
    agg_engine *e = NULL;
    agg_config_defaults(&cfg);
    cfg.clock = mode;
    cfg.window_s = 3600;
    cfg.lateness_s = 120;
    assert_int_equal(agg_engine_create(&e, &cfg), RT_OK);
    return e;
}

/* Saves every course of *e, loads them into a new engine that replaces it. */
static void reload(agg_engine **e)
{
    agg_engine *to = new_fixture_engine(agg_engine_config(*e)->clock);
    const char *courses[] = {"course-1", "course-2"};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (agg_engine_save_course(&data, &len, *e, courses[i]) != RT_OK)
            continue;
        assert_int_equal(agg_engine_load_course(to, data, len, NULL), RT_OK);
        free(data);
    }
    agg_engine_destroy(*e);
    *e = to;
}

enum { RUN_STRAIGHT, RUN_RELOADING, RUN_PRUNING, RUN_WALL };

static void run(int how)
{
    agg_engine *e = new_fixture_engine(how == RUN_WALL ? AGG_CLOCK_WALL : AGG_CLOCK_EVENT);
    agg_presence *presence = NULL;
    assert_int_equal(agg_presence_create(&presence), RT_OK);

    for (size_t i = 0; i < n_lines; i++) {
        const log_line *l = &lines[i];
        if (l->presence) {
            assert_int_equal(agg_presence_apply(presence, (const void *)l->msg, l->received_ms),
                             RT_OK);
            continue;
        }
        agg_outcome out = AGG_INVALID;
        agg_arrival arrival = {now_ms, (uint64_t)l->number};
        rt_status rc = agg_engine_apply(&out, e, l->msg, &arrival);
        if (rc != RT_OK)
            fail_msg("events.jsonl:%d: %s", l->number, rt_error_message());
        /* In wall mode the other course's event (13:00) is too far ahead
         * of the wall clock (12:00:05): rejected, which course-1 never sees. */
        agg_outcome want = l->expect;
        if (how == RUN_WALL &&
            l->msg->descriptor == &unpuzzle__rt__v1__purchase_completed__descriptor &&
            strcmp(((const Unpuzzle__Rt__V1__PurchaseCompleted *)l->msg)->course_id, "course-2") ==
                0)
            want = AGG_REJECTED_FUTURE;
        if (out != want)
            fail_msg("events.jsonl:%d: outcome %s, the log says %s", l->number,
                     agg_outcome_name(out), agg_outcome_name(want));
        if (how == RUN_RELOADING)
            reload(&e);
        if (how == RUN_PRUNING)
            agg_engine_prune(e, now_ms);
    }
    assert_matches_expected(e, presence);

    if (how == RUN_STRAIGHT) {
        /* The engine's counters agree with the log's outcomes. */
        agg_engine_stats st;
        uint64_t late = 0, duplicates = 0, ignored = 0;
        agg_engine_stats_get(&st, e);
        for (size_t i = 0; i < n_lines; i++) {
            late += !lines[i].presence && lines[i].expect == AGG_APPLIED_LATE;
            duplicates += !lines[i].presence && lines[i].expect == AGG_DUPLICATE;
            ignored += !lines[i].presence && lines[i].expect == AGG_IGNORED;
        }
        assert_int_equal(st.late, late);
        assert_int_equal(st.duplicates, duplicates);
        assert_int_equal(st.ignored, ignored);
        assert_int_equal(st.invalid, 0);
        print_message("%zu lines: %llu late, %llu duplicates, %llu ignored\n", n_lines,
                      (unsigned long long)late, (unsigned long long)duplicates,
                      (unsigned long long)ignored);
    }
    agg_presence_destroy(presence);
    agg_engine_destroy(e);
}

static void test_fixture_matches_hand_computed(void **state)
{
    (void)state;
    run(RUN_STRAIGHT);
}

static void test_fixture_saved_and_loaded_after_every_event(void **state)
{
    (void)state;
    run(RUN_RELOADING);
}

static void test_fixture_pruned_after_every_event(void **state)
{
    (void)state;
    run(RUN_PRUNING);
}

static void test_fixture_in_wall_clock_mode(void **state)
{
    (void)state;
    /* end = max(12:00:00, 12:00:05 - 120 s) = 12:00:00: the same figures. */
    run(RUN_WALL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_matches_hand_computed),
        cmocka_unit_test(test_fixture_saved_and_loaded_after_every_event),
        cmocka_unit_test(test_fixture_pruned_after_every_event),
        cmocka_unit_test(test_fixture_in_wall_clock_mode),
    };
    return cmocka_run_group_tests(tests, load_log, free_log);
}
