#include "loco/replica.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "loco/cpu.h"
#include "loco/outer.h"

/* bf16: one forward and backward on a batch of zeros, so that every oneDNN primitive and
 * every bf16 buffer of the step is made now, at start-up, and never in a step. Nothing
 * it computes is kept (the first step zeroes the gradients) and the data stream has not
 * moved. */
static void warm_up(loco_replica *w) {
    if (loco_mm_precision(w->acts.mm) != LOCO_PREC_BF16) return;
    size_t tokens = (size_t)w->B * w->T;
    memset(w->inputs, 0, tokens * sizeof(int));
    memset(w->targets, 0, tokens * sizeof(int));
    loco_mm_mirror(w->acts.mm, w->params, w->m->nparams);
    loco_model_forward(w->m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    loco_model_backward(w->m, w->params, w->grads, &w->acts, w->inputs, w->targets, w->B, w->T);
    memset(w->grads, 0, w->m->nparams * sizeof(float));
}

int loco_replica_init(loco_replica *w, int id, const loco_model *m, const loco_data *d,
                     const loco_replica_opts *o, const float *init, loco_err *e) {
    memset(w, 0, sizeof *w);
    w->id = id;
    w->m = m;
    w->B = o->B;
    w->T = o->T;
    w->hp = o->hp;
    w->lr_pos = -1;
    loco_stream_init(&w->stream, d, o->seed, o->first_stream + (uint64_t)id);
    size_t bytes = m->nparams * sizeof(float), batch = sizeof(int) * (size_t)w->B * w->T;
    char who[32];
    snprintf(who, sizeof who, "worker %d", id);
    loco_err ae;
    if (!(w->params = loco_alloc_for(bytes, who, "its parameters", e)) ||
        !(w->grads = loco_alloc_for(bytes, who, "its gradients", e)) ||
        !(w->adam_m = loco_alloc_for(bytes, who, "its AdamW first moment m", e)) ||
        !(w->adam_v = loco_alloc_for(bytes, who, "its AdamW second moment v", e)) ||
        !(w->inputs = loco_alloc_for(batch, who, "its batch's inputs", e)) ||
        !(w->targets = loco_alloc_for(batch, who, "its batch's targets", e)) ||
        (loco_acts_alloc(&w->acts, m, w->B, w->T, &ae) != 0 &&
         loco_errf(e, "%s: %s", who, ae.msg)) ||
        (loco_mm_init(&w->acts.mm, o->precision, &ae) != 0 &&
         loco_errf(e, "%s: %s", who, ae.msg))) {
        loco_replica_free(w);
        return -1;
    }
    memcpy(w->params, init, bytes);
    warm_up(w);
    return 0;
}

void loco_replica_free(loco_replica *w) {
    free(w->params);
    free(w->grads);
    free(w->adam_m);
    free(w->adam_v);
    free(w->inputs);
    free(w->targets);
    loco_mm_free(w->acts.mm);
    loco_acts_free(&w->acts);
    memset(w, 0, sizeof *w);
}

static void apply_adamw(loco_replica *w, float lr, float gscale) {
    const loco_model *m = w->m;
    for (int i = 0; i < LOCO_NTENSORS; i++) {
        const loco_tensor *t = &m->t[i];
        float wd = t->decay ? (float)w->hp.weight_decay : 0.0f;
        loco_adamw_update(w->params + t->offset, w->grads + t->offset, w->adam_m + t->offset,
                          w->adam_v + t->offset, t->count, w->steps, lr, wd, gscale, &w->hp);
    }
}

float loco_replica_grad(loco_replica *w, int accumulate) {
    const loco_model *m = w->m;
    loco_stream_next(&w->stream, w->B, w->T, w->inputs, w->targets);
    if (!accumulate) memset(w->grads, 0, m->nparams * sizeof(float));
    /* bf16: the weights' copy is refreshed before every forward, so nothing that changes
     * the parameters (AdamW, a pull, a resume) can leave it stale; fp32: nothing */
    loco_mm_mirror(w->acts.mm, w->params, m->nparams);
    w->loss = loco_model_forward(m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    loco_model_backward(m, w->params, w->grads, &w->acts, w->inputs, w->targets, w->B, w->T);
    return w->loss;
}

void loco_replica_update(loco_replica *w, float scale) {
    w->grad_norm = sqrt(loco_sumsq(w->grads, w->m->nparams)) * scale;
    float lr = (float)loco_adamw_lr_at(&w->hp, w->lr_pos >= 0 ? w->lr_pos : (double)w->steps);
    w->steps++;
    w->lr = lr;
    apply_adamw(w, lr, scale * loco_clip_scale(&w->hp, w->grad_norm));
}

float loco_replica_step(loco_replica *w) {
    float loss = loco_replica_grad(w, 0);
    loco_replica_update(w, 1.0f);
    return loss;
}

void loco_replica_reset_optimizer(loco_replica *w) {
    memset(w->adam_m, 0, w->m->nparams * sizeof(float));
    memset(w->adam_v, 0, w->m->nparams * sizeof(float));
}

/* the replica's scalars after its three arrays (params, m, v), in the checkpoint's order */
#define REPLICA(f, kind, lo, hi) {offsetof(loco_replica, f), LOCO_FIELD_##kind, lo, hi}
static const loco_field replica_fields[] = {
    REPLICA(steps, LONG, 0, LOCO_BIG),
    REPLICA(stream.rng.s, U64, 0, 0),
    REPLICA(loss, F32, 0, 0),
    REPLICA(grad_norm, F64, 0, 0),
    REPLICA(lr, F64, 0, 0),
};
enum { NREPLICA_FIELDS = sizeof replica_fields / sizeof replica_fields[0], REPLICA_ARRAYS = 3 };

size_t loco_replica_state_bytes(size_t nparams) {
    return REPLICA_ARRAYS * nparams * sizeof(float) + NREPLICA_FIELDS * LOCO_FIELD_BYTES;
}

void loco_replica_save(const loco_replica *w, loco_pack *p) {
    size_t n = w->m->nparams;
    loco_pack_floats(p, w->params, n);
    loco_pack_floats(p, w->adam_m, n);
    loco_pack_floats(p, w->adam_v, n);
    loco_pack_fields(p, w, replica_fields, NREPLICA_FIELDS);
}

int loco_replica_load(loco_replica *w, loco_unpack *u) {
    size_t n = w->m->nparams;
    loco_unpack_floats(u, w->params, n);
    loco_unpack_floats(u, w->adam_m, n);
    loco_unpack_floats(u, w->adam_v, n);
    loco_unpack_fields(u, w, replica_fields, NREPLICA_FIELDS, 0);
    return u->bad ? -1 : 0;
}
