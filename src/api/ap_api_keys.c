/*
 * ap_api_keys: the token signing keys (administrators only; docs/adr: token keys in the store).
 *
 *   GET  /api/v1/token-keys         -> 200 {"items":[{"id","created_at","retired_at","current"}]}
 *                                      newest first; never the key bytes
 *   POST /api/v1/token-keys/rotate  -> 201 {"id": new key id, "items": [...]}; audited (action
 *                                      "rotate", resource "token_keys"); the data plane signs
 *                                      with the new key within about a second (ap_token_ring)
 *
 * Storage: ap_store_keys_* (own connection; the table is tiny). Threads: the API's workers.
 */
#include "../core/ap_error.h"
#include "../core/ap_time.h"
#include "../store/ap_store.h"
#include "ap_api_internal.h"

static int send_keys(struct ap__api_ctx *c, int status, int64_t new_id)
{
    json_t *items = NULL;
    if (ap_store_keys_list_json(ap__api_state.db_path, &items))
        return ap__api_error(c->x, 500, "internal", "cannot read the token keys");
    json_t *body = new_id > 0 ? json_pack("{s:I,s:o}", "id", (json_int_t)new_id, "items", items)
                              : json_pack("{s:o}", "items", items);
    if (!body)
        return ap__api_error(c->x, 500, "internal", "out of memory");
    int rc = ap__api_send_json(c->x, status, body);
    json_decref(body);
    return rc;
}

int ap__api_token_keys(struct ap__api_ctx *c); /* routed by ap_api.c */
int ap__api_token_keys(struct ap__api_ctx *c)
{
    if (!ap__api_is_admin(c))
        return ap__api_error(c->x, 403, "forbidden", "only an administrator may see token keys");
    return send_keys(c, 200, 0);
}

int ap__api_token_keys_rotate(struct ap__api_ctx *c); /* routed by ap_api.c */
int ap__api_token_keys_rotate(struct ap__api_ctx *c)
{
    if (!ap__api_is_admin(c))
        return ap__api_error(c->x, 403, "forbidden", "only an administrator may rotate keys");
    int64_t id = 0;
    int rc = ap_store_keys_rotate(ap__api_state.db_path, c->actor.user_id, ap_time_unix(), &id);
    if (rc == AP_ELIMIT)
        return ap__api_error(c->x, 409, "conflict", "no key id left (65535 used)");
    if (rc)
        return ap__api_error(c->x, 500, "internal", "cannot rotate the token keys");
    return send_keys(c, 201, id);
}
