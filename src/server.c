#include "loco/server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The rule an operation applies to each stripe. The first group only adds into theta
 * and a, so the arriving worker applies it; the second moves the momentum, so the
 * server thread sweeps it. */
enum {
    RULE_NONE,
    RULE_SGD, RULE_DN_BETWEEN, RULE_BUFFER_ADD,
    RULE_NESTEROV, RULE_DN_ACTIVATE, RULE_BUFFER_APPLY, RULE_FLUSH,
};

static int is_sweep(int rule) {
    return rule >= RULE_NESTEROV;
}

/* ------------------------------------------------------ one stripe's work */

static void run_stripe(void *ctx, loco_globalbuf *gb, int s, size_t lo, size_t hi) {
    (void)s;
    const loco_stripe_job *j = ctx;
    size_t n = hi - lo;
    float *th = gb->theta + lo, *m = gb->m + lo, *a = gb->a + lo;
    float *g = j->g ? j->g + lo : NULL;
    if (g && j->lambda > 0) loco_outer_delay_comp(g, th, j->theta_start + lo, n, j->lambda);
    switch (j->rule) {
    case RULE_SGD: loco_outer_sgd(th, g, n, &j->hp); break;
    case RULE_DN_BETWEEN: loco_outer_dn_between(th, a, m, g, n, &j->hp); break;
    case RULE_BUFFER_ADD: loco_outer_buffer_add(a, g, n, &j->hp); break;
    case RULE_NESTEROV: loco_outer_nesterov(th, m, g, n, &j->hp); break;
    case RULE_DN_ACTIVATE: loco_outer_dn_activate(th, a, m, g, n, &j->hp); break;
    case RULE_BUFFER_APPLY: loco_outer_buffer_apply(th, a, m, g, n, &j->hp); break;
    case RULE_FLUSH: loco_outer_buffer_flush(th, a, m, n, &j->hp); break;
    default: break;
    }
    size_t bytes = n * sizeof(float);
    if (j->out0) memcpy(j->out0 + lo, th, bytes);
    if (j->out1) memcpy(j->out1 + lo, th, bytes);
    if (j->snap) memcpy(j->snap->params + lo, th, bytes);
}

/* Walks a job with its ticket; a snapshot in it is handed to the evaluator after. */
static double walk_job(loco_server *s, loco_stripe_job *j) {
    double waited = loco_globalbuf_walk(s->gb, j->ticket, run_stripe, j);
    if (j->snap) loco_eval_thread_ready(s->ev, j->snap);
    return waited;
}

/* ------------------------------------------------------ the sweep thread */

/* Queues a sweep; called under entry, so the queue is in ticket order. */
static void enqueue(loco_server *s, const loco_stripe_job *j) {
    pthread_mutex_lock(&s->qmu);
    s->queue[(s->qhead + s->qlen) % s->qcap] = *j;
    s->qlen++;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
}

static void *sweep_main(void *arg) {
    loco_server *s = arg;
    loco_topo_bind(s->topo, s->place, NULL);
    pthread_mutex_lock(&s->qmu);
    for (;;) {
        while (s->qlen == 0 && !s->closing) pthread_cond_wait(&s->qcv, &s->qmu);
        if (s->qlen == 0) break;
        loco_stripe_job j = s->queue[s->qhead];
        pthread_mutex_unlock(&s->qmu);
        double t0 = loco_now();
        walk_job(s, &j);
        pthread_mutex_lock(&s->qmu);
        s->busy_s += loco_now() - t0;
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
    pthread_mutex_unlock(&s->qmu);
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

static long steps_budget(const loco_config *c) {
    return c->outer.total_local_steps > 0 ? c->outer.total_local_steps
                                          : c->run.workers * c->train.steps;
}

int loco_server_init(loco_server *s, const loco_config *c, loco_globalbuf *gb, loco_clock *clock,
                     const loco_hetero *het, loco_eval_thread *ev, loco_round *rounds,
                     int batch_tokens, loco_err *e) {
    memset(s, 0, sizeof *s);
    long N = c->outer.dn_period > 0 ? c->outer.dn_period : c->run.workers;
    if (c->outer.method == LOCO_METHOD_ASYNC_DN && c->outer.dn_c * (double)N > 1.0 + 1e-9)
        return loco_errf(e, "outer.dn_c = %g must be at most 1/N = 1/%ld", c->outer.dn_c, N);
    s->method = c->outer.method;
    s->workers = (int)c->run.workers;
    s->clock_kind = c->run.clock;
    s->staleness = c->outer.staleness;
    s->dylu = c->outer.dylu;
    s->batch_tokens = batch_tokens;
    s->N = N;
    s->H = c->outer.local_steps;
    s->stale_max = c->outer.stale_max;
    s->every_updates = c->eval.every_updates;
    s->lambda = (float)c->outer.delay_comp;
    s->hp = (loco_outer_hp){.lr = (float)c->outer.lr, .beta = (float)c->outer.momentum,
                            .N = (int)s->N, .c = (float)c->outer.dn_c, .gscale = 1.0f};
    s->grace_s = c->outer.grace_s;
    s->base_step_s = c->run.virtual_step_s;
    s->gb = gb, s->clock = clock, s->het = het, s->ev = ev, s->rounds = rounds;
    s->budget = s->planned = steps_budget(c);
    s->active = s->workers;
    s->qcap = s->workers + 4;
    s->queue = calloc((size_t)s->qcap, sizeof *s->queue);
    s->members = calloc((size_t)s->workers, sizeof *s->members);
    if (!s->queue || !s->members) {
        loco_server_free(s);
        return loco_errf(e, "out of memory for the server");
    }
    pthread_mutex_init(&s->entry, NULL);
    pthread_mutex_init(&s->window_mu, NULL);
    pthread_cond_init(&s->window_cv, NULL);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    return 0;
}

void loco_server_free(loco_server *s) {
    if (s->queue && s->members) {
        pthread_mutex_destroy(&s->entry);
        pthread_mutex_destroy(&s->window_mu);
        pthread_cond_destroy(&s->window_cv);
        pthread_mutex_destroy(&s->qmu);
        pthread_cond_destroy(&s->qcv);
    }
    free(s->queue);
    free(s->members);
    memset(s, 0, sizeof *s);
}

int loco_server_start(loco_server *s, const loco_topo *topo, const loco_place *place, loco_err *e) {
    s->topo = topo;
    s->place = place;
    s->started_at = loco_now();
    if (pthread_create(&s->thread, NULL, sweep_main, s) != 0)
        return loco_errf(e, "cannot start the server thread");
    s->started = 1;
    return 0;
}

static void close_window(loco_server *s, double t);

/* ------------------------------------------------------------ the rounds */

/* steps per second of worker w at time t: from the profile (virtual) or measured (real,
 * 0 when the worker has no measurement yet) */
static double speed_of(const loco_server *s, int w, double t) {
    if (s->clock_kind == LOCO_CLOCK_VIRTUAL) return 1.0 / loco_hetero_slowdown_at(s->het, w, t);
    return s->rounds[w].step_s > 0 ? 1.0 / s->rounds[w].step_s : 0;
}

static long dylu_steps(const loco_server *s, const loco_round *r, double t) {
    double v = speed_of(s, r->id, t), vmax = 0;
    for (int w = 0; w < s->workers; w++) {
        double vw = speed_of(s, w, t);
        vmax = vw > vmax ? vw : vmax;
    }
    if (v <= 0) return s->H; /* not measured yet: as the fastest */
    return loco_dylu_steps(v, vmax, s->H);
}

/* Hands out worker r's next round, starting at time t (under entry). Returns its steps;
 * 0 retires the worker. In the virtual clock the round's end is fixed now. */
static long next_round(loco_server *s, loco_round *r, double t) {
    long h = s->dylu ? dylu_steps(s, r, t) : s->H;
    h = h < s->budget ? h : s->budget;
    s->budget -= h;
    r->h = h;
    r->start_t = t;
    if (h == 0) {
        s->active--;
        loco_clock_park(s->clock, r->id);
        return 0;
    }
    if (s->clock_kind == LOCO_CLOCK_VIRTUAL) {
        double d = loco_hetero_round_s(s->het, r->id, t, h, s->base_step_s, &r->rng);
        loco_clock_schedule(s->clock, r->id, t + d, LOCO_EVENT_FINISH);
    }
    return h;
}

/* Reserves worker r's pull (under entry): it will see every update so far. */
static void reserve_pull(loco_server *s, loco_round *r) {
    r->pull_ticket = loco_globalbuf_tickets(s->gb, 1);
    r->v_start = s->updates;
}

long loco_server_begin(loco_server *s, loco_round *r) {
    pthread_mutex_lock(&s->entry);
    reserve_pull(s, r);
    long h = next_round(s, r, 0.0);
    pthread_mutex_unlock(&s->entry);
    return h;
}

double loco_server_pull(loco_server *s, loco_round *r) {
    loco_stripe_job j = {.ticket = r->pull_ticket, .rule = RULE_NONE, .out0 = r->params,
                         .out1 = r->theta0};
    return walk_job(s, &j);
}

void loco_server_abandon(loco_server *s, loco_round *r) {
    pthread_mutex_lock(&s->entry);
    s->budget += r->h;
    r->h = 0;
    s->active--;
    loco_clock_park(s->clock, r->id);
    if (s->win_open && s->method == LOCO_METHOD_SYNC && s->nmembers == s->active)
        close_window(s, loco_clock_time(s->clock));
    pthread_mutex_unlock(&s->entry);
    loco_globalbuf_walk(s->gb, r->pull_ticket, NULL, NULL);
    atomic_store(&r->activity, LOCO_ACT_DONE);
}

void loco_server_stop_early(loco_server *s) {
    pthread_mutex_lock(&s->entry);
    s->budget = 0;
    pthread_mutex_unlock(&s->entry);
}

/* ------------------------------------------------------------ arrivals */

/* Real clock: folds the round's measured seconds per step into the moving average
 * DyLU reads (under entry, where every reader looks). */
static void measure(loco_round *r) {
    if (r->round_step_s <= 0) return;
    r->step_s = r->step_s > 0 ? 0.5 * r->step_s + 0.5 * r->round_step_s : r->round_step_s;
}

/* the rule of applied arrival number t */
static int rule_for(const loco_server *s, long t) {
    switch (s->method) {
    case LOCO_METHOD_ASYNC: return RULE_NESTEROV;
    case LOCO_METHOD_ASYNC_DN: return t % s->N == 0 ? RULE_DN_ACTIVATE : RULE_DN_BETWEEN;
    case LOCO_METHOD_ASYNC_BUFFER: return t % s->N == 0 ? RULE_BUFFER_APPLY : RULE_BUFFER_ADD;
    case LOCO_METHOD_ASYNC_SGD: return RULE_SGD;
    default: return RULE_BUFFER_ADD; /* sync: applied when the round is complete */
    }
}

/* What the arrival is: "applied", or why it is not. */
static const char *judge(loco_server *s, const loco_round *r, long staleness) {
    if (!r->finite) return "nonfinite";
    if (s->staleness == LOCO_STALE_POLYTHRES && loco_outer_polythres_drop(staleness, s->stale_max))
        return "stale";
    return "applied";
}

static void count_staleness(loco_server *s, long staleness) {
    long b = staleness < LOCO_STALE_BUCKETS - 1 ? staleness : LOCO_STALE_BUCKETS - 1;
    s->stale_hist[b]++;
}

/* A snapshot of theta right after update t, when t is on the evaluation schedule. */
static loco_snapshot *snapshot_for(loco_server *s, long t, double now) {
    if (!s->ev || s->every_updates <= 0 || t % s->every_updates != 0) return NULL;
    loco_snapshot *snap = loco_eval_thread_reserve(s->ev);
    snap->updates = t;
    snap->local_steps = s->local_steps;
    snap->tokens = s->local_steps * s->batch_tokens;
    snap->time_s = now;
    snap->wall_s = loco_clock_wall(s->clock);
    return snap;
}

/* Decides arrival r at time now (under entry) and fills its push: *push gets a job
 * with rule RULE_NONE when the arrival is rejected. */
static void decide(loco_server *s, loco_round *r, double now, loco_stripe_job *push) {
    long staleness = s->updates - r->v_start;
    const char *status = judge(s, r, staleness);
    int applied = status[0] == 'a';
    s->local_steps += r->h;
    *push = (loco_stripe_job){.rule = RULE_NONE, .hp = s->hp};
    r->rejected = !applied;
    if (applied) {
        long t = ++s->updates;
        count_staleness(s, staleness);
        push->rule = rule_for(s, t);
        push->g = r->delta;
        push->theta_start = r->theta0;
        push->lambda = s->lambda;
        if (s->staleness != LOCO_STALE_NONE) push->hp.gscale = loco_outer_poly(staleness);
        push->snap = snapshot_for(s, t, now);
        s->buffered = push->rule == RULE_BUFFER_ADD ? s->buffered + 1 : 0;
    } else {
        r->rejects++;
        if (r->finite) s->rejected_stale++;
        else s->rejected_nonfinite++;
    }
    if (s->on_arrival) {
        loco_arrival a = {r->id, applied ? s->updates : 0, staleness, r->h, s->updates, now,
                          loco_clock_wall(s->clock), status};
        s->on_arrival(s->ctx, &a);
    }
}

/* Applies a decided push: the worker walks a pure add itself; a sweep goes to the server
 * thread. With pull set, the worker's next theta comes in the same pass (pure add) or in
 * a pull right behind the sweep. Called under entry for the tickets; walks happen after
 * entry is released, through *mine. */
static void issue(loco_server *s, loco_round *r, loco_stripe_job *push, int pull,
                  loco_stripe_job *mine) {
    *mine = (loco_stripe_job){.rule = RULE_NONE};
    if (push->rule != RULE_NONE && is_sweep(push->rule)) {
        push->ticket = loco_globalbuf_tickets(s->gb, 1);
        enqueue(s, push);
    } else if (push->rule != RULE_NONE) {
        push->ticket = loco_globalbuf_tickets(s->gb, 1);
        *mine = *push;
    }
    if (!pull) return;
    if (mine->rule != RULE_NONE) {
        /* one pass: add, then copy out */
        mine->out0 = r->params, mine->out1 = r->theta0;
        r->v_start = s->updates;
    } else {
        reserve_pull(s, r);
        *mine = (loco_stripe_job){.ticket = r->pull_ticket, .rule = RULE_NONE,
                                  .out0 = r->params, .out1 = r->theta0};
    }
}

/* ------------------------------------------------------------- windows */

static int windowed(const loco_server *s) {
    return s->method == LOCO_METHOD_SYNC || s->grace_s > 0;
}

/* Closes the window at time t (under entry): a sync round's outer step, then every
 * member's pull and next round, in the order they joined. */
static void close_window(loco_server *s, double t) {
    if (s->method == LOCO_METHOD_SYNC && s->buffered > 0) {
        loco_stripe_job flush = {.rule = RULE_FLUSH, .hp = s->hp};
        flush.hp.N = (int)s->buffered;
        flush.ticket = loco_globalbuf_tickets(s->gb, 1);
        enqueue(s, &flush);
        s->buffered = 0;
    }
    for (int i = 0; i < s->nmembers; i++) {
        loco_round *m = &s->rounds[s->members[i]];
        reserve_pull(s, m);
        next_round(s, m, t);
    }
    /* members wake under their own mutex, not entry: their pulls are reserved now and
     * must not wait for entry, which a thread may hold while it waits for them */
    pthread_mutex_lock(&s->window_mu);
    for (int i = 0; i < s->nmembers; i++) s->rounds[s->members[i]].window_done = 1;
    pthread_cond_broadcast(&s->window_cv);
    pthread_mutex_unlock(&s->window_mu);
    s->nmembers = 0;
    s->win_open = 0;
}

/* Worker r joins the window (under entry); returns 1 when it is the one that waits for
 * the window's end (the first member of a grace window). */
static int join_window(loco_server *s, loco_round *r, double now) {
    int opener = !s->win_open;
    if (opener) {
        s->win_open = 1;
        s->win_end = now + (s->method == LOCO_METHOD_SYNC ? INFINITY : s->grace_s);
    }
    s->members[s->nmembers++] = r->id;
    pthread_mutex_lock(&s->window_mu);
    r->window_done = 0;
    pthread_mutex_unlock(&s->window_mu);
    /* a sync round ends when every worker still running has arrived */
    if (s->method == LOCO_METHOD_SYNC && s->nmembers == s->active) {
        close_window(s, now);
        return 0;
    }
    if (opener && s->method != LOCO_METHOD_SYNC) {
        loco_clock_schedule(s->clock, r->id, s->win_end, LOCO_EVENT_CLOSE);
        return 1;
    }
    loco_clock_park(s->clock, r->id);
    return 0;
}

/* The opener of a grace window: waits for its end, then closes it (virtual: when the
 * close is the earliest event; real: after sleeping to the deadline). */
static void await_window_end(loco_server *s, loco_round *r) {
    double waited = 0, t = s->win_end;
    if (s->clock_kind == LOCO_CLOCK_VIRTUAL) {
        t = loco_clock_turn(s->clock, r->id, &waited);
    } else {
        double left = s->win_end - loco_clock_wall(s->clock);
        if (left > 0) {
            struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
            nanosleep(&ts, NULL);
            waited = left;
        }
        t = loco_clock_wall(s->clock);
    }
    r->idle_s += waited;
    pthread_mutex_lock(&s->entry);
    close_window(s, t);
    pthread_mutex_unlock(&s->entry);
}

/* Arrival of worker r into a window: its push now, its pull when the window closes. */
static long arrive_windowed(loco_server *s, loco_round *r, double now) {
    loco_stripe_job push, mine;
    decide(s, r, now, &push);
    issue(s, r, &push, 0, &mine);
    int opener = join_window(s, r, now);
    pthread_mutex_unlock(&s->entry);
    if (mine.rule != RULE_NONE) r->lockwait_s += walk_job(s, &mine);
    if (opener) await_window_end(s, r);
    double t0 = loco_now();
    pthread_mutex_lock(&s->window_mu);
    while (!r->window_done) pthread_cond_wait(&s->window_cv, &s->window_mu);
    pthread_mutex_unlock(&s->window_mu);
    long h = r->h; /* set before window_done, under entry */
    r->idle_s += loco_now() - t0;
    r->lockwait_s += loco_server_pull(s, r);
    return h;
}

long loco_server_arrive(loco_server *s, loco_round *r) {
    double waited;
    double now = loco_clock_turn(s->clock, r->id, &waited);
    r->idle_s += waited;
    pthread_mutex_lock(&s->entry);
    r->rounds++;
    measure(r);
    if (windowed(s)) return arrive_windowed(s, r, now);
    loco_stripe_job push, mine;
    decide(s, r, now, &push);
    issue(s, r, &push, 1, &mine);
    long h = next_round(s, r, now);
    pthread_mutex_unlock(&s->entry);
    r->lockwait_s += walk_job(s, &mine);
    return h;
}

/* --------------------------------------------------------------- the end */

void loco_server_finish(loco_server *s) {
    pthread_mutex_lock(&s->entry);
    if (s->buffered > 0 && s->started) {
        /* a partial buffer: applied on its mean rather than lost */
        loco_stripe_job flush = {.rule = RULE_FLUSH, .hp = s->hp};
        flush.hp.N = (int)s->buffered;
        flush.ticket = loco_globalbuf_tickets(s->gb, 1);
        enqueue(s, &flush);
        s->buffered = 0;
    }
    pthread_mutex_unlock(&s->entry);
    if (!s->started) return;
    pthread_mutex_lock(&s->qmu);
    s->closing = 1;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    pthread_join(s->thread, NULL);
    s->started = 0;
}
