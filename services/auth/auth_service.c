#include "auth_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_cache.h"
#include "auth_jwt.h"
#include "auth_keys.h"
#include "auth_members.h"
#include "auth_rooms.h"
#include "auth_store.h"
#include "rt_alloc.h"
#include "rt_consumer.h"
#include "rt_log.h"
#include "rt_nats.h"
#include "rt_pg.h"
#include "rt_proto.h"
#include "rt_time.h"
#include "rt_workers.h"

#define VERR(x) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##x
#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x

/* ---- configuration ---- */

const rt_config_var auth_config_vars[] = {
    RT_CFG_NATS_VARS(auth_config),
    RT_CFG_STR(auth_config, database_url, "DATABASE_URL", NULL, RT_CFG_REQUIRED,
               rt_config_check_postgres_url, "PostgreSQL connection URL"),
    RT_CFG_INT(auth_config, admin_port, "ADMIN_PORT", "9101", 0, 0, 65535,
               "port of /healthz, /readyz, /metrics (0 picks a free port)"),
    RT_CFG_STR(auth_config, log_level, "LOG_LEVEL", "info", 0, rt_config_check_log_level,
               "debug, info, warn or error"),
    RT_CFG_STR(auth_config, jwt_secret, "SUPABASE_JWT_SECRET", "", RT_CFG_SECRET, NULL,
               "HS256 secret of the Supabase project (HS256 tokens)"),
    RT_CFG_STR(auth_config, jwks_file, "SUPABASE_JWKS_FILE", "", 0, rt_config_check_optional_file,
               "JWKS file with the RS256/ES256 public keys (re-read on SIGHUP)"),
    RT_CFG_INT(auth_config, jwt_leeway_s, "JWT_LEEWAY_S", "30", 0, 0, 300,
               "clock skew allowed on exp, nbf and iat, seconds"),
    RT_CFG_STR(auth_config, jwt_audience, "JWT_AUDIENCE", "authenticated", 0, NULL,
               "required aud claim"),
    RT_CFG_STR(auth_config, jwt_issuer, "JWT_ISSUER", "", 0, NULL,
               "required iss claim (unset: not checked)"),
    RT_CFG_INT(auth_config, workers, "AUTH_WORKERS", "4", 0, 1, 256,
               "threads verifying tokens and querying PostgreSQL"),
    RT_CFG_INT(auth_config, queue_max, "AUTH_QUEUE_MAX", "10000", 0, 1, 1000000,
               "requests waiting for a worker before new ones are refused"),
    RT_CFG_INT(auth_config, pg_pool_size, "PG_POOL_SIZE", "4", 0, 1, 64, "PostgreSQL connections"),
    RT_CFG_INT(auth_config, db_timeout_ms, "DB_TIMEOUT_MS", "1000", 0, 10, 60000,
               "longest wait for a PostgreSQL connection"),
    RT_CFG_INT(auth_config, authz_cache_ttl_ms, "AUTHZ_CACHE_TTL_MS", "30000", 0, 0, 3600000,
               "how long a room decision is remembered (0: never)"),
    RT_CFG_INT(auth_config, role_cache_ttl_ms, "ROLE_CACHE_TTL_MS", "30000", 0, 0, 3600000,
               "how long a user's platform role is remembered (0: never)"),
    RT_CFG_INT(auth_config, cache_max_users, "AUTH_CACHE_MAX_USERS", "100000", 0, 1, 10000000,
               "users kept in the decision cache"),
    RT_CFG_INT(auth_config, course_set_max, "AUTH_COURSE_SET_MAX", "100000", 0, 0, 10000000,
               "members of a course loaded at once into memory (bigger: asked per user)"),
    RT_CFG_INT(auth_config, role_table_max, "AUTH_ROLE_TABLE_MAX", "1000000", 0, 0, 100000000,
               "rows of realtime.user_roles held in memory (bigger: asked per user)"),
    RT_CFG_INT(auth_config, events_max_age_s, "EVENTS_MAX_AGE_S", "604800", 0, 60, 31536000,
               "retention of the EVENTS stream, seconds"),
    RT_CFG_INT(auth_config, events_duplicate_window_s, "EVENTS_DUPLICATE_WINDOW_S", "120", 0, 1,
               86400, "JetStream dedupe window of Nats-Msg-Id, seconds"),
    RT_CFG_INT(auth_config, drain_ms, "AUTH_DRAIN_MS", "5000", 0, 0, 600000,
               "longest time to finish in-flight requests on SIGTERM"),
};
const size_t auth_config_var_count = sizeof(auth_config_vars) / sizeof(auth_config_vars[0]);

/* ---- service state ---- */

typedef enum request_kind { REQUEST_VERIFY, REQUEST_AUTHORIZE } request_kind;

typedef struct request {
    natsMsg *msg;
    request_kind kind;
    uint64_t received_ns;
} request;

struct auth_service {
    const auth_config *config;
    rt_metrics *metrics;
    auth_jwt_rules rules;

    pthread_rwlock_t keys_lock;
    auth_keyset *keys;

    rt_pg_pool *pool;
    auth_store *store;
    auth_membership_source source;
    auth_cache *cache;
    auth_members *members;
    uint64_t roles_loaded_ns; /* when the role table was last loaded (0: never) */
    rt_workers *workers;
    rt_nats *nats;
    natsSubscription *sub_verify, *sub_authorize, *sub_inval_enrollment, *sub_inval_lesson;
    rt_consumer *consumer_enrollments, *consumer_lessons;
    bool stream_ready;
    atomic_bool draining;

    rt_counter *verify_result[VERR(UNAVAILABLE) + 1];
    rt_counter *authorize_result[DENY(INTERNAL) + 1];
    rt_histogram *verify_seconds, *authorize_seconds;
    rt_counter *cache_hit, *cache_miss;
    rt_counter *events_applied, *events_invalid, *events_retried;
    rt_counter *overloaded, *bad_requests;
};

/* ---- replies ---- */

static void reply(auth_service *svc, natsMsg *msg, const ProtobufCMessage *body)
{
    const char *to = natsMsg_GetReply(msg);
    uint8_t stack[512];
    size_t len = protobuf_c_message_get_packed_size(body);
    uint8_t *buf = len <= sizeof(stack) ? stack : rt_malloc(len);

    if (!to || !*to)
        goto out; /* a publish without reply subject: nobody to answer */
    protobuf_c_message_pack(body, buf);
    natsStatus s = natsConnection_Publish(rt_nats_connection(svc->nats), to, buf, (int)len);
    if (s != NATS_OK)
        rt_log_warn("reply not sent", "{s:s}", "error", natsStatus_GetText(s));
out:
    if (buf != stack)
        free(buf);
}

static void reply_verify_error(auth_service *svc, natsMsg *msg, auth_verify_error error,
                               const char *message)
{
    Unpuzzle__Rt__V1__VerifyReply r = UNPUZZLE__RT__V1__VERIFY_REPLY__INIT;
    r.ok = false;
    r.error = error;
    r.message = (char *)message;
    if ((size_t)error < sizeof(svc->verify_result) / sizeof(svc->verify_result[0]))
        rt_counter_inc(svc->verify_result[error]);
    reply(svc, msg, &r.base);
}

static void reply_authorize(auth_service *svc, natsMsg *msg, auth_decision d, const char *message)
{
    Unpuzzle__Rt__V1__AuthorizeReply r = UNPUZZLE__RT__V1__AUTHORIZE_REPLY__INIT;
    r.allowed = d.allowed;
    r.reason = d.reason;
    r.message = (char *)(message ? message : "");
    r.course_id = d.course_id;
    r.member_role = d.member_role;
    if ((size_t)d.reason < sizeof(svc->authorize_result) / sizeof(svc->authorize_result[0]))
        rt_counter_inc(svc->authorize_result[d.reason]);
    reply(svc, msg, &r.base);
}

/* ---- verify ---- */

static auth_role role_from_text(const char *text)
{
    if (strcmp(text, "admin") == 0)
        return ROLE(ADMIN);
    if (strcmp(text, "instructor") == 0)
        return ROLE(INSTRUCTOR);
    return ROLE(STUDENT);
}

/* Platform role: realtime.user_roles, else the token's app_metadata.role,
 * else student. Fails closed when the table cannot be read. */
static rt_status resolve_role(auth_role *out, auth_service *svc, const auth_claims *claims)
{
    uint64_t now = rt_time_mono_ns();
    bool from_db = false, found = false;
    auth_role role = ROLE(STUDENT);

    if (auth_members_role(svc->members, claims->sub, &role, &found)) {
        *out =
            found ? role : (claims->app_role[0] ? role_from_text(claims->app_role) : ROLE(STUDENT));
        return RT_OK;
    }
    if (auth_cache_get_role(svc->cache, claims->sub, &role, &from_db, now)) {
        rt_counter_inc(svc->cache_hit);
        *out = from_db ? role
                       : (claims->app_role[0] ? role_from_text(claims->app_role) : ROLE(STUDENT));
        return RT_OK;
    }
    rt_counter_inc(svc->cache_miss);
    uint64_t generation = auth_cache_generation(svc->cache);
    rt_status s = auth_store_user_role(&role, &found, svc->store, claims->sub);
    if (s != RT_OK)
        return s;
    if (svc->config->role_cache_ttl_ms > 0)
        auth_cache_put_role(svc->cache, claims->sub, role, found,
                            now + (uint64_t)svc->config->role_cache_ttl_ms * 1000000u, generation);
    *out = found ? role : (claims->app_role[0] ? role_from_text(claims->app_role) : ROLE(STUDENT));
    return RT_OK;
}

static void handle_verify(auth_service *svc, natsMsg *msg)
{
    Unpuzzle__Rt__V1__VerifyRequest *req = unpuzzle__rt__v1__verify_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    Unpuzzle__Rt__V1__VerifyReply r = UNPUZZLE__RT__V1__VERIFY_REPLY__INIT;
    Google__Protobuf__Timestamp expires = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    auth_claims claims;
    char detail[160] = "";
    auth_verify_error err;

    if (!req) {
        rt_counter_inc(svc->bad_requests);
        reply_verify_error(svc, msg, VERR(MALFORMED), "request is not a VerifyRequest");
        return;
    }
    pthread_rwlock_rdlock(&svc->keys_lock);
    err = auth_jwt_verify(&claims, svc->keys, &svc->rules, req->token, strlen(req->token),
                          rt_time_now_ms() / 1000, detail, sizeof(detail));
    pthread_rwlock_unlock(&svc->keys_lock);
    unpuzzle__rt__v1__verify_request__free_unpacked(req, NULL);
    if (err != VERR(UNSPECIFIED)) {
        rt_log_debug("token refused", "{s:s, s:s}", "reason", auth_verify_error_name(err), "detail",
                     detail);
        reply_verify_error(svc, msg, err, detail[0] ? detail : auth_verify_error_name(err));
        return;
    }
    auth_role role;
    if (resolve_role(&role, svc, &claims) != RT_OK) {
        rt_log_warn("role lookup failed; refusing the token for now", "{s:s}", "error",
                    rt_error_message());
        reply_verify_error(svc, msg, VERR(UNAVAILABLE), "role store unavailable; try again");
        return;
    }
    r.ok = true;
    r.user_id = claims.sub;
    r.role = role;
    expires.seconds = claims.exp;
    r.expires_at = &expires;
    r.session_id = claims.session_id;
    r.message = "";
    rt_counter_inc(svc->verify_result[VERR(UNSPECIFIED)]);
    reply(svc, msg, &r.base);
}

/* ---- authorize ---- */

static void handle_authorize(auth_service *svc, natsMsg *msg)
{
    Unpuzzle__Rt__V1__AuthorizeRequest *req = unpuzzle__rt__v1__authorize_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    auth_decision d;
    uint64_t now = rt_time_mono_ns();

    if (!req) {
        rt_counter_inc(svc->bad_requests);
        reply_authorize(svc, msg, (auth_decision){.allowed = false, .reason = DENY(INTERNAL)},
                        "request is not an AuthorizeRequest");
        return;
    }
    if (auth_cache_get_decision(svc->cache, req->user_id, req->room, &d, now)) {
        rt_counter_inc(svc->cache_hit);
    } else {
        rt_counter_inc(svc->cache_miss);
        uint64_t generation = auth_cache_generation(svc->cache);
        d = auth_rooms_decide(&svc->source, req->user_id, req->role, req->room);
        /* Failures to reach the database are never remembered. */
        if (d.reason != DENY(UNAVAILABLE) && d.reason != DENY(INTERNAL) &&
            svc->config->authz_cache_ttl_ms > 0)
            auth_cache_put_decision(svc->cache, req->user_id, req->room, d,
                                    now + (uint64_t)svc->config->authz_cache_ttl_ms * 1000000u,
                                    generation);
    }
    if (d.reason == DENY(UNAVAILABLE))
        rt_log_warn("membership store unavailable; denying", "{s:s}", "room", req->room);
    unpuzzle__rt__v1__authorize_request__free_unpacked(req, NULL);
    reply_authorize(svc, msg, d, d.allowed ? "" : auth_deny_reason_name(d.reason));
}

/* ---- NATS side ---- */

static void run_request(void *arg, void *item)
{
    auth_service *svc = arg;
    request *req = item;

    if (req->kind == REQUEST_VERIFY) {
        handle_verify(svc, req->msg);
        rt_histogram_observe(svc->verify_seconds,
                             (double)(rt_time_mono_ns() - req->received_ns) / 1e9);
    } else {
        handle_authorize(svc, req->msg);
        rt_histogram_observe(svc->authorize_seconds,
                             (double)(rt_time_mono_ns() - req->received_ns) / 1e9);
    }
    natsMsg_Destroy(req->msg);
    free(req);
}

static void discard_request(void *arg, void *item)
{
    (void)arg;
    request *req = item;
    natsMsg_Destroy(req->msg);
    free(req);
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    auth_service *svc = closure;
    request *req = rt_malloc(sizeof(*req));
    (void)nc;

    req->msg = msg;
    req->kind = sub == svc->sub_verify ? REQUEST_VERIFY : REQUEST_AUTHORIZE;
    req->received_ns = rt_time_mono_ns();
    if (rt_workers_submit(svc->workers, req) == RT_OK)
        return;
    /* Full queue: answer at once so the caller can retry elsewhere. */
    rt_counter_inc(svc->overloaded);
    if (req->kind == REQUEST_VERIFY)
        reply_verify_error(svc, msg, VERR(INTERNAL), "auth overloaded; try again");
    else
        reply_authorize(svc, msg, (auth_decision){.allowed = false, .reason = DENY(UNAVAILABLE)},
                        "auth overloaded; try again");
    natsMsg_Destroy(msg);
    free(req);
}

static void on_invalidation(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    auth_service *svc = closure;
    (void)nc;

    if (sub == svc->sub_inval_enrollment) {
        Unpuzzle__Rt__V1__EnrollmentChanged *e = unpuzzle__rt__v1__enrollment_changed__unpack(
            NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
        if (e) {
            auth_cache_drop_user(svc->cache, e->user_id);
            auth_members_drop_course(svc->members, e->course_id);
            unpuzzle__rt__v1__enrollment_changed__free_unpacked(e, NULL);
        }
    } else {
        auth_cache_drop_rooms_with_prefix(svc->cache, "lesson:");
    }
    natsMsg_Destroy(msg);
}

/* Consumer handler: decode, validate, apply the batch in one transaction,
 * ack only after the commit, then tell every instance to drop its cache. */
static void on_membership_events(void *arg, natsMsg **msgs, int n, rt_msg_verdict *verdicts)
{
    auth_service *svc = arg;
    auth_store_change *changes = rt_calloc((size_t)n, sizeof(*changes));
    int *index = rt_calloc((size_t)n, sizeof(int));
    size_t n_changes = 0;

    for (int i = 0; i < n; i++) {
        const char *subject = natsMsg_GetSubject(msgs[i]);
        size_t len = (size_t)natsMsg_GetDataLength(msgs[i]);
        const uint8_t *data = (const uint8_t *)natsMsg_GetData(msgs[i]);
        auth_store_change c = {0};
        char why[128] = "not decodable";

        if (strcmp(subject, "evt.v1.enrollment.changed") == 0)
            c.enrollment = unpuzzle__rt__v1__enrollment_changed__unpack(NULL, len, data);
        else if (strcmp(subject, "evt.v1.lesson.upserted") == 0)
            c.lesson = unpuzzle__rt__v1__lesson_upserted__unpack(NULL, len, data);
        if ((c.enrollment || c.lesson) && auth_store_change_valid(&c, why, sizeof(why))) {
            index[n_changes] = i;
            changes[n_changes++] = c;
            continue;
        }
        rt_log_error("invalid membership event", "{s:s, s:s}", "subject", subject, "reason", why);
        rt_counter_inc(svc->events_invalid);
        verdicts[i] = RT_MSG_TERM;
        if (c.enrollment)
            unpuzzle__rt__v1__enrollment_changed__free_unpacked(
                (Unpuzzle__Rt__V1__EnrollmentChanged *)c.enrollment, NULL);
        if (c.lesson)
            unpuzzle__rt__v1__lesson_upserted__free_unpacked(
                (Unpuzzle__Rt__V1__LessonUpserted *)c.lesson, NULL);
    }

    rt_status s = auth_store_apply(svc->store, changes, n_changes);
    for (size_t k = 0; k < n_changes; k++) {
        int i = index[k];
        if (s == RT_OK) {
            verdicts[i] = RT_MSG_ACK;
            rt_counter_inc(svc->events_applied);
            natsConnection_Publish(rt_nats_connection(svc->nats),
                                   changes[k].enrollment ? AUTH_SUBJECT_INVALIDATED_ENROLLMENT
                                                         : AUTH_SUBJECT_INVALIDATED_LESSON,
                                   natsMsg_GetData(msgs[i]), natsMsg_GetDataLength(msgs[i]));
        } else {
            verdicts[i] = RT_MSG_NAK;
            rt_counter_inc(svc->events_retried);
        }
        if (changes[k].enrollment)
            unpuzzle__rt__v1__enrollment_changed__free_unpacked(
                (Unpuzzle__Rt__V1__EnrollmentChanged *)changes[k].enrollment, NULL);
        if (changes[k].lesson)
            unpuzzle__rt__v1__lesson_upserted__free_unpacked(
                (Unpuzzle__Rt__V1__LessonUpserted *)changes[k].lesson, NULL);
    }
    if (s != RT_OK)
        rt_log_warn("membership events not applied; will retry", "{s:s, s:i}", "error",
                    rt_error_message(), "events", (int)n_changes);
    free(changes);
    free(index);
}

/* ---- metrics ---- */

static double gauge_nats_connected(void *arg)
{
    return rt_nats_is_connected(((auth_service *)arg)->nats) ? 1 : 0;
}

static double gauge_postgres_up(void *arg)
{
    return rt_pg_pool_healthy(((auth_service *)arg)->pool) ? 1 : 0;
}

static double gauge_queue(void *arg)
{
    return (double)rt_workers_queued(((auth_service *)arg)->workers);
}

static double gauge_cache_users(void *arg)
{
    return (double)auth_cache_users(((auth_service *)arg)->cache);
}

static void register_metrics(auth_service *svc)
{
    rt_metrics *m = svc->metrics;
    char labels[64];

    for (int e = VERR(UNSPECIFIED); e <= VERR(UNAVAILABLE); e++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", auth_verify_error_name(e));
        svc->verify_result[e] = rt_metrics_counter(m, "unpuzzle_auth_verify_total",
                                                   "Token verifications by result.", labels);
    }
    for (int r = DENY(UNSPECIFIED); r <= DENY(INTERNAL); r++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", auth_deny_reason_name(r));
        svc->authorize_result[r] = rt_metrics_counter(m, "unpuzzle_auth_authorize_total",
                                                      "Room access decisions by result.", labels);
    }
    svc->verify_seconds = rt_metrics_histogram(
        m, "unpuzzle_auth_rpc_duration_seconds", "Time from request receipt to reply.",
        "rpc=\"verify\"", rt_metrics_latency_buckets, rt_metrics_latency_buckets_count);
    svc->authorize_seconds = rt_metrics_histogram(
        m, "unpuzzle_auth_rpc_duration_seconds", "Time from request receipt to reply.",
        "rpc=\"authorize\"", rt_metrics_latency_buckets, rt_metrics_latency_buckets_count);
    svc->cache_hit = rt_metrics_counter(m, "unpuzzle_auth_cache_lookups_total",
                                        "Role and decision cache lookups.", "result=\"hit\"");
    svc->cache_miss = rt_metrics_counter(m, "unpuzzle_auth_cache_lookups_total",
                                         "Role and decision cache lookups.", "result=\"miss\"");
    svc->events_applied =
        rt_metrics_counter(m, "unpuzzle_auth_membership_events_total",
                           "Enrollment and lesson events by outcome.", "result=\"applied\"");
    svc->events_invalid =
        rt_metrics_counter(m, "unpuzzle_auth_membership_events_total",
                           "Enrollment and lesson events by outcome.", "result=\"invalid\"");
    svc->events_retried =
        rt_metrics_counter(m, "unpuzzle_auth_membership_events_total",
                           "Enrollment and lesson events by outcome.", "result=\"retried\"");
    svc->overloaded = rt_metrics_counter(m, "unpuzzle_auth_overloaded_total",
                                         "Requests refused because the queue was full.", NULL);
    svc->bad_requests = rt_metrics_counter(m, "unpuzzle_auth_bad_requests_total",
                                           "Requests that were not valid protobuf.", NULL);
    rt_metrics_gauge_fn(m, "unpuzzle_auth_nats_connected", "1 when connected to NATS.", NULL,
                        gauge_nats_connected, svc);
    rt_metrics_gauge_fn(m, "unpuzzle_auth_postgres_up",
                        "1 when the last PostgreSQL connection attempt succeeded.", NULL,
                        gauge_postgres_up, svc);
    rt_metrics_gauge_fn(m, "unpuzzle_auth_queue_depth", "Requests waiting for a worker.", NULL,
                        gauge_queue, svc);
    rt_metrics_gauge_fn(m, "unpuzzle_auth_cache_users", "Users in the decision cache.", NULL,
                        gauge_cache_users, svc);
}

/* ---- lifecycle ---- */

static rt_status load_keys(auth_keyset **out, const auth_config *cfg)
{
    if (cfg->jwks_file[0])
        return auth_keyset_load(out, cfg->jwt_secret, cfg->jwks_file);
    return auth_keyset_create(out, cfg->jwt_secret, NULL);
}

static rt_status subscribe(natsSubscription **sub, auth_service *svc, const char *subject,
                           const char *queue, natsMsgHandler handler)
{
    natsStatus s;
    if (queue)
        s = natsConnection_QueueSubscribe(sub, rt_nats_connection(svc->nats), subject, queue,
                                          handler, svc);
    else
        s = natsConnection_Subscribe(sub, rt_nats_connection(svc->nats), subject, handler, svc);
    if (s != NATS_OK)
        return RT_NATS_ERR(s, subject);
    return RT_OK;
}

rt_status auth_service_start(auth_service **out, const auth_config *cfg, rt_metrics *metrics)
{
    auth_service *svc = rt_calloc(1, sizeof(*svc));
    rt_status s;

    svc->config = cfg;
    svc->metrics = metrics;
    svc->rules.leeway_s = cfg->jwt_leeway_s;
    svc->rules.audience = cfg->jwt_audience;
    svc->rules.issuer = cfg->jwt_issuer;
    svc->rules.max_token_bytes = 8192;
    pthread_rwlock_init(&svc->keys_lock, NULL);
    atomic_init(&svc->draining, false);

    s = load_keys(&svc->keys, cfg);
    if (s != RT_OK)
        goto fail;
    rt_log_info("keys loaded", "{s:b, s:i}", "hs256", auth_keyset_has_hs256(svc->keys),
                "public_keys", (int)auth_keyset_public_key_count(svc->keys));
    if ((s = rt_pg_pool_create(&svc->pool, cfg->database_url, (int)cfg->pg_pool_size)) != RT_OK)
        goto fail;
    auth_store_create(&svc->store, svc->pool, (int)cfg->db_timeout_ms);
    auth_members_create(&svc->members, svc->store, (uint64_t)cfg->authz_cache_ttl_ms * 1000000u,
                        10000, (size_t)cfg->course_set_max, (size_t)cfg->role_table_max);
    svc->source.member_role = auth_members_member_role;
    svc->source.lesson_course = auth_members_lesson_course;
    svc->source.ctx = svc->members;
    auth_cache_create(&svc->cache, (size_t)cfg->cache_max_users);
    s = rt_workers_create(&svc->workers, (int)cfg->workers, (size_t)cfg->queue_max, run_request,
                          discard_request, svc);
    if (s != RT_OK)
        goto fail;
    register_metrics(svc);

    rt_nats_options no = {.url = cfg->nats_url,
                          .name = "auth",
                          .user = cfg->nats_user,
                          .password = cfg->nats_password,
                          .creds_file = cfg->nats_creds_file};
    if ((s = rt_nats_connect(&svc->nats, &no)) != RT_OK)
        goto fail;
    if ((s = subscribe(&svc->sub_verify, svc, AUTH_SUBJECT_VERIFY, AUTH_QUEUE_GROUP, on_request)) ||
        (s = subscribe(&svc->sub_authorize, svc, AUTH_SUBJECT_AUTHORIZE, AUTH_QUEUE_GROUP,
                       on_request)) ||
        (s = subscribe(&svc->sub_inval_enrollment, svc, AUTH_SUBJECT_INVALIDATED_ENROLLMENT, NULL,
                       on_invalidation)) ||
        (s = subscribe(&svc->sub_inval_lesson, svc, AUTH_SUBJECT_INVALIDATED_LESSON, NULL,
                       on_invalidation)))
        goto fail;
    auth_service_tick(svc);
    *out = svc;
    return RT_OK;
fail:
    auth_service_stop(svc);
    return s;
}

void auth_service_tick(auth_service *svc)
{
    /* The role table is small (instructors, admins): hold it whole. */
    uint64_t now = rt_time_mono_ns();
    if (svc->config->role_cache_ttl_ms > 0 &&
        (!svc->roles_loaded_ns ||
         now - svc->roles_loaded_ns >= (uint64_t)svc->config->role_cache_ttl_ms * 1000000u)) {
        if (auth_members_refresh_roles(svc->members) == RT_OK)
            svc->roles_loaded_ns = now;
    }
    if (atomic_load(&svc->draining) || !rt_nats_is_connected(svc->nats))
        return;
    if (!svc->stream_ready) {
        rt_stream_spec spec;
        rt_stream_spec_events(&spec, svc->config->events_max_age_s,
                              svc->config->events_duplicate_window_s);
        if (rt_nats_ensure_stream(svc->nats, &spec) != RT_OK) {
            rt_log_last_error("EVENTS stream not ready; retrying");
            return;
        }
        svc->stream_ready = true;
    }
    if (!svc->consumer_enrollments) {
        rt_consumer_options co = {.stream = "EVENTS",
                                  .durable = "auth-enrollments",
                                  .filter_subject = "evt.v1.enrollment.changed",
                                  .batch = 256,
                                  .handler = on_membership_events,
                                  .arg = svc};
        if (rt_consumer_start(&svc->consumer_enrollments, svc->nats, &co) != RT_OK)
            rt_log_last_error("enrollment consumer not started");
    }
    if (!svc->consumer_lessons) {
        rt_consumer_options co = {.stream = "EVENTS",
                                  .durable = "auth-lessons",
                                  .filter_subject = "evt.v1.lesson.upserted",
                                  .batch = 256,
                                  .handler = on_membership_events,
                                  .arg = svc};
        if (rt_consumer_start(&svc->consumer_lessons, svc->nats, &co) != RT_OK)
            rt_log_last_error("lesson consumer not started");
    }
}

rt_status auth_service_reload_keys(auth_service *svc)
{
    auth_keyset *fresh = NULL, *old;
    rt_status s = load_keys(&fresh, svc->config);

    if (s != RT_OK) {
        rt_log_last_error("key reload failed; keeping the old keys");
        return s;
    }
    pthread_rwlock_wrlock(&svc->keys_lock);
    old = svc->keys;
    svc->keys = fresh;
    pthread_rwlock_unlock(&svc->keys_lock);
    auth_keyset_destroy(old);
    rt_log_info("keys reloaded", "{s:b, s:i}", "hs256", auth_keyset_has_hs256(fresh), "public_keys",
                (int)auth_keyset_public_key_count(fresh));
    return RT_OK;
}

bool auth_service_ready(void *arg, char *why, size_t why_size)
{
    auth_service *svc = arg;
    if (atomic_load(&svc->draining)) {
        snprintf(why, why_size, "draining");
        return false;
    }
    if (!rt_nats_is_connected(svc->nats)) {
        snprintf(why, why_size, "NATS not connected");
        return false;
    }
    if (!svc->stream_ready) {
        snprintf(why, why_size, "EVENTS stream not ready");
        return false;
    }
    return true;
}

bool auth_service_failed(auth_service *svc)
{
    return rt_nats_closed_for_good(svc->nats);
}

void auth_service_stop(auth_service *svc)
{
    if (!svc)
        return;
    atomic_store(&svc->draining, true);
    /* Stop taking requests first; what is queued still gets its answer. */
    natsSubscription *subs[] = {svc->sub_verify, svc->sub_authorize, svc->sub_inval_enrollment,
                                svc->sub_inval_lesson};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (subs[i])
            natsSubscription_Unsubscribe(subs[i]);
    rt_workers_destroy(svc->workers);
    rt_consumer_stop(svc->consumer_enrollments);
    rt_consumer_stop(svc->consumer_lessons);
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        natsSubscription_Destroy(subs[i]);
    rt_nats_close(svc->nats, (int)svc->config->drain_ms);
    auth_cache_destroy(svc->cache);
    auth_members_destroy(svc->members);
    auth_store_destroy(svc->store);
    rt_pg_pool_destroy(svc->pool);
    auth_keyset_destroy(svc->keys);
    pthread_rwlock_destroy(&svc->keys_lock);
    free(svc);
}
