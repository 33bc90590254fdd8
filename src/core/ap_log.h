/*
 * ap_log: structured logging as JSON lines on stderr.
 *
 * ap_log(level, event, fmt, ...) tests the level before evaluating its arguments, so a
 * disabled DEBUG line costs one load and compare. Each line is
 *   {"ts":"2026-11-23T08:00:00.123Z","level":"info","thread":"worker-0","msg":"..."}
 * and lines are written with one write(2) so threads never interleave. Any thread may log.
 */
#ifndef AP_LOG_H
#define AP_LOG_H

#include <stdatomic.h>
#include <stddef.h>

enum ap_log_level { AP_LOG_DEBUG = 0, AP_LOG_INFO, AP_LOG_WARN, AP_LOG_ERROR, AP_LOG_OFF };

extern _Atomic int ap_log_min_level;

#define ap_log_enabled(level)                                                                      \
    ((int)(level) >= atomic_load_explicit(&ap_log_min_level, memory_order_relaxed))

#define ap_log(level, ...)                                                                         \
    do {                                                                                           \
        if (ap_log_enabled(level))                                                                 \
            ap_log_write((level), __VA_ARGS__);                                                    \
    } while (0)

#define ap_log_debug(...) ap_log(AP_LOG_DEBUG, __VA_ARGS__)
#define ap_log_info(...) ap_log(AP_LOG_INFO, __VA_ARGS__)
#define ap_log_warn(...) ap_log(AP_LOG_WARN, __VA_ARGS__)
#define ap_log_error(...) ap_log(AP_LOG_ERROR, __VA_ARGS__)

/* Formats msg (printf style, JSON-escaped) and writes one line. Use the macros instead. */
void ap_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes a line with extra pre-formatted JSON members (e.g. "\"status\":200,\"path\":\"/x\""),
 * used by the access log. members must be valid JSON object members, without braces. */
void ap_log_write_json(int level, const char *msg, const char *members);

/* Sets the minimum level. Returns 0 or AP_EINVAL for an unknown name. */
int ap_log_set_level_name(const char *name);
const char *ap_log_level_name(int level);

/* Names the calling thread in its log lines (copied, at most 15 chars). */
void ap_log_set_thread_name(const char *name);

/* Appends s JSON-escaped (without quotes) to out, at most cap-1 bytes; returns bytes written. */
size_t ap_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
