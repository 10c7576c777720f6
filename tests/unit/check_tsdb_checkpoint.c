/*
 * tests/unit/check_tsdb_checkpoint.c: WAL checkpoints (tsdb/checkpoint.c) through the public
 * API: a checkpoint replaces the segments it covers, a restart afterwards rebuilds exactly the
 * head it had, truncated series stay out, leftovers of an interrupted checkpoint are ignored,
 * and samples of a series truncated while a batch was appending to it survive checkpoints.
 *
 * Databases use 64 KiB WAL segments without compression so a few hundred thousand samples
 * fill dozens of segments; tsdb_truncate asks for the checkpoint (it writes one when the
 * segments before the current one hold at least a segment's worth and as much as the last
 * checkpoint).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "tsdb/tsdb.h"

#define HOUR_MS ((int64_t)3600 * 1000)
#define T0      ((int64_t)236111 * 2 * HOUR_MS) /* 2h-aligned, in 2023 */
#define STEP_MS 15000
#define SEGMENT (64 * 1024)

static char base_dir[64];

#include "tests/unit/tsdb_test_util.h"

/* tdb_init with small, uncompressed WAL segments, so checkpoints come quickly. */
static void tdb_init_small(testdb_t *t)
{
    tdb_init(t);
    t->opts.wal_segment_size = SEGMENT;
    t->opts.wal_compress = false;
}

/* Counts the segment files and the checkpoint directories in wal/; stores the newest
 * checkpoint's number in *newest (or -1). */
static void wal_listing(const testdb_t *t, int *segments, int *checkpoints, long *newest)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/wal", t->dir);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    *segments = *checkpoints = 0;
    *newest = -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n == 8 && strspn(e->d_name, "0123456789") == 8)
            (*segments)++;
        else if (strncmp(e->d_name, "checkpoint.", 11) == 0) {
            (*checkpoints)++;
            long seg = strtol(e->d_name + 11, NULL, 10);
            if (seg > *newest)
                *newest = seg;
        }
    }
    closedir(d);
}

/* ---- the head as queried -------------------------------------------------------------------- */

typedef struct dump {
    char **names; /* one string per series: its labels, then its samples */
    size_t count;
} dump_t;

/* Renders every series matching {__name__=~name_re} with all its samples, in select order. */
static dump_t dump_head(tsdb_t *db, const char *name_re)
{
    cairn_error_t err = {{0}};
    tsdb_matcher_t *m = tsdb_matcher_new(TSDB_MATCH_REGEX, "__name__", name_re, &err);
    ck_assert_ptr_nonnull(m);
    tsdb_querier_t *q = tsdb_querier_new(db, INT64_MIN, INT64_MAX);
    tsdb_series_set_t *set = tsdb_querier_select(q, (const tsdb_matcher_t *const *)&m, 1);
    dump_t d = {0};
    d.names = cairn_calloc(tsdb_series_set_count(set) + 1, sizeof(char *));
    while (tsdb_series_set_next(set)) {
        buf_t b = {0};
        const tsdb_label_t *ls;
        size_t n = tsdb_series_set_labels(set, &ls);
        for (size_t i = 0; i < n; i++)
            buf_printf(&b, "%s=%s,", ls[i].name, ls[i].value);
        int64_t t;
        double v;
        while (tsdb_series_set_sample(set, &t, &v)) {
            uint64_t bits;
            memcpy(&bits, &v, sizeof(bits));
            buf_printf(&b, " %lld:%016llx", (long long)t, (unsigned long long)bits);
        }
        d.names[d.count++] = b.data ? b.data : cairn_strdup("");
    }
    tsdb_series_set_free(set);
    tsdb_querier_free(q);
    tsdb_matcher_free(m);
    return d;
}

static void dump_free(dump_t *d)
{
    for (size_t i = 0; i < d->count; i++)
        cairn_free(d->names[i]);
    cairn_free(d->names);
}

static void assert_same_head(const dump_t *before, const dump_t *after)
{
    ck_assert_uint_eq(before->count, after->count);
    for (size_t i = 0; i < before->count; i++)
        ck_assert_msg(strcmp(before->names[i], after->names[i]) == 0,
                      "series %zu differs after restart:\nbefore: %.300s\nafter:  %.300s", i,
                      before->names[i], after->names[i]);
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Appends steps [from, to) of series [first, first + count) named name, one batch per step,
 * random values (so records do not compress into nothing). */
static void append_steps(tsdb_t *db, const char *name, int first, int count, int from, int to,
                         uint64_t *rng)
{
    tsdb_appender_t *app = tsdb_appender_new(db);
    char idx[16];
    for (int step = from; step < to; step++) {
        for (int s = first; s < first + count; s++) {
            snprintf(idx, sizeof(idx), "%d", s);
            tsdb_label_t labels[3] = {{"__name__", name}, {"job", "checkpoint"}, {"idx", idx}};
            double v = (double)(rng_next(rng) >> 11) / 1024.0;
            ck_assert_int_eq(tsdb_append(app, 0, labels, 3, T0 + (int64_t)step * STEP_MS, v, NULL),
                             TSDB_REJECT_NONE);
        }
        tsdb_commit_result_t res;
        ck_assert_int_eq(tsdb_appender_commit(app, &res), 0);
        ck_assert_uint_eq(res.appended, (uint64_t)count);
    }
    tsdb_appender_free(app);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_checkpoint_replaces_segments)
{
    testdb_t t;
    tdb_init_small(&t);
    tdb_open(&t);
    uint64_t rng = 42;
    int checkpoints_seen = 0;
    for (int round = 0; round < 10; round++) {
        append_steps(t.db, "cp_metric", 0, 300, round * 200, (round + 1) * 200, &rng);
        ck_assert_int_eq(tsdb_truncate(t.db, INT64_MIN), 0);
        int segments, checkpoints;
        long newest;
        wal_listing(&t, &segments, &checkpoints, &newest);
        ck_assert_int_le(checkpoints, 1); /* older ones are deleted */
        checkpoints_seen += checkpoints;
    }
    int segments, checkpoints;
    long newest;
    wal_listing(&t, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1);
    /* 600k samples of ~12 bytes fill more than a hundred 64 KiB segments: only those after
     * the checkpoint are left. */
    ck_assert_int_lt(segments, 40);
    ck_assert_int_gt(checkpoints_seen, 3);

    dump_t before = dump_head(t.db, "cp_.*");
    ck_assert_uint_eq(before.count, 300);
    tdb_reopen(&t);
    tsdb_stats_t st;
    tsdb_stats(t.db, &st);
    /* Replay read the checkpoint's unsealed samples and the newer segments, not 600k. */
    ck_assert_uint_lt(st.replayed_samples, 300000);
    dump_t after = dump_head(t.db, "cp_.*");
    assert_same_head(&before, &after);
    dump_free(&after);

    /* Appending after the restart, checkpointing the restarted WAL, restarting again. */
    append_steps(t.db, "cp_metric", 0, 300, 2000, 2600, &rng);
    ck_assert_int_eq(tsdb_truncate(t.db, INT64_MIN), 0);
    dump_free(&before);
    before = dump_head(t.db, "cp_.*");
    tdb_reopen(&t);
    after = dump_head(t.db, "cp_.*");
    assert_same_head(&before, &after);
    wal_listing(&t, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1);
    dump_free(&before);
    dump_free(&after);
    tdb_destroy(&t);
}
END_TEST

START_TEST(test_checkpoint_drops_truncated_series)
{
    testdb_t t;
    tdb_init_small(&t);
    tdb_open(&t);
    uint64_t rng = 7;
    /* "gone" series stop after 1h; "kept" series go on for 8h. */
    append_steps(t.db, "cp_gone", 0, 100, 0, 240, &rng);
    append_steps(t.db, "cp_kept", 100, 100, 0, 1920, &rng);
    ck_assert_int_eq(tsdb_truncate(t.db, T0 + 4 * HOUR_MS), 0);
    /* More data so that the segments holding the truncation are checkpointed too. */
    append_steps(t.db, "cp_kept", 100, 100, 1920, 2400, &rng);
    ck_assert_int_eq(tsdb_truncate(t.db, T0 + 4 * HOUR_MS), 0);
    int segments, checkpoints;
    long newest;
    wal_listing(&t, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1);

    dump_t gone = dump_head(t.db, "cp_gone");
    ck_assert_uint_eq(gone.count, 0);
    dump_free(&gone);
    dump_t before = dump_head(t.db, "cp_.*");
    ck_assert_uint_eq(before.count, 100);
    tdb_reopen(&t);
    gone = dump_head(t.db, "cp_gone");
    ck_assert_uint_eq(gone.count, 0);
    dump_free(&gone);
    dump_t after = dump_head(t.db, "cp_.*");
    assert_same_head(&before, &after);
    tsdb_stats_t st;
    tsdb_stats(t.db, &st);
    ck_assert_uint_eq(st.series, 100);
    ck_assert_int_ge(st.min_time, T0 + 2 * HOUR_MS); /* nothing before the truncated chunks */
    dump_free(&before);
    dump_free(&after);
    tdb_destroy(&t);
}
END_TEST

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
}

START_TEST(test_checkpoint_leftovers_ignored)
{
    testdb_t t;
    tdb_init_small(&t);
    tdb_open(&t);
    uint64_t rng = 99;
    append_steps(t.db, "cp_metric", 0, 200, 0, 1000, &rng);
    ck_assert_int_eq(tsdb_truncate(t.db, INT64_MIN), 0);
    int segments, checkpoints;
    long newest;
    wal_listing(&t, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1);
    ck_assert_int_gt(newest, 0);
    dump_t before = dump_head(t.db, "cp_.*");
    tdb_close(&t);

    /* A crash during the next checkpoint leaves its temporary directory; a crash between the
     * rename and the deletions leaves an older checkpoint and a covered segment (here with
     * garbage, which must not be read). */
    char path[300];
    snprintf(path, sizeof(path), "%s/wal/checkpoint.%08ld.tmp", t.dir, newest + 5);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    snprintf(path, sizeof(path), "%s/wal/checkpoint.%08ld.tmp/00000000", t.dir, newest + 5);
    write_file(path, "half a checkpoint");
    snprintf(path, sizeof(path), "%s/wal/checkpoint.%08ld", t.dir, newest - 1);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    snprintf(path, sizeof(path), "%s/wal/checkpoint.%08ld/00000000", t.dir, newest - 1);
    write_file(path, "an older checkpoint");
    snprintf(path, sizeof(path), "%s/wal/%08ld", t.dir, newest);
    write_file(path, "a segment the checkpoint covers");

    tdb_open(&t);
    dump_t after = dump_head(t.db, "cp_.*");
    assert_same_head(&before, &after);
    wal_listing(&t, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1); /* the others were removed */
    dump_free(&before);
    dump_free(&after);
    tdb_destroy(&t);
}
END_TEST

/* A batch appends to a series that a concurrent truncation then removes (it had nothing
 * recent); the commit re-creates the series and logs the sample again under the new
 * reference, so checkpoints, which keep only live series, keep it. */
typedef struct truncate_arg {
    tsdb_t *db;
    int64_t min_time;
    int rc;
} truncate_arg_t;

static void *truncate_main(void *arg)
{
    truncate_arg_t *ta = arg;
    ta->rc = tsdb_truncate(ta->db, ta->min_time);
    return NULL;
}

START_TEST(test_checkpoint_keeps_sample_of_truncated_series)
{
    testdb_t t;
    tdb_init_small(&t);
    tdb_open(&t);
    uint64_t rng = 5;
    /* The lone series has one sample at T0; the others go on for 4h. */
    append_steps(t.db, "cp_lone", 0, 1, 0, 1, &rng);
    append_steps(t.db, "cp_metric", 1, 100, 0, 960, &rng);
    tsdb_stats_t st;
    tsdb_stats(t.db, &st);
    uint64_t series_before = st.series;

    /* The batch: one sample of the lone series at 4h, not committed yet (it holds the
     * appenders' guard, so the truncation below unlinks the series and then waits). */
    tsdb_appender_t *app = tsdb_appender_new(t.db);
    tsdb_label_t labels[3] = {{"__name__", "cp_lone"}, {"job", "checkpoint"}, {"idx", "0"}};
    int64_t t_new = T0 + 960 * STEP_MS;
    ck_assert_int_eq(tsdb_append(app, 0, labels, 3, t_new, 42.5, NULL), TSDB_REJECT_NONE);
    truncate_arg_t ta = {t.db, T0 + HOUR_MS, -1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, truncate_main, &ta), 0);
    for (int i = 0; i < 10000; i++) {
        tsdb_stats(t.db, &st);
        if (st.series < series_before)
            break;
        usleep(1000);
    }
    ck_assert_uint_eq(st.series, series_before - 1); /* the lone series is unlinked */
    tsdb_commit_result_t res;
    ck_assert_int_eq(tsdb_appender_commit(app, &res), 0);
    ck_assert_uint_eq(res.appended, 1);
    tsdb_appender_free(app);
    pthread_join(th, NULL);
    ck_assert_int_eq(ta.rc, 0);

    /* Enough new segments that the next checkpoint covers the batch's records. */
    append_steps(t.db, "cp_metric", 1, 100, 960, 1600, &rng);
    ck_assert_int_eq(tsdb_truncate(t.db, T0 + HOUR_MS), 0);
    int segments, checkpoints;
    long newest;
    wal_listing(&t, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1);

    tdb_reopen(&t);
    dump_t lone = dump_head(t.db, "cp_lone");
    ck_assert_uint_eq(lone.count, 1);
    char want[64];
    snprintf(want, sizeof(want), " %lld:%016llx", (long long)t_new, 0x4045400000000000ULL);
    ck_assert_msg(strstr(lone.names[0], want) != NULL, "got %s", lone.names[0]);
    dump_free(&lone);
    tdb_destroy(&t);
}
END_TEST

/* The same data written to a database that restarts through snapshots and to one that never
 * restarts: the same samples and the same chunk bytes (the restored appender state continues
 * the chunk exactly as the original would have). Restarts: snapshot, then one without a
 * snapshot (the checkpoint's Chunks records plus newer segments and sealed chunks), then a
 * checkpoint from the WAL that reads the snapshot's Chunks records, then snapshot again. */
START_TEST(test_snapshot_restart)
{
    testdb_t a, b;
    tdb_init_small(&a);
    tdb_init_small(&b);
    b.opts.snapshot_on_close = true;
    tdb_open(&a);
    tdb_open(&b);
    uint64_t rng_a = 11, rng_b = 11;
    append_steps(a.db, "cp_metric", 0, 300, 0, 500, &rng_a);
    append_steps(b.db, "cp_metric", 0, 300, 0, 500, &rng_b);
    tdb_reopen(&b);
    int segments, checkpoints;
    long newest;
    wal_listing(&b, &segments, &checkpoints, &newest);
    ck_assert_int_eq(checkpoints, 1);
    ck_assert_int_eq(segments, 1); /* only the one the reopened WAL writes */
    tsdb_stats_t st;
    tsdb_stats(b.db, &st);
    ck_assert_uint_eq(st.series, 300);
    ck_assert_uint_eq(st.chunks_open, 300);
    ck_assert_uint_lt(st.replayed_samples, 300 * 241); /* open chunks only */
    dump_t da = dump_head(a.db, "cp_.*"), db_ = dump_head(b.db, "cp_.*");
    assert_same_head(&da, &db_);
    dump_free(&da);
    dump_free(&db_);

    /* A few samples into the restored chunks, then a restart without a snapshot. */
    append_steps(a.db, "cp_metric", 0, 300, 500, 530, &rng_a);
    append_steps(b.db, "cp_metric", 0, 300, 500, 530, &rng_b);
    b.opts.snapshot_on_close = false;
    tdb_reopen(&b);
    /* Past the restored chunks' cut, with checkpoints from the WAL on the way. */
    for (int step = 530; step < 1500; step += 200) {
        append_steps(a.db, "cp_metric", 0, 300, step, step + 200, &rng_a);
        append_steps(b.db, "cp_metric", 0, 300, step, step + 200, &rng_b);
        ck_assert_int_eq(tsdb_truncate(b.db, INT64_MIN), 0);
    }
    tdb_reopen(&b);
    b.opts.snapshot_on_close = true;
    tdb_reopen(&b);
    da = dump_head(a.db, "cp_.*");
    db_ = dump_head(b.db, "cp_.*");
    assert_same_head(&da, &db_);
    ck_assert_uint_eq(tsdb_chunk_bytes(a.db), tsdb_chunk_bytes(b.db));
    dump_free(&da);
    dump_free(&db_);
    tdb_destroy(&a);
    tdb_destroy(&b);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------------
 */

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("tsdb_checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_checkpoint_replaces_segments);
    tcase_add_test(tc, test_checkpoint_drops_truncated_series);
    tcase_add_test(tc, test_checkpoint_leftovers_ignored);
    tcase_add_test(tc, test_checkpoint_keeps_sample_of_truncated_series);
    tcase_add_test(tc, test_snapshot_restart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_set_level(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
    snprintf(base_dir, sizeof(base_dir), "/tmp/cairn-check-checkpoint-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(checkpoint_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rm_rf(base_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
