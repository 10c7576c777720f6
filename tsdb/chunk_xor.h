/*
 * tsdb/chunk_xor.h: Prometheus's XOR (Gorilla) float chunk encoding, bit for bit (internal to
 * tsdb/).
 *
 * Layout (shared/reference/prometheus.md §1.2-1.3):
 *   bytes 0-1   sample count, big-endian uint16, rewritten after every append
 *   sample 0    timestamp as a Go varint (zig-zag), value as 64 raw bits, MSB first
 *   sample 1    timestamp delta as a Go uvarint (byte-aligned at that point), value XOR code
 *   sample n>=2 delta-of-delta code (0 | 10+14 | 110+17 | 1110+20 | 1111+64 bits), value XOR code
 *   padding     0-7 zero bits to the byte boundary
 * Value XOR code: 0 if equal to the previous bits; else 1 then either 0 + the meaningful bits
 * inside the previous (leading, trailing) window, or 1 + leading (5 bits, clamped to 31) +
 * significant-bit count (6 bits, 64 written as 0) + the bits.
 *
 * Bits are written MSB-first. Values are stored as raw bit patterns: every NaN payload
 * (including the stale marker 0x7ff0000000000002), infinities and -0.0 survive exactly.
 *
 * Memory: the appender writes into a caller-provided, zero-initialised buffer (from the chunk
 * pool); it never allocates. When a sample might not fit, xor_append returns -ENOSPC and the
 * caller moves the bytes to a larger buffer (xor_appender_rebase) or cuts a new chunk. One
 * sample takes at most XOR_MAX_SAMPLE_BITS bits.
 *
 * Thread safety: none; the owner (a series, under its lock) serialises access. Iterators over
 * distinct copies of the bytes are independent.
 */
#ifndef CAIRN_TSDB_CHUNK_XOR_H
#define CAIRN_TSDB_CHUNK_XOR_H

#include <stddef.h>
#include <stdint.h>

#define XOR_HEADER_BYTES 2
/* Worst case of one sample: 4+64 bits of timestamp, 2+5+6+64 bits of value; the first sample
 * (varint of up to 10 bytes + 64 bits) is smaller. */
#define XOR_MAX_SAMPLE_BITS 145
/* Prometheus cuts a new chunk before an append when the chunk already holds more than this. */
#define XOR_CUT_BYTES   1005
#define XOR_MAX_SAMPLES 65535

typedef struct xor_appender {
    uint8_t *buf;     /* borrowed chunk bytes, zeroed beyond bit_len */
    size_t cap;       /* bytes available in buf */
    size_t bit_len;   /* bits written, including the 16-bit header */
    uint16_t count;   /* samples in the chunk */
    int64_t t;        /* last timestamp */
    uint64_t t_delta; /* last timestamp delta (as Prometheus: uint64 arithmetic) */
    uint64_t v_bits;  /* last value's bits */
    uint8_t leading;  /* current XOR window; 0xff = no window yet */
    uint8_t trailing;
} xor_appender_t;

/* Starts an empty chunk in buf (cap >= XOR_HEADER_BYTES, zeroed). */
void xor_appender_init(xor_appender_t *a, uint8_t *buf, size_t cap);

/* Resumes appending to an existing chunk of len bytes in buf (cap >= len; bytes past len must
 * be zero): decodes it to rebuild the state. Returns 0, or -EINVAL if the bytes are corrupt. */
int xor_appender_resume(xor_appender_t *a, uint8_t *buf, size_t cap, size_t len);

/* Appends a sample. t must be greater than the last timestamp (the caller enforces order).
 * Returns 0, -ENOSPC if XOR_MAX_SAMPLE_BITS more bits might not fit in cap (nothing written),
 * or -ERANGE if the chunk already holds XOR_MAX_SAMPLES samples. */
int xor_append(xor_appender_t *a, int64_t t, double v);

/* Bytes of encoded chunk data (header included, last byte padded). */
size_t xor_appender_bytes(const xor_appender_t *a);

/* Points the appender at a new buffer that already holds a copy of the first
 * xor_appender_bytes() bytes and is zero beyond them. */
void xor_appender_rebase(xor_appender_t *a, uint8_t *buf, size_t cap);

/* Sample count stored in a chunk's header. */
uint16_t xor_chunk_count(const uint8_t *data, size_t len);

typedef struct xor_iterator {
    const uint8_t *data; /* borrowed */
    size_t len;          /* bytes */
    size_t bit_pos;
    uint16_t count; /* samples in the chunk */
    uint16_t read;  /* samples decoded so far */
    int64_t t;      /* current sample (valid after a successful next) */
    uint64_t v_bits;
    uint64_t t_delta;
    uint8_t leading, trailing;
    int error; /* 0, or -EINVAL once the data proved corrupt */
} xor_iterator_t;

/* Starts iterating over len bytes of chunk data (borrowed for the iterator's lifetime). */
void xor_iterator_init(xor_iterator_t *it, const uint8_t *data, size_t len);

/* Advances to the next sample. Returns 1 with it->t / xor_iterator_value(it) set, 0 at the end,
 * or -EINVAL if the data is truncated or corrupt (then it->error is set and stays set). */
int xor_iterator_next(xor_iterator_t *it);

/* Advances to the first sample with timestamp >= t (possibly the current one). Returns 1 if
 * there is one, 0 at the end, -EINVAL on corrupt data. */
int xor_iterator_seek(xor_iterator_t *it, int64_t t);

/* The current sample's value (bit-exact). */
double xor_iterator_value(const xor_iterator_t *it);

#endif /* CAIRN_TSDB_CHUNK_XOR_H */
