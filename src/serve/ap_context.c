#include "ap_context.h"

#include <string.h>

static const char *const DEVICES[AP_SERVE_DEVICE_COUNT] = {"",       "desktop", "mobile",
                                                           "tablet", "ctv",     "other"};
static const char *const OSES[AP_SERVE_OS_COUNT] = {"",    "windows", "macos",    "linux",
                                                    "ios", "android", "chromeos", "other"};
static const char *const BROWSERS[AP_SERVE_BROWSER_COUNT] = {"",     "chrome", "firefox", "safari",
                                                             "edge", "opera",  "samsung", "other"};

void ap_serve_ctx_init(struct ap_serve_ctx *ctx, int64_t now)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->now = now;
    ctx->storage_allowed = true;
    ctx->personalisation_allowed = true;
}

const char *ap_serve_device_name(enum ap_serve_device d)
{
    return (unsigned)d < AP_SERVE_DEVICE_COUNT ? DEVICES[d] : "";
}

const char *ap_serve_os_name(enum ap_serve_os o)
{
    return (unsigned)o < AP_SERVE_OS_COUNT ? OSES[o] : "";
}

const char *ap_serve_browser_name(enum ap_serve_browser b)
{
    return (unsigned)b < AP_SERVE_BROWSER_COUNT ? BROWSERS[b] : "";
}

static int find(const char *const *names, int n, struct ap_span s)
{
    for (int i = 1; i < n; i++)
        if (ap_span_eq_nocase(s, names[i]))
            return i;
    return 0;
}

enum ap_serve_device ap_serve_device_parse(struct ap_span s)
{
    return (enum ap_serve_device)find(DEVICES, AP_SERVE_DEVICE_COUNT, s);
}

enum ap_serve_os ap_serve_os_parse(struct ap_span s)
{
    return (enum ap_serve_os)find(OSES, AP_SERVE_OS_COUNT, s);
}

enum ap_serve_browser ap_serve_browser_parse(struct ap_span s)
{
    return (enum ap_serve_browser)find(BROWSERS, AP_SERVE_BROWSER_COUNT, s);
}
