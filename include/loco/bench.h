/* bench: the benchmarks behind `loco bench` (their sources live in bench/). Each prints
 * notes on stderr and its result as one JSON object on the last line of stdout. */
#ifndef LOCO_BENCH_H
#define LOCO_BENCH_H

#include "loco/config.h"

/* The full training step (forward, backward, AdamW) on one thread, against cblas_sgemm
 * timed on the step's own matrix shapes in the same run. */
int loco_bench_step(const loco_config *c, const char *config_name, loco_err *e);

#endif
