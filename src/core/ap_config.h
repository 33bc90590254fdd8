/*
 * ap_config: the daemon's options, defined once in a table {name, type, default, help, check}
 * that drives the command-line flags, the config file, the ADPLATFORM_* environment variables
 * and the generated --help text.
 *
 * Precedence: defaults < config file (--config FILE, "name = value" lines, '#' comments)
 * < environment (ADPLATFORM_DATA_DIR for --data-dir) < flags. The whole result is validated,
 * then handed out as an immutable struct. SIGHUP reload builds a new struct the same way and
 * publishes it with ap_config_publish(); readers call ap_config_get() (any thread; the
 * returned struct lives until process exit, old versions are kept, they are small).
 */
#ifndef AP_CONFIG_H
#define AP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AP_CONFIG_STR_MAX 1024

struct ap_config {
    char config_file[AP_CONFIG_STR_MAX];
    char data_dir[AP_CONFIG_STR_MAX];
    char listen[AP_CONFIG_STR_MAX];       /* data plane HOST:PORT */
    char admin_listen[AP_CONFIG_STR_MAX]; /* control plane HOST:PORT */
    char port_file[AP_CONFIG_STR_MAX];
    char log_level[16];
    char io_backend[16]; /* epoll, uring or auto */
    char public_url[AP_CONFIG_STR_MAX];
    char web_root[AP_CONFIG_STR_MAX];
    char geoip_db[AP_CONFIG_STR_MAX];    /* .mmdb file, "auto" or "none" (src/serve/ap_geo.h) */
    char uap_regexes[AP_CONFIG_STR_MAX]; /* uap-core regexes.yaml or "none" (src/serve/ap_ua.h) */
    char trusted_proxies[AP_CONFIG_STR_MAX]; /* CIDRs whose X-Forwarded-For is honoured */
    int64_t threads;       /* data-plane workers; 0 = number of cores */
    int64_t admin_threads; /* control-plane threads */
    int64_t session_ttl;   /* seconds a login session lasts */
    bool pin_threads;
    int64_t max_connections; /* over all data-plane workers */
    int64_t max_header_bytes;
    int64_t max_uri;
    int64_t max_body;
    int64_t max_header_count;
    int64_t header_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t drain_timeout_ms;
    int64_t access_log_sample; /* log 1 in N requests; 0 = off */
    int64_t backlog;
    int64_t event_sync_ms;      /* event log group commit: extra wait for company (0: none) */
    int64_t event_sync_records; /* ... or after this many records */
    int64_t event_ring;         /* records per worker ring (a power of two) */
    int64_t event_segment_mb;   /* event log segment size */
    int64_t event_retention_hours; /* counted segments older than this are deleted; 0 keep */
    int64_t token_key_overlap;  /* seconds a replaced token key still verifies */
};

enum ap_config_type { AP_CONFIG_STRING, AP_CONFIG_INT, AP_CONFIG_BOOL };

struct ap_config_option {
    const char *name; /* flag name without "--" */
    enum ap_config_type type;
    size_t offset;
    size_t size; /* for strings: the array size */
    const char *def;
    int64_t min, max; /* for ints */
    bool reloadable;  /* applied on SIGHUP */
    const char *help;
};

/* The table (NULL-name terminated). */
extern const struct ap_config_option ap_config_options[];

/*
 * Builds a config from defaults, file, environment and argv (argv[0..argc) are option
 * arguments only: "--name value", "--name=value", "--flag" for bools). On error returns
 * AP_EINVAL and writes a message naming the option into err[errlen].
 */
int ap_config_load(struct ap_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Prints the option table as --help text. */
void ap_config_print_help(FILE *out);

/* Publishes cfg (copied into a new process-lifetime struct) as the current config. */
void ap_config_publish(const struct ap_config *cfg);

/* The current config, or NULL before the first publish. Any thread. */
const struct ap_config *ap_config_get(void);

/* Splits "host:port" / "[v6]:port" into host and port. 0 or AP_EINVAL. */
int ap_config_parse_addr(const char *s, char *host, size_t hostlen, int *port);

#endif
