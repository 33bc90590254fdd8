/*
 * ap_time: clocks. Monotonic nanoseconds for timeouts and latency, wall-clock for dates.
 * ap_http_date() formats an IMF-fixdate into a caller's 30-byte buffer. All thread-safe.
 */
#ifndef AP_TIME_H
#define AP_TIME_H

#include <stdint.h>
#include <time.h>

#define AP_NS_PER_MS 1000000ull
#define AP_NS_PER_SEC 1000000000ull

static inline uint64_t ap_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * AP_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ap_time_mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * AP_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline int64_t ap_time_unix(void)
{
    return (int64_t)time(NULL);
}

/* Writes "Sun, 06 Nov 1994 08:49:37 GMT" (29 chars + NUL) for t into out[30]. */
void ap_http_date(time_t t, char out[30]);

#endif
