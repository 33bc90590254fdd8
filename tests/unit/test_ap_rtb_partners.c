/* Outside demand helpers: IP truncation, the currency rates table, privacy evaluation and the
 * scrubbed copy sent to partners (parsed from JSON, written back, compared). */
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
#include "rtb/ap_rtb_internal.h"

static void test_truncate_ip(void **state)
{
    (void)state;
    char out[64];
    assert_true(ap__rtb_truncate_ip(AP_SPAN_LIT("203.0.113.77"), out, sizeof(out)));
    assert_string_equal(out, "203.0.113.0");
    assert_true(ap__rtb_truncate_ip(AP_SPAN_LIT("2001:db8:1234:5678:9abc::1"), out, sizeof(out)));
    assert_string_equal(out, "2001:db8:1234::");
    assert_false(ap__rtb_truncate_ip(AP_SPAN_LIT("not-an-ip"), out, sizeof(out)));
    assert_false(ap__rtb_truncate_ip(AP_SPAN_NULL, out, sizeof(out)));
}

static void test_rates(void **state)
{
    (void)state;
    int64_t m = 0;
    assert_true(ap_rtb_rate_convert(1.5, AP_SPAN_LIT("USD"), &m));
    assert_int_equal(m, 1500000);
    assert_true(ap_rtb_rate_convert(2.0, AP_SPAN_NULL, &m));
    assert_int_equal(m, 2000000);
    assert_false(ap_rtb_rate_convert(1.0, AP_SPAN_LIT("EUR"), &m)); /* no rate yet */
    assert_int_equal(ap_rtb_rate_set("EUR", 1.1), AP_OK);
    assert_true(ap_rtb_rate_convert(2.0, AP_SPAN_LIT("EUR"), &m));
    assert_int_equal(m, 2200000);
    assert_int_equal(ap_rtb_rate_set("EUR", 1.2), AP_OK); /* updated in place */
    assert_true(ap_rtb_rate_convert(1.0, AP_SPAN_LIT("EUR"), &m));
    assert_int_equal(m, 1200000);
    assert_int_equal(ap_rtb_rate_set("EUR", 0), AP_OK); /* removed */
    assert_false(ap_rtb_rate_convert(1.0, AP_SPAN_LIT("EUR"), &m));
    assert_int_equal(ap_rtb_rate_set("eur", 1.0), AP_EINVAL);
    assert_int_equal(ap_rtb_rate_set("EURO", 1.0), AP_EINVAL);
    assert_int_equal(ap_rtb_rate_set("JPY", -1.0), AP_EINVAL);
    assert_false(ap_rtb_rate_convert(1.0, AP_SPAN_LIT("E1R"), &m));
}

static char *scrubbed(const char *json, struct ap_rtb_privacy *pv)
{
    static struct ap_arena a;
    static bool init;
    if (!init) {
        ap_arena_init(&a, 1 << 16, 1 << 22);
        init = true;
    }
    ap_arena_reset(&a);
    struct ap_ortb_request *r = NULL;
    char msg[256];
    assert_int_equal(ap_ortb_parse_request(json, strlen(json), &a, &r, msg, sizeof(msg)), AP_OK);
    assert_int_equal(ap_ortb_normalize(r, &a), AP_OK);
    ap__rtb_privacy_eval(r, pv);
    struct ap_ortb_request *c = ap__rtb_scrub(r, pv, &a);
    assert_non_null(c);
    struct ap_buf b;
    ap_buf_init(&b, 1 << 20);
    assert_int_equal(ap_ortb_write_request(&b, c), AP_OK);
    ap_buf_append(&b, "", 1);
    char *s = strdup(b.data);
    ap_buf_free(&b);
    /* the original is untouched */
    ap_buf_init(&b, 1 << 20);
    assert_int_equal(ap_ortb_write_request(&b, r), AP_OK);
    ap_buf_append(&b, "", 1);
    if (strstr(json, "\"buyeruid\""))
        assert_non_null(strstr(b.data, "\"buyeruid\""));
    ap_buf_free(&b);
    return s;
}

#define REQ(regs, dev)                                                                             \
    "{\"id\":\"r\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":300,\"h\":250}}],"                     \
    "\"site\":{\"page\":\"https://a.example/\"},"                                                  \
    "\"user\":{\"id\":\"u1\",\"buyeruid\":\"b1\",\"yob\":1990,"                                    \
    "\"eids\":[{\"source\":\"s.example\",\"uids\":[{\"id\":\"e1\"}]}]},"                           \
    "\"device\":{\"ua\":\"UA\",\"ip\":\"198.51.100.9\",\"ifa\":\"IFA\"" dev ","                    \
    "\"geo\":{\"lat\":48.8,\"lon\":2.3,\"country\":\"FRA\"}}" regs "}"

static void test_scrub_rules(void **state)
{
    (void)state;
    struct ap_rtb_privacy pv;
    /* no regulation: everything passes */
    char *s = scrubbed(REQ("", ""), &pv);
    assert_false(pv.gdpr_no_consent || pv.coppa || pv.lmt || pv.usp_opt_out);
    assert_non_null(strstr(s, "\"buyeruid\":\"b1\""));
    assert_non_null(strstr(s, "\"ip\":\"198.51.100.9\""));
    assert_non_null(strstr(s, "\"lat\":48.8"));
    assert_non_null(strstr(s, "\"ifa\":\"IFA\""));
    free(s);
    /* GDPR without a consent string */
    s = scrubbed(REQ(",\"regs\":{\"gdpr\":1}", ""), &pv);
    assert_true(pv.gdpr_no_consent && pv.no_precise_geo);
    assert_null(strstr(s, "buyeruid"));
    assert_null(strstr(s, "\"u1\""));
    assert_null(strstr(s, "eids"));
    assert_null(strstr(s, "IFA"));
    assert_null(strstr(s, "\"lat\""));
    assert_non_null(strstr(s, "\"ip\":\"198.51.100.0\""));
    assert_non_null(strstr(s, "\"country\":\"FRA\""));
    free(s);
    /* 2.5 location of gdpr (normalised first), and a broken consent string */
    s = scrubbed(REQ(",\"regs\":{\"ext\":{\"gdpr\":1}}", ""), &pv);
    assert_true(pv.gdpr_no_consent);
    assert_null(strstr(s, "buyeruid"));
    free(s);
    /* COPPA: ids, yob and precise geo go */
    s = scrubbed(REQ(",\"regs\":{\"coppa\":1}", ""), &pv);
    assert_true(pv.coppa);
    assert_null(strstr(s, "buyeruid"));
    assert_null(strstr(s, "yob"));
    assert_null(strstr(s, "\"lon\""));
    assert_null(strstr(s, "IFA"));
    free(s);
    /* LMT: only the advertising id goes */
    s = scrubbed(REQ("", ",\"lmt\":1"), &pv);
    assert_true(pv.lmt && !pv.gdpr_no_consent);
    assert_null(strstr(s, "IFA"));
    assert_non_null(strstr(s, "\"buyeruid\":\"b1\""));
    assert_non_null(strstr(s, "\"ip\":\"198.51.100.9\""));
    free(s);
    /* DNT works as LMT; US Privacy opt-out of sale removes ids */
    s = scrubbed(REQ(",\"regs\":{\"us_privacy\":\"1YYN\"}", ",\"dnt\":1"), &pv);
    assert_true(pv.lmt && pv.usp_opt_out);
    assert_null(strstr(s, "IFA"));
    assert_null(strstr(s, "buyeruid"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncate_ip),
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_scrub_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
