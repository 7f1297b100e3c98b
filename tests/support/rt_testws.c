#include "rt_testws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "rt_alloc.h"
#include "rt_time.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define READ_CHUNK 65536
/* Queue marker of a line that was not a JSON object. */
#define BAD_LINE_KEY "\x01rt_testws_bad_line"

/* ---- frame codec ---- */

void rt_testws_mask(void *data, size_t len, const uint8_t mask[4], size_t offset)
{
    uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[(offset + i) & 3];
}

size_t rt_testws_frame_encode(uint8_t *out, size_t cap, uint8_t opcode, bool fin, uint8_t rsv,
                              const uint8_t *mask, const void *payload, size_t len)
{
    size_t header = 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + (mask ? 4 : 0);
    size_t total = header + len;
    if (total > cap)
        return total;
    uint8_t *p = out;
    *p++ = (uint8_t)((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0F));
    uint8_t mask_bit = mask ? 0x80 : 0;
    if (len < 126) {
        *p++ = (uint8_t)(mask_bit | len);
    } else if (len <= 0xFFFF) {
        *p++ = mask_bit | 126;
        *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)len;
    } else {
        *p++ = mask_bit | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            *p++ = (uint8_t)((uint64_t)len >> shift);
    }
    if (mask) {
        memcpy(p, mask, 4);
        p += 4;
    }
    if (len)
        memcpy(p, payload, len);
    if (mask)
        rt_testws_mask(p, len, mask, 0);
    return total;
}

int rt_testws_frame_decode(rt_testws_frame *out, const uint8_t *buf, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (len < 2)
        return 0;
    out->fin = buf[0] & 0x80;
    out->rsv1 = buf[0] & 0x40;
    out->rsv2 = buf[0] & 0x20;
    out->rsv3 = buf[0] & 0x10;
    out->opcode = buf[0] & 0x0F;
    out->masked = buf[1] & 0x80;
    uint64_t plen = buf[1] & 0x7F;
    size_t pos = 2;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        pos = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | buf[2 + i];
        if (plen >> 63)
            return -1;
        pos = 10;
    }
    if (out->opcode >= 0x8 && (plen > 125 || !out->fin))
        return -1;
    if (out->masked) {
        if (len < pos + 4)
            return 0;
        memcpy(out->mask, buf + pos, 4);
        pos += 4;
    }
    out->payload_len = plen;
    out->header_len = pos;
    if ((uint64_t)(len - pos) < plen)
        return 0;
    return 1;
}

static void base64(char *out, const uint8_t *in, int len)
{
    EVP_EncodeBlock((unsigned char *)out, in, len);
}

void rt_testws_accept_key(char out[29], const char *key)
{
    uint8_t digest[SHA_DIGEST_LENGTH];
    char *joined = rt_asprintf("%s%s", key, WS_GUID);
    SHA1((const unsigned char *)joined, strlen(joined), digest);
    free(joined);
    base64(out, digest, SHA_DIGEST_LENGTH);
}

/* ---- client ---- */

struct rt_testws {
    int fd;
    uint8_t *in; /* bytes read, not yet parsed */
    size_t in_len, in_cap;
    uint8_t *msg; /* data message being reassembled */
    size_t msg_len, msg_cap;
    uint8_t msg_opcode;
    bool msg_compressed, in_message;
    json_t *queue; /* JSON array used as a FIFO */
    char *bad_line;
    int close_code;
    char close_reason[128];
    bool close_sent, eof;
    char subprotocol[64];
    char extensions[256];
    bool deflate;
    int client_window_bits;
    z_stream inflater;
    bool inflater_ready;
    unsigned pings, pongs;
    uint64_t messages;
};

static void buf_reserve(uint8_t **buf, size_t *cap, size_t want)
{
    if (want <= *cap)
        return;
    size_t n = *cap ? *cap : 4096;
    while (n < want)
        n *= 2;
    *buf = rt_realloc(*buf, n);
    *cap = n;
}

static int64_t deadline_left(uint64_t deadline_ns)
{
    uint64_t now = rt_time_mono_ns();
    return now >= deadline_ns ? 0 : (int64_t)((deadline_ns - now) / 1000000);
}

static rt_status write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return RT_ERR(RT_ERR_IO, "websocket send: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return RT_OK;
}

/* Reads once, waiting up to timeout_ms. Returns false on EOF/error or timeout. */
static bool read_some(rt_testws *ws, int64_t timeout_ms)
{
    if (ws->eof)
        return false;
    struct pollfd pfd = {.fd = ws->fd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)(timeout_ms > 0 ? timeout_ms : 0));
    if (r <= 0)
        return false;
    buf_reserve(&ws->in, &ws->in_cap, ws->in_len + READ_CHUNK);
    ssize_t n = recv(ws->fd, ws->in + ws->in_len, READ_CHUNK, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) {
        ws->eof = true;
        if (ws->close_code < 0)
            ws->close_code = 1006;
        return false;
    }
    ws->in_len += (size_t)n;
    return true;
}

static rt_status send_frame(rt_testws *ws, uint8_t opcode, bool fin, uint8_t rsv,
                            const void *payload, size_t len)
{
    uint8_t mask[4];
    uint8_t stack[256];
    if (getrandom(mask, sizeof(mask), 0) != sizeof(mask))
        memcpy(mask, "\x12\x34\x56\x78", 4);
    size_t need = rt_testws_frame_encode(NULL, 0, opcode, fin, rsv, mask, payload, len);
    uint8_t *buf = need <= sizeof(stack) ? stack : rt_malloc(need);
    rt_testws_frame_encode(buf, need, opcode, fin, rsv, mask, payload, len);
    rt_status s = write_all(ws->fd, buf, need);
    if (buf != stack)
        free(buf);
    return s;
}

static void queue_text(rt_testws *ws, const uint8_t *data, size_t len)
{
    const char *p = (const char *)data, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n) {
            json_error_t err;
            json_t *obj = json_loadb(p, n, 0, &err);
            if (!obj || !json_is_object(obj)) {
                /* Kept in order: recv_json reports it when it is next. */
                json_decref(obj);
                obj = json_object();
                json_object_set_new(obj, BAD_LINE_KEY, json_stringn_nocheck(p, n));
                json_array_append_new(ws->queue, obj);
            } else {
                json_array_append_new(ws->queue, obj);
            }
        }
        p += n + 1;
    }
}

static bool inflate_message(rt_testws *ws, uint8_t **out, size_t *out_len)
{
    if (!ws->inflater_ready) {
        memset(&ws->inflater, 0, sizeof(ws->inflater));
        if (inflateInit2(&ws->inflater, -15) != Z_OK)
            return false;
        ws->inflater_ready = true;
    }
    buf_reserve(&ws->msg, &ws->msg_cap, ws->msg_len + 4);
    memcpy(ws->msg + ws->msg_len, "\x00\x00\xff\xff", 4);
    size_t cap = ws->msg_len * 4 + 1024, len = 0;
    uint8_t *res = rt_malloc(cap);
    ws->inflater.next_in = ws->msg;
    ws->inflater.avail_in = (uInt)(ws->msg_len + 4);
    do {
        if (len == cap) {
            cap *= 2;
            res = rt_realloc(res, cap);
        }
        ws->inflater.next_out = res + len;
        ws->inflater.avail_out = (uInt)(cap - len);
        int r = inflate(&ws->inflater, Z_SYNC_FLUSH);
        len = cap - ws->inflater.avail_out;
        if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END) {
            free(res);
            return false;
        }
    } while (ws->inflater.avail_out == 0);
    *out = res;
    *out_len = len;
    return true;
}

static void on_message(rt_testws *ws)
{
    ws->messages++;
    uint8_t *data = ws->msg;
    size_t len = ws->msg_len;
    uint8_t *inflated = NULL;
    if (ws->msg_compressed) {
        if (!inflate_message(ws, &inflated, &len)) {
            if (!ws->bad_line)
                ws->bad_line = rt_strdup("<permessage-deflate data that does not inflate>");
            return;
        }
        data = inflated;
    }
    if (ws->msg_opcode == RT_WS_OP_TEXT)
        queue_text(ws, data, len);
    free(inflated);
}

static void on_close_frame(rt_testws *ws, const uint8_t *p, size_t len)
{
    if (len >= 2) {
        ws->close_code = (p[0] << 8) | p[1];
        size_t n = len - 2 < sizeof(ws->close_reason) - 1 ? len - 2 : sizeof(ws->close_reason) - 1;
        memcpy(ws->close_reason, p + 2, n);
        ws->close_reason[n] = '\0';
    } else {
        ws->close_code = 1005;
    }
    if (!ws->close_sent) {
        /* Echo the code, as browsers do. */
        ws->close_sent = true;
        send_frame(ws, RT_WS_OP_CLOSE, true, 0, p, len >= 2 ? 2 : 0);
    }
}

/* Parses every complete frame in the input buffer. */
static void process(rt_testws *ws)
{
    size_t pos = 0;
    while (pos < ws->in_len && ws->close_code < 0) {
        rt_testws_frame f;
        int r = rt_testws_frame_decode(&f, ws->in + pos, ws->in_len - pos);
        if (r == 0)
            break;
        if (r < 0) {
            if (!ws->bad_line)
                ws->bad_line = rt_strdup("<malformed frame header from the server>");
            ws->close_code = 1002;
            pos = ws->in_len;
            break;
        }
        uint8_t *payload = ws->in + pos + f.header_len;
        size_t plen = (size_t)f.payload_len;
        if (f.masked) /* servers must not mask; accept it anyway */
            rt_testws_mask(payload, plen, f.mask, 0);
        switch (f.opcode) {
        case RT_WS_OP_PING:
            if (!ws->close_sent && send_frame(ws, RT_WS_OP_PONG, true, 0, payload, plen) == RT_OK)
                ws->pings++;
            break;
        case RT_WS_OP_PONG:
            ws->pongs++;
            break;
        case RT_WS_OP_CLOSE:
            on_close_frame(ws, payload, plen);
            break;
        case RT_WS_OP_TEXT:
        case RT_WS_OP_BINARY:
        case RT_WS_OP_CONT:
            if (f.opcode != RT_WS_OP_CONT) {
                ws->msg_len = 0;
                ws->msg_opcode = f.opcode;
                ws->msg_compressed = f.rsv1;
                ws->in_message = true;
            }
            if (ws->in_message) {
                buf_reserve(&ws->msg, &ws->msg_cap, ws->msg_len + plen + 4);
                memcpy(ws->msg + ws->msg_len, payload, plen);
                ws->msg_len += plen;
                if (f.fin) {
                    ws->in_message = false;
                    on_message(ws);
                }
            }
            break;
        default:
            break;
        }
        pos += f.header_len + plen;
    }
    memmove(ws->in, ws->in + pos, ws->in_len - pos);
    ws->in_len -= pos;
}

static const char *header_value(const char *headers, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    out[0] = '\0';
    for (const char *line = headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t len = (size_t)(eol - v);
            if (len >= size)
                len = size - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        line = eol + 2;
    }
    return NULL;
}

static rt_status handshake(rt_testws *ws, int *http_status, int port, const rt_testws_options *o,
                           uint64_t deadline)
{
    uint8_t nonce[16];
    char key[32], expected[29], value[256];
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
        memset(nonce, 7, sizeof(nonce));
    base64(key, nonce, sizeof(nonce));

    size_t cap = 4096, len = 0;
    char *req = rt_malloc(cap);
    len += (size_t)snprintf(req + len, cap - len,
                            "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            "Sec-WebSocket-Version: 13\r\n",
                            o->path ? o->path : "/ws", port, key);
    if (o->origin)
        len += (size_t)snprintf(req + len, cap - len, "Origin: %s\r\n", o->origin);
    if (o->subprotocol)
        len += (size_t)snprintf(req + len, cap - len, "Sec-WebSocket-Protocol: %s\r\n",
                                o->subprotocol);
    if (o->deflate)
        len += (size_t)snprintf(req + len, cap - len,
                                "Sec-WebSocket-Extensions: permessage-deflate; "
                                "client_max_window_bits\r\n");
    for (size_t i = 0; o->headers && o->headers[i]; i++)
        len += (size_t)snprintf(req + len, cap - len, "%s\r\n", o->headers[i]);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    if (len >= cap) {
        free(req);
        return RT_ERR(RT_ERR_INVALID_ARG, "websocket handshake request too long");
    }
    rt_status s = write_all(ws->fd, req, len);
    free(req);
    if (s != RT_OK)
        return s;

    /* Read the response head; bytes after it are the first frames. */
    char *end = NULL;
    while (!end) {
        int64_t left = deadline_left(deadline);
        if (left <= 0)
            return RT_ERR(RT_ERR_TIMEOUT, "websocket handshake: no response");
        if (!read_some(ws, left)) {
            if (ws->eof)
                break;
            continue;
        }
        buf_reserve(&ws->in, &ws->in_cap, ws->in_len + 1);
        ws->in[ws->in_len] = '\0';
        end = strstr((char *)ws->in, "\r\n\r\n");
    }
    int status = 0;
    if (ws->in_len)
        sscanf((char *)ws->in, "HTTP/1.%*d %d", &status);
    if (http_status)
        *http_status = status;
    if (!end || status != 101) {
        if (!status)
            return RT_ERR(RT_ERR_IO, "websocket handshake: connection closed without a response");
        return RT_ERR(RT_ERR_AUTH, "websocket upgrade refused: HTTP %d", status);
    }
    size_t head_len = (size_t)(end - (char *)ws->in) + 4;
    char *head = rt_strndup((char *)ws->in, head_len);
    memmove(ws->in, ws->in + head_len, ws->in_len - head_len);
    ws->in_len -= head_len;

    rt_testws_accept_key(expected, key);
    if (!header_value(head, "Sec-WebSocket-Accept", value, sizeof(value)) ||
        strcmp(value, expected) != 0) {
        free(head);
        return RT_ERR(RT_ERR_DECODE, "websocket handshake: bad Sec-WebSocket-Accept '%s'", value);
    }
    header_value(head, "Sec-WebSocket-Protocol", ws->subprotocol, sizeof(ws->subprotocol));
    header_value(head, "Sec-WebSocket-Extensions", ws->extensions, sizeof(ws->extensions));
    free(head);
    if (ws->subprotocol[0] && (!o->subprotocol || !strstr(o->subprotocol, ws->subprotocol)))
        return RT_ERR(RT_ERR_DECODE, "websocket handshake: subprotocol '%s' was not offered",
                      ws->subprotocol);
    if (ws->extensions[0]) {
        if (!o->deflate || strncmp(ws->extensions, "permessage-deflate", 18) != 0)
            return RT_ERR(RT_ERR_DECODE, "websocket handshake: extension '%s' was not offered",
                          ws->extensions);
        ws->deflate = true;
        ws->client_window_bits = 15;
        const char *bits = strstr(ws->extensions, "client_max_window_bits=");
        if (bits)
            ws->client_window_bits = atoi(bits + strlen("client_max_window_bits="));
        if (ws->client_window_bits < 9 || ws->client_window_bits > 15)
            ws->client_window_bits = ws->client_window_bits < 9 ? 9 : 15;
    }
    return RT_OK;
}

rt_status rt_testws_connect(rt_testws **out, int *http_status, int port,
                            const rt_testws_options *options)
{
    rt_testws_options none = {0};
    const rt_testws_options *o = options ? options : &none;
    uint64_t deadline =
        rt_time_mono_ns() + (uint64_t)(o->timeout_ms > 0 ? o->timeout_ms : 5000) * 1000000u;
    rt_testws *ws = rt_calloc(1, sizeof(*ws));
    rt_status s;

    *out = NULL;
    if (http_status)
        *http_status = 0;
    ws->close_code = -1;
    ws->queue = json_array();
    ws->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ws->fd < 0) {
        s = RT_ERR(RT_ERR_IO, "socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    setsockopt(ws->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o->rcvbuf > 0)
        setsockopt(ws->fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf));
    /* A server that stops reading must not hang a test forever. */
    struct timeval tv = {.tv_sec = 10};
    setsockopt(ws->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(ws->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        s = RT_ERR(RT_ERR_UNAVAILABLE, "connect to port %d: %s", port, strerror(errno));
        goto fail;
    }
    if ((s = handshake(ws, http_status, port, o, deadline)) != RT_OK)
        goto fail;
    *out = ws;
    return RT_OK;
fail:
    rt_testws_destroy(ws);
    return s;
}

void rt_testws_destroy(rt_testws *ws)
{
    if (!ws)
        return;
    if (ws->fd >= 0)
        close(ws->fd);
    if (ws->inflater_ready)
        inflateEnd(&ws->inflater);
    json_decref(ws->queue);
    free(ws->bad_line);
    free(ws->in);
    free(ws->msg);
    free(ws);
}

const char *rt_testws_subprotocol(const rt_testws *ws)
{
    return ws->subprotocol;
}

const char *rt_testws_extensions(const rt_testws *ws)
{
    return ws->extensions;
}

bool rt_testws_deflate(const rt_testws *ws)
{
    return ws->deflate;
}

int rt_testws_fd(const rt_testws *ws)
{
    return ws->fd;
}

/* ---- sending ---- */

static rt_status deflate_message(uint8_t **out, size_t *out_len, int window_bits, const void *data,
                                 size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return RT_ERR(RT_ERR_INTERNAL, "deflateInit2 failed");
    size_t cap = deflateBound(&z, (uLong)len) + 16;
    uint8_t *buf = rt_malloc(cap);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_SYNC_FLUSH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (r != Z_OK || z.avail_in != 0 || n < 4) {
        free(buf);
        return RT_ERR(RT_ERR_INTERNAL, "deflate failed (%d)", r);
    }
    /* RFC 7692: drop the 00 00 ff ff the sync flush ends with. */
    *out = buf;
    *out_len = n - 4;
    return RT_OK;
}

rt_status rt_testws_send(rt_testws *ws, uint8_t opcode, const void *data, size_t len, bool compress,
                         size_t fragment)
{
    uint8_t *compressed = NULL;
    rt_status s;

    if (compress) {
        if (!ws->deflate)
            return RT_ERR(RT_ERR_INVALID_ARG, "permessage-deflate was not negotiated");
        if ((s = deflate_message(&compressed, &len, ws->client_window_bits, data, len)) != RT_OK)
            return s;
        data = compressed;
    }
    const uint8_t *p = data;
    size_t sent = 0;
    do {
        size_t n = fragment && len - sent > fragment ? fragment : len - sent;
        bool first = sent == 0, fin = sent + n == len;
        s = send_frame(ws, first ? opcode : RT_WS_OP_CONT, fin, first && compress ? 4 : 0, p + sent,
                       n);
        sent += n;
    } while (s == RT_OK && sent < len);
    free(compressed);
    return s;
}

rt_status rt_testws_send_text(rt_testws *ws, const char *text)
{
    return rt_testws_send(ws, RT_WS_OP_TEXT, text, strlen(text), false, 0);
}

rt_status rt_testws_send_frame(rt_testws *ws, uint8_t opcode, bool fin, uint8_t rsv,
                               const void *payload, size_t len)
{
    return send_frame(ws, opcode, fin, rsv, payload, len);
}

rt_status rt_testws_send_raw(rt_testws *ws, const void *data, size_t len)
{
    return write_all(ws->fd, data, len);
}

rt_status rt_testws_send_close(rt_testws *ws, uint16_t code, const char *reason)
{
    uint8_t payload[125];
    size_t len = 0;
    if (code) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        len = 2;
        size_t r = reason ? strlen(reason) : 0;
        if (r > sizeof(payload) - 2)
            r = sizeof(payload) - 2;
        memcpy(payload + 2, reason, r);
        len += r;
    }
    ws->close_sent = true;
    return send_frame(ws, RT_WS_OP_CLOSE, true, 0, payload, len);
}

/* ---- receiving ---- */

bool rt_testws_closed(const rt_testws *ws)
{
    return ws->close_code >= 0 || ws->eof;
}

/* Reads and processes until `done(ws)` or the deadline. */
static bool pump(rt_testws *ws, uint64_t deadline, bool (*done)(const rt_testws *))
{
    for (;;) {
        process(ws);
        if (done(ws))
            return true;
        if (rt_testws_closed(ws))
            return false;
        int64_t left = deadline_left(deadline);
        if (left <= 0)
            return false;
        read_some(ws, left);
    }
}

static bool have_json(const rt_testws *ws)
{
    return json_array_size(ws->queue) > 0 || ws->bad_line;
}

rt_status rt_testws_recv_json(json_t **out, rt_testws *ws, int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    *out = NULL;
    pump(ws, deadline, have_json);
    if (json_array_size(ws->queue) > 0) {
        json_t *m = json_incref(json_array_get(ws->queue, 0));
        json_array_remove(ws->queue, 0);
        json_t *bad = json_object_get(m, BAD_LINE_KEY);
        if (bad) {
            rt_status s =
                RT_ERR(RT_ERR_JSON, "server sent a line that is not a JSON object: %.200s",
                       json_string_value(bad));
            json_decref(m);
            return s;
        }
        *out = m;
        return RT_OK;
    }
    if (ws->bad_line) {
        rt_status s = RT_ERR(RT_ERR_JSON, "server sent a line that is not a JSON object: %.200s",
                             ws->bad_line);
        free(ws->bad_line);
        ws->bad_line = NULL;
        return s;
    }
    if (rt_testws_closed(ws))
        return RT_ERR(RT_ERR_IO, "connection closed (code %d)", ws->close_code);
    return RT_ERR(RT_ERR_TIMEOUT, "no message within %d ms", timeout_ms);
}

rt_status rt_testws_recv_type(json_t **out, rt_testws *ws, const char *type, const char *id,
                              int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        json_t *m = NULL;
        int64_t left = deadline_left(deadline);
        rt_status s = rt_testws_recv_json(&m, ws, (int)(left > 0 ? left : 0));
        if (s != RT_OK) {
            *out = NULL;
            return s;
        }
        if (strcmp(rt_json_str(m, "type"), type) == 0 &&
            (!id || strcmp(rt_json_str(m, "id"), id) == 0)) {
            *out = m;
            return RT_OK;
        }
        json_decref(m);
    }
}

static bool never(const rt_testws *ws)
{
    (void)ws;
    return false;
}

rt_status rt_testws_wait_close(rt_testws *ws, int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    pump(ws, deadline, rt_testws_closed);
    return rt_testws_closed(ws) ? RT_OK
                                : RT_ERR(RT_ERR_TIMEOUT, "still open after %d ms", timeout_ms);
}

void rt_testws_drain(rt_testws *ws, int timeout_ms)
{
    pump(ws, rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u, never);
}

size_t rt_testws_queued(const rt_testws *ws)
{
    return json_array_size(ws->queue);
}

size_t rt_testws_read_available(rt_testws *ws, size_t max_bytes)
{
    size_t total = 0, cap = max_bytes ? max_bytes : (size_t)4 << 20;
    while (total < cap && !ws->eof) {
        size_t before = ws->in_len;
        if (!read_some(ws, 0) || ws->in_len == before)
            break;
        total += ws->in_len - before;
        process(ws);
    }
    process(ws);
    return total;
}

int rt_testws_close_code(const rt_testws *ws)
{
    return ws->close_code;
}

const char *rt_testws_close_reason(const rt_testws *ws)
{
    return ws->close_reason;
}

unsigned rt_testws_pings_answered(const rt_testws *ws)
{
    return ws->pings;
}

unsigned rt_testws_pongs_received(const rt_testws *ws)
{
    return ws->pongs;
}

uint64_t rt_testws_messages_received(const rt_testws *ws)
{
    return ws->messages;
}

/* ---- protocol helpers ---- */

rt_status rt_testws_auth(json_t **reply, rt_testws *ws, const char *token, int timeout_ms)
{
    json_t *frame = json_pack("{s:s, s:s}", "type", "auth", "token", token);
    char *text = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);
    rt_status s = rt_testws_send_text(ws, text);
    free(text);
    json_t *m = NULL;
    if (reply)
        *reply = NULL;
    if (s != RT_OK || (s = rt_testws_recv_json(&m, ws, timeout_ms)) != RT_OK)
        return s;
    bool ok = strcmp(rt_json_str(m, "type"), "auth_ok") == 0;
    if (!ok)
        s = RT_ERR(RT_ERR_AUTH, "auth refused: %s %s", rt_json_str(m, "code"),
                   rt_json_str(m, "message"));
    if (reply)
        *reply = m;
    else
        json_decref(m);
    return s;
}

rt_status rt_testws_open(rt_testws **out, int port, const char *token)
{
    rt_testws_options o = {.origin = RT_TEST_ORIGIN, .subprotocol = "unpuzzle.v1"};
    rt_status s = rt_testws_connect(out, NULL, port, &o);
    if (s != RT_OK)
        return s;
    if ((s = rt_testws_auth(NULL, *out, token, 5000)) != RT_OK) {
        rt_testws_destroy(*out);
        *out = NULL;
    }
    return s;
}

rt_status rt_testws_subscribe(json_t **reply, rt_testws *ws, const char *id, const char *room,
                              int timeout_ms)
{
    uint64_t deadline = rt_time_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    json_t *frame = json_pack("{s:s, s:s, s:s}", "type", "subscribe", "id", id, "room", room);
    char *text = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);
    rt_status s = rt_testws_send_text(ws, text);
    free(text);
    if (reply)
        *reply = NULL;
    if (s != RT_OK)
        return s;
    for (;;) {
        json_t *m = NULL;
        int64_t left = deadline_left(deadline);
        if ((s = rt_testws_recv_json(&m, ws, (int)(left > 0 ? left : 0))) != RT_OK)
            return s;
        const char *type = rt_json_str(m, "type");
        if (strcmp(rt_json_str(m, "id"), id) == 0 &&
            (strcmp(type, "subscribed") == 0 || strcmp(type, "error") == 0)) {
            s = strcmp(type, "subscribed") == 0
                    ? RT_OK
                    : RT_ERR(RT_ERR_AUTH, "subscribe %s: %s", room, rt_json_str(m, "code"));
            if (reply)
                *reply = m;
            else
                json_decref(m);
            return s;
        }
        json_decref(m);
    }
}

const char *rt_json_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

long long rt_json_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}
