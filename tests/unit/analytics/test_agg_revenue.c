/*
 * Revenue (spec/analytics.md): per currency, on-time purchases of end's UTC
 * day (today) and month, all purchases all-time, the purchase with the
 * latest occurred_at; duplicates by event_id are dropped long after the
 * lateness; the month rolls over with end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agg_testutil.h"

static const Unpuzzle__Rt__V1__CurrencyRevenue *
find_currency(const Unpuzzle__Rt__V1__CourseMetrics *m, const char *code)
{
    for (size_t i = 0; i < m->revenue->n_currencies; i++) {
        if (strcmp(m->revenue->currencies[i]->currency, code) == 0)
            return m->revenue->currencies[i];
    }
    fail_msg("no currency %s", code);
    return NULL;
}

static void assert_currency(const Unpuzzle__Rt__V1__CourseMetrics *m, const char *code,
                            int64_t today, int64_t month, int64_t all_time)
{
    const Unpuzzle__Rt__V1__CurrencyRevenue *c = find_currency(m, code);
    assert_int_equal(c->today_cents, today);
    assert_int_equal(c->month_cents, month);
    assert_int_equal(c->all_time_cents, all_time);
}

static void test_currencies(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    assert_int_equal(purchase(e, "p1", AT(-DAY(12)), "b1", 700, "USD"), AGG_APPLIED); /* Feb */
    assert_int_equal(purchase(e, "p2", AT(-DAY(8)), "b2", 1000, "USD"), AGG_APPLIED); /* Mar 2 */
    assert_int_equal(purchase(e, "p3", AT(HOUR(10)), "b3", 1999, "USD"), AGG_APPLIED);
    assert_int_equal(purchase(e, "p4", AT(HOUR(11)), "b4", 500, "EUR"), AGG_APPLIED);
    /* the same event again, hours later: dropped */
    assert_int_equal(purchase(e, "p2", AT(-DAY(8)), "b2", 1000, "USD"), AGG_DUPLICATE);
    assert_int_equal(purchase(e, "p3", AT(HOUR(10)), "b3", 1999, "USD"), AGG_DUPLICATE);
    assert_int_equal(purchase(e, "p6", AT(HOUR(12) - 1), "b6", 1200, "GBP"), AGG_APPLIED);
    assert_int_equal(hb(e, "h", AT(HOUR(12)), "u", "L1", 0), AGG_APPLIED);
    /* late: all-time only, even though it happened today */
    assert_int_equal(purchase(e, "p5", AT(HOUR(11) + 60), "b5", 250, "EUR"), AGG_APPLIED_LATE);
    /* a refund is a negative amount; p8 at the same time arrives later */
    assert_int_equal(purchase(e, "p7", AT(HOUR(12)), "b7", -100, "USD"), AGG_APPLIED);
    assert_int_equal(purchase(e, "p8", AT(HOUR(12)), "b8", 50, "USD"), AGG_APPLIED);

    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->revenue->n_currencies, 3);
    assert_string_equal(m->revenue->currencies[0]->currency, "EUR"); /* sorted */
    assert_string_equal(m->revenue->currencies[1]->currency, "GBP");
    assert_string_equal(m->revenue->currencies[2]->currency, "USD");
    assert_currency(m, "USD", 1949, 2949, 3649);
    assert_currency(m, "EUR", 500, 500, 750);
    assert_currency(m, "GBP", 1200, 1200, 1200);
    /* the latest occurred_at; at a tie the later arrival */
    const Unpuzzle__Rt__V1__LastPurchase *lp = m->revenue->last_purchase;
    assert_non_null(lp);
    assert_string_equal(lp->purchase_id, "b8");
    assert_string_equal(lp->user_id, "buyer");
    assert_int_equal(lp->amount_cents, 50);
    assert_string_equal(lp->currency, "USD");
    assert_int_equal(lp->occurred_at->seconds, 1773100800 + HOUR(12));
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

static void test_month_rolls_over_in_wall_mode(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_WALL, 3600, 120);
    g_wall_ms = AT(HOUR(1));
    assert_int_equal(purchase(e, "p1", AT(HOUR(1)), "b1", 100, "USD"), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_currency(m, "USD", 100, 100, 100);
    agg_metrics_free(m);
    /* The wall clock moves to the next day, then the next month: end
     * follows it (wall - lateness), and today/month follow end. */
    g_wall_ms = AT(DAY(1) + HOUR(1));
    m = metrics(e);
    assert_currency(m, "USD", 0, 100, 100);
    agg_metrics_free(m);
    g_wall_ms = AT(DAY(22) + 120); /* 2026-04-01T00:02:00 -> end 00:00:00 */
    m = metrics(e);
    assert_int_equal(m->end->seconds, 1773100800 + DAY(22));
    assert_string_equal(m->daily[29]->date, "2026-04-01");
    assert_currency(m, "USD", 0, 0, 100);
    agg_metrics_free(m);
    /* Pruning with that clock drops March's days and changes nothing. */
    agg_engine_prune(e, g_wall_ms);
    m = metrics(e);
    assert_currency(m, "USD", 0, 0, 100);
    assert_non_null(m->revenue->last_purchase);
    agg_metrics_free(m);
    g_wall_ms = T0_MS;
    agg_engine_destroy(e);
}

static void test_no_purchases(void **state)
{
    (void)state;
    agg_engine *e = new_engine(AGG_CLOCK_EVENT, 3600, 120);
    assert_int_equal(hb(e, "h", AT(0), "u", "L1", 0), AGG_APPLIED);
    Unpuzzle__Rt__V1__CourseMetrics *m = metrics(e);
    assert_int_equal(m->revenue->n_currencies, 0);
    assert_null(m->revenue->last_purchase);
    agg_metrics_free(m);
    agg_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_currencies),
        cmocka_unit_test(test_month_rolls_over_in_wall_mode),
        cmocka_unit_test(test_no_purchases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
