/*
 * query/promql_functions.h: the numeric kernels of PromQL's functions and aggregations,
 * internal to query/. Pure functions over arrays: no labels, no AST, no allocation unless
 * stated, so each is unit-tested on its own (tests/unit/check_query_promql_functions.c) and the
 * evaluator (promql_eval.c) only gathers the inputs and places the outputs.
 *
 * Conventions:
 *   - A window is the points of one series with range_start < t <= range_end (milliseconds),
 *     in time order, stale markers already removed; range_start and range_end are the
 *     window's bounds as Prometheus computes them (eval time - offset - range, eval time -
 *     offset).
 *   - A kernel that returns bool returns false when the function yields no sample for this
 *     series (too few points), and true with *out set otherwise.
 *   - Arithmetic follows Prometheus 3.x (promql/functions.go, promql/quantile.go) in the order
 *     of its operations, so results agree to the last bits where the tests compare them;
 *     sums use Kahan compensation where Prometheus does.
 */
#ifndef CAIRN_QUERY_PROMQL_FUNCTIONS_H
#define CAIRN_QUERY_PROMQL_FUNCTIONS_H

#include "query/promql_ast.h"

/* Kahan-Babuska summation, as Prometheus's kahansum.Inc. */
typedef struct promql_kahan {
    double sum, c;
} promql_kahan_t;

void promql_kahan_add(promql_kahan_t *k, double v);
double promql_kahan_value(const promql_kahan_t *k); /* sum + c, with Prometheus's Inf rule */

/* rate (is_counter, is_rate), increase (is_counter), delta (neither): extrapolatedRate. */
bool promql_fn_extrapolated_rate(const promql_point_t *pts, size_t n, int64_t range_start,
                                 int64_t range_end, bool is_counter, bool is_rate, double *out);
/* irate (is_rate) and idelta: the last two points. */
bool promql_fn_instant_value(const promql_point_t *pts, size_t n, bool is_rate, double *out);
/* deriv: least-squares slope per second (times relative to the first point, as Prometheus). */
bool promql_fn_deriv(const promql_point_t *pts, size_t n, double *out);
/* predict_linear(v[range], duration_s) evaluated at eval_t (ms). */
bool promql_fn_predict_linear(const promql_point_t *pts, size_t n, int64_t eval_t,
                              double duration_s, double *out);
/* The *_over_time family and changes/resets over one window: AVG, MIN, MAX, SUM, COUNT,
 * STDDEV, STDVAR, LAST, FIRST, PRESENT, MAD (needs scratch of n doubles), CHANGES, RESETS,
 * TS_OF_FIRST/LAST/MIN/MAX (results in seconds). scratch may be NULL except for MAD. */
bool promql_fn_over_time(promql_function_id_t id, const promql_point_t *pts, size_t n,
                         double *scratch, double *out);
/* quantile_over_time(q, v[range]); scratch holds n doubles. */
bool promql_fn_quantile_over_time(double q, const promql_point_t *pts, size_t n, double *scratch,
                                  double *out);
/* double_exponential_smoothing(v[range], sf, tf) (the caller checks 0 < sf, tf < 1). */
bool promql_fn_double_exponential_smoothing(const promql_point_t *pts, size_t n, double sf,
                                            double tf, double *out);

/* The q-quantile of values (n >= 1), as Prometheus's quantile(): sorts values in place;
 * q < 0 gives -Inf, q > 1 +Inf, NaN q gives NaN. Used by quantile_over_time and the quantile
 * aggregation. */
double promql_quantile(double q, double *values, size_t n);

/* Classic histogram buckets of one group (one series per `le`). */
typedef struct promql_bucket {
    double upper; /* le, parsed */
    double count;
} promql_bucket_t;

/* histogram_quantile on classic buckets (bucketQuantile): sorts and merges the buckets in
 * place. *forced_monotonic is set when counts had to be forced monotonic (the caller adds
 * Prometheus's info annotation). */
double promql_bucket_quantile(double q, promql_bucket_t *buckets, size_t n, bool *forced_monotonic);
/* What histogram_quantile had to fix in the bucket counts (Prometheus 3.x reports the forced
 * monotonicity as an info annotation with the bounds and the largest decrease). */
typedef struct promql_bucket_fix {
    bool forced_monotonic; /* a real decrease was removed */
    bool fixed_precision;  /* a difference within 1e-12 (relative) was ignored silently */
    double min_bucket;     /* lowest `le` whose count was raised (+Inf if none) */
    double max_bucket;     /* highest such `le` (-Inf if none) */
    double max_diff;       /* largest decrease removed (0 if none) */
} promql_bucket_fix_t;

/* promql_bucket_quantile with the details of the fix; fix may be NULL. When the result is
 * decided before the counts are looked at (NaN or out-of-range q, no +Inf bucket, n == 0),
 * *fix is all false and zero. */
double promql_bucket_quantile_fix(double q, promql_bucket_t *buckets, size_t n,
                                  promql_bucket_fix_t *fix);
/* histogram_fraction(lower, upper, ...) on classic buckets (BucketFraction, Prometheus 3.x):
 * sorts and merges the buckets in place; the counts are not forced monotonic, so
 * *forced_monotonic (if not NULL) is always set to false. NaN when there is no +Inf bucket,
 * the total count is 0, or a bound is NaN; 0 when lower >= upper. */
double promql_bucket_fraction(double lower, double upper, promql_bucket_t *buckets, size_t n,
                              bool *forced_monotonic);

/* One-argument math: ABS CEIL FLOOR EXP SQRT LN LOG2 LOG10 SGN DEG RAD and the trig and
 * hyperbolic functions. */
double promql_fn_math(promql_function_id_t id, double v);
/* round(v, to_nearest) as Prometheus rounds (half up, via 1/to_nearest). */
double promql_fn_round(double v, double to_nearest);
/* Calendar functions on a unix time in seconds (UTC): DAY_OF_MONTH DAY_OF_WEEK DAY_OF_YEAR
 * DAYS_IN_MONTH HOUR MINUTE MONTH YEAR. */
double promql_fn_time(promql_function_id_t id, double t_seconds);

/* Aggregation across series at one step, mirroring Prometheus's incremental formulas
 * (engine.go aggregation): SUM (Kahan), AVG (Kahan sum, switching to an incremental mean once
 * the sum would overflow), COUNT, MIN and MAX (a NaN is replaced by any later value), GROUP,
 * STDDEV and STDVAR (Welford's running mean; NaN when the first value is NaN or +-Inf).
 * Start a group with promql_aggregate_init on its first value, feed every further value in
 * series order with promql_aggregate_add, read promql_aggregate_result. QUANTILE uses
 * promql_quantile; TOPK, BOTTOMK, COUNT_VALUES, LIMITK and LIMIT_RATIO are the evaluator's. */
typedef struct promql_aggregate_acc {
    double value;          /* running sum, min, max or stdvar's sum of squared deviations */
    double mean;           /* running mean (AVG after the switch, STDDEV, STDVAR) */
    double kahan_c;        /* Kahan compensation (SUM, AVG) */
    double count;          /* values seen */
    bool incremental_mean; /* AVG switched to the incremental mean */
} promql_aggregate_acc_t;

void promql_aggregate_init(promql_aggregate_op_t op, promql_aggregate_acc_t *acc, double v);
void promql_aggregate_add(promql_aggregate_op_t op, promql_aggregate_acc_t *acc, double v);
double promql_aggregate_result(promql_aggregate_op_t op, const promql_aggregate_acc_t *acc);

#endif /* CAIRN_QUERY_PROMQL_FUNCTIONS_H */
