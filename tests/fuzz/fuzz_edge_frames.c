/*
 * libFuzzer target for edge_frame_parse (every browser frame reaches it).
 *
 * Whatever the input: no crash, no leak, a one-line reason on failure with
 * a printable-ASCII id (or none), and on success a frame whose fields obey
 * the header's rules; the error frame rendered from any outcome is valid
 * JSON without a newline.
 *
 *   cmake -S . -B build-fuzz -DRT_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   cmake --build build-fuzz --target fuzz_edge_frames
 *   build-fuzz/fuzz/fuzz_edge_frames -max_total_time=60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_id(const char *id)
{
    size_t len = strlen(id);
    if (len > EDGE_CLIENT_ID_MAX)
        abort();
    for (size_t i = 0; i < len; i++)
        if (id[i] < 0x20 || id[i] > 0x7e || id[i] == '"' || id[i] == '\\')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    edge_in_frame frame;
    char why[128];
    rt_status rc;
    char *text;
    size_t len = 0;
    json_t *back;

    rc = edge_frame_parse(&frame, (const char *)data, size, why, sizeof(why));
    check_id(frame.id);
    if (rc == RT_OK) {
        if (!frame.root)
            abort();
        switch (frame.type) {
        case EDGE_IN_AUTH:
        case EDGE_IN_REFRESH:
            if (!frame.token || frame.token_len == 0 || frame.token_len > EDGE_TOKEN_MAX ||
                strlen(frame.token) != frame.token_len)
                abort();
            break;
        case EDGE_IN_SUBSCRIBE:
        case EDGE_IN_UNSUBSCRIBE:
            if (!rt_id_valid(frame.room.id) || strchr(frame.room_name, ':') == NULL)
                abort();
            break;
        case EDGE_IN_PING:
            break;
        case EDGE_IN_ACTION:
            if (!json_is_object(frame.payload) || frame.id[0] == '\0' ||
                (strcmp(frame.action, "create") != 0 && strcmp(frame.action, "update") != 0))
                abort();
            break;
        default:
            abort();
        }
        text = edge_render_ack(&len, frame.id, "e");
    } else {
        if (rc != RT_ERR_JSON || frame.root || frame.token || frame.payload || why[0] == '\0' ||
            strchr(why, '\n'))
            abort();
        text = edge_render_error(&len, frame.id, "bad_request", why, NULL);
    }
    if (!text || strlen(text) != len || memchr(text, '\n', len))
        abort();
    back = json_loadb(text, len, 0, NULL);
    if (!back)
        abort();
    json_decref(back);
    free(text);
    edge_frame_release(&frame);
    return 0;
}
