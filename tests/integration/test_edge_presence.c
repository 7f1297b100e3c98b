/*
 * Presence from ws-edge (spec/subjects.md, Presence) against the real stack:
 * joining a course: or lesson: room puts the user in the edge's
 * PresenceUpdate on presence.v1.edge.<edge_id> at once, with the lesson's
 * course from auth; leaving takes them out; the full list is repeated every
 * PRESENCE_INTERVAL_MS; an edge that stops sends an empty update.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "edge_testutil.h"

static rt_test_stack *stack;
static natsSubscription *presence;

static int setup(void **state)
{
    (void)state;
    const char *env[] = {"PRESENCE_INTERVAL_MS=400", "WS_DRAIN_MS=300", NULL};
    if (!(stack = edge_test_stack(NULL)) ||
        natsConnection_SubscribeSync(&presence, stack->nc, "presence.v1.edge.>") != NATS_OK ||
        natsConnection_Flush(stack->nc) != NATS_OK || edge_test_start_edge(stack, env) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natsSubscription_Destroy(presence);
    rt_test_stack_destroy(stack);
    return 0;
}

typedef Unpuzzle__Rt__V1__PresenceUpdate update;

/* The next update of edges[0] (NULL after timeout_ms). */
static update *next_update(int timeout_ms)
{
    int64_t until = rt_time_now_ms() + timeout_ms;
    while (rt_time_now_ms() < until) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, presence, 100) != NATS_OK)
            continue;
        update *u = unpuzzle__rt__v1__presence_update__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        char subject[64];
        snprintf(subject, sizeof(subject), "presence.v1.edge.%s", stack->edges[0].edge_id);
        bool ours = strcmp(natsMsg_GetSubject(m), subject) == 0;
        natsMsg_Destroy(m);
        assert_non_null(u);
        if (ours)
            return u;
        unpuzzle__rt__v1__presence_update__free_unpacked(u, NULL);
    }
    return NULL;
}

static const Unpuzzle__Rt__V1__PresenceEntry *entry_of(update *u, const char *user,
                                                       const char *course)
{
    for (size_t i = 0; i < u->n_entries; i++)
        if (strcmp(u->entries[i]->user_id, user) == 0 &&
            strcmp(u->entries[i]->course_id, course) == 0)
            return u->entries[i];
    return NULL;
}

/* Waits for an update that satisfies `want` (entry of user/course with
 * lesson, or its absence when lesson is NULL); returns how long it took. */
static int64_t wait_for(const char *user, const char *course, const char *lesson)
{
    int64_t start = rt_time_now_ms();
    for (;;) {
        update *u = next_update(3000);
        if (!u)
            fail_msg("no presence update with %s in %s (lesson %s)", user, course,
                     lesson ? lesson : "(absent)");
        const Unpuzzle__Rt__V1__PresenceEntry *e = entry_of(u, user, course);
        bool ok = lesson ? e && strcmp(e->lesson_id, lesson) == 0 : e == NULL;
        if (ok) {
            assert_string_equal(u->edge_id, stack->edges[0].edge_id);
            assert_int_equal(u->parts, 1);
            assert_int_equal(u->interval_ms, 400);
            assert_true(u->instance[0] != '\0');
            if (e)
                assert_true(e->since->seconds > 0);
        }
        unpuzzle__rt__v1__presence_update__free_unpacked(u, NULL);
        if (ok)
            return rt_time_now_ms() - start;
    }
}

static void join_and_leave_show_at_once(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-1");
    json_decref(ws_join(ws, "s1", "course:c1"));
    assert_true(wait_for("stu-1", "c1", "") < 1000);
    /* A lesson room: its course comes from auth. */
    json_decref(ws_join(ws, "s2", "lesson:l2"));
    assert_true(wait_for("stu-1", "c1", "l2") < 1000);
    /* Not course rooms: no presence. */
    json_decref(ws_join(ws, "s3", "user:stu-1"));
    rt_testws_destroy(ws);
    assert_true(wait_for("stu-1", "c1", NULL) < 1000);
}

static void repeated_every_interval(void **state)
{
    (void)state;
    rt_testws *ws = ws_login(stack->edges[0].port, "stu-3");
    json_decref(ws_join(ws, "s1", "course:c2"));
    wait_for("stu-3", "c2", "");
    /* Nothing changes: the full list still comes, with growing sequence. */
    update *a = next_update(1500), *b = next_update(1500);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(b->sequence > a->sequence);
    assert_non_null(entry_of(b, "stu-3", "c2"));
    unpuzzle__rt__v1__presence_update__free_unpacked(a, NULL);
    unpuzzle__rt__v1__presence_update__free_unpacked(b, NULL);

    /* An edge that stops says nobody is there any more. */
    assert_int_equal(rt_test_proc_stop(stack->edges[0].proc, SIGTERM, 20000, NULL), RT_OK);
    update *last = NULL, *u;
    while ((u = next_update(1000))) {
        if (last)
            unpuzzle__rt__v1__presence_update__free_unpacked(last, NULL);
        last = u;
    }
    assert_non_null(last);
    assert_int_equal(last->n_entries, 0);
    unpuzzle__rt__v1__presence_update__free_unpacked(last, NULL);
    rt_testws_destroy(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_and_leave_show_at_once),
        cmocka_unit_test(repeated_every_interval),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
