/*
 * tests/unit/check_common_buf.c: unit tests for the small pieces of the common layer that
 * everything else is built on: the growable buffer and its escapers (common/buf.c), logfmt
 * logging (common/log.c), label lists (common/labels.c), error codes (common/error.c), the
 * allocation hooks (common/alloc.c) and the clocks (common/time.c).
 *
 * Logging tests capture output through log_set_fd with a pipe and restore fd 2 and the level
 * info in the fixture's teardown. Allocation tests install counting hooks and restore libc's.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

/* --- buf_t ---------------------------------------------------------------------------------- */

START_TEST(test_buf_init_is_empty)
{
    buf_t b = BUF_INIT;
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);

    /* Freeing and resetting an untouched buffer are no-ops. */
    buf_reset(&b);
    buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_buf_append)
{
    buf_t b = BUF_INIT;
    buf_append(&b, "abc", 3);
    buf_append_str(&b, "def");
    buf_append_char(&b, 'g');
    buf_append(&b, "", 0);
    buf_append_str(&b, "");

    ck_assert_uint_eq(b.len, 7);
    ck_assert_uint_ge(b.cap, b.len + 1);
    ck_assert_str_eq(b.data, "abcdefg");

    /* Embedded NUL bytes are data like any other. */
    buf_append(&b, "x\0y", 3);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_mem_eq(b.data, "abcdefgx\0y", 11);
    buf_free(&b);
}
END_TEST

START_TEST(test_buf_printf_large)
{
    buf_t b = BUF_INIT;
    char big[10000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    buf_printf(&b, "%d:", 42);
    buf_printf(&b, "%s|%s", big, big); /* far beyond any initial 4 KiB guess */
    buf_printf(&b, "<%05d>", 7);

    size_t want_len = 3 + 2 * (sizeof big - 1) + 1 + 7;
    ck_assert_uint_eq(b.len, want_len);
    ck_assert_uint_eq(strlen(b.data), want_len);
    ck_assert_int_eq(strncmp(b.data, "42:aaa", 6), 0);
    ck_assert_int_eq(b.data[3 + sizeof big - 1], '|');
    ck_assert_str_eq(b.data + want_len - 7, "<00007>");
    for (size_t i = 3; i < 3 + sizeof big - 1; i++)
        ck_assert_int_eq(b.data[i], 'a');
    buf_free(&b);
}
END_TEST

static void call_vprintf(buf_t *b, const char *fmt, ...) CAIRN_PRINTF(2, 3);
static void call_vprintf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

START_TEST(test_buf_vprintf)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "x=");
    call_vprintf(&b, "%s/%u/%.2f", "str", 17u, 0.25);
    ck_assert_str_eq(b.data, "x=str/17/0.25");
    ck_assert_uint_eq(b.len, strlen("x=str/17/0.25"));
    buf_free(&b);
}
END_TEST

START_TEST(test_buf_always_nul_terminated)
{
    buf_t b = BUF_INIT;
    for (int i = 0; i < 20000; i++) {
        buf_append_char(&b, (char)('a' + i % 26));
        ck_assert_uint_eq(b.len, (size_t)i + 1);
        ck_assert_uint_gt(b.cap, b.len);
        ck_assert_int_eq(b.data[b.len], '\0');
    }
    for (int i = 0; i < 20000; i++)
        ck_assert_int_eq(b.data[i], 'a' + i % 26);
    buf_free(&b);
}
END_TEST

START_TEST(test_buf_reserve)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "head");
    buf_reserve(&b, 5000);
    ck_assert_uint_ge(b.cap, b.len + 5000);

    /* The reserved room is used without moving the data. */
    char *before = b.data;
    char chunk[5000];
    memset(chunk, 'z', sizeof chunk);
    buf_append(&b, chunk, sizeof chunk);
    ck_assert_ptr_eq(b.data, before);
    ck_assert_uint_eq(b.len, 5004);
    ck_assert_int_eq(b.data[b.len], '\0');
    buf_free(&b);
}
END_TEST

START_TEST(test_buf_reset_keeps_capacity)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "%0*d", 3000, 0);
    char *data = b.data;
    size_t cap = b.cap;

    buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_ptr_eq(b.data, data);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_str_eq(b.data, "");

    buf_append_str(&b, "again");
    ck_assert_ptr_eq(b.data, data);
    ck_assert_str_eq(b.data, "again");
    buf_free(&b);
}
END_TEST

START_TEST(test_buf_detach)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "owned by the caller");

    char *s = buf_detach(&b);
    ck_assert_str_eq(s, "owned by the caller");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    cairn_free(s);

    /* An empty buffer still gives a string, never NULL. */
    s = buf_detach(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    cairn_free(s);

    /* The buffer is usable again afterwards. */
    buf_append_str(&b, "next");
    ck_assert_str_eq(b.data, "next");
    buf_free(&b);
}
END_TEST

START_TEST(test_buf_free)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "something");
    buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    buf_free(&b); /* twice is harmless */
}
END_TEST

/* Hooks that hand out memory full of 0xAA, so a missing NUL terminator shows every time
 * instead of depending on what the allocator happened to reuse. */
static void *poison_malloc(size_t size)
{
    void *p = malloc(size);
    if (p != NULL)
        memset(p, 0xAA, size);
    return p;
}

static void *poison_realloc(void *ptr, size_t size)
{
    return ptr == NULL ? poison_malloc(size) : realloc(ptr, size);
}

static const cairn_alloc_hooks_t POISON_HOOKS = {poison_malloc, poison_realloc, free};

/* "Always NUL-terminated" holds from the first allocation on, even before anything is
 * appended, and buf_detach of an empty buffer gives "" (never garbage). */
START_TEST(test_buf_nul_terminated_from_first_allocation)
{
    cairn_alloc_set_hooks(&POISON_HOOKS);

    buf_t b = BUF_INIT;
    buf_reserve(&b, 100);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_msg(b.data[0] == '\0', "buf_reserve left data[0] = 0x%02x", (unsigned char)b.data[0]);
    buf_free(&b);

    char *s = buf_detach(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(s[0] == '\0', "buf_detach of an empty buffer gave data[0] = 0x%02x",
                  (unsigned char)s[0]);
    cairn_free(s);

    buf_printf(&b, "%s", "");
    ck_assert_str_eq(b.data, "");
    buf_free(&b);

    cairn_alloc_set_hooks(NULL);
}
END_TEST

/* --- escapers ------------------------------------------------------------------------------- */

/* Runs one escaper on input into a fresh buffer that already holds a prefix (escapers append),
 * and compares the appended part. */
static void check_escaper(void (*escape)(buf_t *, const char *), const char *input,
                          const char *want)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "pre:");
    escape(&b, input);
    ck_assert_int_eq(strncmp(b.data, "pre:", 4), 0);
    ck_assert_msg(strcmp(b.data + 4, want) == 0, "escaping \"%s\" gave [%s], want [%s]", input,
                  b.data + 4, want);
    ck_assert_uint_eq(b.len, 4 + strlen(want));
    buf_free(&b);
}

START_TEST(test_json_string)
{
    check_escaper(buf_append_json_string, "", "\"\"");
    check_escaper(buf_append_json_string, "plain", "\"plain\"");
    check_escaper(buf_append_json_string, "say \"hi\"", "\"say \\\"hi\\\"\"");
    check_escaper(buf_append_json_string, "back\\slash", "\"back\\\\slash\"");
    check_escaper(buf_append_json_string, "a\nb\rc\td", "\"a\\nb\\rc\\td\"");
    check_escaper(buf_append_json_string, "\x01", "\"\\u0001\"");
    check_escaper(buf_append_json_string, "x\x02y", "\"x\\u0002y\"");
    /* UTF-8 passes through byte for byte. */
    check_escaper(buf_append_json_string, "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xf0\x9f\x98\x80",
                  "\"h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xf0\x9f\x98\x80\"");
}
END_TEST

/* Control characters without a short escape come out as \u00XX; hex digit case is free. */
START_TEST(test_json_string_control_chars)
{
    for (int c = 1; c < 0x20; c++) {
        if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
            continue;
        char input[2] = {(char)c, '\0'};
        char want[16];
        snprintf(want, sizeof want, "\"\\u%04x\"", c);

        buf_t b = BUF_INIT;
        buf_append_json_string(&b, input);
        ck_assert_msg(strcasecmp(b.data, want) == 0, "control char 0x%02x gave [%s], want [%s]", c,
                      b.data, want);
        buf_free(&b);
    }
}
END_TEST

START_TEST(test_label_value)
{
    check_escaper(buf_append_label_value, "", "");
    check_escaper(buf_append_label_value, "plain value", "plain value");
    check_escaper(buf_append_label_value, "a\\b", "a\\\\b");
    check_escaper(buf_append_label_value, "say \"hi\"", "say \\\"hi\\\"");
    check_escaper(buf_append_label_value, "line1\nline2", "line1\\nline2");
    /* Nothing else is escaped. */
    check_escaper(buf_append_label_value, "tab\there\r{}=,'", "tab\there\r{}=,'");
    check_escaper(buf_append_label_value, "\xc3\xa9", "\xc3\xa9");
}
END_TEST

START_TEST(test_help_text)
{
    check_escaper(buf_append_help_text, "", "");
    check_escaper(buf_append_help_text, "Total requests.", "Total requests.");
    check_escaper(buf_append_help_text, "a\\b", "a\\\\b");
    check_escaper(buf_append_help_text, "line1\nline2", "line1\\nline2");
    /* Quotes stay as they are in HELP text. */
    check_escaper(buf_append_help_text, "say \"hi\"\t", "say \"hi\"\t");
}
END_TEST

START_TEST(test_append_float)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
        {0.005, "0.005"},
        {1e6, "1e+06"},
        {42, "42"},
        {-1.5, "-1.5"},
        {0, "0"},
        {0.1 + 0.2, "0.30000000000000004"},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        buf_t b = BUF_INIT;
        buf_append_str(&b, "v=");
        buf_append_float(&b, cases[i].v);
        ck_assert_msg(strcmp(b.data + 2, cases[i].text) == 0,
                      "buf_append_float(%.17g) = [%s], want [%s]", cases[i].v, b.data + 2,
                      cases[i].text);
        ck_assert_uint_eq(b.len, 2 + strlen(cases[i].text));
        buf_free(&b);
    }
}
END_TEST

/* --- log_quote ------------------------------------------------------------------------------ */

START_TEST(test_log_quote)
{
    ck_assert_str_eq(log_quote("word"), "word");
    ck_assert_str_eq(log_quote("/path/to/file.yml"), "/path/to/file.yml");
    ck_assert_str_eq(log_quote("hello world"), "\"hello world\"");
    ck_assert_str_eq(log_quote("a=b"), "\"a=b\"");
    ck_assert_str_eq(log_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
    ck_assert_str_eq(log_quote("quote\"only"), "\"quote\\\"only\"");
    ck_assert_str_eq(log_quote(""), "\"\"");
}
END_TEST

/* A newline must not split a log line: it is quoted and escaped like go-kit's logfmt does. */
START_TEST(test_log_quote_newline)
{
    const char *q = log_quote("two\nlines");
    ck_assert_msg(strchr(q, '\n') == NULL, "raw newline in [%s]", q);
    ck_assert_str_eq(q, "\"two\\nlines\"");
}
END_TEST

START_TEST(test_log_quote_ring)
{
    const char *first = log_quote("value 0");
    for (int i = 1; i < 8; i++) {
        char text[32], want[32];
        snprintf(text, sizeof text, "value %d", i);
        snprintf(want, sizeof want, "\"value %d\"", i);
        ck_assert_str_eq(log_quote(text), want);
    }
    /* Still intact after 7 further calls. */
    ck_assert_str_eq(first, "\"value 0\"");
}
END_TEST

START_TEST(test_log_quote_truncates)
{
    char *big = cairn_malloc(5001);
    memset(big, 'a', 5000);
    big[5000] = '\0';
    big[10] = ' ';

    const char *q = log_quote(big);
    size_t len = strlen(q);
    /* 1 KiB of value, plus a little for the quotes and a truncation mark. */
    ck_assert_msg(len <= 1024 + 16, "quoted length %zu is far beyond 1 KiB", len);
    ck_assert_uint_ge(len, 512);
    ck_assert_int_eq(q[0], '"');
    ck_assert_msg(q[len - 1] == '"', "a truncated value must still close its quote");
    cairn_free(big);
}
END_TEST

/* --- log_write ------------------------------------------------------------------------------ */

static int log_pipe[2] = {-1, -1};

static void log_capture_setup(void)
{
    ck_assert_int_eq(pipe(log_pipe), 0);
    ck_assert_int_ne(fcntl(log_pipe[0], F_SETFL, O_NONBLOCK), -1);
    log_set_fd(log_pipe[1]);
}

static void log_capture_teardown(void)
{
    log_set_fd(2);
    log_set_level(LOG_LEVEL_INFO);
    close(log_pipe[0]);
    close(log_pipe[1]);
}

/* Reads whatever has been logged so far. */
static void log_captured(char *out, size_t size)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(log_pipe[0], out + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    ck_assert_msg(rc == 0, "[%s] does not match /%s/", text, pattern);
}

#define LOG_TS_PATTERN     "ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"
#define LOG_CALLER_PATTERN "caller=([^ ]*/)?check_common_buf\\.c:"

START_TEST(test_log_write_line)
{
    char out[1024], pattern[512];
    ck_assert_int_eq(log_get_level(), LOG_LEVEL_INFO);

    int line = __LINE__ + 1;
    LOG_INFO("hello world", "k=%d", 5);
    log_captured(out, sizeof out);

    snprintf(pattern, sizeof pattern,
             "^" LOG_TS_PATTERN " level=info " LOG_CALLER_PATTERN "%d msg=\"hello world\" k=5\n$",
             line);
    assert_matches(out, pattern);
}
END_TEST

START_TEST(test_log_write_timestamp_is_now)
{
    char out[1024];
    int64_t before = time_now_ms();
    LOG_WARN("tick", "n=%d", 1);
    int64_t after = time_now_ms();
    log_captured(out, sizeof out);

    struct tm tm = {0};
    int ms = 0;
    int n = sscanf(out, "ts=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
    ck_assert_msg(n == 7, "no timestamp in [%s]", out);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t logged = (int64_t)timegm(&tm) * 1000 + ms;
    /* The clock is UTC and the milliseconds are real (truncation may lose up to 1 ms). */
    ck_assert_msg(logged >= before - 1 && logged <= after + 1, "logged %lld outside [%lld, %lld]",
                  (long long)logged, (long long)before, (long long)after);
    ck_assert_ptr_nonnull(strstr(out, " level=warn "));
}
END_TEST

START_TEST(test_log_write_message_escaped)
{
    char out[1024], pattern[512];
    int line = __LINE__ + 1;
    LOG_ERROR("say \"hi\"\nbye", "path=%s", log_quote("a b"));
    log_captured(out, sizeof out);

    snprintf(pattern, sizeof pattern,
             "^" LOG_TS_PATTERN " level=error " LOG_CALLER_PATTERN
             "%d msg=\"say \\\\\"hi\\\\\"\\\\nbye\" path=\"a b\"\n$",
             line);
    assert_matches(out, pattern);
}
END_TEST

/* Without key/values the line ends right after the message: no trailing space. A one-word
 * message may or may not be quoted. */
START_TEST(test_log_write_no_kv)
{
    char out[1024], pattern[512];
    int line = __LINE__ + 1;
    LOG_INFO("ready");
    log_captured(out, sizeof out);

    snprintf(pattern, sizeof pattern,
             "^" LOG_TS_PATTERN " level=info " LOG_CALLER_PATTERN "%d msg=(ready|\"ready\")\n$",
             line);
    assert_matches(out, pattern);
}
END_TEST

/* Called directly, the key/value format gets exactly one separating space whether or not it
 * starts with one. */
START_TEST(test_log_write_kv_spacing)
{
    char out[1024];
    log_write(LOG_LEVEL_INFO, "x.c", 7, "m", "a=%d", 1);
    log_captured(out, sizeof out);
    assert_matches(out, "^" LOG_TS_PATTERN " level=info caller=x\\.c:7 msg=\"?m\"? a=1\n$");

    log_write(LOG_LEVEL_INFO, "x.c", 8, "m", " b=%d", 2);
    log_captured(out, sizeof out);
    assert_matches(out, "^" LOG_TS_PATTERN " level=info caller=x\\.c:8 msg=\"?m\"? b=2\n$");
}
END_TEST

/* Over-long messages and key/values are cut, but the result is still one line. */
START_TEST(test_log_write_long_line)
{
    static char out[65536];
    char *big = cairn_malloc(20001);
    memset(big, 'x', 20000);
    big[20000] = '\0';

    LOG_INFO(big, "v=%s", big);
    log_captured(out, sizeof out);
    size_t len = strlen(out);
    ck_assert_uint_gt(len, 100);
    ck_assert_int_eq(out[len - 1], '\n');
    ck_assert_ptr_eq(strchr(out, '\n'), out + len - 1);
    ck_assert_int_eq(strncmp(out, "ts=", 3), 0);
    cairn_free(big);
}
END_TEST

#define LOG_THREADS 4
#define LOG_LINES   500

static void *log_thread_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LOG_LINES; i++)
        LOG_INFO("from a thread", "thread=%d i=%d pad=%0200d", id, i, 0);
    return NULL;
}

/* Lines written concurrently never interleave: each is whole. */
START_TEST(test_log_write_threads_do_not_interleave)
{
    FILE *file = tmpfile();
    ck_assert_ptr_nonnull(file);
    log_set_fd(fileno(file));

    pthread_t threads[LOG_THREADS];
    for (int t = 0; t < LOG_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, log_thread_main, (void *)(intptr_t)t),
                         0);
    for (int t = 0; t < LOG_THREADS; t++)
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
    log_set_fd(log_pipe[1]);

    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^" LOG_TS_PATTERN " level=info " LOG_CALLER_PATTERN
                             "[0-9]+ msg=\"from a thread\" thread=[0-9] i=[0-9]+ pad=0{200}$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    rewind(file);
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof line, file) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0, "mangled line [%s]", line);
        lines++;
    }
    regfree(&re);
    fclose(file);
    ck_assert_int_eq(lines, LOG_THREADS * LOG_LINES);
}
END_TEST

START_TEST(test_log_levels_filter)
{
    char out[1024];

    LOG_DEBUG("hidden", "x=%d", 1);
    log_captured(out, sizeof out);
    ck_assert_msg(out[0] == '\0', "debug logged at level info: [%s]", out);

    log_set_level(LOG_LEVEL_DEBUG);
    ck_assert_int_eq(log_get_level(), LOG_LEVEL_DEBUG);
    LOG_DEBUG("shown", "x=%d", 2);
    log_captured(out, sizeof out);
    assert_matches(out, "^" LOG_TS_PATTERN " level=debug " LOG_CALLER_PATTERN
                        "[0-9]+ msg=\"?shown\"? x=2\n$");

    log_set_level(LOG_LEVEL_ERROR);
    LOG_WARN("hidden too", "x=%d", 3);
    log_captured(out, sizeof out);
    ck_assert_msg(out[0] == '\0', "warn logged at level error: [%s]", out);
}
END_TEST

START_TEST(test_log_level_parse)
{
    static const struct {
        const char *text;
        log_level_t level;
    } cases[] = {
        {"debug", LOG_LEVEL_DEBUG},
        {"info", LOG_LEVEL_INFO},
        {"warn", LOG_LEVEL_WARN},
        {"error", LOG_LEVEL_ERROR},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(cases); i++) {
        log_level_t level = (log_level_t)-1;
        ck_assert_int_eq(log_level_parse(cases[i].text, &level), 0);
        ck_assert_int_eq(level, cases[i].level);
        ck_assert_str_eq(log_level_name(cases[i].level), cases[i].text);
    }

    static const char *const bad[] = {"verbose", "", "infoo", "inf", "warning"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(bad); i++) {
        log_level_t level = LOG_LEVEL_INFO;
        ck_assert_msg(log_level_parse(bad[i], &level) == -EINVAL, "accepted \"%s\"", bad[i]);
    }
}
END_TEST

/* --- label_list ----------------------------------------------------------------------------- */

START_TEST(test_label_list_add_get)
{
    label_list_t list = {0};
    char name[16] = "job", value[16] = "node";

    label_list_add(&list, name, value);
    label_list_add(&list, "instance", "localhost:9100");
    ck_assert_uint_eq(list.count, 2);

    /* The list holds copies. */
    strcpy(name, "changed");
    strcpy(value, "changed");
    ck_assert_str_eq(label_list_get(&list, "job"), "node");
    ck_assert_str_eq(label_list_get(&list, "instance"), "localhost:9100");
    ck_assert_ptr_null(label_list_get(&list, "changed"));
    ck_assert_ptr_null(label_list_get(&list, "jo"));
    ck_assert_ptr_null(label_list_get(&list, ""));
    label_list_free(&list);
}
END_TEST

START_TEST(test_label_list_sort)
{
    label_list_t list = {0};
    static const char *const names[] = {"b", "a", "aa", "B", "_z", "ab", "a_"};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(names); i++)
        label_list_add(&list, names[i], names[i]);

    ck_assert_ptr_null(label_list_sort(&list));
    static const char *const sorted[] = {"B", "_z", "a", "a_", "aa", "ab", "b"};
    ck_assert_uint_eq(list.count, CAIRN_ARRAY_LEN(sorted));
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(sorted); i++) {
        ck_assert_str_eq(list.items[i].name, sorted[i]);
        ck_assert_str_eq(list.items[i].value, sorted[i]); /* values travel with their names */
    }
    ck_assert_str_eq(label_list_get(&list, "aa"), "aa");
    label_list_free(&list);
}
END_TEST

START_TEST(test_label_list_duplicate)
{
    label_list_t list = {0};
    label_list_add(&list, "x", "1");
    label_list_add(&list, "y", "2");
    label_list_add(&list, "x", "3");

    const char *dup = label_list_sort(&list);
    ck_assert_ptr_nonnull(dup);
    ck_assert_str_eq(dup, "x");
    label_list_free(&list);
}
END_TEST

/* --- errors --------------------------------------------------------------------------------- */

START_TEST(test_error_set)
{
    cairn_error_t err = {{0}};
    ck_assert_int_eq(cairn_error_set(&err, -EINVAL, "bad %s at line %d", "flag", 3), -EINVAL);
    ck_assert_str_eq(err.message, "bad flag at line 3");

    ck_assert_int_eq(cairn_error_set(&err, -ENOENT, "second"), -ENOENT);
    ck_assert_str_eq(err.message, "second");

    /* A NULL err only returns the code. */
    ck_assert_int_eq(cairn_error_set(NULL, -ERANGE, "ignored %d", 1), -ERANGE);
}
END_TEST

START_TEST(test_error_set_truncates)
{
    cairn_error_t err;
    memset(&err, 'X', sizeof err);
    char long_text[2 * CAIRN_ERROR_MAX];
    memset(long_text, 'q', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';

    cairn_error_set(&err, -EINVAL, "%s", long_text);
    ck_assert_uint_eq(strlen(err.message), CAIRN_ERROR_MAX - 1);
    ck_assert_int_eq(strncmp(err.message, long_text, CAIRN_ERROR_MAX - 1), 0);
}
END_TEST

START_TEST(test_strerror)
{
    const char *enoent = cairn_strerror(-ENOENT);
    ck_assert_ptr_nonnull(enoent);
    ck_assert_uint_gt(strlen(enoent), 0);
    ck_assert_str_ne(enoent, cairn_strerror(-EINVAL));
    ck_assert_ptr_nonnull(cairn_strerror(-999999));
    ck_assert_ptr_nonnull(cairn_strerror(0));
}
END_TEST

/* --- allocation hooks ----------------------------------------------------------------------- */

static size_t hook_mallocs, hook_reallocs, hook_frees;
static long hook_live; /* blocks handed out through the hooks and not yet freed */

static void *counting_malloc(size_t size)
{
    hook_mallocs++;
    hook_live++;
    return malloc(size);
}

static void *counting_realloc(void *ptr, size_t size)
{
    hook_reallocs++;
    if (ptr == NULL)
        hook_live++;
    return realloc(ptr, size);
}

static void counting_free(void *ptr)
{
    if (ptr != NULL) {
        hook_frees++;
        hook_live--;
    }
    free(ptr);
}

static const cairn_alloc_hooks_t COUNTING_HOOKS = {counting_malloc, counting_realloc,
                                                   counting_free};

static void counting_hooks_install(void)
{
    hook_mallocs = hook_reallocs = hook_frees = 0;
    hook_live = 0;
    cairn_alloc_set_hooks(&COUNTING_HOOKS);
}

START_TEST(test_alloc_hooks)
{
    counting_hooks_install();

    char *p = cairn_malloc(16);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(hook_mallocs + hook_reallocs, 1);
    memset(p, 1, 16);
    p = cairn_realloc(p, 4096);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(hook_mallocs + hook_reallocs, 2);
    ck_assert_int_eq(p[15], 1);

    char *s = cairn_strdup("abc");
    ck_assert_str_eq(s, "abc");
    char *n = cairn_strndup("abcdef", 3);
    ck_assert_str_eq(n, "abc");
    char *f = cairn_sprintf("%d-%s", 7, "x");
    ck_assert_str_eq(f, "7-x");
    unsigned char *z = cairn_calloc(10, 8);
    for (int i = 0; i < 80; i++)
        ck_assert_uint_eq(z[i], 0);
    ck_assert_int_eq(hook_live, 5);

    cairn_free(p);
    cairn_free(s);
    cairn_free(n);
    cairn_free(f);
    cairn_free(z);
    cairn_free(NULL);
    ck_assert_int_eq(hook_live, 0);

    /* NULL restores libc's allocator: the hooks see nothing more. */
    cairn_alloc_set_hooks(NULL);
    size_t calls = hook_mallocs + hook_reallocs + hook_frees;
    p = cairn_malloc(32);
    cairn_free(p);
    ck_assert_uint_eq(hook_mallocs + hook_reallocs + hook_frees, calls);
}
END_TEST

/* Buffers and label lists allocate through the hooks and give everything back. */
START_TEST(test_alloc_hooks_see_buf_and_labels)
{
    counting_hooks_install();

    buf_t b = BUF_INIT;
    buf_printf(&b, "%0*d", 10000, 1);
    ck_assert_uint_gt(hook_mallocs + hook_reallocs, 0);
    buf_free(&b);
    ck_assert_int_eq(hook_live, 0);

    buf_append_str(&b, "detached");
    char *s = buf_detach(&b);
    cairn_free(s);
    ck_assert_int_eq(hook_live, 0);

    label_list_t list = {0};
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%02d", 49 - i);
        label_list_add(&list, name, "v");
    }
    ck_assert_ptr_null(label_list_sort(&list));
    ck_assert_int_gt(hook_live, 0);
    label_list_free(&list);
    ck_assert_int_eq(hook_live, 0);

    cairn_alloc_set_hooks(NULL);
}
END_TEST

/* Aligned blocks are zeroed, aligned as asked, and bypass the hooks. */
START_TEST(test_aligned_calloc)
{
    counting_hooks_install();
    static const size_t alignments[] = {sizeof(void *), 16, CAIRN_CACHE_LINE, 4096};
    for (size_t i = 0; i < CAIRN_ARRAY_LEN(alignments); i++) {
        unsigned char *p = cairn_aligned_calloc(alignments[i], 200);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % alignments[i], 0);
        for (size_t j = 0; j < 200; j++)
            ck_assert_uint_eq(p[j], 0);
        memset(p, 0xff, 200);
        cairn_aligned_free(p);
    }
    cairn_aligned_free(NULL);
    ck_assert_uint_eq(hook_mallocs + hook_reallocs + hook_frees, 0);
    cairn_alloc_set_hooks(NULL);
}
END_TEST

static void *failing_malloc(size_t size)
{
    (void)size;
    return NULL;
}

static void *failing_realloc(void *ptr, size_t size)
{
    (void)ptr;
    (void)size;
    return NULL;
}

static const cairn_alloc_hooks_t FAILING_HOOKS = {failing_malloc, failing_realloc, free};

/* Out of memory aborts (these tests expect SIGABRT). */
START_TEST(test_alloc_failure_aborts)
{
    cairn_alloc_set_hooks(&FAILING_HOOKS);
    void *p = cairn_malloc(64);
    cairn_alloc_set_hooks(NULL);
    ck_abort_msg("cairn_malloc returned %p instead of aborting", p);
}
END_TEST

START_TEST(test_buf_alloc_failure_aborts)
{
    cairn_alloc_set_hooks(&FAILING_HOOKS);
    buf_t b = BUF_INIT;
    buf_append_str(&b, "needs memory");
    cairn_alloc_set_hooks(NULL);
    ck_abort_msg("buf_append_str returned with data %p instead of aborting", (void *)b.data);
}
END_TEST

/* --- time ----------------------------------------------------------------------------------- */

START_TEST(test_time)
{
    int64_t now = time_now_ms();
    int64_t wall = (int64_t)time(NULL) * 1000;
    ck_assert_msg(now >= wall - 2000 && now <= wall + 2000, "time_now_ms %lld, time() %lld",
                  (long long)now, (long long)wall);

    double t0 = time_monotonic_seconds();
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    double t1 = time_monotonic_seconds();
    ck_assert_msg(t1 - t0 >= 0.019 && t1 - t0 < 5, "monotonic advanced %f s over 20 ms", t1 - t0);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("common_buf");

    TCase *tc = tcase_create("buf");
    tcase_add_test(tc, test_buf_init_is_empty);
    tcase_add_test(tc, test_buf_append);
    tcase_add_test(tc, test_buf_printf_large);
    tcase_add_test(tc, test_buf_vprintf);
    tcase_add_test(tc, test_buf_always_nul_terminated);
    tcase_add_test(tc, test_buf_reserve);
    tcase_add_test(tc, test_buf_reset_keeps_capacity);
    tcase_add_test(tc, test_buf_detach);
    tcase_add_test(tc, test_buf_free);
    tcase_add_test(tc, test_buf_nul_terminated_from_first_allocation);
    suite_add_tcase(s, tc);

    tc = tcase_create("escape");
    tcase_add_test(tc, test_json_string);
    tcase_add_test(tc, test_json_string_control_chars);
    tcase_add_test(tc, test_label_value);
    tcase_add_test(tc, test_help_text);
    tcase_add_test(tc, test_append_float);
    suite_add_tcase(s, tc);

    tc = tcase_create("log_quote");
    tcase_add_test(tc, test_log_quote);
    tcase_add_test(tc, test_log_quote_newline);
    tcase_add_test(tc, test_log_quote_ring);
    tcase_add_test(tc, test_log_quote_truncates);
    suite_add_tcase(s, tc);

    tc = tcase_create("log");
    tcase_add_checked_fixture(tc, log_capture_setup, log_capture_teardown);
    tcase_add_test(tc, test_log_write_line);
    tcase_add_test(tc, test_log_write_timestamp_is_now);
    tcase_add_test(tc, test_log_write_message_escaped);
    tcase_add_test(tc, test_log_write_no_kv);
    tcase_add_test(tc, test_log_write_kv_spacing);
    tcase_add_test(tc, test_log_write_long_line);
    tcase_add_test(tc, test_log_write_threads_do_not_interleave);
    tcase_add_test(tc, test_log_levels_filter);
    tcase_add_test(tc, test_log_level_parse);
    suite_add_tcase(s, tc);

    tc = tcase_create("labels");
    tcase_add_test(tc, test_label_list_add_get);
    tcase_add_test(tc, test_label_list_sort);
    tcase_add_test(tc, test_label_list_duplicate);
    suite_add_tcase(s, tc);

    tc = tcase_create("error");
    tcase_add_test(tc, test_error_set);
    tcase_add_test(tc, test_error_set_truncates);
    tcase_add_test(tc, test_strerror);
    suite_add_tcase(s, tc);

    tc = tcase_create("alloc");
    tcase_add_test(tc, test_alloc_hooks);
    tcase_add_test(tc, test_alloc_hooks_see_buf_and_labels);
    tcase_add_test(tc, test_aligned_calloc);
    tcase_add_test_raise_signal(tc, test_alloc_failure_aborts, SIGABRT);
    tcase_add_test_raise_signal(tc, test_buf_alloc_failure_aborts, SIGABRT);
    suite_add_tcase(s, tc);

    tc = tcase_create("time");
    tcase_add_test(tc, test_time);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(buf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
