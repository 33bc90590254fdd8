/*
 * ap_evload: load generator and checker for the event-log crash test
 * (tests/integration/test_events_crash.py) and bench/events.sh.
 *
 *   ap_evload load --port P --keys FILE --rate R [--conns C] [--depth D] [--seconds S]
 *                  --state OUT
 *       Sends impression beacons (tokens signed with the key file; impression id = "EVLOADv1"
 *       + a 64-bit counter) to 127.0.0.1:P at R per second over C keep-alive connections with up
 *       to D pipelined requests each, reconnecting whenever the daemon goes away. Runs S seconds
 *       or until SIGTERM/SIGINT, then writes OUT: the number sent and a bitmap of those answered
 *       2xx. Prints a JSON summary.
 *   ap_evload verify --dir EVENTS_DIR --state OUT
 *       Reads the whole event log: every acknowledged id must be there (at least once), and no
 *       id that was never sent may be. Exit 0 when both hold; prints a JSON summary.
 *   ap_evload append --dir DIR --seconds S [--batch N]
 *       Appends from one thread through the batch path as fast as the log takes it (benchmark
 *       of the log alone); prints events/s.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/ap_error.h"
#include "core/ap_time.h"
#include "events/ap_evlog.h"
#include "events/ap_token.h"

static const uint8_t MAGIC[8] = {'E', 'V', 'L', 'O', 'A', 'D', 'v', '1'};
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static int num(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

/* ---- load ---------------------------------------------------------------------------------- */

#define MAX_CONNS 1024
#define MAX_DEPTH 64

struct conn {
    int fd;
    bool up;
    uint64_t ids[MAX_DEPTH];
    int head, n; /* in-flight FIFO */
    char in[65536];
    size_t in_len;
    uint64_t retry_at;
};

static uint8_t *acked;
static uint64_t sent, n_acked, n_other, n_broken;

static void conn_drop(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->up = false;
    n_broken += (uint64_t)c->n;
    c->n = 0;
    c->head = 0;
    c->in_len = 0;
    c->retry_at = ap_time_mono_ns() + 20 * AP_NS_PER_MS;
}

static void conn_open(struct conn *c, int ep, int port)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        conn_drop(c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Parses complete responses in c->in. */
static void conn_parse(struct conn *c)
{
    size_t off = 0;
    for (;;) {
        char *s = c->in + off;
        size_t avail = c->in_len - off;
        char *end = memmem(s, avail, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t head = (size_t)(end - s) + 4, body = 0;
        int status = avail > 12 ? num(s + 9) : 0;
        for (char *p = s; p < end; p++) {
            if ((*p == 'C' || *p == 'c') && !strncasecmp(p, "Content-Length:", 15)) {
                body = strtoul(p + 15, NULL, 10);
                break;
            }
        }
        if (head + body > avail)
            break;
        if (c->n > 0) {
            uint64_t id = c->ids[c->head];
            c->head = (c->head + 1) % MAX_DEPTH;
            c->n--;
            if (status >= 200 && status < 300) {
                if (!(acked[id >> 3] & (1u << (id & 7))))
                    n_acked++;
                acked[id >> 3] |= (uint8_t)(1u << (id & 7));
            } else {
                n_other++;
            }
        }
        off += head + body;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static int cmd_load(int argc, char **argv)
{
    int port = num(arg(argc, argv, "--port", "0"));
    const char *keys = arg(argc, argv, "--keys", NULL), *out = arg(argc, argv, "--state", NULL);
    double rate = atof(arg(argc, argv, "--rate", "20000"));
    int nconns = num(arg(argc, argv, "--conns", "64"));
    int depth = num(arg(argc, argv, "--depth", "4"));
    double seconds = atof(arg(argc, argv, "--seconds", "3600"));
    if (!port || !keys || !out || nconns < 1 || nconns > MAX_CONNS || depth < 1 ||
        depth > MAX_DEPTH) {
        fprintf(stderr, "usage: ap_evload load --port P --keys FILE --state OUT [--rate R]\n");
        return 2;
    }
    struct ap_token_keyring kr;
    if (access(keys, R_OK) != 0 || ap_token_keyring_load(&kr, keys, 0, ap_time_unix()) != AP_OK) {
        fprintf(stderr, "ap_evload: cannot load keys %s\n", keys);
        return 1;
    }
    uint64_t max_ids = (uint64_t)(rate * (seconds < 600 ? seconds : 600) * 1.5) + 1000000;
    acked = calloc(max_ids / 8 + 1, 1);
    struct conn *cs = calloc((size_t)nconns, sizeof(*cs));
    if (!acked || !cs)
        return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconns; i++) {
        cs[i].fd = -1;
        conn_open(&cs[i], ep, port);
    }
    uint64_t t0 = ap_time_mono_ns(), stop_at = 0;
    int next_conn = 0;
    for (;;) {
        uint64_t now = ap_time_mono_ns();
        double el = (double)(now - t0) / 1e9;
        if (!stop_at && (stop || el >= seconds))
            stop_at = now;
        if (stop_at) { /* stop sending; wait a little for the answers in flight */
            int inflight = 0;
            for (int i = 0; i < nconns; i++)
                inflight += cs[i].n;
            if (!inflight || now - stop_at > 2 * AP_NS_PER_SEC)
                break;
        }
        /* send what the rate allows */
        uint64_t due = (uint64_t)(rate * el);
        for (int tries = 0; !stop_at && sent < due && sent < max_ids && tries < nconns;) {
            struct conn *c = &cs[next_conn];
            next_conn = (next_conn + 1) % nconns;
            if (c->fd < 0) {
                if (now >= c->retry_at)
                    conn_open(c, ep, port);
                tries++;
                continue;
            }
            if (!c->up || c->n >= depth) {
                tries++;
                continue;
            }
            struct ap_token t;
            memset(&t, 0, sizeof(t));
            t.type = AP_TOKEN_IMP;
            memcpy(t.imp_id, MAGIC, 8);
            memcpy(t.imp_id + 8, &sent, 8);
            t.campaign_id = 1 + (int64_t)(sent % 50);
            t.ad_id = 1;
            t.placement_id = 1;
            t.publisher_id = 1;
            t.price_micros = 1234567;
            t.issued_at = ap_time_unix();
            char tok[AP_TOKEN_MAX_TEXT], req[512];
            ap_token_sign(&kr, &t, tok, sizeof(tok));
            int n = snprintf(req, sizeof(req), "GET /v1/e/imp?t=%s HTTP/1.1\r\nHost: x\r\n\r\n",
                             tok);
            ssize_t w = send(c->fd, req, (size_t)n, MSG_NOSIGNAL);
            if (w != n) {
                conn_drop(c);
                continue;
            }
            c->ids[(c->head + c->n) % MAX_DEPTH] = sent;
            c->n++;
            sent++;
            tries = 0;
        }
        struct epoll_event evs[256];
        int ne = epoll_wait(ep, evs, 256, 1);
        for (int i = 0; i < ne; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
                conn_drop(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                c->up = true;
            if (evs[i].events & EPOLLIN) {
                for (;;) {
                    ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
                    if (r > 0) {
                        c->in_len += (size_t)r;
                        conn_parse(c);
                        continue;
                    }
                    if (r == 0 || (errno != EAGAIN && errno != EINTR))
                        conn_drop(c);
                    break;
                }
            }
        }
    }
    double el = (double)(ap_time_mono_ns() - t0) / 1e9;
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(&sent, 8, 1, f) != 1 || fwrite(acked, 1, sent / 8 + 1, f) != sent / 8 + 1 ||
        fclose(f) != 0) {
        fprintf(stderr, "ap_evload: cannot write %s\n", out);
        return 1;
    }
    printf("{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"non_2xx\":%" PRIu64
           ",\"lost_in_flight\":%" PRIu64 ",\"seconds\":%.2f,\"acked_per_s\":%.0f}\n",
           sent, n_acked, n_other, n_broken, el, (double)n_acked / el);
    for (int i = 0; i < nconns; i++)
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    close(ep);
    free(cs);
    free(acked);
    fflush(stdout);
    return 0;
}

/* ---- verify -------------------------------------------------------------------------------- */

static int cmd_verify(int argc, char **argv)
{
    const char *dir = arg(argc, argv, "--dir", NULL), *state = arg(argc, argv, "--state", NULL);
    if (!dir || !state)
        return 2;
    FILE *f = fopen(state, "rb");
    uint64_t n = 0;
    if (!f || fread(&n, 8, 1, f) != 1)
        return 1;
    uint8_t *ack = calloc(n / 8 + 1, 1);
    uint32_t *seen = calloc(n + 1, sizeof(uint32_t));
    if (!ack || !seen || fread(ack, 1, n / 8 + 1, f) != n / 8 + 1)
        return 1;
    fclose(f);
    int err = 0;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(dir, 0, &err);
    if (!rd) {
        fprintf(stderr, "cannot open the log: %s\n", ap_strerror(err));
        return 1;
    }
    struct ap_event ev;
    uint64_t next, records = 0, ours = 0, invented = 0, dups = 0;
    int rc;
    while ((rc = ap_evlog_reader_next(rd, UINT64_MAX, &ev, &next)) == 1) {
        records++;
        if (ev.type != AP_EV_IMP || memcmp(ev.imp_id, MAGIC, 8) != 0)
            continue;
        ours++;
        uint64_t id;
        memcpy(&id, ev.imp_id + 8, 8);
        if (id >= n) {
            invented++;
            continue;
        }
        if (seen[id]++)
            dups++;
    }
    ap_evlog_reader_close(rd);
    uint64_t acked_n = 0, missing = 0;
    for (uint64_t id = 0; id < n; id++) {
        if (ack[id >> 3] & (1u << (id & 7))) {
            acked_n++;
            if (!seen[id])
                missing++;
        }
    }
    printf("{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"records\":%" PRIu64
           ",\"logged\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"missing\":%" PRIu64
           ",\"invented\":%" PRIu64 ",\"read_rc\":%d}\n",
           n, acked_n, records, ours, dups, missing, invented, rc);
    free(ack);
    free(seen);
    fflush(stdout);
    return rc == 0 && missing == 0 && invented == 0 ? 0 : 1;
}

/* ---- append (benchmark of the log alone) ---------------------------------------------------- */

static int cmd_append(int argc, char **argv)
{
    const char *dir = arg(argc, argv, "--dir", NULL);
    double seconds = atof(arg(argc, argv, "--seconds", "3"));
    int batch = num(arg(argc, argv, "--batch", "64"));
    if (!dir || batch < 1 || batch > 4096)
        return 2;
    struct ap_evlog_options o = {.dir = dir,
                                 .rings = 1,
                                 .sync_interval_ms = num(arg(argc, argv, "--sync-ms", "0")),
                                 .sync_records = (uint32_t)num(arg(argc, argv, "--sync-records", "0"))};
    int err;
    char msg[256];
    struct ap_evlog *log = ap_evlog_open(&o, &err, msg, sizeof(msg));
    if (!log) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    struct ap_evlog_ring *r = ap_evlog_ring(log, 0);
    struct ap_event *evs = calloc((size_t)batch, sizeof(*evs));
    for (int i = 0; i < batch; i++) {
        evs[i].type = AP_EV_IMP;
        evs[i].count = 1;
        evs[i].campaign_id = 1 + i;
        evs[i].price_micros = 1234567;
    }
    uint64_t t0 = ap_time_mono_ns(), n = 0, full = 0;
    int64_t last = 0;
    while ((double)(ap_time_mono_ns() - t0) / 1e9 < seconds) {
        for (int i = 0; i < batch; i++)
            memcpy(evs[i].imp_id + 8, &(uint64_t){n + (uint64_t)i}, 8);
        int64_t s = ap_evlog_append_batch(r, evs, batch);
        if (s == AP_EAGAIN) {
            full++;
            sched_yield();
            continue;
        }
        last = s;
        n += (uint64_t)batch;
    }
    double appended_s = (double)(ap_time_mono_ns() - t0) / 1e9;
    while (ap_evlog_durable(r) < last) {
        struct pollfd p = {ap_evlog_ring_fd(r), POLLIN, 0};
        poll(&p, 1, 10);
        uint64_t v;
        if (read(ap_evlog_ring_fd(r), &v, 8) < 0 && errno != EAGAIN)
            break;
    }
    double durable_s = (double)(ap_time_mono_ns() - t0) / 1e9;
    struct ap_evlog_stats st;
    ap_evlog_stats(log, &st);
    ap_evlog_close(log);
    printf("{\"events\":%" PRIu64 ",\"batch\":%d,\"append_per_s\":%.0f,\"durable_per_s\":%.0f,"
           "\"syncs\":%" PRIu64 ",\"sync_us_avg\":%.0f,\"ring_full_retries\":%" PRIu64
           ",\"crc32c\":\"%s\"}\n",
           n, batch, (double)n / appended_s, (double)n / durable_s, st.syncs,
           st.syncs ? (double)st.sync_us_sum / (double)st.syncs : 0.0, full,
           ap__crc32c_hw_available() ? "sse4.2" : "table");
    free(evs);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "load"))
        return cmd_load(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "verify"))
        return cmd_verify(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "append"))
        return cmd_append(argc - 2, argv + 2);
    fprintf(stderr, "usage: ap_evload load|verify|append ...\n");
    return 2;
}
