/*
 * ap_ortb: the OpenRTB 2.6 model, a zero-copy parser, a validator (Prebid Server's rules and
 * messages) and a writer. See docs/adr/0011-openrtb-exchange.md.
 *
 * Parsing runs in two steps: a strict RFC 8259 tokenizer (ap_ortb_tokenize: a flat array of
 * tokens holding offsets into the body, with the index of each value's next sibling so a
 * subtree is skipped in O(1)), then a walk driven by per-object field tables (ap_ortb.c)
 * that fills the structs below. Every string is a span into the body; only a string that
 * contains escapes is decoded, into the arena. Members the model does not know are kept as
 * raw key/value spans (struct ap_ortb_unk) and written out again verbatim, so a request
 * passed on to a partner keeps every field the spec says to pass on. `ext` objects the
 * exchange reads (request, imp, user, regs, source) are modelled; other exts are raw spans.
 *
 * Absent values: strings and raw spans have p == NULL, integers AP_ORTB_UNSET, doubles NaN
 * (ap_ortb_has_dbl), objects NULL, arrays n == 0 (v non-NULL when present but empty).
 *
 * Lifetimes: the model points into the body and into the arena given to ap_ortb_parse_*; it
 * lives as long as both (the request). Nothing is global; everything is re-entrant and may be
 * called on any thread (one request on one thread).
 */
#ifndef AP_ORTB_H
#define AP_ORTB_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/ap_arena.h"
#include "../core/ap_buf.h"
#include "../core/ap_span.h"

#define AP_ORTB_UNSET INT64_MIN
#define AP_ORTB_MAX_DEPTH 32       /* nesting of objects/arrays (deeper: invalid) */
#define AP_ORTB_MAX_TOKENS 200000  /* tokens in one document */
#define AP_ORTB_MAX_IMPS 100       /* imps per request (PBS has no limit; we cap) */
#define AP_ORTB_ERR_MAX 512        /* bytes of an error message */

/* ---- tokenizer ------------------------------------------------------------------------------ */

enum ap_ortb_tok_type {
    AP_ORTB_T_OBJ = 1,
    AP_ORTB_T_ARR,
    AP_ORTB_T_STR,
    AP_ORTB_T_NUM,
    AP_ORTB_T_TRUE,
    AP_ORTB_T_FALSE,
    AP_ORTB_T_NULL
};

struct ap_ortb_tok {
    uint32_t start, end; /* raw text [start, end): quotes and brackets included */
    uint32_t next;       /* index of the token after this value's subtree */
    uint8_t type;        /* enum ap_ortb_tok_type */
    uint8_t esc;         /* string: contains a backslash escape */
    uint16_t pad;
};

/* Tokenizes json[0, len) strictly (one value, whitespace around it, nothing else; no control
 * characters in strings, valid escapes, JSON number grammar, depth <= AP_ORTB_MAX_DEPTH).
 * Object members appear as key token then value token. *toks is allocated in the arena.
 * AP_OK, AP_EINVAL (not JSON: msg says where), AP_ELIMIT (too many tokens or too deep),
 * AP_ENOMEM. */
int ap_ortb_tokenize(const char *json, size_t len, struct ap_arena *a, struct ap_ortb_tok **toks,
                     uint32_t *ntoks, char *msg, size_t msgcap);

/* ---- model ---------------------------------------------------------------------------------- */

struct ap_ortb_kv {
    struct ap_span key; /* raw key text between the quotes (escapes not decoded) */
    struct ap_span val; /* raw JSON value */
};

/* Members not in the model, in input order. First member of every model struct. */
struct ap_ortb_unk {
    struct ap_ortb_kv *v;
    uint32_t n;
};

struct ap_ortb_format {
    struct ap_ortb_unk unk;
    int64_t w, h, wratio, hratio, wmin;
    struct ap_span ext;
};

struct ap_ortb_banner {
    struct ap_ortb_unk unk;
    struct ap_ortb_format *format;
    uint32_t nformat;
    int64_t w, h, wmax, hmax, wmin, hmin, pos, topframe, vcm;
    int64_t *btype, *battr, *expdir, *api;
    uint32_t nbtype, nbattr, nexpdir, napi;
    struct ap_span *mimes;
    uint32_t nmimes;
    struct ap_span id, ext;
};

struct ap_ortb_video {
    struct ap_ortb_unk unk;
    struct ap_span *mimes;
    uint32_t nmimes;
    int64_t minduration, maxduration, startdelay, plcmt, placement, linearity, skip, w, h,
        minbitrate, maxbitrate;
    int64_t *protocols, *battr, *api;
    uint32_t nprotocols, nbattr, napi;
    struct ap_span ext;
};

struct ap_ortb_audio {
    struct ap_ortb_unk unk;
    struct ap_span *mimes;
    uint32_t nmimes;
    int64_t minduration, maxduration, startdelay, sequence, maxseq, minbitrate, maxbitrate;
    int64_t *protocols, *battr, *api;
    uint32_t nprotocols, nbattr, napi;
    struct ap_span ext;
};

struct ap_ortb_native {
    struct ap_ortb_unk unk;
    struct ap_span request, ver;
    int64_t *api, *battr;
    uint32_t napi, nbattr;
    struct ap_span ext;
};

struct ap_ortb_deal {
    struct ap_ortb_unk unk;
    struct ap_span id, bidfloorcur;
    double bidfloor;
    int64_t at;
    struct ap_span *wseat, *wadomain;
    uint32_t nwseat, nwadomain;
    struct ap_span ext;
};

struct ap_ortb_pmp {
    struct ap_ortb_unk unk;
    int64_t private_auction;
    struct ap_ortb_deal *deals;
    uint32_t ndeals;
    struct ap_span ext;
};

/* imp.ext.prebid.bidder: every bidder is a member of unk (code -> params). */
struct ap_ortb_bidders {
    struct ap_ortb_unk unk;
};

struct ap_ortb_stored {
    struct ap_ortb_unk unk;
    struct ap_span id;
};

struct ap_ortb_imp_ext_prebid {
    struct ap_ortb_unk unk;
    struct ap_ortb_bidders *bidder;
    struct ap_ortb_stored *storedrequest;
};

struct ap_ortb_imp_ext {
    struct ap_ortb_unk unk; /* legacy imp.ext.BIDDER entries are moved to prebid.bidder */
    struct ap_ortb_imp_ext_prebid *prebid;
    struct ap_span gpid, tid;
};

struct ap_ortb_imp {
    struct ap_ortb_unk unk;
    struct ap_span id, metric, displaymanager, displaymanagerver, tagid, bidfloorcur;
    struct ap_ortb_banner *banner;
    struct ap_ortb_video *video;
    struct ap_ortb_audio *audio;
    struct ap_ortb_native *native;
    struct ap_ortb_pmp *pmp;
    int64_t instl, clickbrowser, secure, exp, rwdd;
    double bidfloor;
    struct ap_span *iframebuster;
    uint32_t niframebuster;
    struct ap_ortb_imp_ext *ext;
};

struct ap_ortb_publisher {
    struct ap_ortb_unk unk;
    struct ap_span id, name, domain, ext;
    struct ap_span *cat;
    uint32_t ncat;
};

/* site, app and dooh share one struct (the fields of the others stay absent). */
struct ap_ortb_site {
    struct ap_ortb_unk unk;
    struct ap_span id, name, domain, page, ref, search, keywords, bundle, storeurl, ver,
        content, ext;
    struct ap_span *cat, *sectioncat, *pagecat, *venuetype;
    uint32_t ncat, nsectioncat, npagecat, nvenuetype;
    int64_t mobile, privacypolicy, paid;
    struct ap_ortb_publisher *publisher;
};

struct ap_ortb_geo {
    struct ap_ortb_unk unk;
    double lat, lon;
    int64_t type, accuracy, lastfix, ipservice, utcoffset;
    struct ap_span country, region, regionfips104, metro, city, zip, ext;
};

struct ap_ortb_device {
    struct ap_ortb_unk unk;
    struct ap_span ua, sua, ip, ipv6, make, model, os, osv, hwv, language, langb, carrier,
        mccmnc, ifa, didsha1, didmd5, dpidsha1, dpidmd5, macsha1, macmd5, flashver, ext;
    struct ap_ortb_geo *geo;
    int64_t dnt, lmt, devicetype, h, w, ppi, js, geofetch, connectiontype;
    double pxratio;
};

struct ap_ortb_user_ext {
    struct ap_ortb_unk unk;
    struct ap_span consent, eids; /* 2.5 locations: moved to user.consent / user.eids */
};

struct ap_ortb_user {
    struct ap_ortb_unk unk;
    struct ap_span id, buyeruid, gender, keywords, customdata, consent, data, eids;
    struct ap_span *kwarray;
    uint32_t nkwarray;
    int64_t yob;
    struct ap_ortb_geo *geo;
    struct ap_ortb_user_ext *ext;
};

struct ap_ortb_source_ext {
    struct ap_ortb_unk unk;
    struct ap_span schain; /* 2.5 location: moved to source.schain */
};

struct ap_ortb_source {
    struct ap_ortb_unk unk;
    int64_t fd;
    struct ap_span tid, pchain, schain;
    struct ap_ortb_source_ext *ext;
};

struct ap_ortb_regs_ext {
    struct ap_ortb_unk unk;
    int64_t gdpr; /* 2.5 locations: moved to regs.gdpr / regs.us_privacy */
    struct ap_span us_privacy;
};

struct ap_ortb_regs {
    struct ap_ortb_unk unk;
    int64_t coppa, gdpr;
    struct ap_span us_privacy, gpp;
    int64_t *gpp_sid;
    uint32_t ngpp_sid;
    struct ap_ortb_regs_ext *ext;
};

struct ap_ortb_targeting {
    struct ap_ortb_unk unk;
    struct ap_span pricegranularity; /* raw: a string name or an object */
    int64_t includewinners, includebidderkeys, includeformat; /* booleans */
};

struct ap_ortb_req_ext_prebid {
    struct ap_ortb_unk unk;
    struct ap_ortb_targeting *targeting;
    int64_t debug; /* boolean */
    struct ap_span bidadjustmentfactors, aliases, schains, channel;
};

struct ap_ortb_req_ext {
    struct ap_ortb_unk unk;
    struct ap_ortb_req_ext_prebid *prebid;
    struct ap_span schain; /* 2.4 location */
};

struct ap_ortb_request {
    struct ap_ortb_unk unk;
    struct ap_span id;
    struct ap_ortb_imp *imp;
    uint32_t nimp;
    struct ap_ortb_site *site, *app, *dooh;
    struct ap_ortb_device *device;
    struct ap_ortb_user *user;
    int64_t test, at, tmax, allimps, cattax;
    struct ap_span *wseat, *bseat, *cur, *wlang, *wlangb, *bcat, *badv, *bapp;
    uint32_t nwseat, nbseat, ncur, nwlang, nwlangb, nbcat, nbadv, nbapp;
    struct ap_ortb_source *source;
    struct ap_ortb_regs *regs;
    struct ap_ortb_req_ext *ext;
};

/* ---- bid responses (from partners) ---------------------------------------------------------- */

struct ap_ortb_bid {
    struct ap_ortb_unk unk;
    struct ap_span id, impid, nurl, burl, lurl, adm, adid, bundle, iurl, cid, crid, tactic,
        language, langb, dealid, ext;
    double price;
    struct ap_span *adomain, *cat;
    uint32_t nadomain, ncat;
    int64_t *attr, *apis;
    uint32_t nattr, napis;
    int64_t api, protocol, qagmediarating, cattax, w, h, wratio, hratio, exp, dur, mtype,
        slotinvideo;
};

struct ap_ortb_seatbid {
    struct ap_ortb_unk unk;
    struct ap_ortb_bid *bid;
    uint32_t nbid;
    struct ap_span seat, ext;
    int64_t group;
};

struct ap_ortb_response {
    struct ap_ortb_unk unk;
    struct ap_span id, bidid, cur, customdata, ext;
    struct ap_ortb_seatbid *seatbid;
    uint32_t nseatbid;
    int64_t nbr;
};

static inline bool ap_ortb_has_dbl(double d)
{
    return !isnan(d);
}

/* ---- parse / validate / write ----------------------------------------------------------------
 * Parse: AP_OK and *out (in the arena), or AP_EINVAL (not JSON, or a member of the wrong JSON
 * type: msg names it, e.g. "request.imp[0].banner.w must be an integer"), AP_ELIMIT, AP_ENOMEM.
 * msg gets at most msgcap bytes, NUL-terminated. */
int ap_ortb_parse_request(const char *json, size_t len, struct ap_arena *a,
                          struct ap_ortb_request **out, char *msg, size_t msgcap);
int ap_ortb_parse_response(const char *json, size_t len, struct ap_arena *a,
                           struct ap_ortb_response **out, char *msg, size_t msgcap);

/* Moves the OpenRTB 2.5 ext locations to their 2.6 fields when those are absent (regs.ext.gdpr,
 * regs.ext.us_privacy, user.ext.consent, user.ext.eids, source.ext.schain, ext.schain) and
 * deletes them from ext; moves legacy imp.ext.BIDDER params to imp.ext.prebid.bidder.BIDDER
 * (Prebid Server's rule: every imp.ext member but the reserved ones). AP_OK or AP_ENOMEM. */
int ap_ortb_normalize(struct ap_ortb_request *r, struct ap_arena *a);

/* Checks r as Prebid Server's /openrtb2/auction does; call after ap_ortb_normalize. AP_OK, or
 * AP_EINVAL with msg naming the first problem (without the "Invalid request: " prefix). */
int ap_ortb_validate(const struct ap_ortb_request *r, char *msg, size_t msgcap);

/* Writes r as JSON: modelled members that are present, then the unknown members verbatim.
 * AP_OK, or the ap_buf error (AP_ELIMIT / AP_ENOMEM). */
int ap_ortb_write_request(struct ap_buf *b, const struct ap_ortb_request *r);
int ap_ortb_write_response(struct ap_buf *b, const struct ap_ortb_response *r);
int ap_ortb_write_imp(struct ap_buf *b, const struct ap_ortb_imp *imp);

/* ---- helpers -------------------------------------------------------------------------------- */

/* Appends s as a JSON string body (no quotes), escaping '"', '\\', control characters and
 * '<', '>', '&' (so markup in JSON cannot close a script element). */
int ap_ortb_w_escaped(struct ap_buf *b, struct ap_span s);
/* Appends "s" (quoted, escaped). */
int ap_ortb_w_str(struct ap_buf *b, struct ap_span s);
/* Appends the shortest decimal form of d that reads back as d ("1.5", "0.1"); non-finite
 * values are written as 0. */
int ap_ortb_w_double(struct ap_buf *b, double d);

/* In a raw JSON object text (valid JSON, e.g. an ext or a bidder's params), finds the member
 * key and sets *val to its raw value. AP_OK, AP_ENOTFOUND (absent, or obj not an object). */
int ap_ortb_raw_member(struct ap_span obj, const char *key, struct ap_span *val);

/* A raw JSON value as a positive integer: a number (1234) or a string of digits ("1234").
 * false otherwise. */
bool ap_ortb_raw_id(struct ap_span raw, int64_t *out);

/* Finds a member of an unknown list by key (exact, raw). NULL if absent. */
const struct ap_ortb_kv *ap_ortb_unk_find(const struct ap_ortb_unk *u, const char *key);

#endif
