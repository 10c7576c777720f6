/*
 * tsdb/options.c: storage options and the `storage:` config section, with their defaults, and
 * the data directory's lock file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsdb/tsdb.h"

void tsdb_options_init(tsdb_options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->path = cairn_strdup(TSDB_DEFAULT_PATH);
    opts->retention_time_ms = TSDB_DEFAULT_RETENTION_MS;
    opts->wal_compression = true;
    opts->label_limit = TSDB_DEFAULT_MAX_LABELS;
    opts->label_name_length_limit = TSDB_DEFAULT_MAX_NAME_LENGTH;
    opts->label_value_length_limit = TSDB_DEFAULT_MAX_VALUE_LENGTH;
}

void tsdb_options_free(tsdb_options_t *opts)
{
    cairn_free(opts->path);
    opts->path = NULL;
}

void tsdb_config_init(tsdb_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
}

/* mkdir -p */
static int make_directories(const char *path)
{
    char tmp[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0777) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0777) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int tsdb_directory_lock(const char *path, int *lock_fd, cairn_error_t *err)
{
    int rc = make_directories(path);
    if (rc < 0)
        return cairn_error_set(err, rc, "create data directory %s: %s", path, cairn_strerror(rc));
    char lock_path[4200];
    snprintf(lock_path, sizeof(lock_path), "%s/lock", path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        return cairn_error_set(err, rc, "open lock file %s: %s", lock_path, cairn_strerror(rc));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        close(fd);
        if (rc == -EWOULDBLOCK)
            return cairn_error_set(err, rc,
                                   "lock DB directory %s: held by another process (is another "
                                   "Cairn running on this directory?)",
                                   path);
        return cairn_error_set(err, rc, "lock DB directory %s: %s", path, cairn_strerror(rc));
    }
    *lock_fd = fd;
    return 0;
}

void tsdb_directory_unlock(int lock_fd)
{
    if (lock_fd >= 0) {
        flock(lock_fd, LOCK_UN);
        close(lock_fd);
    }
}
