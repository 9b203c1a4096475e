/* The worker's step: allocation-free, deterministic, and the same as the model + AdamW
 * pieces composed by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loco/config.h"
#include "loco/train.h"
#include "loco/worker.h"

typedef struct {
    loco_config c;
    loco_worker_opts o;
    loco_model m;
    loco_data d;
    float *init;
} fixture;

static void setup(fixture *f) {
    loco_err e;
    loco_config_default(&f->c);
    cr_assert_eq(loco_config_load_file(&f->c, "configs/tiny.ini", &e), 0, "%s", e.msg);
    loco_shape s = {.V = 256, .Vp = 256, .maxT = (int)f->c.model.seq_len,
                    .L = (int)f->c.model.layers, .NH = (int)f->c.model.heads,
                    .C = (int)f->c.model.dim};
    cr_assert_eq(loco_model_init(&f->m, &s, &e), 0);
    cr_assert_eq(loco_data_open(&f->d, f->c.data.path, LOCO_FORMAT_TEXT, 256,
                                (size_t)f->c.data.block, f->c.data.val_every, &e), 0, "%s", e.msg);
    f->init = loco_alloc(f->m.nparams * sizeof(float));
    loco_model_init_params(&f->m, f->init, 5);
    loco_worker_opts_from_config(&f->c, &f->o);
}

static void teardown(fixture *f) {
    loco_data_close(&f->d);
    free(f->init);
}

#ifndef LOCO_SANITIZE
/* jemalloc (linked into the normal build) counts each thread's allocations */
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

static uint64_t allocated_by_this_thread(void) {
    uint64_t v = 0;
    size_t n = sizeof v;
    cr_assert_eq(mallctl("thread.allocated", &v, &n, NULL, 0), 0, "jemalloc's counter");
    return v;
}

Test(worker, a_step_allocates_nothing) {
    fixture f;
    setup(&f);
    loco_worker w;
    loco_err e;
    cr_assert_eq(loco_worker_init(&w, 0, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    loco_worker_step(&w); /* first use of every buffer */
    uint64_t before = allocated_by_this_thread();
    for (int i = 0; i < 5; i++) loco_worker_step(&w);
    uint64_t after = allocated_by_this_thread();
    cr_assert_eq(after, before, "5 steps allocated %lu bytes", (unsigned long)(after - before));
    loco_worker_free(&w);
    teardown(&f);
}
#endif

Test(worker, step_is_forward_backward_clip_and_adamw_composed) {
    fixture f;
    setup(&f);
    loco_worker w, ref;
    loco_err e;
    cr_assert_eq(loco_worker_init(&w, 3, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_worker_init(&ref, 3, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    for (int step = 0; step < 3; step++) {
        float loss = loco_worker_step(&w);
        /* the same step by hand on the twin */
        loco_stream_next(&ref.stream, ref.B, ref.T, ref.inputs, ref.targets);
        memset(ref.grads, 0, f.m.nparams * sizeof(float));
        float l2 = loco_model_forward(&f.m, ref.params, &ref.acts, ref.inputs, ref.targets, ref.B, ref.T);
        loco_model_backward(&f.m, ref.params, ref.grads, &ref.acts, ref.inputs, ref.targets, ref.B, ref.T);
        double norm = sqrt(loco_sumsq(ref.grads, f.m.nparams));
        float lr = (float)loco_adamw_lr(&ref.hp, step), scale = loco_clip_scale(&ref.hp, norm);
        for (int i = 0; i < LOCO_NTENSORS; i++) {
            const loco_tensor *t = &f.m.t[i];
            loco_adamw_update(ref.params + t->offset, ref.grads + t->offset, ref.adam_m + t->offset,
                              ref.adam_v + t->offset, t->count, step + 1, lr,
                              t->decay ? (float)f.c.train.weight_decay : 0.0f, scale, &ref.hp);
        }
        cr_assert_eq(loss, l2, "step %d loss", step);
        cr_assert_eq(memcmp(w.params, ref.params, f.m.nparams * sizeof(float)), 0,
                     "step %d parameters", step);
    }
    cr_assert_eq(w.steps, 3);
    loco_worker_free(&w);
    loco_worker_free(&ref);
    teardown(&f);
}
