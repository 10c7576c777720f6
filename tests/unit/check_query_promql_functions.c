/*
 * tests/unit/check_query_promql_functions.c: unit tests for the PromQL function and
 * aggregation kernels (query/promql_functions.c).
 *
 * Most cases come from Prometheus's promqltest corpus (../shared/conformance/promql/
 * functions.test, aggregators.test, histograms.test, trig_functions.test): the series of a
 * `load` block are rebuilt here as point arrays, the window of an `eval` is cut by hand as
 * Prometheus cuts it (range_start < t <= range_end), and the kernel's result is compared with
 * the expected value written in the corpus. Where the corpus prints all 17 significant digits
 * the comparison is exact, which checks the order of operations; shorter literals are compared
 * with a relative tolerance of 1e-6, as promqltest does. The remaining cases are edge cases the
 * corpus does not cover: empty and one-point windows, NaN, infinities, resets, negative values
 * and far-away times.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "query/promql_functions.h"

#define SEC_MS ((int64_t)1000)
#define MIN_MS ((int64_t)60 * 1000)

/* ---- helpers ---------------------------------------------------------------------------- */

/* Appends the promqltest expansion `a+bxN` (N+1 points; b may be negative) to a series whose
 * points are step_ms apart, the first at 0. Returns the new length. */
static size_t load_linear(promql_point_t *pts, size_t len, int64_t step_ms, double a, double b,
                          size_t count)
{
    for (size_t i = 0; i <= count; i++) {
        pts[len].t = (int64_t)len * step_ms;
        pts[len].v = a + b * (double)i;
        len++;
    }
    return len;
}

/* Appends the given values, one per step. */
static size_t load_values(promql_point_t *pts, size_t len, int64_t step_ms, const double *values,
                          size_t count)
{
    for (size_t i = 0; i < count; i++) {
        pts[len].t = (int64_t)len * step_ms;
        pts[len].v = values[i];
        len++;
    }
    return len;
}

/* The points of a series inside (start, end], as a range selector selects them. */
static const promql_point_t *window(const promql_point_t *pts, size_t len, int64_t start,
                                    int64_t end, size_t *count)
{
    size_t first = 0;
    while (first < len && pts[first].t <= start)
        first++;
    size_t last = first;
    while (last < len && pts[last].t <= end)
        last++;
    *count = last - first;
    return pts + first;
}

/* |got - want| within rel * |want| (or equal, for infinities and zero). */
#define assert_near(got, want, rel)                                                                \
    do {                                                                                           \
        double got_ = (got), want_ = (want);                                                       \
        ck_assert_msg(got_ == want_ || fabs(got_ - want_) <= (rel)*fabs(want_),                    \
                      "got %.17g, want %.17g", got_, want_);                                       \
    } while (0)

/* Evaluates fn over the window (eval_ms - range_ms, eval_ms] and returns its result. */
static double over_time(promql_function_id_t fn, const promql_point_t *pts, size_t len,
                        int64_t eval_ms, int64_t range_ms)
{
    size_t n;
    const promql_point_t *w = window(pts, len, eval_ms - range_ms, eval_ms, &n);
    double scratch[64];
    ck_assert_uint_le(n, 64);
    double out = -12345;
    ck_assert_msg(promql_fn_over_time(fn, w, n, scratch, &out), "no result");
    return out;
}

static bool over_time_none(promql_function_id_t fn, const promql_point_t *pts, size_t len,
                           int64_t eval_ms, int64_t range_ms)
{
    size_t n;
    const promql_point_t *w = window(pts, len, eval_ms - range_ms, eval_ms, &n);
    double scratch[64];
    double out;
    return !promql_fn_over_time(fn, w, n, scratch, &out);
}

/* rate/increase/delta at eval_ms over [range_ms] with an offset. */
static bool rate_at(const promql_point_t *pts, size_t len, int64_t eval_ms, int64_t range_ms,
                    int64_t offset_ms, bool is_counter, bool is_rate, double *out)
{
    int64_t end = eval_ms - offset_ms, start = end - range_ms;
    size_t n;
    const promql_point_t *w = window(pts, len, start, end, &n);
    return promql_fn_extrapolated_rate(w, n, start, end, is_counter, is_rate, out);
}

/* ---- Kahan summation -------------------------------------------------------------------- */

START_TEST(test_kahan)
{
    /* functions.test: sum_over_time(1 1e100 1 -1e100) is 2. */
    promql_kahan_t k = {0, 0};
    promql_kahan_add(&k, 1);
    promql_kahan_add(&k, 1e100);
    promql_kahan_add(&k, 1);
    promql_kahan_add(&k, -1e100);
    ck_assert_double_eq(promql_kahan_value(&k), 2);

    /* Once the sum is infinite the compensation no longer counts. */
    promql_kahan_t inf = {0, 0};
    promql_kahan_add(&inf, 1e-300);
    promql_kahan_add(&inf, INFINITY);
    ck_assert_double_eq(inf.c, 0);
    ck_assert_double_eq(promql_kahan_value(&inf), INFINITY);

    promql_kahan_t overflow = {1.7976931348623157e308, 5};
    promql_kahan_add(&overflow, 1.7976931348623157e308);
    ck_assert_double_eq(promql_kahan_value(&overflow), INFINITY);

    promql_kahan_t nan = {0, 0};
    promql_kahan_add(&nan, 1);
    promql_kahan_add(&nan, NAN);
    ck_assert(isnan(promql_kahan_value(&nan)));
}
END_TEST

/* ---- rate, increase, delta ------------------------------------------------------------ */

START_TEST(test_increase_corpus)
{
    promql_point_t foo[16], bar[16], dings[16], bumms[16];
    size_t n_foo = load_linear(foo, 0, 5 * MIN_MS, 0, 10, 10);
    size_t n_bar = load_linear(bar, 0, 5 * MIN_MS, 0, 18, 5);
    n_bar = load_linear(bar, n_bar, 5 * MIN_MS, 0, 18, 5);
    size_t n_dings = load_linear(dings, 0, 5 * MIN_MS, 10, 10, 10);
    size_t n_bumms = load_linear(bumms, 0, 5 * MIN_MS, 1, 10, 10);
    double out;
    ck_assert(rate_at(foo, n_foo, 50 * MIN_MS, 50 * MIN_MS, 0, true, false, &out));
    ck_assert_double_eq(out, 100);
    ck_assert(rate_at(bar, n_bar, 50 * MIN_MS, 50 * MIN_MS, 0, true, false, &out));
    ck_assert_double_eq(out, 160);
    ck_assert(rate_at(dings, n_dings, 50 * MIN_MS, 50 * MIN_MS, 0, true, false, &out));
    ck_assert_double_eq(out, 100);
    ck_assert(rate_at(bumms, n_bumms, 50 * MIN_MS, 50 * MIN_MS, 0, true, false, &out));
    ck_assert_double_eq(out, 100);

    /* 0 1 2 3 2 3 4: the decrease 3 -> 2 is a reset; increase over 30m is 7. */
    static const double reset_values[] = {0, 1, 2, 3, 2, 3, 4};
    promql_point_t reset[8];
    size_t n_reset = load_values(reset, 0, 5 * MIN_MS, reset_values, 7);
    ck_assert(rate_at(reset, n_reset, 30 * MIN_MS, 30 * MIN_MS, 0, true, false, &out));
    ck_assert_double_eq(out, 7);
}
END_TEST

START_TEST(test_rate_corpus)
{
    promql_point_t middle[16], end[16], window_total[16], offset_a[16], offset_b[16];
    size_t n_middle = load_linear(middle, 0, 5 * MIN_MS, 0, 27, 4);
    n_middle = load_linear(middle, n_middle, 5 * MIN_MS, 0, 27, 5);
    double out;
    ck_assert(rate_at(middle, n_middle, 50 * MIN_MS, 50 * MIN_MS, 0, true, true, &out));
    ck_assert_double_eq(out, 0.08);

    /* 0+10x9 0 10: a reset right at the end is ignored; [5m] holds one point only. */
    size_t n_end = load_linear(end, 0, 5 * MIN_MS, 0, 10, 9);
    n_end = load_linear(end, n_end, 5 * MIN_MS, 0, 10, 1);
    ck_assert(!rate_at(end, n_end, 50 * MIN_MS, 5 * MIN_MS, 0, true, true, &out));
    ck_assert(rate_at(end, n_end, 50 * MIN_MS, 6 * MIN_MS, 0, true, true, &out));
    ck_assert_double_eq(out, 0);

    size_t n_window = load_linear(window_total, 0, 5 * MIN_MS, 0, 80, 10);
    ck_assert(rate_at(window_total, n_window, 50 * MIN_MS, 50 * MIN_MS, 0, true, true, &out));
    /* The corpus writes 800/3000 rounded to 17 digits; the algorithm lands one ulp above. */
    assert_near(out, 0.26666666666666666, 1e-15);

    size_t n_a = load_linear(offset_a, 0, 5 * MIN_MS, 0, 10, 10);
    size_t n_b = load_linear(offset_b, 0, 5 * MIN_MS, 0, 20, 10);
    ck_assert(rate_at(offset_a, n_a, 50 * MIN_MS, 10 * MIN_MS, 5 * MIN_MS, true, true, &out));
    ck_assert_double_eq(out, 0.03333333333333333);
    ck_assert(rate_at(offset_b, n_b, 50 * MIN_MS, 10 * MIN_MS, 5 * MIN_MS, true, true, &out));
    ck_assert_double_eq(out, 0.06666666666666667);
}
END_TEST

START_TEST(test_rate_zero_cutoff)
{
    /* load 4m: testcounter_zero_cutoff_total{start="Xm"} (X*60)+240x10; rate[20m] at 10m.
     * Extrapolation toward the start stops at the counter's zero until half an interval. */
    static const double want[] = {0.5, 0.55, 0.6, 0.6, 0.6, 0.6};
    for (int start = 0; start < 6; start++) {
        promql_point_t pts[16];
        size_t len = load_linear(pts, 0, 4 * MIN_MS, 60.0 * start, 240, 10);
        double out;
        ck_assert(rate_at(pts, len, 10 * MIN_MS, 20 * MIN_MS, 0, true, true, &out));
        ck_assert_double_eq_tol(out, want[start], 1e-15);
    }
}
END_TEST

START_TEST(test_delta_corpus)
{
    static const double up[] = {0, 50, 100, 150, 200};
    static const double down[] = {200, 150, 100, 50, 0};
    promql_point_t a[8], b[8];
    size_t na = load_values(a, 0, 5 * MIN_MS, up, 5);
    size_t nb = load_values(b, 0, 5 * MIN_MS, down, 5);
    double out;
    ck_assert(rate_at(a, na, 20 * MIN_MS, 20 * MIN_MS, 0, false, false, &out));
    ck_assert_double_eq(out, 200);
    ck_assert(rate_at(b, nb, 20 * MIN_MS, 20 * MIN_MS, 0, false, false, &out));
    ck_assert_double_eq(out, -200);
    /* As a counter, the falling series would count resets; as a gauge it must not. */
    ck_assert(rate_at(b, nb, 20 * MIN_MS, 20 * MIN_MS, 0, true, false, &out));
    ck_assert_double_gt(out, 0);
}
END_TEST

START_TEST(test_rate_edges)
{
    double out = -1;
    promql_point_t one = {1000, 5};
    ck_assert(!promql_fn_extrapolated_rate(NULL, 0, 0, 60000, true, true, &out));
    ck_assert(!promql_fn_extrapolated_rate(&one, 1, 0, 60000, true, true, &out));
    ck_assert_double_eq(out, -1);

    /* Two points far from both ends: extrapolated by half an interval each way. */
    promql_point_t two[] = {{20000, 10}, {30000, 20}};
    ck_assert(promql_fn_extrapolated_rate(two, 2, 0, 60000, false, false, &out));
    ck_assert_double_eq(out, 20); /* 10 * (10 + 5 + 5) / 10 */
    /* A counter at 10 rising by 10 in 10s reaches zero 10s before the first point: more than
     * the 5s half interval, so the half interval wins. */
    ck_assert(promql_fn_extrapolated_rate(two, 2, 0, 60000, true, false, &out));
    ck_assert_double_eq(out, 20);
    /* A counter from 1: zero is 1s before the first point. */
    promql_point_t low[] = {{20000, 1}, {30000, 11}};
    ck_assert(promql_fn_extrapolated_rate(low, 2, 0, 60000, true, false, &out));
    ck_assert_double_eq(out, 16); /* 10 * (10 + 1 + 5) / 10 */
    /* A negative first value disables the zero cut-off. */
    promql_point_t negative[] = {{20000, -5}, {30000, 5}};
    ck_assert(promql_fn_extrapolated_rate(negative, 2, 0, 60000, true, false, &out));
    ck_assert_double_eq(out, 20);
    /* rate divides by the range in seconds, including a fractional one. */
    ck_assert(promql_fn_extrapolated_rate(two, 2, 0, 60500, false, true, &out));
    assert_near(out, 20 / 60.5, 1e-15);

    /* NaN propagates; infinities too. */
    promql_point_t with_nan[] = {{10000, 1}, {20000, NAN}, {30000, 3}};
    ck_assert(promql_fn_extrapolated_rate(with_nan, 3, 0, 30000, true, true, &out));
    assert_near(out, 0.1, 1e-15); /* NaN < x is false: no reset; 2 * (20 + 10) / 20 / 30 */
    promql_point_t with_inf[] = {{10000, 1}, {20000, 2}, {30000, INFINITY}};
    ck_assert(promql_fn_extrapolated_rate(with_inf, 3, 0, 30000, false, false, &out));
    ck_assert_double_eq(out, INFINITY);

    /* Huge timestamps (near year 292 million) still extrapolate exactly. */
    int64_t base = INT64_C(9000000000000000000);
    promql_point_t far[] = {{base + 15000, 0}, {base + 30000, 15}, {base + 45000, 30}};
    ck_assert(promql_fn_extrapolated_rate(far, 3, base, base + 60000, true, true, &out));
    assert_near(out, 0.75, 1e-15); /* 30 * (30 + 0 + 15) / 30 / 60: zero cut-off at the start */
}
END_TEST

/* ---- irate, idelta ------------------------------------------------------------------------ */

START_TEST(test_irate_idelta_corpus)
{
    promql_point_t foo[16], bar[16];
    size_t n_foo = load_linear(foo, 0, 5 * MIN_MS, 0, 10, 10);
    size_t n_bar = load_linear(bar, 0, 5 * MIN_MS, 0, 10, 5);
    n_bar = load_linear(bar, n_bar, 5 * MIN_MS, 0, 10, 5);
    size_t n;
    double out;
    const promql_point_t *w = window(foo, n_foo, 0, 50 * MIN_MS, &n);
    ck_assert(promql_fn_instant_value(w, n, true, &out));
    ck_assert_double_eq(out, 0.03333333333333333);
    w = window(bar, n_bar, 0, 50 * MIN_MS, &n);
    ck_assert(promql_fn_instant_value(w, n, true, &out));
    ck_assert_double_eq(out, 0.03333333333333333);
    /* At 30m the last two points of bar are 50 then 0: a reset, the rate of 0 alone. */
    w = window(bar, n_bar, -20 * MIN_MS, 30 * MIN_MS, &n);
    ck_assert(promql_fn_instant_value(w, n, true, &out));
    ck_assert_double_eq(out, 0);

    /* http_requests_nan 1 NaN NaN 5 11, [15m1s], range 0..20m step 5m. */
    static const double with_nan[] = {1, NAN, NAN, 5, 11};
    promql_point_t pts[8];
    size_t len = load_values(pts, 0, 5 * MIN_MS, with_nan, 5);
    int64_t range = 15 * MIN_MS + SEC_MS;
    w = window(pts, len, 0 - range, 0, &n);
    ck_assert(!promql_fn_instant_value(w, n, true, &out));
    for (int64_t t = 5 * MIN_MS; t <= 15 * MIN_MS; t += 5 * MIN_MS) {
        w = window(pts, len, t - range, t, &n);
        ck_assert(promql_fn_instant_value(w, n, true, &out));
        ck_assert(isnan(out));
        ck_assert(promql_fn_instant_value(w, n, false, &out));
        ck_assert(isnan(out));
    }
    w = window(pts, len, 20 * MIN_MS - range, 20 * MIN_MS, &n);
    ck_assert(promql_fn_instant_value(w, n, true, &out));
    ck_assert_double_eq(out, 0.02);
    ck_assert(promql_fn_instant_value(w, n, false, &out));
    ck_assert_double_eq(out, 6);

    static const double gauge_a[] = {0, 50, 100, 150};
    static const double gauge_b[] = {0, 50, 100, 50};
    len = load_values(pts, 0, 5 * MIN_MS, gauge_a, 4);
    w = window(pts, len, 0, 20 * MIN_MS, &n);
    ck_assert(promql_fn_instant_value(w, n, false, &out));
    ck_assert_double_eq(out, 50);
    len = load_values(pts, 0, 5 * MIN_MS, gauge_b, 4);
    w = window(pts, len, 0, 20 * MIN_MS, &n);
    ck_assert(promql_fn_instant_value(w, n, false, &out));
    ck_assert_double_eq(out, -50); /* idelta does not treat a decrease as a reset */
}
END_TEST

START_TEST(test_irate_edges)
{
    double out = -1;
    promql_point_t one = {1000, 5};
    ck_assert(!promql_fn_instant_value(&one, 1, true, &out));
    ck_assert(!promql_fn_instant_value(NULL, 0, false, &out));
    ck_assert_double_eq(out, -1);
    /* Uses only the last two points; milliseconds become seconds. */
    promql_point_t pts[] = {{0, 100}, {1000, 0}, {1500, 3}};
    ck_assert(promql_fn_instant_value(pts, 3, true, &out));
    ck_assert_double_eq(out, 6);
    /* Negative values: a fall is a reset for irate, a delta for idelta. */
    promql_point_t neg[] = {{0, -1}, {2000, -5}};
    ck_assert(promql_fn_instant_value(neg, 2, true, &out));
    ck_assert_double_eq(out, -2.5);
    ck_assert(promql_fn_instant_value(neg, 2, false, &out));
    ck_assert_double_eq(out, -4);
}
END_TEST

/* ---- deriv, predict_linear ---------------------------------------------------------------- */

START_TEST(test_deriv_predict_corpus)
{
    promql_point_t pts[16];
    size_t len = load_linear(pts, 0, 5 * MIN_MS, 0, 10, 4);
    len = load_linear(pts, len, 5 * MIN_MS, 0, 10, 5);
    size_t n;
    double out;
    const promql_point_t *w = window(pts, len, 50 * MIN_MS - 100 * MIN_MS, 50 * MIN_MS, &n);
    ck_assert_uint_eq(n, 11);
    ck_assert(promql_fn_deriv(w, n, &out));
    ck_assert_double_eq(out, 0.010606060606060607);

    w = window(pts, len, 0, 50 * MIN_MS, &n);
    ck_assert(promql_fn_predict_linear(w, n, 50 * MIN_MS, 3600, &out));
    assert_near(out, 70, 1e-12);

    /* [55m] @ 3000: the window is at 3000s, the intercept at the evaluation time. */
    w = window(pts, len, 3000 * SEC_MS - 55 * MIN_MS, 3000 * SEC_MS, &n);
    ck_assert(promql_fn_predict_linear(w, n, 50 * MIN_MS, 3600, &out));
    ck_assert_double_eq(out, 76.81818181818181);
    ck_assert(promql_fn_predict_linear(w, n, 70 * MIN_MS, 3600, &out));
    ck_assert_double_eq(out, 89.54545454545455);

    /* http_requests_inf: -Inf 0+80x10 Inf; deriv and predict_linear [100m] at 100m: NaN. */
    promql_point_t inf[16];
    static const double minus_inf = -INFINITY, plus_inf = INFINITY;
    size_t n_inf = load_values(inf, 0, 5 * MIN_MS, &minus_inf, 1);
    n_inf = load_linear(inf, n_inf, 5 * MIN_MS, 0, 80, 10);
    n_inf = load_values(inf, n_inf, 5 * MIN_MS, &plus_inf, 1);
    w = window(inf, n_inf, 0, 100 * MIN_MS, &n);
    ck_assert(promql_fn_deriv(w, n, &out));
    ck_assert(isnan(out));
    ck_assert(promql_fn_predict_linear(w, n, 100 * MIN_MS, 6000, &out));
    ck_assert(isnan(out));

    /* http_requests_total 0+80x10: predict_linear(v[50m], 3600) at 50m equals
     * v + deriv(v[50m]) * 3600. */
    promql_point_t lin[16];
    size_t n_lin = load_linear(lin, 0, 5 * MIN_MS, 0, 80, 10);
    w = window(lin, n_lin, 0, 50 * MIN_MS, &n);
    double slope, predicted;
    ck_assert(promql_fn_deriv(w, n, &slope));
    ck_assert(promql_fn_predict_linear(w, n, 50 * MIN_MS, 3600, &predicted));
    ck_assert_double_eq(predicted - (800 + slope * 3600), 0);
}
END_TEST

START_TEST(test_deriv_edges)
{
    double out = -1;
    promql_point_t one = {0, 1};
    ck_assert(!promql_fn_deriv(&one, 1, &out));
    ck_assert(!promql_fn_predict_linear(&one, 1, 0, 60, &out));
    ck_assert_double_eq(out, -1);
    /* A constant series: slope 0, prediction the value; NaN when the constant is infinite. */
    promql_point_t flat[] = {{0, 7}, {1000, 7}, {2000, 7}};
    ck_assert(promql_fn_deriv(flat, 3, &out));
    ck_assert_double_eq(out, 0);
    ck_assert(promql_fn_predict_linear(flat, 3, 5000, 100, &out));
    ck_assert_double_eq(out, 7);
    promql_point_t flat_inf[] = {{0, INFINITY}, {1000, INFINITY}};
    ck_assert(promql_fn_deriv(flat_inf, 2, &out));
    ck_assert(isnan(out));
    /* A NaN is not equal to itself, so NaNs are not constant: NaN slope. */
    promql_point_t nans[] = {{0, NAN}, {1000, NAN}};
    ck_assert(promql_fn_deriv(nans, 2, &out));
    ck_assert(isnan(out));
    /* Exact line with negative values and huge timestamps. */
    int64_t base = INT64_C(4000000000000000000);
    promql_point_t line[] = {{base, -10}, {base + 10000, -30}, {base + 20000, -50}};
    ck_assert(promql_fn_deriv(line, 3, &out));
    ck_assert_double_eq(out, -2);
    ck_assert(promql_fn_predict_linear(line, 3, base + 20000, 5, &out));
    ck_assert_double_eq(out, -60);
}
END_TEST

/* ---- *_over_time -------------------------------------------------------------------------- */

START_TEST(test_resets_changes_corpus)
{
    static const double foo_v[] = {1, 2, 3, 0, 1, 0, 0, 1, 2, 0};
    static const double bar_v[] = {1, 2, 3, 4, 5, 1, 2, 3, 4, 5};
    static const double biz_v[] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    promql_point_t foo[10], bar[10], biz[10];
    size_t n = load_values(foo, 0, 5 * MIN_MS, foo_v, 10);
    load_values(bar, 0, 5 * MIN_MS, bar_v, 10);
    load_values(biz, 0, 5 * MIN_MS, biz_v, 10);
    int64_t at = 50 * MIN_MS;

    ck_assert(over_time_none(PROMQL_FN_RESETS, foo, n, at, 5 * MIN_MS));
    static const struct {
        int64_t range;
        double foo, bar, biz;
    } resets[] = {
        {10 * MIN_MS, 0, 0, 0}, {600 * SEC_MS, 0, 0, 0}, {20 * MIN_MS, 1, 0, 0},
        {30 * MIN_MS, 1, 0, 0}, {32 * MIN_MS, 2, 1, 0},  {50 * MIN_MS, 3, 1, 0},
    };
    for (size_t i = 0; i < sizeof(resets) / sizeof(resets[0]); i++) {
        ck_assert_double_eq(over_time(PROMQL_FN_RESETS, foo, n, at, resets[i].range),
                            resets[i].foo);
        ck_assert_double_eq(over_time(PROMQL_FN_RESETS, bar, n, at, resets[i].range),
                            resets[i].bar);
        ck_assert_double_eq(over_time(PROMQL_FN_RESETS, biz, n, at, resets[i].range),
                            resets[i].biz);
    }

    ck_assert(over_time_none(PROMQL_FN_CHANGES, foo, n, at, 5 * MIN_MS));
    static const struct {
        int64_t range;
        double foo, bar, biz;
    } changes[] = {
        {6 * MIN_MS, 0, 0, 0},
        {20 * MIN_MS, 2, 2, 0},
        {30 * MIN_MS, 3, 4, 0},
        {50 * MIN_MS, 7, 8, 1},
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        ck_assert_double_eq(over_time(PROMQL_FN_CHANGES, foo, n, at, changes[i].range),
                            changes[i].foo);
        ck_assert_double_eq(over_time(PROMQL_FN_CHANGES, bar, n, at, changes[i].range),
                            changes[i].bar);
        ck_assert_double_eq(over_time(PROMQL_FN_CHANGES, biz, n, at, changes[i].range),
                            changes[i].biz);
    }

    /* x{a="b"} NaN NaN NaN: NaN to NaN is no change; x{a="c"} 0 NaN 0: two changes. */
    static const double all_nan[] = {NAN, NAN, NAN}, zero_nan[] = {0, NAN, 0};
    promql_point_t xb[3], xc[3];
    load_values(xb, 0, 5 * MIN_MS, all_nan, 3);
    load_values(xc, 0, 5 * MIN_MS, zero_nan, 3);
    ck_assert_double_eq(over_time(PROMQL_FN_CHANGES, xb, 3, 15 * MIN_MS, 20 * MIN_MS), 0);
    ck_assert_double_eq(over_time(PROMQL_FN_CHANGES, xc, 3, 15 * MIN_MS, 20 * MIN_MS), 2);
    /* A NaN between values is no reset (comparisons with NaN are false). */
    ck_assert_double_eq(over_time(PROMQL_FN_RESETS, xc, 3, 15 * MIN_MS, 20 * MIN_MS), 0);
    /* -0 equals 0: no change. */
    promql_point_t zeros[] = {{0, 0.0}, {1, -0.0}};
    ck_assert_double_eq(over_time(PROMQL_FN_CHANGES, zeros, 2, 1, 10), 0);
}
END_TEST

START_TEST(test_avg_over_time_corpus)
{
    static const struct {
        double v[5];
        size_t n;
        double want; /* NAN for NaN */
    } cases[] = {
        {{1, 2, 3, 4, 5}, 5, 3},
        {{1, 2, 3, 4, INFINITY}, 5, INFINITY},
        {{1, 2, 3, 4, -INFINITY}, 5, -INFINITY},
        {{1, 2, 3, INFINITY, -INFINITY}, 5, NAN},
        {{INFINITY, INFINITY, INFINITY, -INFINITY}, 4, NAN},
        {{-INFINITY, -INFINITY, -INFINITY, INFINITY}, 4, NAN},
        {{1, 2, -INFINITY, -INFINITY, INFINITY}, 5, NAN},
        {{9.988465674311579e+307, 9.988465674311579e+307}, 2, 9.988465674311579e+307},
        {{-9.988465674311579e+307, 9.988465674311579e+307}, 2, 0},
        {{1, 2, 3, NAN, NAN}, 5, NAN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        promql_point_t pts[5];
        size_t len = load_values(pts, 0, 10 * SEC_MS, cases[i].v, cases[i].n);
        double got = over_time(PROMQL_FN_AVG_OVER_TIME, pts, len, 55 * SEC_MS, MIN_MS);
        if (isnan(cases[i].want))
            ck_assert_msg(isnan(got), "case %zu: got %g", i, got);
        else
            ck_assert_msg(got == cases[i].want, "case %zu: got %.17g", i, got);
    }
    /* One sample in the range; NaN outside the window does not matter. */
    static const double metric[] = {1, 2, 3, 4, 5}, metric11[] = {1, 2, 3, NAN, NAN};
    promql_point_t pts[5];
    load_values(pts, 0, 10 * SEC_MS, metric, 5);
    ck_assert_double_eq(over_time(PROMQL_FN_AVG_OVER_TIME, pts, 5, 55 * SEC_MS, 20 * SEC_MS), 5);
    load_values(pts, 0, 10 * SEC_MS, metric11, 5);
    ck_assert_double_eq(over_time(PROMQL_FN_AVG_OVER_TIME, pts, 5, 20 * SEC_MS, MIN_MS), 2);

    /* Very large intermediate values do not lose the small ones. */
    static const double big[] = {1, 1e100, 1, -1e100};
    load_values(pts, 0, 10 * SEC_MS, big, 4);
    ck_assert_double_eq(over_time(PROMQL_FN_SUM_OVER_TIME, pts, 4, MIN_MS, 2 * MIN_MS), 2);
    ck_assert_double_eq(over_time(PROMQL_FN_AVG_OVER_TIME, pts, 4, MIN_MS, 2 * MIN_MS), 0.5);

    /* sum_over_time of the overflowing series is +-Inf where the average is finite. */
    static const double huge[] = {-9.988465674311579e+307, -9.988465674311579e+307,
                                  -9.988465674311579e+307};
    load_values(pts, 0, 10 * SEC_MS, huge, 3);
    ck_assert_double_eq(over_time(PROMQL_FN_SUM_OVER_TIME, pts, 3, 55 * SEC_MS, MIN_MS), -INFINITY);
    ck_assert_double_eq(over_time(PROMQL_FN_AVG_OVER_TIME, pts, 3, 55 * SEC_MS, MIN_MS),
                        -9.988465674311579e+307);
}
END_TEST

START_TEST(test_avg_over_time_extremes)
{
    /* load 5s; avg_over_time(metricN[1m]) at 55s takes every point. */
    static const struct {
        double v[10];
        size_t n;
        double want;
        double rel; /* 0: exact */
    } cases[] = {
        {{1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6}, 6, 1.6666666666666675e+09, 0},
        {{5.30921651659898, 0.961118537914768, 1.62091361305318, 0.865089463758091,
          0.323055185914577, 0.951811357687154},
         6,
         1.67186744582113,
         1e-6},
        {{1.78264e50, 0.76342771, 1.9592258, 7.69805412, 458.90154}, 5, 3.56528E+49, 1e-6},
        {{0.76342771, 1.9592258, 7.69805412, 1.78264e50, 458.90154}, 5, 3.56528E+49, 1e-6},
        {{1.78264E+50, 0.76342771, 1.9592258, 2.258E+220, 7.69805412, 458.90154},
         6,
         3.76333333333333E+219,
         1e-6},
        {{-1.78264E+50, 0.76342771, 1.9592258, 2.258E+220, 7.69805412, -458.90154},
         6,
         3.76333333333333E+219,
         1e-6},
        {{-1.78264E+50, 0.76342771, 1.9592258, -2.258E+220, 7.69805412, -458.90154},
         6,
         -3.76333333333333E+219,
         1e-6},
        {{-1.78264E+215, 0.76342771, 1.9592258, 2.258E+220, 7.69805412, -458.90154},
         6,
         3.76330362266667E+219,
         1e-6},
        {{-1.78264E+219, 0.76342771, 1.9592258, 2.3757689E+217, -2.3757689E+217, 2.258E+220,
          7.69805412, 1.78264E+219, -458.90154},
         9,
         2.5088888888888888e+219,
         0},
        /* Kahan summation cannot recover the small values here; Prometheus gives 0. */
        {{-2.258E+220, -1.78264E+219, 0.76342771, 1.9592258, 2.3757689E+217, -2.3757689E+217,
          2.258E+220, 7.69805412, 1.78264E+219, -458.90154},
         10,
         0,
         0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        promql_point_t pts[10];
        size_t len = load_values(pts, 0, 5 * SEC_MS, cases[i].v, cases[i].n);
        double got = over_time(PROMQL_FN_AVG_OVER_TIME, pts, len, 55 * SEC_MS, MIN_MS);
        if (cases[i].rel == 0)
            ck_assert_msg(got == cases[i].want, "case %zu: got %.17g", i, got);
        else
            assert_near(got, cases[i].want, cases[i].rel);
    }

    /* foo 52+0x100: the direct mean is exactly 52 for any window length. */
    promql_point_t foo[128];
    size_t len = load_linear(foo, 0, 10 * SEC_MS, 52, 0, 100);
    for (int64_t range = 100; range <= 130; range += 10)
        ck_assert_double_eq(
            over_time(PROMQL_FN_AVG_OVER_TIME, foo, len, 10 * MIN_MS, range * SEC_MS), 52);
}
END_TEST

START_TEST(test_sum_over_time_dense)
{
    /* load 1ms: metric 1+0x4000; sum_over_time(metric[r]) at 4s is r in ms. */
    static promql_point_t pts[4001];
    size_t len = load_linear(pts, 0, 1, 1, 0, 4000);
    static const int64_t ranges[] = {1001, 1002, 1003, 2000, 2001, 2002, 2003, 3000, 3003};
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        size_t n;
        const promql_point_t *w = window(pts, len, 4000 - ranges[i], 4000, &n);
        double out;
        ck_assert(promql_fn_over_time(PROMQL_FN_SUM_OVER_TIME, w, n, NULL, &out));
        ck_assert_double_eq(out, (double)ranges[i]);
        ck_assert(promql_fn_over_time(PROMQL_FN_COUNT_OVER_TIME, w, n, NULL, &out));
        ck_assert_double_eq(out, (double)ranges[i]);
    }
}
END_TEST

START_TEST(test_stddev_stdvar_over_time)
{
    static const double metric[] = {0, 8, 8, 2, 3};
    promql_point_t pts[5];
    load_values(pts, 0, 10 * SEC_MS, metric, 5);
    assert_near(over_time(PROMQL_FN_STDVAR_OVER_TIME, pts, 5, MIN_MS, 2 * MIN_MS), 10.56, 1e-12);
    assert_near(over_time(PROMQL_FN_STDDEV_OVER_TIME, pts, 5, MIN_MS, 2 * MIN_MS), 3.249615, 1e-6);

    /* Prometheus issue 4927: equal values give exactly 0. */
    static const double same[] = {1.5990505637277868, 1.5990505637277868, 1.5990505637277868};
    load_values(pts, 0, 10 * SEC_MS, same, 3);
    ck_assert_double_eq(over_time(PROMQL_FN_STDVAR_OVER_TIME, pts, 3, 55 * SEC_MS, MIN_MS), 0);
    ck_assert_double_eq(over_time(PROMQL_FN_STDDEV_OVER_TIME, pts, 3, 55 * SEC_MS, MIN_MS), 0);

    /* One point: 0. NaN or Inf: NaN. */
    ck_assert_double_eq(over_time(PROMQL_FN_STDDEV_OVER_TIME, pts, 1, 0, MIN_MS), 0);
    promql_point_t bad[] = {{0, 1}, {1000, INFINITY}};
    ck_assert(isnan(over_time(PROMQL_FN_STDVAR_OVER_TIME, bad, 2, 1000, MIN_MS)));
    bad[1].v = NAN;
    ck_assert(isnan(over_time(PROMQL_FN_STDDEV_OVER_TIME, bad, 2, 1000, MIN_MS)));
}
END_TEST

START_TEST(test_min_max_first_last_present)
{
    promql_point_t pts[] = {{1000, NAN}, {2000, 3}, {3000, -1}, {4000, NAN}, {5000, 7}};
    /* A NaN is replaced by any later value, and never replaces one. */
    ck_assert_double_eq(over_time(PROMQL_FN_MIN_OVER_TIME, pts, 5, 5000, MIN_MS), -1);
    ck_assert_double_eq(over_time(PROMQL_FN_MAX_OVER_TIME, pts, 5, 5000, MIN_MS), 7);
    ck_assert(isnan(over_time(PROMQL_FN_MAX_OVER_TIME, pts, 1, 1000, MIN_MS)));
    ck_assert(isnan(over_time(PROMQL_FN_FIRST_OVER_TIME, pts, 5, 5000, MIN_MS)));
    ck_assert_double_eq(over_time(PROMQL_FN_LAST_OVER_TIME, pts, 5, 5000, MIN_MS), 7);
    ck_assert_double_eq(over_time(PROMQL_FN_PRESENT_OVER_TIME, pts, 5, 5000, MIN_MS), 1);
    ck_assert_double_eq(over_time(PROMQL_FN_COUNT_OVER_TIME, pts, 5, 5000, MIN_MS), 5);
    promql_point_t infs[] = {{1000, -INFINITY}, {2000, INFINITY}};
    ck_assert_double_eq(over_time(PROMQL_FN_MIN_OVER_TIME, infs, 2, 2000, MIN_MS), -INFINITY);
    ck_assert_double_eq(over_time(PROMQL_FN_MAX_OVER_TIME, infs, 2, 2000, MIN_MS), INFINITY);
    ck_assert(isnan(over_time(PROMQL_FN_SUM_OVER_TIME, infs, 2, 2000, MIN_MS)));
}
END_TEST

START_TEST(test_ts_of_over_time)
{
    /* load 10s53ms: metric 1 2 3 0 5 6 2 1 4; ts_of_min_over_time(metric[90s]) at 90s. */
    static const double values[] = {1, 2, 3, 0, 5, 6, 2, 1, 4};
    promql_point_t pts[9];
    size_t len = load_values(pts, 0, 10053, values, 9);
    ck_assert_double_eq(
        over_time(PROMQL_FN_TS_OF_MIN_OVER_TIME, pts, len, 90 * SEC_MS, 90 * SEC_MS), 30.159);
    ck_assert_double_eq(
        over_time(PROMQL_FN_TS_OF_MAX_OVER_TIME, pts, len, 90 * SEC_MS, 90 * SEC_MS), 50.265);

    /* metric 1 2 3 _ _: ts_of_last_over_time at 90s and 95s is 20.106. */
    ck_assert_double_eq(over_time(PROMQL_FN_TS_OF_LAST_OVER_TIME, pts, 3, 90 * SEC_MS, 90 * SEC_MS),
                        20.106);
    ck_assert_double_eq(over_time(PROMQL_FN_TS_OF_LAST_OVER_TIME, pts, 3, 95 * SEC_MS, 90 * SEC_MS),
                        20.106);
    /* metric _ _ 1 2 3 _ _: ts_of_first_over_time is 20.106; nothing at 15s. */
    ck_assert_double_eq(
        over_time(PROMQL_FN_TS_OF_FIRST_OVER_TIME, pts + 2, 3, 90 * SEC_MS, 90 * SEC_MS), 20.106);
    ck_assert(
        over_time_none(PROMQL_FN_TS_OF_FIRST_OVER_TIME, pts + 2, 3, 15 * SEC_MS, 90 * SEC_MS));

    /* Ties: the last point holding the extreme wins; NaN is replaced. */
    promql_point_t ties[] = {{1000, NAN}, {2000, 5}, {3000, 1}, {4000, 5}, {5000, 1}};
    ck_assert_double_eq(over_time(PROMQL_FN_TS_OF_MAX_OVER_TIME, ties, 5, 5000, MIN_MS), 4);
    ck_assert_double_eq(over_time(PROMQL_FN_TS_OF_MIN_OVER_TIME, ties, 5, 5000, MIN_MS), 5);
    /* All NaN: the last point. Negative times stay exact. */
    promql_point_t nans[] = {{-3500, NAN}, {-1500, NAN}};
    ck_assert_double_eq(over_time(PROMQL_FN_TS_OF_MAX_OVER_TIME, nans, 2, 0, MIN_MS), -1.5);
    ck_assert_double_eq(over_time(PROMQL_FN_TS_OF_FIRST_OVER_TIME, nans, 2, 0, MIN_MS), -3.5);
}
END_TEST

START_TEST(test_mad_quantile_over_time)
{
    static const double odd[] = {1, 2, 3, 4, 5}, equal[] = {7, 7, 7, 7, 7},
                        with_nan[] = {1, 2, NAN, 4};
    static const double spread[] = {4, 6, 2, 1, 999, 1, 2};
    promql_point_t pts[8];
    load_values(pts, 0, 10 * SEC_MS, odd, 5);
    ck_assert_double_eq(over_time(PROMQL_FN_MAD_OVER_TIME, pts, 5, 40 * SEC_MS, 50 * SEC_MS), 1);
    load_values(pts, 0, 10 * SEC_MS, equal, 5);
    ck_assert_double_eq(over_time(PROMQL_FN_MAD_OVER_TIME, pts, 5, 40 * SEC_MS, 50 * SEC_MS), 0);
    ck_assert_double_eq(over_time(PROMQL_FN_MAD_OVER_TIME, pts, 1, 0, 10 * SEC_MS), 0);
    load_values(pts, 0, 10 * SEC_MS, with_nan, 4);
    ck_assert(isnan(over_time(PROMQL_FN_MAD_OVER_TIME, pts, 4, 30 * SEC_MS, 40 * SEC_MS)));
    /* The outlier barely moves it: median 2, deviations 2 4 0 1 997 1 0, median 1. */
    load_values(pts, 0, 10 * SEC_MS, spread, 7);
    ck_assert_double_eq(over_time(PROMQL_FN_MAD_OVER_TIME, pts, 7, MIN_MS, 70 * SEC_MS), 1);
    double out;
    ck_assert(!promql_fn_over_time(PROMQL_FN_MAD_OVER_TIME, pts, 7, NULL, &out));

    /* quantile_over_time over data{test="two|three|uneven samples"}, [2m] at 1m. */
    static const struct {
        double v[3];
        size_t n;
        double q0, q1, q2;
    } cases[] = {{{0, 1}, 2, 0, 1, INFINITY},
                 {{0, 1, 2}, 3, 0, 2, INFINITY},
                 {{0, 1, 4}, 3, 0, 4, INFINITY}};
    double scratch[3];
    for (size_t i = 0; i < 3; i++) {
        size_t len = load_values(pts, 0, 10 * SEC_MS, cases[i].v, cases[i].n);
        ck_assert(promql_fn_quantile_over_time(0, pts, len, scratch, &out));
        ck_assert_double_eq(out, cases[i].q0);
        ck_assert(promql_fn_quantile_over_time(1, pts, len, scratch, &out));
        ck_assert_double_eq(out, cases[i].q1);
        ck_assert(promql_fn_quantile_over_time(2, pts, len, scratch, &out));
        ck_assert_double_eq(out, cases[i].q2);
        /* The input points are not reordered. */
        ck_assert_double_eq(pts[0].v, cases[i].v[0]);
    }
    ck_assert(!promql_fn_quantile_over_time(0.5, pts, 0, scratch, &out));
}
END_TEST

START_TEST(test_over_time_empty_and_unknown)
{
    static const promql_function_id_t all[] = {
        PROMQL_FN_AVG_OVER_TIME,
        PROMQL_FN_MIN_OVER_TIME,
        PROMQL_FN_MAX_OVER_TIME,
        PROMQL_FN_SUM_OVER_TIME,
        PROMQL_FN_COUNT_OVER_TIME,
        PROMQL_FN_STDDEV_OVER_TIME,
        PROMQL_FN_STDVAR_OVER_TIME,
        PROMQL_FN_LAST_OVER_TIME,
        PROMQL_FN_FIRST_OVER_TIME,
        PROMQL_FN_PRESENT_OVER_TIME,
        PROMQL_FN_MAD_OVER_TIME,
        PROMQL_FN_CHANGES,
        PROMQL_FN_RESETS,
        PROMQL_FN_TS_OF_FIRST_OVER_TIME,
        PROMQL_FN_TS_OF_LAST_OVER_TIME,
        PROMQL_FN_TS_OF_MIN_OVER_TIME,
        PROMQL_FN_TS_OF_MAX_OVER_TIME,
    };
    double scratch[1], out = -1;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ck_assert(!promql_fn_over_time(all[i], NULL, 0, scratch, &out));
    ck_assert_double_eq(out, -1);
    promql_point_t one = {0, 1};
    ck_assert(!promql_fn_over_time(PROMQL_FN_RATE, &one, 1, scratch, &out));
    /* One point: changes and resets are 0. */
    ck_assert(promql_fn_over_time(PROMQL_FN_CHANGES, &one, 1, scratch, &out));
    ck_assert_double_eq(out, 0);
}
END_TEST

/* ---- double_exponential_smoothing --------------------------------------------------------- */

START_TEST(test_double_exponential_smoothing)
{
    /* load 10s; four linear series, double_exponential_smoothing(v[1m], 0.01, 0.1) at 8000s. A
     * linear series is smoothed to itself. */
    static const double slopes[] = {10, 20, 30, 40};
    static promql_point_t pts[1100];
    for (size_t i = 0; i < 4; i++) {
        size_t len = load_linear(pts, 0, 10 * SEC_MS, 0, slopes[i], 1000);
        size_t n;
        const promql_point_t *w = window(pts, len, 7940 * SEC_MS, 8000 * SEC_MS, &n);
        double out;
        ck_assert(promql_fn_double_exponential_smoothing(w, n, 0.01, 0.1, &out));
        assert_near(out, 800 * slopes[i], 1e-6);
    }
    /* A hand-computed case: 1 3 2 with sf 0.5 and tf 0.5.
     * i=1: b = 2 (initial); s = 0.5*3 + 0.5*(1+2) = 3.
     * i=2: b = 0.5*(3-1) + 0.5*2 = 2; s = 0.5*2 + 0.5*(3+2) = 3.5. */
    promql_point_t three[] = {{0, 1}, {1000, 3}, {2000, 2}};
    double out = -1;
    ck_assert(promql_fn_double_exponential_smoothing(three, 3, 0.5, 0.5, &out));
    ck_assert_double_eq(out, 3.5);
    ck_assert(promql_fn_double_exponential_smoothing(three, 2, 0.5, 0.5, &out));
    ck_assert_double_eq(out, 3);
    ck_assert(!promql_fn_double_exponential_smoothing(three, 1, 0.5, 0.5, &out));
    three[1].v = NAN;
    ck_assert(promql_fn_double_exponential_smoothing(three, 3, 0.5, 0.5, &out));
    ck_assert(isnan(out));
}
END_TEST

/* ---- quantile ----------------------------------------------------------------------------- */

START_TEST(test_quantile)
{
    /* aggregators.test: quantile without(point)(0.8 / 0.2, data). */
    static const struct {
        double v[3];
        size_t n;
        double q08, q02;
    } cases[] = {
        {{0, 1}, 2, 0.8, 0.2},
        {{0, 1, 2}, 3, 1.6, 0.4},
        {{0, 1, 4}, 3, 2.8, 0.4},
        {{0, 1, NAN}, 3, 0.6, NAN}, /* NaN sorts as the smallest value */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double values[3];
        for (size_t j = 0; j < cases[i].n; j++)
            values[j] = cases[i].v[j];
        assert_near(promql_quantile(0.8, values, cases[i].n), cases[i].q08, 1e-15);
        double q02 = promql_quantile(0.2, values, cases[i].n);
        if (isnan(cases[i].q02))
            ck_assert(isnan(q02));
        else
            assert_near(q02, cases[i].q02, 1e-15);
    }
    double values[] = {3, 1, 2};
    ck_assert_double_eq(promql_quantile(-0.5, values, 3), -INFINITY);
    ck_assert_double_eq(promql_quantile(1.5, values, 3), INFINITY);
    ck_assert(isnan(promql_quantile(NAN, values, 3)));
    ck_assert(isnan(promql_quantile(0.5, values, 0)));
    ck_assert_double_eq(promql_quantile(0.5, values, 3), 2);
    ck_assert_double_eq(values[0], 1); /* sorted in place */
    ck_assert_double_eq(promql_quantile(0.5, values, 1), 1);
    double infs[] = {INFINITY, -INFINITY, 0, 0};
    ck_assert_double_eq(promql_quantile(0, infs, 4), -INFINITY);
    /* q = 1 weighs the top value by 0: +Inf * 0 is NaN, as in Prometheus. */
    ck_assert(isnan(promql_quantile(1, infs, 4)));
    ck_assert_double_eq(promql_quantile(0.5, infs, 4), 0);
}
END_TEST

/* ---- classic histogram buckets ------------------------------------------------------------ */

/* The buckets of testhistogram*_bucket at 50m: each series is 0+kx10, so at 50m count = 10k. */
static size_t buckets_from(promql_bucket_t *b, const double *upper, const double *per_step,
                           size_t n, double steps)
{
    for (size_t i = 0; i < n; i++) {
        b[i].upper = upper[i];
        b[i].count = per_step[i] * steps;
    }
    return n;
}

START_TEST(test_bucket_quantile_corpus)
{
    /* testhistogram, given out of order to check the sort. */
    static const double pos_le[] = {0.2, INFINITY, 0.1, 1};
    static const double pos_k[] = {7, 12, 5, 11};
    static const double neg_le[] = {-0.2, -0.1, 0.3, INFINITY};
    static const double neg_k[] = {1, 2, 2, 3};
    static const struct {
        double q, pos, neg;
    } cases[] = {
        {0, 0, -0.2}, {0.2, 0.048, -0.2}, {0.5, 0.15, -0.15}, {0.8, 0.72, 0.3}, {1, 1, 0.3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        promql_bucket_t b[4];
        bool forced = true;
        buckets_from(b, pos_le, pos_k, 4, 10);
        assert_near(promql_bucket_quantile(cases[i].q, b, 4, &forced), cases[i].pos, 1e-12);
        ck_assert(!forced);
        buckets_from(b, neg_le, neg_k, 4, 10);
        assert_near(promql_bucket_quantile(cases[i].q, b, 4, &forced), cases[i].neg, 1e-12);
    }

    /* testhistogram3 (0 bucket first): q 0 .25 .5 .75 1. */
    static const double p3_le[] = {0, 0.1, 0.2, 1, INFINITY};
    static const double p3_k[] = {0, 5, 7, 11, 11};
    static const double n3_le[] = {-0.25, -0.2, -0.1, 0.3, INFINITY};
    static const double n3_k[] = {0, 1, 2, 2, 2};
    static const double qs[] = {0, 0.25, 0.5, 0.75, 1};
    static const double p3_want[] = {0, 0.055, 0.125, 0.45, 1};
    static const double n3_want[] = {-0.25, -0.225, -0.2, -0.15, -0.1};
    for (size_t i = 0; i < 5; i++) {
        promql_bucket_t b[5];
        buckets_from(b, p3_le, p3_k, 5, 10);
        assert_near(promql_bucket_quantile(qs[i], b, 5, NULL), p3_want[i], 1e-12);
        buckets_from(b, n3_le, n3_k, 5, 10);
        assert_near(promql_bucket_quantile(qs[i], b, 5, NULL), n3_want[i], 1e-12);
    }

    /* testhistogram2 at 7m (one step): 1/6, 1/2, 5/6 land mid-bucket. */
    static const double h2_le[] = {0, 2, 4, 6, INFINITY};
    static const double h2_k[] = {0, 1, 2, 3, 3};
    promql_bucket_t b[6];
    buckets_from(b, h2_le, h2_k, 5, 1);
    ck_assert_double_eq(promql_bucket_quantile(1. / 6., b, 5, NULL), 1);
    buckets_from(b, h2_le, h2_k, 5, 1);
    ck_assert_double_eq(promql_bucket_quantile(0.5, b, 5, NULL), 3);
    buckets_from(b, h2_le, h2_k, 5, 1);
    ck_assert_double_eq(promql_bucket_quantile(5. / 6., b, 5, NULL), 5);

    /* Out-of-range and NaN q. */
    buckets_from(b, pos_le, pos_k, 4, 10);
    ck_assert_double_eq(promql_bucket_quantile(-0.1, b, 4, NULL), -INFINITY);
    ck_assert_double_eq(promql_bucket_quantile(1.01, b, 4, NULL), INFINITY);
    ck_assert(isnan(promql_bucket_quantile(NAN, b, 4, NULL)));

    /* sum(rate(request_duration_seconds_bucket[10m])) by (le): proportional to the per-step
     * sums 10, 19, 25 over 0.1, 0.2, +Inf; q 0.3 -> 0.075, q 0.5 -> 0.1277777777777778. */
    static const double rd_le[] = {0.1, 0.2, INFINITY};
    static const double rd_k[] = {10, 19, 25};
    buckets_from(b, rd_le, rd_k, 3, 1);
    assert_near(promql_bucket_quantile(0.3, b, 3, NULL), 0.075, 1e-12);
    buckets_from(b, rd_le, rd_k, 3, 1);
    assert_near(promql_bucket_quantile(0.5, b, 3, NULL), 0.1277777777777778, 1e-12);
}
END_TEST

START_TEST(test_bucket_quantile_monotonicity)
{
    /* nonmonotonic_bucket at 50m: 20 10 50 40 90 80 over 0.1 1 10 100 1000 +Inf. */
    static const double le[] = {0.1, 1, 10, 100, 1000, INFINITY};
    static const double k[] = {2, 1, 5, 4, 9, 8};
    promql_bucket_t b[6];
    promql_bucket_fix_t fix;
    buckets_from(b, le, k, 6, 10);
    bool forced = false;
    assert_near(promql_bucket_quantile(0.01, b, 6, &forced), 0.0045, 1e-12);
    ck_assert(forced);
    buckets_from(b, le, k, 6, 10);
    assert_near(promql_bucket_quantile_fix(0.5, b, 6, &fix), 8.5, 1e-12);
    ck_assert(fix.forced_monotonic);
    ck_assert(!fix.fixed_precision);
    ck_assert_double_eq(fix.min_bucket, 1);
    ck_assert_double_eq(fix.max_bucket, INFINITY);
    ck_assert_double_eq(fix.max_diff, 10);

    /* A relative difference within 1e-12 is ignored silently, either way; prev stays. */
    promql_bucket_t tiny[] = {{1, 100}, {2, 100 - 1e-11}, {3, 100 + 1e-11}, {INFINITY, 200}};
    ck_assert_double_eq(promql_bucket_quantile_fix(0.5, tiny, 4, &fix), 1);
    ck_assert(fix.fixed_precision);
    ck_assert(!fix.forced_monotonic);
    ck_assert_double_eq(tiny[1].count, 100);
    ck_assert_double_eq(tiny[2].count, 100);
    ck_assert_double_eq(fix.min_bucket, INFINITY);
    ck_assert_double_eq(fix.max_bucket, -INFINITY);
}
END_TEST

START_TEST(test_bucket_quantile_edges)
{
    promql_bucket_fix_t fix;
    /* No +Inf bucket: NaN. */
    promql_bucket_t no_inf[] = {{1, 1}, {2, 2}};
    ck_assert(isnan(promql_bucket_quantile_fix(0.5, no_inf, 2, &fix)));
    ck_assert(!fix.forced_monotonic);
    /* Only the +Inf bucket: NaN. Zero observations: NaN. No buckets: NaN. */
    promql_bucket_t only_inf[] = {{INFINITY, 5}};
    ck_assert(isnan(promql_bucket_quantile(0.5, only_inf, 1, NULL)));
    promql_bucket_t empty[] = {{1, 0}, {INFINITY, 0}};
    ck_assert(isnan(promql_bucket_quantile(0.5, empty, 2, NULL)));
    ck_assert(isnan(promql_bucket_quantile(0.5, NULL, 0, NULL)));
    /* In the +Inf bucket: the upper bound below it. */
    promql_bucket_t tail[] = {{INFINITY, 10}, {1, 1}};
    ck_assert_double_eq(promql_bucket_quantile(0.9, tail, 2, NULL), 1);
    /* In the first bucket with a bound <= 0: that bound. */
    promql_bucket_t neg[] = {{-1, 5}, {INFINITY, 10}};
    ck_assert_double_eq(promql_bucket_quantile(0.2, neg, 2, NULL), -1);
    /* Equal bounds (le="0.2", "2e-1", "2.0e-1") merge: mixed_bucket rate at 50m gives 0.15;
     * le="+inf" and "+Inf" with zero counts give NaN. */
    promql_bucket_t mixed[] = {{0.1, 1}, {0.2, 1}, {0.2, 1}, {0.2, 1}, {INFINITY, 4}};
    assert_near(promql_bucket_quantile(0.5, mixed, 5, NULL), 0.15, 1e-12);
    promql_bucket_t mixed_inf[] = {{INFINITY, 0}, {INFINITY, 0}};
    ck_assert(isnan(promql_bucket_quantile(0.5, mixed_inf, 2, NULL)));
    /* Interpolation divides first: (rank - below) / (count - below). */
    promql_bucket_t thirds[] = {{3, 3}, {INFINITY, 3}};
    ck_assert_double_eq(promql_bucket_quantile(1.0 / 3, thirds, 2, NULL), 3 * ((1.0 / 3 * 3) / 3));
}
END_TEST

START_TEST(test_bucket_fraction_corpus)
{
    static const struct {
        double lower, upper;
        double le[5], count[5];
        size_t n;
        double want;
    } cases[] = {
        /* testhistogram2 at 50m. */
        {0, 4, {0, 2, 4, 6, INFINITY}, {0, 10, 20, 30, 30}, 5, 0.6666666666666666},
        {0, 6, {0, 2, 4, 6, INFINITY}, {0, 10, 20, 30, 30}, 5, 1},
        {0, 3.5, {0, 2, 4, 6, INFINITY}, {0, 10, 20, 30, 30}, 5, 0.5833333333333334},
        /* testhistogram3 at 50m. */
        {0, 0.2, {0, 0.1, 0.2, 1, INFINITY}, {0, 50, 70, 110, 110}, 5, 0.6363636363636364},
        {0, 0.2, {-0.25, -0.2, -0.1, 0.3, INFINITY}, {0, 10, 20, 20, 20}, 5, 0},
        {0, 1.5, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0.02},
        {-4, -2, {-3, -2, -1, INFINITY}, {10, 12, 15, 100}, 4, 0.02},
        {-INFINITY, -1.5, {-3, -2, -1, INFINITY}, {10, 12, 15, 100}, 4, 0.135},
        {-INFINITY, INFINITY, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 1},
        {-INFINITY, INFINITY, {-3, -2, -1, INFINITY}, {10, 12, 15, 100}, 4, 1},
        {0, 1, {-3, -2, -1, INFINITY}, {10, 12, 15, 100}, 4, 0},
        {2, 5, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0.03},
        {400, INFINITY, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0.94},
        {2, 2, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0},
        {3, 2, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0},
        {0, 1, {INFINITY}, {100}, 1, 0},
        {0, 5, {1, 2, 3, INFINITY}, {0, 0, 0, 0}, 4, NAN},
        {2, 3.5, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0.03},
        {0.5, 2, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0.025},
        {1, 3, {1, 2, 3, INFINITY}, {1, 3, 6, 100}, 4, 0.05},
        {-1, 1, {-2, -1, 0, 1, INFINITY}, {5, 10, 15, 20, 100}, 5, 0.1},
        {NAN, 1, {1, INFINITY}, {1, 100}, 2, NAN},
        {0, NAN, {1, INFINITY}, {1, 100}, 2, NAN},
        {-10, -5, {1, 2, INFINITY}, {1, 3, 10}, 3, 0},
        {5, 10, {1, 2, INFINITY}, {1, 3, 10}, 3, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        promql_bucket_t b[5];
        /* Reversed, to exercise the sort. */
        for (size_t j = 0; j < cases[i].n; j++) {
            b[j].upper = cases[i].le[cases[i].n - 1 - j];
            b[j].count = cases[i].count[cases[i].n - 1 - j];
        }
        bool forced = true;
        double got = promql_bucket_fraction(cases[i].lower, cases[i].upper, b, cases[i].n, &forced);
        ck_assert(!forced);
        if (isnan(cases[i].want))
            ck_assert_msg(isnan(got), "case %zu: got %g", i, got);
        else
            ck_assert_msg(got == cases[i].want, "case %zu: got %.17g want %.17g", i, got,
                          cases[i].want);
    }
    /* No +Inf bucket, or no buckets: NaN. */
    promql_bucket_t no_inf[] = {{1, 1}, {2, 2}};
    ck_assert(isnan(promql_bucket_fraction(0, 1, no_inf, 2, NULL)));
    ck_assert(isnan(promql_bucket_fraction(0, 1, NULL, 0, NULL)));
}
END_TEST

/* ---- math, round, calendar ---------------------------------------------------------------- */

START_TEST(test_math_corpus)
{
    /* trig_functions.test: trig{l="x"} 10, {l="y"} 20. */
    static const struct {
        promql_function_id_t fn;
        double in, want; /* NAN: NaN */
    } cases[] = {
        {PROMQL_FN_SIN, 10, -0.5440211108893699},
        {PROMQL_FN_SIN, 20, 0.9129452507276277},
        {PROMQL_FN_TAN, 10, 0.6483608274590867},
        {PROMQL_FN_TAN, 20, 2.2371609442247427},
        {PROMQL_FN_ASIN, 10 - 10.1, -0.10016742116155944},
        {PROMQL_FN_ASIN, 20 - 10.1, NAN},
        {PROMQL_FN_ACOS, 10 - 10.1, 1.670963747956456},
        {PROMQL_FN_ACOS, 20 - 10.1, NAN},
        {PROMQL_FN_SINH, 10, 11013.232920103324},
        {PROMQL_FN_SINH, 20, 2.4258259770489514e+08},
        {PROMQL_FN_COSH, 10, 11013.232920103324},
        {PROMQL_FN_COSH, 20, 2.4258259770489514e+08},
        {PROMQL_FN_TANH, 10, 0.9999999958776927},
        {PROMQL_FN_TANH, 20, 1},
        {PROMQL_FN_ACOSH, 10, 2.993222846126381},
        {PROMQL_FN_ACOSH, 20, 3.6882538673612966},
        {PROMQL_FN_ATANH, 10 - 10.1, -0.10033534773107522},
        {PROMQL_FN_ATANH, 20 - 10.1, NAN},
        {PROMQL_FN_RAD, 10, 0.17453292519943295},
        {PROMQL_FN_RAD, 20, 0.3490658503988659},
        {PROMQL_FN_RAD, -10, -0.17453292519943295},
        {PROMQL_FN_DEG, 10, 572.9577951308232},
        {PROMQL_FN_DEG, 20, 1145.9155902616465},
        {PROMQL_FN_DEG, -10, -572.9577951308232},
        {PROMQL_FN_DEG, 0, 0},
        /* functions.test: exp, ln, sqrt, log2, log10 of exp_root_log (10, 20). */
        {PROMQL_FN_EXP, 10, 22026.465794806718},
        {PROMQL_FN_EXP, 20, 485165195.4097903},
        {PROMQL_FN_EXP, 0, 1},
        {PROMQL_FN_EXP, -10, 4.5399929762484854e-05},
        {PROMQL_FN_LN, 10, 2.302585092994046},
        {PROMQL_FN_LN, 20, 2.995732273553991},
        {PROMQL_FN_LN, 0, -INFINITY},
        {PROMQL_FN_LN, -10, NAN},
        {PROMQL_FN_SQRT, 10, 3.1622776601683795},
        {PROMQL_FN_SQRT, 20, 4.47213595499958},
        {PROMQL_FN_SQRT, -1, NAN},
        {PROMQL_FN_LOG2, 10, 3.3219280948873626},
        {PROMQL_FN_LOG2, 20, 4.321928094887363},
        {PROMQL_FN_LOG2, -10, NAN},
        {PROMQL_FN_LOG2, 0, -INFINITY},
        {PROMQL_FN_LOG10, 10, 1},
        {PROMQL_FN_LOG10, 20, 1.301029995663981},
        {PROMQL_FN_LOG10, -10, NAN},
        /* abs, ceil, floor, sgn of functions.test's data and test_sgn. */
        {PROMQL_FN_ABS, -2.5, 2.5},
        {PROMQL_FN_ABS, -INFINITY, INFINITY},
        {PROMQL_FN_ABS, NAN, NAN},
        {PROMQL_FN_FLOOR, -2.5, -3},
        {PROMQL_FN_FLOOR, 2.5, 2},
        {PROMQL_FN_CEIL, 2.5, 3},
        {PROMQL_FN_CEIL, -2.5, -2},
        {PROMQL_FN_SGN, -INFINITY, -1},
        {PROMQL_FN_SGN, INFINITY, 1},
        {PROMQL_FN_SGN, NAN, NAN},
        {PROMQL_FN_SGN, -50, -1},
        {PROMQL_FN_SGN, 0, 0},
        {PROMQL_FN_SGN, 100, 1},
        {PROMQL_FN_SIN, NAN, NAN},
        {PROMQL_FN_ATAN, INFINITY, 1.5707963267948966},
        {PROMQL_FN_ASINH, 0, 0},
        {PROMQL_FN_COS, 0, 1},
        /* Not a one-argument math function. */
        {PROMQL_FN_RATE, 1, NAN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double got = promql_fn_math(cases[i].fn, cases[i].in);
        if (isnan(cases[i].want))
            ck_assert_msg(isnan(got), "case %zu: got %.17g", i, got);
        else
            /* promqltest's tolerance: the corpus's values are not all exact (it gives sinh(10)
             * the value of cosh(10)), and Go's and glibc's libm may differ in the last bit. */
            assert_near(got, cases[i].want, 1e-6);
    }
    /* Exactly as libm computes them (what Go's math package returns too, to the last bit for
     * these arguments). */
    ck_assert_double_eq(promql_fn_math(PROMQL_FN_SINH, 10), 11013.232874703393);
    ck_assert_double_eq(promql_fn_math(PROMQL_FN_COSH, 10), 11013.232920103324);
    ck_assert_double_eq(promql_fn_math(PROMQL_FN_DEG, 1), 57.29577951308232);
    ck_assert_double_eq(promql_fn_math(PROMQL_FN_RAD, 180), 3.141592653589793);
    /* sgn keeps the sign of zero; floor(-0) is -0. */
    ck_assert(signbit(promql_fn_math(PROMQL_FN_SGN, -0.0)));
    ck_assert(signbit(promql_fn_math(PROMQL_FN_FLOOR, -0.0)));
}
END_TEST

START_TEST(test_round)
{
    /* functions.test: round(data). */
    ck_assert_double_eq(promql_fn_round(2.5, 1), 3);
    ck_assert_double_eq(promql_fn_round(2, 1), 2);
    ck_assert_double_eq(promql_fn_round(-2.5, 1), -2); /* half up */
    ck_assert_double_eq(promql_fn_round(-2, 1), -2);
    ck_assert_double_eq(promql_fn_round(0, 1), 0);
    ck_assert_double_eq(promql_fn_round(INFINITY, 1), INFINITY);
    ck_assert_double_eq(promql_fn_round(-INFINITY, 1), -INFINITY);
    ck_assert(isnan(promql_fn_round(NAN, 1)));
    /* aggregators.test on http_requests{group="production",job="api-server"} at 50m: 100, 200.
     */
    static const double v[] = {100, 200};
    static const struct {
        double scale, add, sign, to, want[2];
    } cases[] = {
        {0.004, 0, -1, 1, {0, -1}},        {0.005, 0, -1, 1, {0, -1}},
        {0.005, 1, 1, 1, {2, 2}},          {0.005, 1, -1, 1, {-1, -2}},
        {0.0005, 0, 1, 0.1, {0.1, 0.1}},   {0.0005, 2.1, 1, 0.1, {2.2, 2.2}},
        {0.0005, 5.2, 1, 0.1, {5.3, 5.3}}, {0.0005, 5.2, -1, 0.1, {-5.2, -5.3}},
        {0.045, 0, 1, 5, {5, 10}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (size_t j = 0; j < 2; j++) {
            double x = cases[i].sign * (cases[i].add + cases[i].scale * v[j]);
            assert_near(promql_fn_round(x, cases[i].to), cases[i].want[j], 1e-12);
        }
    /* to_nearest 0: 1/0 is +Inf, so the result is NaN. */
    ck_assert(isnan(promql_fn_round(1.5, 0)));
}
END_TEST

START_TEST(test_calendar)
{
    /* functions.test: time 0 and 1136239445 (2006-01-02 22:04:05, a Monday). */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, 0), 1970);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MONTH, 0), 1);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_MONTH, 0), 1);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_YEAR, 0), 1);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_WEEK, 0), 4);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_HOUR, 0), 0);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MINUTE, 0), 0);
    double t = 1136239445;
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, t), 2006);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MONTH, t), 1);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_MONTH, t), 2);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_YEAR, t), 2);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_WEEK, t), 1);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_HOUR, t), 22);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MINUTE, t), 4);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, 1230767999), 2008);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, 1230768000), 2009);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MONTH, 1456790399) +
                            promql_fn_time(PROMQL_FN_DAY_OF_MONTH, 1456790399) / 100,
                        2.29);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_YEAR, 1483191420), 366);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAYS_IN_MONTH, 1454284800), 29);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAYS_IN_MONTH, 1485907200), 28);

    /* Fractions of a second are truncated toward zero, as Go's int64() does. */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MINUTE, 59.9), 0);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, -0.5), 1970);
    /* Negative times: 1969-12-31 23:59:59 was a Wednesday. */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, -1), 1969);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MONTH, -1), 12);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_MONTH, -1), 31);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_YEAR, -1), 365);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_WEEK, -1), 3);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_HOUR, -1), 23);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MINUTE, -1), 59);
    /* 1900-03-01 00:00:00 (-2203891200): 1900 was no leap year; a Thursday. */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAYS_IN_MONTH, -2203891200.0 - 1), 28);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_YEAR, -2203891200.0), 60);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_WEEK, -2203891200.0), 4);
    /* 2000-02-29 (951782400): 2000 was a leap year. */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAYS_IN_MONTH, 951782400), 29);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_MONTH, 951782400), 29);
    /* Year 0 and before (proleptic Gregorian; year 0 = 1 BC, a leap year):
     * 0000-03-01 is -62162035200, -0001-12-31 23:59:59 is -62167219201. */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, -62162035200.0), 0);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_YEAR, -62162035200.0), 61);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, -62167219201.0), -1);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MONTH, -62167219201.0), 12);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_MONTH, -62167219201.0), 31);
    /* Far future: 10000-01-01 (253402300800) and the largest int64 second,
     * 292277026596-12-04 15:30:07 UTC, a Sunday. */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, 253402300800.0), 10000);
    double max_seconds = 9223372036854774784.0; /* the largest double below 2^63 */
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_YEAR, max_seconds), 292277026596);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_MONTH, max_seconds), 12);
    ck_assert_double_eq(promql_fn_time(PROMQL_FN_DAY_OF_MONTH, max_seconds), 4);
    /* Values outside int64 (and NaN) become INT64_MIN seconds, as Go's conversion does on
     * amd64; the kernel stays defined (a year far in the past). */
    ck_assert_double_lt(promql_fn_time(PROMQL_FN_YEAR, NAN), -292000000000.0);
    ck_assert_double_lt(promql_fn_time(PROMQL_FN_YEAR, 1e300), -292000000000.0);
    double dom = promql_fn_time(PROMQL_FN_DAY_OF_MONTH, -INFINITY);
    ck_assert(dom >= 1 && dom <= 31);
    ck_assert(isnan(promql_fn_time(PROMQL_FN_RATE, 0)));
}
END_TEST

/* ---- aggregation across series ------------------------------------------------------------ */

static double aggregate(promql_aggregate_op_t op, const double *v, size_t n)
{
    promql_aggregate_acc_t acc;
    promql_aggregate_init(op, &acc, v[0]);
    for (size_t i = 1; i < n; i++)
        promql_aggregate_add(op, &acc, v[i]);
    return promql_aggregate_result(op, &acc);
}

START_TEST(test_aggregate_corpus)
{
    /* aggregators.test: http_requests at 50m (10 steps of 10k per series). */
    static const double api_canary[] = {300, 400}, api_prod[] = {100, 200};
    ck_assert_double_eq(aggregate(PROMQL_AGG_SUM, api_canary, 2), 700);
    ck_assert_double_eq(aggregate(PROMQL_AGG_SUM, api_prod, 2), 300);
    ck_assert_double_eq(aggregate(PROMQL_AGG_AVG, api_canary, 2), 350);
    ck_assert_double_eq(aggregate(PROMQL_AGG_AVG, api_prod, 2), 150);
    ck_assert_double_eq(aggregate(PROMQL_AGG_COUNT, api_canary, 2), 2);
    static const double instance0[] = {100, 300, 500, 700};
    assert_near(aggregate(PROMQL_AGG_STDDEV, instance0, 4), 223.60679774998, 1e-12);
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDVAR, instance0, 4), 50000);
    /* 0+1.33x10 three times: 13.3 each, exactly 0. */
    static const double same[] = {13.3, 13.3, 13.3};
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDDEV, same, 3), 0);
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDVAR, same, 3), 0);
    /* stddev of 1 2 -> 0.5; stdvar 0.25; one value -> 0. */
    static const double one_two[] = {1, 2};
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDDEV, one_two, 2), 0.5);
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDVAR, one_two, 2), 0.25);
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDDEV, one_two, 1), 0);
    /* NaN or Inf anywhere: NaN, whether first or later. */
    static const double nan_last[] = {1, 2, NAN}, nan_first[] = {NAN, 1, 2};
    static const double inf_last[] = {1, 2, INFINITY}, inf_first[] = {INFINITY, 1, 2};
    ck_assert(isnan(aggregate(PROMQL_AGG_STDDEV, nan_last, 3)));
    ck_assert(isnan(aggregate(PROMQL_AGG_STDDEV, nan_first, 3)));
    ck_assert(isnan(aggregate(PROMQL_AGG_STDDEV, nan_first, 1)));
    ck_assert(isnan(aggregate(PROMQL_AGG_STDVAR, inf_last, 3)));
    ck_assert(isnan(aggregate(PROMQL_AGG_STDDEV, inf_first, 3)));
    ck_assert(isnan(aggregate(PROMQL_AGG_STDDEV, inf_first, 1)));
    /* avg of twelve 52s is exactly 52, as is any prefix. */
    double fifty_two[12];
    for (size_t i = 0; i < 12; i++)
        fifty_two[i] = 52;
    for (size_t n = 1; n <= 12; n++)
        ck_assert_double_eq(aggregate(PROMQL_AGG_AVG, fifty_two, n), 52);
    /* avg(request_duration_seconds_bucket{le="+Inf"}) - avg(...{le="0.2"}) at 50m = 15. */
    static const double le_inf[] = {40, 60, 60, 90}, le_02[] = {30, 50, 40, 70};
    ck_assert_double_eq(aggregate(PROMQL_AGG_AVG, le_inf, 4) - aggregate(PROMQL_AGG_AVG, le_02, 4),
                        15);
}
END_TEST

START_TEST(test_aggregate_edges)
{
    /* avg survives an overflowing sum by switching to the incremental mean. */
    static const double huge[] = {1e308, 1e308, 1e308};
    assert_near(aggregate(PROMQL_AGG_AVG, huge, 3), 1e308, 1e-15);
    ck_assert_double_eq(aggregate(PROMQL_AGG_SUM, huge, 3), INFINITY);
    static const double cancel[] = {1, 1e100, 1, -1e100};
    ck_assert_double_eq(aggregate(PROMQL_AGG_SUM, cancel, 4), 2);
    ck_assert_double_eq(aggregate(PROMQL_AGG_AVG, cancel, 4), 0.5);
    static const double inf_nan[] = {INFINITY, -INFINITY};
    ck_assert(isnan(aggregate(PROMQL_AGG_SUM, inf_nan, 2)));
    ck_assert(isnan(aggregate(PROMQL_AGG_AVG, inf_nan, 2)));
    /* min/max: a NaN so far is replaced, a later NaN is ignored; all NaN gives NaN. */
    static const double mixed[] = {NAN, 3, NAN, -2, 5};
    ck_assert_double_eq(aggregate(PROMQL_AGG_MIN, mixed, 5), -2);
    ck_assert_double_eq(aggregate(PROMQL_AGG_MAX, mixed, 5), 5);
    ck_assert(isnan(aggregate(PROMQL_AGG_MAX, mixed, 1)));
    static const double nans[] = {NAN, NAN};
    ck_assert(isnan(aggregate(PROMQL_AGG_MIN, nans, 2)));
    ck_assert_double_eq(aggregate(PROMQL_AGG_GROUP, mixed, 5), 1);
    ck_assert_double_eq(aggregate(PROMQL_AGG_COUNT, mixed, 5), 5);
    static const double neg[] = {-1, -3};
    ck_assert_double_eq(aggregate(PROMQL_AGG_MAX, neg, 2), -1);
    ck_assert_double_eq(aggregate(PROMQL_AGG_AVG, neg, 2), -2);
    ck_assert_double_eq(aggregate(PROMQL_AGG_STDVAR, neg, 2), 1);
}
END_TEST

static Suite *functions_suite(void)
{
    Suite *s = suite_create("query_promql_functions");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, test_kahan);
    tcase_add_test(tc, test_increase_corpus);
    tcase_add_test(tc, test_rate_corpus);
    tcase_add_test(tc, test_rate_zero_cutoff);
    tcase_add_test(tc, test_delta_corpus);
    tcase_add_test(tc, test_rate_edges);
    tcase_add_test(tc, test_irate_idelta_corpus);
    tcase_add_test(tc, test_irate_edges);
    tcase_add_test(tc, test_deriv_predict_corpus);
    tcase_add_test(tc, test_deriv_edges);
    tcase_add_test(tc, test_resets_changes_corpus);
    tcase_add_test(tc, test_avg_over_time_corpus);
    tcase_add_test(tc, test_avg_over_time_extremes);
    tcase_add_test(tc, test_sum_over_time_dense);
    tcase_add_test(tc, test_stddev_stdvar_over_time);
    tcase_add_test(tc, test_min_max_first_last_present);
    tcase_add_test(tc, test_ts_of_over_time);
    tcase_add_test(tc, test_mad_quantile_over_time);
    tcase_add_test(tc, test_over_time_empty_and_unknown);
    tcase_add_test(tc, test_double_exponential_smoothing);
    tcase_add_test(tc, test_quantile);
    tcase_add_test(tc, test_bucket_quantile_corpus);
    tcase_add_test(tc, test_bucket_quantile_monotonicity);
    tcase_add_test(tc, test_bucket_quantile_edges);
    tcase_add_test(tc, test_bucket_fraction_corpus);
    tcase_add_test(tc, test_math_corpus);
    tcase_add_test(tc, test_round);
    tcase_add_test(tc, test_calendar);
    tcase_add_test(tc, test_aggregate_corpus);
    tcase_add_test(tc, test_aggregate_edges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(functions_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
