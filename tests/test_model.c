/* The whole model's backward against finite differences of its loss, tensor by tensor;
 * causality; the layout and the initialisation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/model.h"
#include "bf16.h"

typedef struct {
    loco_model m;
    loco_acts a;
    float *params, *grads;
    int *inp, *tgt;
    int B, T;
} tiny;

/* V = 100 pads to Vp = 128; T = 70 spans two attention row blocks */
static void tiny_make(tiny *t, int T) {
    loco_shape s = {.V = 100, .Vp = loco_padded_vocab(100), .maxT = T, .L = 2, .NH = 2, .C = 16};
    loco_err e;
    cr_assert_eq(loco_model_init(&t->m, &s, &e), 0, "%s", e.msg);
    t->B = 2;
    t->T = T;
    cr_assert_eq(loco_acts_alloc(&t->a, &t->m, t->B, T, &e), 0, "%s", e.msg);
    t->params = loco_alloc(t->m.nparams * sizeof(float));
    t->grads = loco_alloc(t->m.nparams * sizeof(float));
    loco_model_init_params(&t->m, t->params, 42);
    /* bigger than init so every path carries a gradient well above float noise */
    loco_rng r;
    loco_rng_seed(&r, 7, 0);
    for (size_t i = 0; i < t->m.nparams; i++) t->params[i] += 0.05f * (float)loco_rng_normal(&r);
    for (int i = t->m.s.V * t->m.s.C; i < t->m.s.Vp * t->m.s.C; i++) t->params[i] = 0.0f;
    t->inp = malloc(sizeof(int) * t->B * T);
    t->tgt = malloc(sizeof(int) * t->B * T);
    for (int i = 0; i < t->B * T; i++) {
        t->inp[i] = (int)loco_rng_below(&r, 100);
        t->tgt[i] = (int)loco_rng_below(&r, 100);
    }
}

static void tiny_free(tiny *t) {
    loco_acts_free(&t->a);
    free(t->params);
    free(t->grads);
    free(t->inp);
    free(t->tgt);
}

/* mean loss summed in double from the per-token losses */
static double tiny_loss(tiny *t) {
    loco_model_forward(&t->m, t->params, &t->a, t->inp, t->tgt, t->B, t->T);
    double s = 0;
    for (int i = 0; i < t->B * t->T; i++) s += t->a.losses[i];
    return s / (t->B * t->T);
}

static void tiny_grads(tiny *t) {
    memset(t->grads, 0, t->m.nparams * sizeof(float));
    loco_model_forward(&t->m, t->params, &t->a, t->inp, t->tgt, t->B, t->T);
    loco_model_backward(&t->m, t->params, t->grads, &t->a, t->inp, t->tgt, t->B, t->T);
}

/* Directional derivative along a +-1 direction over the tensor, against a central
 * difference of the loss; the direction is restricted to the entries the loss can see
 * (rows of the padded vocabulary excluded). Half its entries (at random) follow the sign of
 * the gradient and half are random: a purely random direction can cancel out to a
 * derivative too small to test, one along the gradient alone would not test the parts the
 * gradient has wrong signs in. */
static void check_tensor_direction(tiny *t, int id) {
    const loco_tensor *ten = &t->m.t[id];
    size_t n = id == LOCO_WTE ? (size_t)t->m.s.V * t->m.s.C : ten->count;
    float *p = t->params + ten->offset, *g = t->grads + ten->offset;
    float *dir = malloc(n * sizeof(float)), *saved = malloc(n * sizeof(float));
    loco_rng r;
    loco_rng_seed(&r, 99, (uint64_t)id);
    double analytic = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = loco_rng_u64(&r);
        float sign = g[i] >= 0 ? 1.0f : -1.0f;
        dir[i] = bits & 2 ? sign : (bits & 1 ? 1.0f : -1.0f);
        analytic += (double)g[i] * dir[i];
    }
    memcpy(saved, p, n * sizeof(float));
    double h = 1e-3;
    for (size_t i = 0; i < n; i++) p[i] = saved[i] + (float)h * dir[i];
    double up = tiny_loss(t);
    for (size_t i = 0; i < n; i++) p[i] = saved[i] - (float)h * dir[i];
    double down = tiny_loss(t);
    memcpy(p, saved, n * sizeof(float));
    double fd = (up - down) / (2 * h);
    cr_assert_gt(fabs(analytic), 1e-4, "%s: directional gradient %g is too small to test",
                 ten->name, analytic);
    cr_assert_lt(fabs(fd - analytic), 2e-2 * fabs(analytic) + 2e-4,
                 "%s: analytic directional derivative %.6g, finite difference %.6g", ten->name,
                 analytic, fd);
    free(dir);
    free(saved);
}

/* The largest few entries of the tensor's gradient, one at a time. */
static void check_tensor_entries(tiny *t, int id) {
    const loco_tensor *ten = &t->m.t[id];
    float *p = t->params + ten->offset, *g = t->grads + ten->offset;
    for (int k = 0; k < 3; k++) {
        size_t best = 0;
        for (size_t i = 0; i < ten->count; i++)
            if (fabsf(g[i]) > fabsf(g[best])) best = i;
        float old = p[best], h = 1e-2f;
        p[best] = old + h;
        double up = tiny_loss(t);
        p[best] = old - h;
        double down = tiny_loss(t);
        p[best] = old;
        double fd = (up - down) / (2.0 * h);
        cr_assert_lt(fabs(fd - g[best]), 3e-2 * fabs(g[best]) + 1e-5,
                     "%s[%zu]: analytic %.6g, finite difference %.6g", ten->name, best,
                     (double)g[best], fd);
        g[best] = 0.0f; /* next round picks the next largest */
    }
}

Test(model, backward_matches_finite_differences_for_every_tensor) {
    tiny t;
    tiny_make(&t, 70);
    for (int id = 0; id < LOCO_NTENSORS; id++) {
        tiny_grads(&t);
        check_tensor_direction(&t, id);
        check_tensor_entries(&t, id);
    }
    tiny_free(&t);
}

Test(model, padded_vocabulary_rows_get_no_gradient) {
    tiny t;
    tiny_make(&t, 8);
    tiny_grads(&t);
    const float *g = t.grads + t.m.t[LOCO_WTE].offset;
    for (int i = t.m.s.V * t.m.s.C; i < t.m.s.Vp * t.m.s.C; i++)
        cr_assert_eq(g[i], 0.0f, "padded row gradient at %d", i);
    tiny_free(&t);
}

Test(model, output_at_t_does_not_depend_on_later_tokens) {
    tiny t;
    tiny_make(&t, 70);
    tiny_loss(&t);
    int N = t.B * t.T;
    float *before = malloc(sizeof(float) * N);
    memcpy(before, t.a.losses, sizeof(float) * N);
    int cut = 40;
    for (int b = 0; b < t.B; b++) t.inp[b * t.T + cut] = (t.inp[b * t.T + cut] + 1) % 100;
    tiny_loss(&t);
    for (int b = 0; b < t.B; b++)
        for (int i = 0; i < t.T; i++) {
            float x = before[b * t.T + i], y = t.a.losses[b * t.T + i];
            if (i < cut) cr_assert_eq(x, y, "loss at t=%d changed by a token at t=%d", i, cut);
            if (i == cut) cr_assert_neq(x, y, "loss at t=%d did not see its own input", i);
        }
    free(before);
    tiny_free(&t);
}

Test(model, layout_is_aligned_contiguous_and_in_llmc_order) {
    loco_shape s = {.V = 256, .Vp = 256, .maxT = 128, .L = 4, .NH = 4, .C = 256};
    loco_model m;
    loco_err e;
    cr_assert_eq(loco_model_init(&m, &s, &e), 0);
    const char *order[] = {"wte",  "wpe",     "ln1w",     "ln1b", "qkvw", "qkvb",
                           "attprojw", "attprojb", "ln2w", "ln2b", "fcw",  "fcb",
                           "fcprojw",  "fcprojb",  "lnfw", "lnfb"};
    size_t expect = 0, total = 0;
    for (int i = 0; i < LOCO_NTENSORS; i++) {
        cr_assert_str_eq(m.t[i].name, order[i]);
        cr_assert_eq(m.t[i].offset % 16, 0, "%s not 64-byte aligned", order[i]);
        cr_assert_eq(m.t[i].offset, expect, "%s does not follow its predecessor", order[i]);
        expect += (m.t[i].count + 15) / 16 * 16;
        total += m.t[i].count;
    }
    cr_assert_eq(m.nparams, expect);
    cr_assert_eq(m.ntrue, total);
    /* 12 L C^2 + 13 L C + (Vp + maxT) C + 2C, llm.c's count */
    size_t L = 4, C = 256;
    cr_assert_eq(total, 12 * L * C * C + 13 * L * C + (256 + 128) * C + 2 * C);
    loco_shape bad = s;
    bad.NH = 3;
    cr_assert_eq(loco_model_init(&m, &bad, &e), -1);
    cr_assert(strstr(e.msg, "divisible"), "%s", e.msg);
}

Test(model, init_has_gpt2_statistics_and_is_seeded) {
    loco_shape s = {.V = 100, .Vp = 128, .maxT = 64, .L = 3, .NH = 4, .C = 64};
    loco_model m;
    cr_assert_eq(loco_model_init(&m, &s, NULL), 0);
    float *a = loco_alloc(m.nparams * 4), *b = loco_alloc(m.nparams * 4);
    loco_model_init_params(&m, a, 5);
    loco_model_init_params(&m, b, 5);
    cr_assert_eq(memcmp(a, b, m.nparams * 4), 0, "same seed, same parameters");
    loco_model_init_params(&m, b, 6);
    cr_assert_neq(memcmp(a, b, m.nparams * 4), 0, "another seed, other parameters");
    struct { int id; double std; } cases[] = {
        {LOCO_QKVW, 0.02}, {LOCO_FCW, 0.02}, {LOCO_ATTPROJW, 0.02 / sqrt(6.0)},
        {LOCO_FCPROJW, 0.02 / sqrt(6.0)}};
    for (int k = 0; k < 4; k++) {
        const loco_tensor *t = &m.t[cases[k].id];
        double ss = 0;
        for (size_t i = 0; i < t->count; i++) ss += (double)a[t->offset + i] * a[t->offset + i];
        double std = sqrt(ss / t->count);
        cr_assert_lt(fabs(std / cases[k].std - 1), 0.05, "%s std %g, expected %g", t->name, std,
                     cases[k].std);
    }
    for (size_t i = 0; i < m.t[LOCO_LN1W].count; i++) cr_assert_eq(a[m.t[LOCO_LN1W].offset + i], 1.0f);
    for (size_t i = 0; i < m.t[LOCO_QKVB].count; i++) cr_assert_eq(a[m.t[LOCO_QKVB].offset + i], 0.0f);
    for (size_t i = (size_t)s.V * s.C; i < (size_t)s.Vp * s.C; i++) cr_assert_eq(a[i], 0.0f);
    free(a);
    free(b);
}

/* ------------------------------------------------------------ bf16 products */

/* One forward and backward in bf16 against fp32, from the same parameters and batch. bf16
 * has an 8-bit significand: each input of a product is rounded by up to 2^-9 (~2e-3)
 * relative, while accumulation stays fp32, so a product's output carries errors of a few
 * 1e-3 relative (less where the rounding errors average out over K terms). They compound
 * through the L layers forward and again backward, so the loss moves by ~1e-3 and each
 * tensor's gradient by a few 1e-3 in relative L2; the bounds (1e-2 on the loss, 2e-2 on
 * the gradients) leave margin for that, while a broken bf16 path (a wrong transpose, an
 * operand from a stale mirror or the wrong kept slot) is off by O(1). The gradients must
 * not be identical to fp32: the bf16 path ran. */
Test(model, a_bf16_step_matches_fp32_within_bf16_rounding) {
    SKIP_WITHOUT_BF16();
    enum { B = 4, T = 32 };
    loco_shape s = {.V = 256, .Vp = 256, .maxT = T, .L = 2, .NH = 2, .C = 64};
    loco_model m;
    loco_err e;
    cr_assert_eq(loco_model_init(&m, &s, &e), 0, "%s", e.msg);
    loco_acts a32, a16;
    cr_assert_eq(loco_acts_alloc(&a32, &m, B, T, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_acts_alloc(&a16, &m, B, T, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_mm_init(&a16.mm, LOCO_PREC_BF16, &e), 0, "%s", e.msg);
    float *params = loco_alloc(m.nparams * sizeof(float));
    float *g32 = loco_alloc(m.nparams * sizeof(float)), *g16 = loco_alloc(m.nparams * sizeof(float));
    cr_assert(params && g32 && g16, "test arrays");
    loco_model_init_params(&m, params, 3);
    loco_rng r;
    loco_rng_seed(&r, 21, 0);
    int inp[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int)loco_rng_below(&r, 256);
        tgt[i] = (int)loco_rng_below(&r, 256);
    }
    memset(g32, 0, m.nparams * sizeof(float));
    memset(g16, 0, m.nparams * sizeof(float));
    float l32 = loco_model_forward(&m, params, &a32, inp, tgt, B, T);
    loco_model_backward(&m, params, g32, &a32, inp, tgt, B, T);
    /* as the worker does: the weights' bf16 mirror refreshed before the forward */
    loco_mm_mirror(a16.mm, params, m.nparams);
    float l16 = loco_model_forward(&m, params, &a16, inp, tgt, B, T);
    loco_model_backward(&m, params, g16, &a16, inp, tgt, B, T);
    cr_assert(isfinite(l16), "bf16 loss %g", (double)l16);
    cr_assert_leq(fabs(l16 - l32), 1e-2 * fabs(l32), "loss bf16 %.7g, fp32 %.7g", (double)l16,
                  (double)l32);
    for (int id = 0; id < LOCO_NTENSORS; id++) {
        const loco_tensor *t = &m.t[id];
        double d = 0, n = 0;
        for (size_t i = t->offset; i < t->offset + t->count; i++) {
            d += ((double)g16[i] - g32[i]) * ((double)g16[i] - g32[i]);
            n += (double)g32[i] * g32[i];
        }
        cr_assert_gt(n, 0.0, "%s has a gradient", t->name);
        cr_assert_leq(sqrt(d / n), 2e-2, "%s: relative L2 error %.3g of the bf16 gradient",
                      t->name, sqrt(d / n));
    }
    cr_assert_neq(memcmp(g16, g32, m.nparams * sizeof(float)), 0,
                  "bf16 gradients bit-identical to fp32: the bf16 path did not run");
    cr_assert_gt(loco_mm_primitives(a16.mm), 0, "the products ran on oneDNN");
    loco_mm_free(a16.mm);
    a16.mm = NULL;
    loco_acts_free(&a16);
    loco_acts_free(&a32);
    free(params), free(g32), free(g16);
}
