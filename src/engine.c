#include "loco/engine.h"

#include <math.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loco/clock.h"
#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/hetero.h"
#include "loco/protocol.h"
#include "loco/topo.h"
#include "loco/settings.h"
#include "loco/worker.h"

typedef struct {
    const loco_engine_in *in;
    int W, B, T;
    loco_topo topo;
    loco_plan plan;
    loco_hetero het;
    loco_globalbuf gb;
    loco_clock clock;
    loco_eval_thread et;
    loco_protocol protocol;
    loco_worker_thread *threads;
    sem_t seats;               /* rounds computed at once, when workers outnumber PUs in the
                                  virtual clock (see make_seats) */
    int has_seats;
    int started;               /* worker threads started */
    double ckpt_wall;          /* wall time of the last checkpoint */
    double ckpt_s, ckpt_write_s; /* seconds the run was held for checkpoints; writing them */
    int nckpt;
    pthread_mutex_t vmu;       /* the latest evaluation, for the progress line */
    double last_val;
    double eval_busy_s;
    loco_fault *faults;        /* parsed from the config's [faults] */
    loco_injection *inject_nan, *inject_diverge;
    int nfaults, ninject_nan, ninject_diverge;
    int done[8];               /* which parts were set up, for teardown */
} engine;

enum { HAS_TOPO, HAS_PLAN, HAS_HET, HAS_GB, HAS_CLOCK, HAS_EVAL, HAS_SERVER };

/* ---------------------------------------------------- from the config */

/* ------------------------------------------------------------- events */

/* one event per mark of the local-step schedule the snapshot stands for (or one) */
static void on_eval(void *ctx, const loco_snapshot *s, double loss) {
    engine *en = ctx;
    loco_eval_event ev = {.async = 1, .updates = s->updates, .local_steps = s->local_steps,
                          .tokens = s->tokens, .time_s = s->time_s, .wall_s = s->wall_s,
                          .val_loss = loss, .at_local_steps = s->mark_first,
                          .last_mark = s->mark_last, .every = en->in->c->eval.every_local_steps,
                          .place = s->place};
    loco_metrics_eval(en->in->mt, &ev);
    pthread_mutex_lock(&en->vmu);
    en->last_val = loss;
    pthread_mutex_unlock(&en->vmu);
}

/* ------------------------------------------------------------ checkpoints */

/* The engine's part of a checkpoint, in this order: the last evaluation, the global
 * buffer, the clock, the server, the events waiting behind the server's pending snapshot,
 * then every worker thread's (equal-sized) part. */

static int bad_checkpoint(loco_err *e) {
    return loco_errf(e, "the checkpoint's state does not fit this run (short or mangled)");
}

static int load_machine(engine *en, loco_err *e) {
    loco_unpack *u = en->in->resume;
    size_t n = en->in->m->nparams;
    en->last_val = loco_unpack_f64(u);
    loco_unpack_floats(u, en->gb.theta, n);
    loco_unpack_floats(u, en->gb.m, n);
    loco_unpack_floats(u, en->gb.a, n);
    return loco_clock_load(&en->clock, u) != 0 ? bad_checkpoint(e) : 0;
}

/* every worker reads its own part on its thread, where its buffers are */
static int load_workers(engine *en, loco_err *e) {
    loco_unpack *u = en->in->resume;
    size_t part = loco_worker_thread_state_bytes(en->in->m->nparams);
    if (u->bad || u->len - u->pos != part * (size_t)en->W) return bad_checkpoint(e);
    for (int w = 0; w < en->W; w++) {
        loco_worker_thread *t = &en->threads[w];
        loco_unpack_begin(&t->resume, u->buf + u->pos + part * (size_t)w, part);
        t->phase = loco_protocol_phase(&en->protocol, t->r, &t->window_end);
    }
    return 0;
}

int loco_engine_describe(const loco_config *c, size_t nparams, loco_unpack *u, char *buf,
                         size_t n, loco_err *e) {
    int W = (int)c->run.workers;
    double last_val = loco_unpack_f64(u);
    float *theta = loco_alloc(nparams * sizeof(float));
    if (!theta) return loco_errf(e, "out of memory for %zu parameters", nparams);
    loco_unpack_floats(u, theta, nparams);
    int finite = loco_all_finite(theta, nparams);
    free(theta);
    loco_unpack_skip(u, 2 * nparams * sizeof(float)); /* m and a */
    loco_clock clock;
    loco_protocol protocol;
    loco_protocol_settings st;
    loco_protocol_settings_from_config(c, 1, &st);
    if (loco_clock_init(&clock, c->run.clock, W, e) != 0) return -1;
    int rc = loco_protocol_init(&protocol, &st, NULL, &clock, NULL, NULL, NULL, e);
    loco_metrics scratch; /* the waiting events are read past */
    loco_metrics_open(&scratch, NULL, 1, 0, NULL);
    if (rc == 0 && (loco_clock_load(&clock, u) != 0 || loco_protocol_load(&protocol, u) != 0 ||
                    loco_metrics_load_waiting(&scratch, u) != 0 ||
                    u->len - u->pos != loco_worker_thread_state_bytes(nparams) * (size_t)W))
        rc = loco_errf(e, "its state is short or mangled, or of another run");
    if (rc == 0 && !finite) rc = loco_errf(e, "its global parameters are not all finite");
    if (rc == 0) {
        int phases[LOCO_PHASE_AWAY + 1] = {0};
        for (int w = 0; w < W; w++) phases[loco_protocol_phase(&protocol, loco_protocol_round(&protocol, w), NULL)]++;
        snprintf(buf, n, "asynchronous run (%s, %d workers, %s clock) at %ld server updates and "
                 "%ld local steps, time %.6g s, last val loss %.4f; %d workers with a round to "
                 "deliver, %d in a window%s, %d failed or away, %d done",
                 loco_enum_name(loco_outer_methods, c->outer.method), W,
                 loco_enum_name(loco_clock_kinds, c->run.clock), protocol.updates,
                 protocol.local_steps,
                 /* the real clock's time is the wall seconds it had run, saved as its offset */
                 c->run.clock == LOCO_CLOCK_REAL ? clock.offset : clock.now, last_val,
                 phases[LOCO_PHASE_ARRIVE],
                 phases[LOCO_PHASE_WINDOW] + phases[LOCO_PHASE_OPENER],
                 phases[LOCO_PHASE_OPENER] ? " (with a deadline)" : "",
                 phases[LOCO_PHASE_FAIL] + phases[LOCO_PHASE_AWAY], phases[LOCO_PHASE_DONE]);
    }
    if (protocol.rounds) loco_protocol_free(&protocol);
    loco_clock_free(&clock);
    loco_metrics_close(&scratch, NULL);
    return rc;
}

/* the run is still: every worker waits for a turn or for a window to close, or is done,
 * and nothing is left to walk */
static int still(engine *en) {
    int n = loco_clock_waiting(&en->clock) + loco_protocol_still(&en->protocol);
    for (int w = 0; w < en->W; w++)
        n += atomic_load(&en->threads[w].stats.activity) == LOCO_ACT_DONE;
    return n == en->W && loco_server_idle(&en->protocol.server);
}

static int checkpoint(engine *en, loco_err *e) {
    const loco_engine_in *in = en->in;
    double t0 = loco_now();
    loco_clock_pause(&en->clock);
    while (!still(en)) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    loco_eval_thread_drain(&en->et, loco_protocol_holds_snapshot(&en->protocol));
    double t1 = loco_now();
    loco_state_writer w;
    int rc = in->begin(in->ctx, &w, e);
    if (rc == 0) {
        size_t n = in->m->nparams;
        pthread_mutex_lock(&en->vmu);
        loco_pack_f64(&w.p, en->last_val);
        pthread_mutex_unlock(&en->vmu);
        loco_pack_floats(&w.p, en->gb.theta, n);
        loco_pack_floats(&w.p, en->gb.m, n);
        loco_pack_floats(&w.p, en->gb.a, n);
        loco_clock_save(&en->clock, &w.p);
        loco_protocol_save(&en->protocol, &w.p);
        loco_metrics_save_waiting(in->mt, &w.p);
        for (int i = 0; i < en->W; i++) loco_worker_thread_save(&en->threads[i], &w.p);
        rc = loco_state_commit(&w, e);
    }
    loco_protocol_release(&en->protocol);
    loco_clock_resume(&en->clock);
    en->ckpt_write_s += loco_now() - t1;
    en->ckpt_s += loco_now() - t0;
    en->nckpt++;
    return rc;
}

/* ------------------------------------------------------------- set-up */

static int setup_machine(engine *en, loco_err *e) {
    const loco_config *c = en->in->c;
    if (loco_topo_open(&en->topo, NULL, e) != 0) return -1;
    en->done[HAS_TOPO] = 1;
    int virtual_ = c->run.clock == LOCO_CLOCK_VIRTUAL;
    if (loco_topo_run_plan(&en->topo, en->W, c->run.pin, virtual_, &en->plan, e) != 0) return -1;
    en->done[HAS_PLAN] = 1;
    if (en->plan.seated)
        loco_metrics_say(en->in->mt, "loco: %d workers on %d hardware threads: the virtual "
                         "clock computes %d rounds at a time", en->W, en->topo.npus, en->topo.npus);
    else if (en->plan.oversubscribed)
        loco_metrics_say(en->in->mt, "loco: warning: %d workers on %d hardware threads: "
                         "oversubscribed, workers share cores", en->W, en->topo.npus);
    loco_hetero_settings hs;
    loco_hetero_settings_from_config(c, &hs);
    if (loco_hetero_init(&en->het, &hs, e) != 0) return -1;
    en->done[HAS_HET] = 1;
    if (loco_hetero_parse_faults(c->faults.fail, en->W, &en->faults, &en->nfaults, e) != 0 ||
        loco_hetero_parse_injections(c->faults.inject_nan, en->W, &en->inject_nan,
                                     &en->ninject_nan, e) != 0 ||
        loco_hetero_parse_injections(c->faults.inject_diverge, en->W, &en->inject_diverge,
                                     &en->ninject_diverge, e) != 0)
        return -1;
    if (loco_globalbuf_init(&en->gb, en->in->init, en->in->m->nparams, c->buffer.stripe_kib,
                            c->buffer.lock, &en->topo, e) != 0)
        return -1;
    en->done[HAS_GB] = 1;
    if (loco_clock_init(&en->clock, c->run.clock, en->W, e) != 0) return -1;
    en->done[HAS_CLOCK] = 1;
    return en->in->resume ? load_machine(en, e) : 0;
}

static int setup_threads(engine *en, loco_err *e) {
    const loco_engine_in *in = en->in;
    const loco_config *c = in->c;
    if (loco_eval_thread_start(&en->et, in->m, in->d, en->B, en->T, (int)c->eval.batches,
                               &en->topo, &en->plan.places[en->W + 1], on_eval, en, e) != 0)
        return -1;
    en->done[HAS_EVAL] = 1;
    en->threads = calloc((size_t)en->W, sizeof *en->threads);
    if (!en->threads) return loco_errf(e, "out of memory");
    loco_protocol_settings st;
    loco_protocol_settings_from_config(c, (long)en->B * en->T, &st);
    st.faults = en->faults;
    st.nfaults = en->nfaults;
    st.ckpt_every = in->begin ? in->ckpt_updates : 0;
    if (loco_protocol_init(&en->protocol, &st, &en->gb, &en->clock, &en->het, &en->et, in->mt, e) != 0)
        return -1;
    en->done[HAS_SERVER] = 1;
    if (in->resume && (loco_protocol_load(&en->protocol, in->resume) != 0 ||
                       loco_metrics_load_waiting(in->mt, in->resume) != 0))
        return bad_checkpoint(e);
    return loco_protocol_start(&en->protocol, &en->topo, &en->plan.places[en->W], e);
}

/* theta(0)'s evaluation, when the run evaluates at all: every curve starts at x = 0 */
static void evaluate_start(engine *en) {
    const loco_config *c = en->in->c;
    if (c->eval.every_updates <= 0 && c->eval.every_local_steps <= 0) return;
    loco_snapshot *s = loco_eval_thread_try_reserve(&en->et);
    LOCO_CHECK(s != NULL, "no snapshot slot free before the run starts");
    s->updates = s->local_steps = s->tokens = s->mark_first = s->mark_last = 0;
    s->time_s = s->wall_s = 0;
    s->place = loco_metrics_reserve(en->in->mt);
    memcpy(s->params, en->in->init, en->in->m->nparams * sizeof(float));
    loco_eval_thread_ready(&en->et, s);
}

static int make_seats(engine *en, loco_err *e) {
    if (!en->plan.seated) return 0; /* loco_topo_run_plan says why */
    if (sem_init(&en->seats, 0, (unsigned)en->topo.npus) != 0)
        return loco_errf(e, "cannot make the workers' seats");
    en->has_seats = 1;
    for (int w = 0; w < en->W; w++) en->threads[w].seats = &en->seats;
    return 0;
}

/* Every worker's first round is handed out in worker order before any thread runs, then
 * the threads start. */
static int start_workers(engine *en, loco_err *e) {
    const loco_engine_in *in = en->in;
    if (!in->resume) evaluate_start(en);
    for (int w = 0; w < en->W; w++) {
        loco_round *r = loco_protocol_round(&en->protocol, w);
        if (!in->resume) loco_protocol_begin(&en->protocol, r);
        en->threads[w] = (loco_worker_thread){
            .r = r, .protocol = &en->protocol, .m = in->m, .d = in->d, .clock_kind = in->c->run.clock,
            .slowdown_mode = in->c->hetero.mode, .init = in->init, .het = &en->het,
            .clock = &en->clock, .topo = &en->topo, .place = &en->plan.places[w], .phase = -1,
            .inject_nan = en->inject_nan, .ninject_nan = en->ninject_nan,
            .inject_diverge = en->inject_diverge, .ninject_diverge = en->ninject_diverge};
        loco_replica_opts_from_config(in->c, &en->threads[w].opts);
    }
    if (in->resume && load_workers(en, e) != 0) return -1;
    if (make_seats(en, e) != 0) return -1;
    for (; en->started < en->W; en->started++) {
        if (loco_worker_thread_start(&en->threads[en->started], e) != 0) {
            /* the rest never run: give their rounds back so the started ones finish */
            for (int w = en->started + 1; w < en->W; w++) {
                loco_protocol_abandon(&en->protocol, loco_protocol_round(&en->protocol, w));
                atomic_store(&en->threads[w].stats.activity, LOCO_ACT_DONE);
            }
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ progress */

static long total_steps(const engine *en) {
    long s = 0;
    for (int w = 0; w < en->W; w++) s += atomic_load(&en->threads[w].stats.steps);
    return s;
}

static int all_done(const engine *en) {
    for (int w = 0; w < en->W; w++)
        if (atomic_load(&en->threads[w].stats.activity) != LOCO_ACT_DONE) return 0;
    return 1;
}

/* one letter per worker: C computing, s emulated slowdown, w waiting (turn, window,
 * stripes), X failed (away), . done */
static void activity_view(const engine *en, char *buf, size_t n) {
    static const char letters[] = {[LOCO_ACT_START] = '-', [LOCO_ACT_COMPUTE] = 'C',
                                   [LOCO_ACT_SLOW] = 's', [LOCO_ACT_SYNC] = 'w',
                                   [LOCO_ACT_DONE] = '.', [LOCO_ACT_AWAY] = 'X'};
    size_t k = 0;
    for (int w = 0; w < en->W && k + 1 < n; w++)
        buf[k++] = letters[atomic_load(&en->threads[w].stats.activity)];
    buf[k] = '\0';
}

static void progress(engine *en, int force) {
    double wall = loco_clock_wall(&en->clock);
    loco_protocol_stats ss;
    loco_protocol_read_stats(&en->protocol, &ss);
    long steps = total_steps(en);
    pthread_mutex_lock(&en->vmu);
    double val = en->last_val;
    pthread_mutex_unlock(&en->vmu);
    char view[80];
    activity_view(en, view, sizeof view);
    if (steps > ss.planned) steps = ss.planned; /* the steps of lost rounds are not counted twice */
    double frac = ss.planned > 0 ? (double)steps / (double)ss.planned : 0;
    loco_progress p = {.step = steps, .steps = ss.planned, .updates = ss.updates, .loss = NAN,
                       .val = val, .workers = view,
                       .tokens_per_s = wall > 0 ? (double)steps * en->B * en->T / wall : 0,
                       .eta_s = frac > 0 ? wall * (1 - frac) / frac : 0};
    loco_metrics_progress(en->in->mt, force, &p);
}

/* whether a checkpoint is due now: the server holds the run for one of an update count,
 * or the wall-time interval has passed */
static int checkpoint_due(engine *en) {
    const loco_engine_in *in = en->in;
    if (!in->begin) return 0;
    if (loco_protocol_held(&en->protocol)) return 1;
    return loco_state_due(0, 0, loco_clock_wall(&en->clock), en->ckpt_wall, in->ckpt_seconds);
}

static void take_checkpoint(engine *en) {
    loco_err e;
    if (checkpoint(en, &e) != 0) loco_metrics_say(en->in->mt, "loco: checkpoint failed: %s", e.msg);
    en->ckpt_wall = loco_clock_wall(&en->clock);
}

/* The main thread while the workers run: writes the events out, shows progress, takes
 * the checkpoints, and passes on the stop request. */
static void watch(engine *en, loco_engine_out *out) {
    int tty = en->in->mt->term.tty;
    double every = tty ? 0.25 : 15.0, last = 0;
    en->ckpt_wall = loco_clock_wall(&en->clock);
    loco_protocol_stats ss;
    /* the last update can make a checkpoint due after every worker is done */
    while (!all_done(en) || loco_protocol_held(&en->protocol)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        loco_metrics_flush(en->in->mt);
        if (en->in->stop && *en->in->stop && !out->stopped) {
            out->stopped = 1;
            if (en->in->begin) take_checkpoint(en);
            loco_protocol_stop_early(&en->protocol);
            loco_metrics_say(en->in->mt, "loco: stopping: running rounds finish, no new ones");
        } else if (!out->stopped && checkpoint_due(en)) { /* see loco_protocol_stop_early */
            take_checkpoint(en);
        }
        double now = loco_clock_wall(&en->clock);
        if (now - last >= every) {
            progress(en, !tty);
            last = now;
        }
    }
    progress(en, 1);
    loco_protocol_read_stats(&en->protocol, &ss);
    out->incomplete = !out->stopped && ss.local_steps < ss.planned;
    if (out->incomplete)
        loco_metrics_say(en->in->mt, "loco: every worker failed for good: %ld of the %ld local "
                         "steps were done", ss.local_steps, ss.planned);
}

/* ------------------------------------------------------------- summary */

static int summarise(engine *en, loco_engine_out *out, loco_err *e) {
    const loco_config *c = en->in->c;
    loco_protocol_stats ss;
    loco_protocol_read_stats(&en->protocol, &ss);
    out->rows = calloc((size_t)en->W, sizeof *out->rows);
    if (!out->rows) return loco_errf(e, "out of memory");
    for (int w = 0; w < en->W; w++) {
        const loco_worker_stats *st = &en->threads[w].stats;
        long steps = atomic_load(&st->steps);
        out->rows[w] = (loco_worker_row){
            .slowdown = en->het.slowdown[w], .rounds = st->rounds, .steps = steps,
            .tokens = steps * en->B * en->T, .rejected = st->rejected, .compute_s = st->compute_s,
            .slowdown_s = st->slowdown_s, .lockwait_s = st->lockwait_s, .idle_s = st->idle_s,
            .faults = loco_protocol_round(&en->protocol, w)->faults, .ftz_daz = st->ftz_daz,
            .last_lr = st->last_lr};
        out->wait_s += st->lockwait_s + st->idle_s;
    }
    loco_summary *s = &out->summary;
    s->method = loco_enum_name(loco_outer_methods, c->outer.method);
    s->clock = loco_enum_name(loco_clock_kinds, c->run.clock);
    s->workers = en->W;
    s->virtual_clock = c->run.clock == LOCO_CLOCK_VIRTUAL;
    s->updates = ss.updates;
    s->local_steps = ss.local_steps;
    s->time_s = out->time_s;
    s->checkpoints = en->nckpt;
    s->checkpoint_s = en->ckpt_s;
    s->checkpoint_write_s = en->ckpt_write_s;
    s->server_busy = out->wall_s > 0 ? ss.busy_s / out->wall_s : 0;
    s->evaluator_busy = out->wall_s > 0 ? en->eval_busy_s / out->wall_s : 0;
    memcpy(s->rejected, ss.rejected, sizeof s->rejected);
    s->faults = ss.faults;
    s->returns = ss.returns;
    s->evals_skipped = ss.evals_skipped;
    memcpy(s->stale_hist, ss.stale_hist, sizeof s->stale_hist);
    s->dc_held = ss.dc_held, s->dc_all = ss.dc_all;
    unsigned long waits;
    loco_globalbuf_contention(&en->gb, &waits, &s->stripe_wait_s);
    s->stripe_waits = (long)waits;
    s->stripes = en->gb.nstripes;
    s->stripe_kib = c->buffer.stripe_kib;
    s->rows = out->rows;
    out->updates = ss.updates;
    out->local_steps = ss.local_steps;
    out->tokens = ss.local_steps * en->B * en->T;
    return 0;
}

/* --------------------------------------------------------------- the run */

static void teardown(engine *en) {
    if (en->done[HAS_SERVER]) loco_protocol_free(&en->protocol);
    if (en->done[HAS_EVAL]) loco_eval_thread_stop(&en->et);
    free(en->threads);
    if (en->has_seats) sem_destroy(&en->seats);
    if (en->done[HAS_CLOCK]) loco_clock_free(&en->clock);
    if (en->done[HAS_GB]) loco_globalbuf_free(&en->gb);
    if (en->done[HAS_HET]) loco_hetero_free(&en->het);
    if (en->done[HAS_PLAN]) loco_plan_free(&en->plan);
    if (en->done[HAS_TOPO]) loco_topo_close(&en->topo);
    free(en->faults);
    free(en->inject_nan);
    free(en->inject_diverge);
    pthread_mutex_destroy(&en->vmu);
}

/* joins what started; the first failure's message wins */
static int join_all(engine *en, int rc, loco_err *e) {
    for (int w = 0; w < en->started; w++) {
        if (loco_worker_thread_join(&en->threads[w]) != 0 && rc == 0) {
            *e = en->threads[w].err;
            rc = -1;
        }
    }
    if (en->done[HAS_SERVER]) loco_protocol_finish(&en->protocol);
    return rc;
}

static int finish(engine *en, loco_engine_out *out, loco_err *e) {
    const loco_engine_in *in = en->in;
    out->wall_s = loco_clock_wall(&en->clock);
    out->time_s = in->c->run.clock == LOCO_CLOCK_VIRTUAL ? loco_clock_time(&en->clock) : out->wall_s;
    out->theta = loco_alloc_for(in->m->nparams * sizeof(float), NULL, "the final parameters", e);
    if (!out->theta) return -1;
    memcpy(out->theta, en->gb.theta, in->m->nparams * sizeof(float));
    if (loco_eval_final(in->m, in->d, en->B, en->T, (int)loco_config_final_batches(in->c),
                        out->theta, &out->final_val, &out->final_se, e) != 0)
        return -1;
    return summarise(en, out, e);
}

int loco_engine_run(const loco_engine_in *in, loco_engine_out *out, loco_err *e) {
    engine en;
    memset(&en, 0, sizeof en);
    memset(out, 0, sizeof *out);
    en.in = in;
    en.W = (int)in->c->run.workers;
    en.B = (int)in->c->train.batch;
    en.T = (int)in->c->model.seq_len;
    en.last_val = NAN;
    pthread_mutex_init(&en.vmu, NULL);
    int rc = setup_machine(&en, e);
    if (rc == 0) rc = setup_threads(&en, e);
    if (rc == 0) rc = start_workers(&en, e);
    if (rc != 0 && en.started > 0) loco_protocol_stop_early(&en.protocol);
    if (en.started > 0) watch(&en, out);
    rc = join_all(&en, rc, e);
    if (en.done[HAS_EVAL]) {
        en.eval_busy_s = loco_eval_thread_stop(&en.et); /* evaluates what is pending */
        en.done[HAS_EVAL] = 0;
    }
    if (rc == 0) rc = finish(&en, out, e);
    teardown(&en);
    return rc;
}

void loco_engine_out_free(loco_engine_out *out) {
    free(out->theta);
    free(out->rows);
    memset(out, 0, sizeof *out);
}
