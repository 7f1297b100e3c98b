/*
 * notification-dispatcher under the NATS permissions of
 * deploy/nats/nats-server.conf, as deployed: nats-server runs that file's
 * authorization block (users and passwords from the environment), the
 * dispatcher connects as user "notification-dispatcher", Django and ws-edge
 * as theirs.
 *
 * Proves the dispatcher works end to end under its own permissions (streams
 * created or updated, its durable consumer created and bound again after a
 * restart, consumer info read for an unknown question, room publishes with
 * their acks, notify.v1.list answered to ws-edge, read receipts), with no
 * permission violation at all, and that the permissions bite: the user
 * "notification-dispatcher" may not publish events nor into course rooms.
 */
#include <pthread.h>
#include <unistd.h>

#include "notify_testutil.h"
#include "rt_alloc.h"

#define CONF_PATH RT_SOURCE_DIR "/deploy/nats/nats-server.conf"
#define PW_NOTIFY "pNotify0test4pw"

static rt_test_nats *nats;
static rt_test_pg *pg;
static notify_proc dispatcher;
/* The helpers of notify_testutil.h read nats/pg (to start the dispatcher),
 * js (events) and nc (requests, subscriptions): one "stack" per user. */
static rt_test_stack as_django, as_edge;
static natsSubscription *rooms;

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = rt_malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static natsStatus connect_as(rt_test_stack *st, const char *user, const char *password)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, rt_test_nats_url(nats));
    if (s == NATS_OK)
        s = natsOptions_SetUserInfo(opts, user, password);
    if (s == NATS_OK)
        s = natsConnection_Connect(&st->nc, opts);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&st->js, st->nc, NULL);
    natsOptions_Destroy(opts);
    st->nats = nats;
    st->pg = pg;
    return s;
}

static int setup(void **state)
{
    (void)state;
    char *conf = read_text(CONF_PATH);
    char *authz = conf ? strstr(conf, "\nauthorization {") : NULL;
    if (!authz) {
        fprintf(stderr, "no authorization block in %s\n", CONF_PATH);
        free(conf);
        return -1;
    }
    /* nats-server reads the passwords from its environment (inherited). */
    setenv("AUTH_NATS_PASSWORD", "pAuth0test1pw", 1);
    setenv("WS_EDGE_NATS_PASSWORD", "pEdge0test2pw", 1);
    setenv("ANALYTICS_AGGREGATOR_NATS_PASSWORD", "pAnalytics0test3pw", 1);
    setenv("NOTIFICATION_DISPATCHER_NATS_PASSWORD", PW_NOTIFY, 1);
    setenv("DJANGO_NATS_PASSWORD", "pDjango0test5pw", 1);
    rt_status s = rt_test_nats_start(&nats, authz);
    free(conf);
    if (s == RT_OK && (s = rt_test_pg_start(&pg)) == RT_OK && (s = rt_test_pg_migrate(pg)) == RT_OK)
        s = rt_test_pg_exec(pg, "INSERT INTO realtime.course_members (course_id, user_id, role)"
                                " VALUES ('pc', 'pc-1', 'student'), ('pc', 'pc-2', 'student'),"
                                " ('pc', 'pc-3', 'student')");
    if (s != RT_OK) {
        fprintf(stderr, "setup: %s\n", rt_error_message());
        return -1;
    }
    if (connect_as(&as_django, "django", "pDjango0test5pw") != NATS_OK ||
        connect_as(&as_edge, "ws-edge", "pEdge0test2pw") != NATS_OK) {
        fprintf(stderr, "clients: %s\n", nats_GetLastError(NULL));
        return -1;
    }
    const char *env[] = {"NATS_USER=notification-dispatcher", "NATS_PASSWORD=" PW_NOTIFY, NULL};
    if (notify_start(&dispatcher, &as_django, env) != RT_OK) {
        fprintf(stderr, "dispatcher as its NATS user: %s\n", rt_error_message());
        return -1;
    }
    rooms = notify_rooms_sub(&as_edge, "rtd.v1.room.user.>");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natsSubscription_Destroy(rooms);
    rt_test_proc_destroy(dispatcher.proc);
    rt_test_stack *clients[] = {&as_django, &as_edge};
    for (int i = 0; i < 2; i++) {
        jsCtx_Destroy(clients[i]->js);
        natsConnection_Destroy(clients[i]->nc);
    }
    rt_test_pg_destroy(pg);
    rt_test_nats_destroy(nats);
    return 0;
}

static void expect(const char *user, const char *type, const char *action)
{
    json_t *m = notify_room_next(rooms, 5000 * NOTIFY_SLOW);
    if (!m)
        fail_msg("no %s/%s for %s", type, action, user);
    char subject[96];
    snprintf(subject, sizeof(subject), "rtd.v1.room.user.%s", user);
    assert_string_equal(rt_json_str(m, "subject"), subject);
    assert_string_equal(rt_json_str(m, "type"), type);
    assert_string_equal(rt_json_str(m, "action"), action);
    json_decref(m);
}

static void no_violation_in_the_log(void)
{
    char *log = read_text(rt_test_proc_log_path(dispatcher.proc));
    assert_non_null(log);
    if (strstr(log, "Permissions Violation") || strstr(log, "nats async error") ||
        strstr(log, "not started") || strstr(log, "failed; re-subscribing"))
        fail_msg("the dispatcher hit its permissions:\n%s", log);
    free(log);
}

static void works_end_to_end_under_its_own_permissions(void **state)
{
    (void)state;
    notify_publish(&as_django, "evt.v1.question.created", D(question_created),
                   "{\"eventId\":\"qc-1\",\"questionId\":\"q-1\",\"courseId\":\"pc\","
                   "\"userId\":\"pc-1\",\"text\":\"why?\"}");
    notify_publish(&as_django, "evt.v1.question.answered", D(question_answered),
                   "{\"eventId\":\"qa-1\",\"questionId\":\"q-1\",\"courseId\":\"pc\","
                   "\"userId\":\"teacher\",\"answer\":\"because\"}");
    expect("pc-1", "question", "update");
    expect("pc-1", "notification", "create");
    notify_publish(&as_django, "evt.v1.course.updated", D(course_updated),
                   "{\"eventId\":\"cu-1\",\"courseId\":\"pc\",\"summary\":\"new\"}");
    for (int i = 0; i < 3; i++) {
        json_t *m = notify_room_next(rooms, 5000 * NOTIFY_SLOW);
        assert_non_null(m);
        assert_string_equal(notify_payload_str(m, "kind"), "course_updated");
        json_decref(m);
    }

    /* ws-edge asks for a user's list, and relays a read receipt. */
    char code[8];
    Unpuzzle__Rt__V1__NotificationList *list = notify_list(&as_edge, "pc-1", true, 0, NULL, code);
    assert_string_equal(code, "");
    assert_int_equal(list->n_notifications, 2);
    char *ids[2] = {strdup(list->notifications[0]->notification_id),
                    strdup(list->notifications[1]->notification_id)};
    unpuzzle__rt__v1__notification_list__free_unpacked(list, NULL);
    notify_publish(&as_edge, "evt.v1.notification.read", D(notifications_read),
                   "{\"eventId\":\"rd-1\",\"userId\":\"pc-1\",\"notificationIds\":[\"%s\",\"%s\"]}",
                   ids[0], ids[1]);
    expect("pc-1", "notification", "update");
    free(ids[0]);
    free(ids[1]);

    /* Consumer info (an unknown question is told from a late one). */
    notify_publish(&as_django, "evt.v1.question.answered", D(question_answered),
                   "{\"eventId\":\"qa-2\",\"questionId\":\"q-none\",\"courseId\":\"pc\","
                   "\"userId\":\"teacher\",\"answer\":\"?\"}");
    int64_t until = rt_time_now_ms() + 10000 * NOTIFY_SLOW;
    while (notify_metric(&dispatcher, "unpuzzle_notify_events_total{outcome=\"unknown_thread\"}") <
           1) {
        if (rt_time_now_ms() > until)
            fail_msg("unknown question never settled");
        notify_sleep_ms(50);
    }

    /* Restarted: binds to the existing durable consumer. */
    assert_int_equal(rt_test_proc_stop(dispatcher.proc, SIGTERM, 10000, NULL), RT_OK);
    no_violation_in_the_log();
    rt_test_proc_destroy(dispatcher.proc);
    const char *env[] = {"NATS_USER=notification-dispatcher", "NATS_PASSWORD=" PW_NOTIFY, NULL};
    assert_int_equal(notify_start(&dispatcher, &as_django, env), RT_OK);
    notify_publish(&as_django, "evt.v1.notification.requested", D(notification_requested),
                   "{\"eventId\":\"nr-1\",\"userId\":\"pc-2\",\"title\":\"after restart\"}");
    expect("pc-2", "notification", "create");
    assert_null(notify_room_next(rooms, 300));
    no_violation_in_the_log();
}

typedef struct violations {
    pthread_mutex_t lock;
    int count;
} violations;

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
    violations *v = arg;
    const char *text = NULL;
    (void)sub;
    (void)err;
    natsConnection_GetLastError(nc, &text);
    pthread_mutex_lock(&v->lock);
    if (text && strstr(text, "Permissions Violation"))
        v->count++;
    pthread_mutex_unlock(&v->lock);
}

static void the_dispatcher_user_may_not_publish_events_or_course_rooms(void **state)
{
    (void)state;
    violations v = {.count = 0};
    pthread_mutex_init(&v.lock, NULL);
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    assert_int_equal(natsOptions_Create(&opts), NATS_OK);
    natsOptions_SetURL(opts, rt_test_nats_url(nats));
    natsOptions_SetUserInfo(opts, "notification-dispatcher", PW_NOTIFY);
    natsOptions_SetErrorHandler(opts, on_error, &v);
    assert_int_equal(natsConnection_Connect(&nc, opts), NATS_OK);
    natsOptions_Destroy(opts);
    natsConnection_PublishString(nc, "evt.v1.course.updated", "x");
    natsConnection_Flush(nc);
    natsConnection_PublishString(nc, "rt.v1.room.course.pc", "x");
    natsConnection_Flush(nc);
    int64_t until = rt_time_now_ms() + 3000;
    for (;;) {
        pthread_mutex_lock(&v.lock);
        int n = v.count;
        pthread_mutex_unlock(&v.lock);
        if (n >= 2)
            break;
        if (rt_time_now_ms() > until)
            fail_msg("expected 2 permission violations, saw %d", n);
        notify_sleep_ms(20);
    }
    natsConnection_Destroy(nc);
    pthread_mutex_destroy(&v.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(works_end_to_end_under_its_own_permissions),
        cmocka_unit_test(the_dispatcher_user_may_not_publish_events_or_course_rooms),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
