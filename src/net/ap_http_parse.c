/*
 * ap_http_parse: the HTTP/1.1 request parser (RFC 9112), see ap_http.h.
 *
 * One resumable state machine over the bytes received so far. Between calls the parser keeps
 * offsets only, so the caller may realloc the buffer. Each byte is examined once: the request
 * line and the chunked framing byte by byte (so a bad byte or an over-long target is caught as
 * soon as it arrives), header and trailer lines found with memchr and validated once complete.
 * Feeding one byte at a time therefore costs O(n) in total.
 *
 * Request smuggling: everything ambiguous is rejected rather than guessed (bare CR or LF,
 * obs-fold, whitespace before the colon, duplicate or list-valued Content-Length, Content-Length
 * with Transfer-Encoding, Transfer-Encoding in HTTP/1.0, chunked applied twice, lax chunk sizes).
 */
#include "ap_http.h"

#include <string.h>

#include "../core/ap_error.h"

/* A chunk-size line (size, extensions) longer than this is refused (400). */
#define AP_HTTP_MAX_CHUNK_LINE 4096
/* The chunk framing (size lines and CRLFs) may add at most max_body + this many raw bytes to
 * a body: the whole raw request sits in the connection's buffer until it is complete. */
#define AP_HTTP_MAX_CHUNK_FRAMING (64 * 1024)

enum {
    S_RL_START = 0, /* before the request line: optional empty lines (RFC 9112 §2.2) */
    S_RL_START_LF,  /* CR of such an empty line seen */
    S_RL_METHOD,
    S_RL_TARGET,
    S_RL_VERSION,
    S_RL_LF, /* CR after the version seen */
    S_HEADERS,
    S_BODY_CL,
    S_CHUNK_SIZE,
    S_CHUNK_SIZE_WS, /* BWS between chunk-size and ';' */
    S_CHUNK_EXT,
    S_CHUNK_SIZE_LF,
    S_CHUNK_DATA,
    S_CHUNK_DATA_CR,
    S_CHUNK_DATA_LF,
    S_TRAILERS,
    S_DONE,
    S_ERROR
};

/* p->flags */
enum {
    F_CL = 1u << 0,         /* Content-Length seen */
    F_TE = 1u << 1,         /* Transfer-Encoding seen */
    F_TE_CHUNKED = 1u << 2, /* "chunked" is in the list */
    F_TE_LAST = 1u << 3,    /* ... and is the last coding so far */
    F_TE_OTHER = 1u << 4,   /* another coding (or parameters) is in the list */
    F_CONN_CLOSE = 1u << 5, /* Connection: close */
    F_CONN_KEEP = 1u << 6,  /* Connection: keep-alive */
    F_EXPECT_100 = 1u << 7, /* Expect: 100-continue */
};

/* Character classes. */
enum {
    C_TCHAR = 0x01,  /* token character (RFC 9110 §5.6.2) */
    C_FIELD = 0x02,  /* field-value character: HTAB, SP, VCHAR, obs-text */
    C_TARGET = 0x04, /* request-target character: VCHAR */
    C_HEX = 0x08,    /* HEXDIG */
    C_HOST = 0x10,   /* uri-host and port (RFC 3986 reg-name, IP-literal): no space, '/', '@' */
};

static const unsigned char cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x17, 0x06, 0x07, 0x17, 0x17, 0x17, 0x17, 0x16, 0x16, 0x17, 0x17, 0x16, 0x17, 0x17, 0x06,
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x16, 0x16, 0x06, 0x16, 0x06, 0x06,
    0x06, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
    0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x16, 0x06, 0x16, 0x07, 0x17,
    0x07, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17,
    0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x06, 0x07, 0x06, 0x17, 0x00,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
};

static const char *const method_names[AP_HTTP_METHOD_COUNT] = {
    [AP_HTTP_OTHER] = "OTHER",   [AP_HTTP_GET] = "GET",         [AP_HTTP_HEAD] = "HEAD",
    [AP_HTTP_POST] = "POST",     [AP_HTTP_PUT] = "PUT",         [AP_HTTP_PATCH] = "PATCH",
    [AP_HTTP_DELETE] = "DELETE", [AP_HTTP_OPTIONS] = "OPTIONS",
};

static int fail(struct ap_http_parser *p, int status, const char *msg)
{
    p->state = S_ERROR;
    p->status = status;
    p->error = msg;
    return AP_EHTTP;
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned hex_value(unsigned char c)
{
    if (c <= '9')
        return c - '0';
    return (c | 0x20u) - 'a' + 10;
}

/* ASCII case-insensitive comparison of u[0..n) with the lower-case literal s. */
static bool eq_nocase(const unsigned char *u, size_t n, const char *s)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] == '\0' || (char)((u[i] >= 'A' && u[i] <= 'Z') ? u[i] | 0x20 : u[i]) != s[i])
            return false;
    return s[i] == '\0';
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

void ap_http_limits_default(struct ap_http_limits *lim)
{
    lim->max_header_bytes = AP_HTTP_DEFAULT_MAX_HEADER_BYTES;
    lim->max_uri = AP_HTTP_DEFAULT_MAX_URI;
    lim->max_body = AP_HTTP_DEFAULT_MAX_BODY;
    lim->max_header_count = AP_HTTP_DEFAULT_MAX_HEADER_COUNT;
}

void ap_http_parser_init(struct ap_http_parser *p, const struct ap_http_limits *lim)
{
    memset(p, 0, sizeof(*p));
    if (lim)
        p->limits = *lim;
    else
        ap_http_limits_default(&p->limits);
    if (p->limits.max_header_count > AP_HTTP_MAX_HEADERS)
        p->limits.max_header_count = AP_HTTP_MAX_HEADERS;
    /* Offsets within a section are kept as uint32_t. */
    if (p->limits.max_header_bytes > UINT32_MAX)
        p->limits.max_header_bytes = UINT32_MAX;
    p->state = S_RL_START;
    p->content_length = -1;
}

/* ---- request line ---------------------------------------------------------------------- */

static enum ap_http_method method_lookup(const unsigned char *m, size_t n)
{
    for (int i = AP_HTTP_GET; i < AP_HTTP_METHOD_COUNT; i++)
        if (strlen(method_names[i]) == n && memcmp(method_names[i], m, n) == 0)
            return (enum ap_http_method)i;
    return AP_HTTP_OTHER;
}

/* Checks the form of the complete request-target (RFC 9112 §3.2). */
static bool target_form_ok(const unsigned char *t, size_t n, enum ap_http_method m)
{
    if (t[0] == '/')
        return true; /* origin-form */
    if (n == 1 && t[0] == '*')
        return m == AP_HTTP_OPTIONS; /* asterisk-form */
    /* absolute-form (and the authority-form of CONNECT, which looks alike): scheme ":" ... */
    if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
        return false;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = t[i];
        if (c == ':')
            return i + 1 < n;
        if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.'))
            return false;
    }
    return false;
}

/* The CRLF ending the request line is at u[end - 2 .. end). */
static int finish_request_line(struct ap_http_parser *p, const unsigned char *u, size_t end)
{
    const unsigned char *v = u + end - 10; /* "HTTP/x.y\r\n", already checked for shape */
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(p, 505, "unsupported HTTP version");
    p->minor_version = v[7] - '0';
    enum ap_http_method m = method_lookup(u + p->line_off[0], p->line_off[1]);
    if (!target_form_ok(u + p->line_off[2], p->line_off[3], m))
        return fail(p, 400, "invalid request-target");
    p->state = S_HEADERS;
    p->line_start = end;
    p->scan = end;
    return AP_OK;
}

/*
 * Advances through the request line, byte by byte, up to u[len - 1] (len is already capped at
 * max_header_bytes). Returns AP_OK once the line is complete, AP_EAGAIN, or AP_EHTTP.
 */
static int parse_request_line(struct ap_http_parser *p, const unsigned char *u, size_t len)
{
    size_t i = p->scan;
    int rc = AP_EAGAIN;

    while (i < len) {
        unsigned char c = u[i];
        switch (p->state) {
        case S_RL_START:
            if (c == '\r') {
                p->state = S_RL_START_LF;
                i++;
                break;
            }
            if (!(cls[c] & C_TCHAR))
                return fail(p, 400, c == '\n' ? "bare LF" : "invalid method");
            p->line_off[0] = (uint32_t)i;
            p->state = S_RL_METHOD;
            i++;
            break;
        case S_RL_START_LF:
            if (c != '\n')
                return fail(p, 400, "bare CR");
            p->state = S_RL_START;
            i++;
            break;
        case S_RL_METHOD:
            while (i < len && (cls[u[i]] & C_TCHAR))
                i++;
            if (i == len)
                break;
            if (u[i] != ' ')
                return fail(p, 400, u[i] == '\n' ? "bare LF" : "invalid method");
            p->line_off[1] = (uint32_t)(i - p->line_off[0]);
            p->line_off[2] = (uint32_t)(i + 1);
            p->state = S_RL_TARGET;
            i++;
            break;
        case S_RL_TARGET: {
            size_t start = p->line_off[2];
            /* Stop one byte past max_uri: 414 as soon as the target is too long. */
            size_t stop = p->limits.max_uri < len - start ? start + p->limits.max_uri + 1 : len;
            while (i < stop && (cls[u[i]] & C_TARGET))
                i++;
            if (i - start > p->limits.max_uri)
                return fail(p, 414, "request-target too long");
            if (i == len)
                break;
            if (u[i] == '\n')
                return fail(p, 400, "bare LF");
            if (u[i] == '\r')
                return fail(p, 400, "missing HTTP version");
            if (u[i] != ' ' || i == start)
                return fail(p, 400, "invalid request-target");
            p->line_off[3] = (uint32_t)(i - start);
            p->state = S_RL_VERSION;
            i++;
            break;
        }
        case S_RL_VERSION: {
            /* "HTTP/" DIGIT "." DIGIT CR, checked byte by byte. */
            size_t k = i - (p->line_off[2] + p->line_off[3] + 1);
            bool ok;
            if (k < 5)
                ok = c == (unsigned char)"HTTP/"[k];
            else if (k == 5 || k == 7)
                ok = c >= '0' && c <= '9';
            else if (k == 6)
                ok = c == '.';
            else
                ok = c == '\r';
            if (!ok)
                return fail(p, 400, c == '\n' ? "bare LF" : "invalid HTTP version");
            if (k == 8)
                p->state = S_RL_LF;
            i++;
            break;
        }
        case S_RL_LF:
            if (c != '\n')
                return fail(p, 400, "bare CR");
            i++;
            p->scan = i;
            return finish_request_line(p, u, i);
        default:
            return fail(p, 400, "internal parser state");
        }
    }
    p->scan = i;
    return rc;
}

/* ---- header and trailer fields ----------------------------------------------------------- */

/* Content-Length = 1*DIGIT, at most INT64_MAX. */
static bool parse_content_length(const unsigned char *v, size_t n, int64_t *out)
{
    uint64_t x = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)v[i] - '0';
        if (d > 9 || x > ((uint64_t)INT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = (int64_t)x;
    return true;
}

/* Transfer-Encoding: a list of codings, possibly spread over several fields (combined). */
static int parse_transfer_encoding(struct ap_http_parser *p, const unsigned char *v, size_t n)
{
    size_t i = 0;
    p->flags |= F_TE;
    while (i < n) {
        if (v[i] == ',' || is_ows(v[i])) { /* empty list elements are allowed (RFC 9110 5.6.1) */
            i++;
            continue;
        }
        size_t s = i;
        while (i < n && (cls[v[i]] & C_TCHAR))
            i++;
        if (i == s)
            return fail(p, 400, "invalid Transfer-Encoding");
        size_t e = i;
        while (i < n && is_ows(v[i]))
            i++;
        if (i < n && v[i] == ';') {
            /* A coding with parameters: not one we implement (501 once the head is done). The
             * parameters may hold quoted commas, so the rest of the field is not parsed. */
            p->flags = (p->flags | F_TE_OTHER) & ~(unsigned)F_TE_LAST;
            return AP_OK;
        }
        if (i < n && v[i] != ',')
            return fail(p, 400, "invalid Transfer-Encoding");
        if (eq_nocase(v + s, e - s, "chunked")) {
            if (p->flags & F_TE_CHUNKED)
                return fail(p, 400, "chunked applied more than once");
            p->flags |= F_TE_CHUNKED | F_TE_LAST;
        } else {
            p->flags = (p->flags | F_TE_OTHER) & ~(unsigned)F_TE_LAST;
        }
    }
    return AP_OK;
}

/* Connection: a list of tokens; only "close" and "keep-alive" matter here. */
static void parse_connection(struct ap_http_parser *p, const unsigned char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ',' || is_ows(v[i])))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && is_ows(v[e - 1]))
            e--;
        if (eq_nocase(v + s, e - s, "close"))
            p->flags |= F_CONN_CLOSE;
        else if (eq_nocase(v + s, e - s, "keep-alive"))
            p->flags |= F_CONN_KEEP;
    }
}

/* Applies the meaning of header field number idx (not for trailers). */
static int apply_header(struct ap_http_parser *p, const unsigned char *u, unsigned idx)
{
    const unsigned char *name = u + p->off[idx][0];
    size_t nlen = p->off[idx][1];
    const unsigned char *v = u + p->off[idx][2];
    size_t vlen = p->off[idx][3];

    switch (nlen) {
    case 4:
        if (eq_nocase(name, nlen, "host")) {
            if (p->host_index)
                return fail(p, 400, "more than one Host");
            for (size_t i = 0; i < vlen; i++)
                if (!(cls[v[i]] & C_HOST))
                    return fail(p, 400, "invalid Host");
            p->host_index = idx + 1;
        }
        break;
    case 6:
        if (eq_nocase(name, nlen, "expect") && eq_nocase(v, vlen, "100-continue"))
            p->flags |= F_EXPECT_100;
        break;
    case 10:
        if (eq_nocase(name, nlen, "connection"))
            parse_connection(p, v, vlen);
        break;
    case 12:
        if (eq_nocase(name, nlen, "content-type") && !p->ctype_index)
            p->ctype_index = idx + 1;
        break;
    case 14:
        if (eq_nocase(name, nlen, "content-length")) {
            if (p->flags & F_CL)
                return fail(p, 400, "more than one Content-Length");
            if (!parse_content_length(v, vlen, &p->content_length))
                return fail(p, 400, "invalid Content-Length");
            p->flags |= F_CL;
        }
        break;
    case 17:
        if (eq_nocase(name, nlen, "transfer-encoding"))
            return parse_transfer_encoding(p, v, vlen);
        break;
    default:
        break;
    }
    return AP_OK;
}

/* Parses one field line u[s..e) (CRLF excluded) of the section starting at base. */
static int parse_field(struct ap_http_parser *p, const unsigned char *u, size_t base, size_t s,
                       size_t e, bool trailer)
{
    size_t i = s;
    if (is_ows(u[s]))
        return fail(p, 400, "obsolete line folding");
    while (i < e && (cls[u[i]] & C_TCHAR))
        i++;
    if (i == e || u[i] != ':') {
        if (i < e && is_ows(u[i]))
            return fail(p, 400, "whitespace before colon");
        if (i < e && u[i] == '\r')
            return fail(p, 400, "bare CR");
        return fail(p, 400, "invalid header name");
    }
    if (i == s)
        return fail(p, 400, "empty header name");
    size_t name_end = i++;
    while (i < e && is_ows(u[i]))
        i++;
    size_t vs = i;
    for (; i < e; i++)
        if (!(cls[u[i]] & C_FIELD))
            return fail(p, 400, u[i] == '\r' ? "bare CR" : "invalid character in field value");
    size_t ve = e;
    while (ve > vs && is_ows(u[ve - 1]))
        ve--;

    unsigned idx = p->nheaders + p->ntrailers;
    if (idx >= p->limits.max_header_count)
        return fail(p, 431, "too many header fields");
    p->off[idx][0] = (uint32_t)(s - base);
    p->off[idx][1] = (uint32_t)(name_end - s);
    p->off[idx][2] = (uint32_t)(vs - base);
    p->off[idx][3] = (uint32_t)(ve - vs);
    if (trailer) {
        p->ntrailers++;
        return AP_OK;
    }
    p->nheaders++;
    return apply_header(p, u, idx);
}

/*
 * Parses field lines from p->line_start until the empty line that ends the section, which
 * starts at base and may be at most max_header_bytes long. Returns AP_OK when the section is
 * complete (p->scan is then just past its final CRLF), AP_EAGAIN, or AP_EHTTP.
 */
static int parse_fields(struct ap_http_parser *p, const unsigned char *u, size_t len, size_t base,
                        bool trailer)
{
    size_t max = p->limits.max_header_bytes;
    size_t bound = len - base > max ? base + max : len;

    for (;;) {
        const unsigned char *nl =
            p->scan < bound ? memchr(u + p->scan, '\n', bound - p->scan) : NULL;
        if (!nl) {
            p->scan = bound;
            if (bound - base == max)
                return fail(p, 431,
                            trailer ? "trailer section too large" : "header section too large");
            return AP_EAGAIN;
        }
        size_t e = (size_t)(nl - u);
        size_t s = p->line_start;
        if (e == s || u[e - 1] != '\r')
            return fail(p, 400, "bare LF");
        p->scan = p->line_start = e + 1;
        if (e - 1 == s)
            return AP_OK;
        int rc = parse_field(p, u, base, s, e - 1, trailer);
        if (rc != AP_OK)
            return rc;
    }
}

/* The header section is complete: decides how the body is framed (RFC 9112 §6). */
static int finish_head(struct ap_http_parser *p)
{
    p->head_len = p->scan;
    if (p->minor_version == 1 && !p->host_index)
        return fail(p, 400, "missing Host");
    if (p->flags & F_TE) {
        if (p->minor_version == 0)
            return fail(p, 400, "Transfer-Encoding in HTTP/1.0");
        if (p->flags & F_CL)
            return fail(p, 400, "Content-Length with Transfer-Encoding");
        if (!(p->flags & (F_TE_CHUNKED | F_TE_OTHER)))
            return fail(p, 400, "empty Transfer-Encoding");
        if ((p->flags & F_TE_OTHER) || !(p->flags & F_TE_LAST))
            return fail(p, 501, "unsupported transfer coding");
        p->chunked = true;
        p->state = S_CHUNK_SIZE;
        p->line_start = p->scan;
        return AP_OK;
    }
    if (p->flags & F_CL) {
        if ((uint64_t)p->content_length > (uint64_t)p->limits.max_body)
            return fail(p, 413, "body too large");
        p->state = p->content_length ? S_BODY_CL : S_DONE;
        return AP_OK;
    }
    p->state = S_DONE;
    return AP_OK;
}

/* ---- chunked body ------------------------------------------------------------------------ */

/*
 * Decodes the chunked body in place: input is read at p->scan, data written at
 * head_len + body_out (always <= p->scan). Returns AP_OK when the body and its trailers are
 * complete, AP_EAGAIN, or AP_EHTTP.
 */
static int parse_chunked(struct ap_http_parser *p, unsigned char *u, size_t len)
{
    size_t i = p->scan;

    while (i < len && p->state != S_TRAILERS) {
        unsigned char c = u[i];
        switch (p->state) {
        case S_CHUNK_SIZE:
            if (cls[c] & C_HEX) {
                if (p->chunk_digits == 15)
                    return fail(p, 400, "chunk size too large");
                p->chunk_left = (p->chunk_left << 4) | hex_value(c);
                p->chunk_digits++;
                i++;
                break;
            }
            if (c == '\n')
                return fail(p, 400, "bare LF");
            if (p->chunk_digits == 0)
                return fail(p, 400, "invalid chunk size");
            if (c == '\r')
                p->state = S_CHUNK_SIZE_LF;
            else if (c == ';')
                p->state = S_CHUNK_EXT;
            else if (is_ows(c))
                p->state = S_CHUNK_SIZE_WS;
            else
                return fail(p, 400, "invalid chunk size");
            i++;
            break;
        case S_CHUNK_SIZE_WS:
            if (i - p->line_start >= AP_HTTP_MAX_CHUNK_LINE)
                return fail(p, 400, "chunk size line too long");
            if (c == ';')
                p->state = S_CHUNK_EXT;
            else if (!is_ows(c))
                return fail(p, 400, "invalid chunk size");
            i++;
            break;
        case S_CHUNK_EXT: {
            /* chunk-ext is skipped, but may hold no CTL other than HTAB. */
            size_t stop = min_size(len, p->line_start + AP_HTTP_MAX_CHUNK_LINE);
            while (i < stop && (cls[u[i]] & C_FIELD))
                i++;
            if (i == len)
                break;
            if (i == stop)
                return fail(p, 400, "chunk size line too long");
            if (u[i] != '\r')
                return fail(p, 400, u[i] == '\n' ? "bare LF" : "invalid chunk extension");
            p->state = S_CHUNK_SIZE_LF;
            i++;
            break;
        }
        case S_CHUNK_SIZE_LF:
            if (c != '\n')
                return fail(p, 400, "bare CR");
            i++;
            if (p->chunk_left == 0) { /* last-chunk: the trailer section follows */
                p->state = S_TRAILERS;
                p->trailer_start = p->line_start = i;
                break;
            }
            if (p->chunk_left > p->limits.max_body - p->body_out)
                return fail(p, 413, "body too large");
            p->state = S_CHUNK_DATA;
            break;
        case S_CHUNK_DATA: {
            size_t n = (size_t)(p->chunk_left < len - i ? p->chunk_left : len - i);
            size_t out = p->head_len + p->body_out;
            if (out != i)
                memmove(u + out, u + i, n);
            i += n;
            p->body_out += n;
            p->chunk_left -= n;
            if (p->chunk_left == 0)
                p->state = S_CHUNK_DATA_CR;
            break;
        }
        case S_CHUNK_DATA_CR:
            if (c != '\r')
                return fail(p, 400, c == '\n' ? "bare LF" : "missing CRLF after chunk data");
            p->state = S_CHUNK_DATA_LF;
            i++;
            break;
        case S_CHUNK_DATA_LF:
            if (c != '\n')
                return fail(p, 400, "bare CR");
            i++;
            if (i - p->head_len - p->body_out >
                min_size(p->limits.max_body, SIZE_MAX / 2) + AP_HTTP_MAX_CHUNK_FRAMING)
                return fail(p, 413, "chunk framing too large");
            p->state = S_CHUNK_SIZE;
            p->line_start = i;
            p->chunk_digits = 0;
            break;
        default:
            return fail(p, 400, "internal parser state");
        }
    }
    p->scan = i;
    if (p->state != S_TRAILERS)
        return AP_EAGAIN;
    int rc = parse_fields(p, u, len, p->trailer_start, true);
    if (rc == AP_OK)
        p->state = S_DONE;
    return rc;
}

/* ---- result -------------------------------------------------------------------------------- */

static struct ap_span span_at(const char *buf, size_t off, size_t len)
{
    return ap_span_make(buf + off, len);
}

static void fill_req(const struct ap_http_parser *p, const char *buf, struct ap_http_req *req)
{
    bool done = p->state == S_DONE;
    const char *target = buf + p->line_off[2];
    size_t tlen = p->line_off[3];
    size_t plen = 0;

    req->method_name = span_at(buf, p->line_off[0], p->line_off[1]);
    req->method = method_lookup((const unsigned char *)req->method_name.p, p->line_off[1]);
    req->target = ap_span_make(target, tlen);
    while (plen < tlen && target[plen] != '?' && target[plen] != '#')
        plen++;
    req->path = ap_span_make(target, plen);
    req->query = AP_SPAN_NULL;
    if (plen < tlen && target[plen] == '?') {
        size_t q = plen + 1, qe = q;
        while (qe < tlen && target[qe] != '#')
            qe++;
        req->query = ap_span_make(target + q, qe - q);
    }
    req->minor_version = p->minor_version;
    req->nheaders = p->nheaders;
    req->ntrailers = done ? p->ntrailers : 0;
    for (unsigned i = 0; i < p->nheaders + req->ntrailers; i++) {
        size_t base = i < p->nheaders ? 0 : p->trailer_start;
        req->headers[i].name = span_at(buf, base + p->off[i][0], p->off[i][1]);
        req->headers[i].value = span_at(buf, base + p->off[i][2], p->off[i][3]);
    }
    req->host = AP_SPAN_NULL;
    if (p->host_index)
        req->host = req->headers[p->host_index - 1].value;
    req->content_type = AP_SPAN_NULL;
    if (p->ctype_index)
        req->content_type = req->headers[p->ctype_index - 1].value;
    req->content_length = p->content_length;
    req->chunked = p->chunked;
    if (p->minor_version == 1)
        req->keep_alive = !(p->flags & F_CONN_CLOSE);
    else
        req->keep_alive = (p->flags & F_CONN_KEEP) && !(p->flags & F_CONN_CLOSE);
    /* RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored. */
    req->expect_continue = p->minor_version == 1 && (p->flags & F_EXPECT_100);

    size_t body_len = 0;
    req->consumed = 0;
    if (done) {
        if (p->chunked) {
            body_len = p->body_out;
            req->consumed = p->scan;
        } else {
            body_len = p->content_length > 0 ? (size_t)p->content_length : 0;
            req->consumed = p->head_len + body_len;
        }
    }
    req->body = span_at(buf, p->head_len, body_len);
}

int ap_http_parse(struct ap_http_parser *p, char *buf, size_t len, struct ap_http_req *req)
{
    unsigned char *u = (unsigned char *)buf;
    int rc;

    if (p->state == S_ERROR)
        return AP_EHTTP;
    if (len < p->scan)
        return AP_EINVAL; /* the caller lost bytes it had already given us */

    if (p->state < S_HEADERS) {
        size_t max = p->limits.max_header_bytes;
        rc = parse_request_line(p, u, min_size(len, max));
        if (rc == AP_EAGAIN && len >= max)
            return fail(p, 431, "header section too large");
        if (rc != AP_OK)
            return rc;
    }
    if (p->state == S_HEADERS) {
        rc = parse_fields(p, u, len, 0, false);
        if (rc != AP_OK)
            return rc;
        rc = finish_head(p);
        if (rc != AP_OK)
            return rc;
    }
    if (p->state == S_BODY_CL && (uint64_t)(len - p->head_len) >= (uint64_t)p->content_length)
        p->state = S_DONE;
    if (p->state >= S_CHUNK_SIZE && p->state <= S_TRAILERS) {
        rc = parse_chunked(p, u, len);
        if (rc == AP_EHTTP)
            return rc;
    }
    if (p->state == S_DONE) {
        fill_req(p, buf, req);
        return AP_OK;
    }
    if (!p->head_done_reported) {
        p->head_done_reported = true;
        fill_req(p, buf, req);
        return AP_HTTP_HEAD_DONE;
    }
    return AP_EAGAIN;
}

/* ---- lookups --------------------------------------------------------------------------- */

const struct ap_http_header *ap_http_find_header(const struct ap_http_req *req, const char *name)
{
    for (unsigned i = 0; i < req->nheaders; i++)
        if (ap_span_eq_nocase(req->headers[i].name, name))
            return &req->headers[i];
    return NULL;
}

const char *ap_http_method_name(enum ap_http_method m)
{
    if ((unsigned)m >= AP_HTTP_METHOD_COUNT)
        return method_names[AP_HTTP_OTHER];
    return method_names[m];
}

/* Sorted by code (ap_http_reason searches it by bisection). RFC 9110 §15 names. */
static const struct {
    int code;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *ap_http_reason(int status)
{
    size_t lo = 0, hi = sizeof(reasons) / sizeof(reasons[0]);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (reasons[mid].code == status)
            return reasons[mid].reason;
        if (reasons[mid].code < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return "Unknown";
}
