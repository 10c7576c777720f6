/*
 * scrape/scrape.h: the public header of Cairn's scraper.
 *
 * The scrape manager (targets, scrape loops over libcurl multi handles, staleness) comes with
 * the scraping issue. This header holds the typed form of one `scrape_configs` entry, which the
 * daemon's configuration loader fills in and validates, with Prometheus's defaults.
 */
#ifndef CAIRN_SCRAPE_H
#define CAIRN_SCRAPE_H

#include "common/common.h"

/* One `static_configs` entry: a target group. */
typedef struct scrape_static_config {
    char **targets; /* owned array of owned "host:port" strings */
    size_t target_count;
    label_list_t labels; /* labels attached to every target of the group */
} scrape_static_config_t;

/* One `file_sd_configs` entry. */
typedef struct scrape_file_sd_config {
    char **files; /* owned array of owned glob patterns */
    size_t file_count;
    int64_t refresh_interval_ms; /* default 5m */
} scrape_file_sd_config_t;

/* A query parameter sent with every scrape (`params: {name: [values]}`). */
typedef struct scrape_param {
    char *name;
    char **values;
    size_t value_count;
} scrape_param_t;

typedef struct scrape_config {
    char *job_name;                  /* required, unique across the file */
    int64_t scrape_interval_ms;      /* default: global scrape_interval */
    int64_t scrape_timeout_ms;       /* default: global scrape_timeout, at most the interval */
    char *metrics_path;              /* default "/metrics" */
    char *scheme;                    /* "http" (default) or "https" */
    bool honor_labels;               /* default false */
    bool honor_timestamps;           /* default true */
    bool track_timestamps_staleness; /* default false */
    bool enable_compression;         /* default true: ask for gzip */
    uint64_t body_size_limit;        /* bytes, 0 = unlimited; default: global */
    uint64_t sample_limit;           /* 0 = unlimited; default: global */
    uint64_t label_limit;
    uint64_t label_name_length_limit;
    uint64_t label_value_length_limit;
    uint64_t target_limit;
    scrape_param_t *params;
    size_t param_count;
    scrape_static_config_t *static_configs;
    size_t static_config_count;
    scrape_file_sd_config_t *file_sd_configs;
    size_t file_sd_config_count;
} scrape_config_t;

/* Global defaults that scrape configs inherit (the `global:` section). */
typedef struct scrape_global_defaults {
    int64_t scrape_interval_ms; /* default 1m */
    int64_t scrape_timeout_ms;  /* default 10s */
    uint64_t body_size_limit;
    uint64_t sample_limit;
    uint64_t label_limit;
    uint64_t label_name_length_limit;
    uint64_t label_value_length_limit;
    uint64_t target_limit;
} scrape_global_defaults_t;

#define SCRAPE_DEFAULT_INTERVAL_MS        (60 * 1000)
#define SCRAPE_DEFAULT_TIMEOUT_MS         (10 * 1000)
#define SCRAPE_DEFAULT_FILE_SD_REFRESH_MS (5 * 60 * 1000)

void scrape_global_defaults_init(scrape_global_defaults_t *g);
/* Fills a scrape config with Prometheus's defaults, inheriting from g. */
void scrape_config_init(scrape_config_t *sc, const scrape_global_defaults_t *g);
void scrape_config_free(scrape_config_t *sc);

#endif /* CAIRN_SCRAPE_H */
