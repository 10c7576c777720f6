/*
 * query/promql_eval_internal.h: the evaluator's internal types, shared by its files:
 *
 *   promql_eval.c            engine API, data fetching, selectors, subqueries, range stepping,
 *                            results
 *   promql_eval_memory.c     tracked allocations, the label arena, interned label sets
 *   promql_eval_binary.c     binary operators and vector matching
 *   promql_eval_aggregate.c  aggregation operators
 *   promql_eval_call.c       function calls
 *
 * Model (as Prometheus's engine): every expression is evaluated over a timeline of steps
 * (start, start + step, ... end; an instant query is one step) into a value: a scalar is one
 * double per step, an instant vector a matrix whose series have at most one point per step (at
 * the step's time), a range vector (only at a single step) the raw points of each window, a
 * string a string.
 *
 * Memory: label sets are interned per query in an arena (identical sets share one pointer, so
 * label-set equality is pointer equality); point arrays and scratch come from tracked
 * allocations that the query frees in bulk at its end. Errors inside evaluation unwind with
 * longjmp to the query's entry point (promql_eval_fail), which then frees everything tracked;
 * nothing evaluated holds untracked resources across a call that may fail.
 *
 * Thread safety: a query context belongs to one thread.
 */
#ifndef CAIRN_QUERY_PROMQL_EVAL_INTERNAL_H
#define CAIRN_QUERY_PROMQL_EVAL_INTERNAL_H

#include <setjmp.h>

#include "query/promql_ast.h"

/* ---------------------------------------------------------------------------------------------
 * Label sets
 */
typedef struct promql_label {
    const char *name;  /* arena */
    const char *value; /* arena */
} promql_label_t;

/* An interned label set, sorted by name. Compare with ==. */
typedef struct promql_labels {
    uint64_t hash;
    uint32_t count;
    promql_label_t items[];
} promql_labels_t;

struct promql_eval_ctx;

/* A label set under construction: sorted by name; strings borrowed until interned. With ctx
 * set, its memory is tracked by the query (freed even if evaluation fails). */
typedef struct promql_label_builder {
    struct promql_eval_ctx *ctx;
    promql_label_t *items;
    size_t count, cap;
} promql_label_builder_t;

/* ---------------------------------------------------------------------------------------------
 * Values
 */
typedef struct promql_eval_series {
    const promql_labels_t *labels;
    promql_point_t *points; /* tracked allocation */
    size_t count, cap;
    bool drop_name; /* __name__ (and __type__, __unit__) is removed when the query ends */
} promql_eval_series_t;

typedef struct promql_eval_matrix {
    promql_eval_series_t *series; /* tracked allocation */
    size_t count, cap;
} promql_eval_matrix_t;

typedef struct promql_eval_value {
    promql_value_type_t type;
    double *scalar;         /* SCALAR: one value per step (tracked) */
    promql_eval_matrix_t m; /* VECTOR (step-aligned points) and MATRIX (raw windows) */
    const char *string;     /* STRING (arena) */
} promql_eval_value_t;

/* A timeline of evaluation steps. */
typedef struct promql_eval_range {
    int64_t start, end, step; /* step >= 1 */
    size_t steps;
} promql_eval_range_t;

/* One element of an instant vector at one step. */
typedef struct promql_eval_sample {
    const promql_labels_t *labels;
    double v;
    int64_t t;       /* the sample's time (the source sample's, for timestamp()) */
    uint32_t series; /* index in the source matrix */
    bool drop_name;
} promql_eval_sample_t;

/* Series fetched for one selector, for the whole query. */
typedef struct promql_fetched_series {
    const promql_labels_t *labels;
    int64_t *t; /* tracked */
    double *v;  /* tracked */
    size_t count;
} promql_fetched_series_t;

typedef struct promql_fetched {
    const promql_node_t *selector; /* a VECTOR_SELECTOR */
    promql_fetched_series_t *series;
    size_t count;
} promql_fetched_t;

/* An annotation (warning or info), rendered text. */
typedef struct promql_annotation {
    bool info;
    char *text; /* tracked */
} promql_annotation_t;

/* Tracked allocation header (a doubly linked list). */
typedef struct promql_alloc_header {
    struct promql_alloc_header *prev, *next;
    size_t size;
    size_t pad; /* keeps the payload 16-aligned */
} promql_alloc_header_t;

typedef struct promql_arena_block promql_arena_block_t;

/* Output assembly across steps (the series of a range-evaluated result, by label set). */
typedef struct promql_series_index {
    const promql_labels_t **keys;
    size_t *values;
    size_t cap, count;
} promql_series_index_t;

typedef struct promql_eval_ctx {
    const char *query;
    jmp_buf jmp;
    /* Failure (set by promql_eval_fail). */
    promql_error_type_t error_type;
    char error[CAIRN_ERROR_MAX];
    /* Memory. */
    promql_alloc_header_t allocs; /* list head */
    promql_arena_block_t *arena;
    const promql_labels_t **intern; /* open addressing */
    size_t intern_cap, intern_count;
    const promql_labels_t *empty_labels;
    /* Query. */
    int64_t query_start, query_end, query_step; /* query_step 0 for instant queries */
    bool range_query;
    int64_t lookback_ms;
    int64_t subquery_step_ms;
    uint64_t max_samples, samples;
    double deadline; /* monotonic seconds */
    atomic_bool *cancel;
    unsigned check_counter;
    /* Data. */
    promql_fetched_t *fetched;
    size_t fetched_count;
    /* Annotations. */
    promql_annotation_t *annotations;
    size_t annotation_count, annotation_cap;
} promql_eval_ctx_t;

/* ---------------------------------------------------------------------------------------------
 * promql_eval_memory.c
 */
void promql_eval_memory_init(promql_eval_ctx_t *ctx);
/* Frees every tracked allocation and the arena. */
void promql_eval_memory_free(promql_eval_ctx_t *ctx);

void *promql_eval_alloc(promql_eval_ctx_t *ctx, size_t size); /* zeroed */
void *promql_eval_realloc(promql_eval_ctx_t *ctx, void *p, size_t size);
void promql_eval_release(promql_eval_ctx_t *ctx, void *p); /* NULL allowed */
void *promql_eval_arena_alloc(promql_eval_ctx_t *ctx, size_t size);
const char *promql_eval_arena_strdup(promql_eval_ctx_t *ctx, const char *s, size_t len);

/* Interns items[0..count) (sorted by name, no empty values). */
const promql_labels_t *promql_labels_intern(promql_eval_ctx_t *ctx, const promql_label_t *items,
                                            size_t count);
const char *promql_labels_get(const promql_labels_t *ls, const char *name); /* NULL if absent */
int promql_labels_compare(const promql_labels_t *a, const promql_labels_t *b);
/* Go's strconv.Quote (for label values in messages). */
void promql_go_quote(buf_t *out, const char *s);
/* Prometheus's labels.String(): {a="b", c="d"}. */
void promql_labels_format(const promql_labels_t *ls, buf_t *out);
/* Prometheus's labels.Hash() (xxhash64 of name 0xff value 0xff ...), for limit_ratio. */
uint64_t promql_labels_prometheus_hash(const promql_labels_t *ls);
/* The label set without __name__, __type__ and __unit__. */
const promql_labels_t *promql_labels_drop_metadata(promql_eval_ctx_t *ctx,
                                                   const promql_labels_t *ls);

void promql_label_builder_reset(promql_label_builder_t *b, const promql_labels_t *ls);
void promql_label_builder_set(promql_label_builder_t *b, const char *name, const char *value);
void promql_label_builder_del(promql_label_builder_t *b, const char *name);
/* Keeps only the named labels. */
void promql_label_builder_keep(promql_label_builder_t *b, char *const *names, size_t count);
const promql_labels_t *promql_label_builder_intern(promql_eval_ctx_t *ctx,
                                                   promql_label_builder_t *b);
void promql_label_builder_free(promql_label_builder_t *b);

bool promql_is_metadata_label(const char *name); /* __name__, __type__, __unit__ */

/* Pointer-keyed map from label sets to indexes. */
void promql_series_index_init(promql_eval_ctx_t *ctx, promql_series_index_t *ix, size_t hint);
/* Returns the index stored for key, or inserts value and returns it. */
size_t promql_series_index_get_or_put(promql_eval_ctx_t *ctx, promql_series_index_t *ix,
                                      const promql_labels_t *key, size_t value);
void promql_series_index_free(promql_eval_ctx_t *ctx, promql_series_index_t *ix);

/* ---------------------------------------------------------------------------------------------
 * promql_eval.c
 */
CAIRN_NORETURN void promql_eval_fail(promql_eval_ctx_t *ctx, promql_error_type_t type,
                                     const char *fmt, ...) CAIRN_PRINTF(3, 4);
/* Fails with a timeout or cancellation error if due; cheap, call often. */
void promql_eval_check(promql_eval_ctx_t *ctx);
/* Records an annotation about the expression at pos: text is e.g. "PromQL info: ...". */
void promql_eval_annotate(promql_eval_ctx_t *ctx, bool info, promql_pos_t pos, const char *fmt, ...)
    CAIRN_PRINTF(4, 5);
void promql_eval_count_samples(promql_eval_ctx_t *ctx, size_t n);
void promql_eval_uncount_samples(promql_eval_ctx_t *ctx, size_t n);

promql_eval_value_t promql_eval_node(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                     const promql_eval_range_t *range);
void promql_eval_value_free(promql_eval_ctx_t *ctx, promql_eval_value_t *v);
/* Evaluates a scalar expression: one value per step (tracked). */
double *promql_eval_scalar(promql_eval_ctx_t *ctx, const promql_node_t *node,
                           const promql_eval_range_t *range);

const promql_node_t *promql_unwrap_parens(const promql_node_t *node);

promql_eval_series_t *promql_matrix_add(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m,
                                        const promql_labels_t *labels, bool drop_name);
void promql_series_push(promql_eval_ctx_t *ctx, promql_eval_series_t *s, int64_t t, double v);
void promql_matrix_free(promql_eval_ctx_t *ctx, promql_eval_matrix_t *m);

/* Steps through a step-aligned matrix: gather() fills vec with the series that have a point
 * at t (cursor per series). */
typedef struct promql_vector_cursor {
    const promql_eval_matrix_t *m;
    size_t *pos; /* tracked */
    promql_eval_sample_t *vec;
    size_t count;
} promql_vector_cursor_t;

void promql_cursor_init(promql_eval_ctx_t *ctx, promql_vector_cursor_t *c,
                        const promql_eval_matrix_t *m);
void promql_cursor_gather(promql_vector_cursor_t *c, int64_t t);
void promql_cursor_free(promql_eval_ctx_t *ctx, promql_vector_cursor_t *c);

/* Collects per-step output vectors into series (by label set across steps). Instant
 * evaluations keep the order of the samples (duplicates are caught when the query ends);
 * range evaluations fail on two samples with the same labels at one step. */
typedef struct promql_output {
    const promql_eval_range_t *range;
    promql_eval_matrix_t m;
    promql_series_index_t index;
} promql_output_t;

void promql_output_init(promql_eval_ctx_t *ctx, promql_output_t *o,
                        const promql_eval_range_t *range);
void promql_output_add(promql_eval_ctx_t *ctx, promql_output_t *o, const promql_labels_t *labels,
                       bool drop_name, int64_t t, double v);
/* Returns the collected matrix (ownership passes) and frees the index. */
promql_eval_matrix_t promql_output_finish(promql_eval_ctx_t *ctx, promql_output_t *o);

/* timestamp(selector): for each step, the time (seconds) of the sample the selector picks;
 * series marked to drop their name. */
promql_eval_matrix_t promql_eval_selector_timestamps(promql_eval_ctx_t *ctx,
                                                     const promql_node_t *node,
                                                     const promql_eval_range_t *range);

/* Go's %g / strconv.FormatFloat(v, 'g', -1, 64) into a static-size buffer. */
const char *promql_format_float(double v, char *buf, size_t size);

/* ---------------------------------------------------------------------------------------------
 * promql_eval_binary.c, promql_eval_aggregate.c, promql_eval_call.c
 */
promql_eval_value_t promql_eval_binary(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                       const promql_eval_range_t *range);
promql_eval_value_t promql_eval_aggregate(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                          const promql_eval_range_t *range);
promql_eval_value_t promql_eval_call(promql_eval_ctx_t *ctx, const promql_node_t *node,
                                     const promql_eval_range_t *range);

/* The points of a range argument (matrix selector or subquery) evaluated for range: for each
 * series, the points of all windows; promql_range_arg_window gives one step's window. */
typedef struct promql_range_arg {
    const promql_node_t *node;  /* MATRIX_SELECTOR or SUBQUERY */
    promql_eval_matrix_t owned; /* subquery results (freed with the arg) */
    const promql_fetched_t *fetched;
    size_t series_count;
    int64_t range_ms, offset_ms;
    promql_at_t at;
    int64_t at_ms;
    size_t *lo, *hi; /* window cursors per series (tracked) */
} promql_range_arg_t;

void promql_range_arg_init(promql_eval_ctx_t *ctx, promql_range_arg_t *a, const promql_node_t *node,
                           const promql_eval_range_t *range);
const promql_labels_t *promql_range_arg_labels(const promql_range_arg_t *a, size_t i);
/* The window of series i at evaluation time t: points (stale markers removed) in
 * (t - offset - range, t - offset] (with @, relative to its time). Copies into *buf (grown as
 * needed) and returns the count; *start and *end receive the window bounds. */
size_t promql_range_arg_window(promql_eval_ctx_t *ctx, promql_range_arg_t *a, size_t i, int64_t t,
                               promql_point_t **buf, size_t *buf_cap, int64_t *start, int64_t *end);
void promql_range_arg_free(promql_eval_ctx_t *ctx, promql_range_arg_t *a);

#endif /* CAIRN_QUERY_PROMQL_EVAL_INTERNAL_H */
