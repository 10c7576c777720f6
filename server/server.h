/*
 * server/server.h: the public header of Cairn's daemon layer: command-line flags and the YAML
 * configuration loader. The `cairn` binary (server/main.c) and `cairn-tool check config` use
 * them, so both print the same messages for the same mistakes.
 */
#ifndef CAIRN_SERVER_H
#define CAIRN_SERVER_H

#include <stdio.h>

#include "common/common.h"
#include "ingest/ingest.h"
#include "query/query.h"
#include "scrape/scrape.h"
#include "tsdb/tsdb.h"

#ifndef CAIRN_VERSION
#define CAIRN_VERSION "0.0.0"
#endif

/* ---------------------------------------------------------------------------------------------
 * Flags
 *
 * Prometheus-compatible long flags, parsed with getopt_long: `--name=value` or `--name value`;
 * booleans as `--name` or `--no-name`. Durations and sizes take Prometheus syntax.
 */
typedef struct server_flags {
    char *config_file;         /* --config.file; NULL means the embedded default configuration */
    char *listen_address;      /* --web.listen-address, default "127.0.0.1:9090" */
    uint64_t max_connections;  /* --web.max-connections, default 512 */
    uint64_t max_request_body; /* --web.max-request-body-size, default 32MiB */
    bool enable_lifecycle;     /* --web.enable-lifecycle: POST /-/reload and /-/quit */
    log_level_t log_level;     /* --log.level, default info */
    tsdb_options_t tsdb;       /* --storage.tsdb.* */
    query_options_t query;     /* --query.* */
} server_flags_t;

#define SERVER_DEFAULT_LISTEN_ADDRESS   "127.0.0.1:9090"
#define SERVER_DEFAULT_MAX_CONNECTIONS  512
#define SERVER_DEFAULT_MAX_REQUEST_BODY (32ULL << 20)

/* What server_flags_parse found besides flags to run with. */
enum {
    SERVER_FLAGS_RUN = 0,     /* start the daemon */
    SERVER_FLAGS_HELP = 1,    /* --help was given */
    SERVER_FLAGS_VERSION = 2, /* --version was given */
};

/* Fills defaults. Free with server_flags_free. */
void server_flags_init(server_flags_t *flags);
void server_flags_free(server_flags_t *flags);

/* Parses argv (argv[0] is the program name). Returns SERVER_FLAGS_RUN, _HELP or _VERSION, or
 * -EINVAL with a message in err naming the flag and the value, e.g.
 *   invalid value "15x" for flag --storage.tsdb.retention.time: unknown unit "x" in duration
 * Prints nothing. Not thread-safe (getopt state). */
int server_flags_parse(server_flags_t *flags, int argc, char **argv, cairn_error_t *err);

/* Prints the --help text for program name prog. */
void server_flags_print_help(FILE *out, const char *prog);

/* Calls fn for every flag with its current value formatted as given on the command line
 * (for the log at start-up and /api/v1/status/flags). */
void server_flags_each(const server_flags_t *flags,
                       void (*fn)(void *ctx, const char *name, const char *value), void *ctx);

/* ---------------------------------------------------------------------------------------------
 * Configuration
 *
 * A Prometheus-compatible YAML file read with libyaml. Errors name the file, the line and
 * column (1-based) and the key, e.g.
 *   cairn.yml:7:5: field "scrape_intervall" not found in type scrape_config
 *   cairn.yml:3:20: global.scrape_interval: not a valid duration string: "1x"
 * Keys Prometheus knows but Cairn does not implement (rule_files, alerting, ...) are accepted
 * with a warning in cairn_config_t.warnings; any other key is an error.
 */
typedef struct cairn_config {
    char *source;                    /* owned: the file name, or "<default>" */
    scrape_global_defaults_t global; /* global scrape_interval, scrape_timeout and limits */
    int64_t evaluation_interval_ms;  /* global evaluation_interval, default 1m */
    label_list_t external_labels;    /* global external_labels, sorted */
    scrape_config_t *scrape_configs; /* owned array */
    size_t scrape_config_count;
    remote_write_config_t *remote_writes; /* owned array */
    size_t remote_write_count;
    tsdb_config_t storage; /* storage.tsdb */
    char **warnings;       /* owned array of owned messages */
    size_t warning_count;
} cairn_config_t;

/* The embedded default configuration: scrapes the daemon itself every 15s at "%s". */
extern const char CONFIG_DEFAULT_TEMPLATE[];

/* Loads and validates a file. Returns NULL with the message in err on failure. */
cairn_config_t *config_load_file(const char *path, cairn_error_t *err);
/* Loads from memory; source names the input in messages. */
cairn_config_t *config_load_string(const char *yaml, size_t len, const char *source,
                                   cairn_error_t *err);
/* Loads the embedded default configuration, scraping self_target ("host:port"). */
cairn_config_t *config_load_default(const char *self_target, cairn_error_t *err);
void config_free(cairn_config_t *cfg);

#endif /* CAIRN_SERVER_H */
