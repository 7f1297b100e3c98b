/*
 * Python interop of the v1 contract: Django compiles the same .proto files
 * with `protoc --python_out`, so bytes must mean the same on both sides.
 *
 * The group setup generates the Python code into a temp dir with Debian's
 * protoc and runs tests/integration/proto_roundtrip.py (with /usr/bin/python3,
 * which has python3-protobuf) to encode messages and describe the schema:
 *   - Python -> C: protobuf-c unpacks what Python wrote, field by field, and
 *     rt_pbjson reads Python's canonical proto3 JSON of the same messages;
 *   - C -> Python: messages built by rt_pbjson from our JSON are packed by
 *     protobuf-c and checked field by field in Python (its exit status);
 *   - rt_pbjson_json_name() agrees with protoc's json_name for every field,
 *     and rt_pbjson knows the name of every oneof (RT_PBJSON_ONEOF_AS_GROUP),
 *     since protobuf-c's descriptors do not carry it.
 * Nothing is skipped: a missing protoc or python3-protobuf fails the test
 * with a message saying what to install. RT_TEST_KEEP=1 keeps the temp dir.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_alloc.h"
#include "rt_pbjson.h"
#include "rt_proto.h"
#include "rt_testpython.h"

#define SCRIPT RT_SOURCE_DIR "/tests/integration/proto_roundtrip.py"

/* Same values as proto_roundtrip.py. */
#define BIG_INT64 INT64_C(9007199254740993)

static char tmp_dir[] = "/tmp/rt-test-proto-python-XXXXXX";
static bool tmp_made;

/* ---- small process and file helpers ---- */

/* proto_roundtrip.py <command> <tmp_dir> with Debian's python3; its exit
 * status (its stderr is shown when it fails). */
static int python_script(const char *command)
{
    const char *args[] = {SCRIPT, command, tmp_dir, NULL};
    rt_test_python_result r = {0};
    if (rt_test_python_run(&r, args, NULL, 120000) != RT_OK) {
        fprintf(stderr, "%s\n", rt_error_message());
        rt_test_python_result_free(&r);
        return -1;
    }
    int rc = r.exit_code;
    if (rc != 0 && r.err)
        fprintf(stderr, "%s", r.err);
    rt_test_python_result_free(&r);
    return rc;
}

static char *path_in_tmp(const char *name)
{
    return rt_asprintf("%s/%s", tmp_dir, name);
}

static uint8_t *read_tmp_file(const char *name, size_t *len)
{
    char *path = path_in_tmp(name);
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long size;

    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    data = rt_malloc((size_t)size + 1);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    data[size] = 0;
    fclose(f);
    free(path);
    *len = (size_t)size;
    return data;
}

static void write_tmp_message(const char *name, const ProtobufCMessage *msg)
{
    char *path = path_in_tmp(name);
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = rt_malloc(n);
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(protobuf_c_message_pack(msg, buf), n);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(buf);
    free(path);
}

static ProtobufCMessage *unpack_tmp_file(const char *name, const ProtobufCMessageDescriptor *d)
{
    size_t len;
    uint8_t *data = read_tmp_file(name, &len);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, data);
    free(data);
    if (!m)
        fail_msg("protobuf-c cannot unpack %s as %s", name, d->name);
    return m;
}

static ProtobufCMessage *from_json_text(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    char err[256];
    if (rt_pbjson_from_string(&m, d, json, strlen(json), NULL, err, sizeof(err)) != RT_OK)
        fail_msg("rt_pbjson_from_string(%s): %s", d->name, err);
    return m;
}

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

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* ---- setup: protoc + Python ---- */

static int group_setup(void **state)
{
    int rc;
    (void)state;

    if (!mkdtemp(tmp_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    tmp_made = true;

    if (rt_test_python_generate(tmp_dir) != RT_OK) {
        fprintf(stderr, "%s\n", rt_error_message());
        return -1;
    }
    if ((rc = python_script("encode")) != 0) {
        fprintf(stderr, "proto_roundtrip.py encode failed (exit %d)\n", rc);
        return -1;
    }
    if ((rc = python_script("describe")) != 0) {
        fprintf(stderr, "proto_roundtrip.py describe failed (exit %d)\n", rc);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    const char *keep = getenv("RT_TEST_KEEP");
    (void)state;
    if (!tmp_made)
        return 0;
    if (keep && strcmp(keep, "1") == 0)
        fprintf(stderr, "kept %s\n", tmp_dir);
    else
        nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- Python -> C ---- */

static void test_python_to_c(void **state)
{
    (void)state;

    ProtobufCMessage *m = unpack_tmp_file("py_confusion_created.bin",
                                          &unpuzzle__rt__v1__confusion_created__descriptor);
    Unpuzzle__Rt__V1__ConfusionCreated *cc = (Unpuzzle__Rt__V1__ConfusionCreated *)m;
    assert_string_equal(cc->event_id, "e-1");
    assert_non_null(cc->occurred_at);
    assert_int_equal(cc->occurred_at->seconds, 1795627800);
    assert_int_equal(cc->occurred_at->nanos, 123000000);
    assert_string_equal(cc->confusion_id, "c-1");
    assert_string_equal(cc->course_id, "course-42");
    assert_string_equal(cc->lesson_id, "lesson-7");
    assert_string_equal(cc->user_id, "user-1");
    assert_true(cc->video_timestamp_sec == 61.5);
    assert_string_equal(cc->text, "\xc3\x87"
                                  "a bloque ici \xf0\x9f\x99\x82");
    /* Python's canonical proto3 JSON of the same message reads the same. */
    size_t len;
    char *json = (char *)read_tmp_file("py_confusion_created.json", &len);
    ProtobufCMessage *from_json =
        from_json_text(&unpuzzle__rt__v1__confusion_created__descriptor, json);
    assert_same_message(m, from_json);
    free(json);
    protobuf_c_message_free_unpacked(from_json, NULL);
    protobuf_c_message_free_unpacked(m, NULL);

    m = unpack_tmp_file("py_purchase_completed.bin",
                        &unpuzzle__rt__v1__purchase_completed__descriptor);
    Unpuzzle__Rt__V1__PurchaseCompleted *pc = (Unpuzzle__Rt__V1__PurchaseCompleted *)m;
    assert_string_equal(pc->event_id, "e-2");
    assert_int_equal(pc->occurred_at->seconds, 1795627801);
    assert_int_equal(pc->occurred_at->nanos, 0);
    assert_string_equal(pc->purchase_id, "p-1");
    assert_string_equal(pc->course_id, "course-42");
    assert_string_equal(pc->user_id, "user-2");
    assert_true(pc->amount_cents == BIG_INT64);
    assert_string_equal(pc->currency, "USD");
    json = (char *)read_tmp_file("py_purchase_completed.json", &len);
    from_json = from_json_text(&unpuzzle__rt__v1__purchase_completed__descriptor, json);
    assert_same_message(m, from_json);
    free(json);
    protobuf_c_message_free_unpacked(from_json, NULL);
    protobuf_c_message_free_unpacked(m, NULL);

    m = unpack_tmp_file("py_enrollment_changed.bin",
                        &unpuzzle__rt__v1__enrollment_changed__descriptor);
    Unpuzzle__Rt__V1__EnrollmentChanged *ec = (Unpuzzle__Rt__V1__EnrollmentChanged *)m;
    assert_string_equal(ec->event_id, "e-3");
    assert_int_equal(ec->occurred_at->seconds, 1795627802);
    assert_int_equal(ec->occurred_at->nanos, 999999999);
    assert_string_equal(ec->course_id, "course-42");
    assert_string_equal(ec->user_id, "user-3");
    assert_int_equal(ec->change, UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_COMPLETED);
    assert_int_equal(ec->role, UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_INSTRUCTOR);
    assert_string_equal(ec->actor_user_id, "admin-1");
    char *s = NULL;
    assert_int_equal(rt_pbjson_to_string(&s, NULL, m, RT_PBJSON_DEFAULT), RT_OK);
    assert_string_equal(s, "{\"eventId\":\"e-3\",\"occurredAt\":\"2026-11-25T17:30:02.999Z\","
                           "\"courseId\":\"course-42\",\"userId\":\"user-3\","
                           "\"change\":\"completed\",\"role\":\"instructor\","
                           "\"actorUserId\":\"admin-1\"}");
    free(s);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- C -> Python ---- */

static void test_c_to_python(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const ProtobufCMessageDescriptor *desc;
        const char *json;
    } cases[] = {
        {"c_course_metrics.bin", &unpuzzle__rt__v1__course_metrics__descriptor,
         "{\"courseId\":\"course-42\",\"end\":\"2026-11-25T18:30:00Z\",\"windowS\":3600,"
         "\"learnRate\":12.25,\"learnRateBand\":\"very_good\",\"executionRate\":null,"
         "\"avgProgress\":0,\"activeStudentCount\":2,"
         "\"activeStudents\":[{\"userId\":\"user-1\",\"lessonId\":\"lesson-7\"},"
         "{\"userId\":\"user-2\"}],"
         "\"confusions\":{\"open\":3,\"total\":\"18446744073709551615\"},"
         "\"revenue\":{\"currencies\":[{\"currency\":\"USD\",\"todayCents\":-500,"
         "\"allTimeCents\":9007199254740993},{\"currency\":\"EUR\",\"allTimeCents\":\"100\"}]},"
         "\"daily\":[{\"date\":\"2026-11-25\",\"learnRate\":1.5,\"watchMinutes\":90.25}],"
         "\"enrolledStudents\":4000000000}"},
        {"c_room_message.bin", &unpuzzle__rt__v1__room_message__descriptor,
         "{\"type\":\"purchase\",\"action\":\"create\",\"timestamp\":\"2026-11-25T17:30:03.5Z\","
         "\"userId\":\"user-2\",\"eventId\":\"e-2\",\"purchase\":{\"eventId\":\"e-2\","
         "\"occurredAt\":\"2026-11-25T17:30:01Z\",\"amountCents\":9007199254740993,"
         "\"currency\":\"EUR\"}}"},
        {"c_notification_requested.bin", &unpuzzle__rt__v1__notification_requested__descriptor,
         "{\"courseId\":\"course-42\",\"title\":\"Nouveau chapitre \\u2014 \\u00ab "
         "\\u00dcn\\u00efc\\u00f6d\\u00e9 \\u00bb\"}"},
        {"c_prompt_shown.bin", &unpuzzle__rt__v1__prompt_shown__descriptor,
         "{\"kind\":\"reflection\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ProtobufCMessage *m = from_json_text(cases[i].desc, cases[i].json);
        write_tmp_message(cases[i].file, m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    assert_int_equal(python_script("decode"), 0);
}

/* ---- names: protoc vs rt_pbjson ---- */

/* Every message of the contract (rt_proto.h). */
static const ProtobufCMessageDescriptor *const contract[] = {
    &unpuzzle__rt__v1__snapshot_request__descriptor,
    &unpuzzle__rt__v1__active_student__descriptor,
    &unpuzzle__rt__v1__confusion_counts__descriptor,
    &unpuzzle__rt__v1__struggling_topic__descriptor,
    &unpuzzle__rt__v1__response_time__descriptor,
    &unpuzzle__rt__v1__currency_revenue__descriptor,
    &unpuzzle__rt__v1__last_purchase__descriptor,
    &unpuzzle__rt__v1__revenue__descriptor,
    &unpuzzle__rt__v1__daily_point__descriptor,
    &unpuzzle__rt__v1__student_insight__descriptor,
    &unpuzzle__rt__v1__course_metrics__descriptor,
    &unpuzzle__rt__v1__verify_request__descriptor,
    &unpuzzle__rt__v1__verify_reply__descriptor,
    &unpuzzle__rt__v1__authorize_request__descriptor,
    &unpuzzle__rt__v1__authorize_reply__descriptor,
    &unpuzzle__rt__v1__confusion_created__descriptor,
    &unpuzzle__rt__v1__confusion_resolved__descriptor,
    &unpuzzle__rt__v1__question_created__descriptor,
    &unpuzzle__rt__v1__question_answered__descriptor,
    &unpuzzle__rt__v1__progress_updated__descriptor,
    &unpuzzle__rt__v1__lesson_completed__descriptor,
    &unpuzzle__rt__v1__prompt_shown__descriptor,
    &unpuzzle__rt__v1__prompt_responded__descriptor,
    &unpuzzle__rt__v1__quiz_submitted__descriptor,
    &unpuzzle__rt__v1__reflection_submitted__descriptor,
    &unpuzzle__rt__v1__purchase_completed__descriptor,
    &unpuzzle__rt__v1__enrollment_changed__descriptor,
    &unpuzzle__rt__v1__lesson_upserted__descriptor,
    &unpuzzle__rt__v1__course_updated__descriptor,
    &unpuzzle__rt__v1__notification_requested__descriptor,
    &unpuzzle__rt__v1__notifications_read__descriptor,
    &unpuzzle__rt__v1__notification__descriptor,
    &unpuzzle__rt__v1__list_request__descriptor,
    &unpuzzle__rt__v1__notification_list__descriptor,
    &unpuzzle__rt__v1__presence_entry__descriptor,
    &unpuzzle__rt__v1__presence_update__descriptor,
    &unpuzzle__rt__v1__presence_snapshot__descriptor,
    &unpuzzle__rt__v1__room_message__descriptor,
};

static const ProtobufCMessageDescriptor *contract_message(const char *full_name)
{
    for (size_t i = 0; i < sizeof(contract) / sizeof(contract[0]); i++) {
        if (strcmp(contract[i]->name, full_name) == 0)
            return contract[i];
    }
    return NULL;
}

static void test_json_names_match_protoc(void **state)
{
    size_t len, checked = 0, unknown = 0;
    char *text = (char *)read_tmp_file("descriptors.txt", &len);
    char *save = NULL;
    (void)state;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char message[256], field[128], json_name[128], ours[128];
        const ProtobufCMessageDescriptor *d;
        const ProtobufCFieldDescriptor *f;
        if (sscanf(line, "field %255s %127s %127s", message, field, json_name) != 3)
            continue;
        d = contract_message(message);
        if (!d) {
            /* A new message: its names are still checked once it is listed. */
            fprintf(stderr, "note: %s is not in test_proto_python.c's contract list\n", message);
            unknown++;
            continue;
        }
        f = protobuf_c_message_descriptor_get_field_by_name(d, field);
        if (!f)
            fail_msg("protoc knows %s.%s but protobuf-c does not", message, field);
        rt_pbjson_json_name(ours, sizeof(ours), f->name);
        if (strcmp(ours, json_name) != 0)
            fail_msg("%s.%s: rt_pbjson says \"%s\", protoc says \"%s\"", message, field, ours,
                     json_name);
        checked++;
    }
    free(text);
    assert_true(checked > 200);
    (void)unknown;
}

/* Bytes of a message holding only field `f` at its zero value. */
static size_t encode_lone_field(uint8_t *out, const ProtobufCFieldDescriptor *f)
{
    size_t n = 0, zeros = 0;
    unsigned wire;
    uint64_t tag;

    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        wire = 2, zeros = 1; /* length 0 */
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
        wire = 1, zeros = 8;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
        wire = 5, zeros = 4;
        break;
    default:
        wire = 0, zeros = 1; /* varint 0 */
        break;
    }
    tag = ((uint64_t)f->id << 3) | wire;
    do {
        out[n++] = (uint8_t)((tag & 0x7f) | (tag > 0x7f ? 0x80 : 0));
        tag >>= 7;
    } while (tag);
    memset(out + n, 0, zeros);
    return n + zeros;
}

static void test_oneof_names_match_protoc(void **state)
{
    size_t len, checked = 0;
    char *text = (char *)read_tmp_file("descriptors.txt", &len);
    char *save = NULL;
    (void)state;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char message[256], oneof[128], key[128];
        int used = 0;
        const ProtobufCMessageDescriptor *d;
        if (sscanf(line, "oneof %255s %127s %n", message, oneof, &used) != 2 || used == 0)
            continue;
        d = contract_message(message);
        if (!d)
            fail_msg("%s has a oneof but is not in test_proto_python.c's contract list", message);
        rt_pbjson_json_name(key, sizeof(key), oneof);
        char *members = line + used, *msave = NULL;
        for (char *member = strtok_r(members, " ", &msave); member;
             member = strtok_r(NULL, " ", &msave)) {
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(d, member);
            uint8_t bytes[16];
            char member_key[128];
            json_t *j = NULL;
            ProtobufCMessage *m;
            if (!f || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                fail_msg("%s.%s is not a oneof member for protobuf-c", message, member);
            m = protobuf_c_message_unpack(d, NULL, encode_lone_field(bytes, f), bytes);
            assert_non_null(m);
            if (rt_pbjson_to_json(&j, m, RT_PBJSON_ONEOF_AS_GROUP) != RT_OK)
                fail_msg("%s.%s with RT_PBJSON_ONEOF_AS_GROUP: %s (add \"%s\" to oneof_names "
                         "in common/rt_pbjson.c)",
                         message, member, rt_error_message(), oneof);
            rt_pbjson_json_name(member_key, sizeof(member_key), member);
            if (!json_object_get(j, key))
                fail_msg("%s.%s: no \"%s\" key with RT_PBJSON_ONEOF_AS_GROUP", message, member,
                         key);
            if (strcmp(key, member_key) != 0)
                assert_null(json_object_get(j, member_key));
            json_decref(j);
            assert_int_equal(rt_pbjson_to_json(&j, m, RT_PBJSON_DEFAULT), RT_OK);
            assert_non_null(json_object_get(j, member_key));
            json_decref(j);
            protobuf_c_message_free_unpacked(m, NULL);
            checked++;
        }
    }
    free(text);
    assert_true(checked >= 13); /* RoomMessage.payload (11) + NotificationRequested (2) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_to_c),
        cmocka_unit_test(test_c_to_python),
        cmocka_unit_test(test_json_names_match_protoc),
        cmocka_unit_test(test_oneof_names_match_protoc),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
