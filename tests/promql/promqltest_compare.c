/*
 * tests/promql/promqltest_compare.c: judges a query result against an eval's expectations and
 * renders both readably (promqltest.h).
 *
 * The checks run in upstream's order: the error (expected or not), then annotations, then the
 * value by result type. Series are matched by their exact label sets, compared through a
 * canonical key (labels sorted by name, joined with bytes that cannot occur in UTF-8 text), so
 * a result whose labels arrive unsorted still matches. All mismatches of a result are listed,
 * not just the first, so one failure report shows the whole difference.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/promql/promqltest.h"

/* Results longer than this are cut short when printed. */
#define FORMAT_MAX_SERIES 40
#define FORMAT_MAX_POINTS 40
/* Mismatch lines listed per failure. */
#define MAX_PROBLEMS 20

/* ---- floats ------------------------------------------------------------------------------- */

bool promqltest_float_equal(double a, double b)
{
    /* The smallest positive normal double. */
    const double min_normal = 2.2250738585072014e-308;
    if (isnan(a) && isnan(b))
        return true;
    if (a == b)
        return true;
    double abs_sum = fabs(a) + fabs(b);
    double diff = fabs(a - b);
    if (a == 0 || b == 0 || abs_sum < min_normal)
        return diff < PROMQLTEST_EPSILON * min_normal;
    return diff / fmin(abs_sum, 1.7976931348623157e308) < PROMQLTEST_EPSILON;
}

static bool is_stale(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits == PROMQLTEST_STALE_NAN_BITS;
}

void promqltest_float_format(buf_t *out, double v)
{
    if (is_stale(v)) {
        buf_append_str(out, "stale");
        return;
    }
    char tmp[40];
    size_t n = float_format_go(v, 'g', tmp, sizeof(tmp));
    buf_append(out, tmp, n);
}

/* Milliseconds as a short duration ("90s", "1m30s", "10s53ms"). */
static void time_format(buf_t *out, int64_t ms)
{
    char tmp[40];
    if (ms < 0) {
        buf_append_char(out, '-');
        ms = -ms;
    }
    buf_append_str(out, duration_format(ms, tmp, sizeof(tmp)));
}

/* The names query.h gives the types, kept here so that this file needs no engine code. */
static const char *value_type_name(promql_value_type_t type)
{
    switch (type) {
    case PROMQL_VALUE_SCALAR: return "scalar";
    case PROMQL_VALUE_VECTOR: return "vector";
    case PROMQL_VALUE_MATRIX: return "matrix";
    case PROMQL_VALUE_STRING: return "string";
    default: return "none";
    }
}

static const char *error_type_name(promql_error_type_t type)
{
    switch (type) {
    case PROMQL_ERROR_BAD_DATA: return "bad_data";
    case PROMQL_ERROR_EXECUTION: return "execution";
    case PROMQL_ERROR_CANCELED: return "canceled";
    case PROMQL_ERROR_TIMEOUT: return "timeout";
    case PROMQL_ERROR_INTERNAL: return "internal";
    default: return "none";
    }
}

/* ---- labels ------------------------------------------------------------------------------- */

static int compare_pairs_by_name(const void *a, const void *b)
{
    return strcmp((*(const label_pair_t *const *)a)->name, (*(const label_pair_t *const *)b)->name);
}

/* Pointers to the pairs, sorted by name (caller frees the array). */
static const label_pair_t **labels_sorted(const label_pair_t *labels, size_t count)
{
    const label_pair_t **sorted = cairn_calloc(count ? count : 1, sizeof(*sorted));
    for (size_t i = 0; i < count; i++)
        sorted[i] = &labels[i];
    qsort(sorted, count, sizeof(*sorted), compare_pairs_by_name);
    return sorted;
}

/* A canonical key of a label set: names and values in name order, separated by 0xFF/0xFE. */
static char *labels_key(const label_pair_t *labels, size_t count)
{
    const label_pair_t **sorted = labels_sorted(labels, count);
    buf_t b = BUF_INIT;
    buf_append(&b, "", 0);
    for (size_t i = 0; i < count; i++) {
        buf_append_str(&b, sorted[i]->name);
        buf_append_char(&b, '\xff');
        buf_append_str(&b, sorted[i]->value);
        buf_append_char(&b, '\xfe');
    }
    cairn_free(sorted);
    return buf_detach(&b);
}

/* Prometheus's labels.Compare on label sets sorted by name. */
static int labels_compare(const label_pair_t *a, size_t an, const label_pair_t *b, size_t bn)
{
    const label_pair_t **sa = labels_sorted(a, an), **sb = labels_sorted(b, bn);
    int c = 0;
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n && c == 0; i++) {
        c = strcmp(sa[i]->name, sb[i]->name);
        if (c == 0)
            c = strcmp(sa[i]->value, sb[i]->value);
    }
    if (c == 0)
        c = an < bn ? -1 : an > bn ? 1 : 0;
    cairn_free(sa);
    cairn_free(sb);
    return c;
}

void promqltest_labels_format(buf_t *out, const label_pair_t *labels, size_t count)
{
    const label_pair_t **sorted = labels_sorted(labels, count);
    bool first = true;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(sorted[i]->name, "__name__") == 0) {
            buf_append_str(out, sorted[i]->value);
            break;
        }
    }
    buf_append_char(out, '{');
    for (size_t i = 0; i < count; i++) {
        if (strcmp(sorted[i]->name, "__name__") == 0)
            continue;
        if (!first)
            buf_append_str(out, ", ");
        first = false;
        buf_append_str(out, sorted[i]->name);
        buf_append_str(out, "=\"");
        buf_append_label_value(out, sorted[i]->value);
        buf_append_char(out, '"');
    }
    buf_append_char(out, '}');
    cairn_free(sorted);
}

/* ---- rendering ---------------------------------------------------------------------------- */

static void points_format(buf_t *out, const promql_point_t *points, size_t count, bool with_time)
{
    for (size_t i = 0; i < count && i < FORMAT_MAX_POINTS; i++) {
        buf_append_char(out, ' ');
        promqltest_float_format(out, points[i].v);
        if (with_time) {
            buf_append_char(out, '@');
            time_format(out, points[i].t);
        }
    }
    if (count > FORMAT_MAX_POINTS)
        buf_printf(out, " ... (%zu points)", count);
}

void promqltest_result_format(buf_t *out, const promql_result_t *r, const char *indent)
{
    if (r->error_type != PROMQL_ERROR_NONE || r->error) {
        buf_printf(out, "%serror (%s): %s\n", indent, error_type_name(r->error_type),
                   r->error ? r->error : "(no message)");
        return;
    }
    switch (r->type) {
    case PROMQL_VALUE_SCALAR:
        buf_printf(out, "%sscalar ", indent);
        promqltest_float_format(out, r->scalar);
        buf_append_char(out, '\n');
        break;
    case PROMQL_VALUE_STRING:
        buf_printf(out, "%sstring ", indent);
        buf_append_json_string(out, r->string ? r->string : "");
        buf_append_char(out, '\n');
        break;
    case PROMQL_VALUE_VECTOR:
    case PROMQL_VALUE_MATRIX:
        buf_printf(out, "%s%s of %zu series%s\n", indent,
                   r->type == PROMQL_VALUE_VECTOR ? "vector" : "matrix", r->series_count,
                   r->series_count ? ":" : "");
        for (size_t i = 0; i < r->series_count && i < FORMAT_MAX_SERIES; i++) {
            const promql_series_t *s = &r->series[i];
            buf_printf(out, "%s  ", indent);
            promqltest_labels_format(out, s->labels, s->label_count);
            points_format(out, s->points, s->point_count, r->type == PROMQL_VALUE_MATRIX);
            buf_append_char(out, '\n');
        }
        if (r->series_count > FORMAT_MAX_SERIES)
            buf_printf(out, "%s  ...\n", indent);
        break;
    default: buf_printf(out, "%sno value\n", indent); break;
    }
    for (size_t i = 0; i < r->warning_count; i++)
        buf_printf(out, "%swarning: %s\n", indent, r->warnings[i]);
    for (size_t i = 0; i < r->info_count; i++)
        buf_printf(out, "%sinfo: %s\n", indent, r->infos[i]);
}

/* Where the expected points of a matrix result lie. */
static void expected_range(const promqltest_eval_t *ev, int64_t eval_time, int64_t *start,
                           int64_t *end, int64_t *step)
{
    if (ev->range) {
        *start = ev->start_ms, *end = ev->end_ms, *step = ev->step_ms;
    } else if (ev->range_vector) {
        *start = ev->rv_start_ms, *end = ev->rv_end_ms, *step = ev->rv_step_ms;
    } else {
        *start = *end = eval_time, *step = 0;
    }
}

static void expect_format(buf_t *out, const char *kind, const promqltest_expect_t *e)
{
    buf_printf(out, "%s", kind);
    if (e->text)
        buf_printf(out, " %s: %s", e->regex ? "regex" : "msg", e->text);
}

static void expected_format_at(buf_t *out, const promqltest_eval_t *ev, int64_t eval_time,
                               const char *indent)
{
    if (ev->fail) {
        buf_printf(out, "%s", indent);
        if (ev->fail_match.count > 0)
            expect_format(out, "an error matching", &ev->fail_match.items[0]);
        else
            buf_append_str(out, "an error");
        buf_append_char(out, '\n');
        return;
    }
    if (ev->expect_string) {
        buf_printf(out, "%sstring ", indent);
        buf_append_json_string(out, ev->string);
        buf_append_char(out, '\n');
    } else if (ev->expect_scalar) {
        buf_printf(out, "%sscalar ", indent);
        promqltest_float_format(out, ev->scalar);
        buf_append_char(out, '\n');
    } else {
        bool matrix = ev->range || ev->range_vector;
        int64_t start, end, step;
        expected_range(ev, eval_time, &start, &end, &step);
        buf_printf(out, "%s%s of %zu series%s\n", indent, matrix ? "matrix" : "vector",
                   ev->series_count, ev->series_count ? ":" : "");
        for (size_t i = 0; i < ev->series_count && i < FORMAT_MAX_SERIES; i++) {
            const promqltest_series_t *s = &ev->series[i];
            buf_printf(out, "%s  ", indent);
            promqltest_labels_format(out, s->labels.items, s->labels.count);
            size_t shown = 0;
            for (size_t k = 0; k < s->value_count && shown < FORMAT_MAX_POINTS; k++) {
                if (s->values[k].kind == PROMQLTEST_VALUE_OMITTED)
                    continue;
                buf_append_char(out, ' ');
                if (s->values[k].kind == PROMQLTEST_VALUE_HISTOGRAM)
                    buf_append_str(out, "{{histogram}}");
                else
                    promqltest_float_format(out, s->values[k].v);
                if (matrix) {
                    buf_append_char(out, '@');
                    time_format(out, start + (int64_t)k * step);
                }
                shown++;
            }
            if (shown == FORMAT_MAX_POINTS)
                buf_append_str(out, " ...");
            buf_append_char(out, '\n');
        }
        if (ev->series_count > FORMAT_MAX_SERIES)
            buf_printf(out, "%s  ...\n", indent);
    }
    for (size_t i = 0; i < ev->warns.count; i++) {
        buf_printf(out, "%s", indent);
        expect_format(out, "warning", &ev->warns.items[i]);
        buf_append_char(out, '\n');
    }
    for (size_t i = 0; i < ev->infos.count; i++) {
        buf_printf(out, "%s", indent);
        expect_format(out, "info", &ev->infos.items[i]);
        buf_append_char(out, '\n');
    }
    if (ev->no_warn)
        buf_printf(out, "%sno warnings\n", indent);
    if (ev->no_info)
        buf_printf(out, "%sno infos\n", indent);
}

void promqltest_expected_format(buf_t *out, const promqltest_eval_t *ev, const char *indent)
{
    expected_format_at(out, ev, ev->start_ms, indent);
}

/* ---- checking ----------------------------------------------------------------------------- */

/* Collects the reasons a result fails. */
typedef struct problems {
    buf_t text;
    size_t count;
} problems_t;

static void problem(problems_t *p, const char *fmt, ...) CAIRN_PRINTF(2, 3);

static void problem(problems_t *p, const char *fmt, ...)
{
    p->count++;
    if (p->count > MAX_PROBLEMS) {
        if (p->count == MAX_PROBLEMS + 1)
            buf_append_str(&p->text, "    - ... (more differences)\n");
        return;
    }
    buf_append_str(&p->text, "    - ");
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&p->text, fmt, ap);
    va_end(ap);
    buf_append_char(&p->text, '\n');
}

static char *labels_string(const label_pair_t *labels, size_t count)
{
    buf_t b = BUF_INIT;
    promqltest_labels_format(&b, labels, count);
    return buf_detach(&b);
}

static char *float_string(double v)
{
    buf_t b = BUF_INIT;
    promqltest_float_format(&b, v);
    return buf_detach(&b);
}

/* The annotations of one kind against the expectations of that kind. */
static void check_annotations(problems_t *p, const char *kind, char **actual, size_t count,
                              const promqltest_expects_t *expected, bool none, bool at_least_one)
{
    if (at_least_one && count == 0)
        problem(p, "expected %s annotations, got none", kind);
    if (none && count > 0)
        problem(p, "expected no %s annotations, got %zu (first: %s)", kind, count, actual[0]);
    if (expected->count == 0)
        return;
    for (size_t i = 0; i < expected->count; i++) {
        const promqltest_expect_t *e = &expected->items[i];
        bool found = false;
        for (size_t j = 0; j < count && !found; j++)
            found = promqltest_expect_matches(e, actual[j]);
        if (!found)
            problem(p, "expected a %s annotation matching %s %s, found none", kind,
                    !e->text   ? "anything"
                    : e->regex ? "regex"
                               : "message",
                    e->text ? e->text : "");
    }
    for (size_t j = 0; j < count; j++) {
        bool found = false;
        for (size_t i = 0; i < expected->count && !found; i++)
            found = promqltest_expect_matches(&expected->items[i], actual[j]);
        if (!found)
            problem(p, "unexpected %s annotation: %s", kind, actual[j]);
    }
}

/* The index of the expected series with this key, or SIZE_MAX. */
static size_t find_expected(char **expected_keys, size_t count, const char *key)
{
    for (size_t j = 0; j < count; j++)
        if (strcmp(expected_keys[j], key) == 0)
            return j;
    return SIZE_MAX;
}

static void check_series(problems_t *p, const promqltest_eval_t *ev, const promql_result_t *r,
                         int64_t eval_time)
{
    bool matrix = r->type == PROMQL_VALUE_MATRIX;
    char **keys = cairn_calloc(ev->series_count + 1, sizeof(*keys));
    bool *seen = cairn_calloc(ev->series_count + 1, sizeof(*seen));
    for (size_t j = 0; j < ev->series_count; j++)
        keys[j] = labels_key(ev->series[j].labels.items, ev->series[j].labels.count);
    int64_t start, end, step;
    expected_range(ev, eval_time, &start, &end, &step);

    for (size_t i = 0; i < r->series_count; i++) {
        const promql_series_t *s = &r->series[i];
        char *key = labels_key(s->labels, s->label_count);
        char *name = labels_string(s->labels, s->label_count);
        size_t j = find_expected(keys, ev->series_count, key);
        cairn_free(key);
        if (matrix && i > 0 &&
            labels_compare(r->series[i - 1].labels, r->series[i - 1].label_count, s->labels,
                           s->label_count) > 0)
            problem(p, "matrix not sorted by labels: %s comes after a greater label set", name);
        if (j == SIZE_MAX) {
            problem(p, "unexpected series %s", name);
            cairn_free(name);
            continue;
        }
        if (seen[j])
            problem(p, "series %s appears twice", name);
        seen[j] = true;
        const promqltest_series_t *e = &ev->series[j];
        if (!matrix) {
            if (ev->ordered && j != i)
                problem(p, "series %s at position %zu, expected at %zu", name, i + 1, j + 1);
            if (s->point_count != 1) {
                problem(p, "series %s has %zu points in an instant vector", name, s->point_count);
            } else {
                if (s->points[0].t != eval_time)
                    problem(p, "series %s has timestamp %lld, expected the evaluation time %lld",
                            name, (long long)s->points[0].t, (long long)eval_time);
                if (e->value_count == 0 || e->values[0].kind != PROMQLTEST_VALUE_FLOAT) {
                    problem(p, "series %s: expected value is not a float", name);
                } else if (!promqltest_float_equal(e->values[0].v, s->points[0].v)) {
                    char *want = float_string(e->values[0].v), *got = float_string(s->points[0].v);
                    problem(p, "series %s: expected %s, got %s", name, want, got);
                    cairn_free(want);
                    cairn_free(got);
                }
            }
            cairn_free(name);
            continue;
        }
        /* Matrix: the expected points lie at start + k * step, `_` positions have none. */
        size_t k_point = 0;
        bool bad = false;
        for (size_t k = 0; k < e->value_count && !bad; k++) {
            int64_t t = start + (int64_t)k * step;
            if (t > end) {
                problem(p, "series %s: %zu values expected, more than the range holds", name,
                        e->value_count);
                bad = true;
                break;
            }
            if (e->values[k].kind == PROMQLTEST_VALUE_OMITTED)
                continue;
            if (k_point >= s->point_count) {
                problem(p, "series %s: missing point at %lld (got %zu points)", name, (long long)t,
                        s->point_count);
                bad = true;
                break;
            }
            const promql_point_t *pt = &s->points[k_point++];
            if (pt->t != t) {
                problem(p, "series %s: point %zu has timestamp %lld, expected %lld", name, k_point,
                        (long long)pt->t, (long long)t);
                bad = true;
            } else if (e->values[k].kind != PROMQLTEST_VALUE_FLOAT ||
                       !promqltest_float_equal(e->values[k].v, pt->v)) {
                char *want = float_string(e->values[k].v), *got = float_string(pt->v);
                problem(p, "series %s: at %lld expected %s, got %s", name, (long long)t, want, got);
                cairn_free(want);
                cairn_free(got);
            }
        }
        if (!bad && k_point < s->point_count)
            problem(p, "series %s: %zu points, expected %zu", name, s->point_count, k_point);
        cairn_free(name);
    }
    for (size_t j = 0; j < ev->series_count; j++) {
        if (!seen[j]) {
            char *name = labels_string(ev->series[j].labels.items, ev->series[j].labels.count);
            problem(p, "missing series %s", name);
            cairn_free(name);
        }
        cairn_free(keys[j]);
    }
    cairn_free(keys);
    cairn_free(seen);
}

static void check_value(problems_t *p, const promqltest_eval_t *ev, const promql_result_t *r,
                        int64_t eval_time)
{
    const char *got = value_type_name(r->type);
    if (ev->expect_string && r->type != PROMQL_VALUE_STRING) {
        problem(p, "expected a string, got a %s", got);
        return;
    }
    switch (r->type) {
    case PROMQL_VALUE_STRING: {
        const char *want = ev->string ? ev->string : "";
        if (strcmp(want, r->string ? r->string : "") != 0)
            problem(p, "expected string \"%s\", got \"%s\"", want, r->string ? r->string : "");
        break;
    }
    case PROMQL_VALUE_SCALAR:
        if (!ev->expect_scalar) {
            problem(p, "expected a %s, got a scalar",
                    ev->range || ev->range_vector ? "matrix" : "vector");
        } else if (!promqltest_float_equal(ev->scalar, r->scalar)) {
            char *want = float_string(ev->scalar), *have = float_string(r->scalar);
            problem(p, "expected scalar %s, got %s", want, have);
            cairn_free(want);
            cairn_free(have);
        }
        break;
    case PROMQL_VALUE_VECTOR:
    case PROMQL_VALUE_MATRIX:
        if (ev->expect_scalar) {
            problem(p, "expected a scalar, got a %s", got);
            break;
        }
        if (r->type == PROMQL_VALUE_MATRIX && ev->ordered) {
            problem(p, "expected an ordered result, but the query returned a matrix");
            break;
        }
        check_series(p, ev, r, eval_time);
        break;
    default: problem(p, "the result has no value (type %s)", got); break;
    }
}

bool promqltest_eval_check(const promqltest_eval_t *ev, const promql_result_t *r, int64_t eval_time,
                           buf_t *why)
{
    problems_t p = {BUF_INIT, 0};
    bool failed = r->error_type != PROMQL_ERROR_NONE || r->error != NULL;
    if (failed) {
        if (!ev->fail)
            problem(&p, "unexpected error");
        else if (ev->fail_match.count > 0 &&
                 !promqltest_expect_matches(&ev->fail_match.items[0], r->error ? r->error : ""))
            problem(&p, "the error does not match the expected %s",
                    ev->fail_match.items[0].regex ? "pattern" : "message");
    } else if (ev->fail) {
        problem(&p, "expected an error, got none");
    } else {
        check_annotations(&p, "warn", r->warnings, r->warning_count, &ev->warns, ev->no_warn,
                          ev->require_warn);
        check_annotations(&p, "info", r->infos, r->info_count, &ev->infos, ev->no_info,
                          ev->require_info);
        check_value(&p, ev, r, eval_time);
    }
    if (p.count == 0) {
        buf_free(&p.text);
        return true;
    }
    buf_append(why, p.text.data, p.text.len);
    buf_append_str(why, "    expected:\n");
    expected_format_at(why, ev, eval_time, "      ");
    buf_append_str(why, "    got:\n");
    promqltest_result_format(why, r, "      ");
    buf_free(&p.text);
    return false;
}
