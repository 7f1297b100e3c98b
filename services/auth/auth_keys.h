/*
 * auth_keys: the keys auth verifies Supabase tokens with.
 *
 * A keyset holds at most one HS256 secret (SUPABASE_JWT_SECRET) and any
 * number of public keys read from a JWKS document (SUPABASE_JWKS_FILE):
 * RSA keys (kty "RSA") verify RS256/RS384/RS512, EC keys (kty "EC", curves
 * P-256/P-384/P-521) verify ES256/ES384/ES512 respectively. Each public key
 * is picked by its "kid"; when a JWK names an "alg", only that algorithm is
 * allowed with it. JWKs with "use" other than "sig", private key material,
 * unsupported kty/crv, or malformed fields are skipped with a warning log, and
 * a document with no usable key is an error.
 *
 * Each public key is parsed into an OpenSSL EVP_PKEY once, when the keyset is
 * built, and the HS256 secret is loaded into a keyed HMAC context once: the
 * verifier never parses a key per token (OpenSSL 3's PEM decoder costs ~0.5 ms
 * and takes global locks). The PEM text is kept as well for callers that want
 * it (auth_keyset_find()).
 *
 * A keyset is immutable once built, so any number of threads may verify with
 * it at once. Reloading (SIGHUP) builds a new keyset and swaps the pointer
 * (see auth_service).
 */
#ifndef AUTH_KEYS_H
#define AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

#include "rt_status.h"

typedef struct auth_keyset auth_keyset;

/* The algorithms auth understands; AUTH_ALG_NONE is never accepted. */
typedef enum auth_alg {
    AUTH_ALG_NONE = 0,
    AUTH_ALG_HS256,
    AUTH_ALG_RS256,
    AUTH_ALG_RS384,
    AUTH_ALG_RS512,
    AUTH_ALG_ES256,
    AUTH_ALG_ES384,
    AUTH_ALG_ES512,
} auth_alg;

/* "HS256" -> AUTH_ALG_HS256; anything unknown (including "none") -> AUTH_ALG_NONE. */
auth_alg auth_alg_from_name(const char *name);
const char *auth_alg_name(auth_alg alg);

/*
 * Builds a keyset. `hs256_secret` may be NULL or empty (no HS256 then);
 * `jwks_json` may be NULL (no public keys). At least one key must result.
 * The secret is copied; it is never logged.
 */
rt_status auth_keyset_create(auth_keyset **out, const char *hs256_secret, const char *jwks_json);

/* Reads the JWKS from a file then calls auth_keyset_create(). */
rt_status auth_keyset_load(auth_keyset **out, const char *hs256_secret, const char *jwks_path);

void auth_keyset_destroy(auth_keyset *keys); /* NULL is harmless */

/*
 * Decodes unpadded base64url (RFC 4648 section 5, as JWS and JWK use it):
 * only [A-Za-z0-9_-], no '=' padding, no whitespace, and the unused low bits
 * of the last character must be zero, so every byte string has exactly one
 * accepted spelling. Writes at most `out_size` bytes to `out` and their
 * number to *out_len. Returns false for anything else or when `out` is too
 * small (it needs in_len * 3 / 4 bytes). Shared by the JWK and JWT parsers.
 */
bool auth_base64url_decode(unsigned char *out, size_t out_size, size_t *out_len, const char *in,
                           size_t in_len);

/* How many public keys and whether an HS256 secret is present (for logs). */
size_t auth_keyset_public_key_count(const auth_keyset *keys);
bool auth_keyset_has_hs256(const auth_keyset *keys);

/*
 * The key to verify a token whose header says `alg` and `kid` (kid may be
 * NULL). For HS256 the secret; for RS/ES the PEM of the public key with that
 * kid, allowed only if the key's type (and alg, if the JWK named one) fits.
 * Returns RT_ERR_NOT_FOUND when no key has that kid (unknown_key) and
 * RT_ERR_AUTH when the algorithm is not allowed for any configured key
 * (algorithm_not_allowed). The returned pointers belong to the keyset.
 */
rt_status auth_keyset_find(const unsigned char **out_key, size_t *out_key_len,
                           const auth_keyset *keys, auth_alg alg, const char *kid);

/*
 * What a signature of `alg` is checked with, prepared once per keyset:
 *   HS256: `hmac`, an HMAC-SHA256 context already keyed with the secret. Use
 *          a copy (EVP_MAC_CTX_dup()) per token, never `hmac` itself.
 *   RS*, ES*: `pkey`, the public key, and `md`, the alg's SHA-256/384/512,
 *          for EVP_DigestVerifyInit() with a fresh EVP_MD_CTX per token.
 *          For ES* the key's curve is the alg's (P-256/384/521).
 * Unused members are NULL. Everything belongs to the keyset and is never
 * modified after auth_keyset_create(), so any number of threads may use the
 * same auth_verify_key at once; it stays valid until auth_keyset_destroy().
 */
typedef struct auth_verify_key {
    const EVP_MAC_CTX *hmac;
    EVP_PKEY *pkey; /* non-const only because OpenSSL's verify API wants it so */
    const EVP_MD *md;
} auth_verify_key;

/*
 * Same lookup and the same pinning rules (and return codes) as
 * auth_keyset_find(), but gives the prepared OpenSSL objects instead of key
 * bytes. *out is zeroed on failure. Any thread.
 */
rt_status auth_keyset_find_verify_key(auth_verify_key *out, const auth_keyset *keys, auth_alg alg,
                                      const char *kid);

#endif
