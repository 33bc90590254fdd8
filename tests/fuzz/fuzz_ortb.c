/*
 * libFuzzer target for the OpenRTB parser, normaliser, validator and writer (src/rtb/ap_ortb*.c).
 *
 * The input is a request body. It is parsed as a bid request and as a bid response from a buffer
 * of exactly its length (ASan sees a one-byte over-read). A request that parses is normalised,
 * validated and written; the written text must parse again and write to the same bytes (the
 * writer emits what the parser reads back). Any broken invariant aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ap_arena.h"
#include "core/ap_buf.h"
#include "core/ap_error.h"
#include "rtb/ap_ortb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct ap_arena a;
    ap_arena_init(&a, 8192, 64u << 20);
    char msg[AP_ORTB_ERR_MAX];
    struct ap_ortb_request *r = NULL;
    int rc = ap_ortb_parse_request(buf, size, &a, &r, msg, sizeof(msg));
    if (rc != AP_OK && rc != AP_EINVAL && rc != AP_ELIMIT && rc != AP_ENOMEM)
        abort();
    if (rc != AP_OK && !msg[0] && rc != AP_ENOMEM)
        abort(); /* every refusal names its reason */
    if (rc == AP_OK) {
        struct ap_buf b1, b2;
        ap_buf_init(&b1, 64u << 20);
        ap_buf_init(&b2, 64u << 20);
        if (ap_ortb_normalize(r, &a) != AP_OK)
            abort();
        (void)ap_ortb_validate(r, msg, sizeof(msg));
        if (ap_ortb_write_request(&b1, r) != AP_OK)
            abort();
        struct ap_ortb_request *r2 = NULL;
        if (ap_ortb_parse_request(b1.data, b1.len, &a, &r2, msg, sizeof(msg)) != AP_OK)
            abort();
        if (ap_ortb_write_request(&b2, r2) != AP_OK)
            abort();
        if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
            abort();
        ap_buf_free(&b1);
        ap_buf_free(&b2);
    }
    ap_arena_reset(&a);
    struct ap_ortb_response *resp = NULL;
    rc = ap_ortb_parse_response(buf, size, &a, &resp, msg, sizeof(msg));
    if (rc == AP_OK) {
        struct ap_buf b;
        ap_buf_init(&b, 64u << 20);
        if (ap_ortb_write_response(&b, resp) != AP_OK)
            abort();
        ap_buf_free(&b);
    }
    ap_arena_destroy(&a);
    free(buf);
    return 0;
}
