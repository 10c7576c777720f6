/*
 * tools/bench_wal.c: throughput of the write-ahead log (tsdb/wal.c).
 *
 * Write cases: for each sync mode (none, always), record size R and writer count T, T threads
 * call wal_log with one record of R bytes each, as fast as they can, for a fixed time, into a
 * fresh WAL directory. Printed per case: records/s, payload MB/s, on-disk MB/s (after snappy
 * and framing), write(2) calls per wal_log call (below 1 means group commit works), wal_log
 * calls per write, fsyncs, and wal_log latency (mean).
 *
 * Read case: for each R, a WAL of -m MiB of records is written by one thread, then read back
 * with a wal_reader (page cache warm, so this measures parsing, CRC and snappy): records/s,
 * decoded MB/s and on-disk MB/s.
 *
 * Records look like Prometheus WAL records: one in four is a series record (refs and label
 * strings), the rest sample records (ref deltas, timestamp deltas, float64 values of slowly
 * moving counters), so snappy compresses them about as much as real ones.
 *
 *   tools/bench_wal [-d DIR] [-t SECONDS] [-T 1,2,8,64] [-R 1024,16384] [-s none|always|both]
 *                   [-m MIB] [-C]
 *
 * -d: where to create the temporary WAL directories (default $TMPDIR or /tmp; removed after);
 * -C: disable compression.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "tsdb/wal.h"

#define MAX_LIST       16
#define CORPUS_RECORDS 32

typedef struct bench_options {
    const char *base;         /* parent of the temporary directories */
    double seconds;           /* per write case */
    size_t threads[MAX_LIST]; /* writer counts */
    size_t thread_count;
    size_t sizes[MAX_LIST]; /* record sizes */
    size_t size_count;
    bool sync_none, sync_always;
    size_t read_mib; /* data written for the read case */
    bool compress;
} bench_options_t;

/* --- record corpus ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static size_t put_uvarint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Fills a record of exactly len bytes shaped like a Prometheus series or samples record. */
static void make_record(uint8_t *out, size_t len, uint64_t seed)
{
    static const char *const names[] = {"http_requests_total",
                                        "node_cpu_seconds_total",
                                        "go_gc_duration_seconds",
                                        "process_resident_memory_bytes",
                                        "up",
                                        "scrape_duration_seconds"};
    static const char *const jobs[] = {"api", "node", "prometheus", "mysql", "redis"};
    uint64_t x = mix64(seed);
    size_t n = 0;
    if (seed % 4 == 0) {
        out[n++] = 1; /* series */
        while (n + 200 < len) {
            x = mix64(x);
            n += put_uvarint(out + n, 100000 + (x & 0xfffff));
            char labels[256];
            int l = snprintf(labels, sizeof(labels),
                             "\x08__name__%c%s\x08instance\x10"
                             "10.%u.%u.%u:9100\x03job%c%s"
                             "\x04mode\x04idle",
                             (char)strlen(names[x % 6]), names[x % 6], (unsigned)(x >> 8) & 255,
                             (unsigned)(x >> 16) & 255, (unsigned)(x >> 24) & 255,
                             (char)strlen(jobs[(x >> 32) % 5]), jobs[(x >> 32) % 5]);
            memcpy(out + n, labels, (size_t)l);
            n += (size_t)l;
        }
    } else {
        out[n++] = 2; /* samples */
        uint64_t ref = x & 0xffff, ts = 1700000000000ull + (x & 0xffffff);
        double value = (double)(x & 0xfffff);
        memcpy(out + n, &ref, 8);
        memcpy(out + n + 8, &ts, 8);
        n += 16;
        while (n + 24 < len) {
            x = mix64(x);
            n += put_uvarint(out + n, 1 + (x & 3));
            n += put_uvarint(out + n, (x >> 8) & 15);
            value += (double)((x >> 16) & 7);
            memcpy(out + n, &value, 8);
            n += 8;
        }
    }
    while (n < len)
        out[n++] = 0;
}

/* --- helpers ------------------------------------------------------------------------------ */

static double now(void)
{
    return time_monotonic_seconds();
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_tmpdir(const char *base)
{
    char *path = cairn_sprintf("%s/bench_wal.XXXXXX", base);
    if (!mkdtemp(path)) {
        fprintf(stderr, "bench_wal: mkdtemp %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return path;
}

static void remove_tree(char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    cairn_free(path);
}

static double metric_value(metric_registry_t *reg, const char *name)
{
    buf_t out = BUF_INIT;
    metric_registry_render(reg, &out);
    char *needle = cairn_sprintf("\n%s ", name);
    const char *p = strstr(out.data, needle);
    double v = p ? strtod(p + strlen(needle), NULL) : 0;
    cairn_free(needle);
    buf_free(&out);
    return v;
}

static size_t parse_list(const char *s, size_t *out)
{
    size_t n = 0;
    char *copy = cairn_strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < MAX_LIST;
         tok = strtok_r(NULL, ",", &save))
        out[n++] = strtoull(tok, NULL, 10);
    cairn_free(copy);
    return n;
}

/* --- write cases -------------------------------------------------------------------------- */

typedef struct writer {
    pthread_t thread;
    wal_t *wal;
    size_t size;
    unsigned id;
    atomic_bool *go;
    atomic_bool *stop;
    uint64_t records; /* wal_log calls completed */
    double busy;      /* seconds inside wal_log */
    int error;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *wr = arg;
    uint8_t *corpus = cairn_malloc(CORPUS_RECORDS * wr->size);
    for (size_t i = 0; i < CORPUS_RECORDS; i++)
        make_record(corpus + i * wr->size, wr->size, (uint64_t)wr->id * 1000 + i);
    while (!atomic_load_explicit(wr->go, memory_order_acquire))
        sched_yield();
    size_t i = 0;
    while (!atomic_load_explicit(wr->stop, memory_order_relaxed)) {
        const uint8_t *rec = corpus + (i++ % CORPUS_RECORDS) * wr->size;
        size_t len = wr->size;
        double t0 = now();
        int rc = wal_log(wr->wal, &rec, &len, 1, NULL);
        wr->busy += now() - t0;
        if (rc != 0) {
            wr->error = rc;
            break;
        }
        wr->records++;
    }
    cairn_free(corpus);
    return NULL;
}

static int run_write_case(const bench_options_t *o, wal_sync_t sync, size_t size, size_t threads)
{
    char *dir = make_tmpdir(o->base);
    metric_registry_t *reg = metric_registry_new();
    wal_options_t wo = {.dir = dir, .sync = sync, .compress = o->compress, .registry = reg};
    cairn_error_t err = {{0}};
    wal_t *w = wal_open(&wo, &err);
    if (!w) {
        fprintf(stderr, "bench_wal: %s\n", err.message);
        return 1;
    }
    atomic_bool go, stop;
    atomic_init(&go, false);
    atomic_init(&stop, false);
    writer_t *ws = cairn_calloc(threads, sizeof(*ws));
    for (size_t t = 0; t < threads; t++) {
        ws[t] = (writer_t){.wal = w, .size = size, .id = (unsigned)t, .go = &go, .stop = &stop};
        pthread_create(&ws[t].thread, NULL, writer_main, &ws[t]);
    }
    double t0 = now();
    atomic_store_explicit(&go, true, memory_order_release);
    struct timespec ts = {(time_t)o->seconds,
                          (long)((o->seconds - (double)(time_t)o->seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    uint64_t records = 0;
    double busy = 0;
    int error = 0;
    for (size_t t = 0; t < threads; t++) {
        pthread_join(ws[t].thread, NULL);
        records += ws[t].records;
        busy += ws[t].busy;
        if (ws[t].error)
            error = ws[t].error;
    }
    double elapsed = now() - t0;
    double writes = metric_value(reg, "cairn_wal_writes_total");
    double commits = metric_value(reg, "cairn_wal_commits_total");
    double fsyncs = metric_value(reg, "cairn_wal_fsyncs_total");
    double disk = metric_value(reg, "cairn_wal_bytes_written_total");
    int rc = wal_close(w);
    if (error || rc) {
        fprintf(stderr, "bench_wal: wal_log: %s\n", cairn_strerror(error ? error : rc));
        return 1;
    }
    printf("%-6s %6zu %7zu %12.0f %9.1f %9.1f %10.3f %9.1f %8.0f %9.1f\n",
           sync == WAL_SYNC_ALWAYS ? "always" : "none", size, threads, (double)records / elapsed,
           (double)records * (double)size / elapsed / 1e6, disk / elapsed / 1e6,
           commits > 0 ? writes / commits : 0, writes > 0 ? commits / writes : 0, fsyncs,
           records ? busy / (double)records * 1e6 : 0);
    fflush(stdout);
    cairn_free(ws);
    metric_registry_free(reg);
    remove_tree(dir);
    return 0;
}

/* --- read case ---------------------------------------------------------------------------- */

static int run_read_case(const bench_options_t *o, size_t size)
{
    char *dir = make_tmpdir(o->base);
    metric_registry_t *reg = metric_registry_new();
    wal_options_t wo = {.dir = dir, .compress = o->compress, .registry = reg};
    cairn_error_t err = {{0}};
    wal_t *w = wal_open(&wo, &err);
    if (!w) {
        fprintf(stderr, "bench_wal: %s\n", err.message);
        return 1;
    }
    uint8_t *corpus = cairn_malloc(CORPUS_RECORDS * size);
    for (size_t i = 0; i < CORPUS_RECORDS; i++)
        make_record(corpus + i * size, size, i);
    size_t count = (o->read_mib << 20) / size;
    /* Batches of 16 records, like a head commit. */
    for (size_t i = 0; i < count; i += 16) {
        const uint8_t *recs[16];
        size_t lens[16];
        size_t k = count - i < 16 ? count - i : 16;
        for (size_t j = 0; j < k; j++) {
            recs[j] = corpus + ((i + j) % CORPUS_RECORDS) * size;
            lens[j] = size;
        }
        if (wal_log(w, recs, lens, k, NULL) != 0) {
            fprintf(stderr, "bench_wal: wal_log failed\n");
            return 1;
        }
    }
    double disk = metric_value(reg, "cairn_wal_bytes_written_total");
    wal_close(w);

    wal_reader_options_t ro = {.dir = dir, .last_segment = UINT32_MAX};
    double t0 = now();
    wal_reader_t *r = wal_reader_open(&ro, &err);
    const uint8_t *rec;
    size_t len;
    uint64_t records = 0, bytes = 0;
    int rc;
    while ((rc = wal_reader_next(r, &rec, &len, &err)) == 1) {
        records++;
        bytes += len;
    }
    double elapsed = now() - t0;
    wal_reader_free(r);
    if (rc != 0 || records != count) {
        fprintf(stderr, "bench_wal: read %" PRIu64 " of %zu records: %s\n", records, count,
                err.message);
        return 1;
    }
    printf("read   %6zu %12.0f %9.1f %9.1f %9.1f\n", size, (double)records / elapsed,
           (double)bytes / elapsed / 1e6, disk / elapsed / 1e6, disk / (double)bytes);
    cairn_free(corpus);
    metric_registry_free(reg);
    remove_tree(dir);
    return 0;
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    bench_options_t o = {.base = tmp && *tmp ? tmp : "/tmp",
                         .seconds = 1.0,
                         .thread_count = 4,
                         .threads = {1, 2, 8, 64},
                         .size_count = 2,
                         .sizes = {1024, 16384},
                         .sync_none = true,
                         .sync_always = true,
                         .read_mib = 256,
                         .compress = true};
    int opt;
    while ((opt = getopt(argc, argv, "d:t:T:R:s:m:Ch")) != -1) {
        switch (opt) {
        case 'd': o.base = optarg; break;
        case 't': o.seconds = strtod(optarg, NULL); break;
        case 'T': o.thread_count = parse_list(optarg, o.threads); break;
        case 'R': o.size_count = parse_list(optarg, o.sizes); break;
        case 's':
            o.sync_none = strcmp(optarg, "none") == 0 || strcmp(optarg, "both") == 0;
            o.sync_always = strcmp(optarg, "always") == 0 || strcmp(optarg, "both") == 0;
            break;
        case 'm': o.read_mib = strtoull(optarg, NULL, 10); break;
        case 'C': o.compress = false; break;
        default:
            fprintf(stderr,
                    "usage: %s [-d DIR] [-t SECONDS] [-T 1,2,8,64] [-R 1024,16384] "
                    "[-s none|always|both] [-m MIB] [-C]\n",
                    argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    for (size_t i = 0; i < o.size_count; i++)
        if (o.sizes[i] < 1 || o.sizes[i] > (64u << 20)) {
            fprintf(stderr, "bench_wal: record size %zu out of range\n", o.sizes[i]);
            return 2;
        }
    log_set_level(LOG_LEVEL_WARN);

    printf("# bench_wal: %.1f s per case, compression %s, directory %s\n", o.seconds,
           o.compress ? "snappy" : "off", o.base);
    printf("%-6s %6s %7s %12s %9s %9s %10s %9s %8s %9s\n", "sync", "size", "threads", "records/s",
           "MB/s", "disk MB/s", "writes/log", "logs/wr", "fsyncs", "lat us");
    for (int mode = 0; mode < 2; mode++) {
        if ((mode == 0 && !o.sync_none) || (mode == 1 && !o.sync_always))
            continue;
        for (size_t s = 0; s < o.size_count; s++)
            for (size_t t = 0; t < o.thread_count; t++)
                if (run_write_case(&o, mode ? WAL_SYNC_ALWAYS : WAL_SYNC_NONE, o.sizes[s],
                                   o.threads[t]) != 0)
                    return 1;
    }
    if (o.read_mib > 0) {
        printf("%-6s %6s %12s %9s %9s %9s\n", "read", "size", "records/s", "MB/s", "disk MB/s",
               "disk/raw");
        for (size_t s = 0; s < o.size_count; s++)
            if (run_read_case(&o, o.sizes[s]) != 0)
                return 1;
    }
    return 0;
}
