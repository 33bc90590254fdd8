/*
 * ap_rtb: POST /openrtb2/auction and POST /openrtb2/bid (ap_rtb.h).
 *
 * An auction: parse (ap_ortb) -> normalise 2.5 ext locations -> validate (400 "Invalid request:
 * ...", plain text, as Prebid Server) -> per imp, the placement (imp.ext.prebid.bidder.adplatform
 * .placement, imp.ext.adplatform.placement (moved there by normalisation), imp.ext.prebid
 * .storedrequest.id, imp.tagid) and the banner sizes -> our campaigns bid through the decision
 * engine (dry run) -> per imp, invalid bids are dropped with an OpenRTB loss reason, the best
 * valid bid wins (deals first when pmp.private_auction is set; first price, or second price when
 * at = 2) -> the winner is counted (ap_serve_rtb_commit) -> the BidResponse is written.
 * Everything lives in the request arena; the response buffer is per worker.
 */
#include "ap_rtb.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"
#include "../events/ap_beacon.h"
#include "../events/ap_evlog.h"
#include "../events/ap_token.h"
#include "../net/ap_http_client.h"
#include "../net/ap_server.h"
#include "../serve/ap_serve.h"
#include "ap_ortb.h"
#include "ap_rtb_billing.h"
#include "ap_rtb_internal.h"

#define MAX_WORKERS 256

/* OpenRTB 2.6 loss reason codes (list "Loss Reason Codes"). */
enum {
    LOSS_WON = 0,
    LOSS_INTERNAL = 1,
    LOSS_IMP_EXPIRED = 2,
    LOSS_INVALID_BID = 3,
    LOSS_INVALID_DEAL = 4,
    LOSS_INVALID_AUCTION = 5,
    LOSS_INVALID_ADOMAIN = 6,
    LOSS_MISSING_MARKUP = 7,
    LOSS_LOST_HIGHER = 102,
    LOSS_LOST_PMP = 103,
    LOSS_BELOW_FLOOR = 100,
    LOSS_BELOW_DEAL_FLOOR = 101,
    LOSS_SIZE = 203,            /* Creative Filtered - Size Not Allowed */
    LOSS_BLOCKED_ADOMAIN = 205, /* Creative Filtered - Advertiser Exclusions */
    LOSS_BLOCKED_CAT = 209      /* Creative Filtered - Category Exclusions */
};

/* ap_rtb_exchange_added_seconds: how long an auction with outside bidders took beyond its
 * slowest bidder's answer (as our client measured it), for auctions where every called bidder
 * answered in time: parsing, fan-out, response parsing, the auction, writing the answer. */
#define ADDED_BUCKETS 9
static const uint64_t ADDED_LE_US[ADDED_BUCKETS - 1] = {50,   100,  250,  500,
                                                         1000, 2000, 5000, 10000};

struct counters {
    _Atomic uint64_t auctions, invalid, imps, bids, wins, nobids, bid_requests, bid_nobids;
    _Atomic uint64_t partner_requests, partner_timeouts, partner_bids, partner_wins, notices;
    _Atomic uint64_t added[ADDED_BUCKETS], added_count, added_sum_us;
} __attribute__((aligned(64)));

static struct {
    bool started;
    int threads;
    struct ap_evlog *evlog;
    bool partners;
    struct counters c[MAX_WORKERS];
} G;

/* Response buffers, one per worker (by worker id, only that worker touches its own), freed by
 * ap_rtb_stop once the data plane has stopped. */
static struct out_slot {
    struct ap_buf b;
    bool ready;
} __attribute__((aligned(64))) OUT[MAX_WORKERS];
static _Thread_local uint64_t tl_rng;

static struct ap_buf *out_buf(struct ap_http_exchange *x)
{
    struct out_slot *o = &OUT[(unsigned)x->worker_id % MAX_WORKERS];
    if (!o->ready) {
        ap_buf_init(&o->b, AP_RTB_MAX_RESPONSE);
        o->ready = true;
    }
    o->b.len = 0;
    return &o->b;
}

static uint64_t rng_next(int worker)
{
    if (!tl_rng)
        tl_rng = ap_time_mono_ns() ^ ((uint64_t)(worker + 1) * 0x9E3779B97F4A7C15ull);
    tl_rng ^= tl_rng << 13;
    tl_rng ^= tl_rng >> 7;
    tl_rng ^= tl_rng << 17;
    return tl_rng;
}

static struct counters *ctr(struct ap_http_exchange *x)
{
    return &G.c[x->worker_id % MAX_WORKERS];
}

/* ---- price granularity ------------------------------------------------------------------------
 */

struct pg_range {
    int64_t max, inc; /* micros */
};

void ap_rtb_price_bucket(int64_t cpm, const char *g, char *out, size_t cap)
{
    static const struct pg_range LOW[] = {{5000000, 500000}};
    static const struct pg_range MED[] = {{20000000, 100000}};
    static const struct pg_range HIGH[] = {{20000000, 10000}};
    static const struct pg_range AUTO[] = {
        {5000000, 50000}, {10000000, 100000}, {20000000, 500000}};
    static const struct pg_range DENSE[] = {{3000000, 10000}, {8000000, 50000}, {20000000, 500000}};
    const struct pg_range *r = MED;
    int n = 1;
    if (g && strcmp(g, "low") == 0)
        r = LOW;
    else if (g && strcmp(g, "high") == 0)
        r = HIGH;
    else if (g && strcmp(g, "auto") == 0)
        r = AUTO, n = 3;
    else if (g && strcmp(g, "dense") == 0)
        r = DENSE, n = 3;
    int64_t b = 0;
    if (cpm > 0) {
        if (cpm >= r[n - 1].max) {
            b = r[n - 1].max; /* capped at the top of the last range */
        } else {
            for (int i = 0; i < n; i++) {
                if (cpm < r[i].max) {
                    b = cpm / r[i].inc * r[i].inc;
                    break;
                }
            }
        }
    }
    snprintf(out, cap, "%lld.%02lld", (long long)(b / 1000000), (long long)(b % 1000000 / 10000));
}

/* ---- HTTP helpers --------------------------------------------------------------------------- */

static void cors(struct ap_http_exchange *x)
{
    const struct ap_http_header *o = ap_http_find_header(&x->req, "Origin");
    if (o && o->value.len) {
        ap_http_add_header(x, "Access-Control-Allow-Origin", o->value);
        ap_http_add_header(x, "Access-Control-Allow-Credentials", AP_SPAN_LIT("true"));
        ap_http_add_header(x, "Vary", AP_SPAN_LIT("Origin"));
    } else {
        ap_http_add_header(x, "Access-Control-Allow-Origin", AP_SPAN_LIT("*"));
    }
}

static int h_preflight(struct ap_http_exchange *x)
{
    cors(x);
    ap_http_add_header(x, "Access-Control-Allow-Methods", AP_SPAN_LIT("POST, OPTIONS"));
    const struct ap_http_header *h = ap_http_find_header(&x->req, "Access-Control-Request-Headers");
    ap_http_add_header(x, "Access-Control-Allow-Headers",
                       h && h->value.len ? h->value : AP_SPAN_LIT("Content-Type"));
    ap_http_add_header(x, "Access-Control-Max-Age", AP_SPAN_LIT("600"));
    return ap_http_respond(x, 204, NULL, NULL, 0);
}

static int bad_request(struct ap_http_exchange *x, const char *msg)
{
    AP_COUNTER_ADD(ctr(x)->invalid, 1);
    char body[AP_ORTB_ERR_MAX + 32];
    int n = snprintf(body, sizeof(body), "Invalid request: %s\n", msg);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    cors(x);
    return ap_http_respond(x, 400, "text/plain; charset=utf-8", body, (size_t)n);
}

/* ---- the request's view for our demand --------------------------------------------------------
 */

/* The placement an imp names for our demand, 0 if none. */
static int64_t imp_placement(const struct ap_ortb_imp *imp)
{
    int64_t id;
    struct ap_span v;
    if (imp->ext && imp->ext->prebid && imp->ext->prebid->bidder) {
        const struct ap_ortb_kv *kv = ap_ortb_unk_find(&imp->ext->prebid->bidder->unk, AP_RTB_SEAT);
        if (kv && ap_ortb_raw_member(kv->val, "placement", &v) == AP_OK && ap_ortb_raw_id(v, &id))
            return id;
        if (kv && ap_ortb_raw_member(kv->val, "placementId", &v) == AP_OK && ap_ortb_raw_id(v, &id))
            return id;
    }
    if (imp->ext && imp->ext->prebid && imp->ext->prebid->storedrequest) {
        uint64_t u;
        if (ap_span_to_u64(imp->ext->prebid->storedrequest->id, INT64_MAX, &u) && u)
            return (int64_t)u;
    }
    uint64_t u;
    if (ap_span_to_u64(imp->tagid, INT64_MAX, &u) && u)
        return (int64_t)u;
    return 0;
}

static void imp_sizes(const struct ap_ortb_imp *imp, struct ap_serve_rtb_imp *out)
{
    out->nsizes = 0;
    const struct ap_ortb_banner *b = imp->banner;
    if (!b)
        return;
    for (uint32_t k = 0; k < b->nformat && out->nsizes < AP_SERVE_RTB_MAX_SIZES; k++) {
        int64_t w = b->format[k].w, h = b->format[k].h;
        if (w > 0 && h > 0 && w <= 65535 && h <= 65535) {
            out->w[out->nsizes] = (uint16_t)w;
            out->h[out->nsizes++] = (uint16_t)h;
        }
    }
    if (b->w > 0 && b->h > 0 && b->w <= 65535 && b->h <= 65535 &&
        out->nsizes < AP_SERVE_RTB_MAX_SIZES) {
        out->w[out->nsizes] = (uint16_t)b->w;
        out->h[out->nsizes++] = (uint16_t)b->h;
    }
}

static bool cur_ok(struct ap_span cur)
{
    return cur.len == 0 || ap_span_eq_cstr(cur, AP_RTB_CURRENCY);
}

static int64_t to_micros(double cpm)
{
    if (!(cpm > 0))
        return 0;
    if (cpm > 1e9)
        return INT64_MAX / 2;
    return (int64_t)(cpm * 1e6 + 0.5);
}

static bool span_in(struct ap_span s, const struct ap_span *list, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (ap_span_eq(s, list[i]))
            return true;
    return false;
}

static void rtb_in(struct ap_http_exchange *x, const struct ap_ortb_request *r,
                   struct ap_serve_rtb_in *in)
{
    (void)x;
    memset(in, 0, sizeof(*in));
    if (r->device) {
        in->ip = r->device->ip.len ? r->device->ip : r->device->ipv6;
        in->ua = r->device->ua;
        if (r->device->lmt == 1)
            in->no_personal = true;
    }
    if (r->site) {
        in->page_url = r->site->page;
        in->referrer = r->site->ref;
    }
    if (r->regs) {
        in->gdpr = r->regs->gdpr == 1;
        if (r->regs->coppa == 1)
            in->no_personal = true;
    }
    if (r->user) {
        in->tcf = r->user->consent; /* our user key: our cookie (the auction is first party) */
    }
}

/* ---- the auction ------------------------------------------------------------------------------
 */

/* One bid in an imp's auction: ours (src < 0) or a partner's. Prices in micros of our currency,
 * partner bids after the bid adjustment. */
struct cand {
    int src;                     /* -1 ours, else index into auction.calls */
    uint32_t imp;                /* index into r->imp; UINT32_MAX: unknown impid */
    const struct ap_ortb_bid *b; /* partner bid (NULL for ours) */
    struct ap_span seat;         /* seat written in the response */
    struct ap_span bidid;        /* the partner's BidResponse.bidid (${AUCTION_BID_ID}) */
    int64_t price;               /* adjusted, our currency */
    double adj;                  /* partner bid adjustment (1 for ours) */
    bool deal;
    int loss;      /* LOSS_WON, a loss/drop reason; -1 not decided */
    int64_t clear; /* winner: clearing price (our currency); losers: min to win */
};

enum call_state { CALL_PENDING, CALL_BIDS, CALL_NOBID, CALL_TIMEOUT, CALL_ERROR, CALL_REFUSED };

struct call {
    struct ap_rtb_partner p; /* a copy: the worker's table may change while we wait */
    enum call_state state;
    uint64_t ms;
    char err[128];
    struct ap_ortb_response *resp;
    bool named; /* named in imp.ext.prebid.bidder */
};

struct imp_state {
    const struct ap_ortb_imp *imp;
    struct ap_serve_rtb_imp q;
    struct ap_serve_rtb_bid ours;
    int loss;             /* ours: LOSS_WON or why it lost / was dropped (-1 = no bid) */
    int64_t clear_micros; /* clearing price of the winner */
    int64_t floor;        /* imp floor in our currency micros (0 = none) */
    char bid_id[17];
    int win; /* index into auction.cands of the winner, -1 none */
};

struct auction {
    const struct ap_ortb_request *r;
    struct imp_state *imps;
    uint32_t nimps;
    uint64_t start_ns;
    bool debug, targeting, include_winners, include_bidder_keys;
    char granularity[16];
    bool ours_requested; /* some imp names our demand */
    uint64_t ours_ms;
    struct call *calls;
    int ncalls, pending;
    uint64_t slowest_us; /* the slowest in-time partner answer (client-measured) */
    bool partner_timed_out;
    struct cand *cands;
    uint32_t ncands;
    struct ap_http_exchange *x;
};

/* The deferred part: malloc'd so partner callbacks arriving after the answer (their exchange
 * and arena are gone by then) still find it; freed by the last reference. */
struct pending {
    int refs; /* 1 (the auction) + one per partner request in flight */
    bool done;
    struct auction *au;
    struct ap_loop *loop;
    struct ap_loop_timer timer;
    struct cb_arg {
        struct pending *pd;
        int idx;
    } args[];
};

static void pending_unref(struct pending *pd)
{
    if (--pd->refs == 0)
        free(pd);
}

static int64_t floor_micros(const struct ap_ortb_imp *imp)
{
    if (!(imp->bidfloor > 0))
        return 0;
    int64_t m = 0;
    if (ap_rtb_rate_convert(imp->bidfloor, imp->bidfloorcur, &m))
        return m;
    return 0; /* a currency without a rate: no floor applied (documented) */
}

static const struct ap_ortb_deal *find_deal(const struct ap_ortb_imp *imp, struct ap_span id)
{
    if (!imp->pmp || !id.len)
        return NULL;
    for (uint32_t k = 0; k < imp->pmp->ndeals; k++)
        if (ap_span_eq(imp->pmp->deals[k].id, id))
            return &imp->pmp->deals[k];
    return NULL;
}

static bool size_offered(const struct imp_state *st, int64_t w, int64_t h)
{
    if (w <= 0 || h <= 0 || !st->q.nsizes)
        return true; /* no size in the bid, or none in the imp: nothing to check */
    for (int k = 0; k < st->q.nsizes; k++)
        if (st->q.w[k] == w && st->q.h[k] == h)
            return true;
    return false;
}

/* Validity of a partner bid: 0 when valid, else an OpenRTB loss reason. */
static int check_partner_bid(const struct auction *au, struct cand *c, struct ap_span cur)
{
    const struct ap_ortb_request *r = au->r;
    const struct ap_ortb_bid *b = c->b;
    if (c->imp == UINT32_MAX)
        return LOSS_INVALID_BID; /* unknown impid */
    const struct imp_state *st = &au->imps[c->imp];
    if (!(b->price > 0))
        return LOSS_INVALID_BID;
    int64_t m = 0;
    if (!ap_rtb_rate_convert(b->price * c->adj, cur, &m))
        return LOSS_INVALID_BID; /* a currency we have no rate for */
    c->price = m;
    if (c->price <= 0)
        return LOSS_INVALID_BID;
    if (!b->adm.len && !b->nurl.len)
        return LOSS_MISSING_MARKUP;
    for (uint32_t k = 0; k < b->nadomain; k++)
        if (r->nbadv && span_in(b->adomain[k], r->badv, r->nbadv))
            return LOSS_BLOCKED_ADOMAIN;
    for (uint32_t k = 0; k < b->ncat; k++)
        if (r->nbcat && span_in(b->cat[k], r->bcat, r->nbcat))
            return LOSS_BLOCKED_CAT;
    if (!size_offered(st, b->w, b->h))
        return LOSS_SIZE;
    if (b->dealid.len) {
        const struct ap_ortb_deal *d = find_deal(st->imp, b->dealid);
        if (!d)
            return LOSS_INVALID_DEAL;
        c->deal = true;
        int64_t df = 0;
        if (d->bidfloor > 0 && ap_rtb_rate_convert(d->bidfloor, d->bidfloorcur, &df) &&
            c->price < df)
            return LOSS_BELOW_DEAL_FLOOR;
        return 0;
    }
    if (st->imp->pmp && st->imp->pmp->private_auction == 1)
        return LOSS_LOST_PMP; /* private auction: deals only */
    if (c->price < st->floor)
        return LOSS_BELOW_FLOOR;
    return 0;
}

static int check_our_bid(const struct auction *au, struct imp_state *st)
{
    const struct ap_ortb_request *r = au->r;
    const struct ap_serve_rtb_bid *b = &st->ours;
    if (r->nbadv && b->adomain.len && span_in(b->adomain, r->badv, r->nbadv))
        return LOSS_BLOCKED_ADOMAIN;
    if (st->imp->pmp && st->imp->pmp->private_auction == 1)
        return LOSS_LOST_PMP; /* our campaigns carry no deal ids */
    if (b->price_micros <= 0)
        return LOSS_INVALID_BID;
    if (b->price_micros < st->floor)
        return LOSS_BELOW_FLOOR;
    return 0;
}

/* Ranks valid bids: deals before open bids when the imp has a private auction or its deals
 * say so (pmp present and the bid has a deal: deals first), then price. */
static bool better(const struct cand *a, const struct cand *b, bool deals_first)
{
    if (deals_first && a->deal != b->deal)
        return a->deal;
    return a->price > b->price;
}

static void run_auctions(struct auction *au)
{
    const struct ap_ortb_request *r = au->r;
    for (uint32_t c = 0; c < au->ncands; c++) {
        struct cand *cd = &au->cands[c];
        if (cd->src < 0)
            cd->loss = check_our_bid(au, &au->imps[cd->imp]);
        else
            cd->loss = check_partner_bid(au, cd, au->calls[cd->src].resp->cur);
        if (cd->loss == 0)
            cd->loss = -1; /* valid, undecided */
    }
    for (uint32_t i = 0; i < au->nimps; i++) {
        struct imp_state *st = &au->imps[i];
        bool deals_first = st->imp->pmp != NULL;
        int best = -1, second = -1;
        for (uint32_t c = 0; c < au->ncands; c++) {
            struct cand *cd = &au->cands[c];
            if (cd->imp != i || cd->loss != -1)
                continue;
            if (best < 0 || better(cd, &au->cands[best], deals_first)) {
                second = best;
                best = (int)c;
            } else if (second < 0 || better(cd, &au->cands[second], deals_first)) {
                second = (int)c;
            }
        }
        st->win = best;
        if (best < 0)
            continue;
        struct cand *w = &au->cands[best];
        w->loss = LOSS_WON;
        int64_t fl = st->floor;
        if (w->deal) {
            const struct ap_ortb_deal *d = find_deal(st->imp, w->b->dealid);
            int64_t df = 0;
            if (d && d->bidfloor > 0 && ap_rtb_rate_convert(d->bidfloor, d->bidfloorcur, &df))
                fl = df;
        }
        w->clear = w->price;
        bool second_price = r->at == 2;
        if (second_price) {
            /* the next valid bid (or the floor) plus one cent, capped at the winner's bid */
            int64_t next =
                second >= 0 && au->cands[second].price > fl ? au->cands[second].price : fl;
            if (next > 0 || second >= 0) {
                int64_t p = next + 10000;
                w->clear = p < w->price ? p : w->price;
            }
        }
        st->clear_micros = w->clear;
        for (uint32_t c = 0; c < au->ncands; c++) {
            struct cand *cd = &au->cands[c];
            if (cd->imp != i || (int)c == best)
                continue;
            if (cd->loss == -1)
                cd->loss = w->deal && !cd->deal ? LOSS_LOST_PMP : LOSS_LOST_HIGHER;
            cd->clear = w->clear + 10000; /* ${AUCTION_MIN_TO_WIN} */
        }
    }
    for (uint32_t c = 0; c < au->ncands; c++)
        if (au->cands[c].loss == -1)
            au->cands[c].loss = LOSS_LOST_HIGHER;
    /* our own bid's outcome, as the rest of the module reads it */
    for (uint32_t i = 0; i < au->nimps; i++)
        au->imps[i].loss = -1;
    for (uint32_t c = 0; c < au->ncands; c++)
        if (au->cands[c].src < 0)
            au->imps[au->cands[c].imp].loss = au->cands[c].loss;
}

/* ---- macros and notices ------------------------------------------------------------------------
 */

struct macro_vals {
    struct ap_span auction_id, bid_id, imp_id, seat_id, ad_id;
    int64_t price; /* micros, in the bid's terms */
    int64_t min_to_win;
    int loss;
};

static void w_money(struct ap_buf *o, int64_t micros)
{
    ap_buf_printf(o, "%lld.%06lld", (long long)(micros / 1000000), (long long)(micros % 1000000));
}

static void w_val(struct ap_buf *o, struct ap_span v, bool url)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (!url || plain)
            ap_buf_append(o, &v.p[i], 1);
        else
            ap_buf_printf(o, "%%%02X", ch);
    }
}

/* Appends tmpl with the OpenRTB auction macros replaced (values percent-encoded when url). */
static int substitute(struct ap_buf *o, struct ap_span tmpl, const struct macro_vals *mv, bool url)
{
    static const char *const NAMES[] = {"AUCTION_ID",       "AUCTION_BID_ID", "AUCTION_IMP_ID",
                                        "AUCTION_SEAT_ID",  "AUCTION_AD_ID",  "AUCTION_PRICE",
                                        "AUCTION_CURRENCY", "AUCTION_LOSS",   "AUCTION_MIN_TO_WIN"};
    size_t start = o->len;
    size_t i = 0;
    while (i < tmpl.len) {
        const char *d = memchr(tmpl.p + i, '$', tmpl.len - i);
        if (!d) {
            ap_buf_append(o, tmpl.p + i, tmpl.len - i);
            break;
        }
        size_t at = (size_t)(d - tmpl.p);
        ap_buf_append(o, tmpl.p + i, at - i);
        int which = -1;
        size_t nl = 0;
        if (at + 2 < tmpl.len && tmpl.p[at + 1] == '{') {
            for (int k = 0; k < (int)(sizeof(NAMES) / sizeof(NAMES[0])); k++) {
                size_t l = strlen(NAMES[k]);
                if (at + 2 + l < tmpl.len && memcmp(tmpl.p + at + 2, NAMES[k], l) == 0 &&
                    tmpl.p[at + 2 + l] == '}') {
                    which = k;
                    nl = l;
                    break;
                }
            }
        }
        if (which < 0) {
            ap_buf_append(o, "$", 1);
            i = at + 1;
            continue;
        }
        switch (which) {
        case 0:
            w_val(o, mv->auction_id, url);
            break;
        case 1:
            w_val(o, mv->bid_id, url);
            break;
        case 2:
            w_val(o, mv->imp_id, url);
            break;
        case 3:
            w_val(o, mv->seat_id, url);
            break;
        case 4:
            w_val(o, mv->ad_id, url);
            break;
        case 5:
            w_money(o, mv->price);
            break;
        case 6:
            ap_buf_append_str(o, AP_RTB_CURRENCY);
            break;
        case 7:
            ap_buf_printf(o, "%d", mv->loss);
            break;
        default:
            w_money(o, mv->min_to_win);
            break;
        }
        i = at + 3 + nl;
    }
    return o->len >= start ? AP_OK : AP_ELIMIT;
}

static void cand_macros(const struct auction *au, const struct cand *c, struct macro_vals *mv)
{
    memset(mv, 0, sizeof(*mv));
    mv->auction_id = au->r->id;
    mv->bid_id = c->bidid.len ? c->bidid : (c->b ? c->b->id : AP_SPAN_NULL);
    mv->imp_id = c->imp != UINT32_MAX ? au->r->imp[c->imp].id : (c->b ? c->b->impid : AP_SPAN_NULL);
    mv->seat_id = c->seat;
    mv->ad_id = c->b ? c->b->adid : AP_SPAN_NULL;
    /* prices in the bid's own terms: before our bid adjustment */
    double adj = c->adj > 0 ? c->adj : 1.0;
    mv->price = (int64_t)((double)c->clear / adj + 0.5);
    mv->min_to_win = mv->price;
    mv->loss = c->loss;
}

static void log_event(struct ap_http_exchange *x, int type, const struct auction *au,
                      const struct cand *c, int64_t price)
{
    struct ap_evlog *log = G.evlog;
    if (!log || x->worker_id >= ap_evlog_rings(log))
        return;
    struct ap_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = (uint8_t)type;
    ev.flags = au->r->test == 1 ? AP_EV_F_TEST : 0;
    ev.count = 1;
    ev.reason = type == AP_EV_LOSS ? (uint16_t)c->loss : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev.time_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    ev.partner_id = c->src >= 0 ? au->calls[c->src].p.id : 0;
    if (c->src < 0) {
        const struct ap_serve_rtb_bid *b = &au->imps[c->imp].ours;
        ev.campaign_id = b->campaign_id;
        ev.ad_id = b->ad_id;
        ev.placement_id = au->imps[c->imp].q.placement_id;
    }
    ev.price_micros = price;
    ap_evlog_append(ap_evlog_ring(log, x->worker_id), &ev);
}

/* Fires nurl to the partner winners and lurl to the partner losers (server side, no callback,
 * retried), logs BID/WIN/LOSS. */
static void fire_notices(struct ap_http_exchange *x, struct auction *au)
{
    struct ap_hc *hc = NULL;
    struct ap_buf u;
    ap_buf_init(&u, 16384);
    for (uint32_t k = 0; k < au->ncands; k++) {
        const struct cand *c = &au->cands[k];
        if (c->src < 0)
            continue;
        log_event(x, AP_EV_BID, au, c, c->price);
        log_event(x, c->loss == LOSS_WON ? AP_EV_WIN : AP_EV_LOSS, au, c,
                  c->loss == LOSS_WON ? c->clear : c->price);
        AP_COUNTER_ADD(ctr(x)->partner_bids, 1);
        if (c->loss == LOSS_WON)
            AP_COUNTER_ADD(ctr(x)->partner_wins, 1);
        struct ap_span url = c->loss == LOSS_WON ? c->b->nurl : c->b->lurl;
        if (!url.len || au->r->test == 1)
            continue;
        if (!hc && !(hc = ap_hc_worker(x->loop)))
            break;
        struct macro_vals mv;
        cand_macros(au, c, &mv);
        u.len = 0;
        if (substitute(&u, url, &mv, true) != AP_OK || ap_buf_append(&u, "", 1) != AP_OK)
            continue;
        struct ap_hc_req rq = {.method = "GET", .url = u.data, .timeout_ms = 2000, .retries = 2};
        if (ap_hc_send(hc, &rq, NULL, NULL) == AP_OK)
            AP_COUNTER_ADD(ctr(x)->notices, 1);
    }
    ap_buf_free(&u);
}

/* ---- the response -------------------------------------------------------------------------- */

static int w_targeting(struct ap_buf *o, const struct auction *au, int64_t price, unsigned w,
                       unsigned h, struct ap_span seat)
{
    char pb[32], size[32], sc[AP_RTB_PARTNER_CODE_MAX];
    ap_rtb_price_bucket(price, au->granularity, pb, sizeof(pb));
    snprintf(size, sizeof(size), "%ux%u", w, h);
    snprintf(sc, sizeof(sc), "%.*s", AP_SPAN_FMT(seat));
    int rc = ap_buf_append_str(o, ",\"targeting\":{");
    bool first = true;
    if (au->include_winners) {
        rc |= ap_buf_printf(o, "\"hb_pb\":\"%s\",\"hb_bidder\":\"%s\",\"hb_size\":\"%s\"", pb, sc,
                            size);
        first = false;
    }
    if (au->include_bidder_keys) {
        char k[3][64];
        snprintf(k[0], sizeof(k[0]), "hb_pb_%s", sc);
        snprintf(k[1], sizeof(k[1]), "hb_bidder_%s", sc);
        snprintf(k[2], sizeof(k[2]), "hb_size_%s", sc);
        for (int i = 0; i < 3; i++)
            k[i][AP_RTB_TARGETING_KEY_MAX] = '\0';
        rc |= ap_buf_printf(o, "%s\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":\"%s\"", first ? "" : ",",
                            k[0], pb, k[1], sc, k[2], size);
    }
    rc |= ap_buf_append_str(o, "}");
    return rc ? AP_ELIMIT : AP_OK;
}

static int w_our_bid(struct ap_buf *o, const struct auction *au, const struct imp_state *st)
{
    const struct ap_serve_rtb_bid *b = &st->ours;
    int rc = ap_buf_append_str(o, "{\"id\":\"");
    rc |= ap_buf_append_str(o, st->bid_id);
    rc |= ap_buf_append_str(o, "\",\"impid\":");
    rc |= ap_ortb_w_str(o, st->imp->id);
    rc |= ap_buf_append_str(o, ",\"price\":");
    rc |= ap_ortb_w_double(o, (double)st->clear_micros / 1e6);
    rc |= ap_buf_append_str(o, ",\"adm\":");
    rc |= ap_ortb_w_str(o, b->adm);
    rc |= ap_buf_printf(o, ",\"adid\":\"%lld\"", (long long)b->ad_id);
    if (b->adomain.len) {
        rc |= ap_buf_append_str(o, ",\"adomain\":[");
        rc |= ap_ortb_w_str(o, b->adomain);
        rc |= ap_buf_append_str(o, "]");
    }
    rc |= ap_buf_printf(o,
                        ",\"cid\":\"%lld\",\"crid\":\"%lld\",\"w\":%u,\"h\":%u,\"mtype\":1,"
                        "\"ext\":{\"prebid\":{\"type\":\"banner\"",
                        (long long)b->campaign_id, (long long)b->creative_id, (unsigned)b->w,
                        (unsigned)b->h);
    if (au->targeting)
        rc |= w_targeting(o, au, st->clear_micros, b->w, b->h, AP_SPAN_LIT(AP_RTB_SEAT));
    rc |= ap_buf_append_str(o, "}}}");
    return rc;
}

static const char *mtype_name(const struct ap_ortb_bid *b, const struct ap_ortb_imp *imp)
{
    switch (b->mtype) {
    case 1:
        return "banner";
    case 2:
        return "video";
    case 3:
        return "audio";
    case 4:
        return "native";
    default:
        break;
    }
    return imp->banner ? "banner" : imp->video ? "video" : imp->audio ? "audio" : "native";
}

/* Appends our impression pixel for url to the markup in t (ADR 0015, "Billing notices"): a VAST
 * <Impression> before the first </InLine> or </Wrapper> when the markup is VAST, else a hidden
 * 1x1 <img> at the end. false when it cannot be placed (VAST without either element). */
static bool add_pixel(struct ap_buf *t, const char *url, bool vast)
{
    struct ap_buf px;
    ap_buf_init(&px, 4096);
    int rc = ap_buf_append_str(&px, vast ? "<Impression><![CDATA[" : "<img src=\"");
    for (const char *p = url; *p; p++) {
        if (!vast && *p == '&')
            rc |= ap_buf_append_str(&px, "&amp;");
        else if (!vast && (*p == '"' || *p == '<' || *p == '>'))
            rc |= ap_buf_printf(&px, "%%%02X", (unsigned char)*p);
        else
            rc |= ap_buf_append(&px, p, 1);
    }
    rc |= ap_buf_append_str(&px, vast ? "]]></Impression>"
                                      : "\" width=\"1\" height=\"1\" alt=\"\" "
                                        "style=\"position:absolute;left:-9999px\">");
    bool ok = rc == AP_OK;
    if (ok && vast) {
        size_t at = SIZE_MAX;
        static const char *const ENDS[2] = {"</InLine>", "</Wrapper>"};
        for (int e = 0; e < 2; e++) {
            size_t el = strlen(ENDS[e]);
            for (size_t i = 0; t->len >= el && i + el <= t->len; i++)
                if (memcmp(t->data + i, ENDS[e], el) == 0) {
                    if (i < at)
                        at = i;
                    break;
                }
        }
        ok = at != SIZE_MAX && ap_buf_append(t, px.data, px.len) == AP_OK;
        if (ok) { /* move the tail after the insertion point behind the pixel */
            memmove(t->data + at + px.len, t->data + at, t->len - px.len - at);
            memcpy(t->data + at, px.data, px.len);
        }
    } else if (ok) {
        ok = ap_buf_append(t, px.data, px.len) == AP_OK;
    }
    ap_buf_free(&px);
    return ok;
}

/* For a winning partner bid with markup: our impression pixel into the markup in t and the
 * substituted burl into the billing table, keyed by the pixel's impression id. true when both
 * happened (the burl is then fired by us and not given to the page). */
static bool bill_behind_pixel(const struct auction *au, const struct cand *c, struct ap_buf *t,
                              const struct macro_vals *mv)
{
    const struct ap_ortb_bid *b = c->b;
    if (!b->adm.len || c->src < 0 || !au->x)
        return false;
    bool test = au->r->test == 1;
    bool vast =
        b->mtype == 2 || (!b->mtype && au->r->imp[c->imp].video && !au->r->imp[c->imp].banner);
    uint8_t imp_id[AP_TOKEN_ID_BYTES];
    char url[4096];
    int n = ap_serve_partner_imp_url(au->x->worker_id, au->calls[c->src].p.id,
                                     au->imps[c->imp].q.placement_id, 0, c->clear,
                                     test ? AP_TOKEN_F_TEST : 0, imp_id, url, sizeof(url));
    if (n < 0)
        return false;
    if (b->burl.len && !test) {
        struct ap_buf u;
        ap_buf_init(&u, 16384);
        int rc = substitute(&u, b->burl, mv, true);
        if (rc == AP_OK)
            rc = ap_rtb_billing_put(imp_id, au->calls[c->src].p.id, c->clear, u.data, u.len,
                                    ap_time_unix() + AP_TOKEN_TTL_IMP + AP_TOKEN_MAX_SKEW);
        ap_buf_free(&u);
        if (rc != AP_OK)
            return false; /* table full or URL too long: the page gets the burl as before */
    }
    size_t len0 = t->len;
    if (!add_pixel(t, url, vast)) {
        t->len = len0;
        struct ap_rtb_billing_entry e; /* unbilled: take it back, the page gets the burl */
        if (ap_rtb_billing_take(imp_id, ap_time_unix(), &e) == AP_OK)
            free(e.burl);
        return false;
    }
    return true;
}

static int w_partner_bid(struct ap_buf *o, const struct auction *au, const struct cand *c)
{
    const struct ap_ortb_bid *b = c->b;
    const struct ap_ortb_imp *imp = &au->r->imp[c->imp];
    struct macro_vals mv;
    cand_macros(au, c, &mv);
    bool billed = false;
    int rc = ap_buf_append_str(o, "{\"id\":");
    rc |= ap_ortb_w_str(o, b->id);
    rc |= ap_buf_append_str(o, ",\"impid\":");
    rc |= ap_ortb_w_str(o, imp->id);
    rc |= ap_buf_append_str(o, ",\"price\":");
    rc |= ap_ortb_w_double(o, (double)c->clear / 1e6);
    if (b->adm.len) {
        struct ap_buf t;
        ap_buf_init(&t, AP_HC_MAX_RESPONSE * 2);
        rc |= substitute(&t, b->adm, &mv, false);
        if (rc == AP_OK)
            billed = bill_behind_pixel(au, c, &t, &mv);
        rc |= ap_buf_append_str(o, ",\"adm\":");
        rc |= ap_ortb_w_str(o, ap_span_make(t.data ? t.data : "", t.len));
        ap_buf_free(&t);
    }
    /* nurl/lurl are fired by us (server side); so is burl, behind our impression pixel, when
     * the markup carries it (ADR 0015); otherwise burl is passed on for the page's renderer */
    if (b->burl.len && !billed) {
        struct ap_buf t;
        ap_buf_init(&t, 16384);
        rc |= substitute(&t, b->burl, &mv, true);
        rc |= ap_buf_append_str(o, ",\"burl\":");
        rc |= ap_ortb_w_str(o, ap_span_make(t.data ? t.data : "", t.len));
        ap_buf_free(&t);
    }
    if (b->adid.len) {
        rc |= ap_buf_append_str(o, ",\"adid\":");
        rc |= ap_ortb_w_str(o, b->adid);
    }
    if (b->nadomain) {
        rc |= ap_buf_append_str(o, ",\"adomain\":[");
        for (uint32_t k = 0; k < b->nadomain; k++) {
            rc |= ap_buf_append_str(o, k ? "," : "");
            rc |= ap_ortb_w_str(o, b->adomain[k]);
        }
        rc |= ap_buf_append_str(o, "]");
    }
    if (b->ncat) {
        rc |= ap_buf_append_str(o, ",\"cat\":[");
        for (uint32_t k = 0; k < b->ncat; k++) {
            rc |= ap_buf_append_str(o, k ? "," : "");
            rc |= ap_ortb_w_str(o, b->cat[k]);
        }
        rc |= ap_buf_append_str(o, "]");
    }
    if (b->cid.len) {
        rc |= ap_buf_append_str(o, ",\"cid\":");
        rc |= ap_ortb_w_str(o, b->cid);
    }
    if (b->crid.len) {
        rc |= ap_buf_append_str(o, ",\"crid\":");
        rc |= ap_ortb_w_str(o, b->crid);
    }
    if (b->dealid.len) {
        rc |= ap_buf_append_str(o, ",\"dealid\":");
        rc |= ap_ortb_w_str(o, b->dealid);
    }
    unsigned w = b->w > 0 && b->w <= 65535 ? (unsigned)b->w : 0;
    unsigned h = b->h > 0 && b->h <= 65535 ? (unsigned)b->h : 0;
    if (w && h)
        rc |= ap_buf_printf(o, ",\"w\":%u,\"h\":%u", w, h);
    const char *type = mtype_name(b, imp);
    if (b->mtype > 0 && b->mtype <= 4)
        rc |= ap_buf_printf(o, ",\"mtype\":%lld", (long long)b->mtype);
    rc |= ap_buf_printf(o, ",\"ext\":{\"prebid\":{\"type\":\"%s\"", type);
    if (au->targeting)
        rc |= w_targeting(o, au, c->clear, w, h, c->seat);
    rc |= ap_buf_append_str(o, "},\"origbidcpm\":");
    rc |= ap_ortb_w_double(o, b->price);
    rc |= ap_buf_append_str(o, "}}");
    return rc;
}

static bool seat_written(const struct auction *au, uint32_t upto, struct ap_span seat)
{
    for (uint32_t k = 0; k < upto; k++)
        if (au->cands[k].loss == LOSS_WON && ap_span_eq(au->cands[k].seat, seat))
            return true;
    return false;
}

static const char *call_state_name(enum call_state s)
{
    switch (s) {
    case CALL_TIMEOUT:
        return "timeout";
    case CALL_REFUSED:
        return "refused";
    default:
        return "error";
    }
}

static int write_response(struct ap_buf *o, const struct auction *au)
{
    const struct ap_ortb_request *r = au->r;
    int rc = ap_buf_append_str(o, "{\"id\":");
    rc |= ap_ortb_w_str(o, r->id);
    uint32_t nwin = 0;
    for (uint32_t k = 0; k < au->ncands; k++)
        nwin += au->cands[k].loss == LOSS_WON;
    if (nwin) {
        rc |= ap_buf_append_str(o, ",\"seatbid\":[");
        bool first_seat = true;
        for (uint32_t k = 0; k < au->ncands; k++) {
            const struct cand *c = &au->cands[k];
            if (c->loss != LOSS_WON || seat_written(au, k, c->seat))
                continue;
            rc |= ap_buf_append_str(o, first_seat ? "{\"seat\":" : ",{\"seat\":");
            first_seat = false;
            rc |= ap_ortb_w_str(o, c->seat);
            rc |= ap_buf_append_str(o, ",\"bid\":[");
            bool first = true;
            for (uint32_t j = k; j < au->ncands; j++) {
                const struct cand *d = &au->cands[j];
                if (d->loss != LOSS_WON || !ap_span_eq(d->seat, c->seat))
                    continue;
                rc |= ap_buf_append_str(o, first ? "" : ",");
                first = false;
                rc |= d->src < 0 ? w_our_bid(o, au, &au->imps[d->imp]) : w_partner_bid(o, au, d);
            }
            rc |= ap_buf_append_str(o, "]}");
        }
        rc |= ap_buf_append_str(o, "]");
    }
    rc |=
        ap_buf_append_str(o, ",\"cur\":\"" AP_RTB_CURRENCY "\",\"ext\":{\"responsetimemillis\":{");
    bool firstrt = true;
    if (au->ours_requested) {
        rc |= ap_buf_printf(o, "\"" AP_RTB_SEAT "\":%llu", (unsigned long long)au->ours_ms);
        firstrt = false;
    }
    for (int k = 0; k < au->ncalls; k++) {
        const struct call *cl = &au->calls[k];
        rc |= ap_buf_printf(o, "%s\"%s\":%llu", firstrt ? "" : ",", cl->p.code,
                            (unsigned long long)cl->ms);
        firstrt = false;
    }
    rc |= ap_buf_printf(o, "},\"tmaxrequest\":%lld",
                        (long long)(r->tmax > 0 ? r->tmax : AP_RTB_DEFAULT_TMAX_MS));
    /* errors: partners that failed or timed out (Prebid Server: code 1 timeout, 999 generic),
     * then bidder codes that are neither ours nor a configured partner */
    bool any_err = false;
    for (int k = 0; k < au->ncalls; k++) {
        const struct call *cl = &au->calls[k];
        if (cl->state != CALL_TIMEOUT && cl->state != CALL_ERROR && cl->state != CALL_REFUSED)
            continue;
        rc |= ap_buf_append_str(o, any_err ? "," : ",\"errors\":{");
        any_err = true;
        int code = cl->state == CALL_TIMEOUT ? 1 : 999;
        rc |= ap_buf_printf(o, "\"%s\":[{\"code\":%d,\"message\":", cl->p.code, code);
        rc |= ap_ortb_w_str(o, ap_span_cstr(cl->err[0] ? cl->err : call_state_name(cl->state)));
        rc |= ap_buf_append_str(o, "}]");
    }
    for (uint32_t i = 0; i < r->nimp; i++) {
        const struct ap_ortb_imp *imp = &r->imp[i];
        if (!imp->ext || !imp->ext->prebid || !imp->ext->prebid->bidder)
            continue;
        const struct ap_ortb_unk *u = &imp->ext->prebid->bidder->unk;
        for (uint32_t k = 0; k < u->n; k++) {
            if (ap_span_eq_cstr(u->v[k].key, AP_RTB_SEAT))
                continue;
            bool seen = false; /* report each bidder once; configured partners are not errors */
            for (int c = 0; c < au->ncalls && !seen; c++)
                seen = ap_span_eq_cstr(u->v[k].key, au->calls[c].p.code);
            for (uint32_t j = 0; j <= i && !seen; j++) {
                const struct ap_ortb_imp *p = &r->imp[j];
                if (!p->ext || !p->ext->prebid || !p->ext->prebid->bidder)
                    continue;
                const struct ap_ortb_unk *pu = &p->ext->prebid->bidder->unk;
                for (uint32_t q = 0; q < (j == i ? k : pu->n) && !seen; q++)
                    seen = ap_span_eq(pu->v[q].key, u->v[k].key);
            }
            if (seen)
                continue;
            rc |= ap_buf_append_str(o, any_err ? "," : ",\"errors\":{");
            any_err = true;
            rc |= ap_buf_append_str(o, "\"");
            rc |= ap_ortb_w_escaped(o, u->v[k].key);
            rc |= ap_buf_append_str(
                o, "\":[{\"code\":999,\"message\":\"unknown bidder: not a configured demand "
                   "partner\"}]");
        }
    }
    if (any_err)
        rc |= ap_buf_append_str(o, "}");
    if (au->debug) {
        rc |= ap_buf_append_str(o, ",\"debug\":{\"resolvedrequest\":");
        rc |= ap_ortb_write_request(o, r);
        rc |= ap_buf_append_str(o, ",\"auction\":[");
        for (uint32_t i = 0; i < au->nimps; i++) {
            const struct imp_state *st = &au->imps[i];
            rc |= ap_buf_append_str(o, i ? ",{\"impid\":" : "{\"impid\":");
            rc |= ap_ortb_w_str(o, st->imp->id);
            rc |= ap_buf_printf(o, ",\"placement\":%lld,\"bid\":%s,\"loss\":%d",
                                (long long)st->q.placement_id, st->ours.ok ? "true" : "false",
                                st->loss);
            if (st->ours.ok)
                rc |= ap_buf_printf(o, ",\"price_micros\":%lld", (long long)st->ours.price_micros);
            rc |= ap_buf_append_str(o, ",\"bids\":[");
            bool first = true;
            for (uint32_t k = 0; k < au->ncands; k++) {
                const struct cand *c = &au->cands[k];
                if (c->imp != i)
                    continue;
                rc |= ap_buf_append_str(o, first ? "{\"seat\":" : ",{\"seat\":");
                first = false;
                rc |= ap_ortb_w_str(o, c->seat);
                rc |= ap_buf_printf(o, ",\"price_micros\":%lld,\"deal\":%s,\"loss\":%d}",
                                    (long long)c->price, c->deal ? "true" : "false", c->loss);
            }
            rc |= ap_buf_append_str(o, "]}");
        }
        rc |= ap_buf_append_str(o, "],\"rejected\":[");
        bool first = true;
        for (uint32_t k = 0; k < au->ncands; k++) {
            const struct cand *c = &au->cands[k];
            if (c->imp != UINT32_MAX)
                continue;
            rc |= ap_buf_append_str(o, first ? "{\"seat\":" : ",{\"seat\":");
            first = false;
            rc |= ap_ortb_w_str(o, c->seat);
            rc |= ap_buf_append_str(o, ",\"impid\":");
            rc |= ap_ortb_w_str(o, c->b->impid);
            rc |= ap_buf_printf(o, ",\"loss\":%d}", c->loss);
        }
        rc |= ap_buf_append_str(o, "]}");
    }
    rc |= ap_buf_append_str(o, "}}");
    return rc ? AP_ELIMIT : AP_OK;
}

static void targeting_opts(struct auction *au)
{
    const struct ap_ortb_request *r = au->r;
    const struct ap_ortb_targeting *t = r->ext && r->ext->prebid ? r->ext->prebid->targeting : NULL;
    snprintf(au->granularity, sizeof(au->granularity), "medium");
    if (!t)
        return;
    au->targeting = true;
    au->include_winners = t->includewinners != 0;        /* default (unset): true */
    au->include_bidder_keys = t->includebidderkeys != 0; /* default (unset): true */
    struct ap_span g = t->pricegranularity;
    if (g.len >= 2 && g.p[0] == '"') {
        size_t n =
            g.len - 2 < sizeof(au->granularity) - 1 ? g.len - 2 : sizeof(au->granularity) - 1;
        memcpy(au->granularity, g.p + 1, n);
        au->granularity[n] = '\0';
    }
}

/* Parses, normalises and validates the body; on failure answers 400 and returns NULL. */
static struct ap_ortb_request *read_request(struct ap_http_exchange *x, int *rc_out)
{
    char msg[AP_ORTB_ERR_MAX];
    struct ap_ortb_request *r = NULL;
    int rc = ap_ortb_parse_request(x->req.body.p, x->req.body.len, x->arena, &r, msg, sizeof(msg));
    if (rc == AP_ENOMEM) {
        *rc_out = ap_http_respond_error(x, 500, "internal", "out of memory");
        return NULL;
    }
    if (rc == AP_OK)
        rc = ap_ortb_normalize(r, x->arena);
    if (rc == AP_OK)
        rc = ap_ortb_validate(r, msg, sizeof(msg));
    if (rc != AP_OK) {
        if (!x->req.body.len)
            snprintf(msg, sizeof(msg), "request body is empty");
        *rc_out = bad_request(x, msg[0] ? msg : ap_strerror(rc));
        return NULL;
    }
    return r;
}

/* Collects the candidates (our bids, then every partner's bids) and runs the auctions, counts
 * our winner, answers, fires the notices. */
static int finish(struct auction *au)
{
    struct ap_http_exchange *x = au->x;
    const struct ap_ortb_request *r = au->r;
    uint32_t n = 0;
    for (uint32_t i = 0; i < au->nimps; i++)
        n += au->imps[i].ours.ok;
    for (int k = 0; k < au->ncalls; k++) {
        const struct ap_ortb_response *rs = au->calls[k].resp;
        for (uint32_t s = 0; rs && s < rs->nseatbid; s++)
            n += rs->seatbid[s].nbid;
    }
    au->cands = ap_arena_calloc(x->arena, n ? n : 1, sizeof(*au->cands));
    if (!au->cands)
        return ap_http_respond_error(x, 500, "internal", "out of memory");
    for (uint32_t i = 0; i < au->nimps; i++) {
        struct imp_state *st = &au->imps[i];
        if (!st->ours.ok)
            continue;
        AP_COUNTER_ADD(ctr(x)->bids, 1);
        struct cand *c = &au->cands[au->ncands++];
        c->src = -1;
        c->imp = i;
        c->seat = AP_SPAN_LIT(AP_RTB_SEAT);
        c->price = st->ours.price_micros;
        c->adj = 1.0;
    }
    for (int k = 0; k < au->ncalls; k++) {
        const struct call *cl = &au->calls[k];
        const struct ap_ortb_response *rs = cl->resp;
        for (uint32_t s = 0; rs && s < rs->nseatbid; s++) {
            for (uint32_t j = 0; j < rs->seatbid[s].nbid; j++) {
                const struct ap_ortb_bid *b = &rs->seatbid[s].bid[j];
                struct cand *c = &au->cands[au->ncands++];
                c->src = k;
                c->b = b;
                c->imp = UINT32_MAX;
                for (uint32_t i = 0; i < r->nimp; i++)
                    if (ap_span_eq(r->imp[i].id, b->impid))
                        c->imp = i;
                c->seat = ap_span_cstr(cl->p.code); /* Prebid Server: the bidder code */
                c->bidid = rs->bidid;
                c->adj = cl->p.adjustment;
                c->loss = -1;
            }
        }
    }
    run_auctions(au);
    for (uint32_t i = 0; i < au->nimps; i++) {
        struct imp_state *st = &au->imps[i];
        if (st->loss == LOSS_WON) {
            snprintf(st->bid_id, sizeof(st->bid_id), "%016llx",
                     (unsigned long long)rng_next(x->worker_id));
            if (r->test != 1)
                ap_serve_rtb_commit(&st->ours);
            AP_COUNTER_ADD(ctr(x)->wins, 1);
        }
    }
    struct ap_buf *o = out_buf(x);
    if (write_response(o, au) != AP_OK)
        return ap_http_respond_error(x, 500, "internal", "response too large");
    fire_notices(x, au);
    cors(x);
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    return ap_http_respond(x, 200, "application/json", o->data, o->len);
}

static void pending_finish(struct pending *pd)
{
    if (pd->done)
        return;
    pd->done = true;
    ap_loop_timer_stop(pd->loop, &pd->timer);
    struct auction *au = pd->au;
    for (int k = 0; k < au->ncalls; k++) {
        struct call *cl = &au->calls[k];
        if (cl->state == CALL_PENDING) {
            cl->state = CALL_TIMEOUT;
            cl->ms = (ap_time_mono_ns() - au->start_ns) / 1000000;
            snprintf(cl->err, sizeof(cl->err), "Timeout");
            AP_COUNTER_ADD(ctr(au->x)->partner_timeouts, 1);
            au->partner_timed_out = true;
        }
    }
    /* read before finish(): the answer ends the exchange and its arena, where au lives */
    struct counters *c = ctr(au->x);
    bool measure = !au->partner_timed_out && au->slowest_us > 0;
    uint64_t start_ns = au->start_ns, slowest_us = au->slowest_us;
    finish(au);
    if (measure) {
        uint64_t took_us = (ap_time_mono_ns() - start_ns) / 1000;
        uint64_t added = took_us > slowest_us ? took_us - slowest_us : 0;
        int b = 0;
        while (b < ADDED_BUCKETS - 1 && added > ADDED_LE_US[b])
            b++;
        AP_COUNTER_ADD(c->added[b], 1);
        AP_COUNTER_ADD(c->added_count, 1);
        AP_COUNTER_ADD(c->added_sum_us, added);
    }
    pending_unref(pd);
}

static void on_deadline(struct ap_loop *loop, struct ap_loop_timer *t)
{
    (void)loop;
    pending_finish(t->data);
}

static void on_partner(void *arg, const struct ap_hc_resp *resp)
{
    struct cb_arg *a = arg;
    struct pending *pd = a->pd;
    if (!pd->done) {
        struct auction *au = pd->au;
        struct call *cl = &au->calls[a->idx];
        cl->ms = resp->elapsed_us / 1000;
        char msg[AP_ORTB_ERR_MAX];
        if (resp->err != AP_ETIMEDOUT && (uint64_t)resp->elapsed_us > au->slowest_us)
            au->slowest_us = (uint64_t)resp->elapsed_us;
        if (resp->err == AP_ETIMEDOUT) {
            au->partner_timed_out = true;
            cl->state = CALL_TIMEOUT;
            snprintf(cl->err, sizeof(cl->err), "Timeout");
            AP_COUNTER_ADD(ctr(au->x)->partner_timeouts, 1);
        } else if (resp->err != AP_OK) {
            cl->state = CALL_ERROR;
            snprintf(cl->err, sizeof(cl->err), "transport error: %s", ap_strerror(resp->err));
        } else if (resp->status == 204) {
            cl->state = CALL_NOBID;
        } else if (resp->status != 200) {
            cl->state = CALL_ERROR;
            snprintf(cl->err, sizeof(cl->err), "unexpected status code: %d", resp->status);
        } else {
            /* the body is valid during the callback only: the parsed spans point into a copy */
            char *copy =
                ap_arena_strndup(au->x->arena, resp->body ? resp->body : "", resp->body_len);
            struct ap_ortb_response *rs = NULL;
            int rc = copy ? ap_ortb_parse_response(copy, resp->body_len, au->x->arena, &rs, msg,
                                                   sizeof(msg))
                          : AP_ENOMEM;
            if (rc != AP_OK) {
                cl->state = CALL_ERROR;
                snprintf(cl->err, sizeof(cl->err), "bad bid response: %.100s",
                         rc == AP_ENOMEM ? "out of memory" : msg);
            } else {
                cl->state = rs->nseatbid ? CALL_BIDS : CALL_NOBID;
                cl->resp = rs;
            }
        }
        if (--au->pending == 0)
            pending_finish(pd);
    }
    pending_unref(pd);
}

/* Writes the request for one partner: the scrubbed request, tmax = the time it has, and per
 * imp (as Prebid Server's adapters receive it) imp.ext.bidder = this partner's params from
 * imp.ext.prebid.bidder.<code>, without the other bidders' params. */
static int partner_body(struct ap_buf *o, const struct ap_ortb_request *scrubbed, int tmax,
                        const char *code, struct ap_arena *a)
{
    struct ap_ortb_request c = *scrubbed;
    c.tmax = tmax;
    struct ap_ortb_imp *imps = ap_arena_alloc(a, c.nimp * sizeof(*imps));
    if (!imps)
        return AP_ENOMEM;
    for (uint32_t i = 0; i < c.nimp; i++) {
        imps[i] = scrubbed->imp[i];
        const struct ap_ortb_imp_ext *e = imps[i].ext;
        if (!e || !e->prebid || !e->prebid->bidder)
            continue;
        const struct ap_ortb_kv *params = ap_ortb_unk_find(&e->prebid->bidder->unk, code);
        struct ap_ortb_imp_ext *ne = ap_arena_alloc(a, sizeof(*ne));
        struct ap_ortb_imp_ext_prebid *np = ap_arena_alloc(a, sizeof(*np));
        struct ap_ortb_kv *kv = ap_arena_alloc(a, (e->unk.n + 1) * sizeof(*kv));
        if (!ne || !np || !kv)
            return AP_ENOMEM;
        *ne = *e;
        *np = *e->prebid;
        np->bidder = NULL;
        ne->prebid = np;
        if (e->unk.n)
            memcpy(kv, e->unk.v, e->unk.n * sizeof(*kv));
        ne->unk.v = kv;
        if (params) {
            kv[e->unk.n].key = AP_SPAN_LIT("bidder");
            kv[e->unk.n].val = params->val;
            ne->unk.n = e->unk.n + 1;
        }
        imps[i].ext = ne;
    }
    c.imp = imps;
    return ap_ortb_write_request(o, &c);
}

static void call_partners(struct ap_http_exchange *x, struct auction *au,
                          const struct ap_rtb_partners *pt)
{
    const struct ap_ortb_request *r = au->r;
    /* every active partner, plus (by code) those the imps name; codes not configured are
     * reported in ext.errors by write_response */
    au->calls = ap_arena_calloc(x->arena, pt->n ? pt->n : 1, sizeof(*au->calls));
    if (!au->calls)
        return;
    for (uint32_t k = 0; k < pt->n; k++) {
        struct call *cl = &au->calls[au->ncalls++];
        cl->p = pt->p[k];
        for (uint32_t i = 0; i < r->nimp; i++) {
            const struct ap_ortb_imp *imp = &r->imp[i];
            if (imp->ext && imp->ext->prebid && imp->ext->prebid->bidder &&
                ap_ortb_unk_find(&imp->ext->prebid->bidder->unk, cl->p.code))
                cl->named = true;
        }
    }
}

static void start_calls(struct ap_http_exchange *x, struct auction *au)
{
    const struct ap_ortb_request *r = au->r;
    int64_t tmax = r->tmax > 0 ? r->tmax : AP_RTB_DEFAULT_TMAX_MS;
    if (tmax > AP_RTB_MAX_TMAX_MS)
        tmax = AP_RTB_MAX_TMAX_MS;
    uint64_t now = ap_time_mono_ns();
    int64_t own_ms = (int64_t)((now - au->start_ns) / 1000000);
    int64_t margin = AP_RTB_SAFETY_MS + tmax / 20; /* answer writing, notices, scheduling */
    int64_t budget = tmax - own_ms - margin;
    struct ap_hc *hc = ap_hc_worker(x->loop);
    struct ap_rtb_privacy pv;
    ap__rtb_privacy_eval(r, &pv);
    struct ap_ortb_request *scrubbed = ap__rtb_scrub(r, &pv, x->arena);
    struct pending *pd = NULL;
    if (budget >= 1 && hc && scrubbed)
        pd = calloc(1, sizeof(*pd) + (size_t)au->ncalls * sizeof(pd->args[0]));
    if (!pd) {
        for (int k = 0; k < au->ncalls; k++) {
            au->calls[k].state = budget < 1 ? CALL_TIMEOUT : CALL_ERROR;
            snprintf(au->calls[k].err, sizeof(au->calls[k].err), "%s",
                     budget < 1 ? "Timeout: no time left for the bidder" : "internal error");
        }
        finish(au);
        return;
    }
    pd->refs = 1;
    pd->au = au;
    pd->loop = x->loop;
    struct ap_buf body;
    ap_buf_init(&body, AP_RTB_MAX_RESPONSE);
    static const char *const HDRS[] = {"x-openrtb-version: 2.6", NULL};
    for (int k = 0; k < au->ncalls; k++) {
        struct call *cl = &au->calls[k];
        int to = cl->p.timeout_ms < budget ? cl->p.timeout_ms : (int)budget;
        body.len = 0;
        if (partner_body(&body, scrubbed, to, cl->p.code, x->arena) != AP_OK) {
            cl->state = CALL_ERROR;
            snprintf(cl->err, sizeof(cl->err), "request too large");
            continue;
        }
        struct ap_hc_req rq = {.method = "POST",
                               .url = cl->p.url,
                               .content_type = "application/json",
                               .body = body.data,
                               .body_len = body.len,
                               .headers = HDRS,
                               .timeout_ms = to,
                               .target = cl->p.target,
                               .qps_limit = cl->p.qps_limit};
        pd->args[k].pd = pd;
        pd->args[k].idx = k;
        AP_COUNTER_ADD(ctr(x)->partner_requests, 1);
        int rc = ap_hc_send(hc, &rq, on_partner, &pd->args[k]);
        if (rc != AP_OK) {
            cl->state = CALL_REFUSED;
            snprintf(cl->err, sizeof(cl->err), "%s",
                     rc == AP_EBUSY     ? "not called: over the partner's QPS limit"
                     : rc == AP_ECLOSED ? "not called: circuit breaker open"
                                        : ap_strerror(rc));
            continue;
        }
        pd->refs++;
        au->pending++;
    }
    ap_buf_free(&body);
    if (au->pending == 0) {
        pd->done = true;
        pending_unref(pd);
        finish(au);
        return;
    }
    /* the deadline: the partner timeouts end by then; this is the guarantee */
    ap_loop_timer_init(&pd->timer, on_deadline, pd);
    ap_loop_timer_start(x->loop, &pd->timer, (uint64_t)budget + 1);
}

static int h_auction(struct ap_http_exchange *x)
{
    AP_COUNTER_ADD(ctr(x)->auctions, 1);
    int hrc = 0;
    struct ap_ortb_request *r = read_request(x, &hrc);
    if (!r)
        return hrc;
    struct auction *au = ap_arena_calloc(x->arena, 1, sizeof(*au));
    struct ap_serve_rtb_imp *q = ap_arena_calloc(x->arena, r->nimp, sizeof(*q));
    struct ap_serve_rtb_bid *bids = ap_arena_calloc(x->arena, r->nimp, sizeof(*bids));
    if (au)
        au->imps = ap_arena_calloc(x->arena, r->nimp, sizeof(*au->imps));
    if (!au || !au->imps || !q || !bids)
        return ap_http_respond_error(x, 500, "internal", "out of memory");
    au->r = r;
    au->x = x;
    au->nimps = r->nimp;
    au->start_ns = x->start_ns ? x->start_ns : ap_time_mono_ns();
    au->debug = r->test == 1 || (r->ext && r->ext->prebid && r->ext->prebid->debug == 1);
    targeting_opts(au);
    AP_COUNTER_ADD(ctr(x)->imps, r->nimp);
    /* our demand: one query per imp that names a placement; our prices are in our currency,
     * so a request that does not accept it gets no bid from us */
    bool cur_usd = r->ncur == 0 || span_in(AP_SPAN_LIT(AP_RTB_CURRENCY), r->cur, r->ncur);
    int nq = 0;
    int *qi = ap_arena_calloc(x->arena, r->nimp, sizeof(int));
    if (!qi)
        return ap_http_respond_error(x, 500, "internal", "out of memory");
    for (uint32_t i = 0; i < r->nimp; i++) {
        struct imp_state *st = &au->imps[i];
        st->imp = &r->imp[i];
        st->loss = -1;
        st->win = -1;
        st->q.placement_id = imp_placement(st->imp);
        imp_sizes(st->imp, &st->q);
        st->floor = floor_micros(st->imp);
        st->q.floor_micros = st->floor;
        if (st->q.placement_id && st->imp->banner && cur_usd) {
            au->ours_requested = true;
            q[nq] = st->q;
            qi[nq++] = (int)i;
        }
    }
    if (nq) {
        struct ap_serve_rtb_in in;
        rtb_in(x, r, &in);
        int rc = ap_serve_rtb_decide(x, &in, q, nq, x->arena, bids);
        if (rc != AP_OK && rc != AP_EAGAIN)
            ap_log_warn("rtb: internal demand failed: %s", ap_strerror(rc));
        for (int k = 0; k < nq && rc == AP_OK; k++)
            au->imps[qi[k]].ours = bids[k];
        au->ours_ms = (ap_time_mono_ns() - au->start_ns) / 1000000;
    }
    const struct ap_rtb_partners *pt = ap__rtb_partners_get(x->worker_id);
    if (pt->n && cur_usd)
        call_partners(x, au, pt);
    if (au->ncalls == 0)
        return finish(au);
    start_calls(x, au);
    return x->responded ? AP_OK : ap_http_defer(x);
}

/* ---- POST /openrtb2/bid: the bidder role ------------------------------------------------------
 */

static int h_bid(struct ap_http_exchange *x)
{
    AP_COUNTER_ADD(ctr(x)->bid_requests, 1);
    char msg[AP_ORTB_ERR_MAX];
    struct ap_ortb_request *r = NULL;
    int rc = ap_ortb_parse_request(x->req.body.p, x->req.body.len, x->arena, &r, msg, sizeof(msg));
    if (rc == AP_OK)
        rc = ap_ortb_normalize(r, x->arena);
    if (rc == AP_OK && !r->id.len)
        rc = AP_EINVAL, snprintf(msg, sizeof(msg), "request missing required field: \"id\"");
    if (rc == AP_OK && (r->nimp < 1 || r->nimp > AP_ORTB_MAX_IMPS))
        rc = AP_EINVAL,
        snprintf(msg, sizeof(msg), "request.imp must contain 1 to %d elements", AP_ORTB_MAX_IMPS);
    if (rc != AP_OK) {
        AP_COUNTER_ADD(ctr(x)->invalid, 1);
        char body[AP_ORTB_ERR_MAX + 32];
        int n = snprintf(body, sizeof(body), "Invalid request: %s\n", msg[0] ? msg : "bad JSON");
        if (n < 0 || (size_t)n >= sizeof(body))
            n = (int)sizeof(body) - 1;
        return ap_http_respond(x, 400, "text/plain; charset=utf-8", body, (size_t)n);
    }
    bool cur_usd = r->ncur == 0 || span_in(AP_SPAN_LIT(AP_RTB_CURRENCY), r->cur, r->ncur);
    struct ap_serve_rtb_imp *q = ap_arena_calloc(x->arena, r->nimp, sizeof(*q));
    struct ap_serve_rtb_bid *bids = ap_arena_calloc(x->arena, r->nimp, sizeof(*bids));
    int *qi = ap_arena_calloc(x->arena, r->nimp, sizeof(int));
    if (!q || !bids || !qi)
        return ap_http_respond_error(x, 500, "internal", "out of memory");
    int nq = 0;
    for (uint32_t i = 0; i < r->nimp && cur_usd; i++) {
        const struct ap_ortb_imp *imp = &r->imp[i];
        if (!imp->banner || (imp->pmp && imp->pmp->private_auction == 1))
            continue;
        q[nq].placement_id = imp_placement(imp);
        if (!q[nq].placement_id)
            continue;
        imp_sizes(imp, &q[nq]);
        q[nq].floor_micros =
            imp->bidfloor > 0 && cur_ok(imp->bidfloorcur) ? to_micros(imp->bidfloor) : 0;
        qi[nq++] = (int)i;
    }
    struct ap_buf *o = out_buf(x);
    int nbids = 0;
    if (nq) {
        struct ap_serve_rtb_in in;
        rtb_in(x, r, &in);
        /* the exchange's user.buyeruid is our id for the user (from its cookie sync) */
        in.user_key = r->user && !in.no_personal ? r->user->buyeruid : AP_SPAN_NULL;
        rc = ap_serve_rtb_decide(x, &in, q, nq, x->arena, bids);
        if (rc != AP_OK)
            nq = 0;
    }
    int wrc = ap_buf_append_str(o, "{\"id\":");
    wrc |= ap_ortb_w_str(o, r->id);
    wrc |= ap_buf_append_str(o, ",\"seatbid\":[{\"seat\":\"" AP_RTB_SEAT "\",\"bid\":[");
    for (int k = 0; k < nq; k++) {
        const struct ap_serve_rtb_bid *b = &bids[k];
        if (!b->ok || (r->nbadv && b->adomain.len && span_in(b->adomain, r->badv, r->nbadv)))
            continue;
        const struct ap_ortb_imp *imp = &r->imp[qi[k]];
        wrc |= ap_buf_printf(o, "%s{\"id\":\"%016llx\",\"impid\":", nbids ? "," : "",
                             (unsigned long long)rng_next(x->worker_id));
        wrc |= ap_ortb_w_str(o, imp->id);
        wrc |= ap_buf_append_str(o, ",\"price\":");
        wrc |= ap_ortb_w_double(o, (double)b->price_micros / 1e6);
        wrc |= ap_buf_append_str(o, ",\"adm\":");
        wrc |= ap_ortb_w_str(o, b->adm);
        /* billing notice = our impression beacon (counted once per impression id) */
        wrc |= ap_buf_append_str(o, ",\"burl\":");
        wrc |= ap_ortb_w_str(o, b->imp_url);
        wrc |= ap_buf_printf(o, ",\"adid\":\"%lld\",\"cid\":\"%lld\",\"crid\":\"%lld\"",
                             (long long)b->ad_id, (long long)b->campaign_id,
                             (long long)b->creative_id);
        if (b->adomain.len) {
            wrc |= ap_buf_append_str(o, ",\"adomain\":[");
            wrc |= ap_ortb_w_str(o, b->adomain);
            wrc |= ap_buf_append_str(o, "]");
        }
        wrc |= ap_buf_printf(o, ",\"w\":%u,\"h\":%u,\"mtype\":1}", (unsigned)b->w, (unsigned)b->h);
        nbids++;
    }
    if (nbids == 0) {
        AP_COUNTER_ADD(ctr(x)->bid_nobids, 1);
        return ap_http_respond(x, 204, NULL, NULL, 0);
    }
    wrc |= ap_buf_append_str(o, "]}],\"cur\":\"" AP_RTB_CURRENCY "\"}");
    if (wrc)
        return ap_http_respond_error(x, 500, "internal", "response too large");
    return ap_http_respond(x, 200, "application/json", o->data, o->len);
}

/* ---- module ---------------------------------------------------------------------------------- */

int ap_rtb_start(const struct ap_rtb_options *opt)
{
    G.threads = opt && opt->threads > 0 ? opt->threads : 1;
    G.evlog = opt ? opt->evlog : NULL;
    G.started = true;
    if (ap_rtb_billing_init(G.evlog) != AP_OK)
        return AP_ENOMEM;
    ap_beacon_set_imp_hook(ap_rtb_billing_on_imp);
    if (opt && opt->data_dir) {
        char path[4096], err[256];
        snprintf(path, sizeof(path), "%s/adplatform.db", opt->data_dir);
        int rc = ap__rtb_partners_start(path, err, sizeof(err));
        if (rc) {
            ap_log_error("rtb: outside demand disabled: %s", err);
            return rc;
        }
        G.partners = true;
    }
    return AP_OK;
}

void ap_rtb_stop(void)
{
    if (G.partners)
        ap__rtb_partners_stop();
    G.partners = false;
    G.started = false;
    ap_beacon_set_imp_hook(NULL);
    ap_rtb_billing_free();
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (OUT[i].ready)
            ap_buf_free(&OUT[i].b);
        OUT[i].ready = false;
    }
}

int ap_rtb_register(struct ap_router *r)
{
    int rc = ap_router_add(r, AP_M(POST), "/openrtb2/auction", h_auction, NULL, "auction");
    if (rc == AP_OK)
        rc = ap_router_add(r, AP_M(OPTIONS), "/openrtb2/auction", h_preflight, NULL,
                           "auction_preflight");
    if (rc == AP_OK)
        rc = ap_router_add(r, AP_M(POST), "/openrtb2/bid", h_bid, NULL, "bid");
    return rc;
}

int ap_rtb_metrics(struct ap_buf *out)
{
    uint64_t v[8] = {0}, w[4] = {0};
    for (int i = 0; i < MAX_WORKERS; i++) {
        const struct counters *c = &G.c[i];
        v[0] += atomic_load_explicit(&c->auctions, memory_order_relaxed);
        v[1] += atomic_load_explicit(&c->invalid, memory_order_relaxed);
        v[2] += atomic_load_explicit(&c->imps, memory_order_relaxed);
        v[3] += atomic_load_explicit(&c->bids, memory_order_relaxed);
        v[4] += atomic_load_explicit(&c->wins, memory_order_relaxed);
        v[5] += atomic_load_explicit(&c->bid_requests, memory_order_relaxed);
        v[6] += atomic_load_explicit(&c->bid_nobids, memory_order_relaxed);
        v[7] += atomic_load_explicit(&c->partner_requests, memory_order_relaxed);
        w[0] += atomic_load_explicit(&c->partner_timeouts, memory_order_relaxed);
        w[1] += atomic_load_explicit(&c->partner_bids, memory_order_relaxed);
        w[2] += atomic_load_explicit(&c->partner_wins, memory_order_relaxed);
        w[3] += atomic_load_explicit(&c->notices, memory_order_relaxed);
    }
    /* outside demand, all partners together (per partner: adplatform_partner_* from
     * ap_http_client) */
    int rc =
        ap_buf_printf(out,
                      "# TYPE ap_rtb_partner_calls_total counter\n"
                      "ap_rtb_partner_calls_total %llu\n"
                      "# TYPE ap_rtb_partner_timeouts_total counter\n"
                      "ap_rtb_partner_timeouts_total %llu\n"
                      "# TYPE ap_rtb_partner_bids_total counter\n"
                      "ap_rtb_partner_bids_total %llu\n"
                      "# TYPE ap_rtb_partner_wins_total counter\n"
                      "ap_rtb_partner_wins_total %llu\n"
                      "# TYPE ap_rtb_notices_sent_total counter\n"
                      "ap_rtb_notices_sent_total %llu\n",
                      (unsigned long long)v[7], (unsigned long long)w[0], (unsigned long long)w[1],
                      (unsigned long long)w[2], (unsigned long long)w[3]);
    if (rc)
        return rc;
    uint64_t hb[ADDED_BUCKETS] = {0}, hn = 0, hsum = 0;
    for (int i = 0; i < MAX_WORKERS; i++) {
        const struct counters *c = &G.c[i];
        for (int b = 0; b < ADDED_BUCKETS; b++)
            hb[b] += atomic_load_explicit(&c->added[b], memory_order_relaxed);
        hn += atomic_load_explicit(&c->added_count, memory_order_relaxed);
        hsum += atomic_load_explicit(&c->added_sum_us, memory_order_relaxed);
    }
    rc = ap_buf_printf(out,
                       "# HELP ap_rtb_exchange_added_seconds Time an auction with outside bidders "
                       "took beyond its slowest bidder's answer (every bidder in time).\n"
                       "# TYPE ap_rtb_exchange_added_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < ADDED_BUCKETS && !rc; b++) {
        cum += hb[b];
        if (b < ADDED_BUCKETS - 1)
            rc = ap_buf_printf(out, "ap_rtb_exchange_added_seconds_bucket{le=\"%g\"} %llu\n",
                               (double)ADDED_LE_US[b] / 1e6, (unsigned long long)cum);
        else
            rc = ap_buf_printf(out, "ap_rtb_exchange_added_seconds_bucket{le=\"+Inf\"} %llu\n",
                               (unsigned long long)cum);
    }
    if (!rc)
        rc = ap_buf_printf(out,
                           "ap_rtb_exchange_added_seconds_sum %.6f\n"
                           "ap_rtb_exchange_added_seconds_count %llu\n",
                           (double)hsum / 1e6, (unsigned long long)hn);
    if (rc)
        return rc;
    struct ap_rtb_billing_stats bs;
    ap_rtb_billing_stats(&bs);
    rc = ap_buf_printf(out,
                       "# TYPE ap_rtb_billing_stored_total counter\n"
                       "ap_rtb_billing_stored_total %llu\n"
                       "# TYPE ap_rtb_billing_fired_total counter\n"
                       "ap_rtb_billing_fired_total %llu\n"
                       "# TYPE ap_rtb_billing_unclaimed_total counter\n"
                       "ap_rtb_billing_unclaimed_total %llu\n"
                       "# TYPE ap_rtb_billing_table_full_total counter\n"
                       "ap_rtb_billing_table_full_total %llu\n",
                       (unsigned long long)bs.stored, (unsigned long long)bs.fired,
                       (unsigned long long)bs.unclaimed, (unsigned long long)bs.full);
    if (rc)
        return rc;
    return ap_buf_printf(out,
                         "# TYPE ap_rtb_auctions_total counter\nap_rtb_auctions_total %llu\n"
                         "# TYPE ap_rtb_invalid_requests_total counter\n"
                         "ap_rtb_invalid_requests_total %llu\n"
                         "# TYPE ap_rtb_imps_total counter\nap_rtb_imps_total %llu\n"
                         "# TYPE ap_rtb_bids_total counter\n"
                         "ap_rtb_bids_total{partner=\"" AP_RTB_SEAT "\"} %llu\n"
                         "# TYPE ap_rtb_wins_total counter\n"
                         "ap_rtb_wins_total{partner=\"" AP_RTB_SEAT "\"} %llu\n"
                         "# TYPE ap_rtb_bidder_requests_total counter\n"
                         "ap_rtb_bidder_requests_total %llu\n"
                         "# TYPE ap_rtb_bidder_nobids_total counter\n"
                         "ap_rtb_bidder_nobids_total %llu\n",
                         (unsigned long long)v[0], (unsigned long long)v[1],
                         (unsigned long long)v[2], (unsigned long long)v[3],
                         (unsigned long long)v[4], (unsigned long long)v[5],
                         (unsigned long long)v[6]);
}
