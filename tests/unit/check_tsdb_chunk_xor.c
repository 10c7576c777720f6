/*
 * tests/unit/check_tsdb_chunk_xor.c: unit tests for the XOR chunk codec (tsdb/chunk_xor.c).
 *
 * Byte compatibility with Prometheus is pinned by hand-derived vectors (the derivations are
 * next to the bytes) and, for random data, by a deliberately naive bit-at-a-time reference
 * encoder written straight from shared/reference/prometheus.md §1.2-1.3, which the optimised
 * encoder must match byte for byte. Values are always compared as bit patterns (memcmp of the
 * uint64), never with ==, so NaN payloads and -0.0 count.
 *
 * Memory safety: buffers handed to the iterator and to resume are malloc'd at exactly their
 * length, and appender buffers at exactly their capacity, so the sanitizer build catches any
 * access past the end; a canary test covers the normal build. Randomness comes from a fixed
 * seed (splitmix64), so failures reproduce.
 */
#include <check.h>
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsdb/chunk_xor.h"

/* --- helpers --------------------------------------------------------------------------------- */

typedef struct sample {
    int64_t t;
    uint64_t v; /* value bits */
} sample_t;

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return rng_next() % n;
}

static double bits_to_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

static uint64_t iterator_value_bits(const xor_iterator_t *it)
{
    return double_to_bits(xor_iterator_value(it));
}

/* Encodes samples into a fresh zeroed buffer of cap bytes; returns the byte length. */
static size_t encode(const sample_t *s, size_t n, uint8_t *buf, size_t cap)
{
    xor_appender_t a;
    memset(buf, 0, cap);
    xor_appender_init(&a, buf, cap);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(xor_append(&a, s[i].t, bits_to_double(s[i].v)), 0);
    ck_assert_uint_eq(a.count, n);
    return xor_appender_bytes(&a);
}

/* Decodes len bytes (copied into an exactly sized allocation) and checks they hold exactly
 * the n samples, bit for bit. */
static void check_decodes_to(const uint8_t *data, size_t len, const sample_t *s, size_t n)
{
    uint8_t *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, data, len);
    xor_iterator_t it;
    xor_iterator_init(&it, copy, len);
    ck_assert_uint_eq(it.count, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(xor_iterator_next(&it), 1);
        ck_assert_msg(it.t == s[i].t, "sample %zu: t %lld, want %lld", i, (long long)it.t,
                      (long long)s[i].t);
        uint64_t got = iterator_value_bits(&it);
        ck_assert_msg(memcmp(&got, &s[i].v, sizeof got) == 0,
                      "sample %zu: value bits %016llx, want %016llx", i, (unsigned long long)got,
                      (unsigned long long)s[i].v);
    }
    ck_assert_int_eq(xor_iterator_next(&it), 0);
    ck_assert_int_eq(xor_iterator_next(&it), 0);
    ck_assert_int_eq(it.error, 0);
    free(copy);
}

/* --- reference encoder: one bit at a time, straight from the format description ----------- */

typedef struct ref_stream {
    uint8_t *b;
    size_t nbits;
} ref_stream_t;

static void ref_bit(ref_stream_t *s, unsigned bit)
{
    if (bit)
        s->b[s->nbits >> 3] |= (uint8_t)(0x80 >> (s->nbits & 7));
    s->nbits++;
}

static void ref_bits(ref_stream_t *s, uint64_t u, int n)
{
    for (int i = n - 1; i >= 0; i--)
        ref_bit(s, (unsigned)(u >> i) & 1);
}

static void ref_uvarint(ref_stream_t *s, uint64_t x)
{
    while (x >= 0x80) {
        ref_bits(s, (x & 0x7f) | 0x80, 8);
        x >>= 7;
    }
    ref_bits(s, x, 8);
}

static int ref_bit_range(int64_t x, int n)
{
    return -((INT64_C(1) << (n - 1)) - 1) <= x && x <= (INT64_C(1) << (n - 1));
}

static int clz64(uint64_t x)
{
    int n = 0;
    for (uint64_t m = UINT64_C(1) << 63; m && !(x & m); m >>= 1)
        n++;
    return n;
}

static int ctz64(uint64_t x)
{
    int n = 0;
    for (uint64_t m = 1; m && !(x & m); m <<= 1)
        n++;
    return n;
}

/* Encodes s[0..n) from scratch; returns the byte length. */
static size_t ref_encode(const sample_t *s, size_t n, uint8_t *out, size_t cap)
{
    memset(out, 0, cap);
    ref_stream_t st = {out, 16};
    int64_t prev_t = 0;
    uint64_t prev_delta = 0, prev_v = 0;
    int leading = 0xff, trailing = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t delta = 0;
        if (i == 0) {
            uint64_t zz = ((uint64_t)s[i].t << 1) ^ (s[i].t < 0 ? UINT64_MAX : 0);
            ref_uvarint(&st, zz);
            ref_bits(&st, s[i].v, 64);
        } else {
            delta = (uint64_t)s[i].t - (uint64_t)prev_t;
            if (i == 1) {
                ref_uvarint(&st, delta);
            } else {
                int64_t dod = (int64_t)(delta - prev_delta);
                if (dod == 0) {
                    ref_bit(&st, 0);
                } else if (ref_bit_range(dod, 14)) {
                    ref_bits(&st, 2, 2);
                    ref_bits(&st, (uint64_t)dod, 14);
                } else if (ref_bit_range(dod, 17)) {
                    ref_bits(&st, 6, 3);
                    ref_bits(&st, (uint64_t)dod, 17);
                } else if (ref_bit_range(dod, 20)) {
                    ref_bits(&st, 14, 4);
                    ref_bits(&st, (uint64_t)dod, 20);
                } else {
                    ref_bits(&st, 15, 4);
                    ref_bits(&st, (uint64_t)dod, 64);
                }
            }
            uint64_t x = s[i].v ^ prev_v;
            if (x == 0) {
                ref_bit(&st, 0);
            } else {
                ref_bit(&st, 1);
                int lz = clz64(x), tz = ctz64(x);
                if (lz >= 32)
                    lz = 31;
                if (leading != 0xff && lz >= leading && tz >= trailing) {
                    ref_bit(&st, 0);
                    ref_bits(&st, x >> trailing, 64 - leading - trailing);
                } else {
                    leading = lz;
                    trailing = tz;
                    ref_bit(&st, 1);
                    ref_bits(&st, (uint64_t)lz, 5);
                    ref_bits(&st, (uint64_t)(64 - lz - tz), 6);
                    ref_bits(&st, x >> tz, 64 - lz - tz);
                }
            }
        }
        prev_t = s[i].t;
        prev_delta = delta;
        prev_v = s[i].v;
    }
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
    return (st.nbits + 7) / 8;
}

/* --- sample generators ----------------------------------------------------------------------- */

static const uint64_t special_bits[] = {
    UINT64_C(0x0000000000000000), /* +0 */
    UINT64_C(0x8000000000000000), /* -0 */
    UINT64_C(0x7ff0000000000000), /* +Inf */
    UINT64_C(0xfff0000000000000), /* -Inf */
    UINT64_C(0x7ff8000000000001), /* Prometheus's canonical NaN */
    UINT64_C(0x7ff0000000000002), /* stale marker */
    UINT64_C(0x7ff8000000000000), /* default quiet NaN */
    UINT64_C(0xfff8000000000000), /* negative quiet NaN */
    UINT64_C(0x7ff0000000000001), /* smallest signalling NaN payload */
    UINT64_C(0x7ff4000000000000), /* signalling NaN, high payload bit */
    UINT64_C(0x7fffffffffffffff), /* largest NaN payload */
    UINT64_C(0xffffffffffffffff), /* negative NaN, all ones */
    UINT64_C(0x0000000000000001), /* smallest denormal */
    UINT64_C(0x000fffffffffffff), /* largest denormal */
    UINT64_C(0x8000000000000001), /* negative smallest denormal */
    UINT64_C(0x0010000000000000), /* DBL_MIN */
    UINT64_C(0x7fefffffffffffff), /* DBL_MAX */
    UINT64_C(0xffefffffffffffff), /* -DBL_MAX */
    UINT64_C(0x5555555555555555), /* alternating bits */
    UINT64_C(0xaaaaaaaaaaaaaaaa), /* alternating bits, inverted */
    UINT64_C(0x00000000ffffffff), /* low half */
    UINT64_C(0xffffffff00000000), /* high half */
    UINT64_C(0x3ff0000000000000), /* 1.0 */
    UINT64_C(0xbff0000000000000), /* -1.0 */
    UINT64_C(0x0000000080000000), /* one bit at 31: leading zeros clamp to 31 */
    UINT64_C(0x00000001fffffffe), /* 32 bits inside, no edges */
};
#define SPECIAL_COUNT (sizeof special_bits / sizeof special_bits[0])

/* A random mask of width 1..64 at a random position, both end bits set: exercises every
 * (leading, trailing) combination, including leading >= 32 and 64 significant bits. */
static uint64_t random_mask(void)
{
    unsigned width = 1 + (unsigned)rng_below(64);
    unsigned shift = (unsigned)rng_below(65 - width);
    uint64_t m = width == 64 ? rng_next() : rng_next() & ((UINT64_C(1) << width) - 1);
    m |= UINT64_C(1) | (UINT64_C(1) << (width - 1));
    return m << shift;
}

static uint64_t next_value(uint64_t prev)
{
    unsigned r = (unsigned)rng_below(100);
    if (r < 25)
        return prev;
    if (r < 40)
        return special_bits[rng_below(SPECIAL_COUNT)];
    if (r < 50)
        return rng_next();
    if (r < 70)
        return prev ^ random_mask();
    if (r < 85)
        return double_to_bits((double)(int64_t)rng_below(1000000) + bits_to_double(prev));
    return double_to_bits((double)(int64_t)(rng_below(2000001)) / 1000.0 - 1000.0);
}

/* Delta-of-delta values at every class edge (bitRange is asymmetric). */
static const int64_t edge_dods[] = {0,       1,       -1,      8191,    8192,    8193,
                                    -8191,   -8192,   -8193,   65535,   65536,   65537,
                                    -65535,  -65536,  -65537,  524287,  524288,  524289,
                                    -524287, -524288, -524289, 1000000, -1000000};
#define EDGE_DOD_COUNT (sizeof edge_dods / sizeof edge_dods[0])

/* Fills up to n samples with strictly increasing timestamps covering every dod class; returns
 * how many were made (fewer if the timestamps ran into INT64_MAX). */
static size_t random_samples(sample_t *s, size_t n)
{
    static const int64_t starts[] = {0,
                                     1,
                                     -1,
                                     INT64_C(1700000000000),
                                     INT64_MIN,
                                     INT64_MIN / 2,
                                     INT64_C(-1700000000000),
                                     INT64_MAX / 2};
    int64_t t;
    unsigned start_kind = (unsigned)rng_below(10);
    if (start_kind < 8)
        t = starts[start_kind];
    else
        t = (int64_t)(rng_next() >> 1) - (INT64_C(1) << 61);
    uint64_t v = rng_below(2) ? special_bits[rng_below(SPECIAL_COUNT)] : rng_next();
    int64_t delta = rng_below(4) ? 15000 : 1 + (int64_t)rng_below(1000000);
    size_t i;
    for (i = 0; i < n; i++) {
        if (i > 0) {
            unsigned r = (unsigned)rng_below(100);
            int64_t next;
            if (r < 40)
                next = delta;
            else if (r < 75)
                next = delta + edge_dods[rng_below(EDGE_DOD_COUNT)];
            else if (r < 90)
                next = delta + (int64_t)rng_below(201) - 100;
            else if (r < 99 || rng_below(4))
                next = 1 + (int64_t)rng_below(UINT64_C(1) << 40); /* 64-bit dod class */
            else
                next = 1 + (int64_t)rng_below(UINT64_C(1) << 62); /* huge jumps */
            if (next < 1)
                next = 1 + (int64_t)rng_below(30000);
            if (t > INT64_MAX - next)
                break;
            delta = next;
            t += delta;
            v = next_value(v);
        }
        s[i].t = t;
        s[i].v = v;
    }
    return i;
}

/* --- hand-checked vectors -------------------------------------------------------------------- */

START_TEST(test_hand_vector)
{
    const sample_t s[] = {
        {1000, UINT64_C(0x3ff0000000000000)}, /* 1.0 */
        {2000, UINT64_C(0x3ff0000000000000)}, /* 1.0 */
        {3000, UINT64_C(0x4000000000000000)}, /* 2.0 */
        {4500, UINT64_C(0x4004000000000000)}, /* 2.5 */
    };
    /*
     * 00 04                    count 4
     * d0 0f                    t0 = 1000: zig-zag 2000 = 0b1111_1010000 -> 0x50|0x80, 0x0f
     * 3f f0 00 00 00 00 00 00  v0 = 1.0, raw bits
     * e8 07                    delta 1000 = 0b111_1101000 -> 0x68|0x80, 0x07 (uvarint)
     * then bits:
     *   s1 value: 1.0^1.0 = 0                                   '0'
     *   s2 dod 0                                                '0'
     *   s2 value: 2.0^1.0 = 0x7ff0000000000000, clz 1, ctz 52, no window yet:
     *      '11' leading '00001' sigbits 11 '001011' bits 0x7ff '11111111111'
     *   s3 dod = 1500-1000 = 500 in -8191..8192: '10' + 500 in 14 bits '00000111110100'
     *   s3 value: 2.5^2.0 = 0x0004000000000000, clz 13, ctz 50; 50 < trailing 52, so a new
     *      window: '11' leading '01101' sigbits 1 '000001' bits '1'
     * 00110000 10010111 11111111 11100000 01111101 00110110 10000011  (56 bits, no padding)
     * = 30 97 ff e0 7d 36 83
     */
    const uint8_t want[] = {0x00, 0x04, 0xd0, 0x0f, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00,
                            0x00, 0xe8, 0x07, 0x30, 0x97, 0xff, 0xe0, 0x7d, 0x36, 0x83};
    uint8_t buf[64];
    size_t len = encode(s, 4, buf, sizeof buf);
    ck_assert_uint_eq(len, sizeof want);
    ck_assert_mem_eq(buf, want, sizeof want);
    for (size_t i = len; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0);
    check_decodes_to(want, sizeof want, s, 4);
}
END_TEST

START_TEST(test_hand_vector_windows)
{
    const sample_t s[] = {
        {-1, UINT64_C(0x3ff0000000000000)},                         /* 1.0 */
        {9, UINT64_C(0x4008000000000000)},                          /* 3.0 */
        {18, UINT64_C(0x4000000000000000)},                         /* 2.0 */
        {27 + (INT64_C(1) << 40), UINT64_C(0x4000000000000000)},    /* 2.0 */
        {(INT64_C(1) << 41) - 65499, UINT64_C(0xc000000000000000)}, /* -2.0 */
    };
    /*
     * 00 05                    count 5
     * 01                       t0 = -1: zig-zag 1
     * 3f f0 00 00 00 00 00 00  v0 = 1.0
     * 0a                       delta 10
     * then bits:
     *   s1 value: 3.0^1.0 = 0x7ff8000000000000, clz 1, ctz 51: '11' '00001' sigbits 12
     *      '001100' '111111111111'                                            (25 bits)
     *   s2 delta 9, dod -1: '10' '11111111111111'                             (16)
     *   s2 value: 2.0^3.0 = 0x0008000000000000, clz 12 >= 1, ctz 51 >= 51: reuse window
     *      '10' + 12 bits of x>>51 '000000000001'                              (14)
     *   s3 delta 9+2^40, dod 2^40: '1111' + 64 bits 0x0000010000000000         (68)
     *   s3 value unchanged '0'                                                 (1)
     *   s4 delta 9+2^40-65535, dod -65535 (17-bit class, its lower edge): '110' + 17 bits of
     *      2^17-65535 = 65537 '10000000000000001'                             (20)
     *   s4 value: -2.0^2.0 = 0x8000000000000000, clz 0 < leading 1: new window '11' '00000'
     *      sigbits 1 '000001' '1'                                             (14)
     * 158 bits + 2 padding:
     * 11000010 01100111 11111111 11011111 11111111 11000000 00000011 11100000 00000000
     * 00000000 00100000 00000000 00000000 00000000 00000000 00001101 00000000 00000001
     * 11000000 00001100
     */
    const uint8_t want[] = {0x00, 0x05, 0x01, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                            0x0a, 0xc2, 0x67, 0xff, 0xdf, 0xff, 0xc0, 0x03, 0xe0, 0x00, 0x00,
                            0x20, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x01, 0xc0, 0x0c};
    uint8_t buf[64];
    size_t len = encode(s, 5, buf, sizeof buf);
    ck_assert_uint_eq(len, sizeof want);
    ck_assert_mem_eq(buf, want, sizeof want);
    check_decodes_to(want, sizeof want, s, 5);
}
END_TEST

/* Leading zeros >= 32 are written as 31; 64 significant bits are written as 0. */
START_TEST(test_value_header_clamps)
{
    /* 0.0 then bits 0xff: x = 0xff, clz 56 -> 31, ctz 0, sigbits 33.
     * After header 00 02, t0 0 '00', v0 8 zero bytes, delta 1 '01':
     * '11' '11111' '100001' + 33 bits of 0xff (25 zeros, 8 ones) + 2 padding bits. */
    const sample_t s[] = {{0, 0}, {1, 0xff}};
    uint8_t buf[64];
    size_t len = encode(s, 2, buf, sizeof buf);
    /* bits: 11111111 00001000 00000000 00000000 00000011 111111(00) */
    const uint8_t want[] = {0x00, 0x02, 0x00, 0,    0,    0,    0,    0,    0,
                            0,    0,    0x01, 0xff, 0x08, 0x00, 0x00, 0x03, 0xfc};
    ck_assert_uint_eq(len, sizeof want);
    ck_assert_mem_eq(buf, want, sizeof want);
    check_decodes_to(buf, len, s, 2);

    /* x = 0x8000000000000001: clz 0, ctz 0, 64 significant bits written as '000000'. */
    const sample_t s2[] = {{0, 0}, {1, UINT64_C(0x8000000000000001)}};
    len = encode(s2, 2, buf, sizeof buf);
    /* '11' '00000' '000000' then 1, 62 zeros, 1: 11000000 00000100 0...0 00001(000) */
    ck_assert_uint_eq(len, 12 + 10);
    ck_assert_uint_eq(buf[12], 0xc0);
    ck_assert_uint_eq(buf[13], 0x04);
    for (size_t i = 14; i < 21; i++)
        ck_assert_uint_eq(buf[i], 0);
    ck_assert_uint_eq(buf[21], 0x08);
    check_decodes_to(buf, len, s2, 2);
}
END_TEST

START_TEST(test_empty_chunk)
{
    uint8_t buf[32] = {0};
    xor_appender_t a;
    xor_appender_init(&a, buf, sizeof buf);
    ck_assert_uint_eq(xor_appender_bytes(&a), 2);
    ck_assert_uint_eq(a.count, 0);
    ck_assert_uint_eq(a.leading, 0xff);
    ck_assert_uint_eq(xor_chunk_count(buf, 2), 0);

    xor_iterator_t it;
    xor_iterator_init(&it, buf, 2);
    ck_assert_int_eq(xor_iterator_next(&it), 0);
    ck_assert_int_eq(xor_iterator_seek(&it, 0), 0);

    /* Resuming an empty chunk gives a fresh appender ("no window"). */
    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, 2), 0);
    ck_assert_uint_eq(a.count, 0);
    ck_assert_uint_eq(a.bit_len, 16);
    ck_assert_uint_eq(a.leading, 0xff);
    ck_assert_int_eq(xor_append(&a, 5, 1.5), 0);
    ck_assert_uint_eq(xor_appender_bytes(&a), 2 + 1 + 8);
}
END_TEST

/* --- timestamps ------------------------------------------------------------------------------ */

/* Each delta-of-delta lands in the class bitRange says, at both (asymmetric) edges. */
START_TEST(test_dod_classes)
{
    static const struct {
        int64_t dod;
        size_t bits;
    } cases[] = {
        {0, 1},        {1, 16},      {-1, 16},      {8192, 16},
        {-8191, 16},   {8193, 20},   {-8192, 20},   {65536, 20},
        {-65535, 20},  {65537, 24},  {-65536, 24},  {524288, 24},
        {-524287, 24}, {524289, 68}, {-524288, 68}, {INT64_C(1) << 40, 68},
        {-999999, 68},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t d1 = 1000000;
        sample_t s[4] = {{0, 7}, {d1, 7}, {2 * d1 + cases[c].dod, 7}, {0, 7}};
        s[3].t = s[2].t + (s[2].t - s[1].t); /* dod 0 again */
        uint8_t buf[64] = {0};
        xor_appender_t a;
        xor_appender_init(&a, buf, sizeof buf);
        ck_assert_int_eq(xor_append(&a, s[0].t, bits_to_double(7)), 0);
        ck_assert_int_eq(xor_append(&a, s[1].t, bits_to_double(7)), 0);
        size_t before = a.bit_len;
        ck_assert_int_eq(xor_append(&a, s[2].t, bits_to_double(7)), 0);
        ck_assert_msg(a.bit_len - before == cases[c].bits + 1, "dod %lld: %zu bits, want %zu",
                      (long long)cases[c].dod, a.bit_len - before - 1, cases[c].bits);
        ck_assert_int_eq(xor_append(&a, s[3].t, bits_to_double(7)), 0);
        check_decodes_to(buf, xor_appender_bytes(&a), s, 4);
    }
}
END_TEST

START_TEST(test_timestamp_extremes)
{
    static const int64_t seqs[][4] = {
        {INT64_MIN / 2, INT64_MAX / 2, INT64_MAX / 2 + 1, INT64_MAX / 2 + 15001},
        {0, INT64_C(1) << 62, (INT64_C(1) << 62) + 1, (INT64_C(1) << 62) + 2},
        {INT64_MIN, INT64_MAX - 2, INT64_MAX - 1, INT64_MAX},
        {INT64_MIN, INT64_MIN + 1, INT64_MIN + 3, 0},
        {-5000, -4000, -1000, 1000},
        {INT64_MIN, -1, 0, INT64_MAX},
    };
    for (size_t q = 0; q < sizeof seqs / sizeof seqs[0]; q++) {
        sample_t s[4];
        for (int i = 0; i < 4; i++) {
            s[i].t = seqs[q][i];
            s[i].v = special_bits[(q + (size_t)i) % SPECIAL_COUNT];
        }
        uint8_t buf[128], ref[128];
        size_t len = encode(s, 4, buf, sizeof buf);
        size_t ref_len = ref_encode(s, 4, ref, sizeof ref);
        ck_assert_uint_eq(len, ref_len);
        ck_assert_mem_eq(buf, ref, len);
        check_decodes_to(buf, len, s, 4);
    }
    /* INT64_MIN's zig-zag form is the longest varint: 10 bytes, ending in 0x01. */
    sample_t first = {INT64_MIN, 0};
    uint8_t buf[32];
    size_t len = encode(&first, 1, buf, sizeof buf);
    ck_assert_uint_eq(len, 2 + 10 + 8);
    ck_assert_uint_eq(buf[2], 0xff);
    ck_assert_uint_eq(buf[11], 0x01);
}
END_TEST

/* --- values ---------------------------------------------------------------------------------- */

/* Every ordered pair of special patterns, alternating, round-trips bit for bit. */
START_TEST(test_special_values)
{
    sample_t s[8];
    uint8_t buf[256], ref[256];
    /* The table means what its comments say. */
    ck_assert_uint_eq(double_to_bits(-0.0), special_bits[1]);
    ck_assert_uint_eq(double_to_bits(DBL_MAX), special_bits[16]);
    ck_assert_uint_eq(double_to_bits(DBL_MIN), special_bits[15]);
    for (size_t i = 0; i < SPECIAL_COUNT; i++) {
        for (size_t j = 0; j < SPECIAL_COUNT; j++) {
            for (size_t k = 0; k < 8; k++) {
                s[k].t = 1000 * (int64_t)k + (k == 5 ? 7 : 0);
                s[k].v = (k & 1) ? special_bits[j] : special_bits[i];
            }
            s[6].v = special_bits[(i + j) % SPECIAL_COUNT];
            size_t len = encode(s, 8, buf, sizeof buf);
            ck_assert_uint_eq(ref_encode(s, 8, ref, sizeof ref), len);
            ck_assert_mem_eq(buf, ref, len);
            check_decodes_to(buf, len, s, 8);
        }
    }
    /* A chunk through every special value, including the stale marker, in order. */
    sample_t all[SPECIAL_COUNT];
    for (size_t i = 0; i < SPECIAL_COUNT; i++) {
        all[i].t = 15000 * (int64_t)i;
        all[i].v = special_bits[i];
    }
    size_t len = encode(all, SPECIAL_COUNT, buf, sizeof buf);
    check_decodes_to(buf, len, all, SPECIAL_COUNT);
}
END_TEST

/* Random chunks: the encoder matches the bit-at-a-time reference byte for byte, and decoding
 * gives every sample back bit for bit. */
START_TEST(test_random_roundtrip)
{
    enum { CHUNKS = 10000, MAX_SAMPLES = 140, CAP = MAX_SAMPLES * 19 + 16 };
    rng_state = 42;
    sample_t s[MAX_SAMPLES];
    uint8_t *buf = malloc(CAP), *ref = malloc(CAP);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(ref);
    size_t total = 0;
    for (int c = 0; c < CHUNKS; c++) {
        size_t want = 1 + rng_below(MAX_SAMPLES);
        size_t n = random_samples(s, want);
        size_t len = encode(s, n, buf, CAP);
        size_t ref_len = ref_encode(s, n, ref, CAP);
        ck_assert_msg(len == ref_len && memcmp(buf, ref, len) == 0,
                      "chunk %d (%zu samples) differs from the reference encoding", c, n);
        check_decodes_to(buf, len, s, n);
        total += n;
    }
    ck_assert_uint_gt(total, CHUNKS * 50); /* most chunks are not cut short by INT64_MAX */
    free(buf);
    free(ref);
}
END_TEST

/* --- resume ---------------------------------------------------------------------------------- */

/* True if some value changed among the first k samples, i.e. a window has been opened. */
static int window_opened(const sample_t *s, size_t k)
{
    for (size_t i = 1; i < k; i++)
        if (s[i].v != s[0].v)
            return 1;
    return 0;
}

/* Resuming after any k samples and appending the rest gives the uninterrupted bytes (when a
 * window is open; see test_resume_no_window_quirk otherwise). */
START_TEST(test_resume_every_point)
{
    enum { N = 130, CAP = N * 19 + 16 };
    rng_state = 7;
    sample_t s[N];
    uint8_t *full = malloc(CAP);
    ck_assert_ptr_nonnull(full);
    for (int round = 0; round < 60; round++) {
        size_t n = random_samples(s, N);
        size_t full_len = encode(s, n, full, CAP);
        for (size_t k = 0; k <= n; k++) {
            uint8_t *part = calloc(1, CAP);
            ck_assert_ptr_nonnull(part);
            size_t part_len = encode(s, k, part, CAP);

            /* The resumed state equals the state of the appender that wrote the bytes, except
             * for Prometheus's (0,0) window when none was opened. */
            xor_appender_t live;
            uint8_t *scratch = malloc(CAP);
            ck_assert_ptr_nonnull(scratch);
            memset(scratch, 0, CAP);
            xor_appender_init(&live, scratch, CAP);
            for (size_t i = 0; i < k; i++)
                ck_assert_int_eq(xor_append(&live, s[i].t, bits_to_double(s[i].v)), 0);

            xor_appender_t a;
            ck_assert_int_eq(xor_appender_resume(&a, part, CAP, part_len), 0);
            ck_assert_uint_eq(a.count, k);
            ck_assert_uint_eq(a.bit_len, live.bit_len);
            ck_assert(a.t == live.t);
            ck_assert(a.t_delta == live.t_delta);
            ck_assert(a.v_bits == live.v_bits);
            if (k == 0 || window_opened(s, k)) {
                ck_assert_uint_eq(a.leading, live.leading);
                ck_assert_uint_eq(a.trailing, live.trailing);
            } else {
                ck_assert_uint_eq(live.leading, 0xff);
                ck_assert_uint_eq(a.leading, 0);
                ck_assert_uint_eq(a.trailing, 0);
            }

            for (size_t i = k; i < n; i++)
                ck_assert_int_eq(xor_append(&a, s[i].t, bits_to_double(s[i].v)), 0);
            size_t len = xor_appender_bytes(&a);
            if (k == 0 || window_opened(s, k) || !window_opened(s, n)) {
                ck_assert_uint_eq(len, full_len);
                ck_assert_mem_eq(part, full, len);
            } else {
                /* The first change after k is a reuse code ('10') where the uninterrupted
                 * encoder opens a window ('11'): the bytes must differ. */
                ck_assert(len != full_len || memcmp(part, full, len) != 0);
            }
            check_decodes_to(part, len, s, n);
            free(scratch);
            free(part);
        }
    }
    free(full);
}
END_TEST

/* Prometheus's appender copies the iterator's window, (0,0) when no value ever changed, so the
 * first change after a resume is a "reuse" code with 64 bits; the decoder reads it back. */
START_TEST(test_resume_no_window_quirk)
{
    /* 00 02 | 00 (t0 0) | 40 14 00 00 00 00 00 00 (5.0) | 98 75 (delta 15000 = 117<<7 | 24)
     * | '0' (5.0 again) + padding */
    const uint8_t two[] = {0x00, 0x02, 0x00, 0x40, 0x14, 0, 0, 0, 0, 0, 0, 0x98, 0x75, 0x00};
    const sample_t s[] = {{0, UINT64_C(0x4014000000000000)},
                          {15000, UINT64_C(0x4014000000000000)},
                          {30000, UINT64_C(0x4018000000000000)}}; /* 5.0, 5.0, 6.0 */
    uint8_t buf[64];
    size_t len = encode(s, 2, buf, sizeof buf);
    ck_assert_uint_eq(len, sizeof two);
    ck_assert_mem_eq(buf, two, sizeof two);

    xor_appender_t a;
    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, len), 0);
    ck_assert_uint_eq(a.leading, 0);
    ck_assert_uint_eq(a.trailing, 0);
    ck_assert_int_eq(xor_append(&a, 30000, 6.0), 0);
    /* s2: dod 0 '0'; value 6.0^5.0 = 0x000c000000000000 inside window (0,0): '10' + 64 bits.
     * Byte 13: '0' (s1 value) '0' '10' + 0000 = 0x20; then the other 60 bits of
     * 0x000c000000000000 (00000000 11000000 0...) and 4 padding bits. */
    const uint8_t want[] = {0x00, 0x03, 0x00, 0x40, 0x14, 0, 0, 0, 0, 0, 0,
                            0x98, 0x75, 0x20, 0x00, 0xc0, 0, 0, 0, 0, 0, 0x00};
    ck_assert_uint_eq(xor_appender_bytes(&a), sizeof want);
    ck_assert_mem_eq(buf, want, sizeof want);
    check_decodes_to(buf, sizeof want, s, 3);

    /* Uninterrupted, the same change opens a window instead: '0' '11' '01100' (clz 12)
     * '000010' (ctz 50, 2 bits) '11'. */
    uint8_t fresh[64];
    len = encode(s, 3, fresh, sizeof fresh);
    ck_assert_uint_eq(len, 16);
    ck_assert_uint_eq(fresh[13], 0x36); /* 0 0 11 0110 */
    ck_assert_uint_eq(fresh[14], 0x05); /* 0 000010 1 */
    ck_assert_uint_eq(fresh[15], 0x80); /* 1 + padding */
    check_decodes_to(fresh, len, s, 3);
}
END_TEST

START_TEST(test_resume_rejects_corrupt)
{
    const sample_t s[] = {{1000, 1}, {2000, 2}, {3000, 3}};
    uint8_t buf[64];
    xor_appender_t a;
    size_t len = encode(s, 3, buf, sizeof buf);

    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, 1), -EINVAL);
    ck_assert_int_eq(xor_appender_resume(&a, buf, len - 1, len), -EINVAL); /* cap < len */
    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, len - 1), -EINVAL);

    /* Trailing zero bytes are fine; a non-zero byte or padding bit after the data is not. */
    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, len + 5), 0);
    ck_assert_uint_eq(xor_appender_bytes(&a), len);
    size_t bit_len = a.bit_len;
    ck_assert_uint_ne(bit_len % 8, 0);
    buf[len + 3] = 1;
    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, len + 5), -EINVAL);
    buf[len + 3] = 0;
    buf[len - 1] |= 1; /* last padding bit */
    ck_assert_int_eq(xor_appender_resume(&a, buf, sizeof buf, len), -EINVAL);
}
END_TEST

/* --- capacity -------------------------------------------------------------------------------- */

/* Worst-case samples: 64-bit timestamp jumps and values with all 64 bits significant. */
static void worst_samples(sample_t *s, size_t n)
{
    int64_t t = 0;
    for (size_t i = 0; i < n; i++) {
        t += (i & 1) ? (INT64_C(1) << 40) + (int64_t)i : 3;
        s[i].t = t;
        s[i].v = (i & 1) ? UINT64_C(0x8000000000000001) : UINT64_C(0x7ff0000000000002);
    }
}

static void fill_until_full(const sample_t *s, size_t n, size_t cap)
{
    /* Exact-size allocation, so the sanitizer build catches a write past cap; the snapshot
     * shows that a refused append writes nothing. */
    uint8_t *buf = calloc(1, cap);
    uint8_t *snapshot = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(snapshot);
    xor_appender_t a;
    xor_appender_init(&a, buf, cap);
    size_t i = 0;
    int rc;
    for (;;) {
        ck_assert_uint_lt(i, n);
        memcpy(snapshot, buf, cap);
        xor_appender_t before = a;
        rc = xor_append(&a, s[i].t, bits_to_double(s[i].v));
        if (rc == -ENOSPC) {
            ck_assert_mem_eq(buf, snapshot, cap); /* nothing written */
            ck_assert(a.bit_len == before.bit_len && a.count == before.count && a.t == before.t &&
                      a.t_delta == before.t_delta && a.v_bits == before.v_bits &&
                      a.leading == before.leading && a.trailing == before.trailing);
            break;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_le(xor_appender_bytes(&a), cap);
        i++;
    }
    ck_assert_uint_ge(i, 1);
    ck_assert_uint_gt(a.bit_len + XOR_MAX_SAMPLE_BITS, cap * 8);
    if (cap == 1024) /* Prometheus's cut point comes before a 1 KiB buffer is full */
        ck_assert_uint_gt(xor_appender_bytes(&a), XOR_CUT_BYTES);

    /* Move to a bigger buffer and finish. */
    size_t big = cap * 4 + n * 19;
    uint8_t *moved = calloc(1, big);
    ck_assert_ptr_nonnull(moved);
    memcpy(moved, buf, xor_appender_bytes(&a));
    xor_appender_rebase(&a, moved, big);
    for (; i < n; i++)
        ck_assert_int_eq(xor_append(&a, s[i].t, bits_to_double(s[i].v)), 0);

    uint8_t *whole = malloc(big);
    ck_assert_ptr_nonnull(whole);
    size_t whole_len = encode(s, n, whole, big);
    ck_assert_uint_eq(xor_appender_bytes(&a), whole_len);
    ck_assert_mem_eq(moved, whole, whole_len);
    check_decodes_to(moved, whole_len, s, n);

    free(whole);
    free(moved);
    free(snapshot);
    free(buf);
}

/* Regular 15 s timestamps with jitter and adversarial values. */
static void realistic_samples(sample_t *s, size_t n)
{
    uint64_t v = double_to_bits(100.0);
    for (size_t i = 0; i < n; i++) {
        s[i].t = INT64_C(1700000000000) + 15000 * (int64_t)i + (int64_t)rng_below(101) - 50;
        v = next_value(v);
        s[i].v = v;
    }
}

START_TEST(test_fill_to_capacity)
{
    enum { N = 1200 };
    static sample_t s[N];
    worst_samples(s, N);
    for (size_t cap = XOR_HEADER_BYTES; cap < 100; cap++) {
        if (16 + XOR_MAX_SAMPLE_BITS > cap * 8) {
            /* Too small for a worst-case sample: ENOSPC at once, nothing written. */
            uint8_t *buf = calloc(1, cap);
            ck_assert_ptr_nonnull(buf);
            xor_appender_t a;
            xor_appender_init(&a, buf, cap);
            ck_assert_int_eq(xor_append(&a, 1, 1.0), -ENOSPC);
            ck_assert_uint_eq(a.count, 0);
            for (size_t i = 0; i < cap; i++)
                ck_assert_uint_eq(buf[i], 0);
            free(buf);
            continue;
        }
        fill_until_full(s, N, cap);
    }
    fill_until_full(s, N, 128);
    fill_until_full(s, N, 1024);

    /* Realistic data up to and past the cut point in a 1024-byte buffer. */
    rng_state = 99;
    static sample_t r[N];
    for (int round = 0; round < 20; round++) {
        realistic_samples(r, N);
        fill_until_full(r, N, 1024);
        fill_until_full(r, N, 256);
    }
}
END_TEST

/* Canary bytes just past cap stay untouched even when the final partial store is near cap. */
START_TEST(test_no_write_past_cap)
{
    enum { N = 600 };
    static sample_t s[N];
    rng_state = 3;
    size_t n = random_samples(s, N);
    for (size_t cap = 40; cap < 300; cap += 7) {
        uint8_t *mem = malloc(cap + 32);
        ck_assert_ptr_nonnull(mem);
        memset(mem, 0, cap);
        memset(mem + cap, 0xa5, 32);
        xor_appender_t a;
        xor_appender_init(&a, mem, cap);
        for (size_t i = 0; i < n; i++) {
            int rc = xor_append(&a, s[i].t, bits_to_double(s[i].v));
            if (rc != 0) {
                ck_assert_int_eq(rc, -ENOSPC);
                break;
            }
        }
        for (size_t i = 0; i < 32; i++)
            ck_assert_uint_eq(mem[cap + i], 0xa5);
        free(mem);
    }
}
END_TEST

/* Prometheus cuts chunks before they pass XOR_CUT_BYTES; a resumed cut-size chunk continues
 * byte for byte. */
START_TEST(test_resume_after_cut_and_rebase)
{
    enum { N = 3000, CAP = 1024 };
    static sample_t s[N];
    rng_state = 11;
    realistic_samples(s, N);
    size_t n = N;

    uint8_t *buf = calloc(1, CAP);
    xor_appender_t a;
    xor_appender_init(&a, buf, CAP);
    size_t i = 0;
    while (xor_appender_bytes(&a) <= XOR_CUT_BYTES) {
        ck_assert_uint_lt(i, n);
        ck_assert_int_eq(xor_append(&a, s[i].t, bits_to_double(s[i].v)), 0);
        i++;
    }
    size_t len = xor_appender_bytes(&a);
    ck_assert_uint_gt(len, XOR_CUT_BYTES);

    /* Copy to a bigger buffer, resume from the bytes alone, continue. */
    size_t big = 64 * 1024;
    uint8_t *moved = calloc(1, big);
    memcpy(moved, buf, len);
    xor_appender_t b;
    ck_assert_int_eq(xor_appender_resume(&b, moved, big, len), 0);
    for (size_t j = i; j < n; j++)
        ck_assert_int_eq(xor_append(&b, s[j].t, bits_to_double(s[j].v)), 0);

    uint8_t *whole = malloc(big);
    size_t whole_len = encode(s, n, whole, big);
    ck_assert_uint_eq(xor_appender_bytes(&b), whole_len);
    ck_assert_mem_eq(moved, whole, whole_len);
    check_decodes_to(moved, whole_len, s, n);
    free(whole);
    free(moved);
    free(buf);
}
END_TEST

START_TEST(test_max_samples)
{
    size_t cap = 2 + 10 + 8 + 10 + 9 + XOR_MAX_SAMPLES / 4 + 64;
    uint8_t *buf = calloc(1, cap);
    ck_assert_ptr_nonnull(buf);
    xor_appender_t a;
    xor_appender_init(&a, buf, cap);
    for (int64_t i = 0; i < XOR_MAX_SAMPLES; i++)
        ck_assert_int_eq(xor_append(&a, i * 15000, 42.0), 0);
    ck_assert_uint_eq(a.count, XOR_MAX_SAMPLES);
    ck_assert_uint_eq(xor_chunk_count(buf, xor_appender_bytes(&a)), 65535);
    size_t len = xor_appender_bytes(&a);
    ck_assert_int_eq(xor_append(&a, INT64_C(1) << 40, 42.0), -ERANGE);
    ck_assert_uint_eq(xor_appender_bytes(&a), len);
    ck_assert_uint_eq(a.count, XOR_MAX_SAMPLES);

    xor_iterator_t it;
    xor_iterator_init(&it, buf, len);
    size_t seen = 0;
    int rc;
    while ((rc = xor_iterator_next(&it)) == 1) {
        ck_assert(it.t == (int64_t)seen * 15000);
        seen++;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(seen, XOR_MAX_SAMPLES);

    xor_appender_t b;
    ck_assert_int_eq(xor_appender_resume(&b, buf, cap, len), 0);
    ck_assert_int_eq(xor_append(&b, INT64_C(1) << 40, 1.0), -ERANGE);
    free(buf);
}
END_TEST

/* --- iterator -------------------------------------------------------------------------------- */

START_TEST(test_iterator_seek)
{
    sample_t s[10];
    for (int i = 0; i < 10; i++) {
        s[i].t = 1000 + 100 * i;
        s[i].v = double_to_bits(i);
    }
    uint8_t buf[256];
    size_t len = encode(s, 10, buf, sizeof buf);
    xor_iterator_t it;

    xor_iterator_init(&it, buf, len);
    ck_assert_int_eq(xor_iterator_seek(&it, INT64_MIN), 1); /* first sample */
    ck_assert_int_eq(it.t, 1000);
    ck_assert_int_eq(xor_iterator_seek(&it, 1000), 1); /* stays */
    ck_assert_int_eq(it.t, 1000);
    ck_assert_int_eq(xor_iterator_seek(&it, 1250), 1); /* between: the next one */
    ck_assert_int_eq(it.t, 1300);
    ck_assert(xor_iterator_value(&it) == 3.0);
    ck_assert_int_eq(xor_iterator_seek(&it, 1300), 1); /* exact, current */
    ck_assert_int_eq(it.t, 1300);
    ck_assert_int_eq(xor_iterator_seek(&it, 0), 1); /* never goes back */
    ck_assert_int_eq(it.t, 1300);
    ck_assert_int_eq(xor_iterator_next(&it), 1);
    ck_assert_int_eq(it.t, 1400);
    ck_assert_int_eq(xor_iterator_seek(&it, 1900), 1); /* last */
    ck_assert_int_eq(it.t, 1900);
    ck_assert(xor_iterator_value(&it) == 9.0);
    ck_assert_int_eq(xor_iterator_seek(&it, 1901), 0); /* past the end */
    ck_assert_int_eq(xor_iterator_next(&it), 0);

    xor_iterator_init(&it, buf, len);
    ck_assert_int_eq(xor_iterator_seek(&it, 5000), 0);

    /* Seek over corrupt data reports it. */
    ck_assert_int_eq(xor_iterator_seek(&it, 0), 1); /* Prometheus: current t >= target */
    xor_iterator_init(&it, buf, len - 3);
    ck_assert_int_eq(xor_iterator_seek(&it, 5000), -EINVAL);
    ck_assert_int_eq(it.error, -EINVAL);
    ck_assert_int_eq(xor_iterator_seek(&it, 0), -EINVAL);
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
}
END_TEST

START_TEST(test_count_header)
{
    const uint8_t h[] = {0x01, 0x02, 0x00};
    ck_assert_uint_eq(xor_chunk_count(h, 3), 258);
    ck_assert_uint_eq(xor_chunk_count(h, 2), 258);
    ck_assert_uint_eq(xor_chunk_count(h, 1), 0);
    ck_assert_uint_eq(xor_chunk_count(h, 0), 0);

    uint8_t buf[512] = {0};
    xor_appender_t a;
    xor_appender_init(&a, buf, sizeof buf);
    for (int i = 0; i < 300 / 2; i++) {
        ck_assert_int_eq(xor_append(&a, i * 10, i * 0.5), 0);
        ck_assert_uint_eq(xor_chunk_count(buf, xor_appender_bytes(&a)), (unsigned)i + 1);
    }

    /* A header claiming more samples than the data holds is corrupt. */
    uint8_t small[64];
    const sample_t s[] = {{1, 1}, {2, 2}, {3, 3}};
    size_t len = encode(s, 3, small, sizeof small);
    small[1] = 40;
    xor_iterator_t it;
    xor_iterator_init(&it, small, len);
    int rc, got = 0;
    while ((rc = xor_iterator_next(&it)) == 1)
        got++;
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_int_ge(got, 3);

    /* A short buffer has no header. */
    xor_iterator_init(&it, small, 1);
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
    xor_iterator_init(&it, NULL, 0);
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
}
END_TEST

/* Every prefix of valid chunks: the samples that are whole come back, then -EINVAL. */
START_TEST(test_truncated_prefixes)
{
    enum { N = 130, CAP = N * 19 + 16 };
    rng_state = 5;
    sample_t s[N];
    uint8_t *buf = malloc(CAP);
    ck_assert_ptr_nonnull(buf);
    for (int round = 0; round < 40; round++) {
        size_t n = random_samples(s, 1 + rng_below(N));
        size_t len = encode(s, n, buf, CAP);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            ck_assert_ptr_nonnull(p);
            memcpy(p, buf, cut);
            xor_iterator_t it;
            xor_iterator_init(&it, p, cut);
            size_t i = 0;
            int rc;
            while ((rc = xor_iterator_next(&it)) == 1) {
                ck_assert_uint_lt(i, n);
                ck_assert(it.t == s[i].t);
                ck_assert(iterator_value_bits(&it) == s[i].v);
                i++;
            }
            ck_assert_int_eq(rc, -EINVAL);
            ck_assert_uint_lt(i, n);
            xor_appender_t a;
            ck_assert_int_eq(xor_appender_resume(&a, p, cut, cut), -EINVAL);
            free(p);
        }
    }
    free(buf);
}
END_TEST

/* Decodes whatever it is given without reading outside it; returns the samples read. */
static size_t drain(const uint8_t *p, size_t len)
{
    xor_iterator_t it;
    xor_iterator_init(&it, p, len);
    size_t got = 0;
    int rc;
    while ((rc = xor_iterator_next(&it)) == 1)
        got++;
    ck_assert(rc == 0 || rc == -EINVAL);
    ck_assert_int_eq(xor_iterator_next(&it), rc);
    ck_assert_uint_le(got, it.count);
    return got;
}

START_TEST(test_random_garbage)
{
    rng_state = 1234;
    for (int round = 0; round < 100000; round++) {
        size_t len = rng_below(4) ? rng_below(64) : rng_below(400);
        uint8_t *p = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(p);
        unsigned style = (unsigned)rng_below(4);
        for (size_t i = 0; i < len; i++) {
            uint8_t b = (uint8_t)rng_next();
            if (style == 1)
                b = rng_below(3) ? 0xff : b; /* long varints, '1111' prefixes */
            else if (style == 2)
                b = rng_below(3) ? 0x00 : b;
            p[i] = b;
        }
        if (len >= 2 && rng_below(2)) { /* plausible counts */
            p[0] = 0;
            p[1] = (uint8_t)rng_below(200);
        }
        drain(p, len);

        xor_iterator_t it;
        xor_iterator_init(&it, p, len);
        int rc = xor_iterator_seek(&it, (int64_t)rng_next());
        ck_assert(rc == 0 || rc == 1 || rc == -EINVAL);

        /* Resume over garbage: either rejected, or an appender that stays inside the buffer. */
        xor_appender_t a;
        if (xor_appender_resume(&a, p, len, len) == 0) {
            ck_assert_uint_le(xor_appender_bytes(&a), len);
            int arc = xor_append(&a, (int64_t)((uint64_t)a.t + 1), 1.0);
            ck_assert(arc == 0 || arc == -ENOSPC || arc == -ERANGE);
        }
        free(p);
    }
}
END_TEST

/* Valid chunks with random bit flips and count changes: never a crash or an out-of-bounds
 * read. */
START_TEST(test_corrupt_mutations)
{
    enum { N = 130, CAP = N * 19 + 16 };
    rng_state = 77;
    sample_t s[N];
    uint8_t *buf = malloc(CAP);
    ck_assert_ptr_nonnull(buf);
    for (int round = 0; round < 20000; round++) {
        size_t n = random_samples(s, 1 + rng_below(N));
        size_t len = encode(s, n, buf, CAP);
        uint8_t *p = malloc(len);
        ck_assert_ptr_nonnull(p);
        memcpy(p, buf, len);
        unsigned flips = 1 + (unsigned)rng_below(4);
        for (unsigned f = 0; f < flips; f++) {
            size_t bit = rng_below(len * 8);
            p[bit >> 3] ^= (uint8_t)(0x80 >> (bit & 7));
        }
        drain(p, len);
        xor_appender_t a;
        if (xor_appender_resume(&a, p, len, len) == 0)
            ck_assert_uint_le(xor_appender_bytes(&a), len);
        free(p);
    }
    free(buf);
}
END_TEST

START_TEST(test_corrupt_fields)
{
    xor_iterator_t it;
    /* Varint of 10 continuation bytes: overflow. */
    uint8_t longvar[2 + 11 + 8] = {0, 1};
    memset(longvar + 2, 0x80, 10);
    xor_iterator_init(&it, longvar, sizeof longvar);
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
    /* Tenth byte above 1: overflow too (Go's ReadVarint rejects it). */
    memset(longvar + 2, 0xff, 9);
    longvar[11] = 0x02;
    xor_iterator_init(&it, longvar, sizeof longvar);
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
    longvar[11] = 0x01; /* INT64_MIN */
    xor_iterator_init(&it, longvar, sizeof longvar);
    ck_assert_int_eq(xor_iterator_next(&it), 1);
    ck_assert(it.t == INT64_MIN);

    /* Value header with leading 31 and 40 significant bits (71 > 64): corrupt. */
    /* 00 02 | t0 0 | v0 0.0 | delta 1 | '11' '11111' '101000' + payload ones */
    uint8_t bad[] = {0x00, 0x02, 0x00, 0,    0,    0,    0,    0,    0,    0,
                     0,    0x01, 0xff, 0x47, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    xor_iterator_init(&it, bad, sizeof bad);
    ck_assert_int_eq(xor_iterator_next(&it), 1);
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
    ck_assert_int_eq(it.read, 1);
    ck_assert_int_eq(it.t, 0); /* the last good sample stays current */
    xor_appender_t a;
    ck_assert_int_eq(xor_appender_resume(&a, bad, sizeof bad, sizeof bad), -EINVAL);

    /* The same header in sample 3, far from the end of the data (the decoder's fast path):
     * s1 value '0', s2 '0' '0', s3 dod '0', then '11' '11111' '101000' from bit 100. */
    uint8_t far[12 + 48] = {0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
    far[12] = 0x0f; /* 0 0 0 0 1111 */
    far[13] = 0xf4; /* 1111 0100 */
    memset(far + 14, 0xff, sizeof far - 14);
    far[14] = 0x7f; /* 0 (last header bit), then payload */
    xor_iterator_init(&it, far, sizeof far);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(xor_iterator_next(&it), 1);
        ck_assert_int_eq(it.t, i);
        ck_assert_uint_eq(iterator_value_bits(&it), 0);
    }
    ck_assert_int_eq(xor_iterator_next(&it), -EINVAL);
    ck_assert_int_eq(it.read, 3);
    ck_assert_int_eq(it.t, 2);
    ck_assert_int_eq(xor_appender_resume(&a, far, sizeof far, sizeof far), -EINVAL);
    far[13] = 0xf0; /* sigbits 100001 = 33 instead: 31 + 33 = 64 is valid */
    far[14] = 0xff;
    xor_iterator_init(&it, far, sizeof far);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(xor_iterator_next(&it), 1);
}
END_TEST

static Suite *chunk_xor_suite(void)
{
    Suite *s = suite_create("tsdb_chunk_xor");
    TCase *tc;

    tc = tcase_create("format");
    tcase_add_test(tc, test_hand_vector);
    tcase_add_test(tc, test_hand_vector_windows);
    tcase_add_test(tc, test_value_header_clamps);
    tcase_add_test(tc, test_empty_chunk);
    tcase_add_test(tc, test_dod_classes);
    tcase_add_test(tc, test_timestamp_extremes);
    tcase_add_test(tc, test_special_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_random_roundtrip);
    suite_add_tcase(s, tc);

    tc = tcase_create("resume");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_resume_every_point);
    tcase_add_test(tc, test_resume_no_window_quirk);
    tcase_add_test(tc, test_resume_rejects_corrupt);
    tcase_add_test(tc, test_resume_after_cut_and_rebase);
    suite_add_tcase(s, tc);

    tc = tcase_create("capacity");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fill_to_capacity);
    tcase_add_test(tc, test_no_write_past_cap);
    tcase_add_test(tc, test_max_samples);
    suite_add_tcase(s, tc);

    tc = tcase_create("iterator");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_iterator_seek);
    tcase_add_test(tc, test_count_header);
    tcase_add_test(tc, test_truncated_prefixes);
    tcase_add_test(tc, test_random_garbage);
    tcase_add_test(tc, test_corrupt_mutations);
    tcase_add_test(tc, test_corrupt_fields);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(chunk_xor_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
