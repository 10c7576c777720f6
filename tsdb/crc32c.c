/*
 * tsdb/crc32c.c: CRC-32C with the SSE4.2 instruction or a slicing-by-8 table.
 *
 * The implementation is chosen once (pthread_once) on the first call: on x86-64 with SSE4.2 the
 * crc32 instruction consumes 8 bytes per step (the function carries target("sse4.2"), so the
 * rest of the build needs no -msse4.2); elsewhere eight 256-entry tables, built at that first
 * call, consume 8 bytes per step. Both work on the reflected polynomial 0x82F63B78 with the
 * usual pre- and post-inversion, so values match Go's crc32.Castagnoli.
 */
#include <pthread.h>
#include <string.h>

#include "tsdb/crc32c.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_SSE42 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static uint32_t (*crc32c_impl)(uint32_t, const void *, size_t);
static bool crc32c_hardware;
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc32c_table[t][i] =
                (crc32c_table[t - 1][i] >> 8) ^ crc32c_table[0][crc32c_table[t - 1][i] & 0xff];

    crc32c_impl = crc32c_update_table;
#ifdef CRC32C_HAVE_SSE42
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        crc32c_impl = crc32c_update_hardware;
        crc32c_hardware = true;
    }
#endif
}

uint32_t crc32c_update_table(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc32c_once, crc32c_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        /* Little-endian load of the first word; the tables are indexed byte by byte so the
         * result does not depend on host byte order. */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
            crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^ crc32c_table[3][p[4]] ^
            crc32c_table[2][p[5]] ^ crc32c_table[1][p[6]] ^ crc32c_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#ifdef CRC32C_HAVE_SSE42
__attribute__((target("sse4.2"))) uint32_t crc32c_update_hardware(uint32_t crc, const void *data,
                                                                  size_t len)
{
    const uint8_t *p = data;
    uint64_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof(word));
        c = _mm_crc32_u64(c, word);
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#else
uint32_t crc32c_update_hardware(uint32_t crc, const void *data, size_t len)
{
    return crc32c_update_table(crc, data, len);
}
#endif

bool crc32c_hardware_available(void)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_hardware;
}

uint32_t crc32c_update(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_impl(crc, data, len);
}

uint32_t crc32c(const void *data, size_t len)
{
    return crc32c_update(0, data, len);
}
