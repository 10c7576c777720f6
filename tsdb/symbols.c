/*
 * tsdb/symbols.c: the symbol table: every label name and value is stored once and referred to
 * by a 32-bit id, so a series' label set is 8 bytes per label whatever the strings' lengths.
 *
 * Structure:
 *   - id -> symbol: a two-level table (a directory of SYMBOL_PAGE-entry pages), entries
 *     published with release stores, so symbols_string is a lock-free load.
 *   - string -> id: SYMBOL_STRIPES open-addressing tables keyed by the string's xxh3 hash,
 *     each behind its own mutex (cache-line padded).
 *   - reference counts live in the symbol and change under its string's stripe mutex, so a
 *     concurrent intern and release of one string are ordered; at zero the symbol leaves both
 *     tables, its id goes on a free list for reuse, and it is freed.
 *
 * Freed ids can be reused, so a reader must hold a reference (through a live series, which the
 * head's guard keeps alive) while it uses an id.
 */
#include <string.h>
#include <xxhash.h>

#include "tsdb/internal.h"

#define SYMBOL_PAGE_BITS 16 /* 64K ids per page; the directory is 512 KiB */
#define SYMBOL_PAGE      (1u << SYMBOL_PAGE_BITS)
#define SYMBOL_DIRECTORY (1u << (32 - SYMBOL_PAGE_BITS))
#define SYMBOL_STRIPES   256

typedef struct symbol {
    uint64_t hash;
    uint32_t refs; /* under the stripe mutex */
    uint32_t len;
    char str[];
} symbol_t;

typedef struct symbol_slot {
    uint64_t hash;
    uint32_t id; /* 0 = empty */
} symbol_slot_t;

typedef struct symbol_stripe {
    _Alignas(CAIRN_CACHE_LINE) pthread_mutex_t lock;
    symbol_slot_t *slots;
    size_t mask; /* capacity - 1 (power of two), 0 when unallocated */
    size_t used;
} symbol_stripe_t;

struct symbols {
    _Atomic(symbol_t *) *directory[SYMBOL_DIRECTORY]; /* pages, allocated on demand */
    pthread_mutex_t id_lock;                          /* next_id, free ids, page allocation */
    uint32_t next_id;
    uint32_t *free_ids;
    size_t free_count, free_cap;
    _Atomic uint64_t live, bytes;
    symbol_stripe_t stripes[SYMBOL_STRIPES];
};

symbols_t *symbols_new(void)
{
    symbols_t *syms = cairn_aligned_calloc(CAIRN_CACHE_LINE, sizeof(*syms));
    pthread_mutex_init(&syms->id_lock, NULL);
    syms->next_id = 1;
    for (size_t i = 0; i < SYMBOL_STRIPES; i++)
        pthread_mutex_init(&syms->stripes[i].lock, NULL);
    return syms;
}

void symbols_free(symbols_t *syms)
{
    if (!syms)
        return;
    for (size_t p = 0; p < SYMBOL_DIRECTORY; p++) {
        if (!syms->directory[p])
            continue;
        for (size_t i = 0; i < SYMBOL_PAGE; i++)
            cairn_free(atomic_load_explicit(&syms->directory[p][i], memory_order_relaxed));
        cairn_free(syms->directory[p]);
    }
    for (size_t i = 0; i < SYMBOL_STRIPES; i++) {
        cairn_free(syms->stripes[i].slots);
        pthread_mutex_destroy(&syms->stripes[i].lock);
    }
    cairn_free(syms->free_ids);
    pthread_mutex_destroy(&syms->id_lock);
    cairn_aligned_free(syms);
}

static _Atomic(symbol_t *) *slot_for_id(const symbols_t *syms, uint32_t id)
{
    _Atomic(symbol_t *) *page = syms->directory[id >> SYMBOL_PAGE_BITS];
    return page ? &page[id & (SYMBOL_PAGE - 1)] : NULL;
}

const char *symbols_string(const symbols_t *syms, uint32_t id)
{
    _Atomic(symbol_t *) *slot = slot_for_id(syms, id);
    symbol_t *sym = slot ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
    return sym ? sym->str : "";
}

static symbol_t *symbol_at(const symbols_t *syms, uint32_t id)
{
    return atomic_load_explicit(slot_for_id(syms, id), memory_order_acquire);
}

/* Allocates an id and publishes sym under it. */
static uint32_t id_assign(symbols_t *syms, symbol_t *sym)
{
    pthread_mutex_lock(&syms->id_lock);
    uint32_t id;
    if (syms->free_count) {
        id = syms->free_ids[--syms->free_count];
    } else {
        if (syms->next_id == UINT32_MAX)
            CAIRN_PANIC("symbol table full (2^32 symbols)");
        id = syms->next_id++;
        size_t page = id >> SYMBOL_PAGE_BITS;
        if (!syms->directory[page])
            syms->directory[page] = cairn_calloc(SYMBOL_PAGE, sizeof(_Atomic(symbol_t *)));
    }
    atomic_store_explicit(slot_for_id(syms, id), sym, memory_order_release);
    pthread_mutex_unlock(&syms->id_lock);
    return id;
}

static void id_retire(symbols_t *syms, uint32_t id)
{
    pthread_mutex_lock(&syms->id_lock);
    atomic_store_explicit(slot_for_id(syms, id), NULL, memory_order_release);
    if (syms->free_count == syms->free_cap) {
        syms->free_cap = syms->free_cap ? 2 * syms->free_cap : 256;
        syms->free_ids = cairn_realloc(syms->free_ids, syms->free_cap * sizeof(uint32_t));
    }
    syms->free_ids[syms->free_count++] = id;
    pthread_mutex_unlock(&syms->id_lock);
}

static symbol_stripe_t *stripe_for(symbols_t *syms, uint64_t hash)
{
    /* The low bits pick the slot inside a stripe; use high bits for the stripe. */
    return &syms->stripes[hash >> 56];
}

/* Finds the slot holding (s, len) or the empty slot where it belongs. */
static symbol_slot_t *stripe_probe(symbols_t *syms, symbol_stripe_t *st, uint64_t hash,
                                   const char *s, size_t len)
{
    for (size_t i = hash & st->mask;; i = (i + 1) & st->mask) {
        symbol_slot_t *slot = &st->slots[i];
        if (!slot->id)
            return slot;
        if (slot->hash == hash) {
            symbol_t *sym = symbol_at(syms, slot->id);
            if (sym->len == len && memcmp(sym->str, s, len) == 0)
                return slot;
        }
    }
}

static void stripe_grow(symbol_stripe_t *st)
{
    size_t old_cap = st->mask ? st->mask + 1 : 0;
    size_t cap = old_cap ? old_cap * 2 : 64;
    symbol_slot_t *old = st->slots;
    st->slots = cairn_calloc(cap, sizeof(*st->slots));
    st->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].id)
            continue;
        size_t j = old[i].hash & st->mask;
        while (st->slots[j].id)
            j = (j + 1) & st->mask;
        st->slots[j] = old[i];
    }
    cairn_free(old);
}

uint32_t symbols_intern(symbols_t *syms, const char *s, size_t len)
{
    uint64_t hash = XXH3_64bits(s, len);
    symbol_stripe_t *st = stripe_for(syms, hash);
    pthread_mutex_lock(&st->lock);
    if ((st->used + 1) * 4 > (st->mask + 1) * 3 || !st->mask)
        stripe_grow(st);
    symbol_slot_t *slot = stripe_probe(syms, st, hash, s, len);
    uint32_t id = slot->id;
    if (id) {
        symbol_at(syms, id)->refs++;
    } else {
        symbol_t *sym = cairn_malloc(sizeof(*sym) + len + 1);
        sym->hash = hash;
        sym->refs = 1;
        sym->len = (uint32_t)len;
        memcpy(sym->str, s, len);
        sym->str[len] = '\0';
        id = id_assign(syms, sym);
        slot->hash = hash;
        slot->id = id;
        st->used++;
        atomic_fetch_add_explicit(&syms->live, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&syms->bytes, len, memory_order_relaxed);
    }
    pthread_mutex_unlock(&st->lock);
    return id;
}

uint32_t symbols_find(symbols_t *syms, const char *s, size_t len)
{
    uint64_t hash = XXH3_64bits(s, len);
    symbol_stripe_t *st = stripe_for(syms, hash);
    pthread_mutex_lock(&st->lock);
    uint32_t id = st->mask ? stripe_probe(syms, st, hash, s, len)->id : 0;
    pthread_mutex_unlock(&st->lock);
    return id;
}

void symbols_retain(symbols_t *syms, uint32_t id)
{
    symbol_t *sym = symbol_at(syms, id);
    symbol_stripe_t *st = stripe_for(syms, sym->hash);
    pthread_mutex_lock(&st->lock);
    sym->refs++;
    pthread_mutex_unlock(&st->lock);
}

/* Removes the slot at index i with backward-shift deletion (keeps probe chains intact). */
static void stripe_delete(symbol_stripe_t *st, size_t i)
{
    for (size_t j = (i + 1) & st->mask; st->slots[j].id; j = (j + 1) & st->mask) {
        size_t home = st->slots[j].hash & st->mask;
        /* Move j back to i if its home is not in the cyclic range (i, j]. */
        bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            st->slots[i] = st->slots[j];
            i = j;
        }
    }
    st->slots[i].id = 0;
    st->used--;
}

void symbols_release(symbols_t *syms, uint32_t id)
{
    symbol_t *sym = symbol_at(syms, id);
    symbol_stripe_t *st = stripe_for(syms, sym->hash);
    pthread_mutex_lock(&st->lock);
    if (--sym->refs > 0) {
        pthread_mutex_unlock(&st->lock);
        return;
    }
    symbol_slot_t *slot = stripe_probe(syms, st, sym->hash, sym->str, sym->len);
    stripe_delete(st, (size_t)(slot - st->slots));
    id_retire(syms, id);
    pthread_mutex_unlock(&st->lock);
    atomic_fetch_sub_explicit(&syms->live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&syms->bytes, sym->len, memory_order_relaxed);
    cairn_free(sym);
}

void symbols_stats(symbols_t *syms, uint64_t *count, uint64_t *bytes)
{
    *count = atomic_load_explicit(&syms->live, memory_order_relaxed);
    *bytes = atomic_load_explicit(&syms->bytes, memory_order_relaxed);
}
