/*
 * libFuzzer target for the HTTP/1.1 request parser (src/net/ap_http_parse.c).
 *
 * The input is a byte stream arriving on one connection. It is parsed as a pipeline of
 * requests (each complete request's req->consumed bytes are dropped, the next one starts
 * there) three ways, and all three must give the same sequence of results:
 *   - whole: all bytes present at once;
 *   - split: the first request's bytes arrive in two reads, at a point derived from the input,
 *     with the buffer moved to a new allocation in between;
 *   - dribbled: for short inputs, one byte per read, moved before every byte.
 * Each way runs with the default limits and with small ones (to reach 413, 414, 431).
 * Every buffer is allocated with the exact length given to the parser, so ASan catches a
 * one-byte over-read. Any disagreement or broken invariant aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ap_error.h"
#include "net/ap_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RESULTS 64        /* requests compared per input */
#define DRIBBLE_MAX_SIZE 1024 /* byte-per-read run only below this size */

/* What one request produced, with offsets relative to the request's start. */
struct result {
    int rc;
    int status;
    size_t consumed;
    enum ap_http_method method;
    size_t target_off, target_len;
    unsigned nheaders, ntrailers;
    uint64_t body_hash;
    size_t body_off, body_len;
    bool keep_alive, chunked, expect;
    int64_t content_length;
};

struct run {
    struct result r[MAX_RESULTS];
    unsigned n;
};

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http: invariant broken: %s\n", what);
        abort();
    }
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static bool span_within(struct ap_span s, const char *base, size_t len)
{
    return s.p == NULL
               ? s.len == 0
               : s.p >= base && (size_t)(s.p - base) <= len && s.len <= len - (size_t)(s.p - base);
}

/* Checks a finished request against the buffer it was parsed from and records it. */
static void record(struct result *res, int rc, const struct ap_http_parser *p,
                   const struct ap_http_req *req, const char *base, size_t len)
{
    memset(res, 0, sizeof(*res));
    res->rc = rc;
    if (rc == AP_EHTTP) {
        res->status = p->status;
        check(p->error != NULL, "error text set");
        check(p->status == 400 || p->status == 413 || p->status == 414 || p->status == 431 ||
                  p->status == 501 || p->status == 505,
              "known status");
        return;
    }
    if (rc != AP_OK)
        return;
    check(req->consumed > 0 && req->consumed <= len, "consumed within the input");
    check(span_within(req->method_name, base, len), "method span");
    check(span_within(req->target, base, len), "target span");
    check(span_within(req->path, base, len), "path span");
    check(span_within(req->query, base, len), "query span");
    check(span_within(req->host, base, len), "host span");
    check(span_within(req->content_type, base, len), "content-type span");
    check(span_within(req->body, base, req->consumed), "body span");
    check(req->nheaders + req->ntrailers <= p->limits.max_header_count, "header count");
    for (unsigned i = 0; i < req->nheaders + req->ntrailers; i++) {
        check(span_within(req->headers[i].name, base, len), "header name span");
        check(span_within(req->headers[i].value, base, len), "header value span");
        check(req->headers[i].name.len > 0, "header name not empty");
    }
    check(req->target.len > 0 && req->target.len <= p->limits.max_uri, "target length");
    check(req->body.len <= p->limits.max_body, "body length");
    check(req->minor_version == 0 || req->minor_version == 1, "version");
    check(!(req->chunked && req->content_length >= 0), "chunked with Content-Length");
    check(req->chunked ||
              req->body.len == (size_t)(req->content_length > 0 ? req->content_length : 0),
          "body length is Content-Length");
    res->consumed = req->consumed;
    res->method = req->method;
    res->target_off = (size_t)(req->target.p - base);
    res->target_len = req->target.len;
    res->nheaders = req->nheaders;
    res->ntrailers = req->ntrailers;
    res->body_off = (size_t)(req->body.p - base);
    res->body_len = req->body.len;
    res->body_hash = fnv1a(req->body.p, req->body.len);
    res->keep_alive = req->keep_alive;
    res->chunked = req->chunked;
    res->expect = req->expect_continue;
    res->content_length = req->content_length;
}

/* Calls the parser, and again after AP_HTTP_HEAD_DONE (which comes at most once). */
static int parse(struct ap_http_parser *p, char *buf, size_t len, struct ap_http_req *req,
                 int *head_done)
{
    int rc = ap_http_parse(p, buf, len, req);
    if (rc == AP_HTTP_HEAD_DONE) {
        check(++*head_done == 1, "HEAD_DONE once per request");
        check(req->body.len == 0 && req->consumed == 0, "HEAD_DONE has no body");
        rc = ap_http_parse(p, buf, len, req);
        check(rc == AP_EAGAIN, "AGAIN after HEAD_DONE");
    }
    check(rc == AP_OK || rc == AP_EAGAIN || rc == AP_EHTTP, "known return code");
    return rc;
}

static char *copy_of(const char *src, size_t n)
{
    char *b = malloc(n ? n : 1);
    if (!b)
        abort();
    if (n)
        memcpy(b, src, n);
    return b;
}

/*
 * Parses the pipeline data[0..size). mode 0: whole; 1: first request split at `split`;
 * 2: one byte per read for every request. The stream is kept in one growing buffer (as a
 * server would), re-allocated to exactly the bytes received at each read.
 */
static void run_pipeline(const uint8_t *data, size_t size, const struct ap_http_limits *lim,
                         int mode, size_t split, struct run *out)
{
    static struct ap_http_req req;
    struct ap_http_parser p;
    const char *in = (const char *)data;
    size_t off = 0; /* start of the current request in the stream */
    char *buf = NULL;

    out->n = 0;
    while (off < size && out->n < MAX_RESULTS) {
        size_t left = size - off;
        int head_done = 0;
        int rc = AP_EAGAIN;
        ap_http_parser_init(&p, lim);

        if (mode == 0 || (mode == 1 && out->n > 0)) {
            buf = copy_of(in + off, left);
            rc = parse(&p, buf, left, &req, &head_done);
        } else if (mode == 1) {
            size_t s = split % (left + 1);
            buf = copy_of(in + off, s);
            rc = parse(&p, buf, s, &req, &head_done);
            if (rc == AP_EAGAIN) {
                char *nb = copy_of(in + off, left);
                memcpy(nb, buf, s); /* keep what the parser rewrote */
                free(buf);
                buf = nb;
                rc = parse(&p, buf, left, &req, &head_done);
            }
        } else {
            for (size_t k = 1; k <= left && rc == AP_EAGAIN; k++) {
                char *nb = copy_of(in + off, k);
                if (buf)
                    memcpy(nb, buf, k - 1);
                free(buf);
                buf = nb;
                rc = parse(&p, buf, k, &req, &head_done);
            }
        }
        struct result *res = &out->r[out->n++];
        record(res, rc, &p, &req, buf, left);
        if (rc == AP_OK && mode == 0)
            check(head_done == 0, "no HEAD_DONE for a complete request");
        if (rc == AP_OK && mode == 2)
            check(head_done == (req.chunked || req.content_length > 0),
                  "HEAD_DONE when a body is to come");
        free(buf);
        buf = NULL;
        if (rc != AP_OK)
            break;
        off += req.consumed;
    }
}

static void compare(const struct run *a, const struct run *b, const char *what)
{
    check(a->n == b->n, what);
    for (unsigned i = 0; i < a->n; i++)
        check(memcmp(&a->r[i], &b->r[i], sizeof(a->r[i])) == 0, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, other;
    struct ap_http_limits lims[2];
    ap_http_limits_default(&lims[0]);
    lims[1] = (struct ap_http_limits){
        .max_header_bytes = 300, .max_uri = 40, .max_body = 100, .max_header_count = 6};

    /* A split point derived from the input, varied by the mutator along with the rest. */
    size_t split = 0;
    for (size_t i = 0; i < size; i++)
        split = split * 31 + data[i];

    for (int l = 0; l < 2; l++) {
        run_pipeline(data, size, &lims[l], 0, 0, &whole);
        run_pipeline(data, size, &lims[l], 1, split, &other);
        compare(&whole, &other, "split parse differs from whole parse");
        if (size <= DRIBBLE_MAX_SIZE) {
            run_pipeline(data, size, &lims[l], 2, 0, &other);
            compare(&whole, &other, "byte-per-read parse differs from whole parse");
        }
    }
    return 0;
}
