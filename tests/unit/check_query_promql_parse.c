/*
 * tests/unit/check_query_promql_parse.c: unit tests for PromQL's lexer and parser
 * (query/promql_lex.c, query/promql_parse.c) through query/promql_ast.h.
 *
 * - Valid expressions are checked structurally (node kinds, operators, values, modifiers)
 *   and through the printer: each is parsed, printed in Prometheus's String() form, compared
 *   with the expected text, and the printed text must parse and print to itself again.
 * - Precedence and associativity cases check tree shapes.
 * - Invalid expressions are checked against Prometheus 3.x's exact error texts and
 *   positions ("<line>:<char>: parse error: <message>").
 * - The conformance corpus: every `eval` query of the *.test files in
 *   conformance/promql/ of the shared directory ($CAIRN_SHARED_DIR, else
 *   $CAIRN_SRCDIR/../shared) that is not expected to fail must parse, print, and re-parse to
 *   the same printed form.
 * - Robustness: deep nesting is refused with a clear error; random strings over PromQL's
 *   alphabet never crash, and those that parse print to a fixed point.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "query/promql_ast.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static promql_node_t *parse_ok(const char *q)
{
    cairn_error_t err;
    promql_node_t *n = promql_parse(q, &err);
    ck_assert_msg(n != NULL, "parsing %s failed: %s", q, err.message);
    return n;
}

static char *format_node(const promql_node_t *n)
{
    buf_t b = BUF_INIT;
    promql_node_format(n, &b);
    buf_append(&b, "", 0);
    return buf_detach(&b);
}

/* Parses q, checks its printed form is want, and that the printed form is a fixed point. */
static void check_format(const char *q, const char *want)
{
    promql_node_t *n = parse_ok(q);
    char *got = format_node(n);
    ck_assert_msg(strcmp(got, want) == 0, "%s printed as\n  %s\nwant\n  %s", q, got, want);
    promql_node_t *again = parse_ok(got);
    char *got2 = format_node(again);
    ck_assert_msg(strcmp(got2, got) == 0, "%s: reprint of %s gave %s", q, got, got2);
    cairn_free(got);
    cairn_free(got2);
    promql_node_free(n);
    promql_node_free(again);
}

static void check_error(const char *q, const char *want)
{
    cairn_error_t err;
    memset(&err, 0, sizeof(err));
    promql_node_t *n = promql_parse(q, &err);
    if (n != NULL) {
        char *s = format_node(n);
        promql_node_free(n);
        ck_abort_msg("%s parsed (as %s), want error %s", q, s, want);
    }
    ck_assert_msg(strcmp(err.message, want) == 0, "%s:\n  got  %s\n  want %s", q, err.message,
                  want);
}

/* ---- literals ----------------------------------------------------------------------------- */

static double parse_number(const char *q)
{
    promql_node_t *n = parse_ok(q);
    ck_assert_int_eq(n->kind, PROMQL_NODE_NUMBER);
    double v = n->number;
    promql_node_free(n);
    return v;
}

START_TEST(test_numbers)
{
    ck_assert(parse_number("1") == 1);
    ck_assert(parse_number("123.4567") == 123.4567);
    ck_assert(parse_number(".5") == 0.5);
    ck_assert(parse_number("5.") == 5);
    ck_assert(parse_number("5e-3") == 0.005);
    ck_assert(parse_number("5E3") == 5000);
    ck_assert(parse_number("0xc") == 12);
    ck_assert(parse_number("0X1F") == 31);
    ck_assert(parse_number("0755") == 493); /* a leading zero is octal, as in Go */
    ck_assert(parse_number("-0755") == -493);
    ck_assert(parse_number("09") == 9); /* not octal: read as a decimal float */
    ck_assert(parse_number("1_000") == 1000);
    ck_assert(parse_number("1_0.5") == 10.5); /* Go allows separators in floats too */
    ck_assert(parse_number("1e1_0") == 1e10);
    ck_assert(parse_number("+5.5e-3") == 0.0055);
    ck_assert(parse_number("99999999999999999999") == 1e20);
    ck_assert(isinf(parse_number("Inf")) && parse_number("Inf") > 0);
    ck_assert(isinf(parse_number("-inf")) && parse_number("-inf") < 0);
    ck_assert(isinf(parse_number("+INF")));
    ck_assert(isnan(parse_number("NaN")));
    ck_assert(isnan(parse_number("nAn")));
    /* Durations are numbers of seconds. */
    ck_assert(parse_number("1h") == 3600);
    ck_assert(parse_number("1h30m") == 5400);
    ck_assert(parse_number("500ms") == 0.5);
    ck_assert(parse_number("-2d") == -172800);
}
END_TEST

static char *parse_string(const char *q)
{
    promql_node_t *n = parse_ok(q);
    ck_assert_int_eq(n->kind, PROMQL_NODE_STRING);
    char *s = cairn_strdup(n->string);
    promql_node_free(n);
    return s;
}

START_TEST(test_strings)
{
    static const struct {
        const char *query, *value;
    } cases[] = {
        {"\"double\"", "double"},
        {"'single'", "single"},
        {"`raw \\n string`", "raw \\n string"},
        {"\"double-quoted \\\" quote\"", "double-quoted \" quote"},
        {"'single-quoted \\' quote'", "single-quoted ' quote"},
        {"\"\\a\\b\\f\\n\\r\\t\\v\\\\\"", "\a\b\f\n\r\t\v\\"},
        {"\"\\x41\\101\\u00e9\\U0001F600\"", "AA\xc3\xa9\xf0\x9f\x98\x80"},
        {"\"\\xff\"", "\xff"},
        {"\"☺\"", "☺"},
        {"`multi\nline`", "multi\nline"},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        char *s = parse_string(cases[i].query);
        ck_assert_msg(strcmp(s, cases[i].value) == 0, "%s gave %s", cases[i].query, s);
        cairn_free(s);
    }
}
END_TEST

/* ---- selectors ---------------------------------------------------------------------------- */

static const promql_matcher_t *find_matcher(const promql_node_t *vs, const char *name)
{
    for (size_t i = 0; i < vs->selector.matcher_count; i++)
        if (strcmp(vs->selector.matchers[i].name, name) == 0)
            return &vs->selector.matchers[i];
    return NULL;
}

START_TEST(test_vector_selector_structure)
{
    promql_node_t *n = parse_ok("foo{a=\"b\", c!=\"d\", e=~\"f.*\", g!~'h',}");
    ck_assert_int_eq(n->kind, PROMQL_NODE_VECTOR_SELECTOR);
    ck_assert_str_eq(n->selector.name, "foo");
    ck_assert_uint_eq(n->selector.matcher_count, 5);
    /* The name's own matcher comes last. */
    const promql_matcher_t *last = &n->selector.matchers[4];
    ck_assert_str_eq(last->name, "__name__");
    ck_assert_str_eq(last->value, "foo");
    ck_assert_int_eq(last->type, TSDB_MATCH_EQUAL);
    ck_assert_int_eq(find_matcher(n, "a")->type, TSDB_MATCH_EQUAL);
    ck_assert_int_eq(find_matcher(n, "c")->type, TSDB_MATCH_NOT_EQUAL);
    ck_assert_int_eq(find_matcher(n, "e")->type, TSDB_MATCH_REGEX);
    ck_assert_str_eq(find_matcher(n, "e")->value, "f.*");
    ck_assert_int_eq(find_matcher(n, "g")->type, TSDB_MATCH_NOT_REGEX);
    ck_assert_str_eq(find_matcher(n, "g")->value, "h");
    ck_assert_int_eq(n->selector.offset_ms, 0);
    ck_assert_int_eq(n->selector.at, PROMQL_AT_NONE);
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_VECTOR);
    promql_node_free(n);

    /* A quoted metric name inside the braces, and a quoted label name. */
    n = parse_ok("{\"my.metric\", \"my.label\"=\"x\"}");
    ck_assert_ptr_null(n->selector.name);
    ck_assert_uint_eq(n->selector.matcher_count, 2);
    ck_assert_str_eq(find_matcher(n, "__name__")->value, "my.metric");
    ck_assert_str_eq(find_matcher(n, "my.label")->value, "x");
    promql_node_free(n);

    /* Keywords are metric names where Prometheus allows them, and label names in braces. */
    static const char *const keyword_metrics[] = {"sum",    "avg{on=\"x\"}", "by",    "and",
                                                  "offset", "without",       "start", "end",
                                                  "step",   "bool{by=\"y\"}"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(keyword_metrics); i++) {
        if (strncmp(keyword_metrics[i], "bool", 4) == 0) {
            check_error(keyword_metrics[i], "1:1: parse error: unexpected <bool>");
            continue;
        }
        n = parse_ok(keyword_metrics[i]);
        ck_assert_int_eq(n->kind, PROMQL_NODE_VECTOR_SELECTOR);
        promql_node_free(n);
    }
    n = parse_ok("sum(sum{by=\"x\", on=\"y\", offset=\"z\"})");
    ck_assert_int_eq(n->kind, PROMQL_NODE_AGGREGATE);
    ck_assert_str_eq(n->aggregate.expr->selector.name, "sum");
    ck_assert_ptr_nonnull(find_matcher(n->aggregate.expr, "offset"));
    promql_node_free(n);
}
END_TEST

START_TEST(test_modifiers_structure)
{
    promql_node_t *n = parse_ok("foo offset 5m @ 100");
    ck_assert_int_eq(n->selector.offset_ms, 300000);
    ck_assert_int_eq(n->selector.at, PROMQL_AT_TIME);
    ck_assert_int_eq(n->selector.at_ms, 100000);
    promql_node_free(n);

    n = parse_ok("foo @ -2.5 offset -1h30m");
    ck_assert_int_eq(n->selector.offset_ms, -5400000);
    ck_assert_int_eq(n->selector.at_ms, -2500);
    promql_node_free(n);

    n = parse_ok("foo offset 5");
    ck_assert_int_eq(n->selector.offset_ms, 5000);
    promql_node_free(n);

    n = parse_ok("foo @ start()");
    ck_assert_int_eq(n->selector.at, PROMQL_AT_START);
    promql_node_free(n);

    n = parse_ok("foo[5m] @ end() offset 1m");
    ck_assert_int_eq(n->kind, PROMQL_NODE_MATRIX_SELECTOR);
    ck_assert_int_eq(n->matrix.range_ms, 300000);
    ck_assert_int_eq(n->matrix.vector->selector.at, PROMQL_AT_END);
    ck_assert_int_eq(n->matrix.vector->selector.offset_ms, 60000);
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_MATRIX);
    promql_node_free(n);

    n = parse_ok("foo[600]");
    ck_assert_int_eq(n->matrix.range_ms, 600000);
    promql_node_free(n);

    n = parse_ok("foo[1.5]");
    ck_assert_int_eq(n->matrix.range_ms, 1500);
    promql_node_free(n);

    n = parse_ok("rate(foo[5m])[30m:1m] offset 2m @ 50");
    ck_assert_int_eq(n->kind, PROMQL_NODE_SUBQUERY);
    ck_assert_int_eq(n->subquery.range_ms, 1800000);
    ck_assert_int_eq(n->subquery.step_ms, 60000);
    ck_assert_int_eq(n->subquery.offset_ms, 120000);
    ck_assert_int_eq(n->subquery.at, PROMQL_AT_TIME);
    ck_assert_int_eq(n->subquery.at_ms, 50000);
    ck_assert_int_eq(n->subquery.expr->kind, PROMQL_NODE_CALL);
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_MATRIX);
    promql_node_free(n);

    n = parse_ok("foo[10m:]");
    ck_assert_int_eq(n->subquery.step_ms, 0);
    promql_node_free(n);
}
END_TEST

/* ---- operators ---------------------------------------------------------------------------- */

static void assert_binary(const promql_node_t *n, promql_binary_op_t op)
{
    ck_assert_int_eq(n->kind, PROMQL_NODE_BINARY);
    ck_assert_msg(n->binary.op == op, "operator %s, want %s", promql_binary_op_name(n->binary.op),
                  promql_binary_op_name(op));
}

static void assert_selector(const promql_node_t *n, const char *name)
{
    ck_assert_int_eq(n->kind, PROMQL_NODE_VECTOR_SELECTOR);
    ck_assert_str_eq(n->selector.name, name);
}

START_TEST(test_precedence)
{
    /* * binds tighter than +. */
    promql_node_t *n = parse_ok("a + b * c");
    assert_binary(n, PROMQL_OP_ADD);
    assert_selector(n->binary.lhs, "a");
    assert_binary(n->binary.rhs, PROMQL_OP_MUL);
    promql_node_free(n);

    /* Left associativity. */
    n = parse_ok("a - b - c");
    assert_binary(n, PROMQL_OP_SUB);
    assert_binary(n->binary.lhs, PROMQL_OP_SUB);
    assert_selector(n->binary.rhs, "c");
    promql_node_free(n);

    /* ^ is right-associative. */
    n = parse_ok("a ^ b ^ c");
    assert_binary(n, PROMQL_OP_POW);
    assert_selector(n->binary.lhs, "a");
    assert_binary(n->binary.rhs, PROMQL_OP_POW);
    promql_node_free(n);

    /* or < and/unless < comparisons < + < * < ^. */
    n = parse_ok("a or b and c unless d == e + f * g ^ h");
    assert_binary(n, PROMQL_OP_OR);
    assert_selector(n->binary.lhs, "a");
    const promql_node_t *r = n->binary.rhs;
    assert_binary(r, PROMQL_OP_UNLESS);
    assert_binary(r->binary.lhs, PROMQL_OP_AND);
    r = r->binary.rhs;
    assert_binary(r, PROMQL_OP_EQL);
    r = r->binary.rhs;
    assert_binary(r, PROMQL_OP_ADD);
    r = r->binary.rhs;
    assert_binary(r, PROMQL_OP_MUL);
    assert_binary(r->binary.rhs, PROMQL_OP_POW);
    promql_node_free(n);

    /* atan2 has the precedence of *. */
    n = parse_ok("a + b atan2 c");
    assert_binary(n, PROMQL_OP_ADD);
    assert_binary(n->binary.rhs, PROMQL_OP_ATAN2);
    promql_node_free(n);

    /* Unary minus binds looser than ^ and as tight as *. */
    n = parse_ok("-a ^ b");
    ck_assert_int_eq(n->kind, PROMQL_NODE_UNARY);
    ck_assert_int_eq(n->unary.op, PROMQL_OP_SUB);
    assert_binary(n->unary.expr, PROMQL_OP_POW);
    promql_node_free(n);

    n = parse_ok("-a * b");
    assert_binary(n, PROMQL_OP_MUL);
    ck_assert_int_eq(n->binary.lhs->kind, PROMQL_NODE_UNARY);
    promql_node_free(n);

    /* A sign on a number literal folds into it, unless ^ binds first. */
    n = parse_ok("-1 ^ 2");
    ck_assert_int_eq(n->kind, PROMQL_NODE_UNARY);
    promql_node_free(n);
    n = parse_ok("-1 * 2");
    assert_binary(n, PROMQL_OP_MUL);
    ck_assert_int_eq(n->binary.lhs->kind, PROMQL_NODE_NUMBER);
    ck_assert(n->binary.lhs->number == -1);
    promql_node_free(n);
    n = parse_ok("2 ^ -1");
    assert_binary(n, PROMQL_OP_POW);
    ck_assert(n->binary.rhs->number == -1);
    promql_node_free(n);

    /* Parentheses. */
    n = parse_ok("(a + b) * c");
    assert_binary(n, PROMQL_OP_MUL);
    ck_assert_int_eq(n->binary.lhs->kind, PROMQL_NODE_PAREN);
    assert_binary(n->binary.lhs->paren.expr, PROMQL_OP_ADD);
    promql_node_free(n);

    /* Modifiers bind tighter than any operator. */
    n = parse_ok("a + b offset 1m");
    assert_binary(n, PROMQL_OP_ADD);
    ck_assert_int_eq(n->binary.rhs->selector.offset_ms, 60000);
    ck_assert_int_eq(n->binary.lhs->selector.offset_ms, 0);
    promql_node_free(n);
    n = parse_ok("-a offset 1m");
    ck_assert_int_eq(n->kind, PROMQL_NODE_UNARY);
    ck_assert_int_eq(n->unary.expr->selector.offset_ms, 60000);
    promql_node_free(n);
}
END_TEST

START_TEST(test_binary_matching)
{
    promql_node_t *n = parse_ok("a * on(x, y) group_left(z) b");
    assert_binary(n, PROMQL_OP_MUL);
    const promql_matching_t *m = n->binary.matching;
    ck_assert_ptr_nonnull(m);
    ck_assert(m->on);
    ck_assert_int_eq(m->card, PROMQL_CARD_MANY_TO_ONE);
    ck_assert_uint_eq(m->label_count, 2);
    ck_assert_str_eq(m->labels[0], "x");
    ck_assert_str_eq(m->labels[1], "y");
    ck_assert_uint_eq(m->include_count, 1);
    ck_assert_str_eq(m->include[0], "z");
    promql_node_free(n);

    n = parse_ok("a / ignoring(x) group_right b");
    m = n->binary.matching;
    ck_assert(!m->on);
    ck_assert_int_eq(m->card, PROMQL_CARD_ONE_TO_MANY);
    ck_assert_uint_eq(m->include_count, 0);
    promql_node_free(n);

    n = parse_ok("a > bool b");
    ck_assert(n->binary.return_bool);
    ck_assert_int_eq(n->binary.matching->card, PROMQL_CARD_ONE_TO_ONE);
    promql_node_free(n);

    /* Set operators match many-to-many. */
    n = parse_ok("a and on(x) b");
    ck_assert_int_eq(n->binary.matching->card, PROMQL_CARD_MANY_TO_MANY);
    promql_node_free(n);
    n = parse_ok("a unless b");
    ck_assert_int_eq(n->binary.matching->card, PROMQL_CARD_MANY_TO_MANY);
    promql_node_free(n);

    /* No matching when a side is a scalar; the type follows. */
    n = parse_ok("a * 2");
    ck_assert_ptr_null(n->binary.matching);
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_VECTOR);
    promql_node_free(n);
    n = parse_ok("1 + on() 2");
    ck_assert_ptr_null(n->binary.matching);
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_SCALAR);
    promql_node_free(n);
    n = parse_ok("1 < bool 2");
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_SCALAR);
    promql_node_free(n);

    /* Keywords as label names in matching clauses. */
    n = parse_ok("a + on(by, sum, start, bool, offset) b");
    ck_assert_uint_eq(n->binary.matching->label_count, 5);
    ck_assert_str_eq(n->binary.matching->labels[3], "bool");
    promql_node_free(n);

    ck_assert_str_eq(promql_binary_op_name(PROMQL_OP_ATAN2), "atan2");
    ck_assert_str_eq(promql_binary_op_name(PROMQL_OP_UNLESS), "unless");
    ck_assert(promql_binary_op_is_comparison(PROMQL_OP_LTE));
    ck_assert(!promql_binary_op_is_comparison(PROMQL_OP_ADD));
    ck_assert(promql_binary_op_is_set(PROMQL_OP_OR));
    ck_assert(!promql_binary_op_is_set(PROMQL_OP_EQL));
}
END_TEST

/* ---- aggregations and calls --------------------------------------------------------------- */

START_TEST(test_aggregations)
{
    promql_node_t *n = parse_ok("sum by (a, b) (foo)");
    ck_assert_int_eq(n->kind, PROMQL_NODE_AGGREGATE);
    ck_assert_int_eq(n->aggregate.op, PROMQL_AGG_SUM);
    ck_assert(n->aggregate.has_grouping);
    ck_assert(!n->aggregate.without);
    ck_assert_uint_eq(n->aggregate.grouping_count, 2);
    ck_assert_str_eq(n->aggregate.grouping[1], "b");
    ck_assert_ptr_null(n->aggregate.param);
    promql_node_free(n);

    n = parse_ok("count_values without (x) (\"value\", foo)");
    ck_assert_int_eq(n->aggregate.op, PROMQL_AGG_COUNT_VALUES);
    ck_assert(n->aggregate.without);
    ck_assert_int_eq(n->aggregate.param->kind, PROMQL_NODE_STRING);
    promql_node_free(n);

    n = parse_ok("topk(3, foo) by (job)");
    ck_assert_int_eq(n->aggregate.op, PROMQL_AGG_TOPK);
    ck_assert(n->aggregate.param->number == 3);
    ck_assert_uint_eq(n->aggregate.grouping_count, 1);
    promql_node_free(n);

    n = parse_ok("sum by () (foo)");
    ck_assert(n->aggregate.has_grouping);
    ck_assert_uint_eq(n->aggregate.grouping_count, 0);
    promql_node_free(n);

    n = parse_ok("avg(foo)");
    ck_assert(!n->aggregate.has_grouping);
    promql_node_free(n);

    static const struct {
        const char *query, *name;
        promql_aggregate_op_t op;
    } ops[] = {
        {"sum(x)", "sum", PROMQL_AGG_SUM},
        {"AVG(x)", "avg", PROMQL_AGG_AVG},
        {"count(x)", "count", PROMQL_AGG_COUNT},
        {"min(x)", "min", PROMQL_AGG_MIN},
        {"max(x)", "max", PROMQL_AGG_MAX},
        {"group(x)", "group", PROMQL_AGG_GROUP},
        {"stddev(x)", "stddev", PROMQL_AGG_STDDEV},
        {"stdvar(x)", "stdvar", PROMQL_AGG_STDVAR},
        {"topk(1, x)", "topk", PROMQL_AGG_TOPK},
        {"bottomk(1, x)", "bottomk", PROMQL_AGG_BOTTOMK},
        {"quantile(0.5, x)", "quantile", PROMQL_AGG_QUANTILE},
        {"count_values(\"l\", x)", "count_values", PROMQL_AGG_COUNT_VALUES},
        {"limitk(1, x)", "limitk", PROMQL_AGG_LIMITK},
        {"limit_ratio(0.5, x)", "limit_ratio", PROMQL_AGG_LIMIT_RATIO},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(ops); i++) {
        n = parse_ok(ops[i].query);
        ck_assert_int_eq(n->aggregate.op, ops[i].op);
        ck_assert_str_eq(promql_aggregate_op_name(ops[i].op), ops[i].name);
        ck_assert_int_eq(n->aggregate.param != NULL, strchr(ops[i].query, ',') != NULL);
        promql_node_free(n);
    }
}
END_TEST

START_TEST(test_function_calls)
{
    promql_node_t *n = parse_ok("label_join(foo, \"dst\", \",\", \"a\", \"b\", \"c\")");
    ck_assert_int_eq(n->kind, PROMQL_NODE_CALL);
    ck_assert_int_eq(n->call.func->id, PROMQL_FN_LABEL_JOIN);
    ck_assert_uint_eq(n->call.arg_count, 6);
    promql_node_free(n);

    n = parse_ok("round(foo)");
    ck_assert_uint_eq(n->call.arg_count, 1);
    promql_node_free(n);
    n = parse_ok("round(foo, 0.1)");
    ck_assert_uint_eq(n->call.arg_count, 2);
    promql_node_free(n);

    /* start(), end(), step(), range() are functions; after @, start() and end() modifiers. */
    static const struct {
        const char *query;
        promql_function_id_t id;
    } scalars[] = {{"start()", PROMQL_FN_START}, {"end()", PROMQL_FN_END},
                   {"step()", PROMQL_FN_STEP},   {"range()", PROMQL_FN_RANGE},
                   {"time()", PROMQL_FN_TIME},   {"pi()", PROMQL_FN_PI}};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(scalars); i++) {
        n = parse_ok(scalars[i].query);
        ck_assert_int_eq(n->kind, PROMQL_NODE_CALL);
        ck_assert_int_eq(n->call.func->id, scalars[i].id);
        ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_SCALAR);
        promql_node_free(n);
    }
    n = parse_ok("min_of(3, max_of(1, 2))");
    ck_assert_int_eq(n->call.func->id, PROMQL_FN_MIN_OF);
    ck_assert_int_eq(promql_node_type(n), PROMQL_VALUE_SCALAR);
    promql_node_free(n);

    n = parse_ok("histogram_quantiles(foo, \"q\", 0.1, 0.5, 0.9)");
    ck_assert_uint_eq(n->call.arg_count, 5);
    promql_node_free(n);
    n = parse_ok("sort_by_label(foo, \"a\", \"b\")");
    ck_assert_uint_eq(n->call.arg_count, 3);
    promql_node_free(n);
}
END_TEST

START_TEST(test_function_table)
{
    /* Every function id has exactly one entry, found by its name. */
    static const char *const names[] = {"abs",
                                        "absent",
                                        "absent_over_time",
                                        "acos",
                                        "acosh",
                                        "asin",
                                        "asinh",
                                        "atan",
                                        "atanh",
                                        "avg_over_time",
                                        "ceil",
                                        "changes",
                                        "clamp",
                                        "clamp_max",
                                        "clamp_min",
                                        "cos",
                                        "cosh",
                                        "count_over_time",
                                        "days_in_month",
                                        "day_of_month",
                                        "day_of_week",
                                        "day_of_year",
                                        "deg",
                                        "delta",
                                        "deriv",
                                        "double_exponential_smoothing",
                                        "end",
                                        "exp",
                                        "first_over_time",
                                        "floor",
                                        "histogram_avg",
                                        "histogram_count",
                                        "histogram_fraction",
                                        "histogram_quantile",
                                        "histogram_quantiles",
                                        "histogram_stddev",
                                        "histogram_stdvar",
                                        "histogram_sum",
                                        "hour",
                                        "idelta",
                                        "increase",
                                        "info",
                                        "irate",
                                        "label_join",
                                        "label_replace",
                                        "last_over_time",
                                        "ln",
                                        "log10",
                                        "log2",
                                        "mad_over_time",
                                        "max_of",
                                        "max_over_time",
                                        "min_of",
                                        "min_over_time",
                                        "minute",
                                        "month",
                                        "pi",
                                        "predict_linear",
                                        "present_over_time",
                                        "quantile_over_time",
                                        "rad",
                                        "range",
                                        "rate",
                                        "resets",
                                        "round",
                                        "scalar",
                                        "sgn",
                                        "sin",
                                        "sinh",
                                        "sort",
                                        "sort_by_label",
                                        "sort_by_label_desc",
                                        "sort_desc",
                                        "sqrt",
                                        "start",
                                        "stddev_over_time",
                                        "step",
                                        "stdvar_over_time",
                                        "sum_over_time",
                                        "tan",
                                        "tanh",
                                        "time",
                                        "timestamp",
                                        "ts_of_first_over_time",
                                        "ts_of_last_over_time",
                                        "ts_of_max_over_time",
                                        "ts_of_min_over_time",
                                        "vector",
                                        "year"};
    ck_assert_uint_eq(CAIRN_ARRAY_LEN(names), PROMQL_FN_COUNT_);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(names); i++) {
        const promql_function_t *f = promql_function_lookup(names[i]);
        ck_assert_msg(f != NULL, "%s missing", names[i]);
        ck_assert_str_eq(f->name, names[i]);
        ck_assert_int_eq(f->id, (int)i);
        ck_assert(f->arg_count <= 6);
    }
    ck_assert_ptr_null(promql_function_lookup("holt_winters"));
    ck_assert_ptr_null(promql_function_lookup("Rate"));

    const promql_function_t *f = promql_function_lookup("rate");
    ck_assert_uint_eq(f->arg_count, 1);
    ck_assert_int_eq(f->arg_types[0], PROMQL_VALUE_MATRIX);
    ck_assert_int_eq(f->return_type, PROMQL_VALUE_VECTOR);
    f = promql_function_lookup("label_replace");
    ck_assert_uint_eq(f->arg_count, 5);
    ck_assert_int_eq(f->arg_types[4], PROMQL_VALUE_STRING);
    f = promql_function_lookup("round");
    ck_assert_int_eq(f->variadic, 1);
    f = promql_function_lookup("label_join");
    ck_assert_int_eq(f->variadic, -1);
    f = promql_function_lookup("histogram_quantile");
    ck_assert_int_eq(f->arg_types[0], PROMQL_VALUE_SCALAR);
    ck_assert(!f->experimental);
    ck_assert(promql_function_lookup("mad_over_time")->experimental);
}
END_TEST

/* ---- printing ----------------------------------------------------------------------------- */

START_TEST(test_format_round_trip)
{
    static const struct {
        const char *query, *printed;
    } cases[] = {
        {"1", "1"},
        {"1e6", "1e+06"},
        {"123456", "123456"},
        {"0.0001", "0.0001"},
        {"0.00001", "1e-05"},
        {"-Inf", "-Inf"},
        {"+Inf", "+Inf"},
        {"NaN", "NaN"},
        {"inf^.3", "(+Inf) ^ 0.3"},   /* "+Inf ^ 0.3" would parse as +(Inf ^ 0.3) */
        {"-inf^.3", "-(+Inf) ^ 0.3"}, /* found by the fuzzer */
        {"sum by (\"inf\", \"NaN\") (x)", "sum by (\"inf\", \"NaN\") (x)"}, /* and this */
        {"a + on (\"Inf\") b", "a + on (\"Inf\") b"},
        {"\"a\\nb\\\"c\"", "\"a\\nb\\\"c\""},
        {"`a\\b`", "\"a\\\\b\""},
        {"foo", "foo"},
        {"foo{b=\"2\",a=~\"1\"}", "foo{a=~\"1\",b=\"2\"}"},
        {"{__name__=\"foo\"}", "{__name__=\"foo\"}"},
        {"{\"foo.bar\", \"a b\"!=\"c\"}", "{\"a b\"!=\"c\",__name__=\"foo.bar\"}"},
        {"foo offset 5m", "foo offset 5m"},
        {"foo offset -90m", "foo offset -1h30m"},
        {"foo @ 10 offset 1w", "foo @ 10.000 offset 1w"},
        {"foo offset 1w @ start()", "foo @ start() offset 1w"},
        {"foo[5m] offset 1d", "foo[5m] offset 1d"},
        {"foo[365d]", "foo[1y]"},
        {"foo[1y2d]", "foo[367d]"},
        {"rate(foo[5m])", "rate(foo[5m])"},
        {"rate(foo[5m])[1h:]", "rate(foo[5m])[1h:]"},
        {"rate(foo[5m])[1h:30s] @ end()", "rate(foo[5m])[1h:30s] @ end()"},
        {"sum(foo) by (a,b)", "sum by (a, b) (foo)"},
        {"sum without () (foo)", "sum without () (foo)"},
        {"sum by () (foo)", "sum(foo)"},
        {"topk(5,foo)", "topk(5, foo)"},
        {"count_values(\"v\",foo)", "count_values(\"v\", foo)"},
        {"sum by (\"a.b\") (foo)", "sum by (\"a.b\") (foo)"},
        {"a+b", "a + b"},
        {"a + on(x) group_left(y) b", "a + on (x) group_left (y) b"},
        {"a + ignoring(x) group_right b", "a + ignoring (x) group_right () b"},
        {"a + on() b", "a + on () b"},
        {"a + ignoring() b", "a + b"},
        {"a > bool 1", "a > bool 1"},
        {"a and on(x) b", "a and on (x) b"},
        {"-foo", "-foo"},
        {"+foo", "+foo"},
        {"-(1)", "-(1)"},
        {"- 1", "-1"},
        {"-1 ^ 2", "-1 ^ 2"},
        {"(a + b) * c", "(a + b) * c"},
        {"a ^ b ^ c", "a ^ b ^ c"},
        {"label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
         "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")"},
        {"vector(time())", "vector(time())"},
        {"foo # comment\n + bar", "foo + bar"},
        {"predict_linear(foo[1h], 1h)", "predict_linear(foo[1h], 3600)"},
        /* Duration expressions fold to constants. */
        {"foo[11s+10s-5*2^2]", "foo[1s]"},
        {"foo[-(10s-5s)+20s]", "foo[15s]"},
        {"rate(foo[2m+2m])", "rate(foo[4m])"},
        {"foo[4s+4s:1s*2] offset (5s-8)", "foo[8s:2s] offset -3s"},
        {"foo[max(5s, 1m)] offset -min(1m, 1h)", "foo[1m] offset -1m"},
        {"foo offset 5s-8", "foo offset 5s - 8"},
        {"foo offset -1^1", "foo offset -1s ^ 1"},
        {"foo offset -(1^2)", "foo offset -1s"},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++)
        check_format(cases[i].query, cases[i].printed);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------- */

static const struct {
    const char *query, *error;
} error_cases[] = {
    /* Lexical errors. */
    {"", "unknown position: parse error: no expression found in input"},
    {"# just a comment\n\n", "1:1: parse error: no expression found in input"},
    {".", "1:1: parse error: unexpected character: '.'"},
    {"2.5.", "1:1: parse error: bad number or duration syntax: \"2.5.\""},
    {"100..4", "1:1: parse error: bad number or duration syntax: \"100..\""},
    {"0deadbeef", "1:1: parse error: bad number or duration syntax: \"0de\""},
    {"(1))", "1:5: parse error: unexpected right parenthesis ')'"},
    {"((1)", "1:5: parse error: unclosed left parenthesis"},
    {"sum(rate(", "1:10: parse error: unclosed left parenthesis"},
    {"1 !~ 1", "1:3: parse error: unexpected character after '!': '~'"},
    {"1 =~ 1", "1:3: parse error: unexpected character after '=': '~'"},
    {"foo{a~\"b\"}", "1:6: parse error: unexpected character inside braces: '~'"},
    {"foo{a:b=\"b\"}", "1:6: parse error: unexpected character inside braces: ':'"},
    {"foo{1}", "1:5: parse error: unexpected character inside braces: '1'"},
    {"foo{a!b}", "1:6: parse error: unexpected character after '!' inside braces: 'b'"},
    {"{", "1:2: parse error: unexpected end of input inside braces"},
    {"}", "1:1: parse error: unexpected character: '}'"},
    {"foo{bar=\"baz\"}[", "1:16: parse error: unexpected end of input in duration expression"},
    {"foo[5m", "1:7: parse error: unclosed left bracket"},
    {"foo]", "1:4: parse error: unexpected right bracket ']'"},
    {"foo[5m[", "1:7: parse error: unexpected left bracket '['"},
    {"foo[5mm]", "1:5: parse error: bad number or duration syntax: \"5mm\""},
    {"foo[\"5m\"]", "1:5: parse error: unexpected character in duration expression: '\"'"},
    {"foo[5s x 5s]", "1:8: parse error: unexpected character: 'x', expected ':'"},
    {"\"\\c\"", "1:1: parse error: unknown escape sequence U+0063 'c'"},
    {"\"\\x.\"", "1:1: parse error: illegal character U+002E '.' in escape sequence"},
    {"\"\\", "1:1: parse error: escape sequence not terminated"},
    {"\"\\400\"", "1:1: parse error: escape sequence is an invalid Unicode code point"},
    {"\"abc", "1:1: parse error: unterminated quoted string"},
    {"`abc", "1:1: parse error: unterminated raw string"},
    {"foo{a=\"\xff\"}", "1:7: parse error: invalid UTF-8 rune"},
    {"foo$", "1:4: parse error: unexpected character: '$'"},
    /* Syntax errors. */
    {"1+", "1:3: parse error: unexpected end of input"},
    {"*1", "1:1: parse error: unexpected <op:*>"},
    {"@@", "1:1: parse error: unexpected <op:@>"},
    {"-=", "1:2: parse error: unexpected \"=\""},
    {"foo bar", "1:5: parse error: unexpected identifier \"bar\""},
    {"foo 1", "1:5: parse error: unexpected number \"1\""},
    {"foo \"a long string\"", "1:5: parse error: unexpected string \"\\\"a long st\"..."},
    {"foo )", "1:6: parse error: unexpected right parenthesis ')'"},
    {"a - on(b) ignoring(c) d", "1:11: parse error: unexpected <ignoring>"},
    {"a * group_left(x) b", "1:5: parse error: unexpected <group_left>"},
    {"foo + on bar", "1:10: parse error: unexpected identifier \"bar\" in grouping opts, "
                     "expected \"(\""},
    {"some_metric{a=b}",
     "1:15: parse error: unexpected identifier \"b\" in label matching, expected string"},
    {"foo{gibberish}", "1:14: parse error: unexpected \"}\" in label matching, expected label "
                       "matching operator"},
    {"foo{,}", "1:5: parse error: unexpected \",\" in label matching, expected identifier or "
               "\"}\""},
    {"foo{a=\"b\" c=\"d\"}", "1:11: parse error: unexpected identifier \"c\" in label "
                             "matching, expected \",\" or \"}\""},
    {"sum without(==)(foo)",
     "1:13: parse error: unexpected <op:==> in grouping opts, expected label"},
    {"sum without(foo,,)(foo)",
     "1:17: parse error: unexpected \",\" in grouping opts, expected label"},
    {"sum by (a b) (foo)",
     "1:11: parse error: unexpected identifier \"b\" in grouping opts, expected \",\" or \")\""},
    {"sum by (a:b) (foo)",
     "1:9: parse error: unexpected metric identifier \"a:b\" in grouping opts, expected label"},
    {"sum (some_metric) by test",
     "1:22: parse error: unexpected identifier \"test\" in grouping opts, expected \"(\""},
    {"sum some_metric by (test)", "1:5: parse error: unexpected identifier \"some_metric\""},
    {"sum (some_metric) without (test) by (test)", "1:34: parse error: unexpected <by>"},
    {"sum by (a) foo", "1:12: parse error: unexpected identifier \"foo\" in aggregation"},
    {"sum(foo bar)", "1:9: parse error: unexpected identifier \"bar\" in aggregation"},
    {"sum(rate(foo[5m] bar))", "1:18: parse error: unexpected identifier \"bar\" in aggregation"},
    {"rate(foo bar)", "1:10: parse error: unexpected identifier \"bar\""},
    {"foo[]", "1:5: parse error: unexpected \"]\" in subquery or range selector, expected "
              "number, duration, step(), or range()"},
    {"foo[5m 1m]", "1:8: parse error: unexpected duration \"1m\" in subquery or range, "
                   "expected \":\" or \"]\""},
    {"foo[5m 1]", "1:8: parse error: unexpected number \"1\" in subquery or range, expected "
                  "\":\" or \"]\""},
    {"foo[5m:1m:]", "1:10: parse error: unexpected colon ':'"},
    {"foo[5m:1m 1m]",
     "1:11: parse error: unexpected duration \"1m\" in subquery selector, expected \"]\""},
    {"some_metric[5m] OFFSET", "1:23: parse error: unexpected end of input in offset, expected "
                               "number, duration, step(), or range()"},
    {"foo offset bar", "1:12: parse error: unexpected identifier \"bar\" in offset, expected "
                       "number, duration, step(), or range()"},
    {"some_metric[5m] @", "1:18: parse error: unexpected end of input in @, expected timestamp"},
    {"foo @ start", "1:12: parse error: unexpected end of input in @, expected timestamp"},
    {"foo @ bar", "1:7: parse error: unexpected identifier \"bar\" in @, expected timestamp"},
    {"rate(foo,)", "1:9: parse error: trailing commas not allowed in function call args"},
    {"topk(some_metric,)", "1:17: parse error: trailing commas not allowed in function call args"},
    /* Errors of grammar actions. */
    {"foo offset 1s offset 2s", "1:1: parse error: offset may not be set multiple times"},
    {"foo @ 1 @ 2", "1:1: parse error: @ <timestamp> may not be set multiple times"},
    {"foo @ start() @ end()", "1:1: parse error: @ <timestamp> may not be set multiple times"},
    {"1 offset 1d", "1:1: parse error: offset modifier must be preceded by an instant vector "
                    "selector or range vector selector or a subquery"},
    {"sum(foo) @ 1", "1:1: parse error: @ modifier must be preceded by an instant vector "
                     "selector or range vector selector or a subquery"},
    {"foo @ +Inf", "1:1: parse error: timestamp out of bounds for @ modifier: +Inf"},
    {"foo @ NaN", "1:1: parse error: timestamp out of bounds for @ modifier: NaN"},
    {"foo @ 9223372036854775808.000000", "1:1: parse error: timestamp out of bounds for @ "
                                         "modifier: 9223372036854775808.000000"},
    {"some_metric OFFSET 1m[5m]", "1:22: parse error: no offset modifiers allowed before range"},
    {"some_metric @ 1234 [5m]", "1:20: parse error: no @ modifiers allowed before range"},
    {"(foo + bar)[5m]", "1:12: parse error: ranges only allowed for vector selectors"},
    {"rate(food[1m])[1h] offset 1h", "1:15: parse error: ranges only allowed for vector "
                                     "selectors"},
    {"foo[0m]", "1:5: parse error: duration must be greater than 0"},
    {"foo[5y1hs]", "1:5: parse error: unknown unit \"hs\" in duration \"5y1hs\""},
    {"foo[5m1h]", "1:5: parse error: not a valid duration string: \"5m1h\""},
    {"foo[1.5h]", "1:5: parse error: unknown unit \".\" in duration \"1.5h\""},
    {"foo[300y]", "1:5: parse error: duration out of range"},
    {"foo offset 9.5e10", "1:12: parse error: duration out of range"},
    {"foo[-1]", "1:5: parse error: duration must be greater than 0"},
    {"foo[0+-2^2]", "1:5: parse error: duration must be greater than 0"},
    {"foo[5s/0d]", "1:7: parse error: division by zero"},
    {"foo[5s%0d]", "1:7: parse error: modulo by zero"},
    {"foo offset (4d/0)", "1:15: parse error: division by zero"},
    {"foo[step()]",
     "1:5: parse error: step() and range() in duration expressions are not supported"},
    {"foo offset max(1m 2m)",
     "1:19: parse error: unexpected duration \"2m\" in offset, expected \",\""},
    {"foo{a=~\"(\"}", NULL}, /* bad regex: message from the regex engine, checked below */
    {"unknown(foo)", "1:1: parse error: unknown function with name \"unknown\""},
    {"a>b()", "1:3: parse error: unknown function with name \"b\""},
    {"sum()", "1:1: parse error: no arguments for aggregate expression provided"},
    {"sum () by (test)", "1:1: parse error: no arguments for aggregate expression provided"},
    {"topk(some_metric)", "1:1: parse error: wrong number of arguments for aggregate expression "
                          "provided, expected 2, got 1"},
    {"sum(a, b)", "1:1: parse error: wrong number of arguments for aggregate expression "
                  "provided, expected 1, got 2"},
    {"1e400", "1:1: parse error: error parsing number: strconv.ParseFloat: parsing \"1e400\": "
              "value out of range"},
    {"999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
     "999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
     "999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
     "999999999999999999999999999999999999999",
     "1:1: parse error: error parsing number: strconv.ParseFloat: parsing "
     "\"999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
     "999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
     "999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
     "999999999999999999999999999999999999999\": value out of range"},
    {"0x", "1:1: parse error: error parsing number: strconv.ParseFloat: parsing \"0x\": invalid "
           "syntax"},
    /* Type errors. */
    {"1 and 1", "1:1: parse error: set operator \"and\" not allowed in binary scalar expression"},
    {"foo or 1", "1:1: parse error: set operator \"or\" not allowed in binary scalar expression"},
    {"1 == 1", "1:3: parse error: comparisons between scalars must use BOOL modifier"},
    {"(1)  >  (2)", "1:6: parse error: comparisons between scalars must use BOOL modifier"},
    {"foo + bool bar", "1:5: parse error: bool modifier can only be used on comparison "
                       "operators"},
    {"foo[5m] + 1", "1:1: parse error: binary expression must contain only scalar and instant "
                    "vector types"},
    {"1 + \"a\"", "1:5: parse error: binary expression must contain only scalar and instant "
                  "vector types"},
    {"1 + on(a) foo", "1:1: parse error: vector matching only allowed between instant vectors"},
    {"foo and on(a) group_left(b) bar", "1:1: parse error: no grouping allowed for \"and\" "
                                        "operation"},
    {"foo * on(a) group_left(a) bar", "1:5: parse error: label \"a\" must not occur in ON and "
                                      "GROUP clause at once"},
    {"-\"string\"", "1:1: parse error: unary expression only allowed on expressions of type "
                    "scalar or instant vector, got \"string\""},
    {"-test[5m]", "1:1: parse error: unary expression only allowed on expressions of type "
                  "scalar or instant vector, got \"range vector\""},
    {"rate(some_metric)", "1:6: parse error: expected type range vector in call to function "
                          "\"rate\", got instant vector"},
    {"floor(1)", "1:7: parse error: expected type instant vector in call to function \"floor\", "
                 "got scalar"},
    {"rate(foo[5m], 2)", "1:1: parse error: expected 1 argument(s) in call to \"rate\", got 2"},
    {"time(some_metric)", "1:1: parse error: expected 0 argument(s) in call to \"time\", got 1"},
    {"hour(a, b, c)", "1:1: parse error: expected at most 1 argument(s) in call to \"hour\", "
                      "got 3"},
    {"round(a, 1, 2)", "1:1: parse error: expected at most 2 argument(s) in call to \"round\", "
                       "got 3"},
    {"label_join(a, \"b\")", "1:1: parse error: expected at least 3 argument(s) in call to "
                             "\"label_join\", got 2"},
    {"label_join(a, \"b\", \",\", 1)", "1:25: parse error: expected type string in call to "
                                       "function \"label_join\", got scalar"},
    {"label_replace(a, \"b\", \"c\", \"d\", 1)", "1:33: parse error: expected type string in "
                                                 "call to function \"label_replace\", got "
                                                 "scalar"},
    {"topk(some_metric, other_metric)", "1:6: parse error: expected type scalar in aggregation "
                                        "parameter, got instant vector"},
    {"count_values(5, other_metric)", "1:14: parse error: expected type string in aggregation "
                                      "parameter, got scalar"},
    {"sum(foo[5m])", "1:5: parse error: expected type instant vector in aggregation "
                     "expression, got range vector"},
    {"test[5d] OFFSET 10s [10m:5s]", "1:1: parse error: subquery is only allowed on instant "
                                     "vector, got matrix instead"},
    {"1[5m:]", "1:1: parse error: subquery is only allowed on instant vector, got scalar "
               "instead"},
    {"{}", "1:1: parse error: vector selector must contain at least one non-empty matcher"},
    {"{x=\"\"}", "1:1: parse error: vector selector must contain at least one non-empty matcher"},
    {"{x=~\".*\"}", "1:1: parse error: vector selector must contain at least one non-empty "
                    "matcher"},
    {"{x!~\".+\"}", "1:1: parse error: vector selector must contain at least one non-empty "
                    "matcher"},
    {"{__name__=~\".*\"}", "1:1: parse error: vector selector must contain at least one "
                           "non-empty matcher"},
    {"foo{__name__=\"bar\"}", "1:1: parse error: metric name must not be set twice: \"foo\" or "
                              "\"bar\""},
    {"info(foo, target_info{a=\"b\"})", "1:11: parse error: expected label selectors only, got "
                                        "vector selector instead"},
    /* Positions on later lines. */
    {"foo +\n  bar baz", "2:7: parse error: unexpected identifier \"baz\""},
    {"sum(\n  rate(x)\n)", "2:8: parse error: expected type range vector in call to function "
                           "\"rate\", got instant vector"},
};

START_TEST(test_errors)
{
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(error_cases); i++) {
        if (error_cases[i].error != NULL)
            check_error(error_cases[i].query, error_cases[i].error);
    }
    /* A bad regular expression is a parse error at the matcher's label. */
    cairn_error_t err;
    ck_assert_ptr_null(promql_parse("foo{a=~\"(\"}", &err));
    ck_assert_msg(strncmp(err.message, "1:5: parse error: error parsing regexp", 38) == 0, "%s",
                  err.message);
    ck_assert_ptr_null(promql_parse("foo{a!~\"[\"}", &err));
    ck_assert_msg(strncmp(err.message, "1:5: parse error: error parsing regexp", 38) == 0, "%s",
                  err.message);
    /* A NULL error pointer is allowed. */
    ck_assert_ptr_null(promql_parse("foo{", NULL));
}
END_TEST

START_TEST(test_position_line_char)
{
    unsigned line, chr;
    const char *q = "ab\ncd\n\nef";
    promql_position_line_char(q, 0, &line, &chr);
    ck_assert_uint_eq(line, 1);
    ck_assert_uint_eq(chr, 1);
    promql_position_line_char(q, 2, &line, &chr);
    ck_assert_uint_eq(line, 1);
    ck_assert_uint_eq(chr, 3);
    promql_position_line_char(q, 3, &line, &chr);
    ck_assert_uint_eq(line, 2);
    ck_assert_uint_eq(chr, 1);
    promql_position_line_char(q, 8, &line, &chr);
    ck_assert_uint_eq(line, 4);
    ck_assert_uint_eq(chr, 2);
}
END_TEST

/* ---- robustness --------------------------------------------------------------------------- */

START_TEST(test_deep_nesting)
{
    size_t depth = 100000;
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < depth; i++)
        buf_append_char(&b, '(');
    buf_append_char(&b, '1');
    for (size_t i = 0; i < depth; i++)
        buf_append_char(&b, ')');
    cairn_error_t err;
    ck_assert_ptr_null(promql_parse(b.data, &err));
    ck_assert_msg(strstr(err.message, "nested too deeply") != NULL, "%s", err.message);

    /* A long chain of binary operators is as deep as it is long. */
    buf_reset(&b);
    buf_append_str(&b, "a");
    for (size_t i = 0; i < depth; i++)
        buf_append_str(&b, " + a");
    ck_assert_ptr_null(promql_parse(b.data, &err));
    ck_assert_msg(strstr(err.message, "nested too deeply") != NULL, "%s", err.message);

    buf_reset(&b);
    for (size_t i = 0; i < depth; i++)
        buf_append_char(&b, '-');
    buf_append_str(&b, "a");
    ck_assert_ptr_null(promql_parse(b.data, &err));
    ck_assert_msg(strstr(err.message, "nested too deeply") != NULL, "%s", err.message);

    /* Moderate nesting is fine. */
    buf_reset(&b);
    for (size_t i = 0; i < 200; i++)
        buf_append_str(&b, "abs(");
    buf_append_str(&b, "a");
    for (size_t i = 0; i < 200; i++)
        buf_append_char(&b, ')');
    promql_node_t *n = parse_ok(b.data);
    promql_node_free(n);
    buf_free(&b);
}
END_TEST

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

START_TEST(test_random_input_never_crashes)
{
    static const char alphabet[] = "abcxyz_:019.eE+-*/%^=!~<>(){}[],@\"'` \n#oOnbyfsetmhdw";
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    char q[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = rng_next(&seed) % (sizeof(q) - 1);
        for (size_t i = 0; i < len; i++)
            q[i] = alphabet[rng_next(&seed) % (sizeof(alphabet) - 1)];
        q[len] = '\0';
        cairn_error_t err;
        promql_node_t *n = promql_parse(q, &err);
        if (n != NULL) {
            /* What parses prints to something that parses to the same print. */
            char *s = format_node(n);
            promql_node_t *again = promql_parse(s, &err);
            ck_assert_msg(again != NULL, "%s printed as %s, which fails: %s", q, s, err.message);
            char *s2 = format_node(again);
            ck_assert_msg(strcmp(s, s2) == 0, "%s: %s vs %s", q, s, s2);
            cairn_free(s2);
            cairn_free(s);
            promql_node_free(again);
            promql_node_free(n);
        } else {
            ck_assert_msg(strstr(err.message, "parse error: ") != NULL, "%s: %s", q, err.message);
        }
    }
}
END_TEST

/* ---- the conformance corpus --------------------------------------------------------------- */

static void corpus_dir(char *out, size_t size)
{
    const char *shared = getenv("CAIRN_SHARED_DIR");
    if (shared != NULL && shared[0] != '\0') {
        snprintf(out, size, "%s/conformance/promql", shared);
        return;
    }
    const char *src = getenv("CAIRN_SRCDIR");
    snprintf(out, size, "%s/../shared/conformance/promql", src != NULL && src[0] ? src : ".");
}

/* The query of an eval line ("eval instant at T Q", "eval range from S to E step D Q"), or
 * NULL. */
static const char *eval_query(const char *line)
{
    const char *p = strchr(line, ' ');
    if (p == NULL)
        return NULL;
    p++;
    int words;
    if (strncmp(p, "instant ", 8) == 0)
        words = 3; /* instant at T */
    else if (strncmp(p, "range ", 6) == 0)
        words = 7; /* range from S to E step D */
    else
        return NULL;
    for (int i = 0; i < words; i++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return NULL;
        p++;
    }
    return p;
}

START_TEST(test_conformance_corpus)
{
    char dir_path[4096];
    corpus_dir(dir_path, sizeof(dir_path));
    DIR *dir = opendir(dir_path);
    ck_assert_msg(dir != NULL, "cannot open %s (set CAIRN_SHARED_DIR)", dir_path);
    size_t files = 0, parsed = 0, expected_failures = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".test") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir_path, de->d_name);
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        files++;
        /* Read all lines so an eval can look at its expectations. */
        char **lines = NULL;
        size_t count = 0;
        char line[65536];
        while (fgets(line, sizeof(line), f) != NULL) {
            size_t len = strlen(line);
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = '\0';
            lines = cairn_realloc(lines, (count + 1) * sizeof(*lines));
            lines[count++] = cairn_strdup(line);
        }
        fclose(f);
        for (size_t i = 0; i < count; i++) {
            if (strncmp(lines[i], "eval", 4) != 0)
                continue;
            const char *q = eval_query(lines[i]);
            ck_assert_msg(q != NULL, "%s:%zu: cannot read %s", de->d_name, i + 1, lines[i]);
            bool expect_fail = strncmp(lines[i], "eval_fail", 9) == 0;
            for (size_t j = i + 1;
                 j < count && lines[j][0] != '\0' && (lines[j][0] == ' ' || lines[j][0] == '\t');
                 j++) {
                const char *t = lines[j];
                while (*t == ' ' || *t == '\t')
                    t++;
                if (strncmp(t, "expect fail", 11) == 0)
                    expect_fail = true;
            }
            cairn_error_t err;
            promql_node_t *n = promql_parse(q, &err);
            if (expect_fail) {
                expected_failures++;
                promql_node_free(n);
                continue;
            }
            ck_assert_msg(n != NULL, "%s:%zu: %s: %s", de->d_name, i + 1, q, err.message);
            char *s = format_node(n);
            promql_node_t *again = promql_parse(s, &err);
            ck_assert_msg(again != NULL, "%s:%zu: %s printed as %s, which fails: %s", de->d_name,
                          i + 1, q, s, err.message);
            char *s2 = format_node(again);
            ck_assert_msg(strcmp(s, s2) == 0, "%s: %s vs %s", q, s, s2);
            cairn_free(s);
            cairn_free(s2);
            promql_node_free(again);
            promql_node_free(n);
            parsed++;
        }
        for (size_t i = 0; i < count; i++)
            cairn_free(lines[i]);
        cairn_free(lines);
    }
    closedir(dir);
    ck_assert_uint_gt(files, 5);
    ck_assert_uint_gt(parsed, 500);
    ck_assert_uint_gt(expected_failures, 0);
}
END_TEST

static Suite *parse_suite(void)
{
    Suite *s = suite_create("query_promql_parse");
    TCase *tc = tcase_create("literals");
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_strings);
    suite_add_tcase(s, tc);

    tc = tcase_create("structure");
    tcase_add_test(tc, test_vector_selector_structure);
    tcase_add_test(tc, test_modifiers_structure);
    tcase_add_test(tc, test_precedence);
    tcase_add_test(tc, test_binary_matching);
    tcase_add_test(tc, test_aggregations);
    tcase_add_test(tc, test_function_calls);
    tcase_add_test(tc, test_function_table);
    suite_add_tcase(s, tc);

    tc = tcase_create("format");
    tcase_add_test(tc, test_format_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_position_line_char);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_deep_nesting);
    tcase_add_test(tc, test_random_input_never_crashes);
    suite_add_tcase(s, tc);

    tc = tcase_create("corpus");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conformance_corpus);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
