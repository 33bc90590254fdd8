/*
 * ap_span: a non-owning view {p, len} into memory someone else owns (usually a connection's
 * read buffer, so valid only for the request's lifetime). Header-only, allocation-free.
 */
#ifndef AP_SPAN_H
#define AP_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct ap_span {
    const char *p;
    size_t len;
};

#define AP_SPAN_LIT(s) ((struct ap_span){(s), sizeof(s) - 1})
#define AP_SPAN_NULL ((struct ap_span){NULL, 0})
#define AP_SPAN_FMT(s) (int)(s).len, (s).p /* for printf("%.*s") */

static inline struct ap_span ap_span_make(const char *p, size_t len)
{
    return (struct ap_span){p, len};
}

static inline struct ap_span ap_span_cstr(const char *s)
{
    return (struct ap_span){s, s ? strlen(s) : 0};
}

static inline bool ap_span_eq(struct ap_span a, struct ap_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline bool ap_span_eq_cstr(struct ap_span a, const char *s)
{
    return ap_span_eq(a, ap_span_cstr(s));
}

static inline char ap__ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* ASCII case-insensitive comparison. */
static inline bool ap_span_eq_nocase(struct ap_span a, const char *s)
{
    size_t n = strlen(s);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ap__ascii_lower(a.p[i]) != ap__ascii_lower(s[i]))
            return false;
    return true;
}

static inline bool ap_span_starts_with(struct ap_span a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.len >= n && memcmp(a.p, prefix, n) == 0;
}

/* Parses a non-negative decimal integer filling the whole span; false on any other input or
 * overflow past max. */
static inline bool ap_span_to_u64(struct ap_span a, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (a.len == 0 || a.len > 20)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        unsigned d = (unsigned)(unsigned char)a.p[i] - '0';
        if (d > 9)
            return false;
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

#endif
