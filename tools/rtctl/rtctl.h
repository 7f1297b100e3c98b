/*
 * rtctl: the operator CLI of the realtime backend.
 *
 *   rtctl publish <room> <type> <action> '<payload json>'   (rtctl_publish.c)
 *   rtctl token <user-id>                                   (rtctl_token.c)
 *   rtctl tail <room> --token T                             (rtctl_tail.c)
 *
 * stdout carries results only (a token, "published ..." lines, the room's
 * JSON Lines); rt_log lines and errors go to stderr. Exit codes are shared
 * by every subcommand (RTCTL_EXIT_*).
 */
#ifndef RTCTL_H
#define RTCTL_H

#include <stdbool.h>
#include <stdint.h>

enum {
    RTCTL_EXIT_OK = 0,
    RTCTL_EXIT_FAILED = 1,  /* NATS unreachable, token refused, room forbidden, ... */
    RTCTL_EXIT_USAGE = 2,   /* bad arguments or input (bad JSON, unknown field, bad room) */
    RTCTL_EXIT_TIMEOUT = 3, /* tail --timeout passed before --count messages arrived */
};

/* Settings from the environment (rt_config table in rtctl.c). */
typedef struct rtctl_config {
    char *nats_url;
    char *nats_user;
    char *nats_password;
    char *nats_creds_file;
    int64_t rooms_max_age_s;
    int64_t rooms_max_per_room;
    int64_t rooms_duplicate_window_s;
    char *jwt_secret;
    char *log_level;
} rtctl_config;

/*
 * Subcommands. argv[0] is the subcommand's name; each parses its own options,
 * prints its own help on --help, and returns the process exit code.
 */
int rtctl_publish_main(const rtctl_config *config, int argc, char **argv);
int rtctl_token_main(const rtctl_config *config, int argc, char **argv);
int rtctl_tail_main(const rtctl_config *config, int argc, char **argv);

/* Helpers for option parsing shared by the subcommands. */

/* True when argv[*i] is `name`; then *value is the next argument (an error
 * is printed and *bad set when there is none) and *i advances past it. */
bool rtctl_opt_value(int argc, char **argv, int *i, const char *name, const char **value,
                     bool *bad);
/* Parses a whole decimal number in [min, max]; prints "<what>: ..." on error. */
bool rtctl_parse_int(int64_t *out, const char *text, int64_t min, int64_t max, const char *what);
/* A random (version 4) UUID in lower case, from OpenSSL's RAND_bytes();
 * false if the generator failed. */
bool rtctl_uuid_v4(char out[37]);
/* True for "-h" and "--help". */
bool rtctl_is_help(const char *arg);

#endif
