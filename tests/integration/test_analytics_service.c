/*
 * analytics-aggregator against the real stack (nats-server with JetStream on
 * disk, PostgreSQL, the service binary), checked against the same engine run
 * in this process over the same events in stream order: the reference.
 *
 *   - a confusion reaches the instructor room within 100 ms; analytics
 *     updates reach the course: and instructor: rooms at most once per
 *     ANALYTICS_PUBLISH_INTERVAL_MS per course, the student list only in the
 *     instructor room;
 *   - kill -9 in the middle of a stream, restart: every course's metrics
 *     equal the reference (nothing lost, nothing counted twice);
 *   - a student in a lesson room of ws-edge shows in the course's
 *     activeStudents (edge presence), and goes when they leave;
 *   - PostgreSQL stopped under a stream, then started again: /readyz says
 *     so meanwhile, and afterwards the figures equal the reference (the
 *     checkpoint writer's failures ack nothing and lose nothing);
 *   - a second replica takes half the partitions and both answer
 *     analytics.v1.snapshot for every course; kill -9 one: the other takes
 *     its partitions over by itself and the figures still equal the
 *     reference.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <time.h>

#include "agg_engine.h"
#include "edge_testutil.h"
#include "rt_pbjson.h"

#if defined(__SANITIZE_ADDRESS__)
#define ALERT_MAX_MS 400 /* sanitizers slow every hop */
#else
#define ALERT_MAX_MS 100
#endif
#define PUBLISH_INTERVAL_MS 200
#define N_COURSES 4
#define N_STUDENTS 8
#define T0 INT64_C(1795600000) /* event time of the first event, seconds */

typedef struct agg_proc {
    rt_test_proc *proc;
    int port;
    char id[32];
} agg_proc;

static rt_test_stack *stack;
static agg_engine *reference;
static agg_proc replicas[2];
static int64_t clock_s = T0; /* event time: one second per event */
static uint64_t published;

/* checkpoint_ms: ANALYTICS_CHECKPOINT_MS (long: a kill surely lands between
 * applying events and checkpointing them). */
static rt_status start_replica(agg_proc *a, const char *id, int checkpoint_ms)
{
    char nats_url[128], db_url[256], port[32], replica[64], checkpoint[64];
    a->port = rt_test_free_port();
    snprintf(a->id, sizeof(a->id), "%s", id);
    snprintf(nats_url, sizeof(nats_url), "NATS_URL=%s", rt_test_nats_url(stack->nats));
    snprintf(db_url, sizeof(db_url), "DATABASE_URL=%s", rt_test_pg_url(stack->pg));
    snprintf(port, sizeof(port), "ADMIN_PORT=%d", a->port);
    snprintf(replica, sizeof(replica), "ANALYTICS_REPLICA_ID=%s", id);
    snprintf(checkpoint, sizeof(checkpoint), "ANALYTICS_CHECKPOINT_MS=%d", checkpoint_ms);
    const char *env[] = {nats_url,
                         db_url,
                         port,
                         replica,
                         "ANALYTICS_CLOCK=event",
                         "ANALYTICS_PUBLISH_INTERVAL_MS=200",
                         checkpoint,
                         "ANALYTICS_PARTITIONS=8",
                         "LOG_LEVEL=info",
                         NULL};
    rt_status s = rt_test_proc_start(&a->proc, "analytics-aggregator", NULL, env);
    if (s == RT_OK)
        s = rt_test_proc_wait_http(a->proc, a->port, "/readyz", 200, 20000);
    return s;
}

static void kill_replica(agg_proc *a)
{
    assert_int_equal(rt_test_proc_stop(a->proc, SIGKILL, 5000, NULL), RT_OK);
    rt_test_proc_destroy(a->proc);
    a->proc = NULL;
}

static int setup(void **state)
{
    (void)state;
    agg_config cfg;
    agg_config_defaults(&cfg);
    cfg.clock = AGG_CLOCK_EVENT;
    if (rt_test_stack_start(&stack) != RT_OK || agg_engine_create(&reference, &cfg) != RT_OK ||
        start_replica(&replicas[0], "agg-a", 2000) != RT_OK) {
        fprintf(stderr, "setup: %s (%s)\n", rt_error_message(), rt_error_origin());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        if (replicas[i].proc)
            rt_test_proc_destroy(replicas[i].proc);
    agg_engine_destroy(reference);
    rt_test_stack_destroy(stack);
    return 0;
}

/* ---- events: JSON -> protobuf -> EVENTS, and into the reference ---- */

static void rfc3339(char out[32], int64_t s)
{
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Publishes one event (its JSON without eventId/occurredAt) at the next
 * second of event time and applies it to the reference in stream order. */
static void publish(const char *subject, const ProtobufCMessageDescriptor *desc, const char *fmt,
                    ...)
{
    char body[1024], json[1400], when[32], event_id[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    rfc3339(when, clock_s++);
    snprintf(event_id, sizeof(event_id), "ev-%" PRIu64, ++published);
    snprintf(json, sizeof(json), "{\"eventId\":\"%s\",\"occurredAt\":\"%s\",%s}", event_id, when,
             body);
    ProtobufCMessage *msg = NULL;
    char err[256] = "";
    if (rt_pbjson_from_string(&msg, desc, json, strlen(json), NULL, err, sizeof(err)) != RT_OK)
        fail_msg("test event does not parse: %s: %s", err, json);
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(msg, buf);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = event_id;
    po.MaxWait = 5000;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&ack, stack->js, subject, buf, (int)len, &po, &jerr);
    if (s != NATS_OK)
        fail_msg("publish %s: %s (%d)", subject, natsStatus_GetText(s), (int)jerr);
    agg_arrival arrival = {.wall_ms = rt_time_now_ms(), .stream_seq = ack->Sequence};
    agg_outcome outcome;
    agg_engine_apply(&outcome, reference, msg, &arrival);
    jsPubAck_Destroy(ack);
    free(buf);
    protobuf_c_message_free_unpacked(msg, NULL);
}

#define D(name) &unpuzzle__rt__v1__##name##__descriptor

static void enroll(const char *course, const char *user, const char *role)
{
    publish("evt.v1.enrollment.changed", D(enrollment_changed),
            "\"courseId\":\"%s\",\"userId\":\"%s\",\"change\":\"added\",\"role\":\"%s\"", course,
            user, role);
}

static void setup_courses(void)
{
    char course[16], user[16], lesson[40];
    for (int c = 0; c < N_COURSES; c++) {
        snprintf(course, sizeof(course), "ac%d", c);
        enroll(course, "teach-1", "instructor");
        for (int s = 0; s < N_STUDENTS; s++) {
            snprintf(user, sizeof(user), "st%d", s);
            enroll(course, user, "student");
        }
        for (int l = 0; l < 3; l++) {
            snprintf(lesson, sizeof(lesson), "%s-l%d", course, l);
            publish("evt.v1.lesson.upserted", D(lesson_upserted),
                    "\"lessonId\":\"%s\",\"courseId\":\"%s\"", lesson, course);
        }
    }
}

/* The k-th event of a steady mix over every course: heartbeats, confusions
 * and their resolution, questions, purchases in two currencies, prompts and
 * lesson completions. */
static void publish_mix(uint64_t k)
{
    int c = (int)(k % N_COURSES);
    uint64_t j = k / N_COURSES;
    int s = (int)((j / 10) % N_STUDENTS);
    char course[16], user[16], lesson[40];
    snprintf(course, sizeof(course), "ac%d", c);
    snprintf(user, sizeof(user), "st%d", s);
    snprintf(lesson, sizeof(lesson), "%s-l%d", course, (int)((j / 80) % 3));
    switch (j % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
        publish("evt.v1.progress.updated", D(progress_updated),
                "\"courseId\":\"%s\",\"lessonId\":\"%s\",\"userId\":\"%s\",\"positionSec\":%d,"
                "\"durationSec\":600,\"playing\":true",
                course, lesson, user, (int)((j % 80) * 5));
        break;
    case 4:
        publish("evt.v1.confusion.created", D(confusion_created),
                "\"confusionId\":\"cf-%" PRIu64 "\",\"courseId\":\"%s\",\"lessonId\":\"%s\","
                "\"userId\":\"%s\",\"videoTimestampSec\":%d",
                j, course, lesson, user, (int)(j % 7) * 13);
        break;
    case 5:
        publish("evt.v1.confusion.resolved", D(confusion_resolved),
                "\"confusionId\":\"cf-%" PRIu64 "\",\"courseId\":\"%s\",\"lessonId\":\"%s\","
                "\"userId\":\"teach-1\",\"studentUserId\":\"%s\",\"resolved\":true",
                j - 1, course, lesson, user);
        break;
    case 6:
        publish("evt.v1.question.created", D(question_created),
                "\"questionId\":\"q-%" PRIu64 "\",\"courseId\":\"%s\",\"userId\":\"%s\","
                "\"text\":\"why?\"",
                j, course, user);
        break;
    case 7:
        publish("evt.v1.purchase.completed", D(purchase_completed),
                "\"purchaseId\":\"pu-%" PRIu64 "\",\"courseId\":\"%s\",\"userId\":\"%s\","
                "\"amountCents\":%d,\"currency\":\"%s\"",
                j, course, user, 1000 + (int)(j % 13), (j / 10) % 2 ? "EUR" : "USD");
        break;
    case 8:
        publish("evt.v1.prompt.shown", D(prompt_shown),
                "\"courseId\":\"%s\",\"lessonId\":\"%s\",\"userId\":\"%s\","
                "\"promptId\":\"pr-%" PRIu64 "\",\"kind\":\"quiz\"",
                course, lesson, user, j);
        break;
    default:
        if ((j / 10) % 3)
            publish("evt.v1.prompt.responded", D(prompt_responded),
                    "\"courseId\":\"%s\",\"lessonId\":\"%s\",\"userId\":\"%s\","
                    "\"promptId\":\"pr-%" PRIu64 "\",\"kind\":\"quiz\",\"action\":\"completed\"",
                    course, lesson, user, j - 1);
        else
            publish("evt.v1.lesson.completed", D(lesson_completed),
                    "\"courseId\":\"%s\",\"lessonId\":\"%s\",\"userId\":\"%s\"", course, lesson,
                    user);
    }
}

/* ---- comparing with the reference ---- */

static char *to_text(const Unpuzzle__Rt__V1__CourseMetrics *m)
{
    char *text = NULL;
    size_t len = 0;
    rt_pbjson_to_string(&text, &len, &m->base, 0);
    return text;
}

/* The service's snapshot of `course`, as JSON text (NULL: no answer). */
static char *snapshot(const char *course)
{
    Unpuzzle__Rt__V1__SnapshotRequest req = UNPUZZLE__RT__V1__SNAPSHOT_REQUEST__INIT;
    req.course_id = (char *)course;
    uint8_t buf[128];
    size_t len = unpuzzle__rt__v1__snapshot_request__pack(&req, buf);
    natsMsg *reply = NULL;
    if (natsConnection_Request(&reply, stack->nc, "analytics.v1.snapshot", buf, (int)len, 2000) !=
        NATS_OK)
        return NULL;
    Unpuzzle__Rt__V1__CourseMetrics *m = unpuzzle__rt__v1__course_metrics__unpack(
        NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
    natsMsg_Destroy(reply);
    if (!m)
        return NULL;
    char *text = to_text(m);
    unpuzzle__rt__v1__course_metrics__free_unpacked(m, NULL);
    return text;
}

static char *expected(const char *course)
{
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    assert_int_equal(agg_engine_compute(&m, reference, course, rt_time_now_ms(), NULL), RT_OK);
    char *text = to_text(m);
    agg_metrics_free(m);
    return text;
}

/* Every course's snapshot equals the reference within timeout_ms (the
 * service may still be catching up; it must never go past or aside). */
static void expect_reference(int timeout_ms)
{
    char course[16];
    for (int c = 0; c < N_COURSES; c++) {
        snprintf(course, sizeof(course), "ac%d", c);
        char *want = expected(course), *got = NULL;
        int64_t until = rt_time_now_ms() + timeout_ms;
        for (;;) {
            free(got);
            got = snapshot(course);
            if (got && strcmp(got, want) == 0)
                break;
            if (rt_time_now_ms() > until)
                fail_msg("course %s:\n  service:   %s\n  reference: %s", course,
                         got ? got : "(no answer)", want);
            nats_Sleep(100);
        }
        free(got);
        free(want);
    }
}

/* ---- tests ---- */

static bool room_message(natsSubscription *sub, int timeout_ms, json_t **out)
{
    natsMsg *m = NULL;
    if (natsSubscription_NextMsg(&m, sub, timeout_ms) != NATS_OK)
        return false;
    Unpuzzle__Rt__V1__RoomMessage *rm = unpuzzle__rt__v1__room_message__unpack(
        NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
    natsMsg_Destroy(m);
    assert_non_null(rm);
    assert_int_equal(rt_pbjson_to_json(out, &rm->base, 0), RT_OK);
    unpuzzle__rt__v1__room_message__free_unpacked(rm, NULL);
    return true;
}

static void alerts_at_once_and_updates_coalesced(void **state)
{
    (void)state;
    natsSubscription *instructor = NULL, *course_room = NULL;
    assert_int_equal(
        natsConnection_SubscribeSync(&instructor, stack->nc, "rtd.v1.room.instructor.teach-1"),
        NATS_OK);
    assert_int_equal(
        natsConnection_SubscribeSync(&course_room, stack->nc, "rtd.v1.room.course.ac0"), NATS_OK);
    natsConnection_Flush(stack->nc);
    setup_courses();
    expect_reference(10000);

    /* A confusion: the instructor sees it at once. */
    json_t *m = NULL;
    while (room_message(instructor, 300, &m)) /* what the setup caused */
        json_decref(m);
    int64_t sent = rt_time_now_ms();
    publish("evt.v1.confusion.created", D(confusion_created),
            "\"confusionId\":\"cf-alert\",\"courseId\":\"ac0\",\"lessonId\":\"ac0-l0\","
            "\"userId\":\"st1\",\"videoTimestampSec\":42");
    for (;;) {
        assert_true(room_message(instructor, 2000, &m));
        bool alert = strcmp(rt_json_str(m, "type"), "confusion") == 0;
        if (alert) {
            assert_string_equal(rt_json_str(m, "action"), "create");
            assert_string_equal(rt_json_str(json_object_get(m, "confusionCreated"), "confusionId"),
                                "cf-alert");
        }
        json_decref(m);
        if (alert)
            break;
    }
    int64_t took = rt_time_now_ms() - sent;
    printf("confusion alert reached the instructor room in %" PRId64 " ms\n", took);
    assert_true(took <= ALERT_MAX_MS);

    /* 40 heartbeats over 2 s: updates at most once per interval. */
    while (room_message(course_room, 300, &m))
        json_decref(m);
    int64_t start = rt_time_now_ms();
    for (int i = 0; i < 40; i++) {
        publish("evt.v1.progress.updated", D(progress_updated),
                "\"courseId\":\"ac0\",\"lessonId\":\"ac0-l1\",\"userId\":\"st2\","
                "\"positionSec\":%d,\"durationSec\":600,\"playing\":true",
                i);
        nats_Sleep(50);
    }
    int updates = 0;
    while (room_message(course_room, 500, &m)) {
        if (strcmp(rt_json_str(m, "type"), "analytics") == 0) {
            updates++;
            json_t *a = json_object_get(m, "analytics");
            assert_string_equal(rt_json_str(a, "courseId"), "ac0");
            json_t *students = json_object_get(a, "students"); /* only for instructors */
            assert_true(!students || json_array_size(students) == 0);
        }
        json_decref(m);
    }
    int64_t span = rt_time_now_ms() - start;
    printf("%d analytics updates in %" PRId64 " ms\n", updates, span);
    assert_true(updates >= 3);
    assert_true(updates <= span / PUBLISH_INTERVAL_MS + 1);
    /* The instructor's copy has the per-student list. */
    bool students = false;
    while (room_message(instructor, 300, &m)) {
        if (strcmp(rt_json_str(m, "type"), "analytics") == 0 &&
            json_array_size(json_object_get(json_object_get(m, "analytics"), "students")) > 0)
            students = true;
        json_decref(m);
    }
    assert_true(students);
    natsSubscription_Destroy(instructor);
    natsSubscription_Destroy(course_room);
    expect_reference(10000);
}

/* The active students of a course's snapshot matching `user` (lesson "" =
 * any); NULL when absent. */
static bool watching(const char *course, const char *user, const char *lesson)
{
    char *text = snapshot(course);
    if (!text)
        return false;
    json_t *m = json_loads(text, 0, NULL);
    free(text);
    bool found = false;
    json_t *list = json_object_get(m, "activeStudents"), *e;
    size_t i;
    json_array_foreach(list, i, e)
    {
        if (strcmp(rt_json_str(e, "userId"), user) == 0 &&
            (!*lesson || strcmp(rt_json_str(e, "lessonId"), lesson) == 0))
            found = true;
    }
    json_decref(m);
    return found;
}

static bool wait_watching(const char *course, const char *user, const char *lesson, bool want,
                          int timeout_ms)
{
    int64_t until = rt_time_now_ms() + timeout_ms;
    while (rt_time_now_ms() < until) {
        if (watching(course, user, lesson) == want)
            return true;
        nats_Sleep(100);
    }
    return false;
}

/* Who is watching: a student opening a lesson through ws-edge shows in the
 * course's activeStudents (edge presence -> aggregator), and leaves it. */
static void who_is_watching_comes_from_the_edges(void **state)
{
    (void)state;
    const char *edge_env[] = {"PRESENCE_INTERVAL_MS=500", NULL};
    /* auth learns the enrollments from the same EVENTS stream. */
    assert_int_equal(rt_test_stack_start_auth(stack, NULL), RT_OK);
    assert_true(rt_test_wait_authorize(stack, "st3", UNPUZZLE__RT__V1__ROLE__ROLE_STUDENT,
                                       "lesson:ac0-l2", true, 10000, NULL));
    int idx = edge_test_start_edge(stack, edge_env);
    assert_true(idx >= 0);
    rt_testws *ws = ws_login(stack->edges[idx].port, "st3");
    json_decref(ws_join(ws, "s1", "lesson:ac0-l2"));
    int64_t start = rt_time_now_ms();
    assert_true(wait_watching("ac0", "st3", "ac0-l2", true, 5000));
    printf("st3 shown as watching ac0 after %" PRId64 " ms\n", rt_time_now_ms() - start);
    rt_testws_destroy(ws);
    assert_true(wait_watching("ac0", "st3", "", false, 5000));
}

static void kill_9_changes_no_figure(void **state)
{
    (void)state;
    uint64_t k = 0;
    for (; k < 600; k++)
        publish_mix(k);
    /* Mid-stream: with a 2 s checkpoint period it has applied events it has
     * not checkpointed (nor acked); they are read and applied again after
     * the restart, and must count once. */
    assert_true(
        edge_metric(replicas[0].port, "unpuzzle_analytics_events_total{outcome=\"applied\"}") > 0);
    kill_replica(&replicas[0]);
    for (; k < 1000; k++)
        publish_mix(k);
    assert_int_equal(start_replica(&replicas[0], "agg-a", 100), RT_OK);
    for (; k < 1400; k++)
        publish_mix(k);
    expect_reference(20000);
}

static void postgres_outage_changes_no_figure(void **state)
{
    (void)state;
    uint64_t k = 1400;
    for (; k < 1600; k++)
        publish_mix(k);
    assert_int_equal(rt_test_pg_stop(stack->pg), RT_OK);
    /* Events go on arriving; checkpoints cannot be written, so nothing is
     * acked and the session (with its partition locks) is gone. */
    for (; k < 1800; k++)
        publish_mix(k);
    assert_int_equal(
        rt_test_proc_wait_http(replicas[0].proc, replicas[0].port, "/readyz", 503, 10000), RT_OK);
    assert_int_equal(rt_test_proc_wait_log(replicas[0].proc, "every partition released", 10000),
                     RT_OK);
    assert_int_equal(rt_test_pg_start_again(stack->pg), RT_OK);
    for (; k < 2000; k++)
        publish_mix(k);
    assert_int_equal(
        rt_test_proc_wait_http(replicas[0].proc, replicas[0].port, "/readyz", 200, 20000), RT_OK);
    expect_reference(20000);
}

static void second_replica_shares_then_takes_over(void **state)
{
    (void)state;
    assert_int_equal(start_replica(&replicas[1], "agg-b", 100), RT_OK);
    /* Both own half of the 8 partitions. */
    int64_t until = rt_time_now_ms() + 15000;
    while (edge_metric(replicas[0].port, "unpuzzle_analytics_partitions_owned") != 4 ||
           edge_metric(replicas[1].port, "unpuzzle_analytics_partitions_owned") != 4) {
        if (rt_time_now_ms() > until)
            fail_msg("partitions not split: a=%g b=%g",
                     edge_metric(replicas[0].port, "unpuzzle_analytics_partitions_owned"),
                     edge_metric(replicas[1].port, "unpuzzle_analytics_partitions_owned"));
        nats_Sleep(200);
    }
    for (uint64_t k = 2000; k < 2400; k++)
        publish_mix(k);
    expect_reference(20000); /* answered by both, whichever gets the request */

    kill_replica(&replicas[0]);
    for (uint64_t k = 2400; k < 2800; k++)
        publish_mix(k);
    until = rt_time_now_ms() + 20000;
    while (edge_metric(replicas[1].port, "unpuzzle_analytics_partitions_owned") != 8) {
        if (rt_time_now_ms() > until)
            fail_msg("partitions not taken over");
        nats_Sleep(200);
    }
    expect_reference(20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alerts_at_once_and_updates_coalesced),
        cmocka_unit_test(who_is_watching_comes_from_the_edges),
        cmocka_unit_test(kill_9_changes_no_figure),
        cmocka_unit_test(postgres_outage_changes_no_figure),
        cmocka_unit_test(second_replica_shares_then_takes_over),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
