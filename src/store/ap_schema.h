/*
 * ap_schema: the control plane's model as one table (a table-driven resource schema).
 *
 * Each REST resource (advertisers, campaigns, ads, creatives, publishers, sites, placements,
 * demand partners) is one row of a static table: its names (singular, URL segment, SQL table),
 * who owns it (an advertiser or a publisher, through which parent reference) and its fields.
 * Each field has a type, flags (required on create, immutable, filterable, nullable, unique),
 * a default, a range and an optional validator. Validation, defaults, filters, SQL column lists
 * and the JSON <-> database conversion are all driven from that table, so adding a field is one
 * line here plus one migration (docs/adr/0003-store-sqlite-schema-table.md).
 *
 * Every stored row also carries the system fields id, created_at, updated_at and version
 * (bumped on each update; the REST layer's ETag). They are read-only: sending them is an error.
 *
 * JSON values use the API form: money as integer micro-units (names end in _micros), times as
 * RFC 3339 UTC strings ("2024-01-31T12:00:00Z"), ratios (bid_adjustment) as JSON numbers,
 * json fields as JSON objects/arrays. ap_schema_to_db()/ap_schema_from_db() convert to and from
 * the portable database form (TEXT, BIGINT, BOOLEAN-as-integer, JSON as TEXT).
 *
 * Everything here is reentrant: the tables are immutable (process lifetime), functions keep no
 * state, so any thread may call them. Validators that look at the file system (time zones) only
 * read it.
 */
#ifndef AP_SCHEMA_H
#define AP_SCHEMA_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- field errors (the body of a 422) ------------------------------------------------------ */

#define AP_SCHEMA_MAX_ERRORS 32      /* further errors set .truncated */
#define AP_SCHEMA_FIELD_MAX 96       /* "targeting.dayparts[3].hours[2]" */
#define AP_SCHEMA_MESSAGE_MAX 160

struct ap_schema_error {
    char field[AP_SCHEMA_FIELD_MAX];     /* a field name or a path into a json field; "" = body */
    char message[AP_SCHEMA_MESSAGE_MAX]; /* human-readable, English, no trailing period */
};

/* A fixed-size list, so reporting an error never allocates (the caller usually keeps it on the
 * stack). Zero it (or call ap_schema_errors_init) before handing it to a function. */
struct ap_schema_errors {
    size_t n;        /* stored in items */
    size_t total;    /* reported, stored or not: compare before/after to see if a call failed */
    bool truncated;
    struct ap_schema_error items[AP_SCHEMA_MAX_ERRORS];
};

void ap_schema_errors_init(struct ap_schema_errors *e);

/* Appends {field, printf(fmt, ...)}; strings are truncated to fit. Past AP_SCHEMA_MAX_ERRORS the
 * error is dropped and e->truncated set. */
void ap_schema_errors_add(struct ap_schema_errors *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns a new reference to [{"field": ..., "message": ...}, ...], or NULL if out of memory. */
json_t *ap_schema_errors_to_json(const struct ap_schema_errors *e);

/* Returns a new reference to the REST error body
 *   {"error": {"code": "validation_failed", "message": message, "fields": [...]}}
 * (message NULL: "request validation failed"), or NULL if out of memory. */
json_t *ap_schema_errors_body(const struct ap_schema_errors *e, const char *message);

/* ---- the resource table --------------------------------------------------------------------- */

enum ap_schema_res {
    AP_SCHEMA_ADVERTISER = 0,
    AP_SCHEMA_CAMPAIGN,
    AP_SCHEMA_AD,
    AP_SCHEMA_CREATIVE,
    AP_SCHEMA_PUBLISHER,
    AP_SCHEMA_SITE,
    AP_SCHEMA_PLACEMENT,
    AP_SCHEMA_DEMAND_PARTNER,
    AP_SCHEMA_RES_COUNT
};

/* Who a row belongs to, for tenancy (DESIGN.md §7). */
enum ap_schema_owner {
    AP_SCHEMA_OWNER_NONE = 0, /* operator-level data (demand partners): admins only */
    AP_SCHEMA_OWNER_ADVERTISER,
    AP_SCHEMA_OWNER_PUBLISHER
};

enum ap_schema_type {
    AP_SCHEMA_STRING = 1,  /* JSON string; .min/.max = length in bytes */
    AP_SCHEMA_INT,         /* JSON integer in [.min, .max] */
    AP_SCHEMA_BOOL,        /* JSON true/false; stored as integer 0/1 */
    AP_SCHEMA_ENUM,        /* JSON string, one of .values */
    AP_SCHEMA_MONEY,       /* JSON integer, micro-units, in [.min, .max] */
    AP_SCHEMA_JSON_OBJECT, /* JSON object, stored as TEXT */
    AP_SCHEMA_JSON_ARRAY,  /* JSON array, stored as TEXT; .max = items */
    AP_SCHEMA_REF,         /* JSON integer id of a row of resource .ref */
    AP_SCHEMA_TIMESTAMP,   /* RFC 3339 string in, "YYYY-MM-DDTHH:MM:SSZ" out; BIGINT seconds */
    AP_SCHEMA_PPM_DECIMAL  /* JSON number (0.95), stored as integer parts per million */
};

#define AP_SCHEMA_JSON_DEPTH 16 /* nesting admitted in json fields */

#define AP_SCHEMA_F_REQUIRED 0x01u   /* must be present on create */
#define AP_SCHEMA_F_IMMUTABLE 0x02u  /* set on create only (a PATCH to another value fails) */
#define AP_SCHEMA_F_FILTER 0x04u     /* usable as a list filter (?status=active) */
#define AP_SCHEMA_F_NULLABLE 0x08u   /* JSON null allowed (= not set) */
#define AP_SCHEMA_F_UNIQUE 0x10u     /* unique across all rows of the resource */
#define AP_SCHEMA_F_SAME_OWNER 0x20u /* REF: the target must have the same owner as this row */
#define AP_SCHEMA_F_MULTILINE 0x40u  /* STRING: \t \n \r allowed (markup), else no controls */

/* Checks a value that already has the field's type (never null); adds errors under path. */
typedef void (*ap_schema_validator)(const char *path, const json_t *v, struct ap_schema_errors *e);

struct ap_schema_field {
    const char *name; /* = the SQL column */
    enum ap_schema_type type;
    unsigned flags;
    int64_t min, max;                 /* INT/MONEY range; STRING length; JSON_ARRAY max items */
    const char *const *values;        /* ENUM: NULL-terminated allowed values */
    enum ap_schema_res ref;           /* REF: the referenced resource */
    const char *def;                  /* default as JSON text, NULL: none (null if nullable) */
    ap_schema_validator validate;     /* NULL: type and range only */
    const char *doc;                  /* one line for the API spec */
};

/* Cross-field checks on a complete row (after defaults or after merging a patch). */
typedef void (*ap_schema_row_check)(const json_t *row, struct ap_schema_errors *e);

struct ap_schema_resource {
    enum ap_schema_res id;
    const char *name;       /* singular: "demand_partner" (audit log, messages) */
    const char *path;       /* URL segment: "demand-partners" */
    const char *table;      /* SQL table: "demand_partners" */
    enum ap_schema_owner owner;
    const char *owner_field; /* the REF that leads to the owner; NULL: the row is the owner
                              * itself (advertiser, publisher) or has none */
    const struct ap_schema_field *fields;
    size_t nfields;
    ap_schema_row_check check; /* NULL: none */
};

/* The table entry for res (never NULL for a valid enum value; NULL otherwise). */
const struct ap_schema_resource *ap_schema_get(enum ap_schema_res res);

/* Finds a resource by singular name ("campaign"), URL segment ("demand-partners") or table name
 * ("demand_partners"); NULL if none. */
const struct ap_schema_resource *ap_schema_find(const char *name);

/* The field called name in r, or NULL (system fields are not in the table). */
const struct ap_schema_field *ap_schema_field(const struct ap_schema_resource *r,
                                              const char *name);

/* true for id, created_at, updated_at, version. */
bool ap_schema_is_system_field(const char *name);

/* The resource's "status" field or NULL. */
const struct ap_schema_field *ap_schema_status_field(const struct ap_schema_resource *r);

/* ---- validation -------------------------------------------------------------------------- */

/* Validates a create body. On success returns AP_OK and *row_out = a new object holding every
 * field of r (given, defaulted or null) in API form, values normalised (times in UTC "Z" form);
 * the system fields are not in it. On invalid input returns AP_EINVAL with e filled (unknown
 * fields, read-only fields, wrong types, missing required fields, bad values, cross-field rules)
 * and *row_out = NULL. AP_ENOMEM if out of memory. Does not check that references exist (the
 * store does, in its transaction). fields is borrowed. */
int ap_schema_validate_create(const struct ap_schema_resource *r, const json_t *fields,
                              json_t **row_out, struct ap_schema_errors *e);

/* Validates a PATCH body against the current row (API form, as returned by the store; may carry
 * the system fields). On success *row_out = a new object: current merged with patch (json fields
 * are replaced whole, not merged), without the system fields. Immutable fields may be repeated
 * with their current value only. Same return codes as ap_schema_validate_create. */
int ap_schema_validate_patch(const struct ap_schema_resource *r, const json_t *current,
                             const json_t *patch, json_t **row_out, struct ap_schema_errors *e);

/* Type-checks and validates one value for field f (path names it in errors). On success
 * *norm = a new reference to the normalised value (null stays null if nullable). Returns AP_OK,
 * AP_EINVAL (errors added) or AP_ENOMEM. */
int ap_schema_check_value(const struct ap_schema_field *f, const char *path, const json_t *v,
                          json_t **norm, struct ap_schema_errors *e);

/* Parses a list filter value given as text (a query string value) for field f of r: the field
 * must exist and carry AP_SCHEMA_F_FILTER. On success *out is the database value (see below;
 * text points into value). Returns AP_OK or AP_EINVAL (error added under the field name). */
struct ap_schema_dbval;
int ap_schema_filter_value(const struct ap_schema_resource *r, const char *field,
                           const char *value, struct ap_schema_dbval *out,
                           struct ap_schema_errors *e);

/* ---- database form ------------------------------------------------------------------------ */

enum ap_schema_dbkind { AP_SCHEMA_DB_NULL = 0, AP_SCHEMA_DB_INT, AP_SCHEMA_DB_TEXT };

struct ap_schema_dbval {
    enum ap_schema_dbkind kind;
    int64_t i;
    const char *text; /* DB_TEXT: NUL-terminated; owned by the value iff owned is set */
    size_t len;
    bool owned;
};

/* Converts an API-form value (already validated for f) to its database form. text may borrow
 * from v (strings), so keep v alive until the value is bound; free with ap_schema_dbval_free.
 * AP_OK, AP_EINVAL (v is not a valid value for f) or AP_ENOMEM. */
int ap_schema_to_db(const struct ap_schema_field *f, const json_t *v, struct ap_schema_dbval *out);

/* Converts a database value back to API form: *out = new reference. AP_OK, AP_ENOMEM, or
 * AP_ECORRUPT if the stored value does not fit the field (bad JSON text, wrong kind). */
int ap_schema_from_db(const struct ap_schema_field *f, const struct ap_schema_dbval *in,
                      json_t **out);

void ap_schema_dbval_free(struct ap_schema_dbval *v);

/* Serialises v compactly into a new NUL-terminated string (free() it), or NULL if out of memory.
 * Use this, not json_dumps: jansson 2.14's json_dumps ignores a failed write of an object key
 * and returns malformed JSON as success when memory runs out mid-dump. This sizes the output
 * first and dumps into a buffer whose writes cannot fail. */
char *ap_schema_json_dump(const json_t *v);

/* Parses stored JSON text (an object or array, strict RFC 8259, "\u0000" allowed, at most 64
 * levels deep, no member name twice in one object) into *out (new reference). AP_OK, AP_ENOMEM,
 * or AP_ECORRUPT for text that is not such JSON. Not json_loadb: under allocation failure jansson 2.14's parser reports syntax
 * errors or aborts (assert in lex_scan_string); this one only uses jansson's constructors. */
int ap_schema_json_parse(const char *text, size_t len, json_t **out);

/* ---- time ------------------------------------------------------------------------------------ */

#define AP_SCHEMA_TIME_MAX 32 /* buffer size for ap_schema_time_format */

/* Parses RFC 3339 ("2024-01-31T12:00:00Z", "...T12:00:00.250+01:00"; fractions are dropped)
 * into Unix seconds (UTC). Years 1970..9999. AP_OK or AP_EINVAL. */
int ap_schema_time_parse(const char *s, int64_t *out);

/* Writes "YYYY-MM-DDTHH:MM:SSZ" into out (AP_SCHEMA_TIME_MAX bytes); returns its length. */
size_t ap_schema_time_format(int64_t t, char *out);

/* ---- shared validators (also used for users and by the REST layer) ---------------------- */

/* ISO 4217 currency in use for billing ("USD"; upper case; funds and metals excluded). */
bool ap_schema_valid_currency(const char *code);
/* IANA time zone: a TZif file under /usr/share/zoneinfo, name of [A-Za-z0-9_+-/], no "..". */
bool ap_schema_valid_timezone(const char *zone);
/* Absolute http:// or https:// URL with a host, no user-info, no spaces or controls. */
bool ap_schema_valid_http_url(const char *url);
/* DNS host name (lower case letters, digits, '-', dot-separated labels). */
bool ap_schema_valid_domain(const char *name);

#endif
