/*
 * ap_router: maps method + path to a handler.
 *
 * Patterns are '/'-separated segments; a segment "{name}" matches any one non-empty segment
 * and is captured as a parameter; a final segment "*" matches the rest of the path (possibly
 * empty). Literal routes win over parameter routes when both match. A path that matches with
 * another method gives 405 and the Allow list; HEAD falls back to GET.
 *
 * A router is built once at start-up (not thread-safe while adding), then read by any number of
 * threads. The router owns nothing the caller passed in: patterns and names must be string
 * literals or outlive it.
 */
#ifndef AP_ROUTER_H
#define AP_ROUTER_H

#include <stdbool.h>

#include "../core/ap_span.h"
#include "ap_http.h"

#define AP_ROUTER_MAX_ROUTES 256
#define AP_ROUTER_MAX_SEGMENTS 12
#define AP_ROUTER_MAX_PARAMS 4

struct ap_http_exchange;
typedef int (*ap_http_handler)(struct ap_http_exchange *x);

struct ap_route {
    unsigned methods; /* bit (1u << enum ap_http_method) */
    const char *pattern;
    ap_http_handler handler;
    void *data;       /* passed to the handler as x->route_data */
    const char *name; /* metrics label; the pattern if NULL */
    /* compiled */
    int nseg;
    struct ap_span seg[AP_ROUTER_MAX_SEGMENTS];
    bool rest; /* ends in "*" */
    int nparams;
};

struct ap_router {
    int nroutes;
    struct ap_route routes[AP_ROUTER_MAX_ROUTES];
};

#define AP_M(m) (1u << (AP_HTTP_##m))

struct ap_route_match {
    const struct ap_route *route; /* NULL if none */
    int index;                    /* route index (metrics), -1 if none */
    int status;                   /* 0 matched, 404, or 405 */
    unsigned allow;               /* for 405: methods that would match */
    int nparams;
    struct ap_span params[AP_ROUTER_MAX_PARAMS];
    struct ap_span rest; /* what "*" matched */
};

void ap_router_init(struct ap_router *r);

/* Adds a route. 0, AP_ELIMIT (too many routes/segments/params) or AP_EINVAL (bad pattern). */
int ap_router_add(struct ap_router *r, unsigned methods, const char *pattern,
                  ap_http_handler handler, void *data, const char *name);

/* Looks up method + path. Never fails; see status. Any thread. */
void ap_router_match(const struct ap_router *r, enum ap_http_method method, struct ap_span path,
                     struct ap_route_match *m);

/* Writes the Allow header value for a method mask ("GET, HEAD, POST") into out. */
void ap_router_allow_string(unsigned methods, char *out, size_t cap);

#endif
