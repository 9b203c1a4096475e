/* The protocol. One arrival, from push to restart:
 *
 *  1. Worker w ends its round with g = theta_start - theta_local in r->delta and calls
 *     loco_protocol_arrive. In the virtual clock it first waits until its round's end is
 *     the earliest pending event (clock.mu, no other lock held), so arrivals are decided
 *     in virtual-time order; in the real clock it goes straight on.
 *  2. Under entry, the decision (decide): a delta with NaN or Inf, or (polythres) one
 *     staler than outer.stale_max, is rejected and counted: it touches nothing. Otherwise
 *     it becomes update t = ++updates and gets the rule the method table gives the t-th
 *     arrival, weighted by poly if asked. Its push takes the next ticket: tickets are only
 *     taken under entry, so ticket order is decision order. When t is on the evaluation
 *     schedule a snapshot slot is taken (never waited for here). The arrival event is
 *     buffered for metrics.jsonl (metrics writes it out later, from the main thread).
 *  3. Still under entry, the restart. Without a window, w's pull comes right behind its
 *     push: a pure add and the pull are one walk (add, then copy out, stripe by stripe),
 *     after a momentum rule the pull is the next ticket. w's next round gets its steps
 *     from the budget (and DyLU); in the virtual clock its end is fixed now and put on the
 *     clock, which hands the turn on. With a window (a grace period, or sync's round),
 *     w joins it instead; its pull and next round are decided when the window closes.
 *  4. Entry released, the walks: a pure add is walked by w itself; a momentum rule was
 *     queued for the sweeper (the server thread), and w's pull walks right behind it.
 *     Stripes are entered in ticket order, so w's pull sees exactly the updates before it.
 *  5. A window's opener waits for the window's end (virtual: the turn of its close event;
 *     real: a deadline), then closes it under entry: sync's round step (the flush) is
 *     queued, and every member, in the order they joined, gets its pull ticket and its
 *     next round. Members wait under window_mu, then walk their pulls.
 *
 * Lock order: entry, then (each only for a moment, never waiting on anything) window_mu,
 * the sweeper's mu, the evaluator's mu, clock.mu, the metrics mu. clock.mu alone is held
 * while a worker waits for its virtual turn. No stripe turn is ever waited for under
 * entry: walks happen after it is released. Nothing slow runs under entry: events are
 * buffered, snapshot slots are only tried (the virtual clock waits for a free one with
 * entry released, holding its turn). */
#include "loco/protocol.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loco/job.h"
#include "loco/checkpoint.h"

/* ------------------------------------------------------------- lifecycle */

int loco_protocol_init(loco_protocol *s, const loco_protocol_settings *st, loco_globalbuf *gb,
                     loco_clock *clock, const loco_hetero *het, loco_eval_thread *ev,
                     loco_metrics *mt, loco_err *e) {
    memset(s, 0, sizeof *s);
    atomic_init(&s->dc_held, 0);
    atomic_init(&s->dc_all, 0);
    s->st = *st;
    s->method = loco_outer_method_of(st->method);
    LOCO_CHECK(s->method->engine && st->workers >= 1 && st->N >= 0 && st->H >= 1,
               "method %d, %d workers, N %ld, H %ld", st->method, st->workers, st->N, st->H);
    s->gb = gb, s->clock = clock, s->het = het, s->ev = ev, s->mt = mt;
    s->budget = st->budget;
    s->active = st->workers;
    s->rounds = calloc((size_t)st->workers, sizeof *s->rounds);
    s->members = calloc((size_t)st->workers, sizeof *s->members);
    /* outstanding jobs of the server thread: at most a sweep and a snapshot copy per
     * worker (its pull waits behind them), a round's close and the final flush */
    if (!s->rounds || !s->members ||
        loco_server_init(&s->server, gb, 2 * st->workers + 2, e) != 0) {
        free(s->rounds);
        free(s->members);
        return loco_errf(e, "out of memory for the server");
    }
    for (int w = 0; w < st->workers; w++) {
        s->rounds[w].id = w;
        loco_rng_seed(&s->rounds[w].durations, st->seed,
                      loco_stream_id(LOCO_STREAM_DURATION, (uint64_t)w));
    }
    pthread_mutex_init(&s->entry, NULL);
    pthread_mutex_init(&s->window_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the openers' deadlines are loco_now() */
    pthread_cond_init(&s->window_cv, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void loco_protocol_free(loco_protocol *s) {
    if (!s->rounds) return;
    loco_server_free(&s->server);
    pthread_mutex_destroy(&s->entry);
    pthread_mutex_destroy(&s->window_mu);
    pthread_cond_destroy(&s->window_cv);
    free(s->rounds);
    free(s->members);
    memset(s, 0, sizeof *s);
}

loco_round *loco_protocol_round(loco_protocol *s, int w) {
    LOCO_CHECK(w >= 0 && w < s->st.workers, "worker %d of %d", w, s->st.workers);
    return &s->rounds[w];
}

int loco_protocol_start(loco_protocol *s, const loco_topo *topo, const loco_place *place, loco_err *e) {
    return loco_server_start(&s->server, topo, place, e);
}

void loco_protocol_read_stats(loco_protocol *s, loco_protocol_stats *out) {
    pthread_mutex_lock(&s->entry);
    *out = (loco_protocol_stats){.updates = s->updates, .local_steps = s->local_steps,
                               .planned = s->st.budget, .faults = s->faults,
                               .returns = s->returns, .evals_skipped = s->evals_skipped};
    memcpy(out->rejected, s->rejected, sizeof out->rejected);
    memcpy(out->stale_hist, s->stale_hist, sizeof out->stale_hist);
    pthread_mutex_unlock(&s->entry);
    out->busy_s = loco_server_busy(&s->server);
    out->dc_held = atomic_load(&s->dc_held);
    out->dc_all = atomic_load(&s->dc_all);
}

/* ------------------------------------------------------------ the rounds */

/* steps per second of worker w at time t: from the profile (virtual) or measured (real,
 * 0 when the worker has no measurement yet); 0 for a worker away or gone, so DyLU's
 * fastest worker is the fastest that has not failed */
static double speed_of(const loco_protocol *s, int w, double t) {
    const loco_round *r = &s->rounds[w];
    if (r->away) return 0;
    if (s->st.clock == LOCO_CLOCK_VIRTUAL) return loco_hetero_speed(s->het, w, t);
    return r->step_s > 0 ? 1.0 / r->step_s : 0;
}

static long dylu_steps(const loco_protocol *s, const loco_round *r, double t) {
    double v = speed_of(s, r->id, t), vmax = 0;
    for (int w = 0; w < s->st.workers; w++) {
        if (s->rounds[w].away) continue; /* the fastest of the live workers */
        double vw = speed_of(s, w, t);
        vmax = vw > vmax ? vw : vmax;
    }
    if (v <= 0) return s->st.H; /* not measured yet: as the fastest */
    return loco_dylu_steps(v, vmax, s->st.H);
}

/* The run is over when no worker is left running and no step is left to hand out; the
 * workers away then do not come back (loco_protocol_back returns 0). The caller parks r on
 * the clock once it has scheduled everyone else: r may hold the turn, and until the others'
 * events are on the clock its event is what keeps them from committing (close_window). */
static void retire(loco_protocol *s, loco_round *r) {
    LOCO_CHECK(!r->retired && s->active > 0, "worker %d retired twice (%d active)", r->id,
               s->active);
    r->retired = 1;
    s->active--;
    if (s->active > 0 || s->budget > 0) return;
    for (int w = 0; w < s->st.workers; w++) {
        loco_round *a = &s->rounds[w];
        if (!a->away || a->retired) continue;
        a->retired = 1;
        loco_clock_park(s->clock, a->id);
    }
}

/* worker r's next failure, at or after its cursor; NULL when none is left */
static const loco_fault *next_fault(const loco_protocol *s, loco_round *r) {
    for (; r->next_fault < s->st.nfaults; r->next_fault++)
        if (s->st.faults[r->next_fault].worker == r->id) return &s->st.faults[r->next_fault];
    return NULL;
}

/* Virtual clock, a round of r just planned from t to r->end_t: lost when a failure falls
 * into it (or has begun before and lasts into it). An outage over before t passed while
 * r was not computing (waiting in a window): nothing was lost. */
static void plan_failure(loco_protocol *s, loco_round *r, double t) {
    const loco_fault *f;
    while ((f = next_fault(s, r)) && f->at_s + f->for_s <= t) r->next_fault++;
    r->lost = f && f->at_s < r->end_t;
    if (r->lost) {
        r->fail_at = f->at_s > t ? f->at_s : t;
        r->back_at = f->at_s + f->for_s;
        r->next_fault++;
    }
    r->next_at = r->lost ? r->fail_at : r->end_t;
}

/* puts r's next event on the clock: its round's end, or its failure */
static void schedule_next(loco_protocol *s, loco_round *r) {
    loco_clock_schedule(s->clock, r->id, r->next_at, r->lost ? LOCO_EVENT_FAIL : LOCO_EVENT_FINISH);
}

/* Hands out worker r's next round, starting at time t (under entry). Returns its steps;
 * 0 retires the worker. In the virtual clock the round's end is fixed now; it is put on
 * the clock when schedule is set (see close_window for why it may not be). */
static long plan_round(loco_protocol *s, loco_round *r, double t, int schedule) {
    long h = s->st.dylu ? dylu_steps(s, r, t) : s->st.H;
    h = h < s->budget ? h : s->budget;
    s->budget -= h;
    r->h = h;
    r->start_t = t;
    r->lr_committed = s->local_steps;
    r->lr_live = s->st.workers - s->down > 0 ? s->st.workers - s->down : 1;
    if (h == 0) {
        retire(s, r);
        if (schedule) loco_clock_park(s->clock, r->id);
        return 0;
    }
    if (s->st.clock == LOCO_CLOCK_VIRTUAL) {
        r->end_t = t + loco_hetero_round_cost(s->het, r->id, t, h, &r->durations).total_s;
        plan_failure(s, r, t);
        if (schedule) schedule_next(s, r);
    }
    return h;
}

static long next_round(loco_protocol *s, loco_round *r, double t) {
    return plan_round(s, r, t, 1);
}

/* Reserves worker r's pull (under entry): it will see every update so far. */
static void reserve_pull(loco_protocol *s, loco_round *r) {
    r->pull_ticket = loco_globalbuf_tickets(s->gb, 1);
    r->v_start = s->version;
}

long loco_protocol_begin(loco_protocol *s, loco_round *r) {
    pthread_mutex_lock(&s->entry);
    reserve_pull(s, r);
    long h = next_round(s, r, 0.0);
    pthread_mutex_unlock(&s->entry);
    return h;
}

double loco_protocol_pull(loco_protocol *s, loco_round *r) {
    loco_job j = {.ticket = r->pull_ticket, .rule = LOCO_RULE_NONE, .out0 = r->params,
                  .out1 = r->theta0};
    return loco_job_walk(s->gb, &j);
}

static void close_window(loco_protocol *s, double t, int holder);

/* Whether the open window holds every worker still running, so that no one else can join
 * it: a sync round then ends, and so does a grace window unless it closes only at its
 * deadline (outer.grace_close). A worker coming back from a failure pulls at once and
 * joins no window. */
static int window_full(const loco_protocol *s) {
    return s->win_open && s->nmembers > 0 && s->nmembers == s->active &&
           (s->method->barrier || s->st.grace_close == LOCO_GRACE_ALL);
}

void loco_protocol_abandon(loco_protocol *s, loco_round *r) {
    pthread_mutex_lock(&s->entry);
    s->budget += r->h;
    r->h = 0;
    /* a worker handed no round at begin is retired already: it must not count twice */
    if (!r->retired) retire(s, r);
    if (window_full(s)) close_window(s, loco_clock_time(s->clock), -1);
    loco_clock_park(s->clock, r->id);
    pthread_mutex_unlock(&s->entry);
    loco_globalbuf_walk(s->gb, r->pull_ticket, NULL, NULL);
}

void loco_protocol_stop_early(loco_protocol *s) {
    pthread_mutex_lock(&s->entry);
    s->budget = 0;
    s->stopped = 1;
    /* a stopped run takes no more checkpoints: its budget is gone, so a resume from one
     * would end short; a hold that came after the stop's checkpoint is let go */
    if (s->held) loco_clock_resume(s->clock);
    s->held = 0;
    pthread_mutex_unlock(&s->entry);
}

/* ------------------------------------------------------------ arrivals */

/* Real clock: folds the round's measured seconds per step into the moving average
 * DyLU reads (under entry, where every reader looks). */
static void measure(loco_round *r, double step_s) {
    if (step_s <= 0) return;
    r->step_s = r->step_s > 0 ? 0.5 * r->step_s + 0.5 * step_s : step_s;
}

/* What becomes of the arrival: applied, or why not. */
static int judge(const loco_protocol *s, const loco_round_report *rep, long staleness) {
    if (rep->diverged) return LOCO_ARRIVAL_DIVERGED;
    if (!rep->finite) return LOCO_ARRIVAL_NONFINITE;
    if (s->st.max_delta_norm > 0 && !(rep->norm <= s->st.max_delta_norm)) return LOCO_ARRIVAL_NORM;
    if (s->st.staleness == LOCO_STALE_POLYTHRES &&
        loco_outer_polythres_drop(staleness, s->st.stale_max))
        return LOCO_ARRIVAL_STALE;
    return LOCO_ARRIVAL_APPLIED;
}

static void count_staleness(loco_protocol *s, long staleness) {
    long b = staleness < LOCO_STALE_BUCKETS - 1 ? staleness : LOCO_STALE_BUCKETS - 1;
    s->stale_hist[b]++;
}

/* The evaluation schedule: after every st.eval_every-th applied arrival, and each time
 * the local steps summed over workers pass a multiple of st.eval_every_steps (the
 * comparable x-axis: every method is evaluated at the same marks). */
static int eval_due(const loco_protocol *s, int applied, long h) {
    if (!s->ev) return 0;
    long first, last, U = s->st.eval_every;
    if (loco_eval_marks(s->local_steps, s->local_steps + h, s->st.eval_every_steps, &first, &last))
        return 1;
    return applied && U > 0 && (s->updates + 1) % U == 0;
}

/* A snapshot slot for the evaluation due at this decision (under entry, after the
 * decision's counts), or none; a skipped one is counted (the virtual clock never gets
 * here without a free slot, see make_room). Its marks are the multiples of
 * eval_every_steps the decision's h steps passed. The slot is filled later, by the job
 * after which theta holds every outer step these counts include (attach_snapshot). */
static void take_snapshot(loco_protocol *s, long h, double now) {
    loco_snapshot *snap = s->snap;
    /* a barrier round's snapshot waits for the round's close: evaluations due again
     * before it stand with it for the same theta */
    int again = snap != NULL;
    if (!again && !(snap = loco_eval_thread_try_reserve(s->ev))) {
        s->evals_skipped++;
        return;
    }
    if (!again) snap->place = s->mt ? loco_metrics_reserve(s->mt) : -1;
    snap->updates = s->updates;
    snap->local_steps = s->local_steps;
    snap->tokens = s->local_steps * s->st.batch_tokens;
    snap->time_s = now;
    snap->wall_s = loco_clock_wall(s->clock);
    long first, last; /* both 0 when due by the update count alone */
    loco_eval_marks(s->local_steps - h, s->local_steps, s->st.eval_every_steps, &first, &last);
    if (!again || !snap->mark_first) snap->mark_first = first;
    if (!again || last) snap->mark_last = last;
    s->snap = snap;
}

/* Virtual clock, under entry, holding the turn: when this arrival will need a snapshot
 * and none is free, waits for one with entry released. Nothing the decision reads can
 * change meanwhile: only the turn holder decides, and only deciders reserve slots. */
static void make_room(loco_protocol *s, const loco_round_report *rep, long staleness, long h) {
    int applied = judge(s, rep, staleness) == LOCO_ARRIVAL_APPLIED;
    /* a pending snapshot takes the new evaluation in: no slot needed (and waiting for one
     * would wait for the pending one, which waits for this round's close) */
    if (s->st.clock != LOCO_CLOCK_VIRTUAL || s->snap || !eval_due(s, applied, h)) return;
    while (!loco_eval_thread_has_free(s->ev)) {
        pthread_mutex_unlock(&s->entry);
        loco_eval_thread_wait_free(s->ev);
        pthread_mutex_lock(&s->entry);
    }
}

/* The pending snapshot goes with job j (under entry, before j is issued): j is the job
 * after which theta holds every outer step the snapshot's counts include. */
static void attach_snapshot(loco_protocol *s, loco_job *j) {
    j->snap = s->snap;
    j->ev = s->ev;
    s->snap = NULL;
}

/* The pending snapshot with no job to ride on: a copy of theta, walked by the server
 * thread in ticket order (under entry). */
static void copy_snapshot(loco_protocol *s) {
    if (!s->snap) return;
    loco_job copy = {.rule = LOCO_RULE_NONE};
    attach_snapshot(s, &copy);
    copy.ticket = loco_globalbuf_tickets(s->gb, 1);
    loco_server_push(&s->server, &copy);
}

/* Decides arrival r at time now (under entry) and fills its push: a job with rule
 * LOCO_RULE_NONE when the arrival is rejected. */
static int decide(loco_protocol *s, loco_round *r, const loco_round_report *rep, double now,
                  loco_job *push) {
    long staleness = s->version - r->v_start;
    int status = judge(s, rep, staleness);
    int due = eval_due(s, status == LOCO_ARRIVAL_APPLIED, r->h);
    r->status = status;
    s->local_steps += r->h;
    *push = (loco_job){.rule = LOCO_RULE_NONE, .hp = s->st.hp};
    if (status == LOCO_ARRIVAL_APPLIED) {
        s->updates++;
        /* the checkpoint of this update count is taken before any other arrival is decided:
         * the protocol, not a poll, says when one is due (entry, then clock.mu) */
        if (!s->stopped && loco_state_due(s->updates, s->st.ckpt_every, 0, 0, 0)) {
            s->held = 1;
            loco_clock_pause(s->clock);
        }
        count_staleness(s, staleness);
        /* a window of N arrivals takes its N when it starts: the workers that have not
         * failed (or are back), unless N is set */
        long live = s->st.workers - s->down;
        if (s->dn_count == 0) s->dn_N = s->st.N > 0 ? s->st.N : (live > 0 ? live : 1);
        long k = ++s->dn_count;
        if (k == s->dn_N) s->dn_count = 0;
        push->rule = loco_outer_rule_for(s->st.method, k, s->dn_N);
        const loco_outer_rule *rule = loco_outer_rule_of(push->rule);
        push->hp.N = (int)s->dn_N;
        push->hp.gscale = s->st.staleness != LOCO_STALE_NONE ? loco_outer_poly(staleness) : 1.0f;
        push->g = r->delta;
        push->theta_start = r->theta0;
        push->lambda = s->st.lambda;
        push->dc_held = &s->dc_held, push->dc_all = &s->dc_all;
        s->version += rule->moves_theta;
        s->accumulated = rule->accumulates ? s->accumulated + 1 : 0;
    } else {
        s->rejected[status]++;
    }
    if (s->mt) {
        double slow = rep->slowdown_s;
        if (s->st.clock == LOCO_CLOCK_VIRTUAL) /* the round ends now: its cost's part */
            slow = loco_hetero_cost_of(s->het, r->h, now - r->start_t).slowdown_s;
        loco_arrival a = {.worker = r->id, .ticket = status == LOCO_ARRIVAL_APPLIED ? s->updates : 0,
                          .staleness = staleness, .local_steps = r->h, .updates = s->updates,
                          .time_s = now, .wall_s = loco_clock_wall(s->clock), .status = status,
                          .start_s = r->start_t, .slowdown_s = slow > 0 ? slow : 0,
                          .lr = rep->lr};
        loco_metrics_arrival(s->mt, &a);
    }
    if (due) take_snapshot(s, r->h, now); /* its event after the arrival's */
    return status;
}

/* Issues a decided push (under entry, for its ticket): a momentum rule goes to the
 * sweeper; a pure add comes back in *mine for the worker to walk once entry is released.
 * With pull set, the worker's next theta comes in that same walk (pure add) or in a
 * pull right behind the sweep. */
static void issue(loco_protocol *s, loco_round *r, loco_job *push, int pull, loco_job *mine) {
    *mine = (loco_job){.rule = LOCO_RULE_NONE};
    /* a barrier round's outer step comes when it closes: its snapshot waits for that */
    if (s->snap && !s->method->barrier && push->rule != LOCO_RULE_NONE) attach_snapshot(s, push);
    if (push->rule != LOCO_RULE_NONE) {
        push->ticket = loco_globalbuf_tickets(s->gb, 1);
        if (loco_outer_rule_of(push->rule)->moves_momentum)
            loco_server_push(&s->server, push);
        else
            *mine = *push;
    }
    if (!pull) return;
    if (mine->rule != LOCO_RULE_NONE) {
        /* one pass: add, then copy out */
        mine->out0 = r->params, mine->out1 = r->theta0;
        r->v_start = s->version;
    } else {
        reserve_pull(s, r);
        *mine = (loco_job){.ticket = r->pull_ticket, .rule = LOCO_RULE_NONE,
                           .out0 = r->params, .out1 = r->theta0};
        if (s->snap && !s->method->barrier) attach_snapshot(s, mine);
    }
}

/* Queues the method's close rule over the arrivals still accumulated, with the pending
 * snapshot if there is one (under entry). */
static void flush_accumulated(loco_protocol *s) {
    if (s->method->close_rule == LOCO_RULE_NONE || s->accumulated == 0) {
        copy_snapshot(s);
        return;
    }
    loco_job flush = {.rule = s->method->close_rule, .hp = s->st.hp};
    flush.hp.N = (int)s->accumulated;
    flush.hp.gscale = 1.0f;
    if (s->snap) attach_snapshot(s, &flush);
    flush.ticket = loco_globalbuf_tickets(s->gb, 1);
    LOCO_CHECK(loco_outer_rule_of(flush.rule)->moves_momentum, "close rule %d", flush.rule);
    loco_server_push(&s->server, &flush);
    s->version++;
    s->accumulated = 0;
}

/* ------------------------------------------------------------- windows */

static int windowed(const loco_protocol *s) {
    return s->method->barrier || s->st.grace_s > 0;
}

/* Closes the window at time t (under entry): a barrier round's step, then every
 * member's pull and next round, in the order they joined. holder is the member whose
 * clock turn this is (-1: none). Its event is the earliest on the clock and keeps every
 * other worker from committing; it must be the last put back on the clock, or a worker
 * could commit before a member that is about to be scheduled earlier than it. */
static void close_window(loco_protocol *s, double t, int holder) {
    if (s->method->barrier) flush_accumulated(s);
    for (int i = 0; i < s->nmembers; i++) {
        loco_round *m = &s->rounds[s->members[i]];
        reserve_pull(s, m);
        plan_round(s, m, t, 0);
    }
    /* members retired by this close are parked with the rest, not when they retired: a
     * worker parked before the others are scheduled could let the opener's deadline turn
     * come first, and virtual time would run past this close */
    int virtual_ = s->st.clock == LOCO_CLOCK_VIRTUAL;
    for (int i = 0; i < s->nmembers; i++) {
        loco_round *m = &s->rounds[s->members[i]];
        if (m->id == holder) continue;
        if (m->retired) loco_clock_park(s->clock, m->id);
        else if (virtual_) schedule_next(s, m);
    }
    loco_round *h = holder >= 0 ? &s->rounds[holder] : NULL;
    if (h && h->retired) loco_clock_park(s->clock, h->id);
    else if (h && virtual_ && !h->away && h->h > 0) schedule_next(s, h);
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
static int join_window(loco_protocol *s, loco_round *r, double now) {
    int opener = !s->win_open;
    if (opener) {
        double timeout = s->st.sync_timeout_s > 0 ? s->st.sync_timeout_s : INFINITY;
        s->win_open = 1;
        s->win_end = now + (s->method->barrier ? timeout : s->st.grace_s);
    }
    LOCO_CHECK(s->nmembers < s->st.workers, "window of %d members is full", s->nmembers);
    s->members[s->nmembers++] = r->id;
    pthread_mutex_lock(&s->window_mu);
    r->window_done = 0;
    pthread_mutex_unlock(&s->window_mu);
    if (window_full(s)) {
        close_window(s, now, r->id);
        return 0;
    }
    if (opener && isfinite(s->win_end)) {
        loco_clock_schedule(s->clock, r->id, s->win_end, LOCO_EVENT_CLOSE);
        return 1;
    }
    loco_clock_park(s->clock, r->id);
    return 0;
}

/* Real clock: waits until r's window has closed or the wall clock reaches end; returns
 * whether it closed. */
static int closed_by(loco_protocol *s, loco_round *r, double end) {
    double left = end - loco_clock_wall(s->clock);
    double until = loco_now() + (left > 0 ? left : 0);
    struct timespec ts = loco_timespec(until);
    pthread_mutex_lock(&s->window_mu);
    while (!r->window_done && pthread_cond_timedwait(&s->window_cv, &s->window_mu, &ts) == 0) {
    }
    int done = r->window_done;
    pthread_mutex_unlock(&s->window_mu);
    return done;
}

/* The opener of a window with a deadline (a grace period, or sync's timeout): waits for
 * its end (virtual: when the close is the earliest event; real: the deadline), then closes
 * it, unless it closed first (a sync round whose workers all arrived). Returns the seconds
 * waited. */
static double await_window_end(loco_protocol *s, loco_round *r, double end) {
    double t0 = loco_now(), waited, t;
    int mine = s->st.clock == LOCO_CLOCK_VIRTUAL || !closed_by(s, r, end);
    if (mine) mine = loco_clock_turn_for(s->clock, r->id, LOCO_EVENT_CLOSE, end, &t, &waited);
    pthread_mutex_lock(&s->entry);
    if (mine && !r->window_done) close_window(s, t, r->id);
    pthread_mutex_unlock(&s->entry);
    return loco_now() - t0;
}

/* Waits, counted as still, until r's window has closed. */
static void await_close(loco_protocol *s, loco_round *r) {
    pthread_mutex_lock(&s->window_mu);
    s->window_waiting++;
    while (!r->window_done) pthread_cond_wait(&s->window_cv, &s->window_mu);
    s->window_waiting--;
    pthread_mutex_unlock(&s->window_mu);
}

static long rest_in_window(loco_protocol *s, loco_round *r, int opener, double end,
                           loco_arrival_cost *cost);

/* Arrival of worker r into a window (entered under entry, which it releases): its push
 * now, its pull when the window closes. */
static long arrive_windowed(loco_protocol *s, loco_round *r, const loco_round_report *rep,
                            double now, loco_arrival_cost *cost) {
    loco_job push, mine;
    cost->status = decide(s, r, rep, now, &push);
    cost->rejected = cost->status != LOCO_ARRIVAL_APPLIED;
    issue(s, r, &push, 0, &mine);
    if (!s->method->barrier) copy_snapshot(s); /* a rejected arrival's: no job of its own */
    int opener = join_window(s, r, now);
    double end = s->win_end;
    pthread_mutex_unlock(&s->entry);
    if (mine.rule != LOCO_RULE_NONE) cost->stripe_s += loco_job_walk(s->gb, &mine);
    return rest_in_window(s, r, opener, end, cost);
}

/* The rest of a windowed arrival: the opener sees to the window's end; every member waits
 * for the close, then pulls. */
static long rest_in_window(loco_protocol *s, loco_round *r, int opener, double end,
                           loco_arrival_cost *cost) {
    if (opener) cost->window_s += await_window_end(s, r, end);
    double t0 = loco_now();
    await_close(s, r);
    long h = r->h; /* set before window_done, under entry */
    cost->window_s += loco_now() - t0;
    cost->stripe_s += loco_protocol_pull(s, r);
    return h;
}

long loco_protocol_arrive(loco_protocol *s, loco_round *r, const loco_round_report *rep,
                        loco_arrival_cost *cost) {
    *cost = (loco_arrival_cost){0};
    double now;
    /* the real clock gives turns at once, so a turn taken before an update paused the
     * clock for its checkpoint is given back and waited for again */
    for (;;) {
        double waited;
        now = loco_clock_turn(s->clock, r->id, &waited);
        cost->turn_s += waited;
        pthread_mutex_lock(&s->entry);
        if (!s->held) break;
        pthread_mutex_unlock(&s->entry);
    }
    LOCO_CHECK(!r->retired && r->h > 0, "worker %d arrives without a round", r->id);
    measure(r, rep->step_s);
    if (rep->steps < r->h) { /* a diverged round: the steps it did not take go back */
        s->budget += r->h - rep->steps;
        r->h = rep->steps;
    }
    make_room(s, rep, s->version - r->v_start, r->h);
    if (windowed(s)) return arrive_windowed(s, r, rep, now, cost);
    loco_job push, mine;
    cost->status = decide(s, r, rep, now, &push);
    cost->rejected = cost->status != LOCO_ARRIVAL_APPLIED;
    issue(s, r, &push, 1, &mine);
    long h = next_round(s, r, now);
    pthread_mutex_unlock(&s->entry);
    cost->stripe_s += loco_job_walk(s->gb, &mine);
    return h;
}

/* -------------------------------------------------------------- failures */

int loco_protocol_lost(loco_protocol *s, loco_round *r) {
    pthread_mutex_lock(&s->entry);
    int lost = r->lost;
    pthread_mutex_unlock(&s->entry);
    return lost;
}

double loco_protocol_fail_time(loco_protocol *s, loco_round *r) {
    pthread_mutex_lock(&s->entry);
    const loco_fault *f = next_fault(s, r);
    double t = f ? f->at_s : INFINITY;
    pthread_mutex_unlock(&s->entry);
    return t;
}

static void fault_event(loco_protocol *s, loco_round *r, int kind, long lost, double t) {
    if (!s->mt) return;
    loco_fault_event ev = {.worker = r->id, .kind = kind, .lost_steps = lost, .time_s = t,
                           .wall_s = loco_clock_wall(s->clock)};
    loco_metrics_fault(s->mt, &ev);
}

int loco_protocol_fail(loco_protocol *s, loco_round *r) {
    double t, waited;
    if (s->st.clock == LOCO_CLOCK_VIRTUAL)
        loco_clock_turn_for(s->clock, r->id, LOCO_EVENT_FAIL, r->fail_at, &t, &waited);
    else
        t = loco_clock_wall(s->clock);
    pthread_mutex_lock(&s->entry);
    if (s->st.clock == LOCO_CLOCK_REAL) { /* the failure it found passed */
        const loco_fault *f = next_fault(s, r);
        r->back_at = f ? f->at_s + f->for_s : t;
        r->next_fault++;
    }
    long lost = r->h;
    int gone = !isfinite(r->back_at);
    if (!s->stopped) s->budget += lost; /* the run still does every step it was to do */
    r->h = 0;
    r->lost = 0;
    r->away = 1;
    r->faults++;
    s->faults++;
    s->down++;
    fault_event(s, r, gone ? LOCO_FAULT_GONE : LOCO_FAULT_FAIL, lost, t);
    if (gone) retire(s, r);
    else s->active--;
    /* a window waits no more for it */
    if (window_full(s)) close_window(s, t, r->id);
    if (gone) loco_clock_park(s->clock, r->id);
    if (!gone && s->st.clock == LOCO_CLOCK_VIRTUAL)
        loco_clock_schedule(s->clock, r->id, r->back_at, LOCO_EVENT_BACK);
    pthread_mutex_unlock(&s->entry);
    return !gone;
}

static int retired(loco_protocol *s, const loco_round *r) {
    pthread_mutex_lock(&s->entry);
    int over = r->retired;
    pthread_mutex_unlock(&s->entry);
    return over;
}

/* Real clock: sleeps until r is back, or the run is over without it (returns 0). */
static int sleep_until_back(loco_protocol *s, loco_round *r) {
    for (;;) {
        double now = loco_clock_wall(s->clock);
        if (retired(s, r)) return 0;
        if (now >= r->back_at) return 1;
        loco_clock_sleep_until(s->clock, fmin(r->back_at, now + 0.05));
    }
}

long loco_protocol_back(loco_protocol *s, loco_round *r, loco_arrival_cost *cost) {
    *cost = (loco_arrival_cost){0};
    double t = r->back_at, waited = 0, t0 = loco_now();
    int back;
    if (s->st.clock == LOCO_CLOCK_VIRTUAL)
        back = loco_clock_turn_for(s->clock, r->id, LOCO_EVENT_BACK, r->back_at, &t, &waited);
    else
        back = sleep_until_back(s, r);
    cost->window_s = loco_now() - t0;
    pthread_mutex_lock(&s->entry);
    if (!back || r->retired) {
        pthread_mutex_unlock(&s->entry);
        return 0;
    }
    if (s->st.clock == LOCO_CLOCK_REAL) t = loco_clock_wall(s->clock);
    r->away = 0;
    s->down--;
    s->active++;
    s->returns++;
    fault_event(s, r, LOCO_FAULT_BACK, 0, t);
    reserve_pull(s, r);
    long h = next_round(s, r, t);
    pthread_mutex_unlock(&s->entry);
    cost->stripe_s = loco_protocol_pull(s, r);
    return h;
}

/* --------------------------------------------------------------- the end */

void loco_protocol_finish(loco_protocol *s) {
    pthread_mutex_lock(&s->entry);
    /* a partial buffer: applied on its mean rather than lost */
    if (s->server.started) flush_accumulated(s);
    LOCO_CHECK(!s->snap, "a snapshot left without its job");
    pthread_mutex_unlock(&s->entry);
    loco_server_stop(&s->server);
}

/* ------------------------------------------------------------ checkpoints */

static void save_snapshot(const loco_snapshot *snap, loco_pack *p) {
    loco_pack_i64(p, snap != NULL);
    if (!snap) return;
    loco_pack_i64(p, snap->updates);
    loco_pack_i64(p, snap->local_steps);
    loco_pack_i64(p, snap->tokens);
    loco_pack_i64(p, snap->mark_first);
    loco_pack_i64(p, snap->mark_last);
    loco_pack_f64(p, snap->time_s);
    loco_pack_f64(p, snap->wall_s);
}

static int load_snapshot(loco_protocol *s, loco_unpack *u) {
    if (!loco_unpack_range(u, 0, 1)) return 0;
    loco_snapshot *snap = s->ev ? loco_eval_thread_try_reserve(s->ev) : NULL;
    loco_snapshot scratch;
    if (!snap) snap = &scratch; /* no evaluator: read past it */
    snap->place = s->mt ? loco_metrics_reserve(s->mt) : -1;
    snap->updates = loco_unpack_i64(u);
    snap->local_steps = loco_unpack_i64(u);
    snap->tokens = loco_unpack_i64(u);
    snap->mark_first = loco_unpack_i64(u);
    snap->mark_last = loco_unpack_i64(u);
    snap->time_s = loco_unpack_f64(u);
    snap->wall_s = loco_unpack_f64(u);
    if (snap != &scratch) s->snap = snap;
    return 0;
}

/* A round's state in the checkpoint, in its order */
#define ROUND(f, kind, lo, hi) {offsetof(loco_round, f), LOCO_FIELD_##kind, lo, hi}
static const loco_field round_fields[] = {
    ROUND(v_start, LONG, 0, LOCO_BIG),
    ROUND(h, LONG, 0, LOCO_BIG),
    ROUND(lr_committed, LONG, 0, LOCO_BIG),
    ROUND(lr_live, LONG, 1, INT32_MAX),
    ROUND(start_t, F64, 0, 0),
    ROUND(end_t, F64, 0, 0),
    ROUND(durations.s, U64, 0, 0),
    ROUND(step_s, F64, 0, 0),
    ROUND(retired, INT, 0, 1),
    ROUND(window_done, INT, 0, 1),
    ROUND(status, INT, LOCO_ARRIVAL_APPLIED, LOCO_ARRIVALS - 1),
    ROUND(lost, INT, 0, 1),
    ROUND(away, INT, 0, 1),
    ROUND(fail_at, F64, 0, 0),
    ROUND(back_at, F64, 0, 0),
    ROUND(next_at, F64, 0, 0),
    ROUND(next_fault, INT, 0, INT32_MAX),
    ROUND(faults, LONG, 0, LOCO_BIG),
};
enum { NROUND_FIELDS = sizeof round_fields / sizeof round_fields[0] };

/* The protocol's counters in the checkpoint, in its order (a hi below lo: the workers) */
#define COUNT(f, lo, hi) {offsetof(loco_protocol, f), LOCO_FIELD_LONG, lo, hi}
#define FLAG(f, lo, hi) {offsetof(loco_protocol, f), LOCO_FIELD_INT, lo, hi}
static const loco_field counters[] = {
    COUNT(updates, 0, LOCO_BIG),
    COUNT(version, 0, LOCO_BIG),
    COUNT(local_steps, 0, LOCO_BIG),
    COUNT(budget, 0, LOCO_BIG),
    COUNT(rejected[LOCO_ARRIVAL_NONFINITE], 0, LOCO_BIG),
    COUNT(rejected[LOCO_ARRIVAL_STALE], 0, LOCO_BIG),
    COUNT(evals_skipped, 0, LOCO_BIG),
    COUNT(rejected[LOCO_ARRIVAL_NORM], 0, LOCO_BIG),
    COUNT(rejected[LOCO_ARRIVAL_DIVERGED], 0, LOCO_BIG),
    COUNT(faults, 0, LOCO_BIG),
    COUNT(returns, 0, LOCO_BIG),
    COUNT(dn_count, 0, LOCO_BIG),
    COUNT(dn_N, 0, LOCO_BIG),
    FLAG(down, 0, -1),
    FLAG(active, 0, -1),
    COUNT(accumulated, 0, LOCO_BIG),
    FLAG(win_open, 0, 1),
    FLAG(nmembers, 0, -1),
};
enum { NCOUNTERS = sizeof counters / sizeof counters[0] };

void loco_protocol_save(loco_protocol *s, loco_pack *p) {
    pthread_mutex_lock(&s->entry);
    loco_pack_fields(p, s, counters, NCOUNTERS);
    for (int b = 0; b < LOCO_STALE_BUCKETS; b++) loco_pack_i64(p, s->stale_hist[b]);
    loco_pack_f64(p, s->win_end);
    for (int i = 0; i < s->nmembers; i++) loco_pack_i64(p, s->members[i]);
    save_snapshot(s->snap, p);
    for (int w = 0; w < s->st.workers; w++) loco_pack_fields(p, &s->rounds[w], round_fields, NROUND_FIELDS);
    pthread_mutex_unlock(&s->entry);
}

int loco_protocol_load(loco_protocol *s, loco_unpack *u) {
    const int64_t W = s->st.workers;
    loco_unpack_fields(u, s, counters, NCOUNTERS, W);
    for (int b = 0; b < LOCO_STALE_BUCKETS; b++) s->stale_hist[b] = loco_unpack_range(u, 0, LOCO_BIG);
    s->win_end = loco_unpack_f64(u);
    for (int i = 0; i < s->nmembers; i++) s->members[i] = (int)loco_unpack_range(u, 0, W - 1);
    if (load_snapshot(s, u) != 0) return -1;
    for (int w = 0; w < W; w++) loco_unpack_fields(u, &s->rounds[w], round_fields, NROUND_FIELDS, W);
    return u->bad ? -1 : 0;
}

int loco_protocol_phase(loco_protocol *s, const loco_round *r, double *end) {
    pthread_mutex_lock(&s->entry);
    if (end) *end = s->win_end;
    int phase = r->away && !r->retired ? LOCO_PHASE_AWAY
                : r->retired ? LOCO_PHASE_DONE
                : r->lost ? LOCO_PHASE_FAIL
                : LOCO_PHASE_ARRIVE;
    for (int i = 0; s->win_open && i < s->nmembers; i++) {
        if (s->members[i] != r->id) continue;
        int deadline = isfinite(s->win_end);
        phase = i == 0 && deadline ? LOCO_PHASE_OPENER : LOCO_PHASE_WINDOW;
    }
    pthread_mutex_unlock(&s->entry);
    return phase;
}

long loco_protocol_rejoin(loco_protocol *s, loco_round *r, int opener, double end,
                        loco_arrival_cost *cost) {
    *cost = (loco_arrival_cost){0};
    pthread_mutex_lock(&s->entry);
    cost->status = r->status; /* decided before the checkpoint */
    cost->rejected = r->status != LOCO_ARRIVAL_APPLIED;
    pthread_mutex_unlock(&s->entry);
    return rest_in_window(s, r, opener, end, cost);
}

int loco_protocol_held(loco_protocol *s) {
    pthread_mutex_lock(&s->entry);
    int held = s->held;
    pthread_mutex_unlock(&s->entry);
    return held;
}

void loco_protocol_release(loco_protocol *s) {
    pthread_mutex_lock(&s->entry);
    s->held = 0;
    pthread_mutex_unlock(&s->entry);
}

int loco_protocol_holds_snapshot(loco_protocol *s) {
    pthread_mutex_lock(&s->entry);
    int held = s->snap != NULL;
    pthread_mutex_unlock(&s->entry);
    return held;
}

int loco_protocol_still(loco_protocol *s) {
    pthread_mutex_lock(&s->window_mu);
    int n = s->window_waiting;
    pthread_mutex_unlock(&s->window_mu);
    return n;
}
