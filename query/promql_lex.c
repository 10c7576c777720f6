/*
 * query/promql_lex.c: PromQL's lexer (see promql_lex.h).
 *
 * A small state machine over bytes, decoding UTF-8 the way Go does (an invalid byte is the
 * rune U+FFFD, one byte wide). Three states decide how the next token is read:
 *
 *   statements      the default: operators, numbers, strings, identifiers and keywords
 *   inside braces   after '{' until '}': label names are plain identifiers (keywords are not
 *                   recognised), =~ and !~ exist, anything else is an error
 *   duration        right after '[' (and after ':' , an operator or a parenthesis inside
 *                   brackets): only numbers, durations and duration-expression punctuation
 *
 * These mirror the states of Prometheus's lexer, including its quirks (after the first number
 * inside brackets the statements state takes over again, with ':' and the words step, min and
 * max accepted because a bracket is open), because which inputs are errors and the messages
 * and positions of those errors are part of the behaviour users see.
 */
#include <string.h>

#include "query/promql_lex.h"

#define RUNE_EOF   (-1)
#define RUNE_ERROR 0xFFFD

typedef struct lexer {
    const char *input;
    size_t len;
    size_t pos;   /* next byte to read */
    size_t start; /* start of the token being read */
    size_t width; /* width of the last rune read, for backup */
    int paren_depth;
    bool brace_open;
    bool bracket_open;
    bool got_colon;      /* a ':' was seen since the last '[' */
    bool got_duration;   /* a number or duration was seen since the last '[' */
    bool duration_mode;  /* the next token is read by the duration state */
    int32_t string_open; /* the quote of the string being read */
    bool done;
    promql_token_t *tokens;
    size_t count, cap;
} lexer_t;

int32_t promql_utf8_decode(const char *s, size_t len, size_t *width)
{
    const unsigned char *u = (const unsigned char *)s;
    if (len == 0) {
        *width = 0;
        return RUNE_EOF;
    }
    unsigned char c = u[0];
    *width = 1;
    if (c < 0x80)
        return c;
    size_t need;
    int32_t r, min;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1, r = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, r = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, r = c & 0x07, min = 0x10000;
    } else {
        return RUNE_ERROR;
    }
    if (len < need + 1)
        return RUNE_ERROR;
    for (size_t i = 1; i <= need; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return RUNE_ERROR;
        r = (r << 6) | (u[i] & 0x3F);
    }
    if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF))
        return RUNE_ERROR;
    *width = need + 1;
    return r;
}

/* ---- Go-style quoting ------------------------------------------------------------------- */

/* Approximates Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the
 * ASCII space. Outside ASCII, the control, format, separator, private-use and noncharacter
 * ranges are treated as unprintable; everything else as printable. */
static bool rune_is_print(int32_t r)
{
    if (r < 0x80)
        return r >= 0x20 && r < 0x7F;
    if (r < 0xA1 || r == 0xAD)
        return false;
    if ((r >= 0x2000 && r <= 0x200F) || (r >= 0x2028 && r <= 0x202F) ||
        (r >= 0x205F && r <= 0x206F) || r == 0x1680 || r == 0x180E || r == 0x061C || r == 0x3000 ||
        r == 0xFEFF || (r >= 0xFFF9 && r <= 0xFFFB) || (r >= 0xD800 && r <= 0xF8FF) ||
        (r >= 0xFFFE && r <= 0xFFFF) || r >= 0xF0000 || (r >= 0xE0000 && r <= 0xE0FFF))
        return false;
    return r <= 0x10FFFF;
}

static void append_rune_utf8(buf_t *out, int32_t r)
{
    char b[4];
    if (r < 0x80) {
        b[0] = (char)r;
        buf_append(out, b, 1);
    } else if (r < 0x800) {
        b[0] = (char)(0xC0 | (r >> 6));
        b[1] = (char)(0x80 | (r & 0x3F));
        buf_append(out, b, 2);
    } else if (r < 0x10000) {
        b[0] = (char)(0xE0 | (r >> 12));
        b[1] = (char)(0x80 | ((r >> 6) & 0x3F));
        b[2] = (char)(0x80 | (r & 0x3F));
        buf_append(out, b, 3);
    } else {
        b[0] = (char)(0xF0 | (r >> 18));
        b[1] = (char)(0x80 | ((r >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((r >> 6) & 0x3F));
        b[3] = (char)(0x80 | (r & 0x3F));
        buf_append(out, b, 4);
    }
}

static void append_escaped_rune(buf_t *out, int32_t r, char quote)
{
    if (r == quote || r == '\\') {
        buf_append_char(out, '\\');
        buf_append_char(out, (char)r);
        return;
    }
    if (rune_is_print(r)) {
        append_rune_utf8(out, r);
        return;
    }
    switch (r) {
    case '\a': buf_append_str(out, "\\a"); return;
    case '\b': buf_append_str(out, "\\b"); return;
    case '\f': buf_append_str(out, "\\f"); return;
    case '\n': buf_append_str(out, "\\n"); return;
    case '\r': buf_append_str(out, "\\r"); return;
    case '\t': buf_append_str(out, "\\t"); return;
    case '\v': buf_append_str(out, "\\v"); return;
    default: break;
    }
    if (r < ' ' || r == 0x7F)
        buf_printf(out, "\\x%02x", (unsigned)r);
    else if (r < 0x10000)
        buf_printf(out, "\\u%04x", (unsigned)r);
    else
        buf_printf(out, "\\U%08x", (unsigned)r);
}

void promql_quote_go(buf_t *out, const char *s, size_t len)
{
    buf_append_char(out, '"');
    size_t i = 0;
    while (i < len) {
        size_t w;
        int32_t r = promql_utf8_decode(s + i, len - i, &w);
        if (r == RUNE_ERROR && w == 1)
            buf_printf(out, "\\x%02x", (unsigned char)s[i]);
        else
            append_escaped_rune(out, r, '"');
        i += w;
    }
    buf_append_char(out, '"');
}

void promql_quote_rune_go(buf_t *out, int32_t rune)
{
    if (rune < 0 || rune > 0x10FFFF || (rune >= 0xD800 && rune <= 0xDFFF))
        rune = RUNE_ERROR;
    buf_append_char(out, '\'');
    append_escaped_rune(out, rune, '\'');
    buf_append_char(out, '\'');
}

/* Go's %#U: U+0041 'A' (the quoted form only for printable runes). */
static void append_rune_sharp_u(buf_t *out, int32_t rune)
{
    buf_printf(out, "U+%04X", (unsigned)(rune < 0 ? RUNE_ERROR : rune));
    if (rune >= 0 && rune_is_print(rune)) {
        buf_append_str(out, " '");
        append_rune_utf8(out, rune);
        buf_append_char(out, '\'');
    }
}

/* ---- the machine ------------------------------------------------------------------------ */

static int32_t lex_next(lexer_t *l)
{
    int32_t r = promql_utf8_decode(l->input + l->pos, l->len - l->pos, &l->width);
    l->pos += l->width;
    return r;
}

static void lex_backup(lexer_t *l)
{
    l->pos -= l->width;
    l->width = 0;
}

static int32_t lex_peek(lexer_t *l)
{
    size_t w;
    return promql_utf8_decode(l->input + l->pos, l->len - l->pos, &w);
}

static bool lex_accept(lexer_t *l, const char *valid)
{
    int32_t r = lex_next(l);
    if (r > 0 && r < 0x80 && strchr(valid, (int)r) != NULL)
        return true;
    lex_backup(l);
    return false;
}

static bool lex_is(lexer_t *l, const char *valid)
{
    int32_t r = lex_peek(l);
    return r > 0 && r < 0x80 && strchr(valid, (int)r) != NULL;
}

static void lex_accept_run(lexer_t *l, const char *valid)
{
    while (lex_accept(l, valid)) {
    }
}

static bool is_space(int32_t r)
{
    return r == ' ' || r == '\t' || r == '\n' || r == '\r';
}

static bool is_digit(int32_t r)
{
    return r >= '0' && r <= '9';
}

static bool is_alpha(int32_t r)
{
    return r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z');
}

static bool is_alnum(int32_t r)
{
    return is_alpha(r) || is_digit(r);
}

static promql_token_t *lex_push(lexer_t *l)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->tokens = cairn_realloc(l->tokens, l->cap * sizeof(*l->tokens));
    }
    promql_token_t *t = &l->tokens[l->count++];
    memset(t, 0, sizeof(*t));
    return t;
}

static void lex_emit(lexer_t *l, promql_token_type_t type)
{
    promql_token_t *t = lex_push(l);
    t->type = type;
    t->start = (uint32_t)l->start;
    t->end = (uint32_t)l->pos;
    l->start = l->pos;
    if (type == PROMQL_TOK_EOF)
        l->done = true;
}

static void lex_ignore(lexer_t *l)
{
    l->start = l->pos;
}

/* Ends the scan with an ERROR token at the start of the token being read. The message is
 * taken over from buf. */
static void lex_error_buf(lexer_t *l, buf_t *msg)
{
    promql_token_t *t = lex_push(l);
    t->type = PROMQL_TOK_ERROR;
    t->start = (uint32_t)l->start;
    t->end = (uint32_t)l->len;
    t->message = buf_detach(msg);
    l->done = true;
}

static void lex_error(lexer_t *l, const char *msg)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, msg);
    lex_error_buf(l, &b);
}

/* "<prefix>'c'<suffix>" with c quoted like Go's %q of a rune. */
static void lex_error_rune(lexer_t *l, const char *prefix, int32_t r, const char *suffix)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, prefix);
    promql_quote_rune_go(&b, r);
    buf_append_str(&b, suffix);
    lex_error_buf(l, &b);
}

/* "<prefix>"text"" with the bytes since the token start quoted like Go's %q. */
static void lex_error_text(lexer_t *l, const char *prefix)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, prefix);
    promql_quote_go(&b, l->input + l->start, l->pos - l->start);
    lex_error_buf(l, &b);
}

static void lex_skip_spaces(lexer_t *l)
{
    while (is_space(lex_peek(l)))
        lex_next(l);
    lex_ignore(l);
}

static void lex_line_comment(lexer_t *l)
{
    l->pos++; /* '#' */
    for (;;) {
        int32_t r = lex_next(l);
        if (r == RUNE_EOF || r == '\r' || r == '\n')
            break;
    }
    lex_backup(l);
    lex_ignore(l);
}

/* Scans an escape sequence; the backslash has been read. Returns false after an error. */
static bool lex_escape(lexer_t *l)
{
    int32_t ch = lex_next(l);
    int n;
    uint32_t base, max;
    switch (ch) {
    case 'a':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
    case 'v':
    case '\\': return true;
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7': n = 3, base = 8, max = 255; break;
    case 'x':
        ch = lex_next(l);
        n = 2, base = 16, max = 255;
        break;
    case 'u':
        ch = lex_next(l);
        n = 4, base = 16, max = 0x10FFFF;
        break;
    case 'U':
        ch = lex_next(l);
        n = 8, base = 16, max = 0x10FFFF;
        break;
    case RUNE_EOF: lex_error(l, "escape sequence not terminated"); return false;
    default:
        if (ch == l->string_open)
            return true;
        {
            buf_t b = BUF_INIT;
            buf_append_str(&b, "unknown escape sequence ");
            append_rune_sharp_u(&b, ch);
            lex_error_buf(l, &b);
        }
        return false;
    }
    uint32_t x = 0;
    while (n > 0) {
        uint32_t d = 16;
        if (ch >= '0' && ch <= '9')
            d = (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            d = (uint32_t)(ch - 'A' + 10);
        if (d >= base) {
            if (ch == RUNE_EOF) {
                lex_error(l, "escape sequence not terminated");
            } else {
                buf_t b = BUF_INIT;
                buf_append_str(&b, "illegal character ");
                append_rune_sharp_u(&b, ch);
                buf_append_str(&b, " in escape sequence");
                lex_error_buf(l, &b);
            }
            return false;
        }
        x = x * base + d;
        n--;
        if (n > 0)
            ch = lex_next(l);
    }
    if (x > max || (x >= 0xD800 && x < 0xE000)) {
        lex_error(l, "escape sequence is an invalid Unicode code point");
        return false;
    }
    return true;
}

/* A quoted string; the opening quote has been read. */
static void lex_string(lexer_t *l)
{
    for (;;) {
        int32_t r = lex_next(l);
        if (r == '\\') {
            if (!lex_escape(l))
                return;
        } else if (r == RUNE_ERROR) {
            lex_error(l, "invalid UTF-8 rune");
            return;
        } else if (r == RUNE_EOF || r == '\n') {
            lex_error(l, "unterminated quoted string");
            return;
        } else if (r == l->string_open) {
            break;
        }
    }
    lex_emit(l, PROMQL_TOK_STRING);
}

static void lex_raw_string(lexer_t *l)
{
    for (;;) {
        int32_t r = lex_next(l);
        if (r == RUNE_ERROR) {
            lex_error(l, "invalid UTF-8 rune");
            return;
        } else if (r == RUNE_EOF) {
            lex_error(l, "unterminated raw string");
            return;
        } else if (r == l->string_open) {
            break;
        }
    }
    lex_emit(l, PROMQL_TOK_STRING);
}

/* Scans a number: decimal, hexadecimal or float, with Go's digit separators. The text is not
 * necessarily a valid number (the parser checks); false if it cannot be one here. */
static bool lex_scan_number(lexer_t *l)
{
    size_t initial = l->pos;
    const char *digits = "0123456789";
    bool hex = false;
    if (lex_accept(l, "0")) {
        if (lex_accept(l, "xX")) {
            lex_accept(l, "_");
            digits = "0123456789abcdefABCDEF";
            hex = true;
        }
    }
    lex_accept(l, ".");
    lex_accept(l, digits);
    bool dot = false, exponent = false;
    for (;;) {
        if (!lex_is(l, digits) && !lex_is(l, "._eE"))
            break;
        if (lex_is(l, ".") && dot) {
            lex_accept(l, ".");
            return false;
        }
        if (lex_is(l, "eE") && exponent) {
            lex_accept(l, "eE");
            return false;
        }
        if (lex_accept(l, ".")) {
            dot = true;
            if (lex_accept(l, "_."))
                return false;
            if (hex)
                return false; /* no fractional hexadecimal literals */
            continue;
        }
        if (lex_accept(l, "eE")) {
            exponent = true;
            lex_accept(l, "+-");
            if (lex_accept(l, "._eE") || lex_peek(l) == RUNE_EOF)
                return false;
            continue;
        }
        if (lex_accept(l, "_")) {
            if (lex_accept(l, "._eE") || lex_peek(l) == RUNE_EOF)
                return false;
            continue;
        }
        lex_accept_run(l, digits);
    }
    if (l->pos == initial)
        return false;
    return !is_alnum(lex_peek(l));
}

/* After a number's digits: the rest of a duration ("m", "h30m", "ms"). */
static bool lex_accept_remaining_duration(lexer_t *l)
{
    if (!lex_accept(l, "smhdwy"))
        return false;
    lex_accept(l, "s");
    while (lex_accept(l, "0123456789")) {
        lex_accept_run(l, "0123456789");
        if (!lex_accept(l, "smhdw"))
            return false;
        lex_accept(l, "s");
    }
    return !is_alnum(lex_next(l));
}

static void lex_number_or_duration(lexer_t *l)
{
    l->duration_mode = false;
    if (lex_scan_number(l)) {
        lex_emit(l, PROMQL_TOK_NUMBER);
        return;
    }
    if (lex_accept_remaining_duration(l)) {
        lex_backup(l);
        lex_emit(l, PROMQL_TOK_DURATION);
        return;
    }
    lex_error_text(l, "bad number or duration syntax: ");
}

typedef struct keyword {
    const char *word;
    promql_token_type_t type;
} keyword_t;

static const keyword_t keywords[] = {
    {"and", PROMQL_TOK_LAND},
    {"or", PROMQL_TOK_LOR},
    {"unless", PROMQL_TOK_LUNLESS},
    {"atan2", PROMQL_TOK_ATAN2},
    {"sum", PROMQL_TOK_SUM},
    {"avg", PROMQL_TOK_AVG},
    {"count", PROMQL_TOK_COUNT},
    {"min", PROMQL_TOK_MIN},
    {"max", PROMQL_TOK_MAX},
    {"group", PROMQL_TOK_GROUP},
    {"stddev", PROMQL_TOK_STDDEV},
    {"stdvar", PROMQL_TOK_STDVAR},
    {"topk", PROMQL_TOK_TOPK},
    {"bottomk", PROMQL_TOK_BOTTOMK},
    {"count_values", PROMQL_TOK_COUNT_VALUES},
    {"quantile", PROMQL_TOK_QUANTILE},
    {"limitk", PROMQL_TOK_LIMITK},
    {"limit_ratio", PROMQL_TOK_LIMIT_RATIO},
    {"offset", PROMQL_TOK_OFFSET},
    {"by", PROMQL_TOK_BY},
    {"without", PROMQL_TOK_WITHOUT},
    {"on", PROMQL_TOK_ON},
    {"ignoring", PROMQL_TOK_IGNORING},
    {"group_left", PROMQL_TOK_GROUP_LEFT},
    {"group_right", PROMQL_TOK_GROUP_RIGHT},
    {"bool", PROMQL_TOK_BOOL},
    {"start", PROMQL_TOK_START},
    {"end", PROMQL_TOK_END},
    {"step", PROMQL_TOK_STEP},
    {"inf", PROMQL_TOK_NUMBER},
    {"nan", PROMQL_TOK_NUMBER},
};

static bool word_equals_lower(const char *word, size_t len, const char *lower)
{
    if (strlen(lower) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = word[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lower[i])
            return false;
    }
    return true;
}

static void lex_keyword_or_identifier(lexer_t *l)
{
    for (;;) {
        int32_t r = lex_next(l);
        if (!is_alnum(r) && r != ':') {
            lex_backup(l);
            break;
        }
    }
    const char *word = l->input + l->start;
    size_t len = l->pos - l->start;
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(keywords); i++) {
        if (word_equals_lower(word, len, keywords[i].word)) {
            lex_emit(l, keywords[i].type);
            return;
        }
    }
    lex_emit(l, memchr(word, ':', len) ? PROMQL_TOK_METRIC_IDENTIFIER : PROMQL_TOK_IDENTIFIER);
}

/* Inside brackets, the words a duration expression may hold: step, min, max. The first letter
 * has been read. */
static bool lex_duration_keyword(lexer_t *l)
{
    while (is_alpha(lex_next(l))) {
    }
    lex_backup(l);
    const char *word = l->input + l->start;
    size_t len = l->pos - l->start;
    if (word_equals_lower(word, len, "step"))
        lex_emit(l, PROMQL_TOK_STEP);
    else if (word_equals_lower(word, len, "min"))
        lex_emit(l, PROMQL_TOK_MIN);
    else if (word_equals_lower(word, len, "max"))
        lex_emit(l, PROMQL_TOK_MAX);
    else
        return false;
    return true;
}

static void lex_right_paren(lexer_t *l)
{
    lex_emit(l, PROMQL_TOK_RIGHT_PAREN);
    if (--l->paren_depth < 0) {
        /* Prometheus reports this just after the parenthesis, in place of the token. */
        l->count--;
        lex_error(l, "unexpected right parenthesis ')'");
    }
}

static void lex_inside_braces(lexer_t *l)
{
    if (l->pos < l->len && l->input[l->pos] == '#') {
        lex_line_comment(l);
        return;
    }
    int32_t r = lex_next(l);
    if (r == RUNE_EOF) {
        lex_error(l, "unexpected end of input inside braces");
    } else if (is_space(r)) {
        lex_skip_spaces(l);
    } else if (is_alpha(r)) {
        while (is_alnum(lex_next(l))) {
        }
        lex_backup(l);
        lex_emit(l, PROMQL_TOK_IDENTIFIER);
    } else if (r == ',') {
        lex_emit(l, PROMQL_TOK_COMMA);
    } else if (r == '"' || r == '\'') {
        l->string_open = r;
        lex_string(l);
    } else if (r == '`') {
        l->string_open = r;
        lex_raw_string(l);
    } else if (r == '=') {
        if (lex_next(l) == '~') {
            lex_emit(l, PROMQL_TOK_EQL_REGEX);
        } else {
            lex_backup(l);
            lex_emit(l, PROMQL_TOK_EQL);
        }
    } else if (r == '!') {
        int32_t nr = lex_next(l);
        if (nr == '~')
            lex_emit(l, PROMQL_TOK_NEQ_REGEX);
        else if (nr == '=')
            lex_emit(l, PROMQL_TOK_NEQ);
        else
            lex_error_rune(l, "unexpected character after '!' inside braces: ", nr, "");
    } else if (r == '{') {
        lex_error(l, "unexpected left brace '{'");
    } else if (r == '}') {
        lex_emit(l, PROMQL_TOK_RIGHT_BRACE);
        l->brace_open = false;
    } else {
        lex_error_rune(l, "unexpected character inside braces: ", r, "");
    }
}

static void lex_duration_expr(lexer_t *l)
{
    int32_t r = lex_next(l);
    switch (r) {
    case RUNE_EOF: lex_error(l, "unexpected end of input in duration expression"); return;
    case ']':
        lex_emit(l, PROMQL_TOK_RIGHT_BRACKET);
        l->bracket_open = false;
        l->got_colon = false;
        l->duration_mode = false;
        return;
    case ':':
        if (!l->got_duration) {
            lex_error(l, "unexpected colon before duration in duration expression");
            return;
        }
        if (l->got_colon) {
            lex_error(l, "unexpected repeated colon in duration expression");
            return;
        }
        lex_emit(l, PROMQL_TOK_COLON);
        l->got_colon = true;
        return;
    case '(':
        lex_emit(l, PROMQL_TOK_LEFT_PAREN);
        l->paren_depth++;
        return;
    case ')': lex_right_paren(l); return;
    case '+': lex_emit(l, PROMQL_TOK_ADD); return;
    case '-': lex_emit(l, PROMQL_TOK_SUB); return;
    case '*': lex_emit(l, PROMQL_TOK_MUL); return;
    case '/': lex_emit(l, PROMQL_TOK_DIV); return;
    case '%': lex_emit(l, PROMQL_TOK_MOD); return;
    case '^': lex_emit(l, PROMQL_TOK_POW); return;
    case ',': lex_emit(l, PROMQL_TOK_COMMA); return;
    case 's':
    case 'S':
    case 'm':
    case 'M':
        if (!lex_duration_keyword(l))
            lex_error_rune(l, "unexpected character in duration expression: ", r, "");
        return;
    default: break;
    }
    if (is_space(r)) {
        lex_skip_spaces(l);
    } else if (is_digit(r) || (r == '.' && is_digit(lex_peek(l)))) {
        lex_backup(l);
        l->got_duration = true;
        lex_number_or_duration(l);
    } else {
        lex_error_rune(l, "unexpected character in duration expression: ", r, "");
    }
}

static void lex_statements(lexer_t *l)
{
    if (l->pos < l->len && l->input[l->pos] == '#') {
        lex_line_comment(l);
        return;
    }
    int32_t r = lex_next(l);
    switch (r) {
    case RUNE_EOF:
        if (l->paren_depth != 0)
            lex_error(l, "unclosed left parenthesis");
        else if (l->bracket_open)
            lex_error(l, "unclosed left bracket");
        else
            lex_emit(l, PROMQL_TOK_EOF);
        return;
    case ',': lex_emit(l, PROMQL_TOK_COMMA); return;
    case '*': lex_emit(l, PROMQL_TOK_MUL); return;
    case '/': lex_emit(l, PROMQL_TOK_DIV); return;
    case '%': lex_emit(l, PROMQL_TOK_MOD); return;
    case '+': lex_emit(l, PROMQL_TOK_ADD); return;
    case '-': lex_emit(l, PROMQL_TOK_SUB); return;
    case '^': lex_emit(l, PROMQL_TOK_POW); return;
    case '=': {
        int32_t t = lex_peek(l);
        if (t == '=') {
            lex_next(l);
            lex_emit(l, PROMQL_TOK_EQLC);
        } else if (t == '~') {
            lex_error_rune(l, "unexpected character after '=': ", t, "");
        } else {
            lex_emit(l, PROMQL_TOK_EQL);
        }
        return;
    }
    case '!': {
        int32_t t = lex_next(l);
        if (t != '=')
            lex_error_rune(l, "unexpected character after '!': ", t, "");
        else
            lex_emit(l, PROMQL_TOK_NEQ);
        return;
    }
    case '<':
        if (lex_peek(l) == '=') {
            lex_next(l);
            lex_emit(l, PROMQL_TOK_LTE);
        } else {
            lex_emit(l, PROMQL_TOK_LSS);
        }
        return;
    case '>':
        if (lex_peek(l) == '=') {
            lex_next(l);
            lex_emit(l, PROMQL_TOK_GTE);
        } else {
            lex_emit(l, PROMQL_TOK_GTR);
        }
        return;
    case '"':
    case '\'':
        l->string_open = r;
        lex_string(l);
        return;
    case '`':
        l->string_open = r;
        lex_raw_string(l);
        return;
    case '(':
        lex_emit(l, PROMQL_TOK_LEFT_PAREN);
        l->paren_depth++;
        return;
    case ')': lex_right_paren(l); return;
    case '{':
        lex_emit(l, PROMQL_TOK_LEFT_BRACE);
        l->brace_open = true;
        return;
    case '[':
        if (l->bracket_open) {
            lex_error(l, "unexpected left bracket '['");
            return;
        }
        l->got_colon = false;
        l->got_duration = false;
        lex_emit(l, PROMQL_TOK_LEFT_BRACKET);
        lex_skip_spaces(l);
        l->bracket_open = true;
        l->duration_mode = true;
        return;
    case ']':
        if (!l->bracket_open) {
            lex_error(l, "unexpected right bracket ']'");
            return;
        }
        lex_emit(l, PROMQL_TOK_RIGHT_BRACKET);
        l->bracket_open = false;
        return;
    case '@': lex_emit(l, PROMQL_TOK_AT); return;
    default: break;
    }
    if (is_space(r)) {
        lex_skip_spaces(l);
    } else if (is_digit(r) || (r == '.' && is_digit(lex_peek(l)))) {
        lex_backup(l);
        lex_number_or_duration(l);
    } else if (is_alpha(r) || r == ':') {
        if (!l->bracket_open) {
            lex_backup(l);
            lex_keyword_or_identifier(l);
        } else if (r == ':') {
            if (l->got_colon) {
                lex_error_rune(l, "unexpected colon ", r, "");
                return;
            }
            lex_emit(l, PROMQL_TOK_COLON);
            l->got_colon = true;
        } else if ((r == 's' || r == 'S' || r == 'm' || r == 'M') && lex_duration_keyword(l)) {
            return;
        } else {
            lex_error_rune(l, "unexpected character: ", r, ", expected ':'");
        }
    } else {
        lex_error_rune(l, "unexpected character: ", r, "");
    }
}

promql_token_t *promql_lex(const char *query, size_t len, size_t *count)
{
    lexer_t l;
    memset(&l, 0, sizeof(l));
    l.input = query;
    l.len = len;
    while (!l.done) {
        if (l.brace_open)
            lex_inside_braces(&l);
        else if (l.duration_mode)
            lex_duration_expr(&l);
        else
            lex_statements(&l);
    }
    *count = l.count;
    return l.tokens;
}

void promql_tokens_free(promql_token_t *tokens, size_t count)
{
    for (size_t i = 0; i < count; i++)
        cairn_free(tokens[i].message);
    cairn_free(tokens);
}

int promql_token_is_aggregator(promql_token_type_t type)
{
    return type >= PROMQL_TOK_SUM && type <= PROMQL_TOK_LIMIT_RATIO;
}

int promql_token_is_operator(promql_token_type_t type)
{
    return type >= PROMQL_TOK_ADD && type <= PROMQL_TOK_ATAN2;
}

int promql_token_is_keyword(promql_token_type_t type)
{
    return type >= PROMQL_TOK_BOOL && type <= PROMQL_TOK_WITHOUT;
}

void promql_token_describe(const char *query, const promql_token_t *tok, buf_t *out)
{
    const char *text = query + tok->start;
    size_t len = tok->end - tok->start;
    switch (tok->type) {
    case PROMQL_TOK_EOF: buf_append_str(out, "end of input"); return;
    case PROMQL_TOK_ERROR: buf_append_str(out, tok->message); return;
    case PROMQL_TOK_IDENTIFIER:
        buf_append_str(out, "identifier ");
        promql_quote_go(out, text, len);
        return;
    case PROMQL_TOK_METRIC_IDENTIFIER:
        buf_append_str(out, "metric identifier ");
        promql_quote_go(out, text, len);
        return;
    case PROMQL_TOK_NUMBER:
    case PROMQL_TOK_DURATION:
    case PROMQL_TOK_STRING: {
        buf_append_str(out, tok->type == PROMQL_TOK_NUMBER     ? "number "
                            : tok->type == PROMQL_TOK_DURATION ? "duration "
                                                               : "string ");
        if (len <= 10) {
            promql_quote_go(out, text, len);
            return;
        }
        /* Go's %.10q...: the first ten runes, quoted, then an ellipsis. */
        size_t cut = 0;
        for (int runes = 0; runes < 10 && cut < len; runes++) {
            size_t w;
            promql_utf8_decode(text + cut, len - cut, &w);
            cut += w;
        }
        promql_quote_go(out, text, cut);
        buf_append_str(out, "...");
        return;
    }
    default: break;
    }
    if (promql_token_is_operator(tok->type)) {
        buf_append_str(out, "<op:");
        buf_append(out, text, len);
        buf_append_char(out, '>');
    } else if (promql_token_is_aggregator(tok->type)) {
        buf_append_str(out, "<aggr:");
        buf_append(out, text, len);
        buf_append_char(out, '>');
    } else if (promql_token_is_keyword(tok->type)) {
        buf_append_char(out, '<');
        buf_append(out, text, len);
        buf_append_char(out, '>');
    } else {
        promql_quote_go(out, text, len);
    }
}
