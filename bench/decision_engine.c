/*
 * bench/decision_engine.c: the decision engine alone, and a store populator for bench/decision.sh.
 *
 *   decision_engine engine [SIZES...]   ns per decision, snapshot bytes per ad and compile time
 *                                       at 1k, 10k, 100k, 1M active ads (default sizes)
 *   decision_engine roaring [SIZES...]  the same candidate sets computed with CRoaring (OR per
 *                                       dimension, AND across, minimum = best rank), for the
 *                                       "own block lists or CRoaring" decision (ADR 0006);
 *                                       built only when CRoaring's headers are installed
 *   decision_engine populate DATA_DIR N  writes N active ads (10 per campaign) with 3 targeting
 *                                       dimensions (keywords, languages, domains) into the store
 *
 * Synthetic data (both modes): campaigns target 3 dimensions, each ad inherits its campaign's
 * rules; prices are random so rank order and targeting are independent. Requests draw their
 * values from the same distributions, so the fill rate is the same at every size.
 * Compiled by bench/decision.sh against build/libaplib.a.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ap_arena.h"
#include "core/ap_error.h"
#include "core/ap_time.h"
#include "serve/ap_serve.h"
#include "serve/ap_serve_internal.h"
#include "store/ap_store.h"

#ifdef AP_BENCH_ROARING
#include <roaring/roaring.h>
#endif

#define NKW 50
#define NLANG 6
#define NDOM 10
#define ADS_PER_CAMPAIGN 10

static const char *const LANGS[NLANG] = {"en", "de", "fr", "es", "it", "nl"};

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* k distinct values of [0, n) */
static void pick(int *out, int k, int n)
{
    for (int i = 0; i < k; i++) {
        int v;
        bool dup;
        do {
            v = (int)(rnd() % (uint64_t)n);
            dup = false;
            for (int j = 0; j < i; j++)
                dup |= out[j] == v;
        } while (dup);
        out[i] = v;
    }
}

static json_t *targeting(void)
{
    int kw[5], lg[3], dm[5];
    pick(kw, 5, NKW);
    pick(lg, 3, NLANG);
    pick(dm, 5, NDOM);
    json_t *t = json_object(), *any = json_array(), *langs = json_array(), *doms = json_array();
    char b[64];
    for (int i = 0; i < 5; i++) {
        snprintf(b, sizeof(b), "kw%d", kw[i]);
        json_array_append_new(any, json_string(b));
        snprintf(b, sizeof(b), "site%d.example", dm[i]);
        json_array_append_new(doms, json_string(b));
    }
    for (int i = 0; i < 3; i++)
        json_array_append_new(langs, json_string(LANGS[lg[i]]));
    json_t *kwo = json_object();
    json_object_set_new(kwo, "any", any);
    json_object_set_new(t, "keywords", kwo);
    json_object_set_new(t, "languages", langs);
    json_object_set_new(t, "domains_include", doms);
    return t;
}

/* ---- engine mode ---------------------------------------------------------------------------- */

static bool roaring_mode;

#ifdef AP_BENCH_ROARING
/* Index of a set (placements and no-rule lists hold copies of the set records). */
static size_t set_index(const struct ap_serve_snapshot *s, const struct ap_serve_set *set)
{
    if (set >= s->sets && set < s->sets + s->nsets)
        return (size_t)(set - s->sets);
    for (uint32_t i = 0; i < s->nsets; i++)
        if (s->sets[i].blk == set->blk && s->sets[i].n == set->n)
            return i;
    abort();
}

/* The candidate computation of the engine done with CRoaring instead: per request, OR the
 * value sets of each dimension with its no-rule set, AND the dimensions and the placement's
 * formats, take the minimum (best rank). No per-ad checks: a lower bound of its cost. */
static void roaring_compare(const struct ap_serve_snapshot *s, const struct ap_serve_ctx *ctxs,
                            int nreq, int n, int nads)
{
    roaring_bitmap_t **rb = calloc(s->nsets, sizeof(*rb));
    size_t rbytes = 0, obytes = 0;
    for (uint32_t i = 0; i < s->nsets; i++) {
        const struct ap_serve_set *set = &s->sets[i];
        rb[i] = roaring_bitmap_create();
        for (uint32_t k = 0; k < set->n; k++)
            for (uint64_t w = set->bits[k]; w; w &= w - 1)
                roaring_bitmap_add(rb[i], set->blk[k] * 64 + (uint32_t)__builtin_ctzll(w));
        roaring_bitmap_run_optimize(rb[i]);
        rbytes += roaring_bitmap_size_in_bytes(rb[i]);
        obytes += (size_t)set->n * 12;
    }
#define RB(setp) rb[set_index(s, (setp))]
    static const enum ap_serve_dim DIMS[] = {AP_SERVE_DIM_KW_ANY_C, AP_SERVE_DIM_LANG,
                                             AP_SERVE_DIM_DOMAIN};
    uint64_t sink = 0, t0 = ap_time_mono_ns();
    for (int i = 0; i < n; i++) {
        const struct ap_serve_ctx *c = &ctxs[i % nreq];
        roaring_bitmap_t *acc = roaring_bitmap_copy(RB(&s->placements[0].format));
        for (size_t dm = 0; dm < sizeof(DIMS) / sizeof(DIMS[0]); dm++) {
            const roaring_bitmap_t *parts[8];
            size_t np = 0;
            parts[np++] = RB(&s->norule[DIMS[dm]]);
            const struct ap_serve_dict *dict = &s->dims[DIMS[dm]];
            const struct ap_serve_set *v;
            if (DIMS[dm] == AP_SERVE_DIM_KW_ANY_C) {
                for (int k = 0; k < c->nkeywords; k++)
                    if ((v = ap__serve_dict_get(s, dict, c->keywords[k])))
                        parts[np++] = RB(v);
            } else if (DIMS[dm] == AP_SERVE_DIM_LANG) {
                for (int k = 0; k < c->nlangs; k++)
                    if ((v = ap__serve_dict_get(s, dict, ap_span_cstr(c->langs[k]))))
                        parts[np++] = RB(v);
            } else if ((v = ap__serve_dict_get(s, dict, ap_span_cstr(c->domain)))) {
                parts[np++] = RB(v);
            }
            roaring_bitmap_t *u = roaring_bitmap_or_many(np, parts);
            roaring_bitmap_and_inplace(acc, u);
            roaring_bitmap_free(u);
        }
        if (!roaring_bitmap_is_empty(acc))
            sink += roaring_bitmap_minimum(acc);
        roaring_bitmap_free(acc);
    }
    uint64_t t1 = ap_time_mono_ns();
    printf("roaring %d %.0f %.1f %.1f %llu\n", nads, (double)(t1 - t0) / n, (double)rbytes / nads,
           (double)obytes / nads, (unsigned long long)(sink & 1));
    fflush(stdout);
    for (uint32_t i = 0; i < s->nsets; i++)
        roaring_bitmap_free(rb[i]);
    free(rb);
#undef RB
}
#else
static void roaring_compare(const struct ap_serve_snapshot *s, const struct ap_serve_ctx *ctxs,
                            int nreq, int n, int nads)
{
    (void)s, (void)ctxs, (void)nreq, (void)n, (void)nads;
    printf("# roaring: built without CRoaring (install libroaring-dev)\n");
}
#endif

static void engine(int nads, struct ap_serve_delivery *d)
{
    json_t *rows[AP_SCHEMA_RES_COUNT];
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        rows[i] = json_array();
    json_array_append_new(rows[AP_SCHEMA_ADVERTISER], json_pack("{s:i,s:s,s:s}", "id", 1, "status",
                                                                "active", "timezone", "UTC"));
    json_array_append_new(rows[AP_SCHEMA_PUBLISHER],
                          json_pack("{s:i,s:s}", "id", 1, "status", "active"));
    json_array_append_new(rows[AP_SCHEMA_SITE],
                          json_pack("{s:i,s:i,s:s,s:s}", "id", 1, "publisher_id", 1, "status",
                                    "active", "domain", "site0.example"));
    json_array_append_new(rows[AP_SCHEMA_PLACEMENT],
                          json_pack("{s:i,s:i,s:s,s:[s],s:[s,s]}", "id", 1, "site_id", 1, "status",
                                    "active", "sizes", "300x250", "ad_types", "image", "html"));
    for (int c = 1; c <= 16; c++)
        json_array_append_new(rows[AP_SCHEMA_CREATIVE],
                              json_pack("{s:i,s:i,s:s,s:i,s:i,s:s,s:s,s:s}", "id", c,
                                        "advertiser_id", 1, "type", "html", "width", 300, "height",
                                        250, "html", "<b>ad</b>", "status", "active",
                                        "approval_status", "approved"));
    int ncamp = (nads + ADS_PER_CAMPAIGN - 1) / ADS_PER_CAMPAIGN;
    for (int c = 1; c <= ncamp; c++) {
        json_t *o =
            json_pack("{s:i,s:i,s:s,s:s,s:I,s:s,s:[]}", "id", c, "advertiser_id", 1, "status",
                      "active", "priority_tier", "standard", "price_micros",
                      (json_int_t)(100000 + rnd() % 5000000), "pacing", "asap", "frequency_caps");
        json_object_set_new(o, "targeting", targeting());
        json_array_append_new(rows[AP_SCHEMA_CAMPAIGN], o);
    }
    for (int a = 1; a <= nads; a++)
        json_array_append_new(rows[AP_SCHEMA_AD],
                              json_pack("{s:i,s:i,s:i,s:i,s:s,s:{}}", "id", a, "campaign_id",
                                        (a - 1) / ADS_PER_CAMPAIGN + 1, "creative_id", a % 16 + 1,
                                        "weight", 1, "status", "active", "targeting"));
    struct ap_serve_rows in;
    memset(&in, 0, sizeof(in));
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        in.rows[i] = rows[i];
    in.version = 1;
    in.now = ap_time_unix();
    struct ap_serve_snapshot *s = NULL;
    int rc = ap_serve_snapshot_build(&in, d, &s);
    if (rc) {
        fprintf(stderr, "build failed: %s\n", ap_strerror(rc));
        exit(1);
    }
    struct ap_serve_snapshot_stats st;
    ap_serve_snapshot_stats(s, &st);
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        json_decref(rows[i]);

    /* requests: 3 keywords, 2 languages, 1 domain */
    enum { NREQ = 1024 };
    static struct ap_serve_ctx ctxs[NREQ];
    static char kwtext[NREQ][3][8];
    for (int i = 0; i < NREQ; i++) {
        struct ap_serve_ctx *c = &ctxs[i];
        ap_serve_ctx_init(c, in.now);
        int kw[3], lg[2];
        pick(kw, 3, NKW);
        pick(lg, 2, NLANG);
        for (int k = 0; k < 3; k++) {
            snprintf(kwtext[i][k], sizeof(kwtext[i][k]), "kw%d", kw[k]);
            c->keywords[c->nkeywords++] = ap_span_cstr(kwtext[i][k]);
        }
        for (int k = 0; k < 2; k++)
            memcpy(c->langs[c->nlangs++], LANGS[lg[k]], 3);
        snprintf(c->domain, sizeof(c->domain), "site%d.example", (int)(rnd() % NDOM));
    }
    struct ap_arena arena;
    ap_arena_init(&arena, 64 * 1024, 1 << 26);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 1);
    struct ap_serve_slot_req slot = {1, 1};
    struct ap_serve_pick picks[AP_SERVE_MAX_COUNT];
    int np, filled = 0;
    const int N = nads >= 1000000 ? 200000 : 500000;
    for (int i = 0; i < 20000; i++) { /* warm-up */
        ap_serve_decide(s, d, &rng, &ctxs[i % NREQ], &slot, 1, NULL, &arena, picks, &np);
        ap_arena_reset(&arena);
    }
    uint64_t t0 = ap_time_mono_ns();
    for (int i = 0; i < N; i++) {
        ap_serve_decide(s, d, &rng, &ctxs[i % NREQ], &slot, 1, NULL, &arena, picks, &np);
        filled += np;
        ap_arena_reset(&arena);
    }
    uint64_t t1 = ap_time_mono_ns();
    printf("%d %.0f %.1f %.1f %.1f\n", nads, (double)(t1 - t0) / N, (double)st.bytes / nads,
           (double)st.build_ns / 1e6, 100.0 * filled / N);
    fflush(stdout);
    if (roaring_mode)
        roaring_compare(s, ctxs, NREQ, nads >= 100000 ? 2000 : 20000, nads);
    ap_arena_destroy(&arena);
    ap_serve_snapshot_free(s);
}

/* ---- populate mode --------------------------------------------------------------------------- */

static int64_t create(struct ap_store *st, enum ap_schema_res res, json_t *fields)
{
    json_t *out = NULL;
    struct ap_schema_errors e;
    ap_schema_errors_init(&e);
    int rc = ap_store_create(st, res, fields, NULL, &out, &e);
    json_decref(fields);
    if (rc) {
        fprintf(stderr, "create %d failed: %s %s %s\n", res, ap_strerror(rc),
                e.n ? e.items[0].field : "", e.n ? e.items[0].message : "");
        exit(1);
    }
    int64_t id = json_integer_value(json_object_get(out, "id"));
    json_decref(out);
    return id;
}

static void populate(const char *dir, int nads)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/adplatform.db", dir);
    struct ap_store *st = NULL;
    int rc = ap_store_open(path, NULL, &st);
    if (rc) {
        fprintf(stderr, "open %s: %s\n", path, ap_strerror(rc));
        exit(1);
    }
    int64_t adv =
        create(st, AP_SCHEMA_ADVERTISER,
               json_pack("{s:s,s:s,s:s}", "name", "Bench", "currency", "USD", "timezone", "UTC"));
    int64_t pub = create(
        st, AP_SCHEMA_PUBLISHER,
        json_pack("{s:s,s:s,s:i}", "name", "Pub", "currency", "USD", "revenue_share_ppm", 700000));
    int64_t site = create(st, AP_SCHEMA_SITE,
                          json_pack("{s:I,s:s,s:s}", "publisher_id", (json_int_t)pub, "name", "S",
                                    "domain", "site0.example"));
    int64_t pl = create(st, AP_SCHEMA_PLACEMENT,
                        json_pack("{s:I,s:s,s:[s]}", "site_id", (json_int_t)site, "name", "top",
                                  "sizes", "300x250"));
    int64_t crs[16];
    for (int c = 0; c < 16; c++)
        crs[c] = create(st, AP_SCHEMA_CREATIVE,
                        json_pack("{s:I,s:s,s:s,s:i,s:i,s:s}", "advertiser_id", (json_int_t)adv,
                                  "name", "c", "type", "html", "width", 300, "height", 250, "html",
                                  "<a href=\"#\"><b>Bench ad</b></a>"));
    int64_t camp = 0;
    for (int a = 0; a < nads; a++) {
        if (a % ADS_PER_CAMPAIGN == 0) {
            json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:s}", "advertiser_id", (json_int_t)adv, "name",
                                  "camp", "status", "active", "price_micros",
                                  (json_int_t)(100000 + rnd() % 5000000), "pacing", "asap");
            json_object_set_new(o, "targeting", targeting());
            camp = create(st, AP_SCHEMA_CAMPAIGN, o);
        }
        create(st, AP_SCHEMA_AD,
               json_pack("{s:I,s:I,s:s}", "campaign_id", (json_int_t)camp, "creative_id",
                         (json_int_t)crs[a % 16], "landing_url", "https://bench.example/"));
    }
    ap_store_close(st);
    printf("%lld\n", (long long)pl);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "populate") == 0 && argc == 4) {
        long n = strtol(argv[3], NULL, 10);
        populate(argv[2], n > 0 ? (int)n : 10000);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "engine") == 0 || strcmp(argv[1], "roaring") == 0)) {
        roaring_mode = strcmp(argv[1], "roaring") == 0;
        int err;
        struct ap_serve_delivery_options o = {0, NULL};
        struct ap_serve_delivery *d = ap_serve_delivery_create(&o, &err);
        printf("# ads ns_per_decision bytes_per_ad compile_ms fill_pct%s\n",
               roaring_mode ? " / roaring ads ns_per_candidate_set roaring_bytes_per_ad "
                              "own_set_bytes_per_ad"
                            : "");
        if (argc == 2) {
            engine(1000, d);
            engine(10000, d);
            engine(100000, d);
            engine(1000000, d);
        }
        for (int i = 2; i < argc; i++)
            engine((int)strtol(argv[i], NULL, 10), d);
        ap_serve_delivery_destroy(d);
        return 0;
    }
    fprintf(stderr, "usage: decision_engine engine|roaring [N...] | populate DATA_DIR N\n");
    return 2;
}
