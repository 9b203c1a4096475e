/* train: one training run from a resolved config: opens the data, builds or loads the
 * model, trains, evaluates, reports (metrics.jsonl, progress, summary.json) and saves
 * (config.ini, model.bin). Threads, files and formats are its collaborators' business;
 * this module only wires them together. */
#ifndef LOCO_TRAIN_H
#define LOCO_TRAIN_H

#include <signal.h>

#include "loco/config.h"
#include "loco/model.h"
#include "loco/replica.h"

/* How a run ended: summary.json's "status" and the exit code of `loco train` for it, one
 * row each (data: the code). A stopped run's code is 128 + the signal that stopped it
 * (130 for Ctrl-C, 143 for SIGTERM), as shells report a process a signal ended. */
enum { LOCO_RUN_FINISHED, LOCO_RUN_STOPPED, LOCO_RUN_INCOMPLETE, LOCO_RUN_FAILED };
extern const loco_enum loco_run_statuses[];
int loco_run_exit_code(int status, int signal);

/* What loco_train says of the run besides its return code. */
typedef struct {
    int status;                      /* LOCO_RUN_* */
    int untouched;                   /* resuming a run that had finished: nothing was done */
} loco_train_result;

typedef struct {
    const char *out_dir;             /* where outputs go; NULL writes nothing */
    const char *init_path;           /* start from this model file (loco or llm.c), or NULL */
    volatile sig_atomic_t *stop;     /* set (by a signal handler) to end the run early and save */
    int quiet;                       /* no progress or summary on stderr */
    int resume;                      /* continue the run in out_dir from its last checkpoint
                                        (the config must be its config.ini) */
    int dry_run;                     /* check everything, print the run, the threads' plan and
                                        the memory breakdown on stdout, write nothing */
    int locked;                      /* the caller holds out_dir's lock (runlock.h); else
                                        loco_train takes it, and is refused while another
                                        process holds it */
    loco_train_result *result;       /* filled when not NULL */
} loco_train_opts;

void loco_train_opts_default(loco_train_opts *o);

/* Reads a checkpoint completely (with the config.ini beside it, which says its layout),
 * checks every field and its checksum, and says in buf where its run stood. Errors say
 * what is wrong: unreadable, truncated, corrupt, of another config or version. */
int loco_checkpoint_describe(const char *path, char *buf, size_t n, loco_err *e);

/* Runs the training the config describes. The config's model shape is replaced by the
 * init file's when one is given. Every check of the input (the config, the data, the
 * init file, the memory the run needs against what is available: memplan.h) comes
 * before anything is allocated or written: a run that fails one leaves no output
 * directory behind. Outputs are written so that summary.json comes last: a summary that
 * says finished has its model.bin and every event beside it. Resuming takes the lock
 * first, refuses a run that finished (result->untouched, nothing changed), and sets a
 * checkpoint that fails its check aside as checkpoint.bad.bin, so the good one is never
 * rotated away. Returns 0 when the run finished, was stopped and saved, or ended
 * incomplete (result->status says which); -1 with a message for bad input, a run
 * directory in use, or a diverged run. */
int loco_train(loco_config *c, const loco_train_opts *o, loco_err *e);

/* Every check loco_train makes of its input before it writes anything (the config, the
 * data, the init file, the memory: what --dry-run checks), printing and writing nothing;
 * o->quiet, dry_run, resume and out_dir are ignored. Returns 0, or -1 with the message
 * the run would fail with. */
int loco_train_check(loco_config *c, const loco_train_opts *o, loco_err *e);

#endif
