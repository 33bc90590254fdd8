/*
 * ap_api internals shared by the module's files (ap_api.c routes and resources, ap_api_auth.c
 * authentication and login throttling, ap_api_json.c request/response helpers,
 * ap_api_creative.c uploads and assets). Not part of the module's contract (ap_api.h is).
 *
 * Conventions: a helper that returns AP_EINVAL (or another error) "after answering" has already
 * sent the response (x->responded is set); the handler then just returns. Every handler runs
 * inside ap__api_dispatch(), which owns the context (store handle, authenticated user) and frees
 * it after the handler returned.
 */
#ifndef AP_API_INTERNAL_H
#define AP_API_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../net/ap_server.h"
#include "../store/ap_store.h"
#include "ap_api.h"

#define AP__API_MAX_FILTERS 16 /* list filters per request */
#define AP__API_MAX_QUERY_PARAMS 32
#define AP__API_JSON_MAX_OUTPUT (200u * 1024 * 1024) /* one response body */

/* Route flags. */
#define AP__API_PUBLIC 0x1u   /* no Authorization needed (login, assets) */
#define AP__API_NO_STORE 0x2u /* the handler does not use the store (assets) */

struct ap__api_ctx;
typedef int (*ap__api_handler)(struct ap__api_ctx *c);

/* One route (process lifetime): the router's data pointer points at it. */
struct ap__api_route {
    unsigned methods;
    const char *pattern;
    ap__api_handler fn;
    int res; /* enum ap_schema_res, or -1 */
    unsigned flags;
};

/* Process-wide state set by ap_api_init (read-only afterwards). */
struct ap__api_state {
    bool ready;
    char data_dir[AP_API_PATH_MAX];
    char db_path[AP_API_PATH_MAX];
    char creatives_dir[AP_API_PATH_MAX];
    char public_url[AP_API_PUBLIC_URL_MAX]; /* no trailing '/' */
    int64_t session_ttl;
};

extern struct ap__api_state ap__api_state;

/* Per request. */
struct ap__api_ctx {
    struct ap_http_exchange *x;
    const struct ap__api_route *route;
    struct ap_store *st; /* the thread's handle; NULL for AP__API_NO_STORE routes */
    bool authed;
    struct ap_store_user user; /* the caller (when authed); freed by the dispatcher */
    struct ap_store_actor actor;
    int64_t key_id;                 /* > 0: authenticated with this API key */
    char token[AP_STORE_TOKEN_MAX]; /* the bearer token as sent (when authed) */
};

/* The one entry point the router calls: store handle, authentication, the route's handler,
 * cleanup. */
int ap__api_dispatch(struct ap_http_exchange *x);

/* The calling thread's store handle, opened on first use; NULL if it cannot be opened (logged). */
struct ap_store *ap__api_store(void);

/* Adds the read-only fields the API derives to a stored object: a placement's "tag", an
 * uploaded image's "asset_path". AP_OK or AP_ENOMEM. */
int ap__api_decorate(const struct ap_schema_resource *r, json_t *obj);

/* ---- roles (ap_api_auth.c) ------------------------------------------------------------------ */

bool ap__api_is_admin(const struct ap__api_ctx *c);
bool ap__api_is_viewer(const struct ap__api_ctx *c);

/* Authenticates the Bearer token (session or API key) into c->user / c->actor. AP_OK, or an
 * error after answering (401, or 5xx for a store failure). */
int ap__api_authenticate(struct ap__api_ctx *c);

/* Copies the caller's address ("127.0.0.1", "::1") into out; "unknown" if it cannot be had. */
void ap__api_peer(struct ap_http_exchange *x, char *out, size_t cap);

/* Makes every thread's cached authentication answers stale at once (call after a logout or a
 * key revocation, before answering it). Any thread. */
void ap__api_auth_invalidate(void);

int ap__api_login(struct ap__api_ctx *c);
int ap__api_logout(struct ap__api_ctx *c);

/* ---- creatives (ap_api_creative.c) ------------------------------------------------------------
 */

int ap__api_creative_upload(struct ap__api_ctx *c);
int ap__api_assets(struct ap__api_ctx *c);

/* true if the content-addressed file for sha256 (64 lower-case hex digits) with the extension
 * of mime exists under the creatives directory. */
bool ap__api_asset_exists(const char *sha256, const char *mime);

/* Writes "/assets/<sha256>.<ext>" for mime into out; false if mime is not an image type. */
bool ap__api_asset_path(const char *sha256, const char *mime, char *out, size_t cap);

/* ---- request and response helpers (ap_api_json.c) ------------------------------------------- */

/* true if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF). */
bool ap__api_utf8_valid(const char *s, size_t len);

/* true if p[0..n) is one JSON value (RFC 8259 grammar) with optional surrounding whitespace,
 * nested at most 4096 deep; checked without allocating. Unpaired surrogate escapes are refused
 * (as jansson does); bytes are not checked for UTF-8. Pure. Used to tell jansson's
 * out-of-memory failures from syntax errors (ap__api_read_json). */
bool ap__api_json_syntax_ok(const char *p, size_t n);

/* Parses a positive decimal int64 id ("1".."9223372036854775807", no sign, no leading zero
 * needed to be rejected). */
bool ap__api_parse_id(struct ap_span s, int64_t *out);

/* Reads the request body as a JSON object: 415 unless Content-Type is application/json, 400 if
 * empty, not UTF-8, malformed or with duplicate keys, 422 if not an object. AP_OK and *out a
 * new reference, or an error after answering. */
int ap__api_read_json(struct ap__api_ctx *c, json_t **out);

/* The query string as decoded key/value pairs (arena memory). Percent-escapes and '+' are
 * decoded; a bad escape, NUL or invalid UTF-8 answers 400; more than AP__API_MAX_QUERY_PARAMS
 * answers 422. AP_OK or an error after answering. */
struct ap__api_param {
    const char *key;
    const char *value;
};
int ap__api_query(struct ap__api_ctx *c, struct ap__api_param **out, size_t *n);

/* Parses limit and cursor params into q (other params are left for the caller): errors are
 * added to errs ("limit" must be 1..AP_STORE_LIST_MAX). */
void ap__api_list_params(const struct ap__api_param *p, size_t n, int *limit, const char **cursor,
                         struct ap_schema_errors *errs);

/* If-Match: *expected = -1 when absent or "*", else the version in the ETag ("3" or W/"3").
 * AP_OK, or AP_EINVAL after answering 412 (an ETag that can never match). */
int ap__api_if_match(struct ap__api_ctx *c, int64_t *expected);

/* Adds `ETag: "<version>"` for an object carrying "version". */
void ap__api_set_etag(struct ap_http_exchange *x, const json_t *obj);

/* Answers status with body (borrowed) as JSON, Cache-Control: no-store. Returns the respond
 * code. */
int ap__api_send_json(struct ap_http_exchange *x, int status, const json_t *body);

/* Answers {"error": {"code", "message", "fields": []}}. */
int ap__api_error(struct ap_http_exchange *x, int status, const char *code, const char *message);

/* Answers {"error": {"code", "message", "fields": [...errs]}}. */
int ap__api_error_fields(struct ap_http_exchange *x, int status, const char *code,
                         const char *message, const struct ap_schema_errors *errs);

/* Answers one field error (422 validation_failed). */
int ap__api_field_error(struct ap_http_exchange *x, const char *field, const char *message);

/* The one place a store result becomes an HTTP error: AP_EINVAL 422 (with errs, may be NULL),
 * AP_ENOTFOUND 404, AP_ECONFLICT 412 if if_match else 409, AP_EPERM 403, AP_EBUSY 503 +
 * Retry-After, anything else 500 (logged with the store's message). */
int ap__api_store_error(struct ap__api_ctx *c, int rc, const struct ap_schema_errors *errs,
                        bool if_match);

#endif
