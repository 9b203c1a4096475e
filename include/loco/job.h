/* job: one operation on the global buffer: a ticket, the outer rule it applies to every
 * stripe (with its staleness weight and delay compensation), and where theta goes after
 * the rule (a worker's pull, an evaluation snapshot). Owns the dispatch from a rule id to
 * its function; whoever walks a job (the arriving worker or the server thread) runs
 * exactly this. */
#ifndef LOCO_JOB_H
#define LOCO_JOB_H

#include <stdatomic.h>
#include <stdint.h>

#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/outer.h"

typedef struct {
    uint64_t ticket;
    int rule;                  /* LOCO_RULE_*; LOCO_RULE_NONE: a plain pull or a pass-through */
    loco_outer_hp hp;
    float *g;                  /* the pseudo-gradient (n floats; delay compensation edits it) */
    const float *theta_start;  /* the arriving worker's theta_start, for delay compensation */
    float lambda;              /* delay compensation; 0 = off */
    atomic_long *dc_held, *dc_all;  /* if set: add the corrections held to |g|, and all */
    float *out0, *out1;        /* copy theta here after the rule (a pull), or NULL */
    loco_snapshot *snap;       /* and into this snapshot, handed to ev after the walk */
    loco_eval_thread *ev;
} loco_job;

/* Walks the job with its ticket (see loco_globalbuf_walk). Returns the seconds spent
 * waiting for stripes. */
double loco_job_walk(loco_globalbuf *gb, const loco_job *j);

#endif
