/*
 * query/api_json.c: JSON rendering of the HTTP API, byte for byte as Prometheus writes it.
 *
 *   strings          Go's encoding/json escaping (HTML characters too), invalid UTF-8 as U+FFFD
 *   sample values    strings: FormatFloat 'f', or 'e' below 1e-6 and from 1e21 (|v|)
 *   sample times     seconds with a 3-digit millisecond fraction only when it is not zero
 *   scalar/string    [<Go float64 seconds>, "<value>"], the value of a scalar always 'f'
 *   vector, matrix   arrays of {"metric":{...},"value":[t,"v"]} / {"metric":{...},"values":[...]},
 *                    [] when empty
 */
#include <math.h>
#include <string.h>

#include "query/api_internal.h"

void api_json_string(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    buf_append_char(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c < 0x80) {
            switch (c) {
            case '"': buf_append(b, "\\\"", 2); break;
            case '\\': buf_append(b, "\\\\", 2); break;
            case '\n': buf_append(b, "\\n", 2); break;
            case '\r': buf_append(b, "\\r", 2); break;
            case '\t': buf_append(b, "\\t", 2); break;
            default:
                if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                    buf_append(b, esc, sizeof(esc));
                } else {
                    buf_append_char(b, (char)c);
                }
            }
            p++;
            continue;
        }
        size_t n = api_utf8_sequence_length(p);
        if (n == 0) {
            buf_append_str(b, "\\ufffd");
            p++;
        } else if (n == 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
            buf_append_str(b, p[2] == 0xA8 ? "\\u2028" : "\\u2029");
            p += 3;
        } else {
            buf_append(b, p, n);
            p += n;
        }
    }
    buf_append_char(b, '"');
}

void api_json_sample_value(buf_t *b, double v)
{
    char tmp[400];
    double a = fabs(v);
    char fmt = (a != 0 && (a < 1e-6 || a >= 1e21)) ? 'e' : 'f';
    float_format_go(v, fmt, tmp, sizeof(tmp));
    buf_append_char(b, '"');
    buf_append_str(b, tmp);
    buf_append_char(b, '"');
}

void api_json_sample_time(buf_t *b, int64_t t_ms)
{
    uint64_t u = (uint64_t)t_ms;
    if (t_ms < 0) {
        buf_append_char(b, '-');
        u = 0 - u; /* also right for INT64_MIN */
    }
    buf_printf(b, "%llu", (unsigned long long)(u / 1000));
    unsigned frac = (unsigned)(u % 1000);
    if (frac)
        buf_printf(b, ".%03u", frac);
}

void api_json_go_float(buf_t *b, double v)
{
    char tmp[400];
    double a = fabs(v);
    bool e = a != 0 && (a < 1e-6 || a >= 1e21);
    size_t n = float_format_go(v, e ? 'e' : 'f', tmp, sizeof(tmp));
    /* encoding/json writes one exponent digit where it can: 1e-07 becomes 1e-7. */
    if (e && n >= 4 && tmp[n - 4] == 'e' && tmp[n - 3] == '-' && tmp[n - 2] == '0') {
        tmp[n - 2] = tmp[n - 1];
        tmp[n - 1] = '\0';
    }
    buf_append_str(b, tmp);
}

void api_json_labels(buf_t *b, const label_pair_t *labels, size_t count)
{
    buf_append_char(b, '{');
    for (size_t i = 0; i < count; i++) {
        if (i)
            buf_append_char(b, ',');
        api_json_string(b, labels[i].name);
        buf_append_char(b, ':');
        api_json_string(b, labels[i].value);
    }
    buf_append_char(b, '}');
}

void api_json_tsdb_labels(buf_t *b, const tsdb_label_t *labels, size_t count)
{
    buf_append_char(b, '{');
    for (size_t i = 0; i < count; i++) {
        if (i)
            buf_append_char(b, ',');
        api_json_string(b, labels[i].name);
        buf_append_char(b, ':');
        api_json_string(b, labels[i].value);
    }
    buf_append_char(b, '}');
}

static void json_point(buf_t *b, const promql_point_t *p)
{
    buf_append_char(b, '[');
    api_json_sample_time(b, p->t);
    buf_append_char(b, ',');
    api_json_sample_value(b, p->v);
    buf_append_char(b, ']');
}

/* The API's resultType names (kept here so that the rendering does not depend on the engine). */
static const char *result_type_name(promql_value_type_t type)
{
    switch (type) {
    case PROMQL_VALUE_SCALAR: return "scalar";
    case PROMQL_VALUE_VECTOR: return "vector";
    case PROMQL_VALUE_MATRIX: return "matrix";
    case PROMQL_VALUE_STRING: return "string";
    case PROMQL_VALUE_NONE: break;
    }
    return "none";
}

void api_json_query_data(buf_t *b, const promql_result_t *result, size_t series_limit)
{
    buf_append_str(b, "{\"resultType\":");
    api_json_string(b, result_type_name(result->type));
    buf_append_str(b, ",\"result\":");
    switch (result->type) {
    case PROMQL_VALUE_SCALAR:
    case PROMQL_VALUE_STRING: {
        char tmp[400];
        buf_append_char(b, '[');
        api_json_go_float(b, (double)result->t / 1000);
        buf_append_char(b, ',');
        if (result->type == PROMQL_VALUE_SCALAR) {
            float_format_go(result->scalar, 'f', tmp, sizeof(tmp));
            api_json_string(b, tmp);
        } else {
            api_json_string(b, result->string ? result->string : "");
        }
        buf_append_char(b, ']');
        break;
    }
    case PROMQL_VALUE_VECTOR:
    case PROMQL_VALUE_MATRIX: {
        bool vector = result->type == PROMQL_VALUE_VECTOR;
        size_t n = result->series_count;
        if (series_limit && n > series_limit)
            n = series_limit;
        buf_append_char(b, '[');
        for (size_t i = 0; i < n; i++) {
            const promql_series_t *s = &result->series[i];
            if (i)
                buf_append_char(b, ',');
            buf_append_str(b, "{\"metric\":");
            api_json_labels(b, s->labels, s->label_count);
            if (vector) {
                buf_append_str(b, ",\"value\":");
                if (s->point_count)
                    json_point(b, &s->points[0]);
                else
                    buf_append_str(b, "null");
            } else {
                buf_append_str(b, ",\"values\":[");
                for (size_t j = 0; j < s->point_count; j++) {
                    if (j)
                        buf_append_char(b, ',');
                    json_point(b, &s->points[j]);
                }
                buf_append_char(b, ']');
            }
            buf_append_char(b, '}');
        }
        buf_append_char(b, ']');
        break;
    }
    case PROMQL_VALUE_NONE: buf_append_str(b, "null"); break;
    }
    buf_append_char(b, '}');
}
