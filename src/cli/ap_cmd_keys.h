/*
 * ap_cmd_keys: token signing keys, offline (like `admin create`):
 *   adplatform keys rotate --data-dir DIR [--json]   a new signing key in the store
 *   adplatform keys list   --data-dir DIR            ids and dates (never the key bytes)
 * Works beside a running daemon (SQLite locking); the daemon publishes the new ring within
 * about a second (ap_token_ring). Before the first rotation of an old data dir, keys/token.key
 * is imported so tokens already handed out stay valid. Exit 0, 1 on failure, 2 on bad usage.
 */
#ifndef AP_CMD_KEYS_H
#define AP_CMD_KEYS_H

int ap_cmd_keys(int argc, char **argv);

#endif
