/*
 * ap_serve_delivery: budgets, pacing, goals and frequency caps (process lifetime).
 *
 * Budgets and goals: one 128-byte slot per campaign id (assigned by the builder, never reused),
 * with relaxed atomic counters that every worker adds to. A worker checks "spent + this
 * impression's cost <= budget" then adds; two workers racing can each pass the check, so a
 * budget can be overshot by at most (workers - 1) impressions' cost. Daily spend is kept per
 * advertiser-local day in two parity cells, so a new day starts at zero without a reset race
 * (the delivery thread prepares tomorrow's cell a second ahead). Until the events pipeline
 * feeds billed spend, spend = served impressions x eCPM / 1000 (in 1/1000 micro-units, exact).
 *
 * Billed spend (ap_serve_delivery_set_spend, from the aggregator): once fed, a campaign's spend
 * is what the aggregator billed (authoritative: it reads the durable event log) plus the cost
 * of what was served since shortly before the aggregator's as-of time (in flight: served, its
 * beacon not yet counted), kept per campaign in AP_SERVE_FEED_WINDOW one-second buckets. So
 * delivery stops promptly when a budget is reached, and unrendered ads stop counting against it
 * once the aggregator has caught up. An aggregator lagging more than the window undercounts the
 * in-flight part; billing itself still never exceeds a budget.
 *
 * Pacing (even): every second the delivery thread sets each campaign's pass probability to
 * (remaining daily budget / seconds left in the advertiser's day) / (smoothed rate at which the
 * campaign reaches the pacing gate x cost). asap campaigns are never throttled.
 *
 * Frequency caps: a set-associative table (AP_SERVE_FCAP_WAYS ways of 64 bytes per set) keyed
 * by hash(user, cap scope, ad or campaign id, window). Each entry counts impressions in 6 time
 * buckets of ceil(window / 5) seconds: a sliding window that never under-counts (the oldest
 * bucket counts whole until it has left the window entirely). A serve adds to the current
 * bucket with a CAS, recounts, and backs out if a concurrent serve got the last unit: caps hold
 * exactly under concurrency. Entries expire (swept by the delivery thread) once every bucket is
 * out of the window. Inserting the same new key from two threads at the instant a way is freed
 * can split one user's counts over two entries (then the cap may be exceeded by one); a full set
 * fails open (counted in fcap_full).
 *
 * Threads: the ap__serve_* engine calls on workers (lock-free); slot assignment on the builder
 * thread; tick/save on the delivery thread; create/destroy on the main thread.
 */
#include "ap_serve_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"

#define FCAP_BUCKETS 6
#define STATE_MAGIC "APDELIV1"
#define PATH_MAX_LEN 4096

struct fcap_way {
    _Atomic uint64_t key;
    _Atomic uint64_t meta; /* last touched second (high 32) | bucket width seconds (low 32) */
    _Atomic uint64_t b[FCAP_BUCKETS]; /* slot number + 1 (high 32) | count (low 32) */
};

/* Billed spend per slot (set by the aggregator) and served cost per second (in flight). */
struct feed_slot {
    _Atomic int64_t billed_day, billed_life; /* micros */
    _Atomic int32_t billed_daynum;           /* the local day of billed_day */
    _Atomic int32_t fed;                     /* 1 once the aggregator reported this campaign */
    _Atomic uint64_t sec[AP_SERVE_FEED_WINDOW]; /* (second & 0xffffff) << 40 | cost milli */
} __attribute__((aligned(64)));

#define FEED_COST_MASK ((1ull << 40) - 1)

struct ap_serve_delivery {
    struct ap_serve_dslot *slots; /* AP_SERVE_MAX_CAMPAIGNS, mmap (untouched pages cost nothing) */
    struct feed_slot *feed;       /* parallel to slots, mmap likewise */
    _Atomic int64_t feed_as_of_ms; /* 0: never fed: spend = served counters alone */
    _Atomic uint32_t nslots;
    /* campaign id -> slot, builder thread only */
    uint32_t map_cap, map_n;
    int64_t *map_k;
    uint32_t *map_v;
    struct fcap_way *ways;
    uint32_t nsets;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    char state_path[PATH_MAX_LEN];
    _Atomic uint64_t fcap_full;
    size_t sweep_at; /* next way to sweep (delivery thread) */
};

_Static_assert(sizeof(struct fcap_way) == 64, "one cache line per way");

/* ---- slots ----------------------------------------------------------------------------------- */

static uint32_t mix32(int64_t k)
{
    return (uint32_t)((uint64_t)k * 0x9E3779B97F4A7C15ull >> 32);
}

static int map_grow(struct ap_serve_delivery *d)
{
    uint32_t nc = d->map_cap ? d->map_cap * 2 : 1024;
    int64_t *k = calloc(nc, sizeof(int64_t));
    uint32_t *v = calloc(nc, sizeof(uint32_t));
    if (!k || !v) {
        free(k);
        free(v);
        return AP_ENOMEM;
    }
    for (uint32_t i = 0; i < d->map_cap; i++) {
        if (!d->map_k[i])
            continue;
        uint32_t j = mix32(d->map_k[i]) & (nc - 1);
        while (k[j])
            j = (j + 1) & (nc - 1);
        k[j] = d->map_k[i];
        v[j] = d->map_v[i];
    }
    free(d->map_k);
    free(d->map_v);
    d->map_k = k;
    d->map_v = v;
    d->map_cap = nc;
    return AP_OK;
}

static int map_slot(struct ap_serve_delivery *d, int64_t id, uint32_t *slot, bool create)
{
    if (d->map_cap) {
        uint32_t mask = d->map_cap - 1;
        for (uint32_t i = mix32(id) & mask; d->map_k[i]; i = (i + 1) & mask)
            if (d->map_k[i] == id) {
                *slot = d->map_v[i];
                return AP_OK;
            }
    }
    if (!create)
        return AP_ENOTFOUND;
    uint32_t n = atomic_load(&d->nslots);
    if (n >= AP_SERVE_MAX_CAMPAIGNS)
        return AP_ELIMIT;
    int rc;
    if ((d->map_n + 1) * 2 > d->map_cap && (rc = map_grow(d)))
        return rc;
    uint32_t mask = d->map_cap - 1, i = mix32(id) & mask;
    while (d->map_k[i])
        i = (i + 1) & mask;
    d->map_k[i] = id;
    d->map_v[i] = n;
    d->map_n++;
    struct ap_serve_dslot *sl = &d->slots[n];
    atomic_store_explicit(&sl->campaign_id, id, memory_order_relaxed);
    atomic_store_explicit(&sl->throttle, UINT32_MAX, memory_order_relaxed);
    atomic_store_explicit(&d->nslots, n + 1, memory_order_release);
    *slot = n;
    return AP_OK;
}

int ap__serve_delivery_slot(struct ap_serve_delivery *d, int64_t campaign_id, uint32_t *slot)
{
    return map_slot(d, campaign_id, slot, true);
}

struct ap_serve_dslot *ap__serve_delivery_dslot(struct ap_serve_delivery *d, uint32_t slot)
{
    return &d->slots[slot];
}

/* ---- budgets, goals, pacing (workers) ------------------------------------------------------- */

#define RLX memory_order_relaxed

static int64_t day_spent(const struct ap_serve_dslot *sl, int32_t day)
{
    int p = day & 1;
    return atomic_load_explicit(&sl->day_tag[p], RLX) == day
               ? atomic_load_explicit(&sl->spent_day[p], RLX)
               : 0;
}

static int64_t now_sec_coarse(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}

/* Adds served cost (milli) to the current second's bucket. */
static void inflight_add(struct feed_slot *f, int64_t sec, int64_t cost_milli)
{
    if (cost_milli <= 0)
        return;
    uint64_t tag = (uint64_t)sec & 0xffffffu;
    _Atomic uint64_t *b = &f->sec[(uint64_t)sec % AP_SERVE_FEED_WINDOW];
    uint64_t v = atomic_load_explicit(b, RLX), nv;
    do {
        uint64_t cost = (v >> 40) == tag ? (v & FEED_COST_MASK) : 0;
        cost += (uint64_t)cost_milli;
        if (cost > FEED_COST_MASK)
            cost = FEED_COST_MASK;
        nv = tag << 40 | cost;
    } while (!atomic_compare_exchange_weak_explicit(b, &v, nv, RLX, RLX));
}

/* Served cost (milli) in the seconds [from, now]. */
static int64_t inflight_since(const struct feed_slot *f, int64_t from, int64_t now)
{
    if (from < now - (AP_SERVE_FEED_WINDOW - 1))
        from = now - (AP_SERVE_FEED_WINDOW - 1);
    int64_t total = 0;
    for (int64_t t = from; t <= now; t++) {
        uint64_t v = atomic_load_explicit(&f->sec[(uint64_t)t % AP_SERVE_FEED_WINDOW], RLX);
        if ((v >> 40) == ((uint64_t)t & 0xffffffu))
            total += (int64_t)(v & FEED_COST_MASK);
    }
    return total;
}

/* A campaign's spend in milli-micros (today on local day `day`, lifetime): billed + in flight
 * once the aggregator feeds (its first report covers every campaign it ever billed: one it did
 * not report has billed nothing), else the served counters. */
static void spent_milli(struct ap_serve_delivery *d, uint32_t slot, int32_t day, int64_t now,
                        int64_t *today, int64_t *life)
{
    const struct ap_serve_dslot *sl = &d->slots[slot];
    const struct feed_slot *f = &d->feed[slot];
    int64_t as_of = atomic_load_explicit(&d->feed_as_of_ms, memory_order_acquire);
    if (!as_of) { /* the aggregator has not reported yet */
        *today = day_spent(sl, day);
        *life = atomic_load_explicit(&sl->spent_life, RLX);
        return;
    }
    int64_t from = (as_of - AP_SERVE_FEED_SLACK_MS) / 1000;
    int64_t infl = inflight_since(f, from, now);
    int64_t bday = atomic_load_explicit(&f->billed_daynum, RLX) == day
                       ? atomic_load_explicit(&f->billed_day, RLX)
                       : 0;
    *today = bday * 1000 + infl;
    *life = atomic_load_explicit(&f->billed_life, RLX) * 1000 + infl;
}

bool ap__serve_budget_ok(struct ap_serve_delivery *d, const struct ap_serve_campaign *c,
                         int32_t local_day)
{
    if (c->budget_lifetime < 0 && c->budget_daily < 0)
        return true;
    int64_t today, life;
    spent_milli(d, c->slot, local_day, now_sec_coarse(), &today, &life);
    if (c->budget_lifetime >= 0 && life + c->cost_milli > c->budget_lifetime * 1000)
        return false;
    if (c->budget_daily >= 0 && today + c->cost_milli > c->budget_daily * 1000)
        return false;
    return true;
}

void ap_serve_delivery_set_spend(struct ap_serve_delivery *d, const struct ap_serve_spend *s,
                                 size_t n, int64_t as_of_ms)
{
    if (n) {
        /* the builder's id -> slot map is not for other threads: scan the published slots */
        uint32_t ns = atomic_load_explicit(&d->nslots, memory_order_acquire);
        bool sorted = true;
        for (size_t k = 1; k < n && sorted; k++)
            sorted = s[k - 1].campaign_id < s[k].campaign_id;
        for (uint32_t i = 0; i < ns; i++) {
            int64_t id = atomic_load_explicit(&d->slots[i].campaign_id, RLX);
            size_t lo = 0, hi = n;
            const struct ap_serve_spend *hit = NULL;
            if (n <= 8) {
                for (size_t k = 0; k < n && !hit; k++)
                    if (s[k].campaign_id == id)
                        hit = &s[k];
            } else {
                /* sorted by campaign id: binary search, else linear */
                while (sorted && lo < hi) {
                    size_t mid = lo + (hi - lo) / 2;
                    if (s[mid].campaign_id < id)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (sorted && lo < n && s[lo].campaign_id == id)
                    hit = &s[lo];
                for (size_t k = 0; !sorted && k < n && !hit; k++)
                    if (s[k].campaign_id == id)
                        hit = &s[k];
            }
            if (!hit)
                continue;
            struct feed_slot *f = &d->feed[i];
            atomic_store_explicit(&f->billed_day, hit->today_micros, RLX);
            atomic_store_explicit(&f->billed_daynum, hit->local_day, RLX);
            atomic_store_explicit(&f->billed_life, hit->lifetime_micros, RLX);
            atomic_store_explicit(&f->fed, 1, RLX);
        }
    }
    if (as_of_ms > atomic_load_explicit(&d->feed_as_of_ms, RLX))
        atomic_store_explicit(&d->feed_as_of_ms, as_of_ms, memory_order_release);
}

static _Atomic(struct ap_serve_delivery *) g_daemon_delivery;

void ap_serve_set_spend(const struct ap_serve_spend *s, size_t n, int64_t as_of_ms)
{
    struct ap_serve_delivery *d = atomic_load_explicit(&g_daemon_delivery, memory_order_acquire);
    if (d)
        ap_serve_delivery_set_spend(d, s, n, as_of_ms);
}

bool ap__serve_goal_ok(struct ap_serve_delivery *d, const struct ap_serve_campaign *c)
{
    const struct ap_serve_dslot *sl = &d->slots[c->slot];
    if (c->goal == 1)
        return atomic_load_explicit(&sl->imps, RLX) < c->goal_count;
    if (c->goal == 2)
        return atomic_load_explicit(&sl->clicks, RLX) < c->goal_count;
    return true;
}

bool ap__serve_pacing_pass(struct ap_serve_delivery *d, const struct ap_serve_campaign *c,
                           int32_t local_day, uint64_t rnd)
{
    if (!c->pacing_even || c->budget_daily < 0)
        return true;
    struct ap_serve_dslot *sl = &d->slots[c->slot];
    atomic_fetch_add_explicit(&sl->offers, 1, RLX);
    uint32_t th = atomic_load_explicit(&sl->throttle, RLX);
    if (atomic_load_explicit(&sl->throttle_day, RLX) != local_day)
        return true; /* a new day: open until the delivery thread has measured it */
    return th == UINT32_MAX || (uint32_t)(rnd >> 32) < th;
}

void ap__serve_count_serve(struct ap_serve_delivery *d, const struct ap_serve_campaign *c,
                           int32_t local_day)
{
    struct ap_serve_dslot *sl = &d->slots[c->slot];
    int p = local_day & 1;
    if (atomic_load_explicit(&sl->day_tag[p], RLX) != local_day) {
        /* first serve of a day the delivery thread has not prepared (start-up) */
        int32_t old = atomic_load_explicit(&sl->day_tag[p], RLX);
        if (old != local_day && atomic_compare_exchange_strong(&sl->day_tag[p], &old, local_day))
            atomic_store_explicit(&sl->spent_day[p], 0, RLX);
    }
    atomic_fetch_add_explicit(&sl->spent_day[p], c->cost_milli, RLX);
    atomic_fetch_add_explicit(&sl->spent_life, c->cost_milli, RLX);
    atomic_fetch_add_explicit(&sl->imps, 1, RLX);
    inflight_add(&d->feed[c->slot], now_sec_coarse(), c->cost_milli);
}

void ap_serve_delivery_add_click(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                                 int64_t campaign_id)
{
    (void)s;
    /* read-only lookup of the builder's map is not thread-safe: scan the slots instead */
    uint32_t n = atomic_load_explicit(&d->nslots, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit(&d->slots[i].campaign_id, RLX) == campaign_id) {
            atomic_fetch_add_explicit(&d->slots[i].clicks, 1, RLX);
            return;
        }
}

/* ---- frequency caps ------------------------------------------------------------------------- */

uint64_t ap__serve_user_hash(struct ap_serve_delivery *d, struct ap_span user_key)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const unsigned char *)user_key.p, user_key.len, d->hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h ? h : 1;
}

static uint64_t cap_key(uint64_t user, const struct ap_serve_cap *cap, const struct ap_serve_ad *ad,
                        const struct ap_serve_campaign *c)
{
    uint64_t id = cap->per_ad ? (uint64_t)ad->id : (uint64_t)c->id;
    uint64_t k = user ^ (id * 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)cap->window * 0xC2B2AE3D27D4EB4Full) ^
                 (cap->per_ad ? 0x5bd1e995ull : 0);
    k ^= k >> 29;
    k *= 0xBF58476D1CE4E5B9ull;
    k ^= k >> 32;
    return k > 1 ? k : 2; /* 0 = empty, 1 = being freed */
}

static uint32_t cap_width(uint32_t window)
{
    return (window + FCAP_BUCKETS - 2) / (FCAP_BUCKETS - 1);
}

static struct fcap_way *fcap_find(struct ap_serve_delivery *d, uint64_t key, bool insert)
{
    struct fcap_way *set = &d->ways[(key % d->nsets) * AP_SERVE_FCAP_WAYS];
    for (int i = 0; i < AP_SERVE_FCAP_WAYS; i++)
        if (atomic_load_explicit(&set[i].key, memory_order_acquire) == key)
            return &set[i];
    if (!insert)
        return NULL;
    for (int i = 0; i < AP_SERVE_FCAP_WAYS; i++) {
        uint64_t k = atomic_load_explicit(&set[i].key, memory_order_acquire);
        if (k == key)
            return &set[i];
        if (k == 0) {
            uint64_t zero = 0;
            if (atomic_compare_exchange_strong(&set[i].key, &zero, key) || zero == key)
                return &set[i];
        }
    }
    atomic_fetch_add_explicit(&d->fcap_full, 1, RLX);
    return NULL;
}

static uint32_t fcap_count(struct fcap_way *w, uint32_t width, uint32_t window, int64_t now)
{
    uint64_t cur = (uint64_t)now / width,
             lo = (uint64_t)(now - window < 0 ? 0 : now - window) / width;
    uint32_t total = 0;
    for (int i = 0; i < FCAP_BUCKETS; i++) {
        uint64_t v = atomic_load_explicit(&w->b[i], RLX);
        uint64_t slot = (v >> 32);
        if (slot == 0)
            continue;
        slot -= 1;
        if (slot >= (lo & 0xffffffffu) && slot <= (cur & 0xffffffffu))
            total += (uint32_t)v;
    }
    return total;
}

bool ap__serve_fcap_ok(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                       const struct ap_serve_ad *ad, uint64_t user_hash, int64_t now)
{
    const struct ap_serve_campaign *c = &s->campaigns[ad->campaign];
    for (uint32_t i = 0; i < c->ncaps; i++) {
        const struct ap_serve_cap *cap = &s->caps[c->caps_off + i];
        struct fcap_way *w = fcap_find(d, cap_key(user_hash, cap, ad, c), false);
        if (w && fcap_count(w, cap_width(cap->window), cap->window, now) >= cap->count)
            return false;
    }
    return true;
}

/* Adds delta to the current bucket of w. */
static void bucket_add(struct fcap_way *w, uint32_t width, int64_t now, int delta)
{
    uint64_t slot = (uint64_t)now / width;
    uint64_t label = ((slot & 0xffffffffu) + 1) & 0xffffffffu;
    _Atomic uint64_t *b = &w->b[slot % FCAP_BUCKETS];
    uint64_t v = atomic_load_explicit(b, RLX), nv;
    do {
        if ((v >> 32) == label)
            nv = (uint64_t)((int64_t)v + delta);
        else if (delta > 0)
            nv = label << 32 | (uint64_t)delta;
        else
            return; /* our unit already rolled out of the bucket */
    } while (!atomic_compare_exchange_weak_explicit(b, &v, nv, RLX, RLX));
    atomic_store_explicit(&w->meta, (uint64_t)(uint32_t)now << 32 | width, RLX);
}

bool ap__serve_fcap_take(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                         const struct ap_serve_ad *ad, uint64_t user_hash, int64_t now)
{
    const struct ap_serve_campaign *c = &s->campaigns[ad->campaign];
    struct fcap_way *taken[64];
    uint32_t widths[64];
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->ncaps && n < 64; i++) {
        const struct ap_serve_cap *cap = &s->caps[c->caps_off + i];
        struct fcap_way *w = fcap_find(d, cap_key(user_hash, cap, ad, c), true);
        if (!w)
            continue; /* table full: fail open */
        uint32_t width = cap_width(cap->window);
        bucket_add(w, width, now, 1);
        if (fcap_count(w, width, cap->window, now) > cap->count) {
            bucket_add(w, width, now, -1);
            for (uint32_t k = 0; k < n; k++)
                bucket_add(taken[k], widths[k], now, -1);
            return false;
        }
        taken[n] = w;
        widths[n++] = width;
    }
    return true;
}

/* Sweeps 1/FCAP_SWEEP_PARTS of the table per call (a full pass every minute at one call a
 * second), so the delivery thread never streams the whole table through the cache at once. */
#define FCAP_SWEEP_PARTS 64

static void fcap_sweep(struct ap_serve_delivery *d, int64_t now)
{
    size_t total = (size_t)d->nsets * AP_SERVE_FCAP_WAYS;
    size_t step = (total + FCAP_SWEEP_PARTS - 1) / FCAP_SWEEP_PARTS;
    size_t from = d->sweep_at < total ? d->sweep_at : 0,
           to = from + step < total ? from + step : total;
    d->sweep_at = to == total ? 0 : to;
    for (size_t i = from; i < to; i++) {
        struct fcap_way *w = &d->ways[i];
        uint64_t k = atomic_load_explicit(&w->key, RLX);
        if (k < 2)
            continue;
        uint64_t meta = atomic_load_explicit(&w->meta, RLX);
        int64_t last = (int64_t)(meta >> 32);
        uint32_t width = (uint32_t)meta;
        if (width == 0 || last + (int64_t)width * FCAP_BUCKETS >= now)
            continue;
        if (!atomic_compare_exchange_strong(&w->key, &k, 1)) /* being freed */
            continue;
        for (int b = 0; b < FCAP_BUCKETS; b++)
            atomic_store_explicit(&w->b[b], 0, RLX);
        atomic_store_explicit(&w->meta, 0, RLX);
        atomic_store_explicit(&w->key, 0, memory_order_release);
    }
}

/* ---- pacing (delivery thread) ------------------------------------------------------------- */

void ap_serve_delivery_tick(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                            int64_t now, uint64_t mono_ns)
{
    for (uint32_t i = 0; s && i < s->ncampaigns; i++) {
        const struct ap_serve_campaign *c = &s->campaigns[i];
        struct ap_serve_dslot *sl = &d->slots[c->slot];
        int64_t local =
            now + ap__serve_zone_offset(&s->zones[s->advertisers[c->advertiser].tz], now);
        int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
        int64_t secs_left = 86400 - (local - day * 86400);
        /* prepare tomorrow's cell */
        int np = (int)((day + 1) & 1);
        if (atomic_load_explicit(&sl->day_tag[np], RLX) != (int32_t)(day + 1)) {
            atomic_store_explicit(&sl->spent_day[np], 0, RLX);
            atomic_store_explicit(&sl->day_tag[np], (int32_t)(day + 1), RLX);
        }
        if (!c->pacing_even || c->budget_daily < 0 || c->cost_milli <= 0) {
            atomic_store_explicit(&sl->throttle, UINT32_MAX, RLX);
            continue;
        }
        int64_t offers = atomic_load_explicit(&sl->offers, RLX);
        if (sl->prev_tick_ns == 0 || mono_ns <= sl->prev_tick_ns) {
            sl->prev_tick_ns = mono_ns;
            sl->prev_offers = offers;
            continue;
        }
        double dt = (double)(mono_ns - sl->prev_tick_ns) / 1e9;
        double inst = (double)(offers - sl->prev_offers) / dt;
        sl->offer_rate = sl->offer_rate <= 0 ? inst : 0.8 * sl->offer_rate + 0.2 * inst;
        sl->prev_tick_ns = mono_ns;
        sl->prev_offers = offers;
        int64_t today, life;
        spent_milli(d, c->slot, (int32_t)day, now, &today, &life);
        double remaining = (double)(c->budget_daily * 1000 - today);
        double p = 1.0;
        if (remaining <= 0) {
            p = 0;
        } else if (sl->offer_rate > 0) {
            double target = remaining / (double)c->cost_milli / (double)secs_left;
            p = target / sl->offer_rate;
        }
        uint32_t th = p >= 1.0 ? UINT32_MAX : p <= 0 ? 0 : (uint32_t)(p * 4294967295.0);
        atomic_store_explicit(&sl->throttle, th, RLX);
        atomic_store_explicit(&sl->throttle_day, (int32_t)day, RLX);
    }
    fcap_sweep(d, now);
}

void ap_serve_delivery_sweep_all(struct ap_serve_delivery *d, int64_t now)
{
    for (int i = 0; i < FCAP_SWEEP_PARTS; i++)
        fcap_sweep(d, now);
}

int ap_serve_delivery_counters(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                               int64_t campaign_id, int64_t now,
                               struct ap_serve_campaign_counters *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; s && i < s->ncampaigns; i++) {
        const struct ap_serve_campaign *c = &s->campaigns[i];
        if (c->id != campaign_id)
            continue;
        struct ap_serve_dslot *sl = &d->slots[c->slot];
        int64_t local =
            now + ap__serve_zone_offset(&s->zones[s->advertisers[c->advertiser].tz], now);
        int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
        int64_t today, life;
        spent_milli(d, c->slot, (int32_t)day, now, &today, &life);
        out->spent_today_micros = today / 1000;
        out->spent_lifetime_micros = life / 1000;
        out->impressions = atomic_load_explicit(&sl->imps, RLX);
        out->clicks = atomic_load_explicit(&sl->clicks, RLX);
        out->throttle = (double)atomic_load_explicit(&sl->throttle, RLX) / 4294967295.0;
        return AP_OK;
    }
    return AP_ENOTFOUND;
}

/* ---- persistence ----------------------------------------------------------------------------- */

struct rec_slot {
    int64_t campaign_id, spent_day[2], spent_life, imps, clicks;
    int32_t day_tag[2];
};

struct rec_way {
    uint64_t key, meta, b[FCAP_BUCKETS];
};

int ap_serve_delivery_save(struct ap_serve_delivery *d)
{
    if (!d->state_path[0])
        return AP_OK;
    char tmp[PATH_MAX_LEN + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", d->state_path);
    FILE *f = fopen(tmp, "wbe");
    if (!f)
        return ap_error_from_errno(errno);
    bool ok =
        fwrite(STATE_MAGIC, 8, 1, f) == 1 && fwrite(d->hash_key, sizeof(d->hash_key), 1, f) == 1;
    uint32_t n = atomic_load_explicit(&d->nslots, memory_order_acquire);
    ok = ok && fwrite(&n, sizeof(n), 1, f) == 1;
    for (uint32_t i = 0; ok && i < n; i++) {
        struct ap_serve_dslot *sl = &d->slots[i];
        struct rec_slot r = {atomic_load_explicit(&sl->campaign_id, RLX),
                             {atomic_load_explicit(&sl->spent_day[0], RLX),
                              atomic_load_explicit(&sl->spent_day[1], RLX)},
                             atomic_load_explicit(&sl->spent_life, RLX),
                             atomic_load_explicit(&sl->imps, RLX),
                             atomic_load_explicit(&sl->clicks, RLX),
                             {atomic_load_explicit(&sl->day_tag[0], RLX),
                              atomic_load_explicit(&sl->day_tag[1], RLX)}};
        ok = fwrite(&r, sizeof(r), 1, f) == 1;
    }
    size_t total = (size_t)d->nsets * AP_SERVE_FCAP_WAYS;
    for (size_t i = 0; ok && i < total; i++) {
        /* the table is tens of MB: give the core back to a waiting worker every 16k ways (a
         * no-op when none waits), so a save is never one long stall of the data plane */
        if ((i & 16383) == 16383)
            sched_yield();
        struct fcap_way *w = &d->ways[i];
        struct rec_way r;
        r.key = atomic_load_explicit(&w->key, RLX);
        if (r.key < 2)
            continue;
        r.meta = atomic_load_explicit(&w->meta, RLX);
        for (int b = 0; b < FCAP_BUCKETS; b++)
            r.b[b] = atomic_load_explicit(&w->b[b], RLX);
        ok = fwrite(&r, sizeof(r), 1, f) == 1;
    }
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, d->state_path) != 0) {
        unlink(tmp);
        return AP_EIO;
    }
    return AP_OK;
}

static int load_state(struct ap_serve_delivery *d)
{
    FILE *f = fopen(d->state_path, "rbe");
    if (!f)
        return errno == ENOENT ? AP_ENOTFOUND : ap_error_from_errno(errno);
    char magic[8];
    uint32_t n = 0;
    int rc = AP_ECORRUPT;
    uint8_t key[sizeof(d->hash_key)];
    if (fread(magic, 8, 1, f) != 1 || memcmp(magic, STATE_MAGIC, 8) != 0 ||
        fread(key, sizeof(key), 1, f) != 1 || fread(&n, sizeof(n), 1, f) != 1 ||
        n > AP_SERVE_MAX_CAMPAIGNS)
        goto out;
    memcpy(d->hash_key, key, sizeof(key));
    for (uint32_t i = 0; i < n; i++) {
        struct rec_slot r;
        uint32_t slot;
        if (fread(&r, sizeof(r), 1, f) != 1)
            goto out;
        if (r.campaign_id <= 0 || map_slot(d, r.campaign_id, &slot, true) != AP_OK)
            continue;
        struct ap_serve_dslot *sl = &d->slots[slot];
        for (int p = 0; p < 2; p++) {
            atomic_store(&sl->spent_day[p], r.spent_day[p]);
            atomic_store(&sl->day_tag[p], r.day_tag[p]);
        }
        atomic_store(&sl->spent_life, r.spent_life);
        atomic_store(&sl->imps, r.imps);
        atomic_store(&sl->clicks, r.clicks);
    }
    struct rec_way r;
    while (fread(&r, sizeof(r), 1, f) == 1) {
        struct fcap_way *w = fcap_find(d, r.key, true);
        if (!w)
            continue;
        atomic_store(&w->meta, r.meta);
        for (int b = 0; b < FCAP_BUCKETS; b++)
            atomic_store(&w->b[b], r.b[b]);
    }
    rc = AP_OK;
out:
    fclose(f);
    return rc;
}

struct ap_serve_delivery *ap_serve_delivery_create(const struct ap_serve_delivery_options *opt,
                                                   int *err)
{
    *err = AP_ENOMEM;
    if (sodium_init() < 0) {
        *err = AP_EIO;
        return NULL;
    }
    struct ap_serve_delivery *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    uint32_t sets = opt && opt->fcap_sets ? opt->fcap_sets : 65536;
    uint32_t p2 = 1;
    while (p2 < sets && p2 < (1u << 26))
        p2 *= 2;
    d->nsets = p2;
    size_t slots_bytes = (size_t)AP_SERVE_MAX_CAMPAIGNS * sizeof(struct ap_serve_dslot);
    size_t ways_bytes = (size_t)d->nsets * AP_SERVE_FCAP_WAYS * sizeof(struct fcap_way);
    d->slots = mmap(NULL, slots_bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    d->ways = mmap(NULL, ways_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    size_t feed_bytes = (size_t)AP_SERVE_MAX_CAMPAIGNS * sizeof(struct feed_slot);
    d->feed = mmap(NULL, feed_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (d->slots == MAP_FAILED || d->ways == MAP_FAILED || d->feed == MAP_FAILED) {
        if (d->slots != MAP_FAILED)
            munmap(d->slots, slots_bytes);
        if (d->ways != MAP_FAILED)
            munmap(d->ways, ways_bytes);
        if (d->feed != MAP_FAILED)
            munmap(d->feed, feed_bytes);
        free(d);
        return NULL;
    }
    crypto_shorthash_keygen(d->hash_key);
    if (opt && opt->state_path) {
        snprintf(d->state_path, sizeof(d->state_path), "%s", opt->state_path);
        int rc = load_state(d);
        if (rc != AP_OK && rc != AP_ENOTFOUND)
            ap_log_warn("serve: delivery state %s unreadable (%s): starting empty", d->state_path,
                        ap_strerror(rc));
    }
    if (opt && opt->state_path) /* the daemon's: ap_serve_set_spend feeds this one */
        atomic_store_explicit(&g_daemon_delivery, d, memory_order_release);
    *err = AP_OK;
    return d;
}

void ap_serve_delivery_destroy(struct ap_serve_delivery *d)
{
    if (!d)
        return;
    struct ap_serve_delivery *mine = d;
    atomic_compare_exchange_strong(&g_daemon_delivery, &mine, NULL);
    munmap(d->slots, (size_t)AP_SERVE_MAX_CAMPAIGNS * sizeof(struct ap_serve_dslot));
    munmap(d->feed, (size_t)AP_SERVE_MAX_CAMPAIGNS * sizeof(struct feed_slot));
    munmap(d->ways, (size_t)d->nsets * AP_SERVE_FCAP_WAYS * sizeof(struct fcap_way));
    free(d->map_k);
    free(d->map_v);
    free(d);
}
