/*
 * ap_tag: GET /v1/tag.js and GET /demo on the data plane.
 */
#include "ap_tag.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../net/ap_server.h"

#define JS_TYPE "application/javascript; charset=utf-8"
#define HTML_TYPE "text/html; charset=utf-8"

/* Module state: written by ap_tag_register (main thread), then only read. */
static struct {
    char demo_path[4096];
    unsigned char *gz; /* the tag, gzip-compressed */
    size_t gz_len;
    char etag[24];    /* "\"<16 hex>\"" */
    char etag_gz[28]; /* the same with a -gz suffix: a different representation */
    char cache_control[48];
} tag;

/* ---- /v1/tag.js ------------------------------------------------------------------------------ */

static int gzip_tag(void)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return AP_ENOMEM;
    uLong cap = deflateBound(&zs, (uLong)ap_tag_js_len) + 32;
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&zs);
        return AP_ENOMEM;
    }
    zs.next_in = (Bytef *)ap_tag_js;
    zs.avail_in = (uInt)ap_tag_js_len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int zrc = deflate(&zs, Z_FINISH);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(out);
        return AP_ENOMEM;
    }
    free(tag.gz);
    tag.gz = out;
    tag.gz_len = n;
    return AP_OK;
}

/* true if the comma-separated header value lists token (ASCII case-insensitive), not with q=0 */
static bool header_has_token(const struct ap_http_req *req, const char *name, const char *token)
{
    const struct ap_http_header *h = ap_http_find_header(req, name);
    if (!h)
        return false;
    struct ap_span v = h->value;
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.len && v.p[i] != ',' && v.p[i] != ';' && v.p[i] != ' ')
            i++;
        bool match = ap_span_eq_nocase(ap_span_make(v.p + s, i - s), token);
        size_t params = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        if (match) {
            struct ap_span p = ap_span_make(v.p + params, i - params);
            /* ";q=0", ";q=0.0", ... refuse it */
            for (size_t k = 0; k + 3 <= p.len; k++) {
                if ((p.p[k] == 'q' || p.p[k] == 'Q') && p.p[k + 1] == '=' && p.p[k + 2] == '0') {
                    bool zero = true;
                    for (size_t j = k + 3; j < p.len && p.p[j] != ';'; j++)
                        zero = zero && (p.p[j] == '0' || p.p[j] == '.' || p.p[j] == ' ');
                    return !zero;
                }
            }
            return true;
        }
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

static int h_tag_js(struct ap_http_exchange *x)
{
    bool gz = tag.gz && header_has_token(&x->req, "Accept-Encoding", "gzip");
    const char *etag = gz ? tag.etag_gz : tag.etag;
    ap_http_add_header(x, "Cache-Control", ap_span_cstr(tag.cache_control));
    ap_http_add_header(x, "ETag", ap_span_cstr(etag));
    ap_http_add_header(x, "Vary", AP_SPAN_LIT("Accept-Encoding"));
    ap_http_add_header(x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
    if (etag_matches(&x->req, etag))
        return ap_http_respond(x, 304, NULL, NULL, 0);
    if (gz) {
        ap_http_add_header(x, "Content-Encoding", AP_SPAN_LIT("gzip"));
        return ap_http_respond(x, 200, JS_TYPE, tag.gz, tag.gz_len);
    }
    return ap_http_respond(x, 200, JS_TYPE, ap_tag_js, ap_tag_js_len);
}

/* ---- /demo ----------------------------------------------------------------------------------- */

static void html_escape(struct ap_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            ap_buf_append_str(b, "&amp;");
            break;
        case '<':
            ap_buf_append_str(b, "&lt;");
            break;
        case '>':
            ap_buf_append_str(b, "&gt;");
            break;
        case '"':
            ap_buf_append_str(b, "&quot;");
            break;
        case '\'':
            ap_buf_append_str(b, "&#39;");
            break;
        default:
            ap_buf_append(b, s, 1);
        }
    }
}

/* The placement id for a slot name in demo.json, 0 if none. */
static long long slot_id(const json_t *doc, const char *slot, const char **size)
{
    size_t i;
    json_t *p;
    json_array_foreach (json_object_get(doc, "placements"), i, p) {
        const char *s = json_string_value(json_object_get(p, "slot"));
        json_t *id = json_object_get(p, "id");
        if (s && !strcmp(s, slot) && json_is_integer(id) && json_integer_value(id) > 0) {
            *size = json_string_value(json_object_get(p, "size"));
            return (long long)json_integer_value(id);
        }
    }
    return 0;
}

/* One placement div, with its label; nothing if demo.json has no such slot. */
static void slot_div(struct ap_buf *b, const json_t *doc, const char *slot, const char *cls,
                     const char *keywords)
{
    const char *size = NULL;
    long long id = doc ? slot_id(doc, slot, &size) : 0;
    unsigned w = 0, h = 0;
    if (!id)
        return;
    if (!size || sscanf(size, "%ux%u", &w, &h) != 2)
        w = h = 0;
    ap_buf_printf(b,
                  "<div class=\"ad %s\"><span class=\"ad-label\">Advertisement</span>"
                  "<div id=\"ap-%s\" data-ap-placement=\"%lld\" data-ap-keywords=\"",
                  cls, slot, id);
    html_escape(b, keywords);
    ap_buf_printf(b, "\" style=\"width:%upx;min-height:%upx\"></div></div>\n", w, h);
}

static const char PAGE_HEAD[] =
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Riverside approves waterfront park | The Morning Ledger</title>\n"
    "<style>\n"
    "body{margin:0;font:17px/1.6 Georgia,'Times New Roman',serif;color:#222;background:#f4f1ea}\n"
    "header.site{background:#1d2a3a;color:#fff;padding:14px 0}\n"
    ".wrap{max-width:1100px;margin:0 auto;padding:0 16px}\n"
    ".brand{font:700 30px/1.1 Georgia,serif;letter-spacing:.5px}\n"
    "nav a{color:#cfd8e3;margin-right:18px;font:14px/2 Arial,sans-serif;text-decoration:none}\n"
    ".ad{margin:18px auto;text-align:center}.ad>div{margin:0 auto}\n"
    ".ad-label{display:block;font:10px/1.8 Arial,sans-serif;color:#888;text-transform:uppercase;"
    "letter-spacing:1px}\n"
    ".cols{display:flex;gap:32px;align-items:flex-start}\n"
    "article{flex:1;background:#fff;padding:24px 32px;box-shadow:0 1px 3px rgba(0,0,0,.1)}\n"
    "article h1{font-size:34px;line-height:1.2;margin:8px 0 4px}\n"
    ".byline{font:13px Arial,sans-serif;color:#666;margin-bottom:18px}\n"
    "aside{width:160px;position:sticky;top:12px}\n"
    ".inline{float:right;margin:6px 0 12px 24px}\n"
    "footer{margin-top:32px;padding:18px 0 80px;background:#1d2a3a;color:#aab;font:13px Arial,"
    "sans-serif}\n"
    ".sticky{position:fixed;left:0;right:0;bottom:0;background:rgba(255,255,255,.95);"
    "box-shadow:0 -1px 4px rgba(0,0,0,.15);margin:0;padding:2px 0}\n"
    ".note{background:#fff3cd;border:1px solid #e0c36a;padding:12px 16px;margin:18px 0;"
    "font:15px Arial,sans-serif}\n"
    "@media (max-width:800px){aside{display:none}.inline{float:none}}\n"
    "</style>\n</head>\n<body>\n"
    "<header class=\"site\"><div class=\"wrap\"><div class=\"brand\">The Morning Ledger</div>\n"
    "<nav><a href=\"#\">News</a><a href=\"#\">City</a><a href=\"#\">Business</a>"
    "<a href=\"#\">Sports</a><a href=\"#\">Opinion</a><a href=\"#\">Weather</a></nav>"
    "</div></header>\n<div class=\"wrap\">\n";

static const char ARTICLE_1[] =
    "<div class=\"cols\">\n<article>\n"
    "<div class=\"byline\">CITY &middot; By Dana Whitfield &middot; 6 min read</div>\n"
    "<h1>Riverside approves $48 million plan to turn its old rail yards into a waterfront park"
    "</h1>\n"
    "<p>After nearly a decade of debate, the city council voted 7-2 on Tuesday night to convert "
    "the shuttered rail yards along the east bank into a 40-acre public park, with walking "
    "trails, a boat launch and a restored wetland meant to soak up spring floods.</p>\n";

static const char ARTICLE_2[] =
    "<p>Supporters packed the chamber, many wearing green &ldquo;Yards to Parks&rdquo; buttons. "
    "&ldquo;This is the first time in a hundred years that people will be able to walk down to "
    "the river here,&rdquo; said council member Rosa Imani, who has championed the project "
    "since her first campaign.</p>\n"
    "<p>The plan is funded by a mix of state grants, a federal resilience award and a bond "
    "measure voters approved last fall. Construction of the first phase, which includes "
    "clean-up of contaminated soil, is expected to begin next spring and take about two "
    "years.</p>\n"
    "<h2>Concerns about cost and traffic</h2>\n"
    "<p>The two dissenting members questioned whether the budget leaves enough margin for "
    "environmental remediation, which has driven up costs on similar projects in neighbouring "
    "cities. Residents of the Mill Street neighbourhood also raised worries about parking and "
    "weekend traffic.</p>\n"
    "<p>City planners say a new shuttle loop and two bike-share stations will ease the "
    "pressure, and that the design keeps the historic roundhouse as a covered market and "
    "community space.</p>\n"
    "<p>&ldquo;We heard people, and the plan got better because of it,&rdquo; said planning "
    "director Tom Okafor. A public design workshop is scheduled for next month at the "
    "Riverside library.</p>\n"
    "<h2>What happens next</h2>\n"
    "<p>The council will vote on construction contracts in the spring. The city expects the "
    "first trails to open within eighteen months, and the full park by 2029.</p>\n"
    "</article>\n";

static const char PAGE_TAIL[] =
    "<footer><div class=\"wrap\">&copy; The Morning Ledger &middot; a demo publisher page "
    "served by AdPlatform. Ads are chosen by <code>POST /v1/decision</code> through the "
    "publisher tag <code>/v1/tag.js</code>.</div></footer>\n";

int ap_tag_demo_render(const char *json, size_t len, struct ap_buf *out)
{
    json_t *doc = json ? json_loadb(json, len, 0, NULL) : NULL;
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    int rc = ap_buf_append(out, PAGE_HEAD, sizeof(PAGE_HEAD) - 1);
    if (!doc)
        ap_buf_append_str(out, "<div class=\"note\">No demo data yet. Load it with "
                               "<code>adplatform demo --data-dir DIR</code> (the data dir of "
                               "this server) and reload this page.</div>\n");
    slot_div(out, doc, "leaderboard", "top", "news,local");
    ap_buf_append(out, ARTICLE_1, sizeof(ARTICLE_1) - 1);
    slot_div(out, doc, "rectangle", "inline", "news,parks,outdoors");
    ap_buf_append(out, ARTICLE_2, sizeof(ARTICLE_2) - 1);
    ap_buf_append_str(out, "<aside>\n");
    slot_div(out, doc, "skyscraper", "side", "news");
    ap_buf_append_str(out, "</aside>\n</div>\n</div>\n");
    ap_buf_append(out, PAGE_TAIL, sizeof(PAGE_TAIL) - 1);
    slot_div(out, doc, "mobile", "sticky", "news");
    rc = rc ? rc
            : ap_buf_append_str(out, "<script async src=\"/v1/tag.js\"></script>\n"
                                     "</body>\n</html>\n");
    json_decref(doc);
    /* every append above fails the same way once the cap is reached: the last one tells */
    return rc;
}

/* Per-worker rendered page, refreshed from demo.json at most every AP_TAG_DEMO_RECHECK_S. */
struct demo_cache {
    struct ap_buf page;
    time_t checked;
    struct timespec mtime;
    off_t size;
    bool have_file, rendered;
};

static pthread_key_t demo_key;
static pthread_once_t demo_once = PTHREAD_ONCE_INIT;
static _Thread_local struct demo_cache *demo_tl;

static void demo_cache_free(void *p)
{
    struct demo_cache *c = p;
    if (c) {
        ap_buf_free(&c->page);
        free(c);
    }
}

static void demo_make_key(void)
{
    pthread_key_create(&demo_key, demo_cache_free);
}

/* Reads at most AP_TAG_DEMO_JSON_MAX bytes of path into buf; returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    return (ssize_t)n;
}

static int h_demo(struct ap_http_exchange *x)
{
    if (!demo_tl) {
        pthread_once(&demo_once, demo_make_key);
        struct demo_cache *c = calloc(1, sizeof(*c));
        if (!c)
            return ap_http_respond_error(x, 503, "unavailable", "out of memory");
        ap_buf_init(&c->page, AP_TAG_DEMO_PAGE_MAX);
        pthread_setspecific(demo_key, c);
        demo_tl = c;
    }
    struct demo_cache *c = demo_tl;
    time_t now = time(NULL);
    if (!c->rendered || now - c->checked >= AP_TAG_DEMO_RECHECK_S || now < c->checked) {
        struct stat st;
        bool have = stat(tag.demo_path, &st) == 0 && S_ISREG(st.st_mode);
        c->checked = now;
        if (!c->rendered || have != c->have_file ||
            (have && (st.st_size != c->size || st.st_mtim.tv_sec != c->mtime.tv_sec ||
                      st.st_mtim.tv_nsec != c->mtime.tv_nsec))) {
            char *json = have ? malloc(AP_TAG_DEMO_JSON_MAX) : NULL;
            ssize_t n = json ? read_small(tag.demo_path, json, AP_TAG_DEMO_JSON_MAX) : -1;
            c->page.len = 0;
            int rc = ap_tag_demo_render(n > 0 ? json : NULL, n > 0 ? (size_t)n : 0, &c->page);
            free(json);
            if (rc) {
                c->rendered = false;
                return ap_http_respond_error(x, 500, "internal", "cannot render the demo page");
            }
            c->rendered = true;
            c->have_file = have;
            if (have) {
                c->size = st.st_size;
                c->mtime = st.st_mtim;
            }
        }
    }
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("no-store"));
    ap_http_add_header(x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
    return ap_http_respond(x, 200, HTML_TYPE, c->page.data, c->page.len);
}

/* ---- registration ---------------------------------------------------------------------------- */

int ap_tag_register(struct ap_router *r, const struct ap_tag_options *opt)
{
    const char *dir = opt && opt->data_dir && *opt->data_dir ? opt->data_dir : ".";
    int n = snprintf(tag.demo_path, sizeof(tag.demo_path), "%s/%s", dir, AP_TAG_DEMO_FILE);
    if (n < 0 || (size_t)n >= sizeof(tag.demo_path))
        return AP_EINVAL;
    int rc = gzip_tag();
    if (rc)
        return rc;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < ap_tag_js_len; i++)
        h = (h ^ ap_tag_js[i]) * UINT64_C(1099511628211);
    snprintf(tag.etag, sizeof(tag.etag), "\"%016llx\"", (unsigned long long)h);
    snprintf(tag.etag_gz, sizeof(tag.etag_gz), "\"%016llx-gz\"", (unsigned long long)h);
    snprintf(tag.cache_control, sizeof(tag.cache_control), "public, max-age=%d", AP_TAG_MAX_AGE_S);
    if ((rc = ap_router_add(r, AP_M(GET), "/v1/tag.js", h_tag_js, NULL, "tag_js")))
        return rc;
    return ap_router_add(r, AP_M(GET), "/demo", h_demo, NULL, "demo");
}
