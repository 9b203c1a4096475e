#include "loco/kernels.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- encoder */

void loco_encoder_forward(float *out, const int *inp, const float *wte, const float *wpe,
                          int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((long)b * T + t) * C;
            const float *e = wte + (long)inp[b * T + t] * C;
            const float *p = wpe + (long)t * C;
            for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
        }
    }
}

void loco_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp,
                           int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((long)b * T + t) * C;
            float *de = dwte + (long)inp[b * T + t] * C;
            float *dp = dwpe + (long)t * C;
            for (int i = 0; i < C; i++) {
                de[i] += d[i];
                dp[i] += d[i];
            }
        }
    }
}

/* -------------------------------------------------------------- layernorm */

/* one row: o = (x - mean) rstd w + b */
static void layernorm_row(float *o, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int C) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < C; i++) s += x[i];
    float m = s / C;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    float r = 1.0f / sqrtf(v / C + 1e-5f);
    for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * w[i] + b[i];
    *mean = m;
    *rstd = r;
}

void loco_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++)
        layernorm_row(out + (long)n * C, mean + n, rstd + n, inp + (long)n * C, weight, bias, C);
}

void loco_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                     const float *a, const float *b, const float *rbias,
                                     const float *weight, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *ar = a + (long)n * C, *br = b + (long)n * C;
        float *x = res + (long)n * C;
#pragma omp simd
        for (int i = 0; i < C; i++) x[i] = ar[i] + br[i] + rbias[i];
        /* the row is still in L1: normalising it now saves a pass over the stream */
        layernorm_row(out + (long)n * C, mean + n, rstd + n, x, weight, bias, C);
    }
}

void loco_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C, float *dinp_sum) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + (long)n * C;
        const float *x = inp + (long)n * C;
        float *dx = dinp + (long)n * C;
        float m = mean[n], r = rstd[n];
        /* the two reductions the input gradient needs */
        float dsum = 0.0f, dxsum = 0.0f;
#pragma omp simd reduction(+ : dsum, dxsum)
        for (int i = 0; i < C; i++) {
            float xhat = (x[i] - m) * r;
            float dn = weight[i] * d[i];
            dsum += dn;
            dxsum += dn * xhat;
            dbias[i] += d[i];
            dweight[i] += xhat * d[i];
        }
        dsum /= C;
        dxsum /= C;
        for (int i = 0; i < C; i++) {
            float xhat = (x[i] - m) * r;
            dx[i] += (weight[i] * d[i] - dsum - xhat * dxsum) * r;
        }
        /* the residual's bias gradient is the column sum of the stream's gradient: taken
         * here, while the row is in L1, instead of by another pass */
        if (dinp_sum)
            for (int i = 0; i < C; i++) dinp_sum[i] += dx[i];
    }
}

/* ----------------------------------------------------------------- matmul */

void loco_add_bias(float *x, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *row = x + (long)n * C;
        for (int i = 0; i < C; i++) row[i] += bias[i];
    }
}

void loco_matmul_forward(loco_mm *mm, int slot, float *out, const float *inp,
                         const float *weight, const float *bias, int N, int C, int OC) {
    const uint16_t *in16 = slot >= 0 ? loco_mm_keep(mm, slot, inp, N, C, C) : NULL;
    loco_gemm_ex(mm, 0, 1, N, OC, C, 1.0f, inp, in16, C, weight, NULL, C, 0.0f, out, OC);
    if (bias) loco_add_bias(out, bias, N, OC);
}

void loco_matmul_backward(loco_mm *mm, int slot, float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight, int N, int C,
                          int OC) {
    /* bf16: dout feeds both products, so it is converted once */
    const uint16_t *d16 = loco_mm_keep(mm, LOCO_SLOT_DOUT, dout, N, OC, OC);
    if (dinp)
        loco_gemm_ex(mm, 0, 0, N, C, OC, 1.0f, dout, d16, OC, weight, NULL, C, 0.0f, dinp, C);
    loco_gemm_ex(mm, 1, 0, OC, C, N, 1.0f, dout, d16, OC, inp,
                 slot >= 0 ? loco_mm_kept(mm, slot) : NULL, C, 1.0f, dweight, C);
    if (dbias) {
        for (int n = 0; n < N; n++) {
            const float *d = dout + (long)n * OC;
            for (int o = 0; o < OC; o++) dbias[o] += d[o];
        }
    }
}

/* -------------------------------------------------------------- attention */

enum { ATT_ROWS = LOCO_ATT_ROWS };

/* p[0..t] = softmax(p[0..t]); p[t+1..end) = 0 */
static void causal_softmax_row(float *p, int t, int end) {
    float mx = p[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j <= t; j++) mx = p[j] > mx ? p[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= t; j++) {
        p[j] = loco_expf(p[j] - mx);
        sum += p[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j <= t; j++) p[j] *= inv;
    for (int j = t + 1; j < end; j++) p[j] = 0.0f;
}

long loco_attention_scratch(int B, int T, int NH) {
    return (long)B * NH * (T < ATT_ROWS ? T : ATT_ROWS) * T;
}

/* Every (batch, head) of a row block in one batched product: q, k, v of (b, h) start at
 * qkv + b*T*3C + h*hs (+C, +2C), rows 3C apart; y at out + b*T*C + h*hs, rows C apart;
 * its probabilities at att + (b*NH + h)*T*T, rows T apart. */
void loco_attention_forward(loco_mm *mm, float *out, float *att, const float *qkv, int B, int T,
                            int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long qb = (long)T * 3 * C, ab = (long)NH * T * T, ah = (long)T * T, ob = (long)T * C;
    for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
        int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T, rows = r1 - r0;
        /* s = scale q k^T over keys [0, r1) */
        loco_gemm_batch(mm, B, NH, 0, 1, rows, r1, hs, scale, qkv + (long)r0 * 3 * C, qb, hs,
                        3 * C, qkv + C, qb, hs, 3 * C, 0.0f, att + (long)r0 * T, ab, ah, T);
        for (long bh = 0; bh < (long)B * NH; bh++)
            for (int t = r0; t < r1; t++) causal_softmax_row(att + bh * ah + (long)t * T, t, r1);
        /* y = p v */
        loco_gemm_batch(mm, B, NH, 0, 0, rows, hs, r1, 1.0f, att + (long)r0 * T, ab, ah, T,
                        qkv + 2 * C, qb, hs, 3 * C, 0.0f, out + (long)r0 * C, ob, hs, C);
    }
}

/* ds[0..t] = p * (dp - sum(dp * p)) over the causal row; ds[t+1..end) = 0 */
static void causal_softmax_backward_row(float *ds, const float *p, int t, int end) {
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j <= t; j++) dot += ds[j] * p[j];
    for (int j = 0; j <= t; j++) ds[j] = p[j] * (ds[j] - dot);
    for (int j = t + 1; j < end; j++) ds[j] = 0.0f;
}

/* dq, dk, dv are written. Row blocks run last to first: the last one touches every key
 * row, so it writes dk and dv (beta 0) and the earlier, shorter ones add. The block's
 * score gradients ds for (b, h) sit at scratch + (b*NH + h)*min(T, LOCO_ATT_ROWS)*T,
 * rows T apart. */
void loco_attention_backward(loco_mm *mm, float *dqkv, float *scratch, const float *dout,
                             const float *qkv, const float *att, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long qb = (long)T * 3 * C, ab = (long)NH * T * T, ah = (long)T * T, ob = (long)T * C;
    long dh = (long)(T < ATT_ROWS ? T : ATT_ROWS) * T, db = NH * dh;
    int last = (T - 1) / ATT_ROWS * ATT_ROWS;
    for (int r0 = last; r0 >= 0; r0 -= ATT_ROWS) {
        int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T, rows = r1 - r0;
        float beta = r0 == last ? 0.0f : 1.0f;
        const float *p = att + (long)r0 * T, *dy = dout + (long)r0 * C;
        /* dv[0:r1] += p^T dy */
        loco_gemm_batch(mm, B, NH, 1, 0, r1, hs, rows, 1.0f, p, ab, ah, T, dy, ob, hs, C, beta,
                        dqkv + 2 * C, qb, hs, 3 * C);
        /* dp = dy v^T, then through the softmax */
        loco_gemm_batch(mm, B, NH, 0, 1, rows, r1, hs, 1.0f, dy, ob, hs, C, qkv + 2 * C, qb, hs,
                        3 * C, 0.0f, scratch, db, dh, T);
        for (long bh = 0; bh < (long)B * NH; bh++)
            for (int t = r0; t < r1; t++)
                causal_softmax_backward_row(scratch + bh * dh + (long)(t - r0) * T,
                                            att + bh * ah + (long)t * T, t, r1);
        /* dq = scale ds k; dk[0:r1] += scale ds^T q */
        loco_gemm_batch(mm, B, NH, 0, 0, rows, hs, r1, scale, scratch, db, dh, T, qkv + C, qb,
                        hs, 3 * C, 0.0f, dqkv + (long)r0 * 3 * C, qb, hs, 3 * C);
        loco_gemm_batch(mm, B, NH, 1, 0, r1, hs, rows, scale, scratch, db, dh, T,
                        qkv + (long)r0 * 3 * C, qb, hs, 3 * C, beta, dqkv + C, qb, hs, 3 * C);
    }
}

/* ------------------------------------------------------------------- gelu */

/* gelu(x) = 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): one
 * exp and one division, exact at both tails, and it vectorises through loco_expf */
static const float GELU_2K = 1.5957691216057308f; /* 2 sqrt(2/pi) */

static inline float gelu_sigmoid(float x) {
    return 1.0f / (1.0f + loco_expf(-GELU_2K * (x + 0.044715f * x * x * x)));
}

/* d gelu / dx = s + x s (1 - s) 2u', with s = sigmoid(2u) */
static inline float gelu_grad(float x) {
    float s = gelu_sigmoid(x);
    float du2 = GELU_2K * (1.0f + 3.0f * 0.044715f * x * x);
    return s + x * s * (1.0f - s) * du2;
}

void loco_bias_gelu_forward(float *pre, float *out, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *p = pre + (long)n * C, *o = out + (long)n * C;
        /* the rows of pre and out never overlap: say so, or gcc will not vectorise */
#pragma omp simd
        for (int i = 0; i < C; i++) {
            float x = p[i] + bias[i];
            p[i] = x;
            o[i] = x * gelu_sigmoid(x);
        }
    }
}

void loco_gelu_bias_backward(float *dinp, float *dbias, const float *pre, const float *dout,
                             int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *p = pre + (long)n * C, *d = dout + (long)n * C;
        float *di = dinp + (long)n * C;
        /* di may be d itself, element for element; dbias is apart */
#pragma omp simd
        for (int i = 0; i < C; i++) {
            float g = gelu_grad(p[i]) * d[i];
            di[i] = g;
            dbias[i] += g;
        }
    }
}

/* -------------------------------------------------- softmax cross-entropy */

float loco_softmax_xent_forward(float *logits, float *losses, const int *targets, int N, int V,
                                int Vp) {
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        float *p = logits + (long)n * Vp;
        float target_logit = targets ? p[targets[n]] : 0.0f;
        float mx = p[0];
#pragma omp simd reduction(max : mx)
        for (int i = 1; i < V; i++) mx = p[i] > mx ? p[i] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            p[i] = loco_expf(p[i] - mx);
            sum += p[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < V; i++) p[i] *= inv;
        for (int i = V; i < Vp; i++) p[i] = 0.0f;
        if (targets) {
            /* from the logit, not log(p): stays finite where p underflows */
            losses[n] = mx + logf(sum) - target_logit;
            total += losses[n];
        }
    }
    return targets ? (float)(total / N) : 0.0f;
}

void loco_softmax_xent_backward(float *probs, const int *targets, float dloss, int N, int Vp) {
    for (int n = 0; n < N; n++) {
        float *p = probs + (long)n * Vp;
        for (int i = 0; i < Vp; i++) p[i] *= dloss;
        p[targets[n]] -= dloss;
    }
}
