/*
 * Geo: the tests build their own tiny MaxMind DB files (ap_geo_mmdb, a writer of the public
 * format) and read them back through libmaxminddb with ap_geo_lookup: countries, ISO 3166-2
 * regions, cities (UTF-8, cut at a character boundary), IPv4, IPv6 and IPv4-mapped addresses,
 * longest-prefix wins, ranges, misses, bad input, 24- and 28-bit records, the tor-geoipdb
 * conversion ("auto"), concurrent lookups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <maxminddb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "core/ap_log.h"
#include "serve/ap_geo.h"
#include "serve/ap_geo_mmdb.h"

static char dir[] = "/tmp/test_ap_geo_XXXXXX";
static char city_db[256];

static const struct ap_geo_mmdb_place NYC = {"US", "United States", "NY", "New York", "New York"};
static const struct ap_geo_mmdb_place BERLIN = {"DE", "Germany", "BE", "Berlin", "Berlin"};
static const struct ap_geo_mmdb_place HAMBURG = {"DE", "Germany", "HH", "Hamburg", "Hamburg"};
static const struct ap_geo_mmdb_place FRANCE = {"FR", "France", NULL, NULL, NULL};
static const struct ap_geo_mmdb_place LONDON = {"GB", NULL, "ENG", "England", "London"};
static const struct ap_geo_mmdb_place SAO_PAULO = {"BR", "Brazil", "SP", NULL, "S\xc3\xa3o Paulo"};
static const struct ap_geo_mmdb_place BAD_REGION = {"u5", NULL, "toolong", NULL, NULL};

static int group_setup(void **state)
{
    (void)state;
    ap_log_set_level_name("error");
    if (!mkdtemp(dir))
        return -1;
    snprintf(city_db, sizeof(city_db), "%s/city.mmdb", dir);
    struct ap_geo_mmdb *w;
    if (ap_geo_mmdb_new(&w))
        return -1;
    int rc = 0;
    /* less specific first: the /25 inside the /24 wins for its half */
    rc |= ap_geo_mmdb_insert_cidr(w, "203.0.113.0/24", &NYC);
    rc |= ap_geo_mmdb_insert_cidr(w, "198.51.100.0/24", &BERLIN);
    rc |= ap_geo_mmdb_insert_cidr(w, "198.51.100.128/25", &HAMBURG);
    rc |= ap_geo_mmdb_insert_cidr(w, "2001:db8::/32", &FRANCE);
    rc |= ap_geo_mmdb_insert_range(w, "192.0.2.1", "192.0.2.10", &LONDON);
    rc |= ap_geo_mmdb_insert_cidr(w, "100.64.0.7", &SAO_PAULO); /* one host */
    rc |= ap_geo_mmdb_insert_cidr(w, "2001:db9::/48", &BAD_REGION);
    if (rc || ap_geo_mmdb_places(w) != 7)
        return -1;
    rc = ap_geo_mmdb_write(w, city_db, "AdPlatform-Test-City", "unit test");
    ap_geo_mmdb_free(w);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct geo_case {
    const char *ip;
    int rc;
    const char *country, *region, *city;
};

static const struct geo_case CASES[] = {
    {"203.0.113.9", AP_OK, "US", "US-NY", "New York"},
    {"203.0.113.255", AP_OK, "US", "US-NY", "New York"},
    {"198.51.100.1", AP_OK, "DE", "DE-BE", "Berlin"},
    {"198.51.100.127", AP_OK, "DE", "DE-BE", "Berlin"},
    {"198.51.100.128", AP_OK, "DE", "DE-HH", "Hamburg"},
    {"198.51.100.255", AP_OK, "DE", "DE-HH", "Hamburg"},
    {"2001:db8::1", AP_OK, "FR", "", ""},
    {"2001:db8:ffff:ffff::1", AP_OK, "FR", "", ""},
    {"::ffff:203.0.113.7", AP_OK, "US", "US-NY", "New York"}, /* from a dual-stack socket */
    {"192.0.2.0", AP_ENOTFOUND, "", "", ""},                  /* just outside the range */
    {"192.0.2.1", AP_OK, "GB", "GB-ENG", "London"},
    {"192.0.2.10", AP_OK, "GB", "GB-ENG", "London"},
    {"192.0.2.11", AP_ENOTFOUND, "", "", ""},
    {"100.64.0.7", AP_OK, "BR", "BR-SP", "S\xc3\xa3o Paulo"},
    {"100.64.0.8", AP_ENOTFOUND, "", "", ""},
    {"2001:db9::5", AP_ENOTFOUND, "", "", ""}, /* junk codes are not passed on */
    {"10.0.0.1", AP_ENOTFOUND, "", "", ""},
    {"::1", AP_ENOTFOUND, "", "", ""},
    {"not-an-ip", AP_EINVAL, "", "", ""},
    {"203.0.113.9:80", AP_EINVAL, "", "", ""},
    {"", AP_EINVAL, "", "", ""},
};

static void check(const struct ap_geo *g, const struct geo_case *c)
{
    struct ap_serve_ctx ctx;
    memset(&ctx, 0x55, sizeof(ctx)); /* stale values must be overwritten */
    int rc = ap_geo_lookup(g, c->ip, &ctx);
    if (rc != c->rc || strcmp(ctx.country, c->country) || strcmp(ctx.region, c->region) ||
        strcmp(ctx.city, c->city))
        print_error("%s: rc %d %s/%s/%s, want %d %s/%s/%s\n", c->ip, rc, ctx.country, ctx.region,
                    ctx.city, c->rc, c->country, c->region, c->city);
    assert_int_equal(rc, c->rc);
    assert_string_equal(ctx.country, c->country);
    assert_string_equal(ctx.region, c->region);
    assert_string_equal(ctx.city, c->city);
}

static void test_lookups(void **state)
{
    (void)state;
    int err = 0;
    struct ap_geo *g = ap_geo_open(city_db, &err);
    assert_non_null(g);
    assert_true(ap_geo_ready(g));
    assert_int_equal(ap_geo_wait(g, 0), AP_OK);
    assert_string_equal(ap_geo_source(g), city_db);
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++)
        check(g, &CASES[i]);
    ap_geo_close(g);
}

static void test_open_failures(void **state)
{
    (void)state;
    int err = 0;
    char path[300];
    assert_null(ap_geo_open("/nonexistent/x.mmdb", &err));
    assert_int_equal(err, AP_ENOTFOUND);
    snprintf(path, sizeof(path), "%s/garbage.mmdb", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a MaxMind database\n", f);
    fclose(f);
    assert_null(ap_geo_open(path, &err));
    assert_int_equal(err, AP_ECORRUPT);
    assert_null(ap_geo_open_setting("none"));
    assert_null(ap_geo_open_setting(""));
    assert_null(ap_geo_open_setting(path));
    struct ap_geo *g = ap_geo_open_setting(city_db);
    assert_non_null(g);
    ap_geo_close(g);

    /* no database: every lookup is a miss with empty fields, never a crash */
    struct ap_serve_ctx ctx;
    memset(&ctx, 0x55, sizeof(ctx));
    assert_int_equal(ap_geo_lookup(NULL, "203.0.113.9", &ctx), AP_ENOTFOUND);
    assert_string_equal(ctx.country, "");
    assert_string_equal(ctx.city, "");
    ap_geo_close(NULL);
}

static void test_writer_errors(void **state)
{
    (void)state;
    struct ap_geo_mmdb *w;
    uint8_t addr[16] = {0};
    assert_int_equal(ap_geo_mmdb_new(&w), AP_OK);
    assert_int_equal(ap_geo_mmdb_insert(w, addr, 0, &NYC), AP_EINVAL);
    assert_int_equal(ap_geo_mmdb_insert(w, addr, 129, &NYC), AP_EINVAL);
    assert_int_equal(ap_geo_mmdb_insert_cidr(w, "1.2.3.0/33", &NYC), AP_EINVAL);
    assert_int_equal(ap_geo_mmdb_insert_cidr(w, "1.2.3.0/0", &NYC), AP_EINVAL);
    assert_int_equal(ap_geo_mmdb_insert_cidr(w, "1.2.3/24", &NYC), AP_EINVAL);
    assert_int_equal(ap_geo_mmdb_insert_range(w, "1.2.3.9", "1.2.3.1", &NYC), AP_EINVAL);
    assert_int_equal(ap_geo_mmdb_insert_range(w, "1.2.3.1", "::5", &NYC), AP_EINVAL);
    ap_geo_mmdb_free(w);
}

/* A city name longer than the context's buffer is cut at a UTF-8 character boundary. */
static void test_long_city(void **state)
{
    (void)state;
    char name[300], path[300];
    size_t n = 0;
    name[n++] = 'A';
    while (n + 2 < sizeof(name) - 1) { /* "A" then "é" (2 bytes) repeated */
        name[n++] = '\xc3';
        name[n++] = '\xa9';
    }
    name[n] = '\0';
    struct ap_geo_mmdb_place p = {"PT", NULL, NULL, NULL, name};
    struct ap_geo_mmdb *w;
    assert_int_equal(ap_geo_mmdb_new(&w), AP_OK);
    assert_int_equal(ap_geo_mmdb_insert_cidr(w, "5.5.5.0/24", &p), AP_OK);
    snprintf(path, sizeof(path), "%s/long.mmdb", dir);
    assert_int_equal(ap_geo_mmdb_write(w, path, "AdPlatform-Test", NULL), AP_OK);
    ap_geo_mmdb_free(w);
    int err;
    struct ap_geo *g = ap_geo_open(path, &err);
    assert_non_null(g);
    struct ap_serve_ctx ctx;
    assert_int_equal(ap_geo_lookup(g, "5.5.5.5", &ctx), AP_OK);
    size_t len = strlen(ctx.city);
    assert_true(len < AP_SERVE_CTX_CITY_MAX);
    assert_true(len >= AP_SERVE_CTX_CITY_MAX - 3);
    assert_true(len % 2 == 1); /* "A" + whole 2-byte characters */
    assert_int_equal(memcmp(ctx.city, name, len), 0);
    ap_geo_close(g);
}

/* A data section over 16 MiB needs 28-bit records. */
static void test_28_bit_records(void **state)
{
    (void)state;
    static char city[4001];
    char path[300], cidr[32], ip[32];
    struct ap_geo_mmdb *w;
    assert_int_equal(ap_geo_mmdb_new(&w), AP_OK);
    memset(city, 'x', sizeof(city) - 1);
    for (unsigned i = 0; i < 4300; i++) {
        snprintf(city, 12, "City%07u", i); /* distinct, so each is its own ~4 KB place */
        city[11] = 'x';
        struct ap_geo_mmdb_place p = {"CA", NULL, NULL, NULL, city};
        snprintf(cidr, sizeof(cidr), "10.%u.%u.0/24", i >> 8, i & 255);
        assert_int_equal(ap_geo_mmdb_insert_cidr(w, cidr, &p), AP_OK);
    }
    snprintf(path, sizeof(path), "%s/big.mmdb", dir);
    assert_int_equal(ap_geo_mmdb_write(w, path, "AdPlatform-Test-Big", NULL), AP_OK);
    ap_geo_mmdb_free(w);
    MMDB_s db;
    assert_int_equal(MMDB_open(path, MMDB_MODE_MMAP, &db), MMDB_SUCCESS);
    assert_int_equal(db.metadata.record_size, 28);
    MMDB_close(&db);
    int err;
    struct ap_geo *g = ap_geo_open(path, &err);
    assert_non_null(g);
    for (unsigned i = 0; i < 4300; i += 97) {
        struct ap_serve_ctx ctx;
        char want[16];
        snprintf(ip, sizeof(ip), "10.%u.%u.77", i >> 8, i & 255);
        snprintf(want, sizeof(want), "City%07u", i);
        assert_int_equal(ap_geo_lookup(g, ip, &ctx), AP_OK);
        assert_string_equal(ctx.country, "CA");
        assert_int_equal(strncmp(ctx.city, want, 11), 0);
    }
    ap_geo_close(g);
}

/* "auto" without an .mmdb: tor-geoipdb's format, converted on a background thread. */
static void test_tor_conversion(void **state)
{
    (void)state;
    char v4[300], v6[300];
    snprintf(v4, sizeof(v4), "%s/geoip", dir);
    snprintf(v6, sizeof(v6), "%s/geoip6", dir);
    FILE *f = fopen(v4, "w");
    assert_non_null(f);
    /* 1.0.0.0-1.0.0.255 AU, 3405803776 = 203.0.113.0 .. +255 US, 8.8.8.0-8.8.8.255 ??, */
    fputs("# comment\n16777216,16777471,AU\n3405803776,3405804031,US\n"
          "134744064,134744319,??\n",
          f);
    fclose(f);
    f = fopen(v6, "w");
    assert_non_null(f);
    fputs("# comment\n2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,SE\n", f);
    fclose(f);
    int err = 0;
    struct ap_geo *g = ap_geo_open_tor(v4, v6, &err);
    assert_non_null(g);
    assert_int_equal(ap_geo_wait(g, 10000), AP_OK);
    struct ap_serve_ctx ctx;
    assert_int_equal(ap_geo_lookup(g, "1.0.0.77", &ctx), AP_OK);
    assert_string_equal(ctx.country, "AU");
    assert_string_equal(ctx.city, "");
    assert_int_equal(ap_geo_lookup(g, "203.0.113.200", &ctx), AP_OK);
    assert_string_equal(ctx.country, "US");
    assert_int_equal(ap_geo_lookup(g, "2001:db8:1::1", &ctx), AP_OK);
    assert_string_equal(ctx.country, "SE");
    assert_int_equal(ap_geo_lookup(g, "8.8.8.8", &ctx), AP_ENOTFOUND); /* "??" skipped */
    assert_int_equal(ap_geo_lookup(g, "1.0.1.0", &ctx), AP_ENOTFOUND);
    ap_geo_close(g);

    /* a malformed file fails the conversion, not the process */
    f = fopen(v4, "w");
    assert_non_null(f);
    fputs("16777216,oops,AU\n", f);
    fclose(f);
    g = ap_geo_open_tor(v4, NULL, &err);
    assert_non_null(g);
    assert_int_equal(ap_geo_wait(g, 10000), AP_ECORRUPT);
    assert_false(ap_geo_ready(g));
    assert_int_equal(ap_geo_lookup(g, "1.0.0.1", &ctx), AP_ENOTFOUND);
    ap_geo_close(g);
    assert_null(ap_geo_open_tor("/nonexistent/a", "/nonexistent/b", &err));
    assert_int_equal(err, AP_ENOTFOUND);
}

/* The real package, when installed: a well-known address resolves. */
static void test_installed_tor_geoipdb(void **state)
{
    (void)state;
    if (access(AP_GEO_TOR_IPV4, R_OK) != 0)
        skip();
    int err;
    struct ap_geo *g = ap_geo_open_tor(AP_GEO_TOR_IPV4, AP_GEO_TOR_IPV6, &err);
    assert_non_null(g);
    assert_int_equal(ap_geo_wait(g, 60000), AP_OK);
    struct ap_serve_ctx ctx;
    assert_int_equal(ap_geo_lookup(g, "8.8.8.8", &ctx), AP_OK);
    assert_string_equal(ctx.country, "US");
    ap_geo_close(g);
}

static struct ap_geo *shared;

static void *lookup_thread(void *arg)
{
    long *fails = arg;
    for (int i = 0; i < 20000; i++) {
        const struct geo_case *c = &CASES[(size_t)i % (sizeof(CASES) / sizeof(CASES[0]))];
        struct ap_serve_ctx ctx;
        if (ap_geo_lookup(shared, c->ip, &ctx) != c->rc || strcmp(ctx.country, c->country) ||
            strcmp(ctx.city, c->city))
            (*fails)++;
    }
    return NULL;
}

static void test_concurrent_lookups(void **state)
{
    (void)state;
    int err;
    shared = ap_geo_open(city_db, &err);
    assert_non_null(shared);
    pthread_t th[4];
    long fails[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, lookup_thread, &fails[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(fails[i], 0);
    }
    ap_geo_close(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_open_failures),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_long_city),
        cmocka_unit_test(test_28_bit_records),
        cmocka_unit_test(test_tor_conversion),
        cmocka_unit_test(test_installed_tor_geoipdb),
        cmocka_unit_test(test_concurrent_lookups),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
