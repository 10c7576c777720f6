/*
 * tests/unit/check_common_parse.c: unit tests for the value syntaxes in common/parse.c.
 *
 * Durations follow Prometheus's model.ParseDuration and model.Duration.String, byte sizes follow
 * alecthomas/units Base2Bytes (as --storage.tsdb.retention.size parses them), floats follow Go's
 * strconv.FormatFloat(v, fmt, -1, 64), and integers are strict decimals. Expected strings come
 * from those Go implementations; the randomized float test checks against an oracle built on
 * C's correctly rounded printf("%.*e") and strtod.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR   (60 * MS_MINUTE)
#define MS_DAY    (24 * MS_HOUR)
#define MS_WEEK   (7 * MS_DAY)
#define MS_YEAR   (365 * MS_DAY)

#define KIB UINT64_C(1024)
#define MIB (KIB << 10)
#define GIB (MIB << 10)
#define TIB (GIB << 10)
#define PIB (TIB << 10)
#define EIB (PIB << 10)

/* Big enough for any 'f' output (the header promises at most 330 bytes). */
#define FLOAT_BUF 400

/* Asserts that err holds a message naming the input in double quotes, as Go's %q does; an empty
 * input only needs some message. */
static void assert_error_message(const cairn_error_t *err, const char *input)
{
    ck_assert_msg(err->message[0] != '\0', "no error message for input \"%s\"", input);
    if (input[0] == '\0')
        return;
    char quoted[256];
    snprintf(quoted, sizeof quoted, "\"%s\"", input);
    ck_assert_msg(strstr(err->message, quoted) != NULL,
                  "error message '%s' does not quote the input %s", err->message, quoted);
}

/* --- duration_parse ------------------------------------------------------------------------- */

static const struct {
    const char *text;
    int64_t ms;
} DURATION_VALID[] = {
    {"0", 0},
    {"0s", 0},
    {"0ms", 0},
    {"500ms", 500},
    {"1s", MS_SECOND},
    {"90s", 90 * MS_SECOND},
    {"1m", MS_MINUTE},
    {"1h30m", 5400000},
    {"1h0m", MS_HOUR},
    {"15d", 15 * INT64_C(86400000)},
    {"2w", 2 * MS_WEEK},
    {"1y", 365 * MS_DAY},
    {"1y2w3d4h5m6s7ms", INT64_C(33019506007)},
    {"1d1ms", MS_DAY + 1},
};

START_TEST(test_duration_parse_valid)
{
    const char *text = DURATION_VALID[_i].text;
    int64_t ms = -12345;
    cairn_error_t err = {{0}};

    int rc = duration_parse(text, &ms, &err);
    ck_assert_msg(rc == 0, "duration_parse(\"%s\") = %d (%s)", text, rc, err.message);
    ck_assert_msg(ms == DURATION_VALID[_i].ms, "duration_parse(\"%s\") = %lld ms, want %lld", text,
                  (long long)ms, (long long)DURATION_VALID[_i].ms);
}
END_TEST

static const char *const DURATION_INVALID[] = {
    "",     /* empty */
    "1",    /* a number needs a unit unless it is "0" */
    "1x",   /* unknown unit */
    "h",    /* a unit needs a number */
    "1m1h", /* units must decrease */
    "1d1w", /* units must decrease */
    "1h1h", /* each unit at most once */
    "-1s",  /* no sign */
    "+1s",  /* no sign */
    " 1s",  /* no leading space */
    "1s ",  /* no trailing space */
    "1 s",  /* no inner space */
    "1.5h", /* no fractions */
    "1H",   /* units are lower case */
    "1sms", /* unknown unit "sms" */
    "00",   /* only the exact string "0" goes without a unit */
};

START_TEST(test_duration_parse_invalid)
{
    const char *text = DURATION_INVALID[_i];
    int64_t ms = 0;
    cairn_error_t err = {{0}};

    int rc = duration_parse(text, &ms, &err);
    ck_assert_msg(rc == -EINVAL, "duration_parse(\"%s\") = %d (ms %lld), want -EINVAL", text, rc,
                  (long long)ms);
    assert_error_message(&err, text);
}
END_TEST

static const char *const DURATION_OVERFLOW[] = {
    "9999999999999999999y",   /* the number fits in uint64, the product does not */
    "99999999999999999999ms", /* the number alone exceeds uint64 */
    "9223372036854775808ms",  /* INT64_MAX + 1 */
    "106751991168d",          /* one day more than INT64_MAX milliseconds */
    "292471208y300d",         /* each term fits, the sum does not */
};

START_TEST(test_duration_parse_overflow)
{
    const char *text = DURATION_OVERFLOW[_i];
    int64_t ms = 0;
    cairn_error_t err = {{0}};

    int rc = duration_parse(text, &ms, &err);
    ck_assert_msg(rc == -ERANGE || rc == -EINVAL,
                  "duration_parse(\"%s\") = %d (ms %lld), want -ERANGE or -EINVAL", text, rc,
                  (long long)ms);
    ck_assert_msg(err.message[0] != '\0', "no error message for \"%s\"", text);
}
END_TEST

/* --- duration_format ------------------------------------------------------------------------ */

static const struct {
    int64_t ms;
    const char *text;
} DURATION_FORMAT[] = {
    {0, "0s"},
    {1, "1ms"},
    {1500, "1s500ms"},
    {MS_MINUTE, "1m"},
    {5400000, "1h30m"},
    {MS_DAY + MS_HOUR + MS_MINUTE + MS_SECOND + 1, "1d1h1m1s1ms"},
    {14 * MS_DAY, "2w"},
    {15 * MS_DAY, "15d"}, /* not whole weeks, so days absorb them */
    {90 * MS_DAY, "90d"},
    {365 * MS_DAY, "1y"},
    {730 * MS_DAY, "2y"},
    {366 * MS_DAY, "366d"},
    {371 * MS_DAY, "53w"}, /* whole weeks but not whole years */
    {MS_YEAR + 1, "365d1ms"},
    {INT64_MAX, "106751991167d7h12m55s807ms"},
};

START_TEST(test_duration_format)
{
    char out[64];
    memset(out, 'X', sizeof out);

    char *ret = duration_format(DURATION_FORMAT[_i].ms, out, sizeof out);
    ck_assert_ptr_eq(ret, out);
    ck_assert_msg(strcmp(out, DURATION_FORMAT[_i].text) == 0,
                  "duration_format(%lld) = \"%s\", want \"%s\"", (long long)DURATION_FORMAT[_i].ms,
                  out, DURATION_FORMAT[_i].text);
}
END_TEST

static const int64_t DURATION_ROUND_TRIP[] = {
    0,
    1,
    999,
    MS_SECOND,
    61 * MS_SECOND,
    5400000,
    14 * MS_DAY,
    15 * MS_DAY,
    90 * MS_DAY,
    365 * MS_DAY,
    366 * MS_DAY,
    371 * MS_DAY,
    INT64_C(33019506007),
    INT64_C(123456789),
    INT64_MAX,
};

START_TEST(test_duration_round_trip)
{
    int64_t want = DURATION_ROUND_TRIP[_i];
    char text[32];
    int64_t got = -1;
    cairn_error_t err = {{0}};

    duration_format(want, text, sizeof text);
    int rc = duration_parse(text, &got, &err);
    ck_assert_msg(rc == 0, "duration_parse(\"%s\") = %d (%s)", text, rc, err.message);
    ck_assert_msg(got == want, "%lld -> \"%s\" -> %lld", (long long)want, text, (long long)got);
}
END_TEST

/* --- bytesize_parse ------------------------------------------------------------------------- */

static const struct {
    const char *text;
    uint64_t bytes;
} BYTESIZE_VALID[] = {
    {"0", 0},
    {"0B", 0},
    {"100B", 100},
    {"1KB", KIB},
    {"1KiB", KIB},
    {"512MB", 512 * MIB},
    {"512MiB", 512 * MIB},
    {"1GiB", GIB},
    {"1GB", GIB},
    {"1.5GB", UINT64_C(1610612736)},
    {"0.5KB", 512},
    {"1TB", TIB},
    {"2PiB", 2 * PIB},
    {"1EB", EIB},
    {"15EiB", 15 * EIB}, /* above INT64_MAX but within uint64 */
    {"18446744073709551615B", UINT64_MAX},
    {"9007199254740993B", UINT64_C(9007199254740993)}, /* not representable as a double */
    {"1GB512MB", GIB + 512 * MIB},
    {"1MB1GB", GIB + MIB}, /* units need not decrease */
};

START_TEST(test_bytesize_parse_valid)
{
    const char *text = BYTESIZE_VALID[_i].text;
    uint64_t bytes = 12345;
    cairn_error_t err = {{0}};

    int rc = bytesize_parse(text, &bytes, &err);
    ck_assert_msg(rc == 0, "bytesize_parse(\"%s\") = %d (%s)", text, rc, err.message);
    ck_assert_msg(bytes == BYTESIZE_VALID[_i].bytes, "bytesize_parse(\"%s\") = %llu, want %llu",
                  text, (unsigned long long)bytes, (unsigned long long)BYTESIZE_VALID[_i].bytes);
}
END_TEST

static const char *const BYTESIZE_INVALID[] = {
    "",     /* empty */
    "12",   /* no unit */
    "1XB",  /* unknown unit */
    "GB",   /* no number */
    "-1GB", /* sizes are not negative */
    "1 GB", /* no space before the unit */
    " 1GB", /* no leading space */
    "1GB ", /* no trailing space */
    "1kB",  /* lower-case k is the SI kilo, which Base2Bytes rejects */
    "1gb",  /* units are upper case */
};

START_TEST(test_bytesize_parse_invalid)
{
    const char *text = BYTESIZE_INVALID[_i];
    uint64_t bytes = 0;
    cairn_error_t err = {{0}};

    int rc = bytesize_parse(text, &bytes, &err);
    ck_assert_msg(rc < 0, "bytesize_parse(\"%s\") = %d (bytes %llu), want an error", text, rc,
                  (unsigned long long)bytes);
    ck_assert_msg(err.message[0] != '\0', "no error message for \"%s\"", text);
    ck_assert_msg(strstr(err.message, text) != NULL,
                  "error message '%s' does not name the input \"%s\"", err.message, text);
}
END_TEST

START_TEST(test_bytesize_parse_overflow)
{
    static const char *const inputs[] = {"16EiB", "99999999999EB", "18446744073709551616B"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(inputs); i++) {
        uint64_t bytes = 0;
        cairn_error_t err = {{0}};
        int rc = bytesize_parse(inputs[i], &bytes, &err);
        ck_assert_msg(rc < 0, "bytesize_parse(\"%s\") = %d (bytes %llu), want an error", inputs[i],
                      rc, (unsigned long long)bytes);
        ck_assert_msg(err.message[0] != '\0', "no error message for \"%s\"", inputs[i]);
    }
}
END_TEST

/* A fractional number of bytes is truncated, as Go's int64(float64) conversion in
 * alecthomas/units does: "0.7KB" is 716.8 bytes, so 716, not 717. */
START_TEST(test_bytesize_parse_fraction_truncates)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } cases[] = {
        {"0.7KB", 716},
        {"1.5B", 1},
        {"0.9B", 0},
        {"1.999KiB", 2046},
        /* Fractions exact in binary give exact sizes. */
        {"0.25KB", 256},
        {"0.0625KB", 64},
        {"2.75GiB", UINT64_C(2952790016)},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        uint64_t bytes = 12345;
        cairn_error_t err = {{0}};
        int rc = bytesize_parse(cases[i].text, &bytes, &err);
        ck_assert_msg(rc == 0, "bytesize_parse(\"%s\") = %d (%s)", cases[i].text, rc, err.message);
        ck_assert_msg(bytes == cases[i].bytes, "bytesize_parse(\"%s\") = %llu, want %llu",
                      cases[i].text, (unsigned long long)bytes, (unsigned long long)cases[i].bytes);
    }
}
END_TEST

/* --- bytesize_format ------------------------------------------------------------------------ */

static const struct {
    uint64_t bytes;
    const char *text;
} BYTESIZE_FORMAT[] = {
    {0, "0B"},
    {1, "1B"},
    {1000, "1000B"},
    {1023, "1023B"},
    {KIB, "1KiB"},
    {1536, "1536B"},
    {512 * MIB, "512MiB"},
    {GIB, "1GiB"},
    {GIB + 512 * MIB, "1536MiB"},
    {2 * GIB, "2GiB"},
    {3 * TIB, "3TiB"},
    {PIB, "1PiB"},
    {EIB, "1EiB"},
    {15 * EIB, "15EiB"},
    {UINT64_MAX, "18446744073709551615B"},
};

START_TEST(test_bytesize_format)
{
    char out[64];
    memset(out, 'X', sizeof out);

    char *ret = bytesize_format(BYTESIZE_FORMAT[_i].bytes, out, sizeof out);
    ck_assert_ptr_eq(ret, out);
    ck_assert_msg(strcmp(out, BYTESIZE_FORMAT[_i].text) == 0,
                  "bytesize_format(%llu) = \"%s\", want \"%s\"",
                  (unsigned long long)BYTESIZE_FORMAT[_i].bytes, out, BYTESIZE_FORMAT[_i].text);
}
END_TEST

START_TEST(test_bytesize_round_trip)
{
    static const uint64_t values[] = {
        0,
        1,
        100,
        1023,
        KIB,
        1536,
        512 * MIB,
        GIB,
        GIB + 512 * MIB,
        (UINT64_C(1) << 40) + 1,
        UINT64_C(123456789),
        15 * EIB,
        UINT64_MAX - 1,
        UINT64_MAX,
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(values); i++) {
        char text[64];
        uint64_t got = 0;
        cairn_error_t err = {{0}};

        bytesize_format(values[i], text, sizeof text);
        int rc = bytesize_parse(text, &got, &err);
        ck_assert_msg(rc == 0, "bytesize_parse(\"%s\") = %d (%s)", text, rc, err.message);
        ck_assert_msg(got == values[i], "%llu -> \"%s\" -> %llu", (unsigned long long)values[i],
                      text, (unsigned long long)got);
    }
}
END_TEST

/* --- float_format_go ------------------------------------------------------------------------ */

static const struct {
    double v;
    char fmt;
    const char *text;
} FLOAT_FORMAT[] = {
    /* 'g': %e layout when the exponent is < -4 or >= 6 (the threshold Go uses for shortest). */
    {1, 'g', "1"},
    {0.5, 'g', "0.5"},
    {42, 'g', "42"},
    {100000, 'g', "100000"},
    {123456, 'g', "123456"},
    {1e6, 'g', "1e+06"},
    {1234567, 'g', "1.234567e+06"},
    {123456789, 'g', "1.23456789e+08"},
    {0.0001, 'g', "0.0001"},
    {0.00001, 'g', "1e-05"},
    {0.000025, 'g', "2.5e-05"},
    {0.005, 'g', "0.005"},
    {0.1 + 0.2, 'g', "0.30000000000000004"},
    {-2.5, 'g', "-2.5"},
    {0.0, 'g', "0"},
    {-0.0, 'g', "-0"},
    {1e21, 'g', "1e+21"},
    {1e100, 'g', "1e+100"},
    {-1e-300, 'g', "-1e-300"},
    {5e-324, 'g', "5e-324"},
    {1.7976931348623157e308, 'g', "1.7976931348623157e+308"},
    {INFINITY, 'g', "+Inf"},
    {-INFINITY, 'g', "-Inf"},
    {NAN, 'g', "NaN"},
    /* 'e': d.ddde±XX with at least two exponent digits. */
    {1, 'e', "1e+00"},
    {0.0, 'e', "0e+00"},
    {-0.0, 'e', "-0e+00"},
    {1234.5, 'e', "1.2345e+03"},
    {1e-7, 'e', "1e-07"},
    {-0.1, 'e', "-1e-01"},
    {1e100, 'e', "1e+100"},
    {5e-324, 'e', "5e-324"},
    {INFINITY, 'e', "+Inf"},
    {NAN, 'e', "NaN"},
    /* 'f': plain decimal. */
    {1e21, 'f', "1000000000000000000000"},
    {0.000001, 'f', "0.000001"},
    {1e-7, 'f', "0.0000001"},
    {1.5, 'f', "1.5"},
    {-1.5, 'f', "-1.5"},
    {0.0, 'f', "0"},
    {123456789, 'f', "123456789"},
    {0.1 + 0.2, 'f', "0.30000000000000004"},
    {-INFINITY, 'f', "-Inf"},
    {NAN, 'f', "NaN"},
};

START_TEST(test_float_format_table)
{
    double v = FLOAT_FORMAT[_i].v;
    char fmt = FLOAT_FORMAT[_i].fmt;
    char out[FLOAT_BUF];
    memset(out, 'X', sizeof out);

    size_t len = float_format_go(v, fmt, out, sizeof out);
    ck_assert_msg(strcmp(out, FLOAT_FORMAT[_i].text) == 0,
                  "float_format_go(%.17g, '%c') = \"%s\", want \"%s\"", v, fmt, out,
                  FLOAT_FORMAT[_i].text);
    ck_assert_uint_eq(len, strlen(out));
}
END_TEST

/* The extremes of 'f': the smallest subnormal has 323 zeros after the point, the largest double
 * has 309 integer digits. */
START_TEST(test_float_format_f_extremes)
{
    char out[FLOAT_BUF];
    char want[FLOAT_BUF];

    size_t len = float_format_go(5e-324, 'f', out, sizeof out);
    strcpy(want, "0.");
    memset(want + 2, '0', 323);
    strcpy(want + 2 + 323, "5");
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(len, strlen(want));

    len = float_format_go(-1.7976931348623157e308, 'f', out, sizeof out);
    strcpy(want, "-17976931348623157");
    memset(want + 18, '0', 292);
    want[18 + 292] = '\0';
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(len, strlen(want));
}
END_TEST

/* Splits C's "%.*e" output into sign, digits and decimal exponent. */
static void split_e(const char *e_text, bool *negative, char *digits, int *exponent)
{
    const char *p = e_text;
    *negative = (*p == '-');
    if (*negative)
        p++;
    size_t n = 0;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[n++] = *p;
    digits[n] = '\0';
    *exponent = atoi(p + 1);
}

/* Go's fmtF layout for the given digits: the value is 0.d1d2d3... * 10^(exponent + 1). */
static void layout_f(bool negative, const char *digits, int exponent, char *out)
{
    int nd = (int)strlen(digits);
    int dp = exponent + 1; /* position of the decimal point after the first digit */
    char *o = out;
    if (negative)
        *o++ = '-';
    if (dp > 0) {
        for (int i = 0; i < dp; i++)
            *o++ = i < nd ? digits[i] : '0';
    } else {
        *o++ = '0';
    }
    int frac = nd - dp > 0 ? nd - dp : 0;
    if (frac > 0) {
        *o++ = '.';
        for (int i = 0; i < frac; i++) {
            int j = dp + i;
            *o++ = (j >= 0 && j < nd) ? digits[j] : '0';
        }
    }
    *o = '\0';
}

/* The oracle: the fewest significant digits that round-trip, found with correctly rounded
 * "%.*e" (if p digits round-trip, so do p + 1, so a binary search is exact), laid out as Go
 * would lay them out. */
static void reference_format(double v, char fmt, char *out, size_t size)
{
    char e_text[64];
    int lo = 0, hi = 16; /* digits after the point in %e */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(e_text, sizeof e_text, "%.*e", mid, v);
        if (strtod(e_text, NULL) == v)
            hi = mid;
        else
            lo = mid + 1;
    }
    snprintf(e_text, sizeof e_text, "%.*e", lo, v);

    bool negative;
    char digits[32];
    int exponent;
    split_e(e_text, &negative, digits, &exponent);
    if (fmt == 'e' || (fmt == 'g' && (exponent < -4 || exponent >= 6)))
        snprintf(out, size, "%s", e_text);
    else
        layout_f(negative, digits, exponent, out);
}

static uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

START_TEST(test_float_format_random)
{
    static const char fmts[] = {'g', 'e', 'f'};
    uint64_t state = UINT64_C(0x9e3779b97f4a7c15);
    char out[FLOAT_BUF];
    char want[FLOAT_BUF];

    for (int i = 0; i < 100000; i++) {
        uint64_t bits = xorshift64(&state);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        for (size_t f = 0; f < CAIRN_ARRAY_LEN(fmts); f++) {
            size_t len = float_format_go(v, fmts[f], out, sizeof out);
            ck_assert_msg(len == strlen(out), "length %zu for \"%s\"", len, out);

            double back = strtod(out, NULL);
            ck_assert_msg(memcmp(&back, &v, sizeof v) == 0,
                          "bits %016llx: '%c' gives \"%s\", which reads back as %.17g",
                          (unsigned long long)bits, fmts[f], out, back);

            /* A power of two has a narrower gap below it, where Go may pick a shorter string
             * than the correctly rounded one; the oracle does not model that. */
            if ((bits & ((UINT64_C(1) << 52) - 1)) == 0)
                continue;
            reference_format(v, fmts[f], want, sizeof want);
            ck_assert_msg(strcmp(out, want) == 0, "bits %016llx: '%c' gives \"%s\", want \"%s\"",
                          (unsigned long long)bits, fmts[f], out, want);
        }
    }
}
END_TEST

/* Values as samples hold them: integers (counters, the integer fast path, up to and past
 * 1e15 where it stops), short decimals and dyadic fractions, against the same oracle. */
START_TEST(test_float_format_random_decimal)
{
    static const char fmts[] = {'g', 'e', 'f'};
    static const double scales[] = {1, 10, 1000, 1e6};
    uint64_t state = UINT64_C(0x2545f4914f6cdd1d);
    char out[FLOAT_BUF];
    char want[FLOAT_BUF];
    for (int i = 0; i < 100000; i++) {
        uint64_t r = xorshift64(&state);
        double v = (double)(r % UINT64_C(10000000000000000)) / scales[i % 4];
        if (i % 8 == 0)
            v = -v;
        if (i % 16 == 1)
            v = (double)(r % 1000000);
        if (i % 16 == 2) /* dyadic: exact decimal expansions, so exact ties when shortened */
            v = (double)(r % 1048576) / (double)(UINT64_C(1) << (r >> 58));
        for (size_t f = 0; f < CAIRN_ARRAY_LEN(fmts); f++) {
            float_format_go(v, fmts[f], out, sizeof out);
            reference_format(v, fmts[f], want, sizeof want);
            ck_assert_msg(strcmp(out, want) == 0, "%.17g: '%c' gives \"%s\", want \"%s\"", v,
                          fmts[f], out, want);
        }
    }
}
END_TEST

/* --- utf8_valid --------------------------------------------------------------------------- */

START_TEST(test_utf8_valid)
{
    static const struct {
        const char *s;
        bool valid;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"\xc3\xa9t\xc3\xa9", true}, /* été */
        {"\xe2\x82\xac", true},      /* U+20AC */
        {"\xf0\x9f\x98\x80", true},  /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", true},  /* U+10FFFF */
        {"\xed\x9f\xbf", true},      /* U+D7FF, below the surrogates */
        {"\x80", false},             /* a continuation byte first */
        {"\xc3", false},             /* truncated */
        {"\xc0\xaf", false},         /* overlong '/' */
        {"\xc1\xbf", false},         /* overlong */
        {"\xe0\x80\xaf", false},     /* overlong */
        {"\xed\xa0\x80", false},     /* U+D800, a surrogate */
        {"\xf0\x80\x80\xaf", false}, /* overlong */
        {"\xf4\x90\x80\x80", false}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", false}, /* lead byte out of range */
        {"\xe2\x82", false},         /* truncated */
        {"a\xe2\x28\xa1", false},    /* bad continuation */
        {"\xff", false},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++)
        ck_assert_msg(utf8_valid(cases[i].s, strlen(cases[i].s)) == cases[i].valid,
                      "case %zu: want %d", i, cases[i].valid);
    /* The length bounds the check: a valid prefix of an invalid string. */
    ck_assert(utf8_valid("ab\xff", 2));
}
END_TEST

/* --- parse_uint64 / parse_int64 ------------------------------------------------------------- */

START_TEST(test_parse_uint64_valid)
{
    static const struct {
        const char *text;
        uint64_t value;
    } cases[] = {
        {"0", 0},
        {"7", 7},
        {"010", 10}, /* decimal, never octal */
        {"4294967296", UINT64_C(4294967296)},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        uint64_t v = 1;
        int rc = parse_uint64(cases[i].text, &v);
        ck_assert_msg(rc == 0, "parse_uint64(\"%s\") = %d", cases[i].text, rc);
        ck_assert_msg(v == cases[i].value, "parse_uint64(\"%s\") = %llu", cases[i].text,
                      (unsigned long long)v);
    }
}
END_TEST

/* Rejected: overflow, empty input, trailing junk, any sign (strtoull would accept "+1" and wrap
 * "-1" to UINT64_MAX), surrounding white space, and other bases. */
START_TEST(test_parse_uint64_invalid)
{
    static const char *const inputs[] = {
        "18446744073709551616",
        "99999999999999999999999",
        "",
        "12a",
        "1.0",
        "+1",
        "-1",
        "-0",
        " 1",
        "1 ",
        "0x10",
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(inputs); i++) {
        uint64_t v = 0;
        int rc = parse_uint64(inputs[i], &v);
        ck_assert_msg(rc < 0, "parse_uint64(\"%s\") = %d (value %llu), want an error", inputs[i],
                      rc, (unsigned long long)v);
    }
}
END_TEST

START_TEST(test_parse_int64_valid)
{
    static const struct {
        const char *text;
        int64_t value;
    } cases[] = {
        {"0", 0},
        {"42", 42},
        {"-42", -42},
        {"010", 10},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        int64_t v = 1;
        int rc = parse_int64(cases[i].text, &v);
        ck_assert_msg(rc == 0, "parse_int64(\"%s\") = %d", cases[i].text, rc);
        ck_assert_msg(v == cases[i].value, "parse_int64(\"%s\") = %lld", cases[i].text,
                      (long long)v);
    }
}
END_TEST

/* Rejected: overflow either way, empty input, a lone or doubled sign, a leading '+', white space
 * and trailing junk. A leading '-' is the only sign accepted. */
START_TEST(test_parse_int64_invalid)
{
    static const char *const inputs[] = {
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "",
        "-",
        "--1",
        "+1",
        " 1",
        "1 ",
        "12a",
        "1e3",
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(inputs); i++) {
        int64_t v = 0;
        int rc = parse_int64(inputs[i], &v);
        ck_assert_msg(rc < 0, "parse_int64(\"%s\") = %d (value %lld), want an error", inputs[i], rc,
                      (long long)v);
    }
}
END_TEST

static Suite *parse_suite(void)
{
    Suite *s = suite_create("common_parse");

    TCase *tc = tcase_create("duration");
    tcase_add_loop_test(tc, test_duration_parse_valid, 0, CAIRN_ARRAY_LEN(DURATION_VALID));
    tcase_add_loop_test(tc, test_duration_parse_invalid, 0, CAIRN_ARRAY_LEN(DURATION_INVALID));
    tcase_add_loop_test(tc, test_duration_parse_overflow, 0, CAIRN_ARRAY_LEN(DURATION_OVERFLOW));
    tcase_add_loop_test(tc, test_duration_format, 0, CAIRN_ARRAY_LEN(DURATION_FORMAT));
    tcase_add_loop_test(tc, test_duration_round_trip, 0, CAIRN_ARRAY_LEN(DURATION_ROUND_TRIP));
    suite_add_tcase(s, tc);

    tc = tcase_create("bytesize");
    tcase_add_loop_test(tc, test_bytesize_parse_valid, 0, CAIRN_ARRAY_LEN(BYTESIZE_VALID));
    tcase_add_loop_test(tc, test_bytesize_parse_invalid, 0, CAIRN_ARRAY_LEN(BYTESIZE_INVALID));
    tcase_add_test(tc, test_bytesize_parse_overflow);
    tcase_add_test(tc, test_bytesize_parse_fraction_truncates);
    tcase_add_loop_test(tc, test_bytesize_format, 0, CAIRN_ARRAY_LEN(BYTESIZE_FORMAT));
    tcase_add_test(tc, test_bytesize_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("float");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_float_format_table, 0, CAIRN_ARRAY_LEN(FLOAT_FORMAT));
    tcase_add_test(tc, test_float_format_f_extremes);
    tcase_add_test(tc, test_float_format_random);
    tcase_add_test(tc, test_float_format_random_decimal);
    tcase_add_test(tc, test_utf8_valid);
    suite_add_tcase(s, tc);

    tc = tcase_create("integer");
    tcase_add_test(tc, test_parse_uint64_valid);
    tcase_add_test(tc, test_parse_uint64_invalid);
    tcase_add_test(tc, test_parse_int64_valid);
    tcase_add_test(tc, test_parse_int64_invalid);
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
