/* Each backward kernel against central finite differences of its own forward, and the
 * forward kernels against plain scalar references written from the formulas. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/base.h"
#include "loco/kernels.h"

/* Every array a test makes, freed together by free_arrays() at the end of the test. */
static float *arrays[64];
static int narrays;

static float *rand_array(loco_rng *r, long n, float scale) {
    float *x = loco_alloc((size_t)n * sizeof(float));
    cr_assert(x && narrays < 64, "test arrays");
    for (long i = 0; i < n; i++) x[i] = scale * (2.0f * loco_rng_uniform(r) - 1.0f);
    return arrays[narrays++] = x;
}

static void free_arrays(void) {
    while (narrays > 0) free(arrays[--narrays]);
}

/* A kernel under test: fills out from its inputs; loss = sum(w * out) in double. */
typedef struct {
    void (*forward)(void *ctx);
    void *ctx;
    const float *out, *w;
    long nout;
} probe;

static double probe_loss(const probe *p) {
    p->forward(p->ctx);
    double s = 0.0;
    for (long i = 0; i < p->nout; i++) s += (double)p->w[i] * p->out[i];
    return s;
}

/* Compares the analytic gradient g of the probe's loss with respect to x (n floats)
 * with central differences at up to 48 spread-out indices. */
static void check_grad(const char *what, const probe *p, float *x, const float *g, long n,
                       float h) {
    float gmax = 0.0f;
    for (long i = 0; i < n; i++) gmax = fabsf(g[i]) > gmax ? fabsf(g[i]) : gmax;
    cr_assert_gt(gmax, 0.0f, "%s: analytic gradient is all zero", what);
    long stride = n > 48 ? n / 48 : 1;
    for (long i = 0; i < n; i += stride) {
        float old = x[i];
        x[i] = old + h;
        float up = x[i];
        double lp = probe_loss(p);
        x[i] = old - h;
        float down = x[i];
        double lm = probe_loss(p);
        x[i] = old;
        double fd = (lp - lm) / ((double)up - (double)down);
        double tol = 2e-3 * gmax + 1e-2 * fabs(fd);
        cr_assert_leq(fabs(fd - g[i]), tol, "%s[%ld]: analytic %.6g, finite difference %.6g",
                      what, i, (double)g[i], fd);
    }
    probe_loss(p);
}

/* ------------------------------------------------------------- layernorm */

typedef struct {
    float *out, *mean, *rstd, *x, *w, *b;
    int N, C;
} ln_ctx;

static void ln_fwd(void *c) {
    ln_ctx *k = c;
    loco_layernorm_forward(k->out, k->mean, k->rstd, k->x, k->w, k->b, k->N, k->C);
}

Test(kernels, layernorm_backward_matches_finite_differences) {
    loco_rng r;
    loco_rng_seed(&r, 1, 0);
    int N = 6, C = 40;
    ln_ctx k = {rand_array(&r, N * C, 0), rand_array(&r, N, 0), rand_array(&r, N, 0),
                rand_array(&r, N * C, 2.0f), rand_array(&r, C, 1.0f), rand_array(&r, C, 1.0f),
                N, C};
    float *w = rand_array(&r, N * C, 1.0f);
    probe p = {ln_fwd, &k, k.out, w, N * C};
    probe_loss(&p);
    float *dx = rand_array(&r, N * C, 0), *dw = rand_array(&r, C, 0), *db = rand_array(&r, C, 0);
    float *dsum = rand_array(&r, C, 0);
    loco_layernorm_backward(dx, dw, db, w, k.x, k.w, k.mean, k.rstd, N, C, dsum);
    check_grad("layernorm dinp", &p, k.x, dx, N * C, 1e-2f);
    check_grad("layernorm dweight", &p, k.w, dw, C, 1e-2f);
    check_grad("layernorm dbias", &p, k.b, db, C, 1e-2f);
    for (int i = 0; i < C; i++) { /* the fused column sums of dinp */
        double ref = 0.0;
        for (int n = 0; n < N; n++) ref += dx[n * C + i];
        cr_assert_lt(fabs(ref - dsum[i]), 1e-5 * (1 + fabs(ref)), "dinp_sum[%d]", i);
    }
    free_arrays();
}

Test(kernels, residual_layernorm_is_the_add_then_the_layernorm) {
    loco_rng r;
    loco_rng_seed(&r, 11, 0);
    int N = 5, C = 48;
    float *a = rand_array(&r, N * C, 2.0f), *b = rand_array(&r, N * C, 2.0f);
    float *rb = rand_array(&r, C, 1.0f), *w = rand_array(&r, C, 1.0f), *lb = rand_array(&r, C, 1.0f);
    float *res = rand_array(&r, N * C, 0), *out = rand_array(&r, N * C, 0);
    float *mean = rand_array(&r, N, 0), *rstd = rand_array(&r, N, 0);
    float *res2 = rand_array(&r, N * C, 0), *out2 = rand_array(&r, N * C, 0);
    float *mean2 = rand_array(&r, N, 0), *rstd2 = rand_array(&r, N, 0);
    loco_residual_layernorm_forward(res, out, mean, rstd, a, b, rb, w, lb, N, C);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) res2[n * C + i] = a[n * C + i] + b[n * C + i] + rb[i];
    loco_layernorm_forward(out2, mean2, rstd2, res2, w, lb, N, C);
    cr_assert(memcmp(res, res2, sizeof(float) * N * C) == 0, "residual");
    cr_assert(memcmp(out, out2, sizeof(float) * N * C) == 0, "layernorm of the residual");
    cr_assert(memcmp(mean, mean2, sizeof(float) * N) == 0 && memcmp(rstd, rstd2, sizeof(float) * N) == 0);
    free_arrays();
}

Test(kernels, layernorm_forward_normalises_rows) {
    loco_rng r;
    loco_rng_seed(&r, 2, 0);
    int N = 3, C = 64;
    float *x = rand_array(&r, N * C, 5.0f), *out = rand_array(&r, N * C, 0);
    float *one = rand_array(&r, C, 0), *zero = rand_array(&r, C, 0);
    float mean[3], rstd[3];
    for (int i = 0; i < C; i++) one[i] = 1.0f;
    loco_layernorm_forward(out, mean, rstd, x, one, zero, N, C);
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += out[n * C + i];
        for (int i = 0; i < C; i++) v += out[n * C + i] * out[n * C + i];
        cr_assert_lt(fabs(m / C), 1e-5, "row %d mean %g", n, m / C);
        cr_assert_lt(fabs(v / C - 1.0), 1e-3, "row %d variance %g", n, v / C);
    }
    free_arrays();
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    float *out, *x, *w, *b;
    int N, C, OC;
} mm_ctx;

static void mm_fwd(void *c) {
    mm_ctx *k = c;
    loco_matmul_forward(NULL, -1, k->out, k->x, k->w, k->b, k->N, k->C, k->OC);
}

Test(kernels, matmul_forward_matches_scalar_reference) {
    loco_rng r;
    loco_rng_seed(&r, 3, 0);
    int N = 5, C = 7, OC = 9;
    mm_ctx k = {rand_array(&r, N * OC, 0), rand_array(&r, N * C, 1), rand_array(&r, OC * C, 1),
                rand_array(&r, OC, 1), N, C, OC};
    mm_fwd(&k);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = k.b[o];
            for (int i = 0; i < C; i++) s += (double)k.x[n * C + i] * k.w[o * C + i];
            cr_assert_lt(fabs(s - k.out[n * OC + o]), 1e-5, "out[%d,%d]", n, o);
        }
    free_arrays();
}

Test(kernels, matmul_backward_matches_finite_differences) {
    loco_rng r;
    loco_rng_seed(&r, 4, 0);
    int N = 6, C = 10, OC = 12;
    mm_ctx k = {rand_array(&r, N * OC, 0), rand_array(&r, N * C, 1), rand_array(&r, OC * C, 1),
                rand_array(&r, OC, 1), N, C, OC};
    float *w = rand_array(&r, N * OC, 1);
    probe p = {mm_fwd, &k, k.out, w, N * OC};
    float *dx = rand_array(&r, N * C, 5.0f); /* written, so old contents must not matter */
    float *dw = rand_array(&r, OC * C, 0), *db = rand_array(&r, OC, 0);
    loco_matmul_backward(NULL, -1, dx, dw, db, w, k.x, k.w, N, C, OC);
    check_grad("matmul dinp", &p, k.x, dx, N * C, 1e-2f);
    check_grad("matmul dweight", &p, k.w, dw, OC * C, 1e-2f);
    check_grad("matmul dbias", &p, k.b, db, OC, 1e-2f);
    free_arrays();
}

/* ------------------------------------------------------------- attention */

typedef struct {
    float *out, *att, *qkv;
    int B, T, C, NH;
} att_ctx;

static void att_fwd(void *c) {
    att_ctx *k = c;
    loco_attention_forward(NULL, k->out, k->att, k->qkv, k->B, k->T, k->C, k->NH);
}

/* plain causal attention, one output element at a time */
static double att_reference(const float *qkv, int b, int t, int c, int T, int C, int NH) {
    int hs = C / NH, h = c / hs;
    const float *base = qkv + (long)b * T * 3 * C;
    double s[200], mx = -1e30, sum = 0, y = 0;
    for (int j = 0; j <= t; j++) {
        double d = 0;
        for (int i = 0; i < hs; i++)
            d += (double)base[t * 3 * C + h * hs + i] * base[j * 3 * C + C + h * hs + i];
        s[j] = d / sqrt((double)hs);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = 0; j <= t; j++) sum += s[j] = exp(s[j] - mx);
    for (int j = 0; j <= t; j++) y += s[j] / sum * base[j * 3 * C + 2 * C + c];
    return y;
}

/* T = 70 spans two row blocks of the blocked causal kernel */
static att_ctx make_att(loco_rng *r, int B, int T, int C, int NH) {
    att_ctx k = {rand_array(r, B * T * C, 0), rand_array(r, B * NH * T * T, 0),
                 rand_array(r, B * T * 3 * C, 1.5f), B, T, C, NH};
    return k;
}

Test(kernels, attention_forward_matches_scalar_reference) {
    loco_rng r;
    loco_rng_seed(&r, 5, 0);
    att_ctx k = make_att(&r, 2, 70, 8, 2);
    att_fwd(&k);
    for (int b = 0; b < k.B; b++)
        for (int t = 0; t < k.T; t++)
            for (int c = 0; c < k.C; c++) {
                double ref = att_reference(k.qkv, b, t, c, k.T, k.C, k.NH);
                cr_assert_lt(fabs(ref - k.out[(b * k.T + t) * k.C + c]), 1e-5,
                             "out[%d,%d,%d]: %g vs reference %g", b, t, c,
                             (double)k.out[(b * k.T + t) * k.C + c], ref);
            }
    free_arrays();
}

Test(kernels, attention_backward_matches_finite_differences) {
    loco_rng r;
    loco_rng_seed(&r, 6, 0);
    att_ctx k = make_att(&r, 2, 70, 8, 2);
    float *w = rand_array(&r, k.B * k.T * k.C, 1);
    probe p = {att_fwd, &k, k.out, w, k.B * k.T * k.C};
    probe_loss(&p);
    float *dqkv = rand_array(&r, k.B * k.T * 3 * k.C, 3.0f);
    float *scratch = rand_array(&r, loco_attention_scratch(k.B, k.T, k.NH), 0);
    loco_attention_backward(NULL, dqkv, scratch, w, k.qkv, k.att, k.B, k.T, k.C, k.NH);
    check_grad("attention dqkv", &p, k.qkv, dqkv, k.B * k.T * 3 * k.C, 1e-2f);
    free_arrays();
}

/* ------------------------------------------------------------------ gelu */

typedef struct {
    float *pre, *out, *x, *bias;
    int N, C;
} bias_gelu_ctx;

/* pre is overwritten by the kernel, so each evaluation starts from x */
static void bias_gelu_fwd(void *c) {
    bias_gelu_ctx *k = c;
    memcpy(k->pre, k->x, sizeof(float) * k->N * k->C);
    loco_bias_gelu_forward(k->pre, k->out, k->bias, k->N, k->C);
}

/* GELU's tanh form in double, the reference the sigmoid form must match */
static double gelu_ref(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

Test(kernels, bias_gelu_matches_the_formula_and_finite_differences) {
    loco_rng r;
    loco_rng_seed(&r, 8, 0);
    int N = 7, C = 40;
    long n = (long)N * C;
    bias_gelu_ctx k = {rand_array(&r, n, 0), rand_array(&r, n, 0), rand_array(&r, n, 4.0f),
                       rand_array(&r, C, 2.0f), N, C};
    bias_gelu_fwd(&k);
    for (long i = 0; i < n; i++) {
        float x = k.x[i] + k.bias[i % C];   /* the same float sum the kernel makes */
        double ref = gelu_ref(x);
        cr_assert_eq(k.pre[i], x, "pre-activation kept at %ld", i);
        cr_assert_lt(fabs(ref - k.out[i]), 1e-6 + 1e-6 * fabs(ref), "gelu(%g)", (double)x);
    }
    float *w = rand_array(&r, n, 1), *dx = rand_array(&r, n, 0), *db = rand_array(&r, C, 0);
    probe p = {bias_gelu_fwd, &k, k.out, w, n};
    loco_gelu_bias_backward(dx, db, k.pre, w, N, C);
    check_grad("bias+gelu dinp", &p, k.x, dx, n, 1e-3f);
    check_grad("bias+gelu dbias", &p, k.bias, db, C, 1e-3f);
    free_arrays();
}

/* ---------------------------------------------------- softmax + xent */

typedef struct {
    float *logits, *work, *losses, *mean;
    int *targets;
    int N, V, Vp;
} xent_ctx;

static void xent_fwd(void *c) {
    xent_ctx *k = c;
    memcpy(k->work, k->logits, (size_t)k->N * k->Vp * sizeof(float));
    k->mean[0] = loco_softmax_xent_forward(k->work, k->losses, k->targets, k->N, k->V, k->Vp);
}

Test(kernels, softmax_xent_matches_reference_and_finite_differences) {
    loco_rng r;
    loco_rng_seed(&r, 8, 0);
    int N = 5, V = 50, Vp = 64;
    int targets[5] = {0, 7, 49, 13, 20};
    float mean = 0, one = 1;
    xent_ctx k = {rand_array(&r, N * Vp, 4), rand_array(&r, N * Vp, 0), rand_array(&r, N, 0),
                  &mean, targets, N, V, Vp};
    xent_fwd(&k);
    double total = 0;
    for (int n = 0; n < N; n++) {
        double mx = -1e30, s = 0;
        for (int i = 0; i < V; i++) mx = fmax(mx, k.logits[n * Vp + i]);
        for (int i = 0; i < V; i++) s += exp(k.logits[n * Vp + i] - mx);
        total += log(s) + mx - k.logits[n * Vp + targets[n]];
        for (int i = V; i < Vp; i++) cr_assert_eq(k.work[n * Vp + i], 0.0f, "padded prob");
    }
    cr_assert_lt(fabs(total / N - mean), 1e-5, "mean loss %g vs reference %g", (double)mean,
                 total / N);
    probe p = {xent_fwd, &k, &mean, &one, 1};
    loco_softmax_xent_backward(k.work, targets, 1.0f / N, N, Vp);
    float *dlogits = rand_array(&r, N * Vp, 0);
    memcpy(dlogits, k.work, (size_t)N * Vp * sizeof(float));
    /* only the first V columns are logits of the loss; the padded ones have 0 gradient */
    for (int n = 0; n < N; n++)
        for (int i = V; i < Vp; i++) cr_assert_eq(dlogits[n * Vp + i], 0.0f, "padded grad");
    check_grad("xent dlogits", &p, k.logits, dlogits, N * Vp, 1e-2f);
    free_arrays();
}

/* --------------------------------------------------------------- encoder */

Test(kernels, encoder_adds_token_and_position_and_scatters_back) {
    loco_rng r;
    loco_rng_seed(&r, 9, 0);
    int B = 2, T = 3, C = 4, V = 5;
    int inp[6] = {1, 4, 1, 0, 2, 4};
    float *wte = rand_array(&r, V * C, 1), *wpe = rand_array(&r, T * C, 1);
    float *out = rand_array(&r, B * T * C, 0);
    loco_encoder_forward(out, inp, wte, wpe, B, T, C);
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            cr_assert_eq(out[i * C + c], wte[inp[i] * C + c] + wpe[(i % T) * C + c]);
    float *dwte = rand_array(&r, V * C, 0), *dwpe = rand_array(&r, T * C, 0);
    float *dout = rand_array(&r, B * T * C, 1);
    loco_encoder_backward(dwte, dwpe, dout, inp, B, T, C);
    /* token 1 appears at (0,0) and (0,2); token 3 never */
    for (int c = 0; c < C; c++) {
        cr_assert_float_eq(dwte[1 * C + c], dout[0 * C + c] + dout[2 * C + c], 1e-6);
        cr_assert_eq(dwte[3 * C + c], 0.0f);
        cr_assert_float_eq(dwpe[1 * C + c], dout[1 * C + c] + dout[4 * C + c], 1e-6);
    }
    free_arrays();
}

Test(kernels, expf_is_accurate_over_its_range) {
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        double ref = exp((double)x), got = loco_expf(x);
        double rel = fabs(got - ref) / ref;
        worst = rel > worst ? rel : worst;
    }
    cr_assert_lt(worst, 4e-7, "worst relative error %g", worst);
    cr_assert_eq(loco_expf(-200.0f) < 1e-37f, 1, "underflows to ~0");
    free_arrays();
}
