/* Router: literal vs parameter precedence, params, "*" rest, 404/405 with Allow, HEAD->GET. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "net/ap_router.h"

static int h1(struct ap_http_exchange *x)
{
    (void)x;
    return 1;
}

static int h2(struct ap_http_exchange *x)
{
    (void)x;
    return 2;
}

static struct ap_router R;

static int setup(void **state)
{
    (void)state;
    ap_router_init(&R);
    assert_int_equal(ap_router_add(&R, AP_M(GET), "/", h1, NULL, "root"), 0);
    assert_int_equal(ap_router_add(&R, AP_M(GET) | AP_M(POST), "/api/v1/campaigns", h1, NULL, NULL), 0);
    assert_int_equal(ap_router_add(&R, AP_M(GET) | AP_M(PATCH), "/api/v1/campaigns/{id}", h2, NULL, NULL), 0);
    assert_int_equal(ap_router_add(&R, AP_M(GET), "/api/v1/campaigns/stats", h1, NULL, NULL), 0);
    assert_int_equal(ap_router_add(&R, AP_M(GET), "/assets/*", h2, NULL, NULL), 0);
    assert_int_equal(ap_router_add(&R, AP_M(GET), "/a/{x}/b/{y}", h1, NULL, NULL), 0);
    return 0;
}

static void match(const char *method_path, enum ap_http_method m, struct ap_route_match *out)
{
    ap_router_match(&R, m, ap_span_cstr(method_path), out);
}

static void test_literal_and_params(void **state)
{
    (void)state;
    struct ap_route_match m;
    match("/api/v1/campaigns", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 0);
    assert_string_equal(m.route->pattern, "/api/v1/campaigns");
    match("/api/v1/campaigns/42", AP_HTTP_PATCH, &m);
    assert_int_equal(m.status, 0);
    assert_int_equal(m.nparams, 1);
    assert_true(ap_span_eq_cstr(m.params[0], "42"));
    match("/api/v1/campaigns/stats", AP_HTTP_GET, &m);
    assert_string_equal(m.route->pattern, "/api/v1/campaigns/stats"); /* literal wins */
    match("/a/1/b/2", AP_HTTP_GET, &m);
    assert_int_equal(m.nparams, 2);
    assert_true(ap_span_eq_cstr(m.params[1], "2"));
    match("/", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 0);
    assert_string_equal(m.route->name, "root");
}

static void test_rest(void **state)
{
    (void)state;
    struct ap_route_match m;
    match("/assets/ab/cd.png", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 0);
    assert_true(ap_span_eq_cstr(m.rest, "ab/cd.png"));
    match("/assets/", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 0);
}

static void test_404_405(void **state)
{
    (void)state;
    struct ap_route_match m;
    match("/api/v1/nothing", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 404);
    assert_null(m.route);
    match("/api/v1/campaigns//", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 404); /* empty segment never matches {id} */
    match("relative", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 404);
    match("/api/v1/campaigns/7", AP_HTTP_DELETE, &m);
    assert_int_equal(m.status, 405);
    char allow[128];
    ap_router_allow_string(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD, PATCH");
    match("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o", AP_HTTP_GET, &m);
    assert_int_equal(m.status, 404);
}

static void test_head_falls_back_to_get(void **state)
{
    (void)state;
    struct ap_route_match m;
    match("/api/v1/campaigns/9", AP_HTTP_HEAD, &m);
    assert_int_equal(m.status, 0);
    assert_string_equal(m.route->pattern, "/api/v1/campaigns/{id}");
}

static void test_bad_patterns(void **state)
{
    (void)state;
    struct ap_router r;
    ap_router_init(&r);
    assert_int_equal(ap_router_add(&r, AP_M(GET), "no-slash", h1, NULL, NULL) < 0, 1);
    assert_int_equal(ap_router_add(&r, AP_M(GET), "/{a}/{b}/{c}/{d}/{e}", h1, NULL, NULL) < 0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_literal_and_params, setup),
        cmocka_unit_test_setup(test_rest, setup),
        cmocka_unit_test_setup(test_404_405, setup),
        cmocka_unit_test_setup(test_head_falls_back_to_get, setup),
        cmocka_unit_test(test_bad_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
