/*
 * User-Agent parsing: real User-Agent strings through Debian's uap-core rules, the uap-core
 * project's own test cases (family fields) for the rule engine, a small rules file for the
 * replacement syntax, the per-thread cache (also from several threads at once), bad input.
 * Tests that need /usr/share/uap-core are skipped when it is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "core/ap_error.h"
#include "core/ap_log.h"
#include "serve/ap_ua.h"

#define UAP_DIR "/usr/share/uap-core"

static struct ap_ua *U; /* the real rules, loaded once for the group */

static int group_setup(void **state)
{
    (void)state;
    ap_log_set_level_name("error");
    int err = 0;
    U = ap_ua_open(AP_UA_DEFAULT_REGEXES, &err);
    return 0; /* tests that need U skip without it */
}

static int group_teardown(void **state)
{
    (void)state;
    ap_ua_close(U);
    return 0;
}

struct ua_case {
    const char *name;
    const char *ua;
    enum ap_serve_device device;
    enum ap_serve_os os;
    enum ap_serve_browser browser;
    bool bot;
};

static const struct ua_case CASES[] = {
    {"desktop Chrome on Windows",
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     AP_SERVE_DEVICE_DESKTOP, AP_SERVE_OS_WINDOWS, AP_SERVE_BROWSER_CHROME, false},
    {"iPhone Safari",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
     AP_SERVE_DEVICE_MOBILE, AP_SERVE_OS_IOS, AP_SERVE_BROWSER_SAFARI, false},
    {"Android Chrome",
     "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.144 Mobile Safari/537.36",
     AP_SERVE_DEVICE_MOBILE, AP_SERVE_OS_ANDROID, AP_SERVE_BROWSER_CHROME, false},
    {"iPad Safari",
     "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/16.6 Mobile/15E148 Safari/604.1",
     AP_SERVE_DEVICE_TABLET, AP_SERVE_OS_IOS, AP_SERVE_BROWSER_SAFARI, false},
    {"Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     AP_SERVE_DEVICE_OTHER, AP_SERVE_OS_OTHER, AP_SERVE_BROWSER_OTHER, true},
    {"bingbot on a desktop UA",
     "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
     "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
     AP_SERVE_DEVICE_OTHER, AP_SERVE_OS_OTHER, AP_SERVE_BROWSER_OTHER, true},
    {"Firefox on macOS",
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
     AP_SERVE_DEVICE_DESKTOP, AP_SERVE_OS_MACOS, AP_SERVE_BROWSER_FIREFOX, false},
    {"Edge on Windows",
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
     AP_SERVE_DEVICE_DESKTOP, AP_SERVE_OS_WINDOWS, AP_SERVE_BROWSER_EDGE, false},
    {"Opera on Windows",
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Safari/537.36 OPR/105.0.0.0",
     AP_SERVE_DEVICE_DESKTOP, AP_SERVE_OS_WINDOWS, AP_SERVE_BROWSER_OPERA, false},
    {"Samsung Internet on a Galaxy Tab",
     "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
     AP_SERVE_DEVICE_TABLET, AP_SERVE_OS_ANDROID, AP_SERVE_BROWSER_SAMSUNG, false},
    {"Samsung smart TV",
     "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "76.0.3809.146/6.0 TV Safari/537.36",
     AP_SERVE_DEVICE_CTV, AP_SERVE_OS_OTHER, AP_SERVE_BROWSER_SAFARI, false},
    {"Chromebook",
     "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     AP_SERVE_DEVICE_DESKTOP, AP_SERVE_OS_CHROMEOS, AP_SERVE_BROWSER_CHROME, false},
    {"Firefox on Ubuntu",
     "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
     AP_SERVE_DEVICE_DESKTOP, AP_SERVE_OS_LINUX, AP_SERVE_BROWSER_FIREFOX, false},
    {"Chrome on iOS",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
     AP_SERVE_DEVICE_MOBILE, AP_SERVE_OS_IOS, AP_SERVE_BROWSER_CHROME, false},
};

#define NCASES (sizeof(CASES) / sizeof(CASES[0]))

static void check_case(const struct ua_case *c, const struct ap_ua_result *r)
{
    if (r->device != c->device || r->os != c->os || r->browser != c->browser || r->is_bot != c->bot)
        print_error("%s: device %d os %d browser %d bot %d (families %s / %s / %s), want %d %d "
                    "%d %d\n",
                    c->name, r->device, r->os, r->browser, r->is_bot, r->browser_family,
                    r->os_family, r->device_family, c->device, c->os, c->browser, c->bot);
    assert_int_equal(r->device, c->device);
    assert_int_equal(r->os, c->os);
    assert_int_equal(r->browser, c->browser);
    assert_int_equal(r->is_bot, c->bot);
}

static void test_real_user_agents(void **state)
{
    (void)state;
    if (!U)
        skip();
    for (size_t i = 0; i < NCASES; i++) {
        struct ap_ua_result r;
        ap_ua_classify(U, ap_span_cstr(CASES[i].ua), false, &r);
        check_case(&CASES[i], &r);
    }
    struct ap_ua_result r;
    ap_ua_classify(U, ap_span_cstr(CASES[0].ua), false, &r);
    assert_string_equal(r.browser_family, "Chrome");
    assert_string_equal(r.os_family, "Windows");
    ap_ua_classify(U, ap_span_cstr(CASES[1].ua), false, &r);
    assert_string_equal(r.device_family, "iPhone");
    assert_string_equal(r.browser_family, "Mobile Safari");
    ap_ua_classify(U, ap_span_cstr(CASES[4].ua), false, &r);
    assert_string_equal(r.device_family, "Spider");
}

static void test_context_and_cache(void **state)
{
    (void)state;
    if (!U)
        skip();
    for (int round = 0; round < 3; round++) { /* 1st: misses, then hits */
        for (size_t i = 0; i < NCASES; i++) {
            struct ap_serve_ctx ctx;
            memset(&ctx, 0, sizeof(ctx));
            ap_ua_parse(U, ap_span_cstr(CASES[i].ua), &ctx);
            assert_int_equal(ctx.device, CASES[i].device);
            assert_int_equal(ctx.os, CASES[i].os);
            assert_int_equal(ctx.browser, CASES[i].browser);
        }
    }
    /* a span that is a prefix of a cached string is its own entry */
    struct ap_serve_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ap_ua_parse(U, ap_span_make(CASES[0].ua, 11), &ctx); /* "Mozilla/5.0" */
    assert_int_not_equal(ctx.browser, AP_SERVE_BROWSER_CHROME);
}

static void test_empty_and_garbage(void **state)
{
    (void)state;
    struct ap_serve_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.device = AP_SERVE_DEVICE_MOBILE;
    ap_ua_parse(U, AP_SPAN_NULL, &ctx);
    assert_int_equal(ctx.device, AP_SERVE_DEVICE_UNKNOWN);
    assert_int_equal(ctx.os, AP_SERVE_OS_UNKNOWN);
    assert_int_equal(ctx.browser, AP_SERVE_BROWSER_UNKNOWN);
    ap_ua_parse(NULL, ap_span_cstr(CASES[0].ua), &ctx); /* no rules loaded: unknown */
    assert_int_equal(ctx.browser, AP_SERVE_BROWSER_UNKNOWN);
    if (!U)
        return;
    /* binary junk, invalid UTF-8, NUL bytes, a huge string: answered, never a crash */
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 131 + 7);
    ap_ua_parse(U, ap_span_make(junk, sizeof(junk)), &ctx);
    assert_int_equal(ctx.browser, AP_SERVE_BROWSER_OTHER);
    memset(junk, 'A', sizeof(junk));
    ap_ua_parse(U, ap_span_make(junk, sizeof(junk)), &ctx);
    assert_int_equal(ctx.os, AP_SERVE_OS_OTHER);
}

/* A rules file of our own: $N replacements, regex_flag i, a regex PCRE2 refuses. */
static void test_rules_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_ap_ua_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char yaml[] = "user_agent_parsers:\n"
                               "  - regex: '(Broken[)'\n"
                               "  - regex: 'Zed(Browser)/(\\d+)'\n"
                               "    family_replacement: 'Chrome'\n"
                               "  - regex: '(opera) mini'\n"
                               "    regex_flag: 'i'\n"
                               "    family_replacement: 'Opera $1'\n"
                               "os_parsers:\n"
                               "  - regex: '(Windows) NT (\\d+)'\n"
                               "device_parsers:\n"
                               "  - regex: 'Kit (\\w+)-(\\w+)'\n"
                               "    device_replacement: 'Generic $2 $1'\n"
                               "    brand_replacement: '$1'\n"
                               "    model_replacement: '$2'\n";
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    int err = 0;
    struct ap_ua *u = ap_ua_open(path, &err);
    assert_non_null(u);
    size_t a, o, d;
    ap_ua_counts(u, &a, &o, &d);
    assert_int_equal(a, 2); /* the broken regex was skipped */
    assert_int_equal(o, 1);
    assert_int_equal(d, 1);
    struct ap_ua_result r;
    ap_ua_classify(u, ap_span_cstr("ZedBrowser/5 (Windows NT 10)"), false, &r);
    assert_string_equal(r.browser_family, "Chrome");
    assert_int_equal(r.browser, AP_SERVE_BROWSER_CHROME);
    assert_string_equal(r.os_family, "Windows");
    assert_int_equal(r.device, AP_SERVE_DEVICE_DESKTOP);
    ap_ua_classify(u, ap_span_cstr("OPERA MINI Kit Phone-X1"), false, &r);
    assert_string_equal(r.browser_family, "Opera OPERA");
    assert_int_equal(r.browser, AP_SERVE_BROWSER_OPERA);
    assert_string_equal(r.device_family, "Generic X1 Phone");
    assert_string_equal(r.os_family, "Other");
    ap_ua_classify(u, ap_span_cstr("nothing matches"), false, &r);
    assert_string_equal(r.browser_family, "Other");
    assert_string_equal(r.device_family, "Other");
    ap_ua_close(u);

    /* not YAML of the right shape, and a missing file */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "- just\n- a list\n", 16), 16);
    close(fd);
    assert_null(ap_ua_open(path, &err));
    assert_int_equal(err, AP_ECORRUPT);
    unlink(path);
    assert_null(ap_ua_open(path, &err));
    assert_int_equal(err, AP_ENOTFOUND);
    assert_null(ap_ua_open_setting("none"));
    assert_null(ap_ua_open_setting("/nonexistent/regexes.yaml"));
}

/* uap-core's own test cases: the family our engine extracts must be the one the project's
 * reference implementations give. Families only (versions are not used here). */
static const char *map_get(yaml_document_t *doc, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (k && v && k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
            !strcmp((const char *)k->data.scalar.value, key))
            return (const char *)v->data.scalar.value;
    }
    return NULL;
}

static void conformance(const char *file, int which, size_t *total, size_t *bad)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return;
    yaml_parser_t p;
    yaml_document_t doc;
    assert_true(yaml_parser_initialize(&p));
    yaml_parser_set_input_file(&p, f);
    assert_true(yaml_parser_load(&p, &doc));
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *cases = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++)
        cases = yaml_document_get_node(&doc, pr->value);
    for (yaml_node_item_t *it = cases->data.sequence.items.start;
         it < cases->data.sequence.items.top; it++) {
        yaml_node_t *m = yaml_document_get_node(&doc, *it);
        const char *ua = map_get(&doc, m, "user_agent_string");
        const char *want = map_get(&doc, m, "family");
        if (!ua || !want)
            continue;
        struct ap_ua_result r;
        ap_ua_classify(U, ap_span_cstr(ua), false, &r);
        const char *got = which == 0   ? r.browser_family
                          : which == 1 ? r.os_family
                                       : r.device_family;
        (*total)++;
        /* families longer than we keep are compared on the kept prefix (cut, then trimmed) */
        bool same =
            strlen(want) < AP_UA_FAMILY_MAX - 1
                ? strcmp(got, want) == 0
                : strncmp(got, want, strlen(got)) == 0 && strlen(got) + 2 >= AP_UA_FAMILY_MAX - 1;
        if (!same) {
            if (*bad < 10)
                print_message("  %s: \"%s\": got \"%s\", want \"%s\"\n", file, ua, got, want);
            (*bad)++;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(f);
}

static void test_uap_core_conformance(void **state)
{
    (void)state;
    if (!U || access(UAP_DIR "/tests/test_ua.yaml", R_OK) != 0)
        skip();
    static const char *const FILES[3] = {UAP_DIR "/tests/test_ua.yaml",
                                         UAP_DIR "/tests/test_os.yaml",
                                         UAP_DIR "/tests/test_device.yaml"};
    for (int i = 0; i < 3; i++) {
        size_t total = 0, bad = 0;
        conformance(FILES[i], i, &total, &bad);
        print_message("  %s: %zu cases, %zu differ\n", FILES[i], total, bad);
        assert_true(total > 100);
        assert_int_equal(bad, 0);
    }
}

static void *thread_main(void *arg)
{
    long *fails = arg;
    for (int round = 0; round < 200; round++) {
        const struct ua_case *c = &CASES[(size_t)round % NCASES];
        struct ap_serve_ctx ctx;
        memset(&ctx, 0, sizeof(ctx));
        ap_ua_parse(U, ap_span_cstr(c->ua), &ctx);
        if (ctx.device != c->device || ctx.os != c->os || ctx.browser != c->browser)
            (*fails)++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    if (!U)
        skip();
    pthread_t th[4];
    long fails[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &fails[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(fails[i], 0);
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Not a benchmark: prints what a miss and a hit cost, so a regression is visible in the log. */
static void test_cost(void **state)
{
    (void)state;
    if (!U)
        skip();
    struct ap_ua_result r;
    double t0 = now_us();
    for (int i = 0; i < 50; i++)
        ap_ua_classify(U, ap_span_cstr(CASES[(size_t)i % NCASES].ua), false, &r);
    double t1 = now_us();
    for (int i = 0; i < 100000; i++)
        ap_ua_classify(U, ap_span_cstr(CASES[(size_t)i % NCASES].ua), true, &r);
    double t2 = now_us();
    print_message("  uncached parse %.1f us, cached %.3f us\n", (t1 - t0) / 50, (t2 - t1) / 100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_user_agents),
        cmocka_unit_test(test_context_and_cache),
        cmocka_unit_test(test_empty_and_garbage),
        cmocka_unit_test(test_rules_file),
        cmocka_unit_test(test_uap_core_conformance),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
