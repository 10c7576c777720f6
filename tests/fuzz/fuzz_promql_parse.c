/*
 * tests/fuzz/fuzz_promql_parse.c: libFuzzer target for PromQL's lexer and parser
 * (query/promql_lex.c, query/promql_parse.c).
 *
 * Properties checked on every input: parsing never crashes, leaks or reads out of bounds
 * (ASan/UBSan); a failed parse leaves a "<line>:<char>: parse error: ..." message (or
 * "unknown position: ..." for an empty query); a successful parse gives a tree whose node
 * positions lie inside the query, which prints (Prometheus's String() form) to a text that
 * parses again and prints to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "query/promql_ast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_positions(const promql_node_t *n, size_t len)
{
    if (n == NULL)
        return;
    if (n->pos.start > n->pos.end || n->pos.end > len)
        abort();
    switch (n->kind) {
    case PROMQL_NODE_MATRIX_SELECTOR: check_positions(n->matrix.vector, len); break;
    case PROMQL_NODE_SUBQUERY: check_positions(n->subquery.expr, len); break;
    case PROMQL_NODE_PAREN: check_positions(n->paren.expr, len); break;
    case PROMQL_NODE_UNARY: check_positions(n->unary.expr, len); break;
    case PROMQL_NODE_BINARY:
        check_positions(n->binary.lhs, len);
        check_positions(n->binary.rhs, len);
        break;
    case PROMQL_NODE_AGGREGATE:
        check_positions(n->aggregate.expr, len);
        check_positions(n->aggregate.param, len);
        break;
    case PROMQL_NODE_CALL:
        for (size_t i = 0; i < n->call.arg_count; i++)
            check_positions(n->call.args[i], len);
        break;
    default: break;
    }
}

static char *print(const promql_node_t *n)
{
    buf_t b = BUF_INIT;
    promql_node_format(n, &b);
    buf_append(&b, "", 0);
    return buf_detach(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *q = malloc(size + 1);
    if (q == NULL)
        return 0;
    memcpy(q, data, size);
    q[size] = '\0';
    size_t len = strlen(q); /* the parser reads a C string */
    cairn_error_t err;
    promql_node_t *n = promql_parse(q, &err);
    if (n == NULL) {
        if (strstr(err.message, ": parse error: ") == NULL)
            abort();
        free(q);
        return 0;
    }
    check_positions(n, len);
    (void)promql_node_type(n);
    char *s = print(n);
    promql_node_t *again = promql_parse(s, &err);
    if (again == NULL)
        abort(); /* the printed form must parse */
    char *s2 = print(again);
    if (strcmp(s, s2) != 0)
        abort(); /* and print to itself */
    cairn_free(s);
    cairn_free(s2);
    promql_node_free(again);
    promql_node_free(n);
    free(q);
    return 0;
}
