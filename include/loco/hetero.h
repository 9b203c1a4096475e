/* hetero: what each worker's work costs. Owns the speed profile (per-worker slowdown
 * factors from a heterogeneity level or an explicit list), per-step log-normal jitter,
 * speed changes at given times, and the cost model both clocks charge a round by, part by
 * part (the virtual clock sums the parts, the real clock pays the emulated ones); and the
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

/* What the profile is made from (the run layer fills it from the config). */
typedef struct {
    int workers;
    int level;                   /* LOCO_LEVEL_* */
    const char *slowdown;        /* an explicit list (loco_hetero_parse_slowdown) that
                                    overrides level; NULL or blank: none */
    double jitter;               /* sigma of the per-step log-normal noise; 0 = none */
    const char *changes;         /* speed changes (loco_hetero_parse_changes); NULL or blank */
    double step_s;               /* virtual clock: seconds of one step at slowdown 1 */
} loco_hetero_settings;

typedef struct {
    int workers;
    double *slowdown;            /* per worker: seconds per step relative to the fastest, >= 1 */
    double jitter;               /* sigma of the per-step log-normal noise; 0 = none */
    loco_speed_change *changes;  /* sorted by time (stable for equal times) */
    int nchanges;
    double step_s;               /* virtual seconds of one step at slowdown 1 */
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

/* Builds the profile from st; errors say which part is wrong. */
int loco_hetero_init(loco_hetero *h, const loco_hetero_settings *st, loco_err *e);
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

/* The worker's speed at t relative to a worker at slowdown 1 (what DyLU compares in the
 * virtual clock). */
double loco_hetero_speed(const loco_hetero *h, int worker, double t);

/* ---- the cost model ---- */

/* What a round costs its worker, part by part, in the clock's seconds. A new kind of cost
 * (a link, a trace) is a field here, its term in loco_hetero_round_cost and in what the
 * real clock pays (loco_hetero_step_owed or its own), and its config keys. */
typedef struct {
    double compute_s;            /* its steps at slowdown 1: virtual, n x step_s; real, measured */
    double slowdown_s;           /* the emulated slowdown on top: profile, changes, jitter */
    double total_s;              /* the round's length; virtual: the parts summed step by step,
                                    which is what the clock charges */
} loco_round_cost;

/* One step's length relative to a step at slowdown 1, for a step of worker that starts
 * at t: the profile's factor at t x one jitter draw from r. */
double loco_hetero_step_factor(const loco_hetero *h, int worker, double t, loco_rng *r);

/* Virtual clock: a round of n steps starting at start; step j takes step_s x its step
 * factor at the time it starts (a change inside the round applies from the next step). */
loco_round_cost loco_hetero_round_cost(const loco_hetero *h, int worker, double start, long n,
                                       loco_rng *r);

/* Virtual clock: the parts of a round of n steps that took total_s (what a round's start
 * and end, kept in a checkpoint, say of it). */
loco_round_cost loco_hetero_cost_of(const loco_hetero *h, long n, double total_s);

/* Real clock: the emulated seconds owed after a step that computed for dt seconds from
 * wall time t, (step factor - 1) x dt, or 0 when the factor is not above 1. */
double loco_hetero_step_owed(const loco_hetero *h, int worker, double t, double dt, loco_rng *r);

/* DyLU: max(1, floor(v / vmax x H)) for a worker of speed v (steps per second) when the
 * fastest worker's speed is vmax. */
long loco_dylu_steps(double v, double vmax, long H);

#endif
