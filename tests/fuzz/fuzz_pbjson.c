/*
 * libFuzzer target for rt_pbjson (browser frames and RPC JSON reach it).
 *
 * The first byte picks a message type and the output flags; the rest is the
 * JSON text. Whatever parses must render, and rendering must be a fixed
 * point: parse(render(m)) renders to the same text again.
 *
 *   cmake -S . -B build-fuzz -DRT_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   cmake --build build-fuzz --target fuzz_pbjson
 *   build-fuzz/fuzz/fuzz_pbjson -max_total_time=60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_pbjson.h"
#include "rt_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const descriptors[] = {
    &unpuzzle__rt__v1__room_message__descriptor,
    &unpuzzle__rt__v1__course_metrics__descriptor,
    &unpuzzle__rt__v1__confusion_created__descriptor,
    &unpuzzle__rt__v1__notification_requested__descriptor,
    &unpuzzle__rt__v1__presence_update__descriptor,
    &unpuzzle__rt__v1__verify_reply__descriptor,
    &google__protobuf__bytes_value__descriptor,
    &google__protobuf__float_value__descriptor,
    &google__protobuf__int32_value__descriptor,
    &google__protobuf__uint64_value__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t n_desc = sizeof(descriptors) / sizeof(descriptors[0]);
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *msg = NULL, *again = NULL;
    rt_pbjson_limits limits = rt_pbjson_default_limits;
    char err[256];
    char *text = NULL, *text2 = NULL, *grouped = NULL;
    size_t len = 0, len2 = 0;

    if (size < 1)
        return 0;
    desc = descriptors[data[0] % n_desc];
    /* Sometimes small limits, so the caps are reached with small inputs. */
    if (data[0] & 0x80) {
        limits.max_string_chars = 8;
        limits.max_repeated = 3;
        limits.max_depth = 2;
    }
    if (rt_pbjson_from_string(&msg, desc, (const char *)data + 1, size - 1, &limits, err,
                              sizeof(err)) != RT_OK) {
        if (msg || strlen(err) == 0 || strchr(err, '\n'))
            abort();
        return 0;
    }
    if (rt_pbjson_to_string(&text, &len, msg, RT_PBJSON_DEFAULT) != RT_OK)
        abort(); /* anything accepted must render */
    if (strlen(text) != len || memchr(text, '\n', len))
        abort();
    if (rt_pbjson_to_string(&grouped, NULL, msg, RT_PBJSON_ONEOF_AS_GROUP) != RT_OK)
        abort();
    if (rt_pbjson_from_string(&again, desc, text, len, &limits, err, sizeof(err)) != RT_OK) {
        fprintf(stderr, "re-parse failed: %s\n", err);
        abort();
    }
    if (rt_pbjson_to_string(&text2, &len2, again, RT_PBJSON_DEFAULT) != RT_OK)
        abort();
    if (len != len2 || memcmp(text, text2, len) != 0) {
        fprintf(stderr, "not a fixed point:\n%s\n%s\n", text, text2);
        abort();
    }
    free(text);
    free(text2);
    free(grouped);
    protobuf_c_message_free_unpacked(msg, NULL);
    protobuf_c_message_free_unpacked(again, NULL);
    return 0;
}
