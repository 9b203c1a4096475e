/* worker: one model replica and its inner optimizer. Owns the replica's parameters,
 * gradients, AdamW moments (kept across rounds), activations and its seeded data
 * stream, and its products' context (mm: fp32, or bf16 with the weights' bf16 mirror);
 * a step samples a batch, runs forward and backward, clips and applies AdamW. All
 * buffers (and in bf16 every oneDNN primitive) are made at init: a step allocates
 * nothing. */
#ifndef LOCO_WORKER_H
#define LOCO_WORKER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "loco/adamw.h"
#include "loco/data.h"
#include "loco/pack.h"
#include "loco/hetero.h"
#include "loco/model.h"
#include "loco/server.h"
#include "loco/topo.h"

/* A worker's settings: batch shape, the run's seed (its data stream is (seed, id)) and
 * the inner optimizer. */
typedef struct {
    int B, T;
    uint64_t seed;
    loco_adamw_hp hp;
    loco_precision precision;  /* of the products: fp32 or bf16 (resolved) */
    int lr_progress;           /* LOCO_LR_* (adamw.h): the asynchronous workers' schedule */
    uint64_t first_stream;     /* worker id draws data stream first_stream + id */
    long budget;               /* the run's local steps summed over workers, for `run` */
} loco_worker_opts;

typedef struct {
    int id;
    const loco_model *m;
    loco_adamw_hp hp;
    loco_stream stream;
    float *params, *grads, *adam_m, *adam_v;   /* m->nparams floats each */
    loco_acts acts;                            /* acts.mm: its products' context */
    int *inputs, *targets;                     /* (B,T) */
    int B, T;
    long steps;          /* inner steps taken: AdamW's t (and the schedule's position) */
    double lr_pos;       /* the next step's position in the schedule when >= 0 (set per
                            step by an asynchronous worker under lr_progress = run) */
    float loss;          /* of the last step */
    double lr;           /* the inner learning rate of the last step */
    double grad_norm;    /* of the last step, before clipping */
} loco_worker;

/* Allocates the worker for batches of o->B x o->T; params start as a copy of init. */
int loco_worker_init(loco_worker *w, int id, const loco_model *m, const loco_data *d,
                     const loco_worker_opts *o, const float *init, loco_err *e);
void loco_worker_free(loco_worker *w);

/* One inner step: loco_worker_grad then loco_worker_update. Returns the loss before the
 * update (NaN or Inf when it diverged: the caller decides what to do; the update has
 * then poisoned params). */
float loco_worker_step(loco_worker *w);

/* The step's two halves: the next batch's loss and gradients (returns the loss; with
 * accumulate, the gradients add to those already there), and the clipped AdamW update
 * from the gradients times scale (1/k after k accumulated batches; advances steps). */
float loco_worker_grad(loco_worker *w, int accumulate);
void loco_worker_update(loco_worker *w, float scale);

/* Clears the AdamW moments (a worker whose delta was not finite starts them afresh). */
void loco_worker_reset_optimizer(loco_worker *w);

/* The worker's state that outlives a step: parameters, AdamW moments and step count, the
 * data stream's position, the last loss and norm. Load checks what it reads (0, or -1
 * when the stream is short or mangled). */
void loco_worker_save(const loco_worker *w, loco_pack *p);
int loco_worker_load(loco_worker *w, loco_unpack *u);

/* ------------------------------------------------------- the worker thread */

/* What a worker does now, for the progress line. */
enum { LOCO_ACT_START, LOCO_ACT_COMPUTE, LOCO_ACT_SLOW, LOCO_ACT_SYNC, LOCO_ACT_DONE, LOCO_ACT_AWAY };

/* What a worker thread did. Written by its own thread only; activity and steps are read
 * by the progress line while it runs, the rest once it is joined. */
typedef struct {
    atomic_int activity;       /* LOCO_ACT_* */
    atomic_long steps;
    long rounds, rejected;
    double compute_s;          /* inner steps */
    double slowdown_s;         /* emulated slowdown (real clock) */
    double lockwait_s;         /* waiting for stripes */
    double idle_s;             /* waiting for the clock's turn or a window */
    double last_lr;            /* the inner learning rate of its last step, once done */
    int ftz_daz;               /* the thread computes with flush-to-zero and
                                  denormals-are-zero set (cpu.h) */
} loco_worker_stats;

/* One worker thread of an asynchronous run: bound to its place before it allocates, so
 * its replica, gradients, AdamW state and activations are first touched on its own NUMA
 * node; then rounds of inner steps and arrivals until the server hands out no more. */
typedef struct {
    loco_worker w;                 /* made on the thread */
    loco_round *r;                 /* its round, begun by the server before the start */
    loco_server *server;
    const loco_model *m;
    const loco_data *d;
    loco_worker_opts opts;
    int clock_kind;                /* LOCO_CLOCK_*: the real clock emulates slowdowns */
    int slowdown_mode;             /* LOCO_SLOW_* */
    const float *init;
    const loco_hetero *het;
    const loco_clock *clock;
    const loco_topo *topo;
    const loco_place *place;
    sem_t *seats;                  /* one taken while computing a round, or NULL (engine.c) */
    loco_rng jitter;               /* real clock: the steps' jitter */
    const loco_injection *inject_nan, *inject_diverge; /* faults to inject (hetero.h) */
    int ninject_nan, ninject_diverge;
    loco_round_report last;        /* of the round it computed last */
    loco_unpack resume;            /* resuming: this worker's part of the checkpoint */
    int phase;                     /* resuming: LOCO_PHASE_* where it stood; -1: a new run */
    double window_end;             /* resuming in a window: its deadline */
    double owed_s;                 /* real clock: emulated slowdown owed; negative after a
                                      wait that overran, taken off the next */
    loco_worker_stats stats;
    int failed;
    loco_err err;
    pthread_t thread;
} loco_worker_thread;

int loco_worker_thread_start(loco_worker_thread *t, loco_err *e);

/* A worker thread's part of a checkpoint, taken while the run is still (the thread waits
 * for a turn or a window, or is done): the worker, theta_start, the last round's report,
 * the jitter stream and the counters. Exactly loco_worker_thread_state_bytes(nparams). */
size_t loco_worker_thread_state_bytes(size_t nparams);
void loco_worker_thread_save(const loco_worker_thread *t, loco_pack *p);
/* Joins the thread and frees the replica; returns -1 (message in t->err) if it failed. */
int loco_worker_thread_join(loco_worker_thread *t);

#endif
