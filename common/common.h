/*
 * common/common.h: the public header of Cairn's common layer.
 *
 * Everything here is used by every other component and depends on nothing but libc (and, for
 * the allocator statistics, jemalloc when the build links it). Sections:
 *
 *   errors       negative errno codes plus a message buffer for errors a user must read
 *   allocation   the one allocation wrapper (aborts on OOM), with hooks tests can replace
 *   buffers      a growable byte buffer for rendering text, JSON and exposition output
 *   logging      logfmt lines on stderr: ts=... level=... caller=file:line msg="..." k=v ...
 *   time         wall clock in milliseconds
 *   parsing      Prometheus durations ("1h30m"), byte sizes ("512MB"), floats like Go
 *   metrics      the self-metrics registry behind /metrics (counters, gauges, histograms)
 *
 * Thread safety is stated per function; unless noted, functions are safe to call from any
 * thread on distinct objects.
 */
#ifndef CAIRN_COMMON_H
#define CAIRN_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_CACHE_LINE 64

#if defined(__GNUC__)
#define CAIRN_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#define CAIRN_NORETURN                     __attribute__((noreturn))
#define CAIRN_LIKELY(x)                    __builtin_expect(!!(x), 1)
#define CAIRN_UNLIKELY(x)                  __builtin_expect(!!(x), 0)
#else
#define CAIRN_PRINTF(fmt_index, first_arg)
#define CAIRN_NORETURN
#define CAIRN_LIKELY(x)   (x)
#define CAIRN_UNLIKELY(x) (x)
#endif

#define CAIRN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------------
 * Errors
 *
 * Functions return 0 on success or a negative errno value (-EINVAL, -ENOMEM, ...). Where the
 * caller must show the user what went wrong (a bad flag, a bad config line) the function also
 * fills a cairn_error_t with a complete, human-readable sentence.
 */
#define CAIRN_ERROR_MAX 512

typedef struct cairn_error {
    char message[CAIRN_ERROR_MAX]; /* NUL-terminated; empty when no error was recorded */
} cairn_error_t;

/* Formats into err (if err is not NULL) and returns code, so callers can write
 * `return cairn_error_set(err, -EINVAL, "...")`. */
int cairn_error_set(cairn_error_t *err, int code, const char *fmt, ...) CAIRN_PRINTF(3, 4);

/* A static description of a negative errno code; never NULL. */
const char *cairn_strerror(int code);

/* ---------------------------------------------------------------------------------------------
 * Allocation
 *
 * cairn_malloc and friends abort the process with a log line when memory is exhausted: use them
 * for small, internally sized allocations. Allocations whose size comes from user input must be
 * bounded by an explicit limit before they reach these functions. All allocations go through
 * the hooks below so tests can count them or make them fail.
 */
typedef struct cairn_alloc_hooks {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} cairn_alloc_hooks_t;

/* Replaces the hooks (NULL restores libc's). Not thread-safe: call before starting threads. */
void cairn_alloc_set_hooks(const cairn_alloc_hooks_t *hooks);

void *cairn_malloc(size_t size);
void *cairn_calloc(size_t count, size_t size);
void *cairn_realloc(void *ptr, size_t size);
void cairn_free(void *ptr);
char *cairn_strdup(const char *s);
char *cairn_strndup(const char *s, size_t n);
/* Zeroed memory aligned to alignment (a power of two, multiple of sizeof(void *)), for objects
 * padded to cache lines. Not routed through the hooks; free with cairn_aligned_free. */
void *cairn_aligned_calloc(size_t alignment, size_t size);
void cairn_aligned_free(void *ptr);
/* Like asprintf, aborting on OOM; returns a string the caller frees with cairn_free. */
char *cairn_sprintf(const char *fmt, ...) CAIRN_PRINTF(1, 2);

/* ---------------------------------------------------------------------------------------------
 * Buffers
 *
 * A growable, always NUL-terminated byte buffer. Zero-initialised (BUF_INIT) is a valid empty
 * buffer. Appends abort on OOM like cairn_malloc. Not thread-safe.
 */
typedef struct buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes used, excluding the terminating NUL */
    size_t cap; /* bytes allocated */
} buf_t;

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_append_str(buf_t *b, const char *s);
void buf_append_char(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...) CAIRN_PRINTF(2, 3);
void buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
void buf_append_json_string(buf_t *b, const char *s);
/* Appends s escaped as a Prometheus text-format label value (\\, \", \n), without quotes. */
void buf_append_label_value(buf_t *b, const char *s);
/* Appends s escaped as HELP text (\\ and \n). */
void buf_append_help_text(buf_t *b, const char *s);
/* Appends a float as Prometheus's exposition format writes it ("+Inf", "-Inf", "NaN", else
 * the shortest representation that parses back to the same double). */
void buf_append_float(buf_t *b, double v);
/* Empties the buffer, keeping its allocation. */
void buf_reset(buf_t *b);
/* Frees the allocation and empties the buffer. */
void buf_free(buf_t *b);
/* Transfers ownership of the bytes to the caller (never NULL) and empties the buffer. */
char *buf_detach(buf_t *b);

/* ---------------------------------------------------------------------------------------------
 * Logging
 *
 * One logfmt line per call on stderr, written with a single write(2) so lines from different
 * threads never interleave:
 *   ts=2026-11-24T10:00:00.123Z level=info caller=main.c:42 msg="Server is ready" addr=...
 * The message is quoted and escaped by the logger. The optional key/value part is a printf
 * format the caller writes in logfmt (`"path=%s count=%d"`); values that may contain spaces,
 * quotes or '=' must go through log_quote(). Thread-safe.
 */
typedef enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
} log_level_t;

/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int log_level_parse(const char *s, log_level_t *out);
const char *log_level_name(log_level_t level);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Redirects log output to fd (default 2). For tests. */
void log_set_fd(int fd);

void log_write(log_level_t level, const char *file, int line, const char *msg, const char *kvfmt,
               ...) CAIRN_PRINTF(5, 6);

/* log_write's kvfmt starts with a space when called through the LOG_* macros (so that a call
 * without key/values still has a non-empty format); a leading space is not doubled. */

/* Returns s as a logfmt value: unchanged if it needs no quoting, else quoted and escaped in a
 * thread-local ring of buffers (valid until 8 further calls on the same thread). Long values
 * are truncated to 1 KiB. */
const char *log_quote(const char *s);

#define LOG_AT(level, msg, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= log_get_level())                                                            \
            log_write((level), __FILE__, __LINE__, (msg), " " __VA_ARGS__);                        \
    } while (0)
#define LOG_DEBUG(msg, ...) LOG_AT(LOG_LEVEL_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...)  LOG_AT(LOG_LEVEL_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...)  LOG_AT(LOG_LEVEL_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) LOG_AT(LOG_LEVEL_ERROR, msg, __VA_ARGS__)

/* Logs at error level and aborts. For broken invariants, never for bad input. */
CAIRN_NORETURN void cairn_panic(const char *file, int line, const char *fmt, ...)
    CAIRN_PRINTF(3, 4);
#define CAIRN_PANIC(...) cairn_panic(__FILE__, __LINE__, __VA_ARGS__)

/* ---------------------------------------------------------------------------------------------
 * Time
 */
/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t time_now_ms(void);
/* Seconds on a monotonic clock, for measuring durations. */
double time_monotonic_seconds(void);

/* ---------------------------------------------------------------------------------------------
 * Parsing and formatting of Prometheus value syntaxes
 */
/* Parses a Prometheus duration: "0" or units in decreasing order, each at most once, from
 * y (365d), w, d, h, m, s, ms, e.g. "1h30m", "15d", "500ms". On success stores milliseconds
 * and returns 0; otherwise returns -EINVAL (or -ERANGE on overflow) with a message in err. */
int duration_parse(const char *s, int64_t *out_ms, cairn_error_t *err);
/* Formats milliseconds as Prometheus does ("0s", "1h30m", "15d", "2w"; years and weeks are used
 * only when they divide the value exactly). Returns out. size >= 32 always suffices. */
char *duration_format(int64_t ms, char *out, size_t size);

/* Parses a byte size as Prometheus flags and config do: "0", or one or more
 * <number><unit> terms where the number may have a fraction and the unit is B, KB, MB, GB, TB,
 * PB, EB or KiB, MiB, GiB, TiB, PiB, EiB; all are powers of 1024. Returns 0, or -EINVAL /
 * -ERANGE with a message in err. */
int bytesize_parse(const char *s, uint64_t *out, cairn_error_t *err);
/* Formats bytes with the largest exact binary unit ("512MiB", "1GiB", "1000B", "0B"). */
char *bytesize_format(uint64_t bytes, char *out, size_t size);

/* Formats v like Go's strconv.FormatFloat(v, fmt, -1, 64): the shortest digits that round-trip,
 * laid out as 'e' (d.ddde±XX, at least two exponent digits), 'f' (plain decimal) or 'g' (the
 * 'e' layout when the decimal exponent is < -4 or >= 6, as Go decides for shortest formatting,
 * else 'f'). Infinities are "+Inf"/"-Inf", NaN is "NaN". Returns the
 * length written (excluding NUL); size >= 32 always suffices for 'e' and 'g'; 'f' needs up to
 * 330 bytes. */
size_t float_format_go(double v, char fmt, char *out, size_t size);

/* Whether s[0..len) is valid UTF-8 as Go's utf8.Valid decides: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
bool utf8_valid(const char *s, size_t len);
/* The value of a hexadecimal digit (0-9, a-f, A-F), or -1. */
int hex_digit_value(char c);
/* Parses an unsigned decimal integer with overflow checks; the whole string must be consumed. */
int parse_uint64(const char *s, uint64_t *out);
/* Parses a signed decimal integer with overflow checks; the whole string must be consumed. */
int parse_int64(const char *s, int64_t *out);

/* ---------------------------------------------------------------------------------------------
 * Label pairs as configuration holds them (owned strings). The TSDB has its own interned,
 * hashed label sets; this is the plain form used by config sections and flags.
 */
typedef struct label_pair {
    char *name;  /* owned */
    char *value; /* owned */
} label_pair_t;

typedef struct label_list {
    label_pair_t *items; /* owned array, sorted by name once validated */
    size_t count;
} label_list_t;

/* Appends a copy of name=value. */
void label_list_add(label_list_t *list, const char *name, const char *value);
/* The value for name, or NULL. */
const char *label_list_get(const label_list_t *list, const char *name);
/* Sorts by name; returns the first duplicated name, or NULL if all names are distinct. */
const char *label_list_sort(label_list_t *list);
void label_list_free(label_list_t *list);

/* ---------------------------------------------------------------------------------------------
 * Metrics registry
 *
 * Families are created once at start-up (or lazily) and never freed before the registry; each
 * has a type, help text and fixed label names. A child is one label-value combination; looking
 * it up takes the family's mutex, so hot paths look children up once and keep the pointer,
 * which stays valid for the registry's lifetime. Updating a child is a few relaxed atomic
 * operations on its own cache line: safe from any thread, no lock.
 *
 * Collectors are callbacks run at render time that append whole families in text format
 * (through metric_write_*), for figures that are read rather than counted (RSS, jemalloc).
 *
 * Rendering (metric_registry_render) produces the Prometheus text format 0.0.4: families in
 * registration order, then collectors, each family with # HELP and # TYPE lines.
 */
typedef enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
} metric_type_t;

#define METRIC_MAX_LABELS 8

typedef struct metric_registry metric_registry_t;
typedef struct metric_family metric_family_t;
typedef struct metric_counter metric_counter_t;
typedef struct metric_gauge metric_gauge_t;
typedef struct metric_histogram metric_histogram_t;

typedef void (*metric_collector_fn)(void *ctx, buf_t *out);

metric_registry_t *metric_registry_new(void);
/* Frees the registry, its families and children. No other thread may use it any more. */
void metric_registry_free(metric_registry_t *reg);
/* The process-wide registry that /metrics renders; created on first use. */
metric_registry_t *metric_registry_default(void);

/* Creates a family. name and label names must be valid Prometheus names and distinct from
 * every family already registered (a duplicate is a programming error and panics). Strings
 * are copied. bucket bounds (histograms only) must be strictly increasing and exclude +Inf,
 * which is implied. Thread-safe. */
metric_family_t *metric_family_new(metric_registry_t *reg, metric_type_t type, const char *name,
                                   const char *help, size_t label_count,
                                   const char *const *label_names);
metric_family_t *metric_histogram_family_new(metric_registry_t *reg, const char *name,
                                             const char *help, size_t label_count,
                                             const char *const *label_names, size_t bucket_count,
                                             const double *bucket_bounds);

/* Get-or-create the child for the given label values (label_count of them, in the family's
 * label order). The family's type must match the function. Thread-safe; takes the family's
 * mutex. The pointer stays valid for the registry's lifetime. */
metric_counter_t *metric_counter_with(metric_family_t *fam, const char *const *label_values);
metric_gauge_t *metric_gauge_with(metric_family_t *fam, const char *const *label_values);
metric_histogram_t *metric_histogram_with(metric_family_t *fam, const char *const *label_values);

/* Shorthands that create an unlabelled family and return its only child. */
metric_counter_t *metric_counter_new(metric_registry_t *reg, const char *name, const char *help);
metric_gauge_t *metric_gauge_new(metric_registry_t *reg, const char *name, const char *help);
metric_histogram_t *metric_histogram_new(metric_registry_t *reg, const char *name, const char *help,
                                         size_t bucket_count, const double *bucket_bounds);

/* Lock-free updates. Counters only go up: a negative or NaN delta is ignored. */
void metric_counter_add(metric_counter_t *c, uint64_t delta);
void metric_counter_add_float(metric_counter_t *c, double delta);
double metric_counter_value(const metric_counter_t *c);
void metric_gauge_set(metric_gauge_t *g, double v);
void metric_gauge_add(metric_gauge_t *g, double delta);
double metric_gauge_value(const metric_gauge_t *g);
void metric_histogram_observe(metric_histogram_t *h, double v);
uint64_t metric_histogram_count(const metric_histogram_t *h);
double metric_histogram_sum(const metric_histogram_t *h);

/* Registers a collector run on every render, after the families. Thread-safe. */
void metric_registry_add_collector(metric_registry_t *reg, metric_collector_fn fn, void *ctx);

/* Appends the whole registry in the Prometheus text format. Thread-safe. */
void metric_registry_render(metric_registry_t *reg, buf_t *out);

/* Helpers for collectors. metric_write_header writes the # HELP and # TYPE lines;
 * metric_write_sample writes one sample line: name{labels} value. label_names/values may be
 * NULL when label_count is 0. */
void metric_write_header(buf_t *out, const char *name, const char *help, metric_type_t type);
void metric_write_sample(buf_t *out, const char *name, size_t label_count,
                         const char *const *label_names, const char *const *label_values,
                         double value);

/* Default latency buckets in seconds (0.0001 .. 60), shared by request histograms. */
extern const double METRIC_LATENCY_BUCKETS[];
extern const size_t METRIC_LATENCY_BUCKET_COUNT;

/* True if s is a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*). */
bool metric_name_is_valid(const char *s);
/* True if s is a valid label name ([a-zA-Z_][a-zA-Z0-9_]*). */
bool label_name_is_valid(const char *s);

#endif /* CAIRN_COMMON_H */
