/*
 * server/api.c: the query API (query/query.h) behind the HTTP server.
 *
 * Routes for every path the API serves are registered at start-up, before the catch-all JSON
 * 404 of web.c; until the storage is open (and the engine created) they answer 503, as
 * Prometheus does before it is ready. A request's parameters are collected in Go's Form order:
 * the urlencoded form body first (POST and PUT with Content-Type
 * application/x-www-form-urlencoded, decoded here), then the query string (decoded by MHD),
 * repeated names kept. Responses are gzipped when the client accepts it (http.c).
 *
 * Cancellation: while a PromQL query runs, a watcher thread polls the client's socket and
 * sets the query's cancel flag when the peer closes it (POLLRDHUP), so an abandoned query
 * stops. MHD does not look at the socket while our handler runs on its thread, so the poll
 * does not race with it.
 *
 * The API pointer is published with an atomic store once the storage is open; request
 * threads load it. It is freed only after the HTTP server stopped.
 */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h> /* POLLRDHUP: _GNU_SOURCE, from config.h */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "server/internal.h"

struct server_api {
    server_t *srv;                    /* borrowed */
    promql_engine_t *engine;          /* owned, once open */
    _Atomic(query_api_t *) api;       /* owned, once open */
    char **flag_names, **flag_values; /* owned copies for /status/flags */
    size_t flag_count, flag_cap;
    char retention[64];
};

/* ---- parameters ------------------------------------------------------------------------------ */

typedef struct param_list {
    label_pair_t *items; /* owned strings */
    size_t count, cap;
} param_list_t;

static void param_list_add(param_list_t *l, char *name, char *value)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->items = cairn_realloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->count++] = (label_pair_t){name, value};
}

static void param_list_free(param_list_t *l)
{
    for (size_t i = 0; i < l->count; i++) {
        cairn_free(l->items[i].name);
        cairn_free(l->items[i].value);
    }
    cairn_free(l->items);
}

/* Decodes [s, s+len) as Go's url.QueryUnescape: '+' is a space, %XX a byte. NULL if an escape
 * is malformed. */
static char *query_unescape(const char *s, size_t len)
{
    char *out = cairn_malloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[n++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < len ? hex_digit_value(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_digit_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                cairn_free(out);
                return NULL;
            }
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    return out;
}

/* Adds the pairs of an application/x-www-form-urlencoded body, as Go's url.ParseQuery reads
 * it: pairs split on '&', a pair with ';' in its key or a bad escape is skipped, an empty key
 * too; a pair without '=' has the value "". */
static void parse_form_body(const char *body, size_t len, param_list_t *out)
{
    size_t pos = 0;
    while (pos < len) {
        const char *pair = body + pos;
        const char *amp = memchr(pair, '&', len - pos);
        size_t pair_len = amp ? (size_t)(amp - pair) : len - pos;
        pos += pair_len + 1;
        if (pair_len == 0)
            continue;
        const char *eq = memchr(pair, '=', pair_len);
        size_t key_len = eq ? (size_t)(eq - pair) : pair_len;
        if (memchr(pair, ';', key_len))
            continue;
        char *key = query_unescape(pair, key_len);
        char *value = eq ? query_unescape(eq + 1, pair_len - key_len - 1) : cairn_strdup("");
        if (!key || !value || !*key) {
            cairn_free(key);
            cairn_free(value);
            continue;
        }
        param_list_add(out, key, value);
    }
}

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    if (key && *key)
        param_list_add(cls, cairn_strdup(key), cairn_strdup(value ? value : ""));
    return MHD_YES;
}

/* Whether the request carries a urlencoded form body Go would parse. */
static bool has_form_body(const http_request_t *req)
{
    if (strcmp(req->method, "POST") != 0 && strcmp(req->method, "PUT") != 0)
        return false;
    const char *ct = http_request_header(req, "Content-Type");
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    static const char form[] = "application/x-www-form-urlencoded";
    size_t n = sizeof(form) - 1;
    return strncasecmp(ct, form, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* ---- cancellation ------------------------------------------------------------------------------
 */

typedef struct disconnect_watch {
    int fd;
    int done_fd;        /* eventfd: written when the query finished, to end the watch at once */
    atomic_bool cancel; /* the query's flag */
    pthread_t thread;
    bool started;
} disconnect_watch_t;

static void *watch_main(void *arg)
{
    disconnect_watch_t *w = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = w->fd, .events = POLLRDHUP},
                              {.fd = w->done_fd, .events = POLLIN}};
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || p[1].revents)
            break;
        if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            atomic_store(&w->cancel, true);
            break;
        }
    }
    return NULL;
}

static void watch_start(disconnect_watch_t *w, const http_request_t *req)
{
    atomic_init(&w->cancel, false);
    w->started = false;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return;
    w->fd = info->connect_fd;
    w->done_fd = eventfd(0, EFD_CLOEXEC);
    if (w->done_fd < 0)
        return;
    w->started = pthread_create(&w->thread, NULL, watch_main, w) == 0;
    if (!w->started)
        close(w->done_fd);
}

static void watch_stop(disconnect_watch_t *w)
{
    if (!w->started)
        return;
    uint64_t one = 1;
    if (write(w->done_fd, &one, sizeof(one)) != sizeof(one))
        LOG_WARN("Could not wake the disconnect watcher", "err=%s", strerror(errno));
    pthread_join(w->thread, NULL);
    close(w->done_fd);
}

/* ---- the handler ----------------------------------------------------------------------------- */

static void handle_api(void *ctx, const http_request_t *req, http_response_t *resp)
{
    server_api_t *a = ctx;
    query_api_t *api = atomic_load(&a->api);
    if (!api) {
        http_response_text(resp, 503, "Service Unavailable\n");
        return;
    }
    param_list_t params = {0};
    if (has_form_body(req))
        parse_form_body(req->body, req->body_len, &params);
    MHD_get_connection_values(req->connection, MHD_GET_ARGUMENT_KIND, add_query_arg, &params);

    bool is_query =
        strcmp(req->path, "/api/v1/query") == 0 || strcmp(req->path, "/api/v1/query_range") == 0;
    disconnect_watch_t watch;
    if (is_query)
        watch_start(&watch, req);
    query_api_request_t qreq = {
        .method = req->method,
        .path = req->path,
        .params = params.items,
        .param_count = params.count,
        .cancel = is_query ? &watch.cancel : NULL,
    };
    query_api_response_t qresp = {.status = 200};
    /* Subqueries without a step use the current configuration's evaluation interval. */
    promql_engine_set_default_step(a->engine, atomic_load(&a->srv->evaluation_interval_ms));
    query_api_handle(api, &qreq, &qresp);
    if (is_query)
        watch_stop(&watch);
    param_list_free(&params);

    resp->status = qresp.status;
    resp->content_type = qresp.content_type;
    buf_free(&resp->body);
    resp->body = qresp.body;
    resp->compressible = true;
}

/* ---- callbacks for the API ---------------------------------------------------------------------
 */

static void api_external_labels(void *ctx, label_list_t *out)
{
    server_t *srv = ctx;
    pthread_mutex_lock(&srv->config_lock);
    if (srv->config)
        for (size_t i = 0; i < srv->config->external_labels.count; i++)
            label_list_add(out, srv->config->external_labels.items[i].name,
                           srv->config->external_labels.items[i].value);
    pthread_mutex_unlock(&srv->config_lock);
}

static void api_config_status(void *ctx, bool *success, int64_t *last_ms)
{
    server_t *srv = ctx;
    *success = metric_gauge_value(srv->reload_successful) == 1;
    *last_ms = (int64_t)(metric_gauge_value(srv->reload_success_timestamp) * 1000);
}

static void collect_flag(void *ctx, const char *name, const char *value)
{
    server_api_t *a = ctx;
    if (a->flag_count == a->flag_cap) {
        a->flag_cap = a->flag_cap ? a->flag_cap * 2 : 32;
        a->flag_names = cairn_realloc(a->flag_names, a->flag_cap * sizeof(char *));
        a->flag_values = cairn_realloc(a->flag_values, a->flag_cap * sizeof(char *));
    }
    a->flag_names[a->flag_count] = cairn_strdup(name);
    a->flag_values[a->flag_count++] = cairn_strdup(value);
}

/* ---- set-up -------------------------------------------------------------------------------------
 */

static const struct {
    const char *path;
    unsigned methods;
    bool prefix;
} api_paths[] = {
    {"/api/v1/query", HTTP_GET | HTTP_POST, false},
    {"/api/v1/query_range", HTTP_GET | HTTP_POST, false},
    {"/api/v1/series", HTTP_GET | HTTP_POST, false},
    {"/api/v1/labels", HTTP_GET | HTTP_POST, false},
    {"/api/v1/label/", HTTP_GET, true}, /* /api/v1/label/<name>/values */
    {"/api/v1/export", HTTP_GET | HTTP_POST, false},
    {"/api/v1/status/buildinfo", HTTP_GET, false},
    {"/api/v1/status/runtimeinfo", HTTP_GET, false},
    {"/api/v1/status/flags", HTTP_GET, false},
    {"/api/v1/status/tsdb", HTTP_GET, false},
    {"/federate", HTTP_GET, false},
};

server_api_t *server_api_new(server_t *srv)
{
    server_api_t *a = cairn_calloc(1, sizeof(*a));
    a->srv = srv;
    atomic_init(&a->api, NULL);
    server_flags_each(srv->flags, collect_flag, a);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(api_paths); i++)
        http_server_route(srv->http, api_paths[i].methods, api_paths[i].path, api_paths[i].prefix,
                          api_paths[i].prefix ? "/api/v1/label/:name/values" : api_paths[i].path,
                          handle_api, a);
    return a;
}

int server_api_open(server_api_t *a, int64_t start_time_ms)
{
    server_t *srv = a->srv;
    a->engine = promql_engine_new(srv->db, &srv->flags->query);
    if (!a->engine)
        return -ENOMEM;

    /* Retention as Prometheus shows it: time, size, or both joined by " or ". */
    char t[32] = "", s[32] = "";
    if (srv->flags->tsdb.retention_time_ms)
        duration_format(srv->flags->tsdb.retention_time_ms, t, sizeof(t));
    if (srv->flags->tsdb.retention_size)
        bytesize_format(srv->flags->tsdb.retention_size, s, sizeof(s));
    snprintf(a->retention, sizeof(a->retention), "%s%s%s", t, *t && *s ? " or " : "", s);

    query_api_options_t opts = {
        .db = srv->db,
        .engine = a->engine,
        .query = &srv->flags->query,
        .external_labels = api_external_labels,
        .config_status = api_config_status,
        .callback_ctx = srv,
        .flag_names = (const char *const *)a->flag_names,
        .flag_values = (const char *const *)a->flag_values,
        .flag_count = a->flag_count,
        .version = CAIRN_VERSION,
        .revision = CAIRN_REVISION,
        .branch = "",
        .build_user = "",
        .build_date = __DATE__ " " __TIME__,
#ifdef __clang__
        .go_version = "clang " __clang_version__,
#else
        .go_version = "gcc " __VERSION__,
#endif
        .start_time_ms = start_time_ms,
        .storage_retention = a->retention,
    };
    atomic_store(&a->api, query_api_new(&opts));
    return 0;
}

void server_api_free(server_api_t *a)
{
    if (!a)
        return;
    query_api_free(atomic_load(&a->api));
    promql_engine_free(a->engine);
    for (size_t i = 0; i < a->flag_count; i++) {
        cairn_free(a->flag_names[i]);
        cairn_free(a->flag_values[i]);
    }
    cairn_free(a->flag_names);
    cairn_free(a->flag_values);
    cairn_free(a);
}
