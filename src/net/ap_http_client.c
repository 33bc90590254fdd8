/*
 * ap_http_client: libcurl's multi socket API driven by the worker's ap_loop (see the header and
 * docs/adr/0009-outbound-http.md).
 *
 * How curl and the loop meet:
 *   - CURLMOPT_SOCKETFUNCTION tells us which fds curl wants watched; each gets a struct
 *     hc_sock registered with ap_loop_add/mod/del. ap_loop is edge-triggered, curl expects
 *     level-triggered readiness: after curl has handled an event on a socket it still watches,
 *     the socket is re-armed with ap_loop_mod (EPOLL_CTL_MOD re-reports a socket that is still
 *     ready), so nothing left unread in a socket is ever forgotten.
 *   - CURLMOPT_TIMERFUNCTION arms one ap_loop_timer; curl is never called from inside its own
 *     callbacks (a 0 ms timeout is a 0 ms loop timer).
 *   - A socket curl stops watching may still have an event in the batch the loop is
 *     dispatching, so its struct goes to a graveyard and is recycled by a 0 ms timer, which
 *     runs after the batch.
 * Finished transfers are collected after every curl_multi_socket_action (outside curl), so a
 * user callback may start new requests.
 *
 * Memory: per worker one struct ap_hc; transfers (easy handle + buffers) and socket structs
 * come from free lists and are reused, so a warm client allocates only what curl allocates
 * itself (the URL copy, the header list when it differs from the previous one).
 */
#include "ap_http_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"
#include "ap_loop.h"

#define HC_MAX_WORKERS 256
#define HC_REQ_BODY_MAX (4 * 1024 * 1024) /* a request body longer than this is AP_EINVAL */
#define HC_RETRY_BASE_MS 200              /* notices: 200, 400, 800, ... ms */
#define HC_RETRY_MAX_MS 10000
#define HC_CTYPE_MAX 128

const double ap_hc_latency_bounds_ms[AP_HC_LATENCY_BUCKETS - 1] = {1,   2,   5,   10,   20,  50,
                                                                   100, 200, 500, 1000, 5000};

/* ---- per-worker statistics, summed by any thread ---- */

struct hc_tstats {
    _Atomic uint64_t requests, responses_2xx, responses_other, timeouts, errors, refused_qps,
        refused_breaker;
    _Atomic uint64_t latency_buckets[AP_HC_LATENCY_BUCKETS];
    _Atomic uint64_t latency_sum_us;
    _Atomic int breaker_state;
};

struct hc_stats_block {
    struct hc_tstats t[AP_HC_MAX_TARGETS];
    bool in_use; /* under reg_lock */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hc_stats_block *reg_blocks[HC_MAX_WORKERS]; /* kept for the process lifetime */
static int reg_count;

static _Atomic int cfg_breaker_failures = AP_HC_DEFAULT_BREAKER_FAILURES;
static _Atomic int cfg_breaker_open_ms = AP_HC_DEFAULT_BREAKER_OPEN_MS;
static _Atomic int cfg_max_host_connections = AP_HC_DEFAULT_MAX_HOST_CONNECTIONS;
static _Atomic int cfg_max_connects = AP_HC_DEFAULT_MAX_CONNECTS;

#define ST_ADD(field, n)                                                                           \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)

/* ---- per-worker client ---- */

enum { BR_CLOSED = 0, BR_OPEN = 1, BR_HALF_OPEN = 2 };

struct hc_target {
    double tokens;
    uint64_t refill_ns; /* when tokens were last topped up; 0 = never */
    int qps;            /* the limit the bucket was last sized for */
    int state;          /* BR_* */
    int failures;       /* consecutive */
    uint64_t open_until_ns;
    bool probe_inflight;
};

struct hc_sock {
    struct ap_loop_io io;
    struct ap_hc *c;
    int events;               /* AP_LOOP_* curl asked for */
    bool registered;          /* with the loop */
    bool dead;                /* curl is done with it: in the graveyard */
    bool rearm;               /* re-arm after the current event unless curl changed the events */
    struct hc_sock *next;     /* free list / graveyard */
    struct hc_sock *all_next; /* every struct this client allocated */
};

struct hc_xfer {
    CURL *easy;
    struct ap_hc *c;
    ap_hc_done_cb cb;
    void *arg;
    struct ap_buf req_body;
    struct ap_buf resp;
    struct curl_slist *hdrs;
    char hdrs_ctype[HC_CTYPE_MAX]; /* the content type `hdrs` was built for (no extra lines) */
    bool hdrs_reusable;
    bool too_big;
    bool active; /* added to the multi handle */
    bool probe;  /* the breaker's half-open probe */
    int target;
    int retries_left;
    int attempt;
    uint64_t start_ns;
    uint64_t attempt_ns;
    struct ap_loop_timer retry_timer;
    struct hc_xfer *next;                  /* free list */
    struct hc_xfer *live_prev, *live_next; /* in flight (or waiting to retry) */
};

struct ap_hc {
    struct ap_loop *loop;
    CURLM *multi;
    struct ap_loop_timer timer;  /* curl's timeout */
    struct ap_loop_timer reaper; /* recycles the graveyard after the batch */
    struct hc_sock *free_socks, *graveyard, *all_socks;
    struct hc_xfer *free_xfers, *live;
    int inflight;
    int in_action; /* depth of curl_multi_socket_action calls */
    struct hc_stats_block *stats;
    struct hc_target targets[AP_HC_MAX_TARGETS];
};

static _Thread_local struct ap_hc *tl_client;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? AP_OK : AP_ESYS;
}

void ap_hc_configure(int breaker_failures, int breaker_open_ms)
{
    if (breaker_failures > 0)
        atomic_store(&cfg_breaker_failures, breaker_failures);
    if (breaker_open_ms > 0)
        atomic_store(&cfg_breaker_open_ms, breaker_open_ms);
}

void ap_hc_configure_pool(int max_host_connections, int max_connects)
{
    if (max_host_connections >= 0)
        atomic_store(&cfg_max_host_connections, max_host_connections);
    if (max_connects > 0)
        atomic_store(&cfg_max_connects, max_connects);
}

/* ---- statistics ---- */

static struct hc_stats_block *stats_acquire(void)
{
    struct hc_stats_block *b = NULL;
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < reg_count; i++) {
        if (!reg_blocks[i]->in_use) {
            b = reg_blocks[i];
            break;
        }
    }
    if (!b && reg_count < HC_MAX_WORKERS) {
        b = calloc(1, sizeof(*b));
        if (b)
            reg_blocks[reg_count++] = b;
    }
    if (b)
        b->in_use = true;
    pthread_mutex_unlock(&reg_lock);
    return b;
}

static void stats_release(struct hc_stats_block *b)
{
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < AP_HC_MAX_TARGETS; i++)
        atomic_store_explicit(&b->t[i].breaker_state, BR_CLOSED, memory_order_relaxed);
    b->in_use = false; /* counters stay: the next worker to take the block keeps adding */
    pthread_mutex_unlock(&reg_lock);
}

void ap_hc_target_stats(int target, struct ap_hc_target_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (target < 0 || target >= AP_HC_MAX_TARGETS)
        return;
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < reg_count; i++) {
        const struct hc_tstats *t = &reg_blocks[i]->t[target];
#define LD(f) atomic_load_explicit(&t->f, memory_order_relaxed)
        out->requests += LD(requests);
        out->responses_2xx += LD(responses_2xx);
        out->responses_other += LD(responses_other);
        out->timeouts += LD(timeouts);
        out->errors += LD(errors);
        out->refused_qps += LD(refused_qps);
        out->refused_breaker += LD(refused_breaker);
        out->latency_sum_us += LD(latency_sum_us);
        for (int k = 0; k < AP_HC_LATENCY_BUCKETS; k++)
            out->latency_buckets[k] += LD(latency_buckets[k]);
        int st = LD(breaker_state);
#undef LD
        /* worst state: open > half-open > closed */
        if (st == BR_OPEN || (st == BR_HALF_OPEN && out->breaker_state == BR_CLOSED))
            out->breaker_state = st;
    }
    pthread_mutex_unlock(&reg_lock);
}

static void stats_latency(struct hc_tstats *t, uint64_t us)
{
    double ms = (double)us / 1000.0;
    int k = 0;
    while (k < AP_HC_LATENCY_BUCKETS - 1 && ms > ap_hc_latency_bounds_ms[k])
        k++;
    ST_ADD(t->latency_buckets[k], 1);
    ST_ADD(t->latency_sum_us, us);
}

/* ---- QPS cap and circuit breaker (per target, this worker) ---- */

static void breaker_set(struct ap_hc *c, int target, int state)
{
    c->targets[target].state = state;
    atomic_store_explicit(&c->stats->t[target].breaker_state, state, memory_order_relaxed);
}

/* AP_OK (the request may go; *probe set when it is the half-open probe), AP_ECLOSED, AP_EBUSY. */
static int admit(struct ap_hc *c, const struct ap_hc_req *rq, bool *probe)
{
    *probe = false;
    if (rq->target == 0)
        return AP_OK;
    struct hc_target *t = &c->targets[rq->target];
    uint64_t now = ap_time_mono_ns();
    if (t->state == BR_OPEN) {
        if (now < t->open_until_ns)
            return AP_ECLOSED;
        breaker_set(c, rq->target, BR_HALF_OPEN);
        t->probe_inflight = false;
    }
    if (t->state == BR_HALF_OPEN && t->probe_inflight)
        return AP_ECLOSED;
    if (rq->qps_limit > 0) {
        /* token bucket: refills at qps per second, holds a tenth of a second's worth (>= 1) */
        double cap = rq->qps_limit / 10.0;
        if (cap < 1.0)
            cap = 1.0;
        if (t->refill_ns == 0 || t->qps != rq->qps_limit) {
            t->tokens = cap;
            t->qps = rq->qps_limit;
        } else {
            t->tokens += (double)(now - t->refill_ns) * rq->qps_limit / 1e9;
            if (t->tokens > cap)
                t->tokens = cap;
        }
        t->refill_ns = now;
        if (t->tokens < 1.0)
            return AP_EBUSY;
        t->tokens -= 1.0;
    }
    if (t->state == BR_HALF_OPEN) {
        t->probe_inflight = true;
        *probe = true;
    }
    return AP_OK;
}

static void breaker_result(struct ap_hc *c, int target, bool probe, bool failed)
{
    if (target == 0)
        return;
    struct hc_target *t = &c->targets[target];
    if (probe)
        t->probe_inflight = false;
    if (!failed) {
        t->failures = 0;
        if (t->state != BR_CLOSED && (probe || t->state == BR_HALF_OPEN))
            breaker_set(c, target, BR_CLOSED);
        return;
    }
    t->failures++;
    if ((t->state == BR_HALF_OPEN && probe) ||
        (t->state == BR_CLOSED && t->failures >= atomic_load(&cfg_breaker_failures))) {
        t->open_until_ns =
            ap_time_mono_ns() + (uint64_t)atomic_load(&cfg_breaker_open_ms) * 1000000ull;
        breaker_set(c, target, BR_OPEN);
    }
}

/* ---- sockets ---- */

static void finish_done(struct ap_hc *c);

static void action(struct ap_hc *c, curl_socket_t fd, int flags)
{
    int running = 0;
    c->in_action++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    c->in_action--;
    if (c->in_action == 0)
        finish_done(c);
}

static void on_sock(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    struct hc_sock *s = io->data;
    struct ap_hc *c = s->c;
    if (s->dead)
        return; /* an event of the batch for a socket curl has let go of */
    int flags = 0;
    if (events & AP_LOOP_READ)
        flags |= CURL_CSELECT_IN;
    if (events & AP_LOOP_WRITE)
        flags |= CURL_CSELECT_OUT;
    if (events & AP_LOOP_ERROR)
        flags |= CURL_CSELECT_ERR;
    s->rearm = true;
    action(c, io->fd, flags);
    /* level-triggered semantics for curl: what is still ready is reported again */
    if (!s->dead && s->rearm && s->registered)
        ap_loop_mod(loop, &s->io, s->events);
}

static void on_reaper(struct ap_loop *loop, struct ap_loop_timer *t)
{
    (void)loop;
    struct ap_hc *c = t->data;
    while (c->graveyard) {
        struct hc_sock *s = c->graveyard;
        c->graveyard = s->next;
        s->next = c->free_socks;
        c->free_socks = s;
    }
}

static struct hc_sock *sock_get(struct ap_hc *c)
{
    struct hc_sock *s = c->free_socks;
    if (s) {
        c->free_socks = s->next;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        s->all_next = c->all_socks;
        c->all_socks = s;
    }
    s->c = c;
    s->io.cb = on_sock;
    s->io.data = s;
    s->dead = false;
    s->registered = false;
    s->rearm = false;
    s->next = NULL;
    return s;
}

static int to_loop_events(int what)
{
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= AP_LOOP_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= AP_LOOP_WRITE;
    return ev;
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct ap_hc *c = userp;
    struct hc_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            if (s->registered)
                ap_loop_del(c->loop, &s->io);
            s->registered = false;
            s->dead = true;
            s->next = c->graveyard;
            c->graveyard = s;
            curl_multi_assign(c->multi, fd, NULL);
            ap_loop_timer_start(c->loop, &c->reaper, 0);
        }
        return 0;
    }
    int ev = to_loop_events(what);
    if (!s) {
        s = sock_get(c);
        if (!s)
            return -1;
        s->io.fd = fd;
        s->events = ev;
        if (ap_loop_add(c->loop, &s->io, ev) != AP_OK) {
            s->next = c->free_socks;
            c->free_socks = s;
            return -1;
        }
        s->registered = true;
        curl_multi_assign(c->multi, fd, s);
        return 0;
    }
    s->events = ev;
    s->rearm = false;
    if (ap_loop_mod(c->loop, &s->io, ev) != AP_OK)
        return -1;
    return 0;
}

static void on_timer(struct ap_loop *loop, struct ap_loop_timer *t)
{
    (void)loop;
    action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct ap_hc *c = userp;
    if (timeout_ms < 0)
        ap_loop_timer_stop(c->loop, &c->timer);
    else
        ap_loop_timer_start(c->loop, &c->timer, (uint64_t)timeout_ms);
    return 0;
}

/* ---- transfers ---- */

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct hc_xfer *x = userp;
    size_t n = size * nmemb;
    if (ap_buf_append(&x->resp, data, n) != AP_OK) {
        x->too_big = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    return n;
}

static void live_add(struct ap_hc *c, struct hc_xfer *x)
{
    x->live_prev = NULL;
    x->live_next = c->live;
    if (c->live)
        c->live->live_prev = x;
    c->live = x;
}

static void live_remove(struct ap_hc *c, struct hc_xfer *x)
{
    if (x->live_prev)
        x->live_prev->live_next = x->live_next;
    else
        c->live = x->live_next;
    if (x->live_next)
        x->live_next->live_prev = x->live_prev;
    x->live_prev = x->live_next = NULL;
}

static void xfer_destroy(struct hc_xfer *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    ap_buf_free(&x->req_body);
    ap_buf_free(&x->resp);
    free(x);
}

static void on_retry(struct ap_loop *loop, struct ap_loop_timer *t);

static struct hc_xfer *xfer_get(struct ap_hc *c)
{
    struct hc_xfer *x = c->free_xfers;
    if (x) {
        c->free_xfers = x->next;
        x->next = NULL;
        return x;
    }
    x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->c = c;
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return NULL;
    }
    ap_buf_init(&x->req_body, HC_REQ_BODY_MAX);
    ap_buf_init(&x->resp, AP_HC_MAX_RESPONSE);
    ap_loop_timer_init(&x->retry_timer, on_retry, x);
    /* settings that never change for this handle */
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* every encoding curl can decode */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)AP_HC_MAX_RESPONSE);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "AdPlatform/1");
    return x;
}

static void xfer_put(struct ap_hc *c, struct hc_xfer *x)
{
    x->cb = NULL;
    x->arg = NULL;
    x->resp.len = 0;
    x->req_body.len = 0;
    /* keep the buffers warm, but not a megabyte response forever */
    if (x->resp.size > 64 * 1024) {
        ap_buf_free(&x->resp);
        ap_buf_init(&x->resp, AP_HC_MAX_RESPONSE);
    }
    x->next = c->free_xfers;
    c->free_xfers = x;
}

static bool valid_url(const char *url)
{
    if (!url)
        return false;
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        rest = url + 8;
    else
        return false;
    if (*rest == '\0' || *rest == '/' || *rest == '?' || *rest == '#')
        return false; /* no host */
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false; /* controls and spaces are never valid in a URL */
    }
    return true;
}

/* The request's header list: reused when it is the same as the previous one on this handle. */
static int set_headers(struct hc_xfer *x, const struct ap_hc_req *rq)
{
    const char *ctype = rq->content_type ? rq->content_type : "";
    if (strlen(ctype) >= HC_CTYPE_MAX)
        return AP_EINVAL;
    if (x->hdrs_reusable && !rq->headers && strcmp(x->hdrs_ctype, ctype) == 0)
        return AP_OK;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    x->hdrs_reusable = false;
    char line[HC_CTYPE_MAX + 16];
    struct curl_slist *l = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    if (!l)
        return AP_ENOMEM;
    if (*ctype) {
        snprintf(line, sizeof(line), "Content-Type: %s", ctype);
        struct curl_slist *n = curl_slist_append(l, line);
        if (!n)
            goto fail;
        l = n;
    }
    for (const char *const *h = rq->headers; h && *h; h++) {
        if (strchr(*h, '\r') || strchr(*h, '\n') || !strchr(*h, ':'))
            goto invalid;
        struct curl_slist *n = curl_slist_append(l, *h);
        if (!n)
            goto fail;
        l = n;
    }
    x->hdrs = l;
    memcpy(x->hdrs_ctype, ctype, strlen(ctype) + 1);
    x->hdrs_reusable = rq->headers == NULL;
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    return AP_OK;
invalid:
    curl_slist_free_all(l);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
    return AP_EINVAL;
fail:
    curl_slist_free_all(l);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
    return AP_ENOMEM;
}

static int xfer_start(struct ap_hc *c, struct hc_xfer *x)
{
    x->too_big = false;
    x->resp.len = 0;
    x->attempt_ns = ap_time_mono_ns();
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK)
        return AP_ENOMEM;
    x->active = true;
    ST_ADD(c->stats->t[x->target].requests, 1);
    return AP_OK;
}

int ap_hc_send(struct ap_hc *c, const struct ap_hc_req *rq, ap_hc_done_cb cb, void *arg)
{
    if (!c || !rq || rq->target < 0 || rq->target >= AP_HC_MAX_TARGETS || rq->timeout_ms <= 0 ||
        !valid_url(rq->url) || !rq->method || (rq->body_len && !rq->body))
        return AP_EINVAL;
    bool post = strcmp(rq->method, "POST") == 0;
    if (!post && strcmp(rq->method, "GET") != 0)
        return AP_EINVAL;
    if (rq->body_len > HC_REQ_BODY_MAX || (!post && rq->body_len))
        return AP_EINVAL;
    bool probe = false;
    int rc = admit(c, rq, &probe);
    if (rc != AP_OK) {
        struct hc_tstats *t = &c->stats->t[rq->target];
        if (rc == AP_EBUSY)
            ST_ADD(t->refused_qps, 1);
        else
            ST_ADD(t->refused_breaker, 1);
        return rc;
    }
    struct hc_xfer *x = xfer_get(c);
    if (!x) {
        rc = AP_ENOMEM;
        goto fail;
    }
    CURL *e = x->easy;
    if ((rc = set_headers(x, rq)) != AP_OK)
        goto fail_put;
    if (curl_easy_setopt(e, CURLOPT_URL, rq->url) != CURLE_OK) {
        rc = AP_ENOMEM;
        goto fail_put;
    }
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)rq->timeout_ms);
    if (post) {
        x->req_body.len = 0;
        if (rq->body_len && (rc = ap_buf_append(&x->req_body, rq->body, rq->body_len)) != AP_OK)
            goto fail_put;
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body_len ? x->req_body.data : "");
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    x->cb = cb;
    x->arg = arg;
    x->target = rq->target;
    x->retries_left = rq->retries > 0 ? rq->retries : 0;
    x->attempt = 0;
    x->probe = probe;
    x->start_ns = ap_time_mono_ns();
    if ((rc = xfer_start(c, x)) != AP_OK)
        goto fail_put;
    live_add(c, x);
    c->inflight++;
    return AP_OK;
fail_put:
    xfer_put(c, x);
fail:
    if (probe)
        c->targets[rq->target].probe_inflight = false;
    return rc;
}

static void on_retry(struct ap_loop *loop, struct ap_loop_timer *t)
{
    (void)loop;
    struct hc_xfer *x = t->data;
    struct ap_hc *c = x->c;
    /* a retry goes through the breaker as a new request would (not the QPS cap: it was paid) */
    if (x->target != 0) {
        struct hc_target *tg = &c->targets[x->target];
        if (tg->state == BR_OPEN && ap_time_mono_ns() >= tg->open_until_ns) {
            breaker_set(c, x->target, BR_HALF_OPEN);
            tg->probe_inflight = false;
        }
        bool refused = tg->state == BR_OPEN || (tg->state == BR_HALF_OPEN && tg->probe_inflight);
        if (refused) {
            ST_ADD(c->stats->t[x->target].refused_breaker, 1);
            if (x->retries_left > 0) {
                x->retries_left--;
                x->attempt++;
                int ms = HC_RETRY_BASE_MS << (x->attempt < 6 ? x->attempt : 6);
                ap_loop_timer_start(c->loop, &x->retry_timer,
                                    (uint64_t)(ms < HC_RETRY_MAX_MS ? ms : HC_RETRY_MAX_MS));
                return;
            }
            struct ap_hc_resp r = {.err = AP_ECLOSED,
                                   .elapsed_us = (ap_time_mono_ns() - x->start_ns) / 1000};
            live_remove(c, x);
            c->inflight--;
            if (x->cb)
                x->cb(x->arg, &r);
            xfer_put(c, x);
            return;
        }
        if (tg->state == BR_HALF_OPEN) {
            tg->probe_inflight = true;
            x->probe = true;
        }
    }
    if (xfer_start(c, x) != AP_OK) {
        struct ap_hc_resp r = {.err = AP_ENOMEM,
                               .elapsed_us = (ap_time_mono_ns() - x->start_ns) / 1000};
        if (x->probe)
            c->targets[x->target].probe_inflight = false;
        live_remove(c, x);
        c->inflight--;
        if (x->cb)
            x->cb(x->arg, &r);
        xfer_put(c, x);
    }
}

static void complete(struct ap_hc *c, struct hc_xfer *x, CURLcode res)
{
    struct hc_tstats *t = &c->stats->t[x->target];
    struct ap_hc_resp r = {0};
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    uint64_t now = ap_time_mono_ns();
    if (res == CURLE_OK) {
        r.err = AP_OK;
        r.status = (int)status;
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        r.err = AP_ETIMEDOUT;
    } else if (x->too_big || res == CURLE_FILESIZE_EXCEEDED) {
        r.err = AP_ELIMIT;
        r.status = (int)status;
    } else {
        r.err = AP_EIO;
    }
    if (r.err == AP_OK) {
        if (r.status >= 200 && r.status < 300)
            ST_ADD(t->responses_2xx, 1);
        else
            ST_ADD(t->responses_other, 1);
        stats_latency(t, (now - x->attempt_ns) / 1000);
    } else if (r.err == AP_ETIMEDOUT) {
        ST_ADD(t->timeouts, 1);
    } else {
        ST_ADD(t->errors, 1);
    }
    bool failed = r.err != AP_OK || r.status >= 500;
    breaker_result(c, x->target, x->probe, failed);
    x->probe = false;
    if (failed && x->retries_left > 0) {
        x->retries_left--;
        int ms = HC_RETRY_BASE_MS << (x->attempt < 6 ? x->attempt : 6);
        x->attempt++;
        ap_loop_timer_start(c->loop, &x->retry_timer,
                            (uint64_t)(ms < HC_RETRY_MAX_MS ? ms : HC_RETRY_MAX_MS));
        return;
    }
    if (res != CURLE_OK)
        ap_log_debug("outbound request to target %d failed: %s", x->target,
                     curl_easy_strerror(res));
    r.body = x->resp.data ? x->resp.data : "";
    r.body_len = x->resp.len;
    r.elapsed_us = (now - x->start_ns) / 1000;
    live_remove(c, x);
    c->inflight--;
    if (x->cb)
        x->cb(x->arg, &r);
    xfer_put(c, x);
}

/* Hands every finished transfer to its callback (outside curl, so callbacks may send). */
static void finish_done(struct ap_hc *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result;
        struct hc_xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, e);
        x->active = false;
        complete(c, x, res);
    }
}

int ap_hc_inflight(const struct ap_hc *c)
{
    return c ? c->inflight : 0;
}

/* ---- lifetime ---- */

struct ap_hc *ap_hc_worker(struct ap_loop *loop)
{
    if (tl_client)
        return tl_client->loop == loop ? tl_client : NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != AP_OK)
        return NULL;
    struct ap_hc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->stats = stats_acquire();
    c->multi = curl_multi_init();
    if (!c->stats || !c->multi)
        goto fail;
    ap_loop_timer_init(&c->timer, on_timer, c);
    ap_loop_timer_init(&c->reaper, on_reaper, c);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)atomic_load(&cfg_max_host_connections));
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)atomic_load(&cfg_max_connects));
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    tl_client = c;
    return c;
fail:
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->stats)
        stats_release(c->stats);
    free(c);
    return NULL;
}

void ap_hc_worker_shutdown(void)
{
    struct ap_hc *c = tl_client;
    if (!c)
        return;
    tl_client = NULL;
    while (c->live) {
        struct hc_xfer *x = c->live;
        live_remove(c, x);
        ap_loop_timer_stop(c->loop, &x->retry_timer);
        if (x->active)
            curl_multi_remove_handle(c->multi, x->easy);
        xfer_destroy(x);
    }
    curl_multi_cleanup(c->multi); /* closes the pooled connections (REMOVE callbacks first) */
    ap_loop_timer_stop(c->loop, &c->timer);
    ap_loop_timer_stop(c->loop, &c->reaper);
    while (c->free_xfers) {
        struct hc_xfer *x = c->free_xfers;
        c->free_xfers = x->next;
        xfer_destroy(x);
    }
    while (c->all_socks) {
        struct hc_sock *s = c->all_socks;
        c->all_socks = s->all_next;
        if (s->registered)
            ap_loop_del(c->loop, &s->io);
        free(s);
    }
    stats_release(c->stats);
    free(c);
}

/* ---- Prometheus text ---- */

int ap_hc_metrics_render(struct ap_buf *out)
{
    static const struct {
        const char *name, *help, *type;
    } fam[] = {
        {"adplatform_partner_requests_total", "Outbound requests sent, by demand partner.",
         "counter"},
        {"adplatform_partner_responses_total", "HTTP responses received, by status class.",
         "counter"},
        {"adplatform_partner_timeouts_total", "Outbound requests that timed out.", "counter"},
        {"adplatform_partner_errors_total",
         "Outbound requests that failed (connection, protocol, response too long).", "counter"},
        {"adplatform_partner_refused_total", "Requests not sent: over the QPS cap or circuit open.",
         "counter"},
        {"adplatform_partner_request_duration_seconds", "Time to a response (per attempt).",
         "histogram"},
        {"adplatform_partner_breaker_state",
         "Circuit breaker: 0 closed, 1 open, 2 half-open (worst over workers).", "gauge"},
    };
    int rc = 0;
    /* one pass to find the targets in use, so the families stay grouped */
    struct ap_hc_target_stats *st = malloc(sizeof(*st) * AP_HC_MAX_TARGETS);
    if (!st)
        return AP_ENOMEM;
    bool used[AP_HC_MAX_TARGETS];
    for (int t = 0; t < AP_HC_MAX_TARGETS; t++) {
        ap_hc_target_stats(t, &st[t]);
        used[t] = st[t].requests || st[t].refused_qps || st[t].refused_breaker;
    }
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        rc |= ap_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help,
                            fam[f].name, fam[f].type);
        for (int t = 0; t < AP_HC_MAX_TARGETS; t++) {
            if (!used[t])
                continue;
            const struct ap_hc_target_stats *s = &st[t];
            const char *n = fam[f].name;
            switch (f) {
            case 0:
                rc |= ap_buf_printf(out, "%s{partner=\"%d\"} %llu\n", n, t,
                                    (unsigned long long)s->requests);
                break;
            case 1:
                rc |= ap_buf_printf(out, "%s{partner=\"%d\",class=\"2xx\"} %llu\n", n, t,
                                    (unsigned long long)s->responses_2xx);
                rc |= ap_buf_printf(out, "%s{partner=\"%d\",class=\"other\"} %llu\n", n, t,
                                    (unsigned long long)s->responses_other);
                break;
            case 2:
                rc |= ap_buf_printf(out, "%s{partner=\"%d\"} %llu\n", n, t,
                                    (unsigned long long)s->timeouts);
                break;
            case 3:
                rc |= ap_buf_printf(out, "%s{partner=\"%d\"} %llu\n", n, t,
                                    (unsigned long long)s->errors);
                break;
            case 4:
                rc |= ap_buf_printf(out, "%s{partner=\"%d\",reason=\"qps\"} %llu\n", n, t,
                                    (unsigned long long)s->refused_qps);
                rc |= ap_buf_printf(out, "%s{partner=\"%d\",reason=\"breaker\"} %llu\n", n, t,
                                    (unsigned long long)s->refused_breaker);
                break;
            case 5: {
                uint64_t cum = 0;
                for (int k = 0; k < AP_HC_LATENCY_BUCKETS; k++) {
                    cum += s->latency_buckets[k];
                    if (k < AP_HC_LATENCY_BUCKETS - 1)
                        rc |= ap_buf_printf(out, "%s_bucket{partner=\"%d\",le=\"%g\"} %llu\n", n, t,
                                            ap_hc_latency_bounds_ms[k] / 1000.0,
                                            (unsigned long long)cum);
                    else
                        rc |= ap_buf_printf(out, "%s_bucket{partner=\"%d\",le=\"+Inf\"} %llu\n", n,
                                            t, (unsigned long long)cum);
                }
                rc |= ap_buf_printf(out,
                                    "%s_sum{partner=\"%d\"} %.6f\n%s_count{partner=\"%d\"} "
                                    "%llu\n",
                                    n, t, (double)s->latency_sum_us / 1e6, n, t,
                                    (unsigned long long)cum);
                break;
            }
            default:
                rc |= ap_buf_printf(out, "%s{partner=\"%d\"} %d\n", n, t, s->breaker_state);
                break;
            }
        }
    }
    free(st);
    return rc ? AP_ELIMIT : AP_OK;
}
