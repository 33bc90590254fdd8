/*
 * ap_geo: libmaxminddb lookups, and the "auto" setting's tor-geoipdb conversion.
 */
#include "ap_geo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_thread.h"
#include "ap_geo_mmdb.h"

const char *const AP_GEO_DEFAULT_PATHS[] = {
    "/usr/share/GeoIP/GeoLite2-City.mmdb",
    "/var/lib/GeoIP/GeoLite2-City.mmdb",
    "/usr/share/GeoIP/dbip-city-lite.mmdb",
    "/usr/share/GeoIP/GeoLite2-Country.mmdb",
    "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/dbip-country-lite.mmdb",
    NULL,
};

enum { GEO_LOADING = 0, GEO_READY = 1, GEO_FAILED = 2 };

#define SOURCE_MAX 2100

struct ap_geo {
    _Atomic int state; /* GEO_*: written once by the loader (release), read by lookups */
    _Atomic int error; /* the loader's error code when FAILED */
    MMDB_s db;         /* valid when READY */
    bool thread_started;
    pthread_t thread;
    char tor4[1024], tor6[1024]; /* inputs of the conversion ("" = none) */
    char source[SOURCE_MAX];
};

/* ---- opening ------------------------------------------------------------------------------ */

static int mmdb_error(int status)
{
    switch (status) {
    case MMDB_FILE_OPEN_ERROR:
        return AP_ENOTFOUND;
    case MMDB_IO_ERROR:
        return AP_EIO;
    case MMDB_OUT_OF_MEMORY_ERROR:
        return AP_ENOMEM;
    default:
        return AP_ECORRUPT;
    }
}

struct ap_geo *ap_geo_open(const char *path, int *err)
{
    struct ap_geo *g = calloc(1, sizeof(*g));
    int e = AP_ENOMEM;
    if (!g)
        goto fail;
    int status = MMDB_open(path, MMDB_MODE_MMAP, &g->db);
    if (status != MMDB_SUCCESS) {
        e = mmdb_error(status);
        ap_log_warn("geo: cannot open %s: %s", path, MMDB_strerror(status));
        goto fail;
    }
    snprintf(g->source, sizeof(g->source), "%s", path);
    atomic_store_explicit(&g->state, GEO_READY, memory_order_release);
    return g;
fail:
    free(g);
    if (err)
        *err = e;
    return NULL;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Builds the database from tor's files into an anonymous memory file and maps it. */
static int convert_tor(struct ap_geo *g, size_t *ranges)
{
    struct ap_geo_mmdb *w = NULL;
    size_t n4 = 0, n6 = 0;
    int fd = -1;
    int rc = ap_geo_mmdb_new(&w);
    if (rc)
        goto done;
    if (g->tor4[0] && (rc = ap_geo_mmdb_load_tor(w, g->tor4, &n4)))
        goto done;
    if (g->tor6[0] && (rc = ap_geo_mmdb_load_tor(w, g->tor6, &n6)))
        goto done;
    fd = memfd_create("adplatform-geoip", MFD_CLOEXEC);
    if (fd < 0) {
        rc = ap_error_from_errno(errno);
        goto done;
    }
    if ((rc = ap_geo_mmdb_write_fd(w, fd, "AdPlatform-TorGeoIP-Country",
                                   "Country data of Debian's tor-geoipdb (IPFire Location)")))
        goto done;
    ap_geo_mmdb_free(w);
    w = NULL;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int status = MMDB_open(path, MMDB_MODE_MMAP, &g->db); /* the mapping outlives the fd */
    if (status != MMDB_SUCCESS) {
        ap_log_warn("geo: cannot map the converted database: %s", MMDB_strerror(status));
        rc = mmdb_error(status);
    }
done:
    if (fd >= 0)
        close(fd);
    ap_geo_mmdb_free(w);
    *ranges = n4 + n6;
    return rc;
}

static void *loader_main(void *arg)
{
    struct ap_geo *g = arg;
    size_t ranges = 0;
    ap_log_set_thread_name("geo-loader");
    ap_thread_background();
    double t0 = mono_ms();
    int rc = convert_tor(g, &ranges);
    if (rc == AP_OK) {
        atomic_store_explicit(&g->state, GEO_READY, memory_order_release);
        ap_log_info("geo: country database ready from %s (%zu ranges, %.0f ms)", g->source, ranges,
                    mono_ms() - t0);
    } else {
        atomic_store_explicit(&g->error, rc, memory_order_relaxed);
        atomic_store_explicit(&g->state, GEO_FAILED, memory_order_release);
        ap_log_warn("geo: cannot convert %s: %s; serving without geo", g->source, ap_strerror(rc));
    }
    return NULL;
}

struct ap_geo *ap_geo_open_tor(const char *ipv4_path, const char *ipv6_path, int *err)
{
    bool r4 = ipv4_path && access(ipv4_path, R_OK) == 0;
    bool r6 = ipv6_path && access(ipv6_path, R_OK) == 0;
    struct ap_geo *g;
    if (!r4 && !r6) {
        if (err)
            *err = AP_ENOTFOUND;
        return NULL;
    }
    if (!(g = calloc(1, sizeof(*g)))) {
        if (err)
            *err = AP_ENOMEM;
        return NULL;
    }
    snprintf(g->tor4, sizeof(g->tor4), "%s", r4 ? ipv4_path : "");
    snprintf(g->tor6, sizeof(g->tor6), "%s", r6 ? ipv6_path : "");
    snprintf(g->source, sizeof(g->source), "tor-geoipdb (%s%s%s)", g->tor4, r4 && r6 ? ", " : "",
             g->tor6);
    /* The loader must not take the process's signals (the main thread reads them from a
     * signalfd), whoever calls this and whatever its mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&g->thread, NULL, loader_main, g);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(g);
        if (err)
            *err = ap_error_from_errno(rc);
        return NULL;
    }
    g->thread_started = true;
    return g;
}

struct ap_geo *ap_geo_open_setting(const char *setting)
{
    int err = AP_OK;
    if (!setting || !*setting || !strcmp(setting, AP_GEO_SETTING_NONE)) {
        ap_log_info("geo: disabled (--geoip-db none)");
        return NULL;
    }
    if (strcmp(setting, AP_GEO_SETTING_AUTO) != 0) {
        struct ap_geo *g = ap_geo_open(setting, &err);
        if (!g)
            ap_log_warn("geo: --geoip-db %s is unusable (%s); serving without geo", setting,
                        ap_strerror(err));
        else
            ap_log_info("geo: using %s", setting);
        return g;
    }
    for (size_t i = 0; AP_GEO_DEFAULT_PATHS[i]; i++) {
        if (access(AP_GEO_DEFAULT_PATHS[i], R_OK) != 0)
            continue;
        struct ap_geo *g = ap_geo_open(AP_GEO_DEFAULT_PATHS[i], &err);
        if (g) {
            ap_log_info("geo: using %s", AP_GEO_DEFAULT_PATHS[i]);
            return g;
        }
    }
    struct ap_geo *g = ap_geo_open_tor(AP_GEO_TOR_IPV4, AP_GEO_TOR_IPV6, &err);
    if (g) {
        ap_log_info("geo: no .mmdb database installed; converting %s in the background", g->source);
        return g;
    }
    ap_log_warn("geo: no geo database found (install tor-geoipdb with scripts/setup.sh, or "
                "pass --geoip-db FILE.mmdb); serving without geo");
    return NULL;
}

void ap_geo_close(struct ap_geo *g)
{
    if (!g)
        return;
    if (g->thread_started)
        pthread_join(g->thread, NULL);
    if (atomic_load_explicit(&g->state, memory_order_acquire) == GEO_READY)
        MMDB_close(&g->db);
    free(g);
}

bool ap_geo_ready(const struct ap_geo *g)
{
    return g &&
           atomic_load_explicit(&((struct ap_geo *)g)->state, memory_order_acquire) == GEO_READY;
}

int ap_geo_wait(const struct ap_geo *g, int timeout_ms)
{
    if (!g)
        return AP_EINVAL;
    struct ap_geo *m = (struct ap_geo *)g;
    double end = mono_ms() + timeout_ms;
    for (;;) {
        int st = atomic_load_explicit(&m->state, memory_order_acquire);
        if (st == GEO_READY)
            return AP_OK;
        if (st == GEO_FAILED)
            return atomic_load_explicit(&m->error, memory_order_relaxed);
        if (mono_ms() >= end)
            return AP_ETIMEDOUT;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

const char *ap_geo_source(const struct ap_geo *g)
{
    return g ? g->source : "none";
}

/* ---- lookups ------------------------------------------------------------------------------ */

/* Copies a UTF-8 string of n bytes into out[cap], cut at a character boundary. */
static void copy_utf8(char *out, size_t cap, const char *s, size_t n)
{
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] is a continuation byte: the character starting before it is cut */
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

static bool get_string(MMDB_entry_s *entry, MMDB_entry_data_s *d, const char *const *path)
{
    return MMDB_aget_value(entry, d, path) == MMDB_SUCCESS && d->has_data &&
           d->type == MMDB_DATA_TYPE_UTF8_STRING;
}

static bool is_alnum_upper(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int ap_geo_lookup(const struct ap_geo *g, const char *ip, struct ap_serve_ctx *ctx)
{
    ctx->country[0] = ctx->region[0] = ctx->city[0] = '\0';
    if (!g || atomic_load_explicit(&((struct ap_geo *)g)->state, memory_order_acquire) != GEO_READY)
        return AP_ENOTFOUND;
    if (!ip || !*ip)
        return AP_EINVAL;

    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    memset(&addr, 0, sizeof(addr));
    if (inet_pton(AF_INET, ip, &addr.in4.sin_addr) == 1) {
        addr.in4.sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, ip, &addr.in6.sin6_addr) == 1) {
        addr.in6.sin6_family = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED(&addr.in6.sin6_addr)) { /* ::ffff:a.b.c.d from a dual socket */
            struct in_addr v4;
            memcpy(&v4, &addr.in6.sin6_addr.s6_addr[12], 4);
            memset(&addr, 0, sizeof(addr));
            addr.in4.sin_family = AF_INET;
            addr.in4.sin_addr = v4;
        }
    } else {
        return AP_EINVAL;
    }

    int mmdb_err = MMDB_SUCCESS;
    MMDB_lookup_result_s res = MMDB_lookup_sockaddr(&g->db, &addr.sa, &mmdb_err);
    if (mmdb_err != MMDB_SUCCESS || !res.found_entry)
        return AP_ENOTFOUND; /* also: an IPv6 address in an IPv4-only database */

    MMDB_entry_data_s d;
    static const char *const P_COUNTRY[] = {"country", "iso_code", NULL};
    static const char *const P_REG_COUNTRY[] = {"registered_country", "iso_code", NULL};
    static const char *const P_SUB[] = {"subdivisions", "0", "iso_code", NULL};
    static const char *const P_CITY[] = {"city", "names", "en", NULL};
    if ((get_string(&res.entry, &d, P_COUNTRY) || get_string(&res.entry, &d, P_REG_COUNTRY)) &&
        d.data_size == 2 && d.utf8_string[0] >= 'A' && d.utf8_string[0] <= 'Z' &&
        d.utf8_string[1] >= 'A' && d.utf8_string[1] <= 'Z') {
        memcpy(ctx->country, d.utf8_string, 2);
        ctx->country[2] = '\0';
    }
    /* ISO 3166-2 = country + '-' + 1..3 letters/digits */
    if (ctx->country[0] && get_string(&res.entry, &d, P_SUB) && d.data_size >= 1 &&
        d.data_size <= 3) {
        bool ok = true;
        for (uint32_t i = 0; i < d.data_size; i++)
            ok = ok && is_alnum_upper(d.utf8_string[i]);
        if (ok) {
            memcpy(ctx->region, ctx->country, 2);
            ctx->region[2] = '-';
            memcpy(ctx->region + 3, d.utf8_string, d.data_size);
            ctx->region[3 + d.data_size] = '\0';
        }
    }
    if (get_string(&res.entry, &d, P_CITY) && d.data_size > 0)
        copy_utf8(ctx->city, sizeof(ctx->city), d.utf8_string, d.data_size);
    return ctx->country[0] || ctx->city[0] ? AP_OK : AP_ENOTFOUND;
}
