/* hetero: worker speed profiles. A factor is seconds per step relative to the fastest
 * worker (1 = fastest); a worker with factor f runs at 1/f of the fastest speed. */
#include "loco/hetero.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


const loco_enum loco_hetero_levels[] = {
    {"no", LOCO_LEVEL_NO, NULL},
    {"slight", LOCO_LEVEL_SLIGHT, NULL},
    {"moderate", LOCO_LEVEL_MODERATE, NULL},
    {"very", LOCO_LEVEL_VERY, NULL},
    {NULL, 0, NULL},
};

const loco_enum loco_slowdown_modes[] = {
    {"sleep", LOCO_SLOW_SLEEP, NULL},
    {"spin", LOCO_SLOW_SPIN, NULL},
    {NULL, 0, NULL},
};

/* loco's levels (docs/method.md), seconds per step relative to the fastest of 4 workers;
 * for other worker counts only the last column (the max/min ratio) is used */
static const double level_table[4][4] = {
    {1.0, 1.0, 1.0, 1.0},
    {1.0, 1.1, 1.3, 1.5},
    {1.0, 1.3, 2.0, 3.0},
    {1.0, 1.29, 2.60, 5.74},
};

void loco_hetero_level(int level, int k, double *out) {
    LOCO_CHECK(level >= LOCO_LEVEL_NO && level <= LOCO_LEVEL_VERY, "level %d", level);
    LOCO_CHECK(k >= 1, "%d workers", k);
    if (k == 4) {
        memcpy(out, level_table[level], sizeof level_table[level]);
        return;
    }
    double ratio = level_table[level][3];
    out[0] = 1.0;
    for (int i = 1; i < k; i++) out[i] = pow(ratio, (double)i / (double)(k - 1));
}

/* ---- parsing ---- */

enum { ITEM_LEN = 128 };

/* One item of a list parsed into *out (of the list's element type). */
typedef int (*item_parser)(const char *item, int workers, void *out, loco_err *e);

/* The next item of a list into item, or an error that quotes the list */
static int next_item(const char **p, char *item, loco_err *e) {
    const char *list = *p;
    if (loco_list_next(p, item, ITEM_LEN) == 0) return 0;
    return loco_errf(e, "\"%.40s...\": an item longer than %d characters", list, ITEM_LEN - 1);
}

static int parse_factor(const char *item, int i, double *out, loco_err *e) {
    double f;
    if (loco_parse_double(item, &f) != 0)
        return loco_errf(e, "\"%s\" (item %d) is not a finite number", item, i + 1);
    if (f < 1.0)
        return loco_errf(e,
                         "factor %s (item %d) is below 1: a slowdown factor is seconds per "
                         "step relative to the fastest worker",
                         item, i + 1);
    *out = f;
    return 0;
}

int loco_hetero_parse_slowdown(const char *list, int workers, double *out, loco_err *e) {
    int n = loco_list_count(list);
    if (n != workers) return loco_errf(e, "%d factors for %d workers", n, workers);
    const char *p = list;
    char item[ITEM_LEN];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = next_item(&p, item, e) != 0 ? -1 : parse_factor(item, i, &out[i], e);
    return rc;
}

/* strtod's inf for 1e400 (or an "inf" or "nan" typed) */
static int out_of_range(const char *item, const char *what, loco_err *e) {
    return loco_errf(e, "\"%s\": the %s is out of range (not a finite number of seconds)", item,
                     what);
}

/* "W@T:F": strtol/strtod stop at the separators, which must be exactly '@' and ':' */
static int parse_change(const char *item, int workers, void *out, loco_err *e) {
    loco_speed_change *c = out;
    char *end;
    long w = strtol(item, &end, 10);
    if (end == item || *end != '@') goto malformed;
    const char *ts = end + 1;
    double t = strtod(ts, &end);
    if (end == ts || *end != ':') goto malformed;
    const char *fs = end + 1;
    double f = strtod(fs, &end);
    if (end == fs || *end != '\0') goto malformed;
    if (w < 0 || w >= workers)
        return loco_errf(e, "\"%s\": worker %ld does not exist (%d workers)", item, w, workers);
    if (!isfinite(t)) return out_of_range(item, "time", e);
    if (t < 0) return loco_errf(e, "\"%s\": time %g is not a number of seconds >= 0", item, t);
    if (!isfinite(f) || f < 1.0)
        return loco_errf(e, "\"%s\": factor %g is not a finite slowdown >= 1", item, f);
    *c = (loco_speed_change){.worker = (int)w, .time_s = t, .factor = f};
    return 0;
malformed:
    return loco_errf(e, "\"%s\": expected W@T:F (worker@seconds:factor)", item);
}

/* "W@" of an item: the worker, and *rest after the '@'; -1 when malformed or out of range */
static long worker_of(const char *item, int workers, const char **rest) {
    char *end;
    long w = strtol(item, &end, 10);
    if (end == item || *end != '@' || !isdigit((unsigned char)item[0])) return -1;
    *rest = end + 1;
    return w < workers ? w : -2;
}

static int parse_fault(const char *item, int workers, void *out, loco_err *e) {
    loco_fault *f = out;
    const char *p = item;
    long w = worker_of(item, workers, &p);
    char *end;
    double t = strtod(p, &end), d = INFINITY;
    if (w == -2) return loco_errf(e, "\"%s\": no such worker (%d workers)", item, workers);
    if (w < 0 || end == p) goto malformed;
    if (*end == '+') {
        const char *ds = end + 1;
        d = strtod(ds, &end);
        if (end == ds) goto malformed;
        if (!isfinite(d)) return out_of_range(item, "duration", e);
        if (d <= 0) return loco_errf(e, "\"%s\": a duration of %g s (must be > 0)", item, d);
    }
    if (*end) goto malformed;
    if (!isfinite(t)) return out_of_range(item, "time", e);
    if (t < 0) return loco_errf(e, "\"%s\": time %g is not >= 0", item, t);
    *f = (loco_fault){.worker = (int)w, .at_s = t, .for_s = d};
    return 0;
malformed:
    return loco_errf(e, "\"%s\": expected W@T+D (worker W gone at T seconds for D) or W@T "
                     "(for good)", item);
}

static int parse_injection(const char *item, int workers, void *out, loco_err *e) {
    loco_injection *in = out;
    const char *r = item;
    long w = worker_of(item, workers, &r);
    char *end;
    long round = w >= 0 ? strtol(r, &end, 10) : 0;
    if (w == -2) return loco_errf(e, "\"%s\": no such worker (%d workers)", item, workers);
    if (w < 0 || end == r || *end || round < 1)
        return loco_errf(e, "\"%s\": expected W@R (worker W's round R, from 1)", item);
    *in = (loco_injection){(int)w, round};
    return 0;
}

/* The items of list, each parsed into a new array *out of *n elements of size bytes:
 * NULL and 0 for a blank list; -1 with nothing allocated at the first bad item. */
static int parse_items(const char *list, int workers, size_t size, item_parser parse, void **out,
                       int *n, loco_err *e) {
    *out = NULL;
    *n = 0;
    int count = loco_list_count(list);
    if (count == 0) return 0;
    char *a = calloc((size_t)count, size), item[ITEM_LEN];
    if (!a) return loco_errf(e, "out of memory");
    const char *p = list;
    for (int i = 0; i < count; i++)
        if (next_item(&p, item, e) != 0 || parse(item, workers, a + (size_t)i * size, e) != 0) {
            free(a);
            return -1;
        }
    *out = a;
    *n = count;
    return 0;
}

static int by_time(const void *a, const void *b) {
    double x = ((const loco_fault *)a)->at_s, y = ((const loco_fault *)b)->at_s;
    return (x > y) - (x < y);
}

int loco_hetero_parse_faults(const char *list, int workers, loco_fault **out, int *n,
                             loco_err *e) {
    void *items;
    if (parse_items(list, workers, sizeof **out, parse_fault, &items, n, e) != 0)
        return -1;
    loco_fault *f = items;
    if (*n > 0) qsort(f, (size_t)*n, sizeof *f, by_time);
    for (int i = 0; i < *n; i++)
        for (int j = i + 1; j < *n; j++)
            if (f[j].worker == f[i].worker && f[j].at_s < f[i].at_s + f[i].for_s) {
                loco_errf(e, "worker %d fails at %g s while still gone from %g s", f[j].worker,
                          f[j].at_s, f[i].at_s);
                free(f);
                *n = 0;
                return -1;
            }
    *out = f;
    return 0;
}

int loco_hetero_parse_injections(const char *list, int workers, loco_injection **out, int *n,
                                 loco_err *e) {
    void *items;
    int rc = parse_items(list, workers, sizeof **out, parse_injection, &items, n, e);
    *out = items;
    return rc;
}

/* Insertion sort because it is stable: of two changes at the same time for the same
 * worker, the one given later wins, as it would if they were applied in order. */
static void sort_changes(loco_speed_change *c, int n) {
    for (int i = 1; i < n; i++) {
        loco_speed_change x = c[i];
        int j = i;
        for (; j > 0 && c[j - 1].time_s > x.time_s; j--) c[j] = c[j - 1];
        c[j] = x;
    }
}

int loco_hetero_parse_changes(const char *list, int workers, loco_speed_change **out, int *n,
                              loco_err *e) {
    void *items;
    if (parse_items(list, workers, sizeof **out, parse_change, &items, n, e) != 0)
        return -1;
    *out = items;
    sort_changes(*out, *n);
    return 0;
}

int loco_hetero_init(loco_hetero *h, const loco_hetero_settings *st, loco_err *e) {
    int workers = st->workers;
    const char *slowdown = st->slowdown, *changes = st->changes;
    memset(h, 0, sizeof *h);
    if (workers < 1) return loco_errf(e, "%d workers: need at least 1", workers);
    if (!isfinite(st->jitter) || st->jitter < 0)
        return loco_errf(e, "jitter %g is not a standard deviation >= 0", st->jitter);
    if (!(st->step_s >= 0) || !isfinite(st->step_s))
        return loco_errf(e, "a step of %g s: need a finite time >= 0", st->step_s);
    h->workers = workers;
    h->jitter = st->jitter;
    h->step_s = st->step_s;
    h->slowdown = calloc((size_t)workers, sizeof *h->slowdown);
    if (!h->slowdown) {
        loco_errf(e, "out of memory for the speed profile");
        goto fail;
    }
    if (slowdown && loco_list_count(slowdown) > 0) {
        if (loco_hetero_parse_slowdown(slowdown, workers, h->slowdown, e) != 0) goto fail;
    } else {
        loco_hetero_level(st->level, workers, h->slowdown);
    }
    if (changes && loco_hetero_parse_changes(changes, workers, &h->changes, &h->nchanges, e) != 0)
        goto fail;
    return 0;
fail:
    loco_hetero_free(h);
    return -1;
}

void loco_hetero_free(loco_hetero *h) {
    free(h->slowdown);
    free(h->changes);
    memset(h, 0, sizeof *h);
}

/* ---- queries ---- */

double loco_hetero_slowdown_at(const loco_hetero *h, int worker, double t) {
    LOCO_CHECK(worker >= 0 && worker < h->workers, "worker %d of %d", worker, h->workers);
    double f = h->slowdown[worker];
    for (int i = 0; i < h->nchanges && h->changes[i].time_s <= t; i++)
        if (h->changes[i].worker == worker) f = h->changes[i].factor;
    return f;
}

double loco_hetero_jitter(const loco_hetero *h, loco_rng *r) {
    /* no draw at 0, so turning jitter off leaves every other use of r unchanged */
    if (h->jitter == 0) return 1.0;
    LOCO_CHECK(r != NULL, "jitter without a generator");
    return exp(h->jitter * loco_rng_normal(r));
}

double loco_hetero_speed(const loco_hetero *h, int worker, double t) {
    return 1.0 / loco_hetero_slowdown_at(h, worker, t);
}

/* ---- the cost model ---- */

double loco_hetero_step_factor(const loco_hetero *h, int worker, double t, loco_rng *r) {
    return loco_hetero_slowdown_at(h, worker, t) * loco_hetero_jitter(h, r);
}

loco_round_cost loco_hetero_round_cost(const loco_hetero *h, int worker, double start, long n,
                                       loco_rng *r) {
    LOCO_CHECK(n >= 0, "n %ld", n);
    /* step by step: a change that falls inside the round applies from the next step on;
     * (step_s x factor) x jitter, in the order every earlier run's bits rest on */
    double elapsed = 0.0;
    for (long j = 0; j < n; j++) {
        double f = loco_hetero_slowdown_at(h, worker, start + elapsed);
        elapsed += h->step_s * f * loco_hetero_jitter(h, r);
    }
    return loco_hetero_cost_of(h, n, elapsed);
}

loco_round_cost loco_hetero_cost_of(const loco_hetero *h, long n, double total_s) {
    double compute = (double)n * h->step_s;
    return (loco_round_cost){.compute_s = compute, .slowdown_s = total_s - compute,
                             .total_s = total_s};
}

double loco_hetero_step_owed(const loco_hetero *h, int worker, double t, double dt, loco_rng *r) {
    double f = loco_hetero_step_factor(h, worker, t, r);
    return f > 1 ? (f - 1) * dt : 0.0;
}

long loco_dylu_steps(double v, double vmax, long H) {
    LOCO_CHECK(H >= 1, "H %ld", H);
    if (!(vmax > 0)) return H;
    /* The relative slack keeps ratios that are integers on paper from landing just below
     * them: v = 1/1.3, H = 65 gives 49.999999999999993, which is 50 steps, not 49. */
    double x = v / vmax * (double)H * (1.0 + 1e-9);
    if (!(x >= 1.0)) return 1;
    if (x >= (double)H) return H;
    return (long)floor(x);
}
