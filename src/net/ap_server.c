/*
 * The HTTP/1.1 server: connections, pipelining, deferred responses, timeouts, draining.
 *
 * Connection I/O has two backends, chosen per worker by its ap_loop
 * (docs/adr/0002-io-uring-serving-core.md):
 *   - uring: a multishot accept per listener and a multishot recv per connection deliver
 *     completions; received bytes are copied from the loop's provided buffers into the
 *     connection's read buffer `in`; responses accumulate in `out`, which is swapped with
 *     `sending` and handed to one send operation at a time; close (after a cancel of what is
 *     in flight) is queued as an SQE too. Everything a loop iteration queues goes to the kernel
 *     with its single io_uring_enter. An operation in flight owns the connection struct (and
 *     `sending`): the struct is released only when no operation is in flight and no handler
 *     holds it. Lingering close uses shutdown(2) directly (see conn_linger).
 *   - epoll: readiness, edge-triggered; read()/send() on the spot (the fallback).
 * Both share the request machinery (process_input, dispatch, ap_http_respond, finish_exchange)
 * and the timeout lists.
 */
#include "ap_server.h"
#include "ap_http_client.h"

#include <errno.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"

const uint64_t ap_metrics_latency_bounds_us[AP_METRICS_LATENCY_BUCKETS - 1] = {
    50,    100,   250,    500,    1000,   2500,    5000,   10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

const int ap_metrics_status_codes[AP_METRICS_STATUS_SLOTS] = {
    0,   100, 200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409,
    412, 413, 414, 415, 417, 422, 429, 431, 500, 501, 502, 503, 504, 505, 0,   0};

static int status_slot(int status)
{
    for (int i = 1; i < AP_METRICS_STATUS_SLOTS; i++)
        if (ap_metrics_status_codes[i] == status)
            return i;
    return 0;
}

/* CONN_CLOSED: the socket is closed (or its close is queued); the struct waits for its
 * operations in flight and for a handler that still holds the exchange. */
enum conn_state { CONN_FREE = 0, CONN_OPEN, CONN_LINGER, CONN_CLOSED };
enum conn_list { LIST_NONE = 0, LIST_READING, LIST_IDLE, LIST_LINGER, LIST_COUNT };

struct ap_http_conn {
    struct ap_loop_io io;
    struct ap_worker *w;
    enum conn_state state;
    enum conn_list list;
    struct ap_http_conn *prev, *next; /* in the list named by ->list, or the free list */
    uint64_t since_ns;                /* when the current list's clock started */
    struct ap_buf in;
    size_t req_start; /* offset in `in` of the request being parsed */
    bool req_started; /* some bytes of a request are in */
    struct ap_buf out;
    size_t out_off;
    struct ap_buf hdrs; /* extra response headers of the current exchange */
    struct ap_http_parser parser;
    struct ap_arena arena;
    struct ap_http_exchange x;
    bool close_after; /* close once the output is written */
    bool peer_eof;    /* read returned 0 */
    bool peer_hup;    /* epoll: the peer's FIN was reported; read on to the end of stream */
    bool in_deferred; /* a handler answers later */
    bool in_progress; /* inside process_input (re-entrancy guard) */
    bool input_held;  /* process_input stopped for back-pressure with input left */
    struct ap_http_conn *all_prev, *all_next; /* the worker's open connections */
    /* uring backend */
    struct ap_loop_op recv_op, send_op;
    struct ap_buf sending; /* owned by the send in flight; [send_off, len) not yet sent */
    size_t send_off;
    struct ap_buf stash;  /* input received while a deferred request pins `in` */
    bool recv_armed;      /* a multishot recv is in flight (until its last completion) */
    bool recv_cancelling; /* ... and its cancellation is queued */
    bool send_armed;      /* a send of `sending` is in flight */
    char peer[64];        /* the peer's numeric address, "" until first asked (one syscall per
                             connection, not per request) */
};

struct conn_list_head {
    struct ap_http_conn *head, *tail;
};

struct ap_worker {
    struct ap_server *s;
    int id;
    pthread_t thread;
    struct ap_loop loop;
    int lfd;
    struct ap_loop_io listen_io;
    struct ap_loop_op accept_op; /* uring: multishot accept on lfd */
    bool accept_armed;
    bool listening;
    bool uring; /* the loop runs the io_uring backend */
    struct ap_loop_timer sweep;
    struct ap_loop_timer accept_retry;
    struct conn_list_head lists[LIST_COUNT];
    struct ap_http_conn *free_conns;
    struct ap_http_conn *all; /* open connections (not yet closed) */
    int nconns;               /* connection structs in use, closed ones included */
    int max_conns;
    bool draining;
    uint64_t drain_deadline_ns;
    uint64_t listen_close_ns; /* draining: when the listener stops taking handshakes in flight */
    time_t date_sec;
    char date[30];
    uint64_t access_counter;
    struct ap_http_metrics metrics;
};

struct ap_server {
    struct ap_server_config cfg;
    char name[32];
    char host[256];
    int port;
    int nworkers;
    struct ap_worker *workers;
    atomic_bool ready;
    atomic_bool draining;
    /* reloadable settings */
    _Atomic size_t max_header_bytes, max_uri, max_body;
    _Atomic unsigned max_header_count;
    _Atomic int header_timeout_ms, idle_timeout_ms, access_log_sample;
};

/* Draining: how long the listener still takes the handshakes under way (refuse_new_handshakes). */
#define LISTEN_GRACE_MS 100

/* Input received while a deferred request pins `in` is stashed; past this, reading stops. */
#define STASH_SOFT_LIMIT (64 * 1024)

static void conn_on_io(struct ap_loop *loop, struct ap_loop_io *io, int events);
static void conn_close(struct ap_http_conn *c);
static void process_input(struct ap_http_conn *c);
static void flush_output(struct ap_http_conn *c);
static void conn_read(struct ap_http_conn *c);
static void conn_kick(struct ap_http_conn *c);
static void conn_linger(struct ap_http_conn *c);
static void on_recv(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags);
static void on_send(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags);

/* Response bytes not yet handed to the kernel. */
static size_t out_pending(const struct ap_http_conn *c)
{
    return (c->out.len - c->out_off) + (c->sending.len - c->send_off);
}

/* ---------------------------------------------------------------- lists */

static void list_remove(struct ap_worker *w, struct ap_http_conn *c)
{
    if (c->list == LIST_NONE)
        return;
    struct conn_list_head *l = &w->lists[c->list];
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = LIST_NONE;
}

static void list_push(struct ap_worker *w, struct ap_http_conn *c, enum conn_list which)
{
    list_remove(w, c);
    struct conn_list_head *l = &w->lists[which];
    c->list = which;
    c->since_ns = w->loop.now_ns;
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void all_add(struct ap_worker *w, struct ap_http_conn *c)
{
    c->all_prev = NULL;
    c->all_next = w->all;
    if (w->all)
        w->all->all_prev = c;
    w->all = c;
}

static void all_remove(struct ap_worker *w, struct ap_http_conn *c)
{
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        w->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->all_prev = c->all_next = NULL;
}

/* ---------------------------------------------------------------- setup */

static int make_listener(const char *host, int port, int backlog, int *out_fd)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(*host ? host : NULL, portstr, &hints, &res) != 0 || !res)
        return AP_EADDR;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int rc = ap_error_from_errno(errno);
        freeaddrinfo(res);
        return rc;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    /* accepted sockets inherit it: no setsockopt per connection */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        int rc = errno == EADDRINUSE || errno == EADDRNOTAVAIL ? AP_EADDR : AP_ESYS;
        freeaddrinfo(res);
        close(fd);
        return rc;
    }
    freeaddrinfo(res);
    *out_fd = fd;
    return AP_OK;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct ap_server *ap_server_create(const struct ap_server_config *cfg, int *err)
{
    struct ap_server *s = calloc(1, sizeof(*s));
    int rc = AP_ENOMEM;
    if (!s)
        goto fail;
    s->cfg = *cfg;
    snprintf(s->name, sizeof(s->name), "%s", cfg->name ? cfg->name : "http");
    snprintf(s->host, sizeof(s->host), "%s", cfg->host ? cfg->host : "127.0.0.1");
    s->cfg.name = s->name;
    s->cfg.host = s->host;
    s->nworkers = cfg->threads < 1 ? 1 : cfg->threads;
    if (s->nworkers > AP_SERVER_MAX_THREADS)
        s->nworkers = AP_SERVER_MAX_THREADS;
    atomic_init(&s->ready, false);
    atomic_init(&s->draining, false);
    ap_server_reconfigure(s, &cfg->limits, cfg->header_timeout_ms, cfg->idle_timeout_ms,
                          cfg->access_log_sample);
    s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
    if (!s->workers)
        goto fail;
    for (int i = 0; i < s->nworkers; i++)
        s->workers[i].lfd = -1;
    int port = cfg->port;
    for (int i = 0; i < s->nworkers; i++) {
        struct ap_worker *w = &s->workers[i];
        w->s = s;
        w->id = i;
        rc = make_listener(s->host, port, cfg->backlog > 0 ? cfg->backlog : 1024, &w->lfd);
        if (rc)
            goto fail;
        if (i == 0) {
            port = bound_port(w->lfd);
            if (port <= 0) {
                rc = AP_ESYS;
                goto fail;
            }
        }
        w->max_conns = (cfg->max_connections + s->nworkers - 1) / s->nworkers;
        if (w->max_conns < 1)
            w->max_conns = 1;
    }
    s->port = port;
    return s;
fail:
    if (err)
        *err = rc;
    ap_server_destroy(s);
    return NULL;
}

int ap_server_port(const struct ap_server *s)
{
    return s->port;
}

int ap_server_threads(const struct ap_server *s)
{
    return s->nworkers;
}

const struct ap_http_metrics *ap_server_metrics(const struct ap_server *s, int i)
{
    return &s->workers[i].metrics;
}

const struct ap_router *ap_server_router(const struct ap_server *s)
{
    return s->cfg.router;
}

const char *ap_server_name(const struct ap_server *s)
{
    return s->name;
}

void ap_server_set_ready(struct ap_server *s, bool ready)
{
    atomic_store(&s->ready, ready);
}

bool ap_server_is_ready(const struct ap_server *s)
{
    return atomic_load(&s->ready) && !atomic_load(&s->draining);
}

bool ap_server_is_draining(const struct ap_server *s)
{
    return atomic_load(&s->draining);
}

void ap_server_reconfigure(struct ap_server *s, const struct ap_http_limits *limits,
                           int header_timeout_ms, int idle_timeout_ms, int access_log_sample)
{
    atomic_store(&s->max_header_bytes, limits->max_header_bytes);
    atomic_store(&s->max_uri, limits->max_uri);
    atomic_store(&s->max_body, limits->max_body);
    unsigned hc = limits->max_header_count;
    atomic_store(&s->max_header_count, hc > AP_HTTP_MAX_HEADERS ? AP_HTTP_MAX_HEADERS : hc);
    atomic_store(&s->header_timeout_ms, header_timeout_ms);
    atomic_store(&s->idle_timeout_ms, idle_timeout_ms);
    atomic_store(&s->access_log_sample, access_log_sample);
}

static void current_limits(const struct ap_server *s, struct ap_http_limits *l)
{
    l->max_header_bytes = atomic_load_explicit(&s->max_header_bytes, memory_order_relaxed);
    l->max_uri = atomic_load_explicit(&s->max_uri, memory_order_relaxed);
    l->max_body = atomic_load_explicit(&s->max_body, memory_order_relaxed);
    l->max_header_count = atomic_load_explicit(&s->max_header_count, memory_order_relaxed);
}

/* ---------------------------------------------------------------- connections */

static size_t input_cap(const struct ap_http_limits *l)
{
    /* head + body, plus room for chunked framing and a pipelined request behind it */
    return l->max_header_bytes + 2 * l->max_body + 65536;
}

static struct ap_http_conn *conn_get(struct ap_worker *w)
{
    struct ap_http_conn *c = w->free_conns;
    if (c) {
        w->free_conns = c->next;
        c->next = NULL;
    } else {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        ap_buf_init(&c->in, 0);
        ap_buf_init(&c->out, 0);
        ap_buf_init(&c->sending, 0);
        ap_buf_init(&c->stash, 0);
        ap_buf_init(&c->hdrs, 8192);
        ap_arena_init(&c->arena, AP_SERVER_ARENA_CHUNK, AP_SERVER_ARENA_MAX);
        c->recv_op.cb = on_recv;
        c->recv_op.data = c;
        c->send_op.cb = on_send;
        c->send_op.data = c;
    }
    c->w = w;
    return c;
}

static void conn_put(struct ap_worker *w, struct ap_http_conn *c)
{
    c->state = CONN_FREE;
    c->io.fd = -1;
    ap_arena_reset(&c->arena);
    /* Keep modest buffers for reuse; give big ones back. */
    if (c->in.size > 65536)
        ap_buf_free(&c->in);
    if (c->out.size > 65536)
        ap_buf_free(&c->out);
    if (c->sending.size > 65536)
        ap_buf_free(&c->sending);
    ap_buf_free(&c->stash);
    c->in.len = c->out.len = c->sending.len = c->hdrs.len = 0;
    c->next = w->free_conns;
    w->free_conns = c;
}

static void start_request(struct ap_http_conn *c)
{
    struct ap_http_limits lim;
    current_limits(c->w->s, &lim);
    ap_http_parser_init(&c->parser, &lim);
    c->in.cap = input_cap(&lim);
    c->stash.cap = c->in.cap;
    c->req_started = false;
}

static void uring_sync_recv(struct ap_http_conn *c);

static void conn_open(struct ap_worker *w, int fd)
{
    struct ap_server *s = w->s;
    struct ap_http_conn *c = conn_get(w);
    if (!c) {
        close(fd);
        return;
    }
    c->io.fd = fd;
    c->io.cb = conn_on_io;
    c->io.data = c;
    c->state = CONN_OPEN;
    c->list = LIST_NONE;
    c->prev = c->next = NULL;
    c->req_start = 0;
    c->out_off = c->send_off = 0;
    c->close_after = c->peer_eof = c->peer_hup = false;
    c->peer[0] = '\0';
    c->in_deferred = c->in_progress = c->input_held = false;
    c->recv_armed = c->recv_cancelling = c->send_armed = false;
    c->out.cap = s->cfg.max_response ? s->cfg.max_response : 16 * 1024 * 1024;
    c->sending.cap = c->out.cap;
    start_request(c);
    if (ap_buf_reserve(&c->in, 4096) != AP_OK) {
        close(fd);
        conn_put(w, c);
        return;
    }
    /* TCP_NODELAY comes from the listening socket. */
    if (!w->uring && ap_loop_add(&w->loop, &c->io, AP_LOOP_READ | AP_LOOP_WRITE) != AP_OK) {
        close(fd);
        conn_put(w, c);
        return;
    }
    w->nconns++;
    all_add(w, c);
    AP_COUNTER_ADD(w->metrics.open_connections, 1);
    AP_COUNTER_ADD(w->metrics.accepted, 1);
    /* A new connection must send its request within the header timeout. */
    list_push(w, c, LIST_READING);
    if (w->uring)
        uring_sync_recv(c); /* arms the multishot recv */
    else
        conn_on_io(&w->loop, &c->io, AP_LOOP_READ); /* data may be there (edge-triggered) */
}

static void conn_release(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    w->nconns--;
    AP_COUNTER_ADD(w->metrics.open_connections, (uint64_t)-1);
    conn_put(w, c);
}

/* A closed connection's struct goes back once no operation is in flight (their completions
 * point at it) and no handler holds the exchange. */
static void conn_maybe_release(struct ap_http_conn *c)
{
    if (c->state == CONN_CLOSED && !c->recv_armed && !c->send_armed && !c->in_deferred)
        conn_release(c);
}

/* Closes the socket now (uring: cancels the operations in flight and queues the close). If a
 * handler still owns the exchange, or operations are in flight, the struct lives on until they
 * are done. */
static void conn_close(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    if (c->state != CONN_OPEN && c->state != CONN_LINGER)
        return;
    int fd = c->io.fd;
    list_remove(w, c);
    all_remove(w, c);
    c->state = CONN_CLOSED;
    c->io.fd = -1;
    if (w->uring) {
        /* A socket lives while operations hold it: cancel them before the close. */
        if (c->recv_armed || c->send_armed)
            ap_loop_cancel_fd(&w->loop, fd);
        ap_loop_close(&w->loop, fd);
    } else {
        ap_loop_del(&w->loop, &c->io);
        close(fd);
    }
    conn_maybe_release(c);
}

/* Graceful close: stop sending, read and discard until the peer closes or a deadline, so
 * unread input does not turn our close into a reset. Called with no output pending. */
static void conn_linger(struct ap_http_conn *c)
{
    if (c->peer_eof) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    list_push(c->w, c, LIST_LINGER);
    /* A system call, also on uring: IORING_OP_SHUTDOWN always runs in an io-wq thread, later
     * than the close that may follow it, and could then meet the fd number reused. */
    shutdown(c->io.fd, SHUT_WR);
    if (c->w->uring)
        uring_sync_recv(c); /* the recv drains (and discards) until end of stream */
    else
        conn_on_io(&c->w->loop, &c->io, AP_LOOP_READ);
}

static void linger_read(struct ap_http_conn *c)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(c->io.fd, buf, sizeof(buf));
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
}

/* ---------------------------------------------------------------- responses */

static void refresh_date(struct ap_worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        w->date_sec = now;
        ap_http_date(now, w->date);
    }
}

int ap_http_add_header(struct ap_http_exchange *x, const char *name, struct ap_span value)
{
    struct ap_buf *h = &x->conn->hdrs;
    size_t nl = strlen(name);
    int rc = ap_buf_reserve(h, nl + value.len + 4);
    if (rc)
        return rc;
    /* No CR/LF may reach the wire through a header value. */
    for (size_t i = 0; i < value.len; i++)
        if (value.p[i] == '\r' || value.p[i] == '\n')
            return AP_EINVAL;
    ap_buf_append(h, name, nl);
    ap_buf_append(h, ": ", 2);
    ap_buf_append_span(h, value);
    ap_buf_append(h, "\r\n", 2);
    return AP_OK;
}

static size_t put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static void finish_exchange(struct ap_http_conn *c);

int ap_http_respond(struct ap_http_exchange *x, int status, const char *content_type,
                    const void *body, size_t len)
{
    struct ap_http_conn *c = x->conn;
    struct ap_worker *w = c->w;
    if (x->responded)
        return AP_EINVAL;
    x->responded = true;
    x->status = status;
    if (c->state == CONN_CLOSED) {
        /* the client went away while we were working */
        c->in_deferred = false;
        ap_arena_reset(&c->arena);
        c->hdrs.len = 0;
        conn_maybe_release(c);
        return AP_ECLOSED;
    }
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    bool head = x->req.method == AP_HTTP_HEAD;
    bool closing = x->close || c->close_after || !x->req.keep_alive || w->draining;
    const char *reason = ap_http_reason(status);
    size_t ctl = content_type ? strlen(content_type) : 0;
    size_t need = 160 + strlen(reason) + ctl + c->hdrs.len + (head || no_body ? 0 : len);
    int rc = ap_buf_reserve(&c->out, need);
    if (rc) {
        ap_log_warn("response of %zu bytes over the output cap: closing", len);
        c->close_after = true;
        c->hdrs.len = 0;
        if (x->deferred)
            finish_exchange(c);
        return rc;
    }
    refresh_date(w);
    char *p = c->out.data + c->out.len, *start = p;
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    p += PUT_LIT(p, "HTTP/1.1 ");
    p += put(p, code, 4);
    p += put(p, reason, strlen(reason));
    p += PUT_LIT(p, "\r\nServer: adplatform\r\nDate: ");
    p += put(p, w->date, 29);
    p += PUT_LIT(p, "\r\n");
    if (ctl) {
        p += PUT_LIT(p, "Content-Type: ");
        p += put(p, content_type, ctl);
        p += PUT_LIT(p, "\r\n");
    }
    if (!no_body) {
        char num[24];
        size_t nl = ap_u64_to_dec(len, num);
        p += PUT_LIT(p, "Content-Length: ");
        p += put(p, num, nl);
        p += PUT_LIT(p, "\r\n");
    }
    if (closing) {
        p += PUT_LIT(p, "Connection: close\r\n");
        c->close_after = true;
    } else if (x->req.minor_version == 0) {
        p += PUT_LIT(p, "Connection: keep-alive\r\n");
    }
    if (c->hdrs.len)
        p += put(p, c->hdrs.data, c->hdrs.len);
    p += PUT_LIT(p, "\r\n");
    if (!head && !no_body && len)
        p += put(p, body, len);
    c->out.len += (size_t)(p - start);
    c->hdrs.len = 0;
    if (x->deferred)
        finish_exchange(c);
    return AP_OK;
}

int ap_http_respond_error(struct ap_http_exchange *x, int status, const char *code,
                          const char *message)
{
    char body[1024], esc[600];
    ap_json_escape(esc, sizeof(esc), message, strlen(message));
    int n =
        snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, esc);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    return ap_http_respond(x, status, "application/json", body, (size_t)n);
}

int ap_http_peer_addr(struct ap_http_exchange *x, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (cap == 0)
        return AP_EINVAL;
    out[0] = '\0';
    struct ap_http_conn *c = x->conn;
    if (!c)
        return AP_EINVAL;
    if (!c->peer[0]) {
        if (getpeername(c->io.fd, (struct sockaddr *)&ss, &len) != 0)
            return ap_error_from_errno(errno);
        if (getnameinfo((struct sockaddr *)&ss, len, c->peer, sizeof(c->peer), NULL, 0,
                        NI_NUMERICHOST))
            return AP_EINVAL;
    }
    size_t n = strlen(c->peer);
    if (n >= cap)
        return AP_EINVAL;
    memcpy(out, c->peer, n + 1);
    return AP_OK;
}

/* For errors found before a request could be dispatched (malformed, timeout, refused). */
static void respond_raw_error(struct ap_http_conn *c, int status, const char *message)
{
    struct ap_http_exchange *x = &c->x;
    memset(&x->req, 0, sizeof(x->req));
    x->req.minor_version = 1;
    x->req.method = AP_HTTP_GET;
    x->responded = false;
    x->deferred = false;
    x->close = true;
    x->conn = c;
    c->close_after = true;
    const char *code = status == 408   ? "request_timeout"
                       : status == 413 ? "payload_too_large"
                       : status == 414 ? "uri_too_long"
                       : status == 431 ? "headers_too_large"
                       : status == 501 ? "not_implemented"
                       : status == 505 ? "http_version_not_supported"
                       : status == 503 ? "unavailable"
                                       : "bad_request";
    ap_http_respond_error(x, status, code, message);
    int slot = status_slot(status);
    AP_COUNTER_ADD(c->w->metrics.requests[AP_ROUTER_MAX_ROUTES][slot], 1);
}

/* ---------------------------------------------------------------- request processing */

static void record_metrics(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    struct ap_http_exchange *x = &c->x;
    int route = x->match.index >= 0 ? x->match.index : AP_ROUTER_MAX_ROUTES;
    AP_COUNTER_ADD(w->metrics.requests[route][status_slot(x->status)], 1);
    uint64_t us = (ap_time_mono_ns() - x->start_ns) / 1000;
    int b = 0;
    while (b < AP_METRICS_LATENCY_BUCKETS - 1 && us > ap_metrics_latency_bounds_us[b])
        b++;
    AP_COUNTER_ADD(w->metrics.latency_buckets[b], 1);
    AP_COUNTER_ADD(w->metrics.latency_count, 1);
    AP_COUNTER_ADD(w->metrics.latency_sum_us, us);
    int sample = atomic_load_explicit(&w->s->access_log_sample, memory_order_relaxed);
    if (sample > 0 && ++w->access_counter % (uint64_t)sample == 0 && ap_log_enabled(AP_LOG_INFO)) {
        char members[1400], path[1024];
        ap_json_escape(path, sizeof(path), x->req.target.p, x->req.target.len);
        snprintf(members, sizeof(members),
                 "\"server\":\"%s\",\"method\":\"%s\",\"target\":\"%s\",\"status\":%d,"
                 "\"us\":%llu",
                 w->s->name, ap_http_method_name(x->req.method), path, x->status,
                 (unsigned long long)us);
        ap_log_write_json(AP_LOG_INFO, "access", members);
    }
}

/* Moves the input stashed during a deferred request behind the rest (uring). */
static void unstash(struct ap_http_conn *c)
{
    if (c->stash.len == 0)
        return;
    if (ap_buf_append(&c->in, c->stash.data, c->stash.len) != AP_OK)
        respond_raw_error(c, 413, "request too large");
    c->stash.len = 0;
}

/* uring: the peer closed its side; once nothing is left to answer, close after the output. */
static void check_peer_eof(struct ap_http_conn *c)
{
    if (c->peer_eof && c->state == CONN_OPEN && !c->in_deferred && !c->input_held)
        c->close_after = true;
}

/* The exchange's response is in the output: account for it and get ready for the next. */
static void finish_exchange(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    bool was_deferred = c->in_deferred;
    record_metrics(c);
    c->req_start += c->x.req.consumed;
    ap_arena_reset(&c->arena);
    c->in_deferred = false;
    start_request(c);
    if (!c->close_after)
        list_push(w, c, LIST_IDLE);
    if (was_deferred && !c->in_progress) {
        /* resume: pipelined input behind it, input that arrived meanwhile, then write */
        if (w->uring) {
            unstash(c);
            process_input(c);
            check_peer_eof(c);
            conn_kick(c);
            return;
        }
        process_input(c);
        if (c->state == CONN_OPEN)
            conn_read(c);
        if (c->state == CONN_OPEN)
            flush_output(c);
    }
}

static void dispatch(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    struct ap_http_exchange *x = &c->x;
    const struct ap_router *r = w->s->cfg.router;
    x->responded = false;
    x->deferred = false;
    x->close = false;
    x->status = 0;
    x->start_ns = ap_time_mono_ns();
    ap_router_match(r, x->req.method, x->req.path, &x->match);
    x->route_data = x->match.route ? x->match.route->data : NULL;
    if (x->match.status == 404) {
        ap_http_respond_error(x, 404, "not_found", "no such route");
    } else if (x->match.status == 405) {
        char allow[128];
        ap_router_allow_string(x->match.allow, allow, sizeof(allow));
        ap_http_add_header(x, "Allow", ap_span_cstr(allow));
        ap_http_respond_error(x, x->req.method == AP_HTTP_OTHER ? 501 : 405,
                              x->req.method == AP_HTTP_OTHER ? "not_implemented"
                                                             : "method_not_allowed",
                              "method not allowed for this route");
    } else {
        int rc = x->match.route->handler(x);
        if (rc == AP_HTTP_DEFERRED && !x->responded) {
            c->in_deferred = true;
            x->deferred = true;
            list_remove(w, c);
            return;
        }
        if (x->responded && x->deferred)
            return; /* deferred, then answered at once: ap_http_respond finished it */
        if (!x->responded) {
            ap_log_error("handler for %s returned %d without answering", x->match.route->name, rc);
            c->hdrs.len = 0;
            ap_http_respond_error(x, 500, "internal", "internal error");
        }
    }
    finish_exchange(c);
}

/* Parses and answers every complete request in the input buffer. */
static void process_input(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    c->in_progress = true;
    c->input_held = false;
    while (c->state == CONN_OPEN && !c->in_deferred && !c->close_after &&
           c->req_start < c->in.len) {
        if (out_pending(c) > AP_SERVER_MAX_OUTPUT_PENDING) {
            c->input_held = true;
            break; /* let the client read first */
        }
        if (!c->req_started) {
            c->req_started = true;
            list_push(w, c, LIST_READING);
        }
        struct ap_http_exchange *x = &c->x;
        int rc =
            ap_http_parse(&c->parser, c->in.data + c->req_start, c->in.len - c->req_start, &x->req);
        if (rc == AP_EAGAIN)
            break;
        if (rc == AP_HTTP_HEAD_DONE) {
            if (x->req.expect_continue && x->req.minor_version == 1 && out_pending(c) == 0)
                ap_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            continue;
        }
        if (rc != AP_OK) {
            respond_raw_error(c, c->parser.status ? c->parser.status : 400,
                              c->parser.error ? c->parser.error : "malformed request");
            break;
        }
        x->conn = c;
        x->arena = &c->arena;
        x->app = w->s->cfg.app;
        x->server = w->s;
        x->worker = w;
        x->worker_id = w->id;
        x->loop = &w->loop;
        dispatch(c);
    }
    /* Compact: drop the bytes of answered requests (never while a handler holds spans). */
    if (!c->in_deferred && c->req_start > 0) {
        ap_buf_consume(&c->in, c->req_start);
        c->req_start = 0;
    }
    c->in_progress = false;
}

/* ---------------------------------------------------------------- uring connection I/O */

/* Whether the connection wants its multishot recv armed. */
static bool uring_wants_input(const struct ap_http_conn *c)
{
    if (c->state == CONN_LINGER)
        return true; /* drain until the peer's end of stream */
    if (c->state != CONN_OPEN || c->peer_eof)
        return false;
    if (c->in_deferred)
        return c->stash.len < STASH_SOFT_LIMIT;
    return out_pending(c) <= AP_SERVER_MAX_OUTPUT_PENDING; /* back-pressure */
}

/* Arms or cancels the multishot recv to match the connection's state. */
static void uring_sync_recv(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    bool want = uring_wants_input(c);
    if (want && !c->recv_armed) {
        if (ap_loop_recv_multishot(&w->loop, &c->recv_op, c->io.fd) != AP_OK) {
            conn_close(c);
            return;
        }
        c->recv_armed = true;
    } else if (!want && c->recv_armed && !c->recv_cancelling) {
        if (ap_loop_cancel(&w->loop, &c->recv_op) == AP_OK)
            c->recv_cancelling = true;
    }
}

/* Hands the output to the kernel: one send in flight at a time, from `sending`, while new
 * responses accumulate in `out`. With nothing left to send, a closing connection lingers. */
static void uring_flush(struct ap_http_conn *c)
{
    if (c->send_armed || c->state != CONN_OPEN)
        return;
    if (c->send_off == c->sending.len) {
        c->sending.len = c->send_off = 0;
        if (c->out.len == 0) {
            if (c->close_after && !c->in_deferred)
                conn_linger(c);
            return;
        }
        struct ap_buf t = c->sending;
        c->sending = c->out;
        c->out = t;
    }
    if (ap_loop_send(&c->w->loop, &c->send_op, c->io.fd, c->sending.data + c->send_off,
                     c->sending.len - c->send_off) != AP_OK) {
        conn_close(c);
        return;
    }
    c->send_armed = true;
}

/* After any event: queue the send and set the recv to match the state. */
static void conn_kick(struct ap_http_conn *c)
{
    if (c->state == CONN_OPEN)
        uring_flush(c);
    if (c->state == CONN_OPEN || c->state == CONN_LINGER)
        uring_sync_recv(c);
}

/* n bytes received. */
static void conn_input(struct ap_http_conn *c, const char *data, size_t n)
{
    AP_COUNTER_ADD(c->w->metrics.bytes_in, (uint64_t)n);
    if (c->state != CONN_OPEN || c->close_after)
        return; /* lingering or closing: discard */
    if (c->in_deferred) {
        /* spans of the deferred request point into `in`: it must not move */
        if (c->stash.len == 0 && c->in.size - c->in.len >= n) {
            memcpy(c->in.data + c->in.len, data, n);
            c->in.len += n;
        } else if (ap_buf_append(&c->stash, data, n) != AP_OK) {
            conn_close(c);
        }
        return;
    }
    if (ap_buf_reserve(&c->in, n) != AP_OK) {
        /* the request does not fit: the parser's limits say which */
        respond_raw_error(c, 413, "request too large");
        return;
    }
    memcpy(c->in.data + c->in.len, data, n);
    c->in.len += n;
    process_input(c);
}

static void on_recv(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    struct ap_http_conn *c = op->data;
    if (!(flags & AP_LOOP_OP_MORE))
        c->recv_armed = c->recv_cancelling = false;
    if (flags & AP_LOOP_OP_BUFFER) {
        unsigned bid = ap_loop_op_bid(flags);
        if (res > 0)
            conn_input(c, ap_loop_buf(loop, bid), (size_t)res);
        ap_loop_buf_recycle(loop, bid);
    }
    if (res == 0) {
        c->peer_eof = true;
        if (c->state == CONN_LINGER)
            conn_close(c);
        else
            check_peer_eof(c);
    } else if (res < 0 && res != -ECANCELED && res != -ENOBUFS && res != -EINTR && res != -EAGAIN) {
        conn_close(c); /* reset by the peer, ... */
    }
    if (c->state == CONN_CLOSED)
        conn_maybe_release(c);
    else if (c->state != CONN_FREE)
        conn_kick(c); /* also re-arms after -ENOBUFS: buffers are back by the next submit */
}

static void on_send(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    (void)loop;
    (void)flags;
    struct ap_http_conn *c = op->data;
    c->send_armed = false;
    if (c->state == CONN_CLOSED) {
        conn_maybe_release(c);
        return;
    }
    if (res > 0) {
        c->send_off += (size_t)res;
        AP_COUNTER_ADD(c->w->metrics.bytes_out, (uint64_t)res);
    } else if (res != -EAGAIN && res != -EINTR) {
        conn_close(c); /* the peer is gone */
        return;
    }
    if (c->state == CONN_OPEN && c->input_held && !c->in_deferred &&
        out_pending(c) <= AP_SERVER_MAX_OUTPUT_PENDING) {
        /* output drained: continue with pipelined input held back by back-pressure */
        process_input(c);
        check_peer_eof(c);
    }
    if (c->state == CONN_OPEN || c->state == CONN_LINGER)
        conn_kick(c);
}

/* ---------------------------------------------------------------- epoll connection I/O */

static void flush_output(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    if (w->uring) {
        conn_kick(c);
        return;
    }
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->io.fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            AP_COUNTER_ADD(w->metrics.bytes_out, (uint64_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return; /* EPOLLOUT will call us */
        conn_close(c);
        return;
    }
    c->out.len = c->out_off = 0;
    if (c->close_after && !c->in_deferred) {
        conn_linger(c);
        return;
    }
    /* output drained: continue with pipelined input held back by back-pressure */
    if (c->req_start < c->in.len && !c->in_deferred) {
        process_input(c);
        if (c->state == CONN_OPEN && c->out.len)
            flush_output(c);
    }
}

static void conn_read(struct ap_http_conn *c)
{
    struct ap_worker *w = c->w;
    for (;;) {
        if (c->in_deferred || c->close_after)
            return; /* read later: spans of the deferred request point into the buffer */
        if (c->in.size == c->in.len) {
            size_t want = c->in.size < 65536 ? c->in.size : 65536;
            if (ap_buf_reserve(&c->in, want ? want : 4096) != AP_OK &&
                ap_buf_reserve(&c->in, 1) != AP_OK) {
                /* the request does not fit: the parser's limits say which */
                respond_raw_error(c, 413, "request too large");
                return;
            }
        }
        size_t space = c->in.size - c->in.len;
        ssize_t n = read(c->io.fd, c->in.data + c->in.len, space);
        if (n > 0) {
            c->in.len += (size_t)n;
            AP_COUNTER_ADD(w->metrics.bytes_in, (uint64_t)n);
            process_input(c);
            if (c->state != CONN_OPEN)
                return;
            if ((size_t)n < space && !c->peer_hup)
                return; /* drained: the next edge tells us about more */
            continue;
        }
        if (n == 0) {
            c->peer_eof = true;
            if (out_pending(c) == 0 && !c->in_deferred) {
                conn_close(c);
            } else {
                c->close_after = true;
            }
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            conn_close(c);
        return;
    }
}

static void conn_on_io(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    (void)loop;
    struct ap_http_conn *c = io->data;
    if ((c->state != CONN_OPEN && c->state != CONN_LINGER) || io->fd < 0)
        return; /* a stale event for a connection closed earlier in this batch */
    if (c->state == CONN_LINGER) {
        linger_read(c);
        return;
    }
    /* The FIN may come with the last bytes of a request: that edge is the only one, so the
     * read that gets those bytes must go on to the end of stream. */
    if (events & AP_LOOP_RDHUP)
        c->peer_hup = true;
    if (events & AP_LOOP_READ)
        conn_read(c);
    if (c->state == CONN_OPEN && out_pending(c) > 0)
        flush_output(c);
    else if (c->state == CONN_OPEN && c->close_after && !c->in_deferred && out_pending(c) == 0)
        conn_linger(c);
}

/* ---------------------------------------------------------------- accepting */

#define REFUSE_BODY                                                                                \
    "{\"error\":{\"code\":\"unavailable\",\"message\":\"too many open connections\"}}"
_Static_assert(sizeof(REFUSE_BODY) - 1 == 70, "Content-Length below must match");

static void refuse(struct ap_worker *w, int fd)
{
    static const char msg[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        "Content-Length: 70\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" REFUSE_BODY;
    ssize_t n = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    shutdown(fd, SHUT_WR);
    /* read what the client already sent, so that our close does not turn into a reset */
    char buf[4096];
    for (int i = 0; i < 4 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++) {
    }
    close(fd);
    AP_COUNTER_ADD(w->metrics.refused, 1);
}

static void accepted(struct ap_worker *w, int fd)
{
    if (w->nconns >= w->max_conns)
        refuse(w, fd);
    else
        conn_open(w, fd);
}

/* Accepts what the listening socket has queued (epoll; uring when it stops listening). */
static void accept_queued(struct ap_worker *w)
{
    for (;;) {
        /* uring connections stay blocking: io_uring polls them itself */
        int fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC | (w->uring ? 0 : SOCK_NONBLOCK));
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                ap_log_warn("accept: %s; retrying in 100 ms", strerror(errno));
                if (w->listening)
                    ap_loop_timer_start(&w->loop, &w->accept_retry, 100);
            }
            return;
        }
        accepted(w, fd);
    }
}

static void on_accept(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    (void)loop;
    (void)events;
    struct ap_worker *w = io->data;
    if (w->listening)
        accept_queued(w);
}

static int arm_accept(struct ap_worker *w)
{
    int rc = ap_loop_accept_multishot(&w->loop, &w->accept_op, w->lfd);
    w->accept_armed = rc == AP_OK;
    return rc;
}

/* uring: the listener is no longer watched: take what is queued and close it. */
static void close_listener(struct ap_worker *w)
{
    if (w->lfd < 0)
        return;
    accept_queued(w);
    close(w->lfd);
    w->lfd = -1;
}

static void on_accept_done(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    (void)loop;
    struct ap_worker *w = op->data;
    if (!(flags & AP_LOOP_OP_MORE))
        w->accept_armed = false;
    if (res >= 0)
        accepted(w, res);
    else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN && res != -ECONNABORTED)
        ap_log_warn("accept: %s; retrying in 100 ms", strerror(-res));
    if (w->accept_armed)
        return;
    if (!w->listening) {
        close_listener(w); /* the cancel requested by stop_listening completed */
    } else if (res >= 0 || res == -EINTR || res == -EAGAIN || res == -ECONNABORTED) {
        if (arm_accept(w) != AP_OK)
            ap_loop_timer_start(&w->loop, &w->accept_retry, 100);
    } else {
        ap_loop_timer_start(&w->loop, &w->accept_retry, 100);
    }
}

static void on_accept_retry(struct ap_loop *loop, struct ap_loop_timer *t)
{
    struct ap_worker *w = t->data;
    if (!w->uring) {
        on_accept(loop, &w->listen_io, AP_LOOP_READ);
    } else if (w->listening && !w->accept_armed && arm_accept(w) != AP_OK) {
        ap_loop_timer_start(&w->loop, &w->accept_retry, 100);
    }
}

/* ---------------------------------------------------------------- timers and draining */

/* Draining, step 1: new connection attempts (a SYN without ACK) are dropped by a socket filter
 * on the listener, while handshakes already under way complete and are accepted as usual. The
 * listener closes LISTEN_GRACE_MS later (step 2, stop_listening). Closing it at once
 * would reset every connection the kernel completed between our last accept and the close: the
 * client has sent its request and sees a reset. A dropped SYN is retried by the client after
 * its retransmission timeout, by when the port is closed: the client is refused, cleanly.
 * (A TCP socket's filter sees the TCP header at offset 0; byte 13 holds the flags.) */
static void refuse_new_handshakes(struct ap_worker *w)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),       /* SYN | ACK */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1), /* SYN alone? */
        BPF_STMT(BPF_RET | BPF_K, 0),                    /* drop */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),          /* keep the whole packet */
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    if (w->lfd >= 0 && setsockopt(w->lfd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0)
        ap_log_warn("drain: cannot filter new connections (%s): closing the listener at once",
                    strerror(errno));
    else
        w->listen_close_ns = w->loop.now_ns + (uint64_t)LISTEN_GRACE_MS * AP_NS_PER_MS;
}

static void stop_listening(struct ap_worker *w)
{
    if (!w->listening)
        return;
    ap_loop_timer_stop(&w->loop, &w->accept_retry);
    if (w->uring) {
        w->listening = false;
        /* the accept holds the socket: close it when the cancelled accept reports back */
        if (!w->accept_armed || ap_loop_cancel(&w->loop, &w->accept_op) != AP_OK)
            close_listener(w);
        return;
    }
    on_accept(&w->loop, &w->listen_io, AP_LOOP_READ); /* take what is queued */
    w->listening = false;
    ap_loop_del(&w->loop, &w->listen_io);
    close(w->lfd);
    w->lfd = -1;
}

static void close_idle(struct ap_worker *w)
{
    struct ap_http_conn *c;
    while ((c = w->lists[LIST_IDLE].head)) {
        list_remove(w, c);
        if (w->uring) {
            /* A request the kernel holds but has not reported yet is served (with
             * Connection: close) when it is; otherwise close once the output is out. */
            char b;
            if (recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
                list_push(w, c, LIST_READING);
                continue;
            }
            c->close_after = true;
            conn_kick(c);
            continue;
        }
        /* a request may have arrived just now: serve it (with Connection: close) */
        conn_read(c);
        if (c->state == CONN_OPEN && c->list == LIST_NONE && !c->in_deferred) {
            if (out_pending(c) > 0)
                flush_output(c);
            else
                conn_linger(c);
        }
    }
}

static void sweep(struct ap_loop *loop, struct ap_loop_timer *t)
{
    struct ap_worker *w = t->data;
    struct ap_server *s = w->s;
    uint64_t now = loop->now_ns;
    uint64_t header_ns = (uint64_t)atomic_load(&s->header_timeout_ms) * AP_NS_PER_MS;
    uint64_t idle_ns = (uint64_t)atomic_load(&s->idle_timeout_ms) * AP_NS_PER_MS;
    struct ap_http_conn *c;
    while ((c = w->lists[LIST_READING].head) && now - c->since_ns >= header_ns) {
        list_remove(w, c);
        AP_COUNTER_ADD(w->metrics.timeouts, 1);
        if (out_pending(c) > 0) {
            conn_close(c); /* not reading our responses: give up */
            continue;
        }
        respond_raw_error(c, 408, "request not received in time");
        flush_output(c);
    }
    while ((c = w->lists[LIST_IDLE].head) && now - c->since_ns >= idle_ns) {
        list_remove(w, c);
        if (out_pending(c) > 0)
            conn_close(c); /* not reading our responses: give up */
        else
            conn_linger(c);
    }
    while ((c = w->lists[LIST_LINGER].head) &&
           now - c->since_ns >= (uint64_t)AP_SERVER_LINGER_MS * AP_NS_PER_MS)
        conn_close(c);

    if (atomic_load(&s->draining) && !w->draining) {
        w->draining = true;
        w->drain_deadline_ns = now + (uint64_t)s->cfg.drain_timeout_ms * AP_NS_PER_MS;
        w->listen_close_ns = now;
        refuse_new_handshakes(w);
    }
    if (w->draining && w->listening &&
        (now >= w->listen_close_ns || now + 20 * AP_NS_PER_MS >= w->drain_deadline_ns))
        stop_listening(w);
    if (w->draining) {
        close_idle(w);
        /* uring: the listener closes once its cancelled accept reports back, serving what it
         * still had queued; only then can the worker be done */
        if ((w->nconns == 0 && w->lfd < 0) || now >= w->drain_deadline_ns) {
            ap_loop_stop(loop);
            return;
        }
    }
    ap_loop_timer_start(loop, t, w->draining ? 20 : 100);
}

static void on_wake(struct ap_loop *loop, void *data)
{
    struct ap_worker *w = data;
    (void)loop;
    /* sweep at the end of this iteration, once the events at hand are handled */
    if (atomic_load(&w->s->draining))
        ap_loop_timer_start(&w->loop, &w->sweep, 0);
}

/* The loop has stopped (drained, or the drain deadline passed): close what is left and, on
 * uring, let the cancelled operations report back so every struct is released. */
static void worker_finish(struct ap_worker *w)
{
    for (int i = 0; i < 100; i++) {
        while (w->all)
            conn_close(w->all);
        stop_listening(w);
        if (!w->uring || (w->nconns == 0 && !w->accept_armed))
            break;
        ap_loop_run_once(&w->loop, 10);
    }
}

static void *worker_main(void *arg)
{
    struct ap_worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "%.8s-%d", w->s->name, w->id);
    ap_log_set_thread_name(name);
    pthread_setname_np(pthread_self(), name);
    if (w->s->cfg.pin_threads) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpu > 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET((w->s->cfg.first_cpu + w->id) % ncpu, &set);
            pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        }
    }
    ap_loop_run(&w->loop);
    worker_finish(w);
    ap_hc_worker_shutdown(); /* this worker's outbound HTTP client, if it made one */
    return NULL;
}

int ap_server_start(struct ap_server *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        struct ap_worker *w = &s->workers[i];
        int rc = ap_loop_init_backend(&w->loop, s->cfg.io_backend, on_wake, w);
        if (rc)
            return rc;
        w->uring = ap_loop_backend(&w->loop) == AP_LOOP_URING;
        w->listening = true;
        ap_loop_timer_init(&w->sweep, sweep, w);
        ap_loop_timer_init(&w->accept_retry, on_accept_retry, w);
        ap_loop_timer_start(&w->loop, &w->sweep, 100);
        if (w->uring) {
            w->accept_op.cb = on_accept_done;
            w->accept_op.data = w;
            rc = arm_accept(w);
        } else {
            w->listen_io.fd = w->lfd;
            w->listen_io.cb = on_accept;
            w->listen_io.data = w;
            rc = ap_loop_add(&w->loop, &w->listen_io, AP_LOOP_READ);
        }
        if (rc)
            return rc;
    }
    ap_log_info("%s server: %d worker(s) on the %s backend", s->name, s->nworkers,
                ap_loop_backend_name(ap_loop_backend(&s->workers[0].loop)));
    for (int i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0)
            return AP_ESYS;
    }
    return AP_OK;
}

void ap_server_drain(struct ap_server *s)
{
    atomic_store(&s->draining, true);
    for (int i = 0; i < s->nworkers; i++)
        ap_loop_wake(&s->workers[i].loop);
}

void ap_server_join(struct ap_server *s)
{
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
}

void ap_server_destroy(struct ap_server *s)
{
    if (!s)
        return;
    if (s->workers) {
        for (int i = 0; i < s->nworkers; i++) {
            struct ap_worker *w = &s->workers[i];
            if (w->lfd >= 0)
                close(w->lfd);
            struct ap_http_conn *c = w->free_conns;
            while (c) {
                struct ap_http_conn *next = c->next;
                ap_buf_free(&c->in);
                ap_buf_free(&c->out);
                ap_buf_free(&c->sending);
                ap_buf_free(&c->stash);
                ap_buf_free(&c->hdrs);
                ap_arena_destroy(&c->arena);
                free(c);
                c = next;
            }
            if (w->loop.epfd > 0)
                ap_loop_destroy(&w->loop);
        }
        free(s->workers);
    }
    free(s);
}
