/*
 * ap_api_rates: GET and PUT /api/v1/currency-rates (administrators only): the currency rates
 * the OpenRTB exchange uses for floors and bids in other currencies (docs/adr/0015).
 *
 *   GET  -> 200 {"base":"USD","rates":{"EUR":1.08,...}}   1 EUR = 1.08 USD
 *   PUT  {"rates":{"EUR":1.08,...}} (optional "base":"USD") replaces the whole table -> 200 with
 *        the new table; 422 naming the field for a bad code (three upper-case letters, not the
 *        base) or rate (a number > 0 and < 1e9); at most AP_API_MAX_RATES entries.
 *
 * Storage: ap_store_rates (own connection; the table is tiny). Threads: the API's workers.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/ap_error.h"
#include "../rtb/ap_rtb.h"
#include "../store/ap_store_rates.h"
#include "ap_api_internal.h"

#define AP_API_MAX_RATES AP_RTB_MAX_CURRENCIES

static int send_rates(struct ap__api_ctx *c)
{
    json_t *rates = NULL;
    int rc = ap_store_rates_get(ap__api_state.db_path, &rates);
    if (rc)
        return ap__api_error(c->x, 500, "internal", "cannot read the currency rates");
    json_t *body = json_pack("{s:s,s:o}", "base", AP_RTB_CURRENCY, "rates", rates);
    if (!body)
        return ap__api_error(c->x, 500, "internal", "out of memory");
    rc = ap__api_send_json(c->x, 200, body);
    json_decref(body);
    return rc;
}

static bool valid_code(const char *k)
{
    if (strlen(k) != 3)
        return false;
    for (int i = 0; i < 3; i++)
        if (k[i] < 'A' || k[i] > 'Z')
            return false;
    return strcmp(k, AP_RTB_CURRENCY) != 0;
}

int ap__api_currency_rates(struct ap__api_ctx *c); /* routed by ap_api.c */
int ap__api_currency_rates(struct ap__api_ctx *c)
{
    if (!ap__api_is_admin(c))
        return ap__api_error(c->x, 403, "forbidden", "only an administrator may see or set rates");
    if (c->x->req.method == AP_HTTP_GET)
        return send_rates(c);
    json_t *in = NULL;
    int rc = ap__api_read_json(c, &in);
    if (rc)
        return rc;
    json_t *base = json_object_get(in, "base");
    json_t *rates = json_object_get(in, "rates");
    char field[64];
    const char *bad = NULL;
    const char *k;
    json_t *v;
    json_object_foreach (in, k, v) {
        if (strcmp(k, "base") != 0 && strcmp(k, "rates") != 0) {
            snprintf(field, sizeof(field), "%.40s", k);
            rc = ap__api_field_error(c->x, field, "unknown field");
            json_decref(in);
            return rc;
        }
    }
    if (base && !(json_is_string(base) && strcmp(json_string_value(base), AP_RTB_CURRENCY) == 0))
        rc = ap__api_field_error(c->x, "base", "must be \"" AP_RTB_CURRENCY "\"");
    else if (!json_is_object(rates))
        rc = ap__api_field_error(c->x, "rates", "must be an object of currency code -> rate");
    else if (json_object_size(rates) > AP_API_MAX_RATES)
        rc = ap__api_field_error(c->x, "rates", "too many currencies");
    if (rc) {
        json_decref(in);
        return rc;
    }
    json_object_foreach (rates, k, v) {
        snprintf(field, sizeof(field), "rates.%.40s", k);
        if (!valid_code(k))
            bad = "must be an ISO 4217 code in upper case, other than the base";
        else if (!json_is_number(v) || !(json_number_value(v) > 0) || !(json_number_value(v) < 1e9))
            bad = "must be a number > 0 (base units per unit of this currency)";
        if (bad)
            break;
    }
    if (bad) {
        rc = ap__api_field_error(c->x, field, bad);
        json_decref(in);
        return rc;
    }
    rc = ap_store_rates_put(ap__api_state.db_path, rates, c->actor.user_id);
    json_decref(in);
    if (rc == AP_EINVAL)
        return ap__api_field_error(c->x, "rates", "refused by the store");
    if (rc)
        return ap__api_error(c->x, 500, "internal", "cannot write the currency rates");
    return send_rates(c);
}
