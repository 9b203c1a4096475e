/* engine: one asynchronous Local-SGD run. Wires the topology and pinning plan, the
 * global buffer, the clock, the heterogeneity profile, the server, the evaluator
 * thread and the worker threads; shows progress while they run; reports arrivals,
 * evaluations and the run's summary. */
#ifndef LOCO_ENGINE_H
#define LOCO_ENGINE_H

#include <signal.h>

#include "loco/config.h"
#include "loco/data.h"
#include "loco/metrics.h"
#include "loco/model.h"

typedef struct {
    const loco_config *c;
    const loco_model *m;
    const loco_data *d;
    const float *init;               /* theta(0) */
    loco_metrics *mt;
    volatile sig_atomic_t *stop;     /* set to end early (no new rounds) */
    int byte_level;
} loco_engine_in;

typedef struct {
    float *theta;                    /* the final global parameters (m->nparams; caller frees) */
    double final_val;                /* validation loss of theta */
    long tokens, local_steps, updates;
    double wall_s, time_s;           /* time_s: virtual seconds in the virtual clock */
    double wait_s;                   /* worker seconds spent waiting for stripes, turns, windows */
    int stopped;                     /* ended early */
} loco_engine_out;

/* Runs it; adds the run's own fields (per-worker rows, staleness histogram, server busy
 * fraction, contention, ...) to the open summary object. */
int loco_engine_run(const loco_engine_in *in, loco_json *summary, loco_engine_out *out,
                    loco_err *e);

#endif
