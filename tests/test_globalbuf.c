/* The global buffer under concurrency: threads push, pull and hand sweeps to a sweeper
 * thread all at once; the result must equal applying the operations one by one in ticket
 * order, every pull must see exactly the operations before it, and no push may be lost.
 * Run under ThreadSanitizer by `make sanitize`. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "loco/config.h"
#include "loco/globalbuf.h"

enum { N = 3000, THREADS = 5, OPS = 40, TOTAL = THREADS * OPS };
enum { PULL, ADD, SWEEP };

/* What ticket t did: kind and its coefficients. Order matters: theta = theta * mul + add
 * does not commute, so any reordering on any stripe changes the result. */
typedef struct {
    int kind;
    float mul, add;
} op;

typedef struct {
    loco_globalbuf gb;
    op log[TOTAL + 1];
    float *pulled[TOTAL + 1];          /* what each pull saw */
    pthread_mutex_t entry;             /* tickets and the log move together */
    /* the sweeper's queue: tickets handed over, in ticket order */
    uint64_t queue[TOTAL + 1];
    int queued, swept, closing;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
} world;

static void apply_op(const op *o, float *theta, float *a, size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; i++) {
        theta[i] = theta[i] * o->mul + o->add * (float)(i % 7 + 1);
        a[i] += 1.0f; /* counts the pushes each element saw */
    }
}

static void stripe_op(void *ctx, loco_globalbuf *gb, int s, size_t lo, size_t hi) {
    (void)s;
    apply_op(ctx, gb->theta, gb->a, lo, hi);
}

static void *sweeper(void *arg) {
    world *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->qmu);
        while (w->swept == w->queued && !w->closing) pthread_cond_wait(&w->qcv, &w->qmu);
        if (w->swept == w->queued) {
            pthread_mutex_unlock(&w->qmu);
            return NULL;
        }
        uint64_t t = w->queue[w->swept];
        pthread_mutex_unlock(&w->qmu);
        loco_globalbuf_walk(&w->gb, t, stripe_op, &w->log[t]);
        pthread_mutex_lock(&w->qmu);
        w->swept++;
        pthread_mutex_unlock(&w->qmu);
    }
}

typedef struct {
    world *w;
    int id;
} pusher;

/* each thread: a mix of its own adds and pulls, and sweeps handed to the sweeper
 * followed by a pull behind them (as a worker that triggered a sweep does) */
static void *push_thread(void *arg) {
    pusher *p = arg;
    world *w = p->w;
    loco_rng r;
    loco_rng_seed(&r, 77, (uint64_t)p->id);
    for (int k = 0; k < OPS; k++) {
        int kind = (int)loco_rng_below(&r, 3);
        op o = {kind, 0.5f + 0.5f * loco_rng_uniform(&r), loco_rng_uniform(&r) - 0.5f};
        pthread_mutex_lock(&w->entry);
        uint64_t t = loco_globalbuf_tickets(&w->gb, 1);
        w->log[t] = o;
        if (kind == SWEEP) {
            pthread_mutex_lock(&w->qmu);
            w->queue[w->queued++] = t;
            pthread_cond_signal(&w->qcv);
            pthread_mutex_unlock(&w->qmu);
        }
        pthread_mutex_unlock(&w->entry);
        if (kind == ADD) loco_globalbuf_walk(&w->gb, t, stripe_op, &w->log[t]);
        if (kind == PULL) loco_globalbuf_pull(&w->gb, t, w->pulled[t]);
    }
    return NULL;
}

static void run_world(int lock) {
    static world w;
    memset(&w, 0, sizeof w);
    float *init = malloc(N * sizeof(float)), *ref = malloc(N * sizeof(float));
    float *ref_a = calloc(N, sizeof(float));
    for (int i = 0; i < N; i++) init[i] = ref[i] = (float)(i % 13) * 0.25f;
    loco_err e;
    cr_assert_eq(loco_globalbuf_init(&w.gb, init, N, 1, lock, NULL, &e), 0, "%s", e.msg);
    cr_assert_gt(w.gb.nstripes, 10, "many stripes: %d", w.gb.nstripes);
    for (int t = 0; t < TOTAL; t++) w.pulled[t] = malloc(N * sizeof(float));
    pthread_mutex_init(&w.entry, NULL);
    pthread_mutex_init(&w.qmu, NULL);
    pthread_cond_init(&w.qcv, NULL);
    pthread_t sw, th[THREADS];
    pusher ps[THREADS];
    pthread_create(&sw, NULL, sweeper, &w);
    for (int i = 0; i < THREADS; i++) {
        ps[i] = (pusher){&w, i};
        pthread_create(&th[i], NULL, push_thread, &ps[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    pthread_mutex_lock(&w.qmu);
    w.closing = 1;
    pthread_cond_signal(&w.qcv);
    pthread_mutex_unlock(&w.qmu);
    pthread_join(sw, NULL);

    /* the same operations one by one in ticket order */
    int pushes = 0;
    for (int t = 0; t < TOTAL; t++) {
        if (w.log[t].kind == PULL) {
            cr_assert_eq(memcmp(w.pulled[t], ref, N * sizeof(float)), 0,
                         "pull %d did not see exactly the operations before it", t);
        } else {
            apply_op(&w.log[t], ref, ref_a, 0, N);
            pushes++;
        }
    }
    cr_assert_eq(memcmp(w.gb.theta, ref, N * sizeof(float)), 0,
                 "theta differs from the ticket-ordered application");
    for (int i = 0; i < N; i++)
        cr_assert_eq(w.gb.a[i], (float)pushes, "element %d saw %g of %d pushes", i,
                     (double)w.gb.a[i], pushes);
    cr_assert_eq(atomic_load(&w.gb.next), (unsigned long)TOTAL, "every ticket taken once");
    for (int t = 0; t < TOTAL; t++) free(w.pulled[t]);
    loco_globalbuf_free(&w.gb);
    free(init), free(ref), free(ref_a);
}

Test(globalbuf, concurrent_ops_equal_ticket_order_with_ticket_lock, .timeout = 120) {
    run_world(LOCO_LOCK_TICKET);
}

Test(globalbuf, concurrent_ops_equal_ticket_order_with_mutex, .timeout = 120) {
    run_world(LOCO_LOCK_MUTEX);
}

Test(globalbuf, concurrent_ops_equal_ticket_order_with_spinlock, .timeout = 120) {
    run_world(LOCO_LOCK_SPIN);
}

Test(globalbuf, stripes_cover_the_array_and_contention_is_counted) {
    loco_globalbuf gb;
    loco_err e;
    float init[1000];
    for (int i = 0; i < 1000; i++) init[i] = (float)i;
    cr_assert_eq(loco_globalbuf_init(&gb, init, 1000, 1, LOCO_LOCK_TICKET, NULL, &e), 0);
    cr_assert_eq(gb.stripe_len, 256, "1 KiB stripes of floats");
    cr_assert_eq(gb.nstripes, 4, "1000 floats in 4 stripes");
    float out[1000];
    uint64_t t = loco_globalbuf_tickets(&gb, 2);
    loco_globalbuf_pull(&gb, t, out);
    cr_assert_eq(memcmp(out, init, sizeof out), 0, "a pull copies theta");
    loco_globalbuf_walk(&gb, t + 1, NULL, NULL);
    for (int i = 0; i < 1000; i++) cr_assert_eq(gb.m[i], 0.0f, "m starts at 0");
    unsigned long waits;
    double wait_s;
    loco_globalbuf_contention(&gb, &waits, &wait_s);
    cr_assert_eq(waits, 0, "a lone thread never waits");
    loco_globalbuf_free(&gb);
}
