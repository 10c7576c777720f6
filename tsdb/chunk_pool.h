/*
 * tsdb/chunk_pool.h: pooled, size-classed buffers for open (head) chunks (internal to tsdb/).
 *
 * Why: every active series owns one open chunk that grows from ~64 B to ~1 KiB and is released
 * when the chunk is sealed and written out; at a million series that is millions of
 * allocations per hour in the steady state. The pool recycles fixed-size buffers instead.
 *
 * Design (after h2o's mem recycle): size classes 64, 128, 256, 512 and 1024 bytes (a sealed XOR
 * chunk never exceeds 1024 B). Each thread keeps a small cache per class (a stack of at most
 * CHUNK_POOL_THREAD_CACHE buffers) so get/put normally take no lock; a cache that overflows
 * moves half its buffers to the class's shared depot (one mutex per class), an empty cache
 * refills a batch from the depot, and an empty depot falls back to the allocator (a miss).
 * A thread's cache is returned to the depot when the thread exits.
 *
 * Reset: buffers are zeroed before they are handed out again (the XOR writer ORs bits into
 * zeroed bytes). Trim: chunk_pool_trim frees depot buffers above a low watermark: the fewest
 * buffers the depot held since the previous trim (what was never needed), so an idle pool
 * shrinks and a busy one keeps its working set. Oversize requests are not pooled.
 *
 * Sanitizer builds (CAIRN_SANITIZERS): every get is a fresh calloc and every put a free, so
 * ASan sees each buffer's lifetime; the counters still count.
 *
 * Metrics (registered in the registry given to chunk_pool_new), per class label `size`:
 *   cairn_chunk_pool_gets_total, cairn_chunk_pool_hits_total (served from a cache or the
 *   depot), cairn_chunk_pool_misses_total (allocated), cairn_chunk_pool_puts_total,
 *   cairn_chunk_pool_trimmed_total; gauges cairn_chunk_pool_bytes_held (in depots, read at
 *   scrape time; thread caches are not counted) and cairn_chunk_pool_bytes_in_use (handed out
 *   and not yet returned).
 *
 * Thread safety: all functions are thread-safe.
 */
#ifndef CAIRN_TSDB_CHUNK_POOL_H
#define CAIRN_TSDB_CHUNK_POOL_H

#include <stddef.h>

#include "common/common.h"

#define CHUNK_POOL_CLASSES      5
#define CHUNK_POOL_MIN_SIZE     64
#define CHUNK_POOL_MAX_SIZE     1024
#define CHUNK_POOL_THREAD_CACHE 64

typedef struct chunk_pool chunk_pool_t;

/* Creates a pool; its metrics go into reg (NULL: the default registry). Only one pool may be
 * registered per registry (metric names are fixed). */
chunk_pool_t *chunk_pool_new(metric_registry_t *reg);
/* Frees the pool and every buffer it holds. Buffers still handed out must not be put back
 * afterwards. No other thread may use the pool any more. */
void chunk_pool_free(chunk_pool_t *pool);

/* The size class (a power of two in [64, 1024]) that serves size bytes; size itself if it is
 * larger than CHUNK_POOL_MAX_SIZE. */
size_t chunk_pool_class_size(size_t size);

/* Returns a zeroed buffer of chunk_pool_class_size(size) bytes. Never NULL (aborts on OOM).
 * Sizes above CHUNK_POOL_MAX_SIZE are allocated directly. */
void *chunk_pool_get(chunk_pool_t *pool, size_t size);
/* Returns a buffer obtained with chunk_pool_get for the same size (or any size of the same
 * class). */
void chunk_pool_put(chunk_pool_t *pool, void *buf, size_t size);

/* Frees depot buffers above each class's low watermark since the last trim. Returns the
 * number of bytes freed. Call periodically (e.g. every minute). */
size_t chunk_pool_trim(chunk_pool_t *pool);

typedef struct chunk_pool_stats {
    uint64_t gets, hits, misses, puts, trimmed;
    uint64_t bytes_held;   /* in depots */
    uint64_t bytes_in_use; /* handed out, not returned */
} chunk_pool_stats_t;

/* Sums the counters over all classes (for tests and benchmarks). */
void chunk_pool_stats(chunk_pool_t *pool, chunk_pool_stats_t *out);

#endif /* CAIRN_TSDB_CHUNK_POOL_H */
