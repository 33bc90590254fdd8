#include "ap_token.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ap_error.h"

#define HEADER_BYTES (5 + AP_TOKEN_ID_BYTES)

/* ---- base64url ---------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int ap_token_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    size_t need = (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
    if (need + 1 > cap || need > INT32_MAX)
        return AP_ELIMIT;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return (int)o;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int ap_token_b64_decode(struct ap_span in, uint8_t *out, size_t cap)
{
    size_t n = in.len;
    if (n % 4 == 1)
        return AP_EINVAL;
    size_t bytes = (n / 4) * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (bytes > cap)
        return AP_ELIMIT;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)in.p[i]);
        if (v < 0)
            return AP_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical: unused low bits must be zero */
        return AP_EINVAL;
    return (int)o;
}

/* ---- varints ------------------------------------------------------------------------------ */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Minimal-length LEB128 up to 63 bits. Returns bytes used, 0 if malformed. */
static size_t get_varint(const uint8_t *p, size_t len, int64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 9; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i > 0 && p[i] == 0) /* overlong: a trailing zero group */
                return 0;
            if (v > (uint64_t)INT64_MAX)
                return 0;
            *out = (int64_t)v;
            return i + 1;
        }
    }
    return 0;
}

/* ---- sign / verify ------------------------------------------------------------------------ */

int64_t ap_token_ttl(enum ap_token_type type)
{
    switch (type) {
    case AP_TOKEN_IMP:
        return AP_TOKEN_TTL_IMP;
    case AP_TOKEN_VIEW:
        return AP_TOKEN_TTL_VIEW;
    case AP_TOKEN_CLICK:
        return AP_TOKEN_TTL_CLICK;
    case AP_TOKEN_CONV:
        return AP_TOKEN_TTL_CONV;
    }
    return 0;
}

static bool has_partner(uint8_t version)
{
    return version == AP_TOKEN_VERSION_PARTNER || version == AP_TOKEN_VERSION_B2_PARTNER;
}

/* The MAC of the token version: SipHash-128 (3, 4) or BLAKE2b-128 (1, 2). */
static void mac(const struct ap_token_key *k, uint8_t version, const uint8_t *msg, size_t n,
                uint8_t out[AP_TOKEN_MAC_BYTES])
{
    _Static_assert(crypto_shorthash_siphashx24_BYTES == AP_TOKEN_MAC_BYTES, "MAC size");
    if (version == AP_TOKEN_VERSION || version == AP_TOKEN_VERSION_PARTNER)
        crypto_shorthash_siphashx24(out, msg, n, k->sip);
    else
        crypto_generichash(out, AP_TOKEN_MAC_BYTES, msg, n, k->key, AP_TOKEN_KEY_BYTES);
}

/* The SipHash subkey: BLAKE2b keyed with the token key over a fixed label. */
static void derive_sip(struct ap_token_key *k)
{
    static const char LABEL[] = "adplatform token siphash-128 key v1";
    crypto_generichash(k->sip, sizeof(k->sip), (const unsigned char *)LABEL, sizeof(LABEL) - 1,
                       k->key, AP_TOKEN_KEY_BYTES);
}

/* The binary token into bin[AP_TOKEN_MAX_BIN]: its length, or AP_EINVAL. */
static int encode(const struct ap_token_keyring *kr, struct ap_token *t, uint8_t *bin)
{
    if (!kr || kr->n <= 0 || t->type < AP_TOKEN_IMP || t->type > AP_TOKEN_CONV ||
        t->campaign_id < 0 || t->ad_id < 0 || t->placement_id < 0 || t->publisher_id < 0 ||
        t->price_micros < 0 || t->issued_at < 0 || t->partner_id < 0)
        return AP_EINVAL;
    const struct ap_token_key *k = &kr->keys[kr->n - 1];
    t->version = t->partner_id ? AP_TOKEN_VERSION_PARTNER : AP_TOKEN_VERSION;
    t->key_id = k->id;
    bin[0] = t->version;
    bin[1] = (uint8_t)(k->id >> 8);
    bin[2] = (uint8_t)k->id;
    bin[3] = t->type;
    bin[4] = t->flags;
    memcpy(bin + 5, t->imp_id, AP_TOKEN_ID_BYTES);
    size_t n = HEADER_BYTES;
    n += put_varint(bin + n, (uint64_t)t->campaign_id);
    n += put_varint(bin + n, (uint64_t)t->ad_id);
    n += put_varint(bin + n, (uint64_t)t->placement_id);
    n += put_varint(bin + n, (uint64_t)t->publisher_id);
    n += put_varint(bin + n, (uint64_t)t->price_micros);
    n += put_varint(bin + n, (uint64_t)t->issued_at);
    if (has_partner(t->version))
        n += put_varint(bin + n, (uint64_t)t->partner_id);
    mac(k, t->version, bin, n, bin + n);
    n += AP_TOKEN_MAC_BYTES;
    return (int)n;
}

int ap_token_sign(const struct ap_token_keyring *kr, struct ap_token *t, char *out, size_t cap)
{
    uint8_t bin[AP_TOKEN_MAX_BIN];
    int n = encode(kr, t, bin);
    return n < 0 ? n : ap_token_b64_encode(bin, (size_t)n, out, cap);
}

int ap_token_sign_hex(const struct ap_token_keyring *kr, struct ap_token *t, char *out,
                      size_t cap)
{
    static const char HEX[] = "0123456789abcdef";
    uint8_t bin[AP_TOKEN_MAX_BIN];
    int n = encode(kr, t, bin);
    if (n < 0)
        return n;
    if ((size_t)n * 2 + 1 > cap)
        return AP_ELIMIT;
    for (int i = 0; i < n; i++) {
        out[2 * i] = HEX[bin[i] >> 4];
        out[2 * i + 1] = HEX[bin[i] & 15];
    }
    out[2 * n] = '\0';
    return 2 * n;
}

bool ap_token_key_accepted(const struct ap_token_keyring *kr, int i, int64_t now)
{
    if (i < 0 || i >= kr->n)
        return false;
    if (i == kr->n - 1)
        return true;
    /* replaced by keys[i + 1]: accepted for `overlap` seconds after that one was created */
    return now <= kr->keys[i + 1].created_at + kr->overlap;
}

static int verify_bin(const struct ap_token_keyring *kr, const uint8_t *bin, int len,
                      int64_t now, int64_t max_age, struct ap_token *out)
{
    if (len < HEADER_BYTES + 6 + AP_TOKEN_MAC_BYTES)
        return AP_EINVAL;
    if (bin[0] < AP_TOKEN_VERSION_B2 || bin[0] > AP_TOKEN_VERSION_PARTNER ||
        bin[3] < AP_TOKEN_IMP || bin[3] > AP_TOKEN_CONV)
        return AP_EINVAL;
    struct ap_token t;
    memset(&t, 0, sizeof(t));
    t.version = bin[0];
    t.key_id = (uint16_t)(bin[1] << 8 | bin[2]);
    t.type = bin[3];
    t.flags = bin[4];
    memcpy(t.imp_id, bin + 5, AP_TOKEN_ID_BYTES);
    size_t body = (size_t)len - AP_TOKEN_MAC_BYTES, p = HEADER_BYTES, used;
    int64_t *fields[7] = {&t.campaign_id,  &t.ad_id,     &t.placement_id, &t.publisher_id,
                          &t.price_micros, &t.issued_at, &t.partner_id};
    int nfields = has_partner(t.version) ? 7 : 6;
    for (int i = 0; i < nfields; i++) {
        used = get_varint(bin + p, body - p, fields[i]);
        if (!used)
            return AP_EINVAL;
        p += used;
    }
    if (p != body)
        return AP_EINVAL;
    int ki = -1;
    for (int i = 0; i < kr->n; i++)
        if (kr->keys[i].id == t.key_id)
            ki = i;
    uint8_t want[AP_TOKEN_MAC_BYTES];
    /* compute a MAC even for an unknown key, so timing says nothing about key ids */
    mac(ki >= 0 ? &kr->keys[ki] : &kr->keys[0], t.version, bin, body, want);
    bool ok = sodium_memcmp(want, bin + body, AP_TOKEN_MAC_BYTES) == 0;
    if (!ok || ki < 0 || !ap_token_key_accepted(kr, ki, now))
        return AP_EPERM;
    if (t.issued_at > now + AP_TOKEN_MAX_SKEW || now - t.issued_at > max_age)
        return AP_ETIMEDOUT;
    *out = t;
    return AP_OK;
}

int ap_token_verify(const struct ap_token_keyring *kr, struct ap_span text, int64_t now,
                    int64_t max_age, struct ap_token *out)
{
    uint8_t bin[AP_TOKEN_MAX_BIN];
    if (text.len == 0 || text.len >= AP_TOKEN_MAX_TEXT)
        return AP_EINVAL;
    int len = ap_token_b64_decode(text, bin, sizeof(bin));
    if (len < 0)
        return AP_EINVAL;
    return verify_bin(kr, bin, len, now, max_age, out);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int ap_token_verify_hex(const struct ap_token_keyring *kr, struct ap_span text, int64_t now,
                        int64_t max_age, struct ap_token *out)
{
    uint8_t bin[AP_TOKEN_MAX_BIN];
    if (text.len == 0 || text.len % 2 || text.len / 2 > sizeof(bin))
        return AP_EINVAL;
    for (size_t i = 0; i < text.len; i += 2) {
        int hi = hex_val(text.p[i]), lo = hex_val(text.p[i + 1]);
        if (hi < 0 || lo < 0)
            return AP_EINVAL;
        bin[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return verify_bin(kr, bin, (int)(text.len / 2), now, max_age, out);
}

/* ---- key ring ------------------------------------------------------------------------------ */

int ap_token_keyring_add(struct ap_token_keyring *kr, uint16_t id, int64_t created_at,
                         const uint8_t key[AP_TOKEN_KEY_BYTES])
{
    if (id == 0)
        return AP_EINVAL;
    for (int i = 0; i < kr->n; i++)
        if (kr->keys[i].id == id)
            return AP_EEXIST;
    if (kr->n >= AP_TOKEN_MAX_KEYS)
        return AP_ELIMIT;
    /* keep oldest first (by created_at, then id) */
    int at = kr->n;
    while (at > 0 && (kr->keys[at - 1].created_at > created_at ||
                      (kr->keys[at - 1].created_at == created_at && kr->keys[at - 1].id > id))) {
        kr->keys[at] = kr->keys[at - 1];
        at--;
    }
    kr->keys[at].id = id;
    kr->keys[at].created_at = created_at;
    memcpy(kr->keys[at].key, key, AP_TOKEN_KEY_BYTES);
    derive_sip(&kr->keys[at]);
    kr->n++;
    return AP_OK;
}

int ap_token_keyring_rotate(struct ap_token_keyring *kr, int64_t now)
{
    /* drop keys no longer accepted (never the newest) */
    int keep = 0;
    for (int i = 0; i < kr->n; i++)
        if (ap_token_key_accepted(kr, i, now))
            kr->keys[keep++] = kr->keys[i];
    kr->n = keep;
    if (kr->n == AP_TOKEN_MAX_KEYS) {
        memmove(&kr->keys[0], &kr->keys[1], sizeof(kr->keys[0]) * (size_t)(kr->n - 1));
        kr->n--;
    }
    uint16_t id = 1;
    for (int i = 0; i < kr->n; i++)
        if (kr->keys[i].id >= id)
            id = (uint16_t)(kr->keys[i].id == UINT16_MAX ? 1 : kr->keys[i].id + 1);
    if (kr->n > 0 && now < kr->keys[kr->n - 1].created_at)
        now = kr->keys[kr->n - 1].created_at; /* stay ordered even if the clock went back */
    uint8_t key[AP_TOKEN_KEY_BYTES];
    randombytes_buf(key, sizeof(key));
    int rc = ap_token_keyring_add(kr, id, now, key);
    sodium_memzero(key, sizeof(key));
    return rc;
}

int ap_token_keyring_save(const struct ap_token_keyring *kr, const char *path)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return AP_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ap_error_from_errno(errno);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return AP_EIO;
    }
    fprintf(f, "# adplatform token keys: ID CREATED_AT HEX; the last line signs\n");
    for (int i = 0; i < kr->n; i++) {
        char hex[AP_TOKEN_KEY_BYTES * 2 + 1];
        sodium_bin2hex(hex, sizeof(hex), kr->keys[i].key, AP_TOKEN_KEY_BYTES);
        fprintf(f, "%u %lld %s\n", kr->keys[i].id, (long long)kr->keys[i].created_at, hex);
        sodium_memzero(hex, sizeof(hex));
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return AP_EIO;
    }
    return AP_OK;
}

static int make_parent_dir(const char *path)
{
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir))
        return AP_EINVAL;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return AP_OK;
    *slash = '\0';
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return ap_error_from_errno(errno);
    return AP_OK;
}

int ap_token_keyring_load(struct ap_token_keyring *kr, const char *path, int64_t overlap,
                          int64_t now)
{
    if (sodium_init() < 0)
        return AP_EIO;
    memset(kr, 0, sizeof(*kr));
    kr->overlap = overlap > 0 ? overlap : AP_TOKEN_DEFAULT_OVERLAP;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno != ENOENT)
            return ap_error_from_errno(errno);
        int rc = make_parent_dir(path);
        if (rc == AP_OK)
            rc = ap_token_keyring_rotate(kr, now);
        if (rc == AP_OK)
            rc = ap_token_keyring_save(kr, path);
        return rc;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077)) {
        fclose(f);
        return AP_EPERM;
    }
    char line[512];
    int rc = AP_OK;
    while (rc == AP_OK && fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        unsigned id;
        long long created;
        char hex[AP_TOKEN_KEY_BYTES * 2 + 2];
        uint8_t key[AP_TOKEN_KEY_BYTES];
        size_t bin_len = 0;
        if (sscanf(line, "%u %lld %65s", &id, &created, hex) != 3 || id == 0 || id > UINT16_MAX ||
            strlen(hex) != AP_TOKEN_KEY_BYTES * 2 ||
            sodium_hex2bin(key, sizeof(key), hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
            bin_len != AP_TOKEN_KEY_BYTES) {
            rc = AP_ECORRUPT;
        } else {
            rc = ap_token_keyring_add(kr, (uint16_t)id, created, key);
        }
        sodium_memzero(key, sizeof(key));
        sodium_memzero(line, sizeof(line));
    }
    fclose(f);
    if (rc == AP_OK && kr->n == 0)
        rc = AP_ECORRUPT;
    return rc;
}
