/*
 * ap_ortb: tokenizer, table-driven parser and writer for the OpenRTB 2.6 model (ap_ortb.h).
 *
 * Each model struct has a field table (name, kind, offset); the parser walks an object's
 * members, looks each key up in its table and stores the value at the offset; the writer walks
 * the same table. A key not in the table is kept as a raw key/value pair and written back as it
 * came. Escaped strings are decoded into the arena; everything else is a span into the body.
 */
#include "ap_ortb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"

/* ---- tokenizer ------------------------------------------------------------------------------ */

struct tz {
    const char *s;
    size_t len, i;
    struct ap_ortb_tok *t;
    uint32_t n, cap;
    char *msg;
    size_t msgcap;
};

static int tz_err(struct tz *z, const char *what)
{
    if (z->msg && z->msgcap)
        snprintf(z->msg, z->msgcap, "%s at offset %zu", what, z->i);
    return AP_EINVAL;
}

static void tz_ws(struct tz *z)
{
    while (z->i < z->len) {
        char c = z->s[z->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        z->i++;
    }
}

static int tz_push(struct tz *z, uint8_t type, uint32_t *idx)
{
    if (z->n >= z->cap)
        return AP_ELIMIT;
    struct ap_ortb_tok *t = &z->t[z->n];
    t->start = (uint32_t)z->i;
    t->end = t->start;
    t->next = z->n + 1;
    t->type = type;
    t->esc = 0;
    t->pad = 0;
    *idx = z->n++;
    return AP_OK;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int tz_string(struct tz *z)
{
    uint32_t k;
    int rc = tz_push(z, AP_ORTB_T_STR, &k);
    if (rc)
        return rc;
    z->i++; /* opening quote */
    for (;;) {
        if (z->i >= z->len)
            return tz_err(z, "unterminated string");
        unsigned char c = (unsigned char)z->s[z->i];
        if (c == '"')
            break;
        if (c < 0x20)
            return tz_err(z, "control character in string");
        if (c == '\\') {
            z->t[k].esc = 1;
            if (z->i + 1 >= z->len)
                return tz_err(z, "unterminated string");
            char e = z->s[z->i + 1];
            if (e == 'u') {
                if (z->i + 5 >= z->len || !is_hex(z->s[z->i + 2]) || !is_hex(z->s[z->i + 3]) ||
                    !is_hex(z->s[z->i + 4]) || !is_hex(z->s[z->i + 5]))
                    return tz_err(z, "bad \\u escape");
                z->i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0')
                return tz_err(z, "bad escape");
            z->i += 2;
            continue;
        }
        z->i++;
    }
    z->i++; /* closing quote */
    z->t[k].end = (uint32_t)z->i;
    return AP_OK;
}

static int tz_number(struct tz *z)
{
    uint32_t k;
    int rc = tz_push(z, AP_ORTB_T_NUM, &k);
    if (rc)
        return rc;
    size_t i = z->i;
    const char *s = z->s;
    if (i < z->len && s[i] == '-')
        i++;
    if (i >= z->len || s[i] < '0' || s[i] > '9')
        return tz_err(z, "bad number");
    if (s[i] == '0') {
        i++;
    } else {
        while (i < z->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < z->len && s[i] == '.') {
        i++;
        if (i >= z->len || s[i] < '0' || s[i] > '9')
            return tz_err(z, "bad number");
        while (i < z->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < z->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < z->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= z->len || s[i] < '0' || s[i] > '9')
            return tz_err(z, "bad number");
        while (i < z->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    z->i = i;
    z->t[k].end = (uint32_t)i;
    return AP_OK;
}

static int tz_literal(struct tz *z, const char *lit, uint8_t type)
{
    size_t n = strlen(lit);
    if (z->len - z->i < n || memcmp(z->s + z->i, lit, n) != 0)
        return tz_err(z, "invalid literal");
    uint32_t k;
    int rc = tz_push(z, type, &k);
    if (rc)
        return rc;
    z->i += n;
    z->t[k].end = (uint32_t)z->i;
    return AP_OK;
}

/* Iterative: a stack of open containers (index, whether the next item needs a comma). */
static int tz_value(struct tz *z)
{
    uint32_t stack[AP_ORTB_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        /* one value */
        tz_ws(z);
        if (z->i >= z->len)
            return tz_err(z, "unexpected end of input");
        char c = z->s[z->i];
        int rc = AP_OK;
        bool opened = false;
        if (c == '{' || c == '[') {
            if (depth >= AP_ORTB_MAX_DEPTH)
                return tz_err(z, "nesting too deep"), AP_ELIMIT;
            uint32_t k;
            rc = tz_push(z, c == '{' ? AP_ORTB_T_OBJ : AP_ORTB_T_ARR, &k);
            if (rc)
                return rc;
            z->i++;
            stack[depth++] = k;
            opened = true;
        } else if (c == '"') {
            rc = tz_string(z);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            rc = tz_number(z);
        } else if (c == 't') {
            rc = tz_literal(z, "true", AP_ORTB_T_TRUE);
        } else if (c == 'f') {
            rc = tz_literal(z, "false", AP_ORTB_T_FALSE);
        } else if (c == 'n') {
            rc = tz_literal(z, "null", AP_ORTB_T_NULL);
        } else {
            return tz_err(z, "unexpected character");
        }
        if (rc)
            return rc;
        /* after a value (or right after an opening bracket): close containers or continue */
        bool first = opened;
        for (;;) {
            if (depth == 0)
                return AP_OK;
            struct ap_ortb_tok *ct = &z->t[stack[depth - 1]];
            bool is_obj = ct->type == AP_ORTB_T_OBJ;
            tz_ws(z);
            if (z->i >= z->len)
                return tz_err(z, "unexpected end of input");
            char d = z->s[z->i];
            if (d == (is_obj ? '}' : ']')) {
                z->i++;
                ct->end = (uint32_t)z->i;
                ct->next = z->n;
                depth--;
                first = false;
                continue;
            }
            if (!first) {
                if (d != ',')
                    return tz_err(z, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
                z->i++;
                tz_ws(z);
            }
            if (is_obj) {
                if (z->i >= z->len || z->s[z->i] != '"')
                    return tz_err(z, "expected a member name");
                rc = tz_string(z);
                if (rc)
                    return rc;
                tz_ws(z);
                if (z->i >= z->len || z->s[z->i] != ':')
                    return tz_err(z, "expected ':'");
                z->i++;
            }
            break; /* parse the next value */
        }
    }
}

int ap_ortb_tokenize(const char *json, size_t len, struct ap_arena *a, struct ap_ortb_tok **toks,
                     uint32_t *ntoks, char *msg, size_t msgcap)
{
    if (msg && msgcap)
        msg[0] = '\0';
    if (len > UINT32_MAX - 1)
        return AP_ELIMIT;
    size_t cap = len / 2 + 2;
    if (cap > AP_ORTB_MAX_TOKENS)
        cap = AP_ORTB_MAX_TOKENS;
    struct tz z = {json, len, 0, NULL, 0, (uint32_t)cap, msg, msgcap};
    z.t = ap_arena_alloc(a, sizeof(*z.t) * cap);
    if (!z.t)
        return AP_ENOMEM;
    int rc = tz_value(&z);
    if (rc == AP_ELIMIT && msg && msgcap && !msg[0])
        snprintf(msg, msgcap, "too many JSON values");
    if (rc)
        return rc;
    tz_ws(&z);
    if (z.i != len)
        return tz_err(&z, "trailing characters after the JSON value");
    *toks = z.t;
    *ntoks = z.n;
    return AP_OK;
}

/* ---- field tables --------------------------------------------------------------------------- */

enum kind { K_STR, K_INT, K_BOOL, K_DBL, K_RAW, K_OBJ, K_OBJARR, K_STRARR, K_INTARR };

struct odesc;
struct fdesc {
    const char *name;
    uint8_t kind;
    uint16_t off, off2; /* off2: the count of an array */
    const struct odesc *sub;
};
struct odesc {
    size_t size;
    const struct fdesc *f;
    uint32_t n;
};

#define S(T, f) {#f, K_STR, offsetof(T, f), 0, NULL}
#define I(T, f) {#f, K_INT, offsetof(T, f), 0, NULL}
#define B(T, f) {#f, K_BOOL, offsetof(T, f), 0, NULL}
#define D(T, f) {#f, K_DBL, offsetof(T, f), 0, NULL}
#define R(T, f) {#f, K_RAW, offsetof(T, f), 0, NULL}
#define O(T, f, d) {#f, K_OBJ, offsetof(T, f), 0, &d}
#define OA(T, f, d) {#f, K_OBJARR, offsetof(T, f), offsetof(T, n##f), &d}
#define SA(T, f) {#f, K_STRARR, offsetof(T, f), offsetof(T, n##f), NULL}
#define IA(T, f) {#f, K_INTARR, offsetof(T, f), offsetof(T, n##f), NULL}
#define DESC(name, T, fields)                                                                      \
    static const struct odesc name = {sizeof(T), fields, sizeof(fields) / sizeof(fields[0])}

#define T struct ap_ortb_format
static const struct fdesc F_FORMAT[] = {I(T, w), I(T, h), I(T, wratio), I(T, hratio), I(T, wmin),
                                        R(T, ext)};
#undef T
DESC(D_FORMAT, struct ap_ortb_format, F_FORMAT);

#define T struct ap_ortb_banner
static const struct fdesc F_BANNER[] = {
    OA(T, format, D_FORMAT), I(T, w), I(T, h), I(T, wmax), I(T, hmax), I(T, wmin), I(T, hmin),
    IA(T, btype), IA(T, battr), I(T, pos), SA(T, mimes), I(T, topframe), IA(T, expdir),
    IA(T, api), S(T, id), I(T, vcm), R(T, ext)};
#undef T
DESC(D_BANNER, struct ap_ortb_banner, F_BANNER);

#define T struct ap_ortb_video
static const struct fdesc F_VIDEO[] = {
    SA(T, mimes), I(T, minduration), I(T, maxduration), IA(T, protocols), I(T, w), I(T, h),
    I(T, startdelay), I(T, plcmt), I(T, placement), I(T, linearity), I(T, skip),
    I(T, minbitrate), I(T, maxbitrate), IA(T, battr), IA(T, api), R(T, ext)};
#undef T
DESC(D_VIDEO, struct ap_ortb_video, F_VIDEO);

#define T struct ap_ortb_audio
static const struct fdesc F_AUDIO[] = {
    SA(T, mimes), I(T, minduration), I(T, maxduration), IA(T, protocols), I(T, startdelay),
    I(T, sequence), I(T, maxseq), I(T, minbitrate), I(T, maxbitrate), IA(T, battr), IA(T, api),
    R(T, ext)};
#undef T
DESC(D_AUDIO, struct ap_ortb_audio, F_AUDIO);

#define T struct ap_ortb_native
static const struct fdesc F_NATIVE[] = {S(T, request), S(T, ver), IA(T, api), IA(T, battr),
                                        R(T, ext)};
#undef T
DESC(D_NATIVE, struct ap_ortb_native, F_NATIVE);

#define T struct ap_ortb_deal
static const struct fdesc F_DEAL[] = {S(T, id),    D(T, bidfloor),     S(T, bidfloorcur),
                                      I(T, at),    SA(T, wseat),       SA(T, wadomain),
                                      R(T, ext)};
#undef T
DESC(D_DEAL, struct ap_ortb_deal, F_DEAL);

#define T struct ap_ortb_pmp
static const struct fdesc F_PMP[] = {I(T, private_auction), OA(T, deals, D_DEAL), R(T, ext)};
#undef T
DESC(D_PMP, struct ap_ortb_pmp, F_PMP);

static const struct fdesc F_NONE[] = {{NULL, 0, 0, 0, NULL}};
static const struct odesc D_BIDDERS = {sizeof(struct ap_ortb_bidders), F_NONE, 0};

#define T struct ap_ortb_stored
static const struct fdesc F_STORED[] = {S(T, id)};
#undef T
DESC(D_STORED, struct ap_ortb_stored, F_STORED);

#define T struct ap_ortb_imp_ext_prebid
static const struct fdesc F_IMPEXTPB[] = {O(T, bidder, D_BIDDERS),
                                          O(T, storedrequest, D_STORED)};
#undef T
DESC(D_IMPEXTPB, struct ap_ortb_imp_ext_prebid, F_IMPEXTPB);

#define T struct ap_ortb_imp_ext
static const struct fdesc F_IMPEXT[] = {O(T, prebid, D_IMPEXTPB), S(T, gpid), S(T, tid)};
#undef T
DESC(D_IMPEXT, struct ap_ortb_imp_ext, F_IMPEXT);

#define T struct ap_ortb_imp
static const struct fdesc F_IMP[] = {
    S(T, id), R(T, metric), O(T, banner, D_BANNER), O(T, video, D_VIDEO), O(T, audio, D_AUDIO),
    O(T, native, D_NATIVE), O(T, pmp, D_PMP), S(T, displaymanager), S(T, displaymanagerver),
    I(T, instl), S(T, tagid), D(T, bidfloor), S(T, bidfloorcur), I(T, clickbrowser),
    I(T, secure), SA(T, iframebuster), I(T, exp), I(T, rwdd), O(T, ext, D_IMPEXT)};
#undef T
DESC(D_IMP, struct ap_ortb_imp, F_IMP);

#define T struct ap_ortb_publisher
static const struct fdesc F_PUB[] = {S(T, id), S(T, name), SA(T, cat), S(T, domain), R(T, ext)};
#undef T
DESC(D_PUB, struct ap_ortb_publisher, F_PUB);

#define T struct ap_ortb_site
static const struct fdesc F_SITE[] = {
    S(T, id), S(T, name), S(T, domain), SA(T, cat), SA(T, sectioncat), SA(T, pagecat),
    S(T, page), S(T, ref), S(T, search), I(T, mobile), I(T, privacypolicy),
    O(T, publisher, D_PUB), R(T, content), S(T, keywords), R(T, ext)};
static const struct fdesc F_APP[] = {
    S(T, id), S(T, name), S(T, bundle), S(T, domain), S(T, storeurl), SA(T, cat),
    SA(T, sectioncat), SA(T, pagecat), S(T, ver), I(T, privacypolicy), I(T, paid),
    O(T, publisher, D_PUB), R(T, content), S(T, keywords), R(T, ext)};
static const struct fdesc F_DOOH[] = {S(T, id),       S(T, name),     SA(T, venuetype),
                                      O(T, publisher, D_PUB),         S(T, domain),
                                      S(T, keywords), R(T, content),  R(T, ext)};
#undef T
DESC(D_SITE, struct ap_ortb_site, F_SITE);
DESC(D_APP, struct ap_ortb_site, F_APP);
DESC(D_DOOH, struct ap_ortb_site, F_DOOH);

#define T struct ap_ortb_geo
static const struct fdesc F_GEO[] = {
    D(T, lat), D(T, lon), I(T, type), I(T, accuracy), I(T, lastfix), I(T, ipservice),
    S(T, country), S(T, region), S(T, regionfips104), S(T, metro), S(T, city), S(T, zip),
    I(T, utcoffset), R(T, ext)};
#undef T
DESC(D_GEO, struct ap_ortb_geo, F_GEO);

#define T struct ap_ortb_device
static const struct fdesc F_DEVICE[] = {
    O(T, geo, D_GEO), I(T, dnt), I(T, lmt), S(T, ua), R(T, sua), S(T, ip), S(T, ipv6),
    I(T, devicetype), S(T, make), S(T, model), S(T, os), S(T, osv), S(T, hwv), I(T, h), I(T, w),
    I(T, ppi), D(T, pxratio), I(T, js), I(T, geofetch), S(T, flashver), S(T, language),
    S(T, langb), S(T, carrier), S(T, mccmnc), I(T, connectiontype), S(T, ifa), S(T, didsha1),
    S(T, didmd5), S(T, dpidsha1), S(T, dpidmd5), S(T, macsha1), S(T, macmd5), R(T, ext)};
#undef T
DESC(D_DEVICE, struct ap_ortb_device, F_DEVICE);

#define T struct ap_ortb_user_ext
static const struct fdesc F_USEREXT[] = {S(T, consent), R(T, eids)};
#undef T
DESC(D_USEREXT, struct ap_ortb_user_ext, F_USEREXT);

#define T struct ap_ortb_user
static const struct fdesc F_USER[] = {
    S(T, id), S(T, buyeruid), I(T, yob), S(T, gender), S(T, keywords), SA(T, kwarray),
    S(T, customdata), O(T, geo, D_GEO), R(T, data), S(T, consent), R(T, eids),
    O(T, ext, D_USEREXT)};
#undef T
DESC(D_USER, struct ap_ortb_user, F_USER);

#define T struct ap_ortb_source_ext
static const struct fdesc F_SOURCEEXT[] = {R(T, schain)};
#undef T
DESC(D_SOURCEEXT, struct ap_ortb_source_ext, F_SOURCEEXT);

#define T struct ap_ortb_source
static const struct fdesc F_SOURCE[] = {I(T, fd), S(T, tid), S(T, pchain), R(T, schain),
                                        O(T, ext, D_SOURCEEXT)};
#undef T
DESC(D_SOURCE, struct ap_ortb_source, F_SOURCE);

#define T struct ap_ortb_regs_ext
static const struct fdesc F_REGSEXT[] = {I(T, gdpr), S(T, us_privacy)};
#undef T
DESC(D_REGSEXT, struct ap_ortb_regs_ext, F_REGSEXT);

#define T struct ap_ortb_regs
static const struct fdesc F_REGS[] = {I(T, coppa), I(T, gdpr), S(T, us_privacy), S(T, gpp),
                                      IA(T, gpp_sid), O(T, ext, D_REGSEXT)};
#undef T
DESC(D_REGS, struct ap_ortb_regs, F_REGS);

#define T struct ap_ortb_targeting
static const struct fdesc F_TARGETING[] = {R(T, pricegranularity), B(T, includewinners),
                                           B(T, includebidderkeys), B(T, includeformat)};
#undef T
DESC(D_TARGETING, struct ap_ortb_targeting, F_TARGETING);

#define T struct ap_ortb_req_ext_prebid
static const struct fdesc F_REQEXTPB[] = {O(T, targeting, D_TARGETING), B(T, debug),
                                          R(T, bidadjustmentfactors), R(T, aliases),
                                          R(T, schains), R(T, channel)};
#undef T
DESC(D_REQEXTPB, struct ap_ortb_req_ext_prebid, F_REQEXTPB);

#define T struct ap_ortb_req_ext
static const struct fdesc F_REQEXT[] = {O(T, prebid, D_REQEXTPB), R(T, schain)};
#undef T
DESC(D_REQEXT, struct ap_ortb_req_ext, F_REQEXT);

#define T struct ap_ortb_request
static const struct fdesc F_REQUEST[] = {
    S(T, id), OA(T, imp, D_IMP), O(T, site, D_SITE), O(T, app, D_APP), O(T, dooh, D_DOOH),
    O(T, device, D_DEVICE), O(T, user, D_USER), I(T, test), I(T, at), I(T, tmax), SA(T, wseat),
    SA(T, bseat), I(T, allimps), SA(T, cur), SA(T, wlang), SA(T, wlangb), SA(T, bcat),
    I(T, cattax), SA(T, badv), SA(T, bapp), O(T, source, D_SOURCE), O(T, regs, D_REGS),
    O(T, ext, D_REQEXT)};
#undef T
DESC(D_REQUEST, struct ap_ortb_request, F_REQUEST);

#define T struct ap_ortb_bid
static const struct fdesc F_BID[] = {
    S(T, id), S(T, impid), D(T, price), S(T, nurl), S(T, burl), S(T, lurl), S(T, adm),
    S(T, adid), SA(T, adomain), S(T, bundle), S(T, iurl), S(T, cid), S(T, crid), S(T, tactic),
    I(T, cattax), SA(T, cat), IA(T, attr), IA(T, apis), I(T, api), I(T, protocol),
    I(T, qagmediarating), S(T, language), S(T, langb), S(T, dealid), I(T, w), I(T, h),
    I(T, wratio), I(T, hratio), I(T, exp), I(T, dur), I(T, mtype), I(T, slotinvideo),
    R(T, ext)};
#undef T
DESC(D_BID, struct ap_ortb_bid, F_BID);

#define T struct ap_ortb_seatbid
static const struct fdesc F_SEATBID[] = {OA(T, bid, D_BID), S(T, seat), I(T, group), R(T, ext)};
#undef T
DESC(D_SEATBID, struct ap_ortb_seatbid, F_SEATBID);

#define T struct ap_ortb_response
static const struct fdesc F_RESPONSE[] = {S(T, id),         OA(T, seatbid, D_SEATBID),
                                          S(T, bidid),      S(T, cur),
                                          S(T, customdata), I(T, nbr),
                                          R(T, ext)};
#undef T
DESC(D_RESPONSE, struct ap_ortb_response, F_RESPONSE);

/* ---- parser --------------------------------------------------------------------------------- */

#define PATH_MAX_LEN 200

struct pctx {
    const char *js;
    const struct ap_ortb_tok *t;
    struct ap_arena *a;
    char *msg;
    size_t msgcap;
    char path[PATH_MAX_LEN + 64];
    size_t plen;
};

static int perr(struct pctx *c, const char *what)
{
    if (c->msg && c->msgcap)
        snprintf(c->msg, c->msgcap, "%.*s %s", (int)c->plen, c->path, what);
    return AP_EINVAL;
}

/* Appends ".name" (name != NULL) or "[idx]" to the path; returns the old length. */
static size_t path_push(struct pctx *c, const char *name, uint32_t idx)
{
    size_t old = c->plen;
    if (c->plen < PATH_MAX_LEN) {
        size_t room = sizeof(c->path) - c->plen;
        int n = name ? snprintf(c->path + c->plen, room, ".%s", name)
                     : snprintf(c->path + c->plen, room, "[%u]", idx);
        if (n > 0)
            c->plen += (size_t)n < room ? (size_t)n : room - 1;
    }
    return old;
}

static int hexv(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The decoded text of a string token (tokenizer-validated escapes). */
static int str_value(struct pctx *c, const struct ap_ortb_tok *t, struct ap_span *out)
{
    const char *p = c->js + t->start + 1;
    size_t n = t->end - t->start - 2;
    if (!t->esc) {
        *out = ap_span_make(p, n);
        return AP_OK;
    }
    char *o = ap_arena_alloc(c->a, n + 1); /* decoding never grows the text */
    if (!o)
        return AP_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\') {
            o[k++] = p[i];
            continue;
        }
        char e = p[++i];
        switch (e) {
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)(hexv(p[i + 1]) << 12 | hexv(p[i + 2]) << 8 |
                                     hexv(p[i + 3]) << 4 | hexv(p[i + 4]));
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && p[i + 1] == '\\' && p[i + 2] == 'u') {
                uint32_t lo = (uint32_t)(hexv(p[i + 3]) << 12 | hexv(p[i + 4]) << 8 |
                                         hexv(p[i + 5]) << 4 | hexv(p[i + 6]));
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000)
                cp = 0xFFFD; /* lone surrogate */
            k += put_utf8(o + k, cp);
            break;
        }
        default: o[k++] = e; break; /* " \ / */
        }
    }
    o[k] = '\0';
    *out = ap_span_make(o, k);
    return AP_OK;
}

static bool int_value(const char *s, size_t n, int64_t *out)
{
    bool neg = n && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i >= n)
        return false;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (lim - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool dbl_value(const char *s, size_t n, double *out)
{
    char b[64];
    if (n >= sizeof(b))
        return false;
    memcpy(b, s, n);
    b[n] = '\0';
    char *end;
    double d = strtod(b, &end);
    if (end != b + n || !isfinite(d))
        return false;
    *out = d;
    return true;
}

static void init_obj(const struct odesc *d, void *obj)
{
    memset(obj, 0, d->size);
    for (uint32_t i = 0; i < d->n; i++) {
        char *p = (char *)obj + d->f[i].off;
        if (d->f[i].kind == K_INT || d->f[i].kind == K_BOOL) {
            int64_t v = AP_ORTB_UNSET;
            memcpy(p, &v, sizeof(v));
        } else if (d->f[i].kind == K_DBL) {
            double v = NAN;
            memcpy(p, &v, sizeof(v));
        }
    }
}

static int parse_obj(struct pctx *c, uint32_t ti, const struct odesc *d, void *obj);

static uint32_t count_children(const struct ap_ortb_tok *t, uint32_t ti)
{
    uint32_t n = 0;
    for (uint32_t i = ti + 1; i < t[ti].next; i = t[i].next)
        n++;
    return n;
}

static int parse_field(struct pctx *c, const struct fdesc *f, uint32_t vi, void *obj)
{
    const struct ap_ortb_tok *t = &c->t[vi];
    const char *raw = c->js + t->start;
    size_t rawn = t->end - t->start;
    char *p = (char *)obj + f->off;
    if (t->type == AP_ORTB_T_NULL && f->kind != K_RAW)
        return AP_OK; /* null: absent (as Go's encoding/json leaves the default) */
    switch (f->kind) {
    case K_STR: {
        if (t->type != AP_ORTB_T_STR)
            return perr(c, "must be a string");
        struct ap_span s;
        int rc = str_value(c, t, &s);
        if (rc)
            return rc;
        memcpy(p, &s, sizeof(s));
        return AP_OK;
    }
    case K_INT: {
        int64_t v;
        if (t->type != AP_ORTB_T_NUM || !int_value(raw, rawn, &v) || v == AP_ORTB_UNSET)
            return perr(c, "must be an integer");
        memcpy(p, &v, sizeof(v));
        return AP_OK;
    }
    case K_BOOL: {
        if (t->type != AP_ORTB_T_TRUE && t->type != AP_ORTB_T_FALSE)
            return perr(c, "must be a boolean");
        int64_t v = t->type == AP_ORTB_T_TRUE;
        memcpy(p, &v, sizeof(v));
        return AP_OK;
    }
    case K_DBL: {
        double v;
        if (t->type != AP_ORTB_T_NUM || !dbl_value(raw, rawn, &v))
            return perr(c, "must be a number");
        memcpy(p, &v, sizeof(v));
        return AP_OK;
    }
    case K_RAW: {
        struct ap_span s = ap_span_make(raw, rawn);
        if (t->type == AP_ORTB_T_NULL)
            s = AP_SPAN_NULL;
        memcpy(p, &s, sizeof(s));
        return AP_OK;
    }
    case K_OBJ: {
        void *sub = ap_arena_alloc(c->a, f->sub->size);
        if (!sub)
            return AP_ENOMEM;
        int rc = parse_obj(c, vi, f->sub, sub);
        if (rc)
            return rc;
        memcpy(p, &sub, sizeof(sub));
        return AP_OK;
    }
    default:
        break;
    }
    /* arrays */
    if (t->type != AP_ORTB_T_ARR)
        return perr(c, "must be an array");
    uint32_t n = count_children(c->t, vi);
    size_t esz = f->kind == K_OBJARR   ? f->sub->size
                 : f->kind == K_STRARR ? sizeof(struct ap_span)
                                       : sizeof(int64_t);
    char *arr = ap_arena_alloc(c->a, esz * (n ? n : 1));
    if (!arr)
        return AP_ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = vi + 1; i < t->next; i = c->t[i].next, k++) {
        size_t old = path_push(c, NULL, k);
        const struct ap_ortb_tok *e = &c->t[i];
        int rc = AP_OK;
        if (f->kind == K_OBJARR) {
            rc = parse_obj(c, i, f->sub, arr + esz * k);
        } else if (f->kind == K_STRARR) {
            struct ap_span s;
            rc = e->type == AP_ORTB_T_STR ? str_value(c, e, &s) : perr(c, "must be a string");
            if (!rc)
                memcpy(arr + esz * k, &s, sizeof(s));
        } else {
            int64_t v;
            if (e->type != AP_ORTB_T_NUM ||
                !int_value(c->js + e->start, e->end - e->start, &v))
                rc = perr(c, "must be an integer");
            else
                memcpy(arr + esz * k, &v, sizeof(v));
        }
        c->plen = old;
        if (rc)
            return rc;
    }
    memcpy(p, &arr, sizeof(arr));
    memcpy((char *)obj + f->off2, &n, sizeof(n));
    return AP_OK;
}

static int parse_obj(struct pctx *c, uint32_t ti, const struct odesc *d, void *obj)
{
    init_obj(d, obj);
    const struct ap_ortb_tok *t = &c->t[ti];
    if (t->type != AP_ORTB_T_OBJ)
        return perr(c, "must be an object");
    struct ap_ortb_unk *unk = obj; /* first member of every model struct */
    uint32_t unk_cap = 0;
    for (uint32_t ki = ti + 1; ki < t->next;) {
        uint32_t vi = ki + 1;
        struct ap_span key;
        int rc = str_value(c, &c->t[ki], &key);
        if (rc)
            return rc;
        const struct fdesc *f = NULL;
        for (uint32_t i = 0; i < d->n; i++) {
            if (ap_span_eq_cstr(key, d->f[i].name)) {
                f = &d->f[i];
                break;
            }
        }
        if (f) {
            size_t old = path_push(c, f->name, 0);
            rc = parse_field(c, f, vi, obj);
            c->plen = old;
            if (rc)
                return rc;
        } else {
            if (!unk_cap) {
                unk_cap = count_children(c->t, ti) / 2;
                unk->v = ap_arena_alloc(c->a, sizeof(*unk->v) * unk_cap);
                if (!unk->v)
                    return AP_ENOMEM;
            }
            const struct ap_ortb_tok *kt = &c->t[ki], *vt = &c->t[vi];
            unk->v[unk->n].key = ap_span_make(c->js + kt->start + 1, kt->end - kt->start - 2);
            unk->v[unk->n].val = ap_span_make(c->js + vt->start, vt->end - vt->start);
            unk->n++;
        }
        ki = c->t[vi].next;
    }
    return AP_OK;
}

static int parse_doc(const char *json, size_t len, struct ap_arena *a, const struct odesc *d,
                     const char *root, void **out, char *msg, size_t msgcap)
{
    struct ap_ortb_tok *t;
    uint32_t n;
    int rc = ap_ortb_tokenize(json, len, a, &t, &n, msg, msgcap);
    if (rc)
        return rc;
    struct pctx c = {.js = json, .t = t, .a = a, .msg = msg, .msgcap = msgcap};
    c.plen = (size_t)snprintf(c.path, sizeof(c.path), "%s", root);
    void *obj = ap_arena_alloc(a, d->size);
    if (!obj)
        return AP_ENOMEM;
    rc = parse_obj(&c, 0, d, obj);
    if (rc)
        return rc;
    *out = obj;
    return AP_OK;
}

int ap_ortb_parse_request(const char *json, size_t len, struct ap_arena *a,
                          struct ap_ortb_request **out, char *msg, size_t msgcap)
{
    void *o = NULL;
    int rc = parse_doc(json, len, a, &D_REQUEST, "request", &o, msg, msgcap);
    *out = o;
    return rc;
}

int ap_ortb_parse_response(const char *json, size_t len, struct ap_arena *a,
                           struct ap_ortb_response **out, char *msg, size_t msgcap)
{
    void *o = NULL;
    int rc = parse_doc(json, len, a, &D_RESPONSE, "response", &o, msg, msgcap);
    *out = o;
    return rc;
}

/* ---- normalisation (2.5 ext locations -> 2.6) ------------------------------------------------ */

static const char *const RESERVED_IMP_EXT[] = {"prebid", "context", "data", "gpid",   "skadn",
                                               "tid",    "ae",      "igs",  "all",    "general",
                                               "rewarded"};

static bool reserved_imp_ext(struct ap_span key)
{
    for (size_t i = 0; i < sizeof(RESERVED_IMP_EXT) / sizeof(RESERVED_IMP_EXT[0]); i++)
        if (ap_span_eq_cstr(key, RESERVED_IMP_EXT[i]))
            return true;
    return false;
}

static int normalize_imp_ext(struct ap_ortb_imp_ext *ext, struct ap_arena *a)
{
    uint32_t nbid = 0;
    for (uint32_t i = 0; i < ext->unk.n; i++)
        nbid += !reserved_imp_ext(ext->unk.v[i].key);
    if (!nbid)
        return AP_OK;
    if (!ext->prebid) {
        ext->prebid = ap_arena_alloc(a, sizeof(*ext->prebid));
        if (!ext->prebid)
            return AP_ENOMEM;
        init_obj(&D_IMPEXTPB, ext->prebid);
    }
    struct ap_ortb_bidders *b = ext->prebid->bidder;
    if (!b) {
        b = ext->prebid->bidder = ap_arena_calloc(a, 1, sizeof(*b));
        if (!b)
            return AP_ENOMEM;
    }
    struct ap_ortb_kv *nv = ap_arena_alloc(a, sizeof(*nv) * (b->unk.n + nbid));
    if (!nv)
        return AP_ENOMEM;
    if (b->unk.n)
        memcpy(nv, b->unk.v, sizeof(*nv) * b->unk.n);
    uint32_t nn = b->unk.n, keep = 0;
    for (uint32_t i = 0; i < ext->unk.n; i++) {
        struct ap_ortb_kv kv = ext->unk.v[i];
        if (reserved_imp_ext(kv.key)) {
            ext->unk.v[keep++] = kv;
            continue;
        }
        bool dup = false; /* imp.ext.prebid.bidder.X takes precedence */
        for (uint32_t k = 0; k < b->unk.n && !dup; k++)
            dup = ap_span_eq(b->unk.v[k].key, kv.key);
        if (!dup)
            nv[nn++] = kv;
    }
    ext->unk.n = keep;
    b->unk.v = nv;
    b->unk.n = nn;
    return AP_OK;
}

int ap_ortb_normalize(struct ap_ortb_request *r, struct ap_arena *a)
{
    if (r->regs && r->regs->ext) {
        struct ap_ortb_regs_ext *e = r->regs->ext;
        if (e->gdpr != AP_ORTB_UNSET && r->regs->gdpr == AP_ORTB_UNSET)
            r->regs->gdpr = e->gdpr;
        if (e->us_privacy.p && !r->regs->us_privacy.p)
            r->regs->us_privacy = e->us_privacy;
        e->gdpr = AP_ORTB_UNSET;
        e->us_privacy = AP_SPAN_NULL;
    }
    if (r->user && r->user->ext) {
        struct ap_ortb_user_ext *e = r->user->ext;
        if (e->consent.p && !r->user->consent.p)
            r->user->consent = e->consent;
        if (e->eids.p && !r->user->eids.p)
            r->user->eids = e->eids;
        e->consent = e->eids = AP_SPAN_NULL;
    }
    struct ap_span schain = AP_SPAN_NULL;
    if (r->ext && r->ext->schain.p) {
        schain = r->ext->schain;
        r->ext->schain = AP_SPAN_NULL;
    }
    if (r->source && r->source->ext && r->source->ext->schain.p) {
        schain = r->source->ext->schain; /* the 2.5 location wins over the 2.4 one */
        r->source->ext->schain = AP_SPAN_NULL;
    }
    if (schain.p) {
        if (!r->source) {
            r->source = ap_arena_alloc(a, sizeof(*r->source));
            if (!r->source)
                return AP_ENOMEM;
            init_obj(&D_SOURCE, r->source);
        }
        if (!r->source->schain.p)
            r->source->schain = schain;
    }
    for (uint32_t i = 0; i < r->nimp; i++) {
        if (r->imp[i].ext) {
            int rc = normalize_imp_ext(r->imp[i].ext, a);
            if (rc)
                return rc;
        }
    }
    return AP_OK;
}

/* ---- writer --------------------------------------------------------------------------------- */

int ap_ortb_w_escaped(struct ap_buf *b, struct ap_span s)
{
    static const char hex[] = "0123456789abcdef";
    int rc = AP_OK;
    size_t run = 0;
    for (size_t i = 0; i < s.len && rc == AP_OK; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
            run++;
            continue;
        }
        if (run)
            rc = ap_buf_append(b, s.p + i - run, run);
        run = 0;
        if (rc)
            break;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = ap_buf_append(b, e, 2);
        } else if (c == '\n') {
            rc = ap_buf_append(b, "\\n", 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = ap_buf_append(b, e, 6);
        }
    }
    if (rc == AP_OK && run)
        rc = ap_buf_append(b, s.p + s.len - run, run);
    return rc;
}

int ap_ortb_w_str(struct ap_buf *b, struct ap_span s)
{
    int rc = ap_buf_append(b, "\"", 1);
    if (!rc)
        rc = ap_ortb_w_escaped(b, s);
    if (!rc)
        rc = ap_buf_append(b, "\"", 1);
    return rc;
}

int ap_ortb_w_double(struct ap_buf *b, double d)
{
    if (!isfinite(d))
        d = 0;
    char s[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, d);
        if (strtod(s, NULL) == d)
            break;
    }
    return ap_buf_append_str(b, s);
}

static int write_obj(struct ap_buf *b, const struct odesc *d, const void *obj);

static bool field_present(const struct fdesc *f, const void *obj)
{
    const char *p = (const char *)obj + f->off;
    switch (f->kind) {
    case K_STR:
    case K_RAW: {
        struct ap_span s;
        memcpy(&s, p, sizeof(s));
        return s.p != NULL;
    }
    case K_INT:
    case K_BOOL: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return v != AP_ORTB_UNSET;
    }
    case K_DBL: {
        double v;
        memcpy(&v, p, sizeof(v));
        return !isnan(v);
    }
    default: {
        void *ptr;
        memcpy(&ptr, p, sizeof(ptr));
        return ptr != NULL;
    }
    }
}

static int write_field(struct ap_buf *b, const struct fdesc *f, const void *obj)
{
    const char *p = (const char *)obj + f->off;
    switch (f->kind) {
    case K_STR: {
        struct ap_span s;
        memcpy(&s, p, sizeof(s));
        return ap_ortb_w_str(b, s);
    }
    case K_RAW: {
        struct ap_span s;
        memcpy(&s, p, sizeof(s));
        return ap_buf_append_span(b, s);
    }
    case K_INT: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return ap_buf_append_i64(b, v);
    }
    case K_BOOL: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return ap_buf_append_str(b, v ? "true" : "false");
    }
    case K_DBL: {
        double v;
        memcpy(&v, p, sizeof(v));
        return ap_ortb_w_double(b, v);
    }
    case K_OBJ: {
        const void *sub;
        memcpy(&sub, p, sizeof(sub));
        return write_obj(b, f->sub, sub);
    }
    default:
        break;
    }
    const char *arr;
    uint32_t n;
    memcpy(&arr, p, sizeof(arr));
    memcpy(&n, (const char *)obj + f->off2, sizeof(n));
    int rc = ap_buf_append(b, "[", 1);
    for (uint32_t i = 0; i < n && rc == AP_OK; i++) {
        if (i)
            rc = ap_buf_append(b, ",", 1);
        if (rc)
            break;
        if (f->kind == K_OBJARR) {
            rc = write_obj(b, f->sub, arr + f->sub->size * i);
        } else if (f->kind == K_STRARR) {
            struct ap_span s;
            memcpy(&s, arr + sizeof(s) * i, sizeof(s));
            rc = ap_ortb_w_str(b, s);
        } else {
            int64_t v;
            memcpy(&v, arr + sizeof(v) * i, sizeof(v));
            rc = ap_buf_append_i64(b, v);
        }
    }
    if (rc == AP_OK)
        rc = ap_buf_append(b, "]", 1);
    return rc;
}

static int write_obj(struct ap_buf *b, const struct odesc *d, const void *obj)
{
    int rc = ap_buf_append(b, "{", 1);
    bool first = true;
    for (uint32_t i = 0; i < d->n && rc == AP_OK; i++) {
        const struct fdesc *f = &d->f[i];
        if (!field_present(f, obj))
            continue;
        rc = ap_buf_printf(b, "%s\"%s\":", first ? "" : ",", f->name);
        first = false;
        if (rc == AP_OK)
            rc = write_field(b, f, obj);
    }
    const struct ap_ortb_unk *u = obj;
    for (uint32_t i = 0; i < u->n && rc == AP_OK; i++) {
        rc = ap_buf_append_str(b, first ? "\"" : ",\"");
        first = false;
        if (rc == AP_OK)
            rc = ap_buf_append_span(b, u->v[i].key);
        if (rc == AP_OK)
            rc = ap_buf_append(b, "\":", 2);
        if (rc == AP_OK)
            rc = ap_buf_append_span(b, u->v[i].val);
    }
    if (rc == AP_OK)
        rc = ap_buf_append(b, "}", 1);
    return rc;
}

int ap_ortb_write_request(struct ap_buf *b, const struct ap_ortb_request *r)
{
    return write_obj(b, &D_REQUEST, r);
}

int ap_ortb_write_response(struct ap_buf *b, const struct ap_ortb_response *r)
{
    return write_obj(b, &D_RESPONSE, r);
}

int ap_ortb_write_imp(struct ap_buf *b, const struct ap_ortb_imp *imp)
{
    return write_obj(b, &D_IMP, imp);
}

/* ---- raw helpers ---------------------------------------------------------------------------- */

static size_t raw_ws(struct ap_span s, size_t i)
{
    while (i < s.len && (s.p[i] == ' ' || s.p[i] == '\t' || s.p[i] == '\n' || s.p[i] == '\r'))
        i++;
    return i;
}

/* End of the (valid JSON) value starting at i. */
static size_t raw_skip(struct ap_span s, size_t i)
{
    int depth = 0;
    bool in_str = false;
    for (; i < s.len; i++) {
        char c = s.p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"') {
                in_str = false;
                if (depth == 0)
                    return i + 1;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* end of the enclosing container */
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
            return i;
        }
    }
    return i;
}

int ap_ortb_raw_member(struct ap_span obj, const char *key, struct ap_span *val)
{
    size_t i = raw_ws(obj, 0), klen = strlen(key);
    if (i >= obj.len || obj.p[i] != '{')
        return AP_ENOTFOUND;
    i = raw_ws(obj, i + 1);
    while (i < obj.len && obj.p[i] == '"') {
        size_t ks = i + 1, ke = raw_skip(obj, i) - 1; /* key without quotes */
        i = raw_ws(obj, ke + 1);
        if (i >= obj.len || obj.p[i] != ':')
            return AP_ENOTFOUND;
        i = raw_ws(obj, i + 1);
        size_t vs = i, ve = raw_skip(obj, i);
        if (ke - ks == klen && memcmp(obj.p + ks, key, klen) == 0) {
            *val = ap_span_make(obj.p + vs, ve - vs);
            return AP_OK;
        }
        i = raw_ws(obj, ve);
        if (i < obj.len && obj.p[i] == ',')
            i = raw_ws(obj, i + 1);
    }
    return AP_ENOTFOUND;
}

bool ap_ortb_raw_id(struct ap_span raw, int64_t *out)
{
    if (raw.len >= 2 && raw.p[0] == '"' && raw.p[raw.len - 1] == '"')
        raw = ap_span_make(raw.p + 1, raw.len - 2);
    uint64_t v;
    if (!ap_span_to_u64(raw, INT64_MAX, &v) || v == 0)
        return false;
    *out = (int64_t)v;
    return true;
}

const struct ap_ortb_kv *ap_ortb_unk_find(const struct ap_ortb_unk *u, const char *key)
{
    for (uint32_t i = 0; u && i < u->n; i++)
        if (ap_span_eq_cstr(u->v[i].key, key))
            return &u->v[i];
    return NULL;
}
