/*
 * tests/integration/tsdb_crash_writer.c: the writer and the verifier of the storage engine's
 * crash-durability test (tests/integration/test_tsdb_crash.py).
 *
 *   tsdb_crash_writer write DIR ACKFILE SEED
 *     Opens DIR (replaying its WAL; default options, so WAL sync is NONE) and appends forever
 *     from WRITER_THREADS threads, each with its own appender, in batches of 51 to 501 samples:
 *       - 50 to 500 samples over the thread's own SERIES_PER_THREAD series
 *           {__name__="crash_test", thread="T", series="S"}
 *         covering the series first..first+count-1 at ticks tick..tick+n-1 (timestamp
 *         BASE_T + tick * STEP_MS); each thread's ticks only grow;
 *       - first in the batch, one sample of a series all threads write concurrently
 *           {__name__="crash_test_shared", series="K"}
 *         at a tick taken from a counter shared by the threads. A concurrent commit may have
 *         moved that series past it, so this one sample may be rejected as out of order; the
 *         commit result says whether it was stored.
 *     The value of a sample is a pure function of (thread, series, tick) and includes special
 *     bit patterns (NaNs with payloads, the stale marker, -0.0, +-Inf, subnormals, integral
 *     values beyond int64). Only after tsdb_appender_commit returned 0 the thread appends one
 *     line to ACKFILE, with one write(2) on an O_APPEND descriptor:
 *       thread first count tick n shared_series shared_tick shared_stored checksum
 *     A restarted writer continues above the highest tick in ACKFILE and in the database
 *     (a batch may be committed but not yet recorded when the process dies), so later rounds
 *     keep appending to the same series. It prints READY on stdout once the threads run.
 *     After each batch a thread pauses for a random 0 to 2 * CAIRN_CRASH_PAUSE_US microseconds
 *     (default 2000; 0 = no pause), which bounds the data the later rounds replay and verify.
 *     Any other rejection, a failed commit or a failed ACKFILE write ends it with exit status 3.
 *     CAIRN_CRASH_WAL_SEGMENT sets the WAL segment size (bytes); with CAIRN_CRASH_CHECKPOINT_MS
 *     a thread calls tsdb_truncate at the current floor that often, which checkpoints the WAL
 *     and deletes old segments whenever enough have piled up (so kills land in checkpoints).
 *
 *   tsdb_crash_writer verify DIR ACKFILE
 *     Opens DIR (which replays the WAL), prints the replay statistics, and checks every
 *     acknowledged sample of ACKFILE (all own-series samples of a line, and its shared sample
 *     when it was stored): present, with the exact value bits. Samples the database has
 *     beyond ACKFILE (committed, not yet recorded) must carry the right value too; shared
 *     samples the commit rejected but the database has after the restart are counted (the
 *     head then differs from what the commits reported) but do not fail the check.
 *     A trailing partial line of ACKFILE is ignored. Exits 0 when everything acknowledged is
 *     there, 1 otherwise (also when the database does not open or close cleanly).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsdb/tsdb.h"

#define METRIC_NAME       "crash_test"
#define SHARED_NAME       "crash_test_shared"
#define SHARED_SERIES     2
#define SHARED_THREAD     1000 /* the "thread" of the shared series' values */
#define WRITER_THREADS    4
#define SERIES_PER_THREAD 250
#define BATCH_MIN_SERIES  50
#define BATCH_MAX_SERIES  250
#define BATCH_MAX_TICKS   2
#define BASE_T            1700000000000LL /* 2023-11-14T22:13:20Z */
#define STEP_MS           1
#define HEAD_WINDOW_MS    (3 * 3600 * 1000LL) /* the default of tsdb_open_options_init */
#define MAX_REPORTED      10
#define DEFAULT_PAUSE_US  2000 /* override with CAIRN_CRASH_PAUSE_US */

/* ---- deterministic values ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static const uint64_t special_values[] = {
    0x7ff0000000000002ULL, /* Prometheus's stale marker (a signalling NaN) */
    0x7ff8000000000001ULL, /* Prometheus's NormalNaN */
    0x7ff8000000000000ULL, /* the canonical quiet NaN */
    0xfff8000123456789ULL, /* a negative quiet NaN with a payload */
    0x7ff4000000000abcULL, /* a signalling NaN with a payload */
    0x7fffffffffffffffULL, /* the all-ones NaN */
    0x8000000000000000ULL, /* -0.0 */
    0x0000000000000000ULL, /* +0.0 */
    0x7ff0000000000000ULL, /* +Inf */
    0xfff0000000000000ULL, /* -Inf */
    0x0000000000000001ULL, /* the smallest subnormal */
    0x800fffffffffffffULL, /* the largest negative subnormal */
    0x7fefffffffffffffULL, /* DBL_MAX */
    0x43e0000000000000ULL, /* 2^63: integral, not an int64 */
    0xc3e0000000000000ULL, /* -2^63 */
    0x4340000000000001ULL, /* 2^54 + 4: integral, beyond 2^53 */
    0x3ff0000000000000ULL, /* 1.0 */
};
#define SPECIAL_COUNT (sizeof(special_values) / sizeof(special_values[0]))

static int64_t tick_time(uint64_t tick)
{
    return BASE_T + (int64_t)tick * STEP_MS;
}

/* The value bits of the sample of (thread, series) at tick. */
static uint64_t value_bits(unsigned thread, unsigned series, uint64_t tick)
{
    uint64_t h = mix64(mix64(((uint64_t)thread << 32) | series) ^ tick);
    double v;
    uint64_t bits;
    if ((h >> 58) == 0 || series % 5 == 4) /* 1 in 64 samples, and every fifth series */
        return special_values[(h >> 8) % SPECIAL_COUNT];
    switch (series % 5) {
    case 0: /* a counter: integral, growing */ v = (double)(tick + series * 1000u); break;
    case 1: /* a gauge with fractions, exact in binary */
        v = (double)((int64_t)(h % 2000001) - 1000000) / 8.0;
        break;
    case 2: /* long runs of one value */ v = (double)((tick >> 6) % 5); break;
    default: /* any finite bit pattern */
        bits = h;
        if (((bits >> 52) & 0x7ff) == 0x7ff)
            bits ^= 1ULL << 62;
        return bits;
    }
    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

static double bits_value(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static uint64_t value_of_double(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

/* ---- the acknowledgement log ---------------------------------------------------------------- */

typedef struct batch {
    uint64_t tick;
    uint32_t first, count, n;
    uint32_t shared_series; /* the shared sample: series, tick, and whether it was stored */
    uint64_t shared_tick;
    uint32_t shared_ok;
    size_t line;      /* 1-based line number in ACKFILE */
    uint32_t missing; /* samples of it found missing by verify */
} batch_t;

typedef struct ack_log {
    batch_t *batches[WRITER_THREADS];
    size_t count[WRITER_THREADS], cap[WRITER_THREADS];
    size_t lines;           /* complete lines */
    size_t bad_lines;       /* complete lines that do not parse or fail the checksum */
    size_t partial_bytes;   /* bytes after the last newline */
    bool non_monotonic;     /* a thread's ticks went backwards: a bug of the test */
    uint64_t next_tick;     /* above every tick in the log, own and shared */
    uint64_t samples;       /* acknowledged samples */
    bool ends_with_newline; /* or is empty */
} ack_log_t;

static uint32_t line_checksum(unsigned thread, const batch_t *b)
{
    uint64_t h = mix64(thread);
    h = mix64(h ^ b->first);
    h = mix64(h ^ b->count);
    h = mix64(h ^ b->tick);
    h = mix64(h ^ b->n);
    h = mix64(h ^ b->shared_series);
    h = mix64(h ^ b->shared_tick);
    h = mix64(h ^ b->shared_ok);
    return (uint32_t)h;
}

static int format_line(char *out, size_t size, unsigned thread, const batch_t *b)
{
    return snprintf(out, size,
                    "%u %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRIu32 " %" PRIu32 " %" PRIu64
                    " %" PRIu32 " %08" PRIx32 "\n",
                    thread, b->first, b->count, b->tick, b->n, b->shared_series, b->shared_tick,
                    b->shared_ok, line_checksum(thread, b));
}

/* Parses one line (without its newline); true if it is exactly what format_line writes. */
static bool parse_line(const char *line, size_t len, unsigned *thread, batch_t *b)
{
    unsigned th;
    uint32_t chk;
    char tmp[160];
    if (len == 0 || len >= sizeof(tmp) - 1)
        return false;
    memcpy(tmp, line, len);
    tmp[len] = '\0';
    memset(b, 0, sizeof(*b));
    if (sscanf(tmp,
               "%u %" SCNu32 " %" SCNu32 " %" SCNu64 " %" SCNu32 " %" SCNu32 " %" SCNu64 " %" SCNu32
               " %" SCNx32,
               &th, &b->first, &b->count, &b->tick, &b->n, &b->shared_series, &b->shared_tick,
               &b->shared_ok, &chk) != 9)
        return false;
    char again[160];
    int alen = format_line(again, sizeof(again), th, b);
    if (alen != (int)len + 1 || memcmp(again, line, len) != 0)
        return false;
    if (th >= WRITER_THREADS || b->count == 0 || b->n == 0 || b->first >= SERIES_PER_THREAD ||
        b->count > SERIES_PER_THREAD - b->first || b->n > BATCH_MAX_TICKS ||
        b->shared_series >= SHARED_SERIES || b->shared_ok > 1)
        return false;
    *thread = th;
    return true;
}

static int ack_log_read(const char *path, ack_log_t *log)
{
    memset(log, 0, sizeof(*log));
    log->ends_with_newline = true;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint64_t last_end[WRITER_THREADS] = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n') {
            log->partial_bytes = (size_t)len;
            log->ends_with_newline = false;
            break;
        }
        log->lines++;
        unsigned th;
        batch_t b;
        if (!parse_line(line, (size_t)len - 1, &th, &b)) {
            log->bad_lines++;
            continue;
        }
        b.line = log->lines;
        if (b.tick < last_end[th])
            log->non_monotonic = true;
        last_end[th] = b.tick + b.n;
        if (b.tick + b.n > log->next_tick)
            log->next_tick = b.tick + b.n;
        if (b.shared_tick + 1 > log->next_tick)
            log->next_tick = b.shared_tick + 1;
        log->samples += (uint64_t)b.count * b.n + b.shared_ok;
        if (log->count[th] == log->cap[th]) {
            log->cap[th] = log->cap[th] ? 2 * log->cap[th] : 1024;
            log->batches[th] = realloc(log->batches[th], log->cap[th] * sizeof(batch_t));
            if (!log->batches[th]) {
                fprintf(stderr, "out of memory\n");
                exit(2);
            }
        }
        log->batches[th][log->count[th]++] = b;
    }
    bool failed = ferror(f) != 0;
    free(line);
    fclose(f);
    if (failed) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    return 0;
}

static void ack_log_free(ack_log_t *log)
{
    for (unsigned i = 0; i < WRITER_THREADS; i++)
        free(log->batches[i]);
}

/* ---- shared helpers ------------------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long env_ulong(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 10) : dflt;
}

static tsdb_t *open_db(const char *dir, double *seconds)
{
    tsdb_open_options_t opts;
    tsdb_open_options_init(&opts, dir);
    opts.wal_segment_size = env_ulong("CAIRN_CRASH_WAL_SEGMENT", 0);
    cairn_error_t err = {{0}};
    double start = now_seconds();
    tsdb_t *db = tsdb_open(&opts, &err);
    *seconds = now_seconds() - start;
    if (!db)
        fprintf(stderr, "tsdb_open(%s) failed: %s\n", dir, err.message);
    return db;
}

static void print_stats(const char *who, tsdb_t *db, double open_seconds)
{
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    printf("%s: opened in %.3f s: replay %.3f s, replayed_samples=%" PRIu64 " series=%" PRIu64
           " head_samples=%" PRIu64 " chunks_open=%" PRIu64 " chunks_sealed=%" PRIu64
           " wal_bytes=%" PRIu64 " min_time=%" PRId64 " max_time=%" PRId64 "\n",
           who, open_seconds, st.replay_seconds, st.replayed_samples, st.series, st.samples,
           st.chunks_open, st.chunks_sealed, st.wal_bytes, st.min_time, st.max_time);
    fflush(stdout);
}

static tsdb_matcher_t *equal_matcher(const char *name, const char *value)
{
    cairn_error_t err = {{0}};
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, name, value, &err);
    if (!m) {
        fprintf(stderr, "tsdb_matcher_new(%s=\"%s\") failed: %s\n", name, value, err.message);
        exit(2);
    }
    return m;
}

/* ---- write ---------------------------------------------------------------------------------- */

typedef struct writer {
    tsdb_t *db;
    int ack_fd;
    unsigned id;
    uint64_t tick; /* next tick */
    uint64_t rng;
    unsigned pause_us; /* mean pause after a batch */
    pthread_t thread;
} writer_t;

static void die(const char *fmt, ...) CAIRN_PRINTF(1, 2);

static void die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "writer: FATAL: %s\n", msg);
    fflush(stderr);
    _exit(3);
}

static uint64_t rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    uint64_t x = *state;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The next tick of the shared series, taken by all threads. */
static _Atomic uint64_t shared_next_tick;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    tsdb_appender_t *app = tsdb_appender_new(w->db);
    tsdb_ref_t refs[SERIES_PER_THREAD], shared_refs[SHARED_SERIES] = {0};
    char series_values[SERIES_PER_THREAD][16];
    char thread_value[16];
    snprintf(thread_value, sizeof(thread_value), "%u", w->id);
    for (unsigned s = 0; s < SERIES_PER_THREAD; s++) {
        refs[s] = 0;
        snprintf(series_values[s], sizeof(series_values[s]), "%u", s);
    }
    for (;;) {
        batch_t b = {0};
        b.count = BATCH_MIN_SERIES +
                  (uint32_t)(rng_next(&w->rng) % (BATCH_MAX_SERIES - BATCH_MIN_SERIES + 1));
        b.first = (uint32_t)(rng_next(&w->rng) % (SERIES_PER_THREAD - b.count + 1));
        b.n = 1 + (uint32_t)(rng_next(&w->rng) % BATCH_MAX_TICKS);
        b.tick = w->tick;
        b.shared_series = (uint32_t)(rng_next(&w->rng) % SHARED_SERIES);

        /* First the shared sample: it may lose the race against another thread's newer one. */
        b.shared_tick = atomic_fetch_add(&shared_next_tick, 1);
        tsdb_label_t shared_labels[2] = {{"series", series_values[b.shared_series]},
                                         {"__name__", SHARED_NAME}};
        double sv = bits_value(value_bits(SHARED_THREAD, b.shared_series, b.shared_tick));
        tsdb_reject_t r = tsdb_append(app, shared_refs[b.shared_series], shared_labels, 2,
                                      tick_time(b.shared_tick), sv, &shared_refs[b.shared_series]);
        if (r != TSDB_REJECT_NONE && r != TSDB_REJECT_OUT_OF_ORDER)
            die("thread %u: append of shared series %u tick %" PRIu64 " rejected: %s", w->id,
                b.shared_series, b.shared_tick, tsdb_reject_message(r));

        for (uint32_t j = 0; j < b.n; j++) {
            uint64_t tick = b.tick + j;
            for (uint32_t s = b.first; s < b.first + b.count; s++) {
                /* Deliberately not sorted by name: the head sorts. */
                tsdb_label_t labels[3] = {{"series", series_values[s]},
                                          {"__name__", METRIC_NAME},
                                          {"thread", thread_value}};
                double v = bits_value(value_bits(w->id, s, tick));
                r = tsdb_append(app, refs[s], labels, 3, tick_time(tick), v, &refs[s]);
                if (r != TSDB_REJECT_NONE)
                    die("thread %u: append of series %u tick %" PRIu64 " rejected: %s", w->id, s,
                        tick, tsdb_reject_message(r));
            }
        }
        tsdb_commit_result_t res;
        int rc = tsdb_appender_commit(app, &res);
        if (rc != 0)
            die("thread %u: commit failed: %s", w->id, cairn_strerror(rc));
        uint64_t own = (uint64_t)b.count * b.n, rejected = 0;
        for (int i = 0; i < TSDB_REJECT_COUNT; i++)
            rejected += res.rejected[i];
        if (res.appended == own + 1 && rejected == 0)
            b.shared_ok = 1;
        else if (res.appended == own && rejected == 1 &&
                 res.rejected[TSDB_REJECT_OUT_OF_ORDER] == 1 && res.first_rejected == 0)
            b.shared_ok = 0;
        else
            die("thread %u: commit stored %" PRIu64 " of %" PRIu64 " samples, rejected %" PRIu64
                "; first rejection at %zu: %s",
                w->id, res.appended, own + 1, rejected, res.first_rejected,
                tsdb_reject_message(res.first_reason));
        /* Acknowledged: record it, in one write. */
        char line[160];
        int len = format_line(line, sizeof(line), w->id, &b);
        ssize_t wr = write(w->ack_fd, line, (size_t)len);
        if (wr != len)
            die("thread %u: write to the ack file returned %zd: %s", w->id, wr,
                wr < 0 ? strerror(errno) : "short write");
        w->tick += b.n;
        if (w->pause_us) {
            /* A pause of 0 to 2 * pause_us keeps the data (and so replay and verify times)
             * bounded while commits stay frequent and concurrent. */
            long us = (long)(rng_next(&w->rng) % (2 * (uint64_t)w->pause_us + 1));
            struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* The newest timestamp of the test's series (own and shared) at or after from, or
 * INT64_MIN. */
static int64_t db_max_time(tsdb_t *db, int64_t from)
{
    static const char *const names[] = {METRIC_NAME, SHARED_NAME};
    int64_t max = INT64_MIN, t;
    double v;
    tsdb_querier_t *q = tsdb_querier_new(db, from, INT64_MAX);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        tsdb_matcher_t *m = equal_matcher("__name__", names[i]);
        const tsdb_matcher_t *ms[1] = {m};
        tsdb_series_set_t *set = tsdb_querier_select(q, ms, 1);
        while (tsdb_series_set_next(set))
            while (tsdb_series_set_sample(set, &t, &v))
                if (t > max)
                    max = t;
        tsdb_series_set_free(set);
        tsdb_matcher_free(m);
    }
    tsdb_querier_free(q);
    return max;
}

/* Calls tsdb_truncate every CAIRN_CRASH_CHECKPOINT_MS milliseconds at the current floor: it
 * drops nothing, and writes a WAL checkpoint when enough segments have piled up. */
static void *checkpointer_main(void *arg)
{
    tsdb_t *db = arg;
    unsigned long ms = env_ulong("CAIRN_CRASH_CHECKPOINT_MS", 0);
    for (;;) {
        usleep((useconds_t)(ms * 1000));
        if (tsdb_truncate(db, INT64_MIN) < 0)
            die("tsdb_truncate failed");
    }
    return NULL;
}

static int cmd_write(const char *dir, const char *ack_path, const char *seed_text)
{
    char *end;
    errno = 0;
    uint64_t seed = strtoull(seed_text, &end, 0);
    if (errno || *end || end == seed_text) {
        fprintf(stderr, "bad seed %s\n", seed_text);
        return 2;
    }
    ack_log_t log;
    if (ack_log_read(ack_path, &log) < 0)
        return 2;
    int fd = open(ack_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "cannot open %s: %s\n", ack_path, strerror(errno));
        return 2;
    }
    if (!log.ends_with_newline && write(fd, "\n", 1) != 1) {
        /* Terminate a torn last line so ours start on a line of their own. */
        fprintf(stderr, "cannot write to %s: %s\n", ack_path, strerror(errno));
        return 2;
    }

    double open_seconds;
    tsdb_t *db = open_db(dir, &open_seconds);
    if (!db)
        return 2;
    print_stats("writer", db, open_seconds);

    /* Continue above everything acknowledged and everything the database holds (the last
     * batches of a killed writer may be committed without being recorded). */
    uint64_t start = log.next_tick;
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    int64_t max_t = db_max_time(db, tick_time(start));
    if (st.max_time > max_t)
        max_t = st.max_time;
    if (max_t >= BASE_T && (uint64_t)((max_t - BASE_T) / STEP_MS) + 1 > start)
        start = (uint64_t)((max_t - BASE_T) / STEP_MS) + 1;
    fprintf(stderr,
            "writer: seed=%" PRIu64 " ack_lines=%zu ack_samples=%" PRIu64 " ack_next_tick=%" PRIu64
            " db_max_time=%" PRId64 " start_tick=%" PRIu64 "\n",
            seed, log.lines, log.samples, log.next_tick, max_t, start);
    ack_log_free(&log);

    unsigned pause_us = DEFAULT_PAUSE_US;
    const char *pause_env = getenv("CAIRN_CRASH_PAUSE_US");
    if (pause_env && *pause_env)
        pause_us = (unsigned)strtoul(pause_env, NULL, 10);

    atomic_store(&shared_next_tick, start);
    static writer_t writers[WRITER_THREADS];
    for (unsigned i = 0; i < WRITER_THREADS; i++) {
        writers[i] = (writer_t){.db = db,
                                .ack_fd = fd,
                                .id = i,
                                .tick = start,
                                .pause_us = pause_us,
                                .rng = mix64(seed ^ mix64(i + 1) ^ mix64(start))};
        if (pthread_create(&writers[i].thread, NULL, writer_main, &writers[i]) != 0)
            die("cannot start a writer thread");
    }
    pthread_t checkpointer;
    unsigned long checkpoint_ms = env_ulong("CAIRN_CRASH_CHECKPOINT_MS", 0);
    if (checkpoint_ms && pthread_create(&checkpointer, NULL, checkpointer_main, (void *)db) != 0)
        die("cannot start the checkpointer thread");
    printf("READY\n");
    fflush(stdout);
    for (unsigned i = 0; i < WRITER_THREADS; i++)
        pthread_join(writers[i].thread, NULL);
    return 3; /* not reached: the writers run until killed */
}

/* ---- verify --------------------------------------------------------------------------------- */

typedef struct verify_state {
    uint64_t checked, missing, wrong, extra, unordered, off_grid, too_old;
    uint64_t shared_checked, rejected_present;
    unsigned reported;
} verify_state_t;

/* How reports name a series. */
static const char *series_name(char *buf, size_t size, unsigned th, unsigned s)
{
    if (th == SHARED_THREAD)
        snprintf(buf, size, SHARED_NAME "{series=\"%u\"}", s);
    else
        snprintf(buf, size, METRIC_NAME "{thread=\"%u\",series=\"%u\"}", th, s);
    return buf;
}

static void report(verify_state_t *vs, const char *fmt, ...) CAIRN_PRINTF(2, 3);

static void report(verify_state_t *vs, const char *fmt, ...)
{
    if (vs->reported++ >= MAX_REPORTED)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("verify: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* Reads the next sample of the series (or returns false); checks timestamp order and grid. */
static bool next_actual(tsdb_series_set_t *set, verify_state_t *vs, unsigned th, unsigned s,
                        int64_t *prev_t, uint64_t *tick, uint64_t *bits)
{
    int64_t t;
    double v;
    for (;;) {
        if (!set || !tsdb_series_set_sample(set, &t, &v))
            return false;
        char name[96];
        if (t <= *prev_t) {
            vs->unordered++;
            report(vs, "%s: sample t=%" PRId64 " after t=%" PRId64 " (not increasing)",
                   series_name(name, sizeof(name), th, s), t, *prev_t);
            continue;
        }
        *prev_t = t;
        if (t < BASE_T || (t - BASE_T) % STEP_MS != 0) {
            vs->off_grid++;
            report(vs, "%s: sample at t=%" PRId64 " is not one the writer uses",
                   series_name(name, sizeof(name), th, s), t);
            continue;
        }
        *tick = (uint64_t)((t - BASE_T) / STEP_MS);
        *bits = value_of_double(v);
        return true;
    }
}

static void check_value(verify_state_t *vs, unsigned th, unsigned s, uint64_t tick, uint64_t got,
                        const char *what, size_t line)
{
    uint64_t want = value_bits(th, s, tick);
    if (got == want)
        return;
    vs->wrong++;
    char name[96];
    report(vs,
           "WRONG %s sample %s tick=%" PRIu64 " t=%" PRId64
           " (ack line %zu): value bits 0x%016" PRIx64 ", expected 0x%016" PRIx64,
           what, series_name(name, sizeof(name), th, s), tick, tick_time(tick), line, got, want);
}

static bool labels_ok(tsdb_series_set_t *set, unsigned th, unsigned s)
{
    const tsdb_label_t *labels;
    size_t n = tsdb_series_set_labels(set, &labels);
    char tv[16], sv[16];
    snprintf(tv, sizeof(tv), "%u", th);
    snprintf(sv, sizeof(sv), "%u", s);
    return n == 3 && strcmp(labels[0].name, "__name__") == 0 &&
           strcmp(labels[0].value, METRIC_NAME) == 0 && strcmp(labels[1].name, "series") == 0 &&
           strcmp(labels[1].value, sv) == 0 && strcmp(labels[2].name, "thread") == 0 &&
           strcmp(labels[2].value, tv) == 0;
}

static int verify_series(tsdb_querier_t *q, ack_log_t *log, unsigned th, unsigned s,
                         int64_t oldest_kept, verify_state_t *vs)
{
    char tv[16], sv[16];
    snprintf(tv, sizeof(tv), "%u", th);
    snprintf(sv, sizeof(sv), "%u", s);
    tsdb_matcher_t *ms[3] = {equal_matcher("__name__", METRIC_NAME), equal_matcher("thread", tv),
                             equal_matcher("series", sv)};
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)ms, 3);
    int rc = 0;
    size_t found = tsdb_series_set_count(set);
    char name[96];
    series_name(name, sizeof(name), th, s);
    if (found > 1) {
        report(vs, "%s: %zu series match", name, found);
        rc = -1;
    }
    tsdb_series_set_t *cur = NULL;
    if (tsdb_series_set_next(set)) {
        cur = set;
        if (!labels_ok(set, th, s)) {
            report(vs, "%s: the selected series has other labels", name);
            rc = -1;
        }
    }

    int64_t prev_t = INT64_MIN;
    uint64_t a_tick = 0, a_bits = 0;
    bool have = next_actual(cur, vs, th, s, &prev_t, &a_tick, &a_bits);
    batch_t *bs = log->batches[th];
    for (size_t i = 0; i < log->count[th]; i++) {
        batch_t *b = &bs[i];
        if (s < b->first || s >= b->first + b->count)
            continue;
        for (uint32_t j = 0; j < b->n; j++) {
            uint64_t want = b->tick + j;
            if (tick_time(want) < oldest_kept) {
                vs->too_old++;
                continue;
            }
            /* Samples before the wanted one are unacknowledged extras. */
            while (have && a_tick < want) {
                vs->extra++;
                check_value(vs, th, s, a_tick, a_bits, "unacknowledged", 0);
                have = next_actual(cur, vs, th, s, &prev_t, &a_tick, &a_bits);
            }
            vs->checked++;
            if (have && a_tick == want) {
                check_value(vs, th, s, want, a_bits, "acknowledged", b->line);
                have = next_actual(cur, vs, th, s, &prev_t, &a_tick, &a_bits);
            } else {
                vs->missing++;
                b->missing++;
                report(vs,
                       "MISSING acknowledged sample %s tick=%" PRIu64 " t=%" PRId64
                       " (ack line %zu: first=%u count=%u tick=%" PRIu64 " n=%u)%s",
                       name, want, tick_time(want), b->line, b->first, b->count, b->tick, b->n,
                       cur ? "" : " (series not found)");
            }
        }
    }
    while (have) {
        vs->extra++;
        check_value(vs, th, s, a_tick, a_bits, "unacknowledged", 0);
        have = next_actual(cur, vs, th, s, &prev_t, &a_tick, &a_bits);
    }
    tsdb_series_set_free(set);
    for (unsigned i = 0; i < 3; i++)
        tsdb_matcher_free(ms[i]);
    return rc;
}

typedef struct shared_entry {
    uint64_t tick;
    batch_t *batch;
} shared_entry_t;

static int compare_shared(const void *a, const void *b)
{
    uint64_t x = ((const shared_entry_t *)a)->tick, y = ((const shared_entry_t *)b)->tick;
    return x < y ? -1 : x > y;
}

/* Checks shared series k: every sample a commit stored is there; samples a commit rejected
 * are counted when present. */
static int verify_shared_series(tsdb_querier_t *q, ack_log_t *log, unsigned k, int64_t oldest_kept,
                                verify_state_t *vs)
{
    size_t n = 0, cap = 0;
    shared_entry_t *entries = NULL;
    for (unsigned th = 0; th < WRITER_THREADS; th++)
        for (size_t i = 0; i < log->count[th]; i++) {
            batch_t *b = &log->batches[th][i];
            if (b->shared_series != k)
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                entries = realloc(entries, cap * sizeof(*entries));
                if (!entries) {
                    fprintf(stderr, "out of memory\n");
                    exit(2);
                }
            }
            entries[n++] = (shared_entry_t){b->shared_tick, b};
        }
    if (n)
        qsort(entries, n, sizeof(*entries), compare_shared);

    char sv[16], name[96];
    snprintf(sv, sizeof(sv), "%u", k);
    series_name(name, sizeof(name), SHARED_THREAD, k);
    tsdb_matcher_t *ms[2] = {equal_matcher("__name__", SHARED_NAME), equal_matcher("series", sv)};
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)ms, 2);
    int rc = 0;
    size_t found = tsdb_series_set_count(set);
    if (found > 1) {
        report(vs, "%s: %zu series match", name, found);
        rc = -1;
    }
    tsdb_series_set_t *cur = NULL;
    if (tsdb_series_set_next(set)) {
        cur = set;
        const tsdb_label_t *labels;
        size_t nl = tsdb_series_set_labels(set, &labels);
        if (nl != 2 || strcmp(labels[0].name, "__name__") != 0 ||
            strcmp(labels[0].value, SHARED_NAME) != 0 || strcmp(labels[1].name, "series") != 0 ||
            strcmp(labels[1].value, sv) != 0) {
            report(vs, "%s: the selected series has other labels", name);
            rc = -1;
        }
    }

    int64_t prev_t = INT64_MIN;
    uint64_t a_tick = 0, a_bits = 0;
    bool have = next_actual(cur, vs, SHARED_THREAD, k, &prev_t, &a_tick, &a_bits);
    size_t i = 0;
    while (i < n || have) {
        if (have && (i == n || a_tick < entries[i].tick)) {
            /* Committed by a batch that was never recorded. */
            vs->extra++;
            check_value(vs, SHARED_THREAD, k, a_tick, a_bits, "unacknowledged", 0);
            have = next_actual(cur, vs, SHARED_THREAD, k, &prev_t, &a_tick, &a_bits);
            continue;
        }
        batch_t *b = entries[i].batch;
        bool present = have && a_tick == entries[i].tick;
        if (b->shared_ok && tick_time(entries[i].tick) < oldest_kept) {
            vs->too_old++;
        } else if (b->shared_ok) {
            vs->checked++;
            vs->shared_checked++;
            if (present) {
                check_value(vs, SHARED_THREAD, k, a_tick, a_bits, "acknowledged", b->line);
            } else {
                vs->missing++;
                b->missing++;
                report(vs,
                       "MISSING acknowledged sample %s tick=%" PRIu64 " t=%" PRId64
                       " (ack line %zu: its commit stored it)%s",
                       name, entries[i].tick, tick_time(entries[i].tick), b->line,
                       cur ? "" : " (series not found)");
            }
        } else if (present) {
            vs->rejected_present++;
            check_value(vs, SHARED_THREAD, k, a_tick, a_bits, "rejected", b->line);
        }
        if (present)
            have = next_actual(cur, vs, SHARED_THREAD, k, &prev_t, &a_tick, &a_bits);
        i++;
    }
    tsdb_series_set_free(set);
    for (unsigned j = 0; j < 2; j++)
        tsdb_matcher_free(ms[j]);
    free(entries);
    return rc;
}

/* Lists the acknowledged batches with missing samples, in ACKFILE order. */
static void report_missing_batches(const ack_log_t *log)
{
    size_t pos[WRITER_THREADS] = {0}, shown = 0, affected = 0;
    for (;;) {
        /* The next batch in line order over all threads. */
        const batch_t *next = NULL;
        unsigned next_th = 0;
        for (unsigned th = 0; th < WRITER_THREADS; th++) {
            while (pos[th] < log->count[th] && log->batches[th][pos[th]].missing == 0)
                pos[th]++;
            if (pos[th] < log->count[th] &&
                (!next || log->batches[th][pos[th]].line < next->line)) {
                next = &log->batches[th][pos[th]];
                next_th = th;
            }
        }
        if (!next)
            break;
        affected++;
        if (shown++ < MAX_REPORTED)
            printf("verify: ack line %zu (thread=%u series %u..%u ticks %" PRIu64 "..%" PRIu64
                   ", shared series %u tick %" PRIu64 " %s): %u of %u samples missing\n",
                   next->line, next_th, next->first, next->first + next->count - 1, next->tick,
                   next->tick + next->n - 1, next->shared_series, next->shared_tick,
                   next->shared_ok ? "stored" : "rejected", next->missing,
                   next->count * next->n + next->shared_ok);
        pos[next_th]++;
    }
    printf("verify: %zu acknowledged batches have missing samples\n", affected);
}

static int cmd_verify(const char *dir, const char *ack_path)
{
    ack_log_t log;
    if (ack_log_read(ack_path, &log) < 0)
        return 1;
    printf("verify: ack file: %zu complete lines, %zu malformed, %zu bytes of a partial last "
           "line, %" PRIu64 " acknowledged samples, next tick %" PRIu64 "\n",
           log.lines, log.bad_lines, log.partial_bytes, log.samples, log.next_tick);
    int failed = 0;
    if (log.bad_lines) {
        /* Each line is one write(2) after its commit: a malformed complete line means the
         * harness is broken, not the engine. Reported, and those batches are unknown. */
        printf("verify: WARNING: %zu malformed lines in the ack file were ignored\n",
               log.bad_lines);
    }
    if (log.non_monotonic) {
        printf("verify: FAIL: a thread's ticks go backwards in the ack file (test bug)\n");
        failed = 1;
    }

    double open_seconds;
    tsdb_t *db = open_db(dir, &open_seconds);
    if (!db) {
        printf("verify: FAIL: reopening the database failed\n");
        ack_log_free(&log);
        return 1;
    }
    print_stats("verify", db, open_seconds);
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    /* The head keeps HEAD_WINDOW_MS (without blocks older data is dropped); the test's time
     * span stays far below it, but do not count what the engine may drop by design. */
    int64_t oldest_kept = st.max_time == INT64_MIN ? INT64_MIN : st.max_time - HEAD_WINDOW_MS;

    double start = now_seconds();
    verify_state_t vs = {0};
    tsdb_querier_t *q = tsdb_querier_new(db, BASE_T, INT64_MAX);
    for (unsigned th = 0; th < WRITER_THREADS; th++)
        for (unsigned s = 0; s < SERIES_PER_THREAD; s++)
            if (verify_series(q, &log, th, s, oldest_kept, &vs) < 0)
                failed = 1;
    for (unsigned k = 0; k < SHARED_SERIES; k++)
        if (verify_shared_series(q, &log, k, oldest_kept, &vs) < 0)
            failed = 1;

    /* No other series of the test's metrics may exist. */
    static const struct {
        const char *name;
        size_t max;
    } metrics[] = {{METRIC_NAME, WRITER_THREADS * SERIES_PER_THREAD}, {SHARED_NAME, SHARED_SERIES}};
    size_t all = 0;
    for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
        tsdb_matcher_t *m = equal_matcher("__name__", metrics[i].name);
        const tsdb_matcher_t *ms[1] = {m};
        tsdb_series_set_t *set = tsdb_querier_select(q, ms, 1);
        size_t count = tsdb_series_set_count(set);
        if (count > metrics[i].max) {
            printf("verify: FAIL: %zu series of %s, at most %zu expected\n", count, metrics[i].name,
                   metrics[i].max);
            failed = 1;
        }
        all += count;
        tsdb_series_set_free(set);
        tsdb_matcher_free(m);
    }
    tsdb_querier_free(q);

    if (vs.reported > MAX_REPORTED)
        printf("verify: ... %u more problems not shown\n", vs.reported - MAX_REPORTED);
    if (vs.missing)
        report_missing_batches(&log);
    printf("verify: checked %" PRIu64 " acknowledged samples (%" PRIu64
           " of them on shared series) in %.3f s: missing %" PRIu64 ", wrong %" PRIu64
           ", unacknowledged extra %" PRIu64 ", rejected but present %" PRIu64
           ", not increasing %" PRIu64 ", off grid %" PRIu64 ", beyond the head window %" PRIu64
           "; %zu series\n",
           vs.checked, vs.shared_checked, now_seconds() - start, vs.missing, vs.wrong, vs.extra,
           vs.rejected_present, vs.unordered, vs.off_grid, vs.too_old, all);
    if (vs.missing || vs.wrong || vs.unordered || vs.off_grid)
        failed = 1;

    int rc = tsdb_close(db);
    if (rc != 0) {
        printf("verify: FAIL: tsdb_close returned %s\n", cairn_strerror(rc));
        failed = 1;
    }
    ack_log_free(&log);
    printf("verify: %s\n", failed ? "FAILED" : "OK");
    return failed;
}

static void usage(void)
{
    fprintf(stderr, "usage: tsdb_crash_writer write DIR ACKFILE SEED\n"
                    "       tsdb_crash_writer verify DIR ACKFILE\n");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[1], "write") == 0)
        return cmd_write(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "verify") == 0)
        return cmd_verify(argv[2], argv[3]);
    usage();
    return 2;
}
