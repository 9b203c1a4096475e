/* hetero: how fast each worker is. Owns the speed profile (per-worker slowdown factors
 * from a heterogeneity level or an explicit list), per-step log-normal jitter, speed
 * changes at given times, the duration of a round in the virtual clock, and the
 * Dynamic Local Updates step counts. Pure functions of the settings and of seeded
 * generators the caller owns; knows no threads and no clocks. */
#ifndef LOCO_HETERO_H
#define LOCO_HETERO_H

#include "loco/base.h"

/* Worker `worker`'s slowdown becomes `factor` from time `time_s` on. */
typedef struct {
    int worker;
    double time_s;
    double factor;
} loco_speed_change;

typedef struct {
    int workers;
    double *slowdown;            /* per worker: seconds per step relative to the fastest, >= 1 */
    double jitter;               /* sigma of the per-step log-normal noise; 0 = none */
    loco_speed_change *changes;  /* sorted by time (stable for equal times) */
    int nchanges;
} loco_hetero;

/* Builds the profile. level is LOCO_LEVEL_* (config.h); slowdown, when not empty, is an
 * explicit comma-separated list with one factor >= 1 per worker and overrides the level;
 * changes is "W@T:F,W@T:F,..." (worker index, time in seconds >= 0, factor >= 1), may be
 * empty. Errors say what is wrong and quote the offending item: a list whose length is
 * not `workers`, a factor < 1 or not a number, a worker index out of range, a malformed
 * change. */
int loco_hetero_init(loco_hetero *h, int workers, int level, const char *slowdown, double jitter,
                     const char *changes, loco_err *e);
void loco_hetero_free(loco_hetero *h);

/* The level's factors for k workers (PAPER.md section 4): for k = 4 the table
 * (no 1,1,1,1; slight 1,1.1,1.3,1.5; moderate 1,1.3,2,3; very 1,1.29,2.6,5.74); for
 * other k the same max/min ratio spread geometrically, worker i: ratio^(i/(k-1)); k = 1: 1. */
void loco_hetero_level(int level, int k, double *out);

/* Worker's slowdown at time t: its base factor, replaced by the last change at or
 * before t. */
double loco_hetero_slowdown_at(const loco_hetero *h, int worker, double t);

/* One step's jitter multiplier, exp(jitter * z) with z ~ N(0,1) drawn from r (median 1);
 * exactly 1 without drawing when jitter is 0. */
double loco_hetero_jitter(const loco_hetero *h, loco_rng *r);

/* Virtual duration of a round of n steps that starts at time start: step j takes
 * base_step_s x slowdown at the time the step starts x one jitter draw. */
double loco_hetero_round_s(const loco_hetero *h, int worker, double start, long n,
                           double base_step_s, loco_rng *r);

/* DyLU: max(1, floor(v / vmax x H)) for a worker of speed v (steps per second) when the
 * fastest worker's speed is vmax. */
long loco_dylu_steps(double v, double vmax, long H);

#endif
