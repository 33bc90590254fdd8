/*
 * ap_app: the daemon (`adplatform serve`): loads the config, builds the two planes (data and
 * control), registers every module's routes, handles signals (SIGTERM/SIGINT drain and exit 0,
 * SIGHUP reloads the config) and owns process-lifetime state shared by the modules.
 *
 * struct ap_app lives for the whole process; handlers reach it as x->app. Fields are written
 * only on the main thread before the servers start, except where a field says otherwise.
 */
#ifndef AP_APP_H
#define AP_APP_H

#include <stdint.h>

#include "../core/ap_config.h"
#include "../net/ap_router.h"
#include "../net/ap_server.h"

struct ap_geo;
struct ap_evlog;
struct ap_ua;

struct ap_app {
    struct ap_config cfg; /* as loaded at start; reloaded values via ap_config_get() */
    struct ap_router data_router;
    struct ap_router admin_router;
    struct ap_server *data;
    struct ap_server *admin;
    int64_t started_at; /* unix seconds */
    struct ap_geo *geo; /* geo database (NULL: none); process lifetime */
    struct ap_ua *ua;   /* User-Agent rules (NULL: none); process lifetime */
    struct ap_evlog *evlog; /* the event log (src/events/ap_evlog.h): opened before the data
                               plane starts, closed after it and the aggregator stopped */
};

/* Runs `adplatform serve` with argv holding only the options. Returns the exit code. */
int ap_app_serve(int argc, char **argv);

#endif
