/*
 * tsdb/chunk_xor.c: the XOR (Gorilla) float chunk codec, bit for bit as Prometheus writes it
 * (tsdb/chunkenc/xor.go, bstream.go; shared/reference/prometheus.md §1.2-1.3). The byte layout
 * is in chunk_xor.h.
 *
 * Writing: one sample is encoded into a 64-bit accumulator that starts with the partial last
 * byte of the chunk; every full 64 bits are stored as one big-endian word and the tail is
 * stored once at the end of the sample. The buffer is zero beyond bit_len, so storing a whole
 * word whose low bits are zero changes nothing past the sample. Before writing, xor_append
 * checks that XOR_MAX_SAMPLE_BITS more bits fit in cap, so every byte the sample touches lies
 * in buf[0..cap); the tail is stored as one 8-byte word only when 8 bytes remain, else byte by
 * byte. Nothing is read from the buffer except the partial byte.
 *
 * Reading: bits are peeked as a big-endian 64-bit window at the current bit position (at least
 * 57 valid bits). Samples 2 and later that start at least XOR_FAST_TAIL_BYTES before the end
 * (nearly all of them) take a fast path: every load of such a sample is in bounds and it cannot
 * end past the data, so nothing is checked field by field. Other samples take the checked path:
 * within 8 bytes of the end the tail is first copied into a zeroed local, so nothing past
 * data[len] is ever read, bits past the end read as zero, and the sample is accepted only if it
 * ended within the data. Truncated or corrupt chunks thus yield -EINVAL rather than a wrong
 * sample. Corrupt value headers (leading + significant bits > 64, which no encoder writes) and
 * over-long varints (as Go's encoding/binary rejects them) are -EINVAL too. The state of the
 * last good sample stays current after an error.
 *
 * Arithmetic follows Prometheus: timestamp deltas and delta-of-deltas are computed in uint64
 * (wrapping, where Go's int64 arithmetic wraps), so any increasing int64 timestamps, however
 * far apart, round-trip. The XOR window is (leading, trailing); leading 0xff means "no window
 * yet" in the appender, while the decoder starts from (0, 0), so a reuse code before any window
 * carries 64 bits. Resuming copies the decoder's window exactly as Prometheus's
 * XORChunk.Appender does (0xff only for an empty chunk), so appends after a resume produce the
 * same bytes Prometheus would produce.
 *
 * Thread safety: none (see the header).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "tsdb/chunk_xor.h"

#define XOR_NO_WINDOW        0xff
#define XOR_VARINT_MAX_BYTES 10

/* --- byte helpers ------------------------------------------------------------------------ */

static inline uint64_t xor_load_be64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline void xor_store_be64(uint8_t *p, uint64_t w)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    memcpy(p, &w, sizeof w);
}

/* --- bit writer -------------------------------------------------------------------------- */

/* Writer for one sample: acc holds fill (< 64) pending bits, left-aligned, that belong at
 * buf[pos...]; pos only advances by whole 64-bit words. */
typedef struct xor_bit_writer {
    uint8_t *buf;
    size_t pos;   /* byte offset of acc's first byte */
    uint64_t acc; /* pending bits, MSB first */
    unsigned fill;
} xor_bit_writer_t;

static inline void xor_bit_writer_start(xor_bit_writer_t *w, uint8_t *buf, size_t bit_len)
{
    w->buf = buf;
    w->pos = bit_len >> 3;
    w->fill = (unsigned)(bit_len & 7);
    /* The partial byte keeps its written bits; its low bits are zero. */
    w->acc = w->fill ? (uint64_t)buf[w->pos] << 56 : 0;
}

/* Appends the low n bits of v (1 <= n <= 64; bits above n must be zero). */
static inline void xor_bit_writer_put(xor_bit_writer_t *w, uint64_t v, unsigned n)
{
    unsigned total = w->fill + n;
    if (total < 64) {
        w->acc |= v << (64 - total);
        w->fill = total;
        return;
    }
    unsigned spill = total - 64; /* bits of v that go to the next word */
    w->acc |= v >> spill;
    xor_store_be64(w->buf + w->pos, w->acc);
    w->pos += 8;
    w->acc = spill ? v << (64 - spill) : 0;
    w->fill = spill;
}

/* Stores the pending bits; returns the new bit length. */
static inline size_t xor_bit_writer_finish(xor_bit_writer_t *w, size_t cap)
{
    if (w->fill) {
        if (w->pos + 8 <= cap) {
            xor_store_be64(w->buf + w->pos, w->acc); /* low bytes are zero over zero */
        } else {
            unsigned bytes = (w->fill + 7) / 8;
            for (unsigned i = 0; i < bytes; i++)
                w->buf[w->pos + i] = (uint8_t)(w->acc >> (56 - 8 * i));
        }
    }
    return w->pos * 8 + w->fill;
}

static inline void xor_bit_writer_put_uvarint(xor_bit_writer_t *w, uint64_t x)
{
    while (x >= 0x80) {
        xor_bit_writer_put(w, (x & 0x7f) | 0x80, 8);
        x >>= 7;
    }
    xor_bit_writer_put(w, x, 8);
}

/* Value XOR code (xorWrite in Prometheus). */
static inline void xor_value_write(xor_bit_writer_t *w, xor_appender_t *a, uint64_t bits)
{
    uint64_t delta = bits ^ a->v_bits;
    if (delta == 0) {
        xor_bit_writer_put(w, 0, 1);
        return;
    }
    unsigned leading = (unsigned)__builtin_clzll(delta);
    unsigned trailing = (unsigned)__builtin_ctzll(delta);
    if (leading > 31)
        leading = 31; /* the field has 5 bits */

    if (a->leading != XOR_NO_WINDOW && leading >= a->leading && trailing >= a->trailing) {
        /* '10' + the bits inside the current window; 64 bits for a resumed (0,0) window. */
        unsigned sig = 64 - a->leading - a->trailing;
        uint64_t payload = delta >> a->trailing;
        if (sig <= 62) {
            xor_bit_writer_put(w, (UINT64_C(2) << sig) | payload, sig + 2);
        } else {
            xor_bit_writer_put(w, 2, 2);
            xor_bit_writer_put(w, payload, sig);
        }
        return;
    }

    /* '11' + leading (5 bits) + significant bits (6 bits, 64 as 0) + the bits. */
    unsigned sig = 64 - leading - trailing;
    a->leading = (uint8_t)leading;
    a->trailing = (uint8_t)trailing;
    uint64_t header = (UINT64_C(3) << 11) | ((uint64_t)leading << 6) | (sig & 63);
    uint64_t payload = delta >> trailing;
    if (sig <= 51) {
        xor_bit_writer_put(w, (header << sig) | payload, sig + 13);
    } else {
        xor_bit_writer_put(w, header, 13);
        xor_bit_writer_put(w, payload, sig);
    }
}

/* --- appender ---------------------------------------------------------------------------- */

void xor_appender_init(xor_appender_t *a, uint8_t *buf, size_t cap)
{
    memset(a, 0, sizeof *a);
    a->buf = buf;
    a->cap = cap;
    a->bit_len = XOR_HEADER_BYTES * 8;
    a->leading = XOR_NO_WINDOW;
    if (cap >= XOR_HEADER_BYTES) {
        buf[0] = 0;
        buf[1] = 0;
    }
}

int xor_append(xor_appender_t *a, int64_t t, double v)
{
    if (a->count >= XOR_MAX_SAMPLES)
        return -ERANGE;
    if (a->bit_len + XOR_MAX_SAMPLE_BITS > a->cap * 8) /* bit_len >= 16: covers cap < 2 */
        return -ENOSPC;

    uint64_t v_bits;
    memcpy(&v_bits, &v, sizeof v_bits);
    uint64_t t_delta = (uint64_t)t - (uint64_t)a->t;

    xor_bit_writer_t w;
    xor_bit_writer_start(&w, a->buf, a->bit_len);

    if (a->count >= 2) {
        uint64_t dod = t_delta - a->t_delta; /* int64 in two's complement */
        if (dod == 0) {
            xor_bit_writer_put(&w, 0, 1);
        } else if (dod + 8191 <= 16383) { /* -8191 .. 8192 */
            xor_bit_writer_put(&w, (UINT64_C(0x2) << 14) | (dod & 0x3fff), 16);
        } else if (dod + 65535 <= 131071) { /* -65535 .. 65536 */
            xor_bit_writer_put(&w, (UINT64_C(0x6) << 17) | (dod & 0x1ffff), 20);
        } else if (dod + 524287 <= 1048575) { /* -524287 .. 524288 */
            xor_bit_writer_put(&w, (UINT64_C(0xe) << 20) | (dod & 0xfffff), 24);
        } else {
            xor_bit_writer_put(&w, 0xf, 4);
            xor_bit_writer_put(&w, dod, 64);
        }
        xor_value_write(&w, a, v_bits);
    } else if (a->count == 1) {
        xor_bit_writer_put_uvarint(&w, t_delta);
        xor_value_write(&w, a, v_bits);
    } else {
        /* Go's PutVarint: zig-zag, then uvarint. */
        uint64_t zigzag = (uint64_t)t << 1;
        if (t < 0)
            zigzag = ~zigzag;
        xor_bit_writer_put_uvarint(&w, zigzag);
        xor_bit_writer_put(&w, v_bits, 64);
        t_delta = 0;
    }

    a->bit_len = xor_bit_writer_finish(&w, a->cap);
    a->t = t;
    a->t_delta = t_delta;
    a->v_bits = v_bits;
    a->count++;
    a->buf[0] = (uint8_t)(a->count >> 8);
    a->buf[1] = (uint8_t)a->count;
    return 0;
}

size_t xor_appender_bytes(const xor_appender_t *a)
{
    return (a->bit_len + 7) / 8;
}

void xor_appender_rebase(xor_appender_t *a, uint8_t *buf, size_t cap)
{
    a->buf = buf;
    a->cap = cap;
}

int xor_appender_resume(xor_appender_t *a, uint8_t *buf, size_t cap, size_t len)
{
    if (len < XOR_HEADER_BYTES || cap < len)
        return -EINVAL;

    xor_iterator_t it;
    xor_iterator_init(&it, buf, len);
    int rc;
    while ((rc = xor_iterator_next(&it)) == 1) {
    }
    if (rc < 0)
        return -EINVAL;

    /* Everything after the last sample must be zero: padding, and bytes the appender will OR
     * new bits into. */
    size_t end = it.bit_pos;
    if (end & 7) {
        if (buf[end >> 3] & (0xffu >> (end & 7)))
            return -EINVAL;
        end += 8 - (end & 7);
    }
    for (size_t i = end >> 3; i < len; i++) {
        if (buf[i])
            return -EINVAL;
    }

    memset(a, 0, sizeof *a);
    a->buf = buf;
    a->cap = cap;
    a->bit_len = it.bit_pos;
    a->count = it.count;
    a->t = it.t;
    a->t_delta = it.t_delta;
    a->v_bits = it.v_bits;
    /* Prometheus's appender copies the iterator's window, which starts at (0,0); only an empty
     * chunk gets "no window". */
    a->leading = it.count == 0 ? XOR_NO_WINDOW : it.leading;
    a->trailing = it.count == 0 ? 0 : it.trailing;
    return 0;
}

uint16_t xor_chunk_count(const uint8_t *data, size_t len)
{
    if (len < XOR_HEADER_BYTES)
        return 0;
    return (uint16_t)((data[0] << 8) | data[1]);
}

/* --- bit reader -------------------------------------------------------------------------- */

/* The 64 bits starting at bit pos, MSB-aligned; at least 57 of them come from the data, and
 * bits past len read as zero. Never reads outside data[0..len). */
static inline uint64_t xor_bits_peek(const uint8_t *data, size_t len, size_t pos)
{
    size_t byte = pos >> 3;
    uint64_t w;
    if (byte + 8 <= len) {
        w = xor_load_be64(data + byte);
    } else {
        uint8_t tail[8] = {0};
        if (byte < len)
            memcpy(tail, data + byte, len - byte);
        w = xor_load_be64(tail);
    }
    return w << (pos & 7);
}

/* The n bits (1 <= n <= 64) at pos as an unsigned number. */
static inline uint64_t xor_bits_read(const uint8_t *data, size_t len, size_t pos, unsigned n)
{
    if (n <= 57)
        return xor_bits_peek(data, len, pos) >> (64 - n);
    uint64_t high = xor_bits_peek(data, len, pos) >> 32;
    uint64_t low = xor_bits_peek(data, len, pos + 32) >> (96 - n);
    return (high << (n - 32)) | low;
}

/* Go's binary.ReadUvarint over whole bytes from byte offset *byte. */
static int xor_uvarint_read(const uint8_t *data, size_t len, size_t *byte, uint64_t *out)
{
    uint64_t x = 0;
    unsigned shift = 0;
    for (unsigned i = 0; i < XOR_VARINT_MAX_BYTES; i++) {
        if (*byte >= len)
            return -EINVAL;
        uint8_t b = data[(*byte)++];
        if (b < 0x80) {
            if (i == XOR_VARINT_MAX_BYTES - 1 && b > 1)
                return -EINVAL; /* overflows 64 bits */
            *out = x | (uint64_t)b << shift;
            return 0;
        }
        x |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    }
    return -EINVAL;
}

/* --- iterator ---------------------------------------------------------------------------- */

void xor_iterator_init(xor_iterator_t *it, const uint8_t *data, size_t len)
{
    memset(it, 0, sizeof *it);
    it->data = data;
    it->len = len;
    it->bit_pos = XOR_HEADER_BYTES * 8;
    if (len < XOR_HEADER_BYTES)
        it->error = -EINVAL; /* not even a header */
    else
        it->count = xor_chunk_count(data, len);
}

static int xor_iterator_fail(xor_iterator_t *it)
{
    it->error = -EINVAL;
    return -EINVAL;
}

/* Decodes a short delta-of-delta code ('0', '10'+14, '110'+17, '1110'+20 bits) at the top of
 * *w (which holds at least 24 valid bits) and moves *w and *pos past it. Returns false, moving
 * nothing, for '1111' (64 bits follow). A switch rather than a lookup table: the class is
 * usually predictable, and then the next field's position does not wait for the data. */
static inline bool xor_dod_decode_short(uint64_t *w, size_t *pos, uint64_t *dod)
{
    uint64_t x = *w;
    uint64_t d;
    unsigned bits;
    switch (__builtin_clzll(~x | (UINT64_C(1) << 59))) { /* leading 1s, at most 4 */
    case 0:
        d = 0;
        bits = 1;
        break;
    case 1:
        d = (x >> 48) & 0x3fff;
        d -= d > 8192 ? 16384 : 0; /* bitRange is asymmetric: -8191 .. 8192 */
        bits = 16;
        break;
    case 2:
        d = (x >> 44) & 0x1ffff;
        d -= d > 65536 ? 131072 : 0;
        bits = 20;
        break;
    case 3:
        d = (x >> 40) & 0xfffff;
        d -= d > 524288 ? 1048576 : 0;
        bits = 24;
        break;
    default: return false;
    }
    *dod = d;
    *w = x << bits;
    *pos += bits;
    return true;
}

/* The general decoder: any sample, bounds-checked field by field. Kept out of line so that
 * the fast path in xor_iterator_next needs no stack frame. */
__attribute__((noinline)) static int xor_iterator_next_checked(xor_iterator_t *it)
{
    if (it->error)
        return it->error;
    if (it->read >= it->count)
        return 0;

    const uint8_t *data = it->data;
    size_t len = it->len;
    size_t limit = len > SIZE_MAX / 8 ? SIZE_MAX : len * 8;
    size_t pos = it->bit_pos;
    uint64_t t = (uint64_t)it->t;
    uint64_t t_delta = it->t_delta;
    uint64_t w; /* bits at pos, MSB first; at least 33 valid when the value code starts */

    if (it->read >= 2) {
        w = xor_bits_peek(data, len, pos);
        uint64_t dod;
        if (!xor_dod_decode_short(&w, &pos, &dod)) {
            dod = xor_bits_read(data, len, pos + 4, 64);
            pos += 68;
            w = xor_bits_peek(data, len, pos);
        }
        t_delta += dod;
        t += t_delta;
    } else if (it->read == 1) {
        size_t byte = pos >> 3; /* sample 0 ends on a byte boundary */
        if (xor_uvarint_read(data, len, &byte, &t_delta) < 0)
            return xor_iterator_fail(it);
        pos = byte * 8;
        t += t_delta;
        w = xor_bits_peek(data, len, pos);
    } else {
        size_t byte = pos >> 3;
        uint64_t zigzag;
        if (xor_uvarint_read(data, len, &byte, &zigzag) < 0)
            return xor_iterator_fail(it);
        t = (zigzag >> 1) ^ (0 - (zigzag & 1));
        pos = byte * 8;
        uint64_t v_bits = xor_bits_read(data, len, pos, 64);
        pos += 64;
        if (pos > limit)
            return xor_iterator_fail(it);
        it->t = (int64_t)t;
        it->v_bits = v_bits;
        it->bit_pos = pos;
        it->read = 1;
        return 1;
    }

    /* Value XOR code (xorRead in Prometheus): '0' | '10' + window bits | '11' + leading (5)
     * + significant bits (6, 0 meaning 64) + bits. */
    uint64_t v_bits = it->v_bits;
    if (!(w >> 63)) {
        pos += 1;
    } else {
        unsigned leading, trailing, sig;
        if (!(w & (UINT64_C(1) << 62))) {
            leading = it->leading;
            trailing = it->trailing;
            sig = 64 - leading - trailing; /* 64 for the decoder's initial (0,0) window */
            pos += 2;
        } else {
            leading = (unsigned)(w >> 57) & 31;
            sig = (unsigned)(w >> 51) & 63;
            if (sig == 0)
                sig = 64;
            if (leading + sig > 64) /* no encoder writes this */
                return xor_iterator_fail(it);
            trailing = 64 - leading - sig;
            pos += 13;
        }
        v_bits ^= xor_bits_read(data, len, pos, sig) << trailing;
        pos += sig;
        if (pos > limit)
            return xor_iterator_fail(it); /* before the window changes */
        it->leading = (uint8_t)leading;
        it->trailing = (uint8_t)trailing;
    }
    if (pos > limit) /* covers the timestamp fields too */
        return xor_iterator_fail(it);

    it->t = (int64_t)t;
    it->t_delta = t_delta;
    it->v_bits = v_bits;
    it->bit_pos = pos;
    it->read++;
    return 1;
}

/* Unchecked bit read for the fast path: n <= 64 bits at pos, all inside the data. */
static inline uint64_t xor_bits_read_unchecked(const uint8_t *data, size_t pos, unsigned n)
{
    if (n <= 57)
        return (xor_load_be64(data + (pos >> 3)) << (pos & 7)) >> (64 - n);
    uint64_t high = (xor_load_be64(data + (pos >> 3)) << (pos & 7)) >> 32;
    size_t low_pos = pos + 32;
    uint64_t low = (xor_load_be64(data + (low_pos >> 3)) << (low_pos & 7)) >> (96 - n);
    return (high << (n - 32)) | low;
}

/* Bytes that must remain from the sample's first byte for the fast path: a sample is at most
 * XOR_MAX_SAMPLE_BITS bits after a 0-7 bit offset, and its last 8-byte load starts at most
 * (7 + 4 + 64 + 13 + 32) / 8 = 15 bytes in. */
#define XOR_FAST_TAIL_BYTES 24

int xor_iterator_next(xor_iterator_t *it)
{
    size_t pos = it->bit_pos;
    size_t byte = pos >> 3;
    /* Fast path: samples 2 and later, not near the end of the data, so every load is in
     * bounds and the sample necessarily ends inside the data. */
    if (__builtin_expect(it->error == 0 && it->read >= 2 && it->read < it->count &&
                             byte + XOR_FAST_TAIL_BYTES <= it->len,
                         1)) {
        const uint8_t *data = it->data;
        uint64_t w = xor_load_be64(data + byte) << (pos & 7);
        uint64_t dod;
        if (!xor_dod_decode_short(&w, &pos, &dod)) {
            dod = xor_bits_read_unchecked(data, pos + 4, 64);
            pos += 68;
            w = xor_load_be64(data + (pos >> 3)) << (pos & 7);
        }
        uint64_t t_delta = it->t_delta + dod;

        if (!(w >> 63)) {
            pos += 1;
        } else if (!(w & (UINT64_C(1) << 62))) {
            unsigned trailing = it->trailing;
            unsigned sig = 64 - it->leading - trailing;
            it->v_bits ^= xor_bits_read_unchecked(data, pos + 2, sig) << trailing;
            pos += 2 + sig;
        } else {
            unsigned leading = (unsigned)(w >> 57) & 31;
            unsigned sig = (unsigned)(w >> 51) & 63;
            sig = sig ? sig : 64;
            if (__builtin_expect(leading + sig > 64, 0))
                return xor_iterator_fail(it);
            unsigned trailing = 64 - leading - sig;
            it->v_bits ^= xor_bits_read_unchecked(data, pos + 13, sig) << trailing;
            it->leading = (uint8_t)leading;
            it->trailing = (uint8_t)trailing;
            pos += 13 + sig;
        }
        it->t_delta = t_delta;
        it->t = (int64_t)((uint64_t)it->t + t_delta);
        it->bit_pos = pos;
        it->read++;
        return 1;
    }
    return xor_iterator_next_checked(it);
}

int xor_iterator_seek(xor_iterator_t *it, int64_t t)
{
    if (it->error)
        return it->error;
    while (it->read == 0 || it->t < t) {
        int rc = xor_iterator_next(it);
        if (rc <= 0)
            return rc;
    }
    return 1;
}

double xor_iterator_value(const xor_iterator_t *it)
{
    double v;
    memcpy(&v, &it->v_bits, sizeof v);
    return v;
}
