/* Core: arena (alignment, cap, reset reuse), buf (cap), config (precedence, validation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ap_arena.h"
#include "core/ap_buf.h"
#include "core/ap_config.h"
#include "core/ap_error.h"
#include "core/ap_log.h"

static void test_arena(void **state)
{
    (void)state;
    struct ap_arena a;
    ap_arena_init(&a, 1024, 8192);
    for (int i = 0; i < 20; i++) {
        char *p = ap_arena_alloc(&a, 33);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 'x', 33);
    }
    assert_null(ap_arena_alloc(&a, 100000)); /* over the cap */
    char *s = ap_arena_strndup(&a, "hello", 3);
    assert_string_equal(s, "hel");
    ap_arena_reset(&a);
    assert_true(a.used_bytes <= 1024);
    /* fill to the cap, then fail cleanly */
    int n = 0;
    while (ap_arena_alloc(&a, 512))
        n++;
    assert_true(n >= 8 && n <= 16);
    ap_arena_destroy(&a);
}

static void test_buf(void **state)
{
    (void)state;
    struct ap_buf b;
    ap_buf_init(&b, 64);
    assert_int_equal(ap_buf_append_str(&b, "abc"), AP_OK);
    assert_int_equal(ap_buf_append_u64(&b, 18446744073709551615ull), AP_OK);
    assert_int_equal(ap_buf_append_i64(&b, -42), AP_OK);
    assert_int_equal(b.len, 3 + 20 + 3);
    assert_memory_equal(b.data, "abc18446744073709551615-42", b.len);
    char big[100];
    memset(big, 'z', sizeof(big));
    assert_int_equal(ap_buf_append(&b, big, sizeof(big)), AP_ELIMIT);
    assert_int_equal(b.len, 26); /* unchanged */
    ap_buf_consume(&b, 3);
    assert_memory_equal(b.data, "1844", 4);
    assert_int_equal(ap_buf_printf(&b, "%d-%s", 7, "x"), AP_OK);
    ap_buf_free(&b);
}

static void test_errors(void **state)
{
    (void)state;
    assert_string_equal(ap_strerror(AP_OK), "ok");
    assert_string_equal(ap_strerror(AP_ENOMEM), "out of memory");
    assert_string_equal(ap_strerror(-9999), "unknown error");
}

static void test_json_escape(void **state)
{
    (void)state;
    char out[64];
    ap_json_escape(out, sizeof(out), "a\"b\\c\n\x01", 7);
    assert_string_equal(out, "a\\\"b\\\\c\\n\\u0001");
    ap_json_escape(out, 5, "abcdefgh", 8);
    assert_int_equal(strlen(out), 4);
}

static void test_config_defaults_and_flags(void **state)
{
    (void)state;
    struct ap_config c;
    char err[256];
    char *argv[] = {"--threads", "3", "--listen=0.0.0.0:9000", "--no-pin-threads",
                    "--log-level", "debug"};
    unsetenv("ADPLATFORM_THREADS");
    assert_int_equal(ap_config_load(&c, 6, argv, err, sizeof(err)), AP_OK);
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_false(c.pin_threads);
    assert_string_equal(c.log_level, "debug");
    assert_string_equal(c.admin_listen, "127.0.0.1:8081"); /* default */
}

static void test_config_precedence(void **state)
{
    (void)state;
    char path[] = "/tmp/ap_cfg_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\nthreads = 5\nlisten = \"127.0.0.1:7000\"\nidle-timeout-ms = 1234\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct ap_config c;
    char err[256];
    char *argv[] = {"--config", path, "--threads", "7"};
    setenv("ADPLATFORM_IDLE_TIMEOUT_MS", "999", 1);
    setenv("ADPLATFORM_LISTEN", "127.0.0.1:7001", 1);
    assert_int_equal(ap_config_load(&c, 4, argv, err, sizeof(err)), AP_OK);
    assert_int_equal(c.threads, 7);              /* flag beats file */
    assert_int_equal(c.idle_timeout_ms, 999);    /* env beats file */
    assert_string_equal(c.listen, "127.0.0.1:7001");
    unsetenv("ADPLATFORM_IDLE_TIMEOUT_MS");
    unsetenv("ADPLATFORM_LISTEN");
    unlink(path);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct ap_config c;
    char err[256];
    struct {
        int argc;
        char *argv[3];
        const char *needle;
    } cases[] = {
        {2, {"--threads", "x"}, "--threads"},
        {2, {"--threads", "100000"}, "--threads"},
        {1, {"--nope"}, "--nope"},
        {1, {"--threads"}, "needs a value"},
        {2, {"--listen", "nocolon"}, "--listen"},
        {2, {"--listen", "1.2.3.4:70000"}, "--listen"},
        {2, {"--log-level", "loud"}, "--log-level"},
        {1, {"stray"}, "stray"},
        {2, {"--config", "/nonexistent/x.conf"}, "cannot open"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ap_config_load(&c, cases[i].argc, cases[i].argv, err, sizeof(err)),
                         AP_EINVAL);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].needle);
    }
}

static void test_config_addr(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(ap_config_parse_addr("[::1]:80", host, sizeof(host), &port), AP_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 80);
    assert_int_equal(ap_config_parse_addr(":0", host, sizeof(host), &port), AP_OK);
    assert_string_equal(host, "");
    assert_int_equal(ap_config_parse_addr("[::1]80", host, sizeof(host), &port), AP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_config_defaults_and_flags),
        cmocka_unit_test(test_config_precedence),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
