/*
 * ap_cmd_admin: `adplatform admin create --data-dir DIR --email E [--json]`, the offline
 * bootstrap (issue 3 item 5). Opens the store directly (the daemon may be running: SQLite
 * serialises the writers), creates an admin user with a random password and an API key for
 * it, and prints both once: as text, or with --json as {"email","password","api_key"}.
 *
 * The main thread of its own process.
 */
#ifndef AP_CMD_ADMIN_H
#define AP_CMD_ADMIN_H

/* argv[0] is the verb ("create"), the rest its flags. Returns the process exit code: 0 done,
 * 1 the store refused (message on stderr: email taken, cannot open the data dir), 2 usage. */
int ap_cmd_admin(int argc, char **argv);

#endif
