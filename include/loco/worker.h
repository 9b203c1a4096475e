/* worker: one worker thread of an asynchronous run: its replica (replica.h) in rounds of
 * inner steps between the protocol's arrivals (server.h), the emulated slowdown the real
 * clock pays (hetero.h's cost model), injected faults, and its part of a checkpoint. */
#ifndef LOCO_WORKER_H
#define LOCO_WORKER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "loco/hetero.h"
#include "loco/replica.h"
#include "loco/protocol.h"
#include "loco/topo.h"

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
    loco_replica w;                 /* made on the thread */
    loco_round *r;                 /* its round, begun by the server before the start */
    loco_protocol *protocol;
    const loco_model *m;
    const loco_data *d;
    loco_replica_opts opts;
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
