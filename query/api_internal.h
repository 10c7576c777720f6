/*
 * query/api_internal.h: the pieces of the HTTP API (query/api.c) that are worth testing on
 * their own: parsing of the API's parameter syntaxes and JSON rendering in the exact shapes
 * Prometheus writes. Internal to query/ and its tests.
 *
 * Parameter parsers return 0, or -EINVAL (or -ERANGE) with Prometheus's message in err, e.g.
 *   cannot parse "x" to a valid timestamp
 * without the `invalid parameter "name": ` prefix, which the handler adds.
 */
#ifndef CAIRN_QUERY_API_INTERNAL_H
#define CAIRN_QUERY_API_INTERNAL_H

#include "query/query.h"

/* The bounds the API uses for absent start/end parameters, and the two strings that denote
 * them (what Prometheus's clients send for "since the beginning" / "until the end"). */
#define API_MIN_TIME_MS           (-9223309901257974000LL)
#define API_MAX_TIME_MS           9223309901257974999LL
#define API_MIN_TIME_FORMATTED    "-292273086-05-16T16:47:06Z"
#define API_MAX_TIME_FORMATTED    "292277025-08-18T07:12:54.999999999Z"
#define API_MAX_POINTS_PER_SERIES 11000

/* Parses a time parameter: unix seconds as a float (the fraction rounded to milliseconds), or
 * RFC 3339 with an optional fraction (truncated to milliseconds) and Z or a numeric offset. */
int api_parse_time(const char *s, int64_t *out_ms, cairn_error_t *err);

/* Parses a duration parameter: float seconds, or a Prometheus duration ("1h30m"). Stores
 * nanoseconds, as the API compares them before turning them into milliseconds (truncating):
 * a step of 0.0001 is positive, yet rounds to a zero-millisecond step. */
int api_parse_duration(const char *s, int64_t *out_ns, cairn_error_t *err);

/* Parses the limit parameter: "" is 0 (no limit); otherwise a non-negative decimal integer. */
int api_parse_limit(const char *s, uint64_t *out, cairn_error_t *err);

/* Parses s as Go's strconv.ParseFloat does (decimal or hex, "Inf", "NaN", no spaces).
 * Returns 0 or -EINVAL (also when the value overflows). */
int api_parse_go_float(const char *s, double *out);

/* Length of the valid UTF-8 sequence at p (1 to 4 bytes), or 0 if it is not one (bad lead or
 * continuation byte, overlong form, surrogate, beyond U+10FFFF). */
size_t api_utf8_sequence_length(const unsigned char *p);

/* Appends s quoted as Go's %q would (for messages such as `invalid label name: "a-b"`). */
void api_append_go_quoted(buf_t *b, const char *s);

/* ---------------------------------------------------------------------------------------------
 * JSON
 */
/* A JSON string literal as Go's encoding/json writes it: ", \ and control characters
 * escaped, also <, > and & (\u003c...), U+2028 and U+2029; invalid UTF-8 becomes U+FFFD. */
void api_json_string(buf_t *b, const char *s);
/* A sample value: a JSON string holding Go's FormatFloat(v, 'f' or 'e', -1): 'e' when
 * 0 < |v| < 1e-6 or |v| >= 1e21. "NaN", "+Inf", "-Inf" for the special values. */
void api_json_sample_value(buf_t *b, double v);
/* A sample timestamp (ms) in seconds: integral seconds, then '.' and three digits only when
 * the milliseconds are not zero ("1435781451.780"). */
void api_json_sample_time(buf_t *b, int64_t t_ms);
/* A finite float as a JSON number the way Go's encoding/json writes a float64. */
void api_json_go_float(buf_t *b, double v);
/* A label set as a JSON object, in the given (sorted) order. */
void api_json_labels(buf_t *b, const label_pair_t *labels, size_t count);
void api_json_tsdb_labels(buf_t *b, const tsdb_label_t *labels, size_t count);
/* The "data" object of a query result: {"resultType":"...","result":...}. Series beyond
 * series_limit (0: no limit) are left out. */
void api_json_query_data(buf_t *b, const promql_result_t *result, size_t series_limit);

#endif /* CAIRN_QUERY_API_INTERNAL_H */
