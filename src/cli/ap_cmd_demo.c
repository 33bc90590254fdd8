/*
 * ap_cmd_demo: the demo data set (see the header). Three parts: a tiny raster (shapes and a 5x7
 * bitmap font) that draws the banners, a PNG encoder on zlib, and find-or-create through the
 * store API.
 */
#include "ap_cmd_demo.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../core/ap_error.h"
#include "../store/ap_store.h"

#define DEMO_PATH_MAX 4096
#define DEMO_MAX_PIXELS (1000u * 1000u) /* per image */

/* ---- raster ---------------------------------------------------------------------------------- */

struct rgb {
    uint8_t r, g, b;
};

struct img {
    uint32_t w, h;
    uint8_t *px; /* 3 bytes per pixel */
};

static void plot(struct img *im, int x, int y, struct rgb c)
{
    if (x < 0 || y < 0 || (uint32_t)x >= im->w || (uint32_t)y >= im->h)
        return;
    uint8_t *p = im->px + 3 * ((size_t)y * im->w + (size_t)x);
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

static void rect(struct img *im, int x, int y, int w, int h, struct rgb c)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            plot(im, i, j, c);
}

static void circle(struct img *im, int cx, int cy, int r, struct rgb c)
{
    for (int j = -r; j <= r; j++)
        for (int i = -r; i <= r; i++)
            if (i * i + j * j <= r * r)
                plot(im, cx + i, cy + j, c);
}

static long edge(int ax, int ay, int bx, int by, int px, int py)
{
    return (long)(bx - ax) * (py - ay) - (long)(by - ay) * (px - ax);
}

static void triangle(struct img *im, int x0, int y0, int x1, int y1, int x2, int y2, struct rgb c)
{
    int minx = x0 < x1 ? (x0 < x2 ? x0 : x2) : (x1 < x2 ? x1 : x2);
    int maxx = x0 > x1 ? (x0 > x2 ? x0 : x2) : (x1 > x2 ? x1 : x2);
    int miny = y0 < y1 ? (y0 < y2 ? y0 : y2) : (y1 < y2 ? y1 : y2);
    int maxy = y0 > y1 ? (y0 > y2 ? y0 : y2) : (y1 > y2 ? y1 : y2);
    for (int y = miny; y <= maxy; y++)
        for (int x = minx; x <= maxx; x++) {
            long a = edge(x0, y0, x1, y1, x, y), b = edge(x1, y1, x2, y2, x, y),
                 d = edge(x2, y2, x0, y0, x, y);
            if ((a >= 0 && b >= 0 && d >= 0) || (a <= 0 && b <= 0 && d <= 0))
                plot(im, x, y, c);
        }
}

/* 5x7 glyphs, one byte per row, bit 4 = leftmost column. */
static const struct {
    char ch;
    uint8_t rows[7];
} FONT[] = {
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'&', {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}},
    {'$', {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'\'', {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
};

static const uint8_t *glyph(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 32);
    for (size_t i = 0; i < sizeof(FONT) / sizeof(FONT[0]); i++)
        if (FONT[i].ch == c)
            return FONT[i].rows;
    return NULL; /* space and anything unknown: blank */
}

static void draw_text(struct img *im, int x, int y, int scale, const char *s, size_t n,
                      struct rgb c)
{
    for (size_t k = 0; k < n; k++, x += 6 * scale) {
        const uint8_t *g = glyph(s[k]);
        for (int row = 0; g && row < 7; row++)
            for (int col = 0; col < 5; col++)
                if (g[row] & (0x10 >> col))
                    rect(im, x + col * scale, y + row * scale, scale, scale, c);
    }
}

#define MAX_LINES 8

/* Word-wraps text into lines of at most cols characters: line i is text[start[i]..+len[i]).
 * Returns the number of lines, or 0 if a word is longer than cols or there are too many. */
static int wrap(const char *text, int cols, size_t start[MAX_LINES], size_t len[MAX_LINES])
{
    int n = 0;
    size_t i = 0, tl = strlen(text);
    while (i < tl) {
        while (i < tl && text[i] == ' ')
            i++;
        if (i >= tl)
            break;
        size_t s = i, last_fit = 0;
        bool any = false;
        for (size_t j = i; j <= tl; j++) {
            if (j == tl || text[j] == ' ') {
                if ((int)(j - s) > cols)
                    break;
                last_fit = j;
                any = true;
            }
        }
        if (!any || n == MAX_LINES)
            return 0;
        start[n] = s;
        len[n++] = last_fit - s;
        i = last_fit;
    }
    return n;
}

/* Draws text centred in the box at the largest scale <= max_scale that fits. */
static void text_box(struct img *im, int bx, int by, int bw, int bh, const char *text,
                     int max_scale, struct rgb c)
{
    size_t start[MAX_LINES], len[MAX_LINES];
    for (int scale = max_scale; scale >= 1; scale--) {
        int n = wrap(text, (bw + scale) / (6 * scale), start, len);
        int height = n * 9 * scale - 2 * scale;
        if (n == 0 || height > bh)
            continue;
        int y = by + (bh - height) / 2;
        for (int i = 0; i < n; i++, y += 9 * scale) {
            int w = (int)len[i] * 6 * scale - scale;
            draw_text(im, bx + (bw - w) / 2, y, scale, text + start[i], len[i], c);
        }
        return;
    }
}

/* ---- the demo's advertisers and their banners --------------------------------------------- */

enum motif { MOTIF_MOUNTAINS, MOTIF_CARD, MOTIF_CUP, MOTIF_PAPER };

struct campaign_def {
    const char *name;
    const char *tier, *pricing, *pacing, *selection, *goal_type;
    int64_t price_micros, daily_micros, lifetime_micros, goal_count;
    const char *caps;      /* JSON array */
    const char *targeting; /* JSON object */
};

struct brand_def {
    const char *name, *timezone, *category;
    const char *headline, *tagline, *cta, *landing;
    struct rgb bg, accent, text, button, button_text;
    enum motif motif;
    struct campaign_def campaign;
};

static const struct brand_def BRANDS[] = {
    {"Northwind Outfitters",
     "America/New_York",
     "IAB17",
     "Spring trail sale",
     "Boots, packs and tents up to 40% off",
     "Shop now",
     "https://northwind.example/spring",
     {0x1f, 0x4d, 0x3a},
     {0x7f, 0xb0, 0x69},
     {0xff, 0xff, 0xff},
     {0xf2, 0x8c, 0x28},
     {0xff, 0xff, 0xff},
     MOTIF_MOUNTAINS,
     {"Spring Trail Sale", "standard", "cpm", "even", "ecpm", "none", 4500000, 150000000,
      5000000000, 0, "[{\"count\": 8, \"window_seconds\": 86400, \"scope\": \"campaign\"}]",
      "{\"device_types\": [\"desktop\", \"mobile\", \"tablet\"], "
      "\"keywords\": {\"any\": [\"news\", \"outdoors\", \"parks\"]}}"}},
    {"Brightline Bank",
     "America/Chicago",
     "IAB13",
     "2% cash back on everything",
     "The Brightline card. No annual fee.",
     "Apply today",
     "https://brightline.example/card",
     {0x13, 0x2a, 0x5c},
     {0x3d, 0x6f, 0xc4},
     {0xff, 0xff, 0xff},
     {0xe8, 0xc5, 0x47},
     {0x13, 0x2a, 0x5c},
     MOTIF_CARD,
     {"Cashback Card", "standard", "cpc", "even", "ecpm", "none", 1200000, 200000000, 0, 0,
      "[{\"count\": 3, \"window_seconds\": 3600, \"scope\": \"ad\"}]",
      "{\"countries_include\": [\"US\"], \"dayparts\": [{\"days\": [1, 2, 3, 4, 5], "
      "\"hours\": [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]}], "
      "\"keywords\": {\"none\": [\"crypto\"]}}"}},
    {"Pixel & Pine Coffee",
     "America/Los_Angeles",
     "IAB8",
     "Morning blend",
     "Small-batch roast, delivered fresh",
     "Order now",
     "https://pixelpine.example/morning",
     {0x4a, 0x2c, 0x1d},
     {0xc8, 0x9f, 0x6e},
     {0xff, 0xf4, 0xe0},
     {0xe0, 0x5a, 0x3c},
     {0xff, 0xff, 0xff},
     MOTIF_CUP,
     {"Morning Blend", "standard", "cpm", "asap", "lottery", "impressions", 3000000, 80000000, 0,
      250000, "[{\"count\": 10, \"window_seconds\": 86400, \"scope\": \"campaign\"}]",
      "{\"dayparts\": [{\"days\": [0, 1, 2, 3, 4, 5, 6], \"hours\": [5, 6, 7, 8, 9, 10, 11]}], "
      "\"keywords\": {\"any\": [\"news\", \"local\", \"food\"]}}"}},
    /* The house campaign: no targeting, no caps, no budget, a creative for every size. */
    {"The Morning Ledger (house)",
     "America/New_York",
     "IAB12",
     "Subscribe to the Ledger",
     "Unlimited local news for $1 a week",
     "Subscribe",
     "https://ledger.example/subscribe",
     {0xf4, 0xf1, 0xea},
     {0x1d, 0x2a, 0x3a},
     {0x1d, 0x2a, 0x3a},
     {0xb2, 0x22, 0x22},
     {0xff, 0xff, 0xff},
     MOTIF_PAPER,
     {"Ledger Subscriptions (house)", "house", "cpm", "asap", "ecpm", "none", 100000, 0, 0, 0, "[]",
      "{}"}},
};

#define N_BRANDS (sizeof(BRANDS) / sizeof(BRANDS[0]))

static const struct {
    const char *slot, *size, *placement;
    uint32_t w, h;
} SIZES[] = {
    {"leaderboard", "728x90", "Leaderboard 728x90 (top)", 728, 90},
    {"rectangle", "300x250", "Medium Rectangle 300x250 (in article)", 300, 250},
    {"skyscraper", "160x600", "Wide Skyscraper 160x600 (sidebar)", 160, 600},
    {"mobile", "320x50", "Mobile Banner 320x50 (sticky footer)", 320, 50},
};

#define N_SIZES (sizeof(SIZES) / sizeof(SIZES[0]))

static void draw_motif(struct img *im, const struct brand_def *b, int x, int y, int w, int h)
{
    int s = w < h ? w : h, cx = x + w / 2, cy = y + h / 2;
    switch (b->motif) {
    case MOTIF_MOUNTAINS:
        circle(im, cx + s / 4, cy - s / 5, s / 8, b->button);
        triangle(im, x + w / 2 - s / 2, y + h / 2 + s * 2 / 5, cx - s / 8, cy - s / 4, cx + s / 4,
                 y + h / 2 + s * 2 / 5, b->accent);
        triangle(im, cx - s / 8, y + h / 2 + s * 2 / 5, cx + s / 5, cy - s / 8, x + w / 2 + s / 2,
                 y + h / 2 + s * 2 / 5, b->text);
        break;
    case MOTIF_CARD:
        rect(im, cx - s * 2 / 5, cy - s / 4, s * 4 / 5, s / 2, b->accent);
        rect(im, cx - s * 2 / 5, cy - s / 8, s * 4 / 5, s / 10, b->bg);
        rect(im, cx - s / 3, cy + s / 20, s / 7, s / 10, b->button);
        break;
    case MOTIF_CUP:
        circle(im, cx + s / 5, cy, s / 7, b->accent);
        circle(im, cx + s / 5, cy, s / 14, b->bg);
        rect(im, cx - s / 4, cy - s / 5, s * 2 / 5, s * 2 / 5, b->accent);
        rect(im, cx - s / 3, cy + s / 5, s * 2 / 3, s / 16 + 1, b->text);
        break;
    case MOTIF_PAPER:
        rect(im, cx - s / 3, cy - s * 2 / 5, s * 2 / 3, s * 4 / 5, (struct rgb){0xff, 0xff, 0xff});
        rect(im, cx - s / 4, cy - s / 3, s / 2, s / 8, b->accent);
        for (int i = 0; i < 4; i++)
            rect(im, cx - s / 4, cy - s / 8 + i * s / 8, s / 2, s / 20 + 1, b->accent);
        break;
    }
}

static void button(struct img *im, const struct brand_def *b, int x, int y, int w, int h)
{
    rect(im, x, y, w, h, b->button);
    text_box(im, x + 2, y + 2, w - 4, h - 4, b->cta, 3, b->button_text);
}

/* Draws the banner of brand b in size w x h. */
static void draw_banner(struct img *im, const struct brand_def *b)
{
    int w = (int)im->w, h = (int)im->h;
    rect(im, 0, 0, w, h, b->bg);
    if (w >= 3 * h) { /* leaderboard, mobile banner: motif | text | button */
        int bw = w / 5, pad = h / 10 + 2;
        draw_motif(im, b, 0, 0, h, h);
        text_box(im, h + pad, pad, w - h - bw - 3 * pad, h * 3 / 5 - pad, b->headline, 4, b->text);
        text_box(im, h + pad, h * 3 / 5, w - h - bw - 3 * pad, h * 2 / 5 - pad, b->tagline, 2,
                 b->accent.r + b->accent.g > 200 ? b->accent : b->text);
        button(im, b, w - bw - pad, h / 4, bw, h / 2);
    } else if (h >= 2 * w) { /* skyscraper: motif on top, text, button at the bottom */
        draw_motif(im, b, 0, h / 20, w, w);
        text_box(im, 8, w + h / 20, w - 16, h / 3, b->headline, 4, b->text);
        text_box(im, 8, w + h / 20 + h / 3, w - 16, h / 6, b->tagline, 2, b->text);
        button(im, b, w / 8, h - h / 8, w * 3 / 4, h / 14);
    } else { /* rectangle: headline over motif, tagline, button */
        text_box(im, 10, 8, w - 20, h / 4, b->headline, 4, b->text);
        draw_motif(im, b, w / 4, h / 4 + 4, w / 2, h * 2 / 5);
        text_box(im, 10, h * 2 / 3, w - 20, h / 7, b->tagline, 2, b->text);
        button(im, b, w / 4, h - h / 6 - 6, w / 2, h / 6);
    }
    /* a 1-pixel frame so the ad stands out from the page */
    rect(im, 0, 0, w, 1, b->accent);
    rect(im, 0, h - 1, w, 1, b->accent);
    rect(im, 0, 0, 1, h, b->accent);
    rect(im, w - 1, 0, 1, h, b->accent);
}

/* ---- PNG ------------------------------------------------------------------------------------- */

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends a chunk (length, type, data, CRC over type and data) at *pos. */
static void chunk(uint8_t *buf, size_t *pos, const char *type, const uint8_t *data, size_t n)
{
    uint8_t *p = buf + *pos;
    be32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    be32(p + 8 + n, (uint32_t)crc32(0, p + 4, (uInt)(n + 4)));
    *pos += 12 + n;
}

int ap_cmd_demo_png(const uint8_t *rgb, uint32_t width, uint32_t height, uint8_t **out, size_t *len)
{
    if (!width || !height || (uint64_t)width * height > DEMO_MAX_PIXELS)
        return AP_EINVAL;
    size_t stride = 1 + 3 * (size_t)width, raw_len = stride * height;
    uint8_t *raw = malloc(raw_len);
    uLongf zlen = compressBound((uLong)raw_len);
    uint8_t *z = malloc(zlen), *png = NULL;
    int rc = AP_ENOMEM;
    if (!raw || !z)
        goto done;
    for (uint32_t y = 0; y < height; y++) {
        raw[y * stride] = 0; /* filter: none */
        memcpy(raw + y * stride + 1, rgb + (size_t)y * 3 * width, 3 * (size_t)width);
    }
    if (compress2(z, &zlen, raw, (uLong)raw_len, 9) != Z_OK)
        goto done;
    png = malloc(8 + 25 + 12 + zlen + 12);
    if (!png)
        goto done;
    static const uint8_t SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13];
    be32(ihdr, width);
    be32(ihdr + 4, height);
    ihdr[8] = 8;  /* bits per sample */
    ihdr[9] = 2;  /* colour type: RGB */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* no interlace */
    size_t pos = 8;
    memcpy(png, SIG, 8);
    chunk(png, &pos, "IHDR", ihdr, sizeof(ihdr));
    chunk(png, &pos, "IDAT", z, zlen);
    chunk(png, &pos, "IEND", NULL, 0);
    *out = png;
    *len = pos;
    png = NULL;
    rc = AP_OK;
done:
    free(png);
    free(z);
    free(raw);
    return rc;
}

/* ---- the store --------------------------------------------------------------------------------
 */

struct demo {
    struct ap_store *st;
    const char *dir;
    int created, existing;
};

/* Finds the first row of res (filtered by ffield = fval when ffield is set) whose key equals
 * want. *out: a new reference or NULL. */
static int find_row(struct demo *d, enum ap_schema_res res, const char *ffield, int64_t fval,
                    const char *key, const json_t *want, json_t **out)
{
    char fbuf[32], cursor[256] = "";
    struct ap_store_filter f = {ffield, fbuf};
    snprintf(fbuf, sizeof(fbuf), "%lld", (long long)fval);
    *out = NULL;
    for (;;) {
        struct ap_store_list_query q = {.filters = ffield ? &f : NULL,
                                        .nfilters = ffield ? 1 : 0,
                                        .cursor = cursor,
                                        .limit = AP_STORE_LIST_MAX};
        struct ap_schema_errors errs;
        json_t *page = NULL;
        ap_schema_errors_init(&errs);
        int rc = ap_store_list(d->st, res, &q, NULL, &page, &errs);
        if (rc != AP_OK)
            return rc;
        size_t i;
        json_t *row;
        json_array_foreach (json_object_get(page, "data"), i, row) {
            if (json_equal(json_object_get(row, key), want)) {
                *out = json_incref(row);
                json_decref(page);
                return AP_OK;
            }
        }
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        bool more = next && *next && strlen(next) < sizeof(cursor);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(page);
        if (!more)
            return AP_OK;
    }
}

/* Finds (by key) or creates (from fields, stolen) one row; *id receives its id. */
static int ensure(struct demo *d, enum ap_schema_res res, const char *ffield, int64_t fval,
                  const char *key, json_t *fields, const char *label, int64_t *id)
{
    json_t *row = NULL;
    struct ap_schema_errors errs;
    int rc = AP_ENOMEM;
    if (!fields)
        goto done;
    rc = find_row(d, res, ffield, fval, key, json_object_get(fields, key), &row);
    if (rc != AP_OK)
        goto done;
    bool existed = row != NULL;
    if (!existed) {
        ap_schema_errors_init(&errs);
        rc = ap_store_create(d->st, res, fields, NULL, &row, &errs);
        if (rc != AP_OK) {
            fprintf(stderr, "adplatform demo: cannot create %s %s: %s\n", ap_schema_get(res)->name,
                    label, ap_strerror(rc));
            for (size_t i = 0; rc == AP_EINVAL && i < errs.n; i++)
                fprintf(stderr, "  %s: %s\n", errs.items[i].field, errs.items[i].message);
            goto done;
        }
    }
    *id = (int64_t)json_integer_value(json_object_get(row, "id"));
    existed ? d->existing++ : d->created++;
    printf("  %-10s #%-4lld %s%s\n", ap_schema_get(res)->name, (long long)*id, label,
           existed ? "  (already there)" : "");
done:
    json_decref(row);
    json_decref(fields);
    return rc;
}

/* Writes data to <dir>/creatives/<ab>/<sha>.png unless that file exists (content-addressed,
 * the layout of the REST API's upload, so GET /assets/<sha>.png serves it). */
static int store_file(struct demo *d, const char *sha, const uint8_t *data, size_t len)
{
    char dir[DEMO_PATH_MAX], path[DEMO_PATH_MAX], tmp[DEMO_PATH_MAX];
    struct stat st;
    int n1 = snprintf(dir, sizeof(dir), "%s/creatives", d->dir);
    if (n1 < 0 || (size_t)n1 >= sizeof(dir) - 8)
        return AP_EINVAL;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return ap_error_from_errno(errno);
    snprintf(dir + n1, sizeof(dir) - (size_t)n1, "/%.2s", sha);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return ap_error_from_errno(errno);
    int n2 = snprintf(path, sizeof(path), "%s/%s.png", dir, sha);
    int n3 = snprintf(tmp, sizeof(tmp), "%s/.demo-XXXXXX", dir);
    if (n2 < 0 || (size_t)n2 >= sizeof(path) || n3 < 0 || (size_t)n3 >= sizeof(tmp))
        return AP_EINVAL;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len)
        return AP_OK;
    int fd = mkostemp(tmp, O_CLOEXEC), rc = AP_OK;
    if (fd < 0)
        return ap_error_from_errno(errno);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? ap_error_from_errno(errno) : AP_EIO;
            break;
        }
        off += (size_t)w;
    }
    if (!rc && (fchmod(fd, 0640) != 0 || fsync(fd) != 0))
        rc = ap_error_from_errno(errno);
    if (close(fd) != 0 && !rc)
        rc = ap_error_from_errno(errno);
    if (!rc && rename(tmp, path) != 0)
        rc = ap_error_from_errno(errno);
    if (rc)
        unlink(tmp);
    return rc;
}

/* Draws, stores and registers the creative of brand b in size s. */
static int ensure_creative(struct demo *d, const struct brand_def *b, size_t s, int64_t adv,
                           int64_t *id)
{
    struct img im = {SIZES[s].w, SIZES[s].h, NULL};
    uint8_t *png = NULL, sha[crypto_hash_sha256_BYTES];
    size_t png_len = 0;
    char hex[crypto_hash_sha256_BYTES * 2 + 1], name[160];
    int rc = AP_ENOMEM;
    if (!(im.px = calloc((size_t)im.w * im.h, 3)))
        goto done;
    draw_banner(&im, b);
    if ((rc = ap_cmd_demo_png(im.px, im.w, im.h, &png, &png_len)))
        goto done;
    crypto_hash_sha256(sha, png, png_len);
    sodium_bin2hex(hex, sizeof(hex), sha, sizeof(sha));
    if ((rc = store_file(d, hex, png, png_len))) {
        fprintf(stderr, "adplatform demo: cannot store the image %s.png: %s\n", hex,
                ap_strerror(rc));
        goto done;
    }
    snprintf(name, sizeof(name), "%s %s", b->name, SIZES[s].size);
    rc = ensure(d, AP_SCHEMA_CREATIVE, "advertiser_id", adv, "sha256",
                json_pack("{s:I, s:s, s:s, s:I, s:I, s:s, s:s, s:I}", "advertiser_id",
                          (json_int_t)adv, "name", name, "type", "image", "width", (json_int_t)im.w,
                          "height", (json_int_t)im.h, "mime", "image/png", "sha256", hex,
                          "size_bytes", (json_int_t)png_len),
                name, id);
done:
    free(png);
    free(im.px);
    return rc;
}

static json_t *money_or_null(int64_t micros)
{
    return micros > 0 ? json_integer((json_int_t)micros) : json_null();
}

static int load_brand(struct demo *d, const struct brand_def *b, json_t *summary)
{
    int64_t adv = 0, camp = 0;
    int rc = ensure(d, AP_SCHEMA_ADVERTISER, NULL, 0, "name",
                    json_pack("{s:s, s:s, s:s, s:s}", "name", b->name, "currency", "USD",
                              "timezone", b->timezone, "category", b->category),
                    b->name, &adv);
    if (rc)
        return rc;
    const struct campaign_def *c = &b->campaign;
    json_t *caps = json_loads(c->caps, 0, NULL), *targeting = json_loads(c->targeting, 0, NULL);
    json_t *fields = NULL;
    if (caps && targeting) /* json_pack steals both ("o") */
        fields = json_pack(
            "{s:I, s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:s, s:o, s:s, s:s, s:o}", "advertiser_id",
            (json_int_t)adv, "name", c->name, "status", "active", "priority_tier", c->tier,
            "pricing_model", c->pricing, "price_micros", (json_int_t)c->price_micros,
            "budget_daily_micros", money_or_null(c->daily_micros), "budget_lifetime_micros",
            money_or_null(c->lifetime_micros), "pacing", c->pacing, "frequency_caps", caps,
            "selection", c->selection, "goal_type", c->goal_type, "targeting", targeting);
    else
        json_decref(caps), json_decref(targeting);
    if (fields && c->goal_count > 0)
        json_object_set_new(fields, "goal_count", json_integer((json_int_t)c->goal_count));
    if ((rc = ensure(d, AP_SCHEMA_CAMPAIGN, "advertiser_id", adv, "name", fields, c->name, &camp)))
        return rc;
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t cre = 0, ad = 0;
        char label[200];
        if ((rc = ensure_creative(d, b, s, adv, &cre)))
            return rc;
        snprintf(label, sizeof(label), "%s %s", c->name, SIZES[s].size);
        if ((rc = ensure(d, AP_SCHEMA_AD, "campaign_id", camp, "creative_id",
                         json_pack("{s:I, s:I, s:s, s:s, s:I}", "campaign_id", (json_int_t)camp,
                                   "creative_id", (json_int_t)cre, "landing_url", b->landing,
                                   "status", "active", "weight", (json_int_t)1),
                         label, &ad)))
            return rc;
    }
    json_array_append_new(summary, json_pack("{s:I, s:s, s:I, s:s, s:s}", "id", (json_int_t)adv,
                                             "name", b->name, "campaign_id", (json_int_t)camp,
                                             "campaign", c->name, "tier", c->tier));
    return AP_OK;
}

static int write_demo_json(struct demo *d, json_t *doc)
{
    char path[DEMO_PATH_MAX], tmp[DEMO_PATH_MAX];
    int n1 = snprintf(path, sizeof(path), "%s/demo.json", d->dir);
    int n2 = snprintf(tmp, sizeof(tmp), "%s/.demo.json.tmp", d->dir);
    if (n1 < 0 || (size_t)n1 >= sizeof(path) || n2 < 0 || (size_t)n2 >= sizeof(tmp))
        return AP_EINVAL;
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return AP_ENOMEM;
    /* unchanged content: leave the file alone (a second run changes nothing) */
    FILE *old = fopen(path, "re");
    if (old) {
        size_t tl = strlen(text);
        char *buf = malloc(tl + 2);
        size_t n = buf ? fread(buf, 1, tl + 2, old) : 0;
        fclose(old);
        bool same = buf && n == tl + 1 && memcmp(buf, text, tl) == 0 && buf[tl] == '\n';
        free(buf);
        if (same) {
            free(text);
            return AP_OK;
        }
    }
    FILE *f = fopen(tmp, "we");
    int rc = AP_OK;
    if (!f) {
        free(text);
        return ap_error_from_errno(errno);
    }
    if (fprintf(f, "%s\n", text) < 0)
        rc = AP_EIO;
    if (fclose(f) != 0 && !rc)
        rc = ap_error_from_errno(errno);
    if (!rc && rename(tmp, path) != 0)
        rc = ap_error_from_errno(errno);
    if (rc)
        unlink(tmp);
    free(text);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: adplatform demo --data-dir DIR\n\n"
                 "Loads demo advertisers, campaigns, generated banner creatives (728x90, "
                 "300x250,\n160x600, 320x50), a publisher, its site and placements into the "
                 "store under DIR\n(default $ADPLATFORM_DATA_DIR or ./data), and writes "
                 "DIR/demo.json for the\n/demo page. Running it again changes nothing.\n");
}

int ap_cmd_demo(int argc, char **argv)
{
    const char *dir = getenv("ADPLATFORM_DATA_DIR");
    struct demo d = {0};
    json_t *advs = json_array(), *places = json_array(), *doc = NULL;
    char path[DEMO_PATH_MAX];
    int64_t pub = 0, site = 0;
    int rc, code = 1;

    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            code = 0;
            goto done;
        } else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strncmp(argv[i], "--data-dir=", 11)) {
            dir = argv[i] + 11;
        } else {
            fprintf(stderr, "adplatform demo: unknown option %s\n\n", argv[i]);
            usage(stderr);
            code = 2;
            goto done;
        }
    }
    if (!dir || !*dir)
        dir = "./data";
    d.dir = dir;
    if (!advs || !places)
        goto done;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "adplatform demo: cannot create %s: %s\n", dir, strerror(errno));
        goto done;
    }
    if (snprintf(path, sizeof(path), "%s/adplatform.db", dir) >= (int)sizeof(path)) {
        fprintf(stderr, "adplatform demo: data dir path too long\n");
        goto done;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "adplatform demo: libsodium cannot start\n");
        goto done;
    }
    if ((rc = ap_store_open(path, NULL, &d.st)) != AP_OK) {
        fprintf(stderr, "adplatform demo: cannot open the store %s: %s\n", path, ap_strerror(rc));
        goto done;
    }
    printf("Loading the demo into %s:\n", path);
    for (size_t i = 0; i < N_BRANDS; i++)
        if (load_brand(&d, &BRANDS[i], advs) != AP_OK)
            goto done;
    if (ensure(&d, AP_SCHEMA_PUBLISHER, NULL, 0, "name",
               json_pack("{s:s, s:s, s:I, s:s}", "name", "The Morning Ledger Media", "currency",
                         "USD", "revenue_share_ppm", (json_int_t)700000, "timezone",
                         "America/New_York"),
               "The Morning Ledger Media", &pub) != AP_OK)
        goto done;
    if (ensure(&d, AP_SCHEMA_SITE, "publisher_id", pub, "domain",
               json_pack("{s:I, s:s, s:s, s:s}", "publisher_id", (json_int_t)pub, "name",
                         "The Morning Ledger", "kind", "site", "domain", "ledger.example"),
               "The Morning Ledger (ledger.example)", &site) != AP_OK)
        goto done;
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t id = 0;
        if (ensure(&d, AP_SCHEMA_PLACEMENT, "site_id", site, "name",
                   json_pack("{s:I, s:s, s:[s], s:[s,s]}", "site_id", (json_int_t)site, "name",
                             SIZES[s].placement, "sizes", SIZES[s].size, "ad_types", "image",
                             "html"),
                   SIZES[s].placement, &id) != AP_OK)
            goto done;
        json_array_append_new(places, json_pack("{s:s, s:I, s:s, s:s}", "slot", SIZES[s].slot, "id",
                                                (json_int_t)id, "size", SIZES[s].size, "name",
                                                SIZES[s].placement));
    }
    doc = json_pack("{s:i, s:I, s:I, s:{s:s, s:s}, s:O, s:O}", "version", 1, "publisher_id",
                    (json_int_t)pub, "site_id", (json_int_t)site, "site", "name",
                    "The Morning Ledger", "domain", "ledger.example", "placements", places,
                    "advertisers", advs);
    if (!doc || (rc = write_demo_json(&d, doc)) != AP_OK) {
        fprintf(stderr, "adplatform demo: cannot write %s/demo.json\n", dir);
        goto done;
    }
    if (d.created)
        printf("Demo loaded: %d objects created, %d already there.\n", d.created, d.existing);
    else
        printf("The demo was already loaded: nothing changed (%d objects).\n", d.existing);
    printf("Start the server with --data-dir %s and open http://127.0.0.1:8080/demo\n", dir);
    code = fflush(stdout) == 0 ? 0 : 1;
done:
    json_decref(doc);
    json_decref(places);
    json_decref(advs);
    ap_store_close(d.st);
    return code;
}
