/* runlog: a finished (or stopped) run read back from its directory: summary.json's
 * figures, the evaluations of metrics.jsonl as points of a curve, and its arrivals as
 * the rounds of a timeline. What plots and result tables are made from; reads JSON with
 * cJSON and knows nothing of how the run was made. */
#ifndef LOCO_RUNLOG_H
#define LOCO_RUNLOG_H

#include "loco/base.h"

/* One evaluation. */
typedef struct {
    double local_steps;        /* local steps summed over workers when it was taken */
    double at_local_steps;     /* its mark of eval.every_local_steps; 0: none */
    double time_s;             /* the run's time (virtual or wall) */
    double updates;            /* server updates (single: optimizer steps) */
    double val_loss;
} loco_point;

/* One round of one worker, from its arrival event. */
typedef struct {
    int worker;
    double start_s, end_s;     /* the round's start and its arrival, in time_s units */
    double slowdown_s;         /* how much of it was emulated slowdown */
    long steps, staleness;
    int applied;               /* 0: rejected */
    double lr;                 /* the inner learning rate at its last step; NaN: not recorded */
} loco_round_rec;

typedef struct {
    char dir[LOCO_PATH_LEN];
    char status[16];           /* "finished", "stopped", "failed"; "" without a summary */
    char method[32], clock[16];
    char blas_core[32];        /* the OpenBLAS kernel set it ran on; "" when not recorded */
    char commit[48], cpu[160]; /* the build and the CPU it ran on; "" when not recorded */
    int workers;
    double final_val_loss, final_val_ppl, time_s;
    double final_val_se;       /* the final figure's standard error; NaN when not recorded */
    long final_val_windows;
    long updates, rejected_stale;  /* arrivals applied; dropped as too stale (polythres) */
    long local_steps;
    loco_point *evals;         /* in file order */
    int nevals;
    loco_round_rec *rounds;    /* in file order (arrival order) */
    int nrounds;
} loco_runlog;

/* summary.json's status of the run in dir into status ("" without a summary); -1 with a
 * message when it exists and cannot be read or is not JSON. */
int loco_runlog_status(const char *dir, char *status, size_t n, loco_err *e);

/* Reads dir/summary.json (when there is one) and dir/metrics.jsonl. Errors name the file
 * and line: unreadable, not JSON. */
int loco_runlog_read(const char *dir, loco_runlog *r, loco_err *e);
void loco_runlog_free(loco_runlog *r);

/* The points with at_local_steps > 0 or the first (theta(0)), for curves on the shared
 * x-axis; returns how many were copied into out (at most r->nevals). */
int loco_runlog_marked(const loco_runlog *r, loco_point *out);

#endif
