/*
 * query/promql_eval_call.c: function calls.
 *
 * Dispatch by promql_function_id_t:
 *   - range-vector functions (rate, *_over_time, ...): for each input series and step, the
 *     window of the matrix selector or subquery argument goes to a kernel of
 *     promql_functions.h; the output keeps the series' labels and drops the name at the end
 *     (except last_over_time and first_over_time);
 *   - instant-vector functions transform each point in place (math, clamp, round, calendar);
 *   - structural ones are here: label_replace/label_join (which merge series that end up with
 *     the same labels), absent/absent_over_time (labels from the equality matchers), sort*,
 *     timestamp, scalar, vector, time, start/end/step/range, histogram_quantile and
 *     histogram_fraction on classic buckets (grouped by all labels but `le`).
 * histogram_quantiles works on classic buckets too. Native-histogram functions
 * (histogram_count/sum/avg/stddev/stdvar) see only floats here and
 * return nothing; info() returns its input unchanged.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "query/promql_eval_internal.h"
#include "query/promql_functions.h"

static size_t step_index(const promql_eval_range_t *range, int64_t t)
{
    return (size_t)((t - range->start) / range->step);
}

static int64_t step_time(const promql_eval_range_t *range, size_t k)
{
    return range->start + (int64_t)k * range->step;
}

static bool node_is_range_arg(const promql_node_t *n)
{
    n = promql_unwrap_parens(n);
    return n->kind == PROMQL_NODE_MATRIX_SELECTOR || n->kind == PROMQL_NODE_SUBQUERY;
}

/* A label name as Prometheus 3.x accepts it: any non-empty valid UTF-8. */
static bool valid_label_name(const char *s)
{
    return *s && utf8_valid(s, strlen(s));
}

static const char *string_arg(const promql_node_t *node, size_t i)
{
    const promql_node_t *a = promql_unwrap_parens(node->call.args[i]);
    return a->kind == PROMQL_NODE_STRING ? a->string : "";
}

static double go_min(double a, double b)
{
    if (isnan(a) || isnan(b))
        return NAN;
    return a < b ? a : b;
}

static double go_max(double a, double b)
{
    if (isnan(a) || isnan(b))
        return NAN;
    return a > b ? a : b;
}

/* Removes series without points. */
static void compact_matrix(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m)
{
    size_t w = 0;
    for (size_t i = 0; i < m->count; i++) {
        if (m->series[i].count == 0) {
            promql_eval_release(ctx, m->series[i].points);
            continue;
        }
        m->series[w++] = m->series[i];
    }
    m->count = w;
}

/* ---------------------------------------------------------------------------------------------
 * absent labels
 */
static const promql_labels_t *absent_labels(promql_eval_ctx_t *ctx, const promql_node_t *arg)
{
    arg = promql_unwrap_parens(arg);
    if (arg->kind == PROMQL_NODE_MATRIX_SELECTOR)
        arg = arg->matrix.vector;
    if (arg->kind != PROMQL_NODE_VECTOR_SELECTOR)
        return ctx->empty_labels;
    promql_label_builder_t b = {.ctx = ctx};
    size_t n = arg->selector.matcher_count;
    const char **seen = cairn_calloc(n + 1, sizeof(*seen));
    size_t nseen = 0;
    for (size_t i = 0; i < n; i++) {
        const promql_matcher_t *m = &arg->selector.matchers[i];
        if (strcmp(m->name, "__name__") == 0)
            continue;
        bool has = false;
        for (size_t j = 0; j < nseen && !has; j++)
            has = strcmp(seen[j], m->name) == 0;
        if (m->type == TSDB_MATCH_EQUAL && !has) {
            promql_label_builder_set(&b, m->name, m->value);
            seen[nseen++] = m->name;
        } else {
            promql_label_builder_del(&b, m->name);
        }
    }
    cairn_free(seen);
    const promql_labels_t *r = promql_label_builder_intern(ctx, &b);
    promql_label_builder_free(&b);
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * Range-vector functions
 */
static bool keeps_name(promql_function_id_t id)
{
    return id == PROMQL_FN_LAST_OVER_TIME || id == PROMQL_FN_FIRST_OVER_TIME;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static promql_eval_value_t eval_range_function(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                               const promql_eval_range_t *range)
{
    promql_function_id_t id = node->call.func->id;
    size_t nargs = node->call.arg_count;
    size_t matrix_index = 0;
    for (size_t i = 0; i < nargs; i++) {
        if (node_is_range_arg(node->call.args[i])) {
            matrix_index = i;
            break;
        }
    }
    /* Scalar arguments first (they cannot fail halfway through a range argument). */
    double *scalars[4] = {NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < nargs && i < 4; i++)
        if (i != matrix_index)
            scalars[i] = promql_eval_scalar(ctx, node->call.args[i], range);
    const promql_node_t *marg = node->call.args[matrix_index];
    promql_range_arg_t a;
    promql_range_arg_init(ctx, &a, marg, range);

    promql_eval_value_t out = {.type = PROMQL_VALUE_VECTOR};
    promql_point_t *buf = NULL;
    size_t cap = 0;
    double *scratch = NULL;
    size_t scratch_cap = 0;
    bool drop = !keeps_name(id);
    uint8_t *present = NULL;
    if (id == PROMQL_FN_ABSENT_OVER_TIME)
        present = promql_eval_alloc(ctx, range->steps + 1);
    bool warned_quantile = false;

    for (size_t i = 0; i < a.series_count; i++) {
        promql_eval_check(ctx);
        promql_eval_series_t *s = NULL;
        for (size_t k = 0; k < range->steps; k++) {
            int64_t t = step_time(range, k);
            int64_t ws, we;
            size_t n = promql_range_arg_window(ctx, &a, i, t, &buf, &cap, &ws, &we);
            if (n == 0)
                continue;
            if (n > scratch_cap) {
                scratch_cap = n * 2;
                scratch = promql_eval_realloc(ctx, scratch, scratch_cap * sizeof(double));
            }
            double v = 0;
            bool ok = false;
            switch (id) {
            case PROMQL_FN_RATE:
                ok = promql_fn_extrapolated_rate(buf, n, ws, we, true, true, &v);
                break;
            case PROMQL_FN_INCREASE:
                ok = promql_fn_extrapolated_rate(buf, n, ws, we, true, false, &v);
                break;
            case PROMQL_FN_DELTA:
                ok = promql_fn_extrapolated_rate(buf, n, ws, we, false, false, &v);
                break;
            case PROMQL_FN_IRATE: ok = promql_fn_instant_value(buf, n, true, &v); break;
            case PROMQL_FN_IDELTA: ok = promql_fn_instant_value(buf, n, false, &v); break;
            case PROMQL_FN_DERIV: ok = promql_fn_deriv(buf, n, &v); break;
            case PROMQL_FN_PREDICT_LINEAR:
                ok = promql_fn_predict_linear(buf, n, t, scalars[1][k], &v);
                break;
            case PROMQL_FN_QUANTILE_OVER_TIME: {
                double q = scalars[0][k];
                if ((isnan(q) || q < 0 || q > 1) && !warned_quantile) {
                    char qs[32];
                    promql_eval_annotate(ctx, false, node->call.args[0]->pos,
                                         "PromQL warning: quantile value should be between 0 "
                                         "and 1, got %s",
                                         promql_format_float(q, qs, sizeof(qs)));
                }
                ok = promql_fn_quantile_over_time(q, buf, n, scratch, &v);
                break;
            }
            case PROMQL_FN_DOUBLE_EXPONENTIAL_SMOOTHING: {
                double sf = scalars[1][k], tf = scalars[2][k];
                if (!(sf > 0 && sf < 1))
                    promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                     "invalid smoothing factor. Expected: 0 < sf < 1, got: %f", sf);
                if (!(tf > 0 && tf < 1))
                    promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                     "invalid trend factor. Expected: 0 < tf < 1, got: %f", tf);
                ok = promql_fn_double_exponential_smoothing(buf, n, sf, tf, &v);
                break;
            }
            case PROMQL_FN_ABSENT_OVER_TIME:
                present[k] = 1;
                ok = false;
                break;
            default: ok = promql_fn_over_time(id, buf, n, scratch, &v); break;
            }
            if (!ok)
                continue;
            if (!s)
                s = promql_matrix_add(ctx, &out.m, promql_range_arg_labels(&a, i), drop);
            promql_series_push(ctx, s, t, v);
        }
        if (s && (id == PROMQL_FN_RATE || id == PROMQL_FN_INCREASE)) {
            const char *name = promql_labels_get(s->labels, "__name__");
            if (name && *name && !ends_with(name, "_total") && !ends_with(name, "_sum") &&
                !ends_with(name, "_count") && !ends_with(name, "_bucket"))
                promql_eval_annotate(ctx, true, marg->pos,
                                     "PromQL info: metric might not be a counter, name does not "
                                     "end in _total/_sum/_count/_bucket: \"%s\"",
                                     name);
        }
    }
    promql_eval_release(ctx, buf);
    promql_eval_release(ctx, scratch);
    for (size_t i = 0; i < 4; i++)
        promql_eval_release(ctx, scalars[i]);
    promql_range_arg_free(ctx, &a);

    if (id == PROMQL_FN_ABSENT_OVER_TIME) {
        promql_matrix_free(ctx, &out.m);
        promql_eval_series_t *s = NULL;
        for (size_t k = 0; k < range->steps; k++) {
            if (present[k])
                continue;
            if (!s)
                s = promql_matrix_add(ctx, &out.m, absent_labels(ctx, marg), true);
            promql_series_push(ctx, s, step_time(range, k), 1);
        }
        promql_eval_release(ctx, present);
    }
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * label_replace, label_join
 */

/* Appends the expansion of template for a match (Go's regexp.Expand rules: $name or ${name},
 * the longest name; numbers are groups; unknown or unmatched groups expand to nothing; $$ is
 * a dollar). */
static void expand_template(buf_t *out, const char *tmpl, const pcre2_code *re, const char *subject,
                            const PCRE2_SIZE *ovector, uint32_t pairs)
{
    const char *p = tmpl;
    while (*p) {
        if (*p != '$') {
            buf_append_char(out, *p++);
            continue;
        }
        const char *q = p + 1;
        if (*q == '$') {
            buf_append_char(out, '$');
            p = q + 1;
            continue;
        }
        const char *name = q, *name_end;
        bool braces = *q == '{';
        if (braces)
            name = q + 1;
        name_end = name;
        while (isalnum((unsigned char)*name_end) || *name_end == '_')
            name_end++;
        if (name_end == name || (braces && *name_end != '}')) {
            buf_append_char(out, '$'); /* malformed: a literal dollar */
            p = q;
            continue;
        }
        p = braces ? name_end + 1 : name_end;
        size_t len = (size_t)(name_end - name);
        char nm[128];
        if (len >= sizeof(nm))
            continue;
        memcpy(nm, name, len);
        nm[len] = '\0';
        long group = -1;
        bool numeric = true;
        for (size_t i = 0; i < len; i++)
            numeric = numeric && isdigit((unsigned char)nm[i]);
        if (numeric) {
            group = len > 9 ? -1 : strtol(nm, NULL, 10);
        } else {
            int g = pcre2_substring_number_from_name(re, (PCRE2_SPTR)nm);
            group = g >= 0 ? g : -1;
        }
        if (group < 0 || (uint32_t)group >= pairs)
            continue;
        PCRE2_SIZE s = ovector[2 * group], e = ovector[2 * group + 1];
        if (s == PCRE2_UNSET || e == PCRE2_UNSET || e < s)
            continue;
        buf_append(out, subject + s, e - s);
    }
}

/* Merges series with the same labels (Prometheus's mergeSeriesWithSameLabelset): their points
 * must not share a time. */
static void merge_same_labels(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m)
{
    promql_series_index_t ix;
    promql_series_index_init(ctx, &ix, m->count);
    size_t w = 0;
    for (size_t i = 0; i < m->count; i++) {
        size_t j = promql_series_index_get_or_put(ctx, &ix, m->series[i].labels, w);
        if (j == w) {
            m->series[w++] = m->series[i];
            continue;
        }
        promql_eval_series_t *dst = &m->series[j], *src = &m->series[i];
        /* Both are time-ordered: merge. */
        size_t n = dst->count + src->count;
        promql_point_t *pts = promql_eval_alloc(ctx, (n + 1) * sizeof(*pts));
        size_t a = 0, b = 0, k = 0;
        while (a < dst->count || b < src->count) {
            if (b == src->count || (a < dst->count && dst->points[a].t < src->points[b].t)) {
                pts[k++] = dst->points[a++];
            } else if (a == dst->count || src->points[b].t < dst->points[a].t) {
                pts[k++] = src->points[b++];
            } else {
                promql_eval_release(ctx, pts);
                promql_series_index_free(ctx, &ix);
                promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                 "vector cannot contain metrics with the same labelset");
            }
        }
        promql_eval_release(ctx, dst->points);
        promql_eval_release(ctx, src->points);
        dst->points = pts;
        dst->count = dst->cap = n;
    }
    m->count = w;
    promql_series_index_free(ctx, &ix);
}

static promql_eval_value_t eval_label_replace(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                              const promql_eval_range_t *range)
{
    const char *dst = string_arg(node, 1), *repl = string_arg(node, 2);
    const char *src = string_arg(node, 3), *regex = string_arg(node, 4);
    promql_eval_value_t v = promql_eval_node(ctx, node->call.args[0], range);

    size_t plen = strlen(regex) + 16;
    char *pattern = cairn_malloc(plen);
    snprintf(pattern, plen, "^(?s:%s)$", regex);
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY,
                                   &code, &off, NULL);
    cairn_free(pattern);
    if (!re)
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                         "invalid regular expression in label_replace(): %s", regex);
    if (!valid_label_name(dst)) {
        pcre2_code_free(re);
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                         "invalid destination label name in label_replace(): %s", dst);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    promql_label_builder_t b = {.ctx = ctx};
    buf_t res = BUF_INIT;
    for (size_t i = 0; i < v.m.count; i++) {
        promql_eval_series_t *s = &v.m.series[i];
        const char *sv = promql_labels_get(s->labels, src);
        if (!sv)
            sv = "";
        int rc = pcre2_match(re, (PCRE2_SPTR)sv, strlen(sv), 0, 0, md, NULL);
        if (rc < 0)
            continue;
        buf_reset(&res);
        buf_append_str(&res, "");
        expand_template(&res, repl, re, sv, pcre2_get_ovector_pointer(md),
                        pcre2_get_ovector_count(md));
        promql_label_builder_reset(&b, s->labels);
        promql_label_builder_set(&b, dst, res.data);
        s->labels = promql_label_builder_intern(ctx, &b);
        if (strcmp(dst, "__name__") == 0)
            s->drop_name = false;
    }
    buf_free(&res);
    promql_label_builder_free(&b);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    merge_same_labels(ctx, &v.m);
    return v;
}

static promql_eval_value_t eval_label_join(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                           const promql_eval_range_t *range)
{
    const char *dst = string_arg(node, 1), *sep = string_arg(node, 2);
    for (size_t i = 3; i < node->call.arg_count; i++)
        if (!valid_label_name(string_arg(node, i)))
            promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                             "invalid source label name in label_join(): %s", string_arg(node, i));
    if (!valid_label_name(dst))
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                         "invalid destination label name in label_join(): %s", dst);
    promql_eval_value_t v = promql_eval_node(ctx, node->call.args[0], range);
    promql_label_builder_t b = {.ctx = ctx};
    buf_t joined = BUF_INIT;
    for (size_t i = 0; i < v.m.count; i++) {
        promql_eval_series_t *s = &v.m.series[i];
        buf_reset(&joined);
        buf_append_str(&joined, "");
        for (size_t j = 3; j < node->call.arg_count; j++) {
            if (j > 3)
                buf_append_str(&joined, sep);
            const char *lv = promql_labels_get(s->labels, string_arg(node, j));
            if (lv)
                buf_append_str(&joined, lv);
        }
        promql_label_builder_reset(&b, s->labels);
        promql_label_builder_set(&b, dst, joined.data);
        s->labels = promql_label_builder_intern(ctx, &b);
        if (strcmp(dst, "__name__") == 0)
            s->drop_name = false;
    }
    buf_free(&joined);
    promql_label_builder_free(&b);
    merge_same_labels(ctx, &v.m);
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * Sorting (instant queries only; a range query's result is sorted by labels anyway)
 */
typedef struct sort_key {
    promql_eval_series_t series;
    double v;
} sort_key_t;

/* The labels of the current sort_by_label call (per thread: queries run concurrently). */
static _Thread_local const char *const *sort_labels;
static _Thread_local size_t sort_label_count;

/* facette/natsort's Compare: chunks of digits compare as numbers, others as strings. */
static bool natural_less(const char *a, const char *b)
{
    for (;;) {
        if (!*a)
            return true; /* a ran out first or both did: a is "less or equal" */
        if (!*b)
            return false;
        bool da = isdigit((unsigned char)*a), db = isdigit((unsigned char)*b);
        const char *ea = a, *eb = b;
        while (*ea && (bool)isdigit((unsigned char)*ea) == da)
            ea++;
        while (*eb && (bool)isdigit((unsigned char)*eb) == db)
            eb++;
        size_t la = (size_t)(ea - a), lb = (size_t)(eb - b);
        if (da && db) {
            /* Compare as integers: strip leading zeros, then by length, then digits. */
            const char *pa = a, *pb = b;
            while (pa < ea - 1 && *pa == '0')
                pa++;
            while (pb < eb - 1 && *pb == '0')
                pb++;
            size_t na = (size_t)(ea - pa), nb = (size_t)(eb - pb);
            if (na != nb)
                return na < nb;
            int c = strncmp(pa, pb, na);
            if (c != 0)
                return c < 0;
        } else {
            size_t n = la < lb ? la : lb;
            int c = memcmp(a, b, n);
            if (c == 0 && la != lb)
                return la < lb;
            if (c != 0)
                return c < 0;
        }
        a = ea;
        b = eb;
        if (!*a)
            return true;
        if (!*b)
            return false;
    }
}

static int compare_by_label(const sort_key_t *x, const sort_key_t *y)
{
    for (size_t i = 0; i < sort_label_count; i++) {
        const char *a = promql_labels_get(x->series.labels, sort_labels[i]);
        const char *b = promql_labels_get(y->series.labels, sort_labels[i]);
        if (!a)
            a = "";
        if (!b)
            b = "";
        if (strcmp(a, b) == 0)
            continue;
        return natural_less(a, b) ? -1 : 1;
    }
    return promql_labels_compare(x->series.labels, y->series.labels);
}

/* Stable merge sort; cmp < 0 means x first. */
static void merge_sort(sort_key_t *a, sort_key_t *tmp, size_t n,
                       int (*cmp)(const sort_key_t *, const sort_key_t *, bool), bool desc)
{
    if (n < 2)
        return;
    size_t mid = n / 2;
    merge_sort(a, tmp, mid, cmp, desc);
    merge_sort(a + mid, tmp, n - mid, cmp, desc);
    size_t i = 0, j = mid, k = 0;
    while (i < mid && j < n)
        tmp[k++] = cmp(&a[j], &a[i], desc) < 0 ? a[j++] : a[i++];
    while (i < mid)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof(*a));
}

static int cmp_value(const sort_key_t *x, const sort_key_t *y, bool desc)
{
    /* NaN sorts last in both directions. */
    if (isnan(x->v))
        return isnan(y->v) ? 0 : 1;
    if (isnan(y->v))
        return -1;
    if (x->v == y->v)
        return 0;
    return (x->v < y->v) != desc ? -1 : 1;
}

static int cmp_label(const sort_key_t *x, const sort_key_t *y, bool desc)
{
    int c = compare_by_label(x, y);
    return desc ? -c : c;
}

static promql_eval_value_t eval_sort(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                     const promql_eval_range_t *range)
{
    promql_function_id_t id = node->call.func->id;
    promql_eval_value_t v = promql_eval_node(ctx, node->call.args[0], range);
    if (ctx->range_query) {
        promql_eval_annotate(ctx, false, node->pos,
                             "PromQL warning: sort is ineffective for range queries since "
                             "results are always ordered by labels");
        return v;
    }
    if (range->steps != 1 || v.m.count < 2)
        return v;
    size_t n = v.m.count;
    sort_key_t *keys = promql_eval_alloc(ctx, n * sizeof(*keys));
    sort_key_t *tmp = promql_eval_alloc(ctx, n * sizeof(*tmp));
    for (size_t i = 0; i < n; i++) {
        keys[i].series = v.m.series[i];
        keys[i].v = v.m.series[i].count ? v.m.series[i].points[0].v : NAN;
    }
    const char *labels[16];
    sort_label_count = 0;
    for (size_t i = 1; i < node->call.arg_count && sort_label_count < 16; i++)
        labels[sort_label_count++] = string_arg(node, i);
    sort_labels = labels;
    switch (id) {
    case PROMQL_FN_SORT: merge_sort(keys, tmp, n, cmp_value, false); break;
    case PROMQL_FN_SORT_DESC: merge_sort(keys, tmp, n, cmp_value, true); break;
    case PROMQL_FN_SORT_BY_LABEL: merge_sort(keys, tmp, n, cmp_label, false); break;
    default: merge_sort(keys, tmp, n, cmp_label, true); break;
    }
    for (size_t i = 0; i < n; i++)
        v.m.series[i] = keys[i].series;
    promql_eval_release(ctx, keys);
    promql_eval_release(ctx, tmp);
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * Classic histograms
 */
static bool parse_le(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0')
        return false;
    *out = v;
    return true;
}

/* labels.FormatOpenMetricsFloat: Go's shortest form, ".0" added to integers. */
static void format_openmetrics_float(double v, char *out, size_t size)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    float_format_go(v, 'g', out, size);
    if (!strpbrk(out, "e."))
        strncat(out, ".0", size - strlen(out) - 1);
}

static void warn_quantile(promql_eval_ctx_t *ctx, const promql_node_t *arg, double q)
{
    if (!isnan(q) && q >= 0 && q <= 1)
        return;
    char qs[32];
    promql_eval_annotate(ctx, false, arg->pos,
                         "PromQL warning: quantile value should be between 0 and 1, got %s",
                         promql_format_float(q, qs, sizeof(qs)));
}

/* histogram_quantile(q, v), histogram_quantiles(v, label, q...), histogram_fraction(lo, hi,
 * v) on classic buckets: per step, the samples of each group (labels without `le`, name
 * kept until the end) are the buckets. */
static promql_eval_value_t eval_histogram(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                          const promql_eval_range_t *range)
{
    promql_function_id_t id = node->call.func->id;
    bool fraction = id == PROMQL_FN_HISTOGRAM_FRACTION;
    bool multi = id == PROMQL_FN_HISTOGRAM_QUANTILES;
    size_t vec_arg = fraction ? 2 : multi ? 0 : 1;
    size_t first_param = multi ? 2 : 0;
    size_t nparams = multi ? node->call.arg_count - 2 : fraction ? 2 : 1;
    const char *qlabel = multi ? string_arg(node, 1) : NULL;
    double **params = promql_eval_alloc(ctx, (nparams + 1) * sizeof(double *));
    for (size_t i = 0; i < nparams; i++)
        params[i] = promql_eval_scalar(ctx, node->call.args[first_param + i], range);
    promql_eval_value_t in = promql_eval_node(ctx, node->call.args[vec_arg], range);
    promql_pos_t vpos = node->call.args[vec_arg]->pos;
    promql_pos_t info_pos = node->call.args[1]->pos;

    /* Group (labels without `le`) per input series, once. */
    promql_label_builder_t b = {.ctx = ctx};
    promql_series_index_t ix;
    promql_series_index_init(ctx, &ix, in.m.count);
    size_t *group_of = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(size_t));
    double *upper = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(double));
    uint8_t *bad = promql_eval_alloc(ctx, in.m.count + 1);
    const promql_labels_t **group_labels =
        promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(*group_labels));
    size_t ngroups = 0;
    for (size_t i = 0; i < in.m.count; i++) {
        const promql_labels_t *ls = in.m.series[i].labels;
        if (!parse_le(promql_labels_get(ls, "le"), &upper[i])) {
            bad[i] = 1;
            continue;
        }
        promql_label_builder_reset(&b, ls);
        promql_label_builder_del(&b, "le");
        const promql_labels_t *key = promql_label_builder_intern(ctx, &b);
        size_t g = promql_series_index_get_or_put(ctx, &ix, key, ngroups);
        if (g == ngroups)
            group_labels[ngroups++] = key;
        group_of[i] = g;
    }
    promql_series_index_free(ctx, &ix);

    promql_bucket_t *buckets = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(*buckets));
    size_t *bucket_count = promql_eval_alloc(ctx, (ngroups + 1) * sizeof(size_t));
    size_t *bucket_start = promql_eval_alloc(ctx, (ngroups + 1) * sizeof(size_t));
    promql_bucket_t *scratch = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(*scratch));
    promql_vector_cursor_t cur;
    promql_cursor_init(ctx, &cur, &in.m);
    promql_output_t out;
    promql_output_init(ctx, &out, range);
    for (size_t k = 0; k < range->steps; k++) {
        promql_eval_check(ctx);
        int64_t t = step_time(range, k);
        if (!fraction)
            for (size_t i = 0; i < nparams; i++)
                warn_quantile(ctx, node->call.args[first_param + i], params[i][k]);
        promql_cursor_gather(&cur, t);
        if (cur.count == 0)
            continue;
        memset(bucket_count, 0, (ngroups + 1) * sizeof(size_t));
        for (size_t j = 0; j < cur.count; j++) {
            size_t si = cur.vec[j].series;
            if (bad[si]) {
                const promql_labels_t *ls = cur.vec[j].labels;
                const char *le = promql_labels_get(ls, "le");
                const char *name = promql_labels_get(ls, "__name__");
                buf_t q = BUF_INIT, nq = BUF_INIT;
                promql_go_quote(&q, le ? le : "");
                if (name && *name)
                    promql_go_quote(&nq, name);
                promql_eval_annotate(ctx, false, vpos,
                                     "PromQL warning: bucket label \"le\" is missing or has a "
                                     "malformed value of %s%s%s",
                                     q.data, nq.len ? " for metric name " : "",
                                     nq.len ? nq.data : "");
                buf_free(&q);
                buf_free(&nq);
                continue;
            }
            bucket_count[group_of[si]]++;
        }
        size_t off = 0;
        for (size_t g = 0; g < ngroups; g++) {
            bucket_start[g] = off;
            off += bucket_count[g];
            bucket_count[g] = 0;
        }
        for (size_t j = 0; j < cur.count; j++) {
            size_t si = cur.vec[j].series;
            if (bad[si])
                continue;
            size_t g = group_of[si];
            promql_bucket_t *bk = &buckets[bucket_start[g] + bucket_count[g]++];
            bk->upper = upper[si];
            bk->count = cur.vec[j].v;
        }
        size_t nq = fraction ? 1 : nparams;
        for (size_t qi = 0; qi < nq; qi++) {
            for (size_t g = 0; g < ngroups; g++) {
                size_t n = bucket_count[g];
                if (n == 0)
                    continue;
                memcpy(scratch, &buckets[bucket_start[g]], n * sizeof(*scratch));
                bool forced = false;
                double v = fraction ? promql_bucket_fraction(params[0][k], params[1][k], scratch, n,
                                                             &forced)
                                    : promql_bucket_quantile(params[qi][k], scratch, n, &forced);
                if (forced && !fraction) {
                    const char *name = promql_labels_get(group_labels[g], "__name__");
                    buf_t nmq = BUF_INIT;
                    if (name && *name)
                        promql_go_quote(&nmq, name);
                    promql_eval_annotate(
                        ctx, true, info_pos,
                        "PromQL info: input to histogram_quantile needed to be fixed for "
                        "monotonicity (see "
                        "https://prometheus.io/docs/prometheus/latest/querying/functions/"
                        "#histogram_quantile)%s%s",
                        nmq.len ? " for metric name " : "", nmq.len ? nmq.data : "");
                    buf_free(&nmq);
                }
                const promql_labels_t *labels = group_labels[g];
                if (multi) {
                    char qs[40];
                    format_openmetrics_float(params[qi][k], qs, sizeof(qs));
                    promql_label_builder_reset(&b, labels);
                    promql_label_builder_set(&b, qlabel, qs);
                    labels = promql_label_builder_intern(ctx, &b);
                }
                promql_output_add(ctx, &out, labels, true, t, v);
            }
        }
    }
    promql_eval_value_t res = {.type = PROMQL_VALUE_VECTOR};
    res.m = promql_output_finish(ctx, &out);
    promql_label_builder_free(&b);
    promql_cursor_free(ctx, &cur);
    promql_eval_release(ctx, buckets);
    promql_eval_release(ctx, scratch);
    promql_eval_release(ctx, bucket_count);
    promql_eval_release(ctx, bucket_start);
    promql_eval_release(ctx, group_of);
    promql_eval_release(ctx, upper);
    promql_eval_release(ctx, bad);
    promql_eval_release(ctx, group_labels);
    for (size_t i = 0; i < nparams; i++)
        promql_eval_release(ctx, params[i]);
    promql_eval_release(ctx, params);
    promql_eval_value_free(ctx, &in);
    return res;
}

/* ---------------------------------------------------------------------------------------------
 * Instant-vector and scalar functions
 */
static bool is_calendar(promql_function_id_t id)
{
    switch (id) {
    case PROMQL_FN_DAY_OF_MONTH:
    case PROMQL_FN_DAY_OF_WEEK:
    case PROMQL_FN_DAY_OF_YEAR:
    case PROMQL_FN_DAYS_IN_MONTH:
    case PROMQL_FN_HOUR:
    case PROMQL_FN_MINUTE:
    case PROMQL_FN_MONTH:
    case PROMQL_FN_YEAR: return true;
    default: return false;
    }
}

static double calendar(promql_function_id_t id, double seconds)
{
    /* Go: time.Unix(int64(v), 0). */
    double t = isnan(seconds) || isinf(seconds) ? (double)INT64_MIN : trunc(seconds);
    return promql_fn_time(id, t);
}

static promql_eval_value_t scalar_value(promql_eval_ctx_t *ctx, const promql_eval_range_t *range)
{
    promql_eval_value_t v = {.type = PROMQL_VALUE_SCALAR};
    v.scalar = promql_eval_alloc(ctx, (range->steps + 1) * sizeof(double));
    return v;
}

/* Applies a per-point function in place; drops the name at the end. */
static promql_eval_value_t eval_pointwise(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                          const promql_eval_range_t *range)
{
    promql_function_id_t id = node->call.func->id;
    double *p1 = NULL, *p2 = NULL;
    if (node->call.arg_count > 1)
        p1 = promql_eval_scalar(ctx, node->call.args[1], range);
    if (node->call.arg_count > 2)
        p2 = promql_eval_scalar(ctx, node->call.args[2], range);
    promql_eval_value_t v = promql_eval_node(ctx, node->call.args[0], range);
    for (size_t i = 0; i < v.m.count; i++) {
        promql_eval_series_t *s = &v.m.series[i];
        s->drop_name = true;
        size_t w = 0;
        for (size_t j = 0; j < s->count; j++) {
            double x = s->points[j].v;
            size_t k = step_index(range, s->points[j].t);
            double r;
            switch (id) {
            case PROMQL_FN_ROUND: r = promql_fn_round(x, p1 ? p1[k] : 1.0); break;
            case PROMQL_FN_CLAMP:
                if (p2[k] < p1[k])
                    continue;
                r = go_max(p1[k], go_min(p2[k], x));
                break;
            case PROMQL_FN_CLAMP_MIN: r = go_max(p1[k], go_min(INFINITY, x)); break;
            case PROMQL_FN_CLAMP_MAX: r = go_max(-INFINITY, go_min(p1[k], x)); break;
            default: r = is_calendar(id) ? calendar(id, x) : promql_fn_math(id, x); break;
            }
            s->points[w].t = s->points[j].t;
            s->points[w].v = r;
            w++;
        }
        promql_eval_uncount_samples(ctx, s->count - w);
        s->count = w;
    }
    compact_matrix(ctx, &v.m);
    promql_eval_release(ctx, p1);
    promql_eval_release(ctx, p2);
    return v;
}

static promql_eval_value_t eval_min_max_of(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                           const promql_eval_range_t *range)
{
    bool is_max = node->call.func->id == PROMQL_FN_MAX_OF;
    promql_eval_value_t v = scalar_value(ctx, range);
    for (size_t i = 0; i < node->call.arg_count; i++) {
        double *a = promql_eval_scalar(ctx, node->call.args[i], range);
        for (size_t k = 0; k < range->steps; k++) {
            if (i == 0)
                v.scalar[k] = a[k];
            else
                v.scalar[k] = is_max ? go_max(v.scalar[k], a[k]) : go_min(v.scalar[k], a[k]);
        }
        promql_eval_release(ctx, a);
    }
    return v;
}

promql_eval_value_t promql_eval_call(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                     const promql_eval_range_t *range)
{
    promql_function_id_t id = node->call.func->id;
    for (size_t i = 0; i < node->call.arg_count; i++)
        if (node_is_range_arg(node->call.args[i]))
            return eval_range_function(ctx, node, range);

    promql_eval_value_t v = {.type = PROMQL_VALUE_VECTOR};
    switch (id) {
    case PROMQL_FN_TIME:
    case PROMQL_FN_PI:
    case PROMQL_FN_START:
    case PROMQL_FN_END:
    case PROMQL_FN_STEP:
    case PROMQL_FN_RANGE:
        v = scalar_value(ctx, range);
        for (size_t k = 0; k < range->steps; k++) {
            switch (id) {
            case PROMQL_FN_TIME: v.scalar[k] = (double)step_time(range, k) / 1000.0; break;
            case PROMQL_FN_PI: v.scalar[k] = M_PI; break;
            case PROMQL_FN_START: v.scalar[k] = (double)ctx->query_start / 1000.0; break;
            case PROMQL_FN_END: v.scalar[k] = (double)ctx->query_end / 1000.0; break;
            case PROMQL_FN_STEP: v.scalar[k] = (double)ctx->query_step / 1000.0; break;
            default: v.scalar[k] = (double)(ctx->query_end - ctx->query_start) / 1000.0; break;
            }
        }
        return v;
    case PROMQL_FN_MIN_OF:
    case PROMQL_FN_MAX_OF:
        if (node->call.func->return_type == PROMQL_VALUE_SCALAR)
            return eval_min_max_of(ctx, node, range);
        break;
    case PROMQL_FN_SCALAR: {
        promql_eval_value_t in = promql_eval_node(ctx, node->call.args[0], range);
        promql_vector_cursor_t cur;
        promql_cursor_init(ctx, &cur, &in.m);
        v = scalar_value(ctx, range);
        for (size_t k = 0; k < range->steps; k++) {
            promql_cursor_gather(&cur, step_time(range, k));
            v.scalar[k] = cur.count == 1 ? cur.vec[0].v : NAN;
        }
        promql_cursor_free(ctx, &cur);
        promql_eval_value_free(ctx, &in);
        return v;
    }
    case PROMQL_FN_VECTOR: {
        double *s = promql_eval_scalar(ctx, node->call.args[0], range);
        promql_eval_series_t *out = promql_matrix_add(ctx, &v.m, ctx->empty_labels, false);
        for (size_t k = 0; k < range->steps; k++)
            promql_series_push(ctx, out, step_time(range, k), s[k]);
        promql_eval_release(ctx, s);
        return v;
    }
    case PROMQL_FN_TIMESTAMP: {
        const promql_node_t *arg = promql_unwrap_parens(node->call.args[0]);
        if (arg->kind == PROMQL_NODE_VECTOR_SELECTOR) {
            v.m = promql_eval_selector_timestamps(ctx, arg, range);
            return v;
        }
        v = promql_eval_node(ctx, arg, range);
        for (size_t i = 0; i < v.m.count; i++) {
            promql_eval_series_t *s = &v.m.series[i];
            s->drop_name = true;
            for (size_t j = 0; j < s->count; j++)
                s->points[j].v = (double)s->points[j].t / 1000.0;
        }
        return v;
    }
    case PROMQL_FN_ABSENT: {
        promql_eval_value_t in = promql_eval_node(ctx, node->call.args[0], range);
        promql_vector_cursor_t cur;
        promql_cursor_init(ctx, &cur, &in.m);
        promql_eval_series_t *out = NULL;
        for (size_t k = 0; k < range->steps; k++) {
            promql_cursor_gather(&cur, step_time(range, k));
            if (cur.count > 0)
                continue;
            if (!out)
                out = promql_matrix_add(ctx, &v.m, absent_labels(ctx, node->call.args[0]), false);
            promql_series_push(ctx, out, step_time(range, k), 1);
        }
        promql_cursor_free(ctx, &cur);
        promql_eval_value_free(ctx, &in);
        return v;
    }
    case PROMQL_FN_LABEL_REPLACE: return eval_label_replace(ctx, node, range);
    case PROMQL_FN_LABEL_JOIN: return eval_label_join(ctx, node, range);
    case PROMQL_FN_SORT:
    case PROMQL_FN_SORT_DESC:
    case PROMQL_FN_SORT_BY_LABEL:
    case PROMQL_FN_SORT_BY_LABEL_DESC: return eval_sort(ctx, node, range);
    case PROMQL_FN_HISTOGRAM_QUANTILE:
    case PROMQL_FN_HISTOGRAM_QUANTILES:
    case PROMQL_FN_HISTOGRAM_FRACTION: return eval_histogram(ctx, node, range);
    case PROMQL_FN_HISTOGRAM_AVG:
    case PROMQL_FN_HISTOGRAM_COUNT:
    case PROMQL_FN_HISTOGRAM_SUM:
    case PROMQL_FN_HISTOGRAM_STDDEV:
    case PROMQL_FN_HISTOGRAM_STDVAR: {
        /* Native histograms only: float samples give nothing. */
        promql_eval_value_t in = promql_eval_node(ctx, node->call.args[0], range);
        promql_eval_value_free(ctx, &in);
        return v;
    }
    case PROMQL_FN_INFO: return promql_eval_node(ctx, node->call.args[0], range);
    default: break;
    }
    if (is_calendar(id) && node->call.arg_count == 0) {
        promql_eval_series_t *out = promql_matrix_add(ctx, &v.m, ctx->empty_labels, false);
        for (size_t k = 0; k < range->steps; k++) {
            int64_t t = step_time(range, k);
            promql_series_push(ctx, out, t, promql_fn_time(id, (double)(t / 1000)));
        }
        return v;
    }
    if (node->call.arg_count == 0)
        promql_eval_fail(ctx, PROMQL_ERROR_INTERNAL, "function %s is not supported",
                         node->call.func->name);
    return eval_pointwise(ctx, node, range);
}
