/* Token keys in the store (ap_store_keys_*) and the published key ring (ap_token_ring):
 * bootstrap and import, rotation (retirement, store version, audit, no key bytes in lists),
 * publication of a new ring by the refresher without a restart, overlap of the sign ring, the
 * longer life of the conversion ring, and the exported key file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>

#include "core/ap_time.h"
#include "events/ap_token.h"
#include "events/ap_token_ring.h"
#include "test_ap_store_util.h"

struct fx {
    struct tdir d;
    char db[400];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tdir_make(&f->d);
    snprintf(f->db, sizeof(f->db), "%s/adplatform.db", f->d.path);
    struct ap_store *st = open_store(f->db); /* creates and migrates */
    assert_non_null(st);
    ap_store_close(st);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char p[600];
    snprintf(p, sizeof(p), "%s/keys/token.key", f->d.path);
    unlink(p);
    snprintf(p, sizeof(p), "%s/keys", f->d.path);
    rmdir(p);
    tdir_remove(&f->d);
    free(f);
    return 0;
}

static int64_t sql_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void test_bootstrap_creates_once(void **state)
{
    struct fx *f = *state;
    bool created = false;
    assert_int_equal(ap_store_keys_bootstrap(f->db, NULL, 0, 1000, &created), AP_OK);
    assert_true(created);
    assert_int_equal(ap_store_keys_bootstrap(f->db, NULL, 0, 2000, &created), AP_OK);
    assert_false(created);
    struct ap_store_token_key k[4];
    int n = 0;
    assert_int_equal(ap_store_keys_get(f->db, 0, k, 4, &n), AP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].id, 1);
    assert_int_equal(k[0].created_at, 1000);
    assert_int_equal(k[0].retired_at, 0);
    static const uint8_t zero[AP_STORE_TOKEN_KEY_BYTES];
    assert_memory_not_equal(k[0].key, zero, sizeof(zero));
}

static void test_import_keeps_ids_and_retires_replaced_keys(void **state)
{
    struct fx *f = *state;
    struct ap_store_token_key imp[2] = {{.id = 4, .created_at = 100}, {.id = 9, .created_at = 500}};
    memset(imp[0].key, 0x11, 32);
    memset(imp[1].key, 0x22, 32);
    bool created = false;
    assert_int_equal(ap_store_keys_bootstrap(f->db, imp, 2, 1000, &created), AP_OK);
    assert_true(created);
    struct ap_store_token_key k[4];
    int n = 0;
    assert_int_equal(ap_store_keys_get(f->db, 0, k, 4, &n), AP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(k[0].id, 4);
    assert_int_equal(k[0].retired_at, 500); /* replaced by key 9 */
    assert_memory_equal(k[0].key, imp[0].key, 32);
    assert_int_equal(k[1].id, 9);
    assert_int_equal(k[1].retired_at, 0);
    assert_memory_equal(k[1].key, imp[1].key, 32);
}

static void test_rotate_retires_bumps_version_audits(void **state)
{
    struct fx *f = *state;
    bool created = false;
    assert_int_equal(ap_store_keys_bootstrap(f->db, NULL, 0, 1000, &created), AP_OK);
    int64_t v0 = 0, v1 = 0, id = 0;
    assert_int_equal(ap_store_keys_version(f->db, &v0), AP_OK);
    assert_int_equal(ap_store_keys_rotate(f->db, 0, 2000, &id), AP_OK);
    assert_int_equal(id, 2);
    assert_int_equal(ap_store_keys_version(f->db, &v1), AP_OK);
    assert_true(v1 == v0 + 1);
    assert_int_equal(ap_store_keys_rotate(f->db, 0, 3000, &id), AP_OK);
    assert_int_equal(id, 3);
    struct ap_store_token_key k[8];
    int n = 0;
    assert_int_equal(ap_store_keys_get(f->db, 0, k, 8, &n), AP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(k[0].retired_at, 2000);
    assert_int_equal(k[1].retired_at, 3000);
    assert_int_equal(k[2].retired_at, 0);
    assert_memory_not_equal(k[1].key, k[2].key, 32);
    /* keys retired at or before the cut-off are left out; the newest `cap` are kept */
    assert_int_equal(ap_store_keys_get(f->db, 2000, k, 8, &n), AP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(k[0].id, 2);
    assert_int_equal(ap_store_keys_get(f->db, 0, k, 1, &n), AP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].id, 3);
    assert_int_equal(sql_int(f->db, "SELECT COUNT(*) FROM audit_log WHERE action = 'rotate' "
                                    "AND resource = 'token_keys'"),
                     2);
    /* the list has ids and dates only */
    json_t *list = NULL;
    assert_int_equal(ap_store_keys_list_json(f->db, &list), AP_OK);
    assert_int_equal(json_array_size(list), 3);
    json_t *first = json_array_get(list, 0);
    assert_int_equal(jint(first, "id"), 3);
    assert_true(json_is_true(json_object_get(first, "current")));
    assert_true(json_is_null(json_object_get(first, "retired_at")));
    assert_int_equal(jint(json_array_get(list, 2), "retired_at"), 2000);
    size_t i;
    json_t *o;
    json_array_foreach (list, i, o)
        assert_int_equal(json_object_size(o), 4);
    json_decref(list);
}

static void sample(struct ap_token *t, uint8_t type, int64_t issued)
{
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->campaign_id = 1;
    t->ad_id = 2;
    t->placement_id = 3;
    t->publisher_id = 4;
    t->price_micros = 5;
    t->issued_at = issued;
}

/* Waits up to 3 s for the published ring to change from old. */
static const struct ap_token_rings *wait_new(const struct ap_token_rings *old)
{
    for (int i = 0; i < 300; i++) {
        const struct ap_token_rings *r = ap_token_ring_get();
        if (r != old)
            return r;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return old;
}

static void test_ring_imports_file_and_publishes_rotation(void **state)
{
    struct fx *f = *state;
    /* an old data dir: a key file and an empty table */
    char kf[600];
    snprintf(kf, sizeof(kf), "%s/keys/token.key", f->d.path);
    struct ap_token_keyring file = {0};
    file.overlap = 60;
    uint8_t key[AP_TOKEN_KEY_BYTES];
    memset(key, 0x5a, sizeof(key));
    int64_t now = ap_time_unix();
    assert_int_equal(ap_token_keyring_add(&file, 3, now - 100, key), AP_OK);
    char kd[600];
    snprintf(kd, sizeof(kd), "%s/keys", f->d.path);
    assert_int_equal(mkdir(kd, 0700), 0);
    assert_int_equal(ap_token_keyring_save(&file, kf), AP_OK);
    struct ap_token t;
    sample(&t, AP_TOKEN_IMP, now);
    char old_tok[AP_TOKEN_MAX_TEXT], old_cid[AP_TOKEN_MAX_HEX];
    assert_true(ap_token_sign(&file, &t, old_tok, sizeof(old_tok)) > 0);
    sample(&t, AP_TOKEN_CONV, now);
    assert_true(ap_token_sign_hex(&file, &t, old_cid, sizeof(old_cid)) > 0);

    char err[256] = "";
    struct ap_token_ring_options o = {.data_dir = f->d.path, .overlap = 60, .refresh_ms = 20};
    assert_int_equal(ap_token_ring_start(&o, err, sizeof(err)), AP_OK);
    assert_int_equal(ap_token_ring_start(&o, err, sizeof(err)), AP_OK); /* a second user */
    const struct ap_token_rings *r1 = ap_token_ring_get();
    assert_non_null(r1);
    assert_int_equal(r1->sign.n, 1);
    assert_int_equal(r1->sign.keys[0].id, 3);
    assert_int_equal(r1->sign.overlap, 60);
    assert_true(r1->conv.overlap >= AP_TOKEN_TTL_CONV + AP_TOKEN_MAX_SKEW);
    struct ap_token out;
    assert_int_equal(ap_token_verify(&r1->sign, ap_span_cstr(old_tok), now, 3600, &out), AP_OK);

    int64_t id = 0;
    /* a rotation (as the API or the CLI does it) is published by the refresher */
    assert_int_equal(ap_store_keys_rotate(f->db, 0, now, &id), AP_OK);
    assert_int_equal(id, 4);
    const struct ap_token_rings *r2 = wait_new(r1);
    assert_ptr_not_equal(r2, r1);
    assert_int_equal(r2->sign.n, 2);
    assert_int_equal(r2->sign.keys[1].id, 4);
    assert_int_equal(r1->sign.keys[0].id, 3); /* the old ring is still readable */
    sample(&t, AP_TOKEN_IMP, now);
    char new_tok[AP_TOKEN_MAX_TEXT];
    assert_true(ap_token_sign(&r2->sign, &t, new_tok, sizeof(new_tok)) > 0);
    assert_int_equal(t.key_id, 4);
    /* the old key: accepted within the overlap, refused after it */
    assert_int_equal(ap_token_verify(&r2->sign, ap_span_cstr(old_tok), now + 59, 3600, &out),
                     AP_OK);
    assert_int_equal(ap_token_verify(&r2->sign, ap_span_cstr(old_tok), now + 61, 3600, &out),
                     AP_EPERM);
    /* click ids signed with it still convert for the 30-day window */
    int64_t later = now + 29 * 24 * 3600;
    assert_int_equal(ap_token_verify_hex(&r2->sign, ap_span_cstr(old_cid), later,
                                         AP_TOKEN_TTL_CONV, &out),
                     AP_EPERM);
    assert_int_equal(ap_token_verify_hex(&r2->conv, ap_span_cstr(old_cid), later,
                                         AP_TOKEN_TTL_CONV, &out),
                     AP_OK);
    /* the exported file follows the store */
    struct ap_token_keyring exported;
    assert_int_equal(ap_token_keyring_load(&exported, kf, 60, now), AP_OK);
    assert_int_equal(exported.n, 2);
    assert_int_equal(exported.keys[1].id, 4);
    assert_memory_equal(exported.keys[1].key, r2->sign.keys[1].key, AP_TOKEN_KEY_BYTES);

    /* an explicit refresh with nothing new keeps the published ring */
    assert_int_equal(ap_token_ring_refresh(), AP_OK);
    assert_ptr_equal(ap_token_ring_get(), r2);
    ap_token_ring_stop();
    assert_ptr_equal(ap_token_ring_get(), r2); /* one user left */
    ap_token_ring_stop();
    assert_null(ap_token_ring_get());

    /* a restart reads the same keys from the store (the file is not re-imported) */
    assert_int_equal(ap_token_ring_start(&o, err, sizeof(err)), AP_OK);
    const struct ap_token_rings *r3 = ap_token_ring_get();
    assert_int_equal(r3->sign.n, 2);
    assert_int_equal(r3->sign.keys[1].id, 4);
    assert_int_equal(ap_token_verify(&r3->sign, ap_span_cstr(new_tok), now, 3600, &out), AP_OK);
    ap_token_ring_stop();
}

static void test_ring_creates_a_key_without_file(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct ap_token_ring_options o = {.data_dir = f->d.path};
    assert_int_equal(ap_token_ring_start(&o, err, sizeof(err)), AP_OK);
    const struct ap_token_rings *r = ap_token_ring_get();
    assert_int_equal(r->sign.n, 1);
    assert_int_equal(r->sign.overlap, AP_TOKEN_DEFAULT_OVERLAP);
    struct ap_token t;
    sample(&t, AP_TOKEN_CLICK, ap_time_unix());
    char tok[AP_TOKEN_MAX_TEXT];
    assert_true(ap_token_sign(&r->sign, &t, tok, sizeof(tok)) > 0);
    struct ap_token out;
    assert_int_equal(ap_token_verify(&r->conv, ap_span_cstr(tok), ap_time_unix(), 60, &out),
                     AP_OK);
    ap_token_ring_stop();
}

static void test_ring_fails_without_a_store(void **state)
{
    (void)state;
    char err[256] = "";
    struct ap_token_ring_options o = {.data_dir = "/nonexistent/ap_token_ring"};
    assert_int_not_equal(ap_token_ring_start(&o, err, sizeof(err)), AP_OK);
    assert_true(err[0] != '\0');
    assert_null(ap_token_ring_get());
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bootstrap_creates_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_keeps_ids_and_retires_replaced_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rotate_retires_bumps_version_audits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_imports_file_and_publishes_rotation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ring_creates_a_key_without_file, setup, teardown),
        cmocka_unit_test(test_ring_fails_without_a_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
