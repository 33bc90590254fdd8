/*
 * ap_consent: privacy signals of a request. Implements ap_consent_parse of the edge contract
 * (ap_context.h) and adds the decoders behind it:
 *
 *   - IAB TCF v2 (GDPR): the core segment of the TC string (base64url, the segment before the
 *     first '.'): version, created, last updated, CMP id and version, consent screen, language,
 *     vendor list version, policy version, service-specific flag, special feature opt-ins,
 *     purpose consents and legitimate interests, purpose-one treatment, publisher country, then
 *     the vendor consent section (bit field or ranges). Decoded straight from the base64 text
 *     (no buffer, no allocation, any length).
 *   - US Privacy (CCPA) strings, "1YNN": version 1, notice, opt-out of sale, LSPA.
 *   - GPP (IAB Global Privacy Platform) strings are not decoded yet (TODO): the decision API may
 *     pass them through; nothing here reads them.
 *
 * Policy (struct ap_serve_ctx documents it): when GDPR applies, storage needs purpose 1 and
 * personalisation purposes 3 and 4; a missing or unparsable TC string means no consent. A US
 * Privacy opt-out of sale turns storage and personalisation off, as GDPR without consent does
 * (ap_consent_apply_usp).
 *
 * Everything here is pure: no state, no allocation; any thread.
 */
#ifndef AP_CONSENT_H
#define AP_CONSENT_H

#include <stdbool.h>
#include <stdint.h>

#include "ap_context.h"

#define AP_CONSENT_TCF_PURPOSES 24  /* purpose bits in the core string */
#define AP_CONSENT_TCF_MIN_BITS 213 /* core fields up to and including PublisherCC */

/* The decoded core segment (everything but the per-vendor bits, which ap_consent_tcf_vendor
 * reads on demand). Times are deciseconds since the Unix epoch, as encoded. */
struct ap_consent_tcf {
    unsigned version; /* 2 */
    uint64_t created_ds, updated_ds;
    unsigned cmp_id, cmp_version, consent_screen;
    char language[3]; /* "EN" */
    unsigned vendor_list_version, policy_version;
    bool service_specific, non_standard_stacks;
    uint32_t special_features; /* bit (n-1) = special feature n opted in */
    uint32_t purposes_consent; /* bit (n-1) = purpose n consented */
    uint32_t purposes_li;      /* bit (n-1) = purpose n legitimate interest established */
    bool purpose_one_treatment;
    char publisher_cc[3];   /* "DE" */
    unsigned max_vendor_id; /* of the vendor consent section */
    bool vendor_ranges;     /* range encoding (else a bit field) */
};

/* Decodes the core segment of a TC string. AP_OK, or AP_EINVAL: not base64url, too short, or
 * not version 2. Pure. */
int ap_consent_tcf_decode(struct ap_span tc, struct ap_consent_tcf *out);

/* true if purpose n (1..24) is consented in a decoded string. */
bool ap_consent_tcf_purpose(const struct ap_consent_tcf *t, unsigned n);

/* true if vendor_id (1..65535) has consent in the vendor consent section of tc; false also if
 * tc does not decode. Pure. */
bool ap_consent_tcf_vendor(struct ap_span tc, unsigned vendor_id);

/* A US Privacy string: each flag is 'Y', 'N' or '-' (not applicable). */
struct ap_consent_usp {
    char notice, opt_out_sale, lspa;
};

/* Parses "1YNN"-style strings. AP_OK or AP_EINVAL (not 4 characters, version not 1, a flag
 * not Y/N/-). */
int ap_consent_usp_parse(struct ap_span s, struct ap_consent_usp *out);

/* Applies a US Privacy string to ctx: an opt-out of sale ('Y') is treated like GDPR without
 * consent: storage off (no cookie, no user key, so frequency caps fall back to their
 * non-personal mode) and personalisation off (no behavioural targeting). An empty or invalid
 * string changes nothing. Pure. */
void ap_consent_apply_usp(struct ap_span usp, struct ap_serve_ctx *ctx);

#endif
