/*
 * ap_money: exact integer money arithmetic for billing (docs/adr/0010-aggregator-and-money.md).
 *
 * Money is int64 micro-units of the account currency. Prices that are not whole micros per event
 * are carried, never rounded away:
 *   - a CPM price P (micros per 1000 impressions) costs P "milli-micros" (1/1000 micro) per
 *     impression; an account keeps the remainder below one micro (0..999 milli) and bills whole
 *     micros as they complete, so N impressions bill exactly floor(N x P / 1000) micros in total
 *     (1,000,000 impressions at CPM 1.234567 bill 1,234,567,000 micros);
 *   - a revenue share of S ppm on an amount A keeps the remainder of A x S below 10^6, so the
 *     shares of a sequence of amounts sum to floor(sum(A) x S / 10^6).
 *
 * Budgets: ap_money_bill charges one event against a campaign account with a daily budget (in
 * the advertiser's local day) and a lifetime budget. Spend never exceeds either budget: the part
 * of a charge past a budget is recorded as unbilled, and once a budget is exhausted the carried
 * fraction is dropped (it could never be billed).
 *
 * Pure functions on caller-owned structs: any thread, no allocation.
 */
#ifndef AP_MONEY_H
#define AP_MONEY_H

#include <stdbool.h>
#include <stdint.h>

#define AP_MONEY_MILLI 1000     /* milli-micros per micro */
#define AP_MONEY_PPM 1000000    /* parts per million */
#define AP_MONEY_UNLIMITED (-1) /* a budget that is not set */

/* One campaign's billing state (persisted by the aggregator in its transaction). */
struct ap_money_account {
    int64_t day;             /* advertiser-local day number (days since 1970-01-01) of day_spent */
    int64_t day_spent;       /* micros billed on `day` */
    int64_t life_spent;      /* micros billed in total */
    int64_t carry_milli;     /* 0..999: billed fraction not yet a whole micro */
    int64_t unbilled_micros; /* value of charges past a budget (recorded, not billed) */
};

/* Adds cost_milli (>= 0) to *carry_milli and returns the whole micros it completes; *carry_milli
 * stays in 0..AP_MONEY_MILLI-1. */
int64_t ap_money_accrue(int64_t *carry_milli, int64_t cost_milli);

/* The share of amount_micros (>= 0) at share_ppm (0..AP_MONEY_PPM) in whole micros, carrying the
 * remainder in *carry (0..AP_MONEY_PPM-1) to the next call. */
int64_t ap_money_share(int64_t *carry, int64_t amount_micros, int64_t share_ppm);

/* Charges cost_milli (>= 0) to a for an event on advertiser-local day `day` (a later day than
 * a->day starts a new day at 0; an earlier one counts against the current day) under the budgets
 * (micros, AP_MONEY_UNLIMITED for none). Returns the micros billed now (0 when a budget is
 * exhausted); *capped (may be NULL) is set when a budget cut the charge. */
int64_t ap_money_bill(struct ap_money_account *a, int64_t cost_milli, int64_t day,
                      int64_t budget_daily, int64_t budget_lifetime, bool *capped);

/* Floor division of a Unix time by a day length, for negative times too. */
int64_t ap_money_floor_div(int64_t a, int64_t b);

/* eCPM in micros: spend x 1000 / impressions, rounded down (0 when no impressions). */
int64_t ap_money_ecpm(int64_t spend_micros, int64_t impressions);

#endif
