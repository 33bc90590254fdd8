/*
 * ap_consent: TCF v2 core strings and US Privacy strings. Bits are read straight from the
 * base64url text: bit i lives in character i / 6, at position 5 - i % 6 of its 6-bit value.
 */
#include "ap_consent.h"

#include <string.h>

#include "../core/ap_error.h"

/* Base64url value of c, or -1. TCF strings are base64url; '+' and '/' are accepted too (some
 * CMPs emit standard base64), padding '=' ends the text. */
static int b64(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

struct bits {
    const char *p;
    size_t nbits; /* bits available */
    size_t pos;
    bool overrun; /* a read went past the end */
};

/* The core segment of tc (up to the first '.') as a bit reader; false if it has a character
 * that is not base64(url). */
static bool bits_init(struct bits *b, struct ap_span tc)
{
    size_t n = 0;
    while (n < tc.len && tc.p[n] != '.' && tc.p[n] != '=') {
        if (b64(tc.p[n]) < 0)
            return false;
        n++;
    }
    b->p = tc.p;
    b->nbits = n * 6;
    b->pos = 0;
    b->overrun = false;
    return true;
}

static uint64_t take(struct bits *b, unsigned n)
{
    uint64_t v = 0;
    if (b->pos + n > b->nbits) {
        b->overrun = true;
        b->pos = b->nbits;
        return 0;
    }
    for (unsigned i = 0; i < n; i++, b->pos++) {
        unsigned c = (unsigned)b64(b->p[b->pos / 6]);
        v = (v << 1) | ((c >> (5 - b->pos % 6)) & 1u);
    }
    return v;
}

static void letters(struct bits *b, char out[3])
{
    out[0] = (char)('A' + take(b, 6));
    out[1] = (char)('A' + take(b, 6));
    out[2] = '\0';
    if (out[0] > 'Z' || out[1] > 'Z')
        out[0] = out[1] = '\0'; /* not a letter pair: unknown */
}

static int decode_core(struct bits *b, struct ap_span tc, struct ap_consent_tcf *t)
{
    memset(t, 0, sizeof(*t));
    if (!tc.p || !bits_init(b, tc) || b->nbits < AP_CONSENT_TCF_MIN_BITS)
        return AP_EINVAL;
    t->version = (unsigned)take(b, 6);
    if (t->version != 2)
        return AP_EINVAL;
    t->created_ds = take(b, 36);
    t->updated_ds = take(b, 36);
    t->cmp_id = (unsigned)take(b, 12);
    t->cmp_version = (unsigned)take(b, 12);
    t->consent_screen = (unsigned)take(b, 6);
    letters(b, t->language);
    t->vendor_list_version = (unsigned)take(b, 12);
    t->policy_version = (unsigned)take(b, 6);
    t->service_specific = take(b, 1);
    t->non_standard_stacks = take(b, 1);
    /* bit fields are most significant first: feature/purpose 1 is the first bit read */
    uint64_t sf = take(b, 12), pc = take(b, 24), pl = take(b, 24);
    for (unsigned i = 0; i < 12; i++)
        t->special_features |= (uint32_t)((sf >> (11 - i)) & 1u) << i;
    for (unsigned i = 0; i < 24; i++) {
        t->purposes_consent |= (uint32_t)((pc >> (23 - i)) & 1u) << i;
        t->purposes_li |= (uint32_t)((pl >> (23 - i)) & 1u) << i;
    }
    t->purpose_one_treatment = take(b, 1);
    letters(b, t->publisher_cc);
    /* the vendor consent section's header; strings cut right after PublisherCC still give the
     * purposes (max_vendor_id 0) */
    if (b->pos + 17 <= b->nbits) {
        t->max_vendor_id = (unsigned)take(b, 16);
        t->vendor_ranges = take(b, 1);
    }
    return b->overrun ? AP_EINVAL : AP_OK;
}

int ap_consent_tcf_decode(struct ap_span tc, struct ap_consent_tcf *out)
{
    struct bits b;
    return decode_core(&b, tc, out);
}

bool ap_consent_tcf_purpose(const struct ap_consent_tcf *t, unsigned n)
{
    return n >= 1 && n <= AP_CONSENT_TCF_PURPOSES && (t->purposes_consent >> (n - 1)) & 1u;
}

bool ap_consent_tcf_vendor(struct ap_span tc, unsigned vendor_id)
{
    struct bits b;
    struct ap_consent_tcf t;
    if (decode_core(&b, tc, &t) != AP_OK || vendor_id < 1 || vendor_id > t.max_vendor_id)
        return false;
    if (!t.vendor_ranges) {
        b.pos += vendor_id - 1; /* bit field: vendor 1 first */
        return take(&b, 1) == 1 && !b.overrun;
    }
    unsigned entries = (unsigned)take(&b, 12);
    for (unsigned i = 0; i < entries && !b.overrun; i++) {
        bool range = take(&b, 1);
        unsigned start = (unsigned)take(&b, 16), end = range ? (unsigned)take(&b, 16) : start;
        if (!b.overrun && vendor_id >= start && vendor_id <= end)
            return true;
    }
    return false;
}

void ap_consent_parse(struct ap_span tcf, bool gdpr, struct ap_serve_ctx *ctx)
{
    struct ap_consent_tcf t;
    bool known = tcf.len > 0 && ap_consent_tcf_decode(tcf, &t) == AP_OK;
    ctx->gdpr_applies = gdpr;
    ctx->consent_known = known;
    if (!gdpr) {
        ctx->storage_allowed = true;
        ctx->personalisation_allowed = true;
        return;
    }
    ctx->storage_allowed = known && ap_consent_tcf_purpose(&t, 1);
    ctx->personalisation_allowed =
        known && ap_consent_tcf_purpose(&t, 3) && ap_consent_tcf_purpose(&t, 4);
}

static bool usp_flag(char c)
{
    return c == 'Y' || c == 'N' || c == '-' || c == 'y' || c == 'n';
}

int ap_consent_usp_parse(struct ap_span s, struct ap_consent_usp *out)
{
    if (s.len != 4 || s.p[0] != '1' || !usp_flag(s.p[1]) || !usp_flag(s.p[2]) || !usp_flag(s.p[3]))
        return AP_EINVAL;
    out->notice = s.p[1] == 'y' ? 'Y' : s.p[1] == 'n' ? 'N' : s.p[1];
    out->opt_out_sale = s.p[2] == 'y' ? 'Y' : s.p[2] == 'n' ? 'N' : s.p[2];
    out->lspa = s.p[3] == 'y' ? 'Y' : s.p[3] == 'n' ? 'N' : s.p[3];
    return AP_OK;
}

void ap_consent_apply_usp(struct ap_span usp, struct ap_serve_ctx *ctx)
{
    struct ap_consent_usp u;
    if (ap_consent_usp_parse(usp, &u) == AP_OK && u.opt_out_sale == 'Y') {
        ctx->storage_allowed = false;
        ctx->personalisation_allowed = false;
    }
}
