/*
 * ap_tag: the publisher tag and the demo page, served by the data plane.
 *
 *   GET /v1/tag.js   the tag (web/tag/tag.js, embedded at build time by web/tag/embed.cmake;
 *                    gzip-encoded when the client accepts it), Cache-Control 5 minutes, ETag.
 *   GET /demo        a demo publisher page (an article with 728x90, 300x250, 160x600 and 320x50
 *                    placements) that loads the tag. Its placement ids come from
 *                    <data-dir>/demo.json, written by `adplatform demo` (ap_cmd_demo.c); without
 *                    it the page says how to load the demo.
 *
 * Lifetimes: the module state (the tag bytes and their gzip form, the data dir) is process
 * lifetime, set by ap_tag_register() before the servers start, read-only afterwards. Each worker
 * keeps its own copy of the rendered demo page (thread-local) and re-reads demo.json at most
 * every AP_TAG_DEMO_RECHECK_S seconds, so /demo does one small file read per worker now and then
 * and the tag costs no I/O at all.
 * Threads: ap_tag_register on the main thread; handlers on data-plane workers.
 */
#ifndef AP_TAG_H
#define AP_TAG_H

#include <stddef.h>

#include "../core/ap_buf.h"
#include "../net/ap_router.h"

#define AP_TAG_MAX_AGE_S 300         /* Cache-Control max-age of /v1/tag.js */
#define AP_TAG_DEMO_RECHECK_S 2      /* a worker re-reads demo.json at most this often */
#define AP_TAG_DEMO_JSON_MAX 65536   /* bytes of demo.json read at most */
#define AP_TAG_DEMO_PAGE_MAX 131072  /* bytes of the rendered demo page at most */
#define AP_TAG_DEMO_FILE "demo.json" /* under the data dir */

/* The tag's text, embedded at build time (generated ap_tag_js.c): NUL-terminated. */
extern const unsigned char ap_tag_js[];
extern const size_t ap_tag_js_len;

struct ap_tag_options {
    const char *data_dir; /* where demo.json is; copied */
};

/* Compresses the tag once and adds GET /v1/tag.js and GET /demo to r (the data-plane router).
 * AP_OK, AP_ENOMEM, or the router's AP_ELIMIT / AP_EINVAL. Main thread, once, before the
 * servers start. */
int ap_tag_register(struct ap_router *r, const struct ap_tag_options *opt);

/* Renders the demo page for the demo.json document json (len bytes; NULL: not loaded yet) into
 * out. AP_OK, AP_ELIMIT or AP_ENOMEM. Pure (tests use it directly); any thread. */
int ap_tag_demo_render(const char *json, size_t len, struct ap_buf *out);

#endif
