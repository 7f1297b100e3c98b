/*
 * rt_config: a service's table of environment variables is loaded with
 * defaults, types and bounds; a bad or missing value stops the service
 * with a message that names the variable and leaves nothing allocated;
 * the logged configuration never shows a secret or a URL password.
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
#include <sys/stat.h>
#include <unistd.h>

#include "rt_config.h"
#include "rt_log.h"

typedef struct test_config {
    char *nats_url;
    char *database_url;
    char *jwt_secret;
    char *log_level;
    char *keys_file;
    char *label; /* optional, no default */
    int64_t admin_port;
    int64_t workers;
    int64_t plain_int; /* no default */
    bool debug;
    bool tls;
} test_config;

static const rt_config_var vars[] = {
    RT_CFG_STR(test_config, nats_url, "RTT_NATS_URL", "nats://127.0.0.1:4222", 0,
               rt_config_check_nats_url, "NATS server URL(s)"),
    RT_CFG_STR(test_config, database_url, "RTT_DATABASE_URL", NULL, RT_CFG_REQUIRED,
               rt_config_check_postgres_url, "PostgreSQL connection"),
    RT_CFG_STR(test_config, jwt_secret, "RTT_JWT_SECRET", NULL, RT_CFG_SECRET, NULL,
               "HS256 secret"),
    RT_CFG_STR(test_config, log_level, "RTT_LOG_LEVEL", "info", 0, rt_config_check_log_level,
               "debug|info|warn|error"),
    RT_CFG_STR(test_config, keys_file, "RTT_KEYS_FILE", NULL, 0, rt_config_check_optional_file,
               "JWKS file"),
    RT_CFG_STR(test_config, label, "RTT_LABEL", NULL, 0, NULL, "free text"),
    RT_CFG_INT(test_config, admin_port, "RTT_ADMIN_PORT", "9101", 0, 0, 65535, "admin port"),
    RT_CFG_INT(test_config, workers, "RTT_WORKERS", "4", 0, 1, 64, "worker threads"),
    RT_CFG_INT(test_config, plain_int, "RTT_PLAIN_INT", NULL, 0, -5, 5, "small number"),
    RT_CFG_BOOL(test_config, debug, "RTT_DEBUG", "false", "debug mode"),
    RT_CFG_BOOL(test_config, tls, "RTT_TLS", NULL, "TLS"),
};
#define N_VARS (sizeof(vars) / sizeof(vars[0]))

static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_VARS; i++)
        unsetenv(vars[i].name);
    setenv("RTT_DATABASE_URL", "postgresql://app@db/unpuzzle", 1);
    rt_error_clear();
    return 0;
}

/* Loads and expects failure with exactly `message`; the struct's strings
 * must all be NULL afterwards (ASan reports any leak). */
static void assert_load_fails(const char *message)
{
    test_config c;
    memset(&c, 0x5a, sizeof(c)); /* garbage, as a stack struct would hold */
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_ERR_CONFIG);
    assert_int_equal(rt_error_status(), RT_ERR_CONFIG);
    assert_string_equal(rt_error_message(), message);
    assert_null(c.nats_url);
    assert_null(c.database_url);
    assert_null(c.jwt_secret);
    assert_null(c.log_level);
    assert_null(c.keys_file);
    assert_null(c.label);
}

static void test_defaults(void **state)
{
    (void)state;
    test_config c;
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
    assert_string_equal(c.nats_url, "nats://127.0.0.1:4222");
    assert_string_equal(c.database_url, "postgresql://app@db/unpuzzle");
    /* Optional strings without a default are "", never NULL. */
    assert_non_null(c.jwt_secret);
    assert_string_equal(c.jwt_secret, "");
    assert_string_equal(c.log_level, "info");
    assert_string_equal(c.keys_file, "");
    assert_string_equal(c.label, "");
    assert_int_equal(c.admin_port, 9101);
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.plain_int, 0);
    assert_false(c.debug);
    assert_false(c.tls);
    rt_config_release(&c, vars, N_VARS);
    assert_null(c.nats_url);
    assert_null(c.label);
    rt_config_release(&c, vars, N_VARS); /* twice is harmless */
}

static void test_values_from_env(void **state)
{
    (void)state;
    test_config c;
    setenv("RTT_NATS_URL", "nats://a:4222,tls://b:4443", 1);
    setenv("RTT_DATABASE_URL", "host=db user=app password=pw", 1);
    setenv("RTT_JWT_SECRET", "hunter2", 1);
    setenv("RTT_LOG_LEVEL", "debug", 1);
    setenv("RTT_LABEL", "blue green", 1);
    setenv("RTT_ADMIN_PORT", "0", 1);
    setenv("RTT_WORKERS", "64", 1);
    setenv("RTT_PLAIN_INT", "-5", 1);
    setenv("RTT_DEBUG", "yes", 1);
    setenv("RTT_TLS", "1", 1);
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
    assert_string_equal(c.nats_url, "nats://a:4222,tls://b:4443");
    assert_string_equal(c.database_url, "host=db user=app password=pw");
    assert_string_equal(c.jwt_secret, "hunter2");
    assert_string_equal(c.log_level, "debug");
    assert_string_equal(c.label, "blue green");
    assert_int_equal(c.admin_port, 0);
    assert_int_equal(c.workers, 64);
    assert_int_equal(c.plain_int, -5);
    assert_true(c.debug);
    assert_true(c.tls);
    rt_config_release(&c, vars, N_VARS);
}

static void test_bool_spellings(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool value;
    } cases[] = {
        {"1", true},      {"true", true}, {"TRUE", true}, {"yes", true},
        {"Yes", true},    {"on", true},   {"0", false},   {"false", false},
        {"False", false}, {"no", false},  {"NO", false},  {"off", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        test_config c;
        setenv("RTT_DEBUG", cases[i].text, 1);
        setenv("RTT_TLS", cases[i].value ? "0" : "1", 1);
        assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
        if (c.debug != cases[i].value)
            fail_msg("RTT_DEBUG=%s read as %d", cases[i].text, c.debug);
        assert_int_equal(c.tls, !cases[i].value);
        rt_config_release(&c, vars, N_VARS);
    }
    const char *bad[] = {"maybe", "2", "y", "truee", " true", "-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("RTT_DEBUG", bad[i], 1);
        assert_load_fails("RTT_DEBUG: must be true or false");
    }
}

static void test_empty_env_is_unset(void **state)
{
    (void)state;
    test_config c;
    setenv("RTT_NATS_URL", "", 1);
    setenv("RTT_ADMIN_PORT", "", 1);
    setenv("RTT_DEBUG", "", 1);
    setenv("RTT_LOG_LEVEL", "", 1);
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
    assert_string_equal(c.nats_url, "nats://127.0.0.1:4222");
    assert_int_equal(c.admin_port, 9101);
    assert_false(c.debug);
    assert_string_equal(c.log_level, "info");
    rt_config_release(&c, vars, N_VARS);

    /* A required variable set to "" is missing. */
    setenv("RTT_DATABASE_URL", "", 1);
    assert_load_fails("RTT_DATABASE_URL: is required (PostgreSQL connection)");
}

static void test_required_missing(void **state)
{
    (void)state;
    unsetenv("RTT_DATABASE_URL");
    assert_load_fails("RTT_DATABASE_URL: is required (PostgreSQL connection)");
}

static void test_int_bounds(void **state)
{
    (void)state;
    const char *port_msg = "RTT_ADMIN_PORT: must be an integer from 0 to 65535";
    const char *bad[] = {"65536",
                         "-1",
                         "abc",
                         "12abc",
                         "4.5",
                         "0x10",
                         "99999999999999999999",
                         "-99999999999999999999",
                         "1e3",
                         "42 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("RTT_ADMIN_PORT", bad[i], 1);
        assert_load_fails(port_msg);
    }
    const struct {
        const char *text;
        int64_t value;
    } good[] = {{"0", 0}, {"65535", 65535}, {"8080", 8080}, {"007", 7}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        test_config c;
        setenv("RTT_ADMIN_PORT", good[i].text, 1);
        assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
        assert_int_equal(c.admin_port, good[i].value);
        rt_config_release(&c, vars, N_VARS);
    }
    unsetenv("RTT_ADMIN_PORT");
    setenv("RTT_WORKERS", "0", 1);
    assert_load_fails("RTT_WORKERS: must be an integer from 1 to 64");
    setenv("RTT_WORKERS", "65", 1);
    assert_load_fails("RTT_WORKERS: must be an integer from 1 to 64");
    unsetenv("RTT_WORKERS");
    setenv("RTT_PLAIN_INT", "6", 1);
    assert_load_fails("RTT_PLAIN_INT: must be an integer from -5 to 5");
}

static void test_check_functions_fail_load(void **state)
{
    (void)state;
    setenv("RTT_NATS_URL", "http://127.0.0.1:4222", 1);
    assert_load_fails("RTT_NATS_URL: each URL must start with nats:// or tls://");
    unsetenv("RTT_NATS_URL");
    setenv("RTT_DATABASE_URL", "mysql://db", 1);
    assert_load_fails("RTT_DATABASE_URL: must be a postgresql:// URL or a libpq keyword string");
    setenv("RTT_DATABASE_URL", "postgres://db", 1);
    setenv("RTT_LOG_LEVEL", "verbose", 1);
    assert_load_fails("RTT_LOG_LEVEL: must be debug, info, warn or error");
    unsetenv("RTT_LOG_LEVEL");
    setenv("RTT_KEYS_FILE", "/nonexistent/rt-test/keys.json", 1);
    assert_load_fails("RTT_KEYS_FILE: is not a readable file");
}

static void test_failure_frees_earlier_strings(void **state)
{
    (void)state;
    /* Every string is loaded before the last variable fails. */
    setenv("RTT_NATS_URL", "nats://x:1", 1);
    setenv("RTT_JWT_SECRET", "s", 1);
    setenv("RTT_LABEL", "l", 1);
    setenv("RTT_TLS", "sometimes", 1);
    assert_load_fails("RTT_TLS: must be true or false");
}

typedef struct capture {
    FILE *stream;
    char *buf;
    size_t len;
} capture;

static json_t *logged_config(const test_config *c)
{
    capture cap = {0};
    json_error_t err;
    cap.stream = open_memstream(&cap.buf, &cap.len);
    assert_non_null(cap.stream);
    rt_log_set_stream(cap.stream);
    rt_config_log(c, vars, N_VARS);
    rt_log_set_stream(NULL);
    fclose(cap.stream);
    json_t *line = json_loads(cap.buf, 0, &err);
    if (!line)
        fail_msg("not one JSON line: %s", cap.buf);
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "configuration");
    assert_null(strstr(cap.buf, "hunter2"));
    assert_null(strstr(cap.buf, "pgpass"));
    assert_null(strstr(cap.buf, "natspass"));
    free(cap.buf);
    json_t *config = json_incref(json_object_get(line, "config"));
    json_decref(line);
    assert_true(json_is_object(config));
    return config;
}

static void test_log_redacts(void **state)
{
    (void)state;
    test_config c;
    setenv("RTT_NATS_URL", "nats://svc:natspass@n1:4222,nats://svc:natspass@n2:4222", 1);
    setenv("RTT_DATABASE_URL", "postgresql://app:pgpass@db:5432/unpuzzle", 1);
    setenv("RTT_JWT_SECRET", "hunter2", 1);
    setenv("RTT_ADMIN_PORT", "9200", 1);
    setenv("RTT_DEBUG", "on", 1);
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
    json_t *config = logged_config(&c);
    assert_string_equal(json_string_value(json_object_get(config, "RTT_JWT_SECRET")), "***");
    assert_string_equal(json_string_value(json_object_get(config, "RTT_DATABASE_URL")),
                        "postgresql://app:***@db:5432/unpuzzle");
    assert_string_equal(json_string_value(json_object_get(config, "RTT_NATS_URL")),
                        "nats://svc:***@n1:4222,nats://svc:***@n2:4222");
    assert_string_equal(json_string_value(json_object_get(config, "RTT_LOG_LEVEL")), "info");
    assert_int_equal(json_integer_value(json_object_get(config, "RTT_ADMIN_PORT")), 9200);
    assert_true(json_is_true(json_object_get(config, "RTT_DEBUG")));
    assert_true(json_is_false(json_object_get(config, "RTT_TLS")));
    assert_int_equal(json_object_size(config), N_VARS);
    json_decref(config);
    rt_config_release(&c, vars, N_VARS);

    /* Keyword strings: the password= value is hidden; an unset secret shows "". */
    unsetenv("RTT_JWT_SECRET");
    setenv("RTT_DATABASE_URL", "host=db password=pgpass user=app", 1);
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
    config = logged_config(&c);
    assert_string_equal(json_string_value(json_object_get(config, "RTT_DATABASE_URL")),
                        "host=db password=*** user=app");
    assert_string_equal(json_string_value(json_object_get(config, "RTT_JWT_SECRET")), "");
    json_decref(config);
    rt_config_release(&c, vars, N_VARS);
}

typedef struct secret_int_config {
    int64_t pin;
} secret_int_config;

static void test_log_hides_secret_of_any_type(void **state)
{
    (void)state;
    static const rt_config_var pin_vars[] = {
        RT_CFG_INT(secret_int_config, pin, "RTT_PIN", "4711", RT_CFG_SECRET, 0, 9999, "pin"),
    };
    secret_int_config c;
    capture cap = {0};
    assert_int_equal(rt_config_load(&c, pin_vars, 1), RT_OK);
    assert_int_equal(c.pin, 4711);
    cap.stream = open_memstream(&cap.buf, &cap.len);
    rt_log_set_stream(cap.stream);
    rt_config_log(&c, pin_vars, 1);
    rt_log_set_stream(NULL);
    fclose(cap.stream);
    assert_null(strstr(cap.buf, "4711"));
    assert_non_null(strstr(cap.buf, "\"RTT_PIN\":\"***\""));
    free(cap.buf);
}

static void test_print_help(void **state)
{
    (void)state;
    char path[] = "/tmp/rt-test-help-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    rt_config_print_help("auth", vars, N_VARS);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    char text[4096] = "";
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    text[n] = '\0';
    assert_non_null(strstr(text, "auth is configured with environment variables only"));
    assert_non_null(strstr(text, "RTT_DATABASE_URL"));
    assert_non_null(strstr(text, "PostgreSQL connection (required)"));
    assert_non_null(strstr(text, "admin port (default 9101)"));
    assert_non_null(strstr(text, "NATS server URL(s) (default nats://127.0.0.1:4222)"));
}

static void test_validators(void **state)
{
    (void)state;
    char why[128];
    const char *nats_ok[] = {"nats://127.0.0.1:4222", "nats://a:4222,nats://b:4222",
                             "tls://a:4443, nats://b", "nats://user:pw@host:4222",
                             "nats://a:4222,"};
    for (size_t i = 0; i < sizeof(nats_ok) / sizeof(nats_ok[0]); i++)
        if (!rt_config_check_nats_url(nats_ok[i], why, sizeof(why)))
            fail_msg("\"%s\" refused: %s", nats_ok[i], why);
    const char *nats_bad[] = {"http://a:4222", "a:4222",      "nats://a,http://b",
                              "nats://",       "tls://",      "nats://a,nats://",
                              "nats:/a",       "NATS//a",     "nats://a,,nats://b",
                              " ,nats://a",    "nats:///path"};
    for (size_t i = 0; i < sizeof(nats_bad) / sizeof(nats_bad[0]); i++) {
        why[0] = '\0';
        if (rt_config_check_nats_url(nats_bad[i], why, sizeof(why)))
            fail_msg("\"%s\" must be refused", nats_bad[i]);
        assert_true(why[0] != '\0');
    }

    const char *pg_ok[] = {"postgresql://app:pw@db:5432/unpuzzle", "postgres://db",
                           "host=db dbname=unpuzzle", "dbname=x"};
    for (size_t i = 0; i < sizeof(pg_ok) / sizeof(pg_ok[0]); i++)
        assert_true(rt_config_check_postgres_url(pg_ok[i], why, sizeof(why)));
    const char *pg_bad[] = {"mysql://db", "localhost", "db:5432", "postgresq://db"};
    for (size_t i = 0; i < sizeof(pg_bad) / sizeof(pg_bad[0]); i++) {
        why[0] = '\0';
        assert_false(rt_config_check_postgres_url(pg_bad[i], why, sizeof(why)));
        assert_string_equal(why, "must be a postgresql:// URL or a libpq keyword string");
    }

    const char *levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++)
        assert_true(rt_config_check_log_level(levels[i], why, sizeof(why)));
    assert_false(rt_config_check_log_level("verbose", why, sizeof(why)));
    assert_string_equal(why, "must be debug, info, warn or error");
    assert_false(rt_config_check_log_level("WARNING", why, sizeof(why)));
}

static void test_optional_file(void **state)
{
    (void)state;
    char why[128];
    char path[] = "/tmp/rt-test-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{}", 2), 2);
    close(fd);

    /* Empty means unset, which the header allows. */
    assert_true(rt_config_check_optional_file("", why, sizeof(why)));
    assert_true(rt_config_check_optional_file(path, why, sizeof(why)));
    why[0] = '\0';
    assert_false(rt_config_check_optional_file("/nonexistent/rt-test/x.json", why, sizeof(why)));
    assert_string_equal(why, "is not a readable file");
    /* A directory is not a file. */
    assert_false(rt_config_check_optional_file("/tmp", why, sizeof(why)));
    if (geteuid() != 0) { /* root reads any file */
        chmod(path, 0);
        assert_false(rt_config_check_optional_file(path, why, sizeof(why)));
    }

    /* Through a table: a readable file is kept as given. */
    test_config c;
    setenv("RTT_KEYS_FILE", path, 1);
    assert_int_equal(rt_config_load(&c, vars, N_VARS), RT_OK);
    assert_string_equal(c.keys_file, path);
    rt_config_release(&c, vars, N_VARS);
    unlink(path);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, clean_env)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_values_from_env),
        T(test_bool_spellings),
        T(test_empty_env_is_unset),
        T(test_required_missing),
        T(test_int_bounds),
        T(test_check_functions_fail_load),
        T(test_failure_frees_earlier_strings),
        T(test_log_redacts),
        T(test_log_hides_secret_of_any_type),
        T(test_print_help),
        T(test_validators),
        T(test_optional_file),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
