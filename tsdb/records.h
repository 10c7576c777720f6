/*
 * tsdb/records.h: the varint codecs of the head's WAL records (internal to tsdb/), shared by
 * replay.c (encoding batches, decoding at open) and checkpoint.c (filtering old segments).
 * The record layouts are in replay.c and docs/format/wal.md.
 */
#ifndef CAIRN_TSDB_RECORDS_H
#define CAIRN_TSDB_RECORDS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/common.h"
#include "tsdb/chunk_xor.h"

static inline uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline uint8_t *put_uvarint_raw(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline void put_uvarint(buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    buf_append(b, tmp, (size_t)(put_uvarint_raw(tmp, v) - tmp));
}

/* The value code of a Samples record: an even uvarint for an integral value (its zig-zag code
 * shifted left by one), else 1 and the 8 raw bytes, little-endian. */
static inline uint8_t *put_value_raw(uint8_t *p, double v)
{
    if (v >= -9007199254740992.0 && v <= 9007199254740992.0) {
        int64_t i = (int64_t)v;
        if ((double)i == v && !(i == 0 && signbit(v)))
            return put_uvarint_raw(p, zigzag(i) << 1);
    }
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    *p++ = 1;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(bits >> (8 * i));
    return p;
}

/* A cursor over a record's bytes; bad is set (and zeros returned) on a short or malformed
 * field. */
typedef struct record_reader {
    const uint8_t *p, *end;
    bool bad;
} record_reader_t;

static inline uint64_t get_uvarint(record_reader_t *r)
{
    if (CAIRN_LIKELY(r->p < r->end && *r->p < 0x80)) /* most fields of a record: one byte */
        return *r->p++;
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->bad = true;
            return 0;
        }
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = true;
    return 0;
}

static inline int64_t get_svarint(record_reader_t *r)
{
    uint64_t u = get_uvarint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static inline double get_value(record_reader_t *r)
{
    uint64_t x = get_uvarint(r);
    if (!(x & 1)) {
        uint64_t z = x >> 1;
        return (double)((int64_t)(z >> 1) ^ -(int64_t)(z & 1));
    }
    if (x != 1 || r->end - r->p < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* Skips a Series record entry's labels (after its ref and label count); false if malformed. */
static inline bool skip_labels(record_reader_t *r, uint64_t nlabels)
{
    for (uint64_t l = 0; l < 2 * nlabels && !r->bad; l++) {
        uint64_t len = get_uvarint(r);
        if (len > (uint64_t)(r->end - r->p))
            r->bad = true;
        else
            r->p += len;
    }
    return !r->bad;
}

/* An entry of a Chunks record: a series' open chunk, with the appender state to continue it. */
typedef struct wal_chunk_entry {
    uint64_t ref;
    int64_t min_t, next_at; /* the chunk's first timestamp, and when it is to be cut */
    xor_appender_t state;   /* buf and cap unset; count from the data's header */
    const uint8_t *data;    /* (state.bit_len + 7) / 8 bytes, borrowed from the record */
} wal_chunk_entry_t;

/* Decodes the next Chunks record entry; false (r->bad set, or an empty chunk) if malformed. */
bool wal_record_get_chunk(record_reader_t *r, wal_chunk_entry_t *e);

#endif /* CAIRN_TSDB_RECORDS_H */
