/*
 * ingest/remote_write_config.c: defaults and teardown of a remote_write entry.
 *
 * Defaults are Prometheus's (config.DefaultRemoteWriteConfig and DefaultQueueConfig).
 */
#include <string.h>

#include "ingest/ingest.h"

void remote_write_config_init(remote_write_config_t *rw)
{
    memset(rw, 0, sizeof(*rw));
    rw->remote_timeout_ms = 30 * 1000;
    rw->queue.capacity = 10000;
    rw->queue.max_shards = 50;
    rw->queue.min_shards = 1;
    rw->queue.max_samples_per_send = 2000;
    rw->queue.batch_send_deadline_ms = 5 * 1000;
    rw->queue.min_backoff_ms = 30;
    rw->queue.max_backoff_ms = 5 * 1000;
    rw->queue.retry_on_http_429 = false;
}

void remote_write_config_free(remote_write_config_t *rw)
{
    cairn_free(rw->url);
    cairn_free(rw->name);
    label_list_free(&rw->headers);
    memset(rw, 0, sizeof(*rw));
}
