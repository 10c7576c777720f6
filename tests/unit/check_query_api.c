/*
 * tests/unit/check_query_api.c: unit tests for the HTTP API's parameter syntaxes
 * (query/api_params.c) and JSON rendering (query/api_json.c).
 *
 * Expected strings are what Prometheus (Go's strconv and encoding/json, and the API's own
 * encoders) writes for the same input; the tricky ones are commented with the rule they check.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "query/api_internal.h"

/* ---- times ------------------------------------------------------------------------------------
 */

static int64_t time_ok(const char *s)
{
    int64_t ms = 0;
    cairn_error_t err = {{0}};
    int rc = api_parse_time(s, &ms, &err);
    ck_assert_msg(rc == 0, "api_parse_time(\"%s\") failed: %s", s, err.message);
    return ms;
}

static void time_bad(const char *s, const char *message)
{
    int64_t ms = 0;
    cairn_error_t err = {{0}};
    ck_assert_int_eq(api_parse_time(s, &ms, &err), -EINVAL);
    ck_assert_str_eq(err.message, message);
}

START_TEST(test_time_unix_seconds)
{
    ck_assert_int_eq(time_ok("1435781451.781"), 1435781451781LL);
    ck_assert_int_eq(time_ok("1435781451"), 1435781451000LL);
    ck_assert_int_eq(time_ok("0"), 0);
    ck_assert_int_eq(time_ok("1e3"), 1000000);
    ck_assert_int_eq(time_ok("+12.5"), 12500);
    /* The fraction is rounded to the millisecond, half away from zero. */
    ck_assert_int_eq(time_ok("1.9999"), 2000);
    ck_assert_int_eq(time_ok("1.2345"), 1234); /* 0.2345 is 0.23449999... in binary */
    ck_assert_int_eq(time_ok("1.0005"), 1000); /* 0.0005 is 0.00049999... */
    ck_assert_int_eq(time_ok("-1.5"), -1500);
    ck_assert_int_eq(time_ok("-0.0004"), 0);
    /* Hexadecimal floats need an exponent, as in Go. */
    ck_assert_int_eq(time_ok("0x1p4"), 16000);
    time_bad("0x10", "cannot parse \"0x10\" to a valid timestamp");
}
END_TEST

START_TEST(test_time_rfc3339)
{
    ck_assert_int_eq(time_ok("2015-07-01T20:10:51.781Z"), 1435781451781LL);
    ck_assert_int_eq(time_ok("2015-07-01T20:10:51Z"), 1435781451000LL);
    ck_assert_int_eq(time_ok("2015-07-01T22:10:51.781+02:00"), 1435781451781LL);
    ck_assert_int_eq(time_ok("2015-07-01T17:40:51.781-02:30"), 1435781451781LL);
    /* Nanoseconds are truncated to milliseconds, not rounded. */
    ck_assert_int_eq(time_ok("2015-07-01T20:10:51.781999999Z"), 1435781451781LL);
    ck_assert_int_eq(time_ok("2015-07-01T20:10:51.7Z"), 1435781451700LL);
    ck_assert_int_eq(time_ok("1970-01-01T00:00:00Z"), 0);
    ck_assert_int_eq(time_ok("1969-12-31T23:59:59.5Z"), -500);
    ck_assert_int_eq(time_ok("2016-02-29T00:00:00Z"), 1456704000000LL);
    ck_assert_int_eq(time_ok("2000-03-01T00:00:00Z"), 951868800000LL);
    /* The bounds Prometheus's clients send for "no start" and "no end". */
    ck_assert_int_eq(time_ok(API_MIN_TIME_FORMATTED), API_MIN_TIME_MS);
    ck_assert_int_eq(time_ok(API_MAX_TIME_FORMATTED), API_MAX_TIME_MS);
}
END_TEST

START_TEST(test_time_errors)
{
    time_bad("", "cannot parse \"\" to a valid timestamp");
    time_bad("abc", "cannot parse \"abc\" to a valid timestamp");
    time_bad(" 1", "cannot parse \" 1\" to a valid timestamp");
    time_bad("1 ", "cannot parse \"1 \" to a valid timestamp");
    time_bad("NaN", "cannot parse \"NaN\" to a valid timestamp");
    time_bad("Inf", "cannot parse \"Inf\" to a valid timestamp");
    time_bad("1e400", "cannot parse \"1e400\" to a valid timestamp");
    time_bad("2015-02-29T00:00:00Z", "cannot parse \"2015-02-29T00:00:00Z\" to a valid timestamp");
    time_bad("2015-07-01 20:10:51Z", "cannot parse \"2015-07-01 20:10:51Z\" to a valid timestamp");
    time_bad("2015-07-01T20:10:51", "cannot parse \"2015-07-01T20:10:51\" to a valid timestamp");
    time_bad("2015-07-01T24:00:00Z", "cannot parse \"2015-07-01T24:00:00Z\" to a valid timestamp");
    time_bad("2015-07-01T20:10:51.Z",
             "cannot parse \"2015-07-01T20:10:51.Z\" to a valid timestamp");
    /* Quoting as Go's %q: escapes and non-printable bytes. */
    time_bad("a\"b\n\x01", "cannot parse \"a\\\"b\\n\\x01\" to a valid timestamp");
}
END_TEST

/* ---- durations and limits ---------------------------------------------------------------------
 */

static int64_t duration_ok(const char *s)
{
    int64_t ns = 0;
    cairn_error_t err = {{0}};
    int rc = api_parse_duration(s, &ns, &err);
    ck_assert_msg(rc == 0, "api_parse_duration(\"%s\") failed: %s", s, err.message);
    return ns;
}

static void duration_bad(const char *s, const char *message)
{
    int64_t ns = 0;
    cairn_error_t err = {{0}};
    ck_assert_int_lt(api_parse_duration(s, &ns, &err), 0);
    ck_assert_str_eq(err.message, message);
}

START_TEST(test_duration)
{
    ck_assert_int_eq(duration_ok("15"), 15000000000LL);
    ck_assert_int_eq(duration_ok("1.5"), 1500000000LL);
    ck_assert_int_eq(duration_ok("0.0001"), 100000); /* positive, below a millisecond */
    ck_assert_int_eq(duration_ok("-1"), -1000000000LL);
    ck_assert_int_eq(duration_ok("15s"), 15000000000LL);
    ck_assert_int_eq(duration_ok("1h30m"), 5400000000000LL);
    ck_assert_int_eq(duration_ok("500ms"), 500000000LL);
    ck_assert_int_eq(duration_ok("0"), 0);
    duration_bad("", "cannot parse \"\" to a valid duration");
    duration_bad("5x", "cannot parse \"5x\" to a valid duration");
    duration_bad("1m1h", "cannot parse \"1m1h\" to a valid duration");
    duration_bad("1e10", "cannot parse \"1e10\" to a valid duration. It overflows int64");
    duration_bad("300y", "cannot parse \"300y\" to a valid duration");
}
END_TEST

START_TEST(test_limit)
{
    uint64_t v = 99;
    cairn_error_t err = {{0}};
    ck_assert_int_eq(api_parse_limit("", &v, &err), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(api_parse_limit(NULL, &v, &err), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(api_parse_limit("10", &v, &err), 0);
    ck_assert_uint_eq(v, 10);
    ck_assert_int_eq(api_parse_limit("+3", &v, &err), 0);
    ck_assert_uint_eq(v, 3);
    ck_assert_int_lt(api_parse_limit("-1", &v, &err), 0);
    ck_assert_str_eq(err.message, "limit must be non-negative");
    ck_assert_int_lt(api_parse_limit("x", &v, &err), 0);
    ck_assert_str_eq(err.message, "strconv.Atoi: parsing \"x\": invalid syntax");
    ck_assert_int_lt(api_parse_limit("1.5", &v, &err), 0);
    ck_assert_str_eq(err.message, "strconv.Atoi: parsing \"1.5\": invalid syntax");
    ck_assert_int_lt(api_parse_limit("99999999999999999999", &v, &err), 0);
    ck_assert_str_eq(err.message,
                     "strconv.Atoi: parsing \"99999999999999999999\": value out of range");
}
END_TEST

/* ---- JSON -------------------------------------------------------------------------------------
 */

typedef void (*double_writer_fn)(buf_t *b, double v);

static void check_double(double_writer_fn fn, double v, const char *expected)
{
    buf_t b = BUF_INIT;
    fn(&b, v);
    ck_assert_msg(strcmp(b.data, expected) == 0, "%.17g: got %s, want %s", v, b.data, expected);
    buf_free(&b);
}

START_TEST(test_json_sample_value)
{
    double_writer_fn f = api_json_sample_value;
    check_double(f, 1, "\"1\"");
    check_double(f, 0, "\"0\"");
    check_double(f, -0.0, "\"-0\"");
    check_double(f, 0.1, "\"0.1\"");
    check_double(f, 0.1 + 0.2, "\"0.30000000000000004\"");
    check_double(f, 123456.789, "\"123456.789\"");
    check_double(f, -2.5, "\"-2.5\"");
    /* 'f' from 1e-6 up to (excluding) 1e21, 'e' outside, with two exponent digits. */
    check_double(f, 1e-6, "\"0.000001\"");
    check_double(f, 9.99e-7, "\"9.99e-07\"");
    check_double(f, 1e-7, "\"1e-07\"");
    check_double(f, 1e20, "\"100000000000000000000\"");
    check_double(f, 1e21, "\"1e+21\"");
    check_double(f, -1.5e300, "\"-1.5e+300\"");
    check_double(f, 5e-324, "\"5e-324\"");
    check_double(f, 1.7976931348623157e308, "\"1.7976931348623157e+308\"");
    check_double(f, 1e6, "\"1000000\"");
    check_double(f, NAN, "\"NaN\"");
    check_double(f, INFINITY, "\"+Inf\"");
    check_double(f, -INFINITY, "\"-Inf\"");
}
END_TEST

START_TEST(test_json_go_float)
{
    double_writer_fn f = api_json_go_float;
    check_double(f, 1435781451.781, "1435781451.781");
    check_double(f, 0, "0");
    check_double(f, 1.5, "1.5");
    check_double(f, -3, "-3");
    /* encoding/json trims the exponent's leading zero. */
    check_double(f, 1e-7, "1e-7");
    check_double(f, 1.5e-10, "1.5e-10");
    check_double(f, 1e21, "1e+21");
    check_double(f, 1e20, "100000000000000000000");
}
END_TEST

static void check_time(int64_t ms, const char *expected)
{
    buf_t b = BUF_INIT;
    api_json_sample_time(&b, ms);
    ck_assert_msg(strcmp(b.data, expected) == 0, "%lld: got %s, want %s", (long long)ms, b.data,
                  expected);
    buf_free(&b);
}

START_TEST(test_json_sample_time)
{
    check_time(1435781451781LL, "1435781451.781");
    check_time(1435781451780LL, "1435781451.780"); /* the trailing zero stays */
    check_time(1435781451000LL, "1435781451");     /* no fraction when it is zero */
    check_time(1435781451001LL, "1435781451.001");
    check_time(1435781451050LL, "1435781451.050");
    check_time(0, "0");
    check_time(5, "0.005");
    check_time(-1500, "-1.500");
    check_time(-1, "-0.001");
    check_time(INT64_MAX, "9223372036854775.807");
    check_time(INT64_MIN, "-9223372036854775.808");
}
END_TEST

static void check_string(const char *in, const char *expected)
{
    buf_t b = BUF_INIT;
    api_json_string(&b, in);
    ck_assert_msg(strcmp(b.data, expected) == 0, "got %s, want %s", b.data, expected);
    buf_free(&b);
}

START_TEST(test_json_string)
{
    check_string("", "\"\"");
    check_string("plain", "\"plain\"");
    check_string("a\"b\\c", "\"a\\\"b\\\\c\"");
    check_string("\n\r\t", "\"\\n\\r\\t\"");
    check_string("\x01\x1f", "\"\\u0001\\u001f\"");
    /* Go escapes HTML-significant characters... */
    check_string("<a&b>", "\"\\u003ca\\u0026b\\u003e\"");
    /* ... and the two line separators JavaScript does not take in strings. */
    check_string("x\xe2\x80\xa8y\xe2\x80\xa9", "\"x\\u2028y\\u2029\"");
    /* Valid UTF-8 passes through; each invalid byte becomes U+FFFD. */
    check_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                 "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    check_string("a\xffz", "\"a\\ufffdz\"");
    check_string("\xc3", "\"\\ufffd\"");
    check_string("\xc0\x80", "\"\\ufffd\\ufffd\"");            /* overlong NUL */
    check_string("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""); /* a surrogate */
}
END_TEST

START_TEST(test_json_labels)
{
    label_pair_t labels[] = {{"__name__", "up"}, {"job", "a\"b"}};
    buf_t b = BUF_INIT;
    api_json_labels(&b, labels, 2);
    ck_assert_str_eq(b.data, "{\"__name__\":\"up\",\"job\":\"a\\\"b\"}");
    buf_reset(&b);
    api_json_labels(&b, NULL, 0);
    ck_assert_str_eq(b.data, "{}");
    buf_reset(&b);
    tsdb_label_t tl[] = {{"a", "<"}};
    api_json_tsdb_labels(&b, tl, 1);
    ck_assert_str_eq(b.data, "{\"a\":\"\\u003c\"}");
    buf_free(&b);
}
END_TEST

static void check_data(const promql_result_t *res, size_t limit, const char *expected)
{
    buf_t b = BUF_INIT;
    api_json_query_data(&b, res, limit);
    ck_assert_msg(strcmp(b.data, expected) == 0, "got %s\nwant %s", b.data, expected);
    buf_free(&b);
}

START_TEST(test_json_query_data)
{
    label_pair_t l1[] = {{"__name__", "up"}, {"job", "p"}};
    label_pair_t l2[] = {{"job", "q"}};
    promql_point_t p1[] = {{1435781451781LL, 1}}, p2[] = {{1435781451781LL, NAN}};
    promql_series_t vec[] = {{l1, 2, p1, 1}, {l2, 1, p2, 1}};
    promql_result_t r;

    memset(&r, 0, sizeof(r));
    r.type = PROMQL_VALUE_VECTOR;
    r.series = vec;
    r.series_count = 2;
    check_data(&r, 0,
               "{\"resultType\":\"vector\",\"result\":["
               "{\"metric\":{\"__name__\":\"up\",\"job\":\"p\"},\"value\":[1435781451.781,\"1\"]},"
               "{\"metric\":{\"job\":\"q\"},\"value\":[1435781451.781,\"NaN\"]}]}");
    /* A limit keeps the first series. */
    check_data(
        &r, 1,
        "{\"resultType\":\"vector\",\"result\":["
        "{\"metric\":{\"__name__\":\"up\",\"job\":\"p\"},\"value\":[1435781451.781,\"1\"]}]}");

    promql_point_t m1[] = {{1000, 1e-7}, {16000, -INFINITY}, {31500, 2.5}};
    promql_series_t mat[] = {{l2, 1, m1, 3}};
    r.type = PROMQL_VALUE_MATRIX;
    r.series = mat;
    r.series_count = 1;
    check_data(&r, 0,
               "{\"resultType\":\"matrix\",\"result\":[{\"metric\":{\"job\":\"q\"},\"values\":"
               "[[1,\"1e-07\"],[16,\"-Inf\"],[31.500,\"2.5\"]]}]}");

    /* Empty results are [], never null. */
    r.series = NULL;
    r.series_count = 0;
    check_data(&r, 0, "{\"resultType\":\"matrix\",\"result\":[]}");
    r.type = PROMQL_VALUE_VECTOR;
    check_data(&r, 0, "{\"resultType\":\"vector\",\"result\":[]}");

    /* Scalars: Go float64 time, the value always in 'f' notation. */
    r.type = PROMQL_VALUE_SCALAR;
    r.t = 1435781451780LL;
    r.scalar = 1e-7;
    check_data(&r, 0, "{\"resultType\":\"scalar\",\"result\":[1435781451.78,\"0.0000001\"]}");
    r.scalar = 1e21;
    r.t = 0;
    check_data(&r, 0, "{\"resultType\":\"scalar\",\"result\":[0,\"1000000000000000000000\"]}");
    r.type = PROMQL_VALUE_STRING;
    r.string = "a\"b";
    r.t = 1500;
    check_data(&r, 0, "{\"resultType\":\"string\",\"result\":[1.5,\"a\\\"b\"]}");
}
END_TEST

START_TEST(test_go_quoted)
{
    buf_t b = BUF_INIT;
    api_append_go_quoted(&b, "a-b");
    ck_assert_str_eq(b.data, "\"a-b\"");
    buf_reset(&b);
    api_append_go_quoted(&b, "\xc3\xa9\t\x7f\xff");
    ck_assert_str_eq(b.data, "\"\xc3\xa9\\t\\x7f\\xff\"");
    buf_free(&b);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("query_api");
    TCase *tc = tcase_create("params");
    tcase_add_test(tc, test_time_unix_seconds);
    tcase_add_test(tc, test_time_rfc3339);
    tcase_add_test(tc, test_time_errors);
    tcase_add_test(tc, test_duration);
    tcase_add_test(tc, test_limit);
    tcase_add_test(tc, test_go_quoted);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, test_json_sample_value);
    tcase_add_test(tc, test_json_go_float);
    tcase_add_test(tc, test_json_sample_time);
    tcase_add_test(tc, test_json_string);
    tcase_add_test(tc, test_json_labels);
    tcase_add_test(tc, test_json_query_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(api_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
