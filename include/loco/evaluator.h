/* evaluator: validation loss of a set of parameters. Owns its own activations and the
 * fixed validation batches (the same windows at every evaluation), and the whole-file
 * evaluation of `loco eval` (every consecutive window of T+1 tokens, as llm.c reads a
 * validation shard, spread over threads). Never writes the parameters it is given. */
#ifndef LOCO_EVALUATOR_H
#define LOCO_EVALUATOR_H

#include "loco/data.h"
#include "loco/model.h"

typedef struct {
    const loco_model *m;
    const loco_data *d;
    loco_acts acts;
    int *inputs, *targets;
    int B, T, nbatches;
} loco_evaluator;

/* Errors when the validation part holds fewer than nbatches * B windows. */
int loco_evaluator_init(loco_evaluator *ev, const loco_model *m, const loco_data *d, int B,
                        int T, int nbatches, loco_err *e);
void loco_evaluator_free(loco_evaluator *ev);

/* Mean cross-entropy over the fixed validation batches. */
double loco_evaluator_val_loss(loco_evaluator *ev, const float *params);

/* Mean cross-entropy over all floor((n-1)/T) consecutive windows of d (opened without a
 * split), B windows per forward, on `threads` threads (each with its own activations);
 * the same result whatever the thread count. *tokens gets the number of predicted
 * tokens. NaN with a message on error. */
double loco_eval_file(const loco_model *m, const float *params, const loco_data *d, int B,
                      int T, int threads, long *tokens, loco_err *e);

/* Bits per byte of a mean loss in nats, for byte-level tokens. */
double loco_bits_per_byte(double loss);

#endif
