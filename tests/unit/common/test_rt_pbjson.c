/*
 * rt_pbjson: protobuf <-> JSON on real v1 contract messages, exact output
 * for a few, and every input error with the path it must name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "rt_alloc.h"
#include "rt_pbjson.h"
#include "rt_proto.h"
#include "rt_time.h"

/* ---- helpers ---- */

static char *render(const void *msg, unsigned flags)
{
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(rt_pbjson_to_string(&s, &n, msg, flags), RT_OK);
    assert_non_null(s);
    assert_int_equal(strlen(s), n);
    assert_null(strchr(s, '\n'));
    return s;
}

static void assert_render(const void *msg, unsigned flags, const char *want)
{
    char *s = render(msg, flags);
    assert_string_equal(s, want);
    free(s);
}

static ProtobufCMessage *parse(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    char err[256];
    rt_status rc = rt_pbjson_from_string(&m, d, json, strlen(json), NULL, err, sizeof(err));
    if (rc != RT_OK)
        fail_msg("unexpected error: %s", err);
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, d);
    return m;
}

/* Same protobuf content: identical packed bytes (protobuf-c packs in field
 * order, so this is deterministic). */
static void assert_same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na = protobuf_c_message_get_packed_size(a);
    size_t nb = protobuf_c_message_get_packed_size(b);
    uint8_t *ba = rt_malloc(na), *bb = rt_malloc(nb);
    assert_int_equal(na, nb);
    protobuf_c_message_pack(a, ba);
    protobuf_c_message_pack(b, bb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
}

/* msg -> JSON -> msg' == msg, and JSON(msg') == JSON(msg). */
static void assert_round_trip(const void *msg, unsigned flags)
{
    const ProtobufCMessage *m = msg;
    char *s1 = render(m, flags), *s2;
    ProtobufCMessage *back = parse(m->descriptor, s1);
    assert_same_message(m, back);
    s2 = render(back, flags);
    assert_string_equal(s1, s2);
    free(s1);
    free(s2);
    protobuf_c_message_free_unpacked(back, NULL);
}

/* Parses `json` and renders it again: must come back byte for byte. */
static void assert_text_round_trip(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = parse(d, json);
    assert_render(m, RT_PBJSON_DEFAULT, json);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void expect_error_limits(const ProtobufCMessageDescriptor *d, const char *json,
                                const rt_pbjson_limits *limits, const char *want)
{
    ProtobufCMessage *m = (ProtobufCMessage *)&m; /* must be reset to NULL */
    char err[256] = "untouched";
    rt_status rc = rt_pbjson_from_string(&m, d, json, strlen(json), limits, err, sizeof(err));
    assert_int_equal(rc, RT_ERR_JSON);
    assert_null(m);
    assert_string_equal(err, want);
    assert_int_equal(rt_error_status(), RT_ERR_JSON);
    assert_string_equal(rt_error_message(), want);
}

static void expect_error(const ProtobufCMessageDescriptor *d, const char *json, const char *want)
{
    expect_error_limits(d, json, NULL, want);
}

/* For jansson load errors, whose line/column suffix is not ours to pin. */
static void expect_error_prefix(const ProtobufCMessageDescriptor *d, const char *json,
                                const char *want_prefix)
{
    ProtobufCMessage *m = NULL;
    char err[256];
    rt_status rc = rt_pbjson_from_string(&m, d, json, strlen(json), NULL, err, sizeof(err));
    assert_int_equal(rc, RT_ERR_JSON);
    assert_null(m);
    if (strncmp(err, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err, want_prefix);
}

static Google__Protobuf__Timestamp *new_ts(const char *rfc3339)
{
    Google__Protobuf__Timestamp *ts = rt_malloc(sizeof(*ts));
    int64_t secs;
    int32_t nanos;
    google__protobuf__timestamp__init(ts);
    assert_int_equal(rt_time_parse_rfc3339(&secs, &nanos, rfc3339), RT_OK);
    ts->seconds = secs;
    ts->nanos = nanos;
    return ts;
}

static Google__Protobuf__DoubleValue *new_double(double v)
{
    Google__Protobuf__DoubleValue *w = rt_malloc(sizeof(*w));
    google__protobuf__double_value__init(w);
    w->value = v;
    return w;
}

#define CC_DESC (&unpuzzle__rt__v1__confusion_created__descriptor)
#define CM_DESC (&unpuzzle__rt__v1__course_metrics__descriptor)
#define RM_DESC (&unpuzzle__rt__v1__room_message__descriptor)

/* ---- names ---- */

static void test_json_name(void **state)
{
    char out[64];
    (void)state;
    rt_pbjson_json_name(out, sizeof(out), "video_timestamp_sec");
    assert_string_equal(out, "videoTimestampSec");
    rt_pbjson_json_name(out, sizeof(out), "p90_s");
    assert_string_equal(out, "p90S");
    rt_pbjson_json_name(out, sizeof(out), "text");
    assert_string_equal(out, "text");
    rt_pbjson_json_name(out, 6, "video_timestamp_sec");
    assert_string_equal(out, "video");
    out[0] = 'x';
    rt_pbjson_json_name(out, 0, "abc"); /* writes nothing */
    assert_int_equal(out[0], 'x');
}

/* ---- output shape and round trips ---- */

static void test_confusion_created_exact(void **state)
{
    Unpuzzle__Rt__V1__ConfusionCreated cc = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    (void)state;
    cc.event_id = "e1";
    cc.occurred_at = new_ts("2026-11-25T17:30:00.123456Z");
    cc.confusion_id = "c1";
    cc.course_id = "42";
    cc.lesson_id = "7";
    cc.user_id = "u1";
    cc.video_timestamp_sec = 61.5;
    cc.text = "Pourquoi \"ça\"?\n";
    assert_render(&cc, RT_PBJSON_DEFAULT,
                  "{\"eventId\":\"e1\",\"occurredAt\":\"2026-11-25T17:30:00.123Z\","
                  "\"confusionId\":\"c1\",\"courseId\":\"42\",\"lessonId\":\"7\","
                  "\"userId\":\"u1\",\"videoTimestampSec\":61.5,"
                  "\"text\":\"Pourquoi \\\"ça\\\"?\\n\"}");
    /* Milliseconds only on the way out, so round-trip a millisecond time. */
    cc.occurred_at->nanos = 123000000;
    assert_round_trip(&cc, RT_PBJSON_DEFAULT);
    free(cc.occurred_at);
}

static void test_zero_values_written(void **state)
{
    Unpuzzle__Rt__V1__ConfusionCreated cc = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    (void)state;
    /* Every scalar is written; a NULL Timestamp is omitted. */
    assert_render(&cc, RT_PBJSON_DEFAULT,
                  "{\"eventId\":\"\",\"confusionId\":\"\",\"courseId\":\"\",\"lessonId\":\"\","
                  "\"userId\":\"\",\"videoTimestampSec\":0.0,\"text\":\"\"}");
    assert_text_round_trip(CC_DESC, "{\"eventId\":\"\",\"confusionId\":\"\",\"courseId\":\"\","
                                    "\"lessonId\":\"\",\"userId\":\"\",\"videoTimestampSec\":0.0,"
                                    "\"text\":\"\"}");
}

static void test_course_metrics_wrappers_exact(void **state)
{
    Unpuzzle__Rt__V1__CourseMetrics cm = UNPUZZLE__RT__V1__COURSE_METRICS__INIT;
    (void)state;
    cm.course_id = "42";
    cm.window_s = 300;
    cm.learn_rate = new_double(1.5);
    cm.learn_rate_band = "good";
    cm.completion_rate = new_double(0);
    static const char want[] =
        "{\"courseId\":\"42\",\"windowS\":300,\"learnRate\":1.5,\"learnRateBand\":\"good\","
        "\"executionRate\":null,\"executionRateBand\":\"\",\"executionPaceS\":null,"
        "\"activeStudentCount\":0,\"activeStudents\":[],\"completionRate\":0.0,"
        "\"avgProgress\":null,\"strugglingTopics\":[],\"daily\":[],\"students\":[],"
        "\"enrolledStudents\":0}";
    assert_render(&cm, RT_PBJSON_DEFAULT, want);
    assert_round_trip(&cm, RT_PBJSON_DEFAULT);
    free(cm.learn_rate);
    free(cm.completion_rate);

    /* null and absent both mean "not set"; integers are fine for doubles. */
    ProtobufCMessage *m = parse(CM_DESC, "{\"courseId\":\"42\",\"learnRate\":null,"
                                         "\"executionRate\":7,\"activeStudents\":null}");
    Unpuzzle__Rt__V1__CourseMetrics *p = (Unpuzzle__Rt__V1__CourseMetrics *)m;
    assert_null(p->learn_rate);
    assert_non_null(p->execution_rate);
    assert_true(p->execution_rate->value == 7.0);
    assert_int_equal(p->n_active_students, 0);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_course_metrics_full_round_trip(void **state)
{
    Unpuzzle__Rt__V1__CourseMetrics cm = UNPUZZLE__RT__V1__COURSE_METRICS__INIT;
    Unpuzzle__Rt__V1__ActiveStudent as[2] = {UNPUZZLE__RT__V1__ACTIVE_STUDENT__INIT,
                                             UNPUZZLE__RT__V1__ACTIVE_STUDENT__INIT};
    Unpuzzle__Rt__V1__ActiveStudent *asp[2] = {&as[0], &as[1]};
    Unpuzzle__Rt__V1__StrugglingTopic st = UNPUZZLE__RT__V1__STRUGGLING_TOPIC__INIT;
    Unpuzzle__Rt__V1__StrugglingTopic *stp[1] = {&st};
    Unpuzzle__Rt__V1__ConfusionCounts counts = UNPUZZLE__RT__V1__CONFUSION_COUNTS__INIT;
    Unpuzzle__Rt__V1__ResponseTime rt = UNPUZZLE__RT__V1__RESPONSE_TIME__INIT;
    Unpuzzle__Rt__V1__CurrencyRevenue cur[2] = {UNPUZZLE__RT__V1__CURRENCY_REVENUE__INIT,
                                                UNPUZZLE__RT__V1__CURRENCY_REVENUE__INIT};
    Unpuzzle__Rt__V1__CurrencyRevenue *curp[2] = {&cur[0], &cur[1]};
    Unpuzzle__Rt__V1__LastPurchase lp = UNPUZZLE__RT__V1__LAST_PURCHASE__INIT;
    Unpuzzle__Rt__V1__Revenue rev = UNPUZZLE__RT__V1__REVENUE__INIT;
    Unpuzzle__Rt__V1__DailyPoint dp = UNPUZZLE__RT__V1__DAILY_POINT__INIT;
    Unpuzzle__Rt__V1__DailyPoint *dpp[1] = {&dp};
    Unpuzzle__Rt__V1__StudentInsight si = UNPUZZLE__RT__V1__STUDENT_INSIGHT__INIT;
    Unpuzzle__Rt__V1__StudentInsight *sip[1] = {&si};
    (void)state;

    cm.course_id = "42";
    cm.end = new_ts("2026-11-25T17:30:00Z");
    cm.window_s = 3600;
    cm.learn_rate = new_double(12.25);
    cm.execution_rate = new_double(87.5);
    cm.execution_pace_s = new_double(0.1);
    cm.active_student_count = 2;
    as[0].user_id = "u1";
    as[0].lesson_id = "7";
    as[0].since = new_ts("2026-11-25T17:00:00.250Z");
    as[1].user_id = "u2";
    cm.n_active_students = 2;
    cm.active_students = asp;
    counts.open = 3;
    counts.in_window = 2;
    counts.total = UINT64_C(18446744073709551615); /* > INT64_MAX: a string */
    cm.confusions = &counts;
    st.lesson_id = "7";
    st.timestamp = "61:30";
    st.bucket_start_sec = 3690;
    st.student_count = 4;
    st.resolved = 1;
    cm.n_struggling_topics = 1;
    cm.struggling_topics = stp;
    rt.median_s = new_double(30);
    rt.waiting = 5;
    cm.response_time = &rt;
    cur[0].currency = "USD";
    cur[0].today_cents = -500;
    cur[0].all_time_cents = INT64_C(9007199254740993);
    cur[1].currency = "EUR";
    rev.n_currencies = 2;
    rev.currencies = curp;
    lp.purchase_id = "p1";
    lp.amount_cents = 4999;
    lp.occurred_at = new_ts("1970-01-01T00:00:00Z");
    rev.last_purchase = &lp;
    cm.revenue = &rev;
    dp.date = "2026-11-25";
    dp.watch_minutes = 1e-3;
    cm.n_daily = 1;
    cm.daily = dpp;
    si.user_id = "u1";
    si.progress = new_double(-2.5e10);
    si.needs_help = 1;
    cm.n_students = 1;
    cm.students = sip;
    cm.enrolled_students = 4000000000u;

    assert_round_trip(&cm, RT_PBJSON_DEFAULT);
    char *s = render(&cm, RT_PBJSON_DEFAULT);
    assert_non_null(strstr(s, "\"total\":\"18446744073709551615\""));
    assert_non_null(strstr(s, "\"allTimeCents\":9007199254740993"));
    assert_non_null(strstr(s, "\"since\":\"2026-11-25T17:00:00.250Z\""));
    assert_non_null(strstr(s, "\"occurredAt\":\"1970-01-01T00:00:00.000Z\""));
    assert_non_null(strstr(s, "\"studentCount\":4,\"resolved\":true}"));
    free(s);

    free(cm.end);
    free(cm.learn_rate);
    free(cm.execution_rate);
    free(cm.execution_pace_s);
    free(as[0].since);
    free(rt.median_s);
    free(lp.occurred_at);
    free(si.progress);
}

static void test_enums(void **state)
{
    Unpuzzle__Rt__V1__PromptResponded pr = UNPUZZLE__RT__V1__PROMPT_RESPONDED__INIT;
    Unpuzzle__Rt__V1__VerifyReply vr = UNPUZZLE__RT__V1__VERIFY_REPLY__INIT;
    (void)state;
    pr.kind = UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_QUIZ;
    pr.action = UNPUZZLE__RT__V1__PROMPT_ACTION__PROMPT_ACTION_UNSPECIFIED;
    assert_render(&pr, RT_PBJSON_DEFAULT,
                  "{\"eventId\":\"\",\"courseId\":\"\",\"lessonId\":\"\",\"userId\":\"\","
                  "\"promptId\":\"\",\"kind\":\"quiz\",\"action\":\"\"}");
    assert_round_trip(&pr, RT_PBJSON_DEFAULT);
    pr.kind = UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_REFLECTION;
    pr.action = UNPUZZLE__RT__V1__PROMPT_ACTION__PROMPT_ACTION_SKIPPED;
    assert_round_trip(&pr, RT_PBJSON_DEFAULT);

    vr.ok = 0;
    vr.role = UNPUZZLE__RT__V1__ROLE__ROLE_INSTRUCTOR;
    vr.error = UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_ISSUED_IN_FUTURE;
    char *s = render(&vr, RT_PBJSON_DEFAULT);
    assert_non_null(strstr(s, "\"role\":\"instructor\""));
    assert_non_null(strstr(s, "\"error\":\"issued_in_future\""));
    free(s);
    assert_round_trip(&vr, RT_PBJSON_DEFAULT);

    /* A number this build has no name for is "missing" (""), like 0. */
    vr.error = (Unpuzzle__Rt__V1__VerifyError)99;
    s = render(&vr, RT_PBJSON_DEFAULT);
    assert_non_null(strstr(s, "\"error\":\"\""));
    free(s);

    ProtobufCMessage *m =
        parse(&unpuzzle__rt__v1__prompt_shown__descriptor, "{\"kind\":\"reflection\"}");
    assert_int_equal(((Unpuzzle__Rt__V1__PromptShown *)m)->kind,
                     UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_REFLECTION);
    protobuf_c_message_free_unpacked(m, NULL);
}

static Unpuzzle__Rt__V1__RoomMessage *room_message_with_confusion(void)
{
    Unpuzzle__Rt__V1__RoomMessage *rm = rt_malloc(sizeof(*rm));
    Unpuzzle__Rt__V1__ConfusionCreated *cc = rt_malloc(sizeof(*cc));
    unpuzzle__rt__v1__room_message__init(rm);
    unpuzzle__rt__v1__confusion_created__init(cc);
    rm->type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_CONFUSION;
    rm->action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_CREATE;
    rm->timestamp = new_ts("2026-11-25T17:30:00.123Z");
    rm->user_id = rt_strdup("u1");
    rm->event_id = rt_strdup("e1");
    cc->event_id = rt_strdup("e1");
    cc->confusion_id = rt_strdup("c1");
    cc->course_id = rt_strdup("42");
    cc->lesson_id = rt_strdup("7");
    cc->user_id = rt_strdup("u1");
    cc->video_timestamp_sec = 12;
    cc->text = rt_strdup("lost");
    rm->payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED;
    rm->confusion_created = cc;
    return rm;
}

static void test_room_message_oneof(void **state)
{
    Unpuzzle__Rt__V1__RoomMessage *rm = room_message_with_confusion();
    static const char inner[] =
        "{\"eventId\":\"e1\",\"confusionId\":\"c1\",\"courseId\":\"42\",\"lessonId\":\"7\","
        "\"userId\":\"u1\",\"videoTimestampSec\":12.0,\"text\":\"lost\"}";
    static const char head[] = "{\"type\":\"confusion\",\"action\":\"create\","
                               "\"timestamp\":\"2026-11-25T17:30:00.123Z\",\"userId\":\"u1\","
                               "\"eventId\":\"e1\",\"originConnectionId\":\"\",";
    char want[1024];
    (void)state;

    snprintf(want, sizeof(want), "%s\"confusionCreated\":%s}", head, inner);
    assert_render(rm, RT_PBJSON_DEFAULT, want);
    assert_round_trip(rm, RT_PBJSON_DEFAULT);

    snprintf(want, sizeof(want), "%s\"payload\":%s}", head, inner);
    assert_render(rm, RT_PBJSON_ONEOF_AS_GROUP, want);

    /* The parsed member is the set one. */
    ProtobufCMessage *m = parse(RM_DESC, "{\"progress\":{\"positionSec\":3}}");
    Unpuzzle__Rt__V1__RoomMessage *p = (Unpuzzle__Rt__V1__RoomMessage *)m;
    assert_int_equal(p->payload_case, UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_PROGRESS);
    assert_true(p->progress->position_sec == 3.0);
    protobuf_c_message_free_unpacked(m, NULL);

    /* No member set: the oneof is omitted in both renderings. */
    m = parse(RM_DESC, "{\"type\":\"analytics\",\"confusionCreated\":null}");
    assert_int_equal(((Unpuzzle__Rt__V1__RoomMessage *)m)->payload_case, 0);
    assert_render(m, RT_PBJSON_ONEOF_AS_GROUP,
                  "{\"type\":\"analytics\",\"action\":\"\",\"userId\":\"\",\"eventId\":\"\",\"originConnectionId\":\"\"}");
    protobuf_c_message_free_unpacked(m, NULL);

    protobuf_c_message_free_unpacked(&rm->base, NULL);
}

static void test_scalar_oneof_group(void **state)
{
    Unpuzzle__Rt__V1__NotificationRequested nr = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__INIT;
    char *s;
    (void)state;
    nr.recipient_case = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_COURSE_ID;
    nr.course_id = "42";
    s = render(&nr, RT_PBJSON_ONEOF_AS_GROUP);
    assert_non_null(strstr(s, "\"eventId\":\"\",\"recipient\":\"42\",\"kind\""));
    free(s);
    s = render(&nr, RT_PBJSON_DEFAULT);
    assert_non_null(strstr(s, "\"eventId\":\"\",\"courseId\":\"42\",\"kind\""));
    free(s);
    assert_round_trip(&nr, RT_PBJSON_DEFAULT);
}

static void test_repeated_strings_and_64bit_strings(void **state)
{
    Unpuzzle__Rt__V1__NotificationsRead nr = UNPUZZLE__RT__V1__NOTIFICATIONS_READ__INIT;
    char *ids[3] = {"n1", "n2", "n3"};
    (void)state;
    nr.user_id = "u1";
    nr.n_notification_ids = 3;
    nr.notification_ids = ids;
    assert_render(
        &nr, RT_PBJSON_DEFAULT,
        "{\"eventId\":\"\",\"userId\":\"u1\",\"notificationIds\":[\"n1\",\"n2\",\"n3\"]}");
    assert_round_trip(&nr, RT_PBJSON_DEFAULT);

    /* proto3 JSON writes 64-bit integers as strings: accepted on input. */
    ProtobufCMessage *m = parse(&unpuzzle__rt__v1__purchase_completed__descriptor,
                                "{\"amountCents\":\"-9223372036854775808\"}");
    assert_true(((Unpuzzle__Rt__V1__PurchaseCompleted *)m)->amount_cents == INT64_MIN);
    protobuf_c_message_free_unpacked(m, NULL);
    m = parse(&unpuzzle__rt__v1__presence_update__descriptor,
              "{\"sequence\":\"18446744073709551615\",\"intervalMs\":1e3}");
    assert_true(((Unpuzzle__Rt__V1__PresenceUpdate *)m)->sequence == UINT64_MAX);
    assert_int_equal(((Unpuzzle__Rt__V1__PresenceUpdate *)m)->interval_ms, 1000);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_bytes_and_float_wrappers(void **state)
{
    Google__Protobuf__BytesValue bv = GOOGLE__PROTOBUF__BYTES_VALUE__INIT;
    Google__Protobuf__FloatValue fv = GOOGLE__PROTOBUF__FLOAT_VALUE__INIT;
    uint8_t raw[] = {'h', 'e', 'l', 'l', 'o', 0, 0xff};
    (void)state;
    bv.value.data = raw;
    bv.value.len = sizeof(raw);
    assert_render(&bv, RT_PBJSON_DEFAULT, "{\"value\":\"aGVsbG8A/w==\"}");
    assert_round_trip(&bv, RT_PBJSON_DEFAULT);
    for (size_t n = 0; n <= sizeof(raw); n++) {
        bv.value.len = n;
        assert_round_trip(&bv, RT_PBJSON_DEFAULT);
    }
    /* URL-safe alphabet and missing padding are accepted too. */
    ProtobufCMessage *m =
        parse(&google__protobuf__bytes_value__descriptor, "{\"value\":\"aGVsbG8A_w\"}");
    assert_int_equal(((Google__Protobuf__BytesValue *)m)->value.len, sizeof(raw));
    assert_memory_equal(((Google__Protobuf__BytesValue *)m)->value.data, raw, sizeof(raw));
    protobuf_c_message_free_unpacked(m, NULL);
    expect_error(&google__protobuf__bytes_value__descriptor, "{\"value\":\"a!==\"}",
                 "value: not valid base64");
    expect_error(&google__protobuf__bytes_value__descriptor, "{\"value\":\"abcde\"}",
                 "value: not valid base64");

    fv.value = 0.1f;
    assert_round_trip(&fv, RT_PBJSON_DEFAULT);
    expect_error(&google__protobuf__float_value__descriptor, "{\"value\":1e39}",
                 "value: out of range for float");
}

static void test_multibyte_limit_accepted(void **state)
{
    /* 4000 two-byte and 4000 four-byte characters: at the cap, accepted. */
    static const char *const chars[] = {"\xc3\xa9", "\xf0\x9f\x98\x80"};
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        size_t clen = strlen(chars[k]);
        char *json = rt_malloc(4000 * clen + 64);
        size_t o = (size_t)sprintf(json, "{\"text\":\"");
        for (int i = 0; i < 4000; i++) {
            memcpy(json + o, chars[k], clen);
            o += clen;
        }
        strcpy(json + o, "\"}");
        ProtobufCMessage *m = parse(CC_DESC, json);
        assert_int_equal(strlen(((Unpuzzle__Rt__V1__ConfusionCreated *)m)->text), 4000 * clen);
        protobuf_c_message_free_unpacked(m, NULL);
        /* One more character is too many. */
        memcpy(json + o, chars[k], clen);
        strcpy(json + o + clen, "\"}");
        expect_error(CC_DESC, json, "text: longer than 4000 characters");
        free(json);
    }
}

static void test_from_json_keeps_input(void **state)
{
    json_t *in = json_pack("{s:s, s:f}", "eventId", "e9", "videoTimestampSec", 2.5);
    ProtobufCMessage *m = NULL;
    json_t *out = NULL;
    (void)state;
    assert_int_equal(rt_pbjson_from_json(&m, CC_DESC, in, NULL, NULL, 0), RT_OK);
    assert_string_equal(((Unpuzzle__Rt__V1__ConfusionCreated *)m)->event_id, "e9");
    assert_int_equal(rt_pbjson_to_json(&out, m, RT_PBJSON_DEFAULT), RT_OK);
    assert_true(json_is_object(out));
    assert_string_equal(json_string_value(json_object_get(out, "eventId")), "e9");
    assert_true(json_real_value(json_object_get(out, "videoTimestampSec")) == 2.5);
    json_decref(out);
    json_decref(in);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- input errors ---- */

static void test_error_unknown_field(void **state)
{
    (void)state;
    expect_error(CC_DESC, "{\"eventId\":\"e\",\"bogus\":1}", "bogus: unknown field");
    /* Only the camelCase spelling is a field. */
    expect_error(CC_DESC, "{\"event_id\":\"e\"}", "event_id: unknown field");
    expect_error(RM_DESC, "{\"analytics\":{\"revenue\":{\"currencies\":[{\"nope\":null}]}}}",
                 "analytics.revenue.currencies[0].nope: unknown field");
    /* The group name is output only. */
    expect_error(RM_DESC, "{\"payload\":{}}", "payload: unknown field");
}

static void test_error_wrong_types(void **state)
{
    (void)state;
    expect_error(CC_DESC, "{\"eventId\":1}", "eventId: expected a string");
    expect_error(CC_DESC, "{\"eventId\":{}}", "eventId: expected a string");
    expect_error(CC_DESC, "{\"videoTimestampSec\":\"1.5\"}",
                 "videoTimestampSec: expected a number");
    expect_error(CC_DESC, "{\"videoTimestampSec\":\"NaN\"}",
                 "videoTimestampSec: expected a number");
    expect_error(CC_DESC, "{\"videoTimestampSec\":true}", "videoTimestampSec: expected a number");
    expect_error(CC_DESC, "{\"occurredAt\":1764091800}", "occurredAt: expected a string");
    expect_error(&unpuzzle__rt__v1__progress_updated__descriptor, "{\"playing\":1}",
                 "playing: expected true or false");
    expect_error(&unpuzzle__rt__v1__progress_updated__descriptor, "{\"playing\":\"true\"}",
                 "playing: expected true or false");
    expect_error(CM_DESC, "{\"windowS\":\"5\"}", "windowS: expected an integer");
    expect_error(CM_DESC, "{\"windowS\":1.5}", "windowS: expected an integer");
    expect_error(CM_DESC, "{\"learnRate\":\"x\"}", "learnRate: expected a number");
    expect_error(CM_DESC, "{\"confusions\":[]}", "confusions: expected an object");
    expect_error(CM_DESC, "{\"activeStudents\":{}}", "activeStudents: expected an array");
    expect_error(CM_DESC, "{\"activeStudents\":[{},\"u1\"]}",
                 "activeStudents[1]: expected an object");
    expect_error(CM_DESC, "{\"activeStudents\":[null]}", "activeStudents[0]: null in an array");
    expect_error(&unpuzzle__rt__v1__prompt_shown__descriptor, "{\"kind\":1}",
                 "kind: expected a string");
    expect_error(RM_DESC, "{\"confusionCreated\":\"x\"}", "confusionCreated: expected an object");
    expect_error(&unpuzzle__rt__v1__notifications_read__descriptor,
                 "{\"notificationIds\":[\"a\",1]}", "notificationIds[1]: expected a string");
    expect_error(&unpuzzle__rt__v1__purchase_completed__descriptor, "{\"amountCents\":\"12x\"}",
                 "amountCents: expected an integer");
    expect_error(&unpuzzle__rt__v1__purchase_completed__descriptor, "{\"amountCents\":\"+1\"}",
                 "amountCents: expected an integer");
    expect_error(&unpuzzle__rt__v1__purchase_completed__descriptor, "{\"amountCents\":[]}",
                 "amountCents: expected an integer");
}

static void test_error_ranges(void **state)
{
    (void)state;
    expect_error(&google__protobuf__int32_value__descriptor, "{\"value\":2147483648}",
                 "value: out of range for int32");
    expect_error(&google__protobuf__int32_value__descriptor, "{\"value\":-2147483649}",
                 "value: out of range for int32");
    expect_error(CM_DESC, "{\"windowS\":4294967296}", "windowS: out of range for uint32");
    expect_error(CM_DESC, "{\"windowS\":-1}", "windowS: out of range for uint32");
    expect_error(CM_DESC, "{\"confusions\":{\"open\":-1}}",
                 "confusions.open: out of range for uint64");
    expect_error(&unpuzzle__rt__v1__purchase_completed__descriptor,
                 "{\"amountCents\":\"9223372036854775808\"}",
                 "amountCents: out of range for int64");
    expect_error(&unpuzzle__rt__v1__presence_update__descriptor,
                 "{\"sequence\":\"18446744073709551616\"}", "sequence: out of range for uint64");
    expect_error_prefix(CC_DESC, "{\"videoTimestampSec\":1e999}", "$: number out of range");

    ProtobufCMessage *m =
        parse(&google__protobuf__int32_value__descriptor, "{\"value\":-2147483648}");
    assert_int_equal(((Google__Protobuf__Int32Value *)m)->value, INT32_MIN);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_error_strings(void **state)
{
    char *json = rt_malloc(4001 + 64);
    (void)state;
    strcpy(json, "{\"text\":\"");
    memset(json + 9, 'a', 4001);
    strcpy(json + 9 + 4001, "\"}");
    expect_error(CC_DESC, json, "text: longer than 4000 characters");
    json[9 + 4000] = '"';
    json[9 + 4001] = '}';
    json[9 + 4002] = '\0';
    ProtobufCMessage *m = parse(CC_DESC, json);
    protobuf_c_message_free_unpacked(m, NULL);
    free(json);

    /* Limits are the caller's. */
    rt_pbjson_limits small = rt_pbjson_default_limits;
    small.max_string_chars = 3;
    expect_error_limits(RM_DESC, "{\"confusionCreated\":{\"text\":\"abcd\"}}", &small,
                        "confusionCreated.text: longer than 3 characters");

    /* Invalid UTF-8: refused by the parser, or by us on a hand-built json_t. */
    expect_error_prefix(CC_DESC, "{\"text\":\"a\xff\"}", "$: not valid UTF-8");
    expect_error_prefix(CC_DESC, "{\"text\":\"\xed\xa0\x80\"}", "$: not valid UTF-8");
    json_t *in = json_object();
    json_object_set_new(in, "text", json_stringn_nocheck("a\xc0\xaf", 3));
    char err[128];
    m = NULL;
    assert_int_equal(rt_pbjson_from_json(&m, CC_DESC, in, NULL, err, sizeof(err)), RT_ERR_JSON);
    assert_null(m);
    assert_string_equal(err, "text: not valid UTF-8");
    json_decref(in);

    /* Embedded NUL. */
    expect_error(CC_DESC, "{\"text\":\"a\\u0000b\"}", "text: contains a NUL character");
    expect_error(&unpuzzle__rt__v1__prompt_shown__descriptor, "{\"kind\":\"quiz\\u0000x\"}",
                 "kind: contains a NUL character");
    expect_error_prefix(CC_DESC, "{\"text\\u0000\":\"a\"}", "$: contains a NUL character");
    in = json_object();
    json_object_setn_new_nocheck(in, "text\0x", 6, json_string("a"));
    assert_int_equal(rt_pbjson_from_json(&m, CC_DESC, in, NULL, err, sizeof(err)), RT_ERR_JSON);
    assert_string_equal(err, "text?x: unknown field");
    json_decref(in);
}

static void test_error_enum_and_timestamp(void **state)
{
    const ProtobufCMessageDescriptor *ps = &unpuzzle__rt__v1__prompt_shown__descriptor;
    (void)state;
    expect_error(ps, "{\"kind\":\"bogus\"}", "kind: unknown enum value");
    expect_error(ps, "{\"kind\":\"QUIZ\"}", "kind: unknown enum value");
    expect_error(ps, "{\"kind\":\"PROMPT_KIND_QUIZ\"}", "kind: unknown enum value");
    expect_error(ps, "{\"kind\":\" quiz\"}", "kind: unknown enum value");

    expect_error(CC_DESC, "{\"occurredAt\":\"yesterday\"}",
                 "occurredAt: not an RFC 3339 timestamp");
    expect_error(CC_DESC, "{\"occurredAt\":\"2026-13-01T00:00:00Z\"}",
                 "occurredAt: not an RFC 3339 timestamp");
    expect_error(CC_DESC, "{\"occurredAt\":\"2026-11-25T17:30:00\"}",
                 "occurredAt: not an RFC 3339 timestamp");
    expect_error(CC_DESC, "{\"occurredAt\":\"2026-11-25T17:30:00Z\\u0000\"}",
                 "occurredAt: contains a NUL character");
    expect_error(CC_DESC, "{\"occurredAt\":\"0000-12-31T23:59:59Z\"}",
                 "occurredAt: timestamp out of range");

    /* Any RFC 3339 is taken; UTC milliseconds come out. */
    ProtobufCMessage *m = parse(CC_DESC, "{\"occurredAt\":\"2026-11-25T18:30:00.5+01:00\"}");
    assert_render(m, RT_PBJSON_DEFAULT,
                  "{\"eventId\":\"\",\"occurredAt\":\"2026-11-25T17:30:00.500Z\","
                  "\"confusionId\":\"\",\"courseId\":\"\",\"lessonId\":\"\",\"userId\":\"\","
                  "\"videoTimestampSec\":0.0,\"text\":\"\"}");
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_error_oneof_depth_repeated(void **state)
{
    rt_pbjson_limits lim = rt_pbjson_default_limits;
    (void)state;
    expect_error(RM_DESC, "{\"confusionCreated\":{},\"progress\":{}}",
                 "progress: another member of its oneof is already set");
    expect_error(&unpuzzle__rt__v1__notification_requested__descriptor,
                 "{\"userId\":\"u1\",\"courseId\":\"42\"}",
                 "courseId: another member of its oneof is already set");
    /* A member given as null is not set. */
    ProtobufCMessage *m = parse(&unpuzzle__rt__v1__notification_requested__descriptor,
                                "{\"userId\":null,\"courseId\":\"42\"}");
    protobuf_c_message_free_unpacked(m, NULL);

    lim.max_depth = 2;
    expect_error_limits(RM_DESC, "{\"analytics\":{\"revenue\":{}}}", &lim,
                        "analytics.revenue: nested deeper than 2 levels");
    m = NULL;
    assert_int_equal(rt_pbjson_from_string(&m, RM_DESC, "{\"analytics\":{\"courseId\":\"1\"}}", 30,
                                           &lim, NULL, 0),
                     RT_OK);
    protobuf_c_message_free_unpacked(m, NULL);

    lim = rt_pbjson_default_limits;
    lim.max_repeated = 2;
    expect_error_limits(&unpuzzle__rt__v1__notifications_read__descriptor,
                        "{\"notificationIds\":[\"a\",\"b\",\"c\"]}", &lim,
                        "notificationIds: more than 2 items");

    /* Default: 1000 items pass, 1001 do not. */
    char *json = rt_malloc(8 * 1001 + 64);
    size_t o = (size_t)sprintf(json, "{\"notificationIds\":[");
    for (int i = 0; i < 1001; i++)
        o += (size_t)sprintf(json + o, "%s\"n\"", i ? "," : "");
    strcpy(json + o, "]}");
    expect_error(&unpuzzle__rt__v1__notifications_read__descriptor, json,
                 "notificationIds: more than 1000 items");
    strcpy(json + o - 4, "]}"); /* drop the last ,"n" */
    m = parse(&unpuzzle__rt__v1__notifications_read__descriptor, json);
    assert_int_equal(((Unpuzzle__Rt__V1__NotificationsRead *)m)->n_notification_ids, 1000);
    protobuf_c_message_free_unpacked(m, NULL);
    free(json);
}

static void test_error_document_level(void **state)
{
    (void)state;
    expect_error_prefix(CC_DESC, "{\"text\":\"a\",\"text\":\"b\"}", "text: duplicate key");
    expect_error_prefix(RM_DESC, "{\"progress\":{\"playing\":true,\"playing\":false}}",
                        "playing: duplicate key");
    expect_error(CC_DESC, "[]", "$: not a JSON object");
    expect_error(CC_DESC, "[{\"eventId\":\"e\"}]", "$: not a JSON object");
    expect_error(CC_DESC, "\"x\"", "$: not a JSON object");
    expect_error(CC_DESC, "1", "$: not a JSON object");
    expect_error(CC_DESC, "null", "$: not a JSON object");
    expect_error_prefix(CC_DESC, "", "$: ");
    expect_error_prefix(CC_DESC, "{\"text\":\"a\"", "$: unexpected end of JSON");
    expect_error_prefix(CC_DESC, "{} {}", "$: text after the JSON value");
    /* The length is honoured: the text need not be NUL-terminated. */
    ProtobufCMessage *m = NULL;
    assert_int_equal(rt_pbjson_from_string(&m, CC_DESC, "{}garbage", 2, NULL, NULL, 0), RT_OK);
    protobuf_c_message_free_unpacked(m, NULL);

    json_t *arr = json_array();
    char err[64];
    assert_int_equal(rt_pbjson_from_json(&m, CC_DESC, arr, NULL, err, sizeof(err)), RT_ERR_JSON);
    assert_string_equal(err, "$: not a JSON object");
    json_decref(arr);
    /* err is optional, and a short one is truncated, not overrun. */
    assert_int_equal(rt_pbjson_from_string(&m, CC_DESC, "[]", 2, NULL, err, 4), RT_ERR_JSON);
    assert_string_equal(err, "$: ");
}

static void test_errors_never_echo_values(void **state)
{
    char err[256];
    ProtobufCMessage *m = NULL;
    static const char *const inputs[] = {
        "{\"playing\":\"supersecret\"}",
        "{\"playing\":supersecret}",
        "{\"playing\":\"supersecret\",\"playing\":1}",
        "{\"positionSec\":\"supersecret\"}",
        "[\"supersecret\"]",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        assert_int_equal(rt_pbjson_from_string(&m, &unpuzzle__rt__v1__progress_updated__descriptor,
                                               inputs[i], strlen(inputs[i]), NULL, err,
                                               sizeof(err)),
                         RT_ERR_JSON);
        assert_null(strstr(err, "supersecret"));
        assert_null(strstr(rt_error_message(), "supersecret"));
    }
}

/* ---- output errors ---- */

static void test_output_errors(void **state)
{
    Unpuzzle__Rt__V1__ConfusionCreated cc = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    Unpuzzle__Rt__V1__RoomMessage rm = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    char *s = (char *)&s;
    size_t n = 7;
    (void)state;

    cc.video_timestamp_sec = NAN;
    rm.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED;
    rm.confusion_created = &cc;
    assert_int_equal(rt_pbjson_to_string(&s, &n, &rm.base, RT_PBJSON_DEFAULT), RT_ERR_JSON);
    assert_null(s);
    assert_int_equal(n, 0);
    assert_string_equal(rt_error_message(),
                        "confusionCreated.videoTimestampSec: not a finite number");
    cc.video_timestamp_sec = INFINITY;
    assert_int_equal(rt_pbjson_to_string(&s, &n, &rm.base, RT_PBJSON_ONEOF_AS_GROUP), RT_ERR_JSON);
    assert_string_equal(rt_error_message(), "payload.videoTimestampSec: not a finite number");

    cc.video_timestamp_sec = 0;
    cc.text = "bad \xff";
    json_t *j = (json_t *)&j;
    assert_int_equal(rt_pbjson_to_json(&j, &rm.base, RT_PBJSON_DEFAULT), RT_ERR_JSON);
    assert_null(j);
    assert_string_equal(rt_error_message(), "confusionCreated.text: not valid UTF-8");

    cc.text = "";
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.nanos = 1000000000;
    cc.occurred_at = &ts;
    assert_int_equal(rt_pbjson_to_string(&s, NULL, &rm.base, RT_PBJSON_DEFAULT), RT_ERR_JSON);
    assert_string_equal(rt_error_message(), "confusionCreated.occurredAt: timestamp out of range");

    assert_int_equal(rt_pbjson_to_string(&s, NULL, NULL, 0), RT_ERR_INVALID_ARG);
    assert_int_equal(rt_pbjson_to_string(NULL, NULL, &rm.base, 0), RT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_name),
        cmocka_unit_test(test_confusion_created_exact),
        cmocka_unit_test(test_zero_values_written),
        cmocka_unit_test(test_course_metrics_wrappers_exact),
        cmocka_unit_test(test_course_metrics_full_round_trip),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_room_message_oneof),
        cmocka_unit_test(test_scalar_oneof_group),
        cmocka_unit_test(test_repeated_strings_and_64bit_strings),
        cmocka_unit_test(test_bytes_and_float_wrappers),
        cmocka_unit_test(test_multibyte_limit_accepted),
        cmocka_unit_test(test_from_json_keeps_input),
        cmocka_unit_test(test_error_unknown_field),
        cmocka_unit_test(test_error_wrong_types),
        cmocka_unit_test(test_error_ranges),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_error_enum_and_timestamp),
        cmocka_unit_test(test_error_oneof_depth_repeated),
        cmocka_unit_test(test_error_document_level),
        cmocka_unit_test(test_errors_never_echo_values),
        cmocka_unit_test(test_output_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
