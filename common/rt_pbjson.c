/*
 * rt_pbjson: protobuf <-> JSON from the protobuf-c 1.4 descriptors (see the
 * header for the mapping).
 *
 * Memory: input builds the message with rt_malloc()/rt_strndup() (plain
 * malloc underneath) and links every allocation into its parent *before*
 * filling it, so on any error one protobuf_c_message_free_unpacked(top, NULL)
 * releases everything; repeated arrays are calloc()ed and counted in full at
 * once, since protobuf-c frees NULL elements harmlessly.
 *
 * Oneof names: protobuf-c 1.4.1 keeps no oneof table in its descriptors (only
 * PROTOBUF_C_FIELD_FLAG_ONEOF and, per member, the offset of the shared
 * `<oneof>_case` word in quantifier_offset). Members of one oneof are found by
 * that shared offset; the oneof's own name, needed only for
 * RT_PBJSON_ONEOF_AS_GROUP, comes from the table `oneof_names` below, keyed by
 * message and any one member. integration.test_proto_python checks the table
 * against protoc's parse of every .proto file, so a new oneof fails CI until
 * it is listed; at run time an unlisted oneof is an RT_ERR_INTERNAL, never a
 * silently different shape.
 */
#include "rt_pbjson.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_alloc.h"
#include "rt_time.h"

const rt_pbjson_limits rt_pbjson_default_limits = {
    .max_string_chars = 4000,
    .max_repeated = 1000,
    .max_depth = 16,
};

/* Output recursion guard: messages we render are built by our own services,
 * so this only protects the stack from a recursive schema gone wrong. */
#define OUTPUT_MAX_DEPTH 100

/* The oneofs of the v1 contract: message full name, any member, oneof name. */
static const struct {
    const char *message;
    const char *member;
    const char *oneof;
} oneof_names[] = {
    {"unpuzzle.rt.v1.RoomMessage", "analytics", "payload"},
    {"unpuzzle.rt.v1.NotificationRequested", "user_id", "recipient"},
};

/* Valid range of google.protobuf.Timestamp: 0001-01-01 to 9999-12-31. */
#define TIMESTAMP_MIN_SECONDS INT64_C(-62135596800)
#define TIMESTAMP_MAX_SECONDS INT64_C(253402300799)

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

typedef struct pbjson_ctx {
    unsigned flags;
    const rt_pbjson_limits *limits;
    size_t depth;
    char path[256];
    size_t path_len;
    char *err;
    size_t err_size;
} pbjson_ctx;

static void ctx_init(pbjson_ctx *c, unsigned flags, const rt_pbjson_limits *limits, char *err,
                     size_t err_size)
{
    memset(c, 0, sizeof(*c));
    c->flags = flags;
    c->limits = limits ? limits : &rt_pbjson_default_limits;
    c->err = err;
    c->err_size = err_size;
    if (err && err_size)
        err[0] = '\0';
}

/* Appends text to the path, truncating quietly when it is full. Bytes that
 * are not printable ASCII become '?': keys of unknown fields come from the
 * input and the error text ends up in JSON logs. */
static void path_append(pbjson_ctx *c, const char *s, size_t n)
{
    for (size_t i = 0; i < n && c->path_len + 1 < sizeof(c->path); i++) {
        unsigned char ch = (unsigned char)s[i];
        c->path[c->path_len++] = (ch >= 0x20 && ch < 0x7f && ch != '"') ? (char)ch : '?';
    }
    c->path[c->path_len] = '\0';
}

static size_t path_push_key(pbjson_ctx *c, const char *key, size_t key_len)
{
    size_t saved = c->path_len;
    if (saved)
        path_append(c, ".", 1);
    path_append(c, key, key_len > 64 ? 64 : key_len);
    return saved;
}

static size_t path_push_index(pbjson_ctx *c, size_t index)
{
    size_t saved = c->path_len;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "[%zu]", index);
    path_append(c, buf, (size_t)n);
    return saved;
}

static void path_pop(pbjson_ctx *c, size_t saved)
{
    c->path_len = saved;
    c->path[saved] = '\0';
}

/* Records "<path>: <reason>" as the error (the top level is "$"). */
static rt_status fail_status(pbjson_ctx *c, rt_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rt_status fail_status(pbjson_ctx *c, rt_status s, const char *fmt, ...)
{
    char reason[160];
    char msg[sizeof(reason) + sizeof(c->path) + 4];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "%s: %s", c->path_len ? c->path : "$", reason);
    if (c->err && c->err_size)
        snprintf(c->err, c->err_size, "%s", msg);
    return RT_ERR(s, "%s", msg);
}

#define fail(c, ...) fail_status((c), RT_ERR_JSON, __VA_ARGS__)

/* jansson reports allocation failure as NULL; our policy is to abort. */
static json_t *must(json_t *j)
{
    if (!j) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory (jansson)\"}\n");
        abort();
    }
    return j;
}

/* ---- names ---- */

void rt_pbjson_json_name(char *out, size_t out_size, const char *field_name)
{
    size_t n = 0;
    bool upper_next = false;

    if (!out || out_size == 0)
        return;
    for (const char *p = field_name ? field_name : ""; *p && n + 1 < out_size; p++) {
        if (*p == '_') {
            upper_next = true;
            continue;
        }
        out[n++] = upper_next ? (char)toupper((unsigned char)*p) : *p;
        upper_next = false;
    }
    out[n] = '\0';
}

/* Whether `key` (key_len bytes, may hold NULs) is the JSON name of `name`. */
static bool key_is_json_name(const char *name, const char *key, size_t key_len)
{
    size_t k = 0;
    bool upper_next = false;

    for (const char *p = name; *p; p++) {
        char want;
        if (*p == '_') {
            upper_next = true;
            continue;
        }
        want = upper_next ? (char)toupper((unsigned char)*p) : *p;
        upper_next = false;
        if (k >= key_len || key[k] != want)
            return false;
        k++;
    }
    return k == key_len;
}

/* A JSON key for a field or oneof name; free with key_done(). */
typedef struct key_buf {
    char stack[96];
    char *s;
} key_buf;

static const char *key_of(key_buf *kb, const char *name)
{
    size_t n = strlen(name) + 1;
    kb->s = n <= sizeof(kb->stack) ? kb->stack : rt_malloc(n);
    rt_pbjson_json_name(kb->s, n, name);
    return kb->s;
}

static void key_done(key_buf *kb)
{
    if (kb->s != kb->stack)
        free(kb->s);
}

/* "PromptKind" -> "PROMPT_KIND_". */
static void enum_prefix(char *out, size_t out_size, const char *short_name)
{
    size_t n = 0;
    size_t len = strlen(short_name);

    for (size_t i = 0; i < len && n + 2 < out_size; i++) {
        unsigned char ch = (unsigned char)short_name[i];
        if (i > 0 && isupper(ch)) {
            unsigned char prev = (unsigned char)short_name[i - 1];
            unsigned char next = (unsigned char)short_name[i + 1];
            if (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next)))
                out[n++] = '_';
        }
        if (n + 2 < out_size)
            out[n++] = (char)toupper(ch);
    }
    out[n++] = '_';
    out[n] = '\0';
}

/* PROMPT_KIND_QUIZ -> "quiz" (a name without the prefix is just lowered). */
static void enum_json_name(char *out, size_t out_size, const ProtobufCEnumDescriptor *ed,
                           const char *value_name)
{
    char prefix[128];
    size_t plen, n = 0;
    const char *p = value_name;

    enum_prefix(prefix, sizeof(prefix), ed->short_name ? ed->short_name : "");
    plen = strlen(prefix);
    if (strncmp(value_name, prefix, plen) == 0 && value_name[plen] != '\0')
        p = value_name + plen;
    for (; *p && n + 1 < out_size; p++)
        out[n++] = (char)tolower((unsigned char)*p);
    out[n] = '\0';
}

/* ---- well-known types ---- */

typedef enum wkt_kind { WKT_NONE, WKT_TIMESTAMP, WKT_WRAPPER } wkt_kind;

static wkt_kind wkt_of(const ProtobufCMessageDescriptor *d)
{
    static const char *const wrappers[] = {
        "google.protobuf.DoubleValue", "google.protobuf.FloatValue",  "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value", "google.protobuf.Int32Value",  "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue",
    };

    if (!d->name || strncmp(d->name, "google.protobuf.", 16) != 0)
        return WKT_NONE;
    if (strcmp(d->name, "google.protobuf.Timestamp") == 0)
        return WKT_TIMESTAMP;
    for (size_t i = 0; i < sizeof(wrappers) / sizeof(wrappers[0]); i++) {
        if (strcmp(d->name, wrappers[i]) == 0 && d->n_fields == 1 &&
            d->fields[0].label != PROTOBUF_C_LABEL_REPEATED)
            return WKT_WRAPPER;
    }
    return WKT_NONE;
}

static bool timestamp_fields(const ProtobufCMessageDescriptor *d,
                             const ProtobufCFieldDescriptor **seconds,
                             const ProtobufCFieldDescriptor **nanos)
{
    *seconds = protobuf_c_message_descriptor_get_field_by_name(d, "seconds");
    *nanos = protobuf_c_message_descriptor_get_field_by_name(d, "nanos");
    return *seconds && *nanos && (*seconds)->type == PROTOBUF_C_TYPE_INT64 &&
           (*nanos)->type == PROTOBUF_C_TYPE_INT32;
}

static const char *oneof_name_of(const ProtobufCMessageDescriptor *d,
                                 const ProtobufCFieldDescriptor *member)
{
    for (size_t i = 0; i < sizeof(oneof_names) / sizeof(oneof_names[0]); i++) {
        const ProtobufCFieldDescriptor *f;
        if (strcmp(d->name, oneof_names[i].message) != 0)
            continue;
        f = protobuf_c_message_descriptor_get_field_by_name(d, oneof_names[i].member);
        if (f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            f->quantifier_offset == member->quantifier_offset)
            return oneof_names[i].oneof;
    }
    return NULL;
}

/* ---- UTF-8 and base64 ---- */

/* Validates UTF-8 (no overlongs, surrogates or > U+10FFFF) and counts code
 * points. */
static bool utf8_count(const unsigned char *s, size_t len, size_t *chars)
{
    size_t i = 0, count = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        unsigned char lo = 0x80, hi = 0xbf;

        if (c < 0x80) {
            extra = 0;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false;
        }
        if (extra > len - i - 1)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            unsigned char cc = s[i + k];
            if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xbf))
                return false;
        }
        i += extra + 1;
        count++;
    }
    *chars = count;
    return true;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *base64_json(const uint8_t *data, size_t len)
{
    size_t out_len = (len + 2) / 3 * 4;
    char *out = rt_malloc(out_len + 1);
    size_t o = 0;
    json_t *j;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    j = must(json_stringn_nocheck(out, o));
    free(out);
    return j;
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional. *out is NULL when empty. */
static bool base64_decode(ProtobufCBinaryData *out, const char *s, size_t len)
{
    uint8_t *data;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    while (len > 0 && s[len - 1] == '=' && len % 4 != 1)
        len--;
    if (len % 4 == 1)
        return false;
    out->len = 0;
    out->data = NULL;
    if (len == 0)
        return true;
    data = rt_malloc(len / 4 * 3 + 3);
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(data);
            return false;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            data[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->len = o;
    out->data = data;
    return true;
}

/* ---- protobuf -> JSON ---- */

static rt_status message_to_json(json_t **out, pbjson_ctx *c, const ProtobufCMessage *msg);

static json_t *enum_to_json(const ProtobufCEnumDescriptor *ed, int value)
{
    const ProtobufCEnumValue *ev;
    char name[128];

    /* 0 is *_UNSPECIFIED: ""; so is a number this build does not know (a
     * newer producer), which receivers treat as "missing" as well. */
    if (value == 0 || !(ev = protobuf_c_enum_descriptor_get_value(ed, value)))
        return must(json_string(""));
    enum_json_name(name, sizeof(name), ed, ev->name);
    return must(json_string(name));
}

/* A float as the double nearest to its shortest decimal form, so 0.1f is
 * written 0.1 rather than 0.10000000149011612. */
static double float_for_json(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return (double)f;
}

/* Writes the JSON of one value of field `f` stored at `p` into *out, or
 * NULL into *out when it is to be omitted (a NULL sub-message). */
static rt_status value_to_json(json_t **out, pbjson_ctx *c, const ProtobufCFieldDescriptor *f,
                               const void *p)
{
    *out = NULL;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *out = must(json_integer(*(const int32_t *)p));
        return RT_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *out = must(json_integer(*(const uint32_t *)p));
        return RT_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *out = must(json_integer(*(const int64_t *)p));
        return RT_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v = *(const uint64_t *)p;
        if (v <= (uint64_t)INT64_MAX) {
            *out = must(json_integer((json_int_t)v));
        } else {
            /* jansson numbers are int64; the input side takes this back. */
            char buf[24];
            snprintf(buf, sizeof(buf), "%" PRIu64, v);
            *out = must(json_string(buf));
        }
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float v = *(const float *)p;
        if (!isfinite(v))
            return fail(c, "not a finite number");
        *out = must(json_real(float_for_json(v)));
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v = *(const double *)p;
        if (!isfinite(v))
            return fail(c, "not a finite number");
        *out = must(json_real(v));
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_BOOL:
        *out = must(json_boolean(*(const protobuf_c_boolean *)p));
        return RT_OK;
    case PROTOBUF_C_TYPE_ENUM:
        *out = enum_to_json(f->descriptor, *(const int *)p);
        return RT_OK;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        size_t len, chars;
        if (!s)
            s = "";
        len = strlen(s);
        if (!utf8_count((const unsigned char *)s, len, &chars))
            return fail(c, "not valid UTF-8");
        *out = must(json_stringn_nocheck(s, len));
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        *out = base64_json(b->data, b->data ? b->len : 0);
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        const ProtobufCMessageDescriptor *sd = f->descriptor;
        switch (wkt_of(sd)) {
        case WKT_WRAPPER:
            if (!sub) {
                *out = must(json_null());
                return RT_OK;
            }
            return value_to_json(out, c, &sd->fields[0], CMEMBER(sub, sd->fields[0].offset));
        case WKT_TIMESTAMP: {
            const ProtobufCFieldDescriptor *fs, *fn;
            int64_t secs;
            int32_t nanos;
            char text[RT_TIME_RFC3339_LEN];
            if (!sub)
                return RT_OK;
            if (!timestamp_fields(sd, &fs, &fn))
                return fail_status(c, RT_ERR_INTERNAL, "unexpected Timestamp descriptor");
            secs = *(const int64_t *)CMEMBER(sub, fs->offset);
            nanos = *(const int32_t *)CMEMBER(sub, fn->offset);
            if (secs < TIMESTAMP_MIN_SECONDS || secs > TIMESTAMP_MAX_SECONDS || nanos < 0 ||
                nanos > 999999999)
                return fail(c, "timestamp out of range");
            rt_time_format_rfc3339(text, secs * 1000 + nanos / 1000000);
            *out = must(json_string(text));
            return RT_OK;
        }
        case WKT_NONE:
            break;
        }
        if (!sub)
            return RT_OK;
        return message_to_json(out, c, sub);
    }
    }
    return fail_status(c, RT_ERR_INTERNAL, "unsupported protobuf type %d", (int)f->type);
}

static size_t repeated_elem_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static rt_status repeated_to_json(json_t **out, pbjson_ctx *c, const ProtobufCFieldDescriptor *f,
                                  const ProtobufCMessage *msg)
{
    size_t n = *(const size_t *)CMEMBER(msg, f->quantifier_offset);
    const char *arr = *(char *const *)CMEMBER(msg, f->offset);
    size_t size = repeated_elem_size(f->type);
    json_t *a = must(json_array());

    for (size_t i = 0; arr && i < n; i++) {
        size_t saved = path_push_index(c, i);
        json_t *v;
        rt_status rc = value_to_json(&v, c, f, arr + i * size);
        path_pop(c, saved);
        if (rc != RT_OK) {
            json_decref(a);
            return rc;
        }
        /* A NULL element of a repeated message has nothing to say: null. */
        json_array_append_new(a, v ? v : must(json_null()));
    }
    *out = a;
    return RT_OK;
}

static rt_status message_to_json(json_t **out, pbjson_ctx *c, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *obj;
    rt_status rc = RT_OK;

    *out = NULL;
    if (++c->depth > OUTPUT_MAX_DEPTH) {
        c->depth--;
        return fail(c, "nested deeper than %d levels", OUTPUT_MAX_DEPTH);
    }
    obj = must(json_object());
    for (unsigned i = 0; i < d->n_fields && rc == RT_OK; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *name = f->name;
        const void *member = CMEMBER(msg, f->offset);
        json_t *v = NULL;
        key_buf kb;
        const char *key;
        size_t saved;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)CMEMBER(msg, f->quantifier_offset) != f->id)
                continue;
            if (c->flags & RT_PBJSON_ONEOF_AS_GROUP) {
                name = oneof_name_of(d, f);
                if (!name) {
                    rc = RT_ERR(RT_ERR_INTERNAL,
                                "%s: the oneof of %s has no name in rt_pbjson.c oneof_names",
                                d->name, f->name);
                    if (c->err && c->err_size)
                        snprintf(c->err, c->err_size, "%s", rt_error_message());
                    break;
                }
            }
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
                   f->type != PROTOBUF_C_TYPE_STRING) {
            if (!*(const protobuf_c_boolean *)CMEMBER(msg, f->quantifier_offset))
                continue;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type == PROTOBUF_C_TYPE_STRING) {
            if (!*(char *const *)member)
                continue;
        }

        key = key_of(&kb, name);
        saved = path_push_key(c, key, strlen(key));
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            rc = repeated_to_json(&v, c, f, msg);
        else
            rc = value_to_json(&v, c, f, member);
        path_pop(c, saved);
        if (rc == RT_OK && v)
            json_object_set_new(obj, key, v);
        key_done(&kb);
    }
    c->depth--;
    if (rc != RT_OK) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return RT_OK;
}

rt_status rt_pbjson_to_json(json_t **out, const ProtobufCMessage *msg, unsigned flags)
{
    pbjson_ctx c;

    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_pbjson_to_json: out is NULL");
    *out = NULL;
    if (!msg || !msg->descriptor)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_pbjson_to_json: no message");
    ctx_init(&c, flags, NULL, NULL, 0);
    return message_to_json(out, &c, msg);
}

typedef struct dump_buf {
    char *data;
    size_t len;
    size_t cap;
} dump_buf;

static int dump_append(const char *buffer, size_t size, void *data)
{
    dump_buf *b = data;
    if (b->len + size + 1 > b->cap) {
        while (b->len + size + 1 > b->cap)
            b->cap *= 2;
        b->data = rt_realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, buffer, size);
    b->len += size;
    return 0;
}

rt_status rt_pbjson_to_string(char **out, size_t *out_len, const ProtobufCMessage *msg,
                              unsigned flags)
{
    json_t *root;
    dump_buf b;
    rt_status rc;

    if (!out)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_pbjson_to_string: out is NULL");
    *out = NULL;
    if (out_len)
        *out_len = 0;
    rc = rt_pbjson_to_json(&root, msg, flags);
    if (rc != RT_OK)
        return rc;
    /* Dumped straight into an rt_malloc()ed buffer (jansson's own malloc may
     * have been replaced by json_set_alloc_funcs elsewhere). */
    b.cap = 256;
    b.len = 0;
    b.data = rt_malloc(b.cap);
    if (json_dump_callback(root, dump_append, &b, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
        json_decref(root);
        free(b.data);
        return RT_ERR(RT_ERR_INTERNAL, "json_dump_callback failed");
    }
    json_decref(root);
    b.data[b.len] = '\0';
    *out = b.data;
    if (out_len)
        *out_len = b.len;
    return RT_OK;
}

/* ---- JSON -> protobuf ---- */

static rt_status message_from_json(pbjson_ctx *c, const json_t *obj, ProtobufCMessage *msg);

/* A JSON string with no NUL; *s and *len point into `v`. */
static rt_status get_string(pbjson_ctx *c, const json_t *v, const char **s, size_t *len)
{
    if (!json_is_string(v))
        return fail(c, "expected a string");
    *s = json_string_value(v);
    *len = json_string_length(v);
    if (memchr(*s, '\0', *len))
        return fail(c, "contains a NUL character");
    return RT_OK;
}

static rt_status get_integer(pbjson_ctx *c, const json_t *v, bool allow_string, int64_t min,
                             int64_t max, const char *type_name, int64_t *out)
{
    int64_t x;

    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != trunc(d))
            return fail(c, "expected an integer");
        if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return fail(c, "out of range for %s", type_name);
        x = (int64_t)d;
    } else if (allow_string && json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        size_t i = (len > 0 && s[0] == '-') ? 1 : 0;
        char *end;
        if (len == i || len > 20)
            return fail(c, "expected an integer");
        for (size_t k = i; k < len; k++) {
            if (!isdigit((unsigned char)s[k]))
                return fail(c, "expected an integer");
        }
        errno = 0;
        x = strtoll(s, &end, 10);
        if (errno == ERANGE)
            return fail(c, "out of range for %s", type_name);
    } else {
        return fail(c, "expected an integer");
    }
    if (x < min || x > max)
        return fail(c, "out of range for %s", type_name);
    *out = x;
    return RT_OK;
}

static rt_status get_uint64(pbjson_ctx *c, const json_t *v, uint64_t *out)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        char *end;
        unsigned long long x;
        if (len == 0 || len > 20)
            return fail(c, "expected an integer");
        for (size_t k = 0; k < len; k++) {
            if (!isdigit((unsigned char)s[k]))
                return fail(c, "expected an integer");
        }
        errno = 0;
        x = strtoull(s, &end, 10);
        if (errno == ERANGE)
            return fail(c, "out of range for uint64");
        *out = x;
        return RT_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != trunc(d))
            return fail(c, "expected an integer");
        if (d < 0 || d >= 18446744073709551616.0)
            return fail(c, "out of range for uint64");
        *out = (uint64_t)d;
        return RT_OK;
    }
    if (!json_is_integer(v))
        return fail(c, "expected an integer");
    if (json_integer_value(v) < 0)
        return fail(c, "out of range for uint64");
    *out = (uint64_t)json_integer_value(v);
    return RT_OK;
}

static rt_status enum_from_json(pbjson_ctx *c, const ProtobufCEnumDescriptor *ed, const json_t *v,
                                int *out)
{
    const char *s = NULL;
    size_t len = 0;
    rt_status rc = get_string(c, v, &s, &len);

    if (rc != RT_OK)
        return rc;
    if (len == 0) {
        if (!protobuf_c_enum_descriptor_get_value(ed, 0))
            return fail(c, "unknown enum value");
        *out = 0;
        return RT_OK;
    }
    for (unsigned i = 0; i < ed->n_values; i++) {
        char name[128];
        enum_json_name(name, sizeof(name), ed, ed->values[i].name);
        if (strlen(name) == len && memcmp(name, s, len) == 0) {
            *out = ed->values[i].value;
            return RT_OK;
        }
    }
    return fail(c, "unknown enum value");
}

/* A new, initialised message of type `d`. */
static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = rt_malloc(d->sizeof_message);
    protobuf_c_message_init(d, m);
    return m;
}

static rt_status timestamp_from_json(pbjson_ctx *c, const ProtobufCMessageDescriptor *d,
                                     const json_t *v, ProtobufCMessage **slot)
{
    const ProtobufCFieldDescriptor *fs, *fn;
    const char *s = NULL;
    size_t len = 0;
    int64_t secs;
    int32_t nanos;
    rt_status rc = get_string(c, v, &s, &len);

    if (rc != RT_OK)
        return rc;
    if (!timestamp_fields(d, &fs, &fn))
        return fail_status(c, RT_ERR_INTERNAL, "unexpected Timestamp descriptor");
    if (len > 64 || rt_time_parse_rfc3339(&secs, &nanos, s) != RT_OK)
        return fail(c, "not an RFC 3339 timestamp");
    if (secs < TIMESTAMP_MIN_SECONDS || secs > TIMESTAMP_MAX_SECONDS)
        return fail(c, "timestamp out of range");
    *slot = new_message(d);
    *(int64_t *)MEMBER(*slot, fs->offset) = secs;
    *(int32_t *)MEMBER(*slot, fn->offset) = nanos;
    return RT_OK;
}

/* Parses one (non-null) value of field `f` into `slot`. Whatever it stores
 * there is owned by the message being built, also on failure. */
static rt_status value_from_json(pbjson_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                                 void *slot)
{
    rt_status rc;
    int64_t x;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        rc = get_integer(c, v, false, INT32_MIN, INT32_MAX, "int32", &x);
        if (rc == RT_OK)
            *(int32_t *)slot = (int32_t)x;
        return rc;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        rc = get_integer(c, v, false, 0, UINT32_MAX, "uint32", &x);
        if (rc == RT_OK)
            *(uint32_t *)slot = (uint32_t)x;
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        rc = get_integer(c, v, true, INT64_MIN, INT64_MAX, "int64", &x);
        if (rc == RT_OK)
            *(int64_t *)slot = x;
        return rc;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return get_uint64(c, v, (uint64_t *)slot);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d;
        if (!json_is_number(v))
            return fail(c, "expected a number");
        d = json_number_value(v);
        if (!isfinite(d))
            return fail(c, "not a finite number");
        if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
            *(double *)slot = d;
        } else {
            if (d > FLT_MAX || d < -FLT_MAX)
                return fail(c, "out of range for float");
            *(float *)slot = (float)d;
        }
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return fail(c, "expected true or false");
        *(protobuf_c_boolean *)slot = json_is_true(v);
        return RT_OK;
    case PROTOBUF_C_TYPE_ENUM:
        return enum_from_json(c, f->descriptor, v, (int *)slot);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = NULL;
        size_t len = 0, chars = 0;
        rc = get_string(c, v, &s, &len);
        if (rc != RT_OK)
            return rc;
        if (!utf8_count((const unsigned char *)s, len, &chars))
            return fail(c, "not valid UTF-8");
        if (chars > c->limits->max_string_chars)
            return fail(c, "longer than %zu characters", c->limits->max_string_chars);
        *(char **)slot = rt_strndup(s, len);
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const char *s;
        size_t len;
        if (!json_is_string(v))
            return fail(c, "expected a base64 string");
        s = json_string_value(v);
        len = json_string_length(v);
        if (!base64_decode((ProtobufCBinaryData *)slot, s, len))
            return fail(c, "not valid base64");
        return RT_OK;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *sd = f->descriptor;
        ProtobufCMessage **sub = slot;
        switch (wkt_of(sd)) {
        case WKT_TIMESTAMP:
            return timestamp_from_json(c, sd, v, sub);
        case WKT_WRAPPER:
            *sub = new_message(sd);
            return value_from_json(c, &sd->fields[0], v, MEMBER(*sub, sd->fields[0].offset));
        case WKT_NONE:
            break;
        }
        if (!json_is_object(v))
            return fail(c, "expected an object");
        *sub = new_message(sd);
        return message_from_json(c, v, *sub);
    }
    }
    return fail_status(c, RT_ERR_INTERNAL, "unsupported protobuf type %d", (int)f->type);
}

static rt_status repeated_from_json(pbjson_ctx *c, const ProtobufCFieldDescriptor *f,
                                    const json_t *v, ProtobufCMessage *msg)
{
    size_t n, size = repeated_elem_size(f->type);
    char *arr;

    if (!json_is_array(v))
        return fail(c, "expected an array");
    n = json_array_size(v);
    if (n > c->limits->max_repeated)
        return fail(c, "more than %zu items", c->limits->max_repeated);
    if (n == 0)
        return RT_OK;
    /* Zeroed and counted in full at once: protobuf-c frees NULL elements. */
    arr = rt_calloc(n, size);
    *(void **)MEMBER(msg, f->offset) = arr;
    *(size_t *)MEMBER(msg, f->quantifier_offset) = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        size_t saved = path_push_index(c, i);
        rt_status rc = json_is_null(e) ? fail(c, "null in an array")
                                       : value_from_json(c, f, e, arr + i * size);
        path_pop(c, saved);
        if (rc != RT_OK)
            return rc;
    }
    return RT_OK;
}

static rt_status field_from_json(pbjson_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                                 ProtobufCMessage *msg)
{
    rt_status rc;

    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return repeated_from_json(c, f, v, msg);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = MEMBER(msg, f->quantifier_offset);
        if (*which != 0)
            return fail(c, "another member of its oneof is already set");
        /* Set first, so the member is freed with the message on failure. */
        *which = f->id;
        return value_from_json(c, f, v, MEMBER(msg, f->offset));
    }
    rc = value_from_json(c, f, v, MEMBER(msg, f->offset));
    if (rc == RT_OK && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
        f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)MEMBER(msg, f->quantifier_offset) = 1;
    return rc;
}

static rt_status message_from_json(pbjson_ctx *c, const json_t *obj, ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *o = (json_t *)obj; /* jansson's iteration API is not const */
    rt_status rc = RT_OK;

    if (++c->depth > c->limits->max_depth) {
        c->depth--;
        return fail(c, "nested deeper than %zu levels", c->limits->max_depth);
    }
    for (void *it = json_object_iter(o); it && rc == RT_OK; it = json_object_iter_next(o, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        const ProtobufCFieldDescriptor *f = NULL;
        size_t saved;

        for (unsigned i = 0; i < d->n_fields; i++) {
            if (key_is_json_name(d->fields[i].name, key, key_len)) {
                f = &d->fields[i];
                break;
            }
        }
        saved = path_push_key(c, key, key_len);
        if (!f)
            rc = fail(c, "unknown field");
        else if (!json_is_null(v))
            rc = field_from_json(c, f, v, msg);
        path_pop(c, saved);
    }
    /* proto2 required fields (the v1 contract, proto3, has none). */
    for (unsigned i = 0; i < d->n_fields && rc == RT_OK; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        key_buf kb;
        const char *key;
        const json_t *v;
        if (f->label != PROTOBUF_C_LABEL_REQUIRED)
            continue;
        key = key_of(&kb, f->name);
        v = json_object_get(o, key);
        if (!v || json_is_null(v)) {
            size_t saved = path_push_key(c, key, strlen(key));
            rc = fail(c, "required field missing");
            path_pop(c, saved);
        }
        key_done(&kb);
    }
    c->depth--;
    return rc;
}

rt_status rt_pbjson_from_json(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
                              const json_t *in, const rt_pbjson_limits *limits, char *err,
                              size_t err_size)
{
    pbjson_ctx c;
    ProtobufCMessage *msg;
    rt_status rc;

    ctx_init(&c, 0, limits, err, err_size);
    if (!out || !desc)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_pbjson_from_json: out or desc is NULL");
    *out = NULL;
    if (!in || !json_is_object(in))
        return fail(&c, "not a JSON object");
    msg = new_message(desc);
    rc = message_from_json(&c, in, msg);
    if (rc != RT_OK) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    *out = msg;
    return RT_OK;
}

/* A reason for a jansson load error that never quotes the input. */
static const char *load_error_reason(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_duplicate_key:
        return "duplicate key";
    case json_error_invalid_utf8:
        return "not valid UTF-8";
    case json_error_numeric_overflow:
        return "number out of range";
    case json_error_premature_end_of_input:
        return "unexpected end of JSON";
    case json_error_end_of_input_expected:
        return "text after the JSON value";
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return "contains a NUL character";
    default:
        return "not valid JSON";
    }
}

rt_status rt_pbjson_from_string(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
                                const char *text, size_t len, const rt_pbjson_limits *limits,
                                char *err, size_t err_size)
{
    pbjson_ctx c;
    json_error_t jerr;
    json_t *root;
    rt_status rc;

    ctx_init(&c, 0, limits, err, err_size);
    if (!out || !desc)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_pbjson_from_string: out or desc is NULL");
    *out = NULL;
    if (!text && len > 0)
        return RT_ERR(RT_ERR_INVALID_ARG, "rt_pbjson_from_string: text is NULL");
    /* DECODE_ANY so that a scalar at the top gets our own "not a JSON
     * object"; ALLOW_NUL so that "\u0000" is refused with its field's path. */
    root = json_loadb(text ? text : "", len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            /* jansson's text ends "near '\"<key>\"'": the key, never a value. */
            const char *near = strstr(jerr.text, "near '\"");
            if (near) {
                near += 7;
                size_t klen = strlen(near);
                if (klen >= 2 && near[klen - 1] == '\'' && near[klen - 2] == '"') {
                    size_t saved = path_push_key(&c, near, klen - 2);
                    rc = fail(&c, "duplicate key (line %d, column %d)", jerr.line, jerr.column);
                    path_pop(&c, saved);
                    return rc;
                }
            }
        }
        return fail(&c, "%s (line %d, column %d)", load_error_reason(&jerr), jerr.line,
                    jerr.column);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(&c, "not a JSON object");
    }
    rc = rt_pbjson_from_json(out, desc, root, limits, err, err_size);
    json_decref(root);
    return rc;
}
