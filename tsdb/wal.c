/*
 * tsdb/wal.c: the write-ahead log: segment files of 32 KiB pages holding framed, optionally
 * snappy-compressed records; group commit; a validating reader; repair of a torn tail.
 *
 * ON DISK (docs/format/wal.md says the same for users)
 *
 * A WAL directory holds segment files named by their number as %08u. There is no file header. A
 * segment is a sequence of WAL_PAGE_SIZE (32 KiB) pages, each holding fragments:
 *
 *   offset 0  type    1 B   bit 3 (0x08) snappy, bit 4 (0x10) zstd (not supported),
 *                           bits 5-7 reserved (0), bits 0-2 kind:
 *                           0 padding, 1 full, 2 first, 3 middle, 4 last
 *   offset 1  length  2 B   big-endian, bytes of data (0 .. WAL_PAGE_SIZE - 7)
 *   offset 3  CRC     4 B   big-endian CRC-32C (Castagnoli) of the data
 *   offset 7  data    length bytes
 *
 * A record is compressed with snappy (block format) as a whole when that makes it strictly
 * smaller, then cut into fragments, each as large as the rest of the page allows: one FULL
 * fragment, or FIRST, MIDDLE*, LAST. Every fragment of a record carries the same compression
 * flag. Rules the writer keeps and the reader checks:
 *   - a fragment never crosses a page boundary;
 *   - when fewer than 7 bytes remain in a page after a fragment they are zeros; a zero type
 *     byte means "the rest of this page is zeros" and every byte up to the boundary must be 0;
 *   - when exactly 7 bytes remain and a record does not fit, the writer emits a bare FIRST
 *     header with length 0 and continues in the next page (as Prometheus does), so zero-length
 *     fragments are valid;
 *   - a record never spans segments: if it does not fit in what is left of the segment (counting
 *     7 bytes of header per page), the writer pads the current page with zeros and starts the
 *     next segment; a record larger than a whole segment goes to the start of a segment of its
 *     own, which then grows past segment_size;
 *   - a finished segment (the writer moved on, or closed) ends on a page boundary; the newest
 *     segment, or one left by a crash, may end inside a page, and the reader treats the end of
 *     such a file as zero padding (as Prometheus's reader does).
 * This is Prometheus's WAL framing (tsdb/wlog), so promtool and Prometheus read these files.
 *
 * WRITER AND GROUP COMMIT
 *
 * wal_log compresses its records before taking w->lock. Under the lock it frames them into the
 * pending batch: bytes plus a list of runs {segment, file offset, bytes}, one per segment the
 * bytes go to, so a batch can cross a segment switch (a switch with no bytes yet is a run of
 * length 0, which makes the writer create the file). Framing advances the framing position
 * (frame_segment, frame_offset), which is ahead of what is on disk. Each wal_log (and each
 * segment switch, and close) is one numbered batch; it then waits until written_batches
 * reaches its number. A waiter that finds no write in progress becomes the leader: it swaps
 * the pending batch with the empty spare one, releases the lock, writes each run with pwrite
 * (one call per run unless the kernel writes short), finishing (fsync, close) and creating
 * segment files as the runs say, fdatasyncs in WAL_SYNC_ALWAYS mode, then retakes the lock,
 * publishes written_batches and the written position, and broadcasts. Waiters whose batch is
 * covered return; one whose bytes were framed meanwhile becomes the next leader. While a leader
 * writes, framers keep filling the new pending batch, so N concurrent commits cost about one
 * write. If the pending batch holds WAL_PENDING_LIMIT bytes while a leader writes, framers wait
 * (backpressure) instead of growing it.
 *
 * Locks and ownership: w->lock guards the framing state, the pending batch, the batch counters,
 * the written position and the error. The segment file descriptor and the spare batch belong to
 * whichever thread is leader (writing == true), or to wal_open/wal_close, which never run
 * concurrently with wal_log. No other lock is taken while w->lock is held, and no system call
 * is made under it.
 *
 * Errors: a failed write, fsync or segment creation leaves the file contents unknown, so the WAL
 * is broken: the error is logged once (with the segment and offset) and returned by every later
 * call. A failed reader reports the first problem as "segment S offset N: what" (N is where the
 * bad fragment, or the incomplete record, starts) and stays failed; wal_reader_position is then
 * the end of the last good record, where wal_repair truncates. The reader's position moves to
 * (S + 1, 0) when it finishes segment S. Record lengths on disk are never trusted: a fragment
 * must fit in its page, and assembled or decompressed records are capped at
 * WAL_MAX_RECORD_SIZE, so no length read from disk can cause a large allocation or a read out
 * of bounds. The compression flag is not covered by the CRC (as in Prometheus); a flipped flag
 * is caught by snappy's own checks in most cases, not all.
 *
 * Repair: wal_repair truncates the segment at the position and zero-fills it to the next page
 * boundary (so the segment stays whole pages and the zeros read as page padding), fsyncs it,
 * deletes every later segment and fsyncs the directory.
 *
 * Metrics (when a registry is given): cairn_wal_records_total, cairn_wal_bytes_written_total,
 * cairn_wal_writes_total (pwrite calls), cairn_wal_commits_total (wal_log calls),
 * cairn_wal_fsyncs_total, cairn_wal_fsync_duration_seconds, cairn_wal_group_commit_size
 * (wal_log calls per leader write) and cairn_wal_segment_current. They are registered by
 * wal_open, so a registry serves one WAL (a second wal_open with the same registry would
 * register the names twice, which the registry refuses). The reader has no registry; the caller
 * counts the corruption it reports.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "tsdb/crc32c.h"
#include "tsdb/wal.h"

#define WAL_KIND_PADDING 0
#define WAL_KIND_FULL    1
#define WAL_KIND_FIRST   2
#define WAL_KIND_MIDDLE  3
#define WAL_KIND_LAST    4
#define WAL_KIND_MASK    0x07
#define WAL_FLAG_SNAPPY  0x08
#define WAL_FLAG_ZSTD    0x10

/* Largest record wal_log accepts and the reader assembles or decompresses: twice the default
 * segment size. Bounds every allocation the reader makes from lengths found on disk. */
/* Pending bytes beyond which framers wait for the leader instead of growing the batch. */
#define WAL_PENDING_LIMIT ((size_t)16 << 20)
/* The reader's window on the current segment file. */
#define WAL_READ_WINDOW ((size_t)32 * WAL_PAGE_SIZE)

static const double WAL_GROUP_COMMIT_BUCKETS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

/* Bytes of a batch bound for one segment file, contiguous there and in the batch. */
typedef struct wal_run {
    uint32_t segment; /* segment file */
    uint64_t offset;  /* file offset of the first byte */
    size_t start;     /* index of the first byte in the batch */
    size_t length;    /* bytes; 0 = only make sure the segment exists */
} wal_run_t;

/* Framed bytes not yet written, and where they go. */
typedef struct wal_batch {
    uint8_t *data;    /* owned */
    size_t len;       /* bytes framed */
    size_t cap;       /* bytes allocated */
    wal_run_t *runs;  /* owned, in write order */
    size_t run_count; /* runs used */
    size_t run_cap;   /* runs allocated */
} wal_batch_t;

struct wal {
    char *dir;                  /* owned copy of the directory path */
    int dir_fd;                 /* the directory, for openat and fsync */
    uint64_t segment_size;      /* bytes; a multiple of WAL_PAGE_SIZE */
    uint64_t pages_per_segment; /* segment_size / WAL_PAGE_SIZE */
    wal_sync_t sync;            /* fdatasync per commit or not */
    bool compress;              /* snappy when it makes a record smaller */

    pthread_mutex_t lock;           /* guards everything down to error */
    pthread_cond_t written_cond[2]; /* waiters for write number n wait on [n % 2] */
    pthread_cond_t space_cond;      /* broadcast when the pending batch is taken or drained */
    uint32_t frame_segment;         /* segment the next framed byte goes to */
    uint64_t frame_offset;          /* its offset there (ahead of the disk while pending) */
    wal_position_t framed_end;      /* just past the last framed record */
    wal_batch_t pending;            /* framed, not yet taken by a leader */
    uint64_t framed_batches;        /* batches framed so far (wal_log calls, switches, close) */
    uint64_t pending_commits;       /* wal_log calls in pending (group commit histogram) */
    size_t space_waiters;           /* framers waiting on space_cond */
    bool writing;                   /* a leader is writing */
    uint64_t write_number;          /* leader writes started so far (the one in flight, if any) */
    uint64_t writing_batches;       /* the last batch in the write in flight */
    uint64_t written_batches;       /* every batch up to this number is on disk */
    wal_position_t written_end;     /* just past the last written record */
    int error;                      /* 0, or the negative errno that broke the WAL */

    wal_batch_t spare;   /* leader's: the empty batch swapped in for pending */
    int fd;              /* leader's: the segment file being written, or -1 */
    uint32_t fd_segment; /* leader's: its number */

    metric_counter_t *m_records;        /* cairn_wal_records_total */
    metric_counter_t *m_bytes;          /* cairn_wal_bytes_written_total */
    metric_counter_t *m_writes;         /* cairn_wal_writes_total */
    metric_counter_t *m_commits;        /* cairn_wal_commits_total */
    metric_counter_t *m_fsyncs;         /* cairn_wal_fsyncs_total */
    metric_histogram_t *m_fsync_time;   /* cairn_wal_fsync_duration_seconds */
    metric_histogram_t *m_group_commit; /* cairn_wal_group_commit_size */
    metric_gauge_t *m_segment;          /* cairn_wal_segment_current */
};

/* One record of a wal_log call as it will be framed. */
typedef struct wal_item {
    const uint8_t *data; /* the caller's bytes or the compressed copy */
    size_t length;       /* bytes of data */
    uint8_t flag;        /* WAL_FLAG_SNAPPY or 0 */
} wal_item_t;

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void segment_name(char out[16], uint32_t segment)
{
    snprintf(out, 16, "%08u", segment);
}

/* Parses a segment file name: at least 8 decimal digits, exactly as %08u prints the number. */
static bool segment_parse(const char *name, uint32_t *out)
{
    size_t n = strlen(name);
    if (n < 8 || n > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (v > UINT32_MAX)
        return false;
    char canonical[16];
    segment_name(canonical, (uint32_t)v);
    if (strcmp(canonical, name) != 0)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the segment files of dir in increasing order into *out (caller frees). Returns the
 * count or a negative errno. */
static int segments_list(const char *dir, uint32_t **out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    uint32_t *list = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t segment;
        if (!segment_parse(e->d_name, &segment))
            continue;
        bool regular = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
            struct stat st;
            regular = fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode);
        }
        if (!regular)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            list = cairn_realloc(list, cap * sizeof(*list));
        }
        list[count++] = segment;
    }
    closedir(d);
    if (count > INT_MAX) {
        cairn_free(list);
        return -EOVERFLOW;
    }
    if (count > 1)
        qsort(list, count, sizeof(*list), compare_u32);
    *out = list;
    return (int)count;
}

int wal_segment_range(const char *dir, uint32_t *first, uint32_t *last)
{
    uint32_t *list = NULL;
    int n = segments_list(dir, &list);
    if (n > 0) {
        *first = list[0];
        *last = list[n - 1];
    }
    cairn_free(list);
    return n;
}

/* mkdir -p. */
static int make_dirs(const char *path)
{
    char *copy = cairn_strdup(path);
    int rc = 0;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    cairn_free(copy);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Framing (w->lock held)
 */

static uint8_t *batch_reserve(wal_batch_t *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap - b->len < n)
            cap *= 2;
        b->data = cairn_realloc(b->data, cap);
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

static void batch_add_run(wal_batch_t *b, uint32_t segment, uint64_t offset)
{
    if (b->run_count == b->run_cap) {
        b->run_cap = b->run_cap ? b->run_cap * 2 : 8;
        b->runs = cairn_realloc(b->runs, b->run_cap * sizeof(*b->runs));
    }
    b->runs[b->run_count++] = (wal_run_t){segment, offset, b->len, 0};
}

static void batch_free(wal_batch_t *b)
{
    cairn_free(b->data);
    cairn_free(b->runs);
    *b = (wal_batch_t){0};
}

/* Appends n bytes at the framing position and returns where to put them. */
static uint8_t *frame_append(wal_t *w, size_t n)
{
    wal_batch_t *b = &w->pending;
    if (b->run_count == 0 || b->runs[b->run_count - 1].segment != w->frame_segment)
        batch_add_run(b, w->frame_segment, w->frame_offset);
    uint8_t *p = batch_reserve(b, n);
    b->runs[b->run_count - 1].length += n;
    w->frame_offset += n;
    return p;
}

/* Zero-fills the rest of the current page (nothing if the position is on a boundary). */
static void frame_pad_page(wal_t *w)
{
    size_t used = (size_t)(w->frame_offset % WAL_PAGE_SIZE);
    if (used == 0)
        return;
    memset(frame_append(w, WAL_PAGE_SIZE - used), 0, WAL_PAGE_SIZE - used);
}

/* Finishes the current segment (pads its last page) and starts framing into the next. */
static int frame_switch_segment(wal_t *w)
{
    if (w->frame_segment == UINT32_MAX)
        return -EOVERFLOW;
    frame_pad_page(w);
    w->frame_segment++;
    w->frame_offset = 0;
    batch_add_run(&w->pending, w->frame_segment, 0);
    w->framed_end = (wal_position_t){w->frame_segment, 0};
    return 0;
}

/* Frames one record: a new segment first if it does not fit in this one, then fragments. */
static int frame_record(wal_t *w, const wal_item_t *item)
{
    /* Room for data in this segment, 7 bytes of header per page (Prometheus's arithmetic). */
    int64_t page_room =
        WAL_PAGE_SIZE - (int64_t)(w->frame_offset % WAL_PAGE_SIZE) - WAL_RECORD_HEADER;
    int64_t pages_after =
        (int64_t)w->pages_per_segment - (int64_t)(w->frame_offset / WAL_PAGE_SIZE) - 1;
    int64_t room = page_room + pages_after * (WAL_PAGE_SIZE - WAL_RECORD_HEADER);
    if ((int64_t)item->length > room && w->frame_offset > 0) {
        int rc = frame_switch_segment(w);
        if (rc < 0)
            return rc;
    }

    const uint8_t *p = item->data;
    size_t rest = item->length;
    bool first = true;
    do {
        size_t fit = WAL_PAGE_SIZE - (size_t)(w->frame_offset % WAL_PAGE_SIZE) - WAL_RECORD_HEADER;
        size_t n = rest < fit ? rest : fit;
        uint8_t kind = n == rest ? (first ? WAL_KIND_FULL : WAL_KIND_LAST)
                                 : (first ? WAL_KIND_FIRST : WAL_KIND_MIDDLE);
        uint8_t *h = frame_append(w, WAL_RECORD_HEADER + n);
        h[0] = kind | item->flag;
        put_be16(h + 1, (uint16_t)n);
        put_be32(h + 3, crc32c(p, n));
        if (n > 0)
            memcpy(h + WAL_RECORD_HEADER, p, n);
        p += n;
        rest -= n;
        first = false;
        if (rest == 0)
            w->framed_end = (wal_position_t){w->frame_segment, w->frame_offset};
        if (WAL_PAGE_SIZE - w->frame_offset % WAL_PAGE_SIZE < WAL_RECORD_HEADER)
            frame_pad_page(w);
    } while (rest > 0);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Writing (the leader, without w->lock)
 */

static void wal_fail_log(wal_t *w, const char *what, uint32_t segment, uint64_t offset, int rc)
{
    LOG_ERROR("WAL write failed; the WAL refuses writes until restart",
              "dir=%s op=%s segment=%08u offset=%" PRIu64 " err=%s", log_quote(w->dir), what,
              segment, offset, log_quote(cairn_strerror(rc)));
}

static int wal_fsync(wal_t *w, int fd, bool data_only)
{
    double start = time_monotonic_seconds();
    int rc = data_only ? fdatasync(fd) : fsync(fd);
    if (rc != 0)
        return -errno;
    if (w->m_fsyncs) {
        metric_counter_add(w->m_fsyncs, 1);
        metric_histogram_observe(w->m_fsync_time, time_monotonic_seconds() - start);
    }
    return 0;
}

/* fsyncs and closes the segment file being written, if any. */
static int wal_finish_segment(wal_t *w)
{
    if (w->fd < 0)
        return 0;
    int rc = wal_fsync(w, w->fd, false);
    if (rc < 0) {
        struct stat st;
        uint64_t size = fstat(w->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        wal_fail_log(w, "fsync", w->fd_segment, size, rc);
    }
    close(w->fd);
    w->fd = -1;
    return rc;
}

/* Creates segment file number segment (which must not exist) and makes it the one written. */
static int wal_create_segment(wal_t *w, uint32_t segment)
{
    char name[16];
    segment_name(name, segment);
    int fd = openat(w->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (fsync(w->dir_fd) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    w->fd = fd;
    w->fd_segment = segment;
    if (w->m_segment)
        metric_gauge_set(w->m_segment, segment);
    return 0;
}

/* Writes a taken batch: every run to its segment, switching files as the runs say. */
static int wal_write_batch(wal_t *w, const wal_batch_t *b)
{
    uint64_t writes = 0, bytes = 0;
    int rc = 0;
    for (size_t i = 0; i < b->run_count && rc == 0; i++) {
        const wal_run_t *run = &b->runs[i];
        if (w->fd < 0 || run->segment != w->fd_segment) {
            rc = wal_finish_segment(w);
            if (rc < 0)
                break;
            rc = wal_create_segment(w, run->segment);
            if (rc < 0) {
                wal_fail_log(w, "create", run->segment, 0, rc);
                break;
            }
        }
        const uint8_t *p = b->data + run->start;
        size_t left = run->length;
        uint64_t offset = run->offset;
        while (left > 0) {
            ssize_t n = pwrite(w->fd, p, left, (off_t)offset);
            writes++;
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                rc = n < 0 ? -errno : -EIO;
                wal_fail_log(w, "write", run->segment, offset, rc);
                break;
            }
            p += n;
            left -= (size_t)n;
            offset += (uint64_t)n;
            bytes += (uint64_t)n;
        }
    }
    if (rc == 0 && w->sync == WAL_SYNC_ALWAYS && b->len > 0 && w->fd >= 0) {
        rc = wal_fsync(w, w->fd, true);
        if (rc < 0)
            wal_fail_log(w, "fdatasync", w->fd_segment, 0, rc);
    }
    if (w->m_writes) {
        metric_counter_add(w->m_writes, writes);
        metric_counter_add(w->m_bytes, bytes);
    }
    return rc;
}

/* Called by a waiter with w->lock held and no write in progress: takes the pending batch,
 * writes it without the lock, publishes the result. Returns with w->lock held. */
static void wal_lead(wal_t *w)
{
    w->writing = true;
    uint64_t number = ++w->write_number;
    w->writing_batches = w->framed_batches;
    wal_batch_t batch = w->pending;
    w->pending = w->spare;
    w->spare = (wal_batch_t){0};
    uint64_t last_batch = w->framed_batches;
    uint64_t commits = w->pending_commits;
    wal_position_t end = w->framed_end;
    w->pending_commits = 0;
    if (w->space_waiters > 0)
        pthread_cond_broadcast(&w->space_cond);
    pthread_mutex_unlock(&w->lock);

    int rc = wal_write_batch(w, &batch);
    if (commits > 0 && w->m_group_commit)
        metric_histogram_observe(w->m_group_commit, (double)commits);
    batch.len = 0;
    batch.run_count = 0;
    if (batch.cap > WAL_PENDING_LIMIT) {
        /* A burst grew it; do not keep that much per WAL. */
        batch_free(&batch);
    }

    pthread_mutex_lock(&w->lock);
    w->spare = batch;
    w->writing = false;
    if (rc < 0) {
        if (w->error == 0)
            w->error = rc;
    } else {
        w->written_batches = last_batch;
        w->written_end = end;
    }
    /* Wake the waiters this write covered; of those who framed meanwhile, wake one to lead
     * the next write (all of them on error, to return it). */
    pthread_cond_broadcast(&w->written_cond[number % 2]);
    if (rc < 0)
        pthread_cond_broadcast(&w->written_cond[(number + 1) % 2]);
    else if (w->framed_batches > w->written_batches)
        pthread_cond_signal(&w->written_cond[(number + 1) % 2]);
    if (w->space_waiters > 0)
        pthread_cond_broadcast(&w->space_cond);
}

/* Waits (w->lock held) until batch number batch is on disk, leading writes as needed. */
static int wal_wait_written(wal_t *w, uint64_t batch)
{
    while (w->written_batches < batch) {
        if (w->error < 0)
            return w->error;
        if (!w->writing) {
            wal_lead(w);
            continue;
        }
        /* Covered by the write in flight: wait for it; else for the one after it. */
        uint64_t number = batch <= w->writing_batches ? w->write_number : w->write_number + 1;
        pthread_cond_wait(&w->written_cond[number % 2], &w->lock);
    }
    return 0;
}

/* Marks the WAL broken (w->lock held) and wakes everyone. */
static int wal_break(wal_t *w, int rc)
{
    if (w->error == 0) {
        w->error = rc;
        LOG_ERROR("WAL broken; it refuses writes until restart", "dir=%s segment=%08u err=%s",
                  log_quote(w->dir), w->frame_segment, log_quote(cairn_strerror(rc)));
    }
    pthread_cond_broadcast(&w->written_cond[0]);
    pthread_cond_broadcast(&w->written_cond[1]);
    pthread_cond_broadcast(&w->space_cond);
    return w->error;
}

/* ---------------------------------------------------------------------------------------------
 * Writer API
 */

wal_t *wal_open(const wal_options_t *opts, cairn_error_t *err)
{
    if (!opts || !opts->dir || !opts->dir[0]) {
        cairn_error_set(err, -EINVAL, "WAL: no directory given");
        return NULL;
    }
    uint64_t segment_size = opts->segment_size ? opts->segment_size : WAL_DEFAULT_SEGMENT_SIZE;
    if (segment_size % WAL_PAGE_SIZE != 0) {
        cairn_error_set(err, -EINVAL,
                        "WAL %s: segment size %" PRIu64 " is not a multiple of the page size %d",
                        opts->dir, segment_size, WAL_PAGE_SIZE);
        return NULL;
    }
    int rc = make_dirs(opts->dir);
    if (rc < 0) {
        cairn_error_set(err, rc, "WAL %s: cannot create the directory: %s", opts->dir,
                        cairn_strerror(rc));
        return NULL;
    }
    uint32_t first = 0, last = 0;
    rc = wal_segment_range(opts->dir, &first, &last);
    if (rc < 0) {
        cairn_error_set(err, rc, "WAL %s: cannot list segments: %s", opts->dir, cairn_strerror(rc));
        return NULL;
    }
    if (rc > 0 && last == UINT32_MAX) {
        cairn_error_set(err, -EOVERFLOW, "WAL %s: segment numbers exhausted", opts->dir);
        return NULL;
    }
    uint32_t segment = rc > 0 ? last + 1 : 0;
    if (segment < opts->min_segment)
        segment = opts->min_segment;

    wal_t *w = cairn_calloc(1, sizeof(*w));
    w->dir = cairn_strdup(opts->dir);
    w->fd = -1;
    w->dir_fd = open(opts->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0) {
        rc = -errno;
        cairn_error_set(err, rc, "WAL %s: cannot open the directory: %s", opts->dir,
                        cairn_strerror(rc));
        goto fail_dir;
    }
    w->segment_size = segment_size;
    w->pages_per_segment = segment_size / WAL_PAGE_SIZE;
    w->sync = opts->sync;
    w->compress = opts->compress;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->written_cond[0], NULL);
    pthread_cond_init(&w->written_cond[1], NULL);
    pthread_cond_init(&w->space_cond, NULL);

    metric_registry_t *reg = opts->registry;
    if (reg) {
        w->m_records =
            metric_counter_new(reg, "cairn_wal_records_total", "Records appended to the WAL.");
        w->m_bytes = metric_counter_new(
            reg, "cairn_wal_bytes_written_total",
            "Bytes written to WAL segment files, fragment headers and page padding included.");
        w->m_writes = metric_counter_new(reg, "cairn_wal_writes_total",
                                         "write(2) calls on WAL segment files.");
        w->m_commits = metric_counter_new(reg, "cairn_wal_commits_total",
                                          "WAL commits (wal_log calls), group-committed.");
        w->m_fsyncs = metric_counter_new(reg, "cairn_wal_fsyncs_total",
                                         "fsync and fdatasync calls on WAL segment files.");
        w->m_fsync_time =
            metric_histogram_new(reg, "cairn_wal_fsync_duration_seconds",
                                 "Duration of fsync and fdatasync calls on WAL segment files.",
                                 METRIC_LATENCY_BUCKET_COUNT, METRIC_LATENCY_BUCKETS);
        w->m_group_commit = metric_histogram_new(
            reg, "cairn_wal_group_commit_size", "WAL commits written by one leader write.",
            CAIRN_ARRAY_LEN(WAL_GROUP_COMMIT_BUCKETS), WAL_GROUP_COMMIT_BUCKETS);
        w->m_segment = metric_gauge_new(reg, "cairn_wal_segment_current",
                                        "Number of the WAL segment being written.");
    }

    rc = wal_create_segment(w, segment);
    if (rc < 0) {
        cairn_error_set(err, rc, "WAL %s: cannot create segment %08u: %s", opts->dir, segment,
                        cairn_strerror(rc));
        goto fail_segment;
    }
    w->frame_segment = segment;
    w->framed_end = w->written_end = (wal_position_t){segment, 0};
    return w;

fail_segment:
    pthread_cond_destroy(&w->space_cond);
    pthread_cond_destroy(&w->written_cond[0]);
    pthread_cond_destroy(&w->written_cond[1]);
    pthread_mutex_destroy(&w->lock);
    close(w->dir_fd);
fail_dir:
    cairn_free(w->dir);
    cairn_free(w);
    return NULL;
}

int wal_log(wal_t *w, const uint8_t *const *records, const size_t *lengths, size_t count,
            wal_position_t *end)
{
    return wal_log_ordered(w, records, lengths, count, end, NULL, NULL);
}

int wal_log_ordered(wal_t *w, const uint8_t *const *records, const size_t *lengths, size_t count,
                    wal_position_t *end, wal_framed_fn framed, void *ctx)
{
    uint64_t ticket;
    int rc = wal_log_begin(w, records, lengths, count, framed, ctx, &ticket, end);
    return rc < 0 ? rc : wal_log_wait(w, ticket);
}

int wal_log_wait(wal_t *w, uint64_t ticket)
{
    pthread_mutex_lock(&w->lock);
    int rc = wal_wait_written(w, ticket);
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int wal_log_begin(wal_t *w, const uint8_t *const *records, const size_t *lengths, size_t count,
                  wal_framed_fn framed, void *ctx, uint64_t *ticket, wal_position_t *end)
{
    wal_item_t stack_items[16];
    wal_item_t *items =
        count <= CAIRN_ARRAY_LEN(stack_items) ? stack_items : cairn_malloc(count * sizeof(*items));
    uint8_t *compressed = NULL;
    int rc = 0;

    size_t compress_cap = 0;
    for (size_t i = 0; i < count; i++) {
        if (!records[i] || lengths[i] == 0) {
            rc = -EINVAL;
            goto out;
        }
        if (lengths[i] > WAL_MAX_RECORD_SIZE) {
            rc = -EMSGSIZE;
            goto out;
        }
        items[i] = (wal_item_t){records[i], lengths[i], 0};
        if (w->compress)
            compress_cap += snappy_max_compressed_length(lengths[i]);
    }
    /* Compress outside the lock; keep the result only when it is smaller. */
    if (w->compress && count > 0) {
        compressed = cairn_malloc(compress_cap);
        size_t used = 0;
        for (size_t i = 0; i < count; i++) {
            size_t n = compress_cap - used;
            if (snappy_compress((const char *)records[i], lengths[i], (char *)compressed + used,
                                &n) == SNAPPY_OK &&
                n < lengths[i]) {
                items[i] = (wal_item_t){compressed + used, n, WAL_FLAG_SNAPPY};
                used += n;
            }
        }
    }

    pthread_mutex_lock(&w->lock);
    while (w->error == 0 && w->writing && w->pending.len >= WAL_PENDING_LIMIT) {
        w->space_waiters++;
        pthread_cond_wait(&w->space_cond, &w->lock);
        w->space_waiters--;
    }
    if (w->error < 0) {
        rc = w->error;
        pthread_mutex_unlock(&w->lock);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        rc = frame_record(w, &items[i]);
        if (rc < 0) {
            /* Part of the call may be framed: nothing after it can be trusted. */
            rc = wal_break(w, rc);
            pthread_mutex_unlock(&w->lock);
            goto out;
        }
    }
    /* Still under the mutex: the caller can take its place in WAL order (head.c's stripe
     * tickets) before any later call is framed. */
    if (framed)
        framed(ctx);
    uint64_t batch = ++w->framed_batches;
    w->pending_commits++;
    wal_position_t my_end = w->framed_end;
    *ticket = batch;
    pthread_mutex_unlock(&w->lock);

    if (rc == 0) {
        if (end)
            *end = my_end;
        if (w->m_commits) {
            metric_counter_add(w->m_commits, 1);
            metric_counter_add(w->m_records, count);
        }
    }
out:
    cairn_free(compressed);
    if (items != stack_items)
        cairn_free(items);
    return rc;
}

int wal_next_segment(wal_t *w)
{
    pthread_mutex_lock(&w->lock);
    int rc = w->error;
    if (rc == 0 && w->frame_segment >= (uint32_t)INT_MAX)
        rc = -EOVERFLOW; /* the number would not fit the int result */
    if (rc == 0) {
        rc = frame_switch_segment(w);
        if (rc == 0) {
            uint32_t segment = w->frame_segment;
            rc = wal_wait_written(w, ++w->framed_batches);
            if (rc == 0)
                rc = (int)segment;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int wal_delete_segments_before(const char *dir, uint32_t segment)
{
    uint32_t *list = NULL;
    int n = segments_list(dir, &list);
    if (n < 0)
        return n;
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dir_fd < 0 ? -errno : 0;
    for (int i = 0; rc == 0 && i < n && list[i] < segment; i++) {
        char name[16];
        segment_name(name, list[i]);
        if (unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT)
            rc = -errno;
    }
    cairn_free(list);
    if (dir_fd >= 0) {
        if (fsync(dir_fd) != 0 && rc == 0)
            rc = -errno;
        close(dir_fd);
    }
    return rc;
}

int wal_truncate_before(wal_t *w, uint32_t segment)
{
    /* The segment the last completed write went to: a switch only framed does not count, so
     * the file still being written is never deleted. */
    pthread_mutex_lock(&w->lock);
    uint32_t current = w->written_end.segment;
    pthread_mutex_unlock(&w->lock);
    if (segment > current)
        return -EINVAL;
    return wal_delete_segments_before(w->dir, segment);
}

wal_position_t wal_written_position(wal_t *w)
{
    pthread_mutex_lock(&w->lock);
    wal_position_t pos = w->written_end;
    pthread_mutex_unlock(&w->lock);
    return pos;
}

int wal_close(wal_t *w)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->lock);
    if (w->error == 0) {
        /* Pad the last page so the finished segment is whole pages, as Prometheus does. */
        frame_pad_page(w);
        wal_wait_written(w, ++w->framed_batches);
    }
    int rc = w->error;
    pthread_mutex_unlock(&w->lock);

    if (w->fd >= 0) {
        if (rc == 0) {
            rc = wal_fsync(w, w->fd, false);
            if (rc < 0)
                wal_fail_log(w, "fsync", w->fd_segment, w->frame_offset, rc);
        }
        close(w->fd);
    }
    close(w->dir_fd);
    batch_free(&w->pending);
    batch_free(&w->spare);
    pthread_cond_destroy(&w->space_cond);
    pthread_cond_destroy(&w->written_cond[0]);
    pthread_cond_destroy(&w->written_cond[1]);
    pthread_mutex_destroy(&w->lock);
    cairn_free(w->dir);
    cairn_free(w);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Reader
 *
 * The reader keeps a window of the current segment file (bytes [base, base + len), refilled by
 * pread) and parses one fragment at a time at off. Multi-fragment records are assembled in rec;
 * compressed records are decompressed into out; an uncompressed FULL fragment is returned in
 * place. At the end of a file: between records it moves to the next segment (or reports the
 * end); inside a record or fragment it reports a torn record, except in follow mode on the
 * newest segment, where it keeps its state and tries again on the next call. In follow mode the
 * next segment's existence means the current one is complete, because the writer finishes a
 * segment before it creates the next.
 */

struct wal_reader {
    char *dir;                     /* owned copy of the directory path */
    int dir_fd;                    /* the directory, for openat */
    uint32_t last_segment;         /* inclusive upper bound from the options */
    uint32_t end_segment;          /* !follow: the highest segment to read, fixed at open */
    bool have_segments;            /* !follow: some segment is in range */
    bool follow;                   /* tailing a live WAL */
    uint32_t segment;              /* current segment */
    int fd;                        /* its file, or -1 before it is opened */
    uint8_t *buf;                  /* window: file bytes [base, base + len) */
    size_t len;                    /* bytes in the window */
    uint64_t base;                 /* file offset of buf[0] */
    uint64_t off;                  /* file offset of the next fragment */
    bool in_record;                /* a FIRST fragment was read, LAST not yet */
    uint64_t record_start;         /* offset of that FIRST fragment */
    uint8_t record_flag;           /* its compression flag */
    uint8_t *rec;                  /* assembled fragment data */
    size_t rec_len;                /* bytes in rec */
    size_t rec_cap;                /* bytes allocated */
    bool raw;                      /* compressed records are returned as they are */
    bool compressed;               /* raw: the last record returned is compressed */
    uint8_t *out;                  /* decompressed record */
    size_t out_cap;                /* bytes allocated */
    wal_position_t pos;            /* just past the last record returned */
    int error;                     /* sticky -EINVAL once corruption was found */
    char message[CAIRN_ERROR_MAX]; /* its message */
};

/* Outcomes of one parsing step. */
enum {
    STEP_CONTINUE = 0, /* consumed a fragment or padding */
    STEP_RECORD = 1,   /* a record is ready */
    STEP_END = 2,      /* nothing more to read now */
};

static int reader_corrupt(wal_reader_t *r, cairn_error_t *err, uint64_t offset, const char *fmt,
                          ...) CAIRN_PRINTF(4, 5);

/* Records the first corruption found (sticky) and returns -EINVAL. */
static int reader_corrupt(wal_reader_t *r, cairn_error_t *err, uint64_t offset, const char *fmt,
                          ...)
{
    int n = snprintf(r->message, sizeof(r->message), "segment %08u offset %" PRIu64 ": ",
                     r->segment, offset);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(r->message))
        vsnprintf(r->message + n, sizeof(r->message) - (size_t)n, fmt, ap);
    va_end(ap);
    r->error = -EINVAL;
    return cairn_error_set(err, -EINVAL, "%s", r->message);
}

/* Makes the bytes [at, at + need) available in the window if the file has them; stores how many
 * bytes from at the window holds (less than need at the end of the file). */
static int reader_fill(wal_reader_t *r, uint64_t at, size_t need, size_t *avail, cairn_error_t *err)
{
    if (at < r->base || at > r->base + r->len) {
        r->base = at;
        r->len = 0;
    }
    size_t have = (size_t)(r->base + r->len - at);
    if (have < need) {
        memmove(r->buf, r->buf + (at - r->base), have);
        r->base = at;
        r->len = have;
        while (r->len < need) {
            ssize_t n =
                pread(r->fd, r->buf + r->len, WAL_READ_WINDOW - r->len, (off_t)(r->base + r->len));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int rc = -errno;
                return cairn_error_set(err, rc, "segment %08u offset %" PRIu64 ": read: %s",
                                       r->segment, r->base + r->len, cairn_strerror(rc));
            }
            if (n == 0)
                break;
            r->len += (size_t)n;
        }
        have = r->len;
    }
    *avail = have;
    return 0;
}

/* Starts reading segment number segment (already open as fd) from its beginning. */
static void reader_enter(wal_reader_t *r, uint32_t segment, int fd)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->segment = segment;
    r->base = r->len = 0;
    r->off = 0;
    r->in_record = false;
    r->rec_len = 0;
    r->pos = (wal_position_t){segment, 0};
}

static int reader_open_segment(wal_reader_t *r, uint32_t segment)
{
    char name[16];
    segment_name(name, segment);
    int fd = openat(r->dir_fd, name, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Opens the first segment to read. Returns 1 when open, STEP_END-like 0 when none exists yet,
 * or a negative errno. */
static int reader_start(wal_reader_t *r, cairn_error_t *err)
{
    if (!r->follow && !r->have_segments)
        return 0;
    int fd = reader_open_segment(r, r->segment);
    if (fd == -ENOENT) {
        /* Segments below the lowest one present were truncated away; start at the lowest. */
        uint32_t *list = NULL;
        int n = segments_list(r->dir, &list);
        if (n < 0)
            return cairn_error_set(err, n, "WAL %s: cannot list segments: %s", r->dir,
                                   cairn_strerror(n));
        int found = -1;
        for (int i = 0; i < n; i++)
            if (list[i] >= r->segment && list[i] <= r->last_segment) {
                found = i;
                break;
            }
        bool below = n > 0 && list[0] < r->segment;
        uint32_t next = found >= 0 ? list[found] : 0;
        cairn_free(list);
        if (found < 0)
            return 0;
        if (below)
            return reader_corrupt(r, err, 0, "segment missing (segments are not contiguous)");
        if (!r->follow && next > r->end_segment)
            return 0;
        r->segment = next;
        fd = reader_open_segment(r, next);
    }
    if (fd < 0)
        return cairn_error_set(err, fd, "segment %08u: open: %s", r->segment, cairn_strerror(fd));
    reader_enter(r, r->segment, fd);
    return 1;
}

/* The window ends at the end of the file at r->off; partial means inside a fragment. Returns
 * STEP_CONTINUE to go on (more data, or the next segment), STEP_END, or -EINVAL. */
static int reader_at_eof(wal_reader_t *r, bool partial, cairn_error_t *err)
{
    bool incomplete = partial || r->in_record;
    uint64_t where = r->in_record ? r->record_start : r->off;
    uint64_t size = r->base + r->len;
    if (r->follow) {
        if (r->segment >= r->last_segment)
            return STEP_END;
        int fd = reader_open_segment(r, r->segment + 1);
        if (fd == -ENOENT)
            return STEP_END; /* the writer is still on this segment */
        if (fd < 0)
            return cairn_error_set(err, fd, "segment %08u: open: %s", r->segment + 1,
                                   cairn_strerror(fd));
        /* The next segment exists, so this one is finished: read what was added meanwhile. */
        struct stat st;
        if (fstat(r->fd, &st) == 0 && (uint64_t)st.st_size > size) {
            close(fd);
            return STEP_CONTINUE;
        }
        if (incomplete) {
            close(fd);
            return reader_corrupt(
                r, err, where, "record continues past the end of the segment (%" PRIu64 " bytes)",
                size);
        }
        reader_enter(r, r->segment + 1, fd);
        return STEP_CONTINUE;
    }

    bool last = r->segment >= r->end_segment;
    if (incomplete)
        return reader_corrupt(
            r, err, where,
            last ? "torn record at the end of the WAL (the file ends at %" PRIu64 ")"
                 : "record continues past the end of the segment (%" PRIu64 " bytes)",
            size);
    if (last)
        return STEP_END;
    int fd = reader_open_segment(r, r->segment + 1);
    if (fd == -ENOENT) {
        r->segment++;
        return reader_corrupt(r, err, 0, "segment missing (segments are not contiguous)");
    }
    if (fd < 0)
        return cairn_error_set(err, fd, "segment %08u: open: %s", r->segment + 1,
                               cairn_strerror(fd));
    reader_enter(r, r->segment + 1, fd);
    return STEP_CONTINUE;
}

/* A complete record's data (compressed or not): decompresses if needed and returns it. */
static int reader_emit(wal_reader_t *r, const uint8_t *data, size_t n, bool compressed,
                       uint64_t start, const uint8_t **record, size_t *length, cairn_error_t *err)
{
    r->compressed = compressed && r->raw;
    if (compressed && r->raw) {
        if (n == 0)
            return reader_corrupt(r, err, start, "empty record");
    } else if (compressed) {
        size_t ulen;
        if (snappy_uncompressed_length((const char *)data, n, &ulen) != SNAPPY_OK)
            return reader_corrupt(r, err, start, "invalid snappy header");
        if (ulen > WAL_MAX_RECORD_SIZE)
            return reader_corrupt(r, err, start,
                                  "decompressed length %zu exceeds the limit of %zu bytes", ulen,
                                  WAL_MAX_RECORD_SIZE);
        if (ulen > r->out_cap || !r->out) {
            cairn_free(r->out);
            r->out_cap = ulen > 4096 ? ulen : 4096;
            r->out = cairn_malloc(r->out_cap);
        }
        size_t got = r->out_cap;
        if (snappy_uncompress((const char *)data, n, (char *)r->out, &got) != SNAPPY_OK ||
            got != ulen)
            return reader_corrupt(r, err, start, "corrupt snappy data");
        data = r->out;
        n = ulen;
    }
    if (n == 0) /* wal_log never writes one: a record holds at least its type byte */
        return reader_corrupt(r, err, start, "empty record");
    *record = data;
    *length = n;
    r->pos = (wal_position_t){r->segment, r->off};
    return STEP_RECORD;
}

static const char *kind_name(uint8_t kind)
{
    switch (kind) {
    case WAL_KIND_FULL: return "full";
    case WAL_KIND_FIRST: return "first";
    case WAL_KIND_MIDDLE: return "middle";
    case WAL_KIND_LAST: return "last";
    default: return "padding";
    }
}

/* Parses the fragment (or padding) at r->off. */
static int reader_step(wal_reader_t *r, const uint8_t **record, size_t *length, cairn_error_t *err)
{
    uint64_t off = r->off;
    size_t page_left = WAL_PAGE_SIZE - (size_t)(off % WAL_PAGE_SIZE);
    size_t avail;
    int rc = reader_fill(r, off, page_left < WAL_RECORD_HEADER ? page_left : WAL_RECORD_HEADER,
                         &avail, err);
    if (rc < 0)
        return rc;
    if (avail == 0)
        return reader_at_eof(r, false, err);
    const uint8_t *p = r->buf + (off - r->base);
    uint8_t type = p[0];

    if (type == 0) {
        /* Padding: zeros up to the page boundary (or the end of a short file). */
        if (r->in_record)
            return reader_corrupt(r, err, off,
                                  "page padding inside the record started at offset %" PRIu64,
                                  r->record_start);
        rc = reader_fill(r, off, page_left, &avail, err);
        if (rc < 0)
            return rc;
        p = r->buf + (off - r->base);
        size_t n = avail < page_left ? avail : page_left;
        for (size_t i = 0; i < n; i++)
            if (p[i] != 0)
                return reader_corrupt(r, err, off + i, "non-zero byte 0x%02x in page padding",
                                      p[i]);
        r->off = off + n;
        return n < page_left ? reader_at_eof(r, false, err) : STEP_CONTINUE;
    }
    if (page_left < WAL_RECORD_HEADER)
        return reader_corrupt(r, err, off,
                              "fragment type 0x%02x where only page padding fits (%zu bytes "
                              "left in the page)",
                              type, page_left);
    uint8_t kind = type & WAL_KIND_MASK;
    if (type & WAL_FLAG_ZSTD)
        return reader_corrupt(r, err, off,
                              "fragment type 0x%02x: zstd compression is not supported", type);
    if ((type & ~(WAL_KIND_MASK | WAL_FLAG_SNAPPY)) != 0 || kind == WAL_KIND_PADDING ||
        kind > WAL_KIND_LAST)
        return reader_corrupt(r, err, off, "unknown fragment type 0x%02x", type);
    if (avail < WAL_RECORD_HEADER)
        return reader_at_eof(r, true, err);

    size_t n = get_be16(p + 1);
    uint32_t crc = get_be32(p + 3);
    if (WAL_RECORD_HEADER + n > page_left)
        return reader_corrupt(r, err, off,
                              "%s fragment of %zu bytes does not fit in the %zu bytes left in "
                              "the page",
                              kind_name(kind), n, page_left - WAL_RECORD_HEADER);
    rc = reader_fill(r, off, WAL_RECORD_HEADER + n, &avail, err);
    if (rc < 0)
        return rc;
    if (avail < WAL_RECORD_HEADER + n)
        return reader_at_eof(r, true, err);
    const uint8_t *data = r->buf + (off - r->base) + WAL_RECORD_HEADER;
    uint32_t actual = crc32c(data, n);
    if (actual != crc)
        return reader_corrupt(r, err, off,
                              "CRC mismatch in %s fragment of %zu bytes: stored %08x, computed "
                              "%08x",
                              kind_name(kind), n, crc, actual);

    bool compressed = (type & WAL_FLAG_SNAPPY) != 0;
    if (kind == WAL_KIND_FULL || kind == WAL_KIND_FIRST) {
        if (r->in_record)
            return reader_corrupt(r, err, off,
                                  "%s fragment while the record started at offset %" PRIu64
                                  " is incomplete",
                                  kind_name(kind), r->record_start);
    } else {
        if (!r->in_record)
            return reader_corrupt(r, err, off, "%s fragment without a first fragment",
                                  kind_name(kind));
        if (compressed != (r->record_flag != 0))
            return reader_corrupt(r, err, off,
                                  "compression flag differs from the record's first fragment "
                                  "at offset %" PRIu64,
                                  r->record_start);
    }
    r->off = off + WAL_RECORD_HEADER + n;

    if (kind == WAL_KIND_FULL)
        return reader_emit(r, data, n, compressed, off, record, length, err);
    if (kind == WAL_KIND_FIRST) {
        r->in_record = true;
        r->record_start = off;
        r->record_flag = compressed ? WAL_FLAG_SNAPPY : 0;
        r->rec_len = 0;
    }
    if (r->rec_len + n > WAL_MAX_RECORD_SIZE)
        return reader_corrupt(r, err, r->record_start, "record exceeds the limit of %zu bytes",
                              WAL_MAX_RECORD_SIZE);
    if (r->rec_len + n > r->rec_cap) {
        size_t cap = r->rec_cap ? r->rec_cap : 64 * 1024;
        while (cap < r->rec_len + n)
            cap *= 2;
        r->rec = cairn_realloc(r->rec, cap);
        r->rec_cap = cap;
    }
    if (n > 0)
        memcpy(r->rec + r->rec_len, data, n);
    r->rec_len += n;
    if (kind != WAL_KIND_LAST)
        return STEP_CONTINUE;
    r->in_record = false;
    return reader_emit(r, r->rec, r->rec_len, compressed, r->record_start, record, length, err);
}

wal_reader_t *wal_reader_open(const wal_reader_options_t *opts, cairn_error_t *err)
{
    if (!opts || !opts->dir || !opts->dir[0]) {
        cairn_error_set(err, -EINVAL, "WAL reader: no directory given");
        return NULL;
    }
    if (opts->first_segment > opts->last_segment) {
        cairn_error_set(err, -EINVAL, "WAL reader %s: first segment %u after last segment %u",
                        opts->dir, opts->first_segment, opts->last_segment);
        return NULL;
    }
    int dir_fd = open(opts->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        int rc = -errno;
        cairn_error_set(err, rc, "WAL %s: cannot open the directory: %s", opts->dir,
                        cairn_strerror(rc));
        return NULL;
    }
    uint32_t first = 0, last = 0;
    int n = wal_segment_range(opts->dir, &first, &last);
    if (n < 0) {
        cairn_error_set(err, n, "WAL %s: cannot list segments: %s", opts->dir, cairn_strerror(n));
        close(dir_fd);
        return NULL;
    }
    wal_reader_t *r = cairn_calloc(1, sizeof(*r));
    r->dir = cairn_strdup(opts->dir);
    r->dir_fd = dir_fd;
    r->fd = -1;
    r->follow = opts->follow;
    r->raw = opts->raw;
    r->last_segment = opts->last_segment;
    r->segment = opts->first_segment;
    r->end_segment = n > 0 && last < opts->last_segment ? last : opts->last_segment;
    r->have_segments = n > 0 && last >= opts->first_segment && first <= opts->last_segment;
    r->pos = (wal_position_t){opts->first_segment, 0};
    r->buf = cairn_malloc(WAL_READ_WINDOW);
    return r;
}

int wal_reader_next(wal_reader_t *r, const uint8_t **record, size_t *length, cairn_error_t *err)
{
    if (r->error < 0)
        return cairn_error_set(err, r->error, "%s", r->message);
    if (r->fd < 0) {
        int rc = reader_start(r, err);
        if (rc <= 0)
            return rc;
    }
    for (;;) {
        int rc = reader_step(r, record, length, err);
        if (rc < 0)
            return rc;
        if (rc == STEP_RECORD)
            return 1;
        if (rc == STEP_END)
            return 0;
    }
}

bool wal_reader_compressed(const wal_reader_t *r)
{
    return r->compressed;
}

wal_position_t wal_reader_position(const wal_reader_t *r)
{
    return r->pos;
}

void wal_reader_free(wal_reader_t *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    close(r->dir_fd);
    cairn_free(r->buf);
    cairn_free(r->rec);
    cairn_free(r->out);
    cairn_free(r->dir);
    cairn_free(r);
}

/* ---------------------------------------------------------------------------------------------
 * Repair
 */

int wal_repair(const char *dir, wal_position_t pos, cairn_error_t *err)
{
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        int rc = -errno;
        return cairn_error_set(err, rc, "WAL %s: cannot open the directory: %s", dir,
                               cairn_strerror(rc));
    }
    char name[16];
    segment_name(name, pos.segment);
    int rc = 0;
    uint64_t size = 0;
    int fd = openat(dir_fd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        if (rc != -ENOENT || pos.offset != 0) {
            cairn_error_set(err, rc, "WAL %s: cannot open segment %s: %s", dir, name,
                            cairn_strerror(rc));
            goto out;
        }
        rc = 0; /* nothing to truncate */
    } else {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            rc = -errno;
            cairn_error_set(err, rc, "WAL %s: segment %s: stat: %s", dir, name, cairn_strerror(rc));
            goto out;
        }
        size = (uint64_t)st.st_size;
        if (pos.offset > size) {
            rc = cairn_error_set(err, -EINVAL,
                                 "WAL %s: segment %s has %" PRIu64
                                 " bytes, cannot repair at offset %" PRIu64,
                                 dir, name, size, pos.offset);
            goto out;
        }
        /* Cut at the last good record, then zero-fill to the page boundary: the segment stays
         * whole pages, and the zeros read as page padding. */
        uint64_t padded = (pos.offset + WAL_PAGE_SIZE - 1) / WAL_PAGE_SIZE * WAL_PAGE_SIZE;
        if (ftruncate(fd, (off_t)pos.offset) != 0 || ftruncate(fd, (off_t)padded) != 0 ||
            fsync(fd) != 0) {
            rc = -errno;
            cairn_error_set(err, rc, "WAL %s: cannot truncate segment %s: %s", dir, name,
                            cairn_strerror(rc));
            goto out;
        }
    }

    uint32_t *list = NULL;
    int n = segments_list(dir, &list);
    if (n < 0) {
        rc = cairn_error_set(err, n, "WAL %s: cannot list segments: %s", dir, cairn_strerror(n));
        goto out;
    }
    int deleted = 0;
    for (int i = 0; i < n; i++) {
        if (list[i] <= pos.segment)
            continue;
        char later[16];
        segment_name(later, list[i]);
        if (unlinkat(dir_fd, later, 0) != 0 && errno != ENOENT) {
            rc = -errno;
            cairn_error_set(err, rc, "WAL %s: cannot delete segment %s: %s", dir, later,
                            cairn_strerror(rc));
            break;
        }
        deleted++;
    }
    cairn_free(list);
    if (rc == 0 && fsync(dir_fd) != 0) {
        rc = -errno;
        cairn_error_set(err, rc, "WAL %s: fsync of the directory: %s", dir, cairn_strerror(rc));
    }
    if (rc == 0)
        LOG_WARN(
            "WAL repaired: truncated at the last good record, later segments deleted",
            "dir=%s segment=%s offset=%" PRIu64 " dropped_bytes=%" PRIu64 " deleted_segments=%d",
            log_quote(dir), name, pos.offset, size > pos.offset ? size - pos.offset : 0, deleted);
out:
    if (fd >= 0)
        close(fd);
    close(dir_fd);
    return rc;
}
