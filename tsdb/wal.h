/*
 * tsdb/wal.h: the write-ahead log: segments, pages, framed records, group commit, reading and
 * repair (internal to tsdb/). Record contents (series, samples) are the head's business; this
 * layer stores opaque records whose first byte is a record type.
 *
 * On disk (docs/format/wal.md has the same for users): a directory of segment files named
 * %08u (00000000, 00000001, ...), each a sequence of WAL_PAGE_SIZE pages; only the last page of
 * the newest segment may be partial. A record is compressed with snappy as a whole when that
 * makes it smaller, then split into fragments that never cross a page:
 *   type 1 B | length 2 B big-endian | CRC32C 4 B big-endian (of the fragment's data) | data
 *   type: bit 3 (0x08) = snappy-compressed record; bits 0-2 = fragment kind:
 *         0 page padding (the rest of the page is zero), 1 full, 2 first, 3 middle, 4 last
 * When fewer than 7 bytes remain in a page they are zero padding. A zero-length fragment is
 * valid. A record never spans segments; a record larger than a segment gets a segment of its
 * own. This is the framing of Prometheus's WAL, so its tools' assumptions carry over.
 *
 * Group commit: wal_log frames a batch of records into the shared pending buffer under the
 * WAL's mutex (compression happens before taking it), then waits until the bytes up to its end
 * are written. The first waiter that finds no write in progress becomes the leader: it takes
 * everything pending, writes it with as few write(2) calls as segment boundaries allow
 * (then fdatasync in WAL_SYNC_ALWAYS mode) outside the mutex, publishes the new written
 * position and wakes the others. So N concurrent commits cost about one write, not N.
 *
 * Durability: WAL_SYNC_NONE (default) returns once the bytes are in the OS page cache, so a
 * killed process (kill -9) loses nothing acknowledged; a power loss can lose the last
 * moments. WAL_SYNC_ALWAYS fdatasyncs before returning. Finished segments are fsynced when the
 * writer moves past them, and everything on close.
 *
 * After a failed write the WAL is broken: every later wal_log returns the same error, since
 * the on-disk position is unknown. The head then refuses appends until restart.
 *
 * Thread safety: wal_log and the position getters are thread-safe; wal_open, wal_close,
 * wal_next_segment and wal_truncate_before must not race with each other. Readers are
 * single-threaded objects; several may read one directory at once, also while it is written.
 */
#ifndef CAIRN_TSDB_WAL_H
#define CAIRN_TSDB_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define WAL_PAGE_SIZE            (32 * 1024)
#define WAL_RECORD_HEADER        7
#define WAL_DEFAULT_SEGMENT_SIZE (128u * 1024 * 1024)
/* Largest record, before or after decompression, that the WAL writes or reads. */
#define WAL_MAX_RECORD_SIZE (2 * (size_t)WAL_DEFAULT_SEGMENT_SIZE)

typedef enum wal_sync {
    WAL_SYNC_NONE = 0,   /* return after write(2) */
    WAL_SYNC_ALWAYS = 1, /* fdatasync before returning */
} wal_sync_t;

typedef struct wal_options {
    const char *dir;     /* created if missing */
    size_t segment_size; /* multiple of WAL_PAGE_SIZE; 0 = WAL_DEFAULT_SEGMENT_SIZE */
    wal_sync_t sync;
    bool compress;               /* snappy */
    metric_registry_t *registry; /* cairn_wal_* metrics; NULL = none */
    uint32_t min_segment;        /* start no lower than this (past a checkpoint's segments) */
} wal_options_t;

/* A position in the log: a segment and a byte offset in it. */
typedef struct wal_position {
    uint32_t segment;
    uint64_t offset;
} wal_position_t;

typedef struct wal wal_t;

/* Opens a WAL for writing. Always starts a new segment numbered one past the highest existing
 * one (0 in an empty directory), or opts->min_segment if that is higher; existing segments are left
 * as they are (read and repair them first). Returns NULL with a message in err. */
wal_t *wal_open(const wal_options_t *opts, cairn_error_t *err);

/* Appends records[i] (lengths[i] bytes each, first byte = record type, lengths >= 1) in order
 * and returns once they are written (and synced in WAL_SYNC_ALWAYS mode). Concurrent calls are
 * group-committed; each call's records stay contiguous and in order. On success stores the
 * position just past the last record in end (if not NULL). Returns 0 or a negative errno. */
int wal_log(wal_t *w, const uint8_t *const *records, const size_t *lengths, size_t count,
            wal_position_t *end);

/* Like wal_log, and calls framed(ctx) once this call's records are framed, under the WAL's
 * mutex: the order of framed calls is the records' order in the log. framed must be short and
 * must not call into the WAL. If wal_log_ordered returns an error after framed ran, the
 * records may or may not be on disk. */
typedef void (*wal_framed_fn)(void *ctx);
int wal_log_ordered(wal_t *w, const uint8_t *const *records, const size_t *lengths, size_t count,
                    wal_position_t *end, wal_framed_fn framed, void *ctx);

/* wal_log_ordered in two halves, so the caller can work while the bytes are being written:
 * wal_log_begin frames the records (calling framed as above) and returns at once with a ticket
 * (and the end position, which is final); wal_log_wait(ticket) returns once they are written
 * (synced in WAL_SYNC_ALWAYS mode), writing them itself if no write is in progress. Every
 * successful begin must be followed by a wait. */
int wal_log_begin(wal_t *w, const uint8_t *const *records, const size_t *lengths, size_t count,
                  wal_framed_fn framed, void *ctx, uint64_t *ticket, wal_position_t *end);
int wal_log_wait(wal_t *w, uint64_t ticket);

/* Finishes the current segment (fsync) and starts the next; returns the new segment's number
 * or a negative errno. */
int wal_next_segment(wal_t *w);

/* Deletes every segment numbered below segment (not the one being written: -EINVAL).
 * Returns 0 or a negative errno. */
int wal_truncate_before(wal_t *w, uint32_t segment);

/* Deletes the segment files of dir numbered below segment and syncs dir; for a WAL that is
 * not open for writing, or whose caller knows they are finished. Returns 0 or a negative
 * errno. */
int wal_delete_segments_before(const char *dir, uint32_t segment);

/* The position just past the last written record, and the current segment number. */
wal_position_t wal_written_position(wal_t *w);

/* Writes what is pending, fsyncs and closes; frees w. Returns 0 or the first error seen. */
int wal_close(wal_t *w);

/* Lists the segment numbers in dir: stores the lowest and highest and returns how many
 * there are (0 if none, with first/last untouched), or a negative errno. Files that are not
 * segments (checkpoint directories, temporaries) are ignored. */
int wal_segment_range(const char *dir, uint32_t *first, uint32_t *last);

/* ---------------------------------------------------------------------------------------------
 * Reading
 */
typedef struct wal_reader wal_reader_t;

typedef struct wal_reader_options {
    const char *dir;
    uint32_t first_segment; /* start here, at offset 0 */
    uint32_t last_segment;  /* inclusive; UINT32_MAX = up to the highest present */
    bool follow;            /* tailing a live WAL: a partial record at the very end means "no
                               more yet" (next returns 0 and may be called again later), not
                               corruption */
    bool raw;               /* return snappy-compressed records as they are (wal_reader_compressed
                               tells which): the caller decompresses, perhaps on another thread */
} wal_reader_options_t;

/* Opens a reader. Returns NULL with a message in err. */
wal_reader_t *wal_reader_open(const wal_reader_options_t *opts, cairn_error_t *err);

/* Reads the next record. Returns 1 and points *record at the decompressed record (valid until
 * the next call) with its length in *length; 0 at the end; or -EINVAL when the log is torn or
 * corrupt, with a message in err naming the segment and offset (then wal_reader_position
 * gives the end of the last good record, where a repair truncates). */
int wal_reader_next(wal_reader_t *r, const uint8_t **record, size_t *length, cairn_error_t *err);

/* In raw mode: whether the record last returned is snappy-compressed. */
bool wal_reader_compressed(const wal_reader_t *r);

/* Position just past the last record returned (or the start position). */
wal_position_t wal_reader_position(const wal_reader_t *r);

void wal_reader_free(wal_reader_t *r);

/* Repairs a WAL whose reader failed at pos (the end of the last good record): truncates that
 * segment to pos.offset (rounded so the next write starts cleanly) and deletes every later
 * segment. Returns 0 or a negative errno with a message in err. */
int wal_repair(const char *dir, wal_position_t pos, cairn_error_t *err);

#endif /* CAIRN_TSDB_WAL_H */
