/*
 * rtctl token: mints an HS256 access token shaped like Supabase's, for
 * development and smoke tests against a stack that trusts the same secret.
 * Signed here with OpenSSL's HMAC (no test code linked):
 *
 *   header  {"alg":"HS256","typ":"JWT"}
 *   claims  {"aud":"authenticated","role":"authenticated","sub":<user>,
 *            "iat":now,"exp":now+ttl,"session_id":<uuid>,
 *            "app_metadata":{"role":<--role>}}    (app_metadata only with --role)
 *
 * The secret never reaches stdout, stderr or the logs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "rt_alloc.h"
#include "rt_room.h"
#include "rt_time.h"
#include "rtctl.h"

static void token_usage(FILE *out)
{
    fputs("usage: rtctl token <user-id> [--role student|instructor|admin] [--ttl SECONDS]\n"
          "                   [--secret S]\n"
          "\n"
          "Prints an HS256 Supabase-like access token for <user-id> (claim sub), valid\n"
          "for --ttl seconds (default 3600), so TOKEN=$(rtctl token u1) works.\n"
          "  --role     sets app_metadata.role (the platform role auth reads)\n"
          "  --secret   HMAC secret; default SUPABASE_JWT_SECRET from the environment.\n"
          "             Prefer the variable: arguments show up in ps and shell history.\n",
          out);
}

/* Unpadded base64url; the caller frees the result. */
static char *base64url(const unsigned char *data, size_t len)
{
    char *out = rt_malloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);

    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    return out;
}

static char *base64url_json(json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        abort(); /* out of memory: rt_alloc.h policy */
    char *out = base64url((const unsigned char *)text, strlen(text));
    free(text);
    return out;
}

/* The compact token, or NULL when HMAC fails; the caller frees it. */
static char *mint_hs256(const char *secret, const char *sub, const char *role, int64_t ttl_s,
                        const char *session_id)
{
    int64_t now = rt_time_now_ms() / 1000;
    json_t *header = json_pack("{s:s, s:s}", "alg", "HS256", "typ", "JWT");
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "aud", "authenticated", "role",
                               "authenticated", "sub", sub, "iat", (json_int_t)now, "exp",
                               (json_int_t)(now + ttl_s), "session_id", session_id);
    if (!header || !claims)
        abort();
    if (role)
        json_object_set_new(claims, "app_metadata", json_pack("{s:s}", "role", role));

    char *head = base64url_json(header), *body = base64url_json(claims);
    char *signing_input = rt_asprintf("%s.%s", head, body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char *token = NULL;

    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)signing_input,
             strlen(signing_input), mac, &mac_len)) {
        char *sig = base64url(mac, mac_len);
        token = rt_asprintf("%s.%s", signing_input, sig);
        free(sig);
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    free(signing_input);
    free(head);
    free(body);
    json_decref(header);
    json_decref(claims);
    return token;
}

int rtctl_token_main(const rtctl_config *config, int argc, char **argv)
{
    const char *user_id = NULL, *role = NULL, *ttl_text = NULL, *secret = NULL;
    int64_t ttl = 3600;
    bool bad = false;
    char session_id[37];

    for (int i = 1; i < argc && !bad; i++) {
        if (rtctl_is_help(argv[i])) {
            token_usage(stdout);
            return RTCTL_EXIT_OK;
        }
        if (rtctl_opt_value(argc, argv, &i, "--role", &role, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--ttl", &ttl_text, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--secret", &secret, &bad))
            continue;
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "rtctl token: unknown option %s\n", argv[i]);
            bad = true;
        } else if (user_id) {
            fprintf(stderr, "rtctl token: unexpected argument '%s'\n", argv[i]);
            bad = true;
        } else {
            user_id = argv[i];
        }
    }
    if (!bad && !user_id) {
        fprintf(stderr, "rtctl token: needs <user-id>\n");
        bad = true;
    }
    if (!bad && !rt_id_valid(user_id)) {
        fprintf(stderr, "rtctl token: <user-id>: must match [A-Za-z0-9_-]{1,64}\n");
        bad = true;
    }
    if (!bad && role && strcmp(role, "student") != 0 && strcmp(role, "instructor") != 0 &&
        strcmp(role, "admin") != 0) {
        fprintf(stderr, "rtctl token: --role: must be student, instructor or admin\n");
        bad = true;
    }
    if (!bad && ttl_text && !rtctl_parse_int(&ttl, ttl_text, 1, 366LL * 24 * 3600, "--ttl"))
        bad = true;
    if (bad) {
        fputs("(rtctl token --help for usage)\n", stderr);
        return RTCTL_EXIT_USAGE;
    }
    if (!secret)
        secret = config->jwt_secret;
    if (!secret || !*secret) {
        fprintf(stderr, "rtctl token: no secret: set SUPABASE_JWT_SECRET or pass --secret\n");
        return RTCTL_EXIT_USAGE;
    }
    if (!rtctl_uuid_v4(session_id)) {
        fprintf(stderr, "rtctl token: no randomness for a session id (RAND_bytes)\n");
        return RTCTL_EXIT_FAILED;
    }
    char *token = mint_hs256(secret, user_id, role, ttl, session_id);
    if (!token) {
        fprintf(stderr, "rtctl token: HMAC-SHA256 failed\n");
        return RTCTL_EXIT_FAILED;
    }
    printf("%s\n", token);
    free(token);
    return RTCTL_EXIT_OK;
}
