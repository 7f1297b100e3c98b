#include "agg_events.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "agg_clock.h"
#include "rt_room.h"

#define MAX_POSITION_S 1e9
#define MAX_AMOUNT_CENTS INT64_C(1000000000000000)

static const struct {
    const char *subject;
    const ProtobufCMessageDescriptor *desc;
    agg_event_kind kind;
} event_types[] = {
    {"evt.v1.confusion.created", &unpuzzle__rt__v1__confusion_created__descriptor,
     AGG_EVENT_CONFUSION_CREATED},
    {"evt.v1.confusion.resolved", &unpuzzle__rt__v1__confusion_resolved__descriptor,
     AGG_EVENT_CONFUSION_RESOLVED},
    {"evt.v1.question.created", &unpuzzle__rt__v1__question_created__descriptor,
     AGG_EVENT_QUESTION_CREATED},
    {"evt.v1.question.answered", &unpuzzle__rt__v1__question_answered__descriptor,
     AGG_EVENT_QUESTION_ANSWERED},
    {"evt.v1.progress.updated", &unpuzzle__rt__v1__progress_updated__descriptor,
     AGG_EVENT_PROGRESS_UPDATED},
    {"evt.v1.lesson.completed", &unpuzzle__rt__v1__lesson_completed__descriptor,
     AGG_EVENT_LESSON_COMPLETED},
    {"evt.v1.prompt.shown", &unpuzzle__rt__v1__prompt_shown__descriptor, AGG_EVENT_PROMPT_SHOWN},
    {"evt.v1.prompt.responded", &unpuzzle__rt__v1__prompt_responded__descriptor,
     AGG_EVENT_PROMPT_RESPONDED},
    {"evt.v1.quiz.submitted", &unpuzzle__rt__v1__quiz_submitted__descriptor,
     AGG_EVENT_QUIZ_SUBMITTED},
    {"evt.v1.reflection.submitted", &unpuzzle__rt__v1__reflection_submitted__descriptor,
     AGG_EVENT_REFLECTION_SUBMITTED},
    {"evt.v1.purchase.completed", &unpuzzle__rt__v1__purchase_completed__descriptor,
     AGG_EVENT_PURCHASE_COMPLETED},
    {"evt.v1.enrollment.changed", &unpuzzle__rt__v1__enrollment_changed__descriptor,
     AGG_EVENT_ENROLLMENT_CHANGED},
    {"evt.v1.lesson.upserted", &unpuzzle__rt__v1__lesson_upserted__descriptor,
     AGG_EVENT_LESSON_UPSERTED},
    {"evt.v1.course.updated", &unpuzzle__rt__v1__course_updated__descriptor,
     AGG_EVENT_COURSE_UPDATED},
    {"evt.v1.notification.requested", &unpuzzle__rt__v1__notification_requested__descriptor,
     AGG_EVENT_NOT_A_COURSE_EVENT},
    {"evt.v1.notification.read", &unpuzzle__rt__v1__notifications_read__descriptor,
     AGG_EVENT_NOT_A_COURSE_EVENT},
};

#define N_EVENT_TYPES (sizeof(event_types) / sizeof(event_types[0]))

const ProtobufCMessageDescriptor *agg_event_descriptor(const char *subject)
{
    for (size_t i = 0; subject && i < N_EVENT_TYPES; i++) {
        if (strcmp(event_types[i].subject, subject) == 0)
            return event_types[i].desc;
    }
    return NULL;
}

const char *agg_event_kind_name(agg_event_kind kind)
{
    for (size_t i = 0; i < N_EVENT_TYPES; i++) {
        if (event_types[i].kind == kind)
            return event_types[i].subject + strlen("evt.v1.");
    }
    return "unknown";
}

/* Each check names the field, so a refused event says why. */
static rt_status need_id(const char *field, const char *value)
{
    if (!value || !rt_id_valid(value))
        return RT_ERR(RT_ERR_INVALID_ARG, "%s: not an id [A-Za-z0-9_-]{1,64}", field);
    return RT_OK;
}

static rt_status need_position(const char *field, double value)
{
    if (!isfinite(value) || fabs(value) > MAX_POSITION_S)
        return RT_ERR(RT_ERR_INVALID_ARG, "%s: not a finite number of seconds up to 1e9", field);
    return RT_OK;
}

static rt_status need_currency(const char *value)
{
    if (!value || strlen(value) != 3)
        return RT_ERR(RT_ERR_INVALID_ARG, "currency: not three upper-case letters");
    for (int i = 0; i < 3; i++) {
        if (value[i] < 'A' || value[i] > 'Z')
            return RT_ERR(RT_ERR_INVALID_ARG, "currency: not three upper-case letters");
    }
    return RT_OK;
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        rt_status rc_ = (x);                                                                       \
        if (rc_ != RT_OK)                                                                          \
            return rc_;                                                                            \
    } while (0)

/* The fields of one kind beyond the common three. */
static rt_status check_kind(const agg_event *ev)
{
    switch (ev->kind) {
    case AGG_EVENT_CONFUSION_CREATED: {
        const Unpuzzle__Rt__V1__ConfusionCreated *m = (const void *)ev->msg;
        CHECK(need_id("confusion_id", m->confusion_id));
        CHECK(need_id("lesson_id", m->lesson_id));
        CHECK(need_id("user_id", m->user_id));
        return need_position("video_timestamp_sec", m->video_timestamp_sec);
    }
    case AGG_EVENT_CONFUSION_RESOLVED: {
        const Unpuzzle__Rt__V1__ConfusionResolved *m = (const void *)ev->msg;
        return need_id("confusion_id", m->confusion_id);
    }
    case AGG_EVENT_QUESTION_CREATED: {
        const Unpuzzle__Rt__V1__QuestionCreated *m = (const void *)ev->msg;
        CHECK(need_id("question_id", m->question_id));
        return need_id("user_id", m->user_id);
    }
    case AGG_EVENT_QUESTION_ANSWERED: {
        const Unpuzzle__Rt__V1__QuestionAnswered *m = (const void *)ev->msg;
        return need_id("question_id", m->question_id);
    }
    case AGG_EVENT_PROGRESS_UPDATED: {
        const Unpuzzle__Rt__V1__ProgressUpdated *m = (const void *)ev->msg;
        CHECK(need_id("lesson_id", m->lesson_id));
        CHECK(need_id("user_id", m->user_id));
        return need_position("position_sec", m->position_sec);
    }
    case AGG_EVENT_LESSON_COMPLETED: {
        const Unpuzzle__Rt__V1__LessonCompleted *m = (const void *)ev->msg;
        CHECK(need_id("lesson_id", m->lesson_id));
        return need_id("user_id", m->user_id);
    }
    case AGG_EVENT_PROMPT_SHOWN: {
        const Unpuzzle__Rt__V1__PromptShown *m = (const void *)ev->msg;
        CHECK(need_id("user_id", m->user_id));
        return need_id("prompt_id", m->prompt_id);
    }
    case AGG_EVENT_PROMPT_RESPONDED: {
        const Unpuzzle__Rt__V1__PromptResponded *m = (const void *)ev->msg;
        CHECK(need_id("user_id", m->user_id));
        return need_id("prompt_id", m->prompt_id);
    }
    case AGG_EVENT_PURCHASE_COMPLETED: {
        const Unpuzzle__Rt__V1__PurchaseCompleted *m = (const void *)ev->msg;
        CHECK(need_id("purchase_id", m->purchase_id));
        CHECK(need_id("user_id", m->user_id));
        if (m->amount_cents > MAX_AMOUNT_CENTS || m->amount_cents < -MAX_AMOUNT_CENTS)
            return RT_ERR(RT_ERR_INVALID_ARG, "amount_cents: beyond 1e15");
        return need_currency(m->currency);
    }
    case AGG_EVENT_ENROLLMENT_CHANGED: {
        const Unpuzzle__Rt__V1__EnrollmentChanged *m = (const void *)ev->msg;
        CHECK(need_id("user_id", m->user_id));
        if (m->change != UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_ADDED &&
            m->change != UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_REMOVED &&
            m->change != UNPUZZLE__RT__V1__ENROLLMENT_CHANGE__ENROLLMENT_CHANGE_COMPLETED)
            return RT_ERR(RT_ERR_INVALID_ARG, "change: not added, removed or completed");
        return RT_OK;
    }
    case AGG_EVENT_LESSON_UPSERTED: {
        const Unpuzzle__Rt__V1__LessonUpserted *m = (const void *)ev->msg;
        return need_id("lesson_id", m->lesson_id);
    }
    case AGG_EVENT_QUIZ_SUBMITTED:
    case AGG_EVENT_REFLECTION_SUBMITTED:
    case AGG_EVENT_COURSE_UPDATED:
    case AGG_EVENT_NOT_A_COURSE_EVENT:
        return RT_OK;
    }
    return RT_ERR(RT_ERR_INTERNAL, "unknown event kind %d", (int)ev->kind);
}

/* The common fields. Every event message starts with event_id (1) and
 * occurred_at (2); course_id sits at a different number per message. */
static void common_fields(agg_event *ev, const Google__Protobuf__Timestamp **ts)
{
#define COMMON(type)                                                                               \
    do {                                                                                           \
        const type *m = (const void *)ev->msg;                                                     \
        ev->event_id = m->event_id;                                                                \
        ev->course_id = m->course_id;                                                              \
        *ts = m->occurred_at;                                                                      \
    } while (0)
    switch (ev->kind) {
    case AGG_EVENT_CONFUSION_CREATED:
        COMMON(Unpuzzle__Rt__V1__ConfusionCreated);
        break;
    case AGG_EVENT_CONFUSION_RESOLVED:
        COMMON(Unpuzzle__Rt__V1__ConfusionResolved);
        break;
    case AGG_EVENT_QUESTION_CREATED:
        COMMON(Unpuzzle__Rt__V1__QuestionCreated);
        break;
    case AGG_EVENT_QUESTION_ANSWERED:
        COMMON(Unpuzzle__Rt__V1__QuestionAnswered);
        break;
    case AGG_EVENT_PROGRESS_UPDATED:
        COMMON(Unpuzzle__Rt__V1__ProgressUpdated);
        break;
    case AGG_EVENT_LESSON_COMPLETED:
        COMMON(Unpuzzle__Rt__V1__LessonCompleted);
        break;
    case AGG_EVENT_PROMPT_SHOWN:
        COMMON(Unpuzzle__Rt__V1__PromptShown);
        break;
    case AGG_EVENT_PROMPT_RESPONDED:
        COMMON(Unpuzzle__Rt__V1__PromptResponded);
        break;
    case AGG_EVENT_QUIZ_SUBMITTED:
        COMMON(Unpuzzle__Rt__V1__QuizSubmitted);
        break;
    case AGG_EVENT_REFLECTION_SUBMITTED:
        COMMON(Unpuzzle__Rt__V1__ReflectionSubmitted);
        break;
    case AGG_EVENT_PURCHASE_COMPLETED:
        COMMON(Unpuzzle__Rt__V1__PurchaseCompleted);
        break;
    case AGG_EVENT_ENROLLMENT_CHANGED:
        COMMON(Unpuzzle__Rt__V1__EnrollmentChanged);
        break;
    case AGG_EVENT_LESSON_UPSERTED:
        COMMON(Unpuzzle__Rt__V1__LessonUpserted);
        break;
    case AGG_EVENT_COURSE_UPDATED:
        COMMON(Unpuzzle__Rt__V1__CourseUpdated);
        break;
    case AGG_EVENT_NOT_A_COURSE_EVENT:
        /* Both start with event_id and occurred_at; neither is a course's. */
        if (ev->msg->descriptor == &unpuzzle__rt__v1__notification_requested__descriptor) {
            const Unpuzzle__Rt__V1__NotificationRequested *m = (const void *)ev->msg;
            ev->event_id = m->event_id;
            *ts = m->occurred_at;
        } else {
            const Unpuzzle__Rt__V1__NotificationsRead *m = (const void *)ev->msg;
            ev->event_id = m->event_id;
            *ts = m->occurred_at;
        }
        ev->course_id = NULL;
        break;
    }
#undef COMMON
}

rt_status agg_event_read(agg_event *out, const ProtobufCMessage *msg)
{
    agg_event ev = {0};
    const Google__Protobuf__Timestamp *ts = NULL;
    size_t i;

    if (!msg)
        return RT_ERR(RT_ERR_INVALID_ARG, "no event");
    for (i = 0; i < N_EVENT_TYPES && event_types[i].desc != msg->descriptor; i++)
        ;
    if (i == N_EVENT_TYPES)
        return RT_ERR(RT_ERR_INVALID_ARG, "%s is not an event of stream EVENTS",
                      msg->descriptor ? msg->descriptor->name : "(no descriptor)");
    ev.kind = event_types[i].kind;
    ev.msg = msg;
    common_fields(&ev, &ts);
    CHECK(need_id("event_id", ev.event_id));
    if (!agg_clock_from_timestamp(&ev.occurred_at_ns, ts))
        return RT_ERR(RT_ERR_INVALID_ARG, "occurred_at: missing or not in [1970, 2200)");
    if (ev.kind != AGG_EVENT_NOT_A_COURSE_EVENT)
        CHECK(need_id("course_id", ev.course_id));
    CHECK(check_kind(&ev));
    *out = ev;
    return RT_OK;
}
