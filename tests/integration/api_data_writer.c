/*
 * tests/integration/api_data_writer.c: loads samples into a TSDB directory for the HTTP API's
 * integration test (tests/integration/test_api.py), which then starts the daemon on it. The
 * daemon has no write endpoint yet; this goes through the same storage API the daemon uses.
 *
 *   api_data_writer DIR < samples
 *
 * One sample per line, fields separated by tabs:
 *   <timestamp ms> <value> <name>=<value> [<name>=<value>...]
 * The value is anything strtod reads ("1.5", "NaN", "+Inf", "-Inf") or "stale" for
 * Prometheus's stale marker. In label values, \t, \n and \\ stand for a tab, a newline and a
 * backslash. Lines are appended in order and committed in batches; a rejected sample is an
 * error. Exits 0 when everything was stored and the database closed cleanly, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsdb/tsdb.h"

#define MAX_LABELS 64
#define BATCH      1000

/* Prometheus's stale marker: a NaN with this exact bit pattern. */
static double stale_marker(void)
{
    uint64_t bits = 0x7ff0000000000002ULL;
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* Undoes the \t, \n and \\ escapes in place. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR < samples\n", argv[0]);
        return 2;
    }
    log_set_level(LOG_LEVEL_WARN);
    tsdb_open_options_t opts;
    tsdb_open_options_init(&opts, argv[1]);
    cairn_error_t err = {{0}};
    tsdb_t *db = tsdb_open(&opts, &err);
    if (!db) {
        fprintf(stderr, "open %s: %s\n", argv[1], err.message);
        return 1;
    }
    tsdb_appender_t *app = tsdb_appender_new(db);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0, pending = 0, stored = 0;
    int status = 0;
    while (status == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        if (!len)
            continue;
        char *save = NULL;
        char *ts = strtok_r(line, "\t", &save), *vs = strtok_r(NULL, "\t", &save);
        tsdb_label_t labels[MAX_LABELS];
        size_t n = 0;
        for (char *f; n < MAX_LABELS && (f = strtok_r(NULL, "\t", &save));) {
            char *eq = strchr(f, '=');
            if (!eq)
                break;
            *eq = '\0';
            unescape(eq + 1);
            labels[n++] = (tsdb_label_t){f, eq + 1};
        }
        char *end;
        long long t = ts ? strtoll(ts, &end, 10) : 0;
        if (!ts || !vs || *end || !n) {
            fprintf(stderr, "line %lu: expected <t> <v> <name>=<value>...\n", lineno);
            status = 1;
            break;
        }
        double v = strcmp(vs, "stale") == 0 ? stale_marker() : strtod(vs, &end);
        tsdb_reject_t r = tsdb_append(app, 0, labels, n, t, v, NULL);
        if (r != TSDB_REJECT_NONE) {
            fprintf(stderr, "line %lu: rejected: %s\n", lineno, tsdb_reject_message(r));
            status = 1;
            break;
        }
        if (++pending == BATCH) {
            tsdb_commit_result_t res;
            if (tsdb_appender_commit(app, &res) < 0 || res.appended != pending) {
                fprintf(stderr, "commit before line %lu failed\n", lineno);
                status = 1;
            }
            stored += res.appended;
            pending = 0;
        }
    }
    if (status == 0 && pending) {
        tsdb_commit_result_t res;
        if (tsdb_appender_commit(app, &res) < 0 || res.appended != pending) {
            fprintf(stderr, "final commit failed (%llu of %lu stored)\n",
                    (unsigned long long)res.appended, pending);
            status = 1;
        }
        stored += res.appended;
    }
    free(line);
    tsdb_appender_free(app);
    if (tsdb_close(db) < 0)
        status = 1;
    if (status == 0)
        printf("stored %lu samples\n", stored);
    return status;
}
