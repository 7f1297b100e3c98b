/* edge_actions: each action's payload checked strictly, turned into its
 * event with the fields only the server sets, and the same event id for a
 * retried action. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_actions.h"

#define NOW_MS INT64_C(1795600000123)

static rt_status build(edge_action *a, const char *type, const char *action, const char *payload,
                       const char *client_id, char *why)
{
    json_error_t err;
    json_t *p = json_loads(payload, 0, &err);
    assert_non_null(p);
    rt_status s =
        edge_action_build(a, type, action, p, "stu-1", "edge-a-1f", client_id, NOW_MS, why, 240);
    json_decref(p);
    return s;
}

static void expect_bad(const char *type, const char *action, const char *payload,
                       const char *reason_part)
{
    edge_action a;
    char why[240] = "";
    assert_int_equal(build(&a, type, action, payload, "a1", why), RT_ERR_JSON);
    if (!strstr(why, reason_part))
        fail_msg("%s/%s %s: reason '%s' lacks '%s'", type, action, payload, why, reason_part);
}

static void confusion_create(void **state)
{
    (void)state;
    edge_action a;
    char why[240] = "";
    assert_int_equal(build(&a, "confusion", "create",
                           "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":42.5,"
                           "\"text\":\"lost\"}",
                           "a1", why),
                     RT_OK);
    assert_int_equal(a.who, EDGE_ACTION_MEMBER);
    assert_string_equal(a.course_id, "c1");
    assert_int_equal(a.n_events, 1);
    assert_string_equal(a.subjects[0], "evt.v1.confusion.created");
    const Unpuzzle__Rt__V1__ConfusionCreated *e = (const void *)a.events[0];
    assert_string_equal(e->user_id, "stu-1"); /* from the token */
    assert_string_equal(e->event_id, a.event_ids[0]);
    assert_string_equal(e->confusion_id, a.entity_id);
    assert_string_equal(a.entity_key, "confusionId");
    assert_int_equal(strlen(a.event_ids[0]), 36);
    assert_true(e->video_timestamp_sec == 42.5);
    assert_int_equal(e->occurred_at->seconds, NOW_MS / 1000);
    /* Shown in the course room at once. */
    assert_string_equal(a.fanout_room, "course:c1");
    assert_int_equal(a.fanout->payload_case,
                     UNPUZZLE__RT__V1__ROOM_MESSAGE__PAYLOAD_CONFUSION_CREATED);
    assert_ptr_equal(a.fanout->confusion_created, e);

    /* The same client id on the same connection: the same ids. */
    edge_action b;
    assert_int_equal(build(&b, "confusion", "create",
                           "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":1}",
                           "a1", why),
                     RT_OK);
    assert_string_equal(a.event_ids[0], b.event_ids[0]);
    assert_string_equal(a.entity_id, b.entity_id);
    edge_action_free(&b);
    assert_int_equal(build(&b, "confusion", "create",
                           "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":1}",
                           "a2", why),
                     RT_OK);
    assert_string_not_equal(a.event_ids[0], b.event_ids[0]);
    edge_action_free(&b);
    edge_action_free(&a);
}

static void instructor_and_self_actions(void **state)
{
    (void)state;
    edge_action a;
    char why[240] = "";
    assert_int_equal(build(&a, "question", "update",
                           "{\"courseId\":\"c1\",\"questionId\":\"q1\",\"answer\":\"42\"}", "x",
                           why),
                     RT_OK);
    assert_int_equal(a.who, EDGE_ACTION_INSTRUCTOR);
    assert_null(a.fanout);
    edge_action_free(&a);
    assert_int_equal(build(&a, "confusion", "update",
                           "{\"courseId\":\"c1\",\"confusionId\":\"cf1\",\"resolved\":true}", "x",
                           why),
                     RT_OK);
    assert_int_equal(a.who, EDGE_ACTION_INSTRUCTOR);
    edge_action_free(&a);
    assert_int_equal(
        build(&a, "notification", "update", "{\"notificationIds\":[\"n1\",\"n2\"]}", "x", why),
        RT_OK);
    assert_int_equal(a.who, EDGE_ACTION_SELF);
    assert_string_equal(a.subjects[0], "evt.v1.notification.read");
    edge_action_free(&a);
}

static void progress_completed_emits_lesson_completed(void **state)
{
    (void)state;
    edge_action a;
    char why[240] = "";
    assert_int_equal(build(&a, "progress", "update",
                           "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"positionSec\":600,"
                           "\"durationSec\":600,\"playing\":false,\"completed\":true}",
                           "p1", why),
                     RT_OK);
    assert_int_equal(a.n_events, 2);
    assert_string_equal(a.subjects[1], "evt.v1.lesson.completed");
    const Unpuzzle__Rt__V1__LessonCompleted *lc = (const void *)a.events[1];
    assert_string_equal(lc->lesson_id, "l1");
    assert_string_equal(lc->user_id, "stu-1");
    assert_string_not_equal(a.event_ids[0], a.event_ids[1]);
    /* Synced to the user's other connections, not back to this one. */
    assert_string_equal(a.fanout_room, "user:stu-1");
    assert_string_equal(a.fanout->origin_connection_id, "edge-a-1f");
    edge_action_free(&a);
}

static void bad_input_names_the_field(void **state)
{
    (void)state;
    expect_bad("confusion", "create", "{\"courseId\":\"c1\",\"lessonId\":\"l1\"}",
               "missing field videoTimestampSec");
    expect_bad("confusion", "create",
               "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":\"soon\"}",
               "videoTimestampSec");
    expect_bad("confusion", "create",
               "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":1,\"txt\":\"x\"}",
               "unknown field 'txt'");
    expect_bad("confusion", "create",
               "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"videoTimestampSec\":1,"
               "\"userId\":\"teach-1\"}",
               "userId is set by the server");
    expect_bad("question", "create", "{\"courseId\":\"c1\",\"text\":\"x\",\"eventId\":\"e\"}",
               "eventId is set by the server");
    expect_bad("question", "create", "{\"courseId\":\"c 1\",\"text\":\"x\"}", "courseId");
    expect_bad("question", "create", "{\"courseId\":\"c1\",\"text\":\"\"}", "text");
    expect_bad("confusion", "update",
               "{\"courseId\":\"c1\",\"confusionId\":\"cf1\",\"resolved\":false}", "resolved");
    expect_bad("prompt", "update",
               "{\"courseId\":\"c1\",\"lessonId\":\"l1\",\"promptId\":\"p\",\"kind\":\"quiz\","
               "\"action\":\"maybe\"}",
               "action");
    expect_bad("notification", "update", "{\"notificationIds\":[]}", "notificationIds");
    /* 5,000 characters of text: over the 4,000 cap. */
    char *big = malloc(5200);
    strcpy(big, "{\"courseId\":\"c1\",\"text\":\"");
    size_t n = strlen(big);
    memset(big + n, 'x', 5000);
    strcpy(big + n + 5000, "\"}");
    expect_bad("question", "create", big, "text");
    free(big);

    edge_action a;
    char why[240] = "";
    json_t *p = json_object();
    assert_int_equal(
        edge_action_build(&a, "progress", "create", p, "u", "c", "i", NOW_MS, why, sizeof(why)),
        RT_ERR_NOT_FOUND);
    json_decref(p);
}

static void derived_ids_are_uuids(void **state)
{
    (void)state;
    char a[EDGE_EVENT_ID_MAX + 1], b[EDGE_EVENT_ID_MAX + 1];
    edge_derive_id(a, "x");
    edge_derive_id(b, "x");
    assert_string_equal(a, b);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '5'); /* version 5 */
    edge_derive_id(b, "y");
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(confusion_create),
        cmocka_unit_test(instructor_and_self_actions),
        cmocka_unit_test(progress_completed_emits_lesson_completed),
        cmocka_unit_test(bad_input_names_the_field),
        cmocka_unit_test(derived_ids_are_uuids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
