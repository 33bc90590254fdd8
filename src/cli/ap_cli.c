/*
 * ap_cli: argument parsing, where to connect (flags > environment > config file > default),
 * HTTP through libcurl, error reporting and the table / JSON output. The commands themselves
 * live in ap_cli_resources.c.
 */
#include "ap_cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"
#include "ap_cli_internal.h"

/* Flags that take no value; every other flag takes one ("--name value" or "--name=value"). */
static const char *const SWITCHES[] = {"json", "all",     "help", "print-token",
                                       "save", "verbose", NULL};
/* Flags that may be given more than once. */
static const char *const REPEATABLE[] = {"set", "param", NULL};

#define CELL_MAX 48 /* characters of a table cell before it is cut with "..." */

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (!strcmp(*list, s))
            return true;
    return false;
}

/* ---- arguments ------------------------------------------------------------------------------ */

int ap__cli_usage_error(struct ap__cli *c, const char *fmt, ...)
{
    va_list ap;
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (c && c->cmd)
        fprintf(stderr, "(see: adplatform %s --help)\n", c->cmd);
    return AP_CLI_EXIT_USAGE;
}

static struct ap__cli_flag *find_flag(struct ap__cli *c, const char *name, size_t from)
{
    for (size_t i = from; i < c->nflags; i++)
        if (!strcmp(c->flags[i].name, name))
            return &c->flags[i];
    return NULL;
}

const char *ap__cli_flag(struct ap__cli *c, const char *name)
{
    struct ap__cli_flag *f = find_flag(c, name, 0);
    if (!f)
        return NULL;
    f->used = true;
    return f->value ? f->value : "";
}

bool ap__cli_switch(struct ap__cli *c, const char *name)
{
    return ap__cli_flag(c, name) != NULL;
}

const char *ap__cli_flag_next(struct ap__cli *c, const char *name, size_t *iter)
{
    for (size_t i = *iter; i < c->nflags; i++) {
        if (!strcmp(c->flags[i].name, name)) {
            c->flags[i].used = true;
            *iter = i + 1;
            return c->flags[i].value;
        }
    }
    *iter = c->nflags;
    return NULL;
}

int ap__cli_check_flags(struct ap__cli *c)
{
    for (size_t i = 0; i < c->nflags; i++) {
        if (!c->flags[i].used) {
            if (c->verb)
                return ap__cli_usage_error(c, "unknown flag --%s for \"%s %s\"", c->flags[i].name,
                                           c->cmd, c->verb);
            return ap__cli_usage_error(c, "unknown flag --%s for \"%s\"", c->flags[i].name, c->cmd);
        }
    }
    return AP_CLI_EXIT_OK;
}

int ap__cli_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
        return AP_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return AP_EINVAL;
    *out = (int64_t)v;
    return AP_OK;
}

int ap__cli_id_arg(struct ap__cli *c, size_t i, int64_t *id)
{
    if (i >= c->npos)
        return ap__cli_usage_error(c, "\"%s %s\" needs an ID", c->cmd, c->verb ? c->verb : "");
    if (ap__cli_parse_i64(c->pos[i], id) || *id <= 0)
        return ap__cli_usage_error(c, "\"%s\" is not an ID (a positive integer)", c->pos[i]);
    return AP_CLI_EXIT_OK;
}

/* Splits argv (after the command) into the verb, positionals and flags. */
static int parse_args(struct ap__cli *c, int argc, char **argv)
{
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') { /* "-" alone is a positional (stdin) */
            if (!c->verb && c->npos == 0 && c->nflags == 0 && !only_pos) {
                c->verb = a;
                continue;
            }
            if (c->npos == AP_CLI_MAX_ARGS)
                return ap__cli_usage_error(c, "too many arguments");
            c->pos[c->npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "-h"))
            a = "--help";
        if (a[1] != '-' || a[2] == '\0' || a[2] == '=')
            return ap__cli_usage_error(c, "unknown flag %s", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen >= AP_CLI_FLAG_NAME_MAX)
            return ap__cli_usage_error(c, "unknown flag %.*s", AP_CLI_FLAG_NAME_MAX, a);
        if (c->nflags == AP_CLI_MAX_ARGS)
            return ap__cli_usage_error(c, "too many flags");
        struct ap__cli_flag *f = &c->flags[c->nflags];
        memcpy(f->name, name, nlen);
        f->name[nlen] = '\0';
        f->used = false;
        if (in_list(SWITCHES, f->name)) {
            if (eq)
                return ap__cli_usage_error(c, "flag --%s takes no value", f->name);
            f->value = NULL;
        } else if (eq) {
            f->value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return ap__cli_usage_error(c, "flag --%s needs a value", f->name);
            f->value = argv[++i];
        }
        if (!in_list(REPEATABLE, f->name) && find_flag(c, f->name, 0))
            return ap__cli_usage_error(c, "flag --%s given more than once", f->name);
        c->nflags++;
    }
    return AP_CLI_EXIT_OK;
}

/* ---- configuration -------------------------------------------------------------------------- */

static void config_path(char *out, size_t n)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    out[0] = '\0';
    if (xdg && xdg[0] == '/')
        snprintf(out, n, "%s/adplatform/config", xdg);
    else if (home && home[0])
        snprintf(out, n, "%s/.config/adplatform/config", home);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\''))) {
        s[n - 1] = '\0';
        s++;
    }
    return s;
}

/* Reads url and api_key from the config file (a missing file is fine). Fills only the fields
 * whose buffer is still empty. */
static void read_config(struct ap__cli *c, char *url, size_t urln, char *key, size_t keyn)
{
    if (!c->config_path[0])
        return;
    FILE *f = fopen(c->config_path, "r");
    if (!f) {
        if (errno != ENOENT)
            fprintf(stderr, "warning: cannot read %s: %s\n", c->config_path, strerror(errno));
        return;
    }
    char line[AP_CLI_URL_MAX + 64];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(stderr, "warning: %s:%d: expected \"name = value\"\n", c->config_path, lineno);
            continue;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        if (!strcmp(name, "url")) {
            if (!url[0])
                snprintf(url, urln, "%s", value);
        } else if (!strcmp(name, "api_key")) {
            if (!key[0]) {
                snprintf(key, keyn, "%s", value);
                c->key_source = c->config_path;
            }
        } else {
            fprintf(stderr, "warning: %s:%d: unknown setting \"%s\"\n", c->config_path, lineno,
                    name);
        }
    }
    fclose(f);
}

static int resolve_connection(struct ap__cli *c)
{
    const char *url = ap__cli_flag(c, "url");
    const char *key = ap__cli_flag(c, "api-key");
    const char *env;
    c->url[0] = c->key[0] = '\0';
    config_path(c->config_path, sizeof c->config_path);
    if (!url && (env = getenv("ADPLATFORM_URL")) && *env)
        url = env;
    if (url && strlen(url) >= sizeof c->url)
        return ap__cli_usage_error(c, "the API URL is too long");
    if (url)
        snprintf(c->url, sizeof c->url, "%s", url);
    if (key) {
        c->key_source = "--api-key";
    } else if ((env = getenv("ADPLATFORM_API_KEY")) && *env) {
        key = env;
        c->key_source = "ADPLATFORM_API_KEY";
    }
    if (key && strlen(key) >= sizeof c->key)
        return ap__cli_usage_error(c, "the API key (from %s) is too long", c->key_source);
    if (key)
        snprintf(c->key, sizeof c->key, "%s", key);
    if (!c->url[0] || !c->key[0])
        read_config(c, c->url, sizeof c->url, c->key, sizeof c->key);
    if (!c->url[0])
        snprintf(c->url, sizeof c->url, "%s", AP_CLI_DEFAULT_URL);

    size_t n = strlen(c->url);
    while (n && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    if (strncmp(c->url, "http://", 7) && strncmp(c->url, "https://", 8))
        return ap__cli_usage_error(c, "the API URL \"%s\" must start with http:// or https://",
                                   c->url);
    for (const char *p = c->key; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return ap__cli_usage_error(c, "the API key (from %s) contains spaces or controls",
                                       c->key_source);
    return AP_CLI_EXIT_OK;
}

int ap__cli_read_password(struct ap__cli *c, char *out, size_t n)
{
    const char *env = getenv("ADPLATFORM_PASSWORD");
    if (env) {
        if (strlen(env) >= n)
            return ap__cli_usage_error(c, "ADPLATFORM_PASSWORD is too long");
        snprintf(out, n, "%s", env);
        return AP_CLI_EXIT_OK;
    }
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fputs("Password: ", stderr);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        } else {
            tty = false;
        }
    }
    char *got = fgets(out, (int)n, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!got)
        return ap__cli_usage_error(c, "no password: set ADPLATFORM_PASSWORD or write it on "
                                      "stdin");
    size_t len = strlen(out);
    if (len == n - 1 && out[len - 1] != '\n')
        return ap__cli_usage_error(c, "the password is too long");
    while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
    return AP_CLI_EXIT_OK;
}

bool ap__cli_relative_date(const char *s, char *out, size_t n)
{
    int days;
    if (!strcmp(s, "today"))
        days = 0;
    else if (!strcmp(s, "yesterday"))
        days = -1;
    else if (!strcmp(s, "tomorrow"))
        days = 1;
    else
        return false;
    time_t t = time(NULL) + (time_t)days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
    return true;
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

int ap__cli_query_add(struct ap__cli *c, char *q, size_t qn, const char *key, const char *value)
{
    char *ek = curl_easy_escape(NULL, key, 0);
    char *ev = curl_easy_escape(NULL, value, 0);
    int rc = AP_CLI_EXIT_OK;
    if (!ek || !ev) {
        fputs("error: out of memory\n", stderr);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    size_t len = strlen(q);
    int w = snprintf(q + len, qn - len, "%s%s=%s", len ? "&" : "", ek, ev);
    if (w < 0 || (size_t)w >= qn - len) {
        q[len] = '\0';
        rc = ap__cli_usage_error(c, "the query string is too long");
    }
out:
    curl_free(ek);
    curl_free(ev);
    return rc;
}

struct body {
    struct ap_buf buf;
    int err; /* the append that failed: AP_ELIMIT (over AP_CLI_MAX_RESPONSE) or AP_ENOMEM */
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct body *b = ud;
    size_t len = size * n;
    b->err = ap_buf_append(&b->buf, p, len);
    return b->err == AP_OK ? len : 0; /* 0 makes curl fail the transfer */
}

/* curl_slist_append returns NULL on failure and leaves the list as it was. */
static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (!n)
        return AP_ENOMEM;
    *list = n;
    return AP_OK;
}

void ap__cli_resp_free(struct ap__cli_resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static bool is_json_type(const char *ctype, const char *body, size_t len)
{
    if (strstr(ctype, "json"))
        return true;
    if (ctype[0])
        return false;
    while (len && (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')) {
        body++;
        len--;
    }
    return len && (*body == '{' || *body == '[');
}

int ap__cli_http(struct ap__cli *c, const char *method, const char *path, const char *query,
                 const char *ctype, const void *body, size_t len, struct ap__cli_resp *r)
{
    memset(r, 0, sizeof *r);
    int rc = AP_CLI_EXIT_OK;
    struct curl_slist *hdrs = NULL;
    struct body resp = {.err = AP_OK};
    struct ap_buf *buf = &resp.buf;
    char errbuf[CURL_ERROR_SIZE] = "";
    char url[AP_CLI_MAX_REQUEST_URL];
    char line[AP_CLI_KEY_MAX + 64];
    ap_buf_init(buf, AP_CLI_MAX_RESPONSE);

    int w = snprintf(url, sizeof url, "%s/api/v1/%s%s%s", c->url, path, query && *query ? "?" : "",
                     query ? query : "");
    if (w < 0 || (size_t)w >= sizeof url) {
        rc = ap__cli_usage_error(c, "the request URL is too long");
        goto out;
    }
    if (!c->curl && !(c->curl = curl_easy_init())) {
        fputs("error: cannot initialise libcurl\n", stderr);
        rc = AP_CLI_EXIT_NETWORK;
        goto out;
    }
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "adplatform-cli/" AP_VERSION);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);

    int hr = add_header(&hdrs, "Accept: application/json");
    if (!hr)
        hr = add_header(&hdrs, "Expect:"); /* no 100-continue round trip before a body */
    if (!hr && c->key[0]) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->key);
        hr = add_header(&hdrs, line);
    }
    if (!hr && body) {
        snprintf(line, sizeof line, "Content-Type: %s", ctype ? ctype : "application/json");
        hr = add_header(&hdrs, line);
    }
    if (!hr && c->if_match) {
        snprintf(line, sizeof line, "If-Match: %s", c->if_match);
        hr = add_header(&hdrs, line);
    }
    if (hr) {
        fputs("error: out of memory\n", stderr);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "GET"))
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, len ? body : "");
    }
    if (c->verbose)
        fprintf(stderr, "> %s %s\n", method, url);

    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_WRITE_ERROR && resp.err != AP_OK) {
        if (resp.err == AP_ELIMIT)
            fprintf(stderr, "error: the response is larger than %u bytes\n", AP_CLI_MAX_RESPONSE);
        else
            fputs("error: out of memory\n", stderr);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    if (cc != CURLE_OK) {
        fprintf(stderr, "error: cannot reach %s: %s\n", c->url,
                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = AP_CLI_EXIT_NETWORK;
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(r->content_type, sizeof r->content_type, "%s", ct);
#if LIBCURL_VERSION_NUM >= 0x075400
    struct curl_header *ra;
    if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK)
        snprintf(r->retry_after, sizeof r->retry_after, "%s", ra->value);
#endif
    if (c->verbose)
        fprintf(stderr, "< %ld %s (%zu bytes)\n", r->status, r->content_type, buf->len);

    if (ap_buf_append(buf, "", 1) != AP_OK) { /* NUL-terminate */
        fputs("error: out of memory\n", stderr);
        rc = AP_CLI_EXIT_API;
        goto out;
    }
    r->len = buf->len - 1;
    r->body = buf->data; /* the response owns it now */
    buf->data = NULL;
    if (r->len && is_json_type(r->content_type, r->body, r->len))
        r->json = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
out:
    curl_slist_free_all(hdrs);
    ap_buf_free(buf);
    return rc;
}

int ap__cli_call(struct ap__cli *c, const char *method, const char *path, const char *query,
                 const json_t *body, struct ap__cli_resp *r)
{
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
        if (!text) {
            memset(r, 0, sizeof *r);
            fputs("error: out of memory\n", stderr);
            return AP_CLI_EXIT_API;
        }
    }
    int rc =
        ap__cli_http(c, method, path, query, "application/json", text, text ? strlen(text) : 0, r);
    free(text);
    if (rc)
        return rc;
    return ap__cli_status(c, r);
}

int ap__cli_status(struct ap__cli *c, const struct ap__cli_resp *r)
{
    if (r->status >= 200 && r->status < 300)
        return AP_CLI_EXIT_OK;
    const json_t *err = json_object_get(r->json, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (msg) {
        fprintf(stderr, "error: %s\n", msg);
    } else {
        /* not an API error body: show the first line of whatever came back */
        int n = 0;
        while (r->body && n < 200 && r->body[n] && r->body[n] != '\n' && r->body[n] != '\r')
            n++;
        fprintf(stderr, "error: HTTP %ld%s%.*s\n", r->status, n ? ": " : "", n,
                r->body ? r->body : "");
    }
    size_t i;
    const json_t *fe;
    json_array_foreach(json_object_get(err, "fields"), i, fe) {
        const char *field = json_string_value(json_object_get(fe, "field"));
        const char *fmsg = json_string_value(json_object_get(fe, "message"));
        fprintf(stderr, "  %s: %s\n", field && *field ? field : "(body)", fmsg ? fmsg : "invalid");
    }
    if (r->status == 429 && r->retry_after[0])
        fprintf(stderr, "retry after %s s\n", r->retry_after);
    if (r->status == 401 && !c->key[0] && !c->anonymous) {
        fprintf(stderr,
                "hint: no API key: pass --api-key, set ADPLATFORM_API_KEY or put "
                "\"api_key = ...\" in %s\n",
                c->config_path[0] ? c->config_path : "~/.config/adplatform/config");
    }
    if (r->status == 401 || r->status == 403)
        return AP_CLI_EXIT_AUTH;
    if (r->status == 404)
        return AP_CLI_EXIT_NOT_FOUND;
    return AP_CLI_EXIT_API;
}

/* ---- output --------------------------------------------------------------------------------- */

void ap__cli_print_body(const struct ap__cli_resp *r)
{
    if (!r->len)
        return;
    fwrite(r->body, 1, r->len, stdout);
    if (r->body[r->len - 1] != '\n')
        fputc('\n', stdout);
}

void ap__cli_print_json(const json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
    fputc('\n', stdout);
}

/* Characters (UTF-8 code points) in s[0..n). */
static size_t display_width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            w++;
    return w;
}

/* The text of a value for people: strings as is (controls as spaces), null as "-", arrays of
 * scalars joined with ",", other objects as compact JSON. A new malloc'ed string or NULL. */
static char *cell_text(const json_t *v)
{
    char *s = NULL;
    char num[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        s = strdup(json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = strdup(num);
        break;
    case JSON_REAL:
        snprintf(num, sizeof num, "%.15g", json_real_value(v));
        s = strdup(num);
        break;
    case JSON_TRUE:
        s = strdup("true");
        break;
    case JSON_FALSE:
        s = strdup("false");
        break;
    case JSON_NULL:
        s = strdup("-");
        break;
    case JSON_ARRAY: {
        size_t i;
        const json_t *it;
        bool scalars = true;
        json_array_foreach(v, i, it) {
            if (json_is_object(it) || json_is_array(it))
                scalars = false;
        }
        if (!scalars || json_array_size(v) == 0) {
            s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
            break;
        }
        struct ap_buf b;
        ap_buf_init(&b, AP_CLI_MAX_RESPONSE);
        int rc = AP_OK;
        json_array_foreach(v, i, it) {
            char *one = cell_text(it);
            if (!one)
                rc = AP_ENOMEM;
            if (!rc && i)
                rc = ap_buf_append(&b, ",", 1);
            if (!rc)
                rc = ap_buf_append_str(&b, one);
            free(one);
        }
        if (!rc)
            rc = ap_buf_append(&b, "", 1);
        if (!rc) {
            s = b.data;
            b.data = NULL;
        }
        ap_buf_free(&b);
        break;
    }
    case JSON_OBJECT:
        s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
        break;
    }
    if (s)
        for (char *p = s; *p; p++)
            if ((unsigned char)*p < ' ' || *p == 0x7f)
                *p = ' ';
    return s;
}

/* Cuts s to at most max characters, ending in "..." when cut. */
static void cut(char *s, size_t max)
{
    size_t chars = 0, i = 0, keep = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (chars == max - 3)
                keep = i;
            chars++;
        }
    }
    if (chars > max)
        memcpy(s + keep, "...", 4);
}

static void pad(size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc(' ', stdout);
}

void ap__cli_print_object(const json_t *obj)
{
    if (!json_is_object(obj)) {
        ap__cli_print_json(obj);
        return;
    }
    const char *k;
    const json_t *v;
    size_t w = 0;
    json_object_foreach((json_t *)obj, k, v) {
        size_t kw = display_width(k, strlen(k));
        if (kw > w)
            w = kw;
    }
    json_object_foreach((json_t *)obj, k, v) {
        char *text = cell_text(v);
        fputs(k, stdout);
        pad(w - display_width(k, strlen(k)) + 2);
        fputs(text ? text : "?", stdout);
        fputc('\n', stdout);
        free(text);
    }
}

void ap__cli_print_table(const json_t *rows, const char *const *cols)
{
    const char *names[AP_CLI_MAX_ARGS];
    size_t ncol = 0, nrow = json_array_size(rows);
    size_t i, j;
    const json_t *row;

    if (nrow == 0) {
        fputs("(no results)\n", stderr);
        return;
    }
    if (cols) {
        for (; *cols && ncol < AP_CLI_MAX_ARGS; cols++) {
            bool present = false;
            json_array_foreach(rows, i, row) {
                if (json_object_get(row, *cols))
                    present = true;
            }
            if (present)
                names[ncol++] = *cols;
        }
    } else {
        json_array_foreach(rows, i, row) {
            const char *k;
            const json_t *v;
            json_object_foreach((json_t *)row, k, v) {
                bool seen = false;
                for (j = 0; j < ncol; j++)
                    if (!strcmp(names[j], k))
                        seen = true;
                if (!seen && ncol < AP_CLI_MAX_ARGS)
                    names[ncol++] = k;
            }
        }
    }
    if (ncol == 0) {
        json_array_foreach(rows, i, row)
            ap__cli_print_json(row);
        return;
    }

    char **cells = calloc(nrow * ncol, sizeof *cells);
    size_t *width = calloc(ncol, sizeof *width);
    if (!cells || !width) {
        fputs("error: out of memory\n", stderr);
        goto out;
    }
    for (j = 0; j < ncol; j++)
        width[j] = strlen(names[j]);
    json_array_foreach(rows, i, row) {
        for (j = 0; j < ncol; j++) {
            const json_t *v = json_object_get(row, names[j]);
            char *text = v ? cell_text(v) : strdup("");
            if (text)
                cut(text, CELL_MAX);
            cells[i * ncol + j] = text;
            size_t cw = text ? display_width(text, strlen(text)) : 1;
            if (cw > width[j])
                width[j] = cw;
        }
    }
    for (j = 0; j < ncol; j++) {
        for (const char *p = names[j]; *p; p++)
            fputc(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p, stdout);
        if (j + 1 < ncol)
            pad(width[j] - strlen(names[j]) + 2);
    }
    fputc('\n', stdout);
    for (i = 0; i < nrow; i++) {
        for (j = 0; j < ncol; j++) {
            const char *text = cells[i * ncol + j] ? cells[i * ncol + j] : "?";
            fputs(text, stdout);
            if (j + 1 < ncol)
                pad(width[j] - display_width(text, strlen(text)) + 2);
        }
        fputc('\n', stdout);
    }
out:
    if (cells)
        for (i = 0; i < nrow * ncol; i++)
            free(cells[i]);
    free(cells);
    free(width);
}

/* ---- entry ---------------------------------------------------------------------------------- */

bool ap_cli_is_command(const char *name)
{
    return ap__cli_resources_has(name);
}

void ap_cli_usage(FILE *out)
{
    ap__cli_resources_usage(out);
}

int ap_cli_main(int argc, char **argv)
{
    struct ap__cli *c = calloc(1, sizeof *c); /* ~30 KiB: keep it off the stack */
    if (!c) {
        fputs("error: out of memory\n", stderr);
        return AP_CLI_EXIT_API;
    }
    int rc;
    c->cmd = argv[0];
    if ((rc = parse_args(c, argc - 1, argv + 1)))
        goto out;
    if (ap__cli_switch(c, "help")) {
        ap__cli_resources_help(c->cmd, c->verb, stdout);
        rc = AP_CLI_EXIT_OK;
        goto out;
    }
    c->json = ap__cli_switch(c, "json");
    c->verbose = ap__cli_switch(c, "verbose");
    if ((rc = resolve_connection(c)))
        goto out;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("error: cannot initialise libcurl\n", stderr);
        rc = AP_CLI_EXIT_NETWORK;
        goto out;
    }
    rc = ap__cli_resources_run(c);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_global_cleanup();
out:
    fflush(stdout);
    if (ferror(stdout) && rc == AP_CLI_EXIT_OK) {
        fputs("error: cannot write the output\n", stderr);
        rc = AP_CLI_EXIT_API;
    }
    free(c);
    return rc;
}
