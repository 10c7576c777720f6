/*
 * tsdb/series.c: series objects and the indexes that find them.
 *
 *   label map   label-set hash -> series, in MAP stripes (power of two, cache-line padded), each
 *               an open-addressing table under its own mutex; equal hashes are told apart by
 *               comparing label sets.
 *   ref table   series reference -> series, a two-level table (directory of pages of
 *               REF_PAGE entries) read without locks: writers holding a ref from a scrape cache
 *               or a remote-write batch find their series with two loads. References are
 *               never reused while the head is open. A writer takes them in blocks
 *               (ref_block_t), so the series one batch creates are numbered consecutively.
 *   postings    label name -> (label value -> sorted references), striped by name. Deleted
 *               references are left in place and filtered out through the ref table until a
 *               list is more stale than live, then the list is compacted in one pass, so
 *               deleting N series costs O(N) overall, not O(N) each.
 *
 * Lifetimes: series_map_unlink removes a series from all three; its memory stays valid until
 * series_free, which the head calls only while holding its guard's write side, when no
 * appender or querier can still hold the pointer. A ref-table page whose references were all
 * handed out and that holds no live series is freed at the same time
 * (series_map_reclaim_pages); references never given a series (the rest of a writer's block,
 * or those of series a checkpoint dropped before a restart) do not keep it alive.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "tsdb/internal.h"

#define REF_PAGE_BITS 16
#define REF_PAGE      (1u << REF_PAGE_BITS)
#define REF_DIRECTORY (1u << 16) /* 2^32 references */
/* Reference blocks (ref_block_t): a writer's first block in a batch is REF_BLOCK_MIN, then
 * each refill doubles up to REF_BLOCK_MAX. Postings lists insert a reference by shifting
 * the larger ones, so the maximum also bounds what one insert shifts when two writers fill
 * their blocks side by side. */
#define REF_BLOCK_MIN    16
#define REF_BLOCK_MAX    1024
#define POSTINGS_STRIPES 64

/* ---- labels -------------------------------------------------------------------------------- */

static int compare_label_names(const void *a, const void *b)
{
    return strcmp(((const tsdb_label_t *)a)->name, ((const tsdb_label_t *)b)->name);
}

uint64_t labels_hash(const tsdb_label_t *sorted, size_t count)
{
    /* name \xff value \xff ..., hashed in one call when it fits a stack buffer. */
    char stack[1024];
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        size_t nl = strlen(sorted[i].name), vl = strlen(sorted[i].value);
        if (n + nl + vl + 2 > sizeof(stack)) {
            n = SIZE_MAX;
            break;
        }
        memcpy(stack + n, sorted[i].name, nl);
        n += nl;
        stack[n++] = '\xff';
        memcpy(stack + n, sorted[i].value, vl);
        n += vl;
        stack[n++] = '\xff';
    }
    if (n != SIZE_MAX)
        return XXH3_64bits(stack, n);
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    static const char sep = '\xff';
    for (size_t i = 0; i < count; i++) {
        XXH3_64bits_update(&state, sorted[i].name, strlen(sorted[i].name));
        XXH3_64bits_update(&state, &sep, 1);
        XXH3_64bits_update(&state, sorted[i].value, strlen(sorted[i].value));
        XXH3_64bits_update(&state, &sep, 1);
    }
    return XXH3_64bits_digest(&state);
}

tsdb_reject_t labels_prepare(const tsdb_label_t *labels, size_t count, const tsdb_limits_t *limits,
                             tsdb_label_t *sorted, label_input_t *out, cairn_error_t *err)
{
    /* Empty values mean "no such label", as in Prometheus. */
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (labels[i].value && labels[i].value[0])
            sorted[n++] = labels[i];
    if (n == 0) {
        cairn_error_set(err, -EINVAL, "empty label set");
        return TSDB_REJECT_INVALID_LABELS;
    }
    if (limits->max_labels && n > limits->max_labels) {
        cairn_error_set(err, -EINVAL, "series has %zu labels, more than the limit of %zu", n,
                        limits->max_labels);
        return TSDB_REJECT_INVALID_LABELS;
    }
    /* Insertion sort: label sets are small and often already sorted. */
    bool in_order = true;
    for (size_t i = 1; i < n && in_order; i++)
        in_order = strcmp(sorted[i - 1].name, sorted[i].name) < 0;
    if (!in_order)
        qsort(sorted, n, sizeof(*sorted), compare_label_names);
    for (size_t i = 0; i < n; i++) {
        const char *name = sorted[i].name;
        size_t name_len = strlen(name), value_len = strlen(sorted[i].value);
        if (!label_name_is_valid(name)) {
            cairn_error_set(err, -EINVAL, "invalid label name \"%.*s\"",
                            (int)(name_len > 128 ? 128 : name_len), name);
            return TSDB_REJECT_INVALID_LABELS;
        }
        if (i && strcmp(sorted[i - 1].name, name) == 0) {
            cairn_error_set(err, -EINVAL, "duplicate label name \"%s\"", name);
            return TSDB_REJECT_INVALID_LABELS;
        }
        if (limits->max_name_length && name_len > limits->max_name_length) {
            cairn_error_set(err, -EINVAL, "label name \"%.64s...\" longer than %zu bytes", name,
                            limits->max_name_length);
            return TSDB_REJECT_INVALID_LABELS;
        }
        if (limits->max_value_length && value_len > limits->max_value_length) {
            cairn_error_set(err, -EINVAL, "value of label \"%s\" longer than %zu bytes", name,
                            limits->max_value_length);
            return TSDB_REJECT_INVALID_LABELS;
        }
    }
    out->labels = sorted;
    out->count = n;
    out->hash = labels_hash(sorted, n);
    out->stripe_key = 0;
    out->refs = NULL;
    return TSDB_REJECT_NONE;
}

/* ---- structures ---------------------------------------------------------------------------- */

typedef struct map_slot {
    uint64_t hash;
    tsdb_series_t *series; /* NULL = empty */
} map_slot_t;

typedef struct map_stripe {
    _Alignas(CAIRN_CACHE_LINE) pthread_mutex_t lock;
    map_slot_t *slots;
    size_t mask;
    size_t used;
} map_stripe_t;

typedef struct postings_list {
    uint32_t value_id; /* 0 = empty slot */
    uint32_t live;     /* references still linked */
    uint32_t count;    /* entries in refs (live + stale) */
    uint32_t sorted;   /* refs[0, sorted) are in increasing order; the rest in arrival order */
    uint32_t cap;
    tsdb_ref_t *refs;
} postings_list_t;

typedef struct postings_name {
    uint32_t name_id; /* 0 = empty slot */
    uint32_t used;    /* value slots in use */
    uint32_t mask;    /* value table capacity - 1 */
    postings_list_t *values;
} postings_name_t;

typedef struct postings_stripe {
    _Alignas(CAIRN_CACHE_LINE) pthread_mutex_t lock;
    postings_name_t *names;
    uint32_t mask;
    uint32_t used;
} postings_stripe_t;

typedef struct ref_page {
    _Atomic(tsdb_series_t *) slots[REF_PAGE];
    _Atomic uint32_t live; /* series published here and not unlinked yet */
} ref_page_t;

struct series_map {
    symbols_t *syms;
    map_stripe_t *stripes;
    size_t stripe_mask;
    _Atomic(ref_page_t *) *ref_directory; /* REF_DIRECTORY pages */
    pthread_mutex_t ref_lock;             /* next_ref and page allocation */
    tsdb_ref_t next_ref;
    _Atomic tsdb_ref_t max_ref;
    _Atomic uint64_t live;
    _Atomic uint32_t round; /* stamped into new series */
    postings_stripe_t postings[POSTINGS_STRIPES];
};

void series_map_set_round(series_map_t *map, uint32_t round)
{
    atomic_store_explicit(&map->round, round, memory_order_relaxed);
}

series_map_t *series_map_new(symbols_t *syms, unsigned stripes)
{
    series_map_t *map = cairn_aligned_calloc(CAIRN_CACHE_LINE, sizeof(*map));
    map->syms = syms;
    size_t n = 1;
    while (n < stripes)
        n <<= 1;
    map->stripes = cairn_aligned_calloc(CAIRN_CACHE_LINE, n * sizeof(*map->stripes));
    map->stripe_mask = n - 1;
    for (size_t i = 0; i < n; i++)
        pthread_mutex_init(&map->stripes[i].lock, NULL);
    map->ref_directory = cairn_calloc(REF_DIRECTORY, sizeof(*map->ref_directory));
    pthread_mutex_init(&map->ref_lock, NULL);
    map->next_ref = 1;
    for (size_t i = 0; i < POSTINGS_STRIPES; i++)
        pthread_mutex_init(&map->postings[i].lock, NULL);
    return map;
}

symbols_t *series_map_symbols(series_map_t *map)
{
    return map->syms;
}

/* ---- ref table ------------------------------------------------------------------------------ */

static _Atomic(tsdb_series_t *) *ref_slot(series_map_t *map, tsdb_ref_t ref)
{
    if (ref == 0 || ref >= ((tsdb_ref_t)REF_DIRECTORY << REF_PAGE_BITS))
        return NULL;
    ref_page_t *page =
        atomic_load_explicit(&map->ref_directory[ref >> REF_PAGE_BITS], memory_order_acquire);
    return page ? &page->slots[ref & (REF_PAGE - 1)] : NULL;
}

tsdb_series_t *series_map_by_ref(series_map_t *map, tsdb_ref_t ref)
{
    _Atomic(tsdb_series_t *) *slot = ref_slot(map, ref);
    return slot ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
}

tsdb_ref_t series_map_max_ref(series_map_t *map)
{
    return atomic_load_explicit(&map->max_ref, memory_order_relaxed);
}

/* Makes sure the page for ref exists and publishes s there. */
static void ref_publish(series_map_t *map, tsdb_ref_t ref, tsdb_series_t *s)
{
    size_t page_index = ref >> REF_PAGE_BITS;
    if (page_index >= REF_DIRECTORY)
        CAIRN_PANIC("series reference space exhausted (%llu)", (unsigned long long)ref);
    ref_page_t *page = atomic_load_explicit(&map->ref_directory[page_index], memory_order_acquire);
    if (!page) {
        pthread_mutex_lock(&map->ref_lock);
        page = atomic_load_explicit(&map->ref_directory[page_index], memory_order_relaxed);
        if (!page) {
            page = cairn_calloc(1, sizeof(*page));
            atomic_store_explicit(&map->ref_directory[page_index], page, memory_order_release);
        }
        pthread_mutex_unlock(&map->ref_lock);
    }
    atomic_store_explicit(&page->slots[ref & (REF_PAGE - 1)], s, memory_order_release);
    atomic_fetch_add_explicit(&page->live, 1, memory_order_relaxed);
    tsdb_ref_t max = atomic_load_explicit(&map->max_ref, memory_order_relaxed);
    while (ref > max && !atomic_compare_exchange_weak_explicit(
                            &map->max_ref, &max, ref, memory_order_relaxed, memory_order_relaxed))
        ;
}

static tsdb_ref_t ref_allocate(series_map_t *map, ref_block_t *blk)
{
    if (blk && blk->next < blk->end)
        return blk->next++;
    uint32_t n = 1;
    if (blk) {
        n = blk->size ? blk->size * 2 : REF_BLOCK_MIN;
        blk->size = n = n > REF_BLOCK_MAX ? REF_BLOCK_MAX : n;
    }
    pthread_mutex_lock(&map->ref_lock);
    tsdb_ref_t ref = map->next_ref;
    map->next_ref += n;
    pthread_mutex_unlock(&map->ref_lock);
    if (blk) {
        blk->next = ref + 1;
        blk->end = ref + n;
    }
    return ref;
}

void series_map_release_refs(series_map_t *map, ref_block_t *blk)
{
    pthread_mutex_lock(&map->ref_lock);
    if (blk->next < blk->end && map->next_ref == blk->end)
        map->next_ref = blk->next;
    pthread_mutex_unlock(&map->ref_lock);
    blk->next = blk->end = 0;
}

/* ---- postings ---------------------------------------------------------------------------- */

static postings_stripe_t *postings_stripe(series_map_t *map, uint32_t name_id)
{
    return &map->postings[(name_id * 0x9E3779B1u) >> 26];
}

static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* Finds the name entry (or its empty slot when create is true and it is absent). */
static postings_name_t *postings_name_find(postings_stripe_t *st, uint32_t name_id, bool create)
{
    if (create && (st->used + 1) * 4 > (st->mask + 1) * 3) {
        uint32_t old_cap = st->names ? st->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 16;
        postings_name_t *old = st->names;
        st->names = cairn_calloc(cap, sizeof(*st->names));
        st->mask = cap - 1;
        for (uint32_t i = 0; i < old_cap; i++) {
            if (!old[i].name_id)
                continue;
            uint32_t j = mix32(old[i].name_id) & st->mask;
            while (st->names[j].name_id)
                j = (j + 1) & st->mask;
            st->names[j] = old[i];
        }
        cairn_free(old);
    }
    if (!st->names)
        return NULL;
    for (uint32_t i = mix32(name_id) & st->mask;; i = (i + 1) & st->mask) {
        postings_name_t *n = &st->names[i];
        if (n->name_id == name_id)
            return n;
        if (!n->name_id) {
            if (!create)
                return NULL;
            n->name_id = name_id;
            st->used++;
            return n;
        }
    }
}

static postings_list_t *postings_value_find(postings_name_t *n, uint32_t value_id, bool create)
{
    if (create && (n->used + 1) * 4 > (n->mask + 1) * 3) {
        uint32_t old_cap = n->values ? n->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 4;
        postings_list_t *old = n->values;
        n->values = cairn_calloc(cap, sizeof(*n->values));
        n->mask = cap - 1;
        for (uint32_t i = 0; i < old_cap; i++) {
            if (!old[i].value_id)
                continue;
            uint32_t j = mix32(old[i].value_id) & n->mask;
            while (n->values[j].value_id)
                j = (j + 1) & n->mask;
            n->values[j] = old[i];
        }
        cairn_free(old);
    }
    if (!n->values)
        return NULL;
    for (uint32_t i = mix32(value_id) & n->mask;; i = (i + 1) & n->mask) {
        postings_list_t *l = &n->values[i];
        if (l->value_id == value_id)
            return l;
        if (!l->value_id) {
            if (!create)
                return NULL;
            l->value_id = value_id;
            n->used++;
            return l;
        }
    }
}

/* Appends; a reference smaller than the last one starts (or joins) an unsorted tail, which
 * postings_list_sort merges in when the list is read. Writers that fill their reference
 * blocks side by side would otherwise shift each other's entries on every insert. */
static void postings_list_insert(postings_list_t *l, tsdb_ref_t ref)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->refs = cairn_realloc(l->refs, l->cap * sizeof(tsdb_ref_t));
    }
    if (l->sorted == l->count && (l->count == 0 || l->refs[l->count - 1] < ref))
        l->sorted++;
    l->refs[l->count++] = ref;
    l->live++;
}

static int ref_cmp(const void *a, const void *b)
{
    tsdb_ref_t x = *(const tsdb_ref_t *)a, y = *(const tsdb_ref_t *)b;
    return (x > y) - (x < y);
}

/* Sorts the unsorted tail and merges it into the sorted prefix: O(n + k log k) for a tail of
 * k entries. */
static void postings_list_sort(postings_list_t *l)
{
    uint32_t k = l->count - l->sorted;
    if (k == 0)
        return;
    tsdb_ref_t *tail = cairn_malloc(k * sizeof(tsdb_ref_t));
    memcpy(tail, l->refs + l->sorted, k * sizeof(tsdb_ref_t));
    qsort(tail, k, sizeof(tsdb_ref_t), ref_cmp);
    /* Merge from the back: the free room at the end is exactly the tail's size. */
    uint32_t i = l->sorted, j = k, out = l->count;
    while (j > 0) {
        if (i > 0 && l->refs[i - 1] > tail[j - 1])
            l->refs[--out] = l->refs[--i];
        else
            l->refs[--out] = tail[--j];
    }
    cairn_free(tail);
    l->sorted = l->count;
}

static void postings_add(series_map_t *map, uint32_t name_id, uint32_t value_id, tsdb_ref_t ref)
{
    postings_stripe_t *st = postings_stripe(map, name_id);
    pthread_mutex_lock(&st->lock);
    postings_name_t *n = postings_name_find(st, name_id, true);
    postings_list_insert(postings_value_find(n, value_id, true), ref);
    pthread_mutex_unlock(&st->lock);
}

/* Deletes the value slot of an emptied list, keeping probe chains intact. */
static void postings_value_delete(postings_name_t *n, postings_list_t *l)
{
    cairn_free(l->refs);
    uint32_t i = (uint32_t)(l - n->values);
    for (uint32_t j = (i + 1) & n->mask; n->values[j].value_id; j = (j + 1) & n->mask) {
        uint32_t home = mix32(n->values[j].value_id) & n->mask;
        bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            n->values[i] = n->values[j];
            i = j;
        }
    }
    memset(&n->values[i], 0, sizeof(n->values[i]));
    n->used--;
}

/* Drops stale references (those whose series is gone from the ref table). */
static void postings_list_compact(series_map_t *map, postings_list_t *l)
{
    uint32_t out = 0, sorted = 0;
    for (uint32_t i = 0; i < l->count; i++) {
        if (i == l->sorted)
            sorted = out; /* order is kept, so the sorted prefix is what came from it */
        if (series_map_by_ref(map, l->refs[i]))
            l->refs[out++] = l->refs[i];
    }
    l->sorted = l->sorted == l->count ? out : sorted;
    l->count = out;
}

static void postings_remove(series_map_t *map, uint32_t name_id, uint32_t value_id)
{
    postings_stripe_t *st = postings_stripe(map, name_id);
    pthread_mutex_lock(&st->lock);
    postings_name_t *n = postings_name_find(st, name_id, false);
    postings_list_t *l = n ? postings_value_find(n, value_id, false) : NULL;
    if (l) {
        l->live--;
        if (l->live == 0)
            postings_value_delete(n, l);
        else if (l->count > 16 && l->count - l->live > l->live)
            postings_list_compact(map, l);
    }
    pthread_mutex_unlock(&st->lock);
}

size_t postings_get(series_map_t *map, uint32_t name_id, uint32_t value_id, tsdb_ref_t **out)
{
    postings_stripe_t *st = postings_stripe(map, name_id);
    size_t n_out = 0;
    *out = NULL;
    pthread_mutex_lock(&st->lock);
    postings_name_t *n = postings_name_find(st, name_id, false);
    postings_list_t *l = n ? postings_value_find(n, value_id, false) : NULL;
    if (l && l->count) {
        postings_list_sort(l);
        *out = cairn_malloc(l->count * sizeof(tsdb_ref_t));
        for (uint32_t i = 0; i < l->count; i++)
            if (series_map_by_ref(map, l->refs[i]))
                (*out)[n_out++] = l->refs[i];
    }
    pthread_mutex_unlock(&st->lock);
    return n_out;
}

size_t postings_values(series_map_t *map, uint32_t name_id, uint32_t **out)
{
    postings_stripe_t *st = postings_stripe(map, name_id);
    size_t count = 0;
    *out = NULL;
    pthread_mutex_lock(&st->lock);
    postings_name_t *n = postings_name_find(st, name_id, false);
    if (n && n->used) {
        *out = cairn_malloc(n->used * sizeof(uint32_t));
        for (uint32_t i = 0; i <= n->mask; i++)
            if (n->values[i].value_id)
                (*out)[count++] = n->values[i].value_id;
    }
    pthread_mutex_unlock(&st->lock);
    return count;
}

size_t postings_names(series_map_t *map, uint32_t **out)
{
    buf_t ids = BUF_INIT;
    for (size_t s = 0; s < POSTINGS_STRIPES; s++) {
        postings_stripe_t *st = &map->postings[s];
        pthread_mutex_lock(&st->lock);
        for (uint32_t i = 0; st->names && i <= st->mask; i++)
            if (st->names[i].name_id && st->names[i].used)
                buf_append(&ids, &st->names[i].name_id, sizeof(uint32_t));
        pthread_mutex_unlock(&st->lock);
    }
    size_t count = ids.len / sizeof(uint32_t);
    *out = (uint32_t *)buf_detach(&ids);
    return count;
}

size_t postings_all(series_map_t *map, tsdb_ref_t **out)
{
    buf_t refs = BUF_INIT;
    tsdb_ref_t max = series_map_max_ref(map);
    for (tsdb_ref_t page = 0; page <= (max >> REF_PAGE_BITS); page++) {
        ref_page_t *p = atomic_load_explicit(&map->ref_directory[page], memory_order_acquire);
        if (!p)
            continue;
        for (size_t i = 0; i < REF_PAGE; i++) {
            tsdb_series_t *s = atomic_load_explicit(&p->slots[i], memory_order_acquire);
            if (s)
                buf_append(&refs, &s->ref, sizeof(tsdb_ref_t));
        }
    }
    size_t count = refs.len / sizeof(tsdb_ref_t);
    *out = (tsdb_ref_t *)buf_detach(&refs);
    return count;
}

/* ---- the label map --------------------------------------------------------------------------- */

static bool series_has_labels(const series_map_t *map, const tsdb_series_t *s,
                              const label_input_t *in)
{
    if (s->label_count != in->count)
        return false;
    for (size_t i = 0; i < in->count; i++)
        if (strcmp(symbols_string(map->syms, s->labels[2 * i]), in->labels[i].name) != 0 ||
            strcmp(symbols_string(map->syms, s->labels[2 * i + 1]), in->labels[i].value) != 0)
            return false;
    return true;
}

static map_slot_t *map_probe(series_map_t *map, map_stripe_t *st, const label_input_t *in)
{
    for (size_t i = (in->hash >> 16) & st->mask;; i = (i + 1) & st->mask) {
        map_slot_t *slot = &st->slots[i];
        if (!slot->series || (slot->hash == in->hash && series_has_labels(map, slot->series, in)))
            return slot;
    }
}

static void map_grow(map_stripe_t *st)
{
    size_t old_cap = st->slots ? st->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 16;
    map_slot_t *old = st->slots;
    st->slots = cairn_calloc(cap, sizeof(*st->slots));
    st->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].series)
            continue;
        size_t j = (old[i].hash >> 16) & st->mask;
        while (st->slots[j].series)
            j = (j + 1) & st->mask;
        st->slots[j] = old[i];
    }
    cairn_free(old);
}

static tsdb_series_t *series_new(series_map_t *map, const label_input_t *in, tsdb_ref_t ref)
{
    tsdb_series_t *s = cairn_calloc(1, sizeof(*s) + 2 * in->count * sizeof(uint32_t));
    s->ref = ref;
    s->hash = in->hash;
    s->label_count = (uint16_t)in->count;
    s->created_round = atomic_load_explicit(&map->round, memory_order_relaxed);
    s->stripe_key = in->stripe_key ? in->stripe_key : (uint32_t)(ref >> SERIES_STRIPE_SHIFT);
    atomic_store_explicit(&s->max_t, INT64_MIN, memory_order_relaxed);
    for (size_t i = 0; i < in->count; i++) {
        s->labels[2 * i] =
            symbols_intern(map->syms, in->labels[i].name, strlen(in->labels[i].name));
        s->labels[2 * i + 1] =
            symbols_intern(map->syms, in->labels[i].value, strlen(in->labels[i].value));
    }
    return s;
}

static tsdb_series_t *map_insert(series_map_t *map, const label_input_t *in, tsdb_ref_t ref,
                                 bool *created)
{
    map_stripe_t *st = &map->stripes[in->hash & map->stripe_mask];
    pthread_mutex_lock(&st->lock);
    if ((st->used + 1) * 4 > (st->mask + 1) * 3 || !st->slots)
        map_grow(st);
    map_slot_t *slot = map_probe(map, st, in);
    tsdb_series_t *s = slot->series;
    *created = s == NULL;
    if (!s) {
        if (!ref)
            ref = ref_allocate(map, in->refs);
        s = series_new(map, in, ref);
        slot->hash = in->hash;
        slot->series = s;
        st->used++;
        /* Visible by reference and in postings before the stripe is released, so a second
         * creator of the same labels finds it complete. */
        ref_publish(map, ref, s);
        for (size_t i = 0; i < in->count; i++)
            postings_add(map, s->labels[2 * i], s->labels[2 * i + 1], ref);
        atomic_fetch_add_explicit(&map->live, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&st->lock);
    return s;
}

tsdb_series_t *series_map_get_or_create(series_map_t *map, const label_input_t *in, bool *created)
{
    return map_insert(map, in, 0, created);
}

tsdb_series_t *series_map_create_with_ref(series_map_t *map, const label_input_t *in,
                                          tsdb_ref_t ref)
{
    pthread_mutex_lock(&map->ref_lock);
    if (ref >= map->next_ref)
        map->next_ref = ref + 1;
    pthread_mutex_unlock(&map->ref_lock);
    bool created;
    return map_insert(map, in, ref, &created);
}

void series_map_unlink(series_map_t *map, tsdb_series_t *s)
{
    /* Label map: find the slot holding exactly this series. */
    map_stripe_t *st = &map->stripes[s->hash & map->stripe_mask];
    pthread_mutex_lock(&st->lock);
    for (size_t i = (s->hash >> 16) & st->mask; st->slots[i].series; i = (i + 1) & st->mask) {
        if (st->slots[i].series != s)
            continue;
        for (size_t j = (i + 1) & st->mask; st->slots[j].series; j = (j + 1) & st->mask) {
            size_t home = (st->slots[j].hash >> 16) & st->mask;
            bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
            if (!in_range) {
                st->slots[i] = st->slots[j];
                i = j;
            }
        }
        st->slots[i].series = NULL;
        st->used--;
        break;
    }
    pthread_mutex_unlock(&st->lock);

    _Atomic(tsdb_series_t *) *slot = ref_slot(map, s->ref);
    if (slot)
        atomic_store_explicit(slot, NULL, memory_order_release);
    for (size_t i = 0; i < s->label_count; i++)
        postings_remove(map, s->labels[2 * i], s->labels[2 * i + 1]);
    atomic_fetch_sub_explicit(&map->live, 1, memory_order_relaxed);

    ref_page_t *page =
        atomic_load_explicit(&map->ref_directory[s->ref >> REF_PAGE_BITS], memory_order_relaxed);
    if (page)
        atomic_fetch_sub_explicit(&page->live, 1, memory_order_relaxed);
}

void series_free(series_map_t *map, tsdb_series_t *s)
{
    for (size_t i = 0; i < 2u * s->label_count; i++)
        symbols_release(map->syms, s->labels[i]);
    cairn_free(s->sealed);
    cairn_free(s);
}

uint64_t series_map_count(series_map_t *map)
{
    return atomic_load_explicit(&map->live, memory_order_relaxed);
}

void series_map_reclaim_pages(series_map_t *map)
{
    /* A page can go when all of its references were handed out and it holds no live series.
     * Only called with the head's guard held for writing: no reader is inside the table, and
     * no writer is between taking a reference and publishing it. */
    pthread_mutex_lock(&map->ref_lock);
    tsdb_ref_t next = map->next_ref;
    pthread_mutex_unlock(&map->ref_lock);
    for (size_t p = 0; p < REF_DIRECTORY && ((tsdb_ref_t)(p + 1) << REF_PAGE_BITS) <= next; p++) {
        ref_page_t *page = atomic_load_explicit(&map->ref_directory[p], memory_order_relaxed);
        if (page && atomic_load_explicit(&page->live, memory_order_relaxed) == 0) {
            atomic_store_explicit(&map->ref_directory[p], NULL, memory_order_release);
            cairn_free(page);
        }
    }
}

void series_map_free(series_map_t *map)
{
    if (!map)
        return;
    tsdb_ref_t max = series_map_max_ref(map);
    for (size_t p = 0; p < REF_DIRECTORY && ((tsdb_ref_t)p << REF_PAGE_BITS) <= max; p++) {
        ref_page_t *page = atomic_load_explicit(&map->ref_directory[p], memory_order_relaxed);
        if (!page)
            continue;
        for (size_t i = 0; i < REF_PAGE; i++) {
            tsdb_series_t *s = atomic_load_explicit(&page->slots[i], memory_order_relaxed);
            if (s)
                series_free(map, s);
        }
        cairn_free(page);
    }
    cairn_free(map->ref_directory);
    for (size_t i = 0; i <= map->stripe_mask; i++) {
        cairn_free(map->stripes[i].slots);
        pthread_mutex_destroy(&map->stripes[i].lock);
    }
    cairn_aligned_free(map->stripes);
    for (size_t s = 0; s < POSTINGS_STRIPES; s++) {
        postings_stripe_t *st = &map->postings[s];
        for (uint32_t i = 0; st->names && i <= st->mask; i++) {
            postings_name_t *n = &st->names[i];
            for (uint32_t j = 0; n->values && j <= n->mask; j++)
                cairn_free(n->values[j].refs);
            cairn_free(n->values);
        }
        cairn_free(st->names);
        pthread_mutex_destroy(&st->lock);
    }
    pthread_mutex_destroy(&map->ref_lock);
    cairn_aligned_free(map);
}
