/*
 * Helpers shared by the store's unit tests: a temp directory per test, a store opened with
 * cheap password hashing and a fake clock, JSON shorthands, and fixtures.
 * Include after the cmocka headers.
 */
#ifndef TEST_AP_STORE_UTIL_H
#define TEST_AP_STORE_UTIL_H

#include <dirent.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "store/ap_schema.h"
#include "store/ap_store.h"

#define UNUSED __attribute__((unused))

/* Fake clock: tests move it by assigning test_now. */
static int64_t test_now = 1700000000; /* 2023-11-14T22:13:20Z */

static UNUSED int64_t test_clock(void *ud)
{
    (void)ud;
    return test_now;
}

struct tdir {
    char path[256];
    char db[300];
};

static UNUSED void tdir_make(struct tdir *t)
{
    snprintf(t->path, sizeof(t->path), "%s/ap_store_test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(t->path));
    snprintf(t->db, sizeof(t->db), "%s/store.db", t->path);
}

/* Removes every file in the directory (db, -wal, -shm, copies) and the directory. */
static UNUSED void tdir_remove(struct tdir *t)
{
    DIR *d = opendir(t->path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char p[600];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof(p), "%s/%s", t->path, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(t->path);
}

static UNUSED struct ap_store_options test_options(void)
{
    struct ap_store_options o = {
        .pwhash = AP_STORE_PWHASH_TEST_ONLY,
        .clock = test_clock,
    };
    return o;
}

static UNUSED struct ap_store *open_store(const char *path)
{
    struct ap_store_options o = test_options();
    struct ap_store *st = NULL;
    int rc = ap_store_open(path, &o, &st);
    if (rc)
        fprintf(stderr, "open %s: %s\n", path, ap_strerror(rc));
    assert_int_equal(rc, AP_OK);
    return st;
}

/* Parses JSON text (tests only: aborts the test on bad text). New reference. */
static UNUSED json_t *J(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j)
        fprintf(stderr, "bad test JSON: %s: %s\n", text, err.text);
    assert_non_null(j);
    return j;
}

static UNUSED int64_t jint(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static UNUSED const char *jstr(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static UNUSED bool has_error(const struct ap_schema_errors *e, const char *field)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->items[i].field, field) == 0)
            return true;
    return false;
}

static UNUSED void dump_errors(const struct ap_schema_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "  %s: %s\n", e->items[i].field, e->items[i].message);
}

/* Creates a row from JSON text as the system actor; returns its id. */
static UNUSED int64_t mk(struct ap_store *st, enum ap_schema_res res, const char *text)
{
    struct ap_schema_errors errs;
    json_t *body = J(text), *out = NULL;
    int rc = ap_store_create(st, res, body, NULL, &out, &errs);
    if (rc) {
        fprintf(stderr, "create %s %s: %s (%s)\n", ap_schema_get(res)->name, text,
                ap_strerror(rc), ap_store_errmsg(st));
        dump_errors(&errs);
    }
    assert_int_equal(rc, AP_OK);
    int64_t id = jint(out, "id");
    json_decref(body);
    json_decref(out);
    return id;
}

/* Same with a printf-formatted body. */
static UNUSED __attribute__((format(printf, 3, 4))) int64_t
mkf(struct ap_store *st, enum ap_schema_res res, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return mk(st, res, buf);
}

static UNUSED int64_t store_version(struct ap_store *st)
{
    int64_t v = -1;
    assert_int_equal(ap_store_version(st, &v), AP_OK);
    return v;
}

/* A tenant tree: advertiser + creative + campaign + ad, publisher + site + placement. */
struct tree {
    int64_t adv, creative, campaign, ad, pub, site, placement;
};

static UNUSED struct tree mk_tree(struct ap_store *st, const char *name)
{
    struct tree t;
    t.adv = mkf(st, AP_SCHEMA_ADVERTISER,
                "{\"name\":\"%s\",\"currency\":\"USD\",\"timezone\":\"UTC\"}", name);
    t.creative = mkf(st, AP_SCHEMA_CREATIVE,
                     "{\"advertiser_id\":%lld,\"name\":\"banner\",\"type\":\"html\","
                     "\"width\":300,\"height\":250,\"html\":\"<b>hi</b>\"}",
                     (long long)t.adv);
    t.campaign = mkf(st, AP_SCHEMA_CAMPAIGN, "{\"advertiser_id\":%lld,\"name\":\"c\"}",
                     (long long)t.adv);
    t.ad = mkf(st, AP_SCHEMA_AD,
               "{\"campaign_id\":%lld,\"creative_id\":%lld,"
               "\"landing_url\":\"https://example.com/x\"}",
               (long long)t.campaign, (long long)t.creative);
    t.pub = mkf(st, AP_SCHEMA_PUBLISHER,
                "{\"name\":\"%s pub\",\"currency\":\"EUR\",\"revenue_share_ppm\":700000}", name);
    t.site = mkf(st, AP_SCHEMA_SITE,
                 "{\"publisher_id\":%lld,\"name\":\"s\",\"domain\":\"news.example.com\"}",
                 (long long)t.pub);
    t.placement = mkf(st, AP_SCHEMA_PLACEMENT,
                      "{\"site_id\":%lld,\"name\":\"top\",\"sizes\":[\"300x250\"]}",
                      (long long)t.site);
    return t;
}

#endif
