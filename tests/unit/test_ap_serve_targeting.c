/* Decision engine: table-driven targeting for every dimension (include, exclude, keywords
 * any/all/none, empty rules, campaign + ad merging), then priority, ranking, lottery weights,
 * multi-placement rules, snapshot statistics and time zones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ap_error.h"
#include "test_ap_serve_util.h"

struct tcase {
    const char *campaign_targeting; /* JSON object text */
    const char *ad_targeting;
    const char *ctx;
    bool served;
};

static const struct tcase CASES[] = {
    /* empty rules */
    {"{}", "{}", "", true},
    {"{\"countries_include\":[]}", "{}", "country=FR", true},
    /* countries */
    {"{\"countries_include\":[\"US\",\"CA\"]}", "{}", "country=US", true},
    {"{\"countries_include\":[\"US\",\"CA\"]}", "{}", "country=FR", false},
    {"{\"countries_include\":[\"US\"]}", "{}", "", false}, /* unknown country */
    {"{\"countries_exclude\":[\"US\"]}", "{}", "country=US", false},
    {"{\"countries_exclude\":[\"US\"]}", "{}", "country=FR", true},
    {"{\"countries_exclude\":[\"US\"]}", "{}", "", true},
    /* regions */
    {"{\"regions_include\":[\"US-CA\"]}", "{}", "country=US;region=US-CA", true},
    {"{\"regions_include\":[\"US-CA\"]}", "{}", "country=US;region=US-NY", false},
    {"{\"regions_exclude\":[\"US-CA\"]}", "{}", "region=US-CA", false},
    {"{\"regions_exclude\":[\"US-CA\"]}", "{}", "region=US-NY", true},
    /* cities (case-insensitive) */
    {"{\"cities_include\":[\"Berlin\"]}", "{}", "city=berlin", true},
    {"{\"cities_include\":[\"Berlin\"]}", "{}", "city=Paris", false},
    {"{\"cities_exclude\":[\"Paris\"]}", "{}", "city=PARIS", false},
    {"{\"cities_exclude\":[\"Paris\"]}", "{}", "city=Berlin", true},
    /* device, os, browser, language */
    {"{\"device_types\":[\"mobile\",\"tablet\"]}", "{}", "device=mobile", true},
    {"{\"device_types\":[\"mobile\"]}", "{}", "device=desktop", false},
    {"{\"device_types\":[\"mobile\"]}", "{}", "", false},
    {"{\"os\":[\"ios\"]}", "{}", "os=ios", true},
    {"{\"os\":[\"ios\"]}", "{}", "os=android", false},
    {"{\"browsers\":[\"firefox\"]}", "{}", "browser=firefox", true},
    {"{\"browsers\":[\"firefox\"]}", "{}", "browser=chrome", false},
    {"{\"languages\":[\"de\"]}", "{}", "lang=en,de", true},
    {"{\"languages\":[\"fr\"]}", "{}", "lang=en,de", false},
    /* keywords */
    {"{\"keywords\":{\"any\":[\"sports\",\"news\"]}}", "{}", "kw=Sports", true},
    {"{\"keywords\":{\"any\":[\"sports\",\"news\"]}}", "{}", "kw=cars", false},
    {"{\"keywords\":{\"any\":[\"sports\"]}}", "{}", "", false},
    {"{\"keywords\":{\"all\":[\"sports\",\"news\"]}}", "{}", "kw=news,sports,x", true},
    {"{\"keywords\":{\"all\":[\"sports\",\"news\"]}}", "{}", "kw=sports", false},
    {"{\"keywords\":{\"none\":[\"adult\"]}}", "{}", "kw=news,adult", false},
    {"{\"keywords\":{\"none\":[\"adult\"]}}", "{}", "kw=news", true},
    {"{\"keywords\":{\"none\":[\"adult\"]}}", "{}", "", true},
    {"{\"keywords\":{\"any\":[]}}", "{}", "kw=x", true},
    /* campaign any + ad any: both must hold */
    {"{\"keywords\":{\"any\":[\"a\",\"b\"]}}", "{\"keywords\":{\"any\":[\"c\"]}}", "kw=a,c", true},
    {"{\"keywords\":{\"any\":[\"a\",\"b\"]}}", "{\"keywords\":{\"any\":[\"c\"]}}", "kw=a", false},
    /* segments need personalisation consent */
    {"{\"segments\":[\"auto\"]}", "{}", "seg=auto", true},
    {"{\"segments\":[\"auto\"]}", "{}", "seg=auto;nopers", false},
    {"{\"segments\":[\"auto\"]}", "{}", "seg=golf", false},
    /* sites, placements (ids), domains (and parent domains) */
    {"{\"sites_include\":[1]}", "{}", "", true},
    {"{\"sites_include\":[2]}", "{}", "", false},
    {"{\"sites_exclude\":[1]}", "{}", "", false},
    {"{\"placements_include\":[1,5]}", "{}", "", true},
    {"{\"placements_include\":[5]}", "{}", "", false},
    {"{\"placements_exclude\":[1]}", "{}", "", false},
    {"{\"domains_include\":[\"example.com\"]}", "{}", "domain=news.example.com", true},
    {"{\"domains_include\":[\"example.com\"]}", "{}", "", true}, /* the site's domain */
    {"{\"domains_include\":[\"other.org\"]}", "{}", "domain=news.example.com", false},
    {"{\"domains_exclude\":[\"example.com\"]}", "{}", "domain=a.example.com", false},
    {"{\"domains_exclude\":[\"example.com\"]}", "{}", "domain=example.org", true},
    /* ip ranges */
    {"{\"ip_ranges\":[\"10.0.0.0/8\"]}", "{}", "ip=10.1.2.3", true},
    {"{\"ip_ranges\":[\"10.0.0.0/8\"]}", "{}", "ip=192.0.2.1", false},
    {"{\"ip_ranges\":[\"2001:db8::/32\"]}", "{}", "ip=2001:db8::1", true},
    {"{\"ip_ranges\":[\"10.0.0.0/8\"]}", "{}", "", false},
    /* dayparts: T_NOW is Monday 06:13 UTC (day 1, hour 6) */
    {"{\"dayparts\":[{\"days\":[1],\"hours\":[6,7]}]}", "{}", "", true},
    {"{\"dayparts\":[{\"days\":[1],\"hours\":[7]}]}", "{}", "", false},
    {"{\"dayparts\":[{\"days\":[0,2],\"hours\":[6]}]}", "{}", "", false},
    {"{\"dayparts\":[{\"days\":[1],\"hours\":[6]}]}",
     "{\"dayparts\":[{\"days\":[1],\"hours\":[7]}]}", "", false},
    /* ad narrows the campaign: include lists intersect, exclude lists unite */
    {"{\"countries_include\":[\"US\",\"CA\"]}", "{\"countries_include\":[\"CA\"]}", "country=US",
     false},
    {"{\"countries_include\":[\"US\",\"CA\"]}", "{\"countries_include\":[\"CA\"]}", "country=CA",
     true},
    {"{}", "{\"countries_include\":[\"CA\"]}", "country=CA", true},
    {"{\"countries_include\":[\"US\"]}", "{\"countries_include\":[\"CA\"]}", "country=US", false},
    {"{\"countries_exclude\":[\"US\"]}", "{\"countries_exclude\":[\"CA\"]}", "country=CA", false},
    /* several dimensions at once */
    {"{\"countries_include\":[\"US\"],\"device_types\":[\"desktop\"],\"keywords\":{\"any\":[\"x\"]}"
     "}",
     "{}", "country=US;device=desktop;kw=x", true},
    {"{\"countries_include\":[\"US\"],\"device_types\":[\"desktop\"],\"keywords\":{\"any\":[\"x\"]}"
     "}",
     "{}", "country=US;device=mobile;kw=x", false},
};

static void test_targeting_table(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 1);
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        const struct tcase *tc = &CASES[i];
        struct t_rows r;
        t_rows_init(&r);
        t_inventory(&r, "UTC");
        char extra[2048];
        snprintf(extra, sizeof(extra), "\"targeting\":%s", tc->campaign_targeting);
        /* replace the default targeting: t_campaign puts its own first; later keys win */
        t_campaign(&r, 10, 1, extra);
        snprintf(extra, sizeof(extra), "\"targeting\":%s", tc->ad_targeting);
        t_ad(&r, 100, 10, 1, extra);
        /* a second ad targeting something nobody has, so no-rule lists are not everything */
        t_campaign(&r, 11, 1, "\"targeting\":{\"countries_include\":[\"ZZ\"]}");
        t_ad(&r, 101, 11, 1, "");
        struct ap_serve_snapshot *s = t_build(&r, NULL, T_NOW);
        struct ap_serve_ctx ctx;
        char scratch[512];
        t_ctx(&ctx, tc->ctx, scratch, sizeof(scratch));
        int64_t got = t_decide1(s, NULL, &rng, &ctx, &arena);
        if ((got == 100) != tc->served)
            fail_msg("case %zu: campaign %s ad %s ctx \"%s\": got ad %lld, want %s", i,
                     tc->campaign_targeting, tc->ad_targeting, tc->ctx, (long long)got,
                     tc->served ? "served" : "not served");
        ap_serve_snapshot_free(s);
        t_rows_free(&r);
    }
    ap_arena_destroy(&arena);
}

static void test_formats_and_status(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 1);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    t_campaign(&r, 10, 1, "");
    /* a 728x90 creative does not fit placement 1 (300x250) */
    t_add(&r, AP_SCHEMA_CREATIVE,
          "{\"id\":200,\"advertiser_id\":1,\"type\":\"html\",\"width\":728,\"height\":90,"
          "\"html\":\"x\",\"status\":\"active\",\"approval_status\":\"approved\"}");
    t_add(&r, AP_SCHEMA_AD,
          "{\"id\":200,\"campaign_id\":10,\"creative_id\":200,\"weight\":1,"
          "\"status\":\"active\",\"targeting\":{}}");
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, T_NOW);
    struct ap_serve_snapshot *s = t_build(&r, NULL, T_NOW);
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 0);
    ap_serve_snapshot_free(s);
    /* paused ad, paused campaign, unapproved creative, ended campaign: not served */
    t_ad(&r, 300, 10, 1, "\"status\":\"paused\"");
    s = t_build(&r, NULL, T_NOW);
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 0);
    ap_serve_snapshot_free(s);
    t_campaign(&r, 12, 1, "\"end_at\":\"2020-01-01T00:00:00Z\"");
    t_ad(&r, 301, 12, 1, "");
    t_campaign(&r, 13, 1, "\"start_at\":\"2030-01-01T00:00:00Z\"");
    t_ad(&r, 302, 13, 1, "");
    s = t_build(&r, NULL, T_NOW);
    assert_int_equal(s->ncampaigns, 2); /* 10 and 13; 12 has ended */
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 0);
    ap_serve_snapshot_free(s);
    t_ad(&r, 303, 10, 1, "");
    s = t_build(&r, NULL, T_NOW);
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 303);
    /* the events endpoints find the landing URL by ad id */
    const struct ap_serve_ad *found = ap__serve_ad_find(s, 303);
    assert_non_null(found);
    assert_true(ap_span_eq_cstr(ap__serve_str(s, found->landing), "https://adv.example/303"));
    assert_null(ap__serve_ad_find(s, 300)); /* paused */
    /* unknown placement */
    struct ap_serve_slot_req slot = {99, 1};
    struct ap_serve_pick picks[AP_SERVE_MAX_COUNT];
    int np;
    assert_int_equal(ap_serve_decide(s, NULL, &rng, &ctx, &slot, 1, NULL, &arena, picks, &np),
                     AP_ENOTFOUND);
    ap_serve_snapshot_free(s);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

static void test_priority_and_ranking(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 1);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    /* house with a huge price loses to standard, standard loses to sponsorship */
    t_campaign(&r, 1, 1, "\"priority_tier\":\"house\",\"price_micros\":99000000");
    t_ad(&r, 11, 1, 1, "");
    t_campaign(&r, 2, 1, "\"price_micros\":2000000");
    t_ad(&r, 21, 2, 1, "");
    t_campaign(&r, 3, 1, "\"price_micros\":3000000");
    t_ad(&r, 31, 3, 1, "");
    /* CPC 1.0 x 0.2% x 1000 = 2.0 eCPM, CPC 2.0 -> 4.0 */
    t_campaign(&r, 4, 1, "\"pricing_model\":\"cpc\",\"price_micros\":2000000");
    t_ad(&r, 41, 4, 1, "");
    t_campaign(&r, 5, 1,
               "\"priority_tier\":\"sponsorship\",\"price_micros\":1,"
               "\"targeting\":{\"countries_include\":[\"DE\"]}");
    t_ad(&r, 51, 5, 1, "");
    /* within standard, higher priority beats eCPM */
    t_campaign(&r, 6, 1,
               "\"priority\":5,\"price_micros\":10,"
               "\"targeting\":{\"countries_include\":[\"FR\"]}");
    t_ad(&r, 61, 6, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, NULL, T_NOW);
    struct ap_serve_ctx ctx;
    char scratch[256];
    t_ctx(&ctx, "country=US", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 41); /* CPC eCPM 4.0 > 3.0 */
    t_ctx(&ctx, "country=DE", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 51);
    t_ctx(&ctx, "country=FR", scratch, sizeof(scratch));
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 61);
    /* several ads for one placement: rank order, no duplicates */
    t_ctx(&ctx, "country=US", scratch, sizeof(scratch));
    struct ap_serve_slot_req slots[2] = {{1, 3}, {1, 3}};
    struct ap_serve_pick picks[2 * AP_SERVE_MAX_COUNT];
    int np[2];
    assert_int_equal(ap_serve_decide(s, NULL, &rng, &ctx, slots, 2, NULL, &arena, picks, np), 0);
    assert_int_equal(np[0], 3);
    assert_int_equal(picks[0].ad->id, 41);
    assert_int_equal(picks[1].ad->id, 31);
    assert_int_equal(picks[2].ad->id, 21);
    assert_int_equal(np[1], 1); /* only the house ad is left */
    assert_int_equal(picks[AP_SERVE_MAX_COUNT].ad->id, 11);
    ap_arena_reset(&arena);
    /* exclusive advertisers: one ad of advertiser 1 in the whole request */
    struct ap_serve_decide_opts opt = {.exclusive_advertisers = true};
    assert_int_equal(ap_serve_decide(s, NULL, &rng, &ctx, slots, 2, &opt, &arena, picks, np), 0);
    assert_int_equal(np[0], 1);
    assert_int_equal(np[1], 0);
    ap_arena_reset(&arena);
    /* floor: a 3.5 floor leaves the CPC campaign (4.0) and the house one (99.0) */
    ap_serve_snapshot_free(s);
    json_object_set_new(json_array_get(r.a[AP_SCHEMA_PLACEMENT], 0), "floor_cpm_micros",
                        json_integer(3500000));
    s = t_build(&r, NULL, T_NOW);
    slots[0].count = 5;
    assert_int_equal(ap_serve_decide(s, NULL, &rng, &ctx, slots, 1, NULL, &arena, picks, np), 0);
    assert_int_equal(np[0], 2);
    assert_int_equal(picks[0].ad->id, 41);
    assert_int_equal(picks[1].ad->id, 11);
    ap_serve_snapshot_free(s);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

static void test_lottery_weights(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 7);
    struct t_rows r;
    t_rows_init(&r);
    t_inventory(&r, "UTC");
    t_campaign(&r, 1, 1, "\"selection\":\"lottery\"");
    const int weights[4] = {10, 20, 30, 40};
    for (int i = 0; i < 4; i++) {
        char extra[64];
        snprintf(extra, sizeof(extra), "\"weight\":%d", weights[i]);
        t_ad(&r, 100 + i, 1, 1, extra);
    }
    t_ad(&r, 110, 1, 1, "\"weight\":0"); /* weight 0: never drawn while others exist */
    struct ap_serve_snapshot *s = t_build(&r, NULL, T_NOW);
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, T_NOW);
    int counts[11] = {0};
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        int64_t id = t_decide1(s, NULL, &rng, &ctx, &arena);
        assert_true(id >= 100 && id <= 110);
        counts[id - 100]++;
    }
    for (int i = 0; i < 4; i++) {
        double share = (double)counts[i] / N, want = weights[i] / 100.0;
        if (share < want * 0.98 || share > want * 1.02)
            fail_msg("ad %d: share %.4f, want %.4f +-2%%", 100 + i, share, want);
    }
    assert_int_equal(counts[10], 0);
    ap_serve_snapshot_free(s);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

static void test_time_zone(void **state)
{
    (void)state;
    struct ap_arena arena;
    ap_arena_init(&arena, 16384, 1 << 24);
    struct ap_serve_rng rng;
    ap_serve_rng_seed(&rng, 1);
    struct t_rows r;
    t_rows_init(&r);
    /* T_NOW is 06:13 UTC = 02:13 EDT (UTC-4 in June) on Monday */
    t_inventory(&r, "America/New_York");
    t_campaign(&r, 10, 1, "\"targeting\":{\"dayparts\":[{\"days\":[1],\"hours\":[2]}]}");
    t_ad(&r, 100, 10, 1, "");
    struct ap_serve_snapshot *s = t_build(&r, NULL, T_NOW);
    struct ap_serve_ctx ctx;
    ap_serve_ctx_init(&ctx, T_NOW);
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 100);
    ctx.now = T_NOW + 3600;
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 0);
    /* January: EST (UTC-5): 2024-01-08 07:30 UTC is Monday 02:30 local */
    ctx.now = 1704699000;
    assert_int_equal(t_decide1(s, NULL, &rng, &ctx, &arena), 100);
    assert_int_equal(ap__serve_zone_offset(&s->zones[0], 1704699000), -5 * 3600);
    assert_int_equal(ap__serve_zone_offset(&s->zones[0], T_NOW), -4 * 3600);
    ap_serve_snapshot_free(s);
    t_rows_free(&r);
    ap_arena_destroy(&arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targeting_table),
        cmocka_unit_test(test_formats_and_status),
        cmocka_unit_test(test_priority_and_ranking),
        cmocka_unit_test(test_lottery_weights),
        cmocka_unit_test(test_time_zone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
