/*
 * ap_context: the request context of an ad decision, resolved once per request, and the
 * contract between the decision engine (src/serve/ap_serve_*) and the request-context "edge"
 * modules (geo, User-Agent, consent) implemented in src/serve/ap_geo.c, ap_ua.c, ap_consent.c.
 *
 * Who fills what:
 *   - the decision handler (ap_serve_http.c): placement ids, page url/domain, referrer, client
 *     ip (X-Forwarded-For only from --trusted-proxies), Accept-Language, keywords, user key
 *     (first-party cookie ap_uid or the publisher-supplied key), now;
 *   - ap_geo_lookup(): country, region, city (from the ip);
 *   - ap_ua_parse(): device, os, browser (from the User-Agent);
 *   - ap_consent_parse(): gdpr_applies, storage_allowed, personalisation_allowed, consent_known.
 * The engine never calls the edge functions by name: the app hands their addresses to
 * ap_serve_set_edge() through struct ap_serve_edge (any member may be NULL: that part of the
 * context then stays "unknown"). So the engine builds and runs before the edge .c files exist.
 *
 * Lifetime: a struct ap_serve_ctx lives for one request (on the worker's stack or in the request
 * arena). Its fixed-size strings are owned by it; its spans point into the request (the read
 * buffer or the request arena) and die with the request. Nothing here allocates.
 *
 * Threads: a context belongs to one worker thread. The edge functions are called on data-plane
 * worker threads, concurrently, on shared read-only handles (struct ap_geo, struct ap_ua):
 * they must not block (no file I/O per request, no lock), must not allocate per request once
 * warm (a per-thread cache is fine: _Thread_local), and must never fail the request: on bad or
 * missing input they leave the fields they own at their "unknown" values (see
 * ap_serve_ctx_init()).
 */
#ifndef AP_CONTEXT_H
#define AP_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/ap_span.h"

/* Named limits (excess input is ignored, never an error). */
#define AP_SERVE_CTX_MAX_KEYWORDS 32 /* keywords taken from a request */
#define AP_SERVE_CTX_MAX_LANGS 4     /* Accept-Language entries kept, in preference order */
#define AP_SERVE_CTX_MAX_SEGMENTS 16 /* audience segments (only with personalisation) */
#define AP_SERVE_CTX_CITY_MAX 104    /* bytes of a city name, NUL included */
#define AP_SERVE_CTX_REGION_MAX 8    /* "US-CA", NUL included */
#define AP_SERVE_CTX_IP_MAX 46       /* INET6_ADDRSTRLEN */
#define AP_SERVE_CTX_USER_MAX 65     /* user key bytes, NUL included */
#define AP_SERVE_CTX_DOMAIN_MAX 254

/* Values match the schema's targeting enums (src/store/ap_schema.c). 0 = unknown. */
enum ap_serve_device {
    AP_SERVE_DEVICE_UNKNOWN = 0,
    AP_SERVE_DEVICE_DESKTOP,
    AP_SERVE_DEVICE_MOBILE,
    AP_SERVE_DEVICE_TABLET,
    AP_SERVE_DEVICE_CTV,
    AP_SERVE_DEVICE_OTHER,
    AP_SERVE_DEVICE_COUNT
};

enum ap_serve_os {
    AP_SERVE_OS_UNKNOWN = 0,
    AP_SERVE_OS_WINDOWS,
    AP_SERVE_OS_MACOS,
    AP_SERVE_OS_LINUX,
    AP_SERVE_OS_IOS,
    AP_SERVE_OS_ANDROID,
    AP_SERVE_OS_CHROMEOS,
    AP_SERVE_OS_OTHER,
    AP_SERVE_OS_COUNT
};

enum ap_serve_browser {
    AP_SERVE_BROWSER_UNKNOWN = 0,
    AP_SERVE_BROWSER_CHROME,
    AP_SERVE_BROWSER_FIREFOX,
    AP_SERVE_BROWSER_SAFARI,
    AP_SERVE_BROWSER_EDGE,
    AP_SERVE_BROWSER_OPERA,
    AP_SERVE_BROWSER_SAMSUNG,
    AP_SERVE_BROWSER_OTHER,
    AP_SERVE_BROWSER_COUNT
};

/* Schema names of the enums above ("desktop", "windows", "chrome"; "" for UNKNOWN), and back
 * (UNKNOWN if not a schema name). Static strings; any thread. */
const char *ap_serve_device_name(enum ap_serve_device d);
const char *ap_serve_os_name(enum ap_serve_os o);
const char *ap_serve_browser_name(enum ap_serve_browser b);
enum ap_serve_device ap_serve_device_parse(struct ap_span s);
enum ap_serve_os ap_serve_os_parse(struct ap_span s);
enum ap_serve_browser ap_serve_browser_parse(struct ap_span s);

struct ap_serve_ctx {
    /* time */
    int64_t now; /* Unix seconds; the engine derives each advertiser's local hour and weekday
                    from it with the snapshot's time-zone tables */

    /* network and geo */
    char ip[AP_SERVE_CTX_IP_MAX];         /* numeric client address, "" if unknown */
    char country[3];                      /* ISO 3166-1 alpha-2, upper case ("US"), "" if unknown */
    char region[AP_SERVE_CTX_REGION_MAX]; /* ISO 3166-2 ("US-CA"), "" if unknown */
    char city[AP_SERVE_CTX_CITY_MAX];     /* English name as in the geo db, "" if unknown */

    /* device (from the User-Agent) */
    enum ap_serve_device device;
    enum ap_serve_os os;
    enum ap_serve_browser browser;

    /* languages: ISO 639-1 lower case ("en"), from Accept-Language, preference order */
    char langs[AP_SERVE_CTX_MAX_LANGS][3];
    int nlangs;

    /* page */
    struct ap_span page_url;              /* as supplied, may be empty */
    char domain[AP_SERVE_CTX_DOMAIN_MAX]; /* lower-case host of page_url, else the site's */
    struct ap_span referrer;
    struct ap_span keywords[AP_SERVE_CTX_MAX_KEYWORDS]; /* as supplied (matched exactly) */
    int nkeywords;
    struct ap_span segments[AP_SERVE_CTX_MAX_SEGMENTS]; /* dropped without personalisation */
    int nsegments;

    /* user */
    char user_key[AP_SERVE_CTX_USER_MAX]; /* cookie ap_uid or supplied key; "" = anonymous */
    bool user_from_cookie;                /* user_key came from our cookie */
    bool set_cookie;                      /* the response should (re)set the ap_uid cookie */

    /* consent (IAB TCF v2). Defaults: gdpr_applies false, everything allowed. When GDPR
     * applies, storage_allowed needs purpose 1 and personalisation_allowed purposes 3 and 4
     * (personalised ads profile + selection); without a TCF string both are false. */
    bool gdpr_applies;
    bool consent_known;           /* a TCF string was present and parsed */
    bool storage_allowed;         /* may read/set the cookie and keep per-user counters */
    bool personalisation_allowed; /* may use segments (behavioural targeting) */
};

/* Resets ctx to "unknown everything", gdpr_applies false, storage and personalisation allowed,
 * now = the given time. */
void ap_serve_ctx_init(struct ap_serve_ctx *ctx, int64_t now);

/* ---- edge modules: implemented by src/serve/ap_geo.c, ap_ua.c, ap_consent.c ---------------- */

struct ap_geo; /* an opened MaxMind-format database (libmaxminddb), shared read-only */
struct ap_ua;  /* compiled uap-core rules, shared read-only */

/* Opens the database at path (mmap). NULL on failure with *err = AP_E* code. Main thread,
 * before the servers start; the handle lives until ap_geo_close (process lifetime). */
struct ap_geo *ap_geo_open(const char *path, int *err);
void ap_geo_close(struct ap_geo *g);

/* Fills ctx->country, ->region, ->city for the numeric address ip. AP_OK, AP_ENOTFOUND (not in
 * the database: fields left "") or AP_EINVAL (not an address). Worker threads, concurrently. */
int ap_geo_lookup(const struct ap_geo *g, const char *ip, struct ap_serve_ctx *ctx);

/* Compiles the uap-core regexes file (regexes.yaml). NULL on failure with *err set. Main
 * thread; process lifetime. */
struct ap_ua *ap_ua_open(const char *regexes_path, int *err);
void ap_ua_close(struct ap_ua *u);

/* Fills ctx->device, ->os, ->browser from a User-Agent value (empty: all unknown). Worker
 * threads, concurrently: u is shared; a result cache must be per thread or lock-free. */
void ap_ua_parse(struct ap_ua *u, struct ap_span ua, struct ap_serve_ctx *ctx);

/* Sets ctx->gdpr_applies = gdpr and, from the TCF v2 consent string tcf (base64url core
 * string, may be empty), ctx->consent_known, ->storage_allowed, ->personalisation_allowed as
 * documented in struct ap_serve_ctx. An unparsable string counts as no consent. Pure; any
 * thread. */
void ap_consent_parse(struct ap_span tcf, bool gdpr, struct ap_serve_ctx *ctx);

/* The edge as the engine sees it: the app fills what exists (NULL members are skipped; without
 * consent_parse the engine applies the safe default itself: GDPR applies -> no storage, no
 * personalisation). Copied by ap_serve_set_edge(); the handles must outlive the servers. */
struct ap_serve_edge {
    const struct ap_geo *geo;
    int (*geo_lookup)(const struct ap_geo *g, const char *ip, struct ap_serve_ctx *ctx);
    struct ap_ua *ua;
    void (*ua_parse)(struct ap_ua *u, struct ap_span ua, struct ap_serve_ctx *ctx);
    void (*consent_parse)(struct ap_span tcf, bool gdpr, struct ap_serve_ctx *ctx);
};

#endif
