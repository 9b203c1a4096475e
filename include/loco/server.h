/* server: the dedicated server thread. Owns a bounded queue of jobs whose rules move
 * the momentum (Nesterov, DN activations, buffer steps), filled in ticket order by the
 * protocol, and walks them one after another while workers keep going on the stripes
 * the sweep has passed. Knows nothing of the protocol beyond "walk this job". */
#ifndef LOCO_SERVER_H
#define LOCO_SERVER_H

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
} loco_server;

/* A queue of cap jobs: callers must never have more outstanding (loco_server_push checks). */
int loco_server_init(loco_server *sw, loco_globalbuf *gb, int cap, loco_err *e);
void loco_server_free(loco_server *sw);

/* Starts the thread, bound to place (may be NULL). */
int loco_server_start(loco_server *sw, const loco_topo *topo, const loco_place *place,
                       loco_err *e);

/* Queues a job. Callers push in ticket order (under their own lock): the thread walks
 * in queue order, so a job pushed after a later ticket would wait for it forever. */
void loco_server_push(loco_server *sw, const loco_job *j);

/* Walks what is queued, then stops the thread. */
void loco_server_stop(loco_server *sw);

/* Nothing queued or being walked. */
int loco_server_idle(loco_server *sw);

/* Seconds the thread has spent walking jobs so far. */
double loco_server_busy(loco_server *sw);

#endif
