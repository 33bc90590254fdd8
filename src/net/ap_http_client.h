/*
 * ap_http_client: outbound HTTP requests from a worker's own event loop (RTB partner calls,
 * win/loss/billing notices), through libcurl's multi socket API driven by ap_loop: no thread
 * per request, no blocking. See docs/adr/0009-outbound-http.md.
 *
 * Each worker thread has one client (ap_hc_worker, created on first use, thread-local) with
 * one curl multi handle: connections are kept alive and reused per host (a pool per partner),
 * gzip is accepted, HTTP/2 is used where the server offers it (ALPN over TLS).
 *
 * Targets: every request names a target id (a demand partner id; 0 = no target, e.g. a
 * notice URL). Per target and worker the client keeps a QPS cap (token bucket: requests over
 * the cap are refused at once with AP_EBUSY, no callback) and a circuit breaker: after
 * `breaker_failures` consecutive failures (transport error, timeout, 5xx) it opens for
 * `breaker_open_ms`, refusing with AP_ECLOSED; then one probe request goes through
 * (half-open): success closes it, failure opens it again. Counters per target (requests,
 * responses by class, timeouts, errors, refusals, latency histogram) are per worker and
 * summed by ap_hc_target_stats.
 *
 * Lifetimes: request fields are copied by ap_hc_send (the caller's buffers may go away); the
 * response body handed to the callback is valid only during the callback. The client lives
 * until its thread ends (ap_hc_worker_shutdown on the worker before its loop is destroyed).
 * Threads: everything on the owning worker thread, except ap_hc_target_stats (any thread).
 */
#ifndef AP_HTTP_CLIENT_H
#define AP_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ap_loop;
struct ap_hc;

#define AP_HC_MAX_TARGETS 1024      /* target ids 0..AP_HC_MAX_TARGETS-1 */
#define AP_HC_DEFAULT_BREAKER_FAILURES 5
#define AP_HC_DEFAULT_BREAKER_OPEN_MS 5000
#define AP_HC_MAX_RESPONSE (1024 * 1024) /* a longer response body is an error */

struct ap_hc_req {
    const char *method;       /* "POST" or "GET" */
    const char *url;          /* http:// or https:// */
    const char *content_type; /* for a body; NULL: none */
    const void *body;
    size_t body_len;
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated; NULL: none */
    int timeout_ms;             /* whole request deadline (> 0) */
    int target;                 /* 0..AP_HC_MAX_TARGETS-1, 0 = untracked */
    int qps_limit;              /* per target and worker; 0 = no cap */
    int retries;                /* notices: re-send this many times on failure (backoff) */
};

struct ap_hc_resp {
    int err;             /* AP_OK (an HTTP status arrived), AP_ETIMEDOUT, AP_EIO (transport),
                            AP_ELIMIT (body too long) */
    int status;          /* HTTP status, 0 without one */
    const char *body;    /* decoded (gunzipped) body; valid during the callback only */
    size_t body_len;
    uint64_t elapsed_us; /* from ap_hc_send to completion */
};

typedef void (*ap_hc_done_cb)(void *arg, const struct ap_hc_resp *resp);

/* The calling worker's client on its loop, created on first use. NULL on failure. */
struct ap_hc *ap_hc_worker(struct ap_loop *loop);

/* Frees the calling thread's client, cancelling what is in flight (their callbacks are not
 * called). The worker thread, before its loop is destroyed. */
void ap_hc_worker_shutdown(void);

/* Starts a request. cb(arg, resp) is called exactly once later on this thread (never from
 * inside ap_hc_send), unless the call returns an error: AP_EBUSY (over the target's QPS cap),
 * AP_ECLOSED (circuit open), AP_EINVAL (bad URL/method), AP_ENOMEM. cb may be NULL (fire and
 * forget: notices). */
int ap_hc_send(struct ap_hc *c, const struct ap_hc_req *rq, ap_hc_done_cb cb, void *arg);

/* Requests in flight on this worker's client. */
int ap_hc_inflight(const struct ap_hc *c);

/* Breaker settings for all targets (main thread, before the workers start). */
void ap_hc_configure(int breaker_failures, int breaker_open_ms);

/* Connection pool sizes of the clients created after this call (main thread, before the
 * workers start): at most max_host_connections connections per host and worker (0 = no
 * limit; requests beyond it wait in curl's queue, their timeout running), at most max_connects
 * idle connections kept alive per worker. A negative max_host_connections, a max_connects <= 0
 * keeps the current value. */
#define AP_HC_DEFAULT_MAX_HOST_CONNECTIONS 1024
#define AP_HC_DEFAULT_MAX_CONNECTS 1024
void ap_hc_configure_pool(int max_host_connections, int max_connects);

#define AP_HC_LATENCY_BUCKETS 12 /* upper bounds ap_hc_latency_bounds_ms[], then +Inf */
extern const double ap_hc_latency_bounds_ms[AP_HC_LATENCY_BUCKETS - 1];

struct ap_hc_target_stats {
    uint64_t requests, responses_2xx, responses_other, timeouts, errors, refused_qps,
        refused_breaker;
    uint64_t latency_buckets[AP_HC_LATENCY_BUCKETS];
    uint64_t latency_sum_us;
    int breaker_state; /* 0 closed, 1 open, 2 half-open (worst over the workers) */
};

/* Sums a target's counters over every worker's client. Any thread. */
void ap_hc_target_stats(int target, struct ap_hc_target_stats *out);

/* Appends Prometheus text for every target that has seen a request or a refusal:
 * adplatform_partner_requests_total{partner="<target>"}, _responses_total{class="2xx|other"},
 * _timeouts_total, _errors_total, _refused_total{reason="qps|breaker"},
 * _request_duration_seconds (histogram), _breaker_state (0 closed, 1 open, 2 half-open).
 * Target 0 (untracked: notices) is labelled partner="0". 0, or AP_ELIMIT/AP_ENOMEM from the
 * buffer. Any thread. */
struct ap_buf;
int ap_hc_metrics_render(struct ap_buf *out);

#endif
