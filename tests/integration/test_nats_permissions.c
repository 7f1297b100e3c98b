/*
 * deploy/nats/nats-server.conf, as deployed, against the real auth binary:
 * nats-server runs that very file (only its JetStream store_dir is moved into
 * the test's temp dir; host and ports come from -a/-p/-m), with the
 * per-service users and permissions of spec/subjects.md "Security".
 *
 * Proves that auth works end to end under its own permissions (verify,
 * authorize, an enrollment published by the django user taking effect, the
 * stream update path on restart, no permission violation by auth at all),
 * and that the permissions bite: django cannot subscribe to auth.v1.* nor
 * forge invalidations, ws-edge can ask auth but cannot serve or snoop on
 * auth.v1.verify nor publish into inboxes, wrong passwords are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_teststack.h"
#include "rt_time.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define CHANGE(x) UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x

#define CONF_PATH RT_SOURCE_DIR "/deploy/nats/nats-server.conf"
#define STORE_DIR_LINE "store_dir: \"/data\""

/* Test passwords: letters and digits, starting with a letter (see the
 * config's header on how nats-server parses environment values). */
#define PW_AUTH "pAuth0test1pw"
#define PW_WS_EDGE "pEdge0test2pw"
#define PW_ANALYTICS "pAnalytics0test3pw"
#define PW_NOTIFY "pNotify0test4pw"
#define PW_DJANGO "pDjango0test5pw"

/* An async error seen by one client connection (permission violations). */
typedef struct errors {
    pthread_mutex_t lock;
    char text[4096];
    int count;
} errors;

typedef struct client {
    natsConnection *nc;
    jsCtx *js;
    errors errs;
} client;

static struct {
    char *dir;
    char *conf;
    rt_test_proc *nats;
    int nats_port, monitor_port;
    char *nats_url;
    rt_test_pg *pg;
    rt_test_proc *auth;
    int auth_admin_port;
    client ws_edge, django;
} T;

/* ---- helpers ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = rt_malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = rt_realloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static size_t count_occurrences(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static char *find_nats_server(void)
{
    const char *path = getenv("PATH");
    if (path) {
        char *copy = rt_strdup(path), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            char *candidate = rt_asprintf("%s/nats-server", d);
            if (access(candidate, X_OK) == 0) {
                free(copy);
                return candidate;
            }
            free(candidate);
        }
        free(copy);
    }
    return rt_strdup("/usr/bin/nats-server");
}

/* The deployed config with only the JetStream store moved to `store`. */
static bool write_test_config(const char *out_path, const char *store)
{
    char *conf = read_file(CONF_PATH);
    if (!conf) {
        fprintf(stderr, "cannot read %s\n", CONF_PATH);
        return false;
    }
    if (count_occurrences(conf, STORE_DIR_LINE) != 1) {
        fprintf(stderr, "%s: expected exactly one line '%s'\n", CONF_PATH, STORE_DIR_LINE);
        free(conf);
        return false;
    }
    char *at = strstr(conf, STORE_DIR_LINE);
    *at = '\0';
    char *copy = rt_asprintf("# copy of %s for test_nats_permissions\n%sstore_dir: \"%s\"%s",
                             CONF_PATH, conf, store, at + strlen(STORE_DIR_LINE));
    bool ok = write_file(out_path, copy);
    free(copy);
    free(conf);
    return ok;
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
    errors *e = arg;
    const char *text = NULL;
    (void)sub;
    natsConnection_GetLastError(nc, &text);
    pthread_mutex_lock(&e->lock);
    size_t len = strlen(e->text);
    snprintf(e->text + len, sizeof(e->text) - len, "%s: %s\n", natsStatus_GetText(err),
             text ? text : "");
    e->count++;
    pthread_mutex_unlock(&e->lock);
}

/* Waits until the connection's async errors mention `needle`. */
static bool wait_error(client *c, const char *needle, int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        pthread_mutex_lock(&c->errs.lock);
        bool found = strstr(c->errs.text, needle) != NULL;
        pthread_mutex_unlock(&c->errs.lock);
        if (found)
            return true;
        if (rt_time_mono_ns() >= deadline)
            return false;
        sleep_ms(10);
    }
}

static void print_errors(client *c)
{
    pthread_mutex_lock(&c->errs.lock);
    fprintf(stderr, "async errors so far:\n%s", c->errs.text);
    pthread_mutex_unlock(&c->errs.lock);
}

static natsStatus connect_as(natsConnection **nc, const char *user, const char *password,
                             errors *errs)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, T.nats_url);
    if (s == NATS_OK && user)
        s = natsOptions_SetUserInfo(opts, user, password);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, 0);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, 5000);
    if (s == NATS_OK && errs)
        s = natsOptions_SetErrorHandler(opts, on_async_error, errs);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, opts);
    natsOptions_Destroy(opts);
    return s;
}

static bool client_open(client *c, const char *user, const char *password)
{
    pthread_mutex_init(&c->errs.lock, NULL);
    natsStatus s = connect_as(&c->nc, user, password, &c->errs);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&c->js, c->nc, NULL);
    if (s != NATS_OK)
        fprintf(stderr, "connect as %s: %s\n", user, natsStatus_GetText(s));
    return s == NATS_OK;
}

static void client_close(client *c)
{
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    c->js = NULL;
    c->nc = NULL;
    pthread_mutex_destroy(&c->errs.lock);
}

/* The rt_teststack helpers read only `nc` (requests) and `js` (events). */
static rt_test_stack as_client(client *c)
{
    rt_test_stack st;
    memset(&st, 0, sizeof(st));
    st.nc = c->nc;
    st.js = c->js;
    return st;
}

static rt_status start_auth(rt_test_proc **out, int *admin_port, const char *password,
                            const char *extra)
{
    char nats_url[160], nats_pw[96], db_url[256], port[32];
    *admin_port = rt_test_free_port();
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", T.nats_url);
    snprintf(nats_pw, sizeof(nats_pw), "NATS_PASSWORD=%s", password);
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(T.pg));
    snprintf(port, sizeof(port), "ADMIN_PORT=%d", *admin_port);
    const char *env[] = {nats_url,
                         "NATS_USER=auth",
                         nats_pw,
                         db_url,
                         port,
                         "SUPABASE_JWT_SECRET=" RT_TEST_JWT_SECRET,
                         "LOG_LEVEL=debug",
                         extra,
                         NULL};
    return rt_test_proc_start(out, "auth", NULL, env);
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    char port[16], mport[16];
    rt_status s;

    T.dir = rt_test_tmpdir("natsperm");
    T.conf = rt_asprintf("%s/nats-server.conf", T.dir);
    char *store = rt_asprintf("%s/store", T.dir);
    bool ok = write_test_config(T.conf, store);
    free(store);
    if (!ok)
        return -1;

    char *bin = find_nats_server();
    for (int attempt = 0; attempt < 3; attempt++) {
        T.nats_port = rt_test_free_port();
        T.monitor_port = rt_test_free_port();
        snprintf(port, sizeof(port), "%d", T.nats_port);
        snprintf(mport, sizeof(mport), "%d", T.monitor_port);
        const char *argv[] = {"-c", T.conf, "-a", "127.0.0.1", "-p", port, "-m", mport, NULL};
        const char *env[] = {"AUTH_NATS_PASSWORD=" PW_AUTH,
                             "WS_EDGE_NATS_PASSWORD=" PW_WS_EDGE,
                             "ANALYTICS_AGGREGATOR_NATS_PASSWORD=" PW_ANALYTICS,
                             "NOTIFICATION_DISPATCHER_NATS_PASSWORD=" PW_NOTIFY,
                             "DJANGO_NATS_PASSWORD=" PW_DJANGO,
                             NULL};
        s = rt_test_proc_start(&T.nats, bin, argv, env);
        if (s == RT_OK)
            s = rt_test_proc_wait_http(T.nats, T.monitor_port, "/healthz?js-enabled-only=true", 200,
                                       15000);
        if (s == RT_OK)
            break;
        /* Most likely lost a port to someone else: try others. */
        rt_test_proc_destroy(T.nats);
        T.nats = NULL;
    }
    free(bin);
    if (s != RT_OK) {
        fprintf(stderr, "nats-server with %s: %s\n", CONF_PATH, rt_error_message());
        return -1;
    }
    T.nats_url = rt_asprintf("nats://127.0.0.1:%d", T.nats_port);

    if ((s = rt_test_pg_start(&T.pg)) != RT_OK || (s = rt_test_pg_migrate(T.pg)) != RT_OK) {
        fprintf(stderr, "postgres: %s\n", rt_error_message());
        return -1;
    }
    if ((s = start_auth(&T.auth, &T.auth_admin_port, PW_AUTH, NULL)) != RT_OK ||
        (s = rt_test_proc_wait_http(T.auth, T.auth_admin_port, "/readyz", 200, 15000)) != RT_OK) {
        fprintf(stderr, "auth as NATS user auth: %s\n", rt_error_message());
        return -1;
    }
    if (!client_open(&T.ws_edge, "ws-edge", PW_WS_EDGE) ||
        !client_open(&T.django, "django", PW_DJANGO))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    client_close(&T.ws_edge);
    client_close(&T.django);
    rt_test_proc_destroy(T.auth);
    rt_test_pg_destroy(T.pg);
    rt_test_proc_destroy(T.nats);
    rt_test_rmtree(T.dir);
    free(T.dir);
    free(T.conf);
    free(T.nats_url);
    return 0;
}

/* ---- auth works under its permissions ---- */

static void verify_and_authorize_as_ws_edge(void **state)
{
    (void)state;
    rt_test_stack edge = as_client(&T.ws_edge);
    Unpuzzle__Rt__V1__VerifyReply *v = NULL;
    Unpuzzle__Rt__V1__AuthorizeReply *a = NULL;
    char *token = rt_test_stack_token("perm-user-1", NULL);

    assert_int_equal(rt_test_verify(&v, &edge, token), RT_OK);
    assert_true(v->ok);
    assert_string_equal(v->user_id, "perm-user-1");
    unpuzzle__rt__v1__verify_reply__free_unpacked(v, NULL);
    free(token);

    /* Not a member yet: an answer (denied), not a timeout. */
    assert_int_equal(rt_test_authorize(&a, &edge, "perm-user-1", ROLE(STUDENT), "course:pc1"),
                     RT_OK);
    assert_false(a->allowed);
    unpuzzle__rt__v1__authorize_reply__free_unpacked(a, NULL);
}

static void enrollment_from_django_takes_effect(void **state)
{
    (void)state;
    rt_test_stack edge = as_client(&T.ws_edge);
    rt_test_stack django = as_client(&T.django);
    natsSubscription *inval = NULL;
    natsMsg *msg = NULL;

    /* ws-edge listens to the invalidations auth publishes after applying. */
    assert_int_equal(natsConnection_SubscribeSync(&inval, T.ws_edge.nc, "auth.v1.invalidated.>"),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(T.ws_edge.nc), NATS_OK);

    assert_int_equal(rt_test_publish_enrollment(&django, "perm-evt-1", "pc1", "perm-user-1",
                                                CHANGE(ADDED), MEMBER(STUDENT),
                                                rt_time_now_ms() / 1000),
                     RT_OK);
    int elapsed = 0;
    if (!rt_test_wait_authorize(&edge, "perm-user-1", ROLE(STUDENT), "course:pc1", true, 10000,
                                &elapsed))
        fail_msg("enrollment published by django not applied by auth within %d ms", elapsed);

    assert_int_equal(natsSubscription_NextMsg(&msg, inval, 5000), NATS_OK);
    assert_string_equal(natsMsg_GetSubject(msg), "auth.v1.invalidated.enrollment");
    natsMsg_Destroy(msg);
    natsSubscription_Destroy(inval);
}

static void restart_updates_stream_under_permissions(void **state)
{
    (void)state;
    rt_test_proc *second = NULL;
    int port = 0;

    /* Other retention: the stream already exists with other limits, so auth
     * goes through STREAM.UPDATE and finds its durable consumers. */
    assert_int_equal(start_auth(&second, &port, PW_AUTH, "EVENTS_MAX_AGE_S=86400"), RT_OK);
    rt_status s = rt_test_proc_wait_http(second, port, "/readyz", 200, 15000);
    if (s != RT_OK)
        fail_msg("second auth instance: %s", rt_error_message());
    assert_int_equal(rt_test_proc_stop(second, SIGTERM, 15000, NULL), RT_OK);
    rt_test_proc_destroy(second);

    rt_test_stack edge = as_client(&T.ws_edge);
    assert_true(rt_test_wait_authorize(&edge, "perm-user-1", ROLE(STUDENT), "course:pc1", true,
                                       5000, NULL));
}

static void ws_edge_publishes_events_through_jetstream(void **state)
{
    (void)state;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;

    jsPubOptions_Init(&po);
    po.MsgId = "perm-edge-evt-1";
    po.MaxWait = 5000;
    assert_int_equal(js_Publish(&ack, T.ws_edge.js, "evt.v1.progress.updated", "x", 1, &po, &jerr),
                     NATS_OK);
    assert_string_equal(ack->Stream, "EVENTS");
    jsPubAck_Destroy(ack);
}

/* analytics-aggregator as its own NATS user: creates its consumer, applies
 * what Django publishes, answers ws-edge's snapshot request, publishes to
 * rooms (checked by the violation scan at the end). */
static void analytics_aggregator_works_under_its_permissions(void **state)
{
    (void)state;
    char nats_url[160], db_url[256], port_env[32];
    int port = rt_test_free_port();
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", T.nats_url);
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(T.pg));
    snprintf(port_env, sizeof(port_env), "ADMIN_PORT=%d", port);
    const char *env[] = {nats_url,
                         "NATS_USER=analytics-aggregator",
                         "NATS_PASSWORD=" PW_ANALYTICS,
                         db_url,
                         port_env,
                         "ANALYTICS_REPLICA_ID=perm-agg",
                         "ANALYTICS_PARTITIONS=4",
                         "LOG_LEVEL=debug",
                         NULL};
    rt_test_proc *agg = NULL;
    assert_int_equal(rt_test_proc_start(&agg, "analytics-aggregator", NULL, env), RT_OK);
    assert_int_equal(rt_test_proc_wait_http(agg, port, "/readyz", 200, 15000), RT_OK);

    rt_test_stack django = as_client(&T.django);
    assert_int_equal(rt_test_publish_enrollment(&django, "perm-agg-1", "pc2", "perm-teacher",
                                                CHANGE(ADDED), MEMBER(INSTRUCTOR),
                                                rt_time_now_ms() / 1000),
                     RT_OK);
    assert_int_equal(rt_test_publish_enrollment(&django, "perm-agg-2", "pc2", "perm-student",
                                                CHANGE(ADDED), MEMBER(STUDENT),
                                                rt_time_now_ms() / 1000),
                     RT_OK);
    /* ws-edge asks for the course's snapshot until both are counted. */
    Unpuzzle__Rt__V1__SnapshotRequest req = UNPUZZLE__RT__V1__SNAPSHOT_REQUEST__INIT;
    req.course_id = "pc2";
    uint8_t buf[64];
    size_t len = unpuzzle__rt__v1__snapshot_request__pack(&req, buf);
    uint32_t enrolled = 0;
    for (int i = 0; i < 100 && enrolled != 1; i++) {
        natsMsg *reply = NULL;
        if (natsConnection_Request(&reply, T.ws_edge.nc, "analytics.v1.snapshot", buf, (int)len,
                                   2000) == NATS_OK) {
            Unpuzzle__Rt__V1__CourseMetrics *m =
                unpuzzle__rt__v1__course_metrics__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                         (const uint8_t *)natsMsg_GetData(reply));
            assert_non_null(m);
            assert_string_equal(m->course_id, "pc2");
            enrolled = m->enrolled_students;
            unpuzzle__rt__v1__course_metrics__free_unpacked(m, NULL);
            natsMsg_Destroy(reply);
        }
        if (enrolled != 1)
            sleep_ms(100);
    }
    assert_int_equal(enrolled, 1);
    rt_test_proc_destroy(agg);
}

static void every_service_user_connects(void **state)
{
    (void)state;
    const char *users[][2] = {{"auth", PW_AUTH},
                              {"ws-edge", PW_WS_EDGE},
                              {"analytics-aggregator", PW_ANALYTICS},
                              {"notification-dispatcher", PW_NOTIFY},
                              {"django", PW_DJANGO}};
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        natsConnection *nc = NULL;
        natsStatus s = connect_as(&nc, users[i][0], users[i][1], NULL);
        if (s != NATS_OK)
            fail_msg("user %s: %s", users[i][0], natsStatus_GetText(s));
        natsConnection_Destroy(nc);
    }
}

/* ---- the permissions bite ---- */

static void django_cannot_subscribe_to_auth(void **state)
{
    (void)state;
    client *dj = &T.django;
    natsSubscription *sub = NULL, *wild = NULL;
    natsMsg *msg = NULL;

    /* One at a time: the error callback reads the connection's last error. */
    assert_int_equal(natsConnection_SubscribeSync(&sub, dj->nc, "auth.v1.verify"), NATS_OK);
    natsConnection_Flush(dj->nc);
    if (!wait_error(dj, "Permissions Violation for Subscription to \"auth.v1.verify\"", 5000)) {
        print_errors(dj);
        fail_msg("no permission violation reported for django subscribing auth.v1.verify");
    }
    assert_int_equal(natsConnection_SubscribeSync(&wild, dj->nc, "auth.v1.>"), NATS_OK);
    natsConnection_Flush(dj->nc);
    if (!wait_error(dj, "Permissions Violation for Subscription to \"auth.v1.>\"", 5000)) {
        print_errors(dj);
        fail_msg("no permission violation reported for django subscribing auth.v1.>");
    }

    /* Requests still reach auth (and only auth): django sees none. */
    rt_test_stack edge = as_client(&T.ws_edge);
    char *token = rt_test_stack_token("perm-user-2", NULL);
    for (int i = 0; i < 3; i++) {
        Unpuzzle__Rt__V1__VerifyReply *v = NULL;
        assert_int_equal(rt_test_verify(&v, &edge, token), RT_OK);
        assert_true(v->ok);
        unpuzzle__rt__v1__verify_reply__free_unpacked(v, NULL);
    }
    free(token);
    assert_int_equal(natsSubscription_NextMsg(&msg, sub, 300), NATS_TIMEOUT);
    assert_int_equal(natsSubscription_NextMsg(&msg, wild, 300), NATS_TIMEOUT);
    natsSubscription_Destroy(sub);
    natsSubscription_Destroy(wild);
}

static void django_cannot_forge_invalidations(void **state)
{
    (void)state;
    client *dj = &T.django;
    natsSubscription *inval = NULL;
    natsMsg *msg = NULL;

    assert_int_equal(natsConnection_SubscribeSync(&inval, T.ws_edge.nc, "auth.v1.invalidated.>"),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(T.ws_edge.nc), NATS_OK);
    assert_int_equal(
        natsConnection_PublishString(dj->nc, "auth.v1.invalidated.enrollment", "forged"), NATS_OK);
    natsConnection_Flush(dj->nc);
    if (!wait_error(dj, "Permissions Violation for Publish to \"auth.v1.invalidated.enrollment\"",
                    5000)) {
        print_errors(dj);
        fail_msg("no permission violation for django publishing an invalidation");
    }
    assert_int_equal(natsSubscription_NextMsg(&msg, inval, 300), NATS_TIMEOUT);
    natsSubscription_Destroy(inval);
}

static void ws_edge_requests_verify_but_cannot_subscribe(void **state)
{
    (void)state;
    client *edge = &T.ws_edge;
    natsSubscription *plain = NULL, *queued = NULL;
    natsMsg *msg = NULL;

    assert_int_equal(natsConnection_SubscribeSync(&plain, edge->nc, "auth.v1.verify"), NATS_OK);
    natsConnection_Flush(edge->nc);
    if (!wait_error(edge, "Permissions Violation for Subscription to \"auth.v1.verify\"", 5000)) {
        print_errors(edge);
        fail_msg("no permission violation reported for ws-edge subscribing auth.v1.verify");
    }
    /* Joining auth's queue group would steal requests: denied as well. */
    assert_int_equal(
        natsConnection_QueueSubscribeSync(&queued, edge->nc, "auth.v1.authorize", "auth"), NATS_OK);
    natsConnection_Flush(edge->nc);
    if (!wait_error(edge,
                    "Permissions Violation for Subscription to \"auth.v1.authorize\" using queue",
                    5000)) {
        print_errors(edge);
        fail_msg("no permission violation reported for ws-edge joining queue group auth");
    }

    rt_test_stack st = as_client(edge);
    char *token = rt_test_stack_token("perm-user-3", NULL);
    for (int i = 0; i < 5; i++) {
        Unpuzzle__Rt__V1__VerifyReply *v = NULL;
        assert_int_equal(rt_test_verify(&v, &st, token), RT_OK);
        assert_true(v->ok);
        assert_string_equal(v->user_id, "perm-user-3");
        unpuzzle__rt__v1__verify_reply__free_unpacked(v, NULL);
        Unpuzzle__Rt__V1__AuthorizeReply *a = NULL;
        assert_int_equal(rt_test_authorize(&a, &st, "perm-user-1", ROLE(STUDENT), "course:pc1"),
                         RT_OK);
        assert_true(a->allowed);
        unpuzzle__rt__v1__authorize_reply__free_unpacked(a, NULL);
    }
    free(token);
    assert_int_equal(natsSubscription_NextMsg(&msg, plain, 300), NATS_TIMEOUT);
    assert_int_equal(natsSubscription_NextMsg(&msg, queued, 300), NATS_TIMEOUT);
    natsSubscription_Destroy(plain);
    natsSubscription_Destroy(queued);
}

static void ws_edge_cannot_publish_into_inboxes(void **state)
{
    (void)state;
    client *edge = &T.ws_edge;
    natsSubscription *victim = NULL;
    natsMsg *msg = NULL;

    /* A forged reply into someone else's inbox never arrives. */
    assert_int_equal(natsConnection_SubscribeSync(&victim, T.django.nc, "_INBOX.victim.1"),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(T.django.nc), NATS_OK);
    assert_int_equal(natsConnection_PublishString(edge->nc, "_INBOX.victim.1", "forged"), NATS_OK);
    natsConnection_Flush(edge->nc);
    if (!wait_error(edge, "Permissions Violation for Publish to \"_INBOX.victim.1\"", 5000)) {
        print_errors(edge);
        fail_msg("no permission violation for ws-edge publishing into an inbox");
    }
    assert_int_equal(natsSubscription_NextMsg(&msg, victim, 300), NATS_TIMEOUT);
    natsSubscription_Destroy(victim);
}

static void wrong_password_refused(void **state)
{
    (void)state;
    natsConnection *nc = NULL;

    assert_int_not_equal(connect_as(&nc, "auth", "pWrongPassword", NULL), NATS_OK);
    assert_null(nc);
    /* Another service's password is not auth's. */
    assert_int_not_equal(connect_as(&nc, "auth", PW_DJANGO, NULL), NATS_OK);
    assert_int_not_equal(connect_as(&nc, "nobody", PW_AUTH, NULL), NATS_OK);
    assert_int_not_equal(connect_as(&nc, NULL, NULL, NULL), NATS_OK);
    /* The right one works (the refusals are about the password). */
    assert_int_equal(connect_as(&nc, "auth", PW_AUTH, NULL), NATS_OK);
    natsConnection_Destroy(nc);
}

/* The auth binary with a wrong NATS password never becomes ready: it stays
 * up not ready, or gives up and exits non-zero (nats.c closes a connection
 * after repeated authorization violations; which one happens first is a
 * race in auth's start), but never serves. */
static void auth_with_wrong_password_never_ready(void **state)
{
    (void)state;
    rt_test_proc *bad = NULL;
    int port = 0, status = 0;

    assert_int_equal(start_auth(&bad, &port, "pWrongPassword", NULL), RT_OK);
    rt_status s = rt_test_proc_wait_http(bad, port, "/readyz", 200, 3000);
    if (s == RT_OK)
        fail_msg("auth became ready with a wrong NATS password");
    if (rt_test_proc_running(bad)) {
        assert_int_equal(s, RT_ERR_TIMEOUT);
        assert_int_equal(rt_test_http_get(&status, NULL, port, "/readyz", 2000), RT_OK);
        assert_int_not_equal(status, 200);
    }
    int exit_status = 0;
    assert_int_equal(rt_test_proc_stop(bad, SIGTERM, 15000, &exit_status), RT_OK);
    rt_test_proc_destroy(bad);

    char *log = read_file(rt_test_proc_log_path(T.nats));
    assert_non_null(log);
    assert_non_null(strstr(log, "authentication error - User \"auth\""));
    free(log);
}

/* Last: across everything above, nats-server never refused auth or the
 * analytics-aggregator anything
 * (a missing JetStream API permission would show up here first). */
static void auth_had_no_permission_violation(void **state)
{
    (void)state;
    natsConnection_Flush(T.ws_edge.nc);
    sleep_ms(200);
    char *log = read_file(rt_test_proc_log_path(T.nats));
    assert_non_null(log);
    /* The other users' violations above must be in the log: the check sees them. */
    assert_non_null(strstr(log, "User \"django\""));
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, "Violation") &&
            (strstr(line, "User \"auth\"") || strstr(line, "User \"analytics-aggregator\"")))
            fail_msg("nats-server refused a service: %s", line);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_and_authorize_as_ws_edge),
        cmocka_unit_test(enrollment_from_django_takes_effect),
        cmocka_unit_test(restart_updates_stream_under_permissions),
        cmocka_unit_test(ws_edge_publishes_events_through_jetstream),
        cmocka_unit_test(analytics_aggregator_works_under_its_permissions),
        cmocka_unit_test(every_service_user_connects),
        cmocka_unit_test(django_cannot_subscribe_to_auth),
        cmocka_unit_test(django_cannot_forge_invalidations),
        cmocka_unit_test(ws_edge_requests_verify_but_cannot_subscribe),
        cmocka_unit_test(ws_edge_cannot_publish_into_inboxes),
        cmocka_unit_test(wrong_password_refused),
        cmocka_unit_test(auth_with_wrong_password_never_ready),
        cmocka_unit_test(auth_had_no_permission_violation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
