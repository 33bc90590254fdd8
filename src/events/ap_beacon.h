/*
 * ap_beacon: the tracking endpoints on the data plane (issue 5 item 2; docs/adr on the event
 * log). Each accepted event is appended to the worker's ring of the event log (ap_evlog.h) and
 * the response is sent only once the event is durable:
 *
 *   GET  /v1/e/imp?t=TOKEN    impression      -> 200 1x1 GIF
 *   GET  /v1/e/view?t=TOKEN   viewable imp.   -> 200 1x1 GIF
 *   GET  /v1/e/click?t=TOKEN  click           -> 302 to the ad's landing URL from the serving
 *                                                snapshot (never from the request), with the
 *                                                {click_id} macro replaced by the click id
 *   GET  /v1/e/conv?click_id=HEX&value=12.50 (or value_micros=12500000)
 *                             conversion (server to server) -> 204; the click id is a signed
 *                             AP_TOKEN_CONV token carrying the click's time: a click older
 *                             than the attribution window (30 days) is refused
 *   POST /v1/events           {"events":[{"type":"imp","t":TOKEN}, {"type":"conv",
 *                             "click_id":HEX,"value_micros":N}, ...]} (at most
 *                             AP_BEACON_MAX_BATCH) -> 200 {"accepted":N,"rejected":M,
 *                             "results":[{"status":"ok"} | {"status":"rejected","reason":R}]}
 *
 * A missing, malformed, forged (bad MAC, unknown or retired key), expired or wrong-type token
 * is 400 with a JSON error, counted by reason, never logged. A full ring is 503 with
 * Retry-After: 1 (not counted as accepted: the client may retry). Repeated events are logged
 * again: counting once is the aggregator's job.
 *
 * Deferred answers: the handler appends, defers the exchange and queues {sequence, exchange}
 * in its worker's FIFO; the worker registers the ring's eventfd on its loop (lazily, on its
 * first beacon) and, when it fires, answers every queued exchange whose sequence is durable.
 *
 * Lifetimes: module state is process lifetime (ap_beacon_start .. ap_beacon_stop); a queued
 * response's data lives in the exchange's request arena. Threads: start/register/stop on the
 * main thread (stop after the data plane stopped, before the log is closed); handlers on
 * data-plane workers (no blocking, no lock); ap_beacon_metrics on any thread.
 */
#ifndef AP_BEACON_H
#define AP_BEACON_H

#include <stddef.h>
#include <stdint.h>

#include "../core/ap_buf.h"
#include "../net/ap_router.h"

#define AP_BEACON_MAX_BATCH 1000                 /* events in one POST /v1/events */
#define AP_BEACON_LANDING_MAX 4096               /* landing URL after macro substitution */
#define AP_BEACON_CONV_WINDOW (30 * 24 * 3600)   /* default attribution window, seconds */

struct ap_evlog;
struct ap_serve_edge;

struct ap_beacon_options {
    struct ap_evlog *log;             /* required; ring i for data-plane worker i */
    const char *data_dir;             /* token keys: the store's, published by ap_token_ring */
    int64_t key_overlap;              /* seconds, 0 = AP_TOKEN_DEFAULT_OVERLAP (first start) */
    int workers;                      /* data-plane worker threads */
    int max_connections;              /* bounds the deferred exchanges of one worker */
    const struct ap_serve_edge *edge; /* geo/User-Agent for country and device; may be NULL */
    int64_t conv_window;              /* seconds, 0 = AP_BEACON_CONV_WINDOW */
};

/* Takes a reference on the published key ring (ap_token_ring: keys in the store, refreshed on
 * rotation; click ids verify against its longer-lived conv view), sets the module up. AP_OK or
 * an error with a message in err. Main thread, before the data plane starts. */
int ap_beacon_start(const struct ap_beacon_options *o, char *err, size_t errlen);

/* Registers the routes above on the data-plane router (handlers answer 503 until started). */
int ap_beacon_register(struct ap_router *r);

/* Frees the module state. Main thread, after the data plane stopped. */
void ap_beacon_stop(void);

/* Called on the worker's thread once a single impression beacon whose token carries a partner
 * id (version 2) is durable, before it is answered: ev is the logged record (valid during the
 * call), worker the worker's index. The RTB module sets it (burl, ADR 0015); NULL removes it.
 * Beacons in a /v1/events batch do not call it. Any thread; the swap is atomic. */
struct ap_event;
struct ap_loop;
typedef void (*ap_beacon_imp_hook)(struct ap_loop *loop, int worker, const struct ap_event *ev);
void ap_beacon_set_imp_hook(ap_beacon_imp_hook fn);

/* Appends the beacon and event-log metrics (Prometheus text). AP_OK or AP_ELIMIT/AP_ENOMEM. */
int ap_beacon_metrics(struct ap_buf *out);

#endif
