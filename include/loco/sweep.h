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
    volatile sig_atomic_t *stop;     /* set to stop: no new runs, running ones save */
} loco_sweep_opts;

/* Reads and checks the whole spec and every run's config before anything runs or is
 * written; then runs what is not done yet and writes the results. */
int loco_sweep_run(const loco_sweep_opts *o, loco_err *e);

#endif
