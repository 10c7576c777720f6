/*
 * query/promql_eval_memory.c: memory of one query evaluation.
 *
 *   - Tracked allocations: every block carries a header linking it into the query's list, so
 *     an evaluation that fails (longjmp out of any depth) frees all of them at once, while
 *     intermediate values are still released as soon as they are used.
 *   - An arena of 64 KiB blocks for label strings and label sets, freed with the query.
 *   - Interned label sets: an open-addressing table by content, so that equal label sets share
 *     one pointer for the rest of the query (matching, grouping and output assembly then
 *     compare pointers).
 */
#define XXH_INLINE_ALL
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "query/promql_eval_internal.h"

#define ARENA_BLOCK_SIZE (64 * 1024)

struct promql_arena_block {
    promql_arena_block_t *next;
    size_t used, size;
    _Alignas(16) char data[];
};

void promql_eval_memory_init(promql_eval_ctx_t *ctx)
{
    ctx->allocs.prev = ctx->allocs.next = &ctx->allocs;
    ctx->arena = NULL;
    ctx->intern = NULL;
    ctx->intern_cap = ctx->intern_count = 0;
    ctx->empty_labels = promql_labels_intern(ctx, NULL, 0);
}

void promql_eval_memory_free(promql_eval_ctx_t *ctx)
{
    promql_alloc_header_t *h = ctx->allocs.next;
    while (h != &ctx->allocs) {
        promql_alloc_header_t *next = h->next;
        cairn_free(h);
        h = next;
    }
    ctx->allocs.prev = ctx->allocs.next = &ctx->allocs;
    promql_arena_block_t *b = ctx->arena;
    while (b) {
        promql_arena_block_t *next = b->next;
        cairn_free(b);
        b = next;
    }
    ctx->arena = NULL;
    cairn_free(ctx->intern);
    ctx->intern = NULL;
}

void *promql_eval_alloc(promql_eval_ctx_t *ctx, size_t size)
{
    promql_alloc_header_t *h = cairn_calloc(1, sizeof(*h) + size);
    h->size = size;
    h->next = ctx->allocs.next;
    h->prev = &ctx->allocs;
    ctx->allocs.next->prev = h;
    ctx->allocs.next = h;
    return h + 1;
}

void *promql_eval_realloc(promql_eval_ctx_t *ctx, void *p, size_t size)
{
    if (!p)
        return promql_eval_alloc(ctx, size);
    promql_alloc_header_t *h = (promql_alloc_header_t *)p - 1;
    promql_alloc_header_t *prev = h->prev, *next = h->next;
    promql_alloc_header_t *n = cairn_realloc(h, sizeof(*n) + size);
    n->size = size;
    prev->next = n;
    next->prev = n;
    return n + 1;
}

void promql_eval_release(promql_eval_ctx_t *ctx, void *p)
{
    (void)ctx;
    if (!p)
        return;
    promql_alloc_header_t *h = (promql_alloc_header_t *)p - 1;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    cairn_free(h);
}

void *promql_eval_arena_alloc(promql_eval_ctx_t *ctx, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    promql_arena_block_t *b = ctx->arena;
    if (!b || b->size - b->used < size) {
        size_t cap = size > ARENA_BLOCK_SIZE / 4 ? size : ARENA_BLOCK_SIZE;
        promql_arena_block_t *nb = cairn_malloc(sizeof(*nb) + cap);
        nb->used = 0;
        nb->size = cap;
        if (cap == size && b) {
            /* A large allocation gets its own block behind the current one. */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            ctx->arena = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

const char *promql_eval_arena_strdup(promql_eval_ctx_t *ctx, const char *s, size_t len)
{
    char *p = promql_eval_arena_alloc(ctx, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Label sets
 */
static uint64_t labels_hash(const promql_label_t *items, size_t count)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    for (size_t i = 0; i < count; i++) {
        XXH3_64bits_update(&st, items[i].name, strlen(items[i].name) + 1);
        XXH3_64bits_update(&st, items[i].value, strlen(items[i].value) + 1);
    }
    return XXH3_64bits_digest(&st);
}

static bool labels_equal(const promql_labels_t *ls, const promql_label_t *items, size_t count)
{
    if (ls->count != count)
        return false;
    for (size_t i = 0; i < count; i++)
        if (strcmp(ls->items[i].name, items[i].name) != 0 ||
            strcmp(ls->items[i].value, items[i].value) != 0)
            return false;
    return true;
}

static void intern_grow(promql_eval_ctx_t *ctx)
{
    size_t cap = ctx->intern_cap ? ctx->intern_cap * 2 : 256;
    const promql_labels_t **table = cairn_calloc(cap, sizeof(*table));
    for (size_t i = 0; i < ctx->intern_cap; i++) {
        const promql_labels_t *ls = ctx->intern[i];
        if (!ls)
            continue;
        size_t j = ls->hash & (cap - 1);
        while (table[j])
            j = (j + 1) & (cap - 1);
        table[j] = ls;
    }
    cairn_free(ctx->intern);
    ctx->intern = table;
    ctx->intern_cap = cap;
}

const promql_labels_t *promql_labels_intern(promql_eval_ctx_t *ctx, const promql_label_t *items,
                                            size_t count)
{
    if ((ctx->intern_count + 1) * 2 > ctx->intern_cap)
        intern_grow(ctx);
    uint64_t hash = labels_hash(items, count);
    size_t j = hash & (ctx->intern_cap - 1);
    while (ctx->intern[j]) {
        const promql_labels_t *ls = ctx->intern[j];
        if (ls->hash == hash && labels_equal(ls, items, count))
            return ls;
        j = (j + 1) & (ctx->intern_cap - 1);
    }
    promql_labels_t *ls =
        promql_eval_arena_alloc(ctx, sizeof(*ls) + count * sizeof(promql_label_t));
    ls->hash = hash;
    ls->count = (uint32_t)count;
    for (size_t i = 0; i < count; i++) {
        ls->items[i].name = promql_eval_arena_strdup(ctx, items[i].name, strlen(items[i].name));
        ls->items[i].value = promql_eval_arena_strdup(ctx, items[i].value, strlen(items[i].value));
    }
    ctx->intern[j] = ls;
    ctx->intern_count++;
    return ls;
}

const char *promql_labels_get(const promql_labels_t *ls, const char *name)
{
    size_t lo = 0, hi = ls->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ls->items[mid].name, name);
        if (c == 0)
            return ls->items[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int promql_labels_compare(const promql_labels_t *a, const promql_labels_t *b)
{
    if (a == b)
        return 0;
    size_t n = a->count < b->count ? a->count : b->count;
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a->items[i].name, b->items[i].name);
        if (c)
            return c;
        c = strcmp(a->items[i].value, b->items[i].value);
        if (c)
            return c;
    }
    return (a->count > b->count) - (a->count < b->count);
}

/* Go's strconv.Quote, closely enough for label values: printable ASCII and valid UTF-8 kept,
 * the usual escapes, other bytes as \xNN. */
void promql_go_quote(buf_t *out, const char *s)
{
    buf_append_char(out, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf_append_char(out, '\\');
            buf_append_char(out, (char)c);
            p++;
        } else if (c == '\n') {
            buf_append_str(out, "\\n");
            p++;
        } else if (c == '\t') {
            buf_append_str(out, "\\t");
            p++;
        } else if (c == '\r') {
            buf_append_str(out, "\\r");
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            buf_printf(out, "\\x%02x", c);
            p++;
        } else if (c < 0x80) {
            buf_append_char(out, (char)c);
            p++;
        } else {
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
            bool ok = len > 0 && c < 0xf5;
            for (size_t i = 1; ok && i < len; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok) {
                buf_append(out, p, len);
                p += len;
            } else {
                buf_printf(out, "\\x%02x", c);
                p++;
            }
        }
    }
    buf_append_char(out, '"');
}

void promql_labels_format(const promql_labels_t *ls, buf_t *out)
{
    buf_append_char(out, '{');
    for (size_t i = 0; i < ls->count; i++) {
        if (i)
            buf_append_str(out, ", ");
        buf_append_str(out, ls->items[i].name);
        buf_append_char(out, '=');
        promql_go_quote(out, ls->items[i].value);
    }
    buf_append_char(out, '}');
}

uint64_t promql_labels_prometheus_hash(const promql_labels_t *ls)
{
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    const unsigned char sep = 0xff;
    for (size_t i = 0; i < ls->count; i++) {
        XXH64_update(&st, ls->items[i].name, strlen(ls->items[i].name));
        XXH64_update(&st, &sep, 1);
        XXH64_update(&st, ls->items[i].value, strlen(ls->items[i].value));
        XXH64_update(&st, &sep, 1);
    }
    return XXH64_digest(&st);
}

bool promql_is_metadata_label(const char *name)
{
    return strcmp(name, "__name__") == 0 || strcmp(name, "__type__") == 0 ||
           strcmp(name, "__unit__") == 0;
}

const promql_labels_t *promql_labels_drop_metadata(promql_eval_ctx_t *ctx,
                                                   const promql_labels_t *ls)
{
    size_t keep = 0;
    for (size_t i = 0; i < ls->count; i++)
        keep += !promql_is_metadata_label(ls->items[i].name);
    if (keep == ls->count)
        return ls;
    promql_label_t stack[64];
    promql_label_t *items = keep <= 64 ? stack : cairn_malloc(keep * sizeof(*items));
    size_t n = 0;
    for (size_t i = 0; i < ls->count; i++)
        if (!promql_is_metadata_label(ls->items[i].name))
            items[n++] = ls->items[i];
    const promql_labels_t *r = promql_labels_intern(ctx, items, n);
    if (items != stack)
        cairn_free(items);
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * Builder
 */
static void builder_grow(promql_label_builder_t *b, size_t cap)
{
    b->cap = cap;
    if (b->ctx)
        b->items = promql_eval_realloc(b->ctx, b->items, cap * sizeof(*b->items));
    else
        b->items = cairn_realloc(b->items, cap * sizeof(*b->items));
}

void promql_label_builder_reset(promql_label_builder_t *b, const promql_labels_t *ls)
{
    b->count = 0;
    if (!ls)
        return;
    if (b->cap < ls->count + 4)
        builder_grow(b, ls->count + 4);
    memcpy(b->items, ls->items, ls->count * sizeof(*b->items));
    b->count = ls->count;
}

void promql_label_builder_del(promql_label_builder_t *b, const char *name)
{
    for (size_t i = 0; i < b->count; i++) {
        if (strcmp(b->items[i].name, name) == 0) {
            memmove(b->items + i, b->items + i + 1, (b->count - i - 1) * sizeof(*b->items));
            b->count--;
            return;
        }
    }
}

void promql_label_builder_set(promql_label_builder_t *b, const char *name, const char *value)
{
    if (!value || !*value) {
        promql_label_builder_del(b, name);
        return;
    }
    size_t i = 0;
    while (i < b->count) {
        int c = strcmp(b->items[i].name, name);
        if (c == 0) {
            b->items[i].value = value;
            return;
        }
        if (c > 0)
            break;
        i++;
    }
    if (b->count == b->cap)
        builder_grow(b, b->cap ? b->cap * 2 : 8);
    memmove(b->items + i + 1, b->items + i, (b->count - i) * sizeof(*b->items));
    b->items[i].name = name;
    b->items[i].value = value;
    b->count++;
}

void promql_label_builder_keep(promql_label_builder_t *b, char *const *names, size_t count)
{
    size_t n = 0;
    for (size_t i = 0; i < b->count; i++) {
        bool keep = false;
        for (size_t j = 0; j < count && !keep; j++)
            keep = strcmp(b->items[i].name, names[j]) == 0;
        if (keep)
            b->items[n++] = b->items[i];
    }
    b->count = n;
}

const promql_labels_t *promql_label_builder_intern(promql_eval_ctx_t *ctx,
                                                   promql_label_builder_t *b)
{
    return promql_labels_intern(ctx, b->items, b->count);
}

void promql_label_builder_free(promql_label_builder_t *b)
{
    if (b->ctx)
        promql_eval_release(b->ctx, b->items);
    else
        cairn_free(b->items);
    b->items = NULL;
    b->count = b->cap = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Label-set-keyed index
 */
void promql_series_index_init(promql_eval_ctx_t *ctx, promql_series_index_t *ix, size_t hint)
{
    size_t cap = 16;
    while (cap < hint * 2)
        cap *= 2;
    ix->cap = cap;
    ix->count = 0;
    ix->keys = promql_eval_alloc(ctx, cap * sizeof(*ix->keys));
    ix->values = promql_eval_alloc(ctx, cap * sizeof(*ix->values));
}

static size_t index_slot(const promql_series_index_t *ix, const promql_labels_t *key)
{
    size_t j = (key->hash ^ (uintptr_t)key) & (ix->cap - 1);
    while (ix->keys[j] && ix->keys[j] != key)
        j = (j + 1) & (ix->cap - 1);
    return j;
}

size_t promql_series_index_get_or_put(promql_eval_ctx_t *ctx, promql_series_index_t *ix,
                                      const promql_labels_t *key, size_t value)
{
    size_t j = index_slot(ix, key);
    if (ix->keys[j])
        return ix->values[j];
    if ((ix->count + 1) * 2 > ix->cap) {
        promql_series_index_t bigger;
        promql_series_index_init(ctx, &bigger, ix->cap);
        for (size_t i = 0; i < ix->cap; i++) {
            if (ix->keys[i]) {
                size_t k = index_slot(&bigger, ix->keys[i]);
                bigger.keys[k] = ix->keys[i];
                bigger.values[k] = ix->values[i];
                bigger.count++;
            }
        }
        promql_series_index_free(ctx, ix);
        *ix = bigger;
        j = index_slot(ix, key);
    }
    ix->keys[j] = key;
    ix->values[j] = value;
    ix->count++;
    return value;
}

void promql_series_index_free(promql_eval_ctx_t *ctx, promql_series_index_t *ix)
{
    promql_eval_release(ctx, ix->keys);
    promql_eval_release(ctx, ix->values);
    ix->keys = NULL;
    ix->values = NULL;
    ix->cap = ix->count = 0;
}
