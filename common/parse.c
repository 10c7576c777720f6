/*
 * common/parse.c: the value syntaxes Prometheus users type: durations ("1h30m"), byte sizes
 * ("512MB"), integers, and floats formatted the way Go formats them.
 *
 * Durations follow Prometheus's model.ParseDuration: units y (365d), w, d, h, m, s, ms, in that
 * order, each at most once, integers only; "0" alone is allowed. Sizes follow the base-2 byte
 * units Prometheus's flags and config accept: KB and KiB both mean 1024.
 *
 * Floats: the shortest decimal digits that parse back to the same double are found by trying
 * precisions 1..17 with snprintf("%.*e") and strtod; then the digits are laid out as Go's
 * strconv.FormatFloat(v, fmt, -1, 64) does. This is not a hot path yet (self-metrics); the
 * query API will want a faster shortest-digits algorithm behind the same function.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int parse_uint64(const char *s, uint64_t *out)
{
    if (!is_digit(*s))
        return -EINVAL;
    uint64_t v = 0;
    for (; *s; s++) {
        if (!is_digit(*s))
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int parse_int64(const char *s, int64_t *out)
{
    bool negative = *s == '-';
    uint64_t magnitude;
    int rc = parse_uint64(s + negative, &magnitude);
    if (rc < 0)
        return rc;
    if (negative ? magnitude > (uint64_t)INT64_MAX + 1 : magnitude > (uint64_t)INT64_MAX)
        return -ERANGE;
    *out = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
    return 0;
}

/* ---- durations ------------------------------------------------------------------------- */

static const struct {
    const char *unit;
    int64_t ms;
} duration_units[] = {
    {"y", 365LL * 24 * 3600 * 1000},
    {"w", 7LL * 24 * 3600 * 1000},
    {"d", 24LL * 3600 * 1000},
    {"h", 3600LL * 1000},
    {"m", 60LL * 1000},
    {"s", 1000},
    {"ms", 1},
};

int duration_parse(const char *s, int64_t *out_ms, cairn_error_t *err)
{
    if (!*s)
        return cairn_error_set(err, -EINVAL, "empty duration string");
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    int64_t total = 0;
    int next_unit = 0; /* units must appear in table order, each at most once */
    const char *p = s;
    while (*p) {
        if (!is_digit(*p))
            return cairn_error_set(err, -EINVAL, "not a valid duration string: \"%s\"", s);
        uint64_t n = 0;
        for (; is_digit(*p); p++) {
            if (n > (uint64_t)INT64_MAX / 10)
                return cairn_error_set(err, -ERANGE, "duration out of range: \"%s\"", s);
            n = n * 10 + (uint64_t)(*p - '0');
        }
        /* "ms" must be tried before "m". */
        int unit = -1;
        if (p[0] == 'm' && p[1] == 's')
            unit = 6;
        else
            for (int i = 0; i < 6; i++)
                if (*p == duration_units[i].unit[0])
                    unit = i;
        if (unit < next_unit)
            return cairn_error_set(err, -EINVAL, "not a valid duration string: \"%s\"", s);
        p += strlen(duration_units[unit].unit);
        next_unit = unit + 1;
        int64_t mult = duration_units[unit].ms;
        if (n > (uint64_t)(INT64_MAX / mult) || total > INT64_MAX - (int64_t)n * mult)
            return cairn_error_set(err, -ERANGE, "duration out of range: \"%s\"", s);
        total += (int64_t)n * mult;
    }
    *out_ms = total;
    return 0;
}

char *duration_format(int64_t ms, char *out, size_t size)
{
    if (ms == 0) {
        snprintf(out, size, "0s");
        return out;
    }
    size_t n = 0;
    if (ms < 0) { /* not produced by duration_parse, but print something truthful */
        n += (size_t)snprintf(out, size, "-");
        ms = ms == INT64_MIN ? INT64_MAX : -ms;
    }
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(duration_units) && n < size; i++) {
        int64_t mult = duration_units[i].ms;
        /* Years and weeks only when exact: "90d" reads better than "12w6d". */
        if (i < 2 && ms % mult != 0)
            continue;
        if (ms / mult > 0) {
            n += (size_t)snprintf(out + n, size - n, "%lld%s", (long long)(ms / mult),
                                  duration_units[i].unit);
            ms %= mult;
        }
    }
    return out;
}

/* ---- byte sizes ------------------------------------------------------------------------ */

static const char *const size_units_base2[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
static const char *const size_units_legacy[] = {"KB", "MB", "GB", "TB", "PB", "EB"};

/* The multiplier for a unit spelled in [unit, unit+len), or 0 if unknown. */
static uint64_t size_unit_multiplier(const char *unit, size_t len)
{
    if (len == 1 && unit[0] == 'B')
        return 1;
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(size_units_base2); i++) {
        if ((strlen(size_units_base2[i]) == len && memcmp(unit, size_units_base2[i], len) == 0) ||
            (strlen(size_units_legacy[i]) == len && memcmp(unit, size_units_legacy[i], len) == 0))
            return 1ULL << (10 * (i + 1));
    }
    return 0;
}

int bytesize_parse(const char *s, uint64_t *out, cairn_error_t *err)
{
    if (!*s)
        return cairn_error_set(err, -EINVAL, "empty size string");
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    uint64_t total = 0;
    const char *p = s;
    while (*p) {
        /* <integer>[.<fraction>]<unit>; the integer part is exact, the fraction truncated. */
        const char *num = p;
        uint64_t whole = 0;
        bool overflow = false;
        for (; is_digit(*p); p++) {
            unsigned d = (unsigned)(*p - '0');
            if (whole > (UINT64_MAX - d) / 10)
                overflow = true;
            whole = whole * 10 + d;
        }
        const char *frac = NULL;
        size_t frac_len = 0;
        if (*p == '.') {
            frac = ++p;
            while (is_digit(*p))
                p++;
            frac_len = (size_t)(p - frac);
        }
        if (p == num || (frac && p == num + 1))
            return cairn_error_set(err, -EINVAL, "invalid size \"%s\": expected a number", s);

        const char *unit = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            p++;
        if (p == unit)
            return cairn_error_set(err, -EINVAL, "missing unit in size \"%s\"", s);
        uint64_t mult = size_unit_multiplier(unit, (size_t)(p - unit));
        if (!mult)
            return cairn_error_set(err, -EINVAL,
                                   "invalid size \"%s\": unknown unit \"%.*s\" (use B, KB, MB, "
                                   "GB, TB, PB, EB or KiB, MiB, GiB, TiB, PiB, EiB)",
                                   s, (int)(p - unit), unit);
        uint64_t term = 0;
        if (overflow || (whole && mult > UINT64_MAX / whole))
            return cairn_error_set(err, -ERANGE, "size out of range: \"%s\"", s);
        term = whole * mult;
        if (frac_len) {
            long double f = 0, scale = 1;
            for (size_t i = 0; i < frac_len && i < 30; i++) {
                scale /= 10;
                f += (long double)(frac[i] - '0') * scale;
            }
            uint64_t extra = (uint64_t)(f * (long double)mult);
            if (term > UINT64_MAX - extra)
                return cairn_error_set(err, -ERANGE, "size out of range: \"%s\"", s);
            term += extra;
        }
        if (total > UINT64_MAX - term)
            return cairn_error_set(err, -ERANGE, "size out of range: \"%s\"", s);
        total += term;
    }
    *out = total;
    return 0;
}

char *bytesize_format(uint64_t bytes, char *out, size_t size)
{
    for (int i = (int)CAIRN_ARRAY_LEN(size_units_base2) - 1; i >= 0; i--) {
        uint64_t mult = 1ULL << (10 * (i + 1));
        if (bytes && bytes % mult == 0) {
            snprintf(out, size, "%llu%s", (unsigned long long)(bytes / mult), size_units_base2[i]);
            return out;
        }
    }
    snprintf(out, size, "%lluB", (unsigned long long)bytes);
    return out;
}

/* ---- floats ------------------------------------------------------------------------------ */

/* Shortest round-trip digits of a finite, non-zero |v|: digits[] without a point, and exp
 * such that v = 0.d1d2d3... * 10^(exp+1), i.e. d1 is at 10^exp. Returns the digit count. */
/* Rounds v to p significant digits (1 <= p <= 17): writes them to out and returns the decimal
 * exponent. d25/e25 are v correctly rounded to 25 digits; rounding them again to p digits
 * gives v correctly rounded to p digits unless they sit exactly on a p-digit tie (a '5' then
 * zeros: any other boundary would be a 25-digit number nearer to v than d25), where the exact
 * value decides: then printf rounds v itself. */
static int round_digits(double v, const char d25[25], int e25, int p, char out[18])
{
    memcpy(out, d25, (size_t)p);
    bool up = d25[p] > '5';
    if (d25[p] == '5') {
        bool rest_zero = true;
        for (int i = p + 1; i < 25; i++)
            rest_zero &= d25[i] == '0';
        if (rest_zero) {
            char tmp[40];
            snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
            int n = 0;
            const char *q = tmp;
            for (; *q != 'e'; q++)
                if (is_digit(*q))
                    out[n++] = *q;
            return atoi(q + 1);
        }
        up = true;
    }
    if (up) {
        int i = p - 1;
        while (i >= 0 && out[i] == '9')
            out[i--] = '0';
        if (i < 0) { /* 99..9 rounds to 100..0: one more power of ten */
            out[0] = '1';
            return e25 + 1;
        }
        out[i]++;
    }
    return e25;
}

static bool digits_round_trip(double v, const char *digits, int p, int exp)
{
    char tmp[40];
    int n = 0;
    tmp[n++] = digits[0];
    tmp[n++] = '.';
    memcpy(tmp + n, digits + 1, (size_t)p - 1);
    n += p - 1;
    snprintf(tmp + n, sizeof(tmp) - (size_t)n, "e%d", exp);
    return strtod(tmp, NULL) == v;
}

static int shortest_digits(double v, char digits[18], int *exp)
{
    int nd = 0;
    if (v < 1e15 && v == (double)(int64_t)v) {
        /* Integral (counters mostly): its decimal digits are exact and shortest. */
        char tmp[24];
        nd = snprintf(tmp, sizeof(tmp), "%" PRId64, (int64_t)v);
        *exp = nd - 1;
        memcpy(digits, tmp, (size_t)nd);
    } else {
        /* The fewest significant digits that parse back to v. Round-tripping is monotonic in
         * the precision (the nearest p-digit decimal is also a (p+1)-digit one, so more
         * digits are never farther from v): a binary search over 1..17. Candidates come from
         * one 25-digit printf (round_digits), so a search costs one printf and a few strtod. */
        char tmp[48], d25[25];
        snprintf(tmp, sizeof(tmp), "%.24e", v);
        int n = 0;
        const char *q = tmp;
        for (; *q != 'e'; q++)
            if (is_digit(*q))
                d25[n++] = *q;
        int e25 = atoi(q + 1);
        char cand[18];
        int lo = 1, hi = 17;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            int e = round_digits(v, d25, e25, mid, cand);
            if (digits_round_trip(v, cand, mid, e))
                hi = mid;
            else
                lo = mid + 1;
        }
        *exp = round_digits(v, d25, e25, lo, digits);
        nd = lo;
    }
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    return nd;
}

size_t float_format_go(double v, char fmt, char *out, size_t size)
{
    char tmp[400];
    size_t n = 0;
    if (isnan(v))
        return (size_t)snprintf(out, size, "NaN");
    if (isinf(v))
        return (size_t)snprintf(out, size, v > 0 ? "+Inf" : "-Inf");

    if (signbit(v)) {
        tmp[n++] = '-';
        v = -v;
    }
    char digits[18];
    int exp = 0, nd = 1;
    if (v == 0) {
        digits[0] = '0', digits[1] = '\0';
    } else {
        nd = shortest_digits(v, digits, &exp);
    }

    bool use_e = fmt == 'e' || (fmt == 'g' && (exp < -4 || exp >= 6) && v != 0);
    if (use_e) {
        tmp[n++] = digits[0];
        if (nd > 1) {
            tmp[n++] = '.';
            memcpy(tmp + n, digits + 1, (size_t)nd - 1);
            n += (size_t)nd - 1;
        }
        n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "e%c%02d", exp < 0 ? '-' : '+',
                              exp < 0 ? -exp : exp);
    } else {
        int dp = exp + 1; /* digits before the decimal point */
        if (dp <= 0) {
            tmp[n++] = '0';
            tmp[n++] = '.';
            for (int i = 0; i < -dp; i++)
                tmp[n++] = '0';
            memcpy(tmp + n, digits, (size_t)nd);
            n += (size_t)nd;
        } else if (dp >= nd) {
            memcpy(tmp + n, digits, (size_t)nd);
            n += (size_t)nd;
            for (int i = nd; i < dp; i++)
                tmp[n++] = '0';
        } else {
            memcpy(tmp + n, digits, (size_t)dp);
            n += (size_t)dp;
            tmp[n++] = '.';
            memcpy(tmp + n, digits + dp, (size_t)(nd - dp));
            n += (size_t)(nd - dp);
        }
    }
    tmp[n] = '\0';
    if (size) {
        size_t copy = n < size - 1 ? n : size - 1;
        memcpy(out, tmp, copy);
        out[copy] = '\0';
    }
    return n;
}

int hex_digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        /* Lead byte: sequence length and the allowed range of the second byte. */
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return false;
        }
        if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
            return false;
        for (size_t i = 2; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += n;
    }
    return true;
}
