/*
 * tests/unit/check_promqltest_format.c: unit tests for the promqltest runner's script parsing
 * (tests/promql/promqltest_script.c) and result checking (tests/promql/promqltest_compare.c).
 *
 * Scripts are hand-written in the promqltest format; results are built by hand as the engine
 * would return them, so the comparison is checked without an engine: a right result passes,
 * and a wrong value, a missing or extra series, a wrong order or timestamp, a missing or
 * unexpected error or annotation each fail, with the difference named in the explanation.
 */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "common/common.h"
#include "tests/promql/promqltest.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static promqltest_script_t parse_ok(const char *text)
{
    promqltest_script_t script;
    cairn_error_t err = {{0}};
    int rc = promqltest_script_parse(text, &script, &err);
    ck_assert_msg(rc == 0, "parse failed: %s", err.message);
    return script;
}

static void parse_fails(const char *text, const char *message_part)
{
    promqltest_script_t script;
    cairn_error_t err = {{0}};
    int rc = promqltest_script_parse(text, &script, &err);
    ck_assert_msg(rc != 0, "parse of %s succeeded", text);
    ck_assert_msg(strstr(err.message, message_part), "error \"%s\" lacks \"%s\"", err.message,
                  message_part);
}

static promqltest_series_t series_ok(const char *line)
{
    promqltest_series_t s;
    cairn_error_t err = {{0}};
    ck_assert_msg(promqltest_series_parse(line, &s, &err) == 0, "%s: %s", line, err.message);
    return s;
}

static void assert_floats(const promqltest_series_t *s, size_t n, ...)
{
    ck_assert_uint_eq(s->value_count, n);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        double want = va_arg(ap, double);
        ck_assert_int_eq(s->values[i].kind, PROMQLTEST_VALUE_FLOAT);
        ck_assert_msg(s->values[i].v == want || (isnan(want) && isnan(s->values[i].v)),
                      "value %zu: %g, want %g", i, s->values[i].v, want);
    }
    va_end(ap);
}

/* A result under construction. */
static promql_result_t result_new(promql_value_type_t type)
{
    promql_result_t r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    return r;
}

/* Adds a series given as "name=value,name=value" with count points (t, v pairs). */
static void result_add(promql_result_t *r, const char *labels, size_t count, ...)
{
    r->series = cairn_realloc(r->series, (r->series_count + 1) * sizeof(*r->series));
    promql_series_t *s = &r->series[r->series_count++];
    memset(s, 0, sizeof(*s));
    char *copy = cairn_strdup(labels);
    for (char *save = NULL, *pair = strtok_r(copy, ",", &save); pair;
         pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        s->labels = cairn_realloc(s->labels, (s->label_count + 1) * sizeof(*s->labels));
        s->labels[s->label_count].name = cairn_strndup(pair, (size_t)(eq - pair));
        s->labels[s->label_count].value = cairn_strdup(eq + 1);
        s->label_count++;
    }
    cairn_free(copy);
    s->points = cairn_calloc(count + 1, sizeof(*s->points));
    va_list ap;
    va_start(ap, count);
    for (size_t i = 0; i < count; i++) {
        s->points[i].t = va_arg(ap, int64_t);
        s->points[i].v = va_arg(ap, double);
    }
    va_end(ap);
    s->point_count = count;
}

static void strings_add(char ***list, size_t *count, const char *s)
{
    *list = cairn_realloc(*list, (*count + 1) * sizeof(**list));
    (*list)[(*count)++] = cairn_strdup(s);
}

static void result_free(promql_result_t *r)
{
    for (size_t i = 0; i < r->series_count; i++) {
        for (size_t j = 0; j < r->series[i].label_count; j++) {
            cairn_free(r->series[i].labels[j].name);
            cairn_free(r->series[i].labels[j].value);
        }
        cairn_free(r->series[i].labels);
        cairn_free(r->series[i].points);
    }
    cairn_free(r->series);
    for (size_t i = 0; i < r->warning_count; i++)
        cairn_free(r->warnings[i]);
    for (size_t i = 0; i < r->info_count; i++)
        cairn_free(r->infos[i]);
    cairn_free(r->warnings);
    cairn_free(r->infos);
    cairn_free(r->string);
    cairn_free(r->error);
}

/* Checks the first eval of script text against r; returns whether it passed, and asserts
 * that a failure's explanation contains why_part (when not NULL). */
static bool check(const char *text, const promql_result_t *r, const char *why_part)
{
    promqltest_script_t script = parse_ok(text);
    const promqltest_eval_t *ev = NULL;
    for (size_t i = 0; i < script.count && !ev; i++)
        if (script.commands[i].kind == PROMQLTEST_EVAL)
            ev = &script.commands[i].eval;
    ck_assert_ptr_nonnull(ev);
    buf_t why = BUF_INIT;
    int64_t t = ev->range_vector ? ev->rv_end_ms : ev->start_ms;
    bool ok = promqltest_eval_check(ev, r, t, &why);
    if (ok)
        ck_assert_uint_eq(why.len, 0);
    else if (why_part)
        ck_assert_msg(why.data && strstr(why.data, why_part), "explanation lacks \"%s\":\n%s",
                      why_part, why.data ? why.data : "");
    buf_free(&why);
    promqltest_script_free(&script);
    return ok;
}

#define MIN_MS ((int64_t)60000)

/* ---- series lines ------------------------------------------------------------------------- */

START_TEST(test_series_expansion)
{
    promqltest_series_t s = series_ok("m 0+10x3");
    assert_floats(&s, 4, 0.0, 10.0, 20.0, 30.0);
    promqltest_series_free(&s);

    s = series_ok("m 1-1x2 5x2 -2 1e3 .5");
    assert_floats(&s, 9, 1.0, 0.0, -1.0, 5.0, 5.0, 5.0, -2.0, 1000.0, 0.5);
    promqltest_series_free(&s);

    s = series_ok("m Inf -Inf NaN +Inf 1.5e+2+1x1");
    assert_floats(&s, 6, INFINITY, -INFINITY, NAN, INFINITY, 150.0, 151.0);
    promqltest_series_free(&s);

    /* Repeated addition, as upstream: 0.1 added three times is not 0.3. */
    s = series_ok("m 0+0.1x3");
    ck_assert(s.values[3].v == 0.1 + 0.1 + 0.1);
    promqltest_series_free(&s);

    s = series_ok("m 1 _ _x3 stale 2");
    ck_assert_uint_eq(s.value_count, 7);
    ck_assert_int_eq(s.values[1].kind, PROMQLTEST_VALUE_OMITTED);
    ck_assert_int_eq(s.values[4].kind, PROMQLTEST_VALUE_OMITTED);
    ck_assert_int_eq(s.values[5].kind, PROMQLTEST_VALUE_FLOAT);
    uint64_t bits;
    memcpy(&bits, &s.values[5].v, sizeof(bits));
    ck_assert(bits == PROMQLTEST_STALE_NAN_BITS);
    ck_assert(!s.has_histogram);
    promqltest_series_free(&s);
}
END_TEST

START_TEST(test_series_histograms)
{
    promqltest_series_t s = series_ok("h{a=\"1\"} 5 {{schema:1 sum:3 count:22 buckets:[5 10 7]}} "
                                      "{{count:0}}+{{count:1}}x2 {{sum:1}}x1 _");
    ck_assert(s.has_histogram);
    ck_assert_uint_eq(s.value_count, 8);
    ck_assert_int_eq(s.values[0].kind, PROMQLTEST_VALUE_FLOAT);
    for (size_t i = 1; i < 7; i++)
        ck_assert_int_eq(s.values[i].kind, PROMQLTEST_VALUE_HISTOGRAM);
    ck_assert_int_eq(s.values[7].kind, PROMQLTEST_VALUE_OMITTED);
    promqltest_series_free(&s);
}
END_TEST

START_TEST(test_series_labels)
{
    promqltest_series_t s = series_ok("m{b=\"x, y}\", a='q\\'', c=\"\", \"d.e\"=\"\\n\\x41\"}\t1");
    ck_assert_uint_eq(s.labels.count, 4); /* c="" is no label */
    ck_assert_str_eq(s.labels.items[0].name, "__name__");
    ck_assert_str_eq(s.labels.items[0].value, "m");
    ck_assert_str_eq(label_list_get(&s.labels, "a"), "q'");
    ck_assert_str_eq(label_list_get(&s.labels, "b"), "x, y}");
    ck_assert_str_eq(label_list_get(&s.labels, "d.e"), "\nA");
    promqltest_series_free(&s);

    s = series_ok("{\"metric.name\", job=`raw\\`} 2");
    ck_assert_str_eq(label_list_get(&s.labels, "__name__"), "metric.name");
    ck_assert_str_eq(label_list_get(&s.labels, "job"), "raw\\");
    promqltest_series_free(&s);

    s = series_ok("name{} 3");
    ck_assert_uint_eq(s.labels.count, 1);
    promqltest_series_free(&s);

    static const char *const bad[] = {
        "m{a=\"1\", a=\"2\"} 1", "m{a=1} 1",   "m 1x",           "m 1+2",    "m abc",
        "m{a=\"1\" 1",           "m 1 {{sum:", "m{a=\"\\q\"} 1", "m 1+1x1z",
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(bad); i++) {
        cairn_error_t err = {{0}};
        ck_assert_msg(promqltest_series_parse(bad[i], &s, &err) != 0, "%s parsed", bad[i]);
        ck_assert_msg(err.message[0] != '\0', "%s: no message", bad[i]);
    }
}
END_TEST

START_TEST(test_time_parse)
{
    int64_t ms;
    cairn_error_t err = {{0}};
    ck_assert_int_eq(promqltest_time_parse("0", &ms, &err), 0);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(promqltest_time_parse("1h5m", &ms, &err), 0);
    ck_assert_int_eq(ms, 65 * MIN_MS);
    ck_assert_int_eq(promqltest_time_parse("10s53ms", &ms, &err), 0);
    ck_assert_int_eq(ms, 10053);
    ck_assert_int_eq(promqltest_time_parse("100", &ms, &err), 0);
    ck_assert_int_eq(ms, 100000);
    ck_assert_int_ne(promqltest_time_parse("5x", &ms, &err), 0);
    ck_assert_int_ne(promqltest_time_parse("", &ms, &err), 0);
}
END_TEST

/* ---- scripts ------------------------------------------------------------------------------ */

static const char script_text[] =
    "# a comment\n"
    "load 5m\n"
    "  http_requests{job=\"api\"} 0+10x10\n"
    "  h {{count:1}}\n"
    "\n"
    "load_with_nhcb 1m\n"
    "  x_bucket{le=\"1\"} 1 2\n"
    "\n"
    "eval instant at 50m http_requests\n"
    "  expect no_info\n"
    "  expect warn msg: PromQL warning: something (1:1)\n"
    "  expect warn regex: other .* thing\n"
    "  http_requests{job=\"api\"} 100\n"
    "\n"
    "eval range from 0 to 10m step 5m http_requests\n"
    "    expect ordered\n"
    "    http_requests{job=\"api\"} 0 _ 20\n"
    "  #empty\n"
    "eval instant at 1m 1 + 1\n"
    "  2\n"
    "\n"
    "eval instant at 1m \"Foo\"\n"
    "  expect string \" Foo\\n\"\n"
    "\n"
    "eval instant at 2m some_metric[2m]\n"
    "  expect range vector from 1m to 2m step 60s\n"
    "  some_metric 1 2\n"
    "\n"
    "eval_fail instant at 0 label_replace(x, \"a\", \"b\", \"c\", \"(\")\n"
    "expect fail regex: invalid .*\n"
    "\n"
    "clear\n"
    "eval instant at 1m foo\n"
    "  {} {{count:1}}\n";

START_TEST(test_script_commands)
{
    promqltest_script_t s = parse_ok(script_text);
    ck_assert_uint_eq(s.count, 10);
    const promqltest_command_t *c = s.commands;
    ck_assert_int_eq(c[0].kind, PROMQLTEST_LOAD);
    ck_assert_uint_eq(c[0].line, 2);
    ck_assert_int_eq(c[0].load.interval_ms, 5 * MIN_MS);
    ck_assert(!c[0].load.with_nhcb);
    ck_assert_uint_eq(c[0].load.series_count, 2);
    ck_assert_uint_eq(c[0].load.series[0].value_count, 11);
    ck_assert(c[0].load.series[1].has_histogram);
    ck_assert(c[1].load.with_nhcb);

    const promqltest_eval_t *e = &c[2].eval;
    ck_assert_int_eq(c[2].kind, PROMQLTEST_EVAL);
    ck_assert_uint_eq(c[2].line, 9);
    ck_assert_str_eq(e->query, "http_requests");
    ck_assert(!e->range);
    ck_assert_int_eq(e->start_ms, 50 * MIN_MS);
    ck_assert(e->no_info && !e->no_warn && !e->fail && !e->ordered);
    ck_assert_uint_eq(e->warns.count, 2);
    ck_assert_str_eq(e->warns.items[0].text, "PromQL warning: something (1:1)");
    ck_assert_ptr_null(e->warns.items[0].regex);
    ck_assert_ptr_nonnull(e->warns.items[1].regex);
    ck_assert_uint_eq(e->series_count, 1);

    e = &c[3].eval;
    ck_assert(e->range && e->ordered);
    ck_assert_int_eq(e->end_ms, 10 * MIN_MS);
    ck_assert_int_eq(e->step_ms, 5 * MIN_MS);
    ck_assert_uint_eq(e->series[0].value_count, 3);

    e = &c[4].eval;
    ck_assert(e->expect_scalar);
    ck_assert(e->scalar == 2.0);
    ck_assert_uint_eq(e->series_count, 0);

    e = &c[5].eval;
    ck_assert(e->expect_string);
    ck_assert_str_eq(e->string, " Foo\n");

    e = &c[6].eval;
    ck_assert(e->range_vector);
    ck_assert_int_eq(e->rv_start_ms, MIN_MS);
    ck_assert_int_eq(e->rv_end_ms, 2 * MIN_MS);
    ck_assert_uint_eq(e->series[0].value_count, 2);

    e = &c[7].eval;
    ck_assert(e->fail);
    ck_assert_uint_eq(e->fail_match.count, 1);
    ck_assert(promqltest_expect_matches(&e->fail_match.items[0], "an invalid regex"));
    ck_assert(!promqltest_expect_matches(&e->fail_match.items[0], "something else"));

    ck_assert_int_eq(c[8].kind, PROMQLTEST_CLEAR);
    ck_assert(c[9].eval.has_histogram);
    promqltest_script_free(&s);
}
END_TEST

START_TEST(test_script_errors)
{
    parse_fails("frobnicate\n", "line 1: invalid command");
    parse_fails("load 5m\n  m 1\n\nload xyz\n", "line 4");
    parse_fails("load 5m\n  m 1\n  m{ 2\n", "line 3");
    parse_fails("eval instant at 5m x\n  expect info\n  expect no_info\n", "line 3");
    parse_fails("eval instant at 5m x\n  expect fail\n  expect fail\n", "multiple");
    parse_fails("eval instant at 5m x\n  expect bogus\n", "invalid expect type");
    parse_fails("eval instant at 5m x\n  expect warn regex: (\n", "invalid regex");
    parse_fails("eval instant at 5m x\n  m 1 2\n", "several values");
    parse_fails("eval range from 5m to 1m step 1m x\n", "before");
    parse_fails("eval range from 0 to 1m step 0 x\n", "step");
    parse_fails("eval instant at 5m\n", "eval instant at");
    parse_fails("eval instant at 5m x\n  expect string Foo\n", "quoted");
    parse_fails("eval instant at 5m x\n  expect range vector from 1m to\n", "range vector");
}
END_TEST

/* ---- comparison --------------------------------------------------------------------------- */

static const char vector_eval[] = "eval instant at 50m m\n"
                                  "  m{a=\"1\"} 1\n"
                                  "  m{a=\"2\"} 2\n";

START_TEST(test_vector_compare)
{
    const int64_t t = 50 * MIN_MS;
    promql_result_t r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "a=2,__name__=m", 1, t, 2.0);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    ck_assert(check(vector_eval, &r, NULL)); /* any order, labels in any order */
    result_free(&r);

    /* Within the relative tolerance (1e-6), and beyond it. */
    r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0000000001);
    result_add(&r, "__name__=m,a=2", 1, t, 2.0);
    ck_assert(check(vector_eval, &r, NULL));
    r.series[0].points[0].v = 1.001;
    ck_assert(!check(vector_eval, &r, "expected 1, got 1.001"));
    result_free(&r);

    /* A missing series. */
    r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    ck_assert(!check(vector_eval, &r, "missing series m{a=\"2\"}"));
    /* An extra series. */
    result_add(&r, "__name__=m,a=2", 1, t, 2.0);
    result_add(&r, "__name__=m,a=3", 1, t, 3.0);
    ck_assert(!check(vector_eval, &r, "unexpected series m{a=\"3\"}"));
    result_free(&r);

    /* An extra label is a different series. */
    r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    result_add(&r, "__name__=m,a=2,b=x", 1, t, 2.0);
    ck_assert(!check(vector_eval, &r, "unexpected series m{a=\"2\", b=\"x\"}"));
    result_free(&r);

    /* The point must carry the evaluation time. */
    r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    result_add(&r, "__name__=m,a=2", 1, t - 1000, 2.0);
    ck_assert(!check(vector_eval, &r, "timestamp"));
    result_free(&r);

    /* An empty expectation wants an empty vector. */
    r = result_new(PROMQL_VALUE_VECTOR);
    ck_assert(check("eval instant at 50m m\n", &r, NULL));
    result_add(&r, "__name__=m", 1, t, 1.0);
    ck_assert(!check("eval instant at 50m m\n", &r, "unexpected series m{}"));
    /* A vector is not a scalar. */
    ck_assert(!check("eval instant at 50m m\n  1\n", &r, "expected a scalar, got a vector"));
    result_free(&r);
}
END_TEST

START_TEST(test_nan_and_stale)
{
    const int64_t t = 50 * MIN_MS;
    const char *text = "eval instant at 50m m\n  m NaN\n";
    promql_result_t r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m", 1, t, NAN);
    ck_assert(check(text, &r, NULL));
    r.series[0].points[0].v = 0;
    ck_assert(!check(text, &r, "expected NaN, got 0"));
    uint64_t bits = PROMQLTEST_STALE_NAN_BITS;
    memcpy(&r.series[0].points[0].v, &bits, sizeof(double));
    ck_assert(check(text, &r, NULL)); /* a staleness marker is a NaN too */
    ck_assert(!check("eval instant at 50m m\n  m 1\n", &r, NULL));
    result_free(&r);

    ck_assert(promqltest_float_equal(INFINITY, INFINITY));
    ck_assert(!promqltest_float_equal(INFINITY, -INFINITY));
    ck_assert(!promqltest_float_equal(0, 1e-300));
    ck_assert(promqltest_float_equal(0, 0.0 * -1));
    ck_assert(promqltest_float_equal(1e10, 1e10 + 1));
    ck_assert(!promqltest_float_equal(1e10, 1e10 + 1e5));
}
END_TEST

START_TEST(test_ordered)
{
    const int64_t t = 50 * MIN_MS;
    const char *text = "eval instant at 50m sort(m)\n  expect ordered\n"
                       "  m{a=\"1\"} 1\n  m{a=\"2\"} 2\n";
    promql_result_t r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    result_add(&r, "__name__=m,a=2", 1, t, 2.0);
    ck_assert(check(text, &r, NULL));
    result_free(&r);
    r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=2", 1, t, 2.0);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    ck_assert(!check(text, &r, "at position 1, expected at 2"));
    ck_assert(check(vector_eval, &r, NULL));
    result_free(&r);
}
END_TEST

START_TEST(test_matrix_compare)
{
    const char *text = "eval range from 0 to 4m step 1m m\n"
                       "  m{a=\"1\"} 1 _ 3 4\n"
                       "  m{a=\"2\"} 1+1x4\n";
    promql_result_t r = result_new(PROMQL_VALUE_MATRIX);
    result_add(&r, "__name__=m,a=1", 3, (int64_t)0, 1.0, 2 * MIN_MS, 3.0, 3 * MIN_MS, 4.0);
    result_add(&r, "__name__=m,a=2", 5, (int64_t)0, 1.0, MIN_MS, 2.0, 2 * MIN_MS, 3.0, 3 * MIN_MS,
               4.0, 4 * MIN_MS, 5.0);
    ck_assert(check(text, &r, NULL));

    /* A point where `_` says there is none. */
    r.series[0].points[1].t = MIN_MS;
    ck_assert(!check(text, &r, "timestamp 60000, expected 120000"));
    r.series[0].points[1].t = 2 * MIN_MS;
    /* A wrong value. */
    r.series[1].points[4].v = 6;
    ck_assert(!check(text, &r, "at 240000 expected 5, got 6"));
    r.series[1].points[4].v = 5;
    /* A missing point. */
    r.series[1].point_count = 4;
    ck_assert(!check(text, &r, "missing point at 240000"));
    r.series[1].point_count = 5;
    /* An extra point. */
    r.series[0].points[2].t = 3 * MIN_MS;
    r.series[0].point_count = 2;
    ck_assert(!check(text, &r, "missing point"));
    r.series[0].point_count = 3;
    ck_assert(check(text, &r, NULL));

    /* Matrices must be sorted by labels. */
    promql_series_t tmp = r.series[0];
    r.series[0] = r.series[1];
    r.series[1] = tmp;
    ck_assert(!check(text, &r, "not sorted"));
    result_free(&r);

    /* More values than the range holds. */
    r = result_new(PROMQL_VALUE_MATRIX);
    ck_assert(!check("eval range from 0 to 1m step 1m m\n  m 1 2 3\n", &r, NULL));
    result_add(&r, "__name__=m", 2, (int64_t)0, 1.0, MIN_MS, 2.0);
    ck_assert(!check("eval range from 0 to 1m step 1m m\n  m 1 2 3\n", &r, "more than"));
    result_free(&r);
}
END_TEST

START_TEST(test_range_vector_compare)
{
    const char *text = "eval instant at 1m m[1m]\n"
                       "  expect range vector from 10s to 1m step 10s\n"
                       "  m{a=\"1\"} 2 3 4 5 6\n";
    promql_result_t r = result_new(PROMQL_VALUE_MATRIX);
    result_add(&r, "__name__=m,a=1", 5, (int64_t)10000, 2.0, (int64_t)20000, 3.0, (int64_t)30000,
               4.0, (int64_t)40000, 5.0, (int64_t)50000, 6.0);
    ck_assert(check(text, &r, NULL));
    r.series[0].points[4].v = 7;
    ck_assert(!check(text, &r, "expected 6, got 7"));
    result_free(&r);
}
END_TEST

START_TEST(test_scalar_and_string)
{
    promql_result_t r = result_new(PROMQL_VALUE_SCALAR);
    r.scalar = 2;
    ck_assert(check("eval instant at 1m 1 + 1\n  2\n", &r, NULL));
    ck_assert(!check("eval instant at 1m 1 + 1\n  3\n", &r, "expected scalar 3, got 2"));
    ck_assert(!check("eval instant at 1m 1 + 1\n  m 2\n", &r, "got a scalar"));
    ck_assert(!check("eval instant at 1m 1 + 1\n  expect string \"2\"\n", &r, "a string"));
    result_free(&r);

    r = result_new(PROMQL_VALUE_STRING);
    r.string = cairn_strdup("Foo");
    ck_assert(check("eval instant at 1m \"Foo\"\n  expect string `Foo`\n", &r, NULL));
    ck_assert(!check("eval instant at 1m \"Foo\"\n  expect string \"Bar\"\n", &r, "\"Bar\""));
    result_free(&r);
}
END_TEST

START_TEST(test_expected_errors)
{
    promql_result_t r = result_new(PROMQL_VALUE_NONE);
    r.error_type = PROMQL_ERROR_EXECUTION;
    r.error = cairn_strdup("vector cannot contain metrics with the same labelset");
    ck_assert(check("eval instant at 0 x\n  expect fail\n", &r, NULL));
    ck_assert(check("eval instant at 0 x\n  expect fail msg: vector cannot contain metrics "
                    "with the same labelset\n",
                    &r, NULL));
    ck_assert(check("eval instant at 0 x\n  expect fail regex: same label\n", &r, NULL));
    ck_assert(check("eval_fail instant at 0 x\n", &r, NULL));
    ck_assert(!check("eval instant at 0 x\n  expect fail msg: other\n", &r, "does not match"));
    ck_assert(!check("eval instant at 0 x\n", &r, "unexpected error"));
    result_free(&r);

    r = result_new(PROMQL_VALUE_VECTOR);
    ck_assert(!check("eval instant at 0 x\n  expect fail\n", &r, "expected an error, got none"));
    result_free(&r);
}
END_TEST

START_TEST(test_annotations)
{
    promql_result_t r = result_new(PROMQL_VALUE_VECTOR);
    strings_add(&r.warnings, &r.warning_count, "PromQL warning: w1 (1:1)");
    strings_add(&r.infos, &r.info_count, "PromQL info: i1 (1:5)");
    /* Without warn/info expectations, annotations are not checked. */
    ck_assert(check("eval instant at 0 x\n", &r, NULL));
    ck_assert(check("eval instant at 0 x\n  expect warn\n  expect info\n", &r, NULL));
    ck_assert(
        check("eval instant at 0 x\n  expect warn msg: PromQL warning: w1 (1:1)\n", &r, NULL));
    ck_assert(check("eval instant at 0 x\n  expect info regex: i1 \\(1:[0-9]\\)\n", &r, NULL));
    ck_assert(!check("eval instant at 0 x\n  expect warn msg: PromQL warning: w1 (1:2)\n", &r,
                     "found none"));
    ck_assert(!check("eval instant at 0 x\n  expect no_warn\n", &r, "expected no warn"));
    ck_assert(!check("eval instant at 0 x\n  expect no_info\n", &r, "expected no info"));
    ck_assert(check("eval_warn instant at 0 x\n", &r, NULL));
    /* Once a warn expectation exists, every warning must be expected. */
    strings_add(&r.warnings, &r.warning_count, "PromQL warning: w2 (1:3)");
    ck_assert(!check("eval instant at 0 x\n  expect warn msg: PromQL warning: w1 (1:1)\n", &r,
                     "unexpected warn annotation: PromQL warning: w2 (1:3)"));
    ck_assert(check("eval instant at 0 x\n  expect warn regex: w[12]\n", &r, NULL));
    result_free(&r);

    r = result_new(PROMQL_VALUE_VECTOR);
    ck_assert(!check("eval instant at 0 x\n  expect info\n", &r, "found none"));
    ck_assert(!check("eval_info instant at 0 x\n", &r, "got none"));
    ck_assert(check("eval instant at 0 x\n  expect no_info\n  expect no_warn\n", &r, NULL));
    result_free(&r);
}
END_TEST

START_TEST(test_explanation_shows_both_sides)
{
    const int64_t t = 50 * MIN_MS;
    promql_result_t r = result_new(PROMQL_VALUE_VECTOR);
    result_add(&r, "__name__=m,a=1", 1, t, 1.0);
    result_add(&r, "__name__=m,a=2", 1, t, 3.0);
    promqltest_script_t script = parse_ok(vector_eval);
    buf_t why = BUF_INIT;
    ck_assert(!promqltest_eval_check(&script.commands[0].eval, &r, t, &why));
    ck_assert_ptr_nonnull(strstr(why.data, "expected:\n      vector of 2 series:\n"
                                           "        m{a=\"1\"} 1\n        m{a=\"2\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(why.data, "got:\n      vector of 2 series:\n"
                                           "        m{a=\"1\"} 1\n        m{a=\"2\"} 3\n"));
    buf_free(&why);
    promqltest_script_free(&script);
    result_free(&r);
}
END_TEST

static Suite *promqltest_format_suite(void)
{
    Suite *s = suite_create("promqltest_format");
    TCase *tc = tcase_create("script");
    tcase_add_test(tc, test_series_expansion);
    tcase_add_test(tc, test_series_histograms);
    tcase_add_test(tc, test_series_labels);
    tcase_add_test(tc, test_time_parse);
    tcase_add_test(tc, test_script_commands);
    tcase_add_test(tc, test_script_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("compare");
    tcase_add_test(tc, test_vector_compare);
    tcase_add_test(tc, test_nan_and_stale);
    tcase_add_test(tc, test_ordered);
    tcase_add_test(tc, test_matrix_compare);
    tcase_add_test(tc, test_range_vector_compare);
    tcase_add_test(tc, test_scalar_and_string);
    tcase_add_test(tc, test_expected_errors);
    tcase_add_test(tc, test_annotations);
    tcase_add_test(tc, test_explanation_shows_both_sides);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(promqltest_format_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
