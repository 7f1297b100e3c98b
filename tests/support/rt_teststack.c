#include "rt_teststack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_alloc.h"
#include "rt_time.h"

rt_status rt_test_stack_start(rt_test_stack **out)
{
    rt_test_stack *st = rt_calloc(1, sizeof(*st));
    rt_status s;

    if ((s = rt_test_nats_start(&st->nats, NULL)) != RT_OK ||
        (s = rt_test_pg_start(&st->pg)) != RT_OK || (s = rt_test_pg_migrate(st->pg)) != RT_OK ||
        (s = rt_testkeys_create(&st->keys, "rsa-test-1", "ec-test-1")) != RT_OK)
        goto fail;
    st->dir = rt_test_tmpdir("stack");
    st->jwks_path = rt_asprintf("%s/jwks.json", st->dir);
    if ((s = rt_testkeys_write_jwks(st->keys, st->jwks_path)) != RT_OK ||
        (s = rt_test_stack_connect(st)) != RT_OK)
        goto fail;
    *out = st;
    return RT_OK;
fail:
    rt_test_stack_destroy(st);
    return s;
}

rt_status rt_test_stack_connect(rt_test_stack *st)
{
    natsOptions *opts = NULL;
    natsStatus ns;

    if (st->js) {
        jsCtx_Destroy(st->js);
        st->js = NULL;
    }
    if (st->nc) {
        natsConnection_Destroy(st->nc);
        st->nc = NULL;
    }
    ns = natsOptions_Create(&opts);
    if (ns == NATS_OK)
        ns = natsOptions_SetURL(opts, rt_test_nats_url(st->nats));
    if (ns == NATS_OK)
        ns = natsOptions_SetMaxReconnect(opts, -1);
    if (ns == NATS_OK)
        ns = natsOptions_SetReconnectWait(opts, 100);
    if (ns == NATS_OK)
        ns = natsConnection_Connect(&st->nc, opts);
    natsOptions_Destroy(opts);
    if (ns == NATS_OK)
        ns = natsConnection_JetStream(&st->js, st->nc, NULL);
    if (ns != NATS_OK)
        return RT_ERR(RT_ERR_NATS, "test client connect: %s", natsStatus_GetText(ns));
    return RT_OK;
}

rt_status rt_test_stack_start_auth(rt_test_stack *st, const char *const *extra_env)
{
    char nats_url[128], db_url[256], port[32], jwks[512];
    const char *env[32];
    size_t n = 0;
    rt_status s;

    st->auth_admin_port = rt_test_free_port();
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", rt_test_nats_url(st->nats));
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(st->pg));
    snprintf(port, sizeof(port), "ADMIN_PORT=%d", st->auth_admin_port);
    snprintf(jwks, sizeof(jwks), "SUPABASE_JWKS_FILE=%s", st->jwks_path);
    env[n++] = nats_url;
    env[n++] = db_url;
    env[n++] = port;
    env[n++] = jwks;
    env[n++] = "SUPABASE_JWT_SECRET=" RT_TEST_JWT_SECRET;
    env[n++] = "LOG_LEVEL=debug";
    /* Later entries win (rt_test_proc_start), so the caller's override ours. */
    for (size_t i = 0; extra_env && extra_env[i] && n < 31; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    if ((s = rt_test_proc_start(&st->auth, "auth", NULL, env)) != RT_OK)
        return s;
    return rt_test_proc_wait_http(st->auth, st->auth_admin_port, "/readyz", 200, 15000);
}

rt_status rt_test_stack_start_edge(rt_test_stack *st, const char *const *extra_env, int *index)
{
    char nats_url[128], port[32], edge_id[48];
    const char *env[40];
    size_t n = 0;
    rt_status s;

    if (st->n_edges == RT_TEST_MAX_EDGES)
        return RT_ERR(RT_ERR_LIMIT, "at most %d edges per stack", RT_TEST_MAX_EDGES);
    rt_test_edge *e = &st->edges[st->n_edges];
    memset(e, 0, sizeof(*e));
    e->port = rt_test_free_port();
    snprintf(e->edge_id, sizeof(e->edge_id), "edge-%d", st->n_edges);
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", rt_test_nats_url(st->nats));
    snprintf(port, sizeof(port), "WS_PORT=%d", e->port);
    snprintf(edge_id, sizeof(edge_id), "EDGE_ID=%s", e->edge_id);
    env[n++] = nats_url;
    env[n++] = port;
    env[n++] = edge_id;
    env[n++] = "WS_ALLOWED_ORIGINS=http://localhost:3000";
    env[n++] = "WS_THREADS=2";
    env[n++] = "LOG_LEVEL=debug";
    for (size_t i = 0; extra_env && extra_env[i] && n < 39; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    if ((s = rt_test_proc_start(&e->proc, "ws-edge", NULL, env)) != RT_OK)
        return s;
    if (index)
        *index = st->n_edges;
    st->n_edges++; /* destroyed with the stack even if it never got ready */
    return rt_test_proc_wait_http(e->proc, e->port, "/readyz", 200, 15000);
}

rt_status rt_test_stack_start_edges(rt_test_stack *st, int n, const char *const *extra_env)
{
    for (int i = 0; i < n; i++) {
        rt_status s = rt_test_stack_start_edge(st, extra_env, NULL);
        if (s != RT_OK)
            return s;
    }
    return RT_OK;
}

/* rt_test_publish_room through any JetStream context, waiting up to
 * max_wait_ms for the ack. */
static rt_status publish_room_js(uint64_t *seq, bool *duplicate, jsCtx *js, int max_wait_ms,
                                 const char *room, const Unpuzzle__Rt__V1__RoomMessage *msg)
{
    char subject[160];
    const char *colon = strchr(room, ':');
    size_t len = protobuf_c_message_get_packed_size(&msg->base);
    uint8_t *buf;
    jsPubOptions po;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus ns;

    if (!colon)
        return RT_ERR(RT_ERR_INVALID_ARG, "room '%s' has no kind", room);
    snprintf(subject, sizeof(subject), "rt.v1.room.%.*s.%s", (int)(colon - room), room, colon + 1);
    buf = rt_malloc(len + 1);
    protobuf_c_message_pack(&msg->base, buf);
    jsPubOptions_Init(&po);
    if (msg->event_id && msg->event_id[0])
        po.MsgId = msg->event_id;
    po.MaxWait = max_wait_ms;
    ns = js_Publish(&ack, js, subject, buf, (int)len, &po, &jerr);
    free(buf);
    if (ns != NATS_OK)
        return RT_ERR(RT_ERR_NATS, "publish %s: %s (%d)", subject, natsStatus_GetText(ns),
                      (int)jerr);
    if (seq)
        *seq = ack->Sequence;
    if (duplicate)
        *duplicate = ack->Duplicate;
    jsPubAck_Destroy(ack);
    return RT_OK;
}

rt_status rt_test_publish_room(uint64_t *seq, bool *duplicate, rt_test_stack *st, const char *room,
                               const Unpuzzle__Rt__V1__RoomMessage *msg)
{
    return publish_room_js(seq, duplicate, st->js, 5000, room, msg);
}

static rt_status publish_confusion_js(uint64_t *seq, bool *duplicate, jsCtx *js, int max_wait_ms,
                                      const char *room, const char *event_id, const char *user_id,
                                      const char *text)
{
    Unpuzzle__Rt__V1__RoomMessage msg = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__ConfusionCreated cc = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    int64_t now_ms = rt_time_now_ms();
    const char *colon = strchr(room, ':');

    ts.seconds = now_ms / 1000;
    ts.nanos = (int32_t)(now_ms % 1000) * 1000000;
    cc.event_id = (char *)event_id;
    cc.occurred_at = &ts;
    cc.confusion_id = (char *)event_id;
    cc.course_id = (char *)(colon ? colon + 1 : room);
    cc.lesson_id = "l1";
    cc.user_id = (char *)user_id;
    cc.video_timestamp_sec = 12.5;
    cc.text = (char *)text;
    msg.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_CONFUSION;
    msg.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_CREATE;
    msg.timestamp = &ts;
    msg.user_id = (char *)user_id;
    msg.event_id = (char *)event_id;
    msg.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED;
    msg.confusion_created = &cc;
    return publish_room_js(seq, duplicate, js, max_wait_ms, room, &msg);
}

rt_status rt_test_publish_room_confusion(uint64_t *seq, rt_test_stack *st, const char *room,
                                         const char *event_id, const char *user_id,
                                         const char *text)
{
    return publish_confusion_js(seq, NULL, st->js, 5000, room, event_id, user_id, text);
}

rt_status rt_test_publish_room_confusion_js(uint64_t *seq, bool *duplicate, jsCtx *js,
                                            int max_wait_ms, const char *room, const char *event_id,
                                            const char *user_id, const char *text)
{
    return publish_confusion_js(seq, duplicate, js, max_wait_ms, room, event_id, user_id, text);
}

void rt_test_stack_destroy(rt_test_stack *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n_edges; i++)
        rt_test_proc_destroy(st->edges[i].proc);
    rt_test_proc_destroy(st->auth);
    jsCtx_Destroy(st->js);
    natsConnection_Destroy(st->nc);
    rt_test_nats_destroy(st->nats);
    rt_test_pg_destroy(st->pg);
    rt_testkeys_destroy(st->keys);
    rt_test_rmtree(st->dir);
    free(st->dir);
    free(st->jwks_path);
    free(st);
}

char *rt_test_stack_token(const char *sub, const char *app_role)
{
    int64_t now = rt_time_now_ms() / 1000;
    char *claims = rt_testtoken_claims(sub, app_role, "session-1", now, now + 3600);
    char *token = NULL;
    rt_testtoken_mint(&token, "HS256", RT_TEST_JWT_SECRET, NULL, claims);
    free(claims);
    return token;
}

static rt_status request(natsMsg **reply, rt_test_stack *st, const char *subject,
                         const ProtobufCMessage *req)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = rt_malloc(len + 1);
    protobuf_c_message_pack(req, buf);
    natsStatus ns = natsConnection_Request(reply, st->nc, subject, buf, (int)len, 5000);
    free(buf);
    if (ns != NATS_OK)
        return RT_ERR(RT_ERR_NATS, "%s: %s", subject, natsStatus_GetText(ns));
    return RT_OK;
}

rt_status rt_test_verify(Unpuzzle__Rt__V1__VerifyReply **out, rt_test_stack *st, const char *token)
{
    Unpuzzle__Rt__V1__VerifyRequest req = UNPUZZLE__RT__V1__VERIFY_REQUEST__INIT;
    natsMsg *reply = NULL;
    rt_status s;

    req.token = (char *)token;
    if ((s = request(&reply, st, "auth.v1.verify", &req.base)) != RT_OK)
        return s;
    *out = unpuzzle__rt__v1__verify_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                  (const uint8_t *)natsMsg_GetData(reply));
    natsMsg_Destroy(reply);
    return *out ? RT_OK : RT_ERR(RT_ERR_DECODE, "reply is not a VerifyReply");
}

rt_status rt_test_authorize(Unpuzzle__Rt__V1__AuthorizeReply **out, rt_test_stack *st,
                            const char *user_id, Unpuzzle__Rt__V1__Role role, const char *room)
{
    Unpuzzle__Rt__V1__AuthorizeRequest req = UNPUZZLE__RT__V1__AUTHORIZE_REQUEST__INIT;
    natsMsg *reply = NULL;
    rt_status s;

    req.user_id = (char *)user_id;
    req.role = role;
    req.room = (char *)room;
    if ((s = request(&reply, st, "auth.v1.authorize", &req.base)) != RT_OK)
        return s;
    *out = unpuzzle__rt__v1__authorize_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                     (const uint8_t *)natsMsg_GetData(reply));
    natsMsg_Destroy(reply);
    return *out ? RT_OK : RT_ERR(RT_ERR_DECODE, "reply is not an AuthorizeReply");
}

rt_status rt_test_publish_event(rt_test_stack *st, const char *subject,
                                const ProtobufCMessage *event, const char *event_id)
{
    size_t len = protobuf_c_message_get_packed_size(event);
    uint8_t *buf = rt_malloc(len + 1);
    jsPubOptions po;
    jsErrCode jerr = 0;
    natsStatus ns;

    protobuf_c_message_pack(event, buf);
    jsPubOptions_Init(&po);
    po.MsgId = event_id;
    po.MaxWait = 5000;
    ns = js_Publish(NULL, st->js, subject, buf, (int)len, &po, &jerr);
    free(buf);
    if (ns != NATS_OK)
        return RT_ERR(RT_ERR_NATS, "publish %s: %s (%d)", subject, natsStatus_GetText(ns),
                      (int)jerr);
    return RT_OK;
}

rt_status rt_test_publish_enrollment(rt_test_stack *st, const char *event_id, const char *course_id,
                                     const char *user_id, Unpuzzle__Rt__V1__EnrollmentChange change,
                                     Unpuzzle__Rt__V1__MemberRole role, int64_t occurred_s)
{
    Unpuzzle__Rt__V1__EnrollmentChanged e = UNPUZZLE__RT__V1__ENROLLMENT_CHANGED__INIT;
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    t.seconds = occurred_s;
    e.event_id = (char *)event_id;
    e.occurred_at = &t;
    e.course_id = (char *)course_id;
    e.user_id = (char *)user_id;
    e.change = change;
    e.role = role;
    return rt_test_publish_event(st, "evt.v1.enrollment.changed", &e.base, event_id);
}

rt_status rt_test_publish_lesson(rt_test_stack *st, const char *event_id, const char *lesson_id,
                                 const char *course_id, bool deleted, int64_t occurred_s)
{
    Unpuzzle__Rt__V1__LessonUpserted e = UNPUZZLE__RT__V1__LESSON_UPSERTED__INIT;
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    t.seconds = occurred_s;
    e.event_id = (char *)event_id;
    e.occurred_at = &t;
    e.lesson_id = (char *)lesson_id;
    e.course_id = (char *)course_id;
    e.deleted = deleted;
    return rt_test_publish_event(st, "evt.v1.lesson.upserted", &e.base, event_id);
}

bool rt_test_wait_authorize(rt_test_stack *st, const char *user_id, Unpuzzle__Rt__V1__Role role,
                            const char *room, bool allowed, int timeout_ms, int *elapsed_ms)
{
    uint64_t start = rt_time_mono_ns();
    for (;;) {
        Unpuzzle__Rt__V1__AuthorizeReply *r = NULL;
        bool match = false;
        if (rt_test_authorize(&r, st, user_id, role, room) == RT_OK) {
            match = r->allowed == allowed;
            unpuzzle__rt__v1__authorize_reply__free_unpacked(r, NULL);
        }
        int elapsed = (int)((rt_time_mono_ns() - start) / 1000000);
        if (match || elapsed >= timeout_ms) {
            if (elapsed_ms)
                *elapsed_ms = elapsed;
            return match;
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}
