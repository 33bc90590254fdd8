#include "ap_schema.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ap_error.h"

/* Named limits. */
#define MONEY_MAX INT64_C(1000000000000000) /* 10^15 micros = 10^9 units: room for sums */
#define NAME_MAX_LEN 200
#define DEFAULT_STRING_MAX 1024
#define LIST_MAX 1000            /* items in a targeting list */
#define KEYWORD_MAX_LEN 64
#define FREQ_CAPS_MAX 16
#define FREQ_WINDOW_MAX 31622400 /* 366 days */
#define URL_MAX_LEN 2048
#define ZONEINFO_DIR "/usr/share/zoneinfo/"
#define ZONE_MAX_LEN 64

/* ---- errors ------------------------------------------------------------------------------- */

void ap_schema_errors_init(struct ap_schema_errors *e)
{
    e->n = 0;
    e->total = 0;
    e->truncated = false;
}

void ap_schema_errors_add(struct ap_schema_errors *e, const char *field, const char *fmt, ...)
{
    e->total++;
    if (e->n >= AP_SCHEMA_MAX_ERRORS) {
        e->truncated = true;
        return;
    }
    struct ap_schema_error *it = &e->items[e->n++];
    snprintf(it->field, sizeof(it->field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->message, sizeof(it->message), fmt, ap);
    va_end(ap);
}

json_t *ap_schema_errors_to_json(const struct ap_schema_errors *e)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < e->n; i++) {
        json_t *o = json_pack("{s:s, s:s}", "field", e->items[i].field, "message",
                              e->items[i].message);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *ap_schema_errors_body(const struct ap_schema_errors *e, const char *message)
{
    json_t *fields = ap_schema_errors_to_json(e);
    if (!fields)
        return NULL;
    /* "o" steals fields, also when json_pack fails */
    return json_pack("{s:{s:s, s:s, s:o}}", "error", "code", "validation_failed", "message",
                     message ? message : "request validation failed", "fields", fields);
}

/* Path helpers: "base.key" and "base[i]". A path too long for AP_SCHEMA_FIELD_MAX is cut
 * short: it only names a field in a message. */
static void path_key(char *out, const char *base, const char *key)
{
    int n = snprintf(out, AP_SCHEMA_FIELD_MAX, "%s.%s", base, key);
    if (n < 0)
        out[0] = '\0';
}

static void path_idx(char *out, const char *base, size_t i)
{
    int n = snprintf(out, AP_SCHEMA_FIELD_MAX, "%s[%zu]", base, i);
    if (n < 0)
        out[0] = '\0';
}

#define ADD(e, path, ...) ap_schema_errors_add((e), (path), __VA_ARGS__)

/* ---- small character-class helpers --------------------------------------------------------- */

static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_hex_lower(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

static bool has_control(const char *s, size_t len, bool multiline)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (multiline && (c == '\t' || c == '\n' || c == '\r'))
            continue;
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

static bool in_list(const char *s, const char *const *values)
{
    for (size_t i = 0; values[i]; i++)
        if (strcmp(s, values[i]) == 0)
            return true;
    return false;
}

/* Appends "a, b, c" of values into buf for messages. */
static const char *list_text(const char *const *values, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; values[i] && off < size; i++) {
        int n = snprintf(buf + off, size - off, "%s%s", i ? ", " : "", values[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    return buf;
}

/* ---- shared validators ---------------------------------------------------------------------- */

/* ISO 4217 codes of currencies in circulation (fund codes, metals and test codes left out),
 * sorted for bsearch. */
static const char *const CURRENCIES[] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL",
};

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool ap_schema_valid_currency(const char *code)
{
    if (!code || strlen(code) != 3 || !is_upper(code[0]) || !is_upper(code[1]) ||
        !is_upper(code[2]))
        return false;
    return bsearch(&code, CURRENCIES, sizeof(CURRENCIES) / sizeof(CURRENCIES[0]),
                   sizeof(CURRENCIES[0]), cmp_cstr) != NULL;
}

bool ap_schema_valid_timezone(const char *zone)
{
    if (!zone)
        return false;
    size_t len = strlen(zone);
    if (len == 0 || len > ZONE_MAX_LEN || zone[0] == '/' || zone[len - 1] == '/' ||
        strstr(zone, "..") || strstr(zone, "//"))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = zone[i];
        if (!(is_upper(c) || is_lower(c) || is_digit(c) || c == '_' || c == '+' || c == '-' ||
              c == '/' || c == '.'))
            return false;
    }
    if (strcmp(zone, "localtime") == 0 || strcmp(zone, "posixrules") == 0)
        return false;
    if (strcmp(zone, "UTC") == 0)
        return true; /* always known, even without tzdata installed */

    char path[sizeof(ZONEINFO_DIR) + ZONE_MAX_LEN];
    snprintf(path, sizeof(path), "%s%s", ZONEINFO_DIR, zone);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    /* A regular file is not enough: zone.tab, tzdata.zi, leapseconds live there too. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char magic[4];
    ssize_t n = read(fd, magic, sizeof(magic));
    close(fd);
    return n == 4 && memcmp(magic, "TZif", 4) == 0;
}

bool ap_schema_valid_domain(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = name[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(is_lower(c) || is_digit(c) || c == '-'))
            return false;
        if (label == 0 && c == '-')
            return false;
        label++;
    }
    return true;
}

bool ap_schema_valid_http_url(const char *url)
{
    size_t len = url ? strlen(url) : 0;
    if (len == 0 || len > URL_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' ||
            c == '`')
            return false;
    }
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0)
        p = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        p = url + 8;
    else
        return false;
    size_t hlen = strcspn(p, "/?#");
    if (hlen == 0 || memchr(p, '@', hlen))
        return false; /* no host, or user-info (a classic phishing disguise) */
    const char *end = p + hlen;
    const char *port = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', hlen);
        if (!close || close == p + 1)
            return false;
        for (const char *q = p + 1; q < close; q++)
            if (!(is_hex_lower(*q) || (*q >= 'A' && *q <= 'F') || *q == ':' || *q == '.'))
                return false;
        if (close + 1 < end) {
            if (close[1] != ':')
                return false;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', hlen);
        const char *hend = colon ? colon : end;
        if (hend == p)
            return false;
        for (const char *q = p; q < hend; q++)
            if (!(is_lower(*q) || is_upper(*q) || is_digit(*q) || *q == '-' || *q == '.' ||
                  *q == '_'))
                return false;
        if (colon)
            port = colon + 1;
    }
    if (port) {
        if (port == end || end - port > 5)
            return false;
        long v = 0;
        for (const char *q = port; q < end; q++) {
            if (!is_digit(*q))
                return false;
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535)
            return false;
    }
    return true;
}

/* ---- field validators ------------------------------------------------------------------ */

static void v_name(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_string_value(v);
    for (; *s; s++)
        if (*s != ' ')
            return;
    ADD(e, path, "must not be blank");
}

static void v_currency(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!ap_schema_valid_currency(json_string_value(v)))
        ADD(e, path, "must be an ISO 4217 currency code in upper case, e.g. USD");
}

static void v_timezone(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!ap_schema_valid_timezone(json_string_value(v)))
        ADD(e, path, "must be an IANA time zone, e.g. Europe/Paris or UTC");
}

static void v_http_url(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!ap_schema_valid_http_url(json_string_value(v)))
        ADD(e, path, "must be an absolute http:// or https:// URL");
}

static void v_domain(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!ap_schema_valid_domain(json_string_value(v)))
        ADD(e, path, "must be a lower-case DNS name, e.g. news.example.com");
}

static void v_bundle_id(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    for (const char *s = json_string_value(v); *s; s++)
        if (!(is_lower(*s) || is_upper(*s) || is_digit(*s) || *s == '.' || *s == '_' ||
              *s == '-')) {
            ADD(e, path, "must be an app bundle id or store id, e.g. com.example.app");
            return;
        }
}

static void v_sha256(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!is_hex_lower(s[i]))
            n = 0;
    if (n != 64)
        ADD(e, path, "must be 64 lower-case hex digits");
}

static void v_mime(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_string_value(v);
    size_t i = 0;
    while (is_lower(s[i]))
        i++;
    bool ok = i > 0 && s[i] == '/';
    size_t j = ++i;
    while (ok && (is_lower(s[i]) || is_digit(s[i]) || s[i] == '.' || s[i] == '+' || s[i] == '-'))
        i++;
    if (!ok || i == j || s[i] != '\0')
        ADD(e, path, "must be a MIME type, e.g. image/png");
}

/* IAB content taxonomy: "IAB7" / "IAB7-32" (1.0) or a numeric id (2.x/3.x). */
static void v_category(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_string_value(v);
    size_t i = 0, d = 0;
    bool ok;
    if (strncmp(s, "IAB", 3) == 0) {
        for (i = 3; is_digit(s[i]); i++)
            d++;
        ok = d >= 1 && d <= 2;
        if (ok && s[i] == '-') {
            for (i++, d = 0; is_digit(s[i]); i++)
                d++;
            ok = d >= 1 && d <= 2;
        }
    } else {
        for (; is_digit(s[i]); i++)
            d++;
        ok = d >= 1 && d <= 4;
    }
    if (!ok || s[i] != '\0')
        ADD(e, path, "must be an IAB content category, e.g. IAB7-32 or 483");
}

static void v_bidder_code(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_string_value(v);
    bool ok = is_lower(s[0]);
    for (size_t i = 1; ok && s[i]; i++)
        ok = is_lower(s[i]) || is_digit(s[i]) || s[i] == '_';
    if (!ok)
        ADD(e, path, "must be lower-case letters, digits and '_', starting with a letter");
}

/* ---- list and targeting validators --------------------------------------------------------- */

typedef void (*item_check_fn)(const char *path, const json_t *v, struct ap_schema_errors *e);

static void check_list(const char *path, const json_t *v, item_check_fn item, size_t max,
                       struct ap_schema_errors *e)
{
    if (!json_is_array(v)) {
        ADD(e, path, "must be an array");
        return;
    }
    if (json_array_size(v) > max) {
        ADD(e, path, "must have at most %zu items", max);
        return;
    }
    size_t i;
    json_t *it;
    char p[AP_SCHEMA_FIELD_MAX];
    json_array_foreach(v, i, it) {
        path_idx(p, path, i);
        item(p, it, e);
    }
}

static const char *item_string(const char *path, const json_t *v, size_t max,
                               struct ap_schema_errors *e)
{
    if (!json_is_string(v)) {
        ADD(e, path, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > max || strlen(s) != n || has_control(s, n, false)) {
        ADD(e, path, "must be a non-empty string of at most %zu bytes without controls", max);
        return NULL;
    }
    return s;
}

static void item_enum(const char *path, const json_t *v, const char *const *values,
                      struct ap_schema_errors *e)
{
    char buf[AP_SCHEMA_MESSAGE_MAX - 16];
    if (!json_is_string(v) || !in_list(json_string_value(v), values))
        ADD(e, path, "must be one of: %s", list_text(values, buf, sizeof(buf)));
}

static void item_country(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (strlen(s) != 2 || !is_upper(s[0]) || !is_upper(s[1]))
        ADD(e, path, "must be an ISO 3166-1 alpha-2 country code, e.g. US");
}

static void item_region(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    size_t n = strlen(s), i;
    bool ok = n >= 4 && n <= 6 && is_upper(s[0]) && is_upper(s[1]) && s[2] == '-';
    for (i = 3; ok && i < n; i++)
        ok = is_upper(s[i]) || is_digit(s[i]);
    if (!ok)
        ADD(e, path, "must be an ISO 3166-2 region code, e.g. US-CA");
}

static void item_city(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    item_string(path, v, 100, e);
}

static void item_keyword(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    item_string(path, v, KEYWORD_MAX_LEN, e);
}

static void item_segment(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = item_string(path, v, 64, e);
    for (; s && *s; s++)
        if (!(is_lower(*s) || is_upper(*s) || is_digit(*s) || *s == '_' || *s == '-' ||
              *s == '.' || *s == ':')) {
            ADD(e, path, "must be letters, digits and _ - . : only");
            return;
        }
}

static void item_language(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (strlen(s) != 2 || !is_lower(s[0]) || !is_lower(s[1]))
        ADD(e, path, "must be an ISO 639-1 language code, e.g. en");
}

static const char *const DEVICE_TYPES[] = {"desktop", "mobile", "tablet", "ctv", "other", NULL};
static const char *const OS_NAMES[] = {"windows", "macos", "linux",    "ios",
                                       "android", "chromeos", "other", NULL};
static const char *const BROWSERS[] = {"chrome", "firefox", "safari", "edge",
                                       "opera",  "samsung", "other",  NULL};
static const char *const AD_TYPES[] = {"image", "html", "native", "vast", NULL};
static const char *const CAP_SCOPES[] = {"ad", "campaign", NULL};

static void item_device(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    item_enum(path, v, DEVICE_TYPES, e);
}

static void item_os(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    item_enum(path, v, OS_NAMES, e);
}

static void item_browser(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    item_enum(path, v, BROWSERS, e);
}

static void item_id(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        ADD(e, path, "must be a positive integer id");
}

static void item_domain(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!json_is_string(v) || !ap_schema_valid_domain(json_string_value(v)))
        ADD(e, path, "must be a lower-case DNS name, e.g. news.example.com");
}

/* "10.0.0.0/8", "2001:db8::/32", or a bare address (one host). Host bits must be zero. */
static void item_cidr(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    char addr[INET6_ADDRSTRLEN];
    unsigned char bytes[16];
    int family = strchr(s, ':') ? AF_INET6 : AF_INET;
    unsigned bits = family == AF_INET ? 32 : 128;
    unsigned prefix = bits;
    bool ok = alen > 0 && alen < sizeof(addr);
    if (ok) {
        memcpy(addr, s, alen);
        addr[alen] = '\0';
        ok = inet_pton(family, addr, bytes) == 1;
    }
    if (ok && slash) {
        const char *q = slash + 1;
        size_t n = strlen(q);
        ok = n >= 1 && n <= 3;
        prefix = 0;
        for (size_t i = 0; ok && i < n; i++) {
            ok = is_digit(q[i]);
            prefix = prefix * 10 + (unsigned)(q[i] - '0');
        }
        ok = ok && prefix <= bits;
    }
    if (!ok) {
        ADD(e, path, "must be an IPv4 or IPv6 CIDR range, e.g. 192.0.2.0/24");
        return;
    }
    for (unsigned b = prefix; b < bits; b++)
        if (bytes[b / 8] & (0x80u >> (b % 8))) {
            ADD(e, path, "has host bits set after the /%u prefix", prefix);
            return;
        }
}

/* Checks an array of distinct integers in [lo, hi], 1..max items. */
static void int_set(const char *path, const json_t *v, int lo, int hi, struct ap_schema_errors *e)
{
    size_t n = json_array_size(v), i;
    json_t *it;
    uint32_t seen = 0;
    if (!json_is_array(v) || n == 0 || n > (size_t)(hi - lo + 1)) {
        ADD(e, path, "must be a non-empty array of distinct integers %d..%d", lo, hi);
        return;
    }
    json_array_foreach(v, i, it) {
        json_int_t x = json_is_integer(it) ? json_integer_value(it) : lo - 1;
        if (x < lo || x > hi || (seen & (1u << (x - lo)))) {
            char p[AP_SCHEMA_FIELD_MAX];
            path_idx(p, path, i);
            ADD(e, p, "must be a distinct integer %d..%d", lo, hi);
            return;
        }
        seen |= 1u << (x - lo);
    }
}

/* [{"days": [0-6], "hours": [0-23]}] (days 0 = Sunday), in the advertiser's time zone. */
static void item_daypart(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!json_is_object(v)) {
        ADD(e, path, "must be an object {\"days\": [...], \"hours\": [...]}");
        return;
    }
    const char *key;
    json_t *val;
    char p[AP_SCHEMA_FIELD_MAX];
    json_object_foreach((json_t *)v, key, val) {
        path_key(p, path, key);
        if (strcmp(key, "days") == 0)
            int_set(p, val, 0, 6, e);
        else if (strcmp(key, "hours") == 0)
            int_set(p, val, 0, 23, e);
        else
            ADD(e, p, "unknown key");
    }
    if (!json_object_get(v, "days"))
        path_key(p, path, "days"), ADD(e, p, "is required");
    if (!json_object_get(v, "hours"))
        path_key(p, path, "hours"), ADD(e, p, "is required");
}

static void t_dayparts(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    check_list(path, v, item_daypart, 168, e);
}

static void t_keywords(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!json_is_object(v)) {
        ADD(e, path, "must be an object {\"any\": [...], \"all\": [...], \"none\": [...]}");
        return;
    }
    const char *key;
    json_t *val;
    char p[AP_SCHEMA_FIELD_MAX];
    json_object_foreach((json_t *)v, key, val) {
        path_key(p, path, key);
        if (strcmp(key, "any") == 0 || strcmp(key, "all") == 0 || strcmp(key, "none") == 0)
            check_list(p, val, item_keyword, LIST_MAX, e);
        else
            ADD(e, p, "unknown key (expected any, all, none)");
    }
}

static const struct targeting_key {
    const char *name;
    item_check_fn item;                                         /* list of these, or */
    void (*whole)(const char *, const json_t *, struct ap_schema_errors *); /* custom */
} TARGETING_KEYS[] = {
    {"countries_include", item_country, NULL}, {"countries_exclude", item_country, NULL},
    {"regions_include", item_region, NULL},    {"regions_exclude", item_region, NULL},
    {"cities_include", item_city, NULL},       {"cities_exclude", item_city, NULL},
    {"device_types", item_device, NULL},       {"os", item_os, NULL},
    {"browsers", item_browser, NULL},          {"languages", item_language, NULL},
    {"dayparts", NULL, t_dayparts},            {"keywords", NULL, t_keywords},
    {"segments", item_segment, NULL},          {"sites_include", item_id, NULL},
    {"sites_exclude", item_id, NULL},          {"placements_include", item_id, NULL},
    {"placements_exclude", item_id, NULL},     {"domains_include", item_domain, NULL},
    {"domains_exclude", item_domain, NULL},    {"ip_ranges", item_cidr, NULL},
};

static void v_targeting(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *key;
    json_t *val;
    char p[AP_SCHEMA_FIELD_MAX];
    json_object_foreach((json_t *)v, key, val) {
        const struct targeting_key *k = NULL;
        for (size_t i = 0; i < sizeof(TARGETING_KEYS) / sizeof(TARGETING_KEYS[0]); i++)
            if (strcmp(TARGETING_KEYS[i].name, key) == 0)
                k = &TARGETING_KEYS[i];
        path_key(p, path, key);
        if (!k)
            ADD(e, p, "unknown targeting key");
        else if (k->whole)
            k->whole(p, val, e);
        else
            check_list(p, val, k->item, LIST_MAX, e);
    }
}

static void item_freq_cap(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    if (!json_is_object(v)) {
        ADD(e, path, "must be an object {\"count\", \"window_seconds\", \"scope\"}");
        return;
    }
    const char *key;
    json_t *val;
    char p[AP_SCHEMA_FIELD_MAX];
    json_object_foreach((json_t *)v, key, val) {
        path_key(p, path, key);
        if (strcmp(key, "count") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 1 ||
                json_integer_value(val) > 1000000)
                ADD(e, p, "must be an integer 1..1000000");
        } else if (strcmp(key, "window_seconds") == 0) {
            if (!json_is_integer(val) || json_integer_value(val) < 1 ||
                json_integer_value(val) > FREQ_WINDOW_MAX)
                ADD(e, p, "must be an integer 1..%d", FREQ_WINDOW_MAX);
        } else if (strcmp(key, "scope") == 0) {
            item_enum(p, val, CAP_SCOPES, e);
        } else {
            ADD(e, p, "unknown key");
        }
    }
    static const char *const required[] = {"count", "window_seconds", "scope"};
    for (size_t i = 0; i < 3; i++)
        if (!json_object_get(v, required[i])) {
            path_key(p, path, required[i]);
            ADD(e, p, "is required");
        }
}

static void v_freq_caps(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    check_list(path, v, item_freq_cap, FREQ_CAPS_MAX, e);
}

static void item_size(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    unsigned w = 0, h = 0;
    size_t i = 0, dw = 0, dh = 0;
    for (; is_digit(s[i]) && dw < 6; i++, dw++)
        w = w * 10 + (unsigned)(s[i] - '0');
    bool ok = dw > 0 && s[i] == 'x' && s[0] != '0';
    if (ok)
        for (i++; is_digit(s[i]) && dh < 6; i++, dh++)
            h = h * 10 + (unsigned)(s[i] - '0');
    ok = ok && dh > 0 && s[i] == '\0' && s[i - dh] != '0' && w <= 10000 && h <= 10000;
    if (!ok)
        ADD(e, path, "must be a size \"WxH\" with W and H in 1..10000, e.g. 300x250");
}

static void item_ad_type(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    item_enum(path, v, AD_TYPES, e);
}

/* Adds an error for the first repeated string item. */
static void no_duplicates(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (json_equal(json_array_get(v, i), json_array_get(v, j))) {
                char p[AP_SCHEMA_FIELD_MAX];
                path_idx(p, path, i);
                ADD(e, p, "is a duplicate");
                return;
            }
}

static void v_sizes(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    size_t t0 = e->total;
    check_list(path, v, item_size, 64, e);
    if (e->total == t0)
        no_duplicates(path, v, e);
}

static void v_ad_types(const char *path, const json_t *v, struct ap_schema_errors *e)
{
    size_t t0 = e->total;
    if (json_array_size(v) == 0) {
        ADD(e, path, "must not be empty");
        return;
    }
    check_list(path, v, item_ad_type, 4, e);
    if (e->total == t0)
        no_duplicates(path, v, e);
}

/* ---- cross-field checks ------------------------------------------------------------------- */

static const char *row_str(const json_t *row, const char *key)
{
    return json_string_value(json_object_get(row, key)); /* NULL if null or missing */
}

static bool row_set(const json_t *row, const char *key)
{
    json_t *v = json_object_get(row, key);
    return v && !json_is_null(v);
}

static void check_campaign(const json_t *row, struct ap_schema_errors *e)
{
    const char *start = row_str(row, "start_at"), *end = row_str(row, "end_at");
    int64_t ts, te;
    if (start && end && ap_schema_time_parse(start, &ts) == AP_OK &&
        ap_schema_time_parse(end, &te) == AP_OK && te <= ts)
        ADD(e, "end_at", "must be after start_at");
    const char *goal = row_str(row, "goal_type");
    if (goal && strcmp(goal, "none") != 0 && !row_set(row, "goal_count"))
        ADD(e, "goal_count", "is required when goal_type is %s", goal);
    if (goal && strcmp(goal, "none") == 0 && row_set(row, "goal_count"))
        ADD(e, "goal_count", "must be null when goal_type is none");
}

static const char *const IMAGE_MIMES[] = {"image/png", "image/jpeg", "image/gif", "image/webp",
                                          NULL};

static void check_creative(const json_t *row, struct ap_schema_errors *e)
{
    const char *type = row_str(row, "type");
    if (!type)
        return;
    static const struct {
        const char *type;
        const char *const required[5];
    } rules[] = {
        {"image", {"width", "height", "mime", "sha256", NULL}},
        {"html", {"width", "height", "html", NULL}},
        {"native", {"native", NULL}},
        {"vast", {"vast_xml", NULL}},
    };
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (strcmp(rules[i].type, type) != 0)
            continue;
        for (size_t j = 0; rules[i].required[j]; j++)
            if (!row_set(row, rules[i].required[j]))
                ADD(e, rules[i].required[j], "is required for %s creatives", type);
    }
    const char *mime = row_str(row, "mime");
    if (strcmp(type, "image") == 0 && mime && !in_list(mime, IMAGE_MIMES))
        ADD(e, "mime", "must be image/png, image/jpeg, image/gif or image/webp");
}

static void check_site(const json_t *row, struct ap_schema_errors *e)
{
    const char *kind = row_str(row, "kind");
    if (kind && strcmp(kind, "site") == 0 && !row_set(row, "domain"))
        ADD(e, "domain", "is required for a site");
    if (kind && strcmp(kind, "app") == 0 && !row_set(row, "bundle_id"))
        ADD(e, "bundle_id", "is required for an app");
}

/* ---- the table -------------------------------------------------------------------------- */

static const char *const STATUS[] = {"active", "paused", "archived", NULL};
static const char *const CAMPAIGN_STATUS[] = {"draft", "active", "paused", "archived", NULL};
static const char *const TIERS[] = {"sponsorship", "standard", "house", NULL};
static const char *const PRICING[] = {"cpm", "cpc", "cpa", NULL};
static const char *const PACING[] = {"even", "asap", NULL};
static const char *const GOALS[] = {"none", "impressions", "clicks", NULL};
static const char *const SELECTION[] = {"ecpm", "lottery", NULL};
static const char *const APPROVAL[] = {"pending", "approved", "rejected", NULL};
static const char *const SITE_KINDS[] = {"site", "app", NULL};

#define REQ AP_SCHEMA_F_REQUIRED
#define IMM AP_SCHEMA_F_IMMUTABLE
#define FIL AP_SCHEMA_F_FILTER
#define NUL AP_SCHEMA_F_NULLABLE

#define F_NAME                                                                                     \
    {.name = "name", .type = AP_SCHEMA_STRING, .flags = REQ, .min = 1, .max = NAME_MAX_LEN,       \
     .validate = v_name, .doc = "display name"}
#define F_STATUS(allowed, dflt)                                                                    \
    {.name = "status", .type = AP_SCHEMA_ENUM, .flags = FIL, .values = allowed, .def = dflt,      \
     .doc = "lifecycle state; DELETE sets archived"}
#define F_MONEY(fname, fflags, dflt, fdoc)                                                         \
    {.name = fname, .type = AP_SCHEMA_MONEY, .flags = fflags, .min = 0, .max = MONEY_MAX,         \
     .def = dflt, .doc = fdoc}
#define F_REF(fname, target, fflags, fdoc)                                                         \
    {.name = fname, .type = AP_SCHEMA_REF, .flags = fflags, .ref = target, .doc = fdoc}
#define F_TZ(fflags, dflt)                                                                         \
    {.name = "timezone", .type = AP_SCHEMA_STRING, .flags = fflags, .min = 1,                     \
     .max = ZONE_MAX_LEN, .def = dflt, .validate = v_timezone, .doc = "IANA time zone"}
#define F_CURRENCY                                                                                 \
    {.name = "currency", .type = AP_SCHEMA_STRING, .flags = REQ | IMM, .min = 3, .max = 3,        \
     .validate = v_currency, .doc = "ISO 4217 code of every money field of the account"}
#define F_TARGETING(fdoc)                                                                          \
    {.name = "targeting", .type = AP_SCHEMA_JSON_OBJECT, .def = "{}", .validate = v_targeting,    \
     .doc = fdoc}

static const struct ap_schema_field ADVERTISER_FIELDS[] = {
    F_NAME,
    F_CURRENCY,
    F_TZ(REQ, NULL),
    F_STATUS(STATUS, "\"active\""),
    F_MONEY("credit_limit_micros", NUL, NULL, "credit limit; null = none"),
    {.name = "category", .type = AP_SCHEMA_STRING, .flags = NUL, .min = 1, .max = 16,
     .validate = v_category, .doc = "IAB content category, for competitive exclusion"},
};

static const struct ap_schema_field CAMPAIGN_FIELDS[] = {
    F_REF("advertiser_id", AP_SCHEMA_ADVERTISER, REQ | IMM | FIL, "owning advertiser"),
    F_NAME,
    F_STATUS(CAMPAIGN_STATUS, "\"draft\""),
    {.name = "start_at", .type = AP_SCHEMA_TIMESTAMP, .flags = NUL, .doc = "UTC; null = now"},
    {.name = "end_at", .type = AP_SCHEMA_TIMESTAMP, .flags = NUL, .doc = "UTC; null = open"},
    {.name = "priority_tier", .type = AP_SCHEMA_ENUM, .flags = FIL, .values = TIERS,
     .def = "\"standard\"", .doc = "sponsorship beats standard beats house"},
    {.name = "priority", .type = AP_SCHEMA_INT, .min = 0, .max = 1000000, .def = "0",
     .doc = "order within the tier, higher first"},
    {.name = "pricing_model", .type = AP_SCHEMA_ENUM, .values = PRICING, .def = "\"cpm\"",
     .doc = "what price_micros is per"},
    F_MONEY("price_micros", 0, "0", "price per thousand impressions (cpm), click or action"),
    F_MONEY("budget_lifetime_micros", NUL, NULL, "lifetime budget; null = unlimited"),
    F_MONEY("budget_daily_micros", NUL, NULL, "daily budget; null = unlimited"),
    {.name = "pacing", .type = AP_SCHEMA_ENUM, .values = PACING, .def = "\"even\"",
     .doc = "spread the daily budget over the day, or spend as fast as possible"},
    {.name = "frequency_caps", .type = AP_SCHEMA_JSON_ARRAY, .max = FREQ_CAPS_MAX, .def = "[]",
     .validate = v_freq_caps, .doc = "[{count, window_seconds, scope: ad|campaign}]"},
    {.name = "goal_type", .type = AP_SCHEMA_ENUM, .values = GOALS, .def = "\"none\"",
     .doc = "optional delivery goal"},
    {.name = "goal_count", .type = AP_SCHEMA_INT, .flags = NUL, .min = 1, .max = MONEY_MAX,
     .doc = "impressions or clicks to deliver"},
    {.name = "selection", .type = AP_SCHEMA_ENUM, .values = SELECTION, .def = "\"ecpm\"",
     .doc = "how ads of equal priority compete"},
    F_TARGETING("targeting rules, see the Targeting schema"),
};

static const struct ap_schema_field AD_FIELDS[] = {
    F_REF("campaign_id", AP_SCHEMA_CAMPAIGN, REQ | IMM | FIL, "campaign"),
    F_REF("creative_id", AP_SCHEMA_CREATIVE, REQ | FIL | AP_SCHEMA_F_SAME_OWNER,
          "creative of the same advertiser"),
    {.name = "weight", .type = AP_SCHEMA_INT, .min = 0, .max = 1000000, .def = "1",
     .doc = "relative weight among the campaign's ads"},
    {.name = "landing_url", .type = AP_SCHEMA_STRING, .flags = NUL, .min = 1,
     .max = URL_MAX_LEN, .validate = v_http_url, .doc = "click destination, http(s) only"},
    F_STATUS(STATUS, "\"active\""),
    F_TARGETING("narrows the campaign's targeting"),
};

static const struct ap_schema_field CREATIVE_FIELDS[] = {
    F_REF("advertiser_id", AP_SCHEMA_ADVERTISER, REQ | IMM | FIL, "owning advertiser"),
    F_NAME,
    {.name = "type", .type = AP_SCHEMA_ENUM, .flags = REQ | IMM | FIL, .values = AD_TYPES,
     .doc = "image, html, native or vast"},
    {.name = "width", .type = AP_SCHEMA_INT, .flags = NUL, .min = 1, .max = 10000,
     .doc = "pixels"},
    {.name = "height", .type = AP_SCHEMA_INT, .flags = NUL, .min = 1, .max = 10000,
     .doc = "pixels"},
    {.name = "mime", .type = AP_SCHEMA_STRING, .flags = NUL, .min = 3, .max = 100,
     .validate = v_mime, .doc = "sniffed media type of an uploaded image"},
    {.name = "sha256", .type = AP_SCHEMA_STRING, .flags = NUL | FIL, .min = 64, .max = 64,
     .validate = v_sha256, .doc = "content address of an uploaded image"},
    {.name = "size_bytes", .type = AP_SCHEMA_INT, .flags = NUL, .min = 0,
     .max = INT64_C(1) << 40, .doc = "uploaded file size"},
    {.name = "html", .type = AP_SCHEMA_STRING, .flags = NUL | AP_SCHEMA_F_MULTILINE, .min = 1,
     .max = 256 * 1024, .doc = "markup, only ever rendered in a sandboxed iframe"},
    {.name = "native", .type = AP_SCHEMA_JSON_OBJECT, .flags = NUL,
     .doc = "native assets (title, image, ...)"},
    {.name = "vast_xml", .type = AP_SCHEMA_STRING, .flags = NUL | AP_SCHEMA_F_MULTILINE,
     .min = 1, .max = 1024 * 1024, .doc = "VAST document"},
    {.name = "approval_status", .type = AP_SCHEMA_ENUM, .flags = FIL, .values = APPROVAL,
     .def = "\"approved\"", .doc = "review state (approved by default for now)"},
    F_STATUS(STATUS, "\"active\""),
};

static const struct ap_schema_field PUBLISHER_FIELDS[] = {
    F_NAME,
    F_CURRENCY,
    {.name = "revenue_share_ppm", .type = AP_SCHEMA_INT, .flags = REQ, .min = 0, .max = 1000000,
     .doc = "publisher's share of revenue, parts per million"},
    F_TZ(0, "\"UTC\""),
    F_STATUS(STATUS, "\"active\""),
};

static const struct ap_schema_field SITE_FIELDS[] = {
    F_REF("publisher_id", AP_SCHEMA_PUBLISHER, REQ | IMM | FIL, "owning publisher"),
    F_NAME,
    {.name = "kind", .type = AP_SCHEMA_ENUM, .flags = FIL, .values = SITE_KINDS,
     .def = "\"site\"", .doc = "web site (domain) or app (bundle_id)"},
    {.name = "domain", .type = AP_SCHEMA_STRING, .flags = NUL | FIL, .min = 1, .max = 253,
     .validate = v_domain, .doc = "site domain"},
    {.name = "bundle_id", .type = AP_SCHEMA_STRING, .flags = NUL | FIL, .min = 1, .max = 200,
     .validate = v_bundle_id, .doc = "app bundle or store id"},
    F_STATUS(STATUS, "\"active\""),
};

static const struct ap_schema_field PLACEMENT_FIELDS[] = {
    F_REF("site_id", AP_SCHEMA_SITE, REQ | IMM | FIL, "site or app"),
    F_NAME,
    {.name = "sizes", .type = AP_SCHEMA_JSON_ARRAY, .max = 64, .def = "[]",
     .validate = v_sizes, .doc = "accepted sizes [\"300x250\", ...]; empty = any"},
    {.name = "ad_types", .type = AP_SCHEMA_JSON_ARRAY, .max = 4, .def = "[\"image\",\"html\"]",
     .validate = v_ad_types, .doc = "accepted creative types"},
    F_MONEY("floor_cpm_micros", 0, "0", "minimum price per thousand impressions"),
    F_STATUS(STATUS, "\"active\""),
};

static const struct ap_schema_field DEMAND_PARTNER_FIELDS[] = {
    F_NAME,
    {.name = "bidder_code", .type = AP_SCHEMA_STRING,
     .flags = REQ | FIL | AP_SCHEMA_F_UNIQUE, .min = 1, .max = 32,
     .validate = v_bidder_code, .doc = "unique short code"},
    {.name = "endpoint", .type = AP_SCHEMA_STRING, .flags = REQ, .min = 1, .max = URL_MAX_LEN,
     .validate = v_http_url, .doc = "OpenRTB bid endpoint, http(s)"},
    {.name = "timeout_ms", .type = AP_SCHEMA_INT, .min = 1, .max = 10000, .def = "200",
     .doc = "bid request timeout"},
    {.name = "qps_limit", .type = AP_SCHEMA_INT, .min = 0, .max = 1000000, .def = "0",
     .doc = "requests per second; 0 = unlimited"},
    {.name = "bid_adjustment", .type = AP_SCHEMA_PPM_DECIMAL, .min = 0, .max = 10000000,
     .def = "1.0", .doc = "multiplier applied to bids, 0..10 (e.g. 0.95)"},
    F_STATUS(STATUS, "\"active\""),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct ap_schema_resource RESOURCES[AP_SCHEMA_RES_COUNT] = {
    {AP_SCHEMA_ADVERTISER, "advertiser", "advertisers", "advertisers",
     AP_SCHEMA_OWNER_ADVERTISER, NULL, ADVERTISER_FIELDS, N(ADVERTISER_FIELDS), NULL},
    {AP_SCHEMA_CAMPAIGN, "campaign", "campaigns", "campaigns", AP_SCHEMA_OWNER_ADVERTISER,
     "advertiser_id", CAMPAIGN_FIELDS, N(CAMPAIGN_FIELDS), check_campaign},
    {AP_SCHEMA_AD, "ad", "ads", "ads", AP_SCHEMA_OWNER_ADVERTISER, "campaign_id", AD_FIELDS,
     N(AD_FIELDS), NULL},
    {AP_SCHEMA_CREATIVE, "creative", "creatives", "creatives", AP_SCHEMA_OWNER_ADVERTISER,
     "advertiser_id", CREATIVE_FIELDS, N(CREATIVE_FIELDS), check_creative},
    {AP_SCHEMA_PUBLISHER, "publisher", "publishers", "publishers", AP_SCHEMA_OWNER_PUBLISHER,
     NULL, PUBLISHER_FIELDS, N(PUBLISHER_FIELDS), NULL},
    {AP_SCHEMA_SITE, "site", "sites", "sites", AP_SCHEMA_OWNER_PUBLISHER, "publisher_id",
     SITE_FIELDS, N(SITE_FIELDS), check_site},
    {AP_SCHEMA_PLACEMENT, "placement", "placements", "placements", AP_SCHEMA_OWNER_PUBLISHER,
     "site_id", PLACEMENT_FIELDS, N(PLACEMENT_FIELDS), NULL},
    {AP_SCHEMA_DEMAND_PARTNER, "demand_partner", "demand-partners", "demand_partners",
     AP_SCHEMA_OWNER_NONE, NULL, DEMAND_PARTNER_FIELDS, N(DEMAND_PARTNER_FIELDS), NULL},
};

const struct ap_schema_resource *ap_schema_get(enum ap_schema_res res)
{
    if ((unsigned)res >= AP_SCHEMA_RES_COUNT)
        return NULL;
    return &RESOURCES[res];
}

const struct ap_schema_resource *ap_schema_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        if (strcmp(RESOURCES[i].name, name) == 0 || strcmp(RESOURCES[i].path, name) == 0 ||
            strcmp(RESOURCES[i].table, name) == 0)
            return &RESOURCES[i];
    return NULL;
}

const struct ap_schema_field *ap_schema_field(const struct ap_schema_resource *r,
                                              const char *name)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return &r->fields[i];
    return NULL;
}

bool ap_schema_is_system_field(const char *name)
{
    return strcmp(name, "id") == 0 || strcmp(name, "created_at") == 0 ||
           strcmp(name, "updated_at") == 0 || strcmp(name, "version") == 0;
}

const struct ap_schema_field *ap_schema_status_field(const struct ap_schema_resource *r)
{
    return ap_schema_field(r, "status");
}

/* ---- time ---------------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian); H. Hinnant's algorithm. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

int ap_schema_time_parse(const char *s, int64_t *out)
{
    unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
    if (!s || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return AP_EINVAL;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return AP_EINVAL;
        while (is_digit(*p))
            p++;
    }
    int sign = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        sign = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2, &oh) &&
               p[3] == ':' && digits(p + 4, 2, &om) && oh <= 23 && om <= 59) {
        sign = *p == '+' ? 1 : -1;
    } else {
        return AP_EINVAL;
    }
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 59)
        return AP_EINVAL;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= (int64_t)sign * (oh * 3600 + om * 60);
    *out = t;
    return AP_OK;
}

size_t ap_schema_time_format(int64_t t, char *out)
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t rem = t - days * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    int n = snprintf(out, AP_SCHEMA_TIME_MAX, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)y, m,
                     d, (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60));
    return n > 0 ? (size_t)n : 0;
}

/* ---- value checking ------------------------------------------------------------------------- */

/* Nesting depth of a value (1 for a scalar). */
static int json_depth(const json_t *v)
{
    int d = 0;
    size_t i;
    const char *k;
    json_t *it;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, it) {
            int x = json_depth(it);
            d = x > d ? x : d;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, it) {
            int x = json_depth(it);
            d = x > d ? x : d;
        }
    } else {
        return 1;
    }
    return d + 1;
}

static const char *type_name(enum ap_schema_type t)
{
    switch (t) {
    case AP_SCHEMA_STRING:
    case AP_SCHEMA_ENUM:
    case AP_SCHEMA_TIMESTAMP:
        return "a string";
    case AP_SCHEMA_INT:
    case AP_SCHEMA_MONEY:
    case AP_SCHEMA_REF:
        return "an integer";
    case AP_SCHEMA_BOOL:
        return "a boolean";
    case AP_SCHEMA_JSON_OBJECT:
        return "an object";
    case AP_SCHEMA_JSON_ARRAY:
        return "an array";
    case AP_SCHEMA_PPM_DECIMAL:
        return "a number";
    }
    return "a value";
}

int ap_schema_check_value(const struct ap_schema_field *f, const char *path, const json_t *v,
                          json_t **norm, struct ap_schema_errors *e)
{
    size_t t0 = e->total;
    char buf[AP_SCHEMA_MESSAGE_MAX - 16];
    *norm = NULL;
    if (json_is_null(v)) {
        if (!(f->flags & AP_SCHEMA_F_NULLABLE)) {
            ADD(e, path, "must not be null");
            return AP_EINVAL;
        }
        *norm = json_null();
        return AP_OK;
    }
    bool type_ok;
    switch (f->type) {
    case AP_SCHEMA_STRING:
    case AP_SCHEMA_ENUM:
    case AP_SCHEMA_TIMESTAMP:
        type_ok = json_is_string(v);
        break;
    case AP_SCHEMA_INT:
    case AP_SCHEMA_MONEY:
    case AP_SCHEMA_REF:
        type_ok = json_is_integer(v);
        break;
    case AP_SCHEMA_BOOL:
        type_ok = json_is_boolean(v);
        break;
    case AP_SCHEMA_JSON_OBJECT:
        type_ok = json_is_object(v);
        break;
    case AP_SCHEMA_JSON_ARRAY:
        type_ok = json_is_array(v);
        break;
    case AP_SCHEMA_PPM_DECIMAL:
        type_ok = json_is_number(v);
        break;
    default:
        type_ok = false;
    }
    if (!type_ok) {
        ADD(e, path, "must be %s", type_name(f->type));
        return AP_EINVAL;
    }

    switch (f->type) {
    case AP_SCHEMA_STRING: {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        size_t max = f->max ? (size_t)f->max : DEFAULT_STRING_MAX;
        if (strlen(s) != n)
            ADD(e, path, "must not contain NUL characters");
        else if (has_control(s, n, f->flags & AP_SCHEMA_F_MULTILINE))
            ADD(e, path, "must not contain control characters");
        else if (n < (size_t)f->min || n > max)
            ADD(e, path, "must be %lld..%zu bytes long", (long long)f->min, max);
        break;
    }
    case AP_SCHEMA_ENUM:
        if (!in_list(json_string_value(v), f->values))
            ADD(e, path, "must be one of: %s", list_text(f->values, buf, sizeof(buf)));
        break;
    case AP_SCHEMA_INT:
    case AP_SCHEMA_MONEY: {
        json_int_t x = json_integer_value(v);
        if ((f->min || f->max) && (x < f->min || x > f->max))
            ADD(e, path, "must be %lld..%lld", (long long)f->min, (long long)f->max);
        break;
    }
    case AP_SCHEMA_REF:
        if (json_integer_value(v) <= 0)
            ADD(e, path, "must be a positive id");
        break;
    case AP_SCHEMA_TIMESTAMP: {
        int64_t t;
        char out[AP_SCHEMA_TIME_MAX];
        if (ap_schema_time_parse(json_string_value(v), &t) != AP_OK) {
            ADD(e, path, "must be an RFC 3339 date-time, e.g. 2024-01-31T00:00:00Z");
            break;
        }
        ap_schema_time_format(t, out);
        *norm = json_string(out);
        if (!*norm)
            return AP_ENOMEM;
        break;
    }
    case AP_SCHEMA_PPM_DECIMAL: {
        double x = json_number_value(v) * 1e6;
        if (!isfinite(x) || x < (double)f->min || x > (double)f->max) {
            ADD(e, path, "must be a number %g..%g", (double)f->min / 1e6, (double)f->max / 1e6);
            break;
        }
        *norm = json_real((double)llround(x) / 1e6);
        if (!*norm)
            return AP_ENOMEM;
        break;
    }
    case AP_SCHEMA_JSON_ARRAY:
    case AP_SCHEMA_JSON_OBJECT:
        if (f->type == AP_SCHEMA_JSON_ARRAY && f->max && json_array_size(v) > (size_t)f->max)
            ADD(e, path, "must have at most %lld items", (long long)f->max);
        else if (json_depth(v) > AP_SCHEMA_JSON_DEPTH)
            ADD(e, path, "must not nest deeper than %d levels", AP_SCHEMA_JSON_DEPTH);
        break;
    default:
        break;
    }
    if (e->total == t0 && f->validate)
        f->validate(path, v, e);
    if (e->total != t0) {
        json_decref(*norm);
        *norm = NULL;
        return AP_EINVAL;
    }
    if (!*norm)
        *norm = json_incref((json_t *)v);
    return AP_OK;
}

/* Reports body keys that are system fields or not in r. */
static void check_keys(const struct ap_schema_resource *r, const json_t *body,
                       struct ap_schema_errors *e)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val) {
        if (ap_schema_is_system_field(key))
            ADD(e, key, "is read-only");
        else if (!ap_schema_field(r, key))
            ADD(e, key, "unknown field");
    }
}

static int default_value(const struct ap_schema_field *f, json_t **out)
{
    if (!f->def) {
        *out = json_null();
        return AP_OK;
    }
    json_error_t err;
    *out = json_loads(f->def, JSON_DECODE_ANY, &err);
    return *out ? AP_OK : AP_ENOMEM; /* the defaults are tested: failure = memory */
}

int ap_schema_validate_create(const struct ap_schema_resource *r, const json_t *fields,
                              json_t **row_out, struct ap_schema_errors *e)
{
    int rc = AP_OK;
    size_t t0 = e->total;
    json_t *row = NULL;
    *row_out = NULL;
    if (!json_is_object(fields)) {
        ADD(e, "", "the request body must be a JSON object");
        return AP_EINVAL;
    }
    check_keys(r, fields, e);
    row = json_object();
    if (!row)
        return AP_ENOMEM;
    for (size_t i = 0; i < r->nfields; i++) {
        const struct ap_schema_field *f = &r->fields[i];
        json_t *v = json_object_get(fields, f->name);
        json_t *norm = NULL;
        if (!v) {
            if (f->flags & AP_SCHEMA_F_REQUIRED) {
                ADD(e, f->name, "is required");
                continue;
            }
            rc = default_value(f, &norm);
        } else {
            rc = ap_schema_check_value(f, f->name, v, &norm, e);
            if (rc == AP_EINVAL) {
                rc = AP_OK;
                continue;
            }
        }
        if (rc)
            goto fail;
        if (json_object_set_new(row, f->name, norm)) {
            rc = AP_ENOMEM;
            goto fail;
        }
    }
    if (e->total == t0 && r->check)
        r->check(row, e);
    if (e->total != t0) {
        rc = AP_EINVAL;
        goto fail;
    }
    *row_out = row;
    return AP_OK;
fail:
    json_decref(row);
    return rc;
}

int ap_schema_validate_patch(const struct ap_schema_resource *r, const json_t *current,
                             const json_t *patch, json_t **row_out, struct ap_schema_errors *e)
{
    int rc = AP_OK;
    size_t t0 = e->total;
    json_t *row = NULL;
    *row_out = NULL;
    if (!json_is_object(patch)) {
        ADD(e, "", "the request body must be a JSON object");
        return AP_EINVAL;
    }
    row = json_object();
    if (!row)
        return AP_ENOMEM;
    for (size_t i = 0; i < r->nfields; i++) {
        json_t *cur = json_object_get(current, r->fields[i].name);
        if (json_object_set(row, r->fields[i].name, cur ? cur : json_null())) {
            rc = AP_ENOMEM;
            goto fail;
        }
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)patch, key, val) {
        const struct ap_schema_field *f = ap_schema_field(r, key);
        json_t *norm = NULL;
        if (ap_schema_is_system_field(key)) {
            ADD(e, key, "is read-only");
            continue;
        }
        if (!f) {
            ADD(e, key, "unknown field");
            continue;
        }
        rc = ap_schema_check_value(f, key, val, &norm, e);
        if (rc == AP_EINVAL) {
            rc = AP_OK;
            continue;
        }
        if (rc)
            goto fail;
        if ((f->flags & AP_SCHEMA_F_IMMUTABLE) && !json_equal(norm, json_object_get(row, key))) {
            ADD(e, key, "cannot be changed after create");
            json_decref(norm);
            continue;
        }
        if (json_object_set_new(row, key, norm)) {
            rc = AP_ENOMEM;
            goto fail;
        }
    }
    if (e->total == t0 && r->check)
        r->check(row, e);
    if (e->total != t0) {
        rc = AP_EINVAL;
        goto fail;
    }
    *row_out = row;
    return AP_OK;
fail:
    json_decref(row);
    return rc;
}

/* ---- database form ------------------------------------------------------------------------ */

void ap_schema_dbval_free(struct ap_schema_dbval *v)
{
    if (v->owned)
        free((void *)v->text);
    v->text = NULL;
    v->owned = false;
    v->kind = AP_SCHEMA_DB_NULL;
}

int ap_schema_to_db(const struct ap_schema_field *f, const json_t *v, struct ap_schema_dbval *out)
{
    *out = (struct ap_schema_dbval){.kind = AP_SCHEMA_DB_NULL};
    if (!v || json_is_null(v))
        return AP_OK;
    switch (f->type) {
    case AP_SCHEMA_STRING:
    case AP_SCHEMA_ENUM:
        if (!json_is_string(v))
            return AP_EINVAL;
        out->kind = AP_SCHEMA_DB_TEXT;
        out->text = json_string_value(v);
        out->len = json_string_length(v);
        return AP_OK;
    case AP_SCHEMA_INT:
    case AP_SCHEMA_MONEY:
    case AP_SCHEMA_REF:
        if (!json_is_integer(v))
            return AP_EINVAL;
        out->kind = AP_SCHEMA_DB_INT;
        out->i = json_integer_value(v);
        return AP_OK;
    case AP_SCHEMA_BOOL:
        if (!json_is_boolean(v))
            return AP_EINVAL;
        out->kind = AP_SCHEMA_DB_INT;
        out->i = json_is_true(v);
        return AP_OK;
    case AP_SCHEMA_TIMESTAMP:
        if (!json_is_string(v) || ap_schema_time_parse(json_string_value(v), &out->i) != AP_OK)
            return AP_EINVAL;
        out->kind = AP_SCHEMA_DB_INT;
        return AP_OK;
    case AP_SCHEMA_PPM_DECIMAL:
        if (!json_is_number(v))
            return AP_EINVAL;
        out->kind = AP_SCHEMA_DB_INT;
        out->i = llround(json_number_value(v) * 1e6);
        return AP_OK;
    case AP_SCHEMA_JSON_OBJECT:
    case AP_SCHEMA_JSON_ARRAY: {
        if (f->type == AP_SCHEMA_JSON_OBJECT ? !json_is_object(v) : !json_is_array(v))
            return AP_EINVAL;
        char *text = ap_schema_json_dump(v);
        if (!text)
            return AP_ENOMEM;
        out->kind = AP_SCHEMA_DB_TEXT;
        out->text = text;
        out->len = strlen(text);
        out->owned = true;
        return AP_OK;
    }
    }
    return AP_EINVAL;
}

int ap_schema_from_db(const struct ap_schema_field *f, const struct ap_schema_dbval *in,
                      json_t **out)
{
    *out = NULL;
    if (in->kind == AP_SCHEMA_DB_NULL) {
        *out = json_null();
        return AP_OK;
    }
    bool want_text = f->type == AP_SCHEMA_STRING || f->type == AP_SCHEMA_ENUM ||
                     f->type == AP_SCHEMA_JSON_OBJECT || f->type == AP_SCHEMA_JSON_ARRAY;
    if (want_text != (in->kind == AP_SCHEMA_DB_TEXT))
        return AP_ECORRUPT;
    switch (f->type) {
    case AP_SCHEMA_STRING:
    case AP_SCHEMA_ENUM:
        *out = json_stringn(in->text, in->len);
        break;
    case AP_SCHEMA_INT:
    case AP_SCHEMA_MONEY:
    case AP_SCHEMA_REF:
        *out = json_integer(in->i);
        break;
    case AP_SCHEMA_BOOL:
        *out = json_boolean(in->i != 0);
        break;
    case AP_SCHEMA_TIMESTAMP: {
        char buf[AP_SCHEMA_TIME_MAX];
        ap_schema_time_format(in->i, buf);
        *out = json_string(buf);
        break;
    }
    case AP_SCHEMA_PPM_DECIMAL:
        *out = json_real((double)in->i / 1e6);
        break;
    case AP_SCHEMA_JSON_OBJECT:
    case AP_SCHEMA_JSON_ARRAY: {
        int rc = ap_schema_json_parse(in->text, in->len, out);
        if (rc)
            return rc;
        if (f->type == AP_SCHEMA_JSON_OBJECT ? !json_is_object(*out) : !json_is_array(*out)) {
            json_decref(*out);
            *out = NULL;
            return AP_ECORRUPT;
        }
        break;
    }
    }
    return *out ? AP_OK : AP_ENOMEM;
}

/* ---- reading stored JSON ------------------------------------------------------------------
 * A strict RFC 8259 parser that builds jansson values. Not json_loadb: under allocation failure
 * jansson 2.14's lexer reports syntax errors or even reaches assert(0) (lex_scan_string), while
 * its value constructors used here fail cleanly with NULL. */

#define JSON_PARSE_DEPTH 64 /* ap_schema_check_value admits at most AP_SCHEMA_JSON_DEPTH */

struct jp {
    const char *p, *end;
};

static void jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static int hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = is_digit(c) ? (unsigned)(c - '0')
                     : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                     : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10)
                                              : 16u;
        if (d > 15)
            return AP_ECORRUPT;
        v = v * 16 + d;
    }
    *out = v;
    return AP_OK;
}

/* At the opening quote: *out = malloc'ed unescaped bytes (valid UTF-8), *n = their length. */
static int jp_string(struct jp *j, char **out, size_t *n)
{
    const char *start = ++j->p, *q = start;
    while (q < j->end && *q != '"') {
        if ((unsigned char)*q < 0x20)
            return AP_ECORRUPT;
        q += *q == '\\' ? 2 : 1;
    }
    if (q >= j->end)
        return AP_ECORRUPT;
    char *buf = malloc((size_t)(q - start) + 1), *w = buf;
    if (!buf)
        return AP_ENOMEM;
    for (const char *p = start; p < q;) {
        if (*p != '\\') {
            *w++ = *p++;
            continue;
        }
        char c = p[1];
        p += 2;
        const char *esc = strchr("\"\\/bfnrt", c);
        if (c && esc) {
            *w++ = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            continue;
        }
        uint32_t cp, lo;
        if (c != 'u' || q - p < 4 || hex4(p, &cp))
            goto corrupt;
        p += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            goto corrupt;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (q - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xdc00 ||
                lo > 0xdfff)
                goto corrupt;
            p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xc0 | (cp >> 6));
            *w++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xe0 | (cp >> 12));
            *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *w++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *w++ = (char)(0xf0 | (cp >> 18));
            *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
            *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *w++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *n = (size_t)(w - buf);
    *w = '\0';
    if (!utf8_valid((const unsigned char *)buf, *n))
        goto corrupt;
    j->p = q + 1;
    *out = buf;
    return AP_OK;
corrupt:
    free(buf);
    return AP_ECORRUPT;
}

static int jp_number(struct jp *j, json_t **out)
{
    const char *s = j->p, *p = s;
    bool real = false;
    if (p < j->end && *p == '-')
        p++;
    const char *d = p;
    while (p < j->end && is_digit(*p))
        p++;
    if (p == d || (*d == '0' && p - d > 1))
        return AP_ECORRUPT;
    if (p < j->end && *p == '.') {
        d = ++p;
        while (p < j->end && is_digit(*p))
            p++;
        if (p == d)
            return AP_ECORRUPT;
        real = true;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        d = p;
        while (p < j->end && is_digit(*p))
            p++;
        if (p == d)
            return AP_ECORRUPT;
        real = true;
    }
    char buf[64];
    if ((size_t)(p - s) >= sizeof(buf))
        return AP_ECORRUPT;
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = '\0';
    j->p = p;
    if (real) {
        double v = strtod(buf, NULL);
        if (!isfinite(v))
            return AP_ECORRUPT;
        *out = json_real(v);
    } else {
        bool neg = buf[0] == '-';
        uint64_t v = 0;
        for (const char *c = buf + neg; *c; c++) {
            if (v > (UINT64_C(9223372036854775808) - (uint64_t)(*c - '0')) / 10)
                return AP_ECORRUPT;
            v = v * 10 + (uint64_t)(*c - '0');
        }
        if (v > (uint64_t)INT64_MAX + neg)
            return AP_ECORRUPT;
        *out = json_integer(neg ? (json_int_t)(0 - v) : (json_int_t)v);
    }
    return *out ? AP_OK : AP_ENOMEM;
}

static int jp_value(struct jp *j, int depth, json_t **out)
{
    int rc;
    *out = NULL;
    jp_ws(j);
    if (j->p >= j->end)
        return AP_ECORRUPT;
    char c = *j->p;
    if (c == '{' || c == '[') {
        bool object = c == '{';
        char close = object ? '}' : ']';
        if (depth >= JSON_PARSE_DEPTH)
            return AP_ECORRUPT;
        json_t *v = object ? json_object() : json_array();
        if (!v)
            return AP_ENOMEM;
        j->p++;
        jp_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            *out = v;
            return AP_OK;
        }
        for (;;) {
            char *key = NULL;
            size_t klen = 0;
            json_t *item = NULL;
            if (object) {
                jp_ws(j);
                if (j->p >= j->end || *j->p != '"') {
                    rc = AP_ECORRUPT;
                    goto fail;
                }
                if ((rc = jp_string(j, &key, &klen)))
                    goto fail;
                jp_ws(j);
                /* a repeated member name is refused, like JSON_REJECT_DUPLICATES */
                if (j->p >= j->end || *j->p != ':' || json_object_getn(v, key, klen)) {
                    free(key);
                    rc = AP_ECORRUPT;
                    goto fail;
                }
                j->p++;
            }
            rc = jp_value(j, depth + 1, &item);
            if (rc == AP_OK && (object ? json_object_setn_new_nocheck(v, key, klen, item)
                                       : json_array_append_new(v, item)))
                rc = AP_ENOMEM; /* the *_new calls free item on failure */
            free(key);
            if (rc)
                goto fail;
            jp_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                *out = v;
                return AP_OK;
            }
            rc = AP_ECORRUPT;
            goto fail;
        }
    fail:
        json_decref(v);
        return rc;
    }
    if (c == '"') {
        char *str;
        size_t n;
        if ((rc = jp_string(j, &str, &n)))
            return rc;
        *out = json_stringn_nocheck(str, n);
        free(str);
        return *out ? AP_OK : AP_ENOMEM;
    }
    static const char *const literals[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(literals[i]);
        if ((size_t)(j->end - j->p) >= n && memcmp(j->p, literals[i], n) == 0) {
            j->p += n;
            *out = i == 0 ? json_true() : i == 1 ? json_false() : json_null();
            return AP_OK;
        }
    }
    return jp_number(j, out);
}

char *ap_schema_json_dump(const json_t *v)
{
    size_t need = json_dumpb(v, NULL, 0, JSON_COMPACT);
    if (need == 0)
        return NULL;
    char *text = malloc(need + 1);
    if (!text)
        return NULL;
    if (json_dumpb(v, text, need, JSON_COMPACT) != need) {
        free(text);
        return NULL;
    }
    text[need] = '\0';
    return text;
}

int ap_schema_json_parse(const char *text, size_t len, json_t **out)
{
    struct jp j = {text, text + len};
    *out = NULL;
    jp_ws(&j);
    if (j.p >= j.end || (*j.p != '{' && *j.p != '['))
        return AP_ECORRUPT;
    int rc = jp_value(&j, 0, out);
    jp_ws(&j);
    if (rc == AP_OK && j.p != j.end)
        rc = AP_ECORRUPT;
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int ap_schema_filter_value(const struct ap_schema_resource *r, const char *field,
                           const char *value, struct ap_schema_dbval *out,
                           struct ap_schema_errors *e)
{
    const struct ap_schema_field *f = ap_schema_field(r, field);
    *out = (struct ap_schema_dbval){.kind = AP_SCHEMA_DB_NULL};
    if (!f || !(f->flags & AP_SCHEMA_F_FILTER)) {
        ADD(e, field, "is not a filter of %s", r->path);
        return AP_EINVAL;
    }
    char buf[AP_SCHEMA_MESSAGE_MAX - 16];
    switch (f->type) {
    case AP_SCHEMA_REF:
    case AP_SCHEMA_INT: {
        uint64_t v = 0;
        size_t n = strlen(value);
        bool ok = n > 0 && n <= 19;
        for (size_t i = 0; ok && i < n; i++) {
            ok = is_digit(value[i]);
            v = v * 10 + (uint64_t)(value[i] - '0');
        }
        if (!ok) {
            ADD(e, field, "must be a non-negative integer");
            return AP_EINVAL;
        }
        out->kind = AP_SCHEMA_DB_INT;
        out->i = (int64_t)v;
        return AP_OK;
    }
    case AP_SCHEMA_ENUM:
        if (!in_list(value, f->values)) {
            ADD(e, field, "must be one of: %s", list_text(f->values, buf, sizeof(buf)));
            return AP_EINVAL;
        }
        break;
    case AP_SCHEMA_BOOL:
        out->kind = AP_SCHEMA_DB_INT;
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
            out->i = 1;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
            out->i = 0;
        else {
            ADD(e, field, "must be true or false");
            return AP_EINVAL;
        }
        return AP_OK;
    case AP_SCHEMA_STRING:
        if (strlen(value) > (f->max ? (size_t)f->max : DEFAULT_STRING_MAX)) {
            ADD(e, field, "is too long");
            return AP_EINVAL;
        }
        break;
    default:
        ADD(e, field, "is not a filter of %s", r->path);
        return AP_EINVAL;
    }
    out->kind = AP_SCHEMA_DB_TEXT;
    out->text = value;
    out->len = strlen(value);
    return AP_OK;
}
