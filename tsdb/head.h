/*
 * tsdb/head.h: the database object and what head.c, replay.c and querier.c share (internal to
 * tsdb/). Lock order and lifetimes are described in tsdb/internal.h and head.c.
 */
#ifndef CAIRN_TSDB_HEAD_H
#define CAIRN_TSDB_HEAD_H

#include "tsdb/head_chunks.h"
#include "tsdb/internal.h"

/* An append stripe: the lock for its series' chunk state, and the tickets that make commits
 * apply to it in WAL order (see head.c). */
typedef struct append_stripe {
    _Alignas(CAIRN_CACHE_LINE) pthread_mutex_t lock;
    pthread_cond_t turn;  /* signalled when serving advances */
    uint64_t next_ticket; /* next ticket to hand out; under the WAL's mutex (framing hook) */
    uint64_t serving;     /* ticket whose commit may apply now; under lock */
    uint32_t waiters;     /* commits waiting for their turn; under lock */
} append_stripe_t;

typedef struct padded_rwlock {
    _Alignas(CAIRN_CACHE_LINE) pthread_rwlock_t lock;
} padded_rwlock_t;

/* A sample buffered in an appender. */
typedef struct pending_sample {
    tsdb_series_t *series;
    tsdb_ref_t ref; /* series->ref, copied so encoding needs no pointer chase */
    int64_t t;
    double v;
    uint32_t index;   /* position among the batch's tsdb_append calls */
    uint8_t unlogged; /* the series had no Series record in the WAL when appended */
    uint16_t stripe;  /* the series' append stripe */
} pending_sample_t;

struct tsdb {
    tsdb_open_options_t opts;
    char *path;
    int lock_fd;
    symbols_t *syms;
    series_map_t *series;
    chunk_pool_t *pool;
    wal_t *wal;
    head_chunks_t *chunks;
    append_stripe_t *stripes; /* append stripes, by series stripe key */
    size_t stripe_mask;
    _Atomic uint32_t next_stripe_key; /* for the next batch that creates series */

    padded_rwlock_t guard[64];       /* appenders (read) vs freeing series (write) */
    padded_rwlock_t query_guard[64]; /* queriers (read) vs truncation's unlinking (write) */

    _Atomic int64_t min_t, max_t;     /* head sample time range */
    _Atomic int64_t truncated_before; /* nothing older is accepted or kept */
    _Atomic uint64_t samples_appended;
    _Atomic uint64_t chunks_open, chunks_sealed;
    _Atomic uint64_t sealed_bytes; /* encoded bytes of the sealed chunks (data only) */
    uint64_t replayed_samples;     /* read from the WAL at open */
    uint64_t replay_applied;       /* of those, appended (the rest were already in sealed chunks) */
    double replay_seconds;

    uint32_t wal_first_segment;        /* the first segment this process writes */
    _Atomic uint64_t checkpoint_bytes; /* size of the newest checkpoint */
    /* References replay mapped onto another series with the same labels (checkpoint.c
     * translates them); under truncate_lock once open. */
    tsdb_ref_t *remap_from, *remap_to;
    size_t remap_count;

    pthread_mutex_t truncate_lock; /* one truncation at a time */
    uint32_t truncate_round;       /* truncations so far (under truncate_lock) */
    pthread_t truncator;
    bool truncator_started;
    pthread_mutex_t loop_lock;
    pthread_cond_t loop_cond;
    bool stopping;

    metric_registry_t *own_registry; /* when the caller gave none */
    metric_counter_t *m_appended;
    metric_counter_t *m_rejected[TSDB_REJECT_COUNT];
    metric_counter_t *m_series_created;
    metric_counter_t *m_series_removed;
    metric_counter_t *m_commits;
    metric_counter_t *m_truncations;
    metric_counter_t *m_checkpoints;
    metric_counter_t *m_checkpoint_failures;
    metric_histogram_t *m_commit_duration;
    metric_histogram_t *m_commit_samples;
};

/* The append stripe of a series, from the stripe key it was created with. Each batch that
 * creates series gives them a fresh key (a new one every HEAD_STRIPE_BLOCK series): a scrape
 * target's series are created together, so a target's batch takes one or a few stripe locks
 * (instead of one per stripe), and batches of different targets rarely meet on a stripe, even
 * when their series were created at the same time (their references then interleave). */
#define HEAD_STRIPE_BLOCK 1024
#define HEAD_MAX_STRIPES  65536 /* pending_sample_t.stripe is 16 bits */
static inline size_t series_stripe(const tsdb_t *db, const tsdb_series_t *s)
{
    return (size_t)s->stripe_key & db->stripe_mask;
}

/* Read side of a big-reader lock (db->guard for appenders, db->query_guard for queriers: while
 * a querier is open, truncation does not start, as Prometheus waits for readers). Returns the
 * slot to unlock. */
unsigned guard_read_lock(padded_rwlock_t *guard);
void guard_read_unlock(padded_rwlock_t *guard, unsigned slot);

/* Checks and appends a sample to s; the caller holds s's stripe lock (or owns s during replay).
 * Returns why it was not stored, or TSDB_REJECT_NONE (also for an identical repeat). */
tsdb_reject_t head_series_append(tsdb_t *db, tsdb_series_t *s, int64_t t, double v,
                                 int64_t min_valid);
/* Widens the head's time range. */
void head_note_time(tsdb_t *db, int64_t min_t, int64_t max_t);
/* Bytes of the files in the data directory's subdirectory sub. */
uint64_t head_directory_bytes(tsdb_t *db, const char *sub);

/* replay.c: encodes a batch's Series record (for series not yet logged; empty if none) and
 * Samples record. */
void wal_records_encode_batch(tsdb_t *db, const pending_sample_t *samples, size_t count,
                              buf_t *series_rec, buf_t *samples_rec);
/* replay.c: appends a Series record entry for s (ref and labels) to rec. */
void wal_record_put_series(tsdb_t *db, buf_t *rec, const tsdb_series_t *s);
/* replay.c: appends a Chunks record entry: a series' open chunk and its appender state. */
void wal_record_put_chunk(buf_t *rec, tsdb_ref_t ref, int64_t min_t, int64_t next_at,
                          const xor_appender_t *app);
/* replay.c: a Truncate record for min_time into rec (>= 11 bytes); returns its length. */
size_t wal_record_encode_truncate(uint8_t *rec, int64_t min_time);
/* replay.c: loads chunks_head/ (opening db->chunks) and replays the WAL into the head,
 * repairing a torn or corrupt tail. */
int head_replay(tsdb_t *db, cairn_error_t *err);

/* checkpoint.c: a live series and the time from which its samples are not in sealed chunks
 * (the start of its open chunk when the checkpoint began). */
typedef struct checkpoint_keep {
    tsdb_ref_t ref;
    int64_t from;
} checkpoint_keep_t;

/* Whether the WAL segments before upto are worth checkpointing. */
bool head_checkpoint_due(tsdb_t *db, uint32_t upto);
/* Writes wal/checkpoint.(upto - 1) from the newest checkpoint and the segments before upto,
 * keeping the series in keep (sorted by ref) and their samples at or after keep[i].from, then
 * deletes what it replaces. Logs what it did; returns 0 or a negative errno. Under
 * truncate_lock. */
int head_checkpoint(tsdb_t *db, uint32_t upto, const checkpoint_keep_t *keep, size_t count);
/* Writes the whole head as wal/checkpoint.last_segment (its series and open chunks as they
 * are: a restart then decodes no samples) and deletes every segment. Only in tsdb_close, with
 * the WAL closed and nothing else running. Returns 0 or a negative errno (logged). */
int head_snapshot(tsdb_t *db, uint32_t last_segment);
/* Finds the newest complete checkpoint in wal_dir: returns 1 and stores its segment number,
 * 0 if there is none, or a negative errno. With cleanup, removes every other checkpoint
 * directory (older ones, unfinished temporaries). */
int checkpoint_find(const char *wal_dir, uint32_t *segment, bool cleanup);
/* Bytes of checkpoint.segment's files. */
uint64_t checkpoint_bytes(const char *wal_dir, uint32_t segment);

/* WAL record types written by the head (docs/format/wal.md). */
enum {
    WAL_RECORD_SERIES = 1,
    WAL_RECORD_SAMPLES = 2,
    WAL_RECORD_TRUNCATE = 3,
    WAL_RECORD_CHUNKS = 4, /* open chunks, in snapshots (checkpoints written on close) */
};

#endif /* CAIRN_TSDB_HEAD_H */
