/*
 * query/promql_functions.c: the numeric kernels of PromQL's functions and aggregations
 * (contract in promql_functions.h).
 *
 * Every kernel reproduces Prometheus 3.x's arithmetic in the order Prometheus performs it,
 * because the conformance tests compare results to the last bits: a sum regrouped, a product
 * hoisted or a division done in another place changes the last digit. Comments therefore
 * name the order where it matters. No kernel allocates; the ones that sort use the caller's
 * scratch or sort the caller's array in place.
 *
 * Floating-point contraction (fused multiply-add) is not used: Prometheus's amd64 builds do
 * not fuse, and GCC does not fuse on x86-64 at the default -march.
 *
 * Thread safety: all functions are pure; they may run concurrently on different inputs.
 */
#include "query/promql_functions.h"

#include <math.h>
#include <stdlib.h>

#define PROMQL_PI 3.14159265358979323846264338327950288 /* Go's math.Pi, rounded to double */

/* ---- Kahan-Babuska (Neumaier) summation --------------------------------------------------- */

/* One step of Neumaier's summation, as Prometheus's kahansum.Inc: the compensation collects
 * the low-order bits lost by each addition; once the running sum is infinite the compensation
 * is meaningless and reset to 0. */
static void kahan_inc(double inc, double *sum, double *c)
{
    double t = *sum + inc;
    if (isinf(t))
        *c = 0;
    else if (fabs(*sum) >= fabs(inc))
        *c += (*sum - t) + inc;
    else
        *c += (inc - t) + *sum;
    *sum = t;
}

void promql_kahan_add(promql_kahan_t *k, double v)
{
    kahan_inc(v, &k->sum, &k->c);
}

double promql_kahan_value(const promql_kahan_t *k)
{
    if (isinf(k->sum))
        return k->sum;
    return k->sum + k->c;
}

/* ---- rate, increase, delta, irate, idelta ------------------------------------------------- */

/* A duration in milliseconds as Go's time.Duration.Seconds() gives it: whole seconds plus the
 * nanosecond remainder divided by 1e9 (for a millisecond-granular range, exact). */
static double range_seconds(int64_t range_ms)
{
    int64_t whole = range_ms / 1000;
    int64_t rest_ns = (range_ms % 1000) * 1000000;
    return (double)whole + (double)rest_ns / 1e9;
}

bool promql_fn_extrapolated_rate(const promql_point_t *pts, size_t n, int64_t range_start,
                                 int64_t range_end, bool is_counter, bool is_rate, double *out)
{
    if (n < 2)
        return false;
    int64_t first_t = pts[0].t, last_t = pts[n - 1].t;
    double result = pts[n - 1].v - pts[0].v;
    if (is_counter) {
        /* A counter reset: the value before it was lost from the difference. */
        for (size_t i = 1; i < n; i++)
            if (pts[i].v < pts[i - 1].v)
                result += pts[i - 1].v;
    }

    double duration_to_start = (double)(first_t - range_start) / 1000;
    double duration_to_end = (double)(range_end - last_t) / 1000;
    double sampled_interval = (double)(last_t - first_t) / 1000;
    double average_interval = sampled_interval / (double)(n - 1);

    /* Extrapolate to a boundary only when a sample is missing there by at most 10% more than
     * the average spacing; otherwise the series starts or ends inside the range, half a
     * spacing beyond its outermost sample. */
    double threshold = average_interval * 1.1;
    if (duration_to_start >= threshold)
        duration_to_start = average_interval / 2;
    if (is_counter) {
        /* Counters start at zero: do not extrapolate below it. */
        double duration_to_zero = duration_to_start;
        if (result > 0 && pts[0].v >= 0)
            duration_to_zero = sampled_interval * (pts[0].v / result);
        if (duration_to_zero < duration_to_start)
            duration_to_start = duration_to_zero;
    }
    if (duration_to_end >= threshold)
        duration_to_end = average_interval / 2;

    double factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if (is_rate)
        factor /= range_seconds(range_end - range_start);
    *out = result * factor;
    return true;
}

bool promql_fn_instant_value(const promql_point_t *pts, size_t n, bool is_rate, double *out)
{
    if (n < 2)
        return false;
    const promql_point_t *prev = &pts[n - 2], *last = &pts[n - 1];
    int64_t interval = last->t - prev->t;
    if (interval == 0)
        return false;
    double result = last->v;
    /* irate after a counter reset uses the last value alone; a NaN compares false and so
     * takes the difference. */
    if (!is_rate || !(last->v < prev->v))
        result = last->v - prev->v;
    if (is_rate)
        result /= (double)interval / 1000;
    *out = result;
    return true;
}

/* ---- deriv, predict_linear ---------------------------------------------------------------- */

/* Least-squares fit of the points with x = (t - intercept_t) seconds; the sums are Kahan
 * compensated and the compensation is added back plainly before the closed-form solution. A
 * constant series has slope 0 and its value as intercept (NaN for both if that value is
 * infinite). */
static void linear_regression(const promql_point_t *pts, size_t n, int64_t intercept_t,
                              double *slope, double *intercept)
{
    double count = 0;
    double sum_x = 0, c_x = 0, sum_y = 0, c_y = 0;
    double sum_xy = 0, c_xy = 0, sum_x2 = 0, c_x2 = 0;
    double init_y = pts[0].v;
    bool const_y = true;
    for (size_t i = 0; i < n; i++) {
        double y = pts[i].v;
        if (const_y && i > 0 && y != init_y)
            const_y = false;
        count += 1.0;
        double x = (double)(pts[i].t - intercept_t) / 1e3;
        kahan_inc(x, &sum_x, &c_x);
        kahan_inc(y, &sum_y, &c_y);
        kahan_inc(x * y, &sum_xy, &c_xy);
        kahan_inc(x * x, &sum_x2, &c_x2);
    }
    if (const_y) {
        if (isinf(init_y)) {
            *slope = NAN;
            *intercept = NAN;
        } else {
            *slope = 0;
            *intercept = init_y;
        }
        return;
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;

    double cov_xy = sum_xy - sum_x * sum_y / count;
    double var_x = sum_x2 - sum_x * sum_x / count;
    *slope = cov_xy / var_x;
    *intercept = sum_y / count - *slope * sum_x / count;
}

bool promql_fn_deriv(const promql_point_t *pts, size_t n, double *out)
{
    if (n < 2)
        return false;
    /* Times relative to the first point keep x small (Prometheus issue 2674). */
    double slope, intercept;
    linear_regression(pts, n, pts[0].t, &slope, &intercept);
    *out = slope;
    return true;
}

bool promql_fn_predict_linear(const promql_point_t *pts, size_t n, int64_t eval_t,
                              double duration_s, double *out)
{
    if (n < 2)
        return false;
    double slope, intercept;
    linear_regression(pts, n, eval_t, &slope, &intercept);
    *out = slope * duration_s + intercept;
    return true;
}

/* ---- *_over_time -------------------------------------------------------------------------- */

/* avg_over_time: the Kahan sum divided by the count, unless the sum would overflow; from that
 * point on an incremental mean (scaled by (count-1)/count at each step) with the
 * compensation carried along, so large finite values still average to a finite result. */
static double avg_over_time(const promql_point_t *pts, size_t n)
{
    double sum = pts[0].v, count = 1, mean = 0, c = 0;
    bool incremental = false;
    for (size_t i = 1; i < n; i++) {
        double v = pts[i].v;
        count = (double)(i + 1);
        if (!incremental) {
            double new_sum = sum, new_c = c;
            kahan_inc(v, &new_sum, &new_c);
            if (!isinf(new_sum)) {
                sum = new_sum;
                c = new_c;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1);
            c /= (count - 1);
        }
        double q = (count - 1) / count;
        mean = q * mean;
        c = q * c;
        kahan_inc(v / count, &mean, &c);
    }
    if (incremental)
        return mean + c;
    return sum / count + c / count;
}

/* stddev/stdvar_over_time: Welford's algorithm with Kahan-compensated running mean and sum of
 * squared deviations. */
static double variance_over_time(const promql_point_t *pts, size_t n)
{
    double count = 0, mean = 0, c_mean = 0, aux = 0, c_aux = 0;
    for (size_t i = 0; i < n; i++) {
        double v = pts[i].v;
        count++;
        double delta = v - (mean + c_mean);
        kahan_inc(delta / count, &mean, &c_mean);
        kahan_inc(delta * (v - (mean + c_mean)), &aux, &c_aux);
    }
    return (aux + c_aux) / count;
}

/* min/max_over_time and ts_of_min/max_over_time: a NaN so far is replaced by any value; the
 * ts_of_ variants (or_equal) report the last point holding the extreme. */
static double compare_over_time(const promql_point_t *pts, size_t n, bool want_max, bool or_equal,
                                int64_t *t_out)
{
    double best = pts[0].v;
    int64_t best_t = pts[0].t;
    for (size_t i = 0; i < n; i++) {
        double v = pts[i].v;
        bool better;
        if (want_max)
            better = or_equal ? v >= best : v > best;
        else
            better = or_equal ? v <= best : v < best;
        if (better || isnan(best)) {
            best = v;
            best_t = pts[i].t;
        }
    }
    *t_out = best_t;
    return best;
}

/* median absolute deviation: the median of |v - median(v)|. A NaN anywhere makes the result
 * NaN (Prometheus 3.x; interpolating the sorted deviations would otherwise hide it). */
static double mad_over_time(const promql_point_t *pts, size_t n, double *scratch)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(pts[i].v))
            return NAN;
        scratch[i] = pts[i].v;
    }
    double median = promql_quantile(0.5, scratch, n);
    for (size_t i = 0; i < n; i++)
        scratch[i] = fabs(pts[i].v - median);
    return promql_quantile(0.5, scratch, n);
}

bool promql_fn_over_time(promql_function_id_t id, const promql_point_t *pts, size_t n,
                         double *scratch, double *out)
{
    if (n == 0)
        return false;
    int64_t t;
    switch (id) {
    case PROMQL_FN_AVG_OVER_TIME: *out = avg_over_time(pts, n); return true;
    case PROMQL_FN_SUM_OVER_TIME: {
        promql_kahan_t k = {0, 0};
        for (size_t i = 0; i < n; i++)
            promql_kahan_add(&k, pts[i].v);
        *out = promql_kahan_value(&k);
        return true;
    }
    case PROMQL_FN_COUNT_OVER_TIME: *out = (double)n; return true;
    case PROMQL_FN_MIN_OVER_TIME: *out = compare_over_time(pts, n, false, false, &t); return true;
    case PROMQL_FN_MAX_OVER_TIME: *out = compare_over_time(pts, n, true, false, &t); return true;
    case PROMQL_FN_TS_OF_MIN_OVER_TIME:
        compare_over_time(pts, n, false, true, &t);
        *out = (double)t / 1000;
        return true;
    case PROMQL_FN_TS_OF_MAX_OVER_TIME:
        compare_over_time(pts, n, true, true, &t);
        *out = (double)t / 1000;
        return true;
    case PROMQL_FN_STDVAR_OVER_TIME: *out = variance_over_time(pts, n); return true;
    case PROMQL_FN_STDDEV_OVER_TIME: *out = sqrt(variance_over_time(pts, n)); return true;
    case PROMQL_FN_FIRST_OVER_TIME: *out = pts[0].v; return true;
    case PROMQL_FN_LAST_OVER_TIME: *out = pts[n - 1].v; return true;
    case PROMQL_FN_TS_OF_FIRST_OVER_TIME: *out = (double)pts[0].t / 1000; return true;
    case PROMQL_FN_TS_OF_LAST_OVER_TIME: *out = (double)pts[n - 1].t / 1000; return true;
    case PROMQL_FN_PRESENT_OVER_TIME: *out = 1; return true;
    case PROMQL_FN_MAD_OVER_TIME:
        if (scratch == NULL)
            return false;
        *out = mad_over_time(pts, n, scratch);
        return true;
    case PROMQL_FN_CHANGES: {
        size_t changes = 0;
        for (size_t i = 1; i < n; i++) {
            double prev = pts[i - 1].v, cur = pts[i].v;
            /* Two NaNs in a row are no change. */
            if (cur != prev && !(isnan(cur) && isnan(prev)))
                changes++;
        }
        *out = (double)changes;
        return true;
    }
    case PROMQL_FN_RESETS: {
        size_t resets = 0;
        for (size_t i = 1; i < n; i++)
            if (pts[i].v < pts[i - 1].v)
                resets++;
        *out = (double)resets;
        return true;
    }
    default: return false;
    }
}

bool promql_fn_quantile_over_time(double q, const promql_point_t *pts, size_t n, double *scratch,
                                  double *out)
{
    if (n == 0 || scratch == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        scratch[i] = pts[i].v;
    *out = promql_quantile(q, scratch, n);
    return true;
}

bool promql_fn_double_exponential_smoothing(const promql_point_t *pts, size_t n, double sf,
                                            double tf, double *out)
{
    if (n < 2)
        return false;
    /* s1 is the smoothed value, s0 the previous one, b the trend; the first step keeps the
     * initial trend (the difference of the first two points). */
    double s0 = 0, s1 = pts[0].v, b = pts[1].v - pts[0].v;
    for (size_t i = 1; i < n; i++) {
        double x = sf * pts[i].v;
        if (i > 1) {
            double trend = tf * (s1 - s0);
            double kept = (1 - tf) * b;
            b = trend + kept;
        }
        double y = (1 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    *out = s1;
    return true;
}

/* ---- quantile ----------------------------------------------------------------------------- */

/* Ascending with NaN first, the order Prometheus's vectorByValueHeap sorts into. */
static int compare_nan_first(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x))
        return isnan(y) ? 0 : -1;
    if (isnan(y))
        return 1;
    return (x > y) - (x < y);
}

double promql_quantile(double q, double *values, size_t n)
{
    if (n == 0 || isnan(q))
        return NAN;
    if (q < 0)
        return -INFINITY;
    if (q > 1)
        return INFINITY;
    qsort(values, n, sizeof(double), compare_nan_first);
    double count = (double)n;
    /* Between two values, the weighted average of both. */
    double rank = q * (count - 1);
    double lower = fmax(0, floor(rank));
    double upper = fmin(count - 1, lower + 1);
    double weight = rank - floor(rank);
    return values[(size_t)lower] * (1 - weight) + values[(size_t)upper] * weight;
}

/* ---- classic histogram buckets ------------------------------------------------------------ */

/* By upper bound ascending; a NaN bound (never produced by a parsed `le` Prometheus accepts in
 * practice) sorts first so the +Inf check still sees the highest bound. */
static int compare_bucket(const void *a, const void *b)
{
    const promql_bucket_t *x = a, *y = b;
    return compare_nan_first(&x->upper, &y->upper);
}

/* Merges sorted buckets with equal upper bounds (adding their counts); returns the new
 * number of buckets. */
static size_t buckets_merge(promql_bucket_t *buckets, size_t n)
{
    size_t out = 0;
    for (size_t i = 1; i < n; i++) {
        if (buckets[i].upper == buckets[out].upper) {
            buckets[out].count += buckets[i].count;
        } else {
            out++;
            buckets[out] = buckets[i];
        }
    }
    return out + 1;
}

/* util/almost.Equal: a relative difference below epsilon (and absolute near zero). */
static bool almost_equal(double a, double b, double epsilon)
{
    static const double min_normal = 2.2250738585072014e-308; /* 0x0010000000000000 */
    if (isnan(a) && isnan(b))
        return true;
    if (a == b)
        return true;
    double abs_sum = fabs(a) + fabs(b);
    double diff = fabs(a - b);
    if (a == 0 || b == 0 || abs_sum < min_normal)
        return diff < epsilon * min_normal;
    return diff / fmin(abs_sum, 1.7976931348623157e308) < epsilon;
}

/* Ignores differences within tolerance (either way, silently) and then removes decreases
 * against the last accepted count, which moves only on a real increase. */
static void buckets_ensure_monotonic(promql_bucket_t *buckets, size_t n, double tolerance,
                                     promql_bucket_fix_t *fix)
{
    fix->min_bucket = INFINITY;
    fix->max_bucket = -INFINITY;
    double prev = buckets[0].count;
    for (size_t i = 1; i < n; i++) {
        double cur = buckets[i].count;
        if (cur == prev)
            continue;
        if (almost_equal(prev, cur, tolerance)) {
            buckets[i].count = prev;
            fix->fixed_precision = true;
            continue;
        }
        if (cur < prev) {
            buckets[i].count = prev;
            fix->forced_monotonic = true;
            if (buckets[i].upper < fix->min_bucket)
                fix->min_bucket = buckets[i].upper;
            if (buckets[i].upper > fix->max_bucket)
                fix->max_bucket = buckets[i].upper;
            if (prev - cur > fix->max_diff)
                fix->max_diff = prev - cur;
            continue;
        }
        prev = cur;
    }
}

double promql_bucket_quantile_fix(double q, promql_bucket_t *buckets, size_t n,
                                  promql_bucket_fix_t *fix_out)
{
    promql_bucket_fix_t fix = {false, false, 0, 0, 0};
    double result;
    if (isnan(q)) {
        result = NAN;
        goto done;
    }
    if (q < 0) {
        result = -INFINITY;
        goto done;
    }
    if (q > 1) {
        result = INFINITY;
        goto done;
    }
    if (n == 0) {
        result = NAN;
        goto done;
    }
    qsort(buckets, n, sizeof(*buckets), compare_bucket);
    if (buckets[n - 1].upper != INFINITY) {
        result = NAN;
        goto done;
    }
    n = buckets_merge(buckets, n);
    buckets_ensure_monotonic(buckets, n, 1e-12, &fix);

    if (n < 2 || buckets[n - 1].count == 0) {
        result = NAN;
        goto done;
    }
    double rank = q * buckets[n - 1].count;
    /* The first bucket (the +Inf one excluded) whose count reaches the rank. */
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (buckets[mid].count >= rank)
            hi = mid;
        else
            lo = mid + 1;
    }
    size_t b = lo;
    if (b == n - 1) {
        result = buckets[n - 2].upper;
        goto done;
    }
    if (b == 0 && buckets[0].upper <= 0) {
        result = buckets[0].upper;
        goto done;
    }
    double start = 0, end = buckets[b].upper, count = buckets[b].count;
    if (b > 0) {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    result = start + (end - start) * (rank / count);
done:
    if (fix_out != NULL)
        *fix_out = fix;
    return result;
}

double promql_bucket_quantile(double q, promql_bucket_t *buckets, size_t n, bool *forced_monotonic)
{
    promql_bucket_fix_t fix;
    double result = promql_bucket_quantile_fix(q, buckets, n, &fix);
    if (forced_monotonic != NULL)
        *forced_monotonic = fix.forced_monotonic;
    return result;
}

double promql_bucket_fraction(double lower, double upper, promql_bucket_t *buckets, size_t n,
                              bool *forced_monotonic)
{
    if (forced_monotonic != NULL)
        *forced_monotonic = false;
    if (n == 0)
        return NAN;
    qsort(buckets, n, sizeof(*buckets), compare_bucket);
    if (buckets[n - 1].upper != INFINITY)
        return NAN;
    n = buckets_merge(buckets, n);

    double total = buckets[n - 1].count;
    if (total == 0 || isnan(lower) || isnan(upper))
        return NAN;
    if (lower >= upper)
        return 0;

    /* Counts are cumulative: rank is the count below the current bucket. The first bucket
     * starts at 0 when its bound is positive, else at -Inf (and then is never interpolated:
     * the rank at its upper bound is its count). */
    double rank = 0, lower_rank = 0, upper_rank = 0;
    bool lower_set = false, upper_set = false;
    double bucket_lower = buckets[0].upper <= 0 ? -INFINITY : 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            bucket_lower = buckets[i - 1].upper;
        double bucket_upper = buckets[i].upper, count = buckets[i].count;
        if (!lower_set && bucket_lower >= lower) {
            lower_rank = rank;
            lower_set = true;
        }
        if (!upper_set && bucket_lower >= upper) {
            upper_rank = rank;
            upper_set = true;
        }
        if (lower_set && upper_set)
            break;
        if (!lower_set && bucket_lower < lower && bucket_upper > lower) {
            if (isinf(bucket_lower))
                lower_rank = count;
            else
                lower_rank =
                    rank + (count - rank) * (lower - bucket_lower) / (bucket_upper - bucket_lower);
            lower_set = true;
        }
        if (!upper_set && bucket_lower < upper && bucket_upper > upper) {
            if (isinf(bucket_lower))
                upper_rank = count;
            else
                upper_rank =
                    rank + (count - rank) * (upper - bucket_lower) / (bucket_upper - bucket_lower);
            upper_set = true;
        }
        if (lower_set && upper_set)
            break;
        rank = count;
    }
    if (!lower_set || lower_rank > total)
        lower_rank = total;
    if (!upper_set || upper_rank > total)
        upper_rank = total;
    return (upper_rank - lower_rank) / total;
}

/* ---- math --------------------------------------------------------------------------------- */

double promql_fn_math(promql_function_id_t id, double v)
{
    switch (id) {
    case PROMQL_FN_ABS: return fabs(v);
    case PROMQL_FN_CEIL: return ceil(v);
    case PROMQL_FN_FLOOR: return floor(v);
    case PROMQL_FN_EXP: return exp(v);
    case PROMQL_FN_SQRT: return sqrt(v);
    case PROMQL_FN_LN: return log(v);
    case PROMQL_FN_LOG2: return log2(v);
    case PROMQL_FN_LOG10: return log10(v);
    case PROMQL_FN_SGN:
        /* NaN and signed zeros are returned unchanged. */
        if (v < 0)
            return -1;
        if (v > 0)
            return 1;
        return v;
    case PROMQL_FN_DEG: return v * 180 / PROMQL_PI;
    case PROMQL_FN_RAD: return v * PROMQL_PI / 180;
    case PROMQL_FN_SIN: return sin(v);
    case PROMQL_FN_COS: return cos(v);
    case PROMQL_FN_TAN: return tan(v);
    case PROMQL_FN_ASIN: return asin(v);
    case PROMQL_FN_ACOS: return acos(v);
    case PROMQL_FN_ATAN: return atan(v);
    case PROMQL_FN_SINH: return sinh(v);
    case PROMQL_FN_COSH: return cosh(v);
    case PROMQL_FN_TANH: return tanh(v);
    case PROMQL_FN_ASINH: return asinh(v);
    case PROMQL_FN_ACOSH: return acosh(v);
    case PROMQL_FN_ATANH: return atanh(v);
    default: return NAN;
    }
}

double promql_fn_round(double v, double to_nearest)
{
    /* The inverse rounds better than dividing by to_nearest (Prometheus's comment). */
    double inverse = 1.0 / to_nearest;
    return floor(v * inverse + 0.5) / inverse;
}

/* ---- calendar ----------------------------------------------------------------------------- */

/* Go's int64(f) on amd64: truncation toward zero; NaN and values outside int64 become
 * INT64_MIN (the "integer indefinite" of CVTTSD2SQ). */
static int64_t seconds_from_double(double t)
{
    if (isnan(t) || t >= 9223372036854775808.0 || t < -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)t;
}

/* Division rounding toward negative infinity. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's days_from_civil), valid for
 * every year an int64 of seconds reaches. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse: year, month (1-12) and day (1-31) of a day count since 1970-01-01. */
static void civil_from_days(int64_t days, int64_t *year, int64_t *month, int64_t *day)
{
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = yoe + era * 400 + (*month <= 2);
}

static bool is_leap_year(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

double promql_fn_time(promql_function_id_t id, double t_seconds)
{
    int64_t secs = seconds_from_double(t_seconds);
    int64_t days = floor_div(secs, 86400);
    int64_t second_of_day = secs % 86400; /* not secs - days * 86400: overflows near INT64_MIN */
    if (second_of_day < 0)
        second_of_day += 86400;
    int64_t year, month, day;
    civil_from_days(days, &year, &month, &day);
    switch (id) {
    case PROMQL_FN_YEAR: return (double)year;
    case PROMQL_FN_MONTH: return (double)month;
    case PROMQL_FN_DAY_OF_MONTH: return (double)day;
    case PROMQL_FN_DAY_OF_YEAR: return (double)(days - days_from_civil(year, 1, 1) + 1);
    case PROMQL_FN_DAY_OF_WEEK: {
        int64_t weekday = (days + 4) % 7; /* 1970-01-01 was a Thursday; Sunday is 0 */
        return (double)(weekday < 0 ? weekday + 7 : weekday);
    }
    case PROMQL_FN_DAYS_IN_MONTH: {
        static const int lengths[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (month == 2 && is_leap_year(year))
            return 29;
        return lengths[month - 1];
    }
    case PROMQL_FN_HOUR: return (double)(second_of_day / 3600);
    case PROMQL_FN_MINUTE: return (double)(second_of_day % 3600 / 60);
    default: return NAN;
    }
}

/* ---- aggregation across series ------------------------------------------------------------ */

void promql_aggregate_init(promql_aggregate_op_t op, promql_aggregate_acc_t *acc, double v)
{
    acc->value = v;
    acc->mean = v;
    acc->kahan_c = 0;
    acc->count = 1;
    acc->incremental_mean = false;
    switch (op) {
    case PROMQL_AGG_STDDEV:
    case PROMQL_AGG_STDVAR: acc->value = (isnan(v) || isinf(v)) ? NAN : 0; break;
    case PROMQL_AGG_GROUP: acc->value = 1; break;
    default: break;
    }
}

void promql_aggregate_add(promql_aggregate_op_t op, promql_aggregate_acc_t *acc, double v)
{
    switch (op) {
    case PROMQL_AGG_SUM:
        acc->count++;
        kahan_inc(v, &acc->value, &acc->kahan_c);
        break;
    case PROMQL_AGG_AVG: {
        acc->count++;
        if (!acc->incremental_mean) {
            double sum = acc->value, c = acc->kahan_c;
            kahan_inc(v, &sum, &c);
            if (!isinf(sum)) {
                acc->value = sum;
                acc->kahan_c = c;
                break;
            }
            /* The sum would overflow: continue with the incremental mean. */
            acc->incremental_mean = true;
            acc->mean = acc->value / (acc->count - 1);
            acc->kahan_c /= acc->count - 1;
        }
        double q = (acc->count - 1) / acc->count;
        acc->mean = q * acc->mean;
        acc->kahan_c = q * acc->kahan_c;
        kahan_inc(v / acc->count, &acc->mean, &acc->kahan_c);
        break;
    }
    case PROMQL_AGG_COUNT: acc->count++; break;
    case PROMQL_AGG_MAX:
        acc->count++;
        if (acc->value < v || isnan(acc->value))
            acc->value = v;
        break;
    case PROMQL_AGG_MIN:
        acc->count++;
        if (acc->value > v || isnan(acc->value))
            acc->value = v;
        break;
    case PROMQL_AGG_STDDEV:
    case PROMQL_AGG_STDVAR: {
        acc->count++;
        double delta = v - acc->mean;
        acc->mean += delta / acc->count;
        acc->value += delta * (v - acc->mean);
        break;
    }
    default: acc->count++; break;
    }
}

double promql_aggregate_result(promql_aggregate_op_t op, const promql_aggregate_acc_t *acc)
{
    switch (op) {
    case PROMQL_AGG_SUM: return acc->value + acc->kahan_c;
    case PROMQL_AGG_AVG:
        if (acc->incremental_mean)
            return acc->mean + acc->kahan_c;
        return acc->value / acc->count + acc->kahan_c / acc->count;
    case PROMQL_AGG_COUNT: return acc->count;
    case PROMQL_AGG_STDVAR: return acc->value / acc->count;
    case PROMQL_AGG_STDDEV: return sqrt(acc->value / acc->count);
    default: return acc->value;
    }
}
