/*
 * ap_api_auth: who is calling. Bearer authentication (session tokens and API keys), roles,
 * login with throttling, logout.
 *
 * Login throttling (issue 3): after AP_API_LOGIN_MAX_FAILURES failed attempts for one account
 * or from one address within AP_API_LOGIN_WINDOW_S, further attempts get 429 with Retry-After
 * (the seconds until the oldest counted failure leaves the window), without checking the
 * password. Addresses are counted per IPv4 address and per IPv6 /64 (one host's usual share).
 * The state is in memory, shared by the control-plane threads under one mutex (logins are
 * rare and cost ~0.1 s of hashing each, so the lock is never contended for long), in a fixed
 * table of hashed keys: bounded memory whatever an attacker sends. Each attempt is counted as a
 * failure before the password is checked and taken back if it succeeds, so parallel attempts
 * cannot slip past the limit.
 */
#include "ap_api_internal.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"

/* ---- roles -------------------------------------------------------------------------------- */

bool ap__api_is_admin(const struct ap__api_ctx *c)
{
    return c->authed && c->user.role == AP_STORE_ROLE_ADMIN;
}

bool ap__api_is_viewer(const struct ap__api_ctx *c)
{
    return c->authed && c->user.role == AP_STORE_ROLE_VIEWER;
}

/* ---- bearer authentication -------------------------------------------------------------- */

/* RFC 6750: error="invalid_token" only when a token was sent. */
static int unauthorized(struct ap__api_ctx *c, bool had_token, const char *why)
{
    ap_http_add_header(c->x, "WWW-Authenticate",
                       had_token
                           ? AP_SPAN_LIT("Bearer realm=\"adplatform\", error=\"invalid_token\"")
                           : AP_SPAN_LIT("Bearer realm=\"adplatform\""));
    ap__api_error(c->x, 401, "unauthorized", why);
    return AP_EPERM;
}

static bool token_chars_ok(struct ap_span t)
{
    for (size_t i = 0; i < t.len; i++) {
        char ch = t.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Records an API key's use (last_used_at). The store writes at most once a minute per key, but
 * each call may wait for the write lock; a per-thread note of recent attempts keeps a key from
 * trying more than once a minute on this thread even when the write fails (a locked database
 * must not stall every request of a busy key). */
#define TOUCH_SLOTS 64
#define TOUCH_EVERY_NS (60 * AP_NS_PER_SEC)

static void touch_key(struct ap__api_ctx *c)
{
    static _Thread_local struct {
        int64_t key_id;
        uint64_t at;
    } recent[TOUCH_SLOTS];
    uint64_t now = ap_time_mono_coarse_ns();
    size_t slot = (size_t)((uint64_t)c->key_id % TOUCH_SLOTS);
    if (recent[slot].key_id == c->key_id && now - recent[slot].at < TOUCH_EVERY_NS)
        return;
    recent[slot].key_id = c->key_id;
    recent[slot].at = now;
    int rc = ap_store_apikey_touch(c->st, c->key_id);
    if (rc != AP_OK)
        ap_log_warn("api: cannot record the use of API key %lld: %s", (long long)c->key_id,
                    ap_strerror(rc));
}

/* ---- principal cache ------------------------------------------------------------------------
 *
 * A bearer lookup costs a read transaction (token row, user row, the user's tenants); most API
 * calls come in runs with one key, so each control-plane thread keeps the last
 * AUTH_CACHE_SLOTS answers: BLAKE2b(token) -> user, key id, session expiry. An entry is used
 * only while all of these hold:
 *   - it is younger than AP_API_AUTH_CACHE_TTL_MS (bounds how long a revocation made outside
 *     this process, by another node or a direct database edit, can go unseen);
 *   - no logout or key revocation happened in this process since it was filled: those bump
 *     auth_gen (before the answer to them is sent), which ages every thread's entries at once,
 *     so a revoked token is refused by the very next request on any thread;
 *   - a session entry is before the session's expires_at.
 * Only successful lookups are cached (a wrong token always reaches the store). The generation is
 * read before the store lookup, so a revocation that commits while a lookup runs still wins.
 * Users never change role or tenants after creation (no route edits them), so the cached user
 * stays right for its lifetime. The tokens themselves are not kept, only their keyed hashes. */
#define AUTH_CACHE_SLOTS 64

struct auth_entry {
    unsigned char hash[crypto_generichash_BYTES];
    uint64_t gen;              /* auth_gen when filled; 0: empty */
    uint64_t until_ns;         /* monotonic */
    int64_t expires_at;        /* session expiry (Unix s); 0 for API keys */
    int64_t key_id;            /* API keys: the key's id */
    struct ap_store_user user; /* owned */
};

struct auth_cache {
    struct auth_entry e[AUTH_CACHE_SLOTS];
};

static atomic_uint_fast64_t auth_gen = 1;
static pthread_key_t auth_cache_key;
static pthread_once_t auth_cache_once = PTHREAD_ONCE_INIT;
static bool auth_cache_ok;
static unsigned char auth_hash_key[crypto_generichash_KEYBYTES];

static void auth_cache_free(void *p)
{
    struct auth_cache *ac = p;
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++)
        ap_store_user_free(&ac->e[i].user);
    free(ac);
}

static void auth_cache_init(void)
{
    if (sodium_init() < 0)
        return;
    randombytes_buf(auth_hash_key, sizeof(auth_hash_key));
    auth_cache_ok = pthread_key_create(&auth_cache_key, auth_cache_free) == 0;
}

static struct auth_cache *auth_cache_get(void)
{
    pthread_once(&auth_cache_once, auth_cache_init);
    if (!auth_cache_ok)
        return NULL;
    struct auth_cache *ac = pthread_getspecific(auth_cache_key);
    if (!ac && (ac = calloc(1, sizeof(*ac))) != NULL &&
        pthread_setspecific(auth_cache_key, ac) != 0) {
        free(ac);
        ac = NULL;
    }
    return ac;
}

void ap__api_auth_invalidate(void)
{
    atomic_fetch_add(&auth_gen, 1);
}

static bool copy_ids(const int64_t *src, size_t n, int64_t **dst)
{
    *dst = NULL;
    if (n == 0)
        return true;
    *dst = malloc(n * sizeof(*src));
    if (!*dst)
        return false;
    memcpy(*dst, src, n * sizeof(*src));
    return true;
}

/* Deep copy (the context frees its user). false if out of memory (dst zeroed). */
static bool user_copy(struct ap_store_user *dst, const struct ap_store_user *src)
{
    *dst = *src;
    if (!copy_ids(src->advertiser_ids, src->n_advertiser_ids, &dst->advertiser_ids) ||
        !copy_ids(src->publisher_ids, src->n_publisher_ids, &dst->publisher_ids)) {
        ap_store_user_free(dst);
        return false;
    }
    return true;
}

static struct auth_entry *auth_cache_find(struct auth_cache *ac, const unsigned char *hash)
{
    uint64_t gen = atomic_load(&auth_gen), now = ap_time_mono_coarse_ns();
    int64_t wall = ap_time_unix();
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++) {
        struct auth_entry *e = &ac->e[i];
        if (e->gen == 0 || sodium_memcmp(e->hash, hash, sizeof(e->hash)) != 0)
            continue;
        if (e->gen != gen || now >= e->until_ns || (e->expires_at && wall >= e->expires_at)) {
            ap_store_user_free(&e->user);
            e->gen = 0;
            return NULL;
        }
        return e;
    }
    return NULL;
}

static void auth_cache_put(struct auth_cache *ac, const unsigned char *hash, uint64_t gen,
                           const struct ap_store_user *u, int64_t key_id, int64_t expires_at)
{
    /* An empty slot, else the one closest to its end. */
    struct auth_entry *victim = &ac->e[0];
    for (size_t i = 0; i < AUTH_CACHE_SLOTS && victim->gen; i++)
        if (ac->e[i].gen == 0 || ac->e[i].until_ns < victim->until_ns)
            victim = &ac->e[i];
    ap_store_user_free(&victim->user);
    victim->gen = 0;
    if (!user_copy(&victim->user, u))
        return;
    memcpy(victim->hash, hash, sizeof(victim->hash));
    victim->until_ns = ap_time_mono_coarse_ns() + (uint64_t)AP_API_AUTH_CACHE_TTL_MS * 1000000u;
    victim->expires_at = expires_at;
    victim->key_id = key_id;
    victim->gen = gen;
}

int ap__api_authenticate(struct ap__api_ctx *c)
{
    const struct ap_http_header *h = ap_http_find_header(&c->x->req, "Authorization");
    if (!h)
        return unauthorized(c, false, "missing Authorization: Bearer <token or API key>");
    struct ap_span v = h->value;
    if (v.len < 7 || !ap_span_eq_nocase(ap_span_make(v.p, 7), "bearer "))
        return unauthorized(c, false, "the Authorization scheme must be Bearer");
    struct ap_span t = ap_span_make(v.p + 7, v.len - 7);
    while (t.len && t.p[0] == ' ') {
        t.p++;
        t.len--;
    }
    if (t.len == 0 || t.len >= sizeof(c->token) || !token_chars_ok(t))
        return unauthorized(c, true, "invalid or expired token");
    memcpy(c->token, t.p, t.len);
    c->token[t.len] = '\0';

    int rc;
    bool session = ap_span_starts_with(t, AP_STORE_SESSION_PREFIX);
    bool apikey = !session && ap_span_starts_with(t, AP_STORE_APIKEY_PREFIX);
    struct auth_cache *ac = (session || apikey) ? auth_cache_get() : NULL;
    unsigned char hash[crypto_generichash_BYTES];
    struct auth_entry *hit = NULL;
    uint64_t gen = atomic_load(&auth_gen); /* before the lookup: see the cache's comment */
    if (ac) {
        crypto_generichash(hash, sizeof(hash), (const unsigned char *)c->token, t.len,
                           auth_hash_key, sizeof(auth_hash_key));
        hit = auth_cache_find(ac, hash);
    }
    if (hit) {
        rc = user_copy(&c->user, &hit->user) ? AP_OK : AP_ENOMEM;
        c->key_id = hit->key_id;
        if (rc == AP_OK && apikey)
            touch_key(c);
    } else if (session) {
        int64_t expires_at = 0;
        rc = ap_store_session_lookup_exp(c->st, c->token, &c->user, NULL, &expires_at);
        if (rc == AP_OK && ac)
            auth_cache_put(ac, hash, gen, &c->user, 0, expires_at);
    } else if (apikey) {
        rc = ap_store_apikey_lookup(c->st, c->token, &c->user, &c->key_id);
        if (rc == AP_OK && ac)
            auth_cache_put(ac, hash, gen, &c->user, c->key_id, 0);
        if (rc == AP_OK)
            touch_key(c);
    } else {
        rc = AP_ENOTFOUND;
    }
    if (rc == AP_ENOTFOUND)
        return unauthorized(c, true, "invalid or expired token");
    if (rc != AP_OK) {
        ap__api_store_error(c, rc, NULL, false);
        return rc;
    }
    c->authed = true;
    ap_store_actor_from_user(&c->user, &c->actor);
    return AP_OK;
}

/* ---- the caller's address ------------------------------------------------------------------ */

void ap__api_peer(struct ap_http_exchange *x, char *out, size_t cap)
{
    char addr[INET6_ADDRSTRLEN + 8];
    struct in6_addr a6;
    struct in_addr a4;
    if (ap_http_peer_addr(x, addr, sizeof(addr)) != AP_OK) {
        snprintf(out, cap, "unknown");
        return;
    }
    if (inet_pton(AF_INET6, addr, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            memcpy(&a4, &a6.s6_addr[12], 4);
            if (inet_ntop(AF_INET, &a4, addr, sizeof(addr)))
                snprintf(out, cap, "%s", addr);
            else
                snprintf(out, cap, "unknown");
            return;
        }
        memset(&a6.s6_addr[8], 0, 8); /* the /64 */
        if (inet_ntop(AF_INET6, &a6, addr, sizeof(addr)))
            snprintf(out, cap, "%s/64", addr);
        else
            snprintf(out, cap, "unknown");
        return;
    }
    snprintf(out, cap, "%s", addr);
}

/* ---- login throttle --------------------------------------------------------------------- */

#define THROTTLE_SLOTS 8192
#define THROTTLE_PROBE 32

struct throttle_entry {
    uint64_t key;                           /* 0: free */
    uint64_t at[AP_API_LOGIN_MAX_FAILURES]; /* failure times (monotonic s), oldest first */
    unsigned n;
};

static pthread_mutex_t throttle_mu = PTHREAD_MUTEX_INITIALIZER;
static struct throttle_entry throttle[THROTTLE_SLOTS];
static uint64_t throttle_seed; /* random, so nobody can aim keys at one probe window */

static uint64_t now_s(void)
{
    return ap_time_mono_ns() / AP_NS_PER_SEC + 1; /* never 0 */
}

static pthread_once_t throttle_once = PTHREAD_ONCE_INIT;

static void throttle_seed_init(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = ap_time_mono_ns();
    throttle_seed = seed | 1;
}

static uint64_t throttle_hash(const char *kind, const char *s)
{
    pthread_once(&throttle_once, throttle_seed_init);
    uint64_t h = 1469598103934665603ull ^ throttle_seed;
    for (const char *p = kind; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ ':') * 1099511628211ull;
    for (const char *p = s; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h ^= h >> 33;
    return h ? h : 1;
}

/* Drops failures older than the window. */
static void prune(struct throttle_entry *e, uint64_t now)
{
    unsigned k = 0;
    while (k < e->n && e->at[k] + AP_API_LOGIN_WINDOW_S <= now)
        k++;
    if (k) {
        memmove(e->at, e->at + k, (e->n - k) * sizeof(e->at[0]));
        e->n -= k;
    }
    if (e->n == 0)
        e->key = 0;
}

/* The entry of key, or (create) a free, expired or least recently failed slot for it. */
static struct throttle_entry *throttle_find(uint64_t key, uint64_t now, bool create)
{
    size_t base = (size_t)(key % THROTTLE_SLOTS);
    struct throttle_entry *victim = NULL;
    for (size_t i = 0; i < THROTTLE_PROBE; i++) {
        struct throttle_entry *e = &throttle[(base + i) % THROTTLE_SLOTS];
        if (e->key)
            prune(e, now);
        if (e->key == key)
            return e;
        if (!create)
            continue;
        if (!e->key) {
            if (!victim || victim->key)
                victim = e;
        } else if (!victim || (victim->key && e->at[e->n - 1] < victim->at[victim->n - 1])) {
            victim = e;
        }
    }
    if (victim) {
        victim->key = key;
        victim->n = 0;
    }
    return victim;
}

/* Seconds until key may try again, 0 if it may now. */
static uint64_t throttle_wait(uint64_t key, uint64_t now)
{
    struct throttle_entry *e = throttle_find(key, now, false);
    if (!e || e->n < AP_API_LOGIN_MAX_FAILURES)
        return 0;
    return e->at[0] + AP_API_LOGIN_WINDOW_S - now;
}

static void throttle_add(uint64_t key, uint64_t now)
{
    struct throttle_entry *e = throttle_find(key, now, true);
    if (!e)
        return;
    if (e->n == AP_API_LOGIN_MAX_FAILURES) {
        memmove(e->at, e->at + 1, (e->n - 1) * sizeof(e->at[0]));
        e->n--;
    }
    e->at[e->n++] = now;
}

/* Takes back one failure recorded at t (the attempt succeeded or never was checked). */
static void throttle_undo(uint64_t key, uint64_t t, uint64_t now)
{
    struct throttle_entry *e = throttle_find(key, now, false);
    if (!e)
        return;
    for (unsigned k = e->n; k-- > 0;) {
        if (e->at[k] == t) {
            memmove(e->at + k, e->at + k + 1, (e->n - k - 1) * sizeof(e->at[0]));
            e->n--;
            break;
        }
    }
    if (e->n == 0)
        e->key = 0;
}

static void throttle_clear(uint64_t key, uint64_t now)
{
    struct throttle_entry *e = throttle_find(key, now, false);
    if (e) {
        e->n = 0;
        e->key = 0;
    }
}

/* ---- login and logout ---------------------------------------------------------------------- */

/* Checks the login body: exactly {"email": string, "password": string}. */
static bool login_fields(const json_t *body, const char **email, const char **password,
                         struct ap_schema_errors *errs)
{
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)body, key, v) {
        if (strcmp(key, "email") != 0 && strcmp(key, "password") != 0)
            ap_schema_errors_add(errs, key, "unknown field");
    }
    json_t *e = json_object_get(body, "email"), *p = json_object_get(body, "password");
    if (!e)
        ap_schema_errors_add(errs, "email", "is required");
    else if (!json_is_string(e) || json_string_length(e) == 0 ||
             json_string_length(e) > AP_STORE_EMAIL_MAX ||
             strlen(json_string_value(e)) != json_string_length(e))
        ap_schema_errors_add(errs, "email", "must be an e-mail address of at most %d bytes",
                             AP_STORE_EMAIL_MAX);
    if (!p)
        ap_schema_errors_add(errs, "password", "is required");
    else if (!json_is_string(p) || json_string_length(p) > AP_STORE_PASSWORD_MAX ||
             strlen(json_string_value(p)) != json_string_length(p))
        ap_schema_errors_add(errs, "password", "must be a string of at most %d bytes",
                             AP_STORE_PASSWORD_MAX);
    *email = json_string_value(e);
    *password = json_string_value(p);
    return errs->total == 0;
}

int ap__api_login(struct ap__api_ctx *c)
{
    struct ap_http_exchange *x = c->x;
    struct ap_schema_errors errs;
    struct ap_store_user user = {0};
    struct ap_store_actor actor;
    json_t *body = NULL, *out = NULL;
    const char *email, *password;
    char lower[AP_STORE_EMAIL_MAX + 1], peer[INET6_ADDRSTRLEN + 8];
    char token[AP_STORE_TOKEN_MAX], expires[AP_SCHEMA_TIME_MAX];
    int64_t expires_at = 0;
    int rc;

    ap_schema_errors_init(&errs);
    if ((rc = ap__api_read_json(c, &body)) != AP_OK)
        goto done;
    if (!login_fields(body, &email, &password, &errs)) {
        rc = ap__api_error_fields(x, 422, "validation_failed", "request validation failed", &errs);
        goto done;
    }
    size_t n = strlen(email);
    for (size_t i = 0; i <= n; i++)
        lower[i] = (email[i] >= 'A' && email[i] <= 'Z') ? (char)(email[i] + 32) : email[i];
    ap__api_peer(x, peer, sizeof(peer));
    uint64_t kacc = throttle_hash("account", lower), kaddr = throttle_hash("address", peer);

    uint64_t now = now_s(), wait;
    pthread_mutex_lock(&throttle_mu);
    wait = throttle_wait(kacc, now);
    uint64_t wait_addr = throttle_wait(kaddr, now);
    if (wait_addr > wait)
        wait = wait_addr;
    if (!wait) {
        throttle_add(kacc, now);
        throttle_add(kaddr, now);
    }
    pthread_mutex_unlock(&throttle_mu);
    if (wait) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%llu", (unsigned long long)wait);
        ap_http_add_header(x, "Retry-After", ap_span_cstr(ra));
        ap_log_warn("api: login throttled for %s from %s", lower, peer);
        rc = ap__api_error(x, 429, "too_many_attempts",
                           "too many failed logins; retry after the time in Retry-After");
        goto done;
    }

    rc = ap_store_user_verify_password(c->st, email, password, &user);
    if (rc == AP_EPERM) {
        ap_log_info("api: failed login for %s from %s", lower, peer);
        rc = ap__api_error(x, 401, "invalid_credentials", "wrong e-mail or password");
        goto done;
    }
    pthread_mutex_lock(&throttle_mu);
    if (rc == AP_OK)
        throttle_clear(kacc, now_s());
    else
        throttle_undo(kacc, now, now_s());
    throttle_undo(kaddr, now, now_s());
    pthread_mutex_unlock(&throttle_mu);
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, NULL, false);
        goto done;
    }

    ap_store_actor_from_user(&user, &actor);
    rc = ap_store_session_create(c->st, user.id, ap__api_state.session_ttl, &actor, token,
                                 &expires_at);
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, NULL, false);
        goto done;
    }
    ap_schema_time_format(expires_at, expires);
    out = json_pack("{s:s, s:s}", "token", token, "expires_at", expires);
    rc = out ? ap__api_send_json(x, 200, out) : ap__api_error(x, 500, "internal", "out of memory");
done:
    explicit_bzero(token, sizeof(token));
    json_decref(out);
    json_decref(body);
    ap_store_user_free(&user);
    return rc;
}

int ap__api_logout(struct ap__api_ctx *c)
{
    if (c->key_id > 0 || !ap_span_starts_with(ap_span_cstr(c->token), AP_STORE_SESSION_PREFIX))
        return ap__api_error(c->x, 400, "not_a_session",
                             "logout ends a session; revoke API keys with DELETE "
                             "/api/v1/api-keys/{id}");
    int rc = ap_store_session_revoke(c->st, c->token, &c->actor);
    ap__api_auth_invalidate(); /* even on failure: the revocation may have committed */
    if (rc != AP_OK)
        return ap__api_store_error(c, rc, NULL, false);
    return ap_http_respond(c->x, 204, NULL, NULL, 0);
}
