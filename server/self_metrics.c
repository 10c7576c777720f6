/*
 * server/self_metrics.c: what Cairn says about itself on /metrics besides its components'
 * counters: build information, process figures read from /proc at scrape time, and jemalloc's
 * statistics read through mallctl (jemalloc is the process allocator, except in sanitizer
 * builds, where these figures are absent).
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "server/internal.h"

#ifdef CAIRN_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

static double boot_time_seconds; /* btime from /proc/stat */
static long clock_ticks;
static long page_size;

static double read_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[256];
    double btime = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lf", &btime) == 1)
            break;
    fclose(f);
    return btime;
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static void gauge(buf_t *out, const char *name, const char *help, double v)
{
    metric_write_header(out, name, help, METRIC_GAUGE);
    metric_write_sample(out, name, 0, NULL, NULL, v);
}

static void collect_process(void *ctx, buf_t *out)
{
    (void)ctx;
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return;
    char stat[1024];
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = '\0';
    /* Fields after the command name, which is in parentheses and may contain spaces. */
    const char *p = strrchr(stat, ')');
    if (!p)
        return;
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long starttime = 0;
    long threads = 0, rss = 0;
    int got = sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld "
                     "%*d %llu %lu %ld",
                     &utime, &stime, &threads, &starttime, &vsize, &rss);
    if (got != 6)
        return;

    metric_write_header(out, "process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.", METRIC_COUNTER);
    metric_write_sample(out, "process_cpu_seconds_total", 0, NULL, NULL,
                        (double)(utime + stime) / (double)clock_ticks);
    gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
          (double)rss * (double)page_size);
    gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", (double)vsize);
    gauge(out, "process_start_time_seconds",
          "Start time of the process since unix epoch in seconds.",
          boot_time_seconds + (double)starttime / (double)clock_ticks);
    gauge(out, "process_threads", "Number of OS threads in the process.", (double)threads);
    int fds = count_open_fds();
    if (fds >= 0)
        gauge(out, "process_open_fds", "Number of open file descriptors.", fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        gauge(out, "process_max_fds", "Maximum number of open file descriptors.",
              rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

#ifdef CAIRN_HAVE_JEMALLOC
static void collect_jemalloc(void *ctx, buf_t *out)
{
    (void)ctx;
    static const struct {
        const char *stat;
        const char *name;
        const char *help;
    } stats[] = {
        {"stats.allocated", "cairn_jemalloc_allocated_bytes",
         "Bytes allocated by the application (jemalloc stats.allocated)."},
        {"stats.active", "cairn_jemalloc_active_bytes",
         "Bytes in active pages allocated by the application (jemalloc stats.active)."},
        {"stats.metadata", "cairn_jemalloc_metadata_bytes",
         "Bytes dedicated to jemalloc metadata (jemalloc stats.metadata)."},
        {"stats.resident", "cairn_jemalloc_resident_bytes",
         "Bytes in physically resident data pages mapped by jemalloc (stats.resident)."},
        {"stats.mapped", "cairn_jemalloc_mapped_bytes",
         "Bytes in active extents mapped by jemalloc (jemalloc stats.mapped)."},
        {"stats.retained", "cairn_jemalloc_retained_bytes",
         "Bytes in virtual memory mappings retained by jemalloc (jemalloc stats.retained)."},
    };
    /* Statistics are a snapshot refreshed by writing the epoch. */
    uint64_t epoch = 1;
    size_t len = sizeof(epoch);
    mallctl("epoch", &epoch, &len, &epoch, len);
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(stats); i++) {
        size_t v = 0;
        len = sizeof(v);
        if (mallctl(stats[i].stat, &v, &len, NULL, 0) == 0)
            gauge(out, stats[i].name, stats[i].help, (double)v);
    }
}
#endif

static const char *allocator_name(void)
{
#ifdef CAIRN_HAVE_JEMALLOC
    static char name[64];
    const char *version = NULL;
    size_t len = sizeof(version);
    if (mallctl("version", &version, &len, NULL, 0) == 0 && version) {
        /* "5.3.0-0-g54eaed1d..." -> "jemalloc 5.3.0" */
        snprintf(name, sizeof(name), "jemalloc %.*s", (int)strcspn(version, "-"), version);
        return name;
    }
    return "jemalloc";
#else
    return "libc";
#endif
}

void self_metrics_register(metric_registry_t *reg)
{
    clock_ticks = sysconf(_SC_CLK_TCK);
    page_size = sysconf(_SC_PAGESIZE);
    boot_time_seconds = read_boot_time();

    static const char *const names[] = {"version", "revision", "compiler", "allocator"};
    const char *values[] = {CAIRN_VERSION, CAIRN_REVISION, "gcc " __VERSION__, allocator_name()};
#ifdef __clang__
    values[2] = "clang " __clang_version__;
#endif
    metric_family_t *fam = metric_family_new(
        reg, METRIC_GAUGE, "cairn_build_info",
        "A metric with a constant '1' value labeled by version, revision, compiler and allocator.",
        CAIRN_ARRAY_LEN(names), names);
    metric_gauge_set(metric_gauge_with(fam, values), 1);

    metric_registry_add_collector(reg, collect_process, NULL);
#ifdef CAIRN_HAVE_JEMALLOC
    metric_registry_add_collector(reg, collect_jemalloc, NULL);
#endif
}
