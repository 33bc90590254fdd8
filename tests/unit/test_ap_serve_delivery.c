/* Delivery control: pacing over a compressed day, budgets and goals, frequency caps (windows,
 * expiry, concurrency on several threads), consent gating, persistence across restarts, and
 * snapshot swaps under load with RCU readers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "core/ap_error.h"
#include "core/ap_time.h"
#include "test_ap_serve_util.h"

#define DAY0 (T_NOW / 86400 * 86400) /* midnight UTC */

static struct ap_serve_delivery *new_delivery(const char *path)
{
    struct ap_serve_delivery_options o = {1024, path};
    int err;
    struct ap_serve_delivery *d = ap_serve_delivery_create(&o, &err);
    assert_non_null(d);
    return d;
}

static void test_pacing_compressed_day(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 3);
    struct ap_serve_delivery *d = new_delivery(NULL);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    /* 50 USD a day at 1 USD CPM = 50,000 impressions; 2 opportunities a second = 172,800 */
    t_campaign(&r, 10, 1, "\"pacing\":\"even\",\"budget_daily_micros\":50000000");
    t_ad(&r, 100, 10, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, d, DAY0);
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, DAY0);
    const int64_t budget = 50000000, per_hour = budget / 24;
    int64_t hour_start = 0, served = 0;
    for (int64_t sec = 0; sec < 86400; sec++) {
        ctx.now = DAY0 + sec;
        for (int k = 0; k < 2; k++)
            served += t_decide1(s, d, &rng, &ctx, &arena) == 100;
        ap_serve_delivery_tick(d, s, ctx.now, (uint64_t)(sec + 1) * 1000000000ull);
        if ((sec + 1) % 3600 == 0) {
            struct ap_serve_campaign_counters c;
            assert_int_equal(ap_serve_delivery_counters(d, s, 10, ctx.now, &c), AP_OK);
            int64_t in_hour = c.spent_today_micros - hour_start;
            hour_start = c.spent_today_micros;
            if (in_hour < per_hour * 9 / 10 || in_hour > per_hour * 11 / 10)
                fail_msg("hour %lld: spent %lld, want %lld +-10%%", (long long)(sec / 3600),
                         (long long)in_hour, (long long)per_hour);
            assert_true(c.spent_today_micros <= budget);
        }
    }
    struct ap_serve_campaign_counters c;
    ap_serve_delivery_counters(d, s, 10, DAY0 + 86399, &c);
    assert_true(c.spent_today_micros <= budget);
    assert_true(c.spent_today_micros >= budget * 95 / 100);
    assert_int_equal(c.impressions, served);
    /* the next day starts from zero */
    ctx.now = DAY0 + 86400 + 10;
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 100);
    ap_serve_delivery_counters(d, s, 10, ctx.now, &c);
    assert_int_equal(c.spent_today_micros, 1000);
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

static void test_budgets_and_goals(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 3);
    struct ap_serve_delivery *d = new_delivery(NULL);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    /* CPM 1.234567: 10 impressions cost 12345.67 micros; a 0.1 daily budget buys 81 */
    t_campaign(&r, 10, 1,
               "\"price_micros\":1234567,\"budget_daily_micros\":100000,"
               "\"targeting\":{\"keywords\":{\"any\":[\"d\"]}}");
    t_ad(&r, 100, 10, 1, "");
    t_campaign(&r, 11, 1,
               "\"budget_lifetime_micros\":7000,\"targeting\":{\"keywords\":{\"any\":[\"l\"]}}");
    t_ad(&r, 110, 11, 1, "");
    t_campaign(&r, 12, 1,
               "\"goal_type\":\"impressions\",\"goal_count\":5,"
               "\"targeting\":{\"keywords\":{\"any\":[\"g\"]}}");
    t_ad(&r, 120, 12, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, d, T_NOW);
    struct ap_serve_ctx ctx;
    char scratch[64];
    int n = 0;
    t_ctx(&ctx, "kw=d", scratch, sizeof(scratch));
    for (int i = 0; i < 1000; i++)
        n += t_decide1(s, d, &rng, &ctx, &arena) == 100;
    assert_int_equal(n, 81);
    struct ap_serve_campaign_counters c;
    ap_serve_delivery_counters(d, s, 10, T_NOW, &c);
    assert_true(c.spent_today_micros <= 100000);
    n = 0;
    t_ctx(&ctx, "kw=l", scratch, sizeof(scratch));
    for (int i = 0; i < 100; i++)
        n += t_decide1(s, d, &rng, &ctx, &arena) == 110;
    assert_int_equal(n, 7); /* 1 USD CPM = 1000 micros each, lifetime 7000 */
    n = 0;
    t_ctx(&ctx, "kw=g", scratch, sizeof(scratch));
    for (int i = 0; i < 100; i++)
        n += t_decide1(s, d, &rng, &ctx, &arena) == 120;
    assert_int_equal(n, 5);
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

static void test_fcap_window_and_consent(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 3);
    struct ap_serve_delivery *d = new_delivery(NULL);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    t_campaign(&r, 10, 1,
               "\"frequency_caps\":[{\"count\":2,\"window_seconds\":60,\"scope\":"
               "\"campaign\"},{\"count\":1,\"window_seconds\":3600,\"scope\":\"ad\"}]");
    t_ad(&r, 100, 10, 1, "");
    t_ad(&r, 101, 10, 1, "");
    t_ad(&r, 102, 10, 1, "");
    t_campaign(&r, 20, 1, "\"priority_tier\":\"house\"");
    t_ad(&r, 200, 20, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, d, T_NOW);
    struct ap_serve_ctx ctx;
    char scratch[64];
    t_ctx(&ctx, "user=alice", scratch, sizeof(scratch));
    /* per ad once an hour, per campaign twice a minute */
    int64_t a = t_decide1(s, d, &rng, &ctx, &arena), b = t_decide1(s, d, &rng, &ctx, &arena);
    assert_true(a >= 100 && a <= 102 && b >= 100 && b <= 102 && a != b);
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 200); /* campaign cap */
    ctx.now += 75; /* the minute window has passed (bucket width 12 s) */
    int64_t c3 = t_decide1(s, d, &rng, &ctx, &arena);
    assert_true(c3 >= 100 && c3 <= 102 && c3 != a && c3 != b);
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 200); /* every ad shown this hour */
    ctx.now += 3600 + 720;
    assert_true(t_decide1(s, d, &rng, &ctx, &arena) < 200);
    /* another user is independent */
    t_ctx(&ctx, "user=bob", scratch, sizeof(scratch));
    assert_true(t_decide1(s, d, &rng, &ctx, &arena) < 200);
    /* no storage consent: no per-user state at all (non-personal mode), nothing counted */
    t_ctx(&ctx, "user=carol;nostorage", scratch, sizeof(scratch));
    for (int i = 0; i < 10; i++)
        assert_true(t_decide1(s, d, &rng, &ctx, &arena) < 200);
    t_ctx(&ctx, "user=carol", scratch, sizeof(scratch));
    assert_true(t_decide1(s, d, &rng, &ctx, &arena) < 200); /* carol has no history */
    /* anonymous: likewise */
    t_ctx(&ctx, "", scratch, sizeof(scratch));
    for (int i = 0; i < 5; i++)
        assert_true(t_decide1(s, d, &rng, &ctx, &arena) < 200);
    /* expired entries are swept */
    ap_serve_delivery_sweep_all(d, T_NOW + 86400 * 3);
    t_ctx(&ctx, "user=alice", scratch, sizeof(scratch));
    assert_true(t_decide1(s, d, &rng, &ctx, &arena) < 200);
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

/* ---- concurrency ------------------------------------------------------------------------ */

#define NTHREADS 4
#define NUSERS 64
#define CAP 5

struct fc_arg {
    const struct ap_serve_snapshot *s;
    struct ap_serve_delivery *d;
    int seed;
    int served[NUSERS];
};

static void *fc_thread(void *p)
{
    struct fc_arg *a = p;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, (uint64_t)a->seed);
    struct ap_serve_ctx ctx;
    for (int i = 0; i < 20000; i++) {
        int u = i % NUSERS;
        ap_serve_ctx_init(&ctx, T_NOW);
        snprintf(ctx.user_key, sizeof(ctx.user_key), "user-%d", u);
        if (t_decide1(a->s, a->d, &rng, &ctx, &arena) == 100)
            a->served[u]++;
    }
    ap_arena_destroy(&arena);
    return NULL;
}

static void test_fcap_concurrent(void **state)
{
    (void)state;
    struct ap_serve_delivery *d = new_delivery(NULL);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    t_campaign(&r, 10, 1,
               "\"frequency_caps\":[{\"count\":5,\"window_seconds\":86400,\"scope\":"
               "\"campaign\"}]");
    t_ad(&r, 100, 10, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, d, T_NOW);
    struct fc_arg args[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].s = s;
        args[i].d = d;
        args[i].seed = i + 1;
        pthread_create(&th[i], NULL, fc_thread, &args[i]);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int u = 0; u < NUSERS; u++) {
        int total = 0;
        for (int i = 0; i < NTHREADS; i++)
            total += args[i].served[u];
        if (total != CAP)
            fail_msg("user %d saw the ad %d times, cap %d", u, total, CAP);
    }
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    t_rows_free(&r);
}

static void test_persistence(void **state)
{
    (void)state;
    char dir[] = "/tmp/apserve.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/delivery.state", dir);
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 3);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    t_campaign(&r, 10, 1,
               "\"budget_lifetime_micros\":5000,\"frequency_caps\":[{\"count\":2,"
               "\"window_seconds\":3600,\"scope\":\"campaign\"}]");
    t_ad(&r, 100, 10, 1, "");
    struct ap_serve_delivery *d = new_delivery(path);
    struct ap_serve_snapshot *s = t_build(&r, d, T_NOW);
    struct ap_serve_ctx ctx;
    char scratch[64];
    t_ctx(&ctx, "user=dave", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 100);
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 100);
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 0);
    t_ctx(&ctx, "user=erin", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 100);
    assert_int_equal(ap_serve_delivery_save(d), AP_OK);
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    /* "restart" */
    d = new_delivery(path);
    s = t_build(&r, d, T_NOW);
    struct ap_serve_campaign_counters c;
    assert_int_equal(ap_serve_delivery_counters(d, s, 10, T_NOW, &c), AP_OK);
    assert_int_equal(c.impressions, 3);
    assert_int_equal(c.spent_lifetime_micros, 3000);
    t_ctx(&ctx, "user=dave", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 0); /* still capped */
    t_ctx(&ctx, "user=erin", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 100);
    t_ctx(&ctx, "user=frank", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 100);
    assert_int_equal(t_decide1(s, d, &rng, &ctx, &arena), 0); /* lifetime budget: 5 served */
    ap_serve_snapshot_free(s);
    ap_serve_delivery_destroy(d);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
    unlink(path);
    rmdir(dir);
}

/* ---- snapshot swap under load ------------------------------------------------------------- */

static struct ap_serve_snapshot *g_snap;
static _Atomic bool g_stop;
static _Atomic int64_t g_published; /* version of the last published snapshot */
static _Atomic int64_t g_errors;

struct swap_arg {
    int64_t seen_max;
    int64_t decisions;
    int64_t stale_late; /* reads older than a version published > 1 s before */
};

static _Atomic uint64_t g_pub_ns[4096];

static void *swap_reader(void *p)
{
    struct swap_arg *a = p;
    urcu_memb_register_thread();
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 9);
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, T_NOW);
    while (!atomic_load(&g_stop)) {
        int64_t published = atomic_load(&g_published);
        uint64_t pub_ns = atomic_load(&g_pub_ns[published % 4096]);
        urcu_memb_read_lock();
        struct ap_serve_snapshot *s = rcu_dereference(g_snap);
        int64_t id = t_decide1(s, NULL, &rng, &ctx, &arena);
        int64_t v = s->version;
        urcu_memb_read_unlock();
        /* snapshot v holds exactly one ad, id 1000 + v */
        if (id != 1000 + v)
            atomic_fetch_add(&g_errors, 1);
        if (v < published && pub_ns && ap_time_mono_ns() - pub_ns > 1000000000ull)
            a->stale_late++;
        if (v > a->seen_max)
            a->seen_max = v;
        a->decisions++;
    }
    ap_arena_destroy(&arena);
    urcu_memb_unregister_thread();
    return NULL;
}

static struct ap_serve_snapshot *version_snapshot(int64_t v)
{
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    t_campaign(&r, 10, 1, "");
    t_ad(&r, 1000 + v, 10, 1, "");
    struct ap_serve_rows in;
    memset(&in, 0, sizeof(in));
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        in.rows[i] = r.a[i];
    in.version = v;
    in.now = T_NOW;
    struct ap_serve_snapshot *s = NULL;
    assert_int_equal(ap_serve_snapshot_build(&in, NULL, &s), AP_OK);
    t_rows_free(&r);
    return s;
}

static void test_snapshot_swap_under_load(void **state)
{
    (void)state;
    g_snap = version_snapshot(1);
    atomic_store(&g_published, 1);
    atomic_store(&g_pub_ns[1], ap_time_mono_ns());
    pthread_t th[NTHREADS];
    struct swap_arg args[NTHREADS];
    memset(args, 0, sizeof(args));
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, swap_reader, &args[i]);
    urcu_memb_register_thread();
    for (int64_t v = 2; v <= 300; v++) {
        struct ap_serve_snapshot *s = version_snapshot(v);
        struct ap_serve_snapshot *old = rcu_xchg_pointer(&g_snap, s);
        atomic_store(&g_pub_ns[v % 4096], ap_time_mono_ns());
        atomic_store(&g_published, v);
        urcu_memb_synchronize_rcu();
        ap_serve_snapshot_free(old);
        usleep(1000);
    }
    usleep(50000);
    atomic_store(&g_stop, true);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    int64_t total = 0;
    for (int i = 0; i < NTHREADS; i++) {
        total += args[i].decisions;
        assert_int_equal(args[i].seen_max, 300);
        assert_int_equal(args[i].stale_late, 0);
    }
    assert_int_equal(atomic_load(&g_errors), 0);
    assert_true(total > 1000);
    ap_serve_snapshot_free(g_snap);
    urcu_memb_unregister_thread();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pacing_compressed_day),
        cmocka_unit_test(test_budgets_and_goals),
        cmocka_unit_test(test_fcap_window_and_consent),
        cmocka_unit_test(test_fcap_concurrent),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_snapshot_swap_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
