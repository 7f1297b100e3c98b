/*
 * rt_testws's frame codec and receive path, against a scripted server on a
 * loopback socket (a thread here), so the integration tests can trust what
 * the client reports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt_testws.h"

static void roundtrip(size_t len, bool masked, size_t header_len)
{
    uint8_t *payload = malloc(len + 1), *buf;
    const uint8_t mask[4] = {0xA1, 0xB2, 0xC3, 0xD4};
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t need = rt_testws_frame_encode(NULL, 0, RT_WS_OP_BINARY, true, 0, masked ? mask : NULL,
                                         payload, len);
    assert_int_equal(need, header_len + len);
    buf = malloc(need);
    assert_int_equal(rt_testws_frame_encode(buf, need, RT_WS_OP_BINARY, true, 0,
                                            masked ? mask : NULL, payload, len),
                     need);
    rt_testws_frame f;
    /* Every proper prefix is incomplete, never an error. */
    for (size_t cut = 0; cut < need; cut += (need > 300 ? 97 : 1))
        assert_int_equal(rt_testws_frame_decode(&f, buf, cut), 0);
    assert_int_equal(rt_testws_frame_decode(&f, buf, need), 1);
    assert_int_equal(f.header_len, header_len);
    assert_int_equal(f.payload_len, len);
    assert_true(f.fin);
    assert_int_equal(f.opcode, RT_WS_OP_BINARY);
    assert_int_equal(f.masked, masked);
    if (masked) {
        assert_memory_equal(f.mask, mask, 4);
        rt_testws_mask(buf + f.header_len, len, f.mask, 0);
    }
    if (len)
        assert_memory_equal(buf + f.header_len, payload, len);
    free(buf);
    free(payload);
}

static void lengths_7_16_64_bit(void **state)
{
    (void)state;
    roundtrip(0, false, 2);
    roundtrip(125, false, 2);
    roundtrip(126, false, 4);
    roundtrip(65535, false, 4);
    roundtrip(65536, false, 10);
    roundtrip(0, true, 6);
    roundtrip(125, true, 6);
    roundtrip(126, true, 8);
    roundtrip(70000, true, 14);
}

static void header_bits(void **state)
{
    (void)state;
    uint8_t buf[16];
    rt_testws_frame f;
    assert_int_equal(
        rt_testws_frame_encode(buf, sizeof(buf), RT_WS_OP_CONT, false, 4, NULL, "ab", 2), 4);
    assert_int_equal(buf[0], 0x40);
    assert_int_equal(rt_testws_frame_decode(&f, buf, 4), 1);
    assert_false(f.fin);
    assert_true(f.rsv1);
    assert_false(f.rsv2);
    assert_int_equal(f.opcode, RT_WS_OP_CONT);
    /* Too small a buffer: the size is returned, nothing is written. */
    memset(buf, 0xEE, sizeof(buf));
    assert_int_equal(rt_testws_frame_encode(buf, 3, RT_WS_OP_TEXT, true, 0, NULL, "abcd", 4), 6);
    assert_int_equal(buf[0], 0xEE);
}

static void malformed_headers(void **state)
{
    (void)state;
    rt_testws_frame f;
    /* A ping longer than 125 bytes. */
    const uint8_t long_ping[4] = {0x89, 126, 0x00, 0x80};
    assert_int_equal(rt_testws_frame_decode(&f, long_ping, sizeof(long_ping)), -1);
    /* A fragmented close. */
    const uint8_t frag_close[2] = {0x08, 0x00};
    assert_int_equal(rt_testws_frame_decode(&f, frag_close, sizeof(frag_close)), -1);
    /* A 64-bit length with the top bit set. */
    const uint8_t huge[10] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(rt_testws_frame_decode(&f, huge, sizeof(huge)), -1);
}

static void mask_offsets_continue(void **state)
{
    (void)state;
    const uint8_t mask[4] = {1, 2, 3, 4};
    uint8_t whole[10] = {0}, split[10] = {0};
    rt_testws_mask(whole, sizeof(whole), mask, 0);
    rt_testws_mask(split, 3, mask, 0);
    rt_testws_mask(split + 3, 7, mask, 3);
    assert_memory_equal(whole, split, sizeof(whole));
}

static void accept_key_rfc_example(void **state)
{
    (void)state;
    char out[29];
    rt_testws_accept_key(out, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ---- a scripted server ---- */

typedef struct script {
    int listen_fd;
    int port;
    char got[4096]; /* what the client sent after the handshake */
    size_t got_len;
} script;

static void send_all(int fd, const void *data, size_t len)
{
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

static void send_server_frame(int fd, uint8_t opcode, bool fin, const void *payload, size_t len)
{
    uint8_t buf[256];
    size_t n = rt_testws_frame_encode(buf, sizeof(buf), opcode, fin, 0, NULL, payload, len);
    send_all(fd, buf, n);
}

static void *server_main(void *arg)
{
    script *sc = arg;
    int fd = accept(sc->listen_fd, NULL, NULL);
    char req[4096] = "", accept_key[29], key[64] = "", resp[512];
    size_t len = 0;
    while (!strstr(req, "\r\n\r\n") && len < sizeof(req) - 1) {
        ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
    }
    const char *k = strstr(req, "Sec-WebSocket-Key: ");
    if (k)
        sscanf(k + 19, "%63[^\r]", key);
    rt_testws_accept_key(accept_key, key);
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: unpuzzle.v1\r\n\r\n",
                     accept_key);
    send_all(fd, resp, (size_t)n);
    /* Two JSON lines split over three fragments, a ping in the middle. */
    send_server_frame(fd, RT_WS_OP_TEXT, false, "{\"type\":\"a\",\"n\":1}\n{\"ty", 23);
    send_server_frame(fd, RT_WS_OP_PING, true, "hi", 2);
    send_server_frame(fd, RT_WS_OP_CONT, false, "pe\":\"b\",", 8);
    send_server_frame(fd, RT_WS_OP_CONT, true, "\"n\":2}", 6);
    send_server_frame(fd, RT_WS_OP_BINARY, true, "\x01\x02", 2);
    send_server_frame(fd, RT_WS_OP_TEXT, true, "{\"type\":\"c\"}", 12);
    send_server_frame(fd, RT_WS_OP_CLOSE, true,
                      "\x0f\xa0"
                      "bye",
                      5);
    /* Collect the pong and the close echo. */
    for (;;) {
        ssize_t r = read(fd, sc->got + sc->got_len, sizeof(sc->got) - sc->got_len);
        if (r <= 0)
            break;
        sc->got_len += (size_t)r;
        if (sc->got_len >= 2 * 6 + 2 + 2)
            break;
    }
    close(fd);
    return NULL;
}

static void receive_path(void **state)
{
    (void)state;
    script sc = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    pthread_t thread;
    rt_testws *ws = NULL;
    json_t *m = NULL;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sc.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(sc.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(sc.listen_fd, 1), 0);
    getsockname(sc.listen_fd, (struct sockaddr *)&sa, &sl);
    sc.port = ntohs(sa.sin_port);
    pthread_create(&thread, NULL, server_main, &sc);

    rt_testws_options o = {.subprotocol = "unpuzzle.v1", .origin = RT_TEST_ORIGIN};
    assert_int_equal(rt_testws_connect(&ws, NULL, sc.port, &o), RT_OK);
    assert_string_equal(rt_testws_subprotocol(ws), "unpuzzle.v1");
    assert_int_equal(rt_testws_recv_json(&m, ws, 2000), RT_OK);
    assert_string_equal(rt_json_str(m, "type"), "a");
    assert_int_equal(rt_json_int(m, "n"), 1);
    json_decref(m);
    assert_int_equal(rt_testws_recv_json(&m, ws, 2000), RT_OK);
    assert_string_equal(rt_json_str(m, "type"), "b");
    assert_int_equal(rt_json_int(m, "n"), 2);
    json_decref(m);
    assert_int_equal(rt_testws_wait_close(ws, 2000), RT_OK);
    assert_int_equal(rt_testws_close_code(ws), 4000);
    assert_string_equal(rt_testws_close_reason(ws), "bye");
    assert_int_equal(rt_testws_pings_answered(ws), 1);
    assert_int_equal(rt_testws_messages_received(ws), 3);
    /* What was queued before the close is still there. */
    assert_int_equal(rt_testws_recv_json(&m, ws, 100), RT_OK);
    assert_string_equal(rt_json_str(m, "type"), "c");
    json_decref(m);
    assert_int_equal(rt_testws_recv_json(&m, ws, 100), RT_ERR_IO);
    pthread_join(thread, NULL);

    /* The client's pong (masked, "hi") and close echo (masked, 4000). */
    rt_testws_frame f;
    assert_int_equal(rt_testws_frame_decode(&f, (uint8_t *)sc.got, sc.got_len), 1);
    assert_int_equal(f.opcode, RT_WS_OP_PONG);
    assert_true(f.masked);
    rt_testws_mask(sc.got + f.header_len, 2, f.mask, 0);
    assert_memory_equal(sc.got + f.header_len, "hi", 2);
    size_t next = f.header_len + 2;
    assert_int_equal(rt_testws_frame_decode(&f, (uint8_t *)sc.got + next, sc.got_len - next), 1);
    assert_int_equal(f.opcode, RT_WS_OP_CLOSE);
    rt_testws_mask(sc.got + next + f.header_len, 2, f.mask, 0);
    assert_memory_equal(sc.got + next + f.header_len, "\x0f\xa0", 2);
    rt_testws_destroy(ws);
    close(sc.listen_fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lengths_7_16_64_bit),    cmocka_unit_test(header_bits),
        cmocka_unit_test(malformed_headers),      cmocka_unit_test(mask_offsets_continue),
        cmocka_unit_test(accept_key_rfc_example), cmocka_unit_test(receive_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
