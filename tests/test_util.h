/*
 * tests/test_util.h: helpers shared by Cairn's test programs (unit tests and the promqltest
 * runner): removing a test directory tree and a small deterministic random generator.
 * Header-only (static inline), so each test program links nothing extra.
 */
#ifndef CAIRN_TESTS_TEST_UTIL_H
#define CAIRN_TESTS_TEST_UTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int test_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes path and everything below it (errors ignored: tests clean up best-effort). */
static inline void rm_rf(const char *path)
{
    nftw(path, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* xorshift64*: a reproducible stream from a nonzero seed. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif /* CAIRN_TESTS_TEST_UTIL_H */
