/*
 * common/labels.c: plain label lists as configuration holds them, and name validation.
 */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

void label_list_add(label_list_t *list, const char *name, const char *value)
{
    list->items = cairn_realloc(list->items, (list->count + 1) * sizeof(*list->items));
    list->items[list->count].name = cairn_strdup(name);
    list->items[list->count].value = cairn_strdup(value);
    list->count++;
}

const char *label_list_get(const label_list_t *list, const char *name)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].name, name) == 0)
            return list->items[i].value;
    return NULL;
}

static int compare_pairs(const void *a, const void *b)
{
    return strcmp(((const label_pair_t *)a)->name, ((const label_pair_t *)b)->name);
}

const char *label_list_sort(label_list_t *list)
{
    if (list->count > 1)
        qsort(list->items, list->count, sizeof(*list->items), compare_pairs);
    for (size_t i = 1; i < list->count; i++)
        if (strcmp(list->items[i - 1].name, list->items[i].name) == 0)
            return list->items[i].name;
    return NULL;
}

void label_list_free(label_list_t *list)
{
    for (size_t i = 0; i < list->count; i++) {
        cairn_free(list->items[i].name);
        cairn_free(list->items[i].value);
    }
    cairn_free(list->items);
    list->items = NULL;
    list->count = 0;
}

static bool is_name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (colon && c == ':')
        return true;
    return !first && c >= '0' && c <= '9';
}

static bool name_is_valid(const char *s, bool colon)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!is_name_char(*p, p == s, colon))
            return false;
    return true;
}

bool metric_name_is_valid(const char *s)
{
    return name_is_valid(s, true);
}

bool label_name_is_valid(const char *s)
{
    return name_is_valid(s, false);
}
