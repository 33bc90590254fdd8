/* The event log: CRC32C vectors (hardware and table agree), framing round trip, durability
 * signalling through the ring's eventfd, segment rolling and reading across segments, crash
 * recovery (random truncation and random corruption of the last segment keep every whole
 * record before the damage), ring-full rejects, and several producer threads with a
 * concurrent reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "events/ap_evlog.h"

#define FRAME ((uint64_t)AP_EVLOG_FRAME_BYTES)

static char tmpdir[256];
static char evdir[300];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_ap_evlog.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(evdir, sizeof(evdir), "%s/events", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(evdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char p[600];
            snprintf(p, sizeof(p), "%s/%s", evdir, e->d_name);
            if (e->d_name[0] != '.')
                unlink(p);
        }
        closedir(d);
        rmdir(evdir);
    }
    rmdir(tmpdir);
    return 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void make_event(struct ap_event *ev, int ring, uint64_t k)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = AP_EV_IMP;
    ev->count = 1;
    ev->flags = (uint8_t)(k & 0x7);
    memcpy(ev->country, "DE", 2);
    ev->device_type = 2;
    ev->imp_id[0] = (uint8_t)ring;
    memcpy(ev->imp_id + 8, &k, sizeof(k));
    ev->time_ns = 1700000000000000000ll + (int64_t)k;
    ev->campaign_id = (int64_t)(k % 97) + 1;
    ev->ad_id = (int64_t)k * 3 + 1;
    ev->placement_id = 5;
    ev->publisher_id = 6;
    ev->price_micros = 1234567;
    ev->issued_at = 1700000000;
}

static struct ap_evlog *open_log(int rings, uint32_t ring_records, uint64_t segment_bytes)
{
    struct ap_evlog_options o = {.dir = evdir,
                                 .rings = rings,
                                 .ring_records = ring_records,
                                 .segment_bytes = segment_bytes,
                                 .sync_interval_ms = 1,
                                 .sync_records = 256};
    int err = 0;
    char msg[256];
    struct ap_evlog *log = ap_evlog_open(&o, &err, msg, sizeof(msg));
    if (!log)
        fail_msg("open: %s (%s)", msg, ap_strerror(err));
    return log;
}

/* Waits (eventfd) until ring r is durable up to seq. */
static void wait_durable(struct ap_evlog_ring *r, int64_t seq)
{
    for (int i = 0; i < 1000 && ap_evlog_durable(r) < seq; i++) {
        struct pollfd p = {ap_evlog_ring_fd(r), POLLIN, 0};
        poll(&p, 1, 10);
        uint64_t v;
        if (p.revents & POLLIN)
            assert_int_equal(read(ap_evlog_ring_fd(r), &v, sizeof(v)), sizeof(v));
    }
    assert_true(ap_evlog_durable(r) >= seq);
}

/* Reads every record of the (closed) log; returns the count, fills evs (cap) */
static size_t read_all(struct ap_event *evs, size_t cap, int *last_rc)
{
    int err = 0;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(evdir, 0, &err);
    assert_non_null(rd);
    size_t n = 0;
    uint64_t next = 0, expect = 0;
    struct ap_event ev;
    int rc;
    while ((rc = ap_evlog_reader_next(rd, UINT64_MAX, &ev, &next)) == 1) {
        expect += FRAME;
        assert_int_equal(next, expect);
        if (n < cap)
            evs[n] = ev;
        n++;
    }
    *last_rc = rc;
    ap_evlog_reader_close(rd);
    return n;
}

static size_t count_segments(void)
{
    DIR *d = opendir(evdir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".seg") != NULL;
    closedir(d);
    return n;
}

/* Path and size of the newest segment. */
static uint64_t last_segment(char *path, size_t cap)
{
    DIR *d = opendir(evdir);
    assert_non_null(d);
    char best[256] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", e->d_name);
    closedir(d);
    snprintf(path, cap, "%s/%s", evdir, best);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* ---- CRC ---- */

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(ap_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(ap__crc32c_table(0, "123456789", 9), 0xE3069283u);
    uint8_t z[32], f[32];
    memset(z, 0, sizeof(z));
    memset(f, 0xff, sizeof(f));
    assert_int_equal(ap_crc32c(0, z, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
    assert_int_equal(ap_crc32c(0, f, 32), 0x62A8AB43u);
    uint8_t inc[32];
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    assert_int_equal(ap_crc32c(0, inc, 32), 0x46DD794Eu);
    assert_int_equal(ap_crc32c(0, NULL, 0), 0u);
    /* continuation and both implementations over random lengths and alignments */
    uint8_t buf[1100];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rnd();
    for (int i = 0; i < 2000; i++) {
        size_t off = rnd() % 16, n = rnd() % 1000, cut = n ? rnd() % n : 0;
        uint32_t whole = ap_crc32c(0, buf + off, n);
        assert_int_equal(whole, ap__crc32c_table(0, buf + off, n));
        assert_int_equal(whole, ap_crc32c(ap_crc32c(0, buf + off, cut), buf + off + cut, n - cut));
    }
    print_message("crc32c: %s\n", ap__crc32c_hw_available() ? "sse4.2" : "table");
}

/* ---- round trip, durability ---- */

static void test_round_trip(void **state)
{
    (void)state;
    struct ap_evlog *log = open_log(2, 1024, 0);
    struct ap_evlog_ring *r0 = ap_evlog_ring(log, 0), *r1 = ap_evlog_ring(log, 1);
    assert_null(ap_evlog_ring(log, 2));
    assert_int_equal(ap_evlog_rings(log), 2);
    assert_int_equal(ap_evlog_durable(r0), 0);
    int64_t s0 = 0, s1 = 0;
    for (uint64_t k = 0; k < 500; k++) {
        struct ap_event ev;
        make_event(&ev, (int)(k & 1), k);
        struct ap_evlog_ring *r = k & 1 ? r1 : r0;
        int64_t s = ap_evlog_append(r, &ev);
        assert_true(s > 0);
        if (k & 1)
            assert_int_equal(s, ++s1);
        else
            assert_int_equal(s, ++s0);
        if (k % 100 == 0)
            wait_durable(r, s); /* several sync batches */
    }
    wait_durable(r0, s0);
    wait_durable(r1, s1);
    assert_int_equal(ap_evlog_end(log), 500 * FRAME);
    /* read while open, limited by the durable end */
    int err = 0;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(evdir, 0, &err);
    assert_non_null(rd);
    struct ap_event ev;
    uint64_t next = 0;
    int n = 0;
    while (ap_evlog_reader_next(rd, ap_evlog_end(log), &ev, &next) == 1)
        n++;
    assert_int_equal(n, 500);
    assert_int_equal(ap_evlog_reader_next(rd, ap_evlog_end(log), &ev, &next), 0);
    ap_evlog_reader_close(rd);
    struct ap_evlog_stats st;
    ap_evlog_stats(log, &st);
    assert_int_equal(st.records, 500);
    assert_int_equal(st.bytes, 500 * FRAME);
    assert_true(st.syncs >= 5);
    uint64_t hist[AP_EVLOG_SYNC_BUCKETS], sum = 0;
    ap_evlog_sync_histogram(log, hist);
    for (int b = 0; b < AP_EVLOG_SYNC_BUCKETS; b++)
        sum += hist[b];
    assert_int_equal(sum, st.syncs);
    ap_evlog_close(log);

    /* closed: every record, as appended (version set), per ring in order */
    static struct ap_event got[600];
    int rc;
    size_t total = read_all(got, 600, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(total, 500);
    uint64_t want[2] = {0, 1};
    for (size_t i = 0; i < total; i++) {
        int ring = got[i].imp_id[0];
        uint64_t k;
        memcpy(&k, got[i].imp_id + 8, 8);
        assert_int_equal(k, want[ring]);
        want[ring] += 2;
        struct ap_event e;
        make_event(&e, ring, k);
        e.version = AP_EVENT_VERSION;
        assert_memory_equal(&e, &got[i], sizeof(e));
    }
    /* reopening appends after what is there; a reader from a middle position */
    log = open_log(1, 16, 0);
    assert_int_equal(ap_evlog_end(log), 500 * FRAME);
    struct ap_event e;
    make_event(&e, 0, 999);
    int64_t s = ap_evlog_append(ap_evlog_ring(log, 0), &e);
    assert_int_equal(s, 1);
    wait_durable(ap_evlog_ring(log, 0), s);
    assert_int_equal(ap_evlog_end(log), 501 * FRAME);
    rd = ap_evlog_reader_open(evdir, 500 * FRAME, &err);
    assert_non_null(rd);
    assert_int_equal(ap_evlog_reader_next(rd, ap_evlog_end(log), &ev, &next), 1);
    assert_int_equal(next, 501 * FRAME);
    assert_int_equal(ev.ad_id, 999 * 3 + 1);
    ap_evlog_reader_close(rd);
    ap_evlog_close(log);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct ap_evlog_options o = {.dir = evdir, .rings = 1, .ring_records = 1000};
    int err = 0;
    char msg[256];
    assert_null(ap_evlog_open(&o, &err, msg, sizeof(msg))); /* not a power of two */
    assert_int_equal(err, AP_EINVAL);
    o.ring_records = 0;
    o.rings = 0;
    assert_null(ap_evlog_open(&o, &err, msg, sizeof(msg)));
    struct ap_evlog *log = open_log(1, 4, 0);
    struct ap_event evs[5];
    memset(evs, 0, sizeof(evs));
    assert_int_equal(ap_evlog_append_batch(ap_evlog_ring(log, 0), evs, 5), AP_EINVAL);
    assert_int_equal(ap_evlog_append_batch(ap_evlog_ring(log, 0), evs, 0), AP_EINVAL);
    ap_evlog_close(log);
}

/* ---- rolling ---- */

static void test_rolling(void **state)
{
    (void)state;
    struct ap_evlog *log = open_log(1, 64, 10 * FRAME);
    struct ap_evlog_ring *r = ap_evlog_ring(log, 0);
    int64_t s = 0;
    for (uint64_t k = 0; k < 105; k++) {
        struct ap_event ev;
        make_event(&ev, 0, k);
        int64_t got;
        while ((got = ap_evlog_append(r, &ev)) == AP_EAGAIN)
            sched_yield();
        s = got;
    }
    wait_durable(r, s);
    ap_evlog_close(log);
    assert_int_equal(count_segments(), 11); /* 10 full + 5 records */
    char path[600];
    assert_int_equal(last_segment(path, sizeof(path)), 5 * FRAME);
    assert_non_null(strstr(path, "00000000000000013600.seg")); /* base = 100 frames */
    static struct ap_event got[200];
    int rc;
    assert_int_equal(read_all(got, 200, &rc), 105);
    assert_int_equal(rc, 0);
    for (uint64_t k = 0; k < 105; k++) {
        uint64_t kk;
        memcpy(&kk, got[k].imp_id + 8, 8);
        assert_int_equal(kk, k);
    }
    /* a reader starting in the middle of a middle segment */
    int err;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(evdir, 37 * FRAME, &err);
    assert_non_null(rd);
    struct ap_event ev;
    uint64_t next;
    int n = 0;
    while (ap_evlog_reader_next(rd, 105 * FRAME, &ev, &next) == 1) {
        uint64_t kk;
        memcpy(&kk, ev.imp_id + 8, 8);
        assert_int_equal(kk, 37 + (uint64_t)n);
        n++;
    }
    assert_int_equal(n, 105 - 37);
    ap_evlog_reader_close(rd);
}

/* ---- retention ---- */

/* Reads from `from` to the end: the count, and the first record's key in *first. */
static int read_from(uint64_t from, uint64_t *first, int *err)
{
    struct ap_evlog_reader *rd = ap_evlog_reader_open(evdir, from, err);
    if (!rd)
        return -1;
    struct ap_event ev;
    uint64_t next;
    int n = 0;
    while (ap_evlog_reader_next(rd, UINT64_MAX, &ev, &next) == 1) {
        if (n++ == 0)
            memcpy(first, ev.imp_id + 8, 8);
    }
    ap_evlog_reader_close(rd);
    return n;
}

static void write_log(int n, uint64_t segment_bytes);

static void test_retention(void **state)
{
    (void)state;
    write_log(105, 10 * FRAME); /* 11 segments: bases 0, 10, ..., 100 frames */
    int deleted = -1, err = 0;
    uint64_t first = 0;
    /* nothing is old enough yet */
    assert_int_equal(ap_evlog_prune(evdir, 105 * FRAME, 3600, &deleted), AP_OK);
    assert_int_equal(deleted, 0);
    assert_int_equal(count_segments(), 11);
    /* only whole segments that end at or before the checkpoint: [0,10) [10,20) [20,30) */
    assert_int_equal(ap_evlog_prune(evdir, 37 * FRAME, 0, &deleted), AP_OK);
    assert_int_equal(deleted, 3);
    assert_int_equal(count_segments(), 8);
    assert_int_equal(read_from(37 * FRAME, &first, &err), 105 - 37); /* the checkpoint reads on */
    assert_int_equal(first, 37);
    assert_int_equal(read_from(0, &first, &err), 105 - 30); /* "the beginning": the oldest kept */
    assert_int_equal(first, 30);
    assert_int_equal(read_from(5 * FRAME, &first, &err), -1); /* deleted: said, not skipped */
    assert_int_equal(err, AP_ENOTFOUND);
    /* never the last segment, which the writer appends to */
    assert_int_equal(ap_evlog_prune(evdir, UINT64_MAX, 0, &deleted), AP_OK);
    assert_int_equal(deleted, 7);
    assert_int_equal(count_segments(), 1);
    assert_int_equal(read_from(0, &first, &err), 5);
    assert_int_equal(first, 100);
    /* and the log opens and appends after it */
    struct ap_evlog *log = open_log(1, 64, 10 * FRAME);
    struct ap_evlog_ring *r = ap_evlog_ring(log, 0);
    struct ap_event ev;
    make_event(&ev, 0, 105);
    int64_t s;
    while ((s = ap_evlog_append(r, &ev)) == AP_EAGAIN)
        sched_yield();
    wait_durable(r, s);
    ap_evlog_close(log);
    assert_int_equal(read_from(100 * FRAME, &first, &err), 6);
}

/* ---- recovery ---- */

static void write_log(int n, uint64_t segment_bytes)
{
    teardown(NULL);
    mkdir(tmpdir, 0700);
    struct ap_evlog *log = open_log(1, 256, segment_bytes);
    struct ap_evlog_ring *r = ap_evlog_ring(log, 0);
    int64_t s = 0;
    for (int k = 0; k < n; k++) {
        struct ap_event ev;
        make_event(&ev, 0, (uint64_t)k);
        while ((s = ap_evlog_append(r, &ev)) == AP_EAGAIN)
            sched_yield();
    }
    wait_durable(r, s);
    ap_evlog_close(log);
}

/* After damage at byte `at` of the last segment (base `base`): reopen, check what is kept,
 * append one more and read everything back. */
static void check_recovered(uint64_t base, uint64_t at, uint64_t seg_size)
{
    uint64_t keep = base / FRAME + at / FRAME; /* whole records before the damage */
    struct ap_evlog *log = open_log(1, 16, 40 * FRAME);
    assert_int_equal(ap_evlog_end(log), keep * FRAME);
    struct ap_evlog_stats st;
    ap_evlog_stats(log, &st);
    assert_int_equal(st.torn_bytes_cut, seg_size - (at / FRAME) * FRAME);
    struct ap_event ev;
    make_event(&ev, 0, 777777);
    int64_t s = ap_evlog_append(ap_evlog_ring(log, 0), &ev);
    wait_durable(ap_evlog_ring(log, 0), s);
    ap_evlog_close(log);
    static struct ap_event got[400];
    int rc;
    size_t n = read_all(got, 400, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(n, keep + 1);
    for (uint64_t k = 0; k < keep; k++) {
        struct ap_event e;
        make_event(&e, 0, k);
        e.version = AP_EVENT_VERSION;
        assert_memory_equal(&e, &got[k], sizeof(e));
    }
    uint64_t kk;
    memcpy(&kk, got[keep].imp_id + 8, 8);
    assert_int_equal(kk, 777777);
}

static void test_recovery_truncate(void **state)
{
    (void)state;
    for (int iter = 0; iter < 25; iter++) {
        write_log(250, 40 * FRAME); /* 6 full segments + 10 records */
        char path[600];
        uint64_t size = last_segment(path, sizeof(path));
        assert_int_equal(size, 10 * FRAME);
        uint64_t base = 240 * FRAME;
        uint64_t at = iter == 0 ? 0 : iter == 1 ? size - 1 : rnd() % size;
        assert_int_equal(truncate(path, (off_t)at), 0);
        check_recovered(base, at, at);
    }
}

static void test_recovery_corrupt(void **state)
{
    (void)state;
    for (int iter = 0; iter < 25; iter++) {
        write_log(130, 1000 * FRAME); /* one segment */
        char path[600];
        uint64_t size = last_segment(path, sizeof(path));
        uint64_t at = iter == 0 ? 0 : iter == 1 ? size - 1 : rnd() % size;
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, (off_t)at), 1);
        b ^= (uint8_t)(1 + rnd() % 255);
        assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
        if (iter % 3 == 0) { /* and a torn tail after it */
            uint64_t cut = at + 1 + rnd() % (size - at);
            assert_int_equal(ftruncate(fd, (off_t)cut), 0);
            size = cut;
        }
        close(fd);
        check_recovered(0, at, size);
    }
}

/* ---- a full ring ---- */

static void test_ring_full(void **state)
{
    (void)state;
    struct ap_evlog *log = open_log(1, 2, 0);
    struct ap_evlog_ring *r = ap_evlog_ring(log, 0);
    uint64_t ok = 0, full = 0;
    int64_t last = 0;
    for (uint64_t k = 0; k < 20000; k++) {
        struct ap_event ev;
        make_event(&ev, 0, ok);
        int64_t s = ap_evlog_append(r, &ev);
        if (s == AP_EAGAIN) {
            full++;
            continue;
        }
        assert_int_equal(s, (int64_t)++ok);
        last = s;
    }
    assert_true(full > 0);
    struct ap_event batch[2];
    make_event(&batch[0], 0, ok);
    make_event(&batch[1], 0, ok + 1);
    int64_t bs;
    while ((bs = ap_evlog_append_batch(r, batch, 2)) == AP_EAGAIN)
        full += 2;
    ok += 2;
    assert_int_equal(bs, (int64_t)ok);
    last = bs;
    wait_durable(r, last);
    struct ap_evlog_stats st;
    ap_evlog_stats(log, &st);
    assert_int_equal(st.full_rejects, full);
    assert_int_equal(ap_evlog_full_rejects(log, AP_EV_IMP), full);
    assert_int_equal(ap_evlog_full_rejects(log, AP_EV_CLICK), 0);
    ap_evlog_close(log);
    static struct ap_event got[20002];
    int rc;
    assert_int_equal(read_all(got, 20002, &rc), ok);
    for (uint64_t k = 0; k < ok; k++) {
        uint64_t kk;
        memcpy(&kk, got[k].imp_id + 8, 8);
        assert_int_equal(kk, k);
    }
}

/* ---- concurrency ---- */

#define THREADS 4
#define PER_THREAD 50000

struct prod {
    struct ap_evlog_ring *r;
    int id;
    uint64_t retries;
};

static void *producer(void *arg)
{
    struct prod *p = arg;
    int64_t last = 0;
    for (uint64_t k = 0; k < PER_THREAD;) {
        struct ap_event evs[4];
        int n = k % 3 == 0 ? 4 : 1;
        if (k + (uint64_t)n > PER_THREAD)
            n = 1;
        for (int i = 0; i < n; i++)
            make_event(&evs[i], p->id, k + (uint64_t)i);
        int64_t s = n == 1 ? ap_evlog_append(p->r, evs) : ap_evlog_append_batch(p->r, evs, n);
        if (s == AP_EAGAIN) {
            p->retries++;
            sched_yield();
            continue;
        }
        if (s != last + n)
            return (void *)1;
        last = s;
        k += (uint64_t)n;
    }
    for (int i = 0; i < 5000 && ap_evlog_durable(p->r) < last; i++) {
        struct pollfd pf = {ap_evlog_ring_fd(p->r), POLLIN, 0};
        poll(&pf, 1, 10);
        uint64_t v;
        if (pf.revents & POLLIN && read(ap_evlog_ring_fd(p->r), &v, sizeof(v)) < 0)
            return (void *)2;
    }
    return ap_evlog_durable(p->r) == last ? NULL : (void *)3;
}

struct rdr {
    struct ap_evlog *log;
    uint64_t seen[THREADS];
    int bad;
};

static void *reader(void *arg)
{
    struct rdr *x = arg;
    int err;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(evdir, 0, &err);
    if (!rd) {
        x->bad = 1;
        return NULL;
    }
    uint64_t total = 0, next;
    struct ap_event ev;
    for (int spins = 0; total < THREADS * PER_THREAD && spins < 200000;) {
        int rc = ap_evlog_reader_next(rd, ap_evlog_end(x->log), &ev, &next);
        if (rc < 0) {
            x->bad = 2;
            break;
        }
        if (rc == 0) {
            spins++;
            usleep(100);
            continue;
        }
        int id = ev.imp_id[0];
        uint64_t k;
        memcpy(&k, ev.imp_id + 8, 8);
        if (id >= THREADS || k != x->seen[id]) { /* per ring: in order, no gap, no repeat */
            x->bad = 3;
            break;
        }
        x->seen[id]++;
        total++;
    }
    ap_evlog_reader_close(rd);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    teardown(NULL);
    mkdir(tmpdir, 0700);
    struct ap_evlog *log = open_log(THREADS, 1024, 1u << 20); /* rolls ~ every 7700 records */
    struct rdr x;
    memset(&x, 0, sizeof(x));
    x.log = log;
    pthread_t rt, pt[THREADS];
    struct prod p[THREADS];
    assert_int_equal(pthread_create(&rt, NULL, reader, &x), 0);
    for (int i = 0; i < THREADS; i++) {
        p[i] = (struct prod){ap_evlog_ring(log, i), i, 0};
        assert_int_equal(pthread_create(&pt[i], NULL, producer, &p[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *res;
        pthread_join(pt[i], &res);
        assert_null(res);
    }
    pthread_join(rt, NULL);
    assert_int_equal(x.bad, 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(x.seen[i], PER_THREAD);
    assert_int_equal(ap_evlog_end(log), (uint64_t)THREADS * PER_THREAD * FRAME);
    ap_evlog_close(log);
    assert_true(count_segments() > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
