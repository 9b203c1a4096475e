/* bench step: the training step against the sgemm ceiling at the step's own shapes. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/bench.h"
#include "loco/train.h"
#include "loco/data.h"
#include "loco/kernels.h"
#include "loco/metrics.h"
#include "loco/model.h"
#include "loco/worker.h"

/* ------------------------------------------------------- the sgemm ceiling */

/* One cblas_sgemm shape of the step and how many times a step calls it. */
typedef struct {
    int M, N, K, ta, tb;
    long count;
} shape;

enum { MAX_SHAPES = 64 };

typedef struct {
    shape s[MAX_SHAPES];
    int n;
} shape_list;

static void add(shape_list *l, int M, int N, int K, int ta, int tb, long count) {
    for (int i = 0; i < l->n; i++) {
        shape *s = &l->s[i];
        if (s->M == M && s->N == N && s->K == K && s->ta == ta && s->tb == tb) {
            s->count += count;
            return;
        }
    }
    if (l->n < MAX_SHAPES) l->s[l->n++] = (shape){M, N, K, ta, tb, count};
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
    long heads = (long)L * B * m->s.NH;
    for (int r0 = 0; r0 < T; r0 += LOCO_ATT_ROWS) {
        int r1 = r0 + LOCO_ATT_ROWS < T ? r0 + LOCO_ATT_ROWS : T, rows = r1 - r0;
        add(l, rows, r1, hs, 0, 1, 2 * heads);  /* scores; dp */
        add(l, rows, hs, r1, 0, 0, 2 * heads);  /* p v; dq */
        add(l, r1, hs, rows, 1, 0, 2 * heads);  /* dv; dk */
    }
}

/* seconds per call of one shape, best of a few timed batches */
static double time_sgemm(const shape *s, float *a, float *b, float *c) {
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        int calls = 0;
        double t0 = loco_now(), t;
        do {
            cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                        s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, a, lda, b,
                        ldb, 0.0f, c, s->N);
            calls++;
            t = loco_now() - t0;
        } while (t < 0.02);
        best = t / calls < best ? t / calls : best;
    }
    return best;
}

/* GFLOP/s of sgemm over the step's shapes, each weighted by the work it does in a step */
static double sgemm_ceiling(const shape_list *l) {
    size_t most = 0;
    for (int i = 0; i < l->n; i++) {
        size_t ab = (size_t)l->s[i].M * l->s[i].K + (size_t)l->s[i].K * l->s[i].N;
        size_t cc = (size_t)l->s[i].M * l->s[i].N;
        most = ab > most ? ab : most;
        most = cc > most ? cc : most;
    }
    float *a = loco_alloc(most * 4), *b = loco_alloc(most * 4), *c = loco_alloc(most * 4);
    for (size_t i = 0; i < most; i++) a[i] = b[i] = 0.01f * (float)(i % 97);
    double flops = 0, secs = 0;
    for (int i = 0; i < l->n; i++) {
        const shape *s = &l->s[i];
        double f = 2.0 * s->M * s->N * s->K * (double)s->count;
        flops += f;
        secs += time_sgemm(s, a, b, c) * (double)s->count;
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
static double time_steps(loco_worker *w, int *nsteps) {
    enum { MAX = 64 };
    double t[MAX];
    int n = 0;
    double start = loco_now();
    for (int i = 0; i < 2; i++) loco_worker_step(w); /* warm caches and page faults */
    start = loco_now();
    while (n < MAX && (n < 5 || loco_now() - start < 3.0)) {
        double t0 = loco_now();
        loco_worker_step(w);
        t[n++] = loco_now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    *nsteps = n;
    return t[n / 2];
}

/* where a step's time goes: forward; forward + backward; clipping + AdamW */
static void phase_times(loco_worker *w, double *fwd, double *grad, double *update) {
    double t0 = loco_now();
    loco_model_forward(w->m, w->params, &w->acts, w->inputs, w->targets, w->B, w->T);
    double t1 = loco_now();
    loco_worker_grad(w, 0);
    double t2 = loco_now();
    loco_worker_update(w, 1.0f);
    double t3 = loco_now();
    *fwd = t1 - t0;
    *grad = t2 - t1;
    *update = t3 - t2;
}

int loco_bench_step(const loco_config *c, const char *config_name, loco_err *e) {
    loco_shape s = loco_shape_from_config(c);
    loco_model m;
    loco_data d;
    loco_worker w;
    if (loco_model_init(&m, &s, e) != 0) return -1;
    if (loco_data_open(&d, c->data.path, c->data.format, s.V, (size_t)c->data.block,
                       c->data.val_every, e) != 0)
        return -1;
    float *init = loco_alloc(m.nparams * sizeof(float));
    loco_model_init_params(&m, init, (uint64_t)c->run.seed);
    loco_worker_opts wo;
    loco_worker_opts_from_config(c, &wo);
    int rc = loco_worker_init(&w, 0, &m, &d, &wo, init, e);
    free(init);
    if (rc != 0) {
        loco_data_close(&d);
        return -1;
    }
    int B = w.B, T = w.T, n;
    fprintf(stderr, "bench step: %s, %zu parameters, B=%d T=%d, one thread\n", config_name,
            m.ntrue, B, T);
    double step = time_steps(&w, &n), fwd, grad, update;
    phase_times(&w, &fwd, &grad, &update);
    shape_list shapes;
    step_shapes(&shapes, &m, B, T);
    double sgemm = sgemm_ceiling(&shapes);
    double flops = loco_model_flops_per_token(&m, T) * B * T;
    double gflops = flops / step / 1e9;
    fprintf(stderr, "  step %.1f ms (median of %d): forward %.1f, backward %.1f, AdamW %.1f ms\n",
            step * 1e3, n, fwd * 1e3, (grad - fwd) * 1e3, update * 1e3);
    fprintf(stderr, "  %.1f GFLOP/s, sgemm at the step's shapes %.1f GFLOP/s: %.0f%%\n", gflops,
            sgemm, 100 * gflops / sgemm);
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "bench", "step");
    loco_json_str(&j, "config", config_name);
    loco_json_int(&j, "params", (long)m.ntrue);
    loco_json_int(&j, "batch", B);
    loco_json_int(&j, "seq_len", T);
    loco_json_num(&j, "step_ms", step * 1e3);
    loco_json_num(&j, "tokens_per_s", B * T / step);
    loco_json_num(&j, "step_gflops", gflops);
    loco_json_num(&j, "sgemm_gflops", sgemm);
    loco_json_num(&j, "mfu_vs_sgemm", gflops / sgemm);
    puts(loco_json_end(&j));
    loco_json_free(&j);
    loco_worker_free(&w);
    loco_data_close(&d);
    return 0;
}
