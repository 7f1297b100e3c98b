/*
 * rt_pbjson: protobuf <-> JSON, driven by the protobuf-c descriptors, so no
 * message needs hand-written JSON code (built on jansson).
 *
 * Mapping (close to proto3's canonical JSON, tuned for browsers):
 *   key          lowerCamelCase of the .proto field name (video_timestamp_sec
 *                -> videoTimestampSec); input accepts only that spelling.
 *   string       JSON string; must be valid UTF-8; input is capped at
 *                limits->max_string_chars code points.
 *   bool         true / false.
 *   32-bit ints  JSON numbers (range-checked on input).
 *   64-bit ints  JSON numbers (browsers are safe to 2^53); input also takes a
 *                string of decimal digits, as proto3 JSON writes them. A uint64
 *                above 2^63-1 (beyond jansson's integers) is written as such a
 *                string.
 *   float/double JSON numbers; input integers are accepted; NaN/inf refused.
 *   enum         the value's name without the enum's UPPER_SNAKE prefix, in
 *                lower case: PROMPT_KIND_QUIZ -> "quiz". Input accepts that
 *                form only; the *_UNSPECIFIED (0) value is written as "", and
 *                so is a number the descriptor has no name for.
 *   bytes        base64 string.
 *   message      JSON object; NULL sub-messages are omitted.
 *   google.protobuf.Timestamp   RFC 3339 string in UTC with milliseconds
 *                ("2026-11-25T17:30:00.123Z"); input takes any RFC 3339.
 *   google.protobuf.*Value (wrappers)   the bare value, or null when unset.
 *   repeated     JSON array (always written, possibly empty).
 *   oneof        its set member under the member's key (default), or with
 *                RT_PBJSON_ONEOF_AS_GROUP under the oneof's own name (so
 *                RoomMessage.payload renders as "payload":{...}). protobuf-c
 *                descriptors carry no oneof names, so rt_pbjson.c lists them
 *                (oneof_names); an unlisted oneof fails with RT_ERR_INTERNAL,
 *                and integration.test_proto_python checks the list against
 *                protoc.
 * Output writes every scalar, including zero values, so clients see a stable
 * shape. Input is strict: unknown keys, wrong JSON types, out-of-range
 * numbers, over-long or invalid UTF-8 strings, two members of one oneof,
 * nesting deeper than limits->max_depth and arrays longer than
 * limits->max_repeated are errors; null means "not set".
 *
 * Thread-safe: no global state. Error text names the field by its JSON path
 * ("payload.text: longer than 4000 characters") and never echoes the value.
 */
#ifndef RT_PBJSON_H
#define RT_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "rt_status.h"

enum {
    RT_PBJSON_DEFAULT = 0,
    /* Render each oneof as "<oneofName>": <member value> instead of
     * "<memberName>": <member value>. Output only. */
    RT_PBJSON_ONEOF_AS_GROUP = 1u << 0,
};

typedef struct rt_pbjson_limits {
    size_t max_string_chars; /* per string field, in Unicode code points */
    size_t max_repeated;     /* elements per repeated field */
    size_t max_depth;        /* nesting of messages */
} rt_pbjson_limits;

/* 4,000 characters per string, 1,000 elements per array, depth 16. */
extern const rt_pbjson_limits rt_pbjson_default_limits;

/* Renders `msg` as a new JSON object (caller json_decref()s it). */
rt_status rt_pbjson_to_json(json_t **out, const ProtobufCMessage *msg, unsigned flags);

/* Renders `msg` as compact JSON text with no newline (JSON Lines safe).
 * *out is malloc()ed and NUL-terminated; the caller frees it. */
rt_status rt_pbjson_to_string(char **out, size_t *out_len, const ProtobufCMessage *msg,
                              unsigned flags);

/* Builds a message of type `desc` from a JSON object. On success *out is a
 * new message the caller frees with protobuf_c_message_free_unpacked(*out,
 * NULL). On failure returns RT_ERR_JSON and writes a one-line reason naming
 * the field into err (if err_size > 0). `limits` may be NULL (defaults). */
rt_status rt_pbjson_from_json(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
                              const json_t *in, const rt_pbjson_limits *limits, char *err,
                              size_t err_size);

/* Same from JSON text (duplicate keys are refused). */
rt_status rt_pbjson_from_string(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
                                const char *text, size_t len, const rt_pbjson_limits *limits,
                                char *err, size_t err_size);

/* The JSON key of a field name: "video_timestamp_sec" -> "videoTimestampSec".
 * Writes at most out_size bytes including the NUL. */
void rt_pbjson_json_name(char *out, size_t out_size, const char *field_name);

#endif
