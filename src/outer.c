#include "loco/outer.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Every rule is one pass over the stripe: g[i] is read once, scaled by gscale first, and
 * each output written once, so the loops vectorise. No restrict: the header does not
 * forbid aliased arguments, so gcc adds a run-time overlap check around each vector loop.
 * Per-call constants (1/N, c beta, ...) are folded in double and rounded once. */

static float inv_n(const loco_outer_hp *hp) {
    return (float)(1.0 / (double)hp->N);
}

/* theta, m, g are (n) */
void loco_outer_nesterov(float *theta, float *m, const float *g, size_t n,
                         const loco_outer_hp *hp) {
    float lr = hp->lr, beta = hp->beta, s = hp->gscale;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * s;
        float mi = beta * m[i] + gi;
        m[i] = mi;
        theta[i] -= lr * (gi + beta * mi);
    }
}

/* theta, g are (n) */
void loco_outer_sgd(float *theta, const float *g, size_t n, const loco_outer_hp *hp) {
    float lr = hp->lr, s = hp->gscale;
    for (size_t i = 0; i < n; i++) theta[i] -= lr * (g[i] * s);
}

/* theta, a, m, g are (n); m is frozen between activations */
void loco_outer_dn_between(float *theta, float *a, const float *m, const float *g, size_t n,
                           const loco_outer_hp *hp) {
    float lr = hp->lr, s = hp->gscale, in = inv_n(hp);
    float cb = (float)((double)hp->c * hp->beta);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * s;
        a[i] += gi;
        theta[i] -= lr * (cb * m[i] + gi * in);
    }
}

/* theta, a, m, g are (n) */
void loco_outer_dn_activate(float *theta, float *a, float *m, const float *g, size_t n,
                            const loco_outer_hp *hp) {
    float lr = hp->lr, beta = hp->beta, s = hp->gscale, in = inv_n(hp);
    /* (1 - cN + c) beta: with c = 0 this is beta, so the window sums to one Nesterov step */
    double c = hp->c;
    float kb = (float)((1.0 - c * hp->N + c) * hp->beta);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * s;
        float mi = beta * m[i] + (a[i] + gi) * in;
        m[i] = mi;
        theta[i] -= lr * (kb * mi + gi * in);
        a[i] = 0.0f;
    }
}

/* a, g are (n) */
void loco_outer_buffer_add(float *a, const float *g, size_t n, const loco_outer_hp *hp) {
    float s = hp->gscale;
    for (size_t i = 0; i < n; i++) a[i] += g[i] * s;
}

/* theta, a, m, g are (n) */
void loco_outer_buffer_apply(float *theta, float *a, float *m, const float *g, size_t n,
                             const loco_outer_hp *hp) {
    float lr = hp->lr, beta = hp->beta, s = hp->gscale, in = inv_n(hp);
    for (size_t i = 0; i < n; i++) {
        float gbar = (a[i] + g[i] * s) * in;
        float mi = beta * m[i] + gbar;
        m[i] = mi;
        theta[i] -= lr * (gbar + beta * mi);
        a[i] = 0.0f;
    }
}

void loco_outer_buffer_flush(float *theta, float *a, float *m, size_t n,
                             const loco_outer_hp *hp) {
    float lr = hp->lr, beta = hp->beta, in = inv_n(hp);
    for (size_t i = 0; i < n; i++) {
        float gbar = a[i] * in;
        float mi = beta * m[i] + gbar;
        m[i] = mi;
        theta[i] -= lr * (gbar + beta * mi);
        a[i] = 0.0f;
    }
}

/* staleness >= 0: the server version never runs behind a worker's start version */
float loco_outer_poly(long staleness) {
    return 1.0f / sqrtf((float)staleness + 1.0f);
}

int loco_outer_polythres_drop(long staleness, long stale_max) {
    return staleness > stale_max;
}

/* g, theta_now, theta_start are (n) */
void loco_outer_delay_comp(float *g, const float *theta_now, const float *theta_start, size_t n,
                           float lambda) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        g[i] = gi + lambda * gi * gi * (theta_now[i] - theta_start[i]);
    }
}

/* Bit test rather than isfinite(): branch-free, so it vectorises as an OR reduction, and it
 * still sees Inf/NaN if someone builds with -ffinite-math-only. */
int loco_all_finite(const float *x, size_t n) {
    uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}
