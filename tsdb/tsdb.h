/*
 * tsdb/tsdb.h: the public header of Cairn's storage engine.
 *
 * The engine (series, XOR chunks, pooled chunk buffers, the batched appender, the WAL, the
 * querier) is built by the TSDB core issue. This header already holds the storage options that
 * the daemon's flags and the `storage:` configuration section fill in, so the command line is
 * settled before the engine lands.
 */
#ifndef CAIRN_TSDB_H
#define CAIRN_TSDB_H

#include "common/common.h"

/* Options from the command line (--storage.tsdb.*). */
typedef struct tsdb_options {
    char *path;                /* owned; data directory, default "data/" */
    int64_t retention_time_ms; /* --storage.tsdb.retention.time, default 15d; 0 = off */
    uint64_t retention_size;   /* --storage.tsdb.retention.size in bytes; 0 = off */
} tsdb_options_t;

#define TSDB_DEFAULT_PATH         "data/"
#define TSDB_DEFAULT_RETENTION_MS (15LL * 24 * 3600 * 1000)

/* Fills defaults; the caller owns the result and frees it with tsdb_options_free. */
void tsdb_options_init(tsdb_options_t *opts);
void tsdb_options_free(tsdb_options_t *opts);
/* Replaces the data directory (copied). */
void tsdb_options_set_path(tsdb_options_t *opts, const char *path);

/* Creates the data directory if needed (with parents) and takes an exclusive lock on its
 * `lock` file, so two processes never share one directory. On success stores the lock's file
 * descriptor (release with tsdb_directory_unlock) and returns 0; otherwise returns a negative
 * errno with a message in err (mentioning "lock" when another process holds it). */
int tsdb_directory_lock(const char *path, int *lock_fd, cairn_error_t *err);
void tsdb_directory_unlock(int lock_fd);

/* The `storage:` configuration section (`storage.tsdb`). */
typedef struct tsdb_config {
    int64_t out_of_order_time_window_ms; /* storage.tsdb.out_of_order_time_window, default 0 */
} tsdb_config_t;

void tsdb_config_init(tsdb_config_t *cfg);

#endif /* CAIRN_TSDB_H */
