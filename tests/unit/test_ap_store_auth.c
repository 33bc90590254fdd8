/* Store: users (argon2id hashes), sessions (expiry, revocation), API keys (shown once,
 * revocable, last-used), and their audit rows. Uses the cheap test-only hash parameters except
 * in test_real_password_hash, which checks the production parameters once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "test_ap_store_util.h"

struct fx {
    struct tdir dir;
    struct ap_store *st;
    int64_t adv, pub;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    test_now = 1700000000;
    tdir_make(&f->dir);
    f->st = open_store(f->dir.db);
    f->adv = mk(f->st, AP_SCHEMA_ADVERTISER,
                "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\"}");
    f->pub = mk(f->st, AP_SCHEMA_PUBLISHER,
                "{\"name\":\"P\",\"currency\":\"USD\",\"revenue_share_ppm\":500000}");
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

/* The first text column of the first row, copied into out ("" if none). */
static void sql_text(const char *db, const char *sql, char *out, size_t size)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    out[0] = '\0';
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(h);
}

/* true if needle occurs anywhere in the database files (db + WAL). */
static bool file_contains(const char *dir_db, const char *needle)
{
    char path[400];
    bool found = false;
    for (int k = 0; k < 2 && !found; k++) {
        snprintf(path, sizeof(path), "%s%s", dir_db, k ? "-wal" : "");
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        static char buf[1 << 22];
        size_t n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        size_t m = strlen(needle);
        for (size_t i = 0; i + m <= n && !found; i++)
            found = memcmp(buf + i, needle, m) == 0;
    }
    return found;
}

static int64_t mk_user(struct fx *f, const char *email, const char *role)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"correct horse\",\"role\":\"%s\","
             "\"advertiser_ids\":[%lld],\"publisher_ids\":[%lld]}",
             email, role, (long long)f->adv, (long long)f->pub);
    struct ap_schema_errors errs;
    struct ap_store_user u;
    json_t *in = J(body);
    int rc = ap_store_user_create(f->st, in, NULL, &u, &errs);
    if (rc)
        dump_errors(&errs);
    assert_int_equal(rc, AP_OK);
    int64_t id = u.id;
    ap_store_user_free(&u);
    json_decref(in);
    return id;
}

static void test_user_create_and_get(void **state)
{
    struct fx *f = *state;
    struct ap_schema_errors errs;
    struct ap_store_user u;
    char body[256];
    snprintf(body, sizeof(body),
             "{\"email\":\"Ann@Example.COM\",\"password\":\"s3cret-pass\","
             "\"role\":\"advertiser\",\"advertiser_ids\":[%lld,%lld]}",
             (long long)f->adv, (long long)f->adv);
    json_t *in = J(body);
    assert_int_equal(ap_store_user_create(f->st, in, NULL, &u, &errs), AP_OK);
    assert_true(u.id > 0);
    assert_string_equal(u.email, "ann@example.com"); /* lower-cased */
    assert_int_equal(u.role, AP_STORE_ROLE_ADVERTISER);
    assert_int_equal(u.n_advertiser_ids, 1); /* de-duplicated */
    assert_int_equal(u.advertiser_ids[0], f->adv);
    assert_int_equal(u.n_publisher_ids, 0);
    int64_t id = u.id;
    json_t *j = ap_store_user_to_json(&u);
    assert_string_equal(jstr(j, "role"), "advertiser");
    assert_null(json_object_get(j, "password"));
    assert_null(json_object_get(j, "password_hash"));
    json_decref(j);

    /* the actor of a tenant user is restricted to its tenants */
    struct ap_store_actor a;
    ap_store_actor_from_user(&u, &a);
    assert_true(a.restricted);
    assert_int_equal(a.user_id, id);
    assert_int_equal(a.n_advertiser_ids, 1);
    ap_store_user_free(&u);
    ap_store_user_free(&u); /* safe twice */

    assert_int_equal(ap_store_user_get(f->st, id, &u), AP_OK);
    assert_string_equal(u.email, "ann@example.com");
    ap_store_user_free(&u);
    assert_int_equal(ap_store_user_get_by_email(f->st, "ANN@example.com", &u), AP_OK);
    assert_int_equal(u.id, id);
    ap_store_user_free(&u);
    assert_int_equal(ap_store_user_get(f->st, 999, &u), AP_ENOTFOUND);
    assert_int_equal(ap_store_user_get_by_email(f->st, "nobody@example.com", &u), AP_ENOTFOUND);

    /* the same email again, in any case */
    json_t *dup = J("{\"email\":\"ANN@example.com\",\"password\":\"another-pass\","
                    "\"role\":\"viewer\"}");
    assert_int_equal(ap_store_user_create(f->st, dup, NULL, &u, &errs), AP_EINVAL);
    assert_true(has_error(&errs, "email"));
    json_decref(dup);
    json_decref(in);

    /* admins and viewers are unrestricted */
    int64_t admin = mk_user(f, "root@example.com", "admin");
    assert_int_equal(ap_store_user_get(f->st, admin, &u), AP_OK);
    ap_store_actor_from_user(&u, &a);
    assert_false(a.restricted);
    ap_store_user_free(&u);
}

static void test_user_validation(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"{\"password\":\"longenough\",\"role\":\"admin\"}", "email"},
        {"{\"email\":\"nope\",\"password\":\"longenough\",\"role\":\"admin\"}", "email"},
        {"{\"email\":\"a@b\",\"password\":\"longenough\",\"role\":\"admin\"}", "email"},
        {"{\"email\":\"a b@x.com\",\"password\":\"longenough\",\"role\":\"admin\"}", "email"},
        {"{\"email\":7,\"password\":\"longenough\",\"role\":\"admin\"}", "email"},
        {"{\"email\":\"a@x.com\",\"role\":\"admin\"}", "password"},
        {"{\"email\":\"a@x.com\",\"password\":\"short\",\"role\":\"admin\"}", "password"},
        {"{\"email\":\"a@x.com\",\"password\":\"long\\u0000enough\",\"role\":\"admin\"}",
         "password"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\"}", "role"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"root\"}", "role"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"admin\",\"x\":1}", "x"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"admin\",\"id\":1}", "id"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"advertiser\","
         "\"advertiser_ids\":[999]}",
         "advertiser_ids"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"publisher\","
         "\"publisher_ids\":[0]}",
         "publisher_ids[0]"},
        {"{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"publisher\","
         "\"publisher_ids\":5}",
         "publisher_ids"},
        {"[]", ""},
    };
    int64_t v = store_version(f->st);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ap_schema_errors errs;
        struct ap_store_user u;
        json_t *in = J(cases[i].body);
        int rc = ap_store_user_create(f->st, in, NULL, &u, &errs);
        if (rc != AP_EINVAL || !has_error(&errs, cases[i].field)) {
            fprintf(stderr, "case %zu: %s -> %s\n", i, cases[i].body, ap_strerror(rc));
            dump_errors(&errs);
        }
        assert_int_equal(rc, AP_EINVAL);
        assert_true(has_error(&errs, cases[i].field));
        assert_int_equal(u.id, 0);
        json_decref(in);
    }
    assert_int_equal(store_version(f->st), v);
    /* tenants do not create users */
    struct ap_store_actor tenant = {.user_id = 1, .restricted = true};
    struct ap_schema_errors errs;
    json_t *in = J("{\"email\":\"a@x.com\",\"password\":\"longenough\",\"role\":\"admin\"}");
    assert_int_equal(ap_store_user_create(f->st, in, &tenant, NULL, &errs), AP_EPERM);
    json_decref(in);
}

static void test_password_verify(void **state)
{
    struct fx *f = *state;
    int64_t id = mk_user(f, "bob@example.com", "publisher");
    struct ap_store_user u;
    assert_int_equal(ap_store_user_verify_password(f->st, "bob@example.com", "correct horse", &u),
                     AP_OK);
    assert_int_equal(u.id, id);
    assert_int_equal(u.role, AP_STORE_ROLE_PUBLISHER);
    assert_int_equal(u.n_publisher_ids, 1);
    ap_store_user_free(&u);
    assert_int_equal(ap_store_user_verify_password(f->st, "BOB@example.com", "correct horse", NULL),
                     AP_OK);
    /* wrong password and unknown user look the same */
    assert_int_equal(ap_store_user_verify_password(f->st, "bob@example.com", "wrong horse", &u),
                     AP_EPERM);
    assert_int_equal(u.id, 0);
    assert_int_equal(ap_store_user_verify_password(f->st, "eve@example.com", "correct horse", &u),
                     AP_EPERM);
    assert_int_equal(ap_store_user_verify_password(f->st, "", "", &u), AP_EPERM);
    /* the plain password is nowhere in the files */
    assert_false(file_contains(f->dir.db, "correct horse"));
}

/* The production parameters: argon2id with at least OWASP's minimum (m=19 MiB, t=2, p=1). */
static void test_real_password_hash(void **state)
{
    (void)state;
    struct tdir d;
    tdir_make(&d);
    struct ap_store_options o = {0}; /* AP_STORE_PWHASH_DEFAULT */
    struct ap_store *st = NULL;
    assert_int_equal(ap_store_open(d.db, &o, &st), AP_OK);
    struct ap_schema_errors errs;
    json_t *in = J("{\"email\":\"ops@example.com\",\"password\":\"Tr0ub4dor&3\","
                   "\"role\":\"admin\"}");
    assert_int_equal(ap_store_user_create(st, in, NULL, NULL, &errs), AP_OK);
    json_decref(in);
    char hash[256];
    sql_text(d.db, "SELECT password_hash FROM users", hash, sizeof(hash));
    unsigned m = 0, t = 0, p = 0;
    assert_int_equal(sscanf(hash, "$argon2id$v=19$m=%u,t=%u,p=%u$", &m, &t, &p), 3);
    assert_true(m >= 19456 && t >= 2 && p >= 1);
    assert_int_equal(ap_store_user_verify_password(st, "ops@example.com", "Tr0ub4dor&3", NULL),
                     AP_OK);
    ap_store_close(st);
    tdir_remove(&d);
}

static void test_sessions(void **state)
{
    struct fx *f = *state;
    int64_t uid = mk_user(f, "carol@example.com", "advertiser");
    struct ap_store_actor actor = {.user_id = uid};
    char token[AP_STORE_TOKEN_MAX], token2[AP_STORE_TOKEN_MAX];
    int64_t exp = 0, sid = 0;
    struct ap_store_user u;

    assert_int_equal(ap_store_session_create(f->st, uid, 3600, &actor, token, &exp), AP_OK);
    assert_int_equal(strncmp(token, AP_STORE_SESSION_PREFIX, 4), 0);
    assert_int_equal(strlen(token), 4 + 43); /* 256 bits, base64url */
    assert_int_equal(exp, test_now + 3600);
    assert_int_equal(ap_store_session_create(f->st, uid, 3600, &actor, token2, NULL), AP_OK);
    assert_string_not_equal(token, token2);
    /* only the hash is stored */
    assert_false(file_contains(f->dir.db, token + 4));

    assert_int_equal(ap_store_session_lookup(f->st, token, &u, &sid), AP_OK);
    assert_int_equal(u.id, uid);
    assert_int_equal(u.n_advertiser_ids, 1);
    assert_true(sid > 0);
    ap_store_user_free(&u);

    /* malformed and unknown tokens */
    char wrong[AP_STORE_TOKEN_MAX];
    snprintf(wrong, sizeof(wrong), "%s", token);
    wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
    assert_int_equal(ap_store_session_lookup(f->st, wrong, &u, NULL), AP_ENOTFOUND);
    assert_int_equal(ap_store_session_lookup(f->st, "ses_short", &u, NULL), AP_ENOTFOUND);
    assert_int_equal(ap_store_session_lookup(f->st, token + 4, &u, NULL), AP_ENOTFOUND);
    assert_int_equal(ap_store_session_lookup(f->st, NULL, &u, NULL), AP_ENOTFOUND);
    wrong[10] = '!';
    assert_int_equal(ap_store_session_lookup(f->st, wrong, &u, NULL), AP_ENOTFOUND);
    /* an API key is not a session */
    char key[AP_STORE_TOKEN_MAX];
    assert_int_equal(ap_store_apikey_create(f->st, uid, "k", &actor, key, NULL), AP_OK);
    assert_int_equal(ap_store_session_lookup(f->st, key, &u, NULL), AP_ENOTFOUND);

    /* expiry */
    test_now += 3599;
    assert_int_equal(ap_store_session_lookup(f->st, token, &u, NULL), AP_OK);
    ap_store_user_free(&u);
    test_now += 1;
    assert_int_equal(ap_store_session_lookup(f->st, token, &u, NULL), AP_ENOTFOUND);
    test_now -= 3600;

    /* revocation (logout); twice is fine; unknown is not found */
    int64_t v = store_version(f->st);
    assert_int_equal(ap_store_session_revoke(f->st, token2, &actor), AP_OK);
    assert_int_equal(store_version(f->st), v + 1);
    assert_int_equal(ap_store_session_lookup(f->st, token2, &u, NULL), AP_ENOTFOUND);
    assert_int_equal(ap_store_session_revoke(f->st, token2, &actor), AP_OK);
    assert_int_equal(store_version(f->st), v + 1);
    assert_int_equal(ap_store_session_revoke(f->st, wrong, &actor), AP_ENOTFOUND);
    /* the other session lives on */
    assert_int_equal(ap_store_session_lookup(f->st, token, &u, NULL), AP_OK);
    ap_store_user_free(&u);

    /* bad arguments */
    assert_int_equal(ap_store_session_create(f->st, uid, 0, &actor, token, NULL), AP_EINVAL);
    assert_int_equal(ap_store_session_create(f->st, 999, 60, &actor, token, NULL), AP_ENOTFOUND);
    assert_string_equal(token, "");

    /* audit: create x2, revoke x1, no token material */
    struct ap_store_audit_query q = {.resource = "session"};
    struct ap_schema_errors errs;
    json_t *page = NULL;
    assert_int_equal(ap_store_audit_list(f->st, &q, &page, &errs), AP_OK);
    json_t *data = json_object_get(page, "data");
    assert_int_equal(json_array_size(data), 3);
    assert_string_equal(jstr(json_array_get(data, 0), "action"), "revoke");
    assert_true(json_is_true(json_object_get(json_object_get(json_array_get(data, 0), "after"),
                                             "revoked")));
    char *dump = json_dumps(page, 0);
    assert_null(strstr(dump, "hash"));
    assert_null(strstr(dump, token + 4));
    free(dump);
    json_decref(page);
}

static void test_api_keys(void **state)
{
    struct fx *f = *state;
    int64_t uid = mk_user(f, "dave@example.com", "admin");
    int64_t other = mk_user(f, "erin@example.com", "viewer");
    struct ap_store_actor actor = {.user_id = uid};
    char key[AP_STORE_TOKEN_MAX], key2[AP_STORE_TOKEN_MAX];
    json_t *meta = NULL;

    assert_int_equal(ap_store_apikey_create(f->st, uid, "ci deploy", &actor, key, &meta), AP_OK);
    assert_int_equal(strncmp(key, "apk_", 4), 0);
    assert_int_equal(strlen(key), 47);
    assert_string_equal(jstr(meta, "name"), "ci deploy");
    assert_int_equal(jint(meta, "user_id"), uid);
    assert_int_equal(strncmp(jstr(meta, "prefix"), key, 12), 0); /* enough to recognise */
    assert_true(json_is_null(json_object_get(meta, "last_used_at")));
    assert_true(json_is_false(json_object_get(meta, "revoked")));
    assert_null(json_object_get(meta, "key_hash"));
    int64_t kid = jint(meta, "id");
    json_decref(meta);
    assert_false(file_contains(f->dir.db, key + 4)); /* shown once, stored as a hash */
    assert_int_equal(ap_store_apikey_create(f->st, other, "other", &actor, key2, NULL), AP_OK);

    struct ap_store_user u;
    int64_t found = 0;
    assert_int_equal(ap_store_apikey_lookup(f->st, key, &u, &found), AP_OK);
    assert_int_equal(u.id, uid);
    assert_int_equal(found, kid);
    ap_store_user_free(&u);
    assert_int_equal(ap_store_apikey_lookup(f->st, "apk_nope", &u, NULL), AP_ENOTFOUND);

    /* last used: written, then at most once a minute; no audit row, no version bump */
    int64_t v = store_version(f->st);
    assert_int_equal(ap_store_apikey_touch(f->st, kid), AP_OK);
    struct ap_schema_errors errs;
    json_t *page = NULL;
    assert_int_equal(ap_store_apikey_list(f->st, uid, NULL, &page, &errs), AP_OK);
    json_t *data = json_object_get(page, "data");
    assert_int_equal(json_array_size(data), 1);
    assert_string_equal(jstr(json_array_get(data, 0), "last_used_at"), "2023-11-14T22:13:20Z");
    json_decref(page);
    test_now += 30;
    assert_int_equal(ap_store_apikey_touch(f->st, kid), AP_OK);
    test_now += 30;
    assert_int_equal(ap_store_apikey_touch(f->st, kid), AP_OK);
    assert_int_equal(ap_store_apikey_list(f->st, uid, NULL, &page, &errs), AP_OK);
    assert_string_equal(jstr(json_array_get(json_object_get(page, "data"), 0), "last_used_at"),
                        "2023-11-14T22:14:20Z");
    json_decref(page);
    assert_int_equal(store_version(f->st), v);

    /* all keys, paginated */
    struct ap_store_list_query q = {.limit = 1};
    assert_int_equal(ap_store_apikey_list(f->st, 0, &q, &page, &errs), AP_OK);
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    assert_true(json_is_string(json_object_get(page, "next_cursor")));
    json_decref(page);

    /* revocation */
    assert_int_equal(ap_store_apikey_revoke(f->st, kid, &actor), AP_OK);
    assert_int_equal(ap_store_apikey_lookup(f->st, key, &u, NULL), AP_ENOTFOUND);
    assert_int_equal(ap_store_apikey_revoke(f->st, kid, &actor), AP_OK); /* no-op */
    assert_int_equal(ap_store_apikey_revoke(f->st, 999, &actor), AP_ENOTFOUND);
    assert_int_equal(ap_store_apikey_lookup(f->st, key2, &u, NULL), AP_OK); /* others live on */
    ap_store_user_free(&u);

    /* bad arguments */
    assert_int_equal(ap_store_apikey_create(f->st, uid, "", &actor, key, NULL), AP_EINVAL);
    assert_int_equal(ap_store_apikey_create(f->st, uid, "a\nb", &actor, key, NULL), AP_EINVAL);
    assert_int_equal(ap_store_apikey_create(f->st, 999, "x", &actor, key, NULL), AP_ENOTFOUND);
    assert_string_equal(key, "");

    /* audit: two creates and one revoke, with before/after but no hashes */
    struct ap_store_audit_query aq = {.resource = "api_key"};
    assert_int_equal(ap_store_audit_list(f->st, &aq, &page, &errs), AP_OK);
    data = json_object_get(page, "data");
    assert_int_equal(json_array_size(data), 3);
    json_t *rev = json_array_get(data, 0);
    assert_string_equal(jstr(rev, "action"), "revoke");
    assert_true(json_is_false(json_object_get(json_object_get(rev, "before"), "revoked")));
    assert_true(json_is_true(json_object_get(json_object_get(rev, "after"), "revoked")));
    assert_int_equal(jint(rev, "actor_user_id"), uid);
    char *dump = json_dumps(page, 0);
    assert_null(strstr(dump, "hash"));
    assert_null(strstr(dump, key + 12));
    free(dump);
    json_decref(page);
}

static void test_user_list_and_audit(void **state)
{
    struct fx *f = *state;
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char email[64];
        snprintf(email, sizeof(email), "u%d@example.com", i);
        ids[i] = mk_user(f, email, "viewer");
    }
    struct ap_store_list_query q = {.limit = 2};
    struct ap_schema_errors errs;
    json_t *page = NULL;
    char cursor[32] = "";
    int n = 0;
    for (;;) {
        q.cursor = cursor;
        assert_int_equal(ap_store_user_list(f->st, &q, &page, &errs), AP_OK);
        json_t *data = json_object_get(page, "data");
        for (size_t i = 0; i < json_array_size(data); i++) {
            json_t *u = json_array_get(data, i);
            assert_int_equal(jint(u, "id"), ids[n++]);
            assert_null(json_object_get(u, "password_hash"));
        }
        json_t *next = json_object_get(page, "next_cursor");
        if (json_is_null(next)) {
            json_decref(page);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(page);
    }
    assert_int_equal(n, 5);
    struct ap_store_audit_query aq = {.resource = "user", .resource_id = ids[2]};
    assert_int_equal(ap_store_audit_list(f->st, &aq, &page, &errs), AP_OK);
    json_t *row = json_array_get(json_object_get(page, "data"), 0);
    assert_string_equal(jstr(row, "action"), "create");
    assert_string_equal(jstr(json_object_get(row, "after"), "email"), "u2@example.com");
    char *dump = json_dumps(page, 0);
    assert_null(strstr(dump, "argon2"));
    free(dump);
    json_decref(page);
    assert_int_equal(store_version(f->st), 2 + 5); /* 2 fixtures + 5 users */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_create_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_verify, setup, teardown),
        cmocka_unit_test(test_real_password_hash),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_list_and_audit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
