/*
 * server/main.c: the `cairn` daemon.
 *
 * Start-up: parse flags (exit 2 on a bad one), block the signals we handle in every thread,
 * bind the listen socket, load the configuration (exit 1 on a bad one), start the HTTP server,
 * open the storage (locks the data directory, replays the WAL; /-/ready answers 503 until it
 * is done), mark ready. Then the main thread waits in sigwait():
 *   SIGHUP           reload the configuration (the old one stays if the new one is invalid)
 *   SIGTERM, SIGINT  shut down: stop accepting, let in-flight requests finish (bounded), close
 * /-/quit sends SIGTERM to the process, so every shutdown takes the same path.
 *
 * Exit codes: 0 clean shutdown, 1 start-up failure (config, storage, listen), 2 bad flags.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/internal.h"

/* In-flight requests get this long to finish on shutdown; the whole stop stays under 10 s. */
#define SHUTDOWN_DRAIN_SECONDS 5.0

/* ---- reload ------------------------------------------------------------------------------- */

int server_reload(server_t *srv, cairn_error_t *err)
{
    pthread_mutex_lock(&srv->reload_lock);
    double start = time_monotonic_seconds();
    const char *file = srv->flags->config_file;
    cairn_config_t *cfg =
        file ? config_load_file(file, err) : config_load_default(srv->self_target, err);
    if (!cfg) {
        LOG_ERROR("Error reloading config", "err=%s", log_quote(err->message));
        metric_gauge_set(srv->reload_successful, 0);
        pthread_mutex_unlock(&srv->reload_lock);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->warning_count; i++)
        LOG_WARN("Configuration warning", "warning=%s", log_quote(cfg->warnings[i]));

    pthread_mutex_lock(&srv->config_lock);
    cairn_config_t *old = srv->config;
    srv->config = cfg;
    pthread_mutex_unlock(&srv->config_lock);
    atomic_store(&srv->evaluation_interval_ms, cfg->evaluation_interval_ms);
    config_free(old);

    metric_gauge_set(srv->reload_successful, 1);
    metric_gauge_set(srv->reload_success_timestamp, (double)time_now_ms() / 1000.0);
    LOG_INFO("Completed loading of configuration file",
             "filename=%s scrape_configs=%zu "
             "remote_writes=%zu totalDuration=%.3fms",
             log_quote(cfg->source), cfg->scrape_config_count, cfg->remote_write_count,
             (time_monotonic_seconds() - start) * 1000);
    pthread_mutex_unlock(&srv->reload_lock);
    return 0;
}

/* ---- start-up helpers --------------------------------------------------------------------- */

static void print_version(void)
{
    printf("cairn, version %s (revision: %s)\n"
           "  compiler:  %s\n"
           "  build date: %s\n",
           CAIRN_VERSION, CAIRN_REVISION,
#ifdef __clang__
           "clang " __clang_version__,
#else
           "gcc " __VERSION__,
#endif
           __DATE__);
}

/* The address the default configuration scrapes: the bound address, with a wildcard host
 * replaced by localhost. */
static char *self_scrape_target(const char *bound)
{
    char host[256], port[16];
    if (server_listen_address_split(bound, host, sizeof(host), port, sizeof(port)) < 0)
        return cairn_strdup(bound);
    if (!*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        return cairn_sprintf("localhost:%s", port);
    return cairn_strdup(bound);
}

/* A uint64_t flag value as a size_t limit (saturating where size_t is narrower). */
static size_t flag_to_size(uint64_t v)
{
#if UINT64_MAX > SIZE_MAX
    if (v > SIZE_MAX)
        return SIZE_MAX;
#endif
    return (size_t)v;
}

static void log_flag(void *ctx, const char *name, const char *value)
{
    (void)ctx;
    LOG_DEBUG("Flag", "name=%s value=%s", name, log_quote(value));
}

static void register_server_metrics(server_t *srv, metric_registry_t *reg)
{
    srv->reload_successful =
        metric_gauge_new(reg, "cairn_config_last_reload_successful",
                         "Whether the last configuration reload attempt was successful.");
    srv->reload_success_timestamp =
        metric_gauge_new(reg, "cairn_config_last_reload_success_timestamp_seconds",
                         "Timestamp of the last successful configuration reload.");
    srv->ready_gauge = metric_gauge_new(reg, "cairn_ready",
                                        "Whether Cairn start-up was fully completed and the "
                                        "server is ready for normal operation.");
}

static int run(server_flags_t *flags)
{
    server_t srv = {.flags = flags};
    server_api_t *api = NULL;
    int64_t start_time_ms = time_now_ms();
    pthread_mutex_init(&srv.reload_lock, NULL);
    pthread_mutex_init(&srv.config_lock, NULL);
    metric_registry_t *reg = metric_registry_default();
    self_metrics_register(reg);
    register_server_metrics(&srv, reg);

    int status = 1;
    cairn_error_t err = {{0}};

    /* A handler runs a whole query on the thread that accepted its connection, so threads
     * beyond the cores keep short requests from queueing behind long queries (the engine
     * itself runs at most --query.max-concurrency queries at once). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t threads = (cores > 0 ? (uint64_t)cores : 1) + flags->query.max_concurrency;
    http_server_options_t http_opts = {
        .listen_address = flags->listen_address,
        .max_connections = flags->max_connections,
        .max_request_body = flags->max_request_body,
        .threads = threads > 64 ? 64 : (unsigned)threads,
        .registry = reg,
    };
    srv.http = http_server_new(&http_opts, &err);
    if (!srv.http) {
        LOG_ERROR("Unable to start web listener", "err=%s", log_quote(err.message));
        goto fail_http;
    }
    srv.self_target = self_scrape_target(http_server_address(srv.http));

    if (!flags->config_file)
        LOG_INFO("No --config.file given, using the embedded default configuration",
                 "self_target=%s", srv.self_target);
    if (server_reload(&srv, &err) < 0) /* logged by server_reload, with the file */
        goto fail_config;

    /* Serve first, so /-/healthy answers and /-/ready says 503 while the WAL replays. */
    api = server_api_new(&srv);
    web_register_routes(&srv);
    if (http_server_start(srv.http, &err) < 0) {
        LOG_ERROR("Unable to start web listener", "err=%s", log_quote(err.message));
        goto fail_start;
    }
    LOG_INFO("Listening", "address=%s", http_server_address(srv.http));

    tsdb_open_options_t tsdb_opts;
    tsdb_open_options_init(&tsdb_opts, flags->tsdb.path);
    tsdb_opts.wal_sync = flags->tsdb.wal_fsync ? TSDB_WAL_SYNC_ALWAYS : TSDB_WAL_SYNC_NONE;
    tsdb_opts.wal_compress = flags->tsdb.wal_compression;
    tsdb_opts.limits.max_labels = flag_to_size(flags->tsdb.label_limit);
    tsdb_opts.limits.max_name_length = flag_to_size(flags->tsdb.label_name_length_limit);
    tsdb_opts.limits.max_value_length = flag_to_size(flags->tsdb.label_value_length_limit);
    tsdb_opts.registry = reg;
    LOG_INFO("Opening storage", "path=%s wal_fsync=%s", log_quote(flags->tsdb.path),
             flags->tsdb.wal_fsync ? "true" : "false");
    srv.db = tsdb_open(&tsdb_opts, &err);
    if (!srv.db) {
        LOG_ERROR("Opening storage failed", "err=%s", log_quote(err.message));
        goto fail_storage;
    }
    tsdb_stats_t st;
    tsdb_stats(srv.db, &st);
    LOG_INFO("Storage opened", "series=%llu replayed_samples=%llu replay_seconds=%.3f",
             (unsigned long long)st.series, (unsigned long long)st.replayed_samples,
             st.replay_seconds);
    if (server_api_open(api, start_time_ms) < 0) {
        LOG_ERROR("Creating the query engine failed");
        goto fail_engine;
    }

    atomic_store(&srv.ready, true);
    metric_gauge_set(srv.ready_gauge, 1);
    LOG_INFO("Server is ready to receive web requests.", "address=%s",
             http_server_address(srv.http));

    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    for (;;) {
        int sig = 0;
        if (sigwait(&handled, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            LOG_INFO("Received SIGHUP, reloading configuration");
            cairn_error_t reload_err = {{0}};
            server_reload(&srv, &reload_err);
            continue;
        }
        if (atomic_load(&srv.quit_requested))
            LOG_WARN("Received termination request via web service, exiting gracefully...");
        else
            LOG_WARN("Received signal, exiting gracefully...", "signal=%s", sigabbrev_np(sig));
        break;
    }

    atomic_store(&srv.ready, false);
    metric_gauge_set(srv.ready_gauge, 0);
    status = 0;
fail_engine:
    http_server_stop(srv.http, SHUTDOWN_DRAIN_SECONDS);
    server_api_free(api);
    api = NULL;
    if (tsdb_close(srv.db) < 0) {
        LOG_ERROR("Closing storage failed");
        status = 1;
    }
fail_storage:
fail_start:
fail_config:
    http_server_free(srv.http);
    server_api_free(api);
fail_http:
    pthread_mutex_lock(&srv.config_lock);
    config_free(srv.config);
    srv.config = NULL;
    pthread_mutex_unlock(&srv.config_lock);
    cairn_free(srv.self_target);
    pthread_mutex_destroy(&srv.reload_lock);
    pthread_mutex_destroy(&srv.config_lock);
    if (status == 0)
        LOG_INFO("See you next time!");
    return status;
}

int main(int argc, char **argv)
{
    server_flags_t flags;
    server_flags_init(&flags);
    cairn_error_t err = {{0}};
    int rc = server_flags_parse(&flags, argc, argv, &err);
    if (rc < 0) {
        fprintf(stderr, "cairn: error: %s, try --help\n", err.message);
        server_flags_free(&flags);
        return 2;
    }
    if (rc == SERVER_FLAGS_HELP) {
        server_flags_print_help(stdout, "cairn");
        server_flags_free(&flags);
        return 0;
    }
    if (rc == SERVER_FLAGS_VERSION) {
        print_version();
        server_flags_free(&flags);
        return 0;
    }
    log_set_level(flags.log_level);

    /* Signals we handle are blocked in every thread (threads inherit the mask) and taken
     * synchronously by the main thread's sigwait. A client closing its socket must not kill
     * the process. */
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &handled, NULL);
    signal(SIGPIPE, SIG_IGN);

    LOG_INFO("Starting Cairn", "version=%s revision=%s", CAIRN_VERSION, CAIRN_REVISION);
    server_flags_each(&flags, log_flag, NULL);
    int status = run(&flags);
    server_flags_free(&flags);
    return status;
}
