/*
 * ap_ua: User-Agent -> device type, OS and browser, with the maintained uap-core rules
 * (regexes.yaml: user_agent_parsers, os_parsers, device_parsers; Debian package uap-core).
 * Implements the User-Agent part of the edge contract in ap_context.h (ap_ua_open, ap_ua_close,
 * ap_ua_parse) and adds ap_ua_open_setting (--uap-regexes) and ap_ua_classify (the families and
 * the bot flag, which the context has no field for).
 *
 * At start-up the YAML file is read with libyaml and every regex compiled with PCRE2 (JIT where
 * the platform has it). A parse runs the three rule lists like the reference implementations
 * (first match wins, $1..$9 substituted into the *_replacement fields), then maps the families
 * onto the schema's enums:
 *   browser: chrome (Chrome, Chrome Mobile, Chromium, HeadlessChrome, ...), firefox, safari
 *            (Safari, Mobile Safari, WKWebView), edge, opera, samsung (Samsung Internet), other;
 *   os:      windows, macos, linux (Linux and its distributions), ios, android, chromeos, other;
 *   device:  ctv (TV and streaming devices), tablet, mobile, desktop, other; bots (uap-core's
 *            device family "Spider") are "other" in the context and is_bot in ap_ua_classify.
 *
 * Results are cached per worker thread: a direct-mapped table of AP_UA_CACHE_SLOTS entries keyed
 * by a 64-bit hash and the length of the User-Agent (no lock; allocated once per thread on first
 * use and freed when the thread exits).
 *
 * Lifetimes: a handle (compiled rules) is process lifetime, read-only after ap_ua_open.
 * Threads: open/close on the main thread; parse/classify on any thread concurrently.
 */
#ifndef AP_UA_H
#define AP_UA_H

#include <stdbool.h>

#include "ap_context.h"

#define AP_UA_DEFAULT_REGEXES "/usr/share/uap-core/regexes.yaml"
#define AP_UA_SETTING_NONE "none"
#define AP_UA_MAX_LEN 1024        /* bytes of a User-Agent examined (the rest is ignored) */
#define AP_UA_CACHE_SLOTS 4096    /* per-thread cache entries (a power of two) */
#define AP_UA_FAMILY_MAX 48       /* bytes of a family name kept, NUL included */
#define AP_UA_MAX_RULES 8192      /* rules per list at most */
#define AP_UA_MATCH_LIMIT 1000000 /* PCRE2 match limit per regex (backtracking bound) */

struct ap_ua_result {
    enum ap_serve_device device;
    enum ap_serve_os os;
    enum ap_serve_browser browser;
    bool is_bot;
    char browser_family[AP_UA_FAMILY_MAX]; /* uap-core's names: "Chrome Mobile", "Other" */
    char os_family[AP_UA_FAMILY_MAX];      /* "Mac OS X", "Android" */
    char device_family[AP_UA_FAMILY_MAX];  /* "iPhone", "Spider", "Other" */
};

/* Opens for a --uap-regexes setting: a path ("" = AP_UA_DEFAULT_REGEXES) or "none". NULL (with
 * a warning logged) when disabled or unusable: the daemon then serves without device data.
 * Main thread. */
struct ap_ua *ap_ua_open_setting(const char *setting);

/* Full parse without the cache (tests, tools) or through it (cached = true: worker threads).
 * The families are only filled when cached is false. An empty ua gives all UNKNOWN. */
void ap_ua_classify(struct ap_ua *u, struct ap_span ua, bool cached, struct ap_ua_result *out);

/* Rules loaded per list (for logs and tests). */
void ap_ua_counts(const struct ap_ua *u, size_t *ua_rules, size_t *os_rules, size_t *dev_rules);

#endif
