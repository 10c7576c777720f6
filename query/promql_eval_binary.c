/*
 * query/promql_eval_binary.c: binary operators.
 *
 *   scalar op scalar      per step
 *   vector op scalar      per point, in place: labels unchanged; arithmetic and `bool` mark the
 *                         series to drop its name when the query ends (delayed name removal)
 *   vector op vector      vector matching: each series gets a match signature (its labels
 *                         restricted by on(...) or without ignoring(...) and __name__), interned,
 *                         numbered once; every step then pairs samples by signature number.
 *                         Arithmetic drops __name__ (and __type__, __unit__) at once, as
 *                         Prometheus does; comparisons keep the left-hand side's labels and
 *                         value; `bool` returns 0/1 and drops the name at the end.
 *   and / or / unless     many-to-many on the signature
 *
 * Errors use Prometheus's exact texts (duplicate series on the "one" side, one-to-one matches
 * that are not unique, group_x results that are not unique).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "query/promql_eval_internal.h"

static bool op_is_arithmetic(promql_binary_op_t op)
{
    switch (op) {
    case PROMQL_OP_ADD:
    case PROMQL_OP_SUB:
    case PROMQL_OP_MUL:
    case PROMQL_OP_DIV:
    case PROMQL_OP_MOD:
    case PROMQL_OP_POW:
    case PROMQL_OP_ATAN2: return true;
    default: return false;
    }
}

/* The value of lhs op rhs; *keep is false when a comparison fails. Comparisons return lhs. */
static double binop_value(promql_binary_op_t op, double lhs, double rhs, bool *keep)
{
    *keep = true;
    switch (op) {
    case PROMQL_OP_ADD: return lhs + rhs;
    case PROMQL_OP_SUB: return lhs - rhs;
    case PROMQL_OP_MUL: return lhs * rhs;
    case PROMQL_OP_DIV: return lhs / rhs;
    case PROMQL_OP_MOD: return fmod(lhs, rhs);
    case PROMQL_OP_POW: return pow(lhs, rhs);
    case PROMQL_OP_ATAN2: return atan2(lhs, rhs);
    case PROMQL_OP_EQL: *keep = lhs == rhs; return lhs;
    case PROMQL_OP_NEQ: *keep = lhs != rhs; return lhs;
    case PROMQL_OP_LSS: *keep = lhs < rhs; return lhs;
    case PROMQL_OP_LTE: *keep = lhs <= rhs; return lhs;
    case PROMQL_OP_GTR: *keep = lhs > rhs; return lhs;
    case PROMQL_OP_GTE: *keep = lhs >= rhs; return lhs;
    default: *keep = false; return 0;
    }
}

static size_t step_index(const promql_eval_range_t *range, int64_t t)
{
    return (size_t)((t - range->start) / range->step);
}

static promql_eval_value_t eval_scalar_scalar(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                              const promql_eval_range_t *range)
{
    double *l = promql_eval_scalar(ctx, node->binary.lhs, range);
    double *r = promql_eval_scalar(ctx, node->binary.rhs, range);
    for (size_t k = 0; k < range->steps; k++) {
        bool keep;
        double v = binop_value(node->binary.op, l[k], r[k], &keep);
        if (promql_binary_op_is_comparison(node->binary.op))
            v = keep ? 1 : 0;
        l[k] = v;
    }
    promql_eval_release(ctx, r);
    promql_eval_value_t out = {.type = PROMQL_VALUE_SCALAR, .scalar = l};
    return out;
}

static promql_eval_value_t eval_vector_scalar(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                              const promql_eval_range_t *range, bool swap)
{
    promql_binary_op_t op = node->binary.op;
    bool ret_bool = node->binary.return_bool;
    bool comparison = promql_binary_op_is_comparison(op);
    promql_eval_value_t vec =
        promql_eval_node(ctx, swap ? node->binary.rhs : node->binary.lhs, range);
    double *sc = promql_eval_scalar(ctx, swap ? node->binary.lhs : node->binary.rhs, range);
    for (size_t i = 0; i < vec.m.count; i++) {
        promql_eval_check(ctx);
        promql_eval_series_t *s = &vec.m.series[i];
        size_t w = 0;
        for (size_t k = 0; k < s->count; k++) {
            double lf = s->points[k].v, rf = sc[step_index(range, s->points[k].t)];
            if (swap) {
                double tmp = lf;
                lf = rf;
                rf = tmp;
            }
            bool keep;
            double v = binop_value(op, lf, rf, &keep);
            if (comparison && swap)
                v = rf;
            if (ret_bool) {
                v = keep ? 1 : 0;
                keep = true;
            }
            if (keep) {
                s->points[w].t = s->points[k].t;
                s->points[w].v = v;
                w++;
            }
        }
        promql_eval_uncount_samples(ctx, s->count - w);
        s->count = w;
        if (op_is_arithmetic(op) || ret_bool)
            s->drop_name = true;
    }
    promql_eval_release(ctx, sc);
    /* Series left without points are dropped. */
    size_t w = 0;
    for (size_t i = 0; i < vec.m.count; i++) {
        if (vec.m.series[i].count == 0) {
            promql_eval_release(ctx, vec.m.series[i].points);
            continue;
        }
        vec.m.series[w++] = vec.m.series[i];
    }
    vec.m.count = w;
    return vec;
}

/* ---------------------------------------------------------------------------------------------
 * Vector matching
 */
typedef struct matching_state {
    const promql_matching_t *matching;
    promql_series_index_t sig_index; /* signature labels -> ordinal */
    size_t sig_count;
    size_t *lhs_sig, *rhs_sig; /* per series of each side */
    promql_label_builder_t builder;
} matching_state_t;

static const promql_labels_t *signature_labels(promql_eval_ctx_t *ctx, matching_state_t *st,
                                               const promql_labels_t *ls)
{
    const promql_matching_t *mt = st->matching;
    promql_label_builder_reset(&st->builder, ls);
    if (mt && mt->on) {
        promql_label_builder_keep(&st->builder, mt->labels, mt->label_count);
    } else {
        promql_label_builder_del(&st->builder, "__name__");
        for (size_t i = 0; mt && i < mt->label_count; i++)
            promql_label_builder_del(&st->builder, mt->labels[i]);
    }
    return promql_label_builder_intern(ctx, &st->builder);
}

static size_t *signatures(promql_eval_ctx_t *ctx, matching_state_t *st,
                          const promql_eval_matrix_t *m)
{
    size_t *sig = promql_eval_alloc(ctx, (m->count + 1) * sizeof(*sig));
    for (size_t i = 0; i < m->count; i++) {
        const promql_labels_t *key = signature_labels(ctx, st, m->series[i].labels);
        sig[i] = promql_series_index_get_or_put(ctx, &st->sig_index, key, st->sig_count);
        if (sig[i] == st->sig_count)
            st->sig_count++;
    }
    return sig;
}

static void matching_init(promql_eval_ctx_t *ctx, matching_state_t *st,
                          const promql_matching_t *matching, const promql_eval_matrix_t *lhs,
                          const promql_eval_matrix_t *rhs)
{
    memset(st, 0, sizeof(*st));
    st->builder.ctx = ctx;
    st->matching = matching;
    promql_series_index_init(ctx, &st->sig_index, lhs->count + rhs->count);
    st->lhs_sig = signatures(ctx, st, lhs);
    st->rhs_sig = signatures(ctx, st, rhs);
}

static void matching_free(promql_eval_ctx_t *ctx, matching_state_t *st)
{
    promql_series_index_free(ctx, &st->sig_index);
    promql_eval_release(ctx, st->lhs_sig);
    promql_eval_release(ctx, st->rhs_sig);
    promql_label_builder_free(&st->builder);
}

static promql_eval_value_t eval_set_op(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                       const promql_eval_range_t *range, promql_eval_value_t *lhs,
                                       promql_eval_value_t *rhs)
{
    matching_state_t st;
    matching_init(ctx, &st, node->binary.matching, &lhs->m, &rhs->m);
    uint8_t *present = promql_eval_alloc(ctx, st.sig_count + 1);
    promql_vector_cursor_t lc, rc;
    promql_cursor_init(ctx, &lc, &lhs->m);
    promql_cursor_init(ctx, &rc, &rhs->m);
    promql_output_t out;
    promql_output_init(ctx, &out, range);
    for (size_t k = 0; k < range->steps; k++) {
        promql_eval_check(ctx);
        int64_t t = range->start + (int64_t)k * range->step;
        promql_cursor_gather(&lc, t);
        promql_cursor_gather(&rc, t);
        switch (node->binary.op) {
        case PROMQL_OP_AND:
            if (lc.count == 0 || rc.count == 0)
                break;
            for (size_t j = 0; j < rc.count; j++)
                present[st.rhs_sig[rc.vec[j].series]] = 1;
            for (size_t j = 0; j < lc.count; j++) {
                const promql_eval_sample_t *s = &lc.vec[j];
                if (present[st.lhs_sig[s->series]])
                    promql_output_add(ctx, &out, s->labels, s->drop_name, t, s->v);
            }
            for (size_t j = 0; j < rc.count; j++)
                present[st.rhs_sig[rc.vec[j].series]] = 0;
            break;
        case PROMQL_OP_OR:
            for (size_t j = 0; j < lc.count; j++) {
                const promql_eval_sample_t *s = &lc.vec[j];
                present[st.lhs_sig[s->series]] = 1;
                promql_output_add(ctx, &out, s->labels, s->drop_name, t, s->v);
            }
            for (size_t j = 0; j < rc.count; j++) {
                const promql_eval_sample_t *s = &rc.vec[j];
                if (!present[st.rhs_sig[s->series]])
                    promql_output_add(ctx, &out, s->labels, s->drop_name, t, s->v);
            }
            for (size_t j = 0; j < lc.count; j++)
                present[st.lhs_sig[lc.vec[j].series]] = 0;
            break;
        default: /* UNLESS */
            for (size_t j = 0; j < rc.count; j++)
                present[st.rhs_sig[rc.vec[j].series]] = 1;
            for (size_t j = 0; j < lc.count; j++) {
                const promql_eval_sample_t *s = &lc.vec[j];
                if (!present[st.lhs_sig[s->series]])
                    promql_output_add(ctx, &out, s->labels, s->drop_name, t, s->v);
            }
            for (size_t j = 0; j < rc.count; j++)
                present[st.rhs_sig[rc.vec[j].series]] = 0;
            break;
        }
    }
    promql_eval_value_t res = {.type = PROMQL_VALUE_VECTOR};
    res.m = promql_output_finish(ctx, &out);
    promql_cursor_free(ctx, &lc);
    promql_cursor_free(ctx, &rc);
    promql_eval_release(ctx, present);
    matching_free(ctx, &st);
    return res;
}

/* Prometheus's resultMetric: the labels of the result of ls op rs. */
static const promql_labels_t *result_labels(promql_eval_ctx_t *ctx, promql_label_builder_t *b,
                                            const promql_node_t *node, const promql_labels_t *ls,
                                            const promql_labels_t *rs)
{
    const promql_matching_t *mt = node->binary.matching;
    promql_label_builder_reset(b, ls);
    if (op_is_arithmetic(node->binary.op)) {
        promql_label_builder_del(b, "__name__");
        promql_label_builder_del(b, "__type__");
        promql_label_builder_del(b, "__unit__");
    }
    if (!mt || mt->card == PROMQL_CARD_ONE_TO_ONE) {
        if (mt && mt->on) {
            promql_label_builder_keep(b, mt->labels, mt->label_count);
        } else {
            for (size_t i = 0; mt && i < mt->label_count; i++)
                promql_label_builder_del(b, mt->labels[i]);
        }
    }
    for (size_t i = 0; mt && i < mt->include_count; i++) {
        const char *v = promql_labels_get(rs, mt->include[i]);
        promql_label_builder_set(b, mt->include[i], v);
    }
    return promql_label_builder_intern(ctx, b);
}

static void fail_duplicate(promql_eval_ctx_t *ctx, matching_state_t *st, bool one_to_many,
                           const promql_labels_t *a, const promql_labels_t *b)
{
    buf_t msg = BUF_INIT, group = BUF_INIT, first = BUF_INIT, second = BUF_INIT;
    promql_labels_format(signature_labels(ctx, st, a), &group);
    promql_labels_format(a, &first);
    promql_labels_format(b, &second);
    buf_printf(&msg,
               "found duplicate series for the match group %s on the %s hand-side of the "
               "operation: [%s, %s];many-to-many matching not allowed: matching labels must be "
               "unique on one side",
               group.data, one_to_many ? "left" : "right", first.data, second.data);
    char text[CAIRN_ERROR_MAX];
    snprintf(text, sizeof(text), "%s", msg.data);
    buf_free(&msg);
    buf_free(&group);
    buf_free(&first);
    buf_free(&second);
    promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION, "%s", text);
}

static promql_eval_value_t eval_vector_vector(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                              const promql_eval_range_t *range,
                                              promql_eval_value_t *lhs, promql_eval_value_t *rhs)
{
    const promql_matching_t *mt = node->binary.matching;
    promql_card_t card = mt ? mt->card : PROMQL_CARD_ONE_TO_ONE;
    bool one_to_many = card == PROMQL_CARD_ONE_TO_MANY;
    bool ret_bool = node->binary.return_bool;
    matching_state_t st;
    matching_init(ctx, &st, mt, &lhs->m, &rhs->m);
    /* "many" side first: for group_right the roles swap. */
    promql_eval_matrix_t *many = one_to_many ? &rhs->m : &lhs->m;
    promql_eval_matrix_t *one = one_to_many ? &lhs->m : &rhs->m;
    size_t *many_sig = one_to_many ? st.rhs_sig : st.lhs_sig;
    size_t *one_sig = one_to_many ? st.lhs_sig : st.rhs_sig;

    size_t *one_at = promql_eval_alloc(ctx, (st.sig_count + 1) * sizeof(size_t));
    uint8_t *matched = promql_eval_alloc(ctx, st.sig_count + 1);
    for (size_t i = 0; i < st.sig_count; i++)
        one_at[i] = SIZE_MAX;
    promql_series_index_t seen; /* result labels -> slot in stamps (many-to-one uniqueness) */
    promql_series_index_init(ctx, &seen, 16);
    size_t *stamps = NULL, stamp_count = 0, stamp_cap = 0;
    promql_label_builder_t builder = {.ctx = ctx};

    /* Result labels depend only on the pair of series: remember the last pair per "many"
     * series. */
    size_t *cache_one = promql_eval_alloc(ctx, (many->count + 1) * sizeof(size_t));
    const promql_labels_t **cache_labels =
        promql_eval_alloc(ctx, (many->count + 1) * sizeof(*cache_labels));
    for (size_t i = 0; i < many->count; i++)
        cache_one[i] = SIZE_MAX;

    promql_vector_cursor_t mc, oc;
    promql_cursor_init(ctx, &mc, many);
    promql_cursor_init(ctx, &oc, one);
    promql_output_t out;
    promql_output_init(ctx, &out, range);
    for (size_t k = 0; k < range->steps; k++) {
        promql_eval_check(ctx);
        int64_t t = range->start + (int64_t)k * range->step;
        promql_cursor_gather(&mc, t);
        promql_cursor_gather(&oc, t);
        if (mc.count == 0 || oc.count == 0)
            continue;
        for (size_t j = 0; j < oc.count; j++) {
            size_t sig = one_sig[oc.vec[j].series];
            if (one_at[sig] != SIZE_MAX)
                fail_duplicate(ctx, &st, one_to_many, oc.vec[j].labels, oc.vec[one_at[sig]].labels);
            one_at[sig] = j;
        }
        for (size_t j = 0; j < mc.count; j++) {
            const promql_eval_sample_t *ls = &mc.vec[j];
            size_t sig = many_sig[ls->series];
            if (one_at[sig] == SIZE_MAX)
                continue;
            const promql_eval_sample_t *rs = &oc.vec[one_at[sig]];
            double fl = ls->v, fr = rs->v;
            if (one_to_many) {
                fl = rs->v;
                fr = ls->v;
            }
            bool keep;
            double v = binop_value(node->binary.op, fl, fr, &keep);
            if (ret_bool)
                v = keep ? 1 : 0;
            const promql_labels_t *labels;
            if (cache_one[ls->series] == rs->series) {
                labels = cache_labels[ls->series];
            } else {
                labels = result_labels(ctx, &builder, node, ls->labels, rs->labels);
                cache_one[ls->series] = rs->series;
                cache_labels[ls->series] = labels;
            }
            if (card == PROMQL_CARD_ONE_TO_ONE) {
                if (matched[sig])
                    promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                     "multiple matches for labels: many-to-one matching must "
                                     "be explicit (group_left/group_right)");
                matched[sig] = 1;
            } else {
                size_t slot = promql_series_index_get_or_put(ctx, &seen, labels, stamp_count);
                if (slot == stamp_count) {
                    if (stamp_count == stamp_cap) {
                        stamp_cap = stamp_cap ? stamp_cap * 2 : 16;
                        stamps = promql_eval_realloc(ctx, stamps, stamp_cap * sizeof(*stamps));
                    }
                    stamps[stamp_count++] = SIZE_MAX;
                }
                if (stamps[slot] == k)
                    promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                     "multiple matches for labels: grouping labels must ensure "
                                     "unique matches");
                stamps[slot] = k;
            }
            if (!keep && !ret_bool)
                continue;
            bool drop = ret_bool || (!op_is_arithmetic(node->binary.op) && ls->drop_name);
            promql_output_add(ctx, &out, labels, drop, t, v);
        }
        for (size_t j = 0; j < oc.count; j++) {
            size_t sig = one_sig[oc.vec[j].series];
            one_at[sig] = SIZE_MAX;
            matched[sig] = 0;
        }
    }
    promql_eval_value_t res = {.type = PROMQL_VALUE_VECTOR};
    res.m = promql_output_finish(ctx, &out);
    promql_cursor_free(ctx, &mc);
    promql_cursor_free(ctx, &oc);
    promql_eval_release(ctx, one_at);
    promql_eval_release(ctx, matched);
    promql_eval_release(ctx, cache_one);
    promql_eval_release(ctx, cache_labels);
    promql_eval_release(ctx, stamps);
    promql_series_index_free(ctx, &seen);
    promql_label_builder_free(&builder);
    matching_free(ctx, &st);
    return res;
}

promql_eval_value_t promql_eval_binary(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                       const promql_eval_range_t *range)
{
    promql_value_type_t lt = promql_node_type(node->binary.lhs);
    promql_value_type_t rt = promql_node_type(node->binary.rhs);
    if (lt == PROMQL_VALUE_SCALAR && rt == PROMQL_VALUE_SCALAR)
        return eval_scalar_scalar(ctx, node, range);
    if (lt == PROMQL_VALUE_VECTOR && rt == PROMQL_VALUE_SCALAR)
        return eval_vector_scalar(ctx, node, range, false);
    if (lt == PROMQL_VALUE_SCALAR && rt == PROMQL_VALUE_VECTOR)
        return eval_vector_scalar(ctx, node, range, true);
    if (lt != PROMQL_VALUE_VECTOR || rt != PROMQL_VALUE_VECTOR)
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                         "binary expression must contain only scalar and instant vector types");
    promql_eval_value_t lhs = promql_eval_node(ctx, node->binary.lhs, range);
    promql_eval_value_t rhs = promql_eval_node(ctx, node->binary.rhs, range);
    promql_eval_value_t res;
    if (promql_binary_op_is_set(node->binary.op))
        res = eval_set_op(ctx, node, range, &lhs, &rhs);
    else
        res = eval_vector_vector(ctx, node, range, &lhs, &rhs);
    promql_eval_value_free(ctx, &lhs);
    promql_eval_value_free(ctx, &rhs);
    return res;
}
