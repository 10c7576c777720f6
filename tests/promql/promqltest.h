/*
 * tests/promql/promqltest.h: the test-script side of Cairn's promqltest runner: reading files
 * in Prometheus's promqltest format and judging a query's result against an eval's
 * expectations. The engine side (loading data into a TSDB, running queries, deciding skips)
 * lives in promqltest.c; keeping the two apart lets tests/unit/check_promqltest_format.c check
 * parsing and comparison with hand-written results, without an engine.
 *
 * The format (see ../shared/conformance/README.md and upstream's promqltest README): lines are
 * trimmed, `#` lines count as blank, and a blank line ends a command's block. Commands are
 * `load[_with_nhcb] <interval>` with series lines, `clear`, and `eval instant at <t> <query>` /
 * `eval range from <t> to <t> step <d> <query>` (and the older `eval_fail`, `eval_warn`,
 * `eval_info`, `eval_ordered`) with expect lines and expected series. Times are durations from
 * 0 (`50m`, `1h5m`, `10s53ms`; a plain number is seconds).
 *
 * Series lines read `metric{labels} <values>` with the expanding syntax: `a` one point,
 * `axN` N+1 points equal to a, `a+bxN` / `a-bxN` N+1 points stepping by b, `_` no point, `_xN`
 * N points without a sample, `stale` a staleness marker, `Inf`, `-Inf`, `NaN`, and native
 * histograms `{{...}}` (optionally `xN` or `+{{...}}xN`), which are not decoded: they only
 * mark the series (PROMQLTEST_VALUE_HISTOGRAM).
 *
 * Comparison follows upstream: floats are equal when within a relative 1e-6 (any NaN equals
 * any NaN, staleness markers included), label sets must be identical, order counts only for
 * `expect ordered`, range results must be sorted by labels, and instant-vector points must
 * carry the evaluation time. Annotations: with no warn/info expectation, annotations of that
 * kind are not checked; once one is given, each must match an annotation and every
 * annotation of that kind must match one; no_warn/no_info require none.
 */
#ifndef CAIRN_TESTS_PROMQLTEST_H
#define CAIRN_TESTS_PROMQLTEST_H

#include "common/common.h"
#include "query/query.h"

/* Staleness marker: the NaN Prometheus writes when a series disappears. */
#define PROMQLTEST_STALE_NAN_BITS 0x7ff0000000000002ULL
/* Relative tolerance of value comparisons (upstream promqltest's defaultEpsilon). */
#define PROMQLTEST_EPSILON 1e-6

typedef enum promqltest_value_kind {
    PROMQLTEST_VALUE_FLOAT,     /* v holds the value (a staleness marker is a float) */
    PROMQLTEST_VALUE_OMITTED,   /* `_`: no sample at this position */
    PROMQLTEST_VALUE_HISTOGRAM, /* a native histogram, not decoded */
} promqltest_value_kind_t;

typedef struct promqltest_value {
    promqltest_value_kind_t kind;
    double v;
} promqltest_value_t;

/* A series line: labels sorted by name (metric name as __name__, empty values dropped) and
 * the expanded values, one per position. */
typedef struct promqltest_series {
    label_list_t labels;        /* owned */
    promqltest_value_t *values; /* owned */
    size_t value_count;
    bool has_histogram; /* some value is a native histogram */
    unsigned line;      /* 1-based line in the file */
} promqltest_series_t;

/* One `expect <kind> [msg: text | regex: pattern]`. With neither, it matches anything. */
typedef struct promqltest_expect {
    char *text;  /* owned: the message or the pattern; NULL matches anything */
    void *regex; /* compiled pattern (pcre2_code), owned; NULL for msg: */
} promqltest_expect_t;

typedef struct promqltest_expects {
    promqltest_expect_t *items; /* owned */
    size_t count;
} promqltest_expects_t;

typedef struct promqltest_eval {
    char *query;                       /* owned */
    bool range;                        /* a range query; otherwise instant at start_ms */
    int64_t start_ms, end_ms, step_ms; /* instant: start == end, step 0 */

    bool fail;                       /* `expect fail` or eval_fail */
    promqltest_expects_t fail_match; /* at most one, the error text must match it */
    bool ordered;                    /* `expect ordered` or eval_ordered */
    promqltest_expects_t warns, infos;
    bool no_warn, no_info;
    bool require_warn, require_info; /* eval_warn / eval_info: at least one */

    bool expect_string; /* `expect string "..."` */
    char *string;       /* owned */

    bool range_vector; /* `expect range vector from .. to .. step ..`: instant query, matrix */
    int64_t rv_start_ms, rv_end_ms, rv_step_ms;

    bool expect_scalar; /* a bare number line */
    double scalar;

    promqltest_series_t *series; /* expected series, in file order; owned */
    size_t series_count;
    bool has_histogram; /* some expected value is a native histogram */
} promqltest_eval_t;

typedef enum promqltest_command_kind {
    PROMQLTEST_LOAD,
    PROMQLTEST_CLEAR,
    PROMQLTEST_EVAL,
} promqltest_command_kind_t;

typedef struct promqltest_command {
    promqltest_command_kind_t kind;
    unsigned line; /* 1-based */
    union {
        struct {
            int64_t interval_ms;
            bool with_nhcb;              /* load_with_nhcb */
            promqltest_series_t *series; /* owned; a label set given twice keeps the last */
            size_t series_count;
        } load;
        promqltest_eval_t eval;
    };
} promqltest_command_t;

typedef struct promqltest_script {
    promqltest_command_t *commands; /* owned */
    size_t count;
} promqltest_script_t;

/* Parses a whole file. Returns 0, or -EINVAL with "line N: <what is wrong>" in err (then *out
 * is empty). Free with promqltest_script_free. */
int promqltest_script_parse(const char *text, promqltest_script_t *out, cairn_error_t *err);
void promqltest_script_free(promqltest_script_t *script);

/* Parses one series line, `metric{labels} values...`. Returns 0 or -EINVAL with err set. */
int promqltest_series_parse(const char *line, promqltest_series_t *out, cairn_error_t *err);
void promqltest_series_free(promqltest_series_t *series);

/* Parses a duration from 0 as the format's times and steps use it. Returns 0 or -EINVAL. */
int promqltest_time_parse(const char *s, int64_t *out_ms, cairn_error_t *err);

/* Upstream's almost-equal: both NaN, identical, or within PROMQLTEST_EPSILON relatively. */
bool promqltest_float_equal(double a, double b);

/* Whether an expectation's message or pattern matches text. */
bool promqltest_expect_matches(const promqltest_expect_t *e, const char *text);

/* Judges result (of the eval's query evaluated at eval_time_ms, for instant evals) against the
 * eval. Returns true when it passes; otherwise appends an explanation (a reason line, then the
 * expected and the actual result) to why. */
bool promqltest_eval_check(const promqltest_eval_t *ev, const promql_result_t *result,
                           int64_t eval_time_ms, buf_t *why);

/* Appends `{a="b", c="d"}` (metric name first, as Prometheus prints a label set). */
void promqltest_labels_format(buf_t *out, const label_pair_t *labels, size_t count);
/* Appends a value as Go formats %v of a float64 ("1", "0.5", "1e+21", "NaN", "+Inf"). */
void promqltest_float_format(buf_t *out, double v);
/* Appends a readable rendering of a result (type, series and points, or the error), each line
 * starting with indent. Long results are cut short. */
void promqltest_result_format(buf_t *out, const promql_result_t *result, const char *indent);
/* Appends the expected result of an eval in the same layout. */
void promqltest_expected_format(buf_t *out, const promqltest_eval_t *ev, const char *indent);

#endif /* CAIRN_TESTS_PROMQLTEST_H */
