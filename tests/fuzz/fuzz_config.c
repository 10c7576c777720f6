/*
 * tests/fuzz/fuzz_config.c: libFuzzer target for the YAML configuration loader.
 *
 * Any byte string must either load or fail with a message that starts with the source name and
 * a position; never crash, leak or read out of bounds (the fuzz build runs under ASan/UBSan).
 * Seed corpus: tests/unit/data/config/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cairn_error_t err = {{0}};
    cairn_config_t *cfg = config_load_string((const char *)data, size, "fuzz", &err);
    if (cfg) {
        config_free(cfg);
    } else if (strncmp(err.message, "fuzz", 4) != 0) {
        abort(); /* every error must name its source */
    }
    return 0;
}
