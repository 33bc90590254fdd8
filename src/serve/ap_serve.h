/*
 * ap_serve: ad decisioning on the data plane (DESIGN.md §3-4, docs/adr/0006).
 *
 *   store --(builder thread: poll ap_store_version every 100 ms, read everything in one read
 *   transaction)--> ap_serve_snapshot_build() --> immutable snapshot --(rcu_assign_pointer)-->
 *   workers: ap_serve_decide() inside an RCU read-side critical section.
 *
 * Three lifetimes:
 *   - snapshot: struct ap_serve_snapshot and everything in it: built by one thread, immutable
 *     once published, freed after an RCU grace period (liburcu, memb flavour);
 *   - process: struct ap_serve_delivery (budgets, pacing, frequency caps: shared counters,
 *     lock-free, persisted under <data-dir>/serve/), the module state of ap_serve_start();
 *   - request: struct ap_serve_ctx, the picks, every scratch allocation (the request arena).
 *
 * Threads: ap_serve_start/register/stop on the main thread; ap_serve_decide and the HTTP
 * handlers on data-plane workers (never blocking, no lock, no malloc once warm); the builder and
 * the delivery thread (pacing every second, frequency-cap sweep, persistence) are the module's
 * own background threads.
 */
#ifndef AP_SERVE_H
#define AP_SERVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/ap_arena.h"
#include "../net/ap_router.h"
#include "../store/ap_schema.h"
#include "ap_context.h"

struct ap_http_exchange;

#define AP_SERVE_MAX_PLACEMENTS 20        /* per decision request (400 past it) */
#define AP_SERVE_MAX_COUNT 10             /* ads per placement per request */
#define AP_SERVE_MAX_CAMPAIGNS (1u << 20) /* delivery slots */
#define AP_SERVE_POLL_MS 100              /* builder: store version poll interval */
#define AP_SERVE_REBUILD_MAX_AGE 3600     /* rebuild at least this often (time-zone tables) */
#define AP_SERVE_CTR_PRIOR_PPM 2000       /* predicted CTR (0.2%) until the CTR model exists */
#define AP_SERVE_CVR_PRIOR_PPM 200        /* predicted actions per impression (0.02%) */
#define AP_SERVE_MAX_WORKERS 256
#define AP_SERVE_FCAP_WAYS 8 /* frequency-cap table: ways per set */

struct ap_serve_snapshot;
struct ap_serve_delivery;

/* ---- snapshots ------------------------------------------------------------------------------ */

/* The store's rows as the builder read them: rows[res] is a JSON array of objects in API form
 * (borrowed); missing arrays count as empty. */
struct ap_serve_rows {
    const json_t *rows[AP_SCHEMA_RES_COUNT];
    int64_t version;
    int64_t now; /* Unix s: used for time-zone tables and to drop ended campaigns */
};

/* Compiles rows into a new snapshot. Only serving rows are kept: active advertisers,
 * campaigns (not ended), ads, approved active creatives, active placements of active sites and
 * publishers. d assigns delivery slots to campaigns (may be NULL in tests: slot 0). Rows with
 * unusable values (an image creative without sha256/mime, a creative type
 * without its markup) are left out, never fatal; an unreadable time zone counts as UTC. AP_OK and
 * *out, or AP_ENOMEM / AP_ELIMIT. Builder thread (or any thread in tests); rows are only read. */
int ap_serve_snapshot_build(const struct ap_serve_rows *in, struct ap_serve_delivery *d,
                            struct ap_serve_snapshot **out);

/* Frees a snapshot that no reader can see any more (NULL is fine). */
void ap_serve_snapshot_free(struct ap_serve_snapshot *s);

struct ap_serve_snapshot_stats {
    int64_t version;
    uint32_t ads, campaigns, creatives, placements, sets;
    size_t bytes;      /* memory held */
    uint64_t build_ns; /* compile time (not counting the store read) */
};
void ap_serve_snapshot_stats(const struct ap_serve_snapshot *s, struct ap_serve_snapshot_stats *st);

/* ---- delivery state ----------------------------------------------------------------------- */

struct ap_serve_delivery_options {
    uint32_t fcap_sets;     /* frequency-cap table sets (x AP_SERVE_FCAP_WAYS entries); 0: 65536 */
    const char *state_path; /* file for caps and counters; NULL: not persisted */
};

/* Creates the process-lifetime delivery state (and loads state_path if it exists). NULL on
 * failure (*err set). Main thread. */
struct ap_serve_delivery *ap_serve_delivery_create(const struct ap_serve_delivery_options *opt,
                                                   int *err);
void ap_serve_delivery_destroy(struct ap_serve_delivery *d);

/* Recomputes pacing throttles from the spend and offer rates and sweeps expired frequency-cap
 * entries. The delivery thread every second; tests call it with simulated time (now = Unix s,
 * mono_ns = a monotonic clock in ns). */
void ap_serve_delivery_tick(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                            int64_t now, uint64_t mono_ns);

/* Sweeps the whole frequency-cap table at once (tick sweeps 1/64 of it per call). */
void ap_serve_delivery_sweep_all(struct ap_serve_delivery *d, int64_t now);

/* Writes / reads the state file (counters and live frequency-cap entries). Background thread
 * or shutdown. AP_OK or an I/O error. */
int ap_serve_delivery_save(struct ap_serve_delivery *d);

/* Billed spend fed by the aggregator (src/events/ap_agg.h). Once fed, budgets and pacing use
 * billed spend + the cost of what was served since as_of_ms - AP_SERVE_FEED_SLACK_MS (served but
 * not billed yet: in flight), instead of counting served impressions alone; campaigns absent
 * from a call keep their last figures. local_day: the advertiser-local day number (days since
 * 1970-01-01) of today_micros. Any thread (the aggregator's). */
#define AP_SERVE_FEED_SLACK_MS 2000 /* beacons normally arrive within this after the decision */
#define AP_SERVE_FEED_WINDOW 16     /* seconds of served cost kept per campaign for in-flight */
struct ap_serve_spend {
    int64_t campaign_id;
    int32_t local_day;
    int64_t today_micros, lifetime_micros;
};
void ap_serve_delivery_set_spend(struct ap_serve_delivery *d, const struct ap_serve_spend *s,
                                 size_t n, int64_t as_of_ms);
/* The same on the daemon's delivery state (the one ap_serve_start created; no-op before it or
 * after ap_serve_stop). */
void ap_serve_set_spend(const struct ap_serve_spend *s, size_t n, int64_t as_of_ms);

/* Spend and events fed from outside (the events pipeline, later). Any thread. */
void ap_serve_delivery_add_click(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                                 int64_t campaign_id);

/* Counters of a campaign for tests and /metrics: spend in micros (today in the advertiser's
 * zone at now, lifetime) and impressions. AP_ENOTFOUND if the campaign has no slot. */
struct ap_serve_campaign_counters {
    int64_t spent_today_micros, spent_lifetime_micros, impressions, clicks;
    double throttle; /* pass probability 0..1 */
};
int ap_serve_delivery_counters(struct ap_serve_delivery *d, const struct ap_serve_snapshot *s,
                               int64_t campaign_id, int64_t now,
                               struct ap_serve_campaign_counters *out);

/* ---- decisions ----------------------------------------------------------------------------- */

/* Per-worker engine state: random generators. One per worker (not shared). */
struct ap_serve_rng {
    uint64_t s[4];
};
void ap_serve_rng_seed(struct ap_serve_rng *r, uint64_t seed);
uint64_t ap_serve_rng_next(struct ap_serve_rng *r);

struct ap_serve_slot_req {
    int64_t placement_id;
    int count; /* 1..AP_SERVE_MAX_COUNT */
};

struct ap_serve_pick {
    const struct ap_serve_ad *ad;
    const struct ap_serve_campaign *campaign;
    const struct ap_serve_creative *creative;
    const struct ap_serve_placement *placement;
    int64_t price_micros; /* CPM price charged (eCPM for CPC/CPA) */
};

struct ap_serve_decide_opts {
    bool exclusive_advertisers; /* no two ads of one advertiser in one request */
    bool dry_run;               /* count nothing (no caps, spend, pacing offers) */
};

/* Picks up to slots[i].count ads for each slot into picks (picks[i * AP_SERVE_MAX_COUNT + k],
 * npicks[i] of them; the rest NULL ads). Never the same ad twice in one request. ctx as
 * resolved by the caller; rng the worker's. arena: request scratch. Returns AP_OK, or
 * AP_ENOTFOUND if a placement id is unknown (nothing picked, nothing counted), AP_ENOMEM.
 * Worker threads, inside an RCU read-side section holding s. */
int ap_serve_decide(const struct ap_serve_snapshot *s, struct ap_serve_delivery *d,
                    struct ap_serve_rng *rng, const struct ap_serve_ctx *ctx,
                    const struct ap_serve_slot_req *slots, int nslots,
                    const struct ap_serve_decide_opts *opt, struct ap_arena *arena,
                    struct ap_serve_pick *picks, int *npicks);

/* ---- the module in the daemon ------------------------------------------------------------ */

struct ap_serve_options {
    const char *data_dir;        /* store <data_dir>/adplatform.db, state <data_dir>/serve/ */
    const char *public_url;      /* tracking/asset base URL; NULL/"": http://HOST:PORT */
    const char *listen_host;     /* data plane host (for the default public URL) */
    int listen_port;             /* bound data plane port */
    int threads;                 /* data-plane workers */
    const char *trusted_proxies; /* comma-separated CIDRs whose X-Forwarded-For is honoured */
    uint32_t fcap_sets;          /* 0: default */
    struct ap_evlog *evlog;      /* decisions are logged here, best effort (NULL: not logged) */
};

/* Starts the module: token keys (a reference on ap_token_ring: the store's keys, published and
 * refreshed on rotation; decisions sign with ap_token_ring_get()->sign), delivery
 * state, the builder thread (first snapshot built before returning, so serving starts warm) and
 * the delivery thread. AP_OK or an error (msg in err). Main thread, before the data plane
 * starts. */
int ap_serve_start(const struct ap_serve_options *opt, char *err, size_t errlen);

/* Sets the edge functions (geo, UA, consent); see ap_context.h. Main thread, before the data
 * plane starts. */
void ap_serve_set_edge(const struct ap_serve_edge *edge);

/* Registers POST /v1/decision and GET /v1/ad on the data-plane router. AP_OK or a router
 * error. Main thread. */
int ap_serve_register(struct ap_router *r);

/* Stops the background threads, saves the delivery state, frees the snapshot. Main thread,
 * after the data plane has drained. */
void ap_serve_stop(void);

/* For the events endpoints (click redirect): copies the landing URL of ad_id from the current
 * snapshot into out[cap] (NUL-terminated). AP_OK, AP_ENOTFOUND (no such serving ad, or no
 * landing URL), AP_ELIMIT (cap too small). Worker threads (takes the RCU read lock itself). */
int ap_serve_landing_url(int64_t ad_id, char *out, size_t cap);

/* The client's address for request x in numeric form into out[cap] ("" when unknown): the
 * peer, or, when the peer is one of --trusted-proxies, the right-most X-Forwarded-For entry
 * that is not a trusted proxy (the rule /v1/decision uses). The exchange's worker thread. */
void ap_serve_client_ip(struct ap_http_exchange *x, char *out, size_t cap);

/* Counts a click for the campaign (goals "clicks"), until the events pipeline feeds spend.
 * Any thread. */
void ap_serve_record_click(int64_t campaign_id);

/* The serving snapshot's store version (0 before the first), for tests and /metrics. */
int64_t ap_serve_current_version(void);

/* ---- our campaigns as a bidder in OpenRTB auctions (src/rtb) --------------------------------- */

#define AP_SERVE_RTB_MAX_SIZES 16

/* The request context as an OpenRTB request gives it (spans live for the request). */
struct ap_serve_rtb_in {
    struct ap_span ip, ua, page_url, referrer, tcf, user_key;
    bool gdpr;
    bool no_personal; /* COPPA or LMT: no user key, no storage, no personalisation */
};

struct ap_serve_rtb_imp {
    int64_t placement_id;
    int nsizes; /* accepted banner sizes; 0 = any size the placement takes */
    uint16_t w[AP_SERVE_RTB_MAX_SIZES], h[AP_SERVE_RTB_MAX_SIZES];
    int64_t floor_micros; /* CPM floor in our currency; 0 = none */
};

struct ap_serve_rtb_bid {
    bool ok; /* false: no bid for this imp */
    int64_t ad_id, campaign_id, advertiser_id, creative_id, placement_id, publisher_id;
    int64_t price_micros; /* CPM */
    uint16_t w, h;
    uint64_t user_hash;     /* for the frequency caps at commit (0 = none) */
    struct ap_span adm;     /* markup with our impression pixel (arena) */
    struct ap_span imp_url; /* our impression beacon URL (arena) */
    struct ap_span click_url;
    struct ap_span adomain; /* landing host ("" if none) */
};

/* Decides, without counting anything, one bid per imp for our campaigns (dry run; pacing gate
 * applied), builds the markup and signed tracking URLs into arena. out[i].ok says whether imp
 * i got a bid. AP_OK, AP_EAGAIN (no snapshot yet), AP_ENOMEM. Unknown placements are simply no
 * bid. Worker thread of x (takes the RCU read lock itself). */
int ap_serve_rtb_decide(struct ap_http_exchange *x, const struct ap_serve_rtb_in *in,
                        const struct ap_serve_rtb_imp *imps, int n, struct ap_arena *arena,
                        struct ap_serve_rtb_bid *out);

/* The bid won its auction: counts it as served (spend at price_micros, frequency caps). Worker
 * threads. */
void ap_serve_rtb_commit(const struct ap_serve_rtb_bid *b);

/* Our impression pixel behind a winning partner bid (ADR 0015): a fresh impression id into
 * imp_id, and "<public url>/v1/e/imp?t=TOKEN" into out[cap] (NUL-terminated), the token an
 * AP_TOKEN_IMP of version 2 carrying partner_id (> 0), placement_id/publisher_id (0 = unknown)
 * and price_micros (the clearing CPM). flags: AP_TOKEN_F_*. Returns the length, or AP_EINVAL /
 * AP_ELIMIT / AP_EAGAIN (serving not started). Worker thread `worker`. */
int ap_serve_partner_imp_url(int worker, int64_t partner_id, int64_t placement_id,
                             int64_t publisher_id, int64_t price_micros, uint8_t flags,
                             uint8_t imp_id[16], char *out, size_t cap);

#endif
