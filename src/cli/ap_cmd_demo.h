/*
 * ap_cmd_demo: `adplatform demo --data-dir DIR [--json]` loads a realistic demo into the store
 * under DIR, offline (the daemon may be running: SQLite serialises writers, and the serving
 * snapshot picks the rows up within a second):
 *   - four advertisers (USD, US time zones): three with standard campaigns that carry budgets,
 *     even or asap pacing, frequency caps, CPM/CPC pricing and targeting (countries, devices,
 *     dayparts, keywords), and the publisher's own house advertiser whose untargeted, uncapped,
 *     unbudgeted house campaign has a creative of every demo size, so every demo placement is
 *     filled for any request (the contract: desktop Chrome, US, any hour, any day);
 *   - generated PNG creatives of the IAB sizes 728x90, 300x250, 160x600 and 320x50 (drawn here:
 *     colours, shapes, a 5x7 bitmap font; encoded with zlib), stored content-addressed the way
 *     the REST API's upload stores them: <DIR>/creatives/<2 hex>/<sha256>.png;
 *   - a publisher, its site and four placements (one per size);
 *   - <DIR>/demo.json: the placement ids by slot, read by GET /demo (src/serve/ap_tag.h).
 * Idempotent: every object is looked up first (by name, or by content hash for creatives) and
 * only created when missing, so a second run changes nothing. Rows are written through the
 * store API with a NULL (system) actor, so they are validated and audited like any other.
 *
 * The main thread of its own process.
 */
#ifndef AP_CMD_DEMO_H
#define AP_CMD_DEMO_H

#include <stddef.h>
#include <stdint.h>

/* argv: the flags after "demo". Returns the exit code: 0 done, 1 the store or the file system
 * failed (message on stderr), 2 usage. Prints what it created (or found) on stdout. */
int ap_cmd_demo(int argc, char **argv);

/* Encodes a width x height RGB image (rgb: 3 bytes per pixel, rows top to bottom) as a PNG into
 * a new malloc'ed buffer (*out, *len; the caller frees). AP_OK, AP_EINVAL, AP_ENOMEM. Pure. */
int ap_cmd_demo_png(const uint8_t *rgb, uint32_t width, uint32_t height, uint8_t **out,
                    size_t *len);

#endif
