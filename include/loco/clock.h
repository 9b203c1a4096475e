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

enum { LOCO_CLOCK_REAL, LOCO_CLOCK_VIRTUAL };
extern const loco_enum loco_clock_kinds[];

enum { LOCO_EVENT_FINISH, LOCO_EVENT_CLOSE };

typedef struct {
    int kind;             /* LOCO_CLOCK_* */
    int workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double *at;           /* per worker: time of its next event; INFINITY: none */
    int *what;            /* per worker: LOCO_EVENT_* */
    double start;         /* loco_now() when the run started */
    double now;           /* virtual: time of the latest turn */
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
 * makes it the clock's time). Real: returns the wall time at once. *waited gets the real
 * seconds spent blocked. The caller holds the turn until it schedules or parks. */
double loco_clock_turn(loco_clock *c, int worker, double *waited);

/* Real clock: pays *owed seconds of emulated slowdown by sleeping until a deadline (frees
 * the core) or, with spin, spinning (holds it), and returns the seconds it really took.
 * A wait ends late when the thread wakes or is scheduled late (on a loaded machine a
 * millisecond and more, a good part of a short step's wait), so the overrun stays on
 * *owed, negative, and comes off the next wait: the slowdown spent follows the slowdown
 * owed to within one late wake-up, however many waits. Nothing to pay (*owed <= 0) takes
 * no time. */
double loco_clock_pay(double *owed, int spin);

#endif
