/*
 * tools/cairn_tool.c: `cairn-tool`, Cairn's companion command in the spirit of promtool.
 *
 * Subcommands are a table of {words, handler, usage}; `cairn-tool help` and --help list them.
 *   check config FILE...   validate configuration files with the daemon's own loader
 *   bench write FILE       the `promtool tsdb bench write` workload against the head
 *   bench labels           writes a label-set file for bench write
 *   bench query-data       writes a realistic data set (Cairn directory, OpenMetrics file)
 *   bench query            dashboard query latencies against a Prometheus-compatible API
 *
 * Exit codes: 0 success, 1 a check failed, 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include "server/server.h"
#include "tools/bench.h"

typedef struct subcommand {
    const char *words[2]; /* e.g. {"check", "config"} */
    int (*run)(int argc, char **argv);
    const char *args;
    const char *help;
} subcommand_t;

static int check_config(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "cairn-tool: error: check config needs at least one FILE\n");
        return 2;
    }
    int status = 0;
    for (int i = 0; i < argc; i++) {
        printf("Checking %s\n", argv[i]);
        cairn_error_t err = {{0}};
        cairn_config_t *cfg = config_load_file(argv[i], &err);
        if (!cfg) {
            printf("  FAILED: %s\n\n", err.message);
            status = 1;
            continue;
        }
        for (size_t w = 0; w < cfg->warning_count; w++)
            printf("  WARNING: %s\n", cfg->warnings[w]);
        printf("  SUCCESS: %zu scrape configs, %zu remote write configs found\n\n",
               cfg->scrape_config_count, cfg->remote_write_count);
        config_free(cfg);
    }
    return status;
}

static const subcommand_t subcommands[] = {
    {{"check", "config"},
     check_config,
     "FILE...",
     "Check that configuration files are valid; prints the loader's messages."},
    {{"bench", "write"},
     bench_write_main,
     "[--metrics=N] [--scrapes=N] [--threads=N] FILE",
     "Append promtool's bench write workload to a fresh head; print throughput, memory, "
     "bytes per sample and WAL replay speed."},
    {{"bench", "reopen"},
     bench_reopen_main,
     "[--out=DIR]",
     "Open a directory written by bench write and print its WAL replay figures."},
    {{"bench", "labels"},
     bench_labels_main,
     "[--series=N] --out=FILE",
     "Write N label sets (JSON lines) for bench write."},
    {{"bench", "query-data"},
     bench_query_data_main,
     "[--series=N] [--duration=D] [--interval=D] [--out=DIR] [--openmetrics=FILE]",
     "Write a node/api exporter-like data set into a Cairn data directory (and OpenMetrics)."},
    {{"bench", "query"},
     bench_query_main,
     "--url=URL --end=UNIX_SECONDS [--rounds=N] [--concurrency=N]",
     "Run the dashboard query list against a Prometheus-compatible HTTP API; print "
     "latency percentiles."},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: cairn-tool [<flags>] <command> [<args> ...]\n\n"
                 "Tooling for the Cairn monitoring system.\n\n"
                 "Flags:\n"
                 "  -h, --help     Show this help and exit.\n"
                 "      --version  Show the version and exit.\n\n"
                 "Commands:\n"
                 "  help\n      Show this help.\n");
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(subcommands); i++)
        fprintf(out, "  %s %s %s\n      %s\n", subcommands[i].words[0], subcommands[i].words[1],
                subcommands[i].args, subcommands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *first = argv[1];
    if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0 || strcmp(first, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(first, "--version") == 0) {
        printf("cairn-tool, version %s (revision: %s)\n", CAIRN_VERSION, CAIRN_REVISION);
        return 0;
    }
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(subcommands); i++) {
        const subcommand_t *sc = &subcommands[i];
        if (strcmp(first, sc->words[0]) != 0 || argc < 3 || strcmp(argv[2], sc->words[1]) != 0)
            continue;
        if (sc->words[0][0] == 'b') /* bench commands parse their own flags */
            return sc->run(argc - 2, argv + 2);
        if (argc > 3 && (strcmp(argv[3], "--help") == 0 || strcmp(argv[3], "-h") == 0)) {
            printf("usage: cairn-tool %s %s %s\n\n%s\n", sc->words[0], sc->words[1], sc->args,
                   sc->help);
            return 0;
        }
        return sc->run(argc - 3, argv + 3);
    }
    fprintf(stderr, "cairn-tool: error: unknown command \"%s%s%s\"\n\n", first, argc > 2 ? " " : "",
            argc > 2 ? argv[2] : "");
    usage(stderr);
    return 2;
}
