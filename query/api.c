/*
 * query/api.c: Prometheus's HTTP API over the engine and the TSDB, transport-agnostic.
 *
 *   /api/v1/query, /api/v1/query_range     PromQL (promql_query_instant / _range)
 *   /api/v1/series, /labels, /label/<name>/values
 *                                          metadata through a TSDB querier
 *   /api/v1/status/{buildinfo,runtimeinfo,flags,tsdb}
 *   /api/v1/export                         every sample in [start, end], one JSON line per
 *                                          series (VictoriaMetrics' export shape)
 *   /federate                              the latest sample of each matching series, text
 *                                          exposition 0.0.4 with timestamps
 *
 * A request is a method, a path and the decoded parameters in Go's Form order (body values
 * first, then the query string); the first value of a name is the one used, repeated match[]
 * values all count. Responses use Prometheus's envelope,
 *   {"status":"success","data":...[,"warnings":[...]][,"infos":[...]]}
 *   {"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": ..."}
 * with Prometheus's messages and status codes. JSON shapes are in api_json.c, parameter
 * syntaxes in api_params.c.
 *
 * Thread safety: the API holds no mutable state; every request makes its own querier (or
 * query) and frees it before returning. match[] selectors are parsed with the PromQL parser.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "query/api_internal.h"
#include "query/promql_ast.h"

#define API_TSDB_STATUS_DEFAULT_LIMIT 10
#define API_TRUNCATED_WARNING         "results truncated due to limit"
#define API_STALE_NAN_BITS            0x7ff0000000000002ULL

struct query_api {
    query_api_options_t opts;
};

/* One request in flight: its parameters, the response being built and the warnings that go
 * into the envelope. */
typedef struct api_call {
    query_api_t *api;
    const query_api_request_t *req;
    query_api_response_t *resp;
    buf_t warnings; /* JSON array elements, comma-separated, or empty */
    buf_t infos;
} api_call_t;

typedef void (*api_handler_fn)(api_call_t *call);

/* ---- parameters ----------------------------------------------------------------------------- */

/* The first value of name, or NULL. */
static const char *param_get(const api_call_t *call, const char *name)
{
    for (size_t i = 0; i < call->req->param_count; i++)
        if (strcmp(call->req->params[i].name, name) == 0)
            return call->req->params[i].value ? call->req->params[i].value : "";
    return NULL;
}

/* Go's FormValue: the first value of name, or "" when there is none. */
static const char *form_value(const api_call_t *call, const char *name)
{
    const char *v = param_get(call, name);
    return v ? v : "";
}

/* Every value of name, in order; the array is the caller's (cairn_free). */
static size_t param_all(const api_call_t *call, const char *name, const char ***out)
{
    size_t n = 0;
    *out = NULL;
    for (size_t i = 0; i < call->req->param_count; i++)
        if (strcmp(call->req->params[i].name, name) == 0)
            n++;
    if (!n)
        return 0;
    *out = cairn_calloc(n, sizeof(**out));
    n = 0;
    for (size_t i = 0; i < call->req->param_count; i++)
        if (strcmp(call->req->params[i].name, name) == 0)
            (*out)[n++] = call->req->params[i].value ? call->req->params[i].value : "";
    return n;
}

/* ---- responses ------------------------------------------------------------------------------ */

static void add_annotation(buf_t *list, const char *text)
{
    if (list->len)
        buf_append_char(list, ',');
    api_json_string(list, text);
}

static void append_annotations(api_call_t *call, buf_t *body)
{
    if (call->warnings.len) {
        buf_append_str(body, ",\"warnings\":[");
        buf_append(body, call->warnings.data, call->warnings.len);
        buf_append_char(body, ']');
    }
    if (call->infos.len) {
        buf_append_str(body, ",\"infos\":[");
        buf_append(body, call->infos.data, call->infos.len);
        buf_append_char(body, ']');
    }
}

/* Starts a success envelope; the caller appends the data and calls respond_success_end. */
static buf_t *respond_success_begin(api_call_t *call)
{
    query_api_response_t *resp = call->resp;
    resp->status = 200;
    resp->content_type = "application/json";
    buf_reset(&resp->body);
    buf_append_str(&resp->body, "{\"status\":\"success\",\"data\":");
    return &resp->body;
}

static void respond_success_end(api_call_t *call)
{
    append_annotations(call, &call->resp->body);
    buf_append_char(&call->resp->body, '}');
}

static void respond_error(api_call_t *call, unsigned status, const char *type, const char *fmt, ...)
    CAIRN_PRINTF(4, 5);
static void respond_error(api_call_t *call, unsigned status, const char *type, const char *fmt, ...)
{
    buf_t msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    query_api_response_t *resp = call->resp;
    resp->status = status;
    resp->content_type = "application/json";
    buf_reset(&resp->body);
    buf_append_str(&resp->body, "{\"status\":\"error\",\"errorType\":");
    api_json_string(&resp->body, type);
    buf_append_str(&resp->body, ",\"error\":");
    api_json_string(&resp->body, msg.data ? msg.data : "");
    append_annotations(call, &resp->body);
    buf_append_char(&resp->body, '}');
    buf_free(&msg);
}

static void respond_bad_param(api_call_t *call, const char *param, const char *message)
{
    respond_error(call, 400, "bad_data", "invalid parameter \"%s\": %s", param, message);
}

/* Parses a time parameter that may be absent (then def), in Prometheus's words on error. */
static bool time_param(api_call_t *call, const char *name, int64_t def, int64_t *out)
{
    const char *v = form_value(call, name);
    if (!*v) {
        *out = def;
        return true;
    }
    cairn_error_t err = {{0}};
    if (api_parse_time(v, out, &err) == 0)
        return true;
    buf_t msg = BUF_INIT;
    buf_printf(&msg, "Invalid time value for '%s': %s", name, err.message);
    respond_bad_param(call, name, msg.data);
    buf_free(&msg);
    return false;
}

static bool limit_param(api_call_t *call, uint64_t *out)
{
    cairn_error_t err = {{0}};
    if (api_parse_limit(form_value(call, "limit"), out, &err) == 0)
        return true;
    respond_bad_param(call, "limit", err.message);
    return false;
}

/* ---- match[] -------------------------------------------------------------------------------- */

typedef struct matcher_set {
    tsdb_matcher_t **matchers;
    size_t count;
} matcher_set_t;

static void matcher_sets_free(matcher_set_t *sets, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < sets[i].count; j++)
            tsdb_matcher_free(sets[i].matchers[j]);
        cairn_free(sets[i].matchers);
    }
    cairn_free(sets);
}

/* Parses one match[] selector into set, or fills err. A selector is a vector selector without
 * offset or @, with at least one matcher that does not match the empty string. */
static int matcher_set_parse(const char *text, matcher_set_t *set, cairn_error_t *err)
{
    promql_node_t *node = promql_parse(text, err);
    if (!node)
        return -EINVAL;
    int rc = 0;
    if (node->kind != PROMQL_NODE_VECTOR_SELECTOR || node->selector.offset_ms != 0 ||
        node->selector.at != PROMQL_AT_NONE) {
        /* Where the selector ends is where Prometheus's metric-selector grammar stops. */
        uint32_t at = 0;
        if (node->kind == PROMQL_NODE_MATRIX_SELECTOR)
            at = node->matrix.vector->pos.end;
        else if (node->kind == PROMQL_NODE_VECTOR_SELECTOR)
            at = node->pos.end;
        unsigned line, chr;
        promql_position_line_char(text, at, &line, &chr);
        rc = cairn_error_set(err, -EINVAL, "%u:%u: parse error: expected a metric selector", line,
                             chr);
        goto out;
    }
    bool non_empty = false;
    set->matchers = cairn_calloc(node->selector.matcher_count + 1, sizeof(*set->matchers));
    for (size_t i = 0; i < node->selector.matcher_count; i++) {
        const promql_matcher_t *m = &node->selector.matchers[i];
        tsdb_matcher_t *tm = tsdb_matcher_new(m->type, m->name, m->value, err);
        if (!tm) {
            rc = -EINVAL;
            goto out;
        }
        set->matchers[set->count++] = tm;
        non_empty = non_empty || !tsdb_matcher_matches(tm, "");
    }
    if (!non_empty)
        rc = cairn_error_set(err, -EINVAL, "match[] must contain at least one non-empty matcher");
out:
    promql_node_free(node);
    return rc;
}

/* Parses every match[] value; on error answers with invalid parameter "match[]" and returns
 * false. */
static bool match_param(api_call_t *call, matcher_set_t **sets_out, size_t *count_out)
{
    const char **values;
    size_t n = param_all(call, "match[]", &values);
    matcher_set_t *sets = cairn_calloc(n ? n : 1, sizeof(*sets));
    for (size_t i = 0; i < n; i++) {
        cairn_error_t err = {{0}};
        if (matcher_set_parse(values[i], &sets[i], &err) < 0) {
            respond_bad_param(call, "match[]", err.message);
            matcher_sets_free(sets, i + 1);
            cairn_free(values);
            return false;
        }
    }
    cairn_free(values);
    *sets_out = sets;
    *count_out = n;
    return true;
}

static bool has_param(const api_call_t *call, const char *name)
{
    return param_get(call, name) != NULL;
}

/* ---- query and query_range ------------------------------------------------------------------ */

/* timeout and lookback_delta, shared by both query endpoints. */
static bool query_params(api_call_t *call, promql_query_params_t *params)
{
    memset(params, 0, sizeof(*params));
    params->cancel = call->req->cancel;
    cairn_error_t err = {{0}};
    int64_t ns;
    const char *timeout = form_value(call, "timeout");
    if (*timeout) {
        if (api_parse_duration(timeout, &ns, &err) < 0) {
            respond_bad_param(call, "timeout", err.message);
            return false;
        }
        /* The request's timeout can only shorten the engine's; an expired one still runs
         * the query for a millisecond, which then times out as Prometheus's would. */
        int64_t ms = ns / 1000000;
        params->timeout_ms = ms < 1 ? 1 : ms;
        if (call->api->opts.query && call->api->opts.query->timeout_ms > 0 &&
            params->timeout_ms > call->api->opts.query->timeout_ms)
            params->timeout_ms = 0;
    }
    const char *lookback = form_value(call, "lookback_delta");
    if (*lookback) {
        if (api_parse_duration(lookback, &ns, &err) < 0) {
            respond_error(call, 400, "bad_data", "error parsing lookback delta duration: %s",
                          err.message);
            return false;
        }
        params->lookback_delta_ms = ns > 0 ? ns / 1000000 : 0;
    }
    return true;
}

/* Answers with the query's result or error. */
static void respond_query(api_call_t *call, promql_result_t *res, int rc, uint64_t limit)
{
    for (size_t i = 0; i < res->warning_count; i++)
        add_annotation(&call->warnings, res->warnings[i]);
    for (size_t i = 0; i < res->info_count; i++)
        add_annotation(&call->infos, res->infos[i]);
    if (rc < 0 || res->error_type != PROMQL_ERROR_NONE) {
        promql_error_type_t type = res->error_type;
        if (type == PROMQL_ERROR_NONE)
            type = PROMQL_ERROR_INTERNAL;
        const char *msg = res->error ? res->error : "query failed";
        if (type == PROMQL_ERROR_BAD_DATA)
            respond_bad_param(call, "query", msg);
        else
            respond_error(call, promql_error_http_status(type), promql_error_type_name(type), "%s",
                          msg);
        return;
    }
    size_t series_limit = 0;
    if (limit && (res->type == PROMQL_VALUE_VECTOR || res->type == PROMQL_VALUE_MATRIX) &&
        res->series_count > limit) {
        series_limit = (size_t)limit;
        add_annotation(&call->warnings, API_TRUNCATED_WARNING);
    }
    buf_t *body = respond_success_begin(call);
    api_json_query_data(body, res, series_limit);
    respond_success_end(call);
}

static void handle_query(api_call_t *call)
{
    uint64_t limit;
    int64_t t;
    promql_query_params_t params;
    if (!limit_param(call, &limit) || !time_param(call, "time", time_now_ms(), &t) ||
        !query_params(call, &params))
        return;
    promql_result_t res;
    memset(&res, 0, sizeof(res));
    int rc =
        promql_query_instant(call->api->opts.engine, form_value(call, "query"), t, &params, &res);
    respond_query(call, &res, rc, limit);
    promql_result_free(&res);
}

/* Parses a required time (query_range's start and end): an empty value is an error. */
static bool required_time(api_call_t *call, const char *name, int64_t *out)
{
    cairn_error_t err = {{0}};
    if (api_parse_time(form_value(call, name), out, &err) == 0)
        return true;
    respond_bad_param(call, name, err.message);
    return false;
}

/* end - start in nanoseconds, saturating as Go's Time.Sub does. */
static int64_t span_ns(int64_t start_ms, int64_t end_ms)
{
    if (start_ms < 0 && end_ms > INT64_MAX + start_ms)
        return INT64_MAX;
    int64_t ms = end_ms - start_ms;
    if (ms > INT64_MAX / 1000000)
        return INT64_MAX;
    return ms * 1000000;
}

static void handle_query_range(api_call_t *call)
{
    uint64_t limit;
    int64_t start, end, step_ns;
    if (!limit_param(call, &limit) || !required_time(call, "start", &start) ||
        !required_time(call, "end", &end))
        return;
    if (end < start) {
        respond_bad_param(call, "end", "end timestamp must not be before start time");
        return;
    }
    cairn_error_t err = {{0}};
    if (api_parse_duration(form_value(call, "step"), &step_ns, &err) < 0) {
        respond_bad_param(call, "step", err.message);
        return;
    }
    /* A step below a millisecond is positive for Prometheus but truncates to a zero step in
     * its engine; refuse it as a zero step. */
    if (step_ns < 1000000) {
        respond_bad_param(call, "step",
                          "zero or negative query resolution step widths are not accepted. "
                          "Try a positive integer");
        return;
    }
    if (span_ns(start, end) / step_ns > API_MAX_POINTS_PER_SERIES) {
        respond_error(call, 400, "bad_data",
                      "exceeded maximum resolution of 11,000 points per timeseries. Try "
                      "decreasing the query resolution (?step=XX)");
        return;
    }
    promql_query_params_t params;
    if (!query_params(call, &params))
        return;
    promql_result_t res;
    memset(&res, 0, sizeof(res));
    int rc = promql_query_range(call->api->opts.engine, form_value(call, "query"), start, end,
                                step_ns / 1000000, &params, &res);
    respond_query(call, &res, rc, limit);
    promql_result_free(&res);
}

/* ---- series --------------------------------------------------------------------------------- */

typedef struct label_set {
    label_pair_t *labels; /* owned strings */
    size_t count;
} label_set_t;

static int label_set_compare(const void *a, const void *b)
{
    const label_set_t *x = a, *y = b;
    for (size_t i = 0; i < x->count && i < y->count; i++) {
        int c = strcmp(x->labels[i].name, y->labels[i].name);
        if (c)
            return c;
        c = strcmp(x->labels[i].value, y->labels[i].value);
        if (c)
            return c;
    }
    return x->count < y->count ? -1 : x->count > y->count;
}

static void label_set_copy(label_set_t *out, const tsdb_label_t *labels, size_t count)
{
    out->labels = cairn_calloc(count ? count : 1, sizeof(*out->labels));
    out->count = count;
    for (size_t i = 0; i < count; i++) {
        out->labels[i].name = cairn_strdup(labels[i].name);
        out->labels[i].value = cairn_strdup(labels[i].value);
    }
}

static void label_set_clear(label_set_t *set)
{
    for (size_t j = 0; j < set->count; j++) {
        cairn_free(set->labels[j].name);
        cairn_free(set->labels[j].value);
    }
    cairn_free(set->labels);
    set->labels = NULL;
    set->count = 0;
}

static void label_sets_free(label_set_t *sets, size_t count)
{
    for (size_t i = 0; i < count; i++)
        label_set_clear(&sets[i]);
    cairn_free(sets);
}

/* The label sets of the series matching any of the sets, sorted and de-duplicated. */
static size_t select_label_sets(tsdb_querier_t *q, const matcher_set_t *sets, size_t set_count,
                                label_set_t **out)
{
    label_set_t *all = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < set_count; i++) {
        tsdb_series_set_t *ss =
            tsdb_querier_select(q, (const tsdb_matcher_t *const *)sets[i].matchers, sets[i].count);
        while (ss && tsdb_series_set_next(ss)) {
            const tsdb_label_t *labels;
            size_t count = tsdb_series_set_labels(ss, &labels);
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                all = cairn_realloc(all, cap * sizeof(*all));
            }
            label_set_copy(&all[n++], labels, count);
        }
        tsdb_series_set_free(ss);
    }
    if (set_count > 1 && n > 1) {
        qsort(all, n, sizeof(*all), label_set_compare);
        size_t w = 1;
        for (size_t r = 1; r < n; r++) {
            if (label_set_compare(&all[r], &all[w - 1]) == 0)
                label_set_clear(&all[r]);
            else
                all[w++] = all[r];
        }
        n = w;
    }
    *out = all;
    return n;
}

static void handle_series(api_call_t *call)
{
    if (!has_param(call, "match[]")) {
        respond_error(call, 400, "bad_data", "no match[] parameter provided");
        return;
    }
    uint64_t limit;
    int64_t start, end;
    matcher_set_t *sets;
    size_t set_count;
    if (!limit_param(call, &limit) || !time_param(call, "start", API_MIN_TIME_MS, &start) ||
        !time_param(call, "end", API_MAX_TIME_MS, &end) || !match_param(call, &sets, &set_count))
        return;
    tsdb_querier_t *q = tsdb_querier_new(call->api->opts.db, start, end);
    label_set_t *found = NULL;
    size_t n = q ? select_label_sets(q, sets, set_count, &found) : 0;
    tsdb_querier_free(q);
    matcher_sets_free(sets, set_count);

    size_t shown = n;
    if (limit && n > limit) {
        shown = (size_t)limit;
        add_annotation(&call->warnings, API_TRUNCATED_WARNING);
    }
    buf_t *body = respond_success_begin(call);
    buf_append_char(body, '[');
    for (size_t i = 0; i < shown; i++) {
        if (i)
            buf_append_char(body, ',');
        api_json_labels(body, found[i].labels, found[i].count);
    }
    buf_append_char(body, ']');
    respond_success_end(call);
    label_sets_free(found, n);
}

/* ---- labels and label values ---------------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Merges sorted, de-duplicated string lists into one (the inputs are consumed). */
static size_t strings_union(char ***lists, size_t *counts, size_t list_count, char ***out)
{
    size_t total = 0;
    for (size_t i = 0; i < list_count; i++)
        total += counts[i];
    char **all = cairn_malloc((total ? total : 1) * sizeof(*all));
    size_t n = 0;
    for (size_t i = 0; i < list_count; i++) {
        memcpy(all + n, lists[i], counts[i] * sizeof(*all));
        n += counts[i];
        cairn_free(lists[i]); /* the strings moved to all */
    }
    if (list_count > 1 && n > 1) {
        qsort(all, n, sizeof(*all), compare_strings);
        size_t w = 1;
        for (size_t r = 1; r < n; r++) {
            if (strcmp(all[r], all[w - 1]) == 0)
                cairn_free(all[r]);
            else
                all[w++] = all[r];
        }
        n = w;
    }
    *out = all;
    return n;
}

/* Writes a JSON array of strings, at most limit of them (0: all), and the truncation
 * warning when some were left out. */
static void respond_strings(api_call_t *call, char **strings, size_t n, uint64_t limit)
{
    size_t shown = n;
    if (limit && n > limit) {
        shown = (size_t)limit;
        add_annotation(&call->warnings, API_TRUNCATED_WARNING);
    }
    buf_t *body = respond_success_begin(call);
    buf_append_char(body, '[');
    for (size_t i = 0; i < shown; i++) {
        if (i)
            buf_append_char(body, ',');
        api_json_string(body, strings[i]);
    }
    buf_append_char(body, ']');
    respond_success_end(call);
}

/* The label names (name == NULL) or the values of label name, over the series matching any
 * of the sets (all series when there are none). */
static void respond_label_strings(api_call_t *call, const char *name)
{
    uint64_t limit;
    int64_t start, end;
    matcher_set_t *sets;
    size_t set_count;
    if (!limit_param(call, &limit) || !time_param(call, "start", API_MIN_TIME_MS, &start) ||
        !time_param(call, "end", API_MAX_TIME_MS, &end) || !match_param(call, &sets, &set_count))
        return;
    tsdb_querier_t *q = tsdb_querier_new(call->api->opts.db, start, end);
    size_t lists_n = set_count ? set_count : 1;
    char ***lists = cairn_calloc(lists_n, sizeof(*lists));
    size_t *counts = cairn_calloc(lists_n, sizeof(*counts));
    for (size_t i = 0; i < lists_n; i++) {
        const tsdb_matcher_t *const *m =
            set_count ? (const tsdb_matcher_t *const *)sets[i].matchers : NULL;
        size_t mc = set_count ? sets[i].count : 0;
        counts[i] = name ? tsdb_querier_label_values(q, name, m, mc, &lists[i])
                         : tsdb_querier_label_names(q, m, mc, &lists[i]);
    }
    tsdb_querier_free(q);
    matcher_sets_free(sets, set_count);
    char **strings;
    size_t n = strings_union(lists, counts, lists_n, &strings);
    cairn_free(lists);
    cairn_free(counts);
    respond_strings(call, strings, n, limit);
    tsdb_strings_free(strings, n);
}

static void handle_labels(api_call_t *call)
{
    respond_label_strings(call, NULL);
}

#define LABEL_VALUES_PREFIX "/api/v1/label/"
#define LABEL_VALUES_SUFFIX "/values"

/* The <name> of /api/v1/label/<name>/values, or NULL if path is not of that form. */
static char *label_values_name(const char *path)
{
    size_t plen = strlen(LABEL_VALUES_PREFIX), slen = strlen(LABEL_VALUES_SUFFIX);
    size_t len = strlen(path);
    if (len <= plen + slen || strncmp(path, LABEL_VALUES_PREFIX, plen) != 0 ||
        strcmp(path + len - slen, LABEL_VALUES_SUFFIX) != 0)
        return NULL;
    char *name = cairn_strndup(path + plen, len - plen - slen);
    if (strchr(name, '/')) {
        cairn_free(name);
        return NULL;
    }
    return name;
}

static void handle_label_values(api_call_t *call)
{
    char *name = label_values_name(call->req->path);
    if (!label_name_is_valid(name)) {
        buf_t q = BUF_INIT;
        api_append_go_quoted(&q, name);
        respond_error(call, 400, "bad_data", "invalid label name: %s", q.data);
        buf_free(&q);
    } else {
        respond_label_strings(call, name);
    }
    cairn_free(name);
}

/* ---- status --------------------------------------------------------------------------------- */

static void json_field_string(buf_t *b, const char *name, const char *value, bool first)
{
    if (!first)
        buf_append_char(b, ',');
    api_json_string(b, name);
    buf_append_char(b, ':');
    api_json_string(b, value ? value : "");
}

static void handle_buildinfo(api_call_t *call)
{
    const query_api_options_t *o = &call->api->opts;
    buf_t *body = respond_success_begin(call);
    buf_append_char(body, '{');
    json_field_string(body, "version", o->version, true);
    json_field_string(body, "revision", o->revision, false);
    json_field_string(body, "branch", o->branch, false);
    json_field_string(body, "buildUser", o->build_user, false);
    json_field_string(body, "buildDate", o->build_date, false);
    json_field_string(body, "goVersion", o->go_version, false);
    buf_append_char(body, '}');
    respond_success_end(call);
}

/* A time as Go's time.Time marshals to JSON (RFC 3339 with the fraction's trailing zeros
 * removed), in UTC. */
static void json_time(buf_t *b, int64_t ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[64];
    strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
    buf_printf(b, "\"%s", tmp);
    if (frac) {
        char f[8];
        snprintf(f, sizeof(f), ".%03d", frac);
        size_t n = strlen(f);
        while (f[n - 1] == '0')
            f[--n] = '\0';
        buf_append_str(b, f);
    }
    buf_append_str(b, "Z\"");
}

/* Threads of this process, from /proc/self/status (0 if unreadable). */
static long process_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long n = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

static void handle_runtimeinfo(api_call_t *call)
{
    const query_api_options_t *o = &call->api->opts;
    bool reload_ok = true;
    int64_t last_config_ms = o->start_time_ms;
    if (o->config_status)
        o->config_status(o->callback_ctx, &reload_ok, &last_config_ms);
    char cwd[4096] = "", host[256] = "";
    if (!getcwd(cwd, sizeof(cwd)))
        cwd[0] = '\0';
    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    buf_t *body = respond_success_begin(call);
    buf_append_str(body, "{\"startTime\":");
    json_time(body, o->start_time_ms);
    json_field_string(body, "CWD", cwd, false);
    json_field_string(body, "hostname", host, false);
    buf_append_str(body, ",\"serverTime\":");
    json_time(body, time_now_ms());
    buf_printf(body,
               ",\"reloadConfigSuccess\":%s,\"lastConfigTime\":", reload_ok ? "true" : "false");
    json_time(body, last_config_ms);
    /* Go runtime figures have C counterparts where one exists: threads for goroutines, the
     * online CPUs for GOMAXPROCS; no memory limit is Go's math.MaxInt64. */
    buf_printf(body,
               ",\"corruptionCount\":0,\"goroutineCount\":%ld,\"GOMAXPROCS\":%ld,"
               "\"GOMEMLIMIT\":9223372036854775807,\"GOGC\":\"\",\"GODEBUG\":\"\"",
               process_threads(), cpus > 0 ? cpus : 1);
    json_field_string(body, "storageRetention", o->storage_retention, false);
    buf_append_char(body, '}');
    respond_success_end(call);
}

typedef struct flag_entry {
    const char *name, *value;
} flag_entry_t;

static int compare_flags(const void *a, const void *b)
{
    return strcmp(((const flag_entry_t *)a)->name, ((const flag_entry_t *)b)->name);
}

static void handle_flags(api_call_t *call)
{
    const query_api_options_t *o = &call->api->opts;
    /* A Go map marshals with its keys sorted. */
    flag_entry_t *flags = cairn_calloc(o->flag_count ? o->flag_count : 1, sizeof(*flags));
    for (size_t i = 0; i < o->flag_count; i++)
        flags[i] = (flag_entry_t){o->flag_names[i], o->flag_values[i]};
    qsort(flags, o->flag_count, sizeof(*flags), compare_flags);
    buf_t *body = respond_success_begin(call);
    buf_append_char(body, '{');
    for (size_t i = 0; i < o->flag_count; i++)
        json_field_string(body, flags[i].name, flags[i].value, i == 0);
    buf_append_char(body, '}');
    respond_success_end(call);
    cairn_free(flags);
}

/* One row of the /status/tsdb tables. */
typedef struct tsdb_stat {
    char *name; /* owned */
    uint64_t value;
} tsdb_stat_t;

typedef struct stat_table {
    tsdb_stat_t *items;
    size_t count, cap;
} stat_table_t;

static void stat_table_add(stat_table_t *t, char *name, uint64_t value)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->items = cairn_realloc(t->items, t->cap * sizeof(*t->items));
    }
    t->items[t->count++] = (tsdb_stat_t){name, value};
}

/* Largest first; equal values by name, so the output is stable. */
static int compare_stats(const void *a, const void *b)
{
    const tsdb_stat_t *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void stat_table_write(buf_t *b, const char *key, stat_table_t *t, size_t limit)
{
    qsort(t->items, t->count, sizeof(*t->items), compare_stats);
    buf_append_char(b, ',');
    api_json_string(b, key);
    buf_append_str(b, ":[");
    for (size_t i = 0; i < t->count && i < limit; i++) {
        if (i)
            buf_append_char(b, ',');
        buf_append_str(b, "{\"name\":");
        api_json_string(b, t->items[i].name);
        buf_printf(b, ",\"value\":%llu}", (unsigned long long)t->items[i].value);
    }
    buf_append_char(b, ']');
    for (size_t i = 0; i < t->count; i++)
        cairn_free(t->items[i].name);
    cairn_free(t->items);
}

/* Series whose label name has value, counted through a select. */
static uint64_t count_series(tsdb_querier_t *q, const char *name, const char *value)
{
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_EQUAL, name, value, NULL);
    if (!m)
        return 0;
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    uint64_t n = set ? tsdb_series_set_count(set) : 0;
    tsdb_series_set_free(set);
    tsdb_matcher_free(m);
    return n;
}

/* The head's cardinality statistics, computed through a querier over all time: for every
 * label name its values, and for every pair the series that have it. */
static void handle_tsdb_status(api_call_t *call)
{
    size_t limit = API_TSDB_STATUS_DEFAULT_LIMIT;
    const char *ls = form_value(call, "limit");
    if (*ls) {
        int64_t v;
        if (parse_int64(ls, &v) < 0 || v < 1) {
            respond_error(call, 400, "bad_data", "limit must be a positive number");
            return;
        }
        limit = (size_t)v;
    }
    tsdb_stats_t st;
    tsdb_stats(call->api->opts.db, &st);

    stat_table_t by_metric = {0}, values_by_name = {0}, bytes_by_name = {0}, by_pair = {0};
    uint64_t pairs = 0;
    tsdb_querier_t *q = tsdb_querier_new(call->api->opts.db, INT64_MIN, INT64_MAX);
    char **names;
    size_t name_count = tsdb_querier_label_names(q, NULL, 0, &names);
    for (size_t i = 0; i < name_count; i++) {
        char **values;
        size_t value_count = tsdb_querier_label_values(q, names[i], NULL, 0, &values);
        uint64_t bytes = 0;
        for (size_t j = 0; j < value_count; j++) {
            uint64_t series = count_series(q, names[i], values[j]);
            bytes += strlen(values[j]);
            if (strcmp(names[i], "__name__") == 0)
                stat_table_add(&by_metric, cairn_strdup(values[j]), series);
            stat_table_add(&by_pair, cairn_sprintf("%s=%s", names[i], values[j]), series);
        }
        pairs += value_count;
        stat_table_add(&values_by_name, cairn_strdup(names[i]), value_count);
        stat_table_add(&bytes_by_name, cairn_strdup(names[i]), bytes);
        tsdb_strings_free(values, value_count);
    }
    tsdb_strings_free(names, name_count);
    tsdb_querier_free(q);

    buf_t *body = respond_success_begin(call);
    buf_printf(body,
               "{\"headStats\":{\"numSeries\":%llu,\"numLabelPairs\":%llu,\"chunkCount\":%llu,"
               "\"minTime\":%lld,\"maxTime\":%lld}",
               (unsigned long long)st.series, (unsigned long long)pairs,
               (unsigned long long)(st.chunks_open + st.chunks_sealed), (long long)st.min_time,
               (long long)st.max_time);
    stat_table_write(body, "seriesCountByMetricName", &by_metric, limit);
    stat_table_write(body, "labelValueCountByLabelName", &values_by_name, limit);
    stat_table_write(body, "memoryInBytesByLabelName", &bytes_by_name, limit);
    stat_table_write(body, "seriesCountByLabelValuePair", &by_pair, limit);
    buf_append_char(body, '}');
    respond_success_end(call);
}

/* ---- federation ----------------------------------------------------------------------------- */

/* One federated sample. */
typedef struct fed_sample {
    label_set_t labels;
    const char *name; /* __name__'s value, in labels */
    int64_t t;
    double v;
} fed_sample_t;

static bool is_stale_nan(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits == API_STALE_NAN_BITS;
}

static int compare_fed_labels(const void *a, const void *b)
{
    return label_set_compare(&((const fed_sample_t *)a)->labels,
                             &((const fed_sample_t *)b)->labels);
}

/* By metric name; equal names keep their order in the samples array (label order), which
 * the pointers' order is. */
static int compare_fed_names(const void *a, const void *b)
{
    const fed_sample_t *x = *(const fed_sample_t *const *)a, *y = *(const fed_sample_t *const *)b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x < y ? -1 : x > y;
}

static void respond_text_error(api_call_t *call, unsigned status, const char *message)
{
    query_api_response_t *resp = call->resp;
    resp->status = status;
    resp->content_type = "text/plain; charset=utf-8";
    buf_reset(&resp->body);
    buf_append_str(&resp->body, message);
    buf_append_char(&resp->body, '\n');
}

static void handle_federate(api_call_t *call)
{
    const query_api_options_t *o = &call->api->opts;
    const char **values;
    size_t set_count = param_all(call, "match[]", &values);
    matcher_set_t *sets = cairn_calloc(set_count ? set_count : 1, sizeof(*sets));
    for (size_t i = 0; i < set_count; i++) {
        cairn_error_t err = {{0}};
        if (matcher_set_parse(values[i], &sets[i], &err) < 0) {
            respond_text_error(call, 400, err.message);
            matcher_sets_free(sets, i + 1);
            cairn_free(values);
            return;
        }
    }
    cairn_free(values);

    int64_t now = time_now_ms();
    int64_t lookback =
        o->query && o->query->lookback_delta_ms > 0 ? o->query->lookback_delta_ms : 5 * 60 * 1000;
    tsdb_querier_t *q = tsdb_querier_new(o->db, now - lookback, now);
    fed_sample_t *samples = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < set_count; i++) {
        tsdb_series_set_t *ss =
            tsdb_querier_select(q, (const tsdb_matcher_t *const *)sets[i].matchers, sets[i].count);
        while (ss && tsdb_series_set_next(ss)) {
            int64_t t, last_t = 0;
            double v, last_v = 0;
            bool any = false;
            while (tsdb_series_set_sample(ss, &t, &v)) {
                last_t = t, last_v = v;
                any = true;
            }
            /* The text format has no stale markers: a series that went stale is left out. */
            if (!any || is_stale_nan(last_v))
                continue;
            const tsdb_label_t *labels;
            size_t count = tsdb_series_set_labels(ss, &labels);
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                samples = cairn_realloc(samples, cap * sizeof(*samples));
            }
            fed_sample_t *s = &samples[n++];
            label_set_copy(&s->labels, labels, count);
            s->t = last_t;
            s->v = last_v;
            s->name = NULL;
        }
        tsdb_series_set_free(ss);
    }
    tsdb_querier_free(q);
    matcher_sets_free(sets, set_count);

    /* Overlapping match[] sets select a series once. */
    if (set_count > 1 && n > 1) {
        qsort(samples, n, sizeof(*samples), compare_fed_labels);
        size_t w = 1;
        for (size_t r = 1; r < n; r++) {
            if (label_set_compare(&samples[r].labels, &samples[w - 1].labels) == 0)
                label_set_clear(&samples[r].labels);
            else
                samples[w++] = samples[r];
        }
        n = w;
    }

    label_list_t external = {0};
    if (o->external_labels)
        o->external_labels(o->callback_ctx, &external);
    /* Every federated series gets an instance label, empty unless the series or the external
     * labels have one. */
    if (!label_list_get(&external, "instance"))
        label_list_add(&external, "instance", "");
    label_list_sort(&external);

    fed_sample_t **order = cairn_calloc(n ? n : 1, sizeof(*order));
    size_t named = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < samples[i].labels.count; j++)
            if (strcmp(samples[i].labels.labels[j].name, "__name__") == 0)
                samples[i].name = samples[i].labels.labels[j].value;
        if (samples[i].name && *samples[i].name)
            order[named++] = &samples[i];
    }
    qsort(order, named, sizeof(*order), compare_fed_names);

    query_api_response_t *resp = call->resp;
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    buf_t *body = &resp->body;
    buf_reset(body);
    char num[64];
    for (size_t i = 0; i < named; i++) {
        const fed_sample_t *s = order[i];
        if (i == 0 || strcmp(s->name, order[i - 1]->name) != 0)
            buf_printf(body, "# TYPE %s untyped\n", s->name);
        buf_append_str(body, s->name);
        buf_append_char(body, '{');
        bool first = true;
        for (size_t j = 0; j < s->labels.count; j++) {
            const label_pair_t *l = &s->labels.labels[j];
            if (strcmp(l->name, "__name__") == 0 || !*l->value)
                continue;
            buf_printf(body, "%s%s=\"", first ? "" : ",", l->name);
            buf_append_label_value(body, l->value);
            buf_append_char(body, '"');
            first = false;
        }
        for (size_t j = 0; j < external.count; j++) {
            const label_pair_t *l = &external.items[j];
            bool present = false;
            for (size_t k = 0; k < s->labels.count && !present; k++)
                present =
                    strcmp(s->labels.labels[k].name, l->name) == 0 && *s->labels.labels[k].value;
            if (present)
                continue;
            buf_printf(body, "%s%s=\"", first ? "" : ",", l->name);
            buf_append_label_value(body, l->value);
            buf_append_char(body, '"');
            first = false;
        }
        float_format_go(s->v, 'g', num, sizeof(num));
        buf_printf(body, "} %s %lld\n", num, (long long)s->t);
    }
    cairn_free(order);
    label_list_free(&external);
    for (size_t i = 0; i < n; i++)
        label_set_clear(&samples[i].labels);
    cairn_free(samples);
}

/* ---- export --------------------------------------------------------------------------------- */

/* A value as VictoriaMetrics' export writes it: a JSON number, null for NaN, and the strings
 * "Infinity" / "-Infinity". */
static void export_value(buf_t *b, double v)
{
    if (isnan(v))
        buf_append_str(b, "null");
    else if (isinf(v))
        buf_append_str(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else
        api_json_go_float(b, v);
}

/* One series' export line, with its labels for ordering. */
typedef struct export_line {
    label_set_t labels;
    char *line; /* owned */
} export_line_t;

static int compare_export_lines(const void *a, const void *b)
{
    return label_set_compare(&((const export_line_t *)a)->labels,
                             &((const export_line_t *)b)->labels);
}

/* Appends the export line of the set's current series to body; false (and nothing appended)
 * when it has no samples but stale markers. */
static bool export_series(tsdb_series_set_t *ss, buf_t *body, buf_t *times)
{
    const tsdb_label_t *labels;
    size_t count = tsdb_series_set_labels(ss, &labels);
    size_t mark = body->len, samples = 0;
    buf_reset(times);
    buf_append_str(body, "{\"metric\":");
    api_json_tsdb_labels(body, labels, count);
    buf_append_str(body, ",\"values\":[");
    int64_t t;
    double v;
    while (tsdb_series_set_sample(ss, &t, &v)) {
        if (is_stale_nan(v)) /* an export carries no staleness information */
            continue;
        if (samples++) {
            buf_append_char(body, ',');
            buf_append_char(times, ',');
        }
        export_value(body, v);
        buf_printf(times, "%lld", (long long)t);
    }
    if (!samples) {
        body->len = mark;
        if (body->data)
            body->data[mark] = '\0';
        return false;
    }
    buf_append_str(body, "],\"timestamps\":[");
    buf_append(body, times->data, times->len);
    buf_append_str(body, "]}\n");
    return true;
}

static void handle_export(api_call_t *call)
{
    if (!has_param(call, "match[]")) {
        respond_error(call, 400, "bad_data", "no match[] parameter provided");
        return;
    }
    int64_t start, end;
    matcher_set_t *sets;
    size_t set_count;
    if (!time_param(call, "start", API_MIN_TIME_MS, &start) ||
        !time_param(call, "end", API_MAX_TIME_MS, &end) || !match_param(call, &sets, &set_count))
        return;
    query_api_response_t *resp = call->resp;
    resp->status = 200;
    resp->content_type = "application/stream+json";
    buf_t *body = &resp->body;
    buf_reset(body);
    buf_t times = BUF_INIT;
    tsdb_querier_t *q = tsdb_querier_new(call->api->opts.db, start, end);
    if (set_count == 1) {
        /* The common case: the select's order is the label order. */
        tsdb_series_set_t *ss =
            tsdb_querier_select(q, (const tsdb_matcher_t *const *)sets[0].matchers, sets[0].count);
        while (ss && tsdb_series_set_next(ss))
            export_series(ss, body, &times);
        tsdb_series_set_free(ss);
    } else {
        /* Several sets may select a series more than once: lines are collected, sorted by
         * labels and written once each. */
        export_line_t *lines = NULL;
        size_t n = 0, cap = 0;
        buf_t line = BUF_INIT;
        for (size_t i = 0; i < set_count; i++) {
            tsdb_series_set_t *ss = tsdb_querier_select(
                q, (const tsdb_matcher_t *const *)sets[i].matchers, sets[i].count);
            while (ss && tsdb_series_set_next(ss)) {
                buf_reset(&line);
                if (!export_series(ss, &line, &times))
                    continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    lines = cairn_realloc(lines, cap * sizeof(*lines));
                }
                const tsdb_label_t *labels;
                size_t count = tsdb_series_set_labels(ss, &labels);
                label_set_copy(&lines[n].labels, labels, count);
                lines[n++].line = cairn_strdup(line.data);
            }
            tsdb_series_set_free(ss);
        }
        buf_free(&line);
        if (n > 1)
            qsort(lines, n, sizeof(*lines), compare_export_lines);
        for (size_t i = 0; i < n; i++) {
            if (i == 0 || label_set_compare(&lines[i].labels, &lines[i - 1].labels) != 0)
                buf_append_str(body, lines[i].line);
        }
        for (size_t i = 0; i < n; i++) {
            label_set_clear(&lines[i].labels);
            cairn_free(lines[i].line);
        }
        cairn_free(lines);
    }
    tsdb_querier_free(q);
    matcher_sets_free(sets, set_count);
    buf_free(&times);
}

/* ---- routing -------------------------------------------------------------------------------- */

enum { API_GET = 1, API_POST = 2 };

typedef struct api_route {
    const char *path; /* exact, or NULL for /api/v1/label/<name>/values */
    unsigned methods;
    api_handler_fn fn;
} api_route_t;

static const api_route_t api_routes[] = {
    {"/api/v1/query", API_GET | API_POST, handle_query},
    {"/api/v1/query_range", API_GET | API_POST, handle_query_range},
    {"/api/v1/series", API_GET | API_POST, handle_series},
    {"/api/v1/labels", API_GET | API_POST, handle_labels},
    {NULL, API_GET, handle_label_values},
    {"/api/v1/export", API_GET | API_POST, handle_export},
    {"/api/v1/status/buildinfo", API_GET, handle_buildinfo},
    {"/api/v1/status/runtimeinfo", API_GET, handle_runtimeinfo},
    {"/api/v1/status/flags", API_GET, handle_flags},
    {"/api/v1/status/tsdb", API_GET, handle_tsdb_status},
    {"/federate", API_GET, handle_federate},
};

/* Whether path has the form /api/v1/label/<name>/values. */
static bool is_label_values_path(const char *path)
{
    char *name = label_values_name(path);
    bool found = name != NULL;
    cairn_free(name);
    return found;
}

static const api_route_t *route_find(const char *path)
{
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(api_routes); i++) {
        const api_route_t *r = &api_routes[i];
        if (r->path ? strcmp(r->path, path) == 0 : is_label_values_path(path))
            return r;
    }
    return NULL;
}

bool query_api_handles(const char *path)
{
    return route_find(path) != NULL;
}

query_api_t *query_api_new(const query_api_options_t *opts)
{
    query_api_t *api = cairn_calloc(1, sizeof(*api));
    api->opts = *opts;
    return api;
}

void query_api_free(query_api_t *api)
{
    cairn_free(api);
}

void query_api_handle(query_api_t *api, const query_api_request_t *req, query_api_response_t *resp)
{
    api_call_t call = {.api = api, .req = req, .resp = resp};
    buf_reset(&resp->body);
    const api_route_t *route = route_find(req->path);
    unsigned method = strcmp(req->method, "GET") == 0    ? API_GET
                      : strcmp(req->method, "POST") == 0 ? API_POST
                                                         : 0;
    if (!route) {
        respond_error(&call, 404, "not_found", "unknown API endpoint: %s", req->path);
    } else if (!(route->methods & method)) {
        respond_text_error(&call, 405, "Method Not Allowed");
    } else {
        route->fn(&call);
    }
    buf_free(&call.warnings);
    buf_free(&call.infos);
}
