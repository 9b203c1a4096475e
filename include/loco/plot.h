/* plot: PNG pictures of runs read back by runlog: validation curves and worker timelines,
 * drawn by gnuplot (pngcairo) from data files and a script in a temporary directory.
 * Knows runlog's records and nothing of how a run was made, nor of the command line. */
#ifndef LOCO_PLOT_H
#define LOCO_PLOT_H

#include "loco/base.h"
#include "loco/runlog.h"

/* What a curve's x-axis counts. */
typedef enum {
    LOCO_PLOT_STEPS,     /* local steps summed over workers (the marks when a run has them) */
    LOCO_PLOT_TIME,      /* time_s: virtual seconds on the virtual clock, wall seconds otherwise */
    LOCO_PLOT_UPDATES,   /* server updates (single-worker runs: optimizer steps) */
} loco_plot_x;

/* names "steps", "time", "updates"; data is the axis label */
extern const loco_enum loco_plot_axes[];

/* One line of a curve plot: a run, its name in the key, and the panel it is drawn in
 * (NULL: the one panel). */
typedef struct {
    const loco_runlog *run;
    const char *label;
    const char *panel;
} loco_curve;

/* Validation perplexity (exp(val_loss)) against x_axis, one line with points per curve,
 * one panel per distinct panel string (in order of first appearance) on a shared y range,
 * log y when it spans more than a factor 3. A curve without evaluations stays in the key.
 * title NULL: a default. Writes png (width x height pixels) crash-safely. */
int loco_plot_curves(const loco_curve *c, int n, int x_axis, const char *title, int width,
                     int height, const char *png, loco_err *e);

/* The most rounds a timeline draws; past it, only the start of the run that holds them. */
enum { LOCO_PLOT_MAX_ROUNDS = 300 };

/* One row per worker: each round as bars (computing, emulated slowdown, waiting for its
 * next round), each arrival a marker coloured by its staleness, rejected ones crossed.
 * title NULL: the run's directory, method, workers and clock. */
int loco_plot_timeline(const loco_runlog *run, const char *title, int width, int height,
                       const char *png, loco_err *e);

/* The inner learning rate at the end of each worker's rounds against the round's arrival,
 * one line per worker: whether the workers anneal together (train.lr_progress). Rounds
 * without a recorded rate (runs before it was recorded) are left out; -1 with a message
 * when none has one. title NULL: the run's directory, method and workers. */
int loco_plot_lr(const loco_runlog *run, const char *title, int width, int height,
                 const char *png, loco_err *e);

/* The line style of a plot's i-th series (from 0): one of 16 distinct colours, and past
 * them a dash type of its own, so that no two series of a plot look alike. */
void loco_plot_series_style(int i, char *buf, size_t n);

#endif
