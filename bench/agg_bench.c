/*
 * bench/agg_bench.c: the aggregator and the rollups, linked exactly like the daemon (see
 * bench/reports.sh, which builds and runs it).
 *
 *   agg_bench lag DIR RATE SECONDS
 *       A store with 1,000 campaigns on 20 placements, a real event log (group commit) and the
 *       aggregator thread reading it live; one producer appends impressions (unique ids,
 *       accepted "now") at RATE events/s for SECONDS. Prints the accept -> rollup commit lag
 *       (p50/p99 as histogram bucket bounds), the events counted and the commit times.
 *   agg_bench populate DIR CAMPAIGNS DAYS
 *       A store with CAMPAIGNS campaigns whose rollups hold DAYS days (ending yesterday, UTC)
 *       of hourly rows: every campaign in every hour on 2 countries, built through the
 *       aggregator (ap_agg_apply). Prints "FROM TO" (the dates covered).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "events/ap_agg.h"
#include "events/ap_evlog.h"
#include "store/ap_store.h"

static int64_t create(struct ap_store *st, enum ap_schema_res res, const char *text)
{
    json_error_t je;
    json_t *in = json_loads(text, 0, &je), *out = NULL;
    struct ap_schema_errors e;
    ap_schema_errors_init(&e);
    if (!in || ap_store_create(st, res, in, NULL, &out, &e) != AP_OK) {
        fprintf(stderr, "create failed: %s\n", text);
        exit(1);
    }
    int64_t id = json_integer_value(json_object_get(out, "id"));
    json_decref(in);
    json_decref(out);
    return id;
}

struct world {
    int64_t camp[100000];
    int ncamp;
    int64_t pl[20], pub[2];
};

static void make_world(const char *db, int ncamp, struct world *w)
{
    struct ap_store *st = NULL;
    if (ap_store_open(db, NULL, &st) != AP_OK) {
        fprintf(stderr, "cannot open %s\n", db);
        exit(1);
    }
    char buf[512];
    int64_t adv = create(st, AP_SCHEMA_ADVERTISER,
                         "{\"name\":\"bench\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    for (int p = 0; p < 2; p++) {
        snprintf(buf, sizeof(buf),
                 "{\"name\":\"pub%d\",\"currency\":\"USD\",\"revenue_share_ppm\":700000}", p);
        w->pub[p] = create(st, AP_SCHEMA_PUBLISHER, buf);
        snprintf(buf, sizeof(buf), "{\"publisher_id\":%lld,\"name\":\"s\",\"domain\":\"s%d.ex\"}",
                 (long long)w->pub[p], p);
        int64_t site = create(st, AP_SCHEMA_SITE, buf);
        for (int i = 0; i < 10; i++) {
            snprintf(buf, sizeof(buf),
                     "{\"site_id\":%lld,\"name\":\"p%d\",\"sizes\":[\"300x250\"]}", (long long)site,
                     i);
            w->pl[p * 10 + i] = create(st, AP_SCHEMA_PLACEMENT, buf);
        }
    }
    for (int i = 0; i < ncamp; i++) {
        snprintf(buf, sizeof(buf),
                 "{\"advertiser_id\":%lld,\"name\":\"c%d\",\"price_micros\":%d,"
                 "\"budget_daily_micros\":1000000000000}",
                 (long long)adv, i, 1000000 + i * 7);
        w->camp[i] = create(st, AP_SCHEMA_CAMPAIGN, buf);
    }
    w->ncamp = ncamp;
    ap_store_close(st);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fill(struct ap_event *e, const struct world *w, uint64_t id, int64_t t_ns)
{
    static const char *const cc[] = {"US", "FR", "DE", "GB", "ES"};
    uint64_t x = rnd();
    int c = (int)(x % (uint64_t)w->ncamp);
    memset(e, 0, sizeof(*e));
    e->version = AP_EVENT_VERSION;
    e->type = AP_EV_IMP;
    e->count = 1;
    e->device_type = (uint8_t)(1 + (x >> 20) % 3);
    memcpy(e->country, cc[(x >> 24) % 5], 2);
    e->time_ns = t_ns;
    e->campaign_id = w->camp[c];
    e->ad_id = w->camp[c];
    e->placement_id = w->pl[c % 20];
    e->publisher_id = w->pub[(c % 20) / 10];
    e->price_micros = 1000000 + c * 7;
    for (int i = 0; i < 8; i++)
        e->imp_id[8 + i] = (uint8_t)(id >> (56 - 8 * i));
    e->imp_id[0] = 0x5A;
}

static int lag(const char *dir, double rate, double seconds)
{
    char db[4096], evdir[4096];
    snprintf(db, sizeof(db), "%s/adplatform.db", dir);
    snprintf(evdir, sizeof(evdir), "%s/events", dir);
    mkdir(dir, 0755);
    static struct world w;
    make_world(db, 1000, &w);
    int err = 0;
    char msg[256] = "";
    struct ap_evlog_options lo = {.dir = evdir, .rings = 1};
    struct ap_evlog *log = ap_evlog_open(&lo, &err, msg, sizeof(msg));
    if (!log) {
        fprintf(stderr, "evlog: %s\n", msg);
        return 1;
    }
    struct ap_agg_options ao = {.db_path = db, .log_dir = evdir, .log = log};
    struct ap_agg *a = ap_agg_create(&ao, &err, msg, sizeof(msg));
    if (!a || ap_agg_start(a) != AP_OK) {
        fprintf(stderr, "agg: %s\n", msg);
        return 1;
    }
    struct ap_evlog_ring *ring = ap_evlog_ring(log, 0);
    double t0 = mono();
    uint64_t sent = 0, full = 0, max_lag_records = 0;
    while (mono() - t0 < seconds) {
        uint64_t due = (uint64_t)((mono() - t0) * rate);
        while (sent < due) {
            struct ap_event e;
            fill(&e, &w, sent + 1, now_ns());
            if (ap_evlog_append(ring, &e) < 0) {
                full++;
                break;
            }
            sent++;
        }
        struct ap_agg_stats s;
        ap_agg_stats(a, &s);
        if (s.lag_records > max_lag_records)
            max_lag_records = s.lag_records;
        usleep(1000);
    }
    double produce_s = mono() - t0;
    /* drain */
    struct ap_agg_stats s;
    for (int i = 0; i < 3000; i++) {
        ap_agg_stats(a, &s);
        if (s.events >= sent)
            break;
        usleep(10000);
    }
    double drain_s = mono() - t0 - produce_s;
    ap_agg_stats(a, &s);
    static const int bounds[] = {1,   2,    5,    10,   20,    50,    100,  200,
                                 500, 1000, 2000, 5000, 10000, 30000, 60000};
    uint64_t total = 0, cum = 0;
    for (int i = 0; i < AP_AGG_LAG_BUCKETS; i++)
        total += s.lag_hist[i];
    int p50 = -1, p99 = -1, pmax = 0;
    for (int i = 0; i < AP_AGG_LAG_BUCKETS; i++) {
        cum += s.lag_hist[i];
        int b = i < AP_AGG_LAG_BUCKETS - 1 ? bounds[i] : 999999;
        if (p50 < 0 && cum * 2 >= total)
            p50 = b;
        if (p99 < 0 && cum * 100 >= total * 99)
            p99 = b;
        if (s.lag_hist[i])
            pmax = b;
    }
    printf("aggregator lag at %.0f events/s for %.0f s: sent %llu (%.0f/s, %llu ring-full), "
           "counted %llu, batches %llu, failures %llu\n",
           rate, seconds, (unsigned long long)sent, (double)sent / produce_s,
           (unsigned long long)full, (unsigned long long)s.events, (unsigned long long)s.batches,
           (unsigned long long)s.failures);
    printf("  accept->commit lag: p50 <= %d ms, p99 <= %d ms, max <= %d ms; longest commit "
           "%.1f ms; most records waiting %llu; drained %.2f s after the load\n",
           p50, p99, pmax, (double)s.commit_us_max / 1000.0, (unsigned long long)max_lag_records,
           drain_s);
    ap_agg_stop(a);
    ap_agg_destroy(a);
    ap_evlog_close(log);
    return s.events == sent ? 0 : 1;
}

static int populate(const char *dir, int ncamp, int days)
{
    char db[4096], evdir[4096];
    snprintf(db, sizeof(db), "%s/adplatform.db", dir);
    snprintf(evdir, sizeof(evdir), "%s/events", dir);
    mkdir(dir, 0755);
    static struct world w;
    make_world(db, ncamp, &w);
    int err = 0;
    char msg[256] = "";
    struct ap_agg_options ao = {.db_path = db, .log_dir = evdir, .batch_max = 50000};
    struct ap_agg *a = ap_agg_create(&ao, &err, msg, sizeof(msg));
    if (!a) {
        fprintf(stderr, "agg: %s\n", msg);
        return 1;
    }
    int64_t today = (int64_t)time(NULL) / 86400;
    int64_t first = today - days;
    size_t cap = 50000, n = 0;
    struct ap_event *evs = calloc(cap, sizeof(*evs));
    double t0 = mono();
    uint64_t total = 0;
    for (int64_t h = first * 24; h < today * 24; h++) {
        for (int c = 0; c < ncamp; c++) {
            for (int k = 0; k < 2; k++) {
                struct ap_event *e = &evs[n++];
                fill(e, &w, 0, h * 3600 * INT64_C(1000000000) + (int64_t)(c % 3600) * 1000000000);
                memset(e->imp_id, 0, sizeof(e->imp_id)); /* no id: no seen-set entry */
                e->campaign_id = w.camp[c];
                e->ad_id = w.camp[c];
                e->placement_id = w.pl[c % 20];
                e->publisher_id = w.pub[(c % 20) / 10];
                memcpy(e->country, k ? "FR" : "US", 2);
                e->count = 1 + (uint32_t)(rnd() % 50);
                if (n == cap) {
                    if (ap_agg_apply(a, evs, n, 0) != AP_OK)
                        return 1;
                    total += n;
                    n = 0;
                }
            }
        }
    }
    if (n && ap_agg_apply(a, evs, n, 0) != AP_OK)
        return 1;
    total += n;
    ap_agg_destroy(a);
    free(evs);
    char from[16], to[16];
    time_t tf = (time_t)(first * 86400), tt = (time_t)((today - 1) * 86400);
    struct tm tm;
    gmtime_r(&tf, &tm);
    strftime(from, sizeof(from), "%Y-%m-%d", &tm);
    gmtime_r(&tt, &tm);
    strftime(to, sizeof(to), "%Y-%m-%d", &tm);
    fprintf(stderr,
            "populated %d campaigns x %d days x 24 h x 2 countries: %llu records in "
            "%.1f s\n",
            ncamp, days, (unsigned long long)total, mono() - t0);
    printf("%s %s\n", from, to);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "lag"))
        return lag(argv[2], strtod(argv[3], NULL), strtod(argv[4], NULL));
    if (argc == 5 && !strcmp(argv[1], "populate")) {
        long c = strtol(argv[3], NULL, 10), d = strtol(argv[4], NULL, 10);
        if (c < 1 || c > 100000 || d < 1 || d > 366) {
            fprintf(stderr, "populate: 1..100000 campaigns, 1..366 days\n");
            return 2;
        }
        return populate(argv[2], (int)c, (int)d);
    }
    fprintf(stderr, "usage: agg_bench lag DIR RATE SECONDS | populate DIR CAMPAIGNS DAYS\n");
    return 2;
}
