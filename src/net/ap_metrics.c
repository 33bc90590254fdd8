#include "ap_metrics.h"
#include "ap_http_client.h"

#include <stdatomic.h>
#include <stdio.h>

#include "../core/ap_error.h"

#define LOAD(c) atomic_load_explicit(&(c), memory_order_relaxed)

/* Each metric family is written as one group (all servers, all workers), as the text format
 * requires. */

static int render_requests(struct ap_buf *o, const struct ap_server *s)
{
    const char *name = ap_server_name(s);
    const struct ap_router *r = ap_server_router(s);
    int nw = ap_server_threads(s), rc = 0;
    for (int route = 0; route <= AP_ROUTER_MAX_ROUTES; route++) {
        if (route < AP_ROUTER_MAX_ROUTES && route >= r->nroutes)
            continue;
        const char *rname = route < AP_ROUTER_MAX_ROUTES ? r->routes[route].name : "unmatched";
        for (int slot = 0; slot < AP_METRICS_STATUS_SLOTS; slot++) {
            for (int w = 0; w < nw; w++) {
                uint64_t v = LOAD(ap_server_metrics(s, w)->requests[route][slot]);
                if (!v)
                    continue;
                int code = ap_metrics_status_codes[slot];
                char status[8];
                if (code)
                    snprintf(status, sizeof(status), "%d", code);
                else
                    snprintf(status, sizeof(status), "other");
                rc |= ap_buf_printf(o,
                                    "adplatform_http_requests_total{server=\"%s\",route=\"%s\","
                                    "status=\"%s\",worker=\"%d\"} %llu\n",
                                    name, rname, status, w, (unsigned long long)v);
            }
        }
    }
    return rc;
}

static int render_latency(struct ap_buf *o, const struct ap_server *s)
{
    const char *name = ap_server_name(s);
    int rc = 0;
    for (int w = 0; w < ap_server_threads(s); w++) {
        const struct ap_http_metrics *m = ap_server_metrics(s, w);
        uint64_t cum = 0;
        for (int b = 0; b < AP_METRICS_LATENCY_BUCKETS; b++) {
            char le[32];
            cum += LOAD(m->latency_buckets[b]);
            if (b < AP_METRICS_LATENCY_BUCKETS - 1)
                snprintf(le, sizeof(le), "%g", (double)ap_metrics_latency_bounds_us[b] / 1e6);
            else
                snprintf(le, sizeof(le), "+Inf");
            rc |= ap_buf_printf(o,
                                "adplatform_http_request_duration_seconds_bucket{server=\"%s\","
                                "worker=\"%d\",le=\"%s\"} %llu\n",
                                name, w, le, (unsigned long long)cum);
        }
        rc |= ap_buf_printf(o,
                            "adplatform_http_request_duration_seconds_sum{server=\"%s\","
                            "worker=\"%d\"} %.6f\n"
                            "adplatform_http_request_duration_seconds_count{server=\"%s\","
                            "worker=\"%d\"} %llu\n",
                            name, w, (double)LOAD(m->latency_sum_us) / 1e6, name, w,
                            (unsigned long long)LOAD(m->latency_count));
    }
    return rc;
}

enum gauge { G_OPEN, G_ACCEPTED, G_REFUSED, G_TIMEOUTS, G_BYTES_IN, G_BYTES_OUT, G_COUNT };

static const struct {
    const char *name, *type, *help;
} gauges[G_COUNT] = {
    {"adplatform_http_open_connections", "gauge", "Open connections."},
    {"adplatform_http_connections_accepted_total", "counter", "Connections accepted."},
    {"adplatform_http_connections_refused_total", "counter",
     "Connections refused over the connection limit."},
    {"adplatform_http_timeouts_total", "counter", "Requests cut off by the header timeout."},
    {"adplatform_http_bytes_in_total", "counter", "Bytes received."},
    {"adplatform_http_bytes_out_total", "counter", "Bytes sent."},
};

static uint64_t gauge_value(const struct ap_http_metrics *m, enum gauge g)
{
    switch (g) {
    case G_OPEN:
        return LOAD(m->open_connections);
    case G_ACCEPTED:
        return LOAD(m->accepted);
    case G_REFUSED:
        return LOAD(m->refused);
    case G_TIMEOUTS:
        return LOAD(m->timeouts);
    case G_BYTES_IN:
        return LOAD(m->bytes_in);
    case G_BYTES_OUT:
        return LOAD(m->bytes_out);
    case G_COUNT:
        break;
    }
    return 0;
}

int ap_metrics_render(struct ap_buf *out, struct ap_server *const *servers, int n)
{
    int rc = ap_buf_printf(out,
                           "# HELP adplatform_http_requests_total HTTP requests by route and "
                           "status.\n# TYPE adplatform_http_requests_total counter\n");
    for (int i = 0; i < n; i++)
        rc |= render_requests(out, servers[i]);
    rc |= ap_buf_printf(out, "# HELP adplatform_http_request_duration_seconds Time from parsed "
                             "request to response.\n"
                             "# TYPE adplatform_http_request_duration_seconds histogram\n");
    for (int i = 0; i < n; i++)
        rc |= render_latency(out, servers[i]);
    for (int g = 0; g < G_COUNT; g++) {
        rc |= ap_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", gauges[g].name, gauges[g].help,
                            gauges[g].name, gauges[g].type);
        for (int i = 0; i < n; i++)
            for (int w = 0; w < ap_server_threads(servers[i]); w++)
                rc |= ap_buf_printf(
                    out, "%s{server=\"%s\",worker=\"%d\"} %llu\n", gauges[g].name,
                    ap_server_name(servers[i]), w,
                    (unsigned long long)gauge_value(ap_server_metrics(servers[i], w),
                                                    (enum gauge)g));
    }
    rc |= ap_hc_metrics_render(out); /* outbound requests per demand partner (ap_http_client) */
    return rc ? AP_ELIMIT : AP_OK;
}
