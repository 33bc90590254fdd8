#include "ap_cmd_admin.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/ap_error.h"
#include "../store/ap_store.h"

#define ADMIN_PASSWORD_BYTES 18 /* 144 random bits: 24 base64url characters */
#define ADMIN_PATH_MAX 4096
#define ADMIN_KEY_NAME "bootstrap"

static void usage(FILE *out)
{
    fprintf(out, "Usage: adplatform admin create --data-dir DIR --email EMAIL [--json]\n\n"
                 "Creates an administrator and an API key in the store under DIR (default\n"
                 "$ADPLATFORM_DATA_DIR or ./data) and prints the password and the key once.\n"
                 "  --json   print {\"email\",\"password\",\"api_key\"}\n");
}

/* "--name value" or "--name=value": the value, advancing *i; NULL if argv[*i] is not --name. */
static const char *flag_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int ap_cmd_admin(int argc, char **argv)
{
    const char *data_dir = getenv("ADPLATFORM_DATA_DIR"), *email = NULL;
    bool json = false, missing = false;
    struct ap_store *st = NULL;
    struct ap_store_user user = {0};
    struct ap_schema_errors errs;
    json_t *fields = NULL;
    char path[ADMIN_PATH_MAX], key[AP_STORE_TOKEN_MAX] = "";
    char password[sodium_base64_ENCODED_LEN(ADMIN_PASSWORD_BYTES,
                                            sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    unsigned char raw[ADMIN_PASSWORD_BYTES];
    int rc, code = 1;

    password[0] = '\0';
    if (argc >= 1 &&
        (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 1 || strcmp(argv[0], "create") != 0) {
        usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((v = flag_value(argc, argv, &i, "--data-dir", &missing))) {
            data_dir = v;
        } else if ((v = flag_value(argc, argv, &i, "--email", &missing))) {
            email = v;
        } else {
            fprintf(stderr, "adplatform admin: %s %s\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            return 2;
        }
    }
    if (!email || !email[0]) {
        fprintf(stderr, "adplatform admin: --email is required\n\n");
        usage(stderr);
        return 2;
    }
    if (!data_dir || !data_dir[0])
        data_dir = "./data";
    if (mkdir(data_dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "adplatform admin: cannot create %s: %s\n", data_dir, strerror(errno));
        goto done;
    }
    if (snprintf(path, sizeof(path), "%s/adplatform.db", data_dir) >= (int)sizeof(path)) {
        fprintf(stderr, "adplatform admin: data dir path too long\n");
        goto done;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "adplatform admin: libsodium cannot start\n");
        goto done;
    }
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(password, sizeof(password), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));

    if ((rc = ap_store_open(path, NULL, &st)) != AP_OK) {
        fprintf(stderr, "adplatform admin: cannot open the store %s: %s\n", path, ap_strerror(rc));
        goto done;
    }
    fields = json_pack("{s:s, s:s, s:s}", "email", email, "password", password, "role", "admin");
    if (!fields) {
        fprintf(stderr, "adplatform admin: the email must be UTF-8 text\n");
        goto done;
    }
    rc = ap_store_user_create(st, fields, NULL, &user, &errs);
    if (rc != AP_OK) {
        fprintf(stderr, "adplatform admin: cannot create the user: %s\n", ap_strerror(rc));
        for (size_t i = 0; rc == AP_EINVAL && i < errs.n; i++)
            fprintf(stderr, "  %s: %s\n", errs.items[i].field, errs.items[i].message);
        goto done;
    }
    rc = ap_store_apikey_create(st, user.id, ADMIN_KEY_NAME, NULL, key, NULL);
    if (rc != AP_OK) {
        fprintf(stderr, "adplatform admin: user %s created but no API key: %s\n", user.email,
                ap_strerror(rc));
        goto done;
    }
    if (json) {
        json_t *out =
            json_pack("{s:s, s:s, s:s}", "email", user.email, "password", password, "api_key", key);
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(out);
        if (!text)
            goto done;
    } else {
        printf("Administrator created (shown once, store them now):\n"
               "  email:    %s\n  password: %s\n  api key:  %s\n",
               user.email, password, key);
    }
    code = fflush(stdout) == 0 ? 0 : 1;
done:
    sodium_memzero(password, sizeof(password));
    sodium_memzero(key, sizeof(key));
    json_decref(fields);
    ap_store_user_free(&user);
    ap_store_close(st);
    return code;
}
