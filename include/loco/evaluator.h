/* evaluator: validation loss of a set of parameters. Owns its own activations and the
 * fixed validation batches (the same windows at every evaluation), and the whole-file
 * evaluation of `loco eval` (every consecutive window of T+1 tokens, as llm.c reads a
 * validation shard, spread over threads). Never writes the parameters it is given. */
#ifndef LOCO_EVALUATOR_H
#define LOCO_EVALUATOR_H

#include <pthread.h>

#include "loco/data.h"
#include "loco/model.h"
#include "loco/topo.h"

typedef struct {
    const loco_model *m;
    const loco_data *d;
    loco_acts acts;
    int *inputs, *targets;
    int B, T, nbatches;
} loco_evaluator;

/* Errors when the validation part holds fewer than nbatches * B windows. */
int loco_evaluator_init(loco_evaluator *ev, const loco_model *m, const loco_data *d, int B,
                        int T, int nbatches, loco_err *e);
void loco_evaluator_free(loco_evaluator *ev);

/* Mean cross-entropy over the fixed validation batches. */
double loco_evaluator_val_loss(loco_evaluator *ev, const float *params);

/* The same, and in *se its standard error: the standard deviation of the windows' mean
 * losses over the square root of their number (se may be NULL). */
double loco_evaluator_val_loss_se(loco_evaluator *ev, const float *params, double *se);

/* A run's final figure: the loss and its standard error on nbatches validation batches
 * (eval.final_batches), with an evaluator of its own. */
int loco_eval_final(const loco_model *m, const loco_data *d, int B, int T, int nbatches,
                    const float *params, double *loss, double *se, loco_err *e);

/* Mean cross-entropy over all floor((n-1)/T) consecutive windows of d (opened without a
 * split), B windows per forward, on `threads` threads (each with its own activations);
 * the same result whatever the thread count. *tokens gets the number of predicted
 * tokens. NaN with a message on error. */
double loco_eval_file(const loco_model *m, const float *params, const loco_data *d, int B,
                      int T, int threads, long *tokens, loco_err *e);

/* ------------------------------------------------- the evaluator thread */

/* A copy of theta at a given number of server updates, filled by whoever applies that
 * update and evaluated on the evaluator's thread, off the workers' critical path. */
typedef struct {
    long updates, local_steps, tokens;
    long mark_first, mark_last;  /* the marks of the local-step schedule it stands for
                                    (first to last, a period apart); 0: none */
    double time_s, wall_s;
    long place;             /* its event's place in metrics.jsonl (loco_metrics_reserve), or -1 */
    float *params;          /* nparams floats */
    int state;              /* free, reserved (being filled), ready */
    long seq;               /* order of reservation: evaluation follows it */
} loco_snapshot;

enum { LOCO_SNAPSHOTS = 4 };
enum { LOCO_EVAL_STARTING, LOCO_EVAL_RUNNING, LOCO_EVAL_FAILED };

typedef struct {
    loco_evaluator ev;      /* made on the thread, after it is bound */
    const loco_model *m;
    const loco_data *d;
    int B, T, nbatches;
    loco_snapshot slot[LOCO_SNAPSHOTS];
    long next_seq, done_seq;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int closing;
    int state;              /* LOCO_EVAL_STARTING, _RUNNING or _FAILED (err says why) */
    loco_err err;
    pthread_t thread;
    const loco_topo *topo;
    const loco_place *place;
    double busy_s;
    void (*report)(void *ctx, const loco_snapshot *s, double val_loss);
    void *ctx;
} loco_eval_thread;

typedef void (*loco_eval_report)(void *ctx, const loco_snapshot *s, double val_loss);

/* Starts the thread (bound to place, which may be NULL); its activations and the
 * snapshot copies are allocated on it. report(ctx, ...) gets each result on that thread,
 * in reservation order. Fails when the validation part is too small. */
int loco_eval_thread_start(loco_eval_thread *et, const loco_model *m, const loco_data *d, int B,
                           int T, int nbatches, const loco_topo *topo, const loco_place *place,
                           loco_eval_report report, void *ctx, loco_err *e);

/* A free snapshot, reserved in order, or NULL when every one is in use (never waits, so
 * a caller may hold its own lock). The caller sets its fields, copies theta into params,
 * then hands it over with _ready; snapshots are evaluated in the order reserved. */
loco_snapshot *loco_eval_thread_try_reserve(loco_eval_thread *et);
void loco_eval_thread_ready(loco_eval_thread *et, loco_snapshot *s);

/* Whether a snapshot is free now; and waiting until one is (for a caller that must not
 * skip an evaluation and holds no lock the evaluator's report needs). */
int loco_eval_thread_has_free(loco_eval_thread *et);
void loco_eval_thread_wait_free(loco_eval_thread *et);

/* Waits until at most `keep` reserved snapshots are not evaluated yet (those not yet
 * handed over: a checkpoint keeps them). */
void loco_eval_thread_drain(loco_eval_thread *et, int keep);

/* Evaluates what is pending, stops the thread and frees it; returns the seconds the
 * thread spent evaluating. */
double loco_eval_thread_stop(loco_eval_thread *et);

/* The evaluation marks (multiples of every, the local steps summed over workers) that
 * the count passed going from before to now: 1 with [*first, *last], or 0 (and both 0)
 * when it passed none or every is 0. The engine and the single trainer both mark by it. */
int loco_eval_marks(long before, long now, long every, long *first, long *last);

#endif
