/*
 * ap_geo: IP address -> country, region, city, through libmaxminddb on a MaxMind-format (.mmdb)
 * database. Implements the geo part of the edge contract in ap_context.h (ap_geo_open,
 * ap_geo_close, ap_geo_lookup) and adds how `serve` finds its database (--geoip-db):
 *
 *   FILE     that .mmdb file (GeoLite2/GeoIP2 City or Country, DB-IP lite, or any database with
 *            the same "country"/"subdivisions"/"city" layout);
 *   "auto"   (the default) the first of AP_GEO_DEFAULT_PATHS that exists; if none does, the
 *            country data of Debian's tor-geoipdb package (installed by scripts/setup.sh; Debian
 *            12 packages no .mmdb database) converted into an in-memory MaxMind DB on a
 *            background thread, about 0.7 s, so start-up does not wait (lookups answer
 *            AP_ENOTFOUND until it is ready); see docs/adr/0007-geo-ua-consent.md;
 *   "none"   no geo.
 * Missing or unreadable data never stops the daemon: it logs a warning and serves without geo.
 *
 * Lifetimes: a handle is process lifetime (opened on the main thread before the servers start,
 * closed after they stopped); the database is mmap'ed and read-only after loading.
 * Threads: ap_geo_lookup runs on data-plane workers concurrently on the shared handle: no lock,
 * no allocation, no I/O (lookups read the mapping).
 */
#ifndef AP_GEO_H
#define AP_GEO_H

#include <stdbool.h>

#include "ap_context.h"

#define AP_GEO_SETTING_AUTO "auto"
#define AP_GEO_SETTING_NONE "none"
#define AP_GEO_TOR_IPV4 "/usr/share/tor/geoip"
#define AP_GEO_TOR_IPV6 "/usr/share/tor/geoip6"

/* Searched in order by "auto" (NULL-terminated): City databases first, then Country ones. */
extern const char *const AP_GEO_DEFAULT_PATHS[];

/* Opens the database for a --geoip-db setting (see above). Returns the handle, or NULL when the
 * setting is "none"/"" or nothing usable exists (a warning is logged; the daemon goes on
 * without geo). Main thread, before the servers start. */
struct ap_geo *ap_geo_open_setting(const char *setting);

/* Opens a tor-geoipdb pair (either path may be NULL) as described for "auto"; the conversion
 * runs on a background thread. NULL with *err set if neither file is readable. Main thread. */
struct ap_geo *ap_geo_open_tor(const char *ipv4_path, const char *ipv6_path, int *err);

/* true once lookups can answer (always true for a file; for a conversion once it finished). */
bool ap_geo_ready(const struct ap_geo *g);

/* Waits up to timeout_ms for the database to be ready (tests, tools). AP_OK, AP_ETIMEDOUT, or
 * the conversion's error code. Not on a worker thread. */
int ap_geo_wait(const struct ap_geo *g, int timeout_ms);

/* What the handle serves from, for logs: a path or "tor-geoipdb (...)". Static or owned by g. */
const char *ap_geo_source(const struct ap_geo *g);

#endif
