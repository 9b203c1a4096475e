/* server: the outer protocol of asynchronous Local-SGD and the thread that sweeps.
 * Owns the arrival order (the server version), the outer rule each arrival gets
 * (pure-add rules are applied by the arriving worker itself, momentum rules are swept
 * by the dedicated server thread while the worker pulls behind the sweep), staleness
 * treatment and rejection of non-finite deltas, grace windows and the sync barrier,
 * the budget of local steps and DyLU step counts, and the snapshots handed to the
 * evaluator. Knows workers only through loco_round: their buffers and round state. */
#ifndef LOCO_SERVER_H
#define LOCO_SERVER_H

#include <pthread.h>
#include <stdatomic.h>

#include "loco/clock.h"
#include "loco/config.h"
#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/hetero.h"
#include "loco/outer.h"
#include "loco/topo.h"

enum { LOCO_STALE_BUCKETS = 33 };   /* staleness 0..31, then 32 and more */

/* What a worker does now, for the progress line. */
enum { LOCO_ACT_START, LOCO_ACT_COMPUTE, LOCO_ACT_SLOW, LOCO_ACT_SYNC, LOCO_ACT_DONE };

/* One worker as the protocol sees it: its buffers (n floats each, owned by the worker)
 * and its round. The worker fills delta and finite before arriving. */
typedef struct {
    int id;
    float *params;          /* the replica: theta_local, and where pulls land */
    float *theta0;          /* theta_start of the round (pulls land here too) */
    float *delta;           /* g = theta_start - theta_local */
    int finite;             /* delta holds no NaN or Inf */
    int rejected;           /* the last arrival was rejected */
    long v_start;           /* server version the round started from */
    long h;                 /* inner steps of the round */
    double start_t;         /* round start (virtual or wall seconds) */
    loco_rng rng;           /* durations (virtual) or step jitter (real) */
    double round_step_s;    /* seconds per step of the round just done (set by the worker) */
    double step_s;          /* real clock: moving average of seconds per step, 0 = none yet */
    uint64_t pull_ticket;   /* the pull that starts the next round */
    int window_done;        /* set when the window it waits in has closed */
    atomic_int activity;    /* LOCO_ACT_* */
    /* counters for the summary (written by the worker's own thread or under entry) */
    atomic_long steps;      /* read by the progress line while the worker runs */
    long rounds, rejects;
    double compute_s, slow_s, lockwait_s, idle_s;
} loco_round;

/* An arrival, for the metrics callback. */
typedef struct {
    int worker;
    long ticket;            /* the arrival number t (1, 2, ...); 0 when rejected */
    long staleness, local_steps, updates;
    double time_s, wall_s;
    const char *status;     /* "applied", "nonfinite" or "stale" */
} loco_arrival;

/* A job for the server thread: a momentum rule on every stripe, in ticket order. */
typedef struct {
    uint64_t ticket;
    int rule;
    loco_outer_hp hp;
    float *g;
    const float *theta_start;
    float lambda;
    float *out0, *out1;     /* copy theta here after the rule (a pull), or NULL */
    loco_snapshot *snap;    /* and into this snapshot */
} loco_stripe_job;

typedef struct {
    /* settings */
    int method, workers, clock_kind, staleness, dylu, batch_tokens;
    long N, H, stale_max, every_updates;
    float lambda;
    loco_outer_hp hp;
    double grace_s, base_step_s;
    /* collaborators */
    loco_globalbuf *gb;
    loco_clock *clock;
    const loco_hetero *het;
    loco_eval_thread *ev;
    loco_round *rounds;
    void (*on_arrival)(void *ctx, const loco_arrival *a);
    void *ctx;
    /* the protocol's state, under entry */
    pthread_mutex_t entry;
    pthread_mutex_t window_mu;  /* window members wait for the close under this, not entry */
    pthread_cond_t window_cv;
    long updates;           /* applied arrivals: the server version */
    long local_steps;       /* inner steps of all arrivals so far */
    long budget;            /* inner steps not handed out yet */
    long planned;           /* the whole budget, as configured */
    int active;             /* workers that have not finished */
    long buffered;          /* arrivals added into a and not yet applied */
    long rejected_nonfinite, rejected_stale;
    long stale_hist[LOCO_STALE_BUCKETS];
    int win_open;
    double win_end;
    int *members, nmembers;
    /* the sweep thread */
    loco_stripe_job *queue; /* ring of workers + 4 */
    int qcap, qhead, qlen, closing;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    pthread_t thread;
    int started;
    double busy_s, started_at;
    const loco_topo *topo;
    const loco_place *place;
} loco_server;

/* Settings from the config (outer, hetero, eval sections), the collaborators, and the
 * budget of local steps. Does not start the thread. */
int loco_server_init(loco_server *s, const loco_config *c, loco_globalbuf *gb, loco_clock *clock,
                     const loco_hetero *het, loco_eval_thread *ev, loco_round *rounds,
                     int batch_tokens, loco_err *e);
void loco_server_free(loco_server *s);

/* Starts the sweep thread, bound to place (may be NULL). */
int loco_server_start(loco_server *s, const loco_topo *topo, const loco_place *place, loco_err *e);

/* Stops the sweep thread after its queue is empty, and applies what a buffered method
 * still holds (a partial last buffer, on its mean). Call when every worker is done. */
void loco_server_finish(loco_server *s);

/* The first round of worker r: its pull ticket and step count. Call for every worker,
 * in worker order, before any worker starts (so the first tickets and virtual events do
 * not depend on thread timing). Returns the steps (0: no budget). */
long loco_server_begin(loco_server *s, loco_round *r);

/* The pull that starts a round (after begin, or after a window closed). Returns the
 * seconds waited for stripes. */
double loco_server_pull(loco_server *s, loco_round *r);

/* Worker r finished its round with r->delta filled: waits for its turn (virtual clock),
 * applies or rejects the arrival, pulls the next round's theta into params and theta0,
 * and returns the next round's step count (0: the worker is done). */
long loco_server_arrive(loco_server *s, loco_round *r);

/* Worker r cannot run (it failed before its first round): its reserved pull is walked
 * without output and its round given back, so the others go on without it. */
void loco_server_abandon(loco_server *s, loco_round *r);

/* No more rounds are handed out: running rounds finish and arrive, then workers stop. */
void loco_server_stop_early(loco_server *s);

#endif
