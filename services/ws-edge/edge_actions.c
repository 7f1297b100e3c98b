#include "edge_actions.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_names.h"
#include "rt_pbjson.h"
#include "rt_time.h"

#define V1(x) UNPUZZLE__RT__V1__##x
#define NOTIFICATION_IDS_MAX 200

typedef enum fanout_kind {
    FAN_NONE,
    FAN_COURSE, /* course:<courseId> */
    FAN_SELF,   /* user:<userId>, not back to the sending connection */
} fanout_kind;

typedef struct action_spec {
    const char *type, *action;
    const ProtobufCMessageDescriptor *desc;
    const char *subject;
    edge_action_who who;
    const char *required[6]; /* JSON keys the browser must send */
    const char *optional[3]; /* and may send */
    const char *entity_key;  /* the new id the server sets on create */
    fanout_kind fanout;
    int room_type, room_action, payload_case;
} action_spec;

static const action_spec specs[] = {
    {"confusion",
     "create",
     &unpuzzle__rt__v1__confusion_created__descriptor,
     "evt.v1.confusion.created",
     EDGE_ACTION_MEMBER,
     {"courseId", "lessonId", "videoTimestampSec"},
     {"text"},
     "confusionId",
     FAN_COURSE,
     V1(ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_CONFUSION),
     V1(ROOM_ACTION__ROOM_ACTION_CREATE),
     V1(ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED)},
    {"confusion",
     "update",
     &unpuzzle__rt__v1__confusion_resolved__descriptor,
     "evt.v1.confusion.resolved",
     EDGE_ACTION_INSTRUCTOR,
     {"courseId", "confusionId", "resolved"},
     {"response", "lessonId"},
     NULL,
     FAN_NONE,
     0,
     0,
     0},
    {"question",
     "create",
     &unpuzzle__rt__v1__question_created__descriptor,
     "evt.v1.question.created",
     EDGE_ACTION_MEMBER,
     {"courseId", "text"},
     {"lessonId"},
     "questionId",
     FAN_COURSE,
     V1(ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_QUESTION),
     V1(ROOM_ACTION__ROOM_ACTION_CREATE),
     V1(ROOM_MESSAGE__PAYLOAD_QUESTION_CREATED)},
    {"question",
     "update",
     &unpuzzle__rt__v1__question_answered__descriptor,
     "evt.v1.question.answered",
     EDGE_ACTION_INSTRUCTOR,
     {"courseId", "questionId", "answer"},
     {"lessonId"},
     NULL,
     FAN_NONE,
     0,
     0,
     0},
    {"progress",
     "update",
     &unpuzzle__rt__v1__progress_updated__descriptor,
     "evt.v1.progress.updated",
     EDGE_ACTION_MEMBER,
     {"courseId", "lessonId", "positionSec", "durationSec", "playing"},
     {"completed"},
     NULL,
     FAN_SELF,
     V1(ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_PROGRESS),
     V1(ROOM_ACTION__ROOM_ACTION_UPDATE),
     V1(ROOM_MESSAGE__PAYLOAD_PROGRESS)},
    {"prompt",
     "create",
     &unpuzzle__rt__v1__prompt_shown__descriptor,
     "evt.v1.prompt.shown",
     EDGE_ACTION_MEMBER,
     {"courseId", "lessonId", "promptId", "kind"},
     {NULL},
     NULL,
     FAN_NONE,
     0,
     0,
     0},
    {"prompt",
     "update",
     &unpuzzle__rt__v1__prompt_responded__descriptor,
     "evt.v1.prompt.responded",
     EDGE_ACTION_MEMBER,
     {"courseId", "lessonId", "promptId", "kind", "action"},
     {NULL},
     NULL,
     FAN_NONE,
     0,
     0,
     0},
    {"notification",
     "update",
     &unpuzzle__rt__v1__notifications_read__descriptor,
     "evt.v1.notification.read",
     EDGE_ACTION_SELF,
     {"notificationIds"},
     {NULL},
     NULL,
     FAN_NONE,
     0,
     0,
     0},
};

/* Keys of the events that only the server sets. */
static const char *const server_keys[] = {"eventId",     "occurredAt", "userId",
                                          "confusionId", "questionId", "studentUserId",
                                          "askerUserId", "actorUserId"};

static rt_status fail(char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static rt_status fail(char *why, size_t why_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
    return RT_ERR(RT_ERR_JSON, "%s", why);
}

/* A key is echoed only when it is short plain ASCII (never a value). */
static const char *echo(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 32)
        return "?";
    for (size_t i = 0; i < n; i++)
        if (key[i] <= ' ' || key[i] > '~' || key[i] == '"' || key[i] == '\'')
            return "?";
    return key;
}

static bool listed(const char *const *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n && list[i]; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

void edge_derive_id(char out[EDGE_EVENT_ID_MAX + 1], const char *name)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)name, strlen(name), d);
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x50); /* version 5 (name-based) */
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, EDGE_EVENT_ID_MAX + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0], d[1],
             d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14],
             d[15]);
}

/* Ids of an action come from the user and the client's request id, not the
 * connection: a client that lost an ack re-sends on its next connection
 * (maybe to another edge) and must hit the same event, and another user's
 * request id can never collide with it. */
static void derive(char out[EDGE_EVENT_ID_MAX + 1], const char *user_id, const char *client_id,
                   const char *what)
{
    char *name = rt_asprintf("%s/%s/%s", user_id, client_id, what);
    edge_derive_id(out, name);
    free(name);
}

/* The message's string field `name`, or NULL. */
static const char *string_field(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return *(const char *const *)((const char *)m + f->offset);
}

/* Ids the browser names must be ids ([A-Za-z0-9_-]{1,64}). */
static rt_status check_ids(const ProtobufCMessage *m, char *why, size_t why_size)
{
    static const char *const fields[][2] = {{"course_id", "courseId"},
                                            {"lesson_id", "lessonId"},
                                            {"confusion_id", "confusionId"},
                                            {"question_id", "questionId"},
                                            {"prompt_id", "promptId"}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = string_field(m, fields[i][0]);
        /* lessonId is optional on some actions: "" means absent. */
        if (v && (*v || strcmp(fields[i][0], "lesson_id") != 0) && !rt_id_valid(v))
            return fail(why, why_size, "%s must match [A-Za-z0-9_-]{1,64}", fields[i][1]);
    }
    return RT_OK;
}

static rt_status check_action(const action_spec *spec, const ProtobufCMessage *m, char *why,
                              size_t why_size)
{
    rt_status s = check_ids(m, why, why_size);
    if (s != RT_OK)
        return s;
    if (spec->desc == &unpuzzle__rt__v1__confusion_resolved__descriptor &&
        !((const Unpuzzle__Rt__V1__ConfusionResolved *)m)->resolved)
        return fail(why, why_size, "resolved must be true");
    if (spec->desc == &unpuzzle__rt__v1__question_created__descriptor &&
        !*((const Unpuzzle__Rt__V1__QuestionCreated *)m)->text)
        return fail(why, why_size, "text must not be empty");
    if (spec->desc == &unpuzzle__rt__v1__question_answered__descriptor &&
        !*((const Unpuzzle__Rt__V1__QuestionAnswered *)m)->answer)
        return fail(why, why_size, "answer must not be empty");
    if (spec->desc == &unpuzzle__rt__v1__prompt_shown__descriptor &&
        !((const Unpuzzle__Rt__V1__PromptShown *)m)->kind)
        return fail(why, why_size, "kind must be quiz or reflection");
    if (spec->desc == &unpuzzle__rt__v1__prompt_responded__descriptor) {
        const Unpuzzle__Rt__V1__PromptResponded *r = (const void *)m;
        if (!r->kind)
            return fail(why, why_size, "kind must be quiz or reflection");
        if (!r->action)
            return fail(why, why_size, "action must be completed or skipped");
    }
    if (spec->desc == &unpuzzle__rt__v1__notifications_read__descriptor) {
        const Unpuzzle__Rt__V1__NotificationsRead *r = (const void *)m;
        if (r->n_notification_ids == 0 || r->n_notification_ids > NOTIFICATION_IDS_MAX)
            return fail(why, why_size, "notificationIds must hold 1 to %d ids",
                        NOTIFICATION_IDS_MAX);
        for (size_t i = 0; i < r->n_notification_ids; i++)
            if (!rt_id_valid(r->notification_ids[i]))
                return fail(why, why_size, "notificationIds must be ids");
    }
    return RT_OK;
}

/* The payload, keys checked, plus what the server sets -> the event. */
static rt_status build_event(ProtobufCMessage **out, const action_spec *spec, const json_t *payload,
                             const char *user_id, const char *event_id, const char *entity_id,
                             int64_t now_ms, char *why, size_t why_size)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)payload, key, value)
    {
        (void)value;
        if (listed(spec->required, 6, key) || listed(spec->optional, 3, key))
            continue;
        if (listed(server_keys, sizeof(server_keys) / sizeof(server_keys[0]), key))
            return fail(why, why_size, "%s: field %s is set by the server", spec->type, echo(key));
        return fail(why, why_size, "%s: unknown field '%s'", spec->type, echo(key));
    }
    for (size_t i = 0; i < 6 && spec->required[i]; i++)
        if (!json_object_get(payload, spec->required[i]))
            return fail(why, why_size, "%s: missing field %s", spec->type, spec->required[i]);

    json_t *in = json_deep_copy(payload);
    char when[RT_TIME_RFC3339_LEN];
    rt_time_format_rfc3339(when, now_ms);
    json_object_set_new(in, "eventId", json_string(event_id));
    json_object_set_new(in, "occurredAt", json_string(when));
    json_object_set_new(in, "userId", json_string(user_id));
    if (spec->entity_key)
        json_object_set_new(in, spec->entity_key, json_string(entity_id));
    char err[200] = "";
    rt_status s = rt_pbjson_from_json(out, spec->desc, in, NULL, err, sizeof(err));
    json_decref(in);
    if (s != RT_OK)
        return fail(why, why_size, "%s: %s", spec->type, err);
    s = check_action(spec, *out, why, why_size);
    if (s != RT_OK) {
        protobuf_c_message_free_unpacked(*out, NULL);
        *out = NULL;
    }
    return s;
}

/* LessonCompleted for a progress heartbeat that says completed. */
static ProtobufCMessage *lesson_completed(const Unpuzzle__Rt__V1__ProgressUpdated *p,
                                          const char *event_id)
{
    Unpuzzle__Rt__V1__LessonCompleted *lc = rt_calloc(1, sizeof(*lc));
    unpuzzle__rt__v1__lesson_completed__init(lc);
    lc->event_id = rt_strdup(event_id);
    lc->occurred_at = rt_calloc(1, sizeof(*lc->occurred_at));
    google__protobuf__timestamp__init(lc->occurred_at);
    lc->occurred_at->seconds = p->occurred_at->seconds;
    lc->occurred_at->nanos = p->occurred_at->nanos;
    lc->course_id = rt_strdup(p->course_id);
    lc->lesson_id = rt_strdup(p->lesson_id);
    lc->user_id = rt_strdup(p->user_id);
    return &lc->base;
}

static void free_lesson_completed(ProtobufCMessage *m)
{
    Unpuzzle__Rt__V1__LessonCompleted *lc = (void *)m;
    free(lc->event_id);
    free(lc->occurred_at);
    free(lc->course_id);
    free(lc->lesson_id);
    free(lc->user_id);
    free(lc);
}

rt_status edge_action_build(edge_action *out, const char *type, const char *action,
                            const json_t *payload, const char *user_id, const char *connection_id,
                            const char *client_id, int64_t now_ms, char *why, size_t why_size)
{
    const action_spec *spec = NULL;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        if (strcmp(specs[i].type, type) == 0 && strcmp(specs[i].action, action) == 0)
            spec = &specs[i];
    if (!spec) {
        snprintf(why, why_size, "%s has no action %s", type, action);
        return RT_ERR(RT_ERR_NOT_FOUND, "%s", why);
    }
    if (!payload || !json_is_object(payload))
        return fail(why, why_size, "%s: payload must be an object", type);

    char what[48];
    snprintf(what, sizeof(what), "%s.%s", type, action);
    derive(out->event_ids[0], user_id, client_id, what);
    if (spec->entity_key) {
        derive(out->entity_id, user_id, client_id, "entity");
        out->entity_key = spec->entity_key;
    }
    ProtobufCMessage *event = NULL;
    rt_status s = build_event(&event, spec, payload, user_id, out->event_ids[0], out->entity_id,
                              now_ms, why, why_size);
    if (s != RT_OK)
        return s;
    out->who = spec->who;
    out->events[0] = event;
    out->subjects[0] = spec->subject;
    out->n_events = 1;
    const char *course = string_field(event, "course_id");
    snprintf(out->course_id, sizeof(out->course_id), "%s", course ? course : "");

    if (spec->desc == &unpuzzle__rt__v1__progress_updated__descriptor &&
        ((Unpuzzle__Rt__V1__ProgressUpdated *)event)->completed) {
        derive(out->event_ids[1], user_id, client_id, "completed");
        out->events[1] =
            lesson_completed((Unpuzzle__Rt__V1__ProgressUpdated *)event, out->event_ids[1]);
        out->subjects[1] = "evt.v1.lesson.completed";
        out->n_events = 2;
    }

    if (spec->fanout != FAN_NONE) {
        Unpuzzle__Rt__V1__RoomMessage *rm = rt_calloc(1, sizeof(*rm));
        unpuzzle__rt__v1__room_message__init(rm);
        rm->type = spec->room_type;
        rm->action = spec->room_action;
        rm->timestamp = rt_calloc(1, sizeof(*rm->timestamp));
        google__protobuf__timestamp__init(rm->timestamp);
        rm->timestamp->seconds = now_ms / 1000;
        rm->timestamp->nanos = (int32_t)(now_ms % 1000) * 1000000;
        rm->user_id = (char *)string_field(event, "user_id");
        rm->event_id = out->event_ids[0];
        rm->payload_case = spec->payload_case;
        /* Every payload member is a pointer at the same place of the union. */
        rm->confusion_created = (Unpuzzle__Rt__V1__ConfusionCreated *)event;
        if (spec->fanout == FAN_SELF) {
            snprintf(out->fanout_room, sizeof(out->fanout_room), "user:%s", user_id);
            snprintf(out->origin, sizeof(out->origin), "%s", connection_id);
            rm->origin_connection_id = out->origin;
        } else {
            snprintf(out->fanout_room, sizeof(out->fanout_room), "course:%s", out->course_id);
        }
        out->fanout = rm;
        snprintf(out->fanout_msg_id, sizeof(out->fanout_msg_id), "room-%s", out->event_ids[0]);
    }
    return RT_OK;
}

void edge_action_free(edge_action *a)
{
    if (!a)
        return;
    if (a->fanout) {
        free(a->fanout->timestamp);
        free(a->fanout);
    }
    if (a->events[0])
        protobuf_c_message_free_unpacked(a->events[0], NULL);
    if (a->n_events > 1 && a->events[1])
        free_lesson_completed(a->events[1]);
    memset(a, 0, sizeof(*a));
}
