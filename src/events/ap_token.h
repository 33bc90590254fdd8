/*
 * ap_token: signed tracking tokens (the t= parameter of /v1/e/imp, /v1/e/view, /v1/e/click).
 *
 * Wire form, then base64url without padding:
 *   byte 0      version: 3 (4 with a partner id) signed now; 1 (2) still verified, see MAC
 *   bytes 1-2   key id, big endian (which key made the MAC)
 *   byte 3      event type (AP_TOKEN_IMP, _VIEW, _CLICK)
 *   byte 4      flags (AP_TOKEN_F_*: consent at decision time, test traffic)
 *   bytes 5-20  impression id: 128 random bits, the same in the three tokens of one ad
 *   then unsigned LEB128 varints, minimal length: campaign id, ad id, placement id,
 *               publisher id, price (CPM micros charged for this impression), issued at
 *               (Unix seconds)
 *   versions 2 and 4 only: one more varint, the RTB demand partner id (> 0): the token of our
 *               own impression pixel behind a winning partner bid (ADR 0015).
 *   last 16     MAC over every byte before it. Versions 3 and 4: SipHash-2-4 with 128-bit
 *               output (libsodium crypto_shorthash_siphashx24) keyed with a 16-byte subkey
 *               derived from the 32-byte key (ADR 0019: ~10x cheaper than BLAKE2b on these
 *               60-byte messages; a decision signs three). Versions 1 and 2 (signed by earlier
 *               builds, still verified while their key is accepted): BLAKE2b-128 keyed with
 *               the 32-byte key (crypto_generichash).
 * A typical token is 55-65 bytes, 75-87 characters. Decoding is strict: canonical base64url
 * (no padding, unused bits zero), minimal varints, no trailing bytes; so changing any byte or
 * character of a token makes it invalid. The MAC is compared in constant time.
 *
 * Keys: a key ring of up to AP_TOKEN_MAX_KEYS keys {id, created_at, 32 bytes}. The newest key
 * signs; an older key still verifies until `overlap` seconds after the key that replaced it was
 * created (rotation overlap), then it is refused. The keys live in the store (table
 * token_keys; rotated by `adplatform keys rotate` or POST /api/v1/token-keys/rotate) and are
 * published to the workers by ap_token_ring.h; the text-file form below
 * (<data-dir>/keys/token.key, mode 0600, one "ID CREATED_AT HEX64" line per key) is the
 * import format and an export for test tools (docs/adr/0017-token-keys-in-store.md).
 *
 * Lifetimes: a key ring is process lifetime once loaded and is only read afterwards (rotation
 * makes a new ring: ap_token_keyring_rotate works on a copy the caller then publishes).
 * Threads: sign and verify are pure and may run on any thread concurrently on a shared ring;
 * load/save/rotate do file I/O (start-up, or a background thread), never on a worker.
 */
#ifndef AP_TOKEN_H
#define AP_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/ap_span.h"

#define AP_TOKEN_VERSION 3         /* SipHash-128 MAC */
#define AP_TOKEN_VERSION_PARTNER 4 /* version 3 plus a partner id */
#define AP_TOKEN_VERSION_B2 1      /* BLAKE2b-128 MAC: verified, no longer signed */
#define AP_TOKEN_VERSION_B2_PARTNER 2
#define AP_TOKEN_SIP_KEY_BYTES 16
#define AP_TOKEN_KEY_BYTES 32
#define AP_TOKEN_MAC_BYTES 16
#define AP_TOKEN_ID_BYTES 16
#define AP_TOKEN_MAX_KEYS 8
#define AP_TOKEN_MAX_BIN 112                 /* longest binary token */
#define AP_TOKEN_MAX_TEXT 151                /* longest base64url token, NUL included */
#define AP_TOKEN_DEFAULT_OVERLAP (48 * 3600) /* old keys verify this long after rotation */
#define AP_TOKEN_TTL_IMP 3600                /* default lifetimes by event type (seconds) */
#define AP_TOKEN_TTL_VIEW 3600
#define AP_TOKEN_TTL_CLICK (24 * 3600)
#define AP_TOKEN_TTL_CONV (30 * 24 * 3600) /* attribution window: a click id this old converts */
#define AP_TOKEN_MAX_HEX (2 * AP_TOKEN_MAX_BIN + 1) /* longest hex token, NUL included */
#define AP_TOKEN_MAX_SKEW 300 /* a token "issued" this far in the future is still accepted */

/* AP_TOKEN_CONV: a click id, signed when a click is accepted (issued_at = the click's time) and
 * handed to the advertiser through the landing URL's {click_id} macro, in lower-case hex; the
 * conversion endpoint verifies it, so no click table is needed. */
enum ap_token_type { AP_TOKEN_IMP = 1, AP_TOKEN_VIEW = 2, AP_TOKEN_CLICK = 3, AP_TOKEN_CONV = 4 };

#define AP_TOKEN_F_GDPR 0x01u            /* GDPR applied to the request */
#define AP_TOKEN_F_STORAGE 0x02u         /* storage consent */
#define AP_TOKEN_F_PERSONALISATION 0x04u /* personalisation consent */
#define AP_TOKEN_F_TEST 0x80u            /* test traffic: never billed */

struct ap_token {
    uint8_t version;
    uint16_t key_id;
    uint8_t type;  /* enum ap_token_type */
    uint8_t flags; /* AP_TOKEN_F_* */
    uint8_t imp_id[AP_TOKEN_ID_BYTES];
    int64_t campaign_id, ad_id, placement_id, publisher_id;
    int64_t price_micros; /* >= 0 */
    int64_t issued_at;    /* Unix seconds, >= 0 */
    int64_t partner_id;   /* RTB demand partner id (version 2), 0 = none (version 1) */
};

struct ap_token_key {
    uint16_t id; /* 1..65535 */
    int64_t created_at;
    uint8_t key[AP_TOKEN_KEY_BYTES];
    uint8_t sip[AP_TOKEN_SIP_KEY_BYTES]; /* derived from key by ap_token_keyring_add */
};

struct ap_token_keyring {
    int n;           /* keys[0..n), oldest first; keys[n-1] signs */
    int64_t overlap; /* seconds; see above */
    struct ap_token_key keys[AP_TOKEN_MAX_KEYS];
};

/* Encodes and signs t with the ring's current key (t->version and t->key_id are set from it).
 * Writes a NUL-terminated base64url string into out[cap] and returns its length, or a negative
 * AP_EINVAL (empty ring, negative ids/price/time, bad type) / AP_ELIMIT (cap too small; cap
 * AP_TOKEN_MAX_TEXT always suffices). Pure; any thread. */
int ap_token_sign(const struct ap_token_keyring *kr, struct ap_token *t, char *out, size_t cap);

/* Decodes and verifies text: canonical encoding, known version, a key of the ring that is
 * still accepted at now, a valid MAC, and issued_at within [now - max_age, now + skew]. On
 * success fills *t and returns AP_OK. Errors (nothing is filled): AP_EINVAL malformed,
 * AP_EPERM bad MAC or unknown/retired key, AP_ETIMEDOUT expired or from the future. Pure; any
 * thread; constant time in the MAC comparison. */
int ap_token_verify(const struct ap_token_keyring *kr, struct ap_span text, int64_t now,
                    int64_t max_age, struct ap_token *t);

/* The same in lower-case hex (click ids): out[cap], AP_TOKEN_MAX_HEX always suffices; verify
 * accepts lower-case hex only (canonical), with the checks and errors of ap_token_verify. */
int ap_token_sign_hex(const struct ap_token_keyring *kr, struct ap_token *t, char *out,
                      size_t cap);
int ap_token_verify_hex(const struct ap_token_keyring *kr, struct ap_span text, int64_t now,
                        int64_t max_age, struct ap_token *t);

/* The default max_age for an event type (AP_TOKEN_TTL_*), 0 for an unknown type. */
int64_t ap_token_ttl(enum ap_token_type type);

/* Loads the ring from path; if the file does not exist, creates it with one fresh key (and its
 * directory, mode 0700). overlap: seconds (0 = AP_TOKEN_DEFAULT_OVERLAP). AP_OK, AP_EIO,
 * AP_ECORRUPT (bad line), AP_EPERM (file readable by others: refused). Blocking file I/O. */
int ap_token_keyring_load(struct ap_token_keyring *kr, const char *path, int64_t overlap,
                          int64_t now);

/* Writes the ring to path atomically (temp file + rename), mode 0600. AP_OK or AP_EIO. */
int ap_token_keyring_save(const struct ap_token_keyring *kr, const char *path);

/* Adds a fresh random key (id = newest id + 1, created_at = now) that becomes the signing key;
 * drops keys that are no longer accepted at now, and the oldest if the ring is full. AP_OK. */
int ap_token_keyring_rotate(struct ap_token_keyring *kr, int64_t now);

/* Adds a given key (tests, key files made elsewhere). AP_OK, AP_ELIMIT, AP_EEXIST (same id). */
int ap_token_keyring_add(struct ap_token_keyring *kr, uint16_t id, int64_t created_at,
                         const uint8_t key[AP_TOKEN_KEY_BYTES]);

/* true if the key at index i of the ring verifies tokens at time now. */
bool ap_token_key_accepted(const struct ap_token_keyring *kr, int i, int64_t now);

/* base64url without padding. encode: returns the length written (NUL added), or AP_ELIMIT.
 * decode: strict (canonical), returns the byte count or AP_EINVAL / AP_ELIMIT. */
int ap_token_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap);
int ap_token_b64_decode(struct ap_span in, uint8_t *out, size_t cap);

#endif
