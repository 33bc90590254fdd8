/*
 * The aggregator (src/events/ap_agg.c) on a real store and a real event log: billing by pricing
 * model, de-duplication (also across restarts), test traffic, budgets in the advertiser's day,
 * seen-set pruning, restart without double counting, the spend feed into delivery control, and
 * exactness over 1,000,000 generated events (report totals equal sums computed independently
 * from the raw log).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "events/ap_agg.h"
#include "events/ap_evlog.h"
#include "events/ap_money.h"
#include "serve/ap_serve.h"
#include "test_ap_serve_util.h"
#include "test_ap_store_util.h"

#define T0 INT64_C(1719792000) /* 2024-07-01T00:00:00Z (Paris: 02:00, CEST) */
#define NS INT64_C(1000000000)

struct fx {
    struct tdir dir;
    char logdir[400];
    int64_t adv_paris, adv_utc, pub1, pub2, pl1, pl2;
    int64_t cpm, cpc, cpa, budget; /* campaign ids */
};

static int64_t create(struct ap_store *st, enum ap_schema_res res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int64_t create(struct ap_store *st, enum ap_schema_res res, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_t *in = J(buf), *out = NULL;
    struct ap_schema_errors e;
    ap_schema_errors_init(&e);
    int rc = ap_store_create(st, res, in, NULL, &out, &e);
    if (rc != AP_OK)
        dump_errors(&e);
    assert_int_equal(rc, AP_OK);
    int64_t id = jint(out, "id");
    json_decref(in);
    json_decref(out);
    return id;
}

static void fx_make(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    tdir_make(&f->dir);
    snprintf(f->logdir, sizeof(f->logdir), "%s/events", f->dir.path);
    struct ap_store *st = open_store(f->dir.db);
    f->adv_paris =
        create(st, AP_SCHEMA_ADVERTISER,
               "{\"name\":\"paris\",\"currency\":\"EUR\",\"timezone\":\"Europe/Paris\"}");
    f->adv_utc = create(st, AP_SCHEMA_ADVERTISER,
                        "{\"name\":\"utc\",\"currency\":\"EUR\",\"timezone\":\"UTC\"}");
    f->pub1 = create(st, AP_SCHEMA_PUBLISHER,
                     "{\"name\":\"p1\",\"currency\":\"EUR\",\"revenue_share_ppm\":700000,"
                     "\"timezone\":\"UTC\"}");
    f->pub2 = create(st, AP_SCHEMA_PUBLISHER,
                     "{\"name\":\"p2\",\"currency\":\"EUR\",\"revenue_share_ppm\":333333,"
                     "\"timezone\":\"UTC\"}");
    int64_t s1 = create(st, AP_SCHEMA_SITE,
                        "{\"publisher_id\":%lld,\"name\":\"s1\",\"domain\":\"a.example\"}",
                        (long long)f->pub1);
    int64_t s2 = create(st, AP_SCHEMA_SITE,
                        "{\"publisher_id\":%lld,\"name\":\"s2\",\"domain\":\"b.example\"}",
                        (long long)f->pub2);
    f->pl1 = create(st, AP_SCHEMA_PLACEMENT,
                    "{\"site_id\":%lld,\"name\":\"x\",\"sizes\":[\"300x250\"]}", (long long)s1);
    f->pl2 = create(st, AP_SCHEMA_PLACEMENT,
                    "{\"site_id\":%lld,\"name\":\"y\",\"sizes\":[\"300x250\"]}", (long long)s2);
    f->cpm = create(st, AP_SCHEMA_CAMPAIGN,
                    "{\"advertiser_id\":%lld,\"name\":\"cpm\",\"price_micros\":1234567}",
                    (long long)f->adv_utc);
    f->cpc = create(st, AP_SCHEMA_CAMPAIGN,
                    "{\"advertiser_id\":%lld,\"name\":\"cpc\",\"pricing_model\":\"cpc\","
                    "\"price_micros\":250000}",
                    (long long)f->adv_utc);
    f->cpa = create(st, AP_SCHEMA_CAMPAIGN,
                    "{\"advertiser_id\":%lld,\"name\":\"cpa\",\"pricing_model\":\"cpa\","
                    "\"price_micros\":3000000}",
                    (long long)f->adv_utc);
    f->budget = create(st, AP_SCHEMA_CAMPAIGN,
                       "{\"advertiser_id\":%lld,\"name\":\"budget\",\"price_micros\":2000,"
                       "\"budget_daily_micros\":10000,\"budget_lifetime_micros\":25000}",
                       (long long)f->adv_paris);
    ap_store_close(st);
}

static void fx_free(struct fx *f)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir.path);
    assert_int_equal(system(cmd), 0);
}

static struct ap_agg *agg_open(struct fx *f, ap_agg_feed_fn feed, void *ud)
{
    struct ap_agg_options o = {
        .db_path = f->dir.db, .log_dir = f->logdir, .feed = feed, .feed_ud = ud, .batch_max = 5000};
    int err = 0;
    char msg[256] = "";
    struct ap_agg *a = ap_agg_create(&o, &err, msg, sizeof(msg));
    if (!a)
        fprintf(stderr, "agg: %s (%s)\n", msg, ap_strerror(err));
    assert_non_null(a);
    return a;
}

static struct ap_event ev(int type, int64_t t_s, int64_t campaign, int64_t placement,
                          int64_t publisher, int64_t price, uint64_t id)
{
    struct ap_event e;
    memset(&e, 0, sizeof(e));
    e.version = AP_EVENT_VERSION;
    e.type = (uint8_t)type;
    e.count = 1;
    e.time_ns = t_s * NS;
    e.campaign_id = campaign;
    e.ad_id = campaign * 10;
    e.placement_id = placement;
    e.publisher_id = publisher;
    e.price_micros = price;
    e.country[0] = 'F';
    e.country[1] = 'R';
    e.device_type = 2;
    for (int i = 0; i < 8; i++)
        e.imp_id[8 + i] = (uint8_t)(id >> (56 - 8 * i));
    e.imp_id[0] = id ? 0xA5 : 0;
    return e;
}

struct totals {
    int64_t v[AP_STORE_RM_COUNT];
    int64_t by_campaign[64][AP_STORE_RM_COUNT];
    int rows;
};

static int add_row(void *ud, const struct ap_store_rollup_row *r)
{
    struct totals *t = ud;
    for (int i = 0; i < AP_STORE_RM_COUNT; i++)
        t->v[i] += r->vals[i];
    int64_t c = r->dims[AP_STORE_DIM_CAMPAIGN];
    if (c >= 0 && c < 64)
        for (int i = 0; i < AP_STORE_RM_COUNT; i++)
            t->by_campaign[c][i] += r->vals[i];
    t->rows++;
    return AP_OK;
}

/* Sums of the rollups over everything, by campaign (hourly or daily table). */
static void report(struct fx *f, bool daily, int test, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    struct ap_store_rollup *r = NULL;
    assert_int_equal(ap_store_rollup_open(f->dir.db, &r), AP_OK);
    struct ap_store_rollup_query q;
    memset(&q, 0, sizeof(q));
    q.from = 0;
    q.to = INT64_C(4000000000);
    q.daily = daily;
    q.groups = 1u << AP_STORE_DIM_CAMPAIGN;
    q.device = -1;
    q.test = test;
    assert_int_equal(ap_store_rollup_query(r, &q, add_row, t), AP_OK);
    ap_store_rollup_close(r);
}

/* ---- billing by pricing model, de-duplication, test traffic ----------------------------- */

static void test_pricing_dedup_and_test_traffic(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    struct ap_agg *a = agg_open(&f, NULL, NULL);
    struct ap_event e[32];
    int n = 0;
    /* CPM: 3 impressions at 1.234567 (token price), one repeated: 3 x 1234.567 = 3703 micros */
    for (int i = 0; i < 3; i++)
        e[n++] = ev(AP_EV_IMP, T0 + i, f.cpm, f.pl1, f.pub1, 1234567, 100 + (uint64_t)i);
    e[n++] = ev(AP_EV_IMP, T0 + 5, f.cpm, f.pl1, f.pub1, 1234567, 101);   /* duplicate */
    e[n++] = ev(AP_EV_VIEW, T0 + 5, f.cpm, f.pl1, f.pub1, 1234567, 101);  /* other type: counted */
    e[n++] = ev(AP_EV_CLICK, T0 + 6, f.cpm, f.pl1, f.pub1, 1234567, 101); /* CPM: click free */
    /* CPC: impressions free, 2 clicks at 0.25 (the campaign's price, not the token's eCPM) */
    e[n++] = ev(AP_EV_IMP, T0 + 7, f.cpc, f.pl2, f.pub2, 500, 200);
    e[n++] = ev(AP_EV_CLICK, T0 + 8, f.cpc, f.pl2, f.pub2, 500, 200);
    e[n++] = ev(AP_EV_CLICK, T0 + 9, f.cpc, f.pl2, f.pub2, 500, 201);
    e[n++] = ev(AP_EV_CLICK, T0 + 9, f.cpc, f.pl2, f.pub2, 500, 201); /* duplicate */
    /* CPA: one conversion at 3.0 with a value */
    e[n++] = ev(AP_EV_CONV, T0 + 10, f.cpa, f.pl1, f.pub1, 60, 300);
    e[n - 1].value_micros = 42000000;
    /* test traffic: counted apart, never billed */
    e[n++] = ev(AP_EV_IMP, T0 + 11, f.cpm, f.pl1, f.pub1, 1234567, 400);
    e[n - 1].flags = AP_EV_F_TEST;
    /* decisions have no impression id: never de-duplicated */
    e[n++] = ev(AP_EV_DECISION, T0 + 12, f.cpm, f.pl1, f.pub1, 1234567, 0);
    e[n++] = ev(AP_EV_DECISION, T0 + 12, f.cpm, f.pl1, f.pub1, 1234567, 0);
    /* a type this build does not know is skipped */
    e[n++] = ev(77, T0 + 12, f.cpm, f.pl1, f.pub1, 1234567, 999);
    assert_int_equal(ap_agg_apply(a, e, (size_t)n, 1000), AP_OK);

    struct totals t;
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_IMPRESSIONS], 3);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_VIEWABLE], 1);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_CLICKS], 1);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_DECISIONS], 2);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_SPEND], 3703);
    assert_int_equal(t.by_campaign[f.cpc][AP_STORE_RM_CLICKS], 2);
    assert_int_equal(t.by_campaign[f.cpc][AP_STORE_RM_SPEND], 500000);
    assert_int_equal(t.by_campaign[f.cpa][AP_STORE_RM_CONVERSIONS], 1);
    assert_int_equal(t.by_campaign[f.cpa][AP_STORE_RM_CONVERSION_VALUE], 42000000);
    assert_int_equal(t.by_campaign[f.cpa][AP_STORE_RM_SPEND], 3000000);
    /* publisher revenue: 70% of pub1's spend, 33.3333% of pub2's, carried */
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_REVENUE] +
                         t.by_campaign[f.cpa][AP_STORE_RM_REVENUE],
                     (INT64_C(3703) + 3000000) * 7 / 10);
    assert_int_equal(t.by_campaign[f.cpc][AP_STORE_RM_REVENUE], INT64_C(500000) * 333333 / 1000000);
    struct totals tt;
    report(&f, false, 1, &tt);
    assert_int_equal(tt.v[AP_STORE_RM_IMPRESSIONS], 1);
    assert_int_equal(tt.v[AP_STORE_RM_SPEND], 0);
    /* the daily table holds the same sums */
    struct totals td;
    report(&f, true, 2, &td);
    assert_int_equal(td.v[AP_STORE_RM_IMPRESSIONS], 5);
    assert_int_equal(td.v[AP_STORE_RM_SPEND], 3703 + 500000 + 3000000);

    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    assert_int_equal(s.duplicates, 2);
    assert_int_equal(s.events, (uint64_t)n - 3); /* 2 duplicates, 1 unknown type */
    assert_int_equal(s.checkpoint, 1000);
    /* the same impression again after a restart is still a duplicate */
    ap_agg_destroy(a);
    a = agg_open(&f, NULL, NULL);
    struct ap_event again = ev(AP_EV_IMP, T0 + 20, f.cpm, f.pl1, f.pub1, 1234567, 100);
    assert_int_equal(ap_agg_apply(a, &again, 1, 2000), AP_OK);
    ap_agg_stats(a, &s);
    assert_int_equal(s.duplicates, 3);
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_SPEND], 3703);
    /* the checkpoint never goes back */
    assert_int_equal(ap_agg_apply(a, &again, 1, 1500), AP_EINVAL);
    ap_agg_destroy(a);
    fx_free(&f);
}

/* ---- budgets in the advertiser's day -------------------------------------------------------- */

struct fed {
    struct ap_agg_spend last[16];
    int calls;
    int64_t as_of;
};

static void on_feed(void *ud, const struct ap_agg_spend *s, size_t n, int64_t as_of_ms)
{
    struct fed *f = ud;
    f->calls++;
    f->as_of = as_of_ms;
    for (size_t i = 0; i < n; i++)
        if (s[i].campaign_id > 0 && s[i].campaign_id < 16)
            f->last[s[i].campaign_id] = s[i];
}

static void test_budgets_local_day_and_feed(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    struct fed fd;
    memset(&fd, 0, sizeof(fd));
    struct ap_agg *a = agg_open(&f, on_feed, &fd);
    /* "budget" campaign: CPM 0.002 (2 micros an impression), daily 10000,
     * lifetime 25000, advertiser in Paris. 2024-06-30 23:00Z = 2024-07-01 01:00 Paris. */
    int64_t t_june30_late_utc = T0 - 3600; /* Paris: July 1st already */
    static struct ap_event e[20000];
    int n = 0;
    uint64_t id = 1000;
    for (int i = 0; i < 6000; i++) /* 6000 x 2 = 12000 wanted, 10000 billable on July 1st */
        e[n++] = ev(AP_EV_IMP, t_june30_late_utc + i % 600, f.budget, f.pl1, f.pub1, 2000, id++);
    assert_int_equal(ap_agg_apply(a, e, (size_t)n, 100), AP_OK);
    struct totals t;
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.budget][AP_STORE_RM_IMPRESSIONS], 6000);
    assert_int_equal(t.by_campaign[f.budget][AP_STORE_RM_SPEND], 10000);
    assert_int_equal(t.by_campaign[f.budget][AP_STORE_RM_UNBILLED], 2000);
    assert_true(fd.calls >= 1);
    int64_t july1 = T0 / 86400; /* Paris local day number of July 1st */
    assert_int_equal(fd.last[f.budget].local_day, july1);
    assert_int_equal(fd.last[f.budget].today_micros, 10000);
    assert_int_equal(fd.last[f.budget].lifetime_micros, 10000);
    /* 2024-07-01 21:59Z is still July 1st in Paris: nothing more */
    n = 0;
    e[n++] = ev(AP_EV_IMP, T0 + 22 * 3600 - 60, f.budget, f.pl1, f.pub1, 2000, id++);
    /* 22:00Z is July 2nd in Paris: a new day, up to the lifetime budget (25000) */
    for (int i = 0; i < 9000; i++)
        e[n++] = ev(AP_EV_IMP, T0 + 22 * 3600 + i / 10, f.budget, f.pl1, f.pub1, 2000, id++);
    assert_int_equal(ap_agg_apply(a, e, (size_t)n, 200), AP_OK);
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.budget][AP_STORE_RM_SPEND], 20000); /* daily cap again */
    assert_int_equal(fd.last[f.budget].local_day, july1 + 1);
    assert_int_equal(fd.last[f.budget].today_micros, 10000);
    assert_int_equal(fd.last[f.budget].lifetime_micros, 20000);
    /* July 3rd: the lifetime budget leaves 5000 */
    n = 0;
    for (int i = 0; i < 5000; i++)
        e[n++] = ev(AP_EV_IMP, T0 + 2 * 86400 + i, f.budget, f.pl1, f.pub1, 2000, id++);
    assert_int_equal(ap_agg_apply(a, e, (size_t)n, 300), AP_OK);
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.budget][AP_STORE_RM_SPEND], 25000);
    assert_int_equal(fd.last[f.budget].lifetime_micros, 25000);
    /* the accounts survive a restart: still nothing billable */
    ap_agg_destroy(a);
    memset(&fd, 0, sizeof(fd));
    a = agg_open(&f, on_feed, &fd);
    assert_int_equal(ap_agg_apply(a, e, 1, 400), AP_OK); /* a duplicate id anyway */
    e[0] = ev(AP_EV_IMP, T0 + 3 * 86400, f.budget, f.pl1, f.pub1, 2000, id++);
    assert_int_equal(ap_agg_apply(a, e, 1, 500), AP_OK);
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.budget][AP_STORE_RM_SPEND], 25000);
    assert_int_equal(fd.last[f.budget].lifetime_micros, 25000); /* every account fed first */
    ap_agg_destroy(a);
    fx_free(&f);
}

/* ---- seen-set pruning -------------------------------------------------------------------- */

static void test_seen_set_pruned_after_ttl(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    struct ap_agg *a = agg_open(&f, NULL, NULL);
    struct ap_event e = ev(AP_EV_VIEW, T0, f.cpm, f.pl1, f.pub1, 1, 77);
    assert_int_equal(ap_agg_apply(a, &e, 1, 10), AP_OK);
    e.time_ns = (T0 + AP_AGG_SEEN_TTL - 100) * NS; /* within the TTL: a duplicate */
    assert_int_equal(ap_agg_apply(a, &e, 1, 20), AP_OK);
    struct ap_event later = ev(AP_EV_VIEW, T0 + AP_AGG_SEEN_TTL + 60, f.cpm, f.pl1, f.pub1, 1, 78);
    assert_int_equal(ap_agg_apply(a, &later, 1, 30), AP_OK); /* prunes id 77 */
    e.time_ns = (T0 + AP_AGG_SEEN_TTL + 70) * NS;
    assert_int_equal(ap_agg_apply(a, &e, 1, 40), AP_OK); /* forgotten: counted again */
    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    assert_int_equal(s.duplicates, 1);
    assert_int_equal(s.events, 3);
    ap_agg_destroy(a);
    fx_free(&f);
}

/* ---- the real log: restart without loss or double counting ---------------------------------- */

static void write_log(const char *dir, const struct ap_event *evs, size_t n)
{
    struct ap_evlog_options o = {
        .dir = dir, .rings = 1, .ring_records = 4096, .segment_bytes = 1u << 20};
    int err = 0;
    char msg[256];
    struct ap_evlog *log = ap_evlog_open(&o, &err, msg, sizeof(msg));
    if (!log)
        fprintf(stderr, "evlog: %s\n", msg);
    assert_non_null(log);
    struct ap_evlog_ring *r = ap_evlog_ring(log, 0);
    for (size_t i = 0; i < n;) {
        int64_t seq = ap_evlog_append(r, &evs[i]);
        if (seq == AP_EAGAIN) {
            usleep(200);
            continue;
        }
        assert_true(seq > 0);
        i++;
    }
    ap_evlog_close(log);
}

static void test_log_restart_no_double_count(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    enum { N = 30000 };
    struct ap_event *e = calloc(N, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < N; i++)
        e[i] = ev(AP_EV_IMP, T0 + i / 10, f.cpm, f.pl1, f.pub1, 1234567 + i % 7, (uint64_t)i + 1);
    int64_t price_sum = 0;
    for (int i = 0; i < N; i++)
        price_sum += 1234567 + i % 7;
    /* the first half in the log (segments of 1 MiB: several), aggregated */
    write_log(f.logdir, e, N / 2);
    struct ap_agg *a = agg_open(&f, NULL, NULL);
    uint64_t folded = 0;
    assert_int_equal(ap_agg_run_once(a, &folded), AP_OK);
    assert_int_equal(folded, N / 2);
    assert_int_equal(ap_agg_run_once(a, &folded), AP_OK);
    assert_int_equal(folded, 0);
    ap_agg_destroy(a);
    /* the second half appended after a restart of the log; a new aggregator resumes */
    write_log(f.logdir, e + N / 2, N - N / 2);
    a = agg_open(&f, NULL, NULL);
    assert_int_equal(ap_agg_run_once(a, &folded), AP_OK);
    assert_int_equal(folded, N - N / 2);
    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    assert_int_equal(s.events, N);
    assert_int_equal(s.duplicates, 0);
    assert_int_equal(s.checkpoint, (uint64_t)N * AP_EVLOG_FRAME_BYTES);
    assert_int_equal(s.lag_bytes, 0);
    ap_agg_destroy(a);
    /* a crash after reading but before committing: modelled by rewinding the checkpoint to
     * an older one while the rollups hold everything would double count, so instead check
     * that re-running from scratch state is refused by the seen-set: replaying the whole log
     * into a fresh aggregator over the same store counts nothing twice */
    struct ap_store_rollup *r = NULL;
    assert_int_equal(ap_store_rollup_open(f.dir.db, &r), AP_OK);
    struct ap_store_agg_state st;
    assert_int_equal(ap_store_agg_state_get(r, &st), AP_OK);
    st.log_offset = 0; /* as if the offset had not been committed */
    assert_int_equal(ap_store_rollup_begin(r), AP_OK);
    assert_int_equal(ap_store_agg_state_put(r, &st), AP_OK);
    assert_int_equal(ap_store_rollup_commit(r), AP_OK);
    ap_store_rollup_close(r);
    a = agg_open(&f, NULL, NULL);
    assert_int_equal(ap_agg_run_once(a, &folded), AP_OK);
    assert_int_equal(folded, N);
    ap_agg_stats(a, &s);
    assert_int_equal(s.duplicates, N);
    ap_agg_destroy(a);
    struct totals t;
    report(&f, false, 0, &t);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_IMPRESSIONS], N);
    assert_int_equal(t.by_campaign[f.cpm][AP_STORE_RM_SPEND], price_sum / 1000);
    free(e);
    fx_free(&f);
}

/* ---- kill -9 in the middle of aggregating --------------------------------------------------- */

static void test_kill9_mid_batch_counts_once(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    enum { N = 200000 };
    struct ap_event *e = calloc(N, sizeof(*e));
    assert_non_null(e);
    int64_t decisions = 0, imps = 0, milli = 0;
    for (int i = 0; i < N; i++) {
        /* decisions carry no id: a batch folded twice would count them twice */
        bool dec = i % 3 == 0;
        e[i] = ev(dec ? AP_EV_DECISION : AP_EV_IMP, T0 + i / 20, f.cpm, f.pl1, f.pub1,
                  1234567 + i % 11, dec ? 0 : (uint64_t)i + 1);
        decisions += dec;
        imps += !dec;
        milli += dec ? 0 : 1234567 + i % 11;
    }
    write_log(f.logdir, e, N);
    free(e);
    /* a child aggregates and is killed at a different point each round */
    int mid = 0;
    for (int round = 0; round < 4; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct ap_agg_options o = {.db_path = f.dir.db, .log_dir = f.logdir, .batch_max = 2000};
            int err = 0;
            struct ap_agg *a = ap_agg_create(&o, &err, NULL, 0);
            if (!a)
                _exit(3);
            uint64_t n = 0;
            ap_agg_run_once(a, &n);
            _exit(0);
        }
        usleep((useconds_t)(150000 + round * 100000));
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        struct ap_store_rollup *r = NULL;
        struct ap_store_agg_state as;
        assert_int_equal(ap_store_rollup_open(f.dir.db, &r), AP_OK);
        assert_int_equal(ap_store_agg_state_get(r, &as), AP_OK);
        ap_store_rollup_close(r);
        mid += as.log_offset > 0 && as.log_offset < (uint64_t)N * AP_EVLOG_FRAME_BYTES;
    }
    assert_true(mid > 0); /* at least one kill landed while aggregating */
    struct ap_agg *a = agg_open(&f, NULL, NULL);
    uint64_t folded = 0;
    assert_int_equal(ap_agg_run_once(a, &folded), AP_OK);
    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    assert_int_equal(s.events, N);
    assert_int_equal(s.duplicates, 0); /* no batch was half-committed */
    ap_agg_destroy(a);
    struct totals t;
    report(&f, false, 0, &t);
    assert_int_equal(t.v[AP_STORE_RM_DECISIONS], decisions);
    assert_int_equal(t.v[AP_STORE_RM_IMPRESSIONS], imps);
    assert_int_equal(t.v[AP_STORE_RM_SPEND], milli / 1000);
    report(&f, true, 0, &t);
    assert_int_equal(t.v[AP_STORE_RM_DECISIONS], decisions);
    assert_int_equal(t.v[AP_STORE_RM_SPEND], milli / 1000);
    fx_free(&f);
}

/* ---- the aggregator thread against a live log ----------------------------------------------- */

static void test_thread_live_log(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    struct ap_evlog_options o = {.dir = f.logdir, .rings = 1};
    int err = 0;
    char msg[256];
    struct ap_evlog *log = ap_evlog_open(&o, &err, msg, sizeof(msg));
    assert_non_null(log);
    struct fed fd;
    memset(&fd, 0, sizeof(fd));
    struct ap_agg_options ao = {.db_path = f.dir.db,
                                .log_dir = f.logdir,
                                .log = log,
                                .feed = on_feed,
                                .feed_ud = &fd,
                                .interval_ms = 20};
    struct ap_agg *a = ap_agg_create(&ao, &err, msg, sizeof(msg));
    assert_non_null(a);
    assert_int_equal(ap_agg_start(a), AP_OK);
    struct ap_evlog_ring *ring = ap_evlog_ring(log, 0);
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < 2000; i++) {
        struct ap_event e = ev(AP_EV_IMP, now, f.cpm, f.pl1, f.pub1, 1000000, (uint64_t)i + 1);
        while (ap_evlog_append(ring, &e) == AP_EAGAIN)
            usleep(100);
    }
    /* soon (well under a second on an idle machine), everything is counted and fed */
    struct ap_agg_stats s;
    for (int k = 0; k < 1000; k++) {
        ap_agg_stats(a, &s);
        if (s.events == 2000 && fd.last[f.cpm].lifetime_micros == 2000000)
            break;
        usleep(10000);
    }
    assert_int_equal(s.events, 2000);
    assert_int_equal(s.lag_records, 0);
    /* the lag is measured (bench/reports.sh holds the 1 s aim; a shared CI box may be slow) */
    assert_true(ap_agg_lag_p99_ms(a) > 0 && ap_agg_lag_p99_ms(a) <= 10000);
    char m[8192];
    size_t ml = ap_agg_metrics(a, m, sizeof(m));
    assert_true(ml > 0 && strstr(m, "ap_agg_events_total 2000"));
    ap_agg_stop(a);
    ap_agg_destroy(a);
    ap_evlog_close(log);
    assert_int_equal(fd.last[f.cpm].lifetime_micros, 2000000);
    fx_free(&f);
}

/* ---- the spend feed in delivery control ----------------------------------------------------- */

static void test_delivery_uses_billed_spend(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 5);
    struct ap_serve_delivery_options dopt = {1024, NULL};
    int err;
    struct ap_serve_delivery *d = ap_serve_delivery_create(&dopt, &err);
    assert_non_null(d);
    int64_t now = (int64_t)time(NULL);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    /* CPM 1.0: 1000 micros an impression; 10,000 a day buys 10 */
    t_campaign(&r, 10, 1, "\"budget_daily_micros\":10000");
    t_ad(&r, 100, 10, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, d, now);
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, now);
    int served = 0;
    for (int i = 0; i < 20; i++)
        served += t_decide1(s, d, &rng, &ctx, &arena) == 100;
    assert_int_equal(served, 10); /* not fed: served counters */
    /* later, the aggregator has billed only 2000 of them (the others were never rendered) and
     * has read the log up to now: those serves are past the in-flight window: 8 more */
    usleep(3100 * 1000);
    now = (int64_t)time(NULL);
    ctx.now = now;
    int64_t day = now / 86400;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct ap_serve_spend sp = {10, (int32_t)day, 2000, 2000};
    ap_serve_delivery_set_spend(d, &sp, 1, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    served = 0;
    for (int i = 0; i < 20; i++)
        served += t_decide1(s, d, &rng, &ctx, &arena) == 100;
    assert_int_equal(served, 8);
    struct ap_serve_campaign_counters c;
    assert_int_equal(ap_serve_delivery_counters(d, s, 10, now, &c), AP_OK);
    assert_int_equal(c.spent_today_micros, 10000); /* 2000 billed + 8000 in flight */
    /* billed on another day does not count today (the in-flight part does) */
    struct ap_serve_spend y = {10, (int32_t)day - 1, 10000, 10000};
    ap_serve_delivery_set_spend(d, &y, 1, 0);
    assert_int_equal(ap_serve_delivery_counters(d, s, 10, now, &c), AP_OK);
    assert_int_equal(c.spent_today_micros, 8000);
    assert_int_equal(c.spent_lifetime_micros, 18000);
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

/* ---- exactness: 1,000,000 events --------------------------------------------------------- */

struct rec {
    uint64_t hi, lo;
    int64_t campaign, price, t;
    uint8_t type, test;
};

static int cmp_rec(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

static void test_exactness_million(void **state)
{
    (void)state;
    struct fx f;
    fx_make(&f);
    enum { NCAMP = 40 };
    int64_t camp[NCAMP];
    struct ap_store *st = open_store(f.dir.db);
    for (int i = 0; i < NCAMP; i++)
        camp[i] = create(st, AP_SCHEMA_CAMPAIGN,
                         "{\"advertiser_id\":%lld,\"name\":\"c%d\",\"price_micros\":%d}",
                         (long long)f.adv_utc, i, 1000 + i * 7919);
    ap_store_close(st);
    const char *quick = getenv("AP_TEST_QUICK");
    const size_t N = quick && *quick == '1' ? 100000 : 1000000;
    struct ap_event *e = calloc(N, sizeof(*e));
    assert_non_null(e);
    uint64_t x = 88172645463325252ull;
    uint64_t next_id = 1;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int c = (int)(x % NCAMP);
        int64_t cid = camp[c];
        bool pub2 = c % 2;
        int type = x % 10 < 7   ? AP_EV_IMP
                   : x % 10 < 8 ? AP_EV_VIEW
                   : x % 10 < 9 ? AP_EV_CLICK
                                : AP_EV_DECISION;
        uint64_t id = next_id++;
        if (i > 10 && (x >> 20) % 50 == 0) { /* a beacon fired twice: an earlier event again */
            e[i] = e[i - 1 - (x >> 40) % 10];
            continue;
        }
        /* awkward CPM prices that vary per decision: 1.234567 ... with odd micros */
        int64_t price = 1234567 + (int64_t)((x >> 8) % 1000003);
        e[i] = ev(type, T0 + (int64_t)(i * 3 * 86400 / N), cid, pub2 ? f.pl2 : f.pl1,
                  pub2 ? f.pub2 : f.pub1, price, type == AP_EV_DECISION ? 0 : id);
        if ((x >> 30) % 100 == 0)
            e[i].flags = AP_EV_F_TEST;
    }
    write_log(f.logdir, e, N);
    free(e);

    /* independently: read the raw log back, de-duplicate by (id, type), sum */
    struct rec *recs = calloc(N, sizeof(*recs));
    assert_non_null(recs);
    int err = 0;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(f.logdir, 0, &err);
    assert_non_null(rd);
    size_t n = 0;
    uint64_t next;
    struct ap_event one;
    int64_t decisions = 0;
    while (ap_evlog_reader_next(rd, UINT64_MAX, &one, &next) == 1) {
        if (one.type == AP_EV_DECISION) {
            decisions++;
            continue;
        }
        struct rec *p = &recs[n++];
        for (int k = 0; k < 8; k++) {
            p->hi = p->hi << 8 | one.imp_id[k];
            p->lo = p->lo << 8 | one.imp_id[8 + k];
        }
        p->campaign = one.campaign_id;
        p->price = one.price_micros;
        p->t = one.time_ns;
        p->type = one.type;
        p->test = (one.flags & AP_EV_F_TEST) != 0;
    }
    ap_evlog_reader_close(rd);
    qsort(recs, n, sizeof(*recs), cmp_rec);
    int64_t want_imps[NCAMP] = {0}, want_milli[NCAMP] = {0}, want_clicks = 0, want_views = 0;
    int64_t want_test = 0, dups = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && recs[i].hi == recs[i - 1].hi && recs[i].lo == recs[i - 1].lo &&
            recs[i].type == recs[i - 1].type) {
            dups++;
            continue;
        }
        int c = 0;
        while (c < NCAMP && camp[c] != recs[i].campaign)
            c++;
        assert_true(c < NCAMP);
        if (recs[i].test) {
            want_test++;
            continue;
        }
        if (recs[i].type == AP_EV_IMP) {
            want_imps[c]++;
            want_milli[c] += recs[i].price;
        } else if (recs[i].type == AP_EV_CLICK) {
            want_clicks++;
        } else if (recs[i].type == AP_EV_VIEW) {
            want_views++;
        }
    }
    free(recs);

    /* the aggregator over the whole log */
    struct ap_agg *a = agg_open(&f, NULL, NULL);
    uint64_t folded = 0;
    assert_int_equal(ap_agg_run_once(a, &folded), AP_OK);
    assert_int_equal(folded, N);
    struct ap_agg_stats s;
    ap_agg_stats(a, &s);
    assert_int_equal(s.duplicates, (uint64_t)dups);
    ap_agg_destroy(a);

    struct totals t, td;
    report(&f, false, 0, &t);
    report(&f, true, 0, &td);
    int64_t spend = 0, rev_want = 0, pub_spend[2] = {0, 0};
    for (int c = 0; c < NCAMP; c++) {
        assert_int_equal(t.by_campaign[camp[c]][AP_STORE_RM_IMPRESSIONS], want_imps[c]);
        assert_int_equal(t.by_campaign[camp[c]][AP_STORE_RM_SPEND], want_milli[c] / 1000);
        assert_int_equal(td.by_campaign[camp[c]][AP_STORE_RM_SPEND], want_milli[c] / 1000);
        spend += want_milli[c] / 1000;
        pub_spend[c % 2] += want_milli[c] / 1000;
    }
    rev_want = pub_spend[0] * 700000 / 1000000 + pub_spend[1] * 333333 / 1000000;
    assert_int_equal(t.v[AP_STORE_RM_SPEND], spend);
    assert_int_equal(td.v[AP_STORE_RM_SPEND], spend);
    assert_int_equal(t.v[AP_STORE_RM_REVENUE], rev_want);
    assert_int_equal(t.v[AP_STORE_RM_CLICKS], want_clicks);
    assert_int_equal(t.v[AP_STORE_RM_VIEWABLE], want_views);
    struct totals tt;
    report(&f, false, 1, &tt);
    assert_int_equal(tt.v[AP_STORE_RM_IMPRESSIONS] + tt.v[AP_STORE_RM_CLICKS] +
                         tt.v[AP_STORE_RM_VIEWABLE],
                     want_test);
    assert_int_equal(tt.v[AP_STORE_RM_SPEND], 0);
    struct totals all;
    report(&f, true, 2, &all);
    assert_int_equal(all.v[AP_STORE_RM_DECISIONS], decisions);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pricing_dedup_and_test_traffic),
        cmocka_unit_test(test_budgets_local_day_and_feed),
        cmocka_unit_test(test_seen_set_pruned_after_ttl),
        cmocka_unit_test(test_log_restart_no_double_count),
        cmocka_unit_test(test_kill9_mid_batch_counts_once),
        cmocka_unit_test(test_thread_live_log),
        cmocka_unit_test(test_delivery_uses_billed_spend),
        cmocka_unit_test(test_exactness_million),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
