/*
 * tests/unit/tsdb_test_util.h: a TSDB in a fresh directory for unit tests (check_tsdb_head,
 * check_tsdb_checkpoint). The test program defines base_dir (made in its main) before
 * including this header. tdb_init gives options with a head window far beyond any test's data
 * and no snapshot on close (restarts replay the WAL; the snapshot tests turn it on); a test
 * changes t->opts between tdb_init and tdb_open as it needs.
 */
#ifndef CAIRN_TESTS_UNIT_TSDB_TEST_UTIL_H
#define CAIRN_TESTS_UNIT_TSDB_TEST_UTIL_H

#include <check.h>
#include <stdlib.h>

#include "common/common.h"
#include "tests/test_util.h"
#include "tsdb/tsdb.h"

typedef struct testdb {
    char dir[128];
    metric_registry_t *reg;
    tsdb_t *db;
    tsdb_open_options_t opts;
} testdb_t;

static inline void tdb_init(testdb_t *t)
{
    snprintf(t->dir, sizeof(t->dir), "%s/db-XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    tsdb_open_options_init(&t->opts, t->dir);
    t->opts.head_window_ms = (int64_t)100000 * 3600 * 1000;
    t->opts.snapshot_on_close = false;
    t->reg = NULL;
    t->db = NULL;
}

static inline void tdb_open(testdb_t *t)
{
    cairn_error_t err = {{0}};
    t->reg = metric_registry_new();
    t->opts.path = t->dir;
    t->opts.registry = t->reg;
    t->db = tsdb_open(&t->opts, &err);
    ck_assert_msg(t->db != NULL, "tsdb_open(%s) failed: %s", t->dir, err.message);
}

static inline void tdb_close(testdb_t *t)
{
    ck_assert_int_eq(tsdb_close(t->db), 0);
    t->db = NULL;
    metric_registry_free(t->reg);
    t->reg = NULL;
}

static inline void tdb_reopen(testdb_t *t)
{
    tdb_close(t);
    tdb_open(t);
}

static inline void tdb_destroy(testdb_t *t)
{
    if (t->db)
        tdb_close(t);
    rm_rf(t->dir);
}

#endif /* CAIRN_TESTS_UNIT_TSDB_TEST_UTIL_H */
