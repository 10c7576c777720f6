/*
 * scrape/scrape_config.c: defaults and teardown of the typed scrape configuration.
 */
#include <string.h>

#include "scrape/scrape.h"

void scrape_global_defaults_init(scrape_global_defaults_t *g)
{
    memset(g, 0, sizeof(*g));
    g->scrape_interval_ms = SCRAPE_DEFAULT_INTERVAL_MS;
    g->scrape_timeout_ms = SCRAPE_DEFAULT_TIMEOUT_MS;
}

void scrape_config_init(scrape_config_t *sc, const scrape_global_defaults_t *g)
{
    memset(sc, 0, sizeof(*sc));
    sc->scrape_interval_ms = g->scrape_interval_ms;
    sc->scrape_timeout_ms = g->scrape_timeout_ms;
    sc->metrics_path = cairn_strdup("/metrics");
    sc->scheme = cairn_strdup("http");
    sc->honor_timestamps = true;
    sc->enable_compression = true;
    sc->body_size_limit = g->body_size_limit;
    sc->sample_limit = g->sample_limit;
    sc->label_limit = g->label_limit;
    sc->label_name_length_limit = g->label_name_length_limit;
    sc->label_value_length_limit = g->label_value_length_limit;
    sc->target_limit = g->target_limit;
}

static void free_strings(char **strings, size_t count)
{
    for (size_t i = 0; i < count; i++)
        cairn_free(strings[i]);
    cairn_free(strings);
}

void scrape_config_free(scrape_config_t *sc)
{
    cairn_free(sc->job_name);
    cairn_free(sc->metrics_path);
    cairn_free(sc->scheme);
    for (size_t i = 0; i < sc->param_count; i++) {
        cairn_free(sc->params[i].name);
        free_strings(sc->params[i].values, sc->params[i].value_count);
    }
    cairn_free(sc->params);
    for (size_t i = 0; i < sc->static_config_count; i++) {
        free_strings(sc->static_configs[i].targets, sc->static_configs[i].target_count);
        label_list_free(&sc->static_configs[i].labels);
    }
    cairn_free(sc->static_configs);
    for (size_t i = 0; i < sc->file_sd_config_count; i++)
        free_strings(sc->file_sd_configs[i].files, sc->file_sd_configs[i].file_count);
    cairn_free(sc->file_sd_configs);
    memset(sc, 0, sizeof(*sc));
}
