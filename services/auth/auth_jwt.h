/*
 * auth_jwt: verifies one Supabase access token (a JWT) against a keyset and
 * the configured claim rules, and extracts what the platform needs from it.
 *
 * Checks, in order: size (> max_token_bytes: too_large, nothing read), shape
 * (three base64url parts, JSON header: malformed), algorithm pinning (the
 * header's alg must have a configured key: "none", unknown algs, RS/ES without
 * a JWKS, HS256 without a secret all give algorithm_not_allowed; a kid not in
 * the JWKS gives unknown_key; an HS256 token is only ever checked with the
 * HS256 secret, never with a public key, which defeats algorithm
 * confusion), signature with the pinned key and the header's alg
 * (bad_signature; see below), then claims with `leeway_s`: exp required and not
 * past (expired / missing_expiry), nbf not in the future (not_yet_valid), iat
 * not in the future (issued_in_future), aud equal to or containing
 * `audience` (wrong_audience), iss equal to `issuer` when set
 * (wrong_issuer), sub present and matching [A-Za-z0-9_-]{1,64}
 * (missing_subject / malformed).
 *
 * Signatures are checked with OpenSSL 3 directly, over the token's own
 * "header.payload" bytes, with the objects the keyset prepared once
 * (auth_keyset_find_verify_key()):
 *   HS256       HMAC-SHA256 with the secret, compared in constant time
 *               (CRYPTO_memcmp); the signature must be 32 bytes.
 *   RS256/384/512  RSASSA-PKCS1-v1_5 with SHA-256/384/512 (EVP_DigestVerify);
 *               the signature must be the modulus' size.
 *   ES256/384/512  ECDSA on P-256/384/521 with SHA-256/384/512; the JWS form
 *               r || s must be exactly 64/96/132 bytes, r and s non-zero,
 *               and is turned into DER for OpenSSL.
 * Any other length or a non-verifying signature is bad_signature. libjwt is
 * not used for verifying (it re-parses PEM keys and the token on every call);
 * the tests still mint tokens with it, so its tokens are known to verify.
 *
 * Thread-safe: any number of threads may verify with one keyset at once;
 * each call uses only its own OpenSSL contexts. No global state. Never logs
 * or copies the token.
 */
#ifndef AUTH_JWT_H
#define AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "auth_keys.h"
#include "rt_proto.h"

typedef struct auth_jwt_rules {
    int64_t leeway_s;       /* JWT_LEEWAY_S, default 30 */
    const char *audience;   /* JWT_AUDIENCE, default "authenticated" */
    const char *issuer;     /* JWT_ISSUER; NULL or "" = not checked */
    size_t max_token_bytes; /* 8192 */
} auth_jwt_rules;

typedef struct auth_claims {
    char sub[65];
    char session_id[65]; /* "" when the token has none */
    char app_role[16];   /* app_metadata.role if student|instructor|admin, else "" */
    int64_t exp;         /* seconds since the epoch */
    auth_alg alg;
} auth_claims;

typedef Unpuzzle__Rt__V1__VerifyError auth_verify_error;

/*
 * Verifies `token` (token_len bytes, need not be NUL-terminated) at time
 * `now_s`. Returns UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_UNSPECIFIED
 * (0) and fills *out when the token is good; otherwise the reason. `detail`,
 * if not NULL, receives a short human explanation that never contains the
 * token.
 */
auth_verify_error auth_jwt_verify(auth_claims *out, const auth_keyset *keys,
                                  const auth_jwt_rules *rules, const char *token, size_t token_len,
                                  int64_t now_s, char *detail, size_t detail_size);

/* Stable short name of a reason: "expired", "bad_signature", ... ("ok" for 0). */
const char *auth_verify_error_name(auth_verify_error error);

#endif
