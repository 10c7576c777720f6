/*
 * tests/unit/check_server_flags.c: unit tests for the daemon's command-line flags
 * (server/flags.c): defaults, every flag in both the `--name=value` and `--name value` forms,
 * booleans with their `--no-` negation, --help and --version, the exact wording of errors,
 * server_flags_each and the --help text.
 *
 * getopt_long keeps global state; server_flags_parse resets it on every call. Check forks one
 * process per test, so most tests parse once; test_parse_repeated checks the reset itself.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server.h"

/* Every flag the daemon takes, as server_flags_each names it (no leading dashes). */
static const char *const ALL_FLAG_NAMES[] = {
    "config.file",
    "storage.tsdb.path",
    "storage.tsdb.retention.time",
    "storage.tsdb.retention.size",
    "storage.tsdb.label-limit",
    "storage.tsdb.label-name-length-limit",
    "storage.tsdb.label-value-length-limit",
    "web.listen-address",
    "web.max-connections",
    "web.max-request-body-size",
    "web.enable-lifecycle",
    "log.level",
    "query.lookback-delta",
    "query.timeout",
    "query.max-samples",
    "query.max-concurrency",
};

#define ARGC(argv) ((int)CAIRN_ARRAY_LEN(argv) - 1)

/* Parses argv into a freshly initialised flags, asserting success (SERVER_FLAGS_RUN). */
static void parse_ok(server_flags_t *flags, int argc, char **argv)
{
    cairn_error_t err;
    memset(&err, 0, sizeof err);
    server_flags_init(flags);
    int rc = server_flags_parse(flags, argc, argv, &err);
    ck_assert_msg(rc == SERVER_FLAGS_RUN, "parse of %s returned %d (%s)", argc > 1 ? argv[1] : "",
                  rc, err.message);
}

/* Parses argv, which must fail with -EINVAL; leaves the message in err. */
static void parse_fails(int argc, char **argv, cairn_error_t *err)
{
    server_flags_t flags;
    memset(err, 0, sizeof *err);
    server_flags_init(&flags);
    int rc = server_flags_parse(&flags, argc, argv, err);
    ck_assert_msg(rc == -EINVAL, "parse of %s returned %d, want -EINVAL", argv[1], rc);
    ck_assert_msg(err->message[0] != '\0', "no message for %s", argv[1]);
    server_flags_free(&flags);
}

/* Asserts the message is `invalid value "<value>" for flag --<flag>: <reason>`. */
static void assert_invalid_value(const cairn_error_t *err, const char *value, const char *flag)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "invalid value \"%s\" for flag --%s: ", value, flag);
    ck_assert_msg(strncmp(err->message, prefix, strlen(prefix)) == 0,
                  "message \"%s\" does not start with \"%s\"", err->message, prefix);
    ck_assert_msg(strlen(err->message) > strlen(prefix), "no reason after \"%s\"", prefix);
}

/* --- defaults -------------------------------------------------------------------------------- */

START_TEST(test_defaults)
{
    server_flags_t flags;
    server_flags_init(&flags);
    ck_assert_ptr_null(flags.config_file);
    ck_assert_str_eq(flags.listen_address, "127.0.0.1:9090");
    ck_assert_str_eq(flags.listen_address, SERVER_DEFAULT_LISTEN_ADDRESS);
    ck_assert_str_eq(flags.tsdb.path, "data/");
    ck_assert_int_eq(flags.tsdb.retention_time_ms, 15LL * 24 * 3600 * 1000);
    ck_assert_uint_eq(flags.tsdb.retention_size, 0);
    ck_assert_int_eq(flags.log_level, LOG_LEVEL_INFO);
    ck_assert(!flags.enable_lifecycle);
    ck_assert_uint_eq(flags.max_request_body, 32ULL * 1024 * 1024);
    ck_assert_uint_eq(flags.max_connections, 512);
    ck_assert_int_eq(flags.query.lookback_delta_ms, 5 * 60 * 1000);
    ck_assert_int_eq(flags.query.timeout_ms, 2 * 60 * 1000);
    ck_assert_uint_eq(flags.query.max_samples, 50000000);
    ck_assert_uint_eq(flags.query.max_concurrency, 20);
    ck_assert_uint_eq(flags.tsdb.label_limit, 64);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 1024);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 16384);
    server_flags_free(&flags);
}
END_TEST

/* The label-limit flags default to what the storage engine uses without flags. */
START_TEST(test_label_limit_defaults_match_tsdb)
{
    server_flags_t flags;
    tsdb_open_options_t opts;
    server_flags_init(&flags);
    tsdb_open_options_init(&opts, "unused");
    ck_assert_uint_eq(flags.tsdb.label_limit, opts.limits.max_labels);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, opts.limits.max_name_length);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, opts.limits.max_value_length);
    ck_assert_uint_eq(flags.tsdb.label_limit, TSDB_DEFAULT_MAX_LABELS);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, TSDB_DEFAULT_MAX_NAME_LENGTH);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, TSDB_DEFAULT_MAX_VALUE_LENGTH);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_no_arguments_keeps_defaults)
{
    server_flags_t flags;
    char *argv[] = {"cairn", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_ptr_null(flags.config_file);
    ck_assert_str_eq(flags.listen_address, "127.0.0.1:9090");
    ck_assert_str_eq(flags.tsdb.path, "data/");
    ck_assert_int_eq(flags.tsdb.retention_time_ms, 15LL * 24 * 3600 * 1000);
    ck_assert_uint_eq(flags.max_connections, 512);
    ck_assert_uint_eq(flags.tsdb.label_limit, 64);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 1024);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 16384);
    server_flags_free(&flags);
}
END_TEST

/* --- each flag, both forms ------------------------------------------------------------------- */

START_TEST(test_config_file_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--config.file=/etc/cairn/cairn.yml", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_ptr_nonnull(flags.config_file);
    ck_assert_str_eq(flags.config_file, "/etc/cairn/cairn.yml");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_config_file_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--config.file", "cairn.yml", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_ptr_nonnull(flags.config_file);
    ck_assert_str_eq(flags.config_file, "cairn.yml");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_tsdb_path_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.path=/var/lib/cairn", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.tsdb.path, "/var/lib/cairn");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_tsdb_path_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.path", "tmp/data", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.tsdb.path, "tmp/data");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_retention_time_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.retention.time=30d", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.tsdb.retention_time_ms, 30LL * 24 * 3600 * 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_retention_time_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.retention.time", "1h30m", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.tsdb.retention_time_ms, 90LL * 60 * 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_retention_size_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.retention.size=512MB", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.retention_size, 536870912ULL);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_retention_size_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.retention.size", "1GiB", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.retention_size, 1073741824ULL);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_listen_address_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.listen-address=0.0.0.0:8080", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.listen_address, "0.0.0.0:8080");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_listen_address_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.listen-address", "localhost:9091", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.listen_address, "localhost:9091");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_listen_address_ipv6)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.listen-address=[::1]:9090", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.listen_address, "[::1]:9090");
    server_flags_free(&flags);
}
END_TEST

/* Go's net.Listen (and so Prometheus) accepts an empty host (all interfaces). */
START_TEST(test_listen_address_empty_host)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.listen-address=:9100", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.listen_address, ":9100");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_connections_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.max-connections=1000", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.max_connections, 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_connections_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.max-connections", "64", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.max_connections, 64);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_request_body_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.max-request-body-size=1MB", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.max_request_body, 1048576ULL);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_request_body_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.max-request-body-size", "64KiB", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.max_request_body, 65536ULL);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_enable_lifecycle)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.enable-lifecycle", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert(flags.enable_lifecycle);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_no_enable_lifecycle)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--no-web.enable-lifecycle", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert(!flags.enable_lifecycle);
    server_flags_free(&flags);
}
END_TEST

/* The last of a flag and its negation wins. */
START_TEST(test_enable_lifecycle_then_negated)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--web.enable-lifecycle", "--no-web.enable-lifecycle", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert(!flags.enable_lifecycle);
    server_flags_free(&flags);

    char *argv2[] = {"cairn", "--no-web.enable-lifecycle", "--web.enable-lifecycle", NULL};
    parse_ok(&flags, ARGC(argv2), argv2);
    ck_assert(flags.enable_lifecycle);
    server_flags_free(&flags);
}
END_TEST

static const struct {
    const char *name;
    log_level_t level;
} LOG_LEVELS[] = {
    {"debug", LOG_LEVEL_DEBUG},
    {"info", LOG_LEVEL_INFO},
    {"warn", LOG_LEVEL_WARN},
    {"error", LOG_LEVEL_ERROR},
};

START_TEST(test_log_level_equals)
{
    server_flags_t flags;
    char arg[64];
    snprintf(arg, sizeof arg, "--log.level=%s", LOG_LEVELS[_i].name);
    char *argv[] = {"cairn", arg, NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.log_level, LOG_LEVELS[_i].level);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_log_level_separate)
{
    server_flags_t flags;
    char value[16];
    snprintf(value, sizeof value, "%s", LOG_LEVELS[_i].name);
    char *argv[] = {"cairn", "--log.level", value, NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.log_level, LOG_LEVELS[_i].level);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_lookback_delta_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.lookback-delta=10m", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.query.lookback_delta_ms, 10 * 60 * 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_lookback_delta_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.lookback-delta", "1m30s", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.query.lookback_delta_ms, 90 * 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_query_timeout_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.timeout=30s", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.query.timeout_ms, 30 * 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_query_timeout_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.timeout", "500ms", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_int_eq(flags.query.timeout_ms, 500);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_samples_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.max-samples=1000", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.query.max_samples, 1000);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_samples_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.max-samples", "123456789", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.query.max_samples, 123456789);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_concurrency_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.max-concurrency=4", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.query.max_concurrency, 4);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_max_concurrency_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--query.max-concurrency", "64", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.query.max_concurrency, 64);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_label_limit_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.label-limit=30", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_limit, 30);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 1024);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 16384);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_label_limit_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.label-limit", "128", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_limit, 128);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_label_name_length_limit_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.label-name-length-limit=200", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 200);
    ck_assert_uint_eq(flags.tsdb.label_limit, 64);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 16384);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_label_name_length_limit_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.label-name-length-limit", "4096", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 4096);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_label_value_length_limit_equals)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.label-value-length-limit=2048", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 2048);
    ck_assert_uint_eq(flags.tsdb.label_limit, 64);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 1024);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_label_value_length_limit_separate)
{
    server_flags_t flags;
    char *argv[] = {"cairn", "--storage.tsdb.label-value-length-limit", "1048576", NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 1048576);
    server_flags_free(&flags);
}
END_TEST

/* 0 turns a limit off, as in the storage engine (and Prometheus's scrape limits). */
START_TEST(test_label_limits_zero_means_no_limit)
{
    server_flags_t flags;
    char *argv[] = {"cairn",
                    "--storage.tsdb.label-limit=0",
                    "--storage.tsdb.label-name-length-limit=0",
                    "--storage.tsdb.label-value-length-limit",
                    "0",
                    NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_uint_eq(flags.tsdb.label_limit, 0);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 0);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 0);
    server_flags_free(&flags);
}
END_TEST

/* All flags at once, mixing both forms; nothing else is disturbed. */
START_TEST(test_all_flags_together)
{
    server_flags_t flags;
    char *argv[] = {"cairn",
                    "--config.file=c.yml",
                    "--storage.tsdb.path",
                    "d/",
                    "--storage.tsdb.retention.time=2w",
                    "--storage.tsdb.retention.size",
                    "10GB",
                    "--web.listen-address=127.0.0.1:19090",
                    "--web.max-connections",
                    "100",
                    "--web.max-request-body-size=2MiB",
                    "--web.enable-lifecycle",
                    "--log.level",
                    "warn",
                    "--query.lookback-delta=1m",
                    "--query.timeout",
                    "1m",
                    "--query.max-samples=7",
                    "--query.max-concurrency",
                    "3",
                    "--storage.tsdb.label-limit=10",
                    "--storage.tsdb.label-name-length-limit",
                    "100",
                    "--storage.tsdb.label-value-length-limit=1000",
                    NULL};
    parse_ok(&flags, ARGC(argv), argv);
    ck_assert_str_eq(flags.config_file, "c.yml");
    ck_assert_str_eq(flags.tsdb.path, "d/");
    ck_assert_int_eq(flags.tsdb.retention_time_ms, 14LL * 24 * 3600 * 1000);
    ck_assert_uint_eq(flags.tsdb.retention_size, 10ULL << 30);
    ck_assert_str_eq(flags.listen_address, "127.0.0.1:19090");
    ck_assert_uint_eq(flags.max_connections, 100);
    ck_assert_uint_eq(flags.max_request_body, 2ULL << 20);
    ck_assert(flags.enable_lifecycle);
    ck_assert_int_eq(flags.log_level, LOG_LEVEL_WARN);
    ck_assert_int_eq(flags.query.lookback_delta_ms, 60 * 1000);
    ck_assert_int_eq(flags.query.timeout_ms, 60 * 1000);
    ck_assert_uint_eq(flags.query.max_samples, 7);
    ck_assert_uint_eq(flags.query.max_concurrency, 3);
    ck_assert_uint_eq(flags.tsdb.label_limit, 10);
    ck_assert_uint_eq(flags.tsdb.label_name_length_limit, 100);
    ck_assert_uint_eq(flags.tsdb.label_value_length_limit, 1000);
    server_flags_free(&flags);
}
END_TEST

/* --- help and version ------------------------------------------------------------------------ */

START_TEST(test_help)
{
    server_flags_t flags;
    cairn_error_t err;
    char *argv[] = {"cairn", "--help", NULL};
    server_flags_init(&flags);
    ck_assert_int_eq(server_flags_parse(&flags, ARGC(argv), argv, &err), SERVER_FLAGS_HELP);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_help_short)
{
    server_flags_t flags;
    cairn_error_t err;
    char *argv[] = {"cairn", "-h", NULL};
    server_flags_init(&flags);
    ck_assert_int_eq(server_flags_parse(&flags, ARGC(argv), argv, &err), SERVER_FLAGS_HELP);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_version)
{
    server_flags_t flags;
    cairn_error_t err;
    char *argv[] = {"cairn", "--version", NULL};
    server_flags_init(&flags);
    ck_assert_int_eq(server_flags_parse(&flags, ARGC(argv), argv, &err), SERVER_FLAGS_VERSION);
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_help_after_other_flags)
{
    server_flags_t flags;
    cairn_error_t err;
    char *argv[] = {"cairn", "--log.level=debug", "--help", NULL};
    server_flags_init(&flags);
    ck_assert_int_eq(server_flags_parse(&flags, ARGC(argv), argv, &err), SERVER_FLAGS_HELP);
    server_flags_free(&flags);
}
END_TEST

/* --- errors ---------------------------------------------------------------------------------- */

START_TEST(test_bad_duration_equals)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--storage.tsdb.retention.time=15x", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "15x", "storage.tsdb.retention.time");
}
END_TEST

START_TEST(test_bad_duration_separate)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--storage.tsdb.retention.time", "15x", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "15x", "storage.tsdb.retention.time");
}
END_TEST

START_TEST(test_bad_duration_query_flags)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--query.lookback-delta=5 minutes", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "5 minutes", "query.lookback-delta");

    char *argv2[] = {"cairn", "--query.timeout=", NULL};
    parse_fails(ARGC(argv2), argv2, &err);
    assert_invalid_value(&err, "", "query.timeout");
}
END_TEST

START_TEST(test_bad_size)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--storage.tsdb.retention.size=12XB", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "12XB", "storage.tsdb.retention.size");
}
END_TEST

START_TEST(test_bad_request_body_size)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--web.max-request-body-size", "lots", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "lots", "web.max-request-body-size");
}
END_TEST

START_TEST(test_bad_log_level)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--log.level=verbose", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "verbose", "log.level");
}
END_TEST

START_TEST(test_bad_integer)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--query.max-samples=abc", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "abc", "query.max-samples");
}
END_TEST

START_TEST(test_bad_integer_trailing_garbage)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--query.max-concurrency", "12abc", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "12abc", "query.max-concurrency");
}
END_TEST

START_TEST(test_bad_integer_negative)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--web.max-connections=-1", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "-1", "web.max-connections");
}
END_TEST

START_TEST(test_bad_integer_overflow)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--query.max-samples=99999999999999999999999", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "99999999999999999999999", "query.max-samples");
}
END_TEST

START_TEST(test_bad_duration_overflow)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--storage.tsdb.retention.time=9999999999999y", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "9999999999999y", "storage.tsdb.retention.time");
}
END_TEST

/* Each label-limit flag rejects a non-integer with `invalid value "<v>" for flag --<name>: ...`
 * and a reason; sizes and negative numbers are not integers here. */
static const struct {
    const char *arg;
    const char *value;
    const char *flag;
    const char *reason;
} BAD_LABEL_LIMITS[] = {
    {"--storage.tsdb.label-limit=abc", "abc", "storage.tsdb.label-limit",
     "expected a non-negative integer"},
    {"--storage.tsdb.label-limit=-1", "-1", "storage.tsdb.label-limit",
     "expected a non-negative integer"},
    {"--storage.tsdb.label-limit=", "", "storage.tsdb.label-limit",
     "expected a non-negative integer"},
    {"--storage.tsdb.label-name-length-limit=1KiB", "1KiB", "storage.tsdb.label-name-length-limit",
     "expected a non-negative integer"},
    {"--storage.tsdb.label-name-length-limit=2.5", "2.5", "storage.tsdb.label-name-length-limit",
     "expected a non-negative integer"},
    {"--storage.tsdb.label-value-length-limit=16k", "16k", "storage.tsdb.label-value-length-limit",
     "expected a non-negative integer"},
    {"--storage.tsdb.label-value-length-limit=99999999999999999999999", "99999999999999999999999",
     "storage.tsdb.label-value-length-limit", "number out of range"},
};

START_TEST(test_bad_label_limits)
{
    cairn_error_t err;
    char arg[128];
    snprintf(arg, sizeof arg, "%s", BAD_LABEL_LIMITS[_i].arg);
    char *argv[] = {"cairn", arg, NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, BAD_LABEL_LIMITS[_i].value, BAD_LABEL_LIMITS[_i].flag);
    ck_assert_msg(strstr(err.message, BAD_LABEL_LIMITS[_i].reason) != NULL, "message: %s",
                  err.message);
}
END_TEST

START_TEST(test_bad_label_limit_separate)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--storage.tsdb.label-value-length-limit", "lots", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "lots", "storage.tsdb.label-value-length-limit");

    char *argv2[] = {"cairn", "--storage.tsdb.label-limit", NULL};
    parse_fails(ARGC(argv2), argv2, &err);
    ck_assert_msg(strstr(err.message, "--storage.tsdb.label-limit") != NULL, "message: %s",
                  err.message);
}
END_TEST

/* Prometheus (kingpin) takes no abbreviations; getopt_long would match a unique prefix. */
START_TEST(test_abbreviated_flag_is_unknown)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--log=debug", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "unknown") != NULL, "message: %s", err.message);
    ck_assert_msg(strstr(err.message, "--log") != NULL, "message: %s", err.message);

    char *argv2[] = {"cairn", "--storage.tsdb.retention.t", "30d", NULL};
    parse_fails(ARGC(argv2), argv2, &err);
    ck_assert_msg(strstr(err.message, "--storage.tsdb.retention.t") != NULL, "message: %s",
                  err.message);
}
END_TEST

START_TEST(test_listen_address_without_port)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--web.listen-address=localhost", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "--web.listen-address") != NULL, "message: %s", err.message);
    assert_invalid_value(&err, "localhost", "web.listen-address");
}
END_TEST

START_TEST(test_listen_address_bad_port)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--web.listen-address=localhost:70000", NULL};
    parse_fails(ARGC(argv), argv, &err);
    assert_invalid_value(&err, "localhost:70000", "web.listen-address");
}
END_TEST

START_TEST(test_unknown_flag)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--nope", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "unknown") != NULL, "message: %s", err.message);
    ck_assert_msg(strstr(err.message, "--nope") != NULL, "message: %s", err.message);
}
END_TEST

START_TEST(test_unknown_flag_with_value)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--log.level=info", "--nope=1", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "unknown") != NULL, "message: %s", err.message);
    ck_assert_msg(strstr(err.message, "--nope") != NULL, "message: %s", err.message);
}
END_TEST

START_TEST(test_missing_argument)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--config.file", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "--config.file") != NULL, "message: %s", err.message);
}
END_TEST

START_TEST(test_positional_argument)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--log.level=info", "foo", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "foo") != NULL, "message: %s", err.message);
}
END_TEST

/* A boolean flag takes no value in the `--name value` form: the next word is positional. */
START_TEST(test_boolean_does_not_take_next_word)
{
    cairn_error_t err;
    char *argv[] = {"cairn", "--web.enable-lifecycle", "bar", NULL};
    parse_fails(ARGC(argv), argv, &err);
    ck_assert_msg(strstr(err.message, "bar") != NULL, "message: %s", err.message);
}
END_TEST

/* server_flags_parse prints nothing: getopt's own diagnostics must be silenced. */
START_TEST(test_errors_print_nothing)
{
    FILE *capture = tmpfile();
    ck_assert_ptr_nonnull(capture);
    fflush(stderr);
    fflush(stdout);
    int saved_err = dup(STDERR_FILENO);
    int saved_out = dup(STDOUT_FILENO);
    ck_assert_int_ge(saved_err, 0);
    ck_assert_int_ge(saved_out, 0);
    dup2(fileno(capture), STDERR_FILENO);
    dup2(fileno(capture), STDOUT_FILENO);

    server_flags_t flags;
    cairn_error_t err;
    char *argv1[] = {"cairn", "--nope", NULL};
    server_flags_init(&flags);
    int rc1 = server_flags_parse(&flags, ARGC(argv1), argv1, &err);
    server_flags_free(&flags);
    char *argv2[] = {"cairn", "--config.file", NULL};
    server_flags_init(&flags);
    int rc2 = server_flags_parse(&flags, ARGC(argv2), argv2, &err);
    server_flags_free(&flags);
    char *argv3[] = {"cairn", "--version", NULL};
    server_flags_init(&flags);
    int rc3 = server_flags_parse(&flags, ARGC(argv3), argv3, &err);
    server_flags_free(&flags);

    fflush(stderr);
    fflush(stdout);
    dup2(saved_err, STDERR_FILENO);
    dup2(saved_out, STDOUT_FILENO);
    close(saved_err);
    close(saved_out);

    ck_assert_int_eq(rc1, -EINVAL);
    ck_assert_int_eq(rc2, -EINVAL);
    ck_assert_int_eq(rc3, SERVER_FLAGS_VERSION);
    ck_assert_int_eq(fseek(capture, 0, SEEK_END), 0);
    long size = ftell(capture);
    char printed[256] = "";
    rewind(capture);
    size_t n = fread(printed, 1, sizeof printed - 1, capture);
    printed[n] = '\0';
    fclose(capture);
    ck_assert_msg(size == 0, "server_flags_parse printed: %s", printed);
}
END_TEST

/* getopt's state is reset on every call: parsing several times in one process works. */
START_TEST(test_parse_repeated)
{
    server_flags_t flags;
    cairn_error_t err;

    char *argv1[] = {"cairn", "--query.timeout=1m", "--nope", NULL};
    server_flags_init(&flags);
    ck_assert_int_eq(server_flags_parse(&flags, ARGC(argv1), argv1, &err), -EINVAL);
    server_flags_free(&flags);

    char *argv2[] = {"cairn", "--log.level", "debug", "--web.max-connections", "7", NULL};
    parse_ok(&flags, ARGC(argv2), argv2);
    ck_assert_int_eq(flags.log_level, LOG_LEVEL_DEBUG);
    ck_assert_uint_eq(flags.max_connections, 7);
    server_flags_free(&flags);

    char *argv3[] = {"cairn", "--query.timeout=1m", NULL};
    parse_ok(&flags, ARGC(argv3), argv3);
    ck_assert_int_eq(flags.query.timeout_ms, 60 * 1000);
    ck_assert_int_eq(flags.log_level, LOG_LEVEL_INFO);
    server_flags_free(&flags);

    for (int i = 0; i < 100; i++) {
        char *argv4[] = {"cairn", "--config.file", "x.yml", "--web.enable-lifecycle", NULL};
        parse_ok(&flags, ARGC(argv4), argv4);
        ck_assert_str_eq(flags.config_file, "x.yml");
        ck_assert(flags.enable_lifecycle);
        server_flags_free(&flags);
    }
}
END_TEST

/* --- server_flags_each ----------------------------------------------------------------------- */

#define MAX_VISITED 64

struct visited {
    size_t count;
    char names[MAX_VISITED][64];
    char values[MAX_VISITED][128];
};

static void collect_flag(void *ctx, const char *name, const char *value)
{
    struct visited *v = ctx;
    ck_assert_ptr_nonnull(name);
    ck_assert_ptr_nonnull(value);
    ck_assert_uint_lt(v->count, MAX_VISITED);
    snprintf(v->names[v->count], sizeof v->names[0], "%s", name);
    snprintf(v->values[v->count], sizeof v->values[0], "%s", value);
    v->count++;
}

/* The value visited for name; fails the test if the flag was not visited exactly once. */
static const char *visited_value(const struct visited *v, const char *name)
{
    const char *found = NULL;
    size_t times = 0;
    for (size_t i = 0; i < v->count; i++) {
        if (strcmp(v->names[i], name) == 0) {
            found = v->values[i];
            times++;
        }
    }
    ck_assert_msg(times == 1, "flag %s visited %zu times", name, times);
    return found;
}

START_TEST(test_each_defaults)
{
    server_flags_t flags;
    struct visited v;
    memset(&v, 0, sizeof v);
    server_flags_init(&flags);
    server_flags_each(&flags, collect_flag, &v);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(ALL_FLAG_NAMES); i++)
        (void)visited_value(&v, ALL_FLAG_NAMES[i]);
    for (size_t i = 0; i < v.count; i++)
        ck_assert_msg(v.names[i][0] != '-', "name with dashes: %s", v.names[i]);
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.path"), "data/");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.retention.time"), "15d");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.retention.size"), "0B");
    ck_assert_str_eq(visited_value(&v, "web.listen-address"), "127.0.0.1:9090");
    ck_assert_str_eq(visited_value(&v, "web.max-connections"), "512");
    ck_assert_str_eq(visited_value(&v, "web.max-request-body-size"), "32MiB");
    ck_assert_str_eq(visited_value(&v, "web.enable-lifecycle"), "false");
    ck_assert_str_eq(visited_value(&v, "log.level"), "info");
    ck_assert_str_eq(visited_value(&v, "query.lookback-delta"), "5m");
    ck_assert_str_eq(visited_value(&v, "query.timeout"), "2m");
    ck_assert_str_eq(visited_value(&v, "query.max-samples"), "50000000");
    ck_assert_str_eq(visited_value(&v, "query.max-concurrency"), "20");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.label-limit"), "64");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.label-name-length-limit"), "1024");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.label-value-length-limit"), "16384");
    server_flags_free(&flags);
}
END_TEST

START_TEST(test_each_after_parse)
{
    server_flags_t flags;
    struct visited v;
    memset(&v, 0, sizeof v);
    char *argv[] = {"cairn",
                    "--config.file=cairn.yml",
                    "--storage.tsdb.retention.time=1h30m",
                    "--storage.tsdb.retention.size=512MB",
                    "--web.enable-lifecycle",
                    "--log.level=debug",
                    "--web.listen-address=:9100",
                    "--query.max-samples=42",
                    "--storage.tsdb.label-limit=0",
                    "--storage.tsdb.label-name-length-limit=256",
                    "--storage.tsdb.label-value-length-limit",
                    "65536",
                    NULL};
    parse_ok(&flags, ARGC(argv), argv);
    server_flags_each(&flags, collect_flag, &v);
    ck_assert_str_eq(visited_value(&v, "config.file"), "cairn.yml");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.retention.time"), "1h30m");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.retention.size"), "512MiB");
    ck_assert_str_eq(visited_value(&v, "web.enable-lifecycle"), "true");
    ck_assert_str_eq(visited_value(&v, "log.level"), "debug");
    ck_assert_str_eq(visited_value(&v, "web.listen-address"), ":9100");
    ck_assert_str_eq(visited_value(&v, "query.max-samples"), "42");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.label-limit"), "0");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.label-name-length-limit"), "256");
    ck_assert_str_eq(visited_value(&v, "storage.tsdb.label-value-length-limit"), "65536");
    server_flags_free(&flags);
}
END_TEST

/* --- --help text ----------------------------------------------------------------------------- */

START_TEST(test_print_help_mentions_every_flag)
{
    FILE *out = tmpfile();
    ck_assert_ptr_nonnull(out);
    server_flags_print_help(out, "mycairn");
    fflush(out);
    long size = ftell(out);
    ck_assert_int_gt(size, 0);
    char *text = calloc(1, (size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    rewind(out);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, out), (size_t)size);
    fclose(out);

    /* Booleans may be shown as Prometheus (kingpin) does: --[no-]web.enable-lifecycle. */
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(ALL_FLAG_NAMES); i++) {
        char want[80], want_bool[80];
        snprintf(want, sizeof want, "--%s", ALL_FLAG_NAMES[i]);
        snprintf(want_bool, sizeof want_bool, "--[no-]%s", ALL_FLAG_NAMES[i]);
        ck_assert_msg(strstr(text, want) != NULL || strstr(text, want_bool) != NULL,
                      "help does not mention %s", want);
    }
    ck_assert_msg(strstr(text, "--help") != NULL, "help does not mention --help");
    ck_assert_msg(strstr(text, "--version") != NULL, "help does not mention --version");
    ck_assert_msg(strstr(text, "mycairn") != NULL, "help does not name the program");
    /* The label-limit defaults are shown, from the storage engine's constants. */
    ck_assert_msg(strstr(text, "--storage.tsdb.label-limit=N") != NULL, "help: %s", text);
    ck_assert_msg(strstr(text, "(default 64; 0 = no limit)") != NULL, "help: %s", text);
    ck_assert_msg(strstr(text, "(default 1024; 0 = no limit)") != NULL, "help: %s", text);
    ck_assert_msg(strstr(text, "(default 16384; 0 = no limit)") != NULL, "help: %s", text);
    free(text);
}
END_TEST

static Suite *server_flags_suite(void)
{
    Suite *s = suite_create("server_flags");

    TCase *tc = tcase_create("defaults");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_no_arguments_keeps_defaults);
    tcase_add_test(tc, test_label_limit_defaults_match_tsdb);
    suite_add_tcase(s, tc);

    tc = tcase_create("flags");
    tcase_add_test(tc, test_config_file_equals);
    tcase_add_test(tc, test_config_file_separate);
    tcase_add_test(tc, test_tsdb_path_equals);
    tcase_add_test(tc, test_tsdb_path_separate);
    tcase_add_test(tc, test_retention_time_equals);
    tcase_add_test(tc, test_retention_time_separate);
    tcase_add_test(tc, test_retention_size_equals);
    tcase_add_test(tc, test_retention_size_separate);
    tcase_add_test(tc, test_listen_address_equals);
    tcase_add_test(tc, test_listen_address_separate);
    tcase_add_test(tc, test_listen_address_empty_host);
    tcase_add_test(tc, test_listen_address_ipv6);
    tcase_add_test(tc, test_max_connections_equals);
    tcase_add_test(tc, test_max_connections_separate);
    tcase_add_test(tc, test_max_request_body_equals);
    tcase_add_test(tc, test_max_request_body_separate);
    tcase_add_test(tc, test_enable_lifecycle);
    tcase_add_test(tc, test_no_enable_lifecycle);
    tcase_add_test(tc, test_enable_lifecycle_then_negated);
    tcase_add_loop_test(tc, test_log_level_equals, 0, (int)CAIRN_ARRAY_LEN(LOG_LEVELS));
    tcase_add_loop_test(tc, test_log_level_separate, 0, (int)CAIRN_ARRAY_LEN(LOG_LEVELS));
    tcase_add_test(tc, test_lookback_delta_equals);
    tcase_add_test(tc, test_lookback_delta_separate);
    tcase_add_test(tc, test_query_timeout_equals);
    tcase_add_test(tc, test_query_timeout_separate);
    tcase_add_test(tc, test_max_samples_equals);
    tcase_add_test(tc, test_max_samples_separate);
    tcase_add_test(tc, test_max_concurrency_equals);
    tcase_add_test(tc, test_max_concurrency_separate);
    tcase_add_test(tc, test_label_limit_equals);
    tcase_add_test(tc, test_label_limit_separate);
    tcase_add_test(tc, test_label_name_length_limit_equals);
    tcase_add_test(tc, test_label_name_length_limit_separate);
    tcase_add_test(tc, test_label_value_length_limit_equals);
    tcase_add_test(tc, test_label_value_length_limit_separate);
    tcase_add_test(tc, test_label_limits_zero_means_no_limit);
    tcase_add_test(tc, test_all_flags_together);
    tcase_add_test(tc, test_parse_repeated);
    suite_add_tcase(s, tc);

    tc = tcase_create("help_version");
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_help_short);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_help_after_other_flags);
    tcase_add_test(tc, test_print_help_mentions_every_flag);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_bad_duration_equals);
    tcase_add_test(tc, test_bad_duration_separate);
    tcase_add_test(tc, test_bad_duration_query_flags);
    tcase_add_test(tc, test_bad_size);
    tcase_add_test(tc, test_bad_request_body_size);
    tcase_add_test(tc, test_bad_log_level);
    tcase_add_test(tc, test_bad_integer);
    tcase_add_test(tc, test_bad_integer_trailing_garbage);
    tcase_add_test(tc, test_bad_integer_negative);
    tcase_add_test(tc, test_bad_integer_overflow);
    tcase_add_test(tc, test_bad_duration_overflow);
    tcase_add_loop_test(tc, test_bad_label_limits, 0, (int)CAIRN_ARRAY_LEN(BAD_LABEL_LIMITS));
    tcase_add_test(tc, test_bad_label_limit_separate);
    tcase_add_test(tc, test_abbreviated_flag_is_unknown);
    tcase_add_test(tc, test_listen_address_without_port);
    tcase_add_test(tc, test_listen_address_bad_port);
    tcase_add_test(tc, test_unknown_flag);
    tcase_add_test(tc, test_unknown_flag_with_value);
    tcase_add_test(tc, test_missing_argument);
    tcase_add_test(tc, test_positional_argument);
    tcase_add_test(tc, test_boolean_does_not_take_next_word);
    tcase_add_test(tc, test_errors_print_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("each");
    tcase_add_test(tc, test_each_defaults);
    tcase_add_test(tc, test_each_after_parse);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(server_flags_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
