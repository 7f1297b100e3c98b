/*
 * auth_jwt: one Supabase access token in, a verdict out.
 *
 * The header and the payload are base64url-decoded and parsed once, here
 * (strictly: canonical base64url, JSON objects, no duplicate keys). The
 * header is read first to pin the algorithm and pick the key; the claims are
 * read from the same parse, and none is acted on unless the signature over
 * the token's own "header.payload" bytes verified.
 *
 * The signature is checked with OpenSSL directly, not with libjwt: libjwt
 * 1.10.2 takes RS/ES keys only as PEM and re-decodes the PEM on every call
 * (OpenSSL 3's decoder: ~0.5 ms and global locks, over 95% of an RS256
 * verification), and it would parse the header and payload a second time
 * (over half the cost of an HS256 verification). The keyset holds the parsed
 * EVP_PKEYs, the fetched digests and a keyed HMAC context (auth_keys.h);
 * each call only makes its own short-lived EVP_MD_CTX / EVP_MAC_CTX, so
 * there is nothing shared to lock.
 */
#include "auth_jwt.h"
#include "rt_names.h"

#include <jansson.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rt_alloc.h"

#define VERIFY_ERR(name) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##name

/* Tokens up to this size are handled in stack buffers; larger ones (only if
 * max_token_bytes is raised above the default) in one heap buffer. */
#define AUTH_JWT_DEFAULT_MAX_TOKEN 8192
#define AUTH_JWT_KID_MAX 256
/* Leeway beyond a day is a misconfiguration, and the clamp keeps the time
 * arithmetic below far from overflow. */
#define AUTH_JWT_MAX_LEEWAY_S 86400
/* NumericDate values given as JSON reals must be exact in a double. */
#define AUTH_JWT_MAX_REAL_DATE 9007199254740992.0 /* 2^53 */

const char *auth_verify_error_name(auth_verify_error error)
{
    return rt_verify_error_name(error);
}

/* Writes `why` (a fixed text: never anything taken from the token) and
 * returns `error`. */
static auth_verify_error refuse(char *detail, size_t detail_size, auth_verify_error error,
                                const char *why)
{
    if (detail && detail_size > 0)
        snprintf(detail, detail_size, "%s", why);
    return error;
}

/* [A-Za-z0-9_-]{1,max}: what sub and session_id may be (Supabase uses UUIDs). */
static bool is_safe_id(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Decodes one base64url segment into `scratch` and parses it as a JSON
 * object. NULL if either step fails. */
static json_t *segment_json(unsigned char *scratch, size_t scratch_size, const char *seg,
                            size_t seg_len)
{
    size_t len;
    json_t *obj;

    if (seg_len == 0 || !auth_base64url_decode(scratch, scratch_size, &len, seg, seg_len))
        return NULL;
    obj = json_loadb((const char *)scratch, len, JSON_REJECT_DUPLICATES, NULL);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* 1: *out set; 0: claim absent (or null); -1: not a NumericDate. */
static int numeric_date(int64_t *out, const json_t *payload, const char *name)
{
    json_t *v = json_object_get(payload, name);

    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    /* RFC 7519 allows fractional NumericDates; whole seconds suffice. */
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || fabs(d) > AUTH_JWT_MAX_REAL_DATE)
            return -1;
        *out = (int64_t)floor(d);
        return 1;
    }
    return -1;
}

/* Checks the claims (in the order auth_jwt.h documents) and fills *out. */
static auth_verify_error check_claims(auth_claims *out, const json_t *payload,
                                      const auth_jwt_rules *rules, int64_t now_s, char *detail,
                                      size_t detail_size)
{
    int64_t leeway = rules->leeway_s, exp = 0, nbf = 0, iat = 0;
    json_t *v;
    int has;

    if (leeway < 0)
        leeway = 0;
    if (leeway > AUTH_JWT_MAX_LEEWAY_S)
        leeway = AUTH_JWT_MAX_LEEWAY_S;

    has = numeric_date(&exp, payload, "exp");
    if (has == 0)
        return refuse(detail, detail_size, VERIFY_ERR(MISSING_EXPIRY), "token has no exp claim");
    if (has < 0)
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "exp is not a number");
    /* Valid while now < exp (+ leeway); written so nothing can overflow. */
    if (exp <= now_s - leeway)
        return refuse(detail, detail_size, VERIFY_ERR(EXPIRED), "token has expired");

    has = numeric_date(&nbf, payload, "nbf");
    if (has < 0)
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "nbf is not a number");
    if (has > 0 && nbf > now_s + leeway)
        return refuse(detail, detail_size, VERIFY_ERR(NOT_YET_VALID), "token is not valid yet");

    has = numeric_date(&iat, payload, "iat");
    if (has < 0)
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "iat is not a number");
    if (has > 0 && iat > now_s + leeway)
        return refuse(detail, detail_size, VERIFY_ERR(ISSUED_IN_FUTURE),
                      "token is issued in the future");

    if (rules->audience && rules->audience[0]) {
        bool match = false;
        v = json_object_get(payload, "aud");
        if (json_is_string(v)) {
            match = strcmp(json_string_value(v), rules->audience) == 0;
        } else if (json_is_array(v)) {
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                if (!json_is_string(item))
                    return refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                                  "aud holds a value that is not a string");
                if (strcmp(json_string_value(item), rules->audience) == 0)
                    match = true;
            }
        } else if (v && !json_is_null(v)) {
            return refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                          "aud is neither a string nor an array");
        }
        if (!match)
            return refuse(detail, detail_size, VERIFY_ERR(WRONG_AUDIENCE),
                          "token is not meant for this audience");
    }

    if (rules->issuer && rules->issuer[0]) {
        v = json_object_get(payload, "iss");
        if (v && !json_is_null(v) && !json_is_string(v))
            return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "iss is not a string");
        if (!json_is_string(v) || strcmp(json_string_value(v), rules->issuer) != 0)
            return refuse(detail, detail_size, VERIFY_ERR(WRONG_ISSUER),
                          "token comes from another issuer");
    }

    v = json_object_get(payload, "sub");
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
        return refuse(detail, detail_size, VERIFY_ERR(MISSING_SUBJECT), "token has no sub claim");
    if (!json_is_string(v) ||
        !is_safe_id(json_string_value(v), json_string_length(v), sizeof(out->sub) - 1))
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                      "sub is not 1-64 characters of [A-Za-z0-9_-]");
    memcpy(out->sub, json_string_value(v), json_string_length(v) + 1);

    /* session_id ends up in subjects and logs downstream, so it obeys the
     * same alphabet as sub. */
    v = json_object_get(payload, "session_id");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) ||
            !is_safe_id(json_string_value(v), json_string_length(v), sizeof(out->session_id) - 1))
            return refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                          "session_id is not 1-64 characters of [A-Za-z0-9_-]");
        memcpy(out->session_id, json_string_value(v), json_string_length(v) + 1);
    }

    /* The platform role is optional; anything unexpected means "no role". */
    const char *role =
        json_string_value(json_object_get(json_object_get(payload, "app_metadata"), "role"));
    if (role && (strcmp(role, "student") == 0 || strcmp(role, "instructor") == 0 ||
                 strcmp(role, "admin") == 0))
        snprintf(out->app_role, sizeof(out->app_role), "%s", role);

    out->exp = exp;
    return VERIFY_ERR(UNSPECIFIED);
}

/* Reads alg and kid from the header; checks typ and crit. */
static auth_verify_error read_header(auth_alg *out_alg, const char **out_kid, const json_t *header,
                                     char *detail, size_t detail_size)
{
    json_t *alg = json_object_get(header, "alg");
    json_t *kid = json_object_get(header, "kid");
    json_t *typ = json_object_get(header, "typ");

    if (!json_is_string(alg))
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "header has no alg");
    if (kid && !(json_is_string(kid) && json_string_length(kid) > 0 &&
                 json_string_length(kid) <= AUTH_JWT_KID_MAX))
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "header kid is not a string");
    /* An access token says typ JWT or nothing; any other typ (at+jwt,
     * dpop+jwt, ...) is another kind of token, refused for its shape. */
    if (typ && !(json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0))
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "header typ is not JWT");
    /* RFC 7515 4.1.11: extensions we do not understand must be refused. */
    if (json_object_get(header, "crit"))
        return refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                      "header has crit extensions, none are supported");
    *out_alg = auth_alg_from_name(json_string_value(alg));
    *out_kid = kid ? json_string_value(kid) : NULL;
    return VERIFY_ERR(UNSPECIFIED);
}

/* Looks the key up, maps the keyset's answer to a reason. */
static auth_verify_error pin_key(auth_verify_key *key, const auth_keyset *keys, auth_alg alg,
                                 const char *kid, char *detail, size_t detail_size)
{
    if (alg == AUTH_ALG_NONE)
        return refuse(detail, detail_size, VERIFY_ERR(ALGORITHM_NOT_ALLOWED),
                      "algorithm is not accepted");
    switch (auth_keyset_find_verify_key(key, keys, alg, kid)) {
    case RT_OK:
        return VERIFY_ERR(UNSPECIFIED);
    case RT_ERR_NOT_FOUND:
        return refuse(detail, detail_size, VERIFY_ERR(UNKNOWN_KEY),
                      kid ? "no configured key has the token's kid" : "token has no kid");
    case RT_ERR_AUTH:
        return refuse(detail, detail_size, VERIFY_ERR(ALGORITHM_NOT_ALLOWED),
                      "no configured key allows the token's algorithm");
    default:
        return refuse(detail, detail_size, VERIFY_ERR(INTERNAL), "key lookup failed");
    }
}

/* 1: the HMAC-SHA256 of `input` under the keyset's secret is `sig`;
 * 0: it is not; -1: OpenSSL failed. Compared in constant time. */
static int hs256_verify(const EVP_MAC_CTX *keyed, const unsigned char *input, size_t input_len,
                        const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(keyed);
    int ok = ctx && EVP_MAC_update(ctx, input, input_len) == 1 &&
             EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) == 1;

    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return -1;
    /* The length is public (32 for HS256); only the bytes need constant time. */
    ok = sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/*
 * JWS ES signatures are r || s, each zero-padded to the curve's size (RFC
 * 7518 3.4); OpenSSL wants a DER ECDSA-Sig-Value. Writes it to `der` (at
 * least AUTH_JWT_ECDSA_DER_MAX bytes). 1: done; 0: the signature cannot be
 * valid (wrong length, r or s zero); -1: OpenSSL failed.
 */
#define AUTH_JWT_ECDSA_DER_MAX (2 * (2 + 1 + 66) + 3)
static int ecdsa_jose_to_der(unsigned char *der, size_t *der_len, const unsigned char *sig,
                             size_t sig_len, size_t field_bytes)
{
    ECDSA_SIG *ecdsa;
    BIGNUM *r, *s;
    unsigned char *p = der;
    int len;

    if (sig_len != 2 * field_bytes)
        return 0;
    r = BN_bin2bn(sig, (int)field_bytes, NULL);
    s = BN_bin2bn(sig + field_bytes, (int)field_bytes, NULL);
    ecdsa = ECDSA_SIG_new();
    if (!r || !s || !ecdsa) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(ecdsa);
        return -1;
    }
    /* OpenSSL refuses r or s outside [1, n-1] too; zero is refused here so
     * that no such signature ever reaches it. */
    if (BN_is_zero(r) || BN_is_zero(s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(ecdsa);
        return 0;
    }
    ECDSA_SIG_set0(ecdsa, r, s); /* ecdsa owns r and s now */
    len = i2d_ECDSA_SIG(ecdsa, NULL);
    if (len <= 0 || len > AUTH_JWT_ECDSA_DER_MAX) {
        ECDSA_SIG_free(ecdsa);
        return -1;
    }
    len = i2d_ECDSA_SIG(ecdsa, &p);
    ECDSA_SIG_free(ecdsa);
    if (len <= 0)
        return -1;
    *der_len = (size_t)len;
    return 1;
}

/* 1: `sig` is the RS/ES signature of `input` under key->pkey with key->md;
 * 0: it is not; -1: OpenSSL failed. */
static int pkey_verify(const auth_verify_key *key, auth_alg alg, const unsigned char *input,
                       size_t input_len, const unsigned char *sig, size_t sig_len)
{
    unsigned char der[AUTH_JWT_ECDSA_DER_MAX];
    EVP_MD_CTX *ctx;
    int ret;

    switch (alg) {
    case AUTH_ALG_RS256:
    case AUTH_ALG_RS384:
    case AUTH_ALG_RS512:
        /* RSASSA-PKCS1-v1_5 (OpenSSL's default padding for an RSA key); the
         * signature is exactly the modulus' size (RFC 8017 8.2.2). */
        if (EVP_PKEY_get_size(key->pkey) <= 0 || sig_len != (size_t)EVP_PKEY_get_size(key->pkey))
            return 0;
        break;
    case AUTH_ALG_ES256:
    case AUTH_ALG_ES384:
    case AUTH_ALG_ES512: {
        /* The keyset only pairs ES256/384/512 with P-256/384/521 keys. */
        size_t field = alg == AUTH_ALG_ES256 ? 32 : alg == AUTH_ALG_ES384 ? 48 : 66;
        size_t der_len = 0;
        ret = ecdsa_jose_to_der(der, &der_len, sig, sig_len, field);
        if (ret != 1)
            return ret;
        sig = der;
        sig_len = der_len;
        break;
    }
    default:
        return -1;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    /* A fresh context per call: an EVP_PKEY may verify in many threads at
     * once, an EVP_MD_CTX may not. Reusing one per thread measured no faster
     * (the EVP_PKEY_CTX inside is rebuilt on every init anyway). */
    if (EVP_DigestVerifyInit(ctx, NULL, key->md, NULL, key->pkey) != 1)
        ret = -1;
    else
        ret = EVP_DigestVerify(ctx, sig, sig_len, input, input_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ret;
}

/* The signature over `input` ("header.payload" as sent) with the pinned key. */
static auth_verify_error check_signature(const auth_verify_key *key, auth_alg alg,
                                         const char *input, size_t input_len,
                                         const unsigned char *sig, size_t sig_len, char *detail,
                                         size_t detail_size)
{
    int ret = alg == AUTH_ALG_HS256
                  ? hs256_verify(key->hmac, (const unsigned char *)input, input_len, sig, sig_len)
                  : pkey_verify(key, alg, (const unsigned char *)input, input_len, sig, sig_len);

    /* A refused signature leaves OpenSSL's reasons on this thread's queue. */
    if (ret != 1)
        ERR_clear_error();
    if (ret < 0)
        return refuse(detail, detail_size, VERIFY_ERR(INTERNAL), "OpenSSL failed to verify");
    if (ret == 0)
        return refuse(detail, detail_size, VERIFY_ERR(BAD_SIGNATURE), "signature does not verify");
    return VERIFY_ERR(UNSPECIFIED);
}

auth_verify_error auth_jwt_verify(auth_claims *out, const auth_keyset *keys,
                                  const auth_jwt_rules *rules, const char *token, size_t token_len,
                                  int64_t now_s, char *detail, size_t detail_size)
{
    /* Decoded header/payload/signature (3/4 of their text). */
    unsigned char scratch_stack[AUTH_JWT_DEFAULT_MAX_TOKEN / 4 * 3 + 3];
    unsigned char *scratch = scratch_stack;
    size_t scratch_size = sizeof(scratch_stack), max_bytes, sig_len = 0;
    json_t *header = NULL, *payload = NULL;
    auth_verify_key key;
    const char *kid = NULL, *dot1, *dot2;
    auth_alg alg = AUTH_ALG_NONE;
    auth_verify_error err;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!out || !keys || !rules || (!token && token_len > 0))
        return refuse(detail, detail_size, VERIFY_ERR(INTERNAL), "verifier misused");

    /* 1. Size, before reading a byte. */
    max_bytes = rules->max_token_bytes ? rules->max_token_bytes : AUTH_JWT_DEFAULT_MAX_TOKEN;
    if (token_len > max_bytes)
        return refuse(detail, detail_size, VERIFY_ERR(TOO_LARGE), "token is too large");
    if (token_len > AUTH_JWT_DEFAULT_MAX_TOKEN) {
        scratch_size = token_len / 4 * 3 + 3;
        scratch = rt_malloc(scratch_size);
    }

    /* 2. Shape: header.payload.signature, all base64url, JSON objects. */
    dot1 = token_len ? memchr(token, '.', token_len) : NULL;
    dot2 = dot1 ? memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', token_len - (size_t)(dot2 + 1 - token))) {
        err = refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                     "token is not three dot-separated parts");
        goto done;
    }
    header = segment_json(scratch, scratch_size, token, (size_t)(dot1 - token));
    payload = segment_json(scratch, scratch_size, dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!header || !payload) {
        err = refuse(detail, detail_size, VERIFY_ERR(MALFORMED),
                     !header ? "header is not base64url JSON object"
                             : "payload is not base64url JSON object");
        goto done;
    }
    /* From here on, scratch holds the decoded signature. */
    if (!auth_base64url_decode(scratch, scratch_size, &sig_len, dot2 + 1,
                               token_len - (size_t)(dot2 + 1 - token))) {
        err = refuse(detail, detail_size, VERIFY_ERR(MALFORMED), "signature is not base64url");
        goto done;
    }
    err = read_header(&alg, &kid, header, detail, detail_size);
    if (err)
        goto done;

    /* 3. Algorithm pinning: the key decides what is allowed. */
    err = pin_key(&key, keys, alg, kid, detail, detail_size);
    if (err)
        goto done;

    /* 4. Signature, over the header and payload exactly as sent. */
    err = check_signature(&key, alg, token, (size_t)(dot2 - token), scratch, sig_len, detail,
                          detail_size);
    if (err)
        goto done;

    /* 5. Claims. */
    err = check_claims(out, payload, rules, now_s, detail, detail_size);
    if (err)
        goto done;
    out->alg = alg;
    refuse(detail, detail_size, VERIFY_ERR(UNSPECIFIED), "ok");

done:
    if (err)
        memset(out, 0, sizeof(*out));
    json_decref(header);
    json_decref(payload);
    if (scratch != scratch_stack)
        free(scratch);
    return err;
}
