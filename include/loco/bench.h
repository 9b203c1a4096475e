/* bench: the benchmarks behind `loco bench` (their sources live in bench/). Each prints
 * notes on stderr and its result as one JSON object on the last line of stdout. */
#ifndef LOCO_BENCH_H
#define LOCO_BENCH_H

#include "loco/config.h"

/* The full training step (forward, backward, AdamW) on one thread, against cblas_sgemm
 * timed on the step's own matrix shapes in the same run. */
int loco_bench_step(const loco_config *c, const char *config_name, loco_err *e);

/* The global buffer's push-add, pull and sweep bandwidth for 1..cores threads, stripe
 * sizes and lock kinds, against memcpy and a STREAM-style triad in the same run. */
int loco_bench_apply(const loco_config *c, const char *config_name, loco_err *e);

/* Aggregate training tokens/s of asynchronous runs with W = 1..cores workers (real clock,
 * no slowdown), the time workers wait, and the virtual clock's overhead. */
int loco_bench_scale(const loco_config *c, const char *config_name, loco_err *e);

/* A real-clock run of 16 workers under jitter, speed changes, failures, poisoned and
 * diverging rounds and checkpoints every 3 s, for `seconds`, watched from outside: every
 * checkpoint verifies, resident memory stays flat; at the end every arrival is applied or
 * rejected, theta is finite and no thread is left. Fails (-1) when a check does. */
typedef struct {
    double seconds;
    const char *out;           /* keep the run here; NULL: a temporary directory, removed */
    int small_model;           /* a 2-layer, 64-wide model (16 replicas checkpointed often) */
} loco_soak_opts;
int loco_bench_soak(const loco_config *c, const char *config_name, const loco_soak_opts *o,
                    loco_err *e);

#endif
