/*
 * query/api_params.c: the HTTP API's parameter syntaxes, parsed as Prometheus parses them.
 *
 *   times      unix seconds as a float ("1435781451.781", "1e9"), the fraction rounded to the
 *              millisecond; else RFC 3339 ("2015-07-01T20:10:51.781Z", "...+02:00"), the
 *              fraction truncated to the millisecond; else one of the two boundary strings
 *              Prometheus's clients use for "no start" and "no end".
 *   durations  float seconds, else a Prometheus duration ("1h30m"); kept in nanoseconds so
 *              that the API's checks see what Prometheus's see.
 *   limit      a non-negative decimal integer.
 *
 * Error messages are Prometheus's, without the `invalid parameter "name": ` prefix.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/api_internal.h"

/* Characters Go's ParseFloat can accept; anything else (spaces, signs in odd places are left
 * to strtod's own checks) fails early, because strtod skips leading white space. */
static bool float_chars_ok(const char *s)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '.' || c == '+' || c == '-'))
            return false;
    }
    return true;
}

int api_parse_go_float(const char *s, double *out)
{
    if (!float_chars_ok(s))
        return -EINVAL;
    /* strtod also takes "infinity", "nan(...)" and hex floats, as does Go (but for the
     * parenthesised NaN payload, which the character check above already excludes). */
    /* Go wants a 'p' exponent with a hexadecimal mantissa; strtod does not. */
    const char *digits = s + (*s == '+' || *s == '-');
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') && !strpbrk(digits, "pP"))
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        return -EINVAL;
    if (errno == ERANGE && isinf(v))
        return -EINVAL; /* Go reports out-of-range values as errors */
    *out = v;
    return 0;
}

/* ---- times ---------------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Reads exactly n digits at *p. */
static bool read_digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + (unsigned)((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* RFC 3339 as Go's time.Parse(time.RFC3339Nano) reads it: YYYY-MM-DDTHH:MM:SS, an optional
 * fraction after '.' or ',', then Z or +HH:MM / -HH:MM. */
static bool parse_rfc3339(const char *s, int64_t *out_ms)
{
    const char *p = s;
    unsigned year, month, day, hour, min, sec;
    if (!read_digits(&p, 4, &year) || *p++ != '-' || !read_digits(&p, 2, &month) || *p++ != '-' ||
        !read_digits(&p, 2, &day) || *p++ != 'T' || !read_digits(&p, 2, &hour) || *p++ != ':' ||
        !read_digits(&p, 2, &min) || *p++ != ':' || !read_digits(&p, 2, &sec))
        return false;
    static const unsigned month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || hour > 23 || min > 59 || sec > 59 || day < 1)
        return false;
    unsigned mdays = month_days[month - 1] + (month == 2 && is_leap(year));
    if (day > mdays)
        return false;
    int64_t frac_ms = 0;
    if (*p == '.' || *p == ',') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        int digits = 0;
        for (; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    int64_t offset_s = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        unsigned oh, om;
        if (!read_digits(&p, 2, &oh) || *p++ != ':' || !read_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return false;
        offset_s = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return false;
    }
    if (*p)
        return false;
    int64_t secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;
    *out_ms = (secs - offset_s) * 1000 + frac_ms;
    return true;
}

int api_parse_time(const char *s, int64_t *out_ms, cairn_error_t *err)
{
    double f;
    if (api_parse_go_float(s, &f) == 0) {
        /* Whole seconds, plus the fraction rounded to milliseconds (half away from zero).
         * NaN, infinities and times beyond int64 milliseconds have no meaning here. */
        if (isfinite(f) && fabs(f) < 9.2e15) {
            double whole;
            double frac = modf(f, &whole);
            *out_ms = (int64_t)whole * 1000 + (int64_t)round(frac * 1000);
            return 0;
        }
    } else if (parse_rfc3339(s, out_ms)) {
        return 0;
    } else if (strcmp(s, API_MIN_TIME_FORMATTED) == 0) {
        *out_ms = API_MIN_TIME_MS;
        return 0;
    } else if (strcmp(s, API_MAX_TIME_FORMATTED) == 0) {
        *out_ms = API_MAX_TIME_MS;
        return 0;
    }
    buf_t q = BUF_INIT;
    api_append_go_quoted(&q, s);
    cairn_error_set(err, -EINVAL, "cannot parse %s to a valid timestamp", q.data);
    buf_free(&q);
    return -EINVAL;
}

/* ---- durations and limits ------------------------------------------------------------------- */

int api_parse_duration(const char *s, int64_t *out_ns, cairn_error_t *err)
{
    buf_t q = BUF_INIT;
    int rc = 0;
    double f;
    int64_t ms;
    if (api_parse_go_float(s, &f) == 0) {
        double ns = f * 1e9;
        if (!(ns < 9223372036854775807.0 && ns >= -9223372036854775808.0)) {
            api_append_go_quoted(&q, s);
            rc = cairn_error_set(err, -ERANGE,
                                 "cannot parse %s to a valid duration. It overflows int64", q.data);
        } else {
            *out_ns = (int64_t)ns;
        }
    } else if (duration_parse(s, &ms, NULL) == 0 && ms <= INT64_MAX / 1000000) {
        *out_ns = ms * 1000000;
    } else {
        api_append_go_quoted(&q, s);
        rc = cairn_error_set(err, -EINVAL, "cannot parse %s to a valid duration", q.data);
    }
    buf_free(&q);
    return rc;
}

int api_parse_limit(const char *s, uint64_t *out, cairn_error_t *err)
{
    *out = 0;
    if (!s || !*s)
        return 0;
    /* strconv.Atoi: an optional sign and decimal digits. */
    const char *p = s + (*s == '+' || *s == '-');
    bool digits = *p != '\0';
    for (const char *d = p; *d; d++)
        digits = digits && isdigit((unsigned char)*d);
    buf_t q = BUF_INIT;
    api_append_go_quoted(&q, s);
    int rc = 0;
    int64_t v;
    if (!digits) {
        rc = cairn_error_set(err, -EINVAL, "strconv.Atoi: parsing %s: invalid syntax", q.data);
    } else if (parse_int64(s[0] == '+' ? s + 1 : s, &v) < 0) {
        rc = cairn_error_set(err, -ERANGE, "strconv.Atoi: parsing %s: value out of range", q.data);
    } else if (v < 0) {
        rc = cairn_error_set(err, -EINVAL, "limit must be non-negative");
    } else {
        *out = (uint64_t)v;
    }
    buf_free(&q);
    return rc;
}

/* ---- Go's %q ----------------------------------------------------------------------------------
 */

size_t api_utf8_sequence_length(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if ((p[0] & 0xE0) == 0xC0)
        n = 2, cp = p[0] & 0x1F;
    else if ((p[0] & 0xF0) == 0xE0)
        n = 3, cp = p[0] & 0x0F;
    else if ((p[0] & 0xF8) == 0xF0)
        n = 4, cp = p[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void api_append_go_quoted(buf_t *b, const char *s)
{
    buf_append_char(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        const char *esc = NULL;
        switch (c) {
        case '\a': esc = "\\a"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\v': esc = "\\v"; break;
        case '\\': esc = "\\\\"; break;
        case '"': esc = "\\\""; break;
        default: break;
        }
        if (esc) {
            buf_append_str(b, esc);
            p++;
            continue;
        }
        size_t n = api_utf8_sequence_length(p);
        if (n == 0 || c < 0x20 || c == 0x7F) {
            buf_printf(b, "\\x%02x", c);
            p++;
            continue;
        }
        buf_append(b, p, n);
        p += n;
    }
    buf_append_char(b, '"');
}
