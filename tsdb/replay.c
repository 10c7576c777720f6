/*
 * tsdb/replay.c: the head's WAL records, and rebuilding the head from chunks_head/ and the WAL
 * when the database opens.
 *
 * Records (docs/format/wal.md). Varints are LEB128; "svarint" is zig-zag encoded.
 *   Series  (1): uvarint count, then per series: uvarint ref, uvarint label count, then per
 *                label uvarint length + name bytes, uvarint length + value bytes.
 *   Samples (2): uvarint count, svarint base time, then per sample: svarint (ref - previous
 *                ref, starting from 0), svarint (t - base time), value: uvarint x where an even
 *                x is an integral value (svarint of the integer shifted left by one) and x = 1
 *                is followed by the 8 raw bytes (little-endian) of any other double.
 * Counters and most gauges are integral, so a sample of a scrape usually takes 3 to 6 bytes
 * before snappy, against Prometheus's 10+ (its record always stores 8 value bytes).
 *
 * Replay. Chunks in chunks_head/ are collected first (per series, the sealed chunks and their
 * newest time). The WAL is then read in order on this thread: Series records create series
 * (with their old references) and attach their sealed chunks; Samples records are decoded and
 * handed in batches to worker threads, one series always to the same worker (ref % workers),
 * so workers append without locks and a series' samples stay in WAL order. Samples at or
 * before a series' newest sealed time are already on disk and skipped. A torn or corrupt tail
 * stops the replay with a warning and is truncated (wal_repair); what came before is kept.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <snappy-c.h>

#include "tsdb/head.h"
#include "tsdb/records.h"

#define REPLAY_BATCH 4096
#define REPLAY_QUEUE 16

/* ---- encoding -------------------------------------------------------------------------------- */

void wal_record_put_series(tsdb_t *db, buf_t *rec, const tsdb_series_t *s)
{
    put_uvarint(rec, s->ref);
    put_uvarint(rec, s->label_count);
    for (size_t l = 0; l < 2u * s->label_count; l++) {
        const char *str = symbols_string(db->syms, s->labels[l]);
        size_t len = strlen(str);
        put_uvarint(rec, len);
        buf_append(rec, str, len);
    }
}

void wal_record_put_chunk(buf_t *rec, tsdb_ref_t ref, int64_t min_t, int64_t next_at,
                          const xor_appender_t *app)
{
    uint8_t tmp[80], *p = tmp;
    p = put_uvarint_raw(p, ref);
    p = put_uvarint_raw(p, zigzag(min_t));
    p = put_uvarint_raw(p, zigzag(next_at));
    p = put_uvarint_raw(p, zigzag(app->t));
    p = put_uvarint_raw(p, app->t_delta);
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(app->v_bits >> (8 * i));
    *p++ = app->leading;
    *p++ = app->trailing;
    p = put_uvarint_raw(p, app->bit_len);
    buf_append(rec, tmp, (size_t)(p - tmp));
    buf_append(rec, app->buf, xor_appender_bytes(app));
}

bool wal_record_get_chunk(record_reader_t *r, wal_chunk_entry_t *e)
{
    e->ref = get_uvarint(r);
    e->min_t = get_svarint(r);
    e->next_at = get_svarint(r);
    e->state.t = get_svarint(r);
    e->state.t_delta = get_uvarint(r);
    if (r->bad || r->end - r->p < 10)
        return false;
    e->state.v_bits = 0;
    for (int i = 0; i < 8; i++)
        e->state.v_bits |= (uint64_t)r->p[i] << (8 * i);
    e->state.leading = r->p[8];
    e->state.trailing = r->p[9];
    r->p += 10;
    e->state.bit_len = get_uvarint(r);
    size_t len = (e->state.bit_len + 7) / 8;
    if (r->bad || e->state.bit_len < 8 * XOR_HEADER_BYTES || len > (uint64_t)(r->end - r->p) ||
        len > CHUNK_POOL_MAX_SIZE) {
        r->bad = true;
        return false;
    }
    e->data = r->p;
    e->state.count = xor_chunk_count(r->p, len);
    r->p += len;
    return e->state.count > 0;
}

void wal_records_encode_batch(tsdb_t *db, const pending_sample_t *samples, size_t count,
                              buf_t *series_rec, buf_t *samples_rec)
{
    buf_reset(series_rec);
    buf_reset(samples_rec);
    /* Series that had no Series record when their sample was appended (flagged then, so the
     * count and the entries agree whatever other commits do meanwhile). A series logged twice
     * is harmless: replay treats the repeat as a no-op. */
    size_t unlogged = 0;
    for (size_t i = 0; i < count; i++)
        unlogged += samples[i].unlogged;
    if (unlogged) {
        buf_append_char(series_rec, WAL_RECORD_SERIES);
        put_uvarint(series_rec, unlogged);
        for (size_t i = 0; i < count; i++) {
            if (!samples[i].unlogged)
                continue;
            wal_record_put_series(db, series_rec, samples[i].series);
        }
    }
    /* Worst case per sample: three 10-byte varints (ref, time, value) or 9 raw value bytes. */
    buf_reserve(samples_rec, 1 + 10 + 10 + count * 30);
    uint8_t *p = (uint8_t *)samples_rec->data + samples_rec->len;
    *p++ = WAL_RECORD_SAMPLES;
    p = put_uvarint_raw(p, count);
    int64_t base = samples[0].t;
    p = put_uvarint_raw(p, zigzag(base));
    tsdb_ref_t prev = 0;
    for (size_t i = 0; i < count; i++) {
        tsdb_ref_t ref = samples[i].ref;
        p = put_uvarint_raw(p, zigzag((int64_t)(ref - prev)));
        prev = ref;
        p = put_uvarint_raw(p, zigzag(samples[i].t - base));
        p = put_value_raw(p, samples[i].v);
    }
    samples_rec->len = (size_t)(p - (uint8_t *)samples_rec->data);
    samples_rec->data[samples_rec->len] = '\0';
}

size_t wal_record_encode_truncate(uint8_t *rec, int64_t min_time)
{
    rec[0] = WAL_RECORD_TRUNCATE;
    return (size_t)(put_uvarint_raw(rec + 1, zigzag(min_time)) - rec);
}

/* ---- chunks_head collection ---------------------------------------------------------------- */

typedef struct mmapped_chunk {
    tsdb_ref_t series;
    chunk_meta_t meta;
    size_t length; /* bytes of chunk data */
} mmapped_chunk_t;

typedef struct chunk_collector {
    mmapped_chunk_t *items; /* in file order while collecting, then grouped by series */
    size_t count, cap;
    tsdb_ref_t max_ref;
    size_t *start;       /* after indexing: chunks of ref r are items[start[r] .. start[r + 1]) */
    int64_t *sealed_max; /* after indexing: newest sealed time of ref r (INT64_MIN: none) */
} chunk_collector_t;

static void collect_chunk(void *ctx, const head_chunk_info_t *c)
{
    chunk_collector_t *cc = ctx;
    if (c->encoding != 1 || c->series_ref == 0 || c->series_ref > ((tsdb_ref_t)1 << 40))
        return;
    if (cc->count == cc->cap) {
        cc->cap = cc->cap ? cc->cap * 2 : 1024;
        cc->items = cairn_realloc(cc->items, cc->cap * sizeof(*cc->items));
    }
    cc->items[cc->count++] =
        (mmapped_chunk_t){c->series_ref, {c->chunk_ref, c->min_t, c->max_t}, c->length};
    if (c->series_ref > cc->max_ref)
        cc->max_ref = c->series_ref;
}

/* Groups the chunks by series with a counting sort (references are dense integers); within a
 * series they keep file order, which is time order. */
static void index_chunks(chunk_collector_t *cc)
{
    if (!cc->count)
        return;
    size_t n = (size_t)cc->max_ref + 2;
    cc->start = cairn_calloc(n, sizeof(size_t));
    for (size_t i = 0; i < cc->count; i++)
        cc->start[cc->items[i].series + 1]++;
    for (size_t r = 1; r < n; r++)
        cc->start[r] += cc->start[r - 1];
    mmapped_chunk_t *sorted = cairn_malloc(cc->count * sizeof(*sorted));
    size_t *next = cairn_malloc(n * sizeof(size_t));
    memcpy(next, cc->start, n * sizeof(size_t));
    for (size_t i = 0; i < cc->count; i++)
        sorted[next[cc->items[i].series]++] = cc->items[i];
    cairn_free(next);
    cairn_free(cc->items);
    cc->items = sorted;
    cc->sealed_max = cairn_malloc((cc->max_ref + 1) * sizeof(int64_t));
    for (tsdb_ref_t r = 0; r <= cc->max_ref; r++)
        cc->sealed_max[r] = cc->start[r + 1] > cc->start[r]
                                ? cc->items[cc->start[r + 1] - 1].meta.max_t
                                : INT64_MIN;
}

/* Attaches the collected chunks of ref to s (once). */
static void attach_chunks(tsdb_t *db, chunk_collector_t *cc, tsdb_ref_t ref, tsdb_series_t *s)
{
    if (!cc->start || ref > cc->max_ref)
        return;
    size_t lo = cc->start[ref], n = cc->start[ref + 1] - lo;
    /* Chunks a replayed truncation dropped (their files are gone) stay out. */
    int64_t floor_t = atomic_load_explicit(&db->truncated_before, memory_order_relaxed);
    while (n && cc->items[lo].meta.max_t < floor_t)
        lo++, n--;
    if (!n || s->sealed_count)
        return;
    s->sealed = cairn_malloc(n * sizeof(chunk_meta_t));
    s->sealed_cap = s->sealed_count = (uint32_t)n;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        s->sealed[i] = cc->items[lo + i].meta;
        bytes += cc->items[lo + i].length;
    }
    atomic_fetch_add_explicit(&db->sealed_bytes, bytes, memory_order_relaxed);
    int64_t max_t = s->sealed[n - 1].max_t;
    atomic_store_explicit(&s->max_t, max_t, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->chunks_sealed, n, memory_order_relaxed);
    head_note_time(db, s->sealed[0].min_t, max_t);
}

/* ---- workers ----------------------------------------------------------------------------------
 */

typedef struct replay_batch {
    size_t count;
    struct {
        tsdb_series_t *series;
        int64_t t;
        double v;
    } samples[REPLAY_BATCH];
} replay_batch_t;

typedef struct replay_worker {
    struct replay_shared *shared;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    replay_batch_t *queue[REPLAY_QUEUE];
    size_t head, tail; /* ring indices; tail - head = queued */
    bool done;
    replay_batch_t *filling; /* owned by the reader thread */
    uint64_t applied, skipped;
    int64_t min_t, max_t;
} replay_worker_t;

typedef struct replay_shared {
    tsdb_t *db;
    pthread_mutex_t free_lock;
    replay_batch_t *free_list[REPLAY_QUEUE * 64];
    size_t free_count;
} replay_shared_t;

static replay_batch_t *batch_get(replay_shared_t *sh)
{
    pthread_mutex_lock(&sh->free_lock);
    replay_batch_t *b = sh->free_count ? sh->free_list[--sh->free_count] : NULL;
    pthread_mutex_unlock(&sh->free_lock);
    if (!b)
        b = cairn_malloc(sizeof(*b));
    b->count = 0;
    return b;
}

static void batch_put(replay_shared_t *sh, replay_batch_t *b)
{
    pthread_mutex_lock(&sh->free_lock);
    if (sh->free_count < CAIRN_ARRAY_LEN(sh->free_list)) {
        sh->free_list[sh->free_count++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&sh->free_lock);
    cairn_free(b);
}

static void apply_batch(replay_worker_t *w, replay_batch_t *b)
{
    tsdb_t *db = w->shared->db;
    for (size_t i = 0; i < b->count; i++) {
        if (head_series_append(db, b->samples[i].series, b->samples[i].t, b->samples[i].v,
                               INT64_MIN) == TSDB_REJECT_NONE) {
            w->applied++;
            if (b->samples[i].t < w->min_t)
                w->min_t = b->samples[i].t;
            if (b->samples[i].t > w->max_t)
                w->max_t = b->samples[i].t;
        } else {
            w->skipped++;
        }
    }
}

static void *worker_main(void *arg)
{
    replay_worker_t *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->head == w->tail && !w->done)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->head == w->tail)
            break;
        replay_batch_t *b = w->queue[w->head % REPLAY_QUEUE];
        w->head++;
        pthread_cond_broadcast(&w->cond); /* room for the reader */
        pthread_mutex_unlock(&w->lock);
        apply_batch(w, b);
        batch_put(w->shared, b);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void worker_push(replay_worker_t *w, replay_batch_t *b)
{
    pthread_mutex_lock(&w->lock);
    while (w->tail - w->head == REPLAY_QUEUE)
        pthread_cond_wait(&w->cond, &w->lock);
    w->queue[w->tail % REPLAY_QUEUE] = b;
    w->tail++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* ---- the replay ---------------------------------------------------------------------------------
 */

/* A sample a decoder found not yet stored, kept for in-order dispatch. */
typedef struct survivor {
    tsdb_series_t *series; /* NULL: not found by reference (the reader tries its remaps) */
    tsdb_ref_t ref;
    int64_t t;
    double v;
} survivor_t;

typedef struct replay {
    tsdb_t *db;
    chunk_collector_t chunks;
    replay_shared_t shared;
    replay_worker_t *workers;
    size_t worker_count;
    tsdb_label_t *labels;
    size_t labels_cap;
    char *strings; /* scratch copy of a series' strings, NUL-terminated */
    size_t strings_cap;
    uint64_t series_records, sample_records, unknown_ref_samples, decoded;
    int64_t truncate_to;     /* highest Truncate record seen */
    uint64_t already_stored; /* samples skipped by the reader: already in sealed chunks */
    bool dispatched;         /* a sample went to a worker */
    uint64_t restored;       /* samples in open chunks taken as they are */
    int64_t restored_min_t, restored_max_t;
    struct decoders *decoders; /* parallel decoding of Samples records; NULL = inline */
    survivor_t *survivors;     /* inline decoding's scratch */
    buf_t plain;               /* a decompressed record (raw reading) */
    size_t survivor_count, survivor_cap;
    /* References the WAL names that map to a different live series (same labels). */
    tsdb_ref_t *remap_from;
    tsdb_series_t **remap_to;
    size_t remap_count;
} replay_t;

static tsdb_series_t *replay_series_for(replay_t *rp, tsdb_ref_t ref)
{
    tsdb_series_t *s = series_map_by_ref(rp->db->series, ref);
    if (s)
        return s;
    for (size_t i = 0; i < rp->remap_count; i++)
        if (rp->remap_from[i] == ref)
            return rp->remap_to[i];
    return NULL;
}

static int replay_series_record(replay_t *rp, record_reader_t *r)
{
    uint64_t count = get_uvarint(r);
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        tsdb_ref_t ref = get_uvarint(r);
        uint64_t nlabels = get_uvarint(r);
        if (r->bad || nlabels == 0 || nlabels > 65535)
            return -EINVAL;
        if (nlabels > rp->labels_cap) {
            rp->labels_cap = nlabels;
            rp->labels = cairn_realloc(rp->labels, nlabels * sizeof(tsdb_label_t));
        }
        /* Copy the strings so they are NUL-terminated. */
        const uint8_t *save = r->p;
        if (!skip_labels(r, nlabels))
            return -EINVAL;
        size_t need = (size_t)(r->p - save) + 2 * nlabels; /* an upper bound */
        if (need > rp->strings_cap) {
            rp->strings_cap = need * 2;
            rp->strings = cairn_realloc(rp->strings, rp->strings_cap);
        }
        r->p = save;
        char *out = rp->strings;
        for (uint64_t l = 0; l < 2 * nlabels; l++) {
            uint64_t len = get_uvarint(r);
            memcpy(out, r->p, len);
            out[len] = '\0';
            r->p += len;
            if (l % 2 == 0)
                rp->labels[l / 2].name = out;
            else
                rp->labels[l / 2].value = out;
            out += len + 1;
        }
        if (replay_series_for(rp, ref))
            continue; /* logged again by a later batch */
        tsdb_label_t *sorted = cairn_malloc(nlabels * sizeof(tsdb_label_t));
        label_input_t in;
        cairn_error_t err;
        tsdb_limits_t no_limits = {0};
        if (labels_prepare(rp->labels, nlabels, &no_limits, sorted, &in, &err) !=
            TSDB_REJECT_NONE) {
            cairn_free(sorted);
            LOG_WARN("Skipping a series with invalid labels in the WAL", "ref=%llu err=%s",
                     (unsigned long long)ref, log_quote(err.message));
            continue;
        }
        tsdb_series_t *s = series_map_create_with_ref(rp->db->series, &in, ref);
        cairn_free(sorted);
        atomic_store_explicit(&s->wal_logged, 1, memory_order_relaxed);
        if (s->ref != ref) {
            rp->remap_from =
                cairn_realloc(rp->remap_from, (rp->remap_count + 1) * sizeof(tsdb_ref_t));
            rp->remap_to =
                cairn_realloc(rp->remap_to, (rp->remap_count + 1) * sizeof(tsdb_series_t *));
            rp->remap_from[rp->remap_count] = ref;
            rp->remap_to[rp->remap_count++] = s;
        }
        attach_chunks(rp->db, &rp->chunks, ref, s);
    }
    rp->series_records++;
    return r->bad ? -EINVAL : 0;
}

static void dispatch(replay_t *rp, tsdb_series_t *s, int64_t t, double v)
{
    rp->dispatched = true;
    replay_worker_t *w = &rp->workers[s->ref % rp->worker_count];
    if (!w->filling)
        w->filling = batch_get(&rp->shared);
    replay_batch_t *b = w->filling;
    b->samples[b->count].series = s;
    b->samples[b->count].t = t;
    b->samples[b->count].v = v;
    if (++b->count == REPLAY_BATCH) {
        if (rp->worker_count == 1) { /* no worker threads: apply here */
            apply_batch(w, b);
            batch_put(&rp->shared, b);
            w->filling = NULL;
        } else {
            worker_push(w, b);
            w->filling = NULL;
        }
    }
}

/* The first byte a snappy stream decodes to (the record type), or -1. A stream is a uvarint
 * length, then elements; the first one is a literal (there is nothing to copy from yet): a
 * tag with low bits 00 and the length in its upper six bits, or in 1-4 more bytes when those
 * read 60-63, then the literal's bytes. */
static int snappy_first_byte(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && i < 5 && (p[i] & 0x80))
        i++;
    i++; /* the length's last byte */
    if (i >= n || (p[i] & 3) != 0)
        return -1;
    unsigned code = p[i] >> 2;
    i += 1 + (code >= 60 ? code - 59 : 0);
    return i < n ? p[i] : -1;
}

/* Decompresses a snappy record into out; false if it is not valid snappy. */
static bool snappy_decode(const uint8_t *in, size_t n, buf_t *out)
{
    size_t ulen;
    if (snappy_uncompressed_length((const char *)in, n, &ulen) != SNAPPY_OK || ulen == 0 ||
        ulen > WAL_MAX_RECORD_SIZE)
        return false;
    buf_reset(out);
    buf_reserve(out, ulen + 1);
    size_t got = ulen;
    if (snappy_uncompress((const char *)in, n, out->data, &got) != SNAPPY_OK || got != ulen)
        return false;
    out->len = ulen;
    out->data[ulen] = '\0';
    return true;
}

typedef struct decode_counts {
    uint64_t decoded, already_stored;
} decode_counts_t;

/* Decodes a Samples record; samples at or before their series' newest time are already stored
 * and counted; the others go to out (grown as needed). Reads only shared, published state (the
 * series map, series' max_t), so decoders run in parallel. */
static bool decode_samples(tsdb_t *db, const chunk_collector_t *cc, record_reader_t *r,
                           survivor_t **out, size_t *count, size_t *cap, decode_counts_t *dc)
{
    uint64_t n = get_uvarint(r);
    int64_t base = get_svarint(r);
    tsdb_ref_t ref = 0;
    for (uint64_t i = 0; i < n && !r->bad; i++) {
        ref += (tsdb_ref_t)get_svarint(r);
        int64_t t = base + get_svarint(r);
        double v = get_value(r);
        if (r->bad)
            break;
        /* Most samples of a long WAL are in sealed chunks: one array load tells. */
        if (ref <= cc->max_ref && cc->sealed_max && t <= cc->sealed_max[ref]) {
            dc->decoded++;
            dc->already_stored++;
            continue;
        }
        tsdb_series_t *s = series_map_by_ref(db->series, ref);
        if (s && t <= atomic_load_explicit(&s->max_t, memory_order_relaxed)) {
            /* Already in a sealed chunk (or older than what a worker applied): the worker
             * would reject it, so it is not handed over. */
            dc->decoded++;
            dc->already_stored++;
            continue;
        }
        if (*count == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            *out = cairn_realloc(*out, *cap * sizeof(**out));
        }
        (*out)[(*count)++] = (survivor_t){s, ref, t, v};
    }
    return !r->bad;
}

/* Dispatches decoded survivors in order, resolving references the map did not know. */
static void dispatch_survivors(replay_t *rp, const survivor_t *sv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tsdb_series_t *s = sv[i].series ? sv[i].series : replay_series_for(rp, sv[i].ref);
        if (!s) {
            rp->unknown_ref_samples++;
            continue;
        }
        rp->decoded++;
        if (sv[i].t <= atomic_load_explicit(&s->max_t, memory_order_relaxed)) {
            rp->already_stored++;
            continue;
        }
        dispatch(rp, s, sv[i].t, sv[i].v);
    }
}

static int replay_samples_record(replay_t *rp, record_reader_t *r)
{
    decode_counts_t dc = {0};
    rp->survivor_count = 0;
    bool ok = decode_samples(rp->db, &rp->chunks, r, &rp->survivors, &rp->survivor_count,
                             &rp->survivor_cap, &dc);
    rp->decoded += dc.decoded;
    rp->already_stored += dc.already_stored;
    dispatch_survivors(rp, rp->survivors, rp->survivor_count);
    rp->sample_records++;
    return ok ? 0 : -EINVAL;
}

/* ---- parallel decoding ------------------------------------------------------------------------
 *
 * With more than one core, Samples records are decoded by decoder threads: the reader copies
 * records into jobs (about JOB_BYTES each) on a ring; decoders take the oldest queued job; the
 * reader retires jobs in ring order, dispatching each job's survivors to the apply workers, so
 * a series' samples still reach its worker in WAL order. Decoders only skip what is stored
 * already, which is safe in any order. Series and Truncate records stay with the reader (a
 * job's records only refer to series created before it was queued); a Chunks record waits
 * until every queued job is retired.
 */

#define JOB_RING  8
#define JOB_BYTES (128 * 1024)

enum { JOB_FREE, JOB_QUEUED, JOB_DECODING, JOB_DONE };

typedef struct decode_job {
    buf_t recs;  /* records back to back: uvarint length, compressed flag byte, record */
    buf_t plain; /* a decompressed record */
    survivor_t *out;
    size_t out_count, out_cap;
    decode_counts_t counts;
    uint64_t records, bad_records;
    int state; /* under the decoders' lock */
} decode_job_t;

typedef struct decoders {
    replay_t *rp;
    pthread_t *threads;
    size_t count;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    decode_job_t jobs[JOB_RING];
    uint64_t head; /* oldest job not retired (reader) */
    uint64_t tail; /* job the reader fills; jobs before it are queued (under lock) */
    uint64_t next; /* next queued job a decoder takes (under lock) */
    bool stopping;
} decoders_t;

static void decode_job_run(replay_t *rp, decode_job_t *job)
{
    record_reader_t all = {(const uint8_t *)job->recs.data,
                           (const uint8_t *)job->recs.data + job->recs.len, false};
    while (all.p < all.end) {
        uint64_t len = get_uvarint(&all);
        bool compressed = *all.p++;
        const uint8_t *rec = all.p;
        all.p += len;
        job->records++;
        if (compressed) {
            if (!snappy_decode(rec, len, &job->plain)) {
                job->bad_records++;
                continue;
            }
            rec = (const uint8_t *)job->plain.data;
            len = job->plain.len;
        }
        record_reader_t r = {rec + 1, rec + len, false};
        if (!decode_samples(rp->db, &rp->chunks, &r, &job->out, &job->out_count, &job->out_cap,
                            &job->counts))
            job->bad_records++;
    }
}

static void *decoder_main(void *arg)
{
    decoders_t *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->stopping && d->next == d->tail)
            pthread_cond_wait(&d->work, &d->lock);
        if (d->next == d->tail)
            break; /* stopping, and nothing queued */
        decode_job_t *job = &d->jobs[d->next++ % JOB_RING];
        job->state = JOB_DECODING;
        pthread_mutex_unlock(&d->lock);
        decode_job_run(d->rp, job);
        pthread_mutex_lock(&d->lock);
        job->state = JOB_DONE;
        pthread_cond_broadcast(&d->done);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Retires the oldest job (waiting for its decoder): its counts and survivors, in order. */
static void decoders_retire_one(decoders_t *d)
{
    decode_job_t *job = &d->jobs[d->head % JOB_RING];
    pthread_mutex_lock(&d->lock);
    while (job->state != JOB_DONE)
        pthread_cond_wait(&d->done, &d->lock);
    pthread_mutex_unlock(&d->lock);
    replay_t *rp = d->rp;
    rp->decoded += job->counts.decoded;
    rp->already_stored += job->counts.already_stored;
    rp->sample_records += job->records;
    if (job->bad_records)
        LOG_WARN("Skipping malformed WAL Samples records", "count=%llu",
                 (unsigned long long)job->bad_records);
    dispatch_survivors(rp, job->out, job->out_count);
    job->out_count = 0;
    job->records = job->bad_records = 0;
    job->counts = (decode_counts_t){0};
    buf_reset(&job->recs);
    pthread_mutex_lock(&d->lock);
    job->state = JOB_FREE;
    pthread_mutex_unlock(&d->lock);
    d->head++;
}

/* Queues the job being filled, if it holds anything; retires the oldest when the ring is
 * full. */
static void decoders_queue(decoders_t *d)
{
    decode_job_t *job = &d->jobs[d->tail % JOB_RING];
    if (!job->recs.len)
        return;
    pthread_mutex_lock(&d->lock);
    job->state = JOB_QUEUED;
    d->tail++;
    pthread_cond_signal(&d->work);
    pthread_mutex_unlock(&d->lock);
    if (d->tail - d->head == JOB_RING)
        decoders_retire_one(d);
}

/* Queues what is being filled and retires every job. */
static void decoders_drain(decoders_t *d)
{
    decoders_queue(d);
    while (d->head != d->tail)
        decoders_retire_one(d);
}

static void decoders_add(decoders_t *d, const uint8_t *rec, size_t len, bool compressed)
{
    decode_job_t *job = &d->jobs[d->tail % JOB_RING];
    put_uvarint(&job->recs, len);
    buf_append_char(&job->recs, compressed ? 1 : 0);
    buf_append(&job->recs, rec, len);
    if (job->recs.len >= JOB_BYTES)
        decoders_queue(d);
}

static decoders_t *decoders_start(replay_t *rp, size_t count)
{
    decoders_t *d = cairn_calloc(1, sizeof(*d));
    d->rp = rp;
    d->count = count;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->done, NULL);
    d->threads = cairn_calloc(count, sizeof(pthread_t));
    for (size_t i = 0; i < count; i++)
        if (pthread_create(&d->threads[i], NULL, decoder_main, d) != 0)
            CAIRN_PANIC("cannot start a WAL decoder thread");
    return d;
}

/* Retires everything and stops the threads. */
static void decoders_stop(decoders_t *d)
{
    if (!d)
        return;
    decoders_drain(d);
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->work);
    pthread_mutex_unlock(&d->lock);
    for (size_t i = 0; i < d->count; i++)
        pthread_join(d->threads[i], NULL);
    for (size_t i = 0; i < JOB_RING; i++) {
        buf_free(&d->jobs[i].recs);
        buf_free(&d->jobs[i].plain);
        cairn_free(d->jobs[i].out);
    }
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->done);
    cairn_free(d->threads);
    cairn_free(d);
}

/* Makes a Chunks record entry the series' open chunk: a copy into a pool buffer, and the
 * appender state, so nothing is decoded. */
static void restore_chunk(tsdb_t *db, tsdb_series_t *s, const wal_chunk_entry_t *e)
{
    size_t len = (e->state.bit_len + 7) / 8;
    size_t cap = chunk_pool_class_size(len);
    uint8_t *buf = chunk_pool_get(db->pool, len);
    memcpy(buf, e->data, len);
    if (e->state.bit_len % 8) /* bits past the end must be zero for later appends */
        buf[len - 1] &= (uint8_t)(0xff << (8 - e->state.bit_len % 8));
    s->app = e->state;
    s->app.buf = buf;
    s->app.cap = cap;
    s->chunk_min_t = e->min_t;
    s->next_at = e->next_at;
    atomic_store_explicit(&s->max_t, e->state.t, memory_order_relaxed);
    atomic_store_explicit(&s->last_v, e->state.v_bits, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->chunks_open, 1, memory_order_relaxed);
}

/* A Chunks record (snapshots). Before any sample has gone to the workers, and when the series
 * has nothing at or after the chunk's start (sealed chunks newer than a snapshot are loaded
 * first), the chunk is taken as it is; otherwise its samples are replayed one by one. */
static int replay_chunks_record(replay_t *rp, record_reader_t *r)
{
    uint64_t count = get_uvarint(r);
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        wal_chunk_entry_t e;
        if (!wal_record_get_chunk(r, &e))
            return -EINVAL;
        tsdb_series_t *s = replay_series_for(rp, e.ref);
        if (!s) {
            rp->unknown_ref_samples += e.state.count;
            continue;
        }
        rp->decoded += e.state.count;
        int64_t max_t = atomic_load_explicit(&s->max_t, memory_order_relaxed);
        if (!rp->dispatched && !s->app.buf && e.min_t > max_t) {
            restore_chunk(rp->db, s, &e);
            rp->restored += e.state.count;
            if (e.min_t < rp->restored_min_t)
                rp->restored_min_t = e.min_t;
            if (e.state.t > rp->restored_max_t)
                rp->restored_max_t = e.state.t;
            continue;
        }
        xor_iterator_t it;
        xor_iterator_init(&it, e.data, (e.state.bit_len + 7) / 8);
        while (xor_iterator_next(&it) > 0) {
            if (it.t <= max_t)
                rp->already_stored++;
            else
                dispatch(rp, s, it.t, xor_iterator_value(&it));
        }
        if (it.error)
            return -EINVAL;
    }
    return r->bad ? -EINVAL : 0;
}

/* A Truncate record. Replay notes the point and truncates once at the end, when every sample
 * is in: truncating here could drop a series that the live head, through an appender that had
 * found it before, still appended to. So after a restart the head holds everything it held
 * before, and possibly samples older than the last truncation point that live truncation had
 * dropped, until the next truncation. */
static int replay_truncate_record(replay_t *rp, record_reader_t *r)
{
    int64_t min_time = get_svarint(r);
    if (r->bad)
        return -EINVAL;
    if (min_time > rp->truncate_to)
        rp->truncate_to = min_time;
    return 0;
}

/* Replays segments [first, last] of dir. A torn or corrupt tail ends the replay there with a
 * warning; with repair, the WAL is truncated at the last good record. */
static int replay_segments(replay_t *rp, const char *dir, uint32_t first, uint32_t last,
                           bool repair, cairn_error_t *err)
{
    /* With decoders, Samples records go to them still compressed: decompressing is a good
     * part of replay's work. */
    wal_reader_options_t ro = {
        .dir = dir, .first_segment = first, .last_segment = last, .raw = rp->decoders != NULL};
    wal_reader_t *reader = wal_reader_open(&ro, err);
    if (!reader)
        return -EIO;
    const uint8_t *rec;
    size_t len;
    cairn_error_t rerr = {{0}};
    int rc;
    while ((rc = wal_reader_next(reader, &rec, &len, &rerr)) > 0) {
        bool compressed = wal_reader_compressed(reader);
        int type = compressed ? snappy_first_byte(rec, len) : rec[0];
        if (type == WAL_RECORD_SAMPLES && rp->decoders) {
            decoders_add(rp->decoders, rec, len, compressed);
            continue;
        }
        if (compressed && !snappy_decode(rec, len, &rp->plain))
            type = -1;
        if (compressed && type >= 0) {
            rec = (const uint8_t *)rp->plain.data;
            len = rp->plain.len;
        }
        record_reader_t r = {rec + 1, rec + len, false};
        int bad = 0;
        switch (type) {
        case -1: bad = -EINVAL; break;
        case WAL_RECORD_SERIES: bad = replay_series_record(rp, &r); break;
        case WAL_RECORD_SAMPLES: bad = replay_samples_record(rp, &r); break;
        case WAL_RECORD_TRUNCATE: bad = replay_truncate_record(rp, &r); break;
        case WAL_RECORD_CHUNKS:
            if (rp->decoders)
                decoders_drain(rp->decoders); /* restoring needs to know what was dispatched */
            bad = replay_chunks_record(rp, &r);
            break;
        default: break; /* a record type from a newer version: skip */
        }
        if (bad) {
            wal_position_t pos = wal_reader_position(reader);
            LOG_WARN("Skipping a malformed WAL record", "dir=%s segment=%u offset=%llu type=%d",
                     log_quote(dir), pos.segment, (unsigned long long)pos.offset, type);
        }
    }
    if (rc < 0 && !repair) {
        LOG_WARN("WAL checkpoint is corrupt; keeping what came before", "dir=%s err=%s",
                 log_quote(dir), log_quote(rerr.message));
    } else if (rc < 0) {
        wal_position_t pos = wal_reader_position(reader);
        LOG_WARN("WAL is torn or corrupt; keeping what came before and truncating the rest",
                 "err=%s segment=%u offset=%llu", log_quote(rerr.message), pos.segment,
                 (unsigned long long)pos.offset);
        cairn_error_t repair_err = {{0}};
        if (wal_repair(dir, pos, &repair_err) < 0) {
            wal_reader_free(reader);
            return cairn_error_set(err, -EIO, "repairing the WAL failed: %s", repair_err.message);
        }
    }
    wal_reader_free(reader);
    return 0;
}

/* Replays the newest checkpoint, then the segments after it. */
static int replay_wal(replay_t *rp, const char *wal_dir, cairn_error_t *err)
{
    uint32_t checkpoint, first, last;
    int found = checkpoint_find(wal_dir, &checkpoint, true);
    if (found < 0)
        return cairn_error_set(err, found, "list WAL checkpoints in %s: %s", wal_dir,
                               cairn_strerror(found));
    if (found) {
        char *dir = cairn_sprintf("%s/checkpoint.%08u", wal_dir, checkpoint);
        int rc = 0;
        if (wal_segment_range(dir, &first, &last) > 0)
            rc = replay_segments(rp, dir, first, last, false, err);
        cairn_free(dir);
        rp->db->checkpoint_bytes = checkpoint_bytes(wal_dir, checkpoint);
        /* New segments go past the checkpoint's, also when no segment is left. */
        rp->db->wal_first_segment = checkpoint + 1;
        if (rc < 0)
            return rc;
    }
    int n = wal_segment_range(wal_dir, &first, &last);
    if (n <= 0)
        return n < 0 && n != -ENOENT ? cairn_error_set(err, n, "list WAL segments in %s: %s",
                                                       wal_dir, cairn_strerror(n))
                                     : 0;
    if (found && first <= checkpoint) {
        /* Deleting them was interrupted: the checkpoint stands for them. */
        if (last <= checkpoint)
            return 0;
        first = checkpoint + 1;
    } else if (found && first > checkpoint + 1) {
        LOG_WARN("WAL segments are missing after the checkpoint", "checkpoint=%u first=%u",
                 checkpoint, first);
    }
    return replay_segments(rp, wal_dir, first, last, true, err);
}

int head_replay(tsdb_t *db, cairn_error_t *err)
{
    double start = time_monotonic_seconds();
    replay_t rp = {.db = db,
                   .truncate_to = INT64_MIN,
                   .restored_min_t = INT64_MAX,
                   .restored_max_t = INT64_MIN};
    pthread_mutex_init(&rp.shared.free_lock, NULL);
    rp.shared.db = db;

    char *chunks_dir = cairn_sprintf("%s/chunks_head", db->path);
    db->chunks = head_chunks_open(chunks_dir, collect_chunk, &rp.chunks, err);
    cairn_free(chunks_dir);
    if (!db->chunks) {
        pthread_mutex_destroy(&rp.shared.free_lock);
        return -EIO;
    }
    index_chunks(&rp.chunks);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    rp.worker_count =
        db->opts.replay_threads ? db->opts.replay_threads : (size_t)(cores > 1 ? cores : 1);
    rp.workers = cairn_calloc(rp.worker_count, sizeof(*rp.workers));
    for (size_t i = 0; i < rp.worker_count; i++) {
        replay_worker_t *w = &rp.workers[i];
        w->shared = &rp.shared;
        w->min_t = INT64_MAX;
        w->max_t = INT64_MIN;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        if (rp.worker_count > 1 && pthread_create(&w->thread, NULL, worker_main, w) != 0)
            CAIRN_PANIC("cannot start a WAL replay thread");
    }

    if (rp.worker_count > 1)
        rp.decoders = decoders_start(&rp, rp.worker_count);
    char *wal_dir = cairn_sprintf("%s/wal", db->path);
    int rc = replay_wal(&rp, wal_dir, err);
    cairn_free(wal_dir);
    decoders_stop(rp.decoders);
    cairn_free(rp.survivors);
    buf_free(&rp.plain);

    uint64_t applied = 0, skipped = 0;
    for (size_t i = 0; i < rp.worker_count; i++) {
        replay_worker_t *w = &rp.workers[i];
        if (w->filling && w->filling->count) {
            if (rp.worker_count > 1)
                worker_push(w, w->filling);
            else {
                apply_batch(w, w->filling);
                batch_put(&rp.shared, w->filling);
            }
        } else if (w->filling) {
            batch_put(&rp.shared, w->filling);
        }
        w->filling = NULL;
        if (rp.worker_count > 1) {
            pthread_mutex_lock(&w->lock);
            w->done = true;
            pthread_cond_broadcast(&w->cond);
            pthread_mutex_unlock(&w->lock);
            pthread_join(w->thread, NULL);
        }
        applied += w->applied;
        skipped += w->skipped;
        if (w->max_t != INT64_MIN)
            head_note_time(db, w->min_t, w->max_t);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    applied += rp.restored;
    if (rp.restored)
        head_note_time(db, rp.restored_min_t, rp.restored_max_t);
    /* Sealing during replay buffered chunk writes. */
    head_chunks_flush(db->chunks);
    /* The map stays for checkpoints of the segments replayed (checkpoint.c). */
    db->remap_count = rp.remap_count;
    db->remap_from = rp.remap_from;
    db->remap_to = cairn_malloc((rp.remap_count ? rp.remap_count : 1) * sizeof(tsdb_ref_t));
    for (size_t i = 0; i < rp.remap_count; i++)
        db->remap_to[i] = rp.remap_to[i]->ref;
    cairn_free(rp.remap_to);
    if (rc == 0 && rp.truncate_to != INT64_MIN)
        tsdb_truncate(db, rp.truncate_to); /* no WAL open yet: nothing is logged */
    for (size_t i = 0; i < rp.shared.free_count; i++)
        cairn_free(rp.shared.free_list[i]);
    pthread_mutex_destroy(&rp.shared.free_lock);
    cairn_free(rp.workers);
    cairn_free(rp.chunks.items);
    cairn_free(rp.chunks.start);
    cairn_free(rp.chunks.sealed_max);
    cairn_free(rp.labels);
    cairn_free(rp.strings);

    double seconds = time_monotonic_seconds() - start;
    db->replayed_samples = rp.decoded;
    db->replay_applied = applied;
    db->replay_seconds = seconds;
    atomic_fetch_add_explicit(&db->samples_appended, applied, memory_order_relaxed);
    if (rp.series_records || rp.sample_records || rp.chunks.count)
        LOG_INFO("WAL replay completed",
                 "duration=%.3fs series=%llu samples_read=%llu samples_per_second=%.0f "
                 "applied=%llu already_in_chunks=%llu unknown_series_samples=%llu "
                 "sealed_chunks=%zu workers=%zu",
                 seconds, (unsigned long long)series_map_count(db->series),
                 (unsigned long long)rp.decoded, seconds > 0 ? (double)rp.decoded / seconds : 0.0,
                 (unsigned long long)applied, (unsigned long long)skipped,
                 (unsigned long long)rp.unknown_ref_samples, rp.chunks.count, rp.worker_count);
    return rc;
}

uint64_t head_directory_bytes(tsdb_t *db, const char *sub)
{
    char *dir = cairn_sprintf("%s/%s", db->path, sub);
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.')
                continue;
            char *path = cairn_sprintf("%s/%s", dir, e->d_name);
            struct stat st;
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                total += (uint64_t)st.st_size;
            cairn_free(path);
        }
        closedir(d);
    }
    cairn_free(dir);
    return total;
}
