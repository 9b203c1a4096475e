/* mm: matrix products in fp32 (cblas_sgemm) or bf16 (oneDNN matmul). The bf16 path keeps
 * per context a cache of primitives keyed by the product's shape, so that after the first
 * training step nothing is created or allocated: a step only sets data handles. */
#include "loco/mm.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/cpu.h"

/* a training step has a few dozen distinct products; more means shapes vary per call,
 * which would defeat the cache (and its memory), so it is a programmer error */
#define LOCO_MM_MAX_PRIMS 256

const loco_enum loco_precision_names[] = {
    {"fp32", LOCO_PREC_FP32, NULL},
    {"bf16", LOCO_PREC_BF16, NULL},
    {"auto", LOCO_PREC_AUTO, NULL},
    {NULL, 0, NULL},
};

/* One OpenBLAS thread per calling thread, for every program that links the kernels:
 * parallelism comes from workers pinned to their own cores, and a threaded sgemm inside
 * each would oversubscribe those cores (and allocate its job buffers on every call).
 * Shared libraries are initialised before us, so OpenBLAS is ready when this runs. */
__attribute__((constructor)) static void one_blas_thread_per_caller(void) {
    openblas_set_num_threads(1);
}

int loco_precision_resolve(loco_precision p, loco_precision *out, char *why, size_t n,
                           loco_err *e) {
    loco_cpu c;
    loco_cpu_detect(&c);
    char feat[64];
    loco_cpu_features(&c, feat, sizeof feat);
    /* the CPU has the instructions, and oneDNN will use them (ONEDNN_MAX_CPU_ISA can hold
     * it below: then its bf16 products are emulated, slower than fp32) */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf = dnnl_cpu_isa_avx512_core_bf16;
    int has = (c.avx512_bf16 || c.amx_bf16) && (isa & bf) == bf;
    char line[256];
    if (p == LOCO_PREC_FP32) {
        snprintf(line, sizeof line, "precision fp32 (as configured)");
    } else if (p == LOCO_PREC_BF16 && !has) {
        return loco_errf(e,
                         "precision bf16: this CPU has neither AVX512-BF16 nor AMX-BF16 "
                         "that oneDNN will use (bf16 features: %s; oneDNN ISA %s); precision "
                         "fp32 works here",
                         feat, c.isa);
    } else if (p == LOCO_PREC_BF16) {
        snprintf(line, sizeof line, "precision bf16 (as configured; CPU has %s, oneDNN ISA %s)",
                 feat, c.isa);
    } else {
        LOCO_CHECK(p == LOCO_PREC_AUTO, "precision %d", (int)p);
        snprintf(line, sizeof line,
                 has ? "precision auto -> bf16: the CPU has %s (oneDNN ISA %s)"
                     : "precision auto -> fp32: no native bf16 products here (CPU bf16: %s; oneDNN ISA %s)",
                 feat, c.isa);
    }
    *out = p == LOCO_PREC_AUTO ? (has ? LOCO_PREC_BF16 : LOCO_PREC_FP32) : p;
    if (why && n > 0) snprintf(why, n, "%s", line);
    return 0;
}

/* ---- bf16 conversions ---- */

/* Round to nearest even on the bit pattern: adding 0x7fff plus the lowest kept bit
 * carries into the kept half exactly when the dropped half is above the tie, or at the
 * tie with an odd kept half. Inf stays Inf (its dropped half is 0); a NaN would carry
 * into the exponent or lose its payload, so it is kept quiet explicitly. Branch-free so
 * that the loop vectorises. */
void loco_to_bf16(uint16_t *out, const float *in, size_t n) {
    size_t i = 0;
#ifdef __AVX512BF16__
    /* the CPU's own conversion, 16 at a time: round to nearest even, NaN stays NaN, and
     * a denormal input counts as zero (the products treat them so too) */
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
        _mm256_storeu_si256((__m256i *)(out + i), (__m256i)h);
    }
#endif
#pragma omp simd
    for (size_t j = i; j < n; j++) {
        uint32_t u;
        memcpy(&u, &in[j], sizeof u);
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t quiet = (u >> 16) | 0x40u;
        out[j] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
    }
}

float loco_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- the context ---- */

typedef struct {
    int M, N, K, ta, tb, lda, ldb, ldc;
    float alpha, beta;
    int nb, nh;           /* a batch of nb x nh products (1 x 1: one) */
    long cs0, cs1;        /* a batch's C strides; its A and B are dense */
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, pad;   /* created once without data; handles set per call */
} loco_mm_prim;

struct loco_mm {
    loco_precision prec;
    dnnl_stream_t stream;
    loco_mm_prim *prims;   /* LOCO_MM_MAX_PRIMS, the first nprims in use */
    int nprims;
    uint16_t *sa, *sb;     /* conversion scratch for A and B */
    size_t sa_n, sb_n;     /* their capacities in elements */
    float *sc;             /* a batch's dense output, before it goes into place */
    size_t sc_n;
    void *pad;             /* oneDNN's scratchpad, shared by the primitives (one thread) */
    size_t pad_n;
    const float *mbase;    /* the mirror: bf16 copy of mbase[0..mn) */
    uint16_t *mirror;
    size_t mn, mcap;
    uint16_t **slot;       /* kept bf16 copies (loco_mm_keep), by slot number */
    size_t *slot_cap, nslots;
    pthread_t thread;      /* the last thread that executed, to set its OpenMP ICV once */
    int has_thread;
};

/* One CPU engine for the process: primitives and streams of every context hang off it,
 * and creating one costs a few milliseconds. */
static dnnl_engine_t loco_engine;
static dnnl_status_t loco_engine_status;
static pthread_once_t loco_engine_once = PTHREAD_ONCE_INIT;

static void loco_engine_create(void) {
    loco_engine_status = dnnl_engine_create(&loco_engine, dnnl_cpu, 0);
}

int loco_mm_init(loco_mm **mm, loco_precision p, loco_err *e) {
    *mm = NULL;
    if (p != LOCO_PREC_FP32 && p != LOCO_PREC_BF16)
        return loco_errf(e, "mm: precision %s is not resolved", loco_enum_name(loco_precision_names, p));
    if (p == LOCO_PREC_FP32) return 0; /* NULL is fp32: cblas_sgemm needs no state */
    loco_mm *m = loco_alloc_for(sizeof *m, "mm", "the matrix product context", e);
    if (!m) return -1;
    m->prec = p;
    if (p == LOCO_PREC_BF16) {
        pthread_once(&loco_engine_once, loco_engine_create);
        if (loco_engine_status != dnnl_success) {
            free(m);
            return loco_errf(e, "mm: oneDNN cannot create a CPU engine (%s)",
                             dnnl_status2str(loco_engine_status));
        }
        dnnl_status_t s = dnnl_stream_create(&m->stream, loco_engine, dnnl_stream_default_flags);
        if (s != dnnl_success) {
            free(m);
            return loco_errf(e, "mm: oneDNN cannot create a stream (%s)", dnnl_status2str(s));
        }
        m->prims = loco_alloc_for(LOCO_MM_MAX_PRIMS * sizeof *m->prims, "mm",
                                  "the oneDNN primitive cache", e);
        if (!m->prims) {
            loco_mm_free(m);
            return -1;
        }
    }
    *mm = m;
    return 0;
}

void loco_mm_free(loco_mm *mm) {
    if (!mm) return;
    for (int i = 0; i < mm->nprims; i++) {
        loco_mm_prim *q = &mm->prims[i];
        dnnl_memory_destroy(q->a);
        dnnl_memory_destroy(q->b);
        dnnl_memory_destroy(q->c);
        dnnl_memory_destroy(q->pad);
        dnnl_primitive_destroy(q->prim);
    }
    if (mm->stream) dnnl_stream_destroy(mm->stream);
    free(mm->prims);
    free(mm->sa);
    free(mm->sb);
    free(mm->sc);
    free(mm->pad);
    free(mm->mirror);
    for (size_t i = 0; i < mm->nslots; i++) free(mm->slot[i]);
    free(mm->slot);
    free(mm->slot_cap);
    free(mm);
}

loco_precision loco_mm_precision(const loco_mm *mm) {
    return mm ? mm->prec : LOCO_PREC_FP32;
}

long loco_mm_primitives(const loco_mm *mm) {
    return mm ? mm->nprims : 0;
}

/* A buffer that only grows (its contents need not survive): after the first step every
 * shape has been seen and this never allocates. Out of memory here is fatal, since the
 * step has no way back; the message says how much. */
static void *loco_grow(void *p, size_t *cap, size_t need, size_t elem, const char *what) {
    if (need <= *cap) return p;
    free(p);
    void *q = loco_alloc(need * elem);
    LOCO_CHECK(q != NULL, "mm: cannot allocate %zu bytes for %s", need * elem, what);
    *cap = need;
    return q;
}

/* ---- oneDNN primitives ---- */

#define LOCO_DNNL(call)                                                                    \
    do {                                                                                   \
        dnnl_status_t s_ = (call);                                                         \
        LOCO_CHECK(s_ == dnnl_success, "mm: %s: %s (M %d N %d K %d ta %d tb %d)", #call,   \
                   dnnl_status2str(s_), k->M, k->N, k->K, k->ta, k->tb);                   \
    } while (0)

/* A as {M,K}, B as {K,N}, C as {M,N}, each with the strides of its storage, so that a
 * transposed or padded operand is a view and nothing is copied. A batch is 4-d: {nb, nh}
 * before those, A and B dense one product after another, C with the caller's strides. */
static void loco_mm_descs(const loco_mm_prim *k, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b,
                          dnnl_memory_desc_t *c) {
    if (k->nb * k->nh == 1) {
        dnnl_dims_t da = {k->M, k->K}, sa = {k->ta ? 1 : k->lda, k->ta ? k->lda : 1};
        dnnl_dims_t db = {k->K, k->N}, sb = {k->tb ? 1 : k->ldb, k->tb ? k->ldb : 1};
        dnnl_dims_t dc = {k->M, k->N}, sc = {k->ldc, 1};
        LOCO_DNNL(dnnl_memory_desc_init_by_strides(a, 2, da, dnnl_bf16, sa));
        LOCO_DNNL(dnnl_memory_desc_init_by_strides(b, 2, db, dnnl_bf16, sb));
        LOCO_DNNL(dnnl_memory_desc_init_by_strides(c, 2, dc, dnnl_f32, sc));
        return;
    }
    long MK = (long)k->M * k->K, KN = (long)k->K * k->N;
    dnnl_dims_t da = {k->nb, k->nh, k->M, k->K},
                sa = {k->nh * MK, MK, k->ta ? 1 : k->K, k->ta ? k->M : 1};
    dnnl_dims_t db = {k->nb, k->nh, k->K, k->N},
                sb = {k->nh * KN, KN, k->tb ? 1 : k->N, k->tb ? k->K : 1};
    dnnl_dims_t dc = {k->nb, k->nh, k->M, k->N}, sc = {k->cs0, k->cs1, k->ldc, 1};
    LOCO_DNNL(dnnl_memory_desc_init_by_strides(a, 4, da, dnnl_bf16, sa));
    LOCO_DNNL(dnnl_memory_desc_init_by_strides(b, 4, db, dnnl_bf16, sb));
    LOCO_DNNL(dnnl_memory_desc_init_by_strides(c, 4, dc, dnnl_f32, sc));
}

/* alpha as a fixed output scale and beta = 1 as a sum post-op, both part of the key;
 * the scratchpad is ours (user mode) so that executing never allocates. */
static dnnl_primitive_attr_t loco_mm_attr(const loco_mm_prim *k) {
    dnnl_primitive_attr_t attr;
    LOCO_DNNL(dnnl_primitive_attr_create(&attr));
    LOCO_DNNL(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (k->alpha != 1.0f) LOCO_DNNL(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha));
    if (k->beta != 0.0f) {
        dnnl_post_ops_t po;
        LOCO_DNNL(dnnl_post_ops_create(&po));
        LOCO_DNNL(dnnl_post_ops_append_sum(po, 1.0f));
        LOCO_DNNL(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    return attr;
}

/* Creates the primitive of key k and its memory objects; grows the scratchpad to it. */
static void loco_mm_create(loco_mm *mm, loco_mm_prim *k) {
    dnnl_memory_desc_t a, b, c;
    loco_mm_descs(k, &a, &b, &c);
    dnnl_matmul_desc_t md;
    LOCO_DNNL(dnnl_matmul_desc_init(&md, &a, &b, NULL, &c));
    dnnl_primitive_attr_t attr = loco_mm_attr(k);
    dnnl_primitive_desc_t pd;
    LOCO_DNNL(dnnl_primitive_desc_create(&pd, &md, attr, loco_engine, NULL));
    dnnl_primitive_attr_destroy(attr);
    LOCO_DNNL(dnnl_primitive_create(&k->prim, pd));
    const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t pad_bytes = dnnl_memory_desc_get_size(pad);
    mm->pad = loco_grow(mm->pad, &mm->pad_n, pad_bytes, 1, "the oneDNN scratchpad");
    LOCO_DNNL(dnnl_memory_create(&k->a, &a, loco_engine, DNNL_MEMORY_NONE));
    LOCO_DNNL(dnnl_memory_create(&k->b, &b, loco_engine, DNNL_MEMORY_NONE));
    LOCO_DNNL(dnnl_memory_create(&k->c, &c, loco_engine, DNNL_MEMORY_NONE));
    LOCO_DNNL(dnnl_memory_create(&k->pad, pad, loco_engine, DNNL_MEMORY_NONE));
    dnnl_primitive_desc_destroy(pd);
}

static pthread_mutex_t loco_create_lock = PTHREAD_MUTEX_INITIALIZER;

static int loco_mm_same(const loco_mm_prim *p, const loco_mm_prim *k) {
    return p->M == k->M && p->N == k->N && p->K == k->K && p->ta == k->ta && p->tb == k->tb &&
           p->lda == k->lda && p->ldb == k->ldb && p->ldc == k->ldc && p->alpha == k->alpha &&
           p->beta == k->beta && p->nb == k->nb && p->nh == k->nh && p->cs0 == k->cs0 &&
           p->cs1 == k->cs1;
}

/* The cached primitive of key k, created the first time: a linear search, since a step
 * has a few dozen shapes and the search costs far less than the product. */
static loco_mm_prim *loco_mm_find(loco_mm *mm, const loco_mm_prim *k) {
    for (int i = 0; i < mm->nprims; i++)
        if (loco_mm_same(&mm->prims[i], k)) return &mm->prims[i];
    LOCO_CHECK(mm->nprims < LOCO_MM_MAX_PRIMS,
               "mm: more than %d distinct product shapes (M %d N %d K %d)", LOCO_MM_MAX_PRIMS,
               k->M, k->N, k->K);
    loco_mm_prim *p = &mm->prims[mm->nprims];
    *p = *k;
    /* Workers make their primitives at the same time in their first step, and oneDNN
     * shares state between them (its primitive cache, its JIT code). It is thread-safe,
     * but ThreadSanitizer cannot see its internal ordering (the library is not
     * instrumented) and reports a race; making primitives one at a time, which costs
     * nothing after the first step, gives it an order it can see. */
    pthread_mutex_lock(&loco_create_lock);
    loco_mm_create(mm, p);
    pthread_mutex_unlock(&loco_create_lock);
    mm->nprims++;
    return p;
}

/* oneDNN runs its products in OpenMP parallel regions; each worker thread already is
 * one of the run's parallel units, so its products run on it alone. omp_set_num_threads
 * sets the calling thread's own ICV, hence once per thread that uses the context. */
static void loco_mm_claim_thread(loco_mm *mm) {
    pthread_t self = pthread_self();
    if (mm->has_thread && pthread_equal(mm->thread, self)) return;
    omp_set_num_threads(1);
    mm->thread = self;
    mm->has_thread = 1;
}

/* oneDNN refuses empty shapes; cblas_sgemm leaves C alone when M or N is 0 and scales
 * it by beta when K is 0, and so does the bf16 path. 1 when the product was empty. */
static int loco_gemm_empty(int M, int N, int K, float beta, float *C, int ldc) {
    LOCO_CHECK(M >= 0 && N >= 0 && K >= 0, "mm: shape M %d N %d K %d", M, N, K);
    if (M > 0 && N > 0 && K > 0) return 0;
    if (M > 0 && N > 0 && beta == 0.0f)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
    return 1;
}

/* Runs the product of key k (its primitive made the first time) on A, B, C. */
static void loco_mm_run(loco_mm *mm, const loco_mm_prim *key, const uint16_t *A,
                        const uint16_t *B, float *C) {
    LOCO_CHECK(mm && mm->prec == LOCO_PREC_BF16, "mm: bf16 product on a %s context",
               mm ? loco_enum_name(loco_precision_names, mm->prec) : "NULL");
    LOCO_CHECK(key->beta == 0.0f || key->beta == 1.0f, "mm: beta %g (0 or 1)", (double)key->beta);
    loco_mm_claim_thread(mm);
    loco_mm_prim *p = loco_mm_find(mm, key);
    const loco_mm_prim *k = p;   /* for LOCO_DNNL's message */
    LOCO_DNNL(dnnl_memory_set_data_handle(p->a, (void *)A));
    LOCO_DNNL(dnnl_memory_set_data_handle(p->b, (void *)B));
    LOCO_DNNL(dnnl_memory_set_data_handle(p->c, C));
    LOCO_DNNL(dnnl_memory_set_data_handle(p->pad, mm->pad));
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, p->a},
        {DNNL_ARG_WEIGHTS, p->b},
        {DNNL_ARG_DST, p->c},
        {DNNL_ARG_SCRATCHPAD, p->pad},
    };
    LOCO_DNNL(dnnl_primitive_execute(p->prim, mm->stream, 4, args));
    LOCO_DNNL(dnnl_stream_wait(mm->stream));
}

void loco_gemm_bf16(loco_mm *mm, int ta, int tb, int M, int N, int K, float alpha,
                    const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C,
                    int ldc) {
    if (loco_gemm_empty(M, N, K, beta, C, ldc)) return;
    loco_mm_prim key = {.M = M, .N = N, .K = K, .ta = !!ta, .tb = !!tb, .lda = lda, .ldb = ldb,
                        .ldc = ldc, .alpha = alpha, .beta = beta, .nb = 1, .nh = 1};
    loco_mm_run(mm, &key, A, B, C);
}

/* Elements spanned by a row-major rows x cols operand with leading dimension ld. */
static size_t loco_extent(int rows, int cols, int ld) {
    return (size_t)(rows - 1) * (size_t)ld + (size_t)cols;
}

/* X (rows x cols, leading dimension ld) into dense bf16 at out (leading dimension cols):
 * dense operands are what oneDNN's fastest (brgemm, AMX) matmul takes; a strided view
 * such as one head of q|k|v would fall back to a slower gemm that packs on every call */
static void loco_dense_bf16(uint16_t *out, const float *X, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++)
        loco_to_bf16(out + (size_t)r * cols, X + (size_t)r * ld, (size_t)cols);
}

/* The bf16 form of a rows x cols operand X (leading dimension ld) and its leading
 * dimension (*ld16): from the mirror when X lies wholly inside it, else converted into
 * the scratch *s, dense. */
static const uint16_t *loco_operand(loco_mm *mm, const float *X, int rows, int cols, int ld,
                                    int *ld16, uint16_t **s, size_t *cap, const char *what) {
    size_t ext = loco_extent(rows, cols, ld);
    *ld16 = ld;
    if (mm->mn > 0 && X >= mm->mbase && X < mm->mbase + mm->mn &&
        (size_t)(X - mm->mbase) + ext <= mm->mn)
        return mm->mirror + (X - mm->mbase);
    *s = loco_grow(*s, cap, (size_t)rows * cols, sizeof(uint16_t), what);
    loco_dense_bf16(*s, X, rows, cols, ld);
    *ld16 = cols;
    return *s;
}

void loco_gemm(loco_mm *mm, int ta, int tb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    loco_gemm_ex(mm, ta, tb, M, N, K, alpha, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}

const uint16_t *loco_mm_keep(loco_mm *mm, int slot, const float *X, int rows, int cols,
                             int ld) {
    if (!mm || mm->prec != LOCO_PREC_BF16) return NULL;
    LOCO_CHECK(slot >= 0 && slot < 1 << 20, "mm: slot %d", slot);
    if ((size_t)slot >= mm->nslots) {
        size_t n = (size_t)slot + 1;
        uint16_t **s = realloc(mm->slot, n * sizeof *s);
        LOCO_CHECK(s != NULL, "mm: cannot allocate %zu slots", n);
        mm->slot = s;
        size_t *c = realloc(mm->slot_cap, n * sizeof *c);
        LOCO_CHECK(c != NULL, "mm: cannot allocate %zu slots", n);
        mm->slot_cap = c;
        for (size_t i = mm->nslots; i < n; i++) mm->slot[i] = NULL, mm->slot_cap[i] = 0;
        mm->nslots = n;
    }
    mm->slot[slot] = loco_grow(mm->slot[slot], &mm->slot_cap[slot], (size_t)rows * cols,
                               sizeof(uint16_t), "a kept bf16 activation");
    loco_dense_bf16(mm->slot[slot], X, rows, cols, ld);
    return mm->slot[slot];
}

const uint16_t *loco_mm_kept(const loco_mm *mm, int slot) {
    if (!mm || mm->prec != LOCO_PREC_BF16) return NULL;
    LOCO_CHECK(slot >= 0 && (size_t)slot < mm->nslots && mm->slot[slot],
               "mm: slot %d was never kept", slot);
    return mm->slot[slot];
}

void loco_gemm_ex(loco_mm *mm, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                  const uint16_t *A16, int lda, const float *B, const uint16_t *B16, int ldb,
                  float beta, float *C, int ldc) {
    if (!mm || mm->prec == LOCO_PREC_FP32) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* stored shapes: A is M x K, or K x M when transposed; B is K x N, or N x K */
    if (loco_gemm_empty(M, N, K, beta, C, ldc)) return;
    int la = ta ? M : K, lb = tb ? K : N; /* a kept operand is dense */
    const uint16_t *a = A16 ? A16
                            : loco_operand(mm, A, ta ? K : M, ta ? M : K, lda, &la, &mm->sa,
                                           &mm->sa_n, "the bf16 copy of A");
    const uint16_t *b = B16 ? B16
                            : loco_operand(mm, B, tb ? N : K, tb ? K : N, ldb, &lb, &mm->sb,
                                           &mm->sb_n, "the bf16 copy of B");
    loco_gemm_bf16(mm, ta, tb, M, N, K, alpha, a, la, b, lb, beta, C, ldc);
}

void loco_mm_mirror(loco_mm *mm, const float *base, size_t n) {
    if (!mm || mm->prec != LOCO_PREC_BF16) return;
    if (n == 0) {
        mm->mbase = NULL;
        mm->mn = 0;
        return;
    }
    mm->mirror = loco_grow(mm->mirror, &mm->mcap, n, sizeof(uint16_t), "the bf16 weight mirror");
    loco_to_bf16(mm->mirror, base, n);
    mm->mbase = base;
    mm->mn = n;
}

/* The operand of every product of a batch, dense one after another: rows x cols each,
 * product (i, j) at X + i*s0 + j*s1 with leading dimension ld. */
static const uint16_t *loco_batch_operand(uint16_t **s, size_t *cap, int nb, int nh,
                                          const float *X, long s0, long s1, int rows, int cols,
                                          int ld, const char *what) {
    size_t one = (size_t)rows * cols;
    *s = loco_grow(*s, cap, one * nb * nh, sizeof(uint16_t), what);
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nh; j++)
            loco_dense_bf16(*s + ((size_t)i * nh + j) * one, X + i * s0 + j * s1, rows, cols, ld);
    return *s;
}

void loco_gemm_batch(loco_mm *mm, int nb, int nh, int ta, int tb, int M, int N, int K,
                     float alpha, const float *A, long as0, long as1, int lda, const float *B,
                     long bs0, long bs1, int ldb, float beta, float *C, long cs0, long cs1,
                     int ldc) {
    if (!mm || mm->prec == LOCO_PREC_FP32) {
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < nh; j++)
                cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                            tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                            A + i * as0 + j * as1, lda, B + i * bs0 + j * bs1, ldb, beta,
                            C + i * cs0 + j * cs1, ldc);
        return;
    }
    const uint16_t *a = loco_batch_operand(&mm->sa, &mm->sa_n, nb, nh, A, as0, as1,
                                           ta ? K : M, ta ? M : K, lda, "the bf16 copy of A");
    const uint16_t *b = loco_batch_operand(&mm->sb, &mm->sb_n, nb, nh, B, bs0, bs1,
                                           tb ? N : K, tb ? K : N, ldb, "the bf16 copy of B");
    loco_gemm_bf16_batch(mm, nb, nh, ta, tb, M, N, K, alpha, a, b, beta, C, cs0, cs1, ldc);
}

/* Adds (beta 1) or copies (beta 0) the dense batch D into C's strided products. */
static void loco_scatter(float *C, long cs0, long cs1, int ldc, const float *D, int nb, int nh,
                         int M, int N, float beta) {
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nh; j++)
            for (int r = 0; r < M; r++) {
                float *c = C + i * cs0 + j * cs1 + (long)r * ldc;
                const float *d = D + (((long)i * nh + j) * M + r) * N;
                if (beta != 0.0f)
                    for (int k = 0; k < N; k++) c[k] += d[k];
                else
                    memcpy(c, d, sizeof(float) * (size_t)N);
            }
}

/* oneDNN 2.6 runs a batch on its AMX/brgemm kernels only when the output is dense; a
 * strided one (one head's columns of y, a block of the probabilities) falls back to a
 * gemm several times slower. So a strided batch is computed into dense scratch, then
 * added or copied into place: M x N floats per product, small beside the product. */
void loco_gemm_bf16_batch(loco_mm *mm, int nb, int nh, int ta, int tb, int M, int N, int K,
                          float alpha, const uint16_t *A, const uint16_t *B, float beta, float *C,
                          long cs0, long cs1, int ldc) {
    LOCO_CHECK(nb > 0 && nh > 0 && M > 0 && N > 0 && K > 0, "mm: batch %d x %d of M %d N %d K %d",
               nb, nh, M, N, K);
    long MN = (long)M * N;
    int dense = ldc == N && (nh == 1 || cs1 == MN) && (nb == 1 || cs0 == nh * MN);
    loco_mm_prim key = {.M = M, .N = N, .K = K, .ta = !!ta, .tb = !!tb, .lda = ta ? M : K,
                        .ldb = tb ? K : N, .ldc = N, .alpha = alpha,
                        .beta = dense ? beta : 0.0f, .nb = nb, .nh = nh, .cs0 = nh * MN,
                        .cs1 = MN};
    if (dense) {
        loco_mm_run(mm, &key, A, B, C);
        return;
    }
    mm->sc = loco_grow(mm->sc, &mm->sc_n, (size_t)nb * nh * MN, sizeof(float),
                       "the dense output of a batch");
    loco_mm_run(mm, &key, A, B, mm->sc);
    loco_scatter(C, cs0, cs1, ldc, mm->sc, nb, nh, M, N, beta);
}
