/*
 * server/config_default.c: the configuration Cairn runs with when --config.file is not given.
 * It scrapes Cairn's own /metrics; "%s" becomes the address the daemon listens on.
 */
#include "server/server.h"

const char CONFIG_DEFAULT_TEMPLATE[] =
    "# Cairn's embedded default configuration: Cairn scrapes itself.\n"
    "global:\n"
    "  scrape_interval: 15s\n"
    "  scrape_timeout: 10s\n"
    "  evaluation_interval: 15s\n"
    "scrape_configs:\n"
    "  - job_name: cairn\n"
    "    static_configs:\n"
    "      - targets: [\"%s\"]\n";
