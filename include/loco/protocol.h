/* server: the outer protocol of asynchronous Local-SGD. Owns the arrival order (the
 * server version), which rule each arrival gets (from outer's method table), admission
 * (non-finite and too stale deltas are rejected before they touch the buffer), staleness,
 * grace windows and the sync barrier, the budget of local steps, DyLU step counts, and
 * the evaluation snapshots. The arriving worker walks pure-add rules itself; rules that
 * move the momentum go to the sweeper (the server thread), which the server owns.
 * Knows workers only through loco_round. */
#ifndef LOCO_PROTOCOL_H
#define LOCO_PROTOCOL_H

#include <pthread.h>
#include <stdint.h>

#include "loco/clock.h"
#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/hetero.h"
#include "loco/metrics.h"
#include "loco/outer.h"
#include "loco/server.h"
#include "loco/topo.h"

/* What the protocol needs to know (the run layer fills it from the config). */
typedef struct loco_protocol_settings {
    int method;                /* LOCO_METHOD_* (an engine method) */
    int workers;
    int clock;                 /* LOCO_CLOCK_* */
    int staleness;             /* LOCO_STALE_* */
    long stale_max;            /* polythres drops arrivals staler than this */
    int dylu;                  /* Dynamic Local Updates on */
    long N;                    /* DN period and buffer size; 0: the live workers when a window
                                  of N arrivals starts */
    long H;                    /* inner steps per round (the fastest worker's, under DyLU) */
    long budget;               /* inner steps summed over workers for the whole run */
    loco_outer_hp hp;          /* lr, beta, c (N and gscale are set per arrival) */
    float lambda;              /* delay compensation; 0 = off */
    double grace_s;            /* grace period; 0 = none */
    int grace_close;           /* LOCO_GRACE_* (outer.h): may the window close early */
    double sync_timeout_s;     /* a barrier round closes this long after its first arrival at
                                  the latest; 0 = when every live worker has arrived */
    long eval_every;           /* snapshot every this many updates; 0 = never */
    long eval_every_steps;     /* snapshot each time the local steps pass a multiple of
                                  this; 0 = never */
    long batch_tokens;         /* tokens per inner step, for the snapshots' counts */
    uint64_t seed;             /* of the rounds' virtual durations */
    double max_delta_norm;     /* reject deltas of a larger L2 norm; 0 = off */
    long ckpt_every;           /* hold the run for a checkpoint after every this many
                                  updates; 0 = never */
    const loco_fault *faults;  /* the emulated failures, sorted by time (hetero.h) */
    int nfaults;
} loco_protocol_settings;

/* One worker as the protocol sees it: the buffers the worker lends it (n floats each)
 * and the state of its round, which only the server writes (under entry). */
typedef struct {
    int id;
    float *params;             /* theta_local; pulls land here */
    float *theta0;             /* theta_start of the round; pulls land here too */
    float *delta;              /* g = theta_start - theta_local, filled before arriving */
    long v_start;              /* changes of theta before the round's pull */
    long h;                    /* inner steps of the round */
    long lr_committed;         /* local steps arrived when it was handed out, and the */
    long lr_live;              /* workers training then: its schedule (adamw.h) */
    double start_t;            /* round start (virtual or wall seconds) */
    double end_t;              /* virtual clock: the round's end, fixed when it is handed out */
    loco_rng durations;        /* virtual clock: the round durations' stream */
    double step_s;             /* real clock: moving average of seconds per step, 0 = none */
    uint64_t pull_ticket;      /* the pull that starts the next round */
    int window_done;           /* the window it waits in has closed (under window_mu) */
    int retired;               /* handed no more rounds, or abandoned */
    int status;                /* LOCO_ARRIVAL_* of its last arrival */
    int lost;                  /* virtual clock: the round handed out ends in a failure */
    int away;                  /* failed, not back yet */
    double fail_at, back_at;   /* when it fails and comes back (INFINITY: never) */
    double next_at;            /* virtual clock: its next event (the round's end, or its failure) */
    int next_fault;            /* index in the settings' faults of its next one */
    long faults;               /* failures so far */
} loco_round;

/* What a worker says of the round it ends. */
typedef struct {
    int finite;                /* its delta holds no NaN, Inf or absurd value (loco_all_sane) */
    int diverged;              /* its loss went NaN or Inf: the round was abandoned */
    long steps;                /* the steps it took (fewer than handed out when diverged) */
    double norm;               /* the delta's L2 norm */
    double step_s;             /* measured seconds per step (real clock DyLU) */
    double slowdown_s;         /* seconds of emulated slowdown in it (real clock) */
    double lr;                 /* the inner learning rate of its last step */
} loco_round_report;

/* What one arrival cost its worker and what became of its delta. */
typedef struct {
    double turn_s;             /* real seconds waiting for the clock's turn (virtual clock) */
    double window_s;           /* waiting for a grace window or a sync round to close */
    double stripe_s;           /* waiting for stripes (push and pull) */
    int rejected;              /* not applied */
    int status;                /* LOCO_ARRIVAL_* */
} loco_arrival_cost;

/* The protocol's counters, copied out under its lock. */
typedef struct {
    long updates;              /* applied arrivals: the server version */
    long local_steps;          /* inner steps of all arrivals so far */
    long planned;              /* the whole budget of inner steps */
    long rejected[LOCO_ARRIVALS]; /* by LOCO_ARRIVAL_* ([APPLIED] unused) */
    long faults, returns;      /* workers' failures, and their comings back */
    long evals_skipped;        /* real clock: snapshots skipped, the evaluator being behind */
    long stale_hist[LOCO_STALE_BUCKETS];
    double busy_s;             /* seconds the server thread spent sweeping */
    long dc_held, dc_all;      /* delay compensation's corrections held to |g|, of all (by
                                  this process: a resumed run counts its own part) */
} loco_protocol_stats;

typedef struct {
    loco_protocol_settings st;
    const loco_outer_method *method;
    /* collaborators */
    loco_globalbuf *gb;
    loco_clock *clock;
    const loco_hetero *het;
    loco_eval_thread *ev;      /* may be NULL: no evaluations */
    loco_metrics *mt;          /* may be NULL: no arrival events */
    loco_server server;        
    loco_round *rounds;        /* one per worker, owned here */
    /* the protocol's state, under entry */
    pthread_mutex_t entry;
    pthread_mutex_t window_mu; /* window members wait for the close under this, not entry */
    pthread_cond_t window_cv;
    long updates;              /* applied arrivals: t */
    long version;              /* changes of theta: what staleness counts */
    long local_steps, budget;
    long rejected[LOCO_ARRIVALS]; /* by LOCO_ARRIVAL_* ([APPLIED] unused) */
    long evals_skipped, faults, returns;
    long stale_hist[LOCO_STALE_BUCKETS];
    atomic_long dc_held, dc_all; /* added by whoever walks a push (loco_job) */
    int active;                /* workers neither retired nor away */
    int stopped;               /* loco_protocol_stop_early was called */
    long dn_count, dn_N;       /* arrivals in the current window of N, and its N */
    int down;                  /* workers away or gone for good */
    long accumulated;          /* arrivals added into a and not yet applied */
    int win_open;
    double win_end;
    int *members, nmembers;
    int window_waiting;        /* members waiting for the close (under window_mu) */
    loco_snapshot *snap;       /* reserved for the evaluation due, waiting for its job */
    int held;                  /* update held % ckpt_every == 0 came: no arrival is decided
                                  (and the clock gives no turn) until the checkpoint */
} loco_protocol;

/* The settings, the collaborators; makes the rounds (their buffers are lent later).
 * Does not start the server thread. */
int loco_protocol_init(loco_protocol *s, const loco_protocol_settings *st, loco_globalbuf *gb,
                     loco_clock *clock, const loco_hetero *het, loco_eval_thread *ev,
                     loco_metrics *mt, loco_err *e);
void loco_protocol_free(loco_protocol *s);

/* Worker w's round. */
loco_round *loco_protocol_round(loco_protocol *s, int w);

/* Starts the server thread, bound to place (may be NULL). */
int loco_protocol_start(loco_protocol *s, const loco_topo *topo, const loco_place *place, loco_err *e);

/* Applies what a buffered method still holds (a partial last buffer, on its mean), then
 * stops the server thread once its queue is empty. Call when every worker is done. */
void loco_protocol_finish(loco_protocol *s);

/* The first round of worker r: its pull ticket and step count. Call for every worker,
 * in worker order, before any worker starts (so the first tickets and virtual events do
 * not depend on thread timing). Returns the steps (0: no budget, the worker is retired). */
long loco_protocol_begin(loco_protocol *s, loco_round *r);

/* The pull that starts a round (after begin). Returns the seconds waited for stripes. */
double loco_protocol_pull(loco_protocol *s, loco_round *r);

/* Worker r finished its round of r->h steps with r->delta filled: waits for its turn
 * (virtual clock), applies or rejects the arrival, pulls the next round's theta into
 * params and theta0, and returns the next round's step count (0: the worker is done). */
long loco_protocol_arrive(loco_protocol *s, loco_round *r, const loco_round_report *rep,
                        loco_arrival_cost *cost);

/* Failures. Virtual clock: a round that a failure falls into is lost when it is handed
 * out (loco_protocol_lost says so), and its worker, instead of computing it, calls
 * loco_protocol_fail. Real clock: the worker watches loco_protocol_fail_time while it computes
 * and calls loco_protocol_fail once it has passed. Either way: the round's steps go back to
 * the budget, the worker is away (a sync round no longer waits for it, DN's N and DyLU's
 * fastest worker count the live ones), and loco_protocol_fail returns 0 when it is gone for
 * good; otherwise loco_protocol_back waits until it is back, pulls and returns its next
 * round's steps. */
int loco_protocol_lost(loco_protocol *s, loco_round *r);
double loco_protocol_fail_time(loco_protocol *s, loco_round *r);
int loco_protocol_fail(loco_protocol *s, loco_round *r);
long loco_protocol_back(loco_protocol *s, loco_round *r, loco_arrival_cost *cost);

/* Worker r cannot run (it failed before its first round): its reserved pull is walked
 * without output and its round given back, so the others go on without it. */
void loco_protocol_abandon(loco_protocol *s, loco_round *r);

/* No more rounds are handed out: running rounds finish and arrive, then workers stop. */
void loco_protocol_stop_early(loco_protocol *s);

void loco_protocol_read_stats(loco_protocol *s, loco_protocol_stats *out);

/* ---- checkpoints: taken when the run is still (the clock paused, every worker waiting
 * for a turn or for a window to close, the server thread idle) ---- */

/* The protocol's state: counters, the open window, the pending snapshot, every round. */
void loco_protocol_save(loco_protocol *s, loco_pack *p);
/* Into a server made by loco_protocol_init with the run's settings (and its evaluator);
 * -1 when the stream is short or mangled. */
int loco_protocol_load(loco_protocol *s, loco_unpack *u);

/* Where worker r stands in a still run: about to arrive with its round done, waiting in
 * a window (or seeing to its end, the opener), or done; *end (may be NULL) gets the
 * window's deadline. */
enum {
    LOCO_PHASE_ARRIVE, LOCO_PHASE_WINDOW, LOCO_PHASE_OPENER, LOCO_PHASE_DONE, LOCO_PHASE_FAIL,
    LOCO_PHASE_AWAY
};
int loco_protocol_phase(loco_protocol *s, const loco_round *r, double *end);

/* A resumed worker that was in a window goes on there: (the opener sees to the window's
 * end at `end`,) waits for the close, pulls; returns its next round's steps. phase and end
 * are what loco_protocol_phase said when the run was loaded (the window may close before
 * this thread gets here). */
long loco_protocol_rejoin(loco_protocol *s, loco_round *r, int opener, double end,
                        loco_arrival_cost *cost);

/* Whether the run is held for the checkpoint of an update count (ckpt_every): the update
 * that made it due paused the clock, and arrivals wait until loco_protocol_release (call it,
 * then resume the clock, once the checkpoint is written). */
int loco_protocol_held(loco_protocol *s);
void loco_protocol_release(loco_protocol *s);

/* Whether a snapshot is reserved and waiting for its round to close. */
int loco_protocol_holds_snapshot(loco_protocol *s);

/* How many workers wait for a window to close. */
int loco_protocol_still(loco_protocol *s);

#endif
