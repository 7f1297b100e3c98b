/*
 * rtctl publish: one RoomMessage into a room, the way a producer service
 * does it: typed payload parsed strictly from JSON, event_id as the
 * Nats-Msg-Id, JetStream publish on rt.v1.room.<kind>.<id> with retries.
 *
 * Which RoomMessage.payload member the JSON fills, by (type, action):
 *
 *   analytics    any      analytics            (CourseMetrics)
 *   confusion    update   confusion_resolved   (ConfusionResolved)
 *   confusion    other    confusion_created    (ConfusionCreated)
 *   question     update   question_answered    (QuestionAnswered)
 *   question     other    question_created     (QuestionCreated)
 *   progress     any      progress             (ProgressUpdated)
 *   notification update   notifications_read   (NotificationsRead) when the
 *                         JSON has "notificationIds", else notification
 *   notification other    notification         (Notification)
 *   presence     any      presence             (PresenceSnapshot)
 *   purchase     any      purchase             (PurchaseCompleted)
 *
 * --member <name> picks another member explicitly (e.g. lessonCompleted).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rt_alloc.h"
#include "rt_log.h"
#include "rt_nats.h"
#include "rt_pbjson.h"
#include "rt_proto.h"
#include "rt_room.h"
#include "rt_time.h"
#include "rtctl.h"

#define PUBLISH_TIMEOUT_MS 2000
#define PUBLISH_ATTEMPTS 3
#define CONNECT_TIMEOUT_MS 5000
#define EVENT_ID_MAX 128

typedef struct payload_rule {
    const char *type;
    const char *action; /* NULL: any action */
    const char *member; /* RoomMessage field name */
} payload_rule;

/* First match wins (see the table at the top of the file). */
static const payload_rule payload_rules[] = {
    {"analytics", NULL, "analytics"},         {"confusion", "update", "confusion_resolved"},
    {"confusion", NULL, "confusion_created"}, {"question", "update", "question_answered"},
    {"question", NULL, "question_created"},   {"progress", NULL, "progress"},
    {"notification", NULL, "notification"}, /* update + notificationIds: see pick_member() */
    {"presence", NULL, "presence"},           {"purchase", NULL, "purchase"},
};

static void publish_usage(FILE *out)
{
    fputs("usage: rtctl publish <room> <type> <action> '<payload json>'\n"
          "                     [--user-id U] [--event-id E] [--member M]\n"
          "\n"
          "Publishes a RoomMessage to rt.v1.room.<kind>.<id> through JetStream, with\n"
          "Nats-Msg-Id = event id (a retried or repeated publish is stored once), after\n"
          "creating the ROOMS stream if it does not exist yet (an existing stream is\n"
          "left as it is).\n"
          "\n"
          "  room      course:<id>, lesson:<id>, user:<id> or instructor:<id>\n"
          "  type      analytics|confusion|progress|notification|presence|question|purchase\n"
          "  action    create|update|delete\n"
          "  payload   JSON object of the payload message, in the browser's camelCase\n"
          "            keys; unknown fields and wrong types are refused (exit 2)\n"
          "  --user-id    RoomMessage.userId (who caused it)\n"
          "  --event-id   event id (default: a new UUID v4)\n"
          "  --member     payload member to fill instead of the default below\n"
          "\n"
          "payload member by type/action:\n"
          "  analytics/*            analytics          (CourseMetrics)\n"
          "  confusion/update       confusionResolved  (ConfusionResolved)\n"
          "  confusion/create|delete confusionCreated  (ConfusionCreated)\n"
          "  question/update        questionAnswered   (QuestionAnswered)\n"
          "  question/create|delete questionCreated    (QuestionCreated)\n"
          "  progress/*             progress           (ProgressUpdated)\n"
          "  notification/update    notificationsRead  (NotificationsRead) if the payload\n"
          "                         has notificationIds, else notification\n"
          "  notification/*         notification       (Notification)\n"
          "  presence/*             presence           (PresenceSnapshot)\n"
          "  purchase/*             purchase           (PurchaseCompleted)\n"
          "The payload's eventId, occurredAt and userId, when its message has them and\n"
          "the JSON leaves them out, are set to the event id, the current time and\n"
          "--user-id.\n"
          "\n"
          "prints: published <room> seq=<N> event_id=<E> [duplicate]\n"
          "example: rtctl publish course:42 confusion create \\\n"
          "           '{\"courseId\":\"42\",\"lessonId\":\"l1\",\"videoTimestampSec\":12.5}'\n",
          out);
}

/* "confusion" -> ROOM_MESSAGE_TYPE_CONFUSION through the enum descriptor, so
 * a type added to rooms.proto is accepted without code here. */
static bool parse_enum(int *out, const ProtobufCEnumDescriptor *desc, const char *prefix,
                       const char *text)
{
    char name[96];
    size_t n = (size_t)snprintf(name, sizeof(name), "%s", prefix);

    for (const char *p = text; *p && n + 1 < sizeof(name); p++)
        name[n++] = (char)toupper((unsigned char)*p);
    name[n] = '\0';
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(desc, name);
    if (!v || v->value == 0 || strlen(text) > 32)
        return false;
    *out = v->value;
    return true;
}

/* The payload oneof member named `name` (proto name or JSON name). */
static const ProtobufCFieldDescriptor *find_member(const char *name)
{
    const ProtobufCMessageDescriptor *desc = &unpuzzle__rt__v1__room_message__descriptor;
    char json_name[96];

    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        rt_pbjson_json_name(json_name, sizeof(json_name), f->name);
        if (strcmp(f->name, name) == 0 || strcmp(json_name, name) == 0)
            return f;
    }
    return NULL;
}

static const char *pick_member(const char *type, const char *action, const char *payload_json)
{
    if (strcmp(type, "notification") == 0 && strcmp(action, "update") == 0) {
        /* A read receipt and an updated notification share type and action;
         * the receipt is the one that lists notificationIds. */
        json_t *obj = json_loads(payload_json, JSON_REJECT_DUPLICATES, NULL);
        bool is_read = json_is_object(obj) && json_object_get(obj, "notificationIds");
        json_decref(obj);
        if (is_read)
            return "notifications_read";
    }
    for (size_t i = 0; i < sizeof(payload_rules) / sizeof(payload_rules[0]); i++) {
        const payload_rule *r = &payload_rules[i];
        if (strcmp(r->type, type) == 0 && (!r->action || strcmp(r->action, action) == 0))
            return r->member;
    }
    return NULL;
}

/* Event ids travel as the Nats-Msg-Id header: printable, no spaces. */
static bool event_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > EVENT_ID_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

/* Sets the string field `name` of `payload` to `value` when the message has
 * such a field and it is empty. */
static void fill_string(ProtobufCMessage *payload, const char *name, const char *value)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(payload->descriptor, name);

    if (!value || !f || f->type != PROTOBUF_C_TYPE_STRING || f->label != PROTOBUF_C_LABEL_NONE)
        return;
    char **slot = (char **)((char *)payload + f->offset);
    if (*slot && **slot)
        return;
    /* free_unpacked() skips the shared default; anything else is ours. */
    if (*slot && *slot != (const char *)f->default_value)
        free(*slot);
    *slot = rt_strdup(value);
}

/* Fills the payload's event_id, occurred_at and user_id (the actor in every
 * payload message that has one) when its message has such fields and the
 * JSON left them unset, as a producer service would. */
static void fill_event_fields(ProtobufCMessage *payload, const char *event_id, const char *user_id,
                              int64_t now_ms)
{
    const ProtobufCFieldDescriptor *f;

    fill_string(payload, "event_id", event_id);
    fill_string(payload, "user_id", user_id);
    f = protobuf_c_message_descriptor_get_field_by_name(payload->descriptor, "occurred_at");
    if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
        f->descriptor == &google__protobuf__timestamp__descriptor) {
        Google__Protobuf__Timestamp **slot =
            (Google__Protobuf__Timestamp **)((char *)payload + f->offset);
        if (!*slot) {
            Google__Protobuf__Timestamp *ts = rt_malloc(sizeof(*ts));
            google__protobuf__timestamp__init(ts);
            ts->seconds = now_ms / 1000;
            ts->nanos = (int32_t)(now_ms % 1000) * 1000000;
            *slot = ts;
        }
    }
}

/* Creates ROOMS only when it is missing: an operator tool must not rewrite
 * the limits a deployment gave the stream. A failed lookup (for instance a
 * NATS user without $JS.API.STREAM.INFO permission) is not fatal; the
 * publish will tell. */
static rt_status ensure_rooms_stream(rt_nats *nats, const rtctl_config *config)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = js_GetStreamInfo(&si, rt_nats_jetstream(nats), "ROOMS", NULL, &jerr);

    jsStreamInfo_Destroy(si);
    if (ns == NATS_OK)
        return RT_OK;
    if (ns == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        rt_stream_spec spec;
        rt_stream_spec_rooms(&spec, config->rooms_max_age_s, config->rooms_max_per_room,
                             config->rooms_duplicate_window_s);
        return rt_nats_ensure_stream(nats, &spec);
    }
    rt_log_warn("cannot look up the ROOMS stream; publishing anyway", "{s:s}", "error",
                natsStatus_GetText(ns));
    return RT_OK;
}

typedef struct publish_args {
    const char *room, *type, *action, *payload;
    const char *user_id, *event_id, *member;
} publish_args;

/* Returns -1 to go on, else the exit code (help, usage error). */
static int parse_args(publish_args *a, int argc, char **argv)
{
    const char *positional[4];
    int n_positional = 0;
    bool bad = false;

    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc && !bad; i++) {
        if (rtctl_is_help(argv[i])) {
            publish_usage(stdout);
            return RTCTL_EXIT_OK;
        }
        if (rtctl_opt_value(argc, argv, &i, "--user-id", &a->user_id, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--event-id", &a->event_id, &bad) ||
            rtctl_opt_value(argc, argv, &i, "--member", &a->member, &bad))
            continue;
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "rtctl publish: unknown option %s\n", argv[i]);
            bad = true;
        } else if (n_positional == 4) {
            fprintf(stderr, "rtctl publish: unexpected argument '%s'\n", argv[i]);
            bad = true;
        } else {
            positional[n_positional++] = argv[i];
        }
    }
    if (!bad && n_positional < 4) {
        fprintf(stderr, "rtctl publish: needs <room> <type> <action> '<payload json>'\n");
        bad = true;
    }
    if (bad) {
        fputs("(rtctl publish --help for usage)\n", stderr);
        return RTCTL_EXIT_USAGE;
    }
    a->room = positional[0];
    a->type = positional[1];
    a->action = positional[2];
    a->payload = positional[3];
    return -1;
}

int rtctl_publish_main(const rtctl_config *config, int argc, char **argv)
{
    publish_args a;
    rt_room room;
    int type = 0, action = 0;
    const ProtobufCFieldDescriptor *member;
    const char *member_name;
    char event_id[EVENT_ID_MAX + 1];
    char err[256] = "";
    char subject[RT_ROOM_SUBJECT_MAX], room_name[RT_ROOM_NAME_MAX];
    ProtobufCMessage *payload = NULL;
    rt_nats *nats = NULL;
    uint8_t *buf = NULL;
    int code;

    if ((code = parse_args(&a, argc, argv)) >= 0)
        return code;
    code = RTCTL_EXIT_USAGE;
    if (rt_room_parse(&room, a.room) != RT_OK) {
        fprintf(stderr, "rtctl publish: room '%s': %s\n", a.room, rt_error_message());
        return code;
    }
    if (!parse_enum(&type, &unpuzzle__rt__v1__room_message_type__descriptor, "ROOM_MESSAGE_TYPE_",
                    a.type)) {
        fprintf(stderr,
                "rtctl publish: type '%s': must be analytics, confusion, progress, "
                "notification, presence, question or purchase\n",
                a.type);
        return code;
    }
    if (!parse_enum(&action, &unpuzzle__rt__v1__room_action__descriptor, "ROOM_ACTION_",
                    a.action)) {
        fprintf(stderr, "rtctl publish: action '%s': must be create, update or delete\n", a.action);
        return code;
    }
    if (a.user_id && !rt_id_valid(a.user_id)) {
        fprintf(stderr, "rtctl publish: --user-id: must match [A-Za-z0-9_-]{1,64}\n");
        return code;
    }
    if (a.event_id && !event_id_valid(a.event_id)) {
        fprintf(stderr, "rtctl publish: --event-id: 1 to %d printable characters, no spaces\n",
                EVENT_ID_MAX);
        return code;
    }
    member_name = a.member ? a.member : pick_member(a.type, a.action, a.payload);
    member = member_name ? find_member(member_name) : NULL;
    if (!member) {
        fprintf(stderr, "rtctl publish: --member '%s': not a RoomMessage payload member\n",
                member_name ? member_name : "");
        return code;
    }
    if (rt_pbjson_from_string(&payload, member->descriptor, a.payload, strlen(a.payload), NULL, err,
                              sizeof(err)) != RT_OK) {
        /* err is "<json path>: <reason>", the path "$" for the object itself. */
        const char *short_name =
            ((const ProtobufCMessageDescriptor *)member->descriptor)->short_name;
        if (strncmp(err, "$: ", 3) == 0)
            fprintf(stderr, "rtctl publish: payload: %s (%s)\n", err + 3, short_name);
        else
            fprintf(stderr, "rtctl publish: payload.%s (%s)\n", err, short_name);
        return code;
    }

    if (a.event_id) {
        snprintf(event_id, sizeof(event_id), "%s", a.event_id);
    } else if (!rtctl_uuid_v4(event_id)) {
        fprintf(stderr, "rtctl publish: no randomness for an event id (RAND_bytes)\n");
        code = RTCTL_EXIT_FAILED;
        goto out;
    }
    int64_t now_ms = rt_time_now_ms();
    fill_event_fields(payload, event_id, a.user_id, now_ms);

    Unpuzzle__Rt__V1__RoomMessage msg = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = now_ms / 1000;
    ts.nanos = (int32_t)(now_ms % 1000) * 1000000;
    msg.type = (Unpuzzle__Rt__V1__RoomMessageType)type;
    msg.action = (Unpuzzle__Rt__V1__RoomAction)action;
    msg.timestamp = &ts;
    msg.user_id = (char *)(a.user_id ? a.user_id : "");
    msg.event_id = event_id;
    /* Set the oneof through its descriptor: the member pointer and the case. */
    *(ProtobufCMessage **)((char *)&msg + member->offset) = payload;
    *(uint32_t *)((char *)&msg + member->quantifier_offset) = member->id;

    size_t len = protobuf_c_message_get_packed_size(&msg.base);
    buf = rt_malloc(len ? len : 1);
    protobuf_c_message_pack(&msg.base, buf);

    code = RTCTL_EXIT_FAILED;
    rt_nats_options no = {.url = config->nats_url,
                          .name = "rtctl",
                          .user = config->nats_user,
                          .password = config->nats_password,
                          .creds_file = config->nats_creds_file};
    if (rt_nats_connect(&nats, &no) != RT_OK ||
        rt_nats_wait_connected(nats, CONNECT_TIMEOUT_MS) != RT_OK) {
        char url[512];
        rt_log_redact_url(url, sizeof(url), config->nats_url);
        fprintf(stderr, "rtctl publish: cannot connect to NATS at %s: %s\n", url,
                rt_error_message());
        goto out;
    }
    if (ensure_rooms_stream(nats, config) != RT_OK) {
        fprintf(stderr, "rtctl publish: ROOMS stream: %s\n", rt_error_message());
        goto out;
    }
    rt_room_subject(subject, sizeof(subject), "rt.v1.room", &room);
    uint64_t seq = 0;
    bool duplicate = false;
    if (rt_nats_js_publish(&seq, &duplicate, nats, subject, buf, (int)len, event_id,
                           PUBLISH_TIMEOUT_MS, PUBLISH_ATTEMPTS) != RT_OK) {
        fprintf(stderr, "rtctl publish: %s: %s\n", subject, rt_error_message());
        goto out;
    }
    rt_room_name(room_name, &room);
    printf("published %s seq=%llu event_id=%s%s\n", room_name, (unsigned long long)seq, event_id,
           duplicate ? " duplicate" : "");
    code = RTCTL_EXIT_OK;
out:
    rt_nats_close(nats, 1000);
    free(buf);
    if (payload)
        protobuf_c_message_free_unpacked(payload, NULL);
    return code;
}
