/* The outer protocol driven by hand: rejection of diverged or too stale arrivals leaves
 * theta intact, pure-add and swept rules land as the outer functions say, the budget of
 * local steps is handed out exactly, DyLU counts follow the speed profile. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loco/data.h"
#include "loco/protocol.h"

enum { N = 1000 };

typedef struct {
    loco_protocol_settings st;
    loco_globalbuf gb;
    loco_clock clock;
    loco_hetero het;
    loco_protocol s;
    loco_round *r[4];
    size_t n;               /* floats in theta */
    float *init;
} world;

/* Settings as a run's defaults would give them: W workers, method, the virtual clock. */
static loco_protocol_settings settings(int W, int method) {
    return (loco_protocol_settings){.method = method, .workers = W, .clock = LOCO_CLOCK_VIRTUAL,
                                  .staleness = LOCO_STALE_NONE, .stale_max = 10, .N = W,
                                  .H = 50, .budget = 1000000,
                                  .hp = {.lr = 0.7f, .beta = 0.9f, .gscale = 1.0f},
                                  .batch_tokens = 1, .seed = 1};
}

/* a world of W workers with slowdown profile level, n floats of theta and evaluator ev
 * (may be NULL); st as settings() gave it, edited */
static void make_n(world *w, const loco_protocol_settings *st, int level, size_t n,
                   loco_eval_thread *ev) {
    memset(w, 0, sizeof *w);
    loco_err e;
    w->st = *st;
    w->n = n;
    w->init = loco_alloc(n * sizeof(float));
    int W = st->workers;
    for (size_t i = 0; i < n; i++) w->init[i] = (float)(i % 17) * 0.1f;
    cr_assert_eq(loco_globalbuf_init(&w->gb, w->init, n, 1, LOCO_LOCK_TICKET, NULL, &e), 0);
    cr_assert_eq(loco_clock_init(&w->clock, st->clock, W, &e), 0);
    loco_hetero_settings hs = {.workers = W, .level = level, .step_s = 1};
    cr_assert_eq(loco_hetero_init(&w->het, &hs, &e), 0);
    cr_assert_eq(loco_protocol_init(&w->s, st, &w->gb, &w->clock, &w->het, ev, NULL, &e), 0,
                 "%s", e.msg);
    for (int i = 0; i < W; i++) {
        w->r[i] = loco_protocol_round(&w->s, i);
        w->r[i]->params = loco_alloc(n * sizeof(float));
        w->r[i]->theta0 = loco_alloc(n * sizeof(float));
        w->r[i]->delta = loco_alloc(n * sizeof(float));
    }
    cr_assert_eq(loco_protocol_start(&w->s, NULL, NULL, &e), 0);
}

static void make(world *w, const loco_protocol_settings *st, int level) {
    make_n(w, st, level, N, NULL);
}

static void destroy(world *w) {
    loco_protocol_finish(&w->s);
    for (int i = 0; i < w->st.workers; i++) {
        free(w->r[i]->params);
        free(w->r[i]->theta0);
        free(w->r[i]->delta);
    }
    loco_protocol_free(&w->s);
    loco_hetero_free(&w->het);
    loco_clock_free(&w->clock);
    loco_globalbuf_free(&w->gb);
    free(w->init);
}

/* begins worker i and pulls its first theta */
static long start(world *w, int i) {
    long h = loco_protocol_begin(&w->s, w->r[i]);
    loco_protocol_pull(&w->s, w->r[i]);
    return h;
}

/* worker i arrives with delta = value everywhere (NaN allowed); *rejected gets whether
 * the arrival was rejected (may be NULL) */
static long arrive_r(world *w, int i, float value, int *rejected) {
    loco_round *r = w->r[i];
    for (size_t k = 0; k < w->n; k++) r->delta[k] = value;
    loco_arrival_cost cost;
    loco_round_report rep = {.finite = isfinite(value), .steps = r->h};
    long h = loco_protocol_arrive(&w->s, r, &rep, &cost);
    if (rejected) *rejected = cost.rejected;
    return h;
}

static long arrive(world *w, int i, float value) {
    return arrive_r(w, i, value, NULL);
}

Test(protocol, a_nonfinite_delta_is_rejected_and_theta_stays_intact) {
    world w;
    loco_protocol_settings st = settings(1, LOCO_METHOD_ASYNC_DN);
    st.N = 1;
    make(&w, &st, LOCO_LEVEL_NO);
    start(&w, 0);
    int rejected;
    arrive_r(&w, 0, NAN, &rejected);
    cr_assert_eq(memcmp(w.gb.theta, w.init, w.n * sizeof(float)), 0, "theta changed by a NaN delta");
    for (int k = 0; k < N; k++) cr_assert(isfinite(w.gb.m[k]) && isfinite(w.gb.a[k]));
    cr_assert_eq(w.s.rejected[LOCO_ARRIVAL_NONFINITE], 1);
    cr_assert_eq(w.s.updates, 0, "a rejected arrival is no update");
    cr_assert(rejected);
    cr_assert_eq(memcmp(w.r[0]->params, w.init, w.n * sizeof(float)), 0, "the worker pulled theta again");
    arrive(&w, 0, INFINITY);
    cr_assert_eq(w.s.rejected[LOCO_ARRIVAL_NONFINITE], 2);
    arrive_r(&w, 0, 0.5f, &rejected); /* a good one is applied by the sweep: Nesterov on g = 0.5 */
    cr_assert(!rejected);
    cr_assert_eq(w.s.updates, 1);
    float lr = st.hp.lr, beta = st.hp.beta;
    float m = 0.5f, want = w.init[3] - lr * (0.5f + beta * m);
    cr_assert_float_eq(w.gb.theta[3], want, 1e-6, "theta %g, want %g", (double)w.gb.theta[3], (double)want);
    cr_assert_eq(memcmp(w.r[0]->params, w.gb.theta, w.n * sizeof(float)), 0, "pulled behind the sweep");
    destroy(&w);
}

Test(protocol, pure_add_arrivals_apply_their_rule_and_the_pull_sees_them) {
    world w;
    loco_protocol_settings st = settings(2, LOCO_METHOD_ASYNC_SGD);
    st.hp.lr = 0.25f;
    make(&w, &st, LOCO_LEVEL_NO);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f);
    arrive(&w, 1, 2.0f);
    for (int k = 0; k < N; k++) {
        float want = w.init[k] - 0.25f * 1.0f;
        want -= 0.25f * 2.0f;
        cr_assert_float_eq(w.gb.theta[k], want, 1e-6, "theta[%d]", k);
    }
    cr_assert_eq(memcmp(w.r[1]->params, w.gb.theta, w.n * sizeof(float)), 0, "worker 1 pulled it");
    cr_assert_eq(w.r[1]->v_start, 2, "worker 1's round starts from version 2");
    cr_assert_eq(w.s.stale_hist[0], 1, "worker 0's arrival was fresh");
    cr_assert_eq(w.s.stale_hist[1], 1, "worker 1's was one update stale");
    destroy(&w);
}

Test(protocol, polythres_drops_arrivals_staler_than_the_limit) {
    world w;
    loco_protocol_settings st = settings(2, LOCO_METHOD_ASYNC_SGD);
    st.staleness = LOCO_STALE_POLYTHRES;
    st.stale_max = 0;
    make(&w, &st, LOCO_LEVEL_NO);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f); /* fresh: applied with weight 1 */
    float after_first = w.gb.theta[0];
    arrive(&w, 1, 1.0f); /* staleness 1 > 0: dropped */
    cr_assert_eq(w.gb.theta[0], after_first, "a dropped arrival changed theta");
    cr_assert_eq(w.s.rejected[LOCO_ARRIVAL_STALE], 1);
    cr_assert_eq(w.s.updates, 1);
    destroy(&w);
}

Test(protocol, poly_weights_stale_arrivals) {
    world w;
    loco_protocol_settings st = settings(2, LOCO_METHOD_ASYNC_SGD);
    st.staleness = LOCO_STALE_POLY;
    st.hp.lr = 1;
    make(&w, &st, LOCO_LEVEL_NO);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f);
    float before = w.gb.theta[0];
    arrive(&w, 1, 1.0f); /* staleness 1: weight 1/sqrt(2) */
    cr_assert_float_eq(before - w.gb.theta[0], 1.0f / sqrtf(2.0f), 1e-6);
    destroy(&w);
}

Test(protocol, the_budget_of_local_steps_is_handed_out_exactly) {
    world w;
    loco_protocol_settings st = settings(1, LOCO_METHOD_ASYNC_SGD);
    st.H = 10;
    st.budget = 25;
    make(&w, &st, LOCO_LEVEL_NO);
    cr_assert_eq(start(&w, 0), 10);
    cr_assert_eq(arrive(&w, 0, 0.0f), 10);
    cr_assert_eq(arrive(&w, 0, 0.0f), 5, "the last round gets what is left");
    cr_assert_eq(arrive(&w, 0, 0.0f), 0, "then the worker is done");
    cr_assert_eq(w.s.local_steps, 25);
    cr_assert_eq(w.s.active, 0);
    destroy(&w);
}

Test(protocol, dylu_gives_slower_workers_proportionally_fewer_steps) {
    world w;
    loco_protocol_settings st = settings(4, LOCO_METHOD_ASYNC_DN);
    st.dylu = 1;
    make(&w, &st, LOCO_LEVEL_VERY);
    long want[4] = {50, 38, 19, 8}; /* floor(50 / 1, 1.29, 2.6, 5.74) */
    for (int i = 0; i < 4; i++) cr_assert_eq(start(&w, i), want[i], "worker %d", i);
    /* virtual ends: 50 x 1, 38 x 1.29, 19 x 2.6, 8 x 5.74 steps of 1 s */
    cr_assert_float_eq(w.clock.at[1], 38 * 1.29, 1e-9);
    cr_assert_float_eq(w.clock.at[3], 8 * 5.74, 1e-9);
    /* the earliest (worker 3 at 45.92 s) commits first */
    cr_assert_eq(arrive(&w, 3, 0.0f), 8);
    cr_assert_float_eq(w.clock.now, 8 * 5.74, 1e-9);
    loco_protocol_stop_early(&w.s);
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

/* ---- regressions ---- */

typedef struct {
    world *w;
    int i;
    float value;
    long h;
} arrival_job;

static void *arrive_main(void *arg) {
    arrival_job *j = arg;
    j->h = arrive(j->w, j->i, j->value);
    return NULL;
}

/* worker i arrives on another thread; fails the test if that does not return within
 * seconds (a protocol that waits forever would otherwise hang the suite) */
static long arrive_within(world *w, int i, float value, double seconds) {
    arrival_job j = {w, i, value, -1};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, arrive_main, &j), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)seconds;
    int rc = pthread_timedjoin_np(t, NULL, &deadline);
    cr_assert_eq(rc, 0, "worker %d's arrival did not return within %g s", i, seconds);
    return j.h;
}

/* sync, two workers, a budget of one round: worker 1 gets no steps at begin (retired),
 * then its thread fails to set up and abandons. It must not be counted out twice, or
 * worker 0 waits forever for a sync round that counts zero running workers. */
Test(protocol, a_worker_retired_at_begin_then_abandoned_does_not_hang_a_sync_round) {
    world w;
    loco_protocol_settings st = settings(2, LOCO_METHOD_SYNC);
    st.H = 10;
    st.budget = 10;
    make(&w, &st, LOCO_LEVEL_NO);
    cr_assert_eq(start(&w, 0), 10);
    cr_assert_eq(loco_protocol_begin(&w.s, w.r[1]), 0, "no steps left for worker 1");
    loco_protocol_abandon(&w.s, w.r[1]); /* instead of its first pull */
    cr_assert_eq(w.s.active, 1, "worker 1 counted out once");
    cr_assert_eq(arrive_within(&w, 0, 0.5f, 10), 0, "the round closes and worker 0 is done");
    cr_assert_eq(w.s.updates, 1);
    cr_assert_neq(w.gb.theta[3], w.init[3], "the round's step was applied");
    destroy(&w);
}

/* Delay compensation runs after the finiteness check: a finite but huge delta whose
 * compensation overflows must still leave theta, m and a finite. */
Test(protocol, delay_compensation_cannot_poison_the_global_buffer) {
    world w;
    loco_protocol_settings st = settings(2, LOCO_METHOD_ASYNC);
    st.lambda = 1.0f;
    st.clock = LOCO_CLOCK_REAL;
    make(&w, &st, LOCO_LEVEL_NO);
    start(&w, 0);
    start(&w, 1);
    arrive(&w, 0, 1.0f);          /* theta moves, so worker 1's theta_now - theta_start != 0 */
    int rejected;
    arrive_r(&w, 1, 1e20f, &rejected); /* g^2 (theta_now - theta_start) overflows */
    cr_assert(!rejected, "a finite delta is applied");
    loco_protocol_finish(&w.s);     /* the sweeps are done */
    cr_assert(loco_all_finite(w.gb.theta, N) && loco_all_finite(w.gb.m, N) &&
              loco_all_finite(w.gb.a, N), "the global buffer stays finite");
    destroy(&w);
}

/* ---- evaluation snapshots never stall arrivals under the protocol's lock ---- */

typedef struct {
    loco_model m;
    loco_data d;
    loco_eval_thread et;
    loco_snapshot *held[LOCO_SNAPSHOTS];
} evaluator_fixture;

/* an evaluator thread over a tiny model, with every snapshot slot taken by the test */
static void evaluator_busy(evaluator_fixture *f) {
    loco_err e;
    loco_shape sh = {.V = 256, .Vp = 256, .maxT = 8, .L = 1, .NH = 2, .C = 16};
    cr_assert_eq(loco_model_init(&f->m, &sh, &e), 0);
    cr_assert_eq(loco_data_open(&f->d, "data/corpus.txt", LOCO_FORMAT_TEXT, 256, 4096, 10, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(loco_eval_thread_start(&f->et, &f->m, &f->d, 2, 8, 1, NULL, NULL, NULL, NULL, &e),
                 0, "%s", e.msg);
    for (int i = 0; i < LOCO_SNAPSHOTS; i++) {
        f->held[i] = loco_eval_thread_try_reserve(&f->et);
        cr_assert_not_null(f->held[i]);
    }
    cr_assert_null(loco_eval_thread_try_reserve(&f->et), "all slots taken");
}

static void evaluator_done(evaluator_fixture *f) {
    for (int i = 0; i < LOCO_SNAPSHOTS; i++)
        if (f->held[i]) loco_eval_thread_ready(&f->et, f->held[i]);
    loco_eval_thread_stop(&f->et);
    loco_data_close(&f->d);
}

/* Real clock: when the evaluator has fallen behind, the arrival goes on at once and the
 * evaluation it was due is skipped and counted. */
Test(protocol, a_busy_evaluator_skips_an_evaluation_in_the_real_clock, .timeout = 60) {
    evaluator_fixture f;
    evaluator_busy(&f);
    world w;
    loco_protocol_settings st = settings(1, LOCO_METHOD_ASYNC_SGD);
    st.clock = LOCO_CLOCK_REAL;
    st.eval_every = 1;
    make_n(&w, &st, LOCO_LEVEL_NO, f.m.nparams, &f.et);
    start(&w, 0);
    arrive_within(&w, 0, 0.5f, 10);
    loco_protocol_stats ss;
    loco_protocol_read_stats(&w.s, &ss);
    cr_assert_eq(ss.updates, 1);
    cr_assert_eq(ss.evals_skipped, 1, "the due evaluation was skipped and counted");
    destroy(&w);
    evaluator_done(&f);
}

static void *free_a_slot_later(void *arg) {
    evaluator_fixture *f = arg;
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    loco_snapshot *s = f->held[0];
    f->held[0] = NULL;
    loco_eval_thread_ready(&f->et, s); /* evaluated, then free */
    return NULL;
}

/* Virtual clock: no evaluation is ever skipped (the run's events must not depend on
 * thread timing); the arrival waits for a free slot, with the protocol's lock released. */
Test(protocol, a_busy_evaluator_delays_but_never_skips_in_the_virtual_clock, .timeout = 60) {
    evaluator_fixture f;
    evaluator_busy(&f);
    world w;
    loco_protocol_settings st = settings(1, LOCO_METHOD_ASYNC_SGD);
    st.eval_every = 1;
    make_n(&w, &st, LOCO_LEVEL_NO, f.m.nparams, &f.et);
    start(&w, 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_a_slot_later, &f), 0);
    arrive_within(&w, 0, 0.5f, 10);
    pthread_join(t, NULL);
    loco_protocol_stats ss;
    loco_protocol_read_stats(&w.s, &ss);
    cr_assert_eq(ss.evals_skipped, 0, "nothing skipped");
    cr_assert_eq(f.et.next_seq, LOCO_SNAPSHOTS + 1, "the arrival's snapshot was taken");
    destroy(&w);
    evaluator_done(&f);
}

/* Staleness counts the changes of theta since the pull: an async-buffer add leaves theta
 * alone, so the arrival after it is not stale by it; the apply moves theta. */
Test(protocol, staleness_counts_changes_of_theta_not_arrivals) {
    world w;
    loco_protocol_settings st = settings(3, LOCO_METHOD_ASYNC_BUFFER);
    st.N = 2;
    make(&w, &st, LOCO_LEVEL_NO);
    for (int i = 0; i < 3; i++) start(&w, i);
    arrive(&w, 0, 1.0f); /* t = 1: added into a, theta unchanged */
    arrive(&w, 1, 1.0f); /* t = 2: the buffer is applied: theta's first change */
    arrive(&w, 2, 1.0f); /* pulled before that change: staleness 1 */
    loco_protocol_stats ss;
    loco_protocol_read_stats(&w.s, &ss);
    cr_assert_eq(ss.stale_hist[0], 2, "workers 0 and 1 saw theta as they pulled it (%ld)",
                 ss.stale_hist[0]);
    cr_assert_eq(ss.stale_hist[1], 1, "worker 2 is one change behind (%ld)", ss.stale_hist[1]);
    destroy(&w);
}

typedef struct {
    world *w;
    int i;
} sync_worker;

/* a worker thread of a windowed run: rounds of zero deltas until no steps are left */
static void *sync_worker_main(void *arg) {
    sync_worker *sw = arg;
    loco_round *r = sw->w->r[sw->i];
    long h = r->h;
    while (h > 0) {
        memset(r->delta, 0, sw->w->n * sizeof(float));
        loco_round_report rep = {.finite = 1, .steps = h};
        loco_arrival_cost cost;
        h = loco_protocol_arrive(&sw->w->s, r, &rep, &cost);
    }
    return NULL;
}

/* A sync round with a deadline whose close retires its last member (the budget runs out
 * there): the retiring worker's event must stay on the clock until the others' next
 * events are, or the opener, waiting for its deadline's turn, can take that turn first
 * and virtual time runs past the close (a broken invariant in loco_clock_schedule).
 * A race: many runs of it, on threads. */
Test(protocol, a_close_that_retires_its_last_member_keeps_virtual_time_in_order, .timeout = 120) {
    for (int run = 0; run < 400; run++) {
        world w;
        loco_protocol_settings st = settings(3, LOCO_METHOD_SYNC);
        st.H = 10;
        st.budget = 3 * 10 * 3 + 2 * 10; /* the close at 30 hands out 10, 10, 0 */
        st.sync_timeout_s = 40;
        make_n(&w, &st, LOCO_LEVEL_NO, 16, NULL);
        for (int i = 0; i < 3; i++) start(&w, i);
        pthread_t t[3];
        sync_worker sw[3];
        for (int i = 0; i < 3; i++) {
            sw[i] = (sync_worker){&w, i};
            cr_assert_eq(pthread_create(&t[i], NULL, sync_worker_main, &sw[i]), 0);
        }
        for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
        cr_assert_eq(w.s.local_steps, st.budget, "run %d", run);
        cr_assert_eq(loco_clock_time(&w.clock), 40.0, "run %d: the run ends at the last arrival", run);
        destroy(&w);
    }
}
