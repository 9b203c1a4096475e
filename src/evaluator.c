#include "loco/evaluator.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int loco_evaluator_init(loco_evaluator *ev, const loco_model *m, const loco_data *d, int B,
                        int T, int nbatches, loco_err *e) {
    memset(ev, 0, sizeof *ev);
    ev->m = m;
    ev->d = d;
    ev->B = B;
    ev->T = T;
    ev->nbatches = nbatches;
    ev->inputs = loco_alloc(sizeof(int) * (size_t)B * T);
    ev->targets = loco_alloc(sizeof(int) * (size_t)B * T);
    if (!ev->inputs || !ev->targets) {
        loco_evaluator_free(ev);
        return loco_errf(e, "out of memory for the evaluator");
    }
    if (loco_acts_alloc(&ev->acts, m, B, T, e) != 0) {
        loco_evaluator_free(ev);
        return -1;
    }
    /* the val windows are checked once here, so evaluating later cannot fail */
    if (d->nval > 0 &&
        loco_data_val_batch(d, 0, nbatches, B, T, ev->inputs, ev->targets, e) != 0) {
        loco_evaluator_free(ev);
        return -1;
    }
    return 0;
}

void loco_evaluator_free(loco_evaluator *ev) {
    free(ev->inputs);
    free(ev->targets);
    loco_acts_free(&ev->acts);
    memset(ev, 0, sizeof *ev);
}

/* sum of the per-token losses of the first n rows of B x T, in double */
static double batch_loss_sum(loco_evaluator *ev, const float *params, int B) {
    loco_model_forward(ev->m, params, &ev->acts, ev->inputs, ev->targets, B, ev->T);
    double s = 0.0;
    for (int i = 0; i < B * ev->T; i++) s += ev->acts.losses[i];
    return s;
}

double loco_evaluator_val_loss(loco_evaluator *ev, const float *params) {
    double total = 0.0;
    for (int i = 0; i < ev->nbatches; i++) {
        loco_data_val_batch(ev->d, i, ev->nbatches, ev->B, ev->T, ev->inputs, ev->targets, NULL);
        total += batch_loss_sum(ev, params, ev->B);
    }
    return total / ((double)ev->nbatches * ev->B * ev->T);
}

double loco_evaluator_file_loss(loco_evaluator *ev, const float *params, long *tokens) {
    size_t nwin = (ev->d->n - 1) / (size_t)ev->T;
    double total = 0.0;
    for (size_t w = 0; w < nwin; w += (size_t)ev->B) {
        int rows = nwin - w < (size_t)ev->B ? (int)(nwin - w) : ev->B;
        for (int b = 0; b < rows; b++)
            loco_data_window(ev->d, (w + (size_t)b) * ev->T, ev->T, ev->inputs + b * ev->T,
                             ev->targets + b * ev->T);
        total += batch_loss_sum(ev, params, rows);
    }
    *tokens = (long)(nwin * (size_t)ev->T);
    return nwin ? total / (double)*tokens : NAN;
}

double loco_bits_per_byte(double loss) {
    return loss / log(2.0);
}
