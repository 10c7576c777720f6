/*
 * common/alloc.c: the allocation wrapper every component uses.
 *
 * Small allocations abort on exhaustion (a daemon that cannot allocate a few bytes cannot make
 * progress anyway); sizes from user input are bounded before they get here. Hooks let tests
 * count allocations or inject failures. With jemalloc linked, libc's malloc *is* jemalloc.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static cairn_alloc_hooks_t hooks = {malloc, realloc, free};

void cairn_alloc_set_hooks(const cairn_alloc_hooks_t *h)
{
    if (h) {
        hooks = *h;
    } else {
        hooks.malloc_fn = malloc;
        hooks.realloc_fn = realloc;
        hooks.free_fn = free;
    }
}

static CAIRN_NORETURN void out_of_memory(size_t size)
{
    CAIRN_PANIC("out of memory allocating %zu bytes", size);
}

void *cairn_malloc(size_t size)
{
    void *p = hooks.malloc_fn(size ? size : 1);
    if (CAIRN_UNLIKELY(!p))
        out_of_memory(size);
    return p;
}

void *cairn_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        out_of_memory(SIZE_MAX);
    void *p = cairn_malloc(count * size);
    memset(p, 0, count * size);
    return p;
}

void *cairn_realloc(void *ptr, size_t size)
{
    void *p = hooks.realloc_fn(ptr, size ? size : 1);
    if (CAIRN_UNLIKELY(!p))
        out_of_memory(size);
    return p;
}

void cairn_free(void *ptr)
{
    if (ptr)
        hooks.free_fn(ptr);
}

void *cairn_aligned_calloc(size_t alignment, size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, alignment, size ? size : 1) != 0)
        out_of_memory(size);
    memset(p, 0, size);
    return p;
}

void cairn_aligned_free(void *ptr)
{
    free(ptr);
}

char *cairn_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = cairn_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *cairn_strdup(const char *s)
{
    return cairn_strndup(s, SIZE_MAX);
}

char *cairn_sprintf(const char *fmt, ...)
{
    buf_t b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return buf_detach(&b);
}
