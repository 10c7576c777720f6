/*
 * tests/unit/check_tsdb_querier.c: unit tests for label matchers and series selection
 * (tsdb/querier.c) over a real head, through the public API in tsdb/tsdb.h.
 *
 * The matcher tests build a head of about 2000 series over job, instance and path labels
 * (path random: absent on some series, unicode, dots, pipes, newlines) and compare
 * tsdb_querier_select, tsdb_querier_label_names and tsdb_querier_label_values for many random
 * matcher combinations with a brute-force oracle written in plain C: Prometheus semantics, an
 * absent label is "", a regular expression is fully anchored (each pattern used has its own
 * hand-written predicate), results sorted by label set (label by label, name then value, then
 * the shorter set first). Other tests cover bad regular expressions, time-range filtering with
 * inclusive bounds, label names and values, and a querier that outlives a concurrent
 * truncation.
 *
 * Databases live in mkdtemp directories under a per-run base directory in /tmp, removed at the
 * end of the run.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "tsdb/tsdb.h"

#define HOUR_MS        ((int64_t)3600 * 1000)
#define CHUNK_RANGE_MS (2 * HOUR_MS)
#define T0             ((int64_t)236111 * CHUNK_RANGE_MS) /* 2h-aligned */

/* ---- helpers ---------------------------------------------------------------------------- */

static char base_dir[64];

#include "tests/test_util.h"

static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(rng_next(s) % n);
}

typedef struct testdb {
    char dir[128];
    metric_registry_t *reg;
    tsdb_t *db;
    tsdb_open_options_t opts;
} testdb_t;

static void tdb_open_new(testdb_t *t)
{
    snprintf(t->dir, sizeof(t->dir), "%s/db-XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    tsdb_open_options_init(&t->opts, t->dir);
    t->opts.head_window_ms = 100000 * HOUR_MS; /* no background truncation */
    t->reg = metric_registry_new();
    t->opts.registry = t->reg;
    cairn_error_t err = {{0}};
    t->db = tsdb_open(&t->opts, &err);
    ck_assert_msg(t->db != NULL, "tsdb_open(%s): %s", t->dir, err.message);
}

static void tdb_destroy(testdb_t *t)
{
    ck_assert_int_eq(tsdb_close(t->db), 0);
    metric_registry_free(t->reg);
    rm_rf(t->dir);
}

static tsdb_matcher_t *matcher(tsdb_match_type_t type, const char *name, const char *value)
{
    cairn_error_t err = {{0}};
    tsdb_matcher_t *m = tsdb_matcher_new(type, name, value, &err);
    ck_assert_msg(m != NULL, "matcher %s ~ \"%s\": %s", name, value, err.message);
    return m;
}

/* Appends one sample to the series with these labels (count pairs, NULL-terminated list). */
static void append_one(tsdb_appender_t *app, const tsdb_label_t *ls, size_t n, int64_t t, double v)
{
    tsdb_reject_t r = tsdb_append(app, 0, ls, n, t, v, NULL);
    ck_assert_msg(r == TSDB_REJECT_NONE, "append rejected: %s", tsdb_reject_message(r));
}

static void commit(tsdb_appender_t *app)
{
    tsdb_commit_result_t r;
    ck_assert_int_eq(tsdb_appender_commit(app, &r), 0);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_NONE);
}

/* ---- the oracle's series ------------------------------------------------------------------- */

#define MAX_LABELS 6

typedef struct oseries {
    size_t n;
    tsdb_label_t labels[MAX_LABELS]; /* sorted by name, no empty values; strings owned */
    int64_t t;
} oseries_t;

static int compare_label_names(const void *a, const void *b)
{
    return strcmp(((const tsdb_label_t *)a)->name, ((const tsdb_label_t *)b)->name);
}

/* Prometheus's labels.Compare. */
static int compare_label_sets(const tsdb_label_t *a, size_t an, const tsdb_label_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a[i].name, b[i].name);
        if (c)
            return c;
        c = strcmp(a[i].value, b[i].value);
        if (c)
            return c;
    }
    return an < bn ? -1 : an > bn;
}

static int compare_oseries(const void *a, const void *b)
{
    const oseries_t *x = *(const oseries_t *const *)a, *y = *(const oseries_t *const *)b;
    return compare_label_sets(x->labels, x->n, y->labels, y->n);
}

static const char *label_value(const oseries_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return "";
}

/* ---- regular expressions and their oracles ------------------------------------------------ */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static size_t last_index(const char *v)
{
    return strlen(v) - 1;
}

static bool o_any(const char *v)
{
    (void)v;
    return true;
}
static bool o_nonempty(const char *v)
{
    return v[0] != '\0';
}
static bool o_prefix_a(const char *v)
{
    return v[0] == 'a';
}
static bool o_abc(const char *v)
{
    return !strcmp(v, "a") || !strcmp(v, "b") || !strcmp(v, "c");
}
static bool o_ab_then_x(const char *v)
{
    return strlen(v) >= 2 && (v[0] == 'a' || v[0] == 'b') && v[last_index(v)] == 'x';
}
static bool o_empty(const char *v)
{
    return v[0] == '\0';
}
static bool o_x_or_empty(const char *v)
{
    return !strcmp(v, "x") || !*v;
}
static bool o_digits(const char *v)
{
    if (!*v)
        return false;
    for (; *v; v++)
        if (*v < '0' || *v > '9')
            return false;
    return true;
}
static bool o_prefix_eacute(const char *v)
{
    return strncmp(v, "é", strlen("é")) == 0;
}
static bool o_abx(const char *v)
{
    return !strcmp(v, "abx");
}
static bool o_suffix_x(const char *v)
{
    return *v && v[last_index(v)] == 'x';
}
static bool o_a_or_empty(const char *v)
{
    return !strcmp(v, "a") || !*v;
}
static bool o_no_a(const char *v)
{
    return strchr(v, 'a') == NULL;
}
static bool o_pipe_literal(const char *v)
{
    return !strcmp(v, "a|b");
}
static bool o_x_dot_opt(const char *v)
{
    return !strcmp(v, "x") || !strcmp(v, "x.");
}
static bool o_one_char(const char *v)
{
    return utf8_chars(v) == 1;
}
static bool o_host_1(const char *v)
{
    return strncmp(v, "host-1", 6) == 0;
}
static bool o_a_or_b_prefix(const char *v)
{
    return v[0] == 'a' || v[0] == 'b';
}
static bool o_b_any_x(const char *v)
{
    return utf8_chars(v) == 3 && v[0] == 'b' && v[last_index(v)] == 'x';
}
static bool o_contains_eacute(const char *v)
{
    return strstr(v, "é") != NULL;
}
static bool o_case_a(const char *v)
{
    return !strcmp(v, "a") || !strcmp(v, "A");
}
static bool o_a_or_bc(const char *v)
{
    return !strcmp(v, "a") || !strcmp(v, "bc");
}
static bool o_a_or_bplus(const char *v)
{
    if (!strcmp(v, "a"))
        return true;
    if (!*v)
        return false;
    for (; *v; v++)
        if (*v != 'b')
            return false;
    return true;
}
static bool o_dot_literal(const char *v)
{
    return !strcmp(v, "a.b");
}

typedef struct pattern {
    const char *re;
    bool (*fn)(const char *);
} pattern_t;

static const pattern_t patterns[] = {
    {".*", o_any},        {".+", o_nonempty},           {"a.*", o_prefix_a},
    {"a|b|c", o_abc},     {"(a|b).*x", o_ab_then_x},    {"", o_empty},
    {"x|", o_x_or_empty}, {"[0-9]+", o_digits},         {"é.*", o_prefix_eacute},
    {"abx", o_abx},       {".*x", o_suffix_x},          {"a|", o_a_or_empty},
    {"[^a]*", o_no_a},    {"a\\|b", o_pipe_literal},    {"x\\.?", o_x_dot_opt},
    {".", o_one_char},    {"host-1.*", o_host_1},       {"a.*|b.*", o_a_or_b_prefix},
    {"b.x", o_b_any_x},   {".*é.*", o_contains_eacute}, {"(?i)A", o_case_a},
    {"a|bc", o_a_or_bc},  {"a|b+", o_a_or_bplus},       {"a\\.b", o_dot_literal},
};

/* ---- the data set ------------------------------------------------------------------------- */

enum { NSERIES = 2000 };

static const char *const jobs[] = {"a", "b", "c", "abx", "zeta"};
static const char *const fixed_paths[] = {
    "x", "a",  "b",   "ax",  "bx", "é", "éx", "123", "a|b", "x|",   ".", "a.b",  "b\nx",
    "/", "x.", "bax", "béx", "c",  "A", "bc", "bbb", "0",   "a\nb", "|", "é|.x", "host-1"};
static const char *const path_pieces[] = {"a", "b", "x", "é", "ü",  ".", "|",
                                          "/", "0", "7", "-", "\n", " ", "ab"};

typedef struct dataset {
    oseries_t series[NSERIES];
    char *strings[NSERIES * MAX_LABELS];
    size_t nstrings;
} dataset_t;

static void ds_add(oseries_t *s, const char *name, const char *value)
{
    if (!value[0])
        return;
    s->labels[s->n].name = name;
    s->labels[s->n].value = value;
    s->n++;
}

static void build_dataset(dataset_t *ds, uint64_t seed)
{
    memset(ds, 0, sizeof(*ds));
    uint64_t rng = seed;
    char buf[128];
    size_t made = 0;
    while (made < NSERIES) {
        oseries_t s = {0};
        snprintf(buf, sizeof(buf), "metric_%zu", rng_below(&rng, 3));
        char *name = strdup(buf);
        ds_add(&s, "__name__", name);
        if (rng_below(&rng, 20))
            ds_add(&s, "job", jobs[rng_below(&rng, CAIRN_ARRAY_LEN(jobs))]);
        size_t inst = rng_below(&rng, 50);
        if (inst < 20)
            snprintf(buf, sizeof(buf), "%zu", inst);
        else if (inst < 40)
            snprintf(buf, sizeof(buf), "host-%zu.example:9100", inst);
        else
            snprintf(buf, sizeof(buf), "a%zux", inst - 40);
        char *instance = strdup(buf);
        ds_add(&s, "instance", instance);
        char *path = NULL;
        size_t p = rng_below(&rng, 20);
        if (p >= 3) {
            if (p < 6) {
                path = strdup(fixed_paths[rng_below(&rng, CAIRN_ARRAY_LEN(fixed_paths))]);
            } else {
                buf[0] = '\0';
                size_t len = 1 + rng_below(&rng, 8);
                for (size_t i = 0; i < len; i++)
                    strcat(buf, path_pieces[rng_below(&rng, CAIRN_ARRAY_LEN(path_pieces))]);
                path = strdup(buf);
            }
            ds_add(&s, "path", path);
        }
        if (rng_below(&rng, 10) == 0)
            ds_add(&s, "env", "prod");
        qsort(s.labels, s.n, sizeof(tsdb_label_t), compare_label_names);
        bool dup = false;
        for (size_t i = 0; i < made && !dup; i++)
            dup = compare_label_sets(ds->series[i].labels, ds->series[i].n, s.labels, s.n) == 0;
        if (dup) {
            free(name);
            free(instance);
            free(path);
            continue;
        }
        ds->strings[ds->nstrings++] = name;
        ds->strings[ds->nstrings++] = instance;
        if (path)
            ds->strings[ds->nstrings++] = path;
        s.t = T0 + (int64_t)made;
        ds->series[made++] = s;
    }
}

static void free_dataset(dataset_t *ds)
{
    for (size_t i = 0; i < ds->nstrings; i++)
        free(ds->strings[i]);
}

static void load_dataset(tsdb_t *db, const dataset_t *ds)
{
    tsdb_appender_t *app = tsdb_appender_new(db);
    for (size_t i = 0; i < NSERIES; i++) {
        const oseries_t *s = &ds->series[i];
        /* Reversed label order, plus an empty-valued label that must be ignored. */
        tsdb_label_t ls[MAX_LABELS + 1];
        for (size_t l = 0; l < s->n; l++)
            ls[l] = s->labels[s->n - 1 - l];
        ls[s->n] = (tsdb_label_t){"zz_empty", ""};
        append_one(app, ls, s->n + 1, s->t, (double)i);
        if (i % 500 == 499)
            commit(app);
    }
    commit(app);
    tsdb_appender_free(app);
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    ck_assert_uint_eq(st.series, NSERIES);
}

/* ---- random matchers ---------------------------------------------------------------------- */

typedef struct omatcher {
    tsdb_match_type_t type;
    const char *name;
    const char *value;
    const pattern_t *pattern; /* regex types */
} omatcher_t;

static const char *const matcher_names[] = {"__name__", "job", "instance", "path", "env", "nope"};
static const char *const type_names[] = {"=", "!=", "=~", "!~"};

static bool omatch(const omatcher_t *m, const oseries_t *s)
{
    const char *v = label_value(s, m->name);
    switch (m->type) {
    case TSDB_MATCH_EQUAL: return strcmp(v, m->value) == 0;
    case TSDB_MATCH_NOT_EQUAL: return strcmp(v, m->value) != 0;
    case TSDB_MATCH_REGEX: return m->pattern->fn(v);
    case TSDB_MATCH_NOT_REGEX: return !m->pattern->fn(v);
    }
    return false;
}

static void random_matcher(const dataset_t *ds, uint64_t *rng, omatcher_t *m)
{
    m->type = (tsdb_match_type_t)rng_below(rng, 4);
    m->name = matcher_names[rng_below(rng, CAIRN_ARRAY_LEN(matcher_names))];
    if (m->type == TSDB_MATCH_REGEX || m->type == TSDB_MATCH_NOT_REGEX) {
        m->pattern = &patterns[rng_below(rng, CAIRN_ARRAY_LEN(patterns))];
        m->value = m->pattern->re;
        return;
    }
    m->pattern = NULL;
    size_t pick = rng_below(rng, 10);
    if (pick == 0)
        m->value = "";
    else if (pick == 1)
        m->value = "nonexistent";
    else if (pick == 2)
        m->value = "a";
    else
        m->value = label_value(&ds->series[rng_below(rng, NSERIES)], m->name);
}

static void describe(char *out, size_t size, const omatcher_t *ms, size_t n)
{
    size_t off = (size_t)snprintf(out, size, "{");
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(out + off, size - off, "%s%s%s\"%s\"", i ? ", " : "", ms[i].name,
                                type_names[ms[i].type], ms[i].value);
    if (off < size)
        snprintf(out + off, size - off, "}");
}

static int compare_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts (by bytes, as strcmp) and removes duplicates; returns the new count. */
static size_t sort_unique(const char **s, size_t n)
{
    qsort(s, n, sizeof(*s), compare_cstr);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(s[k - 1], s[i]) != 0)
            s[k++] = s[i];
    return k;
}

static void assert_same_strings(const char *what, const char *kind, char **got, size_t n,
                                const char *const *want, size_t wn)
{
    for (size_t i = 0; i < n && i < wn; i++)
        ck_assert_msg(strcmp(got[i], want[i]) == 0, "%s: %s[%zu] = \"%s\", want \"%s\"", what, kind,
                      i, got[i], want[i]);
    ck_assert_msg(n == wn, "%s: %zu %s, want %zu", what, n, kind, wn);
}

/* Selects with the matchers and compares with the oracle: same series, same order, samples
 * right. */
static void check_select(tsdb_t *db, const dataset_t *ds, const omatcher_t *oms, size_t n)
{
    char what[512];
    describe(what, sizeof(what), oms, n);
    const oseries_t *want[NSERIES];
    size_t wn = 0;
    for (size_t i = 0; i < NSERIES; i++) {
        bool ok = true;
        for (size_t k = 0; k < n && ok; k++)
            ok = omatch(&oms[k], &ds->series[i]);
        if (ok)
            want[wn++] = &ds->series[i];
    }
    qsort(want, wn, sizeof(want[0]), compare_oseries);

    tsdb_matcher_t *ms[4];
    for (size_t k = 0; k < n; k++)
        ms[k] = matcher(oms[k].type, oms[k].name, oms[k].value);
    tsdb_querier_t *q = tsdb_querier_new(db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)ms, n);
    ck_assert_ptr_nonnull(set);
    size_t got = 0;
    while (tsdb_series_set_next(set)) {
        const tsdb_label_t *ls;
        size_t ln = tsdb_series_set_labels(set, &ls);
        ck_assert_msg(got < wn, "%s: more than the %zu expected series (next: %s=\"%s\"...)", what,
                      wn, ln ? ls[0].name : "", ln ? ls[0].value : "");
        const oseries_t *w = want[got];
        ck_assert_msg(compare_label_sets(ls, ln, w->labels, w->n) == 0,
                      "%s: series %zu has %zu labels, first differing from the expected "
                      "{%s=\"%s\", ...} (%zu labels)",
                      what, got, ln, w->labels[0].name, w->labels[0].value, w->n);
        int64_t t;
        double v;
        ck_assert(tsdb_series_set_sample(set, &t, &v));
        ck_assert_int_eq(t, w->t);
        ck_assert(v == (double)(w - ds->series));
        ck_assert(!tsdb_series_set_sample(set, &t, &v));
        got++;
    }
    ck_assert_msg(got == wn, "%s: %zu series, want %zu", what, got, wn);
    ck_assert_msg(tsdb_series_set_count(set) == wn, "%s: count %zu, want %zu", what,
                  tsdb_series_set_count(set), wn);
    tsdb_series_set_free(set);

    /* Label names of the matching series, and the values of path over them. */
    const char **strs = malloc((wn * MAX_LABELS + 1) * sizeof(char *));
    size_t sn = 0;
    for (size_t i = 0; i < wn; i++)
        for (size_t l = 0; l < want[i]->n; l++)
            strs[sn++] = want[i]->labels[l].name;
    sn = sort_unique(strs, sn);
    char **out;
    size_t on = tsdb_querier_label_names(q, (const tsdb_matcher_t *const *)ms, n, &out);
    assert_same_strings(what, "label names", out, on, strs, sn);
    tsdb_strings_free(out, on);

    sn = 0;
    for (size_t i = 0; i < wn; i++) {
        const char *v = label_value(want[i], "path");
        if (*v)
            strs[sn++] = v;
    }
    sn = sort_unique(strs, sn);
    on = tsdb_querier_label_values(q, "path", (const tsdb_matcher_t *const *)ms, n, &out);
    assert_same_strings(what, "path values", out, on, strs, sn);
    tsdb_strings_free(out, on);
    free(strs);
    tsdb_querier_free(q);
    for (size_t k = 0; k < n; k++)
        tsdb_matcher_free(ms[k]);
}

/* ---- tests: matchers ----------------------------------------------------------------------- */

/* Every pattern against every label value of the data set and a few edge cases, through
 * tsdb_matcher_matches, for all four types. */
START_TEST(test_matcher_matches_oracle)
{
    static dataset_t ds;
    build_dataset(&ds, 1);
    const char *extra[] = {"",   "a",    "b",    "c",      "x",
                           "x.", "abx",  "A",    "bc",     "bbb",
                           "ab", "a\nb", "b\nx", "é",      "éé",
                           "ü",  "\n",   "a|b",  "a.b",    "axb",
                           "0",  "0123", "12a",  "host-1", "host-10.example:9100",
                           "xx", "ax\n"};
    for (size_t p = 0; p < CAIRN_ARRAY_LEN(patterns); p++) {
        tsdb_matcher_t *re = matcher(TSDB_MATCH_REGEX, "l", patterns[p].re);
        tsdb_matcher_t *nre = matcher(TSDB_MATCH_NOT_REGEX, "l", patterns[p].re);
        for (size_t i = 0; i < NSERIES + CAIRN_ARRAY_LEN(extra); i++) {
            const char *v = i < CAIRN_ARRAY_LEN(extra)
                                ? extra[i]
                                : label_value(&ds.series[i - CAIRN_ARRAY_LEN(extra)], "path");
            bool want = patterns[p].fn(v);
            ck_assert_msg(tsdb_matcher_matches(re, v) == want, "\"%s\" =~ \"%s\": want %s", v,
                          patterns[p].re, want ? "match" : "no match");
            ck_assert_msg(tsdb_matcher_matches(nre, v) == !want, "\"%s\" !~ \"%s\": want %s", v,
                          patterns[p].re, want ? "no match" : "match");
        }
        tsdb_matcher_free(re);
        tsdb_matcher_free(nre);
    }
    tsdb_matcher_t *eq = matcher(TSDB_MATCH_EQUAL, "l", "a.*");
    tsdb_matcher_t *ne = matcher(TSDB_MATCH_NOT_EQUAL, "l", "");
    ck_assert(tsdb_matcher_matches(eq, "a.*"));
    ck_assert(!tsdb_matcher_matches(eq, "abc"));
    ck_assert(!tsdb_matcher_matches(ne, ""));
    ck_assert(tsdb_matcher_matches(ne, "x"));
    tsdb_matcher_free(eq);
    tsdb_matcher_free(ne);
    /* Strings are copied. */
    char name[8] = "l", value[8] = "abc";
    tsdb_matcher_t *m = matcher(TSDB_MATCH_REGEX, name, value);
    strcpy(value, "zzz");
    ck_assert(tsdb_matcher_matches(m, "abc"));
    ck_assert(!tsdb_matcher_matches(m, "zzz"));
    tsdb_matcher_free(m);
    free_dataset(&ds);
}
END_TEST

START_TEST(test_select_matchers_oracle)
{
    static dataset_t ds;
    build_dataset(&ds, 2);
    testdb_t t;
    tdb_open_new(&t);
    load_dataset(t.db, &ds);

    /* Fixed cases first, then random combinations. */
    const pattern_t *any = &patterns[0], *nonempty = &patterns[1];
    omatcher_t fixed[][2] = {
        {{TSDB_MATCH_EQUAL, "nope", "", NULL}},
        {{TSDB_MATCH_NOT_EQUAL, "nope", "x", NULL}},
        {{TSDB_MATCH_REGEX, "nope", ".*", any}},
        {{TSDB_MATCH_REGEX, "nope", ".+", nonempty}},
        {{TSDB_MATCH_EQUAL, "path", "", NULL}},
        {{TSDB_MATCH_NOT_EQUAL, "path", "", NULL}},
        {{TSDB_MATCH_REGEX, "path", ".+", nonempty}},
        {{TSDB_MATCH_NOT_REGEX, "path", ".*", any}},
        {{TSDB_MATCH_EQUAL, "job", "a", NULL}, {TSDB_MATCH_REGEX, "path", ".*", any}},
        {{TSDB_MATCH_EQUAL, "job", "abx", NULL}, {TSDB_MATCH_NOT_EQUAL, "env", "prod", NULL}},
        {{TSDB_MATCH_EQUAL, "__name__", "metric_1", NULL},
         {TSDB_MATCH_EQUAL, "zz_empty", "", NULL}},
    };
    size_t fixed_n[] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(fixed); i++)
        check_select(t.db, &ds, fixed[i], fixed_n[i]);
    for (size_t p = 0; p < CAIRN_ARRAY_LEN(patterns); p++) {
        omatcher_t m[1] = {{TSDB_MATCH_REGEX, "path", patterns[p].re, &patterns[p]}};
        check_select(t.db, &ds, m, 1);
        m[0].type = TSDB_MATCH_NOT_REGEX;
        check_select(t.db, &ds, m, 1);
        m[0] = (omatcher_t){TSDB_MATCH_REGEX, "instance", patterns[p].re, &patterns[p]};
        check_select(t.db, &ds, m, 1);
        m[0] = (omatcher_t){TSDB_MATCH_REGEX, "job", patterns[p].re, &patterns[p]};
        check_select(t.db, &ds, m, 1);
    }
    uint64_t rng = 12345;
    for (int i = 0; i < 400; i++) {
        omatcher_t ms[3];
        size_t n = 1 + rng_below(&rng, 3);
        for (size_t k = 0; k < n; k++)
            random_matcher(&ds, &rng, &ms[k]);
        check_select(t.db, &ds, ms, n);
    }
    tdb_destroy(&t);
    free_dataset(&ds);
}
END_TEST

START_TEST(test_matcher_bad_regex)
{
    static const char *const bad[] = {"(", "[", "*", "a**", "(?<", "a{2,1}", "\\"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(bad); i++) {
        for (int type = TSDB_MATCH_REGEX; type <= TSDB_MATCH_NOT_REGEX; type++) {
            cairn_error_t err = {{0}};
            tsdb_matcher_t *m = tsdb_matcher_new((tsdb_match_type_t)type, "a", bad[i], &err);
            ck_assert_msg(m == NULL, "\"%s\" accepted as a regular expression", bad[i]);
            ck_assert_msg(strlen(err.message) > 0, "no message for \"%s\"", bad[i]);
            ck_assert_msg(strstr(err.message, bad[i]) != NULL,
                          "message for \"%s\" does not quote it: %s", bad[i], err.message);
        }
        /* NULL err is allowed. */
        ck_assert_ptr_null(tsdb_matcher_new(TSDB_MATCH_REGEX, "a", bad[i], NULL));
        /* Not a regular expression for = and !=. */
        tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "a", bad[i], NULL);
        ck_assert_ptr_nonnull(m);
        ck_assert(tsdb_matcher_matches(m, bad[i]));
        tsdb_matcher_free(m);
    }
    tsdb_matcher_free(NULL);
}
END_TEST

/* ---- tests: time ranges --------------------------------------------------------------------- */

typedef struct tseries {
    const char *id;
    int64_t *ts;
    size_t n;
} tseries_t;

static void tseries_fill(tseries_t *s, const char *id, int64_t start, int64_t step, size_t n)
{
    s->id = id;
    s->ts = malloc(n * sizeof(int64_t));
    s->n = n;
    for (size_t i = 0; i < n; i++)
        s->ts[i] = start + (int64_t)i * step;
}

static void load_tseries(tsdb_t *db, tseries_t *ss, size_t ns)
{
    /* In time order across series (the appendable window is relative to the newest sample). */
    size_t pos[8] = {0};
    tsdb_appender_t *app = tsdb_appender_new(db);
    for (;;) {
        size_t best = SIZE_MAX;
        for (size_t s = 0; s < ns; s++)
            if (pos[s] < ss[s].n && (best == SIZE_MAX || ss[s].ts[pos[s]] < ss[best].ts[pos[best]]))
                best = s;
        if (best == SIZE_MAX)
            break;
        tsdb_label_t ls[] = {{"__name__", "tr"}, {"id", ss[best].id}};
        int64_t ts = ss[best].ts[pos[best]++];
        append_one(app, ls, 2, ts, (double)(ts - T0));
    }
    commit(app);
    tsdb_appender_free(app);
}

/* Selects {__name__="tr"} over [mint, maxt]: the series with samples in range, in id order,
 * each with exactly its samples in range. Returns the number of series iterated. */
static size_t check_range(tsdb_t *db, const tseries_t *ss, size_t ns, int64_t mint, int64_t maxt)
{
    tsdb_matcher_t *m = matcher(TSDB_MATCH_EQUAL, "__name__", "tr");
    tsdb_querier_t *q = tsdb_querier_new(db, mint, maxt);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    size_t next_series = 0, iterated = 0;
    while (tsdb_series_set_next(set)) {
        const tsdb_label_t *ls;
        size_t ln = tsdb_series_set_labels(set, &ls);
        ck_assert_uint_eq(ln, 2);
        ck_assert_str_eq(ls[0].name, "__name__");
        ck_assert_str_eq(ls[1].name, "id");
        /* The expected series: the next one (by id) with samples in the range. */
        size_t lo = 0, hi = 0;
        for (; next_series < ns; next_series++) {
            const tseries_t *s = &ss[next_series];
            for (lo = 0; lo < s->n && s->ts[lo] < mint; lo++)
                ;
            for (hi = lo; hi < s->n && s->ts[hi] <= maxt; hi++)
                ;
            if (hi > lo)
                break;
        }
        ck_assert_msg(next_series < ns,
                      "[%+" PRId64 ", %+" PRId64 "]: series %s returned without samples in range",
                      mint - T0, maxt - T0, ls[1].value);
        const tseries_t *s = &ss[next_series++];
        ck_assert_msg(strcmp(ls[1].value, s->id) == 0,
                      "[%+" PRId64 ", %+" PRId64 "]: got series %s, want %s", mint - T0, maxt - T0,
                      ls[1].value, s->id);
        int64_t t;
        double v;
        size_t k = lo;
        while (tsdb_series_set_sample(set, &t, &v)) {
            ck_assert_msg(k < hi, "[%+" PRId64 ", %+" PRId64 "] %s: extra sample t=%+" PRId64,
                          mint - T0, maxt - T0, s->id, t - T0);
            ck_assert_msg(t == s->ts[k],
                          "[%+" PRId64 ", %+" PRId64 "] %s: t=%+" PRId64 ", want %+" PRId64,
                          mint - T0, maxt - T0, s->id, t - T0, s->ts[k] - T0);
            ck_assert(v == (double)(t - T0));
            k++;
        }
        ck_assert_msg(k == hi, "[%+" PRId64 ", %+" PRId64 "] %s: %zu samples, want %zu", mint - T0,
                      maxt - T0, s->id, k - lo, hi - lo);
        iterated++;
    }
    /* No series with samples in range is missing. */
    for (; next_series < ns; next_series++) {
        const tseries_t *s = &ss[next_series];
        for (size_t i = 0; i < s->n; i++)
            ck_assert_msg(s->ts[i] < mint || s->ts[i] > maxt,
                          "[%+" PRId64 ", %+" PRId64 "]: series %s missing", mint - T0, maxt - T0,
                          s->id);
    }
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);
    return iterated;
}

static size_t range_count(tsdb_t *db, int64_t mint, int64_t maxt)
{
    tsdb_matcher_t *m = matcher(TSDB_MATCH_EQUAL, "__name__", "tr");
    tsdb_querier_t *q = tsdb_querier_new(db, mint, maxt);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    size_t n = tsdb_series_set_count(set);
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);
    return n;
}

/* Series A [100, 200], B [1000, 1100], D [500, 600] every 10 ms; E 1000 samples every 15 s from
 * 2000 (sealed chunks). Ranges never fall inside a series' gap, so a series is either in range
 * with samples or entirely outside. */
static void make_range_db(testdb_t *t, tseries_t *ss)
{
    tseries_fill(&ss[0], "A", T0 + 100, 10, 11);
    tseries_fill(&ss[1], "B", T0 + 1000, 10, 11);
    tseries_fill(&ss[2], "D", T0 + 500, 10, 11);
    tseries_fill(&ss[3], "E", T0 + 2000, 15000, 1000);
    tdb_open_new(t);
    load_tseries(t->db, ss, 4);
}

static const int64_t fixed_ranges[][2] = {
    {500, 600},
    {150, 1050},
    {201, 499},
    {200, 200},
    {100, 100},
    {600, 1000},
    {99, 100},
    {1100, 2000},
    {1101, 1999},
    {0, 99},
    {-1000000, 99},
    {110, 150},
    {2000, 2000},
    {2000 + 15000, 2000 + 30000},
    {0, 100000000},
    {1100, 1100},
    {2000 + 999 * 15000, 2000 + 999 * 15000},
    {2000 + 999 * 15000 + 1, 1LL << 40},
};

START_TEST(test_time_range_samples)
{
    testdb_t t;
    tseries_t ss[4];
    make_range_db(&t, ss);
    /* Sorted by labels: A, B, D, E. */
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(fixed_ranges); i++)
        check_range(t.db, ss, 4, T0 + fixed_ranges[i][0], T0 + fixed_ranges[i][1]);
    ck_assert_uint_eq(check_range(t.db, ss, 4, T0 + 500, T0 + 600), 1);
    ck_assert_uint_eq(check_range(t.db, ss, 4, T0 + 201, T0 + 499), 0);
    ck_assert_uint_eq(check_range(t.db, ss, 4, INT64_MIN, INT64_MAX), 4);
    /* Random ranges over E at least 15 s wide (so one that touches E holds a sample). */
    uint64_t rng = 5;
    const int64_t e0 = T0 + 2000, e1 = T0 + 2000 + 999 * 15000;
    for (int i = 0; i < 300; i++) {
        int64_t a = e0 - 100000 + (int64_t)rng_below(&rng, (size_t)(e1 - e0 + 200000));
        int64_t z = a + 15000 + (int64_t)rng_below(&rng, 3 * 3600 * 1000);
        check_range(t.db, ss, 4, a, z);
    }
    for (int i = 0; i < 4; i++)
        free(ss[i].ts);
    tdb_destroy(&t);
}
END_TEST

/* tsdb_series_set_count is the number of series the set yields: series without samples in the
 * range are left out of it too. */
START_TEST(test_time_range_count)
{
    testdb_t t;
    tseries_t ss[4];
    make_range_db(&t, ss);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(fixed_ranges); i++) {
        int64_t a = T0 + fixed_ranges[i][0], z = T0 + fixed_ranges[i][1];
        size_t iterated = check_range(t.db, ss, 4, a, z);
        size_t count = range_count(t.db, a, z);
        ck_assert_msg(count == iterated,
                      "[%+" PRId64 ", %+" PRId64 "]: tsdb_series_set_count says %zu, the set "
                      "yields %zu series",
                      a - T0, z - T0, count, iterated);
    }
    for (int i = 0; i < 4; i++)
        free(ss[i].ts);
    tdb_destroy(&t);
}
END_TEST

/* A series whose samples lie on both sides of the range (none inside) is left out, though its
 * chunk spans the range; an inverted range (min > max) holds no samples at all. */
START_TEST(test_time_range_gap)
{
    testdb_t t;
    tseries_t ss[2];
    tseries_fill(&ss[0], "C", T0 + 100, 1000, 2); /* 100 and 1100 */
    tseries_fill(&ss[1], "F", T0 + 100, 10, 101); /* 100 .. 1100 */
    tdb_open_new(&t);
    load_tseries(t.db, ss, 2);
    ck_assert_uint_eq(check_range(t.db, ss, 2, T0 + 500, T0 + 600), 1);
    ck_assert_uint_eq(check_range(t.db, ss, 2, T0 + 101, T0 + 1099), 1);
    ck_assert_uint_eq(check_range(t.db, ss, 2, T0 + 105, T0 + 105), 0);
    ck_assert_uint_eq(check_range(t.db, ss, 2, T0 + 100, T0 + 100), 2);
    ck_assert_uint_eq(check_range(t.db, ss, 2, T0 + 600, T0 + 500), 0);
    for (int i = 0; i < 2; i++)
        free(ss[i].ts);
    tdb_destroy(&t);
}
END_TEST

/* ---- tests: label names and values ------------------------------------------------------------
 */

static void assert_strings(const char *what, char **got, size_t n, const char *const *want,
                           size_t wn)
{
    for (size_t i = 0; i < n && i < wn; i++)
        ck_assert_msg(strcmp(got[i], want[i]) == 0, "%s: [%zu] = \"%s\", want \"%s\"", what, i,
                      got[i], want[i]);
    ck_assert_msg(n == wn, "%s: %zu strings, want %zu", what, n, wn);
}

static void check_names(tsdb_t *db, tsdb_matcher_t **ms, size_t n, const char *const *want,
                        size_t wn, const char *what)
{
    tsdb_querier_t *q = tsdb_querier_new(db, INT64_MIN, INT64_MAX);
    char **out = NULL;
    size_t k = tsdb_querier_label_names(q, (const tsdb_matcher_t *const *)ms, n, &out);
    assert_strings(what, out, k, want, wn);
    tsdb_strings_free(out, k);
    tsdb_querier_free(q);
}

static void check_values(tsdb_t *db, const char *name, tsdb_matcher_t **ms, size_t n,
                         const char *const *want, size_t wn, const char *what)
{
    tsdb_querier_t *q = tsdb_querier_new(db, INT64_MIN, INT64_MAX);
    char **out = NULL;
    size_t k = tsdb_querier_label_values(q, name, (const tsdb_matcher_t *const *)ms, n, &out);
    assert_strings(what, out, k, want, wn);
    tsdb_strings_free(out, k);
    tsdb_querier_free(q);
}

START_TEST(test_label_names_values)
{
    testdb_t t;
    tdb_open_new(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t s1[] = {{"__name__", "up"}, {"job", "a"}, {"instance", "1"}};
    tsdb_label_t s2[] = {{"job", "b"}, {"__name__", "up"}};
    tsdb_label_t s3[] = {{"__name__", "cpu"}, {"job", "a"}, {"mode", "idle"}};
    tsdb_label_t s4[] = {{"__name__", "cpu"}, {"job", "a"}, {"mode", ""}};
    tsdb_label_t s5[] = {{"__name__", "old"}, {"job", "z"}, {"zone", "é"}};
    append_one(app, s5, 3, T0, 1.0);
    append_one(app, s1, 3, T0 + HOUR_MS, 1.0);
    append_one(app, s2, 2, T0 + HOUR_MS, 1.0);
    append_one(app, s3, 3, T0 + HOUR_MS, 1.0);
    append_one(app, s4, 3, T0 + HOUR_MS, 1.0);
    append_one(app, s1, 3, T0 + HOUR_MS + 1, 2.0);
    commit(app);
    tsdb_appender_free(app);

    const char *all_names[] = {"__name__", "instance", "job", "mode", "zone"};
    check_names(t.db, NULL, 0, all_names, 5, "all names");
    const char *jobs_all[] = {"a", "b", "z"};
    check_values(t.db, "job", NULL, 0, jobs_all, 3, "all jobs");
    const char *modes[] = {"idle"};
    check_values(t.db, "mode", NULL, 0, modes, 1, "all modes");
    check_values(t.db, "nope", NULL, 0, NULL, 0, "absent name");
    check_values(t.db, "", NULL, 0, NULL, 0, "empty name");
    const char *metric_names[] = {"cpu", "old", "up"};
    check_values(t.db, "__name__", NULL, 0, metric_names, 3, "all metric names");

    tsdb_matcher_t *cpu = matcher(TSDB_MATCH_EQUAL, "__name__", "cpu");
    const char *cpu_names[] = {"__name__", "job", "mode"};
    check_names(t.db, &cpu, 1, cpu_names, 3, "names of cpu");
    const char *a[] = {"a"};
    check_values(t.db, "job", &cpu, 1, a, 1, "jobs of cpu");
    check_values(t.db, "instance", &cpu, 1, NULL, 0, "instances of cpu");
    check_values(t.db, "mode", &cpu, 1, modes, 1, "modes of cpu");

    tsdb_matcher_t *jb = matcher(TSDB_MATCH_EQUAL, "job", "b");
    const char *b_names[] = {"__name__", "job"};
    check_names(t.db, &jb, 1, b_names, 2, "names of job=b");

    tsdb_matcher_t *nomode[] = {matcher(TSDB_MATCH_EQUAL, "mode", ""),
                                matcher(TSDB_MATCH_REGEX, "job", "a|b")};
    const char *nomode_names[] = {"__name__", "instance", "job"};
    check_names(t.db, nomode, 2, nomode_names, 3, "names of {mode=\"\", job=~\"a|b\"}");
    const char *up_cpu[] = {"cpu", "up"};
    check_values(t.db, "__name__", nomode, 2, up_cpu, 2, "metric names without mode");

    tsdb_matcher_t *none = matcher(TSDB_MATCH_EQUAL, "job", "nonexistent");
    check_names(t.db, &none, 1, NULL, 0, "names of nothing");
    check_values(t.db, "job", &none, 1, NULL, 0, "values of nothing");

    /* Returned strings are the caller's: they outlive the querier. */
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    char **out;
    size_t n = tsdb_querier_label_values(q, "zone", NULL, 0, &out);
    tsdb_querier_free(q);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(out[0], "é");
    tsdb_strings_free(out, n);

    /* After truncation the removed series' names and values are gone. */
    ck_assert_int_eq(tsdb_truncate(t.db, T0 + 1000), 0);
    const char *names_after[] = {"__name__", "instance", "job", "mode"};
    check_names(t.db, NULL, 0, names_after, 4, "names after truncation");
    const char *jobs_after[] = {"a", "b"};
    check_values(t.db, "job", NULL, 0, jobs_after, 2, "jobs after truncation");
    check_values(t.db, "zone", NULL, 0, NULL, 0, "zones after truncation");
    check_values(t.db, "__name__", NULL, 0, up_cpu, 2, "metric names after truncation");

    tsdb_matcher_free(cpu);
    tsdb_matcher_free(jb);
    tsdb_matcher_free(nomode[0]);
    tsdb_matcher_free(nomode[1]);
    tsdb_matcher_free(none);
    tdb_destroy(&t);
}
END_TEST

/* ---- tests: a querier and a concurrent truncation -------------------------------------------- */

typedef struct trunc_arg {
    tsdb_t *db;
    int64_t min_time;
    atomic_bool done;
} trunc_arg_t;

static void *truncate_thread(void *arg)
{
    trunc_arg_t *a = arg;
    tsdb_truncate(a->db, a->min_time);
    atomic_store(&a->done, true);
    return NULL;
}

enum { OLD_SERIES = 50, NEW_SERIES = 10 };

/* 50 series {__name__="old"} over [T0, T0+1h] and 10 {__name__="new"} over [T0, T0+3h], 15 s
 * apart: sealed chunks and open ones. */
static void load_old_new(tsdb_t *db)
{
    tsdb_appender_t *app = tsdb_appender_new(db);
    char id[16];
    for (int i = 0; i <= 720; i++) {
        int64_t ts = T0 + (int64_t)i * 15000;
        for (int s = 0; s < OLD_SERIES + NEW_SERIES; s++) {
            bool old = s < OLD_SERIES;
            if (old && i > 240)
                continue;
            snprintf(id, sizeof(id), "%d", s);
            tsdb_label_t ls[] = {{"__name__", old ? "old" : "new"}, {"id", id}};
            append_one(app, ls, 2, ts, (double)i);
        }
        if (i % 50 == 49)
            commit(app);
    }
    commit(app);
    tsdb_appender_free(app);
}

/* Reads the whole set: returns the number of series and checks each is a run of samples
 * 15 s apart with the value its index; stores the sample count per kind. */
static size_t read_all(tsdb_series_set_t *set, size_t *old_samples, size_t *new_samples,
                       int64_t *new_first)
{
    size_t n = 0;
    *old_samples = *new_samples = 0;
    *new_first = INT64_MAX;
    while (tsdb_series_set_next(set)) {
        const tsdb_label_t *ls;
        tsdb_series_set_labels(set, &ls);
        bool old = strcmp(ls[0].value, "old") == 0;
        int64_t t, prev = INT64_MIN;
        double v;
        while (tsdb_series_set_sample(set, &t, &v)) {
            ck_assert(v == (double)((t - T0) / 15000));
            ck_assert(prev == INT64_MIN || t == prev + 15000);
            if (!old && prev == INT64_MIN && t < *new_first)
                *new_first = t;
            prev = t;
            if (old)
                (*old_samples)++;
            else
                (*new_samples)++;
        }
        n++;
    }
    return n;
}

/* Truncation cannot complete while a querier is alive: it blocks, the querier keeps
 * reading, and freeing the querier lets it finish. */
START_TEST(test_querier_blocks_truncation)
{
    testdb_t t;
    tdb_open_new(&t);
    load_old_new(t.db);
    tsdb_matcher_t *m = matcher(TSDB_MATCH_REGEX, "__name__", "old|new");
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    ck_assert_uint_eq(tsdb_series_set_count(set), OLD_SERIES + NEW_SERIES);

    const int64_t cut = T0 + CHUNK_RANGE_MS;
    trunc_arg_t arg = {.db = t.db, .min_time = cut};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, truncate_thread, &arg), 0);
    usleep(300 * 1000);
    ck_assert_msg(!atomic_load(&arg.done), "truncation finished while a querier was alive");

    /* The set still iterates safely; the surviving series' data at or after the cut is there
     * whatever the truncation did meanwhile. */
    size_t old_samples, new_samples;
    int64_t new_first;
    size_t n = read_all(set, &old_samples, &new_samples, &new_first);
    ck_assert_uint_ge(n, NEW_SERIES);
    ck_assert_uint_ge(new_samples, (size_t)NEW_SERIES * 241);
    tsdb_series_set_free(set);
    set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    n = read_all(set, &old_samples, &new_samples, &new_first);
    ck_assert_uint_ge(n, NEW_SERIES);
    ck_assert_uint_ge(new_samples, (size_t)NEW_SERIES * 241);
    tsdb_series_set_free(set);
    usleep(100 * 1000);
    ck_assert_msg(!atomic_load(&arg.done), "truncation finished while a querier was alive");
    tsdb_querier_free(q);
    pthread_join(tid, NULL);
    ck_assert(atomic_load(&arg.done));

    q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    n = read_all(set, &old_samples, &new_samples, &new_first);
    ck_assert_uint_eq(n, NEW_SERIES);
    ck_assert_uint_eq(old_samples, 0);
    ck_assert_uint_eq(new_samples, (size_t)NEW_SERIES * 241);
    ck_assert_int_eq(new_first, cut);
    ck_assert_uint_eq(tsdb_series_set_count(set), NEW_SERIES);
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);
    tdb_destroy(&t);
}
END_TEST

/* The series a querier found before a truncation remain readable through it: Prometheus waits
 * for readers of the truncated range before dropping data (head.truncateMemory), and the
 * contract says a querier sees a consistent set of series for its lifetime. */
START_TEST(test_querier_snapshot_survives_truncation)
{
    testdb_t t;
    tdb_open_new(&t);
    load_old_new(t.db);
    tsdb_matcher_t *m = matcher(TSDB_MATCH_REGEX, "__name__", "old|new");
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    trunc_arg_t arg = {.db = t.db, .min_time = T0 + CHUNK_RANGE_MS};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, truncate_thread, &arg), 0);
    usleep(300 * 1000);
    size_t old_samples, new_samples;
    int64_t new_first;
    size_t n = read_all(set, &old_samples, &new_samples, &new_first);
    tsdb_series_set_free(set);
    /* A later select on the same querier sees the same consistent set. */
    set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    size_t old2, new2;
    size_t n2 = read_all(set, &old2, &new2, &new_first);
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    pthread_join(tid, NULL);
    ck_assert_msg(n2 == n && old2 == old_samples && new2 == new_samples,
                  "a second select on the querier yields %zu series (%zu + %zu samples), the "
                  "first %zu (%zu + %zu)",
                  n2, old2, new2, n, old_samples, new_samples);
    ck_assert_msg(n == OLD_SERIES + NEW_SERIES && old_samples == (size_t)OLD_SERIES * 241 &&
                      new_samples == (size_t)NEW_SERIES * 721,
                  "a set selected before tsdb_truncate yields %zu of %d series, %zu of %d old "
                  "and %zu of %d new samples",
                  n, OLD_SERIES + NEW_SERIES, old_samples, OLD_SERIES * 241, new_samples,
                  NEW_SERIES * 721);
    tsdb_matcher_free(m);
    tdb_destroy(&t);
}
END_TEST

/* ---- main ------------------------------------------------------------------------------------ */

static Suite *querier_suite(void)
{
    Suite *s = suite_create("tsdb_querier");
    TCase *tc = tcase_create("matchers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_matcher_matches_oracle);
    tcase_add_test(tc, test_select_matchers_oracle);
    tcase_add_test(tc, test_matcher_bad_regex);
    suite_add_tcase(s, tc);

    tc = tcase_create("time_range");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_time_range_samples);
    tcase_add_test(tc, test_time_range_count);
    tcase_add_test(tc, test_time_range_gap);
    suite_add_tcase(s, tc);

    tc = tcase_create("labels");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_label_names_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("truncation");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_querier_blocks_truncation);
    tcase_add_test(tc, test_querier_snapshot_survives_truncation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(base_dir, sizeof(base_dir), "/tmp/cairn-check-tsdb-querier-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    log_set_level(LOG_LEVEL_WARN);
    SRunner *sr = srunner_create(querier_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rm_rf(base_dir);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
