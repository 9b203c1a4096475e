/* outer: the outer optimizers (docs/method.md) as pure functions over flat float arrays
 * (a stripe of theta, momentum m, accumulator a and a pseudo-gradient g, all of length
 * n), the table of those rules, the table of methods (which rule the t-th arrival gets),
 * and the staleness treatments. Knows nothing of threads, stripes or tickets: the global
 * buffer applies a rule to one stripe at a time. A new rule is one function here and one
 * row in the rule table; a new method is one row in the method table. */
#ifndef LOCO_OUTER_H
#define LOCO_OUTER_H

#include <stddef.h>

#include "loco/base.h"

/* Settings of one outer rule. gscale multiplies g before anything else (staleness
 * weights: poly's (1 + staleness)^-1/2, 1 otherwise). */
typedef struct {
    float lr;        /* epsilon */
    float beta;      /* momentum */
    int N;           /* DN period / buffer size */
    float c;         /* DN momentum activation, in [0, 1/N] */
    float gscale;
} loco_outer_hp;

/* ------------------------------------------------------------------ rules */

/* Every rule has this shape: theta, m, a, g are (n); a rule reads only what it names in
 * its comment and writes only its outputs. g is NULL for rules that take no arrival. */
typedef void (*loco_rule_fn)(float *theta, float *m, float *a, const float *g, size_t n,
                             const loco_outer_hp *hp);

/* Nesterov: m = beta m + g; theta -= lr (g + beta m) */
void loco_outer_nesterov(float *theta, float *m, float *a, const float *g, size_t n,
                         const loco_outer_hp *hp);

/* SGD: theta -= lr g */
void loco_outer_sgd(float *theta, float *m, float *a, const float *g, size_t n,
                    const loco_outer_hp *hp);

/* DN in-between arrival (t mod N != 0): a += g; theta -= lr (c beta m + g / N). m is read only. */
void loco_outer_dn_between(float *theta, float *m, float *a, const float *g, size_t n,
                           const loco_outer_hp *hp);

/* DN activation arrival (t mod N == 0): a += g; m = beta m + a / N;
 * theta -= lr ((1 - c N + c) beta m + g / N); a = 0 */
void loco_outer_dn_activate(float *theta, float *m, float *a, const float *g, size_t n,
                            const loco_outer_hp *hp);

/* Buffered step, in-between arrival: a += g (theta does not change). */
void loco_outer_buffer_add(float *theta, float *m, float *a, const float *g, size_t n,
                           const loco_outer_hp *hp);

/* Buffered step, every N-th arrival: a += g; gbar = a / N; m = beta m + gbar;
 * theta -= lr (gbar + beta m); a = 0. One Nesterov step on the mean of N arrivals. */
void loco_outer_buffer_apply(float *theta, float *m, float *a, const float *g, size_t n,
                             const loco_outer_hp *hp);

/* Buffered step with the arrivals already added (g unused): gbar = a / N; m = beta m + gbar;
 * theta -= lr (gbar + beta m); a = 0. What synchronous DiLoCo does when its round is
 * complete (N = the round's arrivals), and what flushes a partial buffer at the end. */
void loco_outer_buffer_flush(float *theta, float *m, float *a, const float *g, size_t n,
                             const loco_outer_hp *hp);

/* The rules an operation on the global buffer can apply. */
typedef enum {
    LOCO_RULE_NONE,          /* touches nothing: a pull, or a rejected arrival */
    LOCO_RULE_SGD,
    LOCO_RULE_NESTEROV,
    LOCO_RULE_DN_BETWEEN,
    LOCO_RULE_DN_ACTIVATE,
    LOCO_RULE_BUFFER_ADD,
    LOCO_RULE_BUFFER_APPLY,
    LOCO_RULE_FLUSH,
    LOCO_NRULES
} loco_rule_id;

typedef struct {
    const char *name;
    loco_rule_fn apply;      /* NULL for LOCO_RULE_NONE */
    int moves_momentum;      /* writes m: the server thread sweeps it, workers pull behind */
    int moves_theta;         /* changes theta: a change that later arrivals are stale by */
    int accumulates;         /* leaves g in a for a later step (the buffer counts it) */
} loco_outer_rule;

/* The row of rule id; an id outside the table is a broken invariant. */
const loco_outer_rule *loco_outer_rule_of(int id);

/* ---------------------------------------------------------------- methods */

enum {
    LOCO_METHOD_SINGLE, LOCO_METHOD_SYNC, LOCO_METHOD_ASYNC, LOCO_METHOD_ASYNC_DN,
    LOCO_METHOD_ASYNC_BUFFER, LOCO_METHOD_ASYNC_SGD
};

/* What a method does with its arrivals. The t-th applied arrival (t from 1) gets
 * period_rule when t is a multiple of N, rule otherwise. */
typedef struct {
    int engine;              /* runs on the asynchronous engine (single does not) */
    int rule, period_rule;   /* LOCO_RULE_* */
    int periodic;            /* N matters: outer.dn_period means something */
    int barrier;             /* a round ends when every running worker has arrived (sync) */
    int close_rule;          /* applied to what is still accumulated when a barrier round
                                closes or the run ends (N = the arrivals accumulated) */
    int fresh_rounds;        /* every arrival of a round starts from the same theta, so
                                staleness treatments and delay compensation mean nothing */
    int activates;           /* its period rule activates the momentum with weight c
                                (outer.dn_c means something) */
} loco_outer_method;

/* The methods with their names, as the config's outer.method names them; .data points at
 * each method's loco_outer_method. */
extern const loco_enum loco_outer_methods[];

/* The row of method id; an id outside the table is a broken invariant. */
const loco_outer_method *loco_outer_method_of(int id);

/* The rule of the t-th applied arrival (t >= 1) of method id with period N >= 1. */
int loco_outer_rule_for(int id, long t, long N);

/* When a grace window closes (outer.grace_close): at its deadline, or as soon as every
 * live worker has joined it (the paper's restart at the last member's completion). */
enum { LOCO_GRACE_ALL, LOCO_GRACE_DEADLINE };
extern const loco_enum loco_grace_close_names[];

/* ------------------------------------------------------------- staleness */

enum { LOCO_STALE_NONE, LOCO_STALE_POLY, LOCO_STALE_POLYTHRES };
extern const loco_enum loco_stale_modes[];

/* Poly's weight of an arrival: (1 + staleness)^(-1/2). */
float loco_outer_poly(long staleness);

/* PolyThres: nonzero when the arrival is to be dropped (staleness > stale_max). */
int loco_outer_polythres_drop(long staleness, long stale_max);

/* Delay compensation, in place: g += lambda g (.) g (.) (theta_now - theta_start), each
 * element's correction held to at most |g| (it is a first-order correction: one larger
 * than the delta itself is outside where it holds); a correction that is not a number
 * (Inf x 0) is 0. So |g| at most doubles: a delta that passed the checks stays sane, and
 * no lambda can drive theta to Inf over many arrivals. Returns how many corrections were
 * held (where that share is large, the method is no longer the formula). */
size_t loco_outer_delay_comp(float *g, const float *theta_now, const float *theta_start,
                             size_t n, float lambda);

/* Nonzero when every element of x is finite (a diverged worker's delta is not). */
int loco_all_finite(const float *x, size_t n);

/* Nonzero when every element of x is finite and below 2^100 (about 1.3e30) in magnitude:
 * no real update is that large, and the outer rules could turn a finite one that is into
 * Inf; a delta that is not sane is rejected as non-finite. */
int loco_all_sane(const float *x, size_t n);

#endif
