/*
 * ap_store_internal: what the store's own files share (ap_store.c, the backends, the
 * migrations). Not for other layers: include ap_store.h instead.
 */
#ifndef AP_STORE_INTERNAL_H
#define AP_STORE_INTERNAL_H

#include "ap_store.h"

/* One schema migration: applied in version order, each in its own transaction. Never edit a
 * migration that has shipped: append a new one. */
struct ap__store_migration {
    int version; /* 1, 2, 3, ...: equal to its index + 1 */
    const char *name;
    const char *sql; /* one or more statements */
};

extern const struct ap__store_migration ap__store_migrations[];
extern const size_t ap__store_migrations_count;

/* The store's clock (opt.clock or time()). */
int64_t ap__store_now(const struct ap_store *st);

/* Checks a list query's cursor and limit. *cursor = the id to continue after (ascending: 0 at
 * the start; descending: INT64_MAX at the start); *limit = 1..AP_STORE_LIST_MAX. AP_OK or
 * AP_EINVAL with errors on "cursor" / "limit". q may be NULL (defaults). */
int ap__store_list_params(const struct ap_store_list_query *q, bool descending, int64_t *cursor,
                          int *limit, struct ap_schema_errors *e);
int ap__store_parse_cursor(const char *cursor, bool descending, int64_t *out);

/* A new JSON string holding the cursor after last_id, or null when there is no next page
 * (more == false). NULL only if out of memory. */
json_t *ap__store_cursor_json(bool more, int64_t last_id);

/* May actor see rows owned by (kind, owner_id)? NULL or unrestricted actors see all. */
bool ap__store_actor_sees(const struct ap_store_actor *actor, enum ap_schema_owner kind,
                          int64_t owner_id);

/* SQLite backend files (ap_store_sqlite.c, ap_store_rollup.c): writes "sqlite: <error> (<rc>):
 * <message of db>" into msg[cap] and maps the SQLite result code rc to an AP_E* code. */
struct sqlite3;
int ap__store_sqlite_error(struct sqlite3 *db, int rc, char *msg, size_t cap);

/* malloc/realloc/strdup that obey the allocation fault hook (ap_store_fault.h). */
void *ap__store_malloc(size_t n);
void *ap__store_realloc(void *p, size_t n);
char *ap__store_strdup(const char *s);

#endif
