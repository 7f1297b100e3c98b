/*
 * auth_keys: HS256 secret + JWKS -> the OpenSSL objects tokens are verified
 * with.
 *
 * Each usable JWK is turned into an OpenSSL 3 EVP_PKEY (EVP_PKEY_fromdata,
 * never the deprecated RSA_/EC_KEY setters), checked with
 * EVP_PKEY_public_check, and kept, along with its SubjectPublicKeyInfo PEM
 * and which algorithms it may verify. The digests and the keyed HMAC context
 * are fetched here too, once: OpenSSL 3 fetches go through a locked method
 * store, which is not something to do per token.
 */
#include "auth_keys.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_log.h"

/* Bounds on what a JWKS may hold; anything bigger is not a Supabase JWKS. */
#define AUTH_JWKS_MAX_BYTES (1024 * 1024)
#define AUTH_JWKS_MAX_KEYS 64
#define AUTH_KID_MAX_LEN 256
#define AUTH_RSA_MIN_BITS 2048
#define AUTH_RSA_MAX_BYTES 1024 /* 8192-bit modulus */
#define AUTH_RSA_E_MAX_BYTES 8
#define AUTH_EC_MAX_FIELD_BYTES 66 /* P-521 */

#define ALG_BIT(a) (1u << (unsigned)(a))
#define RSA_ALGS (ALG_BIT(AUTH_ALG_RS256) | ALG_BIT(AUTH_ALG_RS384) | ALG_BIT(AUTH_ALG_RS512))
#define EC_ALGS (ALG_BIT(AUTH_ALG_ES256) | ALG_BIT(AUTH_ALG_ES384) | ALG_BIT(AUTH_ALG_ES512))

typedef struct auth_public_key {
    char *kid;
    EVP_PKEY *pkey; /* public only, never modified once built */
    char *pem;      /* SubjectPublicKeyInfo PEM, NUL-terminated */
    size_t pem_len;
    unsigned allowed_algs; /* ALG_BIT() mask */
} auth_public_key;

struct auth_keyset {
    unsigned char *hs256_secret; /* NULL when none */
    size_t hs256_secret_len;
    EVP_MAC_CTX *hs256_mac; /* HMAC-SHA256 keyed with the secret; NULL when none */
    auth_public_key *keys;
    size_t key_count;
    unsigned public_algs;             /* union of every key's allowed_algs */
    EVP_MD *sha256, *sha384, *sha512; /* NULL when there is no public key */
};

static const struct {
    auth_alg alg;
    const char *name;
} alg_names[] = {
    {AUTH_ALG_HS256, "HS256"}, {AUTH_ALG_RS256, "RS256"}, {AUTH_ALG_RS384, "RS384"},
    {AUTH_ALG_RS512, "RS512"}, {AUTH_ALG_ES256, "ES256"}, {AUTH_ALG_ES384, "ES384"},
    {AUTH_ALG_ES512, "ES512"},
};

auth_alg auth_alg_from_name(const char *name)
{
    if (!name)
        return AUTH_ALG_NONE;
    /* JWA names are case-sensitive (RFC 7518 section 3.1). */
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++) {
        if (strcmp(name, alg_names[i].name) == 0)
            return alg_names[i].alg;
    }
    return AUTH_ALG_NONE;
}

const char *auth_alg_name(auth_alg alg)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++) {
        if (alg_names[i].alg == alg)
            return alg_names[i].name;
    }
    return "none";
}

/* ---- base64url ---- */

/* Value of a base64url character, or -1. */
static const signed char b64url_values[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,  ['H'] = 7,
    ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
    ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
    ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
    ['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['-'] = 62, ['_'] = 63,
};

/* The table above leaves every other entry 0, which is also the value of 'A';
 * this tells them apart. */
static int b64url_value(unsigned char c)
{
    if (c == 'A')
        return 0;
    return b64url_values[c] ? b64url_values[c] : -1;
}

bool auth_base64url_decode(unsigned char *out, size_t out_size, size_t *out_len, const char *in,
                           size_t in_len)
{
    size_t full = in_len / 4, rest = in_len % 4, n = 0;
    const unsigned char *p = (const unsigned char *)in;

    if (rest == 1 || in_len / 4 * 3 + (rest ? rest - 1 : 0) > out_size)
        return false;
    for (size_t i = 0; i < full; i++, p += 4) {
        int a = b64url_value(p[0]), b = b64url_value(p[1]), c = b64url_value(p[2]),
            d = b64url_value(p[3]);
        if ((a | b | c | d) < 0)
            return false;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[n++] = (unsigned char)(v >> 16);
        out[n++] = (unsigned char)(v >> 8);
        out[n++] = (unsigned char)v;
    }
    if (rest == 2) {
        int a = b64url_value(p[0]), b = b64url_value(p[1]);
        if ((a | b) < 0 || (b & 0x0f))
            return false;
        out[n++] = (unsigned char)((a << 2) | (b >> 4));
    } else if (rest == 3) {
        int a = b64url_value(p[0]), b = b64url_value(p[1]), c = b64url_value(p[2]);
        if ((a | b | c) < 0 || (c & 0x03))
            return false;
        out[n++] = (unsigned char)((a << 2) | (b >> 4));
        out[n++] = (unsigned char)(((b & 0x0f) << 4) | (c >> 2));
    }
    *out_len = n;
    return true;
}

/* ---- JWK -> EVP_PKEY -> PEM ---- */

/* Decodes the base64url string member `name` of `jwk` into `out`. */
static bool jwk_bytes(unsigned char *out, size_t out_size, size_t *out_len, json_t *jwk,
                      const char *name)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return false;
    return auth_base64url_decode(out, out_size, out_len, json_string_value(v),
                                 json_string_length(v));
}

/* Writes the public key as PEM; NULL when OpenSSL fails. */
static char *pkey_to_pem(size_t *out_len, EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL, *data = NULL;
    long len;

    if (bio && PEM_write_bio_PUBKEY(bio, pkey) == 1) {
        len = BIO_get_mem_data(bio, &data);
        if (len > 0 && data) {
            pem = rt_strndup(data, (size_t)len);
            *out_len = (size_t)len;
        }
    }
    BIO_free(bio);
    return pem;
}

/* Builds a public EVP_PKEY of `type` ("RSA"/"EC") from `params` and checks it
 * (EC: point on the curve and in the right subgroup; RSA: odd modulus,
 * sensible exponent). Returns NULL when OpenSSL refuses it. */
static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pkey = NULL;

    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto fail;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1)
        goto fail;
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
fail:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return NULL;
}

/* RSA JWK (n, e) -> EVP_PKEY. Returns NULL on success or why the key is
 * unusable. */
static const char *rsa_jwk_to_pkey(EVP_PKEY **out_pkey, json_t *jwk)
{
    unsigned char n_bytes[AUTH_RSA_MAX_BYTES], e_bytes[AUTH_RSA_E_MAX_BYTES];
    size_t n_len, e_len;
    const char *why = NULL;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;

    if (!jwk_bytes(n_bytes, sizeof(n_bytes), &n_len, jwk, "n"))
        return "n is missing, not base64url or longer than 8192 bits";
    if (!jwk_bytes(e_bytes, sizeof(e_bytes), &e_len, jwk, "e"))
        return "e is missing, not base64url or too long";
    n = BN_bin2bn(n_bytes, (int)n_len, NULL);
    e = BN_bin2bn(e_bytes, (int)e_len, NULL);
    if (!n || !e) {
        why = "OpenSSL could not read n or e";
        goto done;
    }
    if (BN_num_bits(n) < AUTH_RSA_MIN_BITS) {
        why = "RSA modulus shorter than 2048 bits";
        goto done;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
        !(params = OSSL_PARAM_BLD_to_param(bld))) {
        why = "OpenSSL could not build the key parameters";
        goto done;
    }
    *out_pkey = pkey_from_params("RSA", params);
    if (!*out_pkey)
        why = "OpenSSL rejected the RSA public key";
done:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    ERR_clear_error();
    return why;
}

/* EC JWK (crv, x, y) -> EVP_PKEY and the one algorithm its curve verifies. */
static const char *ec_jwk_to_pkey(EVP_PKEY **out_pkey, auth_alg *out_alg, json_t *jwk)
{
    static const struct {
        const char *crv;
        const char *group; /* OpenSSL's name for it */
        size_t field_bytes;
        auth_alg alg;
    } curves[] = {
        {"P-256", "prime256v1", 32, AUTH_ALG_ES256},
        {"P-384", "secp384r1", 48, AUTH_ALG_ES384},
        {"P-521", "secp521r1", 66, AUTH_ALG_ES512},
    };
    unsigned char point[1 + 2 * AUTH_EC_MAX_FIELD_BYTES];
    size_t x_len, y_len, curve = SIZE_MAX;
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *why = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;

    for (size_t i = 0; crv && i < sizeof(curves) / sizeof(curves[0]); i++) {
        if (strcmp(crv, curves[i].crv) == 0)
            curve = i;
    }
    if (curve == SIZE_MAX)
        return "crv is missing or not P-256, P-384 or P-521";
    size_t field = curves[curve].field_bytes;
    /* RFC 7518 6.2.1.2: x and y are exactly the field size, zero-padded. */
    point[0] = 0x04; /* uncompressed point: 04 || x || y */
    if (!jwk_bytes(point + 1, field, &x_len, jwk, "x") || x_len != field ||
        !jwk_bytes(point + 1 + field, field, &y_len, jwk, "y") || y_len != field)
        return "x or y is missing, not base64url or not the curve's size";

    bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[curve].group, 0) !=
            1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * field) != 1 ||
        !(params = OSSL_PARAM_BLD_to_param(bld))) {
        why = "OpenSSL could not build the key parameters";
        goto done;
    }
    *out_pkey = pkey_from_params("EC", params);
    if (!*out_pkey) {
        why = "the point is not on the curve";
        goto done;
    }
    *out_alg = curves[curve].alg;
done:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    ERR_clear_error();
    return why;
}

static bool jwk_has_any(json_t *jwk, const char *const *names)
{
    for (; *names; names++) {
        if (json_object_get(jwk, *names))
            return true;
    }
    return false;
}

/* Fills *out from one JWK. Returns NULL on success or why it was skipped. */
static const char *jwk_to_key(auth_public_key *out, json_t *jwk, const char *kid)
{
    static const char *const rsa_private[] = {"d", "p", "q", "dp", "dq", "qi", "oth", NULL};
    static const char *const ec_private[] = {"d", NULL};
    json_t *use = json_object_get(jwk, "use");
    json_t *ops = json_object_get(jwk, "key_ops");
    json_t *alg_json = json_object_get(jwk, "alg");
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    auth_alg alg = AUTH_ALG_NONE, curve_alg = AUTH_ALG_NONE;
    const char *why;

    if (!kid)
        return "kid is missing, empty or longer than 256 characters";
    if (use && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0))
        return "use is not \"sig\"";
    if (ops) {
        bool verify = false;
        size_t i;
        json_t *op;
        json_array_foreach(ops, i, op)
        {
            if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
                verify = true;
        }
        if (!verify)
            return "key_ops does not include \"verify\"";
    }
    if (alg_json) {
        alg = auth_alg_from_name(json_string_value(alg_json));
        if (alg == AUTH_ALG_NONE || alg == AUTH_ALG_HS256)
            return "alg is not one of RS256/384/512, ES256/384/512";
    }
    if (!kty)
        return "kty is missing";

    if (strcmp(kty, "RSA") == 0) {
        /* Private parts have no business in a published JWKS; refuse the key
         * rather than keep secrets in memory (and never log them). */
        if (jwk_has_any(jwk, rsa_private))
            return "contains private key material";
        if (alg != AUTH_ALG_NONE && !(ALG_BIT(alg) & RSA_ALGS))
            return "alg does not fit kty RSA";
        why = rsa_jwk_to_pkey(&out->pkey, jwk);
        if (why)
            return why;
        out->allowed_algs = alg != AUTH_ALG_NONE ? ALG_BIT(alg) : RSA_ALGS;
    } else if (strcmp(kty, "EC") == 0) {
        if (jwk_has_any(jwk, ec_private))
            return "contains private key material";
        if (alg != AUTH_ALG_NONE && !(ALG_BIT(alg) & EC_ALGS))
            return "alg does not fit kty EC";
        why = ec_jwk_to_pkey(&out->pkey, &curve_alg, jwk);
        if (why)
            return why;
        /* RFC 7518 3.4 ties each ES alg to one curve (P-256 -> ES256, ...);
         * the verifier relies on it for the signature size. */
        if (alg != AUTH_ALG_NONE && alg != curve_alg) {
            EVP_PKEY_free(out->pkey);
            out->pkey = NULL;
            return "alg does not fit crv";
        }
        out->allowed_algs = ALG_BIT(curve_alg);
    } else {
        return "kty is not RSA or EC";
    }
    out->pem = pkey_to_pem(&out->pem_len, out->pkey);
    ERR_clear_error();
    if (!out->pem) {
        EVP_PKEY_free(out->pkey);
        out->pkey = NULL;
        return "OpenSSL could not write the key as PEM";
    }
    out->kid = rt_strdup(kid);
    return NULL;
}

static void keyset_add_jwks(auth_keyset *keys, json_t *array)
{
    size_t i;
    json_t *jwk;

    keys->keys = rt_calloc(json_array_size(array), sizeof(*keys->keys));
    json_array_foreach(array, i, jwk)
    {
        json_t *kid_json = json_object_get(jwk, "kid");
        const char *kid = json_string_value(kid_json);
        auth_public_key key = {0};
        const char *why = NULL;

        if (kid &&
            (json_string_length(kid_json) == 0 || json_string_length(kid_json) > AUTH_KID_MAX_LEN ||
             strlen(kid) != json_string_length(kid_json)))
            kid = NULL;
        if (!json_is_object(jwk))
            why = "not a JSON object";
        for (size_t k = 0; !why && kid && k < keys->key_count; k++) {
            if (strcmp(keys->keys[k].kid, kid) == 0)
                why = "duplicate kid";
        }
        if (!why)
            why = jwk_to_key(&key, jwk, kid);
        if (why) {
            rt_log_warn("jwks key skipped", "{s:s?, s:I, s:s}", "kid", kid, "index", (json_int_t)i,
                        "reason", why);
            continue;
        }
        keys->keys[keys->key_count++] = key;
        keys->public_algs |= key.allowed_algs;
    }
}

/* An HMAC-SHA256 context keyed with `secret`, to be duplicated per token so
 * the key's pads are hashed once, not per token. NULL if OpenSSL fails. */
static EVP_MAC_CTX *keyed_hmac_sha256(const unsigned char *secret, size_t secret_len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    EVP_MAC_free(mac); /* the context holds its own reference */
    if (ctx && EVP_MAC_init(ctx, secret, secret_len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    ERR_clear_error();
    return ctx;
}

rt_status auth_keyset_create(auth_keyset **out, const char *hs256_secret, const char *jwks_json)
{
    auth_keyset *keys;
    json_t *doc, *array;
    json_error_t jerr;

    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "auth_keyset_create: out is NULL");
    *out = NULL;
    keys = rt_calloc(1, sizeof(*keys));
    if (hs256_secret && hs256_secret[0]) {
        keys->hs256_secret_len = strlen(hs256_secret);
        keys->hs256_secret = (unsigned char *)rt_strndup(hs256_secret, keys->hs256_secret_len);
        keys->hs256_mac = keyed_hmac_sha256(keys->hs256_secret, keys->hs256_secret_len);
        if (!keys->hs256_mac) {
            auth_keyset_destroy(keys);
            return RT_ERR(RT_ERR_INTERNAL, "OpenSSL could not set up HMAC-SHA256");
        }
    }
    if (jwks_json) {
        doc = json_loads(jwks_json, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            auth_keyset_destroy(keys);
            return RT_ERR(RT_ERR_JSON, "JWKS is not valid JSON: %s (line %d)", jerr.text,
                          jerr.line);
        }
        array = json_object_get(doc, "keys");
        if (!json_is_array(array)) {
            json_decref(doc);
            auth_keyset_destroy(keys);
            return RT_ERR(RT_ERR_JSON, "JWKS has no \"keys\" array");
        }
        if (json_array_size(array) > AUTH_JWKS_MAX_KEYS) {
            size_t n = json_array_size(array);
            json_decref(doc);
            auth_keyset_destroy(keys);
            return RT_ERR(RT_ERR_LIMIT, "JWKS has %zu keys, at most %d are accepted", n,
                          AUTH_JWKS_MAX_KEYS);
        }
        keyset_add_jwks(keys, array);
        json_decref(doc);
        if (keys->key_count == 0) {
            auth_keyset_destroy(keys);
            return RT_ERR(RT_ERR_CONFIG, "JWKS has no usable key (see the warnings above)");
        }
        keys->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        keys->sha384 = EVP_MD_fetch(NULL, "SHA384", NULL);
        keys->sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
        if (!keys->sha256 || !keys->sha384 || !keys->sha512) {
            ERR_clear_error();
            auth_keyset_destroy(keys);
            return RT_ERR(RT_ERR_INTERNAL, "OpenSSL has no SHA-256/384/512");
        }
    }
    if (!keys->hs256_secret && keys->key_count == 0) {
        auth_keyset_destroy(keys);
        return RT_ERR(RT_ERR_CONFIG, "no verification key: set an HS256 secret or a JWKS");
    }
    *out = keys;
    return RT_OK;
}

rt_status auth_keyset_load(auth_keyset **out, const char *hs256_secret, const char *jwks_path)
{
    FILE *f;
    char *text;
    size_t len;
    rt_status st;

    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "auth_keyset_load: out is NULL");
    *out = NULL;
    if (!jwks_path || !jwks_path[0])
        return auth_keyset_create(out, hs256_secret, NULL);
    f = fopen(jwks_path, "rb");
    if (!f)
        return RT_ERR(RT_ERR_IO, "cannot open JWKS file %s: %s", jwks_path, strerror(errno));
    text = rt_malloc(AUTH_JWKS_MAX_BYTES + 1);
    len = fread(text, 1, AUTH_JWKS_MAX_BYTES + 1, f);
    if (ferror(f)) {
        int err = errno;
        fclose(f);
        free(text);
        return RT_ERR(RT_ERR_IO, "cannot read JWKS file %s: %s", jwks_path, strerror(err));
    }
    fclose(f);
    if (len > AUTH_JWKS_MAX_BYTES) {
        free(text);
        return RT_ERR(RT_ERR_LIMIT, "JWKS file %s is larger than %d bytes", jwks_path,
                      AUTH_JWKS_MAX_BYTES);
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return RT_ERR(RT_ERR_JSON, "JWKS file %s contains a NUL byte", jwks_path);
    }
    st = auth_keyset_create(out, hs256_secret, text);
    free(text);
    return st;
}

void auth_keyset_destroy(auth_keyset *keys)
{
    if (!keys)
        return;
    if (keys->hs256_secret) {
        OPENSSL_cleanse(keys->hs256_secret, keys->hs256_secret_len);
        free(keys->hs256_secret);
    }
    EVP_MAC_CTX_free(keys->hs256_mac); /* OpenSSL cleanses the key copies */
    for (size_t i = 0; i < keys->key_count; i++) {
        free(keys->keys[i].kid);
        EVP_PKEY_free(keys->keys[i].pkey);
        free(keys->keys[i].pem);
    }
    free(keys->keys);
    EVP_MD_free(keys->sha256);
    EVP_MD_free(keys->sha384);
    EVP_MD_free(keys->sha512);
    free(keys);
}

size_t auth_keyset_public_key_count(const auth_keyset *keys)
{
    return keys ? keys->key_count : 0;
}

bool auth_keyset_has_hs256(const auth_keyset *keys)
{
    return keys && keys->hs256_secret;
}

/* The pinning rules shared by both lookups. On RT_OK, *out_key is the public
 * key to use, or NULL for HS256 (the secret). */
static rt_status keyset_pin(const auth_public_key **out_key, const auth_keyset *keys, auth_alg alg,
                            const char *kid)
{
    *out_key = NULL;
    /* The HS256 secret is the only key an HS256 token is ever checked with,
     * whatever its kid says: a public key's PEM used as an HMAC secret is the
     * classic algorithm-confusion forgery. */
    if (alg == AUTH_ALG_HS256) {
        if (!keys->hs256_secret)
            return RT_ERR(RT_ERR_AUTH, "HS256 tokens are not accepted (no secret configured)");
        return RT_OK;
    }
    if (alg == AUTH_ALG_NONE || !(keys->public_algs & ALG_BIT(alg)))
        return RT_ERR(RT_ERR_AUTH, "algorithm %s is not allowed by any configured key",
                      auth_alg_name(alg));
    /* A token for a public key must say which one. */
    if (!kid)
        return RT_ERR(RT_ERR_NOT_FOUND, "token has no kid");
    for (size_t i = 0; i < keys->key_count; i++) {
        const auth_public_key *key = &keys->keys[i];
        if (strcmp(key->kid, kid) != 0)
            continue;
        if (!(key->allowed_algs & ALG_BIT(alg)))
            return RT_ERR(RT_ERR_AUTH, "algorithm %s is not allowed with this key",
                          auth_alg_name(alg));
        *out_key = key;
        return RT_OK;
    }
    return RT_ERR(RT_ERR_NOT_FOUND, "no key with the token's kid");
}

rt_status auth_keyset_find(const unsigned char **out_key, size_t *out_key_len,
                           const auth_keyset *keys, auth_alg alg, const char *kid)
{
    const auth_public_key *key;
    rt_status st;

    if (!out_key || !out_key_len || !keys)
        return RT_ERR(RT_ERR_INVALID_ARG, "auth_keyset_find: NULL argument");
    *out_key = NULL;
    *out_key_len = 0;
    st = keyset_pin(&key, keys, alg, kid);
    if (st != RT_OK)
        return st;
    if (!key) {
        *out_key = keys->hs256_secret;
        *out_key_len = keys->hs256_secret_len;
    } else {
        *out_key = (const unsigned char *)key->pem;
        *out_key_len = key->pem_len;
    }
    return RT_OK;
}

rt_status auth_keyset_find_verify_key(auth_verify_key *out, const auth_keyset *keys, auth_alg alg,
                                      const char *kid)
{
    const auth_public_key *key;
    rt_status st;

    if (!out || !keys)
        return RT_ERR(RT_ERR_INVALID_ARG, "auth_keyset_find_verify_key: NULL argument");
    memset(out, 0, sizeof(*out));
    st = keyset_pin(&key, keys, alg, kid);
    if (st != RT_OK)
        return st;
    if (!key) {
        out->hmac = keys->hs256_mac;
        return RT_OK;
    }
    out->pkey = key->pkey;
    switch (alg) {
    case AUTH_ALG_RS256:
    case AUTH_ALG_ES256:
        out->md = keys->sha256;
        break;
    case AUTH_ALG_RS384:
    case AUTH_ALG_ES384:
        out->md = keys->sha384;
        break;
    default: /* RS512, ES512: keyset_pin() let nothing else through */
        out->md = keys->sha512;
        break;
    }
    return RT_OK;
}
