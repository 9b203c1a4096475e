#include "loco/worker.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "loco/cpu.h"
#include "loco/outer.h"

/* bf16: one forward and backward on a batch of zeros, so that every oneDNN primitive and
 * every bf16 buffer of the step is made now, at start-up, and never in a step. Nothing
 * it computes is kept (the first step zeroes the gradients) and the data stream has not
 * moved. */
static void warm_up(loco_worker *w) {
    if (loco_mm_precision(w->acts.mm) != LOCO_PREC_BF16) return;
    size_t tokens = (size_t)w->B * w->T;
    memset(w->inputs, 0, tokens * sizeof(int));
    memset(w->targets, 0, tokens * sizeof(int));
    loco_mm_mirror(w->acts.mm, w->params, w->m->nparams);
    loco_model_forward(w->m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    loco_model_backward(w->m, w->params, w->grads, &w->acts, w->inputs, w->targets, w->B, w->T);
    memset(w->grads, 0, w->m->nparams * sizeof(float));
}

int loco_worker_init(loco_worker *w, int id, const loco_model *m, const loco_data *d,
                     const loco_worker_opts *o, const float *init, loco_err *e) {
    memset(w, 0, sizeof *w);
    w->id = id;
    w->m = m;
    w->B = o->B;
    w->T = o->T;
    w->hp = o->hp;
    w->lr_pos = -1;
    loco_stream_init(&w->stream, d, o->seed, o->first_stream + (uint64_t)id);
    size_t bytes = m->nparams * sizeof(float), batch = sizeof(int) * (size_t)w->B * w->T;
    char who[32];
    snprintf(who, sizeof who, "worker %d", id);
    loco_err ae;
    if (!(w->params = loco_alloc_for(bytes, who, "its parameters", e)) ||
        !(w->grads = loco_alloc_for(bytes, who, "its gradients", e)) ||
        !(w->adam_m = loco_alloc_for(bytes, who, "its AdamW first moment m", e)) ||
        !(w->adam_v = loco_alloc_for(bytes, who, "its AdamW second moment v", e)) ||
        !(w->inputs = loco_alloc_for(batch, who, "its batch's inputs", e)) ||
        !(w->targets = loco_alloc_for(batch, who, "its batch's targets", e)) ||
        (loco_acts_alloc(&w->acts, m, w->B, w->T, &ae) != 0 &&
         loco_errf(e, "%s: %s", who, ae.msg)) ||
        (loco_mm_init(&w->acts.mm, o->precision, &ae) != 0 &&
         loco_errf(e, "%s: %s", who, ae.msg))) {
        loco_worker_free(w);
        return -1;
    }
    memcpy(w->params, init, bytes);
    warm_up(w);
    return 0;
}

void loco_worker_free(loco_worker *w) {
    free(w->params);
    free(w->grads);
    free(w->adam_m);
    free(w->adam_v);
    free(w->inputs);
    free(w->targets);
    loco_mm_free(w->acts.mm);
    loco_acts_free(&w->acts);
    memset(w, 0, sizeof *w);
}

static void apply_adamw(loco_worker *w, float lr, float gscale) {
    const loco_model *m = w->m;
    for (int i = 0; i < LOCO_NTENSORS; i++) {
        const loco_tensor *t = &m->t[i];
        float wd = t->decay ? (float)w->hp.weight_decay : 0.0f;
        loco_adamw_update(w->params + t->offset, w->grads + t->offset, w->adam_m + t->offset,
                          w->adam_v + t->offset, t->count, w->steps, lr, wd, gscale, &w->hp);
    }
}

float loco_worker_grad(loco_worker *w, int accumulate) {
    const loco_model *m = w->m;
    loco_stream_next(&w->stream, w->B, w->T, w->inputs, w->targets);
    if (!accumulate) memset(w->grads, 0, m->nparams * sizeof(float));
    /* bf16: the weights' copy is refreshed before every forward, so nothing that changes
     * the parameters (AdamW, a pull, a resume) can leave it stale; fp32: nothing */
    loco_mm_mirror(w->acts.mm, w->params, m->nparams);
    w->loss = loco_model_forward(m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    loco_model_backward(m, w->params, w->grads, &w->acts, w->inputs, w->targets, w->B, w->T);
    return w->loss;
}

void loco_worker_update(loco_worker *w, float scale) {
    w->grad_norm = sqrt(loco_sumsq(w->grads, w->m->nparams)) * scale;
    float lr = (float)loco_adamw_lr_at(&w->hp, w->lr_pos >= 0 ? w->lr_pos : (double)w->steps);
    w->steps++;
    w->lr = lr;
    apply_adamw(w, lr, scale * loco_clip_scale(&w->hp, w->grad_norm));
}

float loco_worker_step(loco_worker *w) {
    float loss = loco_worker_grad(w, 0);
    loco_worker_update(w, 1.0f);
    return loss;
}

void loco_worker_reset_optimizer(loco_worker *w) {
    memset(w->adam_m, 0, w->m->nparams * sizeof(float));
    memset(w->adam_v, 0, w->m->nparams * sizeof(float));
}

/* the replica's scalars after its three arrays (params, m, v), in the checkpoint's order */
#define REPLICA(f, kind, lo, hi) {offsetof(loco_worker, f), LOCO_FIELD_##kind, lo, hi}
static const loco_field replica_fields[] = {
    REPLICA(steps, LONG, 0, LOCO_BIG),
    REPLICA(stream.rng.s, U64, 0, 0),
    REPLICA(loss, F32, 0, 0),
    REPLICA(grad_norm, F64, 0, 0),
    REPLICA(lr, F64, 0, 0),
};
enum { NREPLICA_FIELDS = sizeof replica_fields / sizeof replica_fields[0], REPLICA_ARRAYS = 3 };

void loco_worker_save(const loco_worker *w, loco_pack *p) {
    size_t n = w->m->nparams;
    loco_pack_floats(p, w->params, n);
    loco_pack_floats(p, w->adam_m, n);
    loco_pack_floats(p, w->adam_v, n);
    loco_pack_fields(p, w, replica_fields, NREPLICA_FIELDS);
}

int loco_worker_load(loco_worker *w, loco_unpack *u) {
    size_t n = w->m->nparams;
    loco_unpack_floats(u, w->params, n);
    loco_unpack_floats(u, w->adam_m, n);
    loco_unpack_floats(u, w->adam_v, n);
    loco_unpack_fields(u, w, replica_fields, NREPLICA_FIELDS, 0);
    return u->bad ? -1 : 0;
}

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
    double fail_at = real ? loco_server_fail_time(t->server, t->r) : INFINITY;
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
        rep->diverged = !isfinite(loco_worker_step(&t->w));
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
    if (loco_worker_init(&t->w, r->id, t->m, t->d, &t->opts, t->init, &t->err) != 0) return -1;
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
        loco_worker_reset_optimizer(&t->w);
}

/* the round computed last arrives; returns the next round's steps */
static long arrive(loco_worker_thread *t) {
    loco_arrival_cost cost;
    atomic_store(&t->stats.activity, LOCO_ACT_SYNC);
    long h = loco_server_arrive(t->server, t->r, &t->last, &cost);
    count(t, &cost);
    after_rejection(t, cost.status);
    return h;
}

/* away until it is back (its next round's steps), or 0 when it is gone for good */
static long back(loco_worker_thread *t) {
    loco_arrival_cost cost;
    atomic_store(&t->stats.activity, LOCO_ACT_AWAY);
    long h = loco_server_back(t->server, t->r, &cost);
    t->stats.idle_s += cost.window_s;
    t->stats.lockwait_s += cost.stripe_s;
    return h;
}

/* the worker fails: its round is lost, and it comes back (or not) */
static long fail_and_back(loco_worker_thread *t) {
    atomic_store(&t->stats.activity, LOCO_ACT_AWAY);
    if (!loco_server_fail(t->server, t->r)) return 0;
    return back(t);
}

/* the first round's steps: a new run pulls theta; a resumed one goes on from where the
 * checkpoint found it */
static long first_round(loco_worker_thread *t) {
    loco_round *r = t->r;
    if (t->phase < 0) {
        t->stats.lockwait_s += loco_server_pull(t->server, r);
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
    long h = loco_server_rejoin(t->server, r, t->phase == LOCO_PHASE_OPENER, t->window_end, &cost);
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
        loco_server_abandon(t->server, r);
        atomic_store(&t->stats.activity, LOCO_ACT_DONE);
        return NULL;
    }
    atomic_store(&t->stats.activity, LOCO_ACT_SYNC);
    long h = first_round(t);
    while (h > 0) {
        int virtual_ = t->clock_kind == LOCO_CLOCK_VIRTUAL;
        if (virtual_ && loco_server_lost(t->server, r)) {
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
    return (REPLICA_ARRAYS + 1) * nparams * sizeof(float) +
           (NREPLICA_FIELDS + NTHREAD_FIELDS) * LOCO_FIELD_BYTES;
}

void loco_worker_thread_save(const loco_worker_thread *t, loco_pack *p) {
    uint64_t before = p->bytes;
    loco_worker_save(&t->w, p);
    loco_pack_floats(p, t->r->theta0, t->m->nparams);
    loco_pack_fields(p, t, thread_fields, NTHREAD_FIELDS);
    LOCO_CHECK(p->bytes - before == loco_worker_thread_state_bytes(t->m->nparams),
               "worker %d packed %llu bytes", t->r->id, (unsigned long long)(p->bytes - before));
}

/* on the thread, after its buffers are made (so they stay on its NUMA node) */
static int load_thread(loco_worker_thread *t) {
    loco_unpack *u = &t->resume;
    if (loco_worker_load(&t->w, u) != 0) goto bad;
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
        loco_server_abandon(t->server, t->r);
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
    loco_worker_free(&t->w);
    return t->failed ? -1 : 0;
}
