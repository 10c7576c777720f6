/*
 * tests/promql/promqltest_script.c: reads promqltest files into commands (promqltest.h).
 *
 * Parsing is line-oriented as upstream's: every line is trimmed, a line starting with `#`
 * becomes blank, and a blank line ends the block of a load or an eval. Inside an eval block,
 * lines starting with `expect` are expectations, a line that is a bare number is a scalar
 * result (and ends the block, as upstream), anything else is an expected series. Queries are
 * not parsed here: a query Cairn cannot parse is a failed evaluation, not a broken file.
 *
 * Series values expand as upstream's series descriptions do, including `a+bxN` computed by
 * repeated addition (so the loaded floats are bit-identical to upstream's).
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tests/promql/promqltest.h"

/* Upper bound on the points of one series line, so that a typo like 0+1x100000000000 gives an
 * error instead of exhausting memory. */
#define MAX_SERIES_VALUES (10 * 1000 * 1000)

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static void append_utf8(buf_t *b, uint32_t cp)
{
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(b, out, n);
}

/* Reads a quoted string at *p ("...", '...' with Go's escapes, or `...` raw) and advances *p
 * past it. Returns the unquoted string (caller frees) or NULL with err set. */
static char *unquote(const char **p, cairn_error_t *err)
{
    const char *s = *p;
    char quote = *s++;
    if (quote != '"' && quote != '\'' && quote != '`') {
        cairn_error_set(err, -EINVAL, "expected a quoted string at \"%.20s\"", *p);
        return NULL;
    }
    buf_t b = BUF_INIT;
    buf_append(&b, "", 0);
    while (*s && *s != quote) {
        if (*s != '\\' || quote == '`') {
            buf_append_char(&b, *s++);
            continue;
        }
        s++;
        int digits = 0;
        switch (*s) {
        case 'a': buf_append_char(&b, '\a'); break;
        case 'b': buf_append_char(&b, '\b'); break;
        case 'f': buf_append_char(&b, '\f'); break;
        case 'n': buf_append_char(&b, '\n'); break;
        case 'r': buf_append_char(&b, '\r'); break;
        case 't': buf_append_char(&b, '\t'); break;
        case 'v': buf_append_char(&b, '\v'); break;
        case '\\': buf_append_char(&b, '\\'); break;
        case '"': buf_append_char(&b, '"'); break;
        case '\'': buf_append_char(&b, '\''); break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (*s >= '0' && *s <= '7' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' &&
                s[2] <= '7') {
                buf_append_char(&b, (char)((s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0')));
                s += 2;
                break;
            }
            cairn_error_set(err, -EINVAL, "unknown escape sequence \"\\%c\"", *s ? *s : ' ');
            buf_free(&b);
            return NULL;
        }
        if (digits) {
            uint32_t cp = 0;
            for (int i = 1; i <= digits; i++) {
                int d = hex_digit_value(s[i]);
                if (d < 0) {
                    cairn_error_set(err, -EINVAL, "bad \\%c escape sequence", *s);
                    buf_free(&b);
                    return NULL;
                }
                cp = cp * 16 + (uint32_t)d;
            }
            if (*s == 'x')
                buf_append_char(&b, (char)cp);
            else
                append_utf8(&b, cp);
            s += digits;
        }
        s++;
    }
    if (*s != quote) {
        cairn_error_set(err, -EINVAL, "unterminated quoted string");
        buf_free(&b);
        return NULL;
    }
    *p = s + 1;
    return buf_detach(&b);
}

/* Scans a number at s as series values and scalar lines write them: an optional sign, then
 * Inf, NaN (any case) or a decimal with optional fraction and exponent. Returns the length
 * consumed (0 if there is no number) and the value in *v. */
static size_t scan_number(const char *s, double *v)
{
    const char *p = s;
    bool negative = false;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';
    if (strncasecmp(p, "inf", 3) == 0) {
        p += strncasecmp(p, "infinity", 8) == 0 ? 8 : 3;
        *v = negative ? -INFINITY : INFINITY;
        return (size_t)(p - s);
    }
    if (strncasecmp(p, "nan", 3) == 0) {
        *v = NAN;
        return (size_t)(p + 3 - s);
    }
    const char *digits = p;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (p == digits || (p == digits + 1 && *digits == '.'))
        return 0;
    if (*p == 'e' || *p == 'E') {
        const char *e = p + 1;
        if (*e == '+' || *e == '-')
            e++;
        if (isdigit((unsigned char)*e)) {
            while (isdigit((unsigned char)*e))
                e++;
            p = e;
        }
    }
    char tmp[64];
    size_t n = (size_t)(p - s);
    if (n >= sizeof(tmp))
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *v = strtod(tmp, NULL);
    return n;
}

/* A whole line that is a number (as upstream's parseNumber: Go integers in any base, or
 * floats). */
static bool parse_number_line(const char *line, double *v)
{
    if (*line == '\0')
        return false;
    size_t n = scan_number(line, v);
    if (n > 0 && line[n] == '\0')
        return true;
    char *end;
    const char *p = line + (*line == '+' || *line == '-');
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X' || p[1] == 'o' || p[1] == 'b')) {
        long long i = strtoll(line, &end, 0);
        if (*end == '\0') {
            *v = (double)i;
            return true;
        }
    }
    return false;
}

/* Parses "xN" at *p (N >= 0 decimal) and advances. */
static bool scan_times(const char **p, uint64_t *n)
{
    const char *s = *p;
    if (*s != 'x' || !isdigit((unsigned char)s[1]))
        return false;
    s++;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        if (v > MAX_SERIES_VALUES)
            return false;
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    *p = s;
    *n = v;
    return true;
}

/* Prefixes err's message with "line N: ". Returns code. */
static int error_at_line(cairn_error_t *err, int code, size_t line)
{
    char message[CAIRN_ERROR_MAX];
    snprintf(message, sizeof(message), "%s", err->message);
    return cairn_error_set(err, code, "line %zu: %s", line, message);
}

static bool at_token_end(const char *p)
{
    return *p == '\0' || *p == ' ' || *p == '\t';
}

/* ---- time --------------------------------------------------------------------------------- */

int promqltest_time_parse(const char *s, int64_t *out_ms, cairn_error_t *err)
{
    char *end;
    if (*s && isdigit((unsigned char)*s)) {
        /* A plain number: seconds. */
        double secs = strtod(s, &end);
        if (*end == '\0') {
            if (secs > 9.2e15)
                return cairn_error_set(err, -EINVAL, "time %s out of range", s);
            *out_ms = (int64_t)llround(secs * 1000);
            return 0;
        }
    }
    cairn_error_t derr = {{0}};
    if (duration_parse(s, out_ms, &derr) != 0)
        return cairn_error_set(err, -EINVAL, "invalid time or duration \"%s\": %s", s,
                               derr.message);
    return 0;
}

/* ---- series lines ------------------------------------------------------------------------- */

void promqltest_series_free(promqltest_series_t *series)
{
    label_list_free(&series->labels);
    cairn_free(series->values);
    memset(series, 0, sizeof(*series));
}

static void series_push(promqltest_series_t *s, size_t *cap, promqltest_value_kind_t kind, double v)
{
    if (s->value_count == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        s->values = cairn_realloc(s->values, *cap * sizeof(*s->values));
    }
    s->values[s->value_count].kind = kind;
    s->values[s->value_count].v = v;
    s->value_count++;
    if (kind == PROMQLTEST_VALUE_HISTOGRAM)
        s->has_histogram = true;
}

/* Parses the label part of a series line: `name`, `name{...}` or `{...}`, where the braces
 * hold `label="value"` pairs, `"quoted name"="value"` or a lone `"metric name"`. */
static int parse_labels(const char **pp, label_list_t *out, cairn_error_t *err)
{
    const char *p = *pp;
    if (is_name_start(*p)) {
        const char *start = p;
        while (is_name_char(*p))
            p++;
        char *name = cairn_strndup(start, (size_t)(p - start));
        label_list_add(out, "__name__", name);
        cairn_free(name);
    }
    if (*p == '{') {
        p = skip_space(p + 1);
        while (*p != '}') {
            char *name = NULL;
            if (*p == '"' || *p == '\'' || *p == '`') {
                name = unquote(&p, err);
                if (!name)
                    return -EINVAL;
            } else if (is_name_start(*p)) {
                const char *start = p;
                while (is_name_char(*p))
                    p++;
                name = cairn_strndup(start, (size_t)(p - start));
            } else {
                return cairn_error_set(err, -EINVAL, "unexpected \"%.20s\" in label set", p);
            }
            p = skip_space(p);
            if (*p == '=') {
                p = skip_space(p + 1);
                char *value = unquote(&p, err);
                if (!value) {
                    cairn_free(name);
                    return -EINVAL;
                }
                label_list_add(out, name, value);
                cairn_free(value);
            } else if (*p == ',' || *p == '}') {
                /* A lone quoted string is the metric name. */
                label_list_add(out, "__name__", name);
            } else {
                cairn_free(name);
                return cairn_error_set(err, -EINVAL, "expected '=' after label name at \"%.20s\"",
                                       p);
            }
            cairn_free(name);
            p = skip_space(p);
            if (*p == ',')
                p = skip_space(p + 1);
            else if (*p != '}')
                return cairn_error_set(err, -EINVAL, "expected ',' or '}' at \"%.20s\"", p);
        }
        p++;
    }
    if (out->count == 0 && p == *pp)
        return cairn_error_set(err, -EINVAL, "expected a metric name or a label set at \"%.20s\"",
                               p);
    /* Empty values mean "no such label", as in Prometheus. */
    size_t kept = 0;
    for (size_t i = 0; i < out->count; i++) {
        if (out->items[i].value[0] == '\0') {
            cairn_free(out->items[i].name);
            cairn_free(out->items[i].value);
        } else {
            out->items[kept++] = out->items[i];
        }
    }
    out->count = kept;
    const char *dup = label_list_sort(out);
    if (dup)
        return cairn_error_set(err, -EINVAL, "duplicate label name \"%s\"", dup);
    *pp = p;
    return 0;
}

/* Skips a `{{...}}` native histogram at *p. */
static bool skip_histogram(const char **p)
{
    if (!starts_with(*p, "{{"))
        return false;
    const char *end = strstr(*p + 2, "}}");
    if (!end)
        return false;
    *p = end + 2;
    return true;
}

static int parse_values(const char *p, promqltest_series_t *s, cairn_error_t *err)
{
    size_t cap = 0;
    for (;;) {
        p = skip_space(p);
        if (*p == '\0')
            return 0;
        const char *token = p;
        uint64_t n = 0;
        if (starts_with(p, "{{")) {
            if (!skip_histogram(&p))
                return cairn_error_set(err, -EINVAL, "unterminated native histogram \"%.30s\"",
                                       token);
            n = 0;
            if ((*p == '+' || *p == '-') && p[1] == '{') {
                p++;
                if (!skip_histogram(&p) || !scan_times(&p, &n))
                    return cairn_error_set(err, -EINVAL, "bad native histogram series \"%.30s\"",
                                           token);
            } else if (*p == 'x' && !scan_times(&p, &n)) {
                return cairn_error_set(err, -EINVAL, "bad repetition in \"%.30s\"", token);
            }
            if (!at_token_end(p))
                return cairn_error_set(err, -EINVAL, "unexpected \"%.20s\" after histogram", p);
            if (s->value_count + n + 1 > MAX_SERIES_VALUES)
                return cairn_error_set(err, -EINVAL, "too many values in one series");
            for (uint64_t i = 0; i <= n; i++)
                series_push(s, &cap, PROMQLTEST_VALUE_HISTOGRAM, 0);
            continue;
        }
        if (*p == '_') {
            p++;
            n = 1;
            if (*p == 'x' && !scan_times(&p, &n))
                return cairn_error_set(err, -EINVAL, "bad repetition in \"%.20s\"", token);
            if (!at_token_end(p))
                return cairn_error_set(err, -EINVAL, "unexpected \"%.20s\" in values", token);
            if (s->value_count + n > MAX_SERIES_VALUES)
                return cairn_error_set(err, -EINVAL, "too many values in one series");
            for (uint64_t i = 0; i < n; i++)
                series_push(s, &cap, PROMQLTEST_VALUE_OMITTED, 0);
            continue;
        }
        if (starts_with(p, "stale") && at_token_end(p + 5)) {
            uint64_t bits = PROMQLTEST_STALE_NAN_BITS;
            double stale;
            memcpy(&stale, &bits, sizeof(stale));
            series_push(s, &cap, PROMQLTEST_VALUE_FLOAT, stale);
            p += 5;
            continue;
        }
        double base, step = 0;
        size_t len = scan_number(p, &base);
        if (len == 0)
            return cairn_error_set(err, -EINVAL,
                                   "unexpected \"%.20s\" in series values: expected a number, "
                                   "\"_\" or \"stale\"",
                                   token);
        p += len;
        if (*p == '+' || *p == '-') {
            bool negative = *p == '-';
            len = scan_number(p + 1, &step);
            if (len == 0 || p[1] == '+' || p[1] == '-')
                return cairn_error_set(err, -EINVAL, "bad step in \"%.20s\"", token);
            p += 1 + len;
            if (negative)
                step = -step;
            if (!scan_times(&p, &n))
                return cairn_error_set(err, -EINVAL, "expected xN after the step in \"%.20s\"",
                                       token);
        } else if (*p == 'x') {
            if (!scan_times(&p, &n))
                return cairn_error_set(err, -EINVAL, "bad repetition in \"%.20s\"", token);
        }
        if (!at_token_end(p))
            return cairn_error_set(err, -EINVAL, "unexpected \"%.20s\" in series values", token);
        if (s->value_count + n + 1 > MAX_SERIES_VALUES)
            return cairn_error_set(err, -EINVAL, "too many values in one series");
        double v = base;
        for (uint64_t i = 0; i <= n; i++) {
            series_push(s, &cap, PROMQLTEST_VALUE_FLOAT, v);
            v += step;
        }
    }
}

int promqltest_series_parse(const char *line, promqltest_series_t *out, cairn_error_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *p = skip_space(line);
    int rc = parse_labels(&p, &out->labels, err);
    if (rc == 0) {
        if (!at_token_end(p))
            rc = cairn_error_set(err, -EINVAL, "expected a space after the labels at \"%.20s\"", p);
        else
            rc = parse_values(p, out, err);
    }
    if (rc != 0)
        promqltest_series_free(out);
    return rc;
}

/* ---- expectations ------------------------------------------------------------------------- */

static void expect_free(promqltest_expect_t *e)
{
    cairn_free(e->text);
    if (e->regex)
        pcre2_code_free(e->regex);
}

static void expects_free(promqltest_expects_t *list)
{
    for (size_t i = 0; i < list->count; i++)
        expect_free(&list->items[i]);
    cairn_free(list->items);
    memset(list, 0, sizeof(*list));
}

bool promqltest_expect_matches(const promqltest_expect_t *e, const char *text)
{
    if (!e->text)
        return true;
    if (!e->regex)
        return strcmp(e->text, text) == 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(e->regex, NULL);
    int rc = pcre2_match(e->regex, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* Parses the part after `expect <kind>`: nothing, or `msg: text` / `regex: pattern`. */
static int parse_expect_match(const char *p, promqltest_expect_t *out, cairn_error_t *err)
{
    memset(out, 0, sizeof(*out));
    p = skip_space(p);
    if (*p == '\0')
        return 0;
    bool regex;
    if (starts_with(p, "msg:"))
        regex = false, p += 4;
    else if (starts_with(p, "regex:"))
        regex = true, p += 6;
    else
        return cairn_error_set(err, -EINVAL, "expected msg: or regex: at \"%.20s\"", p);
    p = skip_space(p);
    if (*p == '\0')
        return cairn_error_set(err, -EINVAL, "empty %s", regex ? "regex" : "msg");
    out->text = cairn_strdup(p);
    if (regex) {
        int code;
        PCRE2_SIZE offset;
        out->regex =
            pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &offset, NULL);
        if (!out->regex) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(code, msg, sizeof(msg));
            cairn_free(out->text);
            out->text = NULL;
            return cairn_error_set(err, -EINVAL, "invalid regex \"%s\": %s", p, (char *)msg);
        }
    }
    return 0;
}

static void expects_add(promqltest_expects_t *list, promqltest_expect_t e)
{
    list->items = cairn_realloc(list->items, (list->count + 1) * sizeof(*list->items));
    list->items[list->count++] = e;
}

/* An `expect ...` line (other than range vector and string). */
static int parse_expect_line(const char *line, promqltest_eval_t *ev, cairn_error_t *err)
{
    const char *p = skip_space(line + strlen("expect"));
    const char *kind = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    size_t kind_len = (size_t)(p - kind);
#define KIND_IS(s) (kind_len == strlen(s) && strncmp(kind, s, kind_len) == 0)
    promqltest_expect_t e;
    int rc = parse_expect_match(p, &e, err);
    if (rc != 0)
        return rc;
    if (KIND_IS("fail")) {
        if (ev->fail_match.count > 0) {
            expect_free(&e);
            return cairn_error_set(err, -EINVAL, "multiple expect fail lines are not allowed");
        }
        ev->fail = true;
        expects_add(&ev->fail_match, e);
        return 0;
    }
    if (KIND_IS("warn")) {
        expects_add(&ev->warns, e);
    } else if (KIND_IS("info")) {
        expects_add(&ev->infos, e);
    } else {
        expect_free(&e);
        if (KIND_IS("ordered"))
            ev->ordered = true;
        else if (KIND_IS("no_warn"))
            ev->no_warn = true;
        else if (KIND_IS("no_info"))
            ev->no_info = true;
        else
            return cairn_error_set(err, -EINVAL, "invalid expect type \"%.*s\"", (int)kind_len,
                                   kind);
    }
#undef KIND_IS
    if (ev->warns.count > 0 && ev->no_warn)
        return cairn_error_set(err, -EINVAL, "warn and no_warn cannot be used together");
    if (ev->infos.count > 0 && ev->no_info)
        return cairn_error_set(err, -EINVAL, "info and no_info cannot be used together");
    return 0;
}

/* `expect range vector from <t> to <t> step <d>` */
static int parse_range_vector(const char *line, promqltest_eval_t *ev, cairn_error_t *err)
{
    char from[64], to[64], step[64];
    char tail;
    if (sscanf(line, "expect range vector from %63s to %63s step %63s %c", from, to, step, &tail) !=
        3)
        return cairn_error_set(err, -EINVAL, "invalid range vector definition \"%s\"", line);
    int rc = promqltest_time_parse(from, &ev->rv_start_ms, err);
    if (rc == 0)
        rc = promqltest_time_parse(to, &ev->rv_end_ms, err);
    if (rc == 0)
        rc = promqltest_time_parse(step, &ev->rv_step_ms, err);
    if (rc != 0)
        return rc;
    if (ev->rv_end_ms < ev->rv_start_ms)
        return cairn_error_set(err, -EINVAL, "end time %s is before start time %s", to, from);
    if (ev->rv_step_ms <= 0)
        return cairn_error_set(err, -EINVAL, "step must be positive");
    ev->range_vector = true;
    return 0;
}

/* `expect string "..."` */
static int parse_expect_string(const char *line, promqltest_eval_t *ev, cairn_error_t *err)
{
    const char *p = skip_space(line + strlen("expect string"));
    if (*p == '\0')
        return cairn_error_set(err, -EINVAL, "expect string needs a quoted string literal");
    char *s = unquote(&p, err);
    if (!s)
        return -EINVAL;
    if (*skip_space(p) != '\0') {
        cairn_free(s);
        return cairn_error_set(err, -EINVAL, "unexpected text after the expected string");
    }
    cairn_free(ev->string);
    ev->string = s;
    ev->expect_string = true;
    return 0;
}

/* ---- commands ----------------------------------------------------------------------------- */

static void eval_free(promqltest_eval_t *ev)
{
    cairn_free(ev->query);
    cairn_free(ev->string);
    expects_free(&ev->fail_match);
    expects_free(&ev->warns);
    expects_free(&ev->infos);
    for (size_t i = 0; i < ev->series_count; i++)
        promqltest_series_free(&ev->series[i]);
    cairn_free(ev->series);
}

static void command_free(promqltest_command_t *cmd)
{
    if (cmd->kind == PROMQLTEST_LOAD) {
        for (size_t i = 0; i < cmd->load.series_count; i++)
            promqltest_series_free(&cmd->load.series[i]);
        cairn_free(cmd->load.series);
    } else if (cmd->kind == PROMQLTEST_EVAL) {
        eval_free(&cmd->eval);
    }
}

void promqltest_script_free(promqltest_script_t *script)
{
    for (size_t i = 0; i < script->count; i++)
        command_free(&script->commands[i]);
    cairn_free(script->commands);
    memset(script, 0, sizeof(*script));
}

static bool labels_equal(const label_list_t *a, const label_list_t *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i].name, b->items[i].name) != 0 ||
            strcmp(a->items[i].value, b->items[i].value) != 0)
            return false;
    return true;
}

typedef struct line_reader {
    char **lines; /* trimmed, comments blanked; owned */
    size_t count;
} line_reader_t;

static void lines_split(const char *text, line_reader_t *r)
{
    size_t cap = 0;
    const char *p = text;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *s = p, *e = p + len;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (r->count == cap) {
            cap = cap ? cap * 2 : 256;
            r->lines = cairn_realloc(r->lines, cap * sizeof(*r->lines));
        }
        r->lines[r->count++] =
            (s < e && *s == '#') ? cairn_strdup("") : cairn_strndup(s, (size_t)(e - s));
        if (!nl)
            break;
        p = nl + 1;
    }
}

static void lines_free(line_reader_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        cairn_free(r->lines[i]);
    cairn_free(r->lines);
}

/* Splits the first n whitespace-separated words off line; returns a pointer to the rest
 * (trimmed), or NULL when there are fewer words. */
static const char *split_words(const char *line, char words[][64], size_t n)
{
    const char *p = line;
    for (size_t i = 0; i < n; i++) {
        p = skip_space(p);
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - s);
        if (len == 0 || len >= 64)
            return NULL;
        memcpy(words[i], s, len);
        words[i][len] = '\0';
    }
    return skip_space(p);
}

static int parse_load(line_reader_t *r, size_t *i, promqltest_command_t *cmd, cairn_error_t *err)
{
    char words[2][64];
    const char *rest = split_words(r->lines[*i], words, 2);
    if (!rest || *rest != '\0')
        return cairn_error_set(err, -EINVAL, "invalid load command (load <interval>)");
    cmd->kind = PROMQLTEST_LOAD;
    cmd->load.with_nhcb = strcmp(words[0], "load_with_nhcb") == 0;
    if (!cmd->load.with_nhcb && strcmp(words[0], "load") != 0)
        return cairn_error_set(err, -EINVAL, "invalid command \"%s\"", words[0]);
    int rc = promqltest_time_parse(words[1], &cmd->load.interval_ms, err);
    if (rc != 0)
        return rc;
    size_t cap = 0;
    while (*i + 1 < r->count && r->lines[*i + 1][0] != '\0') {
        (*i)++;
        promqltest_series_t s;
        rc = promqltest_series_parse(r->lines[*i], &s, err);
        if (rc != 0)
            return error_at_line(err, rc, *i + 1);
        s.line = (unsigned)(*i + 1);
        /* As upstream, a label set given twice in one load keeps the last definition. */
        bool replaced = false;
        for (size_t j = 0; j < cmd->load.series_count && !replaced; j++) {
            if (labels_equal(&cmd->load.series[j].labels, &s.labels)) {
                promqltest_series_free(&cmd->load.series[j]);
                cmd->load.series[j] = s;
                replaced = true;
            }
        }
        if (replaced)
            continue;
        if (cmd->load.series_count == cap) {
            cap = cap ? cap * 2 : 16;
            cmd->load.series = cairn_realloc(cmd->load.series, cap * sizeof(*cmd->load.series));
        }
        cmd->load.series[cmd->load.series_count++] = s;
    }
    return 0;
}

static int parse_eval_header(const char *line, promqltest_eval_t *ev, cairn_error_t *err)
{
    char words[8][64];
    const char *rest = split_words(line, words, 2);
    if (!rest)
        return cairn_error_set(err, -EINVAL, "invalid eval command");
    const char *variant = words[0] + strlen("eval");
    if (*variant == '_')
        variant++;
    else if (*variant != '\0')
        return cairn_error_set(err, -EINVAL, "invalid command \"%s\"", words[0]);
    if (strcmp(words[1], "instant") == 0) {
        rest = split_words(line, words, 4);
        if (!rest || strcmp(words[2], "at") != 0 || *rest == '\0')
            return cairn_error_set(err, -EINVAL,
                                   "invalid eval command: eval instant at <time> <query>");
        int rc = promqltest_time_parse(words[3], &ev->start_ms, err);
        if (rc != 0)
            return rc;
        ev->end_ms = ev->start_ms;
    } else if (strcmp(words[1], "range") == 0) {
        rest = split_words(line, words, 8);
        if (!rest || strcmp(words[2], "from") != 0 || strcmp(words[4], "to") != 0 ||
            strcmp(words[6], "step") != 0 || *rest == '\0')
            return cairn_error_set(err, -EINVAL,
                                   "invalid eval command: eval range from <start> "
                                   "to <end> step <step> <query>");
        int rc = promqltest_time_parse(words[3], &ev->start_ms, err);
        if (rc == 0)
            rc = promqltest_time_parse(words[5], &ev->end_ms, err);
        if (rc == 0)
            rc = promqltest_time_parse(words[7], &ev->step_ms, err);
        if (rc != 0)
            return rc;
        if (ev->end_ms < ev->start_ms)
            return cairn_error_set(err, -EINVAL, "end time %s is before start time %s", words[5],
                                   words[3]);
        if (ev->step_ms <= 0)
            return cairn_error_set(err, -EINVAL, "step must be positive");
        ev->range = true;
    } else {
        return cairn_error_set(err, -EINVAL, "eval must be followed by instant or range");
    }
    if (strcmp(variant, "fail") == 0)
        ev->fail = true;
    else if (strcmp(variant, "warn") == 0)
        ev->require_warn = true;
    else if (strcmp(variant, "info") == 0)
        ev->require_info = true;
    else if (strcmp(variant, "ordered") == 0 && !ev->range)
        ev->ordered = true;
    else if (*variant != '\0')
        return cairn_error_set(err, -EINVAL, "invalid command \"%s\"", words[0]);
    ev->query = cairn_strdup(rest);
    return 0;
}

static int parse_eval(line_reader_t *r, size_t *i, promqltest_command_t *cmd, cairn_error_t *err)
{
    cmd->kind = PROMQLTEST_EVAL;
    promqltest_eval_t *ev = &cmd->eval;
    int rc = parse_eval_header(r->lines[*i], ev, err);
    if (rc != 0)
        return rc;
    size_t cap = 0;
    while (*i + 1 < r->count && r->lines[*i + 1][0] != '\0') {
        (*i)++;
        const char *line = r->lines[*i];
        if (ev->fail && (starts_with(line, "expected_fail_message") ||
                         starts_with(line, "expected_fail_regexp"))) {
            /* The older form of expect fail msg: / regex:. */
            bool regex = starts_with(line, "expected_fail_regexp");
            char *spec = cairn_sprintf("%s: %s", regex ? "regex" : "msg",
                                       skip_space(line + strlen(regex ? "expected_fail_regexp"
                                                                      : "expected_fail_message")));
            promqltest_expect_t e;
            rc = parse_expect_match(spec, &e, err);
            cairn_free(spec);
            if (rc == 0)
                expects_add(&ev->fail_match, e);
            break;
        }
        if (starts_with(line, "expect range vector")) {
            rc = parse_range_vector(line, ev, err);
        } else if (starts_with(line, "expect string")) {
            rc = parse_expect_string(line, ev, err);
        } else if (starts_with(line, "expect") && (line[6] == ' ' || line[6] == '\t')) {
            rc = parse_expect_line(line, ev, err);
        } else if (parse_number_line(line, &ev->scalar)) {
            ev->expect_scalar = true;
            break;
        } else {
            promqltest_series_t s;
            rc = promqltest_series_parse(line, &s, err);
            if (rc == 0) {
                s.line = (unsigned)(*i + 1);
                if (s.has_histogram)
                    ev->has_histogram = true;
                if (s.value_count > 1 && !ev->range && !ev->range_vector) {
                    promqltest_series_free(&s);
                    rc = cairn_error_set(err, -EINVAL,
                                         "several values for an instant evaluation (use expect "
                                         "range vector for a range vector result)");
                } else {
                    if (ev->series_count == cap) {
                        cap = cap ? cap * 2 : 8;
                        ev->series = cairn_realloc(ev->series, cap * sizeof(*ev->series));
                    }
                    ev->series[ev->series_count++] = s;
                }
            }
        }
        if (rc != 0)
            break;
    }
    if (rc != 0)
        return error_at_line(err, rc, *i + 1);
    if (ev->expect_scalar && ev->series_count > 0)
        return cairn_error_set(err, -EINVAL, "line %zu: a scalar and series expected together",
                               *i + 1);
    return 0;
}

int promqltest_script_parse(const char *text, promqltest_script_t *out, cairn_error_t *err)
{
    memset(out, 0, sizeof(*out));
    line_reader_t r = {0};
    lines_split(text, &r);
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < r.count && rc == 0; i++) {
        const char *line = r.lines[i];
        if (line[0] == '\0')
            continue;
        if (out->count == cap) {
            cap = cap ? cap * 2 : 64;
            out->commands = cairn_realloc(out->commands, cap * sizeof(*out->commands));
        }
        promqltest_command_t *cmd = &out->commands[out->count];
        memset(cmd, 0, sizeof(*cmd));
        cmd->line = (unsigned)(i + 1);
        cmd->kind = PROMQLTEST_CLEAR;
        out->count++;
        char word[64];
        if (!split_words(line, &word, 1))
            word[0] = '\0';
        for (char *c = word; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        size_t header = i;
        if (strcmp(word, "clear") == 0) {
            if (strcmp(line, "clear") != 0)
                rc = cairn_error_set(err, -EINVAL, "unexpected text after clear");
        } else if (starts_with(word, "load")) {
            rc = parse_load(&r, &i, cmd, err);
        } else if (starts_with(word, "eval")) {
            rc = parse_eval(&r, &i, cmd, err);
        } else {
            rc = cairn_error_set(err, -EINVAL, "invalid command \"%.40s\"", line);
        }
        if (rc != 0 && !starts_with(err->message, "line "))
            error_at_line(err, rc, header + 1);
    }
    lines_free(&r);
    if (rc != 0)
        promqltest_script_free(out);
    return rc;
}
