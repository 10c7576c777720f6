/*
 * tsdb/head.c: the in-memory head: opening and closing the database, the batched appender,
 * chunk cutting and sealing, truncation and series garbage collection.
 *
 * Appending. tsdb_append resolves the series (by reference, else by labels: found or created
 * at once, visible to queries), checks the sample against the series' newest timestamp with
 * relaxed atomic reads (no lock), and buffers it. tsdb_appender_commit then
 *   1. encodes one Series record (for series not yet in the WAL) and one Samples record,
 *   2. frames them into the WAL (wal_log_begin; the write itself is group-committed with
 *      concurrent commits and goes on while this commit applies),
 *   3. applies the samples: a counting sort groups them by append stripe (see series_stripe),
 *      and each stripe's lock is taken once for all its samples; each sample is re-checked
 *      (a concurrent commit may have moved the series on) and appended to the open chunk,
 *   4. writes the chunks sealed in step 3 to chunks_head/ with one write,
 *   5. waits until the WAL bytes are written (wal_log_wait), writing them itself, together
 *      with everything framed since, if no write is in progress.
 * A sample is acknowledged when commit returns: it is in the WAL and in memory. Applying
 * before the write completes lets commits overlap their WAL writes; if that write fails, the
 * batch is reported as failed, its samples may be visible until restart, and the WAL refuses
 * every later write.
 *
 * WAL order equals apply order, per stripe. Two commits touching the same series could
 * otherwise apply in the opposite order to their records' order in the WAL; replay would then
 * see a series' samples in a different order than the live head did and reject, as out of
 * order, a sample the live head had accepted and acknowledged. So when wal_log_ordered frames
 * a commit's records (under the WAL's mutex, i.e. in log order), the commit takes a ticket for
 * every stripe it touches, and applies to a stripe only when that stripe serves its ticket.
 * A commit only ever waits for commits earlier in the log, so there is no cycle; commits whose
 * stripes are not shared with an earlier, unfinished commit do not wait.
 *
 * Chunks. A series' open chunk lives in a pooled buffer (64 B to 1 KiB, moved to the next size
 * class as it grows). It is cut as Prometheus cuts (reference §1.4): at a 2h-aligned boundary,
 * when it holds more than 1005 bytes, at 240 samples, and at an end time re-estimated when it
 * reaches 30 samples so that chunks hold about 120 samples. A cut chunk is sealed: written to
 * chunks_head/ and referenced from the series' sealed list; its buffer goes back to the pool.
 *
 * Lifetimes. Two big-reader locks (64 cache-line-padded rwlocks each; a thread uses one):
 * appenders hold `guard`'s read side from their first append to commit, queriers hold
 * `query_guard`'s read side for their lifetime. Truncation takes query_guard's write side
 * while it drops old chunks and unlinks dead series (so an open querier keeps a stable view,
 * as Prometheus makes truncation wait for readers), releases it, then takes guard's write side
 * only to free what it unlinked and delete old chunk files. An appender may still buffer a sample
 * for a series that truncation unlinks before the commit applies it (truncation only unlinks series
 * with nothing recent, so this is rare): the apply step sees the `deleted` flag under the stripe
 * lock and re-creates the series from its labels (the old memory is still valid under the guard),
 * so the sample is not lost. The WAL logged it under the old reference, whose Series record
 * precedes it, and replay maps both references to the one label set.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsdb/head.h"

#define GUARD_SLOTS                  64
#define CHUNK_RANGE_MS               (2 * 3600 * 1000LL)
#define SAMPLES_PER_CHUNK            120
#define DEFAULT_HEAD_WINDOW_MS       (3 * 3600 * 1000LL)
#define DEFAULT_APPENDABLE_WINDOW_MS (3600 * 1000LL)
#define TRUNCATE_INTERVAL_SECONDS    60

static const char *const reject_messages[TSDB_REJECT_COUNT] = {
    [TSDB_REJECT_NONE] = "ok",
    [TSDB_REJECT_OUT_OF_ORDER] = "out of order sample",
    [TSDB_REJECT_DUPLICATE] = "duplicate sample for timestamp",
    [TSDB_REJECT_OUT_OF_BOUNDS] = "out of bounds",
    [TSDB_REJECT_INVALID_LABELS] = "invalid labels",
    [TSDB_REJECT_UNKNOWN_REF] = "unknown series reference",
};

static const char *const reject_labels[TSDB_REJECT_COUNT] = {
    [TSDB_REJECT_NONE] = "none",
    [TSDB_REJECT_OUT_OF_ORDER] = "out_of_order",
    [TSDB_REJECT_DUPLICATE] = "duplicate",
    [TSDB_REJECT_OUT_OF_BOUNDS] = "out_of_bounds",
    [TSDB_REJECT_INVALID_LABELS] = "invalid_labels",
    [TSDB_REJECT_UNKNOWN_REF] = "unknown_ref",
};

const char *tsdb_reject_message(tsdb_reject_t reason)
{
    return (unsigned)reason < TSDB_REJECT_COUNT ? reject_messages[reason] : "unknown";
}

/* ---- the guard ------------------------------------------------------------------------------ */

static _Atomic unsigned guard_next_slot;
static _Thread_local int guard_slot = -1;

static unsigned guard_my_slot(void)
{
    if (guard_slot < 0)
        guard_slot = (int)(atomic_fetch_add(&guard_next_slot, 1) % GUARD_SLOTS);
    return (unsigned)guard_slot;
}

unsigned guard_read_lock(padded_rwlock_t *guard)
{
    unsigned slot = guard_my_slot();
    pthread_rwlock_rdlock(&guard[slot].lock);
    return slot;
}

void guard_read_unlock(padded_rwlock_t *guard, unsigned slot)
{
    pthread_rwlock_unlock(&guard[slot].lock);
}

static void guard_write_lock(padded_rwlock_t *guard)
{
    for (size_t i = 0; i < GUARD_SLOTS; i++)
        pthread_rwlock_wrlock(&guard[i].lock);
}

static void guard_write_unlock(padded_rwlock_t *guard)
{
    for (size_t i = GUARD_SLOTS; i-- > 0;)
        pthread_rwlock_unlock(&guard[i].lock);
}

/* ---- metrics ------------------------------------------------------------------------------ */

static const double batch_size_buckets[] = {1, 10, 100, 1000, 5000, 10000, 50000, 100000, 1000000};

static void collect_head(void *ctx, buf_t *out)
{
    tsdb_t *db = ctx;
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"cairn_tsdb_head_series", "Series in the head."},
        {"cairn_tsdb_head_chunks_open", "Open (in-memory) head chunks."},
        {"cairn_tsdb_head_chunks_sealed", "Sealed head chunks in chunks_head files."},
        {"cairn_tsdb_head_min_time_seconds", "Oldest sample time in the head."},
        {"cairn_tsdb_head_max_time_seconds", "Newest sample time in the head."},
        {"cairn_tsdb_symbols", "Interned label strings."},
        {"cairn_tsdb_symbol_bytes", "Bytes of interned label strings."},
    };
    uint64_t syms, sym_bytes;
    symbols_stats(db->syms, &syms, &sym_bytes);
    double values[] = {(double)st.series,
                       (double)st.chunks_open,
                       (double)st.chunks_sealed,
                       st.min_time == INT64_MAX ? NAN : (double)st.min_time / 1000.0,
                       st.max_time == INT64_MIN ? NAN : (double)st.max_time / 1000.0,
                       (double)syms,
                       (double)sym_bytes};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(gauges); i++) {
        metric_write_header(out, gauges[i].name, gauges[i].help, METRIC_GAUGE);
        metric_write_sample(out, gauges[i].name, 0, NULL, NULL, values[i]);
    }
}

static void register_metrics(tsdb_t *db, metric_registry_t *reg)
{
    db->m_appended = metric_counter_new(reg, "cairn_tsdb_head_samples_appended_total",
                                        "Samples appended to the head.");
    static const char *const reason[] = {"reason"};
    metric_family_t *rej =
        metric_family_new(reg, METRIC_COUNTER, "cairn_tsdb_head_samples_rejected_total",
                          "Samples rejected by the head, by reason.", 1, reason);
    for (int r = 1; r < TSDB_REJECT_COUNT; r++)
        db->m_rejected[r] = metric_counter_with(rej, &reject_labels[r]);
    db->m_series_created = metric_counter_new(reg, "cairn_tsdb_head_series_created_total",
                                              "Series created in the head.");
    db->m_series_removed = metric_counter_new(reg, "cairn_tsdb_head_series_removed_total",
                                              "Series removed from the head by truncation.");
    db->m_commits =
        metric_counter_new(reg, "cairn_tsdb_head_commits_total", "Appender commits (batches).");
    db->m_commit_duration =
        metric_histogram_new(reg, "cairn_tsdb_head_commit_duration_seconds",
                             "Time to commit a batch: WAL write and apply.",
                             METRIC_LATENCY_BUCKET_COUNT, METRIC_LATENCY_BUCKETS);
    db->m_commit_samples =
        metric_histogram_new(reg, "cairn_tsdb_head_commit_samples", "Samples per committed batch.",
                             CAIRN_ARRAY_LEN(batch_size_buckets), batch_size_buckets);
    db->m_truncations =
        metric_counter_new(reg, "cairn_tsdb_head_truncations_total", "Head truncations.");
    db->m_checkpoints = metric_counter_new(reg, "cairn_tsdb_checkpoint_creations_total",
                                           "WAL checkpoints written.");
    db->m_checkpoint_failures =
        metric_counter_new(reg, "cairn_tsdb_checkpoint_creations_failed_total",
                           "WAL checkpoints that failed (the WAL keeps its segments).");
    metric_registry_add_collector(reg, collect_head, db);
}

/* ---- options -------------------------------------------------------------------------------- */

void tsdb_open_options_init(tsdb_open_options_t *opts, const char *path)
{
    memset(opts, 0, sizeof(*opts));
    opts->path = path;
    opts->head_window_ms = DEFAULT_HEAD_WINDOW_MS;
    opts->appendable_window_ms = DEFAULT_APPENDABLE_WINDOW_MS;
    opts->wal_sync = TSDB_WAL_SYNC_NONE;
    opts->wal_compress = true;
    opts->snapshot_on_close = true;
    opts->limits.max_labels = TSDB_DEFAULT_MAX_LABELS;
    opts->limits.max_name_length = TSDB_DEFAULT_MAX_NAME_LENGTH;
    opts->limits.max_value_length = TSDB_DEFAULT_MAX_VALUE_LENGTH;
}

/* ---- time bounds ---------------------------------------------------------------------------- */

static void atomic_min_i64(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (v < cur && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

static void atomic_max_i64(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load_explicit(a, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

/* Samples older than this are out of bounds. */
static int64_t min_valid_time(tsdb_t *db)
{
    int64_t max = atomic_load_explicit(&db->max_t, memory_order_relaxed);
    int64_t floor_t = atomic_load_explicit(&db->truncated_before, memory_order_relaxed);
    if (max == INT64_MIN)
        return floor_t;
    int64_t w = max - db->opts.appendable_window_ms;
    return w > floor_t ? w : floor_t;
}

/* ---- chunks -------------------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* End of the 2h-aligned range holding t. */
static int64_t range_end(int64_t t)
{
    int64_t end = floor_div(t, CHUNK_RANGE_MS) * CHUNK_RANGE_MS;
    return end > INT64_MAX - CHUNK_RANGE_MS ? INT64_MAX : end + CHUNK_RANGE_MS;
}

/* Prometheus's computeChunkEndTime: spread the range evenly over chunks of the size the
 * first quarter of this chunk predicts. */
static int64_t chunk_end_time(int64_t start, int64_t cur, int64_t max_end)
{
    int64_t span = cur - start + 1;
    if (span <= 0)
        return max_end;
    int64_t n = (max_end - start) / (span * 4);
    if (n <= 1)
        return max_end;
    return start + (max_end - start) / n;
}

/* Writes the open chunk to chunks_head/ and returns its buffer to the pool. Under the stripe
 * lock. */
static int series_seal(tsdb_t *db, tsdb_series_t *s)
{
    if (!s->app.buf)
        return 0;
    int rc = 0;
    if (s->app.count > 0) {
        uint64_t ref;
        rc = head_chunks_append(db->chunks, s->ref, s->chunk_min_t, s->app.t, s->app.buf,
                                xor_appender_bytes(&s->app), &ref);
        if (rc == 0) {
            if (s->sealed_count == s->sealed_cap) {
                s->sealed_cap = s->sealed_cap ? s->sealed_cap * 2 : 4;
                s->sealed = cairn_realloc(s->sealed, s->sealed_cap * sizeof(*s->sealed));
            }
            s->sealed[s->sealed_count++] = (chunk_meta_t){ref, s->chunk_min_t, s->app.t};
            atomic_fetch_add_explicit(&db->chunks_sealed, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&db->sealed_bytes, xor_appender_bytes(&s->app),
                                      memory_order_relaxed);
        }
    }
    chunk_pool_put(db->pool, s->app.buf, s->app.cap);
    atomic_fetch_sub_explicit(&db->chunks_open, 1, memory_order_relaxed);
    s->app.buf = NULL;
    s->app.cap = 0;
    return rc;
}

static void series_cut(tsdb_t *db, tsdb_series_t *s, int64_t t)
{
    /* The new chunk starts in a buffer the size of the one it replaces: a series' chunks are
     * about the same size, so this skips the growth copies, and since every series cuts at the
     * same moments (2h boundaries, equal scrape intervals), it also keeps the pool from parking
     * one spare buffer per size class per series. */
    size_t size = s->app.buf ? s->app.cap : CHUNK_POOL_MIN_SIZE;
    series_seal(db, s);
    uint8_t *buf = chunk_pool_get(db->pool, size);
    xor_appender_init(&s->app, buf, chunk_pool_class_size(size));
    s->chunk_min_t = t;
    s->next_at = range_end(t);
    atomic_fetch_add_explicit(&db->chunks_open, 1, memory_order_relaxed);
}

/* Moves the open chunk to the next size class. */
static void series_grow_chunk(tsdb_t *db, tsdb_series_t *s)
{
    size_t used = xor_appender_bytes(&s->app);
    size_t cap = chunk_pool_class_size(s->app.cap * 2);
    uint8_t *buf = chunk_pool_get(db->pool, cap);
    memcpy(buf, s->app.buf, used);
    chunk_pool_put(db->pool, s->app.buf, s->app.cap);
    xor_appender_rebase(&s->app, buf, cap);
}

/* Checks and appends one sample to a series whose stripe lock the caller holds (or which only
 * the caller can reach, during replay). */
tsdb_reject_t head_series_append(tsdb_t *db, tsdb_series_t *s, int64_t t, double v,
                                 int64_t min_valid)
{
    int64_t max_t = atomic_load_explicit(&s->max_t, memory_order_relaxed);
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    if (t <= max_t) {
        if (t < max_t)
            return TSDB_REJECT_OUT_OF_ORDER;
        return atomic_load_explicit(&s->last_v, memory_order_relaxed) == bits
                   ? TSDB_REJECT_NONE /* same sample again: accepted, nothing to store */
                   : TSDB_REJECT_DUPLICATE;
    }
    if (t < min_valid)
        return TSDB_REJECT_OUT_OF_BOUNDS;

    if (!s->app.buf || xor_appender_bytes(&s->app) > XOR_CUT_BYTES || t >= s->next_at ||
        s->app.count >= 2 * SAMPLES_PER_CHUNK)
        series_cut(db, s, t);
    for (;;) {
        int rc = xor_append(&s->app, t, v);
        if (rc == 0)
            break;
        if (rc == -ENOSPC && s->app.cap < CHUNK_POOL_MAX_SIZE)
            series_grow_chunk(db, s);
        else
            series_cut(db, s, t); /* full: start over in a fresh chunk */
    }
    if (s->app.count == SAMPLES_PER_CHUNK / 4)
        s->next_at = chunk_end_time(s->chunk_min_t, t, s->next_at);
    atomic_store_explicit(&s->max_t, t, memory_order_relaxed);
    atomic_store_explicit(&s->last_v, bits, memory_order_relaxed);
    return TSDB_REJECT_NONE;
}

void head_note_time(tsdb_t *db, int64_t min_t, int64_t max_t)
{
    atomic_min_i64(&db->min_t, min_t);
    atomic_max_i64(&db->max_t, max_t);
}

/* ---- appender -------------------------------------------------------------------------------- */

struct tsdb_appender {
    tsdb_t *db;
    pending_sample_t *samples;
    size_t count, cap;
    size_t appended; /* tsdb_append calls in this batch, including rejected ones */
    bool guard_held;
    unsigned guard_slot;
    tsdb_commit_result_t result;
    uint32_t *order;      /* scratch: sample indices grouped by stripe */
    uint32_t *stripe_pos; /* scratch: per-stripe offsets */
    size_t order_cap;
    uint32_t *used;    /* stripes this batch touches, ascending */
    uint64_t *tickets; /* the batch's ticket on used[k] */
    size_t used_count;
    bool tickets_taken;
    int64_t min_valid;       /* truncation floor when the batch was framed */
    pending_sample_t *retry; /* samples of series truncated under the batch (commit_apply) */
    size_t retry_count, retry_cap;
    uint32_t stripe_key;  /* for the series this batch creates */
    uint32_t key_left;    /* series that may still get stripe_key; 0: take a new key */
    ref_block_t refs;     /* references reserved for the series this appender creates */
    tsdb_label_t *labels; /* scratch for sorting input labels */
    size_t labels_cap;
    buf_t wal_series, wal_samples;
    cairn_error_t err;
};

tsdb_appender_t *tsdb_appender_new(tsdb_t *db)
{
    tsdb_appender_t *app = cairn_calloc(1, sizeof(*app));
    app->db = db;
    app->stripe_pos = cairn_calloc(db->stripe_mask + 2, sizeof(uint32_t));
    app->used = cairn_calloc(db->stripe_mask + 1, sizeof(uint32_t));
    app->tickets = cairn_calloc(db->stripe_mask + 1, sizeof(uint64_t));
    return app;
}

static void appender_reset(tsdb_appender_t *app)
{
    app->count = 0;
    app->appended = 0;
    app->key_left = 0;
    app->refs.size = 0; /* a new batch starts with a small block */
    memset(&app->result, 0, sizeof(app->result));
    if (app->guard_held) {
        guard_read_unlock(app->db->guard, app->guard_slot);
        app->guard_held = false;
    }
}

void tsdb_appender_free(tsdb_appender_t *app)
{
    if (!app)
        return;
    tsdb_appender_rollback(app);
    series_map_release_refs(app->db->series, &app->refs);
    cairn_free(app->samples);
    cairn_free(app->order);
    cairn_free(app->retry);
    cairn_free(app->stripe_pos);
    cairn_free(app->used);
    cairn_free(app->tickets);
    cairn_free(app->labels);
    buf_free(&app->wal_series);
    buf_free(&app->wal_samples);
    cairn_free(app);
}

static tsdb_reject_t reject(tsdb_appender_t *app, tsdb_reject_t reason)
{
    if (app->result.first_reason == TSDB_REJECT_NONE) {
        app->result.first_reason = reason;
        app->result.first_rejected = app->appended;
    }
    app->result.rejected[reason]++;
    metric_counter_add(app->db->m_rejected[reason], 1);
    app->appended++;
    return reason;
}

/* Rebuilds a series' label set (for re-creating a series truncated under us). */
static size_t series_labels(tsdb_t *db, const tsdb_series_t *s, tsdb_label_t *out)
{
    for (size_t i = 0; i < s->label_count; i++) {
        out[i].name = symbols_string(db->syms, s->labels[2 * i]);
        out[i].value = symbols_string(db->syms, s->labels[2 * i + 1]);
    }
    return s->label_count;
}

static tsdb_series_t *lookup_by_labels(tsdb_appender_t *app, const tsdb_label_t *labels, size_t n,
                                       tsdb_reject_t *why)
{
    if (n > app->labels_cap) {
        app->labels_cap = n;
        app->labels = cairn_realloc(app->labels, n * sizeof(tsdb_label_t));
    }
    label_input_t in;
    *why = labels_prepare(labels, n, &app->db->opts.limits, app->labels, &in, &app->err);
    if (*why != TSDB_REJECT_NONE)
        return NULL;
    /* Series this batch creates share a stripe key of their own (see series_stripe). */
    if (app->key_left == 0) {
        do
            app->stripe_key =
                atomic_fetch_add_explicit(&app->db->next_stripe_key, 1, memory_order_relaxed);
        while (app->stripe_key == 0);
        app->key_left = HEAD_STRIPE_BLOCK;
    }
    in.stripe_key = app->stripe_key;
    in.refs = &app->refs;
    bool created;
    tsdb_series_t *s = series_map_get_or_create(app->db->series, &in, &created);
    if (created) {
        app->key_left--;
        metric_counter_add(app->db->m_series_created, 1);
    }
    return s;
}

tsdb_reject_t tsdb_append(tsdb_appender_t *app, tsdb_ref_t ref, const tsdb_label_t *labels,
                          size_t label_count, int64_t t, double v, tsdb_ref_t *ref_out)
{
    tsdb_t *db = app->db;
    if (!app->guard_held) {
        app->guard_slot = guard_read_lock(db->guard);
        app->guard_held = true;
    }
    if (t < min_valid_time(db))
        return reject(app, TSDB_REJECT_OUT_OF_BOUNDS);

    tsdb_series_t *s = ref ? series_map_by_ref(db->series, ref) : NULL;
    tsdb_reject_t why = TSDB_REJECT_UNKNOWN_REF;
    if (s && atomic_load_explicit(&s->deleted_flag, memory_order_relaxed))
        s = NULL; /* being truncated: go by labels */
    if (!s && labels)
        s = lookup_by_labels(app, labels, label_count, &why);
    if (!s)
        return reject(app, why);
    if (ref_out)
        *ref_out = s->ref;

    /* Early check without the lock against what is committed; commit checks again, in batch
     * order, under the lock. An identical repeat of the newest sample is buffered like any
     * other: only commit can tell whether a newer sample of the same batch comes first. */
    int64_t max_t = atomic_load_explicit(&s->max_t, memory_order_relaxed);
    if (t <= max_t) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof(bits));
        if (t < max_t)
            return reject(app, TSDB_REJECT_OUT_OF_ORDER);
        if (atomic_load_explicit(&s->last_v, memory_order_relaxed) != bits)
            return reject(app, TSDB_REJECT_DUPLICATE);
    }
    if (app->count == app->cap) {
        app->cap = app->cap ? app->cap * 2 : 256;
        app->samples = cairn_realloc(app->samples, app->cap * sizeof(*app->samples));
    }
    app->samples[app->count++] =
        (pending_sample_t){s,
                           s->ref,
                           t,
                           v,
                           (uint32_t)app->appended,
                           !atomic_load_explicit(&s->wal_logged, memory_order_acquire),
                           (uint16_t)series_stripe(db, s)};
    app->appended++;
    return TSDB_REJECT_NONE;
}

void tsdb_appender_rollback(tsdb_appender_t *app)
{
    appender_reset(app);
}

/* ---- WAL records ------------------------------------------------------------------------------
 */

/* Counts a sample rejected at commit time. */
static void apply_reject(tsdb_appender_t *app, const pending_sample_t *p, tsdb_reject_t r)
{
    if (app->result.first_reason == TSDB_REJECT_NONE || p->index < app->result.first_rejected) {
        app->result.first_reason = r;
        app->result.first_rejected = p->index;
    }
    app->result.rejected[r]++;
    metric_counter_add(app->db->m_rejected[r], 1);
}

/* Groups the batch's sample indices by stripe (a stable counting sort: a series' samples stay
 * in order) and lists the stripes used, ascending. */
static void commit_group(tsdb_appender_t *app)
{
    tsdb_t *db = app->db;
    size_t stripes = db->stripe_mask + 1;
    if (app->count > app->order_cap) {
        app->order_cap = app->count;
        app->order = cairn_realloc(app->order, app->order_cap * sizeof(uint32_t));
    }
    uint32_t *pos = app->stripe_pos;
    memset(pos, 0, (stripes + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < app->count; i++)
        pos[app->samples[i].stripe + 1]++;
    app->used_count = 0;
    for (size_t i = 1; i <= stripes; i++) {
        if (pos[i])
            app->used[app->used_count++] = (uint32_t)(i - 1);
        pos[i] += pos[i - 1];
    }
    for (size_t i = 0; i < app->count; i++)
        app->order[pos[app->samples[i].stripe]++] = (uint32_t)i;
}

/* The framing hook: takes this commit's place in every stripe it touches, in log order. */
static void commit_take_tickets(void *ctx)
{
    tsdb_appender_t *app = ctx;
    for (size_t k = 0; k < app->used_count; k++)
        app->tickets[k] = app->db->stripes[app->used[k]].next_ticket++;
    app->tickets_taken = true;
    /* The truncation floor at this point of the log: what replay will use for this batch. */
    app->min_valid = atomic_load_explicit(&app->db->truncated_before, memory_order_relaxed);
}

/* Locks a stripe and waits until it serves ticket. */
static void stripe_enter_turn(append_stripe_t *st, uint64_t ticket)
{
    pthread_mutex_lock(&st->lock);
    while (st->serving != ticket) {
        st->waiters++;
        pthread_cond_wait(&st->turn, &st->lock);
        st->waiters--;
    }
}

/* Locks stripe used[k] and waits for this commit's turn on it. */
static append_stripe_t *stripe_enter(tsdb_appender_t *app, size_t k)
{
    append_stripe_t *st = &app->db->stripes[app->used[k]];
    stripe_enter_turn(st, app->tickets[k]);
    return st;
}

static void stripe_leave(append_stripe_t *st)
{
    st->serving++;
    if (st->waiters)
        pthread_cond_broadcast(&st->turn);
    pthread_mutex_unlock(&st->lock);
}

/* After a failed WAL write that took tickets: let later commits through. */
static void commit_skip_turns(tsdb_appender_t *app)
{
    for (size_t k = 0; k < app->used_count; k++)
        stripe_leave(stripe_enter(app, k));
}

static void commit_apply(tsdb_appender_t *app, int64_t *min_t, int64_t *max_t)
{
    tsdb_t *db = app->db;
    /* Only the truncation floor as of this batch's place in the log, so that replay, which
     * knows nothing else, decides the same (the head's appendable window was checked when
     * the samples were appended). */
    int64_t min_valid = app->min_valid;
    uint64_t stored = 0;
    size_t orphans = 0; /* samples of series truncated since append, moved to order[0..] */
    size_t i = 0;
    for (size_t k = 0; k < app->used_count; k++) {
        size_t stripe = app->used[k];
        append_stripe_t *st = stripe_enter(app, k);
        for (; i < app->count; i++) {
            pending_sample_t *p = &app->samples[app->order[i]];
            if (p->stripe != stripe)
                break;
            if (CAIRN_UNLIKELY(
                    atomic_load_explicit(&p->series->deleted_flag, memory_order_relaxed))) {
                app->order[orphans++] = app->order[i];
                continue;
            }
            /* Its Series record is framed (before this batch's samples): later batches may
             * leave it out. */
            if (p->unlogged)
                atomic_store_explicit(&p->series->wal_logged, 1, memory_order_release);
            tsdb_reject_t r = head_series_append(db, p->series, p->t, p->v, min_valid);
            if (r == TSDB_REJECT_NONE) {
                stored++;
                if (p->t < *min_t)
                    *min_t = p->t;
                if (p->t > *max_t)
                    *max_t = p->t;
            } else {
                apply_reject(app, p, r);
            }
        }
        stripe_leave(st);
    }
    /* Samples of series truncated since they were appended: the next round re-creates the
     * series and commits them again. */
    if (orphans > app->retry_cap) {
        app->retry_cap = orphans;
        app->retry = cairn_realloc(app->retry, app->retry_cap * sizeof(*app->retry));
    }
    size_t next = 0;
    for (size_t k = 0; k < orphans; k++) {
        pending_sample_t *p = &app->samples[app->order[k]];
        tsdb_label_t labels[256];
        tsdb_reject_t why;
        size_t n = series_labels(db, p->series, labels);
        tsdb_series_t *s = lookup_by_labels(app, labels, n, &why);
        if (!s) {
            apply_reject(app, p, why);
            continue;
        }
        app->retry[next++] =
            (pending_sample_t){s,
                               s->ref,
                               p->t,
                               p->v,
                               p->index,
                               !atomic_load_explicit(&s->wal_logged, memory_order_acquire),
                               (uint16_t)series_stripe(db, s)};
    }
    app->retry_count = next;
    app->result.appended += stored;
    metric_counter_add(db->m_appended, stored);
    atomic_fetch_add_explicit(&db->samples_appended, stored, memory_order_relaxed);
}

/* Commits app->samples (steps 1-5 of the file comment). Leaves in app->retry the samples of
 * series that truncation removed meanwhile, re-pointed at series re-created from their
 * labels. Returns 0 or a negative errno from the WAL. */
static int commit_round(tsdb_appender_t *app)
{
    tsdb_t *db = app->db;
    app->retry_count = 0;
    /* 1-2: the batch's records, then the WAL. */
    wal_records_encode_batch(db, app->samples, app->count, &app->wal_series, &app->wal_samples);
    const uint8_t *recs[2];
    size_t lens[2], n = 0;
    if (app->wal_series.len) {
        recs[n] = (const uint8_t *)app->wal_series.data;
        lens[n++] = app->wal_series.len;
    }
    recs[n] = (const uint8_t *)app->wal_samples.data;
    lens[n++] = app->wal_samples.len;
    commit_group(app);
    app->tickets_taken = false;
    uint64_t wal_ticket = 0;
    int rc = wal_log_begin(db->wal, recs, lens, n, commit_take_tickets, app, &wal_ticket, NULL);
    if (rc < 0) {
        if (app->tickets_taken)
            commit_skip_turns(app);
        return rc;
    }
    /* 3-4: apply, then write the sealed chunks. */
    int64_t min_t = INT64_MAX, max_t = INT64_MIN;
    commit_apply(app, &min_t, &max_t);
    if (max_t != INT64_MIN)
        head_note_time(db, min_t, max_t);
    int crc = head_chunks_flush(db->chunks);
    if (crc < 0)
        LOG_ERROR("Writing sealed chunks failed", "err=%s", log_quote(cairn_strerror(crc)));
    /* The WAL write went on meanwhile (or this waiter writes it, with whatever other commits
     * framed since): only now is the batch acknowledged. */
    return wal_log_wait(db->wal, wal_ticket);
}

int tsdb_appender_commit(tsdb_appender_t *app, tsdb_commit_result_t *result)
{
    tsdb_t *db = app->db;
    double start = time_monotonic_seconds();
    int rc = 0;
    if (app->count)
        metric_histogram_observe(db->m_commit_samples, (double)app->count);
    /* Samples whose series truncation removed between append and apply are committed again,
     * to the re-created series and under its reference in the WAL (a checkpoint keeps only
     * the records of live series). A few rounds at most: a series re-created here has a
     * sample, so the next truncation keeps it. */
    for (int round = 0; app->count && rc == 0; round++) {
        if (round == 8) {
            for (size_t i = 0; i < app->count; i++)
                apply_reject(app, &app->samples[i], TSDB_REJECT_UNKNOWN_REF);
            break;
        }
        rc = commit_round(app);
        if (!app->retry_count)
            break;
        pending_sample_t *swap = app->samples;
        size_t swap_cap = app->cap;
        app->samples = app->retry;
        app->cap = app->retry_cap;
        app->count = app->retry_count;
        app->retry = swap;
        app->retry_cap = swap_cap;
    }
    if (rc < 0)
        LOG_ERROR("WAL write failed; batch not acknowledged", "err=%s",
                  log_quote(cairn_strerror(rc)));
    metric_counter_add(db->m_commits, 1);
    metric_histogram_observe(db->m_commit_duration, time_monotonic_seconds() - start);
    if (result)
        *result = app->result;
    appender_reset(app);
    return rc;
}

/* ---- truncation ------------------------------------------------------------------------------ */

typedef struct truncate_tickets {
    tsdb_t *db;
    int64_t min_time;
    uint64_t *tickets; /* one per stripe */
    bool taken;
} truncate_tickets_t;

/* The framing hook of the Truncate record: a turn on every stripe, in log order. */
static void truncate_take_tickets(void *ctx)
{
    truncate_tickets_t *tt = ctx;
    /* Raised here, at the record's place in the log: batches framed later use it. */
    atomic_max_i64(&tt->db->truncated_before, tt->min_time);
    for (size_t k = 0; k <= tt->db->stripe_mask; k++)
        tt->tickets[k] = tt->db->stripes[k].next_ticket++;
    tt->taken = true;
}

/* Locks stripe k and, when ticketed, waits for the truncation's turn on it. */
static append_stripe_t *truncate_enter(tsdb_t *db, size_t k, const uint64_t *tickets)
{
    append_stripe_t *st = &db->stripes[k];
    if (tickets)
        stripe_enter_turn(st, tickets[k]);
    else
        pthread_mutex_lock(&st->lock);
    return st;
}

static void truncate_leave(append_stripe_t *st, const uint64_t *tickets)
{
    if (tickets)
        stripe_leave(st);
    else
        pthread_mutex_unlock(&st->lock);
}

/* Drops sealed chunks of s that end before min_time; unlinks s if nothing recent is left.
 * Under s's stripe lock. Returns true if s was unlinked. */
static bool truncate_series(tsdb_t *db, tsdb_series_t *s, int64_t min_time, uint32_t round)
{
    uint32_t keep = 0;
    while (keep < s->sealed_count && s->sealed[keep].max_t < min_time)
        keep++;
    if (keep) {
        memmove(s->sealed, s->sealed + keep, (s->sealed_count - keep) * sizeof(*s->sealed));
        s->sealed_count -= keep;
        atomic_fetch_sub_explicit(&db->chunks_sealed, keep, memory_order_relaxed);
    }
    int64_t max_t = atomic_load_explicit(&s->max_t, memory_order_relaxed);
    if (s->sealed_count != 0 || max_t >= min_time)
        return false;
    /* A series without samples that was created since the previous round belongs to a batch
     * still being appended or committed (tsdb_append creates series at once): keep it. */
    if (max_t == INT64_MIN && s->created_round >= round)
        return false;
    atomic_store_explicit(&s->deleted_flag, 1, memory_order_relaxed);
    if (s->app.buf) {
        chunk_pool_put(db->pool, s->app.buf, s->app.cap);
        s->app.buf = NULL;
        atomic_fetch_sub_explicit(&db->chunks_open, 1, memory_order_relaxed);
    }
    series_map_unlink(db->series, s);
    return true;
}

static int compare_keep(const void *a, const void *b)
{
    tsdb_ref_t x = ((const checkpoint_keep_t *)a)->ref, y = ((const checkpoint_keep_t *)b)->ref;
    return (x > y) - (x < y);
}

int tsdb_truncate(tsdb_t *db, int64_t min_time)
{
    pthread_mutex_lock(&db->truncate_lock);
    if (!db->wal) /* replay: the floor moves here; live, in the framing hook below */
        atomic_max_i64(&db->truncated_before, min_time);
    /* Open queriers keep the data they were opened on (new ones wait until the unlinking is
     * done); waited for before taking stripe turns, which commits queue behind. */
    guard_write_lock(db->query_guard);

    /* The Truncate record goes first, so a restart repeats the truncation at the same point
     * of the log; its stripe turns make this scan see exactly the commits logged before it
     * (replay calls this with no WAL open, and needs no turns). */
    size_t stripes = db->stripe_mask + 1;
    truncate_tickets_t tt = {db, min_time, NULL, false};
    wal_position_t marker = {0};
    if (db->wal) {
        tt.tickets = cairn_calloc(stripes, sizeof(uint64_t));
        uint8_t rec[11];
        size_t len = wal_record_encode_truncate(rec, min_time);
        const uint8_t *recs[1] = {rec};
        int rc = wal_log_ordered(db->wal, recs, &len, 1, &marker, truncate_take_tickets, &tt);
        if (rc < 0) {
            LOG_ERROR("Cannot log the head truncation; not truncating", "err=%s",
                      log_quote(cairn_strerror(rc)));
            for (size_t k = 0; tt.taken && k < stripes; k++)
                truncate_leave(truncate_enter(db, k, tt.tickets), tt.tickets);
            cairn_free(tt.tickets);
            guard_write_unlock(db->query_guard);
            pthread_mutex_unlock(&db->truncate_lock);
            return rc;
        }
    }

    /* Series by stripe (a counting sort of the live series). Series pointers stay valid
     * without the appenders' guard: only truncation frees series, and truncate_lock
     * serialises it. */
    tsdb_ref_t *refs;
    size_t n = postings_all(db->series, &refs);
    uint32_t *start = cairn_calloc(stripes + 1, sizeof(uint32_t));
    tsdb_series_t **series = cairn_malloc((n ? n : 1) * sizeof(tsdb_series_t *));
    tsdb_series_t **by_stripe = cairn_malloc((n ? n : 1) * sizeof(tsdb_series_t *));
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        tsdb_series_t *s = series_map_by_ref(db->series, refs[i]);
        if (s) {
            series[live++] = s;
            start[series_stripe(db, s) + 1]++;
        }
    }
    for (size_t k = 1; k <= stripes; k++)
        start[k] += start[k - 1];
    for (size_t i = 0; i < live; i++)
        by_stripe[start[series_stripe(db, series[i])]++] = series[i];
    cairn_free(series);
    cairn_free(refs);
    /* The segments before the Truncate record's are framed before it: a checkpoint of them
     * needs, per live series, where its unsealed samples begin, noted during the pass. */
    checkpoint_keep_t *keep = NULL;
    size_t kept = 0;
    if (db->wal && head_checkpoint_due(db, marker.segment))
        keep = cairn_malloc((n ? n : 1) * sizeof(*keep));

    /* Series created from now on belong to the next round. */
    uint32_t round = db->truncate_round++;
    series_map_set_round(db->series, db->truncate_round);
    tsdb_series_t *dead = NULL;
    uint64_t removed = 0;
    size_t i = 0;
    for (size_t k = 0; k < stripes; k++) {
        append_stripe_t *st = truncate_enter(db, k, tt.tickets);
        for (; i < start[k]; i++) {
            tsdb_series_t *s = by_stripe[i];
            if (truncate_series(db, s, min_time, round)) {
                s->next_free = dead;
                dead = s;
                removed++;
            } else if (keep) {
                int64_t max_t = atomic_load_explicit(&s->max_t, memory_order_relaxed);
                int64_t from = s->app.buf           ? s->chunk_min_t
                               : max_t == INT64_MIN ? INT64_MIN
                                                    : max_t + 1;
                keep[kept++] = (checkpoint_keep_t){s->ref, from};
            }
        }
        truncate_leave(st, tt.tickets);
    }
    cairn_free(start);
    cairn_free(by_stripe);
    cairn_free(tt.tickets);
    guard_write_unlock(db->query_guard);

    /* Appenders that found the unlinked series before they were unlinked may still hold them;
     * wait for those batches to end. Queriers opened since cannot see them. */
    guard_write_lock(db->guard);
    for (tsdb_series_t *s = dead, *next; s; s = next) {
        next = s->next_free;
        series_free(db->series, s);
    }
    series_map_reclaim_pages(db->series);
    int files = head_chunks_truncate_before(db->chunks, min_time);
    guard_write_unlock(db->guard);

    atomic_max_i64(&db->min_t, min_time);
    metric_counter_add(db->m_series_removed, removed);
    metric_counter_add(db->m_truncations, 1);
    if ((removed || files) && db->wal)
        LOG_INFO("Head truncated", "min_time=%lld series_removed=%llu chunk_files_removed=%d",
                 (long long)min_time, (unsigned long long)removed, files);
    if (keep) {
        qsort(keep, kept, sizeof(*keep), compare_keep);
        head_checkpoint(db, marker.segment, keep, kept);
        cairn_free(keep);
    }
    pthread_mutex_unlock(&db->truncate_lock);
    return 0;
}

static void *truncate_loop(void *arg)
{
    tsdb_t *db = arg;
    pthread_mutex_lock(&db->loop_lock);
    while (!db->stopping) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += TRUNCATE_INTERVAL_SECONDS;
        pthread_cond_timedwait(&db->loop_cond, &db->loop_lock, &deadline);
        if (db->stopping)
            break;
        pthread_mutex_unlock(&db->loop_lock);
        int64_t max_t = atomic_load_explicit(&db->max_t, memory_order_relaxed);
        int64_t min_t = atomic_load_explicit(&db->min_t, memory_order_relaxed);
        if (max_t != INT64_MIN && max_t - min_t > db->opts.head_window_ms)
            tsdb_truncate(db, max_t - db->opts.head_window_ms);
        else if (head_checkpoint_due(db, wal_written_position(db->wal).segment))
            tsdb_truncate(db, atomic_load_explicit(&db->truncated_before, memory_order_relaxed));
        chunk_pool_trim(db->pool);
        pthread_mutex_lock(&db->loop_lock);
    }
    pthread_mutex_unlock(&db->loop_lock);
    return NULL;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static unsigned stripes_for_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = (unsigned)(cores > 0 ? cores : 1) * 16, n = 64;
    while (n < want && n < HEAD_MAX_STRIPES)
        n <<= 1;
    return n;
}

tsdb_t *tsdb_open(const tsdb_open_options_t *opts, cairn_error_t *err)
{
    tsdb_t *db = cairn_aligned_calloc(CAIRN_CACHE_LINE, sizeof(*db));
    db->opts = *opts;
    db->path = cairn_strdup(opts->path);
    db->opts.path = db->path;
    db->lock_fd = -1;
    if (!db->opts.head_window_ms)
        db->opts.head_window_ms = DEFAULT_HEAD_WINDOW_MS;
    if (!db->opts.appendable_window_ms)
        db->opts.appendable_window_ms = DEFAULT_APPENDABLE_WINDOW_MS;
    atomic_store(&db->min_t, INT64_MAX);
    atomic_store(&db->max_t, INT64_MIN);
    atomic_store(&db->truncated_before, INT64_MIN);
    for (size_t i = 0; i < GUARD_SLOTS; i++) {
        pthread_rwlock_init(&db->guard[i].lock, NULL);
        pthread_rwlock_init(&db->query_guard[i].lock, NULL);
    }
    pthread_mutex_init(&db->truncate_lock, NULL);
    pthread_mutex_init(&db->loop_lock, NULL);
    pthread_cond_init(&db->loop_cond, NULL);
    unsigned stripes = stripes_for_cores();
    db->stripes = cairn_aligned_calloc(CAIRN_CACHE_LINE, stripes * sizeof(*db->stripes));
    db->stripe_mask = stripes - 1;
    for (size_t i = 0; i < stripes; i++) {
        pthread_mutex_init(&db->stripes[i].lock, NULL);
        pthread_cond_init(&db->stripes[i].turn, NULL);
    }

    metric_registry_t *reg = opts->registry;
    if (!reg)
        reg = db->own_registry = metric_registry_new();
    register_metrics(db, reg);

    if (tsdb_directory_lock(db->path, &db->lock_fd, err) < 0)
        goto fail;
    db->syms = symbols_new();
    db->series = series_map_new(db->syms, stripes * 4);
    db->pool = chunk_pool_new(reg);

    /* Sealed chunks first, then the WAL on top of them. */
    if (head_replay(db, err) < 0)
        goto fail;
    /* New batches' stripe keys start past those the replayed series took from their refs. */
    atomic_store(&db->next_stripe_key,
                 (uint32_t)(series_map_max_ref(db->series) >> SERIES_STRIPE_SHIFT) + 1);

    char *wal_dir = cairn_sprintf("%s/wal", db->path);
    wal_options_t wo = {.dir = wal_dir,
                        .segment_size = opts->wal_segment_size,
                        .sync = opts->wal_sync == TSDB_WAL_SYNC_ALWAYS ? WAL_SYNC_ALWAYS
                                                                       : WAL_SYNC_NONE,
                        .compress = opts->wal_compress,
                        .registry = reg,
                        .min_segment = db->wal_first_segment};
    db->wal = wal_open(&wo, err);
    cairn_free(wal_dir);
    if (!db->wal)
        goto fail;
    db->wal_first_segment = wal_written_position(db->wal).segment;

    if (pthread_create(&db->truncator, NULL, truncate_loop, db) != 0) {
        cairn_error_set(err, -EAGAIN, "cannot start the head truncation thread");
        goto fail;
    }
    db->truncator_started = true;
    return db;
fail:
    tsdb_close(db);
    return NULL;
}

int tsdb_close(tsdb_t *db)
{
    if (!db)
        return 0;
    if (db->truncator_started) {
        pthread_mutex_lock(&db->loop_lock);
        db->stopping = true;
        pthread_cond_broadcast(&db->loop_cond);
        pthread_mutex_unlock(&db->loop_lock);
        pthread_join(db->truncator, NULL);
    }
    int rc = 0, r;
    if (db->wal) {
        uint32_t last = wal_written_position(db->wal).segment;
        rc = wal_close(db->wal);
        db->wal = NULL;
        /* Nothing runs any more: the head's state as it is, so a restart reads it back
         * instead of replaying samples (a failed snapshot leaves the WAL as it was). */
        if (rc == 0 && db->opts.snapshot_on_close)
            head_snapshot(db, last);
    }
    if (db->chunks && (r = head_chunks_close(db->chunks)) < 0 && rc == 0)
        rc = r;
    if (db->series) {
        /* Open chunk buffers go back to the pool before it is freed. */
        tsdb_ref_t *refs;
        size_t n = postings_all(db->series, &refs);
        for (size_t i = 0; i < n; i++) {
            tsdb_series_t *s = series_map_by_ref(db->series, refs[i]);
            if (s && s->app.buf) {
                chunk_pool_put(db->pool, s->app.buf, s->app.cap);
                s->app.buf = NULL;
            }
        }
        cairn_free(refs);
    }
    series_map_free(db->series);
    symbols_free(db->syms);
    chunk_pool_free(db->pool);
    tsdb_directory_unlock(db->lock_fd);
    for (size_t i = 0; i <= db->stripe_mask && db->stripes; i++) {
        pthread_mutex_destroy(&db->stripes[i].lock);
        pthread_cond_destroy(&db->stripes[i].turn);
    }
    cairn_aligned_free(db->stripes);
    for (size_t i = 0; i < GUARD_SLOTS; i++) {
        pthread_rwlock_destroy(&db->guard[i].lock);
        pthread_rwlock_destroy(&db->query_guard[i].lock);
    }
    pthread_mutex_destroy(&db->truncate_lock);
    pthread_mutex_destroy(&db->loop_lock);
    pthread_cond_destroy(&db->loop_cond);
    metric_registry_free(db->own_registry);
    cairn_free(db->remap_from);
    cairn_free(db->remap_to);
    cairn_free(db->path);
    cairn_aligned_free(db);
    return rc;
}

void tsdb_stats(tsdb_t *db, tsdb_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->series = series_map_count(db->series);
    out->samples = atomic_load_explicit(&db->samples_appended, memory_order_relaxed);
    out->min_time = atomic_load_explicit(&db->min_t, memory_order_relaxed);
    out->max_time = atomic_load_explicit(&db->max_t, memory_order_relaxed);
    out->chunks_open = atomic_load_explicit(&db->chunks_open, memory_order_relaxed);
    out->chunks_sealed = atomic_load_explicit(&db->chunks_sealed, memory_order_relaxed);
    out->chunk_bytes = atomic_load_explicit(&db->sealed_bytes, memory_order_relaxed);
    out->wal_bytes = head_directory_bytes(db, "wal") +
                     atomic_load_explicit(&db->checkpoint_bytes, memory_order_relaxed);
    out->replayed_samples = db->replayed_samples;
    out->replay_applied = db->replay_applied;
    out->replay_seconds = db->replay_seconds;
}

uint64_t tsdb_chunk_bytes(tsdb_t *db)
{
    uint64_t total = atomic_load_explicit(&db->sealed_bytes, memory_order_relaxed);
    tsdb_ref_t *refs;
    size_t n = postings_all(db->series, &refs);
    unsigned slot = guard_read_lock(db->guard);
    for (size_t i = 0; i < n; i++) {
        tsdb_series_t *s = series_map_by_ref(db->series, refs[i]);
        if (!s)
            continue;
        pthread_mutex_t *lock = &db->stripes[series_stripe(db, s)].lock;
        pthread_mutex_lock(lock);
        if (s->app.buf)
            total += xor_appender_bytes(&s->app);
        pthread_mutex_unlock(lock);
    }
    guard_read_unlock(db->guard, slot);
    cairn_free(refs);
    return total;
}
