/* edge_presence: memberships counted per connection, collapsed to one entry
 * per (user, course), split into parts, sequence and changed flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "edge_presence.h"

typedef Unpuzzle__Rt__V1__PresenceUpdate update;

static size_t snap(edge_presence *p, update ***parts, size_t max)
{
    return edge_presence_snapshot(p, parts, max, "edge-a", "inst-1", 10000, 1700000000123);
}

static const Unpuzzle__Rt__V1__PresenceEntry *find(update *u, const char *user, const char *course)
{
    for (size_t i = 0; i < u->n_entries; i++)
        if (strcmp(u->entries[i]->user_id, user) == 0 &&
            strcmp(u->entries[i]->course_id, course) == 0)
            return u->entries[i];
    return NULL;
}

static void collapses_per_user_and_course(void **state)
{
    (void)state;
    edge_presence *p = edge_presence_create();
    update **parts = NULL;

    assert_false(edge_presence_changed(p));
    edge_presence_join(p, "u1", "c1", "", 1000);   /* course room */
    edge_presence_join(p, "u1", "c1", "l1", 2000); /* then a lesson */
    edge_presence_join(p, "u1", "c1", "l2", 3000); /* another tab: the newest lesson */
    edge_presence_join(p, "u1", "c2", "", 4000);
    edge_presence_join(p, "u2", "c1", "", 5000);
    assert_true(edge_presence_changed(p));

    assert_int_equal(snap(p, &parts, 100), 1);
    update *u = parts[0];
    assert_false(edge_presence_changed(p));
    assert_string_equal(u->edge_id, "edge-a");
    assert_string_equal(u->instance, "inst-1");
    assert_int_equal(u->sequence, 1);
    assert_int_equal(u->part, 0);
    assert_int_equal(u->parts, 1);
    assert_int_equal(u->interval_ms, 10000);
    assert_int_equal(u->sent_at->seconds, 1700000000);
    assert_int_equal(u->sent_at->nanos, 123000000);
    assert_int_equal(u->n_entries, 3);
    const Unpuzzle__Rt__V1__PresenceEntry *e = find(u, "u1", "c1");
    assert_non_null(e);
    assert_string_equal(e->lesson_id, "l2");
    assert_int_equal(e->since->seconds, 1); /* the earliest join still held */
    assert_string_equal(find(u, "u1", "c2")->lesson_id, "");
    assert_non_null(find(u, "u2", "c1"));
    edge_presence_free_parts(parts, 1);

    /* Leaving the newest lesson falls back to the other one. */
    edge_presence_leave(p, "u1", "c1", "l2");
    assert_true(edge_presence_changed(p));
    snap(p, &parts, 100);
    assert_string_equal(find(parts[0], "u1", "c1")->lesson_id, "l1");
    assert_int_equal(parts[0]->sequence, 2);
    edge_presence_free_parts(parts, 1);
    edge_presence_destroy(p);
}

static void counts_connections(void **state)
{
    (void)state;
    edge_presence *p = edge_presence_create();
    update **parts = NULL;

    /* Two devices in the same room: one leaving keeps the user present. */
    edge_presence_join(p, "u1", "c1", "", 1000);
    edge_presence_join(p, "u1", "c1", "", 2000);
    snap(p, &parts, 100);
    edge_presence_free_parts(parts, 1);
    edge_presence_leave(p, "u1", "c1", "");
    assert_false(edge_presence_changed(p));
    snap(p, &parts, 100);
    assert_int_equal(parts[0]->n_entries, 1);
    edge_presence_free_parts(parts, 1);
    edge_presence_leave(p, "u1", "c1", "");
    assert_true(edge_presence_changed(p));
    /* Empty: still one (empty) part, so the aggregator learns it. */
    assert_int_equal(snap(p, &parts, 100), 1);
    assert_int_equal(parts[0]->n_entries, 0);
    assert_int_equal(parts[0]->parts, 1);
    edge_presence_free_parts(parts, 1);
    /* A leave without a join changes nothing. */
    edge_presence_leave(p, "u9", "c9", "");
    assert_false(edge_presence_changed(p));
    edge_presence_destroy(p);
}

static void splits_into_parts(void **state)
{
    (void)state;
    edge_presence *p = edge_presence_create();
    update **parts = NULL;
    char user[16];
    for (int i = 0; i < 10; i++) {
        snprintf(user, sizeof(user), "u%02d", i);
        edge_presence_join(p, user, "c1", "", 1000 + i);
    }
    size_t n = snap(p, &parts, 4);
    assert_int_equal(n, 3);
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(parts[k]->part, k);
        assert_int_equal(parts[k]->parts, 3);
        assert_int_equal(parts[k]->sequence, 1);
        total += parts[k]->n_entries;
    }
    assert_int_equal(total, 10);
    assert_int_equal(parts[2]->n_entries, 2);
    edge_presence_free_parts(parts, n);
    edge_presence_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(collapses_per_user_and_course),
        cmocka_unit_test(counts_connections),
        cmocka_unit_test(splits_into_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
