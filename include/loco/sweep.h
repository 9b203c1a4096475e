/* sweep: the experiment runner, in the run layer. Owns the spec (an INI file: the base
 * config, the pre-training phase, the variants, the grid, the outer-lr tuning, extra
 * seeds, the --quick overrides), its expansion into runs, their execution as child
 * processes (finished runs are skipped, so an interrupted sweep resumes), and the
 * results: results.json, results.md, and the plots. */
#ifndef LOCO_SWEEP_H
#define LOCO_SWEEP_H

#include <signal.h>

#include "loco/base.h"

typedef struct {
    const char *spec;                /* the spec file */
    const char *out;                 /* output directory; NULL: runs/sweep-NAME */
    int quick;                       /* apply the spec's [quick] section */
    int jobs;                        /* runs at once (>= 1) */
    int plan;                        /* only check the spec and print its runs (stdout) */
    volatile sig_atomic_t *stop;     /* set to stop: no new runs, running ones save */
} loco_sweep_opts;

/* Reads and checks the whole spec and every run's config (its data file and memory too)
 * before anything runs or is written; takes the output directory's lock (a second sweep
 * into it is refused); then runs what is not done yet (resuming runs cut short) and
 * writes the results. Returns 0 when every main run finished, 1 when the results are
 * written but some main runs did not finish (they are listed), -1 with a message on an
 * error or when stopped. With o->plan it stops after the checks, prints the runs and the
 * local steps they train, and writes nothing. */
int loco_sweep_run(const loco_sweep_opts *o, loco_err *e);

#endif
