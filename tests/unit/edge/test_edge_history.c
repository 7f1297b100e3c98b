/* edge_history: the chain invariant (each entry continues the one before),
 * the cap, prepending older reads, and copying a range. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "edge_history.h"

static edge_msg *msg(uint64_t seq, uint64_t prev)
{
    return edge_msg_new("{}", 2, seq, prev, 0);
}

/* Pushes and drops the caller's reference. */
static void push(edge_history *h, uint64_t seq, uint64_t prev)
{
    edge_msg *m = msg(seq, prev);
    edge_history_push(h, m);
    edge_msg_unref(m);
}

static void expect_range(edge_history *h, uint64_t since, uint64_t until, const uint64_t *seqs,
                         size_t n)
{
    edge_msg **out = NULL;
    size_t got = 0, cap = 0;
    assert_int_equal(edge_history_copy(h, since, until, &out, &got, &cap), n);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i]->seq, seqs[i]);
        edge_msg_unref(out[i]);
    }
    free(out);
}

static void chain_and_floor(void **state)
{
    (void)state;
    edge_history h;
    uint64_t floor = 0;
    edge_history_init(&h, 8);
    assert_false(edge_history_floor(&h, &floor));
    push(&h, 5, 2);
    push(&h, 9, 5);
    push(&h, 12, 9);
    assert_true(edge_history_floor(&h, &floor));
    assert_int_equal(floor, 2);
    assert_int_equal(edge_history_last_seq(&h), 12);
    expect_range(&h, 5, 12, (uint64_t[]){9, 12}, 2);
    expect_range(&h, 2, 9, (uint64_t[]){5, 9}, 2);
    /* At or below the newest: ignored. */
    push(&h, 12, 9);
    push(&h, 7, 5);
    assert_int_equal(h.count, 3);
    /* A break in the chain starts a new one. */
    push(&h, 20, 15);
    assert_true(edge_history_floor(&h, &floor));
    assert_int_equal(floor, 15);
    assert_int_equal(h.count, 1);
    edge_history_free(&h);
}

static void cap_keeps_newest(void **state)
{
    (void)state;
    edge_history h;
    uint64_t floor = 0;
    edge_history_init(&h, 3);
    for (uint64_t s = 1; s <= 5; s++)
        push(&h, s, s - 1);
    assert_int_equal(h.count, 3);
    assert_true(edge_history_floor(&h, &floor));
    assert_int_equal(floor, 2);
    expect_range(&h, 0, 100, (uint64_t[]){3, 4, 5}, 3);
    edge_history_free(&h);
}

static void prepend_older_chain(void **state)
{
    (void)state;
    edge_history h;
    uint64_t floor = 0;
    edge_history_init(&h, 4);
    push(&h, 10, 8);
    edge_msg *older[] = {msg(4, 1), msg(6, 4), msg(8, 6)};
    edge_msg *wrong[] = {msg(7, 6)};
    edge_history_prepend(&h, wrong, 1); /* does not end at 8 */
    assert_int_equal(h.count, 1);
    edge_history_prepend(&h, older, 3);
    assert_int_equal(h.count, 4);
    assert_true(edge_history_floor(&h, &floor));
    assert_int_equal(floor, 1);
    expect_range(&h, 4, 10, (uint64_t[]){6, 8, 10}, 3);
    /* Full: a further prepend keeps the newest (nothing changes). */
    edge_msg *oldest[] = {msg(1, 0)};
    edge_history_prepend(&h, oldest, 1);
    assert_true(edge_history_floor(&h, &floor));
    assert_int_equal(floor, 1);
    for (size_t i = 0; i < 3; i++)
        edge_msg_unref(older[i]);
    edge_msg_unref(wrong[0]);
    edge_msg_unref(oldest[0]);
    /* Into an empty history any chain goes, newest kept. */
    edge_history_clear(&h);
    edge_msg *run[] = {msg(1, 0), msg(2, 1), msg(3, 2), msg(4, 3), msg(5, 4)};
    edge_history_prepend(&h, run, 5);
    assert_true(edge_history_floor(&h, &floor));
    assert_int_equal(floor, 1);
    assert_int_equal(edge_history_last_seq(&h), 5);
    for (size_t i = 0; i < 5; i++)
        edge_msg_unref(run[i]);
    edge_history_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chain_and_floor),
        cmocka_unit_test(cap_keeps_newest),
        cmocka_unit_test(prepend_older_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
