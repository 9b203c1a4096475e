/* sweeper: the dedicated server thread. Owns a bounded queue of jobs whose rules move
 * the momentum (Nesterov, DN activations, buffer steps), filled in ticket order by the
 * protocol, and walks them one after another while workers keep going on the stripes
 * the sweep has passed. Knows nothing of the protocol beyond "walk this job". */
#ifndef LOCO_SWEEPER_H
#define LOCO_SWEEPER_H

#include <pthread.h>

#include "loco/job.h"
#include "loco/topo.h"

typedef struct {
    loco_globalbuf *gb;
    loco_job *queue;           /* ring of cap jobs */
    int cap, head, len, closing, started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    double busy_s;             /* seconds spent walking, under mu */
    const loco_topo *topo;
    const loco_place *place;
} loco_sweeper;

/* A queue of cap jobs: callers must never have more outstanding (loco_sweeper_push checks). */
int loco_sweeper_init(loco_sweeper *sw, loco_globalbuf *gb, int cap, loco_err *e);
void loco_sweeper_free(loco_sweeper *sw);

/* Starts the thread, bound to place (may be NULL). */
int loco_sweeper_start(loco_sweeper *sw, const loco_topo *topo, const loco_place *place,
                       loco_err *e);

/* Queues a job. Callers push in ticket order (under their own lock): the thread walks
 * in queue order, so a job pushed after a later ticket would wait for it forever. */
void loco_sweeper_push(loco_sweeper *sw, const loco_job *j);

/* Walks what is queued, then stops the thread. */
void loco_sweeper_stop(loco_sweeper *sw);

/* Nothing queued or being walked. */
int loco_sweeper_idle(loco_sweeper *sw);

/* Seconds the thread has spent walking jobs so far. */
double loco_sweeper_busy(loco_sweeper *sw);

#endif
