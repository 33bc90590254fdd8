/* ap_store_rates: see ap_store_rates.h. */
#include "ap_store_rates.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"

#define RATES_BUSY_TIMEOUT_MS 10000

static int open_db(const char *path, sqlite3 **db)
{
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        ap_log_error("rates: cannot open %s: %s", path, *db ? sqlite3_errmsg(*db) : "no memory");
        sqlite3_close(*db);
        *db = NULL;
        return AP_EIO;
    }
    sqlite3_busy_timeout(*db, RATES_BUSY_TIMEOUT_MS);
    return AP_OK;
}

int ap_store_rates_get(const char *db_path, json_t **out)
{
    sqlite3 *db = NULL;
    int rc = open_db(db_path, &db);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    json_t *o = json_object();
    if (!o) {
        sqlite3_close(db);
        return AP_ENOMEM;
    }
    rc = AP_OK;
    if (sqlite3_prepare_v2(db, "SELECT code, usd_per_unit FROM currency_rates ORDER BY code", -1,
                           &st, NULL) != SQLITE_OK) {
        rc = AP_EIO;
    } else {
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *code = (const char *)sqlite3_column_text(st, 0);
            if (code && json_object_set_new(o, code, json_real(sqlite3_column_double(st, 1))))
                rc = AP_ENOMEM;
        }
        if (s != SQLITE_DONE)
            rc = AP_EIO;
    }
    if (rc == AP_EIO)
        ap_log_error("rates: read failed: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return AP_OK;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? AP_OK : AP_EIO;
}

int ap_store_rates_put(const char *db_path, const json_t *rates, int64_t actor_user_id)
{
    json_t *before = NULL;
    int rc = ap_store_rates_get(db_path, &before);
    if (rc)
        return rc;
    sqlite3 *db = NULL;
    if ((rc = open_db(db_path, &db))) {
        json_decref(before);
        return rc;
    }
    sqlite3_stmt *ins = NULL, *audit = NULL;
    int64_t now = (int64_t)time(NULL);
    rc = exec(db, "BEGIN IMMEDIATE");
    if (rc == AP_OK)
        rc = exec(db, "DELETE FROM currency_rates");
    if (rc == AP_OK && sqlite3_prepare_v2(db,
                                          "INSERT INTO currency_rates (code, usd_per_unit, "
                                          "updated_at) VALUES (?, ?, ?)",
                                          -1, &ins, NULL) != SQLITE_OK)
        rc = AP_EIO;
    const char *code;
    json_t *v;
    json_object_foreach ((json_t *)rates, code, v) {
        if (rc)
            break;
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, code, -1, SQLITE_STATIC);
        sqlite3_bind_double(ins, 2, json_number_value(v));
        sqlite3_bind_int64(ins, 3, now);
        int s = sqlite3_step(ins);
        if (s == SQLITE_CONSTRAINT)
            rc = AP_EINVAL;
        else if (s != SQLITE_DONE)
            rc = AP_EIO;
    }
    if (rc == AP_OK)
        rc = exec(db, "UPDATE store_version SET version = version + 1 WHERE id = 1");
    if (rc == AP_OK &&
        sqlite3_prepare_v2(db,
                           "INSERT INTO audit_log (at, actor_user_id, action, resource, "
                           "resource_id, before_json, after_json) VALUES (?, ?, 'update', "
                           "'currency_rates', 0, ?, ?)",
                           -1, &audit, NULL) != SQLITE_OK)
        rc = AP_EIO;
    char *bj = json_dumps(before, JSON_COMPACT | JSON_SORT_KEYS);
    char *aj = json_dumps(rates, JSON_COMPACT | JSON_SORT_KEYS);
    if (rc == AP_OK) {
        sqlite3_bind_int64(audit, 1, now);
        if (actor_user_id > 0)
            sqlite3_bind_int64(audit, 2, actor_user_id);
        else
            sqlite3_bind_null(audit, 2);
        sqlite3_bind_text(audit, 3, bj ? bj : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_text(audit, 4, aj ? aj : "{}", -1, SQLITE_STATIC);
        if (sqlite3_step(audit) != SQLITE_DONE)
            rc = AP_EIO;
    }
    if (rc == AP_EIO)
        ap_log_error("rates: write failed: %s", sqlite3_errmsg(db));
    sqlite3_finalize(ins);
    sqlite3_finalize(audit);
    if (rc == AP_OK)
        rc = exec(db, "COMMIT");
    if (rc != AP_OK)
        exec(db, "ROLLBACK");
    free(bj);
    free(aj);
    json_decref(before);
    sqlite3_close(db);
    return rc;
}
