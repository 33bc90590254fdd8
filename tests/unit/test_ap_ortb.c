/* OpenRTB model: tokenizer (strict JSON), parser (fixtures written from the OpenRTB 2.6 spec's
 * examples), writer round trips with unknown fields kept, 2.5 -> 2.6 normalisation, every
 * validation error (Prebid Server's messages), price buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ap_arena.h"
#include "core/ap_buf.h"
#include "core/ap_error.h"
#include "rtb/ap_ortb.h"
#include "rtb/ap_rtb.h"

static char *fixture(const char *name, size_t *len)
{
    char path[1024];
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');
    int dir = slash ? (int)(slash - here) : 0;
    snprintf(path, sizeof(path), "%.*s/../fixtures/ortb/%s", dir, here, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static bool eq(struct ap_span s, const char *c)
{
    return ap_span_eq_cstr(s, c);
}

static void test_tokenizer_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", "-",
        "1e", "\"abc", "\"a\\x\"", "\"\\u12G4\"", "tru", "nul", "{\"a\":1}x", "[1 2]",
        "\"a\x01\"", "{\"a\":[}", "[{]}", "{,}", "[,1]", "+1", ".5", "NaN"};
    static const char *const good[] = {"1", "-0.5e+3", "\"\"", "[]", "{}", "[[],{}]",
                                       "{\"a\":{\"b\":[1,true,false,null,\"\\u00e9\\n\"]}}",
                                       " \t\r\n{ \"k\" : \"v\" } \n"};
    struct ap_arena a;
    ap_arena_init(&a, 4096, 1 << 20);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ap_ortb_tok *t;
        uint32_t n;
        char msg[128];
        int rc = ap_ortb_tokenize(bad[i], strlen(bad[i]), &a, &t, &n, msg, sizeof(msg));
        if (rc == AP_OK)
            fail_msg("accepted invalid JSON: %s", bad[i]);
        assert_true(msg[0] != '\0');
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct ap_ortb_tok *t;
        uint32_t n;
        int rc = ap_ortb_tokenize(good[i], strlen(good[i]), &a, &t, &n, NULL, 0);
        if (rc != AP_OK)
            fail_msg("rejected valid JSON: %s", good[i]);
        assert_int_equal(t[0].next, n); /* the root's subtree is everything */
    }
    /* nesting limit */
    char deep[2 * AP_ORTB_MAX_DEPTH + 8];
    size_t k = 0;
    for (int i = 0; i <= AP_ORTB_MAX_DEPTH; i++)
        deep[k++] = '[';
    for (int i = 0; i <= AP_ORTB_MAX_DEPTH; i++)
        deep[k++] = ']';
    struct ap_ortb_tok *t;
    uint32_t n;
    assert_int_not_equal(ap_ortb_tokenize(deep, k, &a, &t, &n, NULL, 0), AP_OK);
    ap_arena_destroy(&a);
}

static void test_parse_simple_banner(void **state)
{
    (void)state;
    size_t len;
    char *js = fixture("simple_banner.json", &len);
    struct ap_arena a;
    ap_arena_init(&a, 8192, 1 << 22);
    struct ap_ortb_request *r;
    char msg[256];
    assert_int_equal(ap_ortb_parse_request(js, len, &a, &r, msg, sizeof(msg)), AP_OK);
    assert_true(eq(r->id, "80ce30c53c16e6ede735f123ef6e32361bfc7b22"));
    assert_int_equal(r->at, 1);
    assert_int_equal(r->ncur, 1);
    assert_true(eq(r->cur[0], "USD"));
    assert_int_equal(r->nimp, 1);
    assert_true(eq(r->imp[0].id, "1"));
    assert_true(r->imp[0].bidfloor > 0.0299 && r->imp[0].bidfloor < 0.0301);
    assert_non_null(r->imp[0].banner);
    assert_int_equal(r->imp[0].banner->w, 300);
    assert_int_equal(r->imp[0].banner->h, 250);
    assert_int_equal(r->imp[0].banner->pos, 0);
    assert_null(r->imp[0].video);
    assert_int_equal(r->tmax, AP_ORTB_UNSET);
    assert_non_null(r->site);
    assert_null(r->app);
    assert_true(eq(r->site->publisher->id, "8953"));
    assert_true(eq(r->site->cat[0], "IAB3-1"));
    assert_true(eq(r->device->ip, "123.145.167.10"));
    assert_true(eq(r->user->id, "55816b39711f9b5acf3b90e313ed29e51665623f"));
    assert_int_equal(r->unk.n, 0);
    /* not a valid Prebid request: the imp names no bidder */
    assert_int_equal(ap_ortb_validate(r, msg, sizeof(msg)), AP_EINVAL);
    assert_string_equal(msg, "request.imp[0].ext is required");
    free(js);
    ap_arena_destroy(&a);
}

static void test_parse_fixtures_fields(void **state)
{
    (void)state;
    struct ap_arena a;
    ap_arena_init(&a, 8192, 1 << 22);
    size_t len;
    char msg[256];
    struct ap_ortb_request *r;

    char *js = fixture("video.json", &len);
    assert_int_equal(ap_ortb_parse_request(js, len, &a, &r, msg, sizeof(msg)), AP_OK);
    assert_int_equal(r->tmax, 120);
    const struct ap_ortb_video *v = r->imp[0].video;
    assert_non_null(v);
    assert_int_equal(v->nmimes, 4);
    assert_true(eq(v->mimes[1], "video/mp4"));
    assert_int_equal(v->nprotocols, 2);
    assert_int_equal(v->protocols[1], 3);
    assert_int_equal(v->maxduration, 30);
    assert_non_null(ap_ortb_unk_find(&v->unk, "companionad")); /* not modelled: kept */
    assert_non_null(ap_ortb_unk_find(&v->unk, "maxextended"));
    assert_true(r->site->content.p && r->site->content.p[0] == '{');
    assert_true(eq(r->site->ref, "http://referringsite.com/referringpage.htm"));
    free(js);

    js = fixture("native_app.json", &len);
    assert_int_equal(ap_ortb_parse_request(js, len, &a, &r, msg, sizeof(msg)), AP_OK);
    assert_null(r->site);
    assert_non_null(r->app);
    assert_true(eq(r->app->bundle, "12345"));
    assert_true(r->imp[0].native->request.len > 10);
    assert_true(r->imp[0].native->request.p[0] == '{'); /* decoded escapes */
    assert_true(eq(r->device->ifa, "AA000DFE74168477C70D291f574D344790E0BB11"));
    assert_true(r->device->geo->lat > 35.01 && r->device->geo->lon < -115.1);
    assert_true(eq(r->device->geo->country, "USA"));
    assert_int_equal(r->regs->gdpr, 1);
    assert_int_equal(r->regs->ngpp_sid, 1);
    assert_int_equal(r->user->yob, 1984);
    assert_int_equal(ap_ortb_normalize(r, &a), AP_OK);
    assert_int_equal(ap_ortb_validate(r, msg, sizeof(msg)), AP_OK);
    free(js);

    js = fixture("pmp_deal.json", &len);
    assert_int_equal(ap_ortb_parse_request(js, len, &a, &r, msg, sizeof(msg)), AP_OK);
    const struct ap_ortb_pmp *p = r->imp[0].pmp;
    assert_int_equal(p->private_auction, 1);
    assert_int_equal(p->ndeals, 2);
    assert_true(eq(p->deals[0].id, "AB-Agency1-0001"));
    assert_true(p->deals[0].bidfloor == 2.5);
    assert_true(eq(p->deals[1].wseat[0], "Agency2"));
    assert_int_equal(r->imp[0].banner->nformat, 2);
    assert_int_equal(r->imp[0].banner->format[1].h, 600);
    assert_true(r->source->schain.p != NULL);
    assert_true(eq(r->badv[0], "company1.com"));
    assert_int_equal(ap_ortb_normalize(r, &a), AP_OK);
    assert_int_equal(ap_ortb_validate(r, msg, sizeof(msg)), AP_OK);
    free(js);

    struct ap_ortb_response *resp;
    js = fixture("response_banner.json", &len);
    assert_int_equal(ap_ortb_parse_response(js, len, &a, &resp, msg, sizeof(msg)), AP_OK);
    assert_int_equal(resp->nseatbid, 1);
    const struct ap_ortb_bid *b = &resp->seatbid[0].bid[0];
    assert_true(b->price == 9.43);
    assert_true(eq(b->nurl, "http://adserver.com/winnotice?impid=102&price=${AUCTION_PRICE}"));
    assert_true(b->adm.p[0] == '<' && memchr(b->adm.p, '"', b->adm.len)); /* decoded */
    assert_int_equal(b->nattr, 8);
    assert_true(eq(b->adomain[0], "advertiserdomain.com"));
    free(js);
    ap_arena_destroy(&a);
}

/* Parse -> write -> parse -> write gives the same text; every unknown member survives. */
static void test_write_round_trip(void **state)
{
    (void)state;
    static const char *const files[] = {"simple_banner.json", "expandable_creative.json",
                                        "video.json", "native_app.json", "pmp_deal.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        size_t len;
        char *js = fixture(files[i], &len);
        struct ap_arena a;
        ap_arena_init(&a, 8192, 1 << 22);
        struct ap_ortb_request *r, *r2;
        char msg[256];
        assert_int_equal(ap_ortb_parse_request(js, len, &a, &r, msg, sizeof(msg)), AP_OK);
        struct ap_buf b1, b2;
        ap_buf_init(&b1, 1 << 20);
        ap_buf_init(&b2, 1 << 20);
        assert_int_equal(ap_ortb_write_request(&b1, r), AP_OK);
        assert_int_equal(ap_ortb_parse_request(b1.data, b1.len, &a, &r2, msg, sizeof(msg)), AP_OK);
        assert_int_equal(ap_ortb_write_request(&b2, r2), AP_OK);
        assert_int_equal(b1.len, b2.len);
        assert_memory_equal(b1.data, b2.data, b1.len);
        /* unknown fields made it through */
        if (strcmp(files[i], "video.json") == 0) {
            assert_non_null(memmem(b1.data, b1.len, "\"companiontype\":[1, 2]", 22));
            assert_non_null(memmem(b1.data, b1.len, "\"boxingallowed\":1", 17));
        }
        if (strcmp(files[i], "expandable_creative.json") == 0)
            assert_non_null(memmem(b1.data, b1.len, "\"segment\": [{", 13)); /* raw, as sent */
        ap_buf_free(&b1);
        ap_buf_free(&b2);
        ap_arena_destroy(&a);
        free(js);
    }
    /* response too */
    size_t len;
    char *js = fixture("response_banner.json", &len);
    struct ap_arena a;
    ap_arena_init(&a, 8192, 1 << 22);
    struct ap_ortb_response *r;
    char msg[128];
    assert_int_equal(ap_ortb_parse_response(js, len, &a, &r, msg, sizeof(msg)), AP_OK);
    struct ap_buf b;
    ap_buf_init(&b, 1 << 20);
    assert_int_equal(ap_ortb_write_response(&b, r), AP_OK);
    assert_non_null(memmem(b.data, b.len, "\"price\":9.43", 12));
    assert_non_null(memmem(b.data, b.len, "\"ext\":{\"custom\": true}", 22));
    ap_buf_free(&b);
    ap_arena_destroy(&a);
    free(js);
}

static void test_normalize_25(void **state)
{
    (void)state;
    const char *js =
        "{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":1,\"h\":1},\"ext\":{\"appnexus\":"
        "{\"placementId\":5},\"prebid\":{\"bidder\":{\"rubicon\":{}}},\"gpid\":\"g\",\"data\":{}}}],"
        "\"site\":{\"page\":\"p\"},\"regs\":{\"ext\":{\"gdpr\":1,\"us_privacy\":\"1YNN\"}},"
        "\"user\":{\"ext\":{\"consent\":\"C\",\"eids\":[{\"source\":\"s\"}]}},"
        "\"source\":{\"ext\":{\"schain\":{\"ver\":\"1.0\"}}}}";
    struct ap_arena a;
    ap_arena_init(&a, 8192, 1 << 22);
    struct ap_ortb_request *r;
    char msg[256];
    assert_int_equal(ap_ortb_parse_request(js, strlen(js), &a, &r, msg, sizeof(msg)), AP_OK);
    assert_int_equal(ap_ortb_normalize(r, &a), AP_OK);
    assert_int_equal(r->regs->gdpr, 1);
    assert_true(eq(r->regs->us_privacy, "1YNN"));
    assert_int_equal(r->regs->ext->gdpr, AP_ORTB_UNSET);
    assert_true(eq(r->user->consent, "C"));
    assert_true(eq(r->user->eids, "[{\"source\":\"s\"}]"));
    assert_true(eq(r->source->schain, "{\"ver\":\"1.0\"}"));
    const struct ap_ortb_unk *bidders = &r->imp[0].ext->prebid->bidder->unk;
    assert_int_equal(bidders->n, 2);
    assert_non_null(ap_ortb_unk_find(bidders, "appnexus"));
    assert_non_null(ap_ortb_unk_find(bidders, "rubicon"));
    assert_int_equal(r->imp[0].ext->unk.n, 1); /* "data" stays */
    assert_true(eq(r->imp[0].ext->gpid, "g"));
    assert_int_equal(ap_ortb_validate(r, msg, sizeof(msg)), AP_OK);
    struct ap_buf b;
    ap_buf_init(&b, 1 << 20);
    assert_int_equal(ap_ortb_write_request(&b, r), AP_OK);
    assert_null(memmem(b.data, b.len, "\"ext\":{\"gdpr\"", 13));
    assert_non_null(memmem(b.data, b.len, "\"gdpr\":1", 8));
    ap_buf_free(&b);
    ap_arena_destroy(&a);
}

struct vcase {
    const char *json;
    const char *msg; /* expected (exact); NULL = valid */
};

#define IMP_OK "{\"id\":\"1\",\"banner\":{\"w\":300,\"h\":250},\"ext\":{\"prebid\":{\"bidder\":{\"b\":{}}}}}"
#define SITE ",\"site\":{\"page\":\"http://x\"}"

static const struct vcase VCASES[] = {
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE "}", NULL},
    {"{\"imp\":[" IMP_OK "]" SITE "}", "request missing required field: \"id\""},
    {"{\"id\":\"r\",\"tmax\":-5,\"imp\":[" IMP_OK "]" SITE "}",
     "request.tmax must be nonnegative. Got -5"},
    {"{\"id\":\"r\",\"imp\":[]" SITE "}", "request.imp must contain at least one element."},
    {"{\"id\":\"r\"" SITE "}", "request.imp must contain at least one element."},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]}",
     "One of request.site or request.app or request.dooh must be defined"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"app\":{\"id\":\"a\"}}",
     "No more than one of request.site or request.app or request.dooh can be defined"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "],\"app\":{\"id\":\"a\"},\"dooh\":{\"id\":\"d\"}}",
     "No more than one of request.site or request.app or request.dooh can be defined"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "],\"site\":{\"name\":\"n\"}}",
     "request.site should include at least one of request.site.id or request.site.page."},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "],\"dooh\":{\"name\":\"n\"}}",
     "request.dooh should include at least one of request.dooh.id or request.dooh.venuetype."},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "],\"dooh\":{\"venuetype\":[\"x\"]}}", NULL},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "," IMP_OK "]" SITE "}",
     "request.imp[0].id and request.imp[1].id are both \"1\". Imp IDs must be unique."},
    {"{\"id\":\"r\",\"imp\":[{\"banner\":{\"w\":1,\"h\":1}}]" SITE "}",
     "request.imp[0] missing required field: \"id\""},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\"}]" SITE "}",
     "request.imp[0] must contain at least one of \"banner\", \"video\", \"audio\", or "
     "\"native\""},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"metric\":[{\"type\":\"v\"}],"
     "\"banner\":{\"w\":1,\"h\":1}}]" SITE "}",
     "request.imp[0].metric is not yet supported by prebid-server. Support may be added in the "
     "future"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{}}]" SITE "}",
     "request.imp[0].banner has no sizes. Define \"w\" and \"h\", or include \"format\" "
     "elements."},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"instl\":1,\"banner\":{}}]" SITE "}",
     NULL},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"w\":-1,\"h\":1}}]" SITE
     "}",
     "request.imp[0].banner.w must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"w\":1,\"h\":-1}}]" SITE
     "}",
     "request.imp[0].banner.h must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"w\":1,\"h\":1,"
     "\"wmax\":5}}]" SITE "}",
     "request.imp[0].banner uses unsupported property: \"wmax\". Use the \"format\" array "
     "instead."},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"format\":[{\"w\":0,"
     "\"h\":250}]}}]" SITE "}",
     "Request imp[0].banner.format[0] must define non-zero \"h\" and \"w\" properties."},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"format\":[{}]}}]" SITE
     "}",
     "Request imp[0].banner.format[0] should define *either* {w, h} (for static size "
     "requirements) *or* {wmin, wratio, hratio} (for flexible sizes) to be non-zero."},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"format\":[{\"w\":1,"
     "\"h\":1,\"wratio\":2}]}}]" SITE "}",
     "Request imp[0].banner.format[0] should define *either* {w, h} *or* {wmin, wratio, "
     "hratio}, but not both. If both are valid, send two \"format\" objects in the request."},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"format\":[{\"wmin\":1,"
     "\"wratio\":2}]}}]" SITE "}",
     "Request imp[0].banner.format[0] must define non-zero \"wmin\", \"wratio\", and \"hratio\" "
     "properties."},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"format\":[{\"w\":-3,"
     "\"h\":1}]}}]" SITE "}",
     "request.imp[0].banner.format[0].w must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"video\":{\"w\":1}}]" SITE "}",
     "request.imp[0].video.mimes must contain at least one supported MIME type"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"video\":{\"mimes\":[\"v/m\"],"
     "\"w\":-1}}]" SITE "}",
     "request.imp[0].video.w must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"audio\":{}}]" SITE "}",
     "request.imp[0].audio.mimes must contain at least one supported MIME type"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"native\":{\"ver\":\"1.2\"}}]" SITE
     "}",
     "request.imp[0].native missing required property \"request\""},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"w\":1,\"h\":1},\"pmp\":"
     "{\"deals\":[{\"bidfloor\":1}]}}]" SITE "}",
     "request.imp[0].pmp.deals[0] missing required field: \"id\""},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"tagid\":\"3\",\"banner\":{\"w\":1,\"h\":1},"
     "\"bidfloor\":-1}]" SITE "}",
     "request.imp[0].bidfloor must be a non-negative number"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":1,\"h\":1}}]" SITE "}",
     "request.imp[0].ext is required"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":1,\"h\":1},\"ext\":{\"prebid\":{}}}]"
     SITE "}",
     "request.imp[0].ext.prebid.bidder must contain at least one bidder"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":1,\"h\":1},\"ext\":{\"prebid\":{"
     "\"storedrequest\":{\"id\":\"7\"}}}}]" SITE "}",
     NULL},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"regs\":{\"gdpr\":2}}",
     "request.regs.gdpr must be either 0 or 1"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"regs\":{\"ext\":{\"gdpr\":3}}}",
     "request.regs.gdpr must be either 0 or 1"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"regs\":{\"coppa\":7}}",
     "request.regs.coppa must be either 0 or 1"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"device\":{\"w\":-1}}",
     "request.device.w must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"device\":{\"h\":-1}}",
     "request.device.h must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"device\":{\"ppi\":-1}}",
     "request.device.ppi must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"device\":{\"geo\":{\"accuracy\":-1}}}",
     "request.device.geo.accuracy must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE ",\"user\":{\"geo\":{\"accuracy\":-1}}}",
     "request.user.geo.accuracy must be a positive number"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE
     ",\"ext\":{\"prebid\":{\"targeting\":{\"includewinners\":false}}}}",
     "ext.prebid.targeting: At least one of includewinners or includebidderkeys must be enabled "
     "to enable targeting support"},
    {"{\"id\":\"r\",\"imp\":[" IMP_OK "]" SITE
     ",\"ext\":{\"prebid\":{\"targeting\":{\"pricegranularity\":\"medium\"}}}}",
     NULL},
};

/* Type errors come from the parser, with the member's path. */
static const struct vcase PCASES[] = {
    {"{\"id\":1}", "request.id must be a string"},
    {"{\"id\":\"r\",\"imp\":{}}", "request.imp must be an array"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":\"300\"}}]}",
     "request.imp[0].banner.w must be an integer"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":1.5}}]}",
     "request.imp[0].banner.w must be an integer"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"bidfloor\":\"1\"}]}",
     "request.imp[0].bidfloor must be a number"},
    {"{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"format\":[{\"w\":1},5]}}]}",
     "request.imp[0].banner.format[1] must be an object"},
    {"{\"id\":\"r\",\"bcat\":[\"a\",1]}", "request.bcat[1] must be a string"},
    {"{\"id\":\"r\",\"ext\":{\"prebid\":{\"debug\":1}}}",
     "request.ext.prebid.debug must be a boolean"},
    {"{\"id\":\"r\",\"tmax\":99999999999999999999}", "request.tmax must be an integer"},
    {"[]", "request must be an object"},
};

static void test_validation_errors(void **state)
{
    (void)state;
    struct ap_arena a;
    ap_arena_init(&a, 8192, 1 << 22);
    for (size_t i = 0; i < sizeof(VCASES) / sizeof(VCASES[0]); i++) {
        struct ap_ortb_request *r;
        char msg[AP_ORTB_ERR_MAX];
        int rc = ap_ortb_parse_request(VCASES[i].json, strlen(VCASES[i].json), &a, &r, msg,
                                       sizeof(msg));
        if (rc != AP_OK)
            fail_msg("case %zu does not parse: %s", i, msg);
        assert_int_equal(ap_ortb_normalize(r, &a), AP_OK);
        rc = ap_ortb_validate(r, msg, sizeof(msg));
        if (!VCASES[i].msg) {
            if (rc != AP_OK)
                fail_msg("case %zu: unexpected error: %s", i, msg);
            continue;
        }
        if (rc != AP_EINVAL || strcmp(msg, VCASES[i].msg) != 0)
            fail_msg("case %zu:\n got: %s\nwant: %s", i, msg, VCASES[i].msg);
    }
    for (size_t i = 0; i < sizeof(PCASES) / sizeof(PCASES[0]); i++) {
        struct ap_ortb_request *r;
        char msg[AP_ORTB_ERR_MAX];
        int rc = ap_ortb_parse_request(PCASES[i].json, strlen(PCASES[i].json), &a, &r, msg,
                                       sizeof(msg));
        if (rc != AP_EINVAL || strcmp(msg, PCASES[i].msg) != 0)
            fail_msg("parse case %zu:\n got: %d %s\nwant: %s", i, rc, msg, PCASES[i].msg);
    }
    ap_arena_destroy(&a);
}

static void test_strings_and_raw(void **state)
{
    (void)state;
    struct ap_arena a;
    ap_arena_init(&a, 4096, 1 << 20);
    const char *js = "{\"id\":\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\\n<\",\"imp\":[],\"x\":null}";
    struct ap_ortb_request *r;
    char msg[128];
    assert_int_equal(ap_ortb_parse_request(js, strlen(js), &a, &r, msg, sizeof(msg)), AP_OK);
    assert_true(eq(r->id, "a\"b\\c\xc3\xa9\xf0\x9f\x98\x80\n<"));
    struct ap_buf b;
    ap_buf_init(&b, 4096);
    assert_int_equal(ap_ortb_w_str(&b, r->id), AP_OK);
    assert_int_equal(b.len, strlen("\"a\\\"b\\\\c\xc3\xa9\xf0\x9f\x98\x80\\n\\u003c\""));
    assert_memory_equal(b.data, "\"a\\\"b\\\\c\xc3\xa9\xf0\x9f\x98\x80\\n\\u003c\"", b.len);
    b.len = 0;
    assert_int_equal(ap_ortb_w_double(&b, 0.1), AP_OK);
    assert_int_equal(ap_ortb_w_double(&b, 1.5), AP_OK);
    assert_int_equal(ap_ortb_w_double(&b, 1234567.0), AP_OK);
    assert_memory_equal(b.data, "0.11.51234567", b.len);
    ap_buf_free(&b);
    struct ap_span v;
    struct ap_span obj = AP_SPAN_LIT(" { \"a\" : [1,{\"placement\":2}], \"placement\" : \"17\" } ");
    assert_int_equal(ap_ortb_raw_member(obj, "placement", &v), AP_OK);
    int64_t id;
    assert_true(ap_ortb_raw_id(v, &id));
    assert_int_equal(id, 17);
    assert_int_equal(ap_ortb_raw_member(obj, "missing", &v), AP_ENOTFOUND);
    assert_int_equal(ap_ortb_raw_member(AP_SPAN_LIT("[1]"), "a", &v), AP_ENOTFOUND);
    assert_false(ap_ortb_raw_id(AP_SPAN_LIT("\"x\""), &id));
    assert_false(ap_ortb_raw_id(AP_SPAN_LIT("0"), &id));
    assert_true(ap_ortb_raw_id(AP_SPAN_LIT("42"), &id) && id == 42);
    ap_arena_destroy(&a);
}

static void test_price_buckets(void **state)
{
    (void)state;
    static const struct {
        int64_t micros;
        const char *g, *want;
    } C[] = {{1234567, "medium", "1.20"}, {99999, "medium", "0.00"}, {100000, "medium", "0.10"},
             {19990000, "medium", "19.90"}, {25000000, "medium", "20.00"},
             {1234567, "low", "1.00"},    {7000000, "low", "5.00"},      {1234567, "high", "1.23"},
             {1234567, "auto", "1.20"},   {6170000, "auto", "6.10"},     {12700000, "auto", "12.50"},
             {2999999, "dense", "2.99"},  {3070000, "dense", "3.05"},    {9700000, "dense", "9.50"},
             {0, "medium", "0.00"},       {1234567, "bogus", "1.20"}};
    for (size_t i = 0; i < sizeof(C) / sizeof(C[0]); i++) {
        char out[16];
        ap_rtb_price_bucket(C[i].micros, C[i].g, out, sizeof(out));
        if (strcmp(out, C[i].want) != 0)
            fail_msg("%lld %s: got %s want %s", (long long)C[i].micros, C[i].g, out, C[i].want);
    }
}

/* Out of memory at every allocation: fails cleanly, never crashes (arena cap). */
static void test_arena_limits(void **state)
{
    (void)state;
    size_t len;
    char *js = fixture("pmp_deal.json", &len);
    int ok = 0;
    for (size_t cap = 64; cap < (1 << 16); cap += 64) {
        struct ap_arena a;
        ap_arena_init(&a, 64, cap);
        struct ap_ortb_request *r;
        char msg[128];
        int rc = ap_ortb_parse_request(js, len, &a, &r, msg, sizeof(msg));
        assert_true(rc == AP_OK || rc == AP_ENOMEM);
        ok += rc == AP_OK;
        ap_arena_destroy(&a);
    }
    assert_true(ok > 0);
    free(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_strict),    cmocka_unit_test(test_parse_simple_banner),
        cmocka_unit_test(test_parse_fixtures_fields), cmocka_unit_test(test_write_round_trip),
        cmocka_unit_test(test_normalize_25),        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_strings_and_raw),     cmocka_unit_test(test_price_buckets),
        cmocka_unit_test(test_arena_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
