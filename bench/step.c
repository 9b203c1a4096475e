/* bench step: the training step against the sgemm ceiling at the step's own shapes. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/bench.h"
#include "loco/settings.h"
#include "loco/cpu.h"
#include "loco/train.h"
#include "loco/data.h"
#include "loco/kernels.h"
#include "loco/metrics.h"
#include "loco/model.h"
#include "loco/worker.h"

/* ------------------------------------------------------- the sgemm ceiling */

/* One product shape of the step, in batches of nb x nh (attention's heads; 1 x 1 for a
 * linear layer), and how many times a step makes it. */
typedef struct {
    int M, N, K, ta, tb, nb, nh;
    long count;
} shape;

enum { MAX_SHAPES = 64 };

typedef struct {
    shape s[MAX_SHAPES];
    int n;
} shape_list;

static void add_batch(shape_list *l, int M, int N, int K, int ta, int tb, int nb, int nh,
                      long count) {
    for (int i = 0; i < l->n; i++) {
        shape *s = &l->s[i];
        if (s->M == M && s->N == N && s->K == K && s->ta == ta && s->tb == tb && s->nb == nb &&
            s->nh == nh) {
            s->count += count;
            return;
        }
    }
    if (l->n < MAX_SHAPES) l->s[l->n++] = (shape){M, N, K, ta, tb, nb, nh, count};
}

static void add(shape_list *l, int M, int N, int K, int ta, int tb, long count) {
    add_batch(l, M, N, K, ta, tb, 1, 1, count);
}

/* a linear layer (N,in) -> (N,out): forward, input gradient, weight gradient */
static void add_linear(shape_list *l, int N, int in, int out, long count) {
    add(l, N, out, in, 0, 1, count);
    add(l, N, in, out, 0, 0, count);
    add(l, out, in, N, 1, 0, count);
}

/* Every product loco_model_forward and _backward make, as kernels.c makes them. */
static void step_shapes(shape_list *l, const loco_model *m, int B, int T) {
    int N = B * T, C = m->s.C, L = m->s.L, hs = C / m->s.NH;
    memset(l, 0, sizeof *l);
    add_linear(l, N, C, 3 * C, L);
    add_linear(l, N, C, C, L);
    add_linear(l, N, C, 4 * C, L);
    add_linear(l, N, 4 * C, C, L);
    add_linear(l, N, C, m->s.Vp, 1);
    /* attention: per row block, one batch over every (batch, head) */
    int NH = m->s.NH;
    for (int r0 = 0; r0 < T; r0 += LOCO_ATT_ROWS) {
        int r1 = r0 + LOCO_ATT_ROWS < T ? r0 + LOCO_ATT_ROWS : T, rows = r1 - r0;
        add_batch(l, rows, r1, hs, 0, 1, B, NH, 2 * L);  /* scores; dp */
        add_batch(l, rows, hs, r1, 0, 0, B, NH, 2 * L);  /* p v; dq */
        add_batch(l, r1, hs, rows, 1, 0, B, NH, 2 * L);  /* dv; dk */
    }
}

/* one call of a shape, dense operands: sgemm, once per product of the batch (mm NULL;
 * a, b floats), or oneDNN's bf16 matmul, the whole batch at once (a, b bf16) */
static void product(const shape *s, loco_mm *mm, const void *a, const void *b, float *c) {
    long MN = (long)s->M * s->N, MK = (long)s->M * s->K, KN = (long)s->K * s->N;
    if (mm) {
        loco_gemm_bf16_batch(mm, s->nb, s->nh, s->ta, s->tb, s->M, s->N, s->K, 1.0f, a, b, 0.0f,
                             c, s->nh * MN, MN, s->N);
        return;
    }
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    for (long i = 0; i < (long)s->nb * s->nh; i++)
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                    s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f,
                    (const float *)a + i * MK, lda, (const float *)b + i * KN, ldb, 0.0f,
                    c + i * MN, s->N);
}

/* seconds per call of one shape, best of a few timed batches */
static double time_product(const shape *s, loco_mm *mm, const void *a, const void *b, float *c) {
    double best = 1e30;
    product(s, mm, a, b, c); /* a bf16 primitive is made on its first call */
    for (int rep = 0; rep < 5; rep++) {
        int calls = 0;
        double t0 = loco_now(), t;
        do {
            product(s, mm, a, b, c);
            calls++;
            t = loco_now() - t0;
        } while (t < 0.02);
        best = t / calls < best ? t / calls : best;
    }
    return best;
}

/* GFLOP/s of the product (sgemm, or bf16 with mm) over the step's shapes, each weighted
 * by the work it does in a step: the step's ceiling */
static double ceiling(const shape_list *l, loco_mm *mm) {
    size_t most = 0;
    for (int i = 0; i < l->n; i++) {
        size_t batch = (size_t)l->s[i].nb * l->s[i].nh;
        size_t ab = batch * ((size_t)l->s[i].M * l->s[i].K + (size_t)l->s[i].K * l->s[i].N);
        size_t cc = batch * (size_t)l->s[i].M * l->s[i].N;
        most = ab > most ? ab : most;
        most = cc > most ? cc : most;
    }
    float *a = loco_alloc(most * 4), *b = loco_alloc(most * 4), *c = loco_alloc(most * 4);
    for (size_t i = 0; i < most; i++) a[i] = b[i] = 0.01f * (float)(i % 97);
    if (mm) { /* the same values in bf16, in the first half of each buffer */
        loco_to_bf16((uint16_t *)a, a, most);
        loco_to_bf16((uint16_t *)b, b, most);
    }
    double flops = 0, secs = 0;
    for (int i = 0; i < l->n; i++) {
        const shape *s = &l->s[i];
        flops += 2.0 * s->M * s->N * s->K * s->nb * s->nh * (double)s->count;
        secs += time_product(s, mm, a, b, c) * (double)s->count;
    }
    free(a);
    free(b);
    free(c);
    return flops / secs / 1e9;
}

/* ------------------------------------------------------------- the step */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median seconds of a full worker step, over at least 5 steps and 3 seconds */
static double time_steps(loco_replica *w, int *nsteps) {
    enum { MAX = 64 };
    double t[MAX];
    int n = 0;
    double start = loco_now();
    for (int i = 0; i < 2; i++) loco_replica_step(w); /* warm caches and page faults */
    start = loco_now();
    while (n < MAX && (n < 5 || loco_now() - start < 3.0)) {
        double t0 = loco_now();
        loco_replica_step(w);
        t[n++] = loco_now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    *nsteps = n;
    return t[n / 2];
}

/* where a step's time goes: forward; forward + backward; clipping + AdamW */
static void phase_times(loco_replica *w, double *fwd, double *grad, double *update) {
    double t0 = loco_now();
    loco_model_forward(w->m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    double t1 = loco_now();
    loco_replica_grad(w, 0);
    double t2 = loco_now();
    loco_replica_update(w, 1.0f);
    double t3 = loco_now();
    *fwd = t1 - t0;
    *grad = t2 - t1;
    *update = t3 - t2;
}

/* the process's threads now, from /proc (0 where there is none) */
static int thread_count(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    if (f) fclose(f);
    return n;
}

/* One precision's step: its median time and where it goes. */
typedef struct {
    double step, fwd, grad, update;
    int n;
} step_time;

static int time_precision(const loco_config *c, const loco_model *m, const loco_data *d,
                          const float *init, loco_precision p, step_time *st, loco_err *e) {
    loco_replica_opts wo;
    loco_replica_opts_from_config(c, &wo);
    wo.precision = p;
    loco_replica w;
    if (loco_replica_init(&w, 0, m, d, &wo, init, e) != 0) return -1;
    st->step = time_steps(&w, &st->n);
    phase_times(&w, &st->fwd, &st->grad, &st->update);
    loco_replica_free(&w);
    return 0;
}

static void say_step(const char *name, const step_time *st, double gflops, double ceil,
                     const char *ceil_name) {
    fprintf(stderr, "  %s: step %.1f ms (median of %d): forward %.1f, backward %.1f, AdamW %.1f ms\n",
            name, st->step * 1e3, st->n, st->fwd * 1e3, (st->grad - st->fwd) * 1e3,
            st->update * 1e3);
    fprintf(stderr, "  %s: %.1f GFLOP/s, %s at the step's shapes %.1f GFLOP/s: %.0f%%\n", name,
            gflops, ceil_name, ceil, 100 * gflops / ceil);
}

int loco_bench_step(const loco_config *c, const char *config_name, loco_err *e) {
    loco_shape s = loco_shape_from_config(c);
    loco_model m;
    loco_data d;
    if (loco_model_init(&m, &s, e) != 0) return -1;
    if (loco_data_open(&d, c->data.path, c->data.format, s.V, (size_t)c->data.block,
                       c->data.val_every, e) != 0)
        return -1;
    int B = (int)c->train.batch, T = (int)c->model.seq_len;
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    char feat[64];
    loco_cpu_features(&cpu, feat, sizeof feat);
    loco_precision bf;
    int has_bf16 = loco_precision_resolve(LOCO_PREC_BF16, &bf, NULL, 0, NULL) == 0;
    char name[160];
    fprintf(stderr, "bench step: %s, %zu parameters, B=%d T=%d, one thread; CPU %s, bf16: %s\n",
            config_name, m.ntrue, B, T, loco_cpu_name(&cpu, name, sizeof name), feat);
    loco_blas_say(stderr, "  ");
    float *init = loco_alloc(m.nparams * sizeof(float));
    loco_model_init_params(&m, init, (uint64_t)c->run.seed);
    step_time f32 = {0}, b16 = {0};
    int rc = time_precision(c, &m, &d, init, LOCO_PREC_FP32, &f32, e);
    if (rc == 0 && has_bf16) rc = time_precision(c, &m, &d, init, LOCO_PREC_BF16, &b16, e);
    free(init);
    loco_data_close(&d);
    if (rc != 0) return -1;
    int threads = thread_count();
    shape_list shapes;
    step_shapes(&shapes, &m, B, T);
    double flops = loco_model_flops_per_token(&m, T) * B * T;
    double sgemm = ceiling(&shapes, NULL), gf32 = flops / f32.step / 1e9;
    say_step("fp32", &f32, gf32, sgemm, "sgemm");
    double bfmm = NAN, gb16 = NAN;
    if (has_bf16) {
        loco_mm *mm;
        if (loco_mm_init(&mm, LOCO_PREC_BF16, e) != 0) return -1;
        bfmm = ceiling(&shapes, mm);
        loco_mm_free(mm);
        gb16 = flops / b16.step / 1e9;
        say_step("bf16", &b16, gb16, bfmm, "oneDNN bf16 matmul");
        fprintf(stderr, "  bf16/fp32 step: %.2fx; threads in the process: %d\n",
                f32.step / b16.step, threads);
    } else {
        fprintf(stderr, "  bf16: not measured, this CPU has neither AVX512-BF16 nor AMX\n");
    }
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "bench", "step");
    loco_json_str(&j, "config", config_name);
    loco_json_int(&j, "params", (long)m.ntrue);
    loco_json_int(&j, "batch", B);
    loco_json_int(&j, "seq_len", T);
    loco_json_num(&j, "step_ms", f32.step * 1e3);
    loco_json_num(&j, "tokens_per_s", B * T / f32.step);
    loco_json_num(&j, "step_gflops", gf32);
    loco_json_num(&j, "sgemm_gflops", sgemm);
    loco_json_num(&j, "mfu_vs_sgemm", gf32 / sgemm);
    loco_json_str(&j, "cpu_bf16", feat);
    loco_json_str(&j, "onednn_isa", cpu.isa);
    loco_json_str(&j, "cpu", name);
    loco_json_str(&j, "blas_core", loco_blas()->core);
    loco_json_str(&j, "blas_core_detected", loco_blas()->choice.detected);
    loco_json_str(&j, "blas_core_by", loco_enum_name(loco_blas_by_names, loco_blas()->choice.by));
    loco_json_num(&j, "bf16_step_ms", has_bf16 ? b16.step * 1e3 : NAN);
    loco_json_num(&j, "bf16_tokens_per_s", has_bf16 ? B * T / b16.step : NAN);
    loco_json_num(&j, "bf16_step_gflops", gb16);
    loco_json_num(&j, "bf16_matmul_gflops", bfmm);
    loco_json_num(&j, "mfu_vs_bf16", gb16 / bfmm);
    loco_json_num(&j, "bf16_vs_fp32", has_bf16 ? f32.step / b16.step : NAN);
    loco_json_int(&j, "threads", threads);
    puts(loco_json_end(&j));
    loco_json_free(&j);
    return 0;
}
