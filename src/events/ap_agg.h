/*
 * ap_agg: the aggregator. Folds the event log (ap_evlog.h) into the rollup tables of the store
 * (ap_store.h, rollup section) and bills campaigns (ap_money.h). docs/adr/0010.
 *
 *   event log --(reader, from the checkpoint)--> fold a batch in memory --(ONE transaction:
 *   seen-set, rollup rows, campaign accounts, carried fractions, log offset)--> store
 *                                          \--> spend per campaign --> feed (delivery control)
 *
 * Exactly once: a batch's rollups, accounts and the log offset after it commit together, so a
 * crash before the commit re-reads the batch and a crash after it never re-reads it. A repeated
 * (impression id, event type) -- a beacon fired twice -- is counted once: the seen-set lives in
 * the same transaction and keeps entries for AP_AGG_SEEN_TTL (longest token lifetime + skew).
 *
 * Billing: CPM campaigns pay per impression at the token's CPM price (carried to the
 * milli-micro), CPC per click and CPA per conversion at the campaign's price; budgets (the daily
 * one in the advertiser's time zone) cap what is billed; test events (AP_EV_F_TEST) are counted
 * apart and never billed. Publisher revenue = revenue share of billed spend (and of RTB billing
 * notices), carried per publisher.
 *
 * Lifetimes: struct ap_agg is process lifetime (create at start, destroy at exit). Threads:
 * create/start/stop/destroy on the main thread; ap_agg_run_once and ap_agg_apply on one thread
 * at a time (the aggregator's own thread once started: never call them then); ap_agg_stats from
 * any thread. The feed callback runs on the aggregator's thread.
 */
#ifndef AP_AGG_H
#define AP_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap_evlog.h"

#define AP_AGG_SEEN_TTL (24 * 3600 + 300) /* seconds a seen (impression id, type) is kept */
#define AP_AGG_DEFAULT_INTERVAL_MS 50     /* poll period when caught up */
#define AP_AGG_DEFAULT_BATCH 5000         /* events per transaction at most */
#define AP_AGG_PRUNE_CHUNK 20000          /* seen entries deleted per batch at most */
#define AP_AGG_LAG_BUCKETS 16             /* event lag histogram (see ap_agg_metrics) */

/* Spend of one campaign as the aggregator has billed it. */
struct ap_agg_spend {
    int64_t campaign_id;
    int32_t local_day;       /* advertiser-local day number of today_micros */
    int64_t today_micros;    /* billed on local_day */
    int64_t lifetime_micros; /* billed in total */
};

/* Called after each committed batch with the campaigns whose spend changed (every campaign with
 * billed spend on the first round), and at least every interval when idle with n = 0. A round
 * may take several calls: all but the last pass as_of_ms = 0. as_of_ms: Unix ms up to which
 * events are counted (the newest counted event's time, or now when the log is read to its
 * end). */
typedef void (*ap_agg_feed_fn)(void *ud, const struct ap_agg_spend *s, size_t n, int64_t as_of_ms);

struct ap_agg_options {
    const char *db_path;        /* the store's database file (migrated) */
    const char *log_dir;        /* <data-dir>/events */
    const struct ap_evlog *log; /* the live log, read up to ap_evlog_end(); NULL: the log is
                                   closed, read every whole record (tools, tests) */
    ap_agg_feed_fn feed;        /* may be NULL */
    void *feed_ud;
    int interval_ms;    /* 0: AP_AGG_DEFAULT_INTERVAL_MS */
    uint32_t batch_max; /* 0: AP_AGG_DEFAULT_BATCH */
    int64_t retention_s; /* > 0: the thread deletes log segments it has counted once they are
                            this old (ap_evlog_prune, checked every AP_AGG_PRUNE_EVERY_S) */
};

#define AP_AGG_PRUNE_EVERY_S 60

struct ap_agg;

/* Opens the store's rollup handle, loads the checkpoint, accounts and campaigns. NULL with *err
 * (AP_ENOTFOUND: the store lacks the rollup tables; storage errors) and a message in errbuf. */
struct ap_agg *ap_agg_create(const struct ap_agg_options *o, int *err, char *errbuf, size_t errcap);

/* Starts the aggregator thread. AP_OK or AP_ESYS. */
int ap_agg_start(struct ap_agg *a);

/* Stops the thread after it has folded what the log holds now. NULL or not started is fine. */
void ap_agg_stop(struct ap_agg *a);

/* Frees (stops first). NULL is fine. */
void ap_agg_destroy(struct ap_agg *a);

/* Reads from the checkpoint to the end (or the live end) in batches, committing each. *folded
 * (may be NULL) = records read. AP_OK, or the first error (the failed batch is rolled back and
 * will be read again). */
int ap_agg_run_once(struct ap_agg *a, uint64_t *folded);

/* Folds n events as if read from the log and commits them with end_offset as the new
 * checkpoint (must not be below the current one). For tests and tools that have events without
 * a log. AP_OK or a storage error (nothing committed). */
int ap_agg_apply(struct ap_agg *a, const struct ap_event *evs, size_t n, uint64_t end_offset);

struct ap_agg_stats {
    uint64_t checkpoint; /* log offset committed */
    uint64_t log_end;    /* last known end of the log */
    uint64_t lag_bytes, lag_records;
    double lag_seconds;        /* now - time of the oldest unread event (0 when caught up) */
    uint64_t events;           /* counted (persisted) */
    uint64_t duplicates;       /* dropped (persisted) */
    uint64_t test_events;      /* counted as test traffic since start */
    uint64_t segments_deleted; /* log segments deleted by retention since start */
    uint64_t unknown_campaign; /* billable events of campaigns not in the store (not billed) */
    uint64_t batches, failures;
    uint64_t commit_us_last, commit_us_max;
    uint64_t lag_hist[AP_AGG_LAG_BUCKETS]; /* events by accept -> commit time, not cumulative */
};
void ap_agg_stats(struct ap_agg *a, struct ap_agg_stats *out);

/* The 99th percentile of the accept -> commit lag of every event committed since create, in
 * ms (the upper bound of its histogram bucket: 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, ...);
 * 0 before any event, INT64_MAX past the last bound. Any thread. */
int64_t ap_agg_lag_p99_ms(struct ap_agg *a);

/* Appends Prometheus text for the stats to out (NUL-terminated, truncated at cap). Returns
 * the length written. Any thread. */
size_t ap_agg_metrics(struct ap_agg *a, char *out, size_t cap);

#endif
