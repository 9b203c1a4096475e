/* The experiment runner on a micro spec (a few seconds): the results have the rows and
 * columns the spec asks for, a second sweep skips every finished run, a run cut short is
 * run again and not counted, and a bad spec is refused before anything is written. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loco/cpu.h"
#include "loco/runlog.h"
#include "loco/sweep.h"

static const char micro[] =
    "[sweep]\nname = micro\nseeds = 1\ntarget = sync\ntable = hetero.level\ntimeline = dn\n"
    "[set]\nmodel.layers = 1\nmodel.dim = 32\nmodel.heads = 2\nmodel.seq_len = 32\n"
    "train.batch = 4\ntrain.steps = 20\ntrain.warmup = 5\neval.batches = 2\n"
    "eval.every_updates = 0\neval.every_local_steps = 20\nouter.local_steps = 5\n"
    "run.clock = virtual\nrun.workers = 2\n"
    "[pretrain]\ntrain.steps = 10\n"
    "[variant sync]\nouter.method = sync\n"
    "[variant dn]\nouter.method = async-dn\nouter.dylu = on\n"
    "[variant single]\nouter.method = single\n"
    "[grid]\nvariant = single, sync, dn\nhetero.level = no, very\n"
    "[tune]\nouter.lr = 0.1, 0.5\nouter.total_local_steps = 10\n"
    "[repeat]\nvariant = dn\nhetero.level = very\nseeds = 2\n"
    "[quick]\ngrid.hetero.level = very\n";

typedef struct {
    char dir[64], spec[96], out[96];
} fixture;

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void setup(fixture *f, const char *spec_text) {
    snprintf(f->dir, sizeof f->dir, "/tmp/loco-sweep-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->spec, sizeof f->spec, "%s/spec.ini", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out", f->dir);
    write_file(f->spec, spec_text);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(fixture *f) {
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int sweep(const fixture *f, int quick, loco_err *e) {
    loco_sweep_opts o = {.spec = f->spec, .out = f->out, .quick = quick, .jobs = 2};
    return loco_sweep_run(&o, e);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s is missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return b;
}

/* the run directories under out/runs, and when their summaries were written */
typedef struct {
    char name[64][128];
    struct timespec when[64];
    int n;
} listing;

static void list_runs(const fixture *f, listing *l) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s/runs", f->out);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    l->n = 0;
    while (l->n < 64 && fscanf(p, "%127s", l->name[l->n]) == 1) {
        char path[320];
        struct stat st;
        snprintf(path, sizeof path, "%s/runs/%s/summary.json", f->out, l->name[l->n]);
        cr_assert_eq(stat(path, &st), 0, "%s has no summary", l->name[l->n]);
        l->when[l->n++] = st.st_mtim;
    }
    pclose(p);
}

static int same_time(struct timespec a, struct timespec b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

Test(sweep, results_have_the_rows_and_columns_of_the_spec, .timeout = 180) {
    fixture f;
    setup(&f, micro);
    loco_err e;
    cr_assert_eq(sweep(&f, 0, &e), 0, "%s", e.msg);
    char path[160];
    snprintf(path, sizeof path, "%s/results.md", f.out);
    char *md = slurp(path);
    cr_assert_not_null(strstr(md, "| variant | no | very |"), "the columns:\n%s", md);
    const char *rows[] = {"| single |", "| sync |", "| dn |"};
    for (int i = 0; i < 3; i++) cr_assert_not_null(strstr(md, rows[i]), "row %s:\n%s", rows[i], md);
    cr_assert_not_null(strstr(md, "(2 seeds)"), "dn at very has two seeds:\n%s", md);
    cr_assert_not_null(strstr(md, "Time to `sync`'s final loss"), "%s", md);
    char kernels[96];   /* the runs are children of this process: the same kernel set */
    snprintf(kernels, sizeof kernels, "Products in fp32 on OpenBLAS kernels %s.", loco_blas()->core);
    cr_assert_not_null(strstr(md, kernels), "'%s' in:\n%s", kernels, md);
    snprintf(path, sizeof path, "%s/results.json", f.out);
    char *json = slurp(path);
    cr_assert_not_null(strstr(json, "\"columns\":[\"no\",\"very\"]"), "%.300s", json);
    cr_assert_not_null(strstr(json, "\"rows\":[\"single\",\"sync\",\"dn\"]"), "%.300s", json);
    cr_assert_not_null(strstr(md, "![timeline](timeline.png)"), "%s", md);
    const char *pngs[] = {"curves_steps.png", "curves_time.png", "timeline.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", f.out, pngs[i]);
        FILE *p = fopen(path, "rb");
        unsigned char sig[8] = {0};
        cr_assert(p && fread(sig, 1, 8, p) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8),
                  "%s is not a PNG", path);
        fclose(p);
    }
    cr_assert_null(strstr(json, f.out), "results.json names run directories relative to it");
    free(md), free(json);
    /* single runs once for both levels (its config does not depend on them): 1 + 2 + 3 */
    listing l;
    list_runs(&f, &l);
    cr_assert_eq(l.n, 6, "%d run directories", l.n);
    teardown(&f);
}

Test(sweep, a_second_sweep_skips_finished_runs_and_redoes_one_cut_short, .timeout = 180) {
    fixture f;
    setup(&f, micro);
    loco_err e;
    cr_assert_eq(sweep(&f, 1, &e), 0, "%s", e.msg);
    listing before, after;
    list_runs(&f, &before);
    cr_assert_geq(before.n, 3);
    /* cut one short: its summary says it was stopped */
    char path[320];
    snprintf(path, sizeof path, "%s/runs/%s/summary.json", f.out, before.name[0]);
    char *s = slurp(path), *at = strstr(s, "\"status\":\"finished\"");
    cr_assert_not_null(at);
    memcpy(at, "\"status\":\"stopped\" ", 19);
    write_file(path, s);
    free(s);
    sleep(1); /* distinct modification times */
    cr_assert_eq(sweep(&f, 1, &e), 0, "%s", e.msg);
    list_runs(&f, &after);
    cr_assert_eq(after.n, before.n);
    for (int i = 0; i < after.n; i++) {
        cr_assert_str_eq(after.name[i], before.name[i]);
        int redone = !same_time(after.when[i], before.when[i]);
        cr_assert_eq(redone, i == 0, "%s: %s", after.name[i], redone ? "run again" : "skipped");
    }
    s = slurp(path);
    cr_assert_not_null(strstr(s, "\"status\":\"finished\""), "run again to its end: %s", s);
    free(s);
    teardown(&f);
}

/* the micro spec with text `from` replaced by `to` (from NULL: `to` appended) */
static char *edited(const char *from, const char *to) {
    size_t n = sizeof micro + strlen(to) + 1;
    char *t = malloc(n);
    if (!from) {
        snprintf(t, n, "%s%s", micro, to);
        return t;
    }
    const char *at = strstr(micro, from);
    cr_assert_not_null(at, "%s not in the spec", from);
    snprintf(t, n, "%.*s%s%s", (int)(at - micro), micro, to, at + strlen(from));
    return t;
}

Test(sweep, a_bad_spec_is_refused_before_anything_is_written, .timeout = 60) {
    struct {
        const char *from, *to, *want1, *want2;
    } cases[] = {
        {"variant = single, sync, dn", "variant = sync, nosuch", "spec.ini:", "no [variant nosuch] section"},
        {NULL, "[bogus]\nx = 1\n", "unknown section [bogus]", "spec.ini:"},
        {NULL, "[set]\nmodel.nosuch = 3\n", "spec.ini:", "unknown key 'nosuch'"},
        {NULL, "[variant sync]\nouter.grace_s = 1\n", "outer.grace_s = 1", "sync round"},
        {NULL, "[sweep]\ntable = run.workers\n", "duplicate key", "line 5"},
        {"table = hetero.level", "table = run.nosuch", "table = run.nosuch", "not a key of [grid]"},
        {"seeds = 1\n", "seeds = 1, x\n", "seeds", "'x' is not an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f;
        char *text = edited(cases[i].from, cases[i].to);
        setup(&f, text);
        free(text);
        loco_err e;
        cr_assert_eq(sweep(&f, 0, &e), -1, "case %zu accepted", i);
        cr_assert(strstr(e.msg, cases[i].want1) && strstr(e.msg, cases[i].want2), "case %zu: %s",
                  i, e.msg);
        cr_assert_neq(access(f.out, F_OK), 0, "case %zu: %s was created", i, f.out);
        teardown(&f);
    }
}
