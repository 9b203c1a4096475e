#include "loco/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const loco_enum loco_plot_axes[] = {
    {"steps", LOCO_PLOT_STEPS, "local steps (summed over workers)"},
    {"time", LOCO_PLOT_TIME, "time (s)"},
    {"updates", LOCO_PLOT_UPDATES, "server updates"},
    {NULL, 0, NULL},
};

/* ------------------------------------------------------------ a drawing */

/* One picture being made: a temporary directory with its data files, its script and
 * what gnuplot printed; gnuplot writes the PNG to its temporary name beside it. */
typedef struct {
    char dir[LOCO_PATH_LEN];
    char png[LOCO_PATH_LEN], tmp[LOCO_PATH_LEN + 8];
    FILE *gp;   /* dir/plot.gp */
} drawing;

/* s as a gnuplot string: single quotes take everything literally but '' for a quote;
 * a line break would end the command, so control characters become spaces */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc((unsigned char)*s < ' ' ? ' ' : *s, f);
    }
    fputc('\'', f);
}

/* dir/name, quoted for the script */
static void put_file(const drawing *d, const char *name) {
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    put_quoted(d->gp, path);
}

/* dir/name opened for writing, or NULL with a message */
static FILE *open_file(const drawing *d, const char *name, loco_err *e) {
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    FILE *f = fopen(path, "w");
    if (!f) loco_errf(e, "%s: cannot create: %s", path, strerror(errno));
    return f;
}

/* closes f; -1 with a message when anything written to it was lost */
static int close_file(FILE *f, const drawing *d, const char *name, loco_err *e) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return loco_errf(e, "%s/%s: cannot write: %s", d->dir, name, strerror(errno ? errno : EIO));
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The PNG's temporary name is created here, before anything else, so an unwritable
 * place is reported with the picture's name rather than in gnuplot's words. */
static int drawing_open(drawing *d, const char *png, int width, int height, loco_err *e) {
    memset(d, 0, sizeof *d);
    if (width < 64 || height < 64 || width > 16384 || height > 16384)
        return loco_errf(e, "%s: size %dx%d is outside [64, 16384]", png, width, height);
    if (snprintf(d->png, sizeof d->png, "%s", png) >= (int)sizeof d->png)
        return loco_errf(e, "%s: path too long", png);
    snprintf(d->tmp, sizeof d->tmp, "%s.tmp", png);
    int fd = open(d->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return loco_errf(e, "%s: cannot create: %s", png, strerror(errno));
    close(fd);
    const char *tmpdir = getenv("TMPDIR");
    int n = snprintf(d->dir, sizeof d->dir, "%s/loco-plot-XXXXXX",
                     tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (n >= (int)sizeof d->dir || !mkdtemp(d->dir)) {
        loco_errf(e, "%s: cannot make a temporary directory: %s", d->dir,
                  n >= (int)sizeof d->dir ? "path too long" : strerror(errno));
        unlink(d->tmp);
        return -1;
    }
    if (!(d->gp = open_file(d, "plot.gp", e))) {
        nftw(d->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
        unlink(d->tmp);
        return -1;
    }
    fprintf(d->gp, "set terminal pngcairo size %d,%d noenhanced font 'sans,10'\nset output ",
            width, height);
    put_quoted(d->gp, d->tmp);
    fputc('\n', d->gp);
    return 0;
}

/* Up to n - 1 bytes of the end of path (where gnuplot's error is), trimmed. */
static void read_tail(const char *path, char *buf, size_t n) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)n - 1 ? size - (long)n + 1 : 0, SEEK_SET);
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' ')) got--;
    buf[got] = '\0';
}

/* gnuplot dir/plot.gp, its stdout and stderr in dir/gnuplot.log */
static int run_gnuplot(const drawing *d, loco_err *e) {
    char script[LOCO_PATH_LEN + 32], log[LOCO_PATH_LEN + 32], prog[] = "gnuplot";
    snprintf(script, sizeof script, "%s/plot.gp", d->dir);
    snprintf(log, sizeof log, "%s/gnuplot.log", d->dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {prog, script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return loco_errf(e, "%s: cannot run gnuplot: %s (it comes with Debian's gnuplot-nox)",
                         d->png, strerror(rc));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return loco_errf(e, "%s: waiting for gnuplot: %s", d->png, strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    char said[640];
    read_tail(log, said, sizeof said);
    return loco_errf(e, "%s: gnuplot failed (%s %d):\n%s", d->png,
                     WIFEXITED(st) ? "exit status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), said);
}

/* fsync the directory holding path, so that the rename survives a crash */
static int sync_parent(const char *path) {
    char buf[LOCO_PATH_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* What gnuplot wrote, made durable and renamed over the PNG. */
static int put_in_place(const drawing *d, loco_err *e) {
    struct stat st;
    int fd = open(d->tmp, O_RDONLY);
    if (fd < 0) return loco_errf(e, "%s: gnuplot's output is gone: %s", d->tmp, strerror(errno));
    int err = fstat(fd, &st) == 0 && fsync(fd) == 0 ? 0 : errno;
    close(fd);
    if (err) return loco_errf(e, "%s: cannot write: %s", d->png, strerror(err));
    if (st.st_size == 0) return loco_errf(e, "%s: gnuplot drew nothing", d->png);
    if (rename(d->tmp, d->png) != 0 || sync_parent(d->png) != 0)
        return loco_errf(e, "%s: cannot write: %s", d->png, strerror(errno));
    return 0;
}

/* Ends the drawing: when draw is set (and the script was written whole), runs gnuplot
 * and puts the PNG in place. Whatever happens, nothing temporary is left. */
static int drawing_end(drawing *d, int draw, loco_err *e) {
    int rc = close_file(d->gp, d, "plot.gp", draw ? e : NULL);
    if (draw && rc == 0) rc = run_gnuplot(d, e);
    if (draw && rc == 0) rc = put_in_place(d, e);
    if (!draw || rc != 0) unlink(d->tmp);
    nftw(d->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return draw ? rc : -1;
}

/* ------------------------------------------------------------- curves */

typedef struct {
    double lo, hi;
} span;

static const span span_empty = {INFINITY, -INFINITY};

static void span_add(span *s, double v) {
    if (v < s->lo) s->lo = v;
    if (v > s->hi) s->hi = v;
}

static int has_marks(const loco_runlog *r) {
    for (int i = 0; i < r->nevals; i++)
        if (r->evals[i].at_local_steps > 0) return 1;
    return 0;
}

static double point_x(const loco_point *p, int axis, int marked) {
    switch (axis) {
    case LOCO_PLOT_TIME: return p->time_s;
    case LOCO_PLOT_UPDATES: return p->updates;
    default: return marked ? p->at_local_steps : p->local_steps;
    }
}

/* Writes a curve's points (x, perplexity) into f, widening xs and ys; how many. The
 * steps axis takes a run's marks when it has them: those x are the same for every
 * method, where an evaluation's own local_steps depends on when rounds arrived. */
static int write_points(FILE *f, const loco_runlog *r, int axis, span *xs, span *ys) {
    loco_point *p = malloc(sizeof *p * (size_t)(r->nevals + 1));
    if (!p) return -1;
    int marked = axis == LOCO_PLOT_STEPS && has_marks(r), n = 0;
    int np = marked ? loco_runlog_marked(r, p) : r->nevals;
    if (!marked) memcpy(p, r->evals, sizeof *p * (size_t)r->nevals);
    for (int i = 0; i < np; i++) {
        double x = point_x(&p[i], axis, marked), y = exp(p[i].val_loss);
        if (!isfinite(x) || !isfinite(y)) continue;   /* a diverged evaluation */
        fprintf(f, "%.9g %.9g\n", x, y);
        span_add(xs, x);
        span_add(ys, y);
        n++;
    }
    free(p);
    return n;
}

/* NULL and "" are the same panel */
static int same(const char *a, const char *b) {
    return !strcmp(a ? a : "", b ? b : "");
}

/* Each curve's panel (indices in order of first appearance); the number of panels. */
static int assign_panels(const loco_curve *c, int n, int *panel, int *first) {
    int np = 0;
    for (int i = 0; i < n; i++) {
        int p = 0;
        while (p < np && !same(c[first[p]].panel, c[i].panel)) p++;
        if (p == np) first[np++] = i;
        panel[i] = p;
    }
    return np;
}

/* Colours told apart on screen and in print: Tableau's ten, then six darker ones. */
static const char *const series_colours[] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000000", "#08306b", "#7f2704", "#00441b", "#67000d", "#3f007d",
};
enum { NCOLOURS = sizeof series_colours / sizeof series_colours[0] };

void loco_plot_series_style(int i, char *buf, size_t n) {
    LOCO_CHECK(i >= 0, "series %d", i);
    snprintf(buf, n, "lc rgb '%s' dt %d", series_colours[i % NCOLOURS], 1 + i / NCOLOURS);
}

/* A series index per distinct label, so a run keeps its style from panel to panel. */
static int label_series(const loco_curve *c, int i) {
    int colour = 0;
    for (int j = 0; j < i; j++) {
        int k = 0;
        while (!same(c[k].label, c[j].label)) k++;
        if (k != j) continue;   /* not a new label */
        if (same(c[j].label, c[i].label)) return colour;
        colour++;
    }
    return colour;
}

/* A range gnuplot accepts for an axis that may have no points or only one value. */
static span padded(span s, int logscale) {
    if (!(s.lo <= s.hi)) return (span){1, 10};
    if (logscale) return (span){s.lo / 1.15, s.hi * 1.15};
    double pad = s.hi > s.lo ? 0.05 * (s.hi - s.lo) : 0.1 * fabs(s.hi) + 1;
    return (span){s.lo - pad, s.hi + pad};
}

/* x exactly as far as the points go (steps start at 0 and should show it) */
static span x_range(span s) {
    if (!(s.lo <= s.hi)) return (span){0, 1};
    if (s.hi > s.lo) return s;
    double pad = 0.1 * fabs(s.hi) + 1;
    return (span){s.lo - pad, s.hi + pad};
}

/* The data files c<i>.dat: each curve's points; xs per panel, ys over every curve. */
static int write_curve_data(const drawing *d, const loco_curve *c, int n, int axis,
                            const int *panel, span *xs, span *ys, int *npoints, loco_err *e) {
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d.dat", i);
        FILE *f = open_file(d, name, e);
        if (!f) return -1;
        npoints[i] = write_points(f, c[i].run, axis, &xs[panel[i]], ys);
        if (close_file(f, d, name, e) != 0) return -1;
        if (npoints[i] < 0) return loco_errf(e, "out of memory");
    }
    return 0;
}

/* The script's plot command for one panel. */
static void plot_panel(const drawing *d, const loco_curve *c, int n, int p, const int *panel,
                       const int *npoints, span xs) {
    xs = x_range(xs);
    fprintf(d->gp, "set xrange [%.9g:%.9g]\nplot ", xs.lo, xs.hi);
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (panel[i] != p) continue;
        fputs(first ? "" : ", \\\n     ", d->gp);
        first = 0;
        char name[32], label[LOCO_PATH_LEN + 32];
        snprintf(name, sizeof name, "c%d.dat", i);
        snprintf(label, sizeof label, "%s%s", c[i].label ? c[i].label : "",
                 npoints[i] ? "" : " (no evaluations)");
        if (npoints[i]) {
            put_file(d, name);
            fputs(" using 1:2", d->gp);
        } else {
            fputs("NaN", d->gp);   /* still in the key */
        }
        char style[64];
        loco_plot_series_style(label_series(c, i), style, sizeof style);
        fprintf(d->gp, " with linespoints lw 2 pt 7 ps 0.7 %s title ", style);
        put_quoted(d->gp, label);
    }
    fputc('\n', d->gp);
}

/* How many multiples m of each power of ten fall in r; written to gp unless NULL. */
static int decade_tics(FILE *gp, span r, const double *m, int nm) {
    int count = 0;
    for (double dec = pow(10, floor(log10(r.lo))); dec <= r.hi; dec *= 10)
        for (int i = 0; i < nm; i++) {
            double v = dec * m[i];
            if (v < r.lo || v > r.hi) continue;
            if (gp) fprintf(gp, "%s%g", count ? ", " : "", v);
            count++;
        }
    return count;
}

/* Labelled tics for a log y axis: gnuplot's own label powers of ten only, which leaves a
 * curve that falls from 250 to 20 with one number on its axis. */
static void log_tics(FILE *gp, span r) {
    static const double one[] = {1}, coarse[] = {1, 2, 5}, fine[] = {1, 1.5, 2, 3, 4, 5, 6, 8};
    const double *m = fine;
    int nm = 8;
    if (r.hi / r.lo > 1e4) m = one, nm = 1;
    else if (decade_tics(NULL, r, coarse, 3) >= 4) m = coarse, nm = 3;
    fputs("set ytics (", gp);
    decade_tics(gp, r, m, nm);
    fputs(")\n", gp);
}

/* The x-axis's label; time says which clock's, when the runs agree (single-worker runs
 * name no clock: theirs is the wall's). */
static const char *x_label(const loco_curve *c, int n, int axis) {
    if (axis != LOCO_PLOT_TIME) return loco_enum_row(loco_plot_axes, axis)->data;
    int virtual = 0;
    for (int i = 0; i < n; i++) virtual += !strcmp(c[i].run->clock, "virtual");
    return virtual == n ? "virtual time (s)" : virtual == 0 ? "wall time (s)"
                                                            : "time (s; virtual or wall, by run)";
}

static void curve_script(const drawing *d, const loco_curve *c, int n, int axis,
                         const char *title, const int *panel, const int *first, int np,
                         const span *xs, span ys, const int *npoints) {
    FILE *gp = d->gp;
    int logscale = ys.lo > 0 && ys.hi / ys.lo > 3;
    span yr = padded(ys, logscale);
    fputs("set grid\nset key top right opaque\nset ylabel 'validation perplexity'\n", gp);
    fputs("set xlabel ", gp);
    put_quoted(gp, x_label(c, n, axis));
    fprintf(gp, "\nset yrange [%.9g:%.9g]\n", yr.lo, yr.hi);
    if (logscale) {
        fputs("set logscale y\n", gp);
        log_tics(gp, yr);
    }
    int cols = np <= 3 ? np : (int)ceil(sqrt(np)), rows = (np + cols - 1) / cols;
    if (np > 1) fprintf(gp, "set multiplot layout %d,%d title ", rows, cols);
    else fputs("set title ", gp);
    put_quoted(gp, title ? title : "validation perplexity");
    fputc('\n', gp);
    for (int p = 0; p < np; p++) {
        if (np > 1) {
            fputs("set title ", gp);
            put_quoted(gp, c[first[p]].panel ? c[first[p]].panel : "");
            fputc('\n', gp);
        }
        plot_panel(d, c, n, p, panel, npoints, xs[p]);
    }
    if (np > 1) fputs("unset multiplot\n", gp);
}

int loco_plot_curves(const loco_curve *c, int n, int x_axis, const char *title, int width,
                     int height, const char *png, loco_err *e) {
    if (n < 1) return loco_errf(e, "%s: no curves to draw", png);
    loco_enum_row(loco_plot_axes, x_axis);   /* checks it */
    drawing d;
    if (drawing_open(&d, png, width, height, e) != 0) return -1;
    int *ints = malloc(sizeof(int) * 3 * (size_t)n);
    span *xs = malloc(sizeof *xs * (size_t)n), ys = span_empty;
    int ok = ints && xs;
    if (!ok) loco_errf(e, "out of memory");
    if (ok) {
        int *panel = ints, *first = ints + n, *npoints = ints + 2 * n;
        int np = assign_panels(c, n, panel, first);
        for (int p = 0; p < np; p++) xs[p] = span_empty;
        ok = write_curve_data(&d, c, n, x_axis, panel, xs, &ys, npoints, e) == 0;
        if (ok) curve_script(&d, c, n, x_axis, title, panel, first, np, xs, ys, npoints);
    }
    free(ints);
    free(xs);
    return drawing_end(&d, ok, e);
}

/* ----------------------------------------------------------- timeline */

/* What a timeline is drawn from: one data file per kind of mark, how gnuplot draws it
 * (columns x0 x1 row for bars, x row staleness for markers), and its legend entry. */
enum { TL_COMPUTE, TL_SLOW, TL_WAIT, TL_ARRIVED, TL_REJECTED, TL_FILES };
static const struct {
    const char *file, *style, *key;
} tl_kinds[TL_FILES] = {
    [TL_COMPUTE] = {"compute.dat",
                    "using (($1+$2)/2):3:1:2:($3-0.3):($3+0.3) with boxxyerror "
                    "fs solid border lc rgb 'white' fc rgb '#4a7ab5'",
                    "with boxes fs solid lc rgb '#4a7ab5' title 'computing'"},
    [TL_SLOW] = {"slow.dat",
                 "using (($1+$2)/2):3:1:2:($3-0.3):($3+0.3) with boxxyerror "
                 "fs solid border lc rgb 'white' fc rgb '#c77cc0'",
                 "with boxes fs solid lc rgb '#c77cc0' title 'emulated slowdown'"},
    [TL_WAIT] = {"wait.dat",
                 "using (($1+$2)/2):3:1:2:($3-0.12):($3+0.12) with boxxyerror "
                 "fs solid noborder lc rgb '#d4d4d4'",
                 "with boxes fs solid lc rgb '#d4d4d4' title 'waiting for its next round'"},
    [TL_ARRIVED] = {"arrived.dat",
                    "using 1:2:3 with points pt 7 ps 1.3 lc palette notitle, "
                    "'' using 1:2 with points pt 6 ps 1.3 lc rgb 'black'",
                    "with points pt 7 ps 1.3 lc rgb '#fd8d3c' title 'arrival (colour: staleness)'"},
    [TL_REJECTED] = {"rejected.dat", "using 1:2 with points pt 2 ps 1.6 lw 3 lc rgb '#d00000'",
                     "with points pt 2 ps 1.6 lw 3 lc rgb '#d00000' title 'rejected arrival'"},
};

typedef struct {
    FILE *f[TL_FILES];
    long count[TL_FILES];
    double end;          /* the right edge: everything is cut there */
    int workers;
    long max_stale, drawn, cut;
} timeline;

/* Where the picture ends: the last arrival, or, past LOCO_PLOT_MAX_ROUNDS rounds, the
 * latest arrival among the first that many (in arrival order) so that it stays readable. */
static void timeline_extent(const loco_runlog *r, timeline *t) {
    t->cut = r->nrounds > LOCO_PLOT_MAX_ROUNDS;
    int n = t->cut ? LOCO_PLOT_MAX_ROUNDS : r->nrounds;
    t->end = 0;
    for (int i = 0; i < n; i++)
        if (r->rounds[i].end_s > t->end) t->end = r->rounds[i].end_s;
    t->workers = r->workers > 1 ? r->workers : 1;
    for (int i = 0; i < r->nrounds; i++)
        if (r->rounds[i].worker + 1 > t->workers) t->workers = r->rounds[i].worker + 1;
}

/* the part of [a, b] before the end, as a bar on row y */
static void bar(timeline *t, int kind, double a, double b, int y) {
    if (b > t->end) b = t->end;
    if (!(b > a)) return;
    fprintf(t->f[kind], "%.9g %.9g %d\n", a, b, y);
    t->count[kind]++;
}

static void arrival_marker(timeline *t, const loco_round_rec *q) {
    if (q->end_s > t->end) return;
    int kind = q->applied ? TL_ARRIVED : TL_REJECTED;
    fprintf(t->f[kind], "%.9g %d %ld\n", q->end_s, q->worker, q->staleness);
    t->count[kind]++;
    t->drawn++;
    if (q->applied && q->staleness > t->max_stale) t->max_stale = q->staleness;
}

/* Every round's bars and marker. Read backwards, so each round knows when its worker's
 * next round started (its wait ends there; after its last round a worker is done). */
static int timeline_data(const loco_runlog *r, timeline *t) {
    double *next = malloc(sizeof *next * (size_t)t->workers);
    if (!next) return -1;
    for (int w = 0; w < t->workers; w++) next[w] = NAN;
    for (int i = r->nrounds - 1; i >= 0; i--) {
        const loco_round_rec *q = &r->rounds[i];
        if (q->worker < 0) continue;
        double computed = q->end_s - (q->slowdown_s > 0 ? q->slowdown_s : 0);
        bar(t, TL_COMPUTE, q->start_s, computed, q->worker);
        bar(t, TL_SLOW, computed, q->end_s, q->worker);
        if (!isnan(next[q->worker])) bar(t, TL_WAIT, q->end_s, next[q->worker], q->worker);
        arrival_marker(t, q);
        next[q->worker] = q->start_s;
    }
    free(next);
    return 0;
}

static int timeline_files(const drawing *d, const loco_runlog *r, timeline *t, loco_err *e) {
    int rc = 0;
    for (int k = 0; k < TL_FILES && rc == 0; k++)
        if (!(t->f[k] = open_file(d, tl_kinds[k].file, e))) rc = -1;
    if (rc == 0 && timeline_data(r, t) != 0) rc = loco_errf(e, "out of memory");
    for (int k = 0; k < TL_FILES; k++)
        if (t->f[k] && close_file(t->f[k], d, tl_kinds[k].file, rc ? NULL : e) != 0) rc = -1;
    return rc;
}

static void timeline_axes(const drawing *d, const loco_runlog *r, const timeline *t,
                          const char *title) {
    FILE *gp = d->gp;
    char buf[LOCO_PATH_LEN + 256], dir[LOCO_PATH_LEN];
    snprintf(dir, sizeof dir, "%s", r->dir);
    int n = title ? snprintf(buf, sizeof buf, "%s", title)
                  : snprintf(buf, sizeof buf, "%s: %s, %d workers, %s clock", basename(dir),
                             r->method[0] ? r->method : "?", t->workers,
                             r->clock[0] ? r->clock : "real");
    if (t->cut && n >= 0 && n < (int)sizeof buf)
        snprintf(buf + n, sizeof buf - (size_t)n, " (the first %.4g s only: %ld of %d rounds)",
                 t->end, t->drawn, r->nrounds);
    fputs("set title ", gp);
    put_quoted(gp, buf);
    fprintf(gp, "\nset xlabel '%s'\nset xrange [0:%.9g]\nset yrange [%d.5:-0.5]\nset ytics (",
            !strcmp(r->clock, "virtual") ? "virtual time (s)" : "wall time (s)",
            t->end > 0 ? t->end : 1, t->workers - 1);
    for (int w = 0; w < t->workers; w++) fprintf(gp, "%s'worker %d' %d", w ? ", " : "", w, w);
    fputs(")\nset grid xtics\nset key outside top center horizontal\n", gp);
    /* one colour per staleness value while they are few enough to tell apart (at least
     * two: staleness 0 alone would take the palette's middle) */
    long ms = t->max_stale > 1 ? t->max_stale : 1;
    fprintf(gp, "set cbrange [-0.5:%ld.5]\nset cblabel 'staleness of an arrival'\n", ms);
    fputs("set palette defined (0 '#ffffcc', 1 '#fd8d3c', 2 '#800026')\n", gp);
    if (ms < 16) fprintf(gp, "set palette maxcolors %ld\nset cbtics 1\n", ms + 1);
}

/* The plot command: the data files that have something, then the legend's entries,
 * there whatever the data. (A NaN first: gnuplot fails an assertion on a plot of
 * legend entries alone.) */
static void timeline_plot(const drawing *d, const timeline *t) {
    fputs("plot NaN notitle", d->gp);
    for (int k = 0; k < TL_FILES; k++) {
        if (!t->count[k]) continue;
        fputs(", \\\n     ", d->gp);
        put_file(d, tl_kinds[k].file);
        fprintf(d->gp, " %s notitle", tl_kinds[k].style);
    }
    for (int k = 0; k < TL_FILES; k++) fprintf(d->gp, ", \\\n     keyentry %s", tl_kinds[k].key);
    fputc('\n', d->gp);
}

int loco_plot_timeline(const loco_runlog *run, const char *title, int width, int height,
                       const char *png, loco_err *e) {
    drawing d;
    if (drawing_open(&d, png, width, height, e) != 0) return -1;
    timeline t = {0};
    timeline_extent(run, &t);
    int ok = timeline_files(&d, run, &t, e) == 0;
    if (ok) {
        timeline_axes(&d, run, &t, title);
        timeline_plot(&d, &t);
    }
    return drawing_end(&d, ok, e);
}

/* ------------------------------------------------------ learning rates */

/* lr.dat: one block per worker (x: arrival, y: rate), blank lines between blocks so that
 * gnuplot's `index` picks a worker; how many rounds each block has into counts */
static int lr_data(const drawing *d, const loco_runlog *r, int workers, long *counts,
                   loco_err *e) {
    FILE *f = open_file(d, "lr.dat", e);
    if (!f) return -1;
    for (int w = 0; w < workers; w++) {
        for (int i = 0; i < r->nrounds; i++) {
            const loco_round_rec *q = &r->rounds[i];
            if (q->worker != w || !isfinite(q->lr)) continue;
            fprintf(f, "%.9g %.9g\n", q->end_s, q->lr);
            counts[w]++;
        }
        fputs("\n\n", f);
    }
    return close_file(f, d, "lr.dat", e);
}

int loco_plot_lr(const loco_runlog *run, const char *title, int width, int height,
                 const char *png, loco_err *e) {
    timeline t = {0};
    timeline_extent(run, &t); /* for t.workers */
    long *counts = calloc((size_t)t.workers, sizeof *counts);
    if (!counts) return loco_errf(e, "out of memory");
    drawing d;
    if (drawing_open(&d, png, width, height, e) != 0) {
        free(counts);
        return -1;
    }
    int ok = lr_data(&d, run, t.workers, counts, e) == 0;
    long total = 0;
    for (int w = 0; w < t.workers; w++) total += counts[w];
    if (ok && total == 0) {
        loco_errf(e, "%s: no arrival records its inner learning rate (\"lr\"; recorded since "
                  "2026-12-07)", run->dir[0] ? run->dir : "the run");
        ok = 0;
    }
    if (ok) {
        char buf[LOCO_PATH_LEN + 128], dir[LOCO_PATH_LEN];
        snprintf(dir, sizeof dir, "%s", run->dir);
        if (!title)
            snprintf(buf, sizeof buf, "%s: the inner learning rate of each worker's rounds (%s, "
                     "%d workers)", basename(dir), run->method[0] ? run->method : "?", t.workers);
        fputs("set title ", d.gp);
        put_quoted(d.gp, title ? title : buf);
        fprintf(d.gp, "\nset xlabel '%s'\nset ylabel 'inner learning rate at the round''s end'\n"
                      "set grid\nset key outside top center horizontal\nplot NaN notitle",
                !strcmp(run->clock, "virtual") ? "virtual time (s)" : "wall time (s)");
        for (int w = 0; w < t.workers; w++) {
            if (!counts[w]) continue;
            fputs(", \\\n     ", d.gp);
            put_file(&d, "lr.dat");
            char style[64];
            loco_plot_series_style(w, style, sizeof style);
            fprintf(d.gp, " index %d using 1:2 with linespoints pt 7 ps 0.5 lw 2 %s title 'worker %d'",
                    w, style, w);
        }
        fputc('\n', d.gp);
    }
    free(counts);
    return drawing_end(&d, ok, e);
}
