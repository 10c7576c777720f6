/*
 * tsdb/querier.c: label matchers and series selection over the head.
 *
 * Selection, in the way Prometheus's PostingsForMatchers works:
 *   1. A matcher that cannot match the empty value ({a="x"}, {a=~"x.+"}, {a!=""}) requires the
 *      label: its candidates are the union of the postings of the values it matches. These
 *      candidate lists are intersected, smallest first.
 *   2. Without such a matcher, the candidates are all series.
 *   3. Matchers that do match the empty value ({a!="x"}, {a=~"x|"}, {a=""}) are checked on
 *      each remaining candidate's own label value ("" when absent).
 * So the cost follows the size of the postings used and of the result, not of the head.
 * The result is sorted by label set.
 *
 * A querier holds the head's query guard (read side) from creation to free: truncation waits
 * for it, so the series it found, their chunks and the chunk files stay in place. A series' chunks
 * are snapshotted when the set moves to it: the sealed chunk list in the time range and a copy of
 * the open chunk, both taken under the series' stripe lock; sealed chunk bytes are then read from
 * their mapping without locks.
 *
 * Regular expressions: "^(?s:RE)$" compiled by PCRE2 with JIT (UTF mode tolerant of invalid
 * UTF-8, $ only at the very end, as in Go's RE2). Fast paths skip PCRE2 for ".*", ".+", a
 * literal, an alternation of literals (a|b|c) and a literal prefix followed by ".*".
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tsdb/head.h"

typedef enum fast_kind {
    FAST_NONE,     /* run PCRE2 */
    FAST_ANY,      /* .* */
    FAST_NONEMPTY, /* .+ */
    FAST_SET,      /* literal or a|b|c */
    FAST_PREFIX,   /* literal.* */
} fast_kind_t;

struct tsdb_matcher {
    tsdb_match_type_t type;
    char *name;
    char *value;
    fast_kind_t fast;
    char **set; /* FAST_SET literals; FAST_PREFIX: set[0] is the prefix */
    size_t set_count;
    pcre2_code *re;
};

static bool has_regex_meta(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (strchr(".^$*+?()[]{}|\\", s[i]))
            return true;
    return false;
}

static void analyse_regex(tsdb_matcher_t *m)
{
    const char *re = m->value;
    size_t len = strlen(re);
    if (strcmp(re, ".*") == 0) {
        m->fast = FAST_ANY;
        return;
    }
    if (strcmp(re, ".+") == 0) {
        m->fast = FAST_NONEMPTY;
        return;
    }
    if (len >= 2 && strcmp(re + len - 2, ".*") == 0 && !has_regex_meta(re, len - 2)) {
        m->fast = FAST_PREFIX;
        m->set = cairn_malloc(sizeof(char *));
        m->set[0] = cairn_strndup(re, len - 2);
        m->set_count = 1;
        return;
    }
    /* a|b|c of plain literals (a single literal is the one-element case). */
    for (const char *p = re; *p; p++)
        if (*p != '|' && strchr(".^$*+?()[]{}\\", *p))
            return;
    const char *start = re;
    for (const char *p = re;; p++) {
        if (*p == '|' || *p == '\0') {
            m->set = cairn_realloc(m->set, (m->set_count + 1) * sizeof(char *));
            m->set[m->set_count++] = cairn_strndup(start, (size_t)(p - start));
            if (!*p)
                break;
            start = p + 1;
        }
    }
    m->fast = FAST_SET;
}

tsdb_matcher_t *tsdb_matcher_new(tsdb_match_type_t type, const char *name, const char *value,
                                 cairn_error_t *err)
{
    tsdb_matcher_t *m = cairn_calloc(1, sizeof(*m));
    m->type = type;
    m->name = cairn_strdup(name);
    m->value = cairn_strdup(value);
    if (type == TSDB_MATCH_EQUAL || type == TSDB_MATCH_NOT_EQUAL)
        return m;
    analyse_regex(m);
    if (m->fast != FAST_NONE)
        return m;
    char *pattern = cairn_sprintf("^(?s:%s)$", value);
    int code;
    PCRE2_SIZE offset;
    m->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &code,
                          &offset, NULL);
    cairn_free(pattern);
    if (!m->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        cairn_error_set(err, -EINVAL, "error parsing regexp \"%s\": %s", value, (char *)msg);
        tsdb_matcher_free(m);
        return NULL;
    }
    pcre2_jit_compile(m->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if absent */
    return m;
}

void tsdb_matcher_free(tsdb_matcher_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->set_count; i++)
        cairn_free(m->set[i]);
    cairn_free(m->set);
    if (m->re)
        pcre2_code_free(m->re);
    cairn_free(m->name);
    cairn_free(m->value);
    cairn_free(m);
}

static _Thread_local pcre2_match_data *match_data;
/* Frees a thread's match data when the thread exits (query threads come and go with the HTTP
 * server): the key's destructor gets the pointer the thread registered. */
static pthread_key_t match_data_key;
static pthread_once_t match_data_once = PTHREAD_ONCE_INIT;

static void match_data_free(void *md)
{
    pcre2_match_data_free(md);
}

static void match_data_key_create(void)
{
    pthread_key_create(&match_data_key, match_data_free);
}

static pcre2_match_data *thread_match_data(void)
{
    if (!match_data) {
        match_data = pcre2_match_data_create(1, NULL);
        pthread_once(&match_data_once, match_data_key_create);
        pthread_setspecific(match_data_key, match_data);
    }
    return match_data;
}

static bool regex_matches(const tsdb_matcher_t *m, const char *v)
{
    switch (m->fast) {
    case FAST_ANY: return true;
    case FAST_NONEMPTY: return *v != '\0';
    case FAST_PREFIX: return strncmp(v, m->set[0], strlen(m->set[0])) == 0;
    case FAST_SET:
        for (size_t i = 0; i < m->set_count; i++)
            if (strcmp(v, m->set[i]) == 0)
                return true;
        return false;
    case FAST_NONE: break;
    }
    return pcre2_match(m->re, (PCRE2_SPTR)v, strlen(v), 0, 0, thread_match_data(), NULL) >= 0;
}

bool tsdb_matcher_matches(const tsdb_matcher_t *m, const char *value)
{
    switch (m->type) {
    case TSDB_MATCH_EQUAL: return strcmp(value, m->value) == 0;
    case TSDB_MATCH_NOT_EQUAL: return strcmp(value, m->value) != 0;
    case TSDB_MATCH_REGEX: return regex_matches(m, value);
    case TSDB_MATCH_NOT_REGEX: return !regex_matches(m, value);
    }
    return false;
}

/* ---- querier -----------------------------------------------------------------------------------
 */

struct tsdb_querier {
    tsdb_t *db;
    int64_t min_t, max_t;
    unsigned guard_slot;
};

tsdb_querier_t *tsdb_querier_new(tsdb_t *db, int64_t min_t, int64_t max_t)
{
    tsdb_querier_t *q = cairn_calloc(1, sizeof(*q));
    q->db = db;
    q->min_t = min_t;
    q->max_t = max_t;
    q->guard_slot = guard_read_lock(db->query_guard);
    return q;
}

void tsdb_querier_free(tsdb_querier_t *q)
{
    if (!q)
        return;
    guard_read_unlock(q->db->query_guard, q->guard_slot);
    cairn_free(q);
}

/* ---- postings arithmetic ----------------------------------------------------------------------
 */

typedef struct refs {
    tsdb_ref_t *items;
    size_t count;
} refs_t;

static int compare_refs(const void *a, const void *b)
{
    tsdb_ref_t x = *(const tsdb_ref_t *)a, y = *(const tsdb_ref_t *)b;
    return x < y ? -1 : x > y;
}

/* Union of the postings of every value of name that the matcher accepts. */
static refs_t postings_for_matcher(tsdb_t *db, const tsdb_matcher_t *m)
{
    refs_t out = {NULL, 0};
    symbols_t *syms = db->syms;
    uint32_t name_id = symbols_find(syms, m->name, strlen(m->name));
    if (!name_id)
        return out;
    if (m->type == TSDB_MATCH_EQUAL) {
        uint32_t value_id = symbols_find(syms, m->value, strlen(m->value));
        if (value_id)
            out.count = postings_get(db->series, name_id, value_id, &out.items);
        return out;
    }
    uint32_t *values;
    size_t nv = postings_values(db->series, name_id, &values);
    buf_t all = BUF_INIT;
    size_t lists = 0;
    for (size_t i = 0; i < nv; i++) {
        if (!tsdb_matcher_matches(m, symbols_string(syms, values[i])))
            continue;
        tsdb_ref_t *p;
        size_t n = postings_get(db->series, name_id, values[i], &p);
        buf_append(&all, p, n * sizeof(tsdb_ref_t));
        cairn_free(p);
        lists++;
    }
    cairn_free(values);
    out.count = all.len / sizeof(tsdb_ref_t);
    out.items = (tsdb_ref_t *)buf_detach(&all);
    /* One series has one value per name, so lists are disjoint: sorting suffices. */
    if (lists > 1)
        qsort(out.items, out.count, sizeof(tsdb_ref_t), compare_refs);
    return out;
}

/* a := a ∩ b (both sorted). */
static void intersect(refs_t *a, const refs_t *b)
{
    size_t i = 0, j = 0, n = 0;
    while (i < a->count && j < b->count) {
        if (a->items[i] < b->items[j])
            i++;
        else if (a->items[i] > b->items[j])
            j++;
        else {
            a->items[n++] = a->items[i];
            i++, j++;
        }
    }
    a->count = n;
}

/* The value of label name_id on s, or "" if absent. */
static const char *series_label_value(tsdb_t *db, const tsdb_series_t *s, const char *name)
{
    for (size_t i = 0; i < s->label_count; i++)
        if (strcmp(symbols_string(db->syms, s->labels[2 * i]), name) == 0)
            return symbols_string(db->syms, s->labels[2 * i + 1]);
    return "";
}

static int compare_series_labels(tsdb_t *db, const tsdb_series_t *a, const tsdb_series_t *b)
{
    size_t n = a->label_count < b->label_count ? a->label_count : b->label_count;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            if (a->labels[2 * i + k] == b->labels[2 * i + k])
                continue;
            int c = strcmp(symbols_string(db->syms, a->labels[2 * i + k]),
                           symbols_string(db->syms, b->labels[2 * i + k]));
            if (c)
                return c;
        }
    }
    return (int)a->label_count - (int)b->label_count;
}

static int compare_series_ptr(const void *a, const void *b, void *db)
{
    return compare_series_labels(db, *(tsdb_series_t *const *)a, *(tsdb_series_t *const *)b);
}

/* Whether the chunk (first sample at min_t, last at max_t) has a sample in [q->min_t, q->max_t]:
 * its ends are samples, so only a range strictly inside (min_t, max_t) needs decoding. */
static bool chunk_has_samples(const tsdb_querier_t *q, int64_t min_t, int64_t max_t,
                              const uint8_t *data, size_t len)
{
    if (max_t < q->min_t || min_t > q->max_t || q->min_t > q->max_t)
        return false;
    if (q->min_t <= min_t || q->max_t >= max_t)
        return true;
    xor_iterator_t it;
    xor_iterator_init(&it, data, len);
    return xor_iterator_seek(&it, q->min_t) == 1 && it.t <= q->max_t;
}

/* Whether s has a sample in the querier's range (checked under its stripe lock). */
static bool series_has_samples(tsdb_querier_t *q, tsdb_series_t *s, buf_t *scratch)
{
    tsdb_t *db = q->db;
    bool found = false;
    pthread_mutex_t *lock = &db->stripes[series_stripe(db, s)].lock;
    pthread_mutex_lock(lock);
    for (uint32_t i = 0; i < s->sealed_count && !found; i++) {
        const chunk_meta_t *c = &s->sealed[i];
        if (c->max_t < q->min_t || c->min_t > q->max_t)
            continue;
        const uint8_t *data = NULL;
        size_t len = 0;
        bool inside = q->min_t > c->min_t && q->max_t < c->max_t;
        if (inside && head_chunks_read(db->chunks, c->ref, &data, &len, scratch) < 0)
            continue;
        found = chunk_has_samples(q, c->min_t, c->max_t, data, len);
    }
    if (!found && s->app.buf && s->app.count)
        found = chunk_has_samples(q, s->chunk_min_t,
                                  atomic_load_explicit(&s->max_t, memory_order_relaxed), s->app.buf,
                                  xor_appender_bytes(&s->app));
    pthread_mutex_unlock(lock);
    return found;
}

/* The matching series, sorted by labels. */
static size_t select_series(tsdb_querier_t *q, const tsdb_matcher_t *const *matchers, size_t count,
                            tsdb_series_t ***out)
{
    tsdb_t *db = q->db;
    refs_t cand = {NULL, 0};
    bool have = false;
    for (size_t i = 0; i < count; i++) {
        if (tsdb_matcher_matches(matchers[i], ""))
            continue;
        refs_t r = postings_for_matcher(db, matchers[i]);
        if (!have) {
            cand = r;
            have = true;
        } else {
            if (r.count < cand.count) { /* keep the smaller as the accumulator */
                refs_t tmp = cand;
                cand = r;
                r = tmp;
            }
            intersect(&cand, &r);
            cairn_free(r.items);
        }
        if (cand.count == 0)
            break;
    }
    if (!have)
        cand.count = postings_all(db->series, &cand.items);

    tsdb_series_t **series = cairn_malloc((cand.count ? cand.count : 1) * sizeof(*series));
    size_t n = 0;
    buf_t scratch = BUF_INIT;
    for (size_t i = 0; i < cand.count; i++) {
        tsdb_series_t *s = series_map_by_ref(db->series, cand.items[i]);
        if (!s)
            continue;
        bool ok = true;
        for (size_t m = 0; m < count && ok; m++)
            if (tsdb_matcher_matches(matchers[m], ""))
                ok =
                    tsdb_matcher_matches(matchers[m], series_label_value(db, s, matchers[m]->name));
        if (ok && series_has_samples(q, s, &scratch))
            series[n++] = s;
    }
    cairn_free(cand.items);
    buf_free(&scratch);
    qsort_r(series, n, sizeof(*series), compare_series_ptr, db);
    *out = series;
    return n;
}

/* ---- series sets -------------------------------------------------------------------------------
 */

struct tsdb_series_set {
    tsdb_querier_t *q;
    tsdb_series_t **series;
    size_t count, pos; /* pos: index of the next series to load */
    tsdb_label_t *labels;
    size_t labels_cap;
    /* Snapshot of the current series. */
    chunk_meta_t *sealed;
    size_t sealed_count, sealed_cap;
    buf_t open_chunk;
    size_t chunk_index; /* next chunk to open: sealed[0..], then the open one */
    bool in_chunk;
    xor_iterator_t it;
    buf_t scratch;
};

tsdb_series_set_t *tsdb_querier_select(tsdb_querier_t *q, const tsdb_matcher_t *const *matchers,
                                       size_t count)
{
    tsdb_series_set_t *set = cairn_calloc(1, sizeof(*set));
    set->q = q;
    set->count = select_series(q, matchers, count, &set->series);
    return set;
}

size_t tsdb_series_set_count(const tsdb_series_set_t *set)
{
    return set->count;
}

/* Copies the chunks of s that overlap the range. Returns false if there are none. */
static bool snapshot_series(tsdb_series_set_t *set, tsdb_series_t *s)
{
    tsdb_t *db = set->q->db;
    set->sealed_count = 0;
    buf_reset(&set->open_chunk);
    pthread_mutex_t *lock = &db->stripes[series_stripe(db, s)].lock;
    pthread_mutex_lock(lock);
    for (uint32_t i = 0; i < s->sealed_count; i++) {
        if (s->sealed[i].max_t < set->q->min_t || s->sealed[i].min_t > set->q->max_t)
            continue;
        if (set->sealed_count == set->sealed_cap) {
            set->sealed_cap = set->sealed_cap ? set->sealed_cap * 2 : 8;
            set->sealed = cairn_realloc(set->sealed, set->sealed_cap * sizeof(chunk_meta_t));
        }
        set->sealed[set->sealed_count++] = s->sealed[i];
    }
    int64_t max_t = atomic_load_explicit(&s->max_t, memory_order_relaxed);
    if (s->app.buf && s->app.count && max_t >= set->q->min_t && s->chunk_min_t <= set->q->max_t)
        buf_append(&set->open_chunk, s->app.buf, xor_appender_bytes(&s->app));
    pthread_mutex_unlock(lock);
    set->chunk_index = 0;
    set->in_chunk = false;
    return set->sealed_count || set->open_chunk.len;
}

bool tsdb_series_set_next(tsdb_series_set_t *set)
{
    while (set->pos < set->count) {
        tsdb_series_t *s = set->series[set->pos++];
        if (!snapshot_series(set, s))
            continue;
        if (s->label_count > set->labels_cap) {
            set->labels_cap = s->label_count;
            set->labels = cairn_realloc(set->labels, set->labels_cap * sizeof(tsdb_label_t));
        }
        for (size_t i = 0; i < s->label_count; i++) {
            set->labels[i].name = symbols_string(set->q->db->syms, s->labels[2 * i]);
            set->labels[i].value = symbols_string(set->q->db->syms, s->labels[2 * i + 1]);
        }
        return true;
    }
    return false;
}

size_t tsdb_series_set_labels(tsdb_series_set_t *set, const tsdb_label_t **labels)
{
    *labels = set->labels;
    return set->pos ? set->series[set->pos - 1]->label_count : 0;
}

/* Opens the next chunk of the snapshot; false when there is none. */
static bool open_next_chunk(tsdb_series_set_t *set)
{
    tsdb_t *db = set->q->db;
    while (set->chunk_index < set->sealed_count) {
        const uint8_t *data;
        size_t len;
        uint64_t ref = set->sealed[set->chunk_index++].ref;
        if (head_chunks_read(db->chunks, ref, &data, &len, &set->scratch) == 0) {
            xor_iterator_init(&set->it, data, len);
            return true;
        }
        LOG_WARN("Unreadable head chunk skipped", "chunk_ref=%llu", (unsigned long long)ref);
    }
    if (set->chunk_index == set->sealed_count && set->open_chunk.len) {
        set->chunk_index++;
        xor_iterator_init(&set->it, (const uint8_t *)set->open_chunk.data, set->open_chunk.len);
        return true;
    }
    return false;
}

bool tsdb_series_set_sample(tsdb_series_set_t *set, int64_t *t, double *v)
{
    for (;;) {
        if (!set->in_chunk) {
            if (!open_next_chunk(set))
                return false;
            set->in_chunk = true;
            if (xor_iterator_seek(&set->it, set->q->min_t) != 1) {
                set->in_chunk = false;
                continue;
            }
        } else if (xor_iterator_next(&set->it) != 1) {
            set->in_chunk = false;
            continue;
        }
        if (set->it.t > set->q->max_t) {
            set->in_chunk = false;
            set->chunk_index = SIZE_MAX; /* chunks are in time order: nothing later matches */
            return false;
        }
        *t = set->it.t;
        *v = xor_iterator_value(&set->it);
        return true;
    }
}

void tsdb_series_set_free(tsdb_series_set_t *set)
{
    if (!set)
        return;
    cairn_free(set->series);
    cairn_free(set->labels);
    cairn_free(set->sealed);
    buf_free(&set->open_chunk);
    buf_free(&set->scratch);
    cairn_free(set);
}

/* ---- label names and values ---------------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts, removes duplicates and copies. */
static size_t finish_strings(const char **items, size_t n, char ***out)
{
    if (n > 1)
        qsort(items, n, sizeof(char *), compare_strings);
    char **res = cairn_malloc((n ? n : 1) * sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(res[k - 1], items[i]) != 0)
            res[k++] = cairn_strdup(items[i]);
    *out = res;
    return k;
}

size_t tsdb_querier_label_names(tsdb_querier_t *q, const tsdb_matcher_t *const *matchers,
                                size_t count, char ***out)
{
    tsdb_t *db = q->db;
    buf_t items = BUF_INIT;
    if (count == 0) {
        uint32_t *ids;
        size_t n = postings_names(db->series, &ids);
        for (size_t i = 0; i < n; i++) {
            const char *s = symbols_string(db->syms, ids[i]);
            buf_append(&items, &s, sizeof(s));
        }
        cairn_free(ids);
    } else {
        tsdb_series_t **series;
        size_t n = select_series(q, matchers, count, &series);
        for (size_t i = 0; i < n; i++)
            for (size_t l = 0; l < series[i]->label_count; l++) {
                const char *s = symbols_string(db->syms, series[i]->labels[2 * l]);
                buf_append(&items, &s, sizeof(s));
            }
        cairn_free(series);
    }
    size_t k = finish_strings((const char **)items.data, items.len / sizeof(char *), out);
    buf_free(&items);
    return k;
}

size_t tsdb_querier_label_values(tsdb_querier_t *q, const char *name,
                                 const tsdb_matcher_t *const *matchers, size_t count, char ***out)
{
    tsdb_t *db = q->db;
    buf_t items = BUF_INIT;
    if (count == 0) {
        uint32_t name_id = symbols_find(db->syms, name, strlen(name));
        uint32_t *ids = NULL;
        size_t n = name_id ? postings_values(db->series, name_id, &ids) : 0;
        for (size_t i = 0; i < n; i++) {
            const char *s = symbols_string(db->syms, ids[i]);
            buf_append(&items, &s, sizeof(s));
        }
        cairn_free(ids);
    } else {
        tsdb_series_t **series;
        size_t n = select_series(q, matchers, count, &series);
        for (size_t i = 0; i < n; i++) {
            const char *s = series_label_value(db, series[i], name);
            if (*s)
                buf_append(&items, &s, sizeof(s));
        }
        cairn_free(series);
    }
    size_t k = finish_strings((const char **)items.data, items.len / sizeof(char *), out);
    buf_free(&items);
    return k;
}

void tsdb_strings_free(char **strings, size_t count)
{
    for (size_t i = 0; i < count; i++)
        cairn_free(strings[i]);
    cairn_free(strings);
}
