/*
 * auth_keys: JWKS -> parsed and PEM keys, kid lookup, algorithm restrictions, and what
 * happens to JWKs that cannot be used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth_keys.h"
#include "rt_log.h"
#include "rt_testtoken.h"

#define SECRET "super-secret-jwt-token-with-at-least-32-characters"

static rt_testkeys *test_keys;

static int group_setup(void **state)
{
    (void)state;
    return rt_testkeys_create(&test_keys, "rsa-1", "ec-1") == RT_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rt_testkeys_destroy(test_keys);
    return 0;
}

/* The generated JWK with kid `kid` ("rsa-1" or "ec-1"), as a new object. */
static json_t *base_jwk(const char *kid)
{
    json_t *doc = json_loads(rt_testkeys_jwks(test_keys), 0, NULL);
    json_t *found = NULL;
    size_t i;
    json_t *jwk;

    assert_non_null(doc);
    json_array_foreach(json_object_get(doc, "keys"), i, jwk)
    {
        if (strcmp(json_string_value(json_object_get(jwk, "kid")), kid) == 0)
            found = json_deep_copy(jwk);
    }
    json_decref(doc);
    assert_non_null(found);
    return found;
}

/* {"keys":[...]} from a NULL-terminated list of JWKs (references stolen). */
static char *jwks_of(json_t *first, ...)
{
    json_t *keys = json_array();
    va_list ap;
    char *text;

    va_start(ap, first);
    for (json_t *jwk = first; jwk; jwk = va_arg(ap, json_t *))
        json_array_append_new(keys, jwk);
    va_end(ap);
    json_t *doc = json_pack("{s:o}", "keys", keys);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* A copy of base_jwk(from) with a new kid and `field` set (or removed when
 * value is NULL). */
static json_t *jwk_variant(const char *from, const char *kid, const char *field, json_t *value)
{
    json_t *jwk = base_jwk(from);
    json_object_set_new(jwk, "kid", json_string(kid));
    if (field) {
        if (value)
            json_object_set_new(jwk, field, value);
        else
            json_object_del(jwk, field);
    }
    return jwk;
}

static void test_alg_names(void **state)
{
    (void)state;
    assert_int_equal(auth_alg_from_name("HS256"), AUTH_ALG_HS256);
    assert_int_equal(auth_alg_from_name("RS512"), AUTH_ALG_RS512);
    assert_int_equal(auth_alg_from_name("ES384"), AUTH_ALG_ES384);
    assert_int_equal(auth_alg_from_name("none"), AUTH_ALG_NONE);
    assert_int_equal(auth_alg_from_name("hs256"), AUTH_ALG_NONE);
    assert_int_equal(auth_alg_from_name("HS384"), AUTH_ALG_NONE);
    assert_int_equal(auth_alg_from_name(NULL), AUTH_ALG_NONE);
    assert_string_equal(auth_alg_name(AUTH_ALG_ES256), "ES256");
    assert_string_equal(auth_alg_name(AUTH_ALG_NONE), "none");
}

static void test_base64url_decode(void **state)
{
    unsigned char out[16];
    size_t len = 0;
    (void)state;
    assert_true(auth_base64url_decode(out, sizeof(out), &len, "QQ", 2));
    assert_int_equal(len, 1);
    assert_int_equal(out[0], 'A');
    assert_true(auth_base64url_decode(out, sizeof(out), &len, "-_8", 3));
    assert_int_equal(len, 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_true(auth_base64url_decode(out, sizeof(out), &len, "", 0));
    assert_int_equal(len, 0);
    assert_false(auth_base64url_decode(out, sizeof(out), &len, "QR", 2));   /* stray bits */
    assert_false(auth_base64url_decode(out, sizeof(out), &len, "Q", 1));    /* impossible */
    assert_false(auth_base64url_decode(out, sizeof(out), &len, "QQ==", 4)); /* padding */
    assert_false(auth_base64url_decode(out, sizeof(out), &len, "+/8A", 4)); /* base64 */
    assert_false(auth_base64url_decode(out, sizeof(out), &len, "QU\0A", 4));
    assert_false(auth_base64url_decode(out, 2, &len, "QUJD", 4)); /* 3 bytes > 2 */
}

static void test_jwks_with_rsa_and_ec_keys(void **state)
{
    auth_keyset *keys = NULL;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, NULL, rt_testkeys_jwks(test_keys)), RT_OK);
    assert_int_equal(auth_keyset_public_key_count(keys), 2);
    assert_false(auth_keyset_has_hs256(keys));
    auth_keyset_destroy(keys);
}

static void test_kid_lookup_gives_the_public_pem(void **state)
{
    auth_keyset *keys = NULL;
    const unsigned char *key;
    size_t key_len;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, SECRET, rt_testkeys_jwks(test_keys)), RT_OK);

    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS256, "rsa-1"), RT_OK);
    assert_int_equal(key_len, strlen(rt_testkeys_rsa_public_pem(test_keys)));
    assert_memory_equal(key, rt_testkeys_rsa_public_pem(test_keys), key_len);

    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_ES256, "ec-1"), RT_OK);
    assert_int_equal(key_len, strlen(rt_testkeys_ec_public_pem(test_keys)));
    assert_memory_equal(key, rt_testkeys_ec_public_pem(test_keys), key_len);

    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS256, "nope"),
                     RT_ERR_NOT_FOUND);
    assert_null(key);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS256, NULL),
                     RT_ERR_NOT_FOUND);
    auth_keyset_destroy(keys);
}

static void test_alg_restricted_by_jwk_alg(void **state)
{
    auth_keyset *keys = NULL;
    const unsigned char *key;
    size_t key_len;
    /* rsa-1 says "alg":"RS256"; rsa-any names no alg, so any RS* fits. */
    char *jwks = jwks_of(base_jwk("rsa-1"), jwk_variant("rsa-1", "rsa-any", "alg", NULL),
                         base_jwk("ec-1"), NULL);
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, NULL, jwks), RT_OK);
    assert_int_equal(auth_keyset_public_key_count(keys), 3);

    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS256, "rsa-1"), RT_OK);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS384, "rsa-1"), RT_ERR_AUTH);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS384, "rsa-any"), RT_OK);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS512, "rsa-any"), RT_OK);
    /* The key type must fit too. */
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS256, "ec-1"), RT_ERR_AUTH);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_ES256, "rsa-1"), RT_ERR_AUTH);
    /* A P-256 key verifies ES256 only; no key allows ES384 at all. */
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_ES384, "ec-1"), RT_ERR_AUTH);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_ES384, "nope"), RT_ERR_AUTH);
    /* Public keys never serve HS256 or none. */
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_HS256, "rsa-1"), RT_ERR_AUTH);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_NONE, "rsa-1"), RT_ERR_AUTH);
    auth_keyset_destroy(keys);
    free(jwks);
}

/* The public key in `pem`, parsed. */
static EVP_PKEY *pem_pkey(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(pkey);
    return pkey;
}

static void test_verify_key_lookup(void **state)
{
    auth_keyset *keys = NULL;
    auth_verify_key vk;
    char *jwks = jwks_of(base_jwk("rsa-1"), jwk_variant("rsa-1", "rsa-any", "alg", NULL),
                         base_jwk("ec-1"), NULL);
    EVP_PKEY *rsa = pem_pkey(rt_testkeys_rsa_public_pem(test_keys));
    EVP_PKEY *ec = pem_pkey(rt_testkeys_ec_public_pem(test_keys));
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, SECRET, jwks), RT_OK);

    /* The parsed keys are the JWKS' keys, with the alg's digest. */
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_RS256, "rsa-1"), RT_OK);
    assert_non_null(vk.pkey);
    assert_null(vk.hmac);
    assert_true(EVP_PKEY_is_a(vk.pkey, "RSA"));
    assert_int_equal(EVP_PKEY_eq(vk.pkey, rsa), 1);
    assert_true(EVP_MD_is_a(vk.md, "SHA256"));
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_RS384, "rsa-any"), RT_OK);
    assert_int_equal(EVP_PKEY_eq(vk.pkey, rsa), 1);
    assert_true(EVP_MD_is_a(vk.md, "SHA384"));
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_RS512, "rsa-any"), RT_OK);
    assert_true(EVP_MD_is_a(vk.md, "SHA512"));
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_ES256, "ec-1"), RT_OK);
    assert_true(EVP_PKEY_is_a(vk.pkey, "EC"));
    assert_int_equal(EVP_PKEY_eq(vk.pkey, ec), 1);
    assert_true(EVP_MD_is_a(vk.md, "SHA256"));
    /* HS256: the keyed HMAC, never a public key, whatever the kid. */
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_HS256, "rsa-1"), RT_OK);
    assert_non_null(vk.hmac);
    assert_null(vk.pkey);
    assert_null(vk.md);

    /* Exactly the pinning of auth_keyset_find(); *out is cleared. */
    static const struct {
        auth_alg alg;
        const char *kid;
        rt_status expected;
    } refused[] = {
        {AUTH_ALG_RS384, "rsa-1", RT_ERR_AUTH},     {AUTH_ALG_RS256, "ec-1", RT_ERR_AUTH},
        {AUTH_ALG_ES256, "rsa-1", RT_ERR_AUTH},     {AUTH_ALG_ES384, "ec-1", RT_ERR_AUTH},
        {AUTH_ALG_ES512, "nope", RT_ERR_AUTH},      {AUTH_ALG_NONE, "rsa-1", RT_ERR_AUTH},
        {AUTH_ALG_RS256, "nope", RT_ERR_NOT_FOUND}, {AUTH_ALG_RS256, NULL, RT_ERR_NOT_FOUND},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const unsigned char *key;
        size_t key_len;
        memset(&vk, 0xff, sizeof(vk));
        assert_int_equal(auth_keyset_find_verify_key(&vk, keys, refused[i].alg, refused[i].kid),
                         refused[i].expected);
        assert_int_equal(auth_keyset_find(&key, &key_len, keys, refused[i].alg, refused[i].kid),
                         refused[i].expected);
        assert_null(vk.pkey);
        assert_null(vk.hmac);
        assert_null(vk.md);
    }
    auth_keyset_destroy(keys);

    /* No secret: no HS256; no JWKS: no public key. */
    assert_int_equal(auth_keyset_create(&keys, NULL, jwks), RT_OK);
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_HS256, NULL), RT_ERR_AUTH);
    auth_keyset_destroy(keys);
    assert_int_equal(auth_keyset_create(&keys, SECRET, NULL), RT_OK);
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_RS256, "rsa-1"), RT_ERR_AUTH);
    assert_int_equal(auth_keyset_find_verify_key(&vk, keys, AUTH_ALG_HS256, NULL), RT_OK);
    assert_non_null(vk.hmac);
    assert_int_equal(auth_keyset_find_verify_key(NULL, keys, AUTH_ALG_HS256, NULL),
                     RT_ERR_INVALID_ARG);
    auth_keyset_destroy(keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    free(jwks);
}

/* Runs auth_keyset_create with the log captured; returns the log text. */
static char *create_capturing_log(rt_status *st, auth_keyset **keys, const char *secret,
                                  const char *jwks)
{
    char *log = NULL;
    size_t log_len = 0;
    FILE *stream = open_memstream(&log, &log_len);

    assert_non_null(stream);
    rt_log_set_stream(stream);
    *st = auth_keyset_create(keys, secret, jwks);
    rt_log_set_stream(NULL);
    fclose(stream);
    return log;
}

static size_t count_of(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_bad_jwks_skipped_with_warning(void **state)
{
    /* A 1024-bit odd modulus: the size check refuses it before OpenSSL. */
    unsigned char small_n[128];
    memset(small_n, 0xab, sizeof(small_n));
    char *small_n_b64 = rt_testtoken_base64url(small_n, sizeof(small_n));
    json_t *off_curve = jwk_variant("ec-1", "ec-off-curve", NULL, NULL);
    const char *x = json_string_value(json_object_get(off_curve, "x"));
    char *bad_x = strdup(x);
    bad_x[5] = bad_x[5] == 'A' ? 'B' : 'A';
    json_object_set_new(off_curve, "x", json_string(bad_x));
    free(bad_x);
    json_t *no_kid = base_jwk("rsa-1");
    json_object_del(no_kid, "kid");

    char *jwks = jwks_of(
        base_jwk("rsa-1"),
        jwk_variant("rsa-1", "rsa-private", "d", json_string("PRIVATE-EXPONENT-MUST-NOT-LEAK")),
        jwk_variant("ec-1", "ec-private", "d", json_string("EC-PRIVATE-MUST-NOT-LEAK")),
        jwk_variant("rsa-1", "rsa-enc", "use", json_string("enc")),
        jwk_variant("rsa-1", "rsa-ops", "key_ops", json_pack("[s]", "encrypt")),
        jwk_variant("rsa-1", "oct-key", "kty", json_string("oct")),
        jwk_variant("rsa-1", "rsa-bad-n", "n", json_string("not base64url!")),
        jwk_variant("rsa-1", "rsa-small", "n", json_string(small_n_b64)),
        jwk_variant("rsa-1", "rsa-ps256", "alg", json_string("PS256")),
        jwk_variant("rsa-1", "rsa-as-es", "alg", json_string("ES256")),
        jwk_variant("ec-1", "ec-p192", "crv", json_string("P-192")),
        jwk_variant("ec-1", "ec-wrong-alg", "alg", json_string("ES384")),
        jwk_variant("ec-1", "ec-short-y", "y", json_string("AAAA")), off_curve, no_kid,
        base_jwk("rsa-1") /* duplicate kid */, json_string("not an object"), NULL);
    auth_keyset *keys = NULL;
    rt_status st;
    (void)state;

    char *log = create_capturing_log(&st, &keys, SECRET, jwks);
    assert_int_equal(st, RT_OK);
    assert_int_equal(auth_keyset_public_key_count(keys), 1);
    assert_int_equal(count_of(log, "jwks key skipped"), 16);
    const char *kids[] = {"rsa-private",  "ec-private", "rsa-enc",     "rsa-ops",   "oct-key",
                          "rsa-bad-n",    "rsa-small",  "rsa-ps256",   "rsa-as-es", "ec-p192",
                          "ec-wrong-alg", "ec-short-y", "ec-off-curve"};
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\"kid\":\"%s\"", kids[i]);
        if (!strstr(log, needle))
            fail_msg("no warning names kid %s in:\n%s", kids[i], log);
    }
    assert_non_null(strstr(log, "duplicate kid"));
    assert_non_null(strstr(log, "private key material"));
    assert_non_null(strstr(log, "2048 bits"));
    /* Secrets never reach the log. */
    assert_null(strstr(log, "MUST-NOT-LEAK"));
    assert_null(strstr(log, SECRET));

    auth_keyset_destroy(keys);
    free(log);
    free(jwks);
    free(small_n_b64);
}

static void test_empty_jwks_is_an_error(void **state)
{
    auth_keyset *keys = (auth_keyset *)0x1;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, NULL, "{\"keys\":[]}"), RT_ERR_CONFIG);
    assert_null(keys);
    /* Even with a secret: a JWKS that yields nothing is a misconfiguration. */
    assert_int_equal(auth_keyset_create(&keys, SECRET, "{\"keys\":[]}"), RT_ERR_CONFIG);
    assert_null(keys);
}

static void test_no_usable_key_is_an_error(void **state)
{
    auth_keyset *keys = NULL;
    char *jwks = jwks_of(jwk_variant("rsa-1", "rsa-enc", "use", json_string("enc")),
                         jwk_variant("ec-1", "ec-p192", "crv", json_string("P-192")), NULL);
    rt_status st;
    (void)state;
    char *log = create_capturing_log(&st, &keys, SECRET, jwks);
    assert_int_equal(st, RT_ERR_CONFIG);
    assert_null(keys);
    assert_int_equal(count_of(log, "jwks key skipped"), 2);
    free(log);
    free(jwks);
}

static void test_malformed_jwks_documents(void **state)
{
    auth_keyset *keys = NULL;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, SECRET, "not json"), RT_ERR_JSON);
    assert_int_equal(auth_keyset_create(&keys, SECRET, "{\"kty\":\"RSA\"}"), RT_ERR_JSON);
    assert_int_equal(auth_keyset_create(&keys, SECRET, "{\"keys\":{}}"), RT_ERR_JSON);
    assert_int_equal(auth_keyset_create(&keys, SECRET, "[]"), RT_ERR_JSON);
    assert_null(keys);
}

static void test_hs_only_keyset(void **state)
{
    auth_keyset *keys = NULL;
    const unsigned char *key;
    size_t key_len;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, SECRET, NULL), RT_OK);
    assert_true(auth_keyset_has_hs256(keys));
    assert_int_equal(auth_keyset_public_key_count(keys), 0);

    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_HS256, NULL), RT_OK);
    assert_int_equal(key_len, strlen(SECRET));
    assert_memory_equal(key, SECRET, key_len);
    /* The kid does not matter for HS256. */
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_HS256, "rsa-1"), RT_OK);
    assert_memory_equal(key, SECRET, key_len);

    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_RS256, "rsa-1"), RT_ERR_AUTH);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_ES256, NULL), RT_ERR_AUTH);
    auth_keyset_destroy(keys);
}

static void test_hs256_secret_never_paired_with_public_keys(void **state)
{
    auth_keyset *keys = NULL;
    const unsigned char *key;
    size_t key_len;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, SECRET, rt_testkeys_jwks(test_keys)), RT_OK);
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_HS256, "rsa-1"), RT_OK);
    assert_memory_equal(key, SECRET, key_len);
    auth_keyset_destroy(keys);

    assert_int_equal(auth_keyset_create(&keys, "", rt_testkeys_jwks(test_keys)), RT_OK);
    assert_false(auth_keyset_has_hs256(keys));
    assert_int_equal(auth_keyset_find(&key, &key_len, keys, AUTH_ALG_HS256, "rsa-1"), RT_ERR_AUTH);
    auth_keyset_destroy(keys);
}

static void test_no_keys_at_all_is_an_error(void **state)
{
    auth_keyset *keys = NULL;
    (void)state;
    assert_int_equal(auth_keyset_create(&keys, NULL, NULL), RT_ERR_CONFIG);
    assert_int_equal(auth_keyset_create(&keys, "", NULL), RT_ERR_CONFIG);
    assert_null(keys);
    auth_keyset_destroy(NULL);
}

static void test_load_from_file(void **state)
{
    char path[] = "/tmp/test_auth_keys_XXXXXX";
    int fd = mkstemp(path);
    auth_keyset *keys = NULL;
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(rt_testkeys_write_jwks(test_keys, path), RT_OK);
    assert_int_equal(auth_keyset_load(&keys, NULL, path), RT_OK);
    assert_int_equal(auth_keyset_public_key_count(keys), 2);
    auth_keyset_destroy(keys);
    unlink(path);

    keys = NULL;
    assert_int_equal(auth_keyset_load(&keys, SECRET, path), RT_ERR_IO);
    assert_null(keys);
    /* No path: secret only. */
    assert_int_equal(auth_keyset_load(&keys, SECRET, NULL), RT_OK);
    assert_true(auth_keyset_has_hs256(keys));
    auth_keyset_destroy(keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_base64url_decode),
        cmocka_unit_test(test_jwks_with_rsa_and_ec_keys),
        cmocka_unit_test(test_kid_lookup_gives_the_public_pem),
        cmocka_unit_test(test_alg_restricted_by_jwk_alg),
        cmocka_unit_test(test_verify_key_lookup),
        cmocka_unit_test(test_bad_jwks_skipped_with_warning),
        cmocka_unit_test(test_empty_jwks_is_an_error),
        cmocka_unit_test(test_no_usable_key_is_an_error),
        cmocka_unit_test(test_malformed_jwks_documents),
        cmocka_unit_test(test_hs_only_keyset),
        cmocka_unit_test(test_hs256_secret_never_paired_with_public_keys),
        cmocka_unit_test(test_no_keys_at_all_is_an_error),
        cmocka_unit_test(test_load_from_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
