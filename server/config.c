/*
 * server/config.c: the YAML configuration loader.
 *
 * The file is loaded with libyaml's document API into a node tree that keeps each node's
 * position, then walked section by section into a cairn_config_t. Every decoder reports the
 * position of the node it rejects, as "<source>:<line>:<column>: <what>", 1-based like an
 * editor shows it.
 *
 * Keys: each mapping is checked against the keys Cairn implements; a key Prometheus knows but
 * Cairn does not implement yet is accepted with a warning (kept in cfg->warnings, logged by the
 * daemon); anything else is an error, as a typo must never pass silently. Duplicate keys in a
 * mapping are errors.
 *
 * Defaults and validation follow Prometheus's config package: the global scrape interval and
 * timeout are inherited by each scrape config; a timeout longer than its interval is an error;
 * job names are unique.
 *
 * YAML aliases share nodes in libyaml's tree, so a hostile file could make a walk exponential;
 * the walk counts visited nodes and gives up past CONFIG_MAX_NODES.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "server/internal.h"

#define CONFIG_MAX_NODES      1000000
#define CONFIG_MAX_FILE_BYTES (64u << 20)

typedef struct config_parser {
    const char *source;
    yaml_document_t doc;
    cairn_config_t *cfg;
    cairn_error_t *err;
    size_t visits;
} config_parser_t;

/* ---- helpers ------------------------------------------------------------------------------ */

static int fail_at(config_parser_t *cp, const yaml_node_t *node, const char *fmt, ...)
    CAIRN_PRINTF(3, 4);

static int fail_at(config_parser_t *cp, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[CAIRN_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (node)
        return cairn_error_set(cp->err, -EINVAL, "%s:%zu:%zu: %s", cp->source,
                               node->start_mark.line + 1, node->start_mark.column + 1, msg);
    return cairn_error_set(cp->err, -EINVAL, "%s: %s", cp->source, msg);
}

static void warn_at(config_parser_t *cp, const yaml_node_t *node, const char *fmt, ...)
    CAIRN_PRINTF(3, 4);

static void warn_at(config_parser_t *cp, const yaml_node_t *node, const char *fmt, ...)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "%s:%zu:%zu: ", cp->source, node->start_mark.line + 1,
               node->start_mark.column + 1);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    cairn_config_t *cfg = cp->cfg;
    cfg->warnings = cairn_realloc(cfg->warnings, (cfg->warning_count + 1) * sizeof(char *));
    cfg->warnings[cfg->warning_count++] = buf_detach(&b);
}

static yaml_node_t *node_get(config_parser_t *cp, int index)
{
    return yaml_document_get_node(&cp->doc, index);
}

/* The i-th element of a sequence node (for error positions). */
static const yaml_node_t *list_item(config_parser_t *cp, const yaml_node_t *seq, size_t i)
{
    if (seq->type != YAML_SEQUENCE_NODE ||
        seq->data.sequence.items.start + i >= seq->data.sequence.items.top)
        return seq;
    return node_get(cp, seq->data.sequence.items.start[i]);
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static int visit(config_parser_t *cp, const yaml_node_t *n)
{
    if (++cp->visits > CONFIG_MAX_NODES)
        return fail_at(cp, n, "configuration too large (more than %d YAML nodes after aliases)",
                       CONFIG_MAX_NODES);
    return 0;
}

/* Iterates a mapping: for each pair sets key and value. Fails on non-scalar or
 * duplicate keys. Returns 1 with a pair, 0 at the end, or a negative error. */
typedef struct map_iter {
    const yaml_node_t *map;
    yaml_node_pair_t *pair;
} map_iter_t;

static int map_begin(config_parser_t *cp, const yaml_node_t *n, const char *what, map_iter_t *it)
{
    it->map = n;
    it->pair = NULL;
    if (is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(cp, n, "%s: expected a mapping, got %s", what, node_kind(n));
    it->pair = n->data.mapping.pairs.start;
    return 0;
}

static int map_next(config_parser_t *cp, map_iter_t *it, const char *what, yaml_node_t **key,
                    yaml_node_t **value)
{
    if (!it->pair || it->pair >= it->map->data.mapping.pairs.top)
        return 0;
    yaml_node_pair_t *pair = it->pair++;
    *key = node_get(cp, pair->key);
    *value = node_get(cp, pair->value);
    int rc = visit(cp, *value);
    if (rc < 0)
        return rc;
    if ((*key)->type != YAML_SCALAR_NODE)
        return fail_at(cp, *key, "%s: keys must be strings", what);
    for (yaml_node_pair_t *p = it->map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *other = node_get(cp, p->key);
        if (other->type == YAML_SCALAR_NODE && strcmp(scalar(other), scalar(*key)) == 0)
            return fail_at(cp, *key, "%s: key \"%s\" already defined", what, scalar(*key));
    }
    return 1;
}

static int unknown_key(config_parser_t *cp, const yaml_node_t *key, const char *type_name,
                       const char *const *unsupported)
{
    for (size_t i = 0; unsupported && unsupported[i]; i++) {
        if (strcmp(scalar(key), unsupported[i]) == 0) {
            warn_at(cp, key, "%s.%s is not supported by Cairn yet and is ignored", type_name,
                    scalar(key));
            return 0;
        }
    }
    return fail_at(cp, key, "field \"%s\" not found in type %s", scalar(key), type_name);
}

/* ---- typed decoders ----------------------------------------------------------------------- */

static int decode_string(config_parser_t *cp, const yaml_node_t *n, const char *what, char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(cp, n, "%s: expected a string, got %s", what, node_kind(n));
    cairn_free(*out);
    *out = cairn_strdup(is_null(n) ? "" : scalar(n));
    return 0;
}

static int decode_duration(config_parser_t *cp, const yaml_node_t *n, const char *what,
                           int64_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(cp, n, "%s: expected a duration, got %s", what, node_kind(n));
    cairn_error_t e = {{0}};
    if (duration_parse(scalar(n), out, &e) < 0)
        return fail_at(cp, n, "%s: %s", what, e.message);
    return 0;
}

static int decode_size(config_parser_t *cp, const yaml_node_t *n, const char *what, uint64_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(cp, n, "%s: expected a size, got %s", what, node_kind(n));
    cairn_error_t e = {{0}};
    if (bytesize_parse(scalar(n), out, &e) < 0)
        return fail_at(cp, n, "%s: %s", what, e.message);
    return 0;
}

static int decode_uint(config_parser_t *cp, const yaml_node_t *n, const char *what, uint64_t *out)
{
    if (n->type != YAML_SCALAR_NODE || parse_uint64(scalar(n), out) < 0)
        return fail_at(cp, n, "%s: expected a non-negative integer, got %s%s%s%s", what,
                       n->type == YAML_SCALAR_NODE ? "\"" : "",
                       n->type == YAML_SCALAR_NODE ? scalar(n) : node_kind(n),
                       n->type == YAML_SCALAR_NODE ? "\"" : "", "");
    return 0;
}

static int decode_bool(config_parser_t *cp, const yaml_node_t *n, const char *what, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "y"};
    static const char *const no[] = {"false", "no", "off", "n"};
    if (n->type == YAML_SCALAR_NODE) {
        for (size_t i = 0; i < CAIRN_ARRAY_LEN(yes); i++) {
            if (strcasecmp(scalar(n), yes[i]) == 0) {
                *out = true;
                return 0;
            }
            if (strcasecmp(scalar(n), no[i]) == 0) {
                *out = false;
                return 0;
            }
        }
        return fail_at(cp, n, "%s: expected true or false, got \"%s\"", what, scalar(n));
    }
    return fail_at(cp, n, "%s: expected true or false, got %s", what, node_kind(n));
}

/* A list of strings (a null node is an empty list). */
static int decode_string_list(config_parser_t *cp, const yaml_node_t *n, const char *what,
                              char ***out, size_t *count)
{
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_at(cp, n, "%s: expected a list, got %s", what, node_kind(n));
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = node_get(cp, *it);
        int rc = visit(cp, item);
        if (rc < 0)
            return rc;
        if (item->type != YAML_SCALAR_NODE)
            return fail_at(cp, item, "%s: expected a string, got %s", what, node_kind(item));
        *out = cairn_realloc(*out, (*count + 1) * sizeof(char *));
        (*out)[(*count)++] = cairn_strdup(scalar(item));
    }
    return 0;
}

/* A mapping of label names to values, validated and sorted. */
static int decode_labels(config_parser_t *cp, const yaml_node_t *n, const char *what,
                         label_list_t *out)
{
    map_iter_t it;
    yaml_node_t *key, *value;
    int rc = map_begin(cp, n, what, &it);
    while (rc == 0 && (rc = map_next(cp, &it, what, &key, &value)) > 0) {
        if (!label_name_is_valid(scalar(key)))
            return fail_at(cp, key, "%s: \"%s\" is not a valid label name", what, scalar(key));
        if (value->type != YAML_SCALAR_NODE)
            return fail_at(cp, value, "%s: value of label \"%s\" must be a string", what,
                           scalar(key));
        label_list_add(out, scalar(key), is_null(value) ? "" : scalar(value));
        rc = 0;
    }
    if (rc < 0)
        return rc;
    label_list_sort(out); /* duplicates were rejected by map_next */
    return 0;
}

/* For lists of mappings: calls fn for each element with its index. */
typedef int (*element_fn)(config_parser_t *cp, const yaml_node_t *n, size_t index, void *arg);

static int decode_list(config_parser_t *cp, const yaml_node_t *n, const char *what, element_fn fn,
                       void *arg)
{
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_at(cp, n, "%s: expected a list, got %s", what, node_kind(n));
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *item = node_get(cp, *it);
        int rc = visit(cp, item);
        if (rc == 0)
            rc = fn(cp, item, i, arg);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- global ------------------------------------------------------------------------------- */

static const char *const global_unsupported[] = {
    "query_log_file",
    "scrape_failure_log_file",
    "rule_query_offset",
    "scrape_protocols",
    "keep_dropped_targets",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "always_scrape_classic_histograms",
    "convert_classic_histograms_to_nhcb",
    "scrape_native_histograms",
    "native_histogram_bucket_limit",
    "native_histogram_min_bucket_factor",
    NULL,
};

/* Scrape limits shared by `global` and each scrape config. Returns 1 if key was one. */
static int decode_limit(config_parser_t *cp, const char *k, const yaml_node_t *v, const char *what,
                        uint64_t *body, uint64_t *samples, uint64_t *labels, uint64_t *name_len,
                        uint64_t *value_len, uint64_t *targets)
{
    char path[128];
    snprintf(path, sizeof(path), "%s.%s", what, k);
    int rc;
    if (strcmp(k, "body_size_limit") == 0)
        rc = decode_size(cp, v, path, body);
    else if (strcmp(k, "sample_limit") == 0)
        rc = decode_uint(cp, v, path, samples);
    else if (strcmp(k, "label_limit") == 0)
        rc = decode_uint(cp, v, path, labels);
    else if (strcmp(k, "label_name_length_limit") == 0)
        rc = decode_uint(cp, v, path, name_len);
    else if (strcmp(k, "label_value_length_limit") == 0)
        rc = decode_uint(cp, v, path, value_len);
    else if (strcmp(k, "target_limit") == 0)
        rc = decode_uint(cp, v, path, targets);
    else
        return 0;
    return rc < 0 ? rc : 1;
}

static int decode_global(config_parser_t *cp, const yaml_node_t *n)
{
    scrape_global_defaults_t *g = &cp->cfg->global;
    bool timeout_set = false;
    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, "global", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "global", &key, &v)) > 0) {
        const char *k = scalar(key);
        if (strcmp(k, "scrape_interval") == 0) {
            rc = decode_duration(cp, v, "global.scrape_interval", &g->scrape_interval_ms);
            if (rc == 0 && g->scrape_interval_ms == 0) /* 0 means unset, as in Prometheus */
                g->scrape_interval_ms = SCRAPE_DEFAULT_INTERVAL_MS;
        } else if (strcmp(k, "scrape_timeout") == 0) {
            rc = decode_duration(cp, v, "global.scrape_timeout", &g->scrape_timeout_ms);
            timeout_set = g->scrape_timeout_ms != 0; /* 0 means unset */
            if (!timeout_set)
                g->scrape_timeout_ms = SCRAPE_DEFAULT_TIMEOUT_MS;
        } else if (strcmp(k, "evaluation_interval") == 0) {
            rc = decode_duration(cp, v, "global.evaluation_interval",
                                 &cp->cfg->evaluation_interval_ms);
        } else if (strcmp(k, "external_labels") == 0) {
            rc = decode_labels(cp, v, "global.external_labels", &cp->cfg->external_labels);
        } else {
            rc = decode_limit(cp, k, v, "global", &g->body_size_limit, &g->sample_limit,
                              &g->label_limit, &g->label_name_length_limit,
                              &g->label_value_length_limit, &g->target_limit);
            if (rc == 0)
                rc = unknown_key(cp, key, "global", global_unsupported);
            else if (rc > 0)
                rc = 0;
        }
    }
    if (rc < 0)
        return rc;
    /* As Prometheus: an unset timeout follows a short interval; a set one may not exceed it. */
    if (!timeout_set && g->scrape_timeout_ms > g->scrape_interval_ms)
        g->scrape_timeout_ms = g->scrape_interval_ms;
    if (g->scrape_timeout_ms > g->scrape_interval_ms)
        return fail_at(cp, n, "global scrape timeout greater than scrape interval");
    return 0;
}

/* ---- scrape_configs ----------------------------------------------------------------------- */

static const char *const scrape_unsupported[] = {
    "relabel_configs",
    "metric_relabel_configs",
    "basic_auth",
    "authorization",
    "oauth2",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "http_headers",
    "scrape_protocols",
    "fallback_scrape_protocol",
    "scrape_classic_histograms",
    "always_scrape_classic_histograms",
    "convert_classic_histograms_to_nhcb",
    "native_histogram_bucket_limit",
    "native_histogram_min_bucket_factor",
    "scrape_native_histograms",
    "keep_dropped_targets",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "scrape_failure_log_file",
    "dns_sd_configs",
    "http_sd_configs",
    "kubernetes_sd_configs",
    "consul_sd_configs",
    "ec2_sd_configs",
    "gce_sd_configs",
    "azure_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "openstack_sd_configs",
    NULL,
};

static int decode_static_config(config_parser_t *cp, const yaml_node_t *n, size_t index, void *arg)
{
    scrape_config_t *sc = arg;
    char what[160];
    snprintf(what, sizeof(what), "scrape_configs[%s].static_configs[%zu]", sc->job_name, index);
    sc->static_configs = cairn_realloc(sc->static_configs,
                                       (sc->static_config_count + 1) * sizeof(*sc->static_configs));
    scrape_static_config_t *st = &sc->static_configs[sc->static_config_count++];
    memset(st, 0, sizeof(*st));

    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, what, &it);
    while (rc == 0 && (rc = map_next(cp, &it, what, &key, &v)) > 0) {
        const char *k = scalar(key);
        if (strcmp(k, "targets") == 0) {
            rc = decode_string_list(cp, v, "targets", &st->targets, &st->target_count);
            for (size_t i = 0; rc == 0 && i < st->target_count; i++) {
                const char *t = st->targets[i];
                if (!*t || strchr(t, '/') || strchr(t, ' '))
                    rc = fail_at(cp, list_item(cp, v, i),
                                 "%s.targets: \"%s\" is not a valid host:port", what, t);
            }
        } else if (strcmp(k, "labels") == 0) {
            rc = decode_labels(cp, v, "labels", &st->labels);
        } else {
            rc = unknown_key(cp, key, "static_config", NULL);
        }
    }
    return rc;
}

/* Prometheus accepts ^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$ */
static bool file_sd_pattern_is_valid(const char *path)
{
    static const char *const extensions[] = {".json", ".yml", ".yaml", ".JSON", ".YML", ".YAML"};
    const char *star = strchr(path, '*');
    if (star && (strchr(star + 1, '*') || strchr(star + 1, '/')))
        return false;
    size_t len = strlen(path);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(extensions); i++) {
        size_t elen = strlen(extensions[i]);
        /* The extension must follow the star, not be part of the fixed prefix before it. */
        if (len >= elen && strcmp(path + len - elen, extensions[i]) == 0 &&
            (!star || path + len - elen > star))
            return true;
    }
    return false;
}

static int decode_file_sd_config(config_parser_t *cp, const yaml_node_t *n, size_t index, void *arg)
{
    scrape_config_t *sc = arg;
    char what[160];
    snprintf(what, sizeof(what), "scrape_configs[%s].file_sd_configs[%zu]", sc->job_name, index);
    sc->file_sd_configs = cairn_realloc(sc->file_sd_configs, (sc->file_sd_config_count + 1) *
                                                                 sizeof(*sc->file_sd_configs));
    scrape_file_sd_config_t *fs = &sc->file_sd_configs[sc->file_sd_config_count++];
    memset(fs, 0, sizeof(*fs));
    fs->refresh_interval_ms = SCRAPE_DEFAULT_FILE_SD_REFRESH_MS;

    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, what, &it);
    while (rc == 0 && (rc = map_next(cp, &it, what, &key, &v)) > 0) {
        const char *k = scalar(key);
        if (strcmp(k, "files") == 0) {
            rc = decode_string_list(cp, v, "files", &fs->files, &fs->file_count);
            for (size_t i = 0; rc == 0 && i < fs->file_count; i++)
                if (!file_sd_pattern_is_valid(fs->files[i]))
                    rc = fail_at(cp, list_item(cp, v, i),
                                 "%s.files: path name \"%s\" is not valid for file discovery "
                                 "(a * is allowed only in the last path element; the name must "
                                 "end in .json, .yml or .yaml)",
                                 what, fs->files[i]);
        } else if (strcmp(k, "refresh_interval") == 0)
            rc = decode_duration(cp, v, "refresh_interval", &fs->refresh_interval_ms);
        else
            rc = unknown_key(cp, key, "file_sd_config", NULL);
    }
    if (rc == 0 && fs->file_count == 0)
        rc = fail_at(cp, n, "%s: file service discovery config must contain at least one path",
                     what);
    return rc;
}

static int decode_params(config_parser_t *cp, const yaml_node_t *n, scrape_config_t *sc)
{
    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, "params", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "params", &key, &v)) > 0) {
        sc->params = cairn_realloc(sc->params, (sc->param_count + 1) * sizeof(*sc->params));
        scrape_param_t *p = &sc->params[sc->param_count++];
        memset(p, 0, sizeof(*p));
        p->name = cairn_strdup(scalar(key));
        rc = decode_string_list(cp, v, "params", &p->values, &p->value_count);
    }
    return rc;
}

static int decode_scrape_config(config_parser_t *cp, const yaml_node_t *n, size_t index, void *arg)
{
    (void)arg;
    cairn_config_t *cfg = cp->cfg;
    cfg->scrape_configs = cairn_realloc(cfg->scrape_configs, (cfg->scrape_config_count + 1) *
                                                                 sizeof(*cfg->scrape_configs));
    scrape_config_t *sc = &cfg->scrape_configs[cfg->scrape_config_count++];
    scrape_config_init(sc, &cfg->global);

    char what[96];
    snprintf(what, sizeof(what), "scrape_configs[%zu]", index);
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(cp, n, "%s: expected a mapping, got %s", what, node_kind(n));

    /* job_name first, so later messages can name the job. */
    const yaml_node_t *job_node = NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_get(cp, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), "job_name") == 0) {
            job_node = node_get(cp, p->value);
            int rc = decode_string(cp, job_node, "job_name", &sc->job_name);
            if (rc < 0)
                return rc;
        }
    }
    if (!sc->job_name || !*sc->job_name)
        return fail_at(cp, job_node ? job_node : n, "%s: job_name is empty", what);
    for (size_t i = 0; i + 1 < cfg->scrape_config_count; i++)
        if (strcmp(cfg->scrape_configs[i].job_name, sc->job_name) == 0)
            return fail_at(cp, job_node, "found multiple scrape configs with job name \"%s\"",
                           sc->job_name);

    bool timeout_set = false;
    const yaml_node_t *timeout_node = n;
    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, what, &it);
    while (rc == 0 && (rc = map_next(cp, &it, what, &key, &v)) > 0) {
        const char *k = scalar(key);
        rc = 0;
        if (strcmp(k, "job_name") == 0) {
            /* done above */
        } else if (strcmp(k, "scrape_interval") == 0) {
            /* 0 means unset: inherit from global, as Prometheus does. */
            rc = decode_duration(cp, v, "scrape_interval", &sc->scrape_interval_ms);
            if (rc == 0 && sc->scrape_interval_ms == 0)
                sc->scrape_interval_ms = cfg->global.scrape_interval_ms;
        } else if (strcmp(k, "scrape_timeout") == 0) {
            rc = decode_duration(cp, v, "scrape_timeout", &sc->scrape_timeout_ms);
            if (rc == 0 && sc->scrape_timeout_ms == 0)
                sc->scrape_timeout_ms = cfg->global.scrape_timeout_ms;
            else
                timeout_set = true;
            timeout_node = v;
        } else if (strcmp(k, "metrics_path") == 0) {
            rc = decode_string(cp, v, "metrics_path", &sc->metrics_path);
        } else if (strcmp(k, "scheme") == 0) {
            rc = decode_string(cp, v, "scheme", &sc->scheme);
            if (rc == 0 && strcmp(sc->scheme, "http") != 0 && strcmp(sc->scheme, "https") != 0)
                rc = fail_at(cp, v, "scheme: \"%s\" is not supported, use http or https",
                             sc->scheme);
        } else if (strcmp(k, "honor_labels") == 0) {
            rc = decode_bool(cp, v, "honor_labels", &sc->honor_labels);
        } else if (strcmp(k, "honor_timestamps") == 0) {
            rc = decode_bool(cp, v, "honor_timestamps", &sc->honor_timestamps);
        } else if (strcmp(k, "track_timestamps_staleness") == 0) {
            rc = decode_bool(cp, v, "track_timestamps_staleness", &sc->track_timestamps_staleness);
        } else if (strcmp(k, "enable_compression") == 0) {
            rc = decode_bool(cp, v, "enable_compression", &sc->enable_compression);
        } else if (strcmp(k, "params") == 0) {
            rc = decode_params(cp, v, sc);
        } else if (strcmp(k, "static_configs") == 0) {
            rc = decode_list(cp, v, "static_configs", decode_static_config, sc);
        } else if (strcmp(k, "file_sd_configs") == 0) {
            rc = decode_list(cp, v, "file_sd_configs", decode_file_sd_config, sc);
        } else {
            rc = decode_limit(cp, k, v, what, &sc->body_size_limit, &sc->sample_limit,
                              &sc->label_limit, &sc->label_name_length_limit,
                              &sc->label_value_length_limit, &sc->target_limit);
            if (rc == 0)
                rc = unknown_key(cp, key, "scrape_config", scrape_unsupported);
            else if (rc > 0)
                rc = 0;
        }
    }
    if (rc < 0)
        return rc;
    /* As Prometheus: an inherited timeout is capped by the job's own interval. */
    if (!timeout_set && sc->scrape_timeout_ms > sc->scrape_interval_ms)
        sc->scrape_timeout_ms = sc->scrape_interval_ms;
    if (sc->scrape_timeout_ms > sc->scrape_interval_ms)
        return fail_at(cp, timeout_node,
                       "scrape timeout greater than scrape interval for scrape config with job "
                       "name \"%s\"",
                       sc->job_name);
    if (sc->metrics_path[0] != '/')
        return fail_at(cp, n, "metrics_path \"%s\" of job \"%s\" must start with \"/\"",
                       sc->metrics_path, sc->job_name);
    return 0;
}

/* ---- remote_write ------------------------------------------------------------------------- */

static const char *const remote_write_unsupported[] = {
    "write_relabel_configs",
    "protobuf_message",
    "send_exemplars",
    "send_native_histograms",
    "round_robin_dns",
    "metadata_config",
    "basic_auth",
    "authorization",
    "oauth2",
    "sigv4",
    "azuread",
    "google_iam",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "http_headers",
    NULL,
};

static const char *const queue_unsupported[] = {"sample_age_limit", NULL};

static int decode_queue_config(config_parser_t *cp, const yaml_node_t *n,
                               remote_write_queue_config_t *q)
{
    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, "queue_config", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "queue_config", &key, &v)) > 0) {
        const char *k = scalar(key);
        if (strcmp(k, "capacity") == 0)
            rc = decode_uint(cp, v, "queue_config.capacity", &q->capacity);
        else if (strcmp(k, "max_shards") == 0)
            rc = decode_uint(cp, v, "queue_config.max_shards", &q->max_shards);
        else if (strcmp(k, "min_shards") == 0)
            rc = decode_uint(cp, v, "queue_config.min_shards", &q->min_shards);
        else if (strcmp(k, "max_samples_per_send") == 0)
            rc = decode_uint(cp, v, "queue_config.max_samples_per_send", &q->max_samples_per_send);
        else if (strcmp(k, "batch_send_deadline") == 0)
            rc = decode_duration(cp, v, "queue_config.batch_send_deadline",
                                 &q->batch_send_deadline_ms);
        else if (strcmp(k, "min_backoff") == 0)
            rc = decode_duration(cp, v, "queue_config.min_backoff", &q->min_backoff_ms);
        else if (strcmp(k, "max_backoff") == 0)
            rc = decode_duration(cp, v, "queue_config.max_backoff", &q->max_backoff_ms);
        else if (strcmp(k, "retry_on_http_429") == 0)
            rc = decode_bool(cp, v, "queue_config.retry_on_http_429", &q->retry_on_http_429);
        else
            rc = unknown_key(cp, key, "queue_config", queue_unsupported);
    }
    if (rc == 0 && q->min_shards > q->max_shards)
        rc = fail_at(cp, n, "queue_config: min_shards (%llu) greater than max_shards (%llu)",
                     (unsigned long long)q->min_shards, (unsigned long long)q->max_shards);
    return rc;
}

/* Headers the remote-write protocol or the HTTP client owns. */
static const char *const reserved_headers[] = {
    "Authorization",
    "Host",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "User-Agent",
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Www-Authenticate",
    "Transfer-Encoding",
    "X-Prometheus-Remote-Write-Version",
};

static int decode_headers(config_parser_t *cp, const yaml_node_t *n, label_list_t *out)
{
    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, n, "headers", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "headers", &key, &v)) > 0) {
        if (v->type != YAML_SCALAR_NODE)
            return fail_at(cp, v, "headers: value of \"%s\" must be a string", scalar(key));
        for (size_t i = 0; i < CAIRN_ARRAY_LEN(reserved_headers); i++)
            if (strcasecmp(scalar(key), reserved_headers[i]) == 0)
                return fail_at(cp, key, "headers: %s is a reserved header and cannot be set",
                               scalar(key));
        label_list_add(out, scalar(key), scalar(v));
        rc = 0;
    }
    return rc;
}

static int decode_remote_write(config_parser_t *cp, const yaml_node_t *n, size_t index, void *arg)
{
    (void)arg;
    cairn_config_t *cfg = cp->cfg;
    cfg->remote_writes = cairn_realloc(cfg->remote_writes,
                                       (cfg->remote_write_count + 1) * sizeof(*cfg->remote_writes));
    remote_write_config_t *rw = &cfg->remote_writes[cfg->remote_write_count++];
    remote_write_config_init(rw);

    char what[64];
    snprintf(what, sizeof(what), "remote_write[%zu]", index);
    map_iter_t it;
    yaml_node_t *key, *v;
    const yaml_node_t *name_node = n;
    int rc = map_begin(cp, n, what, &it);
    while (rc == 0 && (rc = map_next(cp, &it, what, &key, &v)) > 0) {
        const char *k = scalar(key);
        if (strcmp(k, "url") == 0) {
            rc = decode_string(cp, v, "url", &rw->url);
            if (rc == 0 && strncmp(rw->url, "http://", 7) != 0 &&
                strncmp(rw->url, "https://", 8) != 0)
                rc = fail_at(cp, v, "%s.url: \"%s\" must be an http:// or https:// URL", what,
                             rw->url);
        } else if (strcmp(k, "name") == 0) {
            rc = decode_string(cp, v, "name", &rw->name);
            name_node = v;
        } else if (strcmp(k, "remote_timeout") == 0) {
            rc = decode_duration(cp, v, "remote_timeout", &rw->remote_timeout_ms);
        } else if (strcmp(k, "headers") == 0) {
            rc = decode_headers(cp, v, &rw->headers);
        } else if (strcmp(k, "queue_config") == 0) {
            rc = decode_queue_config(cp, v, &rw->queue);
        } else {
            rc = unknown_key(cp, key, "remote_write_config", remote_write_unsupported);
        }
    }
    if (rc < 0)
        return rc;
    if (!rw->url || !*rw->url)
        return fail_at(cp, n, "%s: url for remote_write is empty", what);
    for (size_t i = 0; rw->name && *rw->name && i + 1 < cfg->remote_write_count; i++)
        if (cfg->remote_writes[i].name && strcmp(cfg->remote_writes[i].name, rw->name) == 0)
            return fail_at(cp, name_node, "found multiple remote write configs with name \"%s\"",
                           rw->name);
    return 0;
}

/* ---- storage ------------------------------------------------------------------------------ */

static int decode_storage(config_parser_t *cp, const yaml_node_t *n)
{
    static const char *const storage_unsupported[] = {"exemplars", NULL};
    static const char *const tsdb_unsupported[] = {NULL};
    map_iter_t it, it2;
    yaml_node_t *key, *v, *key2, *v2;
    int rc = map_begin(cp, n, "storage", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "storage", &key, &v)) > 0) {
        if (strcmp(scalar(key), "tsdb") != 0) {
            rc = unknown_key(cp, key, "storage", storage_unsupported);
            continue;
        }
        rc = map_begin(cp, v, "storage.tsdb", &it2);
        while (rc == 0 && (rc = map_next(cp, &it2, "storage.tsdb", &key2, &v2)) > 0) {
            if (strcmp(scalar(key2), "out_of_order_time_window") == 0)
                rc = decode_duration(cp, v2, "storage.tsdb.out_of_order_time_window",
                                     &cp->cfg->storage.out_of_order_time_window_ms);
            else
                rc = unknown_key(cp, key2, "storage.tsdb", tsdb_unsupported);
        }
    }
    return rc;
}

/* ---- top level ---------------------------------------------------------------------------- */

static const char *const top_unsupported[] = {
    "rule_files", "scrape_config_files", "alerting", "remote_read", "tracing", "runtime", "otlp",
    NULL,
};

static int decode_root(config_parser_t *cp, const yaml_node_t *root)
{
    /* global first: scrape configs inherit from it wherever it appears in the file. */
    map_iter_t it;
    yaml_node_t *key, *v;
    int rc = map_begin(cp, root, "configuration", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "configuration", &key, &v)) > 0) {
        rc = 0;
        if (strcmp(scalar(key), "global") == 0)
            rc = decode_global(cp, v);
    }
    if (rc < 0)
        return rc;
    rc = map_begin(cp, root, "configuration", &it);
    while (rc == 0 && (rc = map_next(cp, &it, "configuration", &key, &v)) > 0) {
        const char *k = scalar(key);
        rc = 0;
        if (strcmp(k, "global") == 0)
            continue;
        if (strcmp(k, "scrape_configs") == 0)
            rc = decode_list(cp, v, "scrape_configs", decode_scrape_config, NULL);
        else if (strcmp(k, "remote_write") == 0)
            rc = decode_list(cp, v, "remote_write", decode_remote_write, NULL);
        else if (strcmp(k, "storage") == 0)
            rc = decode_storage(cp, v);
        else
            rc = unknown_key(cp, key, "config", top_unsupported);
    }
    return rc;
}

static cairn_config_t *config_new(const char *source)
{
    cairn_config_t *cfg = cairn_calloc(1, sizeof(*cfg));
    cfg->source = cairn_strdup(source);
    scrape_global_defaults_init(&cfg->global);
    cfg->evaluation_interval_ms = 60 * 1000;
    tsdb_config_init(&cfg->storage);
    return cfg;
}

void config_free(cairn_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->scrape_config_count; i++)
        scrape_config_free(&cfg->scrape_configs[i]);
    cairn_free(cfg->scrape_configs);
    for (size_t i = 0; i < cfg->remote_write_count; i++)
        remote_write_config_free(&cfg->remote_writes[i]);
    cairn_free(cfg->remote_writes);
    label_list_free(&cfg->external_labels);
    for (size_t i = 0; i < cfg->warning_count; i++)
        cairn_free(cfg->warnings[i]);
    cairn_free(cfg->warnings);
    cairn_free(cfg->source);
    cairn_free(cfg);
}

cairn_config_t *config_load_string(const char *yaml, size_t len, const char *source,
                                   cairn_error_t *err)
{
    config_parser_t cp = {.source = source, .err = err};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        cairn_error_set(err, -ENOMEM, "%s: cannot initialise the YAML parser", source);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &cp.doc)) {
        const yaml_mark_t *m = parser.problem ? &parser.problem_mark : &parser.context_mark;
        cairn_error_set(err, -EINVAL, "%s:%zu:%zu: YAML syntax error: %s%s%s", source, m->line + 1,
                        m->column + 1, parser.problem ? parser.problem : "unknown",
                        parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return NULL;
    }
    yaml_parser_delete(&parser);

    cp.cfg = config_new(source);
    yaml_node_t *root = yaml_document_get_root_node(&cp.doc);
    int rc = root ? decode_root(&cp, root) : 0;
    yaml_document_delete(&cp.doc);
    if (rc < 0) {
        config_free(cp.cfg);
        return NULL;
    }
    return cp.cfg;
}

cairn_config_t *config_load_file(const char *path, cairn_error_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cairn_error_set(err, -errno, "cannot read configuration file %s: %s", path,
                        cairn_strerror(-errno));
        return NULL;
    }
    buf_t b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > CONFIG_MAX_FILE_BYTES) {
            fclose(f);
            buf_free(&b);
            cairn_error_set(err, -EFBIG, "%s: configuration file larger than %u bytes", path,
                            CONFIG_MAX_FILE_BYTES);
            return NULL;
        }
        buf_append(&b, chunk, n);
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        buf_free(&b);
        cairn_error_set(err, -EIO, "cannot read configuration file %s", path);
        return NULL;
    }
    cairn_config_t *cfg = config_load_string(b.data ? b.data : "", b.len, path, err);
    buf_free(&b);
    return cfg;
}

cairn_config_t *config_load_default(const char *self_target, cairn_error_t *err)
{
    char *yaml = cairn_sprintf(CONFIG_DEFAULT_TEMPLATE, self_target);
    cairn_config_t *cfg = config_load_string(yaml, strlen(yaml), "<default>", err);
    cairn_free(yaml);
    return cfg;
}
