/*
 * common/metrics.c: the self-metrics registry rendered on /metrics.
 *
 * Structure: a registry holds a list of families (in registration order) and collectors. A
 * family holds its type, help, label names, histogram bounds and a list of children, one per
 * label-value combination, appended in creation order and never removed before the registry
 * is freed; so a child pointer handed to a hot path stays valid and needs no lock.
 *
 * Updates are relaxed atomics on the child's own cache line(s): integer counter increments are
 * one fetch_add; float additions (counter floats, gauges, histogram sums) are a CAS loop on
 * the double's bit pattern. Histogram buckets are stored non-cumulatively (one fetch_add per
 * observation) and summed at render time. A render may see a histogram's count and buckets a
 * few observations apart; Prometheus client libraries accept the same.
 *
 * Locks: registry->lock guards the family and collector lists; family->lock guards its child
 * list. Order: registry, then family. Collectors run under registry->lock and must not
 * register families themselves.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/common.h"

const double METRIC_LATENCY_BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                         1,      2.5,     5,      10,    30,     60};
const size_t METRIC_LATENCY_BUCKET_COUNT = CAIRN_ARRAY_LEN(METRIC_LATENCY_BUCKETS);

/* One label-value combination of a family, whatever its type. */
typedef struct metric_child {
    _Alignas(CAIRN_CACHE_LINE) _Atomic uint64_t count; /* counter integer part; histogram count */
    _Atomic uint64_t float_bits; /* counter float part, gauge value, histogram sum */
    _Atomic uint64_t *buckets;   /* histogram: bucket_count + 1 non-cumulative counts */
    char **label_values;         /* owned, family->label_count of them */
    struct metric_child *next;   /* next child of the family, creation order */
    struct metric_family *family;
} metric_child_t;

struct metric_counter {
    metric_child_t child;
};
struct metric_gauge {
    metric_child_t child;
};
struct metric_histogram {
    metric_child_t child;
};

struct metric_family {
    metric_type_t type;
    char *name;
    char *help;
    size_t label_count;
    char **label_names;
    size_t bucket_count; /* histogram bounds, excluding +Inf */
    double *bounds;
    pthread_mutex_t lock; /* guards children/tail */
    metric_child_t *children;
    metric_child_t *tail;
    struct metric_family *next;
};

typedef struct metric_collector {
    metric_collector_fn fn;
    void *ctx;
} metric_collector_t;

struct metric_registry {
    pthread_mutex_t lock;
    struct metric_family *families;
    struct metric_family *tail;
    metric_collector_t *collectors;
    size_t collector_count;
};

static uint64_t double_bits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}

static double bits_double(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static void atomic_add_double(_Atomic uint64_t *bits, double delta)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, double_bits(bits_double(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

metric_registry_t *metric_registry_new(void)
{
    metric_registry_t *reg = cairn_calloc(1, sizeof(*reg));
    pthread_mutex_init(&reg->lock, NULL);
    return reg;
}

static void family_free(struct metric_family *fam)
{
    for (metric_child_t *c = fam->children, *next; c; c = next) {
        next = c->next;
        for (size_t i = 0; i < fam->label_count; i++)
            cairn_free(c->label_values[i]);
        cairn_free(c->label_values);
        cairn_free(c->buckets);
        cairn_aligned_free(c);
    }
    for (size_t i = 0; i < fam->label_count; i++)
        cairn_free(fam->label_names[i]);
    cairn_free(fam->label_names);
    cairn_free(fam->bounds);
    cairn_free(fam->name);
    cairn_free(fam->help);
    pthread_mutex_destroy(&fam->lock);
    cairn_free(fam);
}

void metric_registry_free(metric_registry_t *reg)
{
    if (!reg)
        return;
    for (struct metric_family *f = reg->families, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    cairn_free(reg->collectors);
    pthread_mutex_destroy(&reg->lock);
    cairn_free(reg);
}

static metric_registry_t *default_registry;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_registry_create(void)
{
    default_registry = metric_registry_new();
}

metric_registry_t *metric_registry_default(void)
{
    pthread_once(&default_once, default_registry_create);
    return default_registry;
}

static metric_family_t *family_create(metric_registry_t *reg, metric_type_t type, const char *name,
                                      const char *help, size_t label_count,
                                      const char *const *label_names, size_t bucket_count,
                                      const double *bounds)
{
    if (!metric_name_is_valid(name))
        CAIRN_PANIC("invalid metric name \"%s\"", name);
    if (label_count > METRIC_MAX_LABELS)
        CAIRN_PANIC("metric %s has %zu labels, at most %d allowed", name, label_count,
                    METRIC_MAX_LABELS);
    for (size_t i = 0; i < label_count; i++)
        if (!label_name_is_valid(label_names[i]) || strcmp(label_names[i], "le") == 0)
            CAIRN_PANIC("invalid label name \"%s\" for metric %s", label_names[i], name);
    for (size_t i = 1; i < bucket_count; i++)
        if (!(bounds[i] > bounds[i - 1]))
            CAIRN_PANIC("histogram %s: bucket bounds must increase", name);

    struct metric_family *fam = cairn_calloc(1, sizeof(*fam));
    fam->type = type;
    fam->name = cairn_strdup(name);
    fam->help = cairn_strdup(help);
    fam->label_count = label_count;
    fam->label_names = cairn_calloc(label_count ? label_count : 1, sizeof(char *));
    for (size_t i = 0; i < label_count; i++)
        fam->label_names[i] = cairn_strdup(label_names[i]);
    fam->bucket_count = bucket_count;
    if (bucket_count) {
        fam->bounds = cairn_malloc(bucket_count * sizeof(double));
        memcpy(fam->bounds, bounds, bucket_count * sizeof(double));
    }
    pthread_mutex_init(&fam->lock, NULL);

    pthread_mutex_lock(&reg->lock);
    for (struct metric_family *f = reg->families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            CAIRN_PANIC("metric %s registered twice", name);
    if (reg->tail)
        reg->tail->next = fam;
    else
        reg->families = fam;
    reg->tail = fam;
    pthread_mutex_unlock(&reg->lock);
    return fam;
}

metric_family_t *metric_family_new(metric_registry_t *reg, metric_type_t type, const char *name,
                                   const char *help, size_t label_count,
                                   const char *const *label_names)
{
    if (type == METRIC_HISTOGRAM)
        return metric_histogram_family_new(reg, name, help, label_count, label_names,
                                           METRIC_LATENCY_BUCKET_COUNT, METRIC_LATENCY_BUCKETS);
    return family_create(reg, type, name, help, label_count, label_names, 0, NULL);
}

metric_family_t *metric_histogram_family_new(metric_registry_t *reg, const char *name,
                                             const char *help, size_t label_count,
                                             const char *const *label_names, size_t bucket_count,
                                             const double *bucket_bounds)
{
    return family_create(reg, METRIC_HISTOGRAM, name, help, label_count, label_names, bucket_count,
                         bucket_bounds);
}

static metric_child_t *child_with(metric_family_t *fam, metric_type_t type,
                                  const char *const *values)
{
    if (fam->type != type)
        CAIRN_PANIC("metric %s used with the wrong type", fam->name);
    pthread_mutex_lock(&fam->lock);
    metric_child_t *c = fam->children;
    for (; c; c = c->next) {
        size_t i = 0;
        while (i < fam->label_count && strcmp(c->label_values[i], values[i]) == 0)
            i++;
        if (i == fam->label_count)
            break;
    }
    if (!c) {
        c = cairn_aligned_calloc(CAIRN_CACHE_LINE, sizeof(*c));
        c->family = fam;
        c->label_values = cairn_calloc(fam->label_count ? fam->label_count : 1, sizeof(char *));
        for (size_t i = 0; i < fam->label_count; i++)
            c->label_values[i] = cairn_strdup(values[i]);
        if (type == METRIC_HISTOGRAM)
            c->buckets = cairn_calloc(fam->bucket_count + 1, sizeof(*c->buckets));
        if (fam->tail)
            fam->tail->next = c;
        else
            fam->children = c;
        fam->tail = c;
    }
    pthread_mutex_unlock(&fam->lock);
    return c;
}

metric_counter_t *metric_counter_with(metric_family_t *fam, const char *const *label_values)
{
    return (metric_counter_t *)child_with(fam, METRIC_COUNTER, label_values);
}

metric_gauge_t *metric_gauge_with(metric_family_t *fam, const char *const *label_values)
{
    return (metric_gauge_t *)child_with(fam, METRIC_GAUGE, label_values);
}

metric_histogram_t *metric_histogram_with(metric_family_t *fam, const char *const *label_values)
{
    return (metric_histogram_t *)child_with(fam, METRIC_HISTOGRAM, label_values);
}

metric_counter_t *metric_counter_new(metric_registry_t *reg, const char *name, const char *help)
{
    return metric_counter_with(metric_family_new(reg, METRIC_COUNTER, name, help, 0, NULL), NULL);
}

metric_gauge_t *metric_gauge_new(metric_registry_t *reg, const char *name, const char *help)
{
    return metric_gauge_with(metric_family_new(reg, METRIC_GAUGE, name, help, 0, NULL), NULL);
}

metric_histogram_t *metric_histogram_new(metric_registry_t *reg, const char *name, const char *help,
                                         size_t bucket_count, const double *bucket_bounds)
{
    return metric_histogram_with(
        metric_histogram_family_new(reg, name, help, 0, NULL, bucket_count, bucket_bounds), NULL);
}

void metric_counter_add(metric_counter_t *c, uint64_t delta)
{
    atomic_fetch_add_explicit(&c->child.count, delta, memory_order_relaxed);
}

void metric_counter_add_float(metric_counter_t *c, double delta)
{
    if (delta > 0) /* also rejects NaN */
        atomic_add_double(&c->child.float_bits, delta);
}

double metric_counter_value(const metric_counter_t *c)
{
    metric_child_t *child = (metric_child_t *)&c->child;
    return (double)atomic_load_explicit(&child->count, memory_order_relaxed) +
           bits_double(atomic_load_explicit(&child->float_bits, memory_order_relaxed));
}

void metric_gauge_set(metric_gauge_t *g, double v)
{
    atomic_store_explicit(&g->child.float_bits, double_bits(v), memory_order_relaxed);
}

void metric_gauge_add(metric_gauge_t *g, double delta)
{
    atomic_add_double(&g->child.float_bits, delta);
}

double metric_gauge_value(const metric_gauge_t *g)
{
    metric_child_t *child = (metric_child_t *)&g->child;
    return bits_double(atomic_load_explicit(&child->float_bits, memory_order_relaxed));
}

void metric_histogram_observe(metric_histogram_t *h, double v)
{
    const struct metric_family *fam = h->child.family;
    /* First bucket whose bound is >= v (bounds are "less or equal"); NaN lands in +Inf. */
    size_t lo = 0, hi = fam->bucket_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= fam->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (isnan(v))
        lo = fam->bucket_count;
    atomic_fetch_add_explicit(&h->child.buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&h->child.float_bits, v);
    atomic_fetch_add_explicit(&h->child.count, 1, memory_order_relaxed);
}

uint64_t metric_histogram_count(const metric_histogram_t *h)
{
    metric_child_t *child = (metric_child_t *)&h->child;
    return atomic_load_explicit(&child->count, memory_order_relaxed);
}

double metric_histogram_sum(const metric_histogram_t *h)
{
    metric_child_t *child = (metric_child_t *)&h->child;
    return bits_double(atomic_load_explicit(&child->float_bits, memory_order_relaxed));
}

void metric_registry_add_collector(metric_registry_t *reg, metric_collector_fn fn, void *ctx)
{
    pthread_mutex_lock(&reg->lock);
    reg->collectors =
        cairn_realloc(reg->collectors, (reg->collector_count + 1) * sizeof(*reg->collectors));
    reg->collectors[reg->collector_count++] = (metric_collector_t){fn, ctx};
    pthread_mutex_unlock(&reg->lock);
}

/* ---- rendering --------------------------------------------------------------------------- */

static const char *type_name(metric_type_t type)
{
    switch (type) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

void metric_write_header(buf_t *out, const char *name, const char *help, metric_type_t type)
{
    buf_printf(out, "# HELP %s ", name);
    buf_append_help_text(out, help);
    buf_printf(out, "\n# TYPE %s %s\n", name, type_name(type));
}

/* name{labels[,extra_name="extra_value"]} value */
static void write_sample_line(buf_t *out, const char *name, const char *suffix, size_t count,
                              const char *const *names, const char *const *values,
                              const char *extra_name, const char *extra_value, double value)
{
    buf_append_str(out, name);
    buf_append_str(out, suffix);
    if (count || extra_name) {
        buf_append_char(out, '{');
        for (size_t i = 0; i < count; i++) {
            buf_printf(out, "%s%s=\"", i ? "," : "", names[i]);
            buf_append_label_value(out, values[i]);
            buf_append_char(out, '"');
        }
        if (extra_name)
            buf_printf(out, "%s%s=\"%s\"", count ? "," : "", extra_name, extra_value);
        buf_append_char(out, '}');
    }
    buf_append_char(out, ' ');
    buf_append_float(out, value);
    buf_append_char(out, '\n');
}

void metric_write_sample(buf_t *out, const char *name, size_t label_count,
                         const char *const *label_names, const char *const *label_values,
                         double value)
{
    write_sample_line(out, name, "", label_count, label_names, label_values, NULL, NULL, value);
}

static void render_family(struct metric_family *fam, buf_t *out)
{
    const char *const *names = (const char *const *)fam->label_names;
    metric_write_header(out, fam->name, fam->help, fam->type);
    pthread_mutex_lock(&fam->lock);
    for (metric_child_t *c = fam->children; c; c = c->next) {
        const char *const *values = (const char *const *)c->label_values;
        if (fam->type != METRIC_HISTOGRAM) {
            double v = fam->type == METRIC_COUNTER ? metric_counter_value((metric_counter_t *)c)
                                                   : metric_gauge_value((metric_gauge_t *)c);
            write_sample_line(out, fam->name, "", fam->label_count, names, values, NULL, NULL, v);
            continue;
        }
        uint64_t cumulative = 0;
        char le[40];
        for (size_t i = 0; i <= fam->bucket_count; i++) {
            cumulative += atomic_load_explicit(&c->buckets[i], memory_order_relaxed);
            if (i < fam->bucket_count)
                float_format_go(fam->bounds[i], 'g', le, sizeof(le));
            else
                strcpy(le, "+Inf");
            write_sample_line(out, fam->name, "_bucket", fam->label_count, names, values, "le", le,
                              (double)cumulative);
        }
        write_sample_line(out, fam->name, "_sum", fam->label_count, names, values, NULL, NULL,
                          metric_histogram_sum((metric_histogram_t *)c));
        /* _count equals the +Inf bucket, as readers expect, even mid-update. */
        write_sample_line(out, fam->name, "_count", fam->label_count, names, values, NULL, NULL,
                          (double)cumulative);
    }
    pthread_mutex_unlock(&fam->lock);
}

void metric_registry_render(metric_registry_t *reg, buf_t *out)
{
    pthread_mutex_lock(&reg->lock);
    for (struct metric_family *f = reg->families; f; f = f->next)
        render_family(f, out);
    for (size_t i = 0; i < reg->collector_count; i++)
        reg->collectors[i].fn(reg->collectors[i].ctx, out);
    pthread_mutex_unlock(&reg->lock);
}
