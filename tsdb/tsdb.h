/*
 * tsdb/tsdb.h: the public header of Cairn's storage engine.
 *
 * The head holds recent data in memory: series (interned, hashed label sets with stable
 * references), one open XOR chunk per series from a pool of fixed buffers, sealed chunks
 * written to chunks_head/ files and read back through mmap, and postings for selection. Writes
 * go through a batched appender: append many samples, then commit once; commit writes the
 * batch to the WAL (group-committed with concurrent commits) and then applies it, taking each
 * lock once per batch and stripe. On open, the WAL is replayed in parallel.
 *
 * Thread safety: a tsdb_t is shared by all threads. An appender or a querier belongs to one
 * thread at a time; create one per writer thread and reuse it across batches.
 */
#ifndef CAIRN_TSDB_H
#define CAIRN_TSDB_H

#include "common/common.h"

/* Options from the command line (--storage.tsdb.*). */
typedef struct tsdb_options {
    char *path;                /* owned; data directory, default "data/" */
    int64_t retention_time_ms; /* --storage.tsdb.retention.time, default 15d; 0 = off */
    uint64_t retention_size;   /* --storage.tsdb.retention.size in bytes; 0 = off */
    bool wal_fsync;            /* --storage.tsdb.wal-fsync: fdatasync before acknowledging */
    bool wal_compression;      /* --storage.tsdb.wal-compression (snappy), default true */
    /* Label-set limits (tsdb_limits_t); 0 = no limit. */
    uint64_t label_limit;              /* --storage.tsdb.label-limit, labels per series */
    uint64_t label_name_length_limit;  /* --storage.tsdb.label-name-length-limit, bytes */
    uint64_t label_value_length_limit; /* --storage.tsdb.label-value-length-limit, bytes */
} tsdb_options_t;

#define TSDB_DEFAULT_PATH         "data/"
#define TSDB_DEFAULT_RETENTION_MS (15LL * 24 * 3600 * 1000)

/* Default label-set limits, for both tsdb_options_init (the flags) and tsdb_open_options_init.
 * Plain decimal literals: server/flags.c stringifies them into the --help text. */
#define TSDB_DEFAULT_MAX_LABELS       64
#define TSDB_DEFAULT_MAX_NAME_LENGTH  1024
#define TSDB_DEFAULT_MAX_VALUE_LENGTH 16384

/* Fills defaults; the caller owns the result and frees it with tsdb_options_free. */
void tsdb_options_init(tsdb_options_t *opts);
void tsdb_options_free(tsdb_options_t *opts);

/* Creates the data directory if needed (with parents) and takes an exclusive lock on its
 * `lock` file, so two processes never share one directory. On success stores the lock's file
 * descriptor (release with tsdb_directory_unlock) and returns 0; otherwise returns a negative
 * errno with a message in err (mentioning "lock" when another process holds it). */
int tsdb_directory_lock(const char *path, int *lock_fd, cairn_error_t *err);
void tsdb_directory_unlock(int lock_fd);

/* ---------------------------------------------------------------------------------------------
 * Labels
 */
typedef struct tsdb_label {
    const char *name;  /* borrowed */
    const char *value; /* borrowed */
} tsdb_label_t;

/* Limits on label sets, checked when a series is created. 0 means no limit. */
typedef struct tsdb_limits {
    size_t max_labels;       /* labels per series, default TSDB_DEFAULT_MAX_LABELS (64) */
    size_t max_name_length;  /* bytes, default TSDB_DEFAULT_MAX_NAME_LENGTH (1024) */
    size_t max_value_length; /* bytes, default TSDB_DEFAULT_MAX_VALUE_LENGTH (16384) */
} tsdb_limits_t;

/* Why a sample was not stored. */
typedef enum tsdb_reject {
    TSDB_REJECT_NONE = 0,
    TSDB_REJECT_OUT_OF_ORDER,   /* older than the series' newest sample */
    TSDB_REJECT_DUPLICATE,      /* same timestamp as the newest sample, different value */
    TSDB_REJECT_OUT_OF_BOUNDS,  /* older than the head's appendable window ("too old") */
    TSDB_REJECT_INVALID_LABELS, /* empty or duplicate names, bad name, over a limit */
    TSDB_REJECT_UNKNOWN_REF,    /* a reference to a series that no longer exists, no labels */
    TSDB_REJECT_COUNT
} tsdb_reject_t;

/* Prometheus's message for a reason ("out of order sample", "duplicate sample for
 * timestamp", "out of bounds", ...). */
const char *tsdb_reject_message(tsdb_reject_t reason);

/* ---------------------------------------------------------------------------------------------
 * The database
 */
typedef struct tsdb tsdb_t;
typedef uint64_t tsdb_ref_t; /* a series reference: stable, never reused while open; 0 = none */

typedef enum tsdb_wal_sync {
    TSDB_WAL_SYNC_NONE = 0,   /* acknowledge once written to the OS: survives kill -9 */
    TSDB_WAL_SYNC_ALWAYS = 1, /* fdatasync before acknowledging: survives power loss */
} tsdb_wal_sync_t;

typedef struct tsdb_open_options {
    const char *path;             /* data directory */
    int64_t head_window_ms;       /* data kept in the head; default 3h (until blocks exist,
                                     older data is dropped) */
    int64_t appendable_window_ms; /* samples older than head max time minus this are out of
                                     bounds; default 1h, as Prometheus */
    tsdb_wal_sync_t wal_sync;
    bool wal_compress;       /* snappy; default true */
    size_t wal_segment_size; /* 0 = default */
    bool snapshot_on_close;  /* tsdb_close writes the head (series, open chunks) as a WAL
                                checkpoint, so a restart decodes no samples; default true */
    tsdb_limits_t limits;
    unsigned replay_threads;     /* 0 = one per core */
    metric_registry_t *registry; /* NULL = the default registry */
} tsdb_open_options_t;

void tsdb_open_options_init(tsdb_open_options_t *opts, const char *path);

/* Opens (creating if needed) and locks the directory, loads head chunks, replays the WAL (a
 * torn or corrupt tail is truncated with a warning) and starts a new WAL segment. Returns NULL
 * with a message in err. */
tsdb_t *tsdb_open(const tsdb_open_options_t *opts, cairn_error_t *err);

/* Flushes and closes everything; appenders and queriers must be freed first. With
 * snapshot_on_close, first writes the head's series and open chunks as a WAL checkpoint and
 * deletes the WAL segments (a failure to do so is logged; the WAL then stays as it was).
 * Returns 0 or the first error. */
int tsdb_close(tsdb_t *db);

typedef struct tsdb_stats {
    uint64_t series;  /* live series in the head */
    uint64_t samples; /* samples appended since open (including replay) */
    int64_t min_time; /* head min/max sample time; INT64_MAX/INT64_MIN when empty */
    int64_t max_time;
    uint64_t chunks_open;      /* open (in-memory) chunks */
    uint64_t chunks_sealed;    /* sealed chunks in chunks_head files */
    uint64_t chunk_bytes;      /* bytes of encoded data of the sealed chunks */
    uint64_t wal_bytes;        /* bytes of the WAL on disk: segments and checkpoint */
    uint64_t replayed_samples; /* samples read from the WAL when opening */
    uint64_t replay_applied;   /* of those, appended (the rest were in sealed chunks already) */
    double replay_seconds;
} tsdb_stats_t;

void tsdb_stats(tsdb_t *db, tsdb_stats_t *out);

/* Encoded bytes of all chunk data, sealed and open (visits every series: for benchmarks and
 * tests, not for scrape-time metrics). */
uint64_t tsdb_chunk_bytes(tsdb_t *db);

/* Drops head data older than min_time: sealed chunks entirely before it, then series left
 * without samples (a series created since the previous truncation and still empty is kept:
 * its batch is in flight). Waits for open queriers (they keep a stable view). The truncation
 * is logged in the WAL; replay applies it once all records are in, so after a restart the
 * head holds everything it held before, and possibly samples older than the last truncation
 * point that the live truncation had dropped, until the next truncation. When enough WAL
 * segments have piled up, also writes a WAL checkpoint and deletes the segments it replaces
 * (docs/format/wal.md). Called periodically by the head itself (also at the current floor, to
 * checkpoint, when nothing is old enough to drop); exposed for tests. */
int tsdb_truncate(tsdb_t *db, int64_t min_time);

/* ---------------------------------------------------------------------------------------------
 * Appending
 *
 *   app = tsdb_appender_new(db);
 *   tsdb_append(app, ref_or_0, labels, n, t, v, &ref);  ... many ...
 *   tsdb_appender_commit(app, &result);   (or tsdb_appender_rollback)
 *
 * A sample is acknowledged when commit returns 0: it is in the WAL (written to the OS, or
 * synced) and applied. Per-sample rejections (out of order, duplicate, too old) do not fail
 * the commit: they are counted in the result, the rest of the batch is stored. A sample with
 * the same timestamp and the same value (bit for bit) as the newest is accepted silently.
 */
typedef struct tsdb_appender tsdb_appender_t;

typedef struct tsdb_commit_result {
    uint64_t appended;                    /* samples stored */
    uint64_t rejected[TSDB_REJECT_COUNT]; /* by reason */
    size_t first_rejected;                /* index (in append order) of the first rejection */
    tsdb_reject_t first_reason;           /* TSDB_REJECT_NONE if none */
} tsdb_commit_result_t;

tsdb_appender_t *tsdb_appender_new(tsdb_t *db);
void tsdb_appender_free(tsdb_appender_t *app);

/* Buffers one sample. With ref != 0 the series is found by reference (the fast path a scrape
 * cache or a remote-write batch uses); if the reference is unknown and labels are given, or
 * ref is 0, the series is found or created by labels (any order; copied). Stores the series'
 * reference in *ref_out (if not NULL). Returns TSDB_REJECT_NONE if the sample is buffered, or
 * the reason it was rejected right away (it then counts in the commit result too). */
tsdb_reject_t tsdb_append(tsdb_appender_t *app, tsdb_ref_t ref, const tsdb_label_t *labels,
                          size_t label_count, int64_t t, double v, tsdb_ref_t *ref_out);

/* Writes the batch to the WAL, applies it, fills result (may be NULL) and starts a new batch.
 * Returns 0, or a negative errno if the WAL write failed (nothing of the batch is
 * acknowledged then). */
int tsdb_appender_commit(tsdb_appender_t *app, tsdb_commit_result_t *result);

/* Discards the batch. Series it created stay (empty ones are collected later). */
void tsdb_appender_rollback(tsdb_appender_t *app);

/* ---------------------------------------------------------------------------------------------
 * Querying
 *
 * Matchers follow PromQL: a label that is absent has the value "", so {a=""} selects series
 * without `a` and {a!="x"} includes them; regular expressions are fully anchored
 * (^(?s:re)$), compiled with PCRE2 and JIT, with fast paths for literals, alternations of
 * literals and prefixes. A querier sees a consistent set of series for its lifetime and
 * keeps them alive (free it promptly: it holds the head's guard).
 */
typedef enum tsdb_match_type {
    TSDB_MATCH_EQUAL,
    TSDB_MATCH_NOT_EQUAL,
    TSDB_MATCH_REGEX,
    TSDB_MATCH_NOT_REGEX,
} tsdb_match_type_t;

typedef struct tsdb_matcher tsdb_matcher_t;

/* Compiles a matcher (strings copied). Returns NULL with a message in err for a bad regex. */
tsdb_matcher_t *tsdb_matcher_new(tsdb_match_type_t type, const char *name, const char *value,
                                 cairn_error_t *err);
void tsdb_matcher_free(tsdb_matcher_t *m);
/* Whether the label value ("" when the label is absent) satisfies the matcher. */
bool tsdb_matcher_matches(const tsdb_matcher_t *m, const char *value);

typedef struct tsdb_querier tsdb_querier_t;
typedef struct tsdb_series_set tsdb_series_set_t;

/* A querier over samples with min_t <= t <= max_t. */
tsdb_querier_t *tsdb_querier_new(tsdb_t *db, int64_t min_t, int64_t max_t);
void tsdb_querier_free(tsdb_querier_t *q);

/* Selects the series matching all matchers (at least one), sorted by label set. Free with
 * tsdb_series_set_free before the querier. Series without samples in the range are left out. */
tsdb_series_set_t *tsdb_querier_select(tsdb_querier_t *q, const tsdb_matcher_t *const *matchers,
                                       size_t count);
/* Advances to the next series; false at the end. */
bool tsdb_series_set_next(tsdb_series_set_t *set);
/* The current series' labels, sorted by name (borrowed until the next call). */
size_t tsdb_series_set_labels(tsdb_series_set_t *set, const tsdb_label_t **labels);
/* Advances to the current series' next sample in the range: true with *t and *v set. */
bool tsdb_series_set_sample(tsdb_series_set_t *set, int64_t *t, double *v);
/* Number of series in the set. */
size_t tsdb_series_set_count(const tsdb_series_set_t *set);
void tsdb_series_set_free(tsdb_series_set_t *set);

/* Sorted, de-duplicated label names (or values of name) of the series matching the matchers
 * (all series when count is 0). Returns how many; *out is an array of strings the caller frees
 * with tsdb_strings_free. */
size_t tsdb_querier_label_names(tsdb_querier_t *q, const tsdb_matcher_t *const *matchers,
                                size_t count, char ***out);
size_t tsdb_querier_label_values(tsdb_querier_t *q, const char *name,
                                 const tsdb_matcher_t *const *matchers, size_t count, char ***out);
void tsdb_strings_free(char **strings, size_t count);

/* The `storage:` configuration section (`storage.tsdb`). */
typedef struct tsdb_config {
    int64_t out_of_order_time_window_ms; /* storage.tsdb.out_of_order_time_window, default 0 */
} tsdb_config_t;

void tsdb_config_init(tsdb_config_t *cfg);

#endif /* CAIRN_TSDB_H */
