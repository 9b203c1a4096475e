#include "loco/worker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void loco_adamw_hp_from_config(loco_adamw_hp *hp, const loco_config *c) {
    hp->lr = c->train.lr;
    hp->lr_min = c->train.lr_min;
    hp->warmup = c->train.warmup;
    hp->steps = c->train.steps;
    hp->beta1 = c->train.beta1;
    hp->beta2 = c->train.beta2;
    hp->eps = c->train.eps;
    hp->weight_decay = c->train.weight_decay;
    hp->grad_clip = c->train.grad_clip;
}

int loco_worker_init(loco_worker *w, int id, const loco_model *m, const loco_data *d,
                     const loco_config *c, const float *init, loco_err *e) {
    memset(w, 0, sizeof *w);
    w->id = id;
    w->m = m;
    w->B = (int)c->train.batch;
    w->T = (int)c->model.seq_len;
    loco_adamw_hp_from_config(&w->hp, c);
    loco_stream_init(&w->stream, d, (uint64_t)c->run.seed, (uint64_t)id);
    size_t bytes = m->nparams * sizeof(float);
    w->params = loco_alloc(bytes);
    w->grads = loco_alloc(bytes);
    w->adam_m = loco_alloc(bytes);
    w->adam_v = loco_alloc(bytes);
    w->inputs = loco_alloc(sizeof(int) * (size_t)w->B * w->T);
    w->targets = loco_alloc(sizeof(int) * (size_t)w->B * w->T);
    if (!w->params || !w->grads || !w->adam_m || !w->adam_v || !w->inputs || !w->targets) {
        loco_worker_free(w);
        return loco_errf(e, "worker %d: out of memory for %zu parameters", id, m->nparams);
    }
    if (loco_acts_alloc(&w->acts, m, w->B, w->T, e) != 0) {
        loco_worker_free(w);
        return -1;
    }
    memcpy(w->params, init, bytes);
    return 0;
}

void loco_worker_free(loco_worker *w) {
    free(w->params);
    free(w->grads);
    free(w->adam_m);
    free(w->adam_v);
    free(w->inputs);
    free(w->targets);
    loco_acts_free(&w->acts);
    memset(w, 0, sizeof *w);
}

static void apply_adamw(loco_worker *w, float lr, float gscale) {
    const loco_model *m = w->m;
    for (int i = 0; i < LOCO_NTENSORS; i++) {
        const loco_tensor *t = &m->t[i];
        float wd = t->decay ? (float)w->hp.weight_decay : 0.0f;
        loco_adamw_update(w->params + t->offset, w->grads + t->offset, w->adam_m + t->offset,
                          w->adam_v + t->offset, t->count, w->steps, lr, wd, gscale, &w->hp);
    }
}

float loco_worker_grad(loco_worker *w) {
    const loco_model *m = w->m;
    loco_stream_next(&w->stream, w->B, w->T, w->inputs, w->targets);
    memset(w->grads, 0, m->nparams * sizeof(float));
    w->loss = loco_model_forward(m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    loco_model_backward(m, w->params, w->grads, &w->acts, w->inputs, w->targets, w->B, w->T);
    return w->loss;
}

void loco_worker_update(loco_worker *w) {
    w->grad_norm = sqrt(loco_sumsq(w->grads, w->m->nparams));
    float lr = (float)loco_adamw_lr(&w->hp, w->steps);
    w->steps++;
    apply_adamw(w, lr, loco_clip_scale(&w->hp, w->grad_norm));
}

float loco_worker_step(loco_worker *w) {
    float loss = loco_worker_grad(w);
    loco_worker_update(w);
    return loss;
}
