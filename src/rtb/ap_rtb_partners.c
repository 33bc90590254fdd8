/*
 * ap_rtb_partners: the demand partner table (ap_rtb_internal.h). A loader thread polls the
 * store version (AP_RTB_PARTNERS_POLL_MS) and, when it changed, reads the active demand
 * partners into a new immutable table, published with a generation counter. Workers compare
 * the generation with the one they hold (one relaxed load per auction) and, when it moved,
 * take a reference to the new table under `mu` (held for a pointer exchange only, never across
 * SQLite) and drop theirs; the last reference frees a table.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_thread.h"
#include "../net/ap_http_client.h"
#include "../store/ap_store.h"
#include "../store/ap_store_rates.h"
#include "ap_rtb_internal.h"

static struct {
    pthread_mutex_t mu;
    struct ap_rtb_partners *cur; /* guarded by mu */
    _Atomic uint64_t gen;
    _Atomic bool stop;
    bool running;
    pthread_t th;
    struct ap_store *store;
    char db_path[4096];
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct ap_rtb_partners EMPTY = {.refs = 1 << 30};

#define SLOTS 256 /* per-worker caches, by worker id (only that worker touches its slot) */
static struct slot {
    struct ap_rtb_partners *tab;
    uint64_t gen;
} __attribute__((aligned(64))) S[SLOTS];

static void unref(struct ap_rtb_partners *t)
{
    if (t && t != &EMPTY && atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

void ap__rtb_partners_publish(struct ap_rtb_partners *t)
{
    pthread_mutex_lock(&P.mu);
    struct ap_rtb_partners *old = P.cur;
    P.cur = t;
    atomic_fetch_add(&P.gen, 1);
    pthread_mutex_unlock(&P.mu);
    unref(old);
}

const struct ap_rtb_partners *ap__rtb_partners_get(int worker)
{
    struct slot *sl = &S[(unsigned)worker % SLOTS];
    uint64_t g = atomic_load_explicit(&P.gen, memory_order_acquire);
    if (!sl->tab || g != sl->gen) {
        pthread_mutex_lock(&P.mu);
        struct ap_rtb_partners *t = P.cur ? P.cur : &EMPTY;
        if (t != &EMPTY)
            atomic_fetch_add(&t->refs, 1);
        sl->gen = atomic_load(&P.gen);
        pthread_mutex_unlock(&P.mu);
        unref(sl->tab);
        sl->tab = t;
    }
    return sl->tab;
}

const struct ap_rtb_partner *ap__rtb_partner_find(const struct ap_rtb_partners *t,
                                                  struct ap_span code)
{
    for (uint32_t i = 0; t && i < t->n; i++)
        if (ap_span_eq_cstr(code, t->p[i].code))
            return &t->p[i];
    return NULL;
}

static double num(const json_t *v, double def)
{
    return json_is_number(v) ? json_number_value(v) : def;
}

/* The currency rates follow the store too (a PUT bumps the store version). */
static void load_rates(void)
{
    json_t *rates = NULL;
    int rc = ap_store_rates_get(P.db_path, &rates);
    if (rc == AP_OK)
        rc = ap__rtb_rates_replace(rates);
    if (rc)
        ap_log_error("rtb: loading currency rates failed: %s", ap_strerror(rc));
    json_decref(rates);
}

static int load(struct ap_store *st, struct ap_rtb_partners **out)
{
    load_rates();
    int64_t v = 0;
    int rc = ap_store_version(st, &v);
    if (rc)
        return rc;
    struct ap_store_filter f = {"status", "active"};
    struct ap_store_list_query q = {&f, 1, NULL, AP_STORE_LIST_MAX};
    json_t *page = NULL;
    struct ap_schema_errors errs;
    ap_schema_errors_init(&errs);
    rc = ap_store_list(st, AP_SCHEMA_DEMAND_PARTNER, &q, NULL, &page, &errs);
    if (rc)
        return rc;
    json_t *data = json_object_get(page, "data");
    size_t n = json_array_size(data);
    if (n > AP_RTB_MAX_PARTNERS) {
        ap_log_warn("rtb: %zu active demand partners, calling the first %d", n,
                    AP_RTB_MAX_PARTNERS);
        n = AP_RTB_MAX_PARTNERS;
    }
    struct ap_rtb_partners *t = calloc(1, sizeof(*t) + n * sizeof(t->p[0]));
    if (!t) {
        json_decref(page);
        return AP_ENOMEM;
    }
    atomic_init(&t->refs, 1);
    t->version = v;
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(data, i);
        struct ap_rtb_partner *p = &t->p[t->n];
        const char *code = json_string_value(json_object_get(row, "bidder_code"));
        const char *url = json_string_value(json_object_get(row, "endpoint"));
        if (!code || !url || strlen(code) >= sizeof(p->code) || strlen(url) >= sizeof(p->url))
            continue;
        p->id = (int64_t)num(json_object_get(row, "id"), 0);
        /* ap_http_client targets are small ints: ids fold into 1..AP_HC_MAX_TARGETS-1 */
        p->target = (int)(p->id > 0 ? (p->id - 1) % (AP_HC_MAX_TARGETS - 1) + 1 : 1);
        snprintf(p->code, sizeof(p->code), "%s", code);
        snprintf(p->url, sizeof(p->url), "%s", url);
        p->timeout_ms = (int)num(json_object_get(row, "timeout_ms"), 200);
        p->qps_limit = (int)num(json_object_get(row, "qps_limit"), 0);
        p->adjustment = num(json_object_get(row, "bid_adjustment"), 1.0);
        if (p->timeout_ms < 1)
            p->timeout_ms = 1;
        if (!(p->adjustment >= 0))
            p->adjustment = 1.0;
        t->n++;
    }
    json_decref(page);
    *out = t;
    return AP_OK;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *loader_main(void *arg)
{
    (void)arg;
    ap_log_set_thread_name("rtb-partners");
    ap_thread_background();
    int64_t have = -1;
    pthread_mutex_lock(&P.mu);
    if (P.cur)
        have = P.cur->version;
    pthread_mutex_unlock(&P.mu);
    while (!atomic_load(&P.stop)) {
        sleep_ms(AP_RTB_PARTNERS_POLL_MS);
        int64_t v = 0;
        if (ap_store_version(P.store, &v) != AP_OK || v == have)
            continue;
        struct ap_rtb_partners *t = NULL;
        int rc = load(P.store, &t);
        if (rc) {
            ap_log_error("rtb: reading demand partners failed: %s", ap_strerror(rc));
            sleep_ms(1000);
            continue;
        }
        have = t->version;
        ap_log_info("rtb: %u active demand partners (store v%lld)", t->n, (long long)have);
        ap__rtb_partners_publish(t);
    }
    return NULL;
}

int ap__rtb_partners_start(const char *db_path, char *err, size_t errlen)
{
    snprintf(P.db_path, sizeof(P.db_path), "%s", db_path);
    int rc = ap_store_open(db_path, NULL, &P.store);
    if (rc) {
        snprintf(err, errlen, "store %s: %s", db_path, ap_strerror(rc));
        return rc;
    }
    struct ap_rtb_partners *t = NULL;
    if ((rc = load(P.store, &t))) {
        snprintf(err, errlen, "demand partners: %s", ap_strerror(rc));
        ap_store_close(P.store);
        P.store = NULL;
        return rc;
    }
    ap__rtb_partners_publish(t);
    atomic_store(&P.stop, false);
    if (pthread_create(&P.th, NULL, loader_main, NULL) != 0) {
        snprintf(err, errlen, "cannot start the partner loader");
        ap_store_close(P.store);
        P.store = NULL;
        return AP_ENOMEM;
    }
    P.running = true;
    return AP_OK;
}

void ap__rtb_partners_stop(void)
{
    if (P.running) {
        atomic_store(&P.stop, true);
        pthread_join(P.th, NULL);
        P.running = false;
    }
    if (P.store) {
        ap_store_close(P.store);
        P.store = NULL;
    }
    ap__rtb_partners_publish(NULL);
    for (int i = 0; i < SLOTS; i++) { /* the data plane has stopped */
        unref(S[i].tab);
        S[i].tab = NULL;
    }
}
