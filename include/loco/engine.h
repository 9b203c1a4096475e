/* engine: one asynchronous Local-SGD run. Translates the config into the settings of
 * the modules below it and wires them: the topology and pinning plan, the global buffer,
 * the clock, the heterogeneity profile, the server, the evaluator thread and the worker
 * threads; shows progress while they run; gathers the run's figures for the summary. */
#ifndef LOCO_ENGINE_H
#define LOCO_ENGINE_H

#include <signal.h>

#include "loco/config.h"
#include "loco/data.h"
#include "loco/metrics.h"
#include "loco/model.h"
#include "loco/checkpoint.h"

typedef struct {
    const loco_config *c;            /* validated */
    const loco_model *m;
    const loco_data *d;
    const float *init;               /* theta(0) */
    loco_metrics *mt;
    volatile sig_atomic_t *stop;     /* set to end early (no new rounds) */
    /* checkpoints: begin(ctx, w) starts the file and packs the run's own part, then the
     * engine packs its state; after every ckpt_updates-th server update (the server holds
     * the run for it, so each multiple gets one) and every ckpt_seconds (0: only
     * when stopped). begin NULL: none. */
    int (*begin)(void *ctx, loco_state_writer *w, loco_err *e);
    void *ctx;
    long ckpt_updates;
    double ckpt_seconds;
    loco_unpack *resume;             /* a resumed run: the engine's part of its checkpoint */
} loco_engine_in;

typedef struct {
    float *theta;                    /* the final global parameters (m->nparams) */
    double final_val, final_se;      /* validation loss of theta, its standard error */
    long tokens, local_steps, updates;
    double wall_s, time_s;           /* time_s: virtual seconds in the virtual clock */
    double wait_s;                   /* worker seconds spent waiting for stripes, turns, windows */
    int stopped;                     /* ended early */
    int incomplete;                  /* every worker failed for good before the budget was done */
    loco_summary summary;            /* the asynchronous part of the summary */
    loco_worker_row *rows;           /* its per-worker rows */
} loco_engine_out;

/* The engine's part of a checkpoint read without running it (the run's config and model
 * size say its layout): one line on where the run stood into buf, after checking every
 * field and that the global parameters are finite. */
int loco_engine_describe(const loco_config *c, size_t nparams, loco_unpack *u, char *buf,
                         size_t n, loco_err *e);

/* Runs it. out is filled (and must be freed with loco_engine_out_free) even on error. */
int loco_engine_run(const loco_engine_in *in, loco_engine_out *out, loco_err *e);
void loco_engine_out_free(loco_engine_out *out);

#endif
