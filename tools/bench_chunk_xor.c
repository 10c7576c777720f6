/*
 * tools/bench_chunk_xor.c: microbenchmark of the XOR chunk codec (tsdb/chunk_xor.c).
 *
 * Usage: bench_chunk_xor [series] (default 10000)
 *
 * Builds `series` series of 120 samples each (one head chunk's worth at the default
 * samples-per-chunk), shaped like scraped data: timestamps every 15 s with a few ms of jitter
 * (most delta-of-deltas land in the 14-bit class, some are 0); values a mix of counters
 * (integer increments, a quarter of them idle), integer gauges doing a random walk (e.g. bytes
 * in use), float gauges doing a random walk (e.g. ratios, full mantissas) and constants. It
 * then encodes every series into zeroed 2 KiB buffers and decodes them back, and prints the
 * best of 5 runs as ns/sample for encode and decode, and the encoded bytes/sample (2-byte
 * header included). Buffers are zeroed outside the timed region, as the chunk pool hands them
 * out zeroed. Decoded samples are checked against the input once.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsdb/chunk_xor.h"

#define BENCH_SAMPLES   120
#define BENCH_CHUNK_CAP 2048 /* float gauges with full mantissas pass 1 KiB */
#define BENCH_RUNS      5

typedef struct bench_series {
    int64_t t[BENCH_SAMPLES];
    double v[BENCH_SAMPLES];
} bench_series_t;

static uint64_t bench_rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t bench_rng_next(void)
{
    uint64_t z = (bench_rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double bench_rng_unit(void)
{
    return (double)(bench_rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static void bench_series_make(bench_series_t *s, unsigned index)
{
    int64_t start = INT64_C(1700000000000) + (int64_t)(bench_rng_next() % 15000);
    for (int i = 0; i < BENCH_SAMPLES; i++) {
        /* Most scrapes land within a millisecond or two of the schedule. */
        int64_t jitter = (bench_rng_next() % 4 == 0) ? 0 : (int64_t)(bench_rng_next() % 7) - 3;
        s->t[i] = start + 15000 * (int64_t)i + jitter;
    }
    unsigned kind = index % 10;
    double v;
    if (kind < 4) { /* counter */
        v = (double)(bench_rng_next() % 1000000);
        int idle = kind == 0;
        for (int i = 0; i < BENCH_SAMPLES; i++) {
            if (!idle)
                v += (double)(bench_rng_next() % 200);
            s->v[i] = v;
        }
    } else if (kind < 7) { /* integer gauge, random walk */
        v = (double)(1 << 30) + (double)(bench_rng_next() % 1000000);
        for (int i = 0; i < BENCH_SAMPLES; i++) {
            v += (double)((int64_t)(bench_rng_next() % 8193) - 4096) * 4096.0;
            s->v[i] = v;
        }
    } else if (kind < 9) { /* float gauge, random walk */
        v = bench_rng_unit();
        for (int i = 0; i < BENCH_SAMPLES; i++) {
            v += (bench_rng_unit() - 0.5) * 0.01;
            s->v[i] = v;
        }
    } else { /* constant, e.g. an info metric or a config value */
        v = (double)(bench_rng_next() % 16);
        for (int i = 0; i < BENCH_SAMPLES; i++)
            s->v[i] = v;
    }
}

static double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long nseries = 10000;
    if (argc > 1) {
        char *end;
        nseries = strtol(argv[1], &end, 10);
        if (*end != '\0' || nseries <= 0 || nseries > 10000000) {
            fprintf(stderr, "usage: %s [series]\n", argv[0]);
            return EXIT_FAILURE;
        }
    }
    size_t n = (size_t)nseries;
    bench_series_t *series = malloc(n * sizeof *series);
    uint8_t *chunks = malloc(n * BENCH_CHUNK_CAP);
    size_t *lens = malloc(n * sizeof *lens);
    if (!series || !chunks || !lens) {
        fprintf(stderr, "out of memory\n");
        return EXIT_FAILURE;
    }
    for (size_t i = 0; i < n; i++)
        bench_series_make(&series[i], (unsigned)i);

    double samples = (double)n * BENCH_SAMPLES;
    double best_encode = 1e300, best_decode = 1e300;
    size_t total_bytes = 0;
    double sink = 0;
    for (int run = 0; run < BENCH_RUNS; run++) {
        memset(chunks, 0, n * BENCH_CHUNK_CAP);
        double t0 = bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            xor_appender_t a;
            xor_appender_init(&a, chunks + i * BENCH_CHUNK_CAP, BENCH_CHUNK_CAP);
            const bench_series_t *s = &series[i];
            for (int j = 0; j < BENCH_SAMPLES; j++) {
                if (xor_append(&a, s->t[j], s->v[j]) != 0) {
                    fprintf(stderr, "append failed\n");
                    return EXIT_FAILURE;
                }
            }
            lens[i] = xor_appender_bytes(&a);
        }
        double t1 = bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            xor_iterator_t it;
            xor_iterator_init(&it, chunks + i * BENCH_CHUNK_CAP, lens[i]);
            while (xor_iterator_next(&it) == 1)
                sink += xor_iterator_value(&it) + (double)it.t;
        }
        double t2 = bench_now_ns();
        if (t1 - t0 < best_encode)
            best_encode = t1 - t0;
        if (t2 - t1 < best_decode)
            best_decode = t2 - t1;
    }

    /* Check once that every sample came back. */
    for (size_t i = 0; i < n; i++) {
        xor_iterator_t it;
        xor_iterator_init(&it, chunks + i * BENCH_CHUNK_CAP, lens[i]);
        for (int j = 0; j < BENCH_SAMPLES; j++) {
            double v = 0;
            int ok = xor_iterator_next(&it) == 1;
            if (ok)
                v = xor_iterator_value(&it);
            if (!ok || it.t != series[i].t[j] || memcmp(&v, &series[i].v[j], sizeof v) != 0) {
                fprintf(stderr, "series %zu sample %d did not round-trip\n", i, j);
                return EXIT_FAILURE;
            }
        }
        total_bytes += lens[i];
    }

    printf("chunk_xor: %zu series x %d samples, best of %d runs\n", n, BENCH_SAMPLES, BENCH_RUNS);
    printf("  encode  %6.2f ns/sample\n", best_encode / samples);
    printf("  decode  %6.2f ns/sample\n", best_decode / samples);
    printf("  size    %6.3f bytes/sample (%.1f bytes/chunk)\n", (double)total_bytes / samples,
           (double)total_bytes / (double)n);
    if (sink == 0.5) /* keeps the decode loop from being optimised away */
        printf("\n");
    free(lens);
    free(chunks);
    free(series);
    return EXIT_SUCCESS;
}
