/*
 * ap_money: carried fractions are exact, revenue shares reconcile, budgets are never exceeded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "events/ap_money.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void test_cpm_carry_is_exact(void **state)
{
    (void)state;
    /* 1,000,000 impressions at a CPM of 1.234567 cost exactly 1234.567 units */
    int64_t carry = 0, total = 0;
    for (int i = 0; i < 1000000; i++)
        total += ap_money_accrue(&carry, 1234567);
    assert_int_equal(total, 1234567000);
    assert_int_equal(carry, 0);

    /* a CPM of 0.000001 (1 micro per 1000 impressions): nothing until the 1000th */
    carry = 0;
    total = 0;
    for (int i = 1; i <= 2500; i++) {
        total += ap_money_accrue(&carry, 1);
        assert_int_equal(total, i / 1000);
        assert_int_equal(carry, i % 1000);
    }
    /* awkward prices: running totals always equal floor(n x price / 1000) */
    static const int64_t prices[] = {1, 7, 999, 1001, 333333, 2718281, 999999999};
    for (size_t p = 0; p < sizeof(prices) / sizeof(prices[0]); p++) {
        carry = 0;
        total = 0;
        for (int64_t n = 1; n <= 20011; n++) {
            total += ap_money_accrue(&carry, prices[p]);
            if (n % 997 == 0 || n == 20011)
                assert_int_equal(total, n * prices[p] / 1000);
        }
    }
    /* negative costs are ignored */
    carry = 5;
    assert_int_equal(ap_money_accrue(&carry, -100), 0);
    assert_int_equal(carry, 5);
}

static void test_share_reconciles(void **state)
{
    (void)state;
    static const int64_t ppm[] = {0, 1, 333333, 700000, 999999, 1000000};
    for (size_t k = 0; k < sizeof(ppm) / sizeof(ppm[0]); k++) {
        int64_t carry = 0, sum = 0, shares = 0;
        for (int i = 0; i < 50000; i++) {
            int64_t amount = (int64_t)(rnd() % 5000);
            sum += amount;
            shares += ap_money_share(&carry, amount, ppm[k]);
            assert_true(carry >= 0 && carry < AP_MONEY_PPM);
        }
        assert_int_equal(shares, (int64_t)((__int128)sum * ppm[k] / AP_MONEY_PPM));
    }
    int64_t carry = 0;
    assert_int_equal(ap_money_share(&carry, 100, 2000000), 100); /* clamped to 100% */
    assert_int_equal(ap_money_share(&carry, -5, 500000), 0);
}

static void test_bill_daily_budget(void **state)
{
    (void)state;
    struct ap_money_account a = {0};
    bool capped = false;
    /* budget 1000 micros a day, 300 micros per event: 300, 300, 300, then 100, then 0 */
    assert_int_equal(ap_money_bill(&a, 300000, 10, 1000, -1, &capped), 300);
    assert_false(capped);
    assert_int_equal(ap_money_bill(&a, 300000, 10, 1000, -1, &capped), 300);
    assert_int_equal(ap_money_bill(&a, 300000, 10, 1000, -1, &capped), 300);
    assert_int_equal(ap_money_bill(&a, 300000, 10, 1000, -1, &capped), 100);
    assert_true(capped);
    assert_int_equal(a.unbilled_micros, 200);
    assert_int_equal(ap_money_bill(&a, 300000, 10, 1000, -1, &capped), 0);
    assert_true(capped);
    assert_int_equal(a.day_spent, 1000);
    assert_int_equal(a.unbilled_micros, 500);
    /* an event stamped on the previous day counts against the current one */
    assert_int_equal(ap_money_bill(&a, 300000, 9, 1000, -1, &capped), 0);
    /* the next day starts at zero */
    assert_int_equal(ap_money_bill(&a, 300000, 11, 1000, -1, &capped), 300);
    assert_int_equal(a.day, 11);
    assert_int_equal(a.day_spent, 300);
    assert_int_equal(a.life_spent, 1300);
}

static void test_bill_lifetime_and_fractions(void **state)
{
    (void)state;
    struct ap_money_account a = {0};
    bool capped;
    /* CPM 1.5 micros per impression (1500 milli), lifetime 10 micros: the 7th impression
     * would make 10.5: it bills the last whole micro and the fraction is dropped */
    int64_t total = 0;
    for (int i = 0; i < 6; i++)
        total += ap_money_bill(&a, 1500, 1, -1, 10, &capped);
    assert_int_equal(total, 9);
    assert_int_equal(a.carry_milli, 0);
    total += ap_money_bill(&a, 1500, 1, -1, 10, &capped);
    assert_int_equal(total, 10);
    assert_true(capped);
    assert_int_equal(a.carry_milli, 0);
    assert_int_equal(ap_money_bill(&a, 1500, 2, -1, 10, &capped), 0); /* a new day: still out */
    assert_int_equal(a.life_spent, 10);
    /* no budget at all */
    struct ap_money_account b = {0};
    assert_int_equal(ap_money_bill(&b, 5000000, 1, -1, -1, &capped), 5000);
    assert_false(capped);
    /* a zero budget bills nothing */
    struct ap_money_account z = {0};
    assert_int_equal(ap_money_bill(&z, 5000, 1, 0, -1, &capped), 0);
    assert_true(capped);
}

/* Random sequences: spend never exceeds either budget, and is exact while under them. */
static void test_bill_never_exceeds(void **state)
{
    (void)state;
    for (int round = 0; round < 200; round++) {
        struct ap_money_account a = {0};
        int64_t daily = (int64_t)(rnd() % 100000), life = (int64_t)(rnd() % 400000);
        if (round % 5 == 0)
            daily = -1;
        if (round % 7 == 0)
            life = -1;
        int64_t day = 100, billed_total = 0, day_billed = 0;
        for (int i = 0; i < 3000; i++) {
            if (rnd() % 500 == 0) {
                day++;
                day_billed = 0;
            }
            int64_t cost = (int64_t)(rnd() % 3000000);
            int64_t b = ap_money_bill(&a, cost, day, daily, life, NULL);
            assert_true(b >= 0);
            billed_total += b;
            day_billed += b;
            if (daily >= 0)
                assert_true(day_billed <= daily);
            if (life >= 0)
                assert_true(billed_total <= life);
            assert_int_equal(a.life_spent, billed_total);
            assert_int_equal(a.day_spent, day_billed);
            assert_true(a.carry_milli >= 0 && a.carry_milli < AP_MONEY_MILLI);
        }
    }
}

static void test_helpers(void **state)
{
    (void)state;
    assert_int_equal(ap_money_floor_div(7, 3), 2);
    assert_int_equal(ap_money_floor_div(-7, 3), -3);
    assert_int_equal(ap_money_floor_div(-6, 3), -2);
    assert_int_equal(ap_money_floor_div(-1, 86400), -1);
    assert_int_equal(ap_money_ecpm(1234, 1000), 1234);
    assert_int_equal(ap_money_ecpm(1, 3), 333);
    assert_int_equal(ap_money_ecpm(5, 0), 0);
    assert_int_equal(ap_money_ecpm(INT64_MAX / 1000, 1000), INT64_MAX / 1000); /* no overflow */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpm_carry_is_exact),
        cmocka_unit_test(test_share_reconciles),
        cmocka_unit_test(test_bill_daily_budget),
        cmocka_unit_test(test_bill_lifetime_and_fractions),
        cmocka_unit_test(test_bill_never_exceeds),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
