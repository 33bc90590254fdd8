/*
 * ap_thread: helpers for the process's own threads.
 *
 * Background threads (snapshot builder, delivery pacer, aggregator, key and partner loaders)
 * share cores with the data-plane workers. They lower their own scheduling priority so that a
 * worker woken by a request preempts them at once instead of waiting out their time slice: a
 * 30 ms state save must not become 30 ms of request latency. The event-log writer is not one
 * of them (beacons wait for its sync).
 *
 * No memory is owned here.
 */
#ifndef AP_THREAD_H
#define AP_THREAD_H

#define AP_THREAD_BACKGROUND_NICE 10 /* CFS weight 110 against a worker's 1024 */

/* Lowers the calling thread's priority to AP_THREAD_BACKGROUND_NICE (Linux nice is per
 * thread). Best effort: failures are ignored. */
void ap_thread_background(void);

#endif
