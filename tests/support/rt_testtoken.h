/*
 * rt_testtoken: keys and Supabase-like tokens for tests and benchmarks.
 *
 *   rt_testkeys *keys;
 *   rt_testkeys_create(&keys, "rsa-1", "ec-1");        // RSA-2048 + EC P-256
 *   auth_keyset_create(&set, "secret", rt_testkeys_jwks(keys));
 *   char *claims = rt_testtoken_claims("u1", "student", "s1", now, now + 3600);
 *   char *tok;
 *   rt_testtoken_mint(&tok, "RS256", rt_testkeys_rsa_private_pem(keys),
 *                     rt_testkeys_rsa_kid(keys), claims);
 *   ...
 *   free(tok); free(claims); rt_testkeys_destroy(keys);
 *
 * Signing goes through libjwt, exactly as a real issuer's tokens would be
 * read by it. Every `char **out` / returned `char *` is malloc()ed and the
 * caller frees it with free(); `const char *` results belong to the object
 * they came from. Key generation is slow (RSA-2048: tens of milliseconds):
 * create the keys once per test file. Functions are thread-safe on distinct
 * objects; a rt_testkeys may be read from any number of threads.
 */
#ifndef RT_TESTTOKEN_H
#define RT_TESTTOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

typedef struct rt_testkeys rt_testkeys;

/* Generates an RSA-2048 and an EC P-256 key pair named `rsa_kid` and
 * `ec_kid` (copied) and their JWKS. */
rt_status rt_testkeys_create(rt_testkeys **out, const char *rsa_kid, const char *ec_kid);
void rt_testkeys_destroy(rt_testkeys *keys); /* NULL is harmless */

const char *rt_testkeys_rsa_kid(const rt_testkeys *keys);
const char *rt_testkeys_ec_kid(const rt_testkeys *keys);
/* PKCS#8 "PRIVATE KEY" PEM, what rt_testtoken_mint() signs RS256/ES256 with. */
const char *rt_testkeys_rsa_private_pem(const rt_testkeys *keys);
const char *rt_testkeys_ec_private_pem(const rt_testkeys *keys);
/* SubjectPublicKeyInfo "PUBLIC KEY" PEM. */
const char *rt_testkeys_rsa_public_pem(const rt_testkeys *keys);
const char *rt_testkeys_ec_public_pem(const rt_testkeys *keys);

/* {"keys":[<RSA JWK, alg RS256>,<EC JWK, crv P-256, alg ES256>]}, both with
 * "use":"sig" and their kid; public parts only. */
const char *rt_testkeys_jwks(const rt_testkeys *keys);
/* Writes rt_testkeys_jwks() to `path` (created or truncated, mode 0600). */
rt_status rt_testkeys_write_jwks(const rt_testkeys *keys, const char *path);

/*
 * Mints a token. `alg` is "HS256", "RS256", "ES256" (or another alg libjwt
 * knows) or "none". `key_or_secret` is a NUL-terminated string: the HMAC
 * secret for HS256, a private key PEM for the RS and ES algorithms, ignored (may be NULL) for
 * "none". `kid` (may be NULL) goes into the header. `claims_json` is a JSON
 * object copied into the payload as is. *out gets the compact token.
 */
rt_status rt_testtoken_mint(char **out, const char *alg, const void *key_or_secret, const char *kid,
                            const char *claims_json);

/*
 * Builds a token by hand, without libjwt and without signing:
 * base64url(header_json) "." base64url(payload_json) "." signature_b64url
 * (signature_b64url may be "" or NULL for an empty signature). For tokens no
 * well-behaved library would produce: alg "none", odd headers, bad JSON.
 */
rt_status rt_testtoken_craft(char **out, const char *header_json, const char *payload_json,
                             const char *signature_b64url);

/* Unpadded base64url of `len` bytes; the caller frees the result. */
char *rt_testtoken_base64url(const void *data, size_t len);

/*
 * Tampering: changes one character in the middle of the token's signature
 * part (to another base64url character, so the token stays well-formed but
 * no longer verifies). RT_ERR_INVALID_ARG if there is no signature part.
 */
rt_status rt_testtoken_flip_signature(char *token);

/*
 * Supabase-like claims: {"aud":"authenticated","role":"authenticated",
 * "sub":sub,"iat":iat,"exp":exp,"session_id":session_id,
 * "app_metadata":{"role":app_role}}. `session_id` and `app_role` may be NULL
 * (left out). Values are JSON-escaped. The caller frees the result.
 */
char *rt_testtoken_claims(const char *sub, const char *app_role, const char *session_id,
                          int64_t iat, int64_t exp);

#endif
