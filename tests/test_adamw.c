/* AdamW, the schedule and clipping against scalar references written from the formulas. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "loco/adamw.h"
#include "loco/base.h"

static loco_adamw_hp hp_default(void) {
    loco_adamw_hp hp = {.lr = 1e-3, .lr_min = 1e-4, .warmup = 10, .steps = 110, .beta1 = 0.9,
                        .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 1.0};
    return hp;
}

Test(adamw, schedule_warms_up_linearly_then_follows_the_cosine_and_stays_at_lr_min) {
    loco_adamw_hp hp = hp_default();
    for (long s = 0; s < 10; s++)
        cr_assert_float_eq(loco_adamw_lr(&hp, s), 1e-3 * (s + 1) / 10.0, 1e-15, "warm-up step %ld", s);
    cr_assert_float_eq(loco_adamw_lr(&hp, 10), 1e-3, 1e-15, "peak right after warm-up");
    cr_assert_float_eq(loco_adamw_lr(&hp, 60), 1e-4 + 0.9e-3 * 0.5, 1e-15, "half way down");
    double q = 1e-4 + 0.9e-3 * 0.5 * (1 + cos(M_PI * 0.25));
    cr_assert_float_eq(loco_adamw_lr(&hp, 35), q, 1e-15, "a quarter of the way");
    cr_assert_float_eq(loco_adamw_lr(&hp, 110), 1e-4, 1e-15, "lr_min at the planned end");
    cr_assert_float_eq(loco_adamw_lr(&hp, 5000), 1e-4, 1e-15, "clipped past the end");
    for (long s = 11; s < 200; s++)
        cr_assert_leq(loco_adamw_lr(&hp, s), loco_adamw_lr(&hp, s - 1) + 1e-18, "monotone at %ld", s);
    hp.warmup = 0;
    cr_assert_float_eq(loco_adamw_lr(&hp, 0), 1e-3, 1e-15, "no warm-up starts at the peak");
}

Test(adamw, update_matches_a_double_precision_reference_over_many_steps) {
    loco_adamw_hp hp = hp_default();
    enum { N = 37, STEPS = 50 };
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    double rp[N], rm[N] = {0}, rv[N] = {0};
    loco_rng r;
    loco_rng_seed(&r, 3, 0);
    for (int i = 0; i < N; i++) rp[i] = p[i] = (float)loco_rng_normal(&r);
    for (long t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)(0.1 * loco_rng_normal(&r));
        float lr = (float)loco_adamw_lr(&hp, t - 1), gscale = 0.5f, wd = 0.1f;
        loco_adamw_update(p, g, m, v, N, t, lr, wd, gscale, &hp);
        for (int i = 0; i < N; i++) {
            double gi = (double)g[i] * gscale;
            rm[i] = 0.9 * rm[i] + 0.1 * gi;
            rv[i] = 0.95 * rv[i] + 0.05 * gi * gi;
            double mhat = rm[i] / (1 - pow(0.9, (double)t)), vhat = rv[i] / (1 - pow(0.95, (double)t));
            rp[i] -= (double)lr * (mhat / (sqrt(vhat) + 1e-8) + (double)wd * rp[i]);
        }
    }
    for (int i = 0; i < N; i++) {
        cr_assert_float_eq(p[i], rp[i], 2e-5, "param %d: %g vs reference %g", i, p[i], rp[i]);
        cr_assert_float_eq(m[i], rm[i], 1e-6, "first moment %d", i);
        cr_assert_float_eq(v[i], rv[i], 1e-7, "second moment %d", i);
    }
}

Test(adamw, no_decay_range_is_pure_adam) {
    loco_adamw_hp hp = hp_default();
    float p[2] = {1.0f, -2.0f}, m[2] = {0}, v[2] = {0}, g[2] = {0.0f, 0.0f};
    loco_adamw_update(p, g, m, v, 2, 1, 0.1f, 0.0f, 1.0f, &hp);
    cr_assert_eq(p[0], 1.0f, "zero gradient, no decay: unchanged");
    cr_assert_eq(p[1], -2.0f);
    loco_adamw_update(p, g, m, v, 2, 2, 0.1f, 0.5f, 1.0f, &hp);
    cr_assert_float_eq(p[0], 1.0f - 0.1f * 0.5f * 1.0f, 1e-7, "decoupled decay only");
}

Test(adamw, clipping_scales_to_the_threshold_and_sumsq_is_exact) {
    loco_adamw_hp hp = hp_default();
    cr_assert_eq(loco_clip_scale(&hp, 0.5), 1.0f, "below the threshold: untouched");
    cr_assert_float_eq(loco_clip_scale(&hp, 4.0), 0.25f, 1e-7, "above: scaled to norm 1");
    hp.grad_clip = 0;
    cr_assert_eq(loco_clip_scale(&hp, 1e6), 1.0f, "clip 0 = off");
    enum { N = 5000 };
    float *x = malloc(N * sizeof(float));
    double ref = 0;
    for (int i = 0; i < N; i++) {
        x[i] = (float)(i % 13) - 6.0f;
        ref += (double)x[i] * x[i];
    }
    cr_assert_float_eq(loco_sumsq(x, N), ref, 1e-9 * ref, "sum of squares");
    free(x);
}

/* `run`'s position (train.lr_progress) against its definition worked by hand: rounds of
 * an asynchronous run of budget 400 on a schedule of 100 steps, handed out after 0, 37
 * and 230 local steps had arrived with 4, 4 and (a worker away) 3 workers training; and
 * a whole position gives the same bits as a step count. */
Test(adamw, the_run_position_is_the_runs_progress_on_the_schedules_scale) {
    struct {
        long committed, live, j;
        double want;
    } cases[] = {
        {0, 4, 0, 0.0},     {0, 4, 1, 1.0},     {0, 4, 9, 9.0},  /* sync-like: own steps */
        {37, 4, 0, 9.25},   {37, 4, 3, 12.25},                  /* (37 + 12) / 4 */
        {230, 3, 5, 61.25},                                     /* (230 + 15) / 4 */
        {400, 4, 2, 102.0},                                     /* past the end: lr_min */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double pos = loco_adamw_run_position(cases[i].committed, cases[i].live, cases[i].j, 100, 400);
        cr_assert_eq(pos, cases[i].want, "case %zu: %.17g, not %g", i, pos, cases[i].want);
    }
    /* sync with the default budget (workers x steps): round r, step j is step H r + j */
    for (long W = 1; W <= 16; W++)
        for (long r = 0; r < 20; r++)
            for (long j = 0; j < 10; j++)
                cr_assert_eq(loco_adamw_run_position(W * 10 * r, W, j, 1000, W * 1000),
                             (double)(10 * r + j), "W %ld r %ld j %ld", W, r, j);
    loco_adamw_hp hp = hp_default();
    for (long s = 0; s < 2 * hp.steps; s++)
        cr_assert_eq(loco_adamw_lr_at(&hp, (double)s), loco_adamw_lr(&hp, s), "step %ld", s);
    cr_assert_eq(loco_adamw_lr_at(&hp, hp.steps + 2.5), hp.lr_min, "past the end: lr_min");
    double mid = loco_adamw_lr_at(&hp, hp.warmup + 0.5);
    cr_assert(mid < loco_adamw_lr(&hp, hp.warmup) && mid > loco_adamw_lr(&hp, hp.warmup + 1),
              "a position between two steps has a rate between theirs");
}
