/*
 * ap_serve_http: the serving module in the daemon: builder thread (store -> snapshot, RCU
 * publication), delivery thread (pacing, cap expiry, persistence), and the data-plane handlers
 * POST /v1/decision and GET /v1/ad.
 *
 * RCU flavour: liburcu-memb (docs/adr/0006). Readers cost a compiler barrier plus one TLS
 * store; the grace-period side uses membarrier(2). Workers belong to src/net, so each
 * registers itself lazily on its first decision, and a pthread key unregisters it when the
 * thread exits.
 *
 * Handlers: parse the request (zero-copy JSON reader below; escaped strings are decoded into
 * the request arena), resolve the context once, decide inside one read-side critical section,
 * write the response into an arena buffer (no malloc once warm), sign the tracking tokens.
 */
#include "ap_serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_thread.h"
#include "../core/ap_time.h"
#include "../events/ap_evlog.h"
#include "../events/ap_token.h"
#include "../events/ap_token_ring.h"
#include "../net/ap_server.h"
#include "../store/ap_store.h"
#include "ap_consent.h"
#include "ap_serve_internal.h"

#define MAX_PROXIES 32
#define JSON_MAX_DEPTH 16
#define URL_MAX 1024
#define SAVE_EVERY_S 10

struct cidr {
    uint8_t family, prefix;
    uint8_t addr[16];
};

#define WORKER_ARENA_CHUNK                                                                         \
    (256 * 1024) /* one chunk holds a whole decision: no malloc once warm                          \
                  */
#define WORKER_ARENA_MAX (64 * 1024 * 1024)

/* Decision counts are summed per worker before they reach the event log (ADR 0018): one
 * AP_EV_DECISION record (count = N) per distinct (hour, campaign, ad, placement, publisher,
 * price, flags, device, country) per flush, instead of one record per decision. */
#define DEC_SLOTS 1024    /* open addressing, power of two */
#define DEC_MAX_USED 768  /* flush when this full */
#define DEC_FLUSH_MS 250  /* the most a count waits before it is appended */

struct dec_table {
    struct ap_event ev[DEC_SLOTS]; /* type 0: empty slot */
    int used;
    struct ap_loop_timer timer;
    struct ap_loop *loop; /* the worker's loop, where the timer is armed */
    int worker;
};

static void dec_flush(struct dec_table *t);

struct worker_state {
    struct ap_arena arena; /* request scratch, reset at the start of each request */
    struct dec_table *dec; /* allocated on the worker's first decision, freed at stop */
    bool arena_ready;
    struct ap_serve_rng rng;
    uint8_t id_key[crypto_stream_chacha20_KEYBYTES];
    uint64_t id_counter;
} __attribute__((aligned(64)));

static struct {
    bool started;
    char data_dir[1024];
    char public_url[URL_MAX];
    size_t public_url_len;
    bool public_url_plain; /* nothing in it needs JSON escaping */
    bool https;
    _Atomic bool need_ip; /* geo configured or some ad targets ip ranges */
    struct ap_serve_edge edge;
    struct cidr proxies[MAX_PROXIES];
    int nproxies;
    struct ap_serve_delivery *delivery;
    struct ap_serve_snapshot *snap; /* RCU-protected */
    _Atomic int64_t version;
    pthread_t builder, pacer;
    _Atomic bool stop;
    struct ap_store *store; /* builder thread's handle */
    struct worker_state workers[AP_SERVE_MAX_WORKERS];
    pthread_key_t rcu_key;
    struct ap_evlog *evlog; /* decisions are logged here (best effort), NULL: not */
} G;

/* The worker's scratch arena (the server's per-request arena is sized for small handlers). */
static struct ap_arena *ar(struct ap_http_exchange *x)
{
    return &G.workers[x->worker_id % AP_SERVE_MAX_WORKERS].arena;
}

static struct ap_arena *ar_begin(struct ap_http_exchange *x)
{
    struct worker_state *w = &G.workers[x->worker_id % AP_SERVE_MAX_WORKERS];
    if (!w->arena_ready) {
        ap_arena_init(&w->arena, WORKER_ARENA_CHUNK, WORKER_ARENA_MAX);
        w->arena_ready = true;
    }
    ap_arena_reset(&w->arena);
    return &w->arena;
}

/* ---- RCU registration --------------------------------------------------------------------------
 */

static _Thread_local bool rcu_registered;

static void rcu_unregister(void *unused)
{
    (void)unused;
    if (rcu_registered) {
        urcu_memb_unregister_thread();
        rcu_registered = false;
    }
}

static void rcu_reader(void)
{
    if (!rcu_registered) {
        urcu_memb_register_thread();
        rcu_registered = true;
        pthread_setspecific(G.rcu_key, &G); /* non-NULL: the destructor runs at exit */
    }
}

int64_t ap_serve_current_version(void)
{
    return atomic_load(&G.version);
}

/* ---- builder thread ---------------------------------------------------------------------------
 */

static int read_all(struct ap_store *st, enum ap_schema_res res, json_t *out)
{
    struct ap_store_filter f = {"status", "active"};
    struct ap_store_list_query q = {&f, 1, NULL, AP_STORE_LIST_MAX};
    char cursor[256] = "";
    for (;;) {
        json_t *page = NULL;
        struct ap_schema_errors errs;
        ap_schema_errors_init(&errs);
        q.cursor = cursor[0] ? cursor : NULL;
        int rc = ap_store_list(st, res, &q, NULL, &page, &errs);
        if (rc)
            return rc;
        json_array_extend(out, json_object_get(page, "data"));
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        if (!next || !*next || strlen(next) >= sizeof(cursor)) {
            json_decref(page);
            return AP_OK;
        }
        snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(page);
    }
}

/* ---- incremental reads ------------------------------------------------------------------------
 * Reading every serving row was most of a rebuild (100k ads: ~0.9 s of SQLite rows turned into
 * JSON, against ~0.4 s of compiling), so the builder keeps the active rows of its last read
 * (rows_cache, by ascending id) and afterwards reads only the rows written since
 * (ap_store_list_changed: changed_version >= the version of the last read), merging them in:
 * a row that is no longer active drops out, a new or changed one replaces its old self. The
 * compile step still runs over everything (the snapshot stays one immutable structure). A full
 * read happens at start, after any failed rebuild, and every AP_SERVE_FULL_READ_S as a safety
 * net. Memory: the cached rows are the same JSON a full read holds during a rebuild anyway.
 * Only the thread that rebuilds touches the cache (the main thread at start, then the builder
 * thread; never both at once). docs/adr/0013-incremental-snapshot-read.md. */
#define AP_SERVE_FULL_READ_S 600

static struct {
    bool valid;
    json_t *rows[AP_SCHEMA_RES_COUNT]; /* owned; active rows by ascending id */
    int64_t version;                   /* the store version they reflect */
    int64_t full_at;                   /* Unix s of the last full read */
} rows_cache;

static void rows_cache_drop(void)
{
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++) {
        json_decref(rows_cache.rows[i]);
        rows_cache.rows[i] = NULL;
    }
    rows_cache.valid = false;
}

static int64_t row_id(const json_t *o)
{
    return json_integer_value(json_object_get(o, "id"));
}

static bool row_active(const json_t *o)
{
    const char *st = json_string_value(json_object_get(o, "status"));
    return st && strcmp(st, "active") == 0;
}

/* old (active rows by id) + changed (rows by id, any status) -> a new array of active rows by
 * id, or NULL if out of memory. Rows are shared (reference counts), not copied. */
static json_t *merge_rows(const json_t *old, const json_t *changed)
{
    json_t *out = json_array();
    size_t i = 0, j = 0, na = json_array_size(old), nc = json_array_size(changed);
    while (out && (i < na || j < nc)) {
        json_t *a = i < na ? json_array_get(old, i) : NULL;
        json_t *c = j < nc ? json_array_get(changed, j) : NULL;
        int64_t ia = a ? row_id(a) : INT64_MAX, ic = c ? row_id(c) : INT64_MAX;
        json_t *take = NULL;
        if (ia < ic) {
            take = a;
            i++;
        } else {
            if (ia == ic)
                i++; /* replaced (or dropped) by its new version */
            if (row_active(c))
                take = c;
            j++;
        }
        if (take && json_array_append(out, take) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

/* Reads every serving row in one read transaction (incrementally when it can) and builds a
 * snapshot. */
static int rebuild(struct ap_store *st, int64_t version)
{
    static const enum ap_schema_res RES[] = {
        AP_SCHEMA_ADVERTISER, AP_SCHEMA_CAMPAIGN, AP_SCHEMA_AD,       AP_SCHEMA_CREATIVE,
        AP_SCHEMA_PUBLISHER,  AP_SCHEMA_SITE,     AP_SCHEMA_PLACEMENT};
    struct ap_serve_rows in;
    memset(&in, 0, sizeof(in));
    json_t *arrays[AP_SCHEMA_RES_COUNT] = {0};
    size_t changed_rows = 0;
    uint64_t t0 = ap_time_mono_ns();
    bool full = !rows_cache.valid || ap_time_unix() - rows_cache.full_at >= AP_SERVE_FULL_READ_S;
    int rc = ap_store_read_begin(st);
    if (rc)
        return rc;
    int64_t v = version;
    rc = ap_store_version(st, &v); /* the version this read transaction sees */
    for (size_t i = 0; i < sizeof(RES) / sizeof(RES[0]) && rc == AP_OK; i++) {
        json_t *changed = NULL;
        if (full) {
            arrays[RES[i]] = json_array();
            rc = arrays[RES[i]] ? read_all(st, RES[i], arrays[RES[i]]) : AP_ENOMEM;
        } else if ((rc = ap_store_list_changed(st, RES[i], rows_cache.version, &changed)) ==
                   AP_OK) {
            changed_rows += json_array_size(changed);
            arrays[RES[i]] = merge_rows(rows_cache.rows[RES[i]], changed);
            rc = arrays[RES[i]] ? AP_OK : AP_ENOMEM;
            json_decref(changed);
        }
        in.rows[RES[i]] = arrays[RES[i]];
    }
    ap_store_read_end(st);
    uint64_t t1 = ap_time_mono_ns();
    struct ap_serve_snapshot *s = NULL;
    if (rc == AP_OK) {
        in.version = v;
        in.now = ap_time_unix();
        rc = ap_serve_snapshot_build(&in, G.delivery, &s);
    }
    rows_cache_drop();
    if (rc) {
        for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
            json_decref(arrays[i]);
        return rc; /* the next rebuild reads everything */
    }
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        rows_cache.rows[i] = arrays[i];
    rows_cache.version = v;
    rows_cache.valid = true;
    if (full)
        rows_cache.full_at = ap_time_unix();
    atomic_store(&G.need_ip, s->ranges_n > 0);
    struct ap_serve_snapshot *old = rcu_xchg_pointer(&G.snap, s);
    atomic_store(&G.version, v);
    struct ap_serve_snapshot_stats stats;
    ap_serve_snapshot_stats(s, &stats);
    char how[48];
    if (full)
        snprintf(how, sizeof(how), "all rows");
    else
        snprintf(how, sizeof(how), "%zu changed rows", changed_rows);
    ap_log_info(
        "serve: snapshot v%lld: %u ads, %u campaigns, %u placements, %zu KiB, read %.1f ms (%s), "
        "compiled %.1f ms",
        (long long)v, stats.ads, stats.campaigns, stats.placements, stats.bytes / 1024,
        (double)(t1 - t0) / 1e6, how, (double)stats.build_ns / 1e6);
    if (old) {
        urcu_memb_synchronize_rcu(); /* every reader that could see old is done */
        ap_serve_snapshot_free(old);
    }
    return AP_OK;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *builder_main(void *arg)
{
    (void)arg;
    ap_log_set_thread_name("serve-builder");
    ap_thread_background();
    int64_t built = atomic_load(&G.version);
    int64_t built_at = ap_time_unix();
    while (!atomic_load(&G.stop)) {
        sleep_ms(AP_SERVE_POLL_MS);
        int64_t v = 0;
        if (ap_store_version(G.store, &v) != AP_OK)
            continue;
        if (v == built && ap_time_unix() - built_at < AP_SERVE_REBUILD_MAX_AGE)
            continue;
        int rc = rebuild(G.store, v);
        if (rc) {
            ap_log_error("serve: snapshot rebuild failed: %s (keeping v%lld)", ap_strerror(rc),
                         (long long)built);
            sleep_ms(1000);
            continue;
        }
        built = atomic_load(&G.version);
        built_at = ap_time_unix();
    }
    return NULL;
}

static void *pacer_main(void *arg)
{
    (void)arg;
    ap_log_set_thread_name("serve-delivery");
    ap_thread_background();
    rcu_reader();
    int64_t last_save = ap_time_unix();
    while (!atomic_load(&G.stop)) {
        sleep_ms(1000);
        urcu_memb_read_lock();
        const struct ap_serve_snapshot *s = rcu_dereference(G.snap);
        ap_serve_delivery_tick(G.delivery, s, ap_time_unix(), ap_time_mono_ns());
        urcu_memb_read_unlock();
        if (ap_time_unix() - last_save >= SAVE_EVERY_S) {
            int rc = ap_serve_delivery_save(G.delivery);
            if (rc)
                ap_log_warn("serve: cannot save delivery state: %s", ap_strerror(rc));
            last_save = ap_time_unix();
        }
    }
    rcu_unregister(NULL);
    return NULL;
}

/* ---- start / stop ---------------------------------------------------------------------------- */

static int parse_cidr(const char *s, size_t n, struct cidr *out)
{
    char addr[64];
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    if (alen == 0 || alen >= sizeof(addr))
        return AP_EINVAL;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(out, 0, sizeof(*out));
    bool v6 = strchr(addr, ':') != NULL;
    out->family = v6 ? 6 : 4;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, out->addr) != 1)
        return AP_EINVAL;
    unsigned bits = v6 ? 128 : 32, prefix = bits;
    if (slash) {
        uint64_t p;
        if (!ap_span_to_u64(ap_span_make(slash + 1, n - alen - 1), bits, &p))
            return AP_EINVAL;
        prefix = (unsigned)p;
    }
    out->prefix = (uint8_t)prefix;
    return AP_OK;
}

static bool cidr_match(const struct cidr *c, const uint8_t *ip, int family)
{
    if (c->family != family)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, ip, full) != 0)
        return false;
    return !rest || ((c->addr[full] ^ ip[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool trusted_proxy(const char *ip)
{
    uint8_t a[16];
    int fam = inet_pton(AF_INET, ip, a) == 1 ? 4 : inet_pton(AF_INET6, ip, a) == 1 ? 6 : 0;
    for (int i = 0; fam && i < G.nproxies; i++)
        if (cidr_match(&G.proxies[i], a, fam))
            return true;
    return false;
}

void ap_serve_set_edge(const struct ap_serve_edge *edge)
{
    if (edge)
        G.edge = *edge;
    else
        memset(&G.edge, 0, sizeof(G.edge));
}

int ap_serve_start(const struct ap_serve_options *opt, char *err, size_t errlen)
{
    char path[2048];
    int rc;
    bool ring_up = false;
    snprintf(G.data_dir, sizeof(G.data_dir), "%s", opt->data_dir);
    G.evlog = opt->evlog;
    if (opt->public_url && *opt->public_url)
        snprintf(G.public_url, sizeof(G.public_url), "%s", opt->public_url);
    else {
        const char *h = opt->listen_host && *opt->listen_host ? opt->listen_host : "127.0.0.1";
        if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0)
            h = "127.0.0.1"; /* a wildcard is not an address: set --public-url in production */
        bool v6 = strchr(h, ':') && h[0] != '[';
        snprintf(G.public_url, sizeof(G.public_url), "http://%s%s%s:%d", v6 ? "[" : "", h,
                 v6 ? "]" : "", opt->listen_port);
    }
    size_t ul = strlen(G.public_url);
    while (ul > 0 && G.public_url[ul - 1] == '/')
        G.public_url[--ul] = '\0';
    G.public_url_len = ul;
    G.public_url_plain = strpbrk(G.public_url, "\"\\<>&") == NULL;
    G.https = strncmp(G.public_url, "https://", 8) == 0;
    if (!G.https && strncmp(G.public_url, "http://", 7) != 0) {
        snprintf(err, errlen, "--public-url must start with http:// or https://");
        return AP_EINVAL;
    }
    G.nproxies = 0;
    for (const char *p = opt->trusted_proxies ? opt->trusted_proxies : ""; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && (*p == ' ')) {
            p++;
            n--;
        }
        while (n && p[n - 1] == ' ')
            n--;
        if (n) {
            if (G.nproxies == MAX_PROXIES || parse_cidr(p, n, &G.proxies[G.nproxies])) {
                snprintf(err, errlen, "--trusted-proxies: bad or too many ranges at \"%.*s\"",
                         (int)n, p);
                return AP_EINVAL;
            }
            G.nproxies++;
        }
        p += end ? (size_t)(end - p) + 1 : strlen(p);
    }
    if (sodium_init() < 0)
        return AP_EIO;
    snprintf(path, sizeof(path), "%s/serve", G.data_dir);
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return ap_error_from_errno(errno);
    }
    snprintf(path, sizeof(path), "%s/serve/delivery.state", G.data_dir);
    struct ap_serve_delivery_options dopt = {opt->fcap_sets, path};
    G.delivery = ap_serve_delivery_create(&dopt, &rc);
    if (!G.delivery) {
        snprintf(err, errlen, "delivery state: %s", ap_strerror(rc));
        return rc;
    }
    for (int i = 0; i < AP_SERVE_MAX_WORKERS; i++) {
        uint64_t seed;
        randombytes_buf(&seed, sizeof(seed));
        ap_serve_rng_seed(&G.workers[i].rng, seed);
        crypto_stream_chacha20_keygen(G.workers[i].id_key);
    }
    pthread_key_create(&G.rcu_key, rcu_unregister);
    snprintf(path, sizeof(path), "%s/adplatform.db", G.data_dir);
    if ((rc = ap_store_open(path, NULL, &G.store))) {
        snprintf(err, errlen, "store %s: %s", path, ap_strerror(rc));
        goto fail;
    }
    /* the published token key ring (keys in the store; shared with the beacons) */
    struct ap_token_ring_options ko = {.data_dir = G.data_dir};
    if ((rc = ap_token_ring_start(&ko, err, errlen)))
        goto fail;
    ring_up = true;
    int64_t v = 0;
    ap_store_version(G.store, &v);
    if ((rc = rebuild(G.store, v))) { /* serve warm from the first request */
        snprintf(err, errlen, "first snapshot: %s", ap_strerror(rc));
        goto fail;
    }
    atomic_store(&G.stop, false);
    if (pthread_create(&G.builder, NULL, builder_main, NULL) != 0) {
        rc = AP_ESYS;
        goto fail;
    }
    if (pthread_create(&G.pacer, NULL, pacer_main, NULL) != 0) {
        atomic_store(&G.stop, true);
        pthread_join(G.builder, NULL);
        rc = AP_ESYS;
        goto fail;
    }
    G.started = true;
    ap_log_info("serve: tracking URLs on %s", G.public_url);
    return AP_OK;
fail:
    if (ring_up)
        ap_token_ring_stop();
    ap_store_close(G.store);
    G.store = NULL;
    ap_serve_snapshot_free(G.snap);
    G.snap = NULL;
    ap_serve_delivery_destroy(G.delivery);
    G.delivery = NULL;
    return rc;
}

void ap_serve_stop(void)
{
    if (!G.started)
        return;
    atomic_store(&G.stop, true);
    pthread_join(G.builder, NULL);
    pthread_join(G.pacer, NULL);
    /* the data-plane workers have ended (ap_app joins them first): append their last decision
     * counts while the event log is still open, then free the tables */
    for (int i = 0; i < AP_SERVE_MAX_WORKERS; i++) {
        if (G.workers[i].dec) {
            dec_flush(G.workers[i].dec);
            free(G.workers[i].dec);
            G.workers[i].dec = NULL;
        }
    }
    int rc = ap_serve_delivery_save(G.delivery);
    if (rc)
        ap_log_warn("serve: cannot save delivery state: %s", ap_strerror(rc));
    struct ap_serve_snapshot *old = rcu_xchg_pointer(&G.snap, NULL);
    urcu_memb_synchronize_rcu();
    ap_serve_snapshot_free(old);
    rows_cache_drop();
    ap_serve_delivery_destroy(G.delivery);
    G.delivery = NULL;
    ap_store_close(G.store);
    G.store = NULL;
    ap_token_ring_stop();
    G.started = false;
}

/* ---- a small zero-copy JSON reader --------------------------------------------------------------
 */

struct jr {
    const char *p, *end;
    struct ap_arena *arena;
    int depth;
    bool bad;
};

static void ws(struct jr *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool peek(struct jr *j, char c)
{
    ws(j);
    return j->p < j->end && *j->p == c;
}

static bool eat(struct jr *j, char c)
{
    if (peek(j, c)) {
        j->p++;
        return true;
    }
    return false;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Reads a string; *out points into the body, or into the arena if it had escapes. */
static bool jstring(struct jr *j, struct ap_span *out)
{
    if (!eat(j, '"'))
        return j->bad = true, false;
    const char *start = j->p;
    bool esc = false;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20)
            return j->bad = true, false;
        if (c == '\\') {
            esc = true;
            j->p++;
            if (j->p >= j->end)
                return j->bad = true, false;
        }
        j->p++;
    }
    if (j->p >= j->end)
        return j->bad = true, false;
    const char *stop = j->p++;
    if (!esc) {
        *out = ap_span_make(start, (size_t)(stop - start));
        return true;
    }
    char *buf = ap_arena_alloc(j->arena, (size_t)(stop - start) + 4);
    if (!buf)
        return j->bad = true, false;
    size_t n = 0;
    for (const char *q = start; q < stop; q++) {
        if (*q != '\\') {
            buf[n++] = *q;
            continue;
        }
        q++;
        switch (*q) {
        case '"':
            buf[n++] = '"';
            break;
        case '\\':
            buf[n++] = '\\';
            break;
        case '/':
            buf[n++] = '/';
            break;
        case 'b':
            buf[n++] = '\b';
            break;
        case 'f':
            buf[n++] = '\f';
            break;
        case 'n':
            buf[n++] = '\n';
            break;
        case 'r':
            buf[n++] = '\r';
            break;
        case 't':
            buf[n++] = '\t';
            break;
        case 'u': {
            if (stop - q < 5)
                return j->bad = true, false;
            unsigned cp = 0;
            for (int k = 1; k <= 4; k++) {
                int h = hexval(q[k]);
                if (h < 0)
                    return j->bad = true, false;
                cp = cp << 4 | (unsigned)h;
            }
            q += 4;
            /* surrogates are passed through as U+FFFD: we only compare these strings */
            if (cp >= 0xD800 && cp <= 0xDFFF)
                cp = 0xFFFD;
            if (cp < 0x80) {
                buf[n++] = (char)cp;
            } else if (cp < 0x800) {
                buf[n++] = (char)(0xC0 | cp >> 6);
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (char)(0xE0 | cp >> 12);
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            return j->bad = true, false;
        }
    }
    *out = ap_span_make(buf, n);
    return true;
}

static bool jnumber(struct jr *j, int64_t *out, bool *is_int)
{
    ws(j);
    const char *s = j->p;
    bool neg = false, integer = true;
    uint64_t v = 0;
    if (j->p < j->end && *j->p == '-') {
        neg = true;
        j->p++;
    }
    const char *digits = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v < UINT64_MAX / 10)
            v = v * 10 + (uint64_t)(*j->p - '0');
        else
            integer = false;
        j->p++;
    }
    if (j->p == digits || (*digits == '0' && j->p - digits > 1))
        return j->bad = true, false;
    if (j->p < j->end && *j->p == '.') {
        integer = false;
        j->p++;
        const char *f = j->p;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
        if (j->p == f)
            return j->bad = true, false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        integer = false;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        const char *e = j->p;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
        if (j->p == e)
            return j->bad = true, false;
    }
    (void)s;
    if (v > (uint64_t)INT64_MAX)
        integer = false;
    *out = integer ? (neg ? -(int64_t)v : (int64_t)v) : 0;
    *is_int = integer;
    return true;
}

static bool jlit(struct jr *j, const char *lit)
{
    ws(j);
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return j->bad = true, false;
    j->p += n;
    return true;
}

static bool jskip(struct jr *j)
{
    ws(j);
    if (j->p >= j->end || ++j->depth > JSON_MAX_DEPTH)
        return j->bad = true, false;
    bool ok = true;
    char c = *j->p;
    if (c == '{') {
        j->p++;
        if (!eat(j, '}')) {
            do {
                struct ap_span k;
                ok = jstring(j, &k) && eat(j, ':') && jskip(j);
            } while (ok && eat(j, ','));
            ok = ok && eat(j, '}');
        }
    } else if (c == '[') {
        j->p++;
        if (!eat(j, ']')) {
            do
                ok = jskip(j);
            while (ok && eat(j, ','));
            ok = ok && eat(j, ']');
        }
    } else if (c == '"') {
        struct ap_span s;
        ok = jstring(j, &s);
    } else if (c == 't') {
        ok = jlit(j, "true");
    } else if (c == 'f') {
        ok = jlit(j, "false");
    } else if (c == 'n') {
        ok = jlit(j, "null");
    } else {
        int64_t v;
        bool in;
        ok = jnumber(j, &v, &in);
    }
    j->depth--;
    if (!ok)
        j->bad = true;
    return ok;
}

/* Iterates an object: call with first=true, then while it returns true, read the value. */
static bool jobj_next(struct jr *j, bool *first, struct ap_span *key)
{
    if (*first) {
        *first = false;
        if (!eat(j, '{'))
            return j->bad = true, false;
        if (eat(j, '}'))
            return false;
    } else if (!eat(j, ',')) {
        if (!eat(j, '}'))
            j->bad = true;
        return false;
    }
    return jstring(j, key) && eat(j, ':') ? true : (j->bad = true, false);
}

static bool jarr_next(struct jr *j, bool *first)
{
    if (*first) {
        *first = false;
        if (!eat(j, '['))
            return j->bad = true, false;
        return !eat(j, ']');
    }
    if (eat(j, ','))
        return true;
    if (!eat(j, ']'))
        j->bad = true;
    return false;
}

static bool jnull(struct jr *j)
{
    if (peek(j, 'n'))
        return jlit(j, "null");
    return false;
}

static bool jbool(struct jr *j, bool *out)
{
    if (peek(j, 't'))
        return *out = true, jlit(j, "true");
    if (peek(j, 'f'))
        return *out = false, jlit(j, "false");
    if (jnull(j))
        return true;
    return j->bad = true, false;
}

static bool jstr_or_null(struct jr *j, struct ap_span *out)
{
    if (jnull(j)) {
        *out = AP_SPAN_NULL;
        return true;
    }
    return jstring(j, out);
}

/* ---- the decision request -----------------------------------------------------------------------
 */

struct dreq {
    struct ap_serve_slot_req slots[AP_SERVE_MAX_PLACEMENTS];
    struct ap_span divs[AP_SERVE_MAX_PLACEMENTS];
    int nslots;
    struct ap_span user_key, url, referrer, ip, ua, tcf;
    struct ap_span usp; /* US Privacy string ("1YYN"), "" if none */
    bool gdpr, gdpr_set, exclusive;
    struct ap_span keywords[AP_SERVE_CTX_MAX_KEYWORDS];
    int nkeywords;
    struct ap_span segments[AP_SERVE_CTX_MAX_SEGMENTS];
    int nsegments;
    const char *error; /* static message for a 400 */
};

static bool parse_placements(struct jr *j, struct dreq *r)
{
    bool first = true;
    while (jarr_next(j, &first)) {
        if (r->nslots >= AP_SERVE_MAX_PLACEMENTS) {
            r->error = "too many placements (at most 20)";
            return false;
        }
        struct ap_serve_slot_req *s = &r->slots[r->nslots];
        s->placement_id = 0;
        s->count = 1;
        struct ap_span *div = &r->divs[r->nslots];
        *div = AP_SPAN_NULL;
        bool f2 = true;
        struct ap_span k;
        while (jobj_next(j, &f2, &k)) {
            int64_t v;
            bool isint;
            if (ap_span_eq_cstr(k, "id")) {
                if (!jnumber(j, &v, &isint) || !isint || v <= 0) {
                    r->error = "placements[].id must be a positive integer";
                    return false;
                }
                s->placement_id = v;
            } else if (ap_span_eq_cstr(k, "count")) {
                if (!jnumber(j, &v, &isint) || !isint || v < 1 || v > AP_SERVE_MAX_COUNT) {
                    r->error = "placements[].count must be an integer 1..10";
                    return false;
                }
                s->count = (int)v;
            } else if (ap_span_eq_cstr(k, "div")) {
                if (!jstr_or_null(j, div))
                    return false;
            } else if (!jskip(j)) {
                return false;
            }
        }
        if (j->bad)
            return false;
        if (!s->placement_id) {
            r->error = "placements[].id is required";
            return false;
        }
        if (!div->len) { /* default key: the placement id */
            char *b = ap_arena_alloc(j->arena, 24);
            if (!b)
                return false;
            int n = snprintf(b, 24, "%lld", (long long)s->placement_id);
            *div = ap_span_make(b, (size_t)n);
        }
        r->nslots++;
    }
    return !j->bad;
}

static bool parse_strings(struct jr *j, struct ap_span *out, int *n, int max)
{
    bool first = true;
    while (jarr_next(j, &first)) {
        struct ap_span s;
        if (!jstring(j, &s))
            return false;
        if (*n < max && s.len > 0 && s.len <= 64)
            out[(*n)++] = s;
    }
    return !j->bad;
}

static bool parse_decision(struct jr *j, struct dreq *r)
{
    bool first = true;
    struct ap_span k;
    bool have_placements = false;
    while (jobj_next(j, &first, &k)) {
        bool ok;
        if (ap_span_eq_cstr(k, "placements")) {
            ok = parse_placements(j, r);
            have_placements = true;
        } else if (ap_span_eq_cstr(k, "user")) {
            if (jnull(j))
                continue;
            bool f2 = true;
            struct ap_span k2;
            ok = true;
            while (ok && jobj_next(j, &f2, &k2)) {
                if (ap_span_eq_cstr(k2, "key"))
                    ok = jstr_or_null(j, &r->user_key);
                else if (ap_span_eq_cstr(k2, "segments"))
                    ok = parse_strings(j, r->segments, &r->nsegments, AP_SERVE_CTX_MAX_SEGMENTS);
                else
                    ok = jskip(j);
            }
            ok = ok && !j->bad;
        } else if (ap_span_eq_cstr(k, "consent")) {
            if (jnull(j))
                continue;
            bool f2 = true;
            struct ap_span k2;
            ok = true;
            while (ok && jobj_next(j, &f2, &k2)) {
                if (ap_span_eq_cstr(k2, "gdpr")) {
                    ok = jbool(j, &r->gdpr);
                    r->gdpr_set = true;
                } else if (ap_span_eq_cstr(k2, "tcf")) {
                    ok = jstr_or_null(j, &r->tcf);
                } else if (ap_span_eq_cstr(k2, "us_privacy")) {
                    ok = jstr_or_null(j, &r->usp);
                } else {
                    ok = jskip(j);
                }
            }
            ok = ok && !j->bad;
        } else if (ap_span_eq_cstr(k, "keywords")) {
            ok = parse_strings(j, r->keywords, &r->nkeywords, AP_SERVE_CTX_MAX_KEYWORDS);
        } else if (ap_span_eq_cstr(k, "url")) {
            ok = jstr_or_null(j, &r->url);
        } else if (ap_span_eq_cstr(k, "referrer")) {
            ok = jstr_or_null(j, &r->referrer);
        } else if (ap_span_eq_cstr(k, "ip")) {
            ok = jstr_or_null(j, &r->ip);
        } else if (ap_span_eq_cstr(k, "ua")) {
            ok = jstr_or_null(j, &r->ua);
        } else if (ap_span_eq_cstr(k, "exclusive_advertisers")) {
            ok = jbool(j, &r->exclusive);
        } else {
            ok = jskip(j);
        }
        if (!ok)
            return false;
    }
    if (j->bad)
        return false;
    ws(j);
    if (j->p != j->end)
        return j->bad = true, false;
    if (!have_placements || r->nslots == 0) {
        r->error = "placements must be a non-empty array";
        return false;
    }
    return true;
}

int ap__serve_decision_parse(const char *body, size_t len, struct ap_arena *arena,
                             struct ap__serve_decision_req *out)
{
    struct dreq *r = ap_arena_calloc(arena, 1, sizeof(*r));
    memset(out, 0, sizeof(*out));
    if (!r) {
        out->error = "out of memory";
        return AP_EINVAL;
    }
    struct jr j = {body, body + len, arena, 0, false};
    bool ok = parse_decision(&j, r);
    out->error = r->error;
    if (!ok)
        return AP_EINVAL;
    memcpy(out->slots, r->slots, sizeof(out->slots));
    memcpy(out->divs, r->divs, sizeof(out->divs));
    out->nslots = r->nslots;
    out->user_key = r->user_key;
    out->url = r->url;
    out->referrer = r->referrer;
    out->ip = r->ip;
    out->ua = r->ua;
    out->tcf = r->tcf;
    out->usp = r->usp;
    out->gdpr = r->gdpr;
    out->exclusive = r->exclusive;
    memcpy(out->keywords, r->keywords, sizeof(out->keywords));
    out->nkeywords = r->nkeywords;
    memcpy(out->segments, r->segments, sizeof(out->segments));
    out->nsegments = r->nsegments;
    return AP_OK;
}

/* ---- context resolution ---------------------------------------------------------------------- */

static void copy_cstr(char *out, size_t cap, struct ap_span s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(out, s.p, n);
    out[n] = '\0';
}

static bool valid_ip(const char *s)
{
    uint8_t a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* The client address: a supplied one, else X-Forwarded-For from a trusted proxy (the rightmost
 * address that is not itself a trusted proxy), else the peer. */
static void resolve_ip(struct ap_http_exchange *x, struct ap_span supplied, char *out, size_t cap)
{
    out[0] = '\0';
    if (supplied.len) {
        copy_cstr(out, cap, supplied);
        if (valid_ip(out))
            return;
        out[0] = '\0';
    }
    char peer[AP_SERVE_CTX_IP_MAX];
    if (ap_http_peer_addr(x, peer, sizeof(peer)) != AP_OK)
        peer[0] = '\0';
    snprintf(out, cap, "%s", peer);
    if (!G.nproxies || !trusted_proxy(peer))
        return;
    const struct ap_http_header *h = ap_http_find_header(&x->req, "X-Forwarded-For");
    if (!h)
        return;
    struct ap_span v = h->value;
    size_t end = v.len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && v.p[start - 1] != ',')
            start--;
        struct ap_span item = ap_span_make(v.p + start, end - start);
        while (item.len && item.p[0] == ' ')
            item.p++, item.len--;
        while (item.len && item.p[item.len - 1] == ' ')
            item.len--;
        char cand[AP_SERVE_CTX_IP_MAX];
        if (item.len && item.len < sizeof(cand)) {
            copy_cstr(cand, sizeof(cand), item);
            if (!valid_ip(cand))
                return;
            snprintf(out, cap, "%s", cand);
            if (!trusted_proxy(cand))
                return;
        }
        end = start ? start - 1 : 0;
    }
}

static void parse_langs(struct ap_span v, struct ap_serve_ctx *ctx)
{
    size_t i = 0;
    while (i < v.len && ctx->nlangs < AP_SERVE_CTX_MAX_LANGS) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        struct ap_span item = ap_span_make(v.p + s, i - s);
        const char *semi = memchr(item.p, ';', item.len);
        if (semi && memmem(semi, item.len - (size_t)(semi - item.p), "q=0", 3) &&
            !memchr(semi, '.', item.len - (size_t)(semi - item.p)))
            continue; /* q=0: not acceptable */
        if (item.len >= 2 && ap__ascii_lower(item.p[0]) >= 'a' &&
            ap__ascii_lower(item.p[0]) <= 'z' && ap__ascii_lower(item.p[1]) >= 'a' &&
            ap__ascii_lower(item.p[1]) <= 'z' &&
            (item.len == 2 || item.p[2] == '-' || item.p[2] == ';' || item.p[2] == '_')) {
            char l[3] = {ap__ascii_lower(item.p[0]), ap__ascii_lower(item.p[1]), 0};
            bool dup = false;
            for (int k = 0; k < ctx->nlangs; k++)
                dup |= memcmp(ctx->langs[k], l, 3) == 0;
            if (!dup)
                memcpy(ctx->langs[ctx->nlangs++], l, 3);
        }
    }
}

static void url_host(struct ap_span url, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = url.p, *end = url.p + url.len;
    const char *sep = url.len > 3 ? memmem(p, url.len, "://", 3) : NULL;
    if (!sep)
        return;
    p = sep + 3;
    const char *h = p;
    while (p < end && *p != '/' && *p != ':' && *p != '?' && *p != '#')
        p++;
    const char *at = memchr(h, '@', (size_t)(p - h));
    if (at)
        return; /* user-info: ignore the URL */
    size_t n = (size_t)(p - h);
    if (n == 0 || n >= cap)
        return;
    for (size_t i = 0; i < n; i++)
        out[i] = ap__ascii_lower(h[i]);
    out[n] = '\0';
}

static bool cookie_uid(const struct ap_http_req *req, char *out, size_t cap)
{
    for (unsigned i = 0; i < req->nheaders; i++) {
        if (!ap_span_eq_nocase(req->headers[i].name, "cookie"))
            continue;
        struct ap_span v = req->headers[i].value;
        for (size_t k = 0; k + 7 <= v.len; k++) {
            if ((k == 0 || v.p[k - 1] == ' ' || v.p[k - 1] == ';') &&
                memcmp(v.p + k, "ap_uid=", 7) == 0) {
                size_t s = k + 7, e = s;
                while (e < v.len && v.p[e] != ';')
                    e++;
                if (e - s == 0 || e - s >= cap)
                    return false;
                for (size_t q = s; q < e; q++) {
                    char c = v.p[q];
                    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '_'))
                        return false;
                }
                copy_cstr(out, cap, ap_span_make(v.p + s, e - s));
                return true;
            }
        }
    }
    return false;
}

static void new_id(int worker, uint8_t out[16])
{
    struct worker_state *w = &G.workers[worker % AP_SERVE_MAX_WORKERS];
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    memcpy(nonce, &w->id_counter, sizeof(nonce));
    w->id_counter++;
    crypto_stream_chacha20(out, 16, nonce, w->id_key);
}

void ap_serve_client_ip(struct ap_http_exchange *x, char *out, size_t cap)
{
    if (cap)
        resolve_ip(x, AP_SPAN_NULL, out, cap);
}

static void resolve_ctx(struct ap_http_exchange *x, const struct dreq *r, struct ap_serve_ctx *ctx)
{
    ap_serve_ctx_init(ctx, ap_time_unix());
    /* the peer address costs a system call: only when geo or an ip_ranges rule needs it */
    if (r->ip.len || (G.edge.geo_lookup && G.edge.geo) || atomic_load(&G.need_ip))
        resolve_ip(x, r->ip, ctx->ip, sizeof(ctx->ip));
    if (G.edge.geo_lookup && G.edge.geo && ctx->ip[0])
        G.edge.geo_lookup(G.edge.geo, ctx->ip, ctx);
    struct ap_span ua = r->ua;
    if (!ua.len) {
        const struct ap_http_header *h = ap_http_find_header(&x->req, "User-Agent");
        if (h)
            ua = h->value;
    }
    if (G.edge.ua_parse && G.edge.ua)
        G.edge.ua_parse(G.edge.ua, ua, ctx);
    const struct ap_http_header *al = ap_http_find_header(&x->req, "Accept-Language");
    if (al)
        parse_langs(al->value, ctx);
    ctx->page_url = r->url;
    ctx->referrer = r->referrer;
    if (r->url.len)
        url_host(r->url, ctx->domain, sizeof(ctx->domain));
    for (int i = 0; i < r->nkeywords; i++)
        ctx->keywords[ctx->nkeywords++] = r->keywords[i];
    /* consent */
    if (G.edge.consent_parse) {
        G.edge.consent_parse(r->tcf, r->gdpr, ctx);
    } else {
        ctx->gdpr_applies = r->gdpr;
        ctx->consent_known = false;
        ctx->storage_allowed = !r->gdpr;
        ctx->personalisation_allowed = !r->gdpr;
    }
    if (r->usp.len) /* a US Privacy opt-out of sale: as GDPR without consent */
        ap_consent_apply_usp(r->usp, ctx);
    if (ctx->personalisation_allowed)
        for (int i = 0; i < r->nsegments; i++)
            ctx->segments[ctx->nsegments++] = r->segments[i];
    /* user: a supplied key, else our cookie, else a new cookie; nothing without storage */
    if (!ctx->storage_allowed)
        return;
    if (r->user_key.len && r->user_key.len < sizeof(ctx->user_key)) {
        copy_cstr(ctx->user_key, sizeof(ctx->user_key), r->user_key);
    } else if (cookie_uid(&x->req, ctx->user_key, sizeof(ctx->user_key))) {
        ctx->user_from_cookie = true;
        ctx->set_cookie = true; /* refresh its lifetime */
    } else {
        uint8_t id[16];
        new_id(x->worker_id, id);
        ap_token_b64_encode(id, sizeof(id), ctx->user_key, sizeof(ctx->user_key));
        ctx->user_from_cookie = true;
        ctx->set_cookie = true;
    }
}

/* ---- response writer (arena buffer, no malloc) -------------------------------------------- */

struct wb {
    char *p;
    size_t len, cap;
    bool overflow;
};

static void w_raw(struct wb *w, const char *s, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void w_lit(struct wb *w, const char *s)
{
    w_raw(w, s, strlen(s));
}

static void w_i64(struct wb *w, int64_t v)
{
    char b[24];
    if (v < 0) {
        w_raw(w, "-", 1);
        v = -v;
    }
    w_raw(w, b, ap_u64_to_dec((uint64_t)v, b));
}

/* JSON string body (no quotes). */
static void w_json(struct wb *w, struct ap_span s)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* bytes before i that need no escape, not yet copied */
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
            run++;
            continue;
        }
        w_raw(w, s.p + i - run, run);
        run = 0;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            w_raw(w, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            w_raw(w, e, 6);
        }
    }
    w_raw(w, s.p + s.len - run, run);
}

/* The control plane's error body: {"error":{"code","message","fields":[]}}. */
/* ---- CORS for /v1/decision ---------------------------------------------------------------------
 * The publisher tag runs on the publisher's origin and asks the ad server's origin, with
 * credentials (our ap_uid cookie). For the browser to hand the answer to the tag, every answer
 * (errors too) names the caller's origin (never "*", which credentials forbid) and allows
 * credentials; Vary: Origin keeps caches apart. Any origin may call: the decision API is public
 * by design (like the tag), and what it returns is what any page embedding the tag would get.
 * The opaque origin "null" (sandboxed frames, file: pages) gets no CORS headers. Cross-origin
 * calls from the tag are "simple" (text/plain), so they need no preflight; OPTIONS answers one
 * for other integrations that send application/json. */
#define CORS_MAX_AGE "7200" /* seconds a browser may cache a preflight (Chromium's cap) */

static bool origin_ok(struct ap_span o)
{
    if (o.len < 8 || o.len > 512 ||
        !(ap_span_starts_with(o, "http://") || ap_span_starts_with(o, "https://")))
        return false;
    for (size_t i = 0; i < o.len; i++) {
        char ch = o.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == ':' || ch == '/' || ch == '.' || ch == '-' || ch == '[' || ch == ']' ||
              ch == '_'))
            return false;
    }
    return true;
}

/* Adds the CORS answer headers when the request came with an acceptable Origin. */
static void cors_headers(struct ap_http_exchange *x)
{
    const struct ap_http_header *h = ap_http_find_header(&x->req, "Origin");
    ap_http_add_header(x, "Vary", AP_SPAN_LIT("Origin"));
    if (!h || !origin_ok(h->value))
        return;
    ap_http_add_header(x, "Access-Control-Allow-Origin", h->value);
    ap_http_add_header(x, "Access-Control-Allow-Credentials", AP_SPAN_LIT("true"));
}

/* OPTIONS /v1/decision: the preflight. */
static int h_decision_preflight(struct ap_http_exchange *x)
{
    cors_headers(x);
    ap_http_add_header(x, "Access-Control-Allow-Methods", AP_SPAN_LIT("POST, OPTIONS"));
    ap_http_add_header(x, "Access-Control-Allow-Headers", AP_SPAN_LIT("Content-Type"));
    ap_http_add_header(x, "Access-Control-Max-Age", AP_SPAN_LIT(CORS_MAX_AGE));
    return ap_http_respond(x, 204, NULL, NULL, 0);
}

static int serve_error(struct ap_http_exchange *x, int status, const char *code,
                       const char *message)
{
    char buf[512];
    struct wb w = {buf, 0, sizeof(buf), false};
    w_lit(&w, "{\"error\":{\"code\":\"");
    w_json(&w, ap_span_cstr(code));
    w_lit(&w, "\",\"message\":\"");
    w_json(&w, ap_span_cstr(message));
    w_lit(&w, "\",\"fields\":[]}}");
    if (w.overflow)
        return ap_http_respond_error(x, status, code, message);
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    return ap_http_respond(x, status, "application/json", w.p, w.len);
}

/* A tracking URL: base64url after the public URL, which needs escaping only if it has one of
 * the characters w_json escapes (checked once at start). */
static void w_url(struct wb *w, const char *url)
{
    if (G.public_url_plain)
        w_lit(w, url);
    else
        w_json(w, ap_span_cstr(url));
}

/* HTML attribute / text escaping. */
static void w_html(struct wb *w, struct ap_span s)
{
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c == '&')
            w_lit(w, "&amp;");
        else if (c == '<')
            w_lit(w, "&lt;");
        else if (c == '>')
            w_lit(w, "&gt;");
        else if (c == '"')
            w_lit(w, "&quot;");
        else if (c == '\'')
            w_lit(w, "&#39;");
        else
            w_raw(w, &c, 1);
    }
}

struct urls {
    char imp[URL_MAX + AP_TOKEN_MAX_TEXT + 32];
    char view[URL_MAX + AP_TOKEN_MAX_TEXT + 32];
    char click[URL_MAX + AP_TOKEN_MAX_TEXT + 32];
    uint8_t imp_id[AP_TOKEN_ID_BYTES]; /* of the tokens above */
};

static int make_urls(const struct ap_serve_pick *pk, const struct ap_serve_ctx *ctx, int worker,
                     struct urls *u)
{
    struct ap_token t;
    memset(&t, 0, sizeof(t));
    new_id(worker, t.imp_id);
    t.flags = (uint8_t)((ctx->gdpr_applies ? AP_TOKEN_F_GDPR : 0) |
                        (ctx->storage_allowed ? AP_TOKEN_F_STORAGE : 0) |
                        (ctx->personalisation_allowed ? AP_TOKEN_F_PERSONALISATION : 0));
    t.campaign_id = pk->campaign->id;
    t.ad_id = pk->ad->id;
    t.placement_id = pk->placement->id;
    t.publisher_id = pk->placement->publisher_id;
    t.price_micros = pk->price_micros;
    t.issued_at = ctx->now;
    char tok[AP_TOKEN_MAX_TEXT];
    static const struct {
        uint8_t type;
        const char *path;
    } K[3] = {{AP_TOKEN_IMP, "imp"}, {AP_TOKEN_VIEW, "view"}, {AP_TOKEN_CLICK, "click"}};
    char *outs[3] = {u->imp, u->view, u->click};
    const struct ap_token_keyring *kr = &ap_token_ring_get()->sign; /* one ring for all three */
    for (int i = 0; i < 3; i++) {
        t.type = K[i].type;
        int n = ap_token_sign(kr, &t, tok, sizeof(tok));
        if (n < 0)
            return n;
        struct wb ub = {outs[i], 0, sizeof(u->imp) - 1, false};
        w_raw(&ub, G.public_url, G.public_url_len);
        w_lit(&ub, "/v1/e/");
        w_lit(&ub, K[i].path);
        w_lit(&ub, "?t=");
        w_raw(&ub, tok, (size_t)n);
        outs[i][ub.len] = '\0';
    }
    memcpy(u->imp_id, t.imp_id, sizeof(u->imp_id));
    return AP_OK;
}

/* Appends every pending decision count of table t to the worker's ring and empties it. Best
 * effort: a full ring drops the record (counted by the log:
 * ap_evlog_ring_full_total{type="decision"}). The worker's thread, or any thread once the
 * workers have ended. */
static void dec_flush(struct dec_table *t)
{
    struct ap_evlog_ring *r = ap_evlog_ring(G.evlog, t->worker);
    for (int i = 0; i < DEC_SLOTS && t->used > 0; i++) {
        if (!t->ev[i].type)
            continue;
        if (r)
            ap_evlog_append(r, &t->ev[i]);
        t->ev[i].type = 0;
        t->used--;
    }
    t->used = 0;
}

static void dec_on_timer(struct ap_loop *loop, struct ap_loop_timer *tm)
{
    (void)loop;
    dec_flush(tm->data);
}

static bool dec_same(const struct ap_event *a, const struct ap_event *b, int64_t hour)
{
    return a->campaign_id == b->campaign_id && a->ad_id == b->ad_id &&
           a->placement_id == b->placement_id && a->publisher_id == b->publisher_id &&
           a->price_micros == b->price_micros && a->flags == b->flags &&
           a->device_type == b->device_type && a->country[0] == b->country[0] &&
           a->country[1] == b->country[1] && a->time_ns / 3600000000000LL == hour;
}

/* Counts a served pick towards the worker's next AP_EV_DECISION records (see DEC_SLOTS). Never
 * waits; the record reaches the log within DEC_FLUSH_MS. */
static void log_decision(struct ap_http_exchange *x, const struct ap_serve_pick *pk,
                         const struct ap_serve_ctx *ctx)
{
    if (!G.evlog)
        return;
    struct worker_state *w = &G.workers[x->worker_id % AP_SERVE_MAX_WORKERS];
    struct dec_table *t = w->dec;
    if (!t) {
        if (!(t = calloc(1, sizeof(*t))))
            return; /* best effort, like a full ring */
        t->worker = x->worker_id;
        t->loop = x->loop;
        ap_loop_timer_init(&t->timer, dec_on_timer, t);
        w->dec = t;
    }
    struct ap_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.version = AP_EVENT_VERSION;
    ev.type = AP_EV_DECISION;
    ev.flags = (uint8_t)((ctx->gdpr_applies ? AP_EV_F_GDPR : 0) |
                         (ctx->storage_allowed ? AP_EV_F_STORAGE : 0) |
                         (ctx->personalisation_allowed ? AP_EV_F_PERSONALISATION : 0));
    ev.device_type = (uint8_t)ctx->device;
    if (ctx->country[0] && ctx->country[1])
        memcpy(ev.country, ctx->country, 2);
    ev.count = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    ev.time_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    ev.campaign_id = pk->campaign->id;
    ev.ad_id = pk->ad->id;
    ev.placement_id = pk->placement->id;
    ev.publisher_id = pk->placement->publisher_id;
    ev.price_micros = pk->price_micros;
    ev.issued_at = ctx->now;
    int64_t hour = ev.time_ns / 3600000000000LL;

    uint64_t h = (uint64_t)ev.ad_id * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)ev.placement_id * 0xC2B2AE3D27D4EB4Full ^
                 ((uint64_t)ev.flags << 8 | ev.device_type) * 0x165667B19E3779F9ull ^
                 (uint64_t)(uint8_t)ev.country[0] << 16 ^ (uint64_t)(uint8_t)ev.country[1] << 24;
    h ^= h >> 29;
    for (size_t i = h & (DEC_SLOTS - 1);; i = (i + 1) & (DEC_SLOTS - 1)) {
        struct ap_event *e = &t->ev[i];
        if (!e->type) {
            *e = ev;
            if (++t->used >= DEC_MAX_USED)
                dec_flush(t);
            break;
        }
        if (dec_same(e, &ev, hour)) {
            if (++e->count == UINT32_MAX) {
                dec_flush(t);
            }
            break;
        }
    }
    if (t->used > 0 && t->timer.heap_index < 0)
        ap_loop_timer_start(t->loop, &t->timer, DEC_FLUSH_MS);
}

static const char *const CTYPES[] = {"image", "html", "native", "vast"};

static void w_creative(struct wb *w, const struct ap_serve_snapshot *s,
                       const struct ap_serve_creative *cr)
{
    w_lit(w, "{\"type\":\"");
    w_lit(w, CTYPES[cr->type]);
    w_lit(w, "\"");
    if (cr->width) {
        w_lit(w, ",\"width\":");
        w_i64(w, cr->width);
        w_lit(w, ",\"height\":");
        w_i64(w, cr->height);
    }
    switch (cr->type) {
    case AP_SERVE_IMAGE:
        w_lit(w, ",\"url\":\"");
        w_json(w, ap_span_cstr(G.public_url));
        w_json(w, ap__serve_str(s, cr->url));
        w_lit(w, "\"");
        break;
    case AP_SERVE_HTML:
        w_lit(w, ",\"html\":\"");
        w_json(w, ap__serve_str(s, cr->html));
        w_lit(w, "\"");
        break;
    case AP_SERVE_NATIVE:
        w_lit(w, ",\"native\":");
        w_raw(w, s->strings + cr->native.off, cr->native.len);
        break;
    case AP_SERVE_VAST:
        w_lit(w, ",\"vast\":\"");
        w_json(w, ap__serve_str(s, cr->vast));
        w_lit(w, "\"");
        break;
    }
    w_lit(w, "}");
}

static void set_cookie(struct ap_http_exchange *x, const struct ap_serve_ctx *ctx)
{
    if (!ctx->set_cookie || !ctx->storage_allowed)
        return;
    char *v = ap_arena_alloc(ar(x), 160);
    if (!v)
        return;
    int n = snprintf(v, 160, "ap_uid=%s; Max-Age=31536000; Path=/%s", ctx->user_key,
                     G.https ? "; SameSite=None; Secure" : "; SameSite=Lax");
    ap_http_add_header(x, "Set-Cookie", ap_span_make(v, (size_t)n));
}

static size_t response_cap(const struct ap_serve_snapshot *s, const struct ap_serve_pick *picks,
                           const int *np, int nslots)
{
    size_t cap = 1024;
    for (int i = 0; i < nslots; i++) {
        cap += 256;
        for (int k = 0; k < np[i]; k++) {
            const struct ap_serve_creative *cr = picks[i * AP_SERVE_MAX_COUNT + k].creative;
            cap += 3 * (URL_MAX + AP_TOKEN_MAX_TEXT + 64) + 512 +
                   6 * ((size_t)cr->html.len + cr->vast.len + cr->url.len + URL_MAX) +
                   cr->native.len;
        }
    }
    (void)s;
    return cap;
}

static int decide_locked(struct ap_http_exchange *x, const struct ap_serve_ctx *ctx,
                         const struct dreq *r, struct ap_serve_pick **picks_out, int *np,
                         const struct ap_serve_snapshot **snap)
{
    const struct ap_serve_snapshot *s = rcu_dereference(G.snap);
    *snap = s;
    if (!s)
        return AP_EAGAIN;
    struct ap_serve_pick *picks =
        ap_arena_alloc(ar(x), sizeof(*picks) * AP_SERVE_MAX_COUNT * (size_t)r->nslots);
    if (!picks)
        return AP_ENOMEM;
    *picks_out = picks;
    struct ap_serve_decide_opts opt = {.exclusive_advertisers = r->exclusive};
    struct worker_state *w = &G.workers[x->worker_id % AP_SERVE_MAX_WORKERS];
    return ap_serve_decide(s, G.delivery, &w->rng, ctx, r->slots, r->nslots, &opt, ar(x), picks,
                           np);
}

static int respond_decide_error(struct ap_http_exchange *x, int rc)
{
    if (rc == AP_ENOTFOUND)
        return serve_error(x, 400, "unknown_placement", "unknown or inactive placement");
    if (rc == AP_EAGAIN) {
        ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("1"));
        return serve_error(x, 503, "not_ready", "serving snapshot not built yet");
    }
    return serve_error(x, 500, "internal", "decision failed");
}

static int h_decision(struct ap_http_exchange *x)
{
    cors_headers(x); /* on every answer, errors included */
    if (!G.started)
        return serve_error(x, 503, "not_ready", "serving is not started");
    ar_begin(x);
    struct dreq *r = ap_arena_calloc(ar(x), 1, sizeof(*r));
    struct ap_serve_ctx *ctx = ap_arena_alloc(ar(x), sizeof(*ctx));
    if (!r || !ctx)
        return serve_error(x, 500, "internal", "out of memory");
    struct jr j = {x->req.body.p, x->req.body.p + x->req.body.len, ar(x), 0, false};
    if (!parse_decision(&j, r))
        return serve_error(x, 400, r->error ? "invalid_request" : "invalid_json",
                           r->error ? r->error : "request body is not valid JSON");
    resolve_ctx(x, r, ctx);
    rcu_reader();
    urcu_memb_read_lock();
    const struct ap_serve_snapshot *s;
    struct ap_serve_pick *picks = NULL;
    int np[AP_SERVE_MAX_PLACEMENTS] = {0};
    int rc = decide_locked(x, ctx, r, &picks, np, &s);
    if (rc) {
        urcu_memb_read_unlock();
        return respond_decide_error(x, rc);
    }
    struct wb w = {NULL, 0, response_cap(s, picks, np, r->nslots), false};
    w.p = ap_arena_alloc(ar(x), w.cap);
    struct urls *u = ap_arena_alloc(ar(x), sizeof(*u));
    if (!w.p || !u) {
        urcu_memb_read_unlock();
        return serve_error(x, 500, "internal", "out of memory");
    }
    w_lit(&w, "{\"user\":{\"key\":");
    if (ctx->user_key[0]) {
        w_lit(&w, "\"");
        w_json(&w, ap_span_cstr(ctx->user_key));
        w_lit(&w, "\"");
    } else {
        w_lit(&w, "null");
    }
    w_lit(&w, "},\"decisions\":{");
    for (int i = 0; i < r->nslots; i++) {
        if (i)
            w_lit(&w, ",");
        w_lit(&w, "\"");
        w_json(&w, r->divs[i]);
        w_lit(&w, "\":");
        if (np[i] == 0) {
            w_lit(&w, "null");
            continue;
        }
        w_lit(&w, "[");
        for (int k = 0; k < np[i]; k++) {
            const struct ap_serve_pick *pk = &picks[i * AP_SERVE_MAX_COUNT + k];
            if (make_urls(pk, ctx, x->worker_id, u) != AP_OK)
                w.overflow = true;
            else
                log_decision(x, pk, ctx);
            if (k)
                w_lit(&w, ",");
            w_lit(&w, "{\"ad_id\":");
            w_i64(&w, pk->ad->id);
            w_lit(&w, ",\"campaign_id\":");
            w_i64(&w, pk->campaign->id);
            w_lit(&w, ",\"advertiser_id\":");
            w_i64(&w, pk->campaign->advertiser_id);
            w_lit(&w, ",\"creative_id\":");
            w_i64(&w, pk->creative->id);
            w_lit(&w, ",\"placement_id\":");
            w_i64(&w, pk->placement->id);
            w_lit(&w, ",\"creative\":");
            w_creative(&w, s, pk->creative);
            w_lit(&w, ",\"impression_url\":\"");
            w_url(&w, u->imp);
            w_lit(&w, "\",\"view_url\":\"");
            w_url(&w, u->view);
            w_lit(&w, "\",\"click_url\":\"");
            w_url(&w, u->click);
            w_lit(&w, "\"}");
        }
        w_lit(&w, "]");
    }
    w_lit(&w, "}}");
    urcu_memb_read_unlock();
    if (w.overflow)
        return serve_error(x, 500, "internal", "response too large");
    set_cookie(x, ctx);
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    return ap_http_respond(x, 200, "application/json", w.p, w.len);
}

/* ---- GET /v1/ad ----------------------------------------------------------------------------- */

static int unhex(char c)
{
    return hexval(c);
}

/* Percent-decodes s into the arena. */
static struct ap_span qdecode(struct ap_arena *a, struct ap_span s)
{
    char *out = ap_arena_alloc(a, s.len + 1);
    if (!out)
        return AP_SPAN_NULL;
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] == '+') {
            out[n++] = ' ';
        } else if (s.p[i] == '%' && i + 2 < s.len + 0 && unhex(s.p[i + 1]) >= 0 &&
                   unhex(s.p[i + 2]) >= 0) {
            out[n++] = (char)(unhex(s.p[i + 1]) << 4 | unhex(s.p[i + 2]));
            i += 2;
        } else {
            out[n++] = s.p[i];
        }
    }
    out[n] = '\0';
    return ap_span_make(out, n);
}

static bool parse_ad_query(struct ap_http_exchange *x, struct dreq *r)
{
    struct ap_span q = x->req.query;
    size_t i = 0;
    r->nslots = 1;
    r->slots[0].count = 1;
    while (i < q.len) {
        size_t s = i;
        while (i < q.len && q.p[i] != '&')
            i++;
        struct ap_span item = ap_span_make(q.p + s, i - s);
        i++;
        const char *eq = memchr(item.p, '=', item.len);
        struct ap_span k = eq ? ap_span_make(item.p, (size_t)(eq - item.p)) : item;
        struct ap_span v =
            eq ? qdecode(ar(x), ap_span_make(eq + 1, item.len - k.len - 1)) : AP_SPAN_NULL;
        uint64_t n;
        if (ap_span_eq_cstr(k, "placement")) {
            if (!ap_span_to_u64(v, INT64_MAX, &n) || n == 0) {
                r->error = "placement must be a positive integer";
                return false;
            }
            r->slots[0].placement_id = (int64_t)n;
        } else if (ap_span_eq_cstr(k, "kw") || ap_span_eq_cstr(k, "keywords")) {
            size_t a = 0;
            while (a <= v.len) {
                size_t b = a;
                while (b < v.len && v.p[b] != ',')
                    b++;
                if (b > a && b - a <= 64 && r->nkeywords < AP_SERVE_CTX_MAX_KEYWORDS)
                    r->keywords[r->nkeywords++] = ap_span_make(v.p + a, b - a);
                a = b + 1;
            }
        } else if (ap_span_eq_cstr(k, "url")) {
            r->url = v;
        } else if (ap_span_eq_cstr(k, "ref") || ap_span_eq_cstr(k, "referrer")) {
            r->referrer = v;
        } else if (ap_span_eq_cstr(k, "user")) {
            r->user_key = v;
        } else if (ap_span_eq_cstr(k, "gdpr")) {
            r->gdpr = ap_span_eq_cstr(v, "1") || ap_span_eq_cstr(v, "true");
        } else if (ap_span_eq_cstr(k, "gdpr_consent")) {
            r->tcf = v;
        } else if (ap_span_eq_cstr(k, "us_privacy")) {
            r->usp = v;
        }
    }
    if (!r->slots[0].placement_id) {
        r->error = "placement is required";
        return false;
    }
    return true;
}

static int h_ad(struct ap_http_exchange *x)
{
    if (!G.started)
        return serve_error(x, 503, "not_ready", "serving is not started");
    ar_begin(x);
    struct dreq *r = ap_arena_calloc(ar(x), 1, sizeof(*r));
    struct ap_serve_ctx *ctx = ap_arena_alloc(ar(x), sizeof(*ctx));
    if (!r || !ctx)
        return serve_error(x, 500, "internal", "out of memory");
    if (!parse_ad_query(x, r))
        return serve_error(x, 400, "invalid_request", r->error);
    resolve_ctx(x, r, ctx);
    rcu_reader();
    urcu_memb_read_lock();
    const struct ap_serve_snapshot *s;
    struct ap_serve_pick *picks = NULL;
    int np[1] = {0};
    int rc = decide_locked(x, ctx, r, &picks, np, &s);
    if (rc) {
        urcu_memb_read_unlock();
        return respond_decide_error(x, rc);
    }
    struct wb w = {NULL, 0, response_cap(s, picks, np, 1) + 1024, false};
    w.p = ap_arena_alloc(ar(x), w.cap);
    struct urls *u = ap_arena_alloc(ar(x), sizeof(*u));
    if (!w.p || !u) {
        urcu_memb_read_unlock();
        return serve_error(x, 500, "internal", "out of memory");
    }
    w_lit(&w, "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" "
              "content=\"noindex\"><style>html,body{margin:0;padding:0;overflow:hidden;"
              "background:transparent}img{display:block;border:0}</style></head><body>");
    if (np[0] > 0) {
        const struct ap_serve_pick *pk = &picks[0];
        const struct ap_serve_creative *cr = pk->creative;
        if (make_urls(pk, ctx, x->worker_id, u) != AP_OK)
            w.overflow = true;
        else
            log_decision(x, pk, ctx);
        if (cr->type == AP_SERVE_IMAGE) {
            w_lit(&w, "<a href=\"");
            w_html(&w, ap_span_cstr(u->click));
            w_lit(&w, "\" target=\"_blank\" rel=\"noopener\"><img src=\"");
            w_html(&w, ap_span_cstr(G.public_url));
            w_html(&w, ap__serve_str(s, cr->url));
            w_lit(&w, "\" width=\"");
            w_i64(&w, cr->width);
            w_lit(&w, "\" height=\"");
            w_i64(&w, cr->height);
            w_lit(&w, "\" alt=\"\"></a>");
        } else if (cr->type == AP_SERVE_HTML) {
            /* the advertiser's markup as is: the publisher frames it in a sandboxed iframe */
            w_raw(&w, s->strings + cr->html.off, cr->html.len);
        } else {
            w_lit(&w, "<!-- creative type not renderable in an iframe -->");
        }
        w_lit(&w, "<img src=\"");
        w_html(&w, ap_span_cstr(u->imp));
        w_lit(&w, "\" width=\"1\" height=\"1\" alt=\"\" style=\"position:absolute;left:-9999px\">");
    }
    w_lit(&w, "</body></html>");
    urcu_memb_read_unlock();
    if (w.overflow)
        return serve_error(x, 500, "internal", "response too large");
    set_cookie(x, ctx);
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    ap_http_add_header(x, "X-AP-Fill", np[0] ? AP_SPAN_LIT("1") : AP_SPAN_LIT("0"));
    return ap_http_respond(x, 200, "text/html; charset=utf-8", w.p, w.len);
}

int ap_serve_partner_imp_url(int worker, int64_t partner_id, int64_t placement_id,
                             int64_t publisher_id, int64_t price_micros, uint8_t flags,
                             uint8_t imp_id[16], char *out, size_t cap)
{
    if (!G.started || !G.public_url_len)
        return AP_EAGAIN;
    if (partner_id <= 0 || worker < 0)
        return AP_EINVAL;
    struct ap_token t;
    memset(&t, 0, sizeof(t));
    new_id(worker, t.imp_id);
    t.type = AP_TOKEN_IMP;
    t.flags = flags;
    t.placement_id = placement_id;
    t.publisher_id = publisher_id;
    t.price_micros = price_micros;
    t.partner_id = partner_id;
    t.issued_at = ap_time_unix();
    char tok[AP_TOKEN_MAX_TEXT];
    int n = ap_token_sign(&ap_token_ring_get()->sign, &t, tok, sizeof(tok));
    if (n < 0)
        return n;
    int len = snprintf(out, cap, "%s/v1/e/imp?t=%s", G.public_url, tok);
    if (len < 0 || (size_t)len >= cap)
        return AP_ELIMIT;
    memcpy(imp_id, t.imp_id, AP_TOKEN_ID_BYTES);
    return len;
}

int ap_serve_landing_url(int64_t ad_id, char *out, size_t cap)
{
    if (!G.started || cap == 0)
        return AP_ENOTFOUND;
    rcu_reader();
    urcu_memb_read_lock();
    const struct ap_serve_snapshot *s = rcu_dereference(G.snap);
    const struct ap_serve_ad *ad = s ? ap__serve_ad_find(s, ad_id) : NULL;
    int rc = AP_ENOTFOUND;
    if (ad && ad->landing.len) {
        rc = ad->landing.len < cap ? AP_OK : AP_ELIMIT;
        if (rc == AP_OK) {
            memcpy(out, s->strings + ad->landing.off, ad->landing.len);
            out[ad->landing.len] = '\0';
        }
    }
    urcu_memb_read_unlock();
    return rc;
}

void ap_serve_record_click(int64_t campaign_id)
{
    if (G.started)
        ap_serve_delivery_add_click(G.delivery, NULL, campaign_id);
}

int ap_serve_register(struct ap_router *r)
{
    int rc = ap_router_add(r, AP_M(POST), "/v1/decision", h_decision, NULL, "decision");
    if (rc == AP_OK)
        rc = ap_router_add(r, AP_M(OPTIONS), "/v1/decision", h_decision_preflight, NULL,
                           "decision_preflight");
    if (rc == AP_OK)
        rc = ap_router_add(r, AP_M(GET), "/v1/ad", h_ad, NULL, "ad");
    return rc;
}

/* ---- OpenRTB: our campaigns as a bidder (src/rtb) -------------------------------------------- */

static bool rtb_size_ok(const struct ap_serve_rtb_imp *im, const struct ap_serve_creative *cr)
{
    if (im->nsizes == 0)
        return true;
    for (int k = 0; k < im->nsizes; k++)
        if (cr->width == im->w[k] && cr->height == im->h[k])
            return true;
    return false;
}

static int32_t rtb_local_day(const struct ap_serve_snapshot *s, const struct ap_serve_campaign *c,
                             int64_t now)
{
    int64_t local = now + ap__serve_zone_offset(&s->zones[s->advertisers[c->advertiser].tz], now);
    return (int32_t)(local >= 0 ? local / 86400 : (local - 86399) / 86400);
}

static int rtb_markup(const struct ap_serve_snapshot *s, const struct ap_serve_pick *pk,
                      const struct urls *u, struct ap_arena *a, struct ap_serve_rtb_bid *b)
{
    const struct ap_serve_creative *cr = pk->creative;
    struct wb w = {NULL, 0, 3 * sizeof(u->imp) + 6 * (size_t)cr->html.len + 2 * URL_MAX + 512,
                   false};
    w.p = ap_arena_alloc(a, w.cap);
    if (!w.p)
        return AP_ENOMEM;
    if (cr->type == AP_SERVE_IMAGE) {
        w_lit(&w, "<a href=\"");
        w_html(&w, ap_span_cstr(u->click));
        w_lit(&w, "\" target=\"_blank\" rel=\"noopener\"><img src=\"");
        w_html(&w, ap_span_cstr(G.public_url));
        w_html(&w, ap__serve_str(s, cr->url));
        w_lit(&w, "\" width=\"");
        w_i64(&w, cr->width);
        w_lit(&w, "\" height=\"");
        w_i64(&w, cr->height);
        w_lit(&w, "\" alt=\"\" style=\"display:block;border:0\"></a>");
    } else {
        w_raw(&w, s->strings + cr->html.off, cr->html.len);
    }
    w_lit(&w, "<img src=\"");
    w_html(&w, ap_span_cstr(u->imp));
    w_lit(&w, "\" width=\"1\" height=\"1\" alt=\"\" style=\"position:absolute;left:-9999px\">");
    if (w.overflow)
        return AP_ELIMIT;
    b->adm = ap_span_make(w.p, w.len);
    char *iu = ap_arena_strndup(a, u->imp, strlen(u->imp));
    char *cu = ap_arena_strndup(a, u->click, strlen(u->click));
    if (!iu || !cu)
        return AP_ENOMEM;
    b->imp_url = ap_span_cstr(iu);
    b->click_url = ap_span_cstr(cu);
    char host[AP_SERVE_CTX_DOMAIN_MAX];
    url_host(ap__serve_str(s, pk->ad->landing), host, sizeof(host));
    char *h = ap_arena_strndup(a, host, strlen(host));
    if (!h)
        return AP_ENOMEM;
    b->adomain = ap_span_cstr(h);
    return AP_OK;
}

int ap_serve_rtb_decide(struct ap_http_exchange *x, const struct ap_serve_rtb_in *in,
                        const struct ap_serve_rtb_imp *imps, int n, struct ap_arena *arena,
                        struct ap_serve_rtb_bid *out)
{
    for (int i = 0; i < n; i++)
        memset(&out[i], 0, sizeof(out[i]));
    if (!G.started)
        return AP_EAGAIN;
    struct dreq *r = ap_arena_calloc(arena, 1, sizeof(*r));
    struct ap_serve_ctx *ctx = ap_arena_alloc(arena, sizeof(*ctx));
    struct ap_serve_pick *picks = ap_arena_alloc(arena, sizeof(*picks) * AP_SERVE_MAX_COUNT);
    struct urls *u = ap_arena_alloc(arena, sizeof(*u));
    if (!r || !ctx || !picks || !u)
        return AP_ENOMEM;
    r->ip = in->ip;
    r->ua = in->ua;
    r->url = in->page_url;
    r->referrer = in->referrer;
    r->tcf = in->tcf;
    r->gdpr = in->gdpr;
    r->user_key = in->no_personal ? AP_SPAN_NULL : in->user_key;
    resolve_ctx(x, r, ctx);
    if (in->no_personal) {
        ctx->user_key[0] = '\0';
        ctx->storage_allowed = ctx->personalisation_allowed = false;
        ctx->nsegments = 0;
    }
    struct worker_state *ws = &G.workers[x->worker_id % AP_SERVE_MAX_WORKERS];
    uint64_t user_hash = 0;
    if (ctx->user_key[0] && ctx->storage_allowed)
        user_hash = ap__serve_user_hash(G.delivery, ap_span_cstr(ctx->user_key));
    rcu_reader();
    urcu_memb_read_lock();
    const struct ap_serve_snapshot *s = rcu_dereference(G.snap);
    int rc = s ? AP_OK : AP_EAGAIN;
    struct ap_serve_decide_opts opt = {.exclusive_advertisers = false, .dry_run = true};
    for (int i = 0; i < n && rc == AP_OK; i++) {
        struct ap_serve_slot_req slot = {imps[i].placement_id, AP_SERVE_MAX_COUNT};
        int np = 0;
        int drc = ap_serve_decide(s, G.delivery, &ws->rng, ctx, &slot, 1, &opt, arena, picks, &np);
        if (drc == AP_ENOTFOUND)
            continue;
        if (drc) {
            rc = drc;
            break;
        }
        for (int k = 0; k < np; k++) {
            const struct ap_serve_pick *pk = &picks[k];
            const struct ap_serve_creative *cr = pk->creative;
            if (cr->type != AP_SERVE_IMAGE && cr->type != AP_SERVE_HTML)
                continue; /* banner markup only */
            if (!rtb_size_ok(&imps[i], cr) || pk->price_micros < imps[i].floor_micros)
                continue;
            if (!ap__serve_pacing_pass(G.delivery, pk->campaign,
                                       rtb_local_day(s, pk->campaign, ctx->now),
                                       ap_serve_rng_next(&ws->rng)))
                continue;
            if (make_urls(pk, ctx, x->worker_id, u) != AP_OK) {
                rc = AP_ELIMIT;
                break;
            }
            struct ap_serve_rtb_bid *b = &out[i];
            b->ad_id = pk->ad->id;
            b->campaign_id = pk->campaign->id;
            b->advertiser_id = pk->campaign->advertiser_id;
            b->creative_id = cr->id;
            b->placement_id = pk->placement->id;
            b->publisher_id = pk->placement->publisher_id;
            b->price_micros = pk->price_micros;
            b->w = cr->width;
            b->h = cr->height;
            b->user_hash = user_hash;
            rc = rtb_markup(s, pk, u, arena, b);
            b->ok = rc == AP_OK;
            break;
        }
    }
    urcu_memb_read_unlock();
    return rc;
}

void ap_serve_rtb_commit(const struct ap_serve_rtb_bid *b)
{
    if (!G.started || !b->ok)
        return;
    rcu_reader();
    urcu_memb_read_lock();
    const struct ap_serve_snapshot *s = rcu_dereference(G.snap);
    const struct ap_serve_ad *ad = s ? ap__serve_ad_find(s, b->ad_id) : NULL;
    if (ad) {
        const struct ap_serve_campaign *c = &s->campaigns[ad->campaign];
        int64_t now = ap_time_unix();
        if (b->user_hash && c->ncaps)
            (void)ap__serve_fcap_take(G.delivery, s, ad, b->user_hash, now);
        ap__serve_count_serve(G.delivery, c, rtb_local_day(s, c, now));
    }
    urcu_memb_read_unlock();
}
