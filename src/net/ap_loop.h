/*
 * ap_loop: a per-thread event loop with timers, a cross-thread wake-up, readiness callbacks for
 * arbitrary fds and, on the io_uring backend, completion-based socket operations.
 *
 * Backends (docs/adr/0002-io-uring-serving-core.md):
 *   - AP_LOOP_URING (preferred): one io_uring per loop. Operations (accept, recv into provided
 *     buffers, send, close, cancel) are queued as SQEs and submitted together with the
 *     wait for completions: one io_uring_enter per loop iteration. Readiness callbacks
 *     (ap_loop_add & co) still go through an epoll fd, whose own readiness is a multishot poll
 *     in the ring: only an iteration with readiness events adds an epoll_wait(…, 0).
 *   - AP_LOOP_EPOLL (fallback): epoll, edge-triggered. The completion operations are not
 *     available (they return AP_EINVAL); callers check ap_loop_backend().
 * AP_LOOP_AUTO and AP_LOOP_URING use uring when the kernel allows it (Linux >= 6.1, io_uring not
 * disabled by sysctl or seccomp) and fall back to epoll with a warning otherwise.
 *
 * Threads: one loop belongs to one thread. ap_loop_init() and ap_loop_destroy() may run on
 * another thread (the creator) while the loop is not running, and the creator may also register
 * fds, timers and operations before handing the loop to its thread (they are submitted when it
 * first runs); after that every function except ap_loop_wake() must be called on the loop's
 * own thread.
 *
 * Ownership: the caller owns each struct ap_loop_io, ap_loop_timer and ap_loop_op it registers
 * and must keep it alive until it is removed (io, timer) or until its last completion has been
 * delivered (op: a completion without AP_LOOP_OP_MORE). Memory handed to an operation (the send
 * buffer) belongs to the kernel until that completion. Nothing here allocates after
 * ap_loop_init() except the timer heap growing (capped at AP_LOOP_MAX_TIMERS).
 */
#ifndef AP_LOOP_H
#define AP_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AP_LOOP_MAX_EVENTS 256
#define AP_LOOP_MAX_TIMERS 65536
#define AP_LOOP_URING_ENTRIES 1024  /* submission queue; the completion queue is 8x */
#define AP_LOOP_URING_BUFS 1024     /* provided receive buffers per loop (a power of two) */
#define AP_LOOP_URING_BUF_SIZE 4096 /* bytes per provided buffer */

/* Readiness events. AP_LOOP_RDHUP (reported with AP_LOOP_READ, never asked for): the peer
 * closed its side; edge-triggered, so a reader that stops at a short read must go on to the
 * end of stream, or it would never hear of it. */
enum { AP_LOOP_READ = 1, AP_LOOP_WRITE = 2, AP_LOOP_ERROR = 4, AP_LOOP_RDHUP = 8 };

enum ap_loop_backend { AP_LOOP_AUTO = 0, AP_LOOP_EPOLL = 1, AP_LOOP_URING = 2 };

struct ap_loop;
struct ap_loop_io;
typedef void (*ap_loop_io_cb)(struct ap_loop *loop, struct ap_loop_io *io, int events);

struct ap_loop_io {
    int fd;
    ap_loop_io_cb cb;
    void *data;
};

struct ap_loop_timer;
typedef void (*ap_loop_timer_cb)(struct ap_loop *loop, struct ap_loop_timer *t);

struct ap_loop_timer {
    uint64_t due_ns; /* monotonic */
    ap_loop_timer_cb cb;
    void *data;
    int heap_index; /* -1 when not armed */
};

/* A completion-based operation (uring backend). res is the operation's result: bytes, an fd,
 * 0, or a negative errno value (-ECANCELED after a cancel, -ENOBUFS when the provided buffers
 * ran out). flags: AP_LOOP_OP_MORE while a multishot operation stays armed (no MORE = this was
 * its last completion); AP_LOOP_OP_BUFFER when res bytes were received into the provided buffer
 * ap_loop_op_bid(flags), which the callback reads with ap_loop_buf() and gives back with
 * ap_loop_buf_recycle() before it returns. */
struct ap_loop_op;
typedef void (*ap_loop_op_cb)(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags);

struct ap_loop_op {
    ap_loop_op_cb cb;
    void *data;
};

#define AP_LOOP_OP_MORE 1u
#define AP_LOOP_OP_BUFFER 2u

static inline unsigned ap_loop_op_bid(unsigned flags)
{
    return flags >> 16;
}

typedef void (*ap_loop_wake_cb)(struct ap_loop *loop, void *data);

struct ap__loop_uring; /* private to ap_loop.c */

struct ap_loop {
    enum ap_loop_backend backend; /* AP_LOOP_EPOLL or AP_LOOP_URING once initialised */
    int epfd;
    int wakefd; /* eventfd */
    struct ap_loop_io wake_io;
    ap_loop_wake_cb wake_cb;
    void *wake_data;
    struct ap_loop_timer **heap;
    int nheap, heap_cap;
    atomic_bool stop;
    uint64_t now_ns;              /* cached at each iteration */
    struct ap__loop_uring *uring; /* NULL on the epoll backend */
};

/* 0 or a negative AP_E* code. wake_cb runs on the loop thread after ap_loop_wake().
 * ap_loop_init() is ap_loop_init_backend(loop, AP_LOOP_AUTO, ...). Asking for AP_LOOP_URING
 * when io_uring is unavailable also falls back to epoll with a warning; only a failure of the
 * fallback itself is an error. */
int ap_loop_init(struct ap_loop *loop, ap_loop_wake_cb wake_cb, void *wake_data);
int ap_loop_init_backend(struct ap_loop *loop, enum ap_loop_backend backend,
                         ap_loop_wake_cb wake_cb, void *wake_data);
void ap_loop_destroy(struct ap_loop *loop);

static inline enum ap_loop_backend ap_loop_backend(const struct ap_loop *loop)
{
    return loop->backend;
}
const char *ap_loop_backend_name(enum ap_loop_backend backend); /* "auto", "epoll", "uring" */

/* Readiness, both backends: registers io->fd for events (AP_LOOP_READ|AP_LOOP_WRITE),
 * edge-triggered. */
int ap_loop_add(struct ap_loop *loop, struct ap_loop_io *io, int events);
int ap_loop_mod(struct ap_loop *loop, struct ap_loop_io *io, int events);
void ap_loop_del(struct ap_loop *loop, struct ap_loop_io *io);

/* Arms (or re-arms) t to fire after ms milliseconds. */
int ap_loop_timer_start(struct ap_loop *loop, struct ap_loop_timer *t, uint64_t ms);
void ap_loop_timer_stop(struct ap_loop *loop, struct ap_loop_timer *t);
static inline void ap_loop_timer_init(struct ap_loop_timer *t, ap_loop_timer_cb cb, void *data)
{
    t->cb = cb;
    t->data = data;
    t->heap_index = -1;
    t->due_ns = 0;
}

/* ---- completion operations: uring backend only, loop thread ----
 * Each queues one SQE, submitted with the next wait (or at once when the submission queue is
 * full). 0, or AP_EINVAL on the epoll backend, AP_EBUSY when no SQE can be had. */

/* Multishot accept on a listening socket: one completion per connection (res = the new fd,
 * blocking, close-on-exec). */
int ap_loop_accept_multishot(struct ap_loop *loop, struct ap_loop_op *op, int fd);
/* Multishot receive into the loop's provided buffers: one completion per chunk received
 * (AP_LOOP_OP_BUFFER), res 0 at end of stream. */
int ap_loop_recv_multishot(struct ap_loop *loop, struct ap_loop_op *op, int fd);
/* One send of buf[0, len) (MSG_NOSIGNAL); it may be short. buf stays the kernel's until the
 * completion. */
int ap_loop_send(struct ap_loop *loop, struct ap_loop_op *op, int fd, const void *buf, size_t len);
/* Requests the cancellation of op (its last completion then reports -ECANCELED, or the result
 * it had already reached). */
int ap_loop_cancel(struct ap_loop *loop, struct ap_loop_op *op);
/* Fire-and-forget (no completion callback): cancel every operation on fd, close(fd). They run in
 * the order queued; the fd must not be used after ap_loop_close(). A socket is only released once
 * the operations on it have completed, so cancel them first. (No shutdown: IORING_OP_SHUTDOWN
 * runs in an io-wq thread, possibly after a close queued later, and could meet a reused fd
 * number; call shutdown(2).) */
int ap_loop_cancel_fd(struct ap_loop *loop, int fd);
int ap_loop_close(struct ap_loop *loop, int fd);

/* The provided buffer bid (AP_LOOP_URING_BUF_SIZE bytes), and giving it back. */
const char *ap_loop_buf(struct ap_loop *loop, unsigned bid);
void ap_loop_buf_recycle(struct ap_loop *loop, unsigned bid);

/* Runs until ap_loop_stop(). */
void ap_loop_run(struct ap_loop *loop);
/* One iteration: submits what is queued, waits at most max_wait_ms (or less, for the next
 * timer) for events, dispatches them and the due timers. */
void ap_loop_run_once(struct ap_loop *loop, int max_wait_ms);
void ap_loop_stop(struct ap_loop *loop); /* loop thread only; others use wake + a flag */

/* Any thread: makes the loop call its wake_cb soon. Async-signal-safe. */
void ap_loop_wake(struct ap_loop *loop);

#endif
