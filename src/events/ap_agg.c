/*
 * ap_agg: the aggregator thread, the in-memory fold of a batch and its one-transaction commit
 * (see ap_agg.h).
 *
 * Memory: everything is allocated at create (batch buffers sized by batch_max) or grows with the
 * number of campaigns, publishers and partners (tables keyed by id, never shrunk). The fold of
 * a batch touches no store row until the commit; billing accounts are updated in memory and, if
 * the commit fails, reloaded from the store (together with the carries) so memory never runs
 * ahead of what is durable.
 */
#include "ap_agg.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_thread.h"
#include "../core/ap_time.h"
#include "../serve/ap_serve_internal.h" /* ap__serve_tz_load: the TZif reader */
#include "../store/ap_store.h"
#include "ap_money.h"

#define LAG_BUCKETS AP_AGG_LAG_BUCKETS
static const int64_t LAG_BOUNDS_MS[LAG_BUCKETS - 1] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};

/* ---- small id -> index hash ----------------------------------------------------------------- */

struct imap {
    int64_t *k; /* 0 = empty (ids are > 0) */
    uint32_t *v;
    uint32_t cap, n;
};

static uint32_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static bool imap_get(const struct imap *m, int64_t k, uint32_t *v)
{
    if (!m->cap)
        return false;
    for (uint32_t i = hash64((uint64_t)k) & (m->cap - 1); m->k[i]; i = (i + 1) & (m->cap - 1))
        if (m->k[i] == k) {
            *v = m->v[i];
            return true;
        }
    return false;
}

static int imap_put(struct imap *m, int64_t k, uint32_t v)
{
    if ((m->n + 1) * 2 > m->cap) {
        uint32_t nc = m->cap ? m->cap * 2 : 256;
        int64_t *nk = calloc(nc, sizeof(*nk));
        uint32_t *nv = calloc(nc, sizeof(*nv));
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return AP_ENOMEM;
        }
        for (uint32_t i = 0; i < m->cap; i++) {
            if (!m->k[i])
                continue;
            uint32_t j = hash64((uint64_t)m->k[i]) & (nc - 1);
            while (nk[j])
                j = (j + 1) & (nc - 1);
            nk[j] = m->k[i];
            nv[j] = m->v[i];
        }
        free(m->k);
        free(m->v);
        m->k = nk;
        m->v = nv;
        m->cap = nc;
    }
    uint32_t i = hash64((uint64_t)k) & (m->cap - 1);
    while (m->k[i] && m->k[i] != k)
        i = (i + 1) & (m->cap - 1);
    if (!m->k[i])
        m->n++;
    m->k[i] = k;
    m->v[i] = v;
    return AP_OK;
}

static void imap_free(struct imap *m)
{
    free(m->k);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* ---- state ---------------------------------------------------------------------------------- */

struct zone {
    char name[64];
    int64_t *at;
    int32_t *off;
    uint32_t n;
    int32_t before;
};

struct camp {
    struct ap_store_billing_campaign b;
    bool known; /* a store row was seen */
    uint32_t zone;
    struct ap_money_account acct;
    bool has_account, dirty, fed_dirty;
};

struct owner { /* a publisher (share + carry) or a partner (carry) */
    int64_t id, ppm, carry;
    bool dirty;
};

struct row {
    struct ap_store_rollup_key k;
    int64_t v[AP_STORE_RM_COUNT];
};

struct cday { /* a row's place in the per-campaign daily summary */
    int64_t day, campaign_id;
    int test;
    uint32_t row;
};

static int cmp_cday(const void *pa, const void *pb)
{
    const struct cday *a = pa, *b = pb;
    if (a->day != b->day)
        return a->day < b->day ? -1 : 1;
    if (a->campaign_id != b->campaign_id)
        return a->campaign_id < b->campaign_id ? -1 : 1;
    return a->test - b->test;
}

struct ap_agg {
    struct ap_agg_options o;
    char db_path[4096], log_dir[4096];
    struct ap_store_rollup *st;
    struct ap_evlog_reader *rd;
    uint64_t rd_pos; /* where rd stands */

    struct ap_store_agg_state state; /* as committed */
    int64_t store_version;

    struct camp *camps;
    uint32_t ncamps, capcamps;
    struct imap camp_ix;
    struct zone *zones;
    uint32_t nzones, capzones;
    struct owner *pubs, *parts;
    uint32_t npubs, cappubs, nparts, capparts;
    struct imap pub_ix, part_ix;

    /* the batch */
    struct ap_event *evbuf;
    int64_t *ev_ms;
    struct row *rows;
    struct cday *cdays;
    uint32_t nrows;
    uint32_t *row_ix; /* open addressing: row index + 1, 0 = empty */
    uint32_t row_cap;
    int64_t newest_s; /* newest event time folded (s), drives seen-set pruning */
    int64_t last_prune;
    bool reloaded_this_batch;
    bool fed_once;

    /* thread */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;

    /* stats (aggregator thread writes; any thread reads) */
    _Atomic uint64_t s_checkpoint, s_end, s_events, s_dups, s_test, s_unknown, s_batches,
        s_failures, s_commit_last, s_commit_max, s_pruned;
    uint64_t pruned_ns; /* monotonic time of the last retention pass (aggregator thread) */
    _Atomic int64_t s_last_event_ms; /* time of the newest event committed */
    _Atomic uint64_t s_lag_hist[LAG_BUCKETS];
    _Atomic uint64_t s_lag_sum_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- time zones ----------------------------------------------------------------------------- */

static uint32_t zone_index(struct ap_agg *a, const char *name)
{
    for (uint32_t i = 0; i < a->nzones; i++)
        if (!strcmp(a->zones[i].name, name))
            return i;
    if (a->nzones == a->capzones) {
        uint32_t nc = a->capzones ? a->capzones * 2 : 16;
        struct zone *nz = realloc(a->zones, nc * sizeof(*nz));
        if (!nz)
            return 0; /* zone 0 is UTC */
        a->zones = nz;
        a->capzones = nc;
    }
    struct zone *z = &a->zones[a->nzones];
    memset(z, 0, sizeof(*z));
    snprintf(z->name, sizeof(z->name), "%s", name);
    int rc = ap__serve_tz_load(name, &z->at, &z->off, &z->n, &z->before);
    if (rc != AP_OK) {
        ap_log_warn("agg: time zone %s unreadable (%s): days are counted in UTC", name,
                    ap_strerror(rc));
        z->at = NULL;
        z->off = NULL;
        z->n = 0;
        z->before = 0;
    }
    return a->nzones++;
}

static int32_t zone_offset(const struct zone *z, int64_t t)
{
    if (z->n == 0 || t < z->at[0])
        return z->before;
    uint32_t lo = 0, hi = z->n; /* the last at[i] <= t */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->off[lo];
}

/* ---- campaigns, publishers, partners -------------------------------------------------------- */

static struct camp *camp_get(struct ap_agg *a, int64_t id, bool create)
{
    uint32_t i;
    if (imap_get(&a->camp_ix, id, &i))
        return &a->camps[i];
    if (!create)
        return NULL;
    if (a->ncamps == a->capcamps) {
        uint32_t nc = a->capcamps ? a->capcamps * 2 : 256;
        struct camp *n = realloc(a->camps, nc * sizeof(*n));
        if (!n)
            return NULL;
        a->camps = n;
        a->capcamps = nc;
    }
    if (imap_put(&a->camp_ix, id, a->ncamps) != AP_OK)
        return NULL;
    struct camp *c = &a->camps[a->ncamps++];
    memset(c, 0, sizeof(*c));
    c->b.id = id;
    c->b.budget_daily = c->b.budget_lifetime = AP_MONEY_UNLIMITED;
    return c;
}

static struct owner *owner_get(struct owner **arr, uint32_t *n, uint32_t *cap, struct imap *ix,
                               int64_t id, bool create)
{
    uint32_t i;
    if (imap_get(ix, id, &i))
        return &(*arr)[i];
    if (!create)
        return NULL;
    if (*n == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 64;
        struct owner *na = realloc(*arr, nc * sizeof(*na));
        if (!na)
            return NULL;
        *arr = na;
        *cap = nc;
    }
    if (imap_put(ix, id, *n) != AP_OK)
        return NULL;
    struct owner *o = &(*arr)[(*n)++];
    memset(o, 0, sizeof(*o));
    o->id = id;
    return o;
}

static struct owner *pub_get(struct ap_agg *a, int64_t id, bool create)
{
    return owner_get(&a->pubs, &a->npubs, &a->cappubs, &a->pub_ix, id, create);
}

static struct owner *part_get(struct ap_agg *a, int64_t id, bool create)
{
    return owner_get(&a->parts, &a->nparts, &a->capparts, &a->part_ix, id, create);
}

static int on_campaign(void *ud, const struct ap_store_billing_campaign *b)
{
    struct ap_agg *a = ud;
    struct camp *c = camp_get(a, b->id, true);
    if (!c)
        return AP_ENOMEM;
    c->b = *b;
    c->known = true;
    c->zone = zone_index(a, b->timezone);
    return AP_OK;
}

static int on_publisher(void *ud, int64_t id, int64_t ppm)
{
    struct owner *o = pub_get(ud, id, true);
    if (!o)
        return AP_ENOMEM;
    o->ppm = ppm;
    return AP_OK;
}

/* Reloads campaign and publisher attributes from the store. */
static int load_config(struct ap_agg *a)
{
    int64_t v = 0;
    int rc = ap_store_rollup_store_version(a->st, &v);
    if (rc == AP_OK)
        rc = ap_store_rollup_campaigns(a->st, on_campaign, a);
    if (rc == AP_OK)
        rc = ap_store_rollup_publishers(a->st, on_publisher, a);
    if (rc == AP_OK)
        a->store_version = v;
    return rc;
}

static int on_account(void *ud, const struct ap_store_agg_account *s)
{
    struct ap_agg *a = ud;
    struct camp *c = camp_get(a, s->campaign_id, true);
    if (!c)
        return AP_ENOMEM;
    c->acct =
        (struct ap_money_account){s->day, s->day_spent, s->life_spent, s->carry_milli, s->unbilled};
    c->has_account = true;
    c->fed_dirty = true;
    return AP_OK;
}

static int on_carry(void *ud, int kind, int64_t owner_id, int64_t carry)
{
    struct ap_agg *a = ud;
    struct owner *o = kind == AP_STORE_CARRY_PUBLISHER_SHARE ? pub_get(a, owner_id, true)
                      : kind == AP_STORE_CARRY_PARTNER_CPM   ? part_get(a, owner_id, true)
                                                             : NULL;
    if (o)
        o->carry = carry;
    return AP_OK;
}

/* Loads (or reloads, after a failed commit) everything the store holds for the fold. */
static int load_durable(struct ap_agg *a)
{
    for (uint32_t i = 0; i < a->ncamps; i++) {
        memset(&a->camps[i].acct, 0, sizeof(a->camps[i].acct));
        a->camps[i].has_account = a->camps[i].dirty = false;
    }
    for (uint32_t i = 0; i < a->npubs; i++)
        a->pubs[i].carry = 0, a->pubs[i].dirty = false;
    for (uint32_t i = 0; i < a->nparts; i++)
        a->parts[i].carry = 0, a->parts[i].dirty = false;
    int rc = ap_store_agg_state_get(a->st, &a->state);
    if (rc == AP_OK)
        rc = ap_store_agg_accounts(a->st, on_account, a);
    if (rc == AP_OK)
        rc = ap_store_agg_carries(a->st, on_carry, a);
    if (rc == AP_OK) {
        atomic_store(&a->s_checkpoint, a->state.log_offset);
        atomic_store(&a->s_events, (uint64_t)a->state.events);
        atomic_store(&a->s_dups, (uint64_t)a->state.duplicates);
    }
    return rc;
}

/* ---- the fold -------------------------------------------------------------------------------- */

static uint32_t key_hash(const struct ap_store_rollup_key *k)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)k;
    for (size_t i = 0; i < sizeof(*k); i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return hash64(h);
}

static int64_t *row_for(struct ap_agg *a, const struct ap_store_rollup_key *k)
{
    uint32_t mask = a->row_cap - 1;
    for (uint32_t i = key_hash(k) & mask;; i = (i + 1) & mask) {
        uint32_t r = a->row_ix[i];
        if (r == 0) {
            struct row *nr = &a->rows[a->nrows];
            nr->k = *k;
            memset(nr->v, 0, sizeof(nr->v));
            a->row_ix[i] = ++a->nrows;
            return nr->v;
        }
        if (!memcmp(&a->rows[r - 1].k, k, sizeof(*k)))
            return a->rows[r - 1].v;
    }
}

static bool id_zero(const uint8_t id[16])
{
    for (int i = 0; i < 16; i++)
        if (id[i])
            return false;
    return true;
}

static bool dedup_type(int type)
{
    return type == AP_EV_IMP || type == AP_EV_VIEW || type == AP_EV_CLICK || type == AP_EV_CONV ||
           type == AP_EV_WIN || type == AP_EV_BILLING;
}

/* Folds one event. *counted = false for a duplicate. */
static int fold(struct ap_agg *a, const struct ap_event *ev, bool *counted)
{
    *counted = false;
    if (ev->type < AP_EV_DECISION || ev->type >= AP_EV_TYPE_MAX)
        return AP_OK; /* a type this build does not know: skipped (still past the offset) */
    int64_t t = ap_money_floor_div(ev->time_ns, 1000000000);
    bool test = ev->flags & AP_EV_F_TEST;
    if (dedup_type(ev->type) && !id_zero(ev->imp_id)) {
        bool dup = false;
        int rc = ap_store_rollup_seen(a->st, ev->imp_id, ev->type, t, &dup);
        if (rc != AP_OK)
            return rc;
        if (dup)
            return AP_OK;
    }
    *counted = true;
    if (t > a->newest_s)
        a->newest_s = t;
    int64_t n = ev->count ? (int64_t)ev->count : 1;

    struct ap_store_rollup_key k;
    memset(&k, 0, sizeof(k));
    k.hour = ap_money_floor_div(t, 3600) * 3600;
    k.campaign_id = ev->campaign_id;
    k.ad_id = ev->ad_id;
    k.placement_id = ev->placement_id;
    k.publisher_id = ev->publisher_id;
    k.partner_id = ev->partner_id;
    for (int i = 0; i < 2; i++)
        k.country[i] = ev->country[i] >= 'A' && ev->country[i] <= 'Z' ? ev->country[i]
                       : ev->country[i] >= 'a' && ev->country[i] <= 'z'
                           ? (char)(ev->country[i] - 'a' + 'A')
                           : '\0';
    if (!k.country[0] || !k.country[1])
        k.country[0] = k.country[1] = '\0';
    k.device = ev->device_type;
    k.test = test ? 1 : 0;
    int64_t *v = row_for(a, &k);

    int64_t cost_milli = 0, rtb_rev = 0;
    struct camp *c = NULL;
    switch (ev->type) {
    case AP_EV_DECISION:
        v[AP_STORE_RM_DECISIONS] += n;
        break;
    case AP_EV_IMP:
        v[AP_STORE_RM_IMPRESSIONS] += n;
        break;
    case AP_EV_VIEW:
        v[AP_STORE_RM_VIEWABLE] += n;
        break;
    case AP_EV_CLICK:
        v[AP_STORE_RM_CLICKS] += n;
        break;
    case AP_EV_CONV:
        v[AP_STORE_RM_CONVERSIONS] += n;
        v[AP_STORE_RM_CONVERSION_VALUE] += ev->value_micros;
        break;
    case AP_EV_BID:
        v[AP_STORE_RM_BIDS] += n;
        break;
    case AP_EV_WIN:
        v[AP_STORE_RM_WINS] += n;
        break;
    case AP_EV_LOSS:
        v[AP_STORE_RM_LOSSES] += n;
        break;
    case AP_EV_BILLING:
        v[AP_STORE_RM_BILLINGS] += n;
        if (!test && ev->partner_id > 0 && ev->price_micros > 0) {
            struct owner *p = part_get(a, ev->partner_id, true);
            if (!p)
                return AP_ENOMEM;
            rtb_rev = ap_money_accrue(&p->carry, ev->price_micros * n);
            p->dirty = true;
            v[AP_STORE_RM_RTB_REVENUE] += rtb_rev;
        }
        break;
    }
    if (test) {
        atomic_fetch_add_explicit(&a->s_test, 1, memory_order_relaxed);
        return AP_OK;
    }

    /* billing of our own campaigns */
    if (ev->campaign_id > 0 &&
        (ev->type == AP_EV_IMP || ev->type == AP_EV_CLICK || ev->type == AP_EV_CONV)) {
        c = camp_get(a, ev->campaign_id, false);
        if ((!c || !c->known) && !a->reloaded_this_batch) {
            a->reloaded_this_batch = true; /* a campaign newer than our copy of the store */
            int rc = load_config(a);
            if (rc != AP_OK)
                return rc;
            c = camp_get(a, ev->campaign_id, false);
        }
        if (!c || !c->known) {
            atomic_fetch_add_explicit(&a->s_unknown, 1, memory_order_relaxed);
            c = NULL;
        } else if (ev->type == AP_EV_IMP && c->b.pricing == 0) {
            cost_milli = (ev->price_micros > 0 ? ev->price_micros : 0) * n;
        } else if ((ev->type == AP_EV_CLICK && c->b.pricing == 1) ||
                   (ev->type == AP_EV_CONV && c->b.pricing == 2)) {
            cost_milli = (c->b.price_micros > 0 ? c->b.price_micros : 0) * AP_MONEY_MILLI * n;
        }
    }
    int64_t billed = 0;
    if (c && cost_milli > 0) {
        int64_t local = t + zone_offset(&a->zones[c->zone], t);
        int64_t day = ap_money_floor_div(local, 86400);
        int64_t unbilled0 = c->acct.unbilled_micros;
        billed =
            ap_money_bill(&c->acct, cost_milli, day, c->b.budget_daily, c->b.budget_lifetime, NULL);
        c->has_account = c->dirty = c->fed_dirty = true;
        v[AP_STORE_RM_SPEND] += billed;
        v[AP_STORE_RM_UNBILLED] += c->acct.unbilled_micros - unbilled0;
    }
    if ((billed > 0 || rtb_rev > 0) && ev->publisher_id > 0) {
        struct owner *p = pub_get(a, ev->publisher_id, false);
        if (p && p->ppm > 0) {
            int64_t share = ap_money_share(&p->carry, billed + rtb_rev, p->ppm);
            p->dirty = true;
            v[AP_STORE_RM_REVENUE] += share;
        }
    }
    return AP_OK;
}

static void lag_record(struct ap_agg *a, int64_t lag_ms)
{
    int b = 0;
    while (b < LAG_BUCKETS - 1 && lag_ms > LAG_BOUNDS_MS[b])
        b++;
    atomic_fetch_add_explicit(&a->s_lag_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->s_lag_sum_ms, (uint64_t)(lag_ms > 0 ? lag_ms : 0),
                              memory_order_relaxed);
}

static void feed(struct ap_agg *a, int64_t as_of_ms)
{
    if (!a->o.feed)
        return;
    struct ap_agg_spend buf[256];
    size_t n = 0;
    for (uint32_t i = 0; i < a->ncamps; i++) {
        struct camp *c = &a->camps[i];
        if (!c->fed_dirty && a->fed_once)
            continue;
        c->fed_dirty = false;
        if (!c->has_account)
            continue;
        buf[n++] = (struct ap_agg_spend){c->b.id, (int32_t)c->acct.day, c->acct.day_spent,
                                         c->acct.life_spent};
        if (n == sizeof(buf) / sizeof(buf[0])) {
            a->o.feed(a->o.feed_ud, buf, n, 0); /* as-of only with the last part */
            n = 0;
        }
    }
    a->o.feed(a->o.feed_ud, buf, n, as_of_ms);
    a->fed_once = true;
}

/* Folds evs[0..n) and commits with end_offset. On failure everything is rolled back and the
 * durable state reloaded. */
static int commit_batch(struct ap_agg *a, const struct ap_event *evs, size_t n, uint64_t end_offset)
{
    uint64_t t0 = mono_us();
    int rc = ap_store_rollup_begin(a->st);
    if (rc != AP_OK)
        return rc;
    a->nrows = 0;
    memset(a->row_ix, 0, a->row_cap * sizeof(*a->row_ix));
    a->reloaded_this_batch = false;
    struct ap_store_agg_state ns = a->state;
    for (size_t i = 0; i < n && rc == AP_OK; i++) {
        bool counted = false;
        rc = fold(a, &evs[i], &counted);
        if (counted)
            ns.events++;
        else if (rc == AP_OK && evs[i].type >= AP_EV_DECISION && evs[i].type < AP_EV_TYPE_MAX)
            ns.duplicates++;
        a->ev_ms[i] = ap_money_floor_div(evs[i].time_ns, 1000000);
    }
    for (uint32_t i = 0; i < a->nrows && rc == AP_OK; i++) {
        rc = ap_store_rollup_add(a->st, &a->rows[i].k, a->rows[i].v);
        a->cdays[i] = (struct cday){ap_money_floor_div(a->rows[i].k.hour, 86400) * 86400,
                                    a->rows[i].k.campaign_id, a->rows[i].k.test, i};
    }
    /* the per-campaign daily summary: the same sums, one row per campaign and day */
    if (rc == AP_OK && a->nrows > 1)
        qsort(a->cdays, a->nrows, sizeof(*a->cdays), cmp_cday);
    for (uint32_t i = 0; i < a->nrows && rc == AP_OK;) {
        int64_t sum[AP_STORE_RM_COUNT] = {0};
        uint32_t j = i;
        for (; j < a->nrows && !cmp_cday(&a->cdays[i], &a->cdays[j]); j++)
            for (int m = 0; m < AP_STORE_RM_COUNT; m++)
                sum[m] += a->rows[a->cdays[j].row].v[m];
        rc = ap_store_rollup_add_campaign_day(a->st, a->cdays[i].day, a->cdays[i].campaign_id,
                                              a->cdays[i].test, sum);
        i = j;
    }
    for (uint32_t i = 0; i < a->ncamps && rc == AP_OK; i++) {
        struct camp *c = &a->camps[i];
        if (!c->dirty)
            continue;
        struct ap_store_agg_account s = {c->b.id,
                                         c->acct.day,
                                         c->acct.day_spent,
                                         c->acct.life_spent,
                                         c->acct.carry_milli,
                                         c->acct.unbilled_micros};
        rc = ap_store_agg_account_put(a->st, &s);
    }
    for (uint32_t i = 0; i < a->npubs && rc == AP_OK; i++)
        if (a->pubs[i].dirty)
            rc = ap_store_agg_carry_put(a->st, AP_STORE_CARRY_PUBLISHER_SHARE, a->pubs[i].id,
                                        a->pubs[i].carry);
    for (uint32_t i = 0; i < a->nparts && rc == AP_OK; i++)
        if (a->parts[i].dirty)
            rc = ap_store_agg_carry_put(a->st, AP_STORE_CARRY_PARTNER_CPM, a->parts[i].id,
                                        a->parts[i].carry);
    if (rc == AP_OK && a->newest_s - a->last_prune >= 10) {
        rc = ap_store_rollup_prune_seen(a->st, a->newest_s - AP_AGG_SEEN_TTL, AP_AGG_PRUNE_CHUNK,
                                        NULL);
        a->last_prune = a->newest_s;
    }
    ns.log_offset = end_offset;
    ns.updated_at = now_ms() / 1000;
    if (rc == AP_OK)
        rc = ap_store_agg_state_put(a->st, &ns);
    if (rc == AP_OK)
        rc = ap_store_rollup_commit(a->st);
    if (rc != AP_OK) {
        ap_log_error("agg: batch of %zu events not committed (%s): %s", n, ap_strerror(rc),
                     ap_store_rollup_errmsg(a->st));
        ap_store_rollup_rollback(a->st);
        atomic_fetch_add(&a->s_failures, 1);
        int lrc = load_durable(a);
        if (lrc != AP_OK)
            ap_log_error("agg: cannot reload state: %s", ap_strerror(lrc));
        return rc;
    }
    for (uint32_t i = 0; i < a->ncamps; i++)
        a->camps[i].dirty = false;
    for (uint32_t i = 0; i < a->npubs; i++)
        a->pubs[i].dirty = false;
    for (uint32_t i = 0; i < a->nparts; i++)
        a->parts[i].dirty = false;
    a->state = ns;
    uint64_t us = mono_us() - t0;
    int64_t done = now_ms();
    for (size_t i = 0; i < n; i++)
        lag_record(a, done - a->ev_ms[i]);
    atomic_store(&a->s_checkpoint, ns.log_offset);
    atomic_store(&a->s_events, (uint64_t)ns.events);
    atomic_store(&a->s_dups, (uint64_t)ns.duplicates);
    atomic_fetch_add(&a->s_batches, 1);
    atomic_store(&a->s_commit_last, us);
    if (n)
        atomic_store(&a->s_last_event_ms, a->ev_ms[n - 1]);
    if (us > atomic_load(&a->s_commit_max))
        atomic_store(&a->s_commit_max, us);
    return AP_OK;
}

int ap_agg_apply(struct ap_agg *a, const struct ap_event *evs, size_t n, uint64_t end_offset)
{
    if (end_offset < a->state.log_offset)
        return AP_EINVAL;
    size_t max = a->o.batch_max;
    int rc = AP_OK;
    for (size_t off = 0; off < n || (n == 0 && off == 0); off += max) {
        size_t k = n - off < max ? n - off : max;
        uint64_t end = off + k >= n ? end_offset : a->state.log_offset;
        if ((rc = commit_batch(a, evs + off, k, end)) != AP_OK)
            return rc;
        if (n == 0)
            break;
    }
    feed(a, now_ms());
    return rc;
}

/* ---- reading the log ----------------------------------------------------------------------- */

static void reader_reset(struct ap_agg *a)
{
    ap_evlog_reader_close(a->rd);
    a->rd = NULL;
}

int ap_agg_run_once(struct ap_agg *a, uint64_t *folded)
{
    uint64_t total = 0;
    int rc = AP_OK;
    if (folded)
        *folded = 0;
    int64_t v = 0;
    if (ap_store_rollup_store_version(a->st, &v) == AP_OK && v != a->store_version &&
        (rc = load_config(a)) != AP_OK)
        return rc;
    uint64_t limit = a->o.log ? ap_evlog_end(a->o.log) : UINT64_MAX;
    if (a->o.log)
        atomic_store(&a->s_end, limit);
    int64_t as_of = 0;
    for (;;) {
        if (!a->rd || a->rd_pos != a->state.log_offset) {
            reader_reset(a);
            int err = 0;
            a->rd = ap_evlog_reader_open(a->log_dir, a->state.log_offset, &err);
            if (!a->rd) {
                if (err == AP_ENOTFOUND || err == AP_EIO) {
                    rc = AP_OK; /* no log yet */
                    as_of = now_ms();
                    break;
                }
                rc = err;
                break;
            }
            a->rd_pos = a->state.log_offset;
        }
        size_t n = 0;
        uint64_t next = a->rd_pos;
        int r = 1;
        while (n < a->o.batch_max &&
               (r = ap_evlog_reader_next(a->rd, limit, &a->evbuf[n], &next)) == 1)
            n++;
        if (r < 0) {
            ap_log_error("agg: reading the event log at %llu: %s",
                         (unsigned long long)(a->rd_pos + n * AP_EVLOG_FRAME_BYTES),
                         ap_strerror(r));
            rc = r;
        }
        if (n == 0) {
            if (r < 0)
                reader_reset(a);
            else
                as_of = now_ms(); /* read to the end: everything durable is counted */
            break;
        }
        a->rd_pos = next;
        if ((rc = commit_batch(a, a->evbuf, n, next)) != AP_OK) {
            reader_reset(a);
            break;
        }
        total += n;
        as_of = ap_money_floor_div(a->evbuf[n - 1].time_ns, 1000000);
        if (!a->o.log)
            atomic_store(&a->s_end, next);
        if (r < 0)
            break;
        if (n < a->o.batch_max) {
            as_of = now_ms();
            break;
        }
    }
    if (folded)
        *folded = total;
    feed(a, as_of ? as_of : now_ms());
    return rc;
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void *agg_main(void *arg)
{
    struct ap_agg *a = arg;
    ap_log_set_thread_name("aggregator");
    ap_thread_background();
    int backoff_ms = 0;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        bool stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        uint64_t n = 0;
        int rc = ap_agg_run_once(a, &n);
        if (stop)
            break;
        if (rc != AP_OK)
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 100;
        else
            backoff_ms = 0;
        if (rc == AP_OK && a->o.retention_s > 0 &&
            ap_time_mono_ns() - a->pruned_ns >= AP_AGG_PRUNE_EVERY_S * 1000000000ull) {
            /* retention: only what the committed checkpoint has passed can go */
            a->pruned_ns = ap_time_mono_ns();
            int deleted = 0;
            int prc = ap_evlog_prune(a->log_dir, a->state.log_offset, a->o.retention_s, &deleted);
            if (prc != AP_OK)
                ap_log_warn("agg: event log retention: %s", ap_strerror(prc));
            if (deleted) {
                atomic_fetch_add(&a->s_pruned, (uint64_t)deleted);
                ap_log_info("agg: deleted %d counted event log segment(s) older than %lld h",
                            deleted, (long long)(a->o.retention_s / 3600));
            }
        }
        if (rc == AP_OK && n >= a->o.batch_max)
            continue; /* behind: go on at once */
        int wait_ms = backoff_ms ? backoff_ms : a->o.interval_ms;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&a->mu);
        while (!a->stop) {
            if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) == ETIMEDOUT)
                break;
        }
        pthread_mutex_unlock(&a->mu);
    }
    return NULL;
}

/* ---- life cycle and stats ---------------------------------------------------------------- */

struct ap_agg *ap_agg_create(const struct ap_agg_options *o, int *err, char *errbuf, size_t errcap)
{
    int rc = AP_ENOMEM;
    struct ap_agg *a = calloc(1, sizeof(*a));
    if (!a)
        goto fail;
    a->o = *o;
    if (!a->o.interval_ms)
        a->o.interval_ms = AP_AGG_DEFAULT_INTERVAL_MS;
    if (!a->o.batch_max)
        a->o.batch_max = AP_AGG_DEFAULT_BATCH;
    if (!o->db_path || !o->log_dir ||
        snprintf(a->db_path, sizeof(a->db_path), "%s", o->db_path) >= (int)sizeof(a->db_path) ||
        snprintf(a->log_dir, sizeof(a->log_dir), "%s", o->log_dir) >= (int)sizeof(a->log_dir)) {
        rc = AP_EINVAL;
        if (errbuf)
            snprintf(errbuf, errcap, "agg: missing or over-long db path or log dir");
        goto fail;
    }
    a->o.db_path = a->db_path;
    a->o.log_dir = a->log_dir;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->row_cap = 1;
    while (a->row_cap < a->o.batch_max * 2)
        a->row_cap *= 2;
    a->evbuf = malloc(a->o.batch_max * sizeof(*a->evbuf));
    a->ev_ms = malloc(a->o.batch_max * sizeof(*a->ev_ms));
    a->rows = malloc(a->o.batch_max * sizeof(*a->rows));
    a->cdays = malloc(a->o.batch_max * sizeof(*a->cdays));
    a->row_ix = calloc(a->row_cap, sizeof(*a->row_ix));
    if (!a->evbuf || !a->ev_ms || !a->rows || !a->cdays || !a->row_ix)
        goto fail;
    if (zone_index(a, "UTC") != 0) /* zone 0: the fallback */
        goto fail;
    if ((rc = ap_store_rollup_open(a->db_path, &a->st)) != AP_OK) {
        if (errbuf)
            snprintf(errbuf, errcap, "agg: cannot open the rollup tables in %s: %s", a->db_path,
                     ap_strerror(rc));
        goto fail;
    }
    if ((rc = load_config(a)) != AP_OK || (rc = load_durable(a)) != AP_OK) {
        if (errbuf)
            snprintf(errbuf, errcap, "agg: cannot load state: %s", ap_store_rollup_errmsg(a->st));
        goto fail;
    }
    *err = AP_OK;
    return a;
fail:
    ap_agg_destroy(a);
    *err = rc;
    return NULL;
}

int ap_agg_start(struct ap_agg *a)
{
    a->stop = false;
    if (pthread_create(&a->thread, NULL, agg_main, a) != 0)
        return AP_ESYS;
    a->started = true;
    return AP_OK;
}

void ap_agg_stop(struct ap_agg *a)
{
    if (!a || !a->started)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    a->started = false;
}

void ap_agg_destroy(struct ap_agg *a)
{
    if (!a)
        return;
    ap_agg_stop(a);
    reader_reset(a);
    ap_store_rollup_close(a->st);
    for (uint32_t i = 0; i < a->nzones; i++) {
        free(a->zones[i].at);
        free(a->zones[i].off);
    }
    free(a->zones);
    free(a->camps);
    free(a->pubs);
    free(a->parts);
    imap_free(&a->camp_ix);
    imap_free(&a->pub_ix);
    imap_free(&a->part_ix);
    free(a->evbuf);
    free(a->ev_ms);
    free(a->rows);
    free(a->cdays);
    free(a->row_ix);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}

void ap_agg_stats(struct ap_agg *a, struct ap_agg_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->checkpoint = atomic_load(&a->s_checkpoint);
    out->log_end = a->o.log ? ap_evlog_end(a->o.log) : atomic_load(&a->s_end);
    if (out->log_end < out->checkpoint)
        out->log_end = out->checkpoint;
    out->lag_bytes = out->log_end - out->checkpoint;
    out->lag_records = out->lag_bytes / AP_EVLOG_FRAME_BYTES;
    out->events = atomic_load(&a->s_events);
    out->duplicates = atomic_load(&a->s_dups);
    out->test_events = atomic_load(&a->s_test);
    out->segments_deleted = atomic_load(&a->s_pruned);
    out->unknown_campaign = atomic_load(&a->s_unknown);
    out->batches = atomic_load(&a->s_batches);
    out->failures = atomic_load(&a->s_failures);
    out->commit_us_last = atomic_load(&a->s_commit_last);
    out->commit_us_max = atomic_load(&a->s_commit_max);
    for (int i = 0; i < LAG_BUCKETS; i++)
        out->lag_hist[i] = atomic_load(&a->s_lag_hist[i]);
    /* lag in seconds: how old the data the reports show may be; 0 when caught up */
    if (out->lag_records) {
        int64_t seen = atomic_load(&a->s_last_event_ms);
        out->lag_seconds = seen ? (double)(now_ms() - seen) / 1000.0 : 0;
    }
}

size_t ap_agg_metrics(struct ap_agg *a, char *out, size_t cap)
{
    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    int n = snprintf(
        out, cap,
        "# HELP ap_agg_lag_bytes Event log bytes not yet aggregated.\n"
        "# TYPE ap_agg_lag_bytes gauge\nap_agg_lag_bytes %llu\n"
        "# HELP ap_agg_lag_records Event log records not yet aggregated.\n"
        "# TYPE ap_agg_lag_records gauge\nap_agg_lag_records %llu\n"
        "# HELP ap_agg_lag_seconds Age of the newest aggregated event while records wait.\n"
        "# TYPE ap_agg_lag_seconds gauge\nap_agg_lag_seconds %.3f\n"
        "# HELP ap_agg_events_total Events counted into the rollups.\n"
        "# TYPE ap_agg_events_total counter\nap_agg_events_total %llu\n"
        "# HELP ap_agg_duplicates_total Repeated (impression id, type) events dropped.\n"
        "# TYPE ap_agg_duplicates_total counter\nap_agg_duplicates_total %llu\n"
        "# HELP ap_agg_test_events_total Test-traffic events counted (never billed).\n"
        "# TYPE ap_agg_test_events_total counter\nap_agg_test_events_total %llu\n"
        "# HELP ap_agg_unknown_campaign_total Billable events of unknown campaigns (unbilled).\n"
        "# TYPE ap_agg_unknown_campaign_total counter\nap_agg_unknown_campaign_total %llu\n"
        "# HELP ap_agg_batches_total Batches committed.\n"
        "# TYPE ap_agg_batches_total counter\nap_agg_batches_total %llu\n"
        "# HELP ap_agg_failures_total Batches rolled back (retried).\n"
        "# TYPE ap_agg_failures_total counter\nap_agg_failures_total %llu\n"
        "# HELP ap_agg_commit_seconds_max Longest batch transaction.\n"
        "# TYPE ap_agg_commit_seconds_max gauge\nap_agg_commit_seconds_max %.6f\n"
        "# HELP ap_evlog_segments_deleted_total Counted event log segments deleted by retention.\n"
        "# TYPE ap_evlog_segments_deleted_total counter\nap_evlog_segments_deleted_total %llu\n",
        (unsigned long long)s.lag_bytes, (unsigned long long)s.lag_records, s.lag_seconds,
        (unsigned long long)s.events, (unsigned long long)s.duplicates,
        (unsigned long long)s.test_events, (unsigned long long)s.unknown_campaign,
        (unsigned long long)s.batches, (unsigned long long)s.failures,
        (double)s.commit_us_max / 1e6, (unsigned long long)s.segments_deleted);
    if (n < 0)
        return 0;
    size_t len = (size_t)n < cap ? (size_t)n : (cap ? cap - 1 : 0);
    /* event lag histogram (accept -> committed), cumulative */
    uint64_t cum = 0;
    for (int i = 0; i < LAG_BUCKETS && len + 1 < cap; i++) {
        cum += s.lag_hist[i];
        char le[32];
        if (i < LAG_BUCKETS - 1)
            snprintf(le, sizeof(le), "%.3f", (double)LAG_BOUNDS_MS[i] / 1000.0);
        else
            snprintf(le, sizeof(le), "+Inf");
        int m =
            snprintf(out + len, cap - len, "%sap_agg_event_lag_seconds_bucket{le=\"%s\"} %llu\n",
                     i == 0 ? "# HELP ap_agg_event_lag_seconds Time from an event's acceptance "
                              "to its rollup commit.\n# TYPE ap_agg_event_lag_seconds "
                              "histogram\n"
                            : "",
                     le, (unsigned long long)cum);
        if (m < 0)
            break;
        len += (size_t)m < cap - len ? (size_t)m : cap - len - 1;
    }
    if (len + 1 < cap) {
        int m = snprintf(out + len, cap - len,
                         "ap_agg_event_lag_seconds_sum %.3f\nap_agg_event_lag_seconds_count %llu\n",
                         (double)atomic_load(&a->s_lag_sum_ms) / 1000.0, (unsigned long long)cum);
        if (m > 0)
            len += (size_t)m < cap - len ? (size_t)m : cap - len - 1;
    }
    return len;
}

int64_t ap_agg_lag_p99_ms(struct ap_agg *a)
{
    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    uint64_t total = 0, cum = 0;
    for (int i = 0; i < LAG_BUCKETS; i++)
        total += s.lag_hist[i];
    if (!total)
        return 0;
    for (int i = 0; i < LAG_BUCKETS; i++) {
        cum += s.lag_hist[i];
        if (cum * 100 >= total * 99)
            return i < LAG_BUCKETS - 1 ? LAG_BOUNDS_MS[i] : INT64_MAX;
    }
    return INT64_MAX;
}
