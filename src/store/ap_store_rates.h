/*
 * ap_store_rates: the currency rates table of the store (migration 6): 1 unit of a currency
 * code = usd_per_unit US dollars (the exchange's money unit, ap_rtb.h AP_RTB_CURRENCY). Read by
 * the exchange's partner loader, written by PUT /api/v1/currency-rates.
 *
 * Each call opens its own SQLite connection on the database file (the table is tiny and the
 * callers are a background loader and an admin API call), so it works beside any ap_store
 * handle. Threads: any thread; the caller owns the returned JSON.
 */
#ifndef AP_STORE_RATES_H
#define AP_STORE_RATES_H

#include <jansson.h>
#include <stdint.h>

/* *out = {"EUR": 1.08, ...} (a new reference). AP_OK, AP_EIO, AP_ENOMEM. */
int ap_store_rates_get(const char *db_path, json_t **out);

/* Replaces the whole table with rates ({"EUR": 1.08, ...}, validated by the caller: codes of
 * three upper-case letters, finite numbers > 0) in one transaction that also bumps the store
 * version and writes an audit log row (actor_user_id; 0 = none). AP_OK, AP_EINVAL (the table's
 * checks refused a row), AP_EIO. */
int ap_store_rates_put(const char *db_path, const json_t *rates, int64_t actor_user_id);

#endif
