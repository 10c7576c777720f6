/*
 * tsdb/internal.h: the head's data structures, shared by the files of tsdb/ only.
 *
 *   symbols.c   interned strings with reference counts (label names and values)
 *   series.c    series objects, the striped label-hash map, the ref table, postings
 *   head.c      the database: open/close, appender, commit, chunk cutting, truncation
 *   replay.c    WAL record encoding/decoding and parallel replay (codecs in records.h)
 *   checkpoint.c WAL checkpoints: the live head's records, replacing old segments
 *
 * Locks, in the order they may be taken (never the reverse):
 *   1. db->guard (a sharded reader lock): appenders and queriers hold a read side while they
 *      hold series pointers; truncation takes the write side only to free unlinked series.
 *   2. an append stripe lock (db->stripes[stripe_key & mask]): a series' chunk state and
 *      sealed-chunk list. A commit takes each stripe it touches once.
 *   3. a map stripe lock (series_map stripes, by label hash): series lookup and creation.
 *   4. a postings stripe lock, the symbol table's stripe locks, the chunk file mutex, the
 *      WAL's mutex: leaves, taken alone for short critical sections.
 */
#ifndef CAIRN_TSDB_INTERNAL_H
#define CAIRN_TSDB_INTERNAL_H

#include <pthread.h>

#include "tsdb/chunk_pool.h"
#include "tsdb/chunk_xor.h"
#include "tsdb/tsdb.h"
#include "tsdb/wal.h"

/* ---- symbols ------------------------------------------------------------------------------ */

typedef struct symbols symbols_t;

symbols_t *symbols_new(void);
void symbols_free(symbols_t *syms);
/* Interns len bytes of s and takes a reference; returns the symbol id (>= 1). Thread-safe. */
uint32_t symbols_intern(symbols_t *syms, const char *s, size_t len);
/* Takes another reference to an existing id. */
void symbols_retain(symbols_t *syms, uint32_t id);
/* Drops a reference; the symbol is freed when none are left. Thread-safe. */
void symbols_release(symbols_t *syms, uint32_t id);
/* The string of a live id (NUL-terminated, stable while referenced). Lock-free. */
const char *symbols_string(const symbols_t *syms, uint32_t id);
/* The id of s if it is interned (no reference taken), else 0. Thread-safe. */
uint32_t symbols_find(symbols_t *syms, const char *s, size_t len);
/* Number of live symbols and their string bytes. */
void symbols_stats(symbols_t *syms, uint64_t *count, uint64_t *bytes);

/* ---- series ------------------------------------------------------------------------------- */

/* A sealed chunk, written to a chunks_head file. */
typedef struct chunk_meta {
    uint64_t ref; /* file number << 32 | offset of the chunk's record in the file */
    int64_t min_t;
    int64_t max_t;
} chunk_meta_t;

typedef struct tsdb_series {
    /* Ordered by use: tsdb_append reads only the first 32 bytes (one cache line when the
     * object is 32-aligned, as jemalloc's size classes for series are), commit adds the
     * open chunk's state up to `sealed`; the rest is cold. */
    tsdb_ref_t ref;
    /* Readable without the lock (relaxed atomics): */
    _Atomic int64_t max_t;        /* newest sample's timestamp, INT64_MIN when none */
    _Atomic uint64_t last_v;      /* newest sample's value bits */
    _Atomic uint8_t deleted_flag; /* unlinked by truncation (set under the stripe lock) */
    _Atomic uint8_t wal_logged;   /* a Series record for it is in the WAL */
    uint16_t label_count;
    uint32_t stripe_key; /* picks the append stripe (head.h's series_stripe) */
    /* Protected by the series' append stripe lock: */
    xor_appender_t app;   /* open chunk; app.buf == NULL when there is none */
    int64_t chunk_min_t;  /* first timestamp of the open chunk */
    int64_t next_at;      /* cut the open chunk at or after this timestamp */
    chunk_meta_t *sealed; /* sealed chunks, oldest first */
    uint32_t sealed_count;
    uint32_t sealed_cap;
    /* Cold: */
    uint64_t hash;                 /* of the label set (xxh3 of name\xffvalue\xff...) */
    struct tsdb_series *next_free; /* on the truncation's free list */
    uint32_t created_round;        /* head truncation round in which it was created */
    uint32_t labels[];             /* 2 * label_count symbol ids: name, value, sorted by name */
} tsdb_series_t;

/* Series created with stripe key 0 (WAL replay) take their key from their reference: blocks
 * of 2^SERIES_STRIPE_SHIFT consecutive references share one. */
#define SERIES_STRIPE_SHIFT 10

/* References reserved by one writer (an appender), handed to the series it creates, so that
 * series created together get consecutive references even while other writers create series
 * too: their WAL records then delta-encode and compress as well as a single writer's. */
typedef struct ref_block {
    tsdb_ref_t next, end; /* [next, end) are still free */
    uint32_t size;        /* of the last block taken; doubles per refill up to REF_BLOCK_MAX */
} ref_block_t;

/* Per-label-set input after sorting and validation. */
typedef struct label_input {
    const tsdb_label_t *labels; /* sorted by name */
    size_t count;
    uint64_t hash;
    uint32_t stripe_key; /* for a series created from it; 0 (labels_prepare's): from its ref */
    ref_block_t *refs;   /* where a series created from it takes its reference; NULL: the map */
} label_input_t;

typedef struct series_map series_map_t;

series_map_t *series_map_new(symbols_t *syms, unsigned stripes);
/* The truncation round new series are stamped with (see head.c). */
void series_map_set_round(series_map_t *map, uint32_t round);
void series_map_free(series_map_t *map);

/* Finds the series with these labels, or creates it with a new reference (registered in the
 * ref table and the postings). *created tells which. Thread-safe. */
tsdb_series_t *series_map_get_or_create(series_map_t *map, const label_input_t *in, bool *created);
/* Creates a series with a given reference (WAL replay); returns the existing one if the
 * labels exist already (then its ref may differ). */
tsdb_series_t *series_map_create_with_ref(series_map_t *map, const label_input_t *in,
                                          tsdb_ref_t ref);
/* Lock-free lookup by reference; NULL if unknown or deleted. */
tsdb_series_t *series_map_by_ref(series_map_t *map, tsdb_ref_t ref);
/* Highest reference handed out so far. */
tsdb_ref_t series_map_max_ref(series_map_t *map);
/* Unlinks a series from the label map, the ref table and the postings. The memory stays
 * valid until series_free. */
void series_map_unlink(series_map_t *map, tsdb_series_t *s);
/* Gives back the unused references of a writer's block where no later block was taken. */
void series_map_release_refs(series_map_t *map, ref_block_t *refs);
/* Frees ref-table pages whose references were all handed out and that hold no live series.
 * Only under the head's guard write side. */
void series_map_reclaim_pages(series_map_t *map);
/* Frees an unlinked series and releases its symbols. */
void series_free(series_map_t *map, tsdb_series_t *s);
/* Number of live series. */
uint64_t series_map_count(series_map_t *map);

/* Postings: the sorted references of the series with label name=value. Copies into *out
 * (caller frees with cairn_free) and returns the count. Thread-safe. */
size_t postings_get(series_map_t *map, uint32_t name_id, uint32_t value_id, tsdb_ref_t **out);
/* All value ids of a label name (unsorted). Caller frees. */
size_t postings_values(series_map_t *map, uint32_t name_id, uint32_t **out);
/* All label name ids. Caller frees. */
size_t postings_names(series_map_t *map, uint32_t **out);
/* The references of all live series, sorted. Caller frees. */
size_t postings_all(series_map_t *map, tsdb_ref_t **out);
symbols_t *series_map_symbols(series_map_t *map);

/* Validates, sorts (a copy into sorted[], which must hold count entries) and hashes a label
 * set. Returns TSDB_REJECT_NONE or TSDB_REJECT_INVALID_LABELS with a message in err. */
tsdb_reject_t labels_prepare(const tsdb_label_t *labels, size_t count, const tsdb_limits_t *limits,
                             tsdb_label_t *sorted, label_input_t *out, cairn_error_t *err);
/* Hash of a sorted label set, as labels_prepare computes it. */
uint64_t labels_hash(const tsdb_label_t *sorted, size_t count);

#endif /* CAIRN_TSDB_INTERNAL_H */
