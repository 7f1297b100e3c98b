/*
 * Django's side of the EVENTS stream (docs/django.md), against the real
 * stack: nats-server running deploy/nats/nats-server.conf (per-service users
 * and permissions), PostgreSQL and the auth service, which creates EVENTS and
 * consumes enrollments and lessons.
 *
 *   - clients/django/example_publish.py, run with Debian's /usr/bin/python3 as
 *     NATS user django (python3-protobuf and the Python generated from
 *     proto/ with protoc, nothing else), publishes its story; nats.c then
 *     finds every event in EVENTS at the printed sequence, on the subject of
 *     its type, with Nats-Msg-Id = event_id, and protobuf-c decodes it into
 *     the fields the script set; the repeated purchase was stored once; auth
 *     applied the enrollment and the lesson (the events are valid for it);
 *   - tests/integration/django_publish_checks.py drives unpuzzle_events.py's
 *     failure paths (permission violation, JetStream error, no responders,
 *     lost ack, timeout, wrong password, bad input); here we check what
 *     reached NATS: the retried publishes carried the same Nats-Msg-Id, the
 *     lost-ack event is stored once, nothing else was stored, and the Python
 *     subject table is this file's (spec/subjects.md);
 *   - against a port where nothing listens the example fails with exit 1 and
 *     a message naming the address, without the password.
 * RT_TEST_KEEP=1 keeps the temp dirs.
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
#include <time.h>

#include "rt_alloc.h"
#include "rt_proto.h"
#include "rt_testdeploy.h"
#include "rt_testpython.h"
#include "rt_teststack.h"
#include "rt_time.h"

#define EXAMPLE RT_SOURCE_DIR "/clients/django/example_publish.py"
#define CHECKS RT_SOURCE_DIR "/tests/integration/django_publish_checks.py"
#define SILENT_SUBJECT "rt.v1.room.course.silent"

/* The values of example_publish.py's story. */
#define COURSE "course-sql-101"
#define LESSON "lesson-sql-101-01"
#define STUDENT "2f6c7e0a-5d3b-4c1e-9a57-3b8d0f1c2e4a"
#define PURCHASE "purchase-20431"

#define CHANGE(x) UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_##x
#define MEMBER(x) UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_##x

/* spec/subjects.md: the subject of every event of events.proto. */
static const struct {
    const char *subject;
    const ProtobufCMessageDescriptor *desc;
} event_types[] = {
    {"evt.v1.confusion.created", &unpuzzle__rt__v1__confusion_created__descriptor},
    {"evt.v1.confusion.resolved", &unpuzzle__rt__v1__confusion_resolved__descriptor},
    {"evt.v1.question.created", &unpuzzle__rt__v1__question_created__descriptor},
    {"evt.v1.question.answered", &unpuzzle__rt__v1__question_answered__descriptor},
    {"evt.v1.progress.updated", &unpuzzle__rt__v1__progress_updated__descriptor},
    {"evt.v1.lesson.completed", &unpuzzle__rt__v1__lesson_completed__descriptor},
    {"evt.v1.prompt.shown", &unpuzzle__rt__v1__prompt_shown__descriptor},
    {"evt.v1.prompt.responded", &unpuzzle__rt__v1__prompt_responded__descriptor},
    {"evt.v1.quiz.submitted", &unpuzzle__rt__v1__quiz_submitted__descriptor},
    {"evt.v1.reflection.submitted", &unpuzzle__rt__v1__reflection_submitted__descriptor},
    {"evt.v1.purchase.completed", &unpuzzle__rt__v1__purchase_completed__descriptor},
    {"evt.v1.enrollment.changed", &unpuzzle__rt__v1__enrollment_changed__descriptor},
    {"evt.v1.lesson.upserted", &unpuzzle__rt__v1__lesson_upserted__descriptor},
    {"evt.v1.course.updated", &unpuzzle__rt__v1__course_updated__descriptor},
    {"evt.v1.notification.requested", &unpuzzle__rt__v1__notification_requested__descriptor},
    {"evt.v1.notification.read", &unpuzzle__rt__v1__notifications_read__descriptor},
};
#define N_EVENT_TYPES (sizeof(event_types) / sizeof(event_types[0]))

static struct {
    char *dir; /* generated Python */
    rt_test_deploy_nats *nats;
    rt_test_pg *pg;
    rt_test_proc *auth;
    natsConnection *reader; /* RT_TEST_DEPLOY_READER: sees everything */
    jsCtx *js;
    char *django_password_env;
} T;

/* One "published ..." line of example_publish.py. */
typedef struct published {
    unsigned long long seq;
    bool duplicate;
    char subject[128], type[64], event_id[80];
} published;

/* ---- helpers ---- */

static const ProtobufCMessageDescriptor *descriptor_of_subject(const char *subject)
{
    for (size_t i = 0; i < N_EVENT_TYPES; i++) {
        if (strcmp(event_types[i].subject, subject) == 0)
            return event_types[i].desc;
    }
    return NULL;
}

/* The line after `line`, or NULL. */
static const char *next_line(const char *line)
{
    const char *nl = strchr(line, '\n');
    return nl ? nl + 1 : NULL;
}

/* Prints a script's whole output (fail_msg cuts long messages), then fails. */
static void fail_with_output(const char *what, int exit_code, const rt_test_python_result *res)
{
    fprintf(stderr, "---- %s: stdout ----\n%s---- %s: stderr ----\n%s----\n", what,
            res->out ? res->out : "", what, res->err ? res->err : "");
    fail_msg("%s exited %d (output above)", what, exit_code);
}

static void run_python(rt_test_python_result *res, const char *const *args, int timeout_ms)
{
    const char *env[] = {"NATS_USER=django", T.django_password_env, NULL};
    rt_status s = rt_test_python_run(res, args, env, timeout_ms);
    if (s != RT_OK) {
        fprintf(stderr, "%s: %s\n", args[0], rt_error_message());
        fail_with_output(args[0], res->exit_code, res);
    }
}

static uint64_t stream_msgs(uint64_t *last_seq)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = js_GetStreamInfo(&si, T.js, "EVENTS", NULL, &jerr);
    if (ns != NATS_OK)
        fail_msg("stream info EVENTS: %s (%d)", natsStatus_GetText(ns), (int)jerr);
    uint64_t n = si->State.Msgs;
    if (last_seq)
        *last_seq = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return n;
}

/* The stored message `seq` of EVENTS; checks its subject and Nats-Msg-Id. */
static natsMsg *stored_msg(uint64_t seq, const char *subject, const char *event_id)
{
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    const char *msg_id = NULL;
    natsStatus ns = js_GetMsg(&msg, T.js, "EVENTS", seq, NULL, &jerr);
    if (ns != NATS_OK)
        fail_msg("EVENTS has no message %llu: %s (%d)", (unsigned long long)seq,
                 natsStatus_GetText(ns), (int)jerr);
    assert_string_equal(natsMsg_GetSubject(msg), subject);
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &msg_id) != NATS_OK)
        fail_msg("message %llu on %s has no Nats-Msg-Id header", (unsigned long long)seq, subject);
    assert_string_equal(msg_id, event_id);
    return msg;
}

/* How many stored messages of EVENTS carry Nats-Msg-Id = event_id. */
static int count_msg_id(const char *event_id)
{
    uint64_t last = 0;
    int n = 0;
    stream_msgs(&last);
    for (uint64_t seq = 1; seq <= last; seq++) {
        natsMsg *msg = NULL;
        jsErrCode jerr = 0;
        const char *id = NULL;
        if (js_GetMsg(&msg, T.js, "EVENTS", seq, NULL, &jerr) != NATS_OK)
            continue;
        if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && strcmp(id, event_id) == 0)
            n++;
        natsMsg_Destroy(msg);
    }
    return n;
}

static void assert_recent(const Google__Protobuf__Timestamp *t)
{
    int64_t now = rt_time_now_ms() / 1000;
    assert_non_null(t);
    if (t->seconds < now - 600 || t->seconds > now + 60)
        fail_msg("occurred_at %lld is not around now (%lld)", (long long)t->seconds,
                 (long long)now);
    assert_in_range(t->nanos, 0, 999999999);
}

static int64_t ts_micros(const Google__Protobuf__Timestamp *t)
{
    return t->seconds * 1000000 + t->nanos / 1000;
}

/* Waits until `sql` answers `want` (auth applying an event). */
static void wait_query(const char *sql, const char *want, int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    char *got = NULL;
    for (;;) {
        free(got);
        got = NULL;
        if (rt_test_pg_query_value(&got, T.pg, sql) == RT_OK && got && strcmp(got, want) == 0)
            break;
        if (rt_time_mono_ns() >= deadline)
            fail_msg("%s: got '%s', want '%s' within %d ms", sql, got ? got : "(none)", want,
                     timeout_ms);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    free(got);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    (void)state;
    rt_status s;
    jsErrCode jerr = 0;
    natsStatus ns;

    T.django_password_env = rt_asprintf("NATS_PASSWORD=%s", rt_test_deploy_password("django"));
    if (!(T.dir = rt_test_tmpdir("django-python")))
        return -1;
    if ((s = rt_test_python_generate(T.dir)) != RT_OK) {
        fprintf(stderr, "%s\n", rt_error_message());
        return -1;
    }
    if ((s = rt_test_deploy_nats_start(&T.nats)) != RT_OK) {
        fprintf(stderr, "nats-server with %s: %s\n", RT_TEST_DEPLOY_CONF, rt_error_message());
        return -1;
    }
    if ((s = rt_test_pg_start(&T.pg)) != RT_OK || (s = rt_test_pg_migrate(T.pg)) != RT_OK) {
        fprintf(stderr, "postgres: %s\n", rt_error_message());
        return -1;
    }
    /* auth (as NATS user auth) creates EVENTS; it is ready once it exists. */
    if ((s = rt_test_deploy_start_auth(&T.auth, NULL, T.nats, T.pg, NULL)) != RT_OK) {
        fprintf(stderr, "auth: %s\n", rt_error_message());
        return -1;
    }
    if ((s = rt_test_deploy_connect(&T.reader, T.nats, RT_TEST_DEPLOY_READER)) != RT_OK) {
        fprintf(stderr, "%s\n", rt_error_message());
        return -1;
    }
    if ((ns = natsConnection_JetStream(&T.js, T.reader, NULL)) != NATS_OK) {
        fprintf(stderr, "jetstream: %s\n", natsStatus_GetText(ns));
        return -1;
    }
    jsStreamInfo *si = NULL;
    if ((ns = js_GetStreamInfo(&si, T.js, "EVENTS", NULL, &jerr)) != NATS_OK) {
        fprintf(stderr, "auth is ready but EVENTS is not there: %s (%d)\n", natsStatus_GetText(ns),
                (int)jerr);
        return -1;
    }
    jsStreamInfo_Destroy(si);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    jsCtx_Destroy(T.js);
    natsConnection_Destroy(T.reader);
    rt_test_proc_destroy(T.auth);
    rt_test_pg_destroy(T.pg);
    rt_test_deploy_nats_destroy(T.nats);
    if (T.dir) {
        const char *keep = getenv("RT_TEST_KEEP");
        if (keep && strcmp(keep, "1") == 0)
            fprintf(stderr, "kept %s\n", T.dir);
        else
            rt_test_rmtree(T.dir);
    }
    free(T.dir);
    free(T.django_password_env);
    return 0;
}

/* ---- the example's story ---- */

static size_t parse_published(published *out, size_t max, const char *text)
{
    size_t n = 0;
    const char *line = text;
    while (line && *line) {
        char dup[8];
        if (strncmp(line, "published ", 10) == 0) {
            if (n == max)
                fail_msg("more 'published' lines than expected:\n%s", text);
            if (sscanf(line,
                       "published seq=%llu duplicate=%7s subject=%127s type=%63s "
                       "event_id=%79s",
                       &out[n].seq, dup, out[n].subject, out[n].type, out[n].event_id) != 5)
                fail_msg("cannot parse: %.200s", line);
            assert_true(strcmp(dup, "true") == 0 || strcmp(dup, "false") == 0);
            out[n].duplicate = strcmp(dup, "true") == 0;
            n++;
        }
        line = next_line(line);
    }
    return n;
}

static void check_lesson(const published *p)
{
    natsMsg *msg = stored_msg(p->seq, "evt.v1.lesson.upserted", p->event_id);
    Unpuzzle__Rt__V1__LessonUpserted *e = unpuzzle__rt__v1__lesson_upserted__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    assert_non_null(e);
    assert_string_equal(e->event_id, p->event_id);
    assert_recent(e->occurred_at);
    assert_string_equal(e->lesson_id, LESSON);
    assert_string_equal(e->course_id, COURSE);
    assert_string_equal(e->title, "SELECT, FROM, WHERE");
    assert_int_equal(e->position, 1);
    assert_false(e->deleted);
    unpuzzle__rt__v1__lesson_upserted__free_unpacked(e, NULL);
    natsMsg_Destroy(msg);
}

static void check_purchase(const published *p)
{
    natsMsg *msg = stored_msg(p->seq, "evt.v1.purchase.completed", p->event_id);
    Unpuzzle__Rt__V1__PurchaseCompleted *e = unpuzzle__rt__v1__purchase_completed__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    assert_non_null(e);
    assert_string_equal(e->event_id, p->event_id);
    assert_recent(e->occurred_at);
    assert_string_equal(e->purchase_id, PURCHASE);
    assert_string_equal(e->course_id, COURSE);
    assert_string_equal(e->user_id, STUDENT);
    assert_int_equal(e->amount_cents, 4900);
    assert_string_equal(e->currency, "USD");
    unpuzzle__rt__v1__purchase_completed__free_unpacked(e, NULL);
    natsMsg_Destroy(msg);
}

static void check_enrollment(const published *p)
{
    natsMsg *msg = stored_msg(p->seq, "evt.v1.enrollment.changed", p->event_id);
    Unpuzzle__Rt__V1__EnrollmentChanged *e = unpuzzle__rt__v1__enrollment_changed__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    assert_non_null(e);
    assert_string_equal(e->event_id, p->event_id);
    assert_recent(e->occurred_at);
    assert_string_equal(e->course_id, COURSE);
    assert_string_equal(e->user_id, STUDENT);
    assert_int_equal(e->change, CHANGE(ADDED));
    assert_int_equal(e->role, MEMBER(STUDENT));
    assert_string_equal(e->actor_user_id, STUDENT);
    unpuzzle__rt__v1__enrollment_changed__free_unpacked(e, NULL);
    natsMsg_Destroy(msg);
}

/* Heartbeat `i` (0, 1, 2): position 15 * i, occurred_at 15 s after the last. */
static void check_progress(const published *p, int i, int64_t *prev_us)
{
    natsMsg *msg = stored_msg(p->seq, "evt.v1.progress.updated", p->event_id);
    Unpuzzle__Rt__V1__ProgressUpdated *e = unpuzzle__rt__v1__progress_updated__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    assert_non_null(e);
    assert_string_equal(e->event_id, p->event_id);
    assert_recent(e->occurred_at);
    assert_string_equal(e->course_id, COURSE);
    assert_string_equal(e->lesson_id, LESSON);
    assert_string_equal(e->user_id, STUDENT);
    assert_true(e->position_sec == 15.0 * i);
    assert_true(e->duration_sec == 600.0);
    assert_true(e->playing);
    assert_false(e->completed);
    if (i > 0)
        assert_int_equal(ts_micros(e->occurred_at) - *prev_us, 15000000);
    *prev_us = ts_micros(e->occurred_at);
    unpuzzle__rt__v1__progress_updated__free_unpacked(e, NULL);
    natsMsg_Destroy(msg);
}

static void check_notification(const published *p)
{
    natsMsg *msg = stored_msg(p->seq, "evt.v1.notification.requested", p->event_id);
    Unpuzzle__Rt__V1__NotificationRequested *e = unpuzzle__rt__v1__notification_requested__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    assert_non_null(e);
    assert_string_equal(e->event_id, p->event_id);
    assert_recent(e->occurred_at);
    assert_int_equal(e->recipient_case,
                     UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_USER_ID);
    assert_string_equal(e->user_id, STUDENT);
    assert_string_equal(e->kind, "welcome");
    assert_string_equal(e->title, "Welcome to SQL 101");
    assert_string_equal(e->body, "Your first lesson is ready.");
    assert_string_equal(e->link, "/courses/course-sql-101");
    unpuzzle__rt__v1__notification_requested__free_unpacked(e, NULL);
    natsMsg_Destroy(msg);
}

static void example_publishes_its_story(void **state)
{
    (void)state;
    static const char *const types[] = {
        "LessonUpserted",  "PurchaseCompleted", "EnrollmentChanged",     "ProgressUpdated",
        "ProgressUpdated", "ProgressUpdated",   "NotificationRequested", "PurchaseCompleted",
    };
    const size_t n_types = sizeof(types) / sizeof(types[0]);
    const char *args[] = {EXAMPLE,       "--nats", rt_test_deploy_nats_url(T.nats),
                          "--proto-dir", T.dir,    NULL};
    rt_test_python_result res;
    published p[16];
    uint64_t before = stream_msgs(NULL);

    run_python(&res, args, 30000);
    if (res.exit_code != 0)
        fail_with_output("example_publish.py", res.exit_code, &res);
    size_t n = parse_published(p, 16, res.out);
    if (n != n_types) {
        fprintf(stderr, "%zu 'published' lines, want %zu\n", n, n_types);
        fail_with_output("example_publish.py", res.exit_code, &res);
    }

    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessageDescriptor *d = descriptor_of_subject(p[i].subject);
        assert_string_equal(p[i].type, types[i]);
        if (!d)
            fail_msg("line %zu: %s is not an event subject", i, p[i].subject);
        /* The subject is the one of its type (spec/subjects.md). */
        assert_string_equal(strrchr(d->name, '.') + 1, p[i].type);
        assert_int_equal(p[i].duplicate, i == n - 1);
        if (i > 0 && i < n - 1)
            assert_true(p[i].seq == p[i - 1].seq + 1);
    }
    assert_true(p[0].seq == before + 1);

    int64_t prev_us = 0;
    check_lesson(&p[0]);
    check_purchase(&p[1]);
    check_enrollment(&p[2]);
    for (int i = 0; i < 3; i++)
        check_progress(&p[3 + i], i, &prev_us);
    check_notification(&p[6]);

    /* The repeated purchase: same event, the original sequence, stored once. */
    assert_string_equal(p[7].event_id, p[1].event_id);
    assert_true(p[7].seq == p[1].seq);
    uint64_t last = 0;
    assert_int_equal(stream_msgs(&last), before + 7);
    assert_true(last == p[6].seq);
    assert_int_equal(count_msg_id(p[1].event_id), 1);

    /* auth consumed them: the events are valid for their consumer. */
    wait_query(
        "SELECT status || '/' || role FROM realtime.course_members WHERE course_id = '" COURSE
        "' AND user_id = '" STUDENT "'",
        "added/student", 10000);
    wait_query("SELECT course_id || '/' || deleted FROM realtime.lessons WHERE lesson_id = '" LESSON
               "'",
               COURSE "/false", 10000);
    rt_test_python_result_free(&res);
}

/* ---- failure paths of unpuzzle_events.py ---- */

static void publisher_failure_paths(void **state)
{
    (void)state;
    const char *args[] = {CHECKS, T.dir, rt_test_deploy_nats_url(T.nats), NULL};
    natsSubscription *silent = NULL;
    rt_test_python_result res;
    uint64_t before = stream_msgs(NULL);

    /* Takes every publish to SILENT_SUBJECT and never answers. */
    assert_int_equal(natsConnection_SubscribeSync(&silent, T.reader, SILENT_SUBJECT), NATS_OK);
    assert_int_equal(natsConnection_Flush(T.reader), NATS_OK);

    run_python(&res, args, 30000);
    if (res.exit_code != 0)
        fail_with_output("django_publish_checks.py", res.exit_code, &res);

    /* The Python subject table is spec/subjects.md's, entry for entry. */
    size_t subjects = 0;
    unsigned long long lost_seq = 0;
    char lost_id[80] = "", timeout_id[80] = "", dup[8] = "";
    for (const char *line = res.out; line && *line; line = next_line(line)) {
        char name[128], subject[128];
        if (sscanf(line, "subject %127s %127s", name, subject) == 2) {
            const ProtobufCMessageDescriptor *d = descriptor_of_subject(subject);
            if (!d || strcmp(d->name, name) != 0)
                fail_msg("Python maps %s to %s; spec/subjects.md says %s", name, subject,
                         d ? d->name : "no such subject");
            subjects++;
        }
        sscanf(line, "lost-ack seq=%llu duplicate=%7s event_id=%79s", &lost_seq, dup, lost_id);
        sscanf(line, "timeout event_id=%79s", timeout_id);
    }
    assert_int_equal(subjects, N_EVENT_TYPES);

    /* Lost ack: the retry was answered as a duplicate of the stored event. */
    assert_string_equal(dup, "true");
    assert_true(lost_seq == before + 1);
    natsMsg *msg = stored_msg(lost_seq, "evt.v1.course.updated", lost_id);
    Unpuzzle__Rt__V1__CourseUpdated *cu = unpuzzle__rt__v1__course_updated__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    assert_non_null(cu);
    assert_string_equal(cu->course_id, "course-lost-ack");
    unpuzzle__rt__v1__course_updated__free_unpacked(cu, NULL);
    natsMsg_Destroy(msg);
    assert_int_equal(count_msg_id(lost_id), 1);
    /* Nothing else was stored: not the refused, not the 503, not the bad. */
    assert_int_equal(stream_msgs(NULL), before + 1);

    /* Timeout: the same bytes with the same Nats-Msg-Id, twice, each time
     * from a new connection (a new _INBOX), and no third time. */
    assert_string_equal(timeout_id, "e-silent-1");
    natsMsg *first = NULL, *second = NULL, *third = NULL;
    const char *id1 = NULL, *id2 = NULL;
    assert_int_equal(natsSubscription_NextMsg(&first, silent, 2000), NATS_OK);
    assert_int_equal(natsSubscription_NextMsg(&second, silent, 2000), NATS_OK);
    assert_int_equal(natsMsgHeader_Get(first, "Nats-Msg-Id", &id1), NATS_OK);
    assert_int_equal(natsMsgHeader_Get(second, "Nats-Msg-Id", &id2), NATS_OK);
    assert_string_equal(id1, timeout_id);
    assert_string_equal(id2, timeout_id);
    assert_int_equal(natsMsg_GetDataLength(first), natsMsg_GetDataLength(second));
    assert_memory_equal(natsMsg_GetData(first), natsMsg_GetData(second),
                        (size_t)natsMsg_GetDataLength(first));
    assert_true(strncmp(natsMsg_GetReply(first), "_INBOX.", 7) == 0);
    assert_true(strncmp(natsMsg_GetReply(second), "_INBOX.", 7) == 0);
    assert_string_not_equal(natsMsg_GetReply(first), natsMsg_GetReply(second));
    assert_int_equal(natsSubscription_NextMsg(&third, silent, 300), NATS_TIMEOUT);
    natsMsg_Destroy(first);
    natsMsg_Destroy(second);
    natsSubscription_Destroy(silent);
    rt_test_python_result_free(&res);
}

/* ---- nothing listens ---- */

static void example_fails_clearly_without_nats(void **state)
{
    (void)state;
    char url[96], where[48];
    int port = rt_test_free_port();
    /* No --proto-dir: the script generates the Python itself with protoc. */
    snprintf(url, sizeof(url), "nats://django:pNotShown0pw@127.0.0.1:%d", port);
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    const char *args[] = {EXAMPLE, "--nats", url, "--timeout", "0.5", NULL};
    rt_test_python_result res;
    uint64_t before = stream_msgs(NULL), started = rt_time_mono_ns();

    run_python(&res, args, 30000);
    double took_s = (double)(rt_time_mono_ns() - started) / 1e9;
    if (res.exit_code != 1) {
        fprintf(stderr, "want exit 1\n");
        fail_with_output("example_publish.py", res.exit_code, &res);
    }
    if (!strstr(res.err, "cannot connect to NATS") || !strstr(res.err, where) ||
        !strstr(res.err, "Connection refused")) {
        fprintf(stderr, "unclear message on stderr\n");
        fail_with_output("example_publish.py", res.exit_code, &res);
    }
    assert_null(strstr(res.err, "pNotShown0pw"));
    assert_null(strstr(res.out, "published"));
    assert_true(took_s < 10.0);
    assert_int_equal(stream_msgs(NULL), before);
    rt_test_python_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_publishes_its_story),
        cmocka_unit_test(publisher_failure_paths),
        cmocka_unit_test(example_fails_clearly_without_nats),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
