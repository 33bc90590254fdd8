/*
 * ap_api_creative: image uploads and the assets they become.
 *
 * POST /api/v1/creatives/upload?advertiser_id=N&name=... takes the raw image as the body
 * (Content-Type: image/png, image/jpeg, image/gif or image/webp). The type is sniffed from the
 * bytes and must agree with the declared one (a file lying about its type is refused: 422); the
 * pixel size comes from the image's own headers; the whole structure is walked so a truncated
 * file is refused too. The file is stored content-addressed, once, at
 * <data-dir>/creatives/<first two hex digits>/<sha256>.<ext> (written to a temporary file,
 * fsynced, renamed), and the creative row points at it by sha256 and mime.
 *
 * GET /assets/<sha256>.<ext> serves such a file to anyone (ad markup loads it) with
 * `Cache-Control: public, max-age=31536000, immutable`: the name is the content, so it never
 * changes. It reads one file of at most AP_API_UPLOAD_MAX bytes per request.
 */
#include "ap_api_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"

#define SHA256_HEX 64

static const struct {
    enum ap_api_image_type type;
    const char *mime;
    const char *ext;
} IMAGE_TYPES[] = {
    {AP_API_IMAGE_PNG, "image/png", "png"},
    {AP_API_IMAGE_JPEG, "image/jpeg", "jpg"},
    {AP_API_IMAGE_GIF, "image/gif", "gif"},
    {AP_API_IMAGE_WEBP, "image/webp", "webp"},
};
#define N_IMAGE_TYPES (sizeof(IMAGE_TYPES) / sizeof(IMAGE_TYPES[0]))

/* ---- byte helpers --------------------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le24(const uint8_t *p)
{
    return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | le24(p);
}

/* n more bytes are available at pos */
static bool have(size_t len, size_t pos, size_t n)
{
    return pos <= len && len - pos >= n;
}

/* ---- CRC-32 (PNG chunks) ---------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    pthread_once(&crc_once, crc_init);
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---- the four formats -------------------------------------------------------------------------
 */

#define TRUNCATED(fmt) (*why = "the " fmt " file is truncated", AP_EINVAL)
#define CORRUPT(msg) (*why = (msg), AP_EINVAL)

static int probe_png(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, const char **why)
{
    size_t pos = 8;
    bool first = true, idat = false;
    for (;;) {
        if (!have(len, pos, 12))
            return TRUNCATED("PNG");
        uint32_t n = be32(p + pos);
        if (n > 0x7FFFFFFFu)
            return CORRUPT("corrupt PNG: bad chunk length");
        if (!have(len, pos + 12, n))
            return TRUNCATED("PNG");
        const uint8_t *type = p + pos + 4, *data = p + pos + 8;
        if (crc32_of(type, (size_t)n + 4) != be32(data + n))
            return CORRUPT("corrupt PNG: bad chunk checksum");
        if (first) {
            if (memcmp(type, "IHDR", 4) != 0 || n != 13)
                return CORRUPT("corrupt PNG: no IHDR chunk first");
            *w = be32(data);
            *h = be32(data + 4);
            first = false;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            idat = true;
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        pos += 12 + (size_t)n;
    }
    if (!idat)
        return CORRUPT("corrupt PNG: no image data");
    return AP_OK;
}

static bool jpeg_is_sof(uint8_t m)
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

static int probe_jpeg(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, const char **why)
{
    size_t pos = 2;
    bool sof = false, sos = false;
    for (;;) {
        if (pos >= len)
            return TRUNCATED("JPEG");
        if (p[pos] != 0xFF)
            return CORRUPT("corrupt JPEG: expected a marker");
        while (pos < len && p[pos] == 0xFF)
            pos++;
        if (pos >= len)
            return TRUNCATED("JPEG");
        uint8_t m = p[pos++];
        if (m == 0xD9) { /* EOI */
            if (!sos)
                return CORRUPT("corrupt JPEG: no image data");
            return AP_OK;
        }
        if (m == 0x00 || m == 0xD8)
            return CORRUPT("corrupt JPEG: unexpected marker");
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01)
            continue; /* no length */
        if (!have(len, pos, 2))
            return TRUNCATED("JPEG");
        size_t seg = be16(p + pos);
        if (seg < 2)
            return CORRUPT("corrupt JPEG: bad segment length");
        if (!have(len, pos, seg))
            return TRUNCATED("JPEG");
        if (jpeg_is_sof(m)) {
            if (seg < 8)
                return CORRUPT("corrupt JPEG: short frame header");
            *h = be16(p + pos + 3);
            *w = be16(p + pos + 5);
            sof = true;
        }
        pos += seg;
        if (m != 0xDA) /* SOS: entropy-coded data follows until the next marker */
            continue;
        if (!sof)
            return CORRUPT("corrupt JPEG: scan before the frame header");
        sos = true;
        for (;;) {
            const uint8_t *ff = pos < len ? memchr(p + pos, 0xFF, len - pos) : NULL;
            if (!ff || (size_t)(ff - p) + 1 >= len)
                return TRUNCATED("JPEG");
            pos = (size_t)(ff - p);
            uint8_t nx = p[pos + 1];
            if (nx == 0x00 || (nx >= 0xD0 && nx <= 0xD7))
                pos += 2; /* stuffed byte or restart marker: still in the scan */
            else if (nx == 0xFF)
                pos += 1; /* fill byte */
            else
                break; /* a marker: back to the segment loop */
        }
    }
}

/* Skips GIF data sub-blocks (size byte, data; a zero size ends them). */
static int gif_skip_blocks(const uint8_t *p, size_t len, size_t *pos)
{
    for (;;) {
        if (!have(len, *pos, 1))
            return AP_EAGAIN;
        size_t n = p[(*pos)++];
        if (n == 0)
            return AP_OK;
        if (!have(len, *pos, n))
            return AP_EAGAIN;
        *pos += n;
    }
}

static int probe_gif(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, const char **why)
{
    if (!have(len, 0, 13))
        return TRUNCATED("GIF");
    *w = le16(p + 6);
    *h = le16(p + 8);
    size_t pos = 13;
    if (p[10] & 0x80)
        pos += (size_t)3 << ((p[10] & 7) + 1); /* global colour table */
    int images = 0;
    for (;;) {
        if (!have(len, pos, 1))
            return TRUNCATED("GIF");
        uint8_t b = p[pos++];
        if (b == 0x3B) /* trailer */
            break;
        if (b == 0x21) { /* extension: label, sub-blocks */
            if (!have(len, pos, 1))
                return TRUNCATED("GIF");
            pos++;
        } else if (b == 0x2C) { /* image descriptor, local colour table, LZW code size */
            if (!have(len, pos, 9))
                return TRUNCATED("GIF");
            uint8_t flags = p[pos + 8];
            pos += 9;
            if (flags & 0x80)
                pos += (size_t)3 << ((flags & 7) + 1);
            if (!have(len, pos, 1))
                return TRUNCATED("GIF");
            pos++;
            images++;
        } else {
            return CORRUPT("corrupt GIF: unknown block");
        }
        if (gif_skip_blocks(p, len, &pos) != AP_OK)
            return TRUNCATED("GIF");
    }
    if (!images)
        return CORRUPT("corrupt GIF: no image data");
    return AP_OK;
}

static int probe_webp(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, const char **why)
{
    uint32_t riff = le32(p + 4);
    if (riff < 4 || riff % 2)
        return CORRUPT("corrupt WebP: bad RIFF size");
    if (riff > len - 8)
        return TRUNCATED("WebP");
    size_t end = 8 + (size_t)riff, pos = 12;
    bool first = true, extended = false, image = false;
    while (pos < end) {
        if (!have(end, pos, 8))
            return TRUNCATED("WebP");
        const uint8_t *cc = p + pos;
        size_t n = le32(p + pos + 4);
        pos += 8;
        if (!have(end, pos, n))
            return TRUNCATED("WebP");
        const uint8_t *d = p + pos;
        if (first) {
            if (memcmp(cc, "VP8 ", 4) == 0) {
                if (n < 10 || (d[0] & 1) || d[3] != 0x9D || d[4] != 0x01 || d[5] != 0x2A)
                    return CORRUPT("corrupt WebP: bad VP8 key frame header");
                *w = le16(d + 6) & 0x3FFF;
                *h = le16(d + 8) & 0x3FFF;
                image = true;
            } else if (memcmp(cc, "VP8L", 4) == 0) {
                if (n < 5 || d[0] != 0x2F)
                    return CORRUPT("corrupt WebP: bad VP8L header");
                uint32_t bits = le32(d + 1);
                *w = (bits & 0x3FFF) + 1;
                *h = ((bits >> 14) & 0x3FFF) + 1;
                image = true;
            } else if (memcmp(cc, "VP8X", 4) == 0) {
                if (n < 10)
                    return CORRUPT("corrupt WebP: short VP8X header");
                *w = le24(d + 4) + 1;
                *h = le24(d + 7) + 1;
                extended = true;
            } else {
                return CORRUPT("corrupt WebP: unknown first chunk");
            }
            first = false;
        } else if (extended && (memcmp(cc, "VP8 ", 4) == 0 || memcmp(cc, "VP8L", 4) == 0 ||
                                memcmp(cc, "ANMF", 4) == 0)) {
            image = true;
        }
        pos += n + (n & 1);
    }
    if (!image)
        return CORRUPT("corrupt WebP: no image data");
    return AP_OK;
}

int ap_api_image_probe(const void *data, size_t len, struct ap_api_image_info *out,
                       const char **why)
{
    const uint8_t *p = data;
    const char *dummy;
    uint32_t w = 0, h = 0;
    int rc;
    enum ap_api_image_type type;
    if (!why)
        why = &dummy;
    *why = NULL;
    memset(out, 0, sizeof(*out));
    if (!p || len == 0)
        return CORRUPT("the file is empty");
    if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) {
        type = AP_API_IMAGE_PNG;
        rc = probe_png(p, len, &w, &h, why);
    } else if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
        type = AP_API_IMAGE_JPEG;
        rc = probe_jpeg(p, len, &w, &h, why);
    } else if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0)) {
        type = AP_API_IMAGE_GIF;
        rc = probe_gif(p, len, &w, &h, why);
    } else if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
        type = AP_API_IMAGE_WEBP;
        rc = probe_webp(p, len, &w, &h, why);
    } else {
        return CORRUPT("not a PNG, JPEG, GIF or WebP image");
    }
    if (rc != AP_OK)
        return rc;
    if (w == 0 || h == 0 || w > 0x7FFFFFFFu || h > 0x7FFFFFFFu)
        return CORRUPT("the image has no valid width and height");
    for (size_t i = 0; i < N_IMAGE_TYPES; i++) {
        if (IMAGE_TYPES[i].type == type) {
            out->mime = IMAGE_TYPES[i].mime;
            out->ext = IMAGE_TYPES[i].ext;
        }
    }
    out->type = type;
    out->width = w;
    out->height = h;
    return AP_OK;
}

/* ---- content-addressed files ------------------------------------------------------------- */

static const char *ext_of_mime(const char *mime)
{
    for (size_t i = 0; i < N_IMAGE_TYPES; i++)
        if (mime && strcmp(IMAGE_TYPES[i].mime, mime) == 0)
            return IMAGE_TYPES[i].ext;
    return NULL;
}

static bool sha_ok(const char *s, size_t n)
{
    if (n != SHA256_HEX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool ap__api_asset_path(const char *sha256, const char *mime, char *out, size_t cap)
{
    const char *ext = ext_of_mime(mime);
    if (!ext || !sha256 || !sha_ok(sha256, strlen(sha256)))
        return false;
    int n = snprintf(out, cap, "/assets/%s.%s", sha256, ext);
    return n > 0 && (size_t)n < cap;
}

/* <creatives>/<ab>/<sha>.<ext> */
static bool file_path(const char *sha, const char *ext, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%.2s/%s.%s", ap__api_state.creatives_dir, sha, sha, ext);
    return n > 0 && (size_t)n < cap;
}

bool ap__api_asset_exists(const char *sha256, const char *mime)
{
    char path[AP_API_PATH_MAX];
    struct stat stt;
    const char *ext = ext_of_mime(mime);
    if (!ext || !sha256 || !sha_ok(sha256, strlen(sha256)) ||
        !file_path(sha256, ext, path, sizeof(path)))
        return false;
    return stat(path, &stt) == 0 && S_ISREG(stt.st_mode);
}

/* Writes the file once (an existing file of that name has this very content). */
static int write_asset(const char *sha, const char *ext, const void *data, size_t len)
{
    char dir[AP_API_PATH_MAX], path[AP_API_PATH_MAX], tmp[AP_API_PATH_MAX];
    struct stat stt;
    int fd = -1, rc = AP_OK;
    int n = snprintf(dir, sizeof(dir), "%s/%.2s", ap__api_state.creatives_dir, sha);
    if (n < 0 || (size_t)n >= sizeof(dir) || !file_path(sha, ext, path, sizeof(path)) ||
        snprintf(tmp, sizeof(tmp), "%s/.upload-XXXXXX", dir) >= (int)sizeof(tmp))
        return AP_EINVAL;
    if (stat(path, &stt) == 0 && S_ISREG(stt.st_mode) && (size_t)stt.st_size == len)
        return AP_OK;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        rc = ap_error_from_errno(errno);
        goto fail;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = ap_error_from_errno(errno);
        goto fail;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? ap_error_from_errno(errno) : AP_EIO;
            goto fail_unlink;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0640) != 0 || fsync(fd) != 0) {
        rc = ap_error_from_errno(errno);
        goto fail_unlink;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = ap_error_from_errno(errno);
        goto fail_unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = ap_error_from_errno(errno);
        goto fail_unlink;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the new name survives a crash; best effort */
        close(dfd);
    }
    return AP_OK;
fail_unlink:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
fail:
    ap_log_error("api: cannot store upload %s.%s: %s", sha, ext, ap_strerror(rc));
    return rc;
}

/* ---- the upload route --------------------------------------------------------------------- */

/* The declared media type, lower case, without parameters; "image/jpg" counts as image/jpeg. */
static void declared_type(struct ap_span ct, char *out, size_t cap)
{
    size_t n = 0;
    while (n < ct.len && ct.p[n] != ';' && ct.p[n] != ' ' && n + 1 < cap) {
        out[n] = (ct.p[n] >= 'A' && ct.p[n] <= 'Z') ? (char)(ct.p[n] + 32) : ct.p[n];
        n++;
    }
    out[n] = '\0';
    if (strcmp(out, "image/jpg") == 0 || strcmp(out, "image/pjpeg") == 0)
        snprintf(out, cap, "image/jpeg");
}

int ap__api_creative_upload(struct ap__api_ctx *c)
{
    struct ap_http_exchange *x = c->x;
    struct ap_schema_errors errs;
    struct ap__api_param *p;
    struct ap_api_image_info img;
    json_t *adv = NULL, *fields = NULL, *out = NULL;
    const char *name = NULL, *why = NULL;
    char declared[64], sha_hex[SHA256_HEX + 1], msg[160];
    unsigned char sha[crypto_hash_sha256_BYTES];
    int64_t advertiser_id = 0;
    size_t np;
    int rc;

    ap_schema_errors_init(&errs);
    if (ap__api_is_viewer(c)) {
        rc = ap__api_error(x, 403, "forbidden", "viewers have read-only access");
        goto done;
    }
    if ((rc = ap__api_query(c, &p, &np)) != AP_OK)
        goto done;
    for (size_t i = 0; i < np; i++) {
        if (strcmp(p[i].key, "advertiser_id") == 0) {
            if (!ap__api_parse_id(ap_span_cstr(p[i].value), &advertiser_id))
                ap_schema_errors_add(&errs, "advertiser_id", "must be a positive integer id");
        } else if (strcmp(p[i].key, "name") == 0) {
            name = p[i].value;
        } else {
            ap_schema_errors_add(&errs, p[i].key, "unknown query parameter");
        }
    }
    if (!advertiser_id && !errs.total)
        ap_schema_errors_add(&errs, "advertiser_id", "is required");
    if (!name)
        ap_schema_errors_add(&errs, "name", "is required");
    if (errs.total) {
        rc = ap__api_store_error(c, AP_EINVAL, &errs, false);
        goto done;
    }
    declared_type(x->req.content_type, declared, sizeof(declared));
    if (strncmp(declared, "image/", 6) != 0) {
        rc = ap__api_error(x, 415, "unsupported_media_type",
                           "send the image itself as the body with Content-Type image/png, "
                           "image/jpeg, image/gif or image/webp");
        goto done;
    }
    if (x->req.body.len > AP_API_UPLOAD_MAX) {
        snprintf(msg, sizeof(msg), "images may be at most %d bytes", AP_API_UPLOAD_MAX);
        rc = ap__api_error(x, 413, "payload_too_large", msg);
        goto done;
    }
    if (ap_api_image_probe(x->req.body.p, x->req.body.len, &img, &why) != AP_OK) {
        rc = ap__api_field_error(x, "file", why);
        goto done;
    }
    if (strcmp(declared, img.mime) != 0) {
        snprintf(msg, sizeof(msg), "the file is %s but was sent as %.40s", img.mime, declared);
        rc = ap__api_field_error(x, "file", msg);
        goto done;
    }
    /* The advertiser first, so a file is never stored for someone who may not have it. */
    rc = ap_store_get(c->st, AP_SCHEMA_ADVERTISER, advertiser_id, &c->actor, &adv);
    if (rc == AP_ENOTFOUND) {
        rc = ap__api_field_error(x, "advertiser_id", "no such advertiser");
        goto done;
    }
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, NULL, false);
        goto done;
    }
    crypto_hash_sha256(sha, (const unsigned char *)x->req.body.p, x->req.body.len);
    sodium_bin2hex(sha_hex, sizeof(sha_hex), sha, sizeof(sha));
    if ((rc = write_asset(sha_hex, img.ext, x->req.body.p, x->req.body.len)) != AP_OK) {
        rc = ap__api_error(x, 500, "internal", "cannot store the file");
        goto done;
    }
    fields = json_pack("{s:I, s:s, s:s, s:I, s:I, s:s, s:s, s:I}", "advertiser_id",
                       (json_int_t)advertiser_id, "name", name, "type", "image", "width",
                       (json_int_t)img.width, "height", (json_int_t)img.height, "mime", img.mime,
                       "sha256", sha_hex, "size_bytes", (json_int_t)x->req.body.len);
    if (!fields) {
        /* json_pack fails on a name that is not UTF-8 (the query decoder checked) or on OOM */
        rc = ap__api_error(x, 500, "internal", "out of memory");
        goto done;
    }
    rc = ap_store_create(c->st, AP_SCHEMA_CREATIVE, fields, &c->actor, &out, &errs);
    if (rc != AP_OK) {
        rc = ap__api_store_error(c, rc, &errs, false);
        goto done;
    }
    if (ap__api_decorate(ap_schema_get(AP_SCHEMA_CREATIVE), out) != AP_OK) {
        rc = ap__api_error(x, 500, "internal", "out of memory");
        goto done;
    }
    char loc[64];
    snprintf(loc, sizeof(loc), AP_API_PREFIX "/creatives/%lld",
             (long long)json_integer_value(json_object_get(out, "id")));
    ap_http_add_header(x, "Location", ap_span_cstr(loc));
    ap__api_set_etag(x, out);
    rc = ap__api_send_json(x, 201, out);
done:
    json_decref(out);
    json_decref(fields);
    json_decref(adv);
    return rc;
}

/* ---- serving -----------------------------------------------------------------------------------
 */

static void asset_headers(struct ap_http_exchange *x, const char *etag)
{
    ap_http_add_header(x, "Cache-Control", AP_SPAN_LIT("public, max-age=31536000, immutable"));
    ap_http_add_header(x, "ETag", ap_span_cstr(etag));
    ap_http_add_header(x, "X-Content-Type-Options", AP_SPAN_LIT("nosniff"));
    ap_http_add_header(x, "Content-Security-Policy", AP_SPAN_LIT("default-src 'none'"));
}

int ap__api_assets(struct ap__api_ctx *c)
{
    struct ap_http_exchange *x = c->x;
    char sha[SHA256_HEX + 1], path[AP_API_PATH_MAX], etag[SHA256_HEX + 3];
    const char *mime = NULL, *ext = NULL;
    char *buf = NULL;
    int fd = -1, rc;
    struct stat stt;

    struct ap_span f = x->match.nparams >= 1 ? x->match.params[0] : AP_SPAN_NULL;
    if (f.len > SHA256_HEX + 1 && f.p[SHA256_HEX] == '.' && sha_ok(f.p, SHA256_HEX)) {
        struct ap_span e = ap_span_make(f.p + SHA256_HEX + 1, f.len - SHA256_HEX - 1);
        for (size_t i = 0; i < N_IMAGE_TYPES; i++) {
            if (ap_span_eq_cstr(e, IMAGE_TYPES[i].ext)) {
                mime = IMAGE_TYPES[i].mime;
                ext = IMAGE_TYPES[i].ext;
            }
        }
    }
    if (!mime) {
        rc = ap__api_error(x, 404, "not_found", "no such asset");
        goto done;
    }
    memcpy(sha, f.p, SHA256_HEX);
    sha[SHA256_HEX] = '\0';
    if (!file_path(sha, ext, path, sizeof(path)) ||
        (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &stt) != 0 ||
        !S_ISREG(stt.st_mode) || stt.st_size > AP_API_UPLOAD_MAX) {
        rc = ap__api_error(x, 404, "not_found", "no such asset");
        goto done;
    }
    snprintf(etag, sizeof(etag), "\"%s\"", sha);
    const struct ap_http_header *inm = ap_http_find_header(&x->req, "If-None-Match");
    if (inm && (ap_span_eq_cstr(inm->value, etag) || ap_span_eq_cstr(inm->value, "*"))) {
        asset_headers(x, etag);
        rc = ap_http_respond(x, 304, NULL, NULL, 0);
        goto done;
    }
    size_t size = (size_t)stt.st_size;
    if (x->req.method == AP_HTTP_HEAD) {
        asset_headers(x, etag);
        rc = ap_http_respond(x, 200, mime, NULL, size); /* headers only: no need to read */
        goto done;
    }
    buf = malloc(size ? size : 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (!buf || got != size) {
        ap_log_error("api: cannot read asset %s", path);
        rc = ap__api_error(x, 500, "internal", "cannot read the asset");
        goto done;
    }
    asset_headers(x, etag);
    rc = ap_http_respond(x, 200, mime, buf, size);
done:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}
