/*
 * ap_api_json: request parsing (JSON bodies, query strings, ids, If-Match) and JSON responses
 * for the REST API, including the one mapping from store results to HTTP errors.
 */
#include "ap_api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"

/* ---- UTF-8, ids --------------------------------------------------------------------------- */

bool ap__api_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* past U+10FFFF */
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

bool ap__api_parse_id(struct ap_span s, int64_t *out)
{
    uint64_t v;
    if (s.len == 0 || s.p[0] == '0' || !ap_span_to_u64(s, (uint64_t)INT64_MAX, &v))
        return false;
    *out = (int64_t)v;
    return true;
}

/* ---- responses ---------------------------------------------------------------------------- */

static void common_headers(struct ap_http_exchange *x)
{
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    ap_http_add_header(x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
}

/* The error body built without any allocation (the fallback when out of memory): the same
 * shape as every other error, {"error": {"code", "message", "fields": []}}. code and message
 * are static ASCII. */
static int error_noalloc(struct ap_http_exchange *x, int status, const char *code,
                         const char *message)
{
    char body[1024], esc[600];
    ap_json_escape(esc, sizeof(esc), message, strlen(message));
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":\"%s\",\"message\":\"%s\","
                     "\"fields\":[]}}",
                     code, esc);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    common_headers(x);
    return ap_http_respond(x, status, "application/json", body, (size_t)n);
}

int ap__api_send_json(struct ap_http_exchange *x, int status, const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text || strlen(text) > AP__API_JSON_MAX_OUTPUT) {
        free(text);
        ap_log_error("api: cannot serialise a response of status %d", status);
        return error_noalloc(x, 500, "internal", "cannot serialise the response");
    }
    common_headers(x);
    int rc = ap_http_respond(x, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

/* A JSON string for an error message; bytes that are not printable ASCII become '?', so text
 * quoted from the input by a parser can never break the body. */
static json_t *message_string(const char *message)
{
    char buf[512];
    size_t n = 0;
    for (; message[n] && n < sizeof(buf) - 1; n++) {
        unsigned char ch = (unsigned char)message[n];
        buf[n] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    buf[n] = '\0';
    return json_string(buf);
}

int ap__api_error_fields(struct ap_http_exchange *x, int status, const char *code,
                         const char *message, const struct ap_schema_errors *errs)
{
    json_t *fields = errs ? ap_schema_errors_to_json(errs) : json_array();
    json_t *msg = message_string(message);
    json_t *body = NULL;
    int rc;
    if (fields && msg)
        body = json_pack("{s:{s:s, s:O, s:O}}", "error", "code", code, "message", msg, "fields",
                         fields);
    if (body)
        rc = ap__api_send_json(x, status, body);
    else
        rc = error_noalloc(x, status, code, "error (out of memory describing it)");
    json_decref(body);
    json_decref(msg);
    json_decref(fields);
    return rc;
}

int ap__api_error(struct ap_http_exchange *x, int status, const char *code, const char *message)
{
    return ap__api_error_fields(x, status, code, message, NULL);
}

int ap__api_field_error(struct ap_http_exchange *x, const char *field, const char *message)
{
    struct ap_schema_errors errs;
    ap_schema_errors_init(&errs);
    ap_schema_errors_add(&errs, field, "%s", message);
    return ap__api_error_fields(x, 422, "validation_failed", "request validation failed", &errs);
}

int ap__api_store_error(struct ap__api_ctx *c, int rc, const struct ap_schema_errors *errs,
                        bool if_match)
{
    struct ap_http_exchange *x = c->x;
    switch (rc) {
    case AP_EINVAL:
        return ap__api_error_fields(x, 422, "validation_failed", "request validation failed", errs);
    case AP_ENOTFOUND:
        return ap__api_error(x, 404, "not_found", "not found");
    case AP_ECONFLICT:
        if (if_match)
            return ap__api_error(x, 412, "precondition_failed",
                                 "the object changed since the version in If-Match");
        return ap__api_error_fields(x, 409, "conflict", "conflicts with the stored data", errs);
    case AP_EPERM:
        return ap__api_error(x, 403, "forbidden", "your role may not do this");
    case AP_EBUSY:
        ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("1"));
        return ap__api_error(x, 503, "busy", "the store is busy, retry shortly");
    default:
        ap_log_error("api: %.*s %.*s: store error %s: %s", AP_SPAN_FMT(x->req.method_name),
                     AP_SPAN_FMT(x->req.path), ap_strerror(rc),
                     c->st ? ap_store_errmsg(c->st) : "-");
        return ap__api_error(x, 500, "internal", "internal error");
    }
}

void ap__api_set_etag(struct ap_http_exchange *x, const json_t *obj)
{
    json_t *v = json_object_get(obj, "version");
    if (!json_is_integer(v))
        return;
    char etag[32];
    int n = snprintf(etag, sizeof(etag), "\"%lld\"", (long long)json_integer_value(v));
    if (n > 0 && (size_t)n < sizeof(etag))
        ap_http_add_header(x, "ETag", ap_span_make(etag, (size_t)n));
}

/* ---- request bodies ----------------------------------------------------------------------- */

static bool is_json_type(struct ap_span ct)
{
    size_t n = 0;
    while (n < ct.len && ct.p[n] != ';')
        n++;
    struct ap_span type = ap_span_make(ct.p, n);
    while (type.len && (type.p[type.len - 1] == ' ' || type.p[type.len - 1] == '\t'))
        type.len--;
    if (!ap_span_eq_nocase(type, "application/json") &&
        !ap_span_eq_nocase(type, "application/merge-patch+json"))
        return false;
    /* A charset parameter, if any, must be UTF-8 (JSON's only encoding, RFC 8259). */
    for (size_t i = n; i + 8 <= ct.len; i++) {
        if (ap_span_eq_nocase(ap_span_make(ct.p + i, 8), "charset=")) {
            struct ap_span cs = ap_span_make(ct.p + i + 8, ct.len - i - 8);
            size_t k = 0;
            while (k < cs.len && cs.p[k] != ';' && cs.p[k] != ' ')
                k++;
            cs.len = k;
            if (cs.len >= 2 && cs.p[0] == '"' && cs.p[cs.len - 1] == '"') {
                cs.p++;
                cs.len -= 2;
            }
            return ap_span_eq_nocase(cs, "utf-8") || ap_span_eq_nocase(cs, "utf8");
        }
    }
    return true;
}

/* ---- JSON syntax without allocation ---------------------------------------------------------
 * jansson reports running out of memory inside its lexer as a syntax error ("string or '}'
 * expected"), which would blame the client (400) for the server's trouble. When jansson fails
 * with a syntax-kind error, this allocation-free checker (RFC 8259 grammar, UTF-8 already
 * checked by the caller) decides whose fault it was: valid syntax means jansson ran out of
 * memory (500). Errors jansson finds in valid syntax (duplicate keys, \u0000, overflow,
 * nesting too deep) have their own codes and stay 400. */
#define SYNTAX_MAX_DEPTH 4096

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static void skip_ws(const char *p, size_t n, size_t *i)
{
    while (*i < n && (p[*i] == ' ' || p[*i] == '\t' || p[*i] == '\n' || p[*i] == '\r'))
        (*i)++;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Four hex digits at *i (moved past them): the value, or -1. */
static long read_u4(const char *p, size_t n, size_t *i)
{
    long v = 0;
    for (int k = 0; k < 4; k++, (*i)++) {
        int h = *i < n ? hexval(p[*i]) : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool scan_string(const char *p, size_t n, size_t *i)
{
    (*i)++; /* the opening quote */
    while (*i < n) {
        unsigned char ch = (unsigned char)p[(*i)++];
        if (ch == '"')
            return true;
        if (ch < 0x20)
            return false;
        if (ch != '\\')
            continue;
        if (*i >= n)
            return false;
        ch = (unsigned char)p[(*i)++];
        if (ch == 'u') {
            /* jansson (rightly) refuses unpaired surrogates: so does this */
            long u = read_u4(p, n, i);
            if (u >= 0xDC00 && u <= 0xDFFF)
                return false;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (n - *i < 2 || p[*i] != '\\' || p[*i + 1] != 'u')
                    return false;
                *i += 2;
                long lo = read_u4(p, n, i);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return false;
            }
            if (u < 0)
                return false;
        } else if (!strchr("\"\\/bfnrt", ch) || ch == 0) {
            return false;
        }
    }
    return false;
}

static bool scan_number(const char *p, size_t n, size_t *i)
{
    if (*i < n && p[*i] == '-')
        (*i)++;
    if (*i >= n || !is_digit(p[*i]))
        return false;
    if (p[*i] == '0')
        (*i)++;
    else
        while (*i < n && is_digit(p[*i]))
            (*i)++;
    if (*i < n && p[*i] == '.') {
        (*i)++;
        if (*i >= n || !is_digit(p[*i]))
            return false;
        while (*i < n && is_digit(p[*i]))
            (*i)++;
    }
    if (*i < n && (p[*i] == 'e' || p[*i] == 'E')) {
        (*i)++;
        if (*i < n && (p[*i] == '+' || p[*i] == '-'))
            (*i)++;
        if (*i >= n || !is_digit(p[*i]))
            return false;
        while (*i < n && is_digit(p[*i]))
            (*i)++;
    }
    return true;
}

static bool scan_word(const char *p, size_t n, size_t *i, const char *w)
{
    size_t len = strlen(w);
    if (n - *i < len || memcmp(p + *i, w, len) != 0)
        return false;
    *i += len;
    return true;
}

bool ap__api_json_syntax_ok(const char *p, size_t n)
{
    unsigned char stack[SYNTAX_MAX_DEPTH / 8]; /* bit set: in an object (1) or array (0) */
    size_t depth = 0, i = 0;
    for (;;) {
        /* a value is expected at i */
        skip_ws(p, n, &i);
        if (i >= n)
            return false;
        char ch = p[i];
        if (ch == '{' || ch == '[') {
            if (depth == SYNTAX_MAX_DEPTH)
                return false;
            bool obj = ch == '{';
            if (obj)
                stack[depth / 8] |= (unsigned char)(1u << (depth % 8));
            else
                stack[depth / 8] &= (unsigned char)~(1u << (depth % 8));
            depth++;
            i++;
            skip_ws(p, n, &i);
            if (i < n && p[i] == (obj ? '}' : ']')) {
                i++;
                depth--;
                goto after_value;
            }
            if (obj) {
                if (i >= n || p[i] != '"' || !scan_string(p, n, &i))
                    return false;
                skip_ws(p, n, &i);
                if (i >= n || p[i++] != ':')
                    return false;
            }
            continue;
        }
        if (ch == '"') {
            if (!scan_string(p, n, &i))
                return false;
        } else if (ch == '-' || is_digit(ch)) {
            if (!scan_number(p, n, &i))
                return false;
        } else if (!scan_word(p, n, &i, "true") && !scan_word(p, n, &i, "false") &&
                   !scan_word(p, n, &i, "null")) {
            return false;
        }
    after_value:
        for (;;) {
            skip_ws(p, n, &i);
            if (depth == 0)
                return i == n;
            bool obj = stack[(depth - 1) / 8] & (1u << ((depth - 1) % 8));
            if (i >= n)
                return false;
            if (p[i] == (obj ? '}' : ']')) {
                i++;
                depth--;
                continue;
            }
            if (p[i++] != ',')
                return false;
            if (obj) {
                skip_ws(p, n, &i);
                if (i >= n || p[i] != '"' || !scan_string(p, n, &i))
                    return false;
                skip_ws(p, n, &i);
                if (i >= n || p[i++] != ':')
                    return false;
            }
            break; /* the next value */
        }
    }
}

/* Did jansson fail for want of memory rather than because of the input? */
static bool json_failed_for_memory(const json_error_t *e, const char *p, size_t n)
{
    switch (json_error_code(e)) {
    case json_error_out_of_memory:
        return true;
    case json_error_unknown:
    case json_error_invalid_syntax:
    case json_error_premature_end_of_input:
    case json_error_end_of_input_expected:
        return ap__api_json_syntax_ok(p, n);
    default:
        return false;
    }
}

int ap__api_read_json(struct ap__api_ctx *c, json_t **out)
{
    struct ap_http_exchange *x = c->x;
    struct ap_span body = x->req.body;
    *out = NULL;
    if (!is_json_type(x->req.content_type)) {
        ap__api_error(x, 415, "unsupported_media_type",
                      "the request body must be JSON (Content-Type: application/json)");
        return AP_EINVAL;
    }
    if (body.len == 0) {
        ap__api_error(x, 400, "empty_body", "the request needs a JSON object as its body");
        return AP_EINVAL;
    }
    if (body.len > AP_API_JSON_MAX) {
        ap__api_error(x, 413, "payload_too_large", "JSON bodies may be at most 2 MiB");
        return AP_EINVAL;
    }
    if (!ap__api_utf8_valid(body.p, body.len)) {
        ap__api_error(x, 400, "invalid_utf8", "the request body is not valid UTF-8");
        return AP_EINVAL;
    }
    /* JSON text never holds a raw NUL (in strings it is escaped); jansson would stop reading at
     * one and ignore whatever follows */
    if (memchr(body.p, '\0', body.len)) {
        ap__api_error(x, 400, "invalid_json", "a NUL byte in the JSON body");
        return AP_EINVAL;
    }
    json_t *v = NULL;
    {
        /* well-formed text goes through our strict parser: under allocation failure jansson's
         * lexer silently drops characters of strings (a key "budget_daily_micros" can arrive
         * as "budget_daily_mcros"), while ap_schema_json_parse fails cleanly with AP_ENOMEM */
        int prc = ap_schema_json_parse(body.p, body.len, &v);
        if (prc == AP_ENOMEM) {
            ap_log_error("api: out of memory parsing a request body");
            ap__api_error(x, 500, "internal", "out of memory");
            return AP_ENOMEM;
        }
        if (prc != AP_OK)
            v = NULL; /* not an object/array, or a duplicate: jansson words the error below */
    }
    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr)); /* jansson leaves it untouched on some failures */
    if (!v)
        v = json_loadb(body.p, body.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!v && json_failed_for_memory(&jerr, body.p, body.len)) {
        ap_log_error("api: out of memory parsing a request body");
        ap__api_error(x, 500, "internal", "out of memory");
        return AP_ENOMEM;
    }
    if (!v) {
        char msg[256];
        snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        ap__api_error(x, 400, "invalid_json", msg);
        return AP_EINVAL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        ap__api_field_error(x, "", "the request body must be a JSON object");
        return AP_EINVAL;
    }
    *out = v;
    return AP_OK;
}

/* ---- query strings ------------------------------------------------------------------------ */

/* Decodes a query component into the arena; NULL if it is malformed (bad escape, NUL, not
 * UTF-8) or the arena is exhausted (*oom set). */
static char *decode_component(struct ap_arena *a, struct ap_span s, bool *oom)
{
    char *out = ap_arena_alloc(a, s.len + 1);
    if (!out) {
        *oom = true;
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.p[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (s.len - i < 3)
                return NULL;
            int hi = hexval(s.p[i + 1]), lo = hexval(s.p[i + 2]);
            if (hi < 0 || lo < 0)
                return NULL;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0')
            return NULL;
        out[n++] = ch;
    }
    out[n] = '\0';
    return ap__api_utf8_valid(out, n) ? out : NULL;
}

int ap__api_query(struct ap__api_ctx *c, struct ap__api_param **out, size_t *n)
{
    struct ap_http_exchange *x = c->x;
    struct ap_span q = x->req.query;
    struct ap__api_param *p =
        ap_arena_calloc(x->arena, AP__API_MAX_QUERY_PARAMS, sizeof(struct ap__api_param));
    bool oom = false;
    size_t count = 0, i = 0;
    *out = NULL;
    *n = 0;
    if (!p)
        goto nomem;
    while (i < q.len) {
        size_t start = i;
        while (i < q.len && q.p[i] != '&')
            i++;
        struct ap_span piece = ap_span_make(q.p + start, i - start);
        i++; /* skip '&' */
        if (piece.len == 0)
            continue;
        if (count == AP__API_MAX_QUERY_PARAMS) {
            ap__api_field_error(x, "", "too many query parameters");
            return AP_EINVAL;
        }
        size_t eq = 0;
        while (eq < piece.len && piece.p[eq] != '=')
            eq++;
        struct ap_span k = ap_span_make(piece.p, eq);
        struct ap_span v =
            eq < piece.len ? ap_span_make(piece.p + eq + 1, piece.len - eq - 1) : AP_SPAN_NULL;
        p[count].key = decode_component(x->arena, k, &oom);
        p[count].value = p[count].key ? decode_component(x->arena, v, &oom) : NULL;
        if (oom)
            goto nomem;
        if (!p[count].key || !p[count].value) {
            ap__api_error(x, 400, "invalid_query",
                          "the query string has a bad %-escape, a NUL or invalid UTF-8");
            return AP_EINVAL;
        }
        count++;
    }
    *out = p;
    *n = count;
    return AP_OK;
nomem:
    ap__api_error(x, 500, "internal", "out of memory");
    return AP_ENOMEM;
}

void ap__api_list_params(const struct ap__api_param *p, size_t n, int *limit, const char **cursor,
                         struct ap_schema_errors *errs)
{
    *limit = 0;
    *cursor = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p[i].key, "limit") == 0) {
            uint64_t v;
            if (!ap_span_to_u64(ap_span_cstr(p[i].value), AP_STORE_LIST_MAX, &v) || v == 0)
                ap_schema_errors_add(errs, "limit", "must be an integer from 1 to %d",
                                     AP_STORE_LIST_MAX);
            else
                *limit = (int)v;
        } else if (strcmp(p[i].key, "cursor") == 0) {
            *cursor = p[i].value;
        }
    }
}

/* ---- conditional requests ------------------------------------------------------------------ */

int ap__api_if_match(struct ap__api_ctx *c, int64_t *expected)
{
    const struct ap_http_header *h = ap_http_find_header(&c->x->req, "If-Match");
    *expected = -1;
    if (!h)
        return AP_OK;
    struct ap_span v = h->value;
    if (ap_span_eq_cstr(v, "*"))
        return AP_OK;
    if (v.len >= 2 && v.p[0] == 'W' && v.p[1] == '/') {
        v.p += 2;
        v.len -= 2;
    }
    uint64_t n;
    if (v.len >= 3 && v.p[0] == '"' && v.p[v.len - 1] == '"' &&
        ap_span_to_u64(ap_span_make(v.p + 1, v.len - 2), (uint64_t)INT64_MAX, &n)) {
        *expected = (int64_t)n;
        return AP_OK;
    }
    ap__api_error(c->x, 412, "precondition_failed",
                  "If-Match must be the ETag of the object (\"<version>\") or *");
    return AP_EINVAL;
}
