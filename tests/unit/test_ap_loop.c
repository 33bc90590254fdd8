/*
 * ap_loop on both backends (timers, cross-thread wake, readiness callbacks; on io_uring the
 * completion operations), and the HTTP server's connection I/O on each backend under a storm
 * of short-lived connections: every connection must get every response it asked for, complete,
 * followed by a clean end of stream (no reset), and every connection struct must be released.
 * The storm mixes what makes the close path differ: Connection: close, HTTP/1.0, a response
 * much larger than the socket buffer (several sends), a deferred response, pipelined requests
 * ending in Connection: close, a client that half-closes after its request, and a request body.
 * io_uring cases are skipped when the kernel does not allow io_uring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "net/ap_loop.h"
#include "net/ap_server.h"

/* ---------------------------------------------------------------- loop */

static bool init_or_skip(struct ap_loop *loop, enum ap_loop_backend backend, ap_loop_wake_cb cb,
                         void *data)
{
    assert_int_equal(ap_loop_init_backend(loop, backend, cb, data), AP_OK);
    if (ap_loop_backend(loop) != backend) {
        ap_loop_destroy(loop);
        return false; /* io_uring not allowed here: the fallback is tested as epoll */
    }
    return true;
}

struct timer_rec {
    struct ap_loop_timer t;
    int id;
    int *order;
    int *n;
};

static void on_timer(struct ap_loop *loop, struct ap_loop_timer *t)
{
    struct timer_rec *r = t->data;
    r->order[(*r->n)++] = r->id;
    if (*r->n == 3)
        ap_loop_stop(loop);
}

static void on_wake(struct ap_loop *loop, void *data)
{
    atomic_int *woken = data;
    atomic_fetch_add(woken, 1);
    ap_loop_stop(loop);
}

static void *wake_later(void *arg)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ap_loop_wake(arg);
    return NULL;
}

static void timers_and_wake(enum ap_loop_backend backend)
{
    struct ap_loop loop;
    atomic_int woken = 0;
    if (!init_or_skip(&loop, backend, on_wake, &woken))
        skip();
    int order[3], n = 0;
    struct timer_rec r[3];
    const int ms[3] = {30, 10, 20};
    for (int i = 0; i < 3; i++) {
        r[i] = (struct timer_rec){.id = i, .order = order, .n = &n};
        ap_loop_timer_init(&r[i].t, on_timer, &r[i]);
        assert_int_equal(ap_loop_timer_start(&loop, &r[i].t, (uint64_t)ms[i]), AP_OK);
    }
    /* a stopped timer never fires */
    struct timer_rec gone = {.id = 9, .order = order, .n = &n};
    ap_loop_timer_init(&gone.t, on_timer, &gone);
    ap_loop_timer_start(&loop, &gone.t, 5);
    ap_loop_timer_stop(&loop, &gone.t);
    ap_loop_run(&loop);
    assert_int_equal(n, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 0);

    /* another thread wakes the loop out of a long wait */
    atomic_store(&loop.stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wake_later, &loop), 0);
    ap_loop_run(&loop);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&woken), 1);
    ap_loop_destroy(&loop);
}

static void test_timers_and_wake_epoll(void **state)
{
    (void)state;
    timers_and_wake(AP_LOOP_EPOLL);
}

static void test_timers_and_wake_uring(void **state)
{
    (void)state;
    timers_and_wake(AP_LOOP_URING);
}

struct ready_rec {
    struct ap_loop_io io;
    int calls;
    size_t got;
};

static void on_ready(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    struct ready_rec *r = io->data;
    r->calls++;
    if (events & AP_LOOP_READ) {
        char buf[64];
        ssize_t n;
        while ((n = read(io->fd, buf, sizeof(buf))) > 0)
            r->got += (size_t)n;
    }
    ap_loop_stop(loop);
}

static void readiness(enum ap_loop_backend backend)
{
    struct ap_loop loop;
    if (!init_or_skip(&loop, backend, NULL, NULL))
        skip();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct ready_rec r = {.io = {.fd = sv[0], .cb = on_ready}};
    r.io.data = &r;
    assert_int_equal(ap_loop_add(&loop, &r.io, AP_LOOP_READ), AP_OK);
    assert_int_equal(write(sv[1], "hello", 5), 5);
    ap_loop_run(&loop);
    assert_int_equal(r.got, 5);
    /* edge-triggered: nothing new, no call */
    int calls = r.calls;
    atomic_store(&loop.stop, false);
    ap_loop_run_once(&loop, 30);
    assert_int_equal(r.calls, calls);
    assert_int_equal(write(sv[1], "again", 5), 5);
    ap_loop_run(&loop);
    assert_int_equal(r.got, 10);
    ap_loop_del(&loop, &r.io);
    close(sv[0]);
    close(sv[1]);
    ap_loop_destroy(&loop);
}

static void test_readiness_epoll(void **state)
{
    (void)state;
    readiness(AP_LOOP_EPOLL);
}

static void test_readiness_uring(void **state)
{
    (void)state;
    readiness(AP_LOOP_URING);
}

/* uring operations: accept, multishot recv into provided buffers, send, cancel + close. */
struct ops_rec {
    struct ap_loop_op accept_op, recv_op, send_op;
    int fd;
    char in[64];
    size_t in_len;
    int recv_final_res;
    bool recv_done;
    int sent;
    bool accept_done;
};

static void ops_on_accept(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    struct ops_rec *r = op->data;
    if (!(flags & AP_LOOP_OP_MORE)) {
        r->accept_done = true; /* the cancel below ends the multishot accept */
        return;
    }
    assert_true(res >= 0);
    r->fd = res;
    assert_int_equal(ap_loop_recv_multishot(loop, &r->recv_op, res), AP_OK);
    assert_int_equal(ap_loop_cancel(loop, &r->accept_op), AP_OK);
}

static void ops_on_recv(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    struct ops_rec *r = op->data;
    if (flags & AP_LOOP_OP_BUFFER) {
        unsigned bid = ap_loop_op_bid(flags);
        assert_true(res > 0 && r->in_len + (size_t)res <= sizeof(r->in));
        memcpy(r->in + r->in_len, ap_loop_buf(loop, bid), (size_t)res);
        r->in_len += (size_t)res;
        ap_loop_buf_recycle(loop, bid);
        if (r->in_len == 5)
            assert_int_equal(ap_loop_send(loop, &r->send_op, r->fd, "HELLO", 5), AP_OK);
    }
    if (!(flags & AP_LOOP_OP_MORE)) {
        r->recv_done = true;
        r->recv_final_res = res;
        ap_loop_stop(loop);
    }
}

static void ops_on_send(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    (void)loop;
    (void)flags;
    struct ops_rec *r = op->data;
    r->sent = res;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_uring_operations(void **state)
{
    (void)state;
    struct ap_loop loop;
    if (!init_or_skip(&loop, AP_LOOP_URING, NULL, NULL))
        skip();
    assert_int_equal(ap_loop_backend(&loop), AP_LOOP_URING);
    int port, lfd = listen_any(&port);
    struct ops_rec r = {.fd = -1};
    r.accept_op = (struct ap_loop_op){.data = &r, .cb = ops_on_accept};
    r.recv_op = (struct ap_loop_op){.data = &r, .cb = ops_on_recv};
    r.send_op = (struct ap_loop_op){.data = &r, .cb = ops_on_send};
    assert_int_equal(ap_loop_accept_multishot(&loop, &r.accept_op, lfd), AP_OK);
    int cfd = connect_to(port);
    assert_true(cfd >= 0);
    assert_int_equal(write(cfd, "hel", 3), 3);
    for (int i = 0; i < 50 && r.in_len < 3; i++)
        ap_loop_run_once(&loop, 10);
    assert_int_equal(write(cfd, "lo", 2), 2);
    for (int i = 0; i < 50 && r.sent == 0; i++)
        ap_loop_run_once(&loop, 10);
    assert_memory_equal(r.in, "hello", 5);
    assert_int_equal(r.sent, 5);
    assert_true(r.accept_done);
    char buf[16];
    assert_int_equal(read(cfd, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "HELLO", 5);
    /* a pending recv is cancelled by cancel_fd: its last completion reports -ECANCELED; the
     * close queued after it then really closes the socket (the client sees end of stream) */
    assert_int_equal(ap_loop_cancel_fd(&loop, r.fd), AP_OK);
    assert_int_equal(ap_loop_close(&loop, r.fd), AP_OK);
    ap_loop_run(&loop);
    assert_true(r.recv_done);
    assert_int_equal(r.recv_final_res, -ECANCELED);
    assert_int_equal(read(cfd, buf, sizeof(buf)), 0);
    /* the peer's end of stream is a recv's last completion (res 0) */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    r.recv_done = false;
    r.in_len = 0;
    assert_int_equal(ap_loop_recv_multishot(&loop, &r.recv_op, sv[0]), AP_OK);
    shutdown(sv[1], SHUT_WR);
    atomic_store(&loop.stop, false);
    ap_loop_run(&loop);
    assert_true(r.recv_done);
    assert_int_equal(r.recv_final_res, 0);
    close(sv[0]);
    close(sv[1]);
    close(cfd);
    close(lfd);
    ap_loop_destroy(&loop);
}

static void test_epoll_has_no_completion_ops(void **state)
{
    (void)state;
    struct ap_loop loop;
    assert_int_equal(ap_loop_init_backend(&loop, AP_LOOP_EPOLL, NULL, NULL), AP_OK);
    struct ap_loop_op op = {0};
    assert_int_equal(ap_loop_recv_multishot(&loop, &op, 0), AP_EINVAL);
    assert_int_equal(ap_loop_send(&loop, &op, 0, "x", 1), AP_EINVAL);
    assert_int_equal(ap_loop_close(&loop, 0), AP_EINVAL);
    ap_loop_destroy(&loop);
}

/* ---------------------------------------------------------------- server storm */

#define BIG_LEN (768 * 1024) /* several sends: well over a loopback socket's send buffer */
static char big_body[BIG_LEN];

static int h_small(struct ap_http_exchange *x)
{
    char body[32];
    int n = snprintf(body, sizeof(body), "small:%zu", x->req.body.len);
    return ap_http_respond(x, 200, "text/plain", body, (size_t)n);
}

static int h_big(struct ap_http_exchange *x)
{
    return ap_http_respond(x, 200, "application/octet-stream", big_body, BIG_LEN);
}

struct later {
    struct ap_loop_timer t;
    struct ap_http_exchange *x;
};

static void answer_later(struct ap_loop *loop, struct ap_loop_timer *t)
{
    (void)loop;
    struct later *l = t->data;
    ap_http_respond(l->x, 200, "text/plain", "deferred", 8);
}

static int h_deferred(struct ap_http_exchange *x)
{
    struct later *l = ap_arena_alloc(x->arena, sizeof(*l));
    if (!l)
        return ap_http_respond(x, 500, "text/plain", "oom", 3);
    l->x = x;
    ap_loop_timer_init(&l->t, answer_later, l);
    ap_loop_timer_start(x->loop, &l->t, 1);
    return ap_http_defer(x);
}

struct scenario {
    const char *name;
    const char *req;
    bool half_close;
    int nresp;
    const char *bodies[2]; /* expected bodies; NULL = the big one */
};

#define REQ(path, extra) "GET " path " HTTP/1.1\r\nHost: t\r\n" extra "\r\n"
#define CLOSE "Connection: close\r\n"

static const struct scenario scenarios[] = {
    {"close", REQ("/small", CLOSE), false, 1, {"small:0"}},
    {"close-big", REQ("/big", CLOSE), false, 1, {NULL}},
    {"close-deferred", REQ("/deferred", CLOSE), false, 1, {"deferred"}},
    {"http10", "GET /small HTTP/1.0\r\n\r\n", false, 1, {"small:0"}},
    {"pipelined-close", REQ("/small", "") REQ("/big", CLOSE), false, 2, {"small:0", NULL}},
    {"half-close", REQ("/small", ""), true, 1, {"small:0"}},
    {"post-close",
     "POST /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nabcde",
     false,
     1,
     {"small:5"}},
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

struct storm {
    int port;
    int per_thread;
    int seed;
    atomic_int ok;
    atomic_int failed[NSCENARIOS];
    atomic_int reported;
};

/* Checks that buf[0, len) is exactly the scenario's responses. NULL or what is wrong. */
static const char *check_responses(const struct scenario *sc, const char *buf, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < sc->nresp; i++) {
        const char *head = buf + off;
        const char *end = memmem(head, len - off, "\r\n\r\n", 4);
        if (!end)
            return len == off ? "no response" : "truncated head";
        if (end - head < 13 || memcmp(head, "HTTP/1.1 200 ", 13) != 0)
            return "not 200";
        const char *cl = memmem(head, (size_t)(end - head), "Content-Length: ", 16);
        if (!cl)
            return "no Content-Length";
        size_t blen = strtoul(cl + 16, NULL, 10);
        const char *body = end + 4;
        if ((size_t)(buf + len - body) < blen)
            return "truncated body";
        const char *want = sc->bodies[i];
        if (want ? (blen != strlen(want) || memcmp(body, want, blen) != 0)
                 : (blen != BIG_LEN || memcmp(body, big_body, BIG_LEN) != 0))
            return "wrong body";
        off = (size_t)(body + blen - buf);
    }
    return off == len ? NULL : "bytes after the last response";
}

static void *storm_client(void *arg)
{
    struct storm *st = arg;
    size_t cap = 2 * BIG_LEN + 4096;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < st->per_thread; i++) {
        size_t k = (size_t)(i + st->seed) % NSCENARIOS;
        const struct scenario *sc = &scenarios[k];
        const char *err = NULL;
        int fd = connect_to(st->port);
        if (fd < 0) {
            err = "connect";
            goto done;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        size_t rl = strlen(sc->req);
        if (send(fd, sc->req, rl, MSG_NOSIGNAL) != (ssize_t)rl) {
            err = "send";
            goto done;
        }
        if (sc->half_close)
            shutdown(fd, SHUT_WR);
        size_t len = 0;
        for (;;) {
            ssize_t n = recv(fd, buf + len, cap - len, 0);
            if (n > 0) {
                len += (size_t)n;
                continue;
            }
            if (n < 0)
                err = errno == ECONNRESET ? "reset" : errno == EAGAIN ? "timeout" : "recv error";
            break;
        }
        if (!err)
            err = check_responses(sc, buf, len);
    done:
        if (fd >= 0)
            close(fd);
        if (err) {
            atomic_fetch_add(&st->failed[k], 1);
            if (atomic_fetch_add(&st->reported, 1) < 5)
                fprintf(stderr, "  %s: %s\n", sc->name, err);
        } else {
            atomic_fetch_add(&st->ok, 1);
        }
    }
    free(buf);
    return NULL;
}

static uint64_t open_connections(struct ap_server *s)
{
    uint64_t n = 0;
    for (int i = 0; i < ap_server_threads(s); i++)
        n += atomic_load(&ap_server_metrics(s, i)->open_connections);
    return n;
}

static void server_storm(enum ap_loop_backend backend)
{
    struct ap_loop probe;
    if (!init_or_skip(&probe, backend, NULL, NULL))
        skip();
    ap_loop_destroy(&probe);
    for (size_t i = 0; i < BIG_LEN; i++)
        big_body[i] = (char)('a' + i % 26);
    static struct ap_router router;
    ap_router_init(&router);
    assert_int_equal(
        ap_router_add(&router, AP_M(GET) | AP_M(POST), "/small", h_small, NULL, "small"), 0);
    assert_int_equal(ap_router_add(&router, AP_M(GET), "/big", h_big, NULL, "big"), 0);
    assert_int_equal(ap_router_add(&router, AP_M(GET), "/deferred", h_deferred, NULL, "deferred"),
                     0);
    struct ap_server_config cfg = {
        .name = "storm",
        .host = "127.0.0.1",
        .port = 0,
        .threads = 2,
        .max_connections = 4096,
        .backlog = 1024,
        .limits = {.max_header_bytes = AP_HTTP_DEFAULT_MAX_HEADER_BYTES,
                   .max_uri = AP_HTTP_DEFAULT_MAX_URI,
                   .max_body = AP_HTTP_DEFAULT_MAX_BODY,
                   .max_header_count = AP_HTTP_DEFAULT_MAX_HEADER_COUNT},
        /* longer than the client's 10 s receive timeout: a missed end of stream fails */
        .header_timeout_ms = 60000,
        .idle_timeout_ms = 60000,
        .drain_timeout_ms = 5000,
        .router = &router,
        .io_backend = backend,
    };
    int err = 0;
    struct ap_server *s = ap_server_create(&cfg, &err);
    assert_non_null(s);
    assert_int_equal(ap_server_start(s), AP_OK);
    ap_server_set_ready(s, true);

    enum { THREADS = 8 };
    /* AP_TEST_STORM_SCALE=N multiplies the connections, for soak runs by hand */
    const char *scale_env = getenv("AP_TEST_STORM_SCALE");
    long scale = scale_env ? strtol(scale_env, NULL, 10) : 1;
    const int PER_THREAD = 140 * (int)(scale > 0 && scale < 1000 ? scale : 1);
    pthread_t th[THREADS];
    struct storm *per[THREADS];
    for (int i = 0; i < THREADS; i++) {
        per[i] = calloc(1, sizeof(struct storm));
        assert_non_null(per[i]);
        per[i]->port = ap_server_port(s);
        per[i]->per_thread = PER_THREAD;
        per[i]->seed = i;
        assert_int_equal(pthread_create(&th[i], NULL, storm_client, per[i]), 0);
    }
    int ok = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += atomic_load(&per[i]->ok);
        for (size_t k = 0; k < NSCENARIOS; k++) {
            int f = atomic_load(&per[i]->failed[k]);
            if (f)
                fprintf(stderr, "  %s backend, %s: %d failed\n", ap_loop_backend_name(backend),
                        scenarios[k].name, f);
            failed += f;
        }
        free(per[i]);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(ok, THREADS * PER_THREAD);
    /* every connection struct goes back (the last completions arrive soon after the close) */
    for (int i = 0; i < 200 && open_connections(s) != 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(open_connections(s), 0);
    ap_server_drain(s);
    ap_server_join(s);
    ap_server_destroy(s);
}

static void test_server_storm_epoll(void **state)
{
    (void)state;
    server_storm(AP_LOOP_EPOLL);
}

static void test_server_storm_uring(void **state)
{
    (void)state;
    server_storm(AP_LOOP_URING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_and_wake_epoll),
        cmocka_unit_test(test_timers_and_wake_uring),
        cmocka_unit_test(test_readiness_epoll),
        cmocka_unit_test(test_readiness_uring),
        cmocka_unit_test(test_uring_operations),
        cmocka_unit_test(test_epoll_has_no_completion_ops),
        cmocka_unit_test(test_server_storm_epoll),
        cmocka_unit_test(test_server_storm_uring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
