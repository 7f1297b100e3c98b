/*
 * edge_frames: parsing browser frames and rendering server frames.
 *
 * Parsing uses jansson (json_loadb with JSON_REJECT_DUPLICATES) and then
 * walks the object once: every key is looked up in a small table, checked
 * against the fields its frame type allows, and validated in place. Strings
 * are borrowed from the jansson tree (no copies beyond the fixed-size fields
 * of edge_in_frame).
 *
 * Rendering writes the envelope by hand into one growing buffer (one
 * allocation in the common case) with a JSON string writer that escapes '"',
 * '\\' and control characters and replaces invalid UTF-8 with U+FFFD, so the
 * output is always valid JSON text without a raw newline. Only the payload of
 * a room message goes through jansson (rt_pbjson builds it).
 */
#include "edge_frames.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_pbjson.h"
#include "rt_time.h"

/* ---- parsing ---- */

enum {
    F_TYPE = 1u << 0,
    F_ID = 1u << 1,
    F_TOKEN = 1u << 2,
    F_ROOM = 1u << 3,
    F_SINCE = 1u << 4,
    F_ACTION = 1u << 5,
    F_PAYLOAD = 1u << 6,
};

/* Order of this table = order in which missing required fields are named. */
static const struct {
    unsigned bit;
    const char *name;
} field_names[] = {
    {F_TYPE, "type"},   {F_ID, "id"},         {F_TOKEN, "token"},     {F_ROOM, "room"},
    {F_SINCE, "since"}, {F_ACTION, "action"}, {F_PAYLOAD, "payload"},
};

static const struct {
    const char *name;
    edge_in_type type;
    unsigned allowed;
    unsigned required;
} frame_kinds[] = {
    {"auth", EDGE_IN_AUTH, F_TYPE | F_ID | F_TOKEN, F_TOKEN},
    {"refresh", EDGE_IN_REFRESH, F_TYPE | F_ID | F_TOKEN, F_TOKEN},
    {"subscribe", EDGE_IN_SUBSCRIBE, F_TYPE | F_ID | F_ROOM | F_SINCE, F_ROOM},
    {"unsubscribe", EDGE_IN_UNSUBSCRIBE, F_TYPE | F_ID | F_ROOM, F_ROOM},
    {"ping", EDGE_IN_PING, F_TYPE | F_ID, 0},
    /* Actions: the ack needs the id, so it is required. */
    {"confusion", EDGE_IN_ACTION, F_TYPE | F_ID | F_ACTION | F_PAYLOAD,
     F_ID | F_ACTION | F_PAYLOAD},
    {"question", EDGE_IN_ACTION, F_TYPE | F_ID | F_ACTION | F_PAYLOAD, F_ID | F_ACTION | F_PAYLOAD},
    {"progress", EDGE_IN_ACTION, F_TYPE | F_ID | F_ACTION | F_PAYLOAD, F_ID | F_ACTION | F_PAYLOAD},
    {"prompt", EDGE_IN_ACTION, F_TYPE | F_ID | F_ACTION | F_PAYLOAD, F_ID | F_ACTION | F_PAYLOAD},
    {"notification", EDGE_IN_ACTION, F_TYPE | F_ID | F_ACTION | F_PAYLOAD,
     F_ID | F_ACTION | F_PAYLOAD},
    /* {"type":"notifications","action":"list","id":"n1","payload":{...}} */
    {"notifications", EDGE_IN_ACTION, F_TYPE | F_ID | F_ACTION | F_PAYLOAD, F_ID | F_ACTION},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
/* Longest field name echoed in "unknown field 'x'". */
#define ECHO_NAME_MAX 32

static unsigned field_bit(const char *key)
{
    for (size_t i = 0; i < N_ELEMS(field_names); i++)
        if (strcmp(key, field_names[i].name) == 0)
            return field_names[i].bit;
    return 0;
}

static const char *field_name(unsigned bit)
{
    for (size_t i = 0; i < N_ELEMS(field_names); i++)
        if (field_names[i].bit == bit)
            return field_names[i].name;
    return "?";
}

/* Printable ASCII without '"' and '\\': safe to copy, log and render. */
static bool plain_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

/* A key that may be echoed: short, printable, no quotes of either kind. */
static bool echoable_name(const char *s)
{
    size_t len = strnlen(s, ECHO_NAME_MAX + 1);
    if (len == 0 || len > ECHO_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ' || s[i] == '\'')
            return false;
    return plain_ascii(s, len);
}

static rt_status fail(char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static rt_status fail(char *why, size_t why_size, const char *fmt, ...)
{
    va_list ap;
    if (why && why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }
    /* A bad frame is the client's mistake, so it is not recorded with
     * RT_ERR(): that would cost a formatted copy per frame during a flood. */
    return RT_ERR_JSON;
}

static rt_status unknown_field(char *why, size_t why_size, const char *prefix, const char *key)
{
    if (echoable_name(key))
        return fail(why, why_size, "unknown field '%s%s'", prefix, key);
    return fail(why, why_size, "unknown field");
}

static rt_status parse_since(edge_in_frame *out, json_t *since, char *why, size_t why_size)
{
    const char *key;
    json_t *v;
    bool have_seq = false, have_epoch = false;

    if (!json_is_object(since))
        return fail(why, why_size, "since must be an object");
    json_object_foreach(since, key, v)
    {
        if (strcmp(key, "seq") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return fail(why, why_size, "since.seq must be a non-negative integer");
            out->since_seq = (uint64_t)json_integer_value(v);
            have_seq = true;
        } else if (strcmp(key, "epoch") == 0) {
            const char *s;
            size_t len;
            if (!json_is_string(v))
                return fail(why, why_size, "since.epoch must be a string");
            s = json_string_value(v);
            len = json_string_length(v);
            if (len > EDGE_EPOCH_MAX)
                return fail(why, why_size, "since.epoch must be at most %d bytes", EDGE_EPOCH_MAX);
            if (!plain_ascii(s, len))
                return fail(why, why_size, "since.epoch must be printable ASCII");
            memcpy(out->since_epoch, s, len);
            out->since_epoch[len] = '\0';
            have_epoch = true;
        } else {
            return unknown_field(why, why_size, "since.", key);
        }
    }
    if (!have_seq)
        return fail(why, why_size, "since: missing field seq");
    if (!have_epoch)
        return fail(why, why_size, "since: missing field epoch");
    out->has_since = true;
    return RT_OK;
}

/* Reads "id" first, so that every later error can carry it. */
static rt_status parse_id(edge_in_frame *out, json_t *root, bool *present, char *why,
                          size_t why_size)
{
    json_t *v = json_object_get(root, "id");
    const char *s;
    size_t len;

    *present = false;
    if (!v || json_is_null(v))
        return RT_OK;
    if (!json_is_string(v))
        return fail(why, why_size, "id must be a string");
    s = json_string_value(v);
    len = json_string_length(v);
    if (len == 0 || len > EDGE_CLIENT_ID_MAX || !plain_ascii(s, len))
        return fail(why, why_size, "id must be 1 to %d printable ASCII characters",
                    EDGE_CLIENT_ID_MAX);
    memcpy(out->id, s, len);
    out->id[len] = '\0';
    *present = true;
    return RT_OK;
}

static rt_status parse_fields(edge_in_frame *out, json_t *root, char *why, size_t why_size)
{
    json_t *type_v = json_object_get(root, "type");
    const char *type_s, *key;
    size_t kind = N_ELEMS(frame_kinds);
    unsigned seen = 0, missing;
    bool id_present;
    json_t *v;
    rt_status rc;

    rc = parse_id(out, root, &id_present, why, why_size);
    if (rc != RT_OK)
        return rc;
    if (id_present)
        seen |= F_ID;

    if (!type_v)
        return fail(why, why_size, "missing field type");
    if (!json_is_string(type_v))
        return fail(why, why_size, "type must be a string");
    type_s = json_string_value(type_v);
    for (size_t i = 0; i < N_ELEMS(frame_kinds); i++) {
        if (strcmp(type_s, frame_kinds[i].name) == 0) {
            kind = i;
            break;
        }
    }
    /* The value is not echoed: it is the client's text, not a field name. */
    if (kind == N_ELEMS(frame_kinds))
        return fail(why, why_size, "unknown type");
    seen |= F_TYPE;

    json_object_foreach(root, key, v)
    {
        unsigned bit = field_bit(key);
        const char *s;
        size_t len;

        if (!bit || !(frame_kinds[kind].allowed & bit))
            return unknown_field(why, why_size, "", key);
        switch (bit) {
        case F_TYPE:
        case F_ID:
            break; /* checked above */
        case F_TOKEN:
            if (!json_is_string(v))
                return fail(why, why_size, "token must be a string");
            len = json_string_length(v);
            if (len == 0)
                return fail(why, why_size, "token must not be empty");
            if (len > EDGE_TOKEN_MAX)
                return fail(why, why_size, "token must be at most %d bytes", EDGE_TOKEN_MAX);
            out->token = json_string_value(v);
            out->token_len = len;
            seen |= F_TOKEN;
            break;
        case F_ROOM:
            if (!json_is_string(v))
                return fail(why, why_size, "room must be a string");
            s = json_string_value(v);
            /* rt_room_parse's reasons name the rule, never the value. */
            if (rt_room_parse(&out->room, s) != RT_OK)
                return fail(why, why_size, "%s", rt_error_message());
            /* An accepted name is already canonical ("kind:id", which
             * fits): copied, not re-formatted, to keep printf off the
             * per-frame path. */
            len = json_string_length(v);
            if (len >= sizeof(out->room_name))
                return fail(why, why_size, "room id must match [A-Za-z0-9_-]{1,64}");
            memcpy(out->room_name, s, len + 1);
            seen |= F_ROOM;
            break;
        case F_SINCE:
            if (json_is_null(v))
                break; /* "since": null is the same as no since */
            rc = parse_since(out, v, why, why_size);
            if (rc != RT_OK)
                return rc;
            seen |= F_SINCE;
            break;
        case F_ACTION:
            if (!json_is_string(v))
                return fail(why, why_size, "action must be a string");
            s = json_string_value(v);
            if (strcmp(s, "create") != 0 && strcmp(s, "update") != 0 && strcmp(s, "list") != 0)
                return fail(why, why_size, "action must be create, update or list");
            snprintf(out->action, sizeof(out->action), "%s", s);
            seen |= F_ACTION;
            break;
        case F_PAYLOAD:
            if (!json_is_object(v))
                return fail(why, why_size, "payload must be an object");
            out->payload = v;
            seen |= F_PAYLOAD;
            break;
        default:
            return unknown_field(why, why_size, "", key);
        }
    }

    missing = frame_kinds[kind].required & ~seen;
    if (missing) {
        unsigned first = missing & -missing; /* lowest bit = table order */
        return fail(why, why_size, "%s: missing field %s", frame_kinds[kind].name,
                    field_name(first));
    }
    out->type = frame_kinds[kind].type;
    if (out->type == EDGE_IN_ACTION)
        memcpy(out->action_type, frame_kinds[kind].name, strlen(frame_kinds[kind].name) + 1);
    return RT_OK;
}

rt_status edge_frame_parse(edge_in_frame *out, const char *data, size_t len, char *why,
                           size_t why_size)
{
    json_error_t jerr;
    json_t *root;
    rt_status rc;

    if (why && why_size > 0)
        why[0] = '\0';
    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "edge_frame_parse: out is NULL");
    memset(out, 0, sizeof(*out));
    if (!data)
        return fail(why, why_size, "invalid JSON");

    /* JSON_DECODE_ANY so that a scalar frame gets "must be a JSON object"
     * rather than a parser message; NUL in strings stays refused. */
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        /* jansson's own text quotes the input ("near 'xyz'"), so it is not
         * passed on; the position alone helps the developer. */
        switch (json_error_code(&jerr)) {
        case json_error_duplicate_key:
            return fail(why, why_size, "duplicate key");
        case json_error_invalid_utf8:
            return fail(why, why_size, "frame is not valid UTF-8");
        case json_error_null_character:
        case json_error_null_byte_in_key:
            return fail(why, why_size, "strings must not contain NUL");
        case json_error_numeric_overflow:
            return fail(why, why_size, "number out of range");
        case json_error_stack_overflow:
            return fail(why, why_size, "frame nested too deeply");
        case json_error_premature_end_of_input:
            return fail(why, why_size, "invalid JSON: unexpected end of frame");
        default:
            return fail(why, why_size, "invalid JSON at byte %d", jerr.position);
        }
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(why, why_size, "frame must be a JSON object");
    }

    out->root = root;
    rc = parse_fields(out, root, why, why_size);
    if (rc != RT_OK) {
        /* Keep only the id: nothing else of a refused frame may be used. */
        char id[sizeof(out->id)];
        memcpy(id, out->id, sizeof(id));
        json_decref(root);
        memset(out, 0, sizeof(*out));
        memcpy(out->id, id, sizeof(id));
    }
    return rc;
}

void edge_frame_release(edge_in_frame *frame)
{
    if (!frame)
        return;
    json_decref(frame->root);
    frame->root = NULL;
    frame->payload = NULL;
    frame->token = NULL;
    frame->token_len = 0;
}

/* ---- rendering ---- */

typedef struct wbuf {
    char *data;
    size_t len;
    size_t cap;
} wbuf;

static void wb_init(wbuf *b, size_t cap)
{
    b->cap = cap;
    b->len = 0;
    b->data = rt_malloc(cap);
}

static void wb_reserve(wbuf *b, size_t extra)
{
    /* +1 keeps room for the final NUL. */
    if (b->len + extra + 1 <= b->cap)
        return;
    while (b->len + extra + 1 > b->cap)
        b->cap *= 2;
    b->data = rt_realloc(b->data, b->cap);
}

static void wb_raw(wbuf *b, const char *s, size_t n)
{
    wb_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void wb_lit(wbuf *b, const char *s)
{
    wb_raw(b, s, strlen(s));
}

static int wb_dump_cb(const char *buffer, size_t size, void *data)
{
    wb_raw(data, buffer, size);
    return 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (n >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return (n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return (n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
                (s[3] & 0xc0) == 0x80)
                   ? 4
                   : 0;
    }
    return 0;
}

/* A JSON string: quotes, escapes, invalid UTF-8 replaced by U+FFFD. NULL is
 * written as "". */
static void wb_str(wbuf *b, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t n = strlen((const char *)s);
    size_t run = 0; /* bytes at s that need no escaping */

    /* Worst case every byte becomes \u00XX (6 bytes) or U+FFFD (3). */
    wb_reserve(b, n + 2);
    b->data[b->len++] = '"';
    while (n > 0) {
        unsigned char c = s[run];
        size_t seq;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            if (++run < n)
                continue;
            wb_raw(b, (const char *)s, run);
            break;
        }
        if (c >= 0x80 && (seq = utf8_seq_len(s + run, n - run)) > 0) {
            run += seq;
            if (run < n)
                continue;
            wb_raw(b, (const char *)s, run);
            break;
        }
        wb_raw(b, (const char *)s, run);
        s += run;
        n -= run;
        run = 0;
        switch (c) {
        case '"':
            wb_raw(b, "\\\"", 2);
            break;
        case '\\':
            wb_raw(b, "\\\\", 2);
            break;
        case '\n':
            wb_raw(b, "\\n", 2);
            break;
        case '\r':
            wb_raw(b, "\\r", 2);
            break;
        case '\t':
            wb_raw(b, "\\t", 2);
            break;
        case '\b':
            wb_raw(b, "\\b", 2);
            break;
        case '\f':
            wb_raw(b, "\\f", 2);
            break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
                wb_raw(b, esc, sizeof(esc));
            } else {
                wb_raw(b, "\xef\xbf\xbd", 3); /* invalid UTF-8 byte */
            }
            break;
        }
        s++;
        n--;
    }
    wb_reserve(b, 1);
    b->data[b->len++] = '"';
}

static void wb_u64(wbuf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);
    wb_raw(b, num, (size_t)n);
}

/* ,"key":"value" — `key_part` is the literal `,"key":`. */
static void wb_field(wbuf *b, const char *key_part, const char *value)
{
    wb_lit(b, key_part);
    wb_str(b, value);
}

static void wb_opt_field(wbuf *b, const char *key_part, const char *value)
{
    if (value && value[0])
        wb_field(b, key_part, value);
}

static char *wb_finish(wbuf *b, size_t *out_len)
{
    wb_reserve(b, 1);
    b->data[b->len] = '\0';
    if (out_len)
        *out_len = b->len;
    return b->data;
}

static const char *role_name(Unpuzzle__Rt__V1__Role role)
{
    switch (role) {
    case UNPUZZLE__RT__V1__ROLE__ROLE_INSTRUCTOR:
        return "instructor";
    case UNPUZZLE__RT__V1__ROLE__ROLE_ADMIN:
        return "admin";
    default:
        /* Auth never sends UNSPECIFIED; should it, the least privilege. */
        return "student";
    }
}

char *edge_render_auth_ok(size_t *out_len, const char *connection_id, const char *user_id,
                          Unpuzzle__Rt__V1__Role role, int64_t expires_at_ms)
{
    char ts[RT_TIME_RFC3339_LEN];
    wbuf b;

    rt_time_format_rfc3339(ts, expires_at_ms);
    wb_init(&b, 160);
    wb_lit(&b, "{\"type\":\"auth_ok\"");
    wb_field(&b, ",\"connectionId\":", connection_id);
    wb_field(&b, ",\"userId\":", user_id);
    wb_field(&b, ",\"role\":", role_name(role));
    wb_field(&b, ",\"expiresAt\":", ts);
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

char *edge_render_error(size_t *out_len, const char *id, const char *code, const char *message,
                        const char *room)
{
    wbuf b;

    wb_init(&b, 128);
    wb_lit(&b, "{\"type\":\"error\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_field(&b, ",\"code\":", code && code[0] ? code : "internal");
    wb_opt_field(&b, ",\"message\":", message);
    wb_opt_field(&b, ",\"room\":", room);
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

char *edge_render_subscribed(size_t *out_len, const char *id, const char *room, const char *epoch,
                             uint64_t seq, bool recovered)
{
    wbuf b;

    wb_init(&b, 160);
    wb_lit(&b, "{\"type\":\"subscribed\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_field(&b, ",\"room\":", room);
    wb_field(&b, ",\"epoch\":", epoch);
    wb_lit(&b, ",\"seq\":");
    wb_u64(&b, seq);
    wb_lit(&b, recovered ? ",\"recovered\":true}" : ",\"recovered\":false}");
    return wb_finish(&b, out_len);
}

char *edge_render_unsubscribed(size_t *out_len, const char *id, const char *room)
{
    wbuf b;

    wb_init(&b, 128);
    wb_lit(&b, "{\"type\":\"unsubscribed\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_field(&b, ",\"room\":", room);
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

char *edge_render_pong(size_t *out_len, const char *id, int64_t server_time_ms)
{
    char ts[RT_TIME_RFC3339_LEN];
    wbuf b;

    rt_time_format_rfc3339(ts, server_time_ms);
    wb_init(&b, 128);
    wb_lit(&b, "{\"type\":\"pong\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_field(&b, ",\"serverTime\":", ts);
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

char *edge_render_ack(size_t *out_len, const char *id, const char *event_id)
{
    wbuf b;

    wb_init(&b, 128);
    wb_lit(&b, "{\"type\":\"ack\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_field(&b, ",\"eventId\":", event_id);
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

char *edge_render_action_ack(size_t *out_len, const char *id, const char *event_id,
                             const char *entity_key, const char *entity_id, bool duplicate)
{
    wbuf b;

    wb_init(&b, 160);
    wb_lit(&b, "{\"type\":\"ack\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_field(&b, ",\"eventId\":", event_id);
    if (entity_key && *entity_key && entity_id && *entity_id) {
        wb_lit(&b, ",\"");
        wb_lit(&b, entity_key); /* a fixed key of ours, not input */
        wb_lit(&b, "\":");
        wb_field(&b, "", entity_id);
    }
    if (duplicate)
        wb_lit(&b, ",\"duplicate\":true");
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

char *edge_render_notifications(size_t *out_len, const char *id, const char *payload_json)
{
    wbuf b;

    wb_init(&b, 64 + (payload_json ? strlen(payload_json) : 2));
    wb_lit(&b, "{\"type\":\"notifications\"");
    wb_opt_field(&b, ",\"id\":", id);
    wb_lit(&b, ",\"payload\":");
    wb_lit(&b, payload_json && *payload_json ? payload_json : "{}");
    wb_lit(&b, "}");
    return wb_finish(&b, out_len);
}

static const char *obj_string(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key)); /* NULL if absent */
}

char *edge_render_room_message(size_t *out_len, const Unpuzzle__Rt__V1__RoomMessage *msg,
                               const char *room, uint64_t seq, uint64_t prev_seq)
{
    json_t *obj = NULL, *payload;
    const char *timestamp;
    wbuf b;
    rt_status rc;

    if (out_len)
        *out_len = 0;
    if (!msg) {
        RT_ERR(RT_ERR_INVALID_ARG, "edge_render_room_message: no message");
        return NULL;
    }
    rc = rt_pbjson_to_json(&obj, &msg->base, RT_PBJSON_ONEOF_AS_GROUP);
    if (rc != RT_OK)
        return NULL; /* recorded by rt_pbjson */

    wb_init(&b, 512);
    wb_lit(&b, "{");
    wb_field(&b, "\"type\":", obj_string(obj, "type"));
    wb_field(&b, ",\"action\":", obj_string(obj, "action"));
    wb_field(&b, ",\"room\":", room);
    wb_lit(&b, ",\"seq\":");
    wb_u64(&b, seq);
    wb_lit(&b, ",\"prevSeq\":");
    wb_u64(&b, prev_seq);
    wb_lit(&b, ",\"payload\":");
    payload = json_object_get(obj, "payload");
    if (json_is_object(payload)) {
        if (json_dump_callback(payload, wb_dump_cb, &b, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
            json_decref(obj);
            free(b.data);
            RT_ERR(RT_ERR_INTERNAL, "edge_render_room_message: json_dump_callback failed");
            return NULL;
        }
    } else {
        wb_lit(&b, "{}");
    }
    timestamp = obj_string(obj, "timestamp");
    wb_opt_field(&b, ",\"timestamp\":", timestamp);
    wb_opt_field(&b, ",\"userId\":", obj_string(obj, "userId"));
    wb_opt_field(&b, ",\"eventId\":", obj_string(obj, "eventId"));
    wb_lit(&b, "}");
    json_decref(obj);
    return wb_finish(&b, out_len);
}
