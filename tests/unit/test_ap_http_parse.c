/*
 * Unit tests for src/net/ap_http_parse.c.
 *
 * One table of requests {input, expected status or fields}. Every row is parsed four ways and
 * the results (rendered as text with offsets relative to the buffer) must agree:
 *   - whole, from a buffer of exactly the input's size;
 *   - one byte at a time, moving the buffer to a new allocation before each byte (so the parser
 *     must keep offsets, not pointers);
 *   - split in two at every position;
 *   - every prefix placed against a PROT_NONE page (and at the start right after one), so a
 *     one-byte over-read crashes even without ASan.
 * Then focused tests: pipelining, HEAD_DONE, chunked trailers and extensions, limits,
 * keep-alive, lookups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "net/ap_http.h"

enum { ANY = 0, NO = 1, YES = 2 }; /* tri-state expectations */

#define EAGAIN_ROW (-1) /* .status: the input is incomplete */
#define CL(n) .cl = (n), .cl_set = true
#define LIT(s) s, .in_len = sizeof(s) - 1 /* an input holding NUL */

struct http_case {
    const char *name;
    const char *in;
    size_t in_len;                    /* 0: strlen(in); set for inputs holding NUL */
    int status;                       /* 0: valid; EAGAIN_ROW; else AP_EHTTP with this status */
    const struct ap_http_limits *lim; /* NULL: defaults */
    /* Checked on success when set: */
    enum ap_http_method method;
    const char *method_name;           /* also enables the .method check */
    const char *target, *path, *query; /* query "-": absent */
    int version;                       /* 10 or 11 */
    const char *hdrs;                  /* "Name: value\n" per header field, "" for none */
    const char *trls;                  /* same for trailer fields */
    const char *host;                  /* "-": absent */
    const char *ctype;                 /* "-": absent */
    const char *body;
    int64_t cl;
    bool cl_set;
    int chunked, ka, expect;
    size_t consumed; /* 0: the whole input */
};

static const struct ap_http_limits small = {
    .max_header_bytes = 256, .max_uri = 32, .max_body = 64, .max_header_count = 8};

#define H11 "Host: example.com\r\n"

static const struct http_case cases[] = {
    /* ---- valid requests ---- */
    {"simple get", "GET / HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_GET, .method_name = "GET",
     .target = "/", .path = "/", .query = "-", .version = 11, .hdrs = "Host: example.com\n",
     .trls = "", .host = "example.com", .ctype = "-", .body = "", CL(-1), .chunked = NO, .ka = YES,
     .expect = NO},
    {"query", "GET /a/b?x=1&y=2 HTTP/1.1\r\n" H11 "\r\n", .target = "/a/b?x=1&y=2", .path = "/a/b",
     .query = "x=1&y=2"},
    {"empty query", "GET /a? HTTP/1.1\r\n" H11 "\r\n", .path = "/a", .query = ""},
    {"fragment", "GET /a?q#f HTTP/1.1\r\n" H11 "\r\n", .path = "/a", .query = "q"},
    {"fragment no query", "GET /a#f?x HTTP/1.1\r\n" H11 "\r\n", .path = "/a", .query = "-"},
    {"absolute form", "GET http://example.com/x?y HTTP/1.1\r\n" H11 "\r\n",
     .target = "http://example.com/x?y", .path = "http://example.com/x", .query = "y"},
    {"options star", "OPTIONS * HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_OPTIONS,
     .method_name = "OPTIONS", .target = "*", .path = "*"},
    {"connect authority", "CONNECT example.com:443 HTTP/1.1\r\n" H11 "\r\n",
     .method = AP_HTTP_OTHER, .method_name = "CONNECT", .target = "example.com:443"},
    {"other method", "PURGE /x HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_OTHER,
     .method_name = "PURGE"},
    {"lower-case method is another token", "get / HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_OTHER,
     .method_name = "get"},
    {"head", "HEAD / HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_HEAD, .method_name = "HEAD"},
    {"put", "PUT /r HTTP/1.1\r\n" H11 "Content-Length: 2\r\n\r\nok", .method = AP_HTTP_PUT,
     .method_name = "PUT", .body = "ok", CL(2)},
    {"patch", "PATCH /r HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_PATCH, .method_name = "PATCH"},
    {"delete", "DELETE /r HTTP/1.1\r\n" H11 "\r\n", .method = AP_HTTP_DELETE,
     .method_name = "DELETE"},
    {"http/1.0 without host", "GET / HTTP/1.0\r\n\r\n", .version = 10, .hdrs = "", .host = "-",
     .ka = NO},
    {"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", .version = 10,
     .ka = YES},
    {"http/1.0 keep-alive in a list", "GET / HTTP/1.0\r\nConnection: foo , keep-alive\r\n\r\n",
     .ka = YES},
    {"http/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
     .ka = NO},
    {"http/1.1 close", "GET / HTTP/1.1\r\n" H11 "Connection: close\r\n\r\n", .ka = NO},
    {"http/1.1 close in a list", "GET / HTTP/1.1\r\n" H11 "Connection: Upgrade,\tCLOSE\r\n\r\n",
     .ka = NO},
    {"http/1.1 close in a second field",
     "GET / HTTP/1.1\r\n" H11 "Connection: te\r\nConnection: close\r\n\r\n", .ka = NO},
    {"http/1.1 closed is not close", "GET / HTTP/1.1\r\n" H11 "Connection: closed\r\n\r\n",
     .ka = YES},
    {"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", .host = ""},
    {"host ip-literal and port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
     .host = "[::1]:8080"},
    {"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n" H11 "\r\n", .method_name = "GET",
     .method = AP_HTTP_GET, .target = "/"},
    {"field OWS trimmed and obs-text kept",
     "GET / HTTP/1.1\r\nHost:\t example.com \t\r\nX-A: caf\xc3\xa9  ok\r\nX-Empty:\r\n"
     "X-Spaces:    \r\n\r\n",
     .hdrs = "Host: example.com\nX-A: caf\xc3\xa9  ok\nX-Empty: \nX-Spaces: \n",
     .host = "example.com"},
    {"token characters in names", "GET / HTTP/1.1\r\n" H11 "!#$%&'*+-.^_`|~09az: v\r\n\r\n",
     .hdrs = "Host: example.com\n!#$%&'*+-.^_`|~09az: v\n"},
    {"content-type",
     "POST /b HTTP/1.1\r\n" H11
     "Content-Type: application/json\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
     .ctype = "application/json", .body = "{}", .method = AP_HTTP_POST, .method_name = "POST"},
    {"post content-length", "POST /x HTTP/1.1\r\n" H11 "Content-Length: 11\r\n\r\nhello world",
     .body = "hello world", CL(11), .chunked = NO, .ka = YES},
    {"content-length zero", "POST /x HTTP/1.1\r\n" H11 "Content-Length: 0\r\n\r\n", .body = "",
     CL(0)},
    {"content-length leading zeros", "POST /x HTTP/1.1\r\n" H11 "Content-length: 003\r\n\r\nabc",
     .body = "abc", CL(3)},
    {"body of a get", "GET /x HTTP/1.1\r\n" H11 "Content-Length: 3\r\n\r\nabc", .body = "abc"},
    {"http/1.0 body", "POST /x HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", .body = "abc", .ka = NO},
    {"pipelined rest not consumed", "GET /1 HTTP/1.1\r\n" H11 "\r\nGET /2 HTTP/1.1\r\n" H11 "\r\n",
     .target = "/1", .consumed = sizeof("GET /1 HTTP/1.1\r\n" H11 "\r\n") - 1},
    {"body then next request",
     "POST /1 HTTP/1.1\r\n" H11 "Content-Length: 2\r\n\r\nabGET / HTTP/1.1\r\n", .body = "ab",
     .consumed = sizeof("POST /1 HTTP/1.1\r\n" H11 "Content-Length: 2\r\n\r\nab") - 1},
    {"chunked",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     .body = "hello world", .chunked = YES, CL(-1), .trls = ""},
    {"chunked upper case, leading zeros",
     "POST /c HTTP/1.1\r\n" H11 "transfer-encoding: CHUNKED\r\n\r\n"
     "00A\r\n0123456789\r\n000\r\n\r\n",
     .body = "0123456789", .chunked = YES},
    {"chunked empty list elements",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: , chunked ,\r\n"
     "\r\n1\r\nx\r\n0\r\n\r\n",
     .body = "x", .chunked = YES},
    {"chunked empty body",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\n",
     .body = "", .chunked = YES},
    {"chunked 15 hex digits",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "000000000000003\r\nabc\r\n0\r\n\r\n",
     .body = "abc"},
    {"chunk extensions",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "3;name=value\r\nabc\r\n2 ; a = \"q;\\\" x\"\t;b\r\nde\r\n0;last\r\n\r\n",
     .body = "abcde"},
    {"chunked with trailers",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "4\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Checksum:  abc \r\nX-Other: 1\r\n\r\n",
     .body = "Wikipedia", .hdrs = "Host: example.com\nTransfer-Encoding: chunked\n",
     .trls = "X-Checksum: abc\nX-Other: 1\n"},
    {"chunked body with CRLF inside",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n4\r\n\r\n\r\n\r\n0\r\n\r\n",
     .body = "\r\n\r\n"},
    {"chunked then next request",
     "POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "1\r\nz\r\n0\r\n\r\nGET",
     .body = "z",
     .consumed = sizeof("POST /c HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
                        "1\r\nz\r\n0\r\n\r\n") -
                 1},
    {"expect 100-continue",
     "POST /e HTTP/1.1\r\n" H11 "Expect: 100-Continue\r\n"
     "Content-Length: 1\r\n\r\nx",
     .expect = YES, .body = "x"},
    {"expect other value ignored", "POST /e HTTP/1.1\r\n" H11 "Expect: foo\r\n\r\n", .expect = NO},
    {"expect in http/1.0 ignored", "POST /e HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
     .expect = NO},
    {"small limits: uri at limit", "GET /2345678901234567890123456789012 HTTP/1.1\r\n" H11 "\r\n",
     .lim = &small, .path = "/2345678901234567890123456789012"},
    {"small limits: body at limit",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 64\r\n\r\n"
     "0123456789012345678901234567890123456789012345678901234567890123",
     .lim = &small, CL(64)},
    {"small limits: chunked body at limit",
     "POST / HTTP/1.1\r\n" H11
     "Transfer-Encoding: chunked\r\n\r\n20\r\n01234567890123456789012345678901\r\n"
     "20\r\n01234567890123456789012345678901\r\n0\r\n\r\n",
     .lim = &small},
    {"small limits: 8 fields",
     "GET / HTTP/1.1\r\n" H11 "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"
     "E: 5\r\nF: 6\r\nG: 7\r\n\r\n",
     .lim = &small},

    /* ---- incomplete input ---- */
    {"incomplete request line", "GET /abc HTT", .status = EAGAIN_ROW},
    {"incomplete head", "GET / HTTP/1.1\r\n" H11, .status = EAGAIN_ROW},
    {"incomplete head, CR", "GET / HTTP/1.1\r\n" H11 "\r", .status = EAGAIN_ROW},
    {"incomplete body", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\n\r\nabc",
     .status = EAGAIN_ROW},
    {"incomplete chunked",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "5\r\nab",
     .status = EAGAIN_ROW},
    {"incomplete trailers",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
     "0\r\nX: y\r\n",
     .status = EAGAIN_ROW},
    {"only empty lines", "\r\n\r\n", .status = EAGAIN_ROW},

    /* ---- request line ---- */
    {"bare LF after request line", "GET / HTTP/1.1\n" H11 "\r\n", .status = 400},
    {"bare LF inside target", "GET /a\nb HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"bare CR after request line", "GET / HTTP/1.1\r" H11 "\r\n", .status = 400},
    {"bare LF as leading empty line", "\nGET / HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"bare CR as leading empty line", "\rGET / HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"leading space", " GET / HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"invalid method character", "G@T / HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"tab after method", "GET\t/ HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"two spaces after method", "GET  / HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"two spaces before version", "GET /  HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"space inside target", "GET /a b HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"control character in target", "GET /a\x01 HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"DEL in target", "GET /a\x7f HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"non-ASCII in target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"NUL in target", LIT("GET /a\0 HTTP/1.1\r\n" H11 "\r\n"), .status = 400},
    {"trailing space after version", "GET / HTTP/1.1 \r\n" H11 "\r\n", .status = 400},
    {"http/0.9 request", "GET /\r\n\r\n", .status = 400},
    {"missing version", "GET / \r\n" H11 "\r\n", .status = 400},
    {"relative target", "GET foo HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"star for get", "GET * HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"scheme without colon", "GET http HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"scheme with nothing after the colon", "GET http: HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"target starting with a digit", "GET 1http://a/ HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"target starting with percent", "GET %2F HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"path before colon", "GET a/b:c HTTP/1.1\r\n" H11 "\r\n", .status = 400},
    {"lower-case protocol", "GET / http/1.1\r\n" H11 "\r\n", .status = 400},
    {"garbage version", "GET / HTTX/1.1\r\n" H11 "\r\n", .status = 400},
    {"version without minor", "GET / HTTP/1\r\n" H11 "\r\n", .status = 400},
    {"version two-digit major", "GET / HTTP/11.1\r\n" H11 "\r\n", .status = 400},
    {"version two-digit minor", "GET / HTTP/1.10\r\n" H11 "\r\n", .status = 400},
    {"version letters", "GET / HTTP/1.x\r\n" H11 "\r\n", .status = 400},
    {"http/2.0", "GET / HTTP/2.0\r\n" H11 "\r\n", .status = 505},
    {"http/1.2", "GET / HTTP/1.2\r\n" H11 "\r\n", .status = 505},
    {"http/0.9 version", "GET / HTTP/0.9\r\n" H11 "\r\n", .status = 505},
    {"http/3.0", "GET / HTTP/3.0\r\n\r\n", .status = 505},

    /* ---- header fields ---- */
    {"bare LF after field", "GET / HTTP/1.1\r\nHost: a\n\r\n", .status = 400},
    {"bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", .status = 400},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", .status = 400},
    {"bare CR in name", "GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n", .status = 400},
    {"bare CR line", "GET / HTTP/1.1\r\n" H11 "\r\r\n\r\n", .status = 400},
    {"obs-fold with space", "GET / HTTP/1.1\r\n" H11 "X: a\r\n b\r\n\r\n", .status = 400},
    {"obs-fold with tab", "GET / HTTP/1.1\r\n" H11 "X: a\r\n\tb\r\n\r\n", .status = 400},
    {"space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", .status = 400},
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", .status = 400},
    {"tab before colon", "GET / HTTP/1.1\r\n" H11 "X\t: a\r\n\r\n", .status = 400},
    {"space before colon, content-length",
     "POST / HTTP/1.1\r\n" H11 "Content-Length : 5\r\n\r\nhello", .status = 400},
    {"empty name", "GET / HTTP/1.1\r\n" H11 ": a\r\n\r\n", .status = 400},
    {"invalid name character", "GET / HTTP/1.1\r\n" H11 "X(y): a\r\n\r\n", .status = 400},
    {"non-ASCII name", "GET / HTTP/1.1\r\n" H11 "X\xc3\xa9: a\r\n\r\n", .status = 400},
    {"no colon", "GET / HTTP/1.1\r\n" H11 "Xfoo\r\n\r\n", .status = 400},
    {"NUL in value", LIT("GET / HTTP/1.1\r\n" H11 "X: a\0b\r\n\r\n"), .status = 400},
    {"control character in value", "GET / HTTP/1.1\r\n" H11 "X: a\x01\r\n\r\n", .status = 400},
    {"escape in value", "GET / HTTP/1.1\r\n" H11 "X: \x1b[31m\r\n\r\n", .status = 400},
    {"DEL in value", "GET / HTTP/1.1\r\n" H11 "X: a\x7f\r\n\r\n", .status = 400},
    {"vertical tab in value", "GET / HTTP/1.1\r\n" H11 "X: a\vb\r\n\r\n", .status = 400},
    {"missing host", "GET / HTTP/1.1\r\n\r\n", .status = 400},
    {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", .status = 400},
    {"two hosts, case", "GET / HTTP/1.0\r\nHost: a\r\nhOST: b\r\n\r\n", .status = 400},
    {"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .status = 400},
    {"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .status = 400},
    {"host with userinfo", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", .status = 400},
    {"host with obs-text", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", .status = 400},

    /* ---- Content-Length ---- */
    {"content-length letters", "POST / HTTP/1.1\r\n" H11 "Content-Length: abc\r\n\r\n",
     .status = 400},
    {"content-length negative", "POST / HTTP/1.1\r\n" H11 "Content-Length: -1\r\n\r\n",
     .status = 400},
    {"content-length plus", "POST / HTTP/1.1\r\n" H11 "Content-Length: +1\r\n\r\nx", .status = 400},
    {"content-length hex", "POST / HTTP/1.1\r\n" H11 "Content-Length: 0x1\r\n\r\nx", .status = 400},
    {"content-length empty", "POST / HTTP/1.1\r\n" H11 "Content-Length:\r\n\r\n", .status = 400},
    {"content-length inner space", "POST / HTTP/1.1\r\n" H11 "Content-Length: 1 1\r\n\r\n",
     .status = 400},
    {"content-length list", "POST / HTTP/1.1\r\n" H11 "Content-Length: 1, 1\r\n\r\nx",
     .status = 400},
    {"content-length duplicate equal",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", .status = 400},
    {"content-length duplicate different",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 1\r\ncontent-length: 2\r\n\r\nxy", .status = 400},
    {"content-length overflow",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 99999999999999999999999\r\n\r\n", .status = 400},
    {"content-length int64 max + 1",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 9223372036854775808\r\n\r\n", .status = 400},
    {"content-length int64 max",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 9223372036854775807\r\n\r\n", .status = 413},
    {"content-length over max_body", "POST / HTTP/1.1\r\n" H11 "Content-Length: 1048577\r\n\r\n",
     .status = 413},
    {"content-length with transfer-encoding",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     .status = 400},
    {"transfer-encoding with content-length",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     .status = 400},
    {"content-length with unknown transfer-encoding",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
     .status = 400},

    /* ---- Transfer-Encoding ---- */
    {"transfer-encoding in http/1.0",
     "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\n",
     .status = 400},
    {"transfer-encoding gzip", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip\r\n\r\n",
     .status = 501},
    {"transfer-encoding identity", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: identity\r\n\r\n",
     .status = 501},
    {"transfer-encoding unknown", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: foo\r\n\r\n",
     .status = 501},
    {"transfer-encoding chunked then gzip",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", .status = 501},
    {"transfer-encoding gzip then chunked",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", .status = 501},
    {"transfer-encoding gzip then chunked, two fields",
     "POST / HTTP/1.1\r\n" H11
     "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     .status = 501},
    {"transfer-encoding chunked then gzip, two fields",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     .status = 501},
    {"transfer-encoding chunked twice",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
     .status = 400},
    {"transfer-encoding chunked twice, two fields",
     "POST / HTTP/1.1\r\n" H11
     "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     .status = 400},
    {"transfer-encoding with parameter",
     "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", .status = 501},
    {"transfer-encoding empty", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\r\n\r\n",
     .status = 400},
    {"transfer-encoding garbage", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked x\r\n\r\n",
     .status = 400},
    {"transfer-encoding quoted", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n",
     .status = 400},
    {"transfer-encoding xchunked", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: xchunked\r\n\r\n",
     .status = 501},

/* ---- chunked framing ---- */
#define CHUNKED_HEAD "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
    {"chunk size empty", CHUNKED_HEAD "\r\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size not hex", CHUNKED_HEAD "g\r\n", .status = 400},
    {"chunk size 0x prefix", CHUNKED_HEAD "0x5\r\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size negative", CHUNKED_HEAD "-5\r\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size leading space", CHUNKED_HEAD " 5\r\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size trailing space", CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size 16 digits", CHUNKED_HEAD "0000000000000005\r\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size overflow", CHUNKED_HEAD "ffffffffffffffffff\r\n", .status = 400},
    {"chunk size over max_body", CHUNKED_HEAD "100001\r\n", .status = 413},
    {"chunk size bare LF", CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk size bare CR", CHUNKED_HEAD "5\rhello\r\n0\r\n\r\n", .status = 400},
    {"chunk data too long", CHUNKED_HEAD "5\r\nhelloX\r\n0\r\n\r\n", .status = 400},
    {"chunk data bare LF", CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", .status = 400},
    {"chunk data CR without LF", CHUNKED_HEAD "5\r\nhello\rX0\r\n\r\n", .status = 400},
    {"chunk extension control character", CHUNKED_HEAD "5;a\x01\r\nhello\r\n0\r\n\r\n",
     .status = 400},
    {"chunk extension bare LF", CHUNKED_HEAD "5;a\nhello\r\n0\r\n\r\n", .status = 400},
    {"chunk extension bare CR", CHUNKED_HEAD "5;a\rhello\r\n0\r\n\r\n", .status = 400},
    {"last chunk bare LF", CHUNKED_HEAD "0\n\r\n", .status = 400},
    {"final CRLF bare LF", CHUNKED_HEAD "0\r\n\n", .status = 400},
    {"trailer bad name", CHUNKED_HEAD "0\r\nX y: z\r\n\r\n", .status = 400},
    {"trailer obs-fold", CHUNKED_HEAD "0\r\nX: y\r\n z\r\n\r\n", .status = 400},
    {"trailer control character", CHUNKED_HEAD "0\r\nX: \x02\r\n\r\n", .status = 400},
    {"trailer bare LF", CHUNKED_HEAD "0\r\nX: y\n\r\n", .status = 400},

    /* ---- limits ---- */
    {"uri too long", "GET /23456789012345678901234567890123 HTTP/1.1\r\n" H11 "\r\n", .lim = &small,
     .status = 414},
    {"uri too long, line unfinished", "GET /23456789012345678901234567890123", .lim = &small,
     .status = 414},
    {"header section too large",
     "GET / HTTP/1.1\r\n" H11 "X: 0123456789012345678901234567890123456789012345678901234567\r\n"
     "Y: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
     "Z: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
     "W: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
     .lim = &small, .status = 431},
    {"header section too large, unfinished",
     "GET / HTTP/1.1\r\n" H11 "X: 0123456789012345678901234567890123456789012345678901234567"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789",
     .lim = &small, .status = 431},
    {"method alone too large",
     "GETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGET"
     "GETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGET"
     "GETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGET",
     .lim = &small, .status = 431},
    {"too many fields",
     "GET / HTTP/1.1\r\n" H11 "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
     "F: 6\r\nG: 7\r\nH: 8\r\n\r\n",
     .lim = &small, .status = 431},
    {"too many fields with trailers",
     CHUNKED_HEAD "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
                  "F: 6\r\nG: 7\r\n\r\n",
     .lim = &small, .status = 431},
    {"trailer section too large",
     CHUNKED_HEAD
     "0\r\n"
     "X: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
     "Y: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
     "Z: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
     "W: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
     .lim = &small, .status = 431},
    {"content-length over small max_body",
     "POST / HTTP/1.1\r\n" H11 "Content-Length: 65\r\n"
     "\r\n",
     .lim = &small, .status = 413},
    {"chunked over small max_body",
     CHUNKED_HEAD "20\r\n01234567890123456789012345678901\r\n"
                  "21\r\n",
     .lim = &small, .status = 413},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* ---- rendering a result as text ------------------------------------------------------- */

struct text {
    char s[16384];
    size_t n;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (t->n < sizeof(t->s)) {
        int r = vsnprintf(t->s + t->n, sizeof(t->s) - t->n, fmt, ap);
        if (r > 0)
            t->n += (size_t)r;
    }
    va_end(ap);
}

static void put_span(struct text *t, const char *label, struct ap_span sp, const char *base)
{
    if (!sp.p) {
        put(t, " %s=null", label);
        return;
    }
    put(t, " %s=[%td+%zu]'", label, sp.p - base, sp.len);
    for (size_t i = 0; i < sp.len; i++) {
        unsigned char c = (unsigned char)sp.p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            put(t, "%c", c);
        else
            put(t, "\\x%02x", c);
    }
    put(t, "'");
}

static void render(struct text *t, int rc, const struct ap_http_parser *p,
                   const struct ap_http_req *r, const char *base)
{
    t->n = 0;
    t->s[0] = '\0';
    put(t, "rc=%d", rc);
    if (rc == AP_EHTTP) {
        put(t, " status=%d error=%s", p->status, p->error);
        return;
    }
    if (rc != AP_OK)
        return;
    put(t, " method=%d", (int)r->method);
    put_span(t, "mname", r->method_name, base);
    put_span(t, "target", r->target, base);
    put_span(t, "path", r->path, base);
    put_span(t, "query", r->query, base);
    put(t, " minor=%d nh=%u nt=%u", r->minor_version, r->nheaders, r->ntrailers);
    for (unsigned i = 0; i < r->nheaders + r->ntrailers; i++) {
        put_span(t, "name", r->headers[i].name, base);
        put_span(t, "value", r->headers[i].value, base);
    }
    put_span(t, "host", r->host, base);
    put_span(t, "ctype", r->content_type, base);
    put(t, " cl=%lld chunked=%d ka=%d expect=%d", (long long)r->content_length, r->chunked,
        r->keep_alive, r->expect_continue);
    put_span(t, "body", r->body, base);
    put(t, " consumed=%zu", r->consumed);
}

/* ---- drivers ------------------------------------------------------------------------------- */

struct outcome {
    int rc;
    int head_done; /* how many times AP_HTTP_HEAD_DONE was returned */
    struct ap_http_req req;
    struct text text;
    char *buf; /* the buffer req points into (whole runs only; freed by the next run) */
};

static size_t case_len(const struct http_case *c)
{
    return c->in_len ? c->in_len : strlen(c->in);
}

/* One call, and the call that must follow AP_HTTP_HEAD_DONE. */
static int parse_call(struct ap_http_parser *p, char *buf, size_t len, struct ap_http_req *req,
                      int *head_done)
{
    int rc = ap_http_parse(p, buf, len, req);
    if (rc == AP_HTTP_HEAD_DONE) {
        (*head_done)++;
        assert_true(req->body.len == 0 && req->consumed == 0);
        rc = ap_http_parse(p, buf, len, req);
        assert_int_equal(rc, AP_EAGAIN);
    }
    return rc;
}

static void run_whole(const struct http_case *c, struct outcome *o)
{
    size_t n = case_len(c);
    char *buf = malloc(n);
    struct ap_http_parser p;
    assert_non_null(buf);
    memcpy(buf, c->in, n);
    ap_http_parser_init(&p, c->lim);
    o->head_done = 0;
    o->rc = parse_call(&p, buf, n, &o->req, &o->head_done);
    render(&o->text, o->rc, &p, &o->req, buf);
    free(o->buf);
    o->buf = buf;
}

/* One byte at a time, the buffer moved to a new allocation before each byte. */
static void run_bytewise(const struct http_case *c, struct outcome *o)
{
    size_t n = case_len(c);
    char *buf = NULL;
    struct ap_http_parser p;
    ap_http_parser_init(&p, c->lim);
    o->head_done = 0;
    o->rc = AP_EAGAIN;
    for (size_t k = 1; k <= n && o->rc == AP_EAGAIN; k++) {
        char *nb = malloc(k);
        assert_non_null(nb);
        if (buf)
            memcpy(nb, buf, k - 1);
        nb[k - 1] = c->in[k - 1];
        free(buf);
        buf = nb;
        o->rc = parse_call(&p, buf, k, &o->req, &o->head_done);
    }
    render(&o->text, o->rc, &p, &o->req, buf);
    free(buf);
}

/* First s bytes in a buffer of exactly s bytes, then all of them in a new buffer. */
static void run_split(const struct http_case *c, size_t s, struct outcome *o)
{
    size_t n = case_len(c);
    char *buf = malloc(s ? s : 1);
    struct ap_http_parser p;
    assert_non_null(buf);
    memcpy(buf, c->in, s);
    ap_http_parser_init(&p, c->lim);
    o->head_done = 0;
    o->rc = parse_call(&p, buf, s, &o->req, &o->head_done);
    if (o->rc == AP_EAGAIN) {
        char *nb = malloc(n);
        assert_non_null(nb);
        memcpy(nb, buf, s);
        memcpy(nb + s, c->in + s, n - s);
        free(buf);
        buf = nb;
        o->rc = parse_call(&p, buf, n, &o->req, &o->head_done);
    }
    render(&o->text, o->rc, &p, &o->req, buf);
    free(buf);
}

static void expect_same(const struct http_case *c, const char *mode, size_t at,
                        const struct outcome *a, const struct outcome *b)
{
    if (strcmp(a->text.s, b->text.s) != 0)
        fail_msg("%s: %s (at %zu) differs from whole:\n  whole: %s\n  %s: %s", c->name, mode, at,
                 a->text.s, mode, b->text.s);
}

/* "Name: value\n" for fields [from, to). */
static void render_fields(struct text *t, const struct ap_http_req *r, unsigned from, unsigned to)
{
    t->n = 0;
    t->s[0] = '\0';
    for (unsigned i = from; i < to; i++)
        put(t, "%.*s: %.*s\n", AP_SPAN_FMT(r->headers[i].name), AP_SPAN_FMT(r->headers[i].value));
}

static void expect_span(const struct http_case *c, const char *what, struct ap_span sp,
                        const char *want)
{
    if (!want)
        return;
    if (strcmp(want, "-") == 0) {
        if (sp.p != NULL || sp.len != 0)
            fail_msg("%s: %s should be absent, is '%.*s'", c->name, what, AP_SPAN_FMT(sp));
        return;
    }
    if (!sp.p || !ap_span_eq_cstr(sp, want))
        fail_msg("%s: %s is '%.*s', expected '%s'", c->name, what, sp.p ? (int)sp.len : 0,
                 sp.p ? sp.p : "", want);
}

static void expect_tri(const struct http_case *c, const char *what, bool got, int want)
{
    if (want != ANY && got != (want == YES))
        fail_msg("%s: %s is %d, expected %d", c->name, what, got, want == YES);
}

static void check_expectations(const struct http_case *c, const struct outcome *o)
{
    const struct ap_http_req *r = &o->req;
    size_t n = case_len(c);

    if (c->status == EAGAIN_ROW) {
        if (o->rc != AP_EAGAIN && o->rc != AP_HTTP_HEAD_DONE)
            fail_msg("%s: expected AP_EAGAIN, got %s", c->name, o->text.s);
        return;
    }
    if (c->status) {
        if (o->rc != AP_EHTTP || !strstr(o->text.s, "status="))
            fail_msg("%s: expected status %d, got %s", c->name, c->status, o->text.s);
        char want[32];
        snprintf(want, sizeof(want), "status=%d ", c->status);
        if (!strstr(o->text.s, want))
            fail_msg("%s: expected status %d, got %s", c->name, c->status, o->text.s);
        return;
    }
    if (o->rc != AP_OK)
        fail_msg("%s: expected AP_OK, got %s", c->name, o->text.s);
    if (o->head_done)
        fail_msg("%s: AP_HTTP_HEAD_DONE for a complete request", c->name);
    if (r->consumed != (c->consumed ? c->consumed : n))
        fail_msg("%s: consumed %zu, expected %zu", c->name, r->consumed,
                 c->consumed ? c->consumed : n);
    if (c->method_name) {
        expect_span(c, "method name", r->method_name, c->method_name);
        if (r->method != c->method)
            fail_msg("%s: method %d, expected %d", c->name, (int)r->method, (int)c->method);
    }
    expect_span(c, "target", r->target, c->target);
    expect_span(c, "path", r->path, c->path);
    expect_span(c, "query", r->query, c->query);
    if (c->version && r->minor_version != c->version - 10)
        fail_msg("%s: minor version %d", c->name, r->minor_version);
    struct text t;
    if (c->hdrs) {
        render_fields(&t, r, 0, r->nheaders);
        if (strcmp(t.s, c->hdrs) != 0)
            fail_msg("%s: headers\n%s\nexpected\n%s", c->name, t.s, c->hdrs);
    }
    if (c->trls) {
        render_fields(&t, r, r->nheaders, r->nheaders + r->ntrailers);
        if (strcmp(t.s, c->trls) != 0)
            fail_msg("%s: trailers\n%s\nexpected\n%s", c->name, t.s, c->trls);
    }
    expect_span(c, "host", r->host, c->host);
    expect_span(c, "content-type", r->content_type, c->ctype);
    if (c->body && (r->body.len != strlen(c->body) || memcmp(r->body.p, c->body, r->body.len)))
        fail_msg("%s: body '%.*s', expected '%s'", c->name, AP_SPAN_FMT(r->body), c->body);
    if (c->cl_set && r->content_length != c->cl)
        fail_msg("%s: content_length %lld", c->name, (long long)r->content_length);
    expect_tri(c, "chunked", r->chunked, c->chunked);
    expect_tri(c, "keep_alive", r->keep_alive, c->ka);
    expect_tri(c, "expect_continue", r->expect_continue, c->expect);
}

/* ---- table tests ------------------------------------------------------------------------ */

static void test_table_whole(void **state)
{
    (void)state;
    static struct outcome o;
    for (size_t i = 0; i < NCASES; i++) {
        run_whole(&cases[i], &o);
        check_expectations(&cases[i], &o);
    }
}

static bool has_body(const struct outcome *o)
{
    return o->rc == AP_OK && (o->req.chunked || o->req.content_length > 0);
}

static void test_table_bytewise(void **state)
{
    (void)state;
    static struct outcome whole, o;
    for (size_t i = 0; i < NCASES; i++) {
        run_whole(&cases[i], &whole);
        run_bytewise(&cases[i], &o);
        expect_same(&cases[i], "bytewise", 0, &whole, &o);
        /* HEAD_DONE exactly once when a body is still to come. */
        if (o.rc == AP_OK ? o.head_done != (has_body(&o) ? 1 : 0) : o.head_done > 1)
            fail_msg("%s: HEAD_DONE returned %d times", cases[i].name, o.head_done);
    }
}

static void test_table_split(void **state)
{
    (void)state;
    static struct outcome whole, o;
    for (size_t i = 0; i < NCASES; i++) {
        run_whole(&cases[i], &whole);
        for (size_t s = 0; s <= case_len(&cases[i]); s++) {
            run_split(&cases[i], s, &o);
            expect_same(&cases[i], "split", s, &whole, &o);
            assert_true(o.head_done <= 1);
        }
    }
}

/* Every prefix of every case right before a PROT_NONE page, and right after one. */
static void test_table_guard_page(void **state)
{
    (void)state;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t maxlen = 0;
    for (size_t i = 0; i < NCASES; i++)
        if (case_len(&cases[i]) > maxlen)
            maxlen = case_len(&cases[i]);
    size_t data_pages = (maxlen + pg - 1) / pg;
    size_t total = (data_pages + 2) * pg;
    char *map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map, pg, PROT_NONE), 0);
    assert_int_equal(mprotect(map + (data_pages + 1) * pg, pg, PROT_NONE), 0);
    char *lo = map + pg;                    /* first readable byte */
    char *hi = map + (data_pages + 1) * pg; /* first unreadable byte */
    static struct ap_http_req req;

    for (size_t i = 0; i < NCASES; i++) {
        const struct http_case *c = &cases[i];
        for (size_t k = 0; k <= case_len(c); k++) {
            char *starts[2] = {hi - k, lo};
            for (int w = 0; w < 2; w++) {
                struct ap_http_parser p;
                int hd = 0;
                memcpy(starts[w], c->in, k);
                ap_http_parser_init(&p, c->lim);
                int rc = parse_call(&p, starts[w], k, &req, &hd);
                assert_true(rc == AP_OK || rc == AP_EAGAIN || rc == AP_EHTTP);
            }
        }
    }
    munmap(map, total);
}

/* ---- pipelining ------------------------------------------------------------------------- */

#define NPIPE 150

struct pipe_req {
    enum ap_http_method method;
    char body[32];
};

static size_t build_pipeline(char *buf, size_t cap, struct pipe_req *want)
{
    size_t n = 0;
    for (int i = 0; i < NPIPE; i++) {
        int r;
        switch (i % 4) {
        case 0:
            want[i].method = AP_HTTP_GET;
            want[i].body[0] = '\0';
            r = snprintf(buf + n, cap - n, "GET /item/%d?x=%d HTTP/1.1\r\nHost: h\r\n\r\n", i, i);
            break;
        case 1:
            want[i].method = AP_HTTP_POST;
            snprintf(want[i].body, sizeof(want[i].body), "body-%d", i);
            r = snprintf(buf + n, cap - n,
                         "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n%s",
                         strlen(want[i].body), want[i].body);
            break;
        case 2:
            want[i].method = AP_HTTP_PUT;
            snprintf(want[i].body, sizeof(want[i].body), "chunk-%d", i);
            r = snprintf(buf + n, cap - n,
                         "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "6\r\nchunk-\r\n%zx;ext=1\r\n%d\r\n0\r\nX-T: %d\r\n\r\n",
                         strlen(want[i].body) - 6, i, i);
            break;
        default:
            want[i].method = AP_HTTP_DELETE;
            want[i].body[0] = '\0';
            r = snprintf(buf + n, cap - n, "\r\nDELETE /d/%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
            break;
        }
        assert_true(r > 0 && (size_t)r < cap - n);
        n += (size_t)r;
    }
    return n;
}

static void check_pipe_req(const struct ap_http_req *r, const struct pipe_req *w)
{
    assert_int_equal(r->method, w->method);
    assert_int_equal(r->body.len, strlen(w->body));
    assert_memory_equal(r->body.p, w->body, r->body.len);
    assert_true(ap_span_eq_cstr(r->host, "h"));
    assert_true(r->keep_alive);
    if (w->method == AP_HTTP_PUT) {
        assert_int_equal(r->ntrailers, 1);
        assert_true(ap_span_eq_cstr(r->headers[r->nheaders].name, "X-T"));
    }
}

static void test_pipelined(void **state)
{
    (void)state;
    static char buf[64 * 1024];
    static struct pipe_req want[NPIPE];
    static struct ap_http_req req;
    size_t n = build_pipeline(buf, sizeof(buf), want);
    size_t off = 0;
    struct ap_http_parser p;

    for (int i = 0; i < NPIPE; i++) {
        ap_http_parser_init(&p, NULL);
        assert_int_equal(ap_http_parse(&p, buf + off, n - off, &req), AP_OK);
        check_pipe_req(&req, &want[i]);
        assert_true(req.consumed > 0 && req.consumed <= n - off);
        off += req.consumed;
    }
    assert_int_equal(off, n);
}

/* The same pipeline arriving 7 bytes per read, as a server would see it. */
static void test_pipelined_incremental(void **state)
{
    (void)state;
    static char buf[64 * 1024];
    static struct pipe_req want[NPIPE];
    static struct ap_http_req req;
    size_t n = build_pipeline(buf, sizeof(buf), want);
    size_t off = 0, have = 0;
    int done = 0, head_done = 0;
    struct ap_http_parser p;

    ap_http_parser_init(&p, NULL);
    while (have < n) {
        have = have + 7 < n ? have + 7 : n;
        for (;;) {
            int rc = ap_http_parse(&p, buf + off, have - off, &req);
            if (rc == AP_HTTP_HEAD_DONE) {
                head_done++;
                continue;
            }
            if (rc == AP_EAGAIN)
                break;
            assert_int_equal(rc, AP_OK);
            check_pipe_req(&req, &want[done]);
            off += req.consumed;
            done++;
            ap_http_parser_init(&p, NULL);
        }
    }
    assert_int_equal(done, NPIPE);
    assert_int_equal(off, n);
    assert_true(head_done > 0);
}

/* ---- focused tests ----------------------------------------------------------------------- */

static void test_head_done(void **state)
{
    (void)state;
    static struct ap_http_req req;
    struct ap_http_parser p;
    char buf[256];
    const char *head = "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                       "Content-Length: 5\r\n\r\n";
    size_t hl = strlen(head);

    memcpy(buf, head, hl);
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, hl - 1, &req), AP_EAGAIN);
    assert_int_equal(ap_http_parse(&p, buf, hl, &req), AP_HTTP_HEAD_DONE);
    assert_int_equal(req.method, AP_HTTP_POST);
    assert_true(req.expect_continue);
    assert_int_equal(req.content_length, 5);
    assert_int_equal(req.body.len, 0);
    assert_true(ap_span_eq_cstr(req.path, "/up"));
    /* once only */
    assert_int_equal(ap_http_parse(&p, buf, hl, &req), AP_EAGAIN);
    memcpy(buf + hl, "hel", 3);
    assert_int_equal(ap_http_parse(&p, buf, hl + 3, &req), AP_EAGAIN);
    memcpy(buf + hl + 3, "lo", 2);
    assert_int_equal(ap_http_parse(&p, buf, hl + 5, &req), AP_OK);
    assert_true(ap_span_eq_cstr(req.body, "hello"));
    assert_int_equal(req.consumed, hl + 5);

    /* No HEAD_DONE when the body is there already, nor without a body. */
    memcpy(buf + hl, "hello", 5);
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, hl + 5, &req), AP_OK);
    const char *get = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, (char *)memcpy(buf, get, strlen(get)), strlen(get), &req),
                     AP_OK);

    /* Chunked: HEAD_DONE at the end of the head; the body decodes across calls. */
    const char *ch = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n";
    size_t chl = strlen(ch);
    memcpy(buf, ch, chl);
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, chl, &req), AP_HTTP_HEAD_DONE);
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
    assert_int_equal(ap_http_parse(&p, buf, chl, &req), AP_EAGAIN);
    memcpy(buf + chl, "0\r\n\r\n", 5);
    assert_int_equal(ap_http_parse(&p, buf, chl + 5, &req), AP_OK);
    assert_true(ap_span_eq_cstr(req.body, "abc"));
    assert_int_equal(req.consumed, chl + 5);
}

static void test_chunked_trailers_and_extensions(void **state)
{
    (void)state;
    static struct ap_http_req req;
    struct ap_http_parser p;
    char buf[512];
    const char *in = "POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: text/plain\r\n\r\n"
                     "7;foo=bar;baz\r\nMozilla\r\n"
                     "9 ; q=\"x y\"\r\nDeveloper\r\n"
                     "7\r\nNetwork\r\n"
                     "0;end\r\n"
                     "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\nHost: evil\r\n\r\n";
    size_t n = strlen(in);
    memcpy(buf, in, n);
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, n, &req), AP_OK);
    assert_true(ap_span_eq_cstr(req.body, "MozillaDeveloperNetwork"));
    assert_ptr_equal(req.body.p, buf + (strstr(in, "\r\n\r\n") - in) + 4);
    assert_int_equal(req.nheaders, 3);
    assert_int_equal(req.ntrailers, 2);
    assert_true(ap_span_eq_cstr(req.headers[3].name, "Expires"));
    assert_true(ap_span_eq_cstr(req.headers[3].value, "Wed, 21 Oct 2015 07:28:00 GMT"));
    assert_true(ap_span_eq_cstr(req.headers[4].name, "Host"));
    /* Trailers never stand in for headers. */
    assert_true(ap_span_eq_cstr(req.host, "h"));
    assert_null(ap_http_find_header(&req, "Expires"));
    assert_non_null(ap_http_find_header(&req, "content-type"));
    assert_true(ap_span_eq_cstr(req.content_type, "text/plain"));
    assert_int_equal(req.consumed, n);
    /* Trailer spans survive the in-place decoding. */
    assert_memory_equal(req.headers[4].value.p, "evil", 4);
}

static void test_body_limits(void **state)
{
    (void)state;
    static char buf[4096];
    static struct ap_http_req req;
    struct ap_http_limits lim;
    struct ap_http_parser p;
    ap_http_limits_default(&lim);
    lim.max_body = 1000;

    /* Content-Length: 1000 ok, 1001 refused as soon as the head is complete. */
    size_t hl = (size_t)snprintf(buf, sizeof(buf),
                                 "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n");
    memset(buf + hl, 'x', 1000);
    ap_http_parser_init(&p, &lim);
    assert_int_equal(ap_http_parse(&p, buf, hl + 1000, &req), AP_OK);
    assert_int_equal(req.body.len, 1000);
    hl = (size_t)snprintf(buf, sizeof(buf),
                          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n");
    ap_http_parser_init(&p, &lim);
    assert_int_equal(ap_http_parse(&p, buf, hl, &req), AP_EHTTP);
    assert_int_equal(p.status, 413);
    assert_non_null(p.error);
    /* sticky */
    assert_int_equal(ap_http_parse(&p, buf, hl, &req), AP_EHTTP);

    /* Chunked: 1000 decoded bytes in 10 chunks ok; one byte more refused at its size line. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(
            buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 10; i++) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "64\r\n");
            memset(buf + n, 'a' + i, 100);
            n += 100;
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
        }
        if (extra)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "1\r\n");
        else
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "0\r\n\r\n");
        ap_http_parser_init(&p, &lim);
        int rc = ap_http_parse(&p, buf, n, &req);
        if (extra) {
            assert_int_equal(rc, AP_EHTTP);
            assert_int_equal(p.status, 413);
        } else {
            assert_int_equal(rc, AP_OK);
            assert_int_equal(req.body.len, 1000);
            for (int i = 0; i < 10; i++)
                assert_int_equal(req.body.p[i * 100 + 99], 'a' + i);
        }
    }

    /* max_body 0: any body is too large, an empty one is fine. */
    lim.max_body = 0;
    hl = (size_t)snprintf(buf, sizeof(buf),
                          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    ap_http_parser_init(&p, &lim);
    assert_int_equal(ap_http_parse(&p, buf, hl, &req), AP_OK);
}

/* Many one-byte chunks with long extensions: the framing may not grow without bound. */
static void test_chunk_framing_limit(void **state)
{
    (void)state;
    static char buf[1 << 20];
    static struct ap_http_req req;
    struct ap_http_limits lim;
    struct ap_http_parser p;
    ap_http_limits_default(&lim);
    lim.max_body = 1000;
    size_t n = (size_t)snprintf(buf, sizeof(buf),
                                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    while (n < sizeof(buf) - 5000) {
        memcpy(buf + n, "1;", 2);
        memset(buf + n + 2, 'e', 4000);
        memcpy(buf + n + 4002, "\r\nx\r\n", 5);
        n += 4007;
    }
    ap_http_parser_init(&p, &lim);
    assert_int_equal(ap_http_parse(&p, buf, n, &req), AP_EHTTP);
    assert_int_equal(p.status, 413);

    /* Over-long chunk-size lines: in the extension, and in BWS before it. */
    n = (size_t)snprintf(buf, sizeof(buf),
                         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1");
    memset(buf + n, ' ', 5000);
    ap_http_parser_init(&p, &lim);
    assert_int_equal(ap_http_parse(&p, buf, n + 5000, &req), AP_EHTTP);
    assert_int_equal(p.status, 400);
    assert_string_equal(p.error, "chunk size line too long");

    n = (size_t)snprintf(buf, sizeof(buf),
                         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(buf + n, 'e', 5000);
    ap_http_parser_init(&p, &lim);
    assert_int_equal(ap_http_parse(&p, buf, n + 5000, &req), AP_EHTTP);
    assert_int_equal(p.status, 400);
    assert_string_equal(p.error, "chunk size line too long");
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    static const struct {
        const char *version, *connection;
        bool want;
    } rows[] = {
        {"1.1", NULL, true},
        {"1.1", "close", false},
        {"1.1", "Close", false},
        {"1.1", "keep-alive", true},
        {"1.1", "upgrade, close", false},
        {"1.1", "xclose", true},
        {"1.0", NULL, false},
        {"1.0", "keep-alive", true},
        {"1.0", "KEEP-ALIVE", true},
        {"1.0", "close", false},
        {"1.0", "keep-alive, close", false},
        {"1.0", "keep-alive-x", false},
    };
    static struct ap_http_req req;
    char buf[256];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct ap_http_parser p;
        int n;
        if (rows[i].connection)
            n = snprintf(buf, sizeof(buf), "GET / HTTP/%s\r\nHost: h\r\nConnection: %s\r\n\r\n",
                         rows[i].version, rows[i].connection);
        else
            n = snprintf(buf, sizeof(buf), "GET / HTTP/%s\r\nHost: h\r\n\r\n", rows[i].version);
        ap_http_parser_init(&p, NULL);
        assert_int_equal(ap_http_parse(&p, buf, (size_t)n, &req), AP_OK);
        if (req.keep_alive != rows[i].want)
            fail_msg("HTTP/%s Connection: %s -> keep_alive %d", rows[i].version,
                     rows[i].connection ? rows[i].connection : "(none)", req.keep_alive);
    }
}

/* Default limits: 414 and 431 are reported before the line or the head ends. */
static void test_limits_early(void **state)
{
    (void)state;
    static char buf[40000];
    static struct ap_http_req req;
    struct ap_http_parser p;

    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', sizeof(buf) - 5);
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, 4 + AP_HTTP_DEFAULT_MAX_URI, &req), AP_EAGAIN);
    assert_int_equal(ap_http_parse(&p, buf, 5 + AP_HTTP_DEFAULT_MAX_URI, &req), AP_EHTTP);
    assert_int_equal(p.status, 414);

    /* A header line that never ends. */
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    memset(buf + n, 'v', sizeof(buf) - n);
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, AP_HTTP_DEFAULT_MAX_HEADER_BYTES - 1, &req), AP_EAGAIN);
    assert_int_equal(ap_http_parse(&p, buf, AP_HTTP_DEFAULT_MAX_HEADER_BYTES, &req), AP_EHTTP);
    assert_int_equal(p.status, 431);

    /* A head of exactly max_header_bytes is fine, one more byte is not. */
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t total = AP_HTTP_DEFAULT_MAX_HEADER_BYTES + extra;
        n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: ");
        memset(buf + n, 'v', total - n - 4);
        memcpy(buf + total - 4, "\r\n\r\n", 4);
        ap_http_parser_init(&p, NULL);
        int rc = ap_http_parse(&p, buf, total, &req);
        if (extra) {
            assert_int_equal(rc, AP_EHTTP);
            assert_int_equal(p.status, 431);
        } else {
            assert_int_equal(rc, AP_OK);
            assert_int_equal(req.consumed, total);
        }
    }

    /* Header count: 64 fields ok, 65 refused. */
    for (int count = 64; count <= 65; count++) {
        n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
        for (int i = 1; i < count; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: %d\r\n", i, i);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
        ap_http_parser_init(&p, NULL);
        int rc = ap_http_parse(&p, buf, n, &req);
        if (count == 64) {
            assert_int_equal(rc, AP_OK);
            assert_int_equal(req.nheaders, 64);
        } else {
            assert_int_equal(rc, AP_EHTTP);
            assert_int_equal(p.status, 431);
        }
    }

    /* A run-time count above the compile-time bound is clamped. */
    struct ap_http_limits lim;
    ap_http_limits_default(&lim);
    lim.max_header_count = 100000;
    ap_http_parser_init(&p, &lim);
    assert_int_equal(p.limits.max_header_count, AP_HTTP_MAX_HEADERS);
}

/* A 16 KiB head fed one byte at a time finishes quickly (the scan never restarts). */
static void test_bytewise_large_head(void **state)
{
    (void)state;
    static char buf[AP_HTTP_DEFAULT_MAX_HEADER_BYTES];
    static struct ap_http_req req;
    struct ap_http_parser p;
    size_t total = sizeof(buf);
    size_t n = (size_t)snprintf(
        buf, sizeof(buf), "GET /%0*d HTTP/1.1\r\nHost: h\r\nX: ", AP_HTTP_DEFAULT_MAX_URI - 1, 0);
    memset(buf + n, 'v', total - n - 4);
    memcpy(buf + total - 4, "\r\n\r\n", 4);
    ap_http_parser_init(&p, NULL);
    for (size_t k = 1; k < total; k++)
        assert_int_equal(ap_http_parse(&p, buf, k, &req), AP_EAGAIN);
    assert_true(p.scan >= total - 1);
    assert_int_equal(ap_http_parse(&p, buf, total, &req), AP_OK);
    assert_int_equal(req.target.len, AP_HTTP_DEFAULT_MAX_URI);
}

static void test_caller_errors(void **state)
{
    (void)state;
    static struct ap_http_req req;
    struct ap_http_parser p;
    char buf[] = "GET / HTTP/1.1\r\n";
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, 0, &req), AP_EAGAIN);
    assert_int_equal(ap_http_parse(&p, buf, 10, &req), AP_EAGAIN);
    assert_int_equal(ap_http_parse(&p, buf, 5, &req), AP_EINVAL);
}

static void test_find_header(void **state)
{
    (void)state;
    static struct ap_http_req req;
    struct ap_http_parser p;
    char buf[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Tag: one\r\nx-tag: two\r\n\r\n";
    ap_http_parser_init(&p, NULL);
    assert_int_equal(ap_http_parse(&p, buf, strlen(buf), &req), AP_OK);
    const struct ap_http_header *h = ap_http_find_header(&req, "X-TAG");
    assert_non_null(h);
    assert_true(ap_span_eq_cstr(h->value, "one"));
    assert_null(ap_http_find_header(&req, "X-Ta"));
    assert_null(ap_http_find_header(&req, "X-Tags"));
    assert_non_null(ap_http_find_header(&req, "host"));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ap_http_method_name(AP_HTTP_GET), "GET");
    assert_string_equal(ap_http_method_name(AP_HTTP_HEAD), "HEAD");
    assert_string_equal(ap_http_method_name(AP_HTTP_POST), "POST");
    assert_string_equal(ap_http_method_name(AP_HTTP_PUT), "PUT");
    assert_string_equal(ap_http_method_name(AP_HTTP_PATCH), "PATCH");
    assert_string_equal(ap_http_method_name(AP_HTTP_DELETE), "DELETE");
    assert_string_equal(ap_http_method_name(AP_HTTP_OPTIONS), "OPTIONS");
    assert_non_null(ap_http_method_name(AP_HTTP_OTHER));
    assert_non_null(ap_http_method_name(AP_HTTP_METHOD_COUNT));

    static const struct {
        int status;
        const char *reason;
    } rows[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {0, "Unknown"},
        {306, "Unknown"},
        {999, "Unknown"},
        {-1, "Unknown"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_string_equal(ap_http_reason(rows[i].status), rows[i].reason);
    /* Every code of the ranges the server may answer has a reason. */
    static const int known[] = {100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303,
                                304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408,
                                409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 425, 426,
                                428, 429, 431, 451, 500, 501, 502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        assert_string_not_equal(ap_http_reason(known[i]), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_whole),
        cmocka_unit_test(test_table_bytewise),
        cmocka_unit_test(test_table_split),
        cmocka_unit_test(test_table_guard_page),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_pipelined_incremental),
        cmocka_unit_test(test_head_done),
        cmocka_unit_test(test_chunked_trailers_and_extensions),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_chunk_framing_limit),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_limits_early),
        cmocka_unit_test(test_bytewise_large_head),
        cmocka_unit_test(test_caller_errors),
        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("ap_http_parse", tests, NULL, NULL);
}
