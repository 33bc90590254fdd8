#include "ap_router.h"

#include <stdio.h>
#include <string.h>

#include "../core/ap_error.h"

void ap_router_init(struct ap_router *r)
{
    r->nroutes = 0;
}

static int split(struct ap_span path, struct ap_span *seg, int max, bool allow_overflow)
{
    int n = 0;
    size_t i = 0;
    if (path.len == 0 || path.p[0] != '/')
        return -1;
    i = 1;
    while (i <= path.len) {
        size_t start = i;
        while (i < path.len && path.p[i] != '/')
            i++;
        if (n == max)
            return allow_overflow ? max + 1 : -1;
        seg[n++] = ap_span_make(path.p + start, i - start);
        i++;
    }
    /* "/" gives one empty segment: treat as zero segments */
    if (n == 1 && seg[0].len == 0)
        n = 0;
    return n;
}

int ap_router_add(struct ap_router *r, unsigned methods, const char *pattern,
                  ap_http_handler handler, void *data, const char *name)
{
    if (r->nroutes == AP_ROUTER_MAX_ROUTES)
        return AP_ELIMIT;
    struct ap_route *rt = &r->routes[r->nroutes];
    memset(rt, 0, sizeof(*rt));
    rt->methods = methods;
    rt->pattern = pattern;
    rt->handler = handler;
    rt->data = data;
    rt->name = name ? name : pattern;
    int n = split(ap_span_cstr(pattern), rt->seg, AP_ROUTER_MAX_SEGMENTS, false);
    if (n < 0)
        return AP_EINVAL;
    if (n > 0 && ap_span_eq_cstr(rt->seg[n - 1], "*")) {
        rt->rest = true;
        n--;
    }
    rt->nseg = n;
    for (int i = 0; i < n; i++)
        if (rt->seg[i].len >= 2 && rt->seg[i].p[0] == '{')
            rt->nparams++;
    if (rt->nparams > AP_ROUTER_MAX_PARAMS)
        return AP_ELIMIT;
    r->nroutes++;
    return AP_OK;
}

static bool is_param(struct ap_span s)
{
    return s.len >= 2 && s.p[0] == '{';
}

/* Returns the number of literal segments matched (for precedence), or -1. */
static int match_route(const struct ap_route *rt, const struct ap_span *seg, int n,
                       struct ap_span path, struct ap_route_match *m)
{
    if (rt->rest ? n < rt->nseg : n != rt->nseg)
        return -1;
    int literal = 0, np = 0;
    for (int i = 0; i < rt->nseg; i++) {
        if (is_param(rt->seg[i])) {
            if (seg[i].len == 0)
                return -1;
            if (m)
                m->params[np] = seg[i];
            np++;
        } else if (!ap_span_eq(rt->seg[i], seg[i])) {
            return -1;
        } else {
            literal++;
        }
    }
    if (m) {
        m->nparams = np;
        if (rt->rest) {
            if (n > rt->nseg) {
                const char *start = seg[rt->nseg].p;
                m->rest = ap_span_make(start, (size_t)(path.p + path.len - start));
            } else {
                m->rest = AP_SPAN_NULL;
            }
        }
    }
    return literal + (rt->rest ? 0 : 1000);
}

void ap_router_match(const struct ap_router *r, enum ap_http_method method, struct ap_span path,
                     struct ap_route_match *m)
{
    struct ap_span seg[AP_ROUTER_MAX_SEGMENTS + 1];
    memset(m, 0, sizeof(*m));
    m->index = -1;
    m->status = 404;
    int n = split(path, seg, AP_ROUTER_MAX_SEGMENTS, true);
    if (n < 0 || n > AP_ROUTER_MAX_SEGMENTS) {
        /* only a "*" route with few literal segments could match a deeper path */
        if (n < 0)
            return;
        n = AP_ROUTER_MAX_SEGMENTS;
    }
    unsigned want = 1u << method;
    if (method == AP_HTTP_HEAD)
        want |= 1u << AP_HTTP_GET;
    int best = -1, best_score = -1;
    unsigned allow = 0;
    for (int i = 0; i < r->nroutes; i++) {
        const struct ap_route *rt = &r->routes[i];
        int score = match_route(rt, seg, n, path, NULL);
        if (score < 0)
            continue;
        allow |= rt->methods;
        if (!(rt->methods & want))
            continue;
        /* an exact HEAD route beats the GET fallback */
        if (method == AP_HTTP_HEAD && (rt->methods & (1u << AP_HTTP_HEAD)))
            score += 1;
        if (score > best_score) {
            best = i;
            best_score = score;
        }
    }
    if (best >= 0) {
        m->route = &r->routes[best];
        m->index = best;
        m->status = 0;
        match_route(m->route, seg, n, path, m);
        return;
    }
    if (allow) {
        m->status = 405;
        m->allow = allow;
    }
}

void ap_router_allow_string(unsigned methods, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    if (methods & (1u << AP_HTTP_GET))
        methods |= 1u << AP_HTTP_HEAD;
    for (int m = 1; m < AP_HTTP_METHOD_COUNT; m++) {
        if (!(methods & (1u << m)))
            continue;
        int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "",
                         ap_http_method_name((enum ap_http_method)m));
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
    }
}
