/*
 * ap_api: the control plane's REST API under /api/v1 (DESIGN.md §7, docs/api/openapi.yaml).
 *
 * Routes (all JSON; the full contract is the OpenAPI file):
 *   /api/v1/auth/login, /api/v1/auth/logout        sessions (login is the only public route)
 *   /api/v1/<resource>[/{id}]                      every resource of ap_schema's table: list,
 *                                                  create, get, PATCH (If-Match), DELETE (archive)
 *   /api/v1/placements/{id}/tag                    the placement's ad tag snippet
 *   /api/v1/creatives/upload                       image upload (raw body, type sniffed)
 *   /api/v1/users[/me|/{id}], /api/v1/api-keys[/{id}], /api/v1/audit-log
 *   /assets/{file}                                 uploaded images, public, immutable
 *
 * Each request is authenticated with `Authorization: Bearer <session token or API key>`, checked
 * against the caller's role (admin, advertiser, publisher, viewer: docs/adr/0004-rest-api.md),
 * then served by the store (src/store) through a handle that belongs to the calling thread.
 * Errors are always {"error": {"code", "message", "fields": [{"field", "message"}]}}.
 *
 * Lifetimes: module state (data dir, public URL, login throttle) is process-wide, set once by
 * ap_api_init() before the servers start and read-only afterwards (the throttle table has its own
 * mutex). Each control-plane thread opens its own store handle on first use and closes it when
 * the thread exits. Handlers use the request arena and free every json_t they make.
 *
 * Threads: ap_api_register*() and ap_api_init() on the main thread before the servers start;
 * handlers on any control-plane thread (they block on SQLite and password hashing, so never
 * register the /api/v1 routes on the data plane). The /assets route reads one file per request
 * and may be registered on either plane.
 */
#ifndef AP_API_H
#define AP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../net/ap_router.h"

#define AP_API_PREFIX "/api/v1"
#define AP_API_SESSION_TTL_DEFAULT (12 * 3600) /* seconds a login session lasts */
#define AP_API_SESSION_TTL_MAX (366 * 86400)   /* --session-ttl at most */
#define AP_API_UPLOAD_MAX (5 * 1024 * 1024)    /* bytes of one uploaded image (413 past it) */
#define AP_API_JSON_MAX (2 * 1024 * 1024)      /* bytes of one JSON body (413 past it) */
#define AP_API_LOGIN_MAX_FAILURES 10           /* per account and per address ... */
#define AP_API_LOGIN_WINDOW_S (15 * 60)        /* ... within this window, then 429 */
#define AP_API_AUTH_CACHE_TTL_MS 1000          /* a bearer lookup is reused this long at most */
#define AP_API_PUBLIC_URL_MAX 1024
#define AP_API_PATH_MAX 4096

struct ap_api_options {
    const char *data_dir;   /* the store is <data_dir>/adplatform.db, images <data_dir>/creatives */
    const char *public_url; /* the data plane's public base URL for ad tags; NULL or "": built
                             * from data_listen and data_port */
    const char *data_listen; /* the data plane's HOST:PORT as configured (--listen) */
    int data_port;           /* the data plane's bound port (when --listen said port 0) */
    int64_t session_ttl;     /* seconds (1..AP_API_SESSION_TTL_MAX; --session-ttl, or
                              * $ADPLATFORM_SESSION_TTL through the config); 0: the default,
                              * AP_API_SESSION_TTL_DEFAULT */
};

/* Prepares the module: checks the options, opens the store once on the calling thread (creating
 * and migrating it, so a bad data dir fails at start-up, not at the first request), creates
 * <data_dir>/creatives and sets up the per-thread store handles. AP_OK, or AP_EINVAL (bad
 * public URL or TTL; msg says which), or the store's / file system's error code; err (may be
 * NULL) receives a message of at most errlen bytes. Main thread, once, before servers start. */
int ap_api_init(const struct ap_api_options *opt, char *err, size_t errlen);

/* Adds every control-plane route (the list above) to r. AP_OK or AP_ELIMIT / AP_EINVAL from
 * the router. The routes answer 503 until ap_api_init() succeeded. Main thread. */
int ap_api_register(struct ap_router *r);

/* Adds only GET /assets/{file} (for the data plane). Same return codes. */
int ap_api_register_assets(struct ap_router *r);

/* ---- the dashboard (ap_web.c) -------------------------------------------------------------------
 * The SolidJS dashboard's build (web/dist) served at "/" on the control plane: /static/ hashed
 * assets (immutable caching), index.html (no-cache) for every client route, security headers
 * (CSP without inline script, nosniff, no framing), gzip siblings, HEAD; /api, /metrics,
 * /healthz, /readyz, /assets paths never fall back to the app. See the top of ap_web.c. */

#define AP_WEB_FILE_MAX (8 * 1024 * 1024) /* bytes of one dashboard file at most */

/* Resolves the dashboard's directory once: setting ("" = AP_SOURCE_DIR/web/dist, the checkout's
 * build). AP_OK, or AP_ENOTFOUND / AP_EINVAL (logged as a warning: the routes then answer 503
 * saying how to build it; the daemon runs on). Main thread, before the servers start. */
int ap_web_init(const char *setting);

/* Adds the catch-all GET/HEAD route (pattern "/" + "*"). Register it LAST: every literal
 * route wins over it. AP_OK or the router's error. Main thread. */
int ap_web_register(struct ap_router *r);

/* The media type for a file name by its extension, or NULL. Pure. */
const char *ap_web_mime(const char *name);

/* Whether a request path may name a dashboard file: "/" then segments of [A-Za-z0-9._-], none
 * empty or starting with '.', no '%' (so no traversal and no hidden file). Pure. */
bool ap_web_path_ok(struct ap_span path);

/* ---- image sniffing (used by the upload route; public for tests and the CLI) ---------------- */

enum ap_api_image_type {
    AP_API_IMAGE_NONE = 0,
    AP_API_IMAGE_PNG,
    AP_API_IMAGE_JPEG,
    AP_API_IMAGE_GIF,
    AP_API_IMAGE_WEBP
};

struct ap_api_image_info {
    enum ap_api_image_type type;
    const char *mime; /* "image/png", ... (static) */
    const char *ext;  /* "png", "jpg", "gif", "webp" (static) */
    uint32_t width, height;
};

/* Identifies a PNG, JPEG, GIF or WebP image from its bytes alone and reads its pixel size from
 * its headers, walking the file's structure (PNG chunks with their CRCs up to IEND, JPEG
 * segments and entropy-coded data up to EOI, GIF blocks up to the trailer, WebP's RIFF chunks)
 * so that a truncated or corrupt file is refused. AP_OK and *out filled, or AP_EINVAL with
 * *why (static text, may be NULL) saying what is wrong. Pure: any thread, no allocation. */
int ap_api_image_probe(const void *data, size_t len, struct ap_api_image_info *out,
                       const char **why);

#endif
