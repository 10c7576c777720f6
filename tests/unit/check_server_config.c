/*
 * tests/unit/check_server_config.c: unit tests for the YAML configuration loader
 * (server/config.c): a complete Prometheus-style file parsed field by field, Prometheus's
 * defaults and inheritance from `global:`, keys Prometheus knows but Cairn ignores (warnings),
 * and one fixture per mistake with the file:line:col of the offending node in the message.
 *
 * Fixtures live in tests/unit/data/config/ and are found through $CAIRN_SRCDIR (the source
 * root; "." when unset). Positions in the expectations below are 1-based, counted in the fixture
 * files by hand; keep them in step when editing a fixture.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define PATH_SIZE 4096

static const char *source_dir(void)
{
    const char *dir = getenv("CAIRN_SRCDIR");
    return dir != NULL && dir[0] != '\0' ? dir : ".";
}

/* The path of fixture name, in static storage (valid until the next call). */
static const char *fixture_path(const char *name)
{
    static char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/tests/unit/data/config/%s", source_dir(), name);
    return path;
}

/* Loads fixture name, which must load; never returns NULL. */
static cairn_config_t *load_fixture(const char *name)
{
    cairn_error_t err;
    memset(&err, 0, sizeof err);
    const char *path = fixture_path(name);
    cairn_config_t *cfg = config_load_file(path, &err);
    ck_assert_msg(cfg != NULL, "loading %s failed: %s", path, err.message);
    return cfg;
}

/* Loads fixture name, which must fail; returns its path (see fixture_path) and fills err. */
static const char *load_fixture_fails(const char *name, cairn_error_t *err)
{
    memset(err, 0, sizeof *err);
    const char *path = fixture_path(name);
    cairn_config_t *cfg = config_load_file(path, err);
    if (cfg != NULL) {
        config_free(cfg);
        ck_abort_msg("%s loaded, but it must fail", path);
    }
    ck_assert_msg(err->message[0] != '\0', "no message for %s", path);
    return path;
}

/* Loads yaml from memory, which must load. */
static cairn_config_t *load_string(const char *yaml)
{
    cairn_error_t err;
    memset(&err, 0, sizeof err);
    cairn_config_t *cfg = config_load_string(yaml, strlen(yaml), "inline", &err);
    ck_assert_msg(cfg != NULL, "loading failed: %s\n---\n%s", err.message, yaml);
    return cfg;
}

/* Loads yaml from memory, which must fail; fills err. */
static void load_string_fails(const char *yaml, cairn_error_t *err)
{
    memset(err, 0, sizeof *err);
    cairn_config_t *cfg = config_load_string(yaml, strlen(yaml), "inline", err);
    if (cfg != NULL) {
        config_free(cfg);
        ck_abort_msg("loaded, but it must fail:\n%s", yaml);
    }
    ck_assert_msg(err->message[0] != '\0', "no message for:\n%s", yaml);
}

static void assert_contains(const char *message, const char *part)
{
    ck_assert_msg(strstr(message, part) != NULL, "message \"%s\" does not contain \"%s\"", message,
                  part);
}

/* Finds "<source>:<line>:<col>:" in message; returns false if there is none. */
static bool message_position(const char *message, const char *source, long *line, long *col)
{
    size_t len = strlen(source);
    for (const char *p = strstr(message, source); p != NULL; p = strstr(p + 1, source)) {
        const char *q = p + len;
        char *end;
        if (*q++ != ':' || *q < '0' || *q > '9')
            continue;
        *line = strtol(q, &end, 10);
        if (*end++ != ':' || *end < '0' || *end > '9')
            continue;
        *col = strtol(end, &end, 10);
        if (*end != ':')
            continue;
        return true;
    }
    return false;
}

/* Asserts the message carries "<source>:<line>:<col>:" exactly. */
static void assert_position(const char *message, const char *source, long line, long col)
{
    char want[PATH_SIZE + 64];
    snprintf(want, sizeof want, "%s:%ld:%ld:", source, line, col);
    assert_contains(message, want);
}

/* Asserts the message carries "<source>:<line>:<col>:" for the given line and any column. */
static void assert_position_line(const char *message, const char *source, long line)
{
    long got_line = 0, got_col = 0;
    ck_assert_msg(message_position(message, source, &got_line, &got_col),
                  "message \"%s\" has no \"%s:<line>:<col>:\"", message, source);
    ck_assert_msg(got_line == line && got_col >= 1, "message \"%s\": want line %ld", message, line);
}

/* Asserts the position is one of two (line, col) pairs: where a key or its value starts. */
static void assert_position_either(const char *message, const char *source, long line1, long col1,
                                   long line2, long col2)
{
    long line = 0, col = 0;
    ck_assert_msg(message_position(message, source, &line, &col),
                  "message \"%s\" has no \"%s:<line>:<col>:\"", message, source);
    ck_assert_msg((line == line1 && col == col1) || (line == line2 && col == col2),
                  "message \"%s\": want %ld:%ld or %ld:%ld", message, line1, col1, line2, col2);
}

static const scrape_config_t *find_job(const cairn_config_t *cfg, const char *job)
{
    for (size_t i = 0; i < cfg->scrape_config_count; i++) {
        if (strcmp(cfg->scrape_configs[i].job_name, job) == 0)
            return &cfg->scrape_configs[i];
    }
    ck_abort_msg("no scrape config with job name %s", job);
    return NULL;
}

static bool has_warning_about(const cairn_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->warning_count; i++) {
        if (cfg->warnings[i] != NULL && strstr(cfg->warnings[i], key) != NULL)
            return true;
    }
    return false;
}

/* Asserts the Prometheus defaults of everything a configuration without sections holds. */
static void assert_all_defaults(const cairn_config_t *cfg)
{
    ck_assert_int_eq(cfg->global.scrape_interval_ms, 60 * 1000);
    ck_assert_int_eq(cfg->global.scrape_timeout_ms, 10 * 1000);
    ck_assert_int_eq(cfg->evaluation_interval_ms, 60 * 1000);
    ck_assert_uint_eq(cfg->global.body_size_limit, 0);
    ck_assert_uint_eq(cfg->global.sample_limit, 0);
    ck_assert_uint_eq(cfg->global.label_limit, 0);
    ck_assert_uint_eq(cfg->global.label_name_length_limit, 0);
    ck_assert_uint_eq(cfg->global.label_value_length_limit, 0);
    ck_assert_uint_eq(cfg->global.target_limit, 0);
    ck_assert_uint_eq(cfg->external_labels.count, 0);
    ck_assert_uint_eq(cfg->scrape_config_count, 0);
    ck_assert_uint_eq(cfg->remote_write_count, 0);
    ck_assert_int_eq(cfg->storage.out_of_order_time_window_ms, 0);
    ck_assert_uint_eq(cfg->warning_count, 0);
}

/* --- the complete good file ------------------------------------------------------------------ */

START_TEST(test_good_source_and_order)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    ck_assert_ptr_nonnull(cfg->source);
    ck_assert_str_eq(cfg->source, fixture_path("good.yml"));
    ck_assert_uint_eq(cfg->scrape_config_count, 2);
    ck_assert_str_eq(cfg->scrape_configs[0].job_name, "cairn");
    ck_assert_str_eq(cfg->scrape_configs[1].job_name, "node");
    ck_assert_uint_eq(cfg->warning_count, 0);
    config_free(cfg);
}
END_TEST

START_TEST(test_good_global)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    ck_assert_int_eq(cfg->global.scrape_interval_ms, 15 * 1000);
    ck_assert_int_eq(cfg->global.scrape_timeout_ms, 5 * 1000);
    ck_assert_int_eq(cfg->evaluation_interval_ms, 30 * 1000);
    ck_assert_uint_eq(cfg->global.sample_limit, 0);
    ck_assert_uint_eq(cfg->global.body_size_limit, 0);

    /* Written replica, region in the file: sorted by name after loading. */
    ck_assert_uint_eq(cfg->external_labels.count, 2);
    ck_assert_str_eq(cfg->external_labels.items[0].name, "region");
    ck_assert_str_eq(cfg->external_labels.items[0].value, "eu");
    ck_assert_str_eq(cfg->external_labels.items[1].name, "replica");
    ck_assert_str_eq(cfg->external_labels.items[1].value, "a");
    config_free(cfg);
}
END_TEST

/* Job "cairn" sets nothing but targets: everything else is inherited or defaulted. */
START_TEST(test_good_job_inherits_defaults)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    const scrape_config_t *sc = find_job(cfg, "cairn");
    ck_assert_int_eq(sc->scrape_interval_ms, 15 * 1000);
    ck_assert_int_eq(sc->scrape_timeout_ms, 5 * 1000);
    ck_assert_str_eq(sc->metrics_path, "/metrics");
    ck_assert_str_eq(sc->scheme, "http");
    ck_assert(!sc->honor_labels);
    ck_assert(sc->honor_timestamps);
    ck_assert(!sc->track_timestamps_staleness);
    ck_assert(sc->enable_compression);
    ck_assert_uint_eq(sc->body_size_limit, 0);
    ck_assert_uint_eq(sc->sample_limit, 0);
    ck_assert_uint_eq(sc->label_limit, 0);
    ck_assert_uint_eq(sc->label_name_length_limit, 0);
    ck_assert_uint_eq(sc->label_value_length_limit, 0);
    ck_assert_uint_eq(sc->target_limit, 0);
    ck_assert_uint_eq(sc->param_count, 0);
    ck_assert_uint_eq(sc->file_sd_config_count, 0);

    ck_assert_uint_eq(sc->static_config_count, 1);
    const scrape_static_config_t *st = &sc->static_configs[0];
    ck_assert_uint_eq(st->target_count, 1);
    ck_assert_str_eq(st->targets[0], "localhost:9090");
    ck_assert_uint_eq(st->labels.count, 1);
    ck_assert_pstr_eq(label_list_get(&st->labels, "env"), "prod");
    config_free(cfg);
}
END_TEST

START_TEST(test_good_job_overrides)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    const scrape_config_t *sc = find_job(cfg, "node");
    ck_assert_int_eq(sc->scrape_interval_ms, 30 * 1000);
    ck_assert_int_eq(sc->scrape_timeout_ms, 5 * 1000); /* global timeout, below the interval */
    ck_assert_str_eq(sc->metrics_path, "/m");
    ck_assert_str_eq(sc->scheme, "https");
    ck_assert(sc->honor_labels);
    ck_assert(!sc->honor_timestamps);
    ck_assert(sc->enable_compression);
    ck_assert_uint_eq(sc->sample_limit, 1000);

    ck_assert_uint_eq(sc->param_count, 1);
    ck_assert_str_eq(sc->params[0].name, "module");
    ck_assert_uint_eq(sc->params[0].value_count, 1);
    ck_assert_str_eq(sc->params[0].values[0], "if_mib");
    config_free(cfg);
}
END_TEST

START_TEST(test_good_job_service_discovery)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    const scrape_config_t *sc = find_job(cfg, "node");

    ck_assert_uint_eq(sc->static_config_count, 2);
    const scrape_static_config_t *st = &sc->static_configs[0];
    ck_assert_uint_eq(st->target_count, 2);
    ck_assert_str_eq(st->targets[0], "node1:9100");
    ck_assert_str_eq(st->targets[1], "node2:9100");
    ck_assert_uint_eq(st->labels.count, 1);
    ck_assert_pstr_eq(label_list_get(&st->labels, "rack"), "r1");
    st = &sc->static_configs[1];
    ck_assert_uint_eq(st->target_count, 1);
    ck_assert_str_eq(st->targets[0], "node3:9100");
    ck_assert_uint_eq(st->labels.count, 0);

    ck_assert_uint_eq(sc->file_sd_config_count, 1);
    const scrape_file_sd_config_t *fsd = &sc->file_sd_configs[0];
    ck_assert_uint_eq(fsd->file_count, 1);
    ck_assert_str_eq(fsd->files[0], "targets/*.json");
    ck_assert_int_eq(fsd->refresh_interval_ms, 60 * 1000);
    config_free(cfg);
}
END_TEST

START_TEST(test_good_remote_write)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    ck_assert_uint_eq(cfg->remote_write_count, 1);
    const remote_write_config_t *rw = &cfg->remote_writes[0];
    ck_assert_str_eq(rw->url, "http://localhost:8428/api/v1/write");
    ck_assert_pstr_eq(rw->name, "vm");
    ck_assert_int_eq(rw->remote_timeout_ms, 10 * 1000);
    ck_assert_uint_eq(rw->headers.count, 1);
    ck_assert_pstr_eq(label_list_get(&rw->headers, "X-Scope-OrgID"), "t1");

    ck_assert_uint_eq(rw->queue.capacity, 20000);
    ck_assert_uint_eq(rw->queue.max_shards, 10);
    ck_assert_uint_eq(rw->queue.max_samples_per_send, 5000);
    ck_assert_int_eq(rw->queue.batch_send_deadline_ms, 2 * 1000);
    /* Not in the file: defaults. */
    ck_assert_uint_eq(rw->queue.min_shards, 1);
    ck_assert_int_eq(rw->queue.min_backoff_ms, 30);
    ck_assert_int_eq(rw->queue.max_backoff_ms, 5 * 1000);
    ck_assert(!rw->queue.retry_on_http_429); /* Prometheus: off by default */
    config_free(cfg);
}
END_TEST

START_TEST(test_good_storage)
{
    cairn_config_t *cfg = load_fixture("good.yml");
    ck_assert_int_eq(cfg->storage.out_of_order_time_window_ms, 30 * 60 * 1000);
    config_free(cfg);
}
END_TEST

/* --- defaults -------------------------------------------------------------------------------- */

START_TEST(test_empty_file)
{
    cairn_config_t *cfg = load_fixture("empty.yml");
    assert_all_defaults(cfg);
    config_free(cfg);
}
END_TEST

START_TEST(test_empty_global)
{
    cairn_config_t *cfg = load_fixture("global_empty.yml");
    assert_all_defaults(cfg);
    config_free(cfg);
}
END_TEST

START_TEST(test_empty_string)
{
    cairn_config_t *cfg = load_string("");
    assert_all_defaults(cfg);
    config_free(cfg);

    cfg = load_string("# only a comment\n");
    assert_all_defaults(cfg);
    config_free(cfg);
}
END_TEST

START_TEST(test_remote_write_defaults)
{
    cairn_config_t *cfg = load_string("remote_write:\n"
                                      "  - url: https://example.org/write\n");
    ck_assert_uint_eq(cfg->remote_write_count, 1);
    const remote_write_config_t *rw = &cfg->remote_writes[0];
    ck_assert_str_eq(rw->url, "https://example.org/write");
    ck_assert_int_eq(rw->remote_timeout_ms, 30 * 1000);
    ck_assert_uint_eq(rw->headers.count, 0);
    ck_assert_uint_eq(rw->queue.capacity, 10000);
    ck_assert_uint_eq(rw->queue.max_shards, 50);
    ck_assert_uint_eq(rw->queue.min_shards, 1);
    ck_assert_uint_eq(rw->queue.max_samples_per_send, 2000);
    ck_assert_int_eq(rw->queue.batch_send_deadline_ms, 5 * 1000);
    ck_assert_int_eq(rw->queue.min_backoff_ms, 30);
    ck_assert_int_eq(rw->queue.max_backoff_ms, 5 * 1000);
    ck_assert(!rw->queue.retry_on_http_429); /* Prometheus: off by default */
    config_free(cfg);
}
END_TEST

START_TEST(test_file_sd_default_refresh)
{
    cairn_config_t *cfg = load_string("scrape_configs:\n"
                                      "  - job_name: f\n"
                                      "    file_sd_configs:\n"
                                      "      - files: [a.yml, b/*.json]\n");
    const scrape_config_t *sc = find_job(cfg, "f");
    ck_assert_uint_eq(sc->static_config_count, 0);
    ck_assert_uint_eq(sc->file_sd_config_count, 1);
    ck_assert_uint_eq(sc->file_sd_configs[0].file_count, 2);
    ck_assert_str_eq(sc->file_sd_configs[0].files[0], "a.yml");
    ck_assert_str_eq(sc->file_sd_configs[0].files[1], "b/*.json");
    ck_assert_int_eq(sc->file_sd_configs[0].refresh_interval_ms, 5 * 60 * 1000);
    config_free(cfg);
}
END_TEST

/* Prometheus: without a global timeout, the default 10s is capped at the global interval. */
START_TEST(test_global_timeout_capped_at_interval)
{
    cairn_config_t *cfg = load_string("global:\n"
                                      "  scrape_interval: 5s\n");
    ck_assert_int_eq(cfg->global.scrape_interval_ms, 5 * 1000);
    ck_assert_int_eq(cfg->global.scrape_timeout_ms, 5 * 1000);
    ck_assert_int_eq(cfg->evaluation_interval_ms, 60 * 1000);
    config_free(cfg);
}
END_TEST

/* Prometheus: a job without a timeout takes the global one, capped at the job's interval. */
START_TEST(test_job_timeout_capped_at_interval)
{
    cairn_config_t *cfg = load_string("scrape_configs:\n"
                                      "  - job_name: fast\n"
                                      "    scrape_interval: 2s\n"
                                      "  - job_name: equal\n"
                                      "    scrape_interval: 10s\n"
                                      "    scrape_timeout: 10s\n");
    const scrape_config_t *sc = find_job(cfg, "fast");
    ck_assert_int_eq(sc->scrape_interval_ms, 2 * 1000);
    ck_assert_int_eq(sc->scrape_timeout_ms, 2 * 1000);
    sc = find_job(cfg, "equal");
    ck_assert_int_eq(sc->scrape_interval_ms, 10 * 1000);
    ck_assert_int_eq(sc->scrape_timeout_ms, 10 * 1000);
    config_free(cfg);
}
END_TEST

/* Limits set in global: apply to jobs that do not set their own. */
START_TEST(test_global_limits_inherited)
{
    cairn_config_t *cfg = load_string("global:\n"
                                      "  sample_limit: 100\n"
                                      "  body_size_limit: 10MB\n"
                                      "  label_limit: 30\n"
                                      "scrape_configs:\n"
                                      "  - job_name: a\n"
                                      "  - job_name: b\n"
                                      "    sample_limit: 5\n"
                                      "    body_size_limit: 1KB\n");
    ck_assert_uint_eq(cfg->global.sample_limit, 100);
    ck_assert_uint_eq(cfg->global.body_size_limit, 10ULL << 20);
    ck_assert_uint_eq(cfg->global.label_limit, 30);
    const scrape_config_t *sc = find_job(cfg, "a");
    ck_assert_uint_eq(sc->sample_limit, 100);
    ck_assert_uint_eq(sc->body_size_limit, 10ULL << 20);
    ck_assert_uint_eq(sc->label_limit, 30);
    sc = find_job(cfg, "b");
    ck_assert_uint_eq(sc->sample_limit, 5);
    ck_assert_uint_eq(sc->body_size_limit, 1024);
    ck_assert_uint_eq(sc->label_limit, 30);
    config_free(cfg);
}
END_TEST

/* len bounds the input: bytes after it are not parsed. */
START_TEST(test_string_honours_length)
{
    static const char yaml[] = "global:\n  scrape_interval: 20s\n}}} not yaml: [\n";
    const char *end = strstr(yaml, "}}}");
    cairn_error_t err;
    memset(&err, 0, sizeof err);
    cairn_config_t *cfg = config_load_string(yaml, (size_t)(end - yaml), "inline", &err);
    ck_assert_msg(cfg != NULL, "loading failed: %s", err.message);
    ck_assert_int_eq(cfg->global.scrape_interval_ms, 20 * 1000);
    ck_assert_str_eq(cfg->source, "inline");
    config_free(cfg);
}
END_TEST

/* --- warnings for keys Cairn does not implement ---------------------------------------------- */

START_TEST(test_unimplemented_keys_warn)
{
    cairn_config_t *cfg = load_fixture("warn_unimplemented.yml");
    ck_assert_uint_ge(cfg->warning_count, 1);
    ck_assert_ptr_nonnull(cfg->warnings);
    ck_assert_msg(has_warning_about(cfg, "rule_files"), "no warning names rule_files");
    ck_assert_msg(has_warning_about(cfg, "alerting"), "no warning names alerting");
    /* The rest of the file is still loaded. */
    ck_assert_int_eq(cfg->global.scrape_interval_ms, 20 * 1000);
    ck_assert_uint_eq(cfg->scrape_config_count, 1);
    ck_assert_str_eq(cfg->scrape_configs[0].job_name, "self");
    config_free(cfg);
}
END_TEST

START_TEST(test_unimplemented_key_warns_inline)
{
    cairn_config_t *cfg = load_string("rule_files: []\n");
    ck_assert_uint_ge(cfg->warning_count, 1);
    ck_assert_msg(has_warning_about(cfg, "rule_files"), "no warning names rule_files");
    config_free(cfg);

    cfg = load_string("alerting: {}\n");
    ck_assert_uint_ge(cfg->warning_count, 1);
    ck_assert_msg(has_warning_about(cfg, "alerting"), "no warning names alerting");
    config_free(cfg);
}
END_TEST

/* --- bad files ------------------------------------------------------------------------------- */

START_TEST(test_unknown_top_level_key)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_unknown_top_key.yml", &err);
    assert_position(err.message, path, 3, 1);
    assert_contains(err.message, "field \"scrape_config\" not found");
}
END_TEST

START_TEST(test_unknown_scrape_config_key)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_unknown_scrape_key.yml", &err);
    assert_position(err.message, path, 7, 5);
    assert_contains(err.message, "field \"scrape_intervall\" not found");
}
END_TEST

START_TEST(test_bad_duration_global)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_duration_global.yml", &err);
    assert_position(err.message, path, 3, 20);
    assert_contains(err.message, "scrape_interval");
    assert_contains(err.message, "1x");
}
END_TEST

START_TEST(test_bad_duration_job)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_duration_job.yml", &err);
    assert_position(err.message, path, 3, 22);
    assert_contains(err.message, "scrape_interval");
    assert_contains(err.message, "1x");
}
END_TEST

START_TEST(test_timeout_greater_than_interval)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_timeout_gt_interval.yml", &err);
    long line = 0, col = 0;
    ck_assert_msg(message_position(err.message, path, &line, &col), "no position: %s", err.message);
    /* The job (line 2) or its scrape_interval/scrape_timeout (lines 3-4). */
    ck_assert_msg(line >= 2 && line <= 4, "line %ld: %s", line, err.message);
    assert_contains(err.message, "scrape timeout greater than scrape interval");
    assert_contains(err.message, "slow");
}
END_TEST

START_TEST(test_global_timeout_greater_than_interval)
{
    cairn_error_t err;
    load_string_fails("global:\n"
                      "  scrape_interval: 5s\n"
                      "  scrape_timeout: 10s\n",
                      &err);
    assert_contains(err.message, "inline:");
    assert_contains(err.message, "scrape timeout greater than scrape interval");
}
END_TEST

START_TEST(test_duplicate_job_name)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_duplicate_job.yml", &err);
    assert_position_line(err.message, path, 5);
    assert_contains(err.message, "found multiple scrape configs with job name \"x\"");
}
END_TEST

START_TEST(test_missing_job_name)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_missing_job_name.yml", &err);
    assert_position_line(err.message, path, 2);
    assert_contains(err.message, "job_name");
}
END_TEST

START_TEST(test_scrape_configs_not_a_list)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_scrape_configs_mapping.yml", &err);
    assert_position_either(err.message, path, 3, 1, 4, 3);
    assert_contains(err.message, "scrape_configs");
}
END_TEST

START_TEST(test_bad_boolean)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_bool.yml", &err);
    assert_position_either(err.message, path, 3, 19, 3, 5);
    assert_contains(err.message, "honor_labels");
}
END_TEST

START_TEST(test_bad_external_label_name)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_external_label.yml", &err);
    assert_position(err.message, path, 4, 5);
    assert_contains(err.message, "0bad");
}
END_TEST

START_TEST(test_yaml_syntax_error)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_syntax.yml", &err);
    long line = 0, col = 0;
    ck_assert_msg(message_position(err.message, path, &line, &col),
                  "message \"%s\" has no \"%s:<line>:<col>:\"", err.message, path);
    /* libyaml notices the missing ']' on the last line or at the end of the stream. */
    ck_assert_msg(line >= 4 && line <= 5, "line %ld: %s", line, err.message);
}
END_TEST

START_TEST(test_remote_write_without_url)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_remote_write_no_url.yml", &err);
    assert_position_line(err.message, path, 2);
    assert_contains(err.message, "url");
}
END_TEST

START_TEST(test_bad_scheme)
{
    cairn_error_t err;
    const char *path = load_fixture_fails("bad_scheme.yml", &err);
    assert_position_either(err.message, path, 3, 13, 3, 5);
    assert_contains(err.message, "scheme");
    assert_contains(err.message, "ftp");
}
END_TEST

START_TEST(test_remote_write_bad_url)
{
    cairn_error_t err;
    load_string_fails("remote_write:\n"
                      "  - url: ftp://example.org/write\n",
                      &err);
    assert_contains(err.message, "inline:2:");
    assert_contains(err.message, "url");
}
END_TEST

START_TEST(test_remote_write_duplicate_name)
{
    cairn_error_t err;
    load_string_fails("remote_write:\n"
                      "  - url: http://a/write\n"
                      "    name: vm\n"
                      "  - url: http://b/write\n"
                      "    name: vm\n",
                      &err);
    assert_contains(err.message, "inline:");
    assert_contains(err.message, "\"vm\"");
}
END_TEST

START_TEST(test_unknown_remote_write_key)
{
    cairn_error_t err;
    load_string_fails("remote_write:\n"
                      "  - url: http://a/write\n"
                      "    queue_config:\n"
                      "      capacityy: 10\n",
                      &err);
    assert_contains(err.message, "inline:4:7:");
    assert_contains(err.message, "field \"capacityy\" not found");
}
END_TEST

START_TEST(test_bad_integer)
{
    cairn_error_t err;
    load_string_fails("scrape_configs:\n"
                      "  - job_name: x\n"
                      "    sample_limit: lots\n",
                      &err);
    assert_contains(err.message, "inline:3:");
    assert_contains(err.message, "sample_limit");
}
END_TEST

/* The position is that of the offending list item, not of the list. */
START_TEST(test_bad_static_target_position)
{
    cairn_error_t err;
    load_string_fails("scrape_configs:\n"
                      "  - job_name: x\n"
                      "    static_configs:\n"
                      "      - targets:\n"
                      "          - a:1\n"
                      "          - b:2\n"
                      "          - http://c:3\n",
                      &err);
    assert_position(err.message, "inline", 7, 13);
    assert_contains(err.message, "http://c:3");
}
END_TEST

START_TEST(test_bad_static_label_name)
{
    cairn_error_t err;
    load_string_fails("scrape_configs:\n"
                      "  - job_name: x\n"
                      "    static_configs:\n"
                      "      - targets: [\"a:9100\"]\n"
                      "        labels:\n"
                      "          0bad: x\n",
                      &err);
    assert_position(err.message, "inline", 6, 11);
    assert_contains(err.message, "0bad");
}
END_TEST

/* Prometheus accepts only *.json, *.yml and *.yaml, with a glob in the last element only. */
START_TEST(test_file_sd_bad_pattern)
{
    cairn_error_t err;
    load_string_fails("scrape_configs:\n"
                      "  - job_name: x\n"
                      "    file_sd_configs:\n"
                      "      - files:\n"
                      "          - a.json\n"
                      "          - targets/*\n",
                      &err);
    assert_contains(err.message, "inline:6:");
    assert_contains(err.message, "targets/*");
}
END_TEST

/* Prometheus refuses headers the sender sets itself (config.go reservedHeaders). */
START_TEST(test_remote_write_reserved_header)
{
    cairn_error_t err;
    load_string_fails("remote_write:\n"
                      "  - url: http://a/write\n"
                      "    headers:\n"
                      "      Content-Type: text/plain\n",
                      &err);
    assert_contains(err.message, "inline:4:");
    assert_contains(err.message, "Content-Type");
}
END_TEST

START_TEST(test_duplicate_key)
{
    cairn_error_t err;
    load_string_fails("global:\n"
                      "  scrape_interval: 15s\n"
                      "  scrape_interval: 20s\n",
                      &err);
    assert_position(err.message, "inline", 3, 3);
    assert_contains(err.message, "scrape_interval");
}
END_TEST

START_TEST(test_top_level_not_a_mapping)
{
    cairn_error_t err;
    load_string_fails("- a\n- b\n", &err);
    assert_position(err.message, "inline", 1, 1);
    load_string_fails("just a scalar\n", &err);
    assert_position(err.message, "inline", 1, 1);
}
END_TEST

START_TEST(test_null_scrape_config)
{
    cairn_error_t err;
    load_string_fails("scrape_configs:\n"
                      "  -\n",
                      &err);
    assert_contains(err.message, "inline:2:");
    load_string_fails("remote_write: [null]\n", &err);
    assert_contains(err.message, "inline:1:");
}
END_TEST

START_TEST(test_negative_limit)
{
    cairn_error_t err;
    load_string_fails("scrape_configs:\n"
                      "  - job_name: x\n"
                      "    sample_limit: -1\n",
                      &err);
    assert_position(err.message, "inline", 3, 19);
    assert_contains(err.message, "sample_limit");
}
END_TEST

/* Anchors and aliases work, as with Prometheus's YAML decoder. */
START_TEST(test_yaml_alias)
{
    cairn_config_t *cfg = load_string("scrape_configs:\n"
                                      "  - job_name: a\n"
                                      "    static_configs: &targets\n"
                                      "      - targets: [\"h1:1\", \"h2:2\"]\n"
                                      "  - job_name: b\n"
                                      "    static_configs: *targets\n");
    ck_assert_uint_eq(cfg->scrape_config_count, 2);
    const scrape_config_t *sc = find_job(cfg, "b");
    ck_assert_uint_eq(sc->static_config_count, 1);
    ck_assert_uint_eq(sc->static_configs[0].target_count, 2);
    ck_assert_str_eq(sc->static_configs[0].targets[1], "h2:2");
    config_free(cfg);
}
END_TEST

START_TEST(test_inline_source_in_messages)
{
    cairn_error_t err;
    load_string_fails("scrape_intervall: 1m\n", &err);
    assert_position(err.message, "inline", 1, 1);
    ck_assert_msg(strncmp(err.message, "inline:", 7) == 0, "message: %s", err.message);
    assert_contains(err.message, "field \"scrape_intervall\" not found");
}
END_TEST

START_TEST(test_missing_file)
{
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s", fixture_path("does-not-exist.yml"));
    cairn_error_t err;
    memset(&err, 0, sizeof err);
    cairn_config_t *cfg = config_load_file(path, &err);
    ck_assert_ptr_null(cfg);
    assert_contains(err.message, path);
}
END_TEST

/* --- the embedded default -------------------------------------------------------------------- */

START_TEST(test_default_template)
{
    ck_assert(CONFIG_DEFAULT_TEMPLATE[0] != '\0');
    ck_assert_ptr_nonnull(strstr(CONFIG_DEFAULT_TEMPLATE, "%s"));
}
END_TEST

START_TEST(test_load_default)
{
    cairn_error_t err;
    memset(&err, 0, sizeof err);
    cairn_config_t *cfg = config_load_default("127.0.0.1:9999", &err);
    ck_assert_msg(cfg != NULL, "config_load_default failed: %s", err.message);
    ck_assert_pstr_eq(cfg->source, "<default>");
    ck_assert_uint_eq(cfg->scrape_config_count, 1);
    const scrape_config_t *sc = &cfg->scrape_configs[0];
    ck_assert_int_eq(sc->scrape_interval_ms, 15 * 1000);
    ck_assert_uint_ge(sc->static_config_count, 1);
    ck_assert_uint_eq(sc->static_configs[0].target_count, 1);
    ck_assert_str_eq(sc->static_configs[0].targets[0], "127.0.0.1:9999");
    ck_assert_uint_eq(cfg->warning_count, 0);
    config_free(cfg);
}
END_TEST

/* --- robustness ------------------------------------------------------------------------------ */

START_TEST(test_load_many_times)
{
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s", fixture_path("good.yml"));
    for (int i = 0; i < 1000; i++) {
        cairn_error_t err;
        cairn_config_t *cfg = config_load_file(path, &err);
        ck_assert_msg(cfg != NULL, "iteration %d: %s", i, err.message);
        ck_assert_uint_eq(cfg->scrape_config_count, 2);
        config_free(cfg);
    }
}
END_TEST

START_TEST(test_failures_many_times)
{
    static const char *const bad[] = {
        "bad_unknown_top_key.yml",
        "bad_unknown_scrape_key.yml",
        "bad_duration_global.yml",
        "bad_duration_job.yml",
        "bad_timeout_gt_interval.yml",
        "bad_duplicate_job.yml",
        "bad_missing_job_name.yml",
        "bad_scrape_configs_mapping.yml",
        "bad_bool.yml",
        "bad_external_label.yml",
        "bad_syntax.yml",
        "bad_remote_write_no_url.yml",
        "bad_scheme.yml",
    };
    for (int i = 0; i < 100; i++) {
        for (size_t j = 0; j < CAIRN_ARRAY_LEN(bad); j++) {
            cairn_error_t err;
            (void)load_fixture_fails(bad[j], &err);
        }
    }
}
END_TEST

START_TEST(test_free_null)
{
    config_free(NULL);
}
END_TEST

static Suite *server_config_suite(void)
{
    Suite *s = suite_create("server_config");

    TCase *tc = tcase_create("good");
    tcase_add_test(tc, test_good_source_and_order);
    tcase_add_test(tc, test_good_global);
    tcase_add_test(tc, test_good_job_inherits_defaults);
    tcase_add_test(tc, test_good_job_overrides);
    tcase_add_test(tc, test_good_job_service_discovery);
    tcase_add_test(tc, test_good_remote_write);
    tcase_add_test(tc, test_good_storage);
    suite_add_tcase(s, tc);

    tc = tcase_create("defaults");
    tcase_add_test(tc, test_empty_file);
    tcase_add_test(tc, test_empty_global);
    tcase_add_test(tc, test_empty_string);
    tcase_add_test(tc, test_remote_write_defaults);
    tcase_add_test(tc, test_file_sd_default_refresh);
    tcase_add_test(tc, test_global_timeout_capped_at_interval);
    tcase_add_test(tc, test_job_timeout_capped_at_interval);
    tcase_add_test(tc, test_global_limits_inherited);
    tcase_add_test(tc, test_string_honours_length);
    tcase_add_test(tc, test_yaml_alias);
    suite_add_tcase(s, tc);

    tc = tcase_create("warnings");
    tcase_add_test(tc, test_unimplemented_keys_warn);
    tcase_add_test(tc, test_unimplemented_key_warns_inline);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_unknown_top_level_key);
    tcase_add_test(tc, test_unknown_scrape_config_key);
    tcase_add_test(tc, test_bad_duration_global);
    tcase_add_test(tc, test_bad_duration_job);
    tcase_add_test(tc, test_timeout_greater_than_interval);
    tcase_add_test(tc, test_global_timeout_greater_than_interval);
    tcase_add_test(tc, test_duplicate_job_name);
    tcase_add_test(tc, test_missing_job_name);
    tcase_add_test(tc, test_scrape_configs_not_a_list);
    tcase_add_test(tc, test_bad_boolean);
    tcase_add_test(tc, test_bad_external_label_name);
    tcase_add_test(tc, test_yaml_syntax_error);
    tcase_add_test(tc, test_remote_write_without_url);
    tcase_add_test(tc, test_bad_scheme);
    tcase_add_test(tc, test_remote_write_bad_url);
    tcase_add_test(tc, test_remote_write_duplicate_name);
    tcase_add_test(tc, test_unknown_remote_write_key);
    tcase_add_test(tc, test_bad_integer);
    tcase_add_test(tc, test_bad_static_target_position);
    tcase_add_test(tc, test_bad_static_label_name);
    tcase_add_test(tc, test_file_sd_bad_pattern);
    tcase_add_test(tc, test_remote_write_reserved_header);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_top_level_not_a_mapping);
    tcase_add_test(tc, test_null_scrape_config);
    tcase_add_test(tc, test_negative_limit);
    tcase_add_test(tc, test_inline_source_in_messages);
    tcase_add_test(tc, test_missing_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("default_config");
    tcase_add_test(tc, test_default_template);
    tcase_add_test(tc, test_load_default);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_load_many_times);
    tcase_add_test(tc, test_failures_many_times);
    tcase_add_test(tc, test_free_null);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(server_config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
