/* model: the GPT-2 decoder as llm.c has it. Owns the parameter layout (one contiguous
 * float array, a table of named tensors in llm.c's order, each 64-byte aligned), the
 * activations of one replica, initialisation, forward, backward and the loss. Gradients
 * and optimizer state use the same layout. Knows no files, threads or optimizers. */
#ifndef LOCO_MODEL_H
#define LOCO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "loco/base.h"
#include "loco/mm.h"

typedef struct {
    int V;     /* vocabulary */
    int Vp;    /* vocabulary padded (llm.c: to a multiple of 128); rows >= V stay 0 */
    int maxT;  /* positions in wpe */
    int L, NH, C;
} loco_shape;

/* llm.c's tensor order, which is also the order of its checkpoint files */
enum {
    LOCO_WTE, LOCO_WPE, LOCO_LN1W, LOCO_LN1B, LOCO_QKVW, LOCO_QKVB, LOCO_ATTPROJW,
    LOCO_ATTPROJB, LOCO_LN2W, LOCO_LN2B, LOCO_FCW, LOCO_FCB, LOCO_FCPROJW, LOCO_FCPROJB,
    LOCO_LNFW, LOCO_LNFB, LOCO_NTENSORS
};

typedef struct {
    const char *name;
    size_t offset;    /* in floats from the start of the array; a multiple of 16 */
    size_t count;     /* floats */
    int ndim;
    long dims[3];
    int decay;        /* matrices get weight decay, vectors (biases, norms) do not */
} loco_tensor;

typedef struct {
    loco_shape s;
    loco_tensor t[LOCO_NTENSORS];
    size_t nparams;   /* floats in the array, alignment padding included */
    size_t ntrue;     /* parameters proper: the sum of the tensors' counts */
} loco_model;

/* llm.c's padding of the vocabulary */
int loco_padded_vocab(int V);

/* Fills the layout for a shape. Errors for shapes the model cannot run (C % NH, ...). */
int loco_model_init(loco_model *m, const loco_shape *s, loco_err *e);

/* GPT-2 init from seed: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
 * LayerNorm weights 1, biases 0, padded vocabulary rows 0. Each tensor has its own
 * random stream, so the draw of one tensor does not depend on the others' sizes. */
void loco_model_init_params(const loco_model *m, float *params, uint64_t seed);

/* Activations and backward scratch of one replica for batches of up to B x T tokens;
 * made once, reused by every step. */
typedef struct {
    int B, T;          /* capacity */
    float *x;          /* (L+1, B,T,C): residual stream entering each block, then the last */
    float *ln1, *ln1_mean, *ln1_rstd;    /* (L, B,T,C), (L, B,T) */
    float *qkv;        /* (L, B,T,3C) */
    float *att;        /* (L, B,NH,T,T) softmax probabilities */
    float *atty;       /* (L, B,T,C) */
    float *r2;         /* (L, B,T,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;               /* (L, B,T,4C) */
    float *lnf, *lnf_mean, *lnf_rstd;    /* (B,T,C), (B,T) */
    float *probs;      /* (B,T,Vp): probabilities after forward, dlogits after backward */
    float *losses;     /* (B,T) */
    /* backward scratch */
    float *dres, *dln, *tmp;             /* (B,T,C) */
    float *d4c;        /* (B,T,4C) */
    float *dqkv;       /* (B,T,3C) */
    float *datt;       /* loco_attention_scratch(B, T, NH): a row block's score gradients */
    loco_mm *mm;       /* the products' precision and oneDNN state: set by the owner (a
                          worker); NULL (as allocated) is fp32 */
} loco_acts;

/* Errors say the size of all the activations and of the buffer that failed. */
int loco_acts_alloc(loco_acts *a, const loco_model *m, int B, int T, loco_err *e);
void loco_acts_free(loco_acts *a);

/* The bytes loco_acts_alloc(m, B, T) asks for (whole 64-byte lines per buffer), without
 * allocating; saturates at UINT64_MAX for shapes no machine holds. */
uint64_t loco_acts_bytes(const loco_model *m, int B, int T);
/* What a bf16 worker's mm context holds besides (its buffers grow in the first step): the
 * weights' mirror, the kept bf16 inputs of the products, the largest dout, and attention's
 * batched operands and dense output. An estimate to within oneDNN's own scratchpad. */
uint64_t loco_acts_bf16_bytes(const loco_model *m, int B, int T);

/* Forward of inputs (B,T) with B, T within the capacity. With targets (B,T), returns
 * the mean cross-entropy and leaves probabilities for backward; with NULL targets,
 * returns 0 and leaves the next-token probabilities in a->probs. */
float loco_model_forward(const loco_model *m, const float *params, loco_acts *a,
                         const int *inputs, const int *targets, int B, int T);

/* Backward of the last forward (which had targets): ADDS d(mean loss)/d(params) to grads. */
void loco_model_backward(const loco_model *m, const float *params, float *grads, loco_acts *a,
                         const int *inputs, const int *targets, int B, int T);

/* Training FLOPs per token the standard way: 6 x (parameters in matrix products)
 * + 6 x L x T x C for causal attention (QK^T and AV over the T/2 earlier keys on
 * average, forward and backward). */
double loco_model_flops_per_token(const loco_model *m, int T);

#endif
