/*
 * ap_cli: the command-line client, `adplatform <noun> <verb> [flags]` (git style):
 * `adplatform campaign create --advertiser 1 --name "Q4 Sale"`, `campaign list --json`, ...
 *
 * A client of the control-plane REST API only: every command is one or a few HTTP requests to
 * /api/v1 (libcurl); it never opens the store. It reads ap_schema's static field table (no I/O)
 * to derive its flags and the JSON type of their values, so a field added to the model gets its
 * flag without a change here (docs/adr/0005-cli.md).
 *
 * Where to connect: --url / --api-key flags > ADPLATFORM_URL / ADPLATFORM_API_KEY > the config
 * file $XDG_CONFIG_HOME/adplatform/config (default ~/.config/adplatform/config; lines
 * `url = ...`, `api_key = ...`, '#' comments) > http://127.0.0.1:8081 without a key.
 *
 * Output: tables (lists) or "field  value" lines (one object) for people; --json prints the
 * API's JSON document for scripts. Errors go to stderr: "error: <message>" and one
 * "  <field>: <message>" line per field error; the exit code says what kind (enum below).
 *
 * Threads: the CLI runs on the main thread of its own process; nothing here is reentrant.
 */
#ifndef AP_CLI_H
#define AP_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Process exit codes (stable: scripts rely on them). */
enum ap_cli_exit {
    AP_CLI_EXIT_OK = 0,
    AP_CLI_EXIT_API = 1,       /* the API answered an error (422, 409, 5xx, ...) */
    AP_CLI_EXIT_USAGE = 2,     /* bad command line: unknown command or flag, bad value */
    AP_CLI_EXIT_NETWORK = 3,   /* cannot connect, timeout, broken connection */
    AP_CLI_EXIT_NOT_FOUND = 4, /* 404 */
    AP_CLI_EXIT_AUTH = 5       /* 401 or 403 */
};

/* true if name is a command handled by the CLI ("campaign", "login", ...). */
bool ap_cli_is_command(const char *name);

/* Runs one CLI command: argv[0] is the command ("campaign"), the rest its verb, arguments and
 * flags. Returns an enum ap_cli_exit value. Writes results to stdout, messages to stderr. */
int ap_cli_main(int argc, char **argv);

/* Prints the CLI's commands, one line each, for the top-level usage text. */
void ap_cli_usage(FILE *out);

#endif
