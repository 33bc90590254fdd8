/*
 * ap_serve_snapshot: compiles the store's rows into the immutable serving snapshot.
 *
 * Steps: keep the serving rows (active, approved, not ended); merge each ad's targeting with its
 * campaign's (include lists intersect, exclude lists unite, dayparts intersect; keywords.any of
 * the campaign and of the ad stay two dimensions, keywords.all and .none unite); sort the ads by
 * rank (tier, priority, eCPM before lottery, eCPM, weight, id) so the engine can stop at the
 * first eligible ad; then build one sorted block list per (dimension, value), one "no rule" list
 * per dimension, and one format list per distinct placement format. Runs on the builder thread:
 * it may malloc freely; nothing it makes is written after publication.
 */
#include "ap_serve_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"

/* ---- small growable arrays (builder only) ------------------------------------------------------
 */

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return AP_OK;
    uint32_t nc = *cap ? *cap : 8;
    while (nc < need) {
        if (nc > UINT32_MAX / 2)
            return AP_ELIMIT;
        nc *= 2;
    }
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q)
        return AP_ENOMEM;
    *p = q;
    *cap = nc;
    return AP_OK;
}

struct plist { /* ascending ad positions */
    uint32_t *v;
    uint32_t n, cap;
};

static int plist_push(struct plist *l, uint32_t pos)
{
    if (l->n && l->v[l->n - 1] == pos)
        return AP_OK;
    int rc = grow((void **)&l->v, &l->cap, l->n + 1, sizeof(uint32_t));
    if (rc == AP_OK)
        l->v[l->n++] = pos;
    return rc;
}

/* ---- the builder
 * --------------------------------------------------------------------------------- */

struct bld {
    struct ap_serve_snapshot *s;
    /* string pool */
    char *str;
    uint32_t str_len, str_cap;
    /* position lists: lists[i] becomes s->sets[i] */
    struct plist *lists;
    uint32_t nlists, lists_cap;
    /* growing arrays that become snapshot arrays */
    struct ap_serve_cap *caps;
    uint32_t ncaps, caps_cap;
    uint64_t (*dayparts)[3];
    uint32_t ndayparts, dayparts_cap;
    struct ap_serve_iprange *ranges;
    uint32_t nranges, ranges_cap;
    struct ap_serve_str *kw;
    uint32_t nkw, kw_cap;
    struct ap_serve_zone *zones;
    uint32_t nzones, zones_cap;
    struct ap_serve_dict fmt; /* format key -> list (builder only) */
    /* the lists the current ad was added to, replayed for the campaign's other ads when they
     * have no targeting of their own (most ads): compiling is then one push per list */
    uint32_t *rec;
    uint32_t nrec, rec_cap;
    struct ap_serve_dict fmt_sets; /* placement format spec -> set index (shared) */
};

static void *snap_alloc(struct ap_serve_snapshot *s, size_t size)
{
    if (size == 0)
        size = 1;
    if (s->nallocs == s->allocs_cap) {
        size_t nc = s->allocs_cap ? s->allocs_cap * 2 : 64;
        void **q = realloc(s->allocs, nc * sizeof(void *));
        if (!q)
            return NULL;
        s->allocs = q;
        s->allocs_cap = nc;
    }
    void *p = calloc(1, size);
    if (p) {
        s->allocs[s->nallocs++] = p;
        s->bytes += size;
    }
    return p;
}

/* Takes ownership of a malloc'ed block (e.g. a grown array) into the snapshot. */
static int snap_adopt(struct ap_serve_snapshot *s, void *p, size_t size)
{
    if (s->nallocs == s->allocs_cap) {
        size_t nc = s->allocs_cap ? s->allocs_cap * 2 : 64;
        void **q = realloc(s->allocs, nc * sizeof(void *));
        if (!q)
            return AP_ENOMEM;
        s->allocs = q;
        s->allocs_cap = nc;
    }
    s->allocs[s->nallocs++] = p;
    s->bytes += size;
    return AP_OK;
}

void ap_serve_snapshot_free(struct ap_serve_snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nallocs; i++)
        free(s->allocs[i]);
    free(s->allocs);
    free(s);
}

static int str_add(struct bld *b, const char *p, size_t n, struct ap_serve_str *out)
{
    if (n > UINT32_MAX / 2)
        return AP_ELIMIT;
    int rc = grow((void **)&b->str, &b->str_cap, b->str_len + (uint32_t)n + 1, 1);
    if (rc)
        return rc;
    memcpy(b->str + b->str_len, p, n);
    b->str[b->str_len + n] = '\0';
    out->off = b->str_len;
    out->len = (uint32_t)n;
    b->str_len += (uint32_t)n + 1;
    return AP_OK;
}

/* ---- dictionaries
 * --------------------------------------------------------------------------------- */

static const struct ap_serve_dict_entry *dict_find(const struct ap_serve_dict *d, const char *pool,
                                                   struct ap_span key, uint64_t h)
{
    if (!d->cap)
        return NULL;
    uint32_t mask = d->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const struct ap_serve_dict_entry *e = &d->e[i];
        if (e->hash == 0)
            return NULL;
        if (e->hash == h && e->key_len == key.len && memcmp(pool + e->key_off, key.p, key.len) == 0)
            return e;
    }
}

const struct ap_serve_set *ap__serve_dict_get(const struct ap_serve_snapshot *s,
                                              const struct ap_serve_dict *d, struct ap_span key)
{
    const struct ap_serve_dict_entry *e =
        dict_find(d, s->strings, key, ap__serve_hash(key.p, key.len));
    return e ? &s->sets[e->set] : NULL;
}

static int dict_rehash(struct ap_serve_dict *d, uint32_t ncap)
{
    struct ap_serve_dict_entry *ne = calloc(ncap, sizeof(*ne));
    if (!ne)
        return AP_ENOMEM;
    for (uint32_t i = 0; i < d->cap; i++) {
        if (!d->e[i].hash)
            continue;
        uint32_t j = (uint32_t)d->e[i].hash & (ncap - 1);
        while (ne[j].hash)
            j = (j + 1) & (ncap - 1);
        ne[j] = d->e[i];
    }
    free(d->e);
    d->e = ne;
    d->cap = ncap;
    return AP_OK;
}

/* Finds key, or adds it with a new position list; *list = its list index. */
static int dict_list(struct bld *b, struct ap_serve_dict *d, struct ap_span key, uint32_t *list)
{
    uint64_t h = ap__serve_hash(key.p, key.len);
    const struct ap_serve_dict_entry *e = dict_find(d, b->str, key, h);
    if (e) {
        *list = e->set;
        return AP_OK;
    }
    int rc;
    if ((d->n + 1) * 4 > d->cap * 3 && (rc = dict_rehash(d, d->cap ? d->cap * 2 : 16)))
        return rc;
    struct ap_serve_str ks;
    if ((rc = str_add(b, key.p, key.len, &ks)) ||
        (rc = grow((void **)&b->lists, &b->lists_cap, b->nlists + 1, sizeof(struct plist))))
        return rc;
    memset(&b->lists[b->nlists], 0, sizeof(struct plist));
    uint32_t j = (uint32_t)h & (d->cap - 1);
    while (d->e[j].hash)
        j = (j + 1) & (d->cap - 1);
    d->e[j] = (struct ap_serve_dict_entry){h, ks.off, ks.len, b->nlists};
    d->n++;
    *list = b->nlists++;
    return AP_OK;
}

static int new_list(struct bld *b, uint32_t *list)
{
    int rc = grow((void **)&b->lists, &b->lists_cap, b->nlists + 1, sizeof(struct plist));
    if (rc)
        return rc;
    memset(&b->lists[b->nlists], 0, sizeof(struct plist));
    *list = b->nlists++;
    return AP_OK;
}

/* ---- JSON helpers ------------------------------------------------------------------------------
 */

static int64_t jint(const json_t *o, const char *k, int64_t def)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool jstr_is(const json_t *o, const char *k, const char *want)
{
    const char *v = jstr(o, k);
    return v && strcmp(v, want) == 0;
}

static int64_t jtime(const json_t *o, const char *k, int64_t def)
{
    const char *v = jstr(o, k);
    int64_t t;
    return v && ap_schema_time_parse(v, &t) == AP_OK ? t : def;
}

/* Open-addressing id -> index map (builder only). */
struct idmap {
    uint32_t cap;
    int64_t *k;
    uint32_t *v;
};

static int idmap_put(struct idmap *m, int64_t key, uint32_t val)
{
    if (!m->cap) {
        return AP_EINVAL;
    }
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)((uint64_t)key * 0x9E3779B97F4A7C15ull >> 32) & mask;
    while (m->k[i] && m->k[i] != key)
        i = (i + 1) & mask;
    m->k[i] = key;
    m->v[i] = val;
    return AP_OK;
}

static int64_t idmap_get(const struct idmap *m, int64_t key)
{
    if (!m->cap || key <= 0)
        return -1;
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)((uint64_t)key * 0x9E3779B97F4A7C15ull >> 32) & mask;
    while (m->k[i]) {
        if (m->k[i] == key)
            return m->v[i];
        i = (i + 1) & mask;
    }
    return -1;
}

static int idmap_init(struct idmap *m, size_t n)
{
    uint32_t cap = 16;
    while (cap < n * 2 + 2)
        cap *= 2;
    m->cap = cap;
    m->k = calloc(cap, sizeof(int64_t));
    m->v = calloc(cap, sizeof(uint32_t));
    return m->k && m->v ? AP_OK : AP_ENOMEM;
}

static void idmap_free(struct idmap *m)
{
    free(m->k);
    free(m->v);
}

const struct ap_serve_ad *ap__serve_ad_find(const struct ap_serve_snapshot *s, int64_t id)
{
    if (!s->ad_cap || id <= 0)
        return NULL;
    uint32_t mask = s->ad_cap - 1;
    uint32_t i = (uint32_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 32) & mask;
    while (s->ad_keys[i]) {
        if (s->ad_keys[i] == id)
            return &s->ads[s->ad_vals[i]];
        i = (i + 1) & mask;
    }
    return NULL;
}

int64_t ap__serve_placement_find(const struct ap_serve_snapshot *s, int64_t id)
{
    if (!s->pl_cap || id <= 0)
        return -1;
    uint32_t mask = s->pl_cap - 1;
    uint32_t i = (uint32_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 32) & mask;
    while (s->pl_keys[i]) {
        if (s->pl_keys[i] == id)
            return s->pl_vals[i];
        i = (i + 1) & mask;
    }
    return -1;
}

/* ---- targeting merge ---------------------------------------------------------------------------
 */

#define MAX_RULE_VALUES 1024
#define KEY_MAX 256

/* A normalised value list. */
struct vlist {
    int n;
    char v[MAX_RULE_VALUES][KEY_MAX];
};

enum norm { N_UPPER, N_LOWER, N_ID };

static void norm_copy(char *out, const json_t *it, enum norm how)
{
    out[0] = '\0';
    if (how == N_ID) {
        if (json_is_integer(it))
            snprintf(out, KEY_MAX, "%lld", (long long)json_integer_value(it));
        return;
    }
    const char *s = json_string_value(it);
    if (!s)
        return;
    size_t i = 0;
    for (; s[i] && i < KEY_MAX - 1; i++) {
        char c = s[i];
        if (how == N_LOWER && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (how == N_UPPER && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        out[i] = c;
    }
    out[i] = '\0';
}

/* Reads list key of targeting into l (normalised). false if there is no rule (absent, null or
 * not an array; an empty array is "no rule" too, as the schema's "empty = any"). */
static bool read_list(const json_t *targeting, const char *key, enum norm how, struct vlist *l)
{
    const json_t *a = json_object_get(targeting, key);
    l->n = 0;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return false;
    size_t i;
    const json_t *it;
    json_array_foreach (a, i, it) {
        if (l->n >= MAX_RULE_VALUES)
            break;
        norm_copy(l->v[l->n], it, how);
        if (l->v[l->n][0])
            l->n++;
    }
    return true;
}

static bool vlist_has(const struct vlist *l, const char *v)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], v) == 0)
            return true;
    return false;
}

static void vlist_intersect(struct vlist *a, const struct vlist *b)
{
    int k = 0;
    for (int i = 0; i < a->n; i++)
        if (vlist_has(b, a->v[i]))
            memmove(a->v[k++], a->v[i], KEY_MAX);
    a->n = k;
}

static void vlist_union(struct vlist *a, const struct vlist *b)
{
    for (int i = 0; i < b->n && a->n < MAX_RULE_VALUES; i++)
        if (!vlist_has(a, b->v[i]))
            memcpy(a->v[a->n++], b->v[i], KEY_MAX);
}

/* Include dimension: the effective rule of (campaign, ad). *has = whether there is a rule. */
static void merged_include(const json_t *ct, const json_t *at, const char *key, enum norm how,
                           struct vlist *out, struct vlist *tmp, bool *has)
{
    bool c = read_list(ct, key, how, out);
    bool a = read_list(at, key, how, tmp);
    *has = c || a;
    if (c && a)
        vlist_intersect(out, tmp);
    else if (a) {
        out->n = tmp->n;
        memcpy(out->v, tmp->v, (size_t)tmp->n * KEY_MAX);
    }
}

static void merged_exclude(const json_t *ct, const json_t *at, const char *key, enum norm how,
                           struct vlist *out, struct vlist *tmp)
{
    read_list(ct, key, how, out);
    if (read_list(at, key, how, tmp))
        vlist_union(out, tmp);
}

static const json_t *kw_list(const json_t *targeting, const char *which)
{
    return json_object_get(json_object_get(targeting, "keywords"), which);
}

static bool read_kw(const json_t *targeting, const char *which, struct vlist *l)
{
    const json_t *a = kw_list(targeting, which);
    l->n = 0;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return false;
    size_t i;
    const json_t *it;
    json_array_foreach (a, i, it) {
        if (l->n >= MAX_RULE_VALUES)
            break;
        norm_copy(l->v[l->n], it, N_LOWER);
        if (l->v[l->n][0])
            l->n++;
    }
    return true;
}

/* 168-bit daypart mask of a targeting object; false if no rule. */
static bool read_dayparts(const json_t *targeting, uint64_t m[3])
{
    const json_t *a = json_object_get(targeting, "dayparts");
    m[0] = m[1] = m[2] = 0;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return false;
    size_t i, j, k;
    const json_t *it, *d, *h;
    json_array_foreach (a, i, it) {
        json_array_foreach (json_object_get(it, "days"), j, d) {
            json_array_foreach (json_object_get(it, "hours"), k, h) {
                json_int_t day = json_integer_value(d), hour = json_integer_value(h);
                if (day < 0 || day > 6 || hour < 0 || hour > 23)
                    continue;
                unsigned bit = (unsigned)(day * 24 + hour);
                m[bit / 64] |= 1ull << (bit % 64);
            }
        }
    }
    return true;
}

static int parse_cidr(const char *s, struct ap_serve_iprange *r);

static int add_ranges(struct bld *b, const json_t *targeting, uint32_t *off, uint16_t *n)
{
    const json_t *a = json_object_get(targeting, "ip_ranges");
    *off = b->nranges;
    *n = 0;
    if (!json_is_array(a))
        return AP_OK;
    size_t i;
    const json_t *it;
    json_array_foreach (a, i, it) {
        struct ap_serve_iprange r;
        if (*n == UINT16_MAX || !json_is_string(it) || parse_cidr(json_string_value(it), &r))
            continue;
        int rc = grow((void **)&b->ranges, &b->ranges_cap, b->nranges + 1, sizeof(r));
        if (rc)
            return rc;
        b->ranges[b->nranges++] = r;
        (*n)++;
    }
    return AP_OK;
}

#include <arpa/inet.h>

static int parse_cidr(const char *s, struct ap_serve_iprange *r)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(addr))
        return AP_EINVAL;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(r, 0, sizeof(*r));
    bool v6 = strchr(addr, ':') != NULL;
    r->family = v6 ? 6 : 4;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, r->addr) != 1)
        return AP_EINVAL;
    unsigned bits = v6 ? 128 : 32, prefix = bits;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (*end || p > bits)
            return AP_EINVAL;
        prefix = (unsigned)p;
    }
    r->prefix = (uint8_t)prefix;
    return AP_OK;
}

/* ---- time zones -------------------------------------------------------------------------------
 */

static int zone_index(struct bld *b, const char *name, uint32_t *out)
{
    if (!name || !*name)
        name = "UTC";
    for (uint32_t i = 0; i < b->nzones; i++)
        if (strcmp(b->str + b->zones[i].name.off, name) == 0) {
            *out = i;
            return AP_OK;
        }
    int rc = grow((void **)&b->zones, &b->zones_cap, b->nzones + 1, sizeof(struct ap_serve_zone));
    if (rc)
        return rc;
    struct ap_serve_zone *z = &b->zones[b->nzones];
    memset(z, 0, sizeof(*z));
    if ((rc = str_add(b, name, strlen(name), &z->name)))
        return rc;
    int64_t *at = NULL;
    int32_t *off = NULL;
    uint32_t n = 0;
    int32_t before = 0;
    if (ap__serve_tz_load(name, &at, &off, &n, &before) != AP_OK) {
        ap_log_warn("serve: time zone %s unreadable, using UTC", name);
        n = 0;
    } else {
        if (snap_adopt(b->s, at, n * sizeof(int64_t)) ||
            snap_adopt(b->s, off, n * sizeof(int32_t))) {
            free(at);
            free(off);
            return AP_ENOMEM;
        }
        z->at = at;
        z->offset = off;
        z->n = n;
        z->offset_before = before;
    }
    *out = b->nzones++;
    return AP_OK;
}

int32_t ap__serve_zone_offset(const struct ap_serve_zone *z, int64_t t)
{
    if (z->n == 0 || t < z->at[0])
        return z->offset_before;
    uint32_t lo = 0, hi = z->n; /* last i with at[i] <= t */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (z->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->offset[lo];
}

/* ---- ads: gather, sort -------------------------------------------------------------------------
 */

struct cand {
    const json_t *ad;
    uint32_t campaign, creative;
    uint8_t tier, lottery;
    int32_t priority;
    int64_t ecpm;
    uint32_t weight;
    int64_t id;
};

static int cand_cmp(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->tier != b->tier)
        return a->tier < b->tier ? -1 : 1;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    if (a->lottery != b->lottery)
        return a->lottery < b->lottery ? -1 : 1;
    if (a->ecpm != b->ecpm)
        return a->ecpm > b->ecpm ? -1 : 1;
    if (a->weight != b->weight)
        return a->weight > b->weight ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int tier_of(const char *s)
{
    if (s && strcmp(s, "sponsorship") == 0)
        return AP_SERVE_TIER_SPONSORSHIP;
    if (s && strcmp(s, "house") == 0)
        return AP_SERVE_TIER_HOUSE;
    return AP_SERVE_TIER_STANDARD;
}

static const char *ext_of_mime(const char *mime)
{
    if (!mime)
        return NULL;
    if (strcmp(mime, "image/png") == 0)
        return "png";
    if (strcmp(mime, "image/jpeg") == 0)
        return "jpg";
    if (strcmp(mime, "image/gif") == 0)
        return "gif";
    if (strcmp(mime, "image/webp") == 0)
        return "webp";
    return NULL;
}

static bool active(const json_t *o)
{
    return jstr_is(o, "status", "active");
}

/* Rule values of one ad for one include dimension: pushes pos into the value lists, or into
 * the no-rule list. */
static int push_rec(struct bld *b, uint32_t li, uint32_t pos)
{
    int rc = plist_push(&b->lists[li], pos);
    if (rc == AP_OK &&
        (rc = grow((void **)&b->rec, &b->rec_cap, b->nrec + 1, sizeof(uint32_t))) == 0)
        b->rec[b->nrec++] = li;
    return rc;
}

static int index_include(struct bld *b, enum ap_serve_dim dim, const struct vlist *vals, bool has,
                         uint32_t norule_list, uint32_t pos)
{
    if (!has)
        return push_rec(b, norule_list, pos);
    for (int i = 0; i < vals->n; i++) {
        uint32_t li;
        int rc = dict_list(b, &b->s->dims[dim], ap_span_cstr(vals->v[i]), &li);
        if (rc || (rc = push_rec(b, li, pos)))
            return rc;
    }
    return AP_OK; /* has a rule but no value left (empty intersection): never a candidate */
}

static int index_exclude(struct bld *b, enum ap_serve_xdim x, const struct vlist *vals,
                         uint32_t pos)
{
    for (int i = 0; i < vals->n; i++) {
        uint32_t li;
        int rc = dict_list(b, &b->s->xdims[x], ap_span_cstr(vals->v[i]), &li);
        if (rc || (rc = push_rec(b, li, pos)))
            return rc;
    }
    return AP_OK;
}

static const struct {
    const char *key;
    enum ap_serve_dim dim;
    enum norm how;
} INCLUDE_KEYS[] = {
    {"countries_include", AP_SERVE_DIM_COUNTRY, N_UPPER},
    {"regions_include", AP_SERVE_DIM_REGION, N_UPPER},
    {"cities_include", AP_SERVE_DIM_CITY, N_LOWER},
    {"device_types", AP_SERVE_DIM_DEVICE, N_LOWER},
    {"os", AP_SERVE_DIM_OS, N_LOWER},
    {"browsers", AP_SERVE_DIM_BROWSER, N_LOWER},
    {"languages", AP_SERVE_DIM_LANG, N_LOWER},
    {"segments", AP_SERVE_DIM_SEGMENT, N_LOWER},
    {"sites_include", AP_SERVE_DIM_SITE, N_ID},
    {"placements_include", AP_SERVE_DIM_PLACEMENT, N_ID},
    {"domains_include", AP_SERVE_DIM_DOMAIN, N_LOWER},
};

static const struct {
    const char *key;
    enum ap_serve_xdim x;
    enum norm how;
} EXCLUDE_KEYS[] = {
    {"countries_exclude", AP_SERVE_XDIM_COUNTRY, N_UPPER},
    {"regions_exclude", AP_SERVE_XDIM_REGION, N_UPPER},
    {"cities_exclude", AP_SERVE_XDIM_CITY, N_LOWER},
    {"sites_exclude", AP_SERVE_XDIM_SITE, N_ID},
    {"placements_exclude", AP_SERVE_XDIM_PLACEMENT, N_ID},
    {"domains_exclude", AP_SERVE_XDIM_DOMAIN, N_LOWER},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A campaign's compiled targeting, reused by its ads without targeting of their own. */
struct plan {
    bool valid, has_segments;
    uint32_t rec_off, nrec; /* into plan_recs */
    uint32_t kw_all_off, kw_all_n, daypart;
    uint32_t ipr_off, ipr_n;
};

static int index_formats(struct bld *b, const struct cand *c, uint32_t pos);

/* Everything about one ad at rank position pos. */
static int index_ad(struct bld *b, const struct cand *c, const json_t *camp_row, uint32_t pos,
                    const uint32_t *norule, struct vlist *v1, struct vlist *v2, struct plan *plan,
                    uint32_t **plan_recs, uint32_t *nplan_recs, uint32_t *plan_recs_cap)
{
    struct ap_serve_snapshot *s = b->s;
    const json_t *ct = json_object_get(camp_row, "targeting");
    const json_t *at = json_object_get(c->ad, "targeting");
    struct ap_serve_ad *ad = &s->ads[pos];
    int rc;
    bool has;
    bool plain = !json_is_object(at) || json_object_size(at) == 0;
    if (plain && plan->valid) {
        for (uint32_t i = 0; i < plan->nrec; i++)
            if ((rc = plist_push(&b->lists[(*plan_recs)[plan->rec_off + i]], pos)))
                return rc;
        ad->has_segments = plan->has_segments;
        ad->kw_all_off = plan->kw_all_off;
        ad->kw_all_n = plan->kw_all_n;
        ad->daypart = plan->daypart;
        ad->ipr_off[0] = plan->ipr_off;
        ad->ipr_n[0] = (uint16_t)plan->ipr_n;
        ad->ipr_off[1] = 0;
        ad->ipr_n[1] = 0;
        return index_formats(b, c, pos);
    }
    b->nrec = 0;
    for (size_t i = 0; i < NELEM(INCLUDE_KEYS); i++) {
        merged_include(ct, at, INCLUDE_KEYS[i].key, INCLUDE_KEYS[i].how, v1, v2, &has);
        if (INCLUDE_KEYS[i].dim == AP_SERVE_DIM_SEGMENT)
            ad->has_segments = has;
        if ((rc = index_include(b, INCLUDE_KEYS[i].dim, v1, has, norule[INCLUDE_KEYS[i].dim], pos)))
            return rc;
    }
    for (size_t i = 0; i < NELEM(EXCLUDE_KEYS); i++) {
        merged_exclude(ct, at, EXCLUDE_KEYS[i].key, EXCLUDE_KEYS[i].how, v1, v2);
        if ((rc = index_exclude(b, EXCLUDE_KEYS[i].x, v1, pos)))
            return rc;
    }
    /* keywords: any (two dimensions), none (exclusion), all (checked per candidate) */
    has = read_kw(ct, "any", v1);
    if ((rc = index_include(b, AP_SERVE_DIM_KW_ANY_C, v1, has, norule[AP_SERVE_DIM_KW_ANY_C], pos)))
        return rc;
    has = read_kw(at, "any", v1);
    if ((rc = index_include(b, AP_SERVE_DIM_KW_ANY_A, v1, has, norule[AP_SERVE_DIM_KW_ANY_A], pos)))
        return rc;
    read_kw(ct, "none", v1);
    if (read_kw(at, "none", v2))
        vlist_union(v1, v2);
    if ((rc = index_exclude(b, AP_SERVE_XDIM_KW_NONE, v1, pos)))
        return rc;
    read_kw(ct, "all", v1);
    if (read_kw(at, "all", v2))
        vlist_union(v1, v2);
    ad->kw_all_off = b->nkw;
    ad->kw_all_n = (uint32_t)v1->n;
    for (int i = 0; i < v1->n; i++) {
        if ((rc = grow((void **)&b->kw, &b->kw_cap, b->nkw + 1, sizeof(struct ap_serve_str))) ||
            (rc = str_add(b, v1->v[i], strlen(v1->v[i]), &b->kw[b->nkw])))
            return rc;
        b->nkw++;
    }
    /* dayparts: intersection of the campaign's and the ad's hour sets */
    uint64_t mc[3], ma[3];
    bool hc = read_dayparts(ct, mc), ha = read_dayparts(at, ma);
    ad->daypart = 0;
    if (hc || ha) {
        uint64_t m[3];
        for (int i = 0; i < 3; i++)
            m[i] = (hc ? mc[i] : ~0ull) & (ha ? ma[i] : ~0ull);
        if ((rc = grow((void **)&b->dayparts, &b->dayparts_cap, b->ndayparts + 1,
                       sizeof(b->dayparts[0]))))
            return rc;
        memcpy(b->dayparts[b->ndayparts], m, sizeof(m));
        ad->daypart = b->ndayparts++;
    }
    if ((rc = add_ranges(b, ct, &ad->ipr_off[0], &ad->ipr_n[0])) ||
        (rc = add_ranges(b, at, &ad->ipr_off[1], &ad->ipr_n[1])))
        return rc;
    if (plain && !plan->valid) {
        if ((rc = grow((void **)plan_recs, plan_recs_cap, *nplan_recs + b->nrec, sizeof(uint32_t))))
            return rc;
        memcpy(*plan_recs + *nplan_recs, b->rec, b->nrec * sizeof(uint32_t));
        *plan = (struct plan){true,        ad->has_segments, *nplan_recs,
                              b->nrec,     ad->kw_all_off,   ad->kw_all_n,
                              ad->daypart, ad->ipr_off[0],   ad->ipr_n[0]};
        *nplan_recs += b->nrec;
    }
    return index_formats(b, c, pos);
}

/* formats: "type:WxH" and "type:*" (native and vast: "type") */
static int index_formats(struct bld *b, const struct cand *c, uint32_t pos)
{
    const struct ap_serve_creative *cr = &b->s->creatives[c->creative];
    int rc;
    static const char *const TYPES[] = {"image", "html", "native", "vast"};
    char key[64];
    uint32_t li;
    if (cr->type == AP_SERVE_IMAGE || cr->type == AP_SERVE_HTML) {
        snprintf(key, sizeof(key), "%s:%ux%u", TYPES[cr->type], cr->width, cr->height);
        if ((rc = dict_list(b, &b->fmt, ap_span_cstr(key), &li)) ||
            (rc = plist_push(&b->lists[li], pos)))
            return rc;
        snprintf(key, sizeof(key), "%s:*", TYPES[cr->type]);
    } else {
        snprintf(key, sizeof(key), "%s", TYPES[cr->type]);
    }
    if ((rc = dict_list(b, &b->fmt, ap_span_cstr(key), &li)) ||
        (rc = plist_push(&b->lists[li], pos)))
        return rc;
    return AP_OK;
}

/* ---- placements --------------------------------------------------------------------------------
 */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The list index of a placement's format set (shared between placements of the same format). */
static int placement_format(struct bld *b, const json_t *row, uint32_t *out)
{
    static const char *const TYPES[] = {"image", "html", "native", "vast"};
    char spec[2048];
    size_t sl = 0;
    const json_t *sizes = json_object_get(row, "sizes"), *types = json_object_get(row, "ad_types");
    const char *keys[512];
    char kbuf[512][48];
    int nk = 0;
    size_t i, j;
    const json_t *t, *z;
    json_array_foreach (types, i, t) {
        const char *ty = json_string_value(t);
        int ti = -1;
        for (int k = 0; k < 4; k++)
            if (ty && strcmp(ty, TYPES[k]) == 0)
                ti = k;
        if (ti < 0)
            continue;
        if (ti >= 2 || json_array_size(sizes) == 0) {
            if (nk < 512) {
                snprintf(kbuf[nk], sizeof(kbuf[0]), ti >= 2 ? "%s" : "%s:*", TYPES[ti]);
                keys[nk] = kbuf[nk];
                nk++;
            }
            continue;
        }
        json_array_foreach (sizes, j, z) {
            if (nk < 512 && json_is_string(z)) {
                snprintf(kbuf[nk], sizeof(kbuf[0]), "%s:%s", TYPES[ti], json_string_value(z));
                keys[nk] = kbuf[nk];
                nk++;
            }
        }
    }
    for (int k = 0; k < nk; k++) {
        int n = snprintf(spec + sl, sizeof(spec) - sl, "%s|", keys[k]);
        if (n < 0 || (size_t)n >= sizeof(spec) - sl)
            break;
        sl += (size_t)n;
    }
    uint64_t h = ap__serve_hash(spec, sl);
    const struct ap_serve_dict_entry *e =
        dict_find(&b->fmt_sets, b->str, ap_span_make(spec, sl), h);
    if (e) {
        *out = e->set;
        return AP_OK;
    }
    /* union of the format lists */
    uint32_t total = 0;
    for (int k = 0; k < nk; k++) {
        uint64_t kh = ap__serve_hash(keys[k], strlen(keys[k]));
        const struct ap_serve_dict_entry *fe =
            dict_find(&b->fmt, b->str, ap_span_cstr(keys[k]), kh);
        if (fe)
            total += b->lists[fe->set].n;
    }
    uint32_t *all = malloc(((size_t)total + 1) * sizeof(uint32_t)), n = 0;
    if (!all)
        return AP_ENOMEM;
    for (int k = 0; k < nk; k++) {
        uint64_t kh = ap__serve_hash(keys[k], strlen(keys[k]));
        const struct ap_serve_dict_entry *fe =
            dict_find(&b->fmt, b->str, ap_span_cstr(keys[k]), kh);
        if (fe) {
            memcpy(all + n, b->lists[fe->set].v, b->lists[fe->set].n * sizeof(uint32_t));
            n += b->lists[fe->set].n;
        }
    }
    qsort(all, n, sizeof(uint32_t), cmp_u32);
    uint32_t li;
    int rc = dict_list(b, &b->fmt_sets, ap_span_make(spec, sl), &li);
    for (uint32_t k = 0; rc == AP_OK && k < n; k++)
        rc = plist_push(&b->lists[li], all[k]);
    free(all);
    *out = li;
    return rc;
}

/* ---- sets -------------------------------------------------------------------------------------
 */

static int make_sets(struct bld *b)
{
    struct ap_serve_snapshot *s = b->s;
    size_t blocks = 0;
    for (uint32_t i = 0; i < b->nlists; i++) {
        const struct plist *l = &b->lists[i];
        uint32_t last = UINT32_MAX;
        for (uint32_t k = 0; k < l->n; k++)
            if (l->v[k] / 64 != last) {
                last = l->v[k] / 64;
                blocks++;
            }
    }
    s->sets = snap_alloc(s, (size_t)b->nlists * sizeof(struct ap_serve_set));
    uint32_t *blk = snap_alloc(s, blocks * sizeof(uint32_t));
    uint64_t *bits = snap_alloc(s, blocks * sizeof(uint64_t));
    if (!s->sets || !blk || !bits)
        return AP_ENOMEM;
    s->nsets = b->nlists;
    size_t at = 0;
    for (uint32_t i = 0; i < b->nlists; i++) {
        const struct plist *l = &b->lists[i];
        struct ap_serve_set *set = &s->sets[i];
        set->blk = blk + at;
        set->bits = bits + at;
        uint32_t n = 0;
        for (uint32_t k = 0; k < l->n; k++) {
            uint32_t bn = l->v[k] / 64;
            if (n == 0 || blk[at + n - 1] != bn) {
                blk[at + n] = bn;
                bits[at + n] = 0;
                n++;
            }
            bits[at + n - 1] |= 1ull << (l->v[k] % 64);
        }
        set->n = n;
        at += n;
    }
    return AP_OK;
}

/* ---- the build --------------------------------------------------------------------------------
 */

static const json_t *rows_of(const struct ap_serve_rows *in, enum ap_schema_res r,
                             const json_t *empty)
{
    const json_t *a = in->rows[r];
    return json_is_array(a) ? a : empty;
}

static void bld_free(struct bld *b)
{
    for (uint32_t i = 0; i < b->nlists; i++)
        free(b->lists[i].v);
    free(b->lists);
    free(b->fmt.e);
    free(b->fmt_sets.e);
    free(b->str);
    free(b->caps);
    free(b->dayparts);
    free(b->ranges);
    free(b->kw);
    free(b->zones);
    free(b->rec);
}

/* Moves a builder array into the snapshot. */
#define ADOPT(s, field, ptr, count)                                                                \
    do {                                                                                           \
        size_t bytes_ = (size_t)(count) * sizeof(*(ptr)) + 1;                                      \
        void *copy_ = snap_alloc((s), bytes_);                                                     \
        if (!copy_) {                                                                              \
            rc = AP_ENOMEM;                                                                        \
            goto fail;                                                                             \
        }                                                                                          \
        if ((count) > 0)                                                                           \
            memcpy(copy_, (ptr), (size_t)(count) * sizeof(*(ptr)));                                \
        (s)->field = copy_;                                                                        \
    } while (0)

int ap_serve_snapshot_build(const struct ap_serve_rows *in, struct ap_serve_delivery *d,
                            struct ap_serve_snapshot **out)
{
    uint64_t t0 = ap_time_mono_ns();
    int rc = AP_ENOMEM, nadopted = 0;
    struct bld b;
    memset(&b, 0, sizeof(b));
    struct idmap adv_map = {0}, camp_map = {0}, cr_map = {0}, site_map = {0}, pub_map = {0};
    struct cand *cands = NULL;
    struct plan *plans = NULL;
    uint32_t *plan_recs = NULL, nplan_recs = 0, plan_recs_cap = 0;
    const json_t **camp_rows = NULL;
    struct vlist *v1 = malloc(sizeof(*v1)), *v2 = malloc(sizeof(*v2));
    struct ap_serve_snapshot *s = calloc(1, sizeof(*s));
    json_t *empty = json_array();
    *out = NULL;
    if (!s || !v1 || !v2 || !empty)
        goto fail;
    b.s = s;
    s->version = in->version;
    s->built_at = in->now;
    struct ap_serve_str dummy;
    if ((rc = str_add(&b, "", 0, &dummy))) /* offset 0 = "" */
        goto fail;
    /* daypart mask 0 = no rule */
    if ((rc = grow((void **)&b.dayparts, &b.dayparts_cap, 1, sizeof(b.dayparts[0]))))
        goto fail;
    memset(b.dayparts[0], 0xff, sizeof(b.dayparts[0]));
    b.ndayparts = 1;

    const json_t *advs = rows_of(in, AP_SCHEMA_ADVERTISER, empty),
                 *camps = rows_of(in, AP_SCHEMA_CAMPAIGN, empty),
                 *ads = rows_of(in, AP_SCHEMA_AD, empty),
                 *crs = rows_of(in, AP_SCHEMA_CREATIVE, empty),
                 *pubs = rows_of(in, AP_SCHEMA_PUBLISHER, empty),
                 *sites = rows_of(in, AP_SCHEMA_SITE, empty),
                 *pls = rows_of(in, AP_SCHEMA_PLACEMENT, empty);
    size_t i;
    const json_t *row;
    rc = AP_ENOMEM;
    if (idmap_init(&adv_map, json_array_size(advs)) ||
        idmap_init(&camp_map, json_array_size(camps)) ||
        idmap_init(&cr_map, json_array_size(crs)) ||
        idmap_init(&site_map, json_array_size(sites)) ||
        idmap_init(&pub_map, json_array_size(pubs)))
        goto fail;

    /* advertisers */
    s->advertisers = snap_alloc(s, (json_array_size(advs) + 1) * sizeof(*s->advertisers));
    if (!s->advertisers)
        goto fail;
    json_array_foreach (advs, i, row) {
        if (!active(row))
            continue;
        struct ap_serve_advertiser *a = &s->advertisers[s->nadvertisers];
        a->id = jint(row, "id", 0);
        if ((rc = zone_index(&b, jstr(row, "timezone"), &a->tz)))
            goto fail;
        idmap_put(&adv_map, a->id, s->nadvertisers++);
    }
    /* campaigns */
    s->campaigns = snap_alloc(s, (json_array_size(camps) + 1) * sizeof(*s->campaigns));
    camp_rows = calloc(json_array_size(camps) + 1, sizeof(*camp_rows));
    rc = AP_ENOMEM;
    if (!s->campaigns || !camp_rows)
        goto fail;
    json_array_foreach (camps, i, row) {
        int64_t adv = idmap_get(&adv_map, jint(row, "advertiser_id", 0));
        int64_t end = jtime(row, "end_at", INT64_MAX);
        if (!active(row) || adv < 0 || end <= in->now)
            continue;
        struct ap_serve_campaign *c = &s->campaigns[s->ncampaigns];
        c->id = jint(row, "id", 0);
        c->advertiser = (uint32_t)adv;
        c->advertiser_id = s->advertisers[adv].id;
        c->tier = (uint8_t)tier_of(jstr(row, "priority_tier"));
        c->priority = (int32_t)jint(row, "priority", 0);
        c->pricing = jstr_is(row, "pricing_model", "cpc")   ? AP_SERVE_CPC
                     : jstr_is(row, "pricing_model", "cpa") ? AP_SERVE_CPA
                                                            : AP_SERVE_CPM;
        c->selection_lottery = jstr_is(row, "selection", "lottery");
        c->pacing_even = !jstr_is(row, "pacing", "asap");
        c->price_micros = jint(row, "price_micros", 0);
        c->ecpm_micros = c->pricing == AP_SERVE_CPM ? c->price_micros
                         : c->pricing == AP_SERVE_CPC
                             ? c->price_micros * AP_SERVE_CTR_PRIOR_PPM / 1000
                             : c->price_micros * AP_SERVE_CVR_PRIOR_PPM / 1000;
        c->cost_milli = c->ecpm_micros; /* per impression, in 1/1000 micros = eCPM micros */
        c->budget_lifetime = jint(row, "budget_lifetime_micros", -1);
        c->budget_daily = jint(row, "budget_daily_micros", -1);
        c->start_at = jtime(row, "start_at", 0);
        c->end_at = end;
        c->goal = jstr_is(row, "goal_type", "impressions") ? 1
                  : jstr_is(row, "goal_type", "clicks")    ? 2
                                                           : 0;
        c->goal_count = jint(row, "goal_count", 0);
        c->caps_off = b.ncaps;
        size_t k;
        const json_t *cap;
        json_array_foreach (json_object_get(row, "frequency_caps"), k, cap) {
            int64_t cnt = jint(cap, "count", 0), win = jint(cap, "window_seconds", 0);
            if (cnt <= 0 || win <= 0 || cnt > UINT32_MAX || win > UINT32_MAX)
                continue;
            if ((rc = grow((void **)&b.caps, &b.caps_cap, b.ncaps + 1, sizeof(*b.caps))))
                goto fail;
            b.caps[b.ncaps++] =
                (struct ap_serve_cap){(uint32_t)cnt, (uint32_t)win, jstr_is(cap, "scope", "ad")};
        }
        c->ncaps = b.ncaps - c->caps_off;
        c->slot = 0;
        if (d && (rc = ap__serve_delivery_slot(d, c->id, &c->slot)))
            goto fail;
        camp_rows[s->ncampaigns] = row;
        idmap_put(&camp_map, c->id, s->ncampaigns++);
    }
    /* creatives */
    s->creatives = snap_alloc(s, (json_array_size(crs) + 1) * sizeof(*s->creatives));
    rc = AP_ENOMEM;
    if (!s->creatives)
        goto fail;
    json_array_foreach (crs, i, row) {
        if (!active(row) || !jstr_is(row, "approval_status", "approved"))
            continue;
        struct ap_serve_creative *c = &s->creatives[s->ncreatives];
        memset(c, 0, sizeof(*c));
        c->id = jint(row, "id", 0);
        const char *type = jstr(row, "type");
        c->width = (uint16_t)jint(row, "width", 0);
        c->height = (uint16_t)jint(row, "height", 0);
        const char *v;
        if (type && strcmp(type, "image") == 0) {
            const char *ext = ext_of_mime(jstr(row, "mime")), *sha = jstr(row, "sha256");
            char url[128];
            if (!ext || !sha || strlen(sha) != 64)
                continue;
            c->type = AP_SERVE_IMAGE;
            snprintf(url, sizeof(url), "/assets/%s.%s", sha, ext);
            if ((rc = str_add(&b, url, strlen(url), &c->url)))
                goto fail;
        } else if (type && strcmp(type, "html") == 0 && (v = jstr(row, "html"))) {
            c->type = AP_SERVE_HTML;
            if ((rc = str_add(&b, v, strlen(v), &c->html)))
                goto fail;
        } else if (type && strcmp(type, "native") == 0 && json_object_get(row, "native")) {
            char *txt = json_dumps(json_object_get(row, "native"), JSON_COMPACT);
            if (!txt) {
                rc = AP_ENOMEM;
                goto fail;
            }
            c->type = AP_SERVE_NATIVE;
            rc = str_add(&b, txt, strlen(txt), &c->native);
            free(txt);
            if (rc)
                goto fail;
        } else if (type && strcmp(type, "vast") == 0 && (v = jstr(row, "vast_xml"))) {
            c->type = AP_SERVE_VAST;
            if ((rc = str_add(&b, v, strlen(v), &c->vast)))
                goto fail;
        } else {
            continue;
        }
        idmap_put(&cr_map, c->id, s->ncreatives++);
    }
    /* ads: gather and rank */
    cands = calloc(json_array_size(ads) + 1, sizeof(*cands));
    rc = AP_ENOMEM;
    if (!cands)
        goto fail;
    uint32_t nc = 0;
    json_array_foreach (ads, i, row) {
        int64_t ci = idmap_get(&camp_map, jint(row, "campaign_id", 0));
        int64_t cri = idmap_get(&cr_map, jint(row, "creative_id", 0));
        if (!active(row) || ci < 0 || cri < 0)
            continue;
        const struct ap_serve_campaign *c = &s->campaigns[ci];
        struct cand *k = &cands[nc++];
        k->ad = row;
        k->campaign = (uint32_t)ci;
        k->creative = (uint32_t)cri;
        k->tier = c->tier;
        k->priority = c->priority;
        k->lottery = c->selection_lottery;
        k->ecpm = c->ecpm_micros;
        k->weight = (uint32_t)jint(row, "weight", 1);
        k->id = jint(row, "id", 0);
    }
    qsort(cands, nc, sizeof(*cands), cand_cmp);
    plans = calloc((size_t)s->ncampaigns + 1, sizeof(*plans));
    if (!plans)
        goto fail;
    s->ads = snap_alloc(s, ((size_t)nc + 1) * sizeof(*s->ads));
    s->groups = snap_alloc(s, ((size_t)nc + 1) * sizeof(*s->groups));
    if (!s->ads || !s->groups)
        goto fail;
    s->nads = nc;
    uint32_t norule[AP_SERVE_DIM_COUNT];
    for (int dm = 0; dm < AP_SERVE_DIM_COUNT; dm++)
        if ((rc = new_list(&b, &norule[dm])))
            goto fail;
    for (uint32_t p = 0; p < nc; p++) {
        const struct cand *k = &cands[p];
        struct ap_serve_ad *ad = &s->ads[p];
        ad->id = k->id;
        ad->campaign = k->campaign;
        ad->creative = k->creative;
        ad->weight = k->weight;
        const char *landing = jstr(k->ad, "landing_url");
        if (landing && (rc = str_add(&b, landing, strlen(landing), &ad->landing)))
            goto fail;
        if (p == 0 ||
            cand_cmp(
                &(struct cand){.tier = k->tier, .priority = k->priority, .lottery = k->lottery},
                &(struct cand){.tier = cands[p - 1].tier,
                               .priority = cands[p - 1].priority,
                               .lottery = cands[p - 1].lottery}) != 0) {
            if (s->ngroups)
                s->groups[s->ngroups - 1].end = p;
            s->groups[s->ngroups++] = (struct ap_serve_group){p, nc, k->lottery};
        }
        ad->group = s->ngroups - 1;
        if ((rc = index_ad(&b, k, camp_rows[k->campaign], p, norule, v1, v2, &plans[k->campaign],
                           &plan_recs, &nplan_recs, &plan_recs_cap)))
            goto fail;
    }
    /* placements (active, on an active site of an active publisher) */
    json_array_foreach (pubs, i, row) {
        if (active(row))
            idmap_put(&pub_map, jint(row, "id", 0), 1);
    }
    s->placements = snap_alloc(s, (json_array_size(pls) + 1) * sizeof(*s->placements));
    rc = AP_ENOMEM;
    if (!s->placements)
        goto fail;
    uint32_t *pl_lists = calloc(json_array_size(pls) + 1, sizeof(uint32_t));
    if (!pl_lists)
        goto fail;
    json_array_foreach (sites, i, row) {
        if (active(row) && idmap_get(&pub_map, jint(row, "publisher_id", 0)) >= 0)
            idmap_put(&site_map, jint(row, "id", 0), (uint32_t)i);
    }
    json_array_foreach (pls, i, row) {
        int64_t si = idmap_get(&site_map, jint(row, "site_id", 0));
        if (!active(row) || si < 0)
            continue;
        const json_t *site = json_array_get(sites, (size_t)si);
        struct ap_serve_placement *pl = &s->placements[s->nplacements];
        pl->id = jint(row, "id", 0);
        pl->site_id = jint(site, "id", 0);
        pl->publisher_id = jint(site, "publisher_id", 0);
        pl->floor_cpm_micros = jint(row, "floor_cpm_micros", 0);
        const char *dom = jstr(site, "domain");
        if (dom && (rc = str_add(&b, dom, strlen(dom), &pl->domain))) {
            free(pl_lists);
            goto fail;
        }
        if ((rc = placement_format(&b, row, &pl_lists[s->nplacements]))) {
            free(pl_lists);
            goto fail;
        }
        s->nplacements++;
    }
    rc = make_sets(&b);
    if (rc == AP_OK) {
        for (uint32_t p = 0; p < s->nplacements; p++)
            s->placements[p].format = s->sets[pl_lists[p]];
        for (int dm = 0; dm < AP_SERVE_DIM_COUNT; dm++)
            s->norule[dm] = s->sets[norule[dm]];
    }
    free(pl_lists);
    if (rc)
        goto fail;
    /* ad id map */
    s->ad_cap = 16;
    while (s->ad_cap < s->nads * 2 + 2)
        s->ad_cap *= 2;
    s->ad_keys = snap_alloc(s, s->ad_cap * sizeof(int64_t));
    s->ad_vals = snap_alloc(s, s->ad_cap * sizeof(uint32_t));
    rc = AP_ENOMEM;
    if (!s->ad_keys || !s->ad_vals)
        goto fail;
    for (uint32_t p = 0; p < s->nads; p++) {
        struct idmap m = {s->ad_cap, s->ad_keys, s->ad_vals};
        idmap_put(&m, s->ads[p].id, p);
    }
    /* placement id map */
    s->pl_cap = 16;
    while (s->pl_cap < s->nplacements * 2 + 2)
        s->pl_cap *= 2;
    s->pl_keys = snap_alloc(s, s->pl_cap * sizeof(int64_t));
    s->pl_vals = snap_alloc(s, s->pl_cap * sizeof(uint32_t));
    rc = AP_ENOMEM;
    if (!s->pl_keys || !s->pl_vals)
        goto fail;
    for (uint32_t p = 0; p < s->nplacements; p++) {
        struct idmap m = {s->pl_cap, s->pl_keys, s->pl_vals};
        idmap_put(&m, s->placements[p].id, p);
    }
    /* move the builder arrays in */
    ADOPT(s, caps, b.caps, b.ncaps);
    ADOPT(s, dayparts, b.dayparts, b.ndayparts);
    ADOPT(s, ranges, b.ranges, b.nranges);
    s->ranges_n = b.nranges;
    ADOPT(s, kw_refs, b.kw, b.nkw);
    ADOPT(s, zones, b.zones, b.nzones);
    s->nzones = b.nzones;
    for (; nadopted < AP_SERVE_DIM_COUNT + AP_SERVE_XDIM_COUNT; nadopted++) {
        struct ap_serve_dict *dd = nadopted < AP_SERVE_DIM_COUNT
                                       ? &s->dims[nadopted]
                                       : &s->xdims[nadopted - AP_SERVE_DIM_COUNT];
        if (dd->e && (rc = snap_adopt(s, dd->e, (size_t)dd->cap * sizeof(*dd->e))))
            goto fail;
    }
    if ((rc = snap_adopt(s, b.str, b.str_cap)))
        goto fail;
    s->strings = b.str;
    s->strings_len = b.str_len;
    b.str = NULL;
    s->build_ns = ap_time_mono_ns() - t0;
    *out = s;
    s = NULL;
    rc = AP_OK;
fail:
    if (s) {
        for (int k = nadopted; k < AP_SERVE_DIM_COUNT + AP_SERVE_XDIM_COUNT; k++)
            free(k < AP_SERVE_DIM_COUNT ? s->dims[k].e : s->xdims[k - AP_SERVE_DIM_COUNT].e);
        ap_serve_snapshot_free(s);
    }
    bld_free(&b);
    idmap_free(&adv_map);
    idmap_free(&camp_map);
    idmap_free(&cr_map);
    idmap_free(&site_map);
    idmap_free(&pub_map);
    free(cands);
    free(plans);
    free(plan_recs);
    free(camp_rows);
    free(v1);
    free(v2);
    json_decref(empty);
    return rc;
}

void ap_serve_snapshot_stats(const struct ap_serve_snapshot *s, struct ap_serve_snapshot_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!s)
        return;
    st->version = s->version;
    st->ads = s->nads;
    st->campaigns = s->ncampaigns;
    st->creatives = s->ncreatives;
    st->placements = s->nplacements;
    st->sets = s->nsets;
    st->bytes = s->bytes + sizeof(*s) + s->allocs_cap * sizeof(void *);
    st->build_ns = s->build_ns;
}
