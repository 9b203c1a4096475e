/* hetero: how fast each worker is. Owns the speed profile (per-worker slowdown factors
 * from a heterogeneity level or an explicit list), per-step log-normal jitter, speed
 * changes at given times, the duration of a round in the virtual clock, and the
 * Dynamic Local Updates step counts. Pure functions of the settings and of seeded
 * generators the caller owns; knows no threads and no clocks. */
#ifndef LOCO_HETERO_H
#define LOCO_HETERO_H

#include "loco/base.h"

/* The heterogeneity levels (loco_hetero_level) and how the real clock emulates a
 * slowdown: sleeping frees the core, spinning holds it. */
enum { LOCO_LEVEL_NO, LOCO_LEVEL_SLIGHT, LOCO_LEVEL_MODERATE, LOCO_LEVEL_VERY };
extern const loco_enum loco_hetero_levels[];
enum { LOCO_SLOW_SLEEP, LOCO_SLOW_SPIN };
extern const loco_enum loco_slowdown_modes[];

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

/* An explicit list of slowdowns "1,1.3,2": exactly `workers` factors >= 1 into out.
 * Errors say what is wrong and quote the offending item (the caller names the key). */
int loco_hetero_parse_slowdown(const char *list, int workers, double *out, loco_err *e);

/* Speed changes "W@T:F,W@T:F,..." (worker index < workers, time in seconds >= 0, factor
 * >= 1), sorted by time into a new array *out of *n (NULL, 0 for a blank list). Errors
 * quote the offending item. */
int loco_hetero_parse_changes(const char *list, int workers, loco_speed_change **out, int *n,
                              loco_err *e);

/* A worker's emulated failure: gone from at_s for for_s seconds (INFINITY: for good). */
typedef struct {
    int worker;
    double at_s, for_s;
} loco_fault;

/* Failures "W@T+D,W@T,..." (worker < workers, T >= 0, D > 0), sorted by time into a new
 * array *out of *n (NULL, 0 for a blank list). A worker's failures may not overlap. */
int loco_hetero_parse_faults(const char *list, int workers, loco_fault **out, int *n,
                             loco_err *e);

/* Injections "W@R,..." (worker < workers, its round R >= 1) into a new array of *n
 * {worker, round} pairs. */
typedef struct {
    int worker;
    long round;
} loco_injection;
int loco_hetero_parse_injections(const char *list, int workers, loco_injection **out, int *n,
                                 loco_err *e);

/* Builds the profile. level is LOCO_LEVEL_*; slowdown, when not blank, is an explicit
 * list (as loco_hetero_parse_slowdown) that overrides the level; changes (may be NULL or
 * blank) as loco_hetero_parse_changes. */
int loco_hetero_init(loco_hetero *h, int workers, int level, const char *slowdown, double jitter,
                     const char *changes, loco_err *e);
void loco_hetero_free(loco_hetero *h);

/* The level's factors for k workers (loco's own levels, docs/method.md): for k = 4 the table
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
