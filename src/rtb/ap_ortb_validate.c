/*
 * ap_ortb_validate: Prebid Server's request checks for /openrtb2/auction (the Go server's
 * validateRequest / validateImp / validateBanner / validateFormat ..., same order and the same
 * messages), on the normalised model. The caller prefixes "Invalid request: ".
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/ap_error.h"
#include "ap_ortb.h"

static int fail(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return AP_EINVAL;
}

static int64_t v0(int64_t v)
{
    return v == AP_ORTB_UNSET ? 0 : v;
}

static int validate_format(const struct ap_ortb_format *f, uint32_t imp, uint32_t k, char *msg,
                           size_t cap)
{
    int64_t w = v0(f->w), h = v0(f->h), wr = v0(f->wratio), hr = v0(f->hratio),
            wmin = v0(f->wmin);
    bool uses_hw = w != 0 || h != 0;
    bool uses_ratios = wmin != 0 || wr != 0 || hr != 0;
    static const char *const names[] = {"w", "h", "wratio", "hratio", "wmin"};
    const int64_t vals[] = {w, h, wr, hr, wmin};
    for (int i = 0; i < 5; i++)
        if (vals[i] < 0)
            return fail(msg, cap, "request.imp[%u].banner.format[%u].%s must be a positive number",
                        imp, k, names[i]);
    if (uses_hw && uses_ratios)
        return fail(msg, cap,
                    "Request imp[%u].banner.format[%u] should define *either* {w, h} *or* {wmin, "
                    "wratio, hratio}, but not both. If both are valid, send two \"format\" objects "
                    "in the request.",
                    imp, k);
    if (!uses_hw && !uses_ratios)
        return fail(msg, cap,
                    "Request imp[%u].banner.format[%u] should define *either* {w, h} (for static "
                    "size requirements) *or* {wmin, wratio, hratio} (for flexible sizes) to be "
                    "non-zero.",
                    imp, k);
    if (uses_hw && (w == 0 || h == 0))
        return fail(msg, cap,
                    "Request imp[%u].banner.format[%u] must define non-zero \"h\" and \"w\" "
                    "properties.",
                    imp, k);
    if (uses_ratios && (wmin == 0 || wr == 0 || hr == 0))
        return fail(msg, cap,
                    "Request imp[%u].banner.format[%u] must define non-zero \"wmin\", \"wratio\", "
                    "and \"hratio\" properties.",
                    imp, k);
    return AP_OK;
}

static int validate_banner(const struct ap_ortb_banner *b, uint32_t i, bool instl, char *msg,
                           size_t cap)
{
    if (b->w != AP_ORTB_UNSET && b->w < 0)
        return fail(msg, cap, "request.imp[%u].banner.w must be a positive number", i);
    if (b->h != AP_ORTB_UNSET && b->h < 0)
        return fail(msg, cap, "request.imp[%u].banner.h must be a positive number", i);
    static const char *const dep[] = {"wmin", "wmax", "hmin", "hmax"};
    const int64_t dv[] = {v0(b->wmin), v0(b->wmax), v0(b->hmin), v0(b->hmax)};
    for (int k = 0; k < 4; k++)
        if (dv[k] != 0)
            return fail(msg, cap,
                        "request.imp[%u].banner uses unsupported property: \"%s\". Use the "
                        "\"format\" array instead.",
                        i, dep[k]);
    bool root = b->w != AP_ORTB_UNSET && b->h != AP_ORTB_UNSET && b->w > 0 && b->h > 0;
    if (!root && b->nformat == 0 && !instl)
        return fail(msg, cap,
                    "request.imp[%u].banner has no sizes. Define \"w\" and \"h\", or include "
                    "\"format\" elements.",
                    i);
    for (uint32_t k = 0; k < b->nformat; k++) {
        int rc = validate_format(&b->format[k], i, k, msg, cap);
        if (rc)
            return rc;
    }
    return AP_OK;
}

static int validate_imp(const struct ap_ortb_imp *imp, uint32_t i, char *msg, size_t cap)
{
    if (!imp->id.len)
        return fail(msg, cap, "request.imp[%u] missing required field: \"id\"", i);
    if (imp->metric.p && imp->metric.len > 2 && memchr(imp->metric.p, '{', imp->metric.len))
        return fail(msg, cap,
                    "request.imp[%u].metric is not yet supported by prebid-server. Support may "
                    "be added in the future",
                    i);
    if (!imp->banner && !imp->video && !imp->audio && !imp->native)
        return fail(msg, cap,
                    "request.imp[%u] must contain at least one of \"banner\", \"video\", "
                    "\"audio\", or \"native\"",
                    i);
    int rc;
    if (imp->banner && (rc = validate_banner(imp->banner, i, v0(imp->instl) == 1, msg, cap)))
        return rc;
    if (imp->video) {
        const struct ap_ortb_video *v = imp->video;
        if (v->nmimes < 1)
            return fail(msg, cap,
                        "request.imp[%u].video.mimes must contain at least one supported MIME "
                        "type",
                        i);
        if (v0(v->w) < 0)
            return fail(msg, cap, "request.imp[%u].video.w must be a positive number", i);
        if (v0(v->h) < 0)
            return fail(msg, cap, "request.imp[%u].video.h must be a positive number", i);
        if (v0(v->minbitrate) < 0)
            return fail(msg, cap, "request.imp[%u].video.minbitrate must be a positive number", i);
        if (v0(v->maxbitrate) < 0)
            return fail(msg, cap, "request.imp[%u].video.maxbitrate must be a positive number", i);
    }
    if (imp->audio) {
        const struct ap_ortb_audio *a = imp->audio;
        if (a->nmimes < 1)
            return fail(msg, cap,
                        "request.imp[%u].audio.mimes must contain at least one supported MIME "
                        "type",
                        i);
        if (v0(a->sequence) < 0)
            return fail(msg, cap, "request.imp[%u].audio.sequence must be a positive number", i);
        if (v0(a->maxseq) < 0)
            return fail(msg, cap, "request.imp[%u].audio.maxseq must be a positive number", i);
        if (v0(a->minbitrate) < 0)
            return fail(msg, cap, "request.imp[%u].audio.minbitrate must be a positive number", i);
        if (v0(a->maxbitrate) < 0)
            return fail(msg, cap, "request.imp[%u].audio.maxbitrate must be a positive number", i);
    }
    if (imp->native && !imp->native->request.len)
        return fail(msg, cap, "request.imp[%u].native missing required property \"request\"", i);
    if (imp->pmp) {
        for (uint32_t k = 0; k < imp->pmp->ndeals; k++)
            if (!imp->pmp->deals[k].id.len)
                return fail(msg, cap, "request.imp[%u].pmp.deals[%u] missing required field: \"id\"",
                            i, k);
    }
    if (imp->bidfloor == imp->bidfloor && imp->bidfloor < 0)
        return fail(msg, cap, "request.imp[%u].bidfloor must be a non-negative number", i);
    /* Our extension: an imp naming one of our placements in tagid needs no bidder. */
    if (imp->tagid.len && !imp->ext)
        return AP_OK;
    if (!imp->ext)
        return fail(msg, cap, "request.imp[%u].ext is required", i);
    const struct ap_ortb_imp_ext_prebid *pb = imp->ext->prebid;
    bool stored = pb && pb->storedrequest && pb->storedrequest->id.len;
    if ((!pb || !pb->bidder || pb->bidder->unk.n == 0) && !stored && !imp->tagid.len)
        return fail(msg, cap, "request.imp[%u].ext.prebid.bidder must contain at least one bidder",
                    i);
    return AP_OK;
}

int ap_ortb_validate(const struct ap_ortb_request *r, char *msg, size_t cap)
{
    if (msg && cap)
        msg[0] = '\0';
    if (!r->id.len)
        return fail(msg, cap, "request missing required field: \"id\"");
    if (r->tmax != AP_ORTB_UNSET && r->tmax < 0)
        return fail(msg, cap, "request.tmax must be nonnegative. Got %lld", (long long)r->tmax);
    if (r->nimp < 1)
        return fail(msg, cap, "request.imp must contain at least one element.");
    if (r->nimp > AP_ORTB_MAX_IMPS)
        return fail(msg, cap, "request.imp must contain at most %d elements.", AP_ORTB_MAX_IMPS);
    const struct ap_ortb_targeting *t = r->ext && r->ext->prebid ? r->ext->prebid->targeting : NULL;
    if (t && v0(t->includewinners) != 1 && v0(t->includebidderkeys) != 1 &&
        (t->includewinners != AP_ORTB_UNSET || t->includebidderkeys != AP_ORTB_UNSET))
        return fail(msg, cap,
                    "ext.prebid.targeting: At least one of includewinners or includebidderkeys "
                    "must be enabled to enable targeting support");
    int channels = (r->site != NULL) + (r->app != NULL) + (r->dooh != NULL);
    if (channels == 0)
        return fail(msg, cap, "One of request.site or request.app or request.dooh must be defined");
    if (channels > 1)
        return fail(msg, cap,
                    "No more than one of request.site or request.app or request.dooh can be "
                    "defined");
    if (r->site && !r->site->id.len && !r->site->page.len)
        return fail(msg, cap,
                    "request.site should include at least one of request.site.id or "
                    "request.site.page.");
    if (r->dooh && !r->dooh->id.len && r->dooh->nvenuetype == 0)
        return fail(msg, cap,
                    "request.dooh should include at least one of request.dooh.id or "
                    "request.dooh.venuetype.");
    if (r->user && r->user->geo && v0(r->user->geo->accuracy) < 0)
        return fail(msg, cap, "request.user.geo.accuracy must be a positive number");
    if (r->regs && r->regs->gdpr != AP_ORTB_UNSET && r->regs->gdpr != 0 && r->regs->gdpr != 1)
        return fail(msg, cap, "request.regs.gdpr must be either 0 or 1");
    if (r->regs && r->regs->coppa != AP_ORTB_UNSET && r->regs->coppa != 0 && r->regs->coppa != 1)
        return fail(msg, cap, "request.regs.coppa must be either 0 or 1");
    if (r->device) {
        const struct ap_ortb_device *d = r->device;
        if (v0(d->w) < 0)
            return fail(msg, cap, "request.device.w must be a positive number");
        if (v0(d->h) < 0)
            return fail(msg, cap, "request.device.h must be a positive number");
        if (v0(d->ppi) < 0)
            return fail(msg, cap, "request.device.ppi must be a positive number");
        if (d->geo && v0(d->geo->accuracy) < 0)
            return fail(msg, cap, "request.device.geo.accuracy must be a positive number");
    }
    for (uint32_t i = 0; i < r->nimp; i++) {
        for (uint32_t k = 0; k < i; k++)
            if (ap_span_eq(r->imp[k].id, r->imp[i].id))
                return fail(msg, cap,
                            "request.imp[%u].id and request.imp[%u].id are both \"%.*s\". Imp IDs "
                            "must be unique.",
                            k, i, (int)(r->imp[i].id.len > 100 ? 100 : r->imp[i].id.len),
                            r->imp[i].id.p);
        int rc = validate_imp(&r->imp[i], i, msg, cap);
        if (rc)
            return rc;
    }
    return AP_OK;
}
