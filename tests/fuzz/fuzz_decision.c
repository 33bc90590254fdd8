/*
 * libFuzzer target for the decision request body (POST /v1/decision, src/serve/ap_serve_http.c:
 * ap__serve_decision_parse, the zero-copy reader the data plane runs on every request).
 *
 * The input is a request body, parsed from a buffer of exactly its length (ASan sees a one-byte
 * over-read), with a small arena (so allocation failures are reached too). Invariants:
 *   - the answer is AP_OK or AP_EINVAL, and parsing the same bytes again gives the same answer;
 *   - on AP_OK: 1..20 placements with positive ids and counts 1..10, no empty div, at most the
 *     maximum keywords/segments, each 1..64 bytes, and every string lies inside the body or the
 *     arena's memory (never points past the input);
 *   - on AP_OK for a body that is valid UTF-8 without \u escapes, jansson also accepts it as
 *     JSON: the hand-written reader is never laxer than the grammar (no trailing commas, bare
 *     words, leading zeros, ...).
 * Any broken invariant aborts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ap_arena.h"
#include "core/ap_error.h"
#include "serve/ap_serve_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_decision: invariant broken: %s\n", what);
        abort();
    }
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* A span is fine if empty, or inside the body, or (escaped strings) not overlapping it at all:
 * then it is arena memory, which ASan checks on its own. */
static void check_span(struct ap_span s, const char *buf, size_t size, size_t max, const char *what)
{
    if (!s.len)
        return;
    check(s.len <= max, what);
    const char *end = buf + size;
    bool inside = s.p >= buf && s.p + s.len <= end;
    bool outside = s.p + s.len <= buf || s.p >= end;
    check(inside || outside, what);
    volatile char sink = s.p[0];
    sink = s.p[s.len - 1];
    (void)sink;
}

static int parse(const char *buf, size_t size, struct ap__serve_decision_req *r)
{
    struct ap_arena a;
    ap_arena_init(&a, 4096, 1u << 20);
    int rc = ap__serve_decision_parse(buf, size, &a, r);
    check(rc == AP_OK || rc == AP_EINVAL, "return code");
    if (rc == AP_OK) {
        check(r->nslots >= 1 && r->nslots <= AP_SERVE_MAX_PLACEMENTS, "placement count");
        for (int i = 0; i < r->nslots; i++) {
            check(r->slots[i].placement_id > 0, "placement id");
            check(r->slots[i].count >= 1 && r->slots[i].count <= AP_SERVE_MAX_COUNT, "count");
            check(r->divs[i].len > 0, "div");
            check_span(r->divs[i], buf, size, size + 24, "div span");
        }
        check(r->nkeywords >= 0 && r->nkeywords <= AP_SERVE_CTX_MAX_KEYWORDS, "keywords");
        for (int i = 0; i < r->nkeywords; i++) {
            check(r->keywords[i].len >= 1 && r->keywords[i].len <= 64, "keyword length");
            check_span(r->keywords[i], buf, size, 64, "keyword span");
        }
        check(r->nsegments >= 0 && r->nsegments <= AP_SERVE_CTX_MAX_SEGMENTS, "segments");
        for (int i = 0; i < r->nsegments; i++) {
            check(r->segments[i].len >= 1 && r->segments[i].len <= 64, "segment length");
            check_span(r->segments[i], buf, size, 64, "segment span");
        }
        const struct ap_span *str[] = {&r->user_key, &r->url, &r->referrer, &r->ip,
                                       &r->ua,       &r->tcf, &r->usp};
        for (size_t i = 0; i < sizeof(str) / sizeof(str[0]); i++)
            check_span(*str[i], buf, size, size, "string span");
    } else {
        check(r->nslots == 0, "no placements on failure");
    }
    ap_arena_destroy(&a);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct ap__serve_decision_req r1, r2;
    int rc = parse(buf, size, &r1);
    check(parse(buf, size, &r2) == rc, "same answer twice");
    if (rc == AP_OK) {
        check(r1.nslots == r2.nslots && r1.nkeywords == r2.nkeywords, "same result twice");
        if (utf8_ok(data, size) && !memmem(data, size, "\\u", 2)) {
            json_error_t e;
            json_t *j = json_loadb(buf, size, JSON_DECODE_ANY, &e);
            if (!j)
                fprintf(stderr, "jansson: %s at %d\n", e.text, e.position);
            check(j != NULL, "accepted a body that is not JSON");
            check(json_is_object(j), "accepted a body that is not an object");
            json_decref(j);
        }
    }
    free(buf);
    return 0;
}
