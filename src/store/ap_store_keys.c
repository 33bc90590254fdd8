/* ap_store_keys: the token_keys table (migration 7); see "token signing keys" in ap_store.h. */
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "ap_store.h"

#define KEYS_BUSY_TIMEOUT_MS 10000

static int open_db(const char *path, sqlite3 **db)
{
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        ap_log_error("token keys: cannot open %s: %s", path,
                     *db ? sqlite3_errmsg(*db) : "no memory");
        sqlite3_close(*db);
        *db = NULL;
        return AP_EIO;
    }
    sqlite3_busy_timeout(*db, KEYS_BUSY_TIMEOUT_MS);
    return AP_OK;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? AP_OK : AP_EIO;
}

/* Ends a write transaction: COMMIT on success, else ROLLBACK; closes db. */
static int finish(sqlite3 *db, int rc)
{
    if (rc == AP_EIO)
        ap_log_error("token keys: write failed: %s", sqlite3_errmsg(db));
    if (rc == AP_OK)
        rc = exec(db, "COMMIT");
    if (rc != AP_OK)
        exec(db, "ROLLBACK");
    sqlite3_close(db);
    return rc;
}

static int insert_key(sqlite3 *db, const struct ap_store_token_key *k)
{
    if (k->id < 1 || k->id > 65535)
        return AP_EINVAL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO token_keys (id, created_at, key, retired_at) "
                           "VALUES (?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return AP_EIO;
    sqlite3_bind_int64(st, 1, k->id);
    sqlite3_bind_int64(st, 2, k->created_at);
    sqlite3_bind_blob(st, 3, k->key, AP_STORE_TOKEN_KEY_BYTES, SQLITE_STATIC);
    if (k->retired_at > 0)
        sqlite3_bind_int64(st, 4, k->retired_at);
    else
        sqlite3_bind_null(st, 4);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? AP_OK : s == SQLITE_CONSTRAINT ? AP_EINVAL : AP_EIO;
}

static int count_keys(sqlite3 *db, int64_t *n, int64_t *max_id)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM token_keys", -1, &st,
                           NULL) != SQLITE_OK)
        return AP_EIO;
    int rc = AP_EIO;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
        *max_id = sqlite3_column_int64(st, 1);
        rc = AP_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int ap_store_keys_bootstrap(const char *db_path, const struct ap_store_token_key *import, int n,
                            int64_t now, bool *created)
{
    *created = false;
    if (sodium_init() < 0)
        return AP_EIO;
    sqlite3 *db = NULL;
    int rc = open_db(db_path, &db);
    if (rc)
        return rc;
    int64_t count = 0, max_id = 0;
    rc = exec(db, "BEGIN IMMEDIATE");
    if (rc == AP_OK)
        rc = count_keys(db, &count, &max_id);
    if (rc == AP_OK && count == 0) {
        if (n > 0) {
            /* a file ring: every key but the newest was replaced by its successor */
            for (int i = 0; i < n && rc == AP_OK; i++) {
                struct ap_store_token_key k = import[i];
                k.retired_at = i + 1 < n ? import[i + 1].created_at : 0;
                if (i + 1 < n && k.retired_at <= 0)
                    k.retired_at = 1;
                rc = insert_key(db, &k);
            }
        } else {
            struct ap_store_token_key k = {.id = 1, .created_at = now};
            randombytes_buf(k.key, sizeof(k.key));
            rc = insert_key(db, &k);
            sodium_memzero(k.key, sizeof(k.key));
        }
        if (rc == AP_OK)
            *created = true;
    }
    rc = finish(db, rc);
    if (rc)
        *created = false;
    return rc;
}

int ap_store_keys_get(const char *db_path, int64_t retired_after, struct ap_store_token_key *out,
                      int cap, int *n)
{
    *n = 0;
    sqlite3 *db = NULL;
    int rc = open_db(db_path, &db);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    /* newest first, then reversed into oldest first */
    if (sqlite3_prepare_v2(db,
                           "SELECT id, created_at, key, COALESCE(retired_at, 0) FROM token_keys "
                           "WHERE retired_at IS NULL OR retired_at > ? ORDER BY id DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        ap_log_error("token keys: read failed: %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return AP_EIO;
    }
    sqlite3_bind_int64(st, 1, retired_after);
    sqlite3_bind_int(st, 2, cap);
    int s, k = 0;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && k < cap) {
        const void *b = sqlite3_column_blob(st, 2);
        if (!b || sqlite3_column_bytes(st, 2) != AP_STORE_TOKEN_KEY_BYTES) {
            rc = AP_ECORRUPT;
            break;
        }
        out[k].id = sqlite3_column_int64(st, 0);
        out[k].created_at = sqlite3_column_int64(st, 1);
        memcpy(out[k].key, b, AP_STORE_TOKEN_KEY_BYTES);
        out[k].retired_at = sqlite3_column_int64(st, 3);
        k++;
    }
    if (rc == AP_OK && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = AP_EIO;
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (rc) {
        sodium_memzero(out, sizeof(*out) * (size_t)cap);
        return rc;
    }
    for (int i = 0; i < k / 2; i++) {
        struct ap_store_token_key t = out[i];
        out[i] = out[k - 1 - i];
        out[k - 1 - i] = t;
    }
    *n = k;
    return AP_OK;
}

static json_t *key_json(int64_t id, int64_t created_at, int64_t retired_at)
{
    return json_pack("{sI sI so sb}", "id", (json_int_t)id, "created_at", (json_int_t)created_at,
                     "retired_at", retired_at > 0 ? json_integer(retired_at) : json_null(),
                     "current", retired_at <= 0);
}

int ap_store_keys_rotate(const char *db_path, int64_t actor_user_id, int64_t now, int64_t *new_id)
{
    if (sodium_init() < 0)
        return AP_EIO;
    sqlite3 *db = NULL;
    int rc = open_db(db_path, &db);
    if (rc)
        return rc;
    int64_t count = 0, max_id = 0, prev = 0;
    rc = exec(db, "BEGIN IMMEDIATE");
    if (rc == AP_OK)
        rc = count_keys(db, &count, &max_id);
    if (rc == AP_OK && max_id >= 65535)
        rc = AP_ELIMIT;
    sqlite3_stmt *st = NULL;
    if (rc == AP_OK) {
        if (sqlite3_prepare_v2(db, "SELECT MAX(id) FROM token_keys WHERE retired_at IS NULL", -1,
                               &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
            rc = AP_EIO;
        else
            prev = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc == AP_OK) {
        if (sqlite3_prepare_v2(db,
                               "UPDATE token_keys SET retired_at = ? WHERE retired_at IS NULL",
                               -1, &st, NULL) != SQLITE_OK)
            rc = AP_EIO;
        else {
            sqlite3_bind_int64(st, 1, now > 0 ? now : 1);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = AP_EIO;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    struct ap_store_token_key k = {.id = max_id + 1, .created_at = now};
    if (rc == AP_OK) {
        randombytes_buf(k.key, sizeof(k.key));
        rc = insert_key(db, &k);
        sodium_memzero(k.key, sizeof(k.key));
    }
    if (rc == AP_OK)
        rc = exec(db, "UPDATE store_version SET version = version + 1 WHERE id = 1");
    char *bj = NULL, *aj = NULL;
    if (rc == AP_OK) {
        json_t *b = prev ? json_pack("{sI}", "current_key_id", (json_int_t)prev) : json_object();
        json_t *a = json_pack("{sI sI}", "current_key_id", (json_int_t)k.id, "created_at",
                              (json_int_t)now);
        bj = b ? json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        aj = a ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(b);
        json_decref(a);
        if (!bj || !aj)
            rc = AP_ENOMEM;
    }
    if (rc == AP_OK) {
        if (sqlite3_prepare_v2(db,
                               "INSERT INTO audit_log (at, actor_user_id, action, resource, "
                               "resource_id, before_json, after_json) VALUES (?, ?, 'rotate', "
                               "'token_keys', ?, ?, ?)",
                               -1, &st, NULL) != SQLITE_OK)
            rc = AP_EIO;
        else {
            sqlite3_bind_int64(st, 1, now);
            if (actor_user_id > 0)
                sqlite3_bind_int64(st, 2, actor_user_id);
            else
                sqlite3_bind_null(st, 2);
            sqlite3_bind_int64(st, 3, k.id);
            sqlite3_bind_text(st, 4, bj, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, aj, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = AP_EIO;
        }
        sqlite3_finalize(st);
    }
    free(bj);
    free(aj);
    rc = finish(db, rc);
    if (rc == AP_OK && new_id)
        *new_id = k.id;
    return rc;
}

int ap_store_keys_list_json(const char *db_path, json_t **out)
{
    sqlite3 *db = NULL;
    int rc = open_db(db_path, &db);
    if (rc)
        return rc;
    json_t *arr = json_array();
    sqlite3_stmt *st = NULL;
    if (!arr)
        rc = AP_ENOMEM;
    else if (sqlite3_prepare_v2(db,
                                "SELECT id, created_at, COALESCE(retired_at, 0) FROM token_keys "
                                "ORDER BY id DESC",
                                -1, &st, NULL) != SQLITE_OK)
        rc = AP_EIO;
    else {
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *o = key_json(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                 sqlite3_column_int64(st, 2));
            if (!o || json_array_append_new(arr, o)) {
                rc = AP_ENOMEM;
                break;
            }
        }
        if (rc == AP_OK && s != SQLITE_DONE)
            rc = AP_EIO;
    }
    if (rc == AP_EIO)
        ap_log_error("token keys: read failed: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return AP_OK;
}

int ap_store_keys_version(const char *db_path, int64_t *out)
{
    sqlite3 *db = NULL;
    int rc = open_db(db_path, &db);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    rc = AP_EIO;
    if (sqlite3_prepare_v2(db, "SELECT version FROM store_version WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = AP_OK;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
