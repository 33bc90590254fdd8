#include "ap_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ap_error.h"
#include "ap_log.h"

#define OPT_STR(n, field, def, reload, help)                                                       \
    {n, AP_CONFIG_STRING, offsetof(struct ap_config, field),                                       \
     sizeof(((struct ap_config *)0)->field), def, 0, 0, reload, help}
#define OPT_INT(n, field, def, lo, hi, reload, help)                                               \
    {n, AP_CONFIG_INT, offsetof(struct ap_config, field), sizeof(int64_t), def, lo, hi, reload, help}
#define OPT_BOOL(n, field, def, reload, help)                                                      \
    {n, AP_CONFIG_BOOL, offsetof(struct ap_config, field), sizeof(bool), def, 0, 1, reload, help}

const struct ap_config_option ap_config_options[] = {
    OPT_STR("config", config_file, "", false, "config file of \"name = value\" lines"),
    OPT_STR("data-dir", data_dir, "./data", false, "directory for the store and event log"),
    OPT_STR("listen", listen, "127.0.0.1:8080", false,
            "data plane HOST:PORT (ads, OpenRTB, beacons); port 0 picks a free one"),
    OPT_STR("admin-listen", admin_listen, "127.0.0.1:8081", false,
            "control plane HOST:PORT (API, dashboard, metrics); port 0 picks a free one"),
    OPT_STR("port-file", port_file, "", false,
            "write {\"listen\":PORT,\"admin\":PORT} here once both listeners are bound"),
    OPT_STR("log-level", log_level, "info", true, "debug, info, warn, error or off"),
    OPT_STR("io-backend", io_backend, "auto", false,
            "socket I/O: auto (io_uring where the kernel allows it, else epoll), uring or epoll"),
    OPT_STR("public-url", public_url, "", false,
            "base URL for tracking links (default: the data plane's own address)"),
    OPT_STR("web-root", web_root, "", false, "dashboard files (default: <checkout>/web/dist)"),
    OPT_STR("geoip-db", geoip_db, "auto", false,
            "MaxMind-format geo database (.mmdb); auto: an installed GeoLite2/DB-IP file, else "
            "tor-geoipdb's country data; none: no geo"),
    OPT_STR("uap-regexes", uap_regexes, "/usr/share/uap-core/regexes.yaml", false,
            "uap-core User-Agent rules (regexes.yaml); none: no device detection"),
    OPT_STR("trusted-proxies", trusted_proxies, "", false,
            "comma-separated CIDRs of proxies whose X-Forwarded-For is honoured (e.g. 10.0.0.0/8)"),
    OPT_INT("threads", threads, "0", 0, 256, false, "data-plane worker threads (0 = one per core)"),
    OPT_INT("admin-threads", admin_threads, "2", 1, 64, false, "control-plane threads"),
    OPT_INT("session-ttl", session_ttl, "43200", 1, 31622400, false,
            "seconds a login session lasts (POST /api/v1/auth/login)"),
    OPT_BOOL("pin-threads", pin_threads, "true", false, "pin each worker to one core"),
    OPT_INT("max-connections", max_connections, "16384", 1, 1000000, false,
            "open data-plane connections at most (the excess is refused)"),
    OPT_INT("max-header-bytes", max_header_bytes, "16384", 256, 1048576, true,
            "request line + headers at most (431 past it)"),
    OPT_INT("max-uri", max_uri, "8192", 64, 1048576, true, "request-target length (414 past it)"),
    OPT_INT("max-body", max_body, "1048576", 0, 268435456, true, "request body bytes (413 past it)"),
    OPT_INT("max-header-count", max_header_count, "64", 1, 128, true,
            "header fields at most (431 past it)"),
    OPT_INT("header-timeout-ms", header_timeout_ms, "10000", 10, 3600000, true,
            "time to receive a whole request head and body (408 past it)"),
    OPT_INT("idle-timeout-ms", idle_timeout_ms, "60000", 10, 3600000, true,
            "keep-alive idle time before a connection is closed"),
    OPT_INT("drain-timeout-ms", drain_timeout_ms, "10000", 0, 600000, false,
            "on SIGTERM, time allowed for in-flight requests"),
    OPT_INT("access-log-sample", access_log_sample, "0", 0, 1000000000, true,
            "log one request in N as an access-log line (0 = off)"),
    OPT_INT("backlog", backlog, "4096", 1, 65535, false, "listen(2) backlog"),
    OPT_INT("event-sync-ms", event_sync_ms, "0", 0, 1000, false,
            "event log group commit: extra wait for company before an fdatasync (0 = sync as "
            "soon as written; records arriving during a sync form the next group)"),
    OPT_INT("event-sync-records", event_sync_records, "4096", 1, 1048576, false,
            "event log group commit: fdatasync once this many records wait"),
    OPT_INT("event-ring", event_ring, "65536", 2, 16777216, false,
            "event records buffered per data-plane worker (a power of two; full: 503)"),
    OPT_INT("event-segment-mb", event_segment_mb, "64", 1, 65536, false,
            "event log segment file size before rolling, MiB"),
    OPT_INT("event-retention-hours", event_retention_hours, "168", 0, 876000, false,
            "delete event log segments the aggregator has counted once they are this old "
            "(0 = keep every segment); reports keep their rollups"),
    OPT_INT("token-key-overlap", token_key_overlap, "172800", 1, 31622400, false,
            "seconds a replaced token signing key still verifies tokens after a rotation"),
    {NULL, 0, 0, 0, NULL, 0, 0, false, NULL},
};

static _Atomic(const struct ap_config *) current;

void ap_config_publish(const struct ap_config *cfg)
{
    struct ap_config *copy = malloc(sizeof(*copy));
    if (!copy)
        return; /* keep the old one */
    *copy = *cfg;
    /* Old versions stay allocated: readers may hold them; reloads are rare and small. */
    atomic_store_explicit(&current, copy, memory_order_release);
}

const struct ap_config *ap_config_get(void)
{
    return atomic_load_explicit(&current, memory_order_acquire);
}

static const struct ap_config_option *find_option(const char *name, size_t len)
{
    for (const struct ap_config_option *o = ap_config_options; o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static int set_option(struct ap_config *cfg, const struct ap_config_option *o, const char *value,
                      const char *source, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case AP_CONFIG_STRING:
        if (strlen(value) >= o->size) {
            snprintf(err, errlen, "%s: --%s is too long", source, o->name);
            return AP_EINVAL;
        }
        memcpy(field, value, strlen(value) + 1);
        return AP_OK;
    case AP_CONFIG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: --%s must be an integer from %lld to %lld, not \"%s\"",
                     source, o->name, (long long)o->min, (long long)o->max, value);
            return AP_EINVAL;
        }
        *(int64_t *)field = v;
        return AP_OK;
    }
    case AP_CONFIG_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes")) {
            *(bool *)field = true;
        } else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no")) {
            *(bool *)field = false;
        } else {
            snprintf(err, errlen, "%s: --%s must be true or false, not \"%s\"", source, o->name,
                     value);
            return AP_EINVAL;
        }
        return AP_OK;
    }
    return AP_EINVAL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int load_file(struct ap_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return AP_EINVAL;
    }
    char line[4096];
    int lineno = 0, rc = AP_OK;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected \"name = value\"", path, lineno);
            rc = AP_EINVAL;
            break;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        const struct ap_config_option *o = find_option(name, strlen(name));
        if (!o || !strcmp(o->name, "config")) {
            snprintf(err, errlen, "%s:%d: unknown option \"%s\"", path, lineno, name);
            rc = AP_EINVAL;
            break;
        }
        char src[64];
        snprintf(src, sizeof(src), "config file line %d", lineno);
        rc = set_option(cfg, o, value, src, err, errlen);
        if (rc)
            break;
    }
    fclose(f);
    return rc;
}

static void env_name(const char *opt, char *out, size_t cap)
{
    size_t n = 0;
    const char *prefix = "ADPLATFORM_";
    for (const char *p = prefix; *p && n + 1 < cap; p++)
        out[n++] = *p;
    for (const char *p = opt; *p && n + 1 < cap; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

/* Finds --config in env or argv first, since the file sits below both in precedence. */
static const char *find_config_path(int argc, char **argv)
{
    const char *path = getenv("ADPLATFORM_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
    }
    return path;
}

static int validate(const struct ap_config *cfg, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (ap_config_parse_addr(cfg->listen, host, sizeof(host), &port)) {
        snprintf(err, errlen, "--listen must be HOST:PORT, not \"%s\"", cfg->listen);
        return AP_EINVAL;
    }
    if (ap_config_parse_addr(cfg->admin_listen, host, sizeof(host), &port)) {
        snprintf(err, errlen, "--admin-listen must be HOST:PORT, not \"%s\"", cfg->admin_listen);
        return AP_EINVAL;
    }
    static const char *levels[] = {"debug", "info", "warn", "error", "off"};
    bool ok = false;
    for (size_t i = 0; i < 5; i++)
        ok |= !strcmp(cfg->log_level, levels[i]);
    if (!ok) {
        snprintf(err, errlen, "--log-level must be debug, info, warn, error or off");
        return AP_EINVAL;
    }
    if (strcmp(cfg->io_backend, "epoll") && strcmp(cfg->io_backend, "uring") &&
        strcmp(cfg->io_backend, "auto")) {
        snprintf(err, errlen, "--io-backend must be epoll, uring or auto");
        return AP_EINVAL;
    }
    if (cfg->data_dir[0] == '\0') {
        snprintf(err, errlen, "--data-dir must not be empty");
        return AP_EINVAL;
    }
    return AP_OK;
}

int ap_config_load(struct ap_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    for (const struct ap_config_option *o = ap_config_options; o->name; o++) {
        rc = set_option(cfg, o, o->def, "default", err, errlen);
        if (rc)
            return rc;
    }
    const char *path = find_config_path(argc, argv);
    if (path && *path) {
        rc = set_option(cfg, &ap_config_options[0], path, "--config", err, errlen);
        if (rc)
            return rc;
        rc = load_file(cfg, path, err, errlen);
        if (rc)
            return rc;
    }
    for (const struct ap_config_option *o = ap_config_options; o->name; o++) {
        char name[128];
        env_name(o->name, name, sizeof(name));
        const char *v = getenv(name);
        if (v && strcmp(o->name, "config") != 0) {
            rc = set_option(cfg, o, v, name, err, errlen);
            if (rc)
                return rc;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\"", a);
            return AP_EINVAL;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        bool negated = false;
        const struct ap_config_option *o = find_option(a, nl);
        if (!o && nl > 3 && !strncmp(a, "no-", 3)) {
            o = find_option(a + 3, nl - 3);
            negated = o && o->type == AP_CONFIG_BOOL;
            if (!negated)
                o = NULL;
        }
        if (!o) {
            snprintf(err, errlen, "unknown option --%.*s (see --help)", (int)nl, a);
            return AP_EINVAL;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (o->type == AP_CONFIG_BOOL) {
            value = negated ? "false" : "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "--%s needs a value", o->name);
            return AP_EINVAL;
        }
        rc = set_option(cfg, o, value, "command line", err, errlen);
        if (rc)
            return rc;
    }
    return validate(cfg, err, errlen);
}

void ap_config_print_help(FILE *out)
{
    fprintf(out, "Usage: adplatform serve [options]\n\nOptions (also ADPLATFORM_<NAME> "
                 "environment variables and \"name = value\" lines in --config FILE):\n");
    for (const struct ap_config_option *o = ap_config_options; o->name; o++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s%s", o->name,
                 o->type == AP_CONFIG_BOOL     ? ""
                 : o->type == AP_CONFIG_INT    ? " N"
                                               : " VALUE");
        fprintf(out, "  %-28s %s", flag, o->help);
        if (o->def && *o->def)
            fprintf(out, " [default: %s]", o->def);
        if (o->reloadable)
            fprintf(out, " (reloaded on SIGHUP)");
        fputc('\n', out);
    }
}

int ap_config_parse_addr(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return AP_EINVAL;
        hl = (size_t)(rb - s - 1);
        if (hl + 1 > hostlen)
            return AP_EINVAL;
        memcpy(host, s + 1, hl);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return AP_EINVAL;
        hl = (size_t)(colon - s);
        if (hl + 1 > hostlen)
            return AP_EINVAL;
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return AP_EINVAL;
    *port = (int)p;
    return AP_OK;
}
