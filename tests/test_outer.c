/* The outer optimizers against scalar references written in double from the paper (docs/method.md),
 * over consecutive arrivals with the state kept across them, plus the identities the paper
 * states: a DN window with c = 0 is one Nesterov step on the mean, DN with N = 1 is Nesterov,
 * the buffer moves theta once per N arrivals, and naive async overshoots along g. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loco/base.h"
#include "loco/outer.h"

enum { NEL = 301, ARRIVALS = 12 };

/* Tolerance of a float result after t arrivals, against a double reference of size ref.
 * Per arrival each element sees about 4 float roundings in m and 4 in theta (u =
 * FLT_EPSILON / 2 each, on values below 1 + |ref|: theta ~ N(0,1), g ~ 0.1 N(0,1)). m carries
 * its error forward damped by beta; theta adds lr (1 + beta) of it each arrival, at most
 * lr (1 + beta) / (1 - beta) = 13 times one arrival's m error with lr = 0.7, beta = 0.9:
 * under 4 + 4 * 13 = 56 u = 28 FLT_EPSILON per arrival, so 32 t FLT_EPSILON (~5e-5 after
 * 12 arrivals) holds, while a wrong rule is off by lr |g| ~ 0.07. */
static double tol_after(int t, double ref) {
    return 32.0 * t * FLT_EPSILON * (1.0 + fabs(ref));
}

static loco_outer_hp hp_of(int N, float c) {
    loco_outer_hp hp = {.lr = 0.7f, .beta = 0.9f, .N = N, .c = c, .gscale = 1.0f};
    return hp;
}

static void fill_normal(float *x, size_t n, loco_rng *r, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * loco_rng_normal(r));
}

static void to_double(double *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i];
}

static void expect_close(const char *what, int t, const float *x, const double *ref, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert_float_eq(x[i], ref[i], tol_after(t, ref[i]),
                           "%s after arrival %d, element %zu: %.9g vs reference %.9g", what, t, i,
                           x[i], ref[i]);
}

Test(outer, nesterov_matches_the_reference_over_consecutive_arrivals) {
    loco_outer_hp hp = hp_of(1, 0);
    float theta[NEL], m[NEL] = {0}, g[NEL];
    double rt[NEL], rm[NEL] = {0}, lr = hp.lr, b = hp.beta;
    loco_rng r;
    loco_rng_seed(&r, 1, 0);
    fill_normal(theta, NEL, &r, 1.0);
    to_double(rt, theta, NEL);
    for (int t = 1; t <= ARRIVALS; t++) {
        fill_normal(g, NEL, &r, 0.1);
        loco_outer_nesterov(theta, m, NULL, g, NEL, &hp);
        for (int i = 0; i < NEL; i++) {
            rm[i] = b * rm[i] + g[i];
            rt[i] -= lr * (g[i] + b * rm[i]);
        }
        expect_close("theta", t, theta, rt, NEL);
        expect_close("m", t, m, rm, NEL);
    }
}

Test(outer, sgd_matches_the_reference_over_consecutive_arrivals) {
    loco_outer_hp hp = hp_of(1, 0);
    float theta[NEL], g[NEL];
    double rt[NEL];
    loco_rng r;
    loco_rng_seed(&r, 2, 0);
    fill_normal(theta, NEL, &r, 1.0);
    to_double(rt, theta, NEL);
    for (int t = 1; t <= ARRIVALS; t++) {
        fill_normal(g, NEL, &r, 0.1);
        loco_outer_sgd(theta, NULL, NULL, g, NEL, &hp);
        for (int i = 0; i < NEL; i++) rt[i] -= (double)hp.lr * g[i];
        expect_close("theta", t, theta, rt, NEL);
    }
}

/* One DN arrival t (from 1) on the float state, and the paper's pseudo-code on the double one. */
static void dn_arrive(int t, float *theta, float *a, float *m, const float *g,
                      const loco_outer_hp *hp) {
    if (t % hp->N == 0)
        loco_outer_dn_activate(theta, m, a, g, NEL, hp);
    else
        loco_outer_dn_between(theta, m, a, g, NEL, hp);
}

static void dn_reference(int t, double *rt, double *ra, double *rm, const float *g,
                         const loco_outer_hp *hp) {
    double lr = hp->lr, b = hp->beta, c = hp->c, N = hp->N;
    for (int i = 0; i < NEL; i++) {
        ra[i] += g[i];
        if (t % hp->N == 0) {
            rm[i] = b * rm[i] + ra[i] / N;
            rt[i] -= lr * ((1 - c * N + c) * b * rm[i] + g[i] / N);
            ra[i] = 0;
        } else {
            rt[i] -= lr * (c * b * rm[i] + g[i] / N);
        }
    }
}

Test(outer, dn_with_c_matches_the_reference_and_freezes_m_between_activations) {
    const float cs[] = {0.1f, 0.25f}; /* inside (0, 1/N) and at 1/N */
    for (int k = 0; k < 2; k++) {
        loco_outer_hp hp = hp_of(4, cs[k]);
        float theta[NEL], a[NEL] = {0}, m[NEL] = {0}, g[NEL], m_before[NEL];
        double rt[NEL], ra[NEL] = {0}, rm[NEL] = {0};
        loco_rng r;
        loco_rng_seed(&r, 3, (uint64_t)k);
        fill_normal(theta, NEL, &r, 1.0);
        to_double(rt, theta, NEL);
        for (int t = 1; t <= ARRIVALS; t++) {
            fill_normal(g, NEL, &r, 0.1);
            memcpy(m_before, m, sizeof m);
            dn_arrive(t, theta, a, m, g, &hp);
            dn_reference(t, rt, ra, rm, g, &hp);
            if (t % hp.N != 0)
                cr_assert(memcmp(m, m_before, sizeof m) == 0,
                          "c = %g: in-between arrival %d changed m", hp.c, t);
            expect_close("theta", t, theta, rt, NEL);
            expect_close("a", t, a, ra, NEL);
            expect_close("m", t, m, rm, NEL);
        }
    }
}

Test(outer, dn_with_c0_turns_a_window_of_n_arrivals_into_one_nesterov_step_on_the_mean) {
    for (int N = 3; N <= 4; N++) {
        loco_outer_hp hp = hp_of(N, 0);
        float theta[NEL], m[NEL], a[NEL] = {0}, g[NEL], nt[NEL], nm[NEL], gbar[NEL];
        loco_rng r;
        loco_rng_seed(&r, 4, (uint64_t)N);
        fill_normal(theta, NEL, &r, 1.0);
        fill_normal(m, NEL, &r, 0.2); /* a window in mid-run: momentum already built up */
        memcpy(nt, theta, sizeof theta);
        memcpy(nm, m, sizeof m);
        for (int w = 0; w < 2; w++) {
            double sum[NEL] = {0};
            for (int t = 1; t <= N; t++) {
                fill_normal(g, NEL, &r, 0.1);
                for (int i = 0; i < NEL; i++) sum[i] += g[i];
                dn_arrive(t, theta, a, m, g, &hp);
            }
            for (int i = 0; i < NEL; i++) gbar[i] = (float)(sum[i] / N);
            loco_outer_nesterov(nt, nm, NULL, gbar, NEL, &hp);
            /* theta went through N float subtractions instead of one, a summed N values */
            for (int i = 0; i < NEL; i++) {
                double tol = (N + 4) * FLT_EPSILON * (1.0 + fabs(nt[i]));
                cr_assert_float_eq(theta[i], nt[i], tol,
                                   "N = %d window %d, theta[%d]: DN %.9g vs Nesterov %.9g", N, w, i,
                                   theta[i], nt[i]);
                cr_assert_float_eq(m[i], nm[i], tol, "N = %d window %d, m[%d]", N, w, i);
                cr_assert_eq(a[i], 0.0f, "N = %d window %d: a[%d] not cleared", N, w, i);
            }
        }
    }
}

Test(outer, dn_with_n1_and_c0_is_nesterov_on_every_arrival) {
    loco_outer_hp hp = hp_of(1, 0);
    float theta[NEL], m[NEL] = {0}, a[NEL] = {0}, g[NEL], nt[NEL], nm[NEL] = {0};
    loco_rng r;
    loco_rng_seed(&r, 5, 0);
    fill_normal(theta, NEL, &r, 1.0);
    memcpy(nt, theta, sizeof theta);
    for (int t = 1; t <= ARRIVALS; t++) {
        fill_normal(g, NEL, &r, 0.1);
        dn_arrive(t, theta, a, m, g, &hp); /* t mod 1 == 0: every arrival activates */
        loco_outer_nesterov(nt, nm, NULL, g, NEL, &hp);
        for (int i = 0; i < NEL; i++) {
            double tol = 4.0 * t * FLT_EPSILON * (1.0 + fabs(nt[i]));
            cr_assert_float_eq(theta[i], nt[i], tol,
                               "arrival %d theta[%d]: DN %.9g vs Nesterov %.9g", t, i, theta[i],
                               nt[i]);
            cr_assert_float_eq(m[i], nm[i], tol, "arrival %d m[%d]", t, i);
            cr_assert_eq(a[i], 0.0f, "arrival %d: a[%d] not cleared", t, i);
        }
    }
}

static void buffer_arrive(int t, float *theta, float *a, float *m, const float *g,
                          const loco_outer_hp *hp) {
    if (t % hp->N == 0)
        loco_outer_buffer_apply(theta, m, a, g, NEL, hp);
    else
        loco_outer_buffer_add(NULL, NULL, a, g, NEL, hp);
}

Test(outer, buffer_matches_the_reference_and_moves_theta_once_per_n_arrivals) {
    loco_outer_hp hp = hp_of(4, 0);
    float theta[NEL], a[NEL] = {0}, m[NEL] = {0}, g[NEL], t_before[NEL], m_before[NEL];
    double rt[NEL], ra[NEL] = {0}, rm[NEL] = {0}, lr = hp.lr, b = hp.beta;
    loco_rng r;
    loco_rng_seed(&r, 6, 0);
    fill_normal(theta, NEL, &r, 1.0);
    to_double(rt, theta, NEL);
    for (int t = 1; t <= ARRIVALS; t++) {
        fill_normal(g, NEL, &r, 0.1);
        memcpy(t_before, theta, sizeof theta);
        memcpy(m_before, m, sizeof m);
        buffer_arrive(t, theta, a, m, g, &hp);
        for (int i = 0; i < NEL; i++) {
            ra[i] += g[i];
            if (t % hp.N == 0) {
                double gbar = ra[i] / hp.N;
                rm[i] = b * rm[i] + gbar;
                rt[i] -= lr * (gbar + b * rm[i]);
                ra[i] = 0;
            }
        }
        if (t % hp.N != 0) {
            cr_assert(memcmp(theta, t_before, sizeof theta) == 0,
                      "in-between arrival %d moved theta", t);
            cr_assert(memcmp(m, m_before, sizeof m) == 0, "in-between arrival %d changed m", t);
        } else {
            for (int i = 0; i < NEL; i++)
                cr_assert_eq(a[i], 0.0f, "arrival %d: a[%d] not cleared", t, i);
        }
        expect_close("theta", t, theta, rt, NEL);
        expect_close("a", t, a, ra, NEL);
        expect_close("m", t, m, rm, NEL);
    }
}

Test(outer, buffer_window_equals_one_nesterov_step_on_the_mean) {
    loco_outer_hp hp = hp_of(3, 0);
    float theta[NEL], m[NEL], a[NEL] = {0}, g[NEL], nt[NEL], nm[NEL], gbar[NEL];
    double sum[NEL] = {0};
    loco_rng r;
    loco_rng_seed(&r, 7, 0);
    fill_normal(theta, NEL, &r, 1.0);
    fill_normal(m, NEL, &r, 0.2);
    memcpy(nt, theta, sizeof theta);
    memcpy(nm, m, sizeof m);
    for (int t = 1; t <= hp.N; t++) {
        fill_normal(g, NEL, &r, 0.1);
        for (int i = 0; i < NEL; i++) sum[i] += g[i];
        buffer_arrive(t, theta, a, m, g, &hp);
    }
    for (int i = 0; i < NEL; i++) gbar[i] = (float)(sum[i] / hp.N);
    loco_outer_nesterov(nt, nm, NULL, gbar, NEL, &hp);
    /* the same step up to the float rounding of the mean (a summed in float, times 1/N) */
    for (int i = 0; i < NEL; i++) {
        double tol = 8 * FLT_EPSILON * (1.0 + fabs(nt[i]));
        cr_assert_float_eq(theta[i], nt[i], tol, "theta[%d]: buffer %.9g vs Nesterov %.9g", i,
                           theta[i], nt[i]);
        cr_assert_float_eq(m[i], nm[i], tol, "m[%d]", i);
        cr_assert_eq(a[i], 0.0f, "a[%d] not cleared", i);
    }
}

/* The paper: four Nesterov steps with the same g move theta by
 * lr [(4 + 4b + 3b^2 + 2b^3 + b^4) g + b^2 (1 + b + b^2 + b^3) m0]. Derived again here:
 * step j (1..4) moves theta by lr (g + b m_j) with m_j = b^j m0 + (1 + ... + b^(j-1)) g, i.e.
 * by lr [(1 + b + ... + b^j) g + b^(j+1) m0]; summing j = 1..4 gives the g coefficient
 * above and b^2 + b^3 + b^4 + b^5 = b^2 (1 + b + b^2 + b^3) for m0: the paper is right.
 * m after the four steps is b^4 m0 + (1 + b + b^2 + b^3) g. */
Test(outer, naive_async_four_steps_with_the_same_g_follow_the_closed_form) {
    loco_outer_hp hp = hp_of(1, 0);
    float theta[NEL], m[NEL], g[NEL];
    double theta0[NEL], m0[NEL], lr = hp.lr, b = hp.beta;
    loco_rng r;
    loco_rng_seed(&r, 8, 0);
    fill_normal(theta, NEL, &r, 1.0);
    fill_normal(m, NEL, &r, 0.2);
    fill_normal(g, NEL, &r, 0.1);
    to_double(theta0, theta, NEL);
    to_double(m0, m, NEL);
    for (int k = 0; k < 4; k++) loco_outer_nesterov(theta, m, NULL, g, NEL, &hp);
    double cg = 4 + 4 * b + 3 * b * b + 2 * b * b * b + b * b * b * b;
    double cm = b * b * (1 + b + b * b + b * b * b);
    double one_step = 1 + b;
    cr_assert_gt(cg, 3 * one_step,
                 "four arrivals of g move theta over three times one averaged step");
    for (int i = 0; i < NEL; i++) {
        double want_t = theta0[i] - lr * (cg * g[i] + cm * m0[i]);
        double want_m = b * b * b * b * m0[i] + (1 + b + b * b + b * b * b) * g[i];
        cr_assert_float_eq(theta[i], want_t, tol_after(4, want_t),
                           "theta[%d]: %.9g vs closed form %.9g", i, theta[i], want_t);
        cr_assert_float_eq(m[i], want_m, tol_after(4, want_m), "m[%d]: %.9g vs closed form %.9g", i,
                           m[i], want_m);
    }
}

Test(outer, poly_weights_are_one_over_the_square_root_of_one_plus_staleness) {
    cr_assert_float_eq(loco_outer_poly(0), 1.0, 1e-7, "staleness 0: full weight");
    cr_assert_float_eq(loco_outer_poly(3), 0.5, 1e-7, "staleness 3: 1/2");
    cr_assert_float_eq(loco_outer_poly(15), 0.25, 1e-7, "staleness 15: 1/4");
    cr_assert_float_eq(loco_outer_poly(8), 1.0 / 3.0, 1e-7, "staleness 8: 1/3");
    cr_assert_float_eq(loco_outer_poly(1000), 1.0 / sqrt(1001.0), 1e-8, "staleness 1000");
}

Test(outer, polythres_drops_only_above_the_threshold) {
    cr_assert_eq(loco_outer_polythres_drop(0, 10), 0, "fresh arrival kept");
    cr_assert_eq(loco_outer_polythres_drop(9, 10), 0, "below the threshold kept");
    cr_assert_eq(loco_outer_polythres_drop(10, 10), 0, "at the threshold kept");
    cr_assert_neq(loco_outer_polythres_drop(11, 10), 0, "just above dropped");
    cr_assert_neq(loco_outer_polythres_drop(1000, 10), 0, "far above dropped");
    cr_assert_eq(loco_outer_polythres_drop(0, 0), 0, "stale_max 0 keeps fresh arrivals");
    cr_assert_neq(loco_outer_polythres_drop(1, 0), 0, "stale_max 0 drops any stale one");
}

Test(outer, delay_compensation_matches_the_formula) {
    float g[NEL], now[NEL], start[NEL], g0[NEL];
    const float lambda = 0.5f;
    loco_rng r;
    loco_rng_seed(&r, 9, 0);
    fill_normal(g, NEL, &r, 1.0);
    fill_normal(start, NEL, &r, 1.0);
    for (int i = 0; i < NEL; i++) now[i] = start[i] + (float)(2.0 * loco_rng_normal(&r));
    memcpy(g0, g, sizeof g);
    size_t held = loco_outer_delay_comp(g, now, start, NEL, lambda);
    int clamped = 0;
    for (int i = 0; i < NEL; i++) {
        double corr = (double)lambda * g0[i] * g0[i] * ((double)now[i] - start[i]);
        double lim = fabs((double)g0[i]);
        clamped += fabs(corr) > lim;
        corr = corr > lim ? lim : corr < -lim ? -lim : corr; /* held to |g| */
        double want = g0[i] + corr;
        /* the difference, three products and the sum: a few roundings of |g| + |corr| */
        double tol = 4 * FLT_EPSILON * (fabs((double)g0[i]) + fabs(corr));
        cr_assert_float_eq(g[i], want, tol, "g[%d]: %.9g vs formula %.9g", i, g[i], want);
    }
    cr_assert(clamped > 0 && clamped < NEL / 2, "%d of %d corrections held to |g|: both cases "
              "tested", clamped, NEL);
    cr_assert_eq(held, (size_t)clamped, "it counts the corrections it held");
    memcpy(g, g0, sizeof g);
    loco_outer_delay_comp(g, start, start, NEL, lambda);
    cr_assert(memcmp(g, g0, sizeof g) == 0, "no drift since the start: g unchanged");
}

/* Runs one rule for arrival t on (theta, a, m) with g: 0 Nesterov, 1 SGD, 2 DN, 3 buffer. */
static void run_rule(int rule, int t, float *theta, float *a, float *m, const float *g,
                     const loco_outer_hp *hp) {
    if (rule == 0) loco_outer_nesterov(theta, m, NULL, g, NEL, hp);
    if (rule == 1) loco_outer_sgd(theta, NULL, NULL, g, NEL, hp);
    if (rule == 2) dn_arrive(t, theta, a, m, g, hp);
    if (rule == 3) buffer_arrive(t, theta, a, m, g, hp);
}

static void expect_same(const char *what, int rule, int t, const float *x, const float *y) {
    for (int i = 0; i < NEL; i++)
        cr_assert_float_eq(x[i], y[i], 4.0 * t * FLT_EPSILON * (1.0 + fabs(y[i])),
                           "rule %d arrival %d %s[%d]: gscale %.9g vs scaled g %.9g", rule, t, what,
                           i, x[i], y[i]);
}

Test(outer, gscale_equals_the_rule_applied_to_the_scaled_g) {
    const float s = 0.37f;
    for (int rule = 0; rule < 4; rule++) {
        loco_outer_hp hs = hp_of(4, 0.1f), h1 = hs;
        hs.gscale = s;
        float t1[NEL], a1[NEL] = {0}, m1[NEL] = {0}, g[NEL], sg[NEL];
        float t2[NEL], a2[NEL] = {0}, m2[NEL] = {0};
        loco_rng r;
        loco_rng_seed(&r, 10, (uint64_t)rule);
        fill_normal(t1, NEL, &r, 1.0);
        memcpy(t2, t1, sizeof t1);
        for (int t = 1; t <= 8; t++) {
            fill_normal(g, NEL, &r, 0.1);
            for (int i = 0; i < NEL; i++) sg[i] = s * g[i];
            run_rule(rule, t, t1, a1, m1, g, &hs);
            run_rule(rule, t, t2, a2, m2, sg, &h1);
            expect_same("theta", rule, t, t1, t2);
            expect_same("a", rule, t, a1, a2);
            expect_same("m", rule, t, m1, m2);
        }
        /* and gscale is not a no-op: the unscaled g would have moved theta further */
        float t3[NEL], a3[NEL] = {0}, m3[NEL] = {0};
        fill_normal(t3, NEL, &r, 1.0);
        memcpy(t1, t3, sizeof t3);
        memset(a1, 0, sizeof a1);
        memset(m1, 0, sizeof m1);
        fill_normal(g, NEL, &r, 0.1);
        for (int t = 1; t <= 4; t++) {
            run_rule(rule, t, t1, a1, m1, g, &hs);
            run_rule(rule, t, t3, a3, m3, g, &h1);
        }
        cr_assert(memcmp(t1, t3, sizeof t1) != 0, "rule %d: gscale %g changed nothing", rule, s);
    }
}

Test(outer, every_rule_touches_exactly_n_elements_for_small_and_odd_n) {
    enum { CAP = 48 };
    loco_outer_hp hp = hp_of(2, 0.2f);
    for (size_t n = 0; n < 40; n++) {
        float theta[CAP], a[CAP], m[CAP], g[CAP], x[CAP];
        for (int i = 0; i < CAP; i++) theta[i] = a[i] = m[i] = x[i] = 7.0f, g[i] = 1.0f;
        loco_outer_nesterov(theta, m, NULL, g, n, &hp);
        loco_outer_sgd(theta, NULL, NULL, g, n, &hp);
        loco_outer_dn_between(theta, m, a, g, n, &hp);
        loco_outer_dn_activate(theta, m, a, g, n, &hp);
        loco_outer_buffer_add(NULL, NULL, a, g, n, &hp);
        loco_outer_buffer_apply(theta, m, a, g, n, &hp);
        loco_outer_delay_comp(x, theta, g, n, 0.5f);
        for (size_t i = 0; i < CAP; i++) {
            int inside = i < n;
            cr_assert_eq(theta[i] != 7.0f, inside, "n = %zu: theta[%zu] %s", n, i,
                         inside ? "untouched" : "written past n");
            cr_assert_eq(m[i] != 7.0f, inside, "n = %zu: m[%zu]", n, i);
            cr_assert_eq(a[i] != 7.0f, inside, "n = %zu: a[%zu]", n, i);
            cr_assert_eq(x[i] != 7.0f, inside, "n = %zu: delay-compensated g[%zu]", n, i);
        }
    }
}

Test(outer, all_finite_sees_nan_and_both_infinities_anywhere) {
    enum { CAP = 301 };
    float x[CAP];
    loco_rng r;
    loco_rng_seed(&r, 11, 0);
    fill_normal(x, CAP, &r, 1.0);
    x[1] = FLT_MAX, x[2] = -FLT_MAX, x[3] = FLT_MIN / 4, x[4] = -0.0f, x[5] = FLT_TRUE_MIN;
    cr_assert_neq(loco_all_finite(x, CAP), 0, "finite array, extremes included");
    cr_assert_neq(loco_all_finite(x, 0), 0, "n = 0: nothing is non-finite");
    cr_assert_neq(loco_all_finite(NULL, 0), 0, "n = 0 reads nothing");
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    const size_t sizes[] = {1, 2, 7, 8, 9, 16, 17, 31, 33, CAP};
    for (int s = 0; s < 10; s++) {
        size_t n = sizes[s], where[] = {0, n / 2, n - 1};
        for (int k = 0; k < 4; k++)
            for (int w = 0; w < 3; w++) {
                float keep = x[where[w]];
                x[where[w]] = bad[k];
                cr_assert_eq(loco_all_finite(x, n), 0, "n = %zu: %g at %zu missed", n, bad[k],
                             where[w]);
                if (n > 1 && where[w] == n - 1)
                    cr_assert_neq(loco_all_finite(x, n - 1), 0, "n = %zu: read past n - 1", n);
                x[where[w]] = keep;
            }
        cr_assert_neq(loco_all_finite(x, n), 0, "n = %zu: restored array is finite", n);
    }
}

Test(outer, flush_after_adds_equals_the_buffered_step) {
    enum { K = 64, ARR = 4 };
    loco_outer_hp hp = {.lr = 0.7f, .beta = 0.9f, .N = ARR, .c = 0.0f, .gscale = 1.0f};
    float t1[K], a1[K] = {0}, m1[K], t2[K], a2[K] = {0}, m2[K], g[ARR][K];
    loco_rng r;
    loco_rng_seed(&r, 5, 0);
    for (int i = 0; i < K; i++) {
        t1[i] = t2[i] = (float)loco_rng_normal(&r);
        m1[i] = m2[i] = 0.1f * (float)loco_rng_normal(&r);
        for (int j = 0; j < ARR; j++) g[j][i] = 0.05f * (float)loco_rng_normal(&r);
    }
    for (int j = 0; j < ARR; j++) loco_outer_buffer_add(NULL, NULL, a1, g[j], K, &hp);
    loco_outer_buffer_flush(t1, m1, a1, NULL, K, &hp);
    for (int j = 0; j < ARR - 1; j++) loco_outer_buffer_add(NULL, NULL, a2, g[j], K, &hp);
    loco_outer_buffer_apply(t2, m2, a2, g[ARR - 1], K, &hp);
    for (int i = 0; i < K; i++) {
        cr_assert_float_eq(t1[i], t2[i], 1e-6, "theta[%d]: %g vs %g", i, (double)t1[i], (double)t2[i]);
        cr_assert_float_eq(m1[i], m2[i], 1e-6, "m[%d]", i);
        cr_assert_eq(a1[i], 0.0f, "a cleared");
    }
}

/* ---- the tables ---- */

static int differs(const float *x, const float *y, size_t n) {
    return memcmp(x, y, n * sizeof *x) != 0;
}

/* What the rule table says of each rule is what its function does: it writes m exactly
 * when it "moves the momentum" (the server then sweeps it), theta exactly when it "moves
 * theta", and leaves g in a exactly when it "accumulates". */
Test(outer, every_rule_row_says_what_its_function_writes) {
    enum { K = 40 };
    loco_outer_hp hp = {.lr = 0.7f, .beta = 0.9f, .N = 3, .c = 0.1f, .gscale = 1.0f};
    loco_rng r;
    loco_rng_seed(&r, 8, 0);
    for (int id = 0; id < LOCO_NRULES; id++) {
        const loco_outer_rule *rule = loco_outer_rule_of(id);
        cr_assert_not_null(rule->name, "rule %d has a row", id);
        if (id == LOCO_RULE_NONE) {
            cr_assert_null(rule->apply, "none applies nothing");
            continue;
        }
        float th[K], m[K], a[K], g[K], th0[K], m0[K];
        fill_normal(th, K, &r, 1.0);
        fill_normal(m, K, &r, 0.1);
        fill_normal(g, K, &r, 0.1);
        memset(a, 0, sizeof a);
        memcpy(th0, th, sizeof th);
        memcpy(m0, m, sizeof m);
        rule->apply(th, m, a, g, K, &hp);
        cr_assert_eq(differs(m, m0, K), rule->moves_momentum, "%s: m written %d, row says %d",
                     rule->name, differs(m, m0, K), rule->moves_momentum);
        cr_assert_eq(differs(th, th0, K), rule->moves_theta, "%s: theta written, row says %d",
                     rule->name, rule->moves_theta);
        int kept = 1;
        for (int i = 0; i < K; i++) kept &= a[i] == g[i];
        cr_assert_eq(kept, rule->accumulates, "%s: g left in a %d, row says %d", rule->name, kept,
                     rule->accumulates);
    }
}

/* Every method's arrivals get rules of the table, periodic methods change rule exactly at
 * multiples of N, and single is not an engine method. */
Test(outer, every_method_row_is_consistent) {
    int n = 0;
    for (const loco_enum *e = loco_outer_methods; e->name; e++, n++) {
        const loco_outer_method *m = loco_outer_method_of(e->value);
        cr_assert_eq(m, e->data, "%s: its row", e->name);
        if (!m->engine) {
            cr_assert_eq(e->value, LOCO_METHOD_SINGLE, "only single runs without the engine");
            continue;
        }
        for (long t = 1; t <= 12; t++) {
            int rule = loco_outer_rule_for(e->value, t, 4);
            cr_assert(rule > LOCO_RULE_NONE && rule < LOCO_NRULES, "%s: arrival %ld", e->name, t);
            if (!m->periodic) cr_assert_eq(rule, loco_outer_rule_for(e->value, t, 1), "%s", e->name);
        }
        if (m->periodic) cr_assert_neq(m->rule, m->period_rule, "%s: periodic", e->name);
        if (m->close_rule != LOCO_RULE_NONE)
            cr_assert(loco_outer_rule_of(m->close_rule)->moves_momentum,
                      "%s: its close rule is swept", e->name);
    }
    cr_assert_eq(n, 6, "the six methods");
    cr_assert_str_eq(loco_enum_name(loco_outer_methods, LOCO_METHOD_ASYNC_DN), "async-dn");
}

/* An id outside the tables is a programmer's error: it aborts with file:line and the
 * value instead of choosing some behaviour. */
Test(outer, an_unknown_rule_or_method_is_a_broken_invariant) {
    for (int which = 0; which < 2; which++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(fds[1], 2);
            if (which == 0)
                loco_outer_rule_of(LOCO_NRULES);
            else
                loco_outer_rule_for(42, 1, 1);
            _exit(0);
        }
        close(fds[1]);
        char buf[512] = {0};
        ssize_t got = 0, n;
        while ((n = read(fds[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0) got += n;
        close(fds[0]);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "case %d: not aborted", which);
        cr_assert(got > 0 && strstr(buf, "broken invariant") && strstr(buf, ".c:"),
                  "case %d: message '%s'", which, buf);
        cr_assert(strstr(buf, which == 0 ? "rule 8" : "42"), "the value: '%s'", buf);
    }
}

/* Delay compensation must not turn a sane delta into Inf or NaN (it runs after the checks):
 * a correction is held to |g| (an overflowing one too), and one that is not a number is 0. */
Test(outer, delay_compensation_keeps_a_finite_delta_finite) {
    float g[5] = {1e20f, -1e30f, 2.0f, 0.0f, 0.5f};
    const float now[5] = {1.0f, 3e38f, 1.5f, 3e38f, 1.1f};
    const float start[5] = {0.0f, -3e38f, 0.5f, -3e38f, 1.0f};
    cr_assert_eq(loco_outer_delay_comp(g, now, start, 5, 1.0f), 3, "held: the first three");
    cr_assert_eq(g[0], 2e20f, "g^2 overflows: the correction held to |g|");
    cr_assert_eq(g[1], 0.0f, "-1e30 with a correction of +Inf held to +1e30");
    cr_assert_float_eq(g[2], 4.0f, 1e-6, "2 + 4 held to 2 + 2");
    cr_assert_eq(g[3], 0.0f, "0 x Inf would be NaN: no correction");
    cr_assert_float_eq(g[4], 0.5f + 0.25f * 0.1f, 1e-6, "a small correction is the formula's");
    cr_assert(loco_all_finite(g, 5));
}
