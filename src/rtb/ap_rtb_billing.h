/*
 * ap_rtb_billing: server-side billing notices (burl) behind our impression beacon
 * (docs/adr/0015-rtb-outside-demand.md, "Billing notices").
 *
 * When a partner bid wins, the exchange appends our own impression pixel (a version-2
 * /v1/e/imp token carrying the partner id) to its adm and stores the bid's burl, macros filled,
 * here, keyed by the pixel's 128-bit impression id. When the beacon has made that impression
 * durable it calls ap_rtb_billing_on_imp, which takes the entry (once: a later beacon with the
 * same id finds it already fired), fires the burl with ap_hc_send (retried) and appends an
 * AP_EV_BILLING record (partner id, clearing CPM).
 *
 * The table is bounded: AP_RTB_BILLING_SLOTS entries in AP_RTB_BILLING_STRIPES stripes, each a
 * small open-addressed array under its own mutex (held for a probe and a pointer move only,
 * never across I/O). An entry lives until its expiry (the imp token's lifetime + skew): it
 * then can no longer be claimed because the token no longer verifies. A fired entry stays as
 * a tombstone until then, which is what makes the notice idempotent. When a stripe is full
 * put fails and the caller passes the burl to the page instead (counted).
 *
 * Memory: the table owns a malloc'd copy of each burl; take hands it to the caller (free()).
 * Threads: put/take/on_imp on any data-plane worker; init/free on the main thread while no
 * worker runs.
 */
#ifndef AP_RTB_BILLING_H
#define AP_RTB_BILLING_H

#include <stddef.h>
#include <stdint.h>

#define AP_RTB_BILLING_STRIPES 64
#define AP_RTB_BILLING_SLOTS (64 * 1024) /* entries in all (a power of two) */
#define AP_RTB_BILLING_URL_MAX 8192      /* a longer burl is not stored (passed to the page) */

struct ap_event;
struct ap_evlog;
struct ap_loop;

/* Allocates the table; evlog receives the AP_EV_BILLING records (NULL: not logged). AP_OK or
 * AP_ENOMEM. */
int ap_rtb_billing_init(struct ap_evlog *evlog);

/* Frees the table and every stored burl. */
void ap_rtb_billing_free(void);

/* Stores a copy of burl[len] for imp_id until expires_at (Unix seconds). AP_OK, AP_EINVAL
 * (not initialised, empty or too long URL), AP_ELIMIT (stripe full), AP_EEXIST, AP_ENOMEM. */
int ap_rtb_billing_put(const uint8_t imp_id[16], int64_t partner_id, int64_t price_micros,
                       const char *burl, size_t len, int64_t expires_at);

struct ap_rtb_billing_entry {
    int64_t partner_id, price_micros;
    char *burl; /* malloc'd, NUL-terminated: the caller frees it */
};

/* Claims the live entry of imp_id at time now: fills *out and marks it fired. AP_OK once;
 * AP_ENOTFOUND when there is none, it expired, or it was already claimed. */
int ap_rtb_billing_take(const uint8_t imp_id[16], int64_t now, struct ap_rtb_billing_entry *out);

/* The beacon's hook (ap_beacon_set_imp_hook): ev is a durable AP_EV_IMP of worker `worker`.
 * For a partner impression (partner_id > 0, not test) whose entry is claimed: fires the burl
 * and logs AP_EV_BILLING. Worker thread. */
void ap_rtb_billing_on_imp(struct ap_loop *loop, int worker, const struct ap_event *ev);

/* Counters (relaxed): stored, fired (notices sent), duplicates (beacons that found the entry
 * already fired or gone), full (put refused). Any thread. */
struct ap_rtb_billing_stats {
    uint64_t stored, fired, unclaimed, full;
};
void ap_rtb_billing_stats(struct ap_rtb_billing_stats *out);

#endif
