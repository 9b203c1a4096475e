/* The runner. A spec is read into raw entries (section, key, value, line); --quick
 * overrides some; then the entries become the spec below. Every run of the sweep (the
 * pre-training, the outer-lr tuning runs, the grid's runs) is a resolved config, built
 * and validated before anything runs; its directory is named by a hash of that config
 * and of the model it starts from, so a finished run is recognised and skipped. Runs are
 * child processes (fork, then loco_train): a crash or a divergence stays in its run. */
#include "loco/sweep.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loco/adamw.h"
#include "loco/clock.h"
#include "loco/config.h"
#include "loco/metrics.h"
#include "loco/outer.h"
#include "loco/report.h"
#include "loco/runlock.h"
#include "loco/runlog.h"
#include "loco/train.h"

enum {
    MAX_ENTRIES = 256, MAX_VARIANTS = 24, MAX_SETS = 32, MAX_AXES = 6, MAX_VALUES = 12,
    MAX_SEEDS = 12, MAX_LRS = 8, MAX_EXTEND = 4, KEY_LEN = 96, VAL_LEN = LOCO_LIST_LEN, NAME_LEN = 48,
};

/* ------------------------------------------------------------------ the spec */

typedef struct {
    char section[NAME_LEN + 16], key[KEY_LEN], value[VAL_LEN];
    int line;
} entry;

typedef struct {
    char name[NAME_LEN];
    const entry *sets[MAX_SETS];
    int nsets;
} variant;

typedef struct {
    char key[KEY_LEN];
    char values[MAX_VALUES][64];
    int nvalues;
} axis;

typedef struct {
    const char *path;
    entry entries[MAX_ENTRIES];
    int nentries;
    char name[NAME_LEN], target[NAME_LEN], timeline[NAME_LEN];
    long seeds[MAX_SEEDS];
    int nseeds;
    const entry *base[MAX_SETS], *pre[MAX_SETS], *tune[MAX_SETS];
    int nbase, npre, ntune, pretrain;
    variant v[MAX_VARIANTS];
    int nv;
    int grid[MAX_VARIANTS], ngrid;       /* the variants of the grid, in its order */
    axis ax[MAX_AXES];
    int nax, table;                      /* table: the axis the tables spread over */
    double lrs[MAX_LRS];
    int nlrs;
    long extend;                         /* [tune] extend: rates added beyond each end */
    int rep_variants[MAX_VARIANTS], nrep_variants;  /* [repeat]: extra seeds for these */
    const entry *rep_where[MAX_AXES];    /*   where the axes have these values */
    int nrep_where;
    int rep_axis[MAX_AXES];              /*   resolved: each one's axis, and which of */
    unsigned rep_values[MAX_AXES];       /*   its values (a bit per value index) */
    long rep_seeds[MAX_SEEDS];
    int nrep_seeds;
} spec;

static int on_raw(void *ctx, const char *section, const char *key, const char *value, int *line,
                  int section_line, loco_err *e) {
    (void)section_line;
    spec *sp = ctx;
    for (int i = 0; i < sp->nentries; i++)
        if (!strcmp(sp->entries[i].section, section) && !strcmp(sp->entries[i].key, key))
            return loco_errf(e, "[%s] %s: duplicate key (first on line %d)", section, key,
                             sp->entries[i].line);
    if (sp->nentries == MAX_ENTRIES) return loco_errf(e, "more than %d entries", MAX_ENTRIES);
    entry *en = &sp->entries[sp->nentries++];
    if (strlen(section) >= sizeof en->section || strlen(key) >= KEY_LEN || strlen(value) >= VAL_LEN)
        return loco_errf(e, "[%s] %s: too long", section, key);
    snprintf(en->section, sizeof en->section, "%s", section);
    snprintf(en->key, KEY_LEN, "%s", key);
    snprintf(en->value, VAL_LEN, "%s", value);
    en->line = *line;
    return 0;
}

/* --quick: every [quick] entry "SECTION.KEY = value" replaces SECTION's KEY (or adds it) */
/* A bounded string copy between entries of one spec. (snprintf "%s" here: gcc 12's
 * -Wrestrict, once the sanitizer build's -O1 inlines it, takes two entries of one array
 * for an overlap and fails the build.) */
static void copy_str(char *dst, size_t n, const char *src) {
    size_t len = strnlen(src, n - 1);
    memmove(dst, src, len);
    dst[len] = '\0';
}

static int apply_quick(spec *sp, loco_err *e) {
    int n = sp->nentries;
    for (int i = 0; i < n; i++) {
        entry *q = &sp->entries[i];
        if (strcmp(q->section, "quick") != 0) continue;
        char *dot = strchr(q->key, '.');
        if (!dot || dot == q->key || !dot[1])
            return loco_errf(e, "%s:%d: [quick] %s: expected SECTION.KEY, e.g. grid.hetero.level",
                             sp->path, q->line, q->key);
        *dot = '\0';
        const char *section = q->key, *key = dot + 1;
        int found = 0;
        for (int j = 0; j < n; j++) {
            entry *t = &sp->entries[j];
            if (strcmp(t->section, section) || strcmp(t->key, key)) continue;
            copy_str(t->value, VAL_LEN, q->value);
            t->line = q->line;
            found = 1;
        }
        if (!found) {
            if (sp->nentries == MAX_ENTRIES) return loco_errf(e, "%s: too many entries", sp->path);
            entry *t = &sp->entries[sp->nentries++];
            *t = *q;
            copy_str(t->section, sizeof t->section, section);
            snprintf(t->key, KEY_LEN, "%s", key);
        }
        *dot = '.';
    }
    return 0;
}

/* Splits a comma list into out[max][len] (trimmed items); returns the count, -1 when
 * there are more than max or an item is empty or too long. */
static int split_list(const char *list, char *out, int max, size_t len) {
    int n = loco_list_count(list);
    if (n == 0 || n > max) return -1;
    const char *p = list;
    for (int i = 0; i < n; i++) {
        char *item = out + (size_t)i * len;
        if (loco_list_next(&p, item, len) != 0 || !*item) return -1;
    }
    return n;
}

static int list_error(const spec *sp, const entry *en, int max, loco_err *e) {
    return loco_errf(e, "%s:%d: %s = %s: expected a comma-separated list of at most %d "
                     "non-empty items", sp->path, en->line, en->key, en->value, max);
}

/* The items of a list (n of them, len bytes apart) must differ: a value listed twice
 * would run once and then count twice, as if it were two seeds or two cells. */
static int check_distinct(const spec *sp, const entry *en, const char *items, int n, size_t len,
                          loco_err *e) {
    for (int i = 1; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(items + (size_t)i * len, items + (size_t)j * len))
                return loco_errf(e, "%s:%d: %s = %s: '%s' is listed twice (each value runs "
                                 "once; list it once)", sp->path, en->line, en->key, en->value,
                                 items + (size_t)i * len);
    return 0;
}

static int parse_longs(const spec *sp, const entry *en, long *out, int max, loco_err *e) {
    char items[MAX_SEEDS][32];
    int n = split_list(en->value, &items[0][0], max < MAX_SEEDS ? max : MAX_SEEDS, 32);
    if (n < 0) return list_error(sp, en, max, e);
    for (int i = 0; i < n; i++) {
        if (loco_parse_long(items[i], &out[i]) != 0 || out[i] < 0)
            return loco_errf(e, "%s:%d: %s: '%s' is not an integer >= 0", sp->path, en->line,
                             en->key, items[i]);
        snprintf(items[i], sizeof items[i], "%ld", out[i]); /* 7 and 07 are one seed */
    }
    return check_distinct(sp, en, &items[0][0], n, sizeof items[0], e) != 0 ? -1 : n;
}

static int find_variant(const spec *sp, const char *name) {
    for (int i = 0; i < sp->nv; i++)
        if (!strcmp(sp->v[i].name, name)) return i;
    return -1;
}

/* variant names of a list into idx; errors name the unknown one */
static int parse_variants(const spec *sp, const entry *en, int *idx, loco_err *e) {
    char items[MAX_VARIANTS][NAME_LEN];
    int n = split_list(en->value, &items[0][0], MAX_VARIANTS, NAME_LEN);
    if (n < 0) return list_error(sp, en, MAX_VARIANTS, e);
    for (int i = 0; i < n; i++)
        if ((idx[i] = find_variant(sp, items[i])) < 0)
            return loco_errf(e, "%s:%d: %s: no [variant %s] section", sp->path, en->line,
                             en->key, items[i]);
    return check_distinct(sp, en, &items[0][0], n, NAME_LEN, e) != 0 ? -1 : n;
}

static int add_set(const spec *sp, const entry *en, const entry **list, int *n, loco_err *e) {
    if (*n == MAX_SETS) return loco_errf(e, "%s:%d: more than %d keys", sp->path, en->line, MAX_SETS);
    list[(*n)++] = en;
    return 0;
}

static int sweep_key(spec *sp, const entry *en, loco_err *e) {
    if (!strcmp(en->key, "name")) return snprintf(sp->name, NAME_LEN, "%s", en->value), 0;
    if (!strcmp(en->key, "target")) return snprintf(sp->target, NAME_LEN, "%s", en->value), 0;
    if (!strcmp(en->key, "timeline")) return snprintf(sp->timeline, NAME_LEN, "%s", en->value), 0;
    if (!strcmp(en->key, "seeds")) {
        int n = parse_longs(sp, en, sp->seeds, MAX_SEEDS, e);
        return n < 0 ? -1 : (sp->nseeds = n, 0);
    }
    if (!strcmp(en->key, "table")) return 0; /* read once the grid is known */
    return loco_errf(e, "%s:%d: [sweep] %s: unknown key (name, seeds, target, table, timeline)",
                     sp->path, en->line, en->key);
}

static int grid_key(spec *sp, const entry *en, loco_err *e) {
    if (!strcmp(en->key, "variant")) {
        int n = parse_variants(sp, en, sp->grid, e);
        return n < 0 ? -1 : (sp->ngrid = n, 0);
    }
    if (sp->nax == MAX_AXES) return loco_errf(e, "%s:%d: more than %d axes", sp->path, en->line, MAX_AXES);
    axis *a = &sp->ax[sp->nax++];
    copy_str(a->key, KEY_LEN, en->key);
    a->nvalues = split_list(en->value, &a->values[0][0], MAX_VALUES, 64);
    if (a->nvalues < 0) return list_error(sp, en, MAX_VALUES, e);
    return check_distinct(sp, en, &a->values[0][0], a->nvalues, sizeof a->values[0], e);
}

static int tune_key(spec *sp, const entry *en, loco_err *e) {
    if (!strcmp(en->key, "extend")) {
        if (loco_parse_long(en->value, &sp->extend) != 0 || sp->extend < 0 ||
            sp->extend > MAX_EXTEND)
            return loco_errf(e, "%s:%d: extend = %s: expected a count of rates from 0 to %d",
                             sp->path, en->line, en->value, MAX_EXTEND);
        return 0;
    }
    if (strcmp(en->key, "outer.lr") != 0) return add_set(sp, en, sp->tune, &sp->ntune, e);
    char items[MAX_LRS][32];
    int n = split_list(en->value, &items[0][0], MAX_LRS, 32);
    if (n < 0) return list_error(sp, en, MAX_LRS, e);
    for (int i = 0; i < n; i++) {
        if (loco_parse_double(items[i], &sp->lrs[i]) != 0 || !(sp->lrs[i] > 0))
            return loco_errf(e, "%s:%d: outer.lr: '%s' is not a learning rate > 0", sp->path,
                             en->line, items[i]);
    }
    sp->nlrs = n;
    return check_distinct(sp, en, &items[0][0], n, sizeof items[0], e);
}

static int repeat_key(spec *sp, const entry *en, loco_err *e) {
    if (!strcmp(en->key, "variant")) {
        int n = parse_variants(sp, en, sp->rep_variants, e);
        return n < 0 ? -1 : (sp->nrep_variants = n, 0);
    }
    if (!strcmp(en->key, "seeds")) {
        int n = parse_longs(sp, en, sp->rep_seeds, MAX_SEEDS, e);
        return n < 0 ? -1 : (sp->nrep_seeds = n, 0);
    }
    if (sp->nrep_where == MAX_AXES) return loco_errf(e, "%s:%d: too many keys", sp->path, en->line);
    sp->rep_where[sp->nrep_where++] = en;
    return 0;
}

/* the [variant NAME] sections first, so that lists can name them */
static int read_variants(spec *sp, loco_err *e) {
    for (int i = 0; i < sp->nentries; i++) {
        const entry *en = &sp->entries[i];
        if (strncmp(en->section, "variant ", 8) != 0) continue;
        const char *name = en->section + 8;
        int v = find_variant(sp, name);
        if (v < 0) {
            if (sp->nv == MAX_VARIANTS) return loco_errf(e, "%s: more than %d variants", sp->path, MAX_VARIANTS);
            if (strlen(name) >= NAME_LEN || !*name || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(name))
                return loco_errf(e, "%s:%d: variant name '%s': use at most %d of a-z 0-9 - _ .",
                                 sp->path, en->line, name, NAME_LEN - 1);
            v = sp->nv++;
            snprintf(sp->v[v].name, NAME_LEN, "%s", name);
        }
        if (add_set(sp, en, sp->v[v].sets, &sp->v[v].nsets, e) != 0) return -1;
    }
    return 0;
}

static int read_entry(spec *sp, const entry *en, loco_err *e) {
    const char *s = en->section;
    if (!strcmp(s, "sweep")) return sweep_key(sp, en, e);
    if (!strcmp(s, "set")) return add_set(sp, en, sp->base, &sp->nbase, e);
    if (!strcmp(s, "pretrain")) return sp->pretrain = 1, add_set(sp, en, sp->pre, &sp->npre, e);
    if (!strcmp(s, "grid")) return grid_key(sp, en, e);
    if (!strcmp(s, "tune")) return tune_key(sp, en, e);
    if (!strcmp(s, "repeat")) return repeat_key(sp, en, e);
    if (!strcmp(s, "quick") || !strncmp(s, "variant ", 8) || !strncmp(s, "when ", 5)) return 0;
    return loco_errf(e, "%s:%d: unknown section [%s] (sweep, set, pretrain, grid, tune, repeat, "
                     "variant NAME, when KEY=VALUE, quick)", sp->path, en->line, s);
}

/* [when KEY=VALUE]: the axis of KEY and (into *value) the index of VALUE on it; -1 when
 * either is unknown */
static int when_axis(const spec *sp, const entry *en, int *value) {
    char cond[NAME_LEN + 16];
    snprintf(cond, sizeof cond, "%s", en->section + 5);
    char *eq = strchr(cond, '=');
    if (!eq) return -1;
    *eq = '\0';
    char *k = cond, *v = eq + 1, *end = eq;
    while (end > k && end[-1] == ' ') *--end = '\0';
    while (*v == ' ') v++;
    for (int a = 0; a < sp->nax; a++) {
        if (strcmp(sp->ax[a].key, k)) continue;
        for (int i = 0; i < sp->ax[a].nvalues; i++)
            if (!strcmp(sp->ax[a].values[i], v)) {
                if (value) *value = i;
                return a;
            }
    }
    return -1;
}

static const entry *find_entry(const spec *sp, const char *section, const char *key) {
    for (int i = 0; i < sp->nentries; i++)
        if (!strcmp(sp->entries[i].section, section) && !strcmp(sp->entries[i].key, key))
            return &sp->entries[i];
    return NULL;
}

/* [repeat]'s KEY = VALUE, ...: an axis of [grid] and some of its values, so that a typo
 * is an error rather than a cell that silently gets no extra seeds */
static int resolve_repeat(spec *sp, loco_err *e) {
    for (int w = 0; w < sp->nrep_where; w++) {
        const entry *en = sp->rep_where[w];
        int a = 0;
        while (a < sp->nax && strcmp(sp->ax[a].key, en->key)) a++;
        if (a == sp->nax)
            return loco_errf(e, "%s:%d: [repeat] %s: not a key of [grid]", sp->path, en->line, en->key);
        char items[MAX_VALUES][64];
        int n = split_list(en->value, &items[0][0], MAX_VALUES, 64);
        if (n < 0) return list_error(sp, en, MAX_VALUES, e);
        if (check_distinct(sp, en, &items[0][0], n, sizeof items[0], e) != 0) return -1;
        sp->rep_axis[w] = a, sp->rep_values[w] = 0;
        for (int i = 0; i < n; i++) {
            int k = 0;
            while (k < sp->ax[a].nvalues && strcmp(sp->ax[a].values[k], items[i])) k++;
            if (k == sp->ax[a].nvalues)
                return loco_errf(e, "%s:%d: [repeat] %s = %s: '%s' is not one of [grid]'s values",
                                 sp->path, en->line, en->key, en->value, items[i]);
            sp->rep_values[w] |= 1u << k;
        }
    }
    return 0;
}

/* what needs the whole spec: the table's axis, the target and timeline variants */
static int finish_spec(spec *sp, loco_err *e) {
    if (sp->ngrid == 0) return loco_errf(e, "%s: [grid] needs variant = NAME, ...", sp->path);
    if (sp->nseeds == 0) sp->seeds[sp->nseeds++] = 1;
    if (!sp->name[0]) snprintf(sp->name, NAME_LEN, "sweep");
    const entry *t = find_entry(sp, "sweep", "table");
    sp->table = -1;
    for (int a = 0; t && a < sp->nax; a++)
        if (!strcmp(sp->ax[a].key, t->value)) sp->table = a;
    if (t && sp->table < 0)
        return loco_errf(e, "%s:%d: table = %s: not a key of [grid]", sp->path, t->line, t->value);
    if (!t && sp->nax > 0) sp->table = 0;
    for (int i = 0; i < sp->nentries; i++)
        if (!strncmp(sp->entries[i].section, "when ", 5) && when_axis(sp, &sp->entries[i], NULL) < 0)
            return loco_errf(e, "%s:%d: [%s]: expected [when KEY=VALUE] with KEY a key of [grid] "
                             "and VALUE one of its values", sp->path, sp->entries[i].line,
                             sp->entries[i].section);
    if (resolve_repeat(sp, e) != 0) return -1;
    const char *names[] = {sp->target, sp->timeline};
    for (int i = 0; i < 2; i++)
        if (names[i][0] && find_variant(sp, names[i]) < 0)
            return loco_errf(e, "%s: [sweep] %s: no [variant %s] section", sp->path,
                             i ? "timeline" : "target", names[i]);
    return 0;
}

static int read_spec(spec *sp, const char *path, int quick, loco_err *e) {
    memset(sp, 0, sizeof *sp);
    sp->path = path;
    if (loco_ini_parse_file(path, on_raw, sp, e) != 0) return -1;
    if (quick && apply_quick(sp, e) != 0) return -1;
    if (read_variants(sp, e) != 0) return -1;
    for (int i = 0; i < sp->nentries; i++)
        if (read_entry(sp, &sp->entries[i], e) != 0) return -1;
    return finish_spec(sp, e);
}

/* ------------------------------------------------------------------- runs */

enum { RUN_PRETRAIN, RUN_TUNE, RUN_MAIN };

typedef struct run {
    int kind;
    int variant;
    int vals[MAX_AXES];          /* value index on each axis */
    long seed;
    double lr;                   /* tune: the rate tried; main: the rate chosen (0: the config's) */
    loco_config cfg;
    char *text;                  /* the resolved config */
    char dir[LOCO_PATH_LEN];
    char label[160];
    int done;                    /* ended (finished, incomplete, diverged), now or before */
    int busy;                    /* not run: another process held its directory's lock */
    struct run *alias;           /* the same run as this earlier one (same directory) */
    loco_runlog log;
} run;

typedef struct {
    spec sp;
    const loco_sweep_opts *o;
    char out[LOCO_PATH_LEN];
    char init[LOCO_PATH_LEN];    /* theta(0): the pre-training's model.bin, or "" */
    run *runs;
    int nruns, cap;
    int npre, skipped, ran;
    loco_runlock lock;           /* of out, while the sweep runs */
} sweep;

static int apply_entry(loco_config *c, const spec *sp, const entry *en, loco_err *e) {
    char set[KEY_LEN + VAL_LEN + 2];
    snprintf(set, sizeof set, "%s=%s", en->key, en->value);
    loco_err why;
    if (loco_config_set(c, set, &why) != 0)
        return loco_errf(e, "%s:%d: %s", sp->path, en->line, why.msg + (strncmp(why.msg, "--set ", 6) ? 0 : 6));
    return 0;
}

static int apply_value(loco_config *c, const char *key, const char *value, loco_err *e) {
    char set[KEY_LEN + 80];
    snprintf(set, sizeof set, "%s=%s", key, value);
    return loco_config_set(c, set, e);
}

static int apply_all(loco_config *c, const spec *sp, const entry *const *list, int n, loco_err *e) {
    for (int i = 0; i < n; i++)
        if (apply_entry(c, sp, list[i], e) != 0) return -1;
    return 0;
}

static void label_of(const sweep *sw, run *r) {
    const spec *sp = &sw->sp;
    size_t n = 0;
    if (r->kind == RUN_PRETRAIN) {
        snprintf(r->label, sizeof r->label, "pretrain");
        return;
    }
    n += (size_t)snprintf(r->label + n, sizeof r->label - n, "%s", sp->v[r->variant].name);
    for (int a = 0; a < sp->nax && n < sizeof r->label; a++)
        if (sp->ax[a].nvalues > 1 || a == sp->table)
            n += (size_t)snprintf(r->label + n, sizeof r->label - n, "-%s", sp->ax[a].values[r->vals[a]]);
    if (n < sizeof r->label && r->kind == RUN_TUNE)
        n += (size_t)snprintf(r->label + n, sizeof r->label - n, "-lr%g", r->lr);
    else if (n < sizeof r->label)
        snprintf(r->label + n, sizeof r->label - n, "-s%ld", r->seed);
}

/* single trains one replica: heterogeneity means nothing to it, so runs that differ only
 * there are one run */
static void normalise(loco_config *c) {
    if (loco_outer_method_of(c->outer.method)->engine) return;
    loco_config d;
    loco_config_default(&d);
    c->hetero = d.hetero;
}

/* A config's identity: its keys that are not at their defaults (so runs made before a
 * key was added are still found). NULL when out of memory. */
static char *identity(const loco_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    int rc = loco_config_write_changes(c, f);
    fclose(f);
    if (rc != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int resolve(sweep *sw, run *r, loco_err *e) {
    r->text = identity(&r->cfg);
    if (!r->text) return loco_errf(e, "out of memory");
    uint64_t h = loco_hash64(r->text, strlen(r->text));
    if (r->kind != RUN_PRETRAIN) h = loco_hash64_more(h, sw->init, strlen(sw->init));
    /* named by what the run is, not by its place in the grid: cells that are the same run
     * (single at every heterogeneity level, say) share one directory */
    char name[NAME_LEN + 32];
    if (r->kind == RUN_PRETRAIN) snprintf(name, sizeof name, "pretrain");
    else if (r->kind == RUN_TUNE) snprintf(name, sizeof name, "tune/%s-lr%g", sw->sp.v[r->variant].name, r->lr);
    else snprintf(name, sizeof name, "runs/%s", sw->sp.v[r->variant].name);
    snprintf(r->dir, sizeof r->dir, "%.900s/%s-%08llx", sw->out, name,
             (unsigned long long)(h & 0xffffffffULL));
    return 0;
}

/* A run's config: [set], then its phase's keys; validated, with the spec's lines in errors. */
static int build(sweep *sw, run *r, loco_err *e) {
    const spec *sp = &sw->sp;
    loco_config *c = &r->cfg;
    loco_config_default(c);
    if (apply_all(c, sp, sp->base, sp->nbase, e) != 0) return -1;
    if (r->kind == RUN_PRETRAIN) {
        /* theta(0)'s batches are none of the workers' (their streams are 0, 1, ...): a
         * run's worker 0 would otherwise replay the pre-training's batches in order */
        c->data.first_stream = 1L << 20;
        if (apply_all(c, sp, sp->pre, sp->npre, e) != 0) return -1;
        c->outer.method = LOCO_METHOD_SINGLE;
        c->run.workers = 1;
    } else {
        const variant *v = &sp->v[r->variant];
        if (apply_all(c, sp, v->sets, v->nsets, e) != 0) return -1;
        for (int a = 0; a < sp->nax; a++)
            if (apply_value(c, sp->ax[a].key, sp->ax[a].values[r->vals[a]], e) != 0) return -1;
        for (int i = 0; i < sp->nentries; i++) {
            const entry *w = &sp->entries[i];
            int value, a = strncmp(w->section, "when ", 5) ? -1 : when_axis(sp, w, &value);
            if (a >= 0 && r->vals[a] == value && apply_entry(c, sp, w, e) != 0) return -1;
        }
        c->run.seed = r->seed;
        if (r->kind == RUN_TUNE && apply_all(c, sp, sp->tune, sp->ntune, e) != 0) return -1;
        /* a rate is chosen on validation windows the reported figures never use */
        c->eval.set = r->kind == RUN_TUNE ? LOCO_VAL_TUNE : LOCO_VAL_REPORT;
        if (r->lr > 0) c->outer.lr = r->lr;
    }
    normalise(c);
    label_of(sw, r);
    loco_err why;
    if (loco_config_validate(c, &why) != 0) return loco_errf(e, "run %s: %s", r->label, why.msg);
    return resolve(sw, r, e);
}

static run *add_run(sweep *sw, int kind, int vi, const int *vals, long seed, double lr) {
    if (sw->nruns == sw->cap) {
        run *nr = realloc(sw->runs, sizeof *nr * (size_t)(sw->cap = sw->cap * 2 + 16));
        if (!nr) return NULL;
        sw->runs = nr;
    }
    run *r = &sw->runs[sw->nruns++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->variant = vi;
    if (vals) memcpy(r->vals, vals, sizeof r->vals);
    r->seed = seed;
    r->lr = lr;
    return r;
}

/* does the cell (variant, vals) get [repeat]'s extra seeds */
static int repeated(const spec *sp, int vi, const int *vals) {
    int hit = 0;
    for (int i = 0; i < sp->nrep_variants; i++) hit |= sp->rep_variants[i] == vi;
    for (int w = 0; hit && w < sp->nrep_where; w++)
        hit = (sp->rep_values[w] >> vals[sp->rep_axis[w]]) & 1u;
    return hit;
}

/* the next combination of axis values (odometer); 0 after the last */
static int next_vals(const spec *sp, int *vals) {
    for (int a = sp->nax - 1; a >= 0; a--) {
        if (++vals[a] < sp->ax[a].nvalues) return 1;
        vals[a] = 0;
    }
    return 0;
}

/* whether the variant's outer learning rate is tuned: not when it sets one, nor for
 * single, which has none; the runs' configs say which method a variant is */
static int tuned(const sweep *sw, int vi) {
    const spec *sp = &sw->sp;
    const variant *v = &sp->v[vi];
    for (int i = 0; i < sw->nruns; i++)
        if (sw->runs[i].variant == vi && sw->runs[i].kind == RUN_MAIN && sw->runs[i].text &&
            !loco_outer_method_of(sw->runs[i].cfg.outer.method)->engine)
            return 0;
    for (int i = 0; i < v->nsets; i++)
        if (!strcmp(v->sets[i]->key, "outer.lr")) return 0;
    return sp->nlrs > 0;
}

/* every run of the grid, for every seed (and [repeat]'s) */
static int expand_main(sweep *sw, loco_err *e) {
    const spec *sp = &sw->sp;
    for (int g = 0; g < sp->ngrid; g++) {
        int v = sp->grid[g], vals[MAX_AXES] = {0};
        do {
            for (int s = 0; s < sp->nseeds; s++)
                if (!add_run(sw, RUN_MAIN, v, vals, sp->seeds[s], 0)) goto oom;
            for (int s = 0; repeated(sp, v, vals) && s < sp->nrep_seeds; s++)
                if (!add_run(sw, RUN_MAIN, v, vals, sp->rep_seeds[s], 0)) goto oom;
        } while (next_vals(sp, vals));
    }
    return 0;
oom:
    return loco_errf(e, "out of memory");
}

/* the tuning runs of every cell of a tuned variant, with the first seed */
static int expand_tune(sweep *sw, loco_err *e) {
    const spec *sp = &sw->sp;
    for (int g = 0; g < sp->ngrid; g++) {
        int v = sp->grid[g], vals[MAX_AXES] = {0};
        if (!tuned(sw, v)) continue;
        do {
            for (int l = 0; l < sp->nlrs; l++)
                if (!add_run(sw, RUN_TUNE, v, vals, sp->seeds[0], sp->lrs[l])) goto oom;
        } while (next_vals(sp, vals));
    }
    return 0;
oom:
    return loco_errf(e, "out of memory");
}

/* ------------------------------------------------------------- execution */

/* A child that could not take its run directory's lock exits with this (EX_TEMPFAIL):
 * the run is not run, and its directory is left as it was. */
enum { CHILD_BUSY = 75 };

static const char *const checkpoints[] = {"checkpoint.bin", "checkpoint.prev.bin"};

/* An ending that is the run's result: finished, incomplete (every worker failed for
 * good, as its config has them do) or failed (diverged). A stopped run is not over. */
static int ended(const char *status) {
    return !strcmp(status, "finished") || !strcmp(status, "incomplete") ||
           !strcmp(status, "failed");
}

/* Emptying a run directory for a fresh start: everything but the directory and its lock
 * file, which the child holds (a new file would be a second, unheld lock). */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag;
    if (ftw->level == 0 || (ftw->level == 1 && !strcmp(path + ftw->base, LOCO_RUNLOCK_FILE)))
        return 0;
    return remove(path);
}

enum { DIR_NEW, DIR_ENDED, DIR_CUT };

/* What a run's directory holds of it: the run ended (its config.ini of the same identity
 * and a summary that says so), or cut short (stopped, or killed without a summary) with
 * a checkpoint to go on from; or nothing of use (DIR_NEW: it starts afresh). */
static int dir_state(const run *r) {
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/config.ini", r->dir);
    loco_config stored;
    loco_config_default(&stored);
    loco_err e;
    if (loco_config_load_file(&stored, path, &e) != 0) return DIR_NEW;
    char *text = identity(&stored);
    int same = text && !strcmp(text, r->text);
    free(text);
    if (!same) return DIR_NEW;
    char status[16];
    if (loco_runlog_status(r->dir, status, sizeof status, &e) == 0 && ended(status))
        return DIR_ENDED;
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", r->dir, checkpoints[i]);
        if (access(path, F_OK) == 0) return DIR_CUT;
    }
    return DIR_NEW;
}

/* A run is done when its directory holds its result (read into r->log). */
static int done_before(run *r) {
    loco_err e;
    return dir_state(r) == DIR_ENDED && loco_runlog_read(r->dir, &r->log, &e) == 0;
}

/* Whether one of the cut run's checkpoints reads; if none does, why not into why. */
static int checkpoint_reads(const char *dir, char *why, size_t n) {
    size_t k = 0;
    why[0] = '\0';
    for (int i = 0; i < 2; i++) {
        char path[LOCO_PATH_LEN + 32], where[512];
        loco_err e;
        snprintf(path, sizeof path, "%s/%s", dir, checkpoints[i]);
        if (access(path, F_OK) != 0) continue;
        if (loco_checkpoint_describe(path, where, sizeof where, &e) == 0) return 1;
        if (k < n) k += (size_t)snprintf(why + k, n - k, "%s%s", k ? "; " : "", e.msg);
    }
    return 0;
}

/* The run, in the directory the child holds the lock of. Resumed, its config is its own
 * config.ini (what the checkpoint's hash was taken of) and theta comes from the
 * checkpoint; afresh, the sweep's config and theta(0). */
static int train_child(const sweep *sw, run *r, int resume, loco_err *e) {
    loco_config stored, *c = &r->cfg;
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = r->dir;
    o.stop = sw->o->stop;
    o.locked = 1;
    o.resume = resume;
    if (resume) {
        char path[LOCO_PATH_LEN + 32];
        snprintf(path, sizeof path, "%s/config.ini", r->dir);
        loco_config_default(&stored);
        if (loco_config_load_file(&stored, path, e) != 0) return -1;
        c = &stored;
    } else {
        o.init_path = r->kind == RUN_PRETRAIN || !sw->init[0] ? NULL : sw->init;
    }
    return loco_train(c, &o, e);
}

/* The child: the run directory's lock before anything in it is touched (held by another
 * process: nothing is), then the run resumed when it was cut short with a checkpoint
 * that reads, else started afresh in the emptied directory; its stderr goes to log.txt. */
static void child(sweep *sw, run *r) {
    loco_err e;
    loco_runlock lock = {0};
    /* the sweep's own lock came with the fork: let go of this copy, or the sweep's
     * directory stays locked while this run goes on after the sweep is gone */
    loco_runlock_release(&sw->lock);
    if (loco_mkdirs(r->dir, &e) != 0) {
        fprintf(stderr, "loco: %s\n", e.msg);
        _exit(1);
    }
    if (loco_runlock_take(&lock, r->dir, "sweep run", &e) != 0) {
        fprintf(stderr, "sweep: %s: %s\n", r->label, e.msg);
        _exit(CHILD_BUSY);
    }
    char why[2 * LOCO_ERR_LEN], path[LOCO_PATH_LEN + 16];
    int cut = dir_state(r) == DIR_CUT, resume = cut && checkpoint_reads(r->dir, why, sizeof why);
    if (!resume) nftw(r->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(path, sizeof path, "%s/log.txt", r->dir);
    if (!freopen(path, resume ? "a" : "w", stderr)) _exit(1);
    if (resume) fprintf(stderr, "loco: sweep: resuming the run from its checkpoint\n");
    if (cut && !resume)
        fprintf(stderr, "loco: sweep: the run was cut short, but no checkpoint of it reads "
                "(%s); it starts again from scratch\n", why);
    int rc = train_child(sw, r, resume, &e);
    if (rc != 0) fprintf(stderr, "loco: %s\n", e.msg);
    fflush(stderr);
    _exit(rc != 0);
}

static int stopping(const sweep *sw) {
    return sw->o->stop && *sw->o->stop;
}

/* A run's status in the results: its summary's, or what kept it from having one. */
static const char *status_of(const run *r) {
    const run *s = r->alias ? r->alias : r;
    if (s->busy) return "not run";
    return s->log.status[0] ? s->log.status : "crashed";
}

/* A child has ended (code: its exit code, -1 when a signal ended it): its run read back
 * and its status said. Only a run that ended counts as done; a stopped one goes on at
 * the next sweep, from its checkpoint. */
static void report_run(sweep *sw, run *r, int code, double secs, int index, int total) {
    loco_err e;
    r->busy = code == CHILD_BUSY;
    if (r->busy || loco_runlog_read(r->dir, &r->log, &e) != 0) memset(&r->log, 0, sizeof r->log);
    r->done = ended(r->log.status);
    const char *status = status_of(r);
    if (r->busy) status = "not run: its directory is in use by another process (above)";
    else if (!r->log.status[0]) status = "crashed (see its log.txt)";
    else if (!strcmp(status, "stopped")) status = "stopped (the next sweep goes on with it)";
    char val[64] = "";
    if (r->log.final_val_loss > 0)
        snprintf(val, sizeof val, ", val loss %.4f (ppl %.4g)", r->log.final_val_loss,
                 r->log.final_val_ppl);
    fprintf(stderr, "sweep: [%d/%d] %s: %s%s in %.0fs\n", index, total, r->label, status, val,
            secs);
    if (r->done) sw->ran++;
}

/* Runs list[0..n) that are not done, jobs at a time; returns -1 when stopped. */
static int execute(sweep *sw, run **list, int n) {
    pid_t pid[64];
    run *who[64];
    double started[64];
    int busy = 0, next = 0, total = 0, index = 0;
    int jobs = sw->o->jobs < 64 ? sw->o->jobs : 64;
    for (int i = 0; i < n; i++) {
        list[i]->alias = NULL;
        for (int j = 0; j < i && !list[i]->alias; j++)
            if (!strcmp(list[j]->dir, list[i]->dir)) list[i]->alias = list[j]->alias ? list[j]->alias : list[j];
        if (list[i]->alias || list[i]->done) continue; /* done: in an earlier round of these */
        if (done_before(list[i])) {
            list[i]->done = 1;
            sw->skipped++;
        } else {
            total++;
        }
    }
    while (next < n || busy > 0) {
        while (busy < jobs && next < n && !stopping(sw)) {
            run *r = list[next++];
            if (r->done || r->alias) continue;
            fflush(NULL);
            pid_t p = fork();
            if (p == 0) child(sw, r);
            if (p < 0) {
                fprintf(stderr, "sweep: cannot start %s: %s\n", r->label, strerror(errno));
                continue;
            }
            pid[busy] = p, who[busy] = r, started[busy] = loco_now();
            busy++;
        }
        if (busy == 0) break;
        int st;
        pid_t p = wait(&st);
        if (p < 0 && errno == EINTR) {
            for (int k = 0; k < busy; k++) kill(pid[k], SIGINT);
            continue;
        }
        for (int k = 0; k < busy; k++) {
            if (pid[k] != p) continue;
            report_run(sw, who[k], WIFEXITED(st) ? WEXITSTATUS(st) : -1, loco_now() - started[k],
                       ++index, total);
            busy--;
            pid[k] = pid[busy], who[k] = who[busy], started[k] = started[busy];
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        run *r = list[i];
        loco_err e;
        if (r->alias && r->alias->done && loco_runlog_read(r->dir, &r->log, &e) == 0) r->done = 1;
    }
    return stopping(sw) ? -1 : 0;
}

static int execute_kind(sweep *sw, int kind) {
    run **list = malloc(sizeof *list * (size_t)(sw->nruns + 1));
    if (!list) return -1;
    int n = 0;
    for (int i = 0; i < sw->nruns; i++)
        if (sw->runs[i].kind == kind) list[n++] = &sw->runs[i];
    int rc = execute(sw, list, n);
    free(list);
    return rc;
}

/* ------------------------------------------------------------- the phases */

/* the runs of one kind built again (after theta(0) or their rates are known) */
static int rebuild(sweep *sw, int kind, loco_err *e) {
    for (int i = 0; i < sw->nruns; i++) {
        run *r = &sw->runs[i];
        if (r->kind != kind) continue;
        free(r->text);
        r->text = NULL;
        if (build(sw, r, e) != 0) return -1;
    }
    return 0;
}

static int pretrain(sweep *sw, loco_err *e) {
    if (!sw->sp.pretrain) return 0;
    run *r = add_run(sw, RUN_PRETRAIN, 0, NULL, 0, 0);
    if (!r || build(sw, r, e) != 0) return -1;
    if (dir_state(r) == DIR_ENDED)
        fprintf(stderr, "sweep: theta(0) made before: %s\n", r->dir);
    else
        fprintf(stderr, "sweep: pre-training theta(0): %ld steps, one worker\n", r->cfg.train.steps);
    if (execute_kind(sw, RUN_PRETRAIN) != 0) return loco_errf(e, "stopped");
    if (!r->done || strcmp(r->log.status, "finished"))
        return loco_errf(e, "the pre-training failed: see %s/log.txt", r->dir);
    snprintf(sw->init, sizeof sw->init, "%.1000s/model.bin", r->dir);
    return rebuild(sw, RUN_TUNE, e); /* their directories name theta(0) now */
}

static int same_cell(const spec *sp, const run *a, const run *b) {
    if (a->variant != b->variant) return 0;
    for (int x = 0; x < sp->nax; x++)
        if (a->vals[x] != b->vals[x]) return 0;
    return 1;
}

static double loss_of(const run *r) {
    return r->done && !strcmp(r->log.status, "finished") && isfinite(r->log.final_val_loss)
               ? r->log.final_val_loss : INFINITY;
}

/* The best of the cell's tuning runs (lowest final loss; the first tried on a tie), and
 * the lowest and highest rates tried; NULL when the cell has none. */
static const run *best_of_cell(const sweep *sw, const run *cell, double *lo, double *hi) {
    const run *best = NULL;
    *lo = INFINITY, *hi = 0;
    for (int j = 0; j < sw->nruns; j++) {
        const run *t = &sw->runs[j];
        if (t->kind != RUN_TUNE || !same_cell(&sw->sp, t, cell)) continue;
        *lo = fmin(*lo, t->lr), *hi = fmax(*hi, t->lr);
        if (!best || loss_of(t) < loss_of(best)) best = t;
    }
    return best;
}

/* The rate one step beyond the end of the cell's tried rates that `at` is (the ratio of
 * its two outermost rates again, to two significant digits), or 0 when the cell may not
 * go further: [tune] extend rates beyond the spec's grid on each side at most. */
static double beyond(const sweep *sw, const run *cell, double at, int up) {
    const spec *sp = &sw->sp;
    double lo = INFINITY, hi = 0, next = up ? 0 : INFINITY; /* the spec's ends; at's neighbour */
    for (int l = 0; l < sp->nlrs; l++) lo = fmin(lo, sp->lrs[l]), hi = fmax(hi, sp->lrs[l]);
    int outside = 0;
    for (int j = 0; j < sw->nruns; j++) {
        const run *t = &sw->runs[j];
        if (t->kind != RUN_TUNE || !same_cell(sp, t, cell)) continue;
        outside += up ? t->lr > hi : t->lr < lo;
        if (t->lr != at) next = up ? fmax(next, t->lr) : fmin(next, t->lr);
    }
    if (outside >= sp->extend || !isfinite(next) || next <= 0) return 0;
    char v[32];
    snprintf(v, sizeof v, "%.2g", at * at / next);
    return strtod(v, NULL);
}

/* [tune] extend: while a cell's best rate is the lowest or the highest it tried, it tries
 * the next rate beyond, so the rate chosen is inside the rates tried (or the page says it
 * is not). Each round runs the new rates of every cell together. */
static int extend_rates(sweep *sw, loco_err *e) {
    for (int added = 1; added && sw->sp.extend > 0;) {
        added = 0;
        int n = sw->nruns;
        for (int i = 0; i < n; i++) {
            run *c = &sw->runs[i];
            int first = c->kind == RUN_TUNE;
            for (int j = 0; j < i && first; j++)
                first = !(sw->runs[j].kind == RUN_TUNE && same_cell(&sw->sp, &sw->runs[j], c));
            double lo, hi;
            const run *best = first ? best_of_cell(sw, c, &lo, &hi) : NULL;
            if (!best || !isfinite(loss_of(best)) || lo == hi) continue;
            double lr = best->lr == lo ? beyond(sw, c, lo, 0) : best->lr == hi ? beyond(sw, c, hi, 1) : 0;
            if (lr <= 0) continue;
            int variant = c->variant, vals[MAX_AXES];
            long seed = c->seed;
            memcpy(vals, c->vals, sizeof vals);
            run *r = add_run(sw, RUN_TUNE, variant, vals, seed, lr); /* c may move */
            if (!r) return loco_errf(e, "out of memory");
            if (build(sw, r, e) != 0) return -1;
            fprintf(stderr, "sweep: %s: the best rate is at the end of those tried: trying %g\n",
                    r->label, lr);
            added++;
        }
        if (added && execute_kind(sw, RUN_TUNE) != 0) return loco_errf(e, "stopped");
    }
    return 0;
}

/* each main run gets the rate its cell's tuning runs found best (lowest final loss; the
 * smaller rate on a tie) */
static int choose_rates(sweep *sw, loco_err *e) {
    for (int i = 0; i < sw->nruns; i++) {
        run *m = &sw->runs[i];
        if (m->kind != RUN_MAIN || !tuned(sw, m->variant)) continue;
        double lo, hi;
        const run *best = best_of_cell(sw, m, &lo, &hi);
        if (!best || !isfinite(loss_of(best)))
            return loco_errf(e, "%s: every outer learning rate tried failed", m->label);
        m->lr = best->lr;
    }
    return rebuild(sw, RUN_MAIN, e);
}

/* A run's input checked as its child will check it (loco_train_check: the config, the
 * data file, the memory), before anything runs. A relative data.path is read from the
 * current directory, not the spec's: a message about it names that directory. */
static int check_run(const run *r, loco_err *e) {
    loco_config c = r->cfg;
    loco_train_opts o;
    loco_train_opts_default(&o);
    loco_err why;
    if (loco_train_check(&c, &o, &why) == 0) return 0;
    char cwd[LOCO_PATH_LEN], note[LOCO_PATH_LEN + 80] = "";
    if (c.data.path[0] != '/' && strstr(why.msg, c.data.path) && getcwd(cwd, sizeof cwd))
        snprintf(note, sizeof note, " (data.path is relative: read from %s, the current "
                 "directory)", cwd);
    return loco_errf(e, "run %s: %.700s%s", r->label, why.msg, note);
}

/* every distinct config among the runs, and the pre-training's (probe) */
static int check_runs(const sweep *sw, const run *probe, loco_err *e) {
    if (probe && check_run(probe, e) != 0) return -1;
    for (int i = 0; i < sw->nruns; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(sw->runs[j].text, sw->runs[i].text);
        if (!seen && check_run(&sw->runs[i], e) != 0) return -1;
    }
    return 0;
}

/* Every run's config, built and checked now: a mistake anywhere is found before anything
 * runs. The main runs are built again once their rates are chosen (their directories
 * depend on theta(0) and the rate). */
static int plan(sweep *sw, loco_err *e) {
    run probe = {.kind = RUN_PRETRAIN};  /* the pre-training's config, built first */
    int rc = sw->sp.pretrain ? build(sw, &probe, e) : 0;
    if (rc == 0) rc = expand_main(sw, e);
    for (int i = 0; rc == 0 && i < sw->nruns; i++) rc = build(sw, &sw->runs[i], e);
    int mains = sw->nruns;
    if (rc == 0) rc = expand_tune(sw, e);
    for (int i = mains; rc == 0 && i < sw->nruns; i++) rc = build(sw, &sw->runs[i], e);
    if (rc == 0) rc = check_runs(sw, sw->sp.pretrain ? &probe : NULL, e);
    free(probe.text);
    if (rc != 0) return -1;
    fprintf(stderr, "sweep: %s: %d variants, %d runs, %d outer-lr tuning runs%s\n", sw->sp.name,
            sw->sp.ngrid, mains, sw->nruns - mains, sw->sp.pretrain ? ", after pre-training" : "");
    return 0;
}

/* ------------------------------------------------------------------ results */

/* the row of a run: its variant, and the values of the axes other than the table's that
 * take several values */
static void row_of(const sweep *sw, const run *r, char *buf, size_t n) {
    const spec *sp = &sw->sp;
    size_t k = (size_t)snprintf(buf, n, "%s", sp->v[r->variant].name);
    for (int a = 0; a < sp->nax && k < n; a++)
        if (a != sp->table && sp->ax[a].nvalues > 1)
            k += (size_t)snprintf(buf + k, n - k, " %s=%s", sp->ax[a].key, sp->ax[a].values[r->vals[a]]);
}

/* The distinct values of one of the runs' recorded strings (the runlog field at off), as
 * their summaries say: a sweep resumed on another machine or build can have several.
 * Appends "what v1, v2. " (or "what not recorded. "); returns the length written. */
static size_t distinct_of(const sweep *sw, size_t off, const char *what, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "%s", what);
    int listed = 0;
    for (int i = 0; i < sw->nruns && k < n; i++) {
        const char *v = (const char *)&sw->runs[i].log + off;
        int seen = !sw->runs[i].done || !v[0];
        for (int j = 0; j < i && !seen; j++)
            seen = sw->runs[j].done && !strcmp((const char *)&sw->runs[j].log + off, v);
        if (!seen) k += (size_t)snprintf(buf + k, n - k, "%s %s", listed++ ? "," : "", v);
    }
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "%s. ", listed ? "" : " not recorded");
    return k < n ? k : n;
}

/* What the runs ran on and with: precision, kernel sets, CPUs, commits. */
static size_t machine_of(const sweep *sw, const loco_config *c, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "Products in %s. ",
                                loco_enum_name(loco_precision_names, loco_config_precision(c, NULL, 0)));
    if (k < n) k += distinct_of(sw, offsetof(loco_runlog, blas_core), "OpenBLAS kernels:", buf + k, n - k);
    if (k < n) k += distinct_of(sw, offsetof(loco_runlog, cpu), "CPU:", buf + k, n - k);
    if (k < n) k += distinct_of(sw, offsetof(loco_runlog, commit), "loco commit:", buf + k, n - k);
    return k < n ? k : n;
}

/* ", standard error 0.0012 to 0.0034" over the finished main runs' final figures, or "" */
static const char *se_of(const sweep *sw, char *buf, size_t n) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < sw->nruns; i++) {
        const run *r = &sw->runs[i];
        if (r->kind != RUN_MAIN || !r->done || !isfinite(r->log.final_val_se)) continue;
        lo = fmin(lo, r->log.final_val_se);
        hi = fmax(hi, r->log.final_val_se);
    }
    if (!isfinite(lo)) snprintf(buf, n, "%s", "");
    else snprintf(buf, n, " (standard error of a run's final loss %.4f to %.4f)", lo, hi);
    return buf;
}

/* What was run, for the results' first paragraph: from the first main run's config. */
static void settings_of(const sweep *sw, char *buf, size_t n) {
    const run *r = NULL;
    for (int i = 0; i < sw->nruns && !r; i++)
        if (sw->runs[i].kind == RUN_MAIN) r = &sw->runs[i];
    const loco_config *c = &r->cfg;
    char se[96];
    size_t k = (size_t)snprintf(buf, n,
        "Model: %ld layers x %ld wide, %ld heads, context %ld, byte-level tokens; batches of "
        "%ld x %ld tokens per inner step. ", c->model.layers, c->model.dim, c->model.heads,
        c->model.seq_len, c->train.batch, c->model.seq_len);
    for (int i = 0; i < sw->nruns && k < n; i++)
        if (sw->runs[i].kind == RUN_PRETRAIN)
            k += (size_t)snprintf(buf + k, n - k, "theta(0): %ld steps of one worker. ",
                                  sw->runs[i].cfg.train.steps);
    if (k < n)
        k += (size_t)snprintf(buf + k, n - k,
            "Each run: %ld local steps summed over the workers, H = %ld, outer momentum %g, %s "
            "clock, inner schedule by the %s's progress (train.lr_progress = %s), grace windows "
            "closing %s; evaluated every %ld local steps on %ld validation batches of %ld "
            "windows; the final figure on %ld windows, the even-numbered validation windows%s. ",
            loco_config_total_local_steps(c), c->outer.local_steps, c->outer.momentum,
            loco_enum_name(loco_clock_kinds, c->run.clock),
            loco_enum_name(loco_lr_progress_names, c->train.lr_progress),
            loco_enum_name(loco_lr_progress_names, c->train.lr_progress),
            c->outer.grace_close == LOCO_GRACE_ALL ? "once every live worker has joined"
                                                   : "at their deadline",
            c->eval.every_local_steps, c->eval.batches, c->train.batch,
            loco_config_final_batches(c) * c->train.batch, se_of(sw, se, sizeof se));
    if (k < n) k += machine_of(sw, c, buf + k, n - k);
    const run *t = NULL;
    for (int i = 0; i < sw->nruns && !t; i++)
        if (sw->runs[i].kind == RUN_TUNE) t = &sw->runs[i];
    if (k < n && t) {
        k += (size_t)snprintf(buf + k, n - k, "Outer learning rate chosen per variant and "
                              "column from {");
        for (int i = 0; i < sw->sp.nlrs && k < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%s%g", i ? ", " : "", sw->sp.lrs[i]);
        if (k < n) snprintf(buf + k, n - k, "} by the final loss of a short run (seed %ld, %ld "
                            "local steps, its inner schedule spanning them), scored on the "
                            "odd-numbered validation windows, which the figures here never use.",
                            t->seed, loco_config_total_local_steps(&t->cfg));
    }
}

/* s for a POSIX shell: as it is when it has nothing the shell reads, else in single
 * quotes (a quote inside as '\'') */
static size_t shell_word(char *buf, size_t n, const char *s) {
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-=+,";
    if (*s && strspn(s, plain) == strlen(s))
        return (size_t)snprintf(buf, n, " %s", s);
    size_t k = (size_t)snprintf(buf, n, " '");
    for (; *s && k < n; s++) k += (size_t)(*s == '\'' ? snprintf(buf + k, n - k, "'\\''")
                                                   : snprintf(buf + k, n - k, "%c", *s));
    return k < n ? k + (size_t)snprintf(buf + k, n - k, "'") : k;
}

/* The command that makes a finished main run again, bit for bit: its recorded config from
 * the same theta(0) on the BLAS kernels it ran on (they decide the bits), into
 * DIR/rerun/NAME; "" for a run without a result. */
static void rerun_of(const sweep *sw, const run *r, char *buf, size_t n) {
    buf[0] = '\0';
    if (!r->done || !r->log.status[0]) return;
    char config[LOCO_PATH_LEN + 16], out[2 * LOCO_PATH_LEN];
    snprintf(config, sizeof config, "%s/config.ini", r->dir);
    snprintf(out, sizeof out, "%s/rerun/%s", sw->out, strrchr(r->dir, '/') + 1);
    size_t k = 0;
    if (r->log.blas_core[0]) k = (size_t)snprintf(buf, n, "OPENBLAS_CORETYPE=%s", r->log.blas_core);
    const char *words[8] = {"./loco", "train", "-c", config};
    int nw = 4;
    if (sw->init[0]) words[nw++] = "--init", words[nw++] = sw->init;
    words[nw++] = "--out", words[nw++] = out;
    for (int i = 0; i < nw && k < n; i++) k += shell_word(buf + k, n - k, words[i]);
    if (buf[0] == ' ') memmove(buf, buf + 1, strlen(buf));
}

/* Every main and tuning run, each with its status; the figures of those that ended. */
static int write_results(sweep *sw, loco_err *e) {
    static const loco_runlog no_log; /* a run with no result: no figures, no curve */
    const spec *sp = &sw->sp;
    loco_result *res = calloc((size_t)sw->nruns, sizeof *res);
    char (*rows)[128] = calloc((size_t)sw->nruns, sizeof *rows);
    char (*reruns)[4 * LOCO_PATH_LEN] = calloc((size_t)sw->nruns, sizeof *reruns);
    const char **variants = calloc((size_t)sw->nruns + 1, sizeof *variants);
    char settings[4096];
    if (!res || !rows || !reruns || !variants) {
        free(res), free(rows), free(reruns), free(variants);
        return loco_errf(e, "out of memory");
    }
    int nmain = 0, ntune = 0, nvar = 0, polythres = 0;
    loco_result *tune = res + sw->nruns; /* filled from the end */
    for (int i = 0; i < sw->nruns; i++) {
        const run *r = &sw->runs[i];
        if (r->kind == RUN_PRETRAIN) continue;
        loco_result *x = r->kind == RUN_MAIN ? &res[nmain++] : --tune;
        row_of(sw, r, rows[i], sizeof rows[i]);
        *x = (loco_result){.row = rows[i], .variant = sp->v[r->variant].name,
                           .column = sp->table >= 0 ? sp->ax[sp->table].values[r->vals[sp->table]] : "",
                           .seed = r->seed,
                           .lr = !loco_outer_method_of(r->cfg.outer.method)->engine ? 0
                                 : r->lr > 0 ? r->lr : r->cfg.outer.lr,
                           .status = status_of(r), .log = r->done ? &r->log : &no_log,
                           .dir = r->dir + strlen(sw->out) + 1};
        if (r->kind == RUN_MAIN) rerun_of(sw, r, reruns[i], sizeof reruns[i]);
        x->rerun = reruns[i][0] ? reruns[i] : NULL;
        if (r->kind == RUN_TUNE) ntune++;
        polythres |= r->kind == RUN_MAIN && r->cfg.outer.staleness == LOCO_STALE_POLYTHRES;
        int seen = 0;
        for (int v = 0; v < nvar; v++) seen |= !strcmp(variants[v], rows[i]);
        if (r->kind == RUN_MAIN && !seen) variants[nvar++] = rows[i];
    }
    const char *columns[MAX_VALUES];
    int ncol = sp->table >= 0 ? sp->ax[sp->table].nvalues : 1;
    for (int c = 0; c < ncol; c++) columns[c] = sp->table >= 0 ? sp->ax[sp->table].values[c] : "";
    settings_of(sw, settings, sizeof settings);
    loco_results out = {.name = sp->name, .spec = sp->path,
                        .axis = sp->table >= 0 ? sp->ax[sp->table].key : NULL,
                        .target = sp->target[0] ? sp->target : NULL,
                        .timeline = sp->timeline[0] ? sp->timeline : NULL, .settings = settings,
                        .dropped = polythres,
                        .runs = res, .nruns = nmain, .tuning = tune, .ntuning = ntune,
                        .rows = variants, .nrows = nvar, .columns = columns, .ncolumns = ncol};
    int rc = loco_results_write(&out, sw->out, e);
    free(res), free(rows), free(reruns), free(variants);
    return rc;
}

/* ------------------------------------------------------------------ the run */

/* The main runs that did not finish, said in one line; returns how many. */
static int unfinished(const sweep *sw) {
    int n = 0;
    for (int i = 0; i < sw->nruns; i++) {
        const run *r = &sw->runs[i];
        if (r->kind != RUN_MAIN || !strcmp(status_of(r), "finished")) continue;
        fprintf(stderr, "%s %s (%s)", n++ ? "," : "sweep: runs that did not finish:", r->label,
                status_of(r));
    }
    if (n) fprintf(stderr, "; results.md marks them\n");
    return n;
}

static void free_sweep(sweep *sw) {
    for (int i = 0; i < sw->nruns; i++) {
        free(sw->runs[i].text);
        loco_runlog_free(&sw->runs[i].log);
    }
    free(sw->runs);
    loco_runlock_release(&sw->lock);
}

/* --plan: every run the spec makes (before any tuning extends a grid) and what it trains */
static void print_plan(sweep *sw, loco_err *e) {
    run probe = {.kind = RUN_PRETRAIN};  /* built as plan() built it: it cannot fail now */
    if (sw->sp.pretrain && build(sw, &probe, e) == 0)
        printf("pretrain: %ld steps of one worker\n", probe.cfg.train.steps);
    free(probe.text);
    const char *kinds[] = {"tuning", "main"};
    long steps[2] = {0}, count[2] = {0};
    for (int i = 0; i < sw->nruns; i++) {
        const run *r = &sw->runs[i];
        long n = loco_config_total_local_steps(&r->cfg);
        if (r->kind == RUN_MAIN) printf("  %s: %ld local steps\n", r->label, n);
        steps[r->kind == RUN_MAIN] += n, count[r->kind == RUN_MAIN]++;
    }
    for (int k = 0; k < 2; k++)
        printf("%s: %ld runs, %ld local steps\n", kinds[k], count[k], steps[k]);
    if (sw->sp.extend > 0)
        printf("tune: up to %ld more rates beyond each end of the grid, per cell\n", sw->sp.extend);
}

int loco_sweep_run(const loco_sweep_opts *o, loco_err *e) {
    sweep *sw = calloc(1, sizeof *sw);
    if (!sw) return loco_errf(e, "out of memory");
    sw->o = o;
    int rc = read_spec(&sw->sp, o->spec, o->quick, e);
    if (rc == 0) {
        snprintf(sw->out, sizeof sw->out, "%s", o->out ? o->out : "");
        if (!o->out) snprintf(sw->out, sizeof sw->out, "runs/sweep-%s%s", sw->sp.name, o->quick ? "-quick" : "");
    }
    if (rc == 0) rc = plan(sw, e);
    if (rc == 0 && o->plan) {
        print_plan(sw, e);
        free_sweep(sw);
        free(sw);
        return 0;
    }
    if (rc == 0) rc = loco_mkdirs(sw->out, e);
    if (rc == 0) { /* one sweep at a time in a directory: two would run the same runs */
        char what[LOCO_PATH_LEN + 16];
        snprintf(what, sizeof what, "sweep %.1000s", o->spec);
        rc = loco_runlock_take(&sw->lock, sw->out, what, e);
    }
    double t0 = loco_now();
    if (rc == 0) rc = pretrain(sw, e);
    if (rc == 0 && sw->sp.nlrs > 0 && execute_kind(sw, RUN_TUNE) != 0) rc = loco_errf(e, "stopped");
    if (rc == 0) rc = extend_rates(sw, e);
    if (rc == 0) rc = choose_rates(sw, e);
    if (rc == 0 && execute_kind(sw, RUN_MAIN) != 0) rc = loco_errf(e, "stopped");
    if (rc == 0) {
        fprintf(stderr, "sweep: %d runs done now, %d done before, in %.0fs\n", sw->ran, sw->skipped,
                loco_now() - t0);
        rc = write_results(sw, e);
        if (rc == 0 && unfinished(sw) > 0) rc = 1;
    } else if (!strcmp(e->msg, "stopped")) {
        loco_errf(e, "stopped: %d runs done; run the same command again to go on", sw->ran);
    }
    free_sweep(sw);
    free(sw);
    return rc;
}
