/*
 * auth_jwt: the full matrix of good and bad tokens, each as the reason a
 * client would see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_jwt.h"
#include "auth_keys.h"
#include "rt_alloc.h"
#include "rt_testtoken.h"

#define SECRET "super-secret-jwt-token-with-at-least-32-characters"
#define OTHER_SECRET "another-secret-jwt-token-with-at-least-32-characters"
#define ISSUER "https://project.supabase.co/auth/v1"
#define NOW INT64_C(1764000000)
#define SUB "2f1c7a3e-5b4d-4c8e-9a7f-0e6d5c4b3a21"
#define SESSION "9b8a7c6d-1e2f-4a3b-8c7d-6e5f4a3b2c1d"

#define V(name) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##name

static rt_testkeys *test_keys;
static auth_keyset *all_keys;  /* secret + JWKS */
static auth_keyset *hs_keys;   /* secret only */
static auth_keyset *jwks_keys; /* JWKS only */

static const auth_jwt_rules rules = {
    .leeway_s = 30,
    .audience = "authenticated",
    .issuer = ISSUER,
    .max_token_bytes = 8192,
};

static int group_setup(void **state)
{
    (void)state;
    if (rt_testkeys_create(&test_keys, "rsa-1", "ec-1") != RT_OK ||
        auth_keyset_create(&all_keys, SECRET, rt_testkeys_jwks(test_keys)) != RT_OK ||
        auth_keyset_create(&hs_keys, SECRET, NULL) != RT_OK ||
        auth_keyset_create(&jwks_keys, NULL, rt_testkeys_jwks(test_keys)) != RT_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    auth_keyset_destroy(all_keys);
    auth_keyset_destroy(hs_keys);
    auth_keyset_destroy(jwks_keys);
    rt_testkeys_destroy(test_keys);
    return 0;
}

/* Supabase-like claims valid at NOW, with `extra` (",\"k\":v..." or "")
 * appended inside the object. */
static char *claims_with(const char *extra)
{
    return rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"%s\",\"sub\":\"%s\","
                       "\"iat\":%lld,\"exp\":%lld,\"role\":\"authenticated\"%s}",
                       ISSUER, SUB, (long long)(NOW - 60), (long long)(NOW + 3600), extra);
}

/* Mints with the test keys: HS256 with SECRET, RS256/ES256 with their kid. */
static char *mint(const char *alg, const char *claims)
{
    char *token = NULL;
    rt_status st;
    if (strcmp(alg, "HS256") == 0)
        st = rt_testtoken_mint(&token, alg, SECRET, NULL, claims);
    else if (strcmp(alg, "RS256") == 0)
        st = rt_testtoken_mint(&token, alg, rt_testkeys_rsa_private_pem(test_keys),
                               rt_testkeys_rsa_kid(test_keys), claims);
    else
        st = rt_testtoken_mint(&token, alg, rt_testkeys_ec_private_pem(test_keys),
                               rt_testkeys_ec_kid(test_keys), claims);
    assert_int_equal(st, RT_OK);
    assert_non_null(token);
    return token;
}

/* Verifies with all_keys and `rules`, checking the detail never echoes the
 * token or any of its parts. */
static auth_verify_error verify_with(auth_claims *out, const auth_keyset *keys,
                                     const auth_jwt_rules *r, const char *token)
{
    char detail[256];
    auth_claims scratch;
    auth_verify_error err = auth_jwt_verify(out ? out : &scratch, keys, r, token, strlen(token),
                                            NOW, detail, sizeof(detail));
    assert_true(strlen(detail) > 0);
    const char *dot = strchr(token, '.');
    if (dot && dot - token >= 8) {
        /* The first 8 characters of the header part must not show up. */
        char head[9];
        memcpy(head, token, 8);
        head[8] = '\0';
        assert_null(strstr(detail, head));
    }
    if (strlen(token) >= 8)
        assert_null(strstr(detail, token));
    return err;
}

static auth_verify_error verify(const char *token)
{
    return verify_with(NULL, all_keys, &rules, token);
}

/* Mints HS256 with claims_with(extra) and returns the verdict. */
static auth_verify_error verify_claims(const char *extra)
{
    char *claims = claims_with(extra);
    char *token = mint("HS256", claims);
    auth_verify_error err = verify(token);
    free(token);
    free(claims);
    return err;
}

/* Same, but with the whole claims object given. */
static auth_verify_error verify_raw_claims(const char *claims)
{
    char *token = mint("HS256", claims);
    auth_verify_error err = verify(token);
    free(token);
    return err;
}

static void check_valid(const char *alg, auth_alg expected)
{
    char *claims = claims_with(",\"session_id\":\"" SESSION "\","
                               "\"app_metadata\":{\"role\":\"student\"}");
    char *token = mint(alg, claims);
    char detail[64];
    auth_claims out;

    assert_int_equal(
        auth_jwt_verify(&out, all_keys, &rules, token, strlen(token), NOW, detail, sizeof(detail)),
        V(UNSPECIFIED));
    assert_string_equal(detail, "ok");
    assert_string_equal(out.sub, SUB);
    assert_string_equal(out.session_id, SESSION);
    assert_string_equal(out.app_role, "student");
    assert_int_equal(out.exp, NOW + 3600);
    assert_int_equal(out.alg, expected);
    free(token);
    free(claims);
}

static void test_valid_hs256(void **state)
{
    (void)state;
    check_valid("HS256", AUTH_ALG_HS256);
}

static void test_valid_rs256(void **state)
{
    (void)state;
    check_valid("RS256", AUTH_ALG_RS256);
}

static void test_valid_es256(void **state)
{
    (void)state;
    check_valid("ES256", AUTH_ALG_ES256);
}

static void test_token_need_not_be_nul_terminated(void **state)
{
    char *claims = claims_with("");
    char *token = mint("HS256", claims);
    size_t len = strlen(token);
    char *padded = rt_asprintf("%s.garbage-after-the-token", token);
    auth_claims out;
    (void)state;
    assert_int_equal(auth_jwt_verify(&out, all_keys, &rules, padded, len, NOW, NULL, 0),
                     V(UNSPECIFIED));
    assert_string_equal(out.sub, SUB);
    free(padded);
    free(token);
    free(claims);
}

static void test_expired(void **state)
{
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"exp\":%lld}",
                               (long long)(NOW - 31));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(EXPIRED));
    free(claims);
}

static void test_expired_within_leeway_accepted(void **state)
{
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"exp\":%lld}",
                               (long long)(NOW - 29));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(UNSPECIFIED));
    free(claims);
}

static void test_expired_without_leeway(void **state)
{
    auth_jwt_rules strict = rules;
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"exp\":%lld}",
                               (long long)NOW);
    char *token = mint("HS256", claims);
    (void)state;
    strict.leeway_s = 0;
    assert_int_equal(verify_with(NULL, all_keys, &strict, token), V(EXPIRED));
    free(token);
    free(claims);
}

static void test_nbf_in_future(void **state)
{
    char extra[64];
    (void)state;
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)(NOW + 31));
    assert_int_equal(verify_claims(extra), V(NOT_YET_VALID));
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)(NOW + 29));
    assert_int_equal(verify_claims(extra), V(UNSPECIFIED));
}

static void test_iat_in_future(void **state)
{
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"iat\":%lld,\"exp\":%lld}",
                               (long long)(NOW + 120), (long long)(NOW + 3600));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(ISSUED_IN_FUTURE));
    free(claims);
}

static void test_wrong_audience(void **state)
{
    char *claims =
        rt_asprintf("{\"aud\":\"anon\",\"iss\":\"" ISSUER "\",\"sub\":\"u1\",\"exp\":%lld}",
                    (long long)(NOW + 60));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(WRONG_AUDIENCE));
    free(claims);
    claims =
        rt_asprintf("{\"iss\":\"" ISSUER "\",\"sub\":\"u1\",\"exp\":%lld}", (long long)(NOW + 60));
    assert_int_equal(verify_raw_claims(claims), V(WRONG_AUDIENCE));
    free(claims);
    claims = rt_asprintf("{\"aud\":[\"anon\",\"service\"],\"iss\":\"" ISSUER
                         "\",\"sub\":\"u1\",\"exp\":%lld}",
                         (long long)(NOW + 60));
    assert_int_equal(verify_raw_claims(claims), V(WRONG_AUDIENCE));
    free(claims);
}

static void test_aud_array_containing_audience_accepted(void **state)
{
    char *claims = rt_asprintf("{\"aud\":[\"other\",\"authenticated\"],\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"exp\":%lld}",
                               (long long)(NOW + 60));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(UNSPECIFIED));
    free(claims);
}

static void test_aud_of_wrong_type_malformed(void **state)
{
    char *claims = rt_asprintf("{\"aud\":42,\"iss\":\"" ISSUER "\",\"sub\":\"u1\",\"exp\":%lld}",
                               (long long)(NOW + 60));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(MALFORMED));
    free(claims);
}

static void test_wrong_issuer(void **state)
{
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"https://evil.example\","
                               "\"sub\":\"u1\",\"exp\":%lld}",
                               (long long)(NOW + 60));
    char *token = mint("HS256", claims);
    auth_jwt_rules any_issuer = rules;
    (void)state;
    assert_int_equal(verify(token), V(WRONG_ISSUER));
    /* Not checked when no issuer is configured. */
    any_issuer.issuer = NULL;
    assert_int_equal(verify_with(NULL, all_keys, &any_issuer, token), V(UNSPECIFIED));
    any_issuer.issuer = "";
    assert_int_equal(verify_with(NULL, all_keys, &any_issuer, token), V(UNSPECIFIED));
    free(token);
    free(claims);
    /* Missing iss while one is configured. */
    claims = rt_asprintf("{\"aud\":\"authenticated\",\"sub\":\"u1\",\"exp\":%lld}",
                         (long long)(NOW + 60));
    assert_int_equal(verify_raw_claims(claims), V(WRONG_ISSUER));
    free(claims);
}

static void test_missing_sub(void **state)
{
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER "\",\"exp\":%lld}",
                               (long long)(NOW + 60));
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(MISSING_SUBJECT));
    free(claims);
    claims =
        rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER "\",\"sub\":\"\",\"exp\":%lld}",
                    (long long)(NOW + 60));
    assert_int_equal(verify_raw_claims(claims), V(MISSING_SUBJECT));
    free(claims);
}

static void test_sub_with_bad_characters(void **state)
{
    static const char *const subs[] = {
        "\"../../etc/passwd\"",
        "\"user 1\"",
        "\"u1\\n{\\\"x\\\":1}\"",
        "\"rt.v1.room.>\"",
        "\"caf\\u00e9\"",
        "42",
        "{\"id\":\"u1\"}",
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", /* 65 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                                   "\",\"sub\":%s,\"exp\":%lld}",
                                   subs[i], (long long)(NOW + 60));
        if (verify_raw_claims(claims) != V(MALFORMED))
            fail_msg("sub %s was not refused as malformed", subs[i]);
        free(claims);
    }
    /* 64 characters is the most a sub may have. */
    char *claims = rt_asprintf(
        "{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
        "\",\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
        "\"exp\":%lld}",
        (long long)(NOW + 60));
    assert_int_equal(verify_raw_claims(claims), V(UNSPECIFIED));
    free(claims);
}

static void test_missing_exp(void **state)
{
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"iat\":%lld}",
                               (long long)NOW);
    (void)state;
    assert_int_equal(verify_raw_claims(claims), V(MISSING_EXPIRY));
    free(claims);
}

static void test_exp_of_wrong_type_malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_raw_claims("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                                       "\",\"sub\":\"u1\",\"exp\":\"1764003600\"}"),
                     V(MALFORMED));
    /* A fractional NumericDate is allowed (RFC 7519 section 2). */
    char *claims = rt_asprintf("{\"aud\":\"authenticated\",\"iss\":\"" ISSUER
                               "\",\"sub\":\"u1\",\"exp\":%lld.5}",
                               (long long)(NOW + 60));
    assert_int_equal(verify_raw_claims(claims), V(UNSPECIFIED));
    free(claims);
    assert_int_equal(verify_claims(",\"nbf\":true"), V(MALFORMED));
}

static void tampered(const char *alg)
{
    char *claims = claims_with("");
    char *token = mint(alg, claims);
    assert_int_equal(rt_testtoken_flip_signature(token), RT_OK);
    if (verify(token) != V(BAD_SIGNATURE))
        fail_msg("tampered %s token was not refused as bad_signature", alg);
    free(token);
    free(claims);
}

static void test_bad_signature_tampered(void **state)
{
    (void)state;
    tampered("HS256");
    tampered("RS256");
    tampered("ES256");
}

static void test_payload_swapped_bad_signature(void **state)
{
    /* An attacker's payload under a genuine header and signature. */
    char *claims = claims_with("");
    char *token = mint("HS256", claims);
    char *admin = claims_with(",\"app_metadata\":{\"role\":\"admin\"}");
    char *forged_body = rt_testtoken_base64url(admin, strlen(admin));
    char *dot1 = strchr(token, '.'), *dot2 = strrchr(token, '.');
    *dot1 = '\0';
    char *forged = rt_asprintf("%s.%s%s", token, forged_body, dot2);
    (void)state;
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    free(forged_body);
    free(admin);
    free(token);
    free(claims);
}

static void test_signed_with_another_secret(void **state)
{
    char *claims = claims_with("");
    char *token = NULL;
    (void)state;
    assert_int_equal(rt_testtoken_mint(&token, "HS256", OTHER_SECRET, NULL, claims), RT_OK);
    assert_int_equal(verify(token), V(BAD_SIGNATURE));
    free(token);
    free(claims);
}

static void test_signed_with_another_rsa_key(void **state)
{
    rt_testkeys *other = NULL;
    char *claims = claims_with("");
    char *token = NULL;
    (void)state;
    assert_int_equal(rt_testkeys_create(&other, "rsa-1", "ec-1"), RT_OK);
    assert_int_equal(
        rt_testtoken_mint(&token, "RS256", rt_testkeys_rsa_private_pem(other), "rsa-1", claims),
        RT_OK);
    assert_int_equal(verify(token), V(BAD_SIGNATURE));
    free(token);
    assert_int_equal(
        rt_testtoken_mint(&token, "ES256", rt_testkeys_ec_private_pem(other), "ec-1", claims),
        RT_OK);
    assert_int_equal(verify(token), V(BAD_SIGNATURE));
    free(token);
    free(claims);
    rt_testkeys_destroy(other);
}

static void test_alg_none_rejected(void **state)
{
    static const char *const headers[] = {
        "{\"alg\":\"none\"}",
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\",\"typ\":\"JWT\"}",
        "{\"alg\":\"NONE\",\"typ\":\"JWT\"}",
    };
    char *claims = claims_with("");
    (void)state;
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *token = NULL;
        assert_int_equal(rt_testtoken_craft(&token, headers[i], claims, ""), RT_OK);
        assert_int_equal(verify(token), V(ALGORITHM_NOT_ALLOWED));
        assert_int_equal(verify_with(NULL, hs_keys, &rules, token), V(ALGORITHM_NOT_ALLOWED));
        free(token);
        /* With a signature attached it is no better. */
        assert_int_equal(rt_testtoken_craft(&token, headers[i], claims, "c2lnbmF0dXJl"), RT_OK);
        assert_int_equal(verify(token), V(ALGORITHM_NOT_ALLOWED));
        free(token);
    }
    free(claims);
}

static void test_unsupported_algs_rejected(void **state)
{
    static const char *const algs[] = {"HS384", "HS512", "PS256", "EdDSA", "hs256", ""};
    char *claims = claims_with("");
    (void)state;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char *header = rt_asprintf("{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);
        char *token = NULL;
        assert_int_equal(rt_testtoken_craft(&token, header, claims, "c2lnbmF0dXJl"), RT_OK);
        if (verify(token) != V(ALGORITHM_NOT_ALLOWED))
            fail_msg("alg \"%s\" was not refused as algorithm_not_allowed", algs[i]);
        free(token);
        free(header);
    }
    free(claims);
}

static void test_algorithm_confusion_rejected(void **state)
{
    /* HS256 signed with the RSA public key's PEM as the HMAC secret, and the
     * RSA key's kid: a verifier that picks the key by kid and the algorithm
     * from the header would accept it. */
    char *claims = claims_with("");
    char *token = NULL;
    (void)state;
    assert_int_equal(rt_testtoken_mint(&token, "HS256", rt_testkeys_rsa_public_pem(test_keys),
                                       rt_testkeys_rsa_kid(test_keys), claims),
                     RT_OK);
    assert_int_equal(verify(token), V(BAD_SIGNATURE));
    assert_int_equal(verify_with(NULL, jwks_keys, &rules, token), V(ALGORITHM_NOT_ALLOWED));
    free(token);
    assert_int_equal(rt_testtoken_mint(&token, "HS256", rt_testkeys_ec_public_pem(test_keys),
                                       rt_testkeys_ec_kid(test_keys), claims),
                     RT_OK);
    assert_int_equal(verify(token), V(BAD_SIGNATURE));
    assert_int_equal(verify_with(NULL, jwks_keys, &rules, token), V(ALGORITHM_NOT_ALLOWED));
    free(token);
    free(claims);
}

static void test_rs256_without_jwks(void **state)
{
    char *claims = claims_with("");
    char *rs = mint("RS256", claims), *es = mint("ES256", claims);
    (void)state;
    assert_int_equal(verify_with(NULL, hs_keys, &rules, rs), V(ALGORITHM_NOT_ALLOWED));
    assert_int_equal(verify_with(NULL, hs_keys, &rules, es), V(ALGORITHM_NOT_ALLOWED));
    free(rs);
    free(es);
    free(claims);
}

static void test_hs256_without_secret(void **state)
{
    char *claims = claims_with("");
    char *token = mint("HS256", claims);
    (void)state;
    assert_int_equal(verify_with(NULL, jwks_keys, &rules, token), V(ALGORITHM_NOT_ALLOWED));
    free(token);
    free(claims);
}

static void test_unknown_kid(void **state)
{
    char *claims = claims_with("");
    char *token = NULL;
    (void)state;
    assert_int_equal(rt_testtoken_mint(&token, "RS256", rt_testkeys_rsa_private_pem(test_keys),
                                       "rotated-away", claims),
                     RT_OK);
    assert_int_equal(verify(token), V(UNKNOWN_KEY));
    free(token);
    assert_int_equal(
        rt_testtoken_mint(&token, "RS256", rt_testkeys_rsa_private_pem(test_keys), NULL, claims),
        RT_OK);
    assert_int_equal(verify(token), V(UNKNOWN_KEY));
    free(token);
    free(claims);
}

static void test_kid_of_other_key_type(void **state)
{
    /* RS256 naming the EC key's kid: the key does not allow RS256. */
    char *claims = claims_with("");
    char *token = NULL;
    (void)state;
    assert_int_equal(rt_testtoken_mint(&token, "RS256", rt_testkeys_rsa_private_pem(test_keys),
                                       rt_testkeys_ec_kid(test_keys), claims),
                     RT_OK);
    assert_int_equal(verify(token), V(ALGORITHM_NOT_ALLOWED));
    free(token);
    free(claims);
}

static void test_token_over_8k_too_large(void **state)
{
    char *pad = rt_malloc(8300);
    char *token = rt_malloc(8194);
    auth_claims out;
    (void)state;

    /* Not even looked at: 8193 bytes of anything. */
    memset(token, 'A', 8193);
    token[8193] = '\0';
    assert_int_equal(verify(token), V(TOO_LARGE));
    free(token);

    /* A genuine token as close to 8 KiB as padding gets it, at the limit
     * and just over a lowered one. */
    size_t pad_len = 5700, len = 0;
    char *extra = NULL, *claims = NULL;
    token = NULL;
    for (int round = 0; round < 2 || len > 8192; round++) {
        free(token);
        free(claims);
        free(extra);
        if (round == 1)
            pad_len = (size_t)((long)pad_len + (8192 - (long)len) * 3 / 4);
        else if (round > 1)
            pad_len--;
        memset(pad, 'x', pad_len);
        pad[pad_len] = '\0';
        extra = rt_asprintf(",\"pad\":\"%s\"", pad);
        claims = claims_with(extra);
        token = mint("HS256", claims);
        len = strlen(token);
    }
    auth_jwt_rules tight = rules;
    assert_true(len > 8180 && len <= 8192);
    tight.max_token_bytes = len;
    assert_int_equal(auth_jwt_verify(&out, all_keys, &tight, token, len, NOW, NULL, 0),
                     V(UNSPECIFIED));
    tight.max_token_bytes = len - 1;
    assert_int_equal(auth_jwt_verify(&out, all_keys, &tight, token, len, NOW, NULL, 0),
                     V(TOO_LARGE));
    free(token);
    free(claims);
    free(extra);

    memset(pad, 'x', 6300);
    pad[6300] = '\0';
    extra = rt_asprintf(",\"pad\":\"%s\"", pad);
    claims = claims_with(extra);
    token = mint("HS256", claims);
    assert_true(strlen(token) > 8192);
    assert_int_equal(verify(token), V(TOO_LARGE));
    /* A limit raised above 8 KiB works too (heap buffers). */
    tight.max_token_bytes = 16384;
    assert_int_equal(verify_with(NULL, all_keys, &tight, token), V(UNSPECIFIED));
    free(token);
    free(claims);
    free(extra);
    free(pad);
}

static void test_garbage_tokens_malformed(void **state)
{
    static const char *const garbage[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "....",
        "..",
        "!!!.###.$$$",
        "eyJhbGciOiJIUzI1NiJ9..sig",
        ".eyJzdWIiOiJ1MSJ9.sig",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.s!g",
        "eyJhbGciOiJIUzI1NiJ9=.eyJzdWIiOiJ1MSJ9.sig",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        auth_claims out;
        char detail[128];
        if (auth_jwt_verify(&out, all_keys, &rules, garbage[i], strlen(garbage[i]), NOW, detail,
                            sizeof(detail)) != V(MALFORMED))
            fail_msg("\"%s\" was not refused as malformed", garbage[i]);
    }
}

static void test_bad_json_parts_malformed(void **state)
{
    static const char *const cases[][2] = {
        {"not json", "{\"sub\":\"u1\"}"},
        {"[\"HS256\"]", "{\"sub\":\"u1\"}"},
        {"{\"typ\":\"JWT\"}", "{\"sub\":\"u1\"}"},                      /* no alg */
        {"{\"alg\":256}", "{\"sub\":\"u1\"}"},                          /* alg type */
        {"{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"sub\":\"u1\"}"},   /* dup key */
        {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", "{\"sub\":\"u1\"}"}, /* typ */
        {"{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{}"}, /* crit */
        {"{\"alg\":\"RS256\",\"kid\":7}", "{\"sub\":\"u1\"}"},          /* kid type */
        {"{\"alg\":\"HS256\"}", "not json"},                            /* payload */
        {"{\"alg\":\"HS256\"}", "\"a string\""},                        /* payload */
        {"{\"alg\":\"HS256\"}", "{\"sub\":\"u1\",\"sub\":\"admin\"}"},  /* dup claim */
        {"{\"alg\":\"HS256\"}", "{\"sub\":\"u1\\u0000admin\"}"},        /* NUL */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *token = NULL;
        assert_int_equal(rt_testtoken_craft(&token, cases[i][0], cases[i][1], "c2ln"), RT_OK);
        if (verify(token) != V(MALFORMED))
            fail_msg("header %s payload %s was not refused as malformed", cases[i][0], cases[i][1]);
        free(token);
    }
}

static void test_truncated_tokens_refused(void **state)
{
    char *claims = claims_with("");
    (void)state;
    for (int a = 0; a < 3; a++) {
        char *token = mint(a == 0 ? "HS256" : a == 1 ? "RS256" : "ES256", claims);
        size_t len = strlen(token);
        for (size_t cut = 0; cut < len; cut++) {
            auth_claims out;
            auth_verify_error err =
                auth_jwt_verify(&out, all_keys, &rules, token, cut, NOW, NULL, 0);
            if (err != V(MALFORMED) && err != V(BAD_SIGNATURE))
                fail_msg("token cut at %zu of %zu gave %s", cut, len, auth_verify_error_name(err));
            assert_string_equal(out.sub, "");
        }
        free(token);
    }
    free(claims);
}

static void test_nul_byte_inside_token_malformed(void **state)
{
    char *claims = claims_with("");
    char *token = mint("HS256", claims);
    size_t len = strlen(token);
    auth_claims out;
    (void)state;
    token[len - 3] = '\0';
    assert_int_equal(auth_jwt_verify(&out, all_keys, &rules, token, len, NOW, NULL, 0),
                     V(MALFORMED));
    free(token);
    free(claims);
}

static void test_role_from_app_metadata(void **state)
{
    static const char *const cases[][2] = {
        {",\"app_metadata\":{\"role\":\"student\"}", "student"},
        {",\"app_metadata\":{\"role\":\"instructor\",\"provider\":\"email\"}", "instructor"},
        {",\"app_metadata\":{\"role\":\"admin\"}", "admin"},
        {",\"app_metadata\":{\"role\":\"superuser\"}", ""},
        {",\"app_metadata\":{\"role\":\"Admin\"}", ""},
        {",\"app_metadata\":{\"role\":1}", ""},
        {",\"app_metadata\":\"admin\"", ""},
        {",\"user_metadata\":{\"role\":\"admin\"}", ""}, /* users can edit user_metadata */
        {"", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *claims = claims_with(cases[i][0]);
        char *token = mint("HS256", claims);
        auth_claims out;
        assert_int_equal(verify_with(&out, all_keys, &rules, token), V(UNSPECIFIED));
        if (strcmp(out.app_role, cases[i][1]) != 0)
            fail_msg("claims %s gave role \"%s\"", cases[i][0], out.app_role);
        free(token);
        free(claims);
    }
}

static void test_session_id_extracted(void **state)
{
    char *claims = claims_with(",\"session_id\":\"" SESSION "\"");
    char *token = mint("ES256", claims);
    auth_claims out;
    (void)state;
    assert_int_equal(verify_with(&out, all_keys, &rules, token), V(UNSPECIFIED));
    assert_string_equal(out.session_id, SESSION);
    free(token);
    free(claims);

    claims = claims_with("");
    token = mint("HS256", claims);
    assert_int_equal(verify_with(&out, all_keys, &rules, token), V(UNSPECIFIED));
    assert_string_equal(out.session_id, "");
    free(token);
    free(claims);

    assert_int_equal(verify_claims(",\"session_id\":\"a b\""), V(MALFORMED));
    assert_int_equal(verify_claims(",\"session_id\":5"), V(MALFORMED));
}

static void test_detail_never_contains_the_token(void **state)
{
    char *claims = claims_with("");
    char *tokens[6];
    (void)state;
    tokens[0] = mint("HS256", claims);
    tokens[1] = mint("RS256", claims);
    tokens[2] = mint("ES256", claims);
    assert_int_equal(rt_testtoken_flip_signature(tokens[0]), RT_OK);
    assert_int_equal(rt_testtoken_mint(&tokens[3], "RS256", rt_testkeys_rsa_private_pem(test_keys),
                                       "kid-that-must-not-be-echoed", claims),
                     RT_OK);
    assert_int_equal(rt_testtoken_craft(&tokens[4], "{\"alg\":\"none\"}", claims, ""), RT_OK);
    assert_int_equal(
        rt_testtoken_craft(&tokens[5], "{\"alg\":\"HS256\",\"typ\":\"evil-typ\"}", claims, "c2ln"),
        RT_OK);
    for (size_t i = 0; i < 6; i++) {
        char detail[512];
        auth_claims out;
        const char *dot1 = strchr(tokens[i], '.'), *dot2 = strrchr(tokens[i], '.');
        auth_verify_error err =
            auth_jwt_verify(&out, i == 1 || i == 2 ? hs_keys : all_keys, &rules, tokens[i],
                            strlen(tokens[i]), NOW, detail, sizeof(detail));
        assert_int_not_equal(err, V(UNSPECIFIED));
        assert_null(strstr(detail, tokens[i]));
        char head[16], body[16], sig[16];
        snprintf(head, sizeof(head), "%.*s", (int)(dot1 - tokens[i]), tokens[i]);
        snprintf(body, sizeof(body), "%s", dot1 + 1);
        snprintf(sig, sizeof(sig), "%s", dot2 + 1);
        assert_null(strstr(detail, head));
        assert_null(strstr(detail, body));
        if (sig[0])
            assert_null(strstr(detail, sig));
        assert_null(strstr(detail, SUB));
        assert_null(strstr(detail, "kid-that-must-not-be-echoed"));
        assert_null(strstr(detail, "evil-typ"));
        free(tokens[i]);
    }
    free(claims);
}

static void test_detail_may_be_null_and_is_truncated(void **state)
{
    auth_claims out;
    char tiny[4];
    (void)state;
    assert_int_equal(auth_jwt_verify(&out, all_keys, &rules, "x", 1, NOW, NULL, 0), V(MALFORMED));
    assert_int_equal(auth_jwt_verify(&out, all_keys, &rules, "x", 1, NOW, tiny, sizeof(tiny)),
                     V(MALFORMED));
    assert_int_equal(strlen(tiny), 3);
    assert_int_equal(auth_jwt_verify(NULL, all_keys, &rules, "x", 1, NOW, NULL, 0), V(INTERNAL));
    assert_int_equal(auth_jwt_verify(&out, NULL, &rules, "x", 1, NOW, NULL, 0), V(INTERNAL));
}

/* The decoded signature of `token` into sig (*sig_len bytes) and a copy of
 * its "header.payload" part; the caller frees the returned string. */
static char *split_signed(const char *token, unsigned char *sig, size_t sig_size, size_t *sig_len)
{
    const char *dot2 = strrchr(token, '.');
    assert_non_null(dot2);
    assert_true(auth_base64url_decode(sig, sig_size, sig_len, dot2 + 1, strlen(dot2 + 1)));
    return rt_asprintf("%.*s", (int)(dot2 - token), token);
}

/* signed_part "." base64url(sig) */
static char *with_signature(const char *signed_part, const unsigned char *sig, size_t sig_len)
{
    char *b64 = rt_testtoken_base64url(sig, sig_len);
    char *token = rt_asprintf("%s.%s", signed_part, b64);
    free(b64);
    return token;
}

/* DER INTEGER of a big-endian unsigned `len`-byte value. */
static size_t der_integer(unsigned char *out, const unsigned char *v, size_t len)
{
    size_t n = 0;
    while (len > 1 && v[0] == 0) {
        v++;
        len--;
    }
    out[n++] = 0x02;
    out[n++] = (unsigned char)(len + (v[0] & 0x80 ? 1 : 0));
    if (v[0] & 0x80)
        out[n++] = 0;
    memcpy(out + n, v, len);
    return n + len;
}

static void test_es_signature_of_wrong_length(void **state)
{
    char *claims = claims_with("");
    char *token = mint("ES256", claims);
    unsigned char sig[256], der[160], longer[65];
    size_t sig_len, der_len = 2;
    char *signed_part = split_signed(token, sig, sizeof(sig), &sig_len), *forged;
    (void)state;

    assert_int_equal(sig_len, 64);
    assert_int_equal(verify(token), V(UNSPECIFIED));
    /* Too short or too long by one byte, and empty. */
    forged = with_signature(signed_part, sig, 63);
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    memcpy(longer, sig, 64);
    longer[64] = 0;
    forged = with_signature(signed_part, longer, sizeof(longer));
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    forged = rt_asprintf("%s.", signed_part);
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    /* The same (genuine) r and s, but DER-encoded as OpenSSL would: JWS
     * only ever accepts the raw r || s form. */
    der_len += der_integer(der + der_len, sig, 32);
    der_len += der_integer(der + der_len, sig + 32, 32);
    der[0] = 0x30;
    der[1] = (unsigned char)(der_len - 2);
    forged = with_signature(signed_part, der, der_len);
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    /* A P-521-sized (ES512) signature under ES256. */
    memset(der, 0x11, 132);
    forged = with_signature(signed_part, der, 132);
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    free(signed_part);
    free(token);
    free(claims);
}

static void test_es_signature_with_r_or_s_zero(void **state)
{
    char *claims = claims_with("");
    char *token = mint("ES256", claims);
    unsigned char sig[128], zeroed[64];
    size_t sig_len;
    char *signed_part = split_signed(token, sig, sizeof(sig), &sig_len), *forged;
    (void)state;

    assert_int_equal(sig_len, 64);
    for (int which = 0; which < 3; which++) {
        memcpy(zeroed, sig, 64);
        if (which != 1)
            memset(zeroed, 0, 32); /* r = 0 */
        if (which != 0)
            memset(zeroed + 32, 0, 32); /* s = 0 */
        forged = with_signature(signed_part, zeroed, sizeof(zeroed));
        if (verify(forged) != V(BAD_SIGNATURE))
            fail_msg("ES256 signature with %s zero was not refused", which == 0   ? "r"
                                                                     : which == 1 ? "s"
                                                                                  : "r and s");
        free(forged);
    }
    free(signed_part);
    free(token);
    free(claims);
}

static void test_rs_signature_of_wrong_length(void **state)
{
    char *claims = claims_with("");
    char *token = mint("RS256", claims);
    unsigned char sig[600], longer[257];
    size_t sig_len;
    char *signed_part = split_signed(token, sig, sizeof(sig), &sig_len), *forged;
    (void)state;

    assert_int_equal(sig_len, 256);
    forged = with_signature(signed_part, sig, 255);
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    /* A leading zero byte does not change the number, but it is not the
     * modulus' size. */
    longer[0] = 0;
    memcpy(longer + 1, sig, 256);
    forged = with_signature(signed_part, longer, sizeof(longer));
    assert_int_equal(verify(forged), V(BAD_SIGNATURE));
    free(forged);
    free(signed_part);
    free(token);
    free(claims);
}

static void test_hs256_signature_of_wrong_length(void **state)
{
    char *claims = claims_with("");
    char *token = mint("HS256", claims);
    unsigned char sig[128];
    size_t sig_len;
    char *signed_part = split_signed(token, sig, sizeof(sig), &sig_len), *forged;
    (void)state;

    assert_int_equal(sig_len, 32);
    /* A prefix of the genuine MAC must not pass a prefix comparison. */
    for (size_t len = 0; len < 32; len += 8) {
        forged = with_signature(signed_part, sig, len);
        assert_int_equal(verify(forged), V(BAD_SIGNATURE));
        free(forged);
    }
    free(signed_part);
    free(token);
    free(claims);
}

static void test_rs_verified_after_keyset_reload(void **state)
{
    /* SIGHUP builds a fresh keyset from the JWKS and drops the old one; the
     * parsed keys of the new keyset must serve, and a rotated key (same kid,
     * new key pair) must replace the old one. */
    char *claims = claims_with("");
    char *rs = mint("RS256", claims), *es = mint("ES256", claims), *rotated_rs = NULL;
    auth_keyset *keys = NULL;
    rt_testkeys *rotated = NULL;
    (void)state;

    for (int round = 0; round < 3; round++) {
        assert_int_equal(auth_keyset_create(&keys, SECRET, rt_testkeys_jwks(test_keys)), RT_OK);
        assert_int_equal(verify_with(NULL, keys, &rules, rs), V(UNSPECIFIED));
        assert_int_equal(verify_with(NULL, keys, &rules, es), V(UNSPECIFIED));
        auth_keyset_destroy(keys);
        keys = NULL;
    }
    /* The tokens signed before still verify with the long-lived keyset. */
    assert_int_equal(verify(rs), V(UNSPECIFIED));

    assert_int_equal(rt_testkeys_create(&rotated, "rsa-1", "ec-1"), RT_OK);
    assert_int_equal(auth_keyset_create(&keys, SECRET, rt_testkeys_jwks(rotated)), RT_OK);
    assert_int_equal(rt_testtoken_mint(&rotated_rs, "RS256", rt_testkeys_rsa_private_pem(rotated),
                                       "rsa-1", claims),
                     RT_OK);
    assert_int_equal(verify_with(NULL, keys, &rules, rotated_rs), V(UNSPECIFIED));
    assert_int_equal(verify_with(NULL, keys, &rules, rs), V(BAD_SIGNATURE));
    assert_int_equal(verify_with(NULL, keys, &rules, es), V(BAD_SIGNATURE));
    assert_int_equal(verify(rotated_rs), V(BAD_SIGNATURE));
    auth_keyset_destroy(keys);
    rt_testkeys_destroy(rotated);
    free(rotated_rs);
    free(rs);
    free(es);
    free(claims);
}

#define CONCURRENT_THREADS 8
#define CONCURRENT_ROUNDS 150

typedef struct concurrent_job {
    const auth_keyset *keys;
    char *const *tokens; /* good HS256, RS256, ES256, then tampered ones */
    const auth_verify_error *expected;
    size_t token_count;
    int offset; /* each thread starts at another token */
    int wrong;  /* out: verdicts that differed from `expected` */
} concurrent_job;

static void *concurrent_verify(void *arg)
{
    concurrent_job *job = arg;
    for (int i = 0; i < CONCURRENT_ROUNDS; i++) {
        size_t t = ((size_t)i + (size_t)job->offset) % job->token_count;
        auth_claims out;
        char detail[64];
        auth_verify_error err =
            auth_jwt_verify(&out, job->keys, &rules, job->tokens[t], strlen(job->tokens[t]), NOW,
                            detail, sizeof(detail));
        if (err != job->expected[t] || (err == V(UNSPECIFIED) && strcmp(out.sub, SUB) != 0))
            job->wrong++;
    }
    return NULL;
}

static void test_concurrent_verification(void **state)
{
    /* One keyset, 8 threads, the three algorithms interleaved, good and bad
     * tokens: every verdict must be what a single thread gets (and ASan must
     * see no race on the shared EVP_PKEYs and HMAC context). */
    char *claims = claims_with("");
    char *tokens[6];
    const auth_verify_error expected[6] = {V(UNSPECIFIED),   V(UNSPECIFIED),   V(UNSPECIFIED),
                                           V(BAD_SIGNATURE), V(BAD_SIGNATURE), V(BAD_SIGNATURE)};
    concurrent_job jobs[CONCURRENT_THREADS];
    pthread_t threads[CONCURRENT_THREADS];
    (void)state;

    tokens[0] = mint("HS256", claims);
    tokens[1] = mint("RS256", claims);
    tokens[2] = mint("ES256", claims);
    for (int i = 3; i < 6; i++) {
        tokens[i] = rt_strdup(tokens[i - 3]);
        assert_int_equal(rt_testtoken_flip_signature(tokens[i]), RT_OK);
    }
    for (int i = 0; i < CONCURRENT_THREADS; i++) {
        jobs[i] = (concurrent_job){.keys = all_keys,
                                   .tokens = tokens,
                                   .expected = expected,
                                   .token_count = 6,
                                   .offset = i};
        assert_int_equal(pthread_create(&threads[i], NULL, concurrent_verify, &jobs[i]), 0);
    }
    for (int i = 0; i < CONCURRENT_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        if (jobs[i].wrong)
            fail_msg("thread %d got %d wrong verdicts", i, jobs[i].wrong);
    }
    for (int i = 0; i < 6; i++)
        free(tokens[i]);
    free(claims);
}

static void test_error_names(void **state)
{
    static const char *const names[] = {
        "ok",
        "malformed",
        "too_large",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "bad_signature",
        "wrong_audience",
        "wrong_issuer",
        "algorithm_not_allowed",
        "unknown_key",
        "missing_subject",
        "missing_expiry",
        "internal",
        "unavailable",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(auth_verify_error_name((auth_verify_error)i), names[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hs256),
        cmocka_unit_test(test_valid_rs256),
        cmocka_unit_test(test_valid_es256),
        cmocka_unit_test(test_token_need_not_be_nul_terminated),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_expired_within_leeway_accepted),
        cmocka_unit_test(test_expired_without_leeway),
        cmocka_unit_test(test_nbf_in_future),
        cmocka_unit_test(test_iat_in_future),
        cmocka_unit_test(test_wrong_audience),
        cmocka_unit_test(test_aud_array_containing_audience_accepted),
        cmocka_unit_test(test_aud_of_wrong_type_malformed),
        cmocka_unit_test(test_wrong_issuer),
        cmocka_unit_test(test_missing_sub),
        cmocka_unit_test(test_sub_with_bad_characters),
        cmocka_unit_test(test_missing_exp),
        cmocka_unit_test(test_exp_of_wrong_type_malformed),
        cmocka_unit_test(test_bad_signature_tampered),
        cmocka_unit_test(test_payload_swapped_bad_signature),
        cmocka_unit_test(test_signed_with_another_secret),
        cmocka_unit_test(test_signed_with_another_rsa_key),
        cmocka_unit_test(test_alg_none_rejected),
        cmocka_unit_test(test_unsupported_algs_rejected),
        cmocka_unit_test(test_algorithm_confusion_rejected),
        cmocka_unit_test(test_rs256_without_jwks),
        cmocka_unit_test(test_hs256_without_secret),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_kid_of_other_key_type),
        cmocka_unit_test(test_token_over_8k_too_large),
        cmocka_unit_test(test_garbage_tokens_malformed),
        cmocka_unit_test(test_bad_json_parts_malformed),
        cmocka_unit_test(test_truncated_tokens_refused),
        cmocka_unit_test(test_nul_byte_inside_token_malformed),
        cmocka_unit_test(test_role_from_app_metadata),
        cmocka_unit_test(test_session_id_extracted),
        cmocka_unit_test(test_detail_never_contains_the_token),
        cmocka_unit_test(test_detail_may_be_null_and_is_truncated),
        cmocka_unit_test(test_es_signature_of_wrong_length),
        cmocka_unit_test(test_es_signature_with_r_or_s_zero),
        cmocka_unit_test(test_rs_signature_of_wrong_length),
        cmocka_unit_test(test_hs256_signature_of_wrong_length),
        cmocka_unit_test(test_rs_verified_after_keyset_reload),
        cmocka_unit_test(test_concurrent_verification),
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
