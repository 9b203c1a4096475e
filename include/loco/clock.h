/* clock: the two clocks of a run. Real: wall seconds since the run started. Virtual:
 * each worker registers the virtual time of its next event (the end of its current
 * round, or the close of a grace window it waits for), and a worker may commit only when
 * its event is the earliest registered (ties: round ends before window closes, then the
 * lower worker id). Commits then happen in virtual-time order whatever the threads'
 * real speeds, which is what makes virtual runs reproducible bit for bit. */
#ifndef LOCO_CLOCK_H
#define LOCO_CLOCK_H

#include <pthread.h>

#include "loco/base.h"
#include "loco/pack.h"

enum { LOCO_CLOCK_REAL, LOCO_CLOCK_VIRTUAL };
extern const loco_enum loco_clock_kinds[];

/* What a worker's next event is; of two at the same time, the one listed first goes first. */
enum { LOCO_EVENT_FINISH, LOCO_EVENT_CLOSE, LOCO_EVENT_FAIL, LOCO_EVENT_BACK };

typedef struct {
    int kind;             /* LOCO_CLOCK_* */
    int workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double *at;           /* per worker: time of its next event; INFINITY: none */
    int *what;            /* per worker: LOCO_EVENT_* */
    double start;         /* loco_now() when the run started (in this process) */
    double offset;        /* wall seconds of the run before this process (resumed runs) */
    double now;           /* virtual: time of the latest turn */
    int paused;           /* no turn is given (a checkpoint is being taken) */
    int waiting;          /* threads waiting in loco_clock_turn */
} loco_clock;

int loco_clock_init(loco_clock *c, int kind, int workers, loco_err *e);
void loco_clock_free(loco_clock *c);

/* Real seconds since init. */
double loco_clock_wall(const loco_clock *c);

/* The run's time: wall seconds (real) or the time of the latest turn (virtual). */
double loco_clock_time(loco_clock *c);

/* Registers worker's next event at time at (virtual; ignored by the real clock). */
void loco_clock_schedule(loco_clock *c, int worker, double at, int what);

/* Worker has no event: it waits in a window or has finished. */
void loco_clock_park(loco_clock *c, int worker);

/* Virtual: blocks until the worker's event is the earliest, then returns its time (and
 * makes it the clock's time). Real: returns the wall time at once. Either way no turn is
 * given while the clock is paused. *waited gets the real seconds spent blocked. The
 * caller holds the turn until it schedules or parks. */
double loco_clock_turn(loco_clock *c, int worker, double *waited);

/* The turn for one event of the worker's, (what, at): 1 with *t its time when it comes;
 * 0 when the worker's event is replaced first (by another thread's schedule), and the
 * worker then holds no turn. The real clock gives it at once (unless paused). */
int loco_clock_turn_for(loco_clock *c, int worker, int what, double at, double *t,
                        double *waited);

/* Pausing stops every turn; the run is still when every worker waits for one or is
 * blocked elsewhere (loco_clock_waiting counts those waiting here). */
/* Real clock: waits until wall time t (counted as waiting, and past any pause). */
void loco_clock_sleep_until(loco_clock *c, double t);

void loco_clock_pause(loco_clock *c);
void loco_clock_resume(loco_clock *c);
int loco_clock_waiting(loco_clock *c);

/* The clock's state (time, each worker's event, the wall seconds so far), for
 * checkpoints; load returns -1 when the stream is short or mangled. */
void loco_clock_save(loco_clock *c, loco_pack *p);
int loco_clock_load(loco_clock *c, loco_unpack *u);

/* Real clock: pays *owed seconds of emulated slowdown by sleeping until a deadline (frees
 * the core) or, with spin, spinning (holds it), and returns the seconds it really took.
 * A wait ends late when the thread wakes or is scheduled late (on a loaded machine a
 * millisecond and more, a good part of a short step's wait), so the overrun stays on
 * *owed, negative, and comes off the next wait: the slowdown spent follows the slowdown
 * owed to within one late wake-up, however many waits. Nothing to pay (*owed <= 0) takes
 * no time. */
double loco_clock_pay(double *owed, int spin);

#endif
