/* Store faults seen through the REST API (issue 3: "injected I/O errors and allocation failures
 * in the write paths leave the store consistent and the API answering 5xx cleanly").
 *
 * The control plane runs in this process (ap_api on a real ap_server with 2 threads on
 * 127.0.0.1, a free port) with the store's fault hooks installed (ap_store_fault.h: SQLite's and
 * jansson's allocators, the store's own allocations, and every write/sync/truncate of the
 * database files). For each write route, for n = 0, 1, 2, ...: arm the n-th allocation (then
 * the n-th I/O call) to fail, send the request over a socket, disarm; stop when a run no longer
 * reaches the n-th call. Every answer must be either the route's success status or a 5xx with
 * the standard JSON error body (never a 4xx that blames the client, never a dropped
 * connection), and the database must be in exactly one of two states: as before (nothing
 * written: same store version, same rows, same audit log) or fully written (version + 1, the row
 * changed, one more audit row). After each route the server still serves a read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/ap_api.h"
#include "core/ap_log.h"
#include "net/ap_server.h"
#include "store/ap_store_fault.h"
#include "test_ap_store_util.h"

struct fx {
    struct tdir dir;
    struct ap_router router;
    struct ap_server *srv;
    int port;
    char key[AP_STORE_TOKEN_MAX];
    int64_t adv;
    sqlite3 *db; /* a plain connection for checking the committed state (opened before faults
                    are armed; reads only, with no fault armed) */
};

static struct fx F;

/* ---- a tiny HTTP client ------------------------------------------------------------------- */

struct resp {
    int status;
    char body[8192];
};

/* One request on its own connection; false if the connection failed or the answer is not
 * HTTP (a crash or a dropped connection shows up here). */
static bool http(const char *method, const char *path, const char *body, struct resp *r)
{
    char req[4096];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, F.key, blen, body ? body : "");
    assert_true(n > 0 && (size_t)n < sizeof(req));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)F.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              write(fd, req, (size_t)n) == (ssize_t)n;
    static char buf[65536];
    size_t len = 0;
    ssize_t got;
    while (ok && len < sizeof(buf) - 1 && (got = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    r->status = 0;
    r->body[0] = '\0';
    if (!ok || sscanf(buf, "HTTP/1.1 %d ", &r->status) != 1)
        return false;
    const char *b = strstr(buf, "\r\n\r\n");
    if (b)
        snprintf(r->body, sizeof(r->body), "%s", b + 4);
    return true;
}

/* The body is exactly {"error": {"code": str, "message": str, "fields": [...]}}. */
static void assert_error_body(const struct resp *r)
{
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    if (!j)
        fail_msg("status %d with a body that is not JSON: %s", r->status, r->body);
    json_t *err = json_object_get(j, "error");
    assert_int_equal(json_object_size(j), 1);
    assert_true(json_is_object(err));
    assert_true(json_is_string(json_object_get(err, "code")));
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_true(json_is_array(json_object_get(err, "fields")));
    json_decref(j);
}

static int64_t json_id(const struct resp *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    int64_t id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    assert_true(id > 0);
    return id;
}

/* ---- the committed state ------------------------------------------------------------------- */

struct state {
    int64_t version, audit, rows, row_version;
    char row_status[32];
};

static int64_t q_i64(const char *sql, int64_t arg)
{
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(F.db, sql, -1, &s, NULL), SQLITE_OK);
    if (arg)
        sqlite3_bind_int64(s, 1, arg);
    int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* table: the route's table; id: the row a PATCH/DELETE works on (0 for creates). */
static struct state state_of(const char *table, int64_t id)
{
    struct state st = {0};
    char sql[256];
    st.version = q_i64("SELECT version FROM store_version WHERE id = 1", 0);
    st.audit = q_i64("SELECT count(*) FROM audit_log", 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    st.rows = q_i64(sql, 0);
    if (id && strcmp(table, "api_keys") != 0) {
        snprintf(sql, sizeof(sql), "SELECT version FROM %s WHERE id = ?1", table);
        st.row_version = q_i64(sql, id);
        sqlite3_stmt *s = NULL;
        snprintf(sql, sizeof(sql), "SELECT status FROM %s WHERE id = ?1", table);
        assert_int_equal(sqlite3_prepare_v2(F.db, sql, -1, &s, NULL), SQLITE_OK);
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW)
            snprintf(st.row_status, sizeof(st.row_status), "%s", sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
    }
    return st;
}

static void assert_db_sound(void)
{
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(F.db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(F.db, "PRAGMA foreign_key_check", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
}

/* ---- the routes under test ------------------------------------------------------------- */

#define BUF 1024 /* method, path and body buffers of an attempt */
#define SET(dst, ...) snprintf(dst, BUF, __VA_ARGS__)

struct op {
    const char *name;
    const char *table;
    int ok_status;
    /* Prepares one attempt (faults disarmed): fills method, path, body; returns the row id it
     * works on (0 for a create). */
    int64_t (*prepare)(char *method, char *path, char *body);
    /* What a complete write changes, given the state before it. */
    void (*applied)(const struct state *before, const struct state *after);
};

static int64_t new_campaign(void)
{
    char body[128];
    struct resp r;
    snprintf(body, sizeof(body), "{\"advertiser_id\":%lld,\"name\":\"target\"}", (long long)F.adv);
    assert_true(http("POST", "/api/v1/campaigns", body, &r));
    assert_int_equal(r.status, 201);
    return json_id(&r);
}

static int64_t prep_create_campaign(char *method, char *path, char *body)
{
    SET(method, "%s", "POST");
    SET(path, "%s", "/api/v1/campaigns");
    SET(body,
        "{\"advertiser_id\":%lld,\"name\":\"Q4 sale\",\"price_micros\":1500000,"
        "\"budget_daily_micros\":100000000,\"targeting\":{\"countries_include\":[\"US\","
        "\"CA\"],\"keywords\":{\"any\":[\"sports\"]}},\"frequency_caps\":[{\"count\":3,"
        "\"window_seconds\":3600,\"scope\":\"campaign\"}]}",
        (long long)F.adv);
    return 0;
}

static void applied_create(const struct state *b, const struct state *a)
{
    assert_int_equal(a->rows, b->rows + 1);
}

static int64_t prep_patch_campaign(char *method, char *path, char *body)
{
    static int64_t id;
    static int k;
    if (!id)
        id = new_campaign();
    SET(method, "%s", "PATCH");
    SET(path, "/api/v1/campaigns/%lld", (long long)id);
    k++;
    SET(body, "{\"name\":\"renamed %d\",\"priority\":%d}", k, k % 10);
    return id;
}

static void applied_update(const struct state *b, const struct state *a)
{
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->row_version, b->row_version + 1);
}

static int64_t prep_archive_campaign(char *method, char *path, char *body)
{
    int64_t id = new_campaign();
    SET(method, "%s", "DELETE");
    SET(path, "/api/v1/campaigns/%lld", (long long)id);
    body[0] = '\0';
    return id;
}

static void applied_archive(const struct state *b, const struct state *a)
{
    assert_int_equal(a->rows, b->rows);
    assert_string_not_equal(b->row_status, "archived");
    assert_string_equal(a->row_status, "archived");
}

static int64_t prep_create_advertiser(char *method, char *path, char *body)
{
    SET(method, "%s", "POST");
    SET(path, "%s", "/api/v1/advertisers");
    SET(body, "%s", "{\"name\":\"Acme\",\"currency\":\"EUR\",\"timezone\":\"Europe/Paris\"}");
    return 0;
}

static int64_t prep_create_key(char *method, char *path, char *body)
{
    SET(method, "%s", "POST");
    SET(path, "%s", "/api/v1/api-keys");
    SET(body, "%s", "{\"name\":\"script\"}");
    return 0;
}

static const struct op ops[] = {
    {"create campaign", "campaigns", 201, prep_create_campaign, applied_create},
    {"update campaign", "campaigns", 200, prep_patch_campaign, applied_update},
    {"archive campaign", "campaigns", 200, prep_archive_campaign, applied_archive},
    {"create advertiser", "advertisers", 201, prep_create_advertiser, applied_create},
    {"create api key", "api_keys", 201, prep_create_key, applied_create},
};

/* Runs op with the n-th call of kind failing (persistent: and every later one) for n = 0, 1, ...
 * (step apart) until a run reaches no fault. Returns the number of 5xx answers. */
static long run_op(const struct op *op, enum ap_store_fault_kind kind, bool persistent, long step)
{
    char method[BUF], path[BUF], body[BUF];
    long failed = 0, n;
    for (n = 0; n < 100000; n += step) {
        int64_t id = op->prepare(method, path, body);
        struct state before = state_of(op->table, id);
        struct resp r;
        ap_store_fault_arm(kind, n, persistent);
        bool answered = http(method, path, body[0] ? body : NULL, &r);
        ap_store_fault_disarm();
        long hits = ap_store_fault_hits(kind);
        if (!answered)
            fail_msg("%s, %s fault at %ld: no HTTP answer (crash or dropped connection)", op->name,
                     kind == AP_STORE_FAULT_IO ? "I/O" : "allocation", n);
        struct state after = state_of(op->table, id);
        if (r.status == op->ok_status) {
            assert_int_equal(after.version, before.version + 1);
            assert_int_equal(after.audit, before.audit + 1);
            op->applied(&before, &after);
        } else {
            if (r.status < 500)
                fail_msg("%s, %s fault at %ld: answered %d %s", op->name,
                         kind == AP_STORE_FAULT_IO ? "I/O" : "allocation", n, r.status, r.body);
            assert_error_body(&r);
            failed++;
            /* nothing half-written: either nothing or the whole write (a fault after the
             * commit, e.g. while encoding the answer, may still fail the response) */
            if (after.version == before.version) {
                assert_int_equal(after.audit, before.audit);
                assert_int_equal(after.rows, before.rows);
                assert_int_equal(after.row_version, before.row_version);
                assert_string_equal(after.row_status, before.row_status);
            } else {
                assert_int_equal(after.version, before.version + 1);
                assert_int_equal(after.audit, before.audit + 1);
                op->applied(&before, &after);
            }
        }
        if (hits == 0)
            break;
    }
    assert_true(n > 0); /* the route did reach the hooks */
    assert_db_sound();
    /* the server keeps serving */
    struct resp r;
    char p[64];
    snprintf(p, sizeof(p), "/api/v1/advertisers/%lld", (long long)F.adv);
    assert_true(http("GET", p, NULL, &r));
    assert_int_equal(r.status, 200);
    return failed;
}

static void test_alloc_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        long failed = run_op(&ops[i], AP_STORE_FAULT_ALLOC, false, 1);
        print_message("%-18s allocation faults: %ld answered 5xx\n", ops[i].name, failed);
        assert_true(failed > 0);
    }
}

static void test_io_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        long failed = run_op(&ops[i], AP_STORE_FAULT_IO, false, 1);
        failed += run_op(&ops[i], AP_STORE_FAULT_IO, true, 1);
        print_message("%-18s I/O faults: %ld answered 5xx\n", ops[i].name, failed);
        assert_true(failed > 0);
    }
}

static void test_persistent_alloc_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        run_op(&ops[i], AP_STORE_FAULT_ALLOC, true, 7);
}

/* ---- set-up --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    char err[256];
    struct ap_store *st = NULL;
    struct ap_schema_errors errs;
    struct ap_store_user u = {0};

    ap_log_set_level_name("error");
    if (ap_store_fault_install() != AP_OK)
        return -1;
    tdir_make(&F.dir);
    struct ap_api_options ao = {.data_dir = F.dir.path, .data_listen = "127.0.0.1:1"};
    if (ap_api_init(&ao, err, sizeof(err)) != AP_OK) {
        fprintf(stderr, "ap_api_init: %s\n", err);
        return -1;
    }
    /* an admin and its key, written directly (cheap hashing) */
    char dbpath[400];
    snprintf(dbpath, sizeof(dbpath), "%s/adplatform.db", F.dir.path);
    struct ap_store_options o = {.pwhash = AP_STORE_PWHASH_TEST_ONLY};
    if (ap_store_open(dbpath, &o, &st) != AP_OK)
        return -1;
    json_t *ub = json_pack("{s:s, s:s, s:s}", "email", "admin@example.com", "password",
                           "admin-password", "role", "admin");
    int rc = ap_store_user_create(st, ub, NULL, &u, &errs);
    json_decref(ub);
    if (rc == AP_OK)
        rc = ap_store_apikey_create(st, u.id, "test", NULL, F.key, NULL);
    ap_store_user_free(&u);
    ap_store_close(st);
    if (rc != AP_OK)
        return -1;
    if (sqlite3_open_v2(dbpath, &F.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;

    ap_router_init(&F.router);
    if (ap_api_register(&F.router) != AP_OK)
        return -1;
    struct ap_server_config sc = {
        .name = "admin",
        .host = "127.0.0.1",
        .threads = 2,
        .max_connections = 64,
        .backlog = 64,
        .limits = {.max_header_bytes = 16384,
                   .max_uri = 8192,
                   .max_body = 1 << 20,
                   .max_header_count = 64},
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .drain_timeout_ms = 1000,
        .max_response = 1 << 24,
        .router = &F.router,
        .io_backend = AP_LOOP_EPOLL,
    };
    F.srv = ap_server_create(&sc, &rc);
    if (!F.srv || ap_server_start(F.srv) != AP_OK)
        return -1;
    ap_server_set_ready(F.srv, true);
    F.port = ap_server_port(F.srv);

    struct resp r;
    if (!http("POST", "/api/v1/advertisers",
              "{\"name\":\"Owner\",\"currency\":\"USD\",\"timezone\":\"UTC\"}", &r) ||
        r.status != 201)
        return -1;
    F.adv = json_id(&r);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (F.srv) {
        ap_server_drain(F.srv);
        ap_server_join(F.srv);
        ap_server_destroy(F.srv);
    }
    sqlite3_close(F.db);
    tdir_remove(&F.dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_faults),
        cmocka_unit_test(test_io_faults),
        cmocka_unit_test(test_persistent_alloc_faults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
