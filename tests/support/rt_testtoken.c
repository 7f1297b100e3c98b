/*
 * rt_testtoken: test keys (OpenSSL 3), their JWKS, and tokens minted with
 * libjwt. See rt_testtoken.h.
 */
#include "rt_testtoken.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_alloc.h"

struct rt_testkeys {
    char *rsa_kid;
    char *ec_kid;
    char *rsa_private_pem;
    char *rsa_public_pem;
    char *ec_private_pem;
    char *ec_public_pem;
    char *jwks;
};

char *rt_testtoken_base64url(const void *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = rt_malloc(len / 3 * 4 + 4 + 1), *o = out;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *o++ = alphabet[(v >> 18) & 63];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        *o++ = alphabet[(v >> 18) & 63];
        *o++ = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        *o++ = alphabet[(v >> 18) & 63];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

/* PEM text of a key; private = PKCS#8, else SubjectPublicKeyInfo. */
static char *pem_of(EVP_PKEY *pkey, bool private_key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *pem = NULL;
    int ok;

    if (!bio)
        return NULL;
    ok = private_key ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_bio_PUBKEY(bio, pkey);
    long len = ok == 1 ? BIO_get_mem_data(bio, &data) : 0;
    if (len > 0)
        pem = rt_strndup(data, (size_t)len);
    BIO_free(bio);
    return pem;
}

/* base64url of a big number parameter, left-padded with zeros to `pad`
 * bytes (0: minimal length). */
static char *bn_param_b64(EVP_PKEY *pkey, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    char *out = NULL;
    int len;

    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
        return NULL;
    len = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    if (len > 0 && len <= (int)sizeof(buf))
        out = rt_testtoken_base64url(buf, (size_t)len);
    BN_free(bn);
    return out;
}

static rt_status build_jwks(rt_testkeys *keys, EVP_PKEY *rsa, EVP_PKEY *ec)
{
    char *n = bn_param_b64(rsa, OSSL_PKEY_PARAM_RSA_N, 0);
    char *e = bn_param_b64(rsa, OSSL_PKEY_PARAM_RSA_E, 0);
    char *x = bn_param_b64(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    char *y = bn_param_b64(ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    rt_status st = RT_OK;

    if (!n || !e || !x || !y) {
        st = RT_ERR(RT_ERR_INTERNAL, "cannot read the generated key parameters");
    } else {
        json_t *doc = json_pack("{s:[{s:s, s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s, "
                                "s:s, s:s}]}",
                                "keys", "kty", "RSA", "kid", keys->rsa_kid, "use", "sig", "alg",
                                "RS256", "n", n, "e", e, "kty", "EC", "kid", keys->ec_kid, "use",
                                "sig", "alg", "ES256", "crv", "P-256", "x", x, "y", y);
        keys->jwks = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (!keys->jwks)
            st = RT_ERR(RT_ERR_INTERNAL, "cannot build the JWKS");
    }
    free(n);
    free(e);
    free(x);
    free(y);
    return st;
}

rt_status rt_testkeys_create(rt_testkeys **out, const char *rsa_kid, const char *ec_kid)
{
    rt_testkeys *keys;
    EVP_PKEY *rsa = NULL, *ec = NULL;
    rt_status st = RT_OK;

    if (!out || !rsa_kid || !ec_kid)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_testkeys_create: NULL argument");
    *out = NULL;
    keys = rt_calloc(1, sizeof(*keys));
    keys->rsa_kid = rt_strdup(rsa_kid);
    keys->ec_kid = rt_strdup(ec_kid);
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!rsa || !ec) {
        st = RT_ERR(RT_ERR_INTERNAL, "OpenSSL key generation failed");
        goto done;
    }
    keys->rsa_private_pem = pem_of(rsa, true);
    keys->rsa_public_pem = pem_of(rsa, false);
    keys->ec_private_pem = pem_of(ec, true);
    keys->ec_public_pem = pem_of(ec, false);
    if (!keys->rsa_private_pem || !keys->rsa_public_pem || !keys->ec_private_pem ||
        !keys->ec_public_pem) {
        st = RT_ERR(RT_ERR_INTERNAL, "cannot write the generated keys as PEM");
        goto done;
    }
    st = build_jwks(keys, rsa, ec);
done:
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    ERR_clear_error();
    if (st != RT_OK)
        rt_testkeys_destroy(keys);
    else
        *out = keys;
    return st;
}

void rt_testkeys_destroy(rt_testkeys *keys)
{
    if (!keys)
        return;
    free(keys->rsa_kid);
    free(keys->ec_kid);
    free(keys->rsa_private_pem);
    free(keys->rsa_public_pem);
    free(keys->ec_private_pem);
    free(keys->ec_public_pem);
    free(keys->jwks);
    free(keys);
}

const char *rt_testkeys_rsa_kid(const rt_testkeys *keys)
{
    return keys->rsa_kid;
}

const char *rt_testkeys_ec_kid(const rt_testkeys *keys)
{
    return keys->ec_kid;
}

const char *rt_testkeys_rsa_private_pem(const rt_testkeys *keys)
{
    return keys->rsa_private_pem;
}

const char *rt_testkeys_ec_private_pem(const rt_testkeys *keys)
{
    return keys->ec_private_pem;
}

const char *rt_testkeys_rsa_public_pem(const rt_testkeys *keys)
{
    return keys->rsa_public_pem;
}

const char *rt_testkeys_ec_public_pem(const rt_testkeys *keys)
{
    return keys->ec_public_pem;
}

const char *rt_testkeys_jwks(const rt_testkeys *keys)
{
    return keys->jwks;
}

rt_status rt_testkeys_write_jwks(const rt_testkeys *keys, const char *path)
{
    size_t len, done = 0;
    int fd;

    if (!keys || !path)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_testkeys_write_jwks: NULL argument");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return RT_ERR(RT_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    len = strlen(keys->jwks);
    while (done < len) {
        ssize_t n = write(fd, keys->jwks + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = errno;
            close(fd);
            return RT_ERR(RT_ERR_IO, "cannot write %s: %s", path, strerror(err));
        }
        done += (size_t)n;
    }
    if (close(fd) != 0)
        return RT_ERR(RT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return RT_OK;
}

rt_status rt_testtoken_mint(char **out, const char *alg, const void *key_or_secret, const char *kid,
                            const char *claims_json)
{
    jwt_t *jwt = NULL;
    jwt_alg_t jalg;
    const unsigned char *key = NULL;
    int key_len = 0, ret;
    rt_status st = RT_OK;

    if (!out || !alg || !claims_json)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_testtoken_mint: NULL argument");
    *out = NULL;
    jalg = jwt_str_alg(alg);
    if (jalg == JWT_ALG_INVAL)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_testtoken_mint: unknown alg %s", alg);
    if (jalg != JWT_ALG_NONE) {
        if (!key_or_secret)
            return RT_ERR(RT_ERR_INVALID_ARG, "rt_testtoken_mint: %s needs a key", alg);
        key = key_or_secret;
        key_len = (int)strlen(key_or_secret);
    }
    if (jwt_new(&jwt) != 0)
        return RT_ERR(RT_ERR_INTERNAL, "jwt_new failed");
    if (jwt_add_grants_json(jwt, claims_json) != 0) {
        st = RT_ERR(RT_ERR_JSON, "rt_testtoken_mint: claims are not a JSON object");
        goto done;
    }
    if ((ret = jwt_set_alg(jwt, jalg, key, key_len)) != 0) {
        st = RT_ERR(RT_ERR_INVALID_ARG, "jwt_set_alg failed: %s", strerror(ret));
        goto done;
    }
    if (kid && (ret = jwt_add_header(jwt, "kid", kid)) != 0) {
        st = RT_ERR(RT_ERR_INVALID_ARG, "jwt_add_header(kid) failed: %s", strerror(ret));
        goto done;
    }
    *out = jwt_encode_str(jwt);
    if (!*out)
        st = RT_ERR(RT_ERR_INTERNAL, "jwt_encode_str failed: %s (is the key right for %s?)",
                    strerror(errno), alg);
done:
    jwt_free(jwt);
    ERR_clear_error();
    return st;
}

rt_status rt_testtoken_craft(char **out, const char *header_json, const char *payload_json,
                             const char *signature_b64url)
{
    char *head, *body;

    if (!out || !header_json || !payload_json)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_testtoken_craft: NULL argument");
    head = rt_testtoken_base64url(header_json, strlen(header_json));
    body = rt_testtoken_base64url(payload_json, strlen(payload_json));
    *out = rt_asprintf("%s.%s.%s", head, body, signature_b64url ? signature_b64url : "");
    free(head);
    free(body);
    return RT_OK;
}

rt_status rt_testtoken_flip_signature(char *token)
{
    char *sig = token ? strrchr(token, '.') : NULL;
    size_t len;

    if (!sig || !(len = strlen(sig + 1)))
        return RT_ERR(RT_ERR_INVALID_ARG, "token has no signature part");
    /* The middle character carries six significant bits (the last one may
     * carry fewer), so changing it always changes the signature bytes. */
    char *c = sig + 1 + len / 2;
    *c = *c == 'A' ? 'B' : 'A';
    return RT_OK;
}

char *rt_testtoken_claims(const char *sub, const char *app_role, const char *session_id,
                          int64_t iat, int64_t exp)
{
    json_t *claims =
        json_pack("{s:s, s:s, s:s?, s:I, s:I}", "aud", "authenticated", "role", "authenticated",
                  "sub", sub, "iat", (json_int_t)iat, "exp", (json_int_t)exp);
    char *text;

    if (!claims)
        return NULL;
    if (session_id)
        json_object_set_new(claims, "session_id", json_string(session_id));
    if (app_role)
        json_object_set_new(claims, "app_metadata", json_pack("{s:s}", "role", app_role));
    text = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    return text;
}
