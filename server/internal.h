/*
 * server/internal.h: declarations shared by the files of server/ only.
 *
 *   http.c          the HTTP server on libmicrohttpd: listen socket, thread pool, route table,
 *                   body limit, gzip, request metrics, graceful stop
 *   web.c           the daemon's own endpoints (/metrics, /-/healthy, /-/ready, /-/reload, ...)
 *   self_metrics.c  build info, process and jemalloc figures for /metrics
 *   api.c           the query API (query/query.h) on the HTTP server: routes, parameters,
 *                   cancellation of queries whose client went away
 *   main.c          the daemon: flags, config, lifecycle, signals
 */
#ifndef CAIRN_SERVER_INTERNAL_H
#define CAIRN_SERVER_INTERNAL_H

#include <pthread.h>

#include "server/server.h"

/* Splits "host:port" (host may be empty or a bracketed IPv6 address) into its parts.
 * Returns 0 or -EINVAL. */
int server_listen_address_split(const char *address, char *host, size_t host_size, char *port,
                                size_t port_size);

/* ---------------------------------------------------------------------------------------------
 * HTTP server
 *
 * Routes are registered before http_server_start and never change afterwards, so request
 * threads read the table without a lock. Handlers run on the server's thread pool (threads
 * option); a handler that blocks (a query) holds up the other connections of its thread, so
 * the daemon sizes the pool past its cores. A request body is collected up to the configured
 * limit before the handler runs; a larger one gets 413 without reaching the handler.
 */
typedef struct http_server http_server_t;

enum {
    HTTP_GET = 1 << 0,
    HTTP_HEAD = 1 << 1,
    HTTP_POST = 1 << 2,
    HTTP_PUT = 1 << 3,
    HTTP_DELETE = 1 << 4,
};

typedef struct http_request {
    struct MHD_Connection *connection; /* borrowed, valid during the handler */
    const char *method;                /* borrowed */
    const char *path;                  /* borrowed, without the query string */
    const char *body;                  /* borrowed; NUL-terminated; "" when there is none */
    size_t body_len;
} http_request_t;

typedef struct http_response {
    unsigned status;          /* default 200 */
    const char *content_type; /* static string; default "text/plain; charset=utf-8" */
    buf_t body;               /* the handler appends here */
    label_list_t headers;     /* extra response headers */
    bool compressible;        /* gzip when the client accepts it and the body is large */
} http_response_t;

typedef void (*http_handler_fn)(void *ctx, const http_request_t *req, http_response_t *resp);

typedef struct http_server_options {
    const char *listen_address; /* "host:port"; port 0 picks a free port */
    uint64_t max_connections;
    uint64_t max_request_body;   /* bytes */
    unsigned threads;            /* 0 = one per core */
    metric_registry_t *registry; /* for cairn_http_* metrics */
} http_server_options_t;

/* Creates the server and binds its socket (so a busy port fails here, before anything else
 * starts). Returns NULL with a message in err. */
http_server_t *http_server_new(const http_server_options_t *opts, cairn_error_t *err);
/* Adds a route. path matches exactly, or as a prefix when prefix is true; the first matching
 * route wins, so register specific routes before prefixes. metric_label names the handler in
 * cairn_http_* metrics. Strings must outlive the server. Not thread-safe: call before start. */
void http_server_route(http_server_t *srv, unsigned methods, const char *path, bool prefix,
                       const char *metric_label, http_handler_fn fn, void *ctx);
/* Sets the handler for requests no route matches (default: 404 text). */
void http_server_fallback(http_server_t *srv, const char *metric_label, http_handler_fn fn,
                          void *ctx);
/* Starts serving on the thread pool. */
int http_server_start(http_server_t *srv, cairn_error_t *err);
/* The bound address as "host:port" with the real port (useful with port 0). */
const char *http_server_address(const http_server_t *srv);
/* Stops accepting, waits up to drain_seconds for in-flight requests to finish, then closes
 * every connection and joins the threads. Safe to call once, from a non-handler thread. */
void http_server_stop(http_server_t *srv, double drain_seconds);
void http_server_free(http_server_t *srv);

/* Query-string parameter of the request, or NULL. */
const char *http_request_param(const http_request_t *req, const char *name);
/* Request header, or NULL (case-insensitive name). */
const char *http_request_header(const http_request_t *req, const char *name);

/* Sets status and a plain-text body. */
void http_response_text(http_response_t *resp, unsigned status, const char *text);
/* Sets status and Prometheus's JSON error envelope:
 * {"status":"error","errorType":"<type>","error":"<message>"} */
void http_response_json_error(http_response_t *resp, unsigned status, const char *error_type,
                              const char *fmt, ...) CAIRN_PRINTF(4, 5);

/* ---------------------------------------------------------------------------------------------
 * The daemon
 */
typedef struct server {
    server_flags_t *flags; /* borrowed from main */
    http_server_t *http;
    tsdb_t *db;        /* the storage, once opened */
    char *self_target; /* host:port the embedded default config scrapes */

    pthread_mutex_t reload_lock;            /* serialises reloads (SIGHUP and /-/reload) */
    pthread_mutex_t config_lock;            /* guards config */
    cairn_config_t *config;                 /* current configuration */
    _Atomic int64_t evaluation_interval_ms; /* config's global.evaluation_interval */

    _Atomic bool ready;          /* /-/ready answers 200 */
    _Atomic bool quit_requested; /* /-/quit was called */

    metric_gauge_t *reload_successful;
    metric_gauge_t *reload_success_timestamp;
    metric_gauge_t *ready_gauge;
} server_t;

/* Loads the configuration named by the flags (or the embedded default) and makes it current.
 * On failure the old configuration stays, the failure is logged and counted, and the message
 * is in err. Thread-safe. */
int server_reload(server_t *srv, cairn_error_t *err);

/* Registers the daemon's endpoints on srv->http. */
void web_register_routes(server_t *srv);

/* The query API's routes and state (server/api.c). server_api_new registers the routes (call
 * before web_register_routes, whose /api/ catch-all must come last); they answer 503 until
 * server_api_open, called once srv->db is open, creates the engine and the API. Free after
 * http_server_stop and before the storage closes. */
typedef struct server_api server_api_t;
server_api_t *server_api_new(server_t *srv);
int server_api_open(server_api_t *api, int64_t start_time_ms);
void server_api_free(server_api_t *api);

/* Registers cairn_build_info and the process and jemalloc collectors in reg. */
void self_metrics_register(metric_registry_t *reg);

#endif /* CAIRN_SERVER_INTERNAL_H */
