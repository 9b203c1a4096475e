/* train: one training run from a resolved config: opens the data, builds or loads the
 * model, trains, evaluates, reports (metrics.jsonl, progress, summary.json) and saves
 * (config.ini, model.bin). Threads, files and formats are its collaborators' business;
 * this module only wires them together. */
#ifndef LOCO_TRAIN_H
#define LOCO_TRAIN_H

#include <signal.h>

#include "loco/config.h"
#include "loco/model.h"
#include "loco/worker.h"

typedef struct {
    const char *out_dir;             /* where outputs go; NULL writes nothing */
    const char *init_path;           /* start from this model file (loco or llm.c), or NULL */
    volatile sig_atomic_t *stop;     /* set (by a signal handler) to end the run early and save */
    int quiet;                       /* no progress or summary on stderr */
    int resume;                      /* continue the run in out_dir from its last checkpoint
                                        (the config must be its config.ini) */
    int dry_run;                     /* check everything, print the run, the threads' plan and
                                        the memory breakdown on stdout, write nothing */
} loco_train_opts;

void loco_train_opts_default(loco_train_opts *o);

/* The shape a config describes (model.*; wpe holds model.seq_len positions). */
loco_shape loco_shape_from_config(const loco_config *c);

/* A worker's settings from the config: batch (train.batch x model.seq_len), seed and the
 * inner optimizer ([train]). */
void loco_worker_opts_from_config(const loco_config *c, loco_worker_opts *o);

/* Reads a checkpoint completely (with the config.ini beside it, which says its layout),
 * checks every field and its checksum, and says in buf where its run stood. Errors say
 * what is wrong: unreadable, truncated, corrupt, of another config or version. */
int loco_checkpoint_describe(const char *path, char *buf, size_t n, loco_err *e);

/* Runs the training the config describes. The config's model shape is replaced by the
 * init file's when one is given. Every check of the input (the config, the data, the
 * init file, the memory the run needs against what is available: memplan.h) comes
 * before anything is allocated or written: a run that fails one leaves no output
 * directory behind. Returns 0 when the run finished or was stopped and saved; -1 with a
 * message for bad input or a diverged run. */
int loco_train(loco_config *c, const loco_train_opts *o, loco_err *e);

#endif
