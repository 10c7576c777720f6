/*
 * tsdb/chunk_pool.c: the pool of size-classed buffers for open chunks (why: chunk_pool.h).
 *
 * Structure. A pool has, per class (64 .. 1024 B), a depot: a mutex-guarded stack of free
 * buffers with its low watermark; and, per class plus one slot for oversize requests
 * ("large"), shared counters and the metric children they feed. Each thread that uses a pool
 * gets a thread cache for it: per class a stack of at most CHUNK_POOL_THREAD_CACHE buffers and
 * the operations counted since the last flush. A thread keeps its caches in a _Thread_local
 * list, most recently used first; a process-wide pthread key runs thread_exit() when the thread
 * ends, which returns each cache's buffers to its pool's depots.
 *
 * Fast path: get pops the thread's stack, put pushes it; no lock, no shared write. An empty
 * stack takes up to CHUNK_POOL_BATCH buffers from the depot (one lock); an empty depot means a
 * miss (cairn_calloc). A full stack moves its CHUNK_POOL_BATCH oldest buffers to the depot.
 * Buffers are zeroed when handed out; a freshly allocated one already is.
 *
 * Pools and caches. A cache names its pool by the pool's id, unique in the process and never
 * reused (unlike an address), so a cache left behind by a freed pool never matches a new pool.
 * Each pool lists its caches; chunk_pool_free frees the buffers of caches whose threads are
 * still alive and marks those caches dead (pool = NULL); their threads reuse them for another
 * pool or free them on exit. thread_exit and chunk_pool_free both run under cache_lock, so an
 * exiting thread either returns its buffers before the pool is freed or finds its cache dead.
 *
 * Trim. The depot is a LIFO stack, so the low watermark (fewest buffers held since the last
 * trim) is exactly the number of buffers at its bottom that nobody took since then. Trim frees
 * those and resets the watermark to what is left: an idle pool empties in two trims, a pool
 * whose depot runs dry between trims keeps everything.
 *
 * Counters. Each cache counts its gets/hits/misses/puts in per-class pending counters (single
 * writer, relaxed atomics so chunk_pool_stats may read them) and adds them to the shared
 * counters and metrics every CHUNK_POOL_FLUSH_OPS operations on the class, on thread exit and
 * when the pool is freed. The exported counters and bytes_in_use therefore lag by at most that
 * many operations per thread and class; chunk_pool_stats adds the pending counts of live caches
 * and is exact when no thread is using the pool. bytes_held is a gauge set under the depot
 * lock whenever a depot changes (the registry cannot drop a collector, and a pool may be freed
 * before its registry). Oversize requests (> CHUNK_POOL_MAX_SIZE) are allocated and freed
 * directly and counted as misses under size="large" (gets, misses, puts, bytes_in_use), which
 * chunk_pool_stats includes. trimmed counts buffers.
 *
 * Sanitizer builds (CAIRN_SANITIZERS, unless CHUNK_POOL_FORCE_POOLING is defined for a test
 * build) never pool: every get is a cairn_calloc, every put a cairn_free, counted as misses.
 * When pooling is forced under AddressSanitizer, buffers are poisoned while the pool holds
 * them, so a write after put is still reported.
 *
 * Invariants: a buffer is in exactly one place: handed out, one thread cache, one depot, or
 * freed. depot->low_watermark <= depot->count. A dead cache (pool == NULL) holds no buffers.
 * Only the owning thread touches a live cache's stacks, except chunk_pool_free (whose contract
 * says no thread uses the pool) and thread_exit (the owner itself).
 *
 * Locks: cache_lock (process-wide) guards every pool's cache list and each cache's pool
 * pointer and list links; it is taken on a thread's first use of a pool, on thread exit, by
 * chunk_pool_stats and chunk_pool_free. depot->lock guards one depot. Order: cache_lock, then
 * one depot lock; never two depot locks at once. Under a depot lock the only allocator calls
 * resize the depot's array; trim frees the idle buffers after dropping the lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "tsdb/chunk_pool.h"

#if defined(CAIRN_SANITIZERS) && !defined(CHUNK_POOL_FORCE_POOLING)
#define CHUNK_POOL_BYPASS 1
#else
#define CHUNK_POOL_BYPASS 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CHUNK_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHUNK_POOL_ASAN 1
#endif
#endif
#ifdef CHUNK_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Buffers moved between a thread cache and the depot at once: half the cache. */
#define CHUNK_POOL_BATCH (CHUNK_POOL_THREAD_CACHE / 2)
/* Operations on one class after which a thread adds its pending counts to the shared ones. */
#define CHUNK_POOL_FLUSH_OPS 64
/* Counter slot for oversize requests, after the classes. */
#define SLOT_LARGE CHUNK_POOL_CLASSES
#define SLOT_COUNT (CHUNK_POOL_CLASSES + 1)

static const char *const SLOT_LABELS[SLOT_COUNT] = {"64", "128", "256", "512", "1024", "large"};

/* Counts not yet added to the shared counters. Written only by the owning thread. */
typedef struct pending_counts {
    _Atomic uint64_t gets;   /* buffers handed out */
    _Atomic uint64_t hits;   /* ... from this cache or the depot */
    _Atomic uint64_t misses; /* ... newly allocated */
    _Atomic uint64_t puts;   /* buffers returned */
} pending_counts_t;

typedef struct cache_class {
    unsigned count;                      /* buffers in bufs[0 .. count), newest last */
    unsigned ops;                        /* gets + puts since the last flush */
    pending_counts_t pending;            /* counted since the last flush */
    void *bufs[CHUNK_POOL_THREAD_CACHE]; /* free buffers, poisoned under ASan */
} cache_class_t;

/* One thread's cache for one pool. */
typedef struct thread_cache {
    uint64_t pool_id;                          /* id of the pool it serves; owner thread only */
    chunk_pool_t *pool;                        /* cache_lock; NULL once that pool is freed (dead) */
    struct thread_cache *pool_prev;            /* cache_lock; in pool->caches */
    struct thread_cache *pool_next;            /* cache_lock; in pool->caches */
    struct thread_cache *thread_next;          /* owner thread only; in thread_caches */
    cache_class_t classes[CHUNK_POOL_CLASSES]; /* one stack per size class */
} thread_cache_t;

/* One class's shared stack of free buffers, on its own cache lines. */
typedef struct depot {
    _Alignas(CAIRN_CACHE_LINE) pthread_mutex_t lock; /* guards bufs .. low_watermark */
    void **bufs;                                     /* lock; free buffers, oldest first */
    size_t count;                                    /* lock; buffers in bufs */
    size_t cap;                                      /* lock; slots allocated in bufs */
    size_t low_watermark; /* lock; fewest buffers held since the last trim */
    metric_gauge_t *held; /* cairn_chunk_pool_bytes_held{size} */
} depot_t;

/* Shared counters of one class (or of oversize requests) and their metric children. */
typedef struct slot_counts {
    _Alignas(CAIRN_CACHE_LINE) _Atomic uint64_t gets; /* flushed counts, as in pending_counts */
    _Atomic uint64_t hits;
    _Atomic uint64_t misses;
    _Atomic uint64_t puts;
    _Atomic uint64_t trimmed;         /* buffers freed by trim */
    _Atomic int64_t in_use_bytes;     /* flushed part of bytes handed out and not returned */
    metric_counter_t *gets_metric;    /* cairn_chunk_pool_gets_total{size} */
    metric_counter_t *hits_metric;    /* cairn_chunk_pool_hits_total{size}; NULL for large */
    metric_counter_t *misses_metric;  /* cairn_chunk_pool_misses_total{size} */
    metric_counter_t *puts_metric;    /* cairn_chunk_pool_puts_total{size} */
    metric_counter_t *trimmed_metric; /* cairn_chunk_pool_trimmed_total{size}; NULL for large */
    metric_gauge_t *in_use_metric;    /* cairn_chunk_pool_bytes_in_use{size} */
} slot_counts_t;

struct chunk_pool {
    depot_t depots[CHUNK_POOL_CLASSES]; /* one per class, cache-line aligned */
    slot_counts_t slots[SLOT_COUNT];    /* per class, then oversize (SLOT_LARGE) */
    uint64_t id;                        /* unique in the process, never 0 */
    thread_cache_t *caches;             /* cache_lock; live caches serving this pool */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key; /* non-NULL value while the thread has caches; runs thread_exit */
static _Atomic uint64_t next_pool_id = 1;
static _Thread_local thread_cache_t *thread_caches; /* most recently used first */

/* --- helpers -------------------------------------------------------------------------------- */

static inline size_t class_index(size_t size)
{
    if (size <= CHUNK_POOL_MIN_SIZE)
        return 0;
    if (size > CHUNK_POOL_MAX_SIZE)
        return SLOT_LARGE;
    /* ceil(log2(size)) - log2(64) */
    return (size_t)(64 - __builtin_clzll((unsigned long long)(size - 1))) - 6;
}

/* A table rather than 64 << cls: given a size it knows to be a multiple of 8, GCC inlines the
 * zeroing memset as `rep stosq`, which costs a third more per get than libc's memset here. */
static const size_t CLASS_BYTES[CHUNK_POOL_CLASSES] = {64, 128, 256, 512, 1024};

static inline size_t class_bytes(size_t cls)
{
    return CLASS_BYTES[cls];
}

size_t chunk_pool_class_size(size_t size)
{
    size_t cls = class_index(size);
    return cls == SLOT_LARGE ? size : class_bytes(cls);
}

/* Owner-only increment of a counter others may read. */
static inline void pending_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t pending_take(_Atomic uint64_t *c)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, 0, memory_order_relaxed);
    return v;
}

/* Adds counts to a slot's shared counters and metrics; in_use_delta is in bytes. */
static void slot_account(slot_counts_t *s, uint64_t gets, uint64_t hits, uint64_t misses,
                         uint64_t puts, int64_t in_use_delta)
{
    if (gets) {
        atomic_fetch_add_explicit(&s->gets, gets, memory_order_relaxed);
        metric_counter_add(s->gets_metric, gets);
    }
    if (hits) {
        atomic_fetch_add_explicit(&s->hits, hits, memory_order_relaxed);
        metric_counter_add(s->hits_metric, hits);
    }
    if (misses) {
        atomic_fetch_add_explicit(&s->misses, misses, memory_order_relaxed);
        metric_counter_add(s->misses_metric, misses);
    }
    if (puts) {
        atomic_fetch_add_explicit(&s->puts, puts, memory_order_relaxed);
        metric_counter_add(s->puts_metric, puts);
    }
    if (in_use_delta) {
        atomic_fetch_add_explicit(&s->in_use_bytes, in_use_delta, memory_order_relaxed);
        metric_gauge_add(s->in_use_metric, (double)in_use_delta);
    }
}

static void cache_flush_counts(chunk_pool_t *pool, cache_class_t *cc, size_t cls)
{
    uint64_t gets = pending_take(&cc->pending.gets);
    uint64_t hits = pending_take(&cc->pending.hits);
    uint64_t misses = pending_take(&cc->pending.misses);
    uint64_t puts = pending_take(&cc->pending.puts);
    int64_t delta = ((int64_t)gets - (int64_t)puts) * (int64_t)class_bytes(cls);
    cc->ops = 0;
    slot_account(&pool->slots[cls], gets, hits, misses, puts, delta);
}

/* Under d->lock. */
static void depot_reserve(depot_t *d, size_t extra)
{
    if (d->count + extra <= d->cap)
        return;
    size_t cap = d->cap ? d->cap * 2 : 4 * CHUNK_POOL_THREAD_CACHE;
    while (cap < d->count + extra)
        cap *= 2;
    d->bufs = cairn_realloc(d->bufs, cap * sizeof(*d->bufs));
    d->cap = cap;
}

/* Under d->lock. */
static inline void depot_publish(depot_t *d, size_t cls)
{
    metric_gauge_set(d->held, (double)(d->count * class_bytes(cls)));
}

/* Moves n buffers from the bottom (oldest) of a cache stack to the depot. Takes d->lock. */
static void cache_spill(chunk_pool_t *pool, cache_class_t *cc, size_t cls, unsigned n)
{
    depot_t *d = &pool->depots[cls];
    pthread_mutex_lock(&d->lock);
    depot_reserve(d, n);
    memcpy(d->bufs + d->count, cc->bufs, n * sizeof(void *));
    d->count += n;
    depot_publish(d, cls);
    pthread_mutex_unlock(&d->lock);
    cc->count -= n;
    memmove(cc->bufs, cc->bufs + n, cc->count * sizeof(void *));
}

/* Refills an empty cache stack with up to CHUNK_POOL_BATCH buffers from the top (most recently
 * returned) of the depot. Returns the number taken. Takes d->lock. */
static unsigned cache_refill(chunk_pool_t *pool, cache_class_t *cc, size_t cls)
{
    depot_t *d = &pool->depots[cls];
    pthread_mutex_lock(&d->lock);
    unsigned n = d->count < CHUNK_POOL_BATCH ? (unsigned)d->count : CHUNK_POOL_BATCH;
    if (n) {
        d->count -= n;
        memcpy(cc->bufs, d->bufs + d->count, n * sizeof(void *));
        if (d->count < d->low_watermark)
            d->low_watermark = d->count;
        depot_publish(d, cls);
    }
    pthread_mutex_unlock(&d->lock);
    cc->count = n;
    return n;
}

/* --- thread caches -------------------------------------------------------------------------- */

static void pool_unlink_cache(chunk_pool_t *pool, thread_cache_t *tc)
{
    if (tc->pool_prev)
        tc->pool_prev->pool_next = tc->pool_next;
    else
        pool->caches = tc->pool_next;
    if (tc->pool_next)
        tc->pool_next->pool_prev = tc->pool_prev;
    tc->pool_prev = tc->pool_next = NULL;
    tc->pool = NULL;
}

/* Thread exit: returns every live cache's buffers and counts to its pool, frees the caches. */
static void thread_exit(void *unused)
{
    (void)unused;
    thread_cache_t *list = thread_caches;
    thread_caches = NULL;
    pthread_mutex_lock(&cache_lock);
    for (thread_cache_t *tc = list; tc; tc = tc->thread_next) {
        chunk_pool_t *pool = tc->pool;
        if (!pool)
            continue;
        for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
            cache_class_t *cc = &tc->classes[cls];
            if (cc->count)
                cache_spill(pool, cc, cls, cc->count);
            cache_flush_counts(pool, cc, cls);
        }
        pool_unlink_cache(pool, tc);
    }
    pthread_mutex_unlock(&cache_lock);
    for (thread_cache_t *tc = list, *next; tc; tc = next) {
        next = tc->thread_next;
        cairn_free(tc);
    }
}

static void exit_key_create(void)
{
    int rc = pthread_key_create(&exit_key, thread_exit);
    if (rc != 0)
        CAIRN_PANIC("chunk pool: pthread_key_create: %s", cairn_strerror(-rc));
}

/* The calling thread's cache for pool, created (or recycled from a dead one) on first use. */
static thread_cache_t *cache_lookup_slow(chunk_pool_t *pool)
{
    thread_cache_t *prev = NULL;
    for (thread_cache_t *tc = thread_caches; tc; prev = tc, tc = tc->thread_next) {
        if (tc->pool_id == pool->id) {
            if (prev) { /* move to the front: the next lookup is one comparison */
                prev->thread_next = tc->thread_next;
                tc->thread_next = thread_caches;
                thread_caches = tc;
            }
            return tc;
        }
    }

    pthread_once(&key_once, exit_key_create);
    if (!pthread_getspecific(exit_key)) {
        int rc = pthread_setspecific(exit_key, &thread_caches);
        if (rc != 0)
            CAIRN_PANIC("chunk pool: pthread_setspecific: %s", cairn_strerror(-rc));
    }

    pthread_mutex_lock(&cache_lock);
    thread_cache_t *tc = NULL;
    prev = NULL;
    for (thread_cache_t *c = thread_caches; c; prev = c, c = c->thread_next) {
        if (!c->pool) { /* dead: its pool was freed; it holds no buffers */
            tc = c;
            if (prev)
                prev->thread_next = c->thread_next;
            else
                thread_caches = c->thread_next;
            break;
        }
    }
    if (tc)
        memset(tc, 0, sizeof(*tc));
    else
        tc = cairn_calloc(1, sizeof(*tc));
    tc->pool_id = pool->id;
    tc->pool = pool;
    tc->pool_next = pool->caches;
    if (pool->caches)
        pool->caches->pool_prev = tc;
    pool->caches = tc;
    pthread_mutex_unlock(&cache_lock);

    tc->thread_next = thread_caches;
    thread_caches = tc;
    return tc;
}

static inline thread_cache_t *cache_lookup(chunk_pool_t *pool)
{
    thread_cache_t *tc = thread_caches;
    if (CAIRN_LIKELY(tc && tc->pool_id == pool->id))
        return tc;
    return cache_lookup_slow(pool);
}

/* --- public API ----------------------------------------------------------------------------- */

chunk_pool_t *chunk_pool_new(metric_registry_t *reg)
{
    if (!reg)
        reg = metric_registry_default();
    static const char *const label_names[] = {"size"};
    metric_family_t *gets =
        metric_family_new(reg, METRIC_COUNTER, "cairn_chunk_pool_gets_total",
                          "Chunk buffers requested from the pool, by size class.", 1, label_names);
    metric_family_t *hits = metric_family_new(
        reg, METRIC_COUNTER, "cairn_chunk_pool_hits_total",
        "Chunk buffer requests served from a thread cache or the depot.", 1, label_names);
    metric_family_t *misses = metric_family_new(
        reg, METRIC_COUNTER, "cairn_chunk_pool_misses_total",
        "Chunk buffer requests served by allocating a new buffer.", 1, label_names);
    metric_family_t *puts =
        metric_family_new(reg, METRIC_COUNTER, "cairn_chunk_pool_puts_total",
                          "Chunk buffers returned to the pool.", 1, label_names);
    metric_family_t *trimmed =
        metric_family_new(reg, METRIC_COUNTER, "cairn_chunk_pool_trimmed_total",
                          "Idle chunk buffers freed by trimming the depot.", 1, label_names);
    metric_family_t *held = metric_family_new(
        reg, METRIC_GAUGE, "cairn_chunk_pool_bytes_held",
        "Bytes of free chunk buffers held in the shared depots (thread caches excluded).", 1,
        label_names);
    metric_family_t *in_use = metric_family_new(
        reg, METRIC_GAUGE, "cairn_chunk_pool_bytes_in_use",
        "Bytes of chunk buffers handed out and not yet returned.", 1, label_names);

    chunk_pool_t *pool = cairn_aligned_calloc(CAIRN_CACHE_LINE, sizeof(*pool));
    pool->id = atomic_fetch_add_explicit(&next_pool_id, 1, memory_order_relaxed);
    for (size_t i = 0; i < SLOT_COUNT; i++) {
        const char *const label[] = {SLOT_LABELS[i]};
        slot_counts_t *s = &pool->slots[i];
        s->gets_metric = metric_counter_with(gets, label);
        s->misses_metric = metric_counter_with(misses, label);
        s->puts_metric = metric_counter_with(puts, label);
        s->in_use_metric = metric_gauge_with(in_use, label);
        if (i == SLOT_LARGE)
            continue;
        s->hits_metric = metric_counter_with(hits, label);
        s->trimmed_metric = metric_counter_with(trimmed, label);
        depot_t *d = &pool->depots[i];
        pthread_mutex_init(&d->lock, NULL);
        d->held = metric_gauge_with(held, label);
    }
    return pool;
}

void chunk_pool_free(chunk_pool_t *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&cache_lock);
    while (pool->caches) {
        thread_cache_t *tc = pool->caches;
        for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
            cache_class_t *cc = &tc->classes[cls];
            for (unsigned i = 0; i < cc->count; i++) {
                UNPOISON(cc->bufs[i], class_bytes(cls));
                cairn_free(cc->bufs[i]);
            }
            cc->count = 0;
            cache_flush_counts(pool, cc, cls);
        }
        pool_unlink_cache(pool, tc); /* dead now; its thread recycles or frees it */
    }
    pthread_mutex_unlock(&cache_lock);

    for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
        depot_t *d = &pool->depots[cls];
        for (size_t i = 0; i < d->count; i++) {
            UNPOISON(d->bufs[i], class_bytes(cls));
            cairn_free(d->bufs[i]);
        }
        cairn_free(d->bufs);
        metric_gauge_set(d->held, 0);
        pthread_mutex_destroy(&d->lock);
    }
    cairn_aligned_free(pool);
}

void *chunk_pool_get(chunk_pool_t *pool, size_t size)
{
    size_t cls = class_index(size);
    if (cls == SLOT_LARGE || CHUNK_POOL_BYPASS) {
        size_t bytes = chunk_pool_class_size(size);
        void *buf = cairn_calloc(1, bytes);
        slot_account(&pool->slots[cls], 1, 0, 1, 0, (int64_t)bytes);
        return buf;
    }

    thread_cache_t *tc = cache_lookup(pool);
    cache_class_t *cc = &tc->classes[cls];
    size_t bytes = class_bytes(cls);
    void *buf;
    if (CAIRN_LIKELY(cc->count > 0 || cache_refill(pool, cc, cls) > 0)) {
        buf = cc->bufs[--cc->count];
        UNPOISON(buf, bytes);
        memset(buf, 0, bytes);
        pending_add(&cc->pending.hits, 1);
    } else {
        buf = cairn_calloc(1, bytes);
        pending_add(&cc->pending.misses, 1);
    }
    pending_add(&cc->pending.gets, 1);
    if (CAIRN_UNLIKELY(++cc->ops >= CHUNK_POOL_FLUSH_OPS))
        cache_flush_counts(pool, cc, cls);
    return buf;
}

void chunk_pool_put(chunk_pool_t *pool, void *buf, size_t size)
{
    if (!buf)
        return;
    size_t cls = class_index(size);
    if (cls == SLOT_LARGE || CHUNK_POOL_BYPASS) {
        cairn_free(buf);
        slot_account(&pool->slots[cls], 0, 0, 0, 1, -(int64_t)chunk_pool_class_size(size));
        return;
    }

    thread_cache_t *tc = cache_lookup(pool);
    cache_class_t *cc = &tc->classes[cls];
    if (CAIRN_UNLIKELY(cc->count == CHUNK_POOL_THREAD_CACHE))
        cache_spill(pool, cc, cls, CHUNK_POOL_BATCH);
    POISON(buf, class_bytes(cls));
    cc->bufs[cc->count++] = buf;
    pending_add(&cc->pending.puts, 1);
    if (CAIRN_UNLIKELY(++cc->ops >= CHUNK_POOL_FLUSH_OPS))
        cache_flush_counts(pool, cc, cls);
}

size_t chunk_pool_trim(chunk_pool_t *pool)
{
    size_t freed_bytes = 0;
    for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
        depot_t *d = &pool->depots[cls];
        pthread_mutex_lock(&d->lock);
        size_t n = d->low_watermark; /* the bottom n buffers were not taken since last trim */
        void **old = NULL;
        if (n) {
            /* Keep the rest in a right-sized array; free the old one and the idle buffers
             * after unlocking. */
            old = d->bufs;
            size_t keep = d->count - n;
            d->cap = keep;
            d->bufs = keep ? cairn_malloc(keep * sizeof(void *)) : NULL;
            if (keep)
                memcpy(d->bufs, old + n, keep * sizeof(void *));
            d->count = keep;
            depot_publish(d, cls);
        }
        d->low_watermark = d->count;
        pthread_mutex_unlock(&d->lock);
        if (!n)
            continue;
        for (size_t i = 0; i < n; i++) {
            UNPOISON(old[i], class_bytes(cls));
            cairn_free(old[i]);
        }
        cairn_free(old);
        slot_counts_t *s = &pool->slots[cls];
        atomic_fetch_add_explicit(&s->trimmed, n, memory_order_relaxed);
        metric_counter_add(s->trimmed_metric, n);
        freed_bytes += n * class_bytes(cls);
    }
    return freed_bytes;
}

void chunk_pool_stats(chunk_pool_t *pool, chunk_pool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    int64_t in_use = 0;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < SLOT_COUNT; i++) {
        slot_counts_t *s = &pool->slots[i];
        out->gets += atomic_load_explicit(&s->gets, memory_order_relaxed);
        out->hits += atomic_load_explicit(&s->hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&s->misses, memory_order_relaxed);
        out->puts += atomic_load_explicit(&s->puts, memory_order_relaxed);
        out->trimmed += atomic_load_explicit(&s->trimmed, memory_order_relaxed);
        in_use += atomic_load_explicit(&s->in_use_bytes, memory_order_relaxed);
    }
    for (thread_cache_t *tc = pool->caches; tc; tc = tc->pool_next) {
        for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
            pending_counts_t *p = &tc->classes[cls].pending;
            uint64_t gets = atomic_load_explicit(&p->gets, memory_order_relaxed);
            uint64_t puts = atomic_load_explicit(&p->puts, memory_order_relaxed);
            out->gets += gets;
            out->hits += atomic_load_explicit(&p->hits, memory_order_relaxed);
            out->misses += atomic_load_explicit(&p->misses, memory_order_relaxed);
            out->puts += puts;
            in_use += ((int64_t)gets - (int64_t)puts) * (int64_t)class_bytes(cls);
        }
    }
    for (size_t cls = 0; cls < CHUNK_POOL_CLASSES; cls++) {
        depot_t *d = &pool->depots[cls];
        pthread_mutex_lock(&d->lock);
        out->bytes_held += d->count * class_bytes(cls);
        pthread_mutex_unlock(&d->lock);
    }
    pthread_mutex_unlock(&cache_lock);
    out->bytes_in_use = in_use > 0 ? (uint64_t)in_use : 0;
}
