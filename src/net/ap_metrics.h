/*
 * ap_metrics: renders the servers' per-worker counters as Prometheus text (version 0.0.4).
 * Counters are summed over workers at scrape time (the hot path never writes shared memory).
 * Called on a control-plane thread; the output buffer is the caller's.
 */
#ifndef AP_METRICS_H
#define AP_METRICS_H

#include "../core/ap_buf.h"
#include "ap_server.h"

/* Appends the metrics of each server in servers[0..n). 0 or AP_ELIMIT/AP_ENOMEM. */
int ap_metrics_render(struct ap_buf *out, struct ap_server *const *servers, int n);

#endif
