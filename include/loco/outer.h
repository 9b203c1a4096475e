/* outer: the outer optimizers of PAPER.md section 2 as pure functions over flat float
 * arrays (a stripe of theta, momentum m, accumulator a and a pseudo-gradient g, all of
 * length n): Nesterov, SGD, Delayed Nesterov (in-between and activation arrivals), the
 * buffered (FedBuff-like) step, and the staleness transforms poly, polythres and delay
 * compensation. Knows nothing of threads, stripes or tickets: the global buffer applies
 * these to one stripe at a time. Every function reads g once and writes nothing but
 * the arrays it names as outputs. */
#ifndef LOCO_OUTER_H
#define LOCO_OUTER_H

#include <stddef.h>

/* Settings of one outer rule. gscale multiplies g before anything else (staleness
 * weights: poly's (1 + staleness)^-1/2, 1 otherwise). */
typedef struct {
    float lr;        /* epsilon */
    float beta;      /* momentum */
    int N;           /* DN period / buffer size */
    float c;         /* DN momentum activation, in [0, 1/N] */
    float gscale;
} loco_outer_hp;

/* Nesterov: m = beta m + g; theta -= lr (g + beta m) */
void loco_outer_nesterov(float *theta, float *m, const float *g, size_t n, const loco_outer_hp *hp);

/* SGD: theta -= lr g */
void loco_outer_sgd(float *theta, const float *g, size_t n, const loco_outer_hp *hp);

/* DN in-between arrival (t mod N != 0): a += g; theta -= lr (c beta m + g / N). m is read only. */
void loco_outer_dn_between(float *theta, float *a, const float *m, const float *g, size_t n,
                           const loco_outer_hp *hp);

/* DN activation arrival (t mod N == 0): a += g; m = beta m + a / N;
 * theta -= lr ((1 - c N + c) beta m + g / N); a = 0 */
void loco_outer_dn_activate(float *theta, float *a, float *m, const float *g, size_t n,
                            const loco_outer_hp *hp);

/* Buffered step, in-between arrival: a += g (theta does not change). */
void loco_outer_buffer_add(float *a, const float *g, size_t n, const loco_outer_hp *hp);

/* Buffered step, every N-th arrival: a += g; gbar = a / N; m = beta m + gbar;
 * theta -= lr (gbar + beta m); a = 0. One Nesterov step on the mean of N arrivals: with
 * N = k this is synchronous DiLoCo's outer step. */
void loco_outer_buffer_apply(float *theta, float *a, float *m, const float *g, size_t n,
                             const loco_outer_hp *hp);

/* Buffered step with the arrivals already added: gbar = a / N; m = beta m + gbar;
 * theta -= lr (gbar + beta m); a = 0. What synchronous DiLoCo does when its round is
 * complete (N = the round's arrivals), and what flushes a partial buffer at the end. */
void loco_outer_buffer_flush(float *theta, float *a, float *m, size_t n, const loco_outer_hp *hp);

/* Poly's weight of an arrival: (1 + staleness)^(-1/2). */
float loco_outer_poly(long staleness);

/* PolyThres: nonzero when the arrival is to be dropped (staleness > stale_max). */
int loco_outer_polythres_drop(long staleness, long stale_max);

/* Delay compensation, in place: g += lambda g (.) g (.) (theta_now - theta_start). */
void loco_outer_delay_comp(float *g, const float *theta_now, const float *theta_start, size_t n,
                           float lambda);

/* Nonzero when every element of x is finite (a diverged worker's delta is not). */
int loco_all_finite(const float *x, size_t n);

#endif
