/* metrics: what a run reports, and the one place its formats are written down. Owns the
 * schema of metrics.jsonl's events (one function per kind, buffered in order and written
 * out of the callers' locks) and of summary.json; says the run's messages and progress
 * through its terminal (progress.h) and builds its JSON with json.h. */
#ifndef LOCO_METRICS_H
#define LOCO_METRICS_H

#include <pthread.h>
#include <stdio.h>

#include "loco/base.h"
#include "loco/json.h"
#include "loco/pack.h"
#include "loco/progress.h"

/* PREFIXval_loss, PREFIXval_ppl and PREFIXval_bpb (null unless byte_level) of a loss */
void loco_json_val(loco_json *j, const char *prefix, double loss, int byte_level);

typedef struct {
    FILE *events;      /* metrics.jsonl, NULL when the run writes no files */
    char path[LOCO_PATH_LEN + 16];
    int byte_level;    /* losses also in bits per byte */
    loco_term term;    /* stderr: the progress line and messages */
    pthread_mutex_t mu; /* events come from several threads */
    struct loco_line *lines; /* events not written yet, in order; some still to come */
    long nlines, cap, first; /* first: the place of lines[0] */
    int write_errno;   /* the first failed write of metrics.jsonl, 0 if none */
} loco_metrics;

/* Opens dir/metrics.jsonl for writing (dir must exist); dir NULL: no files, progress only.
 * byte_level: the data's tokens are bytes, so losses are also given in bits per byte. */
int loco_metrics_open(loco_metrics *mt, const char *dir, int quiet, int byte_level, loco_err *e);
/* Reopens dir/metrics.jsonl of a run being resumed: cut back to its first length bytes
 * (what its checkpoint had written), then appended to. */
int loco_metrics_reopen(loco_metrics *mt, const char *dir, long length, int quiet, int byte_level,
                        loco_err *e);

/* The bytes written to metrics.jsonl so far (after loco_metrics_flush). */
long loco_metrics_length(loco_metrics *mt);

/* Writes what is pending and closes; -1 with a message when a write of metrics.jsonl
 * failed at any point of the run. */
int loco_metrics_close(loco_metrics *mt, loco_err *e);

/* Writes the pending events to metrics.jsonl and flushes it. Events are only buffered
 * when they happen (under whatever lock their caller holds), in the order they happened;
 * one thread (the run's main thread) writes them out with this, often, up to the first
 * place still reserved. Returns -1 once a write has failed (and keeps buffering nothing
 * more). */
int loco_metrics_flush(loco_metrics *mt);

/* A place in metrics.jsonl for an event known only later (the evaluation of a snapshot
 * taken now), filled by an event with that .place: the events after it wait until it is,
 * so the file holds events in the order things happened, not in the order the evaluator
 * finished them, and a virtual-clock run writes the same file every time. */
long loco_metrics_reserve(loco_metrics *mt);

/* For checkpoints: the events waiting behind places still reserved (after a flush), and
 * putting them back, behind the places reserved again on resuming. */
void loco_metrics_save_waiting(loco_metrics *mt, loco_pack *p);
int loco_metrics_load_waiting(loco_metrics *mt, loco_unpack *u);

/* ---- the events of metrics.jsonl: one function per kind ---- */

/* {"event":"train","step","tokens","wall_s","loss","lr","grad_norm","tokens_per_s"} */
typedef struct {
    long step, tokens;
    double wall_s, loss, lr, grad_norm, tokens_per_s;
} loco_train_event;
void loco_metrics_train(loco_metrics *mt, const loco_train_event *ev);

/* single: {"event":"eval","step","local_steps","tokens","time_s","wall_s","val_loss",
 * "val_ppl","val_bpb"}; asynchronous: {"event":"eval","updates","local_steps","tokens",
 * "time_s","wall_s","val_loss","val_ppl","val_bpb"}; both add "at_local_steps" when the
 * evaluation stands at a mark of eval.every_local_steps (the comparable x-axis). */
typedef struct {
    int async;
    long step;                       /* single */
    long updates;                    /* asynchronous */
    long local_steps, tokens;
    long at_local_steps;             /* the schedule's mark; 0: none */
    long last_mark, every;           /* one line per mark at_local_steps, +every, ... <= last_mark */
    double time_s, wall_s, val_loss;
    long place;                      /* a reserved place (loco_metrics_reserve), or -1: now */
} loco_eval_event;
void loco_metrics_eval(loco_metrics *mt, const loco_eval_event *ev);

/* What became of a pushed delta: applied, or rejected because it holds NaN or Inf (or a
 * value beyond any real update), is staler than polythres allows, has a norm above
 * outer.max_delta_norm, or because its round's loss diverged (the round was abandoned). */
enum {
    LOCO_ARRIVAL_APPLIED, LOCO_ARRIVAL_NONFINITE, LOCO_ARRIVAL_STALE, LOCO_ARRIVAL_NORM,
    LOCO_ARRIVAL_DIVERGED, LOCO_ARRIVALS
};
/* Their names, which also name the summary's counts of rejections: "rejected_" + name
 * for each but applied. A new reason is a row here and a value above. */
extern const loco_enum loco_arrival_statuses[];

/* {"event":"arrival","worker","ticket","staleness","local_steps","updates","time_s",
 * "wall_s","status","start_s","slowdown_s","lr"}: ticket is the arrival number t, 0 when
 * rejected; staleness counts the changes of theta since the round's pull; start_s is when
 * the round began and slowdown_s how much of it was emulated slowdown (time_s units). */
typedef struct {
    int worker;
    long ticket, staleness, local_steps, updates;
    double time_s, wall_s;
    int status;                      /* LOCO_ARRIVAL_* */
    double start_s, slowdown_s;
    double lr;                       /* the inner learning rate of the round's last step */
} loco_arrival;
void loco_metrics_arrival(loco_metrics *mt, const loco_arrival *a);

/* A worker's emulated failure and return. */
enum { LOCO_FAULT_FAIL, LOCO_FAULT_BACK, LOCO_FAULT_GONE };
extern const loco_enum loco_fault_kinds[];   /* "fail", "back", "gone" */

/* {"event":"fault","worker","kind","time_s","wall_s","lost_steps"}: lost_steps are the
 * steps of the round it was running (given back to the run's budget). */
typedef struct {
    int worker, kind;
    long lost_steps;
    double time_s, wall_s;
} loco_fault_event;
void loco_metrics_fault(loco_metrics *mt, const loco_fault_event *f);

/* ---- the summary ---- */

enum { LOCO_STALE_BUCKETS = 33 };   /* staleness 0..31, then 32 and more */

/* One worker's row of an asynchronous run's summary. */
typedef struct {
    double slowdown;
    long rounds, steps, tokens, rejected, faults;
    double compute_s, slowdown_s, lockwait_s, idle_s;
    int ftz_daz;                     /* computed with flush-to-zero, denormals-are-zero */
    double last_lr;                  /* the inner learning rate of its last step */
} loco_worker_row;

typedef struct {
    const char *status;              /* "finished", "stopped", "incomplete" or "failed" */
    double final_val, final_se;      /* the final figure and its standard error */
    const char *commit, *cpu;        /* what made it: loco_commit, loco_cpu_name */
    long final_windows;              /* the validation windows it was measured on */
    long steps, tokens, params;
    double wall_s, train_s;
    long local_steps;                /* summed over workers (single: steps x run.workers) */
    double time_s;                   /* the run's time: virtual seconds, or wall */
    long checkpoints;                /* written by this process (a resumed run counts its own) */
    double checkpoint_s;             /* wall seconds the run was held for them (waiting for
                                        the rounds under way to end, then writing) */
    double checkpoint_write_s;       /* of which writing */
    const char *precision;           /* of the matrix products: "fp32" or "bf16" */
    const char *blas_core;           /* the OpenBLAS kernel set the products ran on */
    const char *blas_core_detected;  /* what OpenBLAS picked by itself (NULL: the user chose) */
    /* asynchronous runs only (method != NULL) */
    const char *method, *clock;
    int workers, virtual_clock;
    long updates;
    double server_busy, evaluator_busy;
    long rejected[LOCO_ARRIVALS];    /* by LOCO_ARRIVAL_* ([APPLIED] unused) */
    long evals_skipped, faults, returns;
    long stale_hist[LOCO_STALE_BUCKETS];
    long dc_held, dc_all;            /* delay compensation's corrections held to |g|, of all */
    int stripes;
    long stripe_kib, stripe_waits;
    double stripe_wait_s;
    const loco_worker_row *rows;     /* workers rows */
} loco_summary;

/* The summary as summary.json's object, built into j (begun and ended here). */
void loco_summary_json(const loco_summary *s, int byte_level, loco_json *j);

/* The summary for people, on stderr: the totals, and for asynchronous runs the table of
 * workers and the server's figures. */
void loco_metrics_say_summary(loco_metrics *mt, const loco_summary *s);

/* ---- the terminal ---- */

/* The progress line on stderr: rewritten in place on a terminal; printed as its own line
 * otherwise only when force is set, so logs stay short. */
void loco_metrics_progress(loco_metrics *mt, int force, const loco_progress *p);

/* An ordinary message on stderr that does not clobber the progress line. */
void loco_metrics_say(loco_metrics *mt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* dir/name holding text (and a final newline), written crash-safely. */
int loco_write_text(const char *dir, const char *name, const char *text, loco_err *e);


/* Bits per byte of a mean loss in nats, for byte-level tokens. */
double loco_bits_per_byte(double loss);

#endif
