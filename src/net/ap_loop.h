/*
 * ap_loop: a per-thread event loop over epoll (edge-triggered), with timers and a cross-thread
 * wake-up.
 *
 * One loop belongs to one thread: every function except ap_loop_wake() must be called on the
 * loop's own thread. The caller owns each struct ap_loop_io and struct ap_loop_timer it
 * registers and must keep it alive until it is removed. Nothing here allocates after
 * ap_loop_init() except the timer heap growing (capped at AP_LOOP_MAX_TIMERS).
 */
#ifndef AP_LOOP_H
#define AP_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define AP_LOOP_MAX_EVENTS 256
#define AP_LOOP_MAX_TIMERS 65536

enum { AP_LOOP_READ = 1, AP_LOOP_WRITE = 2, AP_LOOP_ERROR = 4 };

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

typedef void (*ap_loop_wake_cb)(struct ap_loop *loop, void *data);

struct ap_loop {
    int epfd;
    int wakefd; /* eventfd */
    struct ap_loop_io wake_io;
    ap_loop_wake_cb wake_cb;
    void *wake_data;
    struct ap_loop_timer **heap;
    int nheap, heap_cap;
    atomic_bool stop;
    uint64_t now_ns; /* cached at each iteration */
};

/* 0 or a negative AP_E* code. wake_cb runs on the loop thread after ap_loop_wake(). */
int ap_loop_init(struct ap_loop *loop, ap_loop_wake_cb wake_cb, void *wake_data);
void ap_loop_destroy(struct ap_loop *loop);

/* Registers io->fd for events (AP_LOOP_READ|AP_LOOP_WRITE), edge-triggered. */
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

/* Runs until ap_loop_stop(). */
void ap_loop_run(struct ap_loop *loop);
void ap_loop_stop(struct ap_loop *loop); /* loop thread only; others use wake + a flag */

/* Any thread: makes the loop call its wake_cb soon. Async-signal-safe. */
void ap_loop_wake(struct ap_loop *loop);

#endif
