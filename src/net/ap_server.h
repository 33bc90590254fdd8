/*
 * ap_server: an HTTP/1.1 server run by N worker threads, each with its own ap_loop, its own
 * SO_REUSEPORT listening socket and its own connections (share-nothing). The data plane and
 * the control plane are two ap_server instances with different routers. Connection I/O runs on
 * io_uring (one ring per worker) or, where io_uring is unavailable, on epoll: see ap_loop.h
 * and docs/adr/0002-io-uring-serving-core.md.
 *
 * Lifetimes: the server owns its workers, sockets and connections (process lifetime);
 * each request gets an arena (x->arena) reset when its response is complete; request spans
 * point into the connection's read buffer and are valid until the response is complete.
 *
 * Threads: ap_server_create/start/join/destroy on the main thread; ap_server_drain from any
 * thread (async-signal-safe it is not: call it from the main thread's signal handling loop);
 * handlers run on their worker's thread and must not block (the control plane, whose handlers
 * do block on the store, is a separate server with its own threads).
 */
#ifndef AP_SERVER_H
#define AP_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../core/ap_arena.h"
#include "../core/ap_buf.h"
#include "ap_http.h"
#include "ap_loop.h"
#include "ap_router.h"

/* Returned by a handler that will answer later (on the same worker thread) with
 * ap_http_respond(). Pipelined requests behind it wait. */
#define AP_HTTP_DEFERRED 2

#define AP_SERVER_MAX_THREADS 256
#define AP_SERVER_LINGER_MS 2000
#define AP_SERVER_MAX_OUTPUT_PENDING (256 * 1024) /* stop parsing pipelined input past this */
#define AP_SERVER_ARENA_CHUNK 8192
#define AP_SERVER_ARENA_MAX (64 * 1024 * 1024)

struct ap_server;
struct ap_worker;
struct ap_http_conn;

struct ap_server_config {
    const char *name; /* "data" or "admin": log and metrics label */
    const char *host;
    int port; /* 0 = pick a free one */
    int threads;
    bool pin_threads;
    int first_cpu; /* worker i is pinned to cpu (first_cpu + i) % ncpu */
    int max_connections;
    int backlog;
    struct ap_http_limits limits;
    int header_timeout_ms;
    int idle_timeout_ms;
    int drain_timeout_ms;
    size_t max_response; /* cap of one connection's output buffer */
    int access_log_sample;
    const struct ap_router *router;
    void *app;                       /* handed to handlers as x->app */
    enum ap_loop_backend io_backend; /* AP_LOOP_AUTO (0): io_uring, else epoll (ap_loop.h) */
};

/* Per-request state handed to a handler. */
struct ap_http_exchange {
    struct ap_http_req req;
    struct ap_route_match match;
    struct ap_arena *arena; /* request lifetime */
    void *app;
    void *route_data;
    struct ap_server *server;
    struct ap_worker *worker;
    int worker_id;
    struct ap_loop *loop;
    uint64_t start_ns;
    int status; /* set by ap_http_respond */
    bool responded;
    bool deferred;
    bool close; /* set to close the connection after this response */
    struct ap_http_conn *conn; /* private */
};

/* Per-worker metrics: each field written only by its worker (relaxed atomics, plain moves on
 * x86), summed over workers by the /metrics scrape. */
#define AP_METRICS_LATENCY_BUCKETS 16
#define AP_METRICS_STATUS_SLOTS 32

struct ap_http_metrics {
    _Atomic uint64_t requests[AP_ROUTER_MAX_ROUTES + 1][AP_METRICS_STATUS_SLOTS];
    _Atomic uint64_t latency_buckets[AP_METRICS_LATENCY_BUCKETS];
    _Atomic uint64_t latency_count;
    _Atomic uint64_t latency_sum_us;
    _Atomic uint64_t open_connections;
    _Atomic uint64_t accepted;
    _Atomic uint64_t refused;
    _Atomic uint64_t timeouts;
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
};

extern const uint64_t ap_metrics_latency_bounds_us[AP_METRICS_LATENCY_BUCKETS - 1];
extern const int ap_metrics_status_codes[AP_METRICS_STATUS_SLOTS]; /* slot -> code, 0 = other */

#define AP_COUNTER_ADD(c, n)                                                                       \
    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)

/* Binds the listening sockets (so the port is known) but starts no thread. NULL on failure,
 * with *err set to an AP_E* code. */
struct ap_server *ap_server_create(const struct ap_server_config *cfg, int *err);

/* The bound port. */
int ap_server_port(const struct ap_server *s);

/* Starts the worker threads. 0 or an AP_E* code. */
int ap_server_start(struct ap_server *s);

/* Marks the server ready (readiness probe) or not. Any thread. */
void ap_server_set_ready(struct ap_server *s, bool ready);
bool ap_server_is_ready(const struct ap_server *s);
bool ap_server_is_draining(const struct ap_server *s);

/* Begins a graceful stop: stop accepting, answer in-flight requests (with Connection: close),
 * close idle connections, and end each worker when it has no connection left or the drain
 * deadline passed. Main thread. */
void ap_server_drain(struct ap_server *s);

/* Waits for every worker to end. */
void ap_server_join(struct ap_server *s);
void ap_server_destroy(struct ap_server *s);

/* Updates the run-time limits/timeouts (SIGHUP reload); workers pick them up on their next
 * request. Main thread. */
void ap_server_reconfigure(struct ap_server *s, const struct ap_http_limits *limits,
                           int header_timeout_ms, int idle_timeout_ms, int access_log_sample);

/* Metrics of worker i (0 <= i < ap_server_threads(s)). */
int ap_server_threads(const struct ap_server *s);
const struct ap_http_metrics *ap_server_metrics(const struct ap_server *s, int i);
const struct ap_router *ap_server_router(const struct ap_server *s);
const char *ap_server_name(const struct ap_server *s);

/* ---- responses (worker thread of the exchange) ---- */

/* Adds a response header for the coming ap_http_respond(). 0, AP_ELIMIT. */
int ap_http_add_header(struct ap_http_exchange *x, const char *name, struct ap_span value);

/* Writes the whole response (status line, headers, body) to the connection's output. The body
 * is copied; HEAD requests get the headers only. For a deferred exchange this also resumes
 * the connection. 0, or AP_ELIMIT/AP_ENOMEM (the connection is then closed). */
int ap_http_respond(struct ap_http_exchange *x, int status, const char *content_type,
                    const void *body, size_t len);

/* Answers {"error":{"code":code,"message":message}} as application/json. */
int ap_http_respond_error(struct ap_http_exchange *x, int status, const char *code,
                          const char *message);

/* Writes the client's address in numeric form ("127.0.0.1", "::1") into out[cap]. 0, or an
 * AP_E* code (out then holds ""). Asked of the kernel once per connection, then cached. The
 * exchange's worker thread, while the request is open. */
int ap_http_peer_addr(struct ap_http_exchange *x, char *out, size_t cap);

/* A handler that will answer later calls this and returns AP_HTTP_DEFERRED. */
static inline int ap_http_defer(struct ap_http_exchange *x)
{
    x->deferred = true;
    return AP_HTTP_DEFERRED;
}

#endif
