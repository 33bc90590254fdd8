/*
 * ap_buf: a growable byte buffer with a hard cap set at creation.
 *
 * The buffer owns its memory (malloc). Appends that would grow it past cap fail with
 * AP_ELIMIT and leave it unchanged; allocation failure gives AP_ENOMEM. Not thread-safe.
 */
#ifndef AP_BUF_H
#define AP_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ap_span.h"

struct ap_buf {
    char *data;
    size_t len;
    size_t size; /* allocated */
    size_t cap;  /* hard limit for size */
};

void ap_buf_init(struct ap_buf *b, size_t cap);
void ap_buf_free(struct ap_buf *b);

/* Makes room for at least n more bytes. 0, AP_ELIMIT or AP_ENOMEM. */
int ap_buf_reserve(struct ap_buf *b, size_t n);

int ap_buf_append(struct ap_buf *b, const void *p, size_t n);
int ap_buf_append_str(struct ap_buf *b, const char *s);
int ap_buf_append_span(struct ap_buf *b, struct ap_span s);
int ap_buf_append_u64(struct ap_buf *b, uint64_t v);
int ap_buf_append_i64(struct ap_buf *b, int64_t v);
int ap_buf_printf(struct ap_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ap_buf_vprintf(struct ap_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Drops the first n bytes (memmove of the rest). */
void ap_buf_consume(struct ap_buf *b, size_t n);

/* Writes the decimal form of v into out (at least 21 bytes); returns its length. */
size_t ap_u64_to_dec(uint64_t v, char *out);

#endif
