/*
 * tools/bench_query.c: `cairn-tool bench query-data` and `cairn-tool bench query`.
 *
 * query-data writes a realistic data set twice, sample for sample: into a Cairn data directory
 * (through the batched appender, one commit per target and scrape, then a clean close) and,
 * optionally, as an OpenMetrics file for `promtool tsdb create-blocks-from openmetrics`, so
 * Debian's prometheus can serve the same samples. Each target ("instance") exports:
 *   job="node": node_cpu_seconds_total{cpu, mode} (4 cpus x 8 modes, counters),
 *               node_memory_MemAvailable_bytes (gauge), node_network_receive_bytes_total
 *               {device} (2 devices, counters)                                  35 series
 *   job="api":  http_requests_total{handler, status} (5 x 3, counters),
 *               http_request_duration_seconds_bucket{handler, le} (5 x 11 buckets) with
 *               _sum and _count (5 each)                                        80 series
 * Values come from a fixed pseudo-random generator, so two runs write the same data.
 *
 * query runs a dashboard-like list of queries (rate, sum by, histogram_quantile, regex
 * matchers, topk; each as an instant query and as a range query over the last hour) against a
 * Prometheus-compatible HTTP API (Cairn's or Prometheus's) from --concurrency client threads,
 * and prints latency percentiles per query and overall. Every response must be HTTP 200 with
 * "status":"success"; failures are counted and the first is printed. The client is a minimal
 * HTTP/1.1 one (one keep-alive connection per thread, Content-Length or chunked bodies): an
 * HTTP library here would map its dependencies (TLS, Kerberos, LDAP: 30 shared libraries,
 * 5.6 MiB) into every cairn-tool process, bench write's peak RSS included.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/bench.h"
#include "tsdb/tsdb.h"

#define SERIES_PER_TARGET 115

/* ---- the data set ---------------------------------------------------------------------------
 */

typedef struct data_series {
    tsdb_label_t labels[6];
    size_t label_count;
    char family[48]; /* metric name, for grouping the OpenMetrics output */
    double value;
    double rate; /* per-second increase (counters) or walk step (gauges) */
    int kind;    /* 0 counter, 1 gauge, 2 histogram bucket (cumulative, see below) */
    int bucket;  /* for kind 2: bucket index in its histogram */
    tsdb_ref_t ref;
} data_series_t;

static const char *const CPU_MODES[] = {"idle",    "iowait", "irq",    "nice",
                                        "softirq", "steal",  "system", "user"};
static const char *const HANDLERS[] = {"/api/v1/query", "/api/v1/query_range", "/api/v1/series",
                                       "/api/v1/labels", "/metrics"};
static const char *const STATUSES[] = {"200", "404", "500"};
static const char *const LE[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                 "0.5",   "1",    "2.5",   "5",    "+Inf"};

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static double rng_uniform(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* The data set's strings, freed together at the end (intern_free). */
static char **interned;
static size_t interned_count, interned_cap;

static char *intern(const char *s)
{
    if (interned_count == interned_cap) {
        interned_cap = interned_cap ? interned_cap * 2 : 1024;
        interned = cairn_realloc(interned, interned_cap * sizeof(*interned));
    }
    return interned[interned_count++] = cairn_strdup(s);
}

static void intern_free(void)
{
    for (size_t i = 0; i < interned_count; i++)
        cairn_free(interned[i]);
    cairn_free(interned);
    interned = NULL;
    interned_count = interned_cap = 0;
}

static void series_add(data_series_t *s, const char *name, const char *instance, const char *job,
                       int kind)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->family, sizeof(s->family), "%s", name);
    s->labels[0] = (tsdb_label_t){"__name__", intern(name)};
    s->labels[1] = (tsdb_label_t){"instance", instance};
    s->labels[2] = (tsdb_label_t){"job", job};
    s->label_count = 3;
    s->kind = kind;
}

static void series_label(data_series_t *s, const char *name, const char *value)
{
    s->labels[s->label_count++] = (tsdb_label_t){name, intern(value)};
}

/* Builds the series of targets; returns how many (a multiple of SERIES_PER_TARGET). */
static data_series_t *data_build(size_t targets)
{
    data_series_t *all = cairn_calloc(targets * SERIES_PER_TARGET, sizeof(*all));
    for (size_t t = 0; t < targets; t++) {
        data_series_t *s = &all[t * SERIES_PER_TARGET];
        char buf[32];
        snprintf(buf, sizeof(buf), "host-%05zu:9100", t);
        char *node = intern(buf);
        snprintf(buf, sizeof(buf), "host-%05zu:8080", t);
        char *api = intern(buf);
        for (int cpu = 0; cpu < 4; cpu++)
            for (size_t m = 0; m < CAIRN_ARRAY_LEN(CPU_MODES); m++, s++) {
                series_add(s, "node_cpu_seconds_total", node, "node", 0);
                snprintf(buf, sizeof(buf), "%d", cpu);
                series_label(s, "cpu", buf);
                series_label(s, "mode", CPU_MODES[m]);
                s->rate = m == 0 ? 0.7 + 0.2 * rng_uniform() : 0.05 * rng_uniform();
                s->value = 1e5 * rng_uniform();
            }
        series_add(s, "node_memory_MemAvailable_bytes", node, "node", 1);
        s->value = 4e9 + 4e9 * rng_uniform();
        s->rate = 1e6;
        s++;
        for (int d = 0; d < 2; d++, s++) {
            series_add(s, "node_network_receive_bytes_total", node, "node", 0);
            series_label(s, "device", d ? "lo" : "eth0");
            s->rate = 1e4 + 1e5 * rng_uniform();
            s->value = 1e9 * rng_uniform();
        }
        for (size_t h = 0; h < CAIRN_ARRAY_LEN(HANDLERS); h++) {
            for (size_t st = 0; st < CAIRN_ARRAY_LEN(STATUSES); st++, s++) {
                series_add(s, "http_requests_total", api, "api", 0);
                series_label(s, "handler", HANDLERS[h]);
                series_label(s, "status", STATUSES[st]);
                s->rate = (st == 0 ? 20.0 : 0.5) * rng_uniform();
                s->value = floor(1e4 * rng_uniform());
            }
            double requests = 10 + 20 * rng_uniform();
            for (size_t b = 0; b < CAIRN_ARRAY_LEN(LE); b++, s++) {
                series_add(s, "http_request_duration_seconds_bucket", api, "api", 2);
                series_label(s, "handler", HANDLERS[h]);
                series_label(s, "le", LE[b]);
                s->bucket = (int)b;
                /* Cumulative share of requests at or below this bound. */
                s->rate =
                    requests *
                    (b + 1 == CAIRN_ARRAY_LEN(LE) ? 1.0 : 1.0 - exp(-2.5 * (double)(b + 1) / 10.0));
            }
            series_add(s, "http_request_duration_seconds_sum", api, "api", 0);
            series_label(s, "handler", HANDLERS[h]);
            s->rate = requests * 0.12;
            s++;
            series_add(s, "http_request_duration_seconds_count", api, "api", 0);
            series_label(s, "handler", HANDLERS[h]);
            s->rate = requests;
            s++;
        }
    }
    return all;
}

/* Advances a series by interval seconds. Counters grow by whole increments, so their values
 * are exact in both stores; gauges take a bounded walk. */
static void series_step(data_series_t *s, double interval_s)
{
    /* One factor per histogram and step, drawn at its first bucket: cumulative buckets stay
     * monotonic in le. */
    static double bucket_factor;
    if (s->kind == 1) {
        s->value += s->rate * (rng_uniform() - 0.5) * interval_s;
        if (s->value < 1e9)
            s->value = 1e9;
    } else if (s->kind == 2) {
        if (s->bucket == 0)
            bucket_factor = 0.8 + 0.4 * rng_uniform();
        s->value += floor(s->rate * interval_s * bucket_factor);
    } else {
        s->value += floor(s->rate * interval_s * (0.8 + 0.4 * rng_uniform()));
    }
}

static void om_write_labels(FILE *f, const data_series_t *s)
{
    fputs(s->family, f);
    fputc('{', f);
    for (size_t i = 1; i < s->label_count; i++)
        fprintf(f, "%s%s=\"%s\"", i > 1 ? "," : "", s->labels[i].name, s->labels[i].value);
    fputc('}', f);
}

static void print_query_data_usage(FILE *out)
{
    fprintf(out,
            "usage: cairn-tool bench query-data [--series=N] [--duration=D] [--interval=D]\n"
            "                                   [--end=UNIX_SECONDS] [--out=DIR]\n"
            "                                   [--openmetrics=FILE]\n\n"
            "Writes a node/api exporter-like data set of about N series (default 100000, in\n"
            "targets of %d series), one sample per interval (default 30s) over duration\n"
            "(default 1h) ending at end (default now), into a fresh Cairn data directory (default\n"
            "bench-query-data) and, with --openmetrics, the same samples as an OpenMetrics file\n"
            "for promtool tsdb create-blocks-from openmetrics.\n",
            SERIES_PER_TARGET);
}

int bench_query_data_main(int argc, char **argv)
{
    size_t want = 100000;
    int64_t duration_ms = 3600 * 1000, interval_ms = 30 * 1000, end_ms = time_now_ms();
    const char *out_dir = "bench-query-data", *om_path = NULL;
    static const struct option options[] = {
        {"series", required_argument, NULL, 'n'},   {"duration", required_argument, NULL, 'd'},
        {"interval", required_argument, NULL, 'i'}, {"end", required_argument, NULL, 'e'},
        {"out", required_argument, NULL, 'o'},      {"openmetrics", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    cairn_error_t err = {{0}};
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, "h", options, NULL)) != -1;) {
        switch (c) {
        case 'n': want = strtoull(optarg, NULL, 10); break;
        case 'd':
        case 'i':
            if (duration_parse(optarg, c == 'd' ? &duration_ms : &interval_ms, &err) < 0) {
                fprintf(stderr, "cairn-tool: error: %s\n", err.message);
                return 2;
            }
            break;
        case 'e': end_ms = (int64_t)(strtod(optarg, NULL) * 1000); break;
        case 'o': out_dir = optarg; break;
        case 'm': om_path = optarg; break;
        case 'h': print_query_data_usage(stdout); return 0;
        default: print_query_data_usage(stderr); return 2;
        }
    }
    if (want == 0 || interval_ms <= 0 || duration_ms < interval_ms) {
        print_query_data_usage(stderr);
        return 2;
    }
    size_t targets = (want + SERIES_PER_TARGET - 1) / SERIES_PER_TARGET;
    size_t n = targets * SERIES_PER_TARGET;
    size_t steps = (size_t)(duration_ms / interval_ms) + 1;
    end_ms -= end_ms % interval_ms;
    int64_t start_ms = end_ms - (int64_t)(steps - 1) * interval_ms;
    data_series_t *all = data_build(targets);

    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", out_dir);
    if (system(cmd) != 0)
        return 1;
    tsdb_open_options_t opts;
    tsdb_open_options_init(&opts, out_dir);
    opts.head_window_ms = duration_ms + 3 * 3600 * 1000LL;
    opts.appendable_window_ms = duration_ms + 3600 * 1000LL;
    tsdb_t *db = tsdb_open(&opts, &err);
    if (!db) {
        fprintf(stderr, "cairn-tool: error: %s\n", err.message);
        return 1;
    }
    /* Time-major, one commit per target and scrape, as the scraper will write. The values of
     * every step are kept (values[step][series]) for the family-major OpenMetrics file. */
    double *values = om_path ? cairn_malloc(steps * n * sizeof(double)) : NULL;
    tsdb_appender_t *app = tsdb_appender_new(db);
    double t0 = time_monotonic_seconds();
    for (size_t k = 0; k < steps; k++) {
        int64_t t = start_ms + (int64_t)k * interval_ms;
        for (size_t tg = 0; tg < targets; tg++) {
            data_series_t *s = &all[tg * SERIES_PER_TARGET];
            for (size_t i = 0; i < SERIES_PER_TARGET; i++) {
                if (k)
                    series_step(&s[i], (double)interval_ms / 1000);
                tsdb_append(app, s[i].ref, s[i].ref ? NULL : s[i].labels, s[i].label_count, t,
                            s[i].value, &s[i].ref);
                if (values)
                    values[k * n + tg * SERIES_PER_TARGET + i] = s[i].value;
            }
            tsdb_commit_result_t res;
            if (tsdb_appender_commit(app, &res) < 0 || res.appended != SERIES_PER_TARGET) {
                fprintf(stderr, "cairn-tool: error: commit failed or rejected samples\n");
                return 1;
            }
        }
    }
    tsdb_appender_free(app);
    double load_s = time_monotonic_seconds() - t0;
    if (tsdb_close(db) < 0)
        return 1;
    printf("cairn data: %zu series, %zu samples each (%lld..%lld ms, every %lld ms) in %s, "
           "appended in %.2f s\n",
           n, steps, (long long)start_ms, (long long)end_ms, (long long)interval_ms, out_dir,
           load_s);

    if (om_path) {
        FILE *f = fopen(om_path, "w");
        if (!f) {
            fprintf(stderr, "cairn-tool: error: %s: %s\n", om_path, strerror(errno));
            return 1;
        }
        /* OpenMetrics wants each family's samples together: family-major, then series, then
         * time. Families are written as `unknown`, so names need no OpenMetrics suffixes. */
        for (size_t first = 0; first < SERIES_PER_TARGET; first++) {
            bool seen = false;
            for (size_t j = 0; j < first && !seen; j++)
                seen = strcmp(all[j].family, all[first].family) == 0;
            if (seen)
                continue;
            fprintf(f, "# TYPE %s unknown\n", all[first].family);
            for (size_t tg = 0; tg < targets; tg++)
                for (size_t i = first; i < SERIES_PER_TARGET; i++) {
                    if (strcmp(all[i].family, all[first].family) != 0)
                        continue;
                    size_t idx = tg * SERIES_PER_TARGET + i;
                    for (size_t k = 0; k < steps; k++) {
                        char num[32];
                        float_format_go(values[k * n + idx], 'g', num, sizeof(num));
                        om_write_labels(f, &all[idx]);
                        int64_t t = start_ms + (int64_t)k * interval_ms;
                        fprintf(f, " %s %lld.%03lld\n", num, (long long)(t / 1000),
                                (long long)(t % 1000));
                    }
                }
        }
        fputs("# EOF\n", f);
        if (fclose(f) != 0)
            return 1;
        printf("openmetrics: %s\n", om_path);
    }
    cairn_free(values);
    cairn_free(all);
    intern_free();
    return 0;
}

/* ---- the query load --------------------------------------------------------------------------
 */

typedef struct bench_query {
    const char *name;
    const char *expr;
} bench_query_t;

/* A dashboard: the panels of a node and an API overview. */
static const bench_query_t QUERIES[] = {
    {"api_rate_by_job", "sum by (job) (rate(http_requests_total[5m]))"},
    {"api_errors_top10",
     "topk(10, sum by (instance) (rate(http_requests_total{status=~\"5..\"}[5m])))"},
    {"api_p99_by_handler", "histogram_quantile(0.99, sum by (le, handler) "
                           "(rate(http_request_duration_seconds_bucket[5m])))"},
    {"api_query_handlers",
     "sum by (status) (rate(http_requests_total{handler=~\"/api/v1/(query|query_range)\"}[5m]))"},
    {"cpu_busy_by_instance_top10",
     "topk(10, sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m])))"},
    {"cpu_idle_avg", "avg(rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))"},
    {"memory_hosts_00", "node_memory_MemAvailable_bytes{instance=~\"host-000.*\"}"},
    {"network_top5", "topk(5, rate(node_network_receive_bytes_total{device=\"eth0\"}[5m]))"},
};

typedef struct query_load {
    const char *url;
    char host[256], port[16]; /* from url: http://host:port */
    int64_t end_ms;
    int rounds;
    _Atomic int next; /* work item: round * 2 * count + query * 2 + (range?) */
    double *latency;  /* [item] seconds */
    size_t *bytes;    /* [item] response body size, to check both servers return the same */
    _Atomic int failures;
    char first_failure[512];
    pthread_mutex_t lock;
} query_load_t;

/* ---- a minimal HTTP/1.1 client ---------------------------------------------------------- */

typedef struct http_conn {
    const char *host, *port;
    int fd;        /* -1: not connected */
    buf_t in;      /* bytes received, not yet consumed */
    size_t in_pos; /* consumed prefix of in */
} http_conn_t;

static int http_connect(http_conn_t *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(c->host, c->port, &hints, &res) != 0)
        return -1;
    c->fd = -1;
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
        c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd >= 0 && connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(res);
    buf_reset(&c->in);
    c->in_pos = 0;
    return c->fd < 0 ? -1 : 0;
}

/* Makes at least n unconsumed bytes available; -1 on EOF or error. */
static int http_fill(http_conn_t *c, size_t n)
{
    while (c->in.len - c->in_pos < n) {
        buf_reserve(&c->in, 65536);
        ssize_t r = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1);
        if (r <= 0)
            return -1;
        c->in.len += (size_t)r;
    }
    return 0;
}

/* Reads one CRLF-terminated line (without the CRLF) into line; -1 on EOF or a line too long. */
static int http_line(http_conn_t *c, char *line, size_t size)
{
    for (;;) {
        char *start = c->in.data + c->in_pos;
        char *eol = c->in.len > c->in_pos ? memchr(start, '\n', c->in.len - c->in_pos) : NULL;
        if (eol) {
            size_t n = (size_t)(eol - start);
            if (n > 0 && start[n - 1] == '\r')
                n--;
            if (n >= size)
                return -1;
            memcpy(line, start, n);
            line[n] = '\0';
            c->in_pos += (size_t)(eol - start) + 1;
            return 0;
        }
        if (http_fill(c, c->in.len - c->in_pos + 1) < 0)
            return -1;
    }
}

static int http_body_bytes(http_conn_t *c, size_t n, buf_t *body)
{
    if (http_fill(c, n) < 0)
        return -1;
    buf_append(body, c->in.data + c->in_pos, n);
    c->in_pos += n;
    return 0;
}

/* GET path on the connection (reconnecting once if the server closed it); the body in body.
 * Returns the status code, or -1 with a message in err. */
static int http_get(http_conn_t *c, const char *path, buf_t *body, const char **err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd < 0 && http_connect(c) < 0) {
            *err = "cannot connect";
            return -1;
        }
        if (c->in_pos == c->in.len) { /* compact between responses */
            buf_reset(&c->in);
            c->in_pos = 0;
        }
        char req[4096];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", path, c->host,
                         c->port);
        char line[8192];
        if (n >= (int)sizeof(req) || write(c->fd, req, (size_t)n) != n ||
            http_line(c, line, sizeof(line)) < 0) {
            close(c->fd); /* a keep-alive connection the server closed: once more */
            c->fd = -1;
            continue;
        }
        int status = 0;
        if (sscanf(line, "HTTP/1.%*d %d", &status) != 1) {
            *err = "bad status line";
            return -1;
        }
        long long length = -1;
        bool chunked = false, close_after = false;
        while (http_line(c, line, sizeof(line)) == 0 && line[0]) {
            if (strncasecmp(line, "Content-Length:", 15) == 0)
                length = atoll(line + 15);
            else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line, "chunked"))
                chunked = true;
            else if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close"))
                close_after = true;
        }
        buf_reset(body);
        int rc = 0;
        if (chunked) {
            for (;;) {
                unsigned long size;
                if (http_line(c, line, sizeof(line)) < 0 || sscanf(line, "%lx", &size) != 1) {
                    rc = -1;
                    break;
                }
                if (size == 0) {
                    while (http_line(c, line, sizeof(line)) == 0 && line[0]) /* trailers */
                        ;
                    break;
                }
                if (http_body_bytes(c, size, body) < 0 || http_line(c, line, sizeof(line)) < 0) {
                    rc = -1;
                    break;
                }
            }
        } else if (length >= 0) {
            rc = http_body_bytes(c, (size_t)length, body);
        } else {
            *err = "response without a length";
            return -1;
        }
        buf_append(body, "", 0);
        if (rc < 0) {
            *err = "connection lost mid-response";
            return -1;
        }
        if (close_after) {
            close(c->fd);
            c->fd = -1;
        }
        return status;
    }
    *err = "connection closed";
    return -1;
}

/* Percent-encodes s for a query string. */
static void url_escape(buf_t *out, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~')
            buf_append_char(out, (char)ch);
        else
            buf_printf(out, "%%%02X", ch);
    }
}

static void *query_worker(void *arg)
{
    query_load_t *ld = arg;
    http_conn_t conn = {.host = ld->host, .port = ld->port, .fd = -1, .in = BUF_INIT};
    buf_t body = BUF_INIT, path = BUF_INIT;
    int per_round = (int)CAIRN_ARRAY_LEN(QUERIES) * 2;
    for (;;) {
        int item = atomic_fetch_add(&ld->next, 1);
        if (item >= ld->rounds * per_round)
            break;
        const bench_query_t *q = &QUERIES[(item % per_round) / 2];
        bool range = item % 2;
        double end_s = (double)ld->end_ms / 1000;
        buf_reset(&path);
        buf_append_str(&path, range ? "/api/v1/query_range?query=" : "/api/v1/query?query=");
        url_escape(&path, q->expr);
        if (range)
            buf_printf(&path, "&start=%.3f&end=%.3f&step=60", end_s - 3600, end_s);
        else
            buf_printf(&path, "&time=%.3f", end_s);
        const char *err = NULL;
        double t0 = time_monotonic_seconds();
        int status = http_get(&conn, path.data, &body, &err);
        ld->latency[item] = time_monotonic_seconds() - t0;
        ld->bytes[item] = body.len;
        if (status != 200 || !body.data || !strstr(body.data, "\"status\":\"success\"")) {
            if (atomic_fetch_add(&ld->failures, 1) == 0) {
                pthread_mutex_lock(&ld->lock);
                snprintf(ld->first_failure, sizeof(ld->first_failure), "%s %s: %s%s%.300s", q->name,
                         range ? "range" : "instant", err ? err : "", err ? " " : "",
                         body.data ? body.data : "");
                pthread_mutex_unlock(&ld->lock);
            }
        }
    }
    if (conn.fd >= 0)
        close(conn.fd);
    buf_free(&conn.in);
    buf_free(&body);
    buf_free(&path);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p * (double)n);
    return sorted[i ? i - 1 : 0];
}

static void print_query_usage(FILE *out)
{
    fprintf(out, "usage: cairn-tool bench query --url=URL --end=UNIX_SECONDS [--rounds=N]\n"
                 "                              [--concurrency=N] [--warmup=N]\n\n"
                 "Runs the dashboard query list (each query instant at end and as a range query\n"
                 "over the hour before end, step 60s) rounds times (default 20) against the\n"
                 "Prometheus HTTP API at URL with concurrency client threads (default 4), after\n"
                 "warmup rounds (default 2) that are not measured. Prints latency percentiles.\n");
}

int bench_query_main(int argc, char **argv)
{
    query_load_t ld = {.rounds = 20};
    int concurrency = 4, warmup = 2;
    static const struct option options[] = {{"url", required_argument, NULL, 'u'},
                                            {"end", required_argument, NULL, 'e'},
                                            {"rounds", required_argument, NULL, 'r'},
                                            {"concurrency", required_argument, NULL, 'c'},
                                            {"warmup", required_argument, NULL, 'w'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    optind = 0;
    for (int c; (c = getopt_long(argc, argv, "h", options, NULL)) != -1;) {
        switch (c) {
        case 'u': ld.url = optarg; break;
        case 'e': ld.end_ms = (int64_t)(strtod(optarg, NULL) * 1000); break;
        case 'r': ld.rounds = atoi(optarg); break;
        case 'c': concurrency = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 'h': print_query_usage(stdout); return 0;
        default: print_query_usage(stderr); return 2;
        }
    }
    if (!ld.url || ld.end_ms <= 0 || ld.rounds <= 0 || concurrency <= 0 || warmup < 0) {
        print_query_usage(stderr);
        return 2;
    }
    if (sscanf(ld.url, "http://%255[^:/]:%15[0-9]", ld.host, ld.port) != 2) {
        fprintf(stderr, "cairn-tool: error: --url must be http://HOST:PORT\n");
        return 2;
    }
    pthread_mutex_init(&ld.lock, NULL);
    size_t per_round = CAIRN_ARRAY_LEN(QUERIES) * 2;
    int measured = ld.rounds;
    pthread_t *tids = cairn_calloc((size_t)concurrency, sizeof(pthread_t));
    double wall = 0;
    for (int phase = 0; phase < 2; phase++) { /* warm-up, then measured */
        ld.rounds = phase ? measured : warmup;
        if (ld.rounds == 0)
            continue;
        cairn_free(ld.latency);
        cairn_free(ld.bytes);
        ld.latency = cairn_calloc((size_t)ld.rounds * per_round, sizeof(double));
        ld.bytes = cairn_calloc((size_t)ld.rounds * per_round, sizeof(size_t));
        atomic_store(&ld.next, 0);
        atomic_store(&ld.failures, 0);
        double t0 = time_monotonic_seconds();
        for (int i = 0; i < concurrency; i++)
            pthread_create(&tids[i], NULL, query_worker, &ld);
        for (int i = 0; i < concurrency; i++)
            pthread_join(tids[i], NULL);
        wall = time_monotonic_seconds() - t0;
    }
    size_t items = (size_t)measured * per_round;
    printf("%-28s %9s %9s %9s   %9s %9s %9s   %s\n", "query (ms)", "inst p50", "inst p90",
           "inst p99", "range p50", "range p90", "range p99", "bytes inst/range");
    double *tmp = cairn_malloc((size_t)measured * sizeof(double));
    for (size_t q = 0; q < CAIRN_ARRAY_LEN(QUERIES); q++) {
        printf("%-28s", QUERIES[q].name);
        for (int range = 0; range < 2; range++) {
            for (int r = 0; r < measured; r++)
                tmp[r] = ld.latency[(size_t)r * per_round + q * 2 + (size_t)range] * 1000;
            qsort(tmp, (size_t)measured, sizeof(double), cmp_double);
            printf(" %9.2f %9.2f %9.2f%s", percentile(tmp, (size_t)measured, 0.5),
                   percentile(tmp, (size_t)measured, 0.9), percentile(tmp, (size_t)measured, 0.99),
                   range ? "" : "  ");
        }
        printf("   %zu/%zu\n", ld.bytes[q * 2], ld.bytes[q * 2 + 1]);
    }
    for (size_t i = 0; i < items; i++)
        ld.latency[i] *= 1000;
    qsort(ld.latency, items, sizeof(double), cmp_double);
    printf("all queries: %zu in %.2f s at concurrency %d: median %.2f ms, p90 %.2f ms, p99 %.2f "
           "ms; %d failed\n",
           items, wall, concurrency, percentile(ld.latency, items, 0.5),
           percentile(ld.latency, items, 0.9), percentile(ld.latency, items, 0.99),
           atomic_load(&ld.failures));
    if (atomic_load(&ld.failures))
        printf("first failure: %s\n", ld.first_failure);
    cairn_free(tmp);
    cairn_free(tids);
    cairn_free(ld.latency);
    cairn_free(ld.bytes);
    return atomic_load(&ld.failures) ? 1 : 0;
}
