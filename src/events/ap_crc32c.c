/*
 * ap_crc32c: CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for the event log's framing.
 * Two implementations behind one entry point: the SSE4.2 crc32 instruction (8 bytes per
 * instruction) where the CPU has it, else a slicing-by-8 table. The choice is made once
 * (pthread_once) from CPUID. Pure functions otherwise; any thread.
 */
#include "ap_evlog.h"

#include <pthread.h>
#include <string.h>

static uint32_t T[8][256];
static uint32_t (*impl)(uint32_t, const uint8_t *, size_t);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        T[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            T[t][i] = (T[t - 1][i] >> 8) ^ T[0][T[t - 1][i] & 0xff];
}

/* c is the running (inverted) register. */
static uint32_t sw(uint32_t c, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ T[0][(c ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= c; /* little endian: the low 32 bits meet the register */
        c = T[7][v & 0xff] ^ T[6][(v >> 8) & 0xff] ^ T[5][(v >> 16) & 0xff] ^
            T[4][(v >> 24) & 0xff] ^ T[3][(v >> 32) & 0xff] ^ T[2][(v >> 40) & 0xff] ^
            T[1][(v >> 48) & 0xff] ^ T[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ T[0][(c ^ *p++) & 0xff];
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) {
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c64;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

static void choose(void)
{
    make_tables();
    impl = sw;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        impl = hw;
#endif
}

uint32_t ap_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&once, choose);
    return ~impl(~crc, data, n);
}

uint32_t ap__crc32c_table(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&once, choose);
    return ~sw(~crc, data, n);
}

bool ap__crc32c_hw_available(void)
{
    pthread_once(&once, choose);
    return impl != sw;
}
