/*
 * tests/unit/check_query_promql_eval.c: unit tests of the PromQL engine (query/promql_eval*.c)
 * through its public API (query.h) over a real TSDB.
 *
 * Each test opens a TSDB in a fresh mkdtemp directory (under a per-run base directory removed
 * at the end), appends series through the appender, and runs instant and range queries:
 * selectors and the lookback window, stale markers, range stepping, subqueries, operators and
 * matching errors, aggregations, functions, annotations, result ordering, and the limits
 * (max_samples, timeout, cancellation, max_concurrency, range-query expression types).
 */
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "query/query.h"
#include "tsdb/tsdb.h"

#define MIN_MS    ((int64_t)60 * 1000)
#define STALE_NAN 0x7ff0000000000002ULL
#define WIDE_MS   ((int64_t)1 << 60)

static char base_dir[64];

#include "tests/test_util.h"

typedef struct fixture {
    char dir[128];
    tsdb_t *db;
    promql_engine_t *engine;
    query_options_t opts;
} fixture_t;

static void fixture_open(fixture_t *f, const query_options_t *opts)
{
    snprintf(f->dir, sizeof(f->dir), "%s/db-XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    tsdb_open_options_t o;
    tsdb_open_options_init(&o, f->dir);
    o.head_window_ms = WIDE_MS;
    o.appendable_window_ms = WIDE_MS;
    o.snapshot_on_close = false;
    cairn_error_t err = {{0}};
    f->db = tsdb_open(&o, &err);
    ck_assert_msg(f->db != NULL, "tsdb_open: %s", err.message);
    if (opts)
        f->opts = *opts;
    else
        query_options_init(&f->opts);
    f->engine = promql_engine_new(f->db, &f->opts);
}

static void fixture_close(fixture_t *f)
{
    promql_engine_free(f->engine);
    ck_assert_int_eq(tsdb_close(f->db), 0);
    rm_rf(f->dir);
}

/* Appends `name{k=v,...} v0 v0+step ...` every interval_ms from 0: labels as "k=v,k=v". */
static void add_series(fixture_t *f, const char *labels, int64_t interval_ms, double start,
                       double step, size_t count)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", labels);
    tsdb_label_t ls[8];
    size_t n = 0;
    for (char *tok = strtok(copy, ","); tok && n < 8; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        ls[n].name = tok;
        ls[n].value = eq + 1;
        n++;
    }
    tsdb_appender_t *app = tsdb_appender_new(f->db);
    for (size_t i = 0; i < count; i++)
        tsdb_append(app, 0, ls, n, (int64_t)i * interval_ms, start + step * (double)i, NULL);
    ck_assert_int_eq(tsdb_appender_commit(app, NULL), 0);
    tsdb_appender_free(app);
}

static void add_sample(fixture_t *f, const char *name, int64_t t, double v)
{
    tsdb_label_t l = {"__name__", name};
    tsdb_appender_t *app = tsdb_appender_new(f->db);
    tsdb_append(app, 0, &l, 1, t, v, NULL);
    ck_assert_int_eq(tsdb_appender_commit(app, NULL), 0);
    tsdb_appender_free(app);
}

static const char *label_of(const promql_series_t *s, const char *name)
{
    for (size_t i = 0; i < s->label_count; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}

static void instant_ok(fixture_t *f, const char *q, int64_t t, promql_result_t *r)
{
    int rc = promql_query_instant(f->engine, q, t, NULL, r);
    ck_assert_msg(rc == 0, "%s: %s", q, r->error ? r->error : "(no message)");
}

/* ---- tests ------------------------------------------------------------------------------- */

START_TEST(test_names)
{
    ck_assert_str_eq(promql_value_type_name(PROMQL_VALUE_VECTOR), "vector");
    ck_assert_str_eq(promql_value_type_name(PROMQL_VALUE_MATRIX), "matrix");
    ck_assert_str_eq(promql_error_type_name(PROMQL_ERROR_EXECUTION), "execution");
    ck_assert_str_eq(promql_error_type_name(PROMQL_ERROR_TIMEOUT), "timeout");
    ck_assert_uint_eq(promql_error_http_status(PROMQL_ERROR_BAD_DATA), 400);
    ck_assert_uint_eq(promql_error_http_status(PROMQL_ERROR_EXECUTION), 422);
    ck_assert_uint_eq(promql_error_http_status(PROMQL_ERROR_CANCELED), 499);
    ck_assert_uint_eq(promql_error_http_status(PROMQL_ERROR_TIMEOUT), 503);
}
END_TEST

START_TEST(test_instant_selector_and_lookback)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=up,job=b", MIN_MS, 1, 1, 5); /* 0m..4m: 1..5 */
    add_series(&f, "__name__=up,job=a", MIN_MS, 10, 0, 5);
    promql_result_t r;
    instant_ok(&f, "up", 2 * MIN_MS + 30000, &r);
    ck_assert_int_eq(r.type, PROMQL_VALUE_VECTOR);
    ck_assert_uint_eq(r.series_count, 2);
    /* Sorted by labels: job="a" first; the point's time is the evaluation time. */
    ck_assert_str_eq(label_of(&r.series[0], "job"), "a");
    ck_assert_str_eq(label_of(&r.series[1], "__name__"), "up");
    ck_assert_uint_eq(r.series[1].point_count, 1);
    ck_assert_int_eq(r.series[1].points[0].t, 2 * MIN_MS + 30000);
    ck_assert_double_eq(r.series[1].points[0].v, 3);
    promql_result_free(&r);

    /* The last sample is at 4m: visible until 9m exclusive (left-open window). */
    instant_ok(&f, "up{job=\"b\"}", 9 * MIN_MS - 1, &r);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_double_eq(r.series[0].points[0].v, 5);
    promql_result_free(&r);
    instant_ok(&f, "up{job=\"b\"}", 9 * MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 0);
    ck_assert_int_eq(r.type, PROMQL_VALUE_VECTOR);
    promql_result_free(&r);

    /* A per-query lookback delta. */
    promql_query_params_t p = {.lookback_delta_ms = 30000};
    ck_assert_int_eq(promql_query_instant(f.engine, "up", 4 * MIN_MS + 40000, &p, &r), 0);
    ck_assert_uint_eq(r.series_count, 0);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_stale_marker)
{
    fixture_t f;
    fixture_open(&f, NULL);
    double stale;
    uint64_t bits = STALE_NAN;
    memcpy(&stale, &bits, sizeof(stale));
    add_sample(&f, "m", 0, 1);
    add_sample(&f, "m", MIN_MS, 2);
    add_sample(&f, "m", 2 * MIN_MS, stale);
    promql_result_t r;
    instant_ok(&f, "m", MIN_MS + 1000, &r);
    ck_assert_uint_eq(r.series_count, 1);
    promql_result_free(&r);
    instant_ok(&f, "m", 2 * MIN_MS + 1000, &r);
    ck_assert_uint_eq(r.series_count, 0); /* the newest sample is a stale marker */
    promql_result_free(&r);
    /* Range selectors drop stale markers. */
    instant_ok(&f, "count_over_time(m[10m])", 3 * MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_double_eq(r.series[0].points[0].v, 2);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_range_query_stepping)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=c_total", 15000, 0, 15, 41); /* 1/s for 10 minutes */
    promql_result_t r;
    ck_assert_int_eq(
        promql_query_range(f.engine, "rate(c_total[1m])", 2 * MIN_MS, 5 * MIN_MS, MIN_MS, NULL, &r),
        0);
    ck_assert_int_eq(r.type, PROMQL_VALUE_MATRIX);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_uint_eq(r.series[0].point_count, 4);
    ck_assert_ptr_null(label_of(&r.series[0], "__name__")); /* rate drops the name */
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(r.series[0].points[i].t, (int64_t)(2 + i) * MIN_MS);
        ck_assert_double_eq_tol(r.series[0].points[i].v, 1.0, 1e-9);
    }
    ck_assert_uint_eq(r.info_count, 0);
    promql_result_free(&r);

    /* A scalar expression gives one series without labels. */
    ck_assert_int_eq(promql_query_range(f.engine, "time() * 2", 0, 2 * MIN_MS, MIN_MS, NULL, &r),
                     0);
    ck_assert_int_eq(r.type, PROMQL_VALUE_MATRIX);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_uint_eq(r.series[0].label_count, 0);
    ck_assert_double_eq(r.series[0].points[2].v, 240);
    promql_result_free(&r);

    /* Range queries need a scalar or an instant vector. */
    ck_assert_int_eq(promql_query_range(f.engine, "c_total[1m]", 0, MIN_MS, MIN_MS, NULL, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_BAD_DATA);
    ck_assert_str_eq(r.error, "invalid expression type \"range vector\" for range query, must be "
                              "Scalar or instant Vector");
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_subquery)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=g", 30000, 0, 1, 21); /* 0..20 every 30s */
    promql_result_t r;
    /* Steps aligned to multiples of 1m in (10m - 5m, 10m]: 6m..10m -> values 12..20. */
    instant_ok(&f, "count_over_time(g[5m:1m])", 10 * MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_double_eq(r.series[0].points[0].v, 5);
    promql_result_free(&r);
    instant_ok(&f, "min_over_time(g[5m:1m])", 10 * MIN_MS + 20000, &r);
    ck_assert_double_eq(r.series[0].points[0].v, 12);
    promql_result_free(&r);
    /* The default step is the engine's evaluation interval (1m). */
    instant_ok(&f, "count_over_time(g[5m:])", 10 * MIN_MS, &r);
    ck_assert_double_eq(r.series[0].points[0].v, 5);
    promql_result_free(&r);
    /* A subquery as the whole query gives a range vector of its inner steps. */
    instant_ok(&f, "g[2m:1m]", 10 * MIN_MS, &r);
    ck_assert_int_eq(r.type, PROMQL_VALUE_MATRIX);
    ck_assert_uint_eq(r.series[0].point_count, 2);
    ck_assert_int_eq(r.series[0].points[0].t, 9 * MIN_MS);
    ck_assert_double_eq(r.series[0].points[1].v, 20);
    promql_result_free(&r);
    /* offset and @ shift the window. */
    instant_ok(&f, "g offset 5m", 10 * MIN_MS, &r);
    ck_assert_double_eq(r.series[0].points[0].v, 10);
    promql_result_free(&r);
    instant_ok(&f, "g @ 60", 10 * MIN_MS, &r);
    ck_assert_double_eq(r.series[0].points[0].v, 2);
    ck_assert_int_eq(r.series[0].points[0].t, 10 * MIN_MS);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_binary_matching)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=a,job=x,i=1", MIN_MS, 10, 0, 2);
    add_series(&f, "__name__=a,job=x,i=2", MIN_MS, 20, 0, 2);
    add_series(&f, "__name__=b,job=x", MIN_MS, 2, 0, 2);
    promql_result_t r;
    instant_ok(&f, "a / on(job) group_left b", MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 2);
    ck_assert_ptr_null(label_of(&r.series[0], "__name__"));
    ck_assert_str_eq(label_of(&r.series[0], "i"), "1");
    ck_assert_double_eq(r.series[0].points[0].v, 5);
    ck_assert_double_eq(r.series[1].points[0].v, 10);
    promql_result_free(&r);

    /* Comparison filters and keeps the name; bool returns 0/1 without it. */
    instant_ok(&f, "a > 15", MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_str_eq(label_of(&r.series[0], "__name__"), "a");
    promql_result_free(&r);
    instant_ok(&f, "a > bool 15", MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 2);
    ck_assert_ptr_null(label_of(&r.series[0], "__name__"));
    ck_assert_double_eq(r.series[0].points[0].v, 0);
    promql_result_free(&r);

    /* Without group_left the "one" side must be unique. */
    ck_assert_int_eq(promql_query_instant(f.engine, "b / on(job) a", MIN_MS, NULL, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_EXECUTION);
    ck_assert_msg(strstr(r.error, "found duplicate series for the match group {job=\"x\"} on the "
                                  "right hand-side of the operation") != NULL,
                  "%s", r.error);
    promql_result_free(&r);
    ck_assert_int_eq(promql_query_instant(f.engine, "a + on(job) group_left b", MIN_MS, NULL, &r),
                     0);
    promql_result_free(&r);

    /* Set operators. */
    instant_ok(&f, "a unless on(i) a{i=\"1\"}", MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_str_eq(label_of(&r.series[0], "i"), "2");
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_aggregations_and_order)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=h,g=1,i=a", MIN_MS, 3, 0, 1);
    add_series(&f, "__name__=h,g=1,i=b", MIN_MS, 1, 0, 1);
    add_series(&f, "__name__=h,g=2,i=c", MIN_MS, 2, 0, 1);
    promql_result_t r;
    instant_ok(&f, "sum by (g) (h)", 0, &r);
    ck_assert_uint_eq(r.series_count, 2);
    ck_assert_str_eq(label_of(&r.series[0], "g"), "1");
    ck_assert_uint_eq(r.series[0].label_count, 1);
    ck_assert_double_eq(r.series[0].points[0].v, 4);
    promql_result_free(&r);
    instant_ok(&f, "avg without (i) (h)", 0, &r);
    ck_assert_double_eq(r.series[0].points[0].v, 2);
    ck_assert_ptr_null(label_of(&r.series[0], "__name__"));
    promql_result_free(&r);

    instant_ok(&f, "topk(2, h)", 0, &r);
    ck_assert(r.ordered);
    ck_assert_uint_eq(r.series_count, 2);
    ck_assert_str_eq(label_of(&r.series[0], "i"), "a");
    ck_assert_str_eq(label_of(&r.series[1], "i"), "c");
    promql_result_free(&r);
    instant_ok(&f, "sort(h)", 0, &r);
    ck_assert(r.ordered);
    ck_assert_str_eq(label_of(&r.series[0], "i"), "b");
    ck_assert_str_eq(label_of(&r.series[2], "i"), "a");
    promql_result_free(&r);
    instant_ok(&f, "count_values(\"v\", h)", 0, &r);
    ck_assert_uint_eq(r.series_count, 3);
    ck_assert_str_eq(label_of(&r.series[0], "v"), "1");
    promql_result_free(&r);

    /* The name dropped by rate-like operations collides when grouped by __name__ of two. */
    add_series(&f, "__name__=k,g=1,i=a", MIN_MS, 3, 0, 1);
    ck_assert_int_eq(
        promql_query_instant(f.engine, "sum by (__name__, i) (-{g=\"1\",i=\"a\"})", 0, NULL, &r),
        -1);
    ck_assert_str_eq(r.error, "vector cannot contain metrics with the same labelset");
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_functions_and_annotations)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=foo,src=a-b", 15000, 0, 1, 9);
    promql_result_t r;
    instant_ok(&f, "rate(foo[1m])", 2 * MIN_MS, &r);
    ck_assert_uint_eq(r.info_count, 1);
    ck_assert_str_eq(r.infos[0], "PromQL info: metric might not be a counter, name does not end "
                                 "in _total/_sum/_count/_bucket: \"foo\" (1:6)");
    promql_result_free(&r);
    instant_ok(&f, "label_replace(foo, \"dst\", \"$1-x\", \"src\", \"(.*)-b\")", MIN_MS, &r);
    ck_assert_str_eq(label_of(&r.series[0], "dst"), "a-x");
    ck_assert_str_eq(label_of(&r.series[0], "__name__"), "foo");
    promql_result_free(&r);
    ck_assert_int_eq(promql_query_instant(f.engine,
                                          "label_replace(foo, \"dst\", \"\", \"src\", \"(\")",
                                          MIN_MS, NULL, &r),
                     -1);
    ck_assert_str_eq(r.error, "invalid regular expression in label_replace(): (");
    promql_result_free(&r);
    instant_ok(&f, "absent(nope{job=\"x\", a=~\"y\"})", MIN_MS, &r);
    ck_assert_uint_eq(r.series_count, 1);
    ck_assert_uint_eq(r.series[0].label_count, 1);
    ck_assert_str_eq(label_of(&r.series[0], "job"), "x");
    promql_result_free(&r);
    instant_ok(&f, "timestamp(foo)", MIN_MS + 5000, &r);
    ck_assert_double_eq(r.series[0].points[0].v, 60);
    promql_result_free(&r);
    instant_ok(&f, "scalar(foo) + 1", MIN_MS, &r);
    ck_assert_int_eq(r.type, PROMQL_VALUE_SCALAR);
    ck_assert_double_eq(r.scalar, 5);
    promql_result_free(&r);
    instant_ok(&f, "\"text\"", MIN_MS, &r);
    ck_assert_int_eq(r.type, PROMQL_VALUE_STRING);
    ck_assert_str_eq(r.string, "text");
    promql_result_free(&r);
    ck_assert_int_eq(promql_query_instant(f.engine, "foo{", 0, NULL, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_BAD_DATA);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_max_samples)
{
    query_options_t o;
    query_options_init(&o);
    o.max_samples = 10;
    fixture_t f;
    fixture_open(&f, &o);
    add_series(&f, "__name__=m", 1000, 0, 1, 100);
    promql_result_t r;
    instant_ok(&f, "m", 50000, &r); /* one sample */
    promql_result_free(&r);
    ck_assert_int_eq(promql_query_range(f.engine, "m", 0, 50000, 1000, NULL, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_EXECUTION);
    ck_assert_str_eq(r.error, "query processing would load too many samples into memory in query "
                              "execution");
    ck_assert_int_eq(r.type, PROMQL_VALUE_NONE);
    ck_assert_uint_eq(r.series_count, 0);
    promql_result_free(&r);
    /* A range selector's window counts too. */
    instant_ok(&f, "sum_over_time(m[5s])", 50000, &r);
    promql_result_free(&r);
    ck_assert_int_eq(promql_query_instant(f.engine, "sum_over_time(m[30s])", 50000, NULL, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_EXECUTION);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

START_TEST(test_timeout_and_cancel)
{
    fixture_t f;
    fixture_open(&f, NULL);
    add_series(&f, "__name__=m", 1000, 0, 1, 10);
    promql_result_t r;
    atomic_bool cancel = true;
    promql_query_params_t p = {.cancel = &cancel};
    ck_assert_int_eq(promql_query_instant(f.engine, "m", 5000, &p, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_CANCELED);
    ck_assert_msg(strncmp(r.error, "query was canceled in ", 22) == 0, "%s", r.error);
    promql_result_free(&r);

    /* A long range query (a million steps of a subquery) with a 1 ms timeout. */
    promql_query_params_t t = {.timeout_ms = 1};
    ck_assert_int_eq(promql_query_range(f.engine, "sum_over_time(vector(1)[1h:1s])", 0,
                                        1000000 * (int64_t)1000, 1000, &t, &r),
                     -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_TIMEOUT);
    ck_assert_msg(strncmp(r.error, "query timed out in ", 19) == 0, "%s", r.error);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

typedef struct worker {
    fixture_t *f;
    int failures;
} worker_t;

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 20; i++) {
        promql_result_t r;
        if (promql_query_range(w->f->engine, "sum(rate(m[1m]))", 0, 100000, 1000, NULL, &r) != 0 ||
            r.series_count != 1)
            w->failures++;
        promql_result_free(&r);
    }
    return NULL;
}

START_TEST(test_max_concurrency)
{
    query_options_t o;
    query_options_init(&o);
    o.max_concurrency = 1;
    fixture_t f;
    fixture_open(&f, &o);
    add_series(&f, "__name__=m", 1000, 0, 1, 120);
    pthread_t threads[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i].f = &f;
        w[i].failures = 0;
        pthread_create(&threads[i], NULL, run_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        ck_assert_int_eq(w[i].failures, 0);
    }
    fixture_close(&f);
}
END_TEST

static void *run_slow(void *arg)
{
    fixture_t *f = arg;
    promql_result_t r;
    promql_query_params_t p = {.timeout_ms = 1500};
    promql_query_range(f->engine, "sum_over_time(vector(1)[1h:1s])", 0, 1000000 * (int64_t)1000,
                       1000, &p, &r);
    promql_result_free(&r);
    return NULL;
}

/* A query waiting for a slot gives up at its deadline. */
START_TEST(test_queue_timeout)
{
    query_options_t o;
    query_options_init(&o);
    o.max_concurrency = 1;
    fixture_t f;
    fixture_open(&f, &o);
    pthread_t slow;
    pthread_create(&slow, NULL, run_slow, &f);
    usleep(200 * 1000);
    promql_result_t r;
    promql_query_params_t p = {.timeout_ms = 100};
    ck_assert_int_eq(promql_query_instant(f.engine, "vector(1)", 0, &p, &r), -1);
    ck_assert_int_eq(r.error_type, PROMQL_ERROR_TIMEOUT);
    ck_assert_str_eq(r.error, "query timed out in query execution");
    promql_result_free(&r);
    pthread_join(slow, NULL);
    /* The slot is free again. */
    ck_assert_int_eq(promql_query_instant(f.engine, "vector(1)", 0, &p, &r), 0);
    promql_result_free(&r);
    fixture_close(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("promql_eval");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_instant_selector_and_lookback);
    tcase_add_test(tc, test_stale_marker);
    tcase_add_test(tc, test_range_query_stepping);
    tcase_add_test(tc, test_subquery);
    tcase_add_test(tc, test_binary_matching);
    tcase_add_test(tc, test_aggregations_and_order);
    tcase_add_test(tc, test_functions_and_annotations);
    tcase_add_test(tc, test_max_samples);
    tcase_add_test(tc, test_timeout_and_cancel);
    tcase_add_test(tc, test_max_concurrency);
    tcase_add_test(tc, test_queue_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(base_dir, sizeof(base_dir), "/tmp/cairn-check-promql-eval-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rm_rf(base_dir);
    return failed == 0 ? 0 : 1;
}
