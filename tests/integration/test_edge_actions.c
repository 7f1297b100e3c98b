/*
 * Actions from the browser (docs/protocol.md "Actions") against the real
 * stack: nats-server with JetStream, PostgreSQL, auth, ws-edge.
 *
 * A student's confusion is stored in EVENTS (with the token's userId, not
 * the frame's) and reaches an instructor's connection in the course room
 * within 100 ms; a student of another course is refused; only an
 * instructor of the course resolves; a retried action (same id) is stored
 * once; progress reaches the user's other device, in order, and not the
 * sending one; bad input is answered bad_request naming the field and
 * stores nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>

#include "edge_testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define INSTANT_MS 400 /* sanitizers slow every hop */
#else
#define INSTANT_MS 100
#endif

static rt_test_stack *stack;
static int port;

static int setup(void **state)
{
    (void)state;
    if (!(stack = edge_test_stack(NULL)) || (port = edge_test_start_edge(stack, NULL)) < 0)
        return -1;
    port = stack->edges[0].port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rt_test_stack_destroy(stack);
    return 0;
}

/* Messages in the EVENTS stream. */
static uint64_t events_stored(void)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_GetStreamInfo(&si, stack->js, "EVENTS", NULL, &jerr), NATS_OK);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/* The last event stored on `subject`, decoded with `desc`. */
static ProtobufCMessage *last_event(const char *subject, const ProtobufCMessageDescriptor *desc,
                                    char msg_id[64])
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_GetLastMsg(&m, stack->js, "EVENTS", subject, NULL, &jerr), NATS_OK);
    const char *id = NULL;
    natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
    snprintf(msg_id, 64, "%s", id ? id : "");
    ProtobufCMessage *e = protobuf_c_message_unpack(desc, NULL, (size_t)natsMsg_GetDataLength(m),
                                                    (const uint8_t *)natsMsg_GetData(m));
    natsMsg_Destroy(m);
    assert_non_null(e);
    return e;
}

/* The next frame of `type` for request `id` (acks and errors). */
static json_t *reply_to(rt_testws *ws, const char *id)
{
    for (;;) {
        json_t *m = ws_next(ws);
        if (json_is_string(json_object_get(m, "id")) && strcmp(rt_json_str(m, "id"), id) == 0)
            return m;
        json_decref(m);
    }
}

static json_t *act(rt_testws *ws, const char *frame, const char *id)
{
    ws_send(ws, frame);
    return reply_to(ws, id);
}

static void confusion_reaches_the_instructor_at_once(void **state)
{
    (void)state;
    rt_testws *teacher = ws_login(port, "teach-1");
    json_decref(ws_join(teacher, "t1", "course:c1"));
    rt_testws *student = ws_login(port, "stu-1");
    uint64_t before = events_stored();

    int64_t sent = rt_time_now_ms();
    json_t *ack = act(student,
                      "{\"type\":\"confusion\",\"action\":\"create\",\"id\":\"a1\",\"payload\":"
                      "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":42.5,"
                      "\"text\":\"lost here\"}}",
                      "a1");
    assert_string_equal(rt_json_str(ack, "type"), "ack");
    char event_id[64], confusion_id[64];
    snprintf(event_id, sizeof(event_id), "%s", rt_json_str(ack, "eventId"));
    snprintf(confusion_id, sizeof(confusion_id), "%s", rt_json_str(ack, "confusionId"));
    assert_int_equal(strlen(event_id), 36);
    json_decref(ack);

    json_t *m = ws_expect_type(teacher, "confusion");
    int64_t took = rt_time_now_ms() - sent;
    printf("confusion reached the instructor's connection %" PRId64 " ms after it was sent\n",
           took);
    assert_true(took <= INSTANT_MS);
    assert_string_equal(rt_json_str(m, "action"), "create");
    assert_string_equal(rt_json_str(m, "room"), "course:c1");
    json_t *payload = json_object_get(m, "payload");
    assert_string_equal(rt_json_str(payload, "confusionId"), confusion_id);
    assert_string_equal(rt_json_str(payload, "userId"), "stu-1");
    assert_string_equal(rt_json_str(payload, "text"), "lost here");
    json_decref(m);

    /* Stored once, with the edge's ids. */
    assert_int_equal(events_stored(), before + 1);
    char msg_id[64];
    Unpuzzle__Rt__V1__ConfusionCreated *e = (void *)last_event(
        "evt.v1.confusion.created", &unpuzzle__rt__v1__confusion_created__descriptor, msg_id);
    assert_string_equal(msg_id, event_id);
    assert_string_equal(e->event_id, event_id);
    assert_string_equal(e->user_id, "stu-1");
    assert_string_equal(e->course_id, "c1");
    protobuf_c_message_free_unpacked(&e->base, NULL);

    /* A retry with the same id: the same event, stored once. */
    ack = act(student,
              "{\"type\":\"confusion\",\"action\":\"create\",\"id\":\"a1\",\"payload\":"
              "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":42.5,"
              "\"text\":\"lost here\"}}",
              "a1");
    assert_string_equal(rt_json_str(ack, "eventId"), event_id);
    assert_true(json_is_true(json_object_get(ack, "duplicate")));
    json_decref(ack);
    assert_int_equal(events_stored(), before + 1);

    /* Resolving: a student may not; the course's instructor may. */
    char frame[512];
    snprintf(frame, sizeof(frame),
             "{\"type\":\"confusion\",\"action\":\"update\",\"id\":\"r1\",\"payload\":"
             "{\"courseId\":\"c1\",\"confusionId\":\"%s\",\"resolved\":true,"
             "\"response\":\"see 2:10\"}}",
             confusion_id);
    rt_testws *other = ws_login(port, "stu-2");
    json_t *err = act(other, frame, "r1");
    assert_string_equal(rt_json_str(err, "code"), "forbidden");
    json_decref(err);
    ack = act(teacher, frame, "r1");
    assert_string_equal(rt_json_str(ack, "type"), "ack");
    json_decref(ack);
    Unpuzzle__Rt__V1__ConfusionResolved *r = (void *)last_event(
        "evt.v1.confusion.resolved", &unpuzzle__rt__v1__confusion_resolved__descriptor, msg_id);
    assert_string_equal(r->user_id, "teach-1");
    assert_string_equal(r->confusion_id, confusion_id);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    rt_testws_destroy(other);
    rt_testws_destroy(student);
    rt_testws_destroy(teacher);
}

static void other_course_is_forbidden(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(port, "stu-3"); /* a student of c2 only */
    uint64_t before = events_stored();
    json_t *err = act(ws,
                      "{\"type\":\"question\",\"action\":\"create\",\"id\":\"q1\",\"payload\":"
                      "{\"courseId\":\"c1\",\"text\":\"may I?\"}}",
                      "q1");
    assert_string_equal(rt_json_str(err, "type"), "error");
    assert_string_equal(rt_json_str(err, "code"), "forbidden");
    json_decref(err);
    assert_int_equal(events_stored(), before);
    ws_expect_alive(ws, "still-here");
    rt_testws_destroy(ws);
}

static void progress_follows_the_user_to_other_devices(void **state)
{
    (void)state;
    rt_testws *phone = ws_login(port, "stu-2");
    rt_testws *laptop = ws_login(port, "stu-2");
    json_decref(ws_join(phone, "u1", "user:stu-2"));
    json_decref(ws_join(laptop, "u1", "user:stu-2"));
    char frame[512], id[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        snprintf(frame, sizeof(frame),
                 "{\"type\":\"progress\",\"action\":\"update\",\"id\":\"%s\",\"payload\":"
                 "{\"courseId\":\"c1\",\"lessonId\":\"l2\",\"positionSec\":%d,"
                 "\"durationSec\":600,\"playing\":true}}",
                 id, i * 10);
        ws_send(phone, frame);
    }
    for (int i = 1; i <= 5; i++) {
        json_t *m = ws_expect_type(laptop, "progress");
        assert_string_equal(rt_json_str(m, "room"), "user:stu-2");
        assert_int_equal(
            (int)json_real_value(json_object_get(json_object_get(m, "payload"), "positionSec")),
            i * 10);
        json_decref(m);
    }
    /* The phone got its five acks, and none of its own progress back. */
    for (int i = 1; i <= 5; i++) {
        json_t *m = ws_next(phone);
        assert_string_equal(rt_json_str(m, "type"), "ack");
        json_decref(m);
    }
    rt_testws_drain(phone, 300);
    assert_int_equal(rt_testws_queued(phone), 0);
    rt_testws_destroy(phone);
    rt_testws_destroy(laptop);
}

/* On a fresh edge, the very first heartbeat of a user reaches their other
 * device (the sender did not join the user room). */
static void first_progress_on_a_fresh_edge(void **state)
{
    (void)state;
    int idx = edge_test_start_edge(stack, NULL);
    assert_true(idx >= 0);
    int p = stack->edges[idx].port;
    rt_testws *phone = ws_login(p, "stu-1");
    rt_testws *laptop = ws_login(p, "stu-1");
    json_decref(ws_join(laptop, "u1", "user:stu-1"));
    ws_send(phone, "{\"type\":\"progress\",\"action\":\"update\",\"id\":\"first\","
                   "\"payload\":{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"positionSec\":7,"
                   "\"durationSec\":600,\"playing\":true}}");
    json_t *ack = reply_to(phone, "first");
    assert_string_equal(rt_json_str(ack, "type"), "ack");
    json_decref(ack);
    json_t *m = ws_expect_type(laptop, "progress");
    assert_int_equal(
        (int)json_real_value(json_object_get(json_object_get(m, "payload"), "positionSec")), 7);
    json_decref(m);
    rt_testws_destroy(phone);
    rt_testws_destroy(laptop);
}

static void bad_input_stores_nothing(void **state)
{
    (void)state;
    static const struct {
        const char *payload, *names;
    } cases[] = {
        {"{\"courseId\":\"c1\",\"lessonId\":\"l1\"}", "videoTimestampSec"},
        {"{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":\"x\"}",
         "videoTimestampSec"},
        {"{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":1,\"extra\":1}", "extra"},
        {"{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":1,"
         "\"userId\":\"teach-1\"}",
         "userId"},
    };
    rt_testws *ws = ws_login(port, "stu-1");
    uint64_t before = events_stored();
    char frame[6000];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(frame, sizeof(frame),
                 "{\"type\":\"confusion\",\"action\":\"create\",\"id\":\"b%zu\",\"payload\":%s}", i,
                 cases[i].payload);
        char id[16];
        snprintf(id, sizeof(id), "b%zu", i);
        json_t *err = act(ws, frame, id);
        assert_string_equal(rt_json_str(err, "code"), "bad_request");
        if (!strstr(rt_json_str(err, "message"), cases[i].names))
            fail_msg("%s: message %s does not name %s", cases[i].payload,
                     rt_json_str(err, "message"), cases[i].names);
        json_decref(err);
    }
    /* 5,000 characters of text. */
    int n = snprintf(frame, sizeof(frame),
                     "{\"type\":\"question\",\"action\":\"create\",\"id\":\"big\",\"payload\":"
                     "{\"courseId\":\"c1\",\"text\":\"");
    memset(frame + n, 'x', 5000);
    snprintf(frame + n + 5000, sizeof(frame) - (size_t)n - 5000, "\"}}");
    json_t *err = act(ws, frame, "big");
    assert_string_equal(rt_json_str(err, "code"), "bad_request");
    assert_non_null(strstr(rt_json_str(err, "message"), "text"));
    json_decref(err);
    assert_int_equal(events_stored(), before);
    rt_testws_destroy(ws);

    /* Invalid UTF-8 in a text frame: the connection is closed 1007. */
    rt_testws *raw = ws_login(port, "stu-1");
    const char bad[] = "{\"type\":\"question\",\"action\":\"create\",\"id\":\"u\",\"payload\":"
                       "{\"courseId\":\"c1\",\"text\":\"\xc3\x28\"}}";
    assert_int_equal(rt_testws_send_frame(raw, RT_WS_OP_TEXT, true, 0, bad, sizeof(bad) - 1),
                     RT_OK);
    ws_expect_close(raw, 1007, EDGE_WAIT_MS);
    rt_testws_destroy(raw);
    assert_int_equal(events_stored(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(confusion_reaches_the_instructor_at_once),
        cmocka_unit_test(other_course_is_forbidden),
        cmocka_unit_test(progress_follows_the_user_to_other_devices),
        cmocka_unit_test(first_progress_on_a_fresh_edge),
        cmocka_unit_test(bad_input_stores_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
