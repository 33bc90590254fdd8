#include "ap_app.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../api/ap_api.h"
#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../events/ap_agg.h"
#include "../events/ap_beacon.h"
#include "../events/ap_evlog.h"
#include "../events/ap_token_ring.h"
#include "../net/ap_http_client.h"
#include "../net/ap_metrics.h"
#include "../rtb/ap_rtb.h"
#include "../serve/ap_consent.h"
#include "../serve/ap_geo.h"
#include "../serve/ap_serve.h"
#include "../serve/ap_tag.h"
#include "../serve/ap_ua.h"

/* The aggregator (src/events/ap_agg.h): started after the event log and ad serving, stopped
 * after the data plane and before ad serving (it feeds delivery control). Main thread. */
static struct ap_agg *g_agg;

/* Feeds the aggregator's billed spend to delivery control (ap_serve_set_spend). */
static void feed_spend(void *ud, const struct ap_agg_spend *s, size_t n, int64_t as_of_ms)
{
    (void)ud;
    struct ap_serve_spend b[128];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        b[k++] = (struct ap_serve_spend){s[i].campaign_id, s[i].local_day, s[i].today_micros,
                                         s[i].lifetime_micros};
        if (k == sizeof(b) / sizeof(b[0]) && i + 1 < n) {
            ap_serve_set_spend(b, k, 0); /* as_of only with the last chunk */
            k = 0;
        }
    }
    ap_serve_set_spend(b, k, as_of_ms);
}

/* ---------------------------------------------------------------- built-in endpoints */

static int h_healthz(struct ap_http_exchange *x)
{
    return ap_http_respond(x, 200, "text/plain; charset=utf-8", "ok", 2);
}

static int h_readyz(struct ap_http_exchange *x)
{
    if (ap_server_is_ready(x->server))
        return ap_http_respond(x, 200, "text/plain; charset=utf-8", "ready", 5);
    ap_http_add_header(x, "Retry-After", AP_SPAN_LIT("1"));
    const char *why = ap_server_is_draining(x->server) ? "draining" : "starting";
    return ap_http_respond(x, 503, "text/plain; charset=utf-8", why, strlen(why));
}

static int h_metrics(struct ap_http_exchange *x)
{
    struct ap_app *app = x->app;
    struct ap_buf out;
    ap_buf_init(&out, 64 * 1024 * 1024);
    struct ap_server *servers[2] = {app->data, app->admin};
    int rc = ap_metrics_render(&out, servers, 2);
    if (rc == AP_OK)
        rc = ap_rtb_metrics(&out); /* ap_rtb_* */
    if (rc == AP_OK)
        rc = ap_beacon_metrics(&out); /* events accepted/rejected, event log */
    if (rc == AP_OK)
        rc = ap_hc_metrics_render(&out); /* adplatform_partner_* per demand partner id */
    if (rc == AP_OK) { /* process facts for the dashboard's health page */
        char info[512];
        int n = snprintf(info, sizeof(info),
                         "# HELP adplatform_build_info Build information (value is always 1).\n"
                         "# TYPE adplatform_build_info gauge\n"
                         "adplatform_build_info{version=\"%s\"} 1\n"
                         "# HELP adplatform_start_time_seconds Start time, unix seconds.\n"
                         "# TYPE adplatform_start_time_seconds gauge\n"
                         "adplatform_start_time_seconds %lld\n"
                         "# HELP adplatform_threads Worker threads per server.\n"
                         "# TYPE adplatform_threads gauge\n"
                         "adplatform_threads{server=\"data\"} %d\n"
                         "adplatform_threads{server=\"admin\"} %d\n",
                         AP_VERSION, (long long)app->started_at, ap_server_threads(app->data),
                         ap_server_threads(app->admin));
        rc = n > 0 && (size_t)n < sizeof(info) ? ap_buf_append(&out, info, (size_t)n) : AP_ELIMIT;
    }
    if (rc == AP_OK && g_agg) {
        char agg[8192];
        size_t n = ap_agg_metrics(g_agg, agg, sizeof(agg)); /* aggregator lag, events */
        rc = ap_buf_append(&out, agg, n);
    }
    if (rc == AP_OK)
        rc = ap_http_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", out.data,
                             out.len);
    else
        rc = ap_http_respond_error(x, 500, "internal", "cannot render metrics");
    ap_buf_free(&out);
    return rc;
}

static int register_routes(struct ap_app *app)
{
    int rc = 0;
    ap_router_init(&app->data_router);
    ap_router_init(&app->admin_router);
    rc |= ap_router_add(&app->data_router, AP_M(GET), "/healthz", h_healthz, NULL, NULL);
    rc |= ap_router_add(&app->data_router, AP_M(GET), "/readyz", h_readyz, NULL, NULL);
    rc |= ap_serve_register(&app->data_router); /* /v1/decision, /v1/ad */
    rc |= ap_api_register_assets(&app->data_router); /* image creatives in ad markup */
    struct ap_tag_options to = {.data_dir = app->cfg.data_dir};
    rc |= ap_tag_register(&app->data_router, &to); /* /v1/tag.js, /demo */
    rc |= ap_rtb_register(&app->data_router); /* /openrtb2/auction, /openrtb2/bid */
    rc |= ap_beacon_register(&app->data_router);    /* /v1/e/imp|view|click|conv, /v1/events */
    rc |= ap_router_add(&app->admin_router, AP_M(GET), "/healthz", h_healthz, NULL, NULL);
    rc |= ap_router_add(&app->admin_router, AP_M(GET), "/metrics", h_metrics, NULL, NULL);
    rc |= ap_api_register(&app->admin_router);
    rc |= ap_web_register(&app->admin_router); /* the dashboard: a catch-all, so LAST */
    return rc ? AP_ELIMIT : AP_OK;
}

/* ---------------------------------------------------------------- start-up helpers */

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int make_dirs(const char *path)
{
    char tmp[AP_CONFIG_STR_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return ap_error_from_errno(errno);
        *p = '/';
    }
    if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
        return ap_error_from_errno(errno);
    return AP_OK;
}

static int write_port_file(const char *path, int data_port, int admin_port)
{
    char tmp[AP_CONFIG_STR_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return ap_error_from_errno(errno);
    fprintf(f, "{\"listen\": %d, \"admin\": %d}\n", data_port, admin_port);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return ap_error_from_errno(errno);
    return AP_OK;
}

static void server_config(struct ap_server_config *sc, const struct ap_config *cfg,
                          const char *addr, bool data_plane)
{
    static char hosts[2][256];
    int port = 0;
    char *host = hosts[data_plane ? 0 : 1];
    ap_config_parse_addr(addr, host, sizeof(hosts[0]), &port);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    memset(sc, 0, sizeof(*sc));
    sc->name = data_plane ? "data" : "admin";
    sc->host = host;
    sc->port = port;
    sc->threads = data_plane ? (int)(cfg->threads ? cfg->threads : (ncpu > 0 ? ncpu : 1))
                             : (int)cfg->admin_threads;
    sc->pin_threads = data_plane && cfg->pin_threads;
    sc->first_cpu = 0;
    sc->max_connections = data_plane ? (int)cfg->max_connections : 1024;
    sc->backlog = (int)cfg->backlog;
    sc->limits.max_header_bytes = (size_t)cfg->max_header_bytes;
    sc->limits.max_uri = (size_t)cfg->max_uri;
    /* the control plane takes uploads (creatives): at least 16 MiB */
    sc->limits.max_body = data_plane || cfg->max_body > 16 * 1024 * 1024
                              ? (size_t)cfg->max_body
                              : 16 * 1024 * 1024;
    sc->limits.max_header_count = (unsigned)cfg->max_header_count;
    sc->header_timeout_ms = (int)cfg->header_timeout_ms;
    sc->idle_timeout_ms = (int)cfg->idle_timeout_ms;
    sc->drain_timeout_ms = (int)cfg->drain_timeout_ms;
    sc->max_response = data_plane ? 16 * 1024 * 1024 : 256 * 1024 * 1024;
    sc->access_log_sample = (int)cfg->access_log_sample;
    sc->io_backend = !strcmp(cfg->io_backend, "uring")   ? AP_LOOP_URING
                     : !strcmp(cfg->io_backend, "auto") ? AP_LOOP_AUTO
                                                        : AP_LOOP_EPOLL;
}

static void apply_reload(struct ap_app *app, int argc, char **argv)
{
    struct ap_config cfg;
    char err[512];
    if (ap_config_load(&cfg, argc, argv, err, sizeof(err)) != AP_OK) {
        ap_log_error("reload refused, keeping the running config: %s", err);
        return;
    }
    ap_config_publish(&cfg);
    ap_log_set_level_name(cfg.log_level);
    struct ap_server_config sc;
    server_config(&sc, &cfg, cfg.listen, true);
    ap_server_reconfigure(app->data, &sc.limits, sc.header_timeout_ms, sc.idle_timeout_ms,
                          sc.access_log_sample);
    server_config(&sc, &cfg, cfg.admin_listen, false);
    ap_server_reconfigure(app->admin, &sc.limits, sc.header_timeout_ms, sc.idle_timeout_ms,
                          sc.access_log_sample);
    ap_log_info("configuration reloaded (log level %s)", cfg.log_level);
}

int ap_app_serve(int argc, char **argv)
{
    static struct ap_app app;
    char err[512];
    int rc, exit_code = 1, sfd = -1;

    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ap_config_print_help(stdout);
            return 0;
        }
    }
    if (ap_config_load(&app.cfg, argc, argv, err, sizeof(err)) != AP_OK) {
        fprintf(stderr, "adplatform serve: %s\n", err);
        return 2;
    }
    ap_config_publish(&app.cfg);
    ap_log_set_level_name(app.cfg.log_level);
    app.started_at = (int64_t)time(NULL);
    raise_fd_limit();

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL); /* threads created below inherit it */
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        ap_log_error("signalfd: %s", strerror(errno));
        goto out;
    }

    rc = make_dirs(app.cfg.data_dir);
    if (rc) {
        ap_log_error("cannot create data dir %s: %s", app.cfg.data_dir, ap_strerror(rc));
        goto out;
    }
    ap_web_init(app.cfg.web_root); /* a missing dashboard build is a warning, not an error */
    if (register_routes(&app) != AP_OK) {
        ap_log_error("cannot register routes");
        goto out;
    }

    struct ap_server_config sc;
    server_config(&sc, &app.cfg, app.cfg.listen, true);
    sc.router = &app.data_router;
    sc.app = &app;
    app.data = ap_server_create(&sc, &rc);
    if (!app.data) {
        ap_log_error("cannot listen on %s: %s", app.cfg.listen, ap_strerror(rc));
        goto out;
    }
    server_config(&sc, &app.cfg, app.cfg.admin_listen, false);
    sc.router = &app.admin_router;
    sc.app = &app;
    app.admin = ap_server_create(&sc, &rc);
    if (!app.admin) {
        ap_log_error("cannot listen on %s: %s", app.cfg.admin_listen, ap_strerror(rc));
        goto out;
    }
    {
        /* the REST API: opens and migrates the store now, so a bad data dir fails at start */
        struct ap_api_options ao = {.data_dir = app.cfg.data_dir,
                                    .public_url = app.cfg.public_url,
                                    .data_listen = app.cfg.listen,
                                    .data_port = ap_server_port(app.data),
                                    .session_ttl = app.cfg.session_ttl};
        if ((rc = ap_api_init(&ao, err, sizeof(err))) != AP_OK) {
            ap_log_error("cannot start the API: %s", err);
            goto out;
        }
    }
    {
        /* ad serving: token keys, delivery state, first snapshot, builder + delivery threads */
        char host[256];
        int port = 0;
        ap_config_parse_addr(app.cfg.listen, host, sizeof(host), &port);
        /* the event log: one ring per data-plane worker, a torn tail cut before serving */
        char evdir[AP_CONFIG_STR_MAX + 16];
        snprintf(evdir, sizeof(evdir), "%s/events", app.cfg.data_dir);
        struct ap_evlog_options eo = {.dir = evdir,
                                      .rings = ap_server_threads(app.data),
                                      .ring_records = (uint32_t)app.cfg.event_ring,
                                      .segment_bytes = (uint64_t)app.cfg.event_segment_mb << 20,
                                      .sync_interval_ms = (int)app.cfg.event_sync_ms,
                                      .sync_records = (uint32_t)app.cfg.event_sync_records};
        app.evlog = ap_evlog_open(&eo, &rc, err, sizeof(err));
        if (!app.evlog) {
            ap_log_error("cannot open the event log: %s", err);
            goto out;
        }
        /* token keys: in the store, published to serving and beacons (refreshed on rotation) */
        struct ap_token_ring_options ko = {.data_dir = app.cfg.data_dir,
                                           .overlap = app.cfg.token_key_overlap};
        if ((rc = ap_token_ring_start(&ko, err, sizeof(err))) != AP_OK) {
            ap_log_error("cannot load the token keys: %s", err);
            goto out;
        }
        struct ap_serve_options so = {.data_dir = app.cfg.data_dir,
                                      .public_url = app.cfg.public_url,
                                      .listen_host = host,
                                      .listen_port = ap_server_port(app.data),
                                      .threads = ap_server_threads(app.data),
                                      .trusted_proxies = app.cfg.trusted_proxies,
                                      .evlog = app.evlog};
        if ((rc = ap_serve_start(&so, err, sizeof(err))) != AP_OK) {
            ap_log_error("cannot start ad serving: %s", err);
            goto out;
        }
        /* request context: geo and device data (each optional: a warning if missing) */
        app.geo = ap_geo_open_setting(app.cfg.geoip_db);
        app.ua = ap_ua_open_setting(app.cfg.uap_regexes);
        struct ap_serve_edge edge = {.geo = app.geo,
                                     .geo_lookup = ap_geo_lookup,
                                     .ua = app.ua,
                                     .ua_parse = ap_ua_parse,
                                     .consent_parse = ap_consent_parse};
        ap_serve_set_edge(&edge);
        struct ap_rtb_options ro = {.threads = ap_server_threads(app.data),
                                    .data_dir = app.cfg.data_dir, /* demand partners, rates */
                                    .evlog = app.evlog};
        ap_rtb_start(&ro); /* the OpenRTB exchange: our campaigns through ap_serve_rtb_* */
        struct ap_beacon_options bo = {.log = app.evlog,
                                       .data_dir = app.cfg.data_dir,
                                       .key_overlap = app.cfg.token_key_overlap,
                                       .workers = ap_server_threads(app.data),
                                       .max_connections = (int)app.cfg.max_connections,
                                       .edge = &edge};
        if ((rc = ap_beacon_start(&bo, err, sizeof(err))) != AP_OK) {
            ap_log_error("cannot start event tracking: %s", err);
            goto out;
        }
        /* the aggregator: rollups and billing from the log, spend fed to delivery control */
        char dbpath[AP_CONFIG_STR_MAX + 32];
        snprintf(dbpath, sizeof(dbpath), "%s/adplatform.db", app.cfg.data_dir);
        struct ap_agg_options ago = {
            .db_path = dbpath,
            .log_dir = evdir,
            .log = app.evlog,
            .feed = feed_spend,
            .retention_s = app.cfg.event_retention_hours * 3600};
        if (!(g_agg = ap_agg_create(&ago, &rc, err, sizeof(err))) ||
            (rc = ap_agg_start(g_agg)) != AP_OK) {
            ap_log_error("cannot start the aggregator: %s", g_agg ? ap_strerror(rc) : err);
            goto out;
        }
    }
    if ((rc = ap_server_start(app.data)) || (rc = ap_server_start(app.admin))) {
        ap_log_error("cannot start workers: %s", ap_strerror(rc));
        goto out;
    }
    if (app.cfg.port_file[0]) {
        rc = write_port_file(app.cfg.port_file, ap_server_port(app.data),
                             ap_server_port(app.admin));
        if (rc) {
            ap_log_error("cannot write port file %s: %s", app.cfg.port_file, ap_strerror(rc));
            goto out;
        }
    }
    ap_server_set_ready(app.data, true);
    ap_server_set_ready(app.admin, true);
    {
        char host[256];
        int port;
        ap_config_parse_addr(app.cfg.listen, host, sizeof(host), &port);
        fprintf(stderr, "\nAdPlatform %s is running.\n  Data plane:    http://%s:%d/\n",
                AP_VERSION, host, ap_server_port(app.data));
        ap_config_parse_addr(app.cfg.admin_listen, host, sizeof(host), &port);
        fprintf(stderr, "  Control plane: http://%s:%d/  (metrics: /metrics)\n\n", host,
                ap_server_port(app.admin));
        ap_log_info("listening: data port %d (%d threads), admin port %d (%d threads)",
                    ap_server_port(app.data), ap_server_threads(app.data),
                    ap_server_port(app.admin), ap_server_threads(app.admin));
    }

    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si)) {
            if (n < 0 && errno == EINTR)
                continue;
            ap_log_error("signalfd read failed: %s", strerror(errno));
            break;
        }
        if (si.ssi_signo == SIGHUP) {
            apply_reload(&app, argc, argv);
            continue;
        }
        ap_log_info("received %s: draining", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    ap_server_set_ready(app.data, false);
    ap_server_drain(app.data);
    ap_server_drain(app.admin);
    ap_server_join(app.data);
    ap_server_join(app.admin);
    ap_agg_stop(g_agg); /* folds what is durable now; before ad serving goes (it feeds it) */
    ap_serve_stop(); /* after the workers: saves delivery state, frees the snapshot */
    ap_rtb_stop();   /* after the workers: the demand partner loader */
    ap_beacon_stop();
    ap_token_ring_stop(); /* the app's reference: after serving and beacons */
    ap_ua_close(app.ua);
    ap_geo_close(app.geo);
    app.ua = NULL;
    app.geo = NULL;
    ap_log_info("stopped cleanly");
    exit_code = 0;
out:
    if (sfd >= 0)
        close(sfd);
    ap_server_destroy(app.data);
    ap_server_destroy(app.admin);
    app.data = app.admin = NULL;
    ap_agg_destroy(g_agg); /* the log's reader: before the log */
    g_agg = NULL;
    ap_evlog_close(app.evlog); /* last: syncs what the rings hold; readers stopped before */
    app.evlog = NULL;
    return exit_code;
}
