/*
 * ap_api: module state, the per-thread store handles, the route table and the handlers of the
 * table-driven resources, users, API keys, the audit log and placement tags.
 *
 * Authorisation (docs/adr/0004-rest-api.md) is decided here, before the store is asked, from
 * the role and the resource's owner kind; the store then enforces tenancy itself (rows of other
 * tenants behave like missing rows), so a mistake in one layer is caught by the other:
 *   admin       everything;
 *   viewer      every GET (users and the audit log excepted), nothing else but its own API keys
 *               and logout;
 *   advertiser  reads and writes the rows of its advertisers (campaigns, ads, creatives), reads
 *   publisher   and PATCHes its own advertisers/publishers but may not create or archive them,
 *               nor change the fields an operator controls (ADMIN_FIELDS); demand partners,
 *               users and the audit log are not theirs (403).
 */
#include "ap_api_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/ap_config.h"
#include "../core/ap_error.h"
#include "../core/ap_log.h"

struct ap__api_state ap__api_state;

/* ---- per-thread store handles ----------------------------------------------------------- */

static pthread_key_t store_key;
static bool store_key_made;

static void close_thread_store(void *p)
{
    ap_store_close(p);
}

struct ap_store *ap__api_store(void)
{
    if (!store_key_made)
        return NULL;
    struct ap_store *st = pthread_getspecific(store_key);
    if (st)
        return st;
    struct ap_store_options opt = {.no_migrate = true}; /* ap_api_init migrated */
    int rc = ap_store_open(ap__api_state.db_path, &opt, &st);
    if (rc != AP_OK) {
        ap_log_error("api: cannot open the store %s: %s", ap__api_state.db_path, ap_strerror(rc));
        return NULL;
    }
    if (pthread_setspecific(store_key, st) != 0) {
        ap_store_close(st);
        return NULL;
    }
    return st;
}

/* ---- start-up ------------------------------------------------------------------------------ */

static int fail_msg(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_msg(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int build_public_url(const struct ap_api_options *opt, char *err, size_t errlen)
{
    struct ap__api_state *s = &ap__api_state;
    if (opt->public_url && opt->public_url[0]) {
        if (!ap_schema_valid_http_url(opt->public_url) ||
            strlen(opt->public_url) >= sizeof(s->public_url))
            return fail_msg(err, errlen, AP_EINVAL,
                            "--public-url must be an absolute http:// or https:// URL: %s",
                            opt->public_url);
        snprintf(s->public_url, sizeof(s->public_url), "%s", opt->public_url);
    } else {
        char host[256] = "127.0.0.1";
        int port = opt->data_port;
        int cfg_port = 0;
        if (opt->data_listen)
            ap_config_parse_addr(opt->data_listen, host, sizeof(host), &cfg_port);
        if (port <= 0)
            port = cfg_port;
        if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "[::]")) {
            ap_log_warn("api: the data plane listens on every address and --public-url is not "
                        "set: ad tags will point at 127.0.0.1");
            snprintf(host, sizeof(host), "127.0.0.1");
        }
        bool v6 = strchr(host, ':') && host[0] != '[';
        snprintf(s->public_url, sizeof(s->public_url), "http://%s%s%s:%d", v6 ? "[" : "", host,
                 v6 ? "]" : "", port);
    }
    size_t n = strlen(s->public_url);
    while (n > 0 && s->public_url[n - 1] == '/')
        s->public_url[--n] = '\0';
    return AP_OK;
}

static int session_ttl(const struct ap_api_options *opt, int64_t *out, char *err, size_t errlen)
{
    *out = opt->session_ttl == 0 ? AP_API_SESSION_TTL_DEFAULT : opt->session_ttl;
    if (*out < 1 || *out > AP_API_SESSION_TTL_MAX)
        return fail_msg(err, errlen, AP_EINVAL, "--session-ttl must be seconds from 1 to %d: %lld",
                        AP_API_SESSION_TTL_MAX, (long long)opt->session_ttl);
    return AP_OK;
}

int ap_api_init(const struct ap_api_options *opt, char *err, size_t errlen)
{
    struct ap__api_state *s = &ap__api_state;
    struct ap_store *st = NULL;
    int rc;

    s->ready = false;
    if (!opt || !opt->data_dir || !opt->data_dir[0])
        return fail_msg(err, errlen, AP_EINVAL, "%s", "no data dir");
    int n1 = snprintf(s->data_dir, sizeof(s->data_dir), "%s", opt->data_dir);
    int n2 = snprintf(s->db_path, sizeof(s->db_path), "%s/adplatform.db", opt->data_dir);
    int n3 = snprintf(s->creatives_dir, sizeof(s->creatives_dir), "%s/creatives", opt->data_dir);
    if (n1 < 0 || n2 < 0 || n3 < 0 || (size_t)n2 >= sizeof(s->db_path) ||
        (size_t)n3 + 80 >= sizeof(s->creatives_dir))
        return fail_msg(err, errlen, AP_EINVAL, "data dir path too long: %s", opt->data_dir);
    if ((rc = session_ttl(opt, &s->session_ttl, err, errlen)) != AP_OK)
        return rc;
    if ((rc = build_public_url(opt, err, errlen)) != AP_OK)
        return rc;
    if (mkdir(s->creatives_dir, 0750) != 0 && errno != EEXIST)
        return fail_msg(err, errlen, ap_error_from_errno(errno), "cannot create %s",
                        s->creatives_dir);

    rc = ap_store_open(s->db_path, NULL, &st);
    if (rc != AP_OK)
        return fail_msg(err, errlen, rc, "cannot open the store %s: %s", s->db_path,
                        ap_strerror(rc));
    ap_store_close(st);
    if (!store_key_made) {
        if (pthread_key_create(&store_key, close_thread_store) != 0)
            return fail_msg(err, errlen, AP_ESYS, "%s", "pthread_key_create failed");
        store_key_made = true;
    }
    s->ready = true;
    ap_log_info("api: store %s, ad tags load %s/v1/tag.js, sessions last %llds", s->db_path,
                s->public_url, (long long)s->session_ttl);
    return AP_OK;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

int ap__api_dispatch(struct ap_http_exchange *x)
{
    const struct ap__api_route *route = x->route_data;
    struct ap__api_ctx c;
    memset(&c, 0, sizeof(c));
    c.x = x;
    c.route = route;
    if (!ap__api_state.ready) {
        ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("1"));
        ap__api_error(x, 503, "unavailable", "the API is not ready");
        goto done;
    }
    if (!(route->flags & AP__API_NO_STORE)) {
        c.st = ap__api_store();
        if (!c.st) {
            ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("1"));
            ap__api_error(x, 503, "unavailable", "the store cannot be opened");
            goto done;
        }
    }
    if (!(route->flags & AP__API_PUBLIC) && ap__api_authenticate(&c) != AP_OK)
        goto done;
    route->fn(&c);
done:
    if (!x->responded) {
        ap_log_error("api: %.*s %.*s: handler did not answer", AP_SPAN_FMT(x->req.method_name),
                     AP_SPAN_FMT(x->req.path));
        ap__api_error(x, 500, "internal", "internal error");
    }
    explicit_bzero(c.token, sizeof(c.token));
    ap_store_user_free(&c.user);
    return AP_OK;
}

/* ---- shared bits of the handlers ----------------------------------------------------------- */

static bool is_get(const struct ap__api_ctx *c)
{
    return c->x->req.method == AP_HTTP_GET || c->x->req.method == AP_HTTP_HEAD;
}

static int forbidden(struct ap__api_ctx *c, const char *why)
{
    return ap__api_error(c->x, 403, "forbidden", why);
}

static int not_found(struct ap__api_ctx *c)
{
    return ap__api_error(c->x, 404, "not_found", "not found");
}

static int nomem(struct ap__api_ctx *c)
{
    return ap__api_error(c->x, 500, "internal", "out of memory");
}

static bool path_id(struct ap__api_ctx *c, int64_t *id)
{
    return c->x->match.nparams >= 1 && ap__api_parse_id(c->x->match.params[0], id);
}

static void set_location(struct ap_http_exchange *x, const char *segment, const json_t *obj)
{
    char loc[160];
    json_t *id = json_object_get(obj, "id");
    int n = snprintf(loc, sizeof(loc), AP_API_PREFIX "/%s/%lld", segment,
                     (long long)json_integer_value(id));
    if (json_is_integer(id) && n > 0 && (size_t)n < sizeof(loc))
        ap_http_add_header(x, "Location", ap_span_make(loc, (size_t)n));
}

/* The role-independent part of a rejected request: every unknown parameter is an error. */
static void unknown_params(const struct ap__api_param *p, size_t n, const char *const *known,
                           struct ap_schema_errors *errs)
{
    for (size_t i = 0; i < n; i++) {
        bool ok = false;
        for (size_t k = 0; known[k] && !ok; k++)
            ok = strcmp(p[i].key, known[k]) == 0;
        if (!ok)
            ap_schema_errors_add(errs, p[i].key, "unknown query parameter");
    }
}

/* ---- tenancy rules ------------------------------------------------------------------------ */

static bool is_ownerless(const struct ap_schema_resource *r)
{
    return r->owner == AP_SCHEMA_OWNER_NONE;
}

/* Advertisers and publishers: the rows that are tenants themselves. */
static bool is_tenant_row(const struct ap_schema_resource *r)
{
    return r->owner != AP_SCHEMA_OWNER_NONE && r->owner_field == NULL;
}

/* Fields an operator controls: a restricted user may not set them (nor change them by PATCH). */
static const struct {
    enum ap_schema_res res;
    const char *field;
} ADMIN_FIELDS[] = {
    {AP_SCHEMA_ADVERTISER, "status"},        {AP_SCHEMA_ADVERTISER, "credit_limit_micros"},
    {AP_SCHEMA_PUBLISHER, "status"},         {AP_SCHEMA_PUBLISHER, "revenue_share_ppm"},
    {AP_SCHEMA_CREATIVE, "approval_status"},
};

/* Adds an error for each operator field in body that differs from current (NULL: create). */
static void admin_fields(const struct ap_schema_resource *r, const json_t *body,
                         const json_t *current, struct ap_schema_errors *errs)
{
    for (size_t i = 0; i < sizeof(ADMIN_FIELDS) / sizeof(ADMIN_FIELDS[0]); i++) {
        if (ADMIN_FIELDS[i].res != r->id)
            continue;
        json_t *v = json_object_get(body, ADMIN_FIELDS[i].field);
        if (v && (!current || !json_equal(v, json_object_get(current, ADMIN_FIELDS[i].field))))
            ap_schema_errors_add(errs, ADMIN_FIELDS[i].field,
                                 "only an administrator may change this field");
    }
}

static bool has_admin_field(const struct ap_schema_resource *r, const json_t *body)
{
    for (size_t i = 0; i < sizeof(ADMIN_FIELDS) / sizeof(ADMIN_FIELDS[0]); i++)
        if (ADMIN_FIELDS[i].res == r->id && json_object_get(body, ADMIN_FIELDS[i].field))
            return true;
    return false;
}

/* ---- output decoration -------------------------------------------------------------------- */

/* Adds the read-only fields the API derives: a placement's "tag", an image's "asset_path". */
int ap__api_decorate(const struct ap_schema_resource *r, json_t *obj)
{
    if (r->id == AP_SCHEMA_PLACEMENT) {
        char tag[AP_API_PUBLIC_URL_MAX + 160];
        snprintf(tag, sizeof(tag),
                 "<div data-ap-placement=\"%lld\"></div><script async "
                 "src=\"%s/v1/tag.js\"></script>",
                 (long long)json_integer_value(json_object_get(obj, "id")),
                 ap__api_state.public_url);
        return json_object_set_new(obj, "tag", json_string(tag)) ? AP_ENOMEM : AP_OK;
    }
    if (r->id == AP_SCHEMA_CREATIVE) {
        const char *sha = json_string_value(json_object_get(obj, "sha256"));
        const char *mime = json_string_value(json_object_get(obj, "mime"));
        char path[128];
        if (sha && mime && ap__api_asset_path(sha, mime, path, sizeof(path)))
            return json_object_set_new(obj, "asset_path", json_string(path)) ? AP_ENOMEM : AP_OK;
    }
    return AP_OK;
}

static int decorate_list(const struct ap_schema_resource *r, json_t *page)
{
    size_t i;
    json_t *it;
    json_array_foreach (json_object_get(page, "data"), i, it) {
        if (ap__api_decorate(r, it) != AP_OK)
            return AP_ENOMEM;
    }
    return AP_OK;
}

/* An image creative must point at an uploaded file: checked against the merged row. */
static void check_image_file(const json_t *row, struct ap_schema_errors *errs)
{
    const char *type = json_string_value(json_object_get(row, "type"));
    const char *sha = json_string_value(json_object_get(row, "sha256"));
    const char *mime = json_string_value(json_object_get(row, "mime"));
    if (!type || strcmp(type, "image") != 0 || !sha || !mime)
        return; /* the schema reports missing fields */
    char path[128];
    if (ap__api_asset_path(sha, mime, path, sizeof(path)) && !ap__api_asset_exists(sha, mime))
        ap_schema_errors_add(errs, "sha256",
                             "no uploaded image has this hash and type: upload the file with "
                             "POST /api/v1/creatives/upload");
}

/* ---- resources: list, create, get, update, archive ----------------------------------------- */

static int res_list(struct ap__api_ctx *c, const struct ap_schema_resource *r)
{
    struct ap_schema_errors errs;
    struct ap_store_filter filters[AP__API_MAX_FILTERS];
    struct ap__api_param *p;
    size_t np, nf = 0;
    json_t *out = NULL;
    int rc, limit;
    const char *cursor;

    ap_schema_errors_init(&errs);
    if (ap__api_query(c, &p, &np) != AP_OK)
        return AP_EINVAL;
    ap__api_list_params(p, np, &limit, &cursor, &errs);
    for (size_t i = 0; i < np; i++) {
        if (!strcmp(p[i].key, "limit") || !strcmp(p[i].key, "cursor"))
            continue;
        if (nf == AP__API_MAX_FILTERS) {
            ap_schema_errors_add(&errs, p[i].key, "too many filters (at most %d)",
                                 AP__API_MAX_FILTERS);
            break;
        }
        filters[nf++] = (struct ap_store_filter){p[i].key, p[i].value};
    }
    if (errs.total)
        return ap__api_store_error(c, AP_EINVAL, &errs, false);
    struct ap_store_list_query q = {filters, nf, cursor, limit};
    rc = ap_store_list(c->st, r->id, &q, &c->actor, &out, &errs);
    if (rc != AP_OK)
        return ap__api_store_error(c, rc, &errs, false);
    if (decorate_list(r, out) != AP_OK)
        rc = nomem(c);
    else
        rc = ap__api_send_json(c->x, 200, out);
    json_decref(out);
    return rc;
}

static int res_create(struct ap__api_ctx *c, const struct ap_schema_resource *r)
{
    struct ap_schema_errors errs;
    json_t *body = NULL, *out = NULL;
    int rc;

    ap_schema_errors_init(&errs);
    if (ap__api_is_viewer(c)) {
        rc = forbidden(c, "viewers have read-only access");
        goto done;
    }
    if (c->actor.restricted && (is_ownerless(r) || is_tenant_row(r))) {
        rc = forbidden(c, "only an administrator may create this");
        goto done;
    }
    if ((rc = ap__api_read_json(c, &body)) != AP_OK)
        goto done;
    if (c->actor.restricted)
        admin_fields(r, body, NULL, &errs);
    if (errs.total) {
        rc = ap__api_error_fields(c->x, 403, "forbidden", "your role may not set these fields",
                                  &errs);
        goto done;
    }
    if (r->id == AP_SCHEMA_CREATIVE)
        check_image_file(body, &errs);
    if (errs.total) {
        rc = ap__api_store_error(c, AP_EINVAL, &errs, false);
        goto done;
    }
    rc = ap_store_create(c->st, r->id, body, &c->actor, &out, &errs);
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, &errs, false);
        goto done;
    }
    if (ap__api_decorate(r, out) != AP_OK) {
        rc = nomem(c);
        goto done;
    }
    set_location(c->x, r->path, out);
    ap__api_set_etag(c->x, out);
    rc = ap__api_send_json(c->x, 201, out);
done:
    json_decref(out);
    json_decref(body);
    return rc;
}

/* true if If-None-Match lists the object's ETag (the client's copy is current: 304). */
static bool etag_matches(struct ap__api_ctx *c, const json_t *obj)
{
    const struct ap_http_header *h = ap_http_find_header(&c->x->req, "If-None-Match");
    json_t *v = json_object_get(obj, "version");
    if (!h || !json_is_integer(v))
        return false;
    char etag[32];
    int n = snprintf(etag, sizeof(etag), "\"%lld\"", (long long)json_integer_value(v));
    if (n <= 0)
        return false;
    struct ap_span hv = h->value;
    for (size_t i = 0; i + (size_t)n <= hv.len; i++)
        if (memcmp(hv.p + i, etag, (size_t)n) == 0)
            return true;
    return ap_span_eq_cstr(hv, "*");
}

static int res_get(struct ap__api_ctx *c, const struct ap_schema_resource *r, int64_t id)
{
    json_t *out = NULL;
    int rc = ap_store_get(c->st, r->id, id, &c->actor, &out);
    if (rc != AP_OK)
        return ap__api_store_error(c, rc, NULL, false);
    if (ap__api_decorate(r, out) != AP_OK) {
        rc = nomem(c);
    } else if (etag_matches(c, out)) {
        ap__api_set_etag(c->x, out);
        rc = ap_http_respond(c->x, 304, NULL, NULL, 0);
    } else {
        ap__api_set_etag(c->x, out);
        rc = ap__api_send_json(c->x, 200, out);
    }
    json_decref(out);
    return rc;
}

static int res_update(struct ap__api_ctx *c, const struct ap_schema_resource *r, int64_t id)
{
    struct ap_schema_errors errs;
    json_t *body = NULL, *current = NULL, *merged = NULL, *out = NULL;
    int64_t expected;
    int rc;

    ap_schema_errors_init(&errs);
    if (ap__api_is_viewer(c)) {
        rc = forbidden(c, "viewers have read-only access");
        goto done;
    }
    if (c->actor.restricted && is_ownerless(r)) {
        rc = forbidden(c, "only an administrator may change this");
        goto done;
    }
    if ((rc = ap__api_if_match(c, &expected)) != AP_OK)
        goto done;
    if ((rc = ap__api_read_json(c, &body)) != AP_OK)
        goto done;
    bool need_current = (c->actor.restricted && has_admin_field(r, body)) ||
                        (r->id == AP_SCHEMA_CREATIVE &&
                         (json_object_get(body, "sha256") || json_object_get(body, "mime") ||
                          json_object_get(body, "type")));
    if (need_current) {
        rc = ap_store_get(c->st, r->id, id, &c->actor, &current);
        if (rc != AP_OK) {
            rc = ap__api_store_error(c, rc, NULL, false);
            goto done;
        }
        if (c->actor.restricted)
            admin_fields(r, body, current, &errs);
        if (errs.total) {
            rc = ap__api_error_fields(c->x, 403, "forbidden",
                                      "your role may not change these fields", &errs);
            goto done;
        }
        if (r->id == AP_SCHEMA_CREATIVE) {
            merged = json_deep_copy(current);
            if (!merged || json_object_update(merged, body) != 0) {
                rc = nomem(c);
                goto done;
            }
            check_image_file(merged, &errs);
            if (errs.total) {
                rc = ap__api_store_error(c, AP_EINVAL, &errs, false);
                goto done;
            }
        }
    }
    rc = ap_store_update(c->st, r->id, id, body, expected, &c->actor, &out, &errs);
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, &errs, expected >= 0);
        goto done;
    }
    if (ap__api_decorate(r, out) != AP_OK) {
        rc = nomem(c);
        goto done;
    }
    ap__api_set_etag(c->x, out);
    rc = ap__api_send_json(c->x, 200, out);
done:
    json_decref(out);
    json_decref(merged);
    json_decref(current);
    json_decref(body);
    return rc;
}

static int res_archive(struct ap__api_ctx *c, const struct ap_schema_resource *r, int64_t id)
{
    json_t *out = NULL;
    int64_t expected;
    int rc;
    if (ap__api_is_viewer(c))
        return forbidden(c, "viewers have read-only access");
    if (c->actor.restricted && (is_ownerless(r) || is_tenant_row(r)))
        return forbidden(c, "only an administrator may archive this");
    if ((rc = ap__api_if_match(c, &expected)) != AP_OK)
        return rc;
    rc = ap_store_archive(c->st, r->id, id, expected, &c->actor, &out);
    if (rc != AP_OK)
        return ap__api_store_error(c, rc, NULL, expected >= 0);
    if (!out || ap__api_decorate(r, out) != AP_OK) {
        rc = nomem(c);
    } else {
        ap__api_set_etag(c->x, out);
        rc = ap__api_send_json(c->x, 200, out);
    }
    json_decref(out);
    return rc;
}

static int res_collection(struct ap__api_ctx *c)
{
    const struct ap_schema_resource *r = ap_schema_get(c->route->res);
    if (c->actor.restricted && is_ownerless(r))
        return forbidden(c, "only administrators and viewers may see this");
    return is_get(c) ? res_list(c, r) : res_create(c, r);
}

static int res_item(struct ap__api_ctx *c)
{
    const struct ap_schema_resource *r = ap_schema_get(c->route->res);
    int64_t id;
    if (c->actor.restricted && is_ownerless(r))
        return forbidden(c, "only administrators and viewers may see this");
    if (!path_id(c, &id))
        return not_found(c);
    if (is_get(c))
        return res_get(c, r, id);
    if (c->x->req.method == AP_HTTP_PATCH)
        return res_update(c, r, id);
    return res_archive(c, r, id);
}

static int placement_tag(struct ap__api_ctx *c)
{
    const struct ap_schema_resource *r = ap_schema_get(AP_SCHEMA_PLACEMENT);
    json_t *obj = NULL, *out = NULL;
    int64_t id;
    int rc;
    if (!path_id(c, &id))
        return not_found(c);
    rc = ap_store_get(c->st, AP_SCHEMA_PLACEMENT, id, &c->actor, &obj);
    if (rc != AP_OK)
        return ap__api_store_error(c, rc, NULL, false);
    if (ap__api_decorate(r, obj) != AP_OK ||
        !(out = json_pack("{s:I, s:O}", "id", (json_int_t)id, "tag", json_object_get(obj, "tag"))))
        rc = nomem(c);
    else
        rc = ap__api_send_json(c->x, 200, out);
    json_decref(out);
    json_decref(obj);
    return rc;
}

/* ---- users ----------------------------------------------------------------------------- */

static int send_user(struct ap__api_ctx *c, int status, const struct ap_store_user *u)
{
    json_t *out = ap_store_user_to_json(u);
    if (!out)
        return nomem(c);
    if (status == 201) {
        char loc[64];
        snprintf(loc, sizeof(loc), AP_API_PREFIX "/users/%lld", (long long)u->id);
        ap_http_add_header(c->x, "Location", ap_span_cstr(loc));
    }
    int rc = ap__api_send_json(c->x, status, out);
    json_decref(out);
    return rc;
}

static int users_collection(struct ap__api_ctx *c)
{
    struct ap_schema_errors errs;
    struct ap_store_user u = {0};
    struct ap__api_param *p;
    json_t *body = NULL, *out = NULL;
    size_t np;
    int rc;

    ap_schema_errors_init(&errs);
    if (!ap__api_is_admin(c)) {
        rc = forbidden(c, "only administrators manage users");
        goto done;
    }
    if (is_get(c)) {
        static const char *const known[] = {"limit", "cursor", NULL};
        struct ap_store_list_query q = {0};
        if ((rc = ap__api_query(c, &p, &np)) != AP_OK)
            goto done;
        ap__api_list_params(p, np, &q.limit, &q.cursor, &errs);
        unknown_params(p, np, known, &errs);
        rc = errs.total ? AP_EINVAL : ap_store_user_list(c->st, &q, &out, &errs);
        rc = rc == AP_OK ? ap__api_send_json(c->x, 200, out)
                         : ap__api_store_error(c, rc, &errs, false);
        goto done;
    }
    if ((rc = ap__api_read_json(c, &body)) != AP_OK)
        goto done;
    rc = ap_store_user_create(c->st, body, &c->actor, &u, &errs);
    rc = rc == AP_OK ? send_user(c, 201, &u) : ap__api_store_error(c, rc, &errs, false);
done:
    ap_store_user_free(&u);
    json_decref(out);
    json_decref(body);
    return rc;
}

static int users_me(struct ap__api_ctx *c)
{
    return send_user(c, 200, &c->user);
}

static int users_item(struct ap__api_ctx *c)
{
    struct ap_store_user u = {0};
    int64_t id;
    int rc;
    if (!ap__api_is_admin(c))
        return forbidden(c, "only administrators manage users");
    if (!path_id(c, &id))
        return not_found(c);
    rc = ap_store_user_get(c->st, id, &u);
    rc = rc == AP_OK ? send_user(c, 200, &u) : ap__api_store_error(c, rc, NULL, false);
    ap_store_user_free(&u);
    return rc;
}

/* ---- API keys -------------------------------------------------------------------------------- */

#define APIKEY_NAME_MAX 100

static bool apikey_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > APIKEY_NAME_MAX || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static int apikey_create(struct ap__api_ctx *c)
{
    struct ap_schema_errors errs;
    json_t *body = NULL, *out = NULL;
    char key[AP_STORE_TOKEN_MAX] = {0};
    int64_t uid = c->user.id;
    const char *k;
    json_t *v;
    int rc;

    ap_schema_errors_init(&errs);
    if ((rc = ap__api_read_json(c, &body)) != AP_OK)
        goto done;
    json_object_foreach (body, k, v) {
        if (strcmp(k, "name") == 0) {
            if (!json_is_string(v) || !apikey_name_ok(json_string_value(v), json_string_length(v)))
                ap_schema_errors_add(&errs, "name",
                                     "must be a string of 1 to %d bytes without controls",
                                     APIKEY_NAME_MAX);
        } else if (strcmp(k, "user_id") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) <= 0)
                ap_schema_errors_add(&errs, "user_id", "must be a positive integer id");
            else
                uid = json_integer_value(v);
        } else {
            ap_schema_errors_add(&errs, k, "unknown field");
        }
    }
    if (!json_object_get(body, "name"))
        ap_schema_errors_add(&errs, "name", "is required");
    if (errs.total) {
        rc = ap__api_store_error(c, AP_EINVAL, &errs, false);
        goto done;
    }
    if (uid != c->user.id && !ap__api_is_admin(c)) {
        rc = forbidden(c, "only administrators create keys for other users");
        goto done;
    }
    rc = ap_store_apikey_create(c->st, uid, json_string_value(json_object_get(body, "name")),
                                &c->actor, key, &out);
    if (rc == AP_ENOTFOUND) {
        rc = ap__api_field_error(c->x, "user_id", "no such user");
        goto done;
    }
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, NULL, false);
        goto done;
    }
    if (json_object_set_new(out, "key", json_string(key)) != 0) {
        rc = nomem(c);
        goto done;
    }
    set_location(c->x, "api-keys", out);
    rc = ap__api_send_json(c->x, 201, out);
done:
    explicit_bzero(key, sizeof(key));
    json_decref(out);
    json_decref(body);
    return rc;
}

static int apikey_list(struct ap__api_ctx *c)
{
    static const char *const known[] = {"limit", "cursor", "user_id", NULL};
    struct ap_schema_errors errs;
    struct ap_store_list_query q = {0};
    struct ap__api_param *p;
    json_t *out = NULL;
    size_t np;
    int64_t uid = ap__api_is_admin(c) ? 0 : c->user.id;
    int rc;

    ap_schema_errors_init(&errs);
    if (ap__api_query(c, &p, &np) != AP_OK)
        return AP_EINVAL;
    ap__api_list_params(p, np, &q.limit, &q.cursor, &errs);
    unknown_params(p, np, known, &errs);
    for (size_t i = 0; i < np; i++) {
        int64_t want;
        if (strcmp(p[i].key, "user_id") != 0)
            continue;
        if (!ap__api_parse_id(ap_span_cstr(p[i].value), &want))
            ap_schema_errors_add(&errs, "user_id", "must be a positive integer id");
        else if (ap__api_is_admin(c))
            uid = want;
        else if (want != c->user.id)
            return forbidden(c, "only administrators see other users' keys");
    }
    if (errs.total)
        return ap__api_store_error(c, AP_EINVAL, &errs, false);
    rc = ap_store_apikey_list(c->st, uid, &q, &out, &errs);
    rc = rc == AP_OK ? ap__api_send_json(c->x, 200, out) : ap__api_store_error(c, rc, &errs, false);
    json_decref(out);
    return rc;
}

static int apikeys_collection(struct ap__api_ctx *c)
{
    return is_get(c) ? apikey_list(c) : apikey_create(c);
}

/* Is key id one of user_id's keys? Pages through the user's keys. */
static int apikey_owned(struct ap__api_ctx *c, int64_t user_id, int64_t id, bool *owned)
{
    struct ap_schema_errors errs;
    char cursor[64] = "";
    int rc = AP_OK;
    *owned = false;
    for (;;) {
        struct ap_store_list_query q = {.cursor = cursor, .limit = AP_STORE_LIST_MAX};
        json_t *page = NULL, *it;
        size_t i;
        ap_schema_errors_init(&errs);
        rc = ap_store_apikey_list(c->st, user_id, &q, &page, &errs);
        if (rc != AP_OK)
            return rc;
        json_array_foreach (json_object_get(page, "data"), i, it) {
            if (json_integer_value(json_object_get(it, "id")) == id)
                *owned = true;
        }
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        bool more = !*owned && next && strlen(next) < sizeof(cursor);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(page);
        if (!more)
            return AP_OK;
    }
}

static int apikeys_item(struct ap__api_ctx *c)
{
    int64_t id;
    bool owned = true;
    int rc;
    if (!path_id(c, &id))
        return not_found(c);
    if (!ap__api_is_admin(c)) {
        rc = apikey_owned(c, c->user.id, id, &owned);
        if (rc != AP_OK)
            return ap__api_store_error(c, rc, NULL, false);
        if (!owned)
            return not_found(c);
    }
    rc = ap_store_apikey_revoke(c->st, id, &c->actor);
    ap__api_auth_invalidate(); /* even on failure: the revocation may have committed */
    if (rc != AP_OK)
        return ap__api_store_error(c, rc, NULL, false);
    return ap_http_respond(c->x, 204, NULL, NULL, 0);
}

/* ---- audit log ------------------------------------------------------------------------------ */

static int audit_log(struct ap__api_ctx *c)
{
    static const char *const known[] = {"limit",       "cursor",        "resource",
                                        "resource_id", "actor_user_id", NULL};
    struct ap_schema_errors errs;
    struct ap_store_audit_query q = {0};
    struct ap__api_param *p;
    json_t *out = NULL;
    size_t np;
    int rc;

    if (!ap__api_is_admin(c))
        return forbidden(c, "only administrators read the audit log");
    ap_schema_errors_init(&errs);
    if (ap__api_query(c, &p, &np) != AP_OK)
        return AP_EINVAL;
    ap__api_list_params(p, np, &q.limit, &q.cursor, &errs);
    unknown_params(p, np, known, &errs);
    for (size_t i = 0; i < np; i++) {
        if (strcmp(p[i].key, "resource") == 0) {
            q.resource = p[i].value;
        } else if (strcmp(p[i].key, "resource_id") == 0) {
            if (!ap__api_parse_id(ap_span_cstr(p[i].value), &q.resource_id))
                ap_schema_errors_add(&errs, "resource_id", "must be a positive integer id");
        } else if (strcmp(p[i].key, "actor_user_id") == 0) {
            if (!ap__api_parse_id(ap_span_cstr(p[i].value), &q.actor_user_id))
                ap_schema_errors_add(&errs, "actor_user_id", "must be a positive integer id");
        }
    }
    rc = errs.total ? AP_EINVAL : ap_store_audit_list(c->st, &q, &out, &errs);
    rc = rc == AP_OK ? ap__api_send_json(c->x, 200, out) : ap__api_store_error(c, rc, &errs, false);
    json_decref(out);
    return rc;
}

/* ---- the route table ------------------------------------------------------------------------ */

int ap__api_reports(struct ap__api_ctx *c); /* ap_api_reports.c */
int ap__api_currency_rates(struct ap__api_ctx *c); /* ap_api_rates.c */
int ap__api_token_keys(struct ap__api_ctx *c);        /* ap_api_keys.c */
int ap__api_token_keys_rotate(struct ap__api_ctx *c); /* ap_api_keys.c */

#define MAX_API_ROUTES 64
#define PATTERN_MAX 64

static struct ap__api_route routes[MAX_API_ROUTES];
static size_t nroutes;
static char res_patterns[AP_SCHEMA_RES_COUNT][2][PATTERN_MAX];

static const struct ap__api_route ASSETS_ROUTE = {AP_M(GET), "/assets/{file}", ap__api_assets, -1,
                                                  AP__API_PUBLIC | AP__API_NO_STORE};

static void add(unsigned methods, const char *pattern, ap__api_handler fn, int res, unsigned flags)
{
    if (nroutes < MAX_API_ROUTES)
        routes[nroutes++] = (struct ap__api_route){methods, pattern, fn, res, flags};
}

/* Builds the table once (main thread): fixed routes, then two per schema resource, so a
 * resource added to ap_schema's table gets its routes (and the spec test asks for its docs). */
static void build_routes(void)
{
    if (nroutes)
        return;
    add(AP_M(POST), AP_API_PREFIX "/auth/login", ap__api_login, -1, AP__API_PUBLIC);
    add(AP_M(POST), AP_API_PREFIX "/auth/logout", ap__api_logout, -1, 0);
    add(AP_M(GET) | AP_M(POST), AP_API_PREFIX "/users", users_collection, -1, 0);
    add(AP_M(GET), AP_API_PREFIX "/users/me", users_me, -1, 0);
    add(AP_M(GET), AP_API_PREFIX "/users/{id}", users_item, -1, 0);
    add(AP_M(GET) | AP_M(POST), AP_API_PREFIX "/api-keys", apikeys_collection, -1, 0);
    add(AP_M(DELETE), AP_API_PREFIX "/api-keys/{id}", apikeys_item, -1, 0);
    add(AP_M(GET), AP_API_PREFIX "/audit-log", audit_log, -1, 0);
    add(AP_M(POST), AP_API_PREFIX "/creatives/upload", ap__api_creative_upload, -1, 0);
    add(AP_M(GET), AP_API_PREFIX "/placements/{id}/tag", placement_tag, -1, 0);
    add(AP_M(GET), AP_API_PREFIX "/reports", ap__api_reports, -1, 0);
    add(AP_M(GET) | AP_M(PUT), AP_API_PREFIX "/currency-rates", ap__api_currency_rates, -1, 0);
    add(AP_M(GET), AP_API_PREFIX "/token-keys", ap__api_token_keys, -1, 0);
    add(AP_M(POST), AP_API_PREFIX "/token-keys/rotate", ap__api_token_keys_rotate, -1, 0);
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++) {
        const struct ap_schema_resource *r = ap_schema_get((enum ap_schema_res)i);
        snprintf(res_patterns[i][0], PATTERN_MAX, AP_API_PREFIX "/%s", r->path);
        snprintf(res_patterns[i][1], PATTERN_MAX, AP_API_PREFIX "/%s/{id}", r->path);
        add(AP_M(GET) | AP_M(POST), res_patterns[i][0], res_collection, i, 0);
        add(AP_M(GET) | AP_M(PATCH) | AP_M(DELETE), res_patterns[i][1], res_item, i, 0);
    }
    add(ASSETS_ROUTE.methods, ASSETS_ROUTE.pattern, ASSETS_ROUTE.fn, -1, ASSETS_ROUTE.flags);
}

int ap_api_register(struct ap_router *r)
{
    build_routes();
    for (size_t i = 0; i < nroutes; i++) {
        int rc = ap_router_add(r, routes[i].methods, routes[i].pattern, ap__api_dispatch,
                               &routes[i], routes[i].pattern);
        if (rc != AP_OK)
            return rc;
    }
    return AP_OK;
}

int ap_api_register_assets(struct ap_router *r)
{
    return ap_router_add(r, ASSETS_ROUTE.methods, ASSETS_ROUTE.pattern, ap__api_dispatch,
                         (void *)&ASSETS_ROUTE, ASSETS_ROUTE.pattern);
}
