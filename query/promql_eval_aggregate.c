/*
 * query/promql_eval_aggregate.c: aggregation operators.
 *
 * Groups are fixed once per evaluation from the input series' labels: `by (l...)` keeps the
 * listed labels (so `by (__name__)` keeps the name), `without (l...)` removes them and
 * __name__. Each step then folds the samples present at that step into their group:
 *
 *   sum avg count min max group stddev stdvar
 *                  the kernels' accumulators (promql_aggregate_*, Prometheus's formulas)
 *   quantile       promql_quantile over the group's values
 *   topk/bottomk   a binary heap of k samples per group with Prometheus's ordering (NaN is
 *                  the smallest for both); results keep the input's labels
 *   limitk         the first k samples per group; limit_ratio samples by label hash
 *   count_values   one output series per distinct value (formatted like Go's 'f', -1)
 *
 * An output series drops its name at the end if any of its group's inputs asked for it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "query/promql_eval_internal.h"
#include "query/promql_functions.h"

#define MAX_INT64_FLOAT 9223372036854774784.0
#define MIN_INT64_FLOAT -9223372036854775808.0

typedef struct agg_group {
    bool seen;
    bool drop_name;
    promql_aggregate_acc_t acc; /* sum ... stdvar (promql_functions.h) */
    promql_eval_sample_t *heap; /* quantile values, topk/bottomk/limitk/limit_ratio samples */
    size_t heap_count, heap_cap;
} agg_group_t;

/* Go's strconv.Quote for the label-name error (ASCII printable kept, others escaped). */
static void quote_string(buf_t *out, const char *s)
{
    buf_append_char(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(out, "\\%c", *p);
        else if (*p >= 0x20 && *p < 0x7f)
            buf_append_char(out, (char)*p);
        else if (*p == '\n')
            buf_append_str(out, "\\n");
        else if (*p == '\t')
            buf_append_str(out, "\\t");
        else
            buf_printf(out, "\\x%02x", *p);
    }
    buf_append_char(out, '"');
}

static const promql_labels_t *group_labels(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                           promql_label_builder_t *b, const promql_labels_t *ls,
                                           const char *extra)
{
    promql_label_builder_reset(b, ls);
    if (node->aggregate.without) {
        for (size_t i = 0; i < node->aggregate.grouping_count; i++)
            promql_label_builder_del(b, node->aggregate.grouping[i]);
        promql_label_builder_del(b, "__name__");
    } else {
        size_t n = node->aggregate.grouping_count;
        char *names[n + 2];
        for (size_t i = 0; i < n; i++)
            names[i] = node->aggregate.grouping[i];
        if (extra)
            names[n++] = (char *)extra;
        promql_label_builder_keep(b, names, n);
    }
    return promql_label_builder_intern(ctx, b);
}

/* ---- heaps with Prometheus's orderings (container/heap's algorithm) ---------------------- */

/* topk keeps a min-heap (NaN smallest); bottomk a max-heap (NaN "smallest" as well). */
static bool heap_less(bool bottom, double a, double b)
{
    if (isnan(a))
        return true;
    return bottom ? a > b : a < b;
}

static void heap_swap(promql_eval_sample_t *h, size_t i, size_t j)
{
    promql_eval_sample_t tmp = h[i];
    h[i] = h[j];
    h[j] = tmp;
}

static void heap_up(promql_eval_sample_t *h, size_t j, bool bottom)
{
    while (j > 0) {
        size_t i = (j - 1) / 2;
        if (!heap_less(bottom, h[j].v, h[i].v))
            break;
        heap_swap(h, i, j);
        j = i;
    }
}

static bool heap_down(promql_eval_sample_t *h, size_t i0, size_t n, bool bottom)
{
    size_t i = i0;
    for (;;) {
        size_t j1 = 2 * i + 1;
        if (j1 >= n)
            break;
        size_t j = j1;
        if (j1 + 1 < n && heap_less(bottom, h[j1 + 1].v, h[j1].v))
            j = j1 + 1;
        if (!heap_less(bottom, h[j].v, h[i].v))
            break;
        heap_swap(h, i, j);
        i = j;
    }
    return i > i0;
}

static void group_push(promql_eval_ctx_t *ctx, agg_group_t *g, const promql_eval_sample_t *s)
{
    if (g->heap_count == g->heap_cap) {
        g->heap_cap = g->heap_cap ? g->heap_cap * 2 : 8;
        g->heap = promql_eval_realloc(ctx, g->heap, g->heap_cap * sizeof(*g->heap));
    }
    g->heap[g->heap_count++] = *s;
}

/* Stable sort of samples so that a precedes b when less(b, a) (sort.Reverse of the heap's
 * order), by insertion (k is small in practice) or merging. */
static void sort_reverse(promql_eval_ctx_t *ctx, promql_eval_sample_t *a, size_t n, bool bottom)
{
    if (n < 2)
        return;
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            promql_eval_sample_t x = a[i];
            size_t j = i;
            while (j > 0 && heap_less(bottom, a[j - 1].v, x.v))
                j--, a[j + 1] = a[j];
            a[j] = x;
        }
        return;
    }
    size_t mid = n / 2;
    sort_reverse(ctx, a, mid, bottom);
    sort_reverse(ctx, a + mid, n - mid, bottom);
    promql_eval_sample_t *tmp = promql_eval_alloc(ctx, n * sizeof(*tmp));
    size_t i = 0, j = mid, k = 0;
    while (i < mid && j < n)
        tmp[k++] = heap_less(bottom, a[i].v, a[j].v) ? a[j++] : a[i++];
    while (i < mid)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof(*tmp));
    promql_eval_release(ctx, tmp);
}

/* ---- parameter checks -------------------------------------------------------------------- */

typedef struct param_stats {
    double min, max;
    bool any_nan;
} param_stats_t;

static param_stats_t param_stats(const double *p, size_t n)
{
    param_stats_t st = {INFINITY, -INFINITY, false};
    for (size_t k = 0; k < n; k++) {
        if (isnan(p[k])) {
            st.any_nan = true;
            continue;
        }
        if (p[k] < st.min)
            st.min = p[k];
        if (p[k] > st.max)
            st.max = p[k];
    }
    if (st.min == INFINITY && st.max == -INFINITY)
        st.min = st.max = NAN;
    return st;
}

/* ---- count_values ------------------------------------------------------------------------- */

static promql_eval_value_t eval_count_values(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                             const promql_eval_range_t *range)
{
    const promql_node_t *param = promql_unwrap_parens(node->aggregate.param);
    const char *label = param->string;
    if (!*label || !utf8_valid(label, strlen(label))) {
        buf_t q = BUF_INIT;
        quote_string(&q, label);
        char text[CAIRN_ERROR_MAX];
        snprintf(text, sizeof(text), "invalid label name %s", q.data);
        buf_free(&q);
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION, "%s", text);
    }
    promql_eval_value_t in = promql_eval_node(ctx, node->aggregate.expr, range);
    promql_vector_cursor_t cur;
    promql_cursor_init(ctx, &cur, &in.m);
    promql_output_t out;
    promql_output_init(ctx, &out, range);
    promql_label_builder_t b = {.ctx = ctx};
    const promql_labels_t **keys = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(*keys));
    double *counts = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(*counts));
    promql_series_index_t ix;
    for (size_t k = 0; k < range->steps; k++) {
        promql_eval_check(ctx);
        int64_t t = range->start + (int64_t)k * range->step;
        promql_cursor_gather(&cur, t);
        if (cur.count == 0)
            continue;
        promql_series_index_init(ctx, &ix, cur.count);
        size_t ngroups = 0;
        for (size_t j = 0; j < cur.count; j++) {
            char value[64];
            float_format_go(cur.vec[j].v, 'f', value, sizeof(value));
            promql_label_builder_reset(&b, cur.vec[j].labels);
            promql_label_builder_set(&b, label, value);
            const promql_labels_t *metric = promql_label_builder_intern(ctx, &b);
            const promql_labels_t *key =
                group_labels(ctx, node, &b, metric, node->aggregate.without ? NULL : label);
            size_t g = promql_series_index_get_or_put(ctx, &ix, key, ngroups);
            if (g == ngroups) {
                keys[ngroups] = key;
                counts[ngroups++] = 0;
            }
            counts[g]++;
        }
        for (size_t g = 0; g < ngroups; g++)
            promql_output_add(ctx, &out, keys[g], false, t, counts[g]);
        promql_series_index_free(ctx, &ix);
    }
    promql_eval_value_t res = {.type = PROMQL_VALUE_VECTOR};
    res.m = promql_output_finish(ctx, &out);
    promql_eval_release(ctx, keys);
    promql_eval_release(ctx, counts);
    promql_label_builder_free(&b);
    promql_cursor_free(ctx, &cur);
    promql_eval_value_free(ctx, &in);
    return res;
}

/* ---- the rest ----------------------------------------------------------------------------- */

static void fold_first(promql_eval_ctx_t *ctx, promql_aggregate_op_t op, agg_group_t *g,
                       const promql_eval_sample_t *s)
{
    g->seen = true;
    g->drop_name = s->drop_name;
    g->heap_count = 0;
    if (op == PROMQL_AGG_QUANTILE)
        group_push(ctx, g, s);
    else
        promql_aggregate_init(op, &g->acc, s->v);
}

static void fold(promql_eval_ctx_t *ctx, promql_aggregate_op_t op, agg_group_t *g,
                 const promql_eval_sample_t *s)
{
    if (s->drop_name)
        g->drop_name = true;
    if (op == PROMQL_AGG_QUANTILE)
        group_push(ctx, g, s);
    else
        promql_aggregate_add(op, &g->acc, s->v);
}

static double fold_result(promql_eval_ctx_t *ctx, promql_aggregate_op_t op, agg_group_t *g,
                          double param)
{
    if (op != PROMQL_AGG_QUANTILE)
        return promql_aggregate_result(op, &g->acc);
    double *values = promql_eval_alloc(ctx, (g->heap_count + 1) * sizeof(double));
    for (size_t i = 0; i < g->heap_count; i++)
        values[i] = g->heap[i].v;
    double r = promql_quantile(param, values, g->heap_count);
    promql_eval_release(ctx, values);
    return r;
}

static bool ratio_sample(double ratio, const promql_labels_t *ls)
{
    double offset = (double)promql_labels_prometheus_hash(ls) / (double)UINT64_MAX;
    return (ratio >= 0 && offset < ratio) || (ratio < 0 && offset >= 1.0 + ratio);
}

promql_eval_value_t promql_eval_aggregate(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                          const promql_eval_range_t *range)
{
    promql_aggregate_op_t op = node->aggregate.op;
    if (op == PROMQL_AGG_COUNT_VALUES)
        return eval_count_values(ctx, node, range);

    bool k_op = op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK || op == PROMQL_AGG_LIMITK ||
                op == PROMQL_AGG_LIMIT_RATIO;
    double *param = NULL;
    promql_eval_value_t res = {.type = PROMQL_VALUE_VECTOR};
    if (node->aggregate.param && op != PROMQL_AGG_COUNT_VALUES) {
        param = promql_eval_scalar(ctx, node->aggregate.param, range);
        param_stats_t st = param_stats(param, range->steps);
        promql_pos_t ppos = node->aggregate.param->pos;
        char a[32], b[32];
        switch (op) {
        case PROMQL_AGG_TOPK:
        case PROMQL_AGG_BOTTOMK:
        case PROMQL_AGG_LIMITK:
            if (st.max < 1) {
                promql_eval_release(ctx, param);
                return res;
            }
            if (st.any_nan)
                promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION, "Parameter value is NaN");
            if (st.min <= MIN_INT64_FLOAT)
                promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION, "Scalar value %s underflows int64",
                                 promql_format_float(st.min, a, sizeof(a)));
            if (st.max >= MAX_INT64_FLOAT)
                promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION, "Scalar value %s overflows int64",
                                 promql_format_float(st.max, a, sizeof(a)));
            break;
        case PROMQL_AGG_LIMIT_RATIO:
            if (st.max == 0 && st.min == 0) {
                promql_eval_release(ctx, param);
                return res;
            }
            if (st.any_nan)
                promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION, "Ratio value is NaN");
            if (st.max > 1.0)
                promql_eval_annotate(ctx, false, ppos,
                                     "PromQL warning: ratio value should be between -1 and 1, "
                                     "got %s, capping to %s",
                                     promql_format_float(st.max, a, sizeof(a)),
                                     promql_format_float(1.0, b, sizeof(b)));
            if (st.min < -1.0)
                promql_eval_annotate(ctx, false, ppos,
                                     "PromQL warning: ratio value should be between -1 and 1, "
                                     "got %s, capping to %s",
                                     promql_format_float(st.min, a, sizeof(a)),
                                     promql_format_float(-1.0, b, sizeof(b)));
            break;
        case PROMQL_AGG_QUANTILE:
            if (st.any_nan)
                promql_eval_annotate(ctx, false, ppos,
                                     "PromQL warning: quantile value should be between 0 and 1, "
                                     "got NaN");
            if (st.max > 1)
                promql_eval_annotate(ctx, false, ppos,
                                     "PromQL warning: quantile value should be between 0 and 1, "
                                     "got %s",
                                     promql_format_float(st.max, a, sizeof(a)));
            if (st.min < 0)
                promql_eval_annotate(ctx, false, ppos,
                                     "PromQL warning: quantile value should be between 0 and 1, "
                                     "got %s",
                                     promql_format_float(st.min, a, sizeof(a)));
            break;
        default: break;
        }
    }

    promql_eval_value_t in = promql_eval_node(ctx, node->aggregate.expr, range);
    /* Groups, once. */
    promql_label_builder_t b = {.ctx = ctx};
    promql_series_index_t ix;
    promql_series_index_init(ctx, &ix, in.m.count);
    size_t *group_of = promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(size_t));
    const promql_labels_t **group_key =
        promql_eval_alloc(ctx, (in.m.count + 1) * sizeof(*group_key));
    size_t ngroups = 0;
    for (size_t i = 0; i < in.m.count; i++) {
        const promql_labels_t *key = group_labels(ctx, node, &b, in.m.series[i].labels, NULL);
        size_t g = promql_series_index_get_or_put(ctx, &ix, key, ngroups);
        if (g == ngroups)
            group_key[ngroups++] = key;
        group_of[i] = g;
    }
    promql_series_index_free(ctx, &ix);
    promql_label_builder_free(&b);
    agg_group_t *groups = promql_eval_alloc(ctx, (ngroups + 1) * sizeof(*groups));
    promql_eval_series_t **out_series = promql_eval_alloc(ctx, (ngroups + 1) * sizeof(void *));
    size_t *out_index = promql_eval_alloc(ctx, (ngroups + 1) * sizeof(size_t));
    for (size_t g = 0; g < ngroups; g++)
        out_index[g] = SIZE_MAX;

    promql_vector_cursor_t cur;
    promql_cursor_init(ctx, &cur, &in.m);
    promql_output_t kout;
    promql_output_init(ctx, &kout, range);
    bool bottom = op == PROMQL_AGG_BOTTOMK;
    for (size_t k = 0; k < range->steps; k++) {
        promql_eval_check(ctx);
        int64_t t = range->start + (int64_t)k * range->step;
        promql_cursor_gather(&cur, t);
        for (size_t g = 0; g < ngroups; g++) {
            groups[g].seen = false;
            groups[g].heap_count = 0;
        }
        if (!k_op) {
            for (size_t j = 0; j < cur.count; j++) {
                agg_group_t *g = &groups[group_of[cur.vec[j].series]];
                if (!g->seen)
                    fold_first(ctx, op, g, &cur.vec[j]);
                else
                    fold(ctx, op, g, &cur.vec[j]);
            }
            for (size_t g = 0; g < ngroups; g++) {
                if (!groups[g].seen)
                    continue;
                double v = fold_result(ctx, op, &groups[g], param ? param[k] : 0);
                if (out_index[g] == SIZE_MAX) {
                    out_index[g] = res.m.count;
                    promql_matrix_add(ctx, &res.m, group_key[g], false);
                }
                promql_eval_series_t *s = &res.m.series[out_index[g]];
                s->drop_name = groups[g].drop_name;
                promql_series_push(ctx, s, t, v);
            }
            continue;
        }
        /* topk, bottomk, limitk, limit_ratio */
        double p = param[k];
        int64_t kk = 0;
        double ratio = 0;
        if (op == PROMQL_AGG_LIMIT_RATIO) {
            if (p == 0)
                continue;
            ratio = p < -1.0 ? -1.0 : p > 1.0 ? 1.0 : p;
        } else {
            kk = (int64_t)p;
            if ((int64_t)in.m.count < kk)
                kk = (int64_t)in.m.count;
            if (kk < 1)
                continue;
        }
        for (size_t j = 0; j < cur.count; j++) {
            const promql_eval_sample_t *s = &cur.vec[j];
            agg_group_t *g = &groups[group_of[s->series]];
            if (!g->seen) {
                g->seen = true;
                g->heap_count = 0;
                if (op == PROMQL_AGG_LIMIT_RATIO) {
                    if (ratio_sample(ratio, s->labels))
                        group_push(ctx, g, s);
                } else {
                    group_push(ctx, g, s);
                    if (op != PROMQL_AGG_LIMITK)
                        heap_up(g->heap, g->heap_count - 1, bottom);
                }
                continue;
            }
            switch (op) {
            case PROMQL_AGG_TOPK:
            case PROMQL_AGG_BOTTOMK:
                if ((int64_t)g->heap_count < kk) {
                    group_push(ctx, g, s);
                    heap_up(g->heap, g->heap_count - 1, bottom);
                } else if ((bottom ? g->heap[0].v > s->v : g->heap[0].v < s->v) ||
                           (isnan(g->heap[0].v) && !isnan(s->v))) {
                    g->heap[0] = *s;
                    if (kk > 1 && !heap_down(g->heap, 0, g->heap_count, bottom))
                        heap_up(g->heap, 0, bottom);
                }
                break;
            case PROMQL_AGG_LIMITK:
                if ((int64_t)g->heap_count < kk) {
                    group_push(ctx, g, s);
                    heap_up(g->heap, g->heap_count - 1, false);
                }
                break;
            default: /* LIMIT_RATIO */
                if (ratio_sample(ratio, s->labels)) {
                    group_push(ctx, g, s);
                    heap_up(g->heap, g->heap_count - 1, false);
                }
                break;
            }
        }
        for (size_t g = 0; g < ngroups; g++) {
            if (!groups[g].seen)
                continue;
            if (op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK)
                sort_reverse(ctx, groups[g].heap, groups[g].heap_count, bottom);
            for (size_t j = 0; j < groups[g].heap_count; j++) {
                const promql_eval_sample_t *s = &groups[g].heap[j];
                promql_output_add(ctx, &kout, s->labels, s->drop_name, t, s->v);
            }
        }
    }
    if (k_op) {
        promql_matrix_free(ctx, &res.m);
        res.m = promql_output_finish(ctx, &kout);
    } else {
        promql_eval_matrix_t unused = promql_output_finish(ctx, &kout);
        promql_matrix_free(ctx, &unused);
    }
    for (size_t g = 0; g < ngroups; g++)
        promql_eval_release(ctx, groups[g].heap);
    promql_eval_release(ctx, groups);
    promql_eval_release(ctx, group_of);
    promql_eval_release(ctx, group_key);
    promql_eval_release(ctx, out_series);
    promql_eval_release(ctx, out_index);
    promql_eval_release(ctx, param);
    promql_cursor_free(ctx, &cur);
    promql_eval_value_free(ctx, &in);
    return res;
}
