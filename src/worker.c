#include "loco/worker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/outer.h"

int loco_worker_init(loco_worker *w, int id, const loco_model *m, const loco_data *d,
                     const loco_worker_opts *o, const float *init, loco_err *e) {
    memset(w, 0, sizeof *w);
    w->id = id;
    w->m = m;
    w->B = o->B;
    w->T = o->T;
    w->hp = o->hp;
    loco_stream_init(&w->stream, d, o->seed, (uint64_t)id);
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
         loco_errf(e, "%s: %s", who, ae.msg))) {
        loco_worker_free(w);
        return -1;
    }
    memcpy(w->params, init, bytes);
    return 0;
}

void loco_worker_free(loco_worker *w) {
    free(w->params);
    free(w->grads);
    free(w->adam_m);
    free(w->adam_v);
    free(w->inputs);
    free(w->targets);
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
    w->loss = loco_model_forward(m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    loco_model_backward(m, w->params, w->grads, &w->acts, w->inputs, w->targets, w->B, w->T);
    return w->loss;
}

void loco_worker_update(loco_worker *w, float scale) {
    w->grad_norm = sqrt(loco_sumsq(w->grads, w->m->nparams)) * scale;
    float lr = (float)loco_adamw_lr(&w->hp, w->steps);
    w->steps++;
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

/* ------------------------------------------------------- the worker thread */

/* h inner steps; in the real clock each step of t seconds owes a wait of
 * (slowdown x jitter - 1) t, the emulated slower hardware, paid right after it. Fills the
 * round's report but for finite; its slowdown_s is the time the waits really took. */
static void run_round(loco_worker_thread *t, long h, loco_round_report *rep) {
    loco_worker_stats *st = &t->stats;
    int real = t->clock_kind == LOCO_CLOCK_REAL;
    while (t->seats && sem_wait(t->seats) != 0) {
    }
    double start = loco_now(), slow = 0;
    for (long j = 0; j < h; j++) {
        atomic_store(&st->activity, LOCO_ACT_COMPUTE);
        double t0 = loco_now();
        loco_worker_step(&t->w);
        double dt = loco_now() - t0;
        st->compute_s += dt;
        atomic_fetch_add(&st->steps, 1);
        if (!real) continue;
        double f = loco_hetero_slowdown_at(t->het, t->r->id, loco_clock_wall(t->clock)) *
                   loco_hetero_jitter(t->het, &t->jitter);
        if (f > 1) t->owed_s += (f - 1) * dt;
        if (t->owed_s > 0) {
            atomic_store(&st->activity, LOCO_ACT_SLOW);
            slow += loco_clock_pay(&t->owed_s, t->slowdown_mode == LOCO_SLOW_SPIN);
        }
    }
    if (t->seats) sem_post(t->seats);
    st->slowdown_s += slow;
    rep->step_s = (loco_now() - start) / (double)h;
    rep->slowdown_s = slow;
}

/* g = theta_start - theta_local; returns whether it is finite */
static int make_delta(loco_round *r, size_t n) {
    for (size_t i = 0; i < n; i++) r->delta[i] = r->theta0[i] - r->params[i];
    return loco_all_finite(r->delta, n);
}

static int setup_thread(loco_worker_thread *t) {
    loco_round *r = t->r;
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

static void *worker_main(void *arg) {
    loco_worker_thread *t = arg;
    loco_worker_stats *st = &t->stats;
    loco_round *r = t->r;
    if (setup_thread(t) != 0) {
        t->failed = 1;
        loco_server_abandon(t->server, r);
        atomic_store(&st->activity, LOCO_ACT_DONE);
        return NULL;
    }
    atomic_store(&st->activity, LOCO_ACT_SYNC);
    st->lockwait_s += loco_server_pull(t->server, r);
    long h = r->h;
    while (h > 0) {
        loco_round_report rep;
        run_round(t, h, &rep);
        rep.finite = make_delta(r, t->m->nparams);
        atomic_store(&st->activity, LOCO_ACT_SYNC);
        loco_arrival_cost cost;
        h = loco_server_arrive(t->server, r, &rep, &cost);
        st->rounds++;
        st->rejected += cost.rejected;
        st->lockwait_s += cost.stripe_s;
        st->idle_s += cost.turn_s + cost.window_s;
        if (!rep.finite) loco_worker_reset_optimizer(&t->w);
    }
    atomic_store(&st->activity, LOCO_ACT_DONE);
    return NULL;
}

int loco_worker_thread_start(loco_worker_thread *t, loco_err *e) {
    t->failed = 0;
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
