/*
 * tsdb/checkpoint.c: WAL checkpoints, so the WAL stops growing and replay reads only what the
 * head still needs.
 *
 * A checkpoint wal/checkpoint.X (X = 8 digits) is a directory in the WAL's own format (segment
 * files of framed records) that stands for every WAL segment up to and including X. It is
 * written from the previous checkpoint and those segments, keeping
 *   - the Series records of the series live in the head (each once),
 *   - their samples not yet in sealed chunks (at or after the start of the open chunk when
 *     the checkpoint began; older ones are in chunks_head/ files, synced before anything is
 *     deleted),
 *   - one Truncate record with the highest truncation point seen.
 * Replay reads the newest checkpoint, then the segments after X. So restart time and disk
 * use follow the head's state, not its history.
 *
 * Consistency. The head truncation that asks for a checkpoint logs its Truncate record first
 * and takes a turn on every append stripe in log order (head.c); the segments checkpointed are
 * those before the record's segment, so every commit in them has been applied when the
 * truncation visits its stripe and notes, per live series, where its open chunk begins.
 * Samples appended after that note are kept too (the filter only drops what is older), and
 * replay skips what it finds again (a sample at or before a series' newest time).
 *
 * Series a checkpoint drops are those not live: truncation removed them, and the WAL records of
 * a batch that was still appending to one are written again under the series re-created from
 * its labels (tsdb_appender_commit). References that replay mapped onto another series with
 * the same labels (a series logged twice under two references) are translated through the map
 * replay leaves in the head.
 *
 * Steps: write checkpoint.X.tmp (wal_t writer, synced on close), rename it to checkpoint.X,
 * sync the WAL directory, delete older checkpoints and segments up to X. A crash at any step
 * leaves either the old state or the new one; tsdb_open removes leftovers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsdb/head.h"
#include "tsdb/records.h"

#define CHECKPOINT_PREFIX  "checkpoint."
#define CHECKPOINT_SAMPLES 8192         /* samples per Samples record written */
#define CHECKPOINT_RECORD  (256 * 1024) /* bytes of Series or Chunks entries per record */

/* ---- directory helpers ------------------------------------------------------------------------
 */

/* Parses "checkpoint.%08u" (tmp: with the ".tmp" suffix). */
static bool checkpoint_parse(const char *name, uint32_t *segment, bool *tmp)
{
    size_t plen = strlen(CHECKPOINT_PREFIX);
    if (strncmp(name, CHECKPOINT_PREFIX, plen) != 0)
        return false;
    const char *digits = name + plen;
    size_t n = 0;
    uint64_t v = 0;
    while (digits[n] >= '0' && digits[n] <= '9' && n < 10)
        v = v * 10 + (uint64_t)(digits[n++] - '0');
    if (n < 8 || v > UINT32_MAX)
        return false;
    *tmp = strcmp(digits + n, ".tmp") == 0;
    if (!*tmp && digits[n] != '\0')
        return false;
    *segment = (uint32_t)v;
    return true;
}

/* Removes a checkpoint directory and the files in it. */
static int remove_checkpoint_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT && rc == 0)
            rc = -errno;
    }
    closedir(d);
    if (rmdir(path) != 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    return rc;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int checkpoint_find(const char *wal_dir, uint32_t *segment, bool cleanup)
{
    DIR *d = opendir(wal_dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    bool found = false;
    uint32_t newest = 0;
    for (struct dirent *e; (e = readdir(d));) {
        uint32_t seg;
        bool tmp;
        if (checkpoint_parse(e->d_name, &seg, &tmp) && !tmp && (!found || seg > newest)) {
            newest = seg;
            found = true;
        }
    }
    if (cleanup) {
        rewinddir(d);
        for (struct dirent *e; (e = readdir(d));) {
            uint32_t seg;
            bool tmp;
            if (!checkpoint_parse(e->d_name, &seg, &tmp) || (!tmp && seg == newest))
                continue;
            char *path = cairn_sprintf("%s/%s", wal_dir, e->d_name);
            int rc = remove_checkpoint_dir(path);
            if (rc < 0)
                LOG_WARN("Cannot remove an old WAL checkpoint", "path=%s err=%s", log_quote(path),
                         log_quote(cairn_strerror(rc)));
            cairn_free(path);
        }
    }
    closedir(d);
    if (found)
        *segment = newest;
    return found;
}

uint64_t checkpoint_bytes(const char *wal_dir, uint32_t segment)
{
    char *path = cairn_sprintf("%s/" CHECKPOINT_PREFIX "%08u", wal_dir, segment);
    uint64_t total = 0;
    DIR *d = opendir(path);
    if (d) {
        struct stat st;
        for (struct dirent *e; (e = readdir(d));)
            if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
                total += (uint64_t)st.st_size;
        closedir(d);
    }
    cairn_free(path);
    return total;
}

bool head_checkpoint_due(tsdb_t *db, uint32_t upto)
{
    char *wal_dir = cairn_sprintf("%s/wal", db->path);
    uint32_t first, last;
    uint64_t bytes = 0;
    if (wal_segment_range(wal_dir, &first, &last) > 0) {
        for (uint32_t seg = first; seg < upto && seg <= last; seg++) {
            char *path = cairn_sprintf("%s/%08u", wal_dir, seg);
            struct stat st;
            if (stat(path, &st) == 0)
                bytes += (uint64_t)st.st_size;
            cairn_free(path);
        }
    }
    cairn_free(wal_dir);
    /* At least a segment's worth, and as much as the last checkpoint: rewriting the head's
     * state then costs at most about as much again as the WAL written meanwhile. */
    uint64_t segment_size =
        db->opts.wal_segment_size ? db->opts.wal_segment_size : WAL_DEFAULT_SEGMENT_SIZE;
    return bytes >= segment_size && bytes >= db->checkpoint_bytes;
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct checkpoint {
    tsdb_t *db;
    const checkpoint_keep_t *keep; /* sorted by ref */
    size_t keep_count;
    size_t hint;      /* index of the last lookup */
    uint8_t *written; /* per keep entry: its Series entry is in the output */
    wal_t *out;
    buf_t series, chunks; /* Series and Chunks entries not yet written */
    uint64_t series_entries, chunk_entries;
    pending_sample_t *samples; /* samples not yet written */
    size_t sample_count;
    buf_t rec, scratch; /* a record being written */
    int64_t truncate_to;
    uint64_t series_out, samples_in, samples_out;
    int error;
} checkpoint_t;

/* The keep entry of ref, or -1. Records list references in runs of consecutive ones, so the
 * entry after the last hit is tried first. */
static long keep_find(checkpoint_t *c, tsdb_ref_t ref)
{
    size_t h = c->hint;
    if (h < c->keep_count && c->keep[h].ref == ref)
        return (long)h;
    if (h + 1 < c->keep_count && c->keep[h + 1].ref == ref)
        return (long)(c->hint = h + 1);
    size_t lo = 0, hi = c->keep_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->keep[mid].ref < ref)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->keep_count && c->keep[lo].ref == ref)
        return (long)(c->hint = lo);
    return -1;
}

/* The keep entry of ref, or of the live series replay mapped it onto; -1 if neither. */
static long keep_find_live(checkpoint_t *c, tsdb_ref_t ref)
{
    long k = keep_find(c, ref);
    const tsdb_t *db = c->db;
    for (size_t i = 0; k < 0 && i < db->remap_count; i++)
        if (db->remap_from[i] == ref)
            k = keep_find(c, db->remap_to[i]);
    return k;
}

static void checkpoint_log(checkpoint_t *c, const buf_t *rec)
{
    if (c->error)
        return;
    const uint8_t *recs[1] = {(const uint8_t *)rec->data};
    size_t len = rec->len;
    c->error = wal_log(c->out, recs, &len, 1, NULL);
}

/* Writes the buffered entries of one kind as a record (type, count, entries). */
static void checkpoint_flush_entries(checkpoint_t *c, uint8_t type, buf_t *entries, uint64_t *count)
{
    if (!*count)
        return;
    buf_reset(&c->rec);
    buf_append_char(&c->rec, (char)type);
    put_uvarint(&c->rec, *count);
    buf_append(&c->rec, entries->data, entries->len);
    checkpoint_log(c, &c->rec);
    buf_reset(entries);
    *count = 0;
}

/* Writes what is buffered: Series entries first, since the others refer to them. */
static void checkpoint_flush(checkpoint_t *c)
{
    checkpoint_flush_entries(c, WAL_RECORD_SERIES, &c->series, &c->series_entries);
    checkpoint_flush_entries(c, WAL_RECORD_CHUNKS, &c->chunks, &c->chunk_entries);
    if (c->sample_count) {
        wal_records_encode_batch(c->db, c->samples, c->sample_count, &c->scratch, &c->rec);
        checkpoint_log(c, &c->rec);
        c->samples_out += c->sample_count;
        c->sample_count = 0;
    }
}

static void checkpoint_note_size(checkpoint_t *c)
{
    if (c->series.len + c->chunks.len >= CHECKPOINT_RECORD)
        checkpoint_flush(c);
}

static bool checkpoint_series(checkpoint_t *c, record_reader_t *r)
{
    uint64_t count = get_uvarint(r);
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        const uint8_t *entry = r->p;
        tsdb_ref_t ref = get_uvarint(r);
        uint64_t nlabels = get_uvarint(r);
        if (r->bad || !skip_labels(r, nlabels))
            return false;
        long k = keep_find(c, ref);
        if (k < 0 || c->written[k])
            continue;
        c->written[k] = 1;
        buf_append(&c->series, entry, (size_t)(r->p - entry));
        c->series_entries++;
        c->series_out++;
        checkpoint_note_size(c);
    }
    return !r->bad;
}

/* A Chunks entry (from a snapshot) is kept whole while the chunk is still the series' open
 * one, that is while it ends at or after where the series' unsealed samples begin. */
static bool checkpoint_chunks(checkpoint_t *c, record_reader_t *r)
{
    uint64_t count = get_uvarint(r);
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        const uint8_t *entry = r->p;
        wal_chunk_entry_t e;
        if (!wal_record_get_chunk(r, &e))
            return false;
        c->samples_in += e.state.count;
        long k = keep_find_live(c, e.ref);
        if (k < 0 || e.state.t < c->keep[k].from)
            continue;
        /* The entry as it is, but for the reference, which may be translated. */
        record_reader_t skip = {entry, r->p, false};
        get_uvarint(&skip);
        put_uvarint(&c->chunks, c->keep[k].ref);
        buf_append(&c->chunks, skip.p, (size_t)(r->p - skip.p));
        c->chunk_entries++;
        c->samples_out += e.state.count;
        checkpoint_note_size(c);
    }
    return !r->bad;
}

static bool checkpoint_samples(checkpoint_t *c, record_reader_t *r)
{
    uint64_t count = get_uvarint(r);
    int64_t base = get_svarint(r);
    tsdb_ref_t ref = 0;
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        ref += (tsdb_ref_t)get_svarint(r);
        int64_t t = base + get_svarint(r);
        double v = get_value(r);
        if (r->bad)
            break;
        c->samples_in++;
        long k = keep_find_live(c, ref);
        if (k < 0 || t < c->keep[k].from)
            continue;
        c->samples[c->sample_count++] = (pending_sample_t){.ref = c->keep[k].ref, .t = t, .v = v};
        if (c->sample_count == CHECKPOINT_SAMPLES)
            checkpoint_flush(c);
    }
    return !r->bad;
}

/* Filters the records of one WAL directory's segments [first, last] into the checkpoint. */
static int checkpoint_read(checkpoint_t *c, const char *dir, uint32_t first, uint32_t last,
                           cairn_error_t *err)
{
    wal_reader_options_t ro = {.dir = dir, .first_segment = first, .last_segment = last};
    wal_reader_t *reader = wal_reader_open(&ro, err);
    if (!reader)
        return -EIO;
    const uint8_t *rec;
    size_t len;
    int rc = 0;
    while (c->error == 0 && (rc = wal_reader_next(reader, &rec, &len, err)) > 0) {
        record_reader_t r = {rec + 1, rec + len, false};
        bool ok = true;
        switch (rec[0]) {
        case WAL_RECORD_SERIES: ok = checkpoint_series(c, &r); break;
        case WAL_RECORD_SAMPLES: ok = checkpoint_samples(c, &r); break;
        case WAL_RECORD_CHUNKS: ok = checkpoint_chunks(c, &r); break;
        case WAL_RECORD_TRUNCATE: {
            int64_t t = get_svarint(&r);
            ok = !r.bad;
            if (ok && t > c->truncate_to)
                c->truncate_to = t;
            break;
        }
        default: break;
        }
        if (!ok) {
            wal_position_t pos = wal_reader_position(reader);
            LOG_WARN("Skipping a malformed WAL record while checkpointing",
                     "dir=%s segment=%u offset=%llu type=%u", log_quote(dir), pos.segment,
                     (unsigned long long)pos.offset, rec[0]);
        }
    }
    wal_reader_free(reader);
    return c->error ? c->error : rc < 0 ? -EIO : 0;
}

/* Fills a checkpoint from the newest one and the segments before upto. */
static int fill_from_wal(checkpoint_t *c, const char *wal_dir, uint32_t upto, cairn_error_t *err)
{
    uint32_t prev, first, last;
    bool have_prev = checkpoint_find(wal_dir, &prev, false) > 0;
    int rc = 0;
    if (have_prev) {
        char *prev_dir = cairn_sprintf("%s/" CHECKPOINT_PREFIX "%08u", wal_dir, prev);
        uint32_t pf, pl;
        if (wal_segment_range(prev_dir, &pf, &pl) > 0)
            rc = checkpoint_read(c, prev_dir, pf, pl, err);
        cairn_free(prev_dir);
    }
    if (rc == 0 && wal_segment_range(wal_dir, &first, &last) > 0) {
        if (have_prev && first <= prev)
            first = prev + 1;
        if (first < upto)
            rc = checkpoint_read(c, wal_dir, first, upto - 1, err);
    }
    return rc;
}

/* Fills a snapshot from the head itself: every series with data and its open chunk. Only
 * when nothing else runs (tsdb_close). */
static int fill_from_head(checkpoint_t *c, const char *wal_dir, uint32_t upto, cairn_error_t *err)
{
    (void)wal_dir;
    (void)upto;
    (void)err;
    tsdb_t *db = c->db;
    tsdb_ref_t *refs;
    size_t n = postings_all(db->series, &refs);
    for (size_t i = 0; i < n && !c->error; i++) {
        tsdb_series_t *s = series_map_by_ref(db->series, refs[i]);
        if (!s || (atomic_load_explicit(&s->max_t, memory_order_relaxed) == INT64_MIN &&
                   !s->sealed_count))
            continue; /* nothing to keep */
        wal_record_put_series(db, &c->series, s);
        c->series_entries++;
        c->series_out++;
        if (s->app.buf && s->app.count) {
            wal_record_put_chunk(&c->chunks, s->ref, s->chunk_min_t, s->next_at, &s->app);
            c->chunk_entries++;
            c->samples_out += s->app.count;
        }
        checkpoint_note_size(c);
    }
    cairn_free(refs);
    c->truncate_to = atomic_load_explicit(&db->truncated_before, memory_order_relaxed);
    return c->error;
}

typedef int (*checkpoint_fill_fn)(checkpoint_t *c, const char *wal_dir, uint32_t upto,
                                  cairn_error_t *err);

/* Writes checkpoint.(upto - 1) with fill, installs it and deletes what it replaces. */
static int checkpoint_build(tsdb_t *db, uint32_t upto, const checkpoint_keep_t *keep, size_t count,
                            checkpoint_fill_fn fill, const char *what)
{
    if (upto == 0)
        return 0;
    double start = time_monotonic_seconds();
    char *wal_dir = cairn_sprintf("%s/wal", db->path);
    char *tmp_dir = cairn_sprintf("%s/" CHECKPOINT_PREFIX "%08u.tmp", wal_dir, upto - 1);
    char *final_dir = cairn_sprintf("%s/" CHECKPOINT_PREFIX "%08u", wal_dir, upto - 1);
    cairn_error_t err = {{0}};
    checkpoint_t c = {.db = db,
                      .keep = keep,
                      .keep_count = count,
                      .written = cairn_calloc(count ? count : 1, 1),
                      .samples = cairn_malloc(CHECKPOINT_SAMPLES * sizeof(pending_sample_t)),
                      .truncate_to = INT64_MIN};

    /* Sealed chunks stand in for the samples a checkpoint leaves out: make them durable
     * before the segments that also hold those samples go. */
    int rc = head_chunks_sync(db->chunks);
    if (rc < 0)
        cairn_error_set(&err, rc, "sync chunks_head: %s", cairn_strerror(rc));
    if (rc == 0 && (rc = remove_checkpoint_dir(tmp_dir)) < 0)
        cairn_error_set(&err, rc, "remove %s: %s", tmp_dir, cairn_strerror(rc));
    if (rc == 0) {
        wal_options_t wo = {.dir = tmp_dir, .compress = db->opts.wal_compress};
        c.out = wal_open(&wo, &err);
        if (!c.out)
            rc = -EIO;
    }
    if (rc == 0) {
        rc = fill(&c, wal_dir, upto, &err);
        checkpoint_flush(&c);
        if (rc == 0 && c.truncate_to != INT64_MIN) {
            uint8_t rec[11];
            buf_reset(&c.rec);
            buf_append(&c.rec, rec, wal_record_encode_truncate(rec, c.truncate_to));
            checkpoint_log(&c, &c.rec);
        }
        if (rc == 0)
            rc = c.error;
        int crc = wal_close(c.out);
        if (rc == 0)
            rc = crc;
        if (rc < 0 && !err.message[0])
            cairn_error_set(&err, rc, "write %s: %s", tmp_dir, cairn_strerror(rc));
    }
    if (rc == 0 && rename(tmp_dir, final_dir) != 0) {
        rc = -errno;
        cairn_error_set(&err, rc, "rename %s: %s", tmp_dir, cairn_strerror(rc));
    }
    if (rc == 0 && (rc = sync_dir(wal_dir)) < 0)
        cairn_error_set(&err, rc, "sync %s: %s", wal_dir, cairn_strerror(rc));

    if (rc == 0) {
        /* The new checkpoint is in place: what it replaces can go. */
        uint32_t newest;
        checkpoint_find(wal_dir, &newest, true);
        int drc = wal_delete_segments_before(wal_dir, upto);
        if (drc < 0)
            LOG_WARN("Cannot delete WAL segments after a checkpoint", "before=%u err=%s", upto,
                     log_quote(cairn_strerror(drc)));
        atomic_store(&db->checkpoint_bytes, checkpoint_bytes(wal_dir, upto - 1));
        /* Segments this process wrote use live references only: once none of the older ones
         * are left, the replay's reference map is not needed any more. */
        if (upto > db->wal_first_segment && db->remap_count) {
            cairn_free(db->remap_from);
            cairn_free(db->remap_to);
            db->remap_from = db->remap_to = NULL;
            db->remap_count = 0;
        }
        metric_counter_add(db->m_checkpoints, 1);
        LOG_INFO("WAL checkpoint written",
                 "kind=%s segments_before=%u duration=%.3fs series=%llu samples_read=%llu "
                 "samples_kept=%llu bytes=%llu",
                 what, upto, time_monotonic_seconds() - start, (unsigned long long)c.series_out,
                 (unsigned long long)c.samples_in, (unsigned long long)c.samples_out,
                 (unsigned long long)atomic_load(&db->checkpoint_bytes));
    } else {
        remove_checkpoint_dir(tmp_dir);
        metric_counter_add(db->m_checkpoint_failures, 1);
        LOG_ERROR("WAL checkpoint failed; the WAL keeps its segments", "kind=%s err=%s", what,
                  log_quote(err.message));
    }
    buf_free(&c.series);
    buf_free(&c.chunks);
    buf_free(&c.rec);
    buf_free(&c.scratch);
    cairn_free(c.samples);
    cairn_free(c.written);
    cairn_free(wal_dir);
    cairn_free(tmp_dir);
    cairn_free(final_dir);
    return rc;
}

int head_checkpoint(tsdb_t *db, uint32_t upto, const checkpoint_keep_t *keep, size_t count)
{
    return checkpoint_build(db, upto, keep, count, fill_from_wal, "truncation");
}

int head_snapshot(tsdb_t *db, uint32_t last_segment)
{
    return checkpoint_build(db, last_segment + 1, NULL, 0, fill_from_head, "shutdown");
}
