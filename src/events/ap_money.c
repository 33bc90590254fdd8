/*
 * ap_money: carried fractions, revenue shares and budget caps (see ap_money.h).
 */
#include "ap_money.h"

int64_t ap_money_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int64_t ap_money_accrue(int64_t *carry_milli, int64_t cost_milli)
{
    int64_t total = *carry_milli + (cost_milli > 0 ? cost_milli : 0);
    *carry_milli = total % AP_MONEY_MILLI;
    return total / AP_MONEY_MILLI;
}

int64_t ap_money_share(int64_t *carry, int64_t amount_micros, int64_t share_ppm)
{
    if (amount_micros <= 0 || share_ppm <= 0)
        return 0;
    if (share_ppm > AP_MONEY_PPM)
        share_ppm = AP_MONEY_PPM;
    __int128 total = (__int128)amount_micros * share_ppm + *carry;
    *carry = (int64_t)(total % AP_MONEY_PPM);
    return (int64_t)(total / AP_MONEY_PPM);
}

static int64_t room(int64_t budget, int64_t spent)
{
    if (budget < 0)
        return INT64_MAX;
    return budget > spent ? budget - spent : 0;
}

int64_t ap_money_bill(struct ap_money_account *a, int64_t cost_milli, int64_t day,
                      int64_t budget_daily, int64_t budget_lifetime, bool *capped)
{
    if (capped)
        *capped = false;
    if (day > a->day) {
        a->day = day;
        a->day_spent = 0;
    }
    int64_t r1 = room(budget_daily, a->day_spent), r2 = room(budget_lifetime, a->life_spent);
    int64_t left = r1 < r2 ? r1 : r2;
    int64_t carry = a->carry_milli;
    int64_t due = ap_money_accrue(&carry, cost_milli);
    int64_t billed = due;
    if (due > left || (due == left && carry > 0)) {
        /* the budget is reached: bill what is left, drop the fraction that can never be billed */
        billed = due < left ? due : left;
        a->unbilled_micros += due - billed;
        carry = 0;
        if (capped)
            *capped = true;
    }
    a->carry_milli = carry;
    a->day_spent += billed;
    a->life_spent += billed;
    return billed;
}

int64_t ap_money_ecpm(int64_t spend_micros, int64_t impressions)
{
    if (impressions <= 0)
        return 0;
    return (int64_t)((__int128)spend_micros * 1000 / impressions);
}
