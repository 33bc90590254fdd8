/* Store on real SQLite files: migrations, CRUD for every resource, validation in the
 * transaction (references, tenancy, uniqueness), pagination and filters, optimistic
 * concurrency, ownership, the audit log and the change feed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>

#include "test_ap_store_util.h"

struct fx {
    struct tdir dir;
    struct ap_store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    test_now = 1700000000;
    tdir_make(&f->dir);
    f->st = open_store(f->dir.db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ap_store_close(f->st);
    tdir_remove(&f->dir);
    free(f);
    return 0;
}

/* One integer from SQL on a separate raw connection (what another process would see). */
static int64_t sql_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static int64_t audit_count(const char *db)
{
    return sql_int(db, "SELECT COUNT(*) FROM audit_log");
}

/* ---- migrations ------------------------------------------------------------------------------ */

static void test_migrations(void **state)
{
    (void)state;
    struct tdir d;
    tdir_make(&d);
    struct ap_store_options o = test_options();
    o.no_migrate = true;
    struct ap_store *st = NULL;
    int v = -1, applied = -1;

    assert_int_equal(ap_store_open(d.db, &o, &st), AP_OK);
    assert_int_equal(ap_store_schema_version(st, &v), AP_OK);
    assert_int_equal(v, 0);
    /* staged: up to 1, then the rest */
    assert_int_equal(ap_store_migrate_to(st, 1, &applied), AP_OK);
    assert_int_equal(applied, 1);
    assert_int_equal(sql_int(d.db, "SELECT COUNT(*) FROM sqlite_master WHERE name='audit_log'"),
                     1);
    assert_int_equal(sql_int(d.db, "SELECT COUNT(*) FROM sqlite_master WHERE name='campaigns'"),
                     0);
    assert_int_equal(ap_store_migrate_to(st, ap_store_schema_latest() + 1, &applied), AP_EINVAL);
    assert_int_equal(ap_store_migrate(st, &applied), AP_OK);
    assert_int_equal(applied, ap_store_schema_latest() - 1);
    assert_int_equal(ap_store_schema_version(st, &v), AP_OK);
    assert_int_equal(v, ap_store_schema_latest());
    /* re-running is a no-op */
    assert_int_equal(ap_store_migrate(st, &applied), AP_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(sql_int(d.db, "SELECT COUNT(*) FROM schema_migrations"),
                     ap_store_schema_latest());
    int64_t ver = store_version(st);
    assert_int_equal(ver, 0); /* migrations are not changes */
    ap_store_close(st);

    /* open migrates by default; a second open finds nothing to do */
    st = open_store(d.db);
    assert_int_equal(ap_store_migrate(st, &applied), AP_OK);
    assert_int_equal(applied, 0);
    ap_store_close(st);

    /* a schema from the future is refused */
    sqlite3 *h;
    assert_int_equal(sqlite3_open(d.db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  "INSERT INTO schema_migrations (version, name, applied_at) "
                                  "VALUES (999, 'future', 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    o.no_migrate = false;
    st = NULL;
    assert_int_equal(ap_store_open(d.db, &o, &st), AP_ECONFLICT);
    assert_null(st);
    tdir_remove(&d);
}

/* Migrations from empty on a fresh file and the schema table agree column by column. */
static void test_schema_matches_tables(void **state)
{
    struct fx *f = *state;
    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->dir.db, &h), SQLITE_OK);
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++) {
        const struct ap_schema_resource *r = ap_schema_get((enum ap_schema_res)i);
        char sql[128];
        sqlite3_stmt *s;
        snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", r->table);
        assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
        size_t col = 0;
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(s, 1);
            int notnull = sqlite3_column_int(s, 3);
            const char *want = col == 0                  ? "id"
                               : col <= r->nfields       ? r->fields[col - 1].name
                               : col == r->nfields + 1   ? "created_at"
                               : col == r->nfields + 2   ? "updated_at"
                               : col == r->nfields + 3   ? "version"
                               : col == r->nfields + 4   ? "changed_version"
                                                         : "(extra column)";
            if (strcmp(name, want) != 0)
                fprintf(stderr, "%s column %zu: %s, schema says %s\n", r->table, col, name,
                        want);
            assert_string_equal(name, want);
            if (col >= 1 && col <= r->nfields) /* NOT NULL exactly when not nullable */
                assert_int_equal(notnull != 0,
                                 !(r->fields[col - 1].flags & AP_SCHEMA_F_NULLABLE));
            col++;
        }
        sqlite3_finalize(s);
        assert_int_equal(col, r->nfields + 5);
    }
    /* the file is in WAL mode (persistent, set by the store at open) */
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(h);
}

/* ---- CRUD for every resource ----------------------------------------------------------------- */

static void test_crud_every_resource(void **state)
{
    struct fx *f = *state;
    struct tree t = mk_tree(f->st, "Acme");
    int64_t dsp = mk(f->st, AP_SCHEMA_DEMAND_PARTNER,
                     "{\"name\":\"D\",\"bidder_code\":\"dsp1\",\"endpoint\":"
                     "\"http://127.0.0.1:9000/bid\",\"bid_adjustment\":0.95}");
    const struct {
        enum ap_schema_res res;
        int64_t id;
        const char *patch;
        const char *check_field;
    } rows[] = {
        {AP_SCHEMA_ADVERTISER, t.adv, "{\"name\":\"Acme 2\"}", "name"},
        {AP_SCHEMA_CREATIVE, t.creative, "{\"name\":\"banner 2\"}", "name"},
        {AP_SCHEMA_CAMPAIGN, t.campaign, "{\"status\":\"active\",\"priority\":3}", "status"},
        {AP_SCHEMA_AD, t.ad, "{\"weight\":7}", "weight"},
        {AP_SCHEMA_PUBLISHER, t.pub, "{\"revenue_share_ppm\":650000}", "revenue_share_ppm"},
        {AP_SCHEMA_SITE, t.site, "{\"domain\":\"www.example.com\"}", "domain"},
        {AP_SCHEMA_PLACEMENT, t.placement, "{\"floor_cpm_micros\":250000}",
         "floor_cpm_micros"},
        {AP_SCHEMA_DEMAND_PARTNER, dsp, "{\"bid_adjustment\":0.8}", "bid_adjustment"},
    };
    struct ap_schema_errors errs;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *obj = NULL, *upd = NULL, *arch = NULL, *page = NULL;
        assert_int_equal(ap_store_get(f->st, rows[i].res, rows[i].id, NULL, &obj), AP_OK);
        assert_int_equal(jint(obj, "id"), rows[i].id);
        assert_int_equal(jint(obj, "version"), 1);
        assert_string_equal(jstr(obj, "created_at"), "2023-11-14T22:13:20Z");
        assert_string_equal(jstr(obj, "updated_at"), "2023-11-14T22:13:20Z");
        /* every field of the schema is in the object */
        const struct ap_schema_resource *r = ap_schema_get(rows[i].res);
        assert_int_equal(json_object_size(obj), r->nfields + 4);

        test_now += 10;
        json_t *patch = J(rows[i].patch);
        assert_int_equal(ap_store_update(f->st, rows[i].res, rows[i].id, patch,
                                         jint(obj, "version"), NULL, &upd, &errs),
                         AP_OK);
        assert_int_equal(jint(upd, "version"), 2);
        assert_true(json_equal(json_object_get(upd, rows[i].check_field),
                               json_object_get(patch, rows[i].check_field)));
        assert_string_equal(jstr(upd, "created_at"), "2023-11-14T22:13:20Z");
        assert_string_not_equal(jstr(upd, "updated_at"), "2023-11-14T22:13:20Z");

        struct ap_store_list_query q = {0};
        assert_int_equal(ap_store_list(f->st, rows[i].res, &q, NULL, &page, &errs), AP_OK);
        assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
        assert_true(json_equal(json_array_get(json_object_get(page, "data"), 0), upd));
        assert_true(json_is_null(json_object_get(page, "next_cursor")));

        assert_int_equal(ap_store_archive(f->st, rows[i].res, rows[i].id, -1, NULL, &arch),
                         AP_OK);
        assert_string_equal(jstr(arch, "status"), "archived");
        assert_int_equal(jint(arch, "version"), 3);
        json_decref(arch);
        /* archiving again changes nothing */
        int64_t v = store_version(f->st);
        assert_int_equal(ap_store_archive(f->st, rows[i].res, rows[i].id, -1, NULL, &arch),
                         AP_OK);
        assert_int_equal(jint(arch, "version"), 3);
        assert_int_equal(store_version(f->st), v);
        /* archived rows are still readable (reports resolve old ids) */
        json_decref(obj);
        assert_int_equal(ap_store_get(f->st, rows[i].res, rows[i].id, NULL, &obj), AP_OK);
        assert_string_equal(jstr(obj, "status"), "archived");
        assert_int_equal(ap_store_archive(f->st, rows[i].res, rows[i].id + 1000, -1, NULL, NULL),
                         AP_ENOTFOUND);

        json_decref(patch);
        json_decref(obj);
        json_decref(upd);
        json_decref(arch);
        json_decref(page);
    }
    json_t *obj = NULL;
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_CAMPAIGN, 999, NULL, &obj), AP_ENOTFOUND);
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_CAMPAIGN, 0, NULL, &obj), AP_ENOTFOUND);
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_RES_COUNT, 1, NULL, &obj), AP_EINVAL);
    assert_null(obj);
    /* values come back as stored, in API form */
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_DEMAND_PARTNER, dsp, NULL, &obj), AP_OK);
    assert_true(json_real_value(json_object_get(obj, "bid_adjustment")) == 0.8);
    assert_int_equal(sql_int(f->dir.db, "SELECT bid_adjustment FROM demand_partners"), 800000);
    json_decref(obj);
}

static void test_campaign_values_roundtrip(void **state)
{
    struct fx *f = *state;
    struct tree t = mk_tree(f->st, "A");
    char body[2048];
    snprintf(body, sizeof(body),
             "{\"advertiser_id\":%lld,\"name\":\"Q4 Sale\",\"status\":\"active\","
             "\"start_at\":\"2024-10-01T00:00:00+02:00\",\"end_at\":\"2024-12-31T23:59:59Z\","
             "\"priority_tier\":\"sponsorship\",\"priority\":9,\"pricing_model\":\"cpc\","
             "\"price_micros\":350000,\"budget_lifetime_micros\":100000000000,"
             "\"budget_daily_micros\":2000000000,\"pacing\":\"asap\",\"frequency_caps\":"
             "[{\"count\":3,\"window_seconds\":86400,\"scope\":\"campaign\"},"
             "{\"count\":1,\"window_seconds\":600,\"scope\":\"ad\"}],\"goal_type\":\"clicks\","
             "\"goal_count\":5000,\"selection\":\"lottery\",\"targeting\":{\"countries_include\":"
             "[\"US\"],\"dayparts\":[{\"days\":[1,2],\"hours\":[8,9]}],\"keywords\":{\"any\":"
             "[\"shoes\"]},\"ip_ranges\":[\"10.0.0.0/8\"]}}",
             (long long)t.adv);
    json_t *in = J(body), *out = NULL;
    struct ap_schema_errors errs;
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_CAMPAIGN, in, NULL, &out, &errs), AP_OK);
    const char *key;
    json_t *val;
    json_object_foreach(in, key, val) {
        if (strcmp(key, "start_at") == 0)
            assert_string_equal(jstr(out, key), "2024-09-30T22:00:00Z");
        else
            assert_true(json_equal(val, json_object_get(out, key)));
    }
    json_t *again = NULL;
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_CAMPAIGN, jint(out, "id"), NULL, &again),
                     AP_OK);
    assert_true(json_equal(out, again));
    json_decref(in);
    json_decref(out);
    json_decref(again);
}

/* JSON fields come back exactly as given, including what is awkward to store. */
static void test_json_fields_roundtrip(void **state)
{
    struct fx *f = *state;
    struct tree t = mk_tree(f->st, "A");
    json_t *in = json_pack("{s:I, s:s, s:s, s:{s:s, s:[f, i, b, n], s:{s:{s:s}}}}",
                           "advertiser_id", (json_int_t)t.adv, "name", "native", "type", "native",
                           "native", "title", "caf\xc3\xa9 \"quoted\" \\ \xf0\x9f\x98\x80",
                           "mixed", 0.125, -7, 1, "nested", "deeper", "k", "v");
    assert_non_null(in);
    /* a NUL inside a string of a json field */
    json_object_set_new(json_object_get(in, "native"), "nul", json_stringn("a\0b", 3));
    struct ap_schema_errors errs;
    json_t *out = NULL, *again = NULL;
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_CREATIVE, in, NULL, &out, &errs), AP_OK);
    assert_true(json_equal(json_object_get(out, "native"), json_object_get(in, "native")));
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_CREATIVE, jint(out, "id"), NULL, &again),
                     AP_OK);
    assert_true(json_equal(json_object_get(again, "native"), json_object_get(in, "native")));
    json_decref(in);
    json_decref(out);
    json_decref(again);
}

/* Errors found in the transaction: missing parents, cross-tenant refs, uniqueness. */
static void test_reference_errors(void **state)
{
    struct fx *f = *state;
    struct tree a = mk_tree(f->st, "A");
    struct tree b = mk_tree(f->st, "B");
    mk(f->st, AP_SCHEMA_DEMAND_PARTNER,
       "{\"name\":\"D\",\"bidder_code\":\"taken\",\"endpoint\":\"https://d.example/\"}");
    char body[512];
    char bodies[8][256];
    snprintf(bodies[0], 256, "{\"advertiser_id\":999,\"name\":\"x\"}");
    snprintf(bodies[1], 256,
             "{\"advertiser_id\":999,\"name\":\"x\",\"type\":\"vast\",\"vast_xml\":\"<V/>\"}");
    snprintf(bodies[2], 256, "{\"campaign_id\":999,\"creative_id\":%lld}",
             (long long)a.creative);
    snprintf(bodies[3], 256, "{\"campaign_id\":%lld,\"creative_id\":999}",
             (long long)a.campaign);
    /* an ad may only use its own advertiser's creatives */
    snprintf(bodies[4], 256, "{\"campaign_id\":%lld,\"creative_id\":%lld}",
             (long long)a.campaign, (long long)b.creative);
    snprintf(bodies[5], 256, "{\"publisher_id\":999,\"name\":\"x\",\"domain\":\"x.com\"}");
    snprintf(bodies[6], 256, "{\"site_id\":999,\"name\":\"x\"}");
    snprintf(bodies[7], 256,
             "{\"name\":\"E\",\"bidder_code\":\"taken\",\"endpoint\":\"https://e.example/\"}");
    const struct {
        enum ap_schema_res res;
        const char *body;
        const char *field;
    } cases[] = {
        {AP_SCHEMA_CAMPAIGN, bodies[0], "advertiser_id"},
        {AP_SCHEMA_CREATIVE, bodies[1], "advertiser_id"},
        {AP_SCHEMA_AD, bodies[2], "campaign_id"},
        {AP_SCHEMA_AD, bodies[3], "creative_id"},
        {AP_SCHEMA_AD, bodies[4], "creative_id"},
        {AP_SCHEMA_SITE, bodies[5], "publisher_id"},
        {AP_SCHEMA_PLACEMENT, bodies[6], "site_id"},
        {AP_SCHEMA_DEMAND_PARTNER, bodies[7], "bidder_code"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ap_schema_errors errs;
        json_t *out = NULL;
        int64_t v = store_version(f->st), audits = audit_count(f->dir.db);
        json_t *in = J(cases[i].body);
        int rc = ap_store_create(f->st, cases[i].res, in, NULL, &out, &errs);
        if (rc != AP_EINVAL || !has_error(&errs, cases[i].field)) {
            fprintf(stderr, "case %zu %s: %s\n", i, cases[i].body, ap_strerror(rc));
            dump_errors(&errs);
        }
        assert_int_equal(rc, AP_EINVAL);
        assert_true(has_error(&errs, cases[i].field));
        assert_null(out);
        /* nothing written: no row, no audit, no change */
        assert_int_equal(store_version(f->st), v);
        assert_int_equal(audit_count(f->dir.db), audits);
        json_decref(in);
    }
    /* the same on update: moving an ad to another advertiser's creative */
    struct ap_schema_errors errs;
    json_t *out = NULL;
    snprintf(body, sizeof(body), "{\"creative_id\":%lld}", (long long)b.creative);
    json_t *p = J(body);
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_AD, a.ad, p, -1, NULL, &out, &errs),
                     AP_EINVAL);
    assert_true(has_error(&errs, "creative_id"));
    json_decref(p);
    /* a unique value may be kept by its own row */
    int64_t d2 = mk(f->st, AP_SCHEMA_DEMAND_PARTNER,
                    "{\"name\":\"E\",\"bidder_code\":\"free\","
                    "\"endpoint\":\"https://e.example/\"}");
    p = J("{\"bidder_code\":\"free\",\"name\":\"E2\"}");
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_DEMAND_PARTNER, d2, p, -1, NULL, &out,
                                     &errs),
                     AP_OK);
    json_decref(out);
    json_decref(p);
    p = J("{\"bidder_code\":\"taken\"}");
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_DEMAND_PARTNER, d2, p, -1, NULL, &out,
                                     &errs),
                     AP_EINVAL);
    assert_true(has_error(&errs, "bidder_code"));
    json_decref(p);
    /* validation errors from the schema come through unchanged */
    p = J("{\"name\":\"x\",\"currency\":\"usd\",\"timezone\":\"Nope/Nope\",\"colour\":1}");
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_ADVERTISER, p, NULL, &out, &errs),
                     AP_EINVAL);
    assert_int_equal(errs.n, 3);
    assert_true(has_error(&errs, "currency") && has_error(&errs, "timezone") &&
                has_error(&errs, "colour"));
    json_decref(p);
}

/* ---- pagination and filters ------------------------------------------------------------------ */

static void test_pagination_and_filters(void **state)
{
    struct fx *f = *state;
    int64_t a1 = mk(f->st, AP_SCHEMA_ADVERTISER,
                    "{\"name\":\"A1\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    int64_t a2 = mk(f->st, AP_SCHEMA_ADVERTISER,
                    "{\"name\":\"A2\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    int64_t ids[7];
    for (int i = 0; i < 7; i++)
        ids[i] = mkf(f->st, AP_SCHEMA_CAMPAIGN,
                     "{\"advertiser_id\":%lld,\"name\":\"c%d\",\"status\":\"%s\"}",
                     (long long)(i < 5 ? a1 : a2), i, i % 2 ? "active" : "draft");
    struct ap_schema_errors errs;
    json_t *page = NULL;
    char cursor[32] = "";
    int seen = 0;
    for (int p = 0; p < 3; p++) {
        struct ap_store_list_query q = {.cursor = cursor, .limit = 3};
        assert_int_equal(ap_store_list(f->st, AP_SCHEMA_CAMPAIGN, &q, NULL, &page, &errs),
                         AP_OK);
        json_t *data = json_object_get(page, "data"), *next = json_object_get(page, "next_cursor");
        for (size_t i = 0; i < json_array_size(data); i++)
            assert_int_equal(jint(json_array_get(data, i), "id"), ids[seen++]);
        if (p < 2) {
            assert_int_equal(json_array_size(data), 3);
            assert_true(json_is_string(next));
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        } else {
            assert_int_equal(json_array_size(data), 1);
            assert_true(json_is_null(next));
        }
        json_decref(page);
    }
    assert_int_equal(seen, 7);
    /* exactly a page: no next cursor */
    struct ap_store_list_query q = {.limit = 7};
    assert_int_equal(ap_store_list(f->st, AP_SCHEMA_CAMPAIGN, &q, NULL, &page, &errs), AP_OK);
    assert_int_equal(json_array_size(json_object_get(page, "data")), 7);
    assert_true(json_is_null(json_object_get(page, "next_cursor")));
    json_decref(page);

    /* filters, AND-ed */
    char a1s[24];
    snprintf(a1s, sizeof(a1s), "%lld", (long long)a1);
    struct ap_store_filter fl[] = {{"advertiser_id", a1s}, {"status", "active"}};
    q = (struct ap_store_list_query){.filters = fl, .nfilters = 2};
    assert_int_equal(ap_store_list(f->st, AP_SCHEMA_CAMPAIGN, &q, NULL, &page, &errs), AP_OK);
    json_t *data = json_object_get(page, "data");
    assert_int_equal(json_array_size(data), 2); /* c1, c3 */
    assert_int_equal(jint(json_array_get(data, 0), "id"), ids[1]);
    assert_int_equal(jint(json_array_get(data, 1), "id"), ids[3]);
    json_decref(page);

    /* bad queries name what is wrong */
    static const struct {
        int limit;
        const char *cursor;
        const char *ffield, *fvalue;
        const char *err;
    } bad[] = {
        {1001, NULL, NULL, NULL, "limit"},  {-1, NULL, NULL, NULL, "limit"},
        {0, "abc", NULL, NULL, "cursor"},   {0, "-5", NULL, NULL, "cursor"},
        {0, NULL, "name", "x", "name"},     {0, NULL, "status", "gone", "status"},
        {0, NULL, "advertiser_id", "x", "advertiser_id"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ap_store_filter one = {bad[i].ffield, bad[i].fvalue};
        q = (struct ap_store_list_query){.limit = bad[i].limit, .cursor = bad[i].cursor,
                                         .filters = &one, .nfilters = bad[i].ffield ? 1 : 0};
        assert_int_equal(ap_store_list(f->st, AP_SCHEMA_CAMPAIGN, &q, NULL, &page, &errs),
                         AP_EINVAL);
        assert_true(has_error(&errs, bad[i].err));
        assert_null(page);
    }
    /* limit 1000 is allowed; NULL query = defaults */
    q = (struct ap_store_list_query){.limit = 1000};
    assert_int_equal(ap_store_list(f->st, AP_SCHEMA_CAMPAIGN, &q, NULL, &page, &errs), AP_OK);
    json_decref(page);
    assert_int_equal(ap_store_list(f->st, AP_SCHEMA_ADVERTISER, NULL, NULL, &page, &errs), AP_OK);
    assert_int_equal(json_array_size(json_object_get(page, "data")), 2);
    json_decref(page);
}

/* ---- optimistic concurrency ------------------------------------------------------------------ */

static void test_versions_and_conflicts(void **state)
{
    struct fx *f = *state;
    struct tree t = mk_tree(f->st, "A");
    struct ap_schema_errors errs;
    json_t *out = NULL, *p = J("{\"name\":\"renamed\"}");
    int64_t v0 = store_version(f->st);

    /* stale If-Match */
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, p, 7, NULL, &out,
                                     &errs),
                     AP_ECONFLICT);
    assert_null(out);
    assert_int_equal(store_version(f->st), v0);
    /* right version */
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, p, 1, NULL, &out,
                                     &errs),
                     AP_OK);
    assert_int_equal(jint(out, "version"), 2);
    assert_int_equal(store_version(f->st), v0 + 1);
    json_decref(out);
    /* the same patch again changes nothing: no write, same version, no audit row */
    int64_t audits = audit_count(f->dir.db);
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, p, 2, NULL, &out,
                                     &errs),
                     AP_OK);
    assert_int_equal(jint(out, "version"), 2);
    assert_int_equal(store_version(f->st), v0 + 1);
    assert_int_equal(audit_count(f->dir.db), audits);
    json_decref(out);
    /* now version 1 is stale; -1 skips the check */
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, p, 1, NULL, &out,
                                     &errs),
                     AP_ECONFLICT);
    assert_int_equal(ap_store_archive(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, 1, NULL, &out),
                     AP_ECONFLICT);
    assert_int_equal(ap_store_archive(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, 2, NULL, &out),
                     AP_OK);
    json_decref(out);
    /* a second handle sees the write of the first at once (what ETags are compared with) */
    struct ap_store *st2 = open_store(f->dir.db);
    assert_int_equal(ap_store_get(st2, AP_SCHEMA_CAMPAIGN, t.campaign, NULL, &out), AP_OK);
    assert_int_equal(jint(out, "version"), 3);
    json_decref(out);
    /* a write from handle 2 makes handle 1's version stale */
    json_t *p2 = J("{\"status\":\"paused\"}");
    assert_int_equal(ap_store_update(st2, AP_SCHEMA_CAMPAIGN, t.campaign, p2, 3, NULL, &out,
                                     &errs),
                     AP_OK);
    json_decref(out);
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, t.campaign, p, 3, NULL, &out,
                                     &errs),
                     AP_ECONFLICT);
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, 9999, p, -1, NULL, &out, &errs),
                     AP_ENOTFOUND);
    json_decref(p2);
    json_decref(p);
    ap_store_close(st2);
}

/* ---- ownership and tenancy ------------------------------------------------------------------- */

static void test_ownership(void **state)
{
    struct fx *f = *state;
    struct tree a = mk_tree(f->st, "A");
    int64_t dsp = mk(f->st, AP_SCHEMA_DEMAND_PARTNER,
                     "{\"name\":\"D\",\"bidder_code\":\"d\",\"endpoint\":\"https://d.example/\"}");
    const struct {
        enum ap_schema_res res;
        int64_t id;
        enum ap_schema_owner kind;
        int64_t owner;
    } cases[] = {
        {AP_SCHEMA_ADVERTISER, a.adv, AP_SCHEMA_OWNER_ADVERTISER, a.adv},
        {AP_SCHEMA_CAMPAIGN, a.campaign, AP_SCHEMA_OWNER_ADVERTISER, a.adv},
        {AP_SCHEMA_AD, a.ad, AP_SCHEMA_OWNER_ADVERTISER, a.adv},
        {AP_SCHEMA_CREATIVE, a.creative, AP_SCHEMA_OWNER_ADVERTISER, a.adv},
        {AP_SCHEMA_PUBLISHER, a.pub, AP_SCHEMA_OWNER_PUBLISHER, a.pub},
        {AP_SCHEMA_SITE, a.site, AP_SCHEMA_OWNER_PUBLISHER, a.pub},
        {AP_SCHEMA_PLACEMENT, a.placement, AP_SCHEMA_OWNER_PUBLISHER, a.pub},
        {AP_SCHEMA_DEMAND_PARTNER, dsp, AP_SCHEMA_OWNER_NONE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum ap_schema_owner k = 99;
        int64_t o = -1;
        assert_int_equal(ap_store_owner(f->st, cases[i].res, cases[i].id, &k, &o), AP_OK);
        assert_int_equal(k, cases[i].kind);
        assert_int_equal(o, cases[i].owner);
        assert_int_equal(ap_store_owner(f->st, cases[i].res, 4242, &k, &o), AP_ENOTFOUND);
    }
}

static void test_tenancy(void **state)
{
    struct fx *f = *state;
    struct tree a = mk_tree(f->st, "A");
    struct tree b = mk_tree(f->st, "B");
    mk(f->st, AP_SCHEMA_DEMAND_PARTNER,
       "{\"name\":\"D\",\"bidder_code\":\"d\",\"endpoint\":\"https://d.example/\"}");
    int64_t adv_ids[] = {a.adv}, pub_ids[] = {a.pub};
    struct ap_store_actor tenant = {.user_id = 5, .restricted = true, .advertiser_ids = adv_ids,
                                    .n_advertiser_ids = 1, .publisher_ids = pub_ids,
                                    .n_publisher_ids = 1};
    struct ap_store_actor nobody = {.user_id = 6, .restricted = true};
    struct ap_schema_errors errs;
    json_t *out = NULL;

    /* reads: own rows yes, other tenant's rows exactly like missing ones */
    const struct {
        enum ap_schema_res res;
        int64_t mine, theirs;
    } rows[] = {
        {AP_SCHEMA_ADVERTISER, a.adv, b.adv},       {AP_SCHEMA_CAMPAIGN, a.campaign, b.campaign},
        {AP_SCHEMA_AD, a.ad, b.ad},                 {AP_SCHEMA_CREATIVE, a.creative, b.creative},
        {AP_SCHEMA_PUBLISHER, a.pub, b.pub},        {AP_SCHEMA_SITE, a.site, b.site},
        {AP_SCHEMA_PLACEMENT, a.placement, b.placement},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(ap_store_get(f->st, rows[i].res, rows[i].mine, &tenant, &out), AP_OK);
        json_decref(out);
        assert_int_equal(ap_store_get(f->st, rows[i].res, rows[i].theirs, &tenant, &out),
                         AP_ENOTFOUND);
        assert_int_equal(ap_store_get(f->st, rows[i].res, rows[i].mine, &nobody, &out),
                         AP_ENOTFOUND);
        /* lists show only one's own */
        assert_int_equal(ap_store_list(f->st, rows[i].res, NULL, &tenant, &out, &errs), AP_OK);
        json_t *data = json_object_get(out, "data");
        assert_int_equal(json_array_size(data), 1);
        assert_int_equal(jint(json_array_get(data, 0), "id"), rows[i].mine);
        json_decref(out);
        assert_int_equal(ap_store_list(f->st, rows[i].res, NULL, &nobody, &out, &errs), AP_OK);
        assert_int_equal(json_array_size(json_object_get(out, "data")), 0);
        json_decref(out);
        /* writes to another tenant's rows: not found, and nothing changes */
        int64_t v = store_version(f->st);
        json_t *p = J("{\"name\":\"hijacked\"}");
        assert_int_equal(ap_store_update(f->st, rows[i].res, rows[i].theirs, p, -1, &tenant,
                                         &out, &errs),
                         AP_ENOTFOUND);
        assert_int_equal(ap_store_archive(f->st, rows[i].res, rows[i].theirs, -1, &tenant,
                                          &out),
                         AP_ENOTFOUND);
        assert_int_equal(store_version(f->st), v);
        json_decref(p);
    }
    /* demand partners are operator data */
    assert_int_equal(ap_store_list(f->st, AP_SCHEMA_DEMAND_PARTNER, NULL, &tenant, &out, &errs),
                     AP_OK);
    assert_int_equal(json_array_size(json_object_get(out, "data")), 0);
    json_decref(out);
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_DEMAND_PARTNER, 1, &tenant, &out),
                     AP_ENOTFOUND);

    /* a reference to another tenant's row is a field error, like a missing one */
    char body[256];
    snprintf(body, sizeof(body), "{\"advertiser_id\":%lld,\"name\":\"x\"}", (long long)b.adv);
    json_t *in = J(body);
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_CAMPAIGN, in, &tenant, &out, &errs),
                     AP_EINVAL);
    assert_true(has_error(&errs, "advertiser_id"));
    assert_string_equal(errs.items[0].message, "advertiser 2 not found");
    json_decref(in);
    snprintf(body, sizeof(body), "{\"advertiser_id\":%lld,\"name\":\"x\"}", (long long)a.adv);
    in = J(body);
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_CAMPAIGN, in, &tenant, &out, &errs), AP_OK);
    json_decref(out);
    json_decref(in);
    snprintf(body, sizeof(body), "{\"site_id\":%lld,\"name\":\"x\"}", (long long)b.site);
    in = J(body);
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_PLACEMENT, in, &tenant, &out, &errs),
                     AP_EINVAL);
    assert_true(has_error(&errs, "site_id"));
    json_decref(in);
    /* tenants may update their own advertiser, not create or archive one */
    in = J("{\"name\":\"mine\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_ADVERTISER, in, &tenant, &out, &errs),
                     AP_EPERM);
    json_decref(in);
    in = J("{\"name\":\"Acme renamed\"}");
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_ADVERTISER, a.adv, in, -1, &tenant, &out,
                                     &errs),
                     AP_OK);
    json_decref(out);
    json_decref(in);
    assert_int_equal(ap_store_archive(f->st, AP_SCHEMA_ADVERTISER, a.adv, -1, &tenant, &out),
                     AP_EPERM);
    assert_int_equal(ap_store_archive(f->st, AP_SCHEMA_CAMPAIGN, a.campaign, -1, &tenant, &out),
                     AP_OK);
    json_decref(out);
    /* the audit log names the actor */
    struct ap_store_audit_query aq = {.actor_user_id = 5};
    assert_int_equal(ap_store_audit_list(f->st, &aq, &out, &errs), AP_OK);
    assert_int_equal(json_array_size(json_object_get(out, "data")), 3);
    json_decref(out);
}

/* ---- audit log and change feed -------------------------------------------------------------- */

static void test_audit_log(void **state)
{
    struct fx *f = *state;
    struct ap_store_actor admin = {.user_id = 42};
    struct ap_schema_errors errs;
    json_t *out = NULL, *in = J("{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_ADVERTISER, in, &admin, &out, &errs),
                     AP_OK);
    int64_t id = jint(out, "id");
    json_decref(out);
    json_decref(in);
    test_now += 60;
    in = J("{\"status\":\"paused\"}");
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_ADVERTISER, id, in, -1, &admin, &out, &errs),
                     AP_OK);
    json_decref(out);
    json_decref(in);
    assert_int_equal(ap_store_archive(f->st, AP_SCHEMA_ADVERTISER, id, -1, NULL, NULL), AP_OK);

    struct ap_store_audit_query q = {.resource = "advertiser", .resource_id = id};
    assert_int_equal(ap_store_audit_list(f->st, &q, &out, &errs), AP_OK);
    json_t *data = json_object_get(out, "data");
    assert_int_equal(json_array_size(data), 3);
    json_t *arch = json_array_get(data, 0), *upd = json_array_get(data, 1),
           *cre = json_array_get(data, 2); /* newest first */
    assert_string_equal(jstr(arch, "action"), "archive");
    assert_true(json_is_null(json_object_get(arch, "actor_user_id")));
    assert_string_equal(jstr(upd, "action"), "update");
    assert_int_equal(jint(upd, "actor_user_id"), 42);
    assert_string_equal(jstr(upd, "at"), "2023-11-14T22:14:20Z");
    assert_string_equal(jstr(json_object_get(upd, "before"), "status"), "active");
    assert_string_equal(jstr(json_object_get(upd, "after"), "status"), "paused");
    assert_string_equal(jstr(cre, "action"), "create");
    assert_string_equal(jstr(cre, "resource"), "advertiser");
    assert_int_equal(jint(cre, "resource_id"), id);
    assert_true(json_is_null(json_object_get(cre, "before")));
    assert_int_equal(jint(json_object_get(cre, "after"), "version"), 1);
    json_decref(out);

    /* pagination, newest first */
    for (int i = 0; i < 5; i++)
        mkf(f->st, AP_SCHEMA_PUBLISHER,
            "{\"name\":\"P%d\",\"currency\":\"EUR\",\"revenue_share_ppm\":1}", i);
    struct ap_store_audit_query pq = {.limit = 3};
    int64_t prev = INT64_MAX;
    int total = 0;
    char cursor[32] = "";
    for (;;) {
        pq.cursor = cursor;
        assert_int_equal(ap_store_audit_list(f->st, &pq, &out, &errs), AP_OK);
        data = json_object_get(out, "data");
        for (size_t i = 0; i < json_array_size(data); i++) {
            int64_t aid = jint(json_array_get(data, i), "id");
            assert_true(aid < prev);
            prev = aid;
            total++;
        }
        json_t *next = json_object_get(out, "next_cursor");
        if (json_is_null(next)) {
            json_decref(out);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(out);
    }
    assert_int_equal(total, 8);
    pq = (struct ap_store_audit_query){.cursor = "x"};
    assert_int_equal(ap_store_audit_list(f->st, &pq, &out, &errs), AP_EINVAL);
    assert_true(has_error(&errs, "cursor"));

    /* every audit row was written with a version bump, in the same transaction */
    assert_int_equal(store_version(f->st), audit_count(f->dir.db));
}

static void test_change_feed(void **state)
{
    struct fx *f = *state;
    struct ap_store *builder = open_store(f->dir.db); /* the snapshot builder's own handle */
    assert_int_equal(store_version(builder), 0);
    int64_t adv = mk(f->st, AP_SCHEMA_ADVERTISER,
                     "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    assert_int_equal(store_version(builder), 1);
    mkf(f->st, AP_SCHEMA_CAMPAIGN, "{\"advertiser_id\":%lld,\"name\":\"c\"}", (long long)adv);
    assert_int_equal(store_version(builder), 2);

    /* a read transaction sees one snapshot while writes go on */
    assert_int_equal(ap_store_read_begin(builder), AP_OK);
    assert_int_equal(ap_store_read_begin(builder), AP_EBUSY);
    mkf(f->st, AP_SCHEMA_CAMPAIGN, "{\"advertiser_id\":%lld,\"name\":\"d\"}", (long long)adv);
    assert_int_equal(store_version(builder), 2);
    struct ap_schema_errors errs;
    json_t *page = NULL;
    assert_int_equal(ap_store_list(builder, AP_SCHEMA_CAMPAIGN, NULL, NULL, &page, &errs), AP_OK);
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    json_decref(page);
    /* no writes on a handle inside its read transaction */
    json_t *in = J("{\"name\":\"B\",\"currency\":\"USD\",\"timezone\":\"UTC\"}"), *out = NULL;
    assert_int_equal(ap_store_create(builder, AP_SCHEMA_ADVERTISER, in, NULL, &out, &errs),
                     AP_EBUSY);
    json_decref(in);
    assert_int_equal(ap_store_read_end(builder), AP_OK);
    assert_int_equal(store_version(builder), 3);
    assert_int_equal(ap_store_list(builder, AP_SCHEMA_CAMPAIGN, NULL, NULL, &page, &errs), AP_OK);
    assert_int_equal(json_array_size(json_object_get(page, "data")), 2);
    json_decref(page);
    ap_store_close(builder);
}

/* ids of a list_changed answer, as "1,2,3". */
static void changed_ids(struct ap_store *st, enum ap_schema_res res, int64_t since, char *out,
                        size_t cap)
{
    json_t *arr = NULL;
    assert_int_equal(ap_store_list_changed(st, res, since, &arr), AP_OK);
    size_t i, n = 0;
    json_t *o;
    out[0] = '\0';
    json_array_foreach(arr, i, o) {
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? "," : "", (long long)jint(o, "id"));
        assert_true(n < cap);
    }
    json_decref(arr);
}

/* The snapshot builder's incremental read: rows written at or after a version. */
static void test_list_changed(void **state)
{
    struct fx *f = *state;
    char ids[256];
    struct tree a = mk_tree(f->st, "A"), b = mk_tree(f->st, "B");
    int64_t v = store_version(f->st);
    /* since 0: everything */
    changed_ids(f->st, AP_SCHEMA_CAMPAIGN, 0, ids, sizeof(ids));
    char want[64];
    snprintf(want, sizeof(want), "%lld,%lld", (long long)a.campaign, (long long)b.campaign);
    assert_string_equal(ids, want);
    /* nothing written since v+1 */
    changed_ids(f->st, AP_SCHEMA_CAMPAIGN, v + 1, ids, sizeof(ids));
    assert_string_equal(ids, "");
    /* an update, an archive and a create after v are all seen, any status, by id; untouched
     * rows and other resources are not */
    json_t *p = J("{\"status\":\"paused\"}"), *out = NULL;
    struct ap_schema_errors errs;
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, b.campaign, p, -1, NULL, &out,
                                     &errs),
                     AP_OK);
    json_decref(out);
    json_decref(p);
    assert_int_equal(ap_store_archive(f->st, AP_SCHEMA_AD, a.ad, -1, NULL, NULL), AP_OK);
    int64_t c3 = mkf(f->st, AP_SCHEMA_CAMPAIGN, "{\"advertiser_id\":%lld,\"name\":\"new\"}",
                     (long long)a.adv);
    changed_ids(f->st, AP_SCHEMA_CAMPAIGN, v, ids, sizeof(ids));
    snprintf(want, sizeof(want), "%lld,%lld", (long long)b.campaign, (long long)c3);
    assert_string_equal(ids, want);
    changed_ids(f->st, AP_SCHEMA_AD, v, ids, sizeof(ids));
    snprintf(want, sizeof(want), "%lld", (long long)a.ad);
    assert_string_equal(ids, want);
    changed_ids(f->st, AP_SCHEMA_PLACEMENT, v, ids, sizeof(ids));
    assert_string_equal(ids, "");
    /* the rows are whole objects, as ap_store_get gives them */
    json_t *arr = NULL, *one = NULL;
    assert_int_equal(ap_store_list_changed(f->st, AP_SCHEMA_AD, v, &arr), AP_OK);
    assert_int_equal(ap_store_get(f->st, AP_SCHEMA_AD, a.ad, NULL, &one), AP_OK);
    assert_true(json_equal(json_array_get(arr, 0), one));
    assert_string_equal(jstr(one, "status"), "archived");
    json_decref(arr);
    json_decref(one);
    /* a later reader's version excludes what it has seen */
    int64_t v2 = store_version(f->st);
    changed_ids(f->st, AP_SCHEMA_CAMPAIGN, v2 + 1, ids, sizeof(ids));
    assert_string_equal(ids, "");
    assert_int_equal(ap_store_list_changed(f->st, AP_SCHEMA_RES_COUNT, 0, &arr), AP_EINVAL);
    assert_int_equal(ap_store_list_changed(f->st, AP_SCHEMA_AD, -1, &arr), AP_EINVAL);
}

/* Two handles write to one file in turns; the write lock serialises them. */
static void test_two_writers(void **state)
{
    struct fx *f = *state;
    struct ap_store *st2 = open_store(f->dir.db);
    int64_t adv = mk(f->st, AP_SCHEMA_ADVERTISER,
                     "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    for (int i = 0; i < 20; i++)
        mkf(i % 2 ? st2 : f->st, AP_SCHEMA_CAMPAIGN, "{\"advertiser_id\":%lld,\"name\":\"c%d\"}",
            (long long)adv, i);
    assert_int_equal(store_version(st2), 21);
    assert_int_equal(sql_int(f->dir.db, "SELECT COUNT(*) FROM campaigns"), 20);
    ap_store_close(st2);
}

/* The thread model: each thread opens its own handle on the same file; concurrent writers
 * queue on the write lock (busy timeout), a reader polls the change feed meanwhile. */
struct writer {
    const char *db;
    int64_t adv;
    int done;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct ap_store_options o = test_options();
    struct ap_store *st = NULL;
    if (ap_store_open(w->db, &o, &st) != AP_OK)
        return NULL;
    for (int i = 0; i < 25; i++) {
        struct ap_schema_errors errs;
        json_t *in = json_pack("{s:I, s:s}", "advertiser_id", (json_int_t)w->adv, "name", "t"),
               *out = NULL;
        if (ap_store_create(st, AP_SCHEMA_CAMPAIGN, in, NULL, &out, &errs) == AP_OK)
            w->done++;
        json_decref(in);
        json_decref(out);
    }
    ap_store_close(st);
    return NULL;
}

static void test_threads(void **state)
{
    struct fx *f = *state;
    int64_t adv = mk(f->st, AP_SCHEMA_ADVERTISER,
                     "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    pthread_t th[4];
    struct writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct writer){.db = f->dir.db, .adv = adv};
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    int64_t last = 0;
    for (int polls = 0; polls < 50; polls++) { /* the snapshot builder's loop */
        int64_t v = store_version(f->st);
        assert_true(v >= last);
        last = v;
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].done, 25);
    }
    assert_int_equal(store_version(f->st), 1 + 100);
    assert_int_equal(sql_int(f->dir.db, "SELECT COUNT(*) FROM campaigns"), 100);
    assert_int_equal(audit_count(f->dir.db), 101);
}

static void test_bad_arguments(void **state)
{
    struct fx *f = *state;
    struct ap_schema_errors errs;
    json_t *out = (json_t *)1;
    struct ap_store *st = (struct ap_store *)1;
    assert_int_equal(ap_store_open(NULL, NULL, &st), AP_EINVAL);
    assert_null(st);
    assert_int_equal(ap_store_open("/nonexistent-dir/x/y.db", NULL, &st), AP_EIO);
    assert_null(st);
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_CAMPAIGN, NULL, NULL, &out, &errs),
                     AP_EINVAL);
    assert_null(out);
    json_t *notobj = J("[1]");
    assert_int_equal(ap_store_create(f->st, AP_SCHEMA_CAMPAIGN, notobj, NULL, &out, &errs),
                     AP_EINVAL);
    assert_true(has_error(&errs, ""));
    assert_int_equal(ap_store_update(f->st, AP_SCHEMA_CAMPAIGN, 1, notobj, -1, NULL, &out, &errs),
                     AP_ENOTFOUND);
    json_decref(notobj);
    assert_string_equal(ap_strerror(AP_ECONFLICT), "conflict");
    ap_store_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations),
        cmocka_unit_test_setup_teardown(test_schema_matches_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crud_every_resource, setup, teardown),
        cmocka_unit_test_setup_teardown(test_campaign_values_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_fields_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pagination_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_and_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ownership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenancy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_feed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
