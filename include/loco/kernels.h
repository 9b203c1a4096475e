/* kernels: the transformer's layers as forward/backward pairs over flat float arrays:
 * encoder, layernorm, matmul, causal attention, GELU, bias add and the fused softmax +
 * cross-entropy. Pure functions: no allocation, no state; scratch is passed in. Their
 * products go through mm (fp32 OpenBLAS, or bf16 oneDNN when mm is a bf16 context; NULL
 * is fp32). Backward kernels ADD into parameter gradients. Input gradients are written
 * (not added), except layernorm's, which adds into dinp: there dinp is the residual
 * stream's running gradient. Shapes in the comments: B batch, T time,
 * C channels, OC output channels, NH heads, V vocabulary, Vp padded vocabulary. */
#ifndef LOCO_KERNELS_H
#define LOCO_KERNELS_H

#include <stdint.h>

#include "loco/mm.h"

/* out (B,T,C) = wte[inp] + wpe[t]; inp (B,T), wte (V,C), wpe (maxT,C) */
void loco_encoder_forward(float *out, const int *inp, const float *wte, const float *wpe,
                          int B, int T, int C);
/* dwte, dwpe += from dout (B,T,C) */
void loco_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp,
                           int B, int T, int C);

/* out (N,C) = layernorm(inp (N,C)) * weight (C) + bias (C); mean, rstd (N) kept for backward */
void loco_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C);
/* res (N,C) = a + b + rbias (C), then out = layernorm(res) as above: the residual add
 * and the next layer norm in one pass over the stream */
void loco_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                     const float *a, const float *b, const float *rbias,
                                     const float *weight, const float *bias, int N, int C);
/* dinp (N,C) += ...; dweight, dbias (C) += ...; dinp_sum (C) += column sums of dinp as
 * updated (the gradient of a bias added to the residual stream; skipped when NULL) */
void loco_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C, float *dinp_sum);

/* The mm buffers the kernels keep bf16 operands in (nothing in fp32): a backward's dout,
 * then from LOCO_SLOT_ACTS on one per activation that the caller numbers (a product's input, converted in forward and used again for its weight
 * gradient; -1: not kept). */
enum { LOCO_SLOT_DOUT, LOCO_SLOT_ACTS };

/* out (N,OC) = inp (N,C) . weight(OC,C)^T + bias (OC); bias may be NULL; slot: where mm
 * keeps inp's bf16 form for the backward (-1: none) */
void loco_matmul_forward(loco_mm *mm, int slot, float *out, const float *inp,
                         const float *weight, const float *bias, int N, int C, int OC);
/* dinp (N,C) = dout . weight (written; skipped when dinp is NULL);
 * dweight (OC,C) += dout^T . inp; dbias (OC) += column sums of dout (skipped when NULL);
 * slot: the one the forward kept inp in (-1: none) */
void loco_matmul_backward(loco_mm *mm, int slot, float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight, int N, int C,
                          int OC);

/* Causal attention works on row blocks of LOCO_ATT_ROWS queries: block [r0, r1) only
 * needs keys [0, r1), so about half of the masked triangle is never computed; each of a
 * block's products is made for every (batch, head) in one loco_gemm_batch. */
enum { LOCO_ATT_ROWS = 64 };

/* The floats of loco_attention_backward's scratch: one row block of score gradients for
 * every (batch, head). */
long loco_attention_scratch(int B, int T, int NH);

/* Causal multi-head attention. qkv (B,T,3C) holds q|k|v per token; out (B,T,C);
 * att (B,NH,T,T) keeps the softmax probabilities (lower triangle) for backward. */
void loco_attention_forward(loco_mm *mm, float *out, float *att, const float *qkv, int B, int T, int C,
                            int NH);
/* dqkv (B,T,3C) written from dout (B,T,C); scratch holds loco_attention_scratch floats */
void loco_attention_backward(loco_mm *mm, float *dqkv, float *scratch, const float *dout, const float *qkv,
                             const float *att, int B, int T, int C, int NH);

/* pre (N,C) += bias (C) in place (kept for backward), out = gelu(pre) (the tanh
 * approximation, computed as x sigmoid(2u)): one pass */
void loco_bias_gelu_forward(float *pre, float *out, const float *bias, int N, int C);
/* dinp = gelu'(pre) * dout (written; may alias dout), dbias (C) += column sums of dinp */
void loco_gelu_bias_backward(float *dinp, float *dbias, const float *pre, const float *dout,
                             int N, int C);

/* x (N,C) += bias (C) on every row */
void loco_add_bias(float *x, const float *bias, int N, int C);

/* Softmax over the first V of Vp columns of logits (N,Vp), written in place as
 * probabilities (padded columns 0); losses (N) = -log p[target]. Returns the mean loss. */
float loco_softmax_xent_forward(float *logits, float *losses, const int *targets, int N, int V,
                                int Vp);
/* probs (N,Vp) become dlogits = (probs - onehot(target)) * dloss, in place */
void loco_softmax_xent_backward(float *probs, const int *targets, float dloss, int N, int Vp);

/* exp(x) to about 2 ulp for x in [-87, 88] (0 below, clamped above), branch-free so
 * that loops calling it vectorise: libm's expf is a call the compiler will not inline. */
static inline float loco_expf(float x) {
    float nan = x != x ? x : 0.0f; /* NaN in, NaN out, with no conversion of a NaN to int */
    x = x != x ? 0.0f : x;
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f;     /* ln2 split in two for an exact reduction */
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; uint32_t i; } scale = { .i = (uint32_t)((int)n + 127) << 23 };
    return p * scale.f + nan;
}

#endif
