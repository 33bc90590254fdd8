/*
 * ap_http_client against a real loopback server: the test bidder (tests/tools/test_bidder.c,
 * started once for the group; AP_TEST_BIDDER names it, default tools/test_bidder next to this
 * binary). Success, gzip, timeout, connection refused, reset, garbage, truncated, size cap, QPS
 * cap, circuit breaker (opens, probes half-open, closes), retries with backoff, 1000+
 * concurrent requests on one loop, keep-alive reuse counted at the server, fire-and-forget
 * notices, cancellation at shutdown, both loop backends, per-target stats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/ap_buf.h"
#include "core/ap_error.h"
#include "core/ap_log.h"
#include "core/ap_time.h"
#include "net/ap_http_client.h"
#include "net/ap_loop.h"

static pid_t bidder_pid;
static int bport, rport; /* the bidder's main and raw ports */
static char tmpdir[64];
static char url_base[64], raw_base[64];

static struct ap_loop loop;
static struct ap_hc *hc;

/* ---- the bidder process ---- */

static const char *bidder_path(char *buf, size_t cap)
{
    const char *env = getenv("AP_TEST_BIDDER");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return "test_bidder";
    exe[n] = '\0';
    snprintf(buf, cap, "%s/tools/test_bidder", dirname(exe));
    return buf;
}

static int read_ports(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    int rc = fscanf(f, "{\"listen\": %d, \"raw\": %d}", &bport, &rport);
    fclose(f);
    return rc == 2 ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    ap_log_set_level_name("warn");
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ap_hc_test.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char portfile[128], path[PATH_MAX + 32];
    snprintf(portfile, sizeof(portfile), "%s/ports.json", tmpdir);
    const char *bin = bidder_path(path, sizeof(path));
    bidder_pid = fork();
    if (bidder_pid == 0) {
        execl(bin, bin, "--port-file", portfile, "--threads", "1", "--gzip", "--hang-ms", "5000",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (read_ports(portfile) == 0)
            break;
        usleep(10000);
    }
    if (bport <= 0) {
        fprintf(stderr, "test bidder %s did not start\n", bin);
        return -1;
    }
    snprintf(url_base, sizeof(url_base), "http://127.0.0.1:%d", bport);
    snprintf(raw_base, sizeof(raw_base), "http://127.0.0.1:%d", rport);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (bidder_pid > 0) {
        kill(bidder_pid, SIGTERM);
        int st;
        waitpid(bidder_pid, &st, 0);
    }
    char f[128];
    snprintf(f, sizeof(f), "%s/ports.json", tmpdir);
    unlink(f);
    rmdir(tmpdir);
    return 0;
}

/* A blocking request to the bidder (its own short connection): the response body. */
static char *bidder_call(const char *method, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)bport)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return NULL;
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;
    while (buf && len < cap && (r = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)r;
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

static char *bidder_get(const char *path)
{
    return bidder_call("GET", path);
}

/* Forgets the requests and notices the bidder recorded. */
static void bidder_reset(void)
{
    char *r = bidder_call("POST", "/_reset");
    assert_non_null(r);
    assert_string_equal(r, "{}");
    free(r);
}

static long bidder_stat(const char *key)
{
    char *s = bidder_get("/_stats");
    assert_non_null(s);
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    char *p = strstr(s, pat);
    long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
    free(s);
    return v;
}

/* ---- a loop and a client per test ---- */

static int setup_backend(enum ap_loop_backend be)
{
    if (ap_loop_init_backend(&loop, be, NULL, NULL) != AP_OK)
        return -1;
    hc = ap_hc_worker(&loop);
    return hc ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    ap_hc_configure_pool(AP_HC_DEFAULT_MAX_HOST_CONNECTIONS, AP_HC_DEFAULT_MAX_CONNECTS);
    return setup_backend(AP_LOOP_EPOLL);
}

static int setup_uring(void **state)
{
    (void)state;
    return setup_backend(AP_LOOP_URING);
}

static int teardown(void **state)
{
    (void)state;
    ap_hc_worker_shutdown();
    ap_loop_destroy(&loop);
    hc = NULL;
    return 0;
}

struct result {
    int calls;
    struct ap_hc_resp r;
    char body[8192];
    bool in_send; /* set around ap_hc_send: a callback from inside it would see it */
    bool cb_inside_send;
};

static bool sending;

static void on_done(void *arg, const struct ap_hc_resp *r)
{
    struct result *res = arg;
    res->calls++;
    res->cb_inside_send = sending;
    res->r = *r;
    size_t n = r->body_len < sizeof(res->body) - 1 ? r->body_len : sizeof(res->body) - 1;
    if (r->body)
        memcpy(res->body, r->body, n);
    res->body[n] = '\0';
    res->r.body = NULL;
}

/* Runs the loop until *count reaches want or ms pass. */
static void run_until(const int *count, int want, int ms)
{
    uint64_t end = ap_time_mono_ns() + (uint64_t)ms * 1000000ull;
    while (*count < want && ap_time_mono_ns() < end)
        ap_loop_run_once(&loop, 10);
}

static const char bid_req[] = "{\"id\":\"req-1\",\"imp\":[{\"id\":\"imp-1\",\"banner\":{\"format\":"
                              "[{\"w\":300,\"h\":250}]}}],"
                              "\"site\":{\"page\":\"https://example.com/\"},\"tmax\":500}";

static int post(const char *url, int timeout_ms, int target, struct result *res)
{
    struct ap_hc_req rq = {.method = "POST",
                           .url = url,
                           .content_type = "application/json",
                           .body = bid_req,
                           .body_len = sizeof(bid_req) - 1,
                           .timeout_ms = timeout_ms,
                           .target = target};
    sending = true;
    int rc = ap_hc_send(hc, &rq, on_done, res);
    sending = false;
    return rc;
}

/* One request, run to completion. */
static void post_wait(const char *url, int timeout_ms, int target, struct result *res)
{
    memset(res, 0, sizeof(*res));
    assert_int_equal(post(url, timeout_ms, target, res), AP_OK);
    assert_int_equal(ap_hc_inflight(hc), 1);
    run_until(&res->calls, 1, timeout_ms + 3000);
    assert_int_equal(res->calls, 1);
    assert_false(res->cb_inside_send);
    assert_int_equal(ap_hc_inflight(hc), 0);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd); /* nothing listens there now */
    return ntohs(a.sin_port);
}

/* ---- tests ---- */

static void check_bid_success(void)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/openrtb2/auction", url_base);
    struct result res;
    post_wait(url, 2000, 1, &res);
    assert_int_equal(res.r.err, AP_OK);
    assert_int_equal(res.r.status, 200);
    assert_non_null(strstr(res.body, "\"seatbid\""));
    assert_non_null(strstr(res.body, "\"impid\":\"imp-1\""));
    assert_true(res.r.elapsed_us > 0 && res.r.elapsed_us < 2000000);
    /* what the server received: our body, our content type, no Expect: 100-continue */
    char *reqs = bidder_get("/_requests");
    assert_non_null(reqs);
    assert_non_null(strstr(reqs, "\"content-type\":\"application/json\""));
    assert_non_null(strstr(reqs, "req-1"));
    assert_null(strstr(reqs, "100-continue"));
    free(reqs);
}

static void test_success(void **state)
{
    (void)state;
    check_bid_success();
    struct ap_hc_target_stats st;
    ap_hc_target_stats(1, &st);
    assert_true(st.requests >= 1);
    assert_true(st.responses_2xx >= 1);
    uint64_t in_buckets = 0;
    for (int i = 0; i < AP_HC_LATENCY_BUCKETS; i++)
        in_buckets += st.latency_buckets[i];
    assert_int_equal(in_buckets, st.responses_2xx + st.responses_other);
    assert_true(st.latency_sum_us > 0);
    /* and on /metrics */
    struct ap_buf out;
    ap_buf_init(&out, 4 << 20);
    assert_int_equal(ap_hc_metrics_render(&out), AP_OK);
    assert_int_equal(ap_buf_append(&out, "", 1), AP_OK);
    char line[128];
    snprintf(line, sizeof(line), "adplatform_partner_requests_total{partner=\"1\"} %llu\n",
             (unsigned long long)st.requests);
    assert_non_null(strstr(out.data, line));
    snprintf(line, sizeof(line),
             "adplatform_partner_request_duration_seconds_bucket{partner=\"1\",le=\"+Inf\"} %llu",
             (unsigned long long)in_buckets);
    assert_non_null(strstr(out.data, line));
    assert_non_null(strstr(out.data, "adplatform_partner_breaker_state{partner=\"1\"} 0\n"));
    assert_null(strstr(out.data, "{partner=\"999\"}"));
    ap_buf_free(&out);
}

static void test_success_uring(void **state)
{
    (void)state;
    if (ap_loop_backend(&loop) != AP_LOOP_URING)
        skip(); /* io_uring unavailable here: the epoll run covers the client */
    check_bid_success();
}

static void test_nobid_and_status(void **state)
{
    (void)state;
    char url[128];
    struct result res;
    snprintf(url, sizeof(url), "%s/x?mode=nobid", url_base);
    post_wait(url, 2000, 0, &res);
    assert_int_equal(res.r.err, AP_OK);
    assert_int_equal(res.r.status, 204);
    assert_int_equal(res.r.body_len, 0);
    snprintf(url, sizeof(url), "%s/x?mode=error", url_base);
    post_wait(url, 2000, 0, &res);
    assert_int_equal(res.r.err, AP_OK);
    assert_int_equal(res.r.status, 500);
}

static void test_gzip(void **state)
{
    (void)state;
    bidder_reset();
    char url[128];
    snprintf(url, sizeof(url), "%s/gz?gzip=1", url_base);
    struct result res;
    post_wait(url, 2000, 0, &res);
    assert_int_equal(res.r.err, AP_OK);
    assert_int_equal(res.r.status, 200);
    /* decoded: plain JSON, not the gzip magic bytes */
    assert_int_equal(res.body[0], '{');
    assert_non_null(strstr(res.body, "\"seatbid\""));
    char *reqs = bidder_get("/_requests");
    assert_non_null(reqs);
    const char *gz = strstr(reqs, "\"path\":\"/gz\"");
    assert_non_null(gz);
    const char *ae = strstr(gz, "\"accept-encoding\":\"");
    assert_non_null(ae);
    assert_non_null(strstr(ae, "gzip"));
    free(reqs);
}

static void test_timeout(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/x?mode=hang", url_base);
    struct result res;
    uint64_t t0 = ap_time_mono_ns();
    post_wait(url, 200, 2, &res);
    uint64_t ms = (ap_time_mono_ns() - t0) / 1000000;
    assert_int_equal(res.r.err, AP_ETIMEDOUT);
    assert_int_equal(res.r.status, 0);
    assert_true(ms >= 190 && ms < 1500);
    struct ap_hc_target_stats st;
    ap_hc_target_stats(2, &st);
    assert_true(st.timeouts >= 1);
}

static void test_slow_within_timeout(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/x?delay=100", url_base);
    struct result res;
    post_wait(url, 1000, 0, &res);
    assert_int_equal(res.r.err, AP_OK);
    assert_int_equal(res.r.status, 200);
    assert_true(res.r.elapsed_us >= 95000);
}

static void test_refused(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", closed_port());
    struct result res;
    post_wait(url, 2000, 3, &res);
    assert_int_equal(res.r.err, AP_EIO);
    assert_true(res.r.elapsed_us < 1000000);
    struct ap_hc_target_stats st;
    ap_hc_target_stats(3, &st);
    assert_true(st.errors >= 1);
}

static void test_reset_garbage_truncated(void **state)
{
    (void)state;
    static const char *const paths[] = {"/reset", "/garbage", "/truncated", "/close"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char url[128];
        snprintf(url, sizeof(url), "%s%s", raw_base, paths[i]);
        struct result res;
        post_wait(url, 2000, 0, &res);
        if (res.r.err != AP_EIO)
            fail_msg("%s: err %d status %d", paths[i], res.r.err, res.r.status);
        assert_true(res.r.elapsed_us < 1500000);
    }
}

static void test_body_not_json_passes_through(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/x?mode=garbage", url_base);
    struct result res;
    post_wait(url, 2000, 0, &res);
    assert_int_equal(res.r.err, AP_OK); /* HTTP is fine: judging the body is the caller's job */
    assert_int_equal(res.r.status, 200);
    assert_non_null(strstr(res.body, "not \"json\""));
}

static void test_size_cap(void **state)
{
    (void)state;
    char url[128];
    struct result res;
    snprintf(url, sizeof(url), "%s/x?mode=big&size=%d", url_base, AP_HC_MAX_RESPONSE + 1);
    post_wait(url, 5000, 0, &res);
    assert_int_equal(res.r.err, AP_ELIMIT);
    snprintf(url, sizeof(url), "%s/x?mode=big&size=%d", url_base, AP_HC_MAX_RESPONSE);
    post_wait(url, 5000, 0, &res);
    assert_int_equal(res.r.err, AP_OK);
    assert_int_equal(res.r.body_len, AP_HC_MAX_RESPONSE);
    /* gzip does not get around it: the cap is on the decoded body */
    snprintf(url, sizeof(url), "%s/x?mode=big&gzip=1&size=%d", url_base, 4 * AP_HC_MAX_RESPONSE);
    post_wait(url, 5000, 0, &res);
    assert_int_equal(res.r.err, AP_ELIMIT);
}

static void test_invalid(void **state)
{
    (void)state;
    struct result res = {0};
    struct ap_hc_req rq = {.method = "GET", .url = "ftp://127.0.0.1/", .timeout_ms = 100};
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    rq.url = "http://";
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    rq.url = "http://127.0.0.1/a b";
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    rq.url = url_base;
    rq.method = "PUT";
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    rq.method = "GET";
    rq.timeout_ms = 0;
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    rq.timeout_ms = 100;
    rq.target = AP_HC_MAX_TARGETS;
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    rq.target = 0;
    const char *bad_headers[] = {"X-Evil: a\r\nX-Injected: b", NULL};
    rq.headers = bad_headers;
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_EINVAL);
    assert_int_equal(ap_hc_inflight(hc), 0);
    assert_int_equal(res.calls, 0);
}

static void test_extra_headers(void **state)
{
    (void)state;
    bidder_reset();
    char url[128];
    snprintf(url, sizeof(url), "%s/hdr", url_base);
    const char *h[] = {"X-Openrtb-Version: 2.6", NULL};
    /* a body over 1 KiB, where curl would otherwise ask "Expect: 100-continue" */
    static char big[3000];
    memset(big, ' ', sizeof(big));
    big[0] = '{';
    big[sizeof(big) - 1] = '}';
    struct ap_hc_req rq = {.method = "POST",
                           .url = url,
                           .content_type = "application/json",
                           .body = big,
                           .body_len = sizeof(big),
                           .timeout_ms = 2000,
                           .headers = h};
    struct result res = {0};
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_OK);
    run_until(&res.calls, 1, 3000);
    assert_int_equal(res.calls, 1);
    char *reqs = bidder_get("/_requests");
    assert_non_null(reqs);
    const char *p = strstr(reqs, "\"path\":\"/hdr\"");
    assert_non_null(p);
    assert_non_null(strstr(p, "\"x-openrtb-version\":\"2.6\""));
    assert_non_null(strstr(p, "\"content-length\":\"3000\""));
    assert_null(strstr(p, "\"expect\""));
    assert_int_equal(res.r.status, 204); /* a request without imps: no bid */
    free(reqs);
}

static void test_qps_cap(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/q", url_base);
    struct ap_hc_target_stats before, after;
    ap_hc_target_stats(5, &before);
    static struct result res[50];
    memset(res, 0, sizeof(res));
    int accepted = 0, busy = 0;
    struct ap_hc_req rq = {.method = "POST",
                           .url = url,
                           .body = "{}",
                           .body_len = 2,
                           .timeout_ms = 2000,
                           .target = 5,
                           .qps_limit = 100};
    for (int i = 0; i < 50; i++) {
        int rc = ap_hc_send(hc, &rq, on_done, &res[i]);
        if (rc == AP_OK)
            accepted++;
        else if (rc == AP_EBUSY)
            busy++;
    }
    /* a bucket of a tenth of a second: 10 requests at once, the rest refused */
    assert_true(accepted >= 10 && accepted <= 11);
    assert_int_equal(accepted + busy, 50);
    int done = 0;
    uint64_t end = ap_time_mono_ns() + 3000000000ull;
    while (ap_hc_inflight(hc) > 0 && ap_time_mono_ns() < end)
        ap_loop_run_once(&loop, 10);
    for (int i = 0; i < 50; i++)
        done += res[i].calls;
    assert_int_equal(done, accepted); /* refused ones get no callback */
    ap_hc_target_stats(5, &after);
    assert_int_equal(after.refused_qps - before.refused_qps, (uint64_t)busy);
    /* it refills: after 200 ms there is room again */
    usleep(200000);
    struct result one = {0};
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &one), AP_OK);
    run_until(&one.calls, 1, 3000);
    assert_int_equal(one.calls, 1);
}

static void test_breaker(void **state)
{
    (void)state;
    ap_hc_configure(3, 300);
    char bad[128], good[128];
    snprintf(bad, sizeof(bad), "http://127.0.0.1:%d/", closed_port());
    snprintf(good, sizeof(good), "%s/ok", url_base);
    struct result res;
    struct ap_hc_target_stats st;
    for (int i = 0; i < 3; i++) {
        post_wait(bad, 1000, 7, &res);
        assert_int_equal(res.r.err, AP_EIO);
    }
    /* open: refused at once, even towards a good URL */
    assert_int_equal(post(good, 1000, 7, &res), AP_ECLOSED);
    ap_hc_target_stats(7, &st);
    assert_int_equal(st.breaker_state, 1);
    assert_true(st.refused_breaker >= 1);
    /* after the open period: one probe (half-open), others refused meanwhile; it fails */
    usleep(320000);
    memset(&res, 0, sizeof(res));
    assert_int_equal(post(bad, 1000, 7, &res), AP_OK);
    ap_hc_target_stats(7, &st);
    assert_int_equal(st.breaker_state, 2);
    struct result other = {0};
    assert_int_equal(post(good, 1000, 7, &other), AP_ECLOSED);
    run_until(&res.calls, 1, 2000);
    assert_int_equal(res.r.err, AP_EIO);
    assert_int_equal(post(good, 1000, 7, &other), AP_ECLOSED); /* open again */
    ap_hc_target_stats(7, &st);
    assert_int_equal(st.breaker_state, 1);
    /* the next probe succeeds: closed */
    usleep(320000);
    post_wait(good, 1000, 7, &res);
    assert_int_equal(res.r.err, AP_OK);
    ap_hc_target_stats(7, &st);
    assert_int_equal(st.breaker_state, 0);
    post_wait(good, 1000, 7, &res);
    assert_int_equal(res.r.status, 200);
    /* 5xx answers count as failures too */
    snprintf(bad, sizeof(bad), "%s/x?mode=error", url_base);
    for (int i = 0; i < 3; i++)
        post_wait(bad, 1000, 7, &res);
    assert_int_equal(post(good, 1000, 7, &res), AP_ECLOSED);
    ap_hc_configure(AP_HC_DEFAULT_BREAKER_FAILURES, AP_HC_DEFAULT_BREAKER_OPEN_MS);
}

static void test_retries_backoff(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/reset", raw_base);
    long raw0 = bidder_stat("raw_connections");
    struct ap_hc_req rq = {.method = "GET", .url = url, .timeout_ms = 1000, .retries = 2};
    struct result res = {0};
    uint64_t t0 = ap_time_mono_ns();
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_OK);
    run_until(&res.calls, 1, 5000);
    uint64_t ms = (ap_time_mono_ns() - t0) / 1000000;
    assert_int_equal(res.calls, 1); /* once, after the last attempt */
    assert_int_equal(res.r.err, AP_EIO);
    assert_int_equal(bidder_stat("raw_connections") - raw0, 3); /* 1 + 2 retries */
    assert_true(ms >= 600);                                     /* backoff 200 ms, then 400 ms */
    /* a notice that succeeds is sent once */
    bidder_reset();
    snprintf(url, sizeof(url), "%s/_n/win?price=1.23", url_base);
    rq.url = url;
    memset(&res, 0, sizeof(res));
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &res), AP_OK);
    run_until(&res.calls, 1, 3000);
    assert_int_equal(res.r.status, 200);
    char *n = bidder_get("/_notices");
    assert_non_null(n);
    assert_non_null(strstr(n, "\"query\":\"price=1.23\""));
    assert_null(strstr(strstr(n, "price=1.23") + 1, "price=1.23"));
    free(n);
}

static void test_fire_and_forget(void **state)
{
    (void)state;
    bidder_reset();
    char url[128];
    snprintf(url, sizeof(url), "%s/_n/bill?auction=a-1", url_base);
    struct ap_hc_req rq = {.method = "GET", .url = url, .timeout_ms = 1000};
    assert_int_equal(ap_hc_send(hc, &rq, NULL, NULL), AP_OK);
    uint64_t end = ap_time_mono_ns() + 3000000000ull;
    while (ap_hc_inflight(hc) > 0 && ap_time_mono_ns() < end)
        ap_loop_run_once(&loop, 10);
    assert_int_equal(ap_hc_inflight(hc), 0);
    char *n = bidder_get("/_notices");
    assert_non_null(n);
    assert_non_null(strstr(n, "\"path\":\"/_n/bill\",\"query\":\"auction=a-1\""));
    free(n);
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/ka", url_base);
    long c0 = bidder_stat("connections");
    for (int i = 0; i < 50; i++) {
        struct result res;
        post_wait(url, 2000, 0, &res);
        assert_int_equal(res.r.status, 200);
    }
    /* one connection for the 50 requests, +1 for our own /_stats read */
    assert_int_equal(bidder_stat("connections") - c0, 1 + 1);
}

#define N_CONCURRENT 1500

static void test_many_concurrent(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/many?delay=200", url_base);
    static struct result res[N_CONCURRENT];
    memset(res, 0, sizeof(res));
    long c0 = bidder_stat("connections");
    for (int i = 0; i < N_CONCURRENT; i++)
        assert_int_equal(post(url, 10000, 0, &res[i]), AP_OK);
    assert_int_equal(ap_hc_inflight(hc), N_CONCURRENT);
    int peak_conns = 0;
    uint64_t t0 = ap_time_mono_ns(), end = t0 + 20000000000ull;
    while (ap_hc_inflight(hc) > 0 && ap_time_mono_ns() < end)
        ap_loop_run_once(&loop, 10);
    uint64_t ms = (ap_time_mono_ns() - t0) / 1000000;
    int ok = 0;
    for (int i = 0; i < N_CONCURRENT; i++) {
        if (res[i].calls == 1 && res[i].r.err == AP_OK && res[i].r.status == 200)
            ok++;
    }
    assert_int_equal(ok, N_CONCURRENT);
    /* the host cap: at most AP_HC_DEFAULT_MAX_HOST_CONNECTIONS connections, the rest queued;
     * each answer takes 200 ms, so two rounds, not N sequential ones */
    peak_conns = (int)(bidder_stat("connections") - c0 - 1);
    assert_true(peak_conns <= AP_HC_DEFAULT_MAX_HOST_CONNECTIONS);
    assert_true(peak_conns >= N_CONCURRENT / 2);
    assert_true(ms < 5000);
    /* the pool keeps them: a second wave opens no new connection */
    long c1 = bidder_stat("connections");
    snprintf(url, sizeof(url), "%s/many2", url_base);
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 500; i++)
        assert_int_equal(post(url, 10000, 0, &res[i]), AP_OK);
    end = ap_time_mono_ns() + 20000000000ull;
    while (ap_hc_inflight(hc) > 0 && ap_time_mono_ns() < end)
        ap_loop_run_once(&loop, 10);
    for (int i = 0; i < 500; i++)
        assert_int_equal(res[i].r.status, 200);
    assert_int_equal(bidder_stat("connections") - c1, 1); /* only our /_stats read */
}

static void test_shutdown_cancels(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "%s/x?mode=hang", url_base);
    static struct result res[10];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 10; i++)
        assert_int_equal(post(url, 5000, 0, &res[i]), AP_OK);
    /* also one waiting for a retry */
    char rst[128];
    snprintf(rst, sizeof(rst), "%s/reset", raw_base);
    struct ap_hc_req rq = {.method = "GET", .url = rst, .timeout_ms = 1000, .retries = 5};
    struct result r2 = {0};
    assert_int_equal(ap_hc_send(hc, &rq, on_done, &r2), AP_OK);
    for (int i = 0; i < 20; i++)
        ap_loop_run_once(&loop, 10);
    assert_int_equal(ap_hc_inflight(hc), 11);
    ap_hc_worker_shutdown();
    for (int i = 0; i < 5; i++)
        ap_loop_run_once(&loop, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(res[i].calls, 0);
    assert_int_equal(r2.calls, 0);
    /* a new client on the same thread works */
    hc = ap_hc_worker(&loop);
    assert_non_null(hc);
    check_bid_success();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_uring, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_nobid_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_within_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_garbage_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_not_json_passes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extra_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qps_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fire_and_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_cancels, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
