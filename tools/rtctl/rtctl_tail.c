/*
 * rtctl tail: a WebSocket client of ws-edge (libwebsockets client API) that
 * speaks the browser protocol: auth frame, wait for auth_ok, subscribe to one
 * room (optionally with since), then print every JSON object the server
 * sends, one per line on stdout (the server's JSON Lines frames are split on
 * '\n'). Error frames go to stderr and end the run with exit code 1.
 *
 * Everything runs on the one lws service thread; the signal handlers only
 * set a flag (rt_signal) that a 100 ms lws timer looks at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "rt_alloc.h"
#include "rt_room.h"
#include "rt_signal.h"
#include "rt_time.h"
#include "rtctl.h"

#define TAIL_TICK_US (100 * LWS_US_PER_MS)
#define TAIL_MAX_MESSAGE (16u * 1024 * 1024) /* one server frame, far above any real one */
#define TAIL_CLOSE_GRACE_NS (2000ull * 1000000ull)
#define TAIL_SUBSCRIBE_ID "rtctl-1"
#define TAIL_MAX_PENDING 4

typedef struct tail_args {
    const char *room;
    const char *token;
    const char *url;
    const char *epoch;
    int64_t since_seq; /* -1: no since */
    int64_t count;     /* 0: no limit */
    int64_t timeout_s; /* 0: none */
    bool insecure;
} tail_args;

typedef enum tail_state {
    TAIL_CONNECTING,
    TAIL_AUTHENTICATING, /* auth sent, waiting for auth_ok */
    TAIL_SUBSCRIBING,    /* subscribe sent, waiting for subscribed */
    TAIL_STREAMING,
} tail_state;

typedef struct tail {
    const tail_args *args;
    struct lws_context *context;
    struct lws *wsi;
    lws_sorted_usec_list_t tick;
    tail_state state;
    char *pending[TAIL_MAX_PENDING]; /* frames to send, oldest first (text only) */
    int n_pending;
    char *rx; /* the message being reassembled from fragments */
    size_t rx_len, rx_cap;
    int64_t received; /* room messages printed (those with prevSeq) */
    uint64_t deadline_ns;
    uint64_t close_deadline_ns;
    bool closing;  /* we asked lws to close */
    bool finished; /* leave the service loop */
    bool decided;  /* exit_code is final; later events do not change it */
    int exit_code;
    int peer_close_code;
    char peer_close_reason[124];
} tail;

static void tail_usage(FILE *out)
{
    fputs("usage: rtctl tail <room> --token T [--url ws://127.0.0.1:8080/ws]\n"
          "                  [--since-seq N --epoch E] [--count N] [--timeout S] [--insecure]\n"
          "\n"
          "Connects to ws-edge as a browser would (subprotocol unpuzzle.v1), sends the\n"
          "auth frame, subscribes to <room> and prints every JSON object the server sends\n"
          "from \"subscribed\" on, one per line on stdout, until Ctrl-C, --count room\n"
          "messages or --timeout seconds. Error frames (unauthorized, forbidden, ...) go\n"
          "to stderr and the exit code is 1.\n"
          "  --token      access token (e.g. TOKEN=$(rtctl token u1))\n"
          "  --url        ws:// or wss:// URL of ws-edge's /ws (default ws://127.0.0.1:8080/ws)\n"
          "  --since-seq, --epoch   resume after that room seq (both, from \"subscribed\")\n"
          "  --count      stop after N room messages\n"
          "  --timeout    stop after S seconds (exit 3 if --count was not reached)\n"
          "  --insecure   wss:// without certificate checks (self-signed dev certs)\n",
          out);
}

/* Decides the exit code once and starts closing. */
static void tail_finish(tail *t, int exit_code)
{
    if (!t->decided) {
        t->decided = true;
        t->exit_code = exit_code;
    }
    if (!t->wsi) {
        t->finished = true;
        return;
    }
    if (!t->closing) {
        t->closing = true;
        t->close_deadline_ns = rt_time_mono_ns() + TAIL_CLOSE_GRACE_NS;
        lws_callback_on_writable(t->wsi);
    }
}

/* Queues `frame` (taken over) for the writeable callback. */
static void tail_send(tail *t, char *frame)
{
    if (t->n_pending == TAIL_MAX_PENDING) {
        free(frame); /* never happens: we send at most two frames */
        return;
    }
    t->pending[t->n_pending++] = frame;
    lws_callback_on_writable(t->wsi);
}

static char *json_text(json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!text)
        abort(); /* out of memory: rt_alloc.h policy */
    return text;
}

static void send_subscribe(tail *t)
{
    json_t *frame = json_pack("{s:s, s:s, s:s}", "type", "subscribe", "id", TAIL_SUBSCRIBE_ID,
                              "room", t->args->room);
    if (t->args->since_seq >= 0)
        json_object_set_new(frame, "since",
                            json_pack("{s:I, s:s}", "seq", (json_int_t)t->args->since_seq, "epoch",
                                      t->args->epoch));
    tail_send(t, json_text(frame));
}

static void report_error(tail *t, json_t *obj)
{
    const char *code = json_string_value(json_object_get(obj, "code"));
    const char *message = json_string_value(json_object_get(obj, "message"));
    const char *room = json_string_value(json_object_get(obj, "room"));

    fprintf(stderr, "rtctl tail: %s%s%s%s%s\n", code ? code : "error", room ? " " : "",
            room ? room : "", message ? ": " : "", message ? message : "");
    tail_finish(t, RTCTL_EXIT_FAILED);
}

/* One JSON object from the server. */
static void handle_line(tail *t, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    const char *type = json_string_value(json_object_get(obj, "type"));

    if (!json_is_object(obj) || !type) {
        fprintf(stderr, "rtctl tail: server sent something that is not a JSON object\n");
        json_decref(obj);
        return;
    }
    if (strcmp(type, "error") == 0) {
        report_error(t, obj);
    } else if (t->state == TAIL_AUTHENTICATING) {
        if (strcmp(type, "auth_ok") == 0) {
            const char *user = json_string_value(json_object_get(obj, "userId"));
            const char *role = json_string_value(json_object_get(obj, "role"));
            fprintf(stderr, "rtctl tail: authenticated as %s (%s)\n", user ? user : "?",
                    role ? role : "?");
            t->state = TAIL_SUBSCRIBING;
            send_subscribe(t);
        } else {
            fprintf(stderr, "rtctl tail: unexpected %s before auth_ok\n", type);
        }
    } else if (!t->closing) {
        if (t->state == TAIL_SUBSCRIBING && strcmp(type, "subscribed") == 0)
            t->state = TAIL_STREAMING;
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        /* Room messages are the ones that carry prevSeq (protocol.md). */
        if (json_object_get(obj, "prevSeq") && t->args->count > 0 &&
            ++t->received >= t->args->count)
            tail_finish(t, RTCTL_EXIT_OK);
    }
    json_decref(obj);
}

static void handle_message(tail *t)
{
    const char *p = t->rx, *end = t->rx + t->rx_len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop > p)
            handle_line(t, p, (size_t)(stop - p));
        p = stop + 1;
    }
    t->rx_len = 0;
}

static int on_receive(tail *t, struct lws *wsi, const void *in, size_t len)
{
    if (t->rx_len + len > TAIL_MAX_MESSAGE) {
        fprintf(stderr, "rtctl tail: server message over %u bytes\n", TAIL_MAX_MESSAGE);
        tail_finish(t, RTCTL_EXIT_FAILED);
        return 0;
    }
    if (t->rx_len + len + 1 > t->rx_cap) {
        t->rx_cap = (t->rx_len + len + 1) * 2;
        t->rx = rt_realloc(t->rx, t->rx_cap);
    }
    memcpy(t->rx + t->rx_len, in, len);
    t->rx_len += len;
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
        handle_message(t);
    return 0;
}

static int on_writeable(tail *t, struct lws *wsi)
{
    if (t->closing) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
        return -1; /* lws sends the close frame and closes */
    }
    if (t->n_pending == 0)
        return 0;
    char *frame = t->pending[0];
    size_t len = strlen(frame);
    unsigned char *buf = rt_malloc(LWS_PRE + len);
    memcpy(buf + LWS_PRE, frame, len);
    int n = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
    free(buf);
    free(frame);
    memmove(t->pending, t->pending + 1, sizeof(t->pending[0]) * (size_t)--t->n_pending);
    if (n < (int)len) {
        fprintf(stderr, "rtctl tail: write failed\n");
        tail_finish(t, RTCTL_EXIT_FAILED);
        return -1;
    }
    if (t->n_pending)
        lws_callback_on_writable(wsi);
    return 0;
}

static int tail_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    tail *t = lws_context_user(lws_get_context(wsi));
    (void)user;

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "rtctl tail: cannot connect to %s: %s\n", t->args->url,
                in ? (const char *)in : "connection failed");
        t->wsi = NULL;
        tail_finish(t, RTCTL_EXIT_FAILED);
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        t->state = TAIL_AUTHENTICATING;
        tail_send(t, json_text(json_pack("{s:s, s:s}", "type", "auth", "token", t->args->token)));
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(t, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(t, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *b = in;
            size_t n = len - 2 < sizeof(t->peer_close_reason) - 1
                           ? len - 2
                           : sizeof(t->peer_close_reason) - 1;
            t->peer_close_code = (b[0] << 8) | b[1];
            memcpy(t->peer_close_reason, b + 2, n);
            t->peer_close_reason[n] = '\0';
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!t->decided) {
            fprintf(stderr, "rtctl tail: connection closed by the server");
            if (t->peer_close_code)
                fprintf(stderr, " (%d%s%s)", t->peer_close_code, t->peer_close_reason[0] ? " " : "",
                        t->peer_close_reason);
            fputc('\n', stderr);
            t->decided = true;
            t->exit_code = RTCTL_EXIT_FAILED;
        }
        t->wsi = NULL;
        t->finished = true;
        break;
    default:
        break;
    }
    return 0;
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    tail *t = lws_container_of(sul, tail, tick);
    uint64_t now = rt_time_mono_ns();

    if (rt_signal_stop_requested())
        tail_finish(t, RTCTL_EXIT_OK);
    if (t->deadline_ns && now >= t->deadline_ns) {
        if (t->args->count > 0)
            fprintf(stderr, "rtctl tail: timed out after %lld of %lld messages\n",
                    (long long)t->received, (long long)t->args->count);
        tail_finish(t, t->args->count > 0 ? RTCTL_EXIT_TIMEOUT : RTCTL_EXIT_OK);
    }
    if (t->closing && now >= t->close_deadline_ns)
        t->finished = true; /* the server did not complete the close handshake */
    lws_sul_schedule(t->context, 0, &t->tick, on_tick, TAIL_TICK_US);
}

static const struct lws_protocols tail_protocols[] = {
    {"unpuzzle.v1", tail_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Returns -1 to go on, else the exit code (help, usage error). */
static int parse_args(tail_args *a, int argc, char **argv)
{
    const char *since = NULL, *count = NULL, *timeout = NULL;
    bool bad = false;

    memset(a, 0, sizeof(*a));
    a->url = "ws://127.0.0.1:8080/ws";
    a->since_seq = -1;
    for (int i = 1; i < argc && !bad; i++) {
        if (rtctl_is_help(argv[i])) {
            tail_usage(stdout);
            return RTCTL_EXIT_OK;
        }
        if (strcmp(argv[i], "--insecure") == 0) {
            a->insecure = true;
            continue;
        }
        if (rtctl_opt_value(argc, argv, &i, "--token", &a->token, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--url", &a->url, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--since-seq", &since, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--epoch", &a->epoch, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--count", &count, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--timeout", &timeout, &bad))
            continue;
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "rtctl tail: unknown option %s\n", argv[i]);
            bad = true;
        } else if (a->room) {
            fprintf(stderr, "rtctl tail: unexpected argument '%s'\n", argv[i]);
            bad = true;
        } else {
            a->room = argv[i];
        }
    }
    rt_room room;
    if (!bad && !a->room) {
        fprintf(stderr, "rtctl tail: needs <room>\n");
        bad = true;
    } else if (!bad && rt_room_parse(&room, a->room) != RT_OK) {
        fprintf(stderr, "rtctl tail: room '%s': %s\n", a->room, rt_error_message());
        bad = true;
    }
    if (!bad && (!a->token || !*a->token)) {
        fprintf(stderr, "rtctl tail: needs --token\n");
        bad = true;
    }
    if (!bad && !!since != !!a->epoch) {
        fprintf(stderr, "rtctl tail: --since-seq and --epoch go together\n");
        bad = true;
    }
    if (!bad && since && !rtctl_parse_int(&a->since_seq, since, 0, INT64_MAX, "--since-seq"))
        bad = true;
    if (!bad && count && !rtctl_parse_int(&a->count, count, 1, INT64_MAX, "--count"))
        bad = true;
    if (!bad && timeout && !rtctl_parse_int(&a->timeout_s, timeout, 1, 86400 * 365, "--timeout"))
        bad = true;
    if (bad) {
        fputs("(rtctl tail --help for usage)\n", stderr);
        return RTCTL_EXIT_USAGE;
    }
    return -1;
}

int rtctl_tail_main(const rtctl_config *config, int argc, char **argv)
{
    tail_args args;
    tail t;
    struct lws_context_creation_info info;
    struct lws_client_connect_info cc;
    const char *scheme = NULL, *path_tail = NULL;
    char url[1024], path[1024];
    int code;

    (void)config;
    if ((code = parse_args(&args, argc, argv)) >= 0)
        return code;
    snprintf(url, sizeof(url), "%s", args.url);
    memset(&cc, 0, sizeof(cc));
    if (lws_parse_uri(url, &scheme, &cc.address, &cc.port, &path_tail) != 0 ||
        (strcmp(scheme, "ws") != 0 && strcmp(scheme, "wss") != 0)) {
        fprintf(stderr, "rtctl tail: --url: must be ws://host[:port]/path or wss://...\n");
        return RTCTL_EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "/%s", path_tail); /* lws_parse_uri drops the first '/' */
    if (rt_signal_install() != RT_OK) {
        fprintf(stderr, "rtctl tail: %s\n", rt_error_message());
        return RTCTL_EXIT_FAILED;
    }

    memset(&t, 0, sizeof(t));
    t.args = &args;
    t.state = TAIL_CONNECTING;
    if (args.timeout_s)
        t.deadline_ns = rt_time_mono_ns() + (uint64_t)args.timeout_s * 1000000000ull;

    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = tail_protocols;
    info.user = &t;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.fd_limit_per_thread = 16; /* one connection; do not size tables for ulimit -n */
    t.context = lws_create_context(&info);
    if (!t.context) {
        fprintf(stderr, "rtctl tail: lws_create_context failed\n");
        return RTCTL_EXIT_FAILED;
    }

    cc.context = t.context;
    cc.path = path;
    cc.host = cc.address;
    cc.protocol = "unpuzzle.v1";
    cc.pwsi = &t.wsi;
    if (strcmp(scheme, "wss") == 0) {
        cc.ssl_connection = LCCSCF_USE_SSL;
        if (args.insecure)
            cc.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_INSECURE;
    }
    lws_sul_schedule(t.context, 0, &t.tick, on_tick, TAIL_TICK_US);
    if (!lws_client_connect_via_info(&cc) && !t.decided) {
        fprintf(stderr, "rtctl tail: cannot connect to %s\n", args.url);
        t.decided = true;
        t.exit_code = RTCTL_EXIT_FAILED;
        t.finished = true;
    }
    while (!t.finished && lws_service(t.context, 0) >= 0)
        ;
    lws_sul_cancel(&t.tick);
    lws_context_destroy(t.context);
    for (int i = 0; i < t.n_pending; i++)
        free(t.pending[i]);
    free(t.rx);
    return t.exit_code;
}
