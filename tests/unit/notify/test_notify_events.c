/*
 * notify_events: which events the dispatcher acts on and how (recipients,
 * text), and every reason an event is refused (bad ids, text that is not
 * UTF-8 or too long, links that are not app-relative, unknown currencies,
 * empty recipients) — each naming the field. Also the small rules the
 * service applies: list limits, notification ids, amounts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notify_events.h"

#define E(name) Unpuzzle__Rt__V1__##name

static notify_plan plan;
static char why[256];

static rt_status make(const void *event)
{
    return notify_plan_make(&plan, (const ProtobufCMessage *)event, why, sizeof(why));
}

static void refused(const void *event, const char *field)
{
    assert_int_equal(make(event), RT_ERR_INVALID_ARG);
    if (!strstr(why, field))
        fail_msg("reason \"%s\" does not name %s", why, field);
}

static int release(void **state)
{
    (void)state;
    notify_plan_release(&plan);
    memset(&plan, 0, sizeof(plan));
    return 0;
}

static void subjects_map_to_the_events_the_dispatcher_reads(void **state)
{
    (void)state;
    assert_ptr_equal(notify_event_descriptor("evt.v1.question.answered"),
                     &unpuzzle__rt__v1__question_answered__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.confusion.resolved"),
                     &unpuzzle__rt__v1__confusion_resolved__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.notification.read"),
                     &unpuzzle__rt__v1__notifications_read__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.notification.requested"),
                     &unpuzzle__rt__v1__notification_requested__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.course.updated"),
                     &unpuzzle__rt__v1__course_updated__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.purchase.completed"),
                     &unpuzzle__rt__v1__purchase_completed__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.confusion.created"),
                     &unpuzzle__rt__v1__confusion_created__descriptor);
    assert_ptr_equal(notify_event_descriptor("evt.v1.question.created"),
                     &unpuzzle__rt__v1__question_created__descriptor);
    assert_null(notify_event_descriptor("evt.v1.progress.updated"));
    assert_null(notify_event_descriptor("evt.v1.enrollment.changed"));
    assert_null(notify_event_descriptor("evt.v1.question"));
    assert_null(notify_event_descriptor(NULL));
}

static void created_events_are_recorded(void **state)
{
    (void)state;
    E(QuestionCreated) q = UNPUZZLE__RT__V1__QUESTION_CREATED__INIT;
    q.event_id = "ev-1";
    q.question_id = "q-1";
    q.course_id = "c1";
    q.user_id = "stu-1";
    q.text = "why?";
    assert_int_equal(make(&q), RT_OK);
    assert_int_equal(plan.action, NOTIFY_RECORD_THREAD);
    assert_int_equal(plan.thread_kind, NOTIFY_THREAD_QUESTION);
    assert_string_equal(plan.thread_id, "q-1");
    assert_string_equal(plan.course_id, "c1");
    assert_string_equal(plan.lesson_id, "");
    assert_string_equal(plan.owner_id, "stu-1");
    assert_string_equal(notify_thread_kind_name(plan.thread_kind), "question");
    release(NULL);

    E(ConfusionCreated) c = UNPUZZLE__RT__V1__CONFUSION_CREATED__INIT;
    c.event_id = "ev-2";
    c.confusion_id = "cf-1";
    c.course_id = "c1";
    c.lesson_id = "l1";
    c.user_id = "stu-2";
    assert_int_equal(make(&c), RT_OK);
    assert_int_equal(plan.thread_kind, NOTIFY_THREAD_CONFUSION);
    assert_string_equal(plan.lesson_id, "l1");
    assert_string_equal(plan.owner_id, "stu-2");
    release(NULL);

    c.confusion_id = "cf.1"; /* a '.' would split a subject */
    refused(&c, "confusion_id");
    c.confusion_id = "cf-1";
    c.user_id = "";
    refused(&c, "user_id");
    c.user_id = "stu-2";
    c.lesson_id = "l 1";
    refused(&c, "lesson_id");
}

static void answered_goes_to_the_asker_named_or_recorded(void **state)
{
    (void)state;
    E(QuestionAnswered) a = UNPUZZLE__RT__V1__QUESTION_ANSWERED__INIT;
    a.event_id = "ev-3";
    a.question_id = "q-1";
    a.course_id = "c1";
    a.user_id = "teach-1";
    a.answer = "because";
    assert_int_equal(make(&a), RT_OK);
    assert_int_equal(plan.action, NOTIFY_TO_THREAD_OWNER);
    assert_string_equal(plan.owner_id, ""); /* ws-edge does not know it: looked up */
    assert_string_equal(plan.kind, "question_answered");
    assert_string_equal(plan.title, "Your question was answered");
    assert_string_equal(plan.body, "because");
    assert_string_equal(plan.link, "");
    release(NULL);

    a.asker_user_id = "stu-1";
    assert_int_equal(make(&a), RT_OK);
    assert_string_equal(plan.owner_id, "stu-1");
    release(NULL);

    a.asker_user_id = "stu 1";
    refused(&a, "asker_user_id");
    a.asker_user_id = "";
    a.answer = "\xc3\x28"; /* invalid UTF-8 */
    refused(&a, "answer");
}

static void resolved_goes_to_the_student_and_reopening_is_ignored(void **state)
{
    (void)state;
    E(ConfusionResolved) r = UNPUZZLE__RT__V1__CONFUSION_RESOLVED__INIT;
    r.event_id = "ev-4";
    r.confusion_id = "cf-1";
    r.course_id = "c1";
    r.user_id = "teach-1";
    r.resolved = true;
    r.response = "see 3:20";
    assert_int_equal(make(&r), RT_OK);
    assert_int_equal(plan.action, NOTIFY_TO_THREAD_OWNER);
    assert_int_equal(plan.thread_kind, NOTIFY_THREAD_CONFUSION);
    assert_string_equal(plan.kind, "confusion_resolved");
    assert_string_equal(plan.body, "see 3:20");
    release(NULL);

    r.resolved = false;
    assert_int_equal(make(&r), RT_OK);
    assert_int_equal(plan.action, NOTIFY_IGNORE);
    release(NULL);

    r.resolved = true;
    r.student_user_id = "bad/id";
    refused(&r, "student_user_id");
}

static void course_updates_go_to_every_student(void **state)
{
    (void)state;
    E(CourseUpdated) u = UNPUZZLE__RT__V1__COURSE_UPDATED__INIT;
    u.event_id = "ev-5";
    u.course_id = "c1";
    u.title = "Calculus I";
    u.summary = "New lesson on limits";
    assert_int_equal(make(&u), RT_OK);
    assert_int_equal(plan.action, NOTIFY_TO_STUDENTS);
    assert_string_equal(plan.course_id, "c1");
    assert_string_equal(plan.kind, "course_updated");
    assert_string_equal(plan.title, "Calculus I was updated");
    assert_string_equal(plan.body, "New lesson on limits");
    release(NULL);

    u.title = "";
    assert_int_equal(make(&u), RT_OK);
    assert_string_equal(plan.title, "A course you are enrolled in was updated");
    release(NULL);

    u.course_id = NULL;
    refused(&u, "course_id");
}

static void purchases_tell_the_instructors_the_amount(void **state)
{
    (void)state;
    E(PurchaseCompleted) p = UNPUZZLE__RT__V1__PURCHASE_COMPLETED__INIT;
    p.event_id = "ev-6";
    p.purchase_id = "pu-1";
    p.course_id = "c1";
    p.user_id = "buyer";
    p.amount_cents = 1999;
    p.currency = "USD";
    assert_int_equal(make(&p), RT_OK);
    assert_int_equal(plan.action, NOTIFY_TO_INSTRUCTORS);
    assert_string_equal(plan.kind, "revenue_update");
    assert_string_equal(plan.body, "Your course was purchased: 19.99 USD");
    release(NULL);

    p.currency = "usd";
    refused(&p, "currency");
}

static void requested_notifications_reach_a_user_or_a_course(void **state)
{
    (void)state;
    E(NotificationRequested) n = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__INIT;
    n.event_id = "ev-7";
    n.title = "Welcome";
    n.body = "Glad you are here";
    n.link = "/courses/c1";
    n.recipient_case = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_USER_ID;
    n.user_id = "stu-1";
    assert_int_equal(make(&n), RT_OK);
    assert_int_equal(plan.action, NOTIFY_TO_USER);
    assert_string_equal(plan.recipient, "stu-1");
    assert_string_equal(plan.kind, "announcement"); /* the default */
    assert_string_equal(plan.title, "Welcome");
    assert_string_equal(plan.link, "/courses/c1");
    release(NULL);

    n.kind = "live_session";
    n.recipient_case = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_COURSE_ID;
    n.course_id = "c1";
    assert_int_equal(make(&n), RT_OK);
    assert_int_equal(plan.action, NOTIFY_TO_STUDENTS);
    assert_string_equal(plan.course_id, "c1");
    assert_string_equal(plan.kind, "live_session");
    release(NULL);

    n.kind = "two words";
    refused(&n, "kind");
    n.kind = NULL;
    n.recipient_case = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT__NOT_SET;
    refused(&n, "recipient");
    n.recipient_case = UNPUZZLE__RT__V1__NOTIFICATION_REQUESTED__RECIPIENT_USER_ID;
    n.user_id = "";
    refused(&n, "user_id");
    n.user_id = "stu-1";
    n.title = "";
    refused(&n, "title");
    n.title = "Welcome";
    const char *bad_links[] = {"https://evil.example/x",
                               "//evil.example",
                               "javascript:alert(1)",
                               "/\\evil",
                               "/a b",
                               "/a\nb",
                               "courses/c1"};
    for (size_t i = 0; i < sizeof(bad_links) / sizeof(bad_links[0]); i++) {
        n.link = (char *)bad_links[i];
        refused(&n, "link");
    }
    n.link = "";
    char *long_body = malloc(4002);
    memset(long_body, 'x', 4001);
    long_body[4001] = '\0';
    n.body = long_body;
    refused(&n, "body");
    free(long_body);
}

static void read_receipts_keep_only_ids_this_service_makes(void **state)
{
    (void)state;
    E(NotificationsRead) r = UNPUZZLE__RT__V1__NOTIFICATIONS_READ__INIT;
    char *ids[] = {"12", "abc", "007", "3", "123456789012345678901"};
    r.event_id = "ev-8";
    r.user_id = "stu-1";
    r.notification_ids = ids;
    r.n_notification_ids = 5;
    assert_int_equal(make(&r), RT_OK);
    assert_int_equal(plan.action, NOTIFY_MARK_READ);
    assert_string_equal(plan.reader_id, "stu-1");
    assert_string_equal(plan.read_ids_array, "{12,3}");
    assert_int_equal(plan.n_read_ids, 2);
    release(NULL);

    char *none[] = {"x-1"};
    r.notification_ids = none;
    r.n_notification_ids = 1;
    assert_int_equal(make(&r), RT_OK);
    assert_string_equal(plan.read_ids_array, "{}");
    assert_int_equal(plan.n_read_ids, 0);
    release(NULL);

    r.n_notification_ids = 0;
    refused(&r, "notification_ids");
    r.n_notification_ids = 1;
    r.user_id = "";
    refused(&r, "user_id");
}

static void every_event_needs_an_id(void **state)
{
    (void)state;
    E(CourseUpdated) u = UNPUZZLE__RT__V1__COURSE_UPDATED__INIT;
    u.course_id = "c1";
    refused(&u, "event_id");
    u.event_id = "ev.1";
    refused(&u, "event_id");
    assert_int_equal(notify_plan_make(&plan, NULL, why, sizeof(why)), RT_ERR_INVALID_ARG);
}

static void other_events_are_ignored(void **state)
{
    (void)state;
    E(ProgressUpdated) p = UNPUZZLE__RT__V1__PROGRESS_UPDATED__INIT;
    p.event_id = "ev-9";
    assert_int_equal(make(&p), RT_OK);
    assert_int_equal(plan.action, NOTIFY_IGNORE);
}

static void text_limits_count_characters_not_bytes(void **state)
{
    (void)state;
    /* 4,000 two-byte characters are fine; one more is not. */
    char *text = malloc(2 * 4001 + 1);
    for (int i = 0; i < 4001; i++) {
        text[2 * i] = (char)0xc3;
        text[2 * i + 1] = (char)0xa9; /* é */
    }
    text[2 * 4000] = '\0';
    assert_true(notify_text_ok(text, 4000));
    text[2 * 4000] = (char)0xc3;
    text[2 * 4001] = '\0';
    assert_false(notify_text_ok(text, 4000));
    free(text);
    assert_true(notify_text_ok("", 0));
    assert_true(notify_text_ok(NULL, 0));
    assert_false(notify_text_ok("\xed\xa0\x80", 10)); /* a surrogate */
    assert_false(notify_text_ok("\xc0\xaf", 10));     /* overlong '/' */
    assert_true(notify_link_ok("/courses/c1?tab=lessons#l2"));
    assert_true(notify_link_ok(""));
    assert_true(notify_link_ok(NULL));
}

static void amounts_follow_the_currency_minor_unit(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(notify_format_amount(out, sizeof(out), 1999, "USD"), RT_OK);
    assert_string_equal(out, "19.99 USD");
    assert_int_equal(notify_format_amount(out, sizeof(out), 5, "EUR"), RT_OK);
    assert_string_equal(out, "0.05 EUR");
    assert_int_equal(notify_format_amount(out, sizeof(out), 1500, "JPY"), RT_OK);
    assert_string_equal(out, "1500 JPY");
    assert_int_equal(notify_format_amount(out, sizeof(out), 12345, "KWD"), RT_OK);
    assert_string_equal(out, "12.345 KWD");
    assert_int_equal(notify_format_amount(out, sizeof(out), -250, "USD"), RT_OK);
    assert_string_equal(out, "-2.50 USD");
    assert_int_equal(notify_format_amount(out, sizeof(out), INT64_MAX, "USD"), RT_ERR_INVALID_ARG);
    assert_int_equal(notify_format_amount(out, sizeof(out), 1, "US"), RT_ERR_INVALID_ARG);
    assert_int_equal(notify_format_amount(out, sizeof(out), 1, NULL), RT_ERR_INVALID_ARG);
}

static void list_limits_and_ids(void **state)
{
    (void)state;
    assert_int_equal(notify_list_limit(0), 50);
    assert_int_equal(notify_list_limit(1), 1);
    assert_int_equal(notify_list_limit(200), 200);
    assert_int_equal(notify_list_limit(201), 200);
    assert_int_equal(notify_list_limit(UINT32_MAX), 200);
    assert_true(notify_id_ok("1"));
    assert_true(notify_id_ok("123456789012345678"));
    assert_false(notify_id_ok("1234567890123456789")); /* beyond bigint's safe digits */
    assert_false(notify_id_ok("0"));
    assert_false(notify_id_ok("01"));
    assert_false(notify_id_ok("-1"));
    assert_false(notify_id_ok(""));
    assert_false(notify_id_ok(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(subjects_map_to_the_events_the_dispatcher_reads),
        cmocka_unit_test_teardown(created_events_are_recorded, release),
        cmocka_unit_test_teardown(answered_goes_to_the_asker_named_or_recorded, release),
        cmocka_unit_test_teardown(resolved_goes_to_the_student_and_reopening_is_ignored, release),
        cmocka_unit_test_teardown(course_updates_go_to_every_student, release),
        cmocka_unit_test_teardown(purchases_tell_the_instructors_the_amount, release),
        cmocka_unit_test_teardown(requested_notifications_reach_a_user_or_a_course, release),
        cmocka_unit_test_teardown(read_receipts_keep_only_ids_this_service_makes, release),
        cmocka_unit_test_teardown(every_event_needs_an_id, release),
        cmocka_unit_test_teardown(other_events_are_ignored, release),
        cmocka_unit_test(text_limits_count_characters_not_bytes),
        cmocka_unit_test(amounts_follow_the_currency_minor_unit),
        cmocka_unit_test(list_limits_and_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
