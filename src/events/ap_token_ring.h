/*
 * ap_token_ring: the published token key ring of the data plane (docs/adr: token keys in the
 * store). The keys live in the store (token_keys, ap_store_keys_*); this module reads them into
 * an immutable struct ap_token_rings and publishes it through one atomic pointer. A refresher
 * thread polls the store version every refresh_ms (default 200 ms) and, when it changed,
 * reads the keys again and publishes a new ring, so a rotation (CLI or API) reaches every
 * signer and verifier within about a second, without a restart. Serving (signing decisions),
 * the exchange (through serving) and the beacons (verifying) all read ap_token_ring_get().
 *
 * Two views of the same keys:
 *   sign  overlap = the configured --token-key-overlap: signs with the newest key; verifies
 *         impression/view/click tokens with a replaced key for `overlap` seconds after its
 *         successor was created.
 *   conv  overlap = max(overlap, AP_TOKEN_TTL_CONV + AP_TOKEN_MAX_SKEW): verifies click ids
 *         (AP_TOKEN_CONV), which live 30 days, so a rotation never breaks attribution.
 * Both hold the newest AP_TOKEN_MAX_KEYS keys that are current or retired within the conv
 * window.
 *
 * Start-up: if token_keys is empty, an existing <data-dir>/keys/token.key is imported (tokens
 * already handed out stay valid), else one key is created. The store is the source of truth;
 * each published ring is also exported to that file (mode 0600, atomic rename: the format of
 * ap_token_keyring_save) for offline tools (bench/events.sh, the crash test's loader) that sign
 * test tokens. It sits in the same data dir as the database that holds the same keys.
 *
 * Memory: a published ring is never freed while the module runs (a reader on any thread may
 * hold the pointer for the duration of a request); replaced rings (about 0.8 KB each) are kept
 * on a list and freed by the last ap_token_ring_stop, when no worker runs any more. Rotations
 * are rare administrative actions, so this is bounded in practice.
 *
 * Threads: start/stop/refresh from the main thread (or tests); ap_token_ring_get on any thread,
 * lock-free (one acquire load). start/stop are reference counted: serving and beacons each
 * start it; the first start's options apply.
 */
#ifndef AP_TOKEN_RING_H
#define AP_TOKEN_RING_H

#include <stddef.h>
#include <stdint.h>

#include "ap_token.h"

struct ap_token_rings {
    struct ap_token_keyring sign;
    struct ap_token_keyring conv;
    int64_t store_version; /* the store version these keys were read at */
};

struct ap_token_ring_options {
    const char *data_dir; /* <data-dir>/adplatform.db (migrated), <data-dir>/keys/token.key */
    int64_t overlap;      /* seconds; 0 = AP_TOKEN_DEFAULT_OVERLAP */
    int refresh_ms;       /* store version poll period; 0 = 200 */
};

/* Imports/creates keys if needed, publishes the first ring and starts the refresher (first
 * call); later calls only count a reference. AP_OK, or an error with a message in err. */
int ap_token_ring_start(const struct ap_token_ring_options *o, char *err, size_t errlen);

/* The current ring, never NULL between start and the last stop. Any thread, lock-free. */
const struct ap_token_rings *ap_token_ring_get(void);

/* Reads the keys now and publishes them (what the refresher does on a version change). */
int ap_token_ring_refresh(void);

/* Drops a reference; the last one stops the refresher and frees every ring. */
void ap_token_ring_stop(void);

#endif
