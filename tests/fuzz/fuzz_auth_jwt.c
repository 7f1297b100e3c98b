/*
 * libFuzzer target for auth_jwt_verify() with a fixed HS256 keyset.
 *
 * Two modes, chosen by the first byte:
 *   0x01 <payload>: the rest is a payload, signed here with the secret, so
 *                   the fuzzer reaches the claim checks behind the signature;
 *   anything else:  the whole input is the token, as a client would send it.
 *
 *   cmake -S . -B build-fuzz -DRT_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   cmake --build build-fuzz --target fuzz_auth_jwt
 *   build-fuzz/fuzz/fuzz_auth_jwt -max_total_time=60 -max_len=9000
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_jwt.h"
#include "auth_keys.h"
#include "rt_log.h"

#define FUZZ_SECRET "fuzz-secret-with-at-least-thirty-two-characters"
#define FUZZ_NOW INT64_C(1764000000)
/* base64url({"alg":"HS256","typ":"JWT"}) */
#define FUZZ_HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static auth_keyset *fuzz_keys;

static const auth_jwt_rules fuzz_rules = {
    .leeway_s = 30,
    .audience = "authenticated",
    .issuer = "https://project.supabase.co/auth/v1",
    .max_token_bytes = 8192,
};

static size_t b64url(char *out, const uint8_t *in, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        out[n++] = alphabet[v >> 6 & 63];
        out[n++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        out[n++] = alphabet[v >> 6 & 63];
    }
    return n;
}

static void check(const auth_claims *out, auth_verify_error err, const char *detail)
{
    if (err == UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_UNSPECIFIED) {
        size_t len = strlen(out->sub);
        if (len == 0 || len > 64 ||
            strspn(out->sub, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789_-") != len)
            abort();
        if (out->exp <= FUZZ_NOW - fuzz_rules.leeway_s)
            abort();
    } else if (out->sub[0] || out->session_id[0] || out->app_role[0]) {
        abort(); /* a refused token leaves nothing behind */
    }
    if (strlen(detail) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char token[16384];
    auth_claims out;
    char detail[128];
    auth_verify_error err;

    if (!fuzz_keys) {
        rt_log_init("fuzz", RT_LOG_ERROR);
        if (auth_keyset_create(&fuzz_keys, FUZZ_SECRET, NULL) != RT_OK)
            abort();
    }
    if (size > 0 && data[0] == 0x01 && size - 1 <= 6000) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        size_t n = strlen(FUZZ_HEADER);
        memcpy(token, FUZZ_HEADER, n);
        token[n++] = '.';
        n += b64url(token + n, data + 1, size - 1);
        if (!HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET), (unsigned char *)token, n,
                  mac, &mac_len))
            abort();
        token[n++] = '.';
        n += b64url(token + n, mac, mac_len);
        err = auth_jwt_verify(&out, fuzz_keys, &fuzz_rules, token, n, FUZZ_NOW, detail,
                              sizeof(detail));
    } else {
        /* A heap copy of exactly `size` bytes, so ASan sees any over-read. */
        char *copy = malloc(size ? size : 1);
        if (!copy)
            abort();
        memcpy(copy, data, size);
        err = auth_jwt_verify(&out, fuzz_keys, &fuzz_rules, copy, size, FUZZ_NOW, detail,
                              sizeof(detail));
        free(copy);
    }
    check(&out, err, detail);
    return 0;
}
