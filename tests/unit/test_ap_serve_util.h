/* Helpers for the serve unit tests: store-like rows from JSON text, contexts from a compact
 * "key=value;..." spec. Header-only (each test is one executable). */
#ifndef TEST_AP_SERVE_UTIL_H
#define TEST_AP_SERVE_UTIL_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/ap_serve.h"
#include "serve/ap_serve_internal.h"

#define T_NOW INT64_C(1718000000) /* 2024-06-10 06:13:20 UTC, a Monday */

struct t_rows {
    json_t *a[AP_SCHEMA_RES_COUNT];
};

static inline void t_rows_init(struct t_rows *r)
{
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        r->a[i] = json_array();
}

static inline void t_rows_free(struct t_rows *r)
{
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        json_decref(r->a[i]);
}

/* Appends a row given as printf-formatted JSON text. */
static inline void __attribute__((format(printf, 3, 4)))
t_add(struct t_rows *r, enum ap_schema_res res, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_error_t e;
    json_t *o = json_loads(buf, 0, &e);
    if (!o) {
        fprintf(stderr, "bad test JSON: %s: %s\n", e.text, buf);
        abort();
    }
    json_array_append_new(r->a[res], o);
}

/* Publisher 1, site 1 (example.com), placement 1 (300x250, image+html), advertiser 1 (UTC). */
static inline void t_inventory(struct t_rows *r, const char *adv_tz)
{
    t_add(r, AP_SCHEMA_PUBLISHER, "{\"id\":1,\"status\":\"active\"}");
    t_add(r, AP_SCHEMA_SITE,
          "{\"id\":1,\"publisher_id\":1,\"status\":\"active\",\"domain\":\"example.com\"}");
    t_add(r, AP_SCHEMA_PLACEMENT,
          "{\"id\":1,\"site_id\":1,\"status\":\"active\",\"sizes\":[\"300x250\"],"
          "\"ad_types\":[\"image\",\"html\"],\"floor_cpm_micros\":0}");
    t_add(r, AP_SCHEMA_ADVERTISER, "{\"id\":1,\"status\":\"active\",\"timezone\":\"%s\"}",
          adv_tz ? adv_tz : "UTC");
}

/* Campaign id with extra JSON members (may be ""), e.g. "\"price_micros\":1000". */
static inline void t_campaign(struct t_rows *r, int64_t id, int64_t adv, const char *extra)
{
    t_add(
        r, AP_SCHEMA_CAMPAIGN,
        "{\"id\":%lld,\"advertiser_id\":%lld,\"status\":\"active\",\"priority_tier\":\"standard\","
        "\"priority\":0,\"pricing_model\":\"cpm\",\"price_micros\":1000000,\"pacing\":\"asap\","
        "\"selection\":\"ecpm\",\"frequency_caps\":[],\"targeting\":{}%s%s}",
        (long long)id, (long long)adv, extra && *extra ? "," : "", extra ? extra : "");
}

/* Ad id of campaign cid with an html 300x250 creative (creative id = ad id). */
static inline void t_ad(struct t_rows *r, int64_t id, int64_t cid, int64_t adv, const char *extra)
{
    t_add(r, AP_SCHEMA_CREATIVE,
          "{\"id\":%lld,\"advertiser_id\":%lld,\"type\":\"html\",\"width\":300,\"height\":250,"
          "\"html\":\"<b>ad %lld</b>\",\"status\":\"active\",\"approval_status\":\"approved\"}",
          (long long)id, (long long)adv, (long long)id);
    t_add(r, AP_SCHEMA_AD,
          "{\"id\":%lld,\"campaign_id\":%lld,\"creative_id\":%lld,\"weight\":1,"
          "\"status\":\"active\",\"landing_url\":\"https://adv.example/%lld\","
          "\"targeting\":{}%s%s}",
          (long long)id, (long long)cid, (long long)id, (long long)id, extra && *extra ? "," : "",
          extra ? extra : "");
}

static inline struct ap_serve_snapshot *t_build(struct t_rows *r, struct ap_serve_delivery *d,
                                                int64_t now)
{
    struct ap_serve_rows in;
    memset(&in, 0, sizeof(in));
    for (int i = 0; i < AP_SCHEMA_RES_COUNT; i++)
        in.rows[i] = r->a[i];
    in.version = 1;
    in.now = now;
    struct ap_serve_snapshot *s = NULL;
    if (ap_serve_snapshot_build(&in, d, &s) != 0)
        abort();
    return s;
}

/* Context from "country=US;region=US-CA;city=Berlin;device=desktop;os=windows;browser=chrome;
 * lang=en,de;kw=a,b;seg=x,y;domain=news.example.com;ip=10.0.0.1;user=u1;nopers;nostorage;
 * now=123". Keyword and segment spans point into spec: keep it alive. */
static inline void t_ctx(struct ap_serve_ctx *c, const char *spec, char *scratch, size_t cap)
{
    ap_serve_ctx_init(c, T_NOW);
    snprintf(scratch, cap, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(scratch, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(tok, '=');
        char *v = eq ? eq + 1 : (char *)"";
        if (eq)
            *eq = '\0';
        if (!strcmp(tok, "country"))
            snprintf(c->country, sizeof(c->country), "%s", v);
        else if (!strcmp(tok, "region"))
            snprintf(c->region, sizeof(c->region), "%s", v);
        else if (!strcmp(tok, "city"))
            snprintf(c->city, sizeof(c->city), "%s", v);
        else if (!strcmp(tok, "device"))
            c->device = ap_serve_device_parse(ap_span_cstr(v));
        else if (!strcmp(tok, "os"))
            c->os = ap_serve_os_parse(ap_span_cstr(v));
        else if (!strcmp(tok, "browser"))
            c->browser = ap_serve_browser_parse(ap_span_cstr(v));
        else if (!strcmp(tok, "domain"))
            snprintf(c->domain, sizeof(c->domain), "%s", v);
        else if (!strcmp(tok, "ip"))
            snprintf(c->ip, sizeof(c->ip), "%s", v);
        else if (!strcmp(tok, "user"))
            snprintf(c->user_key, sizeof(c->user_key), "%s", v);
        else if (!strcmp(tok, "nopers"))
            c->personalisation_allowed = false;
        else if (!strcmp(tok, "nostorage"))
            c->storage_allowed = false;
        else if (!strcmp(tok, "now"))
            c->now = strtoll(v, NULL, 10);
        else if (!strcmp(tok, "lang") || !strcmp(tok, "kw") || !strcmp(tok, "seg")) {
            char *s2 = NULL;
            for (char *it = strtok_r(v, ",", &s2); it; it = strtok_r(NULL, ",", &s2)) {
                if (!strcmp(tok, "lang") && c->nlangs < AP_SERVE_CTX_MAX_LANGS)
                    snprintf(c->langs[c->nlangs++], 3, "%s", it);
                else if (!strcmp(tok, "kw") && c->nkeywords < AP_SERVE_CTX_MAX_KEYWORDS)
                    c->keywords[c->nkeywords++] = ap_span_cstr(it);
                else if (!strcmp(tok, "seg") && c->nsegments < AP_SERVE_CTX_MAX_SEGMENTS)
                    c->segments[c->nsegments++] = ap_span_cstr(it);
            }
        }
    }
}

/* One decision for placement 1; returns the ad id or 0. */
static inline int64_t t_decide1(const struct ap_serve_snapshot *s, struct ap_serve_delivery *d,
                                struct ap_serve_rng *rng, const struct ap_serve_ctx *ctx,
                                struct ap_arena *arena)
{
    struct ap_serve_slot_req slot = {1, 1};
    struct ap_serve_pick picks[AP_SERVE_MAX_COUNT];
    int np = 0;
    if (ap_serve_decide(s, d, rng, ctx, &slot, 1, NULL, arena, picks, &np) != 0)
        return -1;
    int64_t id = np ? picks[0].ad->id : 0;
    ap_arena_reset(arena);
    return id;
}

#endif
