/*
 * tests/unit/check_tsdb_chunk_pool.c: unit tests for the chunk buffer pool in tsdb/chunk_pool.c.
 *
 * Every test builds its own registry (metric names are fixed, one pool per registry) and pool,
 * and checks behaviour through the public API and chunk_pool_stats: class sizes, zeroing,
 * hits on the same thread and across threads through the depot, a thread's cache returned on
 * exit, trimming by low watermark, 8 threads handing buffers around with ownership stamps,
 * counter consistency, the rendered metrics, and that freeing a pool whose threads still hold
 * caches leaks nothing (counted through the allocation hooks here, and by LeakSanitizer in the
 * sanitizer build) and never lets a new pool reuse the old pool's buffers.
 *
 * POOLED says which behaviour to expect: the sanitizer build bypasses pooling (every get is a
 * miss, depots stay empty) unless the program is built with -DCHUNK_POOL_FORCE_POOLING, which
 * runs the pooled path under AddressSanitizer and LeakSanitizer.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tsdb/chunk_pool.h"

#if defined(CAIRN_SANITIZERS) && !defined(CHUNK_POOL_FORCE_POOLING)
#define POOLED 0
#else
#define POOLED 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

static chunk_pool_stats_t stats_of(chunk_pool_t *pool)
{
    chunk_pool_stats_t s;
    chunk_pool_stats(pool, &s);
    return s;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void assert_consistent(const chunk_pool_stats_t *s)
{
    ck_assert_uint_eq(s->gets, s->hits + s->misses);
    if (!POOLED) {
        ck_assert_uint_eq(s->hits, 0);
        ck_assert_uint_eq(s->bytes_held, 0);
    }
}

/* --- classes and zeroing -------------------------------------------------------------------- */

START_TEST(test_class_sizes)
{
    ck_assert_uint_eq(chunk_pool_class_size(0), 64);
    ck_assert_uint_eq(chunk_pool_class_size(1), 64);
    ck_assert_uint_eq(chunk_pool_class_size(64), 64);
    ck_assert_uint_eq(chunk_pool_class_size(65), 128);
    ck_assert_uint_eq(chunk_pool_class_size(128), 128);
    ck_assert_uint_eq(chunk_pool_class_size(129), 256);
    ck_assert_uint_eq(chunk_pool_class_size(256), 256);
    ck_assert_uint_eq(chunk_pool_class_size(257), 512);
    ck_assert_uint_eq(chunk_pool_class_size(512), 512);
    ck_assert_uint_eq(chunk_pool_class_size(513), 1024);
    ck_assert_uint_eq(chunk_pool_class_size(1000), 1024);
    ck_assert_uint_eq(chunk_pool_class_size(1024), 1024);
    ck_assert_uint_eq(chunk_pool_class_size(1025), 1025);
    ck_assert_uint_eq(chunk_pool_class_size(4096), 4096);
    ck_assert_uint_eq(chunk_pool_class_size(1u << 20), 1u << 20);
    /* Every size up to the maximum: the smallest power of two >= max(size, 64). */
    for (size_t size = 1; size <= CHUNK_POOL_MAX_SIZE; size++) {
        size_t c = chunk_pool_class_size(size);
        ck_assert_msg(c >= size && c >= CHUNK_POOL_MIN_SIZE && c <= CHUNK_POOL_MAX_SIZE,
                      "size %zu -> %zu", size, c);
        ck_assert_msg((c & (c - 1)) == 0, "size %zu -> %zu not a power of two", size, c);
        ck_assert_msg(c == CHUNK_POOL_MIN_SIZE || c / 2 < size, "size %zu -> %zu too big", size, c);
    }
}
END_TEST

START_TEST(test_buffers_zeroed)
{
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    static const size_t sizes[] = {1, 64, 100, 128, 200, 256, 500, 512, 1000, 1024, 3000};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(sizes); i++) {
        size_t size = sizes[i], cs = chunk_pool_class_size(size);
        unsigned char *p = chunk_pool_get(pool, size);
        ck_assert_ptr_nonnull(p);
        ck_assert_msg(all_zero(p, cs), "fresh buffer of %zu not zeroed", size);
        memset(p, 0xA5, cs);
        chunk_pool_put(pool, p, size);
        unsigned char *q = chunk_pool_get(pool, size);
        if (POOLED && size <= CHUNK_POOL_MAX_SIZE)
            ck_assert_ptr_eq(q, p); /* recycled, most recently returned first */
        ck_assert_msg(all_zero(q, cs), "recycled buffer of %zu not zeroed", size);
        chunk_pool_put(pool, q, size);
    }

    /* Through the depot too: more dirty buffers than a thread cache holds. */
    enum { N = 4 * CHUNK_POOL_THREAD_CACHE };
    void *bufs[N];
    for (int i = 0; i < N; i++) {
        bufs[i] = chunk_pool_get(pool, 700);
        memset(bufs[i], 0xFF, 1024);
    }
    for (int i = 0; i < N; i++)
        chunk_pool_put(pool, bufs[i], 700);
    if (POOLED)
        ck_assert_uint_gt(stats_of(pool).bytes_held, 0);
    for (int i = 0; i < N; i++) {
        bufs[i] = chunk_pool_get(pool, 1024);
        ck_assert_msg(all_zero(bufs[i], 1024), "buffer %d not zeroed", i);
    }
    for (int i = 0; i < N; i++)
        chunk_pool_put(pool, bufs[i], 513); /* any size of the same class */
    chunk_pool_stats_t s = stats_of(pool);
    ck_assert_uint_eq(s.bytes_in_use, 0);
    assert_consistent(&s);
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_oversize)
{
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    unsigned char *p = chunk_pool_get(pool, 5000);
    ck_assert(all_zero(p, 5000));
    memset(p, 1, 5000);
    chunk_pool_stats_t s = stats_of(pool);
    ck_assert_uint_eq(s.gets, 1);
    ck_assert_uint_eq(s.misses, 1);
    ck_assert_uint_eq(s.hits, 0);
    ck_assert_uint_eq(s.bytes_in_use, 5000);
    chunk_pool_put(pool, p, 5000);
    s = stats_of(pool);
    ck_assert_uint_eq(s.puts, 1);
    ck_assert_uint_eq(s.bytes_in_use, 0);
    ck_assert_uint_eq(s.bytes_held, 0); /* never pooled */
    chunk_pool_put(pool, NULL, 64);     /* no-op, like free(NULL) */
    ck_assert_uint_eq(stats_of(pool).puts, 1);
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST

/* --- hits ----------------------------------------------------------------------------------- */

START_TEST(test_hits_same_thread)
{
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    for (int i = 0; i < 100; i++)
        chunk_pool_put(pool, chunk_pool_get(pool, 100), 100);
    chunk_pool_stats_t s = stats_of(pool);
    ck_assert_uint_eq(s.gets, 100);
    ck_assert_uint_eq(s.puts, 100);
    ck_assert_uint_eq(s.misses, POOLED ? 1 : 100);
    ck_assert_uint_eq(s.hits, POOLED ? 99 : 0);

    void *bufs[10];
    for (int i = 0; i < 10; i++)
        bufs[i] = chunk_pool_get(pool, 300);
    for (int i = 0; i < 10; i++)
        chunk_pool_put(pool, bufs[i], 300);
    for (int i = 0; i < 10; i++)
        bufs[i] = chunk_pool_get(pool, 300);
    for (int i = 0; i < 10; i++)
        chunk_pool_put(pool, bufs[i], 300);
    s = stats_of(pool);
    ck_assert_uint_eq(s.gets, 120);
    ck_assert_uint_eq(s.hits, POOLED ? 109 : 0);
    assert_consistent(&s);
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST

enum { CROSS_N = 200 };

typedef struct cross_ctx {
    chunk_pool_t *pool;
    pthread_barrier_t put_done; /* A has put its buffers back */
    pthread_barrier_t taken;    /* B has taken them */
    void *bufs[CROSS_N];        /* A's buffers */
} cross_ctx_t;

static void *cross_producer(void *arg)
{
    cross_ctx_t *ctx = arg;
    for (int i = 0; i < CROSS_N; i++) {
        ctx->bufs[i] = chunk_pool_get(ctx->pool, 256);
        memset(ctx->bufs[i], 0x5A, 256);
    }
    for (int i = 0; i < CROSS_N; i++)
        chunk_pool_put(ctx->pool, ctx->bufs[i], 256);
    pthread_barrier_wait(&ctx->put_done);
    pthread_barrier_wait(&ctx->taken); /* stay alive: B must get them through the depot */
    return NULL;
}

START_TEST(test_hits_cross_thread)
{
    metric_registry_t *reg = metric_registry_new();
    cross_ctx_t ctx = {.pool = chunk_pool_new(reg)};
    pthread_barrier_init(&ctx.put_done, NULL, 2);
    pthread_barrier_init(&ctx.taken, NULL, 2);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, cross_producer, &ctx), 0);
    pthread_barrier_wait(&ctx.put_done);

    chunk_pool_stats_t before = stats_of(ctx.pool);
    if (POOLED) /* all but what A's cache kept */
        ck_assert_uint_ge(before.bytes_held, (CROSS_N - CHUNK_POOL_THREAD_CACHE) * 256);
    void *mine[CROSS_N];
    int from_a = 0;
    for (int i = 0; i < CROSS_N; i++) {
        mine[i] = chunk_pool_get(ctx.pool, 256);
        ck_assert(all_zero(mine[i], 256));
        for (int j = 0; j < CROSS_N; j++)
            if (mine[i] == ctx.bufs[j])
                from_a++;
    }
    chunk_pool_stats_t after = stats_of(ctx.pool);
    if (POOLED) {
        ck_assert_int_ge(from_a, CROSS_N - CHUNK_POOL_THREAD_CACHE);
        ck_assert_uint_ge(after.hits - before.hits, CROSS_N - CHUNK_POOL_THREAD_CACHE);
        ck_assert_uint_eq(after.bytes_held, 0);
    }
    assert_consistent(&after);
    pthread_barrier_wait(&ctx.taken);
    pthread_join(t, NULL);
    for (int i = 0; i < CROSS_N; i++)
        chunk_pool_put(ctx.pool, mine[i], 256);
    ck_assert_uint_eq(stats_of(ctx.pool).bytes_in_use, 0);
    pthread_barrier_destroy(&ctx.put_done);
    pthread_barrier_destroy(&ctx.taken);
    chunk_pool_free(ctx.pool);
    metric_registry_free(reg);
}
END_TEST

/* --- thread exit ---------------------------------------------------------------------------- */

typedef struct exit_ctx {
    chunk_pool_t *pool;
    pthread_barrier_t ready;
    pthread_barrier_t go;
} exit_ctx_t;

static void *exit_worker(void *arg)
{
    exit_ctx_t *ctx = arg;
    void *bufs[10];
    for (int i = 0; i < 10; i++)
        bufs[i] = chunk_pool_get(ctx->pool, 512);
    for (int i = 0; i < 10; i++)
        chunk_pool_put(ctx->pool, bufs[i], 512);
    pthread_barrier_wait(&ctx->ready);
    pthread_barrier_wait(&ctx->go);
    return NULL;
}

START_TEST(test_thread_exit_returns_cache)
{
    metric_registry_t *reg = metric_registry_new();
    exit_ctx_t ctx = {.pool = chunk_pool_new(reg)};
    pthread_barrier_init(&ctx.ready, NULL, 2);
    pthread_barrier_init(&ctx.go, NULL, 2);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, exit_worker, &ctx), 0);
    pthread_barrier_wait(&ctx.ready);
    chunk_pool_stats_t s = stats_of(ctx.pool);
    ck_assert_uint_eq(s.bytes_held, 0); /* all ten sit in the worker's cache, or were freed */
    ck_assert_uint_eq(s.gets, 10);      /* its pending counts are visible */
    ck_assert_uint_eq(s.puts, 10);
    pthread_barrier_wait(&ctx.go);
    pthread_join(t, NULL);

    s = stats_of(ctx.pool);
    ck_assert_uint_eq(s.bytes_held, POOLED ? 10 * 512 : 0);
    ck_assert_uint_eq(s.gets, 10);
    ck_assert_uint_eq(s.puts, 10);
    ck_assert_uint_eq(s.bytes_in_use, 0);
    void *bufs[10];
    for (int i = 0; i < 10; i++)
        bufs[i] = chunk_pool_get(ctx.pool, 512);
    s = stats_of(ctx.pool);
    ck_assert_uint_eq(s.hits, POOLED ? 10 : 0);
    ck_assert_uint_eq(s.bytes_held, 0);
    for (int i = 0; i < 10; i++)
        chunk_pool_put(ctx.pool, bufs[i], 512);
    pthread_barrier_destroy(&ctx.ready);
    pthread_barrier_destroy(&ctx.go);
    chunk_pool_free(ctx.pool);
    metric_registry_free(reg);
}
END_TEST

/* --- trim ----------------------------------------------------------------------------------- */

START_TEST(test_trim_after_burst)
{
    enum { N = 10000 };
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    void **bufs = malloc(N * sizeof(*bufs));
    for (int i = 0; i < N; i++)
        bufs[i] = chunk_pool_get(pool, 128);
    for (int i = 0; i < N; i++)
        chunk_pool_put(pool, bufs[i], 128);
    free(bufs);
    chunk_pool_stats_t s = stats_of(pool);
    uint64_t held = s.bytes_held;
    if (POOLED)
        ck_assert_uint_ge(held, (uint64_t)(N - CHUNK_POOL_THREAD_CACHE) * 128);

    /* The depot was empty before the burst, so the first trim frees nothing; the second frees
     * everything nobody took since. */
    size_t first = chunk_pool_trim(pool);
    size_t second = chunk_pool_trim(pool);
    ck_assert_uint_eq(first, 0);
    ck_assert_uint_eq(second, held);
    s = stats_of(pool);
    ck_assert_uint_eq(s.bytes_held, 0);
    ck_assert_uint_eq(s.trimmed, held / 128);
    ck_assert_uint_eq(chunk_pool_trim(pool), 0);
    assert_consistent(&s);
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_trim_keeps_what_was_used)
{
    enum { N = 1000, USED = 300 };
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    void *bufs[N];
    for (int i = 0; i < N; i++)
        bufs[i] = chunk_pool_get(pool, 128);
    for (int i = 0; i < N; i++)
        chunk_pool_put(pool, bufs[i], 128);
    ck_assert_uint_eq(chunk_pool_trim(pool), 0); /* resets the watermark to the burst */
    uint64_t held = stats_of(pool).bytes_held;
    for (int i = 0; i < USED; i++)
        bufs[i] = chunk_pool_get(pool, 128);
    for (int i = 0; i < USED; i++)
        chunk_pool_put(pool, bufs[i], 128);
    size_t freed = chunk_pool_trim(pool);
    uint64_t kept = stats_of(pool).bytes_held;
    if (POOLED) {
        ck_assert_uint_gt(freed, 0);
        ck_assert_uint_lt(freed, held);
        /* What was taken since the last trim stays (less what the thread cache absorbs). */
        ck_assert_uint_ge(kept, (USED - 2 * CHUNK_POOL_THREAD_CACHE) * 128);
        ck_assert_uint_le(kept, USED * 128);
    } else {
        ck_assert_uint_eq(freed, 0);
        ck_assert_uint_eq(kept, 0);
    }
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_trim_steady_working_set)
{
    enum { N = 1000, CYCLES = 6 };
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    void *bufs[N];
    uint64_t misses_after_first = 0;
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        for (int i = 0; i < N; i++)
            bufs[i] = chunk_pool_get(pool, 128);
        for (int i = 0; i < N; i++)
            chunk_pool_put(pool, bufs[i], 128);
        size_t freed = chunk_pool_trim(pool);
        chunk_pool_stats_t s = stats_of(pool);
        if (cycle == 0)
            misses_after_first = s.misses;
        ck_assert_msg(freed == 0, "cycle %d trimmed %zu bytes of the working set", cycle, freed);
        if (POOLED) {
            ck_assert_uint_eq(s.misses, misses_after_first); /* all later gets are hits */
            ck_assert_uint_ge(s.bytes_held, (N - CHUNK_POOL_THREAD_CACHE) * 128);
        }
    }
    ck_assert_uint_eq(stats_of(pool).trimmed, 0);
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST

/* --- concurrency ---------------------------------------------------------------------------- */

enum { CONC_THREADS = 8, CONC_OPS = 200000, CONC_LIVE = 64, CONC_MAILBOX = 32 };

/* Stamp at both ends of an owned buffer: who owns it, for which size, which generation. */
typedef struct stamp {
    uint64_t owner_size; /* owner << 32 | size */
    uint64_t generation;
} stamp_t;

#define MAILBOX_OWNER 0xFFFFu

typedef struct conc_shared {
    chunk_pool_t *pool;
    _Atomic(void *) mailbox[CONC_MAILBOX]; /* buffers of size MAILBOX_SIZE handed over */
    _Atomic int errors;
    pthread_mutex_t lock;
    char first_error[256];
} conc_shared_t;

#define MAILBOX_SIZE 200

typedef struct conc_thread {
    conc_shared_t *shared;
    uint32_t id;
} conc_thread_t;

static void conc_error(conc_shared_t *sh, const char *fmt, uint32_t id, uint64_t a, uint64_t b)
{
    if (atomic_fetch_add(&sh->errors, 1) == 0) {
        pthread_mutex_lock(&sh->lock);
        snprintf(sh->first_error, sizeof(sh->first_error), fmt, id, (unsigned long long)a,
                 (unsigned long long)b);
        pthread_mutex_unlock(&sh->lock);
    }
}

static void stamp_write(void *buf, size_t size, uint32_t owner, uint64_t generation)
{
    size_t cs = chunk_pool_class_size(size);
    stamp_t st = {(uint64_t)owner << 32 | size, generation};
    memcpy(buf, &st, sizeof(st));
    memcpy((char *)buf + cs - sizeof(st), &st, sizeof(st));
}

static bool stamp_check(const void *buf, size_t size, uint32_t owner, uint64_t generation)
{
    size_t cs = chunk_pool_class_size(size);
    stamp_t want = {(uint64_t)owner << 32 | size, generation}, head, tail;
    memcpy(&head, buf, sizeof(head));
    memcpy(&tail, (const char *)buf + cs - sizeof(tail), sizeof(tail));
    return memcmp(&head, &want, sizeof(want)) == 0 && memcmp(&tail, &want, sizeof(want)) == 0;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void *conc_worker(void *arg)
{
    conc_thread_t *self = arg;
    conc_shared_t *sh = self->shared;
    struct {
        void *buf;
        size_t size;
        uint64_t generation;
    } live[CONC_LIVE] = {{0}};
    uint64_t rng = 0x9E3779B97F4A7C15ull * (self->id + 1), generation = 0;

    for (int op = 0; op < CONC_OPS; op++) {
        uint64_t r = xorshift(&rng);
        size_t slot = r % CONC_LIVE;
        if ((r >> 32) % 10 == 0) {
            /* Swap a buffer of MAILBOX_SIZE with the mailbox: ownership moves between threads. */
            void *give = NULL;
            if (live[slot].buf && live[slot].size == MAILBOX_SIZE) {
                if (!stamp_check(live[slot].buf, MAILBOX_SIZE, self->id, live[slot].generation))
                    conc_error(sh, "thread %u: stamp changed before handing over (%llu/%llu)",
                               self->id, live[slot].generation, 0);
                give = live[slot].buf;
                stamp_write(give, MAILBOX_SIZE, MAILBOX_OWNER, 0);
                live[slot].buf = NULL;
            }
            size_t m = (r >> 40) % CONC_MAILBOX;
            void *took = atomic_exchange(&sh->mailbox[m], give);
            if (took) {
                if (!stamp_check(took, MAILBOX_SIZE, MAILBOX_OWNER, 0))
                    conc_error(sh, "thread %u: mailbox buffer overwritten (%llu/%llu)", self->id, m,
                               0);
                if (live[slot].buf) { /* slot busy with another size: return the taken one */
                    chunk_pool_put(sh->pool, took, MAILBOX_SIZE);
                } else {
                    live[slot].buf = took;
                    live[slot].size = MAILBOX_SIZE;
                    live[slot].generation = ++generation;
                    stamp_write(took, MAILBOX_SIZE, self->id, generation);
                }
            }
            continue;
        }
        if (live[slot].buf) {
            if (!stamp_check(live[slot].buf, live[slot].size, self->id, live[slot].generation))
                conc_error(sh, "thread %u: buffer owned by two (generation %llu, size %llu)",
                           self->id, live[slot].generation, live[slot].size);
            chunk_pool_put(sh->pool, live[slot].buf, live[slot].size);
            live[slot].buf = NULL;
        } else {
            uint64_t pick = (r >> 16) % 100;
            size_t size = pick < 10   ? MAILBOX_SIZE
                          : pick < 12 ? 1025 + (r >> 48) % 3000 /* oversize */
                                      : 1 + (r >> 48) % CHUNK_POOL_MAX_SIZE;
            void *buf = chunk_pool_get(sh->pool, size);
            size_t cs = chunk_pool_class_size(size);
            if (!all_zero(buf, cs < 256 ? cs : 128) || !all_zero((char *)buf + cs - 64, 64))
                conc_error(sh, "thread %u: buffer not zeroed (size %llu/%llu)", self->id, size, cs);
            live[slot].buf = buf;
            live[slot].size = size;
            live[slot].generation = ++generation;
            stamp_write(buf, size, self->id, generation);
        }
    }
    for (size_t i = 0; i < CONC_LIVE; i++) {
        if (!live[i].buf)
            continue;
        if (!stamp_check(live[i].buf, live[i].size, self->id, live[i].generation))
            conc_error(sh, "thread %u: buffer owned by two at the end (%llu/%llu)", self->id,
                       live[i].generation, live[i].size);
        chunk_pool_put(sh->pool, live[i].buf, live[i].size);
    }
    return NULL;
}

START_TEST(test_concurrent_ownership)
{
    metric_registry_t *reg = metric_registry_new();
    conc_shared_t sh = {.pool = chunk_pool_new(reg)};
    pthread_mutex_init(&sh.lock, NULL);
    pthread_t threads[CONC_THREADS];
    conc_thread_t args[CONC_THREADS];
    for (uint32_t i = 0; i < CONC_THREADS; i++) {
        args[i] = (conc_thread_t){&sh, i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, conc_worker, &args[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++)
        pthread_join(threads[i], NULL);
    ck_assert_msg(atomic_load(&sh.errors) == 0, "%d errors, first: %s", atomic_load(&sh.errors),
                  sh.first_error);
    for (int m = 0; m < CONC_MAILBOX; m++) {
        void *buf = atomic_load(&sh.mailbox[m]);
        if (buf) {
            ck_assert(stamp_check(buf, MAILBOX_SIZE, MAILBOX_OWNER, 0));
            chunk_pool_put(sh.pool, buf, MAILBOX_SIZE);
        }
    }
    chunk_pool_stats_t s = stats_of(sh.pool);
    ck_assert_uint_gt(s.gets, CONC_THREADS * (uint64_t)CONC_OPS / 4);
    ck_assert_uint_eq(s.gets, s.puts);
    ck_assert_uint_eq(s.bytes_in_use, 0);
    assert_consistent(&s);
    if (POOLED) /* ~2% of gets are oversize; the rest should mostly hit */
        ck_assert_msg(s.hits * 10 > s.gets * 8, "hits %llu of %llu", (unsigned long long)s.hits,
                      (unsigned long long)s.gets);
    pthread_mutex_destroy(&sh.lock);
    chunk_pool_free(sh.pool);
    metric_registry_free(reg);
}
END_TEST

/* --- stats and metrics ---------------------------------------------------------------------- */

enum { STATS_THREADS = 4, STATS_N = 1000 };

typedef struct stats_ctx {
    chunk_pool_t *pool;
    pthread_barrier_t got, checked, put, checked2;
    _Atomic uint64_t expected_in_use;
} stats_ctx_t;

static void *stats_worker(void *arg)
{
    stats_ctx_t *ctx = arg;
    static const size_t sizes[] = {1, 64, 65, 128, 300, 512, 700, 1024, 1500, 5000};
    void *bufs[STATS_N];
    uint64_t in_use = 0;
    for (int i = 0; i < STATS_N; i++) {
        size_t size = sizes[(size_t)i * 7 % CAIRN_ARRAY_LEN(sizes)];
        bufs[i] = chunk_pool_get(ctx->pool, size);
        in_use += chunk_pool_class_size(size);
    }
    atomic_fetch_add(&ctx->expected_in_use, in_use);
    pthread_barrier_wait(&ctx->got);
    pthread_barrier_wait(&ctx->checked);
    for (int i = 0; i < STATS_N; i++)
        chunk_pool_put(ctx->pool, bufs[i], sizes[(size_t)i * 7 % CAIRN_ARRAY_LEN(sizes)]);
    pthread_barrier_wait(&ctx->put);
    pthread_barrier_wait(&ctx->checked2);
    return NULL;
}

START_TEST(test_stats_consistency)
{
    metric_registry_t *reg = metric_registry_new();
    stats_ctx_t ctx = {.pool = chunk_pool_new(reg)};
    pthread_barrier_init(&ctx.got, NULL, STATS_THREADS + 1);
    pthread_barrier_init(&ctx.checked, NULL, STATS_THREADS + 1);
    pthread_barrier_init(&ctx.put, NULL, STATS_THREADS + 1);
    pthread_barrier_init(&ctx.checked2, NULL, STATS_THREADS + 1);
    pthread_t threads[STATS_THREADS];
    for (int i = 0; i < STATS_THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, stats_worker, &ctx), 0);

    pthread_barrier_wait(&ctx.got);
    chunk_pool_stats_t s = stats_of(ctx.pool);
    ck_assert_uint_eq(s.gets, STATS_THREADS * STATS_N);
    ck_assert_uint_eq(s.misses, STATS_THREADS * STATS_N); /* nothing was ever returned */
    ck_assert_uint_eq(s.puts, 0);
    ck_assert_uint_eq(s.bytes_in_use, atomic_load(&ctx.expected_in_use));
    assert_consistent(&s);
    pthread_barrier_wait(&ctx.checked);

    pthread_barrier_wait(&ctx.put);
    s = stats_of(ctx.pool);
    ck_assert_uint_eq(s.puts, STATS_THREADS * STATS_N);
    ck_assert_uint_eq(s.bytes_in_use, 0);
    assert_consistent(&s);
    pthread_barrier_wait(&ctx.checked2);
    for (int i = 0; i < STATS_THREADS; i++)
        pthread_join(threads[i], NULL);

    /* Exiting threads flushed their counts: the totals must not change. */
    chunk_pool_stats_t after = stats_of(ctx.pool);
    ck_assert_uint_eq(after.gets, s.gets);
    ck_assert_uint_eq(after.hits, s.hits);
    ck_assert_uint_eq(after.misses, s.misses);
    ck_assert_uint_eq(after.puts, s.puts);
    ck_assert_uint_eq(after.bytes_in_use, 0);

    /* The same from the main thread, past the flush interval, with hits. */
    for (int round = 0; round < 3; round++) {
        void *bufs[300];
        for (int i = 0; i < 300; i++)
            bufs[i] = chunk_pool_get(ctx.pool, (size_t)(i % 1100) + 1);
        s = stats_of(ctx.pool);
        ck_assert_uint_gt(s.bytes_in_use, 0);
        for (int i = 0; i < 300; i++)
            chunk_pool_put(ctx.pool, bufs[i], (size_t)(i % 1100) + 1);
    }
    s = stats_of(ctx.pool);
    ck_assert_uint_eq(s.gets, after.gets + 900);
    ck_assert_uint_eq(s.gets, s.puts);
    ck_assert_uint_eq(s.bytes_in_use, 0);
    if (POOLED)
        ck_assert_uint_gt(s.hits, after.hits);
    assert_consistent(&s);

    pthread_barrier_destroy(&ctx.got);
    pthread_barrier_destroy(&ctx.checked);
    pthread_barrier_destroy(&ctx.put);
    pthread_barrier_destroy(&ctx.checked2);
    chunk_pool_free(ctx.pool);
    metric_registry_free(reg);
}
END_TEST

static void assert_contains(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "[%s] not found in:\n%s", needle, text);
}

static char *render(metric_registry_t *reg)
{
    buf_t out = BUF_INIT;
    metric_registry_render(reg, &out);
    return buf_detach(&out);
}

static void *metrics_worker(void *arg)
{
    chunk_pool_t *pool = arg;
    void *bufs[10];
    for (int i = 0; i < 10; i++)
        bufs[i] = chunk_pool_get(pool, 64);
    for (int i = 0; i < 10; i++)
        chunk_pool_put(pool, bufs[i], 64);
    chunk_pool_put(pool, chunk_pool_get(pool, 3000), 3000);
    return NULL; /* exiting flushes the counts */
}

START_TEST(test_metrics_rendered)
{
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, metrics_worker, pool), 0);
    pthread_join(t, NULL);

    /* The main thread holds 64 buffers of 256: its counts are flushed at the 64th operation. */
    void *bufs[64];
    for (int i = 0; i < 64; i++)
        bufs[i] = chunk_pool_get(pool, 256);

    char *text = render(reg);
    static const char *const families[] = {
        "# TYPE cairn_chunk_pool_gets_total counter",
        "# TYPE cairn_chunk_pool_hits_total counter",
        "# TYPE cairn_chunk_pool_misses_total counter",
        "# TYPE cairn_chunk_pool_puts_total counter",
        "# TYPE cairn_chunk_pool_trimmed_total counter",
        "# TYPE cairn_chunk_pool_bytes_held gauge",
        "# TYPE cairn_chunk_pool_bytes_in_use gauge",
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(families); i++)
        assert_contains(text, families[i]);
    static const char *const labels[] = {"64", "128", "256", "512", "1024"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(labels); i++) {
        char line[128];
        snprintf(line, sizeof(line), "cairn_chunk_pool_hits_total{size=\"%s\"} ", labels[i]);
        assert_contains(text, line);
        snprintf(line, sizeof(line), "cairn_chunk_pool_bytes_held{size=\"%s\"} ", labels[i]);
        assert_contains(text, line);
    }
    assert_contains(text, "cairn_chunk_pool_gets_total{size=\"64\"} 10\n");
    assert_contains(text, "cairn_chunk_pool_misses_total{size=\"64\"} 10\n");
    assert_contains(text, "cairn_chunk_pool_hits_total{size=\"64\"} 0\n");
    assert_contains(text, "cairn_chunk_pool_puts_total{size=\"64\"} 10\n");
    assert_contains(text, "cairn_chunk_pool_bytes_in_use{size=\"64\"} 0\n");
    assert_contains(text, POOLED ? "cairn_chunk_pool_bytes_held{size=\"64\"} 640\n"
                                 : "cairn_chunk_pool_bytes_held{size=\"64\"} 0\n");
    assert_contains(text, "cairn_chunk_pool_gets_total{size=\"1024\"} 0\n");
    assert_contains(text, "cairn_chunk_pool_gets_total{size=\"large\"} 1\n");
    assert_contains(text, "cairn_chunk_pool_misses_total{size=\"large\"} 1\n");
    assert_contains(text, "cairn_chunk_pool_puts_total{size=\"large\"} 1\n");
    assert_contains(text, "cairn_chunk_pool_gets_total{size=\"256\"} 64\n");
    assert_contains(text, "cairn_chunk_pool_bytes_in_use{size=\"256\"} 16384\n");
    cairn_free(text);

    for (int i = 0; i < 64; i++)
        chunk_pool_put(pool, bufs[i], 256);
    chunk_pool_trim(pool);
    chunk_pool_trim(pool);
    text = render(reg);
    assert_contains(text, POOLED ? "cairn_chunk_pool_trimmed_total{size=\"64\"} 10\n"
                                 : "cairn_chunk_pool_trimmed_total{size=\"64\"} 0\n");
    assert_contains(text, "cairn_chunk_pool_bytes_held{size=\"64\"} 0\n");
    cairn_free(text);

    chunk_pool_free(pool);
    text = render(reg); /* the registry outlives the pool: nothing dangles */
    assert_contains(text, "cairn_chunk_pool_bytes_held{size=\"256\"} 0\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* --- freeing a pool that threads still cache ------------------------------------------------ */

static _Atomic long live_allocations;

static void *counting_malloc(size_t size)
{
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&live_allocations, 1);
    return p;
}

static void *counting_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size);
    if (p && !ptr)
        atomic_fetch_add(&live_allocations, 1);
    return p;
}

static void counting_free(void *ptr)
{
    if (ptr)
        atomic_fetch_sub(&live_allocations, 1);
    free(ptr);
}

enum { FREE_THREADS = 4 };

typedef struct free_ctx {
    chunk_pool_t *pool;
    pthread_barrier_t cached;  /* workers filled their caches */
    pthread_barrier_t swapped; /* main freed the pool and made pool2 */
    pthread_barrier_t done;    /* workers used pool2 */
    pthread_barrier_t checked; /* main counted allocations: workers may exit */
    chunk_pool_t *pool2;
    _Atomic int errors; /* workers' failed checks (no ck_assert off the main thread) */
    void *old[FREE_THREADS][CHUNK_POOL_CLASSES][100];
} free_ctx_t;

static void *free_worker(void *arg)
{
    free_ctx_t *ctx = ((void **)arg)[0];
    int id = (int)(intptr_t)((void **)arg)[1];
    for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
        size_t size = (size_t)CHUNK_POOL_MIN_SIZE << cls;
        for (int i = 0; i < 100; i++)
            ctx->old[id][cls][i] = chunk_pool_get(ctx->pool, size);
        for (int i = 0; i < 100; i++)
            chunk_pool_put(ctx->pool, ctx->old[id][cls][i], size);
    }
    pthread_barrier_wait(&ctx->cached);
    pthread_barrier_wait(&ctx->swapped);
    /* A new pool (perhaps at the old one's address) must not serve the old pool's buffers:
     * this thread's first get from it is a miss (checked through pool2's stats). */
    void *p = chunk_pool_get(ctx->pool2, 64);
    if (!all_zero(p, 64))
        atomic_fetch_add(&ctx->errors, 1);
    chunk_pool_put(ctx->pool2, p, 64);
    void *q = chunk_pool_get(ctx->pool2, 64);
    chunk_pool_put(ctx->pool2, q, 64);
    pthread_barrier_wait(&ctx->done);
    pthread_barrier_wait(&ctx->checked);
    return NULL;
}

START_TEST(test_free_with_live_caches)
{
    cairn_alloc_hooks_t hooks = {counting_malloc, counting_realloc, counting_free};
    cairn_alloc_set_hooks(&hooks);
    metric_registry_t *reg = metric_registry_new();
    metric_registry_t *reg2 = metric_registry_new();
    free_ctx_t *ctx = calloc(1, sizeof(*ctx));
    ctx->pool = chunk_pool_new(reg);
    long baseline = atomic_load(&live_allocations); /* registries and their metric children */
    pthread_barrier_init(&ctx->cached, NULL, FREE_THREADS + 1);
    pthread_barrier_init(&ctx->swapped, NULL, FREE_THREADS + 1);
    pthread_barrier_init(&ctx->done, NULL, FREE_THREADS + 1);
    pthread_barrier_init(&ctx->checked, NULL, FREE_THREADS + 1);
    pthread_t threads[FREE_THREADS];
    void *args[FREE_THREADS][2];
    for (int i = 0; i < FREE_THREADS; i++) {
        args[i][0] = ctx;
        args[i][1] = (void *)(intptr_t)i;
        ck_assert_int_eq(pthread_create(&threads[i], NULL, free_worker, args[i]), 0);
    }
    pthread_barrier_wait(&ctx->cached);
    chunk_pool_stats_t s = stats_of(ctx->pool);
    ck_assert_uint_eq(s.gets, FREE_THREADS * CHUNK_POOL_CLASSES * 100);
    if (POOLED)
        ck_assert_uint_gt(s.bytes_held, 0);
    chunk_pool_free(ctx->pool); /* the workers' caches still hold buffers */
    /* Every buffer is gone, cached or in a depot; what is left are the workers' (now dead)
     * cache records, which they free when they exit. */
    ck_assert_int_eq(atomic_load(&live_allocations), baseline + (POOLED ? FREE_THREADS : 0));
    ctx->pool2 = chunk_pool_new(reg2);
    long before_pool2 = atomic_load(&live_allocations);
    pthread_barrier_wait(&ctx->swapped);
    pthread_barrier_wait(&ctx->done);
    /* The workers served pool2 from their dead cache records (no new ones: a cache still
     * pointing at the freed pool would be a use after free at thread exit); each cache holds
     * its one pool2 buffer. */
    ck_assert_int_eq(atomic_load(&live_allocations), before_pool2 + (POOLED ? FREE_THREADS : 0));
    pthread_barrier_wait(&ctx->checked);
    for (int i = 0; i < FREE_THREADS; i++)
        pthread_join(threads[i], NULL);

    ck_assert_int_eq(atomic_load(&ctx->errors), 0);
    s = stats_of(ctx->pool2);
    ck_assert_uint_eq(s.gets, 2 * FREE_THREADS);
    ck_assert_uint_eq(s.misses, POOLED ? FREE_THREADS : 2 * FREE_THREADS);
    ck_assert_uint_eq(s.hits, POOLED ? FREE_THREADS : 0);
    chunk_pool_free(ctx->pool2);
    metric_registry_free(reg);
    metric_registry_free(reg2);
    pthread_barrier_destroy(&ctx->cached);
    pthread_barrier_destroy(&ctx->swapped);
    pthread_barrier_destroy(&ctx->done);
    pthread_barrier_destroy(&ctx->checked);
    free(ctx);
    cairn_alloc_set_hooks(NULL);
    ck_assert_int_eq(atomic_load(&live_allocations), 0);
}
END_TEST

START_TEST(test_many_pools_one_thread)
{
    /* Pools come and go while the thread lives: its dead caches are recycled, never matched. */
    for (int round = 0; round < 50; round++) {
        metric_registry_t *reg = metric_registry_new();
        chunk_pool_t *pool = chunk_pool_new(reg);
        void *p = chunk_pool_get(pool, 128);
        memset(p, 0x77, 128);
        chunk_pool_put(pool, p, 128);
        p = chunk_pool_get(pool, 128);
        ck_assert(all_zero(p, 128));
        chunk_pool_put(pool, p, 128);
        chunk_pool_stats_t s = stats_of(pool);
        ck_assert_uint_eq(s.misses, POOLED ? 1 : 2);
        chunk_pool_free(pool);
        metric_registry_free(reg);
    }
}
END_TEST

#if POOLED && defined(TEST_ASAN)
START_TEST(test_poisoned_while_pooled)
{
    /* Pooling forced under ASan: a buffer the pool holds is poisoned, so a use after put is
     * reported; handed out again it is usable. */
    metric_registry_t *reg = metric_registry_new();
    chunk_pool_t *pool = chunk_pool_new(reg);
    char *p = chunk_pool_get(pool, 512);
    ck_assert(!__asan_region_is_poisoned(p, 512));
    chunk_pool_put(pool, p, 512);
    ck_assert(__asan_address_is_poisoned(p));
    ck_assert(__asan_address_is_poisoned(p + 511));
    char *q = chunk_pool_get(pool, 512);
    ck_assert_ptr_eq(q, p);
    ck_assert(!__asan_region_is_poisoned(q, 512));
    chunk_pool_put(pool, q, 512);
    chunk_pool_free(pool);
    metric_registry_free(reg);
}
END_TEST
#endif

static Suite *chunk_pool_suite(void)
{
    Suite *s = suite_create("tsdb_chunk_pool");
    TCase *tc = tcase_create("basics");
    tcase_add_test(tc, test_class_sizes);
    tcase_add_test(tc, test_buffers_zeroed);
    tcase_add_test(tc, test_oversize);
#if POOLED && defined(TEST_ASAN)
    tcase_add_test(tc, test_poisoned_while_pooled);
#endif
    suite_add_tcase(s, tc);

    tc = tcase_create("recycling");
    tcase_add_test(tc, test_hits_same_thread);
    tcase_add_test(tc, test_hits_cross_thread);
    tcase_add_test(tc, test_thread_exit_returns_cache);
    tcase_add_test(tc, test_many_pools_one_thread);
    suite_add_tcase(s, tc);

    tc = tcase_create("trim");
    tcase_add_test(tc, test_trim_after_burst);
    tcase_add_test(tc, test_trim_keeps_what_was_used);
    tcase_add_test(tc, test_trim_steady_working_set);
    suite_add_tcase(s, tc);

    tc = tcase_create("accounting");
    tcase_add_test(tc, test_stats_consistency);
    tcase_add_test(tc, test_metrics_rendered);
    tcase_add_test(tc, test_free_with_live_caches);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_concurrent_ownership);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(chunk_pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
