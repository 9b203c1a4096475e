#include "loco/evaluator.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "loco/cpu.h"

int loco_evaluator_init(loco_evaluator *ev, const loco_model *m, const loco_data *d, int B,
                        int T, int nbatches, loco_err *e) {
    memset(ev, 0, sizeof *ev);
    ev->m = m;
    ev->d = d;
    ev->B = B;
    ev->T = T;
    ev->nbatches = nbatches;
    size_t batch = sizeof(int) * (size_t)B * T;
    loco_err ae;
    if (!(ev->inputs = loco_alloc_for(batch, "evaluator", "its batch's inputs", e)) ||
        !(ev->targets = loco_alloc_for(batch, "evaluator", "its batch's targets", e)) ||
        (loco_acts_alloc(&ev->acts, m, B, T, &ae) != 0 && loco_errf(e, "evaluator: %s", ae.msg))) {
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
    return loco_evaluator_val_loss_se(ev, params, NULL);
}

double loco_evaluator_val_loss_se(loco_evaluator *ev, const float *params, double *se) {
    double total = 0.0, sq = 0.0; /* the sum of the tokens' losses; of the windows' means^2 */
    for (int i = 0; i < ev->nbatches; i++) {
        loco_data_val_batch(ev->d, i, ev->nbatches, ev->B, ev->T, ev->inputs, ev->targets, NULL);
        total += batch_loss_sum(ev, params, ev->B);
        for (int b = 0; b < ev->B; b++) {
            double w = 0.0;
            for (int t = 0; t < ev->T; t++) w += ev->acts.losses[(size_t)b * ev->T + t];
            w /= ev->T;
            sq += w * w;
        }
    }
    double n = (double)ev->nbatches * ev->B, mean = total / (n * ev->T);
    if (se) *se = n > 1 ? sqrt(fmax(sq - n * mean * mean, 0.0) / (n - 1) / n) : NAN;
    return mean;
}

int loco_eval_final(const loco_model *m, const loco_data *d, int B, int T, int nbatches,
                    const float *params, double *loss, double *se, loco_err *e) {
    loco_evaluator ev;
    if (loco_evaluator_init(&ev, m, d, B, T, nbatches, e) != 0) return -1;
    *loss = loco_evaluator_val_loss_se(&ev, params, se);
    loco_evaluator_free(&ev);
    return 0;
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
    loco_fp_flush_denormals();
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

/* ------------------------------------------------- the evaluator thread */

enum { SLOT_FREE, SLOT_RESERVED, SLOT_READY };

/* the slot whose turn it is, when it is ready; NULL otherwise */
static loco_snapshot *next_ready(loco_eval_thread *et) {
    for (int i = 0; i < LOCO_SNAPSHOTS; i++) {
        loco_snapshot *s = &et->slot[i];
        if (s->state == SLOT_READY && s->seq == et->done_seq) return s;
    }
    return NULL;
}

static int pending(const loco_eval_thread *et) {
    return et->done_seq < et->next_seq;
}

/* binds, allocates on this thread (first touch), then serves snapshots in order */
static void *eval_main(void *arg) {
    loco_eval_thread *et = arg;
    loco_err e;
    loco_fp_flush_denormals();
    int rc = loco_topo_bind(et->topo, et->place, &e);
    if (rc == 0) rc = loco_evaluator_init(&et->ev, et->m, et->d, et->B, et->T, et->nbatches, &e);
    for (int i = 0; rc == 0 && i < LOCO_SNAPSHOTS; i++) {
        char what[64];
        snprintf(what, sizeof what, "snapshot %d of %d of theta", i + 1, LOCO_SNAPSHOTS);
        et->slot[i].params = loco_alloc_for(et->m->nparams * sizeof(float), "evaluator", what, &e);
        if (!et->slot[i].params) rc = -1;
    }
    pthread_mutex_lock(&et->mu);
    et->state = rc != 0 ? LOCO_EVAL_FAILED : LOCO_EVAL_RUNNING;
    if (rc != 0) et->err = e;
    pthread_cond_broadcast(&et->cv);
    while (rc == 0) {
        loco_snapshot *s;
        while (!(s = next_ready(et)) && !(et->closing && !pending(et)))
            pthread_cond_wait(&et->cv, &et->mu);
        if (!s) break;
        pthread_mutex_unlock(&et->mu);
        double t0 = loco_now();
        double loss = loco_evaluator_val_loss(&et->ev, s->params);
        if (et->report) et->report(et->ctx, s, loss);
        pthread_mutex_lock(&et->mu);
        et->busy_s += loco_now() - t0;
        s->state = SLOT_FREE;
        et->done_seq++;
        pthread_cond_broadcast(&et->cv);
    }
    pthread_mutex_unlock(&et->mu);
    return NULL;
}

int loco_eval_thread_start(loco_eval_thread *et, const loco_model *m, const loco_data *d, int B,
                           int T, int nbatches, const loco_topo *topo, const loco_place *place,
                           loco_eval_report report, void *ctx, loco_err *e) {
    *et = (loco_eval_thread){.m = m, .d = d, .B = B, .T = T, .nbatches = nbatches,
                             .topo = topo, .place = place, .report = report, .ctx = ctx};
    pthread_mutex_init(&et->mu, NULL);
    pthread_cond_init(&et->cv, NULL);
    if (pthread_create(&et->thread, NULL, eval_main, et) != 0)
        return loco_errf(e, "cannot start the evaluator thread");
    pthread_mutex_lock(&et->mu);
    while (et->state == LOCO_EVAL_STARTING) pthread_cond_wait(&et->cv, &et->mu);
    int ok = et->state == LOCO_EVAL_RUNNING;
    pthread_mutex_unlock(&et->mu);
    if (ok) return 0;
    if (e) *e = et->err;
    pthread_join(et->thread, NULL);
    et->closing = 1;
    loco_eval_thread_stop(et);
    return -1;
}

/* a free slot, under mu; NULL when none */
static loco_snapshot *free_slot(loco_eval_thread *et) {
    for (int i = 0; i < LOCO_SNAPSHOTS; i++)
        if (et->slot[i].state == SLOT_FREE) return &et->slot[i];
    return NULL;
}

loco_snapshot *loco_eval_thread_try_reserve(loco_eval_thread *et) {
    pthread_mutex_lock(&et->mu);
    loco_snapshot *s = free_slot(et);
    if (s) {
        s->state = SLOT_RESERVED;
        s->seq = et->next_seq++;
    }
    pthread_mutex_unlock(&et->mu);
    return s;
}

void loco_eval_thread_drain(loco_eval_thread *et, int keep) {
    pthread_mutex_lock(&et->mu);
    while (et->next_seq - et->done_seq > keep) pthread_cond_wait(&et->cv, &et->mu);
    pthread_mutex_unlock(&et->mu);
}

int loco_eval_thread_has_free(loco_eval_thread *et) {
    pthread_mutex_lock(&et->mu);
    int any = free_slot(et) != NULL;
    pthread_mutex_unlock(&et->mu);
    return any;
}

void loco_eval_thread_wait_free(loco_eval_thread *et) {
    pthread_mutex_lock(&et->mu);
    while (!free_slot(et)) pthread_cond_wait(&et->cv, &et->mu);
    pthread_mutex_unlock(&et->mu);
}

void loco_eval_thread_ready(loco_eval_thread *et, loco_snapshot *s) {
    pthread_mutex_lock(&et->mu);
    s->state = SLOT_READY;
    pthread_cond_broadcast(&et->cv);
    pthread_mutex_unlock(&et->mu);
}

double loco_eval_thread_stop(loco_eval_thread *et) {
    if (!et->closing) {
        pthread_mutex_lock(&et->mu);
        et->closing = 1;
        pthread_cond_broadcast(&et->cv);
        pthread_mutex_unlock(&et->mu);
        pthread_join(et->thread, NULL);
    }
    for (int i = 0; i < LOCO_SNAPSHOTS; i++) free(et->slot[i].params);
    loco_evaluator_free(&et->ev);
    pthread_mutex_destroy(&et->mu);
    pthread_cond_destroy(&et->cv);
    double busy = et->busy_s;
    memset(et, 0, sizeof *et);
    return busy;
}

int loco_eval_marks(long before, long now, long every, long *first, long *last) {
    *first = *last = 0;
    if (every <= 0 || now / every == before / every) return 0;
    *first = (before / every + 1) * every;
    *last = now / every * every;
    return 1;
}
