/*
 * ap_serve_tz: reads IANA time zones from /usr/share/zoneinfo (TZif v1/v2+, RFC 8536) into the
 * transition tables the engine uses for advertiser-local hours and days. Builder thread only;
 * the hot path only does a binary search over the loaded table (ap__serve_zone_offset), so no
 * worker ever touches the process's TZ state (localtime_r and friends are not used).
 */
#include "ap_serve_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ap_error.h"

#define TZ_DIR "/usr/share/zoneinfo/"
#define TZ_FILE_MAX (1024 * 1024)

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static bool zone_name_ok(const char *name)
{
    if (!name[0] || name[0] == '/' || strstr(name, ".."))
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '/' || *p == '_' || *p == '-' || *p == '+'))
            return false;
    return true;
}

int ap__serve_tz_load(const char *name, int64_t **at_out, int32_t **off_out, uint32_t *n_out,
                      int32_t *before)
{
    *at_out = NULL;
    *off_out = NULL;
    *n_out = 0;
    *before = 0;
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)
        return AP_OK;
    if (!zone_name_ok(name))
        return AP_ENOTFOUND;
    char path[512];
    if ((size_t)snprintf(path, sizeof(path), TZ_DIR "%s", name) >= sizeof(path))
        return AP_ENOTFOUND;
    FILE *f = fopen(path, "rbe");
    if (!f)
        return AP_ENOTFOUND;
    uint8_t *buf = malloc(TZ_FILE_MAX);
    size_t len = buf ? fread(buf, 1, TZ_FILE_MAX, f) : 0;
    fclose(f);
    int rc = AP_ECORRUPT;
    int64_t *at = NULL;
    int32_t *off = NULL;
    if (!buf)
        return AP_ENOMEM;
    if (len < 44 || memcmp(buf, "TZif", 4) != 0)
        goto out;
    const uint8_t *p = buf;
    size_t tsize = 4;
    /* counts: isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt */
    uint32_t c[6];
    for (int i = 0; i < 6; i++)
        c[i] = be32(p + 20 + 4 * i);
    if (buf[4] >= '2') { /* skip the v1 block, use the 64-bit one */
        size_t v1 =
            44 + (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0];
        if (v1 + 44 > len || memcmp(buf + v1, "TZif", 4) != 0)
            goto out;
        p = buf + v1;
        tsize = 8;
        for (int i = 0; i < 6; i++)
            c[i] = be32(p + 20 + 4 * i);
    }
    uint32_t timecnt = c[3], typecnt = c[4];
    size_t need = (size_t)(p - buf) + 44 + (size_t)timecnt * (tsize + 1) + (size_t)typecnt * 6;
    if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || need > len)
        goto out;
    const uint8_t *times = p + 44, *idx = times + (size_t)timecnt * tsize, *types = idx + timecnt;
    at = malloc(((size_t)timecnt + 1) * sizeof(int64_t));
    off = malloc(((size_t)timecnt + 1) * sizeof(int32_t));
    if (!at || !off) {
        rc = AP_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < timecnt; i++) {
        at[i] = tsize == 8 ? be64(times + 8 * i) : (int64_t)(int32_t)be32(times + 4 * i);
        if (idx[i] >= typecnt || (i > 0 && at[i] <= at[i - 1]))
            goto out;
        off[i] = (int32_t)be32(types + 6 * idx[i]);
    }
    /* before the first transition: the first standard-time type (RFC 8536 §3.2), else type 0 */
    int32_t b0 = (int32_t)be32(types);
    for (uint32_t t = 0; t < typecnt; t++)
        if (types[6 * t + 4] == 0) {
            b0 = (int32_t)be32(types + 6 * t);
            break;
        }
    *before = timecnt == 0 ? (int32_t)be32(types) : b0;
    *at_out = at;
    *off_out = off;
    *n_out = timecnt;
    at = NULL;
    off = NULL;
    rc = AP_OK;
out:
    free(at);
    free(off);
    free(buf);
    return rc;
}
