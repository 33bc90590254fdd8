/*
 * ap_serve_internal: the serving snapshot's layout and the engine's internals, shared by the
 * files of src/serve and their unit tests. Not a public contract (ap_serve.h is).
 *
 * Snapshot lifetime: everything reachable from struct ap_serve_snapshot is owned by it,
 * immutable once published, and freed by ap_serve_snapshot_free() after the RCU grace period.
 * Workers read it inside an RCU read-side critical section, never writing.
 */
#ifndef AP_SERVE_INTERNAL_H
#define AP_SERVE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/ap_span.h"
#include "ap_serve.h"

/* ---- sets of ads: sorted block lists ----------------------------------------------------------
 * Ads are numbered by rank (0 = best). A set is the sorted list of its non-empty 64-ad blocks:
 * blk[i] = block number, bits[i] = which of its 64 ads are in the set. Dense sets cost ~12 bytes
 * per 64 ads, sparse ones 12 bytes per ad; intersections gallop, so their cost follows the
 * number of blocks visited before the winner, not the number of ads (docs/adr/0006). */
struct ap_serve_set {
    uint32_t n;
    const uint32_t *blk;
    const uint64_t *bits;
};

/* ---- string -> set dictionaries (one per targeting dimension) ----------------------------------
 */
struct ap_serve_dict_entry {
    uint64_t hash;             /* 0 = empty slot */
    uint32_t key_off, key_len; /* into the snapshot's string pool */
    uint32_t set;              /* index into the snapshot's sets */
};

struct ap_serve_dict {
    uint32_t cap; /* power of two (0 = empty dict) */
    uint32_t n;
    struct ap_serve_dict_entry *e;
};

/* Include dimensions: a value's set holds the ads whose rule lists the value; norule holds the
 * ads without a rule in that dimension. Exclude dimensions: a value's set holds the ads that
 * exclude it. Keys are lower case except countries/regions (upper case, as in the schema). */
enum ap_serve_dim {
    AP_SERVE_DIM_COUNTRY = 0,
    AP_SERVE_DIM_REGION,
    AP_SERVE_DIM_CITY,
    AP_SERVE_DIM_DEVICE,
    AP_SERVE_DIM_OS,
    AP_SERVE_DIM_BROWSER,
    AP_SERVE_DIM_LANG,
    AP_SERVE_DIM_KW_ANY_C, /* the campaign's keywords.any */
    AP_SERVE_DIM_KW_ANY_A, /* the ad's keywords.any */
    AP_SERVE_DIM_SEGMENT,
    AP_SERVE_DIM_SITE,
    AP_SERVE_DIM_PLACEMENT,
    AP_SERVE_DIM_DOMAIN,
    AP_SERVE_DIM_COUNT
};

enum ap_serve_xdim {
    AP_SERVE_XDIM_COUNTRY = 0,
    AP_SERVE_XDIM_REGION,
    AP_SERVE_XDIM_CITY,
    AP_SERVE_XDIM_KW_NONE,
    AP_SERVE_XDIM_SITE,
    AP_SERVE_XDIM_PLACEMENT,
    AP_SERVE_XDIM_DOMAIN,
    AP_SERVE_XDIM_COUNT
};

/* ---- flat records -------------------------------------------------------------------------------
 */
enum ap_serve_tier { AP_SERVE_TIER_SPONSORSHIP = 0, AP_SERVE_TIER_STANDARD, AP_SERVE_TIER_HOUSE };
enum ap_serve_pricing { AP_SERVE_CPM = 0, AP_SERVE_CPC, AP_SERVE_CPA };
enum ap_serve_ctype { AP_SERVE_IMAGE = 0, AP_SERVE_HTML, AP_SERVE_NATIVE, AP_SERVE_VAST };

struct ap_serve_str {
    uint32_t off, len; /* into the string pool; len 0 = none */
};

struct ap_serve_cap {
    uint32_t count;
    uint32_t window; /* seconds */
    bool per_ad;     /* scope ad (else campaign) */
};

struct ap_serve_advertiser {
    int64_t id;
    uint32_t tz; /* index into the zone table */
};

struct ap_serve_campaign {
    int64_t id, advertiser_id;
    uint32_t advertiser; /* index */
    uint32_t slot;       /* delivery slot (process-stable per campaign id) */
    uint8_t tier, pricing, selection_lottery, pacing_even,
        goal; /* goal: 0 none, 1 imps, 2 clicks */
    int32_t priority;
    int64_t price_micros;
    int64_t ecpm_micros; /* static eCPM: CPM price, or price x prior x 1000 */
    int64_t cost_milli;  /* counted spend per served impression, in 1/1000 micro-units */
    int64_t budget_lifetime, budget_daily; /* micros, -1 = unlimited */
    int64_t start_at, end_at;              /* Unix s; 0 / INT64_MAX when open */
    int64_t goal_count;
    uint32_t caps_off, ncaps; /* into caps */
};

struct ap_serve_creative {
    int64_t id;
    uint8_t type; /* enum ap_serve_ctype */
    uint16_t width, height;
    struct ap_serve_str url;    /* image: public asset path "/assets/<sha>.<ext>" */
    struct ap_serve_str html;   /* html markup */
    struct ap_serve_str native; /* native assets, JSON text */
    struct ap_serve_str vast;
};

struct ap_serve_ad {
    int64_t id;
    uint32_t campaign, creative; /* indices */
    uint32_t weight;
    uint32_t group;                /* rank group index */
    uint32_t kw_all_off, kw_all_n; /* required keywords (lower case) in kw_refs */
    uint32_t daypart;              /* index into dayparts, 0 = no rule */
    uint32_t ipr_off[2];           /* campaign's and ad's ip_ranges in ranges */
    uint16_t ipr_n[2];
    bool has_segments; /* a segment rule (needs personalisation) */
    struct ap_serve_str landing;
};

/* A run of ads with the same tier, priority and selection, in rank order. */
struct ap_serve_group {
    uint32_t start, end; /* ad positions [start, end) */
    bool lottery;
};

struct ap_serve_iprange {
    uint8_t family; /* 4 or 6 */
    uint8_t prefix;
    uint8_t addr[16];
};

struct ap_serve_placement {
    int64_t id, site_id, publisher_id;
    int64_t floor_cpm_micros;
    struct ap_serve_str domain; /* the site's domain */
    struct ap_serve_set format; /* ads whose creative fits (sizes x ad types) */
};

struct ap_serve_zone {
    struct ap_serve_str name;
    uint32_t n;            /* transitions */
    const int64_t *at;     /* UTC seconds, ascending */
    const int32_t *offset; /* offset in effect from at[i] */
    int32_t offset_before; /* before at[0] (or always, if n == 0) */
};

struct ap_serve_snapshot {
    int64_t version;  /* the store version it was built from */
    int64_t built_at; /* Unix s */
    uint64_t build_ns;

    uint32_t nads, ncampaigns, nadvertisers, ncreatives, nplacements, ngroups, nzones;
    struct ap_serve_ad *ads; /* by rank */
    struct ap_serve_campaign *campaigns;
    struct ap_serve_advertiser *advertisers;
    struct ap_serve_creative *creatives;
    struct ap_serve_placement *placements;
    struct ap_serve_group *groups;
    struct ap_serve_zone *zones;
    struct ap_serve_cap *caps;
    uint64_t (*dayparts)[3]; /* 168-bit masks; [0] unused */
    struct ap_serve_iprange *ranges;
    uint32_t ranges_n;
    struct ap_serve_str *kw_refs;

    /* ad id -> position, placement id -> index: open addressing (key 0 = empty) */
    uint32_t ad_cap;
    int64_t *ad_keys;
    uint32_t *ad_vals;
    uint32_t pl_cap;
    int64_t *pl_keys;
    uint32_t *pl_vals;

    struct ap_serve_dict dims[AP_SERVE_DIM_COUNT];
    struct ap_serve_set norule[AP_SERVE_DIM_COUNT];
    struct ap_serve_dict xdims[AP_SERVE_XDIM_COUNT];

    uint32_t nsets;
    struct ap_serve_set *sets;
    char *strings;
    size_t strings_len;

    /* every block allocated for this snapshot, freed together */
    void **allocs;
    size_t nallocs, allocs_cap;
    size_t bytes; /* total allocated */
};

static inline struct ap_span ap__serve_str(const struct ap_serve_snapshot *s, struct ap_serve_str r)
{
    return ap_span_make(s->strings + r.off, r.len);
}

/* FNV-1a 64 (never 0). */
static inline uint64_t ap__serve_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

/* The set for key in d, or NULL. Any thread (read-only). */
const struct ap_serve_set *ap__serve_dict_get(const struct ap_serve_snapshot *s,
                                              const struct ap_serve_dict *d, struct ap_span key);

/* The ad with this id, or NULL. */
const struct ap_serve_ad *ap__serve_ad_find(const struct ap_serve_snapshot *s, int64_t id);

/* Placement index for an id, or -1. */
int64_t ap__serve_placement_find(const struct ap_serve_snapshot *s, int64_t id);

/* Offset from UTC (seconds) of zone z at time t. */
int32_t ap__serve_zone_offset(const struct ap_serve_zone *z, int64_t t);

/* Reads a TZif file (v1 or v2+) into transitions; ignores the POSIX footer (Debian's files are
 * "fat": explicit transitions to 2037). AP_OK, AP_ENOTFOUND, AP_ECORRUPT. at/offset are
 * malloc'ed (caller frees). Builder thread. */
int ap__serve_tz_load(const char *name, int64_t **at, int32_t **offset, uint32_t *n,
                      int32_t *offset_before);

/* ---- delivery (ap_serve_delivery.c) -------------------------------------------------------------
 */

/* Per-campaign delivery state, shared by every worker (relaxed atomics; one slot per campaign
 * id for the life of the process). Spend is in 1/1000 micro-units. */
struct ap_serve_dslot {
    _Atomic int64_t campaign_id;
    _Atomic int64_t spent_day[2]; /* indexed by local day number & 1 */
    _Atomic int32_t day_tag[2];   /* which day each holds */
    _Atomic int64_t spent_life;
    _Atomic int64_t imps;
    _Atomic int64_t clicks;
    _Atomic int64_t offers;       /* times the campaign reached the pacing gate */
    _Atomic uint32_t throttle;    /* pass probability x 2^32 - 1 (UINT32_MAX = always) */
    _Atomic int32_t throttle_day; /* the local day it was computed for (another day: pass) */
    /* pacer-private */
    int64_t prev_offers;
    double offer_rate; /* smoothed offers per second */
    uint64_t prev_tick_ns;
} __attribute__((aligned(64)));

/* The slot of a campaign id, assigned on first sight (builder thread only). AP_ELIMIT when
 * AP_SERVE_MAX_CAMPAIGNS slots are in use. */
int ap__serve_delivery_slot(struct ap_serve_delivery *d, int64_t campaign_id, uint32_t *slot);
struct ap_serve_dslot *ap__serve_delivery_dslot(struct ap_serve_delivery *d, uint32_t slot);

/* Engine checks, worker threads. local_day = advertiser-local day number. */
bool ap__serve_budget_ok(struct ap_serve_delivery *d, const struct ap_serve_campaign *c,
                         int32_t local_day);
bool ap__serve_pacing_pass(struct ap_serve_delivery *d, const struct ap_serve_campaign *c,
                           int32_t local_day, uint64_t rnd);
bool ap__serve_goal_ok(struct ap_serve_delivery *d, const struct ap_serve_campaign *c);
void ap__serve_count_serve(struct ap_serve_delivery *d, const struct ap_serve_campaign *c,
                           int32_t local_day);

/* Keyed 64-bit hash of a user key (SipHash with the state's secret key; never 0). */
uint64_t ap__serve_user_hash(struct ap_serve_delivery *d, struct ap_span user_key);

/* Frequency caps: true if the user may see ad (of campaign c) now, without counting. */
bool ap__serve_fcap_ok(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                       const struct ap_serve_ad *ad, uint64_t user_hash, int64_t now);
/* Counts one impression against every cap; false (and nothing counted) if a cap would be
 * exceeded (a concurrent request got there first). */
bool ap__serve_fcap_take(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                         const struct ap_serve_ad *ad, uint64_t user_hash, int64_t now);

/* ---- the decision request body (ap_serve_http.c) ----------------------------------------------
 * What POST /v1/decision reads from its body, exposed for the fuzz target
 * (tests/fuzz/fuzz_decision.c) and tests. Spans point into the body or, for strings with
 * escapes, into the arena. */
struct ap__serve_decision_req {
    struct ap_serve_slot_req slots[AP_SERVE_MAX_PLACEMENTS];
    struct ap_span divs[AP_SERVE_MAX_PLACEMENTS]; /* never empty: the placement id by default */
    int nslots;                                   /* 1..AP_SERVE_MAX_PLACEMENTS when AP_OK */
    struct ap_span user_key, url, referrer, ip, ua, tcf, usp;
    bool gdpr, exclusive;
    struct ap_span keywords[AP_SERVE_CTX_MAX_KEYWORDS];
    int nkeywords;
    struct ap_span segments[AP_SERVE_CTX_MAX_SEGMENTS];
    int nsegments;
    const char *error; /* on AP_EINVAL: static text for the 400, or NULL if the JSON is bad */
};

/* Parses a decision request body of len bytes (no NUL needed, never read past len). AP_OK, or
 * AP_EINVAL (out->error says why, NULL: not valid JSON). Pure apart from arena allocations; any
 * thread. */
int ap__serve_decision_parse(const char *body, size_t len, struct ap_arena *arena,
                             struct ap__serve_decision_req *out);

#endif
