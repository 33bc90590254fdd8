/*
 * ap_store: the control plane's persistent store, behind one interface.
 *
 * A handle (struct ap_store) is one connection to one backend. The backend is a table of
 * function pointers (struct ap_store_ops, like a driver); the SQLite backend (ap_store_sqlite.c:
 * WAL, foreign keys, busy timeout, cached prepared statements, synchronous=NORMAL) is the
 * embedded default, a PostgreSQL backend can come later behind the same table. The ap_store_*
 * functions below check their arguments, do the backend-independent work (schema validation
 * lives in ap_schema.h; password hashing and token generation live here) and call the backend.
 *
 * Threads: a handle is used by one thread at a time and holds no global state. Every thread
 * that needs the store (each control-plane worker, the snapshot builder) opens its own handle;
 * ap_store_open() may be called any number of times on the same file. Writers serialise on the
 * database's write lock (waiting up to busy_timeout_ms, then AP_EBUSY); readers never block
 * writers (WAL). Each function below is tagged with who may call it:
 *   [handle]   any thread, on a handle that thread alone uses at the moment (control-plane
 *              workers and the snapshot builder each open their own)
 *   [builder]  meant for the snapshot builder's handle (also fine on any other, as [handle])
 *   [any]      any thread, no handle involved (pure function or process-wide data)
 *   [startup]  once per process, before threads use the store
 *
 * Memory: json_t results are new references owned by the caller (json_decref them); json_t
 * arguments are borrowed (never stolen, never modified). Strings returned inside structs are
 * owned by those structs (see ap_store_user_free). Nothing returned points into the handle.
 *
 * Writes: each write function runs in one transaction that also writes an audit row (same
 * transaction) and bumps the store version (the change feed), so a failed call leaves nothing
 * half-written. Errors: AP_OK, or
 *   AP_EINVAL     validation failed: errs lists {field, message} (the REST layer answers 422)
 *   AP_ENOTFOUND  no such row, or not visible to the actor (answered 404 either way)
 *   AP_ECONFLICT  stale expected_version (412), or a uniqueness/reference conflict (409)
 *   AP_EPERM      the actor may not do this at all (e.g. a tenant creating an advertiser)
 *   AP_EBUSY      the database stayed locked past the busy timeout
 *   AP_EIO / AP_ENOMEM / AP_ECORRUPT   storage failure, nothing was written
 */
#ifndef AP_STORE_H
#define AP_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap_schema.h"

struct ap_store;

/* ---- options -------------------------------------------------------------------------------- */

/* Password hashing cost (argon2id through libsodium's crypto_pwhash_str).
 * DEFAULT = crypto_pwhash_OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE: t=2, m=64 MiB, p=1, about
 * 0.1 s here. That is above OWASP's argon2id minimum (m=19 MiB, t=2, p=1). MODERATE (256 MiB,
 * ~0.7 s) was rejected: on a 2-core ad server a burst of logins would take GBs and starve the
 * data plane; throttling plus INTERACTIVE parameters is the better trade.
 * TEST_ONLY = the library minimum (t=1, m=8 KiB): for unit tests only, never in production. */
enum ap_store_pwhash { AP_STORE_PWHASH_DEFAULT = 0, AP_STORE_PWHASH_TEST_ONLY };

struct ap_store_options {
    int busy_timeout_ms;          /* 0: 5000 */
    bool no_migrate;              /* true: do not migrate at open (migrate explicitly) */
    enum ap_store_pwhash pwhash;  /* see above */
    int64_t (*clock)(void *ud);   /* Unix seconds; NULL: time(NULL). Tests move time with it. */
    void *clock_ud;
};

/* ---- actors and tenancy ---------------------------------------------------------------------- */

/* Who is calling: recorded in the audit log and, when restricted, limits what is visible.
 * A restricted actor sees a row only if the row's owner (ap_store_owner) is one of its
 * advertisers or publishers; rows of other tenants and ownerless rows (demand partners) behave
 * exactly like missing rows (AP_ENOTFOUND, absent from lists; as a reference in a body, the
 * same field error as a missing id). Pass NULL for the system (bootstrap, migrations, tests):
 * unrestricted, audit actor null. The arrays are borrowed for the call. */
struct ap_store_actor {
    int64_t user_id; /* 0: none */
    bool restricted; /* false: sees everything (admin, viewer, system) */
    const int64_t *advertiser_ids;
    size_t n_advertiser_ids;
    const int64_t *publisher_ids;
    size_t n_publisher_ids;
};

/* ---- users ---------------------------------------------------------------------------------- */

enum ap_store_role {
    AP_STORE_ROLE_ADMIN = 0,
    AP_STORE_ROLE_ADVERTISER,
    AP_STORE_ROLE_PUBLISHER,
    AP_STORE_ROLE_VIEWER
};

#define AP_STORE_EMAIL_MAX 254
#define AP_STORE_PASSWORD_MIN 8
#define AP_STORE_PASSWORD_MAX 1024
#define AP_STORE_MAX_USER_TENANTS 1000 /* advertiser_ids / publisher_ids per user */

struct ap_store_user {
    int64_t id;
    char email[AP_STORE_EMAIL_MAX + 1]; /* lower case */
    enum ap_store_role role;
    int64_t created_at; /* Unix seconds */
    int64_t *advertiser_ids; /* owned (malloc); free with ap_store_user_free */
    size_t n_advertiser_ids;
    int64_t *publisher_ids;
    size_t n_publisher_ids;
};

/* [any] Frees the id arrays and zeroes u (safe on a zeroed or already-freed user). */
void ap_store_user_free(struct ap_store_user *u);

/* [any] "admin", "advertiser", ...; and back (false if unknown). */
const char *ap_store_role_name(enum ap_store_role role);
bool ap_store_role_parse(const char *name, enum ap_store_role *out);

/* [any] Returns a new reference to {"id","email","role","advertiser_ids","publisher_ids",
 * "created_at"} (no password hash), or NULL if out of memory. */
json_t *ap_store_user_to_json(const struct ap_store_user *u);

/* [any] Fills an actor for u: admin and viewer unrestricted, other roles restricted to the user's
 * advertisers and publishers. The actor borrows u's arrays: keep u alive while using it. */
void ap_store_actor_from_user(const struct ap_store_user *u, struct ap_store_actor *out);

/* ---- tokens ------------------------------------------------------------------------------- */

/* Plain-text secrets: 32 random bytes (256 bits), URL-safe base64, behind a prefix that says
 * which table to look in. Only SHA-256 hashes are stored. */
#define AP_STORE_SESSION_PREFIX "ses_"
#define AP_STORE_APIKEY_PREFIX "apk_"
#define AP_STORE_TOKEN_MAX 64 /* buffer size for a token or key, NUL included */

/* ---- lists ----------------------------------------------------------------------------------- */

#define AP_STORE_LIST_DEFAULT 50
#define AP_STORE_LIST_MAX 1000

struct ap_store_filter {
    const char *field; /* a field with AP_SCHEMA_F_FILTER: "advertiser_id", "status", ... */
    const char *value; /* as text, e.g. from the query string */
};

struct ap_store_list_query {
    const struct ap_store_filter *filters; /* AND-ed; borrowed */
    size_t nfilters;
    const char *cursor; /* NULL or "": from the start; else a next_cursor from a previous page */
    int limit;          /* 0: AP_STORE_LIST_DEFAULT; 1..AP_STORE_LIST_MAX */
};

struct ap_store_audit_query {
    const char *resource; /* NULL: any; else "campaign", "user", "api_key", ... */
    int64_t resource_id;  /* 0: any */
    int64_t actor_user_id; /* 0: any */
    const char *cursor;
    int limit;
};

/* ---- the backend vtable ---------------------------------------------------------------------- */

/* A backend implements every entry (none may be NULL). The ap_store_* wrappers have checked the
 * arguments (resource in range, out pointers non-NULL, errs initialised) before calling, and
 * document the semantics; the entries have the same contract unless noted. */
struct ap_store_ops {
    const char *name; /* "sqlite" */
    int (*open)(const char *path, const struct ap_store_options *opt, struct ap_store **out);
    void (*close)(struct ap_store *st);
    const char *(*errmsg)(struct ap_store *st);

    int (*migrate)(struct ap_store *st, int target, int *applied);
    int (*schema_version)(struct ap_store *st, int *out);
    int (*version)(struct ap_store *st, int64_t *out);
    int (*read_begin)(struct ap_store *st);
    int (*read_end)(struct ap_store *st);

    int (*create)(struct ap_store *st, enum ap_schema_res res, const json_t *fields,
                  const struct ap_store_actor *actor, json_t **out, struct ap_schema_errors *errs);
    int (*get)(struct ap_store *st, enum ap_schema_res res, int64_t id,
               const struct ap_store_actor *actor, json_t **out);
    int (*list)(struct ap_store *st, enum ap_schema_res res, const struct ap_store_list_query *q,
                const struct ap_store_actor *actor, json_t **out, struct ap_schema_errors *errs);
    int (*list_changed)(struct ap_store *st, enum ap_schema_res res, int64_t since,
                        json_t **out);
    int (*update)(struct ap_store *st, enum ap_schema_res res, int64_t id, const json_t *patch,
                  int64_t expected_version, const struct ap_store_actor *actor, json_t **out,
                  struct ap_schema_errors *errs);
    int (*archive)(struct ap_store *st, enum ap_schema_res res, int64_t id,
                   int64_t expected_version, const struct ap_store_actor *actor, json_t **out);
    int (*owner)(struct ap_store *st, enum ap_schema_res res, int64_t id,
                 enum ap_schema_owner *kind, int64_t *owner_id);

    /* Users: the wrappers validate and hash; the backend stores. */
    int (*user_insert)(struct ap_store *st, const char *email, const char *password_hash,
                       enum ap_store_role role, const int64_t *advertiser_ids, size_t n_adv,
                       const int64_t *publisher_ids, size_t n_pub,
                       const struct ap_store_actor *actor, struct ap_store_user *out,
                       struct ap_schema_errors *errs);
    int (*user_get)(struct ap_store *st, int64_t id, struct ap_store_user *out);
    /* *hash_out: a malloc'ed copy of the stored hash (caller frees), or NULL if not wanted. */
    int (*user_by_email)(struct ap_store *st, const char *email, struct ap_store_user *out,
                         char **hash_out);
    int (*user_list)(struct ap_store *st, const struct ap_store_list_query *q, json_t **out,
                     struct ap_schema_errors *errs);

    /* Sessions and keys by SHA-256 hex hash of the plain-text token. */
    int (*session_insert)(struct ap_store *st, int64_t user_id, const char *token_hash,
                          int64_t expires_at, const struct ap_store_actor *actor,
                          int64_t *session_id);
    int (*session_find)(struct ap_store *st, const char *token_hash, int64_t now,
                        struct ap_store_user *user, int64_t *session_id, int64_t *expires_at);
    int (*session_revoke)(struct ap_store *st, const char *token_hash,
                          const struct ap_store_actor *actor);
    int (*apikey_insert)(struct ap_store *st, int64_t user_id, const char *name,
                         const char *key_hash, const char *display_prefix,
                         const struct ap_store_actor *actor, json_t **out);
    int (*apikey_find)(struct ap_store *st, const char *key_hash, struct ap_store_user *user,
                       int64_t *key_id);
    int (*apikey_revoke)(struct ap_store *st, int64_t key_id, const struct ap_store_actor *actor);
    int (*apikey_touch)(struct ap_store *st, int64_t key_id, int64_t now);
    int (*apikey_list)(struct ap_store *st, int64_t user_id, const struct ap_store_list_query *q,
                       json_t **out, struct ap_schema_errors *errs);

    int (*audit_list)(struct ap_store *st, const struct ap_store_audit_query *q, json_t **out,
                      struct ap_schema_errors *errs);
};

/* Every handle starts with this; backends embed it as their first member. */
struct ap_store {
    const struct ap_store_ops *ops;
    struct ap_store_options opt;
};

extern const struct ap_store_ops ap_store_sqlite_ops;

/* ---- opening --------------------------------------------------------------------------------- */

/* [any] Opens (creating if needed) the SQLite store at path and, unless opt->no_migrate,
 * migrates it to the latest schema. opt may be NULL (defaults) and is copied. *out = a new
 * handle (NULL on failure), closed with ap_store_close. AP_OK, AP_EIO (cannot open or migrate),
 * AP_ENOMEM, AP_ECONFLICT (the file's schema is newer than this build), AP_EBUSY. The calling
 * thread may then hand the handle to another, one user at a time. */
int ap_store_open(const char *path, const struct ap_store_options *opt, struct ap_store **out);

/* [any] The same with an explicit backend. */
int ap_store_open_with(const struct ap_store_ops *ops, const char *path,
                       const struct ap_store_options *opt, struct ap_store **out);

/* [handle] Closes the handle and frees everything it holds (NULL is fine). */
void ap_store_close(struct ap_store *st);

/* [handle] The backend's last error message, for logs (static or handle-owned; valid until the next
 * call on the handle). Never NULL. */
const char *ap_store_errmsg(struct ap_store *st);

/* ---- migrations and the change feed --------------------------------------------------------- */

/* [handle] Applies every pending migration, each in its own transaction, recorded in
 * schema_migrations. Re-running is a no-op (*applied = 0). applied may be NULL. Safe against other
 * handles migrating the same file at the same time. `adplatform migrate` calls this. */
int ap_store_migrate(struct ap_store *st, int *applied);

/* [handle] Migrates up to schema version target only (tests, staged upgrades). AP_EINVAL if target
 * is beyond the latest known migration. */
int ap_store_migrate_to(struct ap_store *st, int target, int *applied);

/* [handle] The number of the last applied migration (0 on an empty database). */
int ap_store_schema_version(struct ap_store *st, int *out);

/* [any] The latest migration this build knows. */
int ap_store_schema_latest(void);

/* [builder] The change feed: a counter bumped by every committed write (in the write's
 * transaction), so a larger value means "something changed". One indexed single-row read: cheap
 * enough for the snapshot builder to poll every 100 ms on its own handle. */
int ap_store_version(struct ap_store *st, int64_t *out);

/* [builder] Read transaction: between these, every read on this handle sees one consistent
 * snapshot (the snapshot builder reads the version, then all tables). No writes on the handle in
 * between (they fail with AP_EBUSY). ap_store_read_end always ends it. */
int ap_store_read_begin(struct ap_store *st);
int ap_store_read_end(struct ap_store *st);

/* ---- generic CRUD on the schema's resources --------------------------------------------- */

/* [handle] Creates a row of res from fields (a JSON object of API-form values, see ap_schema.h).
 * Validates everything (unknown or read-only fields, types, required fields, values,
 * cross-field rules) and then, in the transaction, that references exist and are visible to
 * the actor, that SAME_OWNER references share the owner, and that UNIQUE fields are unique;
 * every problem is a field error (AP_EINVAL). A restricted actor may not create owners
 * (advertisers, publishers) or ownerless rows: AP_EPERM. On success *out = the stored object
 * with id, created_at, updated_at, version (1). Audit action "create". */
int ap_store_create(struct ap_store *st, enum ap_schema_res res, const json_t *fields,
                    const struct ap_store_actor *actor, json_t **out,
                    struct ap_schema_errors *errs);

/* [handle] *out = the object, or AP_ENOTFOUND (also when not visible to the actor). */
int ap_store_get(struct ap_store *st, enum ap_schema_res res, int64_t id,
                 const struct ap_store_actor *actor, json_t **out);

/* [handle] *out = {"data": [objects by ascending id], "next_cursor": "..." or null}, only rows
 * visible to the actor, archived rows included unless filtered out (?status=active). Bad filters,
 * cursor or limit: AP_EINVAL with field errors ("limit", "cursor", the filter's field). */
int ap_store_list(struct ap_store *st, enum ap_schema_res res, const struct ap_store_list_query *q,
                  const struct ap_store_actor *actor, json_t **out,
                  struct ap_schema_errors *errs);

/* [builder] Every row of res (any status, no tenancy: the system's view) written by a
 * transaction that saw the change feed (ap_store_version) at since or later, i.e. every row
 * created, updated or archived since a reader saw version `since` (and possibly a few it had
 * already seen). *out = a new JSON array of objects as ap_store_get returns them, by ascending
 * id. Rows written before the change versions existed (schema 5) count as version 0. Meant for
 * the snapshot builder's incremental read, inside ap_store_read_begin/end. AP_OK, AP_EINVAL (res
 * out of range or since < 0), AP_ENOMEM, AP_EIO. */
int ap_store_list_changed(struct ap_store *st, enum ap_schema_res res, int64_t since,
                          json_t **out);

/* [handle] Applies patch (JSON object; json fields are replaced whole). expected_version -1: no
 * check; else AP_ECONFLICT unless it equals the row's version (If-Match). A patch that changes
 * nothing writes nothing and returns the row as is. On success *out = the new object (version + 1).
 * Audit action "update" with before and after. */
int ap_store_update(struct ap_store *st, enum ap_schema_res res, int64_t id, const json_t *patch,
                    int64_t expected_version, const struct ap_store_actor *actor, json_t **out,
                    struct ap_schema_errors *errs);

/* [handle] Archives: sets status to "archived" (every resource has a status; rows are never
 * deleted, so reports and the event log can always resolve their ids). Archiving an archived row is
 * a no-op. expected_version as for update. *out = the object (may be NULL if not wanted). Audit
 * action "archive". */
int ap_store_archive(struct ap_store *st, enum ap_schema_res res, int64_t id,
                     int64_t expected_version, const struct ap_store_actor *actor, json_t **out);

/* [handle] Resolves a row to its owning tenant: advertiser for advertisers, campaigns, ads (through
 * the campaign), creatives; publisher for publishers, sites, placements (through the site);
 * AP_SCHEMA_OWNER_NONE (owner_id 0) for demand partners. Owners never change (parent references
 * are immutable), so the answer may be cached. AP_ENOTFOUND if the row does not exist. */
int ap_store_owner(struct ap_store *st, enum ap_schema_res res, int64_t id,
                   enum ap_schema_owner *kind, int64_t *owner_id);

/* ---- users, sessions, API keys ----------------------------------------------------------- */

/* [handle] Creates a user from
 * {"email","password","role","advertiser_ids":[..],"publisher_ids":[..]}: email, password and
 * role required; unknown fields are errors; the email is lower-cased and must be unused; the ids
 * must exist and be visible to the actor (else a field error on "advertiser_ids" or
 * "publisher_ids" naming the id). The password is hashed (argon2id, see enum ap_store_pwhash)
 * before the transaction starts. On success fills *out (free with ap_store_user_free; out may be
 * NULL). A restricted actor gets AP_EPERM. Audit "create" on resource "user" (no hash in it). */
int ap_store_user_create(struct ap_store *st, const json_t *fields,
                         const struct ap_store_actor *actor, struct ap_store_user *out,
                         struct ap_schema_errors *errs);

/* [handle] Fills *out (free with ap_store_user_free), or AP_ENOTFOUND. */
int ap_store_user_get(struct ap_store *st, int64_t id, struct ap_store_user *out);
int ap_store_user_get_by_email(struct ap_store *st, const char *email, struct ap_store_user *out);

/* [handle] Checks a password. AP_OK and *out filled (out may be NULL) if email and password match;
 * AP_EPERM for an unknown email or a wrong password alike (an unknown email costs one hash
 * too, so timing does not reveal which). Throttling is the caller's job. Takes ~0.1 s. */
int ap_store_user_verify_password(struct ap_store *st, const char *email, const char *password,
                                  struct ap_store_user *out);

/* [handle] *out = {"data": [users by id], "next_cursor"} (no hashes). */
int ap_store_user_list(struct ap_store *st, const struct ap_store_list_query *q, json_t **out,
                       struct ap_schema_errors *errs);

/* [handle] Starts a session for user_id lasting ttl_seconds (> 0). token (AP_STORE_TOKEN_MAX bytes)
 * receives the plain-text token, the only time it exists: only its hash is stored.
 * *expires_at (may be NULL) = Unix seconds. AP_ENOTFOUND if the user does not exist.
 * Audit "create" on resource "session". */
int ap_store_session_create(struct ap_store *st, int64_t user_id, int64_t ttl_seconds,
                            const struct ap_store_actor *actor, char *token,
                            int64_t *expires_at);

/* [handle] Finds the live session for a plain-text token: AP_OK and *user filled (free with
 * ap_store_user_free; session_id may be NULL), or AP_ENOTFOUND if unknown, expired or revoked.
 * Read-only. */
int ap_store_session_lookup(struct ap_store *st, const char *token, struct ap_store_user *user,
                            int64_t *session_id);

/* [handle] The same, also giving the session's expiry (Unix seconds) in *expires_at (may be
 * NULL): for callers that cache the answer and must not outlive the session. */
int ap_store_session_lookup_exp(struct ap_store *st, const char *token, struct ap_store_user *user,
                                int64_t *session_id, int64_t *expires_at);

/* [handle] Revokes the session of a plain-text token (logout). AP_ENOTFOUND if unknown; revoking
 * twice is a no-op. Audit "revoke" on resource "session". */
int ap_store_session_revoke(struct ap_store *st, const char *token,
                            const struct ap_store_actor *actor);

/* [handle] Creates an API key for user_id named name (1..100 bytes, no controls: else AP_EINVAL).
 * key (AP_STORE_TOKEN_MAX bytes) receives "apk_..." once; only the hash is stored.
 * *out (may be NULL) = {"id","user_id","name","prefix","created_at","last_used_at","revoked"}.
 * AP_ENOTFOUND if the user does not exist. Audit "create" on resource "api_key". */
int ap_store_apikey_create(struct ap_store *st, int64_t user_id, const char *name,
                           const struct ap_store_actor *actor, char *key, json_t **out);

/* [handle] Finds the user of a live (not revoked) key: AP_OK and *user filled (free with
 * ap_store_user_free; key_id may be NULL), else AP_ENOTFOUND. Read-only. */
int ap_store_apikey_lookup(struct ap_store *st, const char *key, struct ap_store_user *user,
                           int64_t *key_id);

/* [handle] Revokes a key by id. AP_ENOTFOUND if unknown; twice is a no-op. Audit "revoke". */
int ap_store_apikey_revoke(struct ap_store *st, int64_t key_id,
                           const struct ap_store_actor *actor);

/* [handle] Records that the key was used now. To keep a write off most requests it only writes when
 * the stored last_used_at is older than 60 s. Not audited, does not bump the store version (it is
 * not configuration). */
int ap_store_apikey_touch(struct ap_store *st, int64_t key_id);

/* [handle] *out = {"data": [keys by id, no hashes], "next_cursor"}; user_id 0: every user's
 * keys. */
int ap_store_apikey_list(struct ap_store *st, int64_t user_id,
                         const struct ap_store_list_query *q, json_t **out,
                         struct ap_schema_errors *errs);

/* ---- audit log ---------------------------------------------------------------------------- */

/* [handle] *out = {"data": [{"id","at","actor_user_id","action","resource","resource_id",
 * "before","after"}], "next_cursor"}, newest first. "at" is RFC 3339; before/after are objects
 * or null. Actions: create, update, archive, revoke. Filters in q are AND-ed; q may be NULL. */
int ap_store_audit_list(struct ap_store *st, const struct ap_store_audit_query *q, json_t **out,
                        struct ap_schema_errors *errs);

/* ---- rollups (ap_store_rollup.c) ------------------------------------------------------------
 *
 * The aggregator's tables (migration 4): hourly and daily (UTC day) rollups, the aggregator's log
 * offset and counters, the seen-set of (impression id, event type), campaign billing accounts and
 * carried fractions. They live in the same database file as the resources (reports join
 * campaigns and placements for tenancy and site grouping) but are reached through their own
 * handle, struct ap_store_rollup: one SQLite connection (WAL, busy timeout) that does not bump
 * the change feed and writes no audit rows (events are not configuration).
 *
 * Threads: like struct ap_store, a handle is used by one thread at a time: the aggregator thread
 * owns one; each control-plane thread answering reports opens its own. The aggregator is the
 * only writer of these tables. Memory: nothing returned points into the handle except
 * ap_store_rollup_errmsg. */

struct ap_store_rollup;

/* Metrics of a rollup row, indexed by enum ap_store_rollup_metric. */
enum ap_store_rollup_metric {
    AP_STORE_RM_DECISIONS = 0,
    AP_STORE_RM_IMPRESSIONS,
    AP_STORE_RM_VIEWABLE,
    AP_STORE_RM_CLICKS,
    AP_STORE_RM_CONVERSIONS,
    AP_STORE_RM_CONVERSION_VALUE,
    AP_STORE_RM_SPEND,
    AP_STORE_RM_REVENUE,
    AP_STORE_RM_UNBILLED,
    AP_STORE_RM_BIDS,
    AP_STORE_RM_WINS,
    AP_STORE_RM_LOSSES,
    AP_STORE_RM_BILLINGS,
    AP_STORE_RM_RTB_REVENUE,
    AP_STORE_RM_COUNT
};

/* [any] The metric's column name ("impressions", "spend_micros", ...). */
const char *ap_store_rollup_metric_name(enum ap_store_rollup_metric m);

/* The dimensions of a rollup row. hour: Unix seconds of the UTC hour. country: ISO alpha-2 or
 * "" (NUL-terminated). */
struct ap_store_rollup_key {
    int64_t hour, campaign_id, ad_id, placement_id, publisher_id, partner_id;
    char country[3];
    uint8_t device; /* enum ap_serve_device */
    uint8_t test;   /* 1: test traffic (never billed) */
};

/* The aggregator's checkpoint. */
struct ap_store_agg_state {
    uint64_t log_offset; /* log position after the last event folded in */
    int64_t events;      /* events counted (duplicates excluded) */
    int64_t duplicates;  /* repeated (impression id, type) dropped */
    int64_t updated_at;  /* Unix s of the last commit */
};

/* A campaign's billing account as persisted (see struct ap_money_account). */
struct ap_store_agg_account {
    int64_t campaign_id, day, day_spent, life_spent, carry_milli, unbilled;
};

/* Kinds of carried fractions (agg_carries.kind). */
enum ap_store_carry_kind {
    AP_STORE_CARRY_PUBLISHER_SHARE = 1, /* owner: publisher id; revenue share remainder (ppm) */
    AP_STORE_CARRY_PARTNER_CPM = 2      /* owner: partner id; RTB billing CPM remainder (milli) */
};

/* What the aggregator needs to bill a campaign. pricing: 0 CPM, 1 CPC, 2 CPA. */
struct ap_store_billing_campaign {
    int64_t id, advertiser_id;
    int pricing;
    int64_t price_micros;
    int64_t budget_daily, budget_lifetime; /* micros, -1 when not set */
    char timezone[64];                     /* the advertiser's IANA zone */
};

/* [any] Opens a rollup handle on the store's database file at path (which ap_store_open has
 * migrated: AP_ENOTFOUND if the rollup tables are missing). AP_OK and *out, AP_EIO, AP_ENOMEM. */
int ap_store_rollup_open(const char *path, struct ap_store_rollup **out);
/* [handle] Closes and frees (NULL is fine). */
void ap_store_rollup_close(struct ap_store_rollup *r);
/* [handle] The last error message (never NULL). */
const char *ap_store_rollup_errmsg(struct ap_store_rollup *r);

/* [handle] The change feed (store_version), to know when to reload campaigns. */
int ap_store_rollup_store_version(struct ap_store_rollup *r, int64_t *out);

/* [handle] Calls fn for every campaign (any status: events of archived campaigns still bill)
 * and for every publisher's revenue share (ppm). fn returns AP_OK to go on, else stops with that
 * code. */
int ap_store_rollup_campaigns(struct ap_store_rollup *r,
                              int (*fn)(void *ud, const struct ap_store_billing_campaign *c),
                              void *ud);
int ap_store_rollup_publishers(struct ap_store_rollup *r,
                               int (*fn)(void *ud, int64_t publisher_id, int64_t share_ppm),
                               void *ud);

/* [handle] Reads the checkpoint, every account and every carry (at start-up and after a failed
 * batch). */
int ap_store_agg_state_get(struct ap_store_rollup *r, struct ap_store_agg_state *out);
int ap_store_agg_accounts(struct ap_store_rollup *r,
                          int (*fn)(void *ud, const struct ap_store_agg_account *a), void *ud);
int ap_store_agg_carries(struct ap_store_rollup *r,
                         int (*fn)(void *ud, int kind, int64_t owner_id, int64_t carry),
                         void *ud);

/* [handle] A batch: begin (write lock), any number of seen / add / account / carry / prune
 * calls, then state_put and commit; or rollback (always safe). Nothing is visible to readers
 * before the commit, and everything is, together, after it. */
int ap_store_rollup_begin(struct ap_store_rollup *r);
/* Records (id, type) seen at `at` (Unix s); *dup = true if it was already recorded (nothing
 * changes then). */
int ap_store_rollup_seen(struct ap_store_rollup *r, const uint8_t id[16], int type, int64_t at,
                         bool *dup);
/* Adds vals (AP_STORE_RM_COUNT metrics) to the hourly row of k and to its daily row. */
int ap_store_rollup_add(struct ap_store_rollup *r, const struct ap_store_rollup_key *k,
                        const int64_t *vals);
/* Adds vals to the per-campaign daily summary (day: Unix s of the UTC day). The caller sums
 * what it passed to ap_store_rollup_add for the same day, campaign and test flag. */
int ap_store_rollup_add_campaign_day(struct ap_store_rollup *r, int64_t day, int64_t campaign_id,
                                     int test, const int64_t *vals);
int ap_store_agg_account_put(struct ap_store_rollup *r, const struct ap_store_agg_account *a);
int ap_store_agg_carry_put(struct ap_store_rollup *r, int kind, int64_t owner_id, int64_t carry);
/* Deletes up to limit seen entries older than `before`; *deleted (may be NULL) says how many. */
int ap_store_rollup_prune_seen(struct ap_store_rollup *r, int64_t before, int limit,
                               int *deleted);
int ap_store_agg_state_put(struct ap_store_rollup *r, const struct ap_store_agg_state *s);
int ap_store_rollup_commit(struct ap_store_rollup *r);
void ap_store_rollup_rollback(struct ap_store_rollup *r);

/* Report dimensions (bit i = 1 << i). */
enum ap_store_rollup_dim {
    AP_STORE_DIM_CAMPAIGN = 0,
    AP_STORE_DIM_AD,
    AP_STORE_DIM_PLACEMENT,
    AP_STORE_DIM_SITE,
    AP_STORE_DIM_PUBLISHER,
    AP_STORE_DIM_ADVERTISER,
    AP_STORE_DIM_PARTNER,
    AP_STORE_DIM_COUNTRY,
    AP_STORE_DIM_DEVICE,
    AP_STORE_DIM_COUNT
};

/* [any] "campaign", "ad", ... and the output column ("campaign_id", ..., "country", "device"). */
const char *ap_store_rollup_dim_name(enum ap_store_rollup_dim d);
const char *ap_store_rollup_dim_column(enum ap_store_rollup_dim d);

#define AP_STORE_ROLLUP_MAX_IDS 1000 /* ids per filter */

/* A report query over [from, to) (Unix s). daily: read rollup_daily (from and to must then be
 * UTC midnights) instead of rollup_hourly; when only campaign and advertiser dimensions are
 * grouped or filtered (and no publisher scope), the per-campaign daily summary. Filters: ids[d] / nids[d] for id dimensions (none =
 * any). test: 0 real traffic only, 1 test only, 2 both. Scope (tenancy): restrict_advertisers /
 * restrict_publishers limit rows to campaigns of those advertisers / those publishers. */
struct ap_store_rollup_query {
    int64_t from, to;
    bool daily;
    bool by_time;    /* group by hour (or day) too: the callback's t is then set */
    unsigned groups; /* bit set of enum ap_store_rollup_dim */
    const int64_t *ids[AP_STORE_DIM_COUNT];
    size_t nids[AP_STORE_DIM_COUNT];
    const char *const *countries; /* country filter (upper case alpha-2, "" = unknown) */
    size_t ncountries;
    int device; /* -1 any, else an enum ap_serve_device */
    int test;
    const int64_t *creative_ids; /* ads of these creatives */
    size_t ncreative_ids;
    bool restrict_advertisers, restrict_publishers;
    const int64_t *scope_advertisers, *scope_publishers;
    size_t nscope_advertisers, nscope_publishers;
};

/* One result row: t (hour or day start, when by_time), dims[d] for the grouped id dimensions,
 * country / device when grouped, and the metrics. Rows are NOT merged: several rows may share
 * a key (one per stored rollup row); the caller sums them (a hash merge is cheaper than
 * SQLite's GROUP BY sorter). Borrowed for the callback. */
struct ap_store_rollup_row {
    int64_t t;
    int64_t dims[AP_STORE_DIM_COUNT];
    char country[3];
    int device;
    int64_t vals[AP_STORE_RM_COUNT];
};

/* [handle] Runs the query, calling fn per stored row (unordered, unmerged). AP_OK, AP_EINVAL
 * (too many ids), the callback's code, or a storage error. */
int ap_store_rollup_query(struct ap_store_rollup *r, const struct ap_store_rollup_query *q,
                          int (*fn)(void *ud, const struct ap_store_rollup_row *row), void *ud);

/* ---- token signing keys (migration 7; src/store/ap_store_keys.c) ------------------------------
 * The key ring of ap_token in the token_keys table. Like ap_store_rates, each call opens its own
 * SQLite connection on db_path (tiny table; callers: start-up, the ring refresher thread, the
 * admin API, the CLI), so it works beside any ap_store handle; any thread, blocking I/O. */
#define AP_STORE_TOKEN_KEY_BYTES 32
struct ap_store_token_key {
    int64_t id; /* 1..65535 */
    int64_t created_at;
    int64_t retired_at; /* 0 = current (signing) key */
    uint8_t key[AP_STORE_TOKEN_KEY_BYTES];
};

/* If the table is empty: inserts import[0..n) (an existing key file, so old tokens stay valid),
 * or one fresh random key (created_at now) when n == 0; *created = true. A non-empty table is
 * left alone (*created = false). One transaction. AP_OK, AP_EINVAL (bad id), AP_EIO. */
int ap_store_keys_bootstrap(const char *db_path, const struct ap_store_token_key *import, int n,
                            int64_t now, bool *created);

/* The newest cap keys that are current or retired after retired_after, oldest first, into
 * out[0..*n). Key bytes included: for the data plane only, never for the API. AP_OK, AP_EIO. */
int ap_store_keys_get(const char *db_path, int64_t retired_after, struct ap_store_token_key *out,
                      int cap, int *n);

/* Rotation: a fresh random key (id = highest id + 1, created_at = now) becomes the signing key,
 * the previous current key gets retired_at = now; bumps the store version and writes an audit
 * row (action "rotate", resource "token_keys", ids and dates only; actor_user_id 0 = none, e.g.
 * the CLI). *new_id = the new key's id. AP_OK, AP_ELIMIT (ids exhausted), AP_EIO. */
int ap_store_keys_rotate(const char *db_path, int64_t actor_user_id, int64_t now, int64_t *new_id);

/* *out = [{"id","created_at","retired_at"(null if current),"current"}] newest first, never
 * the key bytes (a new reference). AP_OK, AP_EIO, AP_ENOMEM. */
int ap_store_keys_list_json(const char *db_path, json_t **out);

/* The store version (change feed), polled by the ring refresher. AP_OK, AP_EIO. */
int ap_store_keys_version(const char *db_path, int64_t *out);

#endif
