#include "ap_loop.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"

#define CQE_BATCH 64

/* The io_uring backend's state. Only the loop thread touches it once the loop runs. */
struct ap__loop_uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br; /* provided-buffer ring, group 0 */
    size_t br_bytes;
    char *bufs; /* AP_LOOP_URING_BUFS x AP_LOOP_URING_BUF_SIZE */
    size_t bufs_bytes;
    int buf_mask;
    struct ap_loop_op epoll_op; /* multishot poll on loop->epfd: readiness callbacks are due */
    bool epoll_armed;
    bool started;      /* enabled on the loop thread */
    bool enter_failed; /* an io_uring_enter error was logged */
};

static void wake_read(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    (void)events;
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
    if (loop->wake_cb)
        loop->wake_cb(loop, loop->wake_data);
}

const char *ap_loop_backend_name(enum ap_loop_backend backend)
{
    switch (backend) {
    case AP_LOOP_EPOLL:
        return "epoll";
    case AP_LOOP_URING:
        return "uring";
    case AP_LOOP_AUTO:
        break;
    }
    return "auto";
}

/* ---------------------------------------------------------------- epoll readiness */

static uint32_t to_epoll(int events)
{
    uint32_t e = EPOLLET | EPOLLRDHUP;
    if (events & AP_LOOP_READ)
        e |= EPOLLIN;
    if (events & AP_LOOP_WRITE)
        e |= EPOLLOUT;
    return e;
}

int ap_loop_add(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return ap_error_from_errno(errno);
    return AP_OK;
}

int ap_loop_mod(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return ap_error_from_errno(errno);
    return AP_OK;
}

void ap_loop_del(struct ap_loop *loop, struct ap_loop_io *io)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* One epoll_wait and the callbacks of what it returned; the number of events. */
static int epoll_dispatch(struct ap_loop *loop, int64_t timeout_ns)
{
    struct epoll_event evs[AP_LOOP_MAX_EVENTS];
    /* nanosecond waits (Linux 5.11): a timer is not rounded up to the next millisecond */
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000,
                          .tv_nsec = timeout_ns % 1000000000};
    int n = epoll_pwait2(loop->epfd, evs, AP_LOOP_MAX_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(loop->epfd, evs, AP_LOOP_MAX_EVENTS,
                       (int)((timeout_ns + AP_NS_PER_MS - 1) / AP_NS_PER_MS));
    loop->now_ns = ap_time_mono_ns();
    for (int i = 0; i < n; i++) {
        struct ap_loop_io *io = evs[i].data.ptr;
        int e = 0;
        if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
            e |= AP_LOOP_READ;
        if (evs[i].events & EPOLLRDHUP)
            e |= AP_LOOP_RDHUP;
        if (evs[i].events & EPOLLOUT)
            e |= AP_LOOP_WRITE;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            e |= AP_LOOP_ERROR | AP_LOOP_READ;
        io->cb(loop, io, e);
    }
    return n;
}

/* ---------------------------------------------------------------- io_uring backend */

static struct io_uring_sqe *sqe_get(struct ap_loop *loop)
{
    struct ap__loop_uring *u = loop->uring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe && u->started) {
        /* the submission queue is full: hand it to the kernel now (rare: > ENTRIES per turn) */
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

static int arm_epoll(struct ap_loop *loop)
{
    struct ap__loop_uring *u = loop->uring;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return AP_EBUSY;
    io_uring_prep_poll_multishot(sqe, loop->epfd, POLLIN);
    io_uring_sqe_set_data(sqe, &u->epoll_op);
    u->epoll_armed = true;
    return AP_OK;
}

/* The epoll fd became readable: run the readiness callbacks without blocking. */
static void on_epoll_ready(struct ap_loop *loop, struct ap_loop_op *op, int res, unsigned flags)
{
    (void)op;
    (void)res;
    struct ap__loop_uring *u = loop->uring;
    if (!(flags & AP_LOOP_OP_MORE))
        u->epoll_armed = false;
    while (epoll_dispatch(loop, 0) == AP_LOOP_MAX_EVENTS) {
    }
    if (!u->epoll_armed)
        arm_epoll(loop);
}

static void uring_free(struct ap_loop *loop)
{
    struct ap__loop_uring *u = loop->uring;
    if (!u)
        return;
    /* closing the ring also drops the buffer ring registration and cancels what is pending */
    io_uring_queue_exit(&u->ring);
    if (u->br)
        munmap(u->br, u->br_bytes);
    if (u->bufs)
        munmap(u->bufs, u->bufs_bytes);
    free(u);
    loop->uring = NULL;
}

/* Sets up the ring (disabled: it is enabled by the loop thread, which becomes its single
 * issuer) and the provided buffers. 0 or a negative errno value. */
static int uring_init(struct ap_loop *loop)
{
    struct ap__loop_uring *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    /* DEFER_TASKRUN: completions are produced only inside our io_uring_enter, in batches, and
     * the thread is not interrupted for them while it works (needs SINGLE_ISSUER, Linux 6.1). */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
              IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
    p.cq_entries = AP_LOOP_URING_ENTRIES * 8;
    int rc = io_uring_queue_init_params(AP_LOOP_URING_ENTRIES, &u->ring, &p);
    if (rc < 0) {
        free(u);
        return rc;
    }
    loop->uring = u;
    unsigned need =
        IORING_FEAT_NODROP | IORING_FEAT_FAST_POLL | IORING_FEAT_EXT_ARG | IORING_FEAT_CQE_SKIP;
    if ((p.features & need) != need) {
        uring_free(loop);
        return -ENOSYS;
    }
    u->br_bytes = AP_LOOP_URING_BUFS * sizeof(struct io_uring_buf);
    u->bufs_bytes = (size_t)AP_LOOP_URING_BUFS * AP_LOOP_URING_BUF_SIZE;
    void *br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *bufs =
        mmap(NULL, u->bufs_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->br = br == MAP_FAILED ? NULL : br;
    u->bufs = bufs == MAP_FAILED ? NULL : bufs;
    if (!u->br || !u->bufs) {
        uring_free(loop);
        return -ENOMEM;
    }
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)u->br;
    reg.ring_entries = AP_LOOP_URING_BUFS;
    reg.bgid = 0;
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0) {
        uring_free(loop);
        return rc;
    }
    u->buf_mask = io_uring_buf_ring_mask(AP_LOOP_URING_BUFS);
    for (unsigned i = 0; i < AP_LOOP_URING_BUFS; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * AP_LOOP_URING_BUF_SIZE,
                              AP_LOOP_URING_BUF_SIZE, (unsigned short)i, u->buf_mask, (int)i);
    io_uring_buf_ring_advance(u->br, AP_LOOP_URING_BUFS);
    u->epoll_op.cb = on_epoll_ready;
    u->epoll_op.data = NULL;
    if (arm_epoll(loop) != AP_OK) {
        uring_free(loop);
        return -EBUSY;
    }
    return 0;
}

/* First run, on the loop thread: it becomes the ring's only submitter, and registers the ring
 * fd so io_uring_enter skips the fd lookup. */
static void uring_start(struct ap_loop *loop)
{
    struct ap__loop_uring *u = loop->uring;
    u->started = true;
    /* io_uring_enable_rings() is declared but not exported by liburing 2.3 (Debian 12) */
    int rc = io_uring_register(u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (rc < 0)
        ap_log_error("io_uring: cannot enable the ring: %s", strerror(-rc));
    io_uring_register_ring_fd(&u->ring); /* saves an fd lookup per call; failure is harmless */
}

static void uring_dispatch(struct ap_loop *loop, struct io_uring_cqe *cqe)
{
    struct ap_loop_op *op = io_uring_cqe_get_data(cqe);
    if (!op)
        return; /* fire-and-forget operation (cancel, close) that failed */
    unsigned flags = 0;
    if (cqe->flags & IORING_CQE_F_MORE)
        flags |= AP_LOOP_OP_MORE;
    if (cqe->flags & IORING_CQE_F_BUFFER)
        flags |= AP_LOOP_OP_BUFFER | ((cqe->flags >> IORING_CQE_BUFFER_SHIFT) << 16);
    op->cb(loop, op, cqe->res, flags);
}

static void uring_reap(struct ap_loop *loop)
{
    struct io_uring *ring = &loop->uring->ring;
    struct io_uring_cqe *cqes[CQE_BATCH];
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(ring, cqes, CQE_BATCH)) > 0) {
        for (unsigned i = 0; i < n; i++)
            uring_dispatch(loop, cqes[i]);
        io_uring_cq_advance(ring, n);
    }
}

static void uring_run_once(struct ap_loop *loop, int64_t timeout_ns)
{
    struct ap__loop_uring *u = loop->uring;
    if (!u->started)
        uring_start(loop);
    struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000,
                                   .tv_nsec = timeout_ns % 1000000000};
    struct io_uring_cqe *cqe = NULL;
    /* The one system call of an iteration: submit what the last one queued, wait for at least
     * one completion or the next timer. */
    int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY &&
        !u->enter_failed) {
        u->enter_failed = true; /* once: this runs in a loop */
        ap_log_error("io_uring_enter: %s", strerror(-rc));
    }
    loop->now_ns = ap_time_mono_ns();
    uring_reap(loop);
}

static int no_uring(const struct ap_loop *loop)
{
    return loop->uring ? AP_OK : AP_EINVAL;
}

int ap_loop_accept_multishot(struct ap_loop *loop, struct ap_loop_op *op, int fd)
{
    if (no_uring(loop))
        return AP_EINVAL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return AP_EBUSY;
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, op);
    return AP_OK;
}

int ap_loop_recv_multishot(struct ap_loop *loop, struct ap_loop_op *op, int fd)
{
    if (no_uring(loop))
        return AP_EINVAL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return AP_EBUSY;
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data(sqe, op);
    return AP_OK;
}

int ap_loop_send(struct ap_loop *loop, struct ap_loop_op *op, int fd, const void *buf, size_t len)
{
    if (no_uring(loop))
        return AP_EINVAL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return AP_EBUSY;
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, op);
    return AP_OK;
}

int ap_loop_cancel(struct ap_loop *loop, struct ap_loop_op *op)
{
    if (no_uring(loop))
        return AP_EINVAL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return AP_EBUSY;
    io_uring_prep_cancel(sqe, op, 0);
    io_uring_sqe_set_data(sqe, NULL);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    return AP_OK;
}

/* The fire-and-forget operations fall back to the system call when no SQE can be had, so a
 * connection can always be closed. */
int ap_loop_cancel_fd(struct ap_loop *loop, int fd)
{
    if (no_uring(loop))
        return AP_EINVAL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe) {
        shutdown(fd, SHUT_RDWR); /* ends the pending receive and send */
        return AP_OK;
    }
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(sqe, NULL);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    return AP_OK;
}

int ap_loop_close(struct ap_loop *loop, int fd)
{
    if (no_uring(loop))
        return AP_EINVAL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe) {
        close(fd);
        return AP_OK;
    }
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data(sqe, NULL);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    return AP_OK;
}

const char *ap_loop_buf(struct ap_loop *loop, unsigned bid)
{
    return loop->uring->bufs + (size_t)(bid % AP_LOOP_URING_BUFS) * AP_LOOP_URING_BUF_SIZE;
}

void ap_loop_buf_recycle(struct ap_loop *loop, unsigned bid)
{
    struct ap__loop_uring *u = loop->uring;
    bid %= AP_LOOP_URING_BUFS;
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * AP_LOOP_URING_BUF_SIZE,
                          AP_LOOP_URING_BUF_SIZE, (unsigned short)bid, u->buf_mask, 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* ---------------------------------------------------------------- init */

int ap_loop_init(struct ap_loop *loop, ap_loop_wake_cb wake_cb, void *wake_data)
{
    return ap_loop_init_backend(loop, AP_LOOP_AUTO, wake_cb, wake_data);
}

int ap_loop_init_backend(struct ap_loop *loop, enum ap_loop_backend backend,
                         ap_loop_wake_cb wake_cb, void *wake_data)
{
    static atomic_bool warned;
    loop->uring = NULL;
    loop->backend = AP_LOOP_EPOLL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return ap_error_from_errno(errno);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0) {
        int rc = ap_error_from_errno(errno);
        close(loop->epfd);
        return rc;
    }
    loop->wake_cb = wake_cb;
    loop->wake_data = wake_data;
    loop->heap = NULL;
    loop->nheap = loop->heap_cap = 0;
    atomic_init(&loop->stop, false);
    loop->now_ns = ap_time_mono_ns();
    loop->wake_io.fd = loop->wakefd;
    loop->wake_io.cb = wake_read;
    loop->wake_io.data = NULL;
    int rc = ap_loop_add(loop, &loop->wake_io, AP_LOOP_READ);
    if (rc) {
        close(loop->wakefd);
        close(loop->epfd);
        return rc;
    }
    if (backend != AP_LOOP_EPOLL) {
        int err = uring_init(loop);
        if (err == 0) {
            loop->backend = AP_LOOP_URING;
        } else if (!atomic_exchange(&warned, true)) {
            ap_log_warn("io_uring unavailable (%s; needs Linux >= 6.1 and io_uring allowed): "
                        "falling back to epoll",
                        strerror(-err));
        }
    }
    return AP_OK;
}

void ap_loop_destroy(struct ap_loop *loop)
{
    uring_free(loop);
    close(loop->wakefd);
    close(loop->epfd);
    free(loop->heap);
    loop->heap = NULL;
}

/* ---- timers: a binary min-heap on due_ns ---- */

static void heap_swap(struct ap_loop *loop, int i, int j)
{
    struct ap_loop_timer *t = loop->heap[i];
    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
    loop->heap[i]->heap_index = i;
    loop->heap[j]->heap_index = j;
}

static void heap_up(struct ap_loop *loop, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (loop->heap[p]->due_ns <= loop->heap[i]->due_ns)
            break;
        heap_swap(loop, i, p);
        i = p;
    }
}

static void heap_down(struct ap_loop *loop, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nheap && loop->heap[l]->due_ns < loop->heap[m]->due_ns)
            m = l;
        if (r < loop->nheap && loop->heap[r]->due_ns < loop->heap[m]->due_ns)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

void ap_loop_timer_stop(struct ap_loop *loop, struct ap_loop_timer *t)
{
    int i = t->heap_index;
    if (i < 0)
        return;
    loop->nheap--;
    if (i != loop->nheap) {
        loop->heap[i] = loop->heap[loop->nheap];
        loop->heap[i]->heap_index = i;
        heap_down(loop, i);
        heap_up(loop, i);
    }
    t->heap_index = -1;
}

int ap_loop_timer_start(struct ap_loop *loop, struct ap_loop_timer *t, uint64_t ms)
{
    ap_loop_timer_stop(loop, t);
    if (loop->nheap == loop->heap_cap) {
        if (loop->heap_cap >= AP_LOOP_MAX_TIMERS)
            return AP_ELIMIT;
        int cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct ap_loop_timer **h = realloc(loop->heap, (size_t)cap * sizeof(*h));
        if (!h)
            return AP_ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->due_ns = ap_time_mono_ns() + ms * AP_NS_PER_MS;
    t->heap_index = loop->nheap;
    loop->heap[loop->nheap++] = t;
    heap_up(loop, t->heap_index);
    return AP_OK;
}

/* How long the next wait may last: until the first timer is due (read against the clock now,
 * not the loop's cached time, which is as old as the callbacks that just ran), at most max_ms. */
static int64_t next_timeout_ns(struct ap_loop *loop, int max_ms)
{
    int64_t max_ns = (int64_t)max_ms * AP_NS_PER_MS;
    if (loop->nheap == 0)
        return max_ns;
    uint64_t due = loop->heap[0]->due_ns, now = ap_time_mono_ns();
    if (due <= now)
        return 0;
    return due - now > (uint64_t)max_ns ? max_ns : (int64_t)(due - now);
}

static void run_timers(struct ap_loop *loop)
{
    while (loop->nheap > 0 && loop->heap[0]->due_ns <= loop->now_ns) {
        struct ap_loop_timer *t = loop->heap[0];
        ap_loop_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

void ap_loop_run_once(struct ap_loop *loop, int max_wait_ms)
{
    int64_t timeout = next_timeout_ns(loop, max_wait_ms < 0 ? 0 : max_wait_ms);
    if (loop->uring)
        uring_run_once(loop, timeout);
    else
        epoll_dispatch(loop, timeout);
    run_timers(loop);
}

void ap_loop_run(struct ap_loop *loop)
{
    while (!atomic_load_explicit(&loop->stop, memory_order_relaxed))
        ap_loop_run_once(loop, 1000);
}

void ap_loop_stop(struct ap_loop *loop)
{
    atomic_store(&loop->stop, true);
}

void ap_loop_wake(struct ap_loop *loop)
{
    uint64_t one = 1;
    ssize_t w = write(loop->wakefd, &one, sizeof(one));
    (void)w;
}
