/*
 * query/promql_eval.c: the PromQL engine (query.h) and the core of the evaluator.
 *
 * A query runs in four phases:
 *   1. parse (promql_parse) and check the expression type of a range query;
 *   2. fetch: walk the tree and compute, for every vector selector, the time span it needs over
 *      the whole query (steps, offsets, @, ranges, subquery ranges, the lookback delta); open
 *      one querier over the union of the spans, select each selector's series once and copy
 *      their samples into per-series arrays; free the querier;
 *   3. evaluate the tree over the query's steps (promql_eval_node): selectors step through the
 *      arrays with cursors, never selecting again;
 *   4. finish: drop __name__ where an operation asked for it (Prometheus 3.x's delayed name
 *      removal), check or merge the label sets that now collide, sort, and copy the result
 *      out as promql_result_t.
 * Failures anywhere in 3 unwind with longjmp to run_query, which frees the query's memory.
 *
 * Semantics follow Prometheus 3.x (reference §10): instant selector at t takes the newest
 * sample in (t - lookback, t] unless it is a stale marker; a range selector the samples in
 * (t - range, t] without stale markers; subquery steps are aligned to absolute multiples of
 * their step.
 *
 * Concurrency: the engine is shared; a counting semaphore (mutex + condition variable) admits
 * at most max_concurrency queries at a time, others wait.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/promql_eval_internal.h"

#define STALE_NAN_BITS  0x7ff0000000000002ULL
#define DEFAULT_STEP_MS 60000
#define CHECK_INTERVAL  64
#define QUERY_EXECUTION "query execution"
#define EXPRESSION_EVAL "expression evaluation"

struct promql_engine {
    tsdb_t *db;
    query_options_t opts;
    _Atomic int64_t default_step_ms; /* subquery step when a subquery gives none */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t active;
};

/* ---------------------------------------------------------------------------------------------
 * Names
 */
const char *promql_value_type_name(promql_value_type_t type)
{
    switch (type) {
    case PROMQL_VALUE_SCALAR: return "scalar";
    case PROMQL_VALUE_VECTOR: return "vector";
    case PROMQL_VALUE_MATRIX: return "matrix";
    case PROMQL_VALUE_STRING: return "string";
    default: return "none";
    }
}

const char *promql_error_type_name(promql_error_type_t type)
{
    switch (type) {
    case PROMQL_ERROR_BAD_DATA: return "bad_data";
    case PROMQL_ERROR_EXECUTION: return "execution";
    case PROMQL_ERROR_CANCELED: return "canceled";
    case PROMQL_ERROR_TIMEOUT: return "timeout";
    case PROMQL_ERROR_INTERNAL: return "internal";
    default: return "";
    }
}

unsigned promql_error_http_status(promql_error_type_t type)
{
    switch (type) {
    case PROMQL_ERROR_BAD_DATA: return 400;
    case PROMQL_ERROR_EXECUTION: return 422;
    case PROMQL_ERROR_CANCELED: return 499;
    case PROMQL_ERROR_TIMEOUT: return 503;
    case PROMQL_ERROR_INTERNAL: return 500;
    default: return 200;
    }
}

/* The type names Prometheus's parser.DocumentedType uses in messages. */
static const char *documented_type_name(promql_value_type_t type)
{
    switch (type) {
    case PROMQL_VALUE_SCALAR: return "scalar";
    case PROMQL_VALUE_VECTOR: return "instant vector";
    case PROMQL_VALUE_MATRIX: return "range vector";
    case PROMQL_VALUE_STRING: return "string";
    default: return "none";
    }
}

void promql_result_free(promql_result_t *result)
{
    if (!result)
        return;
    cairn_free(result->string);
    for (size_t i = 0; i < result->series_count; i++) {
        promql_series_t *s = &result->series[i];
        for (size_t j = 0; j < s->label_count; j++) {
            cairn_free(s->labels[j].name);
            cairn_free(s->labels[j].value);
        }
        cairn_free(s->labels);
        cairn_free(s->points);
    }
    cairn_free(result->series);
    for (size_t i = 0; i < result->warning_count; i++)
        cairn_free(result->warnings[i]);
    cairn_free(result->warnings);
    for (size_t i = 0; i < result->info_count; i++)
        cairn_free(result->infos[i]);
    cairn_free(result->infos);
    cairn_free(result->error);
    memset(result, 0, sizeof(*result));
}

/* ---------------------------------------------------------------------------------------------
 * Engine
 */
promql_engine_t *promql_engine_new(tsdb_t *db, const query_options_t *opts)
{
    promql_engine_t *e = cairn_calloc(1, sizeof(*e));
    e->db = db;
    if (opts)
        e->opts = *opts;
    else
        query_options_init(&e->opts);
    if (e->opts.lookback_delta_ms <= 0)
        e->opts.lookback_delta_ms = 5 * 60 * 1000;
    promql_engine_set_default_step(e, e->opts.evaluation_interval_ms);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    return e;
}

void promql_engine_set_default_step(promql_engine_t *engine, int64_t step_ms)
{
    atomic_store_explicit(&engine->default_step_ms, step_ms > 0 ? step_ms : DEFAULT_STEP_MS,
                          memory_order_relaxed);
}

void promql_engine_free(promql_engine_t *engine)
{
    if (!engine)
        return;
    pthread_mutex_destroy(&engine->lock);
    pthread_cond_destroy(&engine->cond);
    cairn_free(engine);
}

/* Waits for a slot. Returns PROMQL_ERROR_NONE, or CANCELED / TIMEOUT when the query is
 * canceled or its deadline (monotonic seconds) passes while it waits. */
static promql_error_type_t engine_acquire(promql_engine_t *e, atomic_bool *cancel, double deadline)
{
    promql_error_type_t rc = PROMQL_ERROR_NONE;
    pthread_mutex_lock(&e->lock);
    while (e->opts.max_concurrency > 0 && e->active >= e->opts.max_concurrency) {
        if (cancel && atomic_load(cancel)) {
            rc = PROMQL_ERROR_CANCELED;
            break;
        }
        if (time_monotonic_seconds() > deadline) {
            rc = PROMQL_ERROR_TIMEOUT;
            break;
        }
        /* Wake up now and then to notice cancellation and the deadline. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&e->cond, &e->lock, &ts);
    }
    if (rc == PROMQL_ERROR_NONE)
        e->active++;
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static void engine_release(promql_engine_t *e)
{
    pthread_mutex_lock(&e->lock);
    e->active--;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

/* ---------------------------------------------------------------------------------------------
 * Failure, limits, annotations
 */
void promql_eval_fail(promql_eval_ctx_t *ctx, promql_error_type_t type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof(ctx->error), fmt, ap);
    va_end(ap);
    ctx->error_type = type;
    longjmp(ctx->jmp, 1);
}

static void check_deadline(promql_eval_ctx_t *ctx, const char *where)
{
    if (ctx->cancel && atomic_load_explicit(ctx->cancel, memory_order_relaxed))
        promql_eval_fail(ctx, PROMQL_ERROR_CANCELED, "query was canceled in %s", where);
    if (time_monotonic_seconds() > ctx->deadline)
        promql_eval_fail(ctx, PROMQL_ERROR_TIMEOUT, "query timed out in %s", where);
}

void promql_eval_check(promql_eval_ctx_t *ctx)
{
    if (ctx->cancel && atomic_load_explicit(ctx->cancel, memory_order_relaxed))
        promql_eval_fail(ctx, PROMQL_ERROR_CANCELED, "query was canceled in " EXPRESSION_EVAL);
    if (++ctx->check_counter % CHECK_INTERVAL == 0 && time_monotonic_seconds() > ctx->deadline)
        promql_eval_fail(ctx, PROMQL_ERROR_TIMEOUT, "query timed out in " EXPRESSION_EVAL);
}

void promql_eval_count_samples(promql_eval_ctx_t *ctx, size_t n)
{
    ctx->samples += n;
    if (ctx->samples > ctx->max_samples)
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                         "query processing would load too many samples into memory in "
                         "%s",
                         QUERY_EXECUTION);
}

void promql_eval_uncount_samples(promql_eval_ctx_t *ctx, size_t n)
{
    ctx->samples = ctx->samples >= n ? ctx->samples - n : 0;
}

void promql_eval_annotate(promql_eval_ctx_t *ctx, bool info, promql_pos_t pos, const char *fmt, ...)
{
    buf_t b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    unsigned line = 1, chr = 1;
    promql_position_line_char(ctx->query, pos.start, &line, &chr);
    buf_printf(&b, " (%u:%u)", line, chr);
    for (size_t i = 0; i < ctx->annotation_count; i++) {
        if (strcmp(ctx->annotations[i].text, b.data) == 0) {
            buf_free(&b);
            return;
        }
    }
    if (ctx->annotation_count == ctx->annotation_cap) {
        ctx->annotation_cap = ctx->annotation_cap ? ctx->annotation_cap * 2 : 4;
        ctx->annotations = promql_eval_realloc(ctx, ctx->annotations,
                                               ctx->annotation_cap * sizeof(*ctx->annotations));
    }
    promql_annotation_t *a = &ctx->annotations[ctx->annotation_count++];
    a->info = info;
    a->text = promql_eval_alloc(ctx, b.len + 1);
    memcpy(a->text, b.data, b.len + 1);
    buf_free(&b);
}

const char *promql_format_float(double v, char *buf, size_t size)
{
    float_format_go(v, 'g', buf, size);
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */
const promql_node_t *promql_unwrap_parens(const promql_node_t *node)
{
    while (node && node->kind == PROMQL_NODE_PAREN)
        node = node->paren.expr;
    return node;
}

promql_eval_series_t *promql_matrix_add(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m,
                                        const promql_labels_t *labels, bool drop_name)
{
    if (m->count == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->series = promql_eval_realloc(ctx, m->series, m->cap * sizeof(*m->series));
    }
    promql_eval_series_t *s = &m->series[m->count++];
    memset(s, 0, sizeof(*s));
    s->labels = labels;
    s->drop_name = drop_name;
    return s;
}

void promql_series_push(promql_eval_ctx_t *ctx, promql_eval_series_t *s, int64_t t, double v)
{
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->points = promql_eval_realloc(ctx, s->points, s->cap * sizeof(*s->points));
    }
    s->points[s->count].t = t;
    s->points[s->count].v = v;
    s->count++;
    promql_eval_count_samples(ctx, 1);
    if ((s->count & 1023) == 0)
        check_deadline(ctx, EXPRESSION_EVAL);
}

void promql_matrix_free(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m)
{
    for (size_t i = 0; i < m->count; i++) {
        promql_eval_uncount_samples(ctx, m->series[i].count);
        promql_eval_release(ctx, m->series[i].points);
    }
    promql_eval_release(ctx, m->series);
    memset(m, 0, sizeof(*m));
}

void promql_eval_value_free(promql_eval_ctx_t *ctx, promql_eval_value_t *v)
{
    promql_eval_release(ctx, v->scalar);
    promql_matrix_free(ctx, &v->m);
    memset(v, 0, sizeof(*v));
}

void promql_cursor_init(promql_eval_ctx_t *ctx, promql_vector_cursor_t *c,
                        const promql_eval_matrix_t *m)
{
    c->m = m;
    c->pos = promql_eval_alloc(ctx, (m->count + 1) * sizeof(*c->pos));
    c->vec = promql_eval_alloc(ctx, (m->count + 1) * sizeof(*c->vec));
    c->count = 0;
}

void promql_cursor_gather(promql_vector_cursor_t *c, int64_t t)
{
    c->count = 0;
    for (size_t i = 0; i < c->m->count; i++) {
        const promql_eval_series_t *s = &c->m->series[i];
        size_t p = c->pos[i];
        while (p < s->count && s->points[p].t < t)
            p++;
        c->pos[i] = p;
        if (p < s->count && s->points[p].t == t) {
            promql_eval_sample_t *e = &c->vec[c->count++];
            e->labels = s->labels;
            e->v = s->points[p].v;
            e->t = t;
            e->series = (uint32_t)i;
            e->drop_name = s->drop_name;
        }
    }
}

void promql_cursor_free(promql_eval_ctx_t *ctx, promql_vector_cursor_t *c)
{
    promql_eval_release(ctx, c->pos);
    promql_eval_release(ctx, c->vec);
    c->pos = NULL;
    c->vec = NULL;
}

void promql_output_init(promql_eval_ctx_t *ctx, promql_output_t *o,
                        const promql_eval_range_t *range)
{
    memset(o, 0, sizeof(*o));
    o->range = range;
    if (range->steps > 1)
        promql_series_index_init(ctx, &o->index, 16);
}

void promql_output_add(promql_eval_ctx_t *ctx, promql_output_t *o, const promql_labels_t *labels,
                       bool drop_name, int64_t t, double v)
{
    promql_eval_series_t *s;
    if (o->range->steps <= 1) {
        s = promql_matrix_add(ctx, &o->m, labels, drop_name);
    } else {
        size_t i = promql_series_index_get_or_put(ctx, &o->index, labels, o->m.count);
        if (i == o->m.count) {
            s = promql_matrix_add(ctx, &o->m, labels, drop_name);
        } else {
            s = &o->m.series[i];
            if (s->count > 0 && s->points[s->count - 1].t == t)
                promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                 "vector cannot contain metrics with the same labelset");
        }
    }
    promql_series_push(ctx, s, t, v);
}

promql_eval_matrix_t promql_output_finish(promql_eval_ctx_t *ctx, promql_output_t *o)
{
    if (o->index.keys)
        promql_series_index_free(ctx, &o->index);
    promql_eval_matrix_t m = o->m;
    memset(&o->m, 0, sizeof(o->m));
    return m;
}

/* ---------------------------------------------------------------------------------------------
 * Fetching
 */
typedef struct fetch_span {
    const promql_node_t *selector;
    int64_t min_t, max_t;
    bool range; /* under a matrix selector: stale markers are dropped when copying */
} fetch_span_t;

typedef struct fetch_plan {
    fetch_span_t *spans;
    size_t count, cap;
} fetch_plan_t;

static int64_t at_time(const promql_eval_ctx_t *ctx, promql_at_t at, int64_t at_ms)
{
    switch (at) {
    case PROMQL_AT_START: return ctx->query_start;
    case PROMQL_AT_END: return ctx->query_end;
    default: return at_ms;
    }
}

static int64_t subquery_step(const promql_eval_ctx_t *ctx, const promql_node_t *node)
{
    return node->subquery.step_ms > 0 ? node->subquery.step_ms : ctx->subquery_step_ms;
}

/* The inner timeline of a subquery evaluated over range (Prometheus's absolute alignment:
 * the first step is the smallest multiple of the step after start - offset - range). */
static promql_eval_range_t subquery_range(const promql_eval_ctx_t *ctx, const promql_node_t *node,
                                          const promql_eval_range_t *range)
{
    int64_t start = range->start, end = range->end;
    if (node->subquery.at != PROMQL_AT_NONE)
        start = end = at_time(ctx, node->subquery.at, node->subquery.at_ms);
    int64_t step = subquery_step(ctx, node);
    int64_t lower = start - node->subquery.offset_ms - node->subquery.range_ms;
    promql_eval_range_t r;
    r.step = step;
    r.start = step * (lower / step); /* truncates toward zero, as Go */
    if (r.start <= lower)
        r.start += step;
    r.end = end - node->subquery.offset_ms;
    r.steps = r.end >= r.start ? (size_t)((r.end - r.start) / step) + 1 : 0;
    return r;
}

static void plan_walk(promql_eval_ctx_t *ctx, fetch_plan_t *plan, const promql_node_t *node,
                      int64_t start, int64_t end, int64_t range_ms)
{
    if (!node)
        return;
    switch (node->kind) {
    case PROMQL_NODE_VECTOR_SELECTOR: {
        if (node->selector.at != PROMQL_AT_NONE)
            start = end = at_time(ctx, node->selector.at, node->selector.at_ms);
        start -= node->selector.offset_ms;
        end -= node->selector.offset_ms;
        start -= (range_ms > 0 ? range_ms : ctx->lookback_ms) - 1;
        if (plan->count == plan->cap) {
            plan->cap = plan->cap ? plan->cap * 2 : 8;
            plan->spans = promql_eval_realloc(ctx, plan->spans, plan->cap * sizeof(fetch_span_t));
        }
        fetch_span_t *s = &plan->spans[plan->count++];
        s->selector = node;
        s->min_t = start;
        s->max_t = end;
        s->range = range_ms > 0;
        return;
    }
    case PROMQL_NODE_MATRIX_SELECTOR:
        plan_walk(ctx, plan, node->matrix.vector, start, end, node->matrix.range_ms);
        return;
    case PROMQL_NODE_SUBQUERY: {
        if (node->subquery.at != PROMQL_AT_NONE)
            start = end = at_time(ctx, node->subquery.at, node->subquery.at_ms);
        plan_walk(ctx, plan, node->subquery.expr,
                  start - node->subquery.offset_ms - node->subquery.range_ms,
                  end - node->subquery.offset_ms, 0);
        return;
    }
    case PROMQL_NODE_PAREN: plan_walk(ctx, plan, node->paren.expr, start, end, 0); return;
    case PROMQL_NODE_UNARY: plan_walk(ctx, plan, node->unary.expr, start, end, 0); return;
    case PROMQL_NODE_BINARY:
        plan_walk(ctx, plan, node->binary.lhs, start, end, 0);
        plan_walk(ctx, plan, node->binary.rhs, start, end, 0);
        return;
    case PROMQL_NODE_AGGREGATE:
        plan_walk(ctx, plan, node->aggregate.param, start, end, 0);
        plan_walk(ctx, plan, node->aggregate.expr, start, end, 0);
        return;
    case PROMQL_NODE_CALL:
        for (size_t i = 0; i < node->call.arg_count; i++)
            plan_walk(ctx, plan, node->call.args[i], start, end, 0);
        return;
    default: return;
    }
}

static const promql_labels_t *intern_tsdb_labels(promql_eval_ctx_t *ctx, const tsdb_label_t *labels,
                                                 size_t n)
{
    promql_label_t stack[64];
    promql_label_t *items = n <= 64 ? stack : cairn_malloc(n * sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        items[i].name = labels[i].name;
        items[i].value = labels[i].value;
    }
    const promql_labels_t *r = promql_labels_intern(ctx, items, n);
    if (items != stack)
        cairn_free(items);
    return r;
}

/* Copies one selector's series. Returns 0, or -1 with ctx->error set (no longjmp here: the
 * querier and matchers must be freed by the caller first). */
static int fetch_selector(promql_eval_ctx_t *ctx, tsdb_querier_t *q, const fetch_span_t *span,
                          promql_fetched_t *out)
{
    const promql_node_t *sel = span->selector;
    size_t mc = sel->selector.matcher_count;
    tsdb_matcher_t **matchers = cairn_calloc(mc ? mc : 1, sizeof(*matchers));
    int rc = 0;
    for (size_t i = 0; i < mc; i++) {
        cairn_error_t err = {{0}};
        const promql_matcher_t *m = &sel->selector.matchers[i];
        matchers[i] = tsdb_matcher_new(m->type, m->name, m->value, &err);
        if (!matchers[i]) {
            snprintf(ctx->error, sizeof(ctx->error), "%s", err.message);
            ctx->error_type = PROMQL_ERROR_BAD_DATA;
            rc = -1;
            goto done;
        }
    }
    out->selector = sel;
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)matchers, mc);
    if (!set)
        goto done;
    size_t cap = tsdb_series_set_count(set);
    out->series = promql_eval_alloc(ctx, (cap + 1) * sizeof(*out->series));
    out->count = 0;
    while (tsdb_series_set_next(set)) {
        const tsdb_label_t *labels;
        size_t n = tsdb_series_set_labels(set, &labels);
        size_t scap = 16, count = 0;
        int64_t *ts = promql_eval_alloc(ctx, scap * sizeof(*ts));
        double *vs = promql_eval_alloc(ctx, scap * sizeof(*vs));
        int64_t t;
        double v;
        while (tsdb_series_set_sample(set, &t, &v)) {
            if (t < span->min_t || t > span->max_t)
                continue;
            if (span->range) {
                uint64_t bits;
                memcpy(&bits, &v, sizeof(bits));
                if (bits == STALE_NAN_BITS)
                    continue;
            }
            if (count == scap) {
                scap *= 2;
                ts = promql_eval_realloc(ctx, ts, scap * sizeof(*ts));
                vs = promql_eval_realloc(ctx, vs, scap * sizeof(*vs));
            }
            ts[count] = t;
            vs[count] = v;
            count++;
        }
        if (count == 0 || out->count == cap) {
            promql_eval_release(ctx, ts);
            promql_eval_release(ctx, vs);
            continue;
        }
        promql_fetched_series_t *fs = &out->series[out->count++];
        fs->labels = intern_tsdb_labels(ctx, labels, n);
        fs->t = ts;
        fs->v = vs;
        fs->count = count;
    }
    tsdb_series_set_free(set);
done:
    for (size_t i = 0; i < mc; i++)
        if (matchers[i])
            tsdb_matcher_free(matchers[i]);
    cairn_free(matchers);
    return rc;
}

static int fetch_all(promql_eval_ctx_t *ctx, tsdb_t *db, const promql_node_t *root,
                     const promql_eval_range_t *range)
{
    fetch_plan_t plan = {0};
    plan_walk(ctx, &plan, root, range->start, range->end, 0);
    if (plan.count == 0)
        return 0;
    int64_t min_t = INT64_MAX, max_t = INT64_MIN;
    for (size_t i = 0; i < plan.count; i++) {
        if (plan.spans[i].min_t < min_t)
            min_t = plan.spans[i].min_t;
        if (plan.spans[i].max_t > max_t)
            max_t = plan.spans[i].max_t;
    }
    ctx->fetched = promql_eval_alloc(ctx, plan.count * sizeof(*ctx->fetched));
    int rc = 0;
    if (max_t < min_t) {
        for (size_t i = 0; i < plan.count; i++)
            ctx->fetched[i].selector = plan.spans[i].selector;
        ctx->fetched_count = plan.count;
        return 0;
    }
    tsdb_querier_t *q = tsdb_querier_new(db, min_t, max_t);
    for (size_t i = 0; i < plan.count && rc == 0; i++) {
        rc = fetch_selector(ctx, q, &plan.spans[i], &ctx->fetched[i]);
        ctx->fetched[i].selector = plan.spans[i].selector;
        ctx->fetched_count = i + 1;
    }
    tsdb_querier_free(q);
    promql_eval_release(ctx, plan.spans);
    return rc;
}

static const promql_fetched_t *fetched_for(promql_eval_ctx_t *ctx, const promql_node_t *sel)
{
    for (size_t i = 0; i < ctx->fetched_count; i++)
        if (ctx->fetched[i].selector == sel)
            return &ctx->fetched[i];
    promql_eval_fail(ctx, PROMQL_ERROR_INTERNAL, "selector was not fetched");
}

/* ---------------------------------------------------------------------------------------------
 * Selectors
 */
static bool is_stale(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits == STALE_NAN_BITS;
}

static promql_eval_value_t eval_vector_selector(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                                const promql_eval_range_t *range)
{
    promql_eval_value_t out = {.type = PROMQL_VALUE_VECTOR};
    const promql_fetched_t *f = fetched_for(ctx, node);
    bool at = node->selector.at != PROMQL_AT_NONE;
    int64_t at_t = at ? at_time(ctx, node->selector.at, node->selector.at_ms) : 0;
    for (size_t i = 0; i < f->count; i++) {
        promql_eval_check(ctx);
        const promql_fetched_series_t *fs = &f->series[i];
        promql_eval_series_t *s = NULL;
        size_t j = 0; /* samples with t <= ref */
        for (size_t k = 0; k < range->steps; k++) {
            int64_t t = range->start + (int64_t)k * range->step;
            int64_t ref = (at ? at_t : t) - node->selector.offset_ms;
            while (j < fs->count && fs->t[j] <= ref)
                j++;
            if (j == 0)
                continue;
            if (fs->t[j - 1] <= ref - ctx->lookback_ms || is_stale(fs->v[j - 1]))
                continue;
            if (!s)
                s = promql_matrix_add(ctx, &out.m, fs->labels, false);
            promql_series_push(ctx, s, t, fs->v[j - 1]);
        }
    }
    return out;
}

promql_eval_matrix_t promql_eval_selector_timestamps(promql_eval_ctx_t *ctx,
                                                     const promql_node_t *node,
                                                     const promql_eval_range_t *range)
{
    promql_eval_matrix_t out = {0};
    const promql_fetched_t *f = fetched_for(ctx, node);
    bool at = node->selector.at != PROMQL_AT_NONE;
    int64_t at_t = at ? at_time(ctx, node->selector.at, node->selector.at_ms) : 0;
    for (size_t i = 0; i < f->count; i++) {
        promql_eval_check(ctx);
        const promql_fetched_series_t *fs = &f->series[i];
        promql_eval_series_t *s = NULL;
        size_t j = 0;
        for (size_t k = 0; k < range->steps; k++) {
            int64_t t = range->start + (int64_t)k * range->step;
            int64_t ref = (at ? at_t : t) - node->selector.offset_ms;
            while (j < fs->count && fs->t[j] <= ref)
                j++;
            if (j == 0 || fs->t[j - 1] <= ref - ctx->lookback_ms || is_stale(fs->v[j - 1]))
                continue;
            if (!s)
                s = promql_matrix_add(ctx, &out, fs->labels, true);
            promql_series_push(ctx, s, t, (double)fs->t[j - 1] / 1000.0);
        }
    }
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * Range arguments (matrix selectors and subqueries)
 */
void promql_range_arg_init(promql_eval_ctx_t *ctx, promql_range_arg_t *a, const promql_node_t *node,
                           const promql_eval_range_t *range)
{
    memset(a, 0, sizeof(*a));
    node = promql_unwrap_parens(node);
    a->node = node;
    if (node->kind == PROMQL_NODE_MATRIX_SELECTOR) {
        const promql_node_t *vs = node->matrix.vector;
        a->fetched = fetched_for(ctx, vs);
        a->series_count = a->fetched->count;
        a->range_ms = node->matrix.range_ms;
        a->offset_ms = vs->selector.offset_ms;
        a->at = vs->selector.at;
        a->at_ms = at_time(ctx, vs->selector.at, vs->selector.at_ms);
    } else if (node->kind == PROMQL_NODE_SUBQUERY) {
        promql_eval_range_t inner = subquery_range(ctx, node, range);
        if (inner.steps > 0) {
            promql_eval_value_t v = promql_eval_node(ctx, node->subquery.expr, &inner);
            a->owned = v.m;
            promql_eval_release(ctx, v.scalar);
        }
        /* Series whose name an inner operation dropped lose it now (the window functions
         * keep their input's labels). */
        for (size_t i = 0; i < a->owned.count; i++) {
            promql_eval_series_t *s = &a->owned.series[i];
            if (s->drop_name) {
                s->labels = promql_labels_drop_metadata(ctx, s->labels);
                s->drop_name = false;
            }
        }
        a->series_count = a->owned.count;
        a->range_ms = node->subquery.range_ms;
        a->offset_ms = node->subquery.offset_ms;
        a->at = node->subquery.at;
        a->at_ms = at_time(ctx, node->subquery.at, node->subquery.at_ms);
    } else {
        promql_eval_fail(ctx, PROMQL_ERROR_INTERNAL, "expected a range vector argument");
    }
    a->lo = promql_eval_alloc(ctx, (a->series_count + 1) * sizeof(*a->lo));
    a->hi = promql_eval_alloc(ctx, (a->series_count + 1) * sizeof(*a->hi));
}

const promql_labels_t *promql_range_arg_labels(const promql_range_arg_t *a, size_t i)
{
    return a->fetched ? a->fetched->series[i].labels : a->owned.series[i].labels;
}

/* A window is loaded into memory as Prometheus's would be: it counts against max_samples. */
static void window_check(promql_eval_ctx_t *ctx, size_t count)
{
    if (ctx->samples + count > ctx->max_samples)
        promql_eval_count_samples(ctx, count); /* fails */
}

size_t promql_range_arg_window(promql_eval_ctx_t *ctx, promql_range_arg_t *a, size_t i, int64_t t,
                               promql_point_t **buf, size_t *buf_cap, int64_t *start, int64_t *end)
{
    int64_t ref = (a->at != PROMQL_AT_NONE ? a->at_ms : t) - a->offset_ms;
    int64_t lower = ref - a->range_ms;
    *start = lower;
    *end = ref;
    size_t n;
    size_t lo = a->lo[i], hi = a->hi[i];
    if (a->fetched) {
        const promql_fetched_series_t *fs = &a->fetched->series[i];
        n = fs->count;
        if (lo > n || (lo > 0 && fs->t[lo - 1] > lower))
            lo = hi = 0; /* windows moved backwards (not expected); restart */
        while (lo < n && fs->t[lo] <= lower)
            lo++;
        if (hi < lo)
            hi = lo;
        while (hi < n && fs->t[hi] <= ref)
            hi++;
        size_t count = hi - lo;
        window_check(ctx, count);
        if (count > *buf_cap) {
            *buf_cap = count * 2;
            *buf = promql_eval_realloc(ctx, *buf, *buf_cap * sizeof(**buf));
        }
        for (size_t k = 0; k < count; k++) {
            (*buf)[k].t = fs->t[lo + k];
            (*buf)[k].v = fs->v[lo + k];
        }
        a->lo[i] = lo;
        a->hi[i] = hi;
        return count;
    }
    const promql_eval_series_t *s = &a->owned.series[i];
    n = s->count;
    if (lo > n || (lo > 0 && s->points[lo - 1].t > lower))
        lo = hi = 0;
    while (lo < n && s->points[lo].t <= lower)
        lo++;
    if (hi < lo)
        hi = lo;
    while (hi < n && s->points[hi].t <= ref)
        hi++;
    size_t count = hi - lo;
    window_check(ctx, count);
    if (count > *buf_cap) {
        *buf_cap = count * 2;
        *buf = promql_eval_realloc(ctx, *buf, *buf_cap * sizeof(**buf));
    }
    memcpy(*buf, s->points + lo, count * sizeof(**buf));
    a->lo[i] = lo;
    a->hi[i] = hi;
    return count;
}

void promql_range_arg_free(promql_eval_ctx_t *ctx, promql_range_arg_t *a)
{
    promql_matrix_free(ctx, &a->owned);
    promql_eval_release(ctx, a->lo);
    promql_eval_release(ctx, a->hi);
    a->lo = a->hi = NULL;
}

/* A range vector as a value (only at a single step: an instant query). */
static promql_eval_value_t eval_range_vector(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                             const promql_eval_range_t *range)
{
    promql_eval_value_t out = {.type = PROMQL_VALUE_MATRIX};
    if (range->steps != 1)
        promql_eval_fail(ctx, PROMQL_ERROR_INTERNAL,
                         "cannot do range evaluation of matrix selector");
    promql_range_arg_t a;
    promql_range_arg_init(ctx, &a, node, range);
    promql_point_t *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < a.series_count; i++) {
        int64_t ws, we;
        size_t n = promql_range_arg_window(ctx, &a, i, range->start, &buf, &cap, &ws, &we);
        if (n == 0)
            continue;
        promql_eval_series_t *s =
            promql_matrix_add(ctx, &out.m, promql_range_arg_labels(&a, i), false);
        for (size_t k = 0; k < n; k++)
            promql_series_push(ctx, s, buf[k].t, buf[k].v);
    }
    promql_eval_release(ctx, buf);
    promql_range_arg_free(ctx, &a);
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation
 */
double *promql_eval_scalar(promql_eval_ctx_t *ctx, const promql_node_t *node,
                           const promql_eval_range_t *range)
{
    promql_eval_value_t v = promql_eval_node(ctx, node, range);
    if (v.type != PROMQL_VALUE_SCALAR)
        promql_eval_fail(ctx, PROMQL_ERROR_INTERNAL, "expected a scalar, got %s",
                         promql_value_type_name(v.type));
    double *s = v.scalar;
    v.scalar = NULL;
    promql_eval_value_free(ctx, &v);
    return s;
}

static double *new_scalar(promql_eval_ctx_t *ctx, const promql_eval_range_t *range)
{
    return promql_eval_alloc(ctx, (range->steps + 1) * sizeof(double));
}

promql_eval_value_t promql_eval_node(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                     const promql_eval_range_t *range)
{
    promql_eval_check(ctx);
    promql_eval_value_t out = {.type = PROMQL_VALUE_NONE};
    switch (node->kind) {
    case PROMQL_NODE_NUMBER:
        out.type = PROMQL_VALUE_SCALAR;
        out.scalar = new_scalar(ctx, range);
        for (size_t k = 0; k < range->steps; k++)
            out.scalar[k] = node->number;
        return out;
    case PROMQL_NODE_STRING:
        out.type = PROMQL_VALUE_STRING;
        out.string = promql_eval_arena_strdup(ctx, node->string, strlen(node->string));
        return out;
    case PROMQL_NODE_PAREN: return promql_eval_node(ctx, node->paren.expr, range);
    case PROMQL_NODE_VECTOR_SELECTOR: return eval_vector_selector(ctx, node, range);
    case PROMQL_NODE_MATRIX_SELECTOR:
    case PROMQL_NODE_SUBQUERY: return eval_range_vector(ctx, node, range);
    case PROMQL_NODE_UNARY: {
        out = promql_eval_node(ctx, node->unary.expr, range);
        if (node->unary.op != PROMQL_OP_SUB)
            return out;
        if (out.type == PROMQL_VALUE_SCALAR) {
            for (size_t k = 0; k < range->steps; k++)
                out.scalar[k] = -out.scalar[k];
        } else {
            for (size_t i = 0; i < out.m.count; i++) {
                promql_eval_series_t *s = &out.m.series[i];
                s->drop_name = true;
                for (size_t k = 0; k < s->count; k++)
                    s->points[k].v = -s->points[k].v;
            }
        }
        return out;
    }
    case PROMQL_NODE_BINARY: return promql_eval_binary(ctx, node, range);
    case PROMQL_NODE_AGGREGATE: return promql_eval_aggregate(ctx, node, range);
    case PROMQL_NODE_CALL: return promql_eval_call(ctx, node, range);
    }
    promql_eval_fail(ctx, PROMQL_ERROR_INTERNAL, "unknown expression node");
}

/* ---------------------------------------------------------------------------------------------
 * Finishing
 */
static int compare_series_labels(const void *a, const void *b)
{
    const promql_eval_series_t *x = a, *y = b;
    return promql_labels_compare(x->labels, y->labels);
}

static int compare_points_time(const void *a, const void *b)
{
    const promql_point_t *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

/* Drops names where asked, then merges series that now share labels (range results) or fails
 * (instant vectors). Sorts by labels unless ordered. */
static void finish_matrix(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m, bool instant_vector,
                          bool ordered)
{
    for (size_t i = 0; i < m->count; i++) {
        if (m->series[i].drop_name) {
            m->series[i].labels = promql_labels_drop_metadata(ctx, m->series[i].labels);
            m->series[i].drop_name = false;
        }
    }
    if (m->count < 2)
        return;
    promql_eval_series_t *sorted = m->series;
    if (ordered) {
        sorted = promql_eval_alloc(ctx, m->count * sizeof(*sorted));
        memcpy(sorted, m->series, m->count * sizeof(*sorted));
    }
    qsort(sorted, m->count, sizeof(*sorted), compare_series_labels);
    bool dup = false;
    for (size_t i = 1; i < m->count && !dup; i++)
        dup = sorted[i].labels == sorted[i - 1].labels;
    if (ordered)
        promql_eval_release(ctx, sorted);
    if (!dup)
        return;
    if (instant_vector)
        promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                         "vector cannot contain metrics with the same labelset");
    /* Merge runs of equal labels (m->series is sorted here: ordered is only for vectors). */
    size_t w = 0;
    for (size_t i = 0; i < m->count; i++) {
        if (w > 0 && m->series[w - 1].labels == m->series[i].labels) {
            promql_eval_series_t *dst = &m->series[w - 1], *src = &m->series[i];
            for (size_t k = 0; k < src->count; k++) {
                if (dst->count == dst->cap) {
                    dst->cap = dst->cap ? dst->cap * 2 : 4;
                    dst->points =
                        promql_eval_realloc(ctx, dst->points, dst->cap * sizeof(*dst->points));
                }
                dst->points[dst->count++] = src->points[k];
            }
            promql_eval_release(ctx, src->points);
            qsort(dst->points, dst->count, sizeof(*dst->points), compare_points_time);
            for (size_t k = 1; k < dst->count; k++)
                if (dst->points[k].t == dst->points[k - 1].t)
                    promql_eval_fail(ctx, PROMQL_ERROR_EXECUTION,
                                     "vector cannot contain metrics with the same labelset");
            continue;
        }
        m->series[w++] = m->series[i];
    }
    m->count = w;
}

static bool root_is_ordered(const promql_node_t *root)
{
    root = promql_unwrap_parens(root);
    if (root->kind == PROMQL_NODE_CALL) {
        switch (root->call.func->id) {
        case PROMQL_FN_SORT:
        case PROMQL_FN_SORT_DESC:
        case PROMQL_FN_SORT_BY_LABEL:
        case PROMQL_FN_SORT_BY_LABEL_DESC: return true;
        default: return false;
        }
    }
    if (root->kind == PROMQL_NODE_AGGREGATE)
        return root->aggregate.op == PROMQL_AGG_TOPK || root->aggregate.op == PROMQL_AGG_BOTTOMK;
    return false;
}

static void copy_series_out(const promql_eval_series_t *s, promql_series_t *out, bool at_time,
                            int64_t t)
{
    out->label_count = s->labels->count;
    out->labels = cairn_calloc(s->labels->count ? s->labels->count : 1, sizeof(label_pair_t));
    for (size_t j = 0; j < s->labels->count; j++) {
        out->labels[j].name = cairn_strdup(s->labels->items[j].name);
        out->labels[j].value = cairn_strdup(s->labels->items[j].value);
    }
    out->point_count = s->count;
    out->points = cairn_malloc((s->count ? s->count : 1) * sizeof(promql_point_t));
    memcpy(out->points, s->points, s->count * sizeof(promql_point_t));
    if (at_time)
        for (size_t k = 0; k < s->count; k++)
            out->points[k].t = t;
}

static void build_result(promql_eval_ctx_t *ctx, const promql_node_t *root, promql_eval_value_t *v,
                         const promql_eval_range_t *range, promql_result_t *out)
{
    bool range_query = ctx->range_query;
    switch (v->type) {
    case PROMQL_VALUE_STRING:
        out->type = PROMQL_VALUE_STRING;
        out->t = range->start;
        out->string = cairn_strdup(v->string);
        return;
    case PROMQL_VALUE_SCALAR:
        if (!range_query) {
            out->type = PROMQL_VALUE_SCALAR;
            out->t = range->start;
            out->scalar = v->scalar[0];
            return;
        }
        out->type = PROMQL_VALUE_MATRIX;
        out->series = cairn_calloc(1, sizeof(promql_series_t));
        out->series_count = 1;
        out->series[0].labels = cairn_calloc(1, sizeof(label_pair_t));
        out->series[0].points = cairn_malloc((range->steps + 1) * sizeof(promql_point_t));
        for (size_t k = 0; k < range->steps; k++) {
            out->series[0].points[k].t = range->start + (int64_t)k * range->step;
            out->series[0].points[k].v = v->scalar[k];
        }
        out->series[0].point_count = range->steps;
        return;
    case PROMQL_VALUE_VECTOR:
    case PROMQL_VALUE_MATRIX: {
        bool vector = v->type == PROMQL_VALUE_VECTOR && !range_query;
        bool ordered = vector && root_is_ordered(root);
        finish_matrix(ctx, &v->m, vector, ordered);
        if (!ordered && v->m.count > 1)
            qsort(v->m.series, v->m.count, sizeof(*v->m.series), compare_series_labels);
        out->type = vector ? PROMQL_VALUE_VECTOR : PROMQL_VALUE_MATRIX;
        out->ordered = ordered;
        out->t = range->start;
        size_t n = 0;
        out->series = cairn_calloc(v->m.count ? v->m.count : 1, sizeof(promql_series_t));
        for (size_t i = 0; i < v->m.count; i++) {
            if (v->m.series[i].count == 0)
                continue;
            copy_series_out(&v->m.series[i], &out->series[n++], vector, range->start);
        }
        out->series_count = n;
        return;
    }
    default: return;
    }
}

static void copy_annotations(promql_eval_ctx_t *ctx, promql_result_t *out)
{
    size_t warnings = 0, infos = 0;
    for (size_t i = 0; i < ctx->annotation_count; i++) {
        if (ctx->annotations[i].info)
            infos++;
        else
            warnings++;
    }
    if (warnings)
        out->warnings = cairn_calloc(warnings, sizeof(char *));
    if (infos)
        out->infos = cairn_calloc(infos, sizeof(char *));
    for (size_t i = 0; i < ctx->annotation_count; i++) {
        if (ctx->annotations[i].info)
            out->infos[out->info_count++] = cairn_strdup(ctx->annotations[i].text);
        else
            out->warnings[out->warning_count++] = cairn_strdup(ctx->annotations[i].text);
    }
}

static void set_error(promql_result_t *out, promql_error_type_t type, const char *msg)
{
    out->type = PROMQL_VALUE_NONE;
    out->error_type = type;
    out->error = cairn_strdup(msg);
}

/* Runs query over range. ctx fields that need no cleanup live on the stack; volatile keeps
 * the values setjmp must see. */
static int run_query(promql_engine_t *engine, const char *query, promql_eval_range_t range,
                     bool range_query, const promql_query_params_t *params, promql_result_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!query) {
        set_error(out, PROMQL_ERROR_BAD_DATA, "empty query");
        return -1;
    }
    double started = time_monotonic_seconds();
    int64_t timeout_ms =
        params && params->timeout_ms > 0 ? params->timeout_ms : engine->opts.timeout_ms;
    double deadline = started + (timeout_ms > 0 ? (double)timeout_ms / 1000.0 : 1e12);
    promql_error_type_t queued = engine_acquire(engine, params ? params->cancel : NULL, deadline);
    if (queued != PROMQL_ERROR_NONE) {
        set_error(out, queued,
                  queued == PROMQL_ERROR_CANCELED ? "query was canceled in " QUERY_EXECUTION
                                                  : "query timed out in " QUERY_EXECUTION);
        return -1;
    }

    cairn_error_t perr = {{0}};
    promql_node_t *root = promql_parse(query, &perr);
    if (!root) {
        engine_release(engine);
        set_error(out, PROMQL_ERROR_BAD_DATA, perr.message[0] ? perr.message : "parse error");
        return -1;
    }
    promql_value_type_t type = promql_node_type(root);
    if (range_query && type != PROMQL_VALUE_SCALAR && type != PROMQL_VALUE_VECTOR) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "invalid expression type \"%s\" for range query, must be Scalar or instant "
                 "Vector",
                 documented_type_name(type));
        promql_node_free(root);
        engine_release(engine);
        set_error(out, PROMQL_ERROR_BAD_DATA, msg);
        return -1;
    }

    promql_eval_ctx_t *ctx = cairn_calloc(1, sizeof(*ctx));
    ctx->query = query;
    ctx->query_start = range.start;
    ctx->query_end = range.end;
    ctx->query_step = range_query ? range.step : 0;
    ctx->range_query = range_query;
    ctx->lookback_ms = params && params->lookback_delta_ms > 0 ? params->lookback_delta_ms
                                                               : engine->opts.lookback_delta_ms;
    ctx->subquery_step_ms = atomic_load_explicit(&engine->default_step_ms, memory_order_relaxed);
    ctx->max_samples = engine->opts.max_samples ? engine->opts.max_samples : UINT64_MAX;
    ctx->deadline = deadline;
    ctx->cancel = params ? params->cancel : NULL;
    promql_eval_memory_init(ctx);

    int rc = 0;
    if (setjmp(ctx->jmp) == 0) {
        check_deadline(ctx, QUERY_EXECUTION);
        if (fetch_all(ctx, engine->db, root, &range) != 0)
            longjmp(ctx->jmp, 1);
        promql_eval_value_t v = promql_eval_node(ctx, root, &range);
        if (range_query)
            check_deadline(ctx, EXPRESSION_EVAL);
        build_result(ctx, root, &v, &range, out);
        copy_annotations(ctx, out);
    } else {
        promql_result_free(out);
        set_error(out, ctx->error_type ? ctx->error_type : PROMQL_ERROR_INTERNAL, ctx->error);
        rc = -1;
    }
    promql_eval_memory_free(ctx);
    cairn_free(ctx);
    promql_node_free(root);
    engine_release(engine);
    return rc;
}

int promql_query_instant(promql_engine_t *engine, const char *query, int64_t t,
                         const promql_query_params_t *params, promql_result_t *out)
{
    promql_eval_range_t range = {.start = t, .end = t, .step = 1, .steps = 1};
    return run_query(engine, query, range, false, params, out);
}

int promql_query_range(promql_engine_t *engine, const char *query, int64_t start, int64_t end,
                       int64_t step, const promql_query_params_t *params, promql_result_t *out)
{
    if (step <= 0 || end < start) {
        memset(out, 0, sizeof(*out));
        set_error(out, PROMQL_ERROR_BAD_DATA,
                  step <= 0 ? "zero or negative query resolution step widths are not accepted. "
                              "Try a positive integer"
                            : "end timestamp must not be before start time");
        return -1;
    }
    promql_eval_range_t range = {.start = start, .end = end, .step = step};
    range.steps = (size_t)((end - start) / step) + 1;
    return run_query(engine, query, range, true, params, out);
}
