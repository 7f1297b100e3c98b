/*
 * agg_events: the domain events the aggregator reads (stream EVENTS,
 * subjects evt.v1.>, spec/subjects.md), as one tagged view.
 *
 * The engine takes the protobuf-c messages of events.proto as they come off
 * the wire; agg_event_read() names the kind from the message's descriptor,
 * reads the fields every event has (event_id, occurred_at, course_id) and
 * checks what the aggregator relies on, so the engine never sees an event
 * it cannot count:
 *   - ids match [A-Za-z0-9_-]{1,64} (the contract's ids) where they are used;
 *   - occurred_at is set, in [1970, 2200) (agg_clock.h);
 *   - positions and video timestamps are finite, |x| <= 1e9 s; amounts
 *     |x| <= 1e15 cents; currencies are three upper-case letters;
 *   - an EnrollmentChanged says added, removed or completed.
 * Fields the aggregator does not use are not checked.
 *
 * Pure functions; any thread.
 */
#ifndef AGG_EVENTS_H
#define AGG_EVENTS_H

#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "rt_proto.h"
#include "rt_status.h"

typedef enum agg_event_kind {
    AGG_EVENT_CONFUSION_CREATED,
    AGG_EVENT_CONFUSION_RESOLVED,
    AGG_EVENT_QUESTION_CREATED,
    AGG_EVENT_QUESTION_ANSWERED,
    AGG_EVENT_PROGRESS_UPDATED,
    AGG_EVENT_LESSON_COMPLETED,
    AGG_EVENT_PROMPT_SHOWN,
    AGG_EVENT_PROMPT_RESPONDED,
    AGG_EVENT_QUIZ_SUBMITTED,
    AGG_EVENT_REFLECTION_SUBMITTED,
    AGG_EVENT_PURCHASE_COMPLETED,
    AGG_EVENT_ENROLLMENT_CHANGED,
    AGG_EVENT_LESSON_UPSERTED,
    AGG_EVENT_COURSE_UPDATED,
    /* Events on evt.v1.> that belong to no course's figures
     * (NotificationRequested, NotificationsRead). */
    AGG_EVENT_NOT_A_COURSE_EVENT,
} agg_event_kind;

/* One event: the common fields and the typed message (cast by kind, e.g.
 * (const Unpuzzle__Rt__V1__ProgressUpdated *)ev.msg). The strings point
 * into the message. */
typedef struct agg_event {
    agg_event_kind kind;
    const char *event_id;
    const char *course_id; /* NULL for AGG_EVENT_NOT_A_COURSE_EVENT */
    int64_t occurred_at_ns;
    const ProtobufCMessage *msg;
} agg_event;

/* The message type published on an EVENTS subject
 * ("evt.v1.progress.updated" -> ProgressUpdated), or NULL. */
const ProtobufCMessageDescriptor *agg_event_descriptor(const char *subject);

/* Reads and checks `msg` (any message of events.proto). RT_ERR_INVALID_ARG,
 * recorded with the field at fault, for a message that is not an event or
 * breaks a rule above. */
rt_status agg_event_read(agg_event *out, const ProtobufCMessage *msg);

/* "progress.updated", ... (the subject without "evt.v1."). */
const char *agg_event_kind_name(agg_event_kind kind);

#endif
