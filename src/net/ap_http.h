/*
 * ap_http: the HTTP/1.1 request parser (RFC 9112), incremental and zero-copy.
 *
 * The caller owns a mutable buffer holding the bytes received so far on a connection; the
 * request being parsed starts at buf[0]. ap_http_parse() is called again each time more bytes
 * have been appended (the buffer may have moved: the parser keeps only offsets between calls).
 * When a request is complete, the spans in struct ap_http_req point into that buffer and stay
 * valid until the caller discards or moves those bytes. Chunked bodies are decoded in place
 * (the buffer is rewritten within the request's own bytes), so req->body is always one span.
 *
 * Nothing here allocates or blocks; one parser belongs to one connection, on one thread.
 */
#ifndef AP_HTTP_H
#define AP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/ap_span.h"

/* Hard upper bounds (compile time); the run-time limits below may only be lower. */
#define AP_HTTP_MAX_HEADERS 128

/* Default run-time limits. */
#define AP_HTTP_DEFAULT_MAX_HEADER_BYTES (16 * 1024) /* request line + headers (431 past it) */
#define AP_HTTP_DEFAULT_MAX_URI 8192                 /* request-target (414 past it) */
#define AP_HTTP_DEFAULT_MAX_BODY (1024 * 1024)       /* decoded body (413 past it) */
#define AP_HTTP_DEFAULT_MAX_HEADER_COUNT 64          /* header fields (431 past it) */

/* Returned by ap_http_parse() once per request when the header section is complete but the
 * body is not yet: the caller may answer "Expect: 100-continue" then. */
#define AP_HTTP_HEAD_DONE 1

enum ap_http_method {
    AP_HTTP_OTHER = 0, /* a valid token we do not know (the router answers 501/405) */
    AP_HTTP_GET,
    AP_HTTP_HEAD,
    AP_HTTP_POST,
    AP_HTTP_PUT,
    AP_HTTP_PATCH,
    AP_HTTP_DELETE,
    AP_HTTP_OPTIONS,
    AP_HTTP_METHOD_COUNT
};

struct ap_http_limits {
    size_t max_header_bytes;
    size_t max_uri;
    size_t max_body;
    unsigned max_header_count; /* <= AP_HTTP_MAX_HEADERS */
};

struct ap_http_header {
    struct ap_span name;  /* as received (case preserved) */
    struct ap_span value; /* leading/trailing OWS removed */
};

struct ap_http_req {
    enum ap_http_method method;
    struct ap_span method_name;
    struct ap_span target; /* request-target as received */
    struct ap_span path;   /* target up to '?' (or '#') */
    struct ap_span query;  /* after '?', without it; empty if none */
    int minor_version;     /* 0 or 1 (HTTP/1.x) */
    unsigned nheaders;
    struct ap_http_header headers[AP_HTTP_MAX_HEADERS];
    unsigned ntrailers; /* trailer fields of a chunked body are appended after the headers:
                           headers[nheaders .. nheaders+ntrailers) */
    struct ap_span host;
    struct ap_span content_type;
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool keep_alive;      /* from version and Connection */
    bool expect_continue; /* Expect: 100-continue */
    struct ap_span body;  /* decoded body (chunked decoded in place); empty if none */
    size_t consumed;      /* bytes of the buffer this request used, body included */
};

/*
 * Resumable parser state, one per connection. Treat as opaque except for limits (set by
 * ap_http_parser_init) and status/error (valid after AP_EHTTP). Between calls it holds only
 * offsets into the buffer, never pointers, so the caller may move or realloc the buffer.
 */
struct ap_http_parser {
    struct ap_http_limits limits;
    int state;              /* where the state machine stopped (enum in ap_http_parse.c) */
    size_t scan;            /* every byte before this offset has been examined */
    size_t line_start;      /* offset of the line being parsed (field, chunk-size, trailer) */
    size_t head_len;        /* length of request line + headers + final CRLF, once known */
    size_t body_out;        /* chunked: decoded bytes written so far (at head_len) */
    uint64_t chunk_left;    /* chunked: size being read, then bytes left in the chunk */
    unsigned chunk_digits;  /* chunked: hex digits of the chunk-size read so far */
    size_t trailer_start;   /* chunked: offset of the trailer section */
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool head_done_reported;
    unsigned nheaders;
    unsigned ntrailers;
    /* name off/len, value off/len of each field, relative to the start of its section (0 for
     * headers, trailer_start for trailers); a section is at most max_header_bytes long. */
    uint32_t off[AP_HTTP_MAX_HEADERS][4];
    uint32_t line_off[4]; /* method off/len, request-target off/len */
    unsigned host_index;  /* index + 1 of the Host field, 0 if none */
    unsigned ctype_index; /* index + 1 of the first Content-Type field, 0 if none */
    int minor_version;
    unsigned flags;
    /* Set when ap_http_parse() returns AP_EHTTP: */
    int status;        /* the HTTP status to answer: 400, 413, 414, 431, 501, 505 */
    const char *error; /* static text naming the problem */
};

/* Limits with the defaults above. */
void ap_http_limits_default(struct ap_http_limits *lim);

/* Prepares p for a new request (call again after each complete request). */
void ap_http_parser_init(struct ap_http_parser *p, const struct ap_http_limits *lim);

/*
 * Parses buf[0..len). Returns:
 *   AP_OK             the request is complete; *req is filled, req->consumed says how many
 *                     bytes it took (following bytes belong to the next, pipelined, request).
 *   AP_EAGAIN         more bytes are needed.
 *   AP_HTTP_HEAD_DONE the header section is complete and a body is still to come; returned
 *                     once per request; *req has everything but the body. Call again.
 *   AP_EHTTP          the request is invalid: p->status and p->error say why; the caller
 *                     answers that status and closes the connection. Later calls return
 *                     AP_EHTTP again.
 *   AP_EINVAL         caller error: len is smaller than on the previous call.
 * buf is modified in place only within the current request's body (chunked decoding).
 * Limits: the request line and header section together at most max_header_bytes (431; a
 * request-target over max_uri is 414 as soon as it is seen); at most max_header_count fields,
 * trailers included (431); decoded body at most max_body (413). A chunked body's trailer
 * section may also be at most max_header_bytes (431); its chunk-size lines at most 4 KiB (400)
 * and their framing bytes at most max_body + 64 KiB in total (413), since the raw request stays
 * in the buffer until it is complete. req spans for absent values (query, host, content_type)
 * are {NULL, 0}; req->body points at buf + head length even when empty; req->consumed is set
 * on AP_OK only (0 otherwise).
 */
int ap_http_parse(struct ap_http_parser *p, char *buf, size_t len, struct ap_http_req *req);

/* Finds a header by name (ASCII case-insensitive); the first one, or NULL. Searches the header
 * section only: trailer fields are never returned (they must not stand in for headers). */
const struct ap_http_header *ap_http_find_header(const struct ap_http_req *req, const char *name);

/* Name of a method ("GET", ...). */
const char *ap_http_method_name(enum ap_http_method m);

/* Reason phrase for a status code ("OK", "Not Found", ...; "Unknown" otherwise). */
const char *ap_http_reason(int status);

#endif
