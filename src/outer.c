#include "loco/outer.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Every rule is one pass over the stripe: g[i] is read once, scaled by gscale first, and
 * each output written once, so the loops vectorise. No restrict: the header does not
 * forbid aliased arguments, so gcc adds a run-time overlap check around each vector loop.
 * Per-call constants (1/N, c beta, ...) are folded in double and rounded once. Arrays a
 * rule does not name may be NULL. */

static float inv_n(const loco_outer_hp *hp) {
    return (float)(1.0 / (double)hp->N);
}

void loco_outer_nesterov(float *theta, float *m, float *a, const float *g, size_t n,
                         const loco_outer_hp *hp) {
    (void)a;
    float lr = hp->lr, beta = hp->beta, s = hp->gscale;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * s;
        float mi = beta * m[i] + gi;
        m[i] = mi;
        theta[i] -= lr * (gi + beta * mi);
    }
}

void loco_outer_sgd(float *theta, float *m, float *a, const float *g, size_t n,
                    const loco_outer_hp *hp) {
    (void)m, (void)a;
    float lr = hp->lr, s = hp->gscale;
    for (size_t i = 0; i < n; i++) theta[i] -= lr * (g[i] * s);
}

/* m is frozen between activations */
void loco_outer_dn_between(float *theta, float *m, float *a, const float *g, size_t n,
                           const loco_outer_hp *hp) {
    float lr = hp->lr, s = hp->gscale, in = inv_n(hp);
    float cb = (float)((double)hp->c * hp->beta);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * s;
        a[i] += gi;
        theta[i] -= lr * (cb * m[i] + gi * in);
    }
}

void loco_outer_dn_activate(float *theta, float *m, float *a, const float *g, size_t n,
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

void loco_outer_buffer_add(float *theta, float *m, float *a, const float *g, size_t n,
                           const loco_outer_hp *hp) {
    (void)theta, (void)m;
    float s = hp->gscale;
    for (size_t i = 0; i < n; i++) a[i] += g[i] * s;
}

void loco_outer_buffer_apply(float *theta, float *m, float *a, const float *g, size_t n,
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

void loco_outer_buffer_flush(float *theta, float *m, float *a, const float *g, size_t n,
                             const loco_outer_hp *hp) {
    (void)g;
    float lr = hp->lr, beta = hp->beta, in = inv_n(hp);
    for (size_t i = 0; i < n; i++) {
        float gbar = a[i] * in;
        float mi = beta * m[i] + gbar;
        m[i] = mi;
        theta[i] -= lr * (gbar + beta * mi);
        a[i] = 0.0f;
    }
}

/* --------------------------------------------------------------- the tables */

static const loco_outer_rule rules[LOCO_NRULES] = {
    /*                     name            apply                     momentum theta accumulates */
    [LOCO_RULE_NONE]         = {"none",         NULL,                    0, 0, 0},
    [LOCO_RULE_SGD]          = {"sgd",          loco_outer_sgd,          0, 1, 0},
    [LOCO_RULE_NESTEROV]     = {"nesterov",     loco_outer_nesterov,     1, 1, 0},
    [LOCO_RULE_DN_BETWEEN]   = {"dn-between",   loco_outer_dn_between,   0, 1, 1},
    [LOCO_RULE_DN_ACTIVATE]  = {"dn-activate",  loco_outer_dn_activate,  1, 1, 0},
    [LOCO_RULE_BUFFER_ADD]   = {"buffer-add",   loco_outer_buffer_add,   0, 0, 1},
    [LOCO_RULE_BUFFER_APPLY] = {"buffer-apply", loco_outer_buffer_apply, 1, 1, 0},
    [LOCO_RULE_FLUSH]        = {"flush",        loco_outer_buffer_flush, 1, 1, 0},
};

const loco_outer_rule *loco_outer_rule_of(int id) {
    LOCO_CHECK(id >= 0 && id < LOCO_NRULES, "rule %d", id);
    return &rules[id];
}

/* One row per method: its name, and the behaviour the protocol reads (outer.h). */
const loco_enum loco_outer_methods[] = {
    {"single", LOCO_METHOD_SINGLE, &(const loco_outer_method){
        .engine = 0, .fresh_rounds = 1}},
    {"sync", LOCO_METHOD_SYNC, &(const loco_outer_method){
        .engine = 1, .rule = LOCO_RULE_BUFFER_ADD, .period_rule = LOCO_RULE_BUFFER_ADD,
        .barrier = 1, .close_rule = LOCO_RULE_FLUSH, .fresh_rounds = 1}},
    {"async", LOCO_METHOD_ASYNC, &(const loco_outer_method){
        .engine = 1, .rule = LOCO_RULE_NESTEROV, .period_rule = LOCO_RULE_NESTEROV}},
    {"async-dn", LOCO_METHOD_ASYNC_DN, &(const loco_outer_method){
        .engine = 1, .rule = LOCO_RULE_DN_BETWEEN, .period_rule = LOCO_RULE_DN_ACTIVATE,
        .periodic = 1, .activates = 1}},
    {"async-buffer", LOCO_METHOD_ASYNC_BUFFER, &(const loco_outer_method){
        .engine = 1, .rule = LOCO_RULE_BUFFER_ADD, .period_rule = LOCO_RULE_BUFFER_APPLY,
        .periodic = 1, .close_rule = LOCO_RULE_FLUSH}},
    {"async-sgd", LOCO_METHOD_ASYNC_SGD, &(const loco_outer_method){
        .engine = 1, .rule = LOCO_RULE_SGD, .period_rule = LOCO_RULE_SGD}},
    {NULL, 0, NULL},
};

const loco_outer_method *loco_outer_method_of(int id) {
    return loco_enum_row(loco_outer_methods, id)->data;
}

int loco_outer_rule_for(int id, long t, long N) {
    const loco_outer_method *m = loco_outer_method_of(id);
    LOCO_CHECK(m->engine && t >= 1 && N >= 1, "method %d, arrival %ld, N %ld", id, t, N);
    return t % N == 0 ? m->period_rule : m->rule;
}

const loco_enum loco_grace_close_names[] = {
    {"all", LOCO_GRACE_ALL, NULL}, {"deadline", LOCO_GRACE_DEADLINE, NULL}, {NULL, 0, NULL}};

const loco_enum loco_stale_modes[] = {
    {"none", LOCO_STALE_NONE, NULL},
    {"poly", LOCO_STALE_POLY, NULL},
    {"polythres", LOCO_STALE_POLYTHRES, NULL},
    {NULL, 0, NULL},
};

/* ------------------------------------------------------------- staleness */

/* staleness >= 0: the server version never runs behind a worker's start version */
float loco_outer_poly(long staleness) {
    return 1.0f / sqrtf((float)staleness + 1.0f);
}

int loco_outer_polythres_drop(long staleness, long stale_max) {
    return staleness > stale_max;
}

/* g, theta_now, theta_start are (n). Selects, not branches, so the loop still vectorises;
 * the comparisons are false for NaN, which so becomes 0. */
size_t loco_outer_delay_comp(float *g, const float *theta_now, const float *theta_start,
                             size_t n, float lambda) {
    size_t held = 0;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i], lim = fabsf(gi);
        float d = lambda * gi * gi * (theta_now[i] - theta_start[i]);
        int within = fabsf(d) <= lim;
        held += !within && d == d; /* a NaN correction is dropped, not held */
        d = within ? d : d > 0 ? lim : d < 0 ? -lim : 0.0f;
        g[i] = gi + d;
    }
    return held;
}

/* Whether no float's exponent field (bits 23..30) is above max. A bit test rather than
 * isfinite(): branch-free, so it vectorises as an OR reduction, and it still sees Inf/NaN
 * (exponent 255) if someone builds with -ffinite-math-only. */
static int exponents_at_most(const float *x, size_t n, uint32_t max) {
    uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (uint32_t)(((u >> 23) & 0xffu) > max);
    }
    return bad == 0;
}

int loco_all_sane(const float *x, size_t n) {
    return exponents_at_most(x, n, 127 + 99); /* below 2^100 */
}

int loco_all_finite(const float *x, size_t n) {
    return exponents_at_most(x, n, 254);
}
