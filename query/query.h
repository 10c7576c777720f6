/*
 * query/query.h: the public header of Cairn's PromQL engine and HTTP API.
 *
 * The engine parses a PromQL expression, fetches each selector's series once for the whole
 * query range from a TSDB querier, and steps through them. Results use Prometheus's value
 * types (scalar, string, instant vector, range vector). Every query is bounded: at most
 * max_samples samples in memory at once, a timeout, and a cancellation flag the caller may
 * set (the HTTP layer sets it when the client goes away).
 *
 * The HTTP API is transport-agnostic: query_api_handle takes a method, a path and the
 * decoded parameters (query string and form body, repeated names kept) and fills a status,
 * a content type and a JSON body in Prometheus's shapes. server/ adapts libmicrohttpd to it.
 *
 * Thread safety: an engine is shared by all request threads; each query is independent.
 */
#ifndef CAIRN_QUERY_H
#define CAIRN_QUERY_H

#include <stdatomic.h>

#include "common/common.h"
#include "tsdb/tsdb.h"

typedef struct query_options {
    int64_t lookback_delta_ms;      /* --query.lookback-delta, default 5m */
    int64_t timeout_ms;             /* --query.timeout, default 2m */
    uint64_t max_samples;           /* --query.max-samples, default 50000000 */
    uint64_t max_concurrency;       /* --query.max-concurrency, default 20 */
    int64_t evaluation_interval_ms; /* default subquery step; 0 means 1m */
} query_options_t;

void query_options_init(query_options_t *opts);

/* ---------------------------------------------------------------------------------------------
 * Values
 */
typedef enum promql_value_type {
    PROMQL_VALUE_NONE,
    PROMQL_VALUE_SCALAR,
    PROMQL_VALUE_VECTOR, /* instant vector: one point per series */
    PROMQL_VALUE_MATRIX, /* range vector */
    PROMQL_VALUE_STRING,
} promql_value_type_t;

/* "scalar", "vector", "matrix", "string" (and "none"), as the API and errors name them. */
const char *promql_value_type_name(promql_value_type_t type);

typedef struct promql_point {
    int64_t t; /* milliseconds */
    double v;
} promql_point_t;

/* One series of a result: labels sorted by name (owned strings), points in time order. An
 * instant vector's series have exactly one point, at the evaluation time. */
typedef struct promql_series {
    label_pair_t *labels; /* owned */
    size_t label_count;
    promql_point_t *points; /* owned */
    size_t point_count;
} promql_series_t;

/* Why a query failed, with Prometheus's errorType names (promql_error_type_name) and the
 * HTTP status the API answers with. */
typedef enum promql_error_type {
    PROMQL_ERROR_NONE,
    PROMQL_ERROR_BAD_DATA,  /* "bad_data", 400: parse errors, bad parameters */
    PROMQL_ERROR_EXECUTION, /* "execution", 422: evaluation errors (limits, matching) */
    PROMQL_ERROR_CANCELED,  /* "canceled", 499: the client went away */
    PROMQL_ERROR_TIMEOUT,   /* "timeout", 503 */
    PROMQL_ERROR_INTERNAL,  /* "internal", 500 */
} promql_error_type_t;

const char *promql_error_type_name(promql_error_type_t type);
unsigned promql_error_http_status(promql_error_type_t type);

typedef struct promql_result {
    promql_value_type_t type;
    int64_t t;               /* scalar and string: the evaluation time */
    double scalar;           /* PROMQL_VALUE_SCALAR */
    char *string;            /* PROMQL_VALUE_STRING, owned */
    promql_series_t *series; /* VECTOR and MATRIX, owned; sorted by labels unless ordered */
    size_t series_count;
    bool ordered;             /* the order is the query's (sort(), topk...), not by labels */
    char **warnings, **infos; /* annotations, owned, as the API renders them */
    size_t warning_count, info_count;
    /* Set when the query failed (then type is NONE and nothing else is set). */
    promql_error_type_t error_type;
    char *error; /* owned */
} promql_result_t;

void promql_result_free(promql_result_t *result);

/* ---------------------------------------------------------------------------------------------
 * Engine
 */
typedef struct promql_engine promql_engine_t;

/* The engine reads db (borrowed; it must outlive the engine). */
promql_engine_t *promql_engine_new(tsdb_t *db, const query_options_t *opts);
void promql_engine_free(promql_engine_t *engine);

/* Sets the default subquery step (the configuration's global.evaluation_interval, as in
 * Prometheus), for queries that start afterwards; step_ms <= 0 restores 1m. Thread-safe. */
void promql_engine_set_default_step(promql_engine_t *engine, int64_t step_ms);

/* Per-query settings; zero fields take the engine's options. */
typedef struct promql_query_params {
    int64_t lookback_delta_ms; /* 0: the engine's */
    int64_t timeout_ms;        /* 0: the engine's */
    atomic_bool *cancel;       /* optional; the query stops with CANCELED once it is true */
} promql_query_params_t;

/* Evaluates query at time t (ms). Always fills *out (free with promql_result_free); returns 0,
 * or -1 when the query failed, with out->error_type and out->error set. Blocks while the
 * engine is at max_concurrency. */
int promql_query_instant(promql_engine_t *engine, const char *query, int64_t t,
                         const promql_query_params_t *params, promql_result_t *out);

/* Evaluates query at start, start + step, ... <= end (ms; step > 0). The result is a matrix
 * (or an error); the query must give a scalar or an instant vector. */
int promql_query_range(promql_engine_t *engine, const char *query, int64_t start, int64_t end,
                       int64_t step, const promql_query_params_t *params, promql_result_t *out);

/* ---------------------------------------------------------------------------------------------
 * HTTP API (/api/v1/..., /federate)
 */
typedef struct query_api query_api_t;

typedef struct query_api_options {
    tsdb_t *db;                   /* borrowed */
    promql_engine_t *engine;      /* borrowed */
    const query_options_t *query; /* borrowed; lookback delta for /federate */
    /* Fills *out (empty on entry) with a copy of the current external labels, which /federate
     * adds to every series; called on request threads, so it must take the lock that guards
     * the configuration. NULL: none. */
    void (*external_labels)(void *ctx, label_list_t *out);
    /* Whether the last configuration reload succeeded and when (ms) the configuration last
     * changed, for /status/runtimeinfo. NULL: true and the start time. */
    void (*config_status)(void *ctx, bool *success, int64_t *last_ms);
    void *callback_ctx;
    const char *const *flag_names, *const *flag_values; /* for /status/flags (borrowed) */
    size_t flag_count;
    const char *version, *revision, *branch, *build_user, *build_date, *go_version;
    int64_t start_time_ms;         /* process start, for /status/runtimeinfo */
    const char *storage_retention; /* e.g. "15d", for /status/runtimeinfo */
} query_api_options_t;

/* Parameters come as Go's http.Request.Form holds them: the form body's first, then the query
 * string's, so that the first value of a name is the one Prometheus takes (a body value wins)
 * and repeated names (match[]) keep every value in that order. */
typedef struct query_api_request {
    const char *method;   /* "GET", "POST", ... */
    const char *path;     /* e.g. "/api/v1/query", without the query string, %-decoded */
    label_pair_t *params; /* form body then query string, in order, names may repeat */
    size_t param_count;
    atomic_bool *cancel; /* set by the transport when the client goes away; may be NULL */
} query_api_request_t;

typedef struct query_api_response {
    unsigned status;
    const char *content_type; /* static string */
    buf_t body;               /* owned by the caller, who frees it */
} query_api_response_t;

/* Creates the API; copies opts (the strings and arrays it points to stay borrowed). */
query_api_t *query_api_new(const query_api_options_t *opts);
void query_api_free(query_api_t *api);
/* Whether path is one the API serves (so the transport can route it here): /federate,
 * /api/v1/{query,query_range,series,labels,export}, /api/v1/label/<name>/values and
 * /api/v1/status/{buildinfo,runtimeinfo,flags,tsdb}. */
bool query_api_handles(const char *path);
/* Serves one request, filling resp (status, content type, body; resp->body must be empty or
 * initialised). Paths the API does not serve get 404, methods an endpoint does not take 405.
 * Thread-safe; blocks for the duration of a query. */
void query_api_handle(query_api_t *api, const query_api_request_t *req, query_api_response_t *resp);

#endif /* CAIRN_QUERY_H */
