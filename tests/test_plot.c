/* Pictures of runs: curves (several runs, several panels, every x-axis, empty and
 * one-point curves) and timelines (bars, rejections, long runs) come out as PNGs of the
 * requested size; errors name the picture and quote gnuplot; nothing temporary stays. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loco/plot.h"

/* A test's directory; TMPDIR points at its tmp/, so that what plot leaves there shows. */
typedef struct {
    char dir[64], tmp[80];
} scratch;

static void scratch_open(scratch *s) {
    snprintf(s->dir, sizeof s->dir, "/tmp/loco-plot-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir), "mkdtemp failed");
    snprintf(s->tmp, sizeof s->tmp, "%s/tmp", s->dir);
    cr_assert_eq(mkdir(s->tmp, 0700), 0, "mkdir %s", s->tmp);
    cr_assert_eq(setenv("TMPDIR", s->tmp, 1), 0, "setenv");
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void scratch_close(scratch *s) {
    nftw(s->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* s->dir/name */
static const char *path_in(const scratch *s, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", s->dir, name);
    return buf;
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s", dir);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

/* plot's temporary directory is gone and no PNG.tmp is left beside the picture */
static void expect_nothing_left(const scratch *s, const char *png) {
    cr_assert_eq(entries(s->tmp), 0, "a temporary directory was left in %s", s->tmp);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", png);
    cr_assert_neq(access(tmp, F_OK), 0, "%s was left behind", tmp);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* a PNG: its signature, then the IHDR chunk with width and height */
static void expect_png(const char *path, uint32_t width, uint32_t height) {
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s was not written", path);
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    cr_assert_eq(got, sizeof b, "%s: only %zu bytes", path, got);
    cr_assert_eq(memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0, "%s: not a PNG signature", path);
    cr_assert_eq(memcmp(b + 12, "IHDR", 4), 0, "%s: no IHDR chunk first", path);
    cr_assert_eq(be32(b + 16), width, "%s: width %u", path, be32(b + 16));
    cr_assert_eq(be32(b + 20), height, "%s: height %u", path, be32(b + 20));
}

/* A run of n evaluations falling from loss 5, at marks of 10 local steps when marked.
 * speed stretches its time. Free with loco_runlog_free. */
static void fake_curve(loco_runlog *r, int n, int marked, double speed) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "runs/fake");
    snprintf(r->clock, sizeof r->clock, "virtual");
    r->evals = calloc((size_t)n + 1, sizeof *r->evals);
    cr_assert_not_null(r->evals, "out of memory");
    for (int i = 0; i < n; i++)
        r->evals[i] = (loco_point){.local_steps = 10 * i + (i > 0),
                                   .at_local_steps = marked ? 10 * i : 0,
                                   .time_s = 2.5 * i * speed, .updates = 2 * i,
                                   .val_loss = 5.5 - 2.5 * (1 - exp(-0.3 * i))};
    r->nevals = n;
}

Test(plot, curves_of_two_runs_in_two_panels_on_each_x_axis, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog a, b;
    fake_curve(&a, 12, 1, 1);
    fake_curve(&b, 9, 0, 3);
    loco_curve c[] = {{&a, "async-dn", "no heterogeneity"}, {&b, "sync", "no heterogeneity"},
                      {&b, "sync", "very"},                 {&a, "async-dn", "very"}};
    for (const loco_enum *x = loco_plot_axes; x->name; x++) {
        char png[128], name[32];
        snprintf(name, sizeof name, "curves-%s.png", x->name);
        path_in(&s, name, png, sizeof png);
        loco_err e = {{0}};
        cr_assert_eq(loco_plot_curves(c, 4, x->value, "two methods", 900, 500, png, &e), 0,
                     "x = %s: %s", x->name, e.msg);
        expect_png(png, 900, 500);
        expect_nothing_left(&s, png);
    }
    loco_runlog_free(&a);
    loco_runlog_free(&b);
    scratch_close(&s);
}

/* A run stopped before its first evaluation, one with a single one, a diverged one, and
 * no panel names: all drawn, none breaks the picture. */
Test(plot, empty_one_point_and_diverged_curves_still_draw, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog empty, one, diverged;
    fake_curve(&empty, 0, 0, 1);
    fake_curve(&one, 1, 0, 1);
    fake_curve(&diverged, 4, 1, 1);
    diverged.evals[2].val_loss = INFINITY;
    diverged.evals[3].val_loss = NAN;
    char png[128];
    path_in(&s, "odd.png", png, sizeof png);
    loco_err e = {{0}};
    loco_curve only_empty = {&empty, "stopped early", NULL};
    cr_assert_eq(loco_plot_curves(&only_empty, 1, LOCO_PLOT_STEPS, NULL, 640, 480, png, &e), 0,
                 "only an empty curve: %s", e.msg);
    expect_png(png, 640, 480);
    loco_curve only_one = {&one, "one", NULL};
    cr_assert_eq(loco_plot_curves(&only_one, 1, LOCO_PLOT_TIME, NULL, 640, 480, png, &e), 0,
                 "one point: %s", e.msg);
    expect_png(png, 640, 480);
    loco_curve c[] = {{&empty, "stopped early", NULL},
                      {&one, "one", NULL},
                      {&diverged, "diverged", NULL}};
    for (const loco_enum *x = loco_plot_axes; x->name; x++) {
        cr_assert_eq(loco_plot_curves(c, 3, x->value, NULL, 700, 400, png, &e), 0, "x = %s: %s",
                     x->name, e.msg);
        expect_png(png, 700, 400);
    }
    expect_nothing_left(&s, png);
    loco_runlog_free(&empty);
    loco_runlog_free(&one);
    loco_runlog_free(&diverged);
    scratch_close(&s);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
}

/* The files train writes, read back by runlog, as plot is given them. */
Test(plot, a_run_directory_read_back_draws_its_curve_and_timeline, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    char run[96], file[128], png[128];
    path_in(&s, "run", run, sizeof run);
    cr_assert_eq(mkdir(run, 0700), 0, "mkdir");
    snprintf(file, sizeof file, "%s/summary.json", run);
    write_text(file, "{\"status\":\"finished\",\"method\":\"async-dn\",\"clock\":\"real\","
                     "\"workers\":2}\n");
    snprintf(file, sizeof file, "%s/metrics.jsonl", run);
    write_text(file,
               "{\"event\":\"eval\",\"updates\":0,\"local_steps\":0,\"time_s\":0,\"val_loss\":5.5}\n"
               "{\"event\":\"arrival\",\"worker\":0,\"staleness\":0,\"local_steps\":5,\"time_s\":0.5,"
               "\"status\":\"applied\",\"start_s\":0,\"slowdown_s\":0,\"lr\":0.002}\n"
               "{\"event\":\"arrival\",\"worker\":1,\"staleness\":1,\"local_steps\":5,\"time_s\":1,"
               "\"status\":\"applied\",\"start_s\":0,\"slowdown_s\":0.5}\n"
               "{\"event\":\"eval\",\"updates\":2,\"local_steps\":10,\"time_s\":1,\"val_loss\":4.1,"
               "\"at_local_steps\":10}\n"
               "{\"event\":\"arrival\",\"worker\":0,\"staleness\":3,\"local_steps\":5,\"time_s\":1.2,"
               "\"status\":\"stale\",\"start_s\":0.6,\"slowdown_s\":0}\n");
    loco_runlog r;
    loco_err e = {{0}};
    cr_assert_eq(loco_runlog_read(run, &r, &e), 0, "%s", e.msg);
    cr_assert_float_eq(r.rounds[0].lr, 0.002, 1e-12, "the arrival's lr is read");
    cr_assert(isnan(r.rounds[1].lr), "an arrival without lr reads as NaN");
    loco_curve c = {&r, "run", NULL};
    path_in(&s, "curve.png", png, sizeof png);
    cr_assert_eq(loco_plot_curves(&c, 1, LOCO_PLOT_STEPS, NULL, 800, 600, png, &e), 0,
                 "curve: %s", e.msg);
    expect_png(png, 800, 600);
    path_in(&s, "timeline.png", png, sizeof png);
    cr_assert_eq(loco_plot_timeline(&r, NULL, 1000, 400, png, &e), 0, "timeline: %s", e.msg);
    expect_png(png, 1000, 400);
    expect_nothing_left(&s, png);
    loco_runlog_free(&r);
    scratch_close(&s);
}

/* Rounds of w workers, worker k taking k + 1 time units (half of it slowdown for k > 0)
 * and waiting one unit between rounds; every fifth arrival rejected. */
static void fake_rounds(loco_runlog *r, int w, int n) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "runs/fake");
    snprintf(r->method, sizeof r->method, "async-dn");
    snprintf(r->clock, sizeof r->clock, "real");
    r->workers = w;
    r->rounds = calloc((size_t)n + 1, sizeof *r->rounds);
    cr_assert_not_null(r->rounds, "out of memory");
    double *start = calloc((size_t)w, sizeof *start);
    cr_assert_not_null(start, "out of memory");
    /* arrival order: always the worker whose round ends first */
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (int j = 1; j < w; j++)
            if (start[j] + j + 1 < start[k] + k + 1) k = j;
        double len = k + 1;
        r->rounds[i] = (loco_round_rec){.worker = k, .start_s = start[k], .end_s = start[k] + len,
                                        .slowdown_s = k ? len / 2 : 0, .steps = 5,
                                        .staleness = i % 4, .applied = i % 5 != 4};
        start[k] += len + 1;
    }
    r->nrounds = n;
    free(start);
}

Test(plot, a_timeline_has_the_requested_size, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog r;
    fake_rounds(&r, 3, 40);
    char png[128];
    loco_err e = {{0}};
    path_in(&s, "timeline.png", png, sizeof png);
    cr_assert_eq(loco_plot_timeline(&r, "three workers", 1200, 500, png, &e), 0, "%s", e.msg);
    expect_png(png, 1200, 500);
    expect_nothing_left(&s, png);
    loco_runlog_free(&r);
    scratch_close(&s);
}

/* One line per worker; the rounds without a rate are left out, and a run none of whose
 * rounds has one is an error that says so, with nothing written. */
Test(plot, learning_rates_draw_and_a_run_without_them_is_refused, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog r;
    fake_rounds(&r, 3, 40);
    for (int i = 0; i < r.nrounds; i++)
        r.rounds[i].lr = i % 7 == 3 ? NAN : 1e-3 / (1 + r.rounds[i].worker + 0.01 * i);
    char png[128];
    loco_err e = {{0}};
    path_in(&s, "lr.png", png, sizeof png);
    cr_assert_eq(loco_plot_lr(&r, NULL, 1000, 500, png, &e), 0, "%s", e.msg);
    expect_png(png, 1000, 500);
    for (int i = 0; i < r.nrounds; i++) r.rounds[i].lr = NAN;
    path_in(&s, "none.png", png, sizeof png);
    cr_assert_eq(loco_plot_lr(&r, NULL, 1000, 500, png, &e), -1, "no rates");
    cr_assert_not_null(strstr(e.msg, "no arrival records its inner learning rate"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "runs/fake"), "the message names the run: %s", e.msg);
    cr_assert_neq(access(png, F_OK), 0, "%s was written", png);
    expect_nothing_left(&s, png);
    loco_runlog_free(&r);
    scratch_close(&s);
}

/* Past LOCO_PLOT_MAX_ROUNDS only the start is drawn; no rounds at all is an empty frame. */
Test(plot, long_and_empty_timelines_draw, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog r;
    fake_rounds(&r, 6, 5000);
    char png[128];
    loco_err e = {{0}};
    path_in(&s, "timeline.png", png, sizeof png);
    cr_assert_eq(loco_plot_timeline(&r, NULL, 1200, 600, png, &e), 0, "long: %s", e.msg);
    expect_png(png, 1200, 600);
    r.nrounds = 0;
    cr_assert_eq(loco_plot_timeline(&r, NULL, 600, 300, png, &e), 0, "empty: %s", e.msg);
    expect_png(png, 600, 300);
    expect_nothing_left(&s, png);
    loco_runlog_free(&r);
    scratch_close(&s);
}

/* ---------------------------------------------------------------- errors */

Test(plot, an_unwritable_picture_is_an_error_that_names_it, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog a, r;
    fake_curve(&a, 5, 1, 1);
    fake_rounds(&r, 2, 10);
    char png[128];
    path_in(&s, "no/such/dir/curve.png", png, sizeof png);
    loco_err e = {{0}};
    loco_curve c = {&a, "a", NULL};
    cr_assert_eq(loco_plot_curves(&c, 1, LOCO_PLOT_STEPS, NULL, 800, 600, png, &e), -1, "curves");
    cr_assert_not_null(strstr(e.msg, png), "the message names the picture: %s", e.msg);
    cr_assert_eq(loco_plot_timeline(&r, NULL, 800, 600, png, &e), -1, "timeline");
    cr_assert_not_null(strstr(e.msg, png), "the message names the picture: %s", e.msg);
    path_in(&s, "small.png", png, sizeof png);
    cr_assert_eq(loco_plot_curves(&c, 1, LOCO_PLOT_STEPS, NULL, 10, 600, png, &e), -1, "size");
    cr_assert_not_null(strstr(e.msg, "10x600"), "the message gives the size: %s", e.msg);
    cr_assert_neq(access(png, F_OK), 0, "%s was written", png);
    expect_nothing_left(&s, png);
    loco_runlog_free(&a);
    loco_runlog_free(&r);
    scratch_close(&s);
}

/* A gnuplot that fails (a stand-in on PATH): its stderr is quoted, no picture appears
 * and the old one stays; no gnuplot at all says what to install. */
Test(plot, a_failing_gnuplot_is_quoted_and_leaves_the_old_picture, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog a;
    fake_curve(&a, 5, 1, 1);
    char bin[96], fake[128], png[128];
    path_in(&s, "bin", bin, sizeof bin);
    cr_assert_eq(mkdir(bin, 0700), 0, "mkdir");
    snprintf(fake, sizeof fake, "%s/gnuplot", bin);
    write_text(fake, "#!/bin/sh\necho 'plot.gp line 7: all points y value undefined!' >&2\nexit 3\n");
    cr_assert_eq(chmod(fake, 0700), 0, "chmod");
    path_in(&s, "curve.png", png, sizeof png);
    write_text(png, "old picture");
    cr_assert_eq(setenv("PATH", bin, 1), 0, "setenv");
    loco_err e = {{0}};
    loco_curve c = {&a, "a", NULL};
    cr_assert_eq(loco_plot_curves(&c, 1, LOCO_PLOT_TIME, NULL, 800, 600, png, &e), -1, "fails");
    cr_assert_not_null(strstr(e.msg, png), "names the picture: %s", e.msg);
    cr_assert_not_null(strstr(e.msg, "exit status 3"), "gives the status: %s", e.msg);
    cr_assert_not_null(strstr(e.msg, "line 7: all points y value undefined!"), "quotes: %s", e.msg);
    unlink(fake);
    cr_assert_eq(loco_plot_curves(&c, 1, LOCO_PLOT_TIME, NULL, 800, 600, png, &e), -1, "none");
    cr_assert_not_null(strstr(e.msg, "cannot run gnuplot"), "says so: %s", e.msg);
    FILE *f = fopen(png, "r");
    char old[32] = "";
    cr_assert_not_null(f, "the old picture is gone");
    cr_assert_not_null(fgets(old, sizeof old, f), "read");
    fclose(f);
    cr_assert_str_eq(old, "old picture", "the old picture was overwritten");
    expect_nothing_left(&s, png);
    loco_runlog_free(&a);
    scratch_close(&s);
}

/* The script a stand-in gnuplot on PATH was given, kept at s->dir/plot.gp; the plot call
 * itself fails (the stand-in draws nothing). */
static void fake_gnuplot_keeping_script(const scratch *s, char *bin, size_t n) {
    char fake[160], script[160];
    path_in(s, "bin", bin, n);
    cr_assert_eq(mkdir(bin, 0700), 0, "mkdir");
    snprintf(fake, sizeof fake, "%s/gnuplot", bin);
    FILE *f = fopen(fake, "w");
    cr_assert_not_null(f, "write %s", fake);
    fprintf(f, "#!/bin/sh\n/bin/cp \"$1\" %s\nexit 3\n", path_in(s, "plot.gp", script, sizeof script));
    fclose(f);
    cr_assert_eq(chmod(fake, 0700), 0, "chmod");
}

/* Every "lc ... dt N" of a script's plot lines; returns how many, into styles. */
static int styles_of(const char *path, char styles[][64], int max) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no script at %s", path);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        for (char *p = line; (p = strstr(p, "lc rgb '")) && n < max; p++) {
            char *dt = strstr(p, " dt ");
            cr_assert_not_null(dt, "a series without a dash type: %s", p);
            size_t len = strcspn(dt + 4, " ") + (size_t)(dt + 4 - p);
            cr_assert_lt(len, 64u, "style");
            memcpy(styles[n], p, len);
            styles[n++][len] = '\0';
        }
    fclose(f);
    return n;
}

/* 20 runs on one plot (more than the 16 colours): 20 styles, no two alike, and the same
 * label keeps its style in a second panel. */
Test(plot, no_two_series_of_a_plot_share_a_style, .timeout = 60) {
    scratch s;
    scratch_open(&s);
    loco_runlog a;
    fake_curve(&a, 5, 1, 1);
    enum { RUNS = 20 };
    loco_curve c[2 * RUNS];
    char labels[RUNS][16];
    for (int i = 0; i < RUNS; i++) {
        snprintf(labels[i], sizeof labels[i], "run-%d", i);
        c[i] = (loco_curve){&a, labels[i], "left"};
        c[RUNS + i] = (loco_curve){&a, labels[i], "right"};
    }
    char bin[96], png[128], script[128];
    fake_gnuplot_keeping_script(&s, bin, sizeof bin);
    const char *path = getenv("PATH");
    char *saved = strdup(path ? path : "");
    cr_assert_eq(setenv("PATH", bin, 1), 0, "setenv");
    loco_err e = {{0}};
    path_in(&s, "many.png", png, sizeof png);
    cr_assert_eq(loco_plot_curves(c, 2 * RUNS, LOCO_PLOT_STEPS, NULL, 800, 600, png, &e), -1,
                 "the stand-in draws nothing");
    setenv("PATH", saved, 1);
    free(saved);
    char styles[4 * RUNS][64];
    int n = styles_of(path_in(&s, "plot.gp", script, sizeof script), styles, 4 * RUNS);
    cr_assert_eq(n, 2 * RUNS, "%d series styled", n);
    for (int i = 0; i < RUNS; i++) {
        cr_assert_str_eq(styles[i], styles[RUNS + i], "run-%d changes style between panels", i);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(styles[i], styles[j], "run-%d and run-%d share %s", i, j, styles[i]);
    }
    loco_runlog_free(&a);
    scratch_close(&s);
}
