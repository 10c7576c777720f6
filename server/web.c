/*
 * server/web.c: the daemon's own HTTP endpoints.
 *
 *   GET  /metrics          self-metrics in the Prometheus text format
 *   GET  /-/healthy        always 200 while the process serves
 *   GET  /-/ready          200 once start-up is complete, 503 before
 *   POST /-/reload         re-read the configuration (needs --web.enable-lifecycle)
 *   POST /-/quit           shut down gracefully (needs --web.enable-lifecycle)
 *   *    /api/...          JSON 404 in Prometheus's error shape for unknown API paths
 */
#include <signal.h>
#include <unistd.h>

#include "server/internal.h"

static void handle_metrics(void *ctx, const http_request_t *req, http_response_t *resp)
{
    (void)ctx, (void)req;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->compressible = true;
    metric_registry_render(metric_registry_default(), &resp->body);
}

static void handle_healthy(void *ctx, const http_request_t *req, http_response_t *resp)
{
    (void)ctx, (void)req;
    http_response_text(resp, 200, "Cairn Server is Healthy.\n");
}

static void handle_ready(void *ctx, const http_request_t *req, http_response_t *resp)
{
    server_t *srv = ctx;
    (void)req;
    if (atomic_load(&srv->ready))
        http_response_text(resp, 200, "Cairn Server is Ready.\n");
    else
        http_response_text(resp, 503, "Service Unavailable\n");
}

static bool lifecycle_allowed(server_t *srv, http_response_t *resp)
{
    if (srv->flags->enable_lifecycle)
        return true;
    http_response_text(resp, 403, "Lifecycle API is not enabled.\n");
    return false;
}

static void handle_reload(void *ctx, const http_request_t *req, http_response_t *resp)
{
    server_t *srv = ctx;
    (void)req;
    if (!lifecycle_allowed(srv, resp))
        return;
    cairn_error_t err = {{0}};
    if (server_reload(srv, &err) < 0) {
        http_response_text(resp, 500, "failed to reload config: ");
        buf_append_str(&resp->body, err.message);
        buf_append_char(&resp->body, '\n');
    }
}

static void handle_quit(void *ctx, const http_request_t *req, http_response_t *resp)
{
    server_t *srv = ctx;
    (void)req;
    if (!lifecycle_allowed(srv, resp))
        return;
    http_response_text(resp, 200, "Requesting termination... Goodbye!\n");
    atomic_store(&srv->quit_requested, true);
    /* The main thread waits for signals; every other thread blocks them. */
    kill(getpid(), SIGTERM);
}

static void handle_api_not_found(void *ctx, const http_request_t *req, http_response_t *resp)
{
    (void)ctx;
    http_response_json_error(resp, 404, "not_found", "unknown API endpoint: %s", req->path);
}

static void handle_root(void *ctx, const http_request_t *req, http_response_t *resp)
{
    (void)ctx, (void)req;
    http_response_text(resp, 200,
                       "Cairn " CAIRN_VERSION "\n\n"
                       "/metrics     self-metrics (Prometheus text format)\n"
                       "/-/healthy   health check\n"
                       "/-/ready     readiness check\n");
}

void web_register_routes(server_t *srv)
{
    http_server_t *h = srv->http;
    http_server_route(h, HTTP_GET | HTTP_HEAD, "/metrics", false, "/metrics", handle_metrics, srv);
    http_server_route(h, HTTP_GET | HTTP_HEAD, "/-/healthy", false, "/-/healthy", handle_healthy,
                      srv);
    http_server_route(h, HTTP_GET | HTTP_HEAD, "/-/ready", false, "/-/ready", handle_ready, srv);
    http_server_route(h, HTTP_POST | HTTP_PUT, "/-/reload", false, "/-/reload", handle_reload, srv);
    http_server_route(h, HTTP_POST | HTTP_PUT, "/-/quit", false, "/-/quit", handle_quit, srv);
    http_server_route(h, HTTP_GET | HTTP_HEAD, "/", false, "/", handle_root, srv);
    /* Last: any other API path gets Prometheus's JSON error shape. */
    http_server_route(h, HTTP_GET | HTTP_HEAD | HTTP_POST | HTTP_PUT | HTTP_DELETE, "/api/", true,
                      "/api/*", handle_api_not_found, srv);
}
