/*
 * ap_rtb: the OpenRTB exchange on the data plane (DESIGN.md §6, docs/adr/0011-openrtb-exchange.md).
 *
 *   POST /openrtb2/auction  Prebid Server's auction endpoint (what Prebid.js's
 *                           prebidServerBidAdapter calls): an OpenRTB 2.6 request (2.5 ext
 *                           locations accepted), our campaigns bid through the decision engine
 *                           (bidder code "adplatform"), one auction per imp, a BidResponse with
 *                           seatbid per seat, Prebid targeting keys, ext.responsetimemillis,
 *                           ext.errors, ext.debug. CORS with credentials; text/plain accepted.
 *   POST /openrtb2/bid      the bidder role: an outside exchange asks us for bids; 204 when we
 *                           do not bid.
 *
 * Currency: every price we produce is in AP_RTB_CURRENCY (the campaigns' money unit).
 *
 * Lifetimes: the module state is process-wide (ap_rtb_start/stop on the main thread); each
 * auction lives in its request's arena. Threads: handlers run on data-plane workers, never
 * block, never lock (except the billing table's striped mutexes, held for a probe: see
 * ap_rtb_billing.h); counters are per worker (relaxed atomics) summed by ap_rtb_metrics.
 */
#ifndef AP_RTB_H
#define AP_RTB_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/ap_buf.h"
#include "../core/ap_span.h"
#include "../net/ap_router.h"

#define AP_RTB_CURRENCY "USD"
#define AP_RTB_SEAT "adplatform"       /* our own demand's bidder code and seat */
#define AP_RTB_DEFAULT_TMAX_MS 1000    /* when the request has no tmax */
#define AP_RTB_MAX_TMAX_MS 5000        /* a longer tmax is cut to this */
#define AP_RTB_MAX_RESPONSE (4u << 20) /* response body cap */
#define AP_RTB_TARGETING_KEY_MAX 20    /* Prebid's ad-server key length limit */

struct ap_evlog;
struct ap_rtb_options {
    int threads;            /* data-plane workers */
    const char *data_dir;   /* the store (<data_dir>/adplatform.db): demand partners, rates;
                               NULL: no outside demand */
    struct ap_evlog *evlog; /* BID/WIN/LOSS records; NULL: not logged */
};

#define AP_RTB_SAFETY_MS 5 /* kept from tmax (plus tmax/20) for writing the answer */

/* Converts amount in currency cur (empty = ours) to micros of AP_RTB_CURRENCY with the rates
 * table; false when there is no rate for cur. Any thread. */
bool ap_rtb_rate_convert(double amount, struct ap_span cur, int64_t *micros);

/* Sets up the module and starts the demand partner loader (when data_dir is set). AP_OK or the
 * store's error (outside demand is then off). Main thread, before the data plane starts. */
int ap_rtb_start(const struct ap_rtb_options *opt);

/* Registers POST/OPTIONS /openrtb2/auction and POST /openrtb2/bid. Main thread. */
int ap_rtb_register(struct ap_router *r);

/* Main thread, after the data plane has drained. */
void ap_rtb_stop(void);

/* Appends the module's Prometheus metrics (ap_rtb_* counters). Any thread. */
int ap_rtb_metrics(struct ap_buf *out);

/* Sets the rate of currency code (3 letters) in AP_RTB_CURRENCY: 1 code = usd_per_unit
 * (> 0; 0 removes it). Lock-free for readers: at most AP_RTB_MAX_CURRENCIES codes. AP_OK,
 * AP_EINVAL, AP_ELIMIT. Any thread (one writer at a time: the partner loader). */
#define AP_RTB_MAX_CURRENCIES 256
int ap_rtb_rate_set(const char *code, double usd_per_unit);

/* Prebid's price bucket of cpm_micros for a granularity name ("low", "medium", "high", "auto",
 * "dense"; anything else counts as "medium"), written as "%.2f" into out[cap]. Pure. */
void ap_rtb_price_bucket(int64_t cpm_micros, const char *granularity, char *out, size_t cap);

#endif
