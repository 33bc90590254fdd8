/*
 * hc_bench: a client-only benchmark of ap_http_client: one thread, one ap_loop, keeps
 * --inflight requests outstanding against --url until --total have completed (or, with
 * --burst, sends --inflight requests at once and waits for all of them: "N in flight").
 * Prints one JSON line: completed, ok (2xx), by-error counts, peak in flight, requests/s and
 * latency percentiles (from ap_hc_send to the callback).
 *
 * usage: hc_bench --url URL [--inflight N] [--total M] [--timeout-ms T] [--burst]
 *                 [--max-host-connections K]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../../src/core/ap_error.h"
#include "../../src/core/ap_log.h"
#include "../../src/core/ap_time.h"
#include "../../src/net/ap_http_client.h"
#include "../../src/net/ap_loop.h"

static const char body[] =
    "{\"id\":\"bench\",\"imp\":[{\"id\":\"1\",\"banner\":{\"format\":[{\"w\":300,\"h\":250}]},"
    "\"bidfloor\":0.5}],\"site\":{\"id\":\"s1\",\"page\":\"https://news.example/a\"},"
    "\"device\":{\"ua\":\"Mozilla/5.0\",\"ip\":\"192.0.2.1\"},\"tmax\":200}";

static struct {
    const char *url;
    int inflight, total, timeout_ms, max_host;
    bool burst;
} opt = {.inflight = 1000, .total = 20000, .timeout_ms = 5000, .max_host = -1};

static struct ap_loop loop;
static struct ap_hc *hc;
static int sent, done, ok, other, timeouts, ioerr, limit, refused, peak;
static uint32_t *lat_us;

static void send_one(void);

static void on_done(void *arg, const struct ap_hc_resp *r)
{
    (void)arg;
    if (done < opt.total)
        lat_us[done] = (uint32_t)(r->elapsed_us > UINT32_MAX ? UINT32_MAX : r->elapsed_us);
    done++;
    if (r->err == AP_OK && r->status >= 200 && r->status < 300)
        ok++;
    else if (r->err == AP_OK)
        other++;
    else if (r->err == AP_ETIMEDOUT)
        timeouts++;
    else if (r->err == AP_ELIMIT)
        limit++;
    else
        ioerr++;
    if (!opt.burst && sent < opt.total)
        send_one();
    if (done >= opt.total)
        ap_loop_stop(&loop);
}

static void send_one(void)
{
    struct ap_hc_req rq = {.method = "POST",
                           .url = opt.url,
                           .content_type = "application/json",
                           .body = body,
                           .body_len = sizeof(body) - 1,
                           .timeout_ms = opt.timeout_ms};
    sent++;
    int rc = ap_hc_send(hc, &rq, on_done, NULL);
    if (rc != AP_OK) {
        refused++;
        done++;
        if (done >= opt.total)
            ap_loop_stop(&loop);
        return;
    }
    int n = ap_hc_inflight(hc);
    if (n > peak)
        peak = n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(argv[i], "--url") == 0)
            opt.url = argv[++i];
        else if (strcmp(argv[i], "--inflight") == 0)
            opt.inflight = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(argv[i], "--total") == 0)
            opt.total = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            opt.timeout_ms = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(argv[i], "--max-host-connections") == 0)
            opt.max_host = (int)strtol(v, NULL, 10), i++;
        else if (strcmp(argv[i], "--burst") == 0)
            opt.burst = true;
        else
            opt.url = NULL, i = argc;
    }
    if (!opt.url || opt.inflight < 1 || opt.total < 1) {
        fprintf(stderr, "usage: hc_bench --url URL [--inflight N] [--total M] [--timeout-ms T] "
                        "[--burst] [--max-host-connections K]\n");
        return 2;
    }
    if (opt.burst)
        opt.total = opt.inflight;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ap_log_set_level_name("warn");
    if (opt.max_host >= 0)
        ap_hc_configure_pool(opt.max_host, opt.max_host > 0 ? opt.max_host : opt.inflight);
    else
        ap_hc_configure_pool(-1, opt.inflight);
    lat_us = calloc((size_t)opt.total, sizeof(*lat_us));
    if (!lat_us || ap_loop_init_backend(&loop, AP_LOOP_EPOLL, NULL, NULL) != AP_OK)
        return 1;
    hc = ap_hc_worker(&loop);
    if (!hc)
        return 1;
    uint64_t t0 = ap_time_mono_ns();
    int first = opt.inflight < opt.total ? opt.inflight : opt.total;
    for (int i = 0; i < first; i++)
        send_one();
    if (done < opt.total)
        ap_loop_run(&loop);
    double secs = (double)(ap_time_mono_ns() - t0) / 1e9;
    int n = done - refused;
    qsort(lat_us, (size_t)(n > 0 ? n : 0), sizeof(*lat_us), cmp_u32);
#define PCT(p) (n > 0 ? lat_us[(size_t)((double)(n - 1) * (p))] / 1000.0 : 0.0)
    printf("{\"completed\":%d,\"ok\":%d,\"other_status\":%d,\"timeouts\":%d,\"io_errors\":%d,"
           "\"too_long\":%d,\"refused\":%d,\"peak_inflight\":%d,\"seconds\":%.3f,"
           "\"rps\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
           done, ok, other, timeouts, ioerr, limit, refused, peak, secs, done / secs, PCT(0.5),
           PCT(0.99), PCT(1.0));
    ap_hc_worker_shutdown();
    ap_loop_destroy(&loop);
    free(lat_us);
    return ok == done ? 0 : 1;
}
