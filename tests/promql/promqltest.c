/*
 * tests/promql/promqltest.c: runs Prometheus's promqltest scripts against Cairn's PromQL engine.
 *
 *   promqltest [-v] [-k PATTERN] [--stop] [--no-rerun] DIR|FILE...
 *
 * Every *.test file (directories are searched one level deep, in name order) runs in its own
 * child process, so a crash or a hang (SIGALRM after FILE_TIMEOUT_SECONDS) in the engine fails
 * that file only. The child opens a TSDB in a fresh temporary directory, loads data through
 * the real appender (tsdb_append, one commit per load), and evaluates each eval with
 * promql_query_instant / promql_query_range on a real engine; `clear` closes and deletes the
 * TSDB and opens a new one. Results are judged by promqltest_compare.c.
 *
 * Native histograms are out of scope (../shared/conformance/README.md): their samples are not
 * loaded, and an eval is skipped, never passed, when its expected output holds a histogram or
 * when a selector of its query matches a series that had histogram samples (or, after
 * load_with_nhcb, a series that upstream's conversion to native histograms would have made).
 *
 * As upstream does, an instant eval is also run as a range query from t - 1m to t + 1m step 1m
 * whose middle step must give the same values, and, when its query parses, re-run with
 * `@ <eval time>` added to every selector and subquery at other evaluation times (-10t, 0,
 * t/5, t, 10t; or -1s, 0, 1s for t = 0), where the result must be the same (each of those also
 * in range mode). --no-rerun turns these extra runs off.
 *
 * Output: failures as they happen (file:line, query, the differences, expected and got),
 * `PASS file (N evals, M skipped)` or `FAIL file (...)` per file, and last
 * `N passed, N failed, N skipped` counting evaluations. Exit status 0 only when nothing
 * failed; 2 for usage errors and unreadable input.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/common.h"
#include "query/promql_ast.h"
#include "query/query.h"
#include "tests/promql/promqltest.h"
#include "tsdb/tsdb.h"

#define FILE_TIMEOUT_SECONDS 600
/* Windows wide enough that no test data is ever out of bounds or truncated. */
#define WIDE_WINDOW_MS ((int64_t)1 << 60)

typedef struct runner_options {
    bool verbose;
    const char *pattern; /* -k: only files or queries containing it */
    bool stop;           /* --stop: stop at the first failure */
    bool rerun;          /* upstream's extra runs of instant evals (default on) */
} runner_options_t;

/* Counts sent from a file's child to the parent, once before each eval and once at the end. */
typedef struct progress {
    unsigned line; /* eval about to run; 0 in the final record */
    unsigned evals, passed, failed, skipped;
} progress_t;

/* The database of one file, rebuilt by `clear`. */
typedef struct test_db {
    char dir[256];
    metric_registry_t *registry;
    tsdb_t *db;
    promql_engine_t *engine;
    label_list_t *histograms; /* label sets of series with native histogram samples */
    size_t histogram_count;
} test_db_t;

static char base_dir[200];

#include "tests/test_util.h"

/* ---- database ----------------------------------------------------------------------------- */

static int db_open(test_db_t *t, cairn_error_t *err)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "%s/db-XXXXXX", base_dir);
    if (!mkdtemp(t->dir))
        return cairn_error_set(err, -errno, "mkdtemp %s: %s", t->dir, strerror(errno));
    tsdb_open_options_t opts;
    tsdb_open_options_init(&opts, t->dir);
    opts.head_window_ms = WIDE_WINDOW_MS;
    opts.appendable_window_ms = WIDE_WINDOW_MS;
    opts.snapshot_on_close = false;
    opts.wal_sync = TSDB_WAL_SYNC_NONE;
    t->registry = metric_registry_new();
    opts.registry = t->registry;
    t->db = tsdb_open(&opts, err);
    if (!t->db) {
        metric_registry_free(t->registry);
        rm_rf(t->dir);
        return -EIO;
    }
    query_options_t qopts;
    query_options_init(&qopts);
    t->engine = promql_engine_new(t->db, &qopts);
    return 0;
}

static void db_close(test_db_t *t)
{
    if (t->engine)
        promql_engine_free(t->engine);
    if (t->db)
        tsdb_close(t->db);
    if (t->registry)
        metric_registry_free(t->registry);
    rm_rf(t->dir);
    for (size_t i = 0; i < t->histogram_count; i++)
        label_list_free(&t->histograms[i]);
    cairn_free(t->histograms);
    memset(t, 0, sizeof(*t));
}

static void remember_histogram_series(test_db_t *t, const label_list_t *labels)
{
    for (size_t i = 0; i < t->histogram_count; i++) {
        const label_list_t *h = &t->histograms[i];
        bool same = h->count == labels->count;
        for (size_t j = 0; same && j < h->count; j++)
            same = strcmp(h->items[j].name, labels->items[j].name) == 0 &&
                   strcmp(h->items[j].value, labels->items[j].value) == 0;
        if (same)
            return;
    }
    t->histograms = cairn_realloc(t->histograms, (t->histogram_count + 1) * sizeof(*t->histograms));
    label_list_t *copy = &t->histograms[t->histogram_count++];
    memset(copy, 0, sizeof(*copy));
    for (size_t j = 0; j < labels->count; j++)
        label_list_add(copy, labels->items[j].name, labels->items[j].value);
    label_list_sort(copy);
}

/* load_with_nhcb also turns classic histogram series (name_bucket{le=...}, name_count,
 * name_sum) into a native histogram series `name` without le: remember that label set. */
static void remember_nhcb_series(test_db_t *t, const label_list_t *labels)
{
    const char *name = label_list_get(labels, "__name__");
    if (!name)
        return;
    static const char *const suffixes[] = {"_bucket", "_count", "_sum"};
    for (size_t s = 0; s < CAIRN_ARRAY_LEN(suffixes); s++) {
        size_t n = strlen(name), k = strlen(suffixes[s]);
        if (n <= k || strcmp(name + n - k, suffixes[s]) != 0)
            continue;
        if (s == 0) {
            const char *le = label_list_get(labels, "le");
            char *end;
            if (!le || (strtod(le, &end), *end != '\0'))
                return;
        }
        label_list_t base = {0};
        char *base_name = cairn_strndup(name, n - k);
        for (size_t j = 0; j < labels->count; j++) {
            const char *ln = labels->items[j].name;
            if (strcmp(ln, "le") == 0 && s == 0)
                continue;
            label_list_add(&base, ln,
                           strcmp(ln, "__name__") == 0 ? base_name : labels->items[j].value);
        }
        label_list_sort(&base);
        remember_histogram_series(t, &base);
        label_list_free(&base);
        cairn_free(base_name);
        return;
    }
}

static int db_load(test_db_t *t, const promqltest_command_t *cmd, buf_t *notes)
{
    tsdb_appender_t *app = tsdb_appender_new(t->db);
    uint64_t appended = 0;
    for (size_t i = 0; i < cmd->load.series_count; i++) {
        const promqltest_series_t *s = &cmd->load.series[i];
        if (s->has_histogram)
            remember_histogram_series(t, &s->labels);
        if (cmd->load.with_nhcb)
            remember_nhcb_series(t, &s->labels);
        tsdb_label_t *labels = cairn_calloc(s->labels.count + 1, sizeof(*labels));
        for (size_t j = 0; j < s->labels.count; j++) {
            labels[j].name = s->labels.items[j].name;
            labels[j].value = s->labels.items[j].value;
        }
        tsdb_ref_t ref = 0;
        for (size_t k = 0; k < s->value_count; k++) {
            if (s->values[k].kind != PROMQLTEST_VALUE_FLOAT)
                continue;
            int64_t ts = (int64_t)k * cmd->load.interval_ms;
            tsdb_reject_t r = tsdb_append(app, ref, ref ? NULL : labels, ref ? 0 : s->labels.count,
                                          ts, s->values[k].v, &ref);
            if (r != TSDB_REJECT_NONE)
                buf_printf(notes, "line %u: sample at %lld rejected: %s\n", s->line, (long long)ts,
                           tsdb_reject_message(r));
            appended++;
        }
        cairn_free(labels);
    }
    tsdb_commit_result_t result;
    int rc = tsdb_appender_commit(app, &result);
    tsdb_appender_free(app);
    if (rc != 0)
        return rc;
    if (result.first_reason != TSDB_REJECT_NONE)
        buf_printf(notes, "load at line %u: %llu of %llu samples rejected (first: %s)\n", cmd->line,
                   (unsigned long long)(appended - result.appended), (unsigned long long)appended,
                   tsdb_reject_message(result.first_reason));
    return 0;
}

/* ---- skips -------------------------------------------------------------------------------- */

typedef struct skip_walk {
    const test_db_t *t;
    const char *query;
    buf_t *reason;
    bool skip;
} skip_walk_t;

static void check_selector(skip_walk_t *w, const promql_node_t *sel)
{
    size_t n = sel->selector.matcher_count;
    tsdb_matcher_t **matchers = cairn_calloc(n + 1, sizeof(*matchers));
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const promql_matcher_t *m = &sel->selector.matchers[i];
        cairn_error_t err = {{0}};
        matchers[i] = tsdb_matcher_new(m->type, m->name, m->value, &err);
        ok = matchers[i] != NULL;
    }
    for (size_t h = 0; ok && h < w->t->histogram_count && !w->skip; h++) {
        const label_list_t *series = &w->t->histograms[h];
        bool all = true;
        for (size_t i = 0; i < n && all; i++) {
            const char *value = label_list_get(series, sel->selector.matchers[i].name);
            all = tsdb_matcher_matches(matchers[i], value ? value : "");
        }
        if (all) {
            w->skip = true;
            buf_printf(w->reason, "selector %.*s matches native-histogram series ",
                       (int)(sel->pos.end - sel->pos.start), w->query + sel->pos.start);
            promqltest_labels_format(w->reason, series->items, series->count);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (matchers[i])
            tsdb_matcher_free(matchers[i]);
    cairn_free(matchers);
}

static void walk_selectors(skip_walk_t *w, const promql_node_t *node)
{
    if (!node || w->skip)
        return;
    switch (node->kind) {
    case PROMQL_NODE_VECTOR_SELECTOR: check_selector(w, node); break;
    case PROMQL_NODE_MATRIX_SELECTOR: walk_selectors(w, node->matrix.vector); break;
    case PROMQL_NODE_SUBQUERY: walk_selectors(w, node->subquery.expr); break;
    case PROMQL_NODE_PAREN: walk_selectors(w, node->paren.expr); break;
    case PROMQL_NODE_UNARY: walk_selectors(w, node->unary.expr); break;
    case PROMQL_NODE_BINARY:
        walk_selectors(w, node->binary.lhs);
        walk_selectors(w, node->binary.rhs);
        break;
    case PROMQL_NODE_AGGREGATE:
        walk_selectors(w, node->aggregate.expr);
        walk_selectors(w, node->aggregate.param);
        break;
    case PROMQL_NODE_CALL:
        for (size_t i = 0; i < node->call.arg_count; i++)
            walk_selectors(w, node->call.args[i]);
        break;
    default: break;
    }
}

/* Whether the eval is out of scope; the reason goes to reason. */
static bool eval_skipped(const test_db_t *t, const promqltest_eval_t *ev, buf_t *reason)
{
    if (ev->has_histogram) {
        buf_append_str(reason, "expected output holds native histograms");
        return true;
    }
    if (t->histogram_count == 0)
        return false;
    cairn_error_t err = {{0}};
    promql_node_t *root = promql_parse(ev->query, &err);
    if (!root)
        return false;
    skip_walk_t w = {t, ev->query, reason, false};
    walk_selectors(&w, root);
    promql_node_free(root);
    return w.skip;
}

/* ---- the @ modifier re-runs ----------------------------------------------------------------- */

/* Functions whose result depends on the evaluation time even when their arguments do not:
 * with them, adding @ changes the result, so upstream does not re-run such queries. */
static bool at_unsafe_function(promql_function_id_t id)
{
    switch (id) {
    case PROMQL_FN_DAYS_IN_MONTH:
    case PROMQL_FN_DAY_OF_MONTH:
    case PROMQL_FN_DAY_OF_WEEK:
    case PROMQL_FN_DAY_OF_YEAR:
    case PROMQL_FN_HOUR:
    case PROMQL_FN_MINUTE:
    case PROMQL_FN_MONTH:
    case PROMQL_FN_YEAR:
    case PROMQL_FN_PREDICT_LINEAR:
    case PROMQL_FN_TIME:
    case PROMQL_FN_TIMESTAMP:
    /* And the query-context functions, which give the evaluation time for an instant query
     * (upstream skips queries with them, as their results would change too). */
    case PROMQL_FN_START:
    case PROMQL_FN_END:
    case PROMQL_FN_RANGE:
    case PROMQL_FN_STEP: return true;
    default: return false;
    }
}

/* Sets @ t on every selector and subquery that has none (not inside a subquery that has one).
 * Returns false when the query holds an @-unsafe function. */
static bool add_at(promql_node_t *node, int64_t t)
{
    if (!node)
        return true;
    switch (node->kind) {
    case PROMQL_NODE_VECTOR_SELECTOR:
        if (node->selector.at == PROMQL_AT_NONE) {
            node->selector.at = PROMQL_AT_TIME;
            node->selector.at_ms = t;
        }
        return true;
    case PROMQL_NODE_MATRIX_SELECTOR: return add_at(node->matrix.vector, t);
    case PROMQL_NODE_SUBQUERY:
        if (node->subquery.at != PROMQL_AT_NONE)
            return true; /* its inside keeps its own times */
        node->subquery.at = PROMQL_AT_TIME;
        node->subquery.at_ms = t;
        return true;
    case PROMQL_NODE_PAREN: return add_at(node->paren.expr, t);
    case PROMQL_NODE_UNARY: return add_at(node->unary.expr, t);
    case PROMQL_NODE_BINARY: return add_at(node->binary.lhs, t) && add_at(node->binary.rhs, t);
    case PROMQL_NODE_AGGREGATE:
        return add_at(node->aggregate.expr, t) && add_at(node->aggregate.param, t);
    case PROMQL_NODE_CALL:
        if (at_unsafe_function(node->call.func->id))
            return false;
        for (size_t i = 0; i < node->call.arg_count; i++)
            if (!add_at(node->call.args[i], t))
                return false;
        return true;
    default: return true;
    }
}

/* The query with @ eval_time added, or NULL when it cannot be re-run that way. */
static char *query_with_at(const char *query, int64_t eval_time)
{
    cairn_error_t err = {{0}};
    promql_node_t *root = promql_parse(query, &err);
    if (!root)
        return NULL;
    char *out = NULL;
    if (add_at(root, eval_time)) {
        buf_t b = BUF_INIT;
        promql_node_format(root, &b);
        out = buf_detach(&b);
    }
    promql_node_free(root);
    return out;
}

/* ---- running a file ----------------------------------------------------------------------- */

typedef struct file_run {
    const runner_options_t *opts;
    const char *path;
    int progress_fd;
    progress_t counts;
    bool stopped; /* --stop hit */
} file_run_t;

static void send_progress(file_run_t *run, unsigned line)
{
    progress_t p = run->counts;
    p.line = line;
    ssize_t n = write(run->progress_fd, &p, sizeof(p));
    (void)n;
}

static void eval_header(buf_t *out, const file_run_t *run, const promqltest_command_t *cmd)
{
    const promqltest_eval_t *ev = &cmd->eval;
    char a[40], b[40], c[40];
    buf_printf(out, "  %s:%u: ", run->path, cmd->line);
    if (ev->range)
        buf_printf(out, "eval range from %s to %s step %s %s\n",
                   duration_format(ev->start_ms, a, sizeof(a)),
                   duration_format(ev->end_ms, b, sizeof(b)),
                   duration_format(ev->step_ms, c, sizeof(c)), ev->query);
    else
        buf_printf(out, "eval instant at %s %s\n", duration_format(ev->start_ms, a, sizeof(a)),
                   ev->query);
}

static bool run_query(test_db_t *t, const promqltest_eval_t *ev, const char *query,
                      int64_t eval_time, buf_t *why)
{
    promql_result_t result;
    memset(&result, 0, sizeof(result));
    if (ev->range)
        promql_query_range(t->engine, query, ev->start_ms, ev->end_ms, ev->step_ms, NULL, &result);
    else
        promql_query_instant(t->engine, query, eval_time, NULL, &result);
    bool ok = promqltest_eval_check(ev, &result, eval_time, why);
    promql_result_free(&result);
    return ok;
}

/* Upstream also runs an instant query as a range query from t - 1m to t + 1m step 1m and
 * wants the middle step to equal the instant result (values only, annotations aside). Not for
 * queries whose result depends on the query range (start(), end(), range(), step()). */
static bool range_mode_applies(const promqltest_eval_t *ev)
{
    if (ev->fail || ev->ordered || ev->expect_string || ev->range_vector)
        return false;
    static const char *const context_functions[] = {"start()", "end()", "range()", "step()"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(context_functions); i++)
        if (strstr(ev->query, context_functions[i]))
            return false;
    return true;
}

static bool run_range_mode(test_db_t *t, const promqltest_eval_t *ev, const char *query,
                           int64_t eval_time, buf_t *why)
{
    const int64_t minute = 60000;
    promql_result_t range;
    memset(&range, 0, sizeof(range));
    promql_query_range(t->engine, query, eval_time - minute, eval_time + minute, minute, NULL,
                       &range);
    /* The middle step as an instant result, without annotations. */
    promqltest_eval_t plain = *ev;
    memset(&plain.warns, 0, sizeof(plain.warns));
    memset(&plain.infos, 0, sizeof(plain.infos));
    plain.no_warn = plain.no_info = plain.require_warn = plain.require_info = false;
    promql_result_t middle;
    memset(&middle, 0, sizeof(middle));
    middle.error_type = range.error_type;
    middle.error = range.error;
    middle.type = ev->expect_scalar ? PROMQL_VALUE_SCALAR : PROMQL_VALUE_VECTOR;
    if (range.error_type == PROMQL_ERROR_NONE && !range.error)
        middle.series = cairn_calloc(range.series_count + 1, sizeof(*middle.series));
    for (size_t i = 0; middle.series && i < range.series_count; i++) {
        const promql_series_t *s = &range.series[i];
        for (size_t k = 0; k < s->point_count; k++) {
            if (s->points[k].t != eval_time)
                continue;
            promql_series_t *m = &middle.series[middle.series_count++];
            *m = *s;
            m->points = &s->points[k];
            m->point_count = 1;
            if (middle.type == PROMQL_VALUE_SCALAR && middle.series_count == 1)
                middle.scalar = s->points[k].v;
            break;
        }
    }
    if (middle.type == PROMQL_VALUE_SCALAR && middle.series_count != 1 && !middle.error) {
        middle.error_type = PROMQL_ERROR_INTERNAL;
        middle.error = "the range query has no point at the evaluation time";
    }
    if (middle.type == PROMQL_VALUE_SCALAR)
        middle.series_count = 0;
    buf_t inner = BUF_INIT;
    bool ok = promqltest_eval_check(&plain, &middle, eval_time, &inner);
    if (!ok) {
        char a[40], b[40];
        buf_printf(why, "    as a range query from %s to %s step 1m (the middle step): %s\n",
                   duration_format(eval_time - minute, a, sizeof(a)),
                   duration_format(eval_time + minute, b, sizeof(b)), query);
        buf_append(why, inner.data, inner.len);
    }
    buf_free(&inner);
    cairn_free(middle.series);
    promql_result_free(&range);
    return ok;
}

/* Runs the query once at eval_time, then (instant evals, unless --no-rerun) in range mode. */
static bool run_variant(const file_run_t *run, test_db_t *t, const promqltest_eval_t *ev,
                        const char *query, int64_t eval_time, buf_t *why)
{
    if (!run_query(t, ev, query, eval_time, why))
        return false;
    if (ev->range || !run->opts->rerun || !range_mode_applies(ev))
        return true;
    return run_range_mode(t, ev, query, eval_time, why);
}

/* Runs one eval; true when it passed. */
static bool run_eval(file_run_t *run, test_db_t *t, const promqltest_eval_t *ev, buf_t *why)
{
    int64_t eval_time = ev->range_vector ? ev->rv_end_ms : ev->start_ms;
    if (!run_variant(run, t, ev, ev->query, eval_time, why))
        return false;
    if (ev->range || !run->opts->rerun)
        return true;
    char *at_query = query_with_at(ev->query, eval_time);
    if (!at_query)
        return true;
    int64_t times[5];
    size_t count = 0;
    if (eval_time == 0) {
        times[count++] = -1000, times[count++] = 0, times[count++] = 1000;
    } else {
        times[count++] = -10 * eval_time, times[count++] = 0;
        times[count++] = eval_time / 5, times[count++] = eval_time;
        times[count++] = 10 * eval_time;
    }
    bool ok = true;
    for (size_t i = 0; i < count && ok; i++) {
        buf_t inner = BUF_INIT;
        /* The expected vector carries the time the query runs at. */
        ok = run_variant(run, t, ev, at_query, times[i], &inner);
        if (!ok) {
            char a[40];
            buf_printf(why, "    with @ added, evaluated at %s%s: %s\n", times[i] < 0 ? "-" : "",
                       duration_format(times[i] < 0 ? -times[i] : times[i], a, sizeof(a)),
                       at_query);
            buf_append(why, inner.data, inner.len);
        }
        buf_free(&inner);
    }
    cairn_free(at_query);
    return ok;
}

static bool selected(const runner_options_t *opts, const char *path, const char *query)
{
    if (!opts->pattern)
        return true;
    return strstr(path, opts->pattern) || (query && strstr(query, opts->pattern));
}

/* The child's work: runs every command of the script. Returns the process exit status. */
static int run_script(file_run_t *run, const promqltest_script_t *script)
{
    const runner_options_t *opts = run->opts;
    test_db_t t;
    cairn_error_t err = {{0}};
    if (db_open(&t, &err) != 0) {
        printf("  %s: cannot open a TSDB: %s\n", run->path, err.message);
        return 2;
    }
    buf_t out = BUF_INIT;
    for (size_t i = 0; i < script->count && !run->stopped; i++) {
        const promqltest_command_t *cmd = &script->commands[i];
        buf_reset(&out);
        if (cmd->kind == PROMQLTEST_CLEAR) {
            db_close(&t);
            if (db_open(&t, &err) != 0) {
                printf("  %s:%u: cannot open a TSDB: %s\n", run->path, cmd->line, err.message);
                buf_free(&out);
                return 2;
            }
            continue;
        }
        if (cmd->kind == PROMQLTEST_LOAD) {
            int rc = db_load(&t, cmd, &out);
            if (rc != 0) {
                printf("  %s:%u: load failed: %s\n", run->path, cmd->line, cairn_strerror(rc));
                db_close(&t);
                buf_free(&out);
                return 2;
            }
            if (out.len)
                printf("  %s: note: %s", run->path, out.data);
            continue;
        }
        const promqltest_eval_t *ev = &cmd->eval;
        if (!selected(opts, run->path, ev->query))
            continue;
        run->counts.evals++;
        buf_t reason = BUF_INIT;
        if (eval_skipped(&t, ev, &reason)) {
            run->counts.skipped++;
            if (opts->verbose) {
                eval_header(&out, run, cmd);
                buf_printf(&out, "    skipped: %s\n", reason.data);
            }
        } else {
            send_progress(run, cmd->line);
            buf_t why = BUF_INIT;
            if (run_eval(run, &t, ev, &why)) {
                run->counts.passed++;
                if (opts->verbose) {
                    eval_header(&out, run, cmd);
                    buf_append_str(&out, "    ok\n");
                }
            } else {
                run->counts.failed++;
                eval_header(&out, run, cmd);
                buf_append(&out, why.data, why.len);
                run->stopped = opts->stop;
            }
            buf_free(&why);
        }
        buf_free(&reason);
        if (out.len) {
            fwrite(out.data, 1, out.len, stdout);
            fflush(stdout);
        }
    }
    buf_free(&out);
    db_close(&t);
    send_progress(run, 0);
    return 0;
}

static char *read_file(const char *path, cairn_error_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cairn_error_set(err, -errno, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf_t b = BUF_INIT;
    buf_append(&b, "", 0);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        buf_free(&b);
        cairn_error_set(err, -EIO, "%s: read error", path);
        return NULL;
    }
    return buf_detach(&b);
}

/* Counts how many evals of the script the options select. */
static unsigned selected_evals(const runner_options_t *opts, const char *path,
                               const promqltest_script_t *script)
{
    unsigned n = 0;
    for (size_t i = 0; i < script->count; i++)
        if (script->commands[i].kind == PROMQLTEST_EVAL &&
            selected(opts, path, script->commands[i].eval.query))
            n++;
    return n;
}

static const char *query_at_line(const promqltest_script_t *script, unsigned line)
{
    for (size_t i = 0; i < script->count; i++)
        if (script->commands[i].line == line && script->commands[i].kind == PROMQLTEST_EVAL)
            return script->commands[i].eval.query;
    return "?";
}

/* Runs one file in a child process and adds its counts to totals. Returns false when the run
 * should stop (--stop after a failure). */
static bool run_file(const runner_options_t *opts, const char *path, progress_t *totals)
{
    cairn_error_t err = {{0}};
    char *text = read_file(path, &err);
    promqltest_script_t script = {0};
    if (!text || promqltest_script_parse(text, &script, &err) != 0) {
        printf("  %s: %s\nFAIL %s (cannot read the script)\n", path, err.message, path);
        cairn_free(text);
        totals->failed++;
        return !opts->stop;
    }
    cairn_free(text);
    unsigned evals = selected_evals(opts, path, &script);
    if (opts->pattern && evals == 0) {
        promqltest_script_free(&script);
        return true;
    }

    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        alarm(FILE_TIMEOUT_SECONDS);
        file_run_t run = {.opts = opts, .path = path, .progress_fd = fds[1]};
        int status = run_script(&run, &script);
        fflush(stdout);
        _exit(status);
    }
    close(fds[1]);
    progress_t last = {0}, p;
    bool finished = false;
    while (read(fds[0], &p, sizeof(p)) == (ssize_t)sizeof(p)) {
        last = p;
        finished = p.line == 0;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!finished || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        /* The child died (or could not set up): the eval it was running fails. */
        if (WIFSIGNALED(status))
            printf("  %s:%u: %s\n    the engine %s (signal %d)\n", path, last.line,
                   query_at_line(&script, last.line),
                   WTERMSIG(status) == SIGALRM ? "timed out" : "crashed", WTERMSIG(status));
        else
            printf("  %s: the runner failed (exit status %d)\n", path,
                   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        last.failed++;
        unsigned done = last.passed + last.failed + last.skipped;
        printf("FAIL %s (%u evals, %u failed, %u skipped; %u not run)\n", path, evals, last.failed,
               last.skipped, evals > done ? evals - done : 0);
    } else if (last.failed > 0) {
        printf("FAIL %s (%u evals, %u failed, %u skipped)\n", path, last.evals, last.failed,
               last.skipped);
    } else {
        printf("PASS %s (%u evals, %u skipped)\n", path, last.evals, last.skipped);
    }
    fflush(stdout);
    totals->passed += last.passed;
    totals->failed += last.failed;
    totals->skipped += last.skipped;
    promqltest_script_free(&script);
    return !(opts->stop && last.failed > 0);
}

/* ---- main --------------------------------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_test_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".test") == 0;
}

/* Expands the arguments into the list of files to run. */
static int collect_files(char **args, int count, char ***files, size_t *file_count)
{
    size_t cap = 0;
    for (int i = 0; i < count; i++) {
        struct stat st;
        if (stat(args[i], &st) != 0) {
            fprintf(stderr, "promqltest: %s: %s\n", args[i], strerror(errno));
            return -1;
        }
        char **found = NULL;
        size_t found_count = 0;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(args[i]);
            if (!d) {
                fprintf(stderr, "promqltest: %s: %s\n", args[i], strerror(errno));
                return -1;
            }
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!has_test_suffix(e->d_name))
                    continue;
                found = cairn_realloc(found, (found_count + 1) * sizeof(*found));
                size_t len = strlen(args[i]);
                bool slash = len > 0 && args[i][len - 1] == '/';
                found[found_count++] =
                    cairn_sprintf("%s%s%s", args[i], slash ? "" : "/", e->d_name);
            }
            closedir(d);
            qsort(found, found_count, sizeof(*found), compare_strings);
        } else {
            found = cairn_malloc(sizeof(*found));
            found[found_count++] = cairn_strdup(args[i]);
        }
        for (size_t j = 0; j < found_count; j++) {
            if (*file_count == cap) {
                cap = cap ? cap * 2 : 16;
                *files = cairn_realloc(*files, cap * sizeof(**files));
            }
            (*files)[(*file_count)++] = found[j];
        }
        cairn_free(found);
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: promqltest [-v] [-k PATTERN] [--stop] [--no-rerun] DIR|FILE...\n"
               "Runs promqltest scripts (*.test) against Cairn's PromQL engine.\n"
               "  -v          print every evaluation (and why skipped ones are skipped)\n"
               "  -k PATTERN  only files or queries containing PATTERN\n"
               "  --stop      stop at the first failure\n"
               "  --no-rerun  run instant evaluations once (not also in range mode and with @)\n");
}

int main(int argc, char **argv)
{
    runner_options_t opts = {.rerun = true};
    static const struct option long_options[] = {
        {"stop", no_argument, NULL, 's'},
        {"no-rerun", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "vk:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'v': opts.verbose = true; break;
        case 'k': opts.pattern = optarg; break;
        case 's': opts.stop = true; break;
        case 'a': opts.rerun = false; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    char **files = NULL;
    size_t file_count = 0;
    if (collect_files(argv + optind, argc - optind, &files, &file_count) != 0)
        return 2;
    if (file_count == 0) {
        fprintf(stderr, "promqltest: no *.test files found\n");
        return 2;
    }

    const char *tmp = getenv("TMPDIR");
    snprintf(base_dir, sizeof(base_dir), "%s/promqltest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base_dir)) {
        fprintf(stderr, "promqltest: mkdtemp %s: %s\n", base_dir, strerror(errno));
        return 2;
    }
    log_set_level(LOG_LEVEL_WARN);

    progress_t totals = {0};
    for (size_t i = 0; i < file_count; i++) {
        if (!run_file(&opts, files[i], &totals))
            break;
    }
    for (size_t i = 0; i < file_count; i++)
        cairn_free(files[i]);
    cairn_free(files);
    rm_rf(base_dir);

    printf("%u passed, %u failed, %u skipped\n", totals.passed, totals.failed, totals.skipped);
    return totals.failed > 0 ? 1 : 0;
}
