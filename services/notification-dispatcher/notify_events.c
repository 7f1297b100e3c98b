#include "notify_events.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_room.h"

#define AMOUNT_MAX INT64_C(1000000000000000) /* 10^15 minor units */
#define D(name) &unpuzzle__rt__v1__##name##__descriptor

static const struct {
    const char *subject;
    const ProtobufCMessageDescriptor *desc;
} event_types[] = {
    {"evt.v1.confusion.created", D(confusion_created)},
    {"evt.v1.question.created", D(question_created)},
    {"evt.v1.confusion.resolved", D(confusion_resolved)},
    {"evt.v1.question.answered", D(question_answered)},
    {"evt.v1.course.updated", D(course_updated)},
    {"evt.v1.purchase.completed", D(purchase_completed)},
    {"evt.v1.notification.requested", D(notification_requested)},
    {"evt.v1.notification.read", D(notifications_read)},
};

const ProtobufCMessageDescriptor *notify_event_descriptor(const char *subject)
{
    for (size_t i = 0; subject && i < sizeof(event_types) / sizeof(event_types[0]); i++)
        if (strcmp(event_types[i].subject, subject) == 0)
            return event_types[i].desc;
    return NULL;
}

const char *notify_thread_kind_name(notify_thread_kind kind)
{
    return kind == NOTIFY_THREAD_CONFUSION  ? "confusion"
           : kind == NOTIFY_THREAD_QUESTION ? "question"
                                            : "";
}

/* ---- checks ---- */

bool notify_text_ok(const char *text, size_t max_chars)
{
    size_t len = text ? strlen(text) : 0, chars = 0;
    if (!len)
        return true;
    /* jansson validates UTF-8 (overlongs, surrogates, > U+10FFFF) exactly
     * as the edge's renderer will when the browser gets the text. */
    json_t *probe = json_stringn(text, len);
    if (!probe)
        return false;
    json_decref(probe);
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)text[i] & 0xc0) != 0x80)
            chars++;
    return chars <= max_chars;
}

bool notify_link_ok(const char *link)
{
    size_t len = link ? strlen(link) : 0;
    if (!len)
        return true;
    if (len > NOTIFY_LINK_MAX || link[0] != '/' || link[1] == '/' || link[1] == '\\')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)link[i];
        if (c <= 0x20 || c == 0x7f || c == '\\')
            return false;
    }
    return notify_text_ok(link, NOTIFY_LINK_MAX);
}

bool notify_id_ok(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (len < 1 || len > 18 || id[0] == '0')
        return false;
    for (size_t i = 0; i < len; i++)
        if (id[i] < '0' || id[i] > '9')
            return false;
    return true;
}

uint32_t notify_list_limit(uint32_t requested)
{
    if (requested == 0)
        return 50;
    return requested > 200 ? 200 : requested;
}

/* Digits after the decimal point of an ISO 4217 currency. */
static int minor_digits(const char *currency)
{
    static const char *const zero[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY",
                                       "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                                       "VND", "VUV", "XAF", "XOF", "XPF"};
    static const char *const three[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        if (strcmp(currency, zero[i]) == 0)
            return 0;
    for (size_t i = 0; i < sizeof(three) / sizeof(three[0]); i++)
        if (strcmp(currency, three[i]) == 0)
            return 3;
    return 2;
}

rt_status notify_format_amount(char *out, size_t out_size, int64_t amount, const char *currency)
{
    if (!currency || strlen(currency) != 3 || currency[0] < 'A' || currency[0] > 'Z' ||
        currency[1] < 'A' || currency[1] > 'Z' || currency[2] < 'A' || currency[2] > 'Z')
        return RT_ERR(RT_ERR_INVALID_ARG, "currency: not an ISO 4217 code");
    if (amount < -AMOUNT_MAX || amount > AMOUNT_MAX)
        return RT_ERR(RT_ERR_INVALID_ARG, "amount_cents: out of range");
    int digits = minor_digits(currency);
    int64_t unit = digits == 0 ? 1 : digits == 2 ? 100 : 1000;
    uint64_t magnitude = amount < 0 ? (uint64_t)(-amount) : (uint64_t)amount;
    const char *sign = amount < 0 ? "-" : "";
    if (digits == 0)
        snprintf(out, out_size, "%s%" PRIu64 " %s", sign, magnitude, currency);
    else
        snprintf(out, out_size, "%s%" PRIu64 ".%0*" PRIu64 " %s", sign, magnitude / (uint64_t)unit,
                 digits, magnitude % (uint64_t)unit, currency);
    return RT_OK;
}

/* ---- plans ---- */

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Field checks write the reason and return false. */
typedef struct checker {
    char *why;
    size_t why_size;
    bool ok;
} checker;

static void need_id(checker *c, const char *field, const char *value)
{
    if (c->ok && !rt_id_valid(str(value))) {
        snprintf(c->why, c->why_size, "%s: not an id [A-Za-z0-9_-]{1,64}", field);
        c->ok = false;
    }
}

static void optional_id(checker *c, const char *field, const char *value)
{
    if (c->ok && value && *value)
        need_id(c, field, value);
}

static void need_text(checker *c, const char *field, const char *value)
{
    if (c->ok && !notify_text_ok(value, NOTIFY_TEXT_MAX_CHARS)) {
        snprintf(c->why, c->why_size, "%s: not valid UTF-8 of at most %d characters", field,
                 NOTIFY_TEXT_MAX_CHARS);
        c->ok = false;
    }
}

static bool kind_ok(const char *kind)
{
    size_t len = strlen(kind);
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = kind[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

static void plan_thread_record(notify_plan *p, checker *c, notify_thread_kind kind,
                               const char *thread_id, const char *course_id, const char *lesson_id,
                               const char *user_id)
{
    const char *id_field = kind == NOTIFY_THREAD_CONFUSION ? "confusion_id" : "question_id";
    need_id(c, id_field, thread_id);
    need_id(c, "course_id", course_id);
    optional_id(c, "lesson_id", lesson_id);
    need_id(c, "user_id", user_id);
    p->action = NOTIFY_RECORD_THREAD;
    p->thread_kind = kind;
    p->thread_id = str(thread_id);
    p->course_id = str(course_id);
    p->lesson_id = str(lesson_id);
    p->owner_id = str(user_id);
}

static void plan_owner(notify_plan *p, checker *c, notify_thread_kind kind, const char *thread_id,
                       const char *course_id, const char *lesson_id, const char *owner_id)
{
    const char *id_field = kind == NOTIFY_THREAD_CONFUSION ? "confusion_id" : "question_id";
    const char *owner_field = kind == NOTIFY_THREAD_CONFUSION ? "student_user_id" : "asker_user_id";
    need_id(c, id_field, thread_id);
    need_id(c, "course_id", course_id);
    optional_id(c, "lesson_id", lesson_id);
    optional_id(c, owner_field, owner_id);
    p->action = NOTIFY_TO_THREAD_OWNER;
    p->thread_kind = kind;
    p->thread_id = str(thread_id);
    p->course_id = str(course_id);
    p->lesson_id = str(lesson_id);
    p->owner_id = str(owner_id);
}

static void plan_read(notify_plan *p, checker *c, const Unpuzzle__Rt__V1__NotificationsRead *e)
{
    need_id(c, "user_id", e->user_id);
    if (c->ok && (e->n_notification_ids < 1 || e->n_notification_ids > NOTIFY_READ_MAX_IDS)) {
        snprintf(c->why, c->why_size, "notification_ids: 1 to %d ids", NOTIFY_READ_MAX_IDS);
        c->ok = false;
    }
    if (!c->ok)
        return;
    p->action = NOTIFY_MARK_READ;
    p->reader_id = e->user_id;
    /* Ids this service never made (not decimal) cannot be the user's:
     * they are dropped here like the ids of other users are in the query. */
    size_t cap = 3, n = 0;
    for (size_t i = 0; i < e->n_notification_ids; i++)
        cap += strlen(str(e->notification_ids[i])) + 1;
    char *array = rt_malloc(cap);
    size_t used = 0;
    array[used++] = '{';
    for (size_t i = 0; i < e->n_notification_ids; i++) {
        const char *id = e->notification_ids[i];
        if (!notify_id_ok(id))
            continue;
        if (n++)
            array[used++] = ',';
        memcpy(array + used, id, strlen(id));
        used += strlen(id);
    }
    array[used++] = '}';
    array[used] = '\0';
    p->read_ids_array = array;
    p->n_read_ids = n;
}

rt_status notify_plan_make(notify_plan *out, const ProtobufCMessage *event, char *why,
                           size_t why_size)
{
    notify_plan p = {.action = NOTIFY_IGNORE, .course_id = "", .lesson_id = "", .owner_id = ""};
    checker c = {.why = why, .why_size = why_size, .ok = true};
    const ProtobufCMessageDescriptor *d = event ? event->descriptor : NULL;
    char amount[64];

    memset(out, 0, sizeof(*out));
    if (why_size)
        why[0] = '\0';
    if (!d) {
        snprintf(why, why_size, "no event");
        return RT_ERR(RT_ERR_INVALID_ARG, "no event");
    }

    if (d == D(confusion_created)) {
        const Unpuzzle__Rt__V1__ConfusionCreated *e = (const void *)event;
        p.event_id = e->event_id;
        plan_thread_record(&p, &c, NOTIFY_THREAD_CONFUSION, e->confusion_id, e->course_id,
                           e->lesson_id, e->user_id);
    } else if (d == D(question_created)) {
        const Unpuzzle__Rt__V1__QuestionCreated *e = (const void *)event;
        p.event_id = e->event_id;
        plan_thread_record(&p, &c, NOTIFY_THREAD_QUESTION, e->question_id, e->course_id,
                           e->lesson_id, e->user_id);
    } else if (d == D(confusion_resolved)) {
        const Unpuzzle__Rt__V1__ConfusionResolved *e = (const void *)event;
        p.event_id = e->event_id;
        plan_owner(&p, &c, NOTIFY_THREAD_CONFUSION, e->confusion_id, e->course_id, e->lesson_id,
                   e->student_user_id);
        optional_id(&c, "user_id", e->user_id);
        need_text(&c, "response", e->response);
        /* resolved=false is reserved for reopening: nothing to tell yet. */
        if (!e->resolved)
            p.action = NOTIFY_IGNORE;
        p.kind = "confusion_resolved";
        p.title = rt_strdup("Your confusion was resolved");
        p.body = rt_strdup(str(e->response));
    } else if (d == D(question_answered)) {
        const Unpuzzle__Rt__V1__QuestionAnswered *e = (const void *)event;
        p.event_id = e->event_id;
        plan_owner(&p, &c, NOTIFY_THREAD_QUESTION, e->question_id, e->course_id, e->lesson_id,
                   e->asker_user_id);
        optional_id(&c, "user_id", e->user_id);
        need_text(&c, "answer", e->answer);
        p.kind = "question_answered";
        p.title = rt_strdup("Your question was answered");
        p.body = rt_strdup(str(e->answer));
    } else if (d == D(course_updated)) {
        const Unpuzzle__Rt__V1__CourseUpdated *e = (const void *)event;
        p.event_id = e->event_id;
        need_id(&c, "course_id", e->course_id);
        need_text(&c, "title", e->title);
        need_text(&c, "summary", e->summary);
        p.action = NOTIFY_TO_STUDENTS;
        p.course_id = str(e->course_id);
        p.kind = "course_updated";
        p.title = e->title && *e->title ? rt_asprintf("%s was updated", e->title)
                                        : rt_strdup("A course you are enrolled in was updated");
        p.body = rt_strdup(str(e->summary));
    } else if (d == D(purchase_completed)) {
        const Unpuzzle__Rt__V1__PurchaseCompleted *e = (const void *)event;
        p.event_id = e->event_id;
        need_id(&c, "course_id", e->course_id);
        optional_id(&c, "user_id", e->user_id);
        if (c.ok && notify_format_amount(amount, sizeof(amount), e->amount_cents,
                                         str(e->currency)) != RT_OK) {
            snprintf(why, why_size, "amount_cents/currency: %s", rt_error_message());
            c.ok = false;
        }
        p.action = NOTIFY_TO_INSTRUCTORS;
        p.course_id = str(e->course_id);
        p.kind = "revenue_update";
        p.title = rt_strdup("New purchase");
        p.body = c.ok ? rt_asprintf("Your course was purchased: %s", amount) : rt_strdup("");
    } else if (d == D(notification_requested)) {
        const Unpuzzle__Rt__V1__NotificationRequested *e = (const void *)event;
        p.event_id = e->event_id;
        p.kind = e->kind && *e->kind ? e->kind : "announcement";
        if (!kind_ok(p.kind) && c.ok) {
            snprintf(why, why_size, "kind: not a short name [A-Za-z0-9_.-]{1,64}");
            c.ok = false;
        }
        if (c.ok && !(e->title && *e->title)) {
            snprintf(why, why_size, "title: required");
            c.ok = false;
        }
        need_text(&c, "title", e->title);
        need_text(&c, "body", e->body);
        if (c.ok && !notify_link_ok(e->link)) {
            snprintf(why, why_size, "link: not an app-relative link (\"/...\")");
            c.ok = false;
        }
        if (e->recipient_case == UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_USER_ID) {
            need_id(&c, "user_id", e->user_id);
            p.action = NOTIFY_TO_USER;
            p.recipient = str(e->user_id);
        } else if (e->recipient_case ==
                   UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_COURSE_ID) {
            need_id(&c, "course_id", e->course_id);
            p.action = NOTIFY_TO_STUDENTS;
            p.course_id = str(e->course_id);
        } else if (c.ok) {
            snprintf(why, why_size, "recipient: user_id or course_id required");
            c.ok = false;
        }
        p.title = rt_strdup(str(e->title));
        p.body = rt_strdup(str(e->body));
        p.link = str(e->link);
    } else if (d == D(notifications_read)) {
        const Unpuzzle__Rt__V1__NotificationsRead *e = (const void *)event;
        p.event_id = e->event_id;
        plan_read(&p, &c, e);
    } else {
        return RT_OK; /* *out is NOTIFY_IGNORE */
    }

    /* Every event's own id: the Nats-Msg-Ids derived from it must be ids. */
    if (c.ok && !rt_id_valid(str(p.event_id))) {
        snprintf(why, why_size, "event_id: not an id [A-Za-z0-9_-]{1,64}");
        c.ok = false;
    }
    if (!p.link)
        p.link = "";
    if (!c.ok) {
        notify_plan_release(&p);
        return RT_ERR(RT_ERR_INVALID_ARG, "%s", why);
    }
    *out = p;
    return RT_OK;
}

void notify_plan_release(notify_plan *plan)
{
    if (!plan)
        return;
    free(plan->title);
    free(plan->body);
    free(plan->read_ids_array);
    plan->title = plan->body = plan->read_ids_array = NULL;
}
