/*
 * query/options.c: query engine options with Prometheus's defaults.
 */
#include <string.h>

#include "query/query.h"

void query_options_init(query_options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->lookback_delta_ms = 5 * 60 * 1000;
    opts->timeout_ms = 2 * 60 * 1000;
    opts->max_samples = 50000000;
    opts->max_concurrency = 20;
}
