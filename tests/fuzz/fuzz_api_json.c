/*
 * libFuzzer target for the REST API's allocation-free JSON syntax check
 * (ap__api_json_syntax_ok, src/api/ap_api_json.c), differentially against jansson.
 *
 * The check decides whether a jansson failure was the client's fault (400) or the server's
 * (out of memory: 500), so it must agree with jansson exactly on syntax: on every valid UTF-8
 * input, whatever jansson parses the check accepts, and whatever jansson rejects as a syntax
 * error (invalid syntax, premature end, trailing data) the check rejects (jansson treats a NUL
 * byte as the end of input, which the API refuses before jansson sees it: such inputs are
 * compared in the second direction only). jansson's other refusals (numbers out of range,
 * nesting past its depth limit) are not syntax and are not compared. The input is parsed from a buffer of exactly its length (ASan sees an over-read).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ap_api_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what, const uint8_t *data, size_t size)
{
    if (!ok) {
        fprintf(stderr, "fuzz_api_json: %s: %.*s\n", what, (int)(size > 200 ? 200 : size),
                (const char *)data);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    bool ok = ap__api_json_syntax_ok(buf, size);
    check(ok == ap__api_json_syntax_ok(buf, size), "not deterministic", data, size);
    if (ap__api_utf8_valid(buf, size)) {
        json_error_t e;
        memset(&e, 0, sizeof(e));
        json_t *j = json_loadb(buf, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (j) {
            /* jansson stops at a NUL byte as if the input ended there; the check (rightly)
             * refuses NUL outside strings, so only NUL-free input must agree this way */
            check(ok || memchr(data, 0, size), "jansson parses it, the check refuses it", data,
                  size);
            json_decref(j);
        } else {
            switch (json_error_code(&e)) {
            case json_error_invalid_syntax:
            case json_error_premature_end_of_input:
            case json_error_end_of_input_expected:
                check(!ok, "jansson finds a syntax error, the check accepts it", data, size);
                break;
            default:
                break;
            }
        }
    }
    free(buf);
    return 0;
}
