/*
 * ap_rtb_billing: the burl table and the beacon hook (contract in ap_rtb_billing.h).
 */
#include "ap_rtb_billing.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"
#include "../events/ap_evlog.h"
#include "../net/ap_http_client.h"

#define PER_STRIPE (AP_RTB_BILLING_SLOTS / AP_RTB_BILLING_STRIPES)

enum { S_EMPTY = 0, S_LIVE = 1, S_FIRED = 2 };

struct slot {
    uint8_t imp_id[16];
    uint8_t state;
    int64_t expires_at;
    int64_t partner_id, price_micros;
    char *burl; /* S_LIVE only */
};

struct stripe {
    pthread_mutex_t mu;
    struct slot s[PER_STRIPE];
} __attribute__((aligned(64)));

static struct {
    struct stripe *st;
    struct ap_evlog *evlog;
    _Atomic uint64_t stored, fired, unclaimed, full;
} B;

static uint64_t hash_id(const uint8_t id[16])
{
    /* impression ids are 128 random bits: any 8 of them are a good hash */
    uint64_t h;
    memcpy(&h, id + 8, sizeof(h));
    return h;
}

int ap_rtb_billing_init(struct ap_evlog *evlog)
{
    if (B.st)
        return AP_OK;
    B.st = calloc(AP_RTB_BILLING_STRIPES, sizeof(*B.st));
    if (!B.st)
        return AP_ENOMEM;
    for (int i = 0; i < AP_RTB_BILLING_STRIPES; i++)
        pthread_mutex_init(&B.st[i].mu, NULL);
    B.evlog = evlog;
    return AP_OK;
}

void ap_rtb_billing_free(void)
{
    if (!B.st)
        return;
    for (int i = 0; i < AP_RTB_BILLING_STRIPES; i++) {
        for (int k = 0; k < PER_STRIPE; k++)
            free(B.st[i].s[k].burl);
        pthread_mutex_destroy(&B.st[i].mu);
    }
    free(B.st);
    B.st = NULL;
    B.evlog = NULL;
}

/* Under the stripe lock: the slot holding id, or NULL. */
static struct slot *find(struct stripe *st, const uint8_t id[16], uint64_t h)
{
    for (int k = 0; k < PER_STRIPE; k++) {
        struct slot *s = &st->s[(h + (uint64_t)k) % PER_STRIPE];
        /* a slot never becomes empty again and put takes the first empty or expired slot of
         * the probe sequence, so an id is never stored behind an empty slot */
        if (s->state == S_EMPTY)
            return NULL;
        if (memcmp(s->imp_id, id, 16) == 0)
            return s;
    }
    return NULL;
}

int ap_rtb_billing_put(const uint8_t imp_id[16], int64_t partner_id, int64_t price_micros,
                       const char *burl, size_t len, int64_t expires_at)
{
    if (!B.st || !burl || len == 0 || len > AP_RTB_BILLING_URL_MAX)
        return AP_EINVAL;
    char *copy = malloc(len + 1);
    if (!copy)
        return AP_ENOMEM;
    memcpy(copy, burl, len);
    copy[len] = '\0';
    uint64_t h = hash_id(imp_id);
    struct stripe *st = &B.st[(h >> 32) % AP_RTB_BILLING_STRIPES];
    int64_t now = ap_time_unix();
    char *old = NULL;
    int rc = AP_ELIMIT;
    pthread_mutex_lock(&st->mu);
    if (find(st, imp_id, h)) {
        rc = AP_EEXIST;
    } else {
        /* linear probe from the home slot: the first empty or expired slot */
        for (int k = 0; k < PER_STRIPE; k++) {
            struct slot *s = &st->s[(h + (uint64_t)k) % PER_STRIPE];
            if (s->state != S_EMPTY && s->expires_at >= now)
                continue;
            old = s->burl;
            memcpy(s->imp_id, imp_id, 16);
            s->state = S_LIVE;
            s->expires_at = expires_at;
            s->partner_id = partner_id;
            s->price_micros = price_micros;
            s->burl = copy;
            copy = NULL;
            rc = AP_OK;
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
    free(old);
    free(copy);
    if (rc == AP_OK)
        atomic_fetch_add_explicit(&B.stored, 1, memory_order_relaxed);
    else if (rc == AP_ELIMIT)
        atomic_fetch_add_explicit(&B.full, 1, memory_order_relaxed);
    return rc;
}

int ap_rtb_billing_take(const uint8_t imp_id[16], int64_t now, struct ap_rtb_billing_entry *out)
{
    if (!B.st)
        return AP_ENOTFOUND;
    uint64_t h = hash_id(imp_id);
    struct stripe *st = &B.st[(h >> 32) % AP_RTB_BILLING_STRIPES];
    int rc = AP_ENOTFOUND;
    pthread_mutex_lock(&st->mu);
    struct slot *s = find(st, imp_id, h);
    if (s && s->state == S_LIVE && s->expires_at >= now) {
        out->partner_id = s->partner_id;
        out->price_micros = s->price_micros;
        out->burl = s->burl;
        s->burl = NULL;
        s->state = S_FIRED; /* a tombstone until expiry: later beacons find it fired */
        rc = AP_OK;
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void ap_rtb_billing_on_imp(struct ap_loop *loop, int worker, const struct ap_event *ev)
{
    if (ev->partner_id <= 0 || (ev->flags & AP_EV_F_TEST))
        return;
    struct ap_rtb_billing_entry e;
    if (ap_rtb_billing_take(ev->imp_id, ap_time_unix(), &e) != AP_OK) {
        atomic_fetch_add_explicit(&B.unclaimed, 1, memory_order_relaxed);
        return;
    }
    struct ap_hc *hc = ap_hc_worker(loop);
    struct ap_hc_req rq = {.method = "GET", .url = e.burl, .timeout_ms = 2000, .retries = 2};
    if (!hc || ap_hc_send(hc, &rq, NULL, NULL) != AP_OK) {
        ap_log_warn("rtb: billing notice for partner %lld not sent", (long long)e.partner_id);
        free(e.burl);
        return;
    }
    free(e.burl);
    atomic_fetch_add_explicit(&B.fired, 1, memory_order_relaxed);
    if (!B.evlog || worker < 0 || worker >= ap_evlog_rings(B.evlog))
        return;
    struct ap_event b;
    memset(&b, 0, sizeof(b));
    b.version = AP_EVENT_VERSION;
    b.type = AP_EV_BILLING;
    b.count = 1;
    memcpy(b.imp_id, ev->imp_id, sizeof(b.imp_id));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    b.time_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    b.placement_id = ev->placement_id;
    b.publisher_id = ev->publisher_id;
    b.partner_id = e.partner_id;
    b.price_micros = e.price_micros;
    b.issued_at = ev->issued_at;
    memcpy(b.country, ev->country, sizeof(b.country));
    b.device_type = ev->device_type;
    if (ap_evlog_append(ap_evlog_ring(B.evlog, worker), &b) < 0)
        ap_log_warn("rtb: billing record for partner %lld not logged (event ring full)",
                    (long long)e.partner_id);
}

void ap_rtb_billing_stats(struct ap_rtb_billing_stats *out)
{
    out->stored = atomic_load_explicit(&B.stored, memory_order_relaxed);
    out->fired = atomic_load_explicit(&B.fired, memory_order_relaxed);
    out->unclaimed = atomic_load_explicit(&B.unclaimed, memory_order_relaxed);
    out->full = atomic_load_explicit(&B.full, memory_order_relaxed);
}
