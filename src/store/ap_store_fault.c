#include "ap_store_fault.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"
#include "ap_store_internal.h"

/* ---- the counters -------------------------------------------------------------------------- */

static atomic_bool g_armed[AP_STORE_FAULT_KINDS];
static atomic_bool g_persistent[AP_STORE_FAULT_KINDS];
static atomic_long g_target[AP_STORE_FAULT_KINDS];
static atomic_long g_count[AP_STORE_FAULT_KINDS];
static atomic_long g_hits[AP_STORE_FAULT_KINDS];

static bool should_fail(enum ap_store_fault_kind kind)
{
    if (!atomic_load(&g_armed[kind]))
        return false;
    long c = atomic_fetch_add(&g_count[kind], 1);
    long n = atomic_load(&g_target[kind]);
    if (c == n || (c > n && atomic_load(&g_persistent[kind]))) {
        atomic_fetch_add(&g_hits[kind], 1);
        return true;
    }
    return false;
}

void ap_store_fault_arm(enum ap_store_fault_kind kind, long n, bool persistent)
{
    ap_store_fault_disarm();
    if ((unsigned)kind >= AP_STORE_FAULT_KINDS || n < 0)
        return;
    atomic_store(&g_count[kind], 0);
    atomic_store(&g_hits[kind], 0);
    atomic_store(&g_target[kind], n);
    atomic_store(&g_persistent[kind], persistent);
    atomic_store(&g_armed[kind], true);
}

void ap_store_fault_disarm(void)
{
    for (int k = 0; k < AP_STORE_FAULT_KINDS; k++)
        atomic_store(&g_armed[k], false);
}

long ap_store_fault_hits(enum ap_store_fault_kind kind)
{
    if ((unsigned)kind >= AP_STORE_FAULT_KINDS)
        return 0;
    return atomic_load(&g_hits[kind]);
}

/* ---- the store's own allocations ------------------------------------------------------------ */

void *ap__store_malloc(size_t n)
{
    return should_fail(AP_STORE_FAULT_ALLOC) ? NULL : malloc(n);
}

void *ap__store_realloc(void *p, size_t n)
{
    return should_fail(AP_STORE_FAULT_ALLOC) ? NULL : realloc(p, n);
}

char *ap__store_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ap__store_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* ---- SQLite and jansson allocators ------------------------------------------------------- */

static sqlite3_mem_methods g_real_mem;

static void *mem_malloc(int n)
{
    return should_fail(AP_STORE_FAULT_ALLOC) ? NULL : g_real_mem.xMalloc(n);
}

static void *mem_realloc(void *p, int n)
{
    return should_fail(AP_STORE_FAULT_ALLOC) ? NULL : g_real_mem.xRealloc(p, n);
}

static void *json_malloc(size_t n)
{
    return should_fail(AP_STORE_FAULT_ALLOC) ? NULL : malloc(n);
}

static void json_free(void *p)
{
    free(p);
}

/* ---- the VFS shim -------------------------------------------------------------------------- */

struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* lives right after this struct (szOsFile covers both) */
};

static sqlite3_vfs *g_real_vfs;
static sqlite3_vfs g_vfs;
static sqlite3_io_methods g_io[4]; /* indexed by the real file's iVersion (1..3) */

#define REAL(f) (((struct fault_file *)(f))->real)

static int f_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (should_fail(AP_STORE_FAULT_IO))
        return SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (should_fail(AP_STORE_FAULT_IO))
        return SQLITE_IOERR_TRUNCATE;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int f_sync(sqlite3_file *f, int flags)
{
    if (should_fail(AP_STORE_FAULT_IO))
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int f_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int f_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int f_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int f_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int f_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int f_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int f_device_chars(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int f_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, out);
}

static int f_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void f_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int f_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, out);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
    (void)vfs;
    struct fault_file *f = (struct fault_file *)file;
    f->real = (sqlite3_file *)(f + 1);
    f->base.pMethods = NULL;
    int rc = g_real_vfs->xOpen(g_real_vfs, name, f->real, flags, out);
    if (f->real->pMethods) {
        int v = f->real->pMethods->iVersion;
        f->base.pMethods = &g_io[v < 1 ? 1 : v > 3 ? 3 : v];
    }
    return rc;
}

static void init_io(void)
{
    for (int v = 1; v <= 3; v++) {
        g_io[v] = (sqlite3_io_methods){
            .iVersion = v,
            .xClose = f_close,
            .xRead = f_read,
            .xWrite = f_write,
            .xTruncate = f_truncate,
            .xSync = f_sync,
            .xFileSize = f_file_size,
            .xLock = f_lock,
            .xUnlock = f_unlock,
            .xCheckReservedLock = f_check_reserved,
            .xFileControl = f_file_control,
            .xSectorSize = f_sector_size,
            .xDeviceCharacteristics = f_device_chars,
        };
        if (v >= 2) {
            g_io[v].xShmMap = f_shm_map;
            g_io[v].xShmLock = f_shm_lock;
            g_io[v].xShmBarrier = f_shm_barrier;
            g_io[v].xShmUnmap = f_shm_unmap;
        }
        if (v >= 3) {
            g_io[v].xFetch = f_fetch;
            g_io[v].xUnfetch = f_unfetch;
        }
    }
}

int ap_store_fault_install(void)
{
    static bool installed;
    if (installed)
        return AP_OK;
    /* The allocator can only be swapped while SQLite is shut down (no connection open). */
    if (sqlite3_shutdown() != SQLITE_OK || sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_real_mem))
        return AP_EIO;
    sqlite3_mem_methods mine = g_real_mem;
    mine.xMalloc = mem_malloc;
    mine.xRealloc = mem_realloc;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &mine) != SQLITE_OK ||
        sqlite3_initialize() != SQLITE_OK)
        return AP_EIO;
    json_set_alloc_funcs(json_malloc, json_free);

    g_real_vfs = sqlite3_vfs_find(NULL);
    if (!g_real_vfs)
        return AP_EIO;
    init_io();
    /* Copy the real VFS (its other methods read only pAppData/mxPathname, which we copy) and
     * replace xOpen; each file carries the real file behind the shim. */
    g_vfs = *g_real_vfs;
    g_vfs.pNext = NULL;
    g_vfs.zName = "ap_fault";
    g_vfs.szOsFile = (int)sizeof(struct fault_file) + g_real_vfs->szOsFile;
    g_vfs.xOpen = f_open;
    if (sqlite3_vfs_register(&g_vfs, 1) != SQLITE_OK)
        return AP_EIO;
    installed = true;
    return AP_OK;
}
