/*
 * ap_evlog: the durable event log (contract and on-disk format in ap_evlog.h).
 *
 * Rings: one single-producer single-consumer ring of records per data-plane worker. The owner
 * publishes `head` (release); the writer copies records out, frames them into its buffer and
 * releases `tail`. Sequence numbers are head values: the k-th record appended to a ring has
 * sequence k (from 1, per process run).
 *
 * Writer: drains every ring (round robin) into one buffer, write(2)s it to the current segment,
 * and fdatasyncs when the rings are drained, `sync_records` records are pending, or the oldest
 * pending one has waited `sync_interval_ms` when that is set (group commit). After the sync it
 * publishes, per ring, the sequence up to which records are durable and writes 1 to the ring's
 * eventfd, and publishes the log's durable end (readers' limit). With nothing pending it sleeps on a futex; the first append after that
 * wakes it (one syscall per idle->busy transition, none while busy: then it polls every
 * POLL_US at most while a sync is not due yet).
 *
 * Rolling: once a segment passes segment_bytes, it is fdatasync'd before the next segment is
 * created (and the directory fsync'd), so only the last segment can ever have a torn tail.
 */
#include "ap_evlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"
#include "../core/ap_time.h"

#define FRAME AP_EVLOG_FRAME_BYTES
#define BUF_FRAMES 8192         /* writer buffer: ~1.1 MB */
#define POLL_US 200             /* writer poll while records wait for their sync */
#define IDLE_WAIT_MS 100        /* writer sleep when idle (a wake-up ends it sooner) */
#define MAX_RING (1u << 24)     /* records per ring at most */
#define READ_BUF (256 * 1024)   /* reader buffer */
#define MAX_SEGMENTS 1000000    /* segment files considered when scanning a directory */
#define SEG_NAME_LEN (20 + 4)   /* "%020" PRIu64 ".seg" */

const uint64_t ap_evlog_sync_bounds_us[AP_EVLOG_SYNC_BUCKETS - 1] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000};

struct ap_evlog_ring {
    /* producer (owner worker) */
    _Alignas(64) _Atomic uint64_t head;
    uint64_t tail_cache;
    _Atomic uint64_t full[AP_EV_TYPE_MAX]; /* written by the owner only */
    /* consumer (writer) */
    _Alignas(64) _Atomic uint64_t tail;
    uint64_t written; /* writer only: records handed to write(2) */
    /* published by the writer, read by the owner */
    _Alignas(64) _Atomic int64_t durable;
    int efd;
    uint32_t mask;
    struct ap_event *slots;
    struct ap_evlog *log;
};

struct ap_evlog {
    char dir[PATH_MAX];
    int dirfd;
    struct ap_evlog_ring *rings;
    int nrings;
    uint32_t ring_records;
    uint64_t segment_bytes;
    uint64_t sync_ns;
    uint32_t sync_records;

    /* writer thread */
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    _Atomic uint32_t wake_word;
    _Atomic bool writer_idle;
    int seg_fd;
    uint64_t seg_base, seg_size;
    uint8_t *buf;

    _Atomic uint64_t end; /* durable end position */
    _Atomic bool failed;

    /* stats (writer writes, anyone reads) */
    _Atomic uint64_t records, bytes, syncs;
    _Atomic uint64_t sync_us_last, sync_us_max, sync_us_sum;
    _Atomic uint64_t hist[AP_EVLOG_SYNC_BUCKETS];
    uint64_t torn_bytes_cut;
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static void seg_path(char *out, size_t cap, const char *dir, uint64_t base)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".seg", dir, base);
}

static bool parse_seg_name(const char *name, uint64_t *base)
{
    if (strlen(name) != SEG_NAME_LEN || strcmp(name + 20, ".seg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *base = v;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment bases in dir, sorted. *out is malloc'd (NULL when none). */
static int list_segments(const char *dir, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ap_error_from_errno(errno);
    size_t cap = 0;
    int rc = AP_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t base;
        if (!parse_seg_name(e->d_name, &base))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            if (nc > MAX_SEGMENTS) {
                rc = AP_ELIMIT;
                break;
            }
            uint64_t *p = realloc(*out, nc * sizeof(*p));
            if (!p) {
                rc = AP_ENOMEM;
                break;
            }
            *out = p;
            cap = nc;
        }
        (*out)[(*n)++] = base;
    }
    closedir(d);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(*out, *n, sizeof(**out), cmp_u64);
    return AP_OK;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A whole, valid frame at p? */
static bool frame_ok(const uint8_t *p)
{
    return get_le32(p) == sizeof(struct ap_event) &&
           get_le32(p + 4) == ap_crc32c(0, p + 8, sizeof(struct ap_event));
}

static void frame_put(uint8_t *p, const struct ap_event *ev)
{
    memcpy(p + 8, ev, sizeof(*ev));
    put_le32(p, sizeof(struct ap_event));
    put_le32(p + 4, ap_crc32c(0, p + 8, sizeof(struct ap_event)));
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s", path) >= sizeof(tmp))
        return AP_ELIMIT;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return ap_error_from_errno(errno);
        *p = '/';
    }
    if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
        return ap_error_from_errno(errno);
    return AP_OK;
}

/* fsync the directory holding path (so a new entry in it survives a crash). */
static void fsync_parent(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash)
        snprintf(tmp, sizeof(tmp), ".");
    else if (slash == tmp)
        tmp[1] = '\0';
    else
        *slash = '\0';
    int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return ap_error_from_errno(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return AP_OK;
}

/* ---- recovery --------------------------------------------------------------------------------- */

/* Length of the longest prefix of whole good frames of the open file fd (size bytes). */
static int scan_good(int fd, uint64_t size, uint64_t *good)
{
    uint8_t *buf = malloc(READ_BUF);
    if (!buf)
        return AP_ENOMEM;
    uint64_t pos = 0;
    int rc = AP_OK;
    while (pos + FRAME <= size) {
        size_t want = size - pos > READ_BUF ? READ_BUF : (size_t)(size - pos);
        want -= want % FRAME;
        ssize_t n = pread(fd, buf, want, (off_t)pos);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ap_error_from_errno(errno);
            break;
        }
        if ((size_t)n < FRAME)
            break;
        size_t off = 0;
        while (off + FRAME <= (size_t)n && frame_ok(buf + off))
            off += FRAME;
        pos += off;
        if (off + FRAME <= (size_t)n || off == 0)
            break; /* a bad frame inside what was read */
    }
    free(buf);
    *good = pos;
    return rc;
}

static int create_segment(struct ap_evlog *log, uint64_t base)
{
    char path[PATH_MAX + 32];
    seg_path(path, sizeof(path), log->dir, base);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return ap_error_from_errno(errno);
    if (log->dirfd >= 0 && fsync(log->dirfd) != 0) {
        int e = errno;
        close(fd);
        return ap_error_from_errno(e);
    }
    log->seg_fd = fd;
    log->seg_base = base;
    log->seg_size = 0;
    return AP_OK;
}

static int recover(struct ap_evlog *log, char *errbuf, size_t errcap)
{
    uint64_t *bases;
    size_t n;
    int rc = list_segments(log->dir, &bases, &n);
    if (rc) {
        snprintf(errbuf, errcap, "cannot list %s: %s", log->dir, ap_strerror(rc));
        return rc;
    }
    if (n == 0) {
        rc = create_segment(log, 0);
        if (rc)
            snprintf(errbuf, errcap, "cannot create the first segment in %s: %s", log->dir,
                     ap_strerror(rc));
        atomic_store(&log->end, 0);
        return rc;
    }
    /* earlier segments were synced whole before the next was created: check they abut */
    for (size_t i = 0; i + 1 < n; i++) {
        char p[PATH_MAX + 32];
        struct stat st;
        seg_path(p, sizeof(p), log->dir, bases[i]);
        if (stat(p, &st) == 0 && bases[i] + (uint64_t)st.st_size != bases[i + 1])
            ap_log_warn("event log: segment %s holds %lld bytes but the next starts at %" PRIu64,
                        p, (long long)st.st_size, bases[i + 1]);
    }
    uint64_t base = bases[n - 1];
    free(bases);
    char path[PATH_MAX + 32];
    seg_path(path, sizeof(path), log->dir, base);
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        rc = ap_error_from_errno(errno);
        snprintf(errbuf, errcap, "cannot open %s: %s", path, strerror(errno));
        return rc;
    }
    struct stat st;
    uint64_t good = 0;
    if (fstat(fd, &st) != 0 || (rc = scan_good(fd, (uint64_t)st.st_size, &good)) != AP_OK) {
        rc = rc ? rc : AP_EIO;
        snprintf(errbuf, errcap, "cannot read %s: %s", path, ap_strerror(rc));
        close(fd);
        return rc;
    }
    if (good < (uint64_t)st.st_size) {
        log->torn_bytes_cut = (uint64_t)st.st_size - good;
        ap_log_warn("event log: %s: torn or corrupt tail, cutting %" PRIu64
                    " bytes after the last good record at %" PRIu64,
                    path, log->torn_bytes_cut, good);
        if (ftruncate(fd, (off_t)good) != 0 || fdatasync(fd) != 0) {
            rc = ap_error_from_errno(errno);
            snprintf(errbuf, errcap, "cannot cut %s: %s", path, strerror(errno));
            close(fd);
            return rc;
        }
    }
    log->seg_fd = fd;
    log->seg_base = base;
    log->seg_size = good;
    atomic_store(&log->end, base + good);
    return AP_OK;
}

/* ---- writer ----------------------------------------------------------------------------------- */

static void fail(struct ap_evlog *log, const char *what, int err)
{
    if (!atomic_exchange(&log->failed, true))
        ap_log_error("event log: %s failed (%s): no event is acknowledged any more", what,
                     strerror(err));
}

static int roll(struct ap_evlog *log)
{
    if (fdatasync(log->seg_fd) != 0) {
        fail(log, "fdatasync before rolling", errno);
        return AP_EIO;
    }
    close(log->seg_fd);
    log->seg_fd = -1;
    int rc = create_segment(log, log->seg_base + log->seg_size);
    if (rc)
        fail(log, "creating a segment", errno ? errno : EIO);
    return rc;
}

/* Writes nframes frames from the buffer, rolling segments as they fill. */
static int write_frames(struct ap_evlog *log, const uint8_t *p, size_t nframes)
{
    while (nframes) {
        if (log->seg_size >= log->segment_bytes) {
            int rc = roll(log);
            if (rc)
                return rc;
        }
        uint64_t room = log->segment_bytes - log->seg_size;
        size_t k = (size_t)((room + FRAME - 1) / FRAME);
        if (k > nframes)
            k = nframes;
        int rc = write_all(log->seg_fd, p, k * FRAME);
        if (rc) {
            fail(log, "write", errno ? errno : EIO);
            return rc;
        }
        log->seg_size += k * FRAME;
        p += k * FRAME;
        nframes -= k;
        atomic_fetch_add_explicit(&log->bytes, k * FRAME, memory_order_relaxed);
        atomic_fetch_add_explicit(&log->records, k, memory_order_relaxed);
    }
    return AP_OK;
}

/* Moves what the rings hold into the buffer and the file. Returns records written. */
static size_t drain(struct ap_evlog *log, int *start)
{
    size_t total = 0;
    uint8_t *p = log->buf;
    for (int k = 0; k < log->nrings && total < BUF_FRAMES; k++) {
        struct ap_evlog_ring *r = &log->rings[(*start + k) % log->nrings];
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
        uint64_t n = h - t;
        if (n > BUF_FRAMES - total)
            n = BUF_FRAMES - total;
        for (uint64_t j = 0; j < n; j++) {
            frame_put(p, &r->slots[(t + j) & r->mask]);
            p += FRAME;
        }
        atomic_store_explicit(&r->tail, t + n, memory_order_release);
        r->written = t + n;
        total += (size_t)n;
    }
    *start = log->nrings ? (*start + 1) % log->nrings : 0;
    if (total && write_frames(log, log->buf, total) != AP_OK)
        return 0;
    return total;
}

static void sync_publish(struct ap_evlog *log)
{
    uint64_t t0 = ap_time_mono_ns();
    if (fdatasync(log->seg_fd) != 0) {
        fail(log, "fdatasync", errno);
        return;
    }
    uint64_t us = (ap_time_mono_ns() - t0) / 1000;
    atomic_store_explicit(&log->sync_us_last, us, memory_order_relaxed);
    if (us > atomic_load_explicit(&log->sync_us_max, memory_order_relaxed))
        atomic_store_explicit(&log->sync_us_max, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&log->sync_us_sum, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&log->syncs, 1, memory_order_relaxed);
    int b = 0;
    while (b < AP_EVLOG_SYNC_BUCKETS - 1 && us > ap_evlog_sync_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&log->hist[b], 1, memory_order_relaxed);
    atomic_store_explicit(&log->end, log->seg_base + log->seg_size, memory_order_release);
    for (int i = 0; i < log->nrings; i++) {
        struct ap_evlog_ring *r = &log->rings[i];
        if ((int64_t)r->written > atomic_load_explicit(&r->durable, memory_order_relaxed)) {
            atomic_store_explicit(&r->durable, (int64_t)r->written, memory_order_release);
            uint64_t one = 1;
            ssize_t w = write(r->efd, &one, sizeof(one));
            (void)w; /* EAGAIN: the counter is already non-zero, the owner will look */
        }
    }
}

static bool rings_empty(struct ap_evlog *log)
{
    for (int i = 0; i < log->nrings; i++) {
        struct ap_evlog_ring *r = &log->rings[i];
        if (atomic_load_explicit(&r->head, memory_order_acquire) !=
            atomic_load_explicit(&r->tail, memory_order_relaxed))
            return false;
    }
    return true;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / AP_NS_PER_SEC), (long)(ns % AP_NS_PER_SEC)};
    nanosleep(&ts, NULL);
}

static void *writer_main(void *arg)
{
    struct ap_evlog *log = arg;
    ap_log_set_thread_name("evlog-writer");
    uint64_t pending = 0, first_ns = 0;
    int start = 0;
    for (;;) {
        bool stopping = atomic_load(&log->stop);
        if (atomic_load_explicit(&log->failed, memory_order_relaxed)) {
            if (stopping)
                break;
            sleep_ns(IDLE_WAIT_MS * AP_NS_PER_MS); /* failed: rings fill, callers answer 503 */
            continue;
        }
        size_t n = drain(log, &start);
        uint64_t now = ap_time_mono_ns();
        if (n) {
            if (!pending)
                first_ns = now;
            pending += n;
        }
        if (pending) {
            /* more waiting in the rings: write it first (one sync for all of it) */
            if (n == BUF_FRAMES && pending < log->sync_records)
                continue;
            /* sync_ns 0 (the default): sync as soon as the rings are drained; what arrives
             * during a sync is the next group, so the sync's own duration does the batching */
            if (pending >= log->sync_records || now - first_ns >= log->sync_ns ||
                (stopping && n == 0)) {
                sync_publish(log);
                pending = 0;
                continue;
            }
            uint64_t left = log->sync_ns - (now - first_ns);
            sleep_ns(left < POLL_US * 1000ull ? left : POLL_US * 1000ull);
            continue;
        }
        if (n)
            continue;
        if (stopping)
            break;
        /* idle: announce it, look once more, then sleep until an append wakes us */
        uint32_t w = atomic_load(&log->wake_word);
        atomic_store(&log->writer_idle, true);
        if (rings_empty(log) && !atomic_load(&log->stop)) {
            struct timespec ts = {0, IDLE_WAIT_MS * 1000000L};
            futex(&log->wake_word, FUTEX_WAIT_PRIVATE, w, &ts);
        }
        atomic_store(&log->writer_idle, false);
    }
    return NULL;
}

static void wake_writer(struct ap_evlog *log)
{
    atomic_fetch_add(&log->wake_word, 1);
    futex(&log->wake_word, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* After publishing head: wake the writer if it sleeps (Dekker with writer_main's idle path). */
static inline void notify(struct ap_evlog *log)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&log->writer_idle, memory_order_relaxed) &&
        atomic_exchange(&log->writer_idle, false))
        wake_writer(log);
}

/* ---- public: open / close / append ------------------------------------------------------------ */

static void free_log(struct ap_evlog *log)
{
    if (!log)
        return;
    for (int i = 0; log->rings && i < log->nrings; i++) {
        if (log->rings[i].efd >= 0)
            close(log->rings[i].efd);
        free(log->rings[i].slots);
    }
    free(log->rings);
    free(log->buf);
    if (log->seg_fd >= 0)
        close(log->seg_fd);
    if (log->dirfd >= 0)
        close(log->dirfd);
    free(log);
}

struct ap_evlog *ap_evlog_open(const struct ap_evlog_options *o, int *err, char *errbuf,
                               size_t errcap)
{
    int rc = AP_EINVAL;
    struct ap_evlog *log = NULL;
    if (errcap)
        errbuf[0] = '\0';
    uint32_t rr = o->ring_records ? o->ring_records : AP_EVLOG_DEFAULT_RING;
    if (!o->dir || !*o->dir || o->rings < 1 || o->rings > 4096 || rr < 2 || rr > MAX_RING ||
        (rr & (rr - 1)) || o->sync_interval_ms < 0) {
        snprintf(errbuf, errcap, "bad event log options (dir, rings 1..4096, ring size a power "
                                 "of two 2..%u)", MAX_RING);
        goto fail;
    }
    log = calloc(1, sizeof(*log));
    if (!log) {
        rc = AP_ENOMEM;
        goto fail;
    }
    log->seg_fd = log->dirfd = -1;
    if ((size_t)snprintf(log->dir, sizeof(log->dir), "%s", o->dir) >= sizeof(log->dir)) {
        rc = AP_ELIMIT;
        snprintf(errbuf, errcap, "event log path too long");
        goto fail;
    }
    log->nrings = o->rings;
    log->ring_records = rr;
    log->segment_bytes = o->segment_bytes ? o->segment_bytes : AP_EVLOG_DEFAULT_SEGMENT_BYTES;
    if (log->segment_bytes < FRAME)
        log->segment_bytes = FRAME;
    log->sync_ns = (uint64_t)(o->sync_interval_ms ? o->sync_interval_ms : AP_EVLOG_DEFAULT_SYNC_MS) *
                   AP_NS_PER_MS;
    log->sync_records = o->sync_records ? o->sync_records : AP_EVLOG_DEFAULT_SYNC_RECORDS;
    log->buf = malloc(BUF_FRAMES * FRAME);
    log->rings = calloc((size_t)o->rings, sizeof(*log->rings));
    if (!log->buf || !log->rings) {
        rc = AP_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < o->rings; i++)
        log->rings[i].efd = -1;
    for (int i = 0; i < o->rings; i++) {
        struct ap_evlog_ring *r = &log->rings[i];
        r->log = log;
        r->mask = rr - 1;
        r->slots = aligned_alloc(64, (size_t)rr * sizeof(struct ap_event));
        r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (!r->slots || r->efd < 0) {
            rc = r->slots ? ap_error_from_errno(errno) : AP_ENOMEM;
            snprintf(errbuf, errcap, "cannot allocate event ring %d", i);
            goto fail;
        }
    }
    if ((rc = mkdir_p(log->dir)) != AP_OK) {
        snprintf(errbuf, errcap, "cannot create %s: %s", log->dir, ap_strerror(rc));
        goto fail;
    }
    fsync_parent(log->dir);
    log->dirfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dirfd < 0) {
        rc = ap_error_from_errno(errno);
        snprintf(errbuf, errcap, "cannot open %s: %s", log->dir, strerror(errno));
        goto fail;
    }
    if ((rc = recover(log, errbuf, errcap)) != AP_OK)
        goto fail;
    if (pthread_create(&log->thread, NULL, writer_main, log) != 0) {
        rc = AP_ESYS;
        snprintf(errbuf, errcap, "cannot start the event log writer");
        goto fail;
    }
    log->started = true;
    return log;
fail:
    free_log(log);
    if (err)
        *err = rc;
    return NULL;
}

void ap_evlog_close(struct ap_evlog *log)
{
    if (!log)
        return;
    if (log->started) {
        atomic_store(&log->stop, true);
        wake_writer(log);
        pthread_join(log->thread, NULL);
    }
    free_log(log);
}

struct ap_evlog_ring *ap_evlog_ring(struct ap_evlog *log, int i)
{
    return log && i >= 0 && i < log->nrings ? &log->rings[i] : NULL;
}

int ap_evlog_rings(const struct ap_evlog *log)
{
    return log ? log->nrings : 0;
}

bool ap_evlog_failed(const struct ap_evlog *log)
{
    return log && atomic_load_explicit(&log->failed, memory_order_relaxed);
}

static void count_full(struct ap_evlog_ring *r, const struct ap_event *ev)
{
    unsigned t = ev->type < AP_EV_TYPE_MAX ? ev->type : 0;
    atomic_store_explicit(&r->full[t],
                          atomic_load_explicit(&r->full[t], memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

int64_t ap_evlog_append(struct ap_evlog_ring *r, const struct ap_event *ev)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h - r->tail_cache > r->mask) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h - r->tail_cache > r->mask) {
            count_full(r, ev);
            return AP_EAGAIN;
        }
    }
    struct ap_event *slot = &r->slots[h & r->mask];
    *slot = *ev;
    slot->version = AP_EVENT_VERSION;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    notify(r->log);
    return (int64_t)(h + 1);
}

int64_t ap_evlog_append_batch(struct ap_evlog_ring *r, const struct ap_event *evs, int n)
{
    if (n < 1 || (uint64_t)n > (uint64_t)r->mask + 1)
        return AP_EINVAL;
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t cap = (uint64_t)r->mask + 1;
    if (h + (uint64_t)n - r->tail_cache > cap) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h + (uint64_t)n - r->tail_cache > cap) {
            for (int i = 0; i < n; i++)
                count_full(r, &evs[i]);
            return AP_EAGAIN;
        }
    }
    for (int i = 0; i < n; i++) {
        struct ap_event *slot = &r->slots[(h + (uint64_t)i) & r->mask];
        *slot = evs[i];
        slot->version = AP_EVENT_VERSION;
    }
    atomic_store_explicit(&r->head, h + (uint64_t)n, memory_order_release);
    notify(r->log);
    return (int64_t)(h + (uint64_t)n);
}

int64_t ap_evlog_durable(const struct ap_evlog_ring *r)
{
    return atomic_load_explicit(&r->durable, memory_order_acquire);
}

int ap_evlog_ring_fd(const struct ap_evlog_ring *r)
{
    return r->efd;
}

uint64_t ap_evlog_end(const struct ap_evlog *log)
{
    return atomic_load_explicit(&log->end, memory_order_acquire);
}

void ap_evlog_stats(const struct ap_evlog *log, struct ap_evlog_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!log)
        return;
    out->records = atomic_load_explicit(&log->records, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&log->bytes, memory_order_relaxed);
    out->syncs = atomic_load_explicit(&log->syncs, memory_order_relaxed);
    out->sync_us_last = atomic_load_explicit(&log->sync_us_last, memory_order_relaxed);
    out->sync_us_max = atomic_load_explicit(&log->sync_us_max, memory_order_relaxed);
    out->sync_us_sum = atomic_load_explicit(&log->sync_us_sum, memory_order_relaxed);
    out->torn_bytes_cut = log->torn_bytes_cut;
    for (int t = 0; t < AP_EV_TYPE_MAX; t++)
        out->full_rejects += ap_evlog_full_rejects(log, t);
}

uint64_t ap_evlog_full_rejects(const struct ap_evlog *log, int type)
{
    uint64_t n = 0;
    if (!log || type < 0 || type >= AP_EV_TYPE_MAX)
        return 0;
    for (int i = 0; i < log->nrings; i++)
        n += atomic_load_explicit(&log->rings[i].full[type], memory_order_relaxed);
    return n;
}

void ap_evlog_sync_histogram(const struct ap_evlog *log, uint64_t out[AP_EVLOG_SYNC_BUCKETS])
{
    for (int b = 0; b < AP_EVLOG_SYNC_BUCKETS; b++)
        out[b] = log ? atomic_load_explicit(&log->hist[b], memory_order_relaxed) : 0;
}

/* ---- reader ----------------------------------------------------------------------------------- */

struct ap_evlog_reader {
    char dir[PATH_MAX];
    int fd;            /* current segment, -1 if none yet */
    uint64_t seg_base; /* its base */
    uint64_t pos;      /* next record's position */
    uint8_t *buf;
    size_t buf_len;
    uint64_t buf_pos; /* position of buf[0] */
};

static int reader_open_seg(struct ap_evlog_reader *rd, uint64_t base)
{
    char path[PATH_MAX + 32];
    seg_path(path, sizeof(path), rd->dir, base);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ap_error_from_errno(errno);
    if (rd->fd >= 0)
        close(rd->fd);
    rd->fd = fd;
    rd->seg_base = base;
    rd->buf_len = 0;
    return AP_OK;
}

struct ap_evlog_reader *ap_evlog_reader_open(const char *dir, uint64_t from, int *err)
{
    int rc = AP_ENOMEM;
    struct ap_evlog_reader *rd = calloc(1, sizeof(*rd));
    uint64_t *bases = NULL;
    size_t n = 0;
    if (!rd)
        goto fail;
    rd->fd = -1;
    rd->pos = from;
    if ((size_t)snprintf(rd->dir, sizeof(rd->dir), "%s", dir) >= sizeof(rd->dir)) {
        rc = AP_ELIMIT;
        goto fail;
    }
    rd->buf = malloc(READ_BUF);
    if (!rd->buf)
        goto fail;
    if ((rc = list_segments(dir, &bases, &n)) != AP_OK)
        goto fail;
    /* the last segment starting at or before `from` */
    size_t i = n;
    while (i > 0 && bases[i - 1] > from)
        i--;
    if (i > 0) {
        if ((rc = reader_open_seg(rd, bases[i - 1])) != AP_OK)
            goto fail;
    } else if (from == 0 && n > 0) {
        /* "the beginning" after retention deleted the first segments: the oldest one left */
        if ((rc = reader_open_seg(rd, bases[0])) != AP_OK)
            goto fail;
        rd->pos = bases[0];
    } else if (n > 0) {
        rc = AP_ENOTFOUND; /* before the first segment: deleted (retention) */
        goto fail;
    }
    free(bases);
    return rd;
fail:
    free(bases);
    ap_evlog_reader_close(rd);
    if (err)
        *err = rc;
    return NULL;
}

int ap_evlog_reader_next(struct ap_evlog_reader *rd, uint64_t limit, struct ap_event *ev,
                         uint64_t *next)
{
    if (rd->pos + FRAME > limit)
        return 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (rd->buf_len && rd->pos >= rd->buf_pos && rd->pos + FRAME <= rd->buf_pos + rd->buf_len) {
            const uint8_t *p = rd->buf + (rd->pos - rd->buf_pos);
            if (!frame_ok(p))
                return AP_ECORRUPT;
            memcpy(ev, p + 8, sizeof(*ev));
            rd->pos += FRAME;
            *next = rd->pos;
            return 1;
        }
        if (rd->fd < 0) {
            /* an empty log when opened: the first segment may exist now */
            if (reader_open_seg(rd, rd->pos) != AP_OK)
                return limit == UINT64_MAX ? 0 : AP_ECORRUPT;
        }
        ssize_t got;
        do
            got = pread(rd->fd, rd->buf, READ_BUF, (off_t)(rd->pos - rd->seg_base));
        while (got < 0 && errno == EINTR);
        if (got < 0)
            return ap_error_from_errno(errno);
        rd->buf_pos = rd->pos;
        rd->buf_len = (size_t)got;
        if ((size_t)got >= FRAME)
            continue;
        if (got == 0 && rd->pos > rd->seg_base) {
            /* the end of this segment: the next one starts here, if it exists */
            if (reader_open_seg(rd, rd->pos) == AP_OK)
                continue;
        }
        /* nothing (or a partial frame) here */
        return limit == UINT64_MAX ? 0 : AP_ECORRUPT;
    }
    return AP_ECORRUPT;
}

int ap_evlog_prune(const char *dir, uint64_t upto, int64_t min_age_s, int *deleted)
{
    *deleted = 0;
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = list_segments(dir, &bases, &n);
    if (rc != AP_OK)
        return rc;
    time_t now = time(NULL);
    /* segment i ends where segment i + 1 begins; the last one (being written) always stays */
    for (size_t i = 0; i + 1 < n && bases[i + 1] <= upto; i++) {
        char path[PATH_MAX + 32];
        seg_path(path, sizeof(path), dir, bases[i]);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if ((int64_t)(now - st.st_mtime) < min_age_s)
            break; /* newer ones are younger still */
        if (unlink(path) != 0) {
            rc = ap_error_from_errno(errno);
            break;
        }
        (*deleted)++;
    }
    free(bases);
    if (*deleted) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    return rc;
}

void ap_evlog_reader_close(struct ap_evlog_reader *rd)
{
    if (!rd)
        return;
    if (rd->fd >= 0)
        close(rd->fd);
    free(rd->buf);
    free(rd);
}
