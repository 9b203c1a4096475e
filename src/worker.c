#include "loco/worker.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "loco/cpu.h"
#include "loco/outer.h"

/* ------------------------------------------------------- the worker thread */

/* Whether worker id is to be injected with a fault in round R. */
static int injected(const loco_injection *list, int n, int id, long R) {
    for (int i = 0; i < n; i++)
        if (list[i].worker == id && list[i].round == R) return 1;
    return 0;
}

/* h inner steps; in the real clock each step of t seconds owes a wait of
 * (slowdown x jitter - 1) t, the emulated slower hardware, paid right after it (its
 * slowdown_s is the time the waits really took). Fills the round's report but for finite
 * and norm. A loss that goes NaN or Inf abandons the round (rep->diverged).
 * Returns 0 when a real-clock failure cut the round (its report is then of no use). */
static int run_round(loco_worker_thread *t, long h, loco_round_report *rep) {
    loco_worker_stats *st = &t->stats;
    int real = t->clock_kind == LOCO_CLOCK_REAL;
    double fail_at = real ? loco_protocol_fail_time(t->protocol, t->r) : INFINITY;
    loco_adamw_hp hp = t->w.hp;
    if (injected(t->inject_diverge, t->ninject_diverge, t->r->id, st->rounds + 1)) {
        t->w.hp.lr *= 1e30; /* any real divergence, only sooner */
        t->w.hp.lr_min *= 1e30;
    }
    while (t->seats && sem_wait(t->seats) != 0) {
    }
    double start = loco_now(), slow = 0;
    int cut = 0;
    long j = 0;
    rep->diverged = 0;
    for (; j < h && !rep->diverged && !(cut = loco_clock_wall(t->clock) >= fail_at); j++) {
        atomic_store(&st->activity, LOCO_ACT_COMPUTE);
        double t0 = loco_now();
        if (t->opts.lr_progress == LOCO_LR_RUN)
            t->w.lr_pos = loco_adamw_run_position(t->r->lr_committed, t->r->lr_live, j,
                                                  t->opts.hp.steps, t->opts.budget);
        rep->diverged = !isfinite(loco_replica_step(&t->w));
        double dt = loco_now() - t0;
        st->compute_s += dt;
        atomic_fetch_add(&st->steps, 1);
        if (!real) continue;
        t->owed_s += loco_hetero_step_owed(t->het, t->r->id, loco_clock_wall(t->clock), dt, &t->jitter);
        if (t->owed_s > 0) {
            atomic_store(&st->activity, LOCO_ACT_SLOW);
            slow += loco_clock_pay(&t->owed_s, t->slowdown_mode == LOCO_SLOW_SPIN);
        }
    }
    if (t->seats) sem_post(t->seats);
    t->w.hp = hp;
    st->slowdown_s += slow;
    rep->steps = j;
    rep->step_s = j > 0 ? (loco_now() - start) / (double)j : 0;
    rep->slowdown_s = slow;
    rep->lr = t->w.lr;
    return !cut;
}

/* delta = theta_start - theta_local, and what the server judges it by */
static void make_delta(loco_worker_thread *t, loco_round_report *rep) {
    loco_round *r = t->r;
    size_t n = t->m->nparams;
    for (size_t i = 0; i < n; i++) r->delta[i] = r->theta0[i] - r->params[i];
    if (injected(t->inject_nan, t->ninject_nan, r->id, t->stats.rounds + 1)) r->delta[n / 2] = NAN;
    rep->finite = loco_all_sane(r->delta, n);
    rep->norm = rep->finite ? sqrt(loco_sumsq(r->delta, n)) : INFINITY;
}

static int setup_thread(loco_worker_thread *t) {
    loco_round *r = t->r;
    loco_fp_flush_denormals();
    t->stats.ftz_daz = loco_fp_flushing();
    if (loco_topo_bind(t->topo, t->place, &t->err) != 0) return -1;
    if (loco_replica_init(&t->w, r->id, t->m, t->d, &t->opts, t->init, &t->err) != 0) return -1;
    size_t bytes = t->m->nparams * sizeof(float);
    r->params = t->w.params;
    char who[32];
    snprintf(who, sizeof who, "worker %d", r->id);
    r->theta0 = loco_alloc_for(bytes, who, "its theta_start", &t->err);
    r->delta = r->theta0 ? loco_alloc_for(bytes, who, "its delta", &t->err) : NULL;
    return r->delta ? 0 : -1;
}

/* counts what an arrival cost */
static void count(loco_worker_thread *t, const loco_arrival_cost *cost) {
    loco_worker_stats *st = &t->stats;
    st->rounds++;
    st->rejected += cost->rejected;
    st->lockwait_s += cost->stripe_s;
    st->idle_s += cost->turn_s + cost->window_s;
}

/* A rejected delta, or a diverged round, leaves the replica's AdamW moments suspect: they
 * start afresh from the theta it pulls. A stale one only came too late. */
static void after_rejection(loco_worker_thread *t, int status) {
    if (status == LOCO_ARRIVAL_NONFINITE || status == LOCO_ARRIVAL_NORM ||
        status == LOCO_ARRIVAL_DIVERGED)
        loco_replica_reset_optimizer(&t->w);
}

/* the round computed last arrives; returns the next round's steps */
static long arrive(loco_worker_thread *t) {
    loco_arrival_cost cost;
    atomic_store(&t->stats.activity, LOCO_ACT_SYNC);
    long h = loco_protocol_arrive(t->protocol, t->r, &t->last, &cost);
    count(t, &cost);
    after_rejection(t, cost.status);
    return h;
}

/* away until it is back (its next round's steps), or 0 when it is gone for good */
static long back(loco_worker_thread *t) {
    loco_arrival_cost cost;
    atomic_store(&t->stats.activity, LOCO_ACT_AWAY);
    long h = loco_protocol_back(t->protocol, t->r, &cost);
    t->stats.idle_s += cost.window_s;
    t->stats.lockwait_s += cost.stripe_s;
    return h;
}

/* the worker fails: its round is lost, and it comes back (or not) */
static long fail_and_back(loco_worker_thread *t) {
    atomic_store(&t->stats.activity, LOCO_ACT_AWAY);
    if (!loco_protocol_fail(t->protocol, t->r)) return 0;
    return back(t);
}

/* the first round's steps: a new run pulls theta; a resumed one goes on from where the
 * checkpoint found it */
static long first_round(loco_worker_thread *t) {
    loco_round *r = t->r;
    if (t->phase < 0) {
        t->stats.lockwait_s += loco_protocol_pull(t->protocol, r);
        return r->h;
    }
    switch (t->phase) {
    case LOCO_PHASE_DONE: return 0;
    case LOCO_PHASE_ARRIVE: return arrive(t);
    case LOCO_PHASE_FAIL: return fail_and_back(t);
    case LOCO_PHASE_AWAY: return back(t);
    }
    loco_arrival_cost cost;
    atomic_store(&t->stats.activity, LOCO_ACT_SYNC);
    long h = loco_protocol_rejoin(t->protocol, r, t->phase == LOCO_PHASE_OPENER, t->window_end, &cost);
    count(t, &cost);
    after_rejection(t, cost.status);
    return h;
}

static int load_thread(loco_worker_thread *t);

static void *worker_main(void *arg) {
    loco_worker_thread *t = arg;
    loco_round *r = t->r;
    if (setup_thread(t) != 0 || (t->phase >= 0 && load_thread(t) != 0)) {
        t->failed = 1;
        loco_protocol_abandon(t->protocol, r);
        atomic_store(&t->stats.activity, LOCO_ACT_DONE);
        return NULL;
    }
    atomic_store(&t->stats.activity, LOCO_ACT_SYNC);
    long h = first_round(t);
    while (h > 0) {
        int virtual_ = t->clock_kind == LOCO_CLOCK_VIRTUAL;
        if (virtual_ && loco_protocol_lost(t->protocol, r)) {
            h = fail_and_back(t); /* the virtual clock knew: the round is not computed */
        } else if (!run_round(t, h, &t->last)) {
            h = fail_and_back(t);
        } else {
            make_delta(t, &t->last);
            h = arrive(t);
        }
    }
    t->stats.last_lr = t->w.lr;
    atomic_store(&t->stats.activity, LOCO_ACT_DONE);
    return NULL;
}

/* ------------------------------------------------------------ checkpoints */

/* the thread's scalars after theta_start, in the checkpoint's order */
#define THREAD(f, kind, lo, hi) {offsetof(loco_worker_thread, f), LOCO_FIELD_##kind, lo, hi}
static const loco_field thread_fields[] = {
    THREAD(jitter.s, U64, 0, 0),
    THREAD(last.diverged, INT, 0, 1),
    THREAD(last.steps, LONG, 0, LOCO_BIG),
    THREAD(last.step_s, F64, 0, 0),
    THREAD(last.slowdown_s, F64, 0, 0),
    THREAD(stats.steps, ATOMIC_LONG, 0, LOCO_BIG),
    THREAD(stats.rounds, LONG, 0, LOCO_BIG),
    THREAD(stats.rejected, LONG, 0, LOCO_BIG),
    THREAD(stats.compute_s, F64, 0, 0),
    THREAD(stats.slowdown_s, F64, 0, 0),
    THREAD(stats.lockwait_s, F64, 0, 0),
    THREAD(stats.idle_s, F64, 0, 0),
};
enum { NTHREAD_FIELDS = sizeof thread_fields / sizeof thread_fields[0] };

size_t loco_worker_thread_state_bytes(size_t nparams) {
    return loco_replica_state_bytes(nparams) + nparams * sizeof(float) +
           NTHREAD_FIELDS * LOCO_FIELD_BYTES;
}

void loco_worker_thread_save(const loco_worker_thread *t, loco_pack *p) {
    uint64_t before = p->bytes;
    loco_replica_save(&t->w, p);
    loco_pack_floats(p, t->r->theta0, t->m->nparams);
    loco_pack_fields(p, t, thread_fields, NTHREAD_FIELDS);
    LOCO_CHECK(p->bytes - before == loco_worker_thread_state_bytes(t->m->nparams),
               "worker %d packed %llu bytes", t->r->id, (unsigned long long)(p->bytes - before));
}

/* on the thread, after its buffers are made (so they stay on its NUMA node) */
static int load_thread(loco_worker_thread *t) {
    loco_unpack *u = &t->resume;
    if (loco_replica_load(&t->w, u) != 0) goto bad;
    loco_unpack_floats(u, t->r->theta0, t->m->nparams);
    loco_unpack_fields(u, t, thread_fields, NTHREAD_FIELDS, 0);
    if (u->bad) goto bad;
    /* the delta of a round done but not arrived, as it was */
    t->last.lr = t->w.lr;
    if (t->phase == LOCO_PHASE_ARRIVE) make_delta(t, &t->last);
    return 0;
bad:
    return loco_errf(&t->err, "worker %d: its part of the checkpoint is short or mangled", t->r->id);
}

int loco_worker_thread_start(loco_worker_thread *t, loco_err *e) {
    t->failed = 0;
    if (t->phase < 0)
        loco_rng_seed(&t->jitter, t->opts.seed, loco_stream_id(LOCO_STREAM_JITTER, (uint64_t)t->r->id));
    if (pthread_create(&t->thread, NULL, worker_main, t) != 0) {
        loco_protocol_abandon(t->protocol, t->r);
        atomic_store(&t->stats.activity, LOCO_ACT_DONE);
        return loco_errf(e, "cannot start worker thread %d", t->r->id);
    }
    return 0;
}

int loco_worker_thread_join(loco_worker_thread *t) {
    pthread_join(t->thread, NULL);
    free(t->r->theta0);
    free(t->r->delta);
    t->r->params = t->r->theta0 = t->r->delta = NULL;
    loco_replica_free(&t->w);
    return t->failed ? -1 : 0;
}
