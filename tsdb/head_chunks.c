/*
 * tsdb/head_chunks.c: sealed head chunks on disk (chunks_head/), read back through mmap, so
 * the head's RAM holds only open chunks.
 *
 * Format (docs/format/head_chunks.md; Prometheus's m-mapped head chunk format, §3.5 of the
 * reference):
 *   file %06u (1-based), header: magic 0x0130BC91 (4 B BE) | version 1 (1 B) | 3 B zero
 *   chunk: series ref 8 B BE | min time 8 B BE | max time 8 B BE | encoding 1 B (1 = XOR) |
 *          data length uvarint | data | CRC32C 4 B BE of everything from the series ref on
 * A chunk reference is file number << 32 | offset of the chunk in the file. Files are cut at
 * HEAD_CHUNKS_FILE_SIZE.
 *
 * Writing: head_chunks_append encodes the record (header, CRC) without the mutex, copies it
 * into a write buffer under the mutex and returns its reference at once; head_chunks_flush
 * writes the buffer with one write(2), without the mutex: it swaps the buffer for an empty one
 * and writes it while other commits go on appending (one flush at a time; a commit that finds
 * a flush in progress leaves its records to it, and the flushing commit writes until the
 * buffer is empty). The head flushes once per commit, so sealing many chunks in a batch costs
 * one system call, and a commit sealing a wave of chunks does not hold up the others' appends
 * while it writes. The WAL holds every sample of a sealed chunk, so a chunk written a little
 * after its commit returns loses nothing.
 * Reading: a reference below the flushed size is read through the file's read-only mapping
 * (the whole file size is mapped up front, so growth needs no remap; bytes past the flushed
 * size are never touched, which would raise SIGBUS); a reference still in the write buffer, or
 * in the one being written, is copied out under the mutex.
 *
 * Truncation deletes whole files whose chunks all end before a time (max_t per file).
 * Corruption found when loading (a torn tail after a crash) ends the load of that file: the
 * chunks before it are used, the file is truncated there, and the WAL replays the rest.
 *
 * Locks: one mutex (a leaf) for the write buffers, the file table and the flushed sizes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsdb/crc32c.h"
#include "tsdb/head_chunks.h"

#define HEAD_CHUNKS_MAGIC     0x0130BC91u
#define HEAD_CHUNKS_HEADER    8
#define HEAD_CHUNKS_FILE_SIZE (128u << 20)
#define HEAD_CHUNKS_MAX_FILES 65536
#define HEAD_CHUNKS_BUFFER    (4u << 20)
/* series ref + min + max + encoding + uvarint(len) max 10 */
#define CHUNK_RECORD_OVERHEAD (8 + 8 + 8 + 1 + 10 + 4)
/* Largest record the loader accepts (record_decode caps data at 64 KiB). */
#define CHUNK_RECORD_MAX        (CHUNK_RECORD_OVERHEAD + 64 * 1024)
#define HEAD_CHUNKS_SCAN_BUFFER (4u << 20)

typedef struct chunk_file {
    int fd;
    uint8_t *map;     /* read-only mapping of HEAD_CHUNKS_FILE_SIZE bytes */
    uint64_t flushed; /* bytes written to the file */
    uint64_t size;    /* bytes including the write buffer (current file only) */
    int64_t max_t;    /* newest chunk end time in the file */
} chunk_file_t;

struct head_chunks {
    char *dir;
    pthread_mutex_t lock;
    chunk_file_t *files[HEAD_CHUNKS_MAX_FILES]; /* by file number; NULL when absent */
    uint32_t first, current;                    /* lowest live file, file being written */
    buf_t pending;                              /* unwritten bytes of the current file */
    uint64_t pending_offset;                    /* file offset of pending.data[0] */
    buf_t writing;           /* bytes a flush is writing without the mutex (current file) */
    uint64_t writing_offset; /* file offset of writing.data[0] */
    bool flushing;           /* a flush is writing `writing` */
    pthread_cond_t flushed;  /* signalled when a flush ends */
    int error;               /* sticky write error */
};

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static char *file_path(const head_chunks_t *hc, uint32_t n)
{
    return cairn_sprintf("%s/%06u", hc->dir, n);
}

static void file_close(chunk_file_t *f)
{
    if (!f)
        return;
    if (f->map && f->map != MAP_FAILED)
        munmap(f->map, HEAD_CHUNKS_FILE_SIZE);
    if (f->fd >= 0)
        close(f->fd);
    cairn_free(f);
}

static chunk_file_t *file_map(int fd, cairn_error_t *err, const char *path)
{
    chunk_file_t *f = cairn_calloc(1, sizeof(*f));
    f->fd = fd;
    f->max_t = INT64_MIN;
    f->map = mmap(NULL, HEAD_CHUNKS_FILE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (f->map == MAP_FAILED) {
        cairn_error_set(err, -errno, "mmap %s: %s", path, cairn_strerror(-errno));
        f->map = NULL;
        file_close(f);
        return NULL;
    }
    return f;
}

/* Starts file number n for writing. Called with the mutex held (or before sharing). */
static int file_create(head_chunks_t *hc, uint32_t n, cairn_error_t *err)
{
    if (n >= HEAD_CHUNKS_MAX_FILES)
        return cairn_error_set(err, -ENOSPC, "too many head chunk files");
    char *path = file_path(hc, n);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = -errno;
        cairn_error_set(err, rc, "create %s: %s", path, cairn_strerror(rc));
        cairn_free(path);
        return rc;
    }
    chunk_file_t *f = file_map(fd, err, path);
    cairn_free(path);
    if (!f)
        return -EIO;
    uint8_t header[HEAD_CHUNKS_HEADER] = {0};
    put_be32(header, HEAD_CHUNKS_MAGIC);
    header[4] = 1;
    if (write(fd, header, sizeof(header)) != (ssize_t)sizeof(header)) {
        file_close(f);
        return cairn_error_set(err, -EIO, "write head chunk file header: %s",
                               cairn_strerror(-errno));
    }
    f->flushed = f->size = HEAD_CHUNKS_HEADER;
    hc->files[n] = f;
    hc->current = n;
    hc->pending_offset = HEAD_CHUNKS_HEADER;
    if (!hc->first)
        hc->first = n;
    return 0;
}

/* Decodes the chunk record at off in file f (size bytes valid). Returns the record length, or
 * 0 if it is torn or corrupt. */
static size_t record_decode(const uint8_t *p, uint64_t off, uint64_t size, head_chunk_info_t *out)
{
    if (off + 8 + 8 + 8 + 1 + 1 > size)
        return 0;
    const uint8_t *r = p + off;
    uint64_t len = 0;
    size_t pos = 25, shift = 0;
    for (;; shift += 7) {
        if (off + pos >= size || shift > 28)
            return 0;
        uint8_t b = r[pos++];
        len |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    if (len == 0 || len > 64 * 1024 || off + pos + len + 4 > size)
        return 0;
    if (crc32c(r, pos + len) != get_be32(r + pos + len))
        return 0;
    out->series_ref = get_be64(r);
    out->min_t = (int64_t)get_be64(r + 8);
    out->max_t = (int64_t)get_be64(r + 16);
    out->encoding = r[24];
    out->data = r + pos;
    out->length = (size_t)len;
    return pos + (size_t)len + 4;
}

head_chunks_t *head_chunks_open(const char *dir, head_chunk_visit_fn visit, void *ctx,
                                cairn_error_t *err)
{
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        cairn_error_set(err, -errno, "create %s: %s", dir, cairn_strerror(-errno));
        return NULL;
    }
    head_chunks_t *hc = cairn_calloc(1, sizeof(*hc));
    hc->dir = cairn_strdup(dir);
    pthread_mutex_init(&hc->lock, NULL);
    pthread_cond_init(&hc->flushed, NULL);

    /* Existing files, in order: map them and hand every valid chunk to visit. */
    DIR *d = opendir(dir);
    uint32_t last = 0;
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            char *end;
            unsigned long n = strtoul(e->d_name, &end, 10);
            if (*end || end == e->d_name || n == 0 || n >= HEAD_CHUNKS_MAX_FILES)
                continue;
            char *path = file_path(hc, (uint32_t)n);
            int fd = open(path, O_RDWR | O_CLOEXEC);
            struct stat st;
            chunk_file_t *f = NULL;
            if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size <= HEAD_CHUNKS_FILE_SIZE)
                f = file_map(fd, err, path);
            else if (fd >= 0)
                close(fd);
            if (f) {
                f->flushed = f->size = (uint64_t)st.st_size;
                hc->files[n] = f;
                if (!hc->first || n < hc->first)
                    hc->first = (uint32_t)n;
                if (n > last)
                    last = (uint32_t)n;
            } else {
                LOG_WARN("Skipping unreadable head chunk file", "file=%s", log_quote(path));
            }
            cairn_free(path);
        }
        closedir(d);
    }
    /* Scanned with pread into a buffer, not through the mapping: reading every page of the
     * mapping would make the whole directory resident in this process. */
    uint8_t *scan = cairn_malloc(HEAD_CHUNKS_SCAN_BUFFER);
    for (uint32_t n = hc->first; n && n <= last; n++) {
        chunk_file_t *f = hc->files[n];
        if (!f)
            continue;
        uint64_t off = HEAD_CHUNKS_HEADER;
        uint8_t header[HEAD_CHUNKS_HEADER];
        if (f->size < HEAD_CHUNKS_HEADER ||
            pread(f->fd, header, sizeof(header), 0) != (ssize_t)sizeof(header) ||
            get_be32(header) != HEAD_CHUNKS_MAGIC) {
            LOG_WARN("Head chunk file has a bad header; ignoring it", "file=%06u", n);
            f->flushed = f->size = 0;
            continue;
        }
        uint64_t window = 0, window_len = 0; /* file offset and length of scan[] */
        while (off < f->size) {
            /* Keep at least one maximal record in the buffer from off on. */
            if (off + CHUNK_RECORD_MAX > window + window_len && window + window_len < f->size) {
                window = off;
                uint64_t want = f->size - off < HEAD_CHUNKS_SCAN_BUFFER ? f->size - off
                                                                        : HEAD_CHUNKS_SCAN_BUFFER;
                ssize_t got = pread(f->fd, scan, (size_t)want, (off_t)off);
                window_len = got > 0 ? (uint64_t)got : 0;
            }
            head_chunk_info_t info;
            size_t len = off >= window ? record_decode(scan, off - window, window_len, &info) : 0;
            if (!len) {
                LOG_WARN("Head chunk file is torn or corrupt; truncating it, the WAL replays "
                         "what follows",
                         "file=%06u offset=%llu size=%llu", n, (unsigned long long)off,
                         (unsigned long long)f->size);
                if (ftruncate(f->fd, (off_t)off) == 0)
                    f->flushed = f->size = off;
                break;
            }
            info.chunk_ref = (uint64_t)n << 32 | off;
            info.data = NULL; /* points into the scan buffer: not for keeping */
            if (info.max_t > f->max_t)
                f->max_t = info.max_t;
            if (visit)
                visit(ctx, &info);
            off += len;
        }
    }
    cairn_free(scan);
    if (file_create(hc, last + 1, err) < 0) {
        head_chunks_close(hc);
        return NULL;
    }
    return hc;
}

/* Writes len bytes at offset of file n. Returns 0 or a negative errno (logged). */
static int write_at(chunk_file_t *f, uint32_t n, const char *data, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(f->fd, data + done, len - done, (off_t)(offset + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int rc = w < 0 ? -errno : -EIO;
            LOG_ERROR("Writing head chunks failed", "file=%06u err=%s", n,
                      log_quote(cairn_strerror(rc)));
            return rc;
        }
        done += (size_t)w;
    }
    return 0;
}

/* Writes the pending buffer, after the flush in progress if any. Called with the mutex held. */
static int flush_locked(head_chunks_t *hc)
{
    while (hc->flushing)
        pthread_cond_wait(&hc->flushed, &hc->lock);
    if (hc->error)
        return hc->error;
    chunk_file_t *f = hc->files[hc->current];
    int rc = write_at(f, hc->current, hc->pending.data, hc->pending.len, hc->pending_offset);
    if (rc < 0) {
        hc->error = rc;
        return rc;
    }
    hc->pending_offset += hc->pending.len;
    f->flushed = hc->pending_offset;
    buf_reset(&hc->pending);
    return 0;
}

int head_chunks_append(head_chunks_t *hc, tsdb_ref_t series_ref, int64_t min_t, int64_t max_t,
                       const uint8_t *data, size_t len, uint64_t *chunk_ref)
{
    /* The record's header and CRC need no lock. */
    uint8_t head[8 + 8 + 8 + 1 + 10];
    put_be64(head, series_ref);
    put_be64(head + 8, (uint64_t)min_t);
    put_be64(head + 16, (uint64_t)max_t);
    head[24] = 1; /* XOR */
    size_t hl = 25;
    for (uint64_t v = len;; v >>= 7) {
        head[hl++] = (uint8_t)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0);
        if (v < 0x80)
            break;
    }
    uint8_t tail[4];
    put_be32(tail, crc32c_update(crc32c(head, hl), data, len));

    pthread_mutex_lock(&hc->lock);
    int rc = hc->error;
    chunk_file_t *f = hc->files[hc->current];
    if (rc == 0 && f->size + len + CHUNK_RECORD_OVERHEAD > HEAD_CHUNKS_FILE_SIZE) {
        cairn_error_t err;
        rc = flush_locked(hc);
        if (rc == 0 && fdatasync(f->fd) < 0)
            rc = -errno;
        if (rc == 0)
            rc = file_create(hc, hc->current + 1, &err);
        if (rc < 0) {
            hc->error = rc;
            LOG_ERROR("Cutting a head chunk file failed", "err=%s", log_quote(cairn_strerror(rc)));
        }
        f = hc->files[hc->current];
    }
    if (rc == 0) {
        *chunk_ref = (uint64_t)hc->current << 32 | f->size;
        buf_append(&hc->pending, head, hl);
        buf_append(&hc->pending, data, len);
        buf_append(&hc->pending, tail, 4);
        f->size += hl + len + 4;
        if (max_t > f->max_t)
            f->max_t = max_t;
        if (hc->pending.len >= HEAD_CHUNKS_BUFFER)
            rc = flush_locked(hc);
    }
    pthread_mutex_unlock(&hc->lock);
    return rc;
}

int head_chunks_flush(head_chunks_t *hc)
{
    pthread_mutex_lock(&hc->lock);
    /* A flush in progress writes what is pending when it is done. */
    while (hc->error == 0 && !hc->flushing && hc->pending.len) {
        buf_t spare = hc->writing;
        hc->writing = hc->pending;
        hc->writing_offset = hc->pending_offset;
        hc->pending = spare;
        hc->pending_offset += hc->writing.len;
        hc->flushing = true;
        uint32_t n = hc->current; /* not cut meanwhile: a cut flushes after us */
        chunk_file_t *f = hc->files[n];
        pthread_mutex_unlock(&hc->lock);
        int rc = write_at(f, n, hc->writing.data, hc->writing.len, hc->writing_offset);
        pthread_mutex_lock(&hc->lock);
        hc->flushing = false;
        if (rc < 0 && hc->error == 0)
            hc->error = rc;
        if (rc == 0)
            f->flushed = hc->writing_offset + hc->writing.len;
        buf_reset(&hc->writing);
        pthread_cond_broadcast(&hc->flushed);
    }
    int rc = hc->error;
    pthread_mutex_unlock(&hc->lock);
    return rc;
}

int head_chunks_sync(head_chunks_t *hc)
{
    pthread_mutex_lock(&hc->lock);
    /* Always through flush_locked: it first waits for a flush in progress, whose chunks a
     * checkpoint relies on as much as on the pending ones. */
    int rc = flush_locked(hc);
    int fd = hc->files[hc->current]->fd;
    pthread_mutex_unlock(&hc->lock);
    /* Outside the mutex, so commits are not held up. Earlier files were synced when they were
     * cut; this one stays open (only truncation closes files, and not the current one). */
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    return rc;
}

int head_chunks_read(head_chunks_t *hc, uint64_t chunk_ref, const uint8_t **data, size_t *len,
                     buf_t *scratch)
{
    uint32_t n = (uint32_t)(chunk_ref >> 32);
    uint64_t off = chunk_ref & 0xffffffffu;
    head_chunk_info_t info;
    pthread_mutex_lock(&hc->lock);
    chunk_file_t *f = n < HEAD_CHUNKS_MAX_FILES ? hc->files[n] : NULL;
    int rc = -ENOENT;
    if (f && off < f->flushed) {
        uint64_t flushed = f->flushed;
        pthread_mutex_unlock(&hc->lock);
        /* The mapping stays valid: files are only unmapped under the head's guard. */
        if (!record_decode(f->map, off, flushed, &info))
            return -EINVAL;
        *data = info.data;
        *len = info.length;
        return 0;
    }
    /* Still in a buffer: the one being written, or the pending one. */
    const buf_t *b = NULL;
    uint64_t b_offset = 0;
    if (f && n == hc->current && hc->flushing && off >= hc->writing_offset &&
        off < hc->writing_offset + hc->writing.len) {
        b = &hc->writing;
        b_offset = hc->writing_offset;
    } else if (f && n == hc->current && off >= hc->pending_offset && off < f->size) {
        b = &hc->pending;
        b_offset = hc->pending_offset;
    }
    if (b) {
        size_t start = (size_t)(off - b_offset);
        if (record_decode((const uint8_t *)b->data, start, b->len, &info)) {
            buf_reset(scratch);
            buf_append(scratch, info.data, info.length);
            *data = (const uint8_t *)scratch->data;
            *len = info.length;
            rc = 0;
        } else {
            rc = -EINVAL;
        }
    }
    pthread_mutex_unlock(&hc->lock);
    return rc;
}

int head_chunks_truncate_before(head_chunks_t *hc, int64_t min_t)
{
    int removed = 0;
    pthread_mutex_lock(&hc->lock);
    for (uint32_t n = hc->first; n && n < hc->current; n++) {
        chunk_file_t *f = hc->files[n];
        if (!f)
            continue;
        if (f->max_t >= min_t)
            break; /* files are in time order closely enough: stop at the first live one */
        char *path = file_path(hc, n);
        unlink(path);
        cairn_free(path);
        file_close(f);
        hc->files[n] = NULL;
        hc->first = n + 1;
        removed++;
    }
    pthread_mutex_unlock(&hc->lock);
    return removed;
}

int head_chunks_close(head_chunks_t *hc)
{
    if (!hc)
        return 0;
    int rc = head_chunks_flush(hc);
    for (uint32_t n = 0; n < HEAD_CHUNKS_MAX_FILES; n++) {
        if (!hc->files[n])
            continue;
        if (n == hc->current && rc == 0 && fdatasync(hc->files[n]->fd) < 0)
            rc = -errno;
        file_close(hc->files[n]);
    }
    buf_free(&hc->pending);
    buf_free(&hc->writing);
    pthread_cond_destroy(&hc->flushed);
    pthread_mutex_destroy(&hc->lock);
    cairn_free(hc->dir);
    cairn_free(hc);
    return rc;
}
