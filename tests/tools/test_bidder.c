/*
 * test_bidder: an OpenRTB demand partner for tests and benchmarks, a real HTTP server on
 * loopback built on our own ap_server (so it keeps up with the exchange in a benchmark).
 *
 * Main port (ap_server, N workers):
 *   POST <any path>   a bid request. What it answers depends on the mode, taken from (first
 *                     found): the query string (?mode=..&delay=..&price=..&gzip=1), the request's
 *                     ext.test_bidder object, the command line. Modes:
 *                       bid      200 + a BidResponse: one bid per imp (price, adm, adomain,
 *                                cat, crid, w/h from the imp's first format, nurl/lurl/burl
 *                                pointing back here, dealid when asked or when the imp has a
 *                                deal), the seat named by --seat
 *                       nobid    204
 *                       garbage  200 with a body that is not JSON
 *                       error    500
 *                       hang     never answers (the exchange stays open for --hang-ms)
 *                       big      200 with a body of `size` bytes
 *                     delay=N (ms) answers after N ms without blocking (a loop timer and a
 *                     deferred response). Per imp, imp.ext.test_bidder (or imp.ext.bidder)
 *                     may set price, dealid, w, h, adomain, cat, crid, adm, nobid.
 *   GET  /_requests   every request received: [{"method","path","query","headers":{},"body"}]
 *   GET  /_notices    every notice hit (any other GET): [{"path","query"}]
 *   GET  /_stats      {"requests","bids","notices","connections","raw_connections"}
 *   POST /_reset      forgets what was recorded
 *   GET  <other>      a notice (win/loss/billing URL): recorded, 200 empty body
 * Raw port (one thread per connection, for what a well-behaved server cannot do): after
 * reading a request, by path: /reset (TCP reset), /garbage (bytes that are not HTTP), /close
 * (closes without answering), /truncated (a response cut short), /hang (waits for the peer).
 *
 * Flags: --listen HOST:PORT (127.0.0.1:0), --port-file F (writes {"listen":P,"raw":R}), --threads
 * N (1), --mode M (bid), --delay-ms N, --price P (1.5), --cur C (USD), --seat S (testbidder),
 * --gzip (gzip responses when the client accepts it), --hang-ms N (60000), --no-record,
 * --record-max N (10000), --no-notices (bids without nurl/lurl/burl), --fast (mode bid without
 * a JSON parser: the request id and first imp id are found by a scan and the bid written from a
 * template, 300x250; requests it cannot scan take the full path; for benchmarks, where the
 * bidders share the cores with the exchange under test).
 * Stops on SIGTERM/SIGINT. Memory: recorded requests live until /_reset or exit.
 */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <zlib.h>

#include "../../src/core/ap_arena.h"
#include "../../src/core/ap_buf.h"
#include "../../src/core/ap_error.h"
#include "../../src/core/ap_log.h"
#include "../../src/net/ap_server.h"

enum mode { M_BID, M_NOBID, M_GARBAGE, M_ERROR, M_HANG, M_BIG, M_COUNT };
static const char *const mode_names[M_COUNT] = {"bid", "nobid", "garbage", "error", "hang", "big"};

static struct {
    char host[128];
    int port;
    const char *port_file;
    int threads;
    enum mode mode;
    int delay_ms;
    double price;
    const char *cur;
    const char *seat;
    bool gzip;
    int hang_ms;
    bool record;
    int record_max;
    bool notices;
    bool fast;
} opt = {.host = "127.0.0.1",
         .threads = 1,
         .mode = M_BID,
         .price = 1.5,
         .cur = "USD",
         .seat = "testbidder",
         .hang_ms = 60000,
         .record = true,
         .record_max = 10000,
         .notices = true};

/* ---- what was received (any worker thread; test-time volumes, so a mutex) ---- */

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *rec_requests, *rec_notices;
static _Atomic uint64_t n_requests, n_bids, n_notices, n_raw_conns;
static struct ap_server *server;

static json_t *span_json(struct ap_span s)
{
    return json_stringn_nocheck(s.p ? s.p : "", s.len);
}

static void record_request(const struct ap_http_req *r)
{
    if (!opt.record)
        return;
    json_t *h = json_object();
    for (unsigned i = 0; i < r->nheaders; i++) {
        char name[128];
        size_t n =
            r->headers[i].name.len < sizeof(name) - 1 ? r->headers[i].name.len : sizeof(name) - 1;
        for (size_t k = 0; k < n; k++) {
            char ch = r->headers[i].name.p[k];
            name[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); /* lower case */
        }
        name[n] = '\0';
        json_object_set_new(h, name, span_json(r->headers[i].value));
    }
    json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:o}", "method", ap_http_method_name(r->method), "path",
                          span_json(r->path), "query", span_json(r->query), "headers", h, "body",
                          span_json(r->body));
    pthread_mutex_lock(&rec_lock);
    if (o && json_array_size(rec_requests) < (size_t)opt.record_max)
        json_array_append(rec_requests, o);
    pthread_mutex_unlock(&rec_lock);
    json_decref(o);
}

/* ---- query-string helpers ---- */

/* The value of key in a query string ("a=1&b=2"), or an empty span. */
static struct ap_span query_get(struct ap_span q, const char *key, bool *found)
{
    size_t kl = strlen(key);
    *found = false;
    if (!q.p || q.len == 0)
        return ap_span_make("", 0);
    const char *p = q.p, *end = q.p + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        if ((size_t)(seg_end - p) >= kl && memcmp(p, key, kl) == 0 &&
            (p + kl == seg_end || p[kl] == '=')) {
            *found = true;
            const char *v = p + kl == seg_end ? seg_end : p + kl + 1;
            return ap_span_make(v, (size_t)(seg_end - v));
        }
        p = amp ? amp + 1 : end;
    }
    return ap_span_make("", 0);
}

static bool query_num(struct ap_span q, const char *key, double *out)
{
    bool found;
    struct ap_span v = query_get(q, key, &found);
    if (!found || v.len == 0 || v.len > 30)
        return false;
    char tmp[32];
    memcpy(tmp, v.p, v.len);
    tmp[v.len] = '\0';
    char *e;
    double d = strtod(tmp, &e);
    if (*e)
        return false;
    *out = d;
    return true;
}

static int parse_mode(const char *s, size_t len)
{
    for (int m = 0; m < M_COUNT; m++) {
        if (strlen(mode_names[m]) == len && memcmp(mode_names[m], s, len) == 0)
            return m;
    }
    return -1;
}

/* ---- building the answer ---- */

struct plan {
    enum mode mode;
    int delay_ms;
    double price;
    bool gzip;
    size_t big;
};

static void plan_from_object(struct plan *p, json_t *o)
{
    if (!json_is_object(o))
        return;
    json_t *v;
    if ((v = json_object_get(o, "mode")) && json_is_string(v)) {
        int m = parse_mode(json_string_value(v), json_string_length(v));
        if (m >= 0)
            p->mode = (enum mode)m;
    }
    if ((v = json_object_get(o, "delay_ms")) && json_is_number(v))
        p->delay_ms = (int)json_number_value(v);
    if ((v = json_object_get(o, "price")) && json_is_number(v))
        p->price = json_number_value(v);
    if ((v = json_object_get(o, "size")) && json_is_integer(v))
        p->big = (size_t)json_integer_value(v);
}

static json_t *imp_params(json_t *imp)
{
    json_t *ext = json_object_get(imp, "ext");
    json_t *p = json_object_get(ext, "test_bidder");
    if (!json_is_object(p))
        p = json_object_get(ext, "bidder");
    return json_is_object(p) ? p : NULL;
}

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* The first offered size of a banner imp (format[0], else w/h), else 300x250. */
static void imp_size(json_t *imp, json_int_t *w, json_int_t *h)
{
    *w = 300;
    *h = 250;
    json_t *b = json_object_get(imp, "banner");
    json_t *f = json_array_get(json_object_get(b, "format"), 0);
    json_t *src = f ? f : b;
    json_t *jw = json_object_get(src, "w"), *jh = json_object_get(src, "h");
    if (json_is_integer(jw) && json_is_integer(jh)) {
        *w = json_integer_value(jw);
        *h = json_integer_value(jh);
    }
}

static json_t *make_bid(json_t *req, json_t *imp, size_t i, const struct plan *pl,
                        struct ap_span host)
{
    json_t *ip = imp_params(imp);
    json_t *v;
    if (ip && (v = json_object_get(ip, "nobid")) && json_is_true(v))
        return NULL;
    const char *impid = str_or(imp, "id", "1");
    double price = pl->price;
    if (ip && (v = json_object_get(ip, "price")) && json_is_number(v))
        price = json_number_value(v);
    json_int_t w, h;
    imp_size(imp, &w, &h);
    if (ip && (v = json_object_get(ip, "w")) && json_is_integer(v))
        w = json_integer_value(v);
    if (ip && (v = json_object_get(ip, "h")) && json_is_integer(v))
        h = json_integer_value(v);
    char bidid[160], crid[64];
    snprintf(bidid, sizeof(bidid), "%s-bid-%zu", str_or(req, "id", "req"), i);
    snprintf(crid, sizeof(crid), "%s-creative-%zu", opt.seat, i);
    char adm[512];
    snprintf(adm, sizeof(adm),
             "<div class=\"test-bidder-ad\" data-seat=\"%s\" data-price=\"${AUCTION_PRICE}\" "
             "style=\"width:%lldpx;height:%lldpx;background:#2a6\">test bidder %s</div>",
             opt.seat, (long long)w, (long long)h, opt.seat);
    json_t *bid = json_pack("{s:s,s:s,s:f,s:s,s:s,s:s,s:I,s:I}", "id", bidid, "impid", impid,
                            "price", price, "adid", crid, "crid", crid, "adm",
                            ip ? str_or(ip, "adm", adm) : adm, "w", w, "h", h);
    if (!bid)
        return NULL;
    json_t *adomain = ip ? json_object_get(ip, "adomain") : NULL;
    json_object_set_new(bid, "adomain",
                        json_is_array(adomain) ? json_deep_copy(adomain)
                                               : json_pack("[s]", "testbidder.example"));
    json_t *cat = ip ? json_object_get(ip, "cat") : NULL;
    json_object_set_new(bid, "cat",
                        json_is_array(cat) ? json_deep_copy(cat) : json_pack("[s]", "IAB3"));
    /* a deal: asked by the params, else the imp's first deal */
    const char *deal = ip ? str_or(ip, "dealid", NULL) : NULL;
    if (!deal) {
        json_t *d = json_array_get(json_object_get(json_object_get(imp, "pmp"), "deals"), 0);
        deal = str_or(d, "id", NULL);
    }
    if (deal)
        json_object_set_new(bid, "dealid", json_string(deal));
    if (opt.notices) {
        char url[512];
        int hl = (int)(host.len < 200 ? host.len : 200);
        static const char *const kinds[3] = {"nurl", "lurl", "burl"};
        static const char *const paths[3] = {"win", "loss", "bill"};
        for (int k = 0; k < 3; k++) {
            snprintf(url, sizeof(url),
                     "http://%.*s/_n/%s?bid=%s&imp=${AUCTION_IMP_ID}&auction=${AUCTION_ID}"
                     "&price=${AUCTION_PRICE}%s",
                     hl, host.p, paths[k], bidid, k == 1 ? "&loss=${AUCTION_LOSS}" : "");
            json_object_set_new(bid, kinds[k], json_string(url));
        }
    }
    return bid;
}

/* The body for mode bid; NULL when no imp got a bid (answered 204). */
static char *bid_response(json_t *req, const struct plan *pl, struct ap_span host, size_t *len)
{
    json_t *bids = json_array();
    json_t *imps = json_object_get(req, "imp");
    for (size_t i = 0; i < json_array_size(imps); i++) {
        json_t *b = make_bid(req, json_array_get(imps, i), i, pl, host);
        if (b)
            json_array_append_new(bids, b);
    }
    if (json_array_size(bids) == 0) {
        json_decref(bids);
        return NULL;
    }
    json_t *resp = json_pack("{s:s,s:s,s:[{s:s,s:o}]}", "id", str_or(req, "id", ""), "cur", opt.cur,
                             "seatbid", "seat", opt.seat, "bid", bids);
    char *out = json_dumps(resp, JSON_COMPACT);
    json_decref(resp);
    *len = out ? strlen(out) : 0;
    return out;
}

static bool accepts_gzip(const struct ap_http_req *r)
{
    const struct ap_http_header *h = ap_http_find_header(r, "Accept-Encoding");
    if (!h)
        return false;
    for (size_t i = 0; i + 4 <= h->value.len; i++) {
        if (memcmp(h->value.p + i, "gzip", 4) == 0)
            return true;
    }
    return false;
}

/* gzip of in[len] into the arena; NULL on failure. */
static char *gzip_into(struct ap_arena *a, const char *in, size_t len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len) + 32;
    char *out = ap_arena_alloc(a, cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = z.total_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? out : NULL;
}

/* A response waiting for its time (mode delay, hang); lives in the exchange's arena. */
struct pending {
    struct ap_loop_timer timer;
    struct pending *prev, *next; /* the worker's waiting responses */
    struct ap_http_exchange *x;
    int status;
    const char *ctype;
    const char *body;
    size_t len;
    bool gzip;
};

static void send_now(struct ap_http_exchange *x, int status, const char *ctype, const char *body,
                     size_t len, bool gzip)
{
    if (gzip && len) {
        ap_http_add_header(x, "Content-Encoding", ap_span_cstr("gzip"));
        ap_http_add_header(x, "Vary", ap_span_cstr("Accept-Encoding"));
    }
    ap_http_respond(x, status, ctype, body, len);
}

/* Per worker: the responses waiting for their time, and a timer that answers them all at once
 * when the process is told to stop (so no exchange is left open at exit). */
static _Thread_local struct pending *waiting;
static _Thread_local struct ap_loop_timer stop_check;
static _Thread_local bool stop_check_armed;
static atomic_bool stopping;

static void pending_unlink(struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        waiting = p->next;
    if (p->next)
        p->next->prev = p->prev;
}

static void on_pending(struct ap_loop *loop, struct ap_loop_timer *t)
{
    (void)loop;
    struct pending *p = t->data;
    pending_unlink(p);
    send_now(p->x, p->status, p->ctype, p->body, p->len, p->gzip); /* p is gone after this */
}

static void on_stop_check(struct ap_loop *loop, struct ap_loop_timer *t)
{
    if (!atomic_load(&stopping)) {
        ap_loop_timer_start(loop, t, 50);
        return;
    }
    while (waiting) {
        struct pending *p = waiting;
        ap_loop_timer_stop(loop, &p->timer);
        on_pending(loop, &p->timer);
    }
}

static int answer(struct ap_http_exchange *x, int status, const char *ctype, const char *body,
                  size_t len, const struct plan *pl)
{
    bool gz = pl->gzip && len > 0 && status == 200;
    if (gz) {
        size_t zl = 0;
        char *z = gzip_into(x->arena, body, len, &zl);
        if (z) {
            body = z;
            len = zl;
        } else {
            gz = false;
        }
    }
    int wait = pl->mode == M_HANG ? opt.hang_ms : pl->delay_ms;
    if (wait <= 0) {
        send_now(x, status, ctype, body, len, gz);
        return AP_OK;
    }
    struct pending *p = ap_arena_alloc(x->arena, sizeof(*p));
    char *copy = len ? ap_arena_alloc(x->arena, len) : NULL;
    if (!p || (len && !copy))
        return ap_http_respond_error(x, 500, "internal", "out of memory");
    if (len)
        memcpy(copy, body, len);
    *p = (struct pending){
        .x = x, .status = status, .ctype = ctype, .body = copy, .len = len, .gzip = gz};
    ap_loop_timer_init(&p->timer, on_pending, p);
    ap_loop_timer_start(x->loop, &p->timer, (uint64_t)wait);
    p->prev = NULL;
    p->next = waiting;
    if (waiting)
        waiting->prev = p;
    waiting = p;
    if (!stop_check_armed) {
        stop_check_armed = true;
        ap_loop_timer_init(&stop_check, on_stop_check, NULL);
        ap_loop_timer_start(x->loop, &stop_check, 50);
    }
    return ap_http_defer(x);
}

/* The JSON string value that follows `key` (e.g. "\"imp\":[{\"id\":\"") in body, when it has
 * no escapes; false otherwise. */
static bool scan_string(struct ap_span body, const char *key, struct ap_span *out)
{
    size_t kl = strlen(key);
    const char *k = body.len >= kl ? memmem(body.p, body.len, key, kl) : NULL;
    if (!k)
        return false;
    const char *v = k + kl, *end = body.p + body.len;
    const char *q = memchr(v, '"', (size_t)(end - v));
    if (!q || memchr(v, '\\', (size_t)(q - v)) || q - v > 120)
        return false;
    *out = (struct ap_span){v, (size_t)(q - v)};
    return true;
}

/* --fast: one bid for the first imp from a template. AP_EAGAIN when the request does not scan. */
static int fast_bid(struct ap_http_exchange *x, const struct plan *pl)
{
    struct ap_span id, imp;
    if (!scan_string(x->req.body, "{\"id\":\"", &id) ||
        !scan_string(x->req.body, "\"imp\":[{\"id\":\"", &imp))
        return AP_EAGAIN;
    char notices[1024] = "";
    if (opt.notices) {
        int hl = (int)(x->req.host.len < 200 ? x->req.host.len : 200);
        snprintf(notices, sizeof(notices),
                 ",\"nurl\":\"http://%.*s/_n/win?bid=%.*s-bid-0&imp=${AUCTION_IMP_ID}"
                 "&auction=${AUCTION_ID}&price=${AUCTION_PRICE}\",\"lurl\":\"http://%.*s/_n/"
                 "loss?bid=%.*s-bid-0&imp=${AUCTION_IMP_ID}&auction=${AUCTION_ID}&price=${AUCTION"
                 "_PRICE}&loss=${AUCTION_LOSS}\",\"burl\":\"http://%.*s/_n/bill?bid=%.*s-bid-0"
                 "&imp=${AUCTION_IMP_ID}&auction=${AUCTION_ID}&price=${AUCTION_PRICE}\"",
                 hl, x->req.host.p, (int)id.len, id.p, hl, x->req.host.p, (int)id.len, id.p, hl,
                 x->req.host.p, (int)id.len, id.p);
    }
    size_t cap = 2048;
    char *b = ap_arena_alloc(x->arena, cap);
    if (!b)
        return ap_http_respond_error(x, 500, "internal", "out of memory");
    int n = snprintf(
        b, cap,
        "{\"id\":\"%.*s\",\"cur\":\"%s\",\"seatbid\":[{\"seat\":\"%s\",\"bid\":[{\"id\":"
        "\"%.*s-bid-0\",\"impid\":\"%.*s\",\"price\":%.6f,\"adid\":\"%s-creative-0\",\"crid\":"
        "\"%s-creative-0\",\"adm\":\"<div class=\\\"test-bidder-ad\\\" data-seat=\\\"%s\\\" "
        "data-price=\\\"${AUCTION_PRICE}\\\" style=\\\"width:300px;height:250px;background:#2a6"
        "\\\">test bidder %s</div>\",\"w\":300,\"h\":250,\"adomain\":[\"testbidder.example\"],"
        "\"cat\":[\"IAB3\"]%s}]}]}",
        (int)id.len, id.p, opt.cur, opt.seat, (int)id.len, id.p, (int)imp.len, imp.p, pl->price,
        opt.seat, opt.seat, opt.seat, opt.seat, notices);
    if (n < 0 || (size_t)n >= cap)
        return AP_EAGAIN;
    atomic_fetch_add_explicit(&n_bids, 1, memory_order_relaxed);
    int rc = answer(x, 200, "application/json", b, (size_t)n, pl);
    return rc == AP_HTTP_DEFERRED ? rc : AP_OK;
}

static int h_bid(struct ap_http_exchange *x)
{
    atomic_fetch_add_explicit(&n_requests, 1, memory_order_relaxed);
    record_request(&x->req);
    if (opt.fast && opt.mode == M_BID && !x->req.query.len) {
        struct plan fp = {.mode = M_BID, .delay_ms = opt.delay_ms, .price = opt.price,
                          .gzip = opt.gzip && accepts_gzip(&x->req), .big = 4096};
        int frc = fast_bid(x, &fp);
        if (frc != AP_EAGAIN)
            return frc;
    }
    struct plan pl = {.mode = opt.mode,
                      .delay_ms = opt.delay_ms,
                      .price = opt.price,
                      .gzip = opt.gzip,
                      .big = 4096};
    json_error_t jerr;
    json_t *req = json_loadb(x->req.body.p ? x->req.body.p : "", x->req.body.len, 0, &jerr);
    if (req)
        plan_from_object(&pl, json_object_get(json_object_get(req, "ext"), "test_bidder"));
    /* the query string wins */
    bool found;
    struct ap_span m = query_get(x->req.query, "mode", &found);
    if (found && parse_mode(m.p, m.len) >= 0)
        pl.mode = (enum mode)parse_mode(m.p, m.len);
    double d;
    if (query_num(x->req.query, "delay", &d))
        pl.delay_ms = (int)d;
    if (query_num(x->req.query, "price", &d))
        pl.price = d;
    if (query_num(x->req.query, "size", &d))
        pl.big = (size_t)d;
    if (query_num(x->req.query, "gzip", &d))
        pl.gzip = d != 0;
    pl.gzip = pl.gzip && accepts_gzip(&x->req);
    int rc;
    switch (pl.mode) {
    case M_NOBID:
        rc = answer(x, 204, NULL, NULL, 0, &pl);
        break;
    case M_GARBAGE: {
        static const char g[] = "<html>this is { not \"json\" at all";
        rc = answer(x, 200, "application/json", g, sizeof(g) - 1, &pl);
        break;
    }
    case M_ERROR:
        rc = answer(x, 500, "text/plain", "internal error", 14, &pl);
        break;
    case M_HANG:
        rc = answer(x, 204, NULL, NULL, 0, &pl);
        break;
    case M_BIG: {
        size_t n = pl.big < 64 * 1024 * 1024 ? pl.big : 64 * 1024 * 1024;
        char *b = ap_arena_alloc(x->arena, n ? n : 1);
        if (!b) {
            rc = ap_http_respond_error(x, 500, "internal", "out of memory");
            break;
        }
        memset(b, 'x', n);
        rc = answer(x, 200, "text/plain", b, n, &pl);
        break;
    }
    case M_BID:
    default: {
        if (!req) {
            rc = answer(x, 400, "text/plain", "Invalid request: not JSON", 25, &pl);
            break;
        }
        size_t len = 0;
        char *body = bid_response(req, &pl, x->req.host, &len);
        if (!body) {
            rc = answer(x, 204, NULL, NULL, 0, &pl);
            break;
        }
        atomic_fetch_add_explicit(&n_bids, 1, memory_order_relaxed);
        rc = answer(x, 200, "application/json", body, len, &pl);
        free(body);
        break;
    }
    }
    json_decref(req);
    return rc == AP_HTTP_DEFERRED ? rc : AP_OK;
}

static int h_notice(struct ap_http_exchange *x)
{
    atomic_fetch_add_explicit(&n_notices, 1, memory_order_relaxed);
    if (opt.record) {
        json_t *o = json_pack("{s:o,s:o}", "path", span_json(x->req.path), "query",
                              span_json(x->req.query));
        pthread_mutex_lock(&rec_lock);
        if (o && json_array_size(rec_notices) < (size_t)opt.record_max)
            json_array_append(rec_notices, o);
        pthread_mutex_unlock(&rec_lock);
        json_decref(o);
    }
    return ap_http_respond(x, 200, "text/plain", "", 0);
}

static int respond_json(struct ap_http_exchange *x, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    int rc = s ? ap_http_respond(x, 200, "application/json", s, strlen(s))
               : ap_http_respond_error(x, 500, "internal", "out of memory");
    free(s);
    return rc;
}

static int h_requests(struct ap_http_exchange *x)
{
    pthread_mutex_lock(&rec_lock);
    json_t *copy = json_copy(rec_requests); /* shallow: the items are immutable */
    pthread_mutex_unlock(&rec_lock);
    int rc = respond_json(x, copy);
    json_decref(copy);
    return rc;
}

static int h_notices(struct ap_http_exchange *x)
{
    pthread_mutex_lock(&rec_lock);
    json_t *copy = json_copy(rec_notices);
    pthread_mutex_unlock(&rec_lock);
    int rc = respond_json(x, copy);
    json_decref(copy);
    return rc;
}

static uint64_t connections(void)
{
    uint64_t n = 0;
    for (int i = 0; i < ap_server_threads(server); i++)
        n += atomic_load_explicit(&ap_server_metrics(server, i)->accepted, memory_order_relaxed);
    return n;
}

static int h_stats(struct ap_http_exchange *x)
{
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I}", "requests", (json_int_t)n_requests, "bids",
                          (json_int_t)n_bids, "notices", (json_int_t)n_notices, "connections",
                          (json_int_t)connections(), "raw_connections", (json_int_t)n_raw_conns);
    int rc = respond_json(x, o);
    json_decref(o);
    return rc;
}

static int h_reset(struct ap_http_exchange *x)
{
    pthread_mutex_lock(&rec_lock);
    json_array_clear(rec_requests);
    json_array_clear(rec_notices);
    pthread_mutex_unlock(&rec_lock);
    atomic_store(&n_requests, 0);
    atomic_store(&n_bids, 0);
    atomic_store(&n_notices, 0);
    return ap_http_respond(x, 200, "application/json", "{}", 2);
}

/* ---- the raw port: misbehaviour a proper HTTP server will not produce ---- */

static void *raw_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t got = 0;
    /* read the request head (and the body, by Content-Length), 5 s at most */
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            goto out;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            goto out;
        got += (size_t)n;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            size_t head = (size_t)(end + 4 - buf);
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
            if (got >= head + want || got == sizeof(buf) - 1)
                break;
        }
        if (got == sizeof(buf) - 1)
            break;
    }
    char path[256] = "";
    sscanf(buf, "%*s %255s", path);
    if (strncmp(path, "/reset", 6) == 0) {
        struct linger l = {.l_onoff = 1, .l_linger = 0}; /* close() sends RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    } else if (strncmp(path, "/garbage", 8) == 0) {
        static const char g[] = "SSH-2.0-OpenSSH_9.2\r\n\x01\x02\x03 not http at all\r\n\r\n";
        (void)!send(fd, g, sizeof(g) - 1, MSG_NOSIGNAL);
    } else if (strncmp(path, "/truncated", 10) == 0) {
        static const char t[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Content-Length: 400\r\n\r\n{\"id\":\"1\",\"seatbid\":[";
        (void)!send(fd, t, sizeof(t) - 1, MSG_NOSIGNAL);
    } else if (strncmp(path, "/hang", 5) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (poll(&p, 1, opt.hang_ms) > 0 && recv(fd, buf, sizeof(buf), 0) > 0) {
        }
    }
    /* "/close" and anything else: close without a response */
out:
    close(fd);
    return NULL;
}

static void *raw_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
                continue;
            return NULL;
        }
        atomic_fetch_add(&n_raw_conns, 1);
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        if (pthread_create(&t, &a, raw_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
        pthread_attr_destroy(&a);
    }
}

static int raw_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, opt.host, &a.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 512) < 0) {
        close(fd);
        return -1;
    }
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: test_bidder [--listen HOST:PORT] [--port-file F] [--threads N]\n"
            "  [--mode bid|nobid|garbage|error|hang|big] [--delay-ms N] [--price P] [--cur C]\n"
            "  [--seat S] [--gzip] [--hang-ms N] [--no-record] [--record-max N] "
            "[--no-notices] [--fast]\n");
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV                                                                                      \
    do {                                                                                           \
        if (!v)                                                                                    \
            return -1;                                                                             \
        i++;                                                                                       \
    } while (0)
        if (strcmp(a, "--listen") == 0) {
            NEEDV;
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof(opt.host))
                return -1;
            memcpy(opt.host, v, (size_t)(colon - v));
            opt.host[colon - v] = '\0';
            opt.port = (int)strtol(colon + 1, NULL, 10);
        } else if (strcmp(a, "--port-file") == 0) {
            NEEDV;
            opt.port_file = v;
        } else if (strcmp(a, "--threads") == 0) {
            NEEDV;
            opt.threads = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--mode") == 0) {
            NEEDV;
            int m = parse_mode(v, strlen(v));
            if (m < 0)
                return -1;
            opt.mode = (enum mode)m;
        } else if (strcmp(a, "--delay-ms") == 0) {
            NEEDV;
            opt.delay_ms = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--price") == 0) {
            NEEDV;
            opt.price = strtod(v, NULL);
        } else if (strcmp(a, "--cur") == 0) {
            NEEDV;
            opt.cur = v;
        } else if (strcmp(a, "--seat") == 0) {
            NEEDV;
            opt.seat = v;
        } else if (strcmp(a, "--hang-ms") == 0) {
            NEEDV;
            opt.hang_ms = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--record-max") == 0) {
            NEEDV;
            opt.record_max = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--gzip") == 0) {
            opt.gzip = true;
        } else if (strcmp(a, "--no-record") == 0) {
            opt.record = false;
        } else if (strcmp(a, "--no-notices") == 0) {
            opt.notices = false;
        } else if (strcmp(a, "--fast") == 0) {
            opt.fast = true;
        } else {
            return -1;
        }
#undef NEEDV
    }
    return opt.threads >= 1 && opt.threads <= 64 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage();
        return 2;
    }
    ap_log_set_level_name("warn");
    rec_requests = json_array();
    rec_notices = json_array();

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL); /* every thread inherits it; main sigwaits */
    signal(SIGPIPE, SIG_IGN);

    static struct ap_router router;
    ap_router_init(&router);
    int rc = 0;
    rc |= ap_router_add(&router, AP_M(GET), "/_requests", h_requests, NULL, NULL);
    rc |= ap_router_add(&router, AP_M(GET), "/_notices", h_notices, NULL, NULL);
    rc |= ap_router_add(&router, AP_M(GET), "/_stats", h_stats, NULL, NULL);
    rc |= ap_router_add(&router, AP_M(POST), "/_reset", h_reset, NULL, NULL);
    rc |= ap_router_add(&router, AP_M(POST), "/*", h_bid, NULL, "bid");
    rc |= ap_router_add(&router, AP_M(GET), "/*", h_notice, NULL, "notice");
    if (rc) {
        fprintf(stderr, "test_bidder: cannot build the router\n");
        return 1;
    }
    struct ap_server_config sc = {
        .name = "bidder",
        .host = opt.host,
        .port = opt.port,
        .threads = opt.threads,
        .max_connections = 60000,
        .backlog = 4096,
        .limits = {.max_header_bytes = AP_HTTP_DEFAULT_MAX_HEADER_BYTES,
                   .max_uri = AP_HTTP_DEFAULT_MAX_URI,
                   .max_body = AP_HTTP_DEFAULT_MAX_BODY,
                   .max_header_count = AP_HTTP_DEFAULT_MAX_HEADER_COUNT},
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 120000,
        .drain_timeout_ms = 500,
        .max_response = 80 * 1024 * 1024,
        .router = &router,
        .io_backend = AP_LOOP_EPOLL,
    };
    int err = 0;
    server = ap_server_create(&sc, &err);
    if (!server) {
        fprintf(stderr, "test_bidder: cannot listen on %s:%d: %s\n", opt.host, opt.port,
                ap_strerror(err));
        return 1;
    }
    int raw_port = 0;
    int raw_fd = raw_listen(&raw_port);
    pthread_t raw_thread;
    if (raw_fd < 0 || pthread_create(&raw_thread, NULL, raw_main, (void *)(intptr_t)raw_fd)) {
        fprintf(stderr, "test_bidder: cannot start the raw listener\n");
        return 1;
    }
    pthread_detach(raw_thread);
    if ((rc = ap_server_start(server)) != AP_OK) {
        fprintf(stderr, "test_bidder: cannot start: %s\n", ap_strerror(rc));
        return 1;
    }
    ap_server_set_ready(server, true);
    if (opt.port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", opt.port_file);
        FILE *f = fopen(tmp, "w");
        if (!f ||
            fprintf(f, "{\"listen\": %d, \"raw\": %d}\n", ap_server_port(server), raw_port) < 0 ||
            fclose(f) != 0 || rename(tmp, opt.port_file) != 0) {
            fprintf(stderr, "test_bidder: cannot write %s\n", opt.port_file);
            return 1;
        }
    }
    fprintf(stderr, "test_bidder: listening on %s:%d (raw %d), %d thread(s)\n", opt.host,
            ap_server_port(server), raw_port, opt.threads);
    int sig = 0;
    sigwait(&mask, &sig);
    atomic_store(&stopping, true); /* answer what waits (hang, delay), then drain */
    usleep(120 * 1000);
    ap_server_drain(server);
    ap_server_join(server);
    ap_server_destroy(server);
    close(raw_fd);
    json_decref(rec_requests);
    json_decref(rec_notices);
    return 0;
}
