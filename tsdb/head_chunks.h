/*
 * tsdb/head_chunks.h: sealed head chunks in chunks_head/ files (internal to tsdb/); the design
 * and byte layout are in head_chunks.c and docs/format/head_chunks.md.
 *
 * Thread safety: all functions are thread-safe. Pointers returned by head_chunks_read into the
 * mappings stay valid until head_chunks_truncate_before removes their file; the head only
 * calls it while no reader can hold such a pointer (under its guard's write side).
 */
#ifndef CAIRN_TSDB_HEAD_CHUNKS_H
#define CAIRN_TSDB_HEAD_CHUNKS_H

#include "tsdb/internal.h"

typedef struct head_chunks head_chunks_t;

typedef struct head_chunk_info {
    uint64_t chunk_ref;
    tsdb_ref_t series_ref;
    int64_t min_t, max_t;
    uint8_t encoding;
    const uint8_t *data; /* borrowed; NULL when visiting at open */
    size_t length;
} head_chunk_info_t;

typedef void (*head_chunk_visit_fn)(void *ctx, const head_chunk_info_t *chunk);

/* Opens dir (created if missing), calls visit for every valid chunk of the existing files in
 * order (a torn tail is truncated with a warning), and starts a new file for writing. */
head_chunks_t *head_chunks_open(const char *dir, head_chunk_visit_fn visit, void *ctx,
                                cairn_error_t *err);
/* Buffers a sealed chunk and returns its reference in *chunk_ref. Returns 0 or the sticky
 * write error. */
int head_chunks_append(head_chunks_t *hc, tsdb_ref_t series_ref, int64_t min_t, int64_t max_t,
                       const uint8_t *data, size_t len, uint64_t *chunk_ref);
/* Writes what is buffered with one write(2). */
int head_chunks_flush(head_chunks_t *hc);
/* Writes what is buffered and makes every file durable (fdatasync). */
int head_chunks_sync(head_chunks_t *hc);
/* Points *data at a chunk's bytes: into the mapping, or copied into scratch when it is still
 * buffered. Returns 0, -ENOENT (unknown file) or -EINVAL (corrupt). */
int head_chunks_read(head_chunks_t *hc, uint64_t chunk_ref, const uint8_t **data, size_t *len,
                     buf_t *scratch);
/* Deletes the oldest files whose chunks all end before min_t; returns how many. */
int head_chunks_truncate_before(head_chunks_t *hc, int64_t min_t);
/* Flushes, syncs and closes. */
int head_chunks_close(head_chunks_t *hc);

#endif /* CAIRN_TSDB_HEAD_CHUNKS_H */
