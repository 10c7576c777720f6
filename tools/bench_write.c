/*
 * tools/bench_write.c: `cairn-tool bench write` and `cairn-tool bench labels`.
 *
 * bench write runs the workload of `promtool tsdb bench write` against Cairn's head:
 *   - label sets come from a JSON-lines file (one flat object per line, the format of
 *     Prometheus's 20kseries.json); the first --metrics of them are used;
 *   - series are split into shards of 1000; for each scrape, every shard appends one sample
 *     per series (value 123456789 at the start of each round of 100 scrapes, +1000 per scrape,
 *     timestamps 30 s apart) through
 *     one appender and commits, so a commit is a batch of up to 1000 samples;
 *   - scrapes run in rounds of 100; each round spreads the shards over --threads worker
 *     threads (started once) and waits for all of them at a barrier (as promtool waits for
 *     its goroutines), so timestamps across shards never drift more than a round apart.
 * It prints ingestion throughput, peak RSS, RSS per series and chunk/WAL bytes per sample,
 * then closes the database, reopens it in a new process and prints the WAL replay time and
 * that process's peak RSS.
 *
 * bench labels writes such a file with realistic node-exporter-like label sets.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/bench.h"
#include "tsdb/tsdb.h"

extern char **environ;

#ifdef CAIRN_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#define SHARD_SIZE         1000
#define ROUND_SCRAPES      100
#define SCRAPE_INTERVAL_MS 30000

/* ---- label sets ------------------------------------------------------------------------------ */

typedef struct label_set {
    tsdb_label_t *labels;
    size_t count;
} label_set_t;

/* Parses a JSON string starting at *p (at the opening quote) into a new string. */
static char *json_string(const char **p)
{
    const char *s = *p;
    if (*s != '"')
        return NULL;
    s++;
    buf_t out = BUF_INIT;
    while (*s && *s != '"') {
        if (*s == '\\') {
            s++;
            switch (*s) {
            case 'n': buf_append_char(&out, '\n'); break;
            case 't': buf_append_char(&out, '\t'); break;
            case 'r': buf_append_char(&out, '\r'); break;
            case 'u': {
                unsigned cp = 0;
                if (sscanf(s + 1, "%4x", &cp) != 1) {
                    buf_free(&out);
                    return NULL;
                }
                s += 4;
                if (cp < 0x80) {
                    buf_append_char(&out, (char)cp);
                } else if (cp < 0x800) {
                    buf_append_char(&out, (char)(0xc0 | cp >> 6));
                    buf_append_char(&out, (char)(0x80 | (cp & 0x3f)));
                } else {
                    buf_append_char(&out, (char)(0xe0 | cp >> 12));
                    buf_append_char(&out, (char)(0x80 | ((cp >> 6) & 0x3f)));
                    buf_append_char(&out, (char)(0x80 | (cp & 0x3f)));
                }
                break;
            }
            case '\0': buf_free(&out); return NULL;
            default: buf_append_char(&out, *s);
            }
            s++;
        } else {
            buf_append_char(&out, *s++);
        }
    }
    if (*s != '"') {
        buf_free(&out);
        return NULL;
    }
    *p = s + 1;
    return buf_detach(&out);
}

static void skip_space(const char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n')
        (*p)++;
}

/* Parses one line {"name":"value",...}. Returns 0 or -EINVAL. */
static int parse_label_line(const char *line, label_set_t *out)
{
    const char *p = line;
    skip_space(&p);
    if (*p++ != '{')
        return -EINVAL;
    out->labels = NULL;
    out->count = 0;
    for (;;) {
        skip_space(&p);
        if (*p == '}')
            return 0;
        char *name = json_string(&p);
        skip_space(&p);
        if (!name || *p++ != ':') {
            cairn_free(name);
            return -EINVAL;
        }
        skip_space(&p);
        char *value = json_string(&p);
        if (!value) {
            cairn_free(name);
            return -EINVAL;
        }
        out->labels = cairn_realloc(out->labels, (out->count + 1) * sizeof(tsdb_label_t));
        out->labels[out->count++] = (tsdb_label_t){name, value};
        skip_space(&p);
        if (*p == ',')
            p++;
        else if (*p != '}')
            return -EINVAL;
    }
}

static void label_sets_free(label_set_t *sets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < sets[i].count; j++) {
            cairn_free((char *)sets[i].labels[j].name);
            cairn_free((char *)sets[i].labels[j].value);
        }
        cairn_free(sets[i].labels);
    }
    cairn_free(sets);
}

static label_set_t *load_label_sets(const char *path, size_t want, size_t *got)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cairn-tool: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    label_set_t *sets = cairn_calloc(want, sizeof(*sets));
    char *line = NULL;
    size_t cap = 0, n = 0, lineno = 0;
    while (n < want && getline(&line, &cap, f) > 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (parse_label_line(line, &sets[n]) < 0) {
            fprintf(stderr, "cairn-tool: %s:%zu: not a flat JSON object of strings\n", path,
                    lineno);
            free(line);
            fclose(f);
            label_sets_free(sets, n + 1);
            return NULL;
        }
        n++;
    }
    free(line);
    fclose(f);
    *got = n;
    return sets;
}

/* ---- the benchmark ----------------------------------------------------------------------------
 */

typedef struct shard {
    const label_set_t *sets;
    size_t count;
    tsdb_ref_t *refs;
    int64_t value;
} shard_t;

typedef struct bench {
    tsdb_t *db;
    shard_t *shards;
    size_t shard_count;
    _Atomic size_t next_shard; /* work distribution within a round */
    int64_t round_base_t;
    int round_scrapes; /* 0: no more rounds */
    pthread_barrier_t round_start, round_end;
    _Atomic uint64_t samples, rejected;
    _Atomic int failed;
} bench_t;

static void shard_scrapes(bench_t *b, tsdb_appender_t *app, shard_t *sh)
{
    int64_t t = b->round_base_t;
    /* promtool builds its samples afresh for every round of 100 scrapes, so values restart
     * at 123456789 each round; the same here, so both encode identical data. */
    sh->value = 123456789;
    for (int i = 0; i < b->round_scrapes; i++) {
        t += SCRAPE_INTERVAL_MS;
        sh->value += 1000;
        for (size_t k = 0; k < sh->count; k++)
            tsdb_append(app, sh->refs[k], sh->refs[k] ? NULL : sh->sets[k].labels,
                        sh->sets[k].count, t, (double)sh->value, &sh->refs[k]);
        tsdb_commit_result_t res;
        if (tsdb_appender_commit(app, &res) < 0) {
            atomic_store(&b->failed, 1);
            return;
        }
        uint64_t rejected = 0;
        for (int r = 1; r < TSDB_REJECT_COUNT; r++)
            rejected += res.rejected[r];
        atomic_fetch_add(&b->samples, res.appended);
        atomic_fetch_add(&b->rejected, rejected);
    }
}

static void *bench_worker(void *arg)
{
    bench_t *b = arg;
    tsdb_appender_t *app = tsdb_appender_new(b->db);
    for (;;) {
        pthread_barrier_wait(&b->round_start);
        if (b->round_scrapes == 0)
            break;
        for (;;) {
            size_t i = atomic_fetch_add(&b->next_shard, 1);
            if (i >= b->shard_count)
                break;
            shard_scrapes(b, app, &b->shards[i]);
        }
        pthread_barrier_wait(&b->round_end);
    }
    tsdb_appender_free(app);
    return NULL;
}

/* The process's peak RSS (VmHWM: unlike getrusage's ru_maxrss, it does not carry over the
 * peak of the process image an exec replaced). */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    long kib = 0;
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static long current_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: cairn-tool bench write [--metrics=N] [--scrapes=N] [--threads=N] [--out=DIR]\n"
            "                              [--wal-sync=none|always] [--no-wal-compression]\n"
            "                              [--snapshot] FILE\n\n"
            "Runs promtool tsdb bench write's workload: FILE holds one JSON object of labels per\n"
            "line (see cairn-tool bench labels). Defaults: 10000 metrics, 3000 scrapes, one\n"
            "thread per core, out=benchout (emptied first). The restart replays the WAL, as\n"
            "after a crash; with --snapshot, the close writes a snapshot of the head and the\n"
            "restart reads it (a clean shutdown and restart).\n");
}

int bench_write_main(int argc, char **argv)
{
    size_t metrics = 10000;
    int scrapes = 3000;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = cores > 0 ? (unsigned)cores : 1;
    const char *out_dir = "benchout";
    bool sync_always = false, compress = true, snapshot = false;
    static const struct option options[] = {{"snapshot", no_argument, NULL, 'S'},
                                            {"metrics", required_argument, NULL, 'm'},
                                            {"scrapes", required_argument, NULL, 's'},
                                            {"threads", required_argument, NULL, 't'},
                                            {"out", required_argument, NULL, 'o'},
                                            {"wal-sync", required_argument, NULL, 'w'},
                                            {"no-wal-compression", no_argument, NULL, 'n'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, "h", options, NULL)) != -1;) {
        switch (c) {
        case 'm': metrics = strtoull(optarg, NULL, 10); break;
        case 's': scrapes = atoi(optarg); break;
        case 't': threads = (unsigned)atoi(optarg); break;
        case 'o': out_dir = optarg; break;
        case 'w': sync_always = strcmp(optarg, "always") == 0; break;
        case 'n': compress = false; break;
        case 'S': snapshot = true; break;
        case 'h': print_usage(stdout); return 0;
        default: print_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || metrics == 0 || scrapes <= 0 || threads == 0) {
        print_usage(stderr);
        return 2;
    }
    size_t loaded;
    label_set_t *sets = load_label_sets(argv[optind], metrics, &loaded);
    if (!sets)
        return 1;
    if (loaded < metrics) {
        fprintf(stderr, "cairn-tool: %s has only %zu label sets, using them all\n", argv[optind],
                loaded);
        metrics = loaded;
    }

    char *cmd = cairn_sprintf("rm -rf '%s'", out_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cairn-tool: could not empty %s\n", out_dir);
    cairn_free(cmd);

    tsdb_open_options_t opts;
    tsdb_open_options_init(&opts, out_dir);
    opts.wal_sync = sync_always ? TSDB_WAL_SYNC_ALWAYS : TSDB_WAL_SYNC_NONE;
    opts.wal_compress = compress;
    opts.snapshot_on_close = snapshot;
    /* Keep every sample in the head, as promtool's run keeps its data in the TSDB. */
    opts.head_window_ms = (int64_t)(scrapes + 1) * SCRAPE_INTERVAL_MS;
    cairn_error_t err = {{0}};
    long rss_before = current_rss_kib();
    tsdb_t *db = tsdb_open(&opts, &err);
    if (!db) {
        fprintf(stderr, "cairn-tool: %s\n", err.message);
        label_sets_free(sets, loaded);
        return 1;
    }

    bench_t b = {.db = db};
    b.shard_count = (metrics + SHARD_SIZE - 1) / SHARD_SIZE;
    b.shards = cairn_calloc(b.shard_count, sizeof(*b.shards));
    for (size_t i = 0; i < b.shard_count; i++) {
        shard_t *sh = &b.shards[i];
        sh->sets = sets + i * SHARD_SIZE;
        sh->count = i + 1 < b.shard_count ? SHARD_SIZE : metrics - i * SHARD_SIZE;
        sh->refs = cairn_calloc(sh->count, sizeof(tsdb_ref_t));
        sh->value = 123456789;
    }
    printf(">> ingesting %zu series x %d scrapes with %u threads, shards of %d series\n", metrics,
           scrapes, threads, SHARD_SIZE);
    fflush(stdout);

    /* The workers live for the whole run; a round starts and ends at a barrier. */
    pthread_t *tids = cairn_calloc(threads, sizeof(pthread_t));
    pthread_barrier_init(&b.round_start, NULL, threads + 1);
    pthread_barrier_init(&b.round_end, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++)
        pthread_create(&tids[t], NULL, bench_worker, &b);
    double start = time_monotonic_seconds(), cpu_start = cpu_seconds();
    for (int done = 0; done < scrapes && !atomic_load(&b.failed); done += ROUND_SCRAPES) {
        b.round_base_t = (int64_t)done * SCRAPE_INTERVAL_MS;
        b.round_scrapes = scrapes - done < ROUND_SCRAPES ? scrapes - done : ROUND_SCRAPES;
        atomic_store(&b.next_shard, 0);
        pthread_barrier_wait(&b.round_start);
        pthread_barrier_wait(&b.round_end);
    }
    b.round_scrapes = 0;
    pthread_barrier_wait(&b.round_start);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&b.round_start);
    pthread_barrier_destroy(&b.round_end);
    double elapsed = time_monotonic_seconds() - start, cpu = cpu_seconds() - cpu_start;
    uint64_t total = atomic_load(&b.samples);

    tsdb_stats_t st;
    tsdb_stats(db, &st);
    long peak = peak_rss_kib(), rss = current_rss_kib();
    printf("ingestion: %llu samples in %.3f s: %.0f samples/s, %.1f ns/sample (wall, %u "
           "threads)\n",
           (unsigned long long)total, elapsed, (double)total / elapsed,
           elapsed * 1e9 / (double)total, threads);
    printf("ingestion: %.3f CPU seconds, %.1f ns CPU per sample, %.0f%% of one core\n", cpu,
           cpu * 1e9 / (double)total, 100.0 * cpu / elapsed);
    if (atomic_load(&b.rejected) || atomic_load(&b.failed))
        printf("WARNING: %llu samples rejected%s\n", (unsigned long long)atomic_load(&b.rejected),
               atomic_load(&b.failed) ? ", a commit failed" : "");
    printf("memory: peak RSS %.1f MiB, RSS now %.1f MiB, RSS per series %.0f B (RSS after "
           "open %.1f MiB)\n",
           peak / 1024.0, rss / 1024.0, (double)(rss - rss_before) * 1024.0 / (double)metrics,
           rss_before / 1024.0);
#ifdef CAIRN_HAVE_JEMALLOC
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch), allocated = 0;
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    sz = sizeof(allocated);
    mallctl("stats.allocated", &allocated, &sz, NULL, 0);
    printf("memory: jemalloc allocated %.1f MiB, %.0f B per series\n", allocated / 1048576.0,
           (double)allocated / (double)metrics);
#endif
    printf("chunks: %llu sealed + %llu open, %.3f bytes per sample of chunk data\n",
           (unsigned long long)st.chunks_sealed, (unsigned long long)st.chunks_open,
           (double)tsdb_chunk_bytes(db) / (double)total);
    printf("wal: %.1f MiB, %.3f bytes per sample\n", st.wal_bytes / 1048576.0,
           (double)st.wal_bytes / (double)total);

    double close_start = time_monotonic_seconds();
    tsdb_close(db);
    double close_s = time_monotonic_seconds() - close_start;

    /* A restart is a new process: `cairn-tool bench reopen` in a fresh exec, so its figures
     * are not mixed with this process's memory. */
    fflush(stdout);
    char close_arg[64];
    snprintf(close_arg, sizeof(close_arg), "--close-seconds=%.3f", close_s);
    char out_arg[4200];
    snprintf(out_arg, sizeof(out_arg), "--out=%s", out_dir);
    /* posix_spawn, not fork: a forked child's peak RSS would start at this process's. */
    char *child_argv[] = {"cairn-tool", "bench",
                          "reopen",     out_arg,
                          close_arg,    compress ? "--wal-compression" : "--no-wal-compression",
                          NULL};
    pid_t child = -1;
    if (posix_spawn(&child, "/proc/self/exe", NULL, NULL, child_argv, environ) != 0)
        child = -1;
    int child_status = 1;
    if (child < 0 || waitpid(child, &child_status, 0) < 0 || !WIFEXITED(child_status) ||
        WEXITSTATUS(child_status) != 0) {
        fprintf(stderr, "cairn-tool: the reopening process failed\n");
        return 1;
    }

    for (size_t i = 0; i < b.shard_count; i++)
        cairn_free(b.shards[i].refs);
    cairn_free(b.shards);
    cairn_free(tids);
    label_sets_free(sets, loaded);
    return 0;
}

/* ---- bench reopen: the restart half of bench write, in its own process ----------------- */

int bench_reopen_main(int argc, char **argv)
{
    const char *out_dir = "benchout";
    double close_s = 0;
    bool compress = true;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--out=", 6) == 0)
            out_dir = argv[i] + 6;
        else if (strncmp(argv[i], "--close-seconds=", 16) == 0)
            close_s = atof(argv[i] + 16);
        else if (strcmp(argv[i], "--no-wal-compression") == 0)
            compress = false;
    }
    tsdb_open_options_t opts;
    tsdb_open_options_init(&opts, out_dir);
    opts.wal_compress = compress;
    opts.head_window_ms = INT64_MAX / 4; /* keep what bench write kept */
    opts.snapshot_on_close = false;      /* leave the directory as it was, to reopen again */
    cairn_error_t err = {{0}};
    double open_start = time_monotonic_seconds();
    tsdb_t *db = tsdb_open(&opts, &err);
    double open_s = time_monotonic_seconds() - open_start;
    if (!db) {
        fprintf(stderr, "cairn-tool: reopen: %s\n", err.message);
        return 1;
    }
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    printf("restart: close %.3f s, open %.3f s, total %.3f s; WAL replay %.3f s: %llu "
           "samples, %.0f samples/s (%llu appended, the rest already in sealed chunks); %llu "
           "series\n",
           close_s, open_s, close_s + open_s, st.replay_seconds,
           (unsigned long long)st.replayed_samples,
           st.replay_seconds > 0 ? (double)st.replayed_samples / st.replay_seconds : 0.0,
           (unsigned long long)st.replay_applied, (unsigned long long)st.series);
    printf("restart: peak RSS of the reopened process %.1f MiB\n", peak_rss_kib() / 1024.0);
    tsdb_close(db);
    return 0;
}

/* ---- bench labels ------------------------------------------------------------------------------
 */

int bench_labels_main(int argc, char **argv)
{
    size_t series = 20000;
    const char *out = NULL;
    static const struct option options[] = {{"series", required_argument, NULL, 's'},
                                            {"out", required_argument, NULL, 'o'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, "h", options, NULL)) != -1;) {
        switch (c) {
        case 's': series = strtoull(optarg, NULL, 10); break;
        case 'o': out = optarg; break;
        case 'h':
            printf("usage: cairn-tool bench labels [--series=N] --out=FILE\n\nWrites N label "
                   "sets, one JSON object per line, shaped like node_exporter series.\n");
            return 0;
        default: return 2;
        }
    }
    if (!out || !series) {
        fprintf(stderr, "usage: cairn-tool bench labels [--series=N] --out=FILE\n");
        return 2;
    }
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "cairn-tool: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    static const char *const names[] = {
        "node_cpu_seconds_total",
        "node_memory_MemFree_bytes",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_disk_read_bytes_total",
        "node_disk_written_bytes_total",
        "node_filesystem_avail_bytes",
        "node_load1",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "go_goroutines",
        "process_resident_memory_bytes",
    };
    static const char *const modes[] = {"idle", "user",    "system", "iowait",
                                        "irq",  "softirq", "steal",  "nice"};
    static const char *const les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                      "0.5",   "1",    "2.5",   "5",    "10",  "+Inf"};
    /* Per instance: 8 modes x 4 cpus + 10 misc + 2 x 4 devices + 12 buckets x 5 handlers... a
     * fixed recipe of 100 series, then the next instance. */
    size_t written = 0;
    for (size_t inst = 0; written < series; inst++) {
        char instance[64];
        snprintf(instance, sizeof(instance), "host-%zu.example.com:9100", inst);
        for (size_t k = 0; k < 100 && written < series; k++, written++) {
            const char *name;
            char extra[160] = "";
            if (k < 32) {
                name = names[0];
                snprintf(extra, sizeof(extra), ",\"cpu\":\"%zu\",\"mode\":\"%s\"", k / 8,
                         modes[k % 8]);
            } else if (k < 40) {
                name = names[2 + (k % 2)];
                snprintf(extra, sizeof(extra), ",\"device\":\"eth%zu\"", (k - 32) / 2);
            } else if (k < 48) {
                name = names[4 + (k % 2)];
                snprintf(extra, sizeof(extra), ",\"device\":\"nvme0n%zu\"", (k - 40) / 2);
            } else if (k < 52) {
                name = names[6];
                snprintf(extra, sizeof(extra),
                         ",\"device\":\"/dev/sda%zu\",\"fstype\":\"ext4\",\"mountpoint\":\"/"
                         "mnt/d%zu\"",
                         k - 48, k - 48);
            } else if (k < 88) {
                name = names[9];
                snprintf(extra, sizeof(extra), ",\"handler\":\"/api/v%zu\",\"le\":\"%s\"",
                         (k - 52) / 12, les[(k - 52) % 12]);
            } else {
                name = names[(k % 4) == 0 ? 1 : (k % 4) == 1 ? 7 : (k % 4) == 2 ? 10 : 11];
                snprintf(extra, sizeof(extra), ",\"shard\":\"%zu\"", k - 88);
            }
            fprintf(f, "{\"__name__\":\"%s\",\"instance\":\"%s\",\"job\":\"node\"%s}\n", name,
                    instance, extra);
        }
    }
    fclose(f);
    printf("wrote %zu label sets to %s\n", written, out);
    return 0;
}
