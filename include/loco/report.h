/* report: what a set of runs found. The numbers (the mean and spread of a figure over
 * seeds, the time a run needs to reach a target loss, interpolated between its
 * evaluations) as pure functions, and the results of a sweep written out: results.json,
 * results.md with tables shaped like the paper's, and the plots. Knows runs only as
 * runlogs with a row, a column and a seed. */
#ifndef LOCO_REPORT_H
#define LOCO_REPORT_H

#include "loco/runlog.h"

/* The first time at which the curve (points in order of time) reaches loss <= target,
 * interpolated linearly between the two evaluations around the crossing; -1 when it
 * never does. A first point already at or below the target gives its own time. */
double loco_time_to_target(const loco_point *p, int n, double target);

/* Mean and sample standard deviation (0 for n = 1) of x[0..n); n >= 1. */
void loco_mean_sd(const double *x, int n, double *mean, double *sd);

/* "41.35" or "41.35 ± 0.12" (with n > 1) into buf. */
void loco_format_mean(const double *x, int n, char *buf, size_t len);

/* One run of a sweep, whatever became of it. */
typedef struct {
    const char *row;                 /* its row in the tables: the variant (and other axes) */
    const char *variant;             /* the variant alone */
    const char *column;              /* its value of the table's axis ("" without one) */
    long seed;
    double lr;                       /* the outer learning rate it ran with */
    const char *status;              /* "finished", "incomplete", "failed", "stopped", or
                                        what kept it from a summary: "crashed", "not run" */
    const loco_runlog *log;          /* its figures (empty without a result) */
    const char *dir;
    const char *rerun;               /* the command that makes it again, bit for bit; or NULL */
} loco_result;

typedef struct {
    const char *name, *spec;
    const char *axis;                /* the key the columns are values of; NULL: one column */
    const char *target;              /* variant whose final loss is the time-to-target target */
    const char *timeline;            /* variant whose first run gets a timeline; NULL: none */
    const char *settings;            /* what was run, one paragraph */
    int dropped;                     /* a table of the arrivals dropped as too stale */
    const loco_result *runs, *tuning;
    int nruns, ntuning;
    const char *const *rows, *const *columns;   /* in table order */
    int nrows, ncolumns;
} loco_results;

/* dir/results.json, dir/results.md and the plots beside them (curves against local steps
 * and against time, one panel per column; a timeline). */
int loco_results_write(const loco_results *r, const char *dir, loco_err *e);

#endif
