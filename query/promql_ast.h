/*
 * query/promql_ast.h: PromQL's abstract syntax tree, shared by the parser
 * (promql_lex.c, promql_parse.c), the evaluator (promql_eval.c) and the tests. Internal to
 * query/ (and tests/); the public API is query.h.
 *
 * A tree is built by promql_parse and freed with promql_node_free; every node owns its
 * children and strings. Positions are byte offsets into the query text; error messages and
 * annotations turn them into line and char numbers (1-based; char counts bytes from the start
 * of the line, plus one) with promql_position_line_char.
 *
 * The parser checks types as Prometheus's does: after a successful parse, every function
 * call has arguments of the types its signature asks for, aggregation parameters are of the
 * right type, binary operators have valid operand types (and set operators only vectors),
 * and a range query's expression is scalar or instant vector (checked by the engine).
 */
#ifndef CAIRN_QUERY_PROMQL_AST_H
#define CAIRN_QUERY_PROMQL_AST_H

#include "query/query.h"

typedef struct promql_pos {
    uint32_t start, end; /* byte offsets, end exclusive */
} promql_pos_t;

/* Converts a byte offset into 1-based line and character numbers. */
void promql_position_line_char(const char *query, uint32_t offset, unsigned *line, unsigned *chr);

typedef enum promql_node_kind {
    PROMQL_NODE_NUMBER,
    PROMQL_NODE_STRING,
    PROMQL_NODE_VECTOR_SELECTOR,
    PROMQL_NODE_MATRIX_SELECTOR, /* vector selector + range */
    PROMQL_NODE_SUBQUERY,
    PROMQL_NODE_PAREN,
    PROMQL_NODE_UNARY,
    PROMQL_NODE_BINARY,
    PROMQL_NODE_AGGREGATE,
    PROMQL_NODE_CALL,
} promql_node_kind_t;

typedef enum promql_binary_op {
    PROMQL_OP_ADD,
    PROMQL_OP_SUB,
    PROMQL_OP_MUL,
    PROMQL_OP_DIV,
    PROMQL_OP_MOD,
    PROMQL_OP_POW,
    PROMQL_OP_ATAN2,
    PROMQL_OP_EQL, /* == */
    PROMQL_OP_NEQ, /* != */
    PROMQL_OP_LSS, /* <  */
    PROMQL_OP_LTE, /* <= */
    PROMQL_OP_GTR, /* >  */
    PROMQL_OP_GTE, /* >= */
    PROMQL_OP_AND,
    PROMQL_OP_OR,
    PROMQL_OP_UNLESS,
} promql_binary_op_t;

/* "+", "==", "and", ... */
const char *promql_binary_op_name(promql_binary_op_t op);
bool promql_binary_op_is_comparison(promql_binary_op_t op);
bool promql_binary_op_is_set(promql_binary_op_t op);

typedef enum promql_aggregate_op {
    PROMQL_AGG_SUM,
    PROMQL_AGG_AVG,
    PROMQL_AGG_COUNT,
    PROMQL_AGG_MIN,
    PROMQL_AGG_MAX,
    PROMQL_AGG_GROUP,
    PROMQL_AGG_STDDEV,
    PROMQL_AGG_STDVAR,
    PROMQL_AGG_TOPK,         /* param: scalar k */
    PROMQL_AGG_BOTTOMK,      /* param: scalar k */
    PROMQL_AGG_QUANTILE,     /* param: scalar phi */
    PROMQL_AGG_COUNT_VALUES, /* param: string label name */
    PROMQL_AGG_LIMITK,       /* param: scalar k */
    PROMQL_AGG_LIMIT_RATIO,  /* param: scalar ratio */
} promql_aggregate_op_t;

const char *promql_aggregate_op_name(promql_aggregate_op_t op);

/* Every function the parser knows, float and experimental ones alike (the test corpus uses
 * several experimental ones, which promqltest enables). */
typedef enum promql_function_id {
    PROMQL_FN_ABS,
    PROMQL_FN_ABSENT,
    PROMQL_FN_ABSENT_OVER_TIME,
    PROMQL_FN_ACOS,
    PROMQL_FN_ACOSH,
    PROMQL_FN_ASIN,
    PROMQL_FN_ASINH,
    PROMQL_FN_ATAN,
    PROMQL_FN_ATANH,
    PROMQL_FN_AVG_OVER_TIME,
    PROMQL_FN_CEIL,
    PROMQL_FN_CHANGES,
    PROMQL_FN_CLAMP,
    PROMQL_FN_CLAMP_MAX,
    PROMQL_FN_CLAMP_MIN,
    PROMQL_FN_COS,
    PROMQL_FN_COSH,
    PROMQL_FN_COUNT_OVER_TIME,
    PROMQL_FN_DAYS_IN_MONTH,
    PROMQL_FN_DAY_OF_MONTH,
    PROMQL_FN_DAY_OF_WEEK,
    PROMQL_FN_DAY_OF_YEAR,
    PROMQL_FN_DEG,
    PROMQL_FN_DELTA,
    PROMQL_FN_DERIV,
    PROMQL_FN_DOUBLE_EXPONENTIAL_SMOOTHING,
    PROMQL_FN_END, /* end(): the query's end time, in seconds (experimental) */
    PROMQL_FN_EXP,
    PROMQL_FN_FIRST_OVER_TIME,
    PROMQL_FN_FLOOR,
    PROMQL_FN_HISTOGRAM_AVG,
    PROMQL_FN_HISTOGRAM_COUNT,
    PROMQL_FN_HISTOGRAM_FRACTION,
    PROMQL_FN_HISTOGRAM_QUANTILE,
    PROMQL_FN_HISTOGRAM_QUANTILES,
    PROMQL_FN_HISTOGRAM_STDDEV,
    PROMQL_FN_HISTOGRAM_STDVAR,
    PROMQL_FN_HISTOGRAM_SUM,
    PROMQL_FN_HOUR,
    PROMQL_FN_IDELTA,
    PROMQL_FN_INCREASE,
    PROMQL_FN_INFO,
    PROMQL_FN_IRATE,
    PROMQL_FN_LABEL_JOIN,
    PROMQL_FN_LABEL_REPLACE,
    PROMQL_FN_LAST_OVER_TIME,
    PROMQL_FN_LN,
    PROMQL_FN_LOG10,
    PROMQL_FN_LOG2,
    PROMQL_FN_MAD_OVER_TIME,
    PROMQL_FN_MAX_OF,
    PROMQL_FN_MAX_OVER_TIME,
    PROMQL_FN_MIN_OF,
    PROMQL_FN_MIN_OVER_TIME,
    PROMQL_FN_MINUTE,
    PROMQL_FN_MONTH,
    PROMQL_FN_PI,
    PROMQL_FN_PREDICT_LINEAR,
    PROMQL_FN_PRESENT_OVER_TIME,
    PROMQL_FN_QUANTILE_OVER_TIME,
    PROMQL_FN_RAD,
    PROMQL_FN_RANGE, /* range(): end - start of the query, in seconds (experimental) */
    PROMQL_FN_RATE,
    PROMQL_FN_RESETS,
    PROMQL_FN_ROUND,
    PROMQL_FN_SCALAR,
    PROMQL_FN_SGN,
    PROMQL_FN_SIN,
    PROMQL_FN_SINH,
    PROMQL_FN_SORT,
    PROMQL_FN_SORT_BY_LABEL,
    PROMQL_FN_SORT_BY_LABEL_DESC,
    PROMQL_FN_SORT_DESC,
    PROMQL_FN_SQRT,
    PROMQL_FN_START, /* start(): the query's start time, in seconds (experimental) */
    PROMQL_FN_STDDEV_OVER_TIME,
    PROMQL_FN_STEP, /* step(): the query's step, in seconds (experimental) */
    PROMQL_FN_STDVAR_OVER_TIME,
    PROMQL_FN_SUM_OVER_TIME,
    PROMQL_FN_TAN,
    PROMQL_FN_TANH,
    PROMQL_FN_TIME,
    PROMQL_FN_TIMESTAMP,
    PROMQL_FN_TS_OF_FIRST_OVER_TIME,
    PROMQL_FN_TS_OF_LAST_OVER_TIME,
    PROMQL_FN_TS_OF_MAX_OVER_TIME,
    PROMQL_FN_TS_OF_MIN_OVER_TIME,
    PROMQL_FN_VECTOR,
    PROMQL_FN_YEAR,
    PROMQL_FN_COUNT_ /* number of functions */
} promql_function_id_t;

/* A function's signature, as Prometheus's parser declares it. */
typedef struct promql_function {
    promql_function_id_t id;
    const char *name;
    promql_value_type_t arg_types[6]; /* the types of the declared arguments */
    unsigned arg_count;               /* declared arguments */
    int variadic;                     /* 0: exactly arg_count; > 0: up to that many more of the last
                                       * type; -1: any number more; optional trailing arguments make
                                       * arg_count - 1 the minimum (Prometheus's Variadic semantics) */
    promql_value_type_t return_type;
    bool experimental;
} promql_function_t;

/* The function named name, or NULL. */
const promql_function_t *promql_function_lookup(const char *name);

typedef struct promql_matcher {
    tsdb_match_type_t type;
    char *name;  /* owned */
    char *value; /* owned, unquoted */
    promql_pos_t pos;
} promql_matcher_t;

/* `@` modifier of a selector or subquery. */
typedef enum promql_at {
    PROMQL_AT_NONE,
    PROMQL_AT_TIME,  /* at_ms holds the time */
    PROMQL_AT_START, /* @ start() */
    PROMQL_AT_END,   /* @ end() */
} promql_at_t;

typedef enum promql_card {
    PROMQL_CARD_ONE_TO_ONE,
    PROMQL_CARD_MANY_TO_ONE,  /* group_left */
    PROMQL_CARD_ONE_TO_MANY,  /* group_right */
    PROMQL_CARD_MANY_TO_MANY, /* set operators */
} promql_card_t;

/* Vector matching of a binary operator between two vectors. */
typedef struct promql_matching {
    promql_card_t card;
    bool on;       /* on(labels); false: ignoring(labels) (or neither given) */
    char **labels; /* owned */
    size_t label_count;
    char **include; /* group_left/group_right(labels), owned */
    size_t include_count;
} promql_matching_t;

typedef struct promql_node promql_node_t;

struct promql_node {
    promql_node_kind_t kind;
    promql_pos_t pos;
    union {
        double number;                  /* NUMBER */
        char *string;                   /* STRING, owned, unquoted */
        struct {                        /* VECTOR_SELECTOR */
            char *name;                 /* metric name written before the braces, or NULL */
            promql_matcher_t *matchers; /* owned; includes __name__="name" when name is set */
            size_t matcher_count;
            int64_t offset_ms; /* offset modifier (may be negative), 0 if none */
            promql_at_t at;
            int64_t at_ms;
        } selector;
        struct {                   /* MATRIX_SELECTOR */
            promql_node_t *vector; /* a VECTOR_SELECTOR (it holds offset and @) */
            int64_t range_ms;
        } matrix;
        struct { /* SUBQUERY */
            promql_node_t *expr;
            int64_t range_ms;
            int64_t step_ms; /* 0: the default evaluation interval */
            int64_t offset_ms;
            promql_at_t at;
            int64_t at_ms;
        } subquery;
        struct { /* PAREN */
            promql_node_t *expr;
        } paren;
        struct {                   /* UNARY */
            promql_binary_op_t op; /* ADD or SUB */
            promql_node_t *expr;
        } unary;
        struct { /* BINARY */
            promql_binary_op_t op;
            promql_node_t *lhs, *rhs;
            bool return_bool;            /* comparison with `bool` */
            promql_matching_t *matching; /* set when both sides are vectors; owned */
        } binary;
        struct { /* AGGREGATE */
            promql_aggregate_op_t op;
            promql_node_t *expr;
            promql_node_t *param; /* topk's k, quantile's phi, count_values' label; or NULL */
            char **grouping;      /* by/without labels, owned */
            size_t grouping_count;
            bool without;
            bool has_grouping; /* by() or without() was written (even empty) */
        } aggregate;
        struct { /* CALL */
            const promql_function_t *func;
            promql_node_t **args; /* owned */
            size_t arg_count;
        } call;
    };
};

/* The value type an expression evaluates to. */
promql_value_type_t promql_node_type(const promql_node_t *node);

/* Parses query. Returns the tree, or NULL with the message in err->message formatted as
 * Prometheus 3.x formats a ParseErr: "<line>:<char>: parse error: <message>", e.g.
 * "1:5: parse error: unexpected right parenthesis ')'" (the position of the error's start;
 * line 1 for a one-line query). */
promql_node_t *promql_parse(const char *query, cairn_error_t *err);
void promql_node_free(promql_node_t *node);

/* Writes the expression back as PromQL (Prometheus's String() form), e.g. for error
 * messages and absent()'s labels. */
void promql_node_format(const promql_node_t *node, buf_t *out);

#endif /* CAIRN_QUERY_PROMQL_AST_H */
