/* ap_cmd_keys: see ap_cmd_keys.h. */
#include "ap_cmd_keys.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/ap_error.h"
#include "../core/ap_time.h"
#include "../events/ap_token.h"
#include "../store/ap_store.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: adplatform keys rotate --data-dir DIR [--json]\n"
                 "       adplatform keys list --data-dir DIR\n\n"
                 "rotate: adds a new token signing key to the store under DIR (default\n"
                 "$ADPLATFORM_DATA_DIR or ./data); a running daemon signs with it within about a\n"
                 "second, and the replaced key keeps verifying for --token-key-overlap seconds.\n"
                 "list: prints the keys' ids and dates as JSON (never the key bytes).\n");
}

/* Imports <dir>/keys/token.key into an empty token_keys table (else a fresh key). */
static int bootstrap(const char *dir, const char *db)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/keys/token.key", dir);
    struct ap_store_token_key imp[AP_TOKEN_MAX_KEYS];
    int n = 0;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        struct ap_token_keyring kr;
        int rc = ap_token_keyring_load(&kr, path, 0, ap_time_unix());
        if (rc) {
            fprintf(stderr, "adplatform keys: %s: %s\n", path, ap_strerror(rc));
            return rc;
        }
        for (int i = 0; i < kr.n; i++) {
            imp[i].id = kr.keys[i].id;
            imp[i].created_at = kr.keys[i].created_at;
            imp[i].retired_at = 0;
            memcpy(imp[i].key, kr.keys[i].key, AP_TOKEN_KEY_BYTES);
        }
        n = kr.n;
        sodium_memzero(&kr, sizeof(kr));
    }
    bool created = false;
    int rc = ap_store_keys_bootstrap(db, imp, n, ap_time_unix(), &created);
    sodium_memzero(imp, sizeof(imp));
    return rc;
}

int ap_cmd_keys(int argc, char **argv)
{
    const char *dir = getenv("ADPLATFORM_DATA_DIR");
    bool json = false;
    if (argc >= 1 &&
        (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 1 || (strcmp(argv[0], "rotate") != 0 && strcmp(argv[0], "list") != 0)) {
        usage(stderr);
        return 2;
    }
    bool rotate = !strcmp(argv[0], "rotate");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strncmp(a, "--data-dir=", 11)) {
            dir = a + 11;
        } else if (!strcmp(a, "--data-dir") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "adplatform keys: unknown option or missing value: %s\n", a);
            return 2;
        }
    }
    if (!dir || !dir[0])
        dir = "./data";
    char db[4200];
    if (snprintf(db, sizeof(db), "%s/adplatform.db", dir) >= (int)sizeof(db)) {
        fprintf(stderr, "adplatform keys: data dir path too long\n");
        return 2;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "adplatform keys: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (sodium_init() < 0)
        return 1;
    struct ap_store *st = NULL;
    int rc = ap_store_open(db, NULL, &st); /* creates and migrates the store if needed */
    if (rc) {
        fprintf(stderr, "adplatform keys: cannot open the store %s: %s\n", db, ap_strerror(rc));
        return 1;
    }
    ap_store_close(st);
    if ((rc = bootstrap(dir, db))) {
        fprintf(stderr, "adplatform keys: cannot initialise the keys: %s\n", ap_strerror(rc));
        return 1;
    }
    if (rotate) {
        int64_t id = 0;
        if ((rc = ap_store_keys_rotate(db, 0, ap_time_unix(), &id))) {
            fprintf(stderr, "adplatform keys: rotation failed: %s\n", ap_strerror(rc));
            return 1;
        }
        if (json)
            printf("{\"id\":%lld}\n", (long long)id);
        else
            printf("new signing key %lld\n", (long long)id);
        return 0;
    }
    json_t *list = NULL;
    if ((rc = ap_store_keys_list_json(db, &list))) {
        fprintf(stderr, "adplatform keys: cannot list the keys: %s\n", ap_strerror(rc));
        return 1;
    }
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    if (!text)
        return 1;
    printf("%s\n", text);
    free(text);
    return 0;
}
