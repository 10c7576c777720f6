/*
 * query/promql_parse.c: PromQL's parser, type checker and printer (see promql_ast.h).
 *
 * The query is lexed whole first (promql_lex.c); the parser then reads the tokens by
 * recursive descent with one token of lookahead, binary operators by precedence climbing:
 *
 *   or  <  and unless  <  == != < <= > >=  <  + -  <  * / % atan2  <  ^ (right-associative)
 *
 * Unary + and - take an operand that may only contain ^ (so -a^b is -(a^b) and -a*b is
 * (-a)*b); a unary sign on a number literal folds into the number. The postfix forms `[range]`,
 * `[range:step]`, `offset d` and `@ t` bind to the operand right before them, tighter than
 * any operator.
 *
 * Errors follow Prometheus 3.x, whose parser is a yacc grammar: the first error wins, in the
 * order Prometheus finds them. A lexical error is reported when the parser reads the bad
 * token; a syntax error reports the token it could not use ("unexpected <token>"), with the
 * context of the grammar rule that catches it ("in label matching", "in grouping opts", "in
 * aggregation" for anything inside an aggregation's parentheses, ...); checks Prometheus's
 * grammar actions make (unknown function, offset twice, bad regex, bad number) happen at the
 * same point of the input as there. Only a query free of those errors is type-checked,
 * walking the tree in Prometheus's order.
 *
 * Depth: trees deeper than PROMQL_MAX_DEPTH are refused while parsing, so that every
 * recursive walk over a tree (checking, printing, freeing, evaluating) is bounded.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "query/promql_ast.h"
#include "query/promql_lex.h"

#define PROMQL_MAX_DEPTH 1000

/* ---- functions, operators, names ---------------------------------------------------------- */

#define V PROMQL_VALUE_VECTOR
#define M PROMQL_VALUE_MATRIX
#define S PROMQL_VALUE_SCALAR
#define T PROMQL_VALUE_STRING

/* One row: id, name, return type, variadic, experimental, argument count, argument types
 * (PROMQL_VALUE_NONE for none). */
#define FN(id_, name_, ret_, var_, exp_, count_, ...)                                              \
    [PROMQL_FN_##id_] = {                                                                          \
        .id = PROMQL_FN_##id_,                                                                     \
        .name = name_,                                                                             \
        .arg_types = {__VA_ARGS__},                                                                \
        .arg_count = count_,                                                                       \
        .variadic = var_,                                                                          \
        .return_type = ret_,                                                                       \
        .experimental = exp_,                                                                      \
    }

static const promql_function_t functions[PROMQL_FN_COUNT_] = {
    FN(ABS, "abs", V, 0, false, 1, V),
    FN(ABSENT, "absent", V, 0, false, 1, V),
    FN(ABSENT_OVER_TIME, "absent_over_time", V, 0, false, 1, M),
    FN(ACOS, "acos", V, 0, false, 1, V),
    FN(ACOSH, "acosh", V, 0, false, 1, V),
    FN(ASIN, "asin", V, 0, false, 1, V),
    FN(ASINH, "asinh", V, 0, false, 1, V),
    FN(ATAN, "atan", V, 0, false, 1, V),
    FN(ATANH, "atanh", V, 0, false, 1, V),
    FN(AVG_OVER_TIME, "avg_over_time", V, 0, false, 1, M),
    FN(CEIL, "ceil", V, 0, false, 1, V),
    FN(CHANGES, "changes", V, 0, false, 1, M),
    FN(CLAMP, "clamp", V, 0, false, 3, V, S, S),
    FN(CLAMP_MAX, "clamp_max", V, 0, false, 2, V, S),
    FN(CLAMP_MIN, "clamp_min", V, 0, false, 2, V, S),
    FN(COS, "cos", V, 0, false, 1, V),
    FN(COSH, "cosh", V, 0, false, 1, V),
    FN(COUNT_OVER_TIME, "count_over_time", V, 0, false, 1, M),
    FN(DAYS_IN_MONTH, "days_in_month", V, 1, false, 1, V),
    FN(DAY_OF_MONTH, "day_of_month", V, 1, false, 1, V),
    FN(DAY_OF_WEEK, "day_of_week", V, 1, false, 1, V),
    FN(DAY_OF_YEAR, "day_of_year", V, 1, false, 1, V),
    FN(DEG, "deg", V, 0, false, 1, V),
    FN(DELTA, "delta", V, 0, false, 1, M),
    FN(DERIV, "deriv", V, 0, false, 1, M),
    FN(DOUBLE_EXPONENTIAL_SMOOTHING, "double_exponential_smoothing", V, 0, true, 3, M, S, S),
    FN(END, "end", S, 0, true, 0, PROMQL_VALUE_NONE),
    FN(EXP, "exp", V, 0, false, 1, V),
    FN(FIRST_OVER_TIME, "first_over_time", V, 0, true, 1, M),
    FN(FLOOR, "floor", V, 0, false, 1, V),
    FN(HISTOGRAM_AVG, "histogram_avg", V, 0, false, 1, V),
    FN(HISTOGRAM_COUNT, "histogram_count", V, 0, false, 1, V),
    FN(HISTOGRAM_FRACTION, "histogram_fraction", V, 0, false, 3, S, S, V),
    FN(HISTOGRAM_QUANTILE, "histogram_quantile", V, 0, false, 2, S, V),
    FN(HISTOGRAM_QUANTILES, "histogram_quantiles", V, -1, true, 3, V, T, S),
    FN(HISTOGRAM_STDDEV, "histogram_stddev", V, 0, false, 1, V),
    FN(HISTOGRAM_STDVAR, "histogram_stdvar", V, 0, false, 1, V),
    FN(HISTOGRAM_SUM, "histogram_sum", V, 0, false, 1, V),
    FN(HOUR, "hour", V, 1, false, 1, V),
    FN(IDELTA, "idelta", V, 0, false, 1, M),
    FN(INCREASE, "increase", V, 0, false, 1, M),
    FN(INFO, "info", V, 1, true, 2, V, V),
    FN(IRATE, "irate", V, 0, false, 1, M),
    FN(LABEL_JOIN, "label_join", V, -1, false, 4, V, T, T, T),
    FN(LABEL_REPLACE, "label_replace", V, 0, false, 5, V, T, T, T, T),
    FN(LAST_OVER_TIME, "last_over_time", V, 0, false, 1, M),
    FN(LN, "ln", V, 0, false, 1, V),
    FN(LOG10, "log10", V, 0, false, 1, V),
    FN(LOG2, "log2", V, 0, false, 1, V),
    FN(MAD_OVER_TIME, "mad_over_time", V, 0, true, 1, M),
    FN(MAX_OF, "max_of", S, 0, true, 2, S, S),
    FN(MAX_OVER_TIME, "max_over_time", V, 0, false, 1, M),
    FN(MIN_OF, "min_of", S, 0, true, 2, S, S),
    FN(MIN_OVER_TIME, "min_over_time", V, 0, false, 1, M),
    FN(MINUTE, "minute", V, 1, false, 1, V),
    FN(MONTH, "month", V, 1, false, 1, V),
    FN(PI, "pi", S, 0, false, 0, PROMQL_VALUE_NONE),
    FN(PREDICT_LINEAR, "predict_linear", V, 0, false, 2, M, S),
    FN(PRESENT_OVER_TIME, "present_over_time", V, 0, false, 1, M),
    FN(QUANTILE_OVER_TIME, "quantile_over_time", V, 0, false, 2, S, M),
    FN(RAD, "rad", V, 0, false, 1, V),
    FN(RANGE, "range", S, 0, true, 0, PROMQL_VALUE_NONE),
    FN(RATE, "rate", V, 0, false, 1, M),
    FN(RESETS, "resets", V, 0, false, 1, M),
    FN(ROUND, "round", V, 1, false, 2, V, S),
    FN(SCALAR, "scalar", S, 0, false, 1, V),
    FN(SGN, "sgn", V, 0, false, 1, V),
    FN(SIN, "sin", V, 0, false, 1, V),
    FN(SINH, "sinh", V, 0, false, 1, V),
    FN(SORT, "sort", V, 0, false, 1, V),
    FN(SORT_BY_LABEL, "sort_by_label", V, -1, true, 2, V, T),
    FN(SORT_BY_LABEL_DESC, "sort_by_label_desc", V, -1, true, 2, V, T),
    FN(SORT_DESC, "sort_desc", V, 0, false, 1, V),
    FN(SQRT, "sqrt", V, 0, false, 1, V),
    FN(START, "start", S, 0, true, 0, PROMQL_VALUE_NONE),
    FN(STDDEV_OVER_TIME, "stddev_over_time", V, 0, false, 1, M),
    FN(STEP, "step", S, 0, true, 0, PROMQL_VALUE_NONE),
    FN(STDVAR_OVER_TIME, "stdvar_over_time", V, 0, false, 1, M),
    FN(SUM_OVER_TIME, "sum_over_time", V, 0, false, 1, M),
    FN(TAN, "tan", V, 0, false, 1, V),
    FN(TANH, "tanh", V, 0, false, 1, V),
    FN(TIME, "time", S, 0, false, 0, PROMQL_VALUE_NONE),
    FN(TIMESTAMP, "timestamp", V, 0, false, 1, V),
    FN(TS_OF_FIRST_OVER_TIME, "ts_of_first_over_time", V, 0, true, 1, M),
    FN(TS_OF_LAST_OVER_TIME, "ts_of_last_over_time", V, 0, true, 1, M),
    FN(TS_OF_MAX_OVER_TIME, "ts_of_max_over_time", V, 0, true, 1, M),
    FN(TS_OF_MIN_OVER_TIME, "ts_of_min_over_time", V, 0, true, 1, M),
    FN(VECTOR, "vector", V, 0, false, 1, S),
    FN(YEAR, "year", V, 1, false, 1, V),
};

#undef FN
#undef V
#undef M
#undef S
#undef T

const promql_function_t *promql_function_lookup(const char *name)
{
    for (size_t i = 0; i < PROMQL_FN_COUNT_; i++)
        if (functions[i].name != NULL && strcmp(functions[i].name, name) == 0)
            return &functions[i];
    return NULL;
}

static const char *const binary_op_names[] = {
    [PROMQL_OP_ADD] = "+",         [PROMQL_OP_SUB] = "-",   [PROMQL_OP_MUL] = "*",
    [PROMQL_OP_DIV] = "/",         [PROMQL_OP_MOD] = "%",   [PROMQL_OP_POW] = "^",
    [PROMQL_OP_ATAN2] = "atan2",   [PROMQL_OP_EQL] = "==",  [PROMQL_OP_NEQ] = "!=",
    [PROMQL_OP_LSS] = "<",         [PROMQL_OP_LTE] = "<=",  [PROMQL_OP_GTR] = ">",
    [PROMQL_OP_GTE] = ">=",        [PROMQL_OP_AND] = "and", [PROMQL_OP_OR] = "or",
    [PROMQL_OP_UNLESS] = "unless",
};

const char *promql_binary_op_name(promql_binary_op_t op)
{
    if ((size_t)op >= CAIRN_ARRAY_LEN(binary_op_names))
        return "?";
    return binary_op_names[op];
}

bool promql_binary_op_is_comparison(promql_binary_op_t op)
{
    return op >= PROMQL_OP_EQL && op <= PROMQL_OP_GTE;
}

bool promql_binary_op_is_set(promql_binary_op_t op)
{
    return op == PROMQL_OP_AND || op == PROMQL_OP_OR || op == PROMQL_OP_UNLESS;
}

static const char *const aggregate_op_names[] = {
    [PROMQL_AGG_SUM] = "sum",           [PROMQL_AGG_AVG] = "avg",
    [PROMQL_AGG_COUNT] = "count",       [PROMQL_AGG_MIN] = "min",
    [PROMQL_AGG_MAX] = "max",           [PROMQL_AGG_GROUP] = "group",
    [PROMQL_AGG_STDDEV] = "stddev",     [PROMQL_AGG_STDVAR] = "stdvar",
    [PROMQL_AGG_TOPK] = "topk",         [PROMQL_AGG_BOTTOMK] = "bottomk",
    [PROMQL_AGG_QUANTILE] = "quantile", [PROMQL_AGG_COUNT_VALUES] = "count_values",
    [PROMQL_AGG_LIMITK] = "limitk",     [PROMQL_AGG_LIMIT_RATIO] = "limit_ratio",
};

const char *promql_aggregate_op_name(promql_aggregate_op_t op)
{
    if ((size_t)op >= CAIRN_ARRAY_LEN(aggregate_op_names))
        return "?";
    return aggregate_op_names[op];
}

static bool aggregate_has_param(promql_aggregate_op_t op)
{
    return op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK || op == PROMQL_AGG_QUANTILE ||
           op == PROMQL_AGG_COUNT_VALUES || op == PROMQL_AGG_LIMITK || op == PROMQL_AGG_LIMIT_RATIO;
}

/* Prometheus's DocumentedType, used in type errors. */
static const char *documented_type(promql_value_type_t t)
{
    switch (t) {
    case PROMQL_VALUE_SCALAR: return "scalar";
    case PROMQL_VALUE_VECTOR: return "instant vector";
    case PROMQL_VALUE_MATRIX: return "range vector";
    case PROMQL_VALUE_STRING: return "string";
    default: return "none";
    }
}

/* Prometheus's ValueType names. */
static const char *value_type_name(promql_value_type_t t)
{
    switch (t) {
    case PROMQL_VALUE_SCALAR: return "scalar";
    case PROMQL_VALUE_VECTOR: return "vector";
    case PROMQL_VALUE_MATRIX: return "matrix";
    case PROMQL_VALUE_STRING: return "string";
    default: return "none";
    }
}

void promql_position_line_char(const char *query, uint32_t offset, unsigned *line, unsigned *chr)
{
    unsigned l = 1;
    size_t last_newline = (size_t)-1; /* "before the start" */
    for (size_t i = 0; i < offset && query[i] != '\0'; i++) {
        if (query[i] == '\n') {
            l++;
            last_newline = i;
        }
    }
    *line = l;
    *chr = (unsigned)(offset - last_newline);
}

/* ---- nodes -------------------------------------------------------------------------------- */

static promql_node_t *node_new(promql_node_kind_t kind, uint32_t start, uint32_t end)
{
    promql_node_t *n = cairn_calloc(1, sizeof(*n));
    n->kind = kind;
    n->pos.start = start;
    n->pos.end = end;
    return n;
}

static void strings_free(char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        cairn_free(list[i]);
    cairn_free(list);
}

static void matching_free(promql_matching_t *m)
{
    if (m == NULL)
        return;
    strings_free(m->labels, m->label_count);
    strings_free(m->include, m->include_count);
    cairn_free(m);
}

void promql_node_free(promql_node_t *n)
{
    if (n == NULL)
        return;
    switch (n->kind) {
    case PROMQL_NODE_NUMBER: break;
    case PROMQL_NODE_STRING: cairn_free(n->string); break;
    case PROMQL_NODE_VECTOR_SELECTOR:
        cairn_free(n->selector.name);
        for (size_t i = 0; i < n->selector.matcher_count; i++) {
            cairn_free(n->selector.matchers[i].name);
            cairn_free(n->selector.matchers[i].value);
        }
        cairn_free(n->selector.matchers);
        break;
    case PROMQL_NODE_MATRIX_SELECTOR: promql_node_free(n->matrix.vector); break;
    case PROMQL_NODE_SUBQUERY: promql_node_free(n->subquery.expr); break;
    case PROMQL_NODE_PAREN: promql_node_free(n->paren.expr); break;
    case PROMQL_NODE_UNARY: promql_node_free(n->unary.expr); break;
    case PROMQL_NODE_BINARY:
        promql_node_free(n->binary.lhs);
        promql_node_free(n->binary.rhs);
        matching_free(n->binary.matching);
        break;
    case PROMQL_NODE_AGGREGATE:
        promql_node_free(n->aggregate.expr);
        promql_node_free(n->aggregate.param);
        strings_free(n->aggregate.grouping, n->aggregate.grouping_count);
        break;
    case PROMQL_NODE_CALL:
        for (size_t i = 0; i < n->call.arg_count; i++)
            promql_node_free(n->call.args[i]);
        cairn_free(n->call.args);
        break;
    }
    cairn_free(n);
}

promql_value_type_t promql_node_type(const promql_node_t *n)
{
    if (n == NULL)
        return PROMQL_VALUE_NONE;
    switch (n->kind) {
    case PROMQL_NODE_NUMBER: return PROMQL_VALUE_SCALAR;
    case PROMQL_NODE_STRING: return PROMQL_VALUE_STRING;
    case PROMQL_NODE_VECTOR_SELECTOR: return PROMQL_VALUE_VECTOR;
    case PROMQL_NODE_MATRIX_SELECTOR:
    case PROMQL_NODE_SUBQUERY: return PROMQL_VALUE_MATRIX;
    case PROMQL_NODE_PAREN: return promql_node_type(n->paren.expr);
    case PROMQL_NODE_UNARY: return promql_node_type(n->unary.expr);
    case PROMQL_NODE_BINARY:
        if (promql_node_type(n->binary.lhs) == PROMQL_VALUE_SCALAR &&
            promql_node_type(n->binary.rhs) == PROMQL_VALUE_SCALAR)
            return PROMQL_VALUE_SCALAR;
        return PROMQL_VALUE_VECTOR;
    case PROMQL_NODE_AGGREGATE: return PROMQL_VALUE_VECTOR;
    case PROMQL_NODE_CALL:
        return n->call.func != NULL ? n->call.func->return_type : PROMQL_VALUE_NONE;
    }
    return PROMQL_VALUE_NONE;
}

/* ---- parser state and errors ---------------------------------------------------------- */

typedef struct parser {
    const char *query;
    size_t len;
    promql_token_t *tokens;
    size_t token_count;
    size_t next;        /* index of the lookahead token */
    cairn_error_t *err; /* may be NULL */
    bool failed;        /* the first error has been recorded */
    int aggregations;   /* open aggregations: their rule catches syntax errors inside */
    int recursion;      /* current recursion depth of parse_expr */
} parser_t;

static void parser_fail_at(parser_t *p, uint32_t offset, const char *message)
{
    if (p->failed)
        return;
    p->failed = true;
    if (p->err == NULL)
        return;
    if (p->len == 0) {
        cairn_error_set(p->err, -EINVAL, "unknown position: parse error: %s", message);
        return;
    }
    unsigned line, chr;
    promql_position_line_char(p->query, offset, &line, &chr);
    cairn_error_set(p->err, -EINVAL, "%u:%u: parse error: %s", line, chr, message);
}

static void parser_failf(parser_t *p, uint32_t offset, const char *fmt, ...) CAIRN_PRINTF(3, 4);

static void parser_failf(parser_t *p, uint32_t offset, const char *fmt, ...)
{
    if (p->failed)
        return;
    buf_t b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    parser_fail_at(p, offset, b.data != NULL ? b.data : "");
    buf_free(&b);
}

/* The lookahead token. Reading a lexical error records it. */
static const promql_token_t *peek(parser_t *p)
{
    const promql_token_t *t = &p->tokens[p->next];
    if (t->type == PROMQL_TOK_ERROR)
        parser_fail_at(p, t->start, t->message);
    return t;
}

static const promql_token_t *consume(parser_t *p)
{
    const promql_token_t *t = &p->tokens[p->next];
    if (t->type != PROMQL_TOK_EOF && t->type != PROMQL_TOK_ERROR)
        p->next++;
    return t;
}

/* "unexpected <token>[ in <context>][, expected <expected>]" at the token. */
static void parser_unexpected(parser_t *p, const promql_token_t *t, const char *context,
                              const char *expected)
{
    if (p->failed || t->type == PROMQL_TOK_ERROR)
        return;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "unexpected ");
    promql_token_describe(p->query, t, &b);
    if (context != NULL) {
        buf_append_str(&b, " in ");
        buf_append_str(&b, context);
    }
    if (expected != NULL) {
        buf_append_str(&b, ", expected ");
        buf_append_str(&b, expected);
    }
    parser_fail_at(p, t->start, b.data);
    buf_free(&b);
}

/* A syntax error no nearer rule catches: only an open aggregation adds its context. */
static void parser_unexpected_here(parser_t *p, const promql_token_t *t)
{
    parser_unexpected(p, t, p->aggregations > 0 ? "aggregation" : NULL, NULL);
}

static char *token_text(parser_t *p, const promql_token_t *t)
{
    return cairn_strndup(p->query + t->start, t->end - t->start);
}

/* ---- literals ----------------------------------------------------------------------------- */

/* Go's strconv.ParseInt(s, 0, 64) for what the lexer produces: decimal, 0x hexadecimal or
 * leading-zero octal, with '_' separators between digits. */
static bool parse_go_int(const char *s, size_t len, int64_t *out)
{
    int base = 10;
    size_t i = 0;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    } else if (len >= 2 && s[0] == '0') {
        base = 8;
        i = 1;
    }
    /* Underscores: only between digits, or right after a base prefix. */
    char saw = base == 10 ? '^' : '0';
    bool any_digit = false;
    uint64_t v = 0;
    for (; i < len; i++) {
        char c = s[i];
        int d;
        if (c == '_') {
            if (saw != '0')
                return false;
            saw = '_';
            continue;
        }
        d = hex_digit_value(c);
        if (d < 0 || d >= base)
            return false;
        saw = '0';
        any_digit = true;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    if (saw == '_' || (!any_digit && base != 8))
        return false;
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

static int parse_go_float_text(char *buf, double *out);

/* Go's strconv.ParseFloat(s, 64) for what the lexer produces. Returns 0, or -EINVAL (syntax)
 * or -ERANGE (overflow). */
static int parse_go_float(const char *s, size_t len, double *out)
{
    char *buf = cairn_strndup(s, len);
    int rc = parse_go_float_text(buf, out);
    cairn_free(buf);
    return rc;
}

/* parse_go_float on a NUL-terminated copy, which it modifies. */
static int parse_go_float_text(char *buf, double *out)
{
    for (char *c = buf; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    if (strcmp(buf, "inf") == 0 || strcmp(buf, "infinity") == 0) {
        *out = INFINITY;
        return 0;
    }
    if (strcmp(buf, "nan") == 0) {
        *out = NAN;
        return 0;
    }
    /* Decimal only: digits, one dot, an exponent; '_' only between digits (Go's rule), and
     * dropped. */
    char saw = '^';
    size_t n = 0;
    for (const char *c = buf; *c; c++) {
        if (*c >= '0' && *c <= '9') {
            saw = '0';
        } else if (*c == '_') {
            if (saw != '0')
                return -EINVAL;
            saw = '_';
            continue;
        } else if (*c == '.' || *c == 'e' || *c == '+' || *c == '-') {
            if (saw == '_')
                return -EINVAL;
            saw = '!';
        } else {
            return -EINVAL;
        }
        buf[n++] = *c;
    }
    if (saw == '_')
        return -EINVAL;
    buf[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end != '\0')
        return -EINVAL;
    if (errno == ERANGE && isinf(v))
        return -ERANGE;
    *out = v;
    return 0;
}

/* The value of a NUMBER token, as Prometheus's parser computes it. */
static bool parse_number_token(parser_t *p, const promql_token_t *t, double *out)
{
    const char *s = p->query + t->start;
    size_t len = t->end - t->start;
    int64_t iv;
    if (parse_go_int(s, len, &iv)) {
        *out = (double)iv;
        return true;
    }
    int rc = parse_go_float(s, len, out);
    if (rc == 0)
        return true;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "error parsing number: strconv.ParseFloat: parsing ");
    promql_quote_go(&b, s, len);
    buf_append_str(&b, rc == -ERANGE ? ": value out of range" : ": invalid syntax");
    parser_fail_at(p, t->start, b.data);
    buf_free(&b);
    return false;
}

/* Prometheus's model.ParseDuration, in milliseconds. */
static bool parse_duration_token(parser_t *p, const promql_token_t *t, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ns;
        int order;
    } units[] = {
        {"ms", 1000000ULL, 7},
        {"s", 1000000000ULL, 6},
        {"m", 60ULL * 1000000000ULL, 5},
        {"h", 3600ULL * 1000000000ULL, 4},
        {"d", 86400ULL * 1000000000ULL, 3},
        {"w", 7ULL * 86400ULL * 1000000000ULL, 2},
        {"y", 365ULL * 86400ULL * 1000000000ULL, 1},
    };
    const char *s = p->query + t->start;
    size_t len = t->end - t->start;
    if (len == 1 && s[0] == '0') {
        *out_ms = 0;
        return true;
    }
    uint64_t total_ns = 0;
    int last_order = 0;
    size_t i = 0;
    while (i < len) {
        if (!(s[i] >= '0' && s[i] <= '9'))
            goto invalid;
        uint64_t v = 0;
        bool overflow = false;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            if (v > (UINT64_MAX - 9) / 10)
                overflow = true;
            v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (overflow)
            goto invalid;
        size_t unit_start = i;
        while (i < len && !(s[i] >= '0' && s[i] <= '9'))
            i++;
        if (i == unit_start)
            goto invalid;
        size_t unit_len = i - unit_start;
        int found = -1;
        for (size_t u = 0; u < CAIRN_ARRAY_LEN(units); u++)
            if (strlen(units[u].unit) == unit_len &&
                memcmp(units[u].unit, s + unit_start, unit_len) == 0)
                found = (int)u;
        if (found < 0) {
            buf_t b = BUF_INIT;
            buf_append_str(&b, "unknown unit ");
            promql_quote_go(&b, s + unit_start, unit_len);
            buf_append_str(&b, " in duration ");
            promql_quote_go(&b, s, len);
            parser_fail_at(p, t->start, b.data);
            buf_free(&b);
            return false;
        }
        if (units[found].order <= last_order)
            goto invalid;
        last_order = units[found].order;
        if (v > (1ULL << 63) / units[found].ns) {
            parser_fail_at(p, t->start, "duration out of range");
            return false;
        }
        total_ns += v * units[found].ns;
        if (total_ns > (uint64_t)INT64_MAX) {
            parser_fail_at(p, t->start, "duration out of range");
            return false;
        }
    }
    *out_ms = (int64_t)(total_ns / 1000000ULL);
    return true;
invalid : {
    buf_t b = BUF_INIT;
    buf_append_str(&b, "not a valid duration string: ");
    promql_quote_go(&b, s, len);
    parser_fail_at(p, t->start, b.data);
    buf_free(&b);
    return false;
}
}

/* A NUMBER or DURATION token as seconds (number_duration_literal). */
static bool parse_number_or_duration(parser_t *p, const promql_token_t *t, double *seconds)
{
    if (t->type == PROMQL_TOK_DURATION) {
        int64_t ms;
        if (!parse_duration_token(p, t, &ms))
            return false;
        *seconds = (double)ms / 1000.0;
        return true;
    }
    return parse_number_token(p, t, seconds);
}

/* A NUMBER or DURATION token as a duration in milliseconds (ranges, steps, offsets). */
static bool parse_duration_value(parser_t *p, const promql_token_t *t, int64_t *ms)
{
    if (t->type == PROMQL_TOK_DURATION)
        return parse_duration_token(p, t, ms);
    double seconds;
    if (!parse_number_token(p, t, &seconds))
        return false;
    /* Prometheus holds durations in int64 nanoseconds. */
    if (!(seconds > -9223372036.854775807 && seconds < 9223372036.854775807)) {
        parser_fail_at(p, t->start, "duration out of range");
        return false;
    }
    *ms = (int64_t)(seconds * 1000.0);
    return true;
}

static void append_utf8(buf_t *b, uint32_t r)
{
    char c[4];
    if (r < 0x80) {
        c[0] = (char)r;
        buf_append(b, c, 1);
    } else if (r < 0x800) {
        c[0] = (char)(0xC0 | (r >> 6));
        c[1] = (char)(0x80 | (r & 0x3F));
        buf_append(b, c, 2);
    } else if (r < 0x10000) {
        c[0] = (char)(0xE0 | (r >> 12));
        c[1] = (char)(0x80 | ((r >> 6) & 0x3F));
        c[2] = (char)(0x80 | (r & 0x3F));
        buf_append(b, c, 3);
    } else {
        c[0] = (char)(0xF0 | (r >> 18));
        c[1] = (char)(0x80 | ((r >> 12) & 0x3F));
        c[2] = (char)(0x80 | ((r >> 6) & 0x3F));
        c[3] = (char)(0x80 | (r & 0x3F));
        buf_append(b, c, 4);
    }
}

/* The value of a STRING token. The lexer has validated its escapes; this applies them (Go's
 * rules: \x and octal escapes give bytes, \u and \U give UTF-8). A NUL byte ends the C
 * string. */
static char *unquote_string(const char *s, size_t len)
{
    buf_t b = BUF_INIT;
    buf_append(&b, "", 0);
    if (len < 2)
        return buf_detach(&b);
    char quote = s[0];
    const char *end = s + len - 1;
    s++;
    if (quote == '`') {
        buf_append(&b, s, (size_t)(end - s));
        return buf_detach(&b);
    }
    while (s < end) {
        if (*s != '\\') {
            buf_append_char(&b, *s++);
            continue;
        }
        s++;
        if (s >= end)
            break;
        char c = *s++;
        switch (c) {
        case 'a': buf_append_char(&b, '\a'); break;
        case 'b': buf_append_char(&b, '\b'); break;
        case 'f': buf_append_char(&b, '\f'); break;
        case 'n': buf_append_char(&b, '\n'); break;
        case 'r': buf_append_char(&b, '\r'); break;
        case 't': buf_append_char(&b, '\t'); break;
        case 'v': buf_append_char(&b, '\v'); break;
        case 'x':
        case 'u':
        case 'U': {
            int n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int i = 0; i < n && s < end && hex_digit_value(*s) >= 0; i++)
                v = v * 16 + (uint32_t)hex_digit_value(*s++);
            if (c == 'x')
                buf_append_char(&b, (char)v);
            else
                append_utf8(&b, v);
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t v = (uint32_t)(c - '0');
                for (int i = 0; i < 2 && s < end && *s >= '0' && *s <= '7'; i++)
                    v = v * 8 + (uint32_t)(*s++ - '0');
                buf_append_char(&b, (char)v);
            } else {
                buf_append_char(&b, c); /* \\, \' or \" */
            }
            break;
        }
    }
    return buf_detach(&b);
}

static char *token_string_value(parser_t *p, const promql_token_t *t)
{
    return unquote_string(p->query + t->start, t->end - t->start);
}

/* ---- grammar helpers ---------------------------------------------------------------------- */

static bool is_legacy_label_name(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* Tokens that may start an expression. */
static bool token_starts_expr(promql_token_type_t t)
{
    switch (t) {
    case PROMQL_TOK_NUMBER:
    case PROMQL_TOK_DURATION:
    case PROMQL_TOK_STRING:
    case PROMQL_TOK_LEFT_PAREN:
    case PROMQL_TOK_LEFT_BRACE:
    case PROMQL_TOK_IDENTIFIER:
    case PROMQL_TOK_METRIC_IDENTIFIER:
    case PROMQL_TOK_ADD:
    case PROMQL_TOK_SUB:
    case PROMQL_TOK_BY:
    case PROMQL_TOK_LAND:
    case PROMQL_TOK_LOR:
    case PROMQL_TOK_LUNLESS:
    case PROMQL_TOK_OFFSET:
    case PROMQL_TOK_WITHOUT:
    case PROMQL_TOK_START:
    case PROMQL_TOK_END:
    case PROMQL_TOK_STEP: return true;
    default: return promql_token_is_aggregator(t);
    }
}

/* Keywords and identifiers a label name in by(...), on(...) etc. may be. */
static bool token_is_label_word(promql_token_type_t t)
{
    switch (t) {
    case PROMQL_TOK_IDENTIFIER:
    case PROMQL_TOK_METRIC_IDENTIFIER:
    case PROMQL_TOK_BOOL:
    case PROMQL_TOK_BY:
    case PROMQL_TOK_GROUP_LEFT:
    case PROMQL_TOK_GROUP_RIGHT:
    case PROMQL_TOK_IGNORING:
    case PROMQL_TOK_LAND:
    case PROMQL_TOK_LOR:
    case PROMQL_TOK_LUNLESS:
    case PROMQL_TOK_OFFSET:
    case PROMQL_TOK_ON:
    case PROMQL_TOK_WITHOUT:
    case PROMQL_TOK_START:
    case PROMQL_TOK_END:
    case PROMQL_TOK_STEP:
    case PROMQL_TOK_ATAN2: return true;
    default: return promql_token_is_aggregator(t);
    }
}

static promql_aggregate_op_t aggregate_op_of(promql_token_type_t t)
{
    switch (t) {
    case PROMQL_TOK_AVG: return PROMQL_AGG_AVG;
    case PROMQL_TOK_COUNT: return PROMQL_AGG_COUNT;
    case PROMQL_TOK_MIN: return PROMQL_AGG_MIN;
    case PROMQL_TOK_MAX: return PROMQL_AGG_MAX;
    case PROMQL_TOK_GROUP: return PROMQL_AGG_GROUP;
    case PROMQL_TOK_STDDEV: return PROMQL_AGG_STDDEV;
    case PROMQL_TOK_STDVAR: return PROMQL_AGG_STDVAR;
    case PROMQL_TOK_TOPK: return PROMQL_AGG_TOPK;
    case PROMQL_TOK_BOTTOMK: return PROMQL_AGG_BOTTOMK;
    case PROMQL_TOK_QUANTILE: return PROMQL_AGG_QUANTILE;
    case PROMQL_TOK_COUNT_VALUES: return PROMQL_AGG_COUNT_VALUES;
    case PROMQL_TOK_LIMITK: return PROMQL_AGG_LIMITK;
    case PROMQL_TOK_LIMIT_RATIO: return PROMQL_AGG_LIMIT_RATIO;
    default: return PROMQL_AGG_SUM;
    }
}

/* Binary operator of a token and its precedence (0: not a binary operator). */
static int binary_op_of(promql_token_type_t t, promql_binary_op_t *op)
{
    switch (t) {
    case PROMQL_TOK_LOR: *op = PROMQL_OP_OR; return 1;
    case PROMQL_TOK_LAND: *op = PROMQL_OP_AND; return 2;
    case PROMQL_TOK_LUNLESS: *op = PROMQL_OP_UNLESS; return 2;
    case PROMQL_TOK_EQLC: *op = PROMQL_OP_EQL; return 3;
    case PROMQL_TOK_NEQ: *op = PROMQL_OP_NEQ; return 3;
    case PROMQL_TOK_LSS: *op = PROMQL_OP_LSS; return 3;
    case PROMQL_TOK_LTE: *op = PROMQL_OP_LTE; return 3;
    case PROMQL_TOK_GTR: *op = PROMQL_OP_GTR; return 3;
    case PROMQL_TOK_GTE: *op = PROMQL_OP_GTE; return 3;
    case PROMQL_TOK_ADD: *op = PROMQL_OP_ADD; return 4;
    case PROMQL_TOK_SUB: *op = PROMQL_OP_SUB; return 4;
    case PROMQL_TOK_MUL: *op = PROMQL_OP_MUL; return 5;
    case PROMQL_TOK_DIV: *op = PROMQL_OP_DIV; return 5;
    case PROMQL_TOK_MOD: *op = PROMQL_OP_MOD; return 5;
    case PROMQL_TOK_ATAN2: *op = PROMQL_OP_ATAN2; return 5;
    case PROMQL_TOK_POW: *op = PROMQL_OP_POW; return 6;
    default: return 0;
    }
}

#define PREC_POW 6

static bool check_depth(parser_t *p, int depth, uint32_t offset)
{
    if (depth <= PROMQL_MAX_DEPTH)
        return true;
    parser_failf(p, offset, "expression nested too deeply (more than %d levels)", PROMQL_MAX_DEPTH);
    return false;
}

static void strings_push(char ***list, size_t *count, char *s)
{
    *list = cairn_realloc(*list, (*count + 1) * sizeof(**list));
    (*list)[(*count)++] = s;
}

/* grouping_labels: "(" [label {"," label} [","]] ")". The list may be empty; NULL and false
 * after an error. */
static bool parse_grouping_labels(parser_t *p, char ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type != PROMQL_TOK_LEFT_PAREN) {
        parser_unexpected(p, t, "grouping opts", "\"(\"");
        return false;
    }
    consume(p);
    t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_RIGHT_PAREN) {
        consume(p);
        return true;
    }
    for (;;) {
        t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type == PROMQL_TOK_STRING) {
            consume(p);
            strings_push(out, count, token_string_value(p, t));
        } else if (token_is_label_word(t->type)) {
            consume(p);
            char *name = token_text(p, t);
            if (!is_legacy_label_name(name)) {
                cairn_free(name);
                parser_unexpected(p, t, "grouping opts", "label");
                goto fail;
            }
            strings_push(out, count, name);
        } else {
            parser_unexpected(p, t, "grouping opts", "label");
            goto fail;
        }
        t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type == PROMQL_TOK_COMMA) {
            consume(p);
            t = peek(p);
            if (p->failed)
                goto fail;
            if (t->type == PROMQL_TOK_RIGHT_PAREN) {
                consume(p);
                return true;
            }
        } else if (t->type == PROMQL_TOK_RIGHT_PAREN) {
            consume(p);
            return true;
        } else {
            parser_unexpected(p, t, "grouping opts", "\",\" or \")\"");
            goto fail;
        }
    }
fail:
    strings_free(*out, *count);
    *out = NULL;
    *count = 0;
    return false;
}

/* ---- selectors ---------------------------------------------------------------------------- */

static bool match_op_of(promql_token_type_t t, tsdb_match_type_t *type)
{
    switch (t) {
    case PROMQL_TOK_EQL: *type = TSDB_MATCH_EQUAL; return true;
    case PROMQL_TOK_NEQ: *type = TSDB_MATCH_NOT_EQUAL; return true;
    case PROMQL_TOK_EQL_REGEX: *type = TSDB_MATCH_REGEX; return true;
    case PROMQL_TOK_NEQ_REGEX: *type = TSDB_MATCH_NOT_REGEX; return true;
    default: return false;
    }
}

static void selector_add_matcher(promql_node_t *vs, tsdb_match_type_t type, char *name, char *value,
                                 uint32_t start, uint32_t end)
{
    size_t n = vs->selector.matcher_count;
    vs->selector.matchers =
        cairn_realloc(vs->selector.matchers, (n + 1) * sizeof(promql_matcher_t));
    promql_matcher_t *m = &vs->selector.matchers[n];
    m->type = type;
    m->name = name;
    m->value = value;
    m->pos.start = start;
    m->pos.end = end;
    vs->selector.matcher_count = n + 1;
}

/* Compiles the matcher to check it (a regular expression may be invalid). */
static bool matcher_validate(parser_t *p, const promql_matcher_t *m)
{
    if (m->type == TSDB_MATCH_EQUAL || m->type == TSDB_MATCH_NOT_EQUAL)
        return true;
    cairn_error_t err;
    err.message[0] = '\0';
    tsdb_matcher_t *compiled = tsdb_matcher_new(m->type, m->name, m->value, &err);
    if (compiled == NULL) {
        parser_fail_at(p, m->pos.start, err.message);
        return false;
    }
    tsdb_matcher_free(compiled);
    return true;
}

/* label_matchers: "{" [matcher {"," matcher} [","]] "}" into vs. */
static bool parse_label_matchers(parser_t *p, promql_node_t *vs)
{
    consume(p); /* { */
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_RIGHT_BRACE) {
        consume(p);
        vs->pos.end = t->end;
        return true;
    }
    for (;;) {
        t = peek(p);
        if (p->failed)
            return false;
        tsdb_match_type_t type;
        if (t->type == PROMQL_TOK_IDENTIFIER || t->type == PROMQL_TOK_STRING) {
            const promql_token_t *label = consume(p);
            const promql_token_t *op = peek(p);
            if (p->failed)
                return false;
            if (!match_op_of(op->type, &type)) {
                if (label->type == PROMQL_TOK_STRING) {
                    /* {"metric.name"}: a metric name matcher. */
                    selector_add_matcher(vs, TSDB_MATCH_EQUAL, cairn_strdup("__name__"),
                                         token_string_value(p, label), label->start, label->end);
                } else {
                    parser_unexpected(p, op, "label matching", "label matching operator");
                    return false;
                }
            } else {
                consume(p);
                const promql_token_t *value = peek(p);
                if (p->failed)
                    return false;
                if (value->type != PROMQL_TOK_STRING) {
                    parser_unexpected(p, value, "label matching", "string");
                    return false;
                }
                consume(p);
                char *name = label->type == PROMQL_TOK_STRING ? token_string_value(p, label)
                                                              : token_text(p, label);
                selector_add_matcher(vs, type, name, token_string_value(p, value), label->start,
                                     value->end);
                if (!matcher_validate(p, &vs->selector.matchers[vs->selector.matcher_count - 1]))
                    return false;
            }
        } else {
            parser_unexpected(p, t, "label matching", "identifier or \"}\"");
            return false;
        }
        t = peek(p);
        if (p->failed)
            return false;
        if (t->type == PROMQL_TOK_COMMA) {
            consume(p);
            t = peek(p);
            if (p->failed)
                return false;
            if (t->type == PROMQL_TOK_RIGHT_BRACE) {
                consume(p);
                vs->pos.end = t->end;
                return true;
            }
        } else if (t->type == PROMQL_TOK_RIGHT_BRACE) {
            consume(p);
            vs->pos.end = t->end;
            return true;
        } else {
            parser_unexpected(p, t, "label matching", "\",\" or \"}\"");
            return false;
        }
    }
}

/* vector_selector: [metric name] [label matchers]; name_tok may be NULL. */
static promql_node_t *parse_vector_selector(parser_t *p, const promql_token_t *name_tok)
{
    uint32_t start = name_tok != NULL ? name_tok->start : p->tokens[p->next].start;
    promql_node_t *vs = node_new(PROMQL_NODE_VECTOR_SELECTOR, start, start);
    if (name_tok != NULL) {
        vs->selector.name = token_text(p, name_tok);
        vs->pos.end = name_tok->end;
        const promql_token_t *t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type == PROMQL_TOK_LEFT_BRACE && !parse_label_matchers(p, vs))
            goto fail;
        selector_add_matcher(vs, TSDB_MATCH_EQUAL, cairn_strdup("__name__"),
                             cairn_strdup(vs->selector.name), name_tok->start, name_tok->end);
    } else if (!parse_label_matchers(p, vs)) {
        goto fail;
    }
    return vs;
fail:
    promql_node_free(vs);
    return NULL;
}

/* ---- expressions -------------------------------------------------------------------------- */

static promql_node_t *parse_expr(parser_t *p, int min_prec, int *depth);

/* "(" [expr {"," expr}] ")": function and aggregation arguments. */
static bool parse_call_body(parser_t *p, promql_node_t ***args, size_t *count, int *depth)
{
    *args = NULL;
    *count = 0;
    *depth = 0;
    consume(p); /* ( */
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_RIGHT_PAREN) {
        consume(p);
        return true;
    }
    for (;;) {
        int d;
        promql_node_t *arg = parse_expr(p, 0, &d);
        if (arg == NULL)
            goto fail;
        *args = cairn_realloc(*args, (*count + 1) * sizeof(**args));
        (*args)[(*count)++] = arg;
        if (d > *depth)
            *depth = d;
        t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type == PROMQL_TOK_COMMA) {
            const promql_token_t *comma = consume(p);
            t = peek(p);
            if (p->failed)
                goto fail;
            if (!token_starts_expr(t->type)) {
                parser_fail_at(p, comma->start,
                               "trailing commas not allowed in function call args");
                goto fail;
            }
        } else if (t->type == PROMQL_TOK_RIGHT_PAREN) {
            consume(p);
            return true;
        } else {
            parser_unexpected_here(p, t);
            goto fail;
        }
    }
fail:
    for (size_t i = 0; i < *count; i++)
        promql_node_free((*args)[i]);
    cairn_free(*args);
    *args = NULL;
    *count = 0;
    return false;
}

static promql_node_t *parse_function_call(parser_t *p, const promql_token_t *name_tok, int *depth)
{
    promql_node_t **args;
    size_t count;
    int d;
    if (!parse_call_body(p, &args, &count, &d))
        return NULL;
    const promql_token_t *close = &p->tokens[p->next - 1];
    promql_node_t *call = node_new(PROMQL_NODE_CALL, name_tok->start, close->end);
    call->call.args = args;
    call->call.arg_count = count;
    char *name = token_text(p, name_tok);
    call->call.func = promql_function_lookup(name);
    if (call->call.func == NULL) {
        buf_t b = BUF_INIT;
        buf_append_str(&b, "unknown function with name ");
        promql_quote_go(&b, name, strlen(name));
        parser_fail_at(p, name_tok->start, b.data);
        buf_free(&b);
    }
    cairn_free(name);
    *depth = d + 1;
    if (p->failed || !check_depth(p, *depth, name_tok->start)) {
        promql_node_free(call);
        return NULL;
    }
    return call;
}

static promql_node_t *parse_aggregation(parser_t *p, int *depth)
{
    const promql_token_t *op_tok = consume(p);
    promql_node_t *agg = node_new(PROMQL_NODE_AGGREGATE, op_tok->start, op_tok->end);
    agg->aggregate.op = aggregate_op_of(op_tok->type);
    promql_node_t **args = NULL;
    size_t count = 0;
    int d = 0;
    p->aggregations++;
    const promql_token_t *t = peek(p);
    if (p->failed)
        goto fail;
    if (t->type == PROMQL_TOK_BY || t->type == PROMQL_TOK_WITHOUT) {
        consume(p);
        agg->aggregate.without = t->type == PROMQL_TOK_WITHOUT;
        agg->aggregate.has_grouping = true;
        if (!parse_grouping_labels(p, &agg->aggregate.grouping, &agg->aggregate.grouping_count))
            goto fail;
        t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type != PROMQL_TOK_LEFT_PAREN) {
            parser_unexpected_here(p, t);
            goto fail;
        }
        if (!parse_call_body(p, &args, &count, &d))
            goto fail;
        p->aggregations--;
    } else {
        if (!parse_call_body(p, &args, &count, &d))
            goto fail;
        p->aggregations--;
        t = peek(p);
        if (p->failed)
            goto fail_closed;
        if (t->type == PROMQL_TOK_BY || t->type == PROMQL_TOK_WITHOUT) {
            consume(p);
            agg->aggregate.without = t->type == PROMQL_TOK_WITHOUT;
            agg->aggregate.has_grouping = true;
            if (!parse_grouping_labels(p, &agg->aggregate.grouping, &agg->aggregate.grouping_count))
                goto fail_closed;
        }
    }
    agg->pos.end = p->tokens[p->next - 1].end;
    if (count == 0) {
        parser_fail_at(p, agg->pos.start, "no arguments for aggregate expression provided");
        goto fail_closed;
    }
    size_t want = aggregate_has_param(agg->aggregate.op) ? 2 : 1;
    if (count != want) {
        parser_failf(p, agg->pos.start,
                     "wrong number of arguments for aggregate expression provided, expected "
                     "%zu, got %zu",
                     want, count);
        goto fail_closed;
    }
    if (want == 2)
        agg->aggregate.param = args[0];
    agg->aggregate.expr = args[want - 1];
    cairn_free(args);
    *depth = d + 1;
    if (!check_depth(p, *depth, agg->pos.start)) {
        promql_node_free(agg);
        return NULL;
    }
    return agg;
fail:
    p->aggregations--;
fail_closed:
    for (size_t i = 0; i < count; i++)
        promql_node_free(args[i]);
    cairn_free(args);
    promql_node_free(agg);
    return NULL;
}

static promql_node_t *parse_primary(parser_t *p, int *depth)
{
    const promql_token_t *t = peek(p);
    if (p->failed)
        return NULL;
    *depth = 1;
    switch (t->type) {
    case PROMQL_TOK_NUMBER:
    case PROMQL_TOK_DURATION: {
        consume(p);
        double v;
        if (!parse_number_or_duration(p, t, &v))
            return NULL;
        promql_node_t *n = node_new(PROMQL_NODE_NUMBER, t->start, t->end);
        n->number = v;
        return n;
    }
    case PROMQL_TOK_STRING: {
        consume(p);
        promql_node_t *n = node_new(PROMQL_NODE_STRING, t->start, t->end);
        n->string = token_string_value(p, t);
        return n;
    }
    case PROMQL_TOK_LEFT_PAREN: {
        consume(p);
        int d;
        promql_node_t *inner = parse_expr(p, 0, &d);
        if (inner == NULL)
            return NULL;
        const promql_token_t *close = peek(p);
        if (p->failed || close->type != PROMQL_TOK_RIGHT_PAREN) {
            parser_unexpected_here(p, close);
            promql_node_free(inner);
            return NULL;
        }
        consume(p);
        promql_node_t *n = node_new(PROMQL_NODE_PAREN, t->start, close->end);
        n->paren.expr = inner;
        *depth = d + 1;
        if (!check_depth(p, *depth, t->start)) {
            promql_node_free(n);
            return NULL;
        }
        return n;
    }
    case PROMQL_TOK_LEFT_BRACE: return parse_vector_selector(p, NULL);
    case PROMQL_TOK_IDENTIFIER:
    case PROMQL_TOK_START:
    case PROMQL_TOK_END:
    case PROMQL_TOK_STEP: {
        consume(p);
        const promql_token_t *next = peek(p);
        if (p->failed)
            return NULL;
        if (next->type == PROMQL_TOK_LEFT_PAREN)
            return parse_function_call(p, t, depth);
        return parse_vector_selector(p, t);
    }
    case PROMQL_TOK_METRIC_IDENTIFIER:
    case PROMQL_TOK_BY:
    case PROMQL_TOK_LAND:
    case PROMQL_TOK_LOR:
    case PROMQL_TOK_LUNLESS:
    case PROMQL_TOK_OFFSET:
    case PROMQL_TOK_WITHOUT: consume(p); return parse_vector_selector(p, t);
    default: break;
    }
    if (promql_token_is_aggregator(t->type)) {
        const promql_token_t *next = &p->tokens[p->next + 1];
        if (next->type == PROMQL_TOK_ERROR) {
            consume(p);
            peek(p);
            return NULL;
        }
        if (next->type == PROMQL_TOK_LEFT_PAREN || next->type == PROMQL_TOK_BY ||
            next->type == PROMQL_TOK_WITHOUT)
            return parse_aggregation(p, depth);
        consume(p);
        return parse_vector_selector(p, t); /* a metric named like an aggregator */
    }
    parser_unexpected_here(p, t);
    return NULL;
}

static void set_offset(parser_t *p, promql_node_t *e, int64_t offset_ms, uint32_t end)
{
    int64_t *target;
    switch (e->kind) {
    case PROMQL_NODE_VECTOR_SELECTOR: target = &e->selector.offset_ms; break;
    case PROMQL_NODE_MATRIX_SELECTOR: target = &e->matrix.vector->selector.offset_ms; break;
    case PROMQL_NODE_SUBQUERY: target = &e->subquery.offset_ms; break;
    default:
        parser_fail_at(p, e->pos.start,
                       "offset modifier must be preceded by an instant vector selector or range "
                       "vector selector or a subquery");
        return;
    }
    if (*target != 0) {
        parser_fail_at(p, e->pos.start, "offset may not be set multiple times");
        return;
    }
    *target = offset_ms;
    e->pos.end = end;
}

static void set_at(parser_t *p, promql_node_t *e, promql_at_t at, int64_t at_ms, uint32_t end)
{
    promql_at_t *target;
    int64_t *target_ms;
    switch (e->kind) {
    case PROMQL_NODE_VECTOR_SELECTOR:
        target = &e->selector.at;
        target_ms = &e->selector.at_ms;
        break;
    case PROMQL_NODE_MATRIX_SELECTOR:
        target = &e->matrix.vector->selector.at;
        target_ms = &e->matrix.vector->selector.at_ms;
        break;
    case PROMQL_NODE_SUBQUERY:
        target = &e->subquery.at;
        target_ms = &e->subquery.at_ms;
        break;
    default:
        parser_fail_at(p, e->pos.start,
                       "@ modifier must be preceded by an instant vector selector or range "
                       "vector selector or a subquery");
        return;
    }
    if (*target != PROMQL_AT_NONE) {
        parser_fail_at(p, e->pos.start, "@ <timestamp> may not be set multiple times");
        return;
    }
    *target = at;
    *target_ms = at_ms;
    e->pos.end = end;
}

/* ---- duration expressions ----------------------------------------------------------------
 *
 * Prometheus 3.x accepts arithmetic where a duration goes (experimental, enabled in
 * promqltest): inside brackets `foo[5m * 2]`, `foo[1h:10s + 5s]`, and after offset a
 * parenthesised expression or min(a, b) / max(a, b). Operands are numbers (seconds) and
 * durations; + - * / % ^, unary signs, parentheses, min and max are folded to a constant here.
 * step() and range(), which depend on the query's parameters, are refused with an error
 * (the AST holds constant durations only).
 */

#define DURATION_EXPECTED "number, duration, step(), or range()"

static bool parse_duration_expr(parser_t *p, int min_prec, const char *context, int depth,
                                double *out);

static bool token_is_range_word(parser_t *p, const promql_token_t *t)
{
    return t->type == PROMQL_TOK_IDENTIFIER && t->end - t->start == 5 &&
           memcmp(p->query + t->start, "range", 5) == 0;
}

static bool token_starts_duration_call(parser_t *p, const promql_token_t *t)
{
    return t->type == PROMQL_TOK_LEFT_PAREN || t->type == PROMQL_TOK_STEP ||
           t->type == PROMQL_TOK_MIN || t->type == PROMQL_TOK_MAX || token_is_range_word(p, t);
}

static bool expect_token(parser_t *p, promql_token_type_t type, const char *context,
                         const char *expected)
{
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type != type) {
        parser_unexpected(p, t, context, expected);
        return false;
    }
    consume(p);
    return true;
}

/* A literal, a signed operand, a parenthesised expression, or min()/max(). */
static bool parse_duration_primary(parser_t *p, const char *context, int depth, double *out)
{
    if (!check_depth(p, depth, p->tokens[p->next].start))
        return false;
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    switch (t->type) {
    case PROMQL_TOK_NUMBER:
    case PROMQL_TOK_DURATION: consume(p); return parse_number_or_duration(p, t, out);
    case PROMQL_TOK_ADD:
    case PROMQL_TOK_SUB:
        consume(p);
        if (!parse_duration_expr(p, PREC_POW, context, depth + 1, out))
            return false;
        if (t->type == PROMQL_TOK_SUB)
            *out = -*out;
        return true;
    case PROMQL_TOK_LEFT_PAREN:
        consume(p);
        return parse_duration_expr(p, 0, context, depth + 1, out) &&
               expect_token(p, PROMQL_TOK_RIGHT_PAREN, context, "\")\"");
    case PROMQL_TOK_MIN:
    case PROMQL_TOK_MAX: {
        consume(p);
        double a, b;
        if (!expect_token(p, PROMQL_TOK_LEFT_PAREN, context, "\"(\"") ||
            !parse_duration_expr(p, 0, context, depth + 1, &a) ||
            !expect_token(p, PROMQL_TOK_COMMA, context, "\",\"") ||
            !parse_duration_expr(p, 0, context, depth + 1, &b) ||
            !expect_token(p, PROMQL_TOK_RIGHT_PAREN, context, "\")\""))
            return false;
        if (isnan(a) || isnan(b))
            *out = NAN;
        else
            *out = t->type == PROMQL_TOK_MIN ? (a < b ? a : b) : (a > b ? a : b);
        return true;
    }
    default: break;
    }
    if (t->type == PROMQL_TOK_STEP || token_is_range_word(p, t)) {
        parser_fail_at(p, t->start, "step() and range() in duration expressions are not supported");
        return false;
    }
    parser_unexpected(p, t, context, DURATION_EXPECTED);
    return false;
}

static bool parse_duration_expr(parser_t *p, int min_prec, const char *context, int depth,
                                double *out)
{
    if (!parse_duration_primary(p, context, depth, out))
        return false;
    for (;;) {
        const promql_token_t *t = peek(p);
        if (p->failed)
            return false;
        promql_binary_op_t op;
        int prec = binary_op_of(t->type, &op);
        if (prec < 4 || prec < min_prec || op == PROMQL_OP_ATAN2)
            return true;
        consume(p);
        double rhs;
        if (!parse_duration_expr(p, op == PROMQL_OP_POW ? prec : prec + 1, context, depth + 1,
                                 &rhs))
            return false;
        switch (op) {
        case PROMQL_OP_ADD: *out += rhs; break;
        case PROMQL_OP_SUB: *out -= rhs; break;
        case PROMQL_OP_MUL: *out *= rhs; break;
        case PROMQL_OP_DIV:
            if (rhs == 0) {
                parser_fail_at(p, t->start, "division by zero");
                return false;
            }
            *out /= rhs;
            break;
        case PROMQL_OP_MOD:
            if (rhs == 0) {
                parser_fail_at(p, t->start, "modulo by zero");
                return false;
            }
            *out = fmod(*out, rhs);
            break;
        default: *out = pow(*out, rhs); break;
        }
    }
}

/* Seconds from a duration expression as milliseconds. */
static bool duration_expr_ms(parser_t *p, double seconds, uint32_t offset, int64_t *ms)
{
    if (!(seconds > -9223372036.854775807 && seconds < 9223372036.854775807)) {
        parser_fail_at(p, offset, "duration out of range");
        return false;
    }
    *ms = (int64_t)llround(seconds * 1000.0);
    return true;
}

/* A range or step inside brackets: a lone literal (exact), or a duration expression. */
static bool parse_bracket_duration(parser_t *p, const char *context, int64_t *ms)
{
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_NUMBER || t->type == PROMQL_TOK_DURATION) {
        promql_token_type_t after = p->tokens[p->next + 1].type;
        if (after == PROMQL_TOK_RIGHT_BRACKET || after == PROMQL_TOK_COLON) {
            consume(p);
            return parse_duration_value(p, t, ms);
        }
    }
    double seconds;
    return parse_duration_expr(p, 0, context, 1, &seconds) &&
           duration_expr_ms(p, seconds, t->start, ms);
}

/* "[" range "]" or "[" range ":" [step] "]" after e. */
static promql_node_t *parse_range_suffix(parser_t *p, promql_node_t *e, int *depth)
{
    const promql_token_t *open = consume(p);
    uint32_t range_start = p->tokens[p->next].start;
    int64_t range_ms;
    if (!parse_bracket_duration(p, "subquery or range selector", &range_ms))
        goto fail;
    if (range_ms <= 0) {
        parser_fail_at(p, range_start, "duration must be greater than 0");
        goto fail;
    }
    const promql_token_t *t = peek(p);
    if (p->failed)
        goto fail;
    if (t->type == PROMQL_TOK_RIGHT_BRACKET) {
        consume(p);
        const char *msg = NULL;
        if (e->kind != PROMQL_NODE_VECTOR_SELECTOR)
            msg = "ranges only allowed for vector selectors";
        else if (e->selector.offset_ms != 0)
            msg = "no offset modifiers allowed before range";
        else if (e->selector.at == PROMQL_AT_TIME)
            msg = "no @ modifiers allowed before range";
        if (msg != NULL) {
            parser_fail_at(p, open->start, msg);
            goto fail;
        }
        promql_node_t *m = node_new(PROMQL_NODE_MATRIX_SELECTOR, e->pos.start, t->end);
        m->matrix.vector = e;
        m->matrix.range_ms = range_ms;
        (*depth)++;
        return m;
    }
    if (t->type != PROMQL_TOK_COLON) {
        parser_unexpected(p, t, "subquery or range", "\":\" or \"]\"");
        goto fail;
    }
    consume(p);
    int64_t step_ms = 0;
    t = peek(p);
    if (p->failed)
        goto fail;
    if (t->type != PROMQL_TOK_RIGHT_BRACKET) {
        uint32_t step_start = t->start;
        if (!parse_bracket_duration(p, "subquery selector", &step_ms))
            goto fail;
        if (step_ms < 0) {
            parser_fail_at(p, step_start, "duration must be greater than 0");
            goto fail;
        }
        t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type != PROMQL_TOK_RIGHT_BRACKET) {
            parser_unexpected(p, t, "subquery selector", "\"]\"");
            goto fail;
        }
    }
    consume(p);
    promql_node_t *sq = node_new(PROMQL_NODE_SUBQUERY, e->pos.start, t->end);
    sq->subquery.expr = e;
    sq->subquery.range_ms = range_ms;
    sq->subquery.step_ms = step_ms;
    (*depth)++;
    return sq;
fail:
    promql_node_free(e);
    return NULL;
}

/* "offset" ["-"] (literal | "(" expr ")" | min(...) | max(...)) after e. A literal ends the
 * offset: `foo offset 5m - 1` subtracts 1 from the offset selector. */
static bool parse_offset_suffix(parser_t *p, promql_node_t *e)
{
    consume(p);
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    bool negative = false;
    if (t->type == PROMQL_TOK_SUB) {
        negative = true;
        consume(p);
        t = peek(p);
        if (p->failed)
            return false;
    }
    int64_t ms;
    if (t->type == PROMQL_TOK_NUMBER || t->type == PROMQL_TOK_DURATION) {
        consume(p);
        if (!parse_duration_value(p, t, &ms))
            return false;
    } else if (token_starts_duration_call(p, t)) {
        double seconds;
        if (!parse_duration_primary(p, "offset", 1, &seconds) ||
            !duration_expr_ms(p, seconds, t->start, &ms))
            return false;
    } else {
        parser_unexpected(p, t, "offset", DURATION_EXPECTED);
        return false;
    }
    set_offset(p, e, negative ? -ms : ms, p->tokens[p->next - 1].end);
    return !p->failed;
}

/* "@" (number | start() | end()) after e. */
static bool parse_at_suffix(parser_t *p, promql_node_t *e)
{
    consume(p);
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_START || t->type == PROMQL_TOK_END) {
        promql_at_t at = t->type == PROMQL_TOK_START ? PROMQL_AT_START : PROMQL_AT_END;
        consume(p);
        const promql_token_t *open = peek(p);
        if (p->failed)
            return false;
        if (open->type != PROMQL_TOK_LEFT_PAREN) {
            parser_unexpected(p, open, "@", "timestamp");
            return false;
        }
        consume(p);
        const promql_token_t *close = peek(p);
        if (p->failed)
            return false;
        if (close->type != PROMQL_TOK_RIGHT_PAREN) {
            parser_unexpected(p, close, "@", "timestamp");
            return false;
        }
        consume(p);
        set_at(p, e, at, 0, close->end);
        return !p->failed;
    }
    bool negative = false;
    if (t->type == PROMQL_TOK_ADD || t->type == PROMQL_TOK_SUB) {
        negative = t->type == PROMQL_TOK_SUB;
        consume(p);
        t = peek(p);
        if (p->failed)
            return false;
    }
    if (t->type != PROMQL_TOK_NUMBER && t->type != PROMQL_TOK_DURATION) {
        parser_unexpected(p, t, "@", "timestamp");
        return false;
    }
    consume(p);
    double seconds;
    if (!parse_number_or_duration(p, t, &seconds))
        return false;
    if (negative)
        seconds = -seconds;
    if (!isfinite(seconds) || seconds >= 9223372036854775807.0 ||
        seconds <= -9223372036854775808.0) {
        if (isnan(seconds))
            parser_fail_at(p, e->pos.start, "timestamp out of bounds for @ modifier: NaN");
        else if (isinf(seconds))
            parser_failf(p, e->pos.start, "timestamp out of bounds for @ modifier: %sInf",
                         seconds > 0 ? "+" : "-");
        else
            parser_failf(p, e->pos.start, "timestamp out of bounds for @ modifier: %f", seconds);
        return false;
    }
    /* Milliseconds, rounded half away from zero; clamped where seconds * 1000 leaves int64
     * (Prometheus accepts those timestamps, and no data is that far away). */
    double ms = round(seconds * 1000.0);
    int64_t at_ms = ms >= 9.2e18 ? INT64_MAX : ms <= -9.2e18 ? INT64_MIN : (int64_t)ms;
    set_at(p, e, PROMQL_AT_TIME, at_ms, t->end);
    return !p->failed;
}

/* A primary expression and its postfix modifiers. */
static promql_node_t *parse_postfix(parser_t *p, int *depth)
{
    promql_node_t *e = parse_primary(p, depth);
    if (e == NULL)
        return NULL;
    for (;;) {
        const promql_token_t *t = peek(p);
        if (p->failed)
            goto fail;
        if (t->type == PROMQL_TOK_LEFT_BRACKET) {
            e = parse_range_suffix(p, e, depth);
            if (e == NULL)
                return NULL;
            if (!check_depth(p, *depth, e->pos.start))
                goto fail;
        } else if (t->type == PROMQL_TOK_OFFSET) {
            if (!parse_offset_suffix(p, e))
                goto fail;
        } else if (t->type == PROMQL_TOK_AT) {
            if (!parse_at_suffix(p, e))
                goto fail;
        } else {
            return e;
        }
    }
fail:
    promql_node_free(e);
    return NULL;
}

static promql_node_t *parse_unary(parser_t *p, int *depth)
{
    const promql_token_t *t = peek(p);
    if (p->failed)
        return NULL;
    if (t->type != PROMQL_TOK_ADD && t->type != PROMQL_TOK_SUB)
        return parse_postfix(p, depth);
    consume(p);
    int d;
    promql_node_t *operand = parse_expr(p, PREC_POW, &d);
    if (operand == NULL)
        return NULL;
    if (operand->kind == PROMQL_NODE_NUMBER) {
        if (t->type == PROMQL_TOK_SUB)
            operand->number = -operand->number;
        operand->pos.start = t->start;
        *depth = d;
        return operand;
    }
    promql_node_t *n = node_new(PROMQL_NODE_UNARY, t->start, operand->pos.end);
    n->unary.op = t->type == PROMQL_TOK_SUB ? PROMQL_OP_SUB : PROMQL_OP_ADD;
    n->unary.expr = operand;
    *depth = d + 1;
    if (!check_depth(p, *depth, t->start)) {
        promql_node_free(n);
        return NULL;
    }
    return n;
}

/* bool, on(...)/ignoring(...), group_left(...)/group_right(...) after a binary operator. */
static bool parse_binary_modifiers(parser_t *p, promql_node_t *bin)
{
    promql_matching_t *m = cairn_calloc(1, sizeof(*m));
    m->card = PROMQL_CARD_ONE_TO_ONE;
    bin->binary.matching = m;
    const promql_token_t *t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_BOOL) {
        consume(p);
        bin->binary.return_bool = true;
        t = peek(p);
        if (p->failed)
            return false;
    }
    if (t->type != PROMQL_TOK_ON && t->type != PROMQL_TOK_IGNORING)
        return true;
    consume(p);
    m->on = t->type == PROMQL_TOK_ON;
    if (!parse_grouping_labels(p, &m->labels, &m->label_count))
        return false;
    t = peek(p);
    if (p->failed)
        return false;
    if (t->type != PROMQL_TOK_GROUP_LEFT && t->type != PROMQL_TOK_GROUP_RIGHT)
        return true;
    consume(p);
    m->card = t->type == PROMQL_TOK_GROUP_LEFT ? PROMQL_CARD_MANY_TO_ONE : PROMQL_CARD_ONE_TO_MANY;
    t = peek(p);
    if (p->failed)
        return false;
    if (t->type == PROMQL_TOK_LEFT_PAREN)
        return parse_grouping_labels(p, &m->include, &m->include_count);
    return true;
}

static promql_node_t *parse_expr(parser_t *p, int min_prec, int *depth)
{
    if (++p->recursion > PROMQL_MAX_DEPTH) {
        check_depth(p, PROMQL_MAX_DEPTH + 1, p->tokens[p->next].start);
        p->recursion--;
        return NULL;
    }
    promql_node_t *lhs = parse_unary(p, depth);
    if (lhs == NULL)
        goto out;
    for (;;) {
        const promql_token_t *t = peek(p);
        if (p->failed)
            goto fail;
        promql_binary_op_t op;
        int prec = binary_op_of(t->type, &op);
        if (prec == 0 || prec < min_prec)
            break;
        consume(p);
        promql_node_t *bin = node_new(PROMQL_NODE_BINARY, lhs->pos.start, lhs->pos.end);
        bin->binary.op = op;
        bin->binary.lhs = lhs;
        lhs = bin;
        if (!parse_binary_modifiers(p, bin))
            goto fail;
        int rd;
        /* ^ is right-associative: its right side may hold another ^. */
        bin->binary.rhs = parse_expr(p, op == PROMQL_OP_POW ? prec : prec + 1, &rd);
        if (bin->binary.rhs == NULL)
            goto fail;
        bin->pos.end = bin->binary.rhs->pos.end;
        *depth = (*depth > rd ? *depth : rd) + 1;
        if (!check_depth(p, *depth, t->start))
            goto fail;
    }
out:
    p->recursion--;
    return lhs;
fail:
    promql_node_free(lhs);
    p->recursion--;
    return NULL;
}

/* ---- type checking ------------------------------------------------------------------------ */

static promql_value_type_t check_node(parser_t *p, promql_node_t *n, bool bypass_empty_check);

static void expect_type(parser_t *p, promql_node_t *n, promql_value_type_t want,
                        const char *context)
{
    promql_value_type_t t = check_node(p, n, false);
    if (t != want)
        parser_failf(p, n->pos.start, "expected type %s in %s, got %s", documented_type(want),
                     context, documented_type(t));
}

/* The start of the operator between a binary expression's sides. */
static uint32_t binary_op_position(parser_t *p, const promql_node_t *n)
{
    uint32_t i = n->binary.lhs->pos.end;
    while (i < p->len && (p->query[i] == ' ' || p->query[i] == '\t' || p->query[i] == '\n' ||
                          p->query[i] == '\r'))
        i++;
    return i;
}

static bool selector_matches_empty(const promql_matcher_t *m)
{
    switch (m->type) {
    case TSDB_MATCH_EQUAL: return m->value[0] == '\0';
    case TSDB_MATCH_NOT_EQUAL: return m->value[0] != '\0';
    default: break;
    }
    cairn_error_t err;
    tsdb_matcher_t *compiled = tsdb_matcher_new(m->type, m->name, m->value, &err);
    if (compiled == NULL)
        return true;
    bool matches = tsdb_matcher_matches(compiled, "");
    tsdb_matcher_free(compiled);
    return matches;
}

static void check_selector(parser_t *p, promql_node_t *n, bool bypass_empty_check)
{
    if (n->selector.name != NULL) {
        /* The last matcher is the name's own; another __name__ matcher sets it twice. */
        for (size_t i = 0; i + 1 < n->selector.matcher_count; i++) {
            const promql_matcher_t *m = &n->selector.matchers[i];
            if (strcmp(m->name, "__name__") == 0) {
                buf_t b = BUF_INIT;
                buf_append_str(&b, "metric name must not be set twice: ");
                promql_quote_go(&b, n->selector.name, strlen(n->selector.name));
                buf_append_str(&b, " or ");
                promql_quote_go(&b, m->value, strlen(m->value));
                parser_fail_at(p, n->pos.start, b.data);
                buf_free(&b);
                return;
            }
        }
        return;
    }
    if (bypass_empty_check)
        return;
    for (size_t i = 0; i < n->selector.matcher_count; i++)
        if (!selector_matches_empty(&n->selector.matchers[i]))
            return;
    parser_fail_at(p, n->pos.start, "vector selector must contain at least one non-empty matcher");
}

static void check_call(parser_t *p, promql_node_t *n)
{
    const promql_function_t *f = n->call.func;
    size_t nargs = f->arg_count, got = n->call.arg_count;
    if (f->variadic == 0) {
        if (got != nargs) {
            parser_failf(p, n->pos.start, "expected %zu argument(s) in call to \"%s\", got %zu",
                         nargs, f->name, got);
            return;
        }
    } else {
        size_t min = nargs - 1;
        if (got < min) {
            parser_failf(p, n->pos.start,
                         "expected at least %zu argument(s) in call to \"%s\", got %zu", min,
                         f->name, got);
            return;
        }
        if (f->variadic > 0 && got > min + (size_t)f->variadic) {
            parser_failf(p, n->pos.start,
                         "expected at most %zu argument(s) in call to \"%s\", got %zu",
                         min + (size_t)f->variadic, f->name, got);
            return;
        }
    }
    bool bypass_second = false;
    if (f->id == PROMQL_FN_INFO && got > 1) {
        promql_node_t *selectors = n->call.args[1];
        promql_value_type_t t = promql_node_type(selectors);
        if (t != PROMQL_VALUE_VECTOR) {
            parser_failf(p, n->pos.start, "expected type %s in call to function \"%s\", got %s",
                         documented_type(PROMQL_VALUE_VECTOR), f->name, documented_type(t));
            return;
        }
        if (selectors->kind != PROMQL_NODE_VECTOR_SELECTOR) {
            parser_fail_at(p, selectors->pos.start, "expected label selectors only");
            return;
        }
        if (selectors->selector.name != NULL) {
            parser_fail_at(p, selectors->pos.start,
                           "expected label selectors only, got vector selector instead");
            return;
        }
        bypass_second = true;
    }
    for (size_t i = 0; i < got; i++) {
        size_t k = i;
        if (k >= nargs) {
            if (f->variadic == 0)
                break;
            k = nargs - 1;
        }
        promql_value_type_t t = check_node(p, n->call.args[i], i == 1 && bypass_second);
        if (p->failed)
            return;
        if (t != f->arg_types[k]) {
            parser_failf(p, n->call.args[i]->pos.start,
                         "expected type %s in call to function \"%s\", got %s",
                         documented_type(f->arg_types[k]), f->name, documented_type(t));
            return;
        }
    }
}

static void check_binary(parser_t *p, promql_node_t *n)
{
    promql_value_type_t lt = check_node(p, n->binary.lhs, false);
    if (p->failed)
        return;
    promql_value_type_t rt = check_node(p, n->binary.rhs, false);
    if (p->failed)
        return;
    promql_binary_op_t op = n->binary.op;
    promql_matching_t *m = n->binary.matching;
    if (n->binary.return_bool && !promql_binary_op_is_comparison(op)) {
        parser_fail_at(p, binary_op_position(p, n),
                       "bool modifier can only be used on comparison operators");
        return;
    }
    if (promql_binary_op_is_comparison(op) && !n->binary.return_bool && lt == PROMQL_VALUE_SCALAR &&
        rt == PROMQL_VALUE_SCALAR) {
        parser_fail_at(p, binary_op_position(p, n),
                       "comparisons between scalars must use BOOL modifier");
        return;
    }
    if (m != NULL && promql_binary_op_is_set(op) && m->card == PROMQL_CARD_ONE_TO_ONE)
        m->card = PROMQL_CARD_MANY_TO_MANY;
    if (m != NULL && m->on) {
        for (size_t i = 0; i < m->label_count; i++)
            for (size_t j = 0; j < m->include_count; j++)
                if (strcmp(m->labels[i], m->include[j]) == 0) {
                    buf_t b = BUF_INIT;
                    buf_append_str(&b, "label ");
                    promql_quote_go(&b, m->labels[i], strlen(m->labels[i]));
                    buf_append_str(&b, " must not occur in ON and GROUP clause at once");
                    parser_fail_at(p, binary_op_position(p, n), b.data);
                    buf_free(&b);
                    return;
                }
    }
    if (lt != PROMQL_VALUE_SCALAR && lt != PROMQL_VALUE_VECTOR) {
        parser_fail_at(p, n->binary.lhs->pos.start,
                       "binary expression must contain only scalar and instant vector types");
        return;
    }
    if (rt != PROMQL_VALUE_SCALAR && rt != PROMQL_VALUE_VECTOR) {
        parser_fail_at(p, n->binary.rhs->pos.start,
                       "binary expression must contain only scalar and instant vector types");
        return;
    }
    if ((lt != PROMQL_VALUE_VECTOR || rt != PROMQL_VALUE_VECTOR) && m != NULL) {
        if (m->label_count > 0) {
            parser_fail_at(p, n->pos.start, "vector matching only allowed between instant vectors");
            return;
        }
        matching_free(m);
        n->binary.matching = m = NULL;
    } else if (m != NULL && promql_binary_op_is_set(op)) {
        if (m->card == PROMQL_CARD_ONE_TO_MANY || m->card == PROMQL_CARD_MANY_TO_ONE) {
            parser_failf(p, n->pos.start, "no grouping allowed for \"%s\" operation",
                         promql_binary_op_name(op));
            return;
        }
    }
    if ((lt == PROMQL_VALUE_SCALAR || rt == PROMQL_VALUE_SCALAR) && promql_binary_op_is_set(op))
        parser_failf(p, n->pos.start, "set operator \"%s\" not allowed in binary scalar expression",
                     promql_binary_op_name(op));
}

/* Checks n and its children in Prometheus's order (checkAST); returns n's type. */
static promql_value_type_t check_node(parser_t *p, promql_node_t *n, bool bypass_empty_check)
{
    if (p->failed)
        return PROMQL_VALUE_NONE;
    promql_value_type_t type = promql_node_type(n);
    switch (n->kind) {
    case PROMQL_NODE_AGGREGATE:
        expect_type(p, n->aggregate.expr, PROMQL_VALUE_VECTOR, "aggregation expression");
        if (n->aggregate.param != NULL)
            expect_type(p, n->aggregate.param,
                        n->aggregate.op == PROMQL_AGG_COUNT_VALUES ? PROMQL_VALUE_STRING
                                                                   : PROMQL_VALUE_SCALAR,
                        "aggregation parameter");
        break;
    case PROMQL_NODE_BINARY: check_binary(p, n); break;
    case PROMQL_NODE_CALL: check_call(p, n); break;
    case PROMQL_NODE_PAREN: check_node(p, n->paren.expr, false); break;
    case PROMQL_NODE_UNARY: {
        promql_value_type_t t = check_node(p, n->unary.expr, false);
        if (!p->failed && t != PROMQL_VALUE_SCALAR && t != PROMQL_VALUE_VECTOR)
            parser_failf(p, n->pos.start,
                         "unary expression only allowed on expressions of type scalar or instant "
                         "vector, got \"%s\"",
                         documented_type(t));
        break;
    }
    case PROMQL_NODE_SUBQUERY: {
        promql_value_type_t t = check_node(p, n->subquery.expr, false);
        if (!p->failed && t != PROMQL_VALUE_VECTOR)
            parser_failf(p, n->pos.start,
                         "subquery is only allowed on instant vector, got %s instead",
                         value_type_name(t));
        break;
    }
    case PROMQL_NODE_MATRIX_SELECTOR: check_node(p, n->matrix.vector, false); break;
    case PROMQL_NODE_VECTOR_SELECTOR: check_selector(p, n, bypass_empty_check); break;
    case PROMQL_NODE_NUMBER:
    case PROMQL_NODE_STRING: break;
    }
    return type;
}

/* ---- entry point -------------------------------------------------------------------------- */

promql_node_t *promql_parse(const char *query, cairn_error_t *err)
{
    if (err != NULL)
        err->message[0] = '\0';
    parser_t p;
    memset(&p, 0, sizeof(p));
    p.query = query;
    p.len = strlen(query);
    p.err = err;
    if (p.len > UINT32_MAX - 1) {
        if (err != NULL)
            cairn_error_set(err, -EINVAL, "query too long");
        return NULL;
    }
    p.tokens = promql_lex(query, p.len, &p.token_count);
    promql_node_t *root = NULL;
    const promql_token_t *t = peek(&p);
    if (!p.failed && t->type == PROMQL_TOK_EOF) {
        parser_fail_at(&p, 0, "no expression found in input");
    } else if (!p.failed) {
        int depth;
        root = parse_expr(&p, 0, &depth);
        if (root != NULL) {
            t = peek(&p);
            if (!p.failed && t->type != PROMQL_TOK_EOF)
                parser_unexpected(&p, t, NULL, NULL);
        }
        if (root != NULL && !p.failed)
            check_node(&p, root, false);
    }
    promql_tokens_free(p.tokens, p.token_count);
    if (p.failed) {
        promql_node_free(root);
        return NULL;
    }
    return root;
}

/* ---- printing ----------------------------------------------------------------------------- */

static void format_label_name(buf_t *out, const char *name)
{
    if (is_legacy_label_name(name))
        buf_append_str(out, name);
    else
        promql_quote_go(out, name, strlen(name));
}

static void format_label_list(buf_t *out, char *const *labels, size_t count)
{
    buf_append_char(out, '(');
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            buf_append_str(out, ", ");
        /* In a grouping list, inf and nan (any case) lex as numbers: quote them. */
        if (strcasecmp(labels[i], "inf") == 0 || strcasecmp(labels[i], "nan") == 0)
            promql_quote_go(out, labels[i], strlen(labels[i]));
        else
            format_label_name(out, labels[i]);
    }
    buf_append_char(out, ')');
}

static void format_duration(buf_t *out, int64_t ms)
{
    char d[48];
    buf_append_str(out, duration_format(ms, d, sizeof(d)));
}

static void format_at_offset(buf_t *out, promql_at_t at, int64_t at_ms, int64_t offset_ms)
{
    switch (at) {
    case PROMQL_AT_TIME: buf_printf(out, " @ %.3f", (double)at_ms / 1000.0); break;
    case PROMQL_AT_START: buf_append_str(out, " @ start()"); break;
    case PROMQL_AT_END: buf_append_str(out, " @ end()"); break;
    case PROMQL_AT_NONE: break;
    }
    if (offset_ms > 0) {
        buf_append_str(out, " offset ");
        format_duration(out, offset_ms);
    } else if (offset_ms < 0) {
        buf_append_str(out, " offset -");
        format_duration(out, offset_ms == INT64_MIN ? INT64_MAX : -offset_ms);
    }
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The selector without its @ and offset. */
static void format_selector_base(const promql_node_t *n, buf_t *out)
{
    const char *name = n->selector.name;
    size_t count = 0;
    char **strings = cairn_calloc(n->selector.matcher_count + 1, sizeof(char *));
    for (size_t i = 0; i < n->selector.matcher_count; i++) {
        const promql_matcher_t *m = &n->selector.matchers[i];
        if (name != NULL && m->type == TSDB_MATCH_EQUAL && strcmp(m->name, "__name__") == 0 &&
            strcmp(m->value, name) == 0 && m->value[0] != '\0')
            continue;
        buf_t b = BUF_INIT;
        format_label_name(&b, m->name);
        static const char *const ops[] = {"=", "!=", "=~", "!~"};
        buf_append_str(&b, ops[m->type]);
        promql_quote_go(&b, m->value, strlen(m->value));
        strings[count++] = buf_detach(&b);
    }
    if (name != NULL)
        buf_append_str(out, name);
    if (count > 0) {
        qsort(strings, count, sizeof(char *), compare_strings);
        buf_append_char(out, '{');
        for (size_t i = 0; i < count; i++) {
            if (i > 0)
                buf_append_char(out, ',');
            buf_append_str(out, strings[i]);
        }
        buf_append_char(out, '}');
    }
    strings_free(strings, count);
}

void promql_node_format(const promql_node_t *n, buf_t *out)
{
    if (n == NULL)
        return;
    switch (n->kind) {
    case PROMQL_NODE_NUMBER: {
        char b[64];
        float_format_go(n->number, 'g', b, sizeof(b));
        buf_append_str(out, b);
        break;
    }
    case PROMQL_NODE_STRING: promql_quote_go(out, n->string, strlen(n->string)); break;
    case PROMQL_NODE_VECTOR_SELECTOR:
        format_selector_base(n, out);
        format_at_offset(out, n->selector.at, n->selector.at_ms, n->selector.offset_ms);
        break;
    case PROMQL_NODE_MATRIX_SELECTOR: {
        const promql_node_t *vs = n->matrix.vector;
        format_selector_base(vs, out);
        buf_append_char(out, '[');
        format_duration(out, n->matrix.range_ms);
        buf_append_char(out, ']');
        format_at_offset(out, vs->selector.at, vs->selector.at_ms, vs->selector.offset_ms);
        break;
    }
    case PROMQL_NODE_SUBQUERY:
        promql_node_format(n->subquery.expr, out);
        buf_append_char(out, '[');
        format_duration(out, n->subquery.range_ms);
        buf_append_char(out, ':');
        if (n->subquery.step_ms != 0)
            format_duration(out, n->subquery.step_ms);
        buf_append_char(out, ']');
        format_at_offset(out, n->subquery.at, n->subquery.at_ms, n->subquery.offset_ms);
        break;
    case PROMQL_NODE_PAREN:
        buf_append_char(out, '(');
        promql_node_format(n->paren.expr, out);
        buf_append_char(out, ')');
        break;
    case PROMQL_NODE_UNARY:
        buf_append_str(out, promql_binary_op_name(n->unary.op));
        promql_node_format(n->unary.expr, out);
        break;
    case PROMQL_NODE_BINARY: {
        const promql_matching_t *m = n->binary.matching;
        /* ^ binds tighter than a sign: a literal printed with one ("+Inf" for Inf) needs
         * parentheses on its left, or the text would parse as a unary expression. */
        const promql_node_t *lhs = n->binary.lhs;
        bool wrap = n->binary.op == PROMQL_OP_POW && lhs->kind == PROMQL_NODE_NUMBER &&
                    (signbit(lhs->number) || isinf(lhs->number));
        if (wrap)
            buf_append_char(out, '(');
        promql_node_format(lhs, out);
        if (wrap)
            buf_append_char(out, ')');
        buf_append_char(out, ' ');
        buf_append_str(out, promql_binary_op_name(n->binary.op));
        if (n->binary.return_bool)
            buf_append_str(out, " bool");
        if (m != NULL && (m->label_count > 0 || m->on)) {
            buf_append_str(out, m->on ? " on " : " ignoring ");
            format_label_list(out, m->labels, m->label_count);
            if (m->card == PROMQL_CARD_MANY_TO_ONE || m->card == PROMQL_CARD_ONE_TO_MANY) {
                buf_append_str(out, m->card == PROMQL_CARD_MANY_TO_ONE ? " group_left "
                                                                       : " group_right ");
                format_label_list(out, m->include, m->include_count);
            }
        }
        buf_append_char(out, ' ');
        promql_node_format(n->binary.rhs, out);
        break;
    }
    case PROMQL_NODE_AGGREGATE:
        buf_append_str(out, promql_aggregate_op_name(n->aggregate.op));
        if (n->aggregate.without) {
            buf_append_str(out, " without ");
            format_label_list(out, n->aggregate.grouping, n->aggregate.grouping_count);
            buf_append_char(out, ' ');
        } else if (n->aggregate.grouping_count > 0) {
            buf_append_str(out, " by ");
            format_label_list(out, n->aggregate.grouping, n->aggregate.grouping_count);
            buf_append_char(out, ' ');
        }
        buf_append_char(out, '(');
        if (n->aggregate.param != NULL) {
            promql_node_format(n->aggregate.param, out);
            buf_append_str(out, ", ");
        }
        promql_node_format(n->aggregate.expr, out);
        buf_append_char(out, ')');
        break;
    case PROMQL_NODE_CALL:
        buf_append_str(out, n->call.func != NULL ? n->call.func->name : "?");
        buf_append_char(out, '(');
        for (size_t i = 0; i < n->call.arg_count; i++) {
            if (i > 0)
                buf_append_str(out, ", ");
            promql_node_format(n->call.args[i], out);
        }
        buf_append_char(out, ')');
        break;
    }
}
