/*
 * The API's routes against docs/api/openapi.yaml, both ways:
 *   - every route src/api registers (ap_api_register) is a path of the spec, with exactly the
 *     route's methods;
 *   - every path of the spec is a route of src/api, but the two that src/app registers itself
 *     (/healthz, /metrics: tests/integration/test_api_spec.py checks those on the daemon);
 *   - every field of every resource of ap_schema's table is a property of the resource's
 *     schema in the spec (components/schemas/<CamelName>), and the schema documents nothing
 *     else but the system and derived fields.
 * The spec is parsed by indentation (the file is written in block style, two spaces a level).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ap_api.h"
#include "core/ap_error.h"
#include "net/ap_router.h"
#include "store/ap_schema.h"

#define MAX_PATHS 128
#define MAX_PROPS 64
#define LINE_MAX_LEN 1024
#define PROP_MAX 96

struct spec_path {
    char path[128];
    unsigned methods; /* AP_M() bits */
};

struct spec {
    struct spec_path paths[MAX_PATHS];
    int npaths;
};

static const char *const APP_ROUTES[] = {"/healthz", "/metrics", NULL};

static int indent_of(const char *line)
{
    int n = 0;
    while (line[n] == ' ')
        n++;
    return n;
}

/* "  key:" -> key (quotes dropped) into out; false if the line is not a bare "key:" line. */
static bool key_of(const char *line, char *out, size_t cap)
{
    const char *p = line + indent_of(line);
    size_t n = strlen(p);
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    if (n < 2 || p[n - 1] != ':')
        return false;
    n--;
    if (n >= 2 && (p[0] == '"' || p[0] == '\'') && p[n - 1] == p[0]) {
        p++;
        n -= 2;
    }
    if (n == 0 || n >= cap || memchr(p, ' ', n))
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

static unsigned method_bit(const char *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } M[] = {{"get", AP_M(GET)},        {"post", AP_M(POST)},     {"put", AP_M(PUT)},
             {"patch", AP_M(PATCH)},    {"delete", AP_M(DELETE)}, {"head", AP_M(HEAD)},
             {"options", AP_M(OPTIONS)}};
    for (size_t i = 0; i < sizeof(M) / sizeof(M[0]); i++)
        if (strcmp(M[i].name, m) == 0)
            return M[i].bit;
    return 0;
}

static FILE *open_spec(void)
{
    FILE *f = fopen(AP_SOURCE_DIR "/docs/api/openapi.yaml", "r");
    assert_non_null(f);
    return f;
}

static void load_paths(struct spec *s)
{
    FILE *f = open_spec();
    char line[LINE_MAX_LEN], key[sizeof(s->paths[0].path)];
    bool in_paths = false;
    memset(s, 0, sizeof(*s));
    while (fgets(line, sizeof(line), f)) {
        int ind = indent_of(line);
        if (line[ind] == '\n' || line[ind] == '#')
            continue;
        if (ind == 0) {
            in_paths = strncmp(line, "paths:", 6) == 0;
            continue;
        }
        if (!in_paths || !key_of(line, key, sizeof(key)))
            continue;
        if (ind == 2) {
            assert_true(s->npaths < MAX_PATHS);
            snprintf(s->paths[s->npaths].path, sizeof(s->paths[0].path), "%s", key);
            s->npaths++;
        } else if (ind == 4 && s->npaths > 0) {
            s->paths[s->npaths - 1].methods |= method_bit(key);
        }
    }
    fclose(f);
    assert_true(s->npaths > 0);
}

static const struct spec_path *find_path(const struct spec *s, const char *path)
{
    for (int i = 0; i < s->npaths; i++)
        if (strcmp(s->paths[i].path, path) == 0)
            return &s->paths[i];
    return NULL;
}

static void build_router(struct ap_router *r)
{
    ap_router_init(r);
    assert_int_equal(ap_api_register(r), AP_OK);
    assert_true(r->nroutes > 0);
}

static void every_route_is_in_the_spec(void **state)
{
    (void)state;
    static struct ap_router r;
    static struct spec s;
    build_router(&r);
    load_paths(&s);
    for (int i = 0; i < r.nroutes; i++) {
        const struct ap_route *rt = &r.routes[i];
        const struct spec_path *p = find_path(&s, rt->pattern);
        if (!p)
            fail_msg("route %s is not documented in docs/api/openapi.yaml", rt->pattern);
        if (p->methods != rt->methods)
            fail_msg("%s: the route takes methods 0x%x, the spec documents 0x%x", rt->pattern,
                     rt->methods, p->methods);
    }
}

static void every_spec_path_is_a_route(void **state)
{
    (void)state;
    static struct ap_router r;
    static struct spec s;
    build_router(&r);
    load_paths(&s);
    for (int i = 0; i < s.npaths; i++) {
        bool app = false, found = false;
        for (size_t k = 0; APP_ROUTES[k]; k++)
            app = app || strcmp(APP_ROUTES[k], s.paths[i].path) == 0;
        for (int k = 0; k < r.nroutes && !found; k++)
            found = strcmp(r.routes[k].pattern, s.paths[i].path) == 0;
        if (!app && !found)
            fail_msg("the spec documents %s but src/api has no such route", s.paths[i].path);
    }
}

static void assets_route_alone(void **state)
{
    (void)state;
    static struct ap_router r;
    ap_router_init(&r);
    assert_int_equal(ap_api_register_assets(&r), AP_OK);
    assert_int_equal(r.nroutes, 1);
    assert_string_equal(r.routes[0].pattern, "/assets/{file}");
    struct ap_route_match m;
    const char *p = "/assets/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.png";
    ap_router_match(&r, AP_HTTP_GET, ap_span_cstr(p), &m);
    assert_int_equal(m.status, 0);
}

/* "demand_partner" -> "DemandPartner" */
static void camel(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    bool up = true;
    for (const char *p = name; *p && n + 1 < cap; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        out[n++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
        up = false;
    }
    out[n] = '\0';
}

/* The property names of components/schemas/<schema>. */
static int load_props(const char *schema, char props[][PROP_MAX], int cap)
{
    FILE *f = open_spec();
    char line[LINE_MAX_LEN], key[PROP_MAX];
    int n = 0, section = 0; /* 1 components, 2 schemas, 3 the schema, 4 its properties */
    while (fgets(line, sizeof(line), f)) {
        int ind = indent_of(line);
        if (line[ind] == '\n')
            continue;
        bool k = key_of(line, key, sizeof(key));
        if (ind == 0)
            section = k && strcmp(key, "components") == 0 ? 1 : 0;
        else if (ind == 2 && section >= 1)
            section = k && strcmp(key, "schemas") == 0 ? 2 : 1;
        else if (ind == 4 && section >= 2)
            section = k && strcmp(key, schema) == 0 ? 3 : 2;
        else if (ind == 6 && section >= 3)
            section = k && strcmp(key, "properties") == 0 ? 4 : 3;
        else if (ind == 8 && section == 4 && k && n < cap)
            snprintf(props[n++], PROP_MAX, "%s", key);
    }
    fclose(f);
    return n;
}

static void every_field_is_documented(void **state)
{
    (void)state;
    static const char *const extra[] = {"id",  "created_at", "updated_at", "version",
                                        "tag", "asset_path", NULL};
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++) {
        const struct ap_schema_resource *r = ap_schema_get((enum ap_schema_res)i);
        char name[64], props[MAX_PROPS][PROP_MAX];
        camel(r->name, name, sizeof(name));
        int n = load_props(name, props, MAX_PROPS);
        if (n == 0)
            fail_msg("components/schemas/%s is missing from the spec", name);
        for (size_t f = 0; f < r->nfields; f++) {
            bool found = false;
            for (int k = 0; k < n && !found; k++)
                found = strcmp(props[k], r->fields[f].name) == 0;
            if (!found)
                fail_msg("%s.%s is not documented in the spec", name, r->fields[f].name);
        }
        for (int k = 0; k < n; k++) {
            bool known = ap_schema_field(r, props[k]) != NULL;
            for (size_t e = 0; extra[e] && !known; e++)
                known = strcmp(extra[e], props[k]) == 0;
            if (!known)
                fail_msg("the spec documents %s.%s, which the schema lacks", name, props[k]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_in_the_spec),
        cmocka_unit_test(every_spec_path_is_a_route),
        cmocka_unit_test(assets_route_alone),
        cmocka_unit_test(every_field_is_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
