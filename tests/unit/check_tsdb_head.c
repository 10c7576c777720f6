/*
 * tests/unit/check_tsdb_head.c: unit tests for the storage engine's head (tsdb/head.c,
 * tsdb/series.c, tsdb/symbols.c, tsdb/replay.c) through the public API in tsdb/tsdb.h, and for
 * the symbol table, the series map and label preparation directly through tsdb/internal.h.
 *
 * Every test works in its own directory made with mkdtemp under a per-run base directory in
 * /tmp (removed at the end of the run, also when a test fails) and opens the database with a
 * fresh metric registry (the head registers fixed metric names). The head window is set far
 * beyond the data so the head's own periodic truncation never interferes.
 *
 * Expectations follow Prometheus (shared/reference/prometheus.md): §4.2 for the appender's
 * duplicate, out-of-order and out-of-bounds rules, §4.6 for bit-exact stale markers and NaN
 * payloads, §1.4 for chunk cutting (2h-aligned ranges, about 120 samples per chunk), which the
 * chunk tests model sample by sample to predict the exact number of sealed chunks.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "tsdb/internal.h"
#include "tsdb/tsdb.h"

#define HOUR_MS        ((int64_t)3600 * 1000)
#define CHUNK_RANGE_MS (2 * HOUR_MS)
/* A 2h-aligned base time in 2023. */
#define T0 ((int64_t)236111 * CHUNK_RANGE_MS)

#define STALE_NAN_BITS  0x7ff0000000000002ULL
#define NORMAL_NAN_BITS 0x7ff8000000000001ULL

/* ---- helpers ---------------------------------------------------------------------------- */

static char base_dir[64];

#include "tests/unit/tsdb_test_util.h"

static uint64_t bits_of(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

static tsdb_stats_t stats_of(tsdb_t *db)
{
    tsdb_stats_t st;
    tsdb_stats(db, &st);
    return st;
}

static tsdb_commit_result_t commit_ok(tsdb_appender_t *app)
{
    tsdb_commit_result_t r;
    memset(&r, 0xA5, sizeof(r)); /* so a field left unset shows */
    ck_assert_int_eq(tsdb_appender_commit(app, &r), 0);
    return r;
}

static uint64_t rejected_total(const tsdb_commit_result_t *r)
{
    uint64_t n = 0;
    for (int i = 0; i < TSDB_REJECT_COUNT; i++)
        n += r->rejected[i];
    return n;
}

static void assert_clean_result(const tsdb_commit_result_t *r, uint64_t appended)
{
    ck_assert_uint_eq(r->appended, appended);
    ck_assert_uint_eq(rejected_total(r), 0);
    ck_assert_int_eq(r->first_reason, TSDB_REJECT_NONE);
}

typedef struct sample {
    int64_t t;
    uint64_t v; /* bits */
} sample_t;

static int compare_label_names(const void *a, const void *b)
{
    return strcmp(((const tsdb_label_t *)a)->name, ((const tsdb_label_t *)b)->name);
}

/* The label set as the head stores it: empty values dropped, sorted by name. */
static size_t normalise_labels(const tsdb_label_t *in, size_t n, tsdb_label_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i].value && in[i].value[0])
            out[k++] = in[i];
    qsort(out, k, sizeof(*out), compare_label_names);
    return k;
}

static bool labels_equal(const tsdb_label_t *a, size_t an, const tsdb_label_t *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (strcmp(a[i].name, b[i].name) != 0 || strcmp(a[i].value, b[i].value) != 0)
            return false;
    return true;
}

/* Reads the series whose label set is exactly labels over [mint, maxt] into out (at most cap
 * samples). Returns the number of samples, or -1 if the select does not return the series. */
static long read_series(tsdb_t *db, const tsdb_label_t *labels, size_t n, int64_t mint,
                        int64_t maxt, sample_t *out, size_t cap)
{
    tsdb_label_t want[32];
    ck_assert_uint_le(n, CAIRN_ARRAY_LEN(want));
    size_t wn = normalise_labels(labels, n, want);
    ck_assert_uint_gt(wn, 0);
    tsdb_matcher_t *ms[32];
    for (size_t i = 0; i < wn; i++) {
        cairn_error_t err = {{0}};
        ms[i] = tsdb_matcher_new(TSDB_MATCH_EQUAL, want[i].name, want[i].value, &err);
        ck_assert_ptr_nonnull(ms[i]);
    }
    tsdb_querier_t *q = tsdb_querier_new(db, mint, maxt);
    ck_assert_ptr_nonnull(q);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)ms, wn);
    ck_assert_ptr_nonnull(set);
    long found = -1;
    while (tsdb_series_set_next(set)) {
        const tsdb_label_t *ls;
        size_t k = tsdb_series_set_labels(set, &ls);
        if (!labels_equal(ls, k, want, wn))
            continue;
        ck_assert_msg(found < 0, "series returned twice by one select");
        found = 0;
        int64_t t;
        double v;
        while (tsdb_series_set_sample(set, &t, &v)) {
            ck_assert_msg((size_t)found < cap, "more samples than expected (%zu)", cap);
            out[found].t = t;
            out[found].v = bits_of(v);
            found++;
        }
    }
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    for (size_t i = 0; i < wn; i++)
        tsdb_matcher_free(ms[i]);
    return found;
}

static void assert_samples(const char *what, const sample_t *got, long n, const sample_t *want,
                           size_t wn)
{
    ck_assert_msg(n >= 0, "%s: series not returned (want %zu samples)", what, wn);
    size_t m = (size_t)n < wn ? (size_t)n : wn;
    for (size_t i = 0; i < m; i++)
        ck_assert_msg(got[i].t == want[i].t && got[i].v == want[i].v,
                      "%s: sample %zu: got t=%" PRId64 " v=0x%016" PRIx64 ", want t=%" PRId64
                      " v=0x%016" PRIx64,
                      what, i, got[i].t, got[i].v, want[i].t, want[i].v);
    ck_assert_msg((size_t)n == wn, "%s: got %ld samples, want %zu", what, n, wn);
}

/* A series with its labels (owned strings) and the samples it should hold. */
typedef struct series_data {
    char names[8][32];
    char values[8][96];
    tsdb_label_t labels[8];
    size_t nlabels;
    tsdb_ref_t ref;
    sample_t *samples;
    size_t count, cap;
} series_data_t;

static void sd_label(series_data_t *sd, const char *name, const char *value)
{
    ck_assert_uint_lt(sd->nlabels, 8);
    size_t i = sd->nlabels++;
    snprintf(sd->names[i], sizeof(sd->names[i]), "%s", name);
    snprintf(sd->values[i], sizeof(sd->values[i]), "%s", value);
    sd->labels[i].name = sd->names[i];
    sd->labels[i].value = sd->values[i];
}

static void sd_push(series_data_t *sd, int64_t t, uint64_t v)
{
    if (sd->count == sd->cap) {
        sd->cap = sd->cap ? sd->cap * 2 : 64;
        sd->samples = realloc(sd->samples, sd->cap * sizeof(sample_t));
        ck_assert_ptr_nonnull(sd->samples);
    }
    sd->samples[sd->count].t = t;
    sd->samples[sd->count].v = v;
    sd->count++;
}

static void sd_free(series_data_t *sd, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(sd[i].samples);
}

/* Checks that the database holds exactly sd's samples within [mint, maxt]. */
static void sd_verify_range(tsdb_t *db, const series_data_t *sd, int64_t mint, int64_t maxt)
{
    size_t lo = 0, hi = sd->count;
    while (lo < sd->count && sd->samples[lo].t < mint)
        lo++;
    while (hi > lo && sd->samples[hi - 1].t > maxt)
        hi--;
    size_t cap = hi - lo + 1024;
    sample_t *got = malloc(cap * sizeof(sample_t));
    long n = read_series(db, sd->labels, sd->nlabels, mint, maxt, got, cap);
    char what[512];
    size_t off = (size_t)snprintf(what, sizeof(what), "series {");
    for (size_t l = 0; l < sd->nlabels && off < sizeof(what); l++)
        off += (size_t)snprintf(what + off, sizeof(what) - off, "%s%s=\"%s\"", l ? "," : "",
                                sd->labels[l].name, sd->labels[l].value);
    if (off < sizeof(what))
        snprintf(what + off, sizeof(what) - off, "} in [%" PRId64 ",%" PRId64 "]", mint, maxt);
    if (hi == lo)
        ck_assert_msg(n <= 0, "%s: %ld samples where none are expected", what, n);
    else
        assert_samples(what, got, n, sd->samples + lo, hi - lo);
    free(got);
}

static void sd_verify(tsdb_t *db, const series_data_t *sd)
{
    sd_verify_range(db, sd, INT64_MIN, INT64_MAX);
}

/* Everything a select of {__name__=~re} returns: labels and samples of each series. */
typedef struct snapshot {
    series_data_t *sd;
    size_t n;
} snapshot_t;

static void snapshot_take(tsdb_t *db, const char *re, snapshot_t *snap)
{
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_REGEX, "__name__", re, NULL);
    tsdb_querier_t *q = tsdb_querier_new(db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    size_t cap = tsdb_series_set_count(set) + 1;
    snap->sd = calloc(cap, sizeof(series_data_t));
    snap->n = 0;
    while (tsdb_series_set_next(set)) {
        /* No realloc: a series_data_t points into itself. The count bounds what next yields. */
        ck_assert_uint_lt(snap->n, cap);
        series_data_t *sd = &snap->sd[snap->n++];
        const tsdb_label_t *ls;
        size_t ln = tsdb_series_set_labels(set, &ls);
        for (size_t l = 0; l < ln; l++)
            sd_label(sd, ls[l].name, ls[l].value);
        int64_t t;
        double v;
        while (tsdb_series_set_sample(set, &t, &v))
            sd_push(sd, t, bits_of(v));
    }
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);
}

/* The database holds exactly the snapshot's series (no more) with exactly their samples. */
static void snapshot_verify(tsdb_t *db, const char *re, const snapshot_t *snap)
{
    snapshot_t now;
    snapshot_take(db, re, &now);
    uint64_t want = 0, got = 0;
    for (size_t i = 0; i < snap->n; i++)
        want += snap->sd[i].count;
    for (size_t i = 0; i < now.n; i++)
        got += now.sd[i].count;
    for (size_t i = 0; i < snap->n; i++)
        sd_verify(db, &snap->sd[i]);
    ck_assert_msg(now.n == snap->n && got == want,
                  "after the restart: %zu series with %" PRIu64
                  " samples, before: %zu with %" PRIu64,
                  now.n, got, snap->n, want);
    sd_free(now.sd, now.n);
    free(now.sd);
}

/* After a restart that follows truncations running alongside appends: at and after the last
 * truncation point every series holds exactly what it held; before it, everything it held is
 * still there and more may be. Replay truncates once, at the end, so samples that a live
 * truncation dropped (it deleted the series, an appender re-created it) can come back until
 * the next truncation: the contract in tsdb.h. */
static void snapshot_verify_after_truncations(tsdb_t *db, const snapshot_t *snap, int64_t bound)
{
    for (size_t k = 0; k < snap->n; k++) {
        const series_data_t *sd = &snap->sd[k];
        sd_verify_range(db, sd, bound, INT64_MAX);
        size_t want = 0;
        while (want < sd->count && sd->samples[want].t < bound)
            want++;
        size_t cap = 4096 + want;
        sample_t *got = malloc(cap * sizeof(sample_t));
        long n = read_series(db, sd->labels, sd->nlabels, INT64_MIN, bound - 1, got, cap);
        size_t j = 0;
        for (long i = 0; i < n && j < want; i++)
            if (got[i].t == sd->samples[j].t && got[i].v == sd->samples[j].v)
                j++;
        ck_assert_msg(j == want,
                      "series %zu: %zu of %zu samples before the last truncation point are "
                      "missing after a restart",
                      k, want - j, want);
        free(got);
    }
}

static void snapshot_free(snapshot_t *snap)
{
    sd_free(snap->sd, snap->n);
    free(snap->sd);
}

/* Special values that must survive bit for bit (§4.6: compare bit patterns, never values). */
static const uint64_t special_bits[] = {
    STALE_NAN_BITS,        /* the stale marker (a signalling NaN) */
    NORMAL_NAN_BITS,       /* Prometheus's NaN */
    0x7ff8000000000000ULL, /* the canonical quiet NaN */
    0xfff8000000000000ULL, /* negative quiet NaN */
    0x7ff0000000000001ULL, /* signalling NaN, payload 1 */
    0x7ff4000000dead00ULL, /* NaN with a payload */
    0xffffffffffffffffULL, /* all ones */
    0x7ff0000000000000ULL, /* +Inf */
    0xfff0000000000000ULL, /* -Inf */
    0x8000000000000000ULL, /* -0.0 */
    0x0000000000000000ULL, /* +0.0 */
    0x0000000000000001ULL, /* smallest subnormal */
    0x800fffffffffffffULL, /* negative largest subnormal */
    0x7fefffffffffffffULL, /* DBL_MAX */
    0x3ff0000000000000ULL, /* 1.0 */
    0x4340000000000000ULL, /* 2^53 */
    0x4340000000000001ULL, /* 2^53 + 2 */
    0xc340000000000000ULL, /* -2^53 */
    0x43e0000000000000ULL, /* 2^63 */
    0xc3e0000000000000ULL, /* -2^63 */
    0x3fb999999999999aULL, /* 0.1 */
};

/* ---- Prometheus's chunk cutting (§1.4), as a model ----------------------------------------- */

static int64_t model_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t model_range_end(int64_t t)
{
    return model_floor_div(t, CHUNK_RANGE_MS) * CHUNK_RANGE_MS + CHUNK_RANGE_MS;
}

/* computeChunkEndTime(start, cur, maxT, 4). */
static int64_t model_chunk_end(int64_t start, int64_t cur, int64_t max_t)
{
    int64_t n = (max_t - start) / ((cur - start + 1) * 4);
    if (n <= 1)
        return max_t;
    return start + (max_t - start) / n;
}

/* Number of chunks Prometheus cuts for these (increasing) timestamps when no chunk reaches
 * 1005 bytes: a new chunk when there is none, at t >= nextAt, or at 240 samples; nextAt is the
 * end of the 2h range, re-estimated at 30 samples. All but the last are sealed. */
static size_t model_chunks(const sample_t *s, size_t n)
{
    size_t chunks = 0, count = 0;
    int64_t start = 0, next_at = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t t = s[i].t;
        if (chunks == 0 || t >= next_at || count >= 240) {
            chunks++;
            count = 0;
            start = t;
            next_at = model_range_end(t);
        }
        count++;
        if (count == 30)
            next_at = model_chunk_end(start, t, next_at);
    }
    return chunks;
}

/* ---- append, commit, query ----------------------------------------------------------------- */

START_TEST(test_reject_messages)
{
    ck_assert_str_eq(tsdb_reject_message(TSDB_REJECT_OUT_OF_ORDER), "out of order sample");
    ck_assert_str_eq(tsdb_reject_message(TSDB_REJECT_DUPLICATE), "duplicate sample for timestamp");
    ck_assert_str_eq(tsdb_reject_message(TSDB_REJECT_OUT_OF_BOUNDS), "out of bounds");
    for (int r = 0; r < TSDB_REJECT_COUNT + 2; r++) {
        ck_assert_ptr_nonnull(tsdb_reject_message((tsdb_reject_t)r));
        ck_assert_uint_gt(strlen(tsdb_reject_message((tsdb_reject_t)r)), 0);
    }
}
END_TEST

START_TEST(test_append_commit_query)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_uint_eq(st.series, 0);
    ck_assert_uint_eq(st.samples, 0);
    ck_assert_int_eq(st.min_time, INT64_MAX);
    ck_assert_int_eq(st.max_time, INT64_MIN);

    enum { NS = 4, STEPS = 2000, BATCH = 97 };
    series_data_t sd[NS] = {0};
    sd_label(&sd[0], "__name__", "node_cpu_seconds_total");
    sd_label(&sd[0], "mode", "idle");
    sd_label(&sd[0], "instance", "host:9100");
    sd_label(&sd[1], "job", "node");
    sd_label(&sd[1], "__name__", "up");
    sd_label(&sd[2], "b", "é|.x\"\\\n");
    sd_label(&sd[2], "a", "value with spaces");
    sd_label(&sd[3], "__name__", "special");
    sd_label(&sd[3], "kind", "nan");

    uint64_t rng = 42;
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    ck_assert_ptr_nonnull(app);
    size_t in_batch = 0;
    int64_t min_t = INT64_MAX, max_t = INT64_MIN;
    for (int i = 0; i < STEPS; i++) {
        for (int s = 0; s < NS; s++) {
            int64_t ts = T0 + (int64_t)i * 15000 + s * 1000 + (int64_t)rng_below(&rng, 500);
            uint64_t v;
            switch (s) {
            case 0: v = bits_of(1.5 * i); break;
            case 1: v = bits_of((double)(i % 2)); break;
            case 2: v = rng_next(&rng); break; /* any bit pattern, NaNs included */
            default: v = special_bits[(size_t)i % CAIRN_ARRAY_LEN(special_bits)]; break;
            }
            tsdb_ref_t ref = 0;
            tsdb_reject_t r =
                tsdb_append(app, 0, sd[s].labels, sd[s].nlabels, ts, from_bits(v), &ref);
            ck_assert_int_eq(r, TSDB_REJECT_NONE);
            ck_assert_uint_ne(ref, 0);
            if (sd[s].ref == 0)
                sd[s].ref = ref;
            ck_assert_uint_eq(ref, sd[s].ref);
            sd_push(&sd[s], ts, v);
            in_batch++;
            min_t = ts < min_t ? ts : min_t;
            max_t = ts > max_t ? ts : max_t;
        }
        if (i % BATCH == BATCH - 1 || i == STEPS - 1) {
            tsdb_commit_result_t res = commit_ok(app);
            assert_clean_result(&res, in_batch);
            in_batch = 0;
        }
    }
    for (int a = 0; a < NS; a++)
        for (int b = a + 1; b < NS; b++)
            ck_assert_uint_ne(sd[a].ref, sd[b].ref);

    st = stats_of(t.db);
    ck_assert_uint_eq(st.series, NS);
    ck_assert_uint_eq(st.samples, (uint64_t)NS * STEPS);
    ck_assert_int_eq(st.min_time, min_t);
    ck_assert_int_eq(st.max_time, max_t);
    ck_assert_uint_gt(st.chunks_sealed, 0);
    ck_assert_uint_eq(st.chunks_open, NS);
    ck_assert_uint_gt(tsdb_chunk_bytes(t.db), st.chunk_bytes);

    for (int s = 0; s < NS; s++)
        sd_verify(t.db, &sd[s]);
    /* A range in the middle, bounds inclusive and on sample times. */
    for (int s = 0; s < NS; s++)
        sd_verify_range(t.db, &sd[s], sd[s].samples[700].t, sd[s].samples[1300].t);

    tsdb_appender_free(app);
    sd_free(sd, NS);
    tdb_destroy(&t);
}
END_TEST

/* One appender, one sample, one commit: the smallest round trip, and ref_out may be NULL. */
START_TEST(test_append_single_sample)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t ls[] = {{"__name__", "x"}};
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, 1234, from_bits(STALE_NAN_BITS), NULL),
                     TSDB_REJECT_NONE);
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, 1);
    /* A commit without samples is fine and reports nothing. */
    r = commit_ok(app);
    assert_clean_result(&r, 0);
    ck_assert_int_eq(tsdb_appender_commit(app, NULL), 0);

    sample_t got[2];
    long n = read_series(t.db, ls, 1, INT64_MIN, INT64_MAX, got, 2);
    sample_t want = {1234, STALE_NAN_BITS};
    assert_samples("x", got, n, &want, 1);
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_int_eq(st.min_time, 1234);
    ck_assert_int_eq(st.max_time, 1234);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

static int compare_refs(const void *a, const void *b)
{
    tsdb_ref_t x = *(const tsdb_ref_t *)a, y = *(const tsdb_ref_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- rejections ------------------------------------------------------------------------------ */

START_TEST(test_reject_out_of_order)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t ls[] = {{"__name__", "ooo"}};
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 1000, 1.0, NULL), TSDB_REJECT_NONE);
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, 1);

    /* Older than the committed newest: may be rejected at once or at commit. */
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 2000, 2.0, NULL), TSDB_REJECT_NONE);
    tsdb_reject_t e = tsdb_append(app, 0, ls, 1, T0 + 500, 3.0, NULL);
    ck_assert(e == TSDB_REJECT_NONE || e == TSDB_REJECT_OUT_OF_ORDER);
    /* Older than a sample earlier in the same batch: only commit can tell. */
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 3000, 4.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 2500, 5.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 4000, 6.0, NULL), TSDB_REJECT_NONE);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 3);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_OUT_OF_ORDER], 2);
    ck_assert_uint_eq(rejected_total(&r), 2);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_OUT_OF_ORDER);
    ck_assert_uint_eq(r.first_rejected, 1);

    sample_t got[8];
    sample_t want[] = {{T0 + 1000, bits_of(1.0)},
                       {T0 + 2000, bits_of(2.0)},
                       {T0 + 3000, bits_of(4.0)},
                       {T0 + 4000, bits_of(6.0)}};
    long n = read_series(t.db, ls, 1, INT64_MIN, INT64_MAX, got, 8);
    assert_samples("ooo", got, n, want, 4);
    ck_assert_uint_eq(stats_of(t.db).samples, 4);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

START_TEST(test_reject_duplicate)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t ls[] = {{"__name__", "dup"}};
    tsdb_ref_t ref = 0;
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 1000, 1.0, &ref), TSDB_REJECT_NONE);
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, 1);

    /* Against the committed newest: a different value is a duplicate, the same one is
     * accepted silently and counted as appended, but stored once. */
    tsdb_reject_t e = tsdb_append(app, ref, NULL, 0, T0 + 1000, 2.0, NULL);
    ck_assert(e == TSDB_REJECT_NONE || e == TSDB_REJECT_DUPLICATE);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 1000, 1.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 2000, 3.0, NULL), TSDB_REJECT_NONE);
    /* Within the batch: repeat of the pending newest, then a conflicting value. */
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 2000, 3.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 2000, 4.0, NULL), TSDB_REJECT_NONE);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 3);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_DUPLICATE], 2);
    ck_assert_uint_eq(rejected_total(&r), 2);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_DUPLICATE);
    ck_assert_uint_eq(r.first_rejected, 0);

    /* Bit patterns decide, not ==: NaN payloads, the stale marker, the sign of zero. */
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 3000, from_bits(STALE_NAN_BITS), NULL),
                     TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 4000, 0.0, NULL), TSDB_REJECT_NONE);
    r = commit_ok(app);
    assert_clean_result(&r, 2);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 4000, -0.0, NULL),
                     tsdb_append(app, ref, NULL, 0, T0 + 4000, -0.0, NULL));
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 4000, 0.0, NULL), TSDB_REJECT_NONE);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 1);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_DUPLICATE], 2);
    ck_assert_uint_eq(r.first_rejected, 0);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_DUPLICATE);

    /* A stale marker at the newest time: a repeat is fine, a normal NaN is a duplicate. */
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 5000, from_bits(STALE_NAN_BITS), NULL),
                     TSDB_REJECT_NONE);
    r = commit_ok(app);
    assert_clean_result(&r, 1);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 5000, from_bits(STALE_NAN_BITS), NULL),
                     TSDB_REJECT_NONE);
    tsdb_append(app, ref, NULL, 0, T0 + 5000, from_bits(NORMAL_NAN_BITS), NULL);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 1);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_DUPLICATE], 1);
    ck_assert_uint_eq(r.first_rejected, 1);

    sample_t got[16];
    sample_t want[] = {{T0 + 1000, bits_of(1.0)},
                       {T0 + 2000, bits_of(3.0)},
                       {T0 + 3000, STALE_NAN_BITS},
                       {T0 + 4000, bits_of(0.0)},
                       {T0 + 5000, STALE_NAN_BITS}};
    long n = read_series(t.db, ls, 1, INT64_MIN, INT64_MAX, got, 16);
    assert_samples("dup", got, n, want, 5);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

/* A repeat of the committed newest sample after a newer sample of the same batch: the newest
 * sample is then the pending one, so the repeat is older than it. Prometheus's commit re-checks
 * each sample against the series as the batch has left it and counts this one out of order;
 * it must not be counted as appended. */
START_TEST(test_identical_repeat_after_newer_in_batch)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t ls[] = {{"__name__", "repeat"}};
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 1000, 1.0, NULL), TSDB_REJECT_NONE);
    commit_ok(app);
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0 + 2000, 2.0, NULL), TSDB_REJECT_NONE);
    tsdb_append(app, 0, ls, 1, T0 + 1000, 1.0, NULL);
    tsdb_commit_result_t r = commit_ok(app);
    ck_assert_msg(r.appended == 1 && r.rejected[TSDB_REJECT_OUT_OF_ORDER] == 1 &&
                      r.first_rejected == 1 && r.first_reason == TSDB_REJECT_OUT_OF_ORDER,
                  "[t=2000, repeat of committed t=1000] after committed t=1000: want appended=1 "
                  "out_of_order=1 first_rejected=1, got appended=%" PRIu64 " out_of_order=%" PRIu64
                  " first_rejected=%zu first_reason=%d",
                  r.appended, r.rejected[TSDB_REJECT_OUT_OF_ORDER], r.first_rejected,
                  (int)r.first_reason);
    sample_t got[4];
    sample_t want[] = {{T0 + 1000, bits_of(1.0)}, {T0 + 2000, bits_of(2.0)}};
    assert_samples("repeat", got, read_series(t.db, ls, 1, INT64_MIN, INT64_MAX, got, 4), want, 2);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

START_TEST(test_reject_out_of_bounds)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t a[] = {{"__name__", "a"}};
    tsdb_label_t b[] = {{"__name__", "b"}};
    tsdb_label_t c[] = {{"__name__", "c"}};
    const int64_t max = T0 + 5 * HOUR_MS;
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, max - 2 * HOUR_MS, 1.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, max, 2.0, NULL), TSDB_REJECT_NONE);
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, 2);

    /* The appendable window is head max time minus 1h, inclusive. */
    ck_assert_int_eq(tsdb_append(app, 0, b, 1, max - HOUR_MS, 3.0, NULL), TSDB_REJECT_NONE);
    tsdb_reject_t e = tsdb_append(app, 0, c, 1, max - HOUR_MS - 1, 4.0, NULL);
    ck_assert(e == TSDB_REJECT_NONE || e == TSDB_REJECT_OUT_OF_BOUNDS);
    /* Too old for the window and older than the series: out of bounds comes first. */
    e = tsdb_append(app, 0, a, 1, max - 2 * HOUR_MS - 5, 5.0, NULL);
    ck_assert(e == TSDB_REJECT_NONE || e == TSDB_REJECT_OUT_OF_BOUNDS);
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, max + 1, 6.0, NULL), TSDB_REJECT_NONE);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 2);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_OUT_OF_BOUNDS], 2);
    ck_assert_uint_eq(rejected_total(&r), 2);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_OUT_OF_BOUNDS);
    ck_assert_uint_eq(r.first_rejected, 1);

    sample_t got[8];
    sample_t wa[] = {
        {max - 2 * HOUR_MS, bits_of(1.0)}, {max, bits_of(2.0)}, {max + 1, bits_of(6.0)}};
    sample_t wb[] = {{max - HOUR_MS, bits_of(3.0)}};
    assert_samples("a", got, read_series(t.db, a, 1, INT64_MIN, INT64_MAX, got, 8), wa, 3);
    assert_samples("b", got, read_series(t.db, b, 1, INT64_MIN, INT64_MAX, got, 8), wb, 1);
    ck_assert_int_le(read_series(t.db, c, 1, INT64_MIN, INT64_MAX, got, 8), 0);

    /* A custom window. */
    tsdb_appender_free(app);
    tdb_close(&t);
    t.opts.appendable_window_ms = 10000;
    tdb_open(&t);
    app = tsdb_appender_new(t.db);
    ck_assert_int_eq(tsdb_append(app, 0, b, 1, max + 10000, 7.0, NULL), TSDB_REJECT_NONE);
    commit_ok(app);
    tsdb_label_t d[] = {{"__name__", "d"}};
    ck_assert_int_eq(tsdb_append(app, 0, d, 1, max + 1, 8.0, NULL), TSDB_REJECT_NONE);
    tsdb_append(app, 0, d, 1, max + 2, 9.0, NULL);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 2);
    tsdb_append(app, 0, d, 1, max - 1, 9.0, NULL);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 0);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_OUT_OF_BOUNDS], 1);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

START_TEST(test_reject_invalid_labels)
{
    testdb_t t;
    tdb_init(&t);
    t.opts.limits.max_labels = 3;
    t.opts.limits.max_name_length = 10;
    t.opts.limits.max_value_length = 20;
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);

    static const struct {
        tsdb_label_t labels[5];
        size_t n;
        bool valid;
        const char *what;
    } cases[] = {
        {{{"a", "1"}}, 0, false, "no labels"},
        {{{"a", ""}}, 1, false, "only an empty value"},
        {{{"a", ""}, {"b", ""}}, 2, false, "only empty values"},
        {{{"a", "1"}, {"a", "2"}}, 2, false, "duplicate names"},
        {{{"b", "1"}, {"a", "2"}, {"b", "1"}}, 3, false, "duplicate names, same value"},
        {{{"0a", "1"}}, 1, false, "name starts with a digit"},
        {{{"a-b", "1"}}, 1, false, "name with a dash"},
        {{{"a.b", "1"}}, 1, false, "name with a dot"},
        {{{"", "1"}}, 1, false, "empty name"},
        {{{"é", "1"}}, 1, false, "non-ASCII name"},
        {{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}}, 4, false, "over max_labels"},
        {{{"abcdefghijk", "1"}}, 1, false, "name over max_name_length"},
        {{{"a", "123456789012345678901"}}, 1, false, "value over max_value_length"},
        {{{"a", "1"}, {"b", "2"}, {"c", "3"}}, 3, true, "at max_labels"},
        {{{"a", "1"}, {"b", ""}, {"c", "3"}, {"d", "4"}}, 4, true, "4 given, 3 non-empty"},
        {{{"abcdefghij", "12345678901234567890"}}, 1, true, "name and value at their limits"},
        {{{"__name__", "m"}, {"_x", "é"}}, 2, true, "reserved-looking and unicode value"},
        {{{"A_1", "a"}, {"z", "ünïcode ✓"}}, 2, true, "upper case name, unicode value"},
    };
    uint64_t want_valid = 0;
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        tsdb_ref_t ref = 777;
        tsdb_reject_t e =
            tsdb_append(app, 0, cases[i].labels, cases[i].n, T0 + (int64_t)i, 1.0, &ref);
        if (cases[i].valid) {
            ck_assert_msg(e == TSDB_REJECT_NONE, "%s: rejected (%d)", cases[i].what, (int)e);
            want_valid++;
        } else {
            ck_assert_msg(e == TSDB_REJECT_INVALID_LABELS, "%s: got %d, want invalid labels",
                          cases[i].what, (int)e);
        }
    }
    tsdb_commit_result_t r = commit_ok(app);
    ck_assert_uint_eq(r.appended, want_valid);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_INVALID_LABELS], CAIRN_ARRAY_LEN(cases) - want_valid);
    ck_assert_uint_eq(rejected_total(&r), CAIRN_ARRAY_LEN(cases) - want_valid);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_INVALID_LABELS);
    ck_assert_uint_eq(r.first_rejected, 0);
    ck_assert_uint_eq(stats_of(t.db).series, want_valid);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        if (!cases[i].valid)
            continue;
        sample_t got[4];
        sample_t want = {T0 + (int64_t)i, bits_of(1.0)};
        assert_samples(cases[i].what, got,
                       read_series(t.db, cases[i].labels, cases[i].n, INT64_MIN, INT64_MAX, got, 4),
                       &want, 1);
    }

    /* The first rejection's index counts every append call, rejected ones included. */
    tsdb_label_t ok[] = {{"ok", "1"}};
    tsdb_label_t bad[] = {{"1bad", "1"}};
    ck_assert_int_eq(tsdb_append(app, 0, ok, 1, T0 + 100, 1.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, ok, 1, T0 + 101, 1.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, bad, 1, T0 + 102, 1.0, NULL), TSDB_REJECT_INVALID_LABELS);
    ck_assert_int_eq(tsdb_append(app, 0, ok, 1, T0 + 103, 1.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, ok, 1, T0 + 99, 1.0, NULL) == TSDB_REJECT_INVALID_LABELS,
                     0);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 3);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_INVALID_LABELS], 1);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_OUT_OF_ORDER], 1);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_INVALID_LABELS);
    ck_assert_uint_eq(r.first_rejected, 2);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

START_TEST(test_reject_unknown_ref)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t ls[] = {{"__name__", "known"}};
    tsdb_ref_t ref = 0;
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0, 1.0, &ref), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, ref + 12345, NULL, 0, T0, 1.0, NULL),
                     TSDB_REJECT_UNKNOWN_REF);
    ck_assert_int_eq(tsdb_append(app, UINT64_MAX, NULL, 0, T0, 1.0, NULL), TSDB_REJECT_UNKNOWN_REF);
    /* No reference and no labels cannot name a series. */
    ck_assert_int_ne(tsdb_append(app, 0, NULL, 0, T0, 1.0, NULL), TSDB_REJECT_NONE);
    /* An unknown reference with labels finds (or creates) the series by its labels. */
    tsdb_ref_t ref2 = 0;
    ck_assert_int_eq(tsdb_append(app, ref + 999, ls, 1, T0 + 1, 2.0, &ref2), TSDB_REJECT_NONE);
    ck_assert_uint_eq(ref2, ref);
    tsdb_commit_result_t r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 2);
    ck_assert_uint_ge(r.rejected[TSDB_REJECT_UNKNOWN_REF], 2);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_UNKNOWN_REF] + r.rejected[TSDB_REJECT_INVALID_LABELS],
                      3);
    ck_assert_uint_eq(rejected_total(&r), 3);
    ck_assert_int_eq(r.first_reason, TSDB_REJECT_UNKNOWN_REF);
    ck_assert_uint_eq(r.first_rejected, 1);
    ck_assert_uint_eq(stats_of(t.db).series, 1);

    /* A reference whose series was truncated away no longer exists. */
    ck_assert_int_eq(tsdb_truncate(t.db, T0 + 1000), 0);
    ck_assert_uint_eq(stats_of(t.db).series, 0);
    ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, T0 + 2000, 3.0, NULL), TSDB_REJECT_UNKNOWN_REF);
    r = commit_ok(app);
    ck_assert_uint_eq(r.appended, 0);
    ck_assert_uint_eq(r.rejected[TSDB_REJECT_UNKNOWN_REF], 1);
    /* With its labels it is created again, under a new reference (never reused). */
    ck_assert_int_eq(tsdb_append(app, ref, ls, 1, T0 + 2000, 3.0, &ref2), TSDB_REJECT_NONE);
    ck_assert_uint_ne(ref2, 0);
    ck_assert_uint_ne(ref2, ref);
    r = commit_ok(app);
    assert_clean_result(&r, 1);
    sample_t got[4];
    sample_t want = {T0 + 2000, bits_of(3.0)};
    assert_samples("known", got, read_series(t.db, ls, 1, INT64_MIN, INT64_MAX, got, 4), &want, 1);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

/* A long batch mixing accepted samples, out-of-order ones (older than the committed newest, or
 * only older than an earlier sample of the batch), duplicates and identical repeats over ten
 * series, checked against a sequential model of Prometheus's rules: counts by reason, the first
 * rejection, and that every accepted sample (and nothing else) is stored. */
START_TEST(test_reject_rest_of_batch_stored)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    enum { NS = 10, ROUNDS = 5, OPS = 2000 };
    series_data_t sd[NS] = {0};
    char name[16];
    for (int s = 0; s < NS; s++) {
        snprintf(name, sizeof(name), "s%d", s);
        sd_label(&sd[s], "__name__", "mixed");
        sd_label(&sd[s], "series", name);
    }
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    int64_t committed_t[NS];
    for (int s = 0; s < NS; s++) {
        ck_assert_int_eq(tsdb_append(app, 0, sd[s].labels, 2, T0, 0.0, &sd[s].ref),
                         TSDB_REJECT_NONE);
        sd_push(&sd[s], T0, bits_of(0.0));
        committed_t[s] = T0;
    }
    commit_ok(app);

    uint64_t rng = 7;
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t want_appended = 0, want_rej[TSDB_REJECT_COUNT] = {0};
        size_t want_first = 0;
        tsdb_reject_t want_reason = TSDB_REJECT_NONE;
        for (size_t i = 0; i < OPS; i++) {
            int s = (int)rng_below(&rng, NS);
            sample_t last = sd[s].samples[sd[s].count - 1];
            int op = (int)rng_below(&rng, 10);
            int64_t ts;
            uint64_t v;
            tsdb_reject_t expect = TSDB_REJECT_NONE;
            if (op < 6) {
                ts = last.t + 1 + (int64_t)rng_below(&rng, 1000);
                v = rng_below(&rng, 4) == 0 ? special_bits[rng_below(&rng, 21)]
                                            : bits_of((double)rng_below(&rng, 1000));
            } else if (op < 8) {
                /* Older than the newest, avoiding the committed newest time itself. */
                ts = last.t - 1 - (int64_t)rng_below(&rng, 3000);
                if (ts == committed_t[s])
                    ts--;
                v = bits_of(1.0);
                expect = TSDB_REJECT_OUT_OF_ORDER;
            } else if (op < 9) {
                ts = last.t;
                v = last.v ^ (1ULL << rng_below(&rng, 64));
                expect = TSDB_REJECT_DUPLICATE;
            } else {
                ts = last.t;
                v = last.v;
            }
            tsdb_reject_t e = tsdb_append(app, sd[s].ref, NULL, 0, ts, from_bits(v), NULL);
            ck_assert_msg(e == TSDB_REJECT_NONE || e == expect,
                          "round %d op %zu: append returned %d, expected %d or none", round, i,
                          (int)e, (int)expect);
            if (expect == TSDB_REJECT_NONE) {
                want_appended++;
                if (ts != last.t)
                    sd_push(&sd[s], ts, v);
            } else {
                want_rej[expect]++;
                if (want_reason == TSDB_REJECT_NONE) {
                    want_reason = expect;
                    want_first = i;
                }
            }
        }
        tsdb_commit_result_t r = commit_ok(app);
        ck_assert_uint_eq(r.appended, want_appended);
        for (int k = 0; k < TSDB_REJECT_COUNT; k++)
            ck_assert_msg(r.rejected[k] == want_rej[k],
                          "round %d: rejected[%d] = %" PRIu64 ", want %" PRIu64, round, k,
                          r.rejected[k], want_rej[k]);
        ck_assert_int_eq(r.first_reason, want_reason);
        ck_assert_uint_eq(r.first_rejected, want_first);
        for (int s = 0; s < NS; s++)
            committed_t[s] = sd[s].samples[sd[s].count - 1].t;
    }
    for (int s = 0; s < NS; s++)
        sd_verify(t.db, &sd[s]);
    tsdb_appender_free(app);
    sd_free(sd, NS);
    tdb_destroy(&t);
}
END_TEST

/* ---- references ------------------------------------------------------------------------------ */

START_TEST(test_refs)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t x1[] = {{"a", "1"}, {"b", "2"}};
    tsdb_label_t x2[] = {{"b", "2"}, {"a", "1"}};
    tsdb_label_t x3[] = {{"c", ""}, {"b", "2"}, {"a", "1"}, {"d", ""}};
    tsdb_label_t y1[] = {{"a", "1"}};
    tsdb_label_t y2[] = {{"b", ""}, {"a", "1"}};
    tsdb_ref_t rx = 0, ry = 0, r = 0;
    ck_assert_int_eq(tsdb_append(app, 0, x1, 2, T0 + 1, 1.0, &rx), TSDB_REJECT_NONE);
    ck_assert_uint_ne(rx, 0);
    ck_assert_int_eq(tsdb_append(app, 0, x2, 2, T0 + 2, 2.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, rx);
    ck_assert_int_eq(tsdb_append(app, 0, x3, 4, T0 + 3, 3.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, rx);
    r = 0;
    ck_assert_int_eq(tsdb_append(app, rx, NULL, 0, T0 + 4, 4.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, rx);
    ck_assert_int_eq(tsdb_append(app, rx, x2, 2, T0 + 5, 5.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, rx);
    ck_assert_int_eq(tsdb_append(app, 0, y2, 2, T0 + 1, 10.0, &ry), TSDB_REJECT_NONE);
    ck_assert_uint_ne(ry, 0);
    ck_assert_uint_ne(ry, rx);
    ck_assert_int_eq(tsdb_append(app, 0, y1, 1, T0 + 2, 11.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, ry);
    ck_assert_uint_eq(stats_of(t.db).series, 2); /* created at once, before commit */
    tsdb_commit_result_t res = commit_ok(app);
    assert_clean_result(&res, 7);

    /* Stable across commits. */
    ck_assert_int_eq(tsdb_append(app, 0, x3, 4, T0 + 6, 6.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, rx);
    ck_assert_int_eq(tsdb_append(app, ry, NULL, 0, T0 + 3, 12.0, &r), TSDB_REJECT_NONE);
    ck_assert_uint_eq(r, ry);
    commit_ok(app);

    /* The stored label sets have no empty-valued labels, sorted by name. */
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "a", "1", NULL);
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    ck_assert_uint_eq(tsdb_series_set_count(set), 2);
    const tsdb_label_t *ls;
    ck_assert(tsdb_series_set_next(set));
    ck_assert_uint_eq(tsdb_series_set_labels(set, &ls), 1);
    ck_assert_str_eq(ls[0].name, "a");
    ck_assert_str_eq(ls[0].value, "1");
    ck_assert(tsdb_series_set_next(set));
    ck_assert_uint_eq(tsdb_series_set_labels(set, &ls), 2);
    ck_assert_str_eq(ls[0].name, "a");
    ck_assert_str_eq(ls[1].name, "b");
    ck_assert_str_eq(ls[1].value, "2");
    ck_assert(!tsdb_series_set_next(set));
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);

    /* {c=""} selects series without c: both of them. */
    m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "c", "", NULL);
    q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    ck_assert_uint_eq(tsdb_series_set_count(set), 2);
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);

    sample_t got[8];
    sample_t wx[] = {{T0 + 1, bits_of(1.0)}, {T0 + 2, bits_of(2.0)}, {T0 + 3, bits_of(3.0)},
                     {T0 + 4, bits_of(4.0)}, {T0 + 5, bits_of(5.0)}, {T0 + 6, bits_of(6.0)}};
    sample_t wy[] = {{T0 + 1, bits_of(10.0)}, {T0 + 2, bits_of(11.0)}, {T0 + 3, bits_of(12.0)}};
    assert_samples("x", got, read_series(t.db, x1, 2, INT64_MIN, INT64_MAX, got, 8), wx, 6);
    assert_samples("y", got, read_series(t.db, y1, 1, INT64_MIN, INT64_MAX, got, 8), wy, 3);

    /* Many series: references are distinct. */
    enum { N = 3000 };
    tsdb_ref_t *refs = calloc(N, sizeof(*refs));
    char val[32];
    for (int i = 0; i < N; i++) {
        snprintf(val, sizeof(val), "%d", i);
        tsdb_label_t l[] = {{"__name__", "many"}, {"i", val}};
        ck_assert_int_eq(tsdb_append(app, 0, l, 2, T0 + 10, 1.0, &refs[i]), TSDB_REJECT_NONE);
        ck_assert_uint_ne(refs[i], 0);
        ck_assert_uint_ne(refs[i], rx);
        ck_assert_uint_ne(refs[i], ry);
    }
    commit_ok(app);
    for (int i = 0; i < N; i++) {
        snprintf(val, sizeof(val), "%d", i);
        tsdb_label_t l[] = {{"i", val}, {"__name__", "many"}};
        tsdb_ref_t again = 0;
        ck_assert_int_eq(tsdb_append(app, 0, l, 2, T0 + 11, 2.0, &again), TSDB_REJECT_NONE);
        ck_assert_uint_eq(again, refs[i]);
    }
    commit_ok(app);
    qsort(refs, N, sizeof(*refs), compare_refs);
    for (int i = 1; i < N; i++)
        ck_assert_uint_gt(refs[i], refs[i - 1]);
    free(refs);
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

/* ---- rollback -------------------------------------------------------------------------------- */

START_TEST(test_rollback)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t a[] = {{"__name__", "a"}};
    tsdb_label_t b[] = {{"__name__", "b"}};
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, T0 + 1000, 1.0, NULL), TSDB_REJECT_NONE);
    commit_ok(app);

    tsdb_ref_t rb = 0;
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, T0 + 2000, 2.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, b, 1, T0 + 2000, 2.0, &rb), TSDB_REJECT_NONE);
    tsdb_append(app, 0, a, 1, T0 + 500, 2.0, NULL); /* out of order: rejected now or never */
    tsdb_appender_rollback(app);
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_uint_eq(st.series, 2); /* the created series stays */
    ck_assert_uint_eq(st.samples, 1);
    ck_assert_int_eq(st.max_time, T0 + 1000);

    sample_t got[8];
    sample_t wa1[] = {{T0 + 1000, bits_of(1.0)}};
    assert_samples("a", got, read_series(t.db, a, 1, INT64_MIN, INT64_MAX, got, 8), wa1, 1);
    ck_assert_int_le(read_series(t.db, b, 1, INT64_MIN, INT64_MAX, got, 8), 0);

    /* The rolled-back times are free again; the result only reports the new batch. */
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, T0 + 2000, 3.0, NULL), TSDB_REJECT_NONE);
    tsdb_ref_t rb2 = 0;
    ck_assert_int_eq(tsdb_append(app, 0, b, 1, T0 + 1500, 4.0, &rb2), TSDB_REJECT_NONE);
    ck_assert_uint_eq(rb2, rb);
    ck_assert_int_eq(tsdb_append(app, rb, NULL, 0, T0 + 1600, 5.0, NULL), TSDB_REJECT_NONE);
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, 3);

    /* Rolling back nothing, twice, then committing nothing. */
    tsdb_appender_rollback(app);
    tsdb_appender_rollback(app);
    r = commit_ok(app);
    assert_clean_result(&r, 0);

    /* Freeing an appender with a pending batch discards it. */
    ck_assert_int_eq(tsdb_append(app, 0, a, 1, T0 + 9000, 9.0, NULL), TSDB_REJECT_NONE);
    tsdb_appender_free(app);

    sample_t wa[] = {{T0 + 1000, bits_of(1.0)}, {T0 + 2000, bits_of(3.0)}};
    sample_t wb[] = {{T0 + 1500, bits_of(4.0)}, {T0 + 1600, bits_of(5.0)}};
    assert_samples("a", got, read_series(t.db, a, 1, INT64_MIN, INT64_MAX, got, 8), wa, 2);
    assert_samples("b", got, read_series(t.db, b, 1, INT64_MIN, INT64_MAX, got, 8), wb, 2);

    /* Nothing rolled back reappears after a restart. */
    tdb_close(&t);
    tdb_open(&t);
    assert_samples("a after reopen", got, read_series(t.db, a, 1, INT64_MIN, INT64_MAX, got, 8), wa,
                   2);
    assert_samples("b after reopen", got, read_series(t.db, b, 1, INT64_MIN, INT64_MAX, got, 8), wb,
                   2);
    tdb_destroy(&t);
}
END_TEST

/* ---- chunks ---------------------------------------------------------------------------------- */

static void append_series_in_time_order(tsdb_t *db, series_data_t *sd, size_t ns, size_t batch)
{
    size_t *pos = calloc(ns, sizeof(size_t));
    tsdb_appender_t *app = tsdb_appender_new(db);
    size_t in_batch = 0;
    for (;;) {
        size_t best = SIZE_MAX;
        for (size_t s = 0; s < ns; s++)
            if (pos[s] < sd[s].count &&
                (best == SIZE_MAX || sd[s].samples[pos[s]].t < sd[best].samples[pos[best]].t))
                best = s;
        if (best == SIZE_MAX)
            break;
        sample_t smp = sd[best].samples[pos[best]++];
        tsdb_ref_t ref = 0;
        ck_assert_int_eq(tsdb_append(app, sd[best].ref, sd[best].labels, sd[best].nlabels, smp.t,
                                     from_bits(smp.v), &ref),
                         TSDB_REJECT_NONE);
        sd[best].ref = ref;
        if (++in_batch == batch) {
            tsdb_commit_result_t r = commit_ok(app);
            assert_clean_result(&r, in_batch);
            in_batch = 0;
        }
    }
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, in_batch);
    tsdb_appender_free(app);
    free(pos);
}

/* Exact samples in ranges around each 2h boundary and in random ranges. */
static void verify_ranges(tsdb_t *db, const series_data_t *sd, uint64_t seed, int random_ranges)
{
    int64_t first = sd->samples[0].t, last = sd->samples[sd->count - 1].t;
    for (int64_t b = model_range_end(first); b <= last; b += CHUNK_RANGE_MS) {
        int64_t d[][2] = {{-1, 0},     {0, 0},      {-1, -1},        {0, 14999},
                          {-15000, 0}, {-1, 15000}, {-30001, 30001}, {-HOUR_MS, HOUR_MS}};
        for (size_t i = 0; i < CAIRN_ARRAY_LEN(d); i++)
            sd_verify_range(db, sd, b + d[i][0], b + d[i][1]);
    }
    uint64_t rng = seed;
    for (int i = 0; i < random_ranges; i++) {
        int64_t span = last - first + 1;
        int64_t a = first - 100000 + (int64_t)rng_below(&rng, (uint64_t)span + 200000);
        int64_t z = a + (int64_t)rng_below(&rng, (uint64_t)span / 3 + 1);
        sd_verify_range(db, sd, a, z);
    }
    sd_verify_range(db, sd, first, last);
    sd_verify_range(db, sd, first + 1, last - 1);
    sd_verify_range(db, sd, last, last);
    sd_verify_range(db, sd, first, first);
    sd_verify_range(db, sd, last + 1, INT64_MAX);
    sd_verify_range(db, sd, INT64_MIN, first - 1);
}

/* The brief's case: one series, 1000 samples at 15 s from a 2h-aligned start. Prometheus cuts
 * 4 chunks of 120 samples per 2h range (nextAt re-estimated at 30 samples) and never lets a
 * chunk cross a range boundary: 8 sealed chunks and an open one with the last 40 samples. */
START_TEST(test_chunk_cutting_one_series)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    series_data_t sd[1] = {0};
    sd_label(&sd[0], "__name__", "cut");
    for (int i = 0; i < 1000; i++)
        sd_push(&sd[0], T0 + (int64_t)i * 15000, bits_of((double)i)); /* a counter */
    ck_assert_uint_eq(model_chunks(sd[0].samples, sd[0].count), 9);
    append_series_in_time_order(t.db, sd, 1, 100);
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_uint_eq(st.series, 1);
    ck_assert_uint_eq(st.samples, 1000);
    ck_assert_msg(st.chunks_sealed == 8 && st.chunks_open == 1,
                  "1000 samples at 15s from a 2h boundary: got %" PRIu64 " sealed + %" PRIu64
                  " open chunks, want 8 + 1",
                  st.chunks_sealed, st.chunks_open);
    ck_assert_uint_gt(st.chunk_bytes, 0);
    sd_verify(t.db, &sd[0]);
    verify_ranges(t.db, &sd[0], 1, 200);
    sd_free(sd, 1);
    tdb_destroy(&t);
}
END_TEST

/* Several series with different starts, intervals and an irregular one that reaches the
 * 240-sample limit, appended in time order; the sealed chunk count must match the model. */
START_TEST(test_chunk_cutting_model)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    enum { NS = 6 };
    series_data_t sd[NS] = {0};
    const char *names[NS] = {"s15", "s15_unaligned", "s10", "irregular", "s60", "s1"};
    for (int s = 0; s < NS; s++)
        sd_label(&sd[s], "__name__", names[s]);
    const uint64_t one = bits_of(1.0);
    for (int i = 0; i < 1000; i++)
        sd_push(&sd[0], T0 + (int64_t)i * 15000, one);
    for (int i = 0; i < 1000; i++)
        sd_push(&sd[1], T0 + HOUR_MS + 7777 + (int64_t)i * 15000, one);
    for (int i = 0; i < 1500; i++)
        sd_push(&sd[2], T0 + 123 + (int64_t)i * 10000, one);
    /* 30 samples 2 min apart predict a chunk longer than the range: no re-estimate, so the
     * following dense samples hit the 240-sample limit. */
    for (int i = 0; i < 30; i++)
        sd_push(&sd[3], T0 + 5000 + (int64_t)i * 120000, one);
    for (int i = 0; i < 700; i++)
        sd_push(&sd[3], T0 + 5000 + 29 * 120000 + 1000 + (int64_t)i * 1000, one);
    for (int i = 0; i < 400; i++)
        sd_push(&sd[4], T0 + 59999 + (int64_t)i * 60000, one);
    for (int i = 0; i < 3000; i++)
        sd_push(&sd[5], T0 + 2 * HOUR_MS - 1500 * 1000 + (int64_t)i * 1000, one);
    size_t want_sealed = 0;
    for (int s = 0; s < NS; s++)
        want_sealed += model_chunks(sd[s].samples, sd[s].count) - 1;
    append_series_in_time_order(t.db, sd, NS, 333);
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_uint_eq(st.series, NS);
    ck_assert_msg(st.chunks_sealed == want_sealed && st.chunks_open == NS,
                  "got %" PRIu64 " sealed + %" PRIu64 " open chunks, the model says %zu + %d",
                  st.chunks_sealed, st.chunks_open, want_sealed, NS);
    for (int s = 0; s < NS; s++) {
        sd_verify(t.db, &sd[s]);
        verify_ranges(t.db, &sd[s], 100 + (uint64_t)s, 30);
    }
    sd_free(sd, NS);
    tdb_destroy(&t);
}
END_TEST

/* Random values (chunks also cut by size) and timestamps around zero (2h ranges below zero
 * are floor-aligned). */
START_TEST(test_chunk_negative_times_random_values)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    series_data_t sd[2] = {0};
    sd_label(&sd[0], "__name__", "negative");
    sd_label(&sd[1], "__name__", "random");
    for (int i = 0; i < 1000; i++)
        sd_push(&sd[0], -CHUNK_RANGE_MS - 300000 + (int64_t)i * 15000, bits_of(1.0));
    uint64_t rng = 99;
    for (int i = 0; i < 2000; i++)
        sd_push(&sd[1], -CHUNK_RANGE_MS + (int64_t)i * 5000 + (int64_t)rng_below(&rng, 4000),
                rng_next(&rng));
    append_series_in_time_order(t.db, sd, 2, 250);
    tsdb_stats_t st = stats_of(t.db);
    size_t min_sealed = (model_chunks(sd[0].samples, sd[0].count) - 1) +
                        (model_chunks(sd[1].samples, sd[1].count) - 1);
    /* 2000 random 64-bit values need more than 1005 bytes per 120 samples: size cuts add to the
     * time cuts. */
    ck_assert_uint_gt(st.chunks_sealed, min_sealed);
    ck_assert_uint_eq(st.chunks_open, 2);
    ck_assert_int_eq(st.min_time, sd[0].samples[0].t);
    sd_verify(t.db, &sd[0]);
    sd_verify(t.db, &sd[1]);
    verify_ranges(t.db, &sd[0], 5, 50);
    verify_ranges(t.db, &sd[1], 6, 50);
    sd_free(sd, 2);
    tdb_destroy(&t);
}
END_TEST

/* ---- restart --------------------------------------------------------------------------------- */

static uint64_t restart_value(int s, int i)
{
    if ((i + s) % 17 == 0)
        return special_bits[(size_t)(i + s) % CAIRN_ARRAY_LEN(special_bits)];
    if (s % 3 == 0)
        return bits_of((double)(i * 10 + s)); /* integral: the WAL's varint path */
    if (s % 3 == 1)
        return bits_of(i * 0.25 - 7.125);
    return bits_of(sin(i + s) * 1e6);
}

static void append_steps(tsdb_t *db, series_data_t *sd, size_t ns, int from, int to, int64_t start,
                         int64_t step, int batch_steps)
{
    tsdb_appender_t *app = tsdb_appender_new(db);
    size_t in_batch = 0;
    for (int i = from; i < to; i++) {
        for (size_t s = 0; s < ns; s++) {
            int64_t ts = start + (int64_t)i * step + (int64_t)s;
            uint64_t v = restart_value((int)s, i);
            tsdb_ref_t ref = 0;
            ck_assert_int_eq(
                tsdb_append(app, 0, sd[s].labels, sd[s].nlabels, ts, from_bits(v), &ref),
                TSDB_REJECT_NONE);
            if (!sd[s].ref)
                sd[s].ref = ref;
            ck_assert_uint_eq(ref, sd[s].ref);
            sd_push(&sd[s], ts, v);
            in_batch++;
        }
        if ((i - from) % batch_steps == batch_steps - 1 || i == to - 1) {
            tsdb_commit_result_t r = commit_ok(app);
            assert_clean_result(&r, in_batch);
            in_batch = 0;
        }
    }
    tsdb_appender_free(app);
}

static void run_restart(tsdb_wal_sync_t sync, bool compress, int ns_first, int steps)
{
    testdb_t t;
    tdb_init(&t);
    t.opts.wal_sync = sync;
    t.opts.wal_compress = compress;
    tdb_open(&t);
    const int ns_total = ns_first + 5;
    series_data_t *sd = calloc((size_t)ns_total, sizeof(*sd));
    char buf[32];
    for (int s = 0; s < ns_total; s++) {
        snprintf(buf, sizeof(buf), "%d", s);
        sd_label(&sd[s], "__name__", "restart");
        sd_label(&sd[s], "series", buf);
        sd_label(&sd[s], "zone", s % 2 ? "é-west" : "east");
    }
    const int64_t start = T0 + HOUR_MS + HOUR_MS / 2; /* crosses a 2h boundary */
    append_steps(t.db, sd, (size_t)ns_first, 0, steps, start, 15000, 20);
    tsdb_stats_t before = stats_of(t.db);
    ck_assert_uint_gt(before.chunks_sealed, 0);
    tdb_close(&t);

    t.opts.replay_threads = 3;
    tdb_open(&t);
    tsdb_stats_t after = stats_of(t.db);
    ck_assert_uint_eq(after.series, (uint64_t)ns_first);
    ck_assert_int_eq(after.min_time, before.min_time);
    ck_assert_int_eq(after.max_time, before.max_time);
    ck_assert_uint_eq(after.chunks_sealed, before.chunks_sealed);
    for (int s = 0; s < ns_first; s++)
        sd_verify(t.db, &sd[s]);

    /* More samples for the old series (by labels), and new series. */
    for (int s = 0; s < ns_first; s++)
        sd[s].ref = 0;
    append_steps(t.db, sd, (size_t)ns_first, steps, steps + 100, start, 15000, 7);
    append_steps(t.db, sd + ns_first, 5, steps + 100, steps + 150, start, 15000, 10);
    for (int a = 0; a < ns_total; a++)
        for (int b = a + 1; b < ns_total; b++)
            ck_assert_msg(sd[a].ref != sd[b].ref, "series %d and %d share reference %" PRIu64, a, b,
                          sd[a].ref);
    ck_assert_uint_eq(stats_of(t.db).series, (uint64_t)ns_total);
    for (int s = 0; s < ns_total; s++)
        sd_verify(t.db, &sd[s]);
    tdb_close(&t);

    t.opts.replay_threads = 1;
    tdb_open(&t);
    ck_assert_uint_eq(stats_of(t.db).series, (uint64_t)ns_total);
    for (int s = 0; s < ns_total; s++)
        sd_verify(t.db, &sd[s]);
    /* And still appendable. */
    for (int s = 0; s < ns_total; s++)
        sd[s].ref = 0;
    append_steps(t.db, sd, (size_t)ns_total, steps + 150, steps + 160, start, 15000, 10);
    for (int s = 0; s < ns_total; s++)
        sd_verify(t.db, &sd[s]);
    sd_free(sd, (size_t)ns_total);
    free(sd);
    tdb_destroy(&t);
}

START_TEST(test_restart)
{
    run_restart(TSDB_WAL_SYNC_NONE, true, 40, 400);
}
END_TEST

START_TEST(test_restart_sync_always)
{
    run_restart(TSDB_WAL_SYNC_ALWAYS, false, 10, 200);
}
END_TEST

START_TEST(test_reopen_empty)
{
    testdb_t t;
    tdb_init(&t);
    for (int i = 0; i < 3; i++) {
        tdb_open(&t);
        tsdb_stats_t st = stats_of(t.db);
        ck_assert_uint_eq(st.series, 0);
        ck_assert_uint_eq(st.samples, 0);
        ck_assert_int_eq(st.max_time, INT64_MIN);
        tdb_close(&t);
    }
    /* A directory that does not exist yet is created. */
    char sub[256];
    snprintf(sub, sizeof(sub), "%s/a/b/c", t.dir);
    tsdb_open_options_t o;
    tsdb_open_options_init(&o, sub);
    metric_registry_t *reg = metric_registry_new();
    o.registry = reg;
    cairn_error_t err = {{0}};
    tsdb_t *db = tsdb_open(&o, &err);
    ck_assert_msg(db != NULL, "open %s: %s", sub, err.message);
    ck_assert_int_eq(tsdb_close(db), 0);
    metric_registry_free(reg);
    tdb_destroy(&t);
}
END_TEST

/* After truncation and a restart, the series truncation removed stay removed, and the kept
 * series keep their data at or after the truncation time. */
START_TEST(test_truncate_then_reopen)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    series_data_t sd[2] = {0};
    sd_label(&sd[0], "__name__", "old");
    sd_label(&sd[1], "__name__", "kept");
    for (int i = 0; i < 200; i++)
        sd_push(&sd[0], T0 + (int64_t)i * 15000, bits_of((double)i));
    for (int i = 0; i < 800; i++)
        sd_push(&sd[1], T0 + (int64_t)i * 15000, bits_of((double)i));
    append_series_in_time_order(t.db, sd, 2, 100);
    const int64_t cut = T0 + CHUNK_RANGE_MS;
    ck_assert_int_eq(tsdb_truncate(t.db, cut), 0);
    ck_assert_uint_eq(stats_of(t.db).series, 1);
    sd_verify_range(t.db, &sd[1], cut, INT64_MAX);
    tdb_close(&t);
    tdb_open(&t);
    sample_t got[1024];
    long n = read_series(t.db, sd[0].labels, 1, INT64_MIN, INT64_MAX, got, 1024);
    ck_assert_msg(n <= 0 && stats_of(t.db).series == 1,
                  "series removed by tsdb_truncate came back after a restart (%ld samples, %" PRIu64
                  " series)",
                  n, stats_of(t.db).series);
    sd_verify_range(t.db, &sd[1], cut, INT64_MAX);
    sd_free(sd, 2);
    tdb_destroy(&t);
}
END_TEST

/* ---- torn WAL -------------------------------------------------------------------------------- */

/* The highest-numbered segment file in dir/wal. */
static void last_segment(const char *dir, char *out, size_t size)
{
    char wal[256];
    snprintf(wal, sizeof(wal), "%s/wal", dir);
    DIR *d = opendir(wal);
    ck_assert_msg(d != NULL, "no WAL directory %s", wal);
    long best = -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (strlen(e->d_name) != 8 || strspn(e->d_name, "0123456789") != 8)
            continue;
        long n = strtol(e->d_name, NULL, 10);
        if (n > best)
            best = n;
    }
    closedir(d);
    ck_assert_msg(best >= 0, "no segment in %s", wal);
    snprintf(out, size, "%s/%08ld", wal, best);
}

static off_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

enum { TORN_SERIES = 3, TORN_BATCHES = 300 };

static const char *const torn_names[TORN_SERIES] = {"torn_a", "torn_b", "torn_c"};

static int64_t torn_time(int k)
{
    return T0 + (int64_t)k * 1000;
}

static uint64_t torn_value(int s, int k)
{
    return k % 11 == 0 ? STALE_NAN_BITS : bits_of(k * 1.5 + s);
}

/* One batch per k: one sample for each series. */
static void torn_append(tsdb_t *db, int from, int to)
{
    tsdb_appender_t *app = tsdb_appender_new(db);
    for (int k = from; k < to; k++) {
        for (int s = 0; s < TORN_SERIES; s++) {
            tsdb_label_t ls[] = {{"__name__", torn_names[s]}};
            ck_assert_int_eq(
                tsdb_append(app, 0, ls, 1, torn_time(k), from_bits(torn_value(s, k)), NULL),
                TSDB_REJECT_NONE);
        }
        tsdb_commit_result_t r = commit_ok(app);
        assert_clean_result(&r, TORN_SERIES);
    }
    tsdb_appender_free(app);
}

/* Each series must hold batches [0, m) for some m, and then batches [from2, to2); returns the
 * smallest m. */
static int torn_check(tsdb_t *db, int from2, int to2)
{
    int min_m = TORN_BATCHES;
    sample_t *got = malloc((TORN_BATCHES + 1000) * sizeof(sample_t));
    for (int s = 0; s < TORN_SERIES; s++) {
        tsdb_label_t ls[] = {{"__name__", torn_names[s]}};
        long n = read_series(db, ls, 1, INT64_MIN, INT64_MAX, got, TORN_BATCHES + 1000);
        if (n < 0)
            n = 0;
        long i = 0;
        int m = 0;
        while (i < n && m < TORN_BATCHES && got[i].t == torn_time(m)) {
            ck_assert_msg(got[i].v == torn_value(s, m), "%s: wrong value at batch %d",
                          torn_names[s], m);
            i++;
            m++;
        }
        for (int k = from2; k < to2; k++, i++) {
            ck_assert_msg(i < n, "%s: batch %d appended after the repair is missing", torn_names[s],
                          k);
            ck_assert_msg(got[i].t == torn_time(k) && got[i].v == torn_value(s, k),
                          "%s: sample %ld is t=%" PRId64 ", want batch %d (t=%" PRId64
                          ") after a prefix of %d batches",
                          torn_names[s], i, got[i].t, k, torn_time(k), m);
        }
        ck_assert_msg(i == n, "%s: %ld unexpected samples after %d + %d batches", torn_names[s],
                      n - i, m, to2 - from2);
        if (m < min_m)
            min_m = m;
    }
    free(got);
    return min_m;
}

/* Offset just past the last non-zero byte: segments are padded to whole pages with zeros, so
 * this is where the last record ends. */
static off_t data_end(const char *path)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    off_t size = file_size(path), end = 0;
    unsigned char *buf = malloc((size_t)size);
    ck_assert_int_eq(pread(fd, buf, (size_t)size, 0), size);
    for (off_t i = size; i > 0; i--)
        if (buf[i - 1]) {
            end = i;
            break;
        }
    free(buf);
    close(fd);
    return end;
}

typedef enum torn_mode {
    TORN_CUT_DATA,    /* truncate the segment to `amount` bytes before the end of the data */
    TORN_CUT_PADDING, /* truncate inside the zero padding after the data */
    TORN_FLIP_MIDDLE, /* flip a byte in the middle of the data */
    TORN_FLIP_LAST,   /* flip a byte of the last record */
    TORN_FLIP_PADDING /* a non-zero byte in the padding after the last record */
} torn_mode_t;

static void run_torn(torn_mode_t mode, off_t amount)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    torn_append(t.db, 0, TORN_BATCHES);
    tdb_close(&t);

    char seg[512];
    last_segment(t.dir, seg, sizeof(seg));
    off_t size = file_size(seg), end = data_end(seg);
    ck_assert_int_gt(end, 2000);
    off_t flip = -1;
    switch (mode) {
    case TORN_CUT_DATA: ck_assert_int_eq(truncate(seg, end - amount), 0); break;
    case TORN_CUT_PADDING:
        if (size - end > amount)
            ck_assert_int_eq(truncate(seg, size - amount), 0);
        break;
    case TORN_FLIP_MIDDLE: flip = end / 2; break;
    case TORN_FLIP_LAST: flip = end - 3; break;
    case TORN_FLIP_PADDING: flip = end + amount < size ? end + amount : -1; break;
    }
    if (flip >= 0) {
        int fd = open(seg, O_RDWR);
        ck_assert_int_ge(fd, 0);
        unsigned char c;
        ck_assert_int_eq(pread(fd, &c, 1, flip), 1);
        c ^= 0x5a;
        ck_assert_int_eq(pwrite(fd, &c, 1, flip), 1);
        close(fd);
    }

    tdb_open(&t);
    int m = torn_check(t.db, 0, 0);
    switch (mode) {
    case TORN_CUT_DATA:
        /* The last record is torn; a record is at least 8 bytes, so cutting c bytes loses at
         * most c / 8 + 1 records. */
        ck_assert_msg(m < TORN_BATCHES && m >= TORN_BATCHES - (int)(amount / 8) - 2,
                      "cutting %lld bytes of data kept %d of %d batches", (long long)amount, m,
                      TORN_BATCHES);
        break;
    case TORN_FLIP_MIDDLE:
        ck_assert_msg(m >= TORN_BATCHES / 4 && m < TORN_BATCHES,
                      "a flipped byte in the middle kept %d of %d batches", m, TORN_BATCHES);
        break;
    case TORN_FLIP_LAST:
        ck_assert_msg(m == TORN_BATCHES - 1, "a flipped byte in the last record kept %d of %d", m,
                      TORN_BATCHES);
        break;
    case TORN_CUT_PADDING:
    case TORN_FLIP_PADDING:
        ck_assert_msg(m == TORN_BATCHES, "damaged padding lost records: kept %d of %d", m,
                      TORN_BATCHES);
        break;
    }
    /* Usable: append more, reopen, everything is there. */
    torn_append(t.db, TORN_BATCHES + 10, TORN_BATCHES + 60);
    ck_assert_int_eq(torn_check(t.db, TORN_BATCHES + 10, TORN_BATCHES + 60), m);
    tdb_close(&t);
    tdb_open(&t);
    ck_assert_int_eq(torn_check(t.db, TORN_BATCHES + 10, TORN_BATCHES + 60), m);
    torn_append(t.db, TORN_BATCHES + 60, TORN_BATCHES + 70);
    tdb_close(&t);
    tdb_open(&t);
    ck_assert_int_eq(torn_check(t.db, TORN_BATCHES + 10, TORN_BATCHES + 70), m);
    tdb_destroy(&t);
}

START_TEST(test_torn_wal_truncated)
{
    static const off_t cuts[] = {1, 2, 5, 7, 8, 13, 100, 1000};
    run_torn(TORN_CUT_DATA, cuts[_i]);
}
END_TEST

START_TEST(test_torn_wal_flipped_byte)
{
    run_torn(TORN_FLIP_MIDDLE, 0);
    run_torn(TORN_FLIP_LAST, 0);
}
END_TEST

START_TEST(test_torn_wal_padding)
{
    run_torn(TORN_CUT_PADDING, 100);
    run_torn(TORN_FLIP_PADDING, 100);
}
END_TEST

/* ---- concurrency ----------------------------------------------------------------------------- */

enum { CONC_THREADS = 8, CONC_OWN = 1000, CONC_SHARED = 100, CONC_ROUNDS = 15 };

typedef struct conc_thread {
    tsdb_t *db;
    int id;
    pthread_barrier_t *barrier;
    uint64_t attempts, appended, rejected[TSDB_REJECT_COUNT];
    char error[256];
} conc_thread_t;

static void *conc_writer(void *arg)
{
    conc_thread_t *c = arg;
    tsdb_appender_t *app = tsdb_appender_new(c->db);
    tsdb_ref_t own_refs[CONC_OWN] = {0}, shared_refs[CONC_SHARED] = {0};
    char tid[16], sid[16];
    snprintf(tid, sizeof(tid), "%d", c->id);
    pthread_barrier_wait(c->barrier);
    for (int r = 0; r < CONC_ROUNDS && !c->error[0]; r++) {
        for (int j = 0; j < CONC_OWN; j++) {
            snprintf(sid, sizeof(sid), "%d", j);
            tsdb_label_t ls[] = {{"__name__", "own"}, {"thread", tid}, {"series", sid}};
            tsdb_ref_t ref = 0;
            /* Round 0 by labels, later by reference only. */
            tsdb_reject_t e = tsdb_append(app, own_refs[j], r ? NULL : ls, r ? 0 : 3,
                                          T0 + (int64_t)r * 1000, (double)r, &ref);
            c->attempts++;
            if (e != TSDB_REJECT_NONE) {
                snprintf(c->error, sizeof(c->error), "own series %d/%d round %d rejected: %d",
                         c->id, j, r, (int)e);
                break;
            }
            if (r && ref != own_refs[j]) {
                snprintf(c->error, sizeof(c->error), "own series %d/%d: ref changed", c->id, j);
                break;
            }
            own_refs[j] = ref;
        }
        for (int k = 0; k < CONC_SHARED; k++) {
            snprintf(sid, sizeof(sid), "%d", k);
            tsdb_label_t ls[] = {{"k", sid}, {"__name__", "shared"}};
            /* Distinct times per thread, increasing per thread, interleaved across threads. */
            int64_t ts = T0 + ((int64_t)r * CONC_THREADS + c->id) * 10;
            tsdb_ref_t ref = 0;
            tsdb_append(app, shared_refs[k], ls, 2, ts, (double)ts, &ref);
            c->attempts++;
            if (shared_refs[k] && ref != shared_refs[k]) {
                snprintf(c->error, sizeof(c->error), "shared series %d: ref changed", k);
                break;
            }
            shared_refs[k] = ref;
        }
        tsdb_commit_result_t res;
        if (tsdb_appender_commit(app, &res) != 0) {
            snprintf(c->error, sizeof(c->error), "commit failed");
            break;
        }
        c->appended += res.appended;
        for (int i = 0; i < TSDB_REJECT_COUNT; i++)
            c->rejected[i] += res.rejected[i];
    }
    tsdb_appender_free(app);
    return NULL;
}

typedef struct conc_reader {
    tsdb_t *db;
    atomic_bool *stop;
    uint64_t selects;
    char error[256];
} conc_reader_t;

static void *conc_reader_main(void *arg)
{
    conc_reader_t *c = arg;
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "__name__", "shared", NULL);
    while (!atomic_load(c->stop) && !c->error[0]) {
        tsdb_querier_t *q = tsdb_querier_new(c->db, INT64_MIN, INT64_MAX);
        tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
        while (tsdb_series_set_next(set) && !c->error[0]) {
            int64_t t, prev = INT64_MIN;
            double v;
            while (tsdb_series_set_sample(set, &t, &v)) {
                if (t <= prev || v != (double)t) {
                    snprintf(c->error, sizeof(c->error),
                             "reader: t=%" PRId64 " after %" PRId64 " with v=%g", t, prev, v);
                    break;
                }
                prev = t;
            }
        }
        tsdb_series_set_free(set);
        char **vals;
        size_t n = tsdb_querier_label_values(q, "thread", NULL, 0, &vals);
        if (n > CONC_THREADS)
            snprintf(c->error, sizeof(c->error), "reader: %zu thread values", n);
        tsdb_strings_free(vals, n);
        tsdb_querier_free(q);
        c->selects++;
    }
    tsdb_matcher_free(m);
    return NULL;
}

START_TEST(test_concurrent_appenders)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, CONC_THREADS);
    conc_thread_t th[CONC_THREADS];
    pthread_t tids[CONC_THREADS], rtid;
    atomic_bool stop = false;
    conc_reader_t reader = {.db = t.db, .stop = &stop};
    ck_assert_int_eq(pthread_create(&rtid, NULL, conc_reader_main, &reader), 0);
    for (int i = 0; i < CONC_THREADS; i++) {
        th[i] = (conc_thread_t){.db = t.db, .id = i, .barrier = &barrier};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, conc_writer, &th[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++)
        pthread_join(tids[i], NULL);
    atomic_store(&stop, true);
    pthread_join(rtid, NULL);
    pthread_barrier_destroy(&barrier);
    ck_assert_msg(!reader.error[0], "%s", reader.error);

    uint64_t appended = 0, ooo = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        ck_assert_msg(!th[i].error[0], "thread %d: %s", i, th[i].error);
        uint64_t rej = 0;
        for (int k = 0; k < TSDB_REJECT_COUNT; k++)
            rej += th[i].rejected[k];
        ck_assert_uint_eq(th[i].attempts, (uint64_t)CONC_ROUNDS * (CONC_OWN + CONC_SHARED));
        ck_assert_msg(th[i].appended + rej == th[i].attempts,
                      "thread %d: appended %" PRIu64 " + rejected %" PRIu64 " != %" PRIu64, i,
                      th[i].appended, rej, th[i].attempts);
        ck_assert_uint_eq(rej, th[i].rejected[TSDB_REJECT_OUT_OF_ORDER]);
        appended += th[i].appended;
        ooo += rej;
    }
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_uint_eq(st.series, CONC_THREADS * CONC_OWN + CONC_SHARED);
    ck_assert_uint_eq(st.samples, appended);

    /* Own series: every sample. */
    const uint64_t own_total = (uint64_t)CONC_THREADS * CONC_OWN * CONC_ROUNDS;
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "__name__", "own", NULL);
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    ck_assert_uint_eq(tsdb_series_set_count(set), CONC_THREADS * CONC_OWN);
    uint64_t own_read = 0;
    while (tsdb_series_set_next(set)) {
        int64_t ts;
        double v;
        int r = 0;
        while (tsdb_series_set_sample(set, &ts, &v)) {
            ck_assert_int_eq(ts, T0 + (int64_t)r * 1000);
            ck_assert(v == (double)r);
            r++;
        }
        ck_assert_int_eq(r, CONC_ROUNDS);
        own_read += (uint64_t)r;
    }
    ck_assert_uint_eq(own_read, own_total);
    tsdb_series_set_free(set);
    tsdb_matcher_free(m);

    /* Shared series: what is stored is in increasing time order, without duplicates, and is
     * exactly what the commits counted as appended. */
    m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "__name__", "shared", NULL);
    set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    ck_assert_uint_eq(tsdb_series_set_count(set), CONC_SHARED);
    uint64_t shared_read = 0;
    while (tsdb_series_set_next(set)) {
        int64_t ts, prev = INT64_MIN;
        double v;
        uint64_t n = 0;
        while (tsdb_series_set_sample(set, &ts, &v)) {
            ck_assert_int_gt(ts, prev);
            ck_assert(v == (double)ts);
            ck_assert_int_eq((ts - T0) % 10, 0);
            prev = ts;
            n++;
        }
        /* The newest time any thread tried can never lose. */
        ck_assert_int_eq(prev,
                         T0 + ((int64_t)(CONC_ROUNDS - 1) * CONC_THREADS + CONC_THREADS - 1) * 10);
        shared_read += n;
    }
    tsdb_series_set_free(set);
    tsdb_matcher_free(m);
    tsdb_querier_free(q);
    ck_assert_uint_eq(own_read + shared_read, appended);
    ck_assert_uint_eq(shared_read + ooo, (uint64_t)CONC_THREADS * CONC_SHARED * CONC_ROUNDS);

    /* And exactly the same after a restart: nothing acknowledged lost, nothing rejected back. */
    snapshot_t snap;
    snapshot_take(t.db, "own|shared", &snap);
    tdb_close(&t);
    tdb_open(&t);
    st = stats_of(t.db);
    ck_assert_uint_eq(st.series, CONC_THREADS * CONC_OWN + CONC_SHARED);
    snapshot_verify(t.db, "own|shared", &snap);
    snapshot_free(&snap);
    tdb_destroy(&t);
}
END_TEST

/* 8 threads create the same new series at the same moment: one series each, one reference.
 * The samples are rolled back (same timestamps would race as out of order). */
enum { SAME_THREADS = 8, SAME_SERIES = 500 };

typedef struct same_thread {
    tsdb_t *db;
    int id;
    pthread_barrier_t *barrier;
    tsdb_ref_t refs[SAME_SERIES];
    int failures;
} same_thread_t;

static void *same_main(void *arg)
{
    same_thread_t *c = arg;
    tsdb_appender_t *app = tsdb_appender_new(c->db);
    char sid[16];
    pthread_barrier_wait(c->barrier);
    for (int j = 0; j < SAME_SERIES; j++) {
        int k = (j * 7 + c->id * 61) % SAME_SERIES; /* different orders */
        snprintf(sid, sizeof(sid), "%d", k);
        tsdb_label_t ls[] = {{"series", sid}, {"__name__", "same"}};
        if (c->id % 2) {
            ls[0] = (tsdb_label_t){"__name__", "same"};
            ls[1] = (tsdb_label_t){"series", sid};
        }
        if (tsdb_append(app, 0, ls, 2, T0 + c->id, 1.0, &c->refs[k]) != TSDB_REJECT_NONE)
            c->failures++;
        if (j % 50 == 49)
            tsdb_appender_rollback(app);
    }
    tsdb_appender_rollback(app);
    tsdb_appender_free(app);
    return NULL;
}

START_TEST(test_concurrent_series_creation)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, SAME_THREADS);
    same_thread_t *th = calloc(SAME_THREADS, sizeof(*th));
    pthread_t tids[SAME_THREADS];
    for (int i = 0; i < SAME_THREADS; i++) {
        th[i].db = t.db;
        th[i].id = i;
        th[i].barrier = &barrier;
        ck_assert_int_eq(pthread_create(&tids[i], NULL, same_main, &th[i]), 0);
    }
    for (int i = 0; i < SAME_THREADS; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int k = 0; k < SAME_SERIES; k++)
        for (int i = 0; i < SAME_THREADS; i++) {
            ck_assert_int_eq(th[i].failures, 0);
            ck_assert_uint_ne(th[i].refs[k], 0);
            ck_assert_uint_eq(th[i].refs[k], th[0].refs[k]);
        }
    ck_assert_uint_eq(stats_of(t.db).series, SAME_SERIES);
    free(th);
    tdb_destroy(&t);
}
END_TEST

/* 8 threads in lock-step rounds create the same new series and commit samples to them at
 * distinct times (some lose as out of order). Concurrent commits then both log the new series;
 * after a restart the database must hold exactly what the commits acknowledged. */
enum { FRESH_THREADS = 8, FRESH_ROUNDS = 40, FRESH_SERIES = 50 };

typedef struct fresh_thread {
    tsdb_t *db;
    int id;
    pthread_barrier_t *barrier;
    uint64_t appended, rejected, attempts;
    int failures;
} fresh_thread_t;

static void *fresh_main(void *arg)
{
    fresh_thread_t *c = arg;
    tsdb_appender_t *app = tsdb_appender_new(c->db);
    char rid[16], kid[16];
    for (int r = 0; r < FRESH_ROUNDS; r++) {
        snprintf(rid, sizeof(rid), "%d", r);
        pthread_barrier_wait(c->barrier);
        for (int k = 0; k < FRESH_SERIES; k++) {
            snprintf(kid, sizeof(kid), "%d", (k + c->id * 7) % FRESH_SERIES);
            tsdb_label_t ls[] = {{"__name__", "fresh"}, {"round", rid}, {"k", kid}};
            tsdb_append(app, 0, ls, 3, T0 + (int64_t)r * 100 + c->id, (double)(r * 100 + c->id),
                        NULL);
            c->attempts++;
        }
        tsdb_commit_result_t res;
        if (tsdb_appender_commit(app, &res) != 0) {
            c->failures++;
            continue;
        }
        c->appended += res.appended;
        c->rejected += rejected_total(&res);
        c->failures += res.rejected[TSDB_REJECT_OUT_OF_ORDER] != rejected_total(&res);
    }
    tsdb_appender_free(app);
    return NULL;
}

START_TEST(test_concurrent_new_series_restart)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, FRESH_THREADS);
    fresh_thread_t th[FRESH_THREADS];
    pthread_t tids[FRESH_THREADS];
    for (int i = 0; i < FRESH_THREADS; i++) {
        th[i] = (fresh_thread_t){.db = t.db, .id = i, .barrier = &barrier};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, fresh_main, &th[i]), 0);
    }
    uint64_t appended = 0;
    for (int i = 0; i < FRESH_THREADS; i++) {
        pthread_join(tids[i], NULL);
        ck_assert_int_eq(th[i].failures, 0);
        ck_assert_uint_eq(th[i].appended + th[i].rejected, th[i].attempts);
        appended += th[i].appended;
    }
    pthread_barrier_destroy(&barrier);
    ck_assert_uint_eq(stats_of(t.db).series, FRESH_ROUNDS * FRESH_SERIES);
    snapshot_t snap;
    snapshot_take(t.db, "fresh", &snap);
    uint64_t stored = 0;
    for (size_t i = 0; i < snap.n; i++) {
        stored += snap.sd[i].count;
        for (size_t k = 1; k < snap.sd[i].count; k++)
            ck_assert_int_gt(snap.sd[i].samples[k].t, snap.sd[i].samples[k - 1].t);
    }
    ck_assert_uint_eq(snap.n, FRESH_ROUNDS * FRESH_SERIES);
    ck_assert_uint_eq(stored, appended);
    tdb_close(&t);
    tdb_open(&t);
    ck_assert_uint_eq(stats_of(t.db).series, FRESH_ROUNDS * FRESH_SERIES);
    snapshot_verify(t.db, "fresh", &snap);
    snapshot_free(&snap);
    tdb_destroy(&t);
}
END_TEST

/* Writers append (by reference with labels as the fallback) while another thread truncates
 * behind them; short-lived series are created all the time. Run under AddressSanitizer, this
 * is where a series freed while an appender or querier still holds it would show. */
enum { TRUNC_WRITERS = 4, TRUNC_LONG = 200, TRUNC_ROUNDS = 60 };

typedef struct trunc_writer {
    tsdb_t *db;
    int id;
    uint64_t attempts, appended, rejected;
    char error[256];
} trunc_writer_t;

static void *trunc_writer_main(void *arg)
{
    trunc_writer_t *c = arg;
    tsdb_appender_t *app = tsdb_appender_new(c->db);
    tsdb_ref_t refs[TRUNC_LONG] = {0};
    char tid[16], sid[32];
    snprintf(tid, sizeof(tid), "%d", c->id);
    for (int r = 0; r < TRUNC_ROUNDS; r++) {
        int64_t ts = T0 + (int64_t)r * 60000;
        for (int j = 0; j < TRUNC_LONG; j++) {
            snprintf(sid, sizeof(sid), "%d", j);
            tsdb_label_t ls[] = {{"__name__", "long"}, {"w", tid}, {"s", sid}};
            tsdb_ref_t ref = 0;
            if (tsdb_append(app, refs[j], ls, 3, ts, (double)r, &ref) == TSDB_REJECT_NONE)
                refs[j] = ref;
            c->attempts++;
        }
        for (int j = 0; j < 20; j++) {
            snprintf(sid, sizeof(sid), "%d-%d", r, j);
            tsdb_label_t ls[] = {{"__name__", "short"}, {"w", tid}, {"s", sid}};
            tsdb_append(app, 0, ls, 3, ts, 1.0, NULL);
            c->attempts++;
        }
        tsdb_commit_result_t res;
        if (tsdb_appender_commit(app, &res) != 0) {
            snprintf(c->error, sizeof(c->error), "commit failed");
            break;
        }
        c->appended += res.appended;
        c->rejected += rejected_total(&res);
        if (res.rejected[TSDB_REJECT_INVALID_LABELS] || res.rejected[TSDB_REJECT_DUPLICATE]) {
            snprintf(c->error, sizeof(c->error), "round %d: unexpected rejection %d", r,
                     (int)res.first_reason);
            break;
        }
    }
    tsdb_appender_free(app);
    return NULL;
}

typedef struct trunc_ctx {
    tsdb_t *db;
    atomic_bool *stop;
    int truncations;
    int64_t last_min; /* min_time of the last truncation */
} trunc_ctx_t;

static void *truncator_main(void *arg)
{
    trunc_ctx_t *c = arg;
    while (!atomic_load(c->stop)) {
        tsdb_stats_t st;
        tsdb_stats(c->db, &st);
        if (st.max_time != INT64_MIN) {
            tsdb_truncate(c->db, st.max_time - 5 * 60000);
            if (st.max_time - 5 * 60000 > c->last_min)
                c->last_min = st.max_time - 5 * 60000;
        }
        c->truncations++;
        /* A querier over the live data at the same time. */
        tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_REGEX, "__name__", "long|short", NULL);
        tsdb_querier_t *q = tsdb_querier_new(c->db, INT64_MIN, INT64_MAX);
        tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
        while (tsdb_series_set_next(set)) {
            int64_t t;
            double v;
            while (tsdb_series_set_sample(set, &t, &v))
                ;
        }
        tsdb_series_set_free(set);
        tsdb_querier_free(q);
        tsdb_matcher_free(m);
        usleep(1000);
    }
    return NULL;
}

START_TEST(test_concurrent_truncate_and_append)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    trunc_writer_t w[TRUNC_WRITERS];
    pthread_t tids[TRUNC_WRITERS], ttid;
    atomic_bool stop = false;
    trunc_ctx_t tc = {.db = t.db, .stop = &stop};
    ck_assert_int_eq(pthread_create(&ttid, NULL, truncator_main, &tc), 0);
    for (int i = 0; i < TRUNC_WRITERS; i++) {
        w[i] = (trunc_writer_t){.db = t.db, .id = i};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, trunc_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < TRUNC_WRITERS; i++)
        pthread_join(tids[i], NULL);
    atomic_store(&stop, true);
    pthread_join(ttid, NULL);
    for (int i = 0; i < TRUNC_WRITERS; i++) {
        ck_assert_msg(!w[i].error[0], "writer %d: %s", i, w[i].error);
        ck_assert_uint_eq(w[i].appended + w[i].rejected, w[i].attempts);
    }
    ck_assert_int_gt(tc.truncations, 0);
    /* The last round of every long-lived series is there, in order. */
    const int64_t last = T0 + (int64_t)(TRUNC_ROUNDS - 1) * 60000;
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "__name__", "long", NULL);
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    size_t n = 0;
    while (tsdb_series_set_next(set)) {
        int64_t ts, prev = INT64_MIN;
        double v;
        while (tsdb_series_set_sample(set, &ts, &v)) {
            ck_assert_int_gt(ts, prev);
            prev = ts;
        }
        ck_assert_int_eq(prev, last);
        n++;
    }
    ck_assert_uint_eq(n, TRUNC_WRITERS * TRUNC_LONG);
    tsdb_series_set_free(set);
    tsdb_querier_free(q);

    tsdb_matcher_free(m);

    /* Everything acknowledged and kept survives a restart, unchanged. */
    snapshot_t snap;
    snapshot_take(t.db, "long", &snap);
    tdb_close(&t);
    tdb_open(&t);
    snapshot_verify_after_truncations(t.db, &snap, tc.last_min);
    snapshot_free(&snap);
    tdb_destroy(&t);
}
END_TEST

/* ---- truncation and garbage collection ------------------------------------------------------- */

START_TEST(test_truncate_gc)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    enum { NS = 4 };
    series_data_t sd[NS] = {0};
    sd_label(&sd[0], "__name__", "before");   /* [T0, T0+1h] */
    sd_label(&sd[1], "__name__", "spanning"); /* [T0, T0+3h] */
    sd_label(&sd[2], "__name__", "after");    /* [T0+2h, T0+3h] */
    sd_label(&sd[3], "__name__", "few");      /* two samples before the cut: open chunk only */
    for (int i = 0; i <= 240; i++)
        sd_push(&sd[0], T0 + (int64_t)i * 15000, bits_of((double)i));
    for (int i = 0; i <= 720; i++)
        sd_push(&sd[1], T0 + (int64_t)i * 15000, bits_of((double)i));
    for (int i = 480; i <= 720; i++)
        sd_push(&sd[2], T0 + (int64_t)i * 15000, bits_of((double)i));
    sd_push(&sd[3], T0 + 10, bits_of(1.0));
    sd_push(&sd[3], T0 + 2 * HOUR_MS - 1, bits_of(2.0));
    for (int s = 0; s < NS; s++)
        sd_label(&sd[s], "job", "gc");
    append_series_in_time_order(t.db, sd, NS, 100);
    tsdb_stats_t st = stats_of(t.db);
    ck_assert_uint_eq(st.series, NS);
    uint64_t sealed_before = st.chunks_sealed;

    const int64_t cut = T0 + 2 * HOUR_MS;
    ck_assert_int_eq(tsdb_truncate(t.db, cut), 0);
    st = stats_of(t.db);
    ck_assert_uint_eq(st.series, 2);
    ck_assert_uint_lt(st.chunks_sealed, sealed_before);
    ck_assert_int_ge(st.min_time, cut);
    sample_t got[4];
    ck_assert_int_le(read_series(t.db, sd[0].labels, 2, INT64_MIN, INT64_MAX, got, 4), 0);
    ck_assert_int_le(read_series(t.db, sd[3].labels, 2, INT64_MIN, INT64_MAX, got, 4), 0);
    /* Chunks never cross a 2h boundary, so what is left of the spanning series starts exactly
     * at the cut. */
    series_data_t kept = sd[1];
    size_t first = 480;
    kept.samples = sd[1].samples + first;
    kept.count = sd[1].count - first;
    sd_verify(t.db, &kept);
    sd_verify(t.db, &sd[2]);

    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, "job", "gc", NULL);
    tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    ck_assert_uint_eq(tsdb_series_set_count(set), 2);
    tsdb_series_set_free(set);
    char **names;
    size_t n = tsdb_querier_label_values(q, "__name__", NULL, 0, &names);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(names[0], "after");
    ck_assert_str_eq(names[1], "spanning");
    tsdb_strings_free(names, n);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);

    /* Truncating again at the same time changes nothing; later appends still work. */
    ck_assert_int_eq(tsdb_truncate(t.db, cut), 0);
    ck_assert_uint_eq(stats_of(t.db).series, 2);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    ck_assert_int_eq(tsdb_append(app, 0, sd[0].labels, 2, T0 + 3 * HOUR_MS + 1, 5.0, NULL),
                     TSDB_REJECT_NONE);
    commit_ok(app);
    tsdb_appender_free(app);
    sample_t want = {T0 + 3 * HOUR_MS + 1, bits_of(5.0)};
    assert_samples("recreated", got,
                   read_series(t.db, sd[0].labels, 2, INT64_MIN, INT64_MAX, got, 4), &want, 1);
    sd_free(sd, NS);
    tdb_destroy(&t);
}
END_TEST

/* A truncation that runs while samples of a series are buffered in an appender: the commit
 * still stores them (in the series, or in a re-created one), and they survive a restart. */
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

START_TEST(test_truncate_spares_pending_series)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t ls[] = {{"__name__", "pending"}};
    tsdb_label_t other[] = {{"__name__", "other"}};
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, T0, 1.0, NULL), TSDB_REJECT_NONE);
    ck_assert_int_eq(tsdb_append(app, 0, other, 1, T0 + 1000, 1.0, NULL), TSDB_REJECT_NONE);
    commit_ok(app);

    const int64_t cut = T0 + 500;
    ck_assert_int_eq(tsdb_append(app, 0, ls, 1, cut + 100, 2.0, NULL), TSDB_REJECT_NONE);
    trunc_arg_t arg = {.db = t.db, .min_time = cut};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, truncate_thread, &arg), 0);
    usleep(200 * 1000);
    tsdb_commit_result_t r = commit_ok(app);
    assert_clean_result(&r, 1);
    pthread_join(tid, NULL);
    ck_assert(atomic_load(&arg.done));
    sample_t got[4];
    long n = read_series(t.db, ls, 1, cut, INT64_MAX, got, 4);
    sample_t want = {cut + 100, bits_of(2.0)};
    assert_samples("pending", got, n, &want, 1);
    ck_assert_uint_eq(stats_of(t.db).series, 2);
    tsdb_appender_free(app);

    /* The acknowledged sample survives a restart (whatever the truncation did to its series
     * between append and commit). */
    tdb_close(&t);
    tdb_open(&t);
    n = read_series(t.db, ls, 1, cut, INT64_MAX, got, 4);
    assert_samples("pending after a restart", got, n, &want, 1);
    ck_assert_uint_eq(stats_of(t.db).series, 2);
    tdb_destroy(&t);
}
END_TEST

/* Ten rounds of 10k short-lived series, truncated after each round: the series count does not
 * grow across rounds, and references are never reused. */
START_TEST(test_truncate_churn)
{
    testdb_t t;
    tdb_init(&t);
    tdb_open(&t);
    enum { ROUNDS = 10, PER_ROUND = 10000 };
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_ref_t max_prev = 0;
    char id[32], round[16];
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(round, sizeof(round), "r%d", r);
        const int64_t base = T0 + (int64_t)r * 4 * HOUR_MS;
        tsdb_ref_t min_ref = UINT64_MAX, max_ref = 0;
        for (int i = 0; i < PER_ROUND; i++) {
            snprintf(id, sizeof(id), "r%d-%d", r, i);
            tsdb_label_t ls[] = {{"__name__", "churn"}, {"id", id}, {"round", round}};
            tsdb_ref_t ref = 0;
            ck_assert_int_eq(tsdb_append(app, 0, ls, 3, base + i % 1000, 1.0, &ref),
                             TSDB_REJECT_NONE);
            ck_assert_int_eq(tsdb_append(app, ref, NULL, 0, base + 2000 + i % 1000, 2.0, NULL),
                             TSDB_REJECT_NONE);
            min_ref = ref < min_ref ? ref : min_ref;
            max_ref = ref > max_ref ? ref : max_ref;
            if (i % 1000 == 999)
                commit_ok(app);
        }
        commit_ok(app);
        ck_assert_msg(min_ref > max_prev, "round %d reuses reference %" PRIu64, r, min_ref);
        max_prev = max_ref;
        tsdb_stats_t st = stats_of(t.db);
        ck_assert_msg(st.series == PER_ROUND, "round %d: %" PRIu64 " series before truncation", r,
                      st.series);
        ck_assert_int_eq(tsdb_truncate(t.db, base + HOUR_MS), 0);
        st = stats_of(t.db);
        ck_assert_msg(st.series == 0, "round %d: %" PRIu64 " series left after truncation", r,
                      st.series);
        ck_assert_uint_eq(st.chunks_open, 0);
        tsdb_querier_t *q = tsdb_querier_new(t.db, INT64_MIN, INT64_MAX);
        char **names;
        size_t n = tsdb_querier_label_names(q, NULL, 0, &names);
        ck_assert_msg(n == 0, "round %d: %zu label names left (first %s)", r, n, n ? names[0] : "");
        tsdb_strings_free(names, n);
        n = tsdb_querier_label_values(q, "id", NULL, 0, &names);
        ck_assert_uint_eq(n, 0);
        tsdb_strings_free(names, n);
        tsdb_querier_free(q);
    }
    tsdb_appender_free(app);
    tdb_destroy(&t);
}
END_TEST

/* ---- symbols (internal.h) -------------------------------------------------------------------- */

START_TEST(test_symbols_refcount)
{
    symbols_t *s = symbols_new();
    ck_assert_ptr_nonnull(s);
    uint64_t count, bytes;
    symbols_stats(s, &count, &bytes);
    ck_assert_uint_eq(count, 0);
    ck_assert_uint_eq(bytes, 0);
    ck_assert_uint_eq(symbols_find(s, "alpha", 5), 0);

    uint32_t a = symbols_intern(s, "alpha", 5);
    uint32_t b = symbols_intern(s, "beta", 4);
    ck_assert_uint_ge(a, 1);
    ck_assert_uint_ge(b, 1);
    ck_assert_uint_ne(a, b);
    ck_assert_uint_eq(symbols_intern(s, "alphabet", 5), a); /* only len bytes count */
    ck_assert_uint_eq(symbols_find(s, "alpha", 5), a);
    ck_assert_uint_eq(symbols_find(s, "alph", 4), 0);
    ck_assert_str_eq(symbols_string(s, a), "alpha");
    ck_assert_str_eq(symbols_string(s, b), "beta");
    uint32_t e = symbols_intern(s, "", 0);
    ck_assert_uint_ge(e, 1);
    ck_assert_uint_ne(e, a);
    ck_assert_str_eq(symbols_string(s, e), "");
    uint32_t u = symbols_intern(s, "é|\n", 4);
    ck_assert_str_eq(symbols_string(s, u), "é|\n");
    symbols_stats(s, &count, &bytes);
    ck_assert_uint_eq(count, 4);
    ck_assert_uint_eq(bytes, 5 + 4 + 0 + 4);

    /* alpha: 2 references, plus one retained. */
    symbols_retain(s, a);
    symbols_release(s, a);
    symbols_release(s, a);
    ck_assert_uint_eq(symbols_find(s, "alpha", 5), a);
    ck_assert_str_eq(symbols_string(s, a), "alpha");
    symbols_release(s, a);
    ck_assert_uint_eq(symbols_find(s, "alpha", 5), 0);
    symbols_stats(s, &count, &bytes);
    ck_assert_uint_eq(count, 3);
    ck_assert_uint_eq(bytes, 4 + 0 + 4);
    ck_assert_uint_eq(symbols_find(s, "beta", 4), b);

    /* Interned again: a live symbol (possibly under a reused id). */
    uint32_t a2 = symbols_intern(s, "alpha", 5);
    ck_assert_str_eq(symbols_string(s, a2), "alpha");
    ck_assert_uint_eq(symbols_find(s, "alpha", 5), a2);
    uint32_t g = symbols_intern(s, "gamma", 5);
    ck_assert_uint_ne(g, a2);
    ck_assert_str_eq(symbols_string(s, g), "gamma");
    ck_assert_str_eq(symbols_string(s, b), "beta");

    /* Many symbols: growth, deletion and re-insertion keep lookups right. */
    char buf[32];
    enum { N = 20000 };
    uint32_t *ids = malloc(N * sizeof(uint32_t));
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof(buf), "sym-%d", i);
        ids[i] = symbols_intern(s, buf, (size_t)n);
    }
    for (int i = 0; i < N; i += 2)
        symbols_release(s, ids[i]);
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof(buf), "sym-%d", i);
        uint32_t id = symbols_find(s, buf, (size_t)n);
        if (i % 2)
            ck_assert_msg(id == ids[i] && strcmp(symbols_string(s, id), buf) == 0,
                          "%s lost after deleting its neighbours", buf);
        else
            ck_assert_uint_eq(id, 0);
    }
    for (int i = 1; i < N; i += 2)
        symbols_release(s, ids[i]);
    symbols_stats(s, &count, &bytes);
    ck_assert_uint_eq(count, 5); /* beta, "", é|\n, alpha, gamma */
    free(ids);
    symbols_free(s);
}
END_TEST

enum { SYM_THREADS = 8, SYM_STRINGS = 5000 };

typedef struct sym_thread {
    symbols_t *syms;
    int id;
    pthread_barrier_t *barrier;
    uint32_t ids[SYM_STRINGS];
    bool release;
} sym_thread_t;

static void *sym_main(void *arg)
{
    sym_thread_t *c = arg;
    char buf[32];
    pthread_barrier_wait(c->barrier);
    for (int j = 0; j < SYM_STRINGS; j++) {
        int k = (j * 13 + c->id * 577) % SYM_STRINGS;
        int n = snprintf(buf, sizeof(buf), "shared-%d", k);
        c->ids[k] = symbols_intern(c->syms, buf, (size_t)n);
        /* And a private string interned and released at once. */
        n = snprintf(buf, sizeof(buf), "private-%d-%d", c->id, j);
        uint32_t p = symbols_intern(c->syms, buf, (size_t)n);
        symbols_release(c->syms, p);
    }
    pthread_barrier_wait(c->barrier);
    if (c->release)
        for (int k = 0; k < SYM_STRINGS; k++)
            symbols_release(c->syms, c->ids[k]);
    return NULL;
}

START_TEST(test_symbols_concurrent)
{
    symbols_t *s = symbols_new();
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, SYM_THREADS);
    sym_thread_t *th = calloc(SYM_THREADS, sizeof(*th));
    pthread_t tids[SYM_THREADS];
    for (int i = 0; i < SYM_THREADS; i++) {
        th[i].syms = s;
        th[i].id = i;
        th[i].barrier = &barrier;
        th[i].release = i != 0; /* thread 0 keeps its references */
        ck_assert_int_eq(pthread_create(&tids[i], NULL, sym_main, &th[i]), 0);
    }
    for (int i = 0; i < SYM_THREADS; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&barrier);
    char buf[32];
    for (int k = 0; k < SYM_STRINGS; k++) {
        for (int i = 1; i < SYM_THREADS; i++)
            ck_assert_uint_eq(th[i].ids[k], th[0].ids[k]);
        int n = snprintf(buf, sizeof(buf), "shared-%d", k);
        ck_assert_uint_eq(symbols_find(s, buf, (size_t)n), th[0].ids[k]);
        ck_assert_str_eq(symbols_string(s, th[0].ids[k]), buf);
    }
    uint64_t count, bytes;
    symbols_stats(s, &count, &bytes);
    ck_assert_uint_eq(count, SYM_STRINGS);
    for (int k = 0; k < SYM_STRINGS; k++)
        symbols_release(s, th[0].ids[k]);
    symbols_stats(s, &count, &bytes);
    ck_assert_uint_eq(count, 0);
    ck_assert_uint_eq(bytes, 0);
    for (int k = 0; k < SYM_STRINGS; k++) {
        int n = snprintf(buf, sizeof(buf), "shared-%d", k);
        ck_assert_uint_eq(symbols_find(s, buf, (size_t)n), 0);
    }
    free(th);
    symbols_free(s);
}
END_TEST

/* ---- labels_prepare and the series map (internal.h) ------------------------------------------ */

START_TEST(test_labels_prepare)
{
    tsdb_limits_t limits = {.max_labels = 4, .max_name_length = 8, .max_value_length = 8};
    tsdb_label_t in[] = {{"job", "x"}, {"a", ""}, {"__name__", "up"}, {"b", "2"}};
    tsdb_label_t sorted[4];
    label_input_t out;
    cairn_error_t err = {{0}};
    ck_assert_int_eq(labels_prepare(in, 4, &limits, sorted, &out, &err), TSDB_REJECT_NONE);
    ck_assert_uint_eq(out.count, 3);
    ck_assert_str_eq(out.labels[0].name, "__name__");
    ck_assert_str_eq(out.labels[1].name, "b");
    ck_assert_str_eq(out.labels[2].name, "job");
    ck_assert_uint_eq(out.hash, labels_hash(out.labels, out.count));

    tsdb_label_t in2[] = {{"b", "2"}, {"job", "x"}, {"__name__", "up"}};
    label_input_t out2;
    ck_assert_int_eq(labels_prepare(in2, 3, &limits, sorted, &out2, &err), TSDB_REJECT_NONE);
    tsdb_label_t sorted3[4];
    ck_assert_int_eq(labels_prepare(in, 4, &limits, sorted3, &out, &err), TSDB_REJECT_NONE);
    ck_assert_uint_eq(out.hash, out2.hash);
    /* name/value boundaries are part of the hash. */
    tsdb_label_t c1[] = {{"a", "bc"}}, c2[] = {{"ab", "c"}};
    label_input_t o1, o2;
    tsdb_label_t s1[1], s2[1];
    labels_prepare(c1, 1, &limits, s1, &o1, &err);
    labels_prepare(c2, 1, &limits, s2, &o2, &err);
    ck_assert_uint_ne(o1.hash, o2.hash);

    tsdb_label_t dup[] = {{"a", "1"}, {"b", "1"}, {"a", "2"}};
    err.message[0] = '\0';
    ck_assert_int_eq(labels_prepare(dup, 3, &limits, sorted, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
    ck_assert_msg(strstr(err.message, "a") != NULL, "message: %s", err.message);
    tsdb_label_t bad[] = {{"1a", "1"}};
    err.message[0] = '\0';
    ck_assert_int_eq(labels_prepare(bad, 1, &limits, sorted, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
    ck_assert_uint_gt(strlen(err.message), 0);
    tsdb_label_t empty[] = {{"a", ""}};
    ck_assert_int_eq(labels_prepare(empty, 1, &limits, sorted, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
    ck_assert_int_eq(labels_prepare(empty, 0, &limits, sorted, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
    tsdb_label_t five[] = {{"a", "1"}, {"b", "1"}, {"c", "1"}, {"d", "1"}, {"e", "1"}};
    tsdb_label_t sorted5[5];
    ck_assert_int_eq(labels_prepare(five, 5, &limits, sorted5, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
    tsdb_limits_t none = {0};
    ck_assert_int_eq(labels_prepare(five, 5, &none, sorted5, &out, &err), TSDB_REJECT_NONE);
    tsdb_label_t longname[] = {{"abcdefghi", "1"}}, longvalue[] = {{"a", "123456789"}};
    ck_assert_int_eq(labels_prepare(longname, 1, &limits, sorted, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
    ck_assert_int_eq(labels_prepare(longvalue, 1, &limits, sorted, &out, &err),
                     TSDB_REJECT_INVALID_LABELS);
}
END_TEST

enum { MAP_THREADS = 8, MAP_SETS = 3000 };

typedef struct map_thread {
    series_map_t *map;
    int id;
    pthread_barrier_t *barrier;
    tsdb_series_t *got[MAP_SETS];
    atomic_int *created;
    ref_block_t refs; /* used by odd threads, as an appender does */
    int errors;
} map_thread_t;

static void map_labels(int k, char *inst, size_t size, tsdb_label_t *ls, size_t *n)
{
    snprintf(inst, size, "host-%d", k);
    static const char *const jobs[] = {"a", "b", "c", "d", "e", "f", "g"};
    ls[0] = (tsdb_label_t){"instance", inst};
    ls[1] = (tsdb_label_t){"job", jobs[k % 7]};
    ls[2] = (tsdb_label_t){"path", k % 3 ? "" : "/x"};
    ls[3] = (tsdb_label_t){"__name__", "m"};
    *n = 4;
}

/* Looks up (or creates) series k of map_labels, taking a new reference from refs (NULL: the
 * map's). */
static tsdb_series_t *map_get(series_map_t *map, int k, ref_block_t *refs, bool *created)
{
    char inst[32];
    tsdb_label_t ls[4], sorted[4];
    size_t ln;
    map_labels(k, inst, sizeof(inst), ls, &ln);
    label_input_t in;
    cairn_error_t err;
    tsdb_limits_t limits = {0};
    ck_assert_int_eq(labels_prepare(ls, ln, &limits, sorted, &in, &err), TSDB_REJECT_NONE);
    in.refs = refs;
    return series_map_get_or_create(map, &in, created);
}

static void *map_main(void *arg)
{
    map_thread_t *c = arg;
    tsdb_limits_t limits = {0};
    pthread_barrier_wait(c->barrier);
    for (int j = 0; j < MAP_SETS; j++) {
        int k = c->id % 2 ? (j * 7 + c->id * 101) % MAP_SETS : MAP_SETS - 1 - j;
        char inst[32];
        tsdb_label_t ls[4], sorted[4];
        size_t n;
        map_labels(k, inst, sizeof(inst), ls, &n);
        label_input_t in;
        cairn_error_t err;
        if (labels_prepare(ls, n, &limits, sorted, &in, &err) != TSDB_REJECT_NONE) {
            c->errors++;
            continue;
        }
        if (c->id % 2)
            in.refs = &c->refs;
        bool created = false;
        c->got[k] = series_map_get_or_create(c->map, &in, &created);
        if (created)
            atomic_fetch_add(&c->created[k], 1);
        if (!c->got[k] || series_map_by_ref(c->map, c->got[k]->ref) != c->got[k])
            c->errors++;
    }
    return NULL;
}

START_TEST(test_series_map_concurrent)
{
    symbols_t *syms = symbols_new();
    series_map_t *map = series_map_new(syms, 16);
    atomic_int *created = calloc(MAP_SETS, sizeof(atomic_int));
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, MAP_THREADS);
    map_thread_t *th = calloc(MAP_THREADS, sizeof(*th));
    pthread_t tids[MAP_THREADS];
    for (int i = 0; i < MAP_THREADS; i++) {
        th[i].map = map;
        th[i].id = i;
        th[i].barrier = &barrier;
        th[i].created = created;
        ck_assert_int_eq(pthread_create(&tids[i], NULL, map_main, &th[i]), 0);
    }
    for (int i = 0; i < MAP_THREADS; i++) {
        pthread_join(tids[i], NULL);
        series_map_release_refs(map, &th[i].refs);
    }
    pthread_barrier_destroy(&barrier);
    ck_assert_uint_eq(series_map_count(map), MAP_SETS);
    /* Threads with reference blocks leave unused references behind: at most one block each
     * (REF_BLOCK_MAX is 1024). */
    tsdb_ref_t max_ref = series_map_max_ref(map);
    ck_assert_uint_ge(max_ref, MAP_SETS);
    ck_assert_uint_le(max_ref, MAP_SETS + MAP_THREADS / 2 * 1024);
    bool *seen = calloc(max_ref + 1, sizeof(bool));
    for (int k = 0; k < MAP_SETS; k++) {
        ck_assert_int_eq(atomic_load(&created[k]), 1);
        tsdb_series_t *s = th[0].got[k];
        ck_assert_ptr_nonnull(s);
        for (int i = 0; i < MAP_THREADS; i++) {
            ck_assert_int_eq(th[i].errors, 0);
            ck_assert_ptr_eq(th[i].got[k], s);
        }
        ck_assert_uint_ge(s->ref, 1);
        ck_assert_uint_le(s->ref, max_ref);
        ck_assert(!seen[s->ref]);
        seen[s->ref] = true;
        ck_assert_ptr_eq(series_map_by_ref(map, s->ref), s);
        /* Its labels, sorted, without the empty path. */
        char inst[32];
        tsdb_label_t ls[4], want[4];
        size_t n;
        map_labels(k, inst, sizeof(inst), ls, &n);
        size_t wn = normalise_labels(ls, n, want);
        ck_assert_uint_eq(s->label_count, wn);
        for (size_t l = 0; l < wn; l++) {
            ck_assert_str_eq(symbols_string(syms, s->labels[2 * l]), want[l].name);
            ck_assert_str_eq(symbols_string(syms, s->labels[2 * l + 1]), want[l].value);
        }
    }
    ck_assert_ptr_null(series_map_by_ref(map, 0));
    ck_assert_ptr_null(series_map_by_ref(map, max_ref + 1));
    ck_assert_ptr_null(series_map_by_ref(map, UINT64_MAX));

    /* Postings: {job="a"} holds exactly the series with k % 7 == 0, sorted, although writers
     * with blocks inserted out of order. */
    uint32_t job = symbols_find(syms, "job", 3), a = symbols_find(syms, "a", 1);
    ck_assert_uint_ne(job, 0);
    ck_assert_uint_ne(a, 0);
    tsdb_ref_t *refs;
    size_t n = postings_get(map, job, a, &refs);
    ck_assert_uint_eq(n, (MAP_SETS + 6) / 7);
    for (size_t i = 0; i < n; i++) {
        if (i)
            ck_assert_uint_gt(refs[i], refs[i - 1]);
        tsdb_series_t *s = series_map_by_ref(map, refs[i]);
        ck_assert_ptr_nonnull(s);
    }
    cairn_free(refs);
    uint32_t *vals;
    n = postings_values(map, job, &vals);
    ck_assert_uint_eq(n, 7);
    cairn_free(vals);
    uint32_t *names;
    n = postings_names(map, &names);
    ck_assert_uint_eq(n, 4); /* __name__, instance, job, path */
    cairn_free(names);
    n = postings_all(map, &refs);
    ck_assert_uint_eq(n, MAP_SETS);
    for (size_t i = 1; i < n; i++)
        ck_assert_uint_gt(refs[i], refs[i - 1]);
    cairn_free(refs);

    /* Unlink a third: gone from lookups, postings and the count; created again with a new
     * reference. */
    for (int k = 0; k < MAP_SETS; k += 3) {
        tsdb_series_t *s = th[0].got[k];
        tsdb_ref_t ref = s->ref;
        series_map_unlink(map, s);
        ck_assert_ptr_null(series_map_by_ref(map, ref));
        series_free(map, s);
    }
    ck_assert_uint_eq(series_map_count(map), MAP_SETS - (MAP_SETS + 2) / 3);
    uint32_t path = symbols_find(syms, "path", 4);
    /* Every series with path="/x" had k % 3 == 0: the label is gone entirely. */
    ck_assert_uint_eq(path, 0);
    n = postings_all(map, &refs);
    ck_assert_uint_eq(n, MAP_SETS - (MAP_SETS + 2) / 3);
    cairn_free(refs);
    n = postings_get(map, job, a, &refs);
    size_t want_a = 0;
    for (int k = 0; k < MAP_SETS; k += 7)
        want_a += k % 3 != 0;
    ck_assert_uint_eq(n, want_a);
    cairn_free(refs);
    /* Re-create them through two blocks taken in turn, as two appenders would: every list
     * takes references out of order (each block starts above every reference so far). */
    ref_block_t blocks[2] = {{0}};
    for (int k = 0; k < MAP_SETS; k += 3) {
        bool was_created = false;
        tsdb_series_t *s = map_get(map, k, &blocks[k % 2], &was_created);
        ck_assert(was_created);
        ck_assert_uint_gt(s->ref, max_ref);
        th[0].got[k] = s;
    }
    series_map_release_refs(map, &blocks[0]);
    series_map_release_refs(map, &blocks[1]);
    ck_assert_uint_eq(series_map_count(map), MAP_SETS);
    n = postings_get(map, job, a, &refs);
    ck_assert_uint_eq(n, (MAP_SETS + 6) / 7);
    for (size_t i = 1; i < n; i++)
        ck_assert_uint_gt(refs[i], refs[i - 1]);
    cairn_free(refs);
    /* The others are still found by labels as the same objects. */
    for (int k = 1; k < MAP_SETS; k += 3) {
        bool was_created = true;
        ck_assert_ptr_eq(map_get(map, k, NULL, &was_created), th[0].got[k]);
        ck_assert(!was_created);
    }
    /* Unlink until {job="b"} is compacted while it still has its unsorted tail (it has not
     * been read since): what remains is complete and, once read, sorted. */
    for (int k = 0; k < MAP_SETS; k++) {
        if (k % 3 == 1 || k % 6 == 0) {
            series_map_unlink(map, th[0].got[k]);
            series_free(map, th[0].got[k]);
        }
    }
    uint32_t b = symbols_find(syms, "b", 1);
    n = postings_get(map, job, b, &refs);
    size_t want_b = 0;
    for (int k = 1; k < MAP_SETS; k += 7)
        want_b += k % 3 == 2 || k % 6 == 3;
    ck_assert_uint_eq(n, want_b);
    for (size_t i = 0; i < n; i++) {
        if (i)
            ck_assert_uint_gt(refs[i], refs[i - 1]);
        tsdb_series_t *s = series_map_by_ref(map, refs[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(symbols_string(syms, s->labels[2 * 2 + 1]), "b"); /* after instance */
    }
    cairn_free(refs);
    free(seen);
    free(th);
    free(created);
    series_map_free(map);
    symbols_free(syms);
}
END_TEST

/* series_map_create_with_ref (replay) keeps the given reference and later references are
 * above it. */
START_TEST(test_series_map_create_with_ref)
{
    symbols_t *syms = symbols_new();
    series_map_t *map = series_map_new(syms, 4);
    tsdb_limits_t limits = {0};
    tsdb_label_t a[] = {{"a", "1"}}, b[] = {{"b", "1"}}, c[] = {{"c", "1"}};
    tsdb_label_t sorted[1];
    label_input_t in;
    cairn_error_t err;
    labels_prepare(a, 1, &limits, sorted, &in, &err);
    tsdb_series_t *sa = series_map_create_with_ref(map, &in, 100000);
    ck_assert_uint_eq(sa->ref, 100000);
    ck_assert_ptr_eq(series_map_by_ref(map, 100000), sa);
    /* The same labels again: the existing series. */
    ck_assert_ptr_eq(series_map_create_with_ref(map, &in, 5), sa);
    labels_prepare(b, 1, &limits, sorted, &in, &err);
    bool created;
    tsdb_series_t *sb = series_map_get_or_create(map, &in, &created);
    ck_assert(created);
    ck_assert_uint_gt(sb->ref, 100000);
    labels_prepare(c, 1, &limits, sorted, &in, &err);
    tsdb_series_t *sc = series_map_create_with_ref(map, &in, 7);
    ck_assert_uint_eq(sc->ref, 7);
    ck_assert_uint_eq(series_map_count(map), 3);
    ck_assert_uint_ge(series_map_max_ref(map), sb->ref);
    tsdb_ref_t *refs;
    size_t n = postings_all(map, &refs);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(refs[0], 7);
    ck_assert_uint_eq(refs[1], 100000);
    ck_assert_uint_eq(refs[2], sb->ref);
    cairn_free(refs);
    series_map_free(map);
    symbols_free(syms);
}
END_TEST

/* A ref-table page is freed once all its references were handed out and it holds no live
 * series, even with references in it that never got one; a writer whose block still holds
 * such references can go on creating series there. */
START_TEST(test_series_map_reclaim_with_block)
{
    symbols_t *syms = symbols_new();
    series_map_t *map = series_map_new(syms, 4);
    tsdb_limits_t limits = {0};
    tsdb_label_t x[] = {{"x", "1"}}, y[] = {{"y", "1"}}, z[] = {{"z", "1"}};
    tsdb_label_t sorted[1];
    label_input_t in;
    cairn_error_t err;
    ref_block_t block = {0};
    bool created;
    labels_prepare(x, 1, &limits, sorted, &in, &err);
    in.refs = &block;
    tsdb_series_t *sx = series_map_get_or_create(map, &in, &created);
    tsdb_ref_t rx = sx->ref;
    ck_assert_uint_lt(block.next, block.end); /* the block has references left */
    /* A replayed series past the first page (2^16 references): the page is all handed out. */
    labels_prepare(y, 1, &limits, sorted, &in, &err);
    tsdb_series_t *sy = series_map_create_with_ref(map, &in, (1u << 16) + 5);
    tsdb_ref_t sy_ref = sy->ref;
    series_map_unlink(map, sx);
    series_free(map, sx);
    series_map_reclaim_pages(map);
    ck_assert_ptr_null(series_map_by_ref(map, rx));
    ck_assert_ptr_eq(series_map_by_ref(map, sy->ref), sy);
    labels_prepare(z, 1, &limits, sorted, &in, &err);
    in.refs = &block;
    tsdb_series_t *sz = series_map_get_or_create(map, &in, &created);
    ck_assert(created);
    ck_assert_uint_eq(sz->ref, rx + 1);
    ck_assert_ptr_eq(series_map_by_ref(map, rx + 1), sz);
    tsdb_ref_t *refs;
    ck_assert_uint_eq(postings_all(map, &refs), 2);
    ck_assert_uint_eq(refs[0], rx + 1);
    cairn_free(refs);
    series_map_release_refs(map, &block); /* not the newest block: nothing given back */
    labels_prepare(x, 1, &limits, sorted, &in, &err);
    ck_assert_uint_eq(series_map_get_or_create(map, &in, &created)->ref, sy->ref + 1);
    /* The newest block's unused references are given back. */
    ref_block_t newest = {0};
    labels_prepare(y, 1, &limits, sorted, &in, &err);
    in.refs = &newest;
    series_map_unlink(map, sy);
    series_free(map, sy);
    ck_assert_uint_eq(series_map_get_or_create(map, &in, &created)->ref, sy_ref + 2);
    series_map_release_refs(map, &newest);
    labels_prepare(z, 1, &limits, sorted, &in, &err);
    in.refs = NULL;
    series_map_unlink(map, sz);
    series_free(map, sz);
    ck_assert_uint_eq(series_map_get_or_create(map, &in, &created)->ref, sy_ref + 3);
    series_map_free(map);
    symbols_free(syms);
}
END_TEST

/* A series takes the stripe key given with its labels; without one (replay), one from its
 * reference, shared by a block of 2^SERIES_STRIPE_SHIFT references. */
START_TEST(test_series_map_stripe_key)
{
    symbols_t *syms = symbols_new();
    series_map_t *map = series_map_new(syms, 4);
    tsdb_limits_t limits = {0};
    tsdb_label_t a[] = {{"a", "1"}}, b[] = {{"b", "1"}}, c[] = {{"c", "1"}};
    tsdb_label_t sorted[1];
    label_input_t in;
    cairn_error_t err;
    bool created;
    labels_prepare(a, 1, &limits, sorted, &in, &err);
    ck_assert_uint_eq(in.stripe_key, 0);
    in.stripe_key = 77;
    tsdb_series_t *sa = series_map_get_or_create(map, &in, &created);
    ck_assert(created);
    ck_assert_uint_eq(sa->stripe_key, 77);
    /* Found, not created: the key it was created with stays. */
    in.stripe_key = 78;
    ck_assert_ptr_eq(series_map_get_or_create(map, &in, &created), sa);
    ck_assert(!created);
    ck_assert_uint_eq(sa->stripe_key, 77);
    labels_prepare(b, 1, &limits, sorted, &in, &err);
    tsdb_series_t *sb = series_map_create_with_ref(map, &in, 5 << SERIES_STRIPE_SHIFT);
    ck_assert_uint_eq(sb->stripe_key, 5);
    labels_prepare(c, 1, &limits, sorted, &in, &err);
    tsdb_series_t *sc = series_map_create_with_ref(map, &in, (5 << SERIES_STRIPE_SHIFT) + 1);
    ck_assert_uint_eq(sc->stripe_key, 5);
    series_map_free(map);
    symbols_free(syms);
}
END_TEST

/* ---- main ------------------------------------------------------------------------------------ */

static Suite *head_suite(void)
{
    Suite *s = suite_create("tsdb_head");
    TCase *tc = tcase_create("append");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_reject_messages);
    tcase_add_test(tc, test_append_commit_query);
    tcase_add_test(tc, test_append_single_sample);
    suite_add_tcase(s, tc);

    tc = tcase_create("reject");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_reject_out_of_order);
    tcase_add_test(tc, test_reject_duplicate);
    tcase_add_test(tc, test_identical_repeat_after_newer_in_batch);
    tcase_add_test(tc, test_reject_out_of_bounds);
    tcase_add_test(tc, test_reject_invalid_labels);
    tcase_add_test(tc, test_reject_unknown_ref);
    tcase_add_test(tc, test_reject_rest_of_batch_stored);
    suite_add_tcase(s, tc);

    tc = tcase_create("refs");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_refs);
    tcase_add_test(tc, test_rollback);
    suite_add_tcase(s, tc);

    tc = tcase_create("chunks");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_chunk_cutting_one_series);
    tcase_add_test(tc, test_chunk_cutting_model);
    tcase_add_test(tc, test_chunk_negative_times_random_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("restart");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_restart);
    tcase_add_test(tc, test_restart_sync_always);
    tcase_add_test(tc, test_reopen_empty);
    tcase_add_test(tc, test_truncate_then_reopen);
    tcase_add_loop_test(tc, test_torn_wal_truncated, 0, 8);
    tcase_add_test(tc, test_torn_wal_flipped_byte);
    tcase_add_test(tc, test_torn_wal_padding);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_concurrent_appenders);
    tcase_add_test(tc, test_concurrent_series_creation);
    tcase_add_test(tc, test_concurrent_new_series_restart);
    tcase_add_test(tc, test_concurrent_truncate_and_append);
    suite_add_tcase(s, tc);

    tc = tcase_create("truncate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_truncate_gc);
    tcase_add_test(tc, test_truncate_spares_pending_series);
    tcase_add_test(tc, test_truncate_churn);
    suite_add_tcase(s, tc);

    tc = tcase_create("internal");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_symbols_refcount);
    tcase_add_test(tc, test_symbols_concurrent);
    tcase_add_test(tc, test_labels_prepare);
    tcase_add_test(tc, test_series_map_concurrent);
    tcase_add_test(tc, test_series_map_create_with_ref);
    tcase_add_test(tc, test_series_map_stripe_key);
    tcase_add_test(tc, test_series_map_reclaim_with_block);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(base_dir, sizeof(base_dir), "/tmp/cairn-check-tsdb-head-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    log_set_level(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
    SRunner *sr = srunner_create(head_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rm_rf(base_dir);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
