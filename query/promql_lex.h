/*
 * query/promql_lex.h: PromQL's lexer, internal to the parser (promql_parse.c) and its tests.
 *
 * promql_lex turns a whole query into an array of tokens that ends with exactly one
 * PROMQL_TOK_EOF or PROMQL_TOK_ERROR token. It follows the states of Prometheus's lexer
 * (statements, inside braces, after a left bracket) so that what is a token, and which
 * character a lexical error is reported at, match Prometheus 3.x: keywords are recognised
 * case-insensitively outside braces, Inf and NaN are numbers, a number directly followed by a
 * unit is a duration ("5m", "1h30m"), comments run from '#' to the end of the line and are
 * dropped. An ERROR token's message is Prometheus's lexer message (e.g. "unclosed left
 * parenthesis") and its start is the byte offset Prometheus reports for it.
 *
 * Token text is not copied: a token is a byte range of the query, which must outlive the
 * token array.
 */
#ifndef CAIRN_QUERY_PROMQL_LEX_H
#define CAIRN_QUERY_PROMQL_LEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef enum promql_token_type {
    PROMQL_TOK_EOF,
    PROMQL_TOK_ERROR,
    PROMQL_TOK_IDENTIFIER,        /* foo, or a label name inside braces */
    PROMQL_TOK_METRIC_IDENTIFIER, /* an identifier with a colon: job:rate5m */
    PROMQL_TOK_NUMBER,            /* 1, 0x1f, 1e3, .5, Inf, NaN */
    PROMQL_TOK_DURATION,          /* 5m, 1h30m */
    PROMQL_TOK_STRING,            /* "...", '...' or `...`, quotes included */
    /* Punctuation. */
    PROMQL_TOK_LEFT_PAREN,
    PROMQL_TOK_RIGHT_PAREN,
    PROMQL_TOK_LEFT_BRACE,
    PROMQL_TOK_RIGHT_BRACE,
    PROMQL_TOK_LEFT_BRACKET,
    PROMQL_TOK_RIGHT_BRACKET,
    PROMQL_TOK_COMMA,
    PROMQL_TOK_EQL, /* = */
    PROMQL_TOK_COLON,
    /* Operators. */
    PROMQL_TOK_ADD,
    PROMQL_TOK_SUB,
    PROMQL_TOK_MUL,
    PROMQL_TOK_DIV,
    PROMQL_TOK_MOD,
    PROMQL_TOK_POW,
    PROMQL_TOK_EQLC, /* == */
    PROMQL_TOK_NEQ,
    PROMQL_TOK_LSS,
    PROMQL_TOK_LTE,
    PROMQL_TOK_GTR,
    PROMQL_TOK_GTE,
    PROMQL_TOK_EQL_REGEX,
    PROMQL_TOK_NEQ_REGEX,
    PROMQL_TOK_AT,
    PROMQL_TOK_LAND,
    PROMQL_TOK_LOR,
    PROMQL_TOK_LUNLESS,
    PROMQL_TOK_ATAN2,
    /* Aggregators. */
    PROMQL_TOK_SUM,
    PROMQL_TOK_AVG,
    PROMQL_TOK_COUNT,
    PROMQL_TOK_MIN,
    PROMQL_TOK_MAX,
    PROMQL_TOK_GROUP,
    PROMQL_TOK_STDDEV,
    PROMQL_TOK_STDVAR,
    PROMQL_TOK_TOPK,
    PROMQL_TOK_BOTTOMK,
    PROMQL_TOK_QUANTILE,
    PROMQL_TOK_COUNT_VALUES,
    PROMQL_TOK_LIMITK,
    PROMQL_TOK_LIMIT_RATIO,
    /* Keywords. */
    PROMQL_TOK_BOOL,
    PROMQL_TOK_BY,
    PROMQL_TOK_GROUP_LEFT,
    PROMQL_TOK_GROUP_RIGHT,
    PROMQL_TOK_IGNORING,
    PROMQL_TOK_OFFSET,
    PROMQL_TOK_ON,
    PROMQL_TOK_WITHOUT,
    /* Preprocessors: @ start(), @ end(), and the step keyword of duration expressions. */
    PROMQL_TOK_START,
    PROMQL_TOK_END,
    PROMQL_TOK_STEP,
} promql_token_type_t;

typedef struct promql_token {
    promql_token_type_t type;
    uint32_t start, end; /* byte range in the query */
    char *message;       /* ERROR only: owned */
} promql_token_t;

/* Lexes query (len bytes). Returns the tokens (*count of them, the last EOF or ERROR); free
 * with promql_tokens_free. Never fails (a lexical error is the ERROR token). */
promql_token_t *promql_lex(const char *query, size_t len, size_t *count);
void promql_tokens_free(promql_token_t *tokens, size_t count);

/* Whether the token type is an aggregation operator, an operator, a keyword. */
int promql_token_is_aggregator(promql_token_type_t type);
int promql_token_is_operator(promql_token_type_t type);
int promql_token_is_keyword(promql_token_type_t type);

/* Appends to out the description Prometheus's parser gives a token in "unexpected ..."
 * messages: `end of input`, `identifier "foo"`, `number "1"`, `"("`, `<op:+>`, `<aggr:sum>`,
 * `<by>`, ... */
void promql_token_describe(const char *query, const promql_token_t *tok, buf_t *out);

/* Go's %q of a string and of a rune (strconv.Quote / QuoteRune), which Prometheus uses in
 * messages and in the String() form of string literals and matchers. */
void promql_quote_go(buf_t *out, const char *s, size_t len);
void promql_quote_rune_go(buf_t *out, int32_t rune);
/* Decodes one UTF-8 rune like Go's utf8.DecodeRune: invalid input gives 0xFFFD and width 1;
 * len 0 gives -1 (end of input) and width 0. */
int32_t promql_utf8_decode(const char *s, size_t len, size_t *width);

#endif /* CAIRN_QUERY_PROMQL_LEX_H */
