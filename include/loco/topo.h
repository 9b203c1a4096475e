/* topo: the machine and where loco's threads run. Owns the hwloc topology, the pinning
 * plan for W workers plus the server and evaluator threads (a pure function of a
 * topology, so hwloc's synthetic topologies test plans for machines we do not have),
 * binding the calling thread to its place, and memory placement: a thread's own
 * buffers are first touched after it is bound, the global buffer is interleaved over
 * the NUMA nodes. Knows nothing of training. */
#ifndef LOCO_TOPO_H
#define LOCO_TOPO_H

#include <hwloc.h>
#include <stdio.h>

#include "loco/base.h"

enum { LOCO_ROLE_WORKER, LOCO_ROLE_SERVER, LOCO_ROLE_EVALUATOR };

/* How threads are pinned (see loco_topo_plan). */
enum { LOCO_PIN_COMPACT, LOCO_PIN_SCATTER, LOCO_PIN_NONE };
extern const loco_enum loco_pin_kinds[];

typedef struct {
    hwloc_topology_t topo;
    int synthetic;        /* a described machine: nothing is really bound */
    int npackages, nnuma, ncores, npus;
} loco_topo;

/* Where one thread runs. */
typedef struct {
    int role;             /* LOCO_ROLE_* */
    int index;            /* worker index; 0 for the server and the evaluator */
    int pu;               /* logical index of its PU (hardware thread); -1: not pinned */
    int core;             /* logical index of that PU's core; -1: not pinned */
    int numa;             /* logical index of its NUMA node; -1: not pinned or unknown */
    int package;          /* logical index of its package; -1: not pinned */
    int shared;           /* another loco thread of the plan is pinned to the same PU */
} loco_place;

typedef struct {
    int pin;              /* LOCO_PIN_* */
    int workers;
    loco_place *places;   /* workers 0..W-1, then the server, then the evaluator */
    int nplaces;
    int oversubscribed;   /* more threads than PUs: some share */
    int seated;           /* virtual clock, more workers than PUs: unpinned, taking turns
                             at the PUs (loco_topo_run_plan) */
} loco_plan;

/* This machine (synthetic NULL) or an hwloc synthetic description such as
 * "pack:2 numa:2 core:8 pu:2". */
int loco_topo_open(loco_topo *t, const char *synthetic, loco_err *e);
void loco_topo_close(loco_topo *t);

/* The plan for W workers, the server and the evaluator.
 * compact: workers take PUs in order, one per core first (core 0, 1, 2, ...), then the
 *   second PUs of the cores (SMT siblings), then around again (oversubscribed);
 * scatter: the same, but consecutive workers alternate between packages and NUMA nodes
 *   (worker 0 on package 0, worker 1 on package 1, ...);
 * none: nothing pinned.
 * The server and then the evaluator take the next PUs no worker uses; when none is
 * left they are not pinned (-1) rather than share a worker's core. */
int loco_topo_plan(const loco_topo *t, int workers, int pin, loco_plan *p, loco_err *e);
void loco_plan_free(loco_plan *p);

/* The plan a run of workers uses, which loco topo and train --dry-run print too: pin's,
 * but on the virtual clock more workers than PUs are seated instead: not pinned, at most
 * one round per PU computed at a time, by whichever workers are ready, on whichever PU is
 * free (pinned, two slow workers could share one PU while another idles). The virtual
 * clock's results do not depend on when or where a round is computed, so only the wall
 * time changes (a tenth less at k = 4 on two PUs). The real clock keeps the plan and the
 * OS's time-slicing: waiting for a seat would be a slowdown of its own. */
int loco_topo_run_plan(const loco_topo *t, int workers, int pin, int virtual_clock, loco_plan *p,
                       loco_err *e);

/* Binds the calling thread (CPU and memory policy) to its place; a no-op for places
 * that are not pinned, on synthetic topologies, and when t or pl is NULL (no plan). */
int loco_topo_bind(const loco_topo *t, const loco_place *pl, loco_err *e);

/* bytes of zeroed memory interleaved page by page over all NUMA nodes (one node: a
 * plain 64-byte aligned allocation); free with loco_topo_free_interleaved. */
void *loco_topo_alloc_interleaved(const loco_topo *t, size_t bytes);
void loco_topo_free_interleaved(const loco_topo *t, void *p, size_t bytes);

/* The machine (packages, NUMA nodes with memory, cores, PUs, caches) and the plan. */
void loco_topo_print(const loco_topo *t, const loco_plan *p, FILE *f);

#endif
