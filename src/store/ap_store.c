#include "ap_store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ap_error.h"
#include "ap_store_internal.h"

#define TOKEN_BYTES 32 /* 256 random bits */
#define HASH_HEX (crypto_hash_sha256_BYTES * 2 + 1)
#define APIKEY_NAME_MAX 100
#define APIKEY_DISPLAY_LEN 12 /* "apk_" + 8 characters, shown in lists */

/* ---- helpers shared with the backends ------------------------------------------------------ */

int64_t ap__store_now(const struct ap_store *st)
{
    if (st->opt.clock)
        return st->opt.clock(st->opt.clock_ud);
    return (int64_t)time(NULL);
}

int ap__store_parse_cursor(const char *cursor, bool descending, int64_t *out)
{
    if (!cursor || !*cursor) {
        *out = descending ? INT64_MAX : 0;
        return AP_OK;
    }
    int64_t v = 0;
    size_t n = strlen(cursor);
    if (n > 18)
        return AP_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (cursor[i] < '0' || cursor[i] > '9')
            return AP_EINVAL;
        v = v * 10 + (cursor[i] - '0');
    }
    if (v <= 0)
        return AP_EINVAL;
    *out = v;
    return AP_OK;
}

int ap__store_list_params(const struct ap_store_list_query *q, bool descending, int64_t *cursor,
                          int *limit, struct ap_schema_errors *e)
{
    size_t t0 = e->total;
    int lim = q ? q->limit : 0;
    if (lim == 0)
        lim = AP_STORE_LIST_DEFAULT;
    if (lim < 1 || lim > AP_STORE_LIST_MAX)
        ap_schema_errors_add(e, "limit", "must be 1..%d", AP_STORE_LIST_MAX);
    if (ap__store_parse_cursor(q ? q->cursor : NULL, descending, cursor) != AP_OK)
        ap_schema_errors_add(e, "cursor", "is not a cursor returned by this list");
    *limit = lim;
    return e->total == t0 ? AP_OK : AP_EINVAL;
}

json_t *ap__store_cursor_json(bool more, int64_t last_id)
{
    if (!more)
        return json_null();
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)last_id);
    return json_string(buf);
}

static bool id_in(const int64_t *ids, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

bool ap__store_actor_sees(const struct ap_store_actor *actor, enum ap_schema_owner kind,
                          int64_t owner_id)
{
    if (!actor || !actor->restricted)
        return true;
    switch (kind) {
    case AP_SCHEMA_OWNER_ADVERTISER:
        return id_in(actor->advertiser_ids, actor->n_advertiser_ids, owner_id);
    case AP_SCHEMA_OWNER_PUBLISHER:
        return id_in(actor->publisher_ids, actor->n_publisher_ids, owner_id);
    default:
        return false;
    }
}

/* ---- users as values ------------------------------------------------------------------------ */

static const char *const ROLE_NAMES[] = {"admin", "advertiser", "publisher", "viewer"};

const char *ap_store_role_name(enum ap_store_role role)
{
    if ((unsigned)role >= sizeof(ROLE_NAMES) / sizeof(ROLE_NAMES[0]))
        return "unknown";
    return ROLE_NAMES[role];
}

bool ap_store_role_parse(const char *name, enum ap_store_role *out)
{
    for (size_t i = 0; name && i < sizeof(ROLE_NAMES) / sizeof(ROLE_NAMES[0]); i++)
        if (strcmp(name, ROLE_NAMES[i]) == 0) {
            *out = (enum ap_store_role)i;
            return true;
        }
    return false;
}

void ap_store_user_free(struct ap_store_user *u)
{
    if (!u)
        return;
    free(u->advertiser_ids);
    free(u->publisher_ids);
    memset(u, 0, sizeof(*u));
}

static json_t *ids_json(const int64_t *ids, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_integer(ids[i]))) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

json_t *ap_store_user_to_json(const struct ap_store_user *u)
{
    char at[AP_SCHEMA_TIME_MAX];
    ap_schema_time_format(u->created_at, at);
    json_t *adv = ids_json(u->advertiser_ids, u->n_advertiser_ids);
    json_t *pub = ids_json(u->publisher_ids, u->n_publisher_ids);
    if (!adv || !pub) {
        json_decref(adv);
        json_decref(pub);
        return NULL;
    }
    /* "o" steals adv and pub, also on failure */
    return json_pack("{s:I, s:s, s:s, s:o, s:o, s:s}", "id", (json_int_t)u->id, "email",
                     u->email, "role", ap_store_role_name(u->role), "advertiser_ids", adv,
                     "publisher_ids", pub, "created_at", at);
}

void ap_store_actor_from_user(const struct ap_store_user *u, struct ap_store_actor *out)
{
    *out = (struct ap_store_actor){
        .user_id = u->id,
        .restricted = u->role != AP_STORE_ROLE_ADMIN && u->role != AP_STORE_ROLE_VIEWER,
        .advertiser_ids = u->advertiser_ids,
        .n_advertiser_ids = u->n_advertiser_ids,
        .publisher_ids = u->publisher_ids,
        .n_publisher_ids = u->n_publisher_ids,
    };
}

/* ---- opening, migrations, change feed ----------------------------------------------------- */

int ap_store_open_with(const struct ap_store_ops *ops, const char *path,
                       const struct ap_store_options *opt, struct ap_store **out)
{
    if (!out)
        return AP_EINVAL;
    *out = NULL;
    if (!ops || !path)
        return AP_EINVAL;
    if (sodium_init() < 0) /* thread-safe, idempotent */
        return AP_ENOMEM;
    return ops->open(path, opt, out);
}

int ap_store_open(const char *path, const struct ap_store_options *opt, struct ap_store **out)
{
    return ap_store_open_with(&ap_store_sqlite_ops, path, opt, out);
}

void ap_store_close(struct ap_store *st)
{
    if (st)
        st->ops->close(st);
}

const char *ap_store_errmsg(struct ap_store *st)
{
    return st ? st->ops->errmsg(st) : "no store";
}

int ap_store_schema_latest(void)
{
    return (int)ap__store_migrations_count;
}

int ap_store_migrate_to(struct ap_store *st, int target, int *applied)
{
    int dummy;
    if (!applied)
        applied = &dummy;
    *applied = 0;
    if (!st || target < 0 || target > ap_store_schema_latest())
        return AP_EINVAL;
    return st->ops->migrate(st, target, applied);
}

int ap_store_migrate(struct ap_store *st, int *applied)
{
    return ap_store_migrate_to(st, ap_store_schema_latest(), applied);
}

int ap_store_schema_version(struct ap_store *st, int *out)
{
    if (!st || !out)
        return AP_EINVAL;
    return st->ops->schema_version(st, out);
}

int ap_store_version(struct ap_store *st, int64_t *out)
{
    if (!st || !out)
        return AP_EINVAL;
    return st->ops->version(st, out);
}

int ap_store_read_begin(struct ap_store *st)
{
    return st ? st->ops->read_begin(st) : AP_EINVAL;
}

int ap_store_read_end(struct ap_store *st)
{
    return st ? st->ops->read_end(st) : AP_EINVAL;
}

/* ---- generic CRUD ------------------------------------------------------------------------ */

static bool res_ok(enum ap_schema_res res)
{
    return (unsigned)res < AP_SCHEMA_RES_COUNT;
}

int ap_store_create(struct ap_store *st, enum ap_schema_res res, const json_t *fields,
                    const struct ap_store_actor *actor, json_t **out,
                    struct ap_schema_errors *errs)
{
    if (!out || !errs)
        return AP_EINVAL;
    *out = NULL;
    ap_schema_errors_init(errs);
    if (!st || !res_ok(res) || !fields)
        return AP_EINVAL;
    return st->ops->create(st, res, fields, actor, out, errs);
}

int ap_store_get(struct ap_store *st, enum ap_schema_res res, int64_t id,
                 const struct ap_store_actor *actor, json_t **out)
{
    if (!out)
        return AP_EINVAL;
    *out = NULL;
    if (!st || !res_ok(res))
        return AP_EINVAL;
    if (id <= 0)
        return AP_ENOTFOUND;
    return st->ops->get(st, res, id, actor, out);
}

int ap_store_list(struct ap_store *st, enum ap_schema_res res, const struct ap_store_list_query *q,
                  const struct ap_store_actor *actor, json_t **out,
                  struct ap_schema_errors *errs)
{
    if (!out || !errs)
        return AP_EINVAL;
    *out = NULL;
    ap_schema_errors_init(errs);
    if (!st || !res_ok(res) || (q && q->nfilters && !q->filters))
        return AP_EINVAL;
    return st->ops->list(st, res, q, actor, out, errs);
}

int ap_store_list_changed(struct ap_store *st, enum ap_schema_res res, int64_t since,
                          json_t **out)
{
    if (!out)
        return AP_EINVAL;
    *out = NULL;
    if (!st || !res_ok(res) || since < 0)
        return AP_EINVAL;
    return st->ops->list_changed(st, res, since, out);
}

int ap_store_update(struct ap_store *st, enum ap_schema_res res, int64_t id, const json_t *patch,
                    int64_t expected_version, const struct ap_store_actor *actor, json_t **out,
                    struct ap_schema_errors *errs)
{
    if (!out || !errs)
        return AP_EINVAL;
    *out = NULL;
    ap_schema_errors_init(errs);
    if (!st || !res_ok(res) || !patch)
        return AP_EINVAL;
    if (id <= 0)
        return AP_ENOTFOUND;
    return st->ops->update(st, res, id, patch, expected_version, actor, out, errs);
}

int ap_store_archive(struct ap_store *st, enum ap_schema_res res, int64_t id,
                     int64_t expected_version, const struct ap_store_actor *actor, json_t **out)
{
    json_t *dummy = NULL;
    int rc;
    if (out)
        *out = NULL;
    if (!st || !res_ok(res))
        return AP_EINVAL;
    if (id <= 0)
        return AP_ENOTFOUND;
    rc = st->ops->archive(st, res, id, expected_version, actor, out ? out : &dummy);
    json_decref(dummy);
    return rc;
}

int ap_store_owner(struct ap_store *st, enum ap_schema_res res, int64_t id,
                   enum ap_schema_owner *kind, int64_t *owner_id)
{
    if (!st || !res_ok(res) || !kind || !owner_id)
        return AP_EINVAL;
    *kind = AP_SCHEMA_OWNER_NONE;
    *owner_id = 0;
    if (id <= 0)
        return AP_ENOTFOUND;
    return st->ops->owner(st, res, id, kind, owner_id);
}

/* ---- users ---------------------------------------------------------------------------------- */

static bool valid_email(const char *s)
{
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    if (n < 3 || n > AP_STORE_EMAIL_MAX || !at || at == s || strchr(at + 1, '@') ||
        !strchr(at + 1, '.') || at[1] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' ||
            c == ',' || c == ';')
            return false;
    }
    return true;
}

static void lower_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + 32);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Reads an optional array of positive ids into a sorted, de-duplicated malloc'ed array. */
static int parse_ids(const json_t *body, const char *key, int64_t **out, size_t *n,
                     struct ap_schema_errors *e)
{
    json_t *arr = json_object_get(body, key);
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return AP_OK;
    if (!json_is_array(arr) || json_array_size(arr) > AP_STORE_MAX_USER_TENANTS) {
        ap_schema_errors_add(e, key, "must be an array of at most %d ids",
                             AP_STORE_MAX_USER_TENANTS);
        return AP_EINVAL;
    }
    size_t count = json_array_size(arr), i;
    json_t *v;
    int rc = AP_OK;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
            char p[AP_SCHEMA_FIELD_MAX];
            snprintf(p, sizeof(p), "%s[%zu]", key, i);
            ap_schema_errors_add(e, p, "must be a positive id");
            rc = AP_EINVAL;
        }
    }
    if (rc || count == 0)
        return rc;
    int64_t *ids = ap__store_malloc(count * sizeof(*ids));
    if (!ids)
        return AP_ENOMEM;
    json_array_foreach(arr, i, v) ids[i] = json_integer_value(v);
    qsort(ids, count, sizeof(*ids), cmp_i64);
    size_t m = 0;
    for (i = 0; i < count; i++)
        if (m == 0 || ids[m - 1] != ids[i])
            ids[m++] = ids[i];
    *out = ids;
    *n = m;
    return AP_OK;
}

static int hash_password(const struct ap_store *st, const char *pw, char *out)
{
    unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (st->opt.pwhash == AP_STORE_PWHASH_TEST_ONLY) {
        ops = crypto_pwhash_OPSLIMIT_MIN;
        mem = crypto_pwhash_MEMLIMIT_MIN;
    }
    /* crypto_pwhash_str uses argon2id (libsodium >= 1.0.15) and a random salt. */
    if (crypto_pwhash_str(out, pw, strlen(pw), ops, mem) != 0)
        return AP_ENOMEM; /* the only failure: the memory for the hash */
    return AP_OK;
}

int ap_store_user_create(struct ap_store *st, const json_t *fields,
                         const struct ap_store_actor *actor, struct ap_store_user *out,
                         struct ap_schema_errors *errs)
{
    int rc = AP_OK;
    int64_t *adv = NULL, *pub = NULL;
    size_t nadv = 0, npub = 0;
    char email[AP_STORE_EMAIL_MAX + 1];
    char hash[crypto_pwhash_STRBYTES];
    struct ap_store_user tmp = {0};

    if (out)
        memset(out, 0, sizeof(*out));
    if (!errs)
        return AP_EINVAL;
    ap_schema_errors_init(errs);
    if (!st || !fields)
        return AP_EINVAL;
    if (!json_is_object(fields)) {
        ap_schema_errors_add(errs, "", "the request body must be a JSON object");
        return AP_EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)fields, key, val) {
        if (strcmp(key, "email") && strcmp(key, "password") && strcmp(key, "role") &&
            strcmp(key, "advertiser_ids") && strcmp(key, "publisher_ids"))
            ap_schema_errors_add(errs, key, "%s",
                                 ap_schema_is_system_field(key) ? "is read-only"
                                                                : "unknown field");
    }
    const json_t *jemail = json_object_get(fields, "email");
    const json_t *jpw = json_object_get(fields, "password");
    const json_t *jrole = json_object_get(fields, "role");
    enum ap_store_role role = AP_STORE_ROLE_VIEWER;
    if (!jemail)
        ap_schema_errors_add(errs, "email", "is required");
    else if (!json_is_string(jemail) || json_string_length(jemail) > AP_STORE_EMAIL_MAX ||
             !valid_email(json_string_value(jemail)))
        ap_schema_errors_add(errs, "email", "must be an email address");
    if (!jpw)
        ap_schema_errors_add(errs, "password", "is required");
    else if (!json_is_string(jpw) || json_string_length(jpw) < AP_STORE_PASSWORD_MIN ||
             json_string_length(jpw) > AP_STORE_PASSWORD_MAX ||
             strlen(json_string_value(jpw)) != json_string_length(jpw))
        ap_schema_errors_add(errs, "password", "must be a string of %d..%d bytes",
                             AP_STORE_PASSWORD_MIN, AP_STORE_PASSWORD_MAX);
    if (!jrole)
        ap_schema_errors_add(errs, "role", "is required");
    else if (!ap_store_role_parse(json_string_value(jrole), &role))
        ap_schema_errors_add(errs, "role", "must be one of: admin, advertiser, publisher, viewer");
    rc = parse_ids(fields, "advertiser_ids", &adv, &nadv, errs);
    if (rc == AP_ENOMEM)
        goto done;
    rc = parse_ids(fields, "publisher_ids", &pub, &npub, errs);
    if (rc == AP_ENOMEM)
        goto done;
    if (errs->total) {
        rc = AP_EINVAL;
        goto done;
    }
    snprintf(email, sizeof(email), "%s", json_string_value(jemail));
    lower_ascii(email);
    /* Hash before the transaction: the write lock is never held for ~0.1 s of argon2. */
    rc = hash_password(st, json_string_value(jpw), hash);
    if (rc)
        goto done;
    rc = st->ops->user_insert(st, email, hash, role, adv, nadv, pub, npub, actor, &tmp, errs);
    if (rc == AP_OK && out) {
        *out = tmp;
        memset(&tmp, 0, sizeof(tmp));
    }
done:
    sodium_memzero(hash, sizeof(hash));
    ap_store_user_free(&tmp);
    free(adv);
    free(pub);
    return rc;
}

int ap_store_user_get(struct ap_store *st, int64_t id, struct ap_store_user *out)
{
    if (!st || !out)
        return AP_EINVAL;
    memset(out, 0, sizeof(*out));
    if (id <= 0)
        return AP_ENOTFOUND;
    return st->ops->user_get(st, id, out);
}

/* Lower-cases email into buf; false if it cannot be a stored email. */
static bool norm_email(const char *email, char *buf)
{
    if (!email || strlen(email) > AP_STORE_EMAIL_MAX)
        return false;
    snprintf(buf, AP_STORE_EMAIL_MAX + 1, "%s", email);
    lower_ascii(buf);
    return true;
}

int ap_store_user_get_by_email(struct ap_store *st, const char *email, struct ap_store_user *out)
{
    char buf[AP_STORE_EMAIL_MAX + 1];
    if (!st || !out)
        return AP_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!norm_email(email, buf))
        return AP_ENOTFOUND;
    return st->ops->user_by_email(st, buf, out, NULL);
}

int ap_store_user_verify_password(struct ap_store *st, const char *email, const char *password,
                                  struct ap_store_user *out)
{
    char buf[AP_STORE_EMAIL_MAX + 1];
    char *hash = NULL;
    struct ap_store_user u = {0};
    int rc;
    if (out)
        memset(out, 0, sizeof(*out));
    if (!st || !password)
        return AP_EINVAL;
    size_t pwlen = strlen(password);
    if (!norm_email(email, buf))
        rc = AP_ENOTFOUND;
    else
        rc = st->ops->user_by_email(st, buf, &u, &hash);
    if (rc == AP_ENOTFOUND) {
        /* Spend the same time as a real check, so timing does not tell which emails exist. */
        char dummy[crypto_pwhash_STRBYTES];
        if (hash_password(st, password, dummy) != AP_OK)
            rc = AP_ENOMEM;
        else
            rc = AP_EPERM;
        goto done;
    }
    if (rc)
        goto done;
    if (crypto_pwhash_str_verify(hash, password, pwlen) != 0) {
        rc = AP_EPERM;
        goto done;
    }
    if (out) {
        *out = u;
        memset(&u, 0, sizeof(u));
    }
done:
    if (hash) {
        sodium_memzero(hash, strlen(hash));
        free(hash);
    }
    ap_store_user_free(&u);
    return rc;
}

int ap_store_user_list(struct ap_store *st, const struct ap_store_list_query *q, json_t **out,
                       struct ap_schema_errors *errs)
{
    if (!out || !errs)
        return AP_EINVAL;
    *out = NULL;
    ap_schema_errors_init(errs);
    if (!st)
        return AP_EINVAL;
    return st->ops->user_list(st, q, out, errs);
}

/* ---- tokens -------------------------------------------------------------------------------- */

/* token = prefix + URL-safe base64 of 32 random bytes (43 characters). */
static void make_token(const char *prefix, char *token)
{
    unsigned char raw[TOKEN_BYTES];
    size_t plen = strlen(prefix);
    randombytes_buf(raw, sizeof(raw));
    memcpy(token, prefix, plen);
    sodium_bin2base64(token + plen, AP_STORE_TOKEN_MAX - plen, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

static void token_hash(const char *token, char *hex)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(hex, HASH_HEX, h, sizeof(h));
}

/* A token this store could have issued: prefix + 43 base64url characters. */
static bool token_shape(const char *token, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (!token || strncmp(token, prefix, plen) != 0)
        return false;
    size_t n = strlen(token + plen);
    if (n != sodium_base64_ENCODED_LEN(TOKEN_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1)
        return false;
    for (const char *p = token + plen; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

int ap_store_session_create(struct ap_store *st, int64_t user_id, int64_t ttl_seconds,
                            const struct ap_store_actor *actor, char *token,
                            int64_t *expires_at)
{
    char tok[AP_STORE_TOKEN_MAX], hex[HASH_HEX];
    int64_t sid, exp;
    if (!st || !token || ttl_seconds <= 0 || ttl_seconds > INT64_C(10) * 365 * 86400)
        return AP_EINVAL;
    token[0] = '\0';
    if (user_id <= 0)
        return AP_ENOTFOUND;
    make_token(AP_STORE_SESSION_PREFIX, tok);
    token_hash(tok, hex);
    exp = ap__store_now(st) + ttl_seconds;
    int rc = st->ops->session_insert(st, user_id, hex, exp, actor, &sid);
    if (rc == AP_OK) {
        memcpy(token, tok, strlen(tok) + 1);
        if (expires_at)
            *expires_at = exp;
    }
    sodium_memzero(tok, sizeof(tok));
    return rc;
}

int ap_store_session_lookup_exp(struct ap_store *st, const char *token, struct ap_store_user *user,
                                int64_t *session_id, int64_t *expires_at)
{
    char hex[HASH_HEX];
    int64_t dummy_id, dummy_exp;
    if (!st || !user)
        return AP_EINVAL;
    memset(user, 0, sizeof(*user));
    if (!token_shape(token, AP_STORE_SESSION_PREFIX))
        return AP_ENOTFOUND;
    token_hash(token, hex);
    return st->ops->session_find(st, hex, ap__store_now(st), user,
                                 session_id ? session_id : &dummy_id,
                                 expires_at ? expires_at : &dummy_exp);
}

int ap_store_session_lookup(struct ap_store *st, const char *token, struct ap_store_user *user,
                            int64_t *session_id)
{
    return ap_store_session_lookup_exp(st, token, user, session_id, NULL);
}

int ap_store_session_revoke(struct ap_store *st, const char *token,
                            const struct ap_store_actor *actor)
{
    char hex[HASH_HEX];
    if (!st)
        return AP_EINVAL;
    if (!token_shape(token, AP_STORE_SESSION_PREFIX))
        return AP_ENOTFOUND;
    token_hash(token, hex);
    return st->ops->session_revoke(st, hex, actor);
}

int ap_store_apikey_create(struct ap_store *st, int64_t user_id, const char *name,
                           const struct ap_store_actor *actor, char *key, json_t **out)
{
    char tok[AP_STORE_TOKEN_MAX], hex[HASH_HEX], display[APIKEY_DISPLAY_LEN + 1];
    json_t *obj = NULL;
    if (out)
        *out = NULL;
    if (!st || !key || !name)
        return AP_EINVAL;
    key[0] = '\0';
    size_t n = strlen(name);
    if (n == 0 || n > APIKEY_NAME_MAX)
        return AP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return AP_EINVAL;
    if (user_id <= 0)
        return AP_ENOTFOUND;
    make_token(AP_STORE_APIKEY_PREFIX, tok);
    token_hash(tok, hex);
    memcpy(display, tok, APIKEY_DISPLAY_LEN);
    display[APIKEY_DISPLAY_LEN] = '\0';
    int rc = st->ops->apikey_insert(st, user_id, name, hex, display, actor, &obj);
    if (rc == AP_OK) {
        memcpy(key, tok, strlen(tok) + 1);
        if (out)
            *out = obj;
        else
            json_decref(obj);
    }
    sodium_memzero(tok, sizeof(tok));
    return rc;
}

int ap_store_apikey_lookup(struct ap_store *st, const char *key, struct ap_store_user *user,
                           int64_t *key_id)
{
    char hex[HASH_HEX];
    int64_t dummy;
    if (!st || !user)
        return AP_EINVAL;
    memset(user, 0, sizeof(*user));
    if (!token_shape(key, AP_STORE_APIKEY_PREFIX))
        return AP_ENOTFOUND;
    token_hash(key, hex);
    return st->ops->apikey_find(st, hex, user, key_id ? key_id : &dummy);
}

int ap_store_apikey_revoke(struct ap_store *st, int64_t key_id,
                           const struct ap_store_actor *actor)
{
    if (!st)
        return AP_EINVAL;
    if (key_id <= 0)
        return AP_ENOTFOUND;
    return st->ops->apikey_revoke(st, key_id, actor);
}

int ap_store_apikey_touch(struct ap_store *st, int64_t key_id)
{
    if (!st)
        return AP_EINVAL;
    if (key_id <= 0)
        return AP_ENOTFOUND;
    return st->ops->apikey_touch(st, key_id, ap__store_now(st));
}

int ap_store_apikey_list(struct ap_store *st, int64_t user_id,
                         const struct ap_store_list_query *q, json_t **out,
                         struct ap_schema_errors *errs)
{
    if (!out || !errs)
        return AP_EINVAL;
    *out = NULL;
    ap_schema_errors_init(errs);
    if (!st || user_id < 0)
        return AP_EINVAL;
    return st->ops->apikey_list(st, user_id, q, out, errs);
}

int ap_store_audit_list(struct ap_store *st, const struct ap_store_audit_query *q, json_t **out,
                        struct ap_schema_errors *errs)
{
    if (!out || !errs)
        return AP_EINVAL;
    *out = NULL;
    ap_schema_errors_init(errs);
    if (!st)
        return AP_EINVAL;
    return st->ops->audit_list(st, q, out, errs);
}
