/*
 * ap_store_fault: fault injection for the store's tests (SQLite's testing philosophy: every
 * write path must survive an allocation failure or an I/O error at any point, and leave the
 * database as it was).
 *
 * ap_store_fault_install() wraps, process-wide, SQLite's allocator (SQLITE_CONFIG_MALLOC),
 * jansson's allocator (json_set_alloc_funcs), the store's own allocations, and registers a VFS
 * shim as SQLite's default VFS that counts write-type calls (xWrite, xTruncate, xSync) on every
 * file (database, WAL, journal). Once armed, the n-th counted call (0-based) fails: NULL from
 * the allocator, SQLITE_IOERR_WRITE / _TRUNCATE / _FSYNC from the VFS.
 *
 * The loop in a test: for n = 0, 1, 2, ...: arm(n); run the operation; disarm; if hits() == 0
 * the operation completed without reaching the n-th call, so every failure point was covered;
 * else check that the call failed cleanly (AP_ENOMEM / AP_EIO) and the store is unchanged, or
 * succeeded (SQLite retries some failures) and the store has exactly the new state.
 *
 * Test-only: it is compiled into the library but does nothing unless installed, and must be
 * installed before the process opens any SQLite connection. Counters are atomic, but arming is
 * meant for single-threaded tests.
 */
#ifndef AP_STORE_FAULT_H
#define AP_STORE_FAULT_H

#include <stdbool.h>

enum ap_store_fault_kind { AP_STORE_FAULT_ALLOC = 0, AP_STORE_FAULT_IO, AP_STORE_FAULT_KINDS };

/* Installs the hooks (idempotent). AP_OK, or AP_EIO if SQLite refuses (already in use). */
int ap_store_fault_install(void);

/* Arms one kind: the n-th (0-based) counted call from now fails, and with persistent every
 * later one too. Disarms the other kind. */
void ap_store_fault_arm(enum ap_store_fault_kind kind, long n, bool persistent);

/* Stops injecting (counters keep their values for ap_store_fault_hits). */
void ap_store_fault_disarm(void);

/* Faults injected of this kind since it was last armed. */
long ap_store_fault_hits(enum ap_store_fault_kind kind);

#endif
