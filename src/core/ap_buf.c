#include "ap_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap_error.h"

void ap_buf_init(struct ap_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->size = 0;
    b->cap = cap;
}

void ap_buf_free(struct ap_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->size = 0;
}

int ap_buf_reserve(struct ap_buf *b, size_t n)
{
    if (b->size - b->len >= n)
        return AP_OK;
    if (n > b->cap || b->len > b->cap - n)
        return AP_ELIMIT;
    size_t want = b->len + n;
    size_t size = b->size ? b->size : 256;
    while (size < want)
        size = size > b->cap / 2 ? b->cap : size * 2;
    if (size > b->cap)
        size = b->cap;
    char *p = realloc(b->data, size);
    if (!p)
        return AP_ENOMEM;
    b->data = p;
    b->size = size;
    return AP_OK;
}

int ap_buf_append(struct ap_buf *b, const void *p, size_t n)
{
    int rc = ap_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return AP_OK;
}

int ap_buf_append_str(struct ap_buf *b, const char *s)
{
    return ap_buf_append(b, s, strlen(s));
}

int ap_buf_append_span(struct ap_buf *b, struct ap_span s)
{
    return ap_buf_append(b, s.p, s.len);
}

size_t ap_u64_to_dec(uint64_t v, char *out)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

int ap_buf_append_u64(struct ap_buf *b, uint64_t v)
{
    char tmp[21];
    size_t n = ap_u64_to_dec(v, tmp);
    return ap_buf_append(b, tmp, n);
}

int ap_buf_append_i64(struct ap_buf *b, int64_t v)
{
    if (v < 0) {
        int rc = ap_buf_append(b, "-", 1);
        if (rc)
            return rc;
        return ap_buf_append_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return ap_buf_append_u64(b, (uint64_t)v);
}

int ap_buf_vprintf(struct ap_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return AP_EINVAL;
    int rc = ap_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return AP_OK;
}

int ap_buf_printf(struct ap_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ap_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void ap_buf_consume(struct ap_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
