/*
 * ap_cli internals shared by ap_cli.c (arguments, configuration, HTTP, output) and
 * ap_cli_resources.c (the commands). Not part of the module's contract (that is ap_cli.h).
 *
 * Memory: struct ap__cli lives on ap_cli_main's stack for the whole command; strings in it
 * point into argv or its own arrays. Responses own their body and JSON (ap__cli_resp_free).
 */
#ifndef AP_CLI_INTERNAL_H
#define AP_CLI_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ap_cli.h"

#define AP_CLI_MAX_ARGS 256     /* positionals and flags, each */
#define AP_CLI_FLAG_NAME_MAX 64 /* "budget-lifetime-micros" */
#define AP_CLI_URL_MAX 2048
#define AP_CLI_KEY_MAX 512
#define AP_CLI_PATH_MAX 4096
#define AP_CLI_MAX_RESPONSE (64u << 20) /* bytes of one response body */
#define AP_CLI_MAX_UPLOAD (64u << 20)   /* bytes of an uploaded file (the server caps lower) */
#define AP_CLI_MAX_REQUEST_URL 16384    /* URL with its query string */
#define AP_CLI_MAX_PAGES 100000         /* --all: pages followed at most */
#define AP_CLI_PASSWORD_MAX 1024
#define AP_CLI_DEFAULT_URL "http://127.0.0.1:8081"

struct ap__cli_flag {
    char name[AP_CLI_FLAG_NAME_MAX]; /* without "--" */
    const char *value;               /* NULL for switches (--json) */
    bool used;                       /* looked at by the command: otherwise an unknown flag */
};

struct ap__cli {
    const char *cmd;                  /* argv[0]: "campaign" */
    const char *verb;                 /* the first positional after the command, or NULL */
    const char *pos[AP_CLI_MAX_ARGS]; /* positionals after the verb */
    size_t npos;
    struct ap__cli_flag flags[AP_CLI_MAX_ARGS];
    size_t nflags;

    char url[AP_CLI_URL_MAX];          /* base URL without a trailing '/' */
    char key[AP_CLI_KEY_MAX];          /* "" = none */
    const char *key_source;            /* where the key came from, for messages */
    char config_path[AP_CLI_PATH_MAX]; /* "" if no home directory */
    bool json;                         /* --json */
    bool verbose;                      /* --verbose: requests on stderr */
    bool anonymous;       /* the request needs no key (login): no hint about keys on 401 */
    const char *if_match; /* sent as If-Match when set */
    void *curl;           /* CURL *, created on the first request */
};

struct ap__cli_resp {
    long status; /* HTTP status */
    char *body;  /* NUL-terminated, owned; may be NULL when empty */
    size_t len;
    char content_type[128];
    char retry_after[32];
    json_t *json; /* the parsed body if it is JSON, else NULL; owned */
};

/* ---- arguments ------------------------------------------------------------------------------ */

/* The value of --name (NULL if absent) and marks it used. For a switch, returns "" if given. */
const char *ap__cli_flag(struct ap__cli *c, const char *name);

/* true if the switch --name was given (marks it used). */
bool ap__cli_switch(struct ap__cli *c, const char *name);

/* Repeatable flags (--set, --param): the value of the next occurrence at or after *iter, or
 * NULL. Start with *iter = 0. */
const char *ap__cli_flag_next(struct ap__cli *c, const char *name, size_t *iter);

/* AP_CLI_EXIT_OK if every flag was used by the command, else prints "error: unknown flag --x"
 * and returns AP_CLI_EXIT_USAGE. Commands call it after reading their flags and before any
 * request. */
int ap__cli_check_flags(struct ap__cli *c);

/* Prints "error: <message>" and a pointer to --help; returns AP_CLI_EXIT_USAGE. */
int ap__cli_usage_error(struct ap__cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a decimal int64 (the whole string). 0 or AP_EINVAL. */
int ap__cli_parse_i64(const char *s, int64_t *out);

/* The positive id in positional i, or a usage error (AP_CLI_EXIT_USAGE, printed). */
int ap__cli_id_arg(struct ap__cli *c, size_t i, int64_t *id);

/* Reads a password for `login` / `user create --password -`: ADPLATFORM_PASSWORD if set, else
 * one line from stdin (echo off on a terminal, after a prompt on stderr). 0 or an exit code. */
int ap__cli_read_password(struct ap__cli *c, char *out, size_t n);

/* Writes "YYYY-MM-DD" (UTC) for today / yesterday / tomorrow into out (11 bytes); false if s
 * is none of them. */
bool ap__cli_relative_date(const char *s, char *out, size_t n);

/* ---- HTTP ----------------------------------------------------------------------------------- */

/* Percent-encodes s and appends "&key=value" (or "key=value" first) to q. 0 or exit code. */
int ap__cli_query_add(struct ap__cli *c, char *q, size_t qn, const char *key, const char *value);

/* One request to <url>/api/v1/<path>[?query]. body may be NULL (no body); ctype its type.
 * Fills *r (free with ap__cli_resp_free, also on failure). Returns AP_CLI_EXIT_OK whatever the
 * HTTP status, AP_CLI_EXIT_NETWORK if no response arrived (message printed), AP_CLI_EXIT_API
 * if the response was too large. */
int ap__cli_http(struct ap__cli *c, const char *method, const char *path, const char *query,
                 const char *ctype, const void *body, size_t len, struct ap__cli_resp *r);

/* ap__cli_http with a JSON body (NULL: none), then ap__cli_status. */
int ap__cli_call(struct ap__cli *c, const char *method, const char *path, const char *query,
                 const json_t *body, struct ap__cli_resp *r);

/* AP_CLI_EXIT_OK for a 2xx status; otherwise prints the API error (message and field errors)
 * and returns the exit code for the status. */
int ap__cli_status(struct ap__cli *c, const struct ap__cli_resp *r);

void ap__cli_resp_free(struct ap__cli_resp *r);

/* ---- output --------------------------------------------------------------------------------- */

/* --json: the response body as received, with a final newline. */
void ap__cli_print_body(const struct ap__cli_resp *r);

/* A JSON value, indented (for documents the CLI assembled, e.g. --all). */
void ap__cli_print_json(const json_t *v);

/* One object as aligned "field  value" lines. */
void ap__cli_print_object(const json_t *obj);

/* An array of objects as an aligned table. cols: NULL-terminated field names (columns absent
 * from every row are left out); NULL: every key, in first-seen order. */
void ap__cli_print_table(const json_t *rows, const char *const *cols);

/* ---- commands (ap_cli_resources.c) ---------------------------------------------------------- */

bool ap__cli_resources_has(const char *cmd);
void ap__cli_resources_usage(FILE *out);

/* Runs c->cmd (flags parsed, connection resolved). Returns an exit code. */
int ap__cli_resources_run(struct ap__cli *c);

/* Prints `adplatform <cmd> --help` (verb: NULL or one verb). */
void ap__cli_resources_help(const char *cmd, const char *verb, FILE *out);

#endif
