#include "loco/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/kernels.h"

int loco_padded_vocab(int V) {
    return (V + 127) / 128 * 128;
}

static void set_tensor(loco_model *m, int id, const char *name, size_t *off, int ndim, long d0,
                       long d1, long d2, int decay) {
    loco_tensor *t = &m->t[id];
    t->name = name;
    t->ndim = ndim;
    t->dims[0] = d0;
    t->dims[1] = d1;
    t->dims[2] = d2;
    t->count = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1) * (size_t)(ndim > 2 ? d2 : 1);
    t->offset = *off;
    t->decay = decay;
    *off += (t->count + 15) / 16 * 16;
    m->ntrue += t->count;
}

/* the parameters of a shape, counted in double, where no product wraps */
static double param_count(const loco_shape *s) {
    double C = s->C;
    return ((double)s->Vp + s->maxT) * C + s->L * (12 * C * C + 13 * C) + 2 * C;
}

int loco_model_init(loco_model *m, const loco_shape *s, loco_err *e) {
    if (s->V < 2 || s->Vp < s->V || s->maxT < 1 || s->L < 1 || s->NH < 1 || s->C < 1)
        return loco_errf(e, "model shape out of range (V=%d Vp=%d maxT=%d L=%d NH=%d C=%d)",
                         s->V, s->Vp, s->maxT, s->L, s->NH, s->C);
    if (s->C % s->NH != 0)
        return loco_errf(e, "model.dim = %d is not divisible by model.heads = %d", s->C, s->NH);
    /* beyond 2^52 parameters no size in bytes is far from wrapping (and no machine holds
     * the model): a file's header claiming such a shape is refused before any is computed */
    if (param_count(s) > 0x1p52)
        return loco_errf(e, "model shape too large: %.3g parameters (Vp=%d maxT=%d L=%d C=%d)",
                         param_count(s), s->Vp, s->maxT, s->L, s->C);
    memset(m, 0, sizeof *m);
    m->s = *s;
    long L = s->L, C = s->C;
    size_t off = 0;
    set_tensor(m, LOCO_WTE, "wte", &off, 2, s->Vp, C, 0, 1);
    set_tensor(m, LOCO_WPE, "wpe", &off, 2, s->maxT, C, 0, 1);
    set_tensor(m, LOCO_LN1W, "ln1w", &off, 2, L, C, 0, 0);
    set_tensor(m, LOCO_LN1B, "ln1b", &off, 2, L, C, 0, 0);
    set_tensor(m, LOCO_QKVW, "qkvw", &off, 3, L, 3 * C, C, 1);
    set_tensor(m, LOCO_QKVB, "qkvb", &off, 2, L, 3 * C, 0, 0);
    set_tensor(m, LOCO_ATTPROJW, "attprojw", &off, 3, L, C, C, 1);
    set_tensor(m, LOCO_ATTPROJB, "attprojb", &off, 2, L, C, 0, 0);
    set_tensor(m, LOCO_LN2W, "ln2w", &off, 2, L, C, 0, 0);
    set_tensor(m, LOCO_LN2B, "ln2b", &off, 2, L, C, 0, 0);
    set_tensor(m, LOCO_FCW, "fcw", &off, 3, L, 4 * C, C, 1);
    set_tensor(m, LOCO_FCB, "fcb", &off, 2, L, 4 * C, 0, 0);
    set_tensor(m, LOCO_FCPROJW, "fcprojw", &off, 3, L, C, 4 * C, 1);
    set_tensor(m, LOCO_FCPROJB, "fcprojb", &off, 2, L, C, 0, 0);
    set_tensor(m, LOCO_LNFW, "lnfw", &off, 1, C, 0, 0, 0);
    set_tensor(m, LOCO_LNFB, "lnfb", &off, 1, C, 0, 0, 0);
    m->nparams = off;
    return 0;
}

void loco_model_init_params(const loco_model *m, float *params, uint64_t seed) {
    memset(params, 0, m->nparams * sizeof(float));
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->s.L);
    for (int id = 0; id < LOCO_NTENSORS; id++) {
        const loco_tensor *t = &m->t[id];
        float *p = params + t->offset;
        size_t n = t->count;
        if (id == LOCO_LN1W || id == LOCO_LN2W || id == LOCO_LNFW) {
            for (size_t i = 0; i < n; i++) p[i] = 1.0f;
            continue;
        }
        if (!t->decay) continue; /* biases stay 0 */
        if (id == LOCO_WTE) n = (size_t)m->s.V * (size_t)m->s.C; /* padded rows stay 0 */
        float std = (id == LOCO_ATTPROJW || id == LOCO_FCPROJW) ? resid_std : 0.02f;
        loco_rng r;
        loco_rng_seed(&r, seed, loco_stream_id(LOCO_STREAM_INIT, (uint64_t)id));
        for (size_t i = 0; i < n; i++) p[i] = (float)(std * loco_rng_normal(&r));
    }
}

/* ------------------------------------------------------------ activations */

/* The activations' buffers for B x T: where each goes, its name and its floats, the
 * products saturated (a config can ask for more than 2^64 bytes; memplan says so before
 * anything is allocated). One table for loco_acts_alloc and loco_acts_bytes, so the
 * count is what the allocation is. */
typedef struct {
    float **p;
    const char *name;
    uint64_t n;
} acts_buf;

enum { ACTS_NBUFS = 24 };

static void acts_table(loco_acts *a, const loco_model *m, int B, int T, acts_buf *b) {
    uint64_t L = (uint64_t)m->s.L, C = (uint64_t)m->s.C, NH = (uint64_t)m->s.NH;
    uint64_t N = (uint64_t)B * (uint64_t)T, NC = loco_mul_sat(N, C), LNC = loco_mul_sat(L, NC);
    uint64_t LN = L * N, LN4C = loco_mul_sat(LNC, 4), Tu = (uint64_t)T;
    uint64_t LNHN = loco_mul_sat(L * NH, N);
    /* loco_attention_scratch's floats, saturated */
    uint64_t rows = Tu < LOCO_ATT_ROWS ? Tu : LOCO_ATT_ROWS;
    uint64_t datt = loco_mul_sat(loco_mul_sat((uint64_t)B * NH, rows), Tu);
    acts_buf t[ACTS_NBUFS] = {
        {&a->x, "x", loco_mul_sat(L + 1, NC)},     {&a->ln1, "ln1", LNC},
        {&a->ln1_mean, "ln1_mean", LN},              {&a->ln1_rstd, "ln1_rstd", LN},
        {&a->qkv, "qkv", loco_mul_sat(LNC, 3)},      {&a->att, "att", loco_mul_sat(LNHN, Tu)},
        {&a->atty, "atty", LNC},                     {&a->r2, "r2", LNC},
        {&a->ln2, "ln2", LNC},                       {&a->ln2_mean, "ln2_mean", LN},
        {&a->ln2_rstd, "ln2_rstd", LN},              {&a->fch, "fch", LN4C},
        {&a->fch_gelu, "fch_gelu", LN4C},            {&a->lnf, "lnf", NC},
        {&a->lnf_mean, "lnf_mean", N},               {&a->lnf_rstd, "lnf_rstd", N},
        {&a->probs, "probs", loco_mul_sat(N, (uint64_t)m->s.Vp)}, {&a->losses, "losses", N},
        {&a->dres, "dres", NC},                      {&a->dln, "dln", NC},
        {&a->tmp, "tmp", NC},                        {&a->d4c, "d4c", loco_mul_sat(NC, 4)},
        {&a->dqkv, "dqkv", loco_mul_sat(NC, 3)},     {&a->datt, "datt", datt},
    };
    memcpy(b, t, sizeof t);
}

/* what loco_alloc takes for n floats: whole 64-byte lines */
static uint64_t aligned_bytes(uint64_t floats) {
    uint64_t bytes = loco_mul_sat(floats, sizeof(float));
    return bytes > UINT64_MAX - LOCO_ALIGN ? UINT64_MAX
                                           : (bytes + LOCO_ALIGN - 1) / LOCO_ALIGN * LOCO_ALIGN;
}

uint64_t loco_acts_bytes(const loco_model *m, int B, int T) {
    loco_acts a;
    acts_buf b[ACTS_NBUFS];
    acts_table(&a, m, B, T, b);
    uint64_t sum = 0;
    for (int i = 0; i < ACTS_NBUFS; i++) sum = loco_add_sat(sum, aligned_bytes(b[i].n));
    return sum;
}

uint64_t loco_acts_bf16_bytes(const loco_model *m, int B, int T) {
    uint64_t C = (uint64_t)m->s.C, L = (uint64_t)m->s.L, NH = (uint64_t)m->s.NH;
    uint64_t N = (uint64_t)B * (uint64_t)T, Tu = (uint64_t)T, Vp = (uint64_t)m->s.Vp;
    uint64_t rows = Tu < LOCO_ATT_ROWS ? Tu : LOCO_ATT_ROWS, hs = C / NH;
    uint64_t widest = Vp > 4 * C ? Vp : 4 * C;
    uint64_t kept = loco_mul_sat(loco_mul_sat(N, C), 7 * L + 1);   /* ln1, atty, ln2, fch_gelu */
    uint64_t dout = loco_mul_sat(N, widest);
    uint64_t batch = loco_mul_sat((uint64_t)B * NH, rows * (Tu > hs ? Tu : hs));
    uint64_t halves = loco_add_sat(loco_add_sat(m->nparams, kept),
                                   loco_add_sat(dout, loco_mul_sat(batch, 2)));
    /* bf16 halves, and the batches' dense fp32 output */
    return loco_add_sat(loco_mul_sat(halves, 2), loco_mul_sat(batch, 4));
}

int loco_acts_alloc(loco_acts *a, const loco_model *m, int B, int T, loco_err *e) {
    memset(a, 0, sizeof *a);
    a->B = B;
    a->T = T;
    acts_buf b[ACTS_NBUFS];
    acts_table(a, m, B, T, b);
    for (int i = 0; i < ACTS_NBUFS; i++) {
        uint64_t bytes = aligned_bytes(b[i].n);
        *b[i].p = bytes <= SIZE_MAX ? loco_alloc((size_t)bytes) : NULL;
        if (!*b[i].p) {
            char all[32], one[32];
            loco_acts_free(a);
            return loco_errf(e, "cannot allocate %s for activations of %d x %d tokens (the "
                             "%s buffer %s failed)",
                             loco_size_str(loco_acts_bytes(m, B, T), all, sizeof all), B, T,
                             loco_size_str(bytes, one, sizeof one), b[i].name);
        }
    }
    return 0;
}

void loco_acts_free(loco_acts *a) {
    float *all[] = {a->x,   a->ln1,      a->ln1_mean, a->ln1_rstd, a->qkv,      a->att,
                    a->atty, a->r2,      a->ln2,      a->ln2_mean, a->ln2_rstd, a->fch,
                    a->fch_gelu, a->lnf, a->lnf_mean, a->lnf_rstd, a->probs,    a->losses,
                    a->dres, a->dln,     a->tmp,      a->d4c,      a->dqkv,     a->datt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    memset(a, 0, sizeof *a);
}

/* ----------------------------------------------------------------- blocks */

/* Pointers to layer l's parameters (or gradients: same layout). */
typedef struct {
    float *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw,
        *fcprojb;
} layer_params;

static layer_params layer_of(const loco_model *m, const float *base, int l) {
    size_t C = (size_t)m->s.C;
    float *p = (float *)base;
    layer_params lp = {
        p + m->t[LOCO_LN1W].offset + l * C,          p + m->t[LOCO_LN1B].offset + l * C,
        p + m->t[LOCO_QKVW].offset + l * 3 * C * C,  p + m->t[LOCO_QKVB].offset + l * 3 * C,
        p + m->t[LOCO_ATTPROJW].offset + l * C * C,  p + m->t[LOCO_ATTPROJB].offset + l * C,
        p + m->t[LOCO_LN2W].offset + l * C,          p + m->t[LOCO_LN2B].offset + l * C,
        p + m->t[LOCO_FCW].offset + l * 4 * C * C,   p + m->t[LOCO_FCB].offset + l * 4 * C,
        p + m->t[LOCO_FCPROJW].offset + l * 4 * C * C, p + m->t[LOCO_FCPROJB].offset + l * C,
    };
    return lp;
}

/* Layer l's activations (capacity strides, so B, T below capacity still fit). */
typedef struct {
    float *x, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *r2, *ln2, *ln2_mean, *ln2_rstd,
        *fch, *fch_gelu, *out;
} layer_acts;

static layer_acts acts_of(const loco_model *m, const loco_acts *a, int l) {
    size_t C = (size_t)m->s.C, N = (size_t)a->B * a->T, NH = (size_t)m->s.NH;
    layer_acts la = {
        a->x + l * N * C,         a->ln1 + l * N * C,      a->ln1_mean + l * N,
        a->ln1_rstd + l * N,      a->qkv + l * N * 3 * C,  a->att + l * NH * N * a->T,
        a->atty + l * N * C,      a->r2 + l * N * C,       a->ln2 + l * N * C,
        a->ln2_mean + l * N,      a->ln2_rstd + l * N,     a->fch + l * N * 4 * C,
        a->fch_gelu + l * N * 4 * C, a->x + (l + 1) * N * C,
    };
    return la;
}

/* The mm slots (kernels.h) that keep the bf16 form of a product's input from forward to
 * backward: block l's four (ln1, atty, ln2, fch_gelu), then lnf's. */
static int slot_of(int l) {
    return LOCO_SLOT_ACTS + 4 * l;
}

static int slot_lnf(const loco_model *m) {
    return slot_of(m->s.L);
}

/* The layer norm that reads the stream a block writes: the next block's ln1, or lnf.
 * The block computes it in the same pass as its last residual add. */
typedef struct {
    float *out, *mean, *rstd;
    const float *w, *b;
} next_ln;

static next_ln next_ln_of(const loco_model *m, const float *params, const loco_acts *a, int l) {
    if (l + 1 < m->s.L) {
        layer_params p = layer_of(m, params, l + 1);
        layer_acts x = acts_of(m, a, l + 1);
        return (next_ln){x.ln1, x.ln1_mean, x.ln1_rstd, p.ln1w, p.ln1b};
    }
    return (next_ln){a->lnf, a->lnf_mean, a->lnf_rstd, params + m->t[LOCO_LNFW].offset,
                     params + m->t[LOCO_LNFB].offset};
}

/* x->ln1 holds the block's first layer norm on entry (written by the block before) */
static void block_forward(const loco_model *m, const layer_params *p, const layer_acts *x,
                          const next_ln *nx, float *tmp, loco_mm *mm, int l, int B, int T) {
    int C = m->s.C, N = B * T, s0 = slot_of(l);
    loco_matmul_forward(mm, s0, x->qkv, x->ln1, p->qkvw, p->qkvb, N, C, 3 * C);
    loco_attention_forward(mm, x->atty, x->att, x->qkv, B, T, C, m->s.NH);
    loco_matmul_forward(mm, s0 + 1, tmp, x->atty, p->projw, NULL, N, C, C);
    loco_residual_layernorm_forward(x->r2, x->ln2, x->ln2_mean, x->ln2_rstd, x->x, tmp,
                                    p->projb, p->ln2w, p->ln2b, N, C);
    loco_matmul_forward(mm, s0 + 2, x->fch, x->ln2, p->fcw, NULL, N, C, 4 * C);
    loco_bias_gelu_forward(x->fch, x->fch_gelu, p->fcb, N, 4 * C);
    loco_matmul_forward(mm, s0 + 3, tmp, x->fch_gelu, p->fcprojw, NULL, N, 4 * C, C);
    loco_residual_layernorm_forward(x->out, nx->out, nx->mean, nx->rstd, x->r2, tmp,
                                    p->fcprojb, nx->w, nx->b, N, C);
}

/* a->dres holds d(out) on entry and d(x) on return. The residual biases' gradients are
 * column sums of dres, taken by the layer norms' backward passes: projb's here, and the
 * block below's fcprojb (prev_fcprojb, NULL for the first block) as d(x) is completed. */
static void block_backward(const loco_model *m, const layer_params *p, const layer_params *g,
                           const layer_acts *x, loco_acts *a, float *prev_fcprojb, int l, int B,
                           int T) {
    int C = m->s.C, N = B * T, s0 = slot_of(l);
    /* MLP: dres flows to r2 unchanged and through the MLP into dln */
    loco_matmul_backward(a->mm, s0 + 3, a->d4c, g->fcprojw, NULL, a->dres, x->fch_gelu,
                         p->fcprojw, N, 4 * C, C);
    loco_gelu_bias_backward(a->d4c, g->fcb, x->fch, a->d4c, N, 4 * C);
    loco_matmul_backward(a->mm, s0 + 2, a->dln, g->fcw, NULL, a->d4c, x->ln2, p->fcw, N, C,
                         4 * C);
    loco_layernorm_backward(a->dres, g->ln2w, g->ln2b, a->dln, x->r2, p->ln2w, x->ln2_mean,
                            x->ln2_rstd, N, C, g->projb);
    /* attention: dres (now d r2) flows to x unchanged and through attention */
    loco_matmul_backward(a->mm, s0 + 1, a->dln, g->projw, NULL, a->dres, x->atty, p->projw, N,
                         C, C);
    loco_attention_backward(a->mm, a->dqkv, a->datt, a->dln, x->qkv, x->att, B, T, C, m->s.NH);
    loco_matmul_backward(a->mm, s0, a->dln, g->qkvw, g->qkvb, a->dqkv, x->ln1, p->qkvw, N, C,
                         3 * C);
    loco_layernorm_backward(a->dres, g->ln1w, g->ln1b, a->dln, x->x, p->ln1w, x->ln1_mean,
                            x->ln1_rstd, N, C, prev_fcprojb);
}

/* ---------------------------------------------------------------- forward */

float loco_model_forward(const loco_model *m, const float *params, loco_acts *a,
                         const int *inputs, const int *targets, int B, int T) {
    int C = m->s.C, N = B * T, L = m->s.L;
    const float *wte = params + m->t[LOCO_WTE].offset;
    loco_encoder_forward(a->x, inputs, wte, params + m->t[LOCO_WPE].offset, B, T, C);
    layer_params p0 = layer_of(m, params, 0);
    layer_acts x0 = acts_of(m, a, 0);
    loco_layernorm_forward(x0.ln1, x0.ln1_mean, x0.ln1_rstd, a->x, p0.ln1w, p0.ln1b, N, C);
    for (int l = 0; l < L; l++) {
        layer_params p = layer_of(m, params, l);
        layer_acts x = acts_of(m, a, l);
        next_ln nx = next_ln_of(m, params, a, l);
        block_forward(m, &p, &x, &nx, a->tmp, a->mm, l, B, T);
    }
    loco_matmul_forward(a->mm, slot_lnf(m), a->probs, a->lnf, wte, NULL, N, C, m->s.Vp);
    return loco_softmax_xent_forward(a->probs, a->losses, targets, N, m->s.V, m->s.Vp);
}

/* --------------------------------------------------------------- backward */

void loco_model_backward(const loco_model *m, const float *params, float *grads, loco_acts *a,
                         const int *inputs, const int *targets, int B, int T) {
    int C = m->s.C, N = B * T, L = m->s.L;
    const float *wte = params + m->t[LOCO_WTE].offset;
    float *dwte = grads + m->t[LOCO_WTE].offset;
    loco_softmax_xent_backward(a->probs, targets, 1.0f / (float)N, N, m->s.Vp);
    loco_matmul_backward(a->mm, slot_lnf(m), a->dln, dwte, NULL, a->probs, a->lnf, wte, N, C,
                         m->s.Vp);
    memset(a->dres, 0, (size_t)N * C * sizeof(float));
    const float *last = acts_of(m, a, L - 1).out;
    loco_layernorm_backward(a->dres, grads + m->t[LOCO_LNFW].offset,
                            grads + m->t[LOCO_LNFB].offset, a->dln, last,
                            params + m->t[LOCO_LNFW].offset, a->lnf_mean, a->lnf_rstd, N, C,
                            layer_of(m, grads, L - 1).fcprojb);
    for (int l = L - 1; l >= 0; l--) {
        layer_params p = layer_of(m, params, l);
        layer_params g = layer_of(m, grads, l);
        layer_acts x = acts_of(m, a, l);
        block_backward(m, &p, &g, &x, a, l > 0 ? layer_of(m, grads, l - 1).fcprojb : NULL, l, B,
                       T);
    }
    loco_encoder_backward(dwte, grads + m->t[LOCO_WPE].offset, a->dres, inputs, B, T, C);
}

double loco_model_flops_per_token(const loco_model *m, int T) {
    double C = m->s.C, L = m->s.L;
    double matmul_params = (double)m->s.Vp * C + L * 12.0 * C * C;
    return 6.0 * matmul_params + 6.0 * L * T * C;
}
