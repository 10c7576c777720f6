/*
 * tools/bench_chunk_pool.c: microbenchmark of tsdb/chunk_pool.c against plain calloc/free.
 *
 * Each of T threads (1, 2 and 4 by default) keeps a working set of K live buffers and, per
 * iteration, returns a random one and takes a new buffer of a random size in its place, then
 * writes its first and last bytes (as an appender would). Sizes: 90% spread over the five
 * classes (1 .. 1024 B), 10% at 200 B. The same loop runs over the pool and over calloc/free
 * (jemalloc when the build links it, else libc); both hand out zeroed memory. Printed per
 * configuration: ns per get+put pair (mean over threads of thread time / iterations) and total
 * million pairs per second, best of 3 runs; for the pool also its hit ratio over that run.
 *
 * Usage: bench_chunk_pool [-n iterations_per_thread] [-k working_set] [-t max_threads]
 * Sanitizer builds bypass the pool, so their figures say nothing about it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "tsdb/chunk_pool.h"

enum { RUNS = 3 };

typedef enum bench_mode {
    MODE_POOL,
    MODE_MALLOC,
} bench_mode_t;

typedef struct bench_shared {
    bench_mode_t mode;
    chunk_pool_t *pool;
    long iterations;
    int working_set;
    pthread_barrier_t start;
} bench_shared_t;

typedef struct bench_thread {
    bench_shared_t *shared;
    unsigned seed;
    double seconds; /* out: time of the measured loop */
} bench_thread_t;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t random_size(uint64_t r)
{
    if (r % 10 == 0)
        return 200;
    /* uniform class, then uniform size within it */
    size_t cls = (r >> 8) % CHUNK_POOL_CLASSES;
    size_t hi = (size_t)CHUNK_POOL_MIN_SIZE << cls, lo = cls ? hi / 2 + 1 : 1;
    return lo + (r >> 16) % (hi - lo + 1);
}

static inline void *bench_get(bench_shared_t *sh, size_t size)
{
    if (sh->mode == MODE_POOL)
        return chunk_pool_get(sh->pool, size);
    return calloc(1, size);
}

static inline void bench_put(bench_shared_t *sh, void *buf, size_t size)
{
    if (sh->mode == MODE_POOL)
        chunk_pool_put(sh->pool, buf, size);
    else
        free(buf);
}

static void *bench_worker(void *arg)
{
    bench_thread_t *self = arg;
    bench_shared_t *sh = self->shared;
    int k = sh->working_set;
    void **bufs = calloc((size_t)k, sizeof(*bufs));
    size_t *sizes = calloc((size_t)k, sizeof(*sizes));
    if (!bufs || !sizes)
        abort();
    uint64_t rng = 0x9E3779B97F4A7C15ull * (self->seed + 1);
    for (int i = 0; i < k; i++) {
        sizes[i] = random_size(xorshift(&rng));
        bufs[i] = bench_get(sh, sizes[i]);
    }
    pthread_barrier_wait(&sh->start);

    double t0 = time_monotonic_seconds();
    for (long it = 0; it < sh->iterations; it++) {
        uint64_t r = xorshift(&rng);
        int slot = (int)((r >> 40) % (uint64_t)k);
        bench_put(sh, bufs[slot], sizes[slot]);
        size_t size = random_size(r);
        unsigned char *b = bench_get(sh, size);
        b[0] = (unsigned char)it;
        b[size - 1] = (unsigned char)it;
        bufs[slot] = b;
        sizes[slot] = size;
    }
    self->seconds = time_monotonic_seconds() - t0;

    for (int i = 0; i < k; i++)
        bench_put(sh, bufs[i], sizes[i]);
    free(bufs);
    free(sizes);
    return NULL;
}

typedef struct bench_result {
    double ns_per_pair;  /* mean over threads */
    double mpairs_per_s; /* all threads together */
    double hit_ratio;    /* pool only: hits / gets in this run */
} bench_result_t;

static bench_result_t bench_run(bench_mode_t mode, int threads, long iterations, int working_set)
{
    bench_shared_t sh = {.mode = mode, .iterations = iterations, .working_set = working_set};
    metric_registry_t *reg = NULL;
    if (mode == MODE_POOL) {
        reg = metric_registry_new();
        sh.pool = chunk_pool_new(reg);
    }
    pthread_barrier_init(&sh.start, NULL, (unsigned)threads + 1);
    pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
    bench_thread_t *args = calloc((size_t)threads, sizeof(*args));
    if (!tids || !args)
        abort();
    for (int i = 0; i < threads; i++) {
        args[i] = (bench_thread_t){.shared = &sh, .seed = (unsigned)i};
        if (pthread_create(&tids[i], NULL, bench_worker, &args[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&sh.start);
    double t0 = time_monotonic_seconds();
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    double wall = time_monotonic_seconds() - t0;
    pthread_barrier_destroy(&sh.start);

    bench_result_t res = {0};
    double sum = 0;
    for (int i = 0; i < threads; i++)
        sum += args[i].seconds;
    res.ns_per_pair = sum / threads / (double)iterations * 1e9;
    res.mpairs_per_s = (double)iterations * threads / wall / 1e6;
    if (mode == MODE_POOL) {
        chunk_pool_stats_t st;
        chunk_pool_stats(sh.pool, &st);
        res.hit_ratio = st.gets ? (double)st.hits / (double)st.gets : 0;
        chunk_pool_free(sh.pool);
        metric_registry_free(reg);
    }
    free(tids);
    free(args);
    return res;
}

static bench_result_t bench_best(bench_mode_t mode, int threads, long iterations, int working_set)
{
    bench_result_t best = {0};
    for (int run = 0; run < RUNS; run++) {
        bench_result_t r = bench_run(mode, threads, iterations, working_set);
        if (run == 0 || r.ns_per_pair < best.ns_per_pair)
            best = r;
    }
    return best;
}

int main(int argc, char **argv)
{
    long iterations = 2000000;
    int working_set = 256, max_threads = 4;
    int opt;
    while ((opt = getopt(argc, argv, "n:k:t:h")) != -1) {
        switch (opt) {
        case 'n': iterations = atol(optarg); break;
        case 'k': working_set = atoi(optarg); break;
        case 't': max_threads = atoi(optarg); break;
        default:
            fprintf(stderr,
                    "usage: %s [-n iterations_per_thread] [-k working_set] "
                    "[-t max_threads]\n",
                    argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (iterations < 1 || working_set < 1 || max_threads < 1) {
        fprintf(stderr, "-n, -k and -t must be positive\n");
        return 2;
    }

#ifdef CAIRN_HAVE_JEMALLOC
    const char *allocator = "jemalloc";
#else
    const char *allocator = "libc";
#endif
#ifdef CAIRN_SANITIZERS
    printf("warning: sanitizer build: the pool is bypassed, figures are meaningless\n");
#endif
    printf("chunk pool vs calloc/free (%s): %ld get+put pairs per thread, working set %d per "
           "thread, best of %d\n",
           allocator, iterations, working_set, RUNS);
    printf("%-8s %14s %14s %10s %14s %14s %8s\n", "threads", "pool ns/pair", "pool Mpairs/s",
           "pool hits", "malloc ns/pair", "malloc Mpairs/s", "ratio");
    for (int threads = 1; threads <= max_threads; threads *= 2) {
        bench_result_t pool = bench_best(MODE_POOL, threads, iterations, working_set);
        bench_result_t plain = bench_best(MODE_MALLOC, threads, iterations, working_set);
        printf("%-8d %14.1f %14.1f %9.1f%% %14.1f %14.1f %7.2fx\n", threads, pool.ns_per_pair,
               pool.mpairs_per_s, pool.hit_ratio * 100, plain.ns_per_pair, plain.mpairs_per_s,
               plain.ns_per_pair / pool.ns_per_pair);
    }
    return 0;
}
