/* memplan: a run's memory before anything is allocated. Owns the breakdown of what a run
 * will hold, part by part (each worker's replica, gradients, AdamW moments, theta_start
 * and delta, activations; the global buffer; the evaluator; the data), against what this
 * process may use (sysmem.h), the verdict
 * (a plan that does not fit is refused with both figures and what to reduce) and the
 * report of `loco topo` and `train --dry-run`. In the run layer: the plan takes plain
 * figures, which loco_memplan_in_from_config reads from a config. */
#ifndef LOCO_MEMPLAN_H
#define LOCO_MEMPLAN_H

#include <stdint.h>
#include <stdio.h>

#include "loco/sysmem.h"

#include "loco/config.h"
#include "loco/model.h"

enum { LOCO_MEM_PARTS = 8, LOCO_MEM_GROUPS = 8 };

/* One buffer, or a few of one purpose (the two AdamW moments). */
typedef struct {
    const char *what;
    uint64_t bytes;
    int activations;          /* grows with train.batch x model.seq_len, not with the weights */
} loco_mem_part;

/* What one owner holds, copies times (the workers), or a file's pages (the data). */
typedef struct {
    const char *name;
    int copies;
    int file_backed;          /* mapped from a file: shown, not counted in need */
    uint64_t bytes;           /* one copy: the sum of its parts */
    loco_mem_part part[LOCO_MEM_PARTS];
    int nparts;
} loco_mem_group;

typedef struct {
    loco_mem_group group[LOCO_MEM_GROUPS];
    int ngroups;
    uint64_t need;            /* every counted group x its copies (saturated) */
    int workers;              /* replicas; run.workers for what to reduce */
} loco_memplan;

/* A run in plain figures. */
typedef struct {
    const loco_model *m;
    int async;                /* the engine (global buffer, theta_start and delta, snapshots);
                                 0: the single path, one replica */
    int workers;              /* replicas the engine trains; the single path has one */
    int B, T;                 /* a worker's batch, also the evaluator's */
    long stripe_kib;          /* the global buffer's stripes */
    uint64_t data_bytes;      /* the mapped file */
    int init_held;            /* the starting parameters are in memory already (read from a
                                 model file): not counted again */
    int bf16;                 /* products in bf16: each worker's bf16 copies */
} loco_memplan_in;

void loco_memplan_make(loco_memplan *p, const loco_memplan_in *in);
void loco_memplan_in_from_config(loco_memplan_in *in, const loco_config *c, const loco_model *m,
                                 uint64_t data_bytes);

/* 0 when the plan fits in what is available; otherwise -1 with a message that gives the
 * need and its biggest parts, what is available and from where, and which keys to lower. */
int loco_memplan_check(const loco_memplan *p, const loco_mem_avail *a, loco_err *e);

/* The breakdown, one line per group and part, then the verdict. */
void loco_memplan_print(const loco_memplan *p, const loco_mem_avail *a, FILE *f);

/* The run's check, for loco_train: the plan of c (model m, data_bytes of data) against
 * this machine. */
int loco_memplan_check_run(const loco_config *c, const loco_model *m, uint64_t data_bytes,
                           int init_held, loco_err *e);

/* For `loco topo` and `loco train --dry-run`: the run in one line, the machine, the
 * threads' plan (asynchronous runs), and the memory breakdown against this machine. */
int loco_memplan_report(FILE *f, const loco_config *c, const loco_model *m, uint64_t data_bytes,
                        int init_held, loco_err *e);

#endif
