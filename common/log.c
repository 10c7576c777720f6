/*
 * common/log.c: logfmt logging on stderr.
 *
 * Each call formats the whole line into a stack buffer and issues one write(2), so lines from
 * concurrent threads never interleave (writes of a few KiB to a pipe or file are not split by
 * the kernel in practice). No locks. The level is a relaxed atomic read on every call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

static _Atomic int current_level = LOG_LEVEL_INFO;
static _Atomic int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s, log_level_t *out)
{
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(log_level_t level)
{
    return (unsigned)level < CAIRN_ARRAY_LEN(level_names) ? level_names[level] : "unknown";
}

void log_set_level(log_level_t level)
{
    atomic_store_explicit(&current_level, (int)level, memory_order_relaxed);
}

log_level_t log_get_level(void)
{
    return (log_level_t)atomic_load_explicit(&current_level, memory_order_relaxed);
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

static bool needs_quoting(const char *s)
{
    if (!*s)
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p == 0x7f)
            return true;
    return false;
}

/* Writes s quoted and escaped into dst (capacity size > 3); truncates with "..." if needed. */
static size_t quote_into(char *dst, size_t size, const char *s)
{
    size_t n = 0;
    dst[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t len;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p, len = 2;
        } else if (*p == '\n') {
            esc[0] = '\\', esc[1] = 'n', len = 2;
        } else if (*p == '\t') {
            esc[0] = '\\', esc[1] = 't', len = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            len = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", *p);
        } else {
            esc[0] = (char)*p, len = 1;
        }
        if (n + len + 5 > size) { /* room for `..."` and NUL */
            memcpy(dst + n, "...", 3);
            n += 3;
            break;
        }
        memcpy(dst + n, esc, len);
        n += len;
    }
    dst[n++] = '"';
    dst[n] = '\0';
    return n;
}

const char *log_quote(const char *s)
{
    static _Thread_local char ring[8][1040];
    static _Thread_local unsigned next;
    if (!s)
        return "\"\"";
    if (!needs_quoting(s))
        return s;
    char *dst = ring[next++ % 8];
    quote_into(dst, sizeof(ring[0]), s);
    return dst;
}

/* The caller's source file without its directory. */
static const char *base_name(const char *file)
{
    const char *slash = strrchr(file, '/');
    return slash ? slash + 1 : file;
}

static void vlog_line(log_level_t level, const char *file, int line, const char *msg,
                      const char *kvfmt, va_list ap)
{
    char out[4096];
    size_t n = 0, cap = sizeof(out) - 1; /* keep one byte for the newline */

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    n += strftime(out, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, cap - n,
                          ".%03ldZ level=%s caller=%s:%d msg=", ts.tv_nsec / 1000000,
                          log_level_name(level), base_name(file), line);
    if (n < cap - 8)
        n += quote_into(out + n, cap - n, msg);
    if (kvfmt && *kvfmt == ' ')
        kvfmt++;
    if (kvfmt && *kvfmt && n < cap - 2) {
        out[n++] = ' ';
        int k = vsnprintf(out + n, cap - n, kvfmt, ap);
        if (k > 0)
            n += (size_t)k < cap - n ? (size_t)k : cap - n - 1;
    }
    out[n++] = '\n';

    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, out + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void log_write(log_level_t level, const char *file, int line, const char *msg, const char *kvfmt,
               ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    vlog_line(level, file, line, msg, kvfmt, ap);
    va_end(ap);
}

void cairn_panic(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write(LOG_LEVEL_ERROR, file, line, msg, "%s", "panic=true");
    abort();
}
