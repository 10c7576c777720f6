/*
 * server/http.c: the HTTP server, on libmicrohttpd.
 *
 * Threads: MHD runs a pool of polling threads (one per core by default, poll; the daemon asks
 * for more, see main.c); each accepted connection is served by the thread that accepted it,
 * and handlers run on that thread. The
 * listen socket is created here (getaddrinfo, bind, listen) and handed to MHD, so bind errors
 * are reported in our words and port 0 works.
 *
 * A request goes through access_handler several times: first with no body (we match the route,
 * check Content-Length against the body limit and count the request in flight), then once per
 * body chunk (appended to the request's buffer, up to the limit), then a last time with no data,
 * when the handler runs and the response is queued. A body over the limit is answered with 413:
 * at once when Content-Length announces it; otherwise (chunked uploads) the rest is read and
 * discarded, since MHD cannot queue a response mid-upload, and answered at the end; a client
 * that keeps sending past HTTP_DISCARD_MAX bytes is disconnected. 413 responses close the
 * connection.
 *
 * Locks: none on the request path besides the metric registry's child lookups. The route table
 * is immutable once started. in_flight is an atomic used by http_server_stop to drain.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "server/internal.h"

#define HTTP_MAX_ROUTES     64
#define HTTP_GZIP_MIN_BYTES 1024
#define HTTP_DISCARD_MAX    (64u << 20)

typedef struct http_route {
    unsigned methods;
    const char *path;
    size_t path_len;
    bool prefix;
    const char *metric_label;
    http_handler_fn fn;
    void *ctx;
    metric_histogram_t *duration; /* cairn_http_request_duration_seconds{handler} */
} http_route_t;

struct http_server {
    http_server_options_t opts;
    int listen_fd;
    char address[300];
    struct MHD_Daemon *daemon;
    http_route_t routes[HTTP_MAX_ROUTES];
    size_t route_count;
    http_route_t fallback;
    _Atomic long in_flight;

    metric_family_t *requests_total;   /* {code, handler} */
    metric_family_t *request_duration; /* {handler} */
    metric_gauge_t *in_flight_gauge;
    metric_counter_t *body_too_large;
};

/* Per-request state kept by MHD between access_handler calls. */
typedef struct request_state {
    const http_route_t *route;
    buf_t body;
    double start;
    bool too_large; /* the body exceeded the limit; the rest is discarded, then 413 */
    bool rejected;  /* a response (413) was already queued */
    size_t discarded;
} request_state_t;

static void fallback_not_found(void *ctx, const http_request_t *req, http_response_t *resp)
{
    (void)ctx, (void)req;
    http_response_text(resp, 404, "404 page not found\n");
}

static void mhd_log(void *ctx, const char *fmt, va_list ap)
{
    (void)ctx;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = '\0';
    LOG_DEBUG("HTTP server", "detail=%s", log_quote(msg));
}

static int listen_socket(const char *address, char *bound, size_t bound_size, cairn_error_t *err)
{
    char host[256], port[16];
    if (server_listen_address_split(address, host, sizeof(host), port, sizeof(port)) < 0)
        return cairn_error_set(err, -EINVAL, "invalid listen address \"%s\"", address);

    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (gai != 0)
        return cairn_error_set(err, -EINVAL, "listen address \"%s\": %s", address,
                               gai_strerror(gai));
    int fd = -1, saved = 0;
    /* With an empty host getaddrinfo lists IPv4 0.0.0.0 first; take the first that binds. */
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* Accepted sockets inherit it: a response written in two parts (headers, body) must
         * not wait for the client's delayed ACK (40 ms) under Nagle's algorithm. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return cairn_error_set(err, -saved, "listen tcp %s: %s", address, cairn_strerror(-saved));

    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[INET6_ADDRSTRLEN + 2] = "", p[16] = "";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        if (ss.ss_family == AF_INET6)
            snprintf(bound, bound_size, "[%s]:%s", h, p);
        else
            snprintf(bound, bound_size, "%s:%s", h, p);
    } else {
        snprintf(bound, bound_size, "%s", address);
    }
    return fd;
}

http_server_t *http_server_new(const http_server_options_t *opts, cairn_error_t *err)
{
    http_server_t *srv = cairn_calloc(1, sizeof(*srv));
    srv->opts = *opts;
    if (!srv->opts.threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        srv->opts.threads = n > 0 ? (unsigned)n : 1;
    }
    srv->listen_fd = listen_socket(opts->listen_address, srv->address, sizeof(srv->address), err);
    if (srv->listen_fd < 0) {
        cairn_free(srv);
        return NULL;
    }
    srv->fallback = (http_route_t){0, "", 0, true, "other", fallback_not_found, NULL, NULL};

    metric_registry_t *reg = opts->registry ? opts->registry : metric_registry_default();
    static const char *const code_handler[] = {"code", "handler"};
    static const char *const handler[] = {"handler"};
    srv->requests_total =
        metric_family_new(reg, METRIC_COUNTER, "cairn_http_requests_total",
                          "Counter of HTTP requests by handler and status code.", 2, code_handler);
    srv->request_duration =
        metric_family_new(reg, METRIC_HISTOGRAM, "cairn_http_request_duration_seconds",
                          "Histogram of HTTP request latencies by handler.", 1, handler);
    srv->in_flight_gauge = metric_gauge_new(reg, "cairn_http_requests_in_flight",
                                            "Number of HTTP requests being served.");
    srv->body_too_large =
        metric_counter_new(reg, "cairn_http_request_body_too_large_total",
                           "Requests rejected with 413 because the body exceeded the limit.");
    return srv;
}

static void route_init_metrics(http_server_t *srv, http_route_t *r)
{
    const char *label = r->metric_label;
    r->duration = metric_histogram_with(srv->request_duration, &label);
}

void http_server_route(http_server_t *srv, unsigned methods, const char *path, bool prefix,
                       const char *metric_label, http_handler_fn fn, void *ctx)
{
    if (srv->route_count == HTTP_MAX_ROUTES)
        CAIRN_PANIC("too many HTTP routes (limit %d)", HTTP_MAX_ROUTES);
    http_route_t *r = &srv->routes[srv->route_count++];
    *r = (http_route_t){methods, path, strlen(path), prefix, metric_label, fn, ctx, NULL};
    route_init_metrics(srv, r);
}

void http_server_fallback(http_server_t *srv, const char *metric_label, http_handler_fn fn,
                          void *ctx)
{
    srv->fallback.metric_label = metric_label;
    srv->fallback.fn = fn;
    srv->fallback.ctx = ctx;
}

static unsigned method_bit(const char *method)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", HTTP_GET},
                   {"HEAD", HTTP_HEAD},
                   {"POST", HTTP_POST},
                   {"PUT", HTTP_PUT},
                   {"DELETE", HTTP_DELETE}};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(methods); i++)
        if (strcmp(method, methods[i].name) == 0)
            return methods[i].bit;
    return 0;
}

static const http_route_t *route_find(const http_server_t *srv, const char *path)
{
    for (size_t i = 0; i < srv->route_count; i++) {
        const http_route_t *r = &srv->routes[i];
        if (r->prefix ? strncmp(path, r->path, r->path_len) == 0 : strcmp(path, r->path) == 0)
            return r;
    }
    return &srv->fallback;
}

/* Builds an Allow header value for a route's methods. */
static void allow_header(unsigned methods, char *out, size_t size)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(names); i++)
        if (methods & (1u << i))
            n += (size_t)snprintf(out + n, size - n, "%s%s", n ? ", " : "", names[i]);
}

static bool client_accepts_gzip(struct MHD_Connection *c)
{
    const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding");
    return ae && strstr(ae, "gzip");
}

/* gzip-compresses in into out. Returns 0, or -1 if zlib fails (then the body goes plain). */
static int gzip_buffer(const buf_t *in, buf_t *out)
{
    z_stream zs = {0};
    if (deflateInit2(&zs, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong bound = deflateBound(&zs, (uLong)in->len);
    buf_reserve(out, bound);
    zs.next_in = (Bytef *)in->data;
    zs.avail_in = (uInt)in->len;
    zs.next_out = (Bytef *)out->data;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_FINISH);
    out->len = zs.total_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? 0 : -1;
}

static void count_request(http_server_t *srv, const http_route_t *route, unsigned status,
                          double start)
{
    char code[8];
    snprintf(code, sizeof(code), "%u", status);
    const char *values[2] = {code, route->metric_label};
    metric_counter_add(metric_counter_with(srv->requests_total, values), 1);
    metric_histogram_t *h = route->duration;
    if (!h)
        h = metric_histogram_with(srv->request_duration, &route->metric_label);
    metric_histogram_observe(h, time_monotonic_seconds() - start);
}

/* Hands resp to MHD (taking ownership of its body) and records the request's metrics. */
static enum MHD_Result send_response(http_server_t *srv, struct MHD_Connection *conn,
                                     const http_route_t *route, double start, http_response_t *resp,
                                     bool close_after)
{
    buf_t gz = BUF_INIT;
    buf_t *body = &resp->body;
    bool gzipped = false;
    if (resp->compressible && resp->body.len >= HTTP_GZIP_MIN_BYTES && client_accepts_gzip(conn) &&
        gzip_buffer(&resp->body, &gz) == 0) {
        body = &gz;
        gzipped = true;
    }
    size_t len = body->len;
    char *data = buf_detach(body);
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(len, data, cairn_free);
    if (!r) {
        cairn_free(data);
        buf_free(&gz);
        buf_free(&resp->body);
        label_list_free(&resp->headers);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "text/plain; charset=utf-8");
    if (gzipped)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    if (resp->compressible)
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    for (size_t i = 0; i < resp->headers.count; i++)
        MHD_add_response_header(r, resp->headers.items[i].name, resp->headers.items[i].value);
    if (close_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(conn, resp->status, r);
    MHD_destroy_response(r);
    count_request(srv, route, resp->status, start);
    buf_free(&gz);
    buf_free(&resp->body);
    label_list_free(&resp->headers);
    return rc;
}

static enum MHD_Result reject_too_large(http_server_t *srv, struct MHD_Connection *conn,
                                        request_state_t *st)
{
    http_response_t resp = {.status = 200};
    char msg[128];
    snprintf(msg, sizeof(msg), "request body too large: limit is %llu bytes\n",
             (unsigned long long)srv->opts.max_request_body);
    http_response_text(&resp, 413, msg);
    metric_counter_add(srv->body_too_large, 1);
    st->rejected = true;
    return send_response(srv, conn, st->route, st->start, &resp, true);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)version;
    http_server_t *srv = cls;
    request_state_t *st = *con_cls;

    if (!st) { /* first call: headers only */
        st = cairn_calloc(1, sizeof(*st));
        st->start = time_monotonic_seconds();
        st->route = route_find(srv, url);
        *con_cls = st;
        atomic_fetch_add(&srv->in_flight, 1);
        metric_gauge_add(srv->in_flight_gauge, 1);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        uint64_t declared;
        if (cl && parse_uint64(cl, &declared) == 0 && declared > srv->opts.max_request_body)
            return reject_too_large(srv, conn, st);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!st->too_large && st->body.len + n > srv->opts.max_request_body) {
            st->too_large = true;
            buf_free(&st->body);
        }
        if (st->rejected || st->too_large) {
            st->discarded += n;
            if (st->discarded <= HTTP_DISCARD_MAX)
                return MHD_YES;
            metric_counter_add(srv->body_too_large, 1);
            return MHD_NO; /* close the connection */
        }
        buf_append(&st->body, upload_data, n);
        return MHD_YES;
    }
    if (st->rejected)
        return MHD_YES;
    if (st->too_large)
        return reject_too_large(srv, conn, st);

    const http_route_t *route = st->route;
    http_response_t resp = {.status = 200};
    unsigned bit = method_bit(method);
    if (route != &srv->fallback && !(route->methods & bit)) {
        char allow[64];
        allow_header(route->methods, allow, sizeof(allow));
        label_list_add(&resp.headers, "Allow", allow);
        http_response_text(&resp, 405, "Method Not Allowed\n");
    } else {
        http_request_t req = {conn, method, url, st->body.data ? st->body.data : "", st->body.len};
        route->fn(route->ctx, &req, &resp);
    }
    return send_response(srv, conn, route, st->start, &resp, false);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)conn, (void)toe;
    http_server_t *srv = cls;
    request_state_t *st = *con_cls;
    if (!st)
        return;
    buf_free(&st->body);
    cairn_free(st);
    *con_cls = NULL;
    metric_gauge_add(srv->in_flight_gauge, -1);
    atomic_fetch_sub(&srv->in_flight, 1);
}

int http_server_start(http_server_t *srv, cairn_error_t *err)
{
    /* poll, not epoll: libmicrohttpd 0.9.75 in epoll mode misses a client's EOF in the middle
     * of a request body, leaving the socket in CLOSE_WAIT until the connection timeout
     * (tests/integration: test_client_closing_mid_body_is_noticed). */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, srv, MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->opts.threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)srv->opts.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_END);
    if (!srv->daemon)
        return cairn_error_set(err, -EIO, "cannot start the HTTP server on %s", srv->address);
    return 0;
}

const char *http_server_address(const http_server_t *srv)
{
    return srv->address;
}

void http_server_stop(http_server_t *srv, double drain_seconds)
{
    if (!srv->daemon)
        return;
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    srv->listen_fd = -1;
    double deadline = time_monotonic_seconds() + drain_seconds;
    while (atomic_load(&srv->in_flight) > 0 && time_monotonic_seconds() < deadline)
        usleep(10 * 1000);
    long left = atomic_load(&srv->in_flight);
    if (left > 0)
        LOG_WARN("Closing HTTP connections with requests still in flight", "requests=%ld", left);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}

void http_server_free(http_server_t *srv)
{
    if (!srv)
        return;
    if (srv->daemon)
        http_server_stop(srv, 0);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    cairn_free(srv);
}

const char *http_request_param(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

void http_response_text(http_response_t *resp, unsigned status, const char *text)
{
    resp->status = status;
    resp->content_type = "text/plain; charset=utf-8";
    buf_reset(&resp->body);
    buf_append_str(&resp->body, text);
}

void http_response_json_error(http_response_t *resp, unsigned status, const char *error_type,
                              const char *fmt, ...)
{
    buf_t msg = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    resp->status = status;
    resp->content_type = "application/json";
    buf_reset(&resp->body);
    buf_append_str(&resp->body, "{\"status\":\"error\",\"errorType\":");
    buf_append_json_string(&resp->body, error_type);
    buf_append_str(&resp->body, ",\"error\":");
    buf_append_json_string(&resp->body, msg.data);
    buf_append_char(&resp->body, '}');
    buf_free(&msg);
}
