/*
 * ap_evlog: the durable event log. Every billable or reportable event (decision, impression,
 * view, click, conversion, RTB bid/win/loss/billing notice) is one fixed-size record appended
 * to segment files under <data-dir>/events/. See docs/adr/0008-event-log.md.
 *
 * On disk: segments named "%020" PRIu64 ".seg" by the log position of their first byte; each
 * record is a frame
 *     u32 length (little endian, = sizeof(struct ap_event))
 *     u32 CRC32C of the payload (Castagnoli, little endian)
 *     payload: struct ap_event as laid out below (little endian, no padding holes)
 * A segment is rolled (a new file started) once it passes `segment_bytes`. The log position
 * ("offset") of a record is the byte position of its frame in the concatenated log: segment
 * base + byte offset in the segment. Positions only grow; the aggregator checkpoints one.
 *
 * Writing: each worker thread owns one single-producer ring (ap_evlog_append); one writer
 * thread drains the rings, writes, and fdatasyncs (group commit: what arrives during a sync is
 * written and synced together next; `sync_interval_ms` > 0 makes a record wait up to that long
 * for company, `sync_records` caps a group), then publishes per ring the sequence number up to which records are
 * durable and wakes the ring's owner through its eventfd. A beacon handler appends, defers its
 * exchange, and answers once ap_evlog_durable(ring) >= the sequence it got: never before.
 * A full ring is AP_EAGAIN: the caller answers 503 with Retry-After (the event is not counted).
 *
 * Recovery (ap_evlog_open): the last segment is scanned; a torn or corrupt tail (short frame,
 * bad length, bad CRC) is cut at the last whole good record, logged, and appending carries on.
 *
 * Reading: ap_evlog_reader_* reads records in order from any position up to what is durable,
 * on any thread (the aggregator's), while the writer appends.
 *
 * I/O failure: if a write or fdatasync fails (EIO, ENOSPC), nothing more is ever published as
 * durable (after a failed fsync the kernel may have dropped the pages: retrying would lie);
 * ap_evlog_failed() turns true and callers answer 503. A restart recovers what is on disk.
 *
 * Lifetimes: the log is process lifetime (open at start, close after the workers stopped);
 * rings belong to the log. Threads: append and durable on the ring's own worker thread only;
 * the writer is internal; readers on their own thread, one reader per thread.
 */
#ifndef AP_EVLOG_H
#define AP_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AP_EVENT_VERSION 1
#define AP_EVLOG_DEFAULT_SEGMENT_BYTES (64u * 1024 * 1024)
#define AP_EVLOG_DEFAULT_SYNC_MS 0 /* sync as soon as the rings are drained */
#define AP_EVLOG_DEFAULT_SYNC_RECORDS 4096
#define AP_EVLOG_DEFAULT_RING 65536 /* records per worker ring (a power of two) */

enum ap_event_type {
    AP_EV_DECISION = 1, /* an ad was chosen for a placement (count = ads in the response) */
    AP_EV_IMP = 2,      /* impression beacon */
    AP_EV_VIEW = 3,     /* viewable impression beacon */
    AP_EV_CLICK = 4,    /* click */
    AP_EV_CONV = 5,     /* conversion (value_micros) */
    AP_EV_BID = 6,      /* an RTB bid received from a partner (price_micros = bid CPM) */
    AP_EV_WIN = 7,      /* an RTB bid won the auction (price_micros = clearing CPM) */
    AP_EV_LOSS = 8,     /* an RTB bid lost (reason = OpenRTB loss reason code) */
    AP_EV_BILLING = 9,  /* an RTB billing notice (burl) was fired */
    AP_EV_TYPE_MAX = 10
};

/* Event flags (the token's consent/test flags occupy the low byte, AP_TOKEN_F_*). */
#define AP_EV_F_GDPR 0x01u
#define AP_EV_F_STORAGE 0x02u
#define AP_EV_F_PERSONALISATION 0x04u
#define AP_EV_F_TEST 0x80u /* test traffic: reported apart, never billed */

/* One record: 128 bytes, every field naturally aligned, no implicit padding. Prices and values
 * are integer micro-units of the campaign's (or partner's) currency. */
struct ap_event {
    uint8_t version;     /* AP_EVENT_VERSION */
    uint8_t type;        /* enum ap_event_type */
    uint8_t flags;       /* AP_EV_F_* */
    uint8_t device_type; /* enum ap_serve_device (serve/ap_context.h), 0 unknown */
    char country[2];     /* ISO 3166-1 alpha-2, or "\0\0" */
    uint16_t reason;     /* AP_EV_LOSS: loss reason; otherwise 0 */
    uint32_t count;      /* events this record stands for (>= 1; decisions may batch) */
    uint32_t reserved;   /* 0 */
    uint8_t imp_id[16];  /* the token's impression id (zero for decisions without one) */
    int64_t time_ns;     /* when the event was accepted, Unix ns UTC */
    int64_t campaign_id; /* 0 when not ours (RTB partner bids) */
    int64_t ad_id;
    int64_t placement_id;
    int64_t publisher_id;
    int64_t partner_id;   /* RTB demand partner id, 0 for our own demand */
    int64_t price_micros; /* IMP/VIEW/CLICK: the campaign's price from the token (CPM for CPM
                             campaigns, per click for CPC, ...); BID/WIN/LOSS/BILLING: CPM */
    int64_t value_micros; /* CONV: conversion value; otherwise 0 */
    int64_t issued_at;    /* token issue time, Unix seconds (0 when none) */
    int64_t reserved2;    /* 0 */
    int64_t reserved3[2]; /* 0: pads the record to 128 bytes (room for later fields) */
};
_Static_assert(sizeof(struct ap_event) == 128, "ap_event is 128 bytes on disk");

struct ap_evlog;
struct ap_evlog_ring;

struct ap_evlog_options {
    const char *dir;        /* <data-dir>/events; created if missing */
    int rings;              /* one per data-plane worker */
    uint32_t ring_records;  /* 0 = AP_EVLOG_DEFAULT_RING */
    uint64_t segment_bytes; /* 0 = AP_EVLOG_DEFAULT_SEGMENT_BYTES */
    int sync_interval_ms;   /* 0 = AP_EVLOG_DEFAULT_SYNC_MS */
    uint32_t sync_records;  /* 0 = AP_EVLOG_DEFAULT_SYNC_RECORDS */
};

/* Opens (creating) the log, recovers a torn tail, starts the writer thread. NULL on failure
 * with *err = AP_E* and a message in errbuf. Main thread, before the workers start. */
struct ap_evlog *ap_evlog_open(const struct ap_evlog_options *o, int *err, char *errbuf,
                               size_t errcap);

/* Stops the writer after syncing what the rings hold, closes files, frees. Main thread, after
 * the workers stopped. NULL is fine. */
void ap_evlog_close(struct ap_evlog *log);

/* Ring i (0 <= i < rings). */
struct ap_evlog_ring *ap_evlog_ring(struct ap_evlog *log, int i);

/* Appends a copy of ev (version is set). Returns the record's sequence number in this ring
 * (> 0), or AP_EAGAIN (negative) when the ring is full. Owner thread only; never blocks. */
int64_t ap_evlog_append(struct ap_evlog_ring *r, const struct ap_event *ev);

/* Appends n records (n >= 1) all or none: the sequence number of the last one, or AP_EAGAIN
 * when they do not all fit (nothing appended), AP_EINVAL for n < 1 or n > the ring size.
 * The batch path: one release store and at most one writer wake-up. Owner thread only. */
int64_t ap_evlog_append_batch(struct ap_evlog_ring *r, const struct ap_event *evs, int n);

/* Number of rings (as opened). Any thread. */
int ap_evlog_rings(const struct ap_evlog *log);

/* true once a write or sync failed (see above): nothing will become durable any more. */
bool ap_evlog_failed(const struct ap_evlog *log);

/* Sequence number up to which this ring's records are durable (fdatasync'd). Owner thread. */
int64_t ap_evlog_durable(const struct ap_evlog_ring *r);

/* The ring's eventfd, readable when its durable sequence advanced: the owner registers it on
 * its loop (once) and, when readable, reads it and answers the exchanges now durable. */
int ap_evlog_ring_fd(const struct ap_evlog_ring *r);

/* Log position just past the last durable record (what readers can read up to). Any thread. */
uint64_t ap_evlog_end(const struct ap_evlog *log);

/* Counters for /metrics (any thread): records and bytes written (frames included), syncs,
 * sync latency (last, max, sum; microseconds), ring-full rejects. */
struct ap_evlog_stats {
    uint64_t records, bytes, syncs, full_rejects;
    uint64_t sync_us_last, sync_us_max, sync_us_sum;
    uint64_t torn_bytes_cut; /* at the last open */
};
void ap_evlog_stats(const struct ap_evlog *log, struct ap_evlog_stats *out);

/* Ring-full rejects of records of one type (1 <= type < AP_EV_TYPE_MAX), all rings. */
uint64_t ap_evlog_full_rejects(const struct ap_evlog *log, int type);

/* Sync latency histogram (fdatasync time): counts per bucket, cumulative NOT applied;
 * bucket i holds syncs <= ap_evlog_sync_bounds_us[i], the last one the rest. Any thread. */
#define AP_EVLOG_SYNC_BUCKETS 13
extern const uint64_t ap_evlog_sync_bounds_us[AP_EVLOG_SYNC_BUCKETS - 1];
void ap_evlog_sync_histogram(const struct ap_evlog *log, uint64_t out[AP_EVLOG_SYNC_BUCKETS]);

/* Retention: deletes the whole segments of the log in dir that end at or before log position
 * `upto` (pass the aggregator's checkpoint: everything before it is counted) and were last
 * written more than min_age_s seconds ago, oldest first; never the last segment. Readers
 * opened before keep their open segment. *deleted: how many. AP_OK or an AP_E* code. Blocking
 * file I/O: a background thread. */
int ap_evlog_prune(const char *dir, uint64_t upto, int64_t min_age_s, int *deleted);

/* On-disk frame: 8 header bytes + the record. */
#define AP_EVLOG_FRAME_BYTES (8 + sizeof(struct ap_event))

/* ---- reading ---- */

struct ap_evlog_reader;

/* Opens a reader of the log in dir starting at log position `from` (0 = the beginning; a
 * position from ap_evlog_reader_next is a record boundary). NULL with *err on failure. */
struct ap_evlog_reader *ap_evlog_reader_open(const char *dir, uint64_t from, int *err);

/* Reads the next record that ends at or before `limit` (pass ap_evlog_end(), or UINT64_MAX
 * for a closed log). Returns 1 and fills *ev and *next (the position after it), 0 at the end
 * (nothing more yet), or a negative AP_E* (AP_ECORRUPT: a bad frame before limit). */
int ap_evlog_reader_next(struct ap_evlog_reader *rd, uint64_t limit, struct ap_event *ev,
                         uint64_t *next);

void ap_evlog_reader_close(struct ap_evlog_reader *rd);

/* CRC32C (Castagnoli) of n bytes, continuing from crc (0 to start). */
uint32_t ap_crc32c(uint32_t crc, const void *data, size_t n);

/* The table implementation (tests and the benchmark compare it with the dispatched one), and
 * whether ap_crc32c uses the SSE4.2 crc32 instruction. */
uint32_t ap__crc32c_table(uint32_t crc, const void *data, size_t n);
bool ap__crc32c_hw_available(void);

#endif
