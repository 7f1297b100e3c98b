/*
 * rtctl: operator CLI. This file reads the environment, picks the
 * subcommand and hands over; the subcommands live in rtctl_<name>.c.
 * Logs (rt_log) go to stderr so stdout stays machine-readable.
 */
#include "rtctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "rt_config.h"
#include "rt_log.h"

static const rt_config_var rtctl_config_vars[] = {
    RT_CFG_NATS_VARS(rtctl_config),
    RT_CFG_INT(rtctl_config, rooms_max_age_s, "ROOMS_MAX_AGE_S", "86400", 0, 60, 31536000,
               "room history kept, seconds (only when publish has to create the ROOMS stream)"),
    RT_CFG_INT(rtctl_config, rooms_max_per_room, "ROOMS_MAX_PER_ROOM", "1000", 0, 1, 1000000,
               "room history kept per room (only when publish creates the ROOMS stream)"),
    RT_CFG_INT(rtctl_config, rooms_duplicate_window_s, "ROOMS_DUPLICATE_WINDOW_S", "120", 0, 1,
               86400, "Nats-Msg-Id dedupe window (only when publish creates the ROOMS stream)"),
    RT_CFG_STR(rtctl_config, jwt_secret, "SUPABASE_JWT_SECRET", "", RT_CFG_SECRET, NULL,
               "HS256 secret that token signs with (or --secret)"),
    RT_CFG_STR(rtctl_config, log_level, "LOG_LEVEL", "warn", 0, rt_config_check_log_level,
               "debug, info, warn or error (log lines go to stderr)"),
};
static const size_t rtctl_config_var_count =
    sizeof(rtctl_config_vars) / sizeof(rtctl_config_vars[0]);

static void usage(FILE *out)
{
    fputs("usage: rtctl <command> [arguments]\n"
          "\n"
          "commands:\n"
          "  publish <room> <type> <action> '<payload json>' [--user-id U] [--event-id E]\n"
          "        publish a RoomMessage to the room through JetStream (ROOMS stream)\n"
          "  token <user-id> [--role student|instructor|admin] [--ttl S] [--secret S]\n"
          "        mint an HS256 Supabase-like access token and print it\n"
          "  tail <room> --token T [--url U] [--since-seq N --epoch E] [--count N] [--timeout S]\n"
          "        join a room through ws-edge and print what arrives as JSON Lines\n"
          "\n"
          "`rtctl <command> --help` describes a command.\n"
          "exit codes: 0 ok, 1 failed, 2 bad usage or input, 3 tail timed out before --count\n",
          out);
}

bool rtctl_is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

bool rtctl_opt_value(int argc, char **argv, int *i, const char *name, const char **value, bool *bad)
{
    if (strcmp(argv[*i], name) != 0)
        return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "rtctl %s: %s needs a value\n", argv[0], name);
        *bad = true;
        return true;
    }
    *value = argv[++*i];
    return true;
}

bool rtctl_parse_int(int64_t *out, const char *text, int64_t min, int64_t max, const char *what)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "rtctl: %s: must be an integer from %lld to %lld\n", what, (long long)min,
                (long long)max);
        return false;
    }
    *out = v;
    return true;
}

bool rtctl_uuid_v4(char out[37])
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return true;
}

int main(int argc, char **argv)
{
    rtctl_config config;
    rt_log_level level = RT_LOG_WARN;
    int code;

    if (argc < 2 || rtctl_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        if (argc >= 2) {
            fputs("\nenvironment:\n", stdout);
            for (size_t i = 0; i < rtctl_config_var_count; i++)
                printf("  %-26s %s (default %s)\n", rtctl_config_vars[i].name,
                       rtctl_config_vars[i].help,
                       *rtctl_config_vars[i].default_value ? rtctl_config_vars[i].default_value
                                                           : "unset");
        }
        return argc < 2 ? RTCTL_EXIT_USAGE : RTCTL_EXIT_OK;
    }
    rt_log_set_stream(stderr);
    rt_log_init("rtctl", RT_LOG_WARN);
    if (rt_config_load(&config, rtctl_config_vars, rtctl_config_var_count) != RT_OK) {
        fprintf(stderr, "rtctl: %s\n", rt_error_message());
        return RTCTL_EXIT_USAGE;
    }
    rt_log_level_parse(&level, config.log_level);
    rt_log_init("rtctl", level);

    if (strcmp(argv[1], "publish") == 0) {
        code = rtctl_publish_main(&config, argc - 1, argv + 1);
    } else if (strcmp(argv[1], "token") == 0) {
        code = rtctl_token_main(&config, argc - 1, argv + 1);
    } else if (strcmp(argv[1], "tail") == 0) {
        code = rtctl_tail_main(&config, argc - 1, argv + 1);
    } else {
        fprintf(stderr, "rtctl: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        code = RTCTL_EXIT_USAGE;
    }
    fflush(stdout);
    rt_config_release(&config, rtctl_config_vars, rtctl_config_var_count);
    return code;
}
