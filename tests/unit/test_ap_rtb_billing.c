/* Billing notices behind our impression pixel (ADR 0015): the version-2 impression token with a
 * partner id (round trip, version 1 unchanged, tampering), and the bounded burl table (claimed
 * once, expiry, duplicates, a full stripe, slots reused after expiry). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/ap_error.h"
#include "core/ap_time.h"
#include "events/ap_evlog.h"
#include "events/ap_token.h"
#include "rtb/ap_rtb_billing.h"

#define NOW INT64_C(1700000000)

static void ring(struct ap_token_keyring *kr)
{
    memset(kr, 0, sizeof(*kr));
    kr->overlap = 3600;
    uint8_t key[AP_TOKEN_KEY_BYTES];
    for (int i = 0; i < AP_TOKEN_KEY_BYTES; i++)
        key[i] = (uint8_t)(i * 5 + 3);
    assert_int_equal(ap_token_keyring_add(kr, 1, NOW - 1000, key), AP_OK);
}

static void partner_token(struct ap_token *t)
{
    memset(t, 0, sizeof(*t));
    t->type = AP_TOKEN_IMP;
    t->flags = AP_TOKEN_F_TEST;
    for (int i = 0; i < AP_TOKEN_ID_BYTES; i++)
        t->imp_id[i] = (uint8_t)(0x10 + i);
    t->placement_id = 9;
    t->price_micros = 2000000;
    t->issued_at = NOW;
    t->partner_id = 42;
}

static void test_token_v2_round_trip(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    partner_token(&t);
    char text[AP_TOKEN_MAX_TEXT];
    int n = ap_token_sign(&kr, &t, text, sizeof(text));
    assert_true(n > 0);
    assert_int_equal(t.version, AP_TOKEN_VERSION_PARTNER);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW, 3600, &u), AP_OK);
    assert_int_equal(u.version, AP_TOKEN_VERSION_PARTNER);
    assert_int_equal(u.partner_id, 42);
    assert_int_equal(u.placement_id, 9);
    assert_int_equal(u.price_micros, 2000000);
    assert_int_equal(u.flags, AP_TOKEN_F_TEST);
    /* the largest partner id and every other field at its largest still fit */
    t.partner_id = INT64_MAX;
    t.campaign_id = t.ad_id = t.placement_id = t.publisher_id = t.price_micros = INT64_MAX;
    n = ap_token_sign(&kr, &t, text, sizeof(text));
    assert_true(n > 0 && n < AP_TOKEN_MAX_TEXT);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW, 3600, &u), AP_OK);
    assert_true(u.partner_id == INT64_MAX);
    /* hex form too */
    char hex[AP_TOKEN_MAX_HEX];
    assert_true(ap_token_sign_hex(&kr, &t, hex, sizeof(hex)) > 0);
    assert_int_equal(ap_token_verify_hex(&kr, ap_span_cstr(hex), NOW, 3600, &u), AP_OK);
    assert_true(u.partner_id == INT64_MAX);
    /* negative partner id refused */
    t.partner_id = -1;
    assert_int_equal(ap_token_sign(&kr, &t, text, sizeof(text)), AP_EINVAL);
}

static void test_token_without_partner(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    partner_token(&t);
    t.partner_id = 0;
    char text[AP_TOKEN_MAX_TEXT];
    assert_true(ap_token_sign(&kr, &t, text, sizeof(text)) > 0);
    assert_int_equal(t.version, AP_TOKEN_VERSION);
    uint8_t bin[AP_TOKEN_MAX_BIN];
    int len = ap_token_b64_decode(ap_span_cstr(text), bin, sizeof(bin));
    assert_true(len > 0);
    assert_int_equal(bin[0], 3); /* version 3 on the wire: no partner id */
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW, 3600, &u), AP_OK);
    assert_int_equal(u.partner_id, 0);
    /* a version byte changed to any other (or to an unknown one) does not verify */
    char bad[AP_TOKEN_MAX_TEXT];
    for (uint8_t v = 1; v <= 5; v++) {
        if (v == 3)
            continue;
        bin[0] = v;
        assert_true(ap_token_b64_encode(bin, (size_t)len, bad, sizeof(bad)) > 0);
        assert_int_not_equal(ap_token_verify(&kr, ap_span_cstr(bad), NOW, 3600, &u), AP_OK);
    }
}

static void test_token_v2_tamper(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    partner_token(&t);
    char text[AP_TOKEN_MAX_TEXT], bad[AP_TOKEN_MAX_TEXT];
    assert_true(ap_token_sign(&kr, &t, text, sizeof(text)) > 0);
    uint8_t bin[AP_TOKEN_MAX_BIN], mod[AP_TOKEN_MAX_BIN];
    int len = ap_token_b64_decode(ap_span_cstr(text), bin, sizeof(bin));
    assert_true(len > 0);
    for (int i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(mod, bin, (size_t)len);
            mod[i] ^= (uint8_t)(1u << bit);
            assert_true(ap_token_b64_encode(mod, (size_t)len, bad, sizeof(bad)) > 0);
            assert_int_not_equal(ap_token_verify(&kr, ap_span_cstr(bad), NOW, 3600, &u), AP_OK);
        }
    }
    /* dropping the partner varint (re-signing is impossible without the key) fails */
    assert_true(ap_token_b64_encode(bin, (size_t)len - 1, bad, sizeof(bad)) > 0);
    assert_int_not_equal(ap_token_verify(&kr, ap_span_cstr(bad), NOW, 3600, &u), AP_OK);
}

/* An impression id whose hash lands in stripe `stripe` (bytes 12..15 pick the stripe, bytes
 * 8..11 the slot within it; the table hashes bytes 8..15). */
static void id_in(uint8_t id[16], uint32_t stripe, uint32_t k)
{
    memset(id, 0xEE, 16);
    uint64_t h = ((uint64_t)stripe << 32) | k;
    memcpy(id + 8, &h, sizeof(h));
}

static void test_table_take_once(void **state)
{
    (void)state;
    assert_int_equal(ap_rtb_billing_init(NULL), AP_OK);
    int64_t now = ap_time_unix();
    uint8_t id[16];
    id_in(id, 3, 1);
    static const char URL[] = "http://127.0.0.1:9/_n/bill?price=2.000000";
    struct ap_rtb_billing_entry e;
    assert_int_equal(ap_rtb_billing_take(id, now, &e), AP_ENOTFOUND);
    assert_int_equal(ap_rtb_billing_put(id, 42, 2000000, URL, strlen(URL), now + 60), AP_OK);
    assert_int_equal(ap_rtb_billing_put(id, 42, 2000000, URL, strlen(URL), now + 60), AP_EEXIST);
    assert_int_equal(ap_rtb_billing_take(id, now, &e), AP_OK);
    assert_int_equal(e.partner_id, 42);
    assert_int_equal(e.price_micros, 2000000);
    assert_string_equal(e.burl, URL);
    free(e.burl);
    /* the beacon repeats: the entry is a tombstone now, not claimable again, not re-storable */
    assert_int_equal(ap_rtb_billing_take(id, now, &e), AP_ENOTFOUND);
    assert_int_equal(ap_rtb_billing_put(id, 42, 1, URL, strlen(URL), now + 60), AP_EEXIST);
    /* expired entries cannot be claimed */
    uint8_t id2[16];
    id_in(id2, 3, 2);
    assert_int_equal(ap_rtb_billing_put(id2, 7, 1, URL, strlen(URL), now + 10), AP_OK);
    assert_int_equal(ap_rtb_billing_take(id2, now + 11, &e), AP_ENOTFOUND);
    /* bad input */
    assert_int_equal(ap_rtb_billing_put(id2, 7, 1, URL, 0, now + 10), AP_EINVAL);
    char *big = malloc(AP_RTB_BILLING_URL_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', AP_RTB_BILLING_URL_MAX + 1);
    assert_int_equal(ap_rtb_billing_put(id2, 7, 1, big, AP_RTB_BILLING_URL_MAX + 1, now + 10),
                     AP_EINVAL);
    free(big);
    ap_rtb_billing_free();
    assert_int_equal(ap_rtb_billing_put(id, 42, 1, URL, strlen(URL), now + 60), AP_EINVAL);
}

static void test_table_full_stripe_and_reuse(void **state)
{
    (void)state;
    assert_int_equal(ap_rtb_billing_init(NULL), AP_OK);
    int64_t now = ap_time_unix();
    static const char URL[] = "http://x/_n/bill";
    const uint32_t per = AP_RTB_BILLING_SLOTS / AP_RTB_BILLING_STRIPES;
    uint8_t id[16];
    /* fill stripe 5: half the entries already expired (not claimable, but still held) */
    for (uint32_t k = 0; k < per; k++) {
        id_in(id, 5, k);
        int64_t exp = k % 2 ? now + 60 : now - 1;
        assert_int_equal(ap_rtb_billing_put(id, 1, 1, URL, sizeof(URL) - 1, exp), AP_OK);
    }
    /* the expired half is reused; then the stripe is full */
    for (uint32_t k = 0; k < per / 2; k++) {
        id_in(id, 5, per + k);
        assert_int_equal(ap_rtb_billing_put(id, 2, 2, URL, sizeof(URL) - 1, now + 60), AP_OK);
    }
    id_in(id, 5, 3 * per);
    assert_int_equal(ap_rtb_billing_put(id, 2, 2, URL, sizeof(URL) - 1, now + 60), AP_ELIMIT);
    /* other stripes are unaffected */
    id_in(id, 6, 0);
    assert_int_equal(ap_rtb_billing_put(id, 2, 2, URL, sizeof(URL) - 1, now + 60), AP_OK);
    /* every live entry is still claimable exactly once */
    struct ap_rtb_billing_entry e;
    for (uint32_t k = 1; k < per; k += 2) {
        id_in(id, 5, k);
        assert_int_equal(ap_rtb_billing_take(id, now, &e), AP_OK);
        free(e.burl);
        assert_int_equal(ap_rtb_billing_take(id, now, &e), AP_ENOTFOUND);
    }
    struct ap_rtb_billing_stats st;
    ap_rtb_billing_stats(&st);
    assert_true(st.full >= 1);
    ap_rtb_billing_free(); /* frees the burls still held (ASan checks) */
}

static void test_hook_ignores_other_impressions(void **state)
{
    (void)state;
    assert_int_equal(ap_rtb_billing_init(NULL), AP_OK);
    int64_t now = ap_time_unix();
    static const char URL[] = "http://x/_n/bill";
    struct ap_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = AP_EV_IMP;
    id_in(ev.imp_id, 9, 1);
    assert_int_equal(ap_rtb_billing_put(ev.imp_id, 4, 1, URL, sizeof(URL) - 1, now + 60), AP_OK);
    /* no partner id, or test traffic: nothing is claimed (no loop needed: nothing is sent) */
    ap_rtb_billing_on_imp(NULL, 0, &ev);
    ev.partner_id = 4;
    ev.flags = AP_EV_F_TEST;
    ap_rtb_billing_on_imp(NULL, 0, &ev);
    struct ap_rtb_billing_entry e;
    assert_int_equal(ap_rtb_billing_take(ev.imp_id, now, &e), AP_OK);
    free(e.burl);
    ap_rtb_billing_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_v2_round_trip),
        cmocka_unit_test(test_token_without_partner),
        cmocka_unit_test(test_token_v2_tamper),
        cmocka_unit_test(test_table_take_once),
        cmocka_unit_test(test_table_full_stripe_and_reuse),
        cmocka_unit_test(test_hook_ignores_other_impressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
