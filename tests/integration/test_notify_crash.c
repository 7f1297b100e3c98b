/*
 * notification-dispatcher under crashes and with replicas (real
 * nats-server, PostgreSQL and service binaries):
 *
 *   - a burst of events (notifications to users, course updates to 300
 *     students, answered questions) while the dispatcher is killed with
 *     SIGKILL at random moments and restarted: in the end every expected
 *     notification exists exactly once, is marked published, and reached
 *     its user's room exactly once (so did each answer) — nothing lost,
 *     nothing doubled, whether the kill fell before storing, between storing
 *     and publishing, or between publishing and acking;
 *   - two replicas share the one durable consumer: both process events,
 *     every notification is stored and delivered once;
 *   - the crash windows, set up exactly: a row stored but never published
 *     is published when its event comes again (redelivery) or, with no
 *     event, by the sweep; a row published but not marked (the crash right
 *     after the publish) is published again under the same Nats-Msg-Id and
 *     the ROOMS stream keeps one copy.
 */
#include "notify_messages.h"
#include "notify_testutil.h"

#define N_USERS 50
#define MID_STUDENTS 300
#define CHUNKS 6
#define PER_CHUNK 100

static rt_test_stack *stack;
static notify_proc replicas[2];
static natsSubscription *rooms;
static json_t *seen;       /* "<type>:<id>" -> times seen in a user room */
static long expected_rows; /* notifications the events must make */

static int setup(void **state)
{
    (void)state;
    if (rt_test_stack_start(&stack) != RT_OK ||
        rt_test_pg_exec(stack->pg, "INSERT INTO realtime.course_members (course_id, user_id, role)"
                                   " SELECT 'mid', 'mid-' || lpad(i::text, 3, '0'), 'student'"
                                   " FROM generate_series(0, 299) i;") != RT_OK) {
        fprintf(stderr, "setup: %s (%s)\n", rt_error_message(), rt_error_origin());
        return -1;
    }
    rooms = notify_rooms_sub(stack, "rtd.v1.room.user.>");
    seen = json_object();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natsSubscription_Destroy(rooms);
    json_decref(seen);
    for (int i = 0; i < 2; i++)
        rt_test_proc_destroy(replicas[i].proc);
    rt_test_stack_destroy(stack);
    return 0;
}

/* Moves what the rooms received into `seen`; returns after `quiet_ms`
 * without a message. */
static void collect(int quiet_ms)
{
    json_t *m;
    while ((m = notify_room_next(rooms, quiet_ms)) != NULL) {
        char key[160];
        const char *type = rt_json_str(m, "type");
        if (strcmp(type, "notification") == 0)
            snprintf(key, sizeof(key), "notification:%s", notify_payload_str(m, "notificationId"));
        else
            snprintf(key, sizeof(key), "%s:%s", type, rt_json_str(m, "eventId"));
        json_t *count = json_object_get(seen, key);
        json_object_set_new(seen, key, json_integer(count ? json_integer_value(count) + 1 : 1));
        json_decref(m);
    }
}

static void publish_chunk(int chunk)
{
    for (int i = 0; i < PER_CHUNK; i++) {
        int k = chunk * PER_CHUNK + i;
        notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                       "{\"eventId\":\"b-%d\",\"userId\":\"u-%d\",\"title\":\"burst %d\"}", k,
                       k % N_USERS, k);
        expected_rows++;
        if (i == PER_CHUNK / 2) {
            notify_publish(stack, "evt.v1.course.updated", D(course_updated),
                           "{\"eventId\":\"cu-%d\",\"courseId\":\"mid\",\"summary\":\"part %d\"}",
                           chunk, chunk);
            expected_rows += MID_STUDENTS;
        }
        if (i % 25 == 0) {
            notify_publish(stack, "evt.v1.question.created", D(question_created),
                           "{\"eventId\":\"qc-%d\",\"questionId\":\"q-%d\",\"courseId\":\"mid\","
                           "\"userId\":\"mid-%03d\",\"text\":\"why %d?\"}",
                           k, k, k % MID_STUDENTS, k);
            notify_publish(stack, "evt.v1.question.answered", D(question_answered),
                           "{\"eventId\":\"qa-%d\",\"questionId\":\"q-%d\",\"courseId\":\"mid\","
                           "\"userId\":\"teacher\",\"answer\":\"because %d\"}",
                           k, k, k);
            expected_rows++;
        }
    }
}

static void kill_at_random_moments_then_nothing_lost_nothing_doubled(void **state)
{
    (void)state;
    const char *env[] = {"NOTIFY_BATCH=16", NULL};
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    assert_int_equal(notify_start(&replicas[0], stack, env), RT_OK);
    int kills = 0;
    for (int chunk = 0; chunk < CHUNKS; chunk++) {
        publish_chunk(chunk);
        collect(1);
        if (chunk % 2 == 0) {
            /* Somewhere in the middle of processing the chunk. */
            notify_sleep_ms(rand() % 150);
            double stored = notify_metric(&replicas[0], "unpuzzle_notify_notifications_total");
            notify_kill(&replicas[0]);
            kills++;
            printf("kill %d after %g notifications stored by this run\n", kills, stored);
            assert_int_equal(notify_start(&replicas[0], stack, env), RT_OK);
        }
    }
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM realtime.notifications WHERE published");
    int64_t until = rt_time_now_ms() + 40000 * NOTIFY_SLOW;
    while (notify_sql_long(stack, "%s", sql) != expected_rows) {
        collect(1);
        if (rt_time_now_ms() > until)
            fail_msg("%ld of %ld notifications published (%ld stored)",
                     notify_sql_long(stack, "%s", sql), expected_rows,
                     notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"));
        notify_sleep_ms(100);
    }
    collect(1500); /* anything doubled would still be on its way */

    /* Stored exactly once per (event, recipient), all of them. */
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"),
                     expected_rows);
    assert_int_equal(notify_sql_long(stack, "SELECT count(DISTINCT (source_event_id, user_id))"
                                            " FROM realtime.notifications"),
                     expected_rows);
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"
                                            " WHERE source_event_id LIKE 'cu-%%'"),
                     CHUNKS * MID_STUDENTS);
    /* Delivered exactly once each. */
    long notifications = 0, answers = 0;
    const char *key;
    json_t *count;
    json_object_foreach(seen, key, count)
    {
        if (json_integer_value(count) != 1)
            fail_msg("%s reached its room %" JSON_INTEGER_FORMAT " times", key,
                     json_integer_value(count));
        if (strncmp(key, "notification:", 13) == 0)
            notifications++;
        else if (strncmp(key, "question:", 9) == 0)
            answers++;
    }
    printf("%d kills; %ld notifications and %ld answers delivered once each\n", kills,
           notifications, answers);
    assert_int_equal(notifications, expected_rows);
    assert_int_equal(answers, CHUNKS * (PER_CHUNK / 25));
}

static void two_replicas_share_the_work(void **state)
{
    (void)state;
    const char *env[] = {"NOTIFY_BATCH=4", NULL};
    if (!replicas[0].proc)
        assert_int_equal(notify_start(&replicas[0], stack, env), RT_OK);
    assert_int_equal(notify_start(&replicas[1], stack, env), RT_OK);
    const char *applied = "unpuzzle_notify_events_total{outcome=\"applied\"}";
    double before[2];
    for (int r = 0; r < 2; r++) {
        before[r] = notify_metric(&replicas[r], applied);
        if (before[r] < 0)
            before[r] = 0;
    }
    json_object_clear(seen);
    long rows0 = notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications");
    for (int k = 0; k < 400; k++) {
        notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                       "{\"eventId\":\"share-%d\",\"userId\":\"s-%d\",\"title\":\"shared %d\"}", k,
                       k % 40, k);
        if (k % 20 == 19) {
            collect(1);
            notify_sleep_ms(20);
        }
    }
    int64_t until = rt_time_now_ms() + 20000 * NOTIFY_SLOW;
    while (notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"
                                  " WHERE source_event_id LIKE 'share-%%' AND published") != 400) {
        collect(1);
        if (rt_time_now_ms() > until)
            fail_msg("shared events not all published");
        notify_sleep_ms(50);
    }
    collect(1000);
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"),
                     rows0 + 400);
    const char *key;
    json_t *count;
    long delivered = 0;
    json_object_foreach(seen, key, count)
    {
        assert_int_equal(json_integer_value(count), 1);
        delivered++;
    }
    assert_int_equal(delivered, 400);
    double a = notify_metric(&replicas[0], applied) - before[0];
    double b = notify_metric(&replicas[1], applied) - before[1];
    printf("replica A applied %g events, replica B %g\n", a, b);
    assert_true(a > 0 && b > 0);
    assert_true(a + b >= 400);
}

/* A row as a dispatcher killed right after storing it leaves it. */
static long insert_unpublished(const char *user, const char *event_id, int age_ms)
{
    char sql[512], *v = NULL;
    snprintf(sql, sizeof(sql),
             "INSERT INTO realtime.notifications (user_id, kind, title, source_event_id,"
             " created_at) VALUES ('%s', 'announcement', 'left behind', '%s',"
             " date_trunc('milliseconds', now()) - interval '%d milliseconds')"
             " RETURNING notification_id",
             user, event_id, age_ms);
    assert_int_equal(rt_test_pg_query_value(&v, stack->pg, sql), RT_OK);
    long id = strtol(v, NULL, 10);
    free(v);
    return id;
}

static void expect_once(long id, int timeout_ms)
{
    char key[64];
    snprintf(key, sizeof(key), "notification:%ld", id);
    int64_t until = rt_time_now_ms() + timeout_ms;
    while (!json_object_get(seen, key)) {
        if (rt_time_now_ms() > until)
            fail_msg("notification %ld never reached its room", id);
        collect(50);
    }
    collect(700);
    assert_int_equal(json_integer_value(json_object_get(seen, key)), 1);
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM realtime.notifications WHERE notification_id = %ld"
             " AND published",
             id);
    assert_true(notify_wait_sql(stack, 1, 5000, sql));
}

static double swept_total(void)
{
    double sum = 0;
    for (int r = 0; r < 2; r++) {
        double v =
            replicas[r].proc
                ? notify_metric(&replicas[r], "unpuzzle_notify_room_messages_total{path=\"sweep\"}")
                : 0;
        sum += v > 0 ? v : 0;
    }
    return sum;
}

static void stored_but_unpublished_rows_are_delivered_once(void **state)
{
    (void)state;
    const char *env[] = {"NOTIFY_BATCH=4", NULL};
    if (!replicas[0].proc)
        assert_int_equal(notify_start(&replicas[0], stack, env), RT_OK);
    json_object_clear(seen);

    /* Killed between storing and publishing; the event comes back. */
    long id = insert_unpublished("crash-1", "ev-crash-1", 0);
    notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                   "{\"eventId\":\"ev-crash-1\",\"userId\":\"crash-1\",\"title\":\"left behind\"}");
    expect_once(id, 5000 * NOTIFY_SLOW);
    assert_int_equal(notify_sql_long(stack, "SELECT count(*) FROM realtime.notifications"
                                            " WHERE source_event_id = 'ev-crash-1'"),
                     1);

    /* Its event is gone for good (acked by a replica that then lost the
     * publish): the sweep finds the row. */
    double swept = swept_total();
    id = insert_unpublished("crash-2", "ev-gone", 10000);
    expect_once(id, 5000 * NOTIFY_SLOW);
    assert_true(swept_total() > swept); /* by whichever replica's sweep */

    /* A row no room can hold (a bad id written by hand) blocks nothing. */
    long bad = insert_unpublished("bad.user", "ev-bad", 10000);
    id = insert_unpublished("crash-4", "ev-after-bad", 10000);
    expect_once(id, 5000 * NOTIFY_SLOW);
    char bad_sql[160];
    snprintf(bad_sql, sizeof(bad_sql),
             "SELECT count(*) FROM realtime.notifications WHERE notification_id = %ld"
             " AND published",
             bad);
    assert_true(notify_wait_sql(stack, 1, 5000, bad_sql));

    /* Killed between publishing and marking: the stream already has it. */
    id = insert_unpublished("crash-3", "ev-crash-3", 0);
    char *v = NULL, sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT (extract(epoch from created_at) * 1000000)::bigint"
             " FROM realtime.notifications WHERE notification_id = %ld",
             id);
    assert_int_equal(rt_test_pg_query_value(&v, stack->pg, sql), RT_OK);
    char idtext[24];
    snprintf(idtext, sizeof(idtext), "%ld", id);
    notify_row row = {.notification_id = idtext,
                      .user_id = "crash-3",
                      .kind = "announcement",
                      .title = "left behind",
                      .body = "",
                      .link = "",
                      .course_id = "",
                      .source_event_id = "ev-crash-3",
                      .created_us = strtoll(v, NULL, 10)};
    free(v);
    uint8_t *data = NULL;
    size_t len = 0;
    char msg_id[NOTIFY_MSG_ID_MAX];
    notify_pack_notification(&data, &len, &row);
    notify_msg_id_notification(msg_id, idtext);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    assert_int_equal(
        js_Publish(NULL, stack->js, "rt.v1.room.user.crash-3", data, (int)len, &po, NULL), NATS_OK);
    free(data);
    notify_publish(stack, "evt.v1.notification.requested", D(notification_requested),
                   "{\"eventId\":\"ev-crash-3\",\"userId\":\"crash-3\",\"title\":\"left behind\"}");
    expect_once(id, 5000 * NOTIFY_SLOW);
}

static void replicas_stop_cleanly(void **state)
{
    (void)state;
    /* Under ASan this is also the leak check of everything above. */
    for (int r = 0; r < 2; r++) {
        int status = -1;
        if (!replicas[r].proc)
            continue;
        assert_int_equal(rt_test_proc_stop(replicas[r].proc, SIGTERM, 10000, &status), RT_OK);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill_at_random_moments_then_nothing_lost_nothing_doubled),
        cmocka_unit_test(two_replicas_share_the_work),
        cmocka_unit_test(stored_but_unpublished_rows_are_delivered_once),
        cmocka_unit_test(replicas_stop_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
