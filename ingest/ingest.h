/*
 * ingest/ingest.h: the public header of Cairn's write paths.
 *
 * Exposition parsers, the remote-write receiver and sender come with later issues. This header
 * holds the typed form of one `remote_write` configuration entry, with Prometheus's defaults.
 */
#ifndef CAIRN_INGEST_H
#define CAIRN_INGEST_H

#include "common/common.h"

/* `queue_config` of a remote_write entry (Prometheus defaults in the comments). */
typedef struct remote_write_queue_config {
    uint64_t capacity;              /* 10000 */
    uint64_t max_shards;            /* 50 */
    uint64_t min_shards;            /* 1 */
    uint64_t max_samples_per_send;  /* 2000 */
    int64_t batch_send_deadline_ms; /* 5s */
    int64_t min_backoff_ms;         /* 30ms */
    int64_t max_backoff_ms;         /* 5s */
    bool retry_on_http_429;         /* true since Prometheus 2.30 */
} remote_write_queue_config_t;

typedef struct remote_write_config {
    char *url;                 /* required, http:// or https:// */
    char *name;                /* optional, unique when set */
    int64_t remote_timeout_ms; /* 30s */
    label_list_t headers;      /* extra HTTP headers */
    remote_write_queue_config_t queue;
} remote_write_config_t;

void remote_write_config_init(remote_write_config_t *rw);
void remote_write_config_free(remote_write_config_t *rw);

#endif /* CAIRN_INGEST_H */
