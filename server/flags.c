/*
 * server/flags.c: the daemon's command-line flags.
 *
 * One table describes every flag: name, kind, where its value lives in server_flags_t, and its
 * help. From it come the getopt_long option array, the --help text and the name/value listing
 * (start-up log, /api/v1/status/flags), so adding a flag is one table row.
 *
 * Prometheus's flags are long-only with dots in their names; getopt_long handles those, both as
 * --name=value and --name value. Booleans also have a --no-name form, as kingpin gives them.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "server/internal.h"

typedef enum flag_kind {
    FLAG_STRING,   /* char *, owned */
    FLAG_PATH,     /* char *, owned, NULL allowed (unset) */
    FLAG_LISTEN,   /* char *, owned, validated as host:port */
    FLAG_DURATION, /* int64_t milliseconds */
    FLAG_SIZE,     /* uint64_t bytes */
    FLAG_UINT,     /* uint64_t */
    FLAG_POSITIVE, /* uint64_t, at least 1 */
    FLAG_BOOL,     /* bool */
    FLAG_LOG_LEVEL /* log_level_t */
} flag_kind_t;

typedef struct flag_def {
    const char *name;
    flag_kind_t kind;
    size_t offset; /* into server_flags_t */
    const char *placeholder;
    const char *help;
} flag_def_t;

#define FIELD(f) offsetof(server_flags_t, f)
/* A numeric default macro as a string literal, so --help shows the value the code uses. */
#define STRINGIFY_(x) #x
#define STRINGIFY(x)  STRINGIFY_(x)

static const flag_def_t flag_defs[] = {
    {"config.file", FLAG_PATH, FIELD(config_file), "FILE",
     "Configuration file path. Without it, an embedded configuration that scrapes Cairn itself."},
    {"web.listen-address", FLAG_LISTEN, FIELD(listen_address), "ADDRESS",
     "Address to listen on for the API and telemetry, host:port (default "
     "\"" SERVER_DEFAULT_LISTEN_ADDRESS "\"; use \":9090\" for all interfaces)."},
    {"web.max-connections", FLAG_POSITIVE, FIELD(max_connections), "N",
     "Maximum number of simultaneous connections (default 512)."},
    {"web.max-request-body-size", FLAG_SIZE, FIELD(max_request_body), "SIZE",
     "Largest request body accepted; larger ones get 413 (default 32MiB)."},
    {"web.enable-lifecycle", FLAG_BOOL, FIELD(enable_lifecycle), NULL,
     "Enable shutdown and reload via HTTP request (POST /-/quit, /-/reload)."},
    {"storage.tsdb.path", FLAG_STRING, FIELD(tsdb.path), "PATH",
     "Base path for metrics storage (default \"" TSDB_DEFAULT_PATH "\")."},
    {"storage.tsdb.retention.time", FLAG_DURATION, FIELD(tsdb.retention_time_ms), "DURATION",
     "How long to retain samples in storage, e.g. 15d, 1y, 12h (default 15d; 0 = no limit)."},
    {"storage.tsdb.retention.size", FLAG_SIZE, FIELD(tsdb.retention_size), "SIZE",
     "Maximum bytes of storage (blocks, WAL and head chunks), e.g. 512MB, 10GiB (default 0 = "
     "no limit)."},
    {"storage.tsdb.wal-fsync", FLAG_BOOL, FIELD(tsdb.wal_fsync), NULL,
     "fdatasync the WAL before acknowledging each write, so acknowledged samples survive a "
     "power loss (default: acknowledge once the OS has the bytes, which survives kill -9)."},
    {"storage.tsdb.wal-compression", FLAG_BOOL, FIELD(tsdb.wal_compression), NULL,
     "Compress WAL records with snappy (default on)."},
    {"storage.tsdb.label-limit", FLAG_UINT, FIELD(tsdb.label_limit), "N",
     "Maximum number of labels per series; a sample creating a series with more is rejected "
     "(default " STRINGIFY(TSDB_DEFAULT_MAX_LABELS) "; 0 = no limit)."},
    {"storage.tsdb.label-name-length-limit", FLAG_UINT, FIELD(tsdb.label_name_length_limit), "N",
     "Maximum length of a label name in bytes; a sample creating a series with a longer one is "
     "rejected (default " STRINGIFY(TSDB_DEFAULT_MAX_NAME_LENGTH) "; 0 = no limit)."},
    {"storage.tsdb.label-value-length-limit", FLAG_UINT, FIELD(tsdb.label_value_length_limit), "N",
     "Maximum length of a label value in bytes; a sample creating a series with a longer one is "
     "rejected (default " STRINGIFY(TSDB_DEFAULT_MAX_VALUE_LENGTH) "; 0 = no limit)."},
    {"query.lookback-delta", FLAG_DURATION, FIELD(query.lookback_delta_ms), "DURATION",
     "How far back to look for a sample of an instant vector selector (default 5m)."},
    {"query.timeout", FLAG_DURATION, FIELD(query.timeout_ms), "DURATION",
     "Maximum time a query may take before it is aborted (default 2m)."},
    {"query.max-samples", FLAG_UINT, FIELD(query.max_samples), "N",
     "Maximum number of samples a single query may load into memory (default 50000000)."},
    {"query.max-concurrency", FLAG_POSITIVE, FIELD(query.max_concurrency), "N",
     "Maximum number of queries executed concurrently (default 20)."},
    {"log.level", FLAG_LOG_LEVEL, FIELD(log_level), "LEVEL",
     "Only log messages with the given severity or above: debug, info, warn, error."},
};

#define FLAG_COUNT CAIRN_ARRAY_LEN(flag_defs)
/* getopt_long values: flag i is OPT_BASE + i, its --no- form OPT_NO_BASE + i. */
#define OPT_BASE    1000
#define OPT_NO_BASE 2000
#define OPT_HELP    'h'
#define OPT_VERSION 3000

void server_flags_init(server_flags_t *flags)
{
    memset(flags, 0, sizeof(*flags));
    flags->listen_address = cairn_strdup(SERVER_DEFAULT_LISTEN_ADDRESS);
    flags->max_connections = SERVER_DEFAULT_MAX_CONNECTIONS;
    flags->max_request_body = SERVER_DEFAULT_MAX_REQUEST_BODY;
    flags->log_level = LOG_LEVEL_INFO;
    tsdb_options_init(&flags->tsdb);
    query_options_init(&flags->query);
}

void server_flags_free(server_flags_t *flags)
{
    cairn_free(flags->config_file);
    cairn_free(flags->listen_address);
    tsdb_options_free(&flags->tsdb);
    memset(flags, 0, sizeof(*flags));
}

int server_listen_address_split(const char *address, char *host, size_t host_size, char *port,
                                size_t port_size)
{
    const char *colon = strrchr(address, ':');
    if (!colon)
        return -EINVAL;
    const char *h = address;
    size_t hlen = (size_t)(colon - address);
    if (hlen && h[0] == '[') { /* [::1]:9090 */
        if (h[hlen - 1] != ']')
            return -EINVAL;
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen)) {
        return -EINVAL; /* a bare IPv6 address needs brackets */
    }
    uint64_t p;
    if (parse_uint64(colon + 1, &p) < 0 || p > 65535)
        return -EINVAL;
    if (hlen >= host_size || strlen(colon + 1) >= port_size)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_size, "%s", colon + 1);
    return 0;
}

/* Stores value into the flag's field; on error fills err with the reason only. */
static int flag_set(server_flags_t *flags, const flag_def_t *def, const char *value,
                    cairn_error_t *err)
{
    void *field = (char *)flags + def->offset;
    int rc;
    switch (def->kind) {
    case FLAG_STRING:
        if (!*value)
            return cairn_error_set(err, -EINVAL, "must not be empty");
        /* fall through */
    case FLAG_PATH:
        cairn_free(*(char **)field);
        *(char **)field = cairn_strdup(value);
        return 0;
    case FLAG_LISTEN: {
        char host[256], port[16];
        if (server_listen_address_split(value, host, sizeof(host), port, sizeof(port)) < 0)
            return cairn_error_set(err, -EINVAL,
                                   "expected host:port, e.g. 127.0.0.1:9090, :9090 or [::1]:9090");
        cairn_free(*(char **)field);
        *(char **)field = cairn_strdup(value);
        return 0;
    }
    case FLAG_DURATION: return duration_parse(value, (int64_t *)field, err);
    case FLAG_SIZE: return bytesize_parse(value, (uint64_t *)field, err);
    case FLAG_UINT:
    case FLAG_POSITIVE: {
        uint64_t v;
        rc = parse_uint64(value, &v);
        if (rc == -ERANGE)
            return cairn_error_set(err, rc, "number out of range");
        if (rc < 0)
            return cairn_error_set(err, rc, "expected a non-negative integer");
        if (def->kind == FLAG_POSITIVE && v == 0)
            return cairn_error_set(err, -EINVAL, "must be at least 1");
        *(uint64_t *)field = v;
        return 0;
    }
    case FLAG_LOG_LEVEL:
        if (log_level_parse(value, (log_level_t *)field) < 0)
            return cairn_error_set(err, -EINVAL, "expected one of debug, info, warn, error");
        return 0;
    case FLAG_BOOL: break;
    }
    return cairn_error_set(err, -EINVAL, "unexpected value");
}

int server_flags_parse(server_flags_t *flags, int argc, char **argv, cairn_error_t *err)
{
    struct option options[2 * FLAG_COUNT + 3];
    size_t n = 0;
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        bool is_bool = flag_defs[i].kind == FLAG_BOOL;
        options[n++] = (struct option){flag_defs[i].name, is_bool ? no_argument : required_argument,
                                       NULL, (int)(OPT_BASE + i)};
    }
    /* The --no- names live in static storage: getopt only keeps pointers. */
    static char no_names[FLAG_COUNT][64];
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        if (flag_defs[i].kind != FLAG_BOOL)
            continue;
        snprintf(no_names[i], sizeof(no_names[i]), "no-%s", flag_defs[i].name);
        options[n++] = (struct option){no_names[i], no_argument, NULL, (int)(OPT_NO_BASE + i)};
    }
    options[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    options[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    options[n] = (struct option){NULL, 0, NULL, 0};

    /* getopt_long accepts unambiguous abbreviations (--log for --log.level); Prometheus does
     * not, and a typo must not select a flag silently. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--", 2) != 0)
            continue;
        const char *name = argv[i] + 2;
        size_t len = strcspn(name, "=");
        bool known = false;
        for (size_t o = 0; o < n && !known; o++)
            known = strlen(options[o].name) == len && strncmp(options[o].name, name, len) == 0;
        if (!known)
            return cairn_error_set(err, -EINVAL, "unknown long flag '--%.*s'", (int)len, name);
        /* A flag that takes a separate value swallows the next argument. */
        for (size_t o = 0; o < n; o++)
            if (options[o].has_arg == required_argument && !name[len] &&
                strlen(options[o].name) == len && strncmp(options[o].name, name, len) == 0)
                i++;
    }

    optind = 0; /* GNU: full reset, so parse can run more than once per process */
    opterr = 0;
    int result = SERVER_FLAGS_RUN;
    for (;;) {
        int c = getopt_long(argc, argv, ":h", options, NULL);
        if (c == -1)
            break;
        if (c == OPT_HELP) {
            result = SERVER_FLAGS_HELP;
        } else if (c == OPT_VERSION) {
            if (result == SERVER_FLAGS_RUN)
                result = SERVER_FLAGS_VERSION;
        } else if (c >= OPT_NO_BASE && c < OPT_NO_BASE + (int)FLAG_COUNT) {
            *(bool *)((char *)flags + flag_defs[c - OPT_NO_BASE].offset) = false;
        } else if (c >= OPT_BASE && c < OPT_BASE + (int)FLAG_COUNT) {
            const flag_def_t *def = &flag_defs[c - OPT_BASE];
            if (def->kind == FLAG_BOOL) {
                *(bool *)((char *)flags + def->offset) = true;
                continue;
            }
            cairn_error_t reason = {{0}};
            if (flag_set(flags, def, optarg, &reason) < 0)
                return cairn_error_set(err, -EINVAL, "invalid value \"%s\" for flag --%s: %s",
                                       optarg, def->name, reason.message);
        } else if (c == ':') {
            return cairn_error_set(err, -EINVAL, "expected argument for flag %s", argv[optind - 1]);
        } else {
            const char *arg = argv[optind - 1];
            if (optopt && optopt < 256)
                return cairn_error_set(err, -EINVAL, "unknown short flag '-%c'", optopt);
            /* Names were checked above, so this is a value given to a boolean flag. */
            if (strchr(arg, '='))
                return cairn_error_set(err, -EINVAL, "flag %.*s does not take a value",
                                       (int)strcspn(arg, "="), arg);
            return cairn_error_set(err, -EINVAL, "unknown long flag '%s'", arg);
        }
    }
    if (optind < argc)
        return cairn_error_set(err, -EINVAL, "unexpected argument '%s'", argv[optind]);
    return result;
}

static void flag_format(const server_flags_t *flags, const flag_def_t *def, char *out, size_t size)
{
    const void *field = (const char *)flags + def->offset;
    switch (def->kind) {
    case FLAG_STRING:
    case FLAG_PATH:
    case FLAG_LISTEN: {
        const char *s = *(char *const *)field;
        snprintf(out, size, "%s", s ? s : "");
        break;
    }
    case FLAG_DURATION: duration_format(*(const int64_t *)field, out, size); break;
    case FLAG_SIZE: bytesize_format(*(const uint64_t *)field, out, size); break;
    case FLAG_UINT:
    case FLAG_POSITIVE:
        snprintf(out, size, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case FLAG_BOOL: snprintf(out, size, "%s", *(const bool *)field ? "true" : "false"); break;
    case FLAG_LOG_LEVEL:
        snprintf(out, size, "%s", log_level_name(*(const log_level_t *)field));
        break;
    }
}

void server_flags_each(const server_flags_t *flags,
                       void (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        char value[1024];
        flag_format(flags, &flag_defs[i], value, sizeof(value));
        fn(ctx, flag_defs[i].name, value);
    }
}

void server_flags_print_help(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [<flags>]\n\n"
            "Cairn: a Prometheus-compatible metrics scraper and time-series database.\n\n"
            "Flags:\n"
            "  -h, --help                 Show this help and exit.\n"
            "      --version              Show the version and exit.\n",
            prog);
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        const flag_def_t *def = &flag_defs[i];
        char left[96];
        if (def->kind == FLAG_BOOL)
            snprintf(left, sizeof(left), "--%s", def->name);
        else
            snprintf(left, sizeof(left), "--%s=%s", def->name, def->placeholder);
        fprintf(out, "      %s\n          %s%s%s\n", left, def->help,
                def->kind == FLAG_BOOL ? " Turn off with --no-" : "",
                def->kind == FLAG_BOOL ? def->name : "");
    }
}
