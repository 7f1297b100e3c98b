#include "rt_nats.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_log.h"

struct rt_nats {
    natsConnection *conn;
    jsCtx *js;
    atomic_bool connected;
    atomic_bool closing; /* rt_nats_close() is closing on purpose */
    atomic_bool closed_for_good;
    atomic_bool closed_done; /* the closed callback ran: no more callbacks */
    char name[64];
    void (*on_reconnected)(void *arg);
    void (*on_slow_consumer)(natsSubscription *sub, void *arg);
    void *callback_arg;
};

rt_status rt_nats_error_record(natsStatus s, const char *what, const char *file, const char *func,
                               int line)
{
    const char *last = nats_GetLastError(NULL);
    rt_status code = RT_ERR_NATS;

    if (s == NATS_TIMEOUT)
        code = RT_ERR_TIMEOUT;
    else if (s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED ||
             s == NATS_CONNECTION_DISCONNECTED || s == NATS_NO_SERVER ||
             s == NATS_NOT_YET_CONNECTED)
        code = RT_ERR_UNAVAILABLE;
    return rt_error_record(code, file, func, line, "%s: %s%s%s", what, natsStatus_GetText(s),
                           last && *last ? ": " : "", last ? last : "");
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    (void)nc;
    (void)closure;
    /* 100 ms doubling to 5 s, with up to 50 % jitter so a fleet of services
     * does not reconnect in lockstep after a NATS restart. */
    int64_t base = 100;
    for (int i = 1; i < attempts && base < 5000; i++)
        base *= 2;
    if (base > 5000)
        base = 5000;
    return base / 2 + (int64_t)(rand() % (int)(base / 2 + 1));
}

static void on_connected(natsConnection *nc, void *closure)
{
    rt_nats *nats = closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    atomic_store(&nats->connected, true);
    rt_log_info("nats connected", "{s:s}", "url", url);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    rt_nats *nats = closure;
    (void)nc;
    atomic_store(&nats->connected, false);
    if (!atomic_load(&nats->closing))
        rt_log_warn("nats disconnected; reconnecting", NULL);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    rt_nats *nats = closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    atomic_store(&nats->connected, true);
    rt_log_info("nats reconnected", "{s:s}", "url", url);
    if (nats->on_reconnected)
        nats->on_reconnected(nats->callback_arg);
}

static void on_closed(natsConnection *nc, void *closure)
{
    rt_nats *nats = closure;
    (void)nc;
    atomic_store(&nats->connected, false);
    if (atomic_load(&nats->closing)) {
        rt_log_info("nats connection closed", NULL);
    } else {
        atomic_store(&nats->closed_for_good, true);
        rt_log_error(
            "nats connection closed for good (credentials refused?); the service must restart",
            NULL);
    }
    /* Last statement: rt_nats_close() may free us once it sees this. */
    atomic_store(&nats->closed_done, true);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    rt_nats *nats = closure;
    (void)nc;
    const char *subject = sub ? natsSubscription_GetSubject(sub) : NULL;
    rt_log_error("nats async error", "{s:s, s:s}", "error", natsStatus_GetText(err), "subject",
                 subject ? subject : "");
    if (err == NATS_SLOW_CONSUMER && sub && nats->on_slow_consumer)
        nats->on_slow_consumer(sub, nats->callback_arg);
}

static rt_status build_options(natsOptions **out, rt_nats *nats, const rt_nats_options *o)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    char *urls = NULL;
    const char *servers[16];
    int n_servers = 0;

    if (s == NATS_OK) {
        /* Split "nats://a:4222,nats://b:4222" into a server list. */
        urls = rt_strdup(o->url);
        char *save = NULL;
        for (char *tok = strtok_r(urls, ",", &save); tok && n_servers < 16;
             tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            servers[n_servers++] = tok;
        }
        s = natsOptions_SetServers(opts, servers, n_servers);
    }
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, o->name ? o->name : "unpuzzle");
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetCustomReconnectDelay(opts, reconnect_delay, nats);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, nats);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, nats);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, nats);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(opts, on_closed, nats);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, on_error, nats);
    /* Requests made while disconnected fail at once instead of hanging
     * until their deadline. */
    if (s == NATS_OK)
        s = natsOptions_SetFailRequestsOnDisconnect(opts, true);
    if (s == NATS_OK && o->delivery_threads > 0) {
        s = nats_SetMessageDeliveryPoolSize(o->delivery_threads);
        if (s == NATS_OK)
            s = natsOptions_UseGlobalMessageDelivery(opts, true);
    }
    if (s == NATS_OK && o->user && *o->user)
        s = natsOptions_SetUserInfo(opts, o->user, o->password ? o->password : "");
    if (s == NATS_OK && o->creds_file && *o->creds_file)
        s = natsOptions_SetUserCredentialsFromFiles(opts, o->creds_file, NULL);
    free(urls);
    if (s != NATS_OK) {
        natsOptions_Destroy(opts);
        return RT_NATS_ERR(s, "nats options");
    }
    *out = opts;
    return RT_OK;
}

rt_status rt_nats_connect(rt_nats **out, const rt_nats_options *options)
{
    rt_nats *nats;
    natsOptions *opts = NULL;
    natsStatus s;
    rt_status st;

    if (!options || !options->url || !*options->url)
        return RT_ERR(RT_ERR_INVALID_ARG, "no NATS URL");
    nats = rt_calloc(1, sizeof(*nats));
    atomic_init(&nats->connected, false);
    atomic_init(&nats->closing, false);
    atomic_init(&nats->closed_for_good, false);
    atomic_init(&nats->closed_done, false);
    nats->on_reconnected = options->on_reconnected;
    nats->on_slow_consumer = options->on_slow_consumer;
    nats->callback_arg = options->callback_arg;
    st = build_options(&opts, nats, options);
    if (st != RT_OK) {
        free(nats);
        return st;
    }
    s = natsConnection_Connect(&nats->conn, opts);
    natsOptions_Destroy(opts);
    if (s == NATS_OK) {
        on_connected(nats->conn, nats);
    } else if (s == NATS_NOT_YET_CONNECTED) {
        rt_log_warn("nats not reachable yet; retrying in the background", NULL);
    } else {
        free(nats);
        return RT_NATS_ERR(s, "nats connect");
    }
    s = natsConnection_JetStream(&nats->js, nats->conn, NULL);
    if (s != NATS_OK) {
        natsConnection_Destroy(nats->conn);
        free(nats);
        return RT_NATS_ERR(s, "jetstream context");
    }
    *out = nats;
    return RT_OK;
}

bool rt_nats_closed_for_good(const rt_nats *nats)
{
    return nats && atomic_load(&nats->closed_for_good);
}

bool rt_nats_is_connected(const rt_nats *nats)
{
    return nats && atomic_load(&nats->connected);
}

rt_status rt_nats_wait_connected(rt_nats *nats, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (rt_nats_is_connected(nats))
            return RT_OK;
        nats_Sleep(20);
    }
    return rt_nats_is_connected(nats)
               ? RT_OK
               : RT_ERR(RT_ERR_UNAVAILABLE, "NATS not connected after %d ms", timeout_ms);
}

natsConnection *rt_nats_connection(rt_nats *nats)
{
    return nats->conn;
}

jsCtx *rt_nats_jetstream(rt_nats *nats)
{
    return nats->js;
}

void rt_nats_close(rt_nats *nats, int timeout_ms)
{
    if (!nats)
        return;
    atomic_store(&nats->closing, true);
    if (rt_nats_is_connected(nats)) {
        if (natsConnection_DrainTimeout(nats->conn, timeout_ms) == NATS_OK) {
            for (int waited = 0; waited < timeout_ms + 500; waited += 10) {
                if (natsConnection_IsClosed(nats->conn))
                    break;
                nats_Sleep(10);
            }
        }
    }
    natsConnection_Close(nats->conn);
    /* nats.c runs the closed callback on its own thread, after Close
     * returns; wait for it so no callback touches freed memory. */
    for (int waited = 0; waited < 2000 && !atomic_load(&nats->closed_done); waited += 5)
        nats_Sleep(5);
    jsCtx_Destroy(nats->js);
    natsConnection_Destroy(nats->conn);
    free(nats);
}

void rt_stream_spec_events(rt_stream_spec *out, int64_t max_age_s, int64_t duplicate_window_s)
{
    memset(out, 0, sizeof(*out));
    out->name = "EVENTS";
    out->subject = "evt.v1.>";
    out->max_age_s = max_age_s;
    out->duplicate_window_s = duplicate_window_s;
}

void rt_stream_spec_rooms(rt_stream_spec *out, int64_t max_age_s, int64_t max_per_room,
                          int64_t duplicate_window_s)
{
    memset(out, 0, sizeof(*out));
    out->name = "ROOMS";
    out->subject = "rt.v1.room.>";
    out->max_age_s = max_age_s;
    out->max_msgs_per_subject = max_per_room;
    out->duplicate_window_s = duplicate_window_s;
    out->republish_src = "rt.v1.room.>";
    out->republish_dest = "rtd.v1.room.>";
}

rt_status rt_nats_ensure_stream(rt_nats *nats, const rt_stream_spec *spec)
{
    jsStreamConfig cfg;
    jsRePublish republish;
    jsStreamInfo *info = NULL;
    jsErrCode jerr = 0;
    const char *subjects[1] = {spec->subject};
    natsStatus s;

    jsStreamConfig_Init(&cfg);
    cfg.Name = spec->name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = spec->memory_storage ? js_MemoryStorage : js_FileStorage;
    cfg.MaxAge = spec->max_age_s * 1000000000LL;
    cfg.MaxMsgsPerSubject = spec->max_msgs_per_subject > 0 ? spec->max_msgs_per_subject : -1;
    cfg.MaxBytes = spec->max_bytes > 0 ? spec->max_bytes : -1;
    cfg.Duplicates = spec->duplicate_window_s * 1000000000LL;
    cfg.AllowDirect = true;
    if (spec->republish_src) {
        jsRePublish_Init(&republish);
        republish.Source = spec->republish_src;
        republish.Destination = spec->republish_dest;
        cfg.RePublish = &republish;
    }

    s = js_AddStream(&info, nats->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        /* Someone created it first, with other limits: bring it to ours. */
        jerr = 0;
        s = js_UpdateStream(&info, nats->js, &cfg, NULL, &jerr);
    }
    jsStreamInfo_Destroy(info);
    if (s != NATS_OK)
        return RT_NATS_ERR(s, spec->name);
    rt_log_info("stream ready", "{s:s, s:s}", "stream", spec->name, "subject", spec->subject);
    return RT_OK;
}

rt_status rt_nats_js_publish(uint64_t *out_seq, bool *out_duplicate, rt_nats *nats,
                             const char *subject, const void *data, int len, const char *msg_id,
                             int timeout_ms, int attempts)
{
    jsPubOptions po;
    natsStatus s = NATS_OK;

    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = timeout_ms;
    for (int i = 0; i < (attempts > 0 ? attempts : 1); i++) {
        jsPubAck *ack = NULL;
        jsErrCode jerr = 0;
        s = js_Publish(&ack, nats->js, subject, data, len, &po, &jerr);
        if (s == NATS_OK) {
            if (out_seq)
                *out_seq = ack->Sequence;
            if (out_duplicate)
                *out_duplicate = ack->Duplicate;
            jsPubAck_Destroy(ack);
            return RT_OK;
        }
        /* Only a timeout or a missing stream responder is worth another try:
         * the same Nats-Msg-Id makes a retry store at most once. */
        if (s != NATS_TIMEOUT && s != NATS_NO_RESPONDERS)
            break;
    }
    return RT_NATS_ERR(s, subject);
}

rt_status rt_nats_request(natsMsg **reply, rt_nats *nats, const char *subject, const void *data,
                          int len, int timeout_ms)
{
    natsStatus s = natsConnection_Request(reply, nats->conn, subject, data, len, timeout_ms);
    if (s != NATS_OK)
        return RT_NATS_ERR(s, subject);
    return RT_OK;
}
