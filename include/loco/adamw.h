/* adamw: the inner optimizer as pure functions over flat float arrays: the learning-rate
 * schedule (linear warm-up, cosine to lr_min with the position clipped to [0, 1]), the
 * global gradient norm for clipping, and the AdamW update of one contiguous range. */
#ifndef LOCO_ADAMW_H
#define LOCO_ADAMW_H

#include <stddef.h>

#include "loco/base.h"

typedef struct {
    double lr, lr_min;
    long warmup, steps;   /* the cosine runs from step warmup to step steps */
    double beta1, beta2, eps, weight_decay;
    double grad_clip;     /* 0: no clipping */
} loco_adamw_hp;

/* Learning rate of step s (from 0): lr * (s+1) / warmup while s < warmup, then
 * lr_min + (lr - lr_min) * (1 + cos(pi * x)) / 2 with x = (s - warmup) / (steps - warmup)
 * clipped to [0, 1], so a run longer than steps continues at lr_min. */
double loco_adamw_lr(const loco_adamw_hp *hp, long s);
/* The same at a position that need not be whole (train.lr_progress = run); at a whole
 * position the same bits as loco_adamw_lr. */
double loco_adamw_lr_at(const loco_adamw_hp *hp, double s);

/* Where an asynchronous worker's step stands in the inner schedule (train.lr_progress):
 * `worker`, its own step count; `run`, the run's progress through its budget, so that
 * workers training at the same moment use the same rate and all reach lr_min as the
 * budget ends (docs/method.md, "The inner schedule"). */
enum { LOCO_LR_RUN, LOCO_LR_WORKER };
extern const loco_enum loco_lr_progress_names[];

/* `run`'s position of step j (from 0) of a round handed out when `committed` local steps
 * had arrived and `live` workers were training: (committed + live * j) * steps / budget,
 * the local steps the run will have done by then, on the schedule's scale of `steps`.
 * Under sync with budget = workers * steps it is the worker's own step count, exactly. */
double loco_adamw_run_position(long committed, long live, long j, long steps, long budget);

/* sum of squares, accumulated in double */
double loco_sumsq(const float *x, size_t n);

/* Gradient multiplier for clipping: min(1, grad_clip / norm) (1 when clipping is off). */
float loco_clip_scale(const loco_adamw_hp *hp, double norm);

/* AdamW on n parameters at step t (from 1, for the bias correction): g is scaled by
 * gscale first; wd is the decay of this range (0 for vectors); decoupled decay
 * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). */
void loco_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long t, float lr,
                       float wd, float gscale, const loco_adamw_hp *hp);

#endif
