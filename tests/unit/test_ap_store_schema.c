/* Store schema (no database): the resource table, every validator, time parsing, the
 * JSON <-> database conversion, field-error bodies. Table-driven: {input, expected}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_ap_store_util.h"

/* ---- the table itself ------------------------------------------------------------------------ */

static void test_table_consistent(void **state)
{
    (void)state;
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++) {
        const struct ap_schema_resource *r = ap_schema_get((enum ap_schema_res)i);
        assert_non_null(r);
        assert_int_equal(r->id, i);
        assert_ptr_equal(ap_schema_find(r->name), r);
        assert_ptr_equal(ap_schema_find(r->path), r);
        assert_ptr_equal(ap_schema_find(r->table), r);
        assert_non_null(ap_schema_status_field(r)); /* archive relies on it */
        if (r->owner_field) {
            const struct ap_schema_field *f = ap_schema_field(r, r->owner_field);
            assert_non_null(f);
            assert_int_equal(f->type, AP_SCHEMA_REF);
            assert_true(f->flags & AP_SCHEMA_F_IMMUTABLE); /* owners never change */
            assert_int_equal(ap_schema_get(f->ref)->owner, r->owner);
        }
        for (size_t j = 0; j < r->nfields; j++) {
            const struct ap_schema_field *f = &r->fields[j];
            assert_false(ap_schema_is_system_field(f->name));
            assert_non_null(f->doc);
            for (size_t k = 0; k < j; k++)
                assert_string_not_equal(f->name, r->fields[k].name);
            if (f->type == AP_SCHEMA_ENUM)
                assert_non_null(f->values);
            if (f->type == AP_SCHEMA_MONEY)
                assert_non_null(strstr(f->name, "_micros"));
            /* every default is a valid value of its field */
            if (f->def) {
                struct ap_schema_errors e;
                ap_schema_errors_init(&e);
                json_t *v = J(f->def), *norm = NULL;
                int rc = ap_schema_check_value(f, f->name, v, &norm, &e);
                if (rc)
                    fprintf(stderr, "%s.%s default %s\n", r->name, f->name, f->def);
                assert_int_equal(rc, AP_OK);
                json_decref(v);
                json_decref(norm);
            }
            assert_false((f->flags & AP_SCHEMA_F_REQUIRED) && f->def);
        }
    }
    assert_null(ap_schema_get(AP_SCHEMA_RES_COUNT));
    assert_null(ap_schema_find("nope"));
    assert_ptr_equal(ap_schema_find("demand-partners"), ap_schema_get(AP_SCHEMA_DEMAND_PARTNER));
}

/* ---- shared validators ----------------------------------------------------------------------- */

static void test_currency(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool ok;
    } cases[] = {
        {"USD", true}, {"EUR", true}, {"JPY", true}, {"AED", true}, {"ZWL", true},
        {"usd", false}, {"US", false}, {"USDD", false}, {"XXX", false}, {"XAU", false},
        {"ABC", false}, {"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(ap_schema_valid_currency(cases[i].in), cases[i].ok);
    assert_false(ap_schema_valid_currency(NULL));
}

static void test_timezone(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool ok;
    } cases[] = {
        {"UTC", true},
        {"Europe/Paris", true},
        {"America/New_York", true},
        {"America/Argentina/Buenos_Aires", true},
        {"Etc/GMT+5", true},
        {"Nowhere/City", false},
        {"../../etc/passwd", false},
        {"Europe/../Europe/Paris", false},
        {"/etc/passwd", false},
        {"Europe//Paris", false},
        {"Europe/", false},
        {"Europe", false},      /* a directory */
        {"zone.tab", false},    /* a regular file that is not a zone */
        {"tzdata.zi", false},
        {"localtime", false},
        {"Europe/Paris ", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (ap_schema_valid_timezone(cases[i].in) != cases[i].ok)
            fprintf(stderr, "timezone %s\n", cases[i].in);
        assert_int_equal(ap_schema_valid_timezone(cases[i].in), cases[i].ok);
    }
}

static void test_urls_and_domains(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool ok;
    } urls[] = {
        {"https://example.com", true},
        {"http://example.com/path?q=1#frag", true},
        {"HTTPS://Example.COM/", true},
        {"http://127.0.0.1:8080/bid", true},
        {"http://[::1]:9000/x", true},
        {"https://shop.example.com/p?id={click_id}", true},
        {"ftp://example.com", false},
        {"javascript:alert(1)", false},
        {"https://", false},
        {"https:///path", false},
        {"https://user@evil.com", false},
        {"https://exa mple.com", false},
        {"https://example.com/\"x", false},
        {"https://example.com:0/", false},
        {"https://example.com:70000/", false},
        {"https://example.com:/", false},
        {"//example.com", false},
        {"https://[zz]/", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        if (ap_schema_valid_http_url(urls[i].in) != urls[i].ok)
            fprintf(stderr, "url %s\n", urls[i].in);
        assert_int_equal(ap_schema_valid_http_url(urls[i].in), urls[i].ok);
    }
    static const struct {
        const char *in;
        bool ok;
    } domains[] = {
        {"example.com", true}, {"a-b.example.co.uk", true}, {"localhost", true},
        {"Example.com", false}, {"-a.com", false}, {"a-.com", false}, {"a..com", false},
        {".com", false}, {"a.com.", false}, {"a_b.com", false}, {"", false},
    };
    for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++)
        assert_int_equal(ap_schema_valid_domain(domains[i].in), domains[i].ok);
}

/* ---- time ------------------------------------------------------------------------------------ */

static void test_time(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t t; /* -1: invalid */
        const char *canon;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0, "1970-01-01T00:00:00Z"},
        {"2024-02-29T12:30:45Z", 1709209845, "2024-02-29T12:30:45Z"},
        {"2024-02-29t12:30:45z", 1709209845, "2024-02-29T12:30:45Z"},
        {"2024-02-29T13:30:45+01:00", 1709209845, "2024-02-29T12:30:45Z"},
        {"2024-02-29T12:30:45.123456Z", 1709209845, "2024-02-29T12:30:45Z"},
        {"2024-03-01T00:30:00-05:30", 1709272800, "2024-03-01T06:00:00Z"},
        {"9999-12-31T23:59:59Z", 253402300799, "9999-12-31T23:59:59Z"},
        {"2023-02-29T00:00:00Z", -1, NULL},
        {"2024-13-01T00:00:00Z", -1, NULL},
        {"2024-04-31T00:00:00Z", -1, NULL},
        {"2024-01-01T24:00:00Z", -1, NULL},
        {"2024-01-01T00:00:60Z", -1, NULL},
        {"2024-01-01 00:00:00Z", -1, NULL},
        {"2024-01-01T00:00:00", -1, NULL},
        {"2024-01-01T00:00:00+0100", -1, NULL},
        {"2024-01-01T00:00:00.Z", -1, NULL},
        {"1969-12-31T23:59:59Z", -1, NULL},
        {"2024-1-01T00:00:00Z", -1, NULL},
        {"", -1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t t = -1;
        int rc = ap_schema_time_parse(cases[i].in, &t);
        if (cases[i].t < 0) {
            assert_int_equal(rc, AP_EINVAL);
            continue;
        }
        assert_int_equal(rc, AP_OK);
        assert_int_equal(t, cases[i].t);
        char buf[AP_SCHEMA_TIME_MAX];
        ap_schema_time_format(t, buf);
        assert_string_equal(buf, cases[i].canon);
    }
    /* format/parse round trip over a range of days */
    for (int64_t t = 0; t < INT64_C(253402300799); t += 86400 * 37 + 3607) {
        char buf[AP_SCHEMA_TIME_MAX];
        int64_t back;
        ap_schema_time_format(t, buf);
        assert_int_equal(ap_schema_time_parse(buf, &back), AP_OK);
        assert_int_equal(back, t);
    }
}

/* ---- create validation ----------------------------------------------------------------------- */

struct vcase {
    enum ap_schema_res res;
    const char *body;
    const char *field; /* NULL: valid; else this field must be in the errors */
};

static void run_vcases(const struct vcase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct ap_schema_errors e;
        ap_schema_errors_init(&e);
        json_t *body = J(cases[i].body), *row = NULL;
        int rc = ap_schema_validate_create(ap_schema_get(cases[i].res), body, &row, &e);
        bool ok = cases[i].field ? rc == AP_EINVAL && has_error(&e, cases[i].field) && !row
                                 : rc == AP_OK && row && e.n == 0;
        if (!ok) {
            fprintf(stderr, "case %zu: %s: rc %d, want %s\n", i, cases[i].body, rc,
                    cases[i].field ? cases[i].field : "ok");
            dump_errors(&e);
        }
        assert_true(ok);
        json_decref(body);
        json_decref(row);
    }
}

#define ADV AP_SCHEMA_ADVERTISER
#define CAM AP_SCHEMA_CAMPAIGN
#define AD AP_SCHEMA_AD
#define CRE AP_SCHEMA_CREATIVE
#define PUB AP_SCHEMA_PUBLISHER
#define SITE AP_SCHEMA_SITE
#define PLC AP_SCHEMA_PLACEMENT
#define DSP AP_SCHEMA_DEMAND_PARTNER

static void test_validate_resources(void **state)
{
    (void)state;
    static const struct vcase cases[] = {
        /* advertiser */
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"Europe/Paris\"}", NULL},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"status\":\"paused\","
              "\"credit_limit_micros\":5000000,\"category\":\"IAB7-32\"}",
         NULL},
        {ADV, "{\"currency\":\"USD\",\"timezone\":\"UTC\"}", "name"},
        {ADV, "{\"name\":\"A\",\"timezone\":\"UTC\"}", "currency"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\"}", "timezone"},
        {ADV, "{\"name\":\"\",\"currency\":\"USD\",\"timezone\":\"UTC\"}", "name"},
        {ADV, "{\"name\":\"   \",\"currency\":\"USD\",\"timezone\":\"UTC\"}", "name"},
        {ADV, "{\"name\":\"a\\u0001b\",\"currency\":\"USD\",\"timezone\":\"UTC\"}", "name"},
        {ADV, "{\"name\":\"a\\u0000b\",\"currency\":\"USD\",\"timezone\":\"UTC\"}", "name"},
        {ADV, "{\"name\":7,\"currency\":\"USD\",\"timezone\":\"UTC\"}", "name"},
        {ADV, "{\"name\":\"A\",\"currency\":\"usd\",\"timezone\":\"UTC\"}", "currency"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"Mars/Olympus\"}", "timezone"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"../../etc/passwd\"}",
         "timezone"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"status\":\"gone\"}",
         "status"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\","
              "\"credit_limit_micros\":-1}",
         "credit_limit_micros"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\","
              "\"credit_limit_micros\":1.5}",
         "credit_limit_micros"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"category\":\"IABX\"}",
         "category"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"nmae\":\"typo\"}",
         "nmae"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"id\":5}", "id"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"version\":1}",
         "version"},
        {ADV, "{\"name\":\"A\",\"currency\":\"USD\",\"timezone\":\"UTC\",\"status\":null}",
         "status"},
        {ADV, "[1,2]", ""},
        /* campaign */
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\"}", NULL},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"status\":\"active\","
              "\"start_at\":\"2024-01-01T00:00:00Z\",\"end_at\":\"2024-02-01T00:00:00+01:00\","
              "\"priority_tier\":\"sponsorship\",\"priority\":5,\"pricing_model\":\"cpc\","
              "\"price_micros\":250000,\"budget_lifetime_micros\":100000000,"
              "\"budget_daily_micros\":1000000,\"pacing\":\"asap\",\"frequency_caps\":"
              "[{\"count\":3,\"window_seconds\":86400,\"scope\":\"campaign\"}],"
              "\"goal_type\":\"clicks\",\"goal_count\":1000,\"selection\":\"lottery\","
              "\"targeting\":{\"countries_include\":[\"US\",\"CA\"]}}",
         NULL},
        {CAM, "{\"name\":\"Q4\"}", "advertiser_id"},
        {CAM, "{\"advertiser_id\":0,\"name\":\"Q4\"}", "advertiser_id"},
        {CAM, "{\"advertiser_id\":\"1\",\"name\":\"Q4\"}", "advertiser_id"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"status\":\"running\"}", "status"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"start_at\":\"tomorrow\"}", "start_at"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"start_at\":\"2024-02-01T00:00:00Z\","
              "\"end_at\":\"2024-01-01T00:00:00Z\"}",
         "end_at"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"priority_tier\":\"gold\"}",
         "priority_tier"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"priority\":-1}", "priority"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"pricing_model\":\"cpv\"}",
         "pricing_model"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"price_micros\":\"5\"}", "price_micros"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"budget_daily_micros\":-5}",
         "budget_daily_micros"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"pacing\":\"fast\"}", "pacing"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"frequency_caps\":{}}", "frequency_caps"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"frequency_caps\":[{\"count\":0,"
              "\"window_seconds\":60,\"scope\":\"ad\"}]}",
         "frequency_caps[0].count"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"frequency_caps\":[{\"count\":1,"
              "\"window_seconds\":60,\"scope\":\"user\"}]}",
         "frequency_caps[0].scope"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"frequency_caps\":[{\"count\":1,"
              "\"scope\":\"ad\"}]}",
         "frequency_caps[0].window_seconds"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"frequency_caps\":[{\"count\":1,"
              "\"window_seconds\":60,\"scope\":\"ad\",\"per\":1}]}",
         "frequency_caps[0].per"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"goal_type\":\"impressions\"}",
         "goal_count"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"goal_count\":10}", "goal_count"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"selection\":\"random\"}", "selection"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"targeting\":[]}", "targeting"},
        {CAM, "{\"advertiser_id\":1,\"name\":\"Q4\",\"targeting\":{\"country\":[\"US\"]}}",
         "targeting.country"},
        /* ad */
        {AD, "{\"campaign_id\":1,\"creative_id\":2}", NULL},
        {AD, "{\"campaign_id\":1,\"creative_id\":2,\"weight\":5,"
             "\"landing_url\":\"https://shop.example/x\",\"status\":\"paused\","
             "\"targeting\":{\"device_types\":[\"mobile\"]}}",
         NULL},
        {AD, "{\"creative_id\":2}", "campaign_id"},
        {AD, "{\"campaign_id\":1}", "creative_id"},
        {AD, "{\"campaign_id\":1,\"creative_id\":2,\"weight\":-1}", "weight"},
        {AD, "{\"campaign_id\":1,\"creative_id\":2,\"landing_url\":\"javascript:alert(1)\"}",
         "landing_url"},
        {AD, "{\"campaign_id\":1,\"creative_id\":2,\"landing_url\":\"ftp://x.com/\"}",
         "landing_url"},
        {AD, "{\"campaign_id\":1,\"creative_id\":2,\"status\":\"draft\"}", "status"},
        /* creative */
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"image\",\"width\":300,"
              "\"height\":250,\"mime\":\"image/png\",\"sha256\":"
              "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
              "\"size_bytes\":1234}",
         NULL},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"html\",\"width\":728,"
              "\"height\":90,\"html\":\"<div>\\n\\t<b>x</b>\\n</div>\"}",
         NULL},
        {CRE, "{\"advertiser_id\":1,\"name\":\"n\",\"type\":\"native\",\"native\":"
              "{\"title\":\"Hello\"}}",
         NULL},
        {CRE, "{\"advertiser_id\":1,\"name\":\"v\",\"type\":\"vast\",\"vast_xml\":\"<VAST/>\"}",
         NULL},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"gif\"}", "type"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"image\"}", "sha256"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"image\",\"width\":300,"
              "\"height\":250,\"mime\":\"text/html\",\"sha256\":"
              "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}",
         "mime"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"image\",\"width\":300,"
              "\"height\":250,\"mime\":\"image/png\",\"sha256\":\"abc\"}",
         "sha256"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"image\",\"width\":0,"
              "\"height\":250,\"mime\":\"image/png\",\"sha256\":"
              "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}",
         "width"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"b\",\"type\":\"html\",\"width\":1,"
              "\"height\":1}",
         "html"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"n\",\"type\":\"native\",\"native\":[]}",
         "native"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"v\",\"type\":\"vast\"}", "vast_xml"},
        {CRE, "{\"advertiser_id\":1,\"name\":\"v\",\"type\":\"vast\",\"vast_xml\":\"<V/>\","
              "\"approval_status\":\"maybe\"}",
         "approval_status"},
        /* publisher */
        {PUB, "{\"name\":\"P\",\"currency\":\"EUR\",\"revenue_share_ppm\":700000}", NULL},
        {PUB, "{\"name\":\"P\",\"currency\":\"EUR\",\"revenue_share_ppm\":1000001}",
         "revenue_share_ppm"},
        {PUB, "{\"name\":\"P\",\"currency\":\"EUR\"}", "revenue_share_ppm"},
        {PUB, "{\"name\":\"P\",\"currency\":\"EURO\",\"revenue_share_ppm\":1}", "currency"},
        {PUB, "{\"name\":\"P\",\"currency\":\"EUR\",\"revenue_share_ppm\":1,"
              "\"timezone\":\"Nope/Nope\"}",
         "timezone"},
        /* site */
        {SITE, "{\"publisher_id\":1,\"name\":\"S\",\"domain\":\"news.example.com\"}", NULL},
        {SITE, "{\"publisher_id\":1,\"name\":\"A\",\"kind\":\"app\","
               "\"bundle_id\":\"com.example.app\"}",
         NULL},
        {SITE, "{\"publisher_id\":1,\"name\":\"S\"}", "domain"},
        {SITE, "{\"publisher_id\":1,\"name\":\"A\",\"kind\":\"app\"}", "bundle_id"},
        {SITE, "{\"publisher_id\":1,\"name\":\"S\",\"domain\":\"http://x.com\"}", "domain"},
        {SITE, "{\"publisher_id\":1,\"name\":\"S\",\"kind\":\"tv\",\"domain\":\"x.com\"}",
         "kind"},
        {SITE, "{\"publisher_id\":1,\"name\":\"A\",\"kind\":\"app\",\"bundle_id\":\"com x\"}",
         "bundle_id"},
        /* placement */
        {PLC, "{\"site_id\":1,\"name\":\"top\"}", NULL},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"sizes\":[\"300x250\",\"728x90\"],"
              "\"ad_types\":[\"image\",\"native\"],\"floor_cpm_micros\":500000}",
         NULL},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"sizes\":[\"300x\"]}", "sizes[0]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"sizes\":[\"300x250\",\"0x1\"]}", "sizes[1]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"sizes\":[\"300x250\",\"300x250\"]}",
         "sizes[1]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"sizes\":[\"20000x1\"]}", "sizes[0]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"sizes\":[\"0300x250\"]}", "sizes[0]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"ad_types\":[]}", "ad_types"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"ad_types\":[\"video\"]}", "ad_types[0]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"ad_types\":[\"html\",\"html\"]}",
         "ad_types[1]"},
        {PLC, "{\"site_id\":1,\"name\":\"top\",\"floor_cpm_micros\":-1}", "floor_cpm_micros"},
        /* demand partner */
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp_one\",\"endpoint\":"
              "\"http://127.0.0.1:9000/bid\",\"timeout_ms\":150,\"qps_limit\":100,"
              "\"bid_adjustment\":0.95,\"status\":\"paused\"}",
         NULL},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp\",\"endpoint\":\"https://d.example/b\"}",
         NULL},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"DSP\",\"endpoint\":\"https://d.example/b\"}",
         "bidder_code"},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"1dsp\",\"endpoint\":\"https://d.example/b\"}",
         "bidder_code"},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp\",\"endpoint\":\"gopher://d.example/\"}",
         "endpoint"},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp\",\"endpoint\":\"https://d.example/b\","
              "\"timeout_ms\":0}",
         "timeout_ms"},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp\",\"endpoint\":\"https://d.example/b\","
              "\"qps_limit\":-1}",
         "qps_limit"},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp\",\"endpoint\":\"https://d.example/b\","
              "\"bid_adjustment\":11}",
         "bid_adjustment"},
        {DSP, "{\"name\":\"D\",\"bidder_code\":\"dsp\",\"endpoint\":\"https://d.example/b\","
              "\"bid_adjustment\":\"0.9\"}",
         "bid_adjustment"},
        {DSP, "{\"bidder_code\":\"dsp\",\"endpoint\":\"https://d.example/b\"}", "name"},
    };
    run_vcases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_targeting(void **state)
{
    (void)state;
    char body[2048];
    static const struct {
        const char *targeting;
        const char *field;
    } cases[] = {
        {"{}", NULL},
        {"{\"countries_include\":[\"US\"],\"countries_exclude\":[\"FR\"],"
         "\"regions_include\":[\"US-CA\"],\"regions_exclude\":[\"GB-ENG\"],"
         "\"cities_include\":[\"Paris\"],\"cities_exclude\":[\"Lyon\"],"
         "\"device_types\":[\"desktop\",\"ctv\"],\"os\":[\"ios\",\"android\"],"
         "\"browsers\":[\"firefox\"],\"languages\":[\"en\",\"fr\"],"
         "\"dayparts\":[{\"days\":[1,2,3,4,5],\"hours\":[9,10,11]}],"
         "\"keywords\":{\"any\":[\"shoes\"],\"all\":[\"red\"],\"none\":[\"used\"]},"
         "\"segments\":[\"seg:42\"],\"sites_include\":[1,2],\"sites_exclude\":[3],"
         "\"placements_include\":[4],\"placements_exclude\":[5],"
         "\"domains_include\":[\"news.example.com\"],\"domains_exclude\":[\"bad.example\"],"
         "\"ip_ranges\":[\"192.0.2.0/24\",\"2001:db8::/32\",\"198.51.100.7\"]}",
         NULL},
        {"{\"countries_include\":[\"usa\"]}", "targeting.countries_include[0]"},
        {"{\"countries_include\":\"US\"}", "targeting.countries_include"},
        {"{\"regions_include\":[\"CA\"]}", "targeting.regions_include[0]"},
        {"{\"cities_include\":[\"\"]}", "targeting.cities_include[0]"},
        {"{\"device_types\":[\"phone\"]}", "targeting.device_types[0]"},
        {"{\"os\":[\"ios\",\"beos\"]}", "targeting.os[1]"},
        {"{\"browsers\":[7]}", "targeting.browsers[0]"},
        {"{\"languages\":[\"EN\"]}", "targeting.languages[0]"},
        {"{\"dayparts\":[{\"days\":[7],\"hours\":[1]}]}", "targeting.dayparts[0].days[0]"},
        {"{\"dayparts\":[{\"days\":[1],\"hours\":[24]}]}", "targeting.dayparts[0].hours[0]"},
        {"{\"dayparts\":[{\"days\":[1,1],\"hours\":[2]}]}", "targeting.dayparts[0].days[1]"},
        {"{\"dayparts\":[{\"days\":[],\"hours\":[2]}]}", "targeting.dayparts[0].days"},
        {"{\"dayparts\":[{\"hours\":[2]}]}", "targeting.dayparts[0].days"},
        {"{\"dayparts\":[{\"days\":[1],\"hours\":[2],\"tz\":\"UTC\"}]}",
         "targeting.dayparts[0].tz"},
        {"{\"dayparts\":[5]}", "targeting.dayparts[0]"},
        {"{\"keywords\":{\"some\":[\"x\"]}}", "targeting.keywords.some"},
        {"{\"keywords\":[\"x\"]}", "targeting.keywords"},
        {"{\"keywords\":{\"any\":[\"\"]}}", "targeting.keywords.any[0]"},
        {"{\"segments\":[\"a b\"]}", "targeting.segments[0]"},
        {"{\"sites_include\":[0]}", "targeting.sites_include[0]"},
        {"{\"placements_exclude\":[\"4\"]}", "targeting.placements_exclude[0]"},
        {"{\"domains_include\":[\"Example.com\"]}", "targeting.domains_include[0]"},
        {"{\"ip_ranges\":[\"10.0.0.1/8\"]}", "targeting.ip_ranges[0]"},
        {"{\"ip_ranges\":[\"10.0.0.0/33\"]}", "targeting.ip_ranges[0]"},
        {"{\"ip_ranges\":[\"300.0.0.0/8\"]}", "targeting.ip_ranges[0]"},
        {"{\"ip_ranges\":[\"2001:db8::1/32\"]}", "targeting.ip_ranges[0]"},
        {"{\"ip_ranges\":[\"10.0.0.0/\"]}", "targeting.ip_ranges[0]"},
        {"{\"geo\":{}}", "targeting.geo"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(body, sizeof(body), "{\"advertiser_id\":1,\"name\":\"c\",\"targeting\":%s}",
                 cases[i].targeting);
        struct vcase c = {CAM, body, cases[i].field};
        run_vcases(&c, 1);
        /* ads use the same validator */
        snprintf(body, sizeof(body), "{\"campaign_id\":1,\"creative_id\":1,\"targeting\":%s}",
                 cases[i].targeting);
        c = (struct vcase){AD, body, cases[i].field};
        run_vcases(&c, 1);
    }
}

static void test_defaults_and_normalisation(void **state)
{
    (void)state;
    struct ap_schema_errors e;
    ap_schema_errors_init(&e);
    json_t *body = J("{\"advertiser_id\":3,\"name\":\"Q4 Sale\","
                     "\"start_at\":\"2024-06-01T02:00:00+02:00\"}");
    json_t *row = NULL;
    assert_int_equal(ap_schema_validate_create(ap_schema_get(CAM), body, &row, &e), AP_OK);
    assert_string_equal(jstr(row, "status"), "draft");
    assert_string_equal(jstr(row, "priority_tier"), "standard");
    assert_int_equal(jint(row, "priority"), 0);
    assert_string_equal(jstr(row, "pricing_model"), "cpm");
    assert_string_equal(jstr(row, "pacing"), "even");
    assert_string_equal(jstr(row, "goal_type"), "none");
    assert_string_equal(jstr(row, "selection"), "ecpm");
    assert_string_equal(jstr(row, "start_at"), "2024-06-01T00:00:00Z"); /* normalised to UTC */
    assert_true(json_is_null(json_object_get(row, "end_at")));
    assert_true(json_is_null(json_object_get(row, "budget_daily_micros")));
    assert_true(json_is_array(json_object_get(row, "frequency_caps")));
    assert_true(json_is_object(json_object_get(row, "targeting")));
    assert_null(json_object_get(row, "id")); /* system fields are the store's */
    assert_int_equal(json_object_size(row), ap_schema_get(CAM)->nfields);
    json_decref(body);
    json_decref(row);

    body = J("{\"name\":\"D\",\"bidder_code\":\"d\",\"endpoint\":\"https://x.example/\","
             "\"bid_adjustment\":0.9500001}");
    assert_int_equal(ap_schema_validate_create(ap_schema_get(DSP), body, &row, &e), AP_OK);
    assert_true(json_real_value(json_object_get(row, "bid_adjustment")) == 0.95);
    assert_int_equal(jint(row, "timeout_ms"), 200);
    json_decref(body);
    json_decref(row);
}

static void test_patch(void **state)
{
    (void)state;
    const struct ap_schema_resource *r = ap_schema_get(CAM);
    struct ap_schema_errors e;
    json_t *cur = J("{\"id\":9,\"advertiser_id\":3,\"name\":\"c\",\"status\":\"draft\","
                    "\"start_at\":null,\"end_at\":\"2024-01-10T00:00:00Z\","
                    "\"priority_tier\":\"standard\",\"priority\":0,\"pricing_model\":\"cpm\","
                    "\"price_micros\":0,\"budget_lifetime_micros\":null,"
                    "\"budget_daily_micros\":null,\"pacing\":\"even\",\"frequency_caps\":[],"
                    "\"goal_type\":\"none\",\"goal_count\":null,\"selection\":\"ecpm\","
                    "\"targeting\":{\"os\":[\"ios\"]},\"created_at\":\"2024-01-01T00:00:00Z\","
                    "\"updated_at\":\"2024-01-01T00:00:00Z\",\"version\":1}");
    static const struct {
        const char *patch;
        const char *field; /* NULL: ok */
    } cases[] = {
        {"{}", NULL},
        {"{\"name\":\"new\",\"status\":\"active\"}", NULL},
        {"{\"advertiser_id\":3}", NULL}, /* same value: fine */
        {"{\"advertiser_id\":4}", "advertiser_id"},
        {"{\"id\":9}", "id"},
        {"{\"version\":2}", "version"},
        {"{\"updated_at\":\"2024-01-01T00:00:00Z\"}", "updated_at"},
        {"{\"nme\":\"x\"}", "nme"},
        {"{\"name\":null}", "name"},
        {"{\"budget_daily_micros\":null}", NULL},
        {"{\"start_at\":\"2024-01-11T00:00:00Z\"}", "end_at"}, /* cross-field on merged */
        {"{\"targeting\":{\"os\":[\"beos\"]}}", "targeting.os[0]"},
        {"{\"status\":\"deleted\"}", "status"},
        {"\"x\"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_schema_errors_init(&e);
        json_t *p = J(cases[i].patch), *row = NULL;
        int rc = ap_schema_validate_patch(r, cur, p, &row, &e);
        if (cases[i].field) {
            if (!has_error(&e, cases[i].field))
                fprintf(stderr, "patch %s\n", cases[i].patch), dump_errors(&e);
            assert_int_equal(rc, AP_EINVAL);
            assert_true(has_error(&e, cases[i].field));
            assert_null(row);
        } else {
            assert_int_equal(rc, AP_OK);
            assert_null(json_object_get(row, "id"));
            assert_int_equal(json_object_size(row), r->nfields);
        }
        json_decref(p);
        json_decref(row);
    }
    /* json fields are replaced whole */
    ap_schema_errors_init(&e);
    json_t *p = J("{\"targeting\":{\"browsers\":[\"edge\"]}}"), *row = NULL;
    assert_int_equal(ap_schema_validate_patch(r, cur, p, &row, &e), AP_OK);
    assert_null(json_object_get(json_object_get(row, "targeting"), "os"));
    json_decref(p);
    json_decref(row);
    json_decref(cur);
}

/* ---- types through a synthetic field table (BOOL is not used by the model yet) ------------ */

static void test_types_and_db_roundtrip(void **state)
{
    (void)state;
    static const char *const colours[] = {"red", "green", NULL};
    static const struct ap_schema_field fields[] = {
        {.name = "b", .type = AP_SCHEMA_BOOL, .doc = "x"},
        {.name = "e", .type = AP_SCHEMA_ENUM, .values = colours, .doc = "x"},
        {.name = "i", .type = AP_SCHEMA_INT, .min = -5, .max = 5, .doc = "x"},
        {.name = "m", .type = AP_SCHEMA_MONEY, .min = 0, .max = 1000, .doc = "x"},
        {.name = "o", .type = AP_SCHEMA_JSON_OBJECT, .doc = "x"},
        {.name = "a", .type = AP_SCHEMA_JSON_ARRAY, .max = 2, .doc = "x"},
        {.name = "r", .type = AP_SCHEMA_REF, .doc = "x"},
        {.name = "t", .type = AP_SCHEMA_TIMESTAMP, .doc = "x"},
        {.name = "p", .type = AP_SCHEMA_PPM_DECIMAL, .min = 0, .max = 2000000, .doc = "x"},
        {.name = "s", .type = AP_SCHEMA_STRING, .min = 2, .max = 4, .doc = "x"},
        {.name = "n", .type = AP_SCHEMA_STRING, .flags = AP_SCHEMA_F_NULLABLE, .doc = "x"},
    };
    static const struct {
        int field;
        const char *in;
        bool ok;
        const char *norm; /* expected normalised JSON (NULL: same as in) */
    } cases[] = {
        {0, "true", true, NULL},       {0, "false", true, NULL},      {0, "1", false, NULL},
        {0, "\"true\"", false, NULL},  {1, "\"red\"", true, NULL},    {1, "\"blue\"", false, NULL},
        {2, "-5", true, NULL},         {2, "6", false, NULL},         {2, "1.0", false, NULL},
        {3, "1000", true, NULL},       {3, "1001", false, NULL},
        {4, "{\"k\":[1]}", true, NULL},
        {4, "[]", false, NULL},        {5, "[1,2]", true, NULL},      {5, "[1,2,3]", false, NULL},
        {6, "7", true, NULL},          {6, "-7", false, NULL},        {6, "null", false, NULL},
        {7, "\"2024-01-01T01:00:00+01:00\"", true, "\"2024-01-01T00:00:00Z\""},
        {7, "1704067200", false, NULL}, {8, "1", true, "1.0"},        {8, "0.5", true, NULL},
        {8, "2.5", false, NULL},       {8, "-0.1", false, NULL},      {9, "\"ab\"", true, NULL},
        {9, "\"a\"", false, NULL},     {9, "\"abcde\"", false, NULL}, {10, "null", true, NULL},
        {10, "\"x\"", true, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ap_schema_field *f = &fields[cases[i].field];
        struct ap_schema_errors e;
        ap_schema_errors_init(&e);
        json_t *v = J(cases[i].in), *norm = NULL;
        int rc = ap_schema_check_value(f, f->name, v, &norm, &e);
        if ((rc == AP_OK) != cases[i].ok)
            fprintf(stderr, "field %s value %s\n", f->name, cases[i].in);
        assert_int_equal(rc == AP_OK, cases[i].ok);
        if (rc == AP_OK) {
            json_t *want = J(cases[i].norm ? cases[i].norm : cases[i].in);
            assert_true(json_equal(norm, want));
            /* database round trip gives the normalised value back */
            struct ap_schema_dbval db;
            json_t *back = NULL;
            assert_int_equal(ap_schema_to_db(f, norm, &db), AP_OK);
            char *copy = db.kind == AP_SCHEMA_DB_TEXT ? strndup(db.text, db.len) : NULL;
            struct ap_schema_dbval in = db;
            if (copy)
                in.text = copy, in.owned = false;
            assert_int_equal(ap_schema_from_db(f, &in, &back), AP_OK);
            assert_true(json_equal(back, want));
            free(copy);
            ap_schema_dbval_free(&db);
            json_decref(back);
            json_decref(want);
        } else {
            assert_int_equal(e.n, 1);
            assert_string_equal(e.items[0].field, f->name);
        }
        json_decref(v);
        json_decref(norm);
    }
    /* stored values that do not fit the field are reported as corruption */
    struct ap_schema_dbval bad = {.kind = AP_SCHEMA_DB_TEXT, .text = "{oops", .len = 5};
    json_t *out = NULL;
    assert_int_equal(ap_schema_from_db(&fields[4], &bad, &out), AP_ECORRUPT);
    bad = (struct ap_schema_dbval){.kind = AP_SCHEMA_DB_INT, .i = 3};
    assert_int_equal(ap_schema_from_db(&fields[1], &bad, &out), AP_ECORRUPT);
    bad = (struct ap_schema_dbval){.kind = AP_SCHEMA_DB_TEXT, .text = "[1]", .len = 3};
    assert_int_equal(ap_schema_from_db(&fields[4], &bad, &out), AP_ECORRUPT);
    assert_null(out);
}

/* The parser for stored JSON (not jansson's, which is not allocation-safe): it must agree with
 * jansson on valid text and reject everything else as corruption. */
static void test_json_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool ok;
    } cases[] = {
        {"{}", true},
        {"[]", true},
        {" [ 1 , -2.5e3 , 0 , true , false , null , \"x\" ] ", true},
        {"{\"a\":{\"b\":[{\"c\":\"d\"}]},\"e\":-0.0}", true},
        {"[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"]", true},
        {"[\"\\u00e9\\u20ac\\ud83d\\ude00\"]", true},     /* é € and a surrogate pair */
        {"[\"caf\xc3\xa9\"]", true},                          /* raw UTF-8 */
        {"[\"a\\u0000b\"]", true},                            /* NUL inside a string */
        {"[9223372036854775807,-9223372036854775808]", true},
        {"", false},
        {"1", false},                                    /* a scalar at the top */
        {"\"x\"", false},
        {"[1,]", false},
        {"[1 2]", false},
        {"{\"a\" 1}", false},
        {"{\"a\":1,}", false},
        {"{1:2}", false},
        {"[01]", false},
        {"[1.]", false},
        {"[.5]", false},
        {"[1e]", false},
        {"[+1]", false},
        {"[9223372036854775808]", false},               /* overflows int64 */
        {"[\"\\x\"]", false},
        {"[\"\\u12\"]", false},
        {"[\"\\udc00\"]", false},                          /* lone low surrogate */
        {"[\"\\ud800x\"]", false},                         /* lone high surrogate */
        {"[\"\xff\"]", false},                                 /* invalid UTF-8 */
        {"[\"\xc0\xaf\"]", false},                             /* overlong */
        {"[\"a\nb\"]", false},                                 /* raw control character */
        {"[\"open]", false},
        {"[tru]", false},
        {"[1] x", false},
        {"{\"a\":1}}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *out = NULL;
        int rc = ap_schema_json_parse(cases[i].text, strlen(cases[i].text), &out);
        if ((rc == AP_OK) != cases[i].ok)
            fprintf(stderr, "json case %zu: %s -> %d\n", i, cases[i].text, rc);
        assert_int_equal(rc, cases[i].ok ? AP_OK : AP_ECORRUPT);
        if (cases[i].ok) {
            json_error_t err;
            json_t *ref = json_loads(cases[i].text, JSON_ALLOW_NUL, &err);
            assert_non_null(ref);
            assert_true(json_equal(out, ref));
            /* and the dump of what we parsed parses back to the same */
            char *dump = ap_schema_json_dump(out);
            json_t *back = NULL;
            assert_non_null(dump);
            assert_int_equal(ap_schema_json_parse(dump, strlen(dump), &back), AP_OK);
            assert_true(json_equal(back, ref));
            free(dump);
            json_decref(back);
            json_decref(ref);
        } else {
            assert_null(out);
        }
        json_decref(out);
    }
    /* nesting: 64 levels parse, 65 do not */
    char deep[200];
    for (int levels = 64; levels <= 65; levels++) {
        memset(deep, '[', (size_t)levels);
        memset(deep + levels, ']', (size_t)levels);
        json_t *out = NULL;
        assert_int_equal(ap_schema_json_parse(deep, 2 * (size_t)levels, &out),
                         levels == 64 ? AP_OK : AP_ECORRUPT);
        json_decref(out);
    }
    /* input deeper than AP_SCHEMA_JSON_DEPTH is refused before it is stored */
    char body[400];
    int n = snprintf(body, sizeof(body), "{\"advertiser_id\":1,\"name\":\"n\",\"type\":\"native\","
                                         "\"native\":");
    for (int i = 0; i < AP_SCHEMA_JSON_DEPTH; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "{\"a\":");
    n += snprintf(body + n, sizeof(body) - (size_t)n, "1");
    for (int i = 0; i < AP_SCHEMA_JSON_DEPTH; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "}");
    snprintf(body + n, sizeof(body) - (size_t)n, "}");
    struct vcase c = {CRE, body, "native"};
    run_vcases(&c, 1);
}

static void test_filters(void **state)
{
    (void)state;
    const struct ap_schema_resource *r = ap_schema_get(CAM);
    struct ap_schema_errors e;
    struct ap_schema_dbval v;
    ap_schema_errors_init(&e);
    assert_int_equal(ap_schema_filter_value(r, "advertiser_id", "42", &v, &e), AP_OK);
    assert_int_equal(v.kind, AP_SCHEMA_DB_INT);
    assert_int_equal(v.i, 42);
    assert_int_equal(ap_schema_filter_value(r, "status", "active", &v, &e), AP_OK);
    assert_int_equal(v.kind, AP_SCHEMA_DB_TEXT);
    assert_string_equal(v.text, "active");
    assert_int_equal(e.n, 0);
    assert_int_equal(ap_schema_filter_value(r, "advertiser_id", "4x", &v, &e), AP_EINVAL);
    assert_int_equal(ap_schema_filter_value(r, "advertiser_id", "", &v, &e), AP_EINVAL);
    assert_int_equal(ap_schema_filter_value(r, "status", "gone", &v, &e), AP_EINVAL);
    assert_int_equal(ap_schema_filter_value(r, "name", "x", &v, &e), AP_EINVAL); /* not flagged */
    assert_int_equal(ap_schema_filter_value(r, "nope", "x", &v, &e), AP_EINVAL);
    assert_int_equal(e.n, 5);
    assert_string_equal(e.items[4].field, "nope");
}

static void test_error_body(void **state)
{
    (void)state;
    struct ap_schema_errors e;
    ap_schema_errors_init(&e);
    ap_schema_errors_add(&e, "name", "is required");
    ap_schema_errors_add(&e, "currency", "must be %s", "ISO 4217");
    json_t *body = ap_schema_errors_body(&e, NULL);
    json_t *want = J("{\"error\":{\"code\":\"validation_failed\","
                     "\"message\":\"request validation failed\",\"fields\":["
                     "{\"field\":\"name\",\"message\":\"is required\"},"
                     "{\"field\":\"currency\",\"message\":\"must be ISO 4217\"}]}}");
    assert_true(json_equal(body, want));
    json_decref(body);
    json_decref(want);
    /* the list is capped, never allocates */
    for (int i = 0; i < 100; i++)
        ap_schema_errors_add(&e, "x", "error %d", i);
    assert_int_equal(e.n, AP_SCHEMA_MAX_ERRORS);
    assert_int_equal(e.total, 102);
    assert_true(e.truncated);
    /* long paths and messages are cut, not overflowed */
    char longname[500];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ap_schema_errors_init(&e);
    ap_schema_errors_add(&e, longname, "%s", longname);
    assert_int_equal(strlen(e.items[0].field), AP_SCHEMA_FIELD_MAX - 1);
    assert_int_equal(strlen(e.items[0].message), AP_SCHEMA_MESSAGE_MAX - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_consistent),
        cmocka_unit_test(test_currency),
        cmocka_unit_test(test_timezone),
        cmocka_unit_test(test_urls_and_domains),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_validate_resources),
        cmocka_unit_test(test_targeting),
        cmocka_unit_test(test_defaults_and_normalisation),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_types_and_db_roundtrip),
        cmocka_unit_test(test_json_parse),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
