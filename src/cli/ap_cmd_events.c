#include "ap_cmd_events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"
#include "../events/ap_evlog.h"

static const char *const TYPES[AP_EV_TYPE_MAX] = {
    "", "decision", "imp", "view", "click", "conv", "bid", "win", "loss", "billing"};

static int usage(void)
{
    fprintf(stderr, "usage: adplatform events dump --data-dir DIR [--from POS] [--type TYPE]\n");
    return 2;
}

int ap_cmd_events(int argc, char **argv)
{
    const char *data_dir = NULL;
    uint64_t from = 0;
    int only = 0;
    if (argc < 1 || strcmp(argv[0], "dump") != 0)
        return usage();
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--data-dir")) {
            data_dir = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--from")) {
            char *end;
            from = strtoull(argv[++i], &end, 10);
            if (*end)
                return usage();
        } else if (i + 1 < argc && !strcmp(argv[i], "--type")) {
            const char *t = argv[++i];
            for (int k = 1; k < AP_EV_TYPE_MAX; k++)
                if (!strcmp(t, TYPES[k]))
                    only = k;
            if (!only)
                return usage();
        } else {
            return usage();
        }
    }
    if (!data_dir)
        return usage();
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/events", data_dir);
    int err = 0;
    struct ap_evlog_reader *rd = ap_evlog_reader_open(dir, from, &err);
    if (!rd) {
        fprintf(stderr, "adplatform events: cannot read %s: %s\n", dir, ap_strerror(err));
        return 1;
    }
    struct ap_event ev;
    uint64_t pos = from, next;
    int rc;
    while ((rc = ap_evlog_reader_next(rd, UINT64_MAX, &ev, &next)) == 1) {
        if (!only || ev.type == only) {
            char id[33];
            for (int i = 0; i < 16; i++)
                snprintf(id + 2 * i, 3, "%02x", ev.imp_id[i]);
            char country[3] = {ev.country[0], ev.country[1], 0};
            printf("{\"pos\":%" PRIu64 ",\"type\":\"%s\",\"flags\":%u,\"device_type\":%u,"
                   "\"country\":\"%s\",\"count\":%u,\"reason\":%u,\"imp_id\":\"%s\","
                   "\"time_ns\":%" PRId64 ",\"campaign_id\":%" PRId64 ",\"ad_id\":%" PRId64
                   ",\"placement_id\":%" PRId64 ",\"publisher_id\":%" PRId64
                   ",\"partner_id\":%" PRId64 ",\"price_micros\":%" PRId64
                   ",\"value_micros\":%" PRId64 ",\"issued_at\":%" PRId64 "}\n",
                   pos, ev.type < AP_EV_TYPE_MAX ? TYPES[ev.type] : "?", ev.flags,
                   ev.device_type, country[0] >= 'A' && country[0] <= 'Z' ? country : "",
                   ev.count, ev.reason, id, ev.time_ns, ev.campaign_id, ev.ad_id,
                   ev.placement_id, ev.publisher_id, ev.partner_id, ev.price_micros,
                   ev.value_micros, ev.issued_at);
        }
        pos = next;
    }
    ap_evlog_reader_close(rd);
    if (rc < 0) {
        fprintf(stderr, "adplatform events: %s at position %" PRIu64 "\n", ap_strerror(rc), pos);
        return 1;
    }
    return 0;
}
