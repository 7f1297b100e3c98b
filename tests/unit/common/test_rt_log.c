/*
 * rt_log: one JSON object per line with ts, level, service, msg and the
 * caller's fields; level filtering; a bad fields format still yields a
 * line; and URL/keyword-string redaction never lets a password through.
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

#include "rt_log.h"
#include "rt_time.h"

typedef struct capture {
    FILE *stream;
    char *buf;
    size_t len;
} capture;

static int setup(void **state)
{
    capture *c = calloc(1, sizeof(*c));
    c->stream = open_memstream(&c->buf, &c->len);
    if (!c->stream)
        return -1;
    rt_log_set_stream(c->stream);
    rt_log_init("testsvc", RT_LOG_DEBUG);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    capture *c = *state;
    rt_log_set_stream(NULL);
    fclose(c->stream);
    free(c->buf);
    free(c);
    rt_log_init("unknown", RT_LOG_INFO);
    return 0;
}

/* The captured text so far (rt_log flushes after every line). */
static const char *captured(capture *c)
{
    fflush(c->stream);
    return c->buf ? c->buf : "";
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        if (*text == '\n')
            n++;
    return n;
}

/* Parses the only captured line; fails unless there is exactly one. */
static json_t *only_line(capture *c)
{
    const char *text = captured(c);
    json_error_t err;
    assert_int_equal(count_lines(text), 1);
    assert_int_equal(text[strlen(text) - 1], '\n');
    json_t *line = json_loads(text, 0, &err);
    if (!line)
        fail_msg("not JSON (%s): %s", err.text, text);
    assert_true(json_is_object(line));
    return line;
}

static void test_line_shape(void **state)
{
    capture *c = *state;
    int64_t before = rt_time_now_ms();
    rt_log_info("nats connected", "{s:s, s:i}", "url", "nats://127.0.0.1:4222", "attempt", 3);
    int64_t after = rt_time_now_ms();

    json_t *line = only_line(c);
    /* Keys in this order, nothing else. */
    const char *keys[] = {"ts", "level", "service", "msg", "url", "attempt"};
    size_t i = 0;
    const char *key;
    json_t *value;
    json_object_foreach(line, key, value)
    {
        assert_true(i < 6);
        assert_string_equal(key, keys[i]);
        i++;
    }
    assert_int_equal(i, 6);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(line, "service")), "testsvc");
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "nats connected");
    assert_string_equal(json_string_value(json_object_get(line, "url")), "nats://127.0.0.1:4222");
    assert_int_equal(json_integer_value(json_object_get(line, "attempt")), 3);

    /* ts is RFC 3339 UTC with milliseconds, taken when the line was written. */
    const char *ts = json_string_value(json_object_get(line, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    int64_t secs;
    int32_t nanos;
    assert_int_equal(rt_time_parse_rfc3339(&secs, &nanos, ts), RT_OK);
    int64_t ms = secs * 1000 + nanos / 1000000;
    assert_true(ms >= before && ms <= after);
    json_decref(line);
}

static void test_no_fields_and_escaping(void **state)
{
    capture *c = *state;
    rt_log_warn("quote \" newline \n tab \t done", NULL);
    json_t *line = only_line(c);
    assert_int_equal(json_object_size(line), 4);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(line, "msg")),
                        "quote \" newline \n tab \t done");
    json_decref(line);
}

static void test_fields_cannot_spoof_header(void **state)
{
    capture *c = *state;
    rt_log_error("real", "{s:s, s:s, s:s, s:s}", "level", "debug", "service", "evil", "msg", "fake",
                 "room", "course:42");
    json_t *line = only_line(c);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(line, "service")), "testsvc");
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "real");
    assert_string_equal(json_string_value(json_object_get(line, "room")), "course:42");
    json_decref(line);
}

static void test_level_filtering(void **state)
{
    capture *c = *state;
    rt_log_init("testsvc", RT_LOG_WARN);
    assert_false(rt_log_enabled(RT_LOG_DEBUG));
    assert_false(rt_log_enabled(RT_LOG_INFO));
    assert_true(rt_log_enabled(RT_LOG_WARN));
    assert_true(rt_log_enabled(RT_LOG_ERROR));
    rt_log_debug("d", NULL);
    rt_log_info("i", "{s:i}", "n", 1);
    assert_string_equal(captured(c), "");
    rt_log_warn("w", NULL);
    rt_log_error("e", NULL);
    const char *text = captured(c);
    assert_int_equal(count_lines(text), 2);
    assert_non_null(strstr(text, "\"level\":\"warn\",\"service\":\"testsvc\",\"msg\":\"w\""));
    assert_non_null(strstr(text, "\"level\":\"error\",\"service\":\"testsvc\",\"msg\":\"e\""));

    rt_log_init("testsvc", RT_LOG_DEBUG);
    rt_log_debug("now visible", NULL);
    assert_int_equal(count_lines(captured(c)), 3);
    assert_non_null(strstr(captured(c), "\"level\":\"debug\""));
}

static void test_bad_format_still_logs(void **state)
{
    capture *c = *state;
    /* A NULL string value is the usual mistake: the line is kept and says why. */
    rt_log_info("lookup", "{s:s}", "user", (const char *)NULL);
    json_t *line = only_line(c);
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "lookup");
    assert_true(json_is_string(json_object_get(line, "log_format_error")));
    assert_null(json_object_get(line, "user"));
    json_decref(line);
}

static void test_bad_format_syntax(void **state)
{
    capture *c = *state;
    rt_log_info("broken", "{s:s", "k", "v");
    json_t *line = only_line(c);
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "broken");
    assert_true(json_is_string(json_object_get(line, "log_format_error")));
    json_decref(line);
}

static void test_last_error(void **state)
{
    capture *c = *state;
    (void)RT_ERR(RT_ERR_PG, "query failed: %s", "relation missing");
    rt_log_last_error("store failed");
    json_t *line = only_line(c);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "store failed");
    assert_string_equal(json_string_value(json_object_get(line, "error")), "postgres");
    assert_string_equal(json_string_value(json_object_get(line, "detail")),
                        "query failed: relation missing");
    assert_non_null(strstr(json_string_value(json_object_get(line, "origin")),
                           "test_last_error (test_rt_log.c:"));
    json_decref(line);
    rt_error_clear();
}

static void test_level_parse(void **state)
{
    (void)state;
    rt_log_level l = RT_LOG_ERROR;
    assert_int_equal(rt_log_level_parse(&l, "debug"), RT_OK);
    assert_int_equal(l, RT_LOG_DEBUG);
    assert_int_equal(rt_log_level_parse(&l, "info"), RT_OK);
    assert_int_equal(l, RT_LOG_INFO);
    assert_int_equal(rt_log_level_parse(&l, "warn"), RT_OK);
    assert_int_equal(l, RT_LOG_WARN);
    assert_int_equal(rt_log_level_parse(&l, "error"), RT_OK);
    assert_int_equal(l, RT_LOG_ERROR);
    const char *bad[] = {"", "warning", "trace", "fatal", "info ", "DEBUG"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l = RT_LOG_INFO;
        assert_int_equal(rt_log_level_parse(&l, bad[i]), RT_ERR_CONFIG);
        assert_int_equal(l, RT_LOG_INFO);
    }
}

static void assert_redacted(const char *in, const char *expected)
{
    char out[256];
    memset(out, '#', sizeof(out));
    rt_log_redact_url(out, sizeof(out), in);
    if (strcmp(out, expected) != 0)
        fail_msg("redact(\"%s\") = \"%s\", want \"%s\"", in, out, expected);
}

static void test_redact(void **state)
{
    (void)state;
    assert_redacted("postgresql://user:pw@host/db", "postgresql://user:***@host/db");
    assert_redacted("postgres://app:s3cr3t@db.internal:5432/unpuzzle?sslmode=require",
                    "postgres://app:***@db.internal:5432/unpuzzle?sslmode=require");
    assert_redacted("host=x password=y user=z", "host=x password=*** user=z");
    assert_redacted("password=y host=x", "password=*** host=x");
    assert_redacted("host=x password=y", "host=x password=***");
    /* Nothing secret: unchanged (a port's colon is not a password). */
    assert_redacted("nats://127.0.0.1:4222", "nats://127.0.0.1:4222");
    assert_redacted("postgresql://user@host:5432/db", "postgresql://user@host:5432/db");
    assert_redacted("host=x user=z dbname=d", "host=x user=z dbname=d");
    assert_redacted("", "");
    assert_redacted("nats://token@127.0.0.1:4222", "nats://token@127.0.0.1:4222");
}

static void test_redact_never_leaks(void **state)
{
    (void)state;
    /* Each input carries secrets named SECRET...; none may survive. */
    static const struct {
        const char *in, *expected;
    } cases[] = {
        /* NATS_URL is a list: every URL's password is hidden. */
        {"nats://a:SECRET1@h1:4222,nats://b:SECRET2@h2:4222",
         "nats://a:***@h1:4222,nats://b:***@h2:4222"},
        {"nats://h1:4222, tls://b:SECRET2@h2:4222", "nats://h1:4222, tls://b:***@h2:4222"},
        /* A password containing ':' or '@' (user ends at the first ':'). */
        {"postgresql://u:SEC:RET@host/db", "postgresql://u:***@host/db"},
        {"postgresql://u:SEC@RET@host/db", "postgresql://u:***@host/db"},
        /* Multi-host libpq URL. */
        {"postgresql://u:SECRET@h1:5432,h2:5432/db", "postgresql://u:***@h1:5432,h2:5432/db"},
        /* Password in the query string. */
        {"postgresql://host/db?user=u&password=SECRET", "postgresql://host/db?user=u&password=***"},
        /* libpq keyword forms: spaces around '=', quoted values. */
        {"host=x password = SECRET user=z", "host=x password=*** user=z"},
        {"host=x password='SEC RET' user=z", "host=x password=*** user=z"},
        {"host=x password='SEC\\' RET' user=z", "host=x password=*** user=z"},
        {"host=x sslpassword=SECRET", "host=x sslpassword=***"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        rt_log_redact_url(out, sizeof(out), cases[i].in);
        if (strstr(out, "SEC") || strstr(out, "RET"))
            fail_msg("redact(\"%s\") leaked: \"%s\"", cases[i].in, out);
        assert_redacted(cases[i].in, cases[i].expected);
    }
}

static void test_redact_small_buffer(void **state)
{
    (void)state;
    char out[12];
    memset(out, '#', sizeof(out));
    rt_log_redact_url(out, sizeof(out), "postgresql://user:pw@host/db");
    assert_int_equal(strlen(out), sizeof(out) - 1);
    assert_string_equal(out, "postgresql:");
    char one[1] = {'#'};
    rt_log_redact_url(one, sizeof(one), "postgresql://user:pw@host/db");
    assert_int_equal(one[0], '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fields_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_cannot_spoof_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_format_still_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_format_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_error, setup, teardown),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_redact_never_leaks),
        cmocka_unit_test(test_redact_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
