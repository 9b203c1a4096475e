/* mm: the fp32 and bf16 products against scalar triple loops for every transpose and
 * stride combination, the bf16 rounding, the weight mirror, the primitive cache and the
 * choice of precision. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "loco/base.h"
#include "loco/cpu.h"
#include "loco/mm.h"

#include "bf16.h"

static float *rand_floats(loco_rng *r, size_t n) {
    float *x = loco_alloc(n * sizeof(float));
    cr_assert(x != NULL, "test array");
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * loco_rng_uniform(r) - 1.0f;
    return x;
}

static float bf16_round(float x) {
    uint16_t h;
    loco_to_bf16(&h, &x, 1);
    return loco_bf16_to_float(h);
}

/* op(X)[i][j] of a row-major operand with leading dimension ld */
static double at(const float *X, int t, int ld, int i, int j, int round) {
    float v = t ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j];
    return round ? bf16_round(v) : v;
}

/* C = alpha op(A) op(B) + beta C in double, inputs optionally rounded to bf16 first */
static void ref_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, double *C, int ldc, int round) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += at(A, ta, lda, i, k, round) * at(B, tb, ldb, k, j, round);
            C[(size_t)i * ldc + j] = alpha * s + beta * C[(size_t)i * ldc + j];
        }
}

/* Runs one product through loco_gemm and checks it against the reference within
 * rel * (sum |a||b| |alpha| + |beta c|) per element; the cells outside the M x N block
 * of C (padding up to ldc) must be untouched. */
static void check_case(loco_mm *mm, int ta, int tb, float alpha, float beta, int round, double rel,
                       int mirror) {
    const int M = 37, N = 29, K = 53, pad = 7;
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    loco_rng r;
    loco_rng_seed(&r, 7, (uint64_t)(ta * 2 + tb));
    float *A = rand_floats(&r, na), *B = rand_floats(&r, nb), *C = rand_floats(&r, nc);
    double *R = malloc(nc * sizeof(double)), *S = malloc(nc * sizeof(double));
    cr_assert(R && S, "test arrays");
    for (size_t i = 0; i < nc; i++) R[i] = C[i];
    for (size_t i = 0; i < nc; i++) S[i] = 0.0;
    float *C0 = malloc(nc * sizeof(float));
    cr_assert(C0 != NULL, "test array");
    memcpy(C0, C, nc * sizeof(float));
    /* converted operands are packed densely; the mirror passes A as a strided view */
    if (mirror) loco_mm_mirror(mm, A, na);
    loco_gemm(mm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (mirror) loco_mm_mirror(mm, NULL, 0);
    ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc, round);
    /* the scale of each element: the same sums on absolute values */
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += fabs(at(A, ta, lda, i, k, 0) * at(B, tb, ldb, k, j, 0));
            S[(size_t)i * ldc + j] = fabs(alpha) * s + fabs(beta * C0[(size_t)i * ldc + j]);
        }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            size_t x = (size_t)i * ldc + j;
            if (j >= N) {
                cr_assert_eq(C[x], C0[x], "ta %d tb %d: C[%d][%d] beyond N was written", ta, tb, i, j);
                continue;
            }
            cr_assert_leq(fabs(C[x] - R[x]), rel * S[x] + 1e-30,
                          "ta %d tb %d alpha %g beta %g: C[%d][%d] = %.9g, reference %.9g", ta, tb,
                          (double)alpha, (double)beta, i, j, (double)C[x], R[x]);
        }
    free(A), free(B), free(C), free(C0), free(R), free(S);
}

static void check_all(loco_mm *mm, int round, double rel) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int b = 0; b < 2; b++)
                for (int m = 0; m < 2; m++) check_case(mm, ta, tb, 0.75f, (float)b, round, rel, m);
}

/* fp32 with fp32 accumulation over K = 53 terms: well within 1e-5 of the sum of
 * magnitudes. mm NULL is the same path. */
Test(mm, fp32_matches_the_scalar_reference_for_every_transpose_and_stride) {
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_FP32, &e), 0, "init: %s", e.msg);
    cr_assert_eq(loco_mm_precision(mm), LOCO_PREC_FP32);
    check_all(mm, 0, 1e-5);
    check_all(NULL, 0, 1e-5);
    cr_assert_eq(loco_mm_primitives(mm), 0, "fp32 creates no oneDNN primitive");
    loco_mm_free(mm);
}

/* bf16 against the reference on the same bf16-rounded inputs: the products of two bf16
 * values are exact in fp32 (8+8 significant bits), so only the fp32 accumulation differs,
 * ~1e-5 of the magnitudes. Against the fp32 product: each input carries a relative
 * rounding error up to 2^-9 (8-bit significand, round to nearest), so each term up to
 * about 2^-8; 4e-3 of the sum of magnitudes bounds it. */
Test(mm, bf16_matches_the_reference_on_rounded_inputs_and_fp32_within_bf16_rounding) {
    SKIP_WITHOUT_BF16();
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    cr_assert_eq(loco_mm_precision(mm), LOCO_PREC_BF16);
    check_all(mm, 1, 1e-5);
    check_all(mm, 0, 4e-3);
    loco_mm_free(mm);
}

static uint16_t to_bf16(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    uint16_t h;
    loco_to_bf16(&h, &f, 1);
    return h;
}

Test(mm, to_bf16_rounds_to_nearest_even) {
    cr_assert_eq(to_bf16(0x3f800000), 0x3f80, "1.0 is exact");
    cr_assert_eq(to_bf16(0x3f807fff), 0x3f80, "below the tie rounds down");
    cr_assert_eq(to_bf16(0x3f808001), 0x3f81, "above the tie rounds up");
    cr_assert_eq(to_bf16(0x3f808000), 0x3f80, "tie with even kept half stays");
    cr_assert_eq(to_bf16(0x3f818000), 0x3f82, "tie with odd kept half rounds up to even");
    cr_assert_eq(to_bf16(0xbf818000), 0xbf82, "negative ties alike");
    cr_assert_eq(to_bf16(0x7f800000), 0x7f80, "+Inf");
    cr_assert_eq(to_bf16(0xff800000), 0xff80, "-Inf");
    cr_assert_eq(to_bf16(0x7f7fffff), 0x7f80, "the largest float rounds to Inf");
    cr_assert_eq(to_bf16(0x00000001), 0x0000, "the smallest denormal rounds to 0");
    cr_assert_eq(to_bf16(0x00018000), 0x0002, "a denormal tie rounds to even");
    cr_assert_eq(to_bf16(0x00010000), 0x0001, "an exact bf16 denormal");
    cr_assert_eq(to_bf16(0x007fffff), 0x0080, "the largest denormal rounds up to the smallest normal");
    cr_assert_eq(to_bf16(0x80000000), 0x8000, "-0");
    uint16_t n1 = to_bf16(0x7fc00000), n2 = to_bf16(0x7f800001), n3 = to_bf16(0xffffffff);
    cr_assert(isnan(loco_bf16_to_float(n1)), "quiet NaN stays NaN");
    cr_assert(isnan(loco_bf16_to_float(n2)), "NaN with payload only in the low half stays NaN");
    cr_assert(isnan(loco_bf16_to_float(n3)), "all-ones NaN stays NaN (no carry out)");
    cr_assert_eq(n3 & 0x8000, 0x8000, "NaN keeps its sign");
    cr_assert_eq(loco_bf16_to_float(0x3fc0), 1.5f);
    /* the array form agrees with the scalar form on random bit patterns */
    loco_rng r;
    loco_rng_seed(&r, 3, 0);
    enum { n = 1000 };
    float in[n];
    uint16_t out[n];
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)loco_rng_u64(&r);
        memcpy(&in[i], &u, sizeof u);
    }
    loco_to_bf16(out, in, n);
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &in[i], sizeof u);
        /* the array form may use the CPU's instruction (vcvtneps2bf16), which treats a
         * denormal input as zero and may keep another NaN payload: far below anything a
         * product sees, and a NaN stays a NaN */
        if (isnan(in[i]))
            cr_assert(isnan(loco_bf16_to_float(out[i])), "element %d: NaN stays NaN", i);
        else if ((u & 0x7f800000u) == 0)
            cr_assert(out[i] == to_bf16(u) || out[i] == (uint16_t)((u >> 16) & 0x8000u),
                      "element %d: denormal rounded or flushed to zero", i);
        else
            cr_assert_eq(out[i], to_bf16(u), "element %d", i);
    }
}

/* The weights B (K x N) lie inside the mirrored block: the product from the mirror equals
 * the product with B converted (B is then an unrelated copy, outside the mirror). After
 * the weights change, the stale mirror still gives the old product, and re-mirroring
 * gives the new one: proof that the mirror is what is read. */
Test(mm, the_mirror_supplies_the_weights) {
    SKIP_WITHOUT_BF16();
    const int M = 16, N = 24, K = 32, off = 100;
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    loco_rng r;
    loco_rng_seed(&r, 11, 0);
    size_t nw = off + (size_t)K * N + 50;
    float *W = rand_floats(&r, nw), *A = rand_floats(&r, (size_t)M * K);
    float *B = loco_alloc((size_t)K * N * sizeof(float));
    float *C1 = loco_alloc((size_t)M * N * sizeof(float)), *C2 = loco_alloc((size_t)M * N * sizeof(float));
    float *C3 = loco_alloc((size_t)M * N * sizeof(float));
    cr_assert(B && C1 && C2 && C3, "test arrays");
    memcpy(B, W + off, (size_t)K * N * sizeof(float));
    loco_mm_mirror(mm, W, nw);
    loco_gemm(mm, 0, 0, M, N, K, 1.0f, A, K, W + off, N, 0.0f, C1, N);
    loco_gemm(mm, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C2, N);
    cr_assert_eq(memcmp(C1, C2, (size_t)M * N * sizeof(float)), 0, "mirrored == converted");
    for (size_t i = 0; i < nw; i++) W[i] *= -2.0f;
    loco_gemm(mm, 0, 0, M, N, K, 1.0f, A, K, W + off, N, 0.0f, C3, N);
    cr_assert_eq(memcmp(C1, C3, (size_t)M * N * sizeof(float)), 0, "stale mirror still read");
    loco_mm_mirror(mm, W, nw);
    loco_gemm(mm, 0, 0, M, N, K, 1.0f, A, K, W + off, N, 0.0f, C3, N);
    for (int i = 0; i < M * N; i++)
        cr_assert_eq(C3[i], -2.0f * C1[i], "re-mirrored: element %d %g, expected %g", i,
                     (double)C3[i], -2.0 * C1[i]);
    loco_mm_mirror(mm, NULL, 0);
    for (size_t i = 0; i < nw; i++) W[i] = 0.0f;
    loco_gemm(mm, 0, 0, M, N, K, 1.0f, A, K, W + off, N, 0.0f, C3, N);
    for (int i = 0; i < M * N; i++) cr_assert_eq(C3[i], 0.0f, "mirror dropped: converted again");
    free(W), free(A), free(B), free(C1), free(C2), free(C3);
    loco_mm_free(mm);
}

/* A "step" of a few shapes: the first creates one primitive per distinct key, the
 * second creates none. */
Test(mm, repeated_shapes_reuse_their_primitives) {
    SKIP_WITHOUT_BF16();
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    loco_rng r;
    loco_rng_seed(&r, 5, 0);
    float *A = rand_floats(&r, 64 * 64), *B = rand_floats(&r, 64 * 64), *C = rand_floats(&r, 64 * 64);
    long after_first = 0;
    for (int step = 0; step < 3; step++) {
        loco_gemm(mm, 0, 1, 64, 32, 16, 1.0f, A, 64, B, 64, 0.0f, C, 64);
        loco_gemm(mm, 0, 0, 64, 32, 16, 1.0f, A, 64, B, 64, 0.0f, C, 64);
        loco_gemm(mm, 1, 0, 16, 32, 64, 1.0f, A, 64, B, 64, 1.0f, C, 64);
        loco_gemm(mm, 0, 1, 64, 32, 16, 1.0f, A, 64, B, 64, 0.0f, C, 64);
        if (step == 0) after_first = loco_mm_primitives(mm);
    }
    cr_assert_eq(after_first, 3, "three distinct keys, %ld primitives", after_first);
    cr_assert_eq(loco_mm_primitives(mm), after_first, "no new primitive after the first step");
    free(A), free(B), free(C);
    loco_mm_free(mm);
}

/* Two workers, each with its own context on its own thread, sharing the engine: each
 * gets the single-threaded result bit for bit, and oneDNN runs on one thread in each
 * (the OpenMP ICV of the calling thread is set to 1). */
typedef struct {
    const float *A, *B;
    float *C;
    int max_threads;
} mm_job;

enum { TM = 96, TN = 80, TK = 64 };

static void *mm_worker(void *arg) {
    mm_job *j = arg;
    loco_mm *mm;
    loco_err e;
    if (loco_mm_init(&mm, LOCO_PREC_BF16, &e) != 0) return NULL;
    for (int r = 0; r < 20; r++) {
        loco_gemm(mm, 0, 1, TM, TN, TK, 0.5f, j->A, TK, j->B, TK, 0.0f, j->C, TN);
        loco_gemm(mm, 0, 0, TM, TN, TK, 1.0f, j->A, TK, j->B, TN, 1.0f, j->C, TN);
    }
    j->max_threads = omp_get_max_threads();
    loco_mm_free(mm);
    return NULL;
}

Test(mm, worker_threads_each_run_their_own_context) {
    SKIP_WITHOUT_BF16();
    loco_rng r;
    loco_rng_seed(&r, 9, 0);
    float *A = rand_floats(&r, TM * TK), *B = rand_floats(&r, TK * TN);
    mm_job ref = {A, B, loco_alloc(TM * TN * sizeof(float)), 0};
    mm_job jobs[2] = {{A, B, loco_alloc(TM * TN * sizeof(float)), 0},
                      {A, B, loco_alloc(TM * TN * sizeof(float)), 0}};
    cr_assert(ref.C && jobs[0].C && jobs[1].C, "test arrays");
    mm_worker(&ref);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&t[i], NULL, mm_worker, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(jobs[i].max_threads, 1, "worker %d: oneDNN may use %d threads", i,
                     jobs[i].max_threads);
        cr_assert_eq(memcmp(jobs[i].C, ref.C, TM * TN * sizeof(float)), 0, "worker %d's product", i);
    }
    free(A), free(B), free(ref.C), free(jobs[0].C), free(jobs[1].C);
}

/* Empty shapes do what cblas_sgemm does: M or N 0 leaves C alone, K 0 gives beta C. */
Test(mm, empty_products_behave_as_cblas) {
    SKIP_WITHOUT_BF16();
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4}, C[4] = {5, 5, 5, 5};
    loco_gemm(mm, 0, 0, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    loco_gemm(mm, 0, 0, 2, 0, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    loco_gemm(mm, 0, 0, 2, 2, 0, 1.0f, A, 2, B, 2, 1.0f, C, 2);
    for (int i = 0; i < 4; i++) cr_assert_eq(C[i], 5.0f, "C[%d] untouched", i);
    loco_gemm(mm, 0, 0, 2, 2, 0, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    for (int i = 0; i < 4; i++) cr_assert_eq(C[i], 0.0f, "C[%d] = 0 C", i);
    cr_assert_eq(loco_mm_primitives(mm), 0, "no primitive for an empty product");
    loco_mm_free(mm);
}

Test(mm, precision_resolves) {
    loco_precision p;
    loco_err e;
    char why[256];
    cr_assert_eq(loco_precision_resolve(LOCO_PREC_AUTO, &p, why, sizeof why, &e), 0, "auto: %s", e.msg);
    cr_assert(p == LOCO_PREC_FP32 || p == LOCO_PREC_BF16, "auto picks fp32 or bf16");
    cr_assert(strstr(why, loco_enum_name(loco_precision_names, p)) != NULL, "why names it: %s", why);
    cr_assert_eq(loco_precision_resolve(LOCO_PREC_FP32, &p, NULL, 0, &e), 0, "fp32: %s", e.msg);
    cr_assert_eq(p, LOCO_PREC_FP32);
    loco_cpu c;
    loco_cpu_detect(&c);
    char feat[64];
    loco_cpu_features(&c, feat, sizeof feat);
    cr_assert(c.isa[0] != '\0', "oneDNN names its ISA");
    if (loco_precision_resolve(LOCO_PREC_BF16, &p, why, sizeof why, &e) == 0) {
        cr_assert_eq(p, LOCO_PREC_BF16);
        cr_assert(c.avx512_bf16 || c.amx_bf16, "bf16 accepted only with the features");
        cr_assert_neq(strcmp(feat, "none"), 0);
    } else {
        cr_assert(strstr(e.msg, "fp32") != NULL, "the refusal says fp32 works: %s", e.msg);
        cr_assert_str_eq(feat, "none");
    }
    int v;
    cr_assert_eq(loco_enum_value(loco_precision_names, "bf16", &v), 0);
    cr_assert_eq(v, LOCO_PREC_BF16);
    cr_assert_neq(loco_mm_init(&(loco_mm *){NULL}, LOCO_PREC_AUTO, &e), 0, "auto is not resolved");
}

/* ------------------------------------------------------ batches of products */

/* Where a batch's C products lie: 0 strided (padded rows, gaps between products), 1 dense
 * (ldc = N, products one after another, as the probabilities of a row block), 2 one
 * product's columns of a wider row (ldc = nh N: attention writing one head of y). */
enum { C_STRIDED, C_DENSE, C_COLUMNS };
enum { BNB = 2, BNH = 3, BM = 13, BN = 11, BK = 17 };

typedef struct {
    int ta, tb, lda, ldb, ldc;
    long as0, as1, bs0, bs1, cs0, cs1;
    size_t na, nb, nc;
    float *A, *B, *C0;
    char *in;   /* 1 for the cells of C inside a product */
} batch;

static void batch_make(batch *b, int ta, int tb, int layout) {
    memset(b, 0, sizeof *b);
    b->ta = ta, b->tb = tb;
    int ar = ta ? BK : BM, ac = ta ? BM : BK, br = tb ? BN : BK, bc = tb ? BK : BN;
    b->lda = ac + 3, b->as1 = (long)ar * b->lda + 5, b->as0 = BNH * b->as1 + 7;
    b->ldb = bc + 2, b->bs1 = (long)br * b->ldb + 4, b->bs0 = BNH * b->bs1 + 6;
    if (layout == C_STRIDED)
        b->ldc = BN + 3, b->cs1 = (long)BM * b->ldc + 2, b->cs0 = BNH * b->cs1 + 1;
    else if (layout == C_DENSE)
        b->ldc = BN, b->cs1 = (long)BM * BN, b->cs0 = (long)BNH * BM * BN;
    else
        b->ldc = BNH * BN, b->cs1 = BN, b->cs0 = (long)BM * b->ldc;
    b->na = (size_t)BNB * b->as0, b->nb = (size_t)BNB * b->bs0, b->nc = (size_t)BNB * b->cs0;
    loco_rng r;
    loco_rng_seed(&r, 13, (uint64_t)(ta * 6 + tb * 3 + layout));
    b->A = rand_floats(&r, b->na), b->B = rand_floats(&r, b->nb), b->C0 = rand_floats(&r, b->nc);
    b->in = calloc(b->nc, 1);
    cr_assert(b->in != NULL, "test array");
    for (int i = 0; i < BNB; i++)
        for (int j = 0; j < BNH; j++)
            for (int m = 0; m < BM; m++)
                for (int n = 0; n < BN; n++) {
                    size_t x = (size_t)(i * b->cs0 + j * b->cs1) + (size_t)m * b->ldc + n;
                    cr_assert(!b->in[x], "products overlap at %zu", x);
                    b->in[x] = 1;
                }
}

static void batch_free(batch *b) { free(b->A), free(b->B), free(b->C0), free(b->in); }

/* the batch run through loco_gemm_batch into a fresh copy of C0 */
static float *batch_run(loco_mm *mm, const batch *b, float alpha, float beta) {
    float *C = malloc(b->nc * sizeof(float));
    cr_assert(C != NULL, "test array");
    memcpy(C, b->C0, b->nc * sizeof(float));
    loco_gemm_batch(mm, BNB, BNH, b->ta, b->tb, BM, BN, BK, alpha, b->A, b->as0, b->as1, b->lda,
                    b->B, b->bs0, b->bs1, b->ldb, beta, C, b->cs0, b->cs1, b->ldc);
    return C;
}

/* the reference: each product on its own through cblas_sgemm */
static float *batch_cblas(const batch *b, float alpha, float beta) {
    float *C = malloc(b->nc * sizeof(float));
    cr_assert(C != NULL, "test array");
    memcpy(C, b->C0, b->nc * sizeof(float));
    for (int i = 0; i < BNB; i++)
        for (int j = 0; j < BNH; j++)
            cblas_sgemm(CblasRowMajor, b->ta ? CblasTrans : CblasNoTrans,
                        b->tb ? CblasTrans : CblasNoTrans, BM, BN, BK, alpha,
                        b->A + i * b->as0 + j * b->as1, b->lda, b->B + i * b->bs0 + j * b->bs1,
                        b->ldb, beta, C + i * b->cs0 + j * b->cs1, b->ldc);
    return C;
}

/* fp32 (a context, and NULL): the batch equals the products one by one bit for bit, and
 * nothing between the products is written. */
Test(mm, fp32_batch_equals_its_products_through_cblas) {
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_FP32, &e), 0, "init: %s", e.msg);
    for (int layout = 0; layout < 3; layout++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    batch b;
                    batch_make(&b, ta, tb, layout);
                    float *R = batch_cblas(&b, -0.625f, (float)beta);
                    loco_mm *ctx[2] = {mm, NULL};
                    for (int k = 0; k < 2; k++) {
                        float *C = batch_run(ctx[k], &b, -0.625f, (float)beta);
                        for (size_t x = 0; x < b.nc; x++)
                            cr_assert_eq(C[x], R[x],
                                         "layout %d ta %d tb %d beta %d ctx %d: C[%zu] = %.9g, "
                                         "cblas %.9g", layout, ta, tb, beta, k, x, (double)C[x],
                                         (double)R[x]);
                        free(C);
                    }
                    /* and the reference itself is right: beta 1 kept C0 where no product is */
                    for (size_t x = 0; x < b.nc; x++)
                        if (!b.in[x]) cr_assert_eq(R[x], b.C0[x]);
                    free(R);
                    batch_free(&b);
                }
    cr_assert_eq(loco_mm_primitives(mm), 0, "fp32 creates no oneDNN primitive");
    loco_mm_free(mm);
}

/* bf16: within bf16 rounding of the fp32 batch (4e-3 of the sum of magnitudes, as for
 * one product above: each input rounded by up to 2^-9 relative) and within fp32
 * accumulation (1e-5) of the double reference on bf16-rounded inputs; the cells between
 * products untouched; with beta 1 the products add into C (C0 is O(1), so an output
 * that overwrote C would miss by ~1). Some element must differ from fp32: the bf16 path
 * ran. Dense outputs go straight to oneDNN, strided and column ones through the dense
 * scratch and the copy/add into place. */
Test(mm, bf16_batch_matches_fp32_within_bf16_rounding_for_every_layout) {
    SKIP_WITHOUT_BF16();
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    const float alpha = 0.375f;
    for (int layout = 0; layout < 3; layout++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    batch b;
                    batch_make(&b, ta, tb, layout);
                    float *R = batch_cblas(&b, alpha, (float)beta);
                    float *C = batch_run(mm, &b, alpha, (float)beta);
                    int differs = 0;
                    for (int i = 0; i < BNB; i++)
                        for (int j = 0; j < BNH; j++) {
                            const float *A = b.A + i * b.as0 + j * b.as1;
                            const float *B = b.B + i * b.bs0 + j * b.bs1;
                            size_t c = (size_t)(i * b.cs0 + j * b.cs1);
                            for (int m = 0; m < BM; m++)
                                for (int n = 0; n < BN; n++) {
                                    size_t x = c + (size_t)m * b.ldc + n;
                                    double s = 0, mag = 0;
                                    for (int k = 0; k < BK; k++) {
                                        s += at(A, ta, b.lda, m, k, 1) * at(B, tb, b.ldb, k, n, 1);
                                        mag += fabs(at(A, ta, b.lda, m, k, 0) *
                                                    at(B, tb, b.ldb, k, n, 0));
                                    }
                                    double c0 = beta ? b.C0[x] : 0.0;
                                    double ref16 = alpha * s + c0;
                                    double scale = fabs(alpha) * mag + fabs(c0);
                                    cr_assert_leq(fabs(C[x] - R[x]), 4e-3 * scale,
                                                  "layout %d ta %d tb %d beta %d: product (%d,%d) "
                                                  "C[%d][%d] = %.9g, fp32 %.9g", layout, ta, tb,
                                                  beta, i, j, m, n, (double)C[x], (double)R[x]);
                                    cr_assert_leq(fabs(C[x] - ref16), 1e-5 * scale,
                                                  "layout %d ta %d tb %d beta %d: product (%d,%d) "
                                                  "C[%d][%d] = %.9g, on rounded inputs %.9g",
                                                  layout, ta, tb, beta, i, j, m, n, (double)C[x],
                                                  ref16);
                                    differs |= C[x] != R[x];
                                }
                        }
                    for (size_t x = 0; x < b.nc; x++)
                        if (!b.in[x])
                            cr_assert_eq(C[x], b.C0[x], "layout %d: C[%zu] between products written",
                                         layout, x);
                    cr_assert(differs, "layout %d ta %d tb %d beta %d: bit-identical to fp32",
                              layout, ta, tb, beta);
                    free(C), free(R);
                    batch_free(&b);
                }
    cr_assert_gt(loco_mm_primitives(mm), 0, "the bf16 batches ran on oneDNN");
    loco_mm_free(mm);
}

/* A kept operand is the rows' loco_to_bf16, dense; keeping another slot leaves it alone,
 * and keeping the slot again replaces it. fp32 (and no context) keeps nothing. */
Test(mm, kept_operands_are_the_rows_in_bf16) {
    enum { R = 9, Cc = 21, LD = 32 };
    loco_rng r;
    loco_rng_seed(&r, 17, 0);
    float *X = rand_floats(&r, R * LD), *Y = rand_floats(&r, R * LD);
    uint16_t want[R * Cc], want2[R * Cc];
    for (int i = 0; i < R; i++) loco_to_bf16(want + i * Cc, X + i * LD, Cc);
    for (int i = 0; i < R; i++) loco_to_bf16(want2 + i * Cc, Y + i * LD, Cc);
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_FP32, &e), 0, "init: %s", e.msg);
    cr_assert_null(loco_mm_keep(mm, 0, X, R, Cc, LD), "fp32 keeps nothing");
    cr_assert_null(loco_mm_kept(mm, 0), "fp32 has nothing kept");
    cr_assert_null(loco_mm_keep(NULL, 0, X, R, Cc, LD), "no context keeps nothing");
    cr_assert_null(loco_mm_kept(NULL, 0), "no context has nothing kept");
    loco_mm_free(mm);
    if (!loco_test_has_bf16()) cr_skip_test("fp32 checked; no bf16 products on this CPU");
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    const uint16_t *k = loco_mm_keep(mm, 3, X, R, Cc, LD);
    cr_assert_not_null(k, "bf16 keeps");
    cr_assert_eq(memcmp(k, want, sizeof want), 0, "kept == loco_to_bf16 of the rows");
    cr_assert_eq(loco_mm_kept(mm, 3), k, "kept returns what keep made");
    const uint16_t *k0 = loco_mm_keep(mm, 0, Y, R, Cc, LD);
    cr_assert_eq(memcmp(k0, want2, sizeof want2), 0, "slot 0");
    cr_assert_eq(memcmp(loco_mm_kept(mm, 3), want, sizeof want), 0, "slot 3 unchanged by slot 0");
    k = loco_mm_keep(mm, 3, Y, R, Cc, LD);
    cr_assert_eq(memcmp(loco_mm_kept(mm, 3), want2, sizeof want2), 0, "slot 3 kept again");
    /* the kept operand feeds a product as its converted form would */
    float W[Cc * 5], C1[R * 5], C2[R * 5];
    for (int i = 0; i < Cc * 5; i++) W[i] = (float)loco_rng_uniform(&r) - 0.5f;
    loco_gemm_ex(mm, 0, 0, R, 5, Cc, 1.0f, Y, loco_mm_kept(mm, 3), LD, W, NULL, 5, 0.0f, C1, 5);
    loco_gemm(mm, 0, 0, R, 5, Cc, 1.0f, Y, LD, W, 5, 0.0f, C2, 5);
    cr_assert_eq(memcmp(C1, C2, sizeof C1), 0, "kept operand == converted operand");
    loco_mm_free(mm);
    free(X), free(Y);
}

/* A batch of one product (one batch row, one head) is a plain 2-d product: it must give
 * what loco_gemm gives (a batch of one once ran on a descriptor with zero strides). */
Test(mm, a_bf16_batch_of_one_is_the_plain_product) {
    SKIP_WITHOUT_BF16();
    loco_mm *mm;
    loco_err e;
    cr_assert_eq(loco_mm_init(&mm, LOCO_PREC_BF16, &e), 0, "init: %s", e.msg);
    loco_rng r;
    loco_rng_seed(&r, 21, 0);
    enum { M = 9, N = 7, K = 12 };
    float *A = rand_floats(&r, M * K), *B = rand_floats(&r, K * N);
    float C1[M * N], C2[M * N];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = ta ? M : K, ldb = tb ? K : N;
            loco_gemm(mm, ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.0f, C1, N);
            loco_gemm_batch(mm, 1, 1, ta, tb, M, N, K, 0.5f, A, 0, 0, lda, B, 0, 0, ldb, 0.0f,
                            C2, 0, 0, N);
            for (int i = 0; i < M * N; i++)
                cr_assert_float_eq(C1[i], C2[i], 1e-5f * (1.0f + fabsf(C1[i])),
                                   "ta %d tb %d cell %d: %g against %g", ta, tb, i,
                                   (double)C2[i], (double)C1[i]);
        }
    free(A);
    free(B);
    loco_mm_free(mm);
}
