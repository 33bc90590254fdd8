/*
 * ap_rtb_privacy: what a demand partner may see (ap_rtb_internal.h). Rules, applied to a
 * shallow copy of the request (the copy shares everything it does not change):
 *   - GDPR applies (regs.gdpr = 1) without a TCF v2 string consenting to purposes 1, 3 and 4
 *     (storage, personalised-ads profile, personalised-ads selection), or a US Privacy opt-out
 *     of sale: no user ids (user.id, buyeruid, eids, user.ext), no device ids (ifa and the
 *     hashed ids), IP truncated (IPv4 /24, IPv6 /48).
 *   - GDPR applies without TCF special feature 1 (precise geolocation): lat/lon dropped from
 *     device.geo and user.geo, IP truncated.
 *   - COPPA (regs.coppa = 1): all of the above plus yob/gender, whatever the consent says.
 *   - LMT (device.lmt = 1) or DNT (device.dnt = 1): no ifa (nor the hashed device ids).
 * Pure: no state; any thread; allocations in the caller's arena.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/ap_error.h"
#include "../serve/ap_consent.h"
#include "ap_rtb_internal.h"

void ap__rtb_privacy_eval(const struct ap_ortb_request *r, struct ap_rtb_privacy *pv)
{
    memset(pv, 0, sizeof(*pv));
    if (r->regs && r->regs->coppa == 1)
        pv->coppa = true;
    if (r->device && (r->device->lmt == 1 || r->device->dnt == 1))
        pv->lmt = true;
    if (r->regs && r->regs->gdpr == 1) {
        struct ap_consent_tcf t;
        struct ap_span tc = r->user ? r->user->consent : AP_SPAN_NULL;
        if (!tc.len || ap_consent_tcf_decode(tc, &t) != AP_OK) {
            pv->gdpr_no_consent = pv->no_precise_geo = true;
        } else {
            pv->gdpr_no_consent = !(ap_consent_tcf_purpose(&t, 1) &&
                                    ap_consent_tcf_purpose(&t, 3) && ap_consent_tcf_purpose(&t, 4));
            pv->no_precise_geo = !(t.special_features & 1u);
        }
    }
    struct ap_consent_usp u;
    if (r->regs && r->regs->us_privacy.len &&
        ap_consent_usp_parse(r->regs->us_privacy, &u) == AP_OK && u.opt_out_sale == 'Y')
        pv->usp_opt_out = true;
}

bool ap__rtb_truncate_ip(struct ap_span ip, char *out, size_t cap)
{
    char in[INET6_ADDRSTRLEN + 1];
    if (!ip.len || ip.len >= sizeof(in))
        return false;
    memcpy(in, ip.p, ip.len);
    in[ip.len] = '\0';
    unsigned char b[16];
    if (inet_pton(AF_INET, in, b) == 1) {
        b[3] = 0;
        return inet_ntop(AF_INET, b, out, (socklen_t)cap) != NULL;
    }
    if (inet_pton(AF_INET6, in, b) == 1) {
        memset(b + 6, 0, 10);
        return inet_ntop(AF_INET6, b, out, (socklen_t)cap) != NULL;
    }
    return false;
}

static struct ap_span trunc_ip(struct ap_span ip, struct ap_arena *a)
{
    char t[INET6_ADDRSTRLEN + 1];
    if (!ap__rtb_truncate_ip(ip, t, sizeof(t)))
        return AP_SPAN_NULL; /* unparsable: not passed on */
    char *p = ap_arena_strndup(a, t, strlen(t));
    return p ? ap_span_make(p, strlen(p)) : AP_SPAN_NULL;
}

static struct ap_ortb_geo *coarse_geo(const struct ap_ortb_geo *g, struct ap_arena *a)
{
    if (!g)
        return NULL;
    struct ap_ortb_geo *c = ap_arena_alloc(a, sizeof(*c));
    if (!c)
        return NULL;
    *c = *g;
    c->lat = c->lon = NAN;
    c->accuracy = c->lastfix = AP_ORTB_UNSET;
    c->zip = AP_SPAN_NULL;
    return c;
}

struct ap_ortb_request *ap__rtb_scrub(const struct ap_ortb_request *r,
                                      const struct ap_rtb_privacy *pv, struct ap_arena *a)
{
    struct ap_ortb_request *c = ap_arena_alloc(a, sizeof(*c));
    if (!c)
        return NULL;
    *c = *r;
    bool no_ids = pv->coppa || pv->gdpr_no_consent || pv->usp_opt_out;
    bool no_geo = pv->coppa || pv->no_precise_geo;
    bool no_ifa = no_ids || pv->lmt;
    if (r->user && (no_ids || no_geo)) {
        struct ap_ortb_user *u = ap_arena_alloc(a, sizeof(*u));
        if (!u)
            return NULL;
        *u = *r->user;
        if (no_ids) {
            u->id = u->buyeruid = u->eids = AP_SPAN_NULL;
            u->ext = NULL;
        }
        if (pv->coppa) {
            u->yob = AP_ORTB_UNSET;
            u->gender = u->keywords = u->data = AP_SPAN_NULL;
            u->kwarray = NULL;
            u->nkwarray = 0;
        }
        if (no_geo && u->geo && !(u->geo = coarse_geo(r->user->geo, a)))
            return NULL;
        c->user = u;
    }
    if (r->device && (no_ifa || no_geo)) {
        struct ap_ortb_device *d = ap_arena_alloc(a, sizeof(*d));
        if (!d)
            return NULL;
        *d = *r->device;
        if (no_ifa)
            d->ifa = d->didsha1 = d->didmd5 = d->dpidsha1 = d->dpidmd5 = d->macsha1 = d->macmd5 =
                AP_SPAN_NULL;
        if (no_ids || no_geo) {
            if (d->ip.len)
                d->ip = trunc_ip(d->ip, a);
            if (d->ipv6.len)
                d->ipv6 = trunc_ip(d->ipv6, a);
        }
        if (no_geo && d->geo && !(d->geo = coarse_geo(r->device->geo, a)))
            return NULL;
        c->device = d;
    }
    return c;
}
