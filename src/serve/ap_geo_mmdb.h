/*
 * ap_geo_mmdb: a small writer of MaxMind DB files (format version 2.0, the format libmaxminddb
 * reads; spec: "MaxMind DB File Format Specification"), for two uses:
 *   - tests build tiny databases (a few networks -> country / region / city) and check lookups
 *     through the real reader;
 *   - the daemon converts the free country data of Debian's tor-geoipdb package (IP ranges ->
 *     country, /usr/share/tor/geoip and geoip6) into a MaxMind DB when no .mmdb database is
 *     installed (Debian 12 ships none; docs/adr/0007-geo-ua-consent.md).
 *
 * The written tree is an IPv6 tree (ip_version 6) with IPv4 networks at ::a.b.c.d/(96 + len),
 * where libmaxminddb looks IPv4 addresses up. Records are 24, 28 or 32 bits, the smallest that
 * fits. Each place is stored once in the data section, shaped like GeoIP2/GeoLite2-City data:
 *   {"country": {"iso_code": "US", "names": {"en": "United States"}},
 *    "subdivisions": [{"iso_code": "NY", "names": {"en": "New York"}}],
 *    "city": {"names": {"en": "New York"}}}
 * (members whose values are NULL are left out).
 *
 * Memory: a writer owns everything it holds (malloc), freed by ap_geo_mmdb_free; strings passed
 * in are copied (encoded) at once. Threads: a writer belongs to one thread; no global state.
 */
#ifndef AP_GEO_MMDB_H
#define AP_GEO_MMDB_H

#include <stddef.h>
#include <stdint.h>

#define AP_GEO_MMDB_MAX_NODES (UINT32_C(1) << 30) /* tree nodes at most */
#define AP_GEO_MMDB_MAX_DATA (UINT32_C(1) << 30)  /* data-section bytes at most */

struct ap_geo_mmdb;

/* One place. Any member may be NULL (left out); strings are UTF-8. */
struct ap_geo_mmdb_place {
    const char *country;      /* ISO 3166-1 alpha-2, "US" */
    const char *country_name; /* "United States" */
    const char *region;       /* ISO 3166-2 subdivision code without the country: "NY" */
    const char *region_name;  /* "New York" */
    const char *city;         /* "New York" */
};

/* A new, empty writer. AP_OK or AP_ENOMEM. */
int ap_geo_mmdb_new(struct ap_geo_mmdb **out);

void ap_geo_mmdb_free(struct ap_geo_mmdb *w);

/* Maps the network addr/prefix (addr: 16 bytes, IPv6 form; prefix 1..128) to place. Insert less
 * specific networks first: a later, more specific one splits the earlier (longest match wins).
 * AP_OK, AP_EINVAL (prefix out of range), AP_ELIMIT (too many nodes or data), AP_ENOMEM. */
int ap_geo_mmdb_insert(struct ap_geo_mmdb *w, const uint8_t addr[16], unsigned prefix,
                       const struct ap_geo_mmdb_place *place);

/* The same for "192.0.2.0/24", "2001:db8::/32" or a bare address (one host). AP_EINVAL if the
 * text is not such a network. */
int ap_geo_mmdb_insert_cidr(struct ap_geo_mmdb *w, const char *cidr,
                            const struct ap_geo_mmdb_place *place);

/* Maps every address from lo to hi inclusive (both IPv4 or both IPv6, lo <= hi) to place, as
 * the smallest set of CIDR networks. Same return codes. */
int ap_geo_mmdb_insert_range(struct ap_geo_mmdb *w, const char *lo, const char *hi,
                             const struct ap_geo_mmdb_place *place);

/* Writes the database to path (via a temporary file in the same directory, then renamed).
 * database_type names it in the metadata ("AdPlatform-Test-City"); description may be NULL.
 * AP_OK, AP_EIO (with errno converted), AP_ENOMEM. */
int ap_geo_mmdb_write(const struct ap_geo_mmdb *w, const char *path, const char *database_type,
                      const char *description);

/* Writes the database to the open file descriptor fd (from its current offset). */
int ap_geo_mmdb_write_fd(const struct ap_geo_mmdb *w, int fd, const char *database_type,
                         const char *description);

/* Tree nodes and distinct places so far (for logs and tests). */
size_t ap_geo_mmdb_nodes(const struct ap_geo_mmdb *w);
size_t ap_geo_mmdb_places(const struct ap_geo_mmdb *w);

/* Reads a tor geoip file ("# comment" lines and "LO,HI,CC" lines: IPv4 as decimal integers in
 * geoip, IPv6 as addresses in geoip6) and inserts every range with its country. Lines with an
 * unknown country ("??") are skipped. *ranges (may be NULL) receives the number inserted.
 * AP_OK, AP_EIO (cannot read), AP_ECORRUPT (a malformed line), or an insert error. */
int ap_geo_mmdb_load_tor(struct ap_geo_mmdb *w, const char *path, size_t *ranges);

#endif
