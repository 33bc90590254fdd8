/*
 * ap_web: the dashboard's static files (web/dist, built by Vite) on the control plane.
 *
 * Declared in ap_api.h (the "dashboard" section), which states the contract; the choices are in
 * docs/adr (dashboard stack). In short:
 *   /static/<name>          hashed build output: immutable for a year (a new build has new names)
 *   /<file>.<ext>           other top-level files of the build (favicon, robots.txt): no-cache
 *   anything else           index.html (no-cache): the single-page app's client routes
 *   /api/..., /metrics..., /healthz..., /assets/...   never the app: JSON 404 (their own routes
 *                           are literal, so they win over this catch-all when they exist)
 * Every answer carries the security headers (CSP without inline script, nosniff, no framing,
 * no referrer across origins). A gzip sibling (<file>.gz, written by the build) is sent when the
 * client accepts gzip. Paths are checked before the file system is touched: only
 * [A-Za-z0-9._-] segments, no dot-leading segment (so no ".." and no hidden file), no '%', and
 * files are opened with O_NOFOLLOW below the root that was resolved once at start-up.
 *
 * Threads: ap_web_init on the main thread before the servers start; the handler on any
 * control-plane thread (it reads one file per request, which is fine there, never on the data
 * plane). Memory: the resolved root is process state; file contents are read into a malloc'd
 * buffer freed before the handler returns (the response body is copied by ap_http_respond).
 */
#include "ap_api.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../net/ap_server.h"

#ifndef AP_SOURCE_DIR
#define AP_SOURCE_DIR "."
#endif

#define CSP                                                                                        \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "     \
    "data: blob: http: "                                                                           \
    "https:; font-src 'self'; connect-src 'self'; frame-src 'self' http: https:; "                 \
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

static char web_root[PATH_MAX]; /* resolved at init; "" = no dashboard build found */

static const struct {
    const char *ext;
    const char *mime;
} MIME_TYPES[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff2", "font/woff2"},
    {"woff", "font/woff"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
};

const char *ap_web_mime(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof(MIME_TYPES) / sizeof(MIME_TYPES[0]); i++)
        if (strcmp(dot + 1, MIME_TYPES[i].ext) == 0)
            return MIME_TYPES[i].mime;
    return NULL;
}

int ap_web_init(const char *setting)
{
    char want[PATH_MAX];
    int n = setting && *setting ? snprintf(want, sizeof(want), "%s", setting)
                                : snprintf(want, sizeof(want), "%s/web/dist", AP_SOURCE_DIR);
    web_root[0] = '\0';
    if (n < 0 || (size_t)n >= sizeof(want))
        return AP_EINVAL;
    if (!realpath(want, web_root)) {
        web_root[0] = '\0';
        ap_log_warn("web: no dashboard at %s (run: cd web && npm ci && npm run build)", want);
        return AP_ENOTFOUND;
    }
    char index[PATH_MAX + 16];
    snprintf(index, sizeof(index), "%s/index.html", web_root);
    if (access(index, R_OK) != 0) {
        ap_log_warn("web: %s has no index.html (run: cd web && npm ci && npm run build)", web_root);
        web_root[0] = '\0';
        return AP_ENOTFOUND;
    }
    ap_log_info("web: serving the dashboard from %s", web_root);
    return AP_OK;
}

bool ap_web_path_ok(struct ap_span path)
{
    if (path.len == 0 || path.p[0] != '/' || path.len > 1024)
        return false;
    size_t seg_start = 1;
    for (size_t i = 1; i <= path.len; i++) {
        if (i == path.len || path.p[i] == '/') {
            if (i == seg_start && i != path.len)
                return false; /* empty segment "//" */
            if (i > seg_start && path.p[seg_start] == '.')
                return false; /* "..", ".", ".hidden" */
            seg_start = i + 1;
            continue;
        }
        char c = path.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* Is the path one of the server's own prefixes (never answered with the app)? */
static bool reserved(struct ap_span p)
{
    static const char *const prefixes[] = {"/api", "/metrics", "/healthz", "/readyz", "/assets"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (p.len >= n && memcmp(p.p, prefixes[i], n) == 0 && (p.len == n || p.p[n] == '/'))
            return true;
    }
    return false;
}

static bool accepts_gzip(const struct ap_http_req *req)
{
    const struct ap_http_header *h = ap_http_find_header(req, "Accept-Encoding");
    if (!h)
        return false;
    const char *v = h->value.p;
    size_t n = h->value.len;
    for (size_t i = 0; i + 4 <= n; i++) {
        if (!ap_span_eq_nocase(ap_span_make(v + i, 4), "gzip"))
            continue;
        /* "gzip;q=0" (or q=0.0, q=0.000) refuses it; any other weight accepts it */
        size_t j = i + 4;
        while (j < n && v[j] == ' ')
            j++;
        if (j + 4 > n || memcmp(v + j, ";q=0", 4) != 0)
            return true;
        j += 4;
        if (j < n && v[j] == '.')
            for (j++; j < n && v[j] == '0'; j++)
                ;
        return j < n && v[j] >= '1' && v[j] <= '9';
    }
    return false;
}

static bool etag_matches(const struct ap_http_req *req, const char *etag)
{
    const struct ap_http_header *h = ap_http_find_header(req, "If-None-Match");
    if (!h)
        return false;
    size_t n = strlen(etag);
    for (size_t i = 0; i + n <= h->value.len; i++)
        if (memcmp(h->value.p + i, etag, n) == 0)
            return true;
    return h->value.len == 1 && h->value.p[0] == '*';
}

static void security_headers(struct ap_http_exchange *x)
{
    ap_http_add_header(x, "Content-Security-Policy", AP_SPAN_LIT(CSP));
    ap_http_add_header(x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
    ap_http_add_header(x, "X-Frame-Options", AP_SPAN_LIT("DENY"));
    ap_http_add_header(x, "Referrer-Policy", AP_SPAN_LIT("same-origin"));
    ap_http_add_header(x, "Cross-Origin-Opener-Policy", AP_SPAN_LIT("same-origin"));
}

/* Opens root/rel as a regular file (no symlink as the last component). fd or -1. */
static int open_file(const char *rel, struct stat *st)
{
    char path[PATH_MAX * 2];
    int n = snprintf(path, sizeof(path), "%s/%s", web_root, rel);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size > AP_WEB_FILE_MAX) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one file (rel: relative to the root, already checked). */
static int send_file(struct ap_http_exchange *x, const char *rel, bool immutable)
{
    const char *mime = ap_web_mime(rel);
    struct stat st;
    char gzrel[1100], etag[96];
    bool gz = false;
    int fd = -1, rc;
    char *buf = NULL;

    if (!mime)
        mime = "application/octet-stream";
    if (accepts_gzip(&x->req) && snprintf(gzrel, sizeof(gzrel), "%s.gz", rel) < (int)sizeof(gzrel))
        gz = (fd = open_file(gzrel, &st)) >= 0;
    if (fd < 0 && (fd = open_file(rel, &st)) < 0) {
        security_headers(x);
        return ap_http_respond_error(x, 404, "not_found", "no such file");
    }
    snprintf(etag, sizeof(etag), "\"%llx-%llx%s\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec,
             gz ? "-gz" : "");
    security_headers(x);
    ap_http_add_header(x, "Cache-Control",
                       immutable ? AP_SPAN_LIT("public, max-age=31536000, immutable")
                                 : AP_SPAN_LIT("no-cache"));
    ap_http_add_header(x, "ETag", ap_span_cstr(etag));
    ap_http_add_header(x, "Vary", AP_SPAN_LIT("Accept-Encoding"));
    if (gz)
        ap_http_add_header(x, "Content-Encoding", AP_SPAN_LIT("gzip"));
    if (etag_matches(&x->req, etag)) {
        rc = ap_http_respond(x, 304, NULL, NULL, 0);
        goto done;
    }
    size_t size = (size_t)st.st_size;
    if (x->req.method == AP_HTTP_HEAD) {
        rc = ap_http_respond(x, 200, mime, NULL, size); /* headers only */
        goto done;
    }
    buf = malloc(size ? size : 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (!buf || got != size) {
        ap_log_error("web: cannot read %s/%s", web_root, rel);
        rc = ap_http_respond_error(x, 500, "internal", "cannot read the file");
        goto done;
    }
    rc = ap_http_respond(x, 200, mime, buf, size);
done:
    free(buf);
    close(fd);
    return rc;
}

static int h_web(struct ap_http_exchange *x)
{
    struct ap_span p = x->req.path;
    if (reserved(p))
        return ap_http_respond_error(x, 404, "not_found", "no such route");
    if (!web_root[0]) {
        security_headers(x);
        ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("60"));
        return ap_http_respond_error(x, 503, "unavailable",
                                     "the dashboard is not built: cd web && npm ci && npm run "
                                     "build (or set --web-root)");
    }
    if (!ap_web_path_ok(p)) {
        security_headers(x);
        return ap_http_respond_error(x, 404, "not_found", "no such file");
    }
    char rel[1100];
    snprintf(rel, sizeof(rel), "%.*s", (int)(p.len - 1), p.p + 1);
    if (ap_span_starts_with(p, "/static/"))
        return send_file(x, rel, true);
    /* a top-level file of the build (favicon.svg, robots.txt) */
    const char *slash = strrchr(rel, '/');
    const char *last = slash ? slash + 1 : rel;
    if (!slash && strchr(last, '.') && ap_web_mime(last)) {
        struct stat st;
        int fd = open_file(rel, &st);
        if (fd >= 0) {
            close(fd);
            return send_file(x, rel, false);
        }
        if (strcmp(last, "index.html") != 0) {
            security_headers(x);
            return ap_http_respond_error(x, 404, "not_found", "no such file");
        }
    }
    return send_file(x, "index.html", false); /* a client route of the app */
}

int ap_web_register(struct ap_router *r)
{
    return ap_router_add(r, AP_M(GET), "/*", h_web, NULL, "web");
}
