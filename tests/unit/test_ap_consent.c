/*
 * Consent: TCF v2 TC strings built by an encoder in this test (the core segment bit by bit,
 * per the IAB's "TCF v2 consent string format" tables), decoded back field by field; the
 * storage / personalisation policy table-driven over purposes and the gdpr flag; vendor consent
 * in bit-field and range encodings; malformed strings; US Privacy strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/ap_error.h"
#include "serve/ap_consent.h"

/* ---- encoder --------------------------------------------------------------------------------- */

struct enc {
    uint8_t bit[8192];
    size_t n;
};

static void put(struct enc *e, uint64_t v, unsigned bits)
{
    for (unsigned i = 0; i < bits; i++)
        e->bit[e->n++] = (uint8_t)((v >> (bits - 1 - i)) & 1u);
}

static void put_letters(struct enc *e, const char *two)
{
    put(e, (uint64_t)(two[0] - 'A'), 6);
    put(e, (uint64_t)(two[1] - 'A'), 6);
}

/* Base64url without padding; the last 6-bit group is zero-padded. */
static void to_b64(const struct enc *e, char *out, size_t cap)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < e->n && o + 1 < cap; i += 6) {
        unsigned v = 0;
        for (size_t k = 0; k < 6; k++)
            v = (v << 1) | (i + k < e->n ? e->bit[i + k] : 0u);
        out[o++] = A[v];
    }
    out[o] = '\0';
}

struct tc_spec {
    unsigned version;
    uint32_t purposes; /* bit (n-1) = purpose n */
    uint32_t li;
    const unsigned *vendors; /* consented vendor ids, 0-terminated; NULL: none */
    bool ranges;             /* encode vendors as ranges */
    unsigned max_vendor;
    size_t cut_bits; /* 0: whole string; else keep only this many bits */
};

/* Writes a core TC string for spec into out. */
static void encode(const struct tc_spec *s, char *out, size_t cap)
{
    static struct enc e;
    e.n = 0;
    put(&e, s->version, 6);
    put(&e, 16000000000ull, 36); /* created, deciseconds */
    put(&e, 16000000123ull, 36); /* last updated */
    put(&e, 300, 12);            /* CMP id */
    put(&e, 7, 12);              /* CMP version */
    put(&e, 1, 6);               /* consent screen */
    put_letters(&e, "EN");
    put(&e, 150, 12);   /* vendor list version */
    put(&e, 4, 6);      /* TCF policy version */
    put(&e, 1, 1);      /* is service specific */
    put(&e, 0, 1);      /* use non-standard stacks */
    put(&e, 0x800, 12); /* special feature 1 opted in */
    for (unsigned p = 1; p <= 24; p++)
        put(&e, (s->purposes >> (p - 1)) & 1u, 1);
    for (unsigned p = 1; p <= 24; p++)
        put(&e, (s->li >> (p - 1)) & 1u, 1);
    put(&e, 0, 1); /* purpose one treatment */
    put_letters(&e, "DE");
    /* vendor consent section */
    put(&e, s->max_vendor, 16);
    put(&e, s->ranges, 1);
    if (!s->ranges) {
        for (unsigned v = 1; v <= s->max_vendor; v++) {
            bool on = false;
            for (const unsigned *p = s->vendors; p && *p; p++)
                on |= *p == v;
            put(&e, on, 1);
        }
    } else {
        /* consecutive runs of the listed (sorted) ids become ranges */
        size_t n = 0;
        unsigned starts[64], ends[64];
        for (const unsigned *p = s->vendors; p && *p; p++) {
            if (n && *p == ends[n - 1] + 1)
                ends[n - 1] = *p;
            else
                starts[n] = ends[n] = *p, n++;
        }
        put(&e, n, 12);
        for (size_t i = 0; i < n; i++) {
            put(&e, starts[i] != ends[i], 1);
            put(&e, starts[i], 16);
            if (starts[i] != ends[i])
                put(&e, ends[i], 16);
        }
    }
    /* vendor legitimate interest section: empty bit field; no publisher restrictions */
    put(&e, 0, 16);
    put(&e, 0, 1);
    put(&e, 0, 12);
    if (s->cut_bits && s->cut_bits < e.n)
        e.n = s->cut_bits;
    to_b64(&e, out, cap);
}

#define P(n) (UINT32_C(1) << ((n)-1))

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_decode_fields(void **state)
{
    (void)state;
    static const unsigned vendors[] = {1, 5, 755, 0};
    struct tc_spec s = {.version = 2,
                        .purposes = P(1) | P(2) | P(3) | P(4) | P(7),
                        .li = P(2) | P(10),
                        .vendors = vendors,
                        .max_vendor = 800};
    char tc[2048];
    encode(&s, tc, sizeof(tc));
    struct ap_consent_tcf t;
    assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(tc), &t), AP_OK);
    assert_int_equal(t.version, 2);
    assert_true(t.created_ds == 16000000000ull);
    assert_true(t.updated_ds == 16000000123ull);
    assert_int_equal(t.cmp_id, 300);
    assert_int_equal(t.cmp_version, 7);
    assert_int_equal(t.consent_screen, 1);
    assert_string_equal(t.language, "EN");
    assert_int_equal(t.vendor_list_version, 150);
    assert_int_equal(t.policy_version, 4);
    assert_true(t.service_specific);
    assert_false(t.non_standard_stacks);
    assert_int_equal(t.special_features, 1);
    assert_int_equal(t.purposes_consent, P(1) | P(2) | P(3) | P(4) | P(7));
    assert_int_equal(t.purposes_li, P(2) | P(10));
    assert_false(t.purpose_one_treatment);
    assert_string_equal(t.publisher_cc, "DE");
    assert_int_equal(t.max_vendor_id, 800);
    assert_false(t.vendor_ranges);
    assert_true(ap_consent_tcf_purpose(&t, 1));
    assert_false(ap_consent_tcf_purpose(&t, 5));
    assert_true(ap_consent_tcf_purpose(&t, 7));
    assert_false(ap_consent_tcf_purpose(&t, 0));
    assert_false(ap_consent_tcf_purpose(&t, 25));
}

struct policy_case {
    const char *name;
    bool gdpr;
    bool with_string;
    uint32_t purposes;
    bool known, storage, personalisation;
};

static const struct policy_case POLICY[] = {
    {"no GDPR, no string", false, false, 0, false, true, true},
    {"no GDPR, string without consent", false, true, 0, true, true, true},
    {"GDPR, no string", true, false, 0, false, false, false},
    {"GDPR, nothing consented", true, true, 0, true, false, false},
    {"GDPR, all ten purposes", true, true, 0x3FF, true, true, true},
    {"GDPR, storage only", true, true, P(1), true, true, false},
    {"GDPR, profile and selection without storage", true, true, P(3) | P(4), true, false, true},
    {"GDPR, storage and profile, no selection", true, true, P(1) | P(3), true, true, false},
    {"GDPR, storage and selection, no profile", true, true, P(1) | P(4), true, true, false},
    {"GDPR, basic ads only", true, true, P(2) | P(7), true, false, false},
};

static void test_policy_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(POLICY) / sizeof(POLICY[0]); i++) {
        const struct policy_case *c = &POLICY[i];
        struct tc_spec s = {.version = 2, .purposes = c->purposes, .max_vendor = 10};
        char tc[2048] = "";
        if (c->with_string)
            encode(&s, tc, sizeof(tc));
        struct ap_serve_ctx ctx;
        memset(&ctx, 0, sizeof(ctx));
        ctx.storage_allowed = ctx.personalisation_allowed = !c->gdpr; /* stale values */
        ap_consent_parse(ap_span_cstr(tc), c->gdpr, &ctx);
        print_message("  %s\n", c->name);
        assert_int_equal(ctx.gdpr_applies, c->gdpr);
        assert_int_equal(ctx.consent_known, c->known);
        assert_int_equal(ctx.storage_allowed, c->storage);
        assert_int_equal(ctx.personalisation_allowed, c->personalisation);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    char tc[2048];
    struct ap_consent_tcf t;
    struct tc_spec s = {.version = 2, .purposes = 0x3FF, .max_vendor = 10};
    static const char *const BAD[] = {
        "", "not base64!", "CO", "====", "AAAA.BBBB", "C!XxRfAPXxRfAAfK", NULL,
    };
    for (size_t i = 0; BAD[i]; i++) {
        struct ap_serve_ctx ctx;
        memset(&ctx, 0, sizeof(ctx));
        assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(BAD[i]), &t), AP_EINVAL);
        ap_consent_parse(ap_span_cstr(BAD[i]), true, &ctx);
        assert_false(ctx.consent_known);
        assert_false(ctx.storage_allowed);
        assert_false(ctx.personalisation_allowed);
    }
    /* version 1 (TCF v1 strings) is not v2 */
    s.version = 1;
    encode(&s, tc, sizeof(tc));
    assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(tc), &t), AP_EINVAL);
    /* cut inside the purposes: invalid; cut right after PublisherCC: still decodes */
    s.version = 2;
    s.cut_bits = 170;
    encode(&s, tc, sizeof(tc));
    assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(tc), &t), AP_EINVAL);
    s.cut_bits = AP_CONSENT_TCF_MIN_BITS;
    encode(&s, tc, sizeof(tc));
    assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(tc), &t), AP_OK);
    assert_int_equal(t.purposes_consent, 0x3FF);
    assert_int_equal(t.max_vendor_id, 0);
    /* a span that is not NUL-terminated is read only up to its length */
    s.cut_bits = 0;
    encode(&s, tc, sizeof(tc));
    assert_int_equal(ap_consent_tcf_decode(ap_span_make(tc, 20), &t), AP_EINVAL);
}

static void test_segments_and_alphabets(void **state)
{
    (void)state;
    char tc[2048], with[2200];
    struct tc_spec s = {.version = 2, .purposes = P(1) | P(3) | P(4), .max_vendor = 10};
    encode(&s, tc, sizeof(tc));
    /* core string followed by other segments (disclosed vendors, publisher TC) */
    snprintf(with, sizeof(with),
             "%s.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAA", tc);
    struct ap_serve_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ap_consent_parse(ap_span_cstr(with), true, &ctx);
    assert_true(ctx.consent_known);
    assert_true(ctx.storage_allowed);
    assert_true(ctx.personalisation_allowed);
    /* standard base64 characters instead of base64url ones decode the same */
    for (char *p = tc; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    struct ap_consent_tcf t;
    assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(tc), &t), AP_OK);
    assert_int_equal(t.purposes_consent, P(1) | P(3) | P(4));
}

static void test_vendor_consent(void **state)
{
    (void)state;
    static const unsigned vendors[] = {1, 2, 3, 4, 5, 99, 755, 0};
    char tc[4096];
    for (int ranges = 0; ranges <= 1; ranges++) {
        struct tc_spec s = {.version = 2,
                            .purposes = P(1),
                            .vendors = vendors,
                            .ranges = ranges,
                            .max_vendor = 1000};
        encode(&s, tc, sizeof(tc));
        struct ap_consent_tcf t;
        assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(tc), &t), AP_OK);
        assert_int_equal(t.vendor_ranges, ranges);
        for (unsigned v = 1; v <= 1001; v++) {
            bool want = false;
            for (const unsigned *p = vendors; *p; p++)
                want |= *p == v;
            if (ap_consent_tcf_vendor(ap_span_cstr(tc), v) != want)
                fail_msg("vendor %u (ranges %d): want %d", v, ranges, want);
        }
        assert_false(ap_consent_tcf_vendor(ap_span_cstr(tc), 0));
        assert_false(ap_consent_tcf_vendor(ap_span_cstr("garbage!"), 1));
    }
}

/* A string made by a production CMP (as decoded by the IAB's Java library): cmp 2 v1, EN,
 * vendor list 128, policy 2, service-specific, purpose 1 only, publisher CC "AA", vendors
 * 1000-1004 consented, created 2022-10-17T13:44:54Z. */
static void test_cmp_string(void **state)
{
    (void)state;
    static const char TC[] =
        "CPhBZtcPhBZtcACABAENCACgAIAAAAAAAAAAH2QAYH0AfYB9kAGB9YH2AAAA.YAAAAAAAAAAA";
    struct ap_consent_tcf t;
    assert_int_equal(ap_consent_tcf_decode(ap_span_cstr(TC), &t), AP_OK);
    assert_int_equal(t.version, 2);
    assert_true(t.created_ds == 16660142940ull);
    assert_int_equal(t.cmp_id, 2);
    assert_int_equal(t.cmp_version, 1);
    assert_int_equal(t.consent_screen, 0);
    assert_string_equal(t.language, "EN");
    assert_int_equal(t.vendor_list_version, 128);
    assert_int_equal(t.policy_version, 2);
    assert_true(t.service_specific);
    assert_int_equal(t.purposes_consent, P(1));
    assert_int_equal(t.purposes_li, 0);
    assert_string_equal(t.publisher_cc, "AA");
    for (unsigned v = 990; v <= 1010; v++)
        assert_int_equal(ap_consent_tcf_vendor(ap_span_cstr(TC), v), v >= 1000 && v <= 1004);
    struct ap_serve_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ap_consent_parse(ap_span_cstr(TC), true, &ctx);
    assert_true(ctx.storage_allowed);
    assert_false(ctx.personalisation_allowed);
}

static void test_us_privacy(void **state)
{
    (void)state;
    struct ap_consent_usp u;
    assert_int_equal(ap_consent_usp_parse(ap_span_cstr("1YNN"), &u), AP_OK);
    assert_int_equal(u.notice, 'Y');
    assert_int_equal(u.opt_out_sale, 'N');
    assert_int_equal(u.lspa, 'N');
    assert_int_equal(ap_consent_usp_parse(ap_span_cstr("1---"), &u), AP_OK);
    assert_int_equal(u.opt_out_sale, '-');
    assert_int_equal(ap_consent_usp_parse(ap_span_cstr("1yyn"), &u), AP_OK);
    assert_int_equal(u.opt_out_sale, 'Y');
    static const char *const BAD[] = {"", "1YN", "1YNNN", "2YNN", "1XNN", "1Y N", NULL};
    for (size_t i = 0; BAD[i]; i++)
        assert_int_equal(ap_consent_usp_parse(ap_span_cstr(BAD[i]), &u), AP_EINVAL);

    struct ap_serve_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.storage_allowed = ctx.personalisation_allowed = true;
    ap_consent_apply_usp(ap_span_cstr("1YNY"), &ctx);
    assert_true(ctx.personalisation_allowed);
    ap_consent_apply_usp(ap_span_cstr("bogus"), &ctx);
    assert_true(ctx.personalisation_allowed);
    assert_true(ctx.storage_allowed);
    ap_consent_apply_usp(ap_span_cstr("1YYN"), &ctx); /* opted out of sale: like no GDPR consent */
    assert_false(ctx.personalisation_allowed);
    assert_false(ctx.storage_allowed);
    ctx.storage_allowed = ctx.personalisation_allowed = true;
    ap_consent_apply_usp(ap_span_cstr("1Y-N"), &ctx); /* not applicable */
    assert_true(ctx.storage_allowed && ctx.personalisation_allowed);
    ap_consent_apply_usp(ap_span_cstr("1NNN"), &ctx); /* did not opt out */
    assert_true(ctx.storage_allowed && ctx.personalisation_allowed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_fields),  cmocka_unit_test(test_policy_table),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_segments_and_alphabets),
        cmocka_unit_test(test_vendor_consent), cmocka_unit_test(test_cmp_string),
        cmocka_unit_test(test_us_privacy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
