/*
 * query/query.h: the public header of Cairn's PromQL engine and HTTP API.
 *
 * The engine comes with the PromQL issue. This header holds the query options that the
 * daemon's --query.* flags set, with Prometheus's defaults, so the command line is settled.
 */
#ifndef CAIRN_QUERY_H
#define CAIRN_QUERY_H

#include "common/common.h"

typedef struct query_options {
    int64_t lookback_delta_ms; /* --query.lookback-delta, default 5m */
    int64_t timeout_ms;        /* --query.timeout, default 2m */
    uint64_t max_samples;      /* --query.max-samples, default 50000000 */
    uint64_t max_concurrency;  /* --query.max-concurrency, default 20 */
} query_options_t;

void query_options_init(query_options_t *opts);

#endif /* CAIRN_QUERY_H */
