/* ap_token_ring: see ap_token_ring.h. */
#include "ap_token_ring.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_thread.h"
#include "../core/ap_time.h"
#include "../store/ap_store.h"

struct node {
    struct ap_token_rings r;
    struct node *older; /* replaced rings, freed at the last stop */
};

static struct {
    pthread_mutex_t mu; /* start/stop/refresh and the list; never taken by readers */
    pthread_cond_t cv;
    int refs;
    bool stopping, thread_up;
    pthread_t thread;
    char db_path[4096];
    char key_dir[4096], key_file[4200]; /* the exported copy of the ring (see the header) */
    int64_t overlap;
    int refresh_ms;
    struct node *list; /* newest first; list == cur */
    _Atomic(struct node *) cur;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t conv_keep(int64_t overlap)
{
    int64_t c = AP_TOKEN_TTL_CONV + AP_TOKEN_MAX_SKEW;
    return overlap > c ? overlap : c;
}

/* Reads the keys and publishes a new ring. Caller holds R.mu. */
static int load_locked(void)
{
    int64_t version = 0;
    int rc = ap_store_keys_version(R.db_path, &version);
    if (rc)
        return rc;
    int64_t now = ap_time_unix();
    struct ap_store_token_key keys[AP_TOKEN_MAX_KEYS];
    int n = 0;
    if ((rc = ap_store_keys_get(R.db_path, now - conv_keep(R.overlap), keys, AP_TOKEN_MAX_KEYS,
                                &n)))
        return rc;
    if (n == 0) {
        ap_log_error("token keys: the store holds no usable key");
        return AP_ENOTFOUND;
    }
    struct node *nd = calloc(1, sizeof(*nd));
    if (!nd) {
        sodium_memzero(keys, sizeof(keys));
        return AP_ENOMEM;
    }
    nd->r.sign.overlap = R.overlap;
    nd->r.conv.overlap = conv_keep(R.overlap);
    nd->r.store_version = version;
    for (int i = 0; i < n && rc == AP_OK; i++) {
        rc = ap_token_keyring_add(&nd->r.sign, (uint16_t)keys[i].id, keys[i].created_at,
                                  keys[i].key);
        if (rc == AP_OK)
            rc = ap_token_keyring_add(&nd->r.conv, (uint16_t)keys[i].id, keys[i].created_at,
                                      keys[i].key);
    }
    sodium_memzero(keys, sizeof(keys));
    if (rc) {
        sodium_memzero(nd, sizeof(*nd));
        free(nd);
        return rc;
    }
    struct node *old = atomic_load_explicit(&R.cur, memory_order_relaxed);
    if (old && old->r.sign.n == n &&
        old->r.sign.keys[n - 1].id == nd->r.sign.keys[n - 1].id &&
        old->r.sign.keys[0].id == nd->r.sign.keys[0].id) {
        /* same keys (another resource changed the store version): keep the published ring */
        old->r.store_version = version; /* only the refresher reads this field */
        sodium_memzero(nd, sizeof(*nd));
        free(nd);
        return AP_OK;
    }
    /* export first: whoever sees the new ring also finds it in the file */
    if ((mkdir(R.key_dir, 0700) < 0 && errno != EEXIST) ||
        ap_token_keyring_save(&nd->r.sign, R.key_file) != AP_OK)
        ap_log_warn("token keys: cannot export the ring to %s", R.key_file);
    nd->older = R.list;
    R.list = nd;
    atomic_store_explicit(&R.cur, nd, memory_order_release);
    if (old)
        ap_log_info("token keys: signing with key %u (%d keys)", nd->r.sign.keys[n - 1].id, n);
    return AP_OK;
}

static void *refresher(void *arg)
{
    (void)arg;
    ap_log_set_thread_name("token-keys");
    ap_thread_background();
    pthread_mutex_lock(&R.mu);
    while (!R.stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)R.refresh_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&R.cv, &R.mu, &ts);
        if (R.stopping)
            break;
        int64_t v = 0;
        struct node *cur = atomic_load_explicit(&R.cur, memory_order_relaxed);
        if (ap_store_keys_version(R.db_path, &v) == AP_OK && cur && v != cur->r.store_version)
            load_locked();
    }
    pthread_mutex_unlock(&R.mu);
    return NULL;
}

/* The key file of earlier releases, imported once. *n = 0 if there is none. */
static int read_key_file(const char *data_dir, struct ap_store_token_key *out, int *n, char *err,
                         size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/keys/token.key", data_dir);
    *n = 0;
    struct stat sb;
    if (stat(path, &sb) < 0)
        return errno == ENOENT ? AP_OK : ap_error_from_errno(errno);
    struct ap_token_keyring kr;
    int rc = ap_token_keyring_load(&kr, path, 0, ap_time_unix());
    if (rc) {
        snprintf(err, errlen, "token keys %s: %s", path, ap_strerror(rc));
        return rc;
    }
    for (int i = 0; i < kr.n; i++) {
        out[i].id = kr.keys[i].id;
        out[i].created_at = kr.keys[i].created_at;
        out[i].retired_at = 0;
        memcpy(out[i].key, kr.keys[i].key, AP_TOKEN_KEY_BYTES);
    }
    *n = kr.n;
    sodium_memzero(&kr, sizeof(kr));
    return AP_OK;
}

int ap_token_ring_start(const struct ap_token_ring_options *o, char *err, size_t errlen)
{
    pthread_mutex_lock(&R.mu);
    if (R.refs > 0) {
        R.refs++;
        pthread_mutex_unlock(&R.mu);
        return AP_OK;
    }
    int rc = AP_OK;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "token keys: libsodium failed to initialise");
        rc = AP_EIO;
        goto out;
    }
    if ((size_t)snprintf(R.db_path, sizeof(R.db_path), "%s/adplatform.db", o->data_dir) >=
        sizeof(R.db_path)) {
        snprintf(err, errlen, "token keys: data dir path too long");
        rc = AP_EINVAL;
        goto out;
    }
    snprintf(R.key_dir, sizeof(R.key_dir), "%s/keys", o->data_dir);
    snprintf(R.key_file, sizeof(R.key_file), "%s/token.key", R.key_dir);
    R.overlap = o->overlap > 0 ? o->overlap : AP_TOKEN_DEFAULT_OVERLAP;
    R.refresh_ms = o->refresh_ms > 0 ? o->refresh_ms : 200;
    struct ap_store_token_key imp[AP_TOKEN_MAX_KEYS];
    int n = 0;
    bool created = false;
    if ((rc = read_key_file(o->data_dir, imp, &n, err, errlen)))
        goto out;
    rc = ap_store_keys_bootstrap(R.db_path, imp, n, ap_time_unix(), &created);
    sodium_memzero(imp, sizeof(imp));
    if (rc) {
        snprintf(err, errlen, "token keys: cannot initialise the store's keys: %s",
                 ap_strerror(rc));
        goto out;
    }
    if (created)
        ap_log_info("token keys: %s", n ? "imported keys/token.key into the store"
                                        : "created the first signing key in the store");
    if ((rc = load_locked())) {
        snprintf(err, errlen, "token keys: cannot read the store's keys: %s", ap_strerror(rc));
        goto out;
    }
    R.stopping = false;
    if (pthread_create(&R.thread, NULL, refresher, NULL) != 0) {
        snprintf(err, errlen, "token keys: cannot start the refresher thread");
        rc = AP_ENOMEM;
        goto out;
    }
    R.thread_up = true;
    R.refs = 1;
out:
    if (rc) {
        struct node *nd = R.list;
        while (nd) {
            struct node *o2 = nd->older;
            sodium_memzero(nd, sizeof(*nd));
            free(nd);
            nd = o2;
        }
        R.list = NULL;
        atomic_store(&R.cur, NULL);
    }
    pthread_mutex_unlock(&R.mu);
    return rc;
}

const struct ap_token_rings *ap_token_ring_get(void)
{
    struct node *n = atomic_load_explicit(&R.cur, memory_order_acquire);
    return n ? &n->r : NULL;
}

int ap_token_ring_refresh(void)
{
    pthread_mutex_lock(&R.mu);
    int rc = R.refs > 0 ? load_locked() : AP_EINVAL;
    pthread_mutex_unlock(&R.mu);
    return rc;
}

void ap_token_ring_stop(void)
{
    pthread_mutex_lock(&R.mu);
    if (R.refs == 0 || --R.refs > 0) {
        pthread_mutex_unlock(&R.mu);
        return;
    }
    R.stopping = true;
    pthread_cond_broadcast(&R.cv);
    bool up = R.thread_up;
    R.thread_up = false;
    pthread_mutex_unlock(&R.mu);
    if (up)
        pthread_join(R.thread, NULL);
    pthread_mutex_lock(&R.mu);
    atomic_store(&R.cur, NULL);
    struct node *nd = R.list;
    R.list = NULL;
    pthread_mutex_unlock(&R.mu);
    while (nd) {
        struct node *o = nd->older;
        sodium_memzero(nd, sizeof(*nd));
        free(nd);
        nd = o;
    }
}
