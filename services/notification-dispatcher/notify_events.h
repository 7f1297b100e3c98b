/*
 * notify_events: what the dispatcher does with each message of the EVENTS
 * stream, decided without any I/O (unit-tested alone).
 *
 *   evt.v1.confusion.created    ConfusionCreated       remember who raised it
 *   evt.v1.question.created     QuestionCreated        remember who asked
 *   evt.v1.confusion.resolved   ConfusionResolved      notify the student (field or record)
 *   evt.v1.question.answered    QuestionAnswered       notify the asker (field or record)
 *   evt.v1.course.updated       CourseUpdated          notify every active student
 *   evt.v1.purchase.completed   PurchaseCompleted      notify the course's instructors
 *   evt.v1.notification.requested  NotificationRequested  one user, or every active student
 *   evt.v1.notification.read    NotificationsRead      mark read, tell the user's devices
 * Anything else under evt.v1.> is not the dispatcher's (acked, ignored).
 *
 * notify_plan_make() checks an event the way the contract states it (ids
 * [A-Za-z0-9_-]{1,64}, free text at most 4,000 characters of valid UTF-8,
 * links app-relative) and composes the notification's text; an event that
 * fails can never be processed (the caller terminates it).
 */
#ifndef NOTIFY_EVENTS_H
#define NOTIFY_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_proto.h"
#include "rt_status.h"

/* Free text limit of the contract (events.proto), in code points. */
#define NOTIFY_TEXT_MAX_CHARS 4000
/* Bytes of an app-relative link. */
#define NOTIFY_LINK_MAX 2048
/* notification_ids of one NotificationsRead (ws-edge sends at most 200). */
#define NOTIFY_READ_MAX_IDS 1000

typedef enum notify_action {
    NOTIFY_IGNORE = 0,      /* not the dispatcher's: ack */
    NOTIFY_RECORD_THREAD,   /* ConfusionCreated / QuestionCreated */
    NOTIFY_TO_USER,         /* one recipient named by the event */
    NOTIFY_TO_THREAD_OWNER, /* resolved / answered: recipient from the event or the record */
    NOTIFY_TO_STUDENTS,     /* every student of course_id with status added or completed */
    NOTIFY_TO_INSTRUCTORS,  /* every instructor of course_id with status added or completed */
    NOTIFY_MARK_READ,       /* NotificationsRead */
} notify_action;

typedef enum notify_thread_kind {
    NOTIFY_THREAD_NONE = 0,
    NOTIFY_THREAD_CONFUSION,
    NOTIFY_THREAD_QUESTION,
} notify_thread_kind;

/*
 * What to do with one event. Strings are borrowed from the event (which
 * must outlive the plan) except title and body, which the plan owns.
 */
typedef struct notify_plan {
    notify_action action;
    const char *event_id;
    const char *course_id; /* "" when the event has none */

    /* RECORD_THREAD, TO_THREAD_OWNER */
    notify_thread_kind thread_kind;
    const char *thread_id;
    const char *lesson_id; /* "" when unset */
    const char *owner_id;  /* the student / asker; "" when the event does not say */

    /* TO_USER */
    const char *recipient;

    /* the notification (TO_*) */
    const char *kind;
    char *title;
    char *body;
    const char *link;

    /* MARK_READ: the user and the ids that can be notification ids (decimal),
     * as a PostgreSQL array literal "{1,2,3}" (owned); n_read_ids may be 0. */
    const char *reader_id;
    char *read_ids_array;
    size_t n_read_ids;
} notify_plan;

/* The message type of an EVENTS subject the dispatcher acts on; NULL for
 * every other subject. */
const ProtobufCMessageDescriptor *notify_event_descriptor(const char *subject);

/* Builds the plan for a decoded event (its descriptor from
 * notify_event_descriptor()). On an invalid event returns
 * RT_ERR_INVALID_ARG and writes the reason (naming the field) into why; the
 * plan then holds nothing to release. */
rt_status notify_plan_make(notify_plan *out, const ProtobufCMessage *event, char *why,
                           size_t why_size);
void notify_plan_release(notify_plan *plan);

/* "confusion" / "question" (the notify_threads.kind values). */
const char *notify_thread_kind_name(notify_thread_kind kind);

/* True when `text` is valid UTF-8 of at most max_chars code points. */
bool notify_text_ok(const char *text, size_t max_chars);
/* True for "" or an app-relative link: "/" followed by no "/" or "\", no
 * whitespace or control characters, valid UTF-8, at most NOTIFY_LINK_MAX
 * bytes. Absolute URLs (https:, javascript:, //host) are refused. */
bool notify_link_ok(const char *link);
/* "1999" cents of "USD" -> "19.99 USD"; "JPY" has no minor unit, "KWD"
 * three digits. Currency must be three upper-case letters. */
rt_status notify_format_amount(char *out, size_t out_size, int64_t amount, const char *currency);
/* notify.v1.list limit: 0 -> 50, above 200 -> 200. */
uint32_t notify_list_limit(uint32_t requested);
/* True for a notification id as this service makes them (decimal, 1..18
 * digits, no leading zero). */
bool notify_id_ok(const char *id);

#endif
