/*
 * ap_api_reports: GET /api/v1/reports, delivery and revenue reports read from the aggregator's
 * rollups (src/events/ap_agg.h, rollup section of src/store/ap_store.h).
 *
 *   ?from=YYYY-MM-DD&to=YYYY-MM-DD     inclusive local dates (default: today in the zone)
 *   &timezone=Area/City                IANA zone of the dates and buckets (default UTC)
 *   &granularity=hour|day|total        time buckets (default total)
 *   &group_by=campaign,ad,placement,site,publisher,advertiser,partner,country,device
 *   &campaign_id=1,2&ad_id=&placement_id=&site_id=&publisher_id=&advertiser_id=
 *   &partner_id= (or demand_partner_id=)&creative_id=&country=US,FR&device=mobile
 *   &traffic=live|test|all             test traffic (AP_EV_F_TEST) is reported apart
 *   &format=json|csv                   or Accept: text/csv
 * -> {"rows":[{time?, dims..., metrics...}], "totals":{metrics...}, "from", "to", "timezone",
 *     "granularity", "group_by"}.
 *
 * Time: the rollups are per UTC hour; a row belongs to the local day (and local hour) in which
 * its UTC hour starts, so days follow the zone's DST changes (23- and 25-hour days). In zones
 * whose offset is not a whole number of hours a local day's boundary is rounded to the UTC hour
 * that starts inside it. Full UTC days are read from the daily rollup when the buckets allow
 * (granularity total, or day in UTC): a 30-day report reads ~30 rows per group, not ~720.
 *
 * Tenancy (docs/adr/0004, 0010): admins and viewers see everything; advertiser users only rows
 * of their advertisers' campaigns and not publisher revenue; publisher users only rows of their
 * publishers, their revenue and no advertiser spend, and may not group or filter by campaign,
 * ad or advertiser. Validation errors are 422 with the offending fields.
 *
 * Threads: control-plane workers; each keeps its own rollup handle (opened on first use, closed
 * when the thread exits). Memory: the merge table and output are per request (malloc, freed
 * before returning).
 */
#include "ap_api_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../events/ap_money.h"
#include "../serve/ap_context.h"
#include "../serve/ap_serve_internal.h" /* ap__serve_tz_load: the TZif reader */

#define REPORT_MAX_DAYS 366     /* from..to */
#define REPORT_MAX_HOUR_DAYS 31 /* from..to with granularity=hour */
#define REPORT_MAX_ROWS 100000  /* output rows (422 past it: narrow the query) */
#define REPORT_MAX_IDS 1000     /* ids in one filter */
#define REPORT_CSV_MAX (256u * 1024 * 1024)

int ap__api_reports(struct ap__api_ctx *c);

/* ---- per-thread rollup handle ---------------------------------------------------------------- */

static pthread_key_t rollup_key;
static pthread_once_t rollup_once = PTHREAD_ONCE_INIT;
static bool rollup_key_ok;

static void close_rollup(void *p)
{
    ap_store_rollup_close(p);
}

static void make_key(void)
{
    rollup_key_ok = pthread_key_create(&rollup_key, close_rollup) == 0;
}

static struct ap_store_rollup *thread_rollup(void)
{
    pthread_once(&rollup_once, make_key);
    if (!rollup_key_ok)
        return NULL;
    struct ap_store_rollup *r = pthread_getspecific(rollup_key);
    if (r)
        return r;
    int rc = ap_store_rollup_open(ap__api_state.db_path, &r);
    if (rc != AP_OK) {
        ap_log_error("reports: cannot open the rollups in %s: %s", ap__api_state.db_path,
                     ap_strerror(rc));
        return NULL;
    }
    if (pthread_setspecific(rollup_key, r) != 0) {
        ap_store_rollup_close(r);
        return NULL;
    }
    return r;
}

/* ---- dates and zones --------------------------------------------------------------------------
 */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

/* Parses YYYY-MM-DD (a real date, years 1970..9999) into a day number. */
static bool parse_date(const char *s, int64_t *out)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    *out = days_from_civil(y, (unsigned)m, (unsigned)d);
    return true;
}

struct tz {
    int64_t *at;
    int32_t *off;
    uint32_t n;
    int32_t before;
};

static int32_t tz_offset(const struct tz *z, int64_t t)
{
    if (z->n == 0 || t < z->at[0])
        return z->before;
    uint32_t lo = 0, hi = z->n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->off[lo];
}

/* The first UTC hour whose start is on local day `day` or later. */
static int64_t first_hour_of(const struct tz *z, int64_t day)
{
    int64_t local = day * 86400;
    /* the UTC instant of local midnight (or just after it, in a gap) */
    int64_t t = local - tz_offset(z, local);
    t = local - tz_offset(z, t);
    if (t + tz_offset(z, t) < local) /* in a gap: move past it */
        t = local - tz_offset(z, t + 86400 / 2);
    int64_t h = ap_money_floor_div(t, 3600) * 3600;
    /* adjust so h is the first hour whose local start is >= local midnight */
    while (h + tz_offset(z, h) >= local)
        h -= 3600;
    while (h + tz_offset(z, h) < local)
        h += 3600;
    return h;
}

/* ---- the merge table ---------------------------------------------------------------------- */

struct mkey {
    int64_t bucket;
    int64_t dims[AP_STORE_DIM_COUNT];
    char country[3];
    int8_t device;
};

struct mrow {
    struct mkey k;
    int64_t v[AP_STORE_RM_COUNT];
};

struct merge {
    struct mrow *rows;
    uint32_t n, cap;
    uint32_t *ix; /* row + 1, 0 empty */
    uint32_t ixcap;
    bool overflow;
    /* bucketing */
    const struct tz *z;
    int gran; /* 0 hour, 1 day, 2 total */
    bool by_time;
    int64_t totals[AP_STORE_RM_COUNT];
};

static uint32_t mhash(const struct mkey *k)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)k;
    for (size_t i = 0; i < sizeof(*k); i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static int merge_grow(struct merge *m)
{
    uint32_t nc = m->cap ? m->cap * 2 : 1024;
    struct mrow *nr = realloc(m->rows, (size_t)nc * sizeof(*nr));
    if (!nr)
        return AP_ENOMEM;
    m->rows = nr;
    m->cap = nc;
    uint32_t nix = nc * 2;
    uint32_t *ix = calloc(nix, sizeof(*ix));
    if (!ix)
        return AP_ENOMEM;
    for (uint32_t i = 0; i < m->n; i++) {
        uint32_t j = mhash(&m->rows[i].k) & (nix - 1);
        while (ix[j])
            j = (j + 1) & (nix - 1);
        ix[j] = i + 1;
    }
    free(m->ix);
    m->ix = ix;
    m->ixcap = nix;
    return AP_OK;
}

static int on_row(void *ud, const struct ap_store_rollup_row *r)
{
    struct merge *m = ud;
    for (int i = 0; i < AP_STORE_RM_COUNT; i++)
        m->totals[i] += r->vals[i];
    if (m->overflow)
        return AP_OK;
    struct mkey k;
    memset(&k, 0, sizeof(k));
    if (m->by_time) /* hours stay UTC hours (rendered with their local offset); days are local */
        k.bucket = m->gran == 0 ? r->t : ap_money_floor_div(r->t + tz_offset(m->z, r->t), 86400);
    memcpy(k.dims, r->dims, sizeof(k.dims));
    memcpy(k.country, r->country, sizeof(k.country));
    k.device = (int8_t)r->device;
    if (m->n == m->cap && merge_grow(m) != AP_OK)
        return AP_ENOMEM;
    uint32_t mask = m->ixcap - 1;
    for (uint32_t j = mhash(&k) & mask;; j = (j + 1) & mask) {
        if (!m->ix[j]) {
            if (m->n >= REPORT_MAX_ROWS) {
                m->overflow = true;
                return AP_OK;
            }
            struct mrow *nr = &m->rows[m->n];
            nr->k = k;
            memcpy(nr->v, r->vals, sizeof(nr->v));
            m->ix[j] = ++m->n;
            return AP_OK;
        }
        struct mrow *row = &m->rows[m->ix[j] - 1];
        if (!memcmp(&row->k, &k, sizeof(k))) {
            for (int i = 0; i < AP_STORE_RM_COUNT; i++)
                row->v[i] += r->vals[i];
            return AP_OK;
        }
    }
}

static int cmp_rows(const void *pa, const void *pb)
{
    const struct mkey *a = &((const struct mrow *)pa)->k, *b = &((const struct mrow *)pb)->k;
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket ? -1 : 1;
    for (int d = 0; d < AP_STORE_DIM_COUNT; d++)
        if (a->dims[d] != b->dims[d])
            return a->dims[d] < b->dims[d] ? -1 : 1;
    int c = strcmp(a->country, b->country);
    if (c)
        return c;
    return a->device - b->device;
}

/* ---- request parsing ----------------------------------------------------------------------- */

struct req {
    int64_t from_day, to_day;
    char tzname[128];
    int gran;
    unsigned groups;
    int64_t ids[AP_STORE_DIM_COUNT][REPORT_MAX_IDS];
    size_t nids[AP_STORE_DIM_COUNT];
    int64_t creatives[REPORT_MAX_IDS];
    size_t ncreatives;
    char countries[REPORT_MAX_IDS][3];
    const char *country_ptrs[REPORT_MAX_IDS];
    size_t ncountries;
    int device;
    int traffic; /* 0 live, 1 test, 2 all */
    bool csv;
};

static bool parse_ids(const char *v, int64_t *out, size_t *n, size_t max)
{
    *n = 0;
    const char *p = v;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int64_t id;
        if (*n >= max || !ap__api_parse_id(ap_span_make(p, len), &id))
            return false;
        out[(*n)++] = id;
        p += len;
        if (*p == ',') {
            p++;
            if (!*p)
                return false;
        }
    }
    return *n > 0;
}

static int dim_by_name(const char *s, size_t len)
{
    for (int d = 0; d < AP_STORE_DIM_COUNT; d++) {
        const char *n = ap_store_rollup_dim_name((enum ap_store_rollup_dim)d);
        if (strlen(n) == len && !memcmp(n, s, len))
            return d;
    }
    return -1;
}

static bool wants_csv(struct ap__api_ctx *c)
{
    const struct ap_http_header *h = ap_http_find_header(&c->x->req, "Accept");
    if (!h)
        return false;
    for (size_t i = 0; i + 8 <= h->value.len; i++)
        if (!strncasecmp(h->value.p + i, "text/csv", 8))
            return true;
    return false;
}

static void parse_request(struct ap__api_ctx *c, const struct ap__api_param *p, size_t np,
                          struct req *q, struct ap_schema_errors *e)
{
    const char *from = NULL, *to = NULL;
    q->device = -1;
    q->csv = wants_csv(c);
    snprintf(q->tzname, sizeof(q->tzname), "UTC");
    for (size_t i = 0; i < np; i++) {
        const char *k = p[i].key, *v = p[i].value;
        if (!strcmp(k, "from")) {
            from = v;
        } else if (!strcmp(k, "to")) {
            to = v;
        } else if (!strcmp(k, "timezone")) {
            if (!ap_schema_valid_timezone(v) || strlen(v) >= sizeof(q->tzname))
                ap_schema_errors_add(e, k, "must be an IANA time zone, e.g. Europe/Paris or UTC");
            else
                snprintf(q->tzname, sizeof(q->tzname), "%s", v);
        } else if (!strcmp(k, "granularity")) {
            q->gran = !strcmp(v, "hour") ? 0 : !strcmp(v, "day") ? 1 : !strcmp(v, "total") ? 2 : -1;
            if (q->gran < 0)
                ap_schema_errors_add(e, k, "must be hour, day or total");
        } else if (!strcmp(k, "group_by")) {
            for (const char *s = v; *s;) {
                const char *end = strchr(s, ',');
                size_t len = end ? (size_t)(end - s) : strlen(s);
                int d = dim_by_name(s, len);
                if (d < 0)
                    ap_schema_errors_add(e, k,
                                         "unknown dimension \"%.*s\": use campaign, ad, "
                                         "placement, site, publisher, advertiser, partner, "
                                         "country, device",
                                         (int)(len > 40 ? 40 : len), s);
                else
                    q->groups |= 1u << d;
                s += len;
                if (*s == ',')
                    s++;
            }
        } else if (!strcmp(k, "country")) {
            q->ncountries = 0;
            bool ok = true;
            for (const char *s = v; *s && ok;) {
                const char *end = strchr(s, ',');
                size_t len = end ? (size_t)(end - s) : strlen(s);
                ok = len == 2 && q->ncountries < REPORT_MAX_IDS;
                for (size_t j = 0; ok && j < 2; j++)
                    ok = (s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= 'a' && s[j] <= 'z');
                if (ok) {
                    char *cc = q->countries[q->ncountries];
                    cc[0] = (char)(s[0] & ~0x20);
                    cc[1] = (char)(s[1] & ~0x20);
                    cc[2] = '\0';
                    q->country_ptrs[q->ncountries] = cc;
                    q->ncountries++;
                }
                s += len;
                if (*s == ',')
                    s++;
            }
            if (!ok || !q->ncountries)
                ap_schema_errors_add(e, k, "must be ISO 3166-1 alpha-2 codes, comma-separated");
        } else if (!strcmp(k, "device")) {
            enum ap_serve_device d = ap_serve_device_parse(ap_span_cstr(v));
            if (d == AP_SERVE_DEVICE_UNKNOWN && strcmp(v, "unknown") != 0)
                ap_schema_errors_add(e, k,
                                     "must be desktop, mobile, tablet, ctv, other or "
                                     "unknown");
            else
                q->device = (int)d;
        } else if (!strcmp(k, "traffic")) {
            q->traffic = !strcmp(v, "live")   ? 0
                         : !strcmp(v, "test") ? 1
                         : !strcmp(v, "all")  ? 2
                                              : -1;
            if (q->traffic < 0)
                ap_schema_errors_add(e, k, "must be live, test or all");
        } else if (!strcmp(k, "format")) {
            if (!strcmp(v, "csv"))
                q->csv = true;
            else if (!strcmp(v, "json"))
                q->csv = false;
            else
                ap_schema_errors_add(e, k, "must be json or csv");
        } else if (!strcmp(k, "creative_id")) {
            if (!parse_ids(v, q->creatives, &q->ncreatives, REPORT_MAX_IDS))
                ap_schema_errors_add(e, k, "must be positive integer ids, comma-separated");
        } else {
            int d = -1;
            size_t kl = strlen(k);
            if (!strcmp(k, "demand_partner_id"))
                d = AP_STORE_DIM_PARTNER;
            else if (kl > 3 && !strcmp(k + kl - 3, "_id"))
                d = dim_by_name(k, kl - 3);
            if (d < 0 || d == AP_STORE_DIM_COUNTRY || d == AP_STORE_DIM_DEVICE) {
                ap_schema_errors_add(e, k, "unknown query parameter");
            } else if (!parse_ids(v, q->ids[d], &q->nids[d], REPORT_MAX_IDS)) {
                ap_schema_errors_add(e, k,
                                     "must be positive integer ids, comma-separated "
                                     "(at most %d)",
                                     REPORT_MAX_IDS);
            }
        }
    }
    /* dates: default today in the zone (checked after the zone is loaded) */
    q->from_day = INT64_MIN;
    q->to_day = INT64_MIN;
    if (from && !parse_date(from, &q->from_day))
        ap_schema_errors_add(e, "from", "must be a date YYYY-MM-DD");
    if (to && !parse_date(to, &q->to_day))
        ap_schema_errors_add(e, "to", "must be a date YYYY-MM-DD");
}

/* ---- output ---------------------------------------------------------------------------------- */

enum col_kind { COL_INT, COL_RATIO };

struct outcol {
    const char *name;
    enum col_kind kind;
    int a, b; /* metric index, or for ratios numerator/denominator; b = -2: eCPM of a */
};

/* Which metrics a caller sees. role: 0 full, 1 advertiser, 2 publisher. */
static size_t metric_cols(int role, struct outcol *out)
{
    size_t n = 0;
#define COL(nm, k, x, y) out[n++] = (struct outcol){nm, k, x, y}
    COL("decisions", COL_INT, AP_STORE_RM_DECISIONS, 0);
    COL("impressions", COL_INT, AP_STORE_RM_IMPRESSIONS, 0);
    COL("viewable_impressions", COL_INT, AP_STORE_RM_VIEWABLE, 0);
    COL("clicks", COL_INT, AP_STORE_RM_CLICKS, 0);
    COL("conversions", COL_INT, AP_STORE_RM_CONVERSIONS, 0);
    COL("ctr", COL_RATIO, AP_STORE_RM_CLICKS, AP_STORE_RM_IMPRESSIONS);
    if (role != 2) {
        COL("conversion_value_micros", COL_INT, AP_STORE_RM_CONVERSION_VALUE, 0);
        COL("spend_micros", COL_INT, AP_STORE_RM_SPEND, 0);
        COL("unbilled_micros", COL_INT, AP_STORE_RM_UNBILLED, 0);
    }
    if (role != 1)
        COL("revenue_micros", COL_INT, AP_STORE_RM_REVENUE, 0);
    /* eCPM: of spend for admins and advertisers, of revenue for publishers */
    COL("ecpm_micros", COL_INT, role == 2 ? AP_STORE_RM_REVENUE : AP_STORE_RM_SPEND, -2);
    if (role != 1) {
        COL("bids", COL_INT, AP_STORE_RM_BIDS, 0);
        COL("wins", COL_INT, AP_STORE_RM_WINS, 0);
        COL("losses", COL_INT, AP_STORE_RM_LOSSES, 0);
        COL("win_rate", COL_RATIO, AP_STORE_RM_WINS, AP_STORE_RM_BIDS);
        COL("billings", COL_INT, AP_STORE_RM_BILLINGS, 0);
    }
    if (role == 0)
        COL("rtb_revenue_micros", COL_INT, AP_STORE_RM_RTB_REVENUE, 0);
#undef COL
    return n;
}

static double ratio(int64_t a, int64_t b)
{
    return b > 0 ? (double)a / (double)b : 0.0;
}

static int64_t col_int(const struct outcol *c, const int64_t *v)
{
    if (c->b == -2)
        return ap_money_ecpm(v[c->a], v[AP_STORE_RM_IMPRESSIONS]);
    return v[c->a];
}

/* Appends a JSON string (the report's strings are short ASCII: dates, codes, names). */
static void json_str(struct ap_buf *b, const char *v)
{
    ap_buf_append(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            ap_buf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            ap_buf_printf(b, "\\u%04x", ch);
        else
            ap_buf_append(b, p, 1);
    }
    ap_buf_append(b, "\"", 1);
}

/* Appends "name":value for every metric column (after a comma unless first). */
static void metrics_out(struct ap_buf *b, const struct outcol *cols, size_t ncols, const int64_t *v,
                        bool first)
{
    for (size_t i = 0; i < ncols; i++) {
        if (!(first && i == 0))
            ap_buf_append(b, ",", 1);
        ap_buf_append(b, "\"", 1);
        ap_buf_append_str(b, cols[i].name);
        ap_buf_append(b, "\":", 2);
        if (cols[i].kind == COL_RATIO)
            ap_buf_printf(b, "%.10g", ratio(v[cols[i].a], v[cols[i].b]));
        else
            ap_buf_append_i64(b, col_int(&cols[i], v));
    }
}

static void fmt_time(const struct merge *m, const struct mkey *k, char *out, size_t cap)
{
    int y, mo, d;
    if (m->gran == 1) {
        civil_from_days(k->bucket, &y, &mo, &d);
        snprintf(out, cap, "%04d-%02d-%02d", y, mo, d);
        return;
    }
    int32_t off = tz_offset(m->z, k->bucket);
    int64_t local = k->bucket + off;
    int64_t day = ap_money_floor_div(local, 86400), sec = local - day * 86400;
    civil_from_days(day, &y, &mo, &d);
    int aoff = off < 0 ? -off : off;
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:00%c%02d:%02d", y, mo, d, (int)(sec / 3600),
             (int)(sec % 3600 / 60), off < 0 ? '-' : '+', aoff / 3600, aoff % 3600 / 60);
}

static const char *device_name(int d)
{
    return d >= 0 && d < AP_SERVE_DEVICE_COUNT ? ap_serve_device_name((enum ap_serve_device)d)
                                               : "unknown";
}

static void csv_field(struct ap_buf *b, const char *s)
{
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    if (!quote) {
        ap_buf_append_str(b, s);
        return;
    }
    ap_buf_append(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"')
            ap_buf_append(b, "\"", 1);
        ap_buf_append(b, s, 1);
    }
    ap_buf_append(b, "\"", 1);
}

static int send_csv(struct ap__api_ctx *c, const struct merge *m, unsigned groups,
                    const struct outcol *cols, size_t ncols)
{
    struct ap_buf b;
    ap_buf_init(&b, REPORT_CSV_MAX);
    bool first = true;
    if (m->by_time) {
        ap_buf_append_str(&b, m->gran == 0 ? "hour" : "date");
        first = false;
    }
    for (int d = 0; d < AP_STORE_DIM_COUNT; d++)
        if (groups & (1u << d)) {
            if (!first)
                ap_buf_append(&b, ",", 1);
            ap_buf_append_str(&b, ap_store_rollup_dim_column((enum ap_store_rollup_dim)d));
            first = false;
        }
    for (size_t i = 0; i < ncols; i++) {
        if (!first)
            ap_buf_append(&b, ",", 1);
        ap_buf_append_str(&b, cols[i].name);
        first = false;
    }
    ap_buf_append(&b, "\r\n", 2);
    for (uint32_t r = 0; r < m->n; r++) {
        const struct mrow *row = &m->rows[r];
        first = true;
        if (m->by_time) {
            char t[40];
            fmt_time(m, &row->k, t, sizeof(t));
            ap_buf_append_str(&b, t);
            first = false;
        }
        for (int d = 0; d < AP_STORE_DIM_COUNT; d++) {
            if (!(groups & (1u << d)))
                continue;
            if (!first)
                ap_buf_append(&b, ",", 1);
            first = false;
            if (d == AP_STORE_DIM_COUNTRY)
                csv_field(&b, row->k.country);
            else if (d == AP_STORE_DIM_DEVICE)
                csv_field(&b, device_name(row->k.device));
            else
                ap_buf_append_i64(&b, row->k.dims[d]);
        }
        for (size_t i = 0; i < ncols; i++) {
            if (!first)
                ap_buf_append(&b, ",", 1);
            first = false;
            if (cols[i].kind == COL_RATIO)
                ap_buf_printf(&b, "%.6f", ratio(row->v[cols[i].a], row->v[cols[i].b]));
            else
                ap_buf_append_i64(&b, col_int(&cols[i], row->v));
        }
        if (ap_buf_append(&b, "\r\n", 2) != AP_OK)
            break;
    }
    int rc;
    if (b.len && b.data[b.len - 1] == '\n') {
        ap_http_add_header(c->x, "Cache-Control", AP_SPAN_LIT("no-store"));
        ap_http_add_header(c->x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
        rc = ap_http_respond(c->x, 200, "text/csv; charset=utf-8", b.data, b.len);
    } else {
        rc = ap__api_error(c->x, 500, "internal", "report too large to render");
    }
    ap_buf_free(&b);
    return rc;
}

static int send_json(struct ap__api_ctx *c, const struct req *q, const struct merge *m,
                     const struct outcol *cols, size_t ncols)
{
    static const char *const GRAN[] = {"hour", "day", "total"};
    struct ap_buf b;
    ap_buf_init(&b, AP__API_JSON_MAX_OUTPUT);
    char from[16], to[16];
    int y, mo, d;
    civil_from_days(q->from_day, &y, &mo, &d);
    snprintf(from, sizeof(from), "%04d-%02d-%02d", y, mo, d);
    civil_from_days(q->to_day, &y, &mo, &d);
    snprintf(to, sizeof(to), "%04d-%02d-%02d", y, mo, d);
    ap_buf_printf(&b, "{\"from\":\"%s\",\"to\":\"%s\",\"timezone\":", from, to);
    json_str(&b, q->tzname);
    ap_buf_printf(&b, ",\"granularity\":\"%s\",\"group_by\":[", GRAN[q->gran]);
    bool first = true;
    for (int k = 0; k < AP_STORE_DIM_COUNT; k++)
        if (q->groups & (1u << k)) {
            ap_buf_printf(&b, "%s\"%s\"", first ? "" : ",",
                          ap_store_rollup_dim_name((enum ap_store_rollup_dim)k));
            first = false;
        }
    ap_buf_append_str(&b, "],\"rows\":[");
    for (uint32_t r = 0; r < m->n; r++) {
        const struct mrow *row = &m->rows[r];
        ap_buf_append_str(&b, r ? ",{" : "{");
        first = true;
        if (m->by_time) {
            char t[40];
            fmt_time(m, &row->k, t, sizeof(t));
            ap_buf_printf(&b, "\"%s\":", m->gran == 0 ? "hour" : "date");
            json_str(&b, t);
            first = false;
        }
        for (int k = 0; k < AP_STORE_DIM_COUNT; k++) {
            if (!(q->groups & (1u << k)))
                continue;
            ap_buf_printf(&b, "%s\"%s\":", first ? "" : ",",
                          ap_store_rollup_dim_column((enum ap_store_rollup_dim)k));
            first = false;
            if (k == AP_STORE_DIM_COUNTRY)
                json_str(&b, row->k.country);
            else if (k == AP_STORE_DIM_DEVICE)
                json_str(&b, device_name(row->k.device));
            else
                ap_buf_append_i64(&b, row->k.dims[k]);
        }
        metrics_out(&b, cols, ncols, row->v, first);
        ap_buf_append(&b, "}", 1);
    }
    ap_buf_append_str(&b, "],\"totals\":{");
    metrics_out(&b, cols, ncols, m->totals, true);
    int rc;
    if (ap_buf_append(&b, "}}", 2) == AP_OK) {
        ap_http_add_header(c->x, "Cache-Control", AP_SPAN_LIT("no-store"));
        ap_http_add_header(c->x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
        rc = ap_http_respond(c->x, 200, "application/json", b.data, b.len);
    } else {
        rc = ap__api_error(c->x, 500, "internal", "report too large to render");
    }
    ap_buf_free(&b);
    return rc;
}

/* ---- the handler ----------------------------------------------------------------------------- */

int ap__api_reports(struct ap__api_ctx *c)
{
    struct ap_schema_errors errs;
    struct ap__api_param *p;
    size_t np;
    struct req *q = NULL;
    struct tz z = {0};
    struct merge m;
    int rc;
    memset(&m, 0, sizeof(m));
    ap_schema_errors_init(&errs);
    if (ap__api_query(c, &p, &np) != AP_OK)
        return AP_EINVAL;
    if (!(q = calloc(1, sizeof(*q))))
        return ap__api_error(c->x, 500, "internal", "out of memory");
    q->gran = 2;
    parse_request(c, p, np, q, &errs);

    /* roles: 0 full (admin, viewer), 1 advertiser, 2 publisher */
    int role = c->user.role == AP_STORE_ROLE_ADVERTISER  ? 1
               : c->user.role == AP_STORE_ROLE_PUBLISHER ? 2
                                                         : 0;
    if (role == 2) {
        static const int hidden[] = {AP_STORE_DIM_CAMPAIGN, AP_STORE_DIM_AD,
                                     AP_STORE_DIM_ADVERTISER};
        for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
            int d = hidden[i];
            if (q->groups & (1u << d))
                ap_schema_errors_add(&errs, "group_by", "%s is not available to publisher users",
                                     ap_store_rollup_dim_name((enum ap_store_rollup_dim)d));
            if (q->nids[d])
                ap_schema_errors_add(&errs, ap_store_rollup_dim_column((enum ap_store_rollup_dim)d),
                                     "not available to publisher users");
        }
        if (q->ncreatives)
            ap_schema_errors_add(&errs, "creative_id", "not available to publisher users");
    }

    /* time zone and range */
    if (!errs.total) {
        rc = ap__serve_tz_load(q->tzname, &z.at, &z.off, &z.n, &z.before);
        if (rc != AP_OK)
            ap_schema_errors_add(&errs, "timezone", "unknown time zone");
    }
    if (!errs.total) {
        int64_t now = (int64_t)time(NULL);
        int64_t today = ap_money_floor_div(now + tz_offset(&z, now), 86400);
        if (q->to_day == INT64_MIN)
            q->to_day = q->from_day == INT64_MIN ? today : q->from_day;
        if (q->from_day == INT64_MIN)
            q->from_day = q->to_day;
        if (q->from_day > q->to_day)
            ap_schema_errors_add(&errs, "from", "must not be after to");
        else if (q->to_day - q->from_day + 1 > REPORT_MAX_DAYS)
            ap_schema_errors_add(&errs, "to", "the range may span at most %d days",
                                 REPORT_MAX_DAYS);
        else if (q->gran == 0 && q->to_day - q->from_day + 1 > REPORT_MAX_HOUR_DAYS)
            ap_schema_errors_add(&errs, "granularity", "hourly reports may span at most %d days",
                                 REPORT_MAX_HOUR_DAYS);
    }
    if (errs.total) {
        rc = ap__api_error_fields(c->x, 422, "validation_failed", "invalid report query", &errs);
        goto done;
    }

    struct ap_store_rollup *r = thread_rollup();
    if (!r) {
        ap_http_add_header(c->x, "Retry-After", AP_SPAN_LIT("1"));
        rc = ap__api_error(c->x, 503, "unavailable", "the rollups cannot be opened");
        goto done;
    }

    int64_t t0 = first_hour_of(&z, q->from_day), t1 = first_hour_of(&z, q->to_day + 1);
    struct ap_store_rollup_query sq;
    memset(&sq, 0, sizeof(sq));
    sq.groups = q->groups;
    for (int d = 0; d < AP_STORE_DIM_COUNT; d++) {
        sq.ids[d] = q->ids[d];
        sq.nids[d] = q->nids[d];
    }
    sq.countries = q->country_ptrs;
    sq.ncountries = q->ncountries;
    sq.device = q->device;
    sq.test = q->traffic;
    sq.creative_ids = q->creatives;
    sq.ncreative_ids = q->ncreatives;
    if (role == 1) {
        sq.restrict_advertisers = true;
        sq.scope_advertisers = c->user.advertiser_ids;
        sq.nscope_advertisers = c->user.n_advertiser_ids;
    } else if (role == 2) {
        sq.restrict_publishers = true;
        sq.scope_publishers = c->user.publisher_ids;
        sq.nscope_publishers = c->user.n_publisher_ids;
    }
    m.z = &z;
    m.gran = q->gran;
    m.by_time = q->gran != 2;
    bool utc = z.n == 0 && z.before == 0;
    bool daily_ok = q->gran == 2 || (q->gran == 1 && utc);
    int64_t d0 = (t0 + 86399) / 86400 * 86400, d1 = t1 / 86400 * 86400;
    if (t0 < 0 || t1 < 0)
        daily_ok = false;
    struct part {
        int64_t from, to;
        bool daily;
    } parts[3];
    int nparts = 0;
    if (daily_ok && d0 < d1) {
        if (t0 < d0)
            parts[nparts++] = (struct part){t0, d0, false};
        parts[nparts++] = (struct part){d0, d1, true};
        if (d1 < t1)
            parts[nparts++] = (struct part){d1, t1, false};
    } else {
        parts[nparts++] = (struct part){t0, t1, false};
    }
    rc = AP_OK;
    for (int i = 0; i < nparts && rc == AP_OK; i++) {
        sq.from = parts[i].from;
        sq.to = parts[i].to;
        sq.daily = parts[i].daily;
        sq.by_time = m.by_time;
        rc = ap_store_rollup_query(r, &sq, on_row, &m);
    }
    if (rc != AP_OK) {
        ap_log_error("reports: query failed: %s", ap_store_rollup_errmsg(r));
        if (rc == AP_EBUSY) {
            ap_http_add_header(c->x, "Retry-After", AP_SPAN_LIT("1"));
            rc = ap__api_error(c->x, 503, "unavailable", "the store is busy");
        } else {
            rc = ap__api_error(c->x, 500, "internal", "report query failed");
        }
        goto done;
    }
    if (m.overflow) {
        ap_schema_errors_add(&errs, "group_by",
                             "the report has more than %d rows: group by less, filter more or "
                             "use a coarser granularity",
                             REPORT_MAX_ROWS);
        rc = ap__api_error_fields(c->x, 422, "validation_failed", "report too large", &errs);
        goto done;
    }
    if (m.n > 1)
        qsort(m.rows, m.n, sizeof(*m.rows), cmp_rows);
    struct outcol cols[24];
    size_t ncols = metric_cols(role, cols);
    rc = q->csv ? send_csv(c, &m, q->groups, cols, ncols) : send_json(c, q, &m, cols, ncols);
done:
    free(z.at);
    free(z.off);
    free(m.rows);
    free(m.ix);
    free(q);
    return rc;
}
