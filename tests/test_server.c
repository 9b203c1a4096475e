/* The outer protocol driven by hand: rejection of diverged or too stale arrivals leaves
 * theta intact, pure-add and swept rules land as the outer functions say, the budget of
 * local steps is handed out exactly, DyLU counts follow the speed profile. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/config.h"
#include "loco/server.h"

enum { N = 1000 };

typedef struct {
    loco_config c;
    loco_globalbuf gb;
    loco_clock clock;
    loco_hetero het;
    loco_server s;
    loco_round r[4];
    float init[N];
} world;

/* a world of W workers; sets are applied to the config first */
static void make(world *w, int W, const char **sets) {
    memset(w, 0, sizeof *w);
    loco_err e;
    loco_config_default(&w->c);
    w->c.run.workers = W;
    for (int i = 0; sets && sets[i]; i++) cr_assert_eq(loco_config_set(&w->c, sets[i], &e), 0, "%s", e.msg);
    for (int i = 0; i < N; i++) w->init[i] = (float)(i % 17) * 0.1f;
    cr_assert_eq(loco_globalbuf_init(&w->gb, w->init, N, 1, LOCO_LOCK_TICKET, NULL, &e), 0);
    cr_assert_eq(loco_clock_init(&w->clock, w->c.run.clock, W, &e), 0);
    cr_assert_eq(loco_hetero_init(&w->het, W, w->c.hetero.level, w->c.hetero.slowdown, 0, "", &e), 0);
    for (int i = 0; i < W; i++) {
        w->r[i].id = i;
        w->r[i].params = loco_alloc(N * sizeof(float));
        w->r[i].theta0 = loco_alloc(N * sizeof(float));
        w->r[i].delta = loco_alloc(N * sizeof(float));
    }
    cr_assert_eq(loco_server_init(&w->s, &w->c, &w->gb, &w->clock, &w->het, NULL, w->r, 1, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(loco_server_start(&w->s, NULL, NULL, &e), 0);
}

static void destroy(world *w) {
    loco_server_finish(&w->s);
    loco_server_free(&w->s);
    for (int i = 0; i < w->c.run.workers; i++) {
        free(w->r[i].params);
        free(w->r[i].theta0);
        free(w->r[i].delta);
    }
    loco_hetero_free(&w->het);
    loco_clock_free(&w->clock);
    loco_globalbuf_free(&w->gb);
}

/* begins worker i and pulls its first theta */
static long start(world *w, int i) {
    long h = loco_server_begin(&w->s, &w->r[i]);
    loco_server_pull(&w->s, &w->r[i]);
    return h;
}

/* worker i arrives with delta = value everywhere (NaN allowed) */
static long arrive(world *w, int i, float value) {
    loco_round *r = &w->r[i];
    for (int k = 0; k < N; k++) r->delta[k] = value;
    r->finite = isfinite(value);
    return loco_server_arrive(&w->s, r);
}

Test(server, a_nonfinite_delta_is_rejected_and_theta_stays_intact) {
    world w;
    const char *sets[] = {"outer.method=async-dn", "outer.dn_period=1", NULL};
    make(&w, 1, sets);
    start(&w, 0);
    arrive(&w, 0, NAN);
    cr_assert_eq(memcmp(w.gb.theta, w.init, sizeof w.init), 0, "theta changed by a NaN delta");
    for (int k = 0; k < N; k++) cr_assert(isfinite(w.gb.m[k]) && isfinite(w.gb.a[k]));
    cr_assert_eq(w.s.rejected_nonfinite, 1);
    cr_assert_eq(w.s.updates, 0, "a rejected arrival is no update");
    cr_assert(w.r[0].rejected);
    cr_assert_eq(memcmp(w.r[0].params, w.init, sizeof w.init), 0, "the worker pulled theta again");
    arrive(&w, 0, INFINITY);
    cr_assert_eq(w.s.rejected_nonfinite, 2);
    arrive(&w, 0, 0.5f); /* a good one is applied by the sweep: Nesterov on g = 0.5 */
    cr_assert_eq(w.s.updates, 1);
    float lr = (float)w.c.outer.lr, beta = (float)w.c.outer.momentum;
    float m = 0.5f, want = w.init[3] - lr * (0.5f + beta * m);
    cr_assert_float_eq(w.gb.theta[3], want, 1e-6, "theta %g, want %g", (double)w.gb.theta[3], (double)want);
    cr_assert_eq(memcmp(w.r[0].params, w.gb.theta, sizeof w.init), 0, "pulled behind the sweep");
    destroy(&w);
}

Test(server, pure_add_arrivals_apply_their_rule_and_the_pull_sees_them) {
    world w;
    const char *sets[] = {"outer.method=async-sgd", "outer.lr=0.25", NULL};
    make(&w, 2, sets);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f);
    arrive(&w, 1, 2.0f);
    for (int k = 0; k < N; k++) {
        float want = w.init[k] - 0.25f * 1.0f;
        want -= 0.25f * 2.0f;
        cr_assert_float_eq(w.gb.theta[k], want, 1e-6, "theta[%d]", k);
    }
    cr_assert_eq(memcmp(w.r[1].params, w.gb.theta, sizeof w.init), 0, "worker 1 pulled it");
    cr_assert_eq(w.r[1].v_start, 2, "worker 1's round starts from version 2");
    cr_assert_eq(w.s.stale_hist[0], 1, "worker 0's arrival was fresh");
    cr_assert_eq(w.s.stale_hist[1], 1, "worker 1's was one update stale");
    destroy(&w);
}

Test(server, polythres_drops_arrivals_staler_than_the_limit) {
    world w;
    const char *sets[] = {"outer.method=async-sgd", "outer.staleness=polythres",
                          "outer.stale_max=0", NULL};
    make(&w, 2, sets);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f); /* fresh: applied with weight 1 */
    float after_first = w.gb.theta[0];
    arrive(&w, 1, 1.0f); /* staleness 1 > 0: dropped */
    cr_assert_eq(w.gb.theta[0], after_first, "a dropped arrival changed theta");
    cr_assert_eq(w.s.rejected_stale, 1);
    cr_assert_eq(w.s.updates, 1);
    destroy(&w);
}

Test(server, poly_weights_stale_arrivals) {
    world w;
    const char *sets[] = {"outer.method=async-sgd", "outer.staleness=poly", "outer.lr=1", NULL};
    make(&w, 2, sets);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f);
    float before = w.gb.theta[0];
    arrive(&w, 1, 1.0f); /* staleness 1: weight 1/sqrt(2) */
    cr_assert_float_eq(before - w.gb.theta[0], 1.0f / sqrtf(2.0f), 1e-6);
    destroy(&w);
}

Test(server, the_budget_of_local_steps_is_handed_out_exactly) {
    world w;
    const char *sets[] = {"outer.method=async-sgd", "outer.local_steps=10",
                          "outer.total_local_steps=25", NULL};
    make(&w, 1, sets);
    cr_assert_eq(start(&w, 0), 10);
    cr_assert_eq(arrive(&w, 0, 0.0f), 10);
    cr_assert_eq(arrive(&w, 0, 0.0f), 5, "the last round gets what is left");
    cr_assert_eq(arrive(&w, 0, 0.0f), 0, "then the worker is done");
    cr_assert_eq(w.s.local_steps, 25);
    cr_assert_eq(w.s.active, 0);
    destroy(&w);
}

Test(server, dylu_gives_slower_workers_proportionally_fewer_steps) {
    world w;
    const char *sets[] = {"outer.method=async-dn", "outer.dylu=on", "outer.local_steps=50",
                          "hetero.level=very", "run.clock=virtual", NULL};
    make(&w, 4, sets);
    long want[4] = {50, 38, 19, 8}; /* floor(50 / 1, 1.29, 2.6, 5.74) */
    for (int i = 0; i < 4; i++) cr_assert_eq(start(&w, i), want[i], "worker %d", i);
    /* virtual ends: 50 x 1, 38 x 1.29, 19 x 2.6, 8 x 5.74 steps of 1 s */
    cr_assert_float_eq(w.clock.at[1], 38 * 1.29, 1e-9);
    cr_assert_float_eq(w.clock.at[3], 8 * 5.74, 1e-9);
    /* the earliest (worker 3 at 45.92 s) commits first */
    cr_assert_eq(arrive(&w, 3, 0.0f), 8);
    cr_assert_float_eq(w.clock.now, 8 * 5.74, 1e-9);
    loco_server_stop_early(&w.s);
    for (int i = 0; i < 4; i++) {
        /* everyone arrives once more in virtual order and gets no new round */
        int next = 0;
        for (int k = 1; k < 4; k++)
            if (w.clock.at[k] < w.clock.at[next]) next = k;
        if (isinf(w.clock.at[next])) break;
        cr_assert_eq(arrive(&w, next, 0.0f), 0);
    }
    cr_assert_eq(w.s.active, 0);
    destroy(&w);
}
