/*
 * tests/fuzz/fuzz_parse.c: libFuzzer target for the value syntaxes: durations, byte sizes and
 * Go-style float formatting.
 *
 * Properties checked: a parsed duration or size formats back to a string that parses to the
 * same value; a float formatted with float_format_go parses back to the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[128];
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    cairn_error_t err;

    int64_t ms, ms2;
    if (duration_parse(s, &ms, &err) == 0) {
        char out[64];
        if (duration_parse(duration_format(ms, out, sizeof(out)), &ms2, &err) != 0 || ms != ms2)
            abort();
    }
    uint64_t bytes, bytes2;
    if (bytesize_parse(s, &bytes, &err) == 0) {
        char out[64];
        if (bytesize_parse(bytesize_format(bytes, out, sizeof(out)), &bytes2, &err) != 0 ||
            bytes != bytes2)
            abort();
    }
    if (size >= sizeof(double)) {
        double v;
        memcpy(&v, data, sizeof(v));
        if (isfinite(v)) {
            char out[400];
            for (const char *f = "efg"; *f; f++) {
                float_format_go(v, *f, out, sizeof(out));
                double back = strtod(out, NULL);
                if (memcmp(&back, &v, sizeof(v)) != 0)
                    abort();
            }
        }
    }
    return 0;
}
