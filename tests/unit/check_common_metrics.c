/*
 * tests/unit/check_common_metrics.c: unit tests for the self-metrics registry in
 * common/metrics.c.
 *
 * Every test builds its own registry with metric_registry_new() so nothing leaks between tests,
 * updates counters, gauges and histograms through the public API, and compares the Prometheus
 * text format 0.0.4 that metric_registry_render produces. The concurrency test hammers shared
 * children from 8 threads and require exact totals.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static const double BOUNDS[] = {0.1, 1, 10};

/* Renders the whole registry into a string the caller frees with cairn_free. */
static char *render(metric_registry_t *reg)
{
    buf_t out = BUF_INIT;
    metric_registry_render(reg, &out);
    return buf_detach(&out);
}

static void assert_contains(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "[%s] not found in:\n%s", needle, text);
}

/* --- counters ------------------------------------------------------------------------------- */

START_TEST(test_counter)
{
    metric_registry_t *reg = metric_registry_new();
    metric_counter_t *c = metric_counter_new(reg, "test_events_total", "Events seen.");
    ck_assert_ptr_nonnull(c);
    ck_assert_double_eq(metric_counter_value(c), 0);

    metric_counter_add_float(c, 0.5);
    metric_counter_add_float(c, 0.5);
    metric_counter_add(c, 3);
    ck_assert_double_eq(metric_counter_value(c), 4);

    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP test_events_total Events seen.\n"
                           "# TYPE test_events_total counter\n"
                           "test_events_total 4\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_counter_ignores_bad_deltas)
{
    metric_registry_t *reg = metric_registry_new();
    metric_counter_t *c = metric_counter_new(reg, "test_total", "Help.");
    metric_counter_add(c, 4);
    metric_counter_add_float(c, -1);
    metric_counter_add_float(c, -0.5);
    metric_counter_add_float(c, NAN);
    metric_counter_add_float(c, 0);
    ck_assert_double_eq(metric_counter_value(c), 4);

    char *text = render(reg);
    assert_contains(text, "\ntest_total 4\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_counter_zero_is_rendered)
{
    metric_registry_t *reg = metric_registry_new();
    metric_counter_new(reg, "untouched_total", "Never incremented.");
    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP untouched_total Never incremented.\n"
                           "# TYPE untouched_total counter\n"
                           "untouched_total 0\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_counter_labelled)
{
    static const char *const names[] = {"a", "b"};
    metric_registry_t *reg = metric_registry_new();
    metric_family_t *fam =
        metric_family_new(reg, METRIC_COUNTER, "req_total", "Requests.", 2, names);
    ck_assert_ptr_nonnull(fam);

    const char *const xy[] = {"x", "y"};
    const char *const xz[] = {"x", "z"};
    metric_counter_t *c1 = metric_counter_with(fam, xy);
    metric_counter_t *c2 = metric_counter_with(fam, xz);
    ck_assert_ptr_nonnull(c1);
    ck_assert_ptr_nonnull(c2);
    ck_assert_ptr_ne(c1, c2);

    /* The same values give the same child, even from different arrays. */
    const char *const xy_again[] = {"x", "y"};
    ck_assert_ptr_eq(metric_counter_with(fam, xy_again), c1);

    metric_counter_add(c1, 1);
    metric_counter_add(c2, 2);
    metric_counter_add(metric_counter_with(fam, xy), 10);
    ck_assert_double_eq(metric_counter_value(c1), 11);
    ck_assert_double_eq(metric_counter_value(c2), 2);

    char *text = render(reg);
    const char *head = "# HELP req_total Requests.\n# TYPE req_total counter\n";
    ck_assert_int_eq(strncmp(text, head, strlen(head)), 0);
    assert_contains(text, "\nreq_total{a=\"x\",b=\"y\"} 11\n");
    assert_contains(text, "\nreq_total{a=\"x\",b=\"z\"} 2\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_label_values_escaped)
{
    static const char *const names[] = {"a", "b"};
    metric_registry_t *reg = metric_registry_new();
    metric_family_t *fam = metric_family_new(reg, METRIC_COUNTER, "esc_total", "Help.", 2, names);

    const char *const values[] = {"say \"hi\"", "back\\slash\nnew line"};
    metric_counter_add(metric_counter_with(fam, values), 1);

    char *text = render(reg);
    assert_contains(text, "\nesc_total{a=\"say \\\"hi\\\"\",b=\"back\\\\slash\\nnew line\"} 1\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* Label values passed to metric_*_with may be temporaries: the child keeps its own copies. */
START_TEST(test_label_values_copied)
{
    static const char *const names[] = {"handler"};
    metric_registry_t *reg = metric_registry_new();
    metric_family_t *fam = metric_family_new(reg, METRIC_COUNTER, "h_total", "Help.", 1, names);

    char value[32] = "/api/v1/query";
    const char *values[] = {value};
    metric_counter_t *c = metric_counter_with(fam, values);
    metric_counter_add(c, 1);
    strcpy(value, "/overwritten");

    char *text = render(reg);
    assert_contains(text, "\nh_total{handler=\"/api/v1/query\"} 1\n");
    cairn_free(text);

    strcpy(value, "/api/v1/query");
    ck_assert_ptr_eq(metric_counter_with(fam, values), c);
    metric_registry_free(reg);
}
END_TEST

/* Family names, help and label names are copied too. */
START_TEST(test_family_strings_copied)
{
    char name[32] = "copied_total", help[32] = "Copied help.", label[32] = "lbl";
    const char *names[] = {label};
    metric_registry_t *reg = metric_registry_new();
    metric_family_t *fam = metric_family_new(reg, METRIC_COUNTER, name, help, 1, names);
    const char *const values[] = {"v"};
    metric_counter_add(metric_counter_with(fam, values), 1);
    strcpy(name, "xxxxx");
    strcpy(help, "xxxxx");
    strcpy(label, "xxxxx");

    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP copied_total Copied help.\n"
                           "# TYPE copied_total counter\n"
                           "copied_total{lbl=\"v\"} 1\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_help_escaped)
{
    metric_registry_t *reg = metric_registry_new();
    metric_counter_new(reg, "help_total", "Line one\nline \"two\" with \\ backslash.");
    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP help_total Line one\\nline \"two\" with \\\\ backslash.\n"
                           "# TYPE help_total counter\n"
                           "help_total 0\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* --- gauges --------------------------------------------------------------------------------- */

START_TEST(test_gauge)
{
    metric_registry_t *reg = metric_registry_new();
    metric_gauge_t *g = metric_gauge_new(reg, "queue_length", "Items queued.");
    ck_assert_double_eq(metric_gauge_value(g), 0);

    metric_gauge_set(g, 3.5);
    ck_assert_double_eq(metric_gauge_value(g), 3.5);
    metric_gauge_add(g, -1);
    metric_gauge_add(g, 0.25);
    ck_assert_double_eq(metric_gauge_value(g), 2.75);

    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP queue_length Items queued.\n"
                           "# TYPE queue_length gauge\n"
                           "queue_length 2.75\n");
    cairn_free(text);

    /* Gauges go down, below zero, and render special values as Prometheus does. */
    metric_gauge_set(g, -2);
    ck_assert_double_eq(metric_gauge_value(g), -2);
    text = render(reg);
    assert_contains(text, "\nqueue_length -2\n");
    cairn_free(text);

    metric_gauge_set(g, 1e6);
    text = render(reg);
    assert_contains(text, "\nqueue_length 1e+06\n");
    cairn_free(text);

    metric_gauge_set(g, -INFINITY);
    text = render(reg);
    assert_contains(text, "\nqueue_length -Inf\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_gauge_labelled)
{
    static const char *const names[] = {"pool"};
    metric_registry_t *reg = metric_registry_new();
    metric_family_t *fam = metric_family_new(reg, METRIC_GAUGE, "pool_bytes", "Bytes.", 1, names);
    const char *const chunks[] = {"chunks"};
    const char *const series[] = {"series"};
    metric_gauge_t *g1 = metric_gauge_with(fam, chunks);
    metric_gauge_t *g2 = metric_gauge_with(fam, series);
    ck_assert_ptr_ne(g1, g2);
    ck_assert_ptr_eq(metric_gauge_with(fam, chunks), g1);
    metric_gauge_set(g1, 1024);
    metric_gauge_set(g2, 0.5);

    char *text = render(reg);
    assert_contains(text, "# TYPE pool_bytes gauge\n");
    assert_contains(text, "\npool_bytes{pool=\"chunks\"} 1024\n");
    assert_contains(text, "\npool_bytes{pool=\"series\"} 0.5\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* --- histograms ----------------------------------------------------------------------------- */

START_TEST(test_histogram)
{
    metric_registry_t *reg = metric_registry_new();
    metric_histogram_t *h = metric_histogram_new(reg, "op_seconds", "Operation latency.",
                                                 CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);
    metric_histogram_observe(h, 0.05);
    metric_histogram_observe(h, 0.5);
    metric_histogram_observe(h, 5);
    metric_histogram_observe(h, 50);
    ck_assert_uint_eq(metric_histogram_count(h), 4);
    ck_assert_double_eq(metric_histogram_sum(h), 0.05 + 0.5 + 5 + 50);

    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP op_seconds Operation latency.\n"
                           "# TYPE op_seconds histogram\n"
                           "op_seconds_bucket{le=\"0.1\"} 1\n"
                           "op_seconds_bucket{le=\"1\"} 2\n"
                           "op_seconds_bucket{le=\"10\"} 3\n"
                           "op_seconds_bucket{le=\"+Inf\"} 4\n"
                           "op_seconds_sum 55.55\n"
                           "op_seconds_count 4\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* Buckets are "less than or equal": a value on a bound counts in that bound's bucket. */
START_TEST(test_histogram_bounds_inclusive)
{
    metric_registry_t *reg = metric_registry_new();
    metric_histogram_t *h =
        metric_histogram_new(reg, "edge_seconds", "Help.", CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);
    metric_histogram_observe(h, 0.1);
    metric_histogram_observe(h, 1);
    metric_histogram_observe(h, 1);
    metric_histogram_observe(h, 10);
    metric_histogram_observe(h, 10.000001);

    char *text = render(reg);
    assert_contains(text, "\nedge_seconds_bucket{le=\"0.1\"} 1\n");
    assert_contains(text, "\nedge_seconds_bucket{le=\"1\"} 3\n");
    assert_contains(text, "\nedge_seconds_bucket{le=\"10\"} 4\n");
    assert_contains(text, "\nedge_seconds_bucket{le=\"+Inf\"} 5\n");
    assert_contains(text, "\nedge_seconds_count 5\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_histogram_labelled)
{
    static const char *const names[] = {"code", "method"};
    metric_registry_t *reg = metric_registry_new();
    metric_family_t *fam = metric_histogram_family_new(reg, "http_seconds", "HTTP latency.", 2,
                                                       names, CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);
    const char *const ok_get[] = {"200", "GET"};
    metric_histogram_t *h = metric_histogram_with(fam, ok_get);
    ck_assert_ptr_eq(metric_histogram_with(fam, ok_get), h);
    metric_histogram_observe(h, 0.5);
    metric_histogram_observe(h, 2);

    char *text = render(reg);
    ck_assert_str_eq(text, "# HELP http_seconds HTTP latency.\n"
                           "# TYPE http_seconds histogram\n"
                           "http_seconds_bucket{code=\"200\",method=\"GET\",le=\"0.1\"} 0\n"
                           "http_seconds_bucket{code=\"200\",method=\"GET\",le=\"1\"} 1\n"
                           "http_seconds_bucket{code=\"200\",method=\"GET\",le=\"10\"} 2\n"
                           "http_seconds_bucket{code=\"200\",method=\"GET\",le=\"+Inf\"} 2\n"
                           "http_seconds_sum{code=\"200\",method=\"GET\"} 2.5\n"
                           "http_seconds_count{code=\"200\",method=\"GET\"} 2\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_latency_buckets)
{
    ck_assert_uint_gt(METRIC_LATENCY_BUCKET_COUNT, 2);
    ck_assert_double_eq(METRIC_LATENCY_BUCKETS[0], 0.0001);
    ck_assert_double_eq(METRIC_LATENCY_BUCKETS[METRIC_LATENCY_BUCKET_COUNT - 1], 60);
    for (size_t i = 1; i < METRIC_LATENCY_BUCKET_COUNT; i++)
        ck_assert_double_gt(METRIC_LATENCY_BUCKETS[i], METRIC_LATENCY_BUCKETS[i - 1]);

    /* Usable as histogram bounds as they are. */
    metric_registry_t *reg = metric_registry_new();
    metric_histogram_t *h = metric_histogram_new(
        reg, "lat_seconds", "Help.", METRIC_LATENCY_BUCKET_COUNT, METRIC_LATENCY_BUCKETS);
    metric_histogram_observe(h, 0.00005);
    char *text = render(reg);
    assert_contains(text, "\nlat_seconds_bucket{le=\"0.0001\"} 1\n");
    assert_contains(text, "\nlat_seconds_bucket{le=\"60\"} 1\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* --- registry ------------------------------------------------------------------------------- */

START_TEST(test_families_in_registration_order)
{
    metric_registry_t *reg = metric_registry_new();
    metric_gauge_new(reg, "zeta", "Registered first.");
    metric_counter_new(reg, "alpha_total", "Registered second.");
    metric_histogram_new(reg, "mid_seconds", "Registered third.", CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);

    char *text = render(reg);
    const char *zeta = strstr(text, "# HELP zeta ");
    const char *alpha = strstr(text, "# HELP alpha_total ");
    const char *mid = strstr(text, "# HELP mid_seconds ");
    ck_assert_ptr_nonnull(zeta);
    ck_assert_ptr_nonnull(alpha);
    ck_assert_ptr_nonnull(mid);
    ck_assert_msg(zeta < alpha && alpha < mid, "families out of registration order:\n%s", text);
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* Registries are independent: the same family name may live in two of them. */
START_TEST(test_registries_isolated)
{
    metric_registry_t *r1 = metric_registry_new();
    metric_registry_t *r2 = metric_registry_new();
    metric_counter_t *c1 = metric_counter_new(r1, "same_total", "In r1.");
    metric_counter_t *c2 = metric_counter_new(r2, "same_total", "In r2.");
    metric_counter_add(c1, 1);
    metric_counter_add(c2, 2);

    char *t1 = render(r1);
    char *t2 = render(r2);
    ck_assert_str_eq(t1, "# HELP same_total In r1.\n# TYPE same_total counter\nsame_total 1\n");
    ck_assert_str_eq(t2, "# HELP same_total In r2.\n# TYPE same_total counter\nsame_total 2\n");
    cairn_free(t1);
    cairn_free(t2);
    metric_registry_free(r1);
    metric_registry_free(r2);
}
END_TEST

START_TEST(test_registry_default)
{
    metric_registry_t *reg = metric_registry_default();
    ck_assert_ptr_nonnull(reg);
    ck_assert_ptr_eq(metric_registry_default(), reg);
}
END_TEST

/* A duplicate family name is a programming error: the registry panics (SIGABRT). */
START_TEST(test_duplicate_family_panics)
{
    metric_registry_t *reg = metric_registry_new();
    metric_counter_new(reg, "dup_total", "First.");
    metric_gauge_new(reg, "dup_total", "Second.");
    ck_abort_msg("registering dup_total twice did not panic");
}
END_TEST

/* --- collectors ----------------------------------------------------------------------------- */

struct collector_ctx {
    int calls;
    const char *name;
};

static void sample_collector(void *ctx, buf_t *out)
{
    struct collector_ctx *c = ctx;
    static const char *const names[] = {"kind", "note"};
    const char *const values[] = {"rss", "a \"b\""};
    c->calls++;
    metric_write_header(out, c->name, "Collected at render time.", METRIC_GAUGE);
    metric_write_sample(out, c->name, 2, names, values, 7);
    metric_write_sample(out, c->name, 0, NULL, NULL, c->calls);
}

START_TEST(test_collector)
{
    metric_registry_t *reg = metric_registry_new();
    struct collector_ctx first = {0, "first_collected"};
    struct collector_ctx second = {0, "second_collected"};

    /* Registered before the family, yet rendered after it. */
    metric_registry_add_collector(reg, sample_collector, &first);
    metric_counter_t *c = metric_counter_new(reg, "family_total", "A family.");
    metric_counter_add(c, 1);
    metric_registry_add_collector(reg, sample_collector, &second);

    char *text = render(reg);
    ck_assert_int_eq(first.calls, 1);
    ck_assert_int_eq(second.calls, 1);
    ck_assert_str_eq(text, "# HELP family_total A family.\n"
                           "# TYPE family_total counter\n"
                           "family_total 1\n"
                           "# HELP first_collected Collected at render time.\n"
                           "# TYPE first_collected gauge\n"
                           "first_collected{kind=\"rss\",note=\"a \\\"b\\\"\"} 7\n"
                           "first_collected 1\n"
                           "# HELP second_collected Collected at render time.\n"
                           "# TYPE second_collected gauge\n"
                           "second_collected{kind=\"rss\",note=\"a \\\"b\\\"\"} 7\n"
                           "second_collected 1\n");
    cairn_free(text);

    /* Collectors run on every render. */
    text = render(reg);
    ck_assert_int_eq(first.calls, 2);
    assert_contains(text, "\nfirst_collected 2\n");
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

START_TEST(test_write_helpers)
{
    buf_t out = BUF_INIT;
    metric_write_header(&out, "c_total", "Counter \\ help\n2nd line.", METRIC_COUNTER);
    metric_write_header(&out, "h_seconds", "Histogram.", METRIC_HISTOGRAM);
    static const char *const names[] = {"z", "a"};
    const char *const values[] = {"last", "first\n"};
    metric_write_sample(&out, "c_total", 2, names, values, 1.5);
    metric_write_sample(&out, "plain", 0, NULL, NULL, INFINITY);
    metric_write_sample(&out, "plain", 0, NULL, NULL, NAN);
    metric_write_sample(&out, "plain", 0, NULL, NULL, 1e-7);
    ck_assert_str_eq(out.data, "# HELP c_total Counter \\\\ help\\n2nd line.\n"
                               "# TYPE c_total counter\n"
                               "# HELP h_seconds Histogram.\n"
                               "# TYPE h_seconds histogram\n"
                               "c_total{z=\"last\",a=\"first\\n\"} 1.5\n"
                               "plain +Inf\n"
                               "plain NaN\n"
                               "plain 1e-07\n");
    buf_free(&out);
}
END_TEST

/* --- names ---------------------------------------------------------------------------------- */

START_TEST(test_name_validation)
{
    static const char *const good_metric[] = {
        "a", "_x", "a:b", ":x", "up", "http_requests_total", "A9_:z"};
    static const char *const bad_metric[] = {"", "1a", "a-b", "a b", "a.b", "\xc3\xa9", "a{"};
    static const char *const good_label[] = {"a", "_x", "le", "__name__", "Abc_123"};
    static const char *const bad_label[] = {"", "1a", "a:b", ":x", "a-b", "a b", "\xc3\xa9"};

    for (size_t i = 0; i < CAIRN_ARRAY_LEN(good_metric); i++)
        ck_assert_msg(metric_name_is_valid(good_metric[i]), "rejected metric name \"%s\"",
                      good_metric[i]);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(bad_metric); i++)
        ck_assert_msg(!metric_name_is_valid(bad_metric[i]), "accepted metric name \"%s\"",
                      bad_metric[i]);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(good_label); i++)
        ck_assert_msg(label_name_is_valid(good_label[i]), "rejected label name \"%s\"",
                      good_label[i]);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(bad_label); i++)
        ck_assert_msg(!label_name_is_valid(bad_label[i]), "accepted label name \"%s\"",
                      bad_label[i]);
}
END_TEST

/* --- output format -------------------------------------------------------------------------- */

#define NAME_RE  "[a-zA-Z_:][a-zA-Z0-9_:]*"
#define LABEL_RE "[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
#define VALUE_RE "([-+]?[0-9]+(\\.[0-9]+)?(e[-+][0-9]+)?|[-+]Inf|NaN)"

/* Every line of a mixed registry is a HELP line, a TYPE line, or name{labels} value. */
START_TEST(test_output_parseable)
{
    metric_registry_t *reg = metric_registry_new();
    metric_counter_add(metric_counter_new(reg, "c_total", "Counter."), 123456789);
    metric_gauge_set(metric_gauge_new(reg, "g_ratio", "Gauge."), -0.000012);
    static const char *const names[] = {"path", "code"};
    metric_family_t *cf = metric_family_new(reg, METRIC_COUNTER, "lc_total", "Help.", 2, names);
    const char *const v1[] = {"/a \"b\"\\", "200"};
    const char *const v2[] = {"line\nbreak", "500"};
    metric_counter_add_float(metric_counter_with(cf, v1), 0.1);
    metric_counter_add(metric_counter_with(cf, v2), 1);
    metric_family_t *hf = metric_histogram_family_new(reg, "lh_seconds", "Help.", 2, names,
                                                      CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);
    metric_histogram_observe(metric_histogram_with(hf, v1), 3);
    metric_histogram_observe(
        metric_histogram_new(reg, "h_seconds", "Help.", CAIRN_ARRAY_LEN(BOUNDS), BOUNDS), 1e300);
    struct collector_ctx ctx = {0, "coll"};
    metric_registry_add_collector(reg, sample_collector, &ctx);

    char *text = render(reg);
    size_t len = strlen(text);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(text[len - 1], '\n');

    regex_t help, type, sample;
    ck_assert_int_eq(regcomp(&help, "^# HELP " NAME_RE " .*$", REG_EXTENDED | REG_NOSUB), 0);
    ck_assert_int_eq(
        regcomp(&type, "^# TYPE " NAME_RE " (counter|gauge|histogram)$", REG_EXTENDED | REG_NOSUB),
        0);
    ck_assert_int_eq(regcomp(&sample,
                             "^" NAME_RE "(\\{" LABEL_RE "(," LABEL_RE ")*\\})? " VALUE_RE "$",
                             REG_EXTENDED | REG_NOSUB),
                     0);

    int lines = 0;
    for (char *line = text, *end; *line != '\0'; line = end + 1) {
        end = strchr(line, '\n');
        *end = '\0';
        regex_t *re = strncmp(line, "# HELP ", 7) == 0   ? &help
                      : strncmp(line, "# TYPE ", 7) == 0 ? &type
                                                         : &sample;
        ck_assert_msg(regexec(re, line, 0, NULL, 0) == 0, "unparseable line [%s]", line);
        lines++;
    }
    /* 5 families and 1 collector: 12 header lines, 1+1+2+6+6+2 samples. */
    ck_assert_int_eq(lines, 12 + 18);

    regfree(&help);
    regfree(&type);
    regfree(&sample);
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* --- concurrency ---------------------------------------------------------------------------- */

#define THREADS       8
#define COUNTER_ADDS  1000000
#define OBSERVATIONS  100000
#define SHARED_VALUES 50
#define LOOKUP_ROUNDS 20

/* Exact in binary, so the sum of all observations is exact in any order. */
static const double OBSERVED[] = {0.0625, 0.5, 5, 50};

struct worker {
    pthread_t thread;
    pthread_barrier_t *start;
    metric_counter_t *counter;
    metric_histogram_t *histogram;
    metric_family_t *family;
    metric_counter_t *children[SHARED_VALUES]; /* what this thread's lookups returned */
    int lookup_mismatches;                     /* lookups that disagreed with the first */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->start);

    for (int round = 0; round < LOOKUP_ROUNDS; round++) {
        for (int k = 0; k < SHARED_VALUES; k++) {
            char value[16];
            snprintf(value, sizeof value, "v%02d", k);
            const char *const values[] = {value};
            metric_counter_t *c = metric_counter_with(w->family, values);
            if (round == 0)
                w->children[k] = c;
            else if (c != w->children[k])
                w->lookup_mismatches++;
            metric_counter_add(c, 1);
        }
    }
    for (int i = 0; i < COUNTER_ADDS; i++)
        metric_counter_add(w->counter, 1);
    for (int i = 0; i < OBSERVATIONS; i++)
        metric_histogram_observe(w->histogram, OBSERVED[i % CAIRN_ARRAY_LEN(OBSERVED)]);
    return NULL;
}

START_TEST(test_concurrent_updates)
{
    static const char *const names[] = {"value"};
    metric_registry_t *reg = metric_registry_new();
    metric_counter_t *counter = metric_counter_new(reg, "conc_total", "Help.");
    metric_histogram_t *histogram =
        metric_histogram_new(reg, "conc_seconds", "Help.", CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);
    metric_family_t *family =
        metric_family_new(reg, METRIC_COUNTER, "conc_lookup_total", "Help.", 1, names);

    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
    static struct worker workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (struct worker){
            .start = &start, .counter = counter, .histogram = histogram, .family = family};
        ck_assert_int_eq(pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_join(workers[t].thread, NULL), 0);
    pthread_barrier_destroy(&start);

    /* Concurrent get-or-create agreed on one child per value, and no update was lost. */
    for (int t = 0; t < THREADS; t++) {
        ck_assert_int_eq(workers[t].lookup_mismatches, 0);
        for (int k = 0; k < SHARED_VALUES; k++) {
            ck_assert_ptr_nonnull(workers[t].children[k]);
            ck_assert_ptr_eq(workers[t].children[k], workers[0].children[k]);
        }
    }
    for (int k = 0; k < SHARED_VALUES; k++)
        ck_assert_double_eq(metric_counter_value(workers[0].children[k]), THREADS * LOOKUP_ROUNDS);

    ck_assert_double_eq(metric_counter_value(counter), (double)THREADS * COUNTER_ADDS);
    ck_assert_uint_eq(metric_histogram_count(histogram), THREADS * OBSERVATIONS);
    ck_assert_double_eq(metric_histogram_sum(histogram), 11112500);

    char *text = render(reg);
    /* THREADS * OBSERVATIONS / 4 observations of each value. */
    assert_contains(text, "\nconc_seconds_bucket{le=\"0.1\"} 200000\n");
    assert_contains(text, "\nconc_seconds_bucket{le=\"1\"} 400000\n");
    assert_contains(text, "\nconc_seconds_bucket{le=\"10\"} 600000\n");
    assert_contains(text, "\nconc_seconds_bucket{le=\"+Inf\"} 800000\n");
    assert_contains(text, "\nconc_seconds_count 800000\n");
    assert_contains(text, "\nconc_lookup_total{value=\"v00\"} 160\n");
    assert_contains(text, "\nconc_lookup_total{value=\"v49\"} 160\n");
    int children = 0;
    for (const char *p = text; (p = strstr(p, "\nconc_lookup_total{")) != NULL; p++)
        children++;
    ck_assert_int_eq(children, SHARED_VALUES);
    cairn_free(text);
    metric_registry_free(reg);
}
END_TEST

/* --- memory --------------------------------------------------------------------------------- */

static long hook_live; /* blocks handed out through the hooks and not yet freed */

static void *counting_malloc(size_t size)
{
    hook_live++;
    return malloc(size);
}

static void *counting_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        hook_live++;
    return realloc(ptr, size);
}

static void counting_free(void *ptr)
{
    if (ptr != NULL)
        hook_live--;
    free(ptr);
}

/* The registry allocates through the hooks and metric_registry_free gives all of it back. */
START_TEST(test_registry_free_releases_everything)
{
    static const cairn_alloc_hooks_t hooks = {counting_malloc, counting_realloc, counting_free};
    cairn_alloc_set_hooks(&hooks);

    metric_registry_t *reg = metric_registry_new();
    static const char *const names[] = {"a", "b"};
    metric_family_t *cf = metric_family_new(reg, METRIC_COUNTER, "m_total", "Help.", 2, names);
    for (int i = 0; i < 100; i++) {
        char value[16];
        snprintf(value, sizeof value, "%d", i);
        const char *const values[] = {value, "x"};
        metric_counter_add(metric_counter_with(cf, values), 1);
    }
    metric_family_t *hf = metric_histogram_family_new(reg, "m_seconds", "Help.", 2, names,
                                                      CAIRN_ARRAY_LEN(BOUNDS), BOUNDS);
    const char *const values[] = {"1", "2"};
    metric_histogram_observe(metric_histogram_with(hf, values), 1);
    metric_gauge_set(metric_gauge_new(reg, "m_gauge", "Help."), 1);
    struct collector_ctx ctx = {0, "m_coll"};
    metric_registry_add_collector(reg, sample_collector, &ctx);
    ck_assert_int_gt(hook_live, 0);

    char *text = render(reg);
    cairn_free(text);
    metric_registry_free(reg);
    ck_assert_int_eq(hook_live, 0);
    cairn_alloc_set_hooks(NULL);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("common_metrics");

    TCase *tc = tcase_create("counter");
    tcase_add_test(tc, test_counter);
    tcase_add_test(tc, test_counter_ignores_bad_deltas);
    tcase_add_test(tc, test_counter_zero_is_rendered);
    tcase_add_test(tc, test_counter_labelled);
    tcase_add_test(tc, test_label_values_escaped);
    tcase_add_test(tc, test_label_values_copied);
    tcase_add_test(tc, test_family_strings_copied);
    tcase_add_test(tc, test_help_escaped);
    suite_add_tcase(s, tc);

    tc = tcase_create("gauge");
    tcase_add_test(tc, test_gauge);
    tcase_add_test(tc, test_gauge_labelled);
    suite_add_tcase(s, tc);

    tc = tcase_create("histogram");
    tcase_add_test(tc, test_histogram);
    tcase_add_test(tc, test_histogram_bounds_inclusive);
    tcase_add_test(tc, test_histogram_labelled);
    tcase_add_test(tc, test_latency_buckets);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_test(tc, test_families_in_registration_order);
    tcase_add_test(tc, test_registries_isolated);
    tcase_add_test(tc, test_registry_default);
    tcase_add_test_raise_signal(tc, test_duplicate_family_panics, SIGABRT);
    tcase_add_test(tc, test_collector);
    tcase_add_test(tc, test_write_helpers);
    tcase_add_test(tc, test_name_validation);
    tcase_add_test(tc, test_output_parseable);
    tcase_add_test(tc, test_registry_free_releases_everything);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_concurrent_updates);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
