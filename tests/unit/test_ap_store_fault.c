/* Store fault injection (SQLite's method): every write path is run with its n-th allocation
 * failing, then its n-th write/sync/truncate failing, for n = 0, 1, 2, ... until the operation
 * no longer reaches the n-th call. Each failing run must return AP_ENOMEM / AP_EIO and leave
 * the committed database exactly as before (no row, no audit row, no version bump: the
 * transaction rolled back whole) and pass integrity and foreign-key checks; a run that
 * succeeds despite the fault (SQLite retries some) must leave exactly the state of a clean
 * run. After a failure the same handle must work again. Runs in both one-shot and persistent
 * ("fail from the n-th on") modes (persistent allocation faults sampled at every 3rd point
 * unless AP_STORE_FAULT_FULL=1). Each run starts from a copy of one template database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <malloc.h>
#include <sqlite3.h>

#include "store/ap_store_fault.h"
#include "test_ap_store_util.h"

struct ctx {
    struct tdir dir;
    char template_db[320];
    struct tree t, t2; /* t2: the same shapes, for warming a handle up */
    int64_t user, key, key2;
    char token[AP_STORE_TOKEN_MAX], token2[AP_STORE_TOKEN_MAX];
};

static struct ctx g;

/* ---- the write paths ------------------------------------------------------------------------
 * Each operation comes in two variants on different rows: variant 0 warms a fresh handle up
 * (prepares its statements, as in a long-running process), variant 1 is the one under faults.
 * Inputs are built before the fault is armed (the test's own parsing must not fail). */

static json_t *in_none(int variant)
{
    (void)variant;
    return NULL;
}

static int run_create(struct ap_store *st, enum ap_schema_res res, const json_t *in)
{
    struct ap_schema_errors errs;
    json_t *out = NULL;
    int rc = ap_store_create(st, res, in, NULL, &out, &errs);
    json_decref(out);
    return rc;
}

static json_t *in_advertiser(int variant)
{
    return json_pack("{s:s, s:s, s:s}", "name", variant ? "New" : "Warm", "currency", "EUR",
                     "timezone", "Europe/Paris");
}

static int op_create_advertiser(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant;
    return run_create(st, AP_SCHEMA_ADVERTISER, in);
}

static json_t *in_campaign(int variant)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"advertiser_id\":%lld,\"name\":\"Q4\",\"targeting\":{\"countries_include\":"
             "[\"US\"],\"dayparts\":[{\"days\":[1],\"hours\":[9]}]},\"frequency_caps\":"
             "[{\"count\":2,\"window_seconds\":3600,\"scope\":\"ad\"}]}",
             (long long)(variant ? g.t.adv : g.t2.adv));
    return J(body);
}

static int op_create_campaign(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant;
    return run_create(st, AP_SCHEMA_CAMPAIGN, in);
}

static json_t *in_ad(int variant)
{
    const struct tree *t = variant ? &g.t : &g.t2;
    return json_pack("{s:I, s:I, s:s}", "campaign_id", (json_int_t)t->campaign, "creative_id",
                     (json_int_t)t->creative, "landing_url", "https://x.example/");
}

static int op_create_ad(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant;
    return run_create(st, AP_SCHEMA_AD, in);
}

static json_t *in_demand_partner(int variant)
{
    return json_pack("{s:s, s:s, s:s, s:f}", "name", "D", "bidder_code",
                     variant ? "dsp_new" : "dsp_warm", "endpoint", "https://d.example/bid",
                     "bid_adjustment", 0.9);
}

static int op_create_demand_partner(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant;
    return run_create(st, AP_SCHEMA_DEMAND_PARTNER, in);
}

static json_t *in_campaign_patch(int variant)
{
    (void)variant;
    return J("{\"status\":\"active\",\"budget_daily_micros\":5000000,"
             "\"targeting\":{\"os\":[\"ios\"]}}");
}

static int op_update_campaign(struct ap_store *st, int variant, const json_t *in)
{
    struct ap_schema_errors errs;
    json_t *out = NULL;
    int rc = ap_store_update(st, AP_SCHEMA_CAMPAIGN, variant ? g.t.campaign : g.t2.campaign, in,
                             1, NULL, &out, &errs);
    json_decref(out);
    return rc;
}

static int op_archive_placement(struct ap_store *st, int variant, const json_t *in)
{
    (void)in;
    return ap_store_archive(st, AP_SCHEMA_PLACEMENT, variant ? g.t.placement : g.t2.placement,
                            -1, NULL, NULL);
}

static json_t *in_user(int variant)
{
    return json_pack("{s:s, s:s, s:s, s:[I], s:[I]}", "email",
                     variant ? "new@example.com" : "warm@example.com", "password", "longenough",
                     "role", "advertiser", "advertiser_ids", (json_int_t)g.t.adv,
                     "publisher_ids", (json_int_t)g.t.pub);
}

static int op_user_create(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant;
    struct ap_schema_errors errs;
    struct ap_store_user u;
    int rc = ap_store_user_create(st, in, NULL, &u, &errs);
    ap_store_user_free(&u);
    return rc;
}

static int op_session_create(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant, (void)in;
    char token[AP_STORE_TOKEN_MAX];
    struct ap_store_actor a = {.user_id = g.user};
    return ap_store_session_create(st, g.user, 3600, &a, token, NULL);
}

static int op_session_revoke(struct ap_store *st, int variant, const json_t *in)
{
    (void)in;
    struct ap_store_actor a = {.user_id = g.user};
    return ap_store_session_revoke(st, variant ? g.token : g.token2, &a);
}

static int op_apikey_create(struct ap_store *st, int variant, const json_t *in)
{
    (void)variant, (void)in;
    char key[AP_STORE_TOKEN_MAX];
    json_t *meta = NULL;
    int rc = ap_store_apikey_create(st, g.user, "new key", NULL, key, &meta);
    json_decref(meta);
    return rc;
}

static int op_apikey_revoke(struct ap_store *st, int variant, const json_t *in)
{
    (void)in;
    return ap_store_apikey_revoke(st, variant ? g.key : g.key2, NULL);
}

static int op_apikey_touch(struct ap_store *st, int variant, const json_t *in)
{
    (void)in;
    return ap_store_apikey_touch(st, variant ? g.key : g.key2);
}

static const struct op {
    const char *name;
    json_t *(*input)(int variant);
    int (*run)(struct ap_store *st, int variant, const json_t *in);
} OPS[] = {
    {"create advertiser", in_advertiser, op_create_advertiser},
    {"create campaign", in_campaign, op_create_campaign},
    {"create ad", in_ad, op_create_ad},
    {"create demand partner", in_demand_partner, op_create_demand_partner},
    {"update campaign", in_campaign_patch, op_update_campaign},
    {"archive placement", in_none, op_archive_placement},
    {"create user", in_user, op_user_create},
    {"create session", in_none, op_session_create},
    {"revoke session", in_none, op_session_revoke},
    {"create api key", in_none, op_apikey_create},
    {"revoke api key", in_none, op_apikey_revoke},
    {"touch api key", in_none, op_apikey_touch},
};

/* ---- database state -------------------------------------------------------------------------- */

/* Columns whose values are random by design (hashes, salts, displayed key prefixes) or embed
 * them (audit JSON of keys): left out of the comparison. */
static bool skipped_column(const char *table, const char *col)
{
    return strstr(col, "_hash") || strcmp(col, "prefix") == 0 ||
           (strcmp(table, "audit_log") == 0 &&
            (strcmp(col, "before_json") == 0 || strcmp(col, "after_json") == 0));
}

static void append(char **s, size_t *len, size_t *cap, const char *p)
{
    size_t n = strlen(p);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *s = realloc(*s, *cap);
        assert_non_null(*s);
    }
    memcpy(*s + *len, p, n + 1);
    *len += n;
}

/* Every committed row of every table as text, plus integrity and foreign-key checks, read
 * through a separate connection: what a restarted process would find. Caller frees. */
static char *fingerprint_ex(const char *db, bool checks)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *tables = NULL;
    char *out = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    if (checks) {
        assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &tables, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(tables), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(tables, 0), "ok");
        sqlite3_finalize(tables);
        assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA foreign_key_check", -1, &tables, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(tables), SQLITE_DONE);
        sqlite3_finalize(tables);
    }

    append(&out, &len, &cap, "");
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "ORDER BY name",
                                        -1, &tables, NULL),
                     SQLITE_OK);
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *table = (const char *)sqlite3_column_text(tables, 0);
        char sql[200];
        sqlite3_stmt *rows = NULL;
        snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY rowid", table);
        if (sqlite3_prepare_v2(h, sql, -1, &rows, NULL) != SQLITE_OK) {
            /* a WITHOUT ROWID table: scanned in primary-key order */
            snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", table);
            assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &rows, NULL), SQLITE_OK);
        }
        append(&out, &len, &cap, "\n[");
        append(&out, &len, &cap, table);
        append(&out, &len, &cap, "]");
        while (sqlite3_step(rows) == SQLITE_ROW) {
            append(&out, &len, &cap, "\n");
            for (int c = 0; c < sqlite3_column_count(rows); c++) {
                if (skipped_column(table, sqlite3_column_name(rows, c)))
                    continue;
                const char *v = (const char *)sqlite3_column_text(rows, c);
                append(&out, &len, &cap, v ? v : "NULL");
                append(&out, &len, &cap, "|");
            }
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    sqlite3_close(h);
    return out;
}

static char *fingerprint(const char *db)
{
    return fingerprint_ex(db, true);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* A fresh working copy of the template; returns its path in g.dir.db. */
static void fresh_copy(void)
{
    char p[400];
    snprintf(p, sizeof(p), "%s-wal", g.dir.db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", g.dir.db);
    unlink(p);
    copy_file(g.template_db, g.dir.db);
}

static int setup(void **state)
{
    (void)state;
    memset(&g, 0, sizeof(g));
    /* tmpfs when there is one: thousands of databases are opened and checkpointed */
    if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    tdir_make(&g.dir);
    snprintf(g.template_db, sizeof(g.template_db), "%s/template.db", g.dir.path);
    struct ap_store *st = open_store(g.template_db);
    g.t = mk_tree(st, "Acme");
    g.t2 = mk_tree(st, "Beta");
    struct ap_schema_errors errs;
    struct ap_store_user u;
    json_t *in = J("{\"email\":\"admin@example.com\",\"password\":\"longenough\","
                   "\"role\":\"admin\"}");
    assert_int_equal(ap_store_user_create(st, in, NULL, &u, &errs), AP_OK);
    g.user = u.id;
    ap_store_user_free(&u);
    json_decref(in);
    assert_int_equal(ap_store_session_create(st, g.user, 3600, NULL, g.token, NULL), AP_OK);
    assert_int_equal(ap_store_session_create(st, g.user, 3600, NULL, g.token2, NULL), AP_OK);
    char key[AP_STORE_TOKEN_MAX];
    json_t *meta = NULL;
    assert_int_equal(ap_store_apikey_create(st, g.user, "k", NULL, key, &meta), AP_OK);
    g.key = jint(meta, "id");
    json_decref(meta);
    assert_int_equal(ap_store_apikey_create(st, g.user, "k2", NULL, key, &meta), AP_OK);
    g.key2 = jint(meta, "id");
    json_decref(meta);
    ap_store_close(st); /* checkpoints the WAL into the file */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tdir_remove(&g.dir);
    return 0;
}

/* ---- the loops ------------------------------------------------------------------------------- */

/* One fresh handle on a fresh copy; warmed up with variant 0 unless cold. */
static struct ap_store *fresh_store(const struct op *op, bool cold)
{
    fresh_copy();
    struct ap_store *st = open_store(g.dir.db);
    if (!cold) {
        json_t *in = op->input(0);
        assert_int_equal(op->run(st, 0, in), AP_OK);
        json_decref(in);
    }
    return st;
}

static long full_runs(void)
{
    const char *full = getenv("AP_STORE_FAULT_FULL");
    return full && strcmp(full, "1") == 0;
}

static long run_fault_loop(const struct op *op, bool cold, enum ap_store_fault_kind kind,
                           bool persistent, const char *before, const char *after)
{
    /* One-shot faults: every point. Persistent allocation faults ("from the n-th on"): every
     * 3rd point unless AP_STORE_FAULT_FULL=1, to keep the test within its time budget. */
    long n, step = persistent && kind == AP_STORE_FAULT_ALLOC && !full_runs() ? 3 : 1;
    for (n = 0;; n += step) {
        struct ap_store *st = fresh_store(op, cold);
        json_t *in = op->input(1);
        ap_store_fault_arm(kind, n, persistent);
        int rc = op->run(st, 1, in);
        ap_store_fault_disarm();
        long hits = ap_store_fault_hits(kind);
        char *fp = fingerprint(g.dir.db);
        bool ok;
        if (hits == 0) /* the operation ended before its n-th call: all points covered */
            ok = rc == AP_OK && strcmp(fp, after) == 0;
        else if (rc == AP_OK)
            ok = strcmp(fp, after) == 0;
        else
            ok = (rc == AP_ENOMEM || rc == AP_EIO) && strcmp(fp, before) == 0;
        if (!ok)
            fprintf(stderr, "%s: %s fault at %ld (%s%s, %ld hits): %s (%s)\n", op->name,
                    kind == AP_STORE_FAULT_ALLOC ? "alloc" : "I/O", n,
                    persistent ? "persistent" : "once", cold ? ", cold" : "", hits,
                    ap_strerror(rc), ap_store_errmsg(st));
        assert_true(ok);
        /* the handle is still usable: retrying without faults completes the write */
        if (rc != AP_OK) {
            assert_int_equal(op->run(st, 1, in), AP_OK);
            char *fp2 = fingerprint_ex(g.dir.db, false); /* checked above already */
            assert_string_equal(fp2, after);
            free(fp2);
        }
        free(fp);
        json_decref(in);
        ap_store_close(st);
        if (hits == 0)
            break;
    }
    return n;
}

/* The committed state after a warm-up (or nothing) and after the operation, without faults. */
static void reference(const struct op *op, bool cold, char **before, char **after)
{
    struct ap_store *st = fresh_store(op, cold);
    *before = fingerprint(g.dir.db);
    json_t *in = op->input(1);
    assert_int_equal(op->run(st, 1, in), AP_OK);
    json_decref(in);
    ap_store_close(st);
    *after = fingerprint(g.dir.db);
    assert_string_not_equal(*before, *after);
}

static void test_write_paths_under_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(OPS) / sizeof(OPS[0]); i++) {
        const struct op *op = &OPS[i];
        char *before, *after;
        reference(op, false, &before, &after);
        long a1 = run_fault_loop(op, false, AP_STORE_FAULT_ALLOC, false, before, after);
        long a2 = run_fault_loop(op, false, AP_STORE_FAULT_ALLOC, true, before, after);
        long i1 = run_fault_loop(op, false, AP_STORE_FAULT_IO, false, before, after);
        long i2 = run_fault_loop(op, false, AP_STORE_FAULT_IO, true, before, after);
        printf("  %-22s alloc points %ld/%ld, I/O points %ld/%ld\n", op->name, a1, a2, i1, i2);
        assert_true(a1 > 0 && i1 > 0);
        free(before);
        free(after);
    }
}

/* A cold handle (statements not yet prepared, schema not yet read): every failure point of
 * first use too, for one operation. */
static void test_cold_handle_under_faults(void **state)
{
    (void)state;
    const struct op *op = &OPS[1]; /* create campaign */
    char *before, *after;
    reference(op, true, &before, &after);
    long a1 = run_fault_loop(op, true, AP_STORE_FAULT_ALLOC, false, before, after);
    long i1 = run_fault_loop(op, true, AP_STORE_FAULT_IO, false, before, after);
    printf("  %-22s alloc points %ld, I/O points %ld (cold handle)\n", op->name, a1, i1);
    free(before);
    free(after);
}

/* Migrating an empty file under faults: each migration lands whole or not at all, and a
 * later migrate finishes the job. Every I/O point is tried; of the ~5000 allocation points
 * (each run creates a database from nothing) every 5th, unless AP_STORE_FAULT_FULL=1 is set:
 * migrations run once per release, the write paths above are covered point by point. */
static void test_migrations_under_faults(void **state)
{
    (void)state;
    static const char *const marker[] = {NULL, "store_version", "campaigns", "users",
                                         "rollup_hourly", "campaigns_changed",
                                         "currency_rates", "token_keys"};
    const int latest = ap_store_schema_latest();
    assert_int_equal(latest, (int)(sizeof(marker) / sizeof(marker[0])) - 1);
    long alloc_stride = full_runs() ? 1 : 5;
    for (int kind = 0; kind < AP_STORE_FAULT_KINDS; kind++) {
        long n, step = kind == AP_STORE_FAULT_ALLOC ? alloc_stride : 1;
        for (n = 0;; n += step) {
            char p[400];
            snprintf(p, sizeof(p), "%s-wal", g.dir.db);
            unlink(p);
            unlink(g.dir.db);
            struct ap_store_options o = test_options();
            o.no_migrate = true;
            struct ap_store *st = NULL;
            assert_int_equal(ap_store_open(g.dir.db, &o, &st), AP_OK);
            ap_store_fault_arm((enum ap_store_fault_kind)kind, n, false);
            int applied = 0;
            int rc = ap_store_migrate(st, &applied);
            ap_store_fault_disarm();
            long hits = ap_store_fault_hits((enum ap_store_fault_kind)kind);
            int v = -1;
            assert_int_equal(ap_store_schema_version(st, &v), AP_OK);
            assert_int_equal(v, applied);
            if (rc != AP_OK)
                assert_true(rc == AP_ENOMEM || rc == AP_EIO);
            else
                assert_int_equal(v, latest);
            /* tables of applied migrations exist, the others do not */
            sqlite3 *h;
            assert_int_equal(sqlite3_open(g.dir.db, &h), SQLITE_OK);
            for (int m = 1; m <= latest; m++) {
                char sql[128];
                sqlite3_stmt *s;
                snprintf(sql, sizeof(sql),
                         "SELECT COUNT(*) FROM sqlite_master WHERE name = '%s'", marker[m]);
                assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
                assert_int_equal(sqlite3_step(s), SQLITE_ROW);
                assert_int_equal(sqlite3_column_int(s, 0), m <= v ? 1 : 0);
                sqlite3_finalize(s);
            }
            sqlite3_close(h);
            assert_int_equal(ap_store_migrate(st, &applied), AP_OK);
            assert_int_equal(applied, latest - v);
            ap_store_close(st);
            if (hits == 0)
                break;
        }
        printf("  migrate from empty: %s points %ld (every %ld)\n", kind ? "I/O" : "alloc", n,
               step);
    }
}

int main(void)
{
    /* Thousands of short-lived connections: without this glibc keeps returning the heap top to
     * the kernel (brk + TLB flushes dominated the profile). */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    /* before any SQLite connection exists in this process */
    if (ap_store_fault_install() != AP_OK) {
        fprintf(stderr, "cannot install fault hooks\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_paths_under_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cold_handle_under_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_under_faults, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
