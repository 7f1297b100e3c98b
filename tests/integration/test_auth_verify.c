/*
 * auth.v1.verify against the real auth binary, nats-server and PostgreSQL:
 * the whole JWT matrix (each case named), roles, key reload on SIGHUP, the
 * admin endpoints, and configuration errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "rt_alloc.h"
#include "rt_teststack.h"
#include "rt_time.h"

#define VERR(x) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##x
#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x

static rt_test_stack *stack;

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK) {
        fprintf(stderr, "stack: %s\n", rt_error_message());
        return -1;
    }
    if (rt_test_pg_exec(stack->pg, "INSERT INTO realtime.user_roles VALUES"
                                   " ('teacher-1', 'instructor'), ('boss-1', 'admin')") != RT_OK)
        return -1;
    /* The role table is held in memory and reloaded every ROLE_CACHE_TTL_MS. */
    const char *env[] = {"JWT_ISSUER=https://example.supabase.co/auth/v1", "ROLE_CACHE_TTL_MS=1000",
                         NULL};
    if (rt_test_stack_start_auth(stack, env) != RT_OK) {
        fprintf(stderr, "auth: %s\n", rt_error_message());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

static int64_t now_s(void)
{
    return rt_time_now_ms() / 1000;
}

/* Claims with the configured issuer; `extra` (JSON object members, without
 * braces) adds or overrides members. */
static char *claims_with(const char *sub, int64_t iat, int64_t exp, const char *extra)
{
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "aud", "authenticated", "iss",
                               "https://example.supabase.co/auth/v1", "role", "authenticated",
                               "iat", (json_int_t)iat, "exp", (json_int_t)exp);
    if (sub)
        json_object_set_new(claims, "sub", json_string(sub));
    if (extra) {
        char *wrapped = rt_asprintf("{%s}", extra);
        json_t *more = json_loads(wrapped, 0, NULL);
        assert_non_null(more);
        json_object_update(claims, more);
        json_decref(more);
        free(wrapped);
    }
    char *text = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    return text;
}

static char *mint(const char *alg, const void *key, const char *kid, const char *claims)
{
    char *token = NULL;
    assert_int_equal(rt_testtoken_mint(&token, alg, key, kid, claims), RT_OK);
    return token;
}

static Unpuzzle__Rt__V1__VerifyReply *verify(const char *token)
{
    Unpuzzle__Rt__V1__VerifyReply *r = NULL;
    assert_int_equal(rt_test_verify(&r, stack, token), RT_OK);
    return r;
}

/* Verifies a token and expects refusal with `error`; the reply must never
 * echo the token. */
static void expect_refused(char *token, Unpuzzle__Rt__V1__VerifyError error)
{
    Unpuzzle__Rt__V1__VerifyReply *r = verify(token);
    assert_false(r->ok);
    assert_int_equal(r->error, error);
    assert_string_equal(r->user_id, "");
    if (token[0])
        assert_null(strstr(r->message, token));
    unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
    free(token);
}

static void expect_ok(char *token, const char *sub, Unpuzzle__Rt__V1__Role role)
{
    Unpuzzle__Rt__V1__VerifyReply *r = verify(token);
    assert_true(r->ok);
    assert_int_equal(r->error, VERR(UNSPECIFIED));
    assert_string_equal(r->user_id, sub);
    assert_int_equal(r->role, role);
    assert_non_null(r->expires_at);
    assert_true(r->expires_at->seconds > now_s() - 60);
    unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
    free(token);
}

static char *hs256(const char *claims_json)
{
    char *claims = (char *)claims_json;
    char *t = mint("HS256", RT_TEST_JWT_SECRET, NULL, claims);
    free(claims);
    return t;
}

static void valid_hs256(void **state)
{
    (void)state;
    expect_ok(hs256(claims_with("user-hs", now_s(), now_s() + 600, NULL)), "user-hs",
              ROLE(STUDENT));
}

static void valid_rs256(void **state)
{
    (void)state;
    char *claims = claims_with("user-rs", now_s(), now_s() + 600, NULL);
    expect_ok(mint("RS256", rt_testkeys_rsa_private_pem(stack->keys),
                   rt_testkeys_rsa_kid(stack->keys), claims),
              "user-rs", ROLE(STUDENT));
    free(claims);
}

static void valid_es256(void **state)
{
    (void)state;
    char *claims = claims_with("user-es", now_s(), now_s() + 600, NULL);
    expect_ok(mint("ES256", rt_testkeys_ec_private_pem(stack->keys),
                   rt_testkeys_ec_kid(stack->keys), claims),
              "user-es", ROLE(STUDENT));
    free(claims);
}

static void expired(void **state)
{
    (void)state;
    expect_refused(hs256(claims_with("u1", now_s() - 7200, now_s() - 3600, NULL)), VERR(EXPIRED));
}

static void expired_within_leeway_accepted(void **state)
{
    (void)state;
    expect_ok(hs256(claims_with("u1", now_s() - 600, now_s() - 10, NULL)), "u1", ROLE(STUDENT));
}

static void not_yet_valid(void **state)
{
    (void)state;
    char extra[64];
    snprintf(extra, sizeof(extra), "\"nbf\":%lld", (long long)(now_s() + 600));
    expect_refused(hs256(claims_with("u1", now_s(), now_s() + 1200, extra)), VERR(NOT_YET_VALID));
}

static void issued_in_future(void **state)
{
    (void)state;
    expect_refused(hs256(claims_with("u1", now_s() + 600, now_s() + 1200, NULL)),
                   VERR(ISSUED_IN_FUTURE));
}

static void wrong_audience(void **state)
{
    (void)state;
    expect_refused(hs256(claims_with("u1", now_s(), now_s() + 600, "\"aud\":\"anon\"")),
                   VERR(WRONG_AUDIENCE));
}

static void audience_array_accepted(void **state)
{
    (void)state;
    expect_ok(
        hs256(claims_with("u1", now_s(), now_s() + 600, "\"aud\":[\"other\",\"authenticated\"]")),
        "u1", ROLE(STUDENT));
}

static void wrong_issuer(void **state)
{
    (void)state;
    expect_refused(hs256(claims_with("u1", now_s(), now_s() + 600, "\"iss\":\"https://evil\"")),
                   VERR(WRONG_ISSUER));
}

static void missing_subject(void **state)
{
    (void)state;
    expect_refused(hs256(claims_with(NULL, now_s(), now_s() + 600, NULL)), VERR(MISSING_SUBJECT));
}

static void missing_expiry(void **state)
{
    (void)state;
    expect_refused(hs256(rt_asprintf("{\"aud\":\"authenticated\",\"sub\":\"u1\","
                                     "\"iss\":\"https://example.supabase.co/auth/v1\"}")),
                   VERR(MISSING_EXPIRY));
}

static void bad_signature(void **state)
{
    (void)state;
    char *token = hs256(claims_with("u1", now_s(), now_s() + 600, NULL));
    assert_int_equal(rt_testtoken_flip_signature(token), RT_OK);
    expect_refused(token, VERR(BAD_SIGNATURE));
}

static void signed_with_other_secret(void **state)
{
    (void)state;
    char *claims = claims_with("u1", now_s(), now_s() + 600, NULL);
    char *token = mint("HS256", "another-secret-another-secret-another!", NULL, claims);
    free(claims);
    expect_refused(token, VERR(BAD_SIGNATURE));
}

static void alg_none_rejected(void **state)
{
    (void)state;
    char *claims = claims_with("u1", now_s(), now_s() + 600, NULL);
    char *token = NULL;
    assert_int_equal(rt_testtoken_craft(&token, "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, ""),
                     RT_OK);
    free(claims);
    expect_refused(token, VERR(ALGORITHM_NOT_ALLOWED));
}

static void algorithm_confusion_rejected(void **state)
{
    (void)state;
    /* The classic attack: HS256 "signed" with the RSA public key as secret,
     * naming the RSA key's kid. */
    char *claims = claims_with("u1", now_s(), now_s() + 600, NULL);
    char *token = mint("HS256", rt_testkeys_rsa_public_pem(stack->keys),
                       rt_testkeys_rsa_kid(stack->keys), claims);
    free(claims);
    Unpuzzle__Rt__V1__VerifyReply *r = verify(token);
    assert_false(r->ok);
    assert_true(r->error == VERR(BAD_SIGNATURE) || r->error == VERR(ALGORITHM_NOT_ALLOWED));
    unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
    free(token);
}

static void unknown_kid(void **state)
{
    (void)state;
    char *claims = claims_with("u1", now_s(), now_s() + 600, NULL);
    char *token = mint("RS256", rt_testkeys_rsa_private_pem(stack->keys), "no-such-kid", claims);
    free(claims);
    expect_refused(token, VERR(UNKNOWN_KEY));
}

static void too_large_rejected_unread(void **state)
{
    (void)state;
    char *pad = rt_malloc(9000);
    memset(pad, 'a', 8999);
    pad[8999] = '\0';
    char *extra = rt_asprintf("\"pad\":\"%s\"", pad);
    free(pad);
    char *token = hs256(claims_with("u1", now_s(), now_s() + 600, extra));
    free(extra);
    expect_refused(token, VERR(TOO_LARGE));
}

static void garbage_is_malformed(void **state)
{
    (void)state;
    expect_refused(rt_strdup("not-a-jwt"), VERR(MALFORMED));
    expect_refused(rt_strdup("a.b.c"), VERR(MALFORMED));
    expect_refused(rt_strdup(""), VERR(MALFORMED));
}

static void request_not_protobuf(void **state)
{
    (void)state;
    natsMsg *reply = NULL;
    /* A field with a truncated length prefix is not a VerifyRequest. */
    assert_int_equal(
        natsConnection_Request(&reply, stack->nc, "auth.v1.verify", "\x0a\xff", 2, 5000), NATS_OK);
    Unpuzzle__Rt__V1__VerifyReply *r = unpuzzle__rt__v1__verify_reply__unpack(
        NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
    assert_non_null(r);
    assert_false(r->ok);
    assert_int_equal(r->error, VERR(MALFORMED));
    unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
    natsMsg_Destroy(reply);
}

static void role_from_database_wins(void **state)
{
    (void)state;
    /* user_roles says instructor although the token says student. */
    expect_ok(hs256(claims_with("teacher-1", now_s(), now_s() + 600,
                                "\"app_metadata\":{\"role\":\"student\"}")),
              "teacher-1", ROLE(INSTRUCTOR));
    expect_ok(hs256(claims_with("boss-1", now_s(), now_s() + 600, NULL)), "boss-1", ROLE(ADMIN));
}

static void role_change_applies_within_refresh(void **state)
{
    (void)state;
    expect_ok(hs256(claims_with("promoted-1", now_s(), now_s() + 600, NULL)), "promoted-1",
              ROLE(STUDENT));
    assert_int_equal(rt_test_pg_exec(stack->pg, "INSERT INTO realtime.user_roles VALUES"
                                                " ('promoted-1', 'instructor')"),
                     RT_OK);
    /* Within ROLE_CACHE_TTL_MS (1 s here) plus a tick, the new role shows. */
    bool promoted = false;
    for (int i = 0; i < 40 && !promoted; i++) {
        char *token = hs256(claims_with("promoted-1", now_s(), now_s() + 600, NULL));
        Unpuzzle__Rt__V1__VerifyReply *r = verify(token);
        promoted = r->ok && r->role == ROLE(INSTRUCTOR);
        unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
        free(token);
        if (!promoted)
            nats_Sleep(100);
    }
    assert_true(promoted);
}

static void role_from_app_metadata(void **state)
{
    (void)state;
    expect_ok(hs256(claims_with("meta-1", now_s(), now_s() + 600,
                                "\"app_metadata\":{\"role\":\"instructor\"}")),
              "meta-1", ROLE(INSTRUCTOR));
}

static void role_defaults_to_student(void **state)
{
    (void)state;
    expect_ok(hs256(claims_with("plain-1", now_s(), now_s() + 600,
                                "\"app_metadata\":{\"role\":\"superuser\"}")),
              "plain-1", ROLE(STUDENT));
}

static void session_id_and_expiry_returned(void **state)
{
    (void)state;
    int64_t exp = now_s() + 900;
    char *token = hs256(claims_with("u-sess", now_s(), exp, "\"session_id\":\"sess-42\""));
    Unpuzzle__Rt__V1__VerifyReply *r = verify(token);
    assert_true(r->ok);
    assert_string_equal(r->session_id, "sess-42");
    assert_int_equal(r->expires_at->seconds, exp);
    unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);
    free(token);
}

static void jwks_reloaded_on_sighup(void **state)
{
    (void)state;
    rt_testkeys *fresh = NULL;
    assert_int_equal(rt_testkeys_create(&fresh, "rsa-rotated", "ec-rotated"), RT_OK);
    char *claims = claims_with("user-rot", now_s(), now_s() + 600, NULL);
    char *token =
        mint("RS256", rt_testkeys_rsa_private_pem(fresh), rt_testkeys_rsa_kid(fresh), claims);
    free(claims);

    Unpuzzle__Rt__V1__VerifyReply *r = verify(token);
    assert_false(r->ok);
    assert_int_equal(r->error, VERR(UNKNOWN_KEY));
    unpuzzle__rt__v1__verify_reply__free_unpacked(r, NULL);

    assert_int_equal(rt_testkeys_write_jwks(fresh, stack->jwks_path), RT_OK);
    kill(rt_test_proc_pid(stack->auth), SIGHUP);
    assert_int_equal(rt_test_proc_wait_log(stack->auth, "keys reloaded", 5000), RT_OK);
    expect_ok(token, "user-rot", ROLE(STUDENT));
    rt_testkeys_destroy(fresh);
}

static void admin_endpoints(void **state)
{
    (void)state;
    int status = 0;
    char *body = NULL;
    assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/healthz", 2000),
                     RT_OK);
    assert_int_equal(status, 200);
    free(body);
    assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/readyz", 2000),
                     RT_OK);
    assert_int_equal(status, 200);
    free(body);
    assert_int_equal(rt_test_http_get(&status, &body, stack->auth_admin_port, "/metrics", 2000),
                     RT_OK);
    assert_int_equal(status, 200);
    /* Earlier cases verified good and expired tokens: both are counted. */
    assert_true(rt_test_metric_value(body, "unpuzzle_auth_verify_total{result=\"ok\"}") >= 1);
    assert_true(rt_test_metric_value(body, "unpuzzle_auth_verify_total{result=\"expired\"}") >= 1);
    assert_true(rt_test_metric_value(body, "unpuzzle_auth_nats_connected") == 1);
    assert_non_null(strstr(body, "unpuzzle_auth_rpc_duration_seconds_bucket"));
    /* No secret ever appears in the metrics. */
    assert_null(strstr(body, RT_TEST_JWT_SECRET));
    free(body);
}

static void no_secret_in_logs(void **state)
{
    (void)state;
    FILE *log = fopen(rt_test_proc_log_path(stack->auth), "r");
    assert_non_null(log);
    char line[8192];
    while (fgets(line, sizeof(line), log)) {
        assert_null(strstr(line, RT_TEST_JWT_SECRET));
        assert_null(strstr(line, "eyJ")); /* no JWT (base64 of '{"') in any log line */
    }
    fclose(log);
}

/* A bad variable stops the service with a message naming it. */
static void expect_config_error(const char *const *env, const char *needle)
{
    rt_test_proc *p = NULL;
    int wstatus = 0;
    assert_int_equal(rt_test_proc_start(&p, "auth", NULL, env), RT_OK);
    assert_int_equal(rt_test_proc_stop(p, 0, 5000, &wstatus), RT_OK);
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 2);
    assert_int_equal(rt_test_proc_wait_log(p, needle, 1000), RT_OK);
    rt_test_proc_destroy(p);
}

static void config_errors_name_the_variable(void **state)
{
    (void)state;
    const char *bad_port[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x", "ADMIN_PORT=99999", NULL};
    expect_config_error(bad_port, "ADMIN_PORT: must be an integer from 0 to 65535");
    const char *no_db[] = {"DATABASE_URL=", NULL};
    expect_config_error(no_db, "DATABASE_URL: is required");
    const char *bad_nats[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x", "NATS_URL=http://x", NULL};
    expect_config_error(bad_nats, "NATS_URL: each URL must start with nats://");
    const char *bad_jwks[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x",
                              "SUPABASE_JWKS_FILE=/nonexistent/jwks.json", NULL};
    expect_config_error(bad_jwks, "SUPABASE_JWKS_FILE: is not a readable file");
    const char *no_keys[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x",
                             "SUPABASE_JWT_SECRET=", "SUPABASE_JWKS_FILE=", NULL};
    expect_config_error(no_keys, "at least one must be set");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_hs256),
        cmocka_unit_test(valid_rs256),
        cmocka_unit_test(valid_es256),
        cmocka_unit_test(expired),
        cmocka_unit_test(expired_within_leeway_accepted),
        cmocka_unit_test(not_yet_valid),
        cmocka_unit_test(issued_in_future),
        cmocka_unit_test(wrong_audience),
        cmocka_unit_test(audience_array_accepted),
        cmocka_unit_test(wrong_issuer),
        cmocka_unit_test(missing_subject),
        cmocka_unit_test(missing_expiry),
        cmocka_unit_test(bad_signature),
        cmocka_unit_test(signed_with_other_secret),
        cmocka_unit_test(alg_none_rejected),
        cmocka_unit_test(algorithm_confusion_rejected),
        cmocka_unit_test(unknown_kid),
        cmocka_unit_test(too_large_rejected_unread),
        cmocka_unit_test(garbage_is_malformed),
        cmocka_unit_test(request_not_protobuf),
        cmocka_unit_test(role_from_database_wins),
        cmocka_unit_test(role_change_applies_within_refresh),
        cmocka_unit_test(role_from_app_metadata),
        cmocka_unit_test(role_defaults_to_student),
        cmocka_unit_test(session_id_and_expiry_returned),
        cmocka_unit_test(jwks_reloaded_on_sighup),
        cmocka_unit_test(admin_endpoints),
        cmocka_unit_test(no_secret_in_logs),
        cmocka_unit_test(config_errors_name_the_variable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
