/*
 * ap_geo_mmdb: MaxMind DB writer. See the header for the format choices; the layout is
 *   [search tree: node_count nodes, each two records] [16 zero bytes] [data section]
 *   ["\xAB\xCD\xEFMaxMind.com"] [metadata map]
 * A record below node_count points at a node, node_count means "no data", and a value above it
 * points into the data section at (value - node_count - 16).
 */
#include "ap_geo_mmdb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"

/* A child: 0 = empty (the root is never a child), DATA_BIT | offset = data, else a node. */
#define DATA_BIT UINT32_C(0x80000000)
#define PLACE_MAX_BYTES 4096 /* one encoded place */

struct node {
    uint32_t c[2];
};

struct place_slot {
    uint32_t hash;
    uint32_t offset; /* in the data section */
    uint32_t len;
    bool used;
};

struct ap_geo_mmdb {
    struct node *nodes;
    size_t nnodes, cap_nodes;
    struct ap_buf data;       /* the data section */
    struct place_slot *slots; /* open addressing over encoded places */
    size_t nslots, nplaces;
};

/* ---- data-section encoding -------------------------------------------------------------- */

enum {
    T_EXTENDED = 0,
    T_STRING = 2,
    T_UINT16 = 5,
    T_UINT32 = 6,
    T_MAP = 7,
    T_UINT64 = 9,
    T_ARRAY = 11
};

static int put_ctrl(struct ap_buf *b, unsigned type, size_t size)
{
    uint8_t h[5];
    size_t n = 0;
    uint8_t t = (uint8_t)(type <= 7 ? type << 5 : T_EXTENDED << 5);
    if (size < 29) {
        h[n++] = (uint8_t)(t | size);
    } else if (size < 29 + 256) {
        h[n++] = (uint8_t)(t | 29);
    } else if (size < 285 + 65536) {
        h[n++] = (uint8_t)(t | 30);
    } else {
        h[n++] = (uint8_t)(t | 31);
    }
    if (type > 7)
        h[n++] = (uint8_t)(type - 7);
    if (size >= 29 && size < 285) {
        h[n++] = (uint8_t)(size - 29);
    } else if (size >= 285 && size < 65821) {
        size_t s = size - 285;
        h[n++] = (uint8_t)(s >> 8);
        h[n++] = (uint8_t)s;
    } else if (size >= 65821) {
        size_t s = size - 65821;
        if (s > 0xFFFFFF)
            return AP_ELIMIT;
        h[n++] = (uint8_t)(s >> 16);
        h[n++] = (uint8_t)(s >> 8);
        h[n++] = (uint8_t)s;
    }
    return ap_buf_append(b, h, n);
}

static int put_str(struct ap_buf *b, const char *s)
{
    size_t n = strlen(s);
    int rc = put_ctrl(b, T_STRING, n);
    return rc ? rc : ap_buf_append(b, s, n);
}

static int put_uint(struct ap_buf *b, unsigned type, uint64_t v)
{
    uint8_t bytes[8];
    size_t n = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        uint8_t byte = (uint8_t)(v >> shift);
        if (n == 0 && byte == 0)
            continue; /* minimal big-endian: no leading zero bytes */
        bytes[n++] = byte;
    }
    int rc = put_ctrl(b, type, n);
    return rc ? rc : ap_buf_append(b, bytes, n);
}

/* {"names": {"en": name}} members: writes "names" key and its map. */
static int put_names(struct ap_buf *b, const char *name)
{
    int rc = put_str(b, "names");
    if (!rc)
        rc = put_ctrl(b, T_MAP, 1);
    if (!rc)
        rc = put_str(b, "en");
    if (!rc)
        rc = put_str(b, name);
    return rc;
}

static int encode_place(struct ap_buf *b, const struct ap_geo_mmdb_place *p)
{
    size_t members = (p->country || p->country_name) + (p->region || p->region_name) + !!p->city;
    int rc = put_ctrl(b, T_MAP, members);
    if (!rc && (p->country || p->country_name)) {
        rc = put_str(b, "country");
        if (!rc)
            rc = put_ctrl(b, T_MAP, (size_t) !!p->country + !!p->country_name);
        if (!rc && p->country)
            rc = put_str(b, "iso_code") || put_str(b, p->country);
        if (!rc && p->country_name)
            rc = put_names(b, p->country_name);
    }
    if (!rc && (p->region || p->region_name)) {
        rc = put_str(b, "subdivisions");
        if (!rc)
            rc = put_ctrl(b, T_ARRAY, 1);
        if (!rc)
            rc = put_ctrl(b, T_MAP, (size_t) !!p->region + !!p->region_name);
        if (!rc && p->region)
            rc = put_str(b, "iso_code") || put_str(b, p->region);
        if (!rc && p->region_name)
            rc = put_names(b, p->region_name);
    }
    if (!rc && p->city) {
        rc = put_str(b, "city");
        if (!rc)
            rc = put_ctrl(b, T_MAP, 1);
        if (!rc)
            rc = put_names(b, p->city);
    }
    return rc ? AP_ELIMIT : AP_OK;
}

static uint32_t fnv1a(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

static int grow_slots(struct ap_geo_mmdb *w)
{
    size_t n = w->nslots ? w->nslots * 2 : 64;
    struct place_slot *s = calloc(n, sizeof(*s));
    if (!s)
        return AP_ENOMEM;
    for (size_t i = 0; i < w->nslots; i++) {
        if (!w->slots[i].used)
            continue;
        size_t j = w->slots[i].hash & (n - 1);
        while (s[j].used)
            j = (j + 1) & (n - 1);
        s[j] = w->slots[i];
    }
    free(w->slots);
    w->slots = s;
    w->nslots = n;
    return AP_OK;
}

/* The data-section offset of place, adding it if new. */
static int place_offset(struct ap_geo_mmdb *w, const struct ap_geo_mmdb_place *p, uint32_t *off)
{
    char tmp[PLACE_MAX_BYTES];
    struct ap_buf enc = {.data = tmp, .len = 0, .size = sizeof(tmp), .cap = sizeof(tmp)};
    int rc = encode_place(&enc, p);
    if (rc)
        return rc;
    if ((w->nplaces + 1) * 2 > w->nslots && (rc = grow_slots(w)))
        return rc;
    uint32_t h = fnv1a(enc.data, enc.len);
    size_t j = h & (w->nslots - 1);
    for (; w->slots[j].used; j = (j + 1) & (w->nslots - 1)) {
        struct place_slot *s = &w->slots[j];
        if (s->hash == h && s->len == enc.len &&
            memcmp(w->data.data + s->offset, enc.data, enc.len) == 0) {
            *off = s->offset;
            return AP_OK;
        }
    }
    if (w->data.len + enc.len > AP_GEO_MMDB_MAX_DATA)
        return AP_ELIMIT;
    uint32_t at = (uint32_t)w->data.len;
    if ((rc = ap_buf_append(&w->data, enc.data, enc.len)))
        return rc;
    w->slots[j] =
        (struct place_slot){.hash = h, .offset = at, .len = (uint32_t)enc.len, .used = true};
    w->nplaces++;
    *off = at;
    return AP_OK;
}

/* ---- the tree ----------------------------------------------------------------------------- */

static int new_node(struct ap_geo_mmdb *w, uint32_t left, uint32_t right, uint32_t *idx)
{
    if (w->nnodes >= AP_GEO_MMDB_MAX_NODES)
        return AP_ELIMIT;
    if (w->nnodes == w->cap_nodes) {
        size_t n = w->cap_nodes ? w->cap_nodes * 2 : 1024;
        struct node *p = realloc(w->nodes, n * sizeof(*p));
        if (!p)
            return AP_ENOMEM;
        w->nodes = p;
        w->cap_nodes = n;
    }
    w->nodes[w->nnodes] = (struct node){{left, right}};
    *idx = (uint32_t)w->nnodes++;
    return AP_OK;
}

int ap_geo_mmdb_new(struct ap_geo_mmdb **out)
{
    struct ap_geo_mmdb *w = calloc(1, sizeof(*w));
    uint32_t root;
    if (!w)
        return AP_ENOMEM;
    ap_buf_init(&w->data, AP_GEO_MMDB_MAX_DATA);
    if (new_node(w, 0, 0, &root) != AP_OK) {
        ap_geo_mmdb_free(w);
        return AP_ENOMEM;
    }
    *out = w;
    return AP_OK;
}

void ap_geo_mmdb_free(struct ap_geo_mmdb *w)
{
    if (!w)
        return;
    free(w->nodes);
    free(w->slots);
    ap_buf_free(&w->data);
    free(w);
}

size_t ap_geo_mmdb_nodes(const struct ap_geo_mmdb *w)
{
    return w->nnodes;
}

size_t ap_geo_mmdb_places(const struct ap_geo_mmdb *w)
{
    return w->nplaces;
}

static int insert_offset(struct ap_geo_mmdb *w, const uint8_t addr[16], unsigned prefix,
                         uint32_t off)
{
    uint32_t node = 0;
    for (unsigned i = 0; i < prefix; i++) {
        unsigned bit = (addr[i / 8] >> (7 - i % 8)) & 1u;
        if (i + 1 == prefix) {
            /* a subtree replaced here becomes unreachable; harmless (inserts go from less to
             * more specific, so it does not happen with well-ordered input) */
            w->nodes[node].c[bit] = DATA_BIT | off;
            break;
        }
        uint32_t ch = w->nodes[node].c[bit];
        if (ch == 0 || (ch & DATA_BIT)) {
            uint32_t idx;
            int rc = new_node(w, ch, ch, &idx); /* a leaf on the way splits in two halves */
            if (rc)
                return rc;
            w->nodes[node].c[bit] = idx;
            ch = idx;
        }
        node = ch;
    }
    return AP_OK;
}

int ap_geo_mmdb_insert(struct ap_geo_mmdb *w, const uint8_t addr[16], unsigned prefix,
                       const struct ap_geo_mmdb_place *place)
{
    uint32_t off;
    if (prefix < 1 || prefix > 128)
        return AP_EINVAL;
    int rc = place_offset(w, place, &off);
    return rc ? rc : insert_offset(w, addr, prefix, off);
}

/* Parses an IPv4 or IPv6 address into IPv6 form; *v4 tells which it was. */
static bool parse_addr(const char *s, size_t n, uint8_t out[16], bool *v4)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, 16);
    if (inet_pton(AF_INET, buf, out + 12) == 1) {
        *v4 = true;
        return true;
    }
    *v4 = false;
    return inet_pton(AF_INET6, buf, out) == 1;
}

int ap_geo_mmdb_insert_cidr(struct ap_geo_mmdb *w, const char *cidr,
                            const struct ap_geo_mmdb_place *place)
{
    uint8_t addr[16];
    bool v4;
    const char *slash = strchr(cidr, '/');
    size_t alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (!parse_addr(cidr, alen, addr, &v4))
        return AP_EINVAL;
    unsigned bits = v4 ? 32 : 128, prefix = bits;
    if (slash) {
        char *end;
        errno = 0;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || p < 1 || p > bits)
            return AP_EINVAL;
        prefix = (unsigned)p;
    }
    return ap_geo_mmdb_insert(w, addr, prefix + (v4 ? 96 : 0), place);
}

typedef unsigned __int128 u128;

static u128 to_u128(const uint8_t a[16])
{
    u128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | a[i];
    return v;
}

static void from_u128(u128 v, uint8_t a[16])
{
    for (int i = 15; i >= 0; i--) {
        a[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Inserts [lo, hi] (128-bit values) as CIDR blocks. */
static int insert_range_u128(struct ap_geo_mmdb *w, u128 lo, u128 hi, uint32_t off)
{
    for (;;) {
        /* the largest block starting at lo (aligned) that does not pass hi */
        unsigned host = 0;
        while (host < 128) {
            u128 size = (u128)1 << host; /* try 2^(host+1) */
            if (lo & size)               /* alignment of lo allows only 2^host */
                break;
            u128 bigger = size << 1;
            if (host + 1 == 128 || lo + bigger - 1 > hi || lo + bigger - 1 < lo)
                break;
            host++;
        }
        uint8_t addr[16];
        from_u128(lo, addr);
        int rc = insert_offset(w, addr, 128 - host, off);
        if (rc)
            return rc;
        u128 last = lo + (((u128)1 << host) - 1);
        if (last >= hi)
            return AP_OK;
        lo = last + 1;
    }
}

int ap_geo_mmdb_insert_range(struct ap_geo_mmdb *w, const char *lo, const char *hi,
                             const struct ap_geo_mmdb_place *place)
{
    uint8_t a[16], b[16];
    bool v4a, v4b;
    uint32_t off;
    if (!parse_addr(lo, strlen(lo), a, &v4a) || !parse_addr(hi, strlen(hi), b, &v4b) || v4a != v4b)
        return AP_EINVAL;
    u128 l = to_u128(a), h = to_u128(b);
    if (l > h || (!v4a && l == 0 && h == ~(u128)0))
        return AP_EINVAL;
    int rc = place_offset(w, place, &off);
    return rc ? rc : insert_range_u128(w, l, h, off);
}

/* ---- output ----------------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t r = write(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? ap_error_from_errno(errno) : AP_EIO;
        s += r;
        n -= (size_t)r;
    }
    return AP_OK;
}

static uint32_t record_value(uint32_t c, uint32_t node_count)
{
    if (c == 0)
        return node_count;
    if (c & DATA_BIT)
        return node_count + 16 + (c & ~DATA_BIT);
    return c;
}

static int put_metadata(struct ap_buf *b, uint32_t node_count, unsigned record_size,
                        const char *type, const char *description)
{
    static const uint8_t marker[] = "\xAB\xCD\xEFMaxMind.com";
    int rc = ap_buf_append(b, marker, sizeof(marker) - 1);
    /* libmaxminddb 1.7 refuses metadata without "description" (optional in the spec) */
    if (!description)
        description = type;
    rc = rc ? rc : put_ctrl(b, T_MAP, 9);
    rc = rc ? rc : put_str(b, "binary_format_major_version");
    rc = rc ? rc : put_uint(b, T_UINT16, 2);
    rc = rc ? rc : put_str(b, "binary_format_minor_version");
    rc = rc ? rc : put_uint(b, T_UINT16, 0);
    rc = rc ? rc : put_str(b, "build_epoch");
    rc = rc ? rc : put_uint(b, T_UINT64, (uint64_t)time(NULL));
    rc = rc ? rc : put_str(b, "database_type");
    rc = rc ? rc : put_str(b, type);
    rc = rc ? rc : put_str(b, "description");
    rc = rc ? rc : put_ctrl(b, T_MAP, 1);
    rc = rc ? rc : put_str(b, "en");
    rc = rc ? rc : put_str(b, description);
    rc = rc ? rc : put_str(b, "ip_version");
    rc = rc ? rc : put_uint(b, T_UINT16, 6);
    rc = rc ? rc : put_str(b, "languages");
    rc = rc ? rc : put_ctrl(b, T_ARRAY, 1);
    rc = rc ? rc : put_str(b, "en");
    rc = rc ? rc : put_str(b, "node_count");
    rc = rc ? rc : put_uint(b, T_UINT32, node_count);
    rc = rc ? rc : put_str(b, "record_size");
    rc = rc ? rc : put_uint(b, T_UINT16, record_size);
    return rc;
}

int ap_geo_mmdb_write_fd(const struct ap_geo_mmdb *w, int fd, const char *database_type,
                         const char *description)
{
    uint32_t nc = (uint32_t)w->nnodes;
    uint64_t max = (uint64_t)nc + 16 + w->data.len;
    unsigned rs = max < (UINT64_C(1) << 24) ? 24 : max < (UINT64_C(1) << 28) ? 28 : 32;
    if (max >= (UINT64_C(1) << 32))
        return AP_ELIMIT;
    size_t node_bytes = rs / 4; /* 2 records of rs bits */
    struct ap_buf out;
    ap_buf_init(&out, (size_t)1 << 34);
    int rc = ap_buf_reserve(&out, w->nnodes * node_bytes + 16 + w->data.len + 512);
    if (rc)
        goto done;
    uint8_t *p = (uint8_t *)out.data;
    for (size_t i = 0; i < w->nnodes; i++, p += node_bytes) {
        uint32_t l = record_value(w->nodes[i].c[0], nc), r = record_value(w->nodes[i].c[1], nc);
        if (rs == 24) {
            p[0] = (uint8_t)(l >> 16), p[1] = (uint8_t)(l >> 8), p[2] = (uint8_t)l;
            p[3] = (uint8_t)(r >> 16), p[4] = (uint8_t)(r >> 8), p[5] = (uint8_t)r;
        } else if (rs == 28) {
            p[0] = (uint8_t)(l >> 16), p[1] = (uint8_t)(l >> 8), p[2] = (uint8_t)l;
            p[3] = (uint8_t)(((l >> 24) & 0x0F) << 4 | ((r >> 24) & 0x0F));
            p[4] = (uint8_t)(r >> 16), p[5] = (uint8_t)(r >> 8), p[6] = (uint8_t)r;
        } else {
            p[0] = (uint8_t)(l >> 24), p[1] = (uint8_t)(l >> 16), p[2] = (uint8_t)(l >> 8);
            p[3] = (uint8_t)l;
            p[4] = (uint8_t)(r >> 24), p[5] = (uint8_t)(r >> 16), p[6] = (uint8_t)(r >> 8);
            p[7] = (uint8_t)r;
        }
    }
    out.len = w->nnodes * node_bytes;
    memset(out.data + out.len, 0, 16);
    out.len += 16;
    if ((rc = ap_buf_append(&out, w->data.data, w->data.len)))
        goto done;
    if ((rc = put_metadata(&out, nc, rs, database_type, description)))
        goto done;
    rc = write_all(fd, out.data, out.len);
done:
    ap_buf_free(&out);
    return rc;
}

int ap_geo_mmdb_write(const struct ap_geo_mmdb *w, const char *path, const char *database_type,
                      const char *description)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return AP_EINVAL;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return ap_error_from_errno(errno);
    int rc = ap_geo_mmdb_write_fd(w, fd, database_type, description);
    if (!rc && fchmod(fd, 0644) != 0)
        rc = ap_error_from_errno(errno);
    if (close(fd) != 0 && !rc)
        rc = ap_error_from_errno(errno);
    if (!rc && rename(tmp, path) != 0)
        rc = ap_error_from_errno(errno);
    if (rc)
        unlink(tmp);
    return rc;
}

/* ---- tor's geoip files -------------------------------------------------------------------- */

/* "16777216" -> 1.0.0.0 in IPv6 form */
static bool parse_v4_int(const char *s, size_t n, uint8_t out[16])
{
    uint64_t v = 0;
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return false;
    memset(out, 0, 16);
    out[12] = (uint8_t)(v >> 24), out[13] = (uint8_t)(v >> 16), out[14] = (uint8_t)(v >> 8);
    out[15] = (uint8_t)v;
    return true;
}

int ap_geo_mmdb_load_tor(struct ap_geo_mmdb *w, const char *path, size_t *ranges)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return ap_error_from_errno(errno);
    char line[256], last_cc[3] = "";
    uint32_t off = 0;
    size_t count = 0;
    int rc = AP_OK;
    while (fgets(line, sizeof(line), f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2 || strlen(c2 + 1) != 2) {
            rc = AP_ECORRUPT;
            break;
        }
        const char *cc = c2 + 1;
        if (cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z')
            continue; /* "??": unknown */
        uint8_t a[16], b[16];
        bool v4a, v4b;
        bool ok = (parse_v4_int(line, (size_t)(c1 - line), a) &&
                   parse_v4_int(c1 + 1, (size_t)(c2 - c1 - 1), b)) ||
                  (parse_addr(line, (size_t)(c1 - line), a, &v4a) &&
                   parse_addr(c1 + 1, (size_t)(c2 - c1 - 1), b, &v4b) && !v4a && !v4b);
        u128 lo = to_u128(a), hi = to_u128(b);
        if (!ok || lo > hi) {
            rc = AP_ECORRUPT;
            break;
        }
        if (memcmp(cc, last_cc, 2) != 0) {
            char code[3] = {cc[0], cc[1], '\0'};
            struct ap_geo_mmdb_place p = {.country = code};
            if ((rc = place_offset(w, &p, &off)))
                break;
            memcpy(last_cc, code, 3);
        }
        if ((rc = insert_range_u128(w, lo, hi, off)))
            break;
        count++;
    }
    if (!rc && ferror(f))
        rc = AP_EIO;
    fclose(f);
    if (ranges)
        *ranges = count;
    return rc;
}
