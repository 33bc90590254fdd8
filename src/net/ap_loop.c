#include "ap_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_time.h"

static void wake_read(struct ap_loop *loop, struct ap_loop_io *io, int events)
{
    (void)events;
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
    if (loop->wake_cb)
        loop->wake_cb(loop, loop->wake_data);
}

int ap_loop_init(struct ap_loop *loop, ap_loop_wake_cb wake_cb, void *wake_data)
{
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
    }
    return rc;
}

void ap_loop_destroy(struct ap_loop *loop)
{
    close(loop->wakefd);
    close(loop->epfd);
    free(loop->heap);
    loop->heap = NULL;
}

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

static int next_timeout_ms(struct ap_loop *loop)
{
    if (loop->nheap == 0)
        return 1000;
    uint64_t due = loop->heap[0]->due_ns;
    if (due <= loop->now_ns)
        return 0;
    uint64_t ms = (due - loop->now_ns + AP_NS_PER_MS - 1) / AP_NS_PER_MS;
    return ms > 1000 ? 1000 : (int)ms;
}

static void run_timers(struct ap_loop *loop)
{
    while (loop->nheap > 0 && loop->heap[0]->due_ns <= loop->now_ns) {
        struct ap_loop_timer *t = loop->heap[0];
        ap_loop_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

void ap_loop_run(struct ap_loop *loop)
{
    struct epoll_event evs[AP_LOOP_MAX_EVENTS];
    while (!atomic_load_explicit(&loop->stop, memory_order_relaxed)) {
        int n = epoll_wait(loop->epfd, evs, AP_LOOP_MAX_EVENTS, next_timeout_ms(loop));
        loop->now_ns = ap_time_mono_ns();
        for (int i = 0; i < n; i++) {
            struct ap_loop_io *io = evs[i].data.ptr;
            int e = 0;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
                e |= AP_LOOP_READ;
            if (evs[i].events & EPOLLOUT)
                e |= AP_LOOP_WRITE;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                e |= AP_LOOP_ERROR | AP_LOOP_READ;
            io->cb(loop, io, e);
        }
        run_timers(loop);
    }
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
