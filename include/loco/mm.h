/* mm: the matrix products of the training step, in fp32 (OpenBLAS) or bf16 (oneDNN
 * matmul, bf16 inputs, fp32 accumulation and output), the choice between them from what
 * the CPU offers, and the bf16 conversions and the bf16 mirror of the weights. */
#ifndef LOCO_MM_H
#define LOCO_MM_H

#include <stddef.h>
#include <stdint.h>

#include "loco/base.h"

typedef enum { LOCO_PREC_FP32, LOCO_PREC_BF16, LOCO_PREC_AUTO } loco_precision;
extern const loco_enum loco_precision_names[];   /* "fp32", "bf16", "auto" */

/* fp32 or bf16 for p; auto picks bf16 where the CPU has AVX512-BF16 or AMX. For bf16 on
 * a CPU with neither: -1 and a message naming the missing features and saying that fp32
 * works. why (may be NULL) gets one line saying what auto picked and why. */
int loco_precision_resolve(loco_precision p, loco_precision *out, char *why, size_t n,
                           loco_err *e);

typedef struct loco_mm loco_mm;   /* one per worker thread; opaque */
/* p must be resolved (fp32 or bf16). fp32 makes no context: *mm is NULL, which every
 * function here takes as fp32. */
int loco_mm_init(loco_mm **mm, loco_precision p, loco_err *e);
void loco_mm_free(loco_mm *mm);
loco_precision loco_mm_precision(const loco_mm *mm);   /* NULL -> fp32 */
long loco_mm_primitives(const loco_mm *mm);            /* oneDNN primitives created so far */

/* C (M,N) = alpha op(A) op(B) + beta C, row-major, op = transpose when ta/tb, leading
 * dims as cblas_sgemm row-major. beta is 0 or 1. mm NULL or fp32: cblas_sgemm. bf16: A
 * and B are rounded to bf16 (round to nearest even) into the context's scratch, dense
 * (or taken from the mirror, below), then one oneDNN matmul with fp32 accumulation writes C with
 * stride ldc. */
void loco_gemm(loco_mm *mm, int ta, int tb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* loco_gemm where the caller may hold an operand's bf16 form already (A16, B16: dense,
 * as loco_mm_keep makes them; NULL: convert as loco_gemm does). fp32 ignores them. */
void loco_gemm_ex(loco_mm *mm, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                  const uint16_t *A16, int lda, const float *B, const uint16_t *B16, int ldb,
                  float beta, float *C, int ldc);
/* An operand that feeds more than one product is converted once: loco_mm_keep converts X
 * (rows x cols, leading dimension ld) into the context's buffer number slot, dense (grown the
 * first time, kept until the slot is kept again) and returns it; loco_mm_kept returns it
 * later (an activation of the forward pass, for its weight gradient). NULL in fp32. */
const uint16_t *loco_mm_keep(loco_mm *mm, int slot, const float *X, int rows, int cols,
                             int ld);
const uint16_t *loco_mm_kept(const loco_mm *mm, int slot);
/* A batch of nb x nh products of one shape, as loco_gemm: product (i, j) reads A at
 * A + i*as0 + j*as1 (leading dimension lda), B likewise, and writes C at C + i*cs0 +
 * j*cs1. bf16: one oneDNN call for the whole batch (attention's per-head products are
 * small, and one call each would cost more than the product). */
void loco_gemm_batch(loco_mm *mm, int nb, int nh, int ta, int tb, int M, int N, int K,
                     float alpha, const float *A, long as0, long as1, int lda, const float *B,
                     long bs0, long bs1, int ldb, float beta, float *C, long cs0, long cs1,
                     int ldc);
/* the same batch on operands already in bf16, each operand's products dense one after
 * another (used by loco_gemm_batch and the benchmark's ceiling) */
void loco_gemm_bf16_batch(loco_mm *mm, int nb, int nh, int ta, int tb, int M, int N, int K,
                          float alpha, const uint16_t *A, const uint16_t *B, float beta, float *C,
                          long cs0, long cs1, int ldc);
/* the same product on operands already in bf16 (used by loco_gemm and by the benchmark's
 * ceiling) */
void loco_gemm_bf16(loco_mm *mm, int ta, int tb, int M, int N, int K, float alpha,
                    const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C,
                    int ldc);
/* the bf16 mirror of the weights: a bf16 copy of base[0..n) (refreshed by calling it again
 * after each optimizer step); loco_gemm takes an operand that lies inside [base, base+n)
 * from the mirror instead of converting it. n = 0 drops the mirror. No-op in fp32. */
void loco_mm_mirror(loco_mm *mm, const float *base, size_t n);
/* fp32 -> bf16, round to nearest even (NaN stays NaN) */
void loco_to_bf16(uint16_t *out, const float *in, size_t n);
float loco_bf16_to_float(uint16_t h);

#endif
