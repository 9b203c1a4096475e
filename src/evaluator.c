#include "loco/evaluator.h"

#include <math.h>
#include <pthread.h>
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

/* One thread of a whole-file evaluation: batches k = first, first + stride, ... */
typedef struct {
    loco_evaluator ev;
    const float *params;
    double *sums;           /* per batch, so the total is summed in one fixed order */
    size_t nwin, first, stride;
    pthread_t thread;
} file_part;

static void *eval_part(void *arg) {
    file_part *p = arg;
    loco_evaluator *ev = &p->ev;
    size_t B = (size_t)ev->B;
    for (size_t k = p->first; k * B < p->nwin; k += p->stride) {
        size_t w = k * B;
        int rows = p->nwin - w < B ? (int)(p->nwin - w) : ev->B;
        for (int b = 0; b < rows; b++)
            loco_data_window(ev->d, (w + (size_t)b) * ev->T, ev->T, ev->inputs + b * ev->T,
                             ev->targets + b * ev->T);
        p->sums[k] = batch_loss_sum(ev, p->params, rows);
    }
    return NULL;
}

double loco_eval_file(const loco_model *m, const float *params, const loco_data *d, int B,
                      int T, int threads, long *tokens, loco_err *e) {
    size_t nwin = (d->n - 1) / (size_t)T, nbatches = (nwin + (size_t)B - 1) / (size_t)B;
    if (nwin == 0) return loco_errf(e, "%s: %zu tokens, fewer than one window of %d + 1", d->path, d->n, T), NAN;
    if ((size_t)threads > nbatches) threads = (int)nbatches;
    file_part *parts = calloc((size_t)threads, sizeof *parts);
    double *sums = calloc(nbatches, sizeof *sums), total = NAN;
    int started = 0;
    if (!parts || !sums) {
        loco_errf(e, "out of memory");
        goto done;
    }
    for (; started < threads; started++) {
        file_part *p = &parts[started];
        *p = (file_part){.params = params, .sums = sums, .nwin = nwin, .first = (size_t)started,
                         .stride = (size_t)threads};
        if (loco_evaluator_init(&p->ev, m, d, B, T, 1, e) != 0) break;
        if (pthread_create(&p->thread, NULL, eval_part, p) != 0) {
            loco_evaluator_free(&p->ev);
            loco_errf(e, "cannot start evaluation thread %d", started);
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(parts[i].thread, NULL);
        loco_evaluator_free(&parts[i].ev);
    }
    if (started == threads) {
        total = 0;
        for (size_t k = 0; k < nbatches; k++) total += sums[k];
        *tokens = (long)(nwin * (size_t)T);
        total /= (double)*tokens;
    }
done:
    free(parts);
    free(sums);
    return total;
}

double loco_bits_per_byte(double loss) {
    return loss / log(2.0);
}
