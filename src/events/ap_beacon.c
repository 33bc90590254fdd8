/*
 * ap_beacon: tracking endpoints (contract in ap_beacon.h).
 *
 * Per worker: a FIFO of deferred exchanges keyed by the ring sequence their event got, and
 * the ring's eventfd registered on the worker's loop the first time the worker handles a
 * beacon. Sequences in the FIFO only grow (one producer per ring), so answering is popping
 * the front while its sequence is durable. A connection holds at most one deferred exchange
 * (pipelined requests wait behind it), so the FIFO never needs more than max_connections
 * entries; it is allocated once per worker.
 *
 * The batch endpoint parses with jansson (it allocates: the batch path is for servers and SDKs
 * sending many events per request, not for browsers).
 */
#include "ap_beacon.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"
#include "../net/ap_server.h"
#include "../serve/ap_context.h"
#include "../serve/ap_serve.h"
#include "ap_evlog.h"
#include "ap_token.h"
#include "ap_token_ring.h"

enum reason {
    R_MISSING,
    R_MALFORMED,
    R_FORGED,
    R_EXPIRED,
    R_WRONG_TYPE,
    R_UNKNOWN_AD,
    R_BAD_VALUE,
    R_COUNT
};
static const char *const REASONS[R_COUNT] = {"missing_token", "malformed",  "forged",
                                             "expired",       "wrong_type", "unknown_ad",
                                             "bad_value"};
static const char *const TYPES[AP_EV_TYPE_MAX] = {
    "", "decision", "imp", "view", "click", "conv", "bid", "win", "loss", "billing"};

enum kind { K_GIF, K_REDIRECT, K_NO_CONTENT, K_JSON };

struct pend {
    int64_t seq;
    struct ap_http_exchange *x;
    const char *body; /* K_REDIRECT: the Location; K_JSON: the body (request arena) */
    uint32_t len;
    uint8_t kind;
    const struct ap_event *hook; /* a partner impression for G.imp_hook (request arena), or NULL */
};

struct bw {
    struct ap_loop_io io;
    bool registered;
    struct ap_evlog_ring *ring;
    struct pend *q;
    uint32_t head, tail; /* q[head & mask] is the oldest; tail - head queued */
    _Atomic uint64_t accepted[AP_EV_TYPE_MAX];
    _Atomic uint64_t rejected[AP_EV_TYPE_MAX][R_COUNT];
    _Atomic uint64_t unavailable[AP_EV_TYPE_MAX]; /* 503: ring full or log failed */
    _Atomic uint64_t batches;
} __attribute__((aligned(64)));

static struct {
    bool started;
    struct ap_evlog *log;
    struct ap_serve_edge edge;
    int workers;
    uint32_t qmask;
    int64_t conv_window;
    _Atomic(ap_beacon_imp_hook) imp_hook;
    struct bw w[AP_SERVER_MAX_THREADS];
} G;

/* 1x1 transparent GIF */
static const unsigned char GIF[43] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

#define COUNT(c) AP_COUNTER_ADD((c), 1)

/* ---- helpers ---------------------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool qparam(struct ap_span q, const char *name, struct ap_span *out)
{
    size_t nl = strlen(name), i = 0;
    while (i < q.len) {
        size_t s = i;
        while (i < q.len && q.p[i] != '&')
            i++;
        if (i - s > nl && memcmp(q.p + s, name, nl) == 0 && q.p[s + nl] == '=') {
            *out = ap_span_make(q.p + s + nl + 1, i - s - nl - 1);
            return true;
        }
        i++;
    }
    return false;
}

/* "12", "12.5", "0.000001" -> micros, exactly (no floating point). */
static bool parse_amount(struct ap_span s, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    size_t i = 0;
    int fd = 0;
    if (s.len == 0 || s.len > 24)
        return false;
    for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
        if (whole > 1000000000000ll)
            return false;
        whole = whole * 10 + (s.p[i] - '0');
    }
    if (i == 0)
        return false;
    if (i < s.len) {
        if (s.p[i] != '.' || i + 1 == s.len)
            return false;
        for (i++; i < s.len; i++, fd++) {
            if (s.p[i] < '0' || s.p[i] > '9' || fd >= 6)
                return false;
            frac = frac * 10 + (s.p[i] - '0');
        }
    }
    for (; fd < 6; fd++)
        frac *= 10;
    *out = whole * 1000000 + frac;
    return true;
}

static enum reason reason_of(int rc)
{
    return rc == AP_ETIMEDOUT ? R_EXPIRED : rc == AP_EPERM ? R_FORGED : R_MALFORMED;
}

static struct bw *worker_of(struct ap_http_exchange *x)
{
    if (x->worker_id < 0 || x->worker_id >= G.workers)
        return NULL;
    return &G.w[x->worker_id];
}

static void from_token(struct ap_event *ev, const struct ap_token *t, int type)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = (uint8_t)type;
    ev->flags = t->flags; /* AP_TOKEN_F_* == AP_EV_F_* (low byte) */
    ev->count = 1;
    memcpy(ev->imp_id, t->imp_id, sizeof(ev->imp_id));
    ev->time_ns = now_ns();
    ev->campaign_id = t->campaign_id;
    ev->ad_id = t->ad_id;
    ev->placement_id = t->placement_id;
    ev->publisher_id = t->publisher_id;
    ev->price_micros = t->price_micros;
    ev->issued_at = t->issued_at;
    ev->partner_id = t->partner_id; /* version-2 imp tokens: our pixel behind a partner bid */
}

/* A durable partner impression: the billing hook (ADR 0015), on the worker's thread. */
static void run_hook(struct ap_loop *loop, struct bw *w, const struct ap_event *ev)
{
    ap_beacon_imp_hook fn = atomic_load_explicit(&G.imp_hook, memory_order_acquire);
    if (ev && fn)
        fn(loop, (int)(w - G.w), ev);
}

/* Country and device from the request (browser beacons), when the edge modules exist. The
 * client address follows X-Forwarded-For from trusted proxies, as decisions do. */
static void fill_ctx(struct ap_http_exchange *x, struct ap_event *ev)
{
    bool geo = G.edge.geo_lookup && G.edge.geo, ua = G.edge.ua_parse && G.edge.ua;
    if (!geo && !ua)
        return;
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, 0);
    if (geo) {
        char ip[AP_SERVE_CTX_IP_MAX];
        ap_serve_client_ip(x, ip, sizeof(ip));
        if (ip[0])
            G.edge.geo_lookup(G.edge.geo, ip, &ctx);
    }
    if (ua) {
        const struct ap_http_header *h = ap_http_find_header(&x->req, "User-Agent");
        G.edge.ua_parse(G.edge.ua, h ? h->value : AP_SPAN_NULL, &ctx);
    }
    ev->device_type = (uint8_t)ctx.device;
    if (ctx.country[0] && ctx.country[1])
        memcpy(ev->country, ctx.country, 2);
}

static int error(struct ap_http_exchange *x, int status, const char *code, const char *msg)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"fields\":[]}}", code, msg);
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    return ap_http_respond(x, status, "application/json", body, (size_t)n);
}

static int reject(struct ap_http_exchange *x, struct bw *w, int type, enum reason r)
{
    static const char *const MSG[R_COUNT] = {
        "the t parameter (token) is missing",
        "the token is malformed",
        "the token's signature is not valid",
        "the token has expired",
        "the token is not for this endpoint",
        "the ad is no longer served",
        "value must be an amount like 12.50 (value) or an integer (value_micros)"};
    COUNT(w->rejected[type][r]);
    return error(x, r == R_UNKNOWN_AD ? 404 : 400, REASONS[r], MSG[r]);
}

static int unavailable(struct ap_http_exchange *x, struct bw *w, int type, const char *why)
{
    if (w)
        COUNT(w->unavailable[type]);
    ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("1"));
    return error(x, 503, "unavailable", why);
}

static int answer(struct ap_http_exchange *x, uint8_t kind, const char *body, size_t len)
{
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store, no-cache, must-revalidate"));
    switch (kind) {
    case K_GIF:
        return ap_http_respond(x, 200, "image/gif", GIF, sizeof(GIF));
    case K_REDIRECT:
        ap_http_add_header(x, "Location", ap_span_make(body, len));
        return ap_http_respond(x, 302, NULL, NULL, 0);
    case K_NO_CONTENT:
        return ap_http_respond(x, 204, NULL, NULL, 0);
    default:
        return ap_http_respond(x, 200, "application/json", body, len);
    }
}

/* ---- durability: the ring's eventfd on the worker's loop ------------------------------------- */

static void on_durable(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    (void)loop;
    (void)events;
    struct bw *w = io->data;
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
    int64_t d = ap_evlog_durable(w->ring);
    while (w->head != w->tail && w->q[w->head & G.qmask].seq <= d) {
        struct pend p = w->q[w->head & G.qmask];
        w->head++; /* before answering: answering may run pipelined requests that queue more */
        run_hook(loop, w, p.hook);
        answer(p.x, p.kind, p.body, p.len);
    }
}

static bool ready(struct ap_http_exchange *x, struct bw *w)
{
    if (w->registered)
        return true;
    if (!w->q) {
        w->q = calloc((size_t)G.qmask + 1, sizeof(*w->q));
        if (!w->q)
            return false;
    }
    w->ring = ap_evlog_ring(G.log, x->worker_id);
    if (!w->ring)
        return false;
    w->io.fd = ap_evlog_ring_fd(w->ring);
    w->io.cb = on_durable;
    w->io.data = w;
    if (ap_loop_add(x->loop, &w->io, AP_LOOP_READ) != AP_OK)
        return false;
    w->registered = true;
    return true;
}

/* Appends the n events, then answers now (already durable) or defers until they are. The
 * event's type names the counters (a batch counts per event itself: count_type < 0). */
static int commit(struct ap_http_exchange *x, struct bw *w, const struct ap_event *evs, int n,
                  int count_type, uint8_t kind, const char *body, size_t len)
{
    int mtype = count_type > 0 ? count_type : AP_EV_IMP;
    if (!ready(x, w))
        return unavailable(x, w, mtype, "event log not available on this worker");
    if (w->tail - w->head > G.qmask)
        return unavailable(x, w, mtype, "too many beacons waiting");
    int64_t seq = n == 1 ? ap_evlog_append(w->ring, evs) : ap_evlog_append_batch(w->ring, evs, n);
    if (seq == AP_EAGAIN)
        return unavailable(x, w, mtype, "event log busy: retry");
    if (seq < 0)
        return error(x, 400, "batch_too_large", "more events than the event ring holds");
    for (int i = 0; i < n; i++)
        COUNT(w->accepted[evs[i].type < AP_EV_TYPE_MAX ? evs[i].type : 0]);
    const struct ap_event *hook = NULL;
    if (n == 1 && evs->type == AP_EV_IMP && evs->partner_id > 0) {
        struct ap_event *c = ap_arena_alloc(x->arena, sizeof(*c));
        if (c)
            *c = *evs;
        hook = c;
    }
    if (ap_evlog_durable(w->ring) >= seq) {
        run_hook(x->loop, w, hook);
        return answer(x, kind, body, len);
    }
    w->q[w->tail & G.qmask] = (struct pend){seq, x, body, (uint32_t)len, kind, hook};
    w->tail++;
    return ap_http_defer(x);
}

/* ---- single beacons --------------------------------------------------------------------------- */

/* The landing URL with every {click_id} replaced, in the request arena. */
static char *landing_with_click_id(struct ap_http_exchange *x, const char *landing,
                                   const char *click_id, size_t *len)
{
    static const char MACRO[] = "{click_id}";
    size_t ml = sizeof(MACRO) - 1, cl = strlen(click_id), n = 0;
    for (const char *p = landing; (p = strstr(p, MACRO)); p += ml)
        n++;
    size_t out_len = strlen(landing) - n * ml + n * cl;
    char *out = ap_arena_alloc(x->arena, out_len + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = landing;;) {
        const char *m = strstr(p, MACRO);
        size_t k = m ? (size_t)(m - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!m)
            break;
        memcpy(o, click_id, cl);
        o += cl;
        p = m + ml;
    }
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

static int h_track(struct ap_http_exchange *x, enum ap_token_type tt, int type)
{
    struct bw *w = worker_of(x);
    if (!G.started || !w)
        return unavailable(x, w, type, "event tracking is not started");
    if (ap_evlog_failed(G.log))
        return unavailable(x, w, type, "event log failed");
    struct ap_span t;
    if (!qparam(x->req.query, "t", &t) || t.len == 0)
        return reject(x, w, type, R_MISSING);
    struct ap_token tok;
    int64_t now = ap_time_unix();
    int rc = ap_token_verify(&ap_token_ring_get()->sign, t, now, ap_token_ttl(tt), &tok);
    if (rc != AP_OK)
        return reject(x, w, type, reason_of(rc));
    if (tok.type != tt)
        return reject(x, w, type, R_WRONG_TYPE);
    struct ap_event ev;
    from_token(&ev, &tok, type);
    fill_ctx(x, &ev);
    if (tt != AP_TOKEN_CLICK)
        return commit(x, w, &ev, 1, type, K_GIF, NULL, 0);

    /* click: the landing URL from the snapshot, with the click id */
    char landing[AP_BEACON_LANDING_MAX];
    if (ap_serve_landing_url(tok.ad_id, landing, sizeof(landing)) != AP_OK ||
        !header_safe(landing))
        return reject(x, w, type, R_UNKNOWN_AD);
    struct ap_token ct = tok;
    ct.type = AP_TOKEN_CONV;
    ct.issued_at = now;
    char click_id[AP_TOKEN_MAX_HEX];
    if (ap_token_sign_hex(&ap_token_ring_get()->sign, &ct, click_id, sizeof(click_id)) < 0)
        return error(x, 500, "internal", "cannot sign the click id");
    size_t len = 0;
    char *loc = landing_with_click_id(x, landing, click_id, &len);
    if (!loc)
        return error(x, 500, "internal", "out of memory");
    return commit(x, w, &ev, 1, type, K_REDIRECT, loc, len);
}

static int h_imp(struct ap_http_exchange *x)
{
    return h_track(x, AP_TOKEN_IMP, AP_EV_IMP);
}

static int h_view(struct ap_http_exchange *x)
{
    return h_track(x, AP_TOKEN_VIEW, AP_EV_VIEW);
}

static int h_click(struct ap_http_exchange *x)
{
    return h_track(x, AP_TOKEN_CLICK, AP_EV_CLICK);
}

/* A conversion from a click id and a value. AP_OK, or the reason. */
static int conv_event(struct ap_span click_id, bool has_value, struct ap_span value,
                      bool value_is_micros, struct ap_event *ev, enum reason *why)
{
    struct ap_token tok;
    int64_t micros = 0;
    if (click_id.len == 0) {
        *why = R_MISSING;
        return AP_EINVAL;
    }
    if (has_value) {
        uint64_t u;
        bool ok = value_is_micros ? ap_span_to_u64(value, INT64_MAX, &u) : parse_amount(value, &micros);
        if (value_is_micros && ok)
            micros = (int64_t)u;
        if (!ok) {
            *why = R_BAD_VALUE;
            return AP_EINVAL;
        }
    }
    int rc = ap_token_verify_hex(&ap_token_ring_get()->conv, click_id, ap_time_unix(), G.conv_window, &tok);
    if (rc != AP_OK) {
        *why = reason_of(rc);
        return rc;
    }
    if (tok.type != AP_TOKEN_CONV) {
        *why = R_WRONG_TYPE;
        return AP_EINVAL;
    }
    from_token(ev, &tok, AP_EV_CONV);
    ev->value_micros = micros;
    return AP_OK;
}

static int h_conv(struct ap_http_exchange *x)
{
    struct bw *w = worker_of(x);
    if (!G.started || !w)
        return unavailable(x, w, AP_EV_CONV, "event tracking is not started");
    if (ap_evlog_failed(G.log))
        return unavailable(x, w, AP_EV_CONV, "event log failed");
    struct ap_span id = AP_SPAN_NULL, v = AP_SPAN_NULL;
    qparam(x->req.query, "click_id", &id);
    bool micros = qparam(x->req.query, "value_micros", &v);
    bool has = micros || qparam(x->req.query, "value", &v);
    struct ap_event ev;
    enum reason why;
    if (conv_event(id, has, v, micros, &ev, &why) != AP_OK)
        return reject(x, w, AP_EV_CONV, why);
    return commit(x, w, &ev, 1, AP_EV_CONV, K_NO_CONTENT, NULL, 0);
}

/* ---- POST /v1/events -------------------------------------------------------------------------- */

struct jw {
    char *p;
    size_t len, cap;
};

static void jw_put(struct jw *w, const char *s)
{
    size_t n = strlen(s);
    if (w->len + n < w->cap) {
        memcpy(w->p + w->len, s, n);
        w->len += n;
    }
}

static int type_of(const char *s, enum ap_token_type *tt)
{
    static const struct {
        const char *name;
        int ev;
        enum ap_token_type tt;
    } T[] = {{"imp", AP_EV_IMP, AP_TOKEN_IMP},
             {"view", AP_EV_VIEW, AP_TOKEN_VIEW},
             {"click", AP_EV_CLICK, AP_TOKEN_CLICK},
             {"conv", AP_EV_CONV, AP_TOKEN_CONV}};
    for (size_t i = 0; s && i < sizeof(T) / sizeof(T[0]); i++) {
        if (!strcmp(s, T[i].name)) {
            *tt = T[i].tt;
            return T[i].ev;
        }
    }
    return 0;
}

static int h_batch(struct ap_http_exchange *x)
{
    struct bw *w = worker_of(x);
    if (!G.started || !w)
        return unavailable(x, w, AP_EV_IMP, "event tracking is not started");
    if (ap_evlog_failed(G.log))
        return unavailable(x, w, AP_EV_IMP, "event log failed");
    json_error_t jerr;
    json_t *root = json_loadb(x->req.body.p, x->req.body.len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *arr = root ? json_object_get(root, "events") : NULL;
    if (!root || !json_is_object(root) || !json_is_array(arr)) {
        json_decref(root);
        return error(x, 400, "invalid_json", "expected {\"events\":[...]}");
    }
    size_t n = json_array_size(arr);
    if (n > AP_BEACON_MAX_BATCH) {
        json_decref(root);
        return error(x, 400, "batch_too_large", "at most 1000 events per request");
    }
    COUNT(w->batches);
    struct ap_event *evs = ap_arena_alloc(x->arena, (n ? n : 1) * sizeof(*evs));
    struct jw out = {ap_arena_alloc(x->arena, 64 + n * (48 + AP_TOKEN_MAX_HEX)), 0,
                     64 + n * (48 + AP_TOKEN_MAX_HEX)};
    if (!evs || !out.p) {
        json_decref(root);
        return error(x, 500, "internal", "out of memory");
    }
    int nev = 0, nrej = 0;
    int64_t now = ap_time_unix();
    char results_head[64];
    jw_put(&out, "{\"accepted\":");
    size_t counts_at = out.len; /* accepted/rejected are written at the end, padded here */
    jw_put(&out, "                                        \"results\":[");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        enum ap_token_type tt = AP_TOKEN_IMP;
        int type = json_is_object(e) ? type_of(json_string_value(json_object_get(e, "type")), &tt)
                                     : 0;
        enum reason why = R_MALFORMED;
        int rc = AP_EINVAL;
        char click_id[AP_TOKEN_MAX_HEX] = "";
        if (type == AP_EV_CONV) {
            json_t *jv = json_object_get(e, "value_micros");
            const char *id = json_string_value(json_object_get(e, "click_id"));
            bool has = jv != NULL, ok = !jv || (json_is_integer(jv) && json_integer_value(jv) >= 0);
            char num[24] = "0";
            if (ok && jv)
                snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(jv));
            if (!ok) {
                why = R_BAD_VALUE;
            } else {
                rc = conv_event(id ? ap_span_cstr(id) : AP_SPAN_NULL, has, ap_span_cstr(num), true,
                                &evs[nev], &why);
            }
        } else if (type) {
            const char *t = json_string_value(json_object_get(e, "t"));
            struct ap_token tok;
            if (!t || !*t) {
                why = R_MISSING;
            } else if ((rc = ap_token_verify(&ap_token_ring_get()->sign, ap_span_cstr(t), now, ap_token_ttl(tt),
                                             &tok)) != AP_OK) {
                why = reason_of(rc);
            } else if (tok.type != tt) {
                why = R_WRONG_TYPE;
                rc = AP_EINVAL;
            } else {
                from_token(&evs[nev], &tok, type);
                if (type == AP_EV_CLICK) {
                    struct ap_token ct = tok;
                    ct.type = AP_TOKEN_CONV;
                    ct.issued_at = now;
                    if (ap_token_sign_hex(&ap_token_ring_get()->sign, &ct, click_id, sizeof(click_id)) < 0)
                        click_id[0] = '\0';
                }
            }
        }
        if (i)
            jw_put(&out, ",");
        if (rc == AP_OK) {
            nev++;
            jw_put(&out, "{\"status\":\"ok\"");
            if (click_id[0]) {
                jw_put(&out, ",\"click_id\":\"");
                jw_put(&out, click_id);
                jw_put(&out, "\"");
            }
            jw_put(&out, "}");
        } else {
            nrej++;
            COUNT(w->rejected[type][why]);
            jw_put(&out, "{\"status\":\"rejected\",\"reason\":\"");
            jw_put(&out, REASONS[why]);
            jw_put(&out, "\"}");
        }
    }
    json_decref(root);
    jw_put(&out, "]}");
    int hl = snprintf(results_head, sizeof(results_head), "%d,\"rejected\":%d,", nev, nrej);
    memcpy(out.p + counts_at, results_head, (size_t)hl); /* fits: 40 spaces reserved */
    if (nev == 0)
        return answer(x, K_JSON, out.p, out.len);
    return commit(x, w, evs, nev, -1, K_JSON, out.p, out.len);
}

/* ---- module ----------------------------------------------------------------------------------- */

int ap_beacon_start(const struct ap_beacon_options *o, char *err, size_t errlen)
{
    if (!o->log || o->workers < 1 || o->workers > AP_SERVER_MAX_THREADS ||
        ap_evlog_rings(o->log) < o->workers) {
        snprintf(err, errlen, "beacons: need an event log with one ring per worker");
        return AP_EINVAL;
    }
    struct ap_token_ring_options ko = {.data_dir = o->data_dir, .overlap = o->key_overlap};
    int rc = ap_token_ring_start(&ko, err, errlen); /* shared with serving: first start counts */
    if (rc != AP_OK)
        return rc;
    G.log = o->log;
    G.workers = o->workers;
    G.conv_window = o->conv_window > 0 ? o->conv_window : AP_BEACON_CONV_WINDOW;
    uint32_t cap = 64;
    while (cap < (uint32_t)(o->max_connections > 0 ? o->max_connections : 1024) + 1 &&
           cap < (1u << 24))
        cap <<= 1;
    G.qmask = cap - 1;
    if (o->edge)
        G.edge = *o->edge;
    else
        memset(&G.edge, 0, sizeof(G.edge));
    G.started = true;
    return AP_OK;
}

void ap_beacon_set_imp_hook(ap_beacon_imp_hook fn)
{
    atomic_store_explicit(&G.imp_hook, fn, memory_order_release);
}

void ap_beacon_stop(void)
{
    if (G.started)
        ap_token_ring_stop();
    for (int i = 0; i < AP_SERVER_MAX_THREADS; i++) {
        free(G.w[i].q);
        G.w[i].q = NULL;
        G.w[i].registered = false;
        G.w[i].head = G.w[i].tail = 0;
    }
    G.started = false;
}

int ap_beacon_register(struct ap_router *r)
{
    int rc = 0;
    rc |= ap_router_add(r, AP_M(GET), "/v1/e/imp", h_imp, NULL, "event_imp");
    rc |= ap_router_add(r, AP_M(GET), "/v1/e/view", h_view, NULL, "event_view");
    rc |= ap_router_add(r, AP_M(GET), "/v1/e/click", h_click, NULL, "event_click");
    rc |= ap_router_add(r, AP_M(GET) | AP_M(POST), "/v1/e/conv", h_conv, NULL, "event_conv");
    rc |= ap_router_add(r, AP_M(POST), "/v1/events", h_batch, NULL, "events_batch");
    return rc ? AP_ELIMIT : AP_OK;
}

static uint64_t sum(size_t off)
{
    uint64_t n = 0;
    for (int i = 0; i < G.workers; i++)
        n += atomic_load_explicit((_Atomic uint64_t *)((char *)&G.w[i] + off),
                                  memory_order_relaxed);
    return n;
}

int ap_beacon_metrics(struct ap_buf *b)
{
    int rc = AP_OK;
    rc |= ap_buf_append_str(b, "# HELP ap_events_accepted_total Events accepted (logged).\n"
                               "# TYPE ap_events_accepted_total counter\n");
    for (int t = AP_EV_IMP; t <= AP_EV_CONV; t++)
        rc |= ap_buf_printf(b, "ap_events_accepted_total{type=\"%s\"} %llu\n", TYPES[t],
                            (unsigned long long)sum(offsetof(struct bw, accepted[t])));
    rc |= ap_buf_append_str(b, "# HELP ap_events_rejected_total Events refused (400/404), by "
                               "reason; never logged.\n"
                               "# TYPE ap_events_rejected_total counter\n");
    for (int t = AP_EV_IMP; t <= AP_EV_CONV; t++)
        for (int r = 0; r < R_COUNT; r++)
            rc |= ap_buf_printf(b, "ap_events_rejected_total{type=\"%s\",reason=\"%s\"} %llu\n",
                                TYPES[t], REASONS[r],
                                (unsigned long long)sum(offsetof(struct bw, rejected[t][r])));
    rc |= ap_buf_append_str(b, "# HELP ap_events_unavailable_total Beacons answered 503 (ring "
                               "full, log failed).\n"
                               "# TYPE ap_events_unavailable_total counter\n");
    for (int t = AP_EV_IMP; t <= AP_EV_CONV; t++)
        rc |= ap_buf_printf(b, "ap_events_unavailable_total{type=\"%s\"} %llu\n", TYPES[t],
                            (unsigned long long)sum(offsetof(struct bw, unavailable[t])));
    rc |= ap_buf_printf(b, "# TYPE ap_events_batches_total counter\nap_events_batches_total %llu\n",
                        (unsigned long long)sum(offsetof(struct bw, batches)));
    if (!G.log)
        return rc ? AP_ELIMIT : AP_OK;
    struct ap_evlog_stats st;
    ap_evlog_stats(G.log, &st);
    rc |= ap_buf_append_str(b, "# HELP ap_evlog_ring_full_total Records refused by a full event "
                               "ring (decisions: dropped, best effort).\n"
                               "# TYPE ap_evlog_ring_full_total counter\n");
    for (int t = AP_EV_DECISION; t < AP_EV_TYPE_MAX; t++)
        rc |= ap_buf_printf(b, "ap_evlog_ring_full_total{type=\"%s\"} %llu\n", TYPES[t],
                            (unsigned long long)ap_evlog_full_rejects(G.log, t));
    rc |= ap_buf_printf(b,
                        "# TYPE ap_evlog_records_total counter\nap_evlog_records_total %llu\n"
                        "# TYPE ap_evlog_bytes_total counter\nap_evlog_bytes_total %llu\n"
                        "# TYPE ap_evlog_end_bytes gauge\nap_evlog_end_bytes %llu\n"
                        "# TYPE ap_evlog_torn_bytes_cut gauge\nap_evlog_torn_bytes_cut %llu\n"
                        "# TYPE ap_evlog_failed gauge\nap_evlog_failed %d\n"
                        "# TYPE ap_evlog_sync_seconds_max gauge\nap_evlog_sync_seconds_max %.6f\n",
                        (unsigned long long)st.records, (unsigned long long)st.bytes,
                        (unsigned long long)ap_evlog_end(G.log),
                        (unsigned long long)st.torn_bytes_cut, ap_evlog_failed(G.log) ? 1 : 0,
                        (double)st.sync_us_max / 1e6);
    uint64_t h[AP_EVLOG_SYNC_BUCKETS], cum = 0;
    ap_evlog_sync_histogram(G.log, h);
    rc |= ap_buf_append_str(b, "# HELP ap_evlog_sync_seconds fdatasync latency of the event log "
                               "(group commit).\n"
                               "# TYPE ap_evlog_sync_seconds histogram\n");
    for (int i = 0; i < AP_EVLOG_SYNC_BUCKETS - 1; i++) {
        cum += h[i];
        rc |= ap_buf_printf(b, "ap_evlog_sync_seconds_bucket{le=\"%g\"} %llu\n",
                            (double)ap_evlog_sync_bounds_us[i] / 1e6, (unsigned long long)cum);
    }
    cum += h[AP_EVLOG_SYNC_BUCKETS - 1];
    rc |= ap_buf_printf(b,
                        "ap_evlog_sync_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "ap_evlog_sync_seconds_sum %.6f\nap_evlog_sync_seconds_count %llu\n",
                        (unsigned long long)cum, (double)st.sync_us_sum / 1e6,
                        (unsigned long long)st.syncs);
    return rc ? AP_ELIMIT : AP_OK;
}
