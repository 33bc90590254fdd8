/*
 * ap_cli_resources: the CLI's commands, one table row per noun (campaign, advertiser, ...) with
 * its verbs. The model resources (ap_schema's table) share the generic verbs create, list, get,
 * update, archive, pause and resume, whose flags come from the schema's fields: field
 * "budget_daily_micros" is --budget-daily-micros, a reference "advertiser_id" is also
 * --advertiser, a time "start_at" also --start. Users, API keys, reports and login have their
 * own small handlers. Everything goes through the REST API (ap__cli_call).
 */
#include "ap_cli_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"
#include "../store/ap_schema.h"

#define MAX_FIELDS 64
#define QUERY_MAX 8192
#define JSON_FILE_MAX (4u << 20) /* --targeting @file.json */

/* ---- the command table ---------------------------------------------------------------------- */

struct noun;

struct verb {
    const char *name;
    int (*run)(struct ap__cli *c, const struct noun *n);
    const char *synopsis; /* arguments after the verb */
    const char *help;
};

/* How a flag's text becomes a JSON value. */
enum kind {
    K_STRING = 0, /* as given */
    K_TIME,       /* RFC 3339; also YYYY-MM-DD, today, yesterday, tomorrow (00:00 UTC), now */
    K_INT,        /* JSON integer */
    K_NUMBER,     /* JSON number */
    K_BOOL,       /* true/false */
    K_JSON,       /* JSON text or @file */
    K_ARRAY,      /* JSON array text, @file, or a comma-separated list */
    K_INTLIST     /* comma-separated integers (or a JSON array) */
};

struct field {
    const char *name; /* the API's field name */
    enum kind kind;
    bool required, nullable, filter, immutable;
    const char *const *values; /* enum values, for --help */
    const char *meta;          /* the value's placeholder in --help: "ID", "MICROS" */
    const char *doc;
    char flag[AP_CLI_FLAG_NAME_MAX];  /* "budget-daily-micros" */
    char alias[AP_CLI_FLAG_NAME_MAX]; /* "advertiser" for advertiser_id, "start" for start_at */
};

/* Fields of the nouns outside ap_schema's table. */
struct local_field {
    const char *name;
    enum kind kind;
    bool required, filter;
    const char *const *values;
    const char *meta;
    const char *doc;
};

struct noun {
    const char *name;                /* the command */
    const char *path;                /* URL segment under /api/v1 */
    int res;                         /* enum ap_schema_res, or -1 */
    const struct local_field *local; /* res == -1: the fields, NULL-name terminated */
    const char *const *cols;         /* table columns */
    const struct verb *const *verbs; /* NULL-terminated; NULL: run below, no verb */
    int (*run)(struct ap__cli *c, const struct noun *n);
    const char *help;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static int want_pos(struct ap__cli *c, size_t n)
{
    if (c->npos > n)
        return ap__cli_usage_error(c, "unexpected argument \"%s\"", c->pos[n]);
    return AP_CLI_EXIT_OK;
}

static int oom(void)
{
    fputs("error: out of memory\n", stderr);
    return AP_CLI_EXIT_API;
}

static void flag_name(const char *field, char *out)
{
    size_t i = 0;
    for (; field[i] && i + 1 < AP_CLI_FLAG_NAME_MAX; i++)
        out[i] = field[i] == '_' ? '-' : field[i];
    out[i] = '\0';
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && !strcmp(s + n - m, suffix);
}

static const char *meta_of(const struct ap_schema_field *f)
{
    switch (f->type) {
    case AP_SCHEMA_REF:
        return "ID";
    case AP_SCHEMA_MONEY:
        return "MICROS";
    case AP_SCHEMA_INT:
        return "N";
    case AP_SCHEMA_PPM_DECIMAL:
        return "NUMBER";
    case AP_SCHEMA_BOOL:
        return "true|false";
    case AP_SCHEMA_JSON_OBJECT:
        return "JSON";
    case AP_SCHEMA_JSON_ARRAY:
        return "A,B|JSON";
    case AP_SCHEMA_TIMESTAMP:
        return "TIME";
    case AP_SCHEMA_STRING:
    case AP_SCHEMA_ENUM:
        break;
    }
    return "TEXT";
}

static enum kind kind_of(const struct ap_schema_field *f)
{
    switch (f->type) {
    case AP_SCHEMA_INT:
    case AP_SCHEMA_MONEY:
    case AP_SCHEMA_REF:
        return K_INT;
    case AP_SCHEMA_PPM_DECIMAL:
        return K_NUMBER;
    case AP_SCHEMA_BOOL:
        return K_BOOL;
    case AP_SCHEMA_JSON_OBJECT:
        return K_JSON;
    case AP_SCHEMA_JSON_ARRAY:
        return K_ARRAY;
    case AP_SCHEMA_TIMESTAMP:
        return K_TIME;
    case AP_SCHEMA_STRING:
    case AP_SCHEMA_ENUM:
        break;
    }
    return K_STRING;
}

/* The noun's fields with their flag names. Returns how many (at most max). */
static size_t noun_fields(const struct noun *n, struct field *out, size_t max)
{
    size_t k = 0;
    if (n->res >= 0) {
        const struct ap_schema_resource *r = ap_schema_get((enum ap_schema_res)n->res);
        for (size_t i = 0; r && i < r->nfields && k < max; i++, k++) {
            const struct ap_schema_field *sf = &r->fields[i];
            struct field *f = &out[k];
            memset(f, 0, sizeof *f);
            f->name = sf->name;
            f->kind = kind_of(sf);
            f->required = sf->flags & AP_SCHEMA_F_REQUIRED;
            f->nullable = sf->flags & AP_SCHEMA_F_NULLABLE;
            f->filter = sf->flags & AP_SCHEMA_F_FILTER;
            f->immutable = sf->flags & AP_SCHEMA_F_IMMUTABLE;
            f->values = sf->type == AP_SCHEMA_ENUM ? sf->values : NULL;
            f->meta = meta_of(sf);
            f->doc = sf->doc;
            flag_name(sf->name, f->flag);
            if ((sf->type == AP_SCHEMA_REF && ends_with(sf->name, "_id")) ||
                (sf->type == AP_SCHEMA_TIMESTAMP && ends_with(sf->name, "_at"))) {
                flag_name(sf->name, f->alias);
                f->alias[strlen(f->alias) - 3] = '\0';
            }
        }
        return k;
    }
    for (const struct local_field *lf = n->local; lf && lf->name && k < max; lf++, k++) {
        struct field *f = &out[k];
        memset(f, 0, sizeof *f);
        f->name = lf->name;
        f->kind = lf->kind;
        f->required = lf->required;
        f->filter = lf->filter;
        f->values = lf->values;
        f->meta = lf->meta;
        f->doc = lf->doc;
        flag_name(lf->name, f->flag);
    }
    return k;
}

/* The value of a field's flag (primary or alias); *which = the flag name used. */
static int field_flag(struct ap__cli *c, const struct field *f, const char **value,
                      const char **which)
{
    const char *v1 = ap__cli_flag(c, f->flag);
    const char *v2 = f->alias[0] ? ap__cli_flag(c, f->alias) : NULL;
    *value = NULL;
    *which = f->flag;
    if (v1 && v2)
        return ap__cli_usage_error(c, "--%s and --%s set the same field", f->flag, f->alias);
    *value = v1 ? v1 : v2;
    *which = v1 ? f->flag : f->alias;
    return AP_CLI_EXIT_OK;
}

static bool is_date(const char *s)
{
    static const char pat[] = "dddd-dd-dd";
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return false;
    }
    return s[sizeof pat - 1] == '\0';
}

/* Reads a whole file of at most max bytes into a NUL-terminated malloc'ed buffer. */
static int read_file(struct ap__cli *c, const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ap__cli_usage_error(c, "cannot open %s: %s", path, strerror(errno));
    struct ap_buf b;
    ap_buf_init(&b, max + 2); /* room for one byte too many (to notice it) and the NUL */
    int rc = AP_CLI_EXIT_OK;
    for (;;) {
        size_t room = b.cap - b.len - 1; /* bytes we may still read, keeping the NUL's place */
        size_t want = room < 65536 ? room : 65536;
        if (want == 0) {
            rc = ap__cli_usage_error(c, "%s is larger than %zu bytes", path, max);
            goto out;
        }
        if (ap_buf_reserve(&b, want + 1) != AP_OK) {
            rc = oom();
            goto out;
        }
        ssize_t got = read(fd, b.data + b.len, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = ap__cli_usage_error(c, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        b.len += (size_t)got;
        if (b.len > max) {
            rc = ap__cli_usage_error(c, "%s is larger than %zu bytes", path, max);
            goto out;
        }
    }
    b.data[b.len] = '\0';
    *out = b.data;
    *len = b.len;
    b.data = NULL;
out:
    close(fd);
    ap_buf_free(&b);
    return rc;
}

/* A comma-separated list as a JSON array: integers where the item is one, else strings. */
static json_t *split_list(const char *s, bool ints_only)
{
    json_t *a = json_array();
    if (!a || !*s)
        return a;
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[1024];
        if (n >= sizeof item)
            goto fail;
        memcpy(item, p, n);
        item[n] = '\0';
        int64_t v;
        json_t *j;
        if (ap__cli_parse_i64(item, &v) == AP_OK)
            j = json_integer(v);
        else if (ints_only)
            goto fail;
        else
            j = json_string(item);
        if (!j || json_array_append_new(a, j))
            goto fail;
        if (!comma)
            break;
        p = comma + 1;
    }
    return a;
fail:
    json_decref(a);
    return NULL;
}

/* Turns the text of --flag into the JSON value of field f. */
static int encode(struct ap__cli *c, const char *flag, const struct field *f, const char *s,
                  json_t **out)
{
    char buf[64];
    int64_t i;
    *out = NULL;
    if (f->nullable && !strcmp(s, "null")) {
        *out = json_null();
        return AP_CLI_EXIT_OK;
    }
    switch (f->kind) {
    case K_STRING:
        break;
    case K_TIME:
        if (ap__cli_relative_date(s, buf, sizeof buf) || is_date(s)) {
            if (is_date(s))
                snprintf(buf, sizeof buf, "%s", s);
            snprintf(buf + 10, sizeof buf - 10, "T00:00:00Z");
            s = buf;
        } else if (!strcmp(s, "now")) {
            time_t t = time(NULL);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
            s = buf;
        }
        break;
    case K_INT:
        if (ap__cli_parse_i64(s, &i))
            return ap__cli_usage_error(c, "--%s: expected an integer, got \"%s\"", flag, s);
        *out = json_integer(i);
        return *out ? AP_CLI_EXIT_OK : oom();
    case K_NUMBER: {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (!*s || *end || errno)
            return ap__cli_usage_error(c, "--%s: expected a number, got \"%s\"", flag, s);
        *out = json_real(d);
        return *out ? AP_CLI_EXIT_OK : oom();
    }
    case K_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1"))
            *out = json_true();
        else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0"))
            *out = json_false();
        else
            return ap__cli_usage_error(c, "--%s: expected true or false, got \"%s\"", flag, s);
        return AP_CLI_EXIT_OK;
    case K_JSON:
    case K_ARRAY:
    case K_INTLIST: {
        char *file = NULL;
        size_t len;
        const char *text = s;
        if (s[0] == '@' && f->kind != K_INTLIST) {
            int rc = read_file(c, s + 1, JSON_FILE_MAX, &file, &len);
            if (rc)
                return rc;
            text = file;
        }
        json_error_t jerr;
        *out = json_loads(text, JSON_DECODE_ANY, &jerr);
        if (*out && f->kind != K_JSON && !file && !json_is_array(*out)) {
            json_decref(*out); /* "5" is the list [5], not the number */
            *out = NULL;
        }
        if (!*out && f->kind != K_JSON && !file) {
            *out = split_list(s, f->kind == K_INTLIST);
            if (!*out && f->kind == K_INTLIST) {
                free(file);
                return ap__cli_usage_error(c,
                                           "--%s: expected integers separated by commas, "
                                           "got \"%s\"",
                                           flag, s);
            }
        }
        free(file);
        if (!*out)
            return ap__cli_usage_error(c, "--%s: not valid JSON: %s", flag, jerr.text);
        return AP_CLI_EXIT_OK;
    }
    }
    *out = json_string(s);
    if (!*out)
        return ap__cli_usage_error(c, "--%s: not valid UTF-8", flag);
    return AP_CLI_EXIT_OK;
}

/* Fills body from the field flags and --set field=value (a JSON value if it parses as one,
 * else a string). */
static int body_from_flags(struct ap__cli *c, const struct noun *n, json_t *body)
{
    struct field fs[MAX_FIELDS];
    size_t nf = noun_fields(n, fs, MAX_FIELDS);
    int rc;
    for (size_t i = 0; i < nf; i++) {
        const char *v, *which;
        if ((rc = field_flag(c, &fs[i], &v, &which)))
            return rc;
        if (!v)
            continue;
        json_t *j;
        if ((rc = encode(c, which, &fs[i], v, &j)))
            return rc;
        if (json_object_set_new(body, fs[i].name, j))
            return oom();
    }
    size_t it = 0;
    const char *set;
    while ((set = ap__cli_flag_next(c, "set", &it))) {
        const char *eq = strchr(set, '=');
        char name[AP_CLI_FLAG_NAME_MAX * 2];
        if (!eq || eq == set || (size_t)(eq - set) >= sizeof name)
            return ap__cli_usage_error(c, "--set wants field=value, got \"%s\"", set);
        memcpy(name, set, (size_t)(eq - set));
        name[eq - set] = '\0';
        if (json_object_get(body, name))
            return ap__cli_usage_error(c, "field %s is given twice", name);
        json_t *j = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        if (!j && !(j = json_string(eq + 1)))
            return ap__cli_usage_error(c, "--set %s: not valid UTF-8", name);
        if (json_object_set_new(body, name, j))
            return oom();
    }
    return AP_CLI_EXIT_OK;
}

/* Prints an object response: --json as received, else "field  value" lines. */
static void show_object(struct ap__cli *c, const struct ap__cli_resp *r)
{
    if (c->json || !json_is_object(r->json))
        ap__cli_print_body(r);
    else
        ap__cli_print_object(r->json);
}

static int path_id(struct ap__cli *c, char *out, size_t n, const char *base, int64_t id,
                   const char *suffix)
{
    int w = snprintf(out, n, "%s/%" PRId64 "%s", base, id, suffix ? suffix : "");
    if (w < 0 || (size_t)w >= n)
        return ap__cli_usage_error(c, "path too long");
    return AP_CLI_EXIT_OK;
}

/* ---- generic verbs -------------------------------------------------------------------------- */

static int v_create(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    json_t *body = json_object();
    int rc;
    if (!body)
        return oom();
    if ((rc = want_pos(c, 0)) || (rc = body_from_flags(c, n, body)) ||
        (rc = ap__cli_check_flags(c)))
        goto out;
    if (!(rc = ap__cli_call(c, "POST", n->path, NULL, body, &r)))
        show_object(c, &r);
out:
    ap__cli_resp_free(&r);
    json_decref(body);
    return rc;
}

static int v_get(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    char path[256];
    int64_t id;
    int rc;
    if ((rc = ap__cli_id_arg(c, 0, &id)) || (rc = want_pos(c, 1)) ||
        (rc = ap__cli_check_flags(c)) || (rc = path_id(c, path, sizeof path, n->path, id, NULL)))
        return rc;
    if (!(rc = ap__cli_call(c, "GET", path, NULL, NULL, &r)))
        show_object(c, &r);
    ap__cli_resp_free(&r);
    return rc;
}

static int patch(struct ap__cli *c, const struct noun *n, int64_t id, const json_t *body)
{
    struct ap__cli_resp r = {0};
    char path[256];
    int rc;
    if ((rc = path_id(c, path, sizeof path, n->path, id, NULL)))
        return rc;
    if (!(rc = ap__cli_call(c, "PATCH", path, NULL, body, &r)))
        show_object(c, &r);
    ap__cli_resp_free(&r);
    return rc;
}

/* --if-match VERSION (or an ETag as the API sends it: "3", W/"3", *) */
static void if_match(struct ap__cli *c)
{
    static char etag[64];
    int64_t v;
    c->if_match = ap__cli_flag(c, "if-match");
    if (c->if_match && ap__cli_parse_i64(c->if_match, &v) == AP_OK) {
        snprintf(etag, sizeof etag, "\"%" PRId64 "\"", v);
        c->if_match = etag;
    }
}

static int v_update(struct ap__cli *c, const struct noun *n)
{
    json_t *body = json_object();
    int64_t id;
    int rc;
    if (!body)
        return oom();
    if_match(c);
    if ((rc = ap__cli_id_arg(c, 0, &id)) || (rc = want_pos(c, 1)) ||
        (rc = body_from_flags(c, n, body)) || (rc = ap__cli_check_flags(c)))
        goto out;
    if (json_object_size(body) == 0) {
        rc = ap__cli_usage_error(c, "nothing to update: give --<field> value or --set f=v");
        goto out;
    }
    rc = patch(c, n, id, body);
out:
    json_decref(body);
    return rc;
}

static int set_status(struct ap__cli *c, const struct noun *n, const char *status)
{
    int64_t id;
    int rc;
    if_match(c);
    if ((rc = ap__cli_id_arg(c, 0, &id)) || (rc = want_pos(c, 1)) || (rc = ap__cli_check_flags(c)))
        return rc;
    json_t *body = json_pack("{ss}", "status", status);
    if (!body)
        return oom();
    rc = patch(c, n, id, body);
    json_decref(body);
    return rc;
}

static int v_pause(struct ap__cli *c, const struct noun *n)
{
    return set_status(c, n, "paused");
}

static int v_resume(struct ap__cli *c, const struct noun *n)
{
    return set_status(c, n, "active");
}

/* DELETE: archives (the row stays, with status "archived"); revokes an API key. */
static int v_delete(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    char path[256];
    int64_t id;
    int rc;
    if_match(c);
    if ((rc = ap__cli_id_arg(c, 0, &id)) || (rc = want_pos(c, 1)) ||
        (rc = ap__cli_check_flags(c)) || (rc = path_id(c, path, sizeof path, n->path, id, NULL)))
        return rc;
    if (!(rc = ap__cli_call(c, "DELETE", path, NULL, NULL, &r))) {
        if (r.len)
            show_object(c, &r);
        else if (!c->json)
            printf("%s %" PRId64 " %s\n", n->name, id,
                   strcmp(c->verb, "revoke") ? "archived" : "revoked");
    }
    ap__cli_resp_free(&r);
    return rc;
}

/* Fetches one page (or all with --all) and prints the table or the JSON document. */
static int list_pages(struct ap__cli *c, const struct noun *n, const char *query, bool all)
{
    struct ap__cli_resp r = {0};
    json_t *rows = NULL;
    char q[QUERY_MAX], cursor[1024] = "";
    int rc = AP_CLI_EXIT_OK;

    for (size_t page = 0; page < AP_CLI_MAX_PAGES; page++) {
        snprintf(q, sizeof q, "%s", query);
        if (cursor[0] && (rc = ap__cli_query_add(c, q, sizeof q, "cursor", cursor)))
            break;
        ap__cli_resp_free(&r);
        if ((rc = ap__cli_call(c, "GET", n->path, q, NULL, &r)))
            break;
        const json_t *data = json_object_get(r.json, "data");
        if (!json_is_array(data)) { /* not a list: show whatever it is */
            show_object(c, &r);
            break;
        }
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!all) {
            if (c->json) {
                ap__cli_print_body(&r);
            } else {
                ap__cli_print_table(data, n->cols);
                if (next)
                    fprintf(stderr, "(more: --cursor %s, or --all)\n", next);
            }
            break;
        }
        if ((!rows && !(rows = json_array())) || json_array_extend(rows, (json_t *)data)) {
            rc = oom();
            break;
        }
        if (!next || !*next) {
            if (c->json) {
                json_t *doc = json_pack("{sOsn}", "data", rows, "next_cursor");
                if (!doc) {
                    rc = oom();
                    break;
                }
                ap__cli_print_json(doc);
                json_decref(doc);
            } else {
                ap__cli_print_table(rows, n->cols);
            }
            break;
        }
        if (strlen(next) >= sizeof cursor) {
            fputs("error: the API answered an over-long next_cursor\n", stderr);
            rc = AP_CLI_EXIT_API;
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", next); /* next lives in r, freed next round */
    }
    ap__cli_resp_free(&r);
    json_decref(rows);
    return rc;
}

/* Adds the flags every list takes (--limit, --cursor, --param; --all) to query, checks the
 * flags and fetches. */
static int list_run(struct ap__cli *c, const struct noun *n, char *query, size_t qn)
{
    int rc;
    const char *limit = ap__cli_flag(c, "limit");
    const char *cursor = ap__cli_flag(c, "cursor");
    bool all = ap__cli_switch(c, "all");
    if (limit && (rc = ap__cli_query_add(c, query, qn, "limit", limit)))
        return rc;
    if (all && cursor)
        return ap__cli_usage_error(c, "--all and --cursor do not go together");
    if (cursor && (rc = ap__cli_query_add(c, query, qn, "cursor", cursor)))
        return rc;
    size_t it = 0;
    const char *p;
    while ((p = ap__cli_flag_next(c, "param", &it))) {
        char key[128];
        const char *eq = strchr(p, '=');
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof key)
            return ap__cli_usage_error(c, "--param wants name=value, got \"%s\"", p);
        memcpy(key, p, (size_t)(eq - p));
        key[eq - p] = '\0';
        if ((rc = ap__cli_query_add(c, query, qn, key, eq + 1)))
            return rc;
    }
    if ((rc = ap__cli_check_flags(c)))
        return rc;
    return list_pages(c, n, query, all);
}

static int v_list(struct ap__cli *c, const struct noun *n)
{
    struct field fs[MAX_FIELDS];
    size_t nf = noun_fields(n, fs, MAX_FIELDS);
    char query[QUERY_MAX] = "";
    int rc;
    if ((rc = want_pos(c, 0)))
        return rc;
    for (size_t i = 0; i < nf; i++) {
        const char *v, *which;
        if (!fs[i].filter)
            continue;
        if ((rc = field_flag(c, &fs[i], &v, &which)))
            return rc;
        if (v && (rc = ap__cli_query_add(c, query, sizeof query, fs[i].name, v)))
            return rc;
    }
    return list_run(c, n, query, sizeof query);
}

/* ---- creatives ------------------------------------------------------------------------------ */

static const char *sniff_image(const unsigned char *p, size_t n)
{
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return "image/jpeg";
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6)))
        return "image/gif";
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return "image/webp";
    return NULL;
}

/* creative upload FILE --advertiser ID [--name NAME]: the raw bytes to /creatives/upload; the
 * server sniffs the type and reads the size, the CLI only labels the body. */
static int v_upload(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    char query[QUERY_MAX] = "";
    char *data = NULL;
    size_t len = 0;
    int rc;
    (void)n;
    if (c->npos == 0)
        return ap__cli_usage_error(c, "\"creative upload\" needs a file: creative upload "
                                      "FILE --advertiser ID");
    if ((rc = want_pos(c, 1)))
        return rc;
    const char *file = c->pos[0];
    const char *adv = ap__cli_flag(c, "advertiser");
    const char *adv2 = ap__cli_flag(c, "advertiser-id");
    const char *name = ap__cli_flag(c, "name");
    const char *ctype = ap__cli_flag(c, "content-type");
    if (adv && adv2)
        return ap__cli_usage_error(c, "--advertiser and --advertiser-id set the same field");
    if (!adv)
        adv = adv2;
    if (!name) {
        const char *slash = strrchr(file, '/');
        name = slash ? slash + 1 : file;
    }
    if ((rc = ap__cli_check_flags(c)))
        return rc;
    if (adv && (rc = ap__cli_query_add(c, query, sizeof query, "advertiser_id", adv)))
        return rc;
    if ((rc = ap__cli_query_add(c, query, sizeof query, "name", name)))
        return rc;
    if ((rc = read_file(c, file, AP_CLI_MAX_UPLOAD, &data, &len)))
        return rc;
    if (!ctype)
        ctype = sniff_image((const unsigned char *)data, len);
    if (!ctype)
        ctype = "application/octet-stream"; /* the server says what is wrong with it */
    rc = ap__cli_http(c, "POST", "creatives/upload", query, ctype, data, len, &r);
    if (!rc)
        rc = ap__cli_status(c, &r);
    if (!rc)
        show_object(c, &r);
    ap__cli_resp_free(&r);
    free(data);
    return rc;
}

/* ---- placements ----------------------------------------------------------------------------- */

/* placement tag ID: the ad tag snippet, ready to paste (--json: the API's document). */
static int v_tag(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    char path[256];
    int64_t id;
    int rc;
    if ((rc = ap__cli_id_arg(c, 0, &id)) || (rc = want_pos(c, 1)) ||
        (rc = ap__cli_check_flags(c)) || (rc = path_id(c, path, sizeof path, n->path, id, "/tag")))
        return rc;
    if (!(rc = ap__cli_call(c, "GET", path, NULL, NULL, &r))) {
        const char *tag = json_string_value(json_object_get(r.json, "tag"));
        if (c->json || (r.json && !tag)) {
            ap__cli_print_body(&r);
        } else if (tag) {
            fputs(tag, stdout);
            if (!*tag || tag[strlen(tag) - 1] != '\n')
                fputc('\n', stdout);
        } else {
            ap__cli_print_body(&r); /* text/html */
        }
    }
    ap__cli_resp_free(&r);
    return rc;
}

/* ---- users and API keys --------------------------------------------------------------------- */

static const char *const ROLES[] = {"admin", "advertiser", "publisher", "viewer", NULL};

static const struct local_field USER_FIELDS[] = {
    {"email", K_STRING, true, false, NULL, "EMAIL", "login e-mail address"},
    {"password", K_STRING, true, false, NULL, "TEXT|-",
     "at least 8 characters; \"-\": read from ADPLATFORM_PASSWORD or stdin"},
    {"role", K_STRING, true, false, ROLES, NULL, "what the user may do"},
    {"advertiser_ids", K_INTLIST, false, false, NULL, "ID,ID", "advertisers of an advertiser user"},
    {"publisher_ids", K_INTLIST, false, false, NULL, "ID,ID", "publishers of a publisher user"},
    {NULL, K_STRING, false, false, NULL, NULL, NULL},
};

static const struct local_field APIKEY_FIELDS[] = {
    {"name", K_STRING, false, false, NULL, "TEXT", "what the key is for (default: \"cli\")"},
    {"user_id", K_INT, false, true, NULL, "ID", "whose key (admins only; default: yours)"},
    {NULL, K_STRING, false, false, NULL, NULL, NULL},
};

static const struct local_field AUDIT_FIELDS[] = {
    {"resource", K_STRING, false, true, NULL, "NAME", "campaign, api_key, ..."},
    {"resource_id", K_INT, false, true, NULL, "ID", "one object's history"},
    {"actor_user_id", K_INT, false, true, NULL, "ID", "what one user did"},
    {NULL, K_STRING, false, false, NULL, NULL, NULL},
};

static int v_user_create(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    char password[AP_CLI_PASSWORD_MAX + 2];
    json_t *body = json_object();
    int rc;
    if (!body)
        return oom();
    if ((rc = want_pos(c, 0)) || (rc = body_from_flags(c, n, body)) ||
        (rc = ap__cli_check_flags(c)))
        goto out;
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (pw && !strcmp(pw, "-")) {
        if ((rc = ap__cli_read_password(c, password, sizeof password)))
            goto out;
        json_t *j = json_string(password);
        if (!j || json_object_set_new(body, "password", j)) {
            rc = ap__cli_usage_error(c, "the password is not valid UTF-8");
            goto out;
        }
    }
    if (!(rc = ap__cli_call(c, "POST", n->path, NULL, body, &r)))
        show_object(c, &r);
out:
    explicit_bzero(password, sizeof password);
    ap__cli_resp_free(&r);
    json_decref(body);
    return rc;
}

static int v_user_me(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    char path[64];
    int rc;
    if ((rc = want_pos(c, 0)) || (rc = ap__cli_check_flags(c)))
        return rc;
    snprintf(path, sizeof path, "%s/me", n->path);
    if (!(rc = ap__cli_call(c, "GET", path, NULL, NULL, &r)))
        show_object(c, &r);
    ap__cli_resp_free(&r);
    return rc;
}

static int v_apikey_create(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    json_t *body = json_object();
    int rc;
    if (!body)
        return oom();
    if ((rc = want_pos(c, 0)) || (rc = body_from_flags(c, n, body)) ||
        (rc = ap__cli_check_flags(c)))
        goto out;
    if (!json_object_get(body, "name") && json_object_set_new(body, "name", json_string("cli"))) {
        rc = oom();
        goto out;
    }
    if (!(rc = ap__cli_call(c, "POST", n->path, NULL, body, &r))) {
        show_object(c, &r);
        if (!c->json)
            fputs("note: the key is shown only this once; store it now\n", stderr);
    }
out:
    ap__cli_resp_free(&r);
    json_decref(body);
    return rc;
}

/* ---- reports -------------------------------------------------------------------------------- */

static const char *const REPORT_FILTERS[] = {"advertiser", "campaign",       "ad",
                                             "creative",   "publisher",      "site",
                                             "placement",  "demand-partner", NULL};

/* Columns of the report table (those present in the answer are shown). */
static const char *const COLS_REPORT[] = {
    "date",        "hour",        "campaign_id",  "ad_id",          "placement_id",
    "site_id",     "publisher_id", "advertiser_id", "partner_id",    "country",
    "device",      "impressions", "clicks",       "ctr",            "conversions",
    "spend_micros", "revenue_micros", "ecpm_micros", "bids",        "wins",
    NULL};

/* report --from today --to today --group-by campaign [--timezone Z] [--granularity G]
 * [--advertiser ID ...] [--param k=v]: GET /api/v1/reports, rows as a table and a totals line
 * (--json: the answer as is). Dates: YYYY-MM-DD, today, yesterday (UTC). */
static int run_report(struct ap__cli *c, const struct noun *n)
{
    char query[QUERY_MAX] = "";
    char date[16];
    int rc;
    static const char *const dates[] = {"from", "to"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = ap__cli_flag(c, dates[i]);
        if (!v)
            continue;
        if (ap__cli_relative_date(v, date, sizeof date))
            v = date;
        if ((rc = ap__cli_query_add(c, query, sizeof query, dates[i], v)))
            return rc;
    }
    static const char *const plain[][2] = {{"group-by", "group_by"},
                                           {"timezone", "timezone"},
                                           {"granularity", "granularity"},
                                           {"country", "country"},
                                           {"device", "device"},
                                           {"traffic", "traffic"}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        const char *v = ap__cli_flag(c, plain[i][0]);
        if (v && (rc = ap__cli_query_add(c, query, sizeof query, plain[i][1], v)))
            return rc;
    }
    for (const char *const *f = REPORT_FILTERS; *f; f++) {
        char flag[AP_CLI_FLAG_NAME_MAX], field[AP_CLI_FLAG_NAME_MAX];
        snprintf(flag, sizeof flag, "%s-id", *f);
        const char *v1 = ap__cli_flag(c, *f), *v2 = ap__cli_flag(c, flag);
        if (v1 && v2)
            return ap__cli_usage_error(c, "--%s and --%s set the same filter", *f, flag);
        if (!v1)
            v1 = v2;
        size_t k = 0;
        for (; (*f)[k] && k + 4 < sizeof field; k++)
            field[k] = (*f)[k] == '-' ? '_' : (*f)[k];
        memcpy(field + k, "_id", 4);
        if (v1 && (rc = ap__cli_query_add(c, query, sizeof query, field, v1)))
            return rc;
    }
    size_t it = 0;
    const char *p;
    while ((p = ap__cli_flag_next(c, "param", &it))) {
        char key[128];
        const char *eq = strchr(p, '=');
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof key)
            return ap__cli_usage_error(c, "--param wants name=value, got \"%s\"", p);
        memcpy(key, p, (size_t)(eq - p));
        key[eq - p] = '\0';
        if ((rc = ap__cli_query_add(c, query, sizeof query, key, eq + 1)))
            return rc;
    }
    if ((rc = ap__cli_check_flags(c)))
        return rc;
    struct ap__cli_resp r = {0};
    if ((rc = ap__cli_call(c, "GET", n->path, query, NULL, &r)) == AP_CLI_EXIT_OK) {
        const json_t *rows = json_object_get(r.json, "rows");
        const json_t *totals = json_object_get(r.json, "totals");
        if (c->json || !json_is_array(rows)) {
            ap__cli_print_body(&r);
        } else {
            ap__cli_print_table(rows, COLS_REPORT);
            json_t *t = json_is_object(totals) ? json_pack("[O]", totals) : NULL;
            if (t) {
                fputs("totals:\n", stdout);
                ap__cli_print_table(t, COLS_REPORT);
            }
            json_decref(t);
        }
    }
    ap__cli_resp_free(&r);
    return rc;
}

/* ---- login and logout ----------------------------------------------------------------------- */

/* Writes url and api_key into the config file (mode 0600), keeping its other lines. */
static int save_config(struct ap__cli *c, const char *token)
{
    char tmp[AP_CLI_PATH_MAX + 16], dir[AP_CLI_PATH_MAX];
    char *old = NULL;
    size_t len = 0;
    int rc = AP_CLI_EXIT_OK;
    FILE *f = NULL;
    if (!c->config_path[0])
        return ap__cli_usage_error(c, "--save: no home directory (set HOME or "
                                      "XDG_CONFIG_HOME)");
    /* create the directories (0700) */
    snprintf(dir, sizeof dir, "%s", c->config_path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "error: cannot create %s: %s\n", dir, strerror(errno));
            return AP_CLI_EXIT_API;
        }
        *p = '/';
    }
    if (access(c->config_path, F_OK) == 0 &&
        (rc = read_file(c, c->config_path, 1u << 20, &old, &len)))
        return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp", c->config_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        fprintf(stderr, "error: cannot write %s: %s\n", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    for (char *line = old, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        const char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t kl = strspn(s, "abcdefghijklmnopqrstuvwxyz_");
        const char *after = s + kl;
        while (*after == ' ' || *after == '\t')
            after++;
        bool ours = *after == '=' &&
                    ((kl == 3 && !strncmp(s, "url", 3)) || (kl == 7 && !strncmp(s, "api_key", 7)));
        if (!ours)
            fprintf(f, "%.*s\n", (int)ll, line);
    }
    fprintf(f, "url = %s\napi_key = %s\n", c->url, token);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "error: cannot write %s: %s\n", tmp, strerror(errno));
        unlink(tmp);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    f = NULL;
    if (rename(tmp, c->config_path) != 0) {
        fprintf(stderr, "error: cannot replace %s: %s\n", c->config_path, strerror(errno));
        unlink(tmp);
        rc = AP_CLI_EXIT_API;
    }
out:
    if (f)
        fclose(f);
    free(old);
    return rc;
}

/* login --email E [--print-token] [--save]: POST /auth/login with the password from
 * ADPLATFORM_PASSWORD or stdin. The session token is printed (--print-token) or saved in the
 * config file (--save) only when asked; otherwise the credentials are checked and the session is
 * closed again. */
static int run_login(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0}, out = {0};
    char password[AP_CLI_PASSWORD_MAX + 2] = "";
    json_t *body = NULL;
    int rc;
    (void)n;
    const char *email = ap__cli_flag(c, "email");
    bool print = ap__cli_switch(c, "print-token");
    bool save = ap__cli_switch(c, "save");
    if ((rc = ap__cli_check_flags(c)))
        return rc;
    if (!email)
        return ap__cli_usage_error(c, "login needs --email");
    if ((rc = ap__cli_read_password(c, password, sizeof password)))
        return rc;
    body = json_pack("{ssss}", "email", email, "password", password);
    explicit_bzero(password, sizeof password);
    if (!body) {
        rc = ap__cli_usage_error(c, "the e-mail address or password is not valid UTF-8");
        goto out;
    }
    c->key[0] = '\0'; /* login itself needs no key */
    c->anonymous = true;
    if ((rc = ap__cli_call(c, "POST", "auth/login", NULL, body, &r)))
        goto out;
    const char *token = json_string_value(json_object_get(r.json, "token"));
    if (!token) {
        fputs("error: the login answer has no token\n", stderr);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    if (save && (rc = save_config(c, token)))
        goto out;
    if (print) {
        if (c->json)
            ap__cli_print_body(&r);
        else
            printf("%s\n", token);
    }
    if (save)
        fprintf(stderr, "logged in as %s; session saved in %s\n", email, c->config_path);
    if (!print && !save) {
        /* nobody keeps the token: close the session again */
        snprintf(c->key, sizeof c->key, "%s", token);
        if (!ap__cli_http(c, "POST", "auth/logout", NULL, "application/json", "{}", 2, &out))
            (void)ap__cli_status(c, &out);
        c->key[0] = '\0';
        fprintf(stderr,
                "ok: the credentials of %s are valid (--print-token or --save keeps a "
                "session)\n",
                email);
    }
out:
    ap__cli_resp_free(&out);
    ap__cli_resp_free(&r);
    json_decref(body);
    return rc;
}

/* logout: revokes the session token in use (--api-key, ADPLATFORM_API_KEY or the config). */
static int run_logout(struct ap__cli *c, const struct noun *n)
{
    struct ap__cli_resp r = {0};
    int rc;
    (void)n;
    if ((rc = ap__cli_check_flags(c)))
        return rc;
    rc = ap__cli_http(c, "POST", "auth/logout", NULL, "application/json", "{}", 2, &r);
    if (!rc)
        rc = ap__cli_status(c, &r);
    if (!rc && !c->json)
        fputs("logged out\n", stderr);
    else if (!rc)
        ap__cli_print_body(&r);
    ap__cli_resp_free(&r);
    return rc;
}

/* ---- the table ------------------------------------------------------------------------------ */

static const struct verb V_CREATE = {"create", v_create, "--field value ...",
                                     "create one (201: the new object)"};
static const struct verb V_LIST = {"list", v_list,
                                   "[--<filter> value ...] [--limit N] [--cursor C] [--all]",
                                   "list (a page; --all follows the cursor)"};
static const struct verb V_GET = {"get", v_get, "ID", "show one"};
static const struct verb V_UPDATE = {"update", v_update,
                                     "ID --field value ... [--if-match VERSION]", "change fields"};
static const struct verb V_ARCHIVE = {"archive", v_delete, "ID",
                                      "archive (DELETE; the row stays, status archived)"};
static const struct verb V_PAUSE = {"pause", v_pause, "ID", "set status paused"};
static const struct verb V_RESUME = {"resume", v_resume, "ID", "set status active"};
static const struct verb V_UPLOAD = {"upload", v_upload,
                                     "FILE --advertiser ID [--name NAME] [--content-type T]",
                                     "upload a PNG, JPEG, GIF or WebP image as an image creative"};
static const struct verb V_TAG = {"tag", v_tag, "ID", "print the placement's ad tag snippet"};
static const struct verb V_USER_CREATE = {
    "create", v_user_create, "--email E --password P|- --role R [--advertiser-ids 1,2]",
    "create a user (admin only)"};
static const struct verb V_USER_ME = {"me", v_user_me, "", "show the user behind the API key"};
static const struct verb V_APIKEY_CREATE = {"create", v_apikey_create, "[--name NAME]",
                                            "create an API key (shown once)"};
static const struct verb V_APIKEY_REVOKE = {"revoke", v_delete, "ID", "revoke a key"};

/* NULL-terminated verb lists */
static const struct verb *const MODEL_VERBS[] = {&V_CREATE, &V_LIST,   &V_GET,     &V_UPDATE,
                                                 &V_PAUSE,  &V_RESUME, &V_ARCHIVE, NULL};
static const struct verb *const CREATIVE_VERBS[] = {
    &V_UPLOAD, &V_CREATE, &V_LIST, &V_GET, &V_UPDATE, &V_PAUSE, &V_RESUME, &V_ARCHIVE, NULL};
static const struct verb *const PLACEMENT_VERBS[] = {
    &V_CREATE, &V_LIST, &V_GET, &V_UPDATE, &V_TAG, &V_PAUSE, &V_RESUME, &V_ARCHIVE, NULL};
static const struct verb *const USER_VERBS[] = {&V_USER_CREATE, &V_LIST, &V_GET, &V_USER_ME, NULL};
static const struct verb *const APIKEY_VERBS[] = {&V_APIKEY_CREATE, &V_LIST, &V_APIKEY_REVOKE,
                                                  NULL};
static const struct verb *const AUDIT_VERBS[] = {&V_LIST, NULL};

static const char *const COLS_ADVERTISER[] = {
    "id", "name", "currency", "timezone", "status", "credit_limit_micros", NULL};
static const char *const COLS_CAMPAIGN[] = {"id",
                                            "advertiser_id",
                                            "name",
                                            "status",
                                            "priority_tier",
                                            "pricing_model",
                                            "price_micros",
                                            "budget_daily_micros",
                                            "start_at",
                                            "end_at",
                                            NULL};
static const char *const COLS_AD[] = {"id",     "campaign_id", "creative_id", "weight",
                                      "status", "landing_url", NULL};
static const char *const COLS_CREATIVE[] = {"id",     "advertiser_id",   "name",   "type", "width",
                                            "height", "approval_status", "status", NULL};
static const char *const COLS_PUBLISHER[] = {"id",       "name",   "currency", "revenue_share_ppm",
                                             "timezone", "status", NULL};
static const char *const COLS_SITE[] = {"id",     "publisher_id", "name",   "kind",
                                        "domain", "bundle_id",    "status", NULL};
static const char *const COLS_PLACEMENT[] = {"id",       "site_id",          "name",   "sizes",
                                             "ad_types", "floor_cpm_micros", "status", NULL};
static const char *const COLS_DEMAND_PARTNER[] = {
    "id",        "name",           "bidder_code", "endpoint", "timeout_ms",
    "qps_limit", "bid_adjustment", "status",      NULL};
static const char *const COLS_USER[] = {
    "id", "email", "role", "advertiser_ids", "publisher_ids", "created_at", NULL};
static const char *const COLS_APIKEY[] = {"id",         "user_id",      "name",    "prefix",
                                          "created_at", "last_used_at", "revoked", NULL};
static const char *const COLS_AUDIT[] = {"id",          "at", "actor_user_id", "action", "resource",
                                         "resource_id", NULL};

static const struct noun NOUNS[] = {
    {"advertiser", "advertisers", AP_SCHEMA_ADVERTISER, NULL, COLS_ADVERTISER, MODEL_VERBS, NULL,
     "advertiser accounts"},
    {"campaign", "campaigns", AP_SCHEMA_CAMPAIGN, NULL, COLS_CAMPAIGN, MODEL_VERBS, NULL,
     "campaigns of an advertiser"},
    {"ad", "ads", AP_SCHEMA_AD, NULL, COLS_AD, MODEL_VERBS, NULL, "ads: a creative in a campaign"},
    {"creative", "creatives", AP_SCHEMA_CREATIVE, NULL, COLS_CREATIVE, CREATIVE_VERBS, NULL,
     "creatives (upload images)"},
    {"publisher", "publishers", AP_SCHEMA_PUBLISHER, NULL, COLS_PUBLISHER, MODEL_VERBS, NULL,
     "publisher accounts"},
    {"site", "sites", AP_SCHEMA_SITE, NULL, COLS_SITE, MODEL_VERBS, NULL,
     "sites and apps of a publisher"},
    {"placement", "placements", AP_SCHEMA_PLACEMENT, NULL, COLS_PLACEMENT, PLACEMENT_VERBS, NULL,
     "ad slots of a site, with their ad tag"},
    {"demand-partner", "demand-partners", AP_SCHEMA_DEMAND_PARTNER, NULL, COLS_DEMAND_PARTNER,
     MODEL_VERBS, NULL, "OpenRTB bidders"},
    {"user", "users", -1, USER_FIELDS, COLS_USER, USER_VERBS, NULL, "users and their roles"},
    {"apikey", "api-keys", -1, APIKEY_FIELDS, COLS_APIKEY, APIKEY_VERBS, NULL,
     "API keys of the current user"},
    {"audit", "audit-log", -1, AUDIT_FIELDS, COLS_AUDIT, AUDIT_VERBS, NULL,
     "the audit log (admin only)"},
    {"report", "reports", -1, NULL, NULL, NULL, run_report,
     "delivery reports: --from --to --group-by"},
    {"login", NULL, -1, NULL, NULL, NULL, run_login,
     "check a password; --print-token / --save a session"},
    {"logout", NULL, -1, NULL, NULL, NULL, run_logout, "end the session in use"},
};

#define NNOUNS (sizeof NOUNS / sizeof NOUNS[0])

static const struct noun *find_noun(const char *name)
{
    for (size_t i = 0; i < NNOUNS; i++)
        if (!strcmp(NOUNS[i].name, name))
            return &NOUNS[i];
    return NULL;
}

bool ap__cli_resources_has(const char *cmd)
{
    return find_noun(cmd) != NULL;
}

void ap__cli_resources_usage(FILE *out)
{
    fputs("\nAPI client commands (adplatform <command> --help):\n", out);
    for (size_t i = 0; i < NNOUNS; i++) {
        const struct noun *n = &NOUNS[i];
        char verbs[256] = "";
        size_t len = 0;
        for (const struct verb *const *v = n->verbs; v && *v && len < sizeof verbs; v++) {
            int w = snprintf(verbs + len, sizeof verbs - len, "%s%s", len ? "|" : "", (*v)->name);
            if (w > 0)
                len += (size_t)w;
        }
        fprintf(out, "  %-15s %s\n", n->name, len ? verbs : n->help);
    }
}

#define HELP_INDENT 40
#define HELP_WIDTH 100

/* Prints "  <head>" and then text from column HELP_INDENT, wrapped at HELP_WIDTH. */
static void help_line(FILE *out, const char *head, const char *text)
{
    size_t col = (size_t)fprintf(out, "  %s", head);
    if (col + 2 > HELP_INDENT) {
        fputc('\n', out);
        col = 0;
    }
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (!w)
            break;
        if (col > HELP_INDENT && col + 1 + w > HELP_WIDTH) {
            fputc('\n', out);
            col = 0;
        }
        if (col < HELP_INDENT) {
            fprintf(out, "%*s", (int)(HELP_INDENT - col), "");
            col = HELP_INDENT;
        } else {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", (int)w, p);
        col += w;
        p += w;
    }
    fputc('\n', out);
}

static void help_fields(const struct noun *n, bool filters, FILE *out)
{
    struct field fs[MAX_FIELDS];
    size_t nf = noun_fields(n, fs, MAX_FIELDS);
    for (size_t i = 0; i < nf; i++) {
        const struct field *f = &fs[i];
        if (filters && !f->filter)
            continue;
        char meta[256] = "";
        size_t len = 0;
        for (const char *const *v = f->values; v && *v && len < sizeof meta; v++) {
            int w = snprintf(meta + len, sizeof meta - len, "%s%s", len ? "|" : "", *v);
            if (w > 0)
                len += (size_t)w;
        }
        if (!len)
            snprintf(meta, sizeof meta, "%s", f->meta ? f->meta : "VALUE");
        char head[400], text[400];
        snprintf(head, sizeof head, "--%s%s%s %s", f->flag, f->alias[0] ? ", --" : "", f->alias,
                 meta);
        snprintf(text, sizeof text, "%s%s%s", f->doc ? f->doc : "",
                 !filters && f->required ? " [required]" : "",
                 !filters && f->immutable ? " [create only]" : "");
        help_line(out, head, text);
    }
}

void ap__cli_resources_help(const char *cmd, const char *verb, FILE *out)
{
    const struct noun *n = find_noun(cmd);
    if (!n)
        return;
    if (!n->verbs) {
        fprintf(out, "Usage: adplatform %s [flags]: %s\n", n->name, n->help);
        if (n->run == run_report)
            fputs("\nFlags:\n  --from DATE --to DATE   YYYY-MM-DD, today or yesterday (UTC)\n"
                  "  --group-by DIMS         e.g. campaign, day, campaign,day\n"
                  "  --advertiser ID, --campaign ID, --ad ID, --creative ID, --publisher ID,\n"
                  "  --site ID, --placement ID, --demand-partner ID   filters (also --X-id)\n"
                  "  --param name=value      any other query parameter\n",
                  out);
        else if (n->run == run_login)
            fputs("\nFlags:\n  --email E        the account\n"
                  "  --print-token    print the session token (export ADPLATFORM_API_KEY=...)\n"
                  "  --save           store url and token in the config file (mode 0600)\n"
                  "The password comes from ADPLATFORM_PASSWORD or the first line of stdin.\n",
                  out);
    } else {
        fprintf(out, "Usage: adplatform %s <verb> [arguments] [flags]: %s\n\nVerbs:\n", n->name,
                n->help);
        for (const struct verb *const *vp = n->verbs; *vp; vp++) {
            const struct verb *v = *vp;
            if (verb && strcmp(verb, v->name))
                continue;
            char head[300];
            snprintf(head, sizeof head, "%s %s", v->name, v->synopsis);
            help_line(out, head, v->help);
        }
        bool writes = false, lists = false;
        for (const struct verb *const *vp = n->verbs; *vp; vp++) {
            const struct verb *v = *vp;
            if (verb && strcmp(verb, v->name))
                continue;
            if (!strcmp(v->name, "create") || !strcmp(v->name, "update"))
                writes = true;
            if (!strcmp(v->name, "list"))
                lists = true;
        }
        if (writes) {
            fputs("\nFields (create, update); \"null\" clears a nullable one, JSON fields take "
                  "JSON or @file:\n",
                  out);
            help_fields(n, false, out);
            help_line(out, "--set field=value",
                      "any field (value: JSON if it parses, else a "
                      "string)");
        }
        if (lists) {
            fputs("\nList flags:\n", out);
            help_fields(n, true, out);
            help_line(out, "--limit N, --cursor C", "page size, next page (\"next_cursor\")");
            help_line(out, "--all", "follow the cursor to the last page");
            help_line(out, "--param name=value", "any other query parameter");
        }
    }
    fputs("\nGlobal flags:\n", out);
    help_line(out, "--url URL",
              "else $ADPLATFORM_URL, url in the config file, " AP_CLI_DEFAULT_URL);
    help_line(out, "--api-key KEY",
              "else $ADPLATFORM_API_KEY, api_key in the config file "
              "($XDG_CONFIG_HOME/adplatform/config, "
              "~/.config/adplatform/config)");
    help_line(out, "--json", "print the API's JSON instead of tables");
    help_line(out, "--verbose", "show each request and status on stderr");
    fputs("\nExit codes: 0 ok, 1 API error, 2 usage, 3 network, 4 not found, 5 unauthorised\n",
          out);
}

int ap__cli_resources_run(struct ap__cli *c)
{
    const struct noun *n = find_noun(c->cmd);
    if (!n)
        return ap__cli_usage_error(NULL, "unknown command \"%s\"", c->cmd);
    if (!n->verbs) {
        if (c->verb)
            return ap__cli_usage_error(c, "unexpected argument \"%s\"", c->verb);
        return n->run(c, n);
    }
    if (!c->verb) {
        ap__cli_resources_help(c->cmd, NULL, stderr);
        return AP_CLI_EXIT_USAGE;
    }
    for (const struct verb *const *vp = n->verbs; *vp; vp++) {
        const struct verb *v = *vp;
        if (!strcmp(v->name, c->verb))
            return v->run(c, n);
    }
    return ap__cli_usage_error(c, "unknown verb \"%s\" for \"%s\"", c->verb, c->cmd);
}
