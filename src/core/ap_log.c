#include "ap_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ap_error.h"

_Atomic int ap_log_min_level = AP_LOG_INFO;

static _Thread_local char thread_name[16] = "main";

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

const char *ap_log_level_name(int level)
{
    if (level < 0 || level > AP_LOG_OFF)
        return "unknown";
    return level_names[level];
}

int ap_log_set_level_name(const char *name)
{
    for (int i = 0; i <= AP_LOG_OFF; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            atomic_store(&ap_log_min_level, i);
            return AP_OK;
        }
    }
    return AP_EINVAL;
}

void ap_log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
    char os_name[16]; /* the kernel keeps 15 bytes: what top -H and perf show */
    snprintf(os_name, sizeof(os_name), "%s", name);
    pthread_setname_np(pthread_self(), os_name);
}

size_t ap_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc = 0;
        switch (c) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        default:
            break;
        }
        if (esc) {
            if (o + 2 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = esc;
        } else if (c < 0x20) {
            if (o + 6 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            if (o + 1 >= cap)
                break;
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

static size_t format_prefix(char *line, size_t cap, int level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, cap,
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                     "\"thread\":\"%s\",\"msg\":\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, ap_log_level_name(level), thread_name);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static void emit(char *line, size_t n)
{
    ssize_t w;
    size_t off = 0;
    while (off < n && (w = write(STDERR_FILENO, line + off, n - off)) > 0)
        off += (size_t)w;
}

void ap_log_write(int level, const char *fmt, ...)
{
    char msg[2048];
    char line[4608];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t mlen = (size_t)m >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)m;
    size_t n = format_prefix(line, sizeof(line), level);
    n += ap_json_escape(line + n, sizeof(line) - n - 4, msg, mlen);
    memcpy(line + n, "\"}\n", 3);
    emit(line, n + 3);
}

void ap_log_write_json(int level, const char *msg, const char *members)
{
    char line[4608];
    size_t n = format_prefix(line, sizeof(line), level);
    n += ap_json_escape(line + n, sizeof(line) - n - 8, msg, strlen(msg));
    size_t ml = strlen(members);
    if (ml && n + ml + 6 < sizeof(line)) {
        memcpy(line + n, "\",", 2);
        n += 2;
        memcpy(line + n, members, ml);
        n += ml;
        memcpy(line + n, "}\n", 2);
        n += 2;
    } else {
        memcpy(line + n, "\"}\n", 3);
        n += 3;
    }
    emit(line, n);
}
