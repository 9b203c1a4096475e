#include "loco/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/metrics.h"
#include "loco/plot.h"

double loco_time_to_target(const loco_point *p, int n, double target) {
    for (int i = 0; i < n; i++) {
        if (p[i].val_loss > target) continue;
        if (i == 0) return p[0].time_s;
        /* between the last evaluation above the target and this one */
        double l0 = p[i - 1].val_loss, l1 = p[i].val_loss;
        double t0 = p[i - 1].time_s, t1 = p[i].time_s;
        return t0 + (t1 - t0) * (l0 - target) / (l0 - l1);
    }
    return -1;
}

void loco_mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    double v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0;
}

void loco_format_mean(const double *x, int n, char *buf, size_t len) {
    double mean, sd;
    loco_mean_sd(x, n, &mean, &sd);
    if (n > 1)
        snprintf(buf, len, "%.2f ± %.2f", mean, sd);
    else
        snprintf(buf, len, "%.2f", mean);
}

/* ----------------------------------------------------------- a sweep's results */

/* the part of a row after its variant: the other axes' values ("" for most) */
static const char *row_rest(const loco_result *x) {
    return x->row + strlen(x->variant);
}

static int finished(const loco_result *x) {
    return !strcmp(x->status, "finished");
}

/* the runs of (row, column) into out, the finished ones first (how many into *done when
 * not NULL); returns how many */
static int cell(const loco_results *r, const char *row, const char *col, const loco_result **out,
                int *done) {
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < r->nruns; i++)
            if (!strcmp(r->runs[i].row, row) && !strcmp(r->runs[i].column, col) &&
                finished(&r->runs[i]) == !pass)
                out[n++] = &r->runs[i];
        if (pass == 0 && done) *done = n;
    }
    return n;
}

/* the target loss for x: the mean final loss of the target variant's runs in x's column
 * with x's other axes; NAN without one */
static double target_for(const loco_results *r, const loco_result *x) {
    double sum = 0;
    int n = 0;
    for (int i = 0; r->target && i < r->nruns; i++) {
        const loco_result *t = &r->runs[i];
        if (strcmp(t->variant, r->target) || strcmp(t->column, x->column) ||
            strcmp(row_rest(t), row_rest(x)) || !finished(t))
            continue;
        sum += t->log->final_val_loss;
        n++;
    }
    return n ? sum / n : NAN;
}

static double reach_time(const loco_results *r, const loco_result *x) {
    if (!finished(x)) return NAN;
    double target = target_for(r, x);
    if (isnan(target)) return NAN;
    return loco_time_to_target(x->log->evals, x->log->nevals, target);
}

/* ---- results.json ---- */

static void json_run(const loco_results *r, const loco_result *x, loco_json *j) {
    loco_json_open(j, NULL, '{');
    loco_json_str(j, "row", x->row);
    loco_json_str(j, "variant", x->variant);
    loco_json_str(j, "column", x->column);
    loco_json_int(j, "seed", x->seed);
    loco_json_num(j, "outer_lr", x->lr);
    loco_json_str(j, "dir", x->dir);
    loco_json_str(j, "status", x->status);
    int has = x->log->status[0] != 0; /* a summary: the run's figures */
    loco_json_num(j, "final_val_loss", has ? x->log->final_val_loss : NAN);
    loco_json_num(j, "final_val_ppl", has ? x->log->final_val_ppl : NAN);
    loco_json_num(j, "time_s", has ? x->log->time_s : NAN);
    double t = reach_time(r, x);
    if (!isnan(t)) loco_json_num(j, "time_to_target_s", t >= 0 ? t : NAN);
    if (x->rerun) loco_json_str(j, "rerun", x->rerun);
    loco_json_close(j, '}');
}

static int write_json(const loco_results *r, const char *dir, loco_err *e) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "name", r->name);
    loco_json_str(&j, "spec", r->spec);
    loco_json_str(&j, "axis", r->axis ? r->axis : "");
    loco_json_str(&j, "target", r->target ? r->target : "");
    loco_json_str(&j, "settings", r->settings);
    loco_json_open(&j, "rows", '[');
    for (int i = 0; i < r->nrows; i++) loco_json_str(&j, NULL, r->rows[i]);
    loco_json_close(&j, ']');
    loco_json_open(&j, "columns", '[');
    for (int i = 0; i < r->ncolumns; i++) loco_json_str(&j, NULL, r->columns[i]);
    loco_json_close(&j, ']');
    loco_json_open(&j, "runs", '[');
    for (int i = 0; i < r->nruns; i++) json_run(r, &r->runs[i], &j);
    loco_json_close(&j, ']');
    loco_json_open(&j, "tuning", '[');
    for (int i = 0; i < r->ntuning; i++) {
        const loco_result *x = &r->tuning[i];
        loco_json_open(&j, NULL, '{');
        loco_json_str(&j, "row", x->row);
        loco_json_str(&j, "column", x->column);
        loco_json_num(&j, "outer_lr", x->lr);
        loco_json_str(&j, "status", x->status);
        loco_json_num(&j, "final_val_loss", x->log->status[0] ? x->log->final_val_loss : NAN);
        loco_json_close(&j, '}');
    }
    loco_json_close(&j, ']');
    loco_json_end(&j);
    int rc = loco_write_text(dir, "results.json", j.buf, e);
    loco_json_free(&j);
    return rc;
}

/* ---- results.md ---- */

static void md_header(FILE *f, const loco_results *r, const char *corner) {
    fprintf(f, "| %s |", corner);
    for (int c = 0; c < r->ncolumns; c++) fprintf(f, " %s |", r->columns[c][0] ? r->columns[c] : "all");
    fprintf(f, "\n|---|");
    for (int c = 0; c < r->ncolumns; c++) fprintf(f, "---|");
    fputc('\n', f);
}

/* A cell's final perplexity (buf: its n runs, the done finished ones first): the mean
 * over the finished runs; where none finished, over the final evaluations of those that
 * have one (incomplete runs), marked; else how they ended. Returns 1 when marked. */
static int ppl_cell(FILE *f, const loco_result **buf, int n, int done) {
    double x[64];
    int m = 0;
    for (int k = 0; k < (done ? done : n) && m < 64; k++) {
        double p = buf[k]->log->final_val_ppl;
        if (isfinite(p) && p > 0) x[m++] = p;
    }
    char txt[64] = "–";
    if (m > 0) loco_format_mean(x, m, txt, sizeof txt);
    if (n == 0 || done == n) {
        if (n > 1) fprintf(f, " %s (%d seeds) |", txt, n);
        else fprintf(f, " %s |", txt);
        return 0;
    }
    if (done > 0) fprintf(f, " %s\\* (%d of %d finished) |", txt, done, n);
    else if (m > 0) fprintf(f, " %s\\* (%s%s) |", txt, buf[0]->status, n > 1 ? ", none finished" : "");
    else fprintf(f, " %s |", buf[0]->status);
    return 1;
}

/* final validation perplexity, mean ± spread over seeds; returns how many cells are
 * marked */
static int md_ppl(FILE *f, const loco_results *r, const loco_result **buf) {
    int marked = 0;
    md_header(f, r, "variant");
    for (int i = 0; i < r->nrows; i++) {
        fprintf(f, "| %s |", r->rows[i]);
        for (int c = 0; c < r->ncolumns; c++) {
            int done, n = cell(r, r->rows[i], r->columns[c], buf, &done);
            marked += ppl_cell(f, buf, n, done);
        }
        fputc('\n', f);
    }
    return marked;
}

/* simulated time to reach the target's final loss, and the whole run's time */
static void md_time(FILE *f, const loco_results *r, const loco_result **buf) {
    md_header(f, r, "variant");
    for (int i = 0; i < r->nrows; i++) {
        fprintf(f, "| %s |", r->rows[i]);
        for (int c = 0; c < r->ncolumns; c++) {
            int done, n = cell(r, r->rows[i], r->columns[c], buf, &done), reached = 0;
            double t[64], total = 0;
            for (int k = 0; k < done && k < 64; k++) { /* finished runs only */
                double x = reach_time(r, buf[k]);
                if (x >= 0) t[reached++] = x;
                total += buf[k]->log->time_s;
            }
            char txt[64] = "not reached";
            if (reached > 0) loco_format_mean(t, reached, txt, sizeof txt);
            if (done == 0) snprintf(txt, sizeof txt, "%s", n ? buf[0]->status : "–");
            fprintf(f, " %s", txt);
            if (reached > 0 && reached < done) fprintf(f, " (%d of %d)", reached, done);
            if (done > 0) fprintf(f, " / %.0f%s", total / done, done < n ? "\\*" : "");
            fprintf(f, " |");
        }
        fputc('\n', f);
    }
}

/* the outer learning rate each (row, column) ran with */
/* the arrivals each cell's runs dropped as too stale, of all that arrived (the mean over
 * its finished runs) */
static void md_dropped(FILE *f, const loco_results *r, const loco_result **buf) {
    md_header(f, r, "variant");
    for (int i = 0; i < r->nrows; i++) {
        fprintf(f, "| %s |", r->rows[i]);
        for (int c = 0; c < r->ncolumns; c++) {
            int done;
            cell(r, r->rows[i], r->columns[c], buf, &done);
            double dropped = 0, arrived = 0;
            for (int k = 0; k < done; k++) {
                dropped += (double)buf[k]->log->rejected_stale / done;
                arrived += (double)(buf[k]->log->updates + buf[k]->log->rejected_stale) / done;
            }
            if (done > 0 && arrived > 0) fprintf(f, " %.0f of %.0f |", dropped, arrived);
            else fprintf(f, " – |");
        }
        fputc('\n', f);
    }
}

/* the rate chosen, the range its tuning runs tried, and whether it is at an end of it */
static void md_rate(FILE *f, const loco_results *r, const loco_result *x) {
    double lo = INFINITY, hi = 0;
    for (int k = 0; k < r->ntuning; k++) {
        const loco_result *t = &r->tuning[k];
        if (strcmp(t->row, x->row) || strcmp(t->column, x->column)) continue;
        lo = fmin(lo, t->lr), hi = fmax(hi, t->lr);
    }
    if (!(hi > lo)) {
        fprintf(f, " %g |", x->lr);
        return;
    }
    fprintf(f, " %g (of %g–%g%s) |", x->lr, lo, hi,
            x->lr == lo || x->lr == hi ? ", at an end" : "");
}

static void md_rates(FILE *f, const loco_results *r, const loco_result **buf) {
    fprintf(f, "The rate each cell's runs used; in brackets, the lowest and highest its tuning "
               "runs tried (a grid extended by `[tune] extend` where its best was at an end).\n\n");
    md_header(f, r, "variant");
    for (int i = 0; i < r->nrows; i++) {
        fprintf(f, "| %s |", r->rows[i]);
        for (int c = 0; c < r->ncolumns; c++) {
            int n = cell(r, r->rows[i], r->columns[c], buf, NULL);
            if (n > 0 && buf[0]->lr > 0) md_rate(f, r, buf[0]);
            else fprintf(f, " – |"); /* no runs, or a method without an outer rate */
        }
        fputc('\n', f);
    }
}

static int write_md(const loco_results *r, const char *dir, int plots, loco_err *e) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    const loco_result **buf = malloc(sizeof *buf * (size_t)(r->nruns + 1));
    if (!f || !buf) {
        if (f) fclose(f);
        free(text), free(buf);
        return loco_errf(e, "out of memory");
    }
    fprintf(f, "# %s\n\n%s\n\nSpec: `%s`. Columns: `%s`.", r->name, r->settings, r->spec,
            r->axis ? r->axis : "-");
    int reruns = 0;
    for (int i = 0; i < r->nruns; i++) reruns += r->runs[i].rerun != NULL;
    if (reruns)
        fprintf(f, " Each finished run's `rerun` in results.json is the command that makes it "
                   "again, bit for bit: its recorded config, the same θ(0), the same BLAS kernels.");
    fputs("\n\n", f);
    fprintf(f, "## Final validation perplexity\n\nMean ± standard deviation over seeds where "
               "there are several.\n\n");
    if (md_ppl(f, r, buf) > 0)
        fprintf(f, "\n\\* Not every run of the cell finished (results.json has each run's "
                   "status): the figure is the mean over the runs that finished; where none "
                   "did, it is the final evaluation of those that ended `incomplete` (every "
                   "worker failed for good before the budget was done), short of the budget "
                   "and not comparable. `failed`: diverged; `crashed`: ended without a summary "
                   "(see its log.txt); `not run`: its directory was in use by another "
                   "process.\n");
    if (r->target) {
        fprintf(f, "\n## Time to `%s`'s final loss\n\nSimulated seconds until a run's "
                   "validation loss first reaches the mean final loss of `%s` in its column "
                   "(interpolated between evaluations), then `/` the run's whole simulated "
                   "time; finished runs only (\\* where some of the cell's did not "
                   "finish).\n\n", r->target, r->target);
        md_time(f, r, buf);
    }
    fprintf(f, "\n## Outer learning rates\n\n");
    md_rates(f, r, buf);
    if (r->dropped) {
        fprintf(f, "\n## Arrivals dropped as too stale\n\nArrivals staler than "
                   "`outer.stale_max` that `polythres` dropped, of all that arrived (mean over "
                   "the cell's finished runs; other methods drop none for staleness).\n\n");
        md_dropped(f, r, buf);
    }
    if (plots)
        fprintf(f, "\n## Curves\n\n![against local steps](curves_steps.png)\n\n"
                   "![against simulated time](curves_time.png)\n");
    if (plots > 1) fprintf(f, "\n## Timeline of `%s`\n\n![timeline](timeline.png)\n", r->timeline);
    if (plots > 2)
        fprintf(f, "\n## Inner learning rates of `%s`\n\nThe same run: the inner learning rate "
                   "at the end of each worker's rounds.\n\n![learning rates](lr.png)\n", r->timeline);
    fclose(f);
    free(buf);
    int rc = loco_write_text(dir, "results.md", text, e);
    free(text);
    return rc;
}

/* ---- plots ---- */

/* the first run (lowest seed) of each (row, column), as curves: one panel per column */
static int first_runs(const loco_results *r, loco_curve *out) {
    int n = 0;
    for (int c = 0; c < r->ncolumns; c++)
        for (int i = 0; i < r->nrows; i++) {
            const loco_result *best = NULL;
            for (int k = 0; k < r->nruns; k++) {
                const loco_result *x = &r->runs[k];
                if (!strcmp(x->row, r->rows[i]) && !strcmp(x->column, r->columns[c]) &&
                    x->log->nevals > 0 && (!best || x->seed < best->seed))
                    best = x;
            }
            if (best) out[n++] = (loco_curve){best->log, best->row,
                                              r->ncolumns > 1 ? r->columns[c] : NULL};
        }
    return n;
}

/* the timeline variant's first run in the last column (the most heterogeneous, in the
 * paper's tables) */
static const loco_result *timeline_run(const loco_results *r) {
    const char *col = r->columns[r->ncolumns - 1];
    for (int k = 0; r->timeline && k < r->nruns; k++)
        if (!strcmp(r->runs[k].variant, r->timeline) && !strcmp(r->runs[k].column, col) &&
            r->runs[k].log->nrounds > 0)
            return &r->runs[k];
    return NULL;
}

/* whether any of its arrivals records the inner learning rate (runs before 2026-12-07:
 * none does) */
static int records_lr(const loco_runlog *log) {
    for (int i = 0; i < log->nrounds; i++)
        if (isfinite(log->rounds[i].lr)) return 1;
    return 0;
}

/* curves_steps.png, curves_time.png, timeline.png and lr.png; returns how many kinds it
 * drew */
static int draw(const loco_results *r, const char *dir, loco_err *e) {
    loco_curve *c = malloc(sizeof *c * (size_t)(r->nruns + 1));
    if (!c) return loco_errf(e, "out of memory");
    int n = first_runs(r, c), rc = 0;
    char png[LOCO_PATH_LEN + 32], title[256];
    const char *names[] = {"curves_steps.png", "curves_time.png"};
    const int axes[] = {LOCO_PLOT_STEPS, LOCO_PLOT_TIME};
    int width = r->ncolumns > 2 ? 1600 : 1000;
    for (int a = 0; a < 2 && rc == 0; a++) {
        snprintf(png, sizeof png, "%s/%s", dir, names[a]);
        snprintf(title, sizeof title, "%s: validation perplexity against %s", r->name,
                 a ? "simulated time" : "total local steps");
        rc = loco_plot_curves(c, n, axes[a], title, width, 600, png, e);
    }
    free(c);
    if (rc != 0) return -1;
    const loco_result *t = timeline_run(r);
    if (!t) return 1;
    snprintf(png, sizeof png, "%s/timeline.png", dir);
    snprintf(title, sizeof title, "%s: %s, %s = %s, seed %ld", r->name, t->row,
             r->axis ? r->axis : "", t->column, t->seed);
    if (loco_plot_timeline(t->log, title, 1200, 500, png, e) != 0) return -1;
    if (!records_lr(t->log)) return 2;
    snprintf(png, sizeof png, "%s/lr.png", dir);
    snprintf(title, sizeof title, "%s: %s, %s = %s, seed %ld: the inner learning rate of each "
             "worker's rounds", r->name, t->row, r->axis ? r->axis : "", t->column, t->seed);
    return loco_plot_lr(t->log, title, 1000, 500, png, e) != 0 ? -1 : 3;
}

int loco_results_write(const loco_results *r, const char *dir, loco_err *e) {
    if (write_json(r, dir, e) != 0) return -1;
    int plots = draw(r, dir, e);
    if (plots < 0) return -1;
    return write_md(r, dir, plots, e);
}
