#include "loco/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loco/clock.h"
#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/hetero.h"
#include "loco/server.h"
#include "loco/topo.h"
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
    loco_server server;
    loco_round *rounds;
    loco_worker_thread *threads;
    int started;               /* worker threads started */
    pthread_mutex_t vmu;       /* the latest evaluation, for the progress line */
    double last_val;
    double eval_busy_s;
    int done[8];               /* which parts were set up, for teardown */
} engine;

enum { HAS_TOPO, HAS_PLAN, HAS_HET, HAS_GB, HAS_CLOCK, HAS_EVAL, HAS_SERVER };

static const char *method_name(int m) {
    static const char *names[] = {"single", "sync", "async", "async-dn", "async-buffer",
                                  "async-sgd"};
    return names[m];
}

/* ------------------------------------------------------------- events */

static void on_arrival(void *ctx, const loco_arrival *a) {
    engine *g = ctx;
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "arrival");
    loco_json_int(&j, "worker", a->worker);
    loco_json_int(&j, "ticket", a->ticket);
    loco_json_int(&j, "staleness", a->staleness);
    loco_json_int(&j, "local_steps", a->local_steps);
    loco_json_int(&j, "updates", a->updates);
    loco_json_num(&j, "time_s", a->time_s);
    loco_json_num(&j, "wall_s", a->wall_s);
    loco_json_str(&j, "status", a->status);
    loco_json_end(&j);
    loco_metrics_event(g->in->mt, &j);
    loco_json_free(&j);
}

static void on_eval(void *ctx, const loco_snapshot *s, double loss) {
    engine *g = ctx;
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "eval");
    loco_json_int(&j, "updates", s->updates);
    loco_json_int(&j, "local_steps", s->local_steps);
    loco_json_int(&j, "tokens", s->tokens);
    loco_json_num(&j, "time_s", s->time_s);
    loco_json_num(&j, "wall_s", s->wall_s);
    loco_json_val(&j, "", loss, g->in->byte_level);
    loco_json_end(&j);
    loco_metrics_event(g->in->mt, &j);
    loco_json_free(&j);
    pthread_mutex_lock(&g->vmu);
    g->last_val = loss;
    pthread_mutex_unlock(&g->vmu);
}

/* ------------------------------------------------------------- set-up */

static int setup_machine(engine *g, loco_err *e) {
    const loco_config *c = g->in->c;
    if (loco_topo_open(&g->topo, NULL, e) != 0) return -1;
    g->done[HAS_TOPO] = 1;
    if (loco_topo_plan(&g->topo, g->W, c->run.pin, &g->plan, e) != 0) return -1;
    g->done[HAS_PLAN] = 1;
    if (g->plan.oversubscribed)
        loco_metrics_say(g->in->mt, "loco: warning: %d workers on %d hardware threads: "
                         "oversubscribed, workers share cores", g->W, g->topo.npus);
    if (loco_hetero_init(&g->het, g->W, c->hetero.level, c->hetero.slowdown, c->hetero.jitter,
                         c->hetero.speed_change, e) != 0)
        return -1;
    g->done[HAS_HET] = 1;
    if (loco_globalbuf_init(&g->gb, g->in->init, g->in->m->nparams, c->buffer.stripe_kib,
                            c->buffer.lock, &g->topo, e) != 0)
        return -1;
    g->done[HAS_GB] = 1;
    if (loco_clock_init(&g->clock, c->run.clock, g->W, e) != 0) return -1;
    g->done[HAS_CLOCK] = 1;
    return 0;
}

static int setup_threads(engine *g, loco_err *e) {
    const loco_engine_in *in = g->in;
    const loco_config *c = in->c;
    if (loco_eval_thread_start(&g->et, in->m, in->d, g->B, g->T, (int)c->eval.batches, &g->topo,
                               &g->plan.places[g->W + 1], on_eval, g, e) != 0)
        return -1;
    g->done[HAS_EVAL] = 1;
    g->rounds = calloc((size_t)g->W, sizeof *g->rounds);
    g->threads = calloc((size_t)g->W, sizeof *g->threads);
    if (!g->rounds || !g->threads) return loco_errf(e, "out of memory");
    for (int w = 0; w < g->W; w++) {
        g->rounds[w].id = w;
        loco_rng_seed(&g->rounds[w].rng, (uint64_t)c->run.seed, 5000 + (uint64_t)w);
    }
    if (loco_server_init(&g->server, c, &g->gb, &g->clock, &g->het, &g->et, g->rounds,
                         g->B * g->T, e) != 0)
        return -1;
    g->server.on_arrival = on_arrival;
    g->server.ctx = g;
    g->done[HAS_SERVER] = 1;
    return loco_server_start(&g->server, &g->topo, &g->plan.places[g->W], e);
}

/* Every worker's first round is handed out in worker order before any thread runs, then
 * the threads start. */
static int start_workers(engine *g, loco_err *e) {
    const loco_engine_in *in = g->in;
    for (int w = 0; w < g->W; w++) loco_server_begin(&g->server, &g->rounds[w]);
    for (int w = 0; w < g->W; w++) {
        g->threads[w] = (loco_worker_thread){
            .r = &g->rounds[w], .server = &g->server, .m = in->m, .d = in->d, .c = in->c,
            .init = in->init, .het = &g->het, .clock = &g->clock, .topo = &g->topo,
            .place = &g->plan.places[w]};
    }
    for (; g->started < g->W; g->started++) {
        if (loco_worker_thread_start(&g->threads[g->started], e) != 0) {
            /* the rest never run: give their rounds back so the started ones finish */
            for (int w = g->started + 1; w < g->W; w++)
                loco_server_abandon(&g->server, &g->rounds[w]);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ progress */

static long total_steps(const engine *g) {
    long s = 0;
    for (int w = 0; w < g->W; w++) s += atomic_load(&g->rounds[w].steps);
    return s;
}

static int all_done(const engine *g) {
    for (int w = 0; w < g->W; w++)
        if (atomic_load(&g->rounds[w].activity) != LOCO_ACT_DONE) return 0;
    return 1;
}

/* one letter per worker: C computing, s emulated slowdown, w waiting (turn, window,
 * stripes), . done */
static void activity_view(const engine *g, char *buf, size_t n) {
    static const char letters[] = {'-', 'C', 's', 'w', '.'};
    size_t k = 0;
    for (int w = 0; w < g->W && k + 1 < n; w++) buf[k++] = letters[atomic_load(&g->rounds[w].activity)];
    buf[k] = '\0';
}

static void progress(engine *g, int force, int show) {
    double wall = loco_clock_wall(&g->clock);
    long steps = total_steps(g);
    pthread_mutex_lock(&g->server.entry);
    long budget = g->server.planned, updates = g->server.updates;
    pthread_mutex_unlock(&g->server.entry);
    pthread_mutex_lock(&g->vmu);
    double val = g->last_val;
    pthread_mutex_unlock(&g->vmu);
    char view[80], eta[32], vals[32] = "";
    activity_view(g, view, sizeof view);
    double frac = budget > 0 ? (double)steps / (double)budget : 0;
    loco_format_duration(frac > 0 ? wall * (1 - frac) / frac : 0, eta, sizeof eta);
    if (isfinite(val)) snprintf(vals, sizeof vals, " | val %.4f", val);
    if (!show) return;
    loco_metrics_progress(g->in->mt, force,
                          "updates %ld%s | %.0f tok/s | steps %ld/%ld | [%s] | ETA %s",
                          updates, vals,
                          wall > 0 ? (double)steps * g->B * g->T / wall : 0, steps, budget, view,
                          eta);
}

/* The main thread while the workers run: progress, and the stop request. */
static void watch(engine *g, loco_engine_out *out) {
    int tty = g->in->mt->tty;
    double every = tty ? 0.25 : 15.0, last = 0;
    /* the line is built every tick (cheap) and shown every `every` seconds */
    while (!all_done(g)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (g->in->stop && *g->in->stop && !out->stopped) {
            out->stopped = 1;
            loco_server_stop_early(&g->server);
            loco_metrics_say(g->in->mt, "loco: stopping: running rounds finish, no new ones");
        }
        double now = loco_clock_wall(&g->clock);
        int show = now - last >= every;
        progress(g, show && !tty, show);
        if (show) last = now;
    }
    progress(g, 1, 1);
}

/* ------------------------------------------------------------- summary */

static void worker_rows(const engine *g, loco_json *j) {
    loco_json_open(j, "per_worker", '[');
    for (int w = 0; w < g->W; w++) {
        const loco_round *r = &g->rounds[w];
        loco_json_open(j, NULL, '{');
        loco_json_int(j, "worker", w);
        loco_json_num(j, "slowdown", g->het.slowdown[w]);
        loco_json_int(j, "rounds", r->rounds);
        long steps = atomic_load(&r->steps);
        loco_json_int(j, "steps", steps);
        loco_json_int(j, "tokens", steps * g->B * g->T);
        loco_json_num(j, "compute_s", r->compute_s);
        loco_json_num(j, "slowdown_s", r->slow_s);
        loco_json_num(j, "lockwait_s", r->lockwait_s);
        loco_json_num(j, "idle_s", r->idle_s);
        loco_json_int(j, "rejected", r->rejects);
        loco_json_close(j, '}');
    }
    loco_json_close(j, ']');
}

/* the per-worker part of the summary, for people */
static void say_workers(const engine *g, const loco_engine_out *out) {
    loco_metrics *mt = g->in->mt;
    loco_metrics_say(mt, "worker  slowdown  rounds  steps  compute_s  slowdown_s  wait_s  rejected");
    for (int w = 0; w < g->W; w++) {
        const loco_round *r = &g->rounds[w];
        loco_metrics_say(mt, "%6d  %8.2f  %6ld  %5ld  %9.1f  %10.1f  %6.1f  %8ld", w,
                         g->het.slowdown[w], r->rounds, (long)atomic_load(&r->steps), r->compute_s,
                         r->slow_s, r->lockwait_s + r->idle_s, r->rejects);
    }
    double stale = 0;
    long n = 0;
    for (int b = 0; b < LOCO_STALE_BUCKETS; b++) {
        stale += (double)b * g->server.stale_hist[b];
        n += g->server.stale_hist[b];
    }
    loco_metrics_say(mt, "%ld server updates, mean staleness %.2f, server thread busy %.1f%%",
                     out->updates, n > 0 ? stale / n : 0,
                     out->wall_s > 0 ? 100 * g->server.busy_s / out->wall_s : 0);
}

static void summarise(const engine *g, loco_json *j, const loco_engine_out *out) {
    const loco_config *c = g->in->c;
    const loco_server *s = &g->server;
    loco_json_str(j, "method", method_name(c->outer.method));
    loco_json_str(j, "clock", c->run.clock == LOCO_CLOCK_VIRTUAL ? "virtual" : "real");
    loco_json_int(j, "workers", g->W);
    loco_json_int(j, "updates", out->updates);
    loco_json_int(j, "local_steps", out->local_steps);
    loco_json_num(j, "time_s", out->time_s);
    if (c->run.clock == LOCO_CLOCK_VIRTUAL)
        loco_json_num(j, "virtual_tokens_per_s", out->time_s > 0 ? out->tokens / out->time_s : 0);
    loco_json_num(j, "server_busy", out->wall_s > 0 ? s->busy_s / out->wall_s : 0);
    loco_json_num(j, "evaluator_busy", out->wall_s > 0 ? g->eval_busy_s / out->wall_s : 0);
    loco_json_int(j, "rejected_nonfinite", s->rejected_nonfinite);
    loco_json_int(j, "rejected_stale", s->rejected_stale);
    loco_json_open(j, "staleness_hist", '[');
    for (int b = 0; b < LOCO_STALE_BUCKETS; b++) loco_json_int(j, NULL, s->stale_hist[b]);
    loco_json_close(j, ']');
    unsigned long waits;
    double wait_s;
    loco_globalbuf_contention(&g->gb, &waits, &wait_s);
    loco_json_int(j, "stripes", g->gb.nstripes);
    loco_json_int(j, "stripe_kib", c->buffer.stripe_kib);
    loco_json_int(j, "stripe_waits", (long)waits);
    loco_json_num(j, "stripe_wait_s", wait_s);
    worker_rows(g, j);
}

/* --------------------------------------------------------------- the run */

static void teardown(engine *g) {
    if (g->done[HAS_SERVER]) loco_server_free(&g->server);
    if (g->done[HAS_EVAL]) loco_eval_thread_stop(&g->et);
    free(g->rounds);
    free(g->threads);
    if (g->done[HAS_CLOCK]) loco_clock_free(&g->clock);
    if (g->done[HAS_GB]) loco_globalbuf_free(&g->gb);
    if (g->done[HAS_HET]) loco_hetero_free(&g->het);
    if (g->done[HAS_PLAN]) loco_plan_free(&g->plan);
    if (g->done[HAS_TOPO]) loco_topo_close(&g->topo);
    pthread_mutex_destroy(&g->vmu);
}

/* joins what started; the first failure's message wins */
static int join_all(engine *g, int rc, loco_err *e) {
    for (int w = 0; w < g->started; w++) {
        if (loco_worker_thread_join(&g->threads[w]) != 0 && rc == 0) {
            *e = g->threads[w].err;
            rc = -1;
        }
    }
    if (g->done[HAS_SERVER]) loco_server_finish(&g->server);
    return rc;
}

static int finish(engine *g, loco_engine_out *out, loco_err *e) {
    const loco_engine_in *in = g->in;
    out->wall_s = loco_clock_wall(&g->clock);
    out->time_s = in->c->run.clock == LOCO_CLOCK_VIRTUAL ? loco_clock_time(&g->clock) : out->wall_s;
    out->updates = g->server.updates;
    out->local_steps = g->server.local_steps;
    out->tokens = out->local_steps * g->B * g->T;
    for (int w = 0; w < g->W; w++) out->wait_s += g->rounds[w].lockwait_s + g->rounds[w].idle_s;
    out->theta = loco_alloc(in->m->nparams * sizeof(float));
    if (!out->theta) return loco_errf(e, "out of memory");
    memcpy(out->theta, g->gb.theta, in->m->nparams * sizeof(float));
    loco_evaluator ev;
    if (loco_evaluator_init(&ev, in->m, in->d, g->B, g->T, (int)in->c->eval.batches, e) != 0)
        return -1;
    out->final_val = loco_evaluator_val_loss(&ev, out->theta);
    loco_evaluator_free(&ev);
    return 0;
}

int loco_engine_run(const loco_engine_in *in, loco_json *summary, loco_engine_out *out,
                    loco_err *e) {
    engine g;
    memset(&g, 0, sizeof g);
    memset(out, 0, sizeof *out);
    g.in = in;
    g.W = (int)in->c->run.workers;
    g.B = (int)in->c->train.batch;
    g.T = (int)in->c->model.seq_len;
    g.last_val = NAN;
    pthread_mutex_init(&g.vmu, NULL);
    int rc = setup_machine(&g, e);
    if (rc == 0) rc = setup_threads(&g, e);
    if (rc == 0) rc = start_workers(&g, e);
    if (rc != 0 && g.started > 0) loco_server_stop_early(&g.server);
    if (g.started > 0) watch(&g, out);
    rc = join_all(&g, rc, e);
    if (g.done[HAS_EVAL]) {
        g.eval_busy_s = loco_eval_thread_stop(&g.et); /* evaluates what is pending */
        g.done[HAS_EVAL] = 0;
    }
    if (rc == 0) rc = finish(&g, out, e);
    if (rc == 0) {
        summarise(&g, summary, out);
        say_workers(&g, out);
    }
    teardown(&g);
    return rc;
}
