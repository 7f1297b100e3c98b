/*
 * edge_frames: what a browser sees when it sends a frame (accepted, or a
 * bad_request whose reason names the problem and carries its id) and the
 * exact text of every frame the server sends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "edge_frames.h"

/* ---- helpers ---- */

static rt_status parse(edge_in_frame *f, const char *text, char *why, size_t why_size)
{
    return edge_frame_parse(f, text, strlen(text), why, why_size);
}

/* Parses `text`, which must be accepted; the caller releases. */
static void parse_ok(edge_in_frame *f, const char *text)
{
    char why[128];
    rt_status rc = parse(f, text, why, sizeof(why));
    if (rc != RT_OK)
        fail_msg("frame %s refused: %s", text, why);
    assert_non_null(f->root);
}

/* Parses `text`, which must be refused with exactly `reason`, carrying
 * `id` ("" when none). */
static void parse_bad(const char *text, const char *reason, const char *id)
{
    edge_in_frame f;
    char why[128];
    rt_status rc = parse(&f, text, why, sizeof(why));
    if (rc != RT_ERR_JSON)
        fail_msg("frame %s accepted (rc %d)", text, (int)rc);
    if (strcmp(why, reason) != 0)
        fail_msg("frame %s: reason \"%s\", expected \"%s\"", text, why, reason);
    if (strcmp(f.id, id) != 0)
        fail_msg("frame %s: id \"%s\", expected \"%s\"", text, f.id, id);
    assert_null(f.root);
    assert_null(f.token);
    assert_null(f.payload);
    edge_frame_release(&f);
}

static void assert_render(char *got, size_t len, const char *expected)
{
    assert_non_null(got);
    assert_string_equal(got, expected);
    assert_int_equal(len, strlen(expected));
    assert_null(strchr(got, '\n'));
    /* What we send must be JSON a browser can parse (a browser reads big
     * integers as doubles; so does this check). */
    json_error_t err;
    json_t *back = json_loads(got, JSON_DECODE_INT_AS_REAL, &err);
    if (!back)
        fail_msg("rendered text is not JSON: %s (%s)", got, err.text);
    json_decref(back);
    free(got);
}

/* ---- valid frames ---- */

static void test_auth_and_refresh(void **state)
{
    (void)state;
    edge_in_frame f;

    parse_ok(&f, "{\"type\":\"auth\",\"token\":\"eyJ.abc.def\"}");
    assert_int_equal(f.type, EDGE_IN_AUTH);
    assert_int_equal(f.token_len, 11);
    assert_memory_equal(f.token, "eyJ.abc.def", 11);
    assert_string_equal(f.id, "");
    edge_frame_release(&f);
    assert_null(f.root);
    assert_null(f.token);

    parse_ok(&f, " {\"id\":\"a1\", \"token\":\"t\", \"type\":\"refresh\"} \n");
    assert_int_equal(f.type, EDGE_IN_REFRESH);
    assert_string_equal(f.id, "a1");
    assert_int_equal(f.token_len, 1);
    edge_frame_release(&f);

    /* A token of exactly the cap. */
    size_t n = EDGE_TOKEN_MAX;
    char *big = malloc(n + 64);
    int off = sprintf(big, "{\"type\":\"auth\",\"token\":\"");
    memset(big + off, 'x', n);
    strcpy(big + off + n, "\"}");
    parse_ok(&f, big);
    assert_int_equal(f.token_len, EDGE_TOKEN_MAX);
    edge_frame_release(&f);
    free(big);
}

static void test_subscribe_and_unsubscribe(void **state)
{
    (void)state;
    edge_in_frame f;

    parse_ok(&f, "{\"type\":\"subscribe\",\"id\":\"c1\",\"room\":\"course:42\"}");
    assert_int_equal(f.type, EDGE_IN_SUBSCRIBE);
    assert_string_equal(f.id, "c1");
    assert_int_equal(f.room.kind, RT_ROOM_COURSE);
    assert_string_equal(f.room.id, "42");
    assert_string_equal(f.room_name, "course:42");
    assert_false(f.has_since);
    edge_frame_release(&f);

    parse_ok(&f, "{\"type\":\"subscribe\",\"id\":\"c1\",\"room\":\"instructor:u-1_X\","
                 "\"since\":{\"seq\":1234,\"epoch\":\"2026-11-25T17:30:00Z.7\"}}");
    assert_int_equal(f.room.kind, RT_ROOM_INSTRUCTOR);
    assert_string_equal(f.room_name, "instructor:u-1_X");
    assert_true(f.has_since);
    assert_int_equal(f.since_seq, 1234);
    assert_string_equal(f.since_epoch, "2026-11-25T17:30:00Z.7");
    edge_frame_release(&f);

    /* since: seq 0, epoch "" and the order epoch-before-seq are fine; id and
     * since may be null. */
    parse_ok(&f,
             "{\"type\":\"subscribe\",\"room\":\"user:u1\",\"since\":{\"epoch\":\"\",\"seq\":0}}");
    assert_true(f.has_since);
    assert_int_equal(f.since_seq, 0);
    assert_string_equal(f.since_epoch, "");
    edge_frame_release(&f);
    parse_ok(&f, "{\"type\":\"subscribe\",\"id\":null,\"room\":\"lesson:L\",\"since\":null}");
    assert_false(f.has_since);
    assert_string_equal(f.id, "");
    assert_int_equal(f.room.kind, RT_ROOM_LESSON);
    edge_frame_release(&f);
    /* Largest seq that fits JSON integers here. */
    parse_ok(&f, "{\"type\":\"subscribe\",\"room\":\"user:u1\","
                 "\"since\":{\"seq\":9223372036854775807,\"epoch\":\"e\"}}");
    assert_int_equal(f.since_seq, INT64_MAX);
    edge_frame_release(&f);

    parse_ok(&f, "{\"type\":\"unsubscribe\",\"id\":\"c2\",\"room\":\"course:42\"}");
    assert_int_equal(f.type, EDGE_IN_UNSUBSCRIBE);
    assert_string_equal(f.id, "c2");
    assert_string_equal(f.room_name, "course:42");
    edge_frame_release(&f);
    parse_ok(&f, "{\"type\":\"unsubscribe\",\"room\":\"course:42\"}");
    assert_string_equal(f.id, "");
    edge_frame_release(&f);
}

static void test_ping(void **state)
{
    (void)state;
    edge_in_frame f;

    parse_ok(&f, "{\"type\":\"ping\"}");
    assert_int_equal(f.type, EDGE_IN_PING);
    assert_string_equal(f.id, "");
    edge_frame_release(&f);
    parse_ok(&f, "{\"type\":\"ping\",\"id\":\"p 1~!#$%&'()*+,-./:;<=>?@[]^_`{|}\"}");
    assert_string_equal(f.id, "p 1~!#$%&'()*+,-./:;<=>?@[]^_`{|}");
    edge_frame_release(&f);

    /* An id of exactly 64 characters. */
    char text[128], id[EDGE_CLIENT_ID_MAX + 1];
    memset(id, 'i', EDGE_CLIENT_ID_MAX);
    id[EDGE_CLIENT_ID_MAX] = '\0';
    snprintf(text, sizeof(text), "{\"type\":\"ping\",\"id\":\"%s\"}", id);
    parse_ok(&f, text);
    assert_string_equal(f.id, id);
    edge_frame_release(&f);
}

static void test_every_action_type(void **state)
{
    (void)state;
    static const char *types[] = {"confusion", "question", "progress", "prompt", "notification"};
    static const char *actions[] = {"create", "update"};
    edge_in_frame f;
    char text[256];

    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        for (size_t a = 0; a < 2; a++) {
            snprintf(text, sizeof(text),
                     "{\"type\":\"%s\",\"action\":\"%s\",\"id\":\"x%zu\","
                     "\"payload\":{\"courseId\":\"c\",\"nested\":{\"a\":[1,2]}}}",
                     types[t], actions[a], t);
            parse_ok(&f, text);
            assert_int_equal(f.type, EDGE_IN_ACTION);
            assert_string_equal(f.action_type, types[t]);
            assert_string_equal(f.action, actions[a]);
            assert_true(json_is_object(f.payload));
            assert_string_equal(json_string_value(json_object_get(f.payload, "courseId")), "c");
            edge_frame_release(&f);
            assert_null(f.payload);
        }
    }
    /* The payload's content is the action handler's business. */
    parse_ok(&f, "{\"type\":\"progress\",\"action\":\"update\",\"id\":\"p\",\"payload\":{}}");
    assert_int_equal(json_object_size(f.payload), 0);
    edge_frame_release(&f);
}

/* ---- refused frames ---- */

static void test_not_json(void **state)
{
    (void)state;
    parse_bad("", "invalid JSON: unexpected end of frame", "");
    parse_bad("{\"type\":\"ping\"", "invalid JSON: unexpected end of frame", "");
    parse_bad("{type:ping}", "invalid JSON at byte 5", "");
    parse_bad("{\"type\":\"ping\"} {}", "invalid JSON at byte 17", "");
    parse_bad("{\"type\":\"ping\",\"id\":\"\xff\"}", "frame is not valid UTF-8", "");
    parse_bad("{\"type\":\"auth\",\"token\":\"a\\u0000b\"}", "strings must not contain NUL", "");
    parse_bad("{\"type\":\"ping\",\"type\":\"ping\"}", "duplicate key", "");
    parse_bad("{\"type\":\"confusion\",\"action\":\"create\",\"id\":\"a\","
              "\"payload\":{\"text\":\"x\",\"text\":\"y\"}}",
              "duplicate key", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":99999999999999999999,\"epoch\":\"e\"}}",
              "number out of range", "");
    /* A NULL buffer is not a frame either. */
    edge_in_frame f;
    char why[64];
    assert_int_equal(edge_frame_parse(&f, NULL, 0, why, sizeof(why)), RT_ERR_JSON);
    assert_string_equal(why, "invalid JSON");
    edge_frame_release(&f);
    /* Without a reason buffer it still fails cleanly. */
    assert_int_equal(edge_frame_parse(&f, "[]", 2, NULL, 0), RT_ERR_JSON);
    edge_frame_release(&f);
}

static void test_not_an_object(void **state)
{
    (void)state;
    parse_bad("[]", "frame must be a JSON object", "");
    parse_bad("[{\"type\":\"ping\"}]", "frame must be a JSON object", "");
    parse_bad("\"ping\"", "frame must be a JSON object", "");
    parse_bad("42", "frame must be a JSON object", "");
    parse_bad("null", "frame must be a JSON object", "");
}

static void test_type(void **state)
{
    (void)state;
    parse_bad("{}", "missing field type", "");
    parse_bad("{\"id\":\"k\"}", "missing field type", "k");
    parse_bad("{\"type\":7}", "type must be a string", "");
    parse_bad("{\"type\":null,\"id\":\"k\"}", "type must be a string", "k");
    parse_bad("{\"type\":\"shutdown\",\"id\":\"k\"}", "unknown type", "k");
    parse_bad("{\"type\":\"Auth\",\"token\":\"t\"}", "unknown type", "");
    parse_bad("{\"type\":\"\"}", "unknown type", "");
    /* Server-to-client types are not frames a browser sends. */
    parse_bad("{\"type\":\"auth_ok\"}", "unknown type", "");
    parse_bad("{\"type\":\"analytics\",\"action\":\"update\",\"id\":\"a\",\"payload\":{}}",
              "unknown type", "a");
}

static void test_token(void **state)
{
    (void)state;
    parse_bad("{\"type\":\"auth\"}", "auth: missing field token", "");
    parse_bad("{\"type\":\"refresh\",\"id\":\"r\"}", "refresh: missing field token", "r");
    parse_bad("{\"type\":\"auth\",\"token\":\"\"}", "token must not be empty", "");
    parse_bad("{\"type\":\"auth\",\"token\":null}", "token must be a string", "");
    parse_bad("{\"type\":\"auth\",\"token\":123}", "token must be a string", "");
    parse_bad("{\"type\":\"refresh\",\"id\":\"r\",\"token\":[\"a\"]}", "token must be a string",
              "r");

    size_t n = EDGE_TOKEN_MAX + 1;
    char *big = malloc(n + 64);
    int off = sprintf(big, "{\"type\":\"auth\",\"id\":\"big\",\"token\":\"");
    memset(big + off, 'x', n);
    strcpy(big + off + n, "\"}");
    parse_bad(big, "token must be at most 8192 bytes", "big");
    free(big);
}

static void test_unknown_fields(void **state)
{
    (void)state;
    parse_bad("{\"type\":\"subscribe\",\"id\":\"c1\",\"rooom\":\"course:42\"}",
              "unknown field 'rooom'", "c1");
    parse_bad("{\"type\":\"auth\",\"token\":\"t\",\"room\":\"course:1\"}", "unknown field 'room'",
              "");
    parse_bad("{\"type\":\"ping\",\"token\":\"t\"}", "unknown field 'token'", "");
    parse_bad("{\"type\":\"unsubscribe\",\"room\":\"course:1\",\"since\":{}}",
              "unknown field 'since'", "");
    parse_bad("{\"type\":\"confusion\",\"action\":\"create\",\"id\":\"a\",\"payload\":{},"
              "\"userId\":\"u\"}",
              "unknown field 'userId'", "a");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":1,\"epoch\":\"e\",\"extra\":1}}",
              "unknown field 'since.extra'", "");
    /* Names that are long, non-ASCII, quoted or empty are not echoed. */
    parse_bad("{\"type\":\"ping\",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}", "unknown field", "");
    parse_bad("{\"type\":\"ping\",\"caf\xc3\xa9\":1}", "unknown field", "");
    parse_bad("{\"type\":\"ping\",\"a'b\":1}", "unknown field", "");
    parse_bad("{\"type\":\"ping\",\"a\\\"b\":1}", "unknown field", "");
    parse_bad("{\"type\":\"ping\",\"a\\nb\":1}", "unknown field", "");
    parse_bad("{\"type\":\"ping\",\"\":1}", "unknown field", "");
    parse_bad("{\"type\":\"ping\",\"a b\":1}", "unknown field", "");
}

static void test_ids(void **state)
{
    (void)state;
    parse_bad("{\"type\":\"ping\",\"id\":\"\"}", "id must be 1 to 64 printable ASCII characters",
              "");
    parse_bad("{\"type\":\"ping\",\"id\":7}", "id must be a string", "");
    parse_bad("{\"type\":\"ping\",\"id\":{}}", "id must be a string", "");
    parse_bad("{\"type\":\"ping\",\"id\":\"a\\\"b\"}",
              "id must be 1 to 64 printable ASCII characters", "");
    parse_bad("{\"type\":\"ping\",\"id\":\"a\\\\b\"}",
              "id must be 1 to 64 printable ASCII characters", "");
    parse_bad("{\"type\":\"ping\",\"id\":\"a\\nb\"}",
              "id must be 1 to 64 printable ASCII characters", "");
    parse_bad("{\"type\":\"ping\",\"id\":\"a\\u007fb\"}",
              "id must be 1 to 64 printable ASCII characters", "");
    parse_bad("{\"type\":\"ping\",\"id\":\"caf\xc3\xa9\"}",
              "id must be 1 to 64 printable ASCII characters", "");
    char text[160], id[EDGE_CLIENT_ID_MAX + 2];
    memset(id, 'i', EDGE_CLIENT_ID_MAX + 1);
    id[EDGE_CLIENT_ID_MAX + 1] = '\0';
    snprintf(text, sizeof(text), "{\"type\":\"ping\",\"id\":\"%s\"}", id);
    parse_bad(text, "id must be 1 to 64 printable ASCII characters", "");
}

static void test_rooms(void **state)
{
    (void)state;
    parse_bad("{\"type\":\"subscribe\",\"id\":\"c1\"}", "subscribe: missing field room", "c1");
    parse_bad("{\"type\":\"unsubscribe\",\"id\":\"c2\"}", "unsubscribe: missing field room", "c2");
    parse_bad("{\"type\":\"subscribe\",\"id\":\"c1\",\"room\":42}", "room must be a string", "c1");
    parse_bad("{\"type\":\"subscribe\",\"id\":\"c1\",\"room\":\"course42\"}",
              "room must look like kind:id", "c1");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"\"}", "room must look like kind:id", "");
    parse_bad("{\"type\":\"subscribe\",\"id\":\"c1\",\"room\":\"team:42\"}",
              "room kind must be course, lesson, user or instructor", "c1");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:4.2\"}",
              "room id must match [A-Za-z0-9_-]{1,64}", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:\"}",
              "room id must match [A-Za-z0-9_-]{1,64}", "");
    parse_bad("{\"type\":\"unsubscribe\",\"room\":\"course:>\"}",
              "room id must match [A-Za-z0-9_-]{1,64}", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:a b\"}",
              "room id must match [A-Za-z0-9_-]{1,64}", "");
}

static void test_since(void **state)
{
    (void)state;
    parse_bad("{\"type\":\"subscribe\",\"id\":\"s\",\"room\":\"course:1\",\"since\":5}",
              "since must be an object", "s");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\",\"since\":{\"epoch\":\"e\"}}",
              "since: missing field seq", "");
    parse_bad("{\"type\":\"subscribe\",\"id\":\"s\",\"room\":\"course:1\",\"since\":{\"seq\":3}}",
              "since: missing field epoch", "s");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\",\"since\":{}}",
              "since: missing field seq", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":-1,\"epoch\":\"e\"}}",
              "since.seq must be a non-negative integer", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":1.5,\"epoch\":\"e\"}}",
              "since.seq must be a non-negative integer", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":1.0,\"epoch\":\"e\"}}",
              "since.seq must be a non-negative integer", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":\"12\",\"epoch\":\"e\"}}",
              "since.seq must be a non-negative integer", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":1,\"epoch\":7}}",
              "since.epoch must be a string", "");
    parse_bad("{\"type\":\"subscribe\",\"room\":\"course:1\","
              "\"since\":{\"seq\":1,\"epoch\":\"a\\tb\"}}",
              "since.epoch must be printable ASCII", "");
    char text[256], epoch[EDGE_EPOCH_MAX + 2];
    memset(epoch, 'e', EDGE_EPOCH_MAX + 1);
    epoch[EDGE_EPOCH_MAX + 1] = '\0';
    snprintf(
        text, sizeof(text),
        "{\"type\":\"subscribe\",\"room\":\"course:1\",\"since\":{\"seq\":1,\"epoch\":\"%s\"}}",
        epoch);
    parse_bad(text, "since.epoch must be at most 64 bytes", "");
    /* 64 is fine. */
    edge_in_frame f;
    epoch[EDGE_EPOCH_MAX] = '\0';
    snprintf(
        text, sizeof(text),
        "{\"type\":\"subscribe\",\"room\":\"course:1\",\"since\":{\"seq\":1,\"epoch\":\"%s\"}}",
        epoch);
    parse_ok(&f, text);
    assert_string_equal(f.since_epoch, epoch);
    edge_frame_release(&f);
}

static void test_actions(void **state)
{
    (void)state;
    parse_bad("{\"type\":\"confusion\",\"action\":\"create\",\"payload\":{}}",
              "confusion: missing field id", "");
    parse_bad("{\"type\":\"confusion\",\"action\":\"create\",\"id\":null,\"payload\":{}}",
              "confusion: missing field id", "");
    parse_bad("{\"type\":\"question\",\"action\":\"create\",\"id\":\"q1\"}",
              "question: missing field payload", "q1");
    parse_bad("{\"type\":\"progress\",\"id\":\"p1\",\"payload\":{}}",
              "progress: missing field action", "p1");
    parse_bad("{\"type\":\"prompt\",\"action\":\"delete\",\"id\":\"p1\",\"payload\":{}}",
              "action must be create, update or list", "p1");
    parse_bad("{\"type\":\"prompt\",\"action\":\"Create\",\"id\":\"p1\",\"payload\":{}}",
              "action must be create, update or list", "p1");
    parse_bad("{\"type\":\"prompt\",\"action\":1,\"id\":\"p1\",\"payload\":{}}",
              "action must be a string", "p1");
    parse_bad("{\"type\":\"notification\",\"action\":\"update\",\"id\":\"n\",\"payload\":[]}",
              "payload must be an object", "n");
    parse_bad("{\"type\":\"notification\",\"action\":\"update\",\"id\":\"n\",\"payload\":null}",
              "payload must be an object", "n");
    parse_bad("{\"type\":\"confusion\",\"action\":\"create\",\"id\":\"\",\"payload\":{}}",
              "id must be 1 to 64 printable ASCII characters", "");
}

static void test_release_is_safe(void **state)
{
    (void)state;
    edge_in_frame f;
    memset(&f, 0, sizeof(f));
    edge_frame_release(&f);
    edge_frame_release(&f);
    edge_frame_release(NULL);
    parse_ok(&f, "{\"type\":\"ping\"}");
    edge_frame_release(&f);
    edge_frame_release(&f); /* twice is harmless */
}

/* ---- rendering ---- */

/* 2026-11-25T17:30:00.123Z */
#define T_MS INT64_C(1795627800123)

static void test_render_auth_ok(void **state)
{
    (void)state;
    size_t len;
    char *s;

    s = edge_render_auth_ok(&len, "conn-1", "user-9", UNPUZZLE__RT__V1__ROLE__ROLE_INSTRUCTOR,
                            T_MS);
    assert_render(s, len,
                  "{\"type\":\"auth_ok\",\"connectionId\":\"conn-1\",\"userId\":\"user-9\","
                  "\"role\":\"instructor\",\"expiresAt\":\"2026-11-25T17:30:00.123Z\"}");
    s = edge_render_auth_ok(&len, "c", "u", UNPUZZLE__RT__V1__ROLE__ROLE_STUDENT, 0);
    assert_render(s, len,
                  "{\"type\":\"auth_ok\",\"connectionId\":\"c\",\"userId\":\"u\","
                  "\"role\":\"student\",\"expiresAt\":\"1970-01-01T00:00:00.000Z\"}");
    s = edge_render_auth_ok(&len, "c", "u", UNPUZZLE__RT__V1__ROLE__ROLE_ADMIN, T_MS);
    assert_render(s, len,
                  "{\"type\":\"auth_ok\",\"connectionId\":\"c\",\"userId\":\"u\","
                  "\"role\":\"admin\",\"expiresAt\":\"2026-11-25T17:30:00.123Z\"}");
    s = edge_render_auth_ok(&len, "c", "u", UNPUZZLE__RT__V1__ROLE__ROLE_UNSPECIFIED, T_MS);
    assert_render(s, len,
                  "{\"type\":\"auth_ok\",\"connectionId\":\"c\",\"userId\":\"u\","
                  "\"role\":\"student\",\"expiresAt\":\"2026-11-25T17:30:00.123Z\"}");
}

static void test_render_error(void **state)
{
    (void)state;
    size_t len;
    char *s;

    s = edge_render_error(&len, "c1", "forbidden", NULL, "course:42");
    assert_render(s, len,
                  "{\"type\":\"error\",\"id\":\"c1\",\"code\":\"forbidden\","
                  "\"room\":\"course:42\"}");
    s = edge_render_error(&len, NULL, "bad_request", "unknown field 'rooom'", NULL);
    assert_render(s, len,
                  "{\"type\":\"error\",\"code\":\"bad_request\","
                  "\"message\":\"unknown field 'rooom'\"}");
    s = edge_render_error(&len, "", "token_expired", "", "");
    assert_render(s, len, "{\"type\":\"error\",\"code\":\"token_expired\"}");
    s = edge_render_error(&len, "x", NULL, "m", NULL);
    assert_render(s, len,
                  "{\"type\":\"error\",\"id\":\"x\",\"code\":\"internal\","
                  "\"message\":\"m\"}");
    /* Quotes, backslashes, newlines, control characters, Unicode. */
    s = edge_render_error(&len, NULL, "bad_request",
                          "say \"hi\"\\ \n\r\t\b\f\x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac "
                          "\xf0\x9f\x98\x80 </script>",
                          NULL);
    assert_render(s, len,
                  "{\"type\":\"error\",\"code\":\"bad_request\",\"message\":"
                  "\"say \\\"hi\\\"\\\\ \\n\\r\\t\\b\\f\\u0001\\u001f\x7f caf\xc3\xa9 \xe2\x82\xac "
                  "\xf0\x9f\x98\x80 </script>\"}");
    /* Invalid UTF-8 becomes U+FFFD: lone continuation, truncated sequence,
     * overlong '/', surrogate, above U+10FFFF, 0xff. */
    s = edge_render_error(&len, NULL, "x",
                          "a\x80"
                          "b\xe2\x82"
                          "c\xc0\xaf"
                          "d\xed\xa0\x80"
                          "e\xf4\x90\x80\x80"
                          "f\xff",
                          NULL);
    assert_render(s, len,
                  "{\"type\":\"error\",\"code\":\"x\",\"message\":\"a\xef\xbf\xbd"
                  "b\xef\xbf\xbd\xef\xbf\xbd"
                  "c\xef\xbf\xbd\xef\xbf\xbd"
                  "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                  "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                  "f\xef\xbf\xbd\"}");
    /* out_len may be NULL. */
    s = edge_render_error(NULL, NULL, "internal", NULL, NULL);
    assert_string_equal(s, "{\"type\":\"error\",\"code\":\"internal\"}");
    free(s);
}

static void test_render_subscribed_and_others(void **state)
{
    (void)state;
    size_t len;
    char *s;

    s = edge_render_subscribed(&len, "c1", "course:42", "ep-1", 1234, true);
    assert_render(s, len,
                  "{\"type\":\"subscribed\",\"id\":\"c1\",\"room\":\"course:42\","
                  "\"epoch\":\"ep-1\",\"seq\":1234,\"recovered\":true}");
    s = edge_render_subscribed(&len, NULL, "user:u", "", UINT64_MAX, false);
    assert_render(s, len,
                  "{\"type\":\"subscribed\",\"room\":\"user:u\",\"epoch\":\"\","
                  "\"seq\":18446744073709551615,\"recovered\":false}");
    s = edge_render_subscribed(&len, "x", "course:1", "e", 0, false);
    assert_render(s, len,
                  "{\"type\":\"subscribed\",\"id\":\"x\",\"room\":\"course:1\","
                  "\"epoch\":\"e\",\"seq\":0,\"recovered\":false}");

    s = edge_render_unsubscribed(&len, "c2", "course:42");
    assert_render(s, len, "{\"type\":\"unsubscribed\",\"id\":\"c2\",\"room\":\"course:42\"}");
    s = edge_render_unsubscribed(&len, NULL, "course:42");
    assert_render(s, len, "{\"type\":\"unsubscribed\",\"room\":\"course:42\"}");

    s = edge_render_pong(&len, "p1", T_MS);
    assert_render(s, len,
                  "{\"type\":\"pong\",\"id\":\"p1\",\"serverTime\":\"2026-11-25T17:30:00.123Z\"}");
    s = edge_render_pong(&len, "", T_MS);
    assert_render(s, len, "{\"type\":\"pong\",\"serverTime\":\"2026-11-25T17:30:00.123Z\"}");

    s = edge_render_ack(&len, "a1", "0b9e7c3e-evt");
    assert_render(s, len, "{\"type\":\"ack\",\"id\":\"a1\",\"eventId\":\"0b9e7c3e-evt\"}");
    /* An id with characters that need escaping is still valid JSON. */
    s = edge_render_ack(&len, "a\"1", "e");
    assert_render(s, len, "{\"type\":\"ack\",\"id\":\"a\\\"1\",\"eventId\":\"e\"}");
}

static void test_render_room_message_confusion(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__RoomMessage msg = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__ConfusionCreated cc = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp occurred = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    size_t len;
    char *s;

    ts.seconds = 1795627800;
    ts.nanos = 123000000;
    occurred.seconds = 1795627799;
    occurred.nanos = 0;
    cc.event_id = "evt-1";
    cc.occurred_at = &occurred;
    cc.confusion_id = "cf-1";
    cc.course_id = "42";
    cc.lesson_id = "L7";
    cc.user_id = "stu-1";
    cc.video_timestamp_sec = 61.5;
    cc.text = "I don't get \"this\"\nline 2 \xe2\x80\x94 caf\xc3\xa9 \\o/";
    msg.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_CONFUSION;
    msg.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_CREATE;
    msg.timestamp = &ts;
    msg.user_id = "stu-1";
    msg.event_id = "evt-1";
    msg.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED;
    msg.confusion_created = &cc;

    s = edge_render_room_message(&len, &msg, "course:42", 1235, 1230);
    assert_render(s, len,
                  "{\"type\":\"confusion\",\"action\":\"create\",\"room\":\"course:42\","
                  "\"seq\":1235,\"prevSeq\":1230,\"payload\":{\"eventId\":\"evt-1\","
                  "\"occurredAt\":\"2026-11-25T17:29:59.000Z\",\"confusionId\":\"cf-1\","
                  "\"courseId\":\"42\",\"lessonId\":\"L7\",\"userId\":\"stu-1\","
                  "\"videoTimestampSec\":61.5,"
                  "\"text\":\"I don't get \\\"this\\\"\\nline 2 \xe2\x80\x94 caf\xc3\xa9 \\\\o/\"},"
                  "\"timestamp\":\"2026-11-25T17:30:00.123Z\",\"userId\":\"stu-1\","
                  "\"eventId\":\"evt-1\"}");

    /* No timestamp, no user, no event id: those keys are left out. */
    msg.timestamp = NULL;
    msg.user_id = "";
    msg.event_id = "";
    msg.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_PRESENCE;
    msg.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_DELETE;
    msg.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD__NOT_SET;
    s = edge_render_room_message(&len, &msg, "lesson:L7", 7, 0);
    assert_render(s, len,
                  "{\"type\":\"presence\",\"action\":\"delete\",\"room\":\"lesson:L7\","
                  "\"seq\":7,\"prevSeq\":0,\"payload\":{}}");

    assert_null(edge_render_room_message(&len, NULL, "course:1", 1, 0));
    assert_int_equal(len, 0);
}

static void test_render_room_message_metrics(void **state)
{
    (void)state;
    Unpuzzle__Rt__V1__RoomMessage msg = UNPUZZLE__RT__V1__ROOM_MESSAGE__INIT;
    Unpuzzle__Rt__V1__CourseMetrics m = UNPUZZLE__RT__V1__COURSE_METRICS__INIT;
    Google__Protobuf__DoubleValue learn = GOOGLE__PROTOBUF__DOUBLE_VALUE__INIT;
    Google__Protobuf__Timestamp end = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    size_t len;
    char *s;

    end.seconds = 1795627800;
    learn.value = 12.5;
    m.course_id = "42";
    m.end = &end;
    m.window_s = 3600;
    m.learn_rate = &learn;
    m.learn_rate_band = "good";
    /* execution_rate, execution_pace_s, completion_rate, avg_progress: null */
    m.active_student_count = 3;
    m.enrolled_students = 10;
    msg.type = UNPUZZLE__RT__V1__ROOM_MESSAGE_TYPE__ROOM_MESSAGE_TYPE_ANALYTICS;
    msg.action = UNPUZZLE__RT__V1__ROOM_ACTION__ROOM_ACTION_UPDATE;
    msg.event_id = "snap-9";
    msg.payload_case = UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_ANALYTICS;
    msg.analytics = &m;

    s = edge_render_room_message(&len, &msg, "course:42", 9007199254740993ull, 5);
    assert_render(s, len,
                  "{\"type\":\"analytics\",\"action\":\"update\",\"room\":\"course:42\","
                  "\"seq\":9007199254740993,\"prevSeq\":5,\"payload\":{\"courseId\":\"42\","
                  "\"end\":\"2026-11-25T17:30:00.000Z\",\"windowS\":3600,\"learnRate\":12.5,"
                  "\"learnRateBand\":\"good\",\"executionRate\":null,"
                  "\"executionRateBand\":\"\",\"executionPaceS\":null,"
                  "\"activeStudentCount\":3,\"activeStudents\":[],\"completionRate\":null,"
                  "\"avgProgress\":null,\"strugglingTopics\":[],\"daily\":[],"
                  "\"students\":[],\"enrolledStudents\":10},\"eventId\":\"snap-9\"}");
}

static void test_render_action_ack(void **state)
{
    (void)state;
    size_t len = 0;
    /* An action's ack: the new entity, and a retry's duplicate flag. */
    char *s = edge_render_action_ack(&len, "a1", "ev", "confusionId", "cf", true);
    assert_string_equal(s, "{\"type\":\"ack\",\"id\":\"a1\",\"eventId\":\"ev\","
                           "\"confusionId\":\"cf\",\"duplicate\":true}");
    free(s);
    s = edge_render_action_ack(&len, "a1", "ev", NULL, NULL, false);
    assert_string_equal(s, "{\"type\":\"ack\",\"id\":\"a1\",\"eventId\":\"ev\"}");
    free(s);
    s = edge_render_notifications(&len, "n1", "{\"unreadCount\":2}");
    assert_string_equal(
        s, "{\"type\":\"notifications\",\"id\":\"n1\",\"payload\":{\"unreadCount\":2}}");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_action_ack),
        cmocka_unit_test(test_auth_and_refresh),
        cmocka_unit_test(test_subscribe_and_unsubscribe),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_every_action_type),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_since),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_release_is_safe),
        cmocka_unit_test(test_render_auth_ok),
        cmocka_unit_test(test_render_error),
        cmocka_unit_test(test_render_subscribed_and_others),
        cmocka_unit_test(test_render_room_message_confusion),
        cmocka_unit_test(test_render_room_message_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
