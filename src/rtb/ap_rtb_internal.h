/*
 * ap_rtb_internal: what the files of src/rtb share (not a public interface).
 *
 * Demand partners (ap_rtb_partners.c): a loader thread reads the active rows of
 * /api/v1/demand-partners from the store whenever the store version changes and publishes an
 * immutable, reference-counted table. Each worker keeps its own reference (a per-worker cache)
 * and swaps it, under a mutex held only for a pointer exchange, when the published generation
 * changed: a worker never waits for SQLite.
 *
 * Privacy (ap_rtb_privacy.c): scrubs the shallow copy of a request sent to a partner.
 *
 * Lifetimes: a table lives while a worker or the loader holds it. Threads: ap__rtb_partners_get
 * on data-plane workers; start/stop on the main thread.
 */
#ifndef AP_RTB_INTERNAL_H
#define AP_RTB_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../core/ap_arena.h"
#include "ap_ortb.h"

#define AP_RTB_PARTNER_CODE_MAX 33
#define AP_RTB_PARTNER_URL_MAX 2049
#define AP_RTB_MAX_PARTNERS 64 /* called per auction; more active partners are ignored */
#define AP_RTB_PARTNERS_POLL_MS 200

struct ap_rtb_partner {
    int64_t id;
    int target; /* ap_http_client target id (1..AP_HC_MAX_TARGETS-1) */
    char code[AP_RTB_PARTNER_CODE_MAX];
    char url[AP_RTB_PARTNER_URL_MAX];
    int timeout_ms, qps_limit;
    double adjustment; /* bid multiplier */
};

struct ap_rtb_partners {
    _Atomic int refs;
    int64_t version; /* store version read */
    uint32_t n;
    struct ap_rtb_partner p[];
};

/* Opens the store at db_path (read only use) and starts the loader thread after a first load.
 * AP_OK or an AP_E* code (err says why). Main thread. */
int ap__rtb_partners_start(const char *db_path, char *err, size_t errlen);
void ap__rtb_partners_stop(void);

/* Worker `worker`'s current table (never NULL; empty before start), valid until this worker's
 * next call. Only worker `worker` may call with its id. */
const struct ap_rtb_partners *ap__rtb_partners_get(int worker);

/* Test hook and loader: publishes t (takes the reference). Any thread. */
void ap__rtb_partners_publish(struct ap_rtb_partners *t);

/* The partner with bidder code `code`, NULL if none. */
const struct ap_rtb_partner *ap__rtb_partner_find(const struct ap_rtb_partners *t,
                                                  struct ap_span code);

/* Privacy scrubbing of the request sent to partners (see ap_rtb_privacy.c). Returns a shallow
 * copy of r (in a) whose user/device/geo are scrubbed as the rules ask; r is not changed.
 * NULL on AP_ENOMEM. */
struct ap_rtb_privacy {
    bool gdpr_no_consent; /* GDPR applies, no TCF consent for personalisation (purposes 1,3,4) */
    bool no_precise_geo;  /* no TCF special feature 1 opt-in (when GDPR applies) */
    bool usp_opt_out;     /* us_privacy says opt-out of sale */
    bool coppa, lmt;
};
void ap__rtb_privacy_eval(const struct ap_ortb_request *r, struct ap_rtb_privacy *out);
struct ap_ortb_request *ap__rtb_scrub(const struct ap_ortb_request *r,
                                      const struct ap_rtb_privacy *pv, struct ap_arena *a);

/* Makes the rates table equal to rates ({"EUR": 1.08, ...}; codes absent lose their rate).
 * AP_OK or the first ap_rtb_rate_set error. The partner loader thread (one writer). */
#include <jansson.h>
int ap__rtb_rates_replace(const json_t *rates);

/* Writes ip truncated into out[cap]: IPv4 to /24, IPv6 to /48. false if ip does not parse. */
bool ap__rtb_truncate_ip(struct ap_span ip, char *out, size_t cap);

#endif
