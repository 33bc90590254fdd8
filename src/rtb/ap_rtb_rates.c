/*
 * ap_rtb_rates: the currency rates used by the exchange (ap_rtb.h). A fixed table of up to
 * AP_RTB_MAX_CURRENCIES codes; a code's slot, once taken, keeps its code forever (its rate may
 * become 0 = unknown), so readers need no lock: they scan the published count of slots and
 * load each rate atomically. One writer (the partner loader thread, or a test) at a time.
 */
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "../core/ap_error.h"
#include "ap_rtb.h"
#include "ap_rtb_internal.h"

static struct {
    char code[AP_RTB_MAX_CURRENCIES][4];
    _Atomic double rate[AP_RTB_MAX_CURRENCIES];
    _Atomic int n;
} R;

static bool upper3(const char *p, size_t n)
{
    if (n != 3)
        return false;
    for (size_t i = 0; i < 3; i++)
        if (p[i] < 'A' || p[i] > 'Z')
            return false;
    return true;
}

int ap_rtb_rate_set(const char *code, double usd_per_unit)
{
    if (!code || !upper3(code, strlen(code)) || !(usd_per_unit >= 0) || isinf(usd_per_unit))
        return AP_EINVAL;
    int n = atomic_load(&R.n);
    for (int i = 0; i < n; i++) {
        if (memcmp(R.code[i], code, 3) == 0) {
            atomic_store(&R.rate[i], usd_per_unit);
            return AP_OK;
        }
    }
    if (usd_per_unit == 0)
        return AP_OK;
    if (n >= AP_RTB_MAX_CURRENCIES)
        return AP_ELIMIT;
    memcpy(R.code[n], code, 4);
    atomic_store(&R.rate[n], usd_per_unit);
    atomic_store(&R.n, n + 1); /* release: the code is visible before the count */
    return AP_OK;
}

bool ap_rtb_rate_convert(double amount, struct ap_span cur, int64_t *micros)
{
    double usd;
    if (!cur.len || ap_span_eq_cstr(cur, AP_RTB_CURRENCY)) {
        usd = amount;
    } else {
        if (!upper3(cur.p, cur.len))
            return false;
        int n = atomic_load(&R.n);
        double rate = 0;
        for (int i = 0; i < n; i++)
            if (memcmp(R.code[i], cur.p, 3) == 0)
                rate = atomic_load_explicit(&R.rate[i], memory_order_relaxed);
        if (!(rate > 0))
            return false;
        usd = amount * rate;
    }
    if (!(usd > 0)) {
        *micros = 0;
        return true;
    }
    *micros = usd > 1e9 ? INT64_MAX / 2 : (int64_t)(usd * 1e6 + 0.5);
    return true;
}

int ap__rtb_rates_replace(const json_t *rates)
{
    int rc = AP_OK;
    int n = atomic_load(&R.n);
    for (int i = 0; i < n; i++) /* codes no longer in the table: no rate */
        if (!json_object_get(rates, R.code[i]))
            atomic_store(&R.rate[i], 0.0);
    const char *code;
    json_t *v;
    json_object_foreach ((json_t *)rates, code, v) {
        int r = ap_rtb_rate_set(code, json_number_value(v));
        if (r)
            rc = r;
    }
    return rc;
}
