/*
 * auth_cache: roles and room decisions are answered until they expire,
 * invalidations (drop_user, drop_rooms_with_prefix) forget them at once and
 * make decisions computed before them unstorable (generation rule), each
 * user keeps at most 8 rooms (the oldest goes), and max_users bounds memory.
 * Expiry times are on the monotonic clock, as the service uses them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "auth_cache.h"
#include "rt_time.h"

#define ROLE(x) UNPUZZLE__RT__V1__ROLE__ROLE_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x

static const uint64_t SEC = 1000000000ull;

static const auth_decision ALLOWED = {.allowed = true, .reason = DENY(UNSPECIFIED)};
static const auth_decision NOT_MEMBER = {.allowed = false, .reason = DENY(NOT_MEMBER)};

static auth_cache *new_cache(size_t max_users)
{
    auth_cache *c = NULL;
    assert_int_equal(auth_cache_create(&c, max_users), RT_OK);
    assert_non_null(c);
    return c;
}

static bool has_decision(auth_cache *c, const char *user, const char *room, uint64_t now)
{
    auth_decision d = {.allowed = false, .reason = DENY(INTERNAL)};
    return auth_cache_get_decision(c, user, room, &d, now);
}

static void test_role_ttl(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    auth_role role = ROLE(UNSPECIFIED);
    bool from_db = false;

    assert_false(auth_cache_get_role(c, "u1", &role, &from_db, now));
    assert_int_equal(role, ROLE(UNSPECIFIED)); /* untouched on a miss */

    auth_cache_put_role(c, "u1", ROLE(ADMIN), true, now + 10 * SEC, auth_cache_generation(c));
    auth_cache_put_role(c, "u2", ROLE(INSTRUCTOR), false, now + 10 * SEC, auth_cache_generation(c));
    assert_int_equal(auth_cache_users(c), 2);

    assert_true(auth_cache_get_role(c, "u1", &role, &from_db, now));
    assert_int_equal(role, ROLE(ADMIN));
    assert_true(from_db);
    assert_true(auth_cache_get_role(c, "u2", &role, &from_db, now + 10 * SEC - 1));
    assert_int_equal(role, ROLE(INSTRUCTOR));
    assert_false(from_db);
    /* Expired at exactly expires_ns. */
    assert_false(auth_cache_get_role(c, "u1", &role, &from_db, now + 10 * SEC));
    assert_false(auth_cache_get_role(c, "u1", &role, &from_db, now + 11 * SEC));

    /* A new put replaces the old answer. */
    auth_cache_put_role(c, "u1", ROLE(STUDENT), true, now + 20 * SEC, auth_cache_generation(c));
    assert_true(auth_cache_get_role(c, "u1", &role, &from_db, now + 15 * SEC));
    assert_int_equal(role, ROLE(STUDENT));
    assert_int_equal(auth_cache_users(c), 2);
    auth_cache_destroy(c);
    auth_cache_destroy(NULL);
}

static void test_decision_ttl(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    auth_decision d = {.allowed = false, .reason = DENY(INTERNAL)};

    assert_false(auth_cache_get_decision(c, "u1", "course:1", &d, now));
    auth_cache_put_decision(c, "u1", "course:1", ALLOWED, now + 5 * SEC, g);
    auth_cache_put_decision(c, "u1", "course:2", NOT_MEMBER, now + 5 * SEC, g);
    auth_cache_put_decision(c, "u2", "course:1", NOT_MEMBER, now + 5 * SEC, g);

    assert_true(auth_cache_get_decision(c, "u1", "course:1", &d, now));
    assert_true(d.allowed);
    assert_int_equal(d.reason, DENY(UNSPECIFIED));
    assert_true(auth_cache_get_decision(c, "u1", "course:2", &d, now + 5 * SEC - 1));
    assert_false(d.allowed);
    assert_int_equal(d.reason, DENY(NOT_MEMBER));
    /* Per user: u2's answer for course:1 is its own. */
    assert_true(auth_cache_get_decision(c, "u2", "course:1", &d, now));
    assert_false(d.allowed);
    /* Rooms are compared exactly. */
    assert_false(has_decision(c, "u1", "course:10", now));
    assert_false(has_decision(c, "u1", "course:", now));
    assert_false(has_decision(c, "u3", "course:1", now));
    /* Expiry. */
    assert_false(has_decision(c, "u1", "course:1", now + 5 * SEC));
    /* A decision does not make a role appear. */
    auth_role role;
    bool from_db;
    assert_false(auth_cache_get_role(c, "u1", &role, &from_db, now));
    auth_cache_destroy(c);
}

static void test_drop_user(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    auth_role role;
    bool from_db;

    auth_cache_put_role(c, "u1", ROLE(STUDENT), true, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u1", "course:1", ALLOWED, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u1", "lesson:9", ALLOWED, now + 60 * SEC, g);
    auth_cache_put_role(c, "u2", ROLE(STUDENT), true, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u2", "course:1", ALLOWED, now + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 2);

    auth_cache_drop_user(c, "u1");
    assert_true(auth_cache_generation(c) > g);
    assert_false(auth_cache_get_role(c, "u1", &role, &from_db, now));
    assert_false(has_decision(c, "u1", "course:1", now));
    assert_false(has_decision(c, "u1", "lesson:9", now));
    assert_int_equal(auth_cache_users(c), 1);
    /* Others are untouched. */
    assert_true(auth_cache_get_role(c, "u2", &role, &from_db, now));
    assert_true(has_decision(c, "u2", "course:1", now));

    /* Dropping a user the cache does not hold still counts as an invalidation. */
    uint64_t g2 = auth_cache_generation(c);
    auth_cache_drop_user(c, "nobody");
    assert_true(auth_cache_generation(c) > g2);
    assert_int_equal(auth_cache_users(c), 1);
    auth_cache_destroy(c);
}

static void test_drop_rooms_with_prefix(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    auth_role role;
    bool from_db;

    auth_cache_put_role(c, "u1", ROLE(INSTRUCTOR), true, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u1", "lesson:1", ALLOWED, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u1", "course:1", ALLOWED, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u2", "lesson:2", NOT_MEMBER, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u2", "user:u2", ALLOWED, now + 60 * SEC, g);

    auth_cache_drop_rooms_with_prefix(c, "lesson:");
    assert_true(auth_cache_generation(c) > g);
    assert_false(has_decision(c, "u1", "lesson:1", now));
    assert_false(has_decision(c, "u2", "lesson:2", now));
    assert_true(has_decision(c, "u1", "course:1", now));
    assert_true(has_decision(c, "u2", "user:u2", now));
    assert_true(auth_cache_get_role(c, "u1", &role, &from_db, now));
    assert_int_equal(role, ROLE(INSTRUCTOR));

    /* New lesson decisions can be stored again afterwards. */
    g = auth_cache_generation(c);
    auth_cache_put_decision(c, "u1", "lesson:1", NOT_MEMBER, now + 60 * SEC, g);
    assert_true(has_decision(c, "u1", "lesson:1", now));
    auth_cache_destroy(c);
}

static void test_generation_rule(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    auth_role role;
    bool from_db;

    /* A decision computed before an invalidation is not stored ... */
    uint64_t g = auth_cache_generation(c);
    auth_cache_drop_user(c, "u1");
    auth_cache_put_decision(c, "u1", "course:1", ALLOWED, now + 60 * SEC, g);
    assert_false(has_decision(c, "u1", "course:1", now));
    auth_cache_put_role(c, "u1", ROLE(ADMIN), true, now + 60 * SEC, g);
    assert_false(auth_cache_get_role(c, "u1", &role, &from_db, now));
    assert_int_equal(auth_cache_users(c), 0);

    /* ... whichever invalidation it was, and about whichever user. */
    g = auth_cache_generation(c);
    auth_cache_drop_rooms_with_prefix(c, "lesson:");
    auth_cache_put_decision(c, "u7", "course:1", ALLOWED, now + 60 * SEC, g);
    assert_false(has_decision(c, "u7", "course:1", now));
    g = auth_cache_generation(c);
    auth_cache_drop_user(c, "someone-else");
    auth_cache_put_role(c, "u7", ROLE(ADMIN), true, now + 60 * SEC, g);
    assert_false(auth_cache_get_role(c, "u7", &role, &from_db, now));

    /* A stale put must not replace a fresher stored answer either. */
    g = auth_cache_generation(c);
    auth_cache_put_decision(c, "u1", "course:1", NOT_MEMBER, now + 60 * SEC, g);
    uint64_t stale = g;
    auth_cache_drop_user(c, "other");
    auth_cache_put_decision(c, "u1", "course:1", ALLOWED, now + 60 * SEC, stale);
    auth_decision d;
    assert_true(auth_cache_get_decision(c, "u1", "course:1", &d, now));
    assert_false(d.allowed);

    /* With the current generation it is stored. */
    g = auth_cache_generation(c);
    auth_cache_put_decision(c, "u1", "course:2", ALLOWED, now + 60 * SEC, g);
    assert_true(has_decision(c, "u1", "course:2", now));
    /* A future generation is not the current one either. */
    auth_cache_put_decision(c, "u1", "course:3", ALLOWED, now + 60 * SEC, g + 1);
    assert_false(has_decision(c, "u1", "course:3", now));
    auth_cache_destroy(c);
}

static void test_room_cap_replaces_oldest(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    char room[32];

    /* Written one after another with the same TTL: room i expires at +i. */
    for (int i = 0; i < 8; i++) {
        snprintf(room, sizeof(room), "course:%d", i);
        auth_cache_put_decision(c, "u1", room, ALLOWED, now + 60 * SEC + (uint64_t)i, g);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(room, sizeof(room), "course:%d", i);
        assert_true(has_decision(c, "u1", room, now));
    }
    /* A ninth room replaces the oldest (course:0) only. */
    auth_cache_put_decision(c, "u1", "course:8", ALLOWED, now + 60 * SEC + 8, g);
    assert_false(has_decision(c, "u1", "course:0", now));
    for (int i = 1; i <= 8; i++) {
        snprintf(room, sizeof(room), "course:%d", i);
        if (!has_decision(c, "u1", room, now))
            fail_msg("%s evicted, want course:0 only", room);
    }
    /* Re-storing a room refreshes it in place (no duplicate slot) ... */
    auth_cache_put_decision(c, "u1", "course:1", NOT_MEMBER, now + 60 * SEC + 9, g);
    /* ... so the next newcomer evicts course:2, now the oldest. */
    auth_cache_put_decision(c, "u1", "course:9", ALLOWED, now + 60 * SEC + 10, g);
    assert_false(has_decision(c, "u1", "course:2", now));
    auth_decision d;
    assert_true(auth_cache_get_decision(c, "u1", "course:1", &d, now));
    assert_false(d.allowed);
    for (int i = 3; i <= 9; i++) {
        snprintf(room, sizeof(room), "course:%d", i);
        if (!has_decision(c, "u1", room, now))
            fail_msg("%s evicted, want course:2 only", room);
    }
    /* Other users are unaffected by u1's cap. */
    auth_cache_put_decision(c, "u2", "course:0", ALLOWED, now + 60 * SEC, g);
    assert_true(has_decision(c, "u2", "course:0", now));
    auth_cache_destroy(c);
}

static void test_room_cap_uses_freed_slots(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    char room[32];

    for (int i = 0; i < 4; i++) {
        snprintf(room, sizeof(room), "course:%d", i);
        auth_cache_put_decision(c, "u1", room, ALLOWED, now + 60 * SEC + (uint64_t)i, g);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(room, sizeof(room), "lesson:%d", i);
        auth_cache_put_decision(c, "u1", room, ALLOWED, now + 60 * SEC + 4 + (uint64_t)i, g);
    }
    auth_cache_drop_rooms_with_prefix(c, "lesson:");
    g = auth_cache_generation(c);
    /* Four new lesson decisions go where the dropped ones were: no course
     * decision is evicted while a slot is free. */
    for (int i = 10; i < 14; i++) {
        snprintf(room, sizeof(room), "lesson:%d", i);
        auth_cache_put_decision(c, "u1", room, ALLOWED, now + 60 * SEC + 20 + (uint64_t)i, g);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(room, sizeof(room), "course:%d", i);
        if (!has_decision(c, "u1", room, now))
            fail_msg("%s evicted while slots were free", room);
        snprintf(room, sizeof(room), "lesson:%d", i + 10);
        assert_true(has_decision(c, "u1", room, now));
    }
    auth_cache_destroy(c);
}

static void test_too_long_keys_ignored(void **state)
{
    (void)state;
    auth_cache *c = new_cache(16);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    char long_user[RT_ID_MAX + 2], long_room[RT_ROOM_NAME_MAX + 1];
    memset(long_user, 'u', sizeof(long_user) - 1);
    long_user[sizeof(long_user) - 1] = '\0';
    memset(long_room, 'r', sizeof(long_room) - 1);
    long_room[sizeof(long_room) - 1] = '\0';

    auth_cache_put_role(c, long_user, ROLE(ADMIN), true, now + 60 * SEC, g);
    auth_cache_put_decision(c, long_user, "course:1", ALLOWED, now + 60 * SEC, g);
    auth_cache_put_decision(c, "u1", long_room, ALLOWED, now + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 0);
    /* A truncated key must never answer for the long one. */
    long_user[RT_ID_MAX] = '\0';
    assert_false(has_decision(c, long_user, "course:1", now));
    auth_cache_destroy(c);
}

static void test_max_users_sweeps_then_clears(void **state)
{
    (void)state;
    auth_cache *c = new_cache(4);
    uint64_t now = rt_time_mono_ns();
    uint64_t g = auth_cache_generation(c);
    char user[16];
    auth_role role;
    bool from_db;

    /* Four users whose entries have already expired. */
    for (int i = 0; i < 4; i++) {
        snprintf(user, sizeof(user), "old%d", i);
        auth_cache_put_role(c, user, ROLE(STUDENT), true, now - 1, g);
    }
    assert_int_equal(auth_cache_users(c), 4);
    /* A fifth user: the sweep removes the expired ones. */
    uint64_t later = rt_time_mono_ns();
    auth_cache_put_role(c, "new0", ROLE(STUDENT), true, later + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 1);
    assert_true(auth_cache_get_role(c, "new0", &role, &from_db, later));

    /* A user with a live decision (role expired) survives a sweep. */
    auth_cache_put_decision(c, "new1", "course:1", ALLOWED, later + 60 * SEC, g);
    auth_cache_put_role(c, "new2", ROLE(STUDENT), true, later - 1, g);
    auth_cache_put_role(c, "new3", ROLE(STUDENT), true, later + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 4);
    auth_cache_put_role(c, "new4", ROLE(STUDENT), true, later + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 4); /* only new2 was expired */
    assert_true(has_decision(c, "new1", "course:1", later));
    assert_false(auth_cache_get_role(c, "new2", &role, &from_db, later));
    assert_true(auth_cache_get_role(c, "new0", &role, &from_db, later));

    /* Nothing expired: the cache is cleared and holds only the newcomer. */
    auth_cache_put_role(c, "new5", ROLE(ADMIN), true, later + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 1);
    assert_true(auth_cache_get_role(c, "new5", &role, &from_db, later));
    assert_int_equal(role, ROLE(ADMIN));
    assert_false(auth_cache_get_role(c, "new0", &role, &from_db, later));
    assert_false(has_decision(c, "new1", "course:1", later));

    /* Updating a user already held never evicts anyone. */
    auth_cache_put_role(c, "new5", ROLE(STUDENT), true, later + 60 * SEC, g);
    auth_cache_put_decision(c, "new5", "course:2", ALLOWED, later + 60 * SEC, g);
    assert_int_equal(auth_cache_users(c), 1);
    auth_cache_destroy(c);

    /* max_users 0 still holds one user rather than nothing or crashing. */
    c = new_cache(0);
    auth_cache_put_role(c, "a", ROLE(STUDENT), true, later + 60 * SEC, auth_cache_generation(c));
    auth_cache_put_role(c, "b", ROLE(STUDENT), true, later + 60 * SEC, auth_cache_generation(c));
    assert_int_equal(auth_cache_users(c), 1);
    assert_true(auth_cache_get_role(c, "b", &role, &from_db, later));
    auth_cache_destroy(c);
}

enum { SMOKE_THREADS = 4, SMOKE_ROUNDS = 3000, SMOKE_MAX_USERS = 32 };

typedef struct smoke_arg {
    auth_cache *cache;
    int index;
    int wrong_answers;
} smoke_arg;

static void *smoke_thread(void *p)
{
    smoke_arg *a = p;
    char user[16], room[32];
    for (int i = 0; i < SMOKE_ROUNDS; i++) {
        uint64_t now = rt_time_mono_ns();
        /* Users shared between threads; each user's answer is fixed, so a
         * hit must always return it. */
        int u = (i * 7 + a->index) % 48;
        snprintf(user, sizeof(user), "u%d", u);
        snprintf(room, sizeof(room), "%s:%d", (i & 1) ? "lesson" : "course", i % 11);
        uint64_t g = auth_cache_generation(a->cache);
        auth_decision want = {.allowed = u % 2 == 0,
                              .reason = u % 2 == 0 ? DENY(UNSPECIFIED) : DENY(NOT_MEMBER)};
        auth_cache_put_decision(a->cache, user, room, want, now + 60 * SEC, g);
        auth_cache_put_role(a->cache, user, ROLE(STUDENT), true, now + 60 * SEC, g);
        auth_decision got;
        if (auth_cache_get_decision(a->cache, user, room, &got, now) &&
            (got.allowed != want.allowed || got.reason != want.reason))
            a->wrong_answers++;
        if (i % 97 == 0)
            auth_cache_drop_user(a->cache, user);
        if (i % 251 == 0)
            auth_cache_drop_rooms_with_prefix(a->cache, "lesson:");
        if (auth_cache_users(a->cache) > SMOKE_MAX_USERS)
            a->wrong_answers++;
    }
    return NULL;
}

static void test_thread_safety_smoke(void **state)
{
    (void)state;
    auth_cache *c = new_cache(SMOKE_MAX_USERS);
    pthread_t threads[SMOKE_THREADS];
    smoke_arg args[SMOKE_THREADS];
    for (int i = 0; i < SMOKE_THREADS; i++) {
        args[i] = (smoke_arg){c, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, smoke_thread, &args[i]), 0);
    }
    for (int i = 0; i < SMOKE_THREADS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].wrong_answers, 0);
    }
    assert_true(auth_cache_users(c) <= SMOKE_MAX_USERS);
    /* Still consistent afterwards. */
    uint64_t now = rt_time_mono_ns();
    auth_cache_put_decision(c, "final", "course:1", ALLOWED, now + 60 * SEC,
                            auth_cache_generation(c));
    assert_true(has_decision(c, "final", "course:1", now));
    auth_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_ttl),
        cmocka_unit_test(test_decision_ttl),
        cmocka_unit_test(test_drop_user),
        cmocka_unit_test(test_drop_rooms_with_prefix),
        cmocka_unit_test(test_generation_rule),
        cmocka_unit_test(test_room_cap_replaces_oldest),
        cmocka_unit_test(test_room_cap_uses_freed_slots),
        cmocka_unit_test(test_too_long_keys_ignored),
        cmocka_unit_test(test_max_users_sweeps_then_clears),
        cmocka_unit_test(test_thread_safety_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
