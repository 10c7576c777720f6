/*
 * common/buf.c: growable byte buffers and the escapers that write into them.
 *
 * Invariant: once data is allocated, data[len] == '\0'. Capacity grows by doubling so appends
 * are amortised O(1); buf_reset keeps the allocation for reuse by the same owner.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

void buf_reserve(buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    bool first = b->data == NULL;
    b->data = cairn_realloc(b->data, cap);
    b->cap = cap;
    if (first)
        b->data[0] = '\0';
}

void buf_append(buf_t *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_append_str(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_char(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, copy);
    va_end(copy);
    if (n < 0)
        CAIRN_PANIC("vsnprintf failed for format \"%s\"", fmt);
    if ((size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_append_json_string(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    buf_append_char(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
                buf_append(b, esc, sizeof(esc));
            } else {
                buf_append_char(b, (char)*p);
            }
        }
    }
    buf_append_char(b, '"');
}

/* Escapes backslash and newline, and the double quote when quote is true. */
static void append_escaped(buf_t *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            buf_append(b, "\\\\", 2);
        else if (*p == '\n')
            buf_append(b, "\\n", 2);
        else if (quote && *p == '"')
            buf_append(b, "\\\"", 2);
        else
            buf_append_char(b, *p);
    }
}

void buf_append_label_value(buf_t *b, const char *s)
{
    append_escaped(b, s, true);
}

void buf_append_help_text(buf_t *b, const char *s)
{
    append_escaped(b, s, false);
}

void buf_append_float(buf_t *b, double v)
{
    char tmp[40];
    size_t n = float_format_go(v, 'g', tmp, sizeof(tmp));
    buf_append(b, tmp, n);
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(buf_t *b)
{
    cairn_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_detach(buf_t *b)
{
    if (!b->data)
        buf_reserve(b, 0);
    char *s = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}
