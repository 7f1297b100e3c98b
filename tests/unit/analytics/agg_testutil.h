/*
 * Helpers for the analytics unit tests: build events of events.proto on the
 * stack and apply them to an engine, compute metrics, find a student, check
 * a nullable figure. Header-only (static functions), included by each
 * test_agg_*.c; cmocka must be included first.
 *
 * Times are milliseconds since the epoch: AT(s) is `s` seconds after
 * T0 = 2026-03-10T00:00:00Z; DAY(n) is n days after it.
 */
#ifndef AGG_TESTUTIL_H
#define AGG_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agg_engine.h"
#include "rt_proto.h"

#define T0_MS INT64_C(1773100800000) /* 2026-03-10T00:00:00Z */
#define AT(s) (T0_MS + (int64_t)llround((double)(s)*1000.0))
#define DAY(n) ((int64_t)(n)*86400)
#define HOUR(n) ((int64_t)(n)*3600)
#define COURSE "c1"

/* Wall clock handed to apply and compute (wall-mode tests move it). */
static int64_t g_wall_ms = T0_MS;
/* Course the helpers address. */
static const char *g_course = COURSE;

static __attribute__((unused)) agg_engine *new_engine(agg_clock_mode mode, int64_t window_s,
                                                      int64_t lateness_s)
{
    agg_config cfg;
    agg_engine *e = NULL;
    agg_config_defaults(&cfg);
    cfg.clock = mode;
    cfg.window_s = window_s;
    cfg.lateness_s = lateness_s;
    assert_int_equal(agg_engine_create(&e, &cfg), RT_OK);
    g_course = COURSE;
    return e;
}

static __attribute__((unused)) agg_outcome apply_msg(agg_engine *e, const void *msg)
{
    agg_outcome out = AGG_INVALID;
    agg_arrival arrival = {g_wall_ms, 0};
    rt_status rc = agg_engine_apply(&out, e, msg, &arrival);
    if (rc != RT_OK)
        assert_int_equal(out, AGG_INVALID);
    return out;
}

static __attribute__((unused)) Google__Protobuf__Timestamp ts_ms(int64_t ms)
{
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = ms / 1000;
    ts.nanos = (int32_t)(ms % 1000) * 1000000;
    return ts;
}

#define EVENT_HEAD(TYPE, INIT)                                                                     \
    Google__Protobuf__Timestamp ts = ts_ms(at_ms);                                                 \
    TYPE m = INIT;                                                                                 \
    m.event_id = (char *)id;                                                                       \
    m.occurred_at = &ts;                                                                           \
    m.course_id = (char *)g_course

static __attribute__((unused)) agg_outcome hb(agg_engine *e, const char *id, int64_t at_ms,
                                              const char *user, const char *lesson, double pos)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__ProgressUpdated, UNPUZZLE__RT__V1__PROGRESS_UPDATED__INIT);
    m.user_id = (char *)user;
    m.lesson_id = (char *)lesson;
    m.position_sec = pos;
    m.duration_sec = 600;
    m.playing = true;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome enroll(agg_engine *e, const char *id, int64_t at_ms,
                                                  const char *user,
                                                  Unpuzzle__Rt__V1__EnrollmentChange change,
                                                  Unpuzzle__Rt__V1__MemberRole role)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__EnrollmentChanged, UNPUZZLE__RT__V1__ENROLLMENT_CHANGED__INIT);
    m.user_id = (char *)user;
    m.change = change;
    m.role = role;
    return apply_msg(e, &m);
}

#define ADDED UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_ADDED
#define REMOVED UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_REMOVED
#define COMPLETED UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_COMPLETED
#define STUDENT UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_STUDENT
#define INSTRUCTOR UNPUZZLE__RT__V1__MEMBER_ROLE__MEMBER_ROLE_INSTRUCTOR

/* A student added at T0 - 1 day (before everything the tests do). */
static __attribute__((unused)) void add_student(agg_engine *e, const char *user)
{
    char id[96];
    snprintf(id, sizeof(id), "enr-%s", user);
    assert_int_equal(enroll(e, id, T0_MS - DAY(1) * 1000, user, ADDED, STUDENT), AGG_APPLIED);
}

static __attribute__((unused)) agg_outcome lesson(agg_engine *e, const char *id, int64_t at_ms,
                                                  const char *lesson_id, bool deleted)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__LessonUpserted, UNPUZZLE__RT__V1__LESSON_UPSERTED__INIT);
    m.lesson_id = (char *)lesson_id;
    m.title = (char *)"a lesson";
    m.deleted = deleted;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome completed(agg_engine *e, const char *id, int64_t at_ms,
                                                     const char *user, const char *lesson_id)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__LessonCompleted, UNPUZZLE__RT__V1__LESSON_COMPLETED__INIT);
    m.user_id = (char *)user;
    m.lesson_id = (char *)lesson_id;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome shown(agg_engine *e, const char *id, int64_t at_ms,
                                                 const char *user, const char *prompt)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__PromptShown, UNPUZZLE__RT__V1__PROMPT_SHOWN__INIT);
    m.user_id = (char *)user;
    m.lesson_id = (char *)"L1";
    m.prompt_id = (char *)prompt;
    m.kind = UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_QUIZ;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome responded(agg_engine *e, const char *id, int64_t at_ms,
                                                     const char *user, const char *prompt,
                                                     bool complete)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__PromptResponded, UNPUZZLE__RT__V1__PROMPT_RESPONDED__INIT);
    m.user_id = (char *)user;
    m.lesson_id = (char *)"L1";
    m.prompt_id = (char *)prompt;
    m.kind = UNPUZZLE__RT__V1__PROMPT_KIND__PROMPT_KIND_QUIZ;
    m.action = complete ? UNPUZZLE__RT__V1__PROMPT_ACTION__PROMPT_ACTION_COMPLETED
                        : UNPUZZLE__RT__V1__PROMPT_ACTION__PROMPT_ACTION_SKIPPED;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome confusion(agg_engine *e, const char *id, int64_t at_ms,
                                                     const char *confusion_id, const char *user,
                                                     const char *lesson_id, double video_s)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__ConfusionCreated, UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT);
    m.confusion_id = (char *)confusion_id;
    m.user_id = (char *)user;
    m.lesson_id = (char *)lesson_id;
    m.video_timestamp_sec = video_s;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome resolved(agg_engine *e, const char *id, int64_t at_ms,
                                                    const char *confusion_id)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__ConfusionResolved, UNPUZZLE__RT__V1__CONFUSION_RESOLVED__INIT);
    m.confusion_id = (char *)confusion_id;
    m.user_id = (char *)"ivy";
    m.resolved = true;
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome question(agg_engine *e, const char *id, int64_t at_ms,
                                                    const char *question_id, const char *user)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__QuestionCreated, UNPUZZLE__RT__V1__QUESTION_CREATED__INIT);
    m.question_id = (char *)question_id;
    m.user_id = (char *)user;
    m.text = (char *)"why?";
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome answered(agg_engine *e, const char *id, int64_t at_ms,
                                                    const char *question_id)
{
    EVENT_HEAD(Unpuzzle__Rt__V1__QuestionAnswered, UNPUZZLE__RT__V1__QUESTION_ANSWERED__INIT);
    m.question_id = (char *)question_id;
    m.user_id = (char *)"ivy";
    m.answer = (char *)"because";
    return apply_msg(e, &m);
}

static __attribute__((unused)) agg_outcome purchase(agg_engine *e, const char *id, int64_t at_ms,
                                                    const char *purchase_id, int64_t cents,
                                                    const char *currency)
{
    Google__Protobuf__Timestamp ts = ts_ms(at_ms);
    Unpuzzle__Rt__V1__PurchaseCompleted m = UNPUZZLE__RT__V1__PURCHASE_COMPLETED__INIT;
    m.event_id = (char *)id;
    m.occurred_at = &ts;
    m.course_id = (char *)g_course;
    m.purchase_id = (char *)purchase_id;
    m.user_id = (char *)"buyer";
    m.amount_cents = cents;
    m.currency = (char *)currency;
    return apply_msg(e, &m);
}

#undef EVENT_HEAD

/* The course's metrics now (g_wall_ms), no presence. */
static __attribute__((unused)) Unpuzzle__Rt__V1__CourseMetrics *metrics(agg_engine *e)
{
    Unpuzzle__Rt__V1__CourseMetrics *m = NULL;
    assert_int_equal(agg_engine_compute(&m, e, g_course, g_wall_ms, NULL), RT_OK);
    assert_non_null(m);
    return m;
}

static __attribute__((unused)) const Unpuzzle__Rt__V1__StudentInsight *
find_student(const Unpuzzle__Rt__V1__CourseMetrics *m, const char *user)
{
    for (size_t i = 0; i < m->n_students; i++) {
        if (strcmp(m->students[i]->user_id, user) == 0)
            return m->students[i];
    }
    return NULL;
}

/* A figure that must be set and equal `want` (exactly: the engine rounds
 * to 3 decimals and a literal like 26.458 is the same double). */
#define assert_figure(dv, want)                                                                    \
    do {                                                                                           \
        const Google__Protobuf__DoubleValue *dv_ = (dv);                                           \
        if (!dv_)                                                                                  \
            fail_msg("%s is null, want %.3f", #dv, (double)(want));                                \
        if (dv_->value != (double)(want))                                                          \
            fail_msg("%s = %.17g, want %.17g", #dv, dv_->value, (double)(want));                   \
    } while (0)

#define assert_null_figure(dv)                                                                     \
    do {                                                                                           \
        if ((dv) != NULL)                                                                          \
            fail_msg("%s = %.17g, want null", #dv, (dv)->value);                                   \
    } while (0)

#endif
