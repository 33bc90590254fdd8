/* Signed tracking tokens: round trip, tampering with any byte or character, expiry, key
 * rotation overlap, key file load/save, random mutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "events/ap_token.h"

#define NOW INT64_C(1700000000)

static void ring(struct ap_token_keyring *kr)
{
    memset(kr, 0, sizeof(*kr));
    kr->overlap = 3600;
    uint8_t key[AP_TOKEN_KEY_BYTES];
    for (int i = 0; i < AP_TOKEN_KEY_BYTES; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(ap_token_keyring_add(kr, 1, NOW - 1000, key), AP_OK);
}

static void sample(struct ap_token *t)
{
    memset(t, 0, sizeof(*t));
    t->type = AP_TOKEN_IMP;
    t->flags = AP_TOKEN_F_GDPR | AP_TOKEN_F_STORAGE;
    for (int i = 0; i < AP_TOKEN_ID_BYTES; i++)
        t->imp_id[i] = (uint8_t)(0xA0 + i);
    t->campaign_id = 12345;
    t->ad_id = 987654321;
    t->placement_id = 7;
    t->publisher_id = 3;
    t->price_micros = 2500000;
    t->issued_at = NOW;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    sample(&t);
    char text[AP_TOKEN_MAX_TEXT];
    int n = ap_token_sign(&kr, &t, text, sizeof(text));
    assert_true(n > 40 && n < 100);
    assert_int_equal((size_t)n, strlen(text));
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW + 10, 3600, &u), AP_OK);
    assert_int_equal(u.key_id, 1);
    assert_int_equal(u.type, AP_TOKEN_IMP);
    assert_int_equal(u.flags, t.flags);
    assert_memory_equal(u.imp_id, t.imp_id, AP_TOKEN_ID_BYTES);
    assert_int_equal(u.campaign_id, 12345);
    assert_int_equal(u.ad_id, 987654321);
    assert_int_equal(u.placement_id, 7);
    assert_int_equal(u.publisher_id, 3);
    assert_int_equal(u.price_micros, 2500000);
    assert_int_equal(u.issued_at, NOW);
    /* big values survive */
    t.campaign_id = INT64_MAX;
    t.price_micros = 0;
    n = ap_token_sign(&kr, &t, text, sizeof(text));
    assert_true(n > 0);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW, 3600, &u), AP_OK);
    assert_true(u.campaign_id == INT64_MAX);
    /* bad input to sign */
    t.ad_id = -1;
    assert_int_equal(ap_token_sign(&kr, &t, text, sizeof(text)), AP_EINVAL);
    sample(&t);
    assert_int_equal(ap_token_sign(&kr, &t, text, 10), AP_ELIMIT);
}

static void test_tamper_every_char(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. ";
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    sample(&t);
    char text[AP_TOKEN_MAX_TEXT], bad[AP_TOKEN_MAX_TEXT];
    int n = ap_token_sign(&kr, &t, text, sizeof(text));
    for (int i = 0; i < n; i++) {
        for (const char *a = alphabet; *a; a++) {
            if (*a == text[i])
                continue;
            memcpy(bad, text, (size_t)n + 1);
            bad[i] = *a;
            assert_int_not_equal(ap_token_verify(&kr, ap_span_cstr(bad), NOW, 3600, &u), AP_OK);
        }
    }
    /* truncation and extension */
    for (int len = 0; len < n; len++)
        assert_int_not_equal(ap_token_verify(&kr, ap_span_make(text, (size_t)len), NOW, 3600, &u),
                             AP_OK);
    memcpy(bad, text, (size_t)n);
    bad[n] = 'A';
    bad[n + 1] = '\0';
    assert_int_not_equal(ap_token_verify(&kr, ap_span_cstr(bad), NOW, 3600, &u), AP_OK);
}

static void test_tamper_every_byte(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    sample(&t);
    char text[AP_TOKEN_MAX_TEXT], bad[AP_TOKEN_MAX_TEXT];
    uint8_t bin[AP_TOKEN_MAX_BIN], mod[AP_TOKEN_MAX_BIN];
    ap_token_sign(&kr, &t, text, sizeof(text));
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
}

static void test_random_mutations(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    sample(&t);
    char text[AP_TOKEN_MAX_TEXT], bad[AP_TOKEN_MAX_TEXT];
    int n = ap_token_sign(&kr, &t, text, sizeof(text));
    srand(42);
    for (int iter = 0; iter < 200000; iter++) {
        memcpy(bad, text, (size_t)n + 1);
        int edits = 1 + rand() % 4;
        bool changed = false;
        for (int e = 0; e < edits; e++) {
            int pos = rand() % n;
            char c = (char)(32 + rand() % 95);
            changed |= bad[pos] != c;
            bad[pos] = c;
        }
        if (!changed || strcmp(bad, text) == 0)
            continue;
        assert_int_not_equal(ap_token_verify(&kr, ap_span_cstr(bad), NOW, 3600, &u), AP_OK);
    }
}

static void test_expiry(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    struct ap_token t, u;
    sample(&t);
    char text[AP_TOKEN_MAX_TEXT];
    ap_token_sign(&kr, &t, text, sizeof(text));
    struct ap_span s = ap_span_cstr(text);
    assert_int_equal(ap_token_verify(&kr, s, NOW + 3600, 3600, &u), AP_OK);
    assert_int_equal(ap_token_verify(&kr, s, NOW + 3601, 3600, &u), AP_ETIMEDOUT);
    assert_int_equal(ap_token_verify(&kr, s, NOW + 86400, ap_token_ttl(AP_TOKEN_CLICK), &u), AP_OK);
    assert_int_equal(ap_token_verify(&kr, s, NOW - AP_TOKEN_MAX_SKEW, 3600, &u), AP_OK);
    assert_int_equal(ap_token_verify(&kr, s, NOW - AP_TOKEN_MAX_SKEW - 1, 3600, &u), AP_ETIMEDOUT);
}

static void test_rotation_overlap(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr); /* key 1, overlap 1 h */
    struct ap_token t, u;
    sample(&t);
    char old_tok[AP_TOKEN_MAX_TEXT], new_tok[AP_TOKEN_MAX_TEXT];
    ap_token_sign(&kr, &t, old_tok, sizeof(old_tok));
    assert_int_equal(ap_token_keyring_rotate(&kr, NOW), AP_OK); /* key 2 signs from NOW */
    assert_int_equal(kr.n, 2);
    assert_int_equal(kr.keys[1].id, 2);
    ap_token_sign(&kr, &t, new_tok, sizeof(new_tok));
    assert_int_equal(t.key_id, 2);
    int64_t week = 7 * 86400;
    /* within the overlap both verify; after it the old key's tokens are refused */
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(old_tok), NOW + 3600, week, &u), AP_OK);
    assert_int_equal(u.key_id, 1);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(new_tok), NOW + 3600, week, &u), AP_OK);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(old_tok), NOW + 3601, week, &u), AP_EPERM);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(new_tok), NOW + 3601, week, &u), AP_OK);
    /* rotating after the overlap drops the retired key */
    assert_int_equal(ap_token_keyring_rotate(&kr, NOW + 7200), AP_OK);
    assert_int_equal(kr.n, 2);
    assert_int_equal(kr.keys[0].id, 2);
    assert_int_equal(kr.keys[1].id, 3);
    /* a ring without the key: refused */
    struct ap_token_keyring other;
    memset(&other, 0, sizeof(other));
    other.overlap = 3600;
    uint8_t k2[AP_TOKEN_KEY_BYTES];
    for (int i = 0; i < AP_TOKEN_KEY_BYTES; i++)
        k2[i] = (uint8_t)(i * 7 + 1);
    k2[0] ^= 1; /* same id, one bit of key different */
    assert_int_equal(ap_token_keyring_add(&other, 1, NOW - 1000, k2), AP_OK);
    assert_int_equal(ap_token_verify(&other, ap_span_cstr(old_tok), NOW, week, &u), AP_EPERM);
}

/* Tokens signed by earlier builds (version 1: BLAKE2b-128 MAC) verify while their key is
 * accepted; the same bytes under the current version number do not. */
static void test_legacy_blake2b_tokens_verify(void **state)
{
    (void)state;
    struct ap_token_keyring kr;
    ring(&kr);
    uint8_t bin[AP_TOKEN_MAX_BIN];
    size_t n = 0;
    bin[n++] = AP_TOKEN_VERSION_B2;
    bin[n++] = 0;
    bin[n++] = 1; /* key id 1 */
    bin[n++] = AP_TOKEN_CLICK;
    bin[n++] = 0;
    for (int i = 0; i < AP_TOKEN_ID_BYTES; i++)
        bin[n++] = (uint8_t)(0xA0 + i);
    const int64_t f[6] = {7, 8, 9, 10, 2500000, NOW - 60};
    for (int i = 0; i < 6; i++) { /* LEB128 */
        uint64_t v = (uint64_t)f[i];
        while (v >= 0x80) {
            bin[n++] = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        bin[n++] = (uint8_t)v;
    }
    crypto_generichash(bin + n, AP_TOKEN_MAC_BYTES, bin, n, kr.keys[0].key, AP_TOKEN_KEY_BYTES);
    n += AP_TOKEN_MAC_BYTES;
    char text[AP_TOKEN_MAX_TEXT];
    assert_true(ap_token_b64_encode(bin, n, text, sizeof(text)) > 0);
    struct ap_token u;
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW, 86400, &u), AP_OK);
    assert_int_equal(u.version, AP_TOKEN_VERSION_B2);
    assert_int_equal(u.type, AP_TOKEN_CLICK);
    assert_int_equal(u.ad_id, 8);
    assert_int_equal(u.price_micros, 2500000);
    bin[0] = AP_TOKEN_VERSION; /* a BLAKE2b MAC is not a SipHash one */
    assert_true(ap_token_b64_encode(bin, n, text, sizeof(text)) > 0);
    assert_int_equal(ap_token_verify(&kr, ap_span_cstr(text), NOW, 86400, &u), AP_EPERM);
    /* and new tokens are version 3 */
    struct ap_token t;
    sample(&t);
    assert_true(ap_token_sign(&kr, &t, text, sizeof(text)) > 0);
    assert_int_equal(t.version, AP_TOKEN_VERSION);
    assert_int_equal(ap_token_b64_decode(ap_span_cstr(text), bin, sizeof(bin)) > 0, 1);
    assert_int_equal(bin[0], 3);
}

static void test_key_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/aptoken.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/keys/token.key", dir);
    struct ap_token_keyring a, b;
    assert_int_equal(ap_token_keyring_load(&a, path, 0, NOW), AP_OK); /* created */
    assert_int_equal(a.n, 1);
    assert_int_equal(a.overlap, AP_TOKEN_DEFAULT_OVERLAP);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ap_token_keyring_rotate(&a, NOW + 10), AP_OK);
    assert_int_equal(ap_token_keyring_save(&a, path), AP_OK);
    assert_int_equal(ap_token_keyring_load(&b, path, 0, NOW), AP_OK);
    assert_int_equal(b.n, 2);
    assert_memory_equal(a.keys, b.keys, sizeof(a.keys[0]) * 2);
    struct ap_token t, u;
    sample(&t);
    char text[AP_TOKEN_MAX_TEXT];
    ap_token_sign(&a, &t, text, sizeof(text));
    assert_int_equal(ap_token_verify(&b, ap_span_cstr(text), NOW, 3600, &u), AP_OK);
    /* a world-readable key file is refused; a corrupt one too */
    chmod(path, 0644);
    assert_int_equal(ap_token_keyring_load(&b, path, 0, NOW), AP_EPERM);
    FILE *f = fopen(path, "w");
    fputs("1 2 nothex\n", f);
    fclose(f);
    chmod(path, 0600);
    assert_int_equal(ap_token_keyring_load(&b, path, 0, NOW), AP_ECORRUPT);
    unlink(path);
    snprintf(path, sizeof(path), "%s/keys", dir);
    rmdir(path);
    rmdir(dir);
}

static void test_b64_strict(void **state)
{
    (void)state;
    uint8_t out[8];
    assert_int_equal(ap_token_b64_decode(AP_SPAN_LIT("AA"), out, sizeof(out)), 1);
    assert_int_equal(ap_token_b64_decode(AP_SPAN_LIT("AB"), out, sizeof(out)), AP_EINVAL);
    assert_int_equal(ap_token_b64_decode(AP_SPAN_LIT("A"), out, sizeof(out)), AP_EINVAL);
    assert_int_equal(ap_token_b64_decode(AP_SPAN_LIT("AA=="), out, sizeof(out)), AP_EINVAL);
    assert_int_equal(ap_token_b64_decode(AP_SPAN_LIT("_-8"), out, sizeof(out)), 2);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xef);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tamper_every_char),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_rotation_overlap),
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_b64_strict),
        cmocka_unit_test(test_legacy_blake2b_tokens_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
