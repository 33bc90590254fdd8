/*
 * The SQLite backend of ap_store (the embedded default).
 *
 * One sqlite3 connection per handle, opened SQLITE_OPEN_NOMUTEX (a handle is used by one thread
 * at a time), in WAL mode (readers never block the writer), foreign_keys=ON, synchronous=NORMAL
 * (in WAL mode a commit is durable at the next checkpoint; a power loss may drop the last
 * transactions but never corrupts), busy_timeout (writers queue on the write lock).
 *
 * Writes are "BEGIN IMMEDIATE ... COMMIT": the write lock is taken first, so the checks done in
 * the transaction (references exist, unique values, version match) cannot race another writer.
 *
 * Prepared statements are cached per connection, keyed by their SQL text (the per-resource
 * SELECT/INSERT/UPDATE are generated once from the schema table at open). A statement taken
 * from the cache is pinned until release() resets it, so a later prepare never evicts one that
 * is in use.
 */
#include "ap_store_internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_buf.h"
#include "../core/ap_error.h"

#define STMT_CACHE 256
#define STMT_PROBE 16
#define SQL_MAX (256 * 1024)
#define ERRMSG_MAX 256
#define BUSY_TIMEOUT_DEFAULT_MS 5000
#define APIKEY_TOUCH_INTERVAL 60 /* seconds between last_used_at writes */
#define MAX_FILTERS 16
#define MAX_SCOPE_IDS 10000

struct slot {
    uint64_t hash;
    char *sql;
    sqlite3_stmt *stmt;
    bool pinned;
};

struct sq {
    struct ap_store base; /* first: a struct ap_store * is a struct sq * */
    sqlite3 *db;
    sqlite3_stmt *begin_write, *begin_read, *commit, *rollback;
    struct slot cache[STMT_CACHE];
    char *sql_select[AP_SCHEMA_RES_COUNT];
    char *sql_insert[AP_SCHEMA_RES_COUNT];
    char *sql_update[AP_SCHEMA_RES_COUNT];
    bool in_read;
    char errmsg[ERRMSG_MAX];
};

static struct sq *SQ(struct ap_store *st)
{
    return (struct sq *)st;
}

/* ---- errors --------------------------------------------------------------------------------- */

int ap__store_sqlite_error(struct sqlite3 *db, int rc, char *msg, size_t cap)
{
    snprintf(msg, cap, "sqlite: %s (%d): %s", sqlite3_errstr(rc), rc,
             db ? sqlite3_errmsg(db) : "no connection");
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return AP_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return AP_EBUSY;
    case SQLITE_CONSTRAINT:
        return AP_ECONFLICT;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return AP_ECORRUPT;
    default: /* IOERR, FULL, CANTOPEN, READONLY, PROTOCOL, ERROR, ... */
        return AP_EIO;
    }
}

/* Records the SQLite error and maps it to an AP_E* code. */
static int sql_fail(struct sq *s, int rc)
{
    return ap__store_sqlite_error(s->db, rc, s->errmsg, sizeof(s->errmsg));
}

static int fail_msg(struct sq *s, int code, const char *msg)
{
    snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
    return code;
}

static const char *sq_errmsg(struct ap_store *st)
{
    return SQ(st)->errmsg;
}

/* ---- statement cache ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* *out = the prepared statement for sql, pinned until release(). */
static int prep(struct sq *s, const char *sql, sqlite3_stmt **out)
{
    uint64_t h = fnv1a(sql);
    size_t base = (size_t)(h % STMT_CACHE);
    struct slot *victim = NULL;
    *out = NULL;
    for (size_t k = 0; k < STMT_PROBE; k++) {
        struct slot *sl = &s->cache[(base + k) % STMT_CACHE];
        if (sl->sql && sl->hash == h && strcmp(sl->sql, sql) == 0) {
            if (sl->pinned)
                return fail_msg(s, AP_EBUSY, "store: statement already in use (bug)");
            sl->pinned = true;
            *out = sl->stmt;
            return AP_OK;
        }
        if (!victim && !sl->sql)
            victim = sl;
    }
    for (size_t k = 0; !victim && k < STMT_PROBE; k++)
        if (!s->cache[(base + k) % STMT_CACHE].pinned)
            victim = &s->cache[(base + k) % STMT_CACHE];
    if (!victim)
        return fail_msg(s, AP_ELIMIT, "store: statement cache exhausted");

    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, rc);
    char *copy = ap__store_strdup(sql);
    if (!copy) {
        sqlite3_finalize(stmt);
        return fail_msg(s, AP_ENOMEM, "store: out of memory");
    }
    if (victim->sql) {
        sqlite3_finalize(victim->stmt);
        free(victim->sql);
    }
    *victim = (struct slot){.hash = h, .sql = copy, .stmt = stmt, .pinned = true};
    *out = stmt;
    return AP_OK;
}

/* Resets and unpins a statement from prep(); NULL is fine. */
static void release(struct sq *s, sqlite3_stmt *stmt)
{
    if (!stmt)
        return;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    for (size_t i = 0; i < STMT_CACHE; i++)
        if (s->cache[i].stmt == stmt) {
            s->cache[i].pinned = false;
            return;
        }
}

/* Steps a statement that returns no row. */
static int step_done(struct sq *s, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    return rc == SQLITE_DONE ? AP_OK : sql_fail(s, rc);
}

/* Steps to the next row: AP_OK (a row), AP_ENOTFOUND (no more) or an error. */
static int step_row(struct sq *s, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        return AP_OK;
    if (rc == SQLITE_DONE)
        return AP_ENOTFOUND;
    return sql_fail(s, rc);
}

/* Binders that turn SQLite's codes into ours. */
static int bind_i64(struct sq *s, sqlite3_stmt *stmt, int idx, int64_t v)
{
    int rc = sqlite3_bind_int64(stmt, idx, v);
    return rc == SQLITE_OK ? AP_OK : sql_fail(s, rc);
}

static int bind_text(struct sq *s, sqlite3_stmt *stmt, int idx, const char *v)
{
    /* STATIC: every caller keeps v alive until release() clears the bindings */
    int rc = v ? sqlite3_bind_text(stmt, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(stmt, idx);
    return rc == SQLITE_OK ? AP_OK : sql_fail(s, rc);
}

static int bind_dbval(struct sq *s, sqlite3_stmt *stmt, int idx, const struct ap_schema_dbval *v)
{
    int rc;
    switch (v->kind) {
    case AP_SCHEMA_DB_INT:
        rc = sqlite3_bind_int64(stmt, idx, v->i);
        break;
    case AP_SCHEMA_DB_TEXT:
        rc = sqlite3_bind_text(stmt, idx, v->text, (int)v->len, SQLITE_TRANSIENT);
        break;
    default:
        rc = sqlite3_bind_null(stmt, idx);
    }
    return rc == SQLITE_OK ? AP_OK : sql_fail(s, rc);
}

/* Runs one cached statement without parameters or rows. */
static int exec1(struct sq *s, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    int rc = prep(s, sql, &stmt);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    return rc;
}

/* ---- transactions ------------------------------------------------------------------------- */

static int run_fixed(struct sq *s, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? AP_OK : sql_fail(s, rc);
}

static int tx_begin(struct sq *s)
{
    if (s->in_read)
        return fail_msg(s, AP_EBUSY, "store: write inside a read transaction");
    return run_fixed(s, s->begin_write);
}

static int tx_commit(struct sq *s)
{
    return run_fixed(s, s->commit);
}

/* Rolls back if a transaction is still open (a failed COMMIT may already have rolled back). */
static void tx_rollback(struct sq *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->rollback);
        sqlite3_reset(s->rollback);
    }
}

/* ---- rows <-> JSON ---------------------------------------------------------------------- */

static int col_dbval(sqlite3_stmt *stmt, int col, struct ap_schema_dbval *v)
{
    *v = (struct ap_schema_dbval){.kind = AP_SCHEMA_DB_NULL};
    switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_NULL:
        return AP_OK;
    case SQLITE_INTEGER:
        v->kind = AP_SCHEMA_DB_INT;
        v->i = sqlite3_column_int64(stmt, col);
        return AP_OK;
    case SQLITE_TEXT:
        v->text = (const char *)sqlite3_column_text(stmt, col);
        if (!v->text)
            return AP_ENOMEM;
        v->len = (size_t)sqlite3_column_bytes(stmt, col);
        v->kind = AP_SCHEMA_DB_TEXT;
        return AP_OK;
    default:
        return AP_ECORRUPT;
    }
}

static json_t *time_json(int64_t t)
{
    char buf[AP_SCHEMA_TIME_MAX];
    ap_schema_time_format(t, buf);
    return json_string(buf);
}

/* A JSON value for a nullable integer/time column. */
static json_t *col_time_or_null(sqlite3_stmt *stmt, int col)
{
    if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
        return json_null();
    return time_json(sqlite3_column_int64(stmt, col));
}

/* Columns: id, the schema's fields in order, created_at, updated_at, version. */
static int row_json(const struct ap_schema_resource *r, sqlite3_stmt *stmt, json_t **out)
{
    int rc = AP_ENOMEM;
    int n = (int)r->nfields;
    json_t *o = json_object();
    *out = NULL;
    if (!o || json_object_set_new(o, "id", json_integer(sqlite3_column_int64(stmt, 0))))
        goto fail;
    for (int i = 0; i < n; i++) {
        struct ap_schema_dbval v;
        json_t *j = NULL;
        rc = col_dbval(stmt, i + 1, &v);
        if (rc == AP_OK)
            rc = ap_schema_from_db(&r->fields[i], &v, &j);
        if (rc)
            goto fail;
        rc = AP_ENOMEM;
        if (json_object_set_new(o, r->fields[i].name, j))
            goto fail;
    }
    if (json_object_set_new(o, "created_at", time_json(sqlite3_column_int64(stmt, n + 1))) ||
        json_object_set_new(o, "updated_at", time_json(sqlite3_column_int64(stmt, n + 2))) ||
        json_object_set_new(o, "version", json_integer(sqlite3_column_int64(stmt, n + 3))))
        goto fail;
    *out = o;
    return AP_OK;
fail:
    json_decref(o);
    return rc;
}

/* Binds row's fields to ?1..?n. */
static int bind_row(struct sq *s, sqlite3_stmt *stmt, const struct ap_schema_resource *r,
                    const json_t *row)
{
    for (size_t i = 0; i < r->nfields; i++) {
        struct ap_schema_dbval v;
        int rc = ap_schema_to_db(&r->fields[i], json_object_get(row, r->fields[i].name), &v);
        if (rc)
            return fail_msg(s, rc, "store: cannot convert a value for the database");
        rc = bind_dbval(s, stmt, (int)i + 1, &v);
        ap_schema_dbval_free(&v);
        if (rc)
            return rc;
    }
    return AP_OK;
}

/* *out = the row as JSON, or AP_ENOTFOUND. */
static int load_row(struct sq *s, const struct ap_schema_resource *r, int64_t id, json_t **out)
{
    sqlite3_stmt *stmt = NULL;
    *out = NULL;
    int rc = prep(s, s->sql_select[r->id], &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, id);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK)
        rc = row_json(r, stmt, out);
    release(s, stmt);
    return rc;
}

/* ---- SQL generated from the schema table ------------------------------------------------ */

static char *buf_take(struct ap_buf *b)
{
    if (ap_buf_append(b, "", 1) != AP_OK) {
        ap_buf_free(b);
        return NULL;
    }
    char *p = b->data;
    ap_buf_init(b, b->cap);
    return p;
}

/* A resource row's changed_version: the change feed's value in the writing transaction (before
 * or after its bump, depending on the order of the statements: readers of the feed ask for rows
 * with changed_version >= the version they last saw, which is right either way). */
#define CHANGED_VERSION "(SELECT version FROM store_version WHERE id = 1)"

static int build_sql(struct sq *s)
{
    struct ap_buf b;
    ap_buf_init(&b, SQL_MAX);
    for (int res = 0; res < AP_SCHEMA_RES_COUNT; res++) {
        const struct ap_schema_resource *r = ap_schema_get((enum ap_schema_res)res);
        size_t n = r->nfields;
        int rc = ap_buf_append_str(&b, "SELECT id");
        for (size_t i = 0; rc == AP_OK && i < n; i++)
            rc = ap_buf_printf(&b, ", %s", r->fields[i].name);
        if (rc == AP_OK)
            rc = ap_buf_printf(&b, ", created_at, updated_at, version FROM %s WHERE id = ?1",
                               r->table);
        if (rc || !(s->sql_select[res] = buf_take(&b)))
            goto nomem;

        rc = ap_buf_printf(&b, "INSERT INTO %s (", r->table);
        for (size_t i = 0; rc == AP_OK && i < n; i++)
            rc = ap_buf_printf(&b, "%s, ", r->fields[i].name);
        if (rc == AP_OK)
            rc = ap_buf_append_str(&b,
                                   "created_at, updated_at, version, changed_version) VALUES (");
        for (size_t i = 0; rc == AP_OK && i < n; i++)
            rc = ap_buf_printf(&b, "?%zu, ", i + 1);
        if (rc == AP_OK)
            rc = ap_buf_printf(&b, "?%zu, ?%zu, 1, " CHANGED_VERSION ")", n + 1, n + 1);
        if (rc || !(s->sql_insert[res] = buf_take(&b)))
            goto nomem;

        rc = ap_buf_printf(&b, "UPDATE %s SET ", r->table);
        for (size_t i = 0; rc == AP_OK && i < n; i++)
            rc = ap_buf_printf(&b, "%s = ?%zu, ", r->fields[i].name, i + 1);
        if (rc == AP_OK)
            rc = ap_buf_printf(&b,
                               "updated_at = ?%zu, version = version + 1, "
                               "changed_version = " CHANGED_VERSION " "
                               "WHERE id = ?%zu AND version = ?%zu",
                               n + 1, n + 2, n + 3);
        if (rc || !(s->sql_update[res] = buf_take(&b)))
            goto nomem;
    }
    return AP_OK;
nomem:
    ap_buf_free(&b);
    return fail_msg(s, AP_ENOMEM, "store: out of memory");
}

/* Appends the tenancy condition "col is the id of a row of r owned by one of n ids":
 *   owner (advertiser/publisher):  col IN (?, ?, ...)
 *   else:  col IN (SELECT id FROM <r.table> WHERE <the same for r's parent, on owner_field>) */
static int scope_sql(struct ap_buf *b, const struct ap_schema_resource *r, const char *col,
                     size_t n)
{
    int rc;
    if (!r->owner_field) {
        rc = ap_buf_printf(b, "%s IN (", col);
        for (size_t i = 0; rc == AP_OK && i < n; i++)
            rc = ap_buf_append_str(b, i ? ", ?" : "?");
        return rc ? rc : ap_buf_append_str(b, ")");
    }
    const struct ap_schema_resource *parent =
        ap_schema_get(ap_schema_field(r, r->owner_field)->ref);
    rc = ap_buf_printf(b, "%s IN (SELECT id FROM %s WHERE ", col, r->table);
    if (rc == AP_OK)
        rc = scope_sql(b, parent, r->owner_field, n);
    return rc ? rc : ap_buf_append_str(b, ")");
}

/* ---- ownership and checks -------------------------------------------------------------- */

static int owner_of(struct sq *s, const struct ap_schema_resource *r, int64_t id,
                    enum ap_schema_owner *kind, int64_t *owner)
{
    char sql[160];
    sqlite3_stmt *stmt = NULL;
    int64_t v = 0;
    snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE id = ?1",
             r->owner_field ? r->owner_field : "id", r->table);
    int rc = prep(s, sql, &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, id);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK)
        v = sqlite3_column_int64(stmt, 0);
    release(s, stmt);
    if (rc)
        return rc;
    if (!r->owner_field) {
        *kind = r->owner;
        *owner = r->owner == AP_SCHEMA_OWNER_NONE ? 0 : v;
        return AP_OK;
    }
    return owner_of(s, ap_schema_get(ap_schema_field(r, r->owner_field)->ref), v, kind, owner);
}

static const char *owner_name(enum ap_schema_owner k)
{
    return k == AP_SCHEMA_OWNER_ADVERTISER  ? "advertiser"
           : k == AP_SCHEMA_OWNER_PUBLISHER ? "publisher"
                                            : "owner";
}

/* The row as a whole, in the write transaction: references exist and are visible to the
 * actor (else "not found", the same for both), SAME_OWNER references share the row's owner,
 * UNIQUE values are unused by other rows. AP_OK, AP_EINVAL (errors added) or a store error. */
static int check_row(struct sq *s, const struct ap_schema_resource *r, const json_t *row,
                     int64_t self_id, const struct ap_store_actor *actor,
                     struct ap_schema_errors *e)
{
    size_t t0 = e->total;
    enum ap_schema_owner row_kind = AP_SCHEMA_OWNER_NONE;
    int64_t row_owner = 0;
    bool row_owner_known = false;
    int rc;
    for (size_t i = 0; i < r->nfields; i++) {
        const struct ap_schema_field *f = &r->fields[i];
        const json_t *v = json_object_get(row, f->name);
        if (f->type == AP_SCHEMA_REF && json_is_integer(v)) {
            const struct ap_schema_resource *t = ap_schema_get(f->ref);
            int64_t id = json_integer_value(v), o = 0;
            enum ap_schema_owner k = AP_SCHEMA_OWNER_NONE;
            rc = owner_of(s, t, id, &k, &o);
            if (rc == AP_ENOTFOUND || (rc == AP_OK && !ap__store_actor_sees(actor, k, o))) {
                ap_schema_errors_add(e, f->name, "%s %lld not found", t->name, (long long)id);
                continue;
            }
            if (rc)
                return rc;
            if (r->owner_field && strcmp(f->name, r->owner_field) == 0) {
                row_kind = k;
                row_owner = o;
                row_owner_known = true;
            }
            if ((f->flags & AP_SCHEMA_F_SAME_OWNER) && row_owner_known &&
                (k != row_kind || o != row_owner))
                ap_schema_errors_add(e, f->name, "%s %lld belongs to another %s", t->name,
                                     (long long)id, owner_name(row_kind));
        }
        if ((f->flags & AP_SCHEMA_F_UNIQUE) && v && !json_is_null(v)) {
            char sql[160];
            sqlite3_stmt *stmt = NULL;
            struct ap_schema_dbval dv;
            snprintf(sql, sizeof(sql), "SELECT id FROM %s WHERE %s = ?1 AND id <> ?2 LIMIT 1",
                     r->table, f->name);
            rc = ap_schema_to_db(f, v, &dv);
            if (rc)
                return rc;
            rc = prep(s, sql, &stmt);
            if (rc == AP_OK)
                rc = bind_dbval(s, stmt, 1, &dv);
            if (rc == AP_OK)
                rc = bind_i64(s, stmt, 2, self_id);
            if (rc == AP_OK)
                rc = step_row(s, stmt);
            release(s, stmt);
            ap_schema_dbval_free(&dv);
            if (rc == AP_OK)
                ap_schema_errors_add(e, f->name, "is already in use");
            else if (rc != AP_ENOTFOUND)
                return rc;
        }
    }
    return e->total == t0 ? AP_OK : AP_EINVAL;
}

/* Writes the audit row and bumps the change feed: call inside the write's transaction.
 * before/after may be NULL. */
static int record(struct sq *s, const struct ap_store_actor *actor, const char *action,
                  const char *resource, int64_t id, const json_t *before, const json_t *after)
{
    char *b = NULL, *a = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = AP_ENOMEM;
    if (before && !(b = ap_schema_json_dump(before)))
        goto done;
    if (after && !(a = ap_schema_json_dump(after)))
        goto done;
    rc = prep(s,
              "INSERT INTO audit_log (at, actor_user_id, action, resource, resource_id, "
              "before_json, after_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
              &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, ap__store_now(&s->base));
    if (rc == AP_OK)
        rc = actor && actor->user_id > 0 ? bind_i64(s, stmt, 2, actor->user_id)
                                         : bind_text(s, stmt, 2, NULL);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 3, action);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 4, resource);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 5, id);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 6, b);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 7, a);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc == AP_OK)
        rc = exec1(s, "UPDATE store_version SET version = version + 1 WHERE id = 1");
done:
    free(b);
    free(a);
    return rc;
}

/* load_row, then AP_ENOTFOUND unless the actor may see the row. */
static int load_visible(struct sq *s, const struct ap_schema_resource *r, int64_t id,
                        const struct ap_store_actor *actor, json_t **out)
{
    int rc = load_row(s, r, id, out);
    if (rc || !actor || !actor->restricted)
        return rc;
    enum ap_schema_owner k;
    int64_t o;
    rc = owner_of(s, r, id, &k, &o);
    if (rc == AP_OK && !ap__store_actor_sees(actor, k, o))
        rc = AP_ENOTFOUND;
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

static int check_version(struct sq *s, const json_t *row, int64_t expected)
{
    if (expected >= 0 && json_integer_value(json_object_get(row, "version")) != expected)
        return fail_msg(s, AP_ECONFLICT, "store: the row has changed (version mismatch)");
    return AP_OK;
}

/* ---- CRUD ------------------------------------------------------------------------------------ */

static int sq_create(struct ap_store *st, enum ap_schema_res res, const json_t *fields,
                     const struct ap_store_actor *actor, json_t **out,
                     struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    const struct ap_schema_resource *r = ap_schema_get(res);
    json_t *row = NULL, *after = NULL;
    sqlite3_stmt *stmt = NULL;
    bool tx = false;
    int rc;

    if (actor && actor->restricted && !r->owner_field)
        return fail_msg(s, AP_EPERM, "store: tenants cannot create this resource");
    rc = ap_schema_validate_create(r, fields, &row, errs);
    if (rc)
        goto done;
    rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = check_row(s, r, row, 0, actor, errs);
    if (rc)
        goto done;
    rc = prep(s, s->sql_insert[res], &stmt);
    if (rc == AP_OK)
        rc = bind_row(s, stmt, r, row);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, (int)r->nfields + 1, ap__store_now(st));
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc)
        goto done;
    int64_t id = sqlite3_last_insert_rowid(s->db);
    rc = load_row(s, r, id, &after);
    if (rc == AP_OK)
        rc = record(s, actor, "create", r->name, id, NULL, after);
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc)
        goto done;
    tx = false;
    *out = after;
    after = NULL;
done:
    if (tx)
        tx_rollback(s);
    json_decref(row);
    json_decref(after);
    return rc;
}

static int sq_get(struct ap_store *st, enum ap_schema_res res, int64_t id,
                  const struct ap_store_actor *actor, json_t **out)
{
    return load_visible(SQ(st), ap_schema_get(res), id, actor, out);
}

static bool same_fields(const struct ap_schema_resource *r, const json_t *a, const json_t *b)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (!json_equal(json_object_get(a, r->fields[i].name),
                        json_object_get(b, r->fields[i].name)))
            return false;
    return true;
}

static int sq_update(struct ap_store *st, enum ap_schema_res res, int64_t id, const json_t *patch,
                     int64_t expected_version, const struct ap_store_actor *actor, json_t **out,
                     struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    const struct ap_schema_resource *r = ap_schema_get(res);
    json_t *before = NULL, *row = NULL, *after = NULL;
    sqlite3_stmt *stmt = NULL;
    bool tx = false;
    int rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = load_visible(s, r, id, actor, &before);
    if (rc == AP_OK)
        rc = check_version(s, before, expected_version);
    if (rc == AP_OK)
        rc = ap_schema_validate_patch(r, before, patch, &row, errs);
    if (rc == AP_OK)
        rc = check_row(s, r, row, id, actor, errs);
    if (rc)
        goto done;
    if (same_fields(r, row, before)) { /* nothing to write */
        *out = before;
        before = NULL;
        goto done;
    }
    int n = (int)r->nfields;
    rc = prep(s, s->sql_update[res], &stmt);
    if (rc == AP_OK)
        rc = bind_row(s, stmt, r, row);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, n + 1, ap__store_now(st));
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, n + 2, id);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, n + 3, json_integer_value(json_object_get(before, "version")));
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    if (rc == AP_OK && sqlite3_changes(s->db) != 1)
        rc = fail_msg(s, AP_ECONFLICT, "store: the row has changed (version mismatch)");
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_row(s, r, id, &after);
    if (rc == AP_OK)
        rc = record(s, actor, "update", r->name, id, before, after);
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc)
        goto done;
    tx = false;
    *out = after;
    after = NULL;
done:
    if (tx)
        tx_rollback(s);
    json_decref(before);
    json_decref(row);
    json_decref(after);
    return rc;
}

static int sq_archive(struct ap_store *st, enum ap_schema_res res, int64_t id,
                      int64_t expected_version, const struct ap_store_actor *actor, json_t **out)
{
    struct sq *s = SQ(st);
    const struct ap_schema_resource *r = ap_schema_get(res);
    json_t *before = NULL, *after = NULL;
    sqlite3_stmt *stmt = NULL;
    bool tx = false;
    char sql[200];
    if (!ap_schema_status_field(r))
        return fail_msg(s, AP_EINVAL, "store: resource has no status");
    int rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = load_visible(s, r, id, actor, &before);
    if (rc == AP_OK && actor && actor->restricted && !r->owner_field)
        rc = fail_msg(s, AP_EPERM, "store: tenants cannot archive this resource");
    if (rc == AP_OK)
        rc = check_version(s, before, expected_version);
    if (rc)
        goto done;
    const char *status = json_string_value(json_object_get(before, "status"));
    if (status && strcmp(status, "archived") == 0) {
        *out = before; /* already archived */
        before = NULL;
        goto done;
    }
    snprintf(sql, sizeof(sql),
             "UPDATE %s SET status = 'archived', updated_at = ?1, version = version + 1, "
             "changed_version = " CHANGED_VERSION " WHERE id = ?2",
             r->table);
    rc = prep(s, sql, &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, ap__store_now(st));
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, id);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_row(s, r, id, &after);
    if (rc == AP_OK)
        rc = record(s, actor, "archive", r->name, id, before, after);
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc)
        goto done;
    tx = false;
    *out = after;
    after = NULL;
done:
    if (tx)
        tx_rollback(s);
    json_decref(before);
    json_decref(after);
    return rc;
}

static int sq_owner(struct ap_store *st, enum ap_schema_res res, int64_t id,
                    enum ap_schema_owner *kind, int64_t *owner_id)
{
    return owner_of(SQ(st), ap_schema_get(res), id, kind, owner_id);
}

/* Builds {"data": data, "next_cursor": ...}; steals data. */
static int page_json(json_t *data, bool more, int64_t last_id, json_t **out)
{
    json_t *cursor = ap__store_cursor_json(more, last_id);
    if (!cursor) {
        json_decref(data);
        return AP_ENOMEM;
    }
    *out = json_pack("{s:o, s:o}", "data", data, "next_cursor", cursor); /* steals both */
    return *out ? AP_OK : AP_ENOMEM;
}

static int sq_list(struct ap_store *st, enum ap_schema_res res, const struct ap_store_list_query *q,
                   const struct ap_store_actor *actor, json_t **out,
                   struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    const struct ap_schema_resource *r = ap_schema_get(res);
    struct ap_schema_dbval fv[MAX_FILTERS];
    const char *fcol[MAX_FILTERS];
    size_t nf = q ? q->nfilters : 0;
    struct ap_buf b;
    sqlite3_stmt *stmt = NULL;
    json_t *data = NULL;
    int64_t after = 0, last = 0;
    int limit = 0, count = 0, rc;
    bool more = false;

    ap_buf_init(&b, SQL_MAX);
    ap__store_list_params(q, false, &after, &limit, errs);
    if (nf > MAX_FILTERS) {
        ap_schema_errors_add(errs, "", "at most %d filters", MAX_FILTERS);
        nf = 0;
    }
    for (size_t i = 0; i < nf; i++) {
        ap_schema_filter_value(r, q->filters[i].field, q->filters[i].value, &fv[i], errs);
        const struct ap_schema_field *f = ap_schema_field(r, q->filters[i].field);
        fcol[i] = f ? f->name : NULL;
    }
    if (errs->total)
        return AP_EINVAL;

    const int64_t *ids = NULL;
    size_t nids = 0;
    bool scoped = actor && actor->restricted;
    if (scoped && r->owner == AP_SCHEMA_OWNER_ADVERTISER) {
        ids = actor->advertiser_ids;
        nids = actor->n_advertiser_ids;
    } else if (scoped && r->owner == AP_SCHEMA_OWNER_PUBLISHER) {
        ids = actor->publisher_ids;
        nids = actor->n_publisher_ids;
    }
    if (nids > MAX_SCOPE_IDS)
        return fail_msg(s, AP_ELIMIT, "store: too many tenant ids");

    rc = ap_buf_append_str(&b, "SELECT id");
    for (size_t i = 0; rc == AP_OK && i < r->nfields; i++)
        rc = ap_buf_printf(&b, ", %s", r->fields[i].name);
    if (rc == AP_OK)
        rc = ap_buf_printf(&b, ", created_at, updated_at, version FROM %s t WHERE t.id > ?",
                           r->table);
    for (size_t i = 0; rc == AP_OK && i < nf; i++)
        rc = ap_buf_printf(&b, " AND t.%s = ?", fcol[i]);
    if (rc == AP_OK && scoped && nids == 0)
        rc = ap_buf_append_str(&b, " AND 0 = 1");
    if (rc == AP_OK && scoped && nids > 0) {
        char col[64];
        rc = ap_buf_append_str(&b, " AND ");
        if (!r->owner_field) {
            if (rc == AP_OK)
                rc = scope_sql(&b, r, "t.id", nids);
        } else {
            snprintf(col, sizeof(col), "t.%s", r->owner_field);
            if (rc == AP_OK)
                rc = scope_sql(&b, ap_schema_get(ap_schema_field(r, r->owner_field)->ref), col,
                               nids);
        }
    }
    if (rc == AP_OK)
        rc = ap_buf_append_str(&b, " ORDER BY t.id LIMIT ?");
    if (rc == AP_OK)
        rc = ap_buf_append(&b, "", 1);
    if (rc) {
        rc = fail_msg(s, rc, "store: cannot build the list query");
        goto done;
    }

    rc = prep(s, b.data, &stmt);
    int idx = 1;
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, idx++, after);
    for (size_t i = 0; rc == AP_OK && i < nf; i++)
        rc = bind_dbval(s, stmt, idx++, &fv[i]);
    for (size_t i = 0; rc == AP_OK && scoped && i < nids; i++)
        rc = bind_i64(s, stmt, idx++, ids[i]);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, idx++, (int64_t)limit + 1);
    if (rc)
        goto done;
    data = json_array();
    if (!data) {
        rc = AP_ENOMEM;
        goto done;
    }
    while ((rc = step_row(s, stmt)) == AP_OK) {
        if (count == limit) {
            more = true;
            break;
        }
        json_t *obj;
        rc = row_json(r, stmt, &obj);
        if (rc)
            goto done;
        last = sqlite3_column_int64(stmt, 0);
        if (json_array_append_new(data, obj)) {
            rc = AP_ENOMEM;
            goto done;
        }
        count++;
    }
    if (rc != AP_OK && rc != AP_ENOTFOUND)
        goto done;
    release(s, stmt);
    stmt = NULL;
    rc = page_json(data, more, last, out);
    data = NULL;
done:
    release(s, stmt);
    json_decref(data);
    ap_buf_free(&b);
    return rc;
}

static int sq_list_changed(struct ap_store *st, enum ap_schema_res res, int64_t since,
                           json_t **out)
{
    struct sq *s = SQ(st);
    const struct ap_schema_resource *r = ap_schema_get(res);
    struct ap_buf b;
    sqlite3_stmt *stmt = NULL;
    json_t *data = NULL;
    ap_buf_init(&b, SQL_MAX);
    int rc = ap_buf_append_str(&b, "SELECT id");
    for (size_t i = 0; rc == AP_OK && i < r->nfields; i++)
        rc = ap_buf_printf(&b, ", %s", r->fields[i].name);
    if (rc == AP_OK)
        rc = ap_buf_printf(&b,
                           ", created_at, updated_at, version FROM %s WHERE changed_version >= ?1 "
                           "ORDER BY id",
                           r->table);
    if (rc == AP_OK)
        rc = ap_buf_append(&b, "", 1);
    if (rc) {
        rc = fail_msg(s, rc, "store: cannot build the query");
        goto done;
    }
    rc = prep(s, b.data, &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, since);
    if (rc)
        goto done;
    if (!(data = json_array())) {
        rc = AP_ENOMEM;
        goto done;
    }
    while ((rc = step_row(s, stmt)) == AP_OK) {
        json_t *obj;
        if ((rc = row_json(r, stmt, &obj)) != AP_OK)
            goto done;
        if (json_array_append_new(data, obj)) {
            rc = AP_ENOMEM;
            goto done;
        }
    }
    if (rc != AP_ENOTFOUND)
        goto done;
    rc = AP_OK;
    *out = data;
    data = NULL;
done:
    release(s, stmt);
    json_decref(data);
    ap_buf_free(&b);
    return rc;
}

/* ---- migrations, version, read transactions --------------------------------------------- */

static int sq_schema_version(struct ap_store *st, int *out)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    int64_t exists = 0;
    *out = 0;
    int rc = prep(s,
                  "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                  "name = 'schema_migrations'",
                  &stmt);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK)
        exists = sqlite3_column_int64(stmt, 0);
    release(s, stmt);
    stmt = NULL;
    if (rc || !exists)
        return rc;
    rc = prep(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &stmt);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK)
        *out = sqlite3_column_int(stmt, 0);
    release(s, stmt);
    return rc;
}

/* Applies migration m unless another handle did first. *did = whether it ran here. */
static int apply_migration(struct sq *s, const struct ap__store_migration *m, bool *did)
{
    sqlite3_stmt *stmt = NULL;
    char *err = NULL;
    *did = false;
    int rc = tx_begin(s);
    if (rc)
        return rc;
    rc = exec1(s, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                  "name TEXT NOT NULL, applied_at BIGINT NOT NULL)");
    if (rc == AP_OK)
        rc = prep(s, "SELECT 1 FROM schema_migrations WHERE version = ?1", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, m->version);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    release(s, stmt);
    stmt = NULL;
    if (rc == AP_OK) /* already applied by someone else */
        goto done;
    if (rc != AP_ENOTFOUND)
        goto done;
    int src = sqlite3_exec(s->db, m->sql, NULL, NULL, &err);
    if (src != SQLITE_OK) {
        rc = sql_fail(s, src);
        snprintf(s->errmsg, sizeof(s->errmsg), "migration %d (%s): %s", m->version, m->name,
                 err ? err : sqlite3_errstr(src));
        goto done;
    }
    rc = prep(s, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
              &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, m->version);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 2, m->name);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 3, ap__store_now(&s->base));
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc == AP_OK)
        *did = true;
done:
    sqlite3_free(err);
    if (!sqlite3_get_autocommit(s->db))
        tx_rollback(s);
    return rc;
}

static int sq_migrate(struct ap_store *st, int target, int *applied)
{
    struct sq *s = SQ(st);
    int current = 0;
    *applied = 0;
    int rc = sq_schema_version(st, &current);
    if (rc)
        return rc;
    if (current > ap_store_schema_latest()) {
        snprintf(s->errmsg, sizeof(s->errmsg),
                 "store: database schema %d is newer than this build (%d)", current,
                 ap_store_schema_latest());
        return AP_ECONFLICT;
    }
    for (size_t i = 0; i < ap__store_migrations_count; i++) {
        const struct ap__store_migration *m = &ap__store_migrations[i];
        bool did;
        if (m->version <= current || m->version > target)
            continue;
        rc = apply_migration(s, m, &did);
        if (rc)
            return rc;
        *applied += did;
    }
    return AP_OK;
}

static int sq_version(struct ap_store *st, int64_t *out)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    int rc = prep(s, "SELECT version FROM store_version WHERE id = 1", &stmt);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK)
        *out = sqlite3_column_int64(stmt, 0);
    release(s, stmt);
    return rc == AP_ENOTFOUND ? AP_ECORRUPT : rc;
}

static int sq_read_begin(struct ap_store *st)
{
    struct sq *s = SQ(st);
    int64_t v;
    if (s->in_read)
        return fail_msg(s, AP_EBUSY, "store: read transaction already open");
    int rc = run_fixed(s, s->begin_read);
    if (rc)
        return rc;
    rc = sq_version(st, &v); /* a deferred BEGIN takes its snapshot at the first read */
    if (rc) {
        tx_rollback(s);
        return rc;
    }
    s->in_read = true;
    return AP_OK;
}

static int sq_read_end(struct ap_store *st)
{
    struct sq *s = SQ(st);
    if (!s->in_read)
        return AP_OK;
    s->in_read = false;
    int rc = tx_commit(s);
    tx_rollback(s);
    return rc;
}

/* Several reads as one: a lookup made of a few SELECTs (a token, then its user and the user's
 * tenants) runs in one deferred read transaction instead of one implicit transaction per
 * statement, which takes and drops the WAL read lock (fcntl calls and SQLite's global mutex)
 * once instead of four times. Inside an explicit read (sq_read_begin) or any open transaction
 * it does nothing. read_scope_end returns rc, or the commit's error if rc was AP_OK. */
static int read_scope_begin(struct sq *s, bool *own)
{
    *own = false;
    if (s->in_read || !sqlite3_get_autocommit(s->db))
        return AP_OK;
    int rc = run_fixed(s, s->begin_read);
    if (rc == AP_OK)
        *own = true;
    return rc;
}

static int read_scope_end(struct sq *s, bool own, int rc)
{
    if (!own)
        return rc;
    int crc = tx_commit(s);
    tx_rollback(s);
    return rc != AP_OK ? rc : crc;
}

/* ---- users --------------------------------------------------------------------------------- */

/* Reads a column of ids (one query with ?1 = user id) into a malloc'ed array. */
static int load_ids(struct sq *s, const char *sql, int64_t user_id, int64_t **out, size_t *n)
{
    sqlite3_stmt *stmt = NULL;
    int64_t *ids = NULL;
    size_t cap = 0, len = 0;
    int rc = prep(s, sql, &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, user_id);
    while (rc == AP_OK && (rc = step_row(s, stmt)) == AP_OK) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            int64_t *p = ap__store_realloc(ids, ncap * sizeof(*ids));
            if (!p) {
                rc = AP_ENOMEM;
                break;
            }
            ids = p;
            cap = ncap;
        }
        ids[len++] = sqlite3_column_int64(stmt, 0);
    }
    release(s, stmt);
    if (rc != AP_ENOTFOUND) {
        free(ids);
        return rc ? rc : AP_EIO;
    }
    *out = ids;
    *n = len;
    return AP_OK;
}

static int load_user(struct sq *s, int64_t id, struct ap_store_user *u)
{
    sqlite3_stmt *stmt = NULL;
    memset(u, 0, sizeof(*u));
    int rc = prep(s, "SELECT id, email, role, created_at FROM users WHERE id = ?1", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, id);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK) {
        const char *email = (const char *)sqlite3_column_text(stmt, 1);
        const char *role = (const char *)sqlite3_column_text(stmt, 2);
        u->id = sqlite3_column_int64(stmt, 0);
        u->created_at = sqlite3_column_int64(stmt, 3);
        if (!email || !role)
            rc = AP_ENOMEM;
        else if (!ap_store_role_parse(role, &u->role))
            rc = fail_msg(s, AP_ECORRUPT, "store: unknown role in users");
        else
            snprintf(u->email, sizeof(u->email), "%s", email);
    }
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_ids(s,
                      "SELECT advertiser_id FROM user_advertisers WHERE user_id = ?1 "
                      "ORDER BY advertiser_id",
                      id, &u->advertiser_ids, &u->n_advertiser_ids);
    if (rc == AP_OK)
        rc = load_ids(s,
                      "SELECT publisher_id FROM user_publishers WHERE user_id = ?1 "
                      "ORDER BY publisher_id",
                      id, &u->publisher_ids, &u->n_publisher_ids);
    if (rc)
        ap_store_user_free(u);
    return rc;
}

static int insert_links(struct sq *s, const char *sql, int64_t user_id, const int64_t *ids,
                        size_t n)
{
    sqlite3_stmt *stmt = NULL;
    int rc = n ? prep(s, sql, &stmt) : AP_OK;
    for (size_t i = 0; rc == AP_OK && i < n; i++) {
        rc = bind_i64(s, stmt, 1, user_id);
        if (rc == AP_OK)
            rc = bind_i64(s, stmt, 2, ids[i]);
        if (rc == AP_OK)
            rc = step_done(s, stmt);
        sqlite3_reset(stmt);
    }
    release(s, stmt);
    return rc;
}

/* Field errors for tenant ids that do not exist or the actor cannot see. */
static int check_tenants(struct sq *s, enum ap_schema_res res, const char *field,
                         const int64_t *ids, size_t n, const struct ap_store_actor *actor,
                         struct ap_schema_errors *e)
{
    const struct ap_schema_resource *r = ap_schema_get(res);
    for (size_t i = 0; i < n; i++) {
        enum ap_schema_owner k;
        int64_t o;
        int rc = owner_of(s, r, ids[i], &k, &o);
        if (rc == AP_ENOTFOUND || (rc == AP_OK && !ap__store_actor_sees(actor, k, o)))
            ap_schema_errors_add(e, field, "%s %lld not found", r->name, (long long)ids[i]);
        else if (rc)
            return rc;
    }
    return AP_OK;
}

static int sq_user_insert(struct ap_store *st, const char *email, const char *password_hash,
                          enum ap_store_role role, const int64_t *adv, size_t nadv,
                          const int64_t *pub, size_t npub, const struct ap_store_actor *actor,
                          struct ap_store_user *out, struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    json_t *after = NULL;
    bool tx = false;
    size_t t0 = errs->total;
    int rc;
    if (actor && actor->restricted)
        return fail_msg(s, AP_EPERM, "store: tenants cannot create users");
    rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = prep(s, "SELECT id FROM users WHERE email = ?1", &stmt);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 1, email);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    release(s, stmt);
    stmt = NULL;
    if (rc == AP_OK)
        ap_schema_errors_add(errs, "email", "is already registered");
    else if (rc != AP_ENOTFOUND)
        goto done;
    rc = check_tenants(s, AP_SCHEMA_ADVERTISER, "advertiser_ids", adv, nadv, actor, errs);
    if (rc == AP_OK)
        rc = check_tenants(s, AP_SCHEMA_PUBLISHER, "publisher_ids", pub, npub, actor, errs);
    if (rc == AP_OK && errs->total != t0)
        rc = AP_EINVAL;
    if (rc)
        goto done;
    int64_t now = ap__store_now(st);
    rc = prep(s,
              "INSERT INTO users (email, password_hash, role, created_at, updated_at, version) "
              "VALUES (?1, ?2, ?3, ?4, ?4, 1)",
              &stmt);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 1, email);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 2, password_hash);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 3, ap_store_role_name(role));
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 4, now);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc)
        goto done;
    int64_t uid = sqlite3_last_insert_rowid(s->db);
    rc = insert_links(s, "INSERT INTO user_advertisers (user_id, advertiser_id) VALUES (?1, ?2)",
                      uid, adv, nadv);
    if (rc == AP_OK)
        rc = insert_links(s,
                          "INSERT INTO user_publishers (user_id, publisher_id) VALUES (?1, ?2)",
                          uid, pub, npub);
    if (rc == AP_OK)
        rc = load_user(s, uid, out);
    if (rc)
        goto done;
    after = ap_store_user_to_json(out);
    rc = after ? record(s, actor, "create", "user", uid, NULL, after) : AP_ENOMEM;
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc == AP_OK)
        tx = false;
done:
    if (tx)
        tx_rollback(s);
    if (rc)
        ap_store_user_free(out);
    json_decref(after);
    return rc;
}

static int sq_user_get(struct ap_store *st, int64_t id, struct ap_store_user *out)
{
    return load_user(SQ(st), id, out);
}

static int sq_user_by_email(struct ap_store *st, const char *email, struct ap_store_user *out,
                            char **hash_out)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    int64_t id = 0;
    char *hash = NULL;
    int rc = prep(s, "SELECT id, password_hash FROM users WHERE email = ?1", &stmt);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 1, email);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK) {
        id = sqlite3_column_int64(stmt, 0);
        const char *h = (const char *)sqlite3_column_text(stmt, 1);
        if (!h || (hash_out && !(hash = ap__store_strdup(h))))
            rc = AP_ENOMEM;
    }
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_user(s, id, out);
    if (rc == AP_OK && hash_out) {
        *hash_out = hash;
        hash = NULL;
    }
    free(hash);
    return rc;
}

static int sq_user_list(struct ap_store *st, const struct ap_store_list_query *q, json_t **out,
                        struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    int64_t after = 0, ids[AP_STORE_LIST_MAX + 1];
    int limit = 0, n = 0;
    json_t *data = NULL;
    if (q && q->nfilters) {
        ap_schema_errors_add(errs, "", "users have no filters");
        return AP_EINVAL;
    }
    int rc = ap__store_list_params(q, false, &after, &limit, errs);
    if (rc)
        return rc;
    rc = prep(s, "SELECT id FROM users WHERE id > ?1 ORDER BY id LIMIT ?2", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, after);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, limit + 1);
    while (rc == AP_OK && (rc = step_row(s, stmt)) == AP_OK)
        ids[n++] = sqlite3_column_int64(stmt, 0);
    release(s, stmt);
    if (rc != AP_ENOTFOUND)
        return rc;
    bool more = n > limit;
    if (more)
        n = limit;
    data = json_array();
    if (!data)
        return AP_ENOMEM;
    for (int i = 0; i < n; i++) {
        struct ap_store_user u;
        rc = load_user(s, ids[i], &u);
        if (rc)
            goto fail;
        json_t *j = ap_store_user_to_json(&u);
        ap_store_user_free(&u);
        if (!j || json_array_append_new(data, j)) {
            rc = AP_ENOMEM;
            goto fail;
        }
    }
    return page_json(data, more, n ? ids[n - 1] : 0, out);
fail:
    json_decref(data);
    return rc;
}

/* ---- sessions ---------------------------------------------------------------------------- */

static int user_exists(struct sq *s, int64_t id)
{
    sqlite3_stmt *stmt = NULL;
    int rc = prep(s, "SELECT 1 FROM users WHERE id = ?1", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, id);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    release(s, stmt);
    return rc;
}

static json_t *session_json(int64_t user_id, int64_t expires_at, bool revoked)
{
    json_t *exp = time_json(expires_at);
    if (!exp)
        return NULL;
    return json_pack("{s:I, s:o, s:b}", "user_id", (json_int_t)user_id, "expires_at", exp,
                     "revoked", revoked);
}

static int sq_session_insert(struct ap_store *st, int64_t user_id, const char *token_hash,
                             int64_t expires_at, const struct ap_store_actor *actor,
                             int64_t *session_id)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    json_t *after = NULL;
    bool tx = false;
    int rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = user_exists(s, user_id);
    if (rc == AP_OK)
        rc = prep(s,
                  "INSERT INTO sessions (user_id, token_hash, created_at, expires_at, revoked) "
                  "VALUES (?1, ?2, ?3, ?4, 0)",
                  &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, user_id);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 2, token_hash);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 3, ap__store_now(st));
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 4, expires_at);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc)
        goto done;
    *session_id = sqlite3_last_insert_rowid(s->db);
    after = session_json(user_id, expires_at, false);
    rc = after ? record(s, actor, "create", "session", *session_id, NULL, after) : AP_ENOMEM;
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc == AP_OK)
        tx = false;
done:
    if (tx)
        tx_rollback(s);
    json_decref(after);
    return rc;
}

static int sq_session_find(struct ap_store *st, const char *token_hash, int64_t now,
                           struct ap_store_user *user, int64_t *session_id, int64_t *expires_at)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    int64_t uid = 0;
    bool own = false;
    int rc = read_scope_begin(s, &own);
    if (rc == AP_OK)
        rc = prep(s,
                  "SELECT id, user_id, expires_at FROM sessions WHERE token_hash = ?1 "
                  "AND revoked = 0 AND expires_at > ?2",
                  &stmt);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 1, token_hash);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, now);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK) {
        *session_id = sqlite3_column_int64(stmt, 0);
        uid = sqlite3_column_int64(stmt, 1);
        *expires_at = sqlite3_column_int64(stmt, 2);
    }
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_user(s, uid, user);
    return read_scope_end(s, own, rc);
}

static int sq_session_revoke(struct ap_store *st, const char *token_hash,
                             const struct ap_store_actor *actor)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    json_t *before = NULL, *after = NULL;
    int64_t id = 0, uid = 0, exp = 0, revoked = 0;
    bool tx = false;
    int rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = prep(s, "SELECT id, user_id, expires_at, revoked FROM sessions WHERE token_hash = ?1",
              &stmt);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 1, token_hash);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK) {
        id = sqlite3_column_int64(stmt, 0);
        uid = sqlite3_column_int64(stmt, 1);
        exp = sqlite3_column_int64(stmt, 2);
        revoked = sqlite3_column_int64(stmt, 3);
    }
    release(s, stmt);
    stmt = NULL;
    if (rc || revoked) /* revoking twice changes nothing */
        goto done;
    rc = prep(s, "UPDATE sessions SET revoked = 1, revoked_at = ?1 WHERE id = ?2", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, ap__store_now(st));
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, id);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc)
        goto done;
    before = session_json(uid, exp, false);
    after = session_json(uid, exp, true);
    rc = before && after ? record(s, actor, "revoke", "session", id, before, after) : AP_ENOMEM;
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc == AP_OK)
        tx = false;
done:
    if (tx)
        tx_rollback(s);
    json_decref(before);
    json_decref(after);
    return rc;
}

/* ---- API keys ----------------------------------------------------------------------------- */

#define APIKEY_COLS "id, user_id, name, prefix, created_at, last_used_at, revoked"

static int apikey_json(sqlite3_stmt *stmt, json_t **out)
{
    const char *name = (const char *)sqlite3_column_text(stmt, 2);
    const char *prefix = (const char *)sqlite3_column_text(stmt, 3);
    json_t *created = time_json(sqlite3_column_int64(stmt, 4));
    json_t *used = col_time_or_null(stmt, 5);
    *out = NULL;
    if (!name || !prefix || !created || !used) {
        json_decref(created);
        json_decref(used);
        return AP_ENOMEM;
    }
    *out = json_pack("{s:I, s:I, s:s, s:s, s:o, s:o, s:b}", "id",
                     (json_int_t)sqlite3_column_int64(stmt, 0), "user_id",
                     (json_int_t)sqlite3_column_int64(stmt, 1), "name", name, "prefix", prefix,
                     "created_at", created, "last_used_at", used, "revoked",
                     sqlite3_column_int(stmt, 6) != 0);
    return *out ? AP_OK : AP_ENOMEM;
}

static int load_apikey(struct sq *s, int64_t id, json_t **out)
{
    sqlite3_stmt *stmt = NULL;
    *out = NULL;
    int rc = prep(s, "SELECT " APIKEY_COLS " FROM api_keys WHERE id = ?1", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, id);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK)
        rc = apikey_json(stmt, out);
    release(s, stmt);
    return rc;
}

static int sq_apikey_insert(struct ap_store *st, int64_t user_id, const char *name,
                            const char *key_hash, const char *display_prefix,
                            const struct ap_store_actor *actor, json_t **out)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    json_t *after = NULL;
    bool tx = false;
    int rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = user_exists(s, user_id);
    if (rc == AP_OK)
        rc = prep(s,
                  "INSERT INTO api_keys (user_id, name, key_hash, prefix, created_at, revoked) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                  &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, user_id);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 2, name);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 3, key_hash);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 4, display_prefix);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 5, ap__store_now(st));
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc)
        goto done;
    int64_t id = sqlite3_last_insert_rowid(s->db);
    rc = load_apikey(s, id, &after);
    if (rc == AP_OK)
        rc = record(s, actor, "create", "api_key", id, NULL, after);
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc)
        goto done;
    tx = false;
    *out = after;
    after = NULL;
done:
    if (tx)
        tx_rollback(s);
    json_decref(after);
    return rc;
}

static int sq_apikey_find(struct ap_store *st, const char *key_hash, struct ap_store_user *user,
                          int64_t *key_id)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    int64_t uid = 0;
    bool own = false;
    int rc = read_scope_begin(s, &own);
    if (rc == AP_OK)
        rc = prep(s, "SELECT id, user_id FROM api_keys WHERE key_hash = ?1 AND revoked = 0",
                  &stmt);
    if (rc == AP_OK)
        rc = bind_text(s, stmt, 1, key_hash);
    if (rc == AP_OK)
        rc = step_row(s, stmt);
    if (rc == AP_OK) {
        *key_id = sqlite3_column_int64(stmt, 0);
        uid = sqlite3_column_int64(stmt, 1);
    }
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_user(s, uid, user);
    return read_scope_end(s, own, rc);
}

static int sq_apikey_revoke(struct ap_store *st, int64_t key_id,
                            const struct ap_store_actor *actor)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    json_t *before = NULL, *after = NULL;
    bool tx = false;
    int rc = tx_begin(s);
    if (rc)
        goto done;
    tx = true;
    rc = load_apikey(s, key_id, &before);
    if (rc || json_is_true(json_object_get(before, "revoked")))
        goto done;
    rc = prep(s, "UPDATE api_keys SET revoked = 1, revoked_at = ?1 WHERE id = ?2", &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, ap__store_now(st));
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, key_id);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    if (rc == AP_OK)
        rc = load_apikey(s, key_id, &after);
    if (rc == AP_OK)
        rc = record(s, actor, "revoke", "api_key", key_id, before, after);
    if (rc == AP_OK)
        rc = tx_commit(s);
    if (rc == AP_OK)
        tx = false;
done:
    if (tx)
        tx_rollback(s);
    json_decref(before);
    json_decref(after);
    return rc;
}

static int sq_apikey_touch(struct ap_store *st, int64_t key_id, int64_t now)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    if (s->in_read)
        return fail_msg(s, AP_EBUSY, "store: write inside a read transaction");
    int rc = prep(s,
                  "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2 AND "
                  "(last_used_at IS NULL OR last_used_at <= ?3)",
                  &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, now);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, key_id);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 3, now - APIKEY_TOUCH_INTERVAL);
    if (rc == AP_OK)
        rc = step_done(s, stmt);
    release(s, stmt);
    return rc;
}

static int sq_apikey_list(struct ap_store *st, int64_t user_id,
                          const struct ap_store_list_query *q, json_t **out,
                          struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    sqlite3_stmt *stmt = NULL;
    json_t *data = NULL;
    int64_t after = 0, last = 0;
    int limit = 0, count = 0;
    bool more = false;
    if (q && q->nfilters) {
        ap_schema_errors_add(errs, "", "api keys have no filters");
        return AP_EINVAL;
    }
    int rc = ap__store_list_params(q, false, &after, &limit, errs);
    if (rc)
        return rc;
    rc = prep(s,
              user_id ? "SELECT " APIKEY_COLS " FROM api_keys WHERE id > ?1 AND user_id = ?3 "
                        "ORDER BY id LIMIT ?2"
                      : "SELECT " APIKEY_COLS " FROM api_keys WHERE id > ?1 ORDER BY id LIMIT ?2",
              &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, after);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, limit + 1);
    if (rc == AP_OK && user_id)
        rc = bind_i64(s, stmt, 3, user_id);
    if (rc == AP_OK && !(data = json_array()))
        rc = AP_ENOMEM;
    while (rc == AP_OK && (rc = step_row(s, stmt)) == AP_OK) {
        json_t *j;
        if (count == limit) {
            more = true;
            break;
        }
        rc = apikey_json(stmt, &j);
        if (rc == AP_OK && json_array_append_new(data, j))
            rc = AP_ENOMEM;
        last = sqlite3_column_int64(stmt, 0);
        count++;
    }
    release(s, stmt);
    if (rc != AP_OK && rc != AP_ENOTFOUND) {
        json_decref(data);
        return rc;
    }
    return page_json(data, more, last, out);
}

/* ---- audit log ----------------------------------------------------------------------------- */

static int audit_json(sqlite3_stmt *stmt, json_t **out)
{
    json_t *o = NULL, *before = NULL, *after = NULL;
    int rc = AP_OK;
    *out = NULL;
    for (int col = 6; col <= 7; col++) {
        json_t **dst = col == 6 ? &before : &after;
        if (sqlite3_column_type(stmt, col) == SQLITE_NULL) {
            *dst = json_null();
        } else {
            const char *text = (const char *)sqlite3_column_text(stmt, col);
            int prc = text ? ap_schema_json_parse(text, (size_t)sqlite3_column_bytes(stmt, col),
                                                  dst)
                           : AP_ENOMEM;
            if (prc && rc == AP_OK)
                rc = prc;
        }
    }
    const char *action = (const char *)sqlite3_column_text(stmt, 3);
    const char *resource = (const char *)sqlite3_column_text(stmt, 4);
    json_t *at = time_json(sqlite3_column_int64(stmt, 1));
    json_t *actor = sqlite3_column_type(stmt, 2) == SQLITE_NULL
                        ? json_null()
                        : json_integer(sqlite3_column_int64(stmt, 2));
    if (rc == AP_OK && before && after && action && resource && at && actor) {
        o = json_pack("{s:I, s:O, s:O, s:s, s:s, s:I, s:O, s:O}", "id",
                      (json_int_t)sqlite3_column_int64(stmt, 0), "at", at, "actor_user_id", actor,
                      "action", action, "resource", resource, "resource_id",
                      (json_int_t)sqlite3_column_int64(stmt, 5), "before", before, "after",
                      after);
        if (!o)
            rc = AP_ENOMEM;
    } else if (rc == AP_OK) {
        rc = AP_ENOMEM;
    }
    json_decref(before);
    json_decref(after);
    json_decref(at);
    json_decref(actor);
    *out = o;
    return rc;
}

static int sq_audit_list(struct ap_store *st, const struct ap_store_audit_query *q, json_t **out,
                         struct ap_schema_errors *errs)
{
    struct sq *s = SQ(st);
    struct ap_store_list_query lq = {.cursor = q ? q->cursor : NULL, .limit = q ? q->limit : 0};
    sqlite3_stmt *stmt = NULL;
    json_t *data = NULL;
    int64_t before = 0, last = 0;
    int limit = 0, count = 0;
    bool more = false;
    char sql[400];
    int rc = ap__store_list_params(&lq, true, &before, &limit, errs);
    if (rc)
        return rc;
    const char *res = q ? q->resource : NULL;
    int64_t rid = q ? q->resource_id : 0, actor = q ? q->actor_user_id : 0;
    snprintf(sql, sizeof(sql),
             "SELECT id, at, actor_user_id, action, resource, resource_id, before_json, "
             "after_json FROM audit_log WHERE id < ?1%s%s%s ORDER BY id DESC LIMIT ?2",
             res ? " AND resource = ?3" : "", rid ? " AND resource_id = ?4" : "",
             actor ? " AND actor_user_id = ?5" : "");
    rc = prep(s, sql, &stmt);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 1, before);
    if (rc == AP_OK)
        rc = bind_i64(s, stmt, 2, limit + 1);
    if (rc == AP_OK && res)
        rc = bind_text(s, stmt, 3, res);
    if (rc == AP_OK && rid)
        rc = bind_i64(s, stmt, 4, rid);
    if (rc == AP_OK && actor)
        rc = bind_i64(s, stmt, 5, actor);
    if (rc == AP_OK && !(data = json_array()))
        rc = AP_ENOMEM;
    while (rc == AP_OK && (rc = step_row(s, stmt)) == AP_OK) {
        json_t *j;
        if (count == limit) {
            more = true;
            break;
        }
        rc = audit_json(stmt, &j);
        if (rc == AP_OK && json_array_append_new(data, j))
            rc = AP_ENOMEM;
        last = sqlite3_column_int64(stmt, 0);
        count++;
    }
    release(s, stmt);
    if (rc != AP_OK && rc != AP_ENOTFOUND) {
        json_decref(data);
        return rc;
    }
    return page_json(data, more, last, out);
}

/* ---- open and close --------------------------------------------------------------------- */

static void sq_close(struct ap_store *st)
{
    struct sq *s = SQ(st);
    if (!s)
        return;
    for (size_t i = 0; i < STMT_CACHE; i++) {
        sqlite3_finalize(s->cache[i].stmt);
        free(s->cache[i].sql);
    }
    sqlite3_finalize(s->begin_write);
    sqlite3_finalize(s->begin_read);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback);
    for (size_t i = 0; i < AP_SCHEMA_RES_COUNT; i++) {
        free(s->sql_select[i]);
        free(s->sql_insert[i]);
        free(s->sql_update[i]);
    }
    sqlite3_close_v2(s->db);
    free(s);
}

static int prep_fixed(struct sq *s, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    return rc == SQLITE_OK ? AP_OK : sql_fail(s, rc);
}

/* Sets a pragma and checks the value it reports back (journal_mode answers with a row). */
static int pragma(struct sq *s, const char *sql, const char *expect)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(s, rc);
    rc = sqlite3_step(stmt);
    int out = AP_OK;
    if (rc == SQLITE_ROW && expect) {
        const char *v = (const char *)sqlite3_column_text(stmt, 0);
        if (!v || strcmp(v, expect) != 0) {
            snprintf(s->errmsg, sizeof(s->errmsg), "store: %s gave %s", sql, v ? v : "null");
            out = AP_EIO;
        }
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        out = sql_fail(s, rc);
    }
    sqlite3_finalize(stmt);
    return out;
}

static int sq_open(const char *path, const struct ap_store_options *opt, struct ap_store **out)
{
    struct sq *s = calloc(1, sizeof(*s));
    int rc;
    if (!s)
        return AP_ENOMEM;
    s->base.ops = &ap_store_sqlite_ops;
    if (opt)
        s->base.opt = *opt;
    if (s->base.opt.busy_timeout_ms <= 0)
        s->base.opt.busy_timeout_ms = BUSY_TIMEOUT_DEFAULT_MS;

    int src = sqlite3_open_v2(path, &s->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                              NULL);
    if (src != SQLITE_OK) {
        rc = s->db ? sql_fail(s, src) : AP_ENOMEM;
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, s->base.opt.busy_timeout_ms);
    bool memory = strcmp(path, ":memory:") == 0 || path[0] == '\0';
    rc = pragma(s, "PRAGMA journal_mode = WAL", memory ? NULL : "wal");
    if (rc == AP_OK)
        rc = pragma(s, "PRAGMA foreign_keys = ON", NULL);
    if (rc == AP_OK)
        rc = pragma(s, "PRAGMA synchronous = NORMAL", NULL);
    if (rc == AP_OK)
        rc = prep_fixed(s, "BEGIN IMMEDIATE", &s->begin_write);
    if (rc == AP_OK)
        rc = prep_fixed(s, "BEGIN", &s->begin_read);
    if (rc == AP_OK)
        rc = prep_fixed(s, "COMMIT", &s->commit);
    if (rc == AP_OK)
        rc = prep_fixed(s, "ROLLBACK", &s->rollback);
    if (rc == AP_OK)
        rc = build_sql(s);
    if (rc == AP_OK && !s->base.opt.no_migrate) {
        int applied;
        rc = sq_migrate(&s->base, ap_store_schema_latest(), &applied);
    }
    if (rc)
        goto fail;
    *out = &s->base;
    return AP_OK;
fail:
    sq_close(&s->base);
    return rc;
}

const struct ap_store_ops ap_store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .errmsg = sq_errmsg,
    .migrate = sq_migrate,
    .schema_version = sq_schema_version,
    .version = sq_version,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
    .create = sq_create,
    .get = sq_get,
    .list = sq_list,
    .list_changed = sq_list_changed,
    .update = sq_update,
    .archive = sq_archive,
    .owner = sq_owner,
    .user_insert = sq_user_insert,
    .user_get = sq_user_get,
    .user_by_email = sq_user_by_email,
    .user_list = sq_user_list,
    .session_insert = sq_session_insert,
    .session_find = sq_session_find,
    .session_revoke = sq_session_revoke,
    .apikey_insert = sq_apikey_insert,
    .apikey_find = sq_apikey_find,
    .apikey_revoke = sq_apikey_revoke,
    .apikey_touch = sq_apikey_touch,
    .apikey_list = sq_apikey_list,
    .audit_list = sq_audit_list,
};
