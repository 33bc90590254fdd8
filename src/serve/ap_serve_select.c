/*
 * ap_serve_select: the decision engine. For one placement it intersects, in rank order, the
 * block lists of every targeting dimension that any ad uses (the request's value lists OR the
 * dimension's no-rule list), removes the exclusion lists, and walks the surviving ads best
 * first through the per-ad checks (schedule, floor, dayparts, keywords.all, ip ranges, goal,
 * budget, frequency caps, pacing). In an eCPM group the first ad that passes wins; in a lottery
 * group every eligible ad of the group is collected and one is drawn by weight.
 *
 * Worker threads; reads the snapshot (RCU) and the shared delivery counters; scratch memory
 * from the request arena only.
 */
#include "ap_serve_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "../core/ap_error.h"

#define MAX_CURSORS 64 /* lists in one dimension (values + no-rule) */
#define MAX_EXCLUDES 96
#define LOTTERY_MAX 4096   /* candidates collected for one lottery draw */
#define MAX_DOMAIN_PARTS 8 /* a.b.c.example.com: suffixes looked up */

/* ---- random numbers (xoshiro256**)
 * --------------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t ap_serve_rng_next(struct ap_serve_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void ap_serve_rng_seed(struct ap_serve_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) { /* splitmix64 */
        uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        r->s[i] = z ^ (z >> 31);
    }
}

/* ---- cursors over block lists
 * ---------------------------------------------------------------------- */

struct cur {
    const uint32_t *blk;
    const uint64_t *bits;
    uint32_t n, pos;
};

/* Advances c to its first block >= b (galloping); returns that block or UINT32_MAX. */
static inline uint32_t cur_seek(struct cur *c, uint32_t b)
{
    uint32_t pos = c->pos;
    if (pos >= c->n)
        return UINT32_MAX;
    if (c->blk[pos] >= b)
        return c->blk[pos];
    uint32_t step = 1, lo = pos, hi;
    for (;;) {
        hi = lo + step;
        if (hi >= c->n) {
            hi = c->n;
            break;
        }
        if (c->blk[hi] >= b)
            break;
        lo = hi;
        step *= 2;
    }
    /* blk[lo] < b, blk[hi] >= b (or hi == n) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->blk[mid] >= b)
            hi = mid;
        else
            lo = mid;
    }
    c->pos = hi;
    return hi < c->n ? c->blk[hi] : UINT32_MAX;
}

struct dimc {
    struct cur c[MAX_CURSORS];
    int n;
};

struct iter {
    struct dimc *dims;
    int ndims;
    struct cur x[MAX_EXCLUDES];
    int nx;
    uint32_t b;
    uint64_t w;
    bool started, done;
};

static void add_set(struct dimc *d, const struct ap_serve_set *s)
{
    if (s && s->n && d->n < MAX_CURSORS)
        d->c[d->n++] = (struct cur){s->blk, s->bits, s->n, 0};
}

static void add_x(struct iter *it, const struct ap_serve_set *s)
{
    if (s && s->n && it->nx < MAX_EXCLUDES)
        it->x[it->nx++] = (struct cur){s->blk, s->bits, s->n, 0};
}

/* Next ad position in the intersection, or -1. */
static int64_t it_next(struct iter *it)
{
    while (!it->done) {
        if (it->w) {
            int bit = __builtin_ctzll(it->w);
            it->w &= it->w - 1;
            return (int64_t)it->b * 64 + bit;
        }
        uint32_t b = it->started ? it->b + 1 : 0;
        it->started = true;
        if (b == UINT32_MAX || it->ndims == 0) {
            it->done = true;
            break;
        }
        /* leapfrog to a block present in every dimension */
        int agreed = 0, d = 0;
        while (agreed < it->ndims) {
            struct dimc *dc = &it->dims[d];
            uint32_t m = UINT32_MAX;
            for (int i = 0; i < dc->n; i++) {
                uint32_t v = cur_seek(&dc->c[i], b);
                if (v < m)
                    m = v;
            }
            if (m == UINT32_MAX) {
                it->done = true;
                return -1;
            }
            if (m == b) {
                agreed++;
            } else {
                b = m;
                agreed = 1;
            }
            d = (d + 1) % it->ndims;
        }
        uint64_t w = ~0ull;
        for (d = 0; d < it->ndims && w; d++) {
            struct dimc *dc = &it->dims[d];
            uint64_t u = 0;
            for (int i = 0; i < dc->n; i++) {
                struct cur *c = &dc->c[i];
                if (c->pos < c->n && c->blk[c->pos] == b)
                    u |= c->bits[c->pos];
            }
            w &= u;
        }
        for (int i = 0; i < it->nx && w; i++)
            if (cur_seek(&it->x[i], b) == b)
                w &= ~it->x[i].bits[it->x[i].pos];
        it->b = b;
        it->w = w;
    }
    return -1;
}

/* ---- request-level precomputation
 * ---------------------------------------------------------------- */

struct req {
    const struct ap_serve_snapshot *s;
    struct ap_serve_delivery *d;
    struct ap_serve_rng *rng;
    const struct ap_serve_ctx *ctx;
    const struct ap_serve_decide_opts *opt;
    struct ap_span kw[AP_SERVE_CTX_MAX_KEYWORDS]; /* lower case copies */
    int nkw;
    char city[AP_SERVE_CTX_CITY_MAX];
    uint8_t ip[16];
    int ip_family;      /* 0 unknown, 4, 6 */
    int32_t *tz_off;    /* per zone, INT32_MIN = not computed */
    uint64_t user_hash; /* 0 = no per-user state (anonymous or no storage consent) */
    /* picked so far in this request */
    const struct ap_serve_ad **picked;
    int npicked, picked_cap;
};

static int32_t zone_off(struct req *r, uint32_t tz)
{
    if (r->tz_off[tz] == INT32_MIN)
        r->tz_off[tz] = ap__serve_zone_offset(&r->s->zones[tz], r->ctx->now);
    return r->tz_off[tz];
}

static int32_t local_day(struct req *r, const struct ap_serve_campaign *c)
{
    int64_t local = r->ctx->now + zone_off(r, r->s->advertisers[c->advertiser].tz);
    return (int32_t)(local >= 0 ? local / 86400 : (local - 86399) / 86400);
}

static bool daypart_ok(struct req *r, const struct ap_serve_ad *ad,
                       const struct ap_serve_campaign *c)
{
    if (!ad->daypart)
        return true;
    int64_t local = r->ctx->now + zone_off(r, r->s->advertisers[c->advertiser].tz);
    int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
    int64_t sec = local - day * 86400;
    unsigned wd = (unsigned)(((day + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday; 0 = Sunday */
    unsigned bit = wd * 24 + (unsigned)(sec / 3600);
    return (r->s->dayparts[ad->daypart][bit / 64] >> (bit % 64)) & 1;
}

static bool kw_all_ok(struct req *r, const struct ap_serve_ad *ad)
{
    for (uint32_t i = 0; i < ad->kw_all_n; i++) {
        struct ap_span want = ap__serve_str(r->s, r->s->kw_refs[ad->kw_all_off + i]);
        bool found = false;
        for (int k = 0; k < r->nkw && !found; k++)
            found = ap_span_eq(r->kw[k], want);
        if (!found)
            return false;
    }
    return true;
}

static bool range_match(const struct ap_serve_iprange *g, const uint8_t *ip, int family)
{
    if (g->family != family)
        return false;
    unsigned full = g->prefix / 8, rest = g->prefix % 8;
    if (memcmp(g->addr, ip, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((g->addr[full] & mask) != (ip[full] & mask))
            return false;
    }
    return true;
}

static bool ip_ok(struct req *r, const struct ap_serve_ad *ad)
{
    for (int layer = 0; layer < 2; layer++) {
        if (!ad->ipr_n[layer])
            continue;
        bool any = false;
        for (uint32_t i = 0; i < ad->ipr_n[layer] && !any; i++)
            any = r->ip_family &&
                  range_match(&r->s->ranges[ad->ipr_off[layer] + i], r->ip, r->ip_family);
        if (!any)
            return false;
    }
    return true;
}

static bool already(struct req *r, const struct ap_serve_ad *ad)
{
    for (int i = 0; i < r->npicked; i++) {
        if (r->picked[i] == ad)
            return true;
        if (r->opt->exclusive_advertisers && r->s->campaigns[r->picked[i]->campaign].advertiser ==
                                                 r->s->campaigns[ad->campaign].advertiser)
            return true;
    }
    return false;
}

/* Every check that does not count anything. */
static bool eligible(struct req *r, const struct ap_serve_ad *ad,
                     const struct ap_serve_placement *pl)
{
    const struct ap_serve_campaign *c = &r->s->campaigns[ad->campaign];
    int64_t now = r->ctx->now;
    if (now < c->start_at || now >= c->end_at || c->ecpm_micros < pl->floor_cpm_micros)
        return false;
    if (already(r, ad) || !daypart_ok(r, ad, c) || !kw_all_ok(r, ad) || !ip_ok(r, ad))
        return false;
    if (!r->d)
        return true;
    if (!ap__serve_goal_ok(r->d, c) || !ap__serve_budget_ok(r->d, c, local_day(r, c)))
        return false;
    if (r->user_hash && c->ncaps && !ap__serve_fcap_ok(r->d, r->s, ad, r->user_hash, now))
        return false;
    return true;
}

/* Pacing gate, then counting (caps, spend). true if ad is served. */
static bool commit(struct req *r, const struct ap_serve_ad *ad)
{
    const struct ap_serve_campaign *c = &r->s->campaigns[ad->campaign];
    if (!r->d || r->opt->dry_run)
        return true;
    if (!ap__serve_pacing_pass(r->d, c, local_day(r, c), ap_serve_rng_next(r->rng)))
        return false;
    if (r->user_hash && c->ncaps && !ap__serve_fcap_take(r->d, r->s, ad, r->user_hash, r->ctx->now))
        return false;
    ap__serve_count_serve(r->d, c, local_day(r, c));
    return true;
}

static void record(struct req *r, const struct ap_serve_ad *ad, const struct ap_serve_placement *pl,
                   struct ap_serve_pick *out)
{
    const struct ap_serve_campaign *c = &r->s->campaigns[ad->campaign];
    out->ad = ad;
    out->campaign = c;
    out->creative = &r->s->creatives[ad->creative];
    out->placement = pl;
    out->price_micros = c->ecpm_micros;
    if (r->npicked < r->picked_cap)
        r->picked[r->npicked++] = ad;
}

/* Draws from the lottery pool by weight until one commits. */
static const struct ap_serve_ad *draw(struct req *r, const struct ap_serve_ad **pool, int n)
{
    while (n > 0) {
        uint64_t total = 0;
        for (int i = 0; i < n; i++)
            total += pool[i]->weight;
        int pick = 0;
        if (total == 0) {
            pick = (int)(ap_serve_rng_next(r->rng) % (uint64_t)n);
        } else {
            /* unbiased enough: 64-bit draw modulo a total < 2^52 */
            uint64_t x = ap_serve_rng_next(r->rng) % total;
            for (pick = 0; pick < n - 1; pick++) {
                if (x < pool[pick]->weight)
                    break;
                x -= pool[pick]->weight;
            }
        }
        const struct ap_serve_ad *ad = pool[pick];
        if (commit(r, ad))
            return ad;
        pool[pick] = pool[--n];
    }
    return NULL;
}

static void lower_copy(char *out, size_t cap, const char *p, size_t n)
{
    size_t i = 0;
    for (; i < n && i + 1 < cap; i++)
        out[i] = ap__ascii_lower(p[i]);
    out[i] = '\0';
}

/* Sets up the iterator for placement pl. */
static void setup_iter(struct req *r, const struct ap_serve_placement *pl, struct iter *it,
                       struct dimc *dims)
{
    const struct ap_serve_snapshot *s = r->s;
    const struct ap_serve_ctx *ctx = r->ctx;
    memset(it, 0, sizeof(*it));
    it->dims = dims;
    int nd = 0;
    /* the placement's formats */
    dims[nd].n = 0;
    add_set(&dims[nd], &pl->format);
    nd++;
    char idbuf[2][24];
    snprintf(idbuf[0], sizeof(idbuf[0]), "%lld", (long long)pl->site_id);
    snprintf(idbuf[1], sizeof(idbuf[1]), "%lld", (long long)pl->id);
    /* the request's domain and its parent domains */
    struct ap_span dom[MAX_DOMAIN_PARTS];
    int ndom = 0;
    struct ap_span host = ctx->domain[0] ? ap_span_cstr(ctx->domain) : ap__serve_str(s, pl->domain);
    for (size_t i = 0; host.len && ndom < MAX_DOMAIN_PARTS; i++) {
        if (i == 0 || host.p[i - 1] == '.')
            dom[ndom++] = ap_span_make(host.p + i, host.len - i);
        if (i + 1 >= host.len)
            break;
    }
    for (int dm = 0; dm < AP_SERVE_DIM_COUNT; dm++) {
        if (s->dims[dm].n == 0)
            continue; /* no ad has a rule here: the no-rule list is every ad */
        struct dimc *dc = &dims[nd];
        dc->n = 0;
        add_set(dc, &s->norule[dm]);
        const struct ap_serve_dict *dict = &s->dims[dm];
        switch ((enum ap_serve_dim)dm) {
        case AP_SERVE_DIM_COUNTRY:
            if (ctx->country[0])
                add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(ctx->country)));
            break;
        case AP_SERVE_DIM_REGION:
            if (ctx->region[0])
                add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(ctx->region)));
            break;
        case AP_SERVE_DIM_CITY:
            if (r->city[0])
                add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(r->city)));
            break;
        case AP_SERVE_DIM_DEVICE:
            if (ctx->device)
                add_set(dc, ap__serve_dict_get(s, dict,
                                               ap_span_cstr(ap_serve_device_name(ctx->device))));
            break;
        case AP_SERVE_DIM_OS:
            if (ctx->os)
                add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(ap_serve_os_name(ctx->os))));
            break;
        case AP_SERVE_DIM_BROWSER:
            if (ctx->browser)
                add_set(dc, ap__serve_dict_get(s, dict,
                                               ap_span_cstr(ap_serve_browser_name(ctx->browser))));
            break;
        case AP_SERVE_DIM_LANG:
            for (int i = 0; i < ctx->nlangs; i++)
                add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(ctx->langs[i])));
            break;
        case AP_SERVE_DIM_KW_ANY_C:
        case AP_SERVE_DIM_KW_ANY_A:
            for (int i = 0; i < r->nkw; i++)
                add_set(dc, ap__serve_dict_get(s, dict, r->kw[i]));
            break;
        case AP_SERVE_DIM_SEGMENT:
            if (ctx->personalisation_allowed)
                for (int i = 0; i < ctx->nsegments; i++)
                    add_set(dc, ap__serve_dict_get(s, dict, ctx->segments[i]));
            break;
        case AP_SERVE_DIM_SITE:
            add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(idbuf[0])));
            break;
        case AP_SERVE_DIM_PLACEMENT:
            add_set(dc, ap__serve_dict_get(s, dict, ap_span_cstr(idbuf[1])));
            break;
        case AP_SERVE_DIM_DOMAIN:
            for (int i = 0; i < ndom; i++)
                add_set(dc, ap__serve_dict_get(s, dict, dom[i]));
            break;
        case AP_SERVE_DIM_COUNT:
            break;
        }
        nd++;
    }
    it->ndims = nd;
    /* exclusions */
    const struct ap_serve_dict *x = s->xdims;
    if (x[AP_SERVE_XDIM_COUNTRY].n && ctx->country[0])
        add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_COUNTRY], ap_span_cstr(ctx->country)));
    if (x[AP_SERVE_XDIM_REGION].n && ctx->region[0])
        add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_REGION], ap_span_cstr(ctx->region)));
    if (x[AP_SERVE_XDIM_CITY].n && r->city[0])
        add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_CITY], ap_span_cstr(r->city)));
    if (x[AP_SERVE_XDIM_KW_NONE].n)
        for (int i = 0; i < r->nkw; i++)
            add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_KW_NONE], r->kw[i]));
    if (x[AP_SERVE_XDIM_SITE].n)
        add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_SITE], ap_span_cstr(idbuf[0])));
    if (x[AP_SERVE_XDIM_PLACEMENT].n)
        add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_PLACEMENT], ap_span_cstr(idbuf[1])));
    if (x[AP_SERVE_XDIM_DOMAIN].n)
        for (int i = 0; i < ndom; i++)
            add_x(it, ap__serve_dict_get(s, &x[AP_SERVE_XDIM_DOMAIN], dom[i]));
}

/* Picks up to count ads for placement pl. Returns how many. */
static int select_for(struct req *r, const struct ap_serve_placement *pl, int count,
                      struct ap_serve_pick *out, struct iter *it, struct dimc *dims,
                      const struct ap_serve_ad **pool)
{
    const struct ap_serve_snapshot *s = r->s;
    int got = 0;
    while (got < count) {
        setup_iter(r, pl, it, dims);
        const struct ap_serve_ad *win = NULL;
        int64_t pos = it_next(it);
        while (pos >= 0 && !win) {
            const struct ap_serve_ad *ad = &s->ads[pos];
            const struct ap_serve_group *g = &s->groups[ad->group];
            if (!g->lottery) {
                if (eligible(r, ad, pl) && commit(r, ad))
                    win = ad;
                pos = it_next(it);
                continue;
            }
            /* lottery group: collect its eligible ads, then draw */
            int n = 0;
            uint32_t gi = ad->group;
            while (pos >= 0 && s->ads[pos].group == gi) {
                if (n < LOTTERY_MAX && eligible(r, &s->ads[pos], pl))
                    pool[n++] = &s->ads[pos];
                pos = it_next(it);
            }
            win = draw(r, pool, n);
        }
        if (!win)
            break;
        record(r, win, pl, &out[got++]);
    }
    return got;
}

int ap_serve_decide(const struct ap_serve_snapshot *s, struct ap_serve_delivery *d,
                    struct ap_serve_rng *rng, const struct ap_serve_ctx *ctx,
                    const struct ap_serve_slot_req *slots, int nslots,
                    const struct ap_serve_decide_opts *opt, struct ap_arena *arena,
                    struct ap_serve_pick *picks, int *npicks)
{
    static const struct ap_serve_decide_opts defaults = {false, false};
    if (!opt)
        opt = &defaults;
    if (nslots < 0 || nslots > AP_SERVE_MAX_PLACEMENTS)
        return AP_EINVAL;
    const struct ap_serve_placement *pls[AP_SERVE_MAX_PLACEMENTS];
    int total = 0;
    for (int i = 0; i < nslots; i++) {
        int64_t pi = s ? ap__serve_placement_find(s, slots[i].placement_id) : -1;
        if (pi < 0)
            return AP_ENOTFOUND;
        pls[i] = &s->placements[pi];
        npicks[i] = 0;
        total += slots[i].count > 0 ? slots[i].count : 0;
    }
    struct req *r = ap_arena_calloc(arena, 1, sizeof(*r));
    struct iter *it = ap_arena_alloc(arena, sizeof(*it));
    struct dimc *dims = ap_arena_alloc(arena, sizeof(*dims) * (AP_SERVE_DIM_COUNT + 1));
    if (!r || !it || !dims)
        return AP_ENOMEM;
    r->s = s;
    r->d = d;
    r->rng = rng;
    r->ctx = ctx;
    r->opt = opt;
    r->tz_off = ap_arena_alloc(arena, sizeof(int32_t) * (s->nzones + 1));
    r->picked_cap = total + 1;
    r->picked = ap_arena_alloc(arena, sizeof(*r->picked) * (size_t)r->picked_cap);
    const struct ap_serve_ad **pool = ap_arena_alloc(arena, sizeof(*pool) * LOTTERY_MAX);
    if (!r->tz_off || !r->picked || !pool)
        return AP_ENOMEM;
    for (uint32_t z = 0; z < s->nzones; z++)
        r->tz_off[z] = INT32_MIN;
    char *kwbuf = ap_arena_alloc(arena, (size_t)AP_SERVE_CTX_MAX_KEYWORDS * 65);
    if (!kwbuf)
        return AP_ENOMEM;
    for (int i = 0; i < ctx->nkeywords && i < AP_SERVE_CTX_MAX_KEYWORDS; i++) {
        char *k = kwbuf + i * 65;
        lower_copy(k, 65, ctx->keywords[i].p, ctx->keywords[i].len);
        r->kw[r->nkw++] = ap_span_cstr(k);
    }
    lower_copy(r->city, sizeof(r->city), ctx->city, strlen(ctx->city));
    if (ctx->ip[0]) {
        if (inet_pton(AF_INET, ctx->ip, r->ip) == 1)
            r->ip_family = 4;
        else if (inet_pton(AF_INET6, ctx->ip, r->ip) == 1)
            r->ip_family = 6;
    }
    r->user_hash = 0;
    if (d && ctx->user_key[0] && ctx->storage_allowed)
        r->user_hash = ap__serve_user_hash(d, ap_span_cstr(ctx->user_key));
    for (int i = 0; i < nslots; i++) {
        int count = slots[i].count < 1                    ? 1
                    : slots[i].count > AP_SERVE_MAX_COUNT ? AP_SERVE_MAX_COUNT
                                                          : slots[i].count;
        npicks[i] = select_for(r, pls[i], count, &picks[i * AP_SERVE_MAX_COUNT], it, dims, pool);
        for (int k = npicks[i]; k < AP_SERVE_MAX_COUNT; k++)
            memset(&picks[i * AP_SERVE_MAX_COUNT + k], 0, sizeof(picks[0]));
    }
    return AP_OK;
}
