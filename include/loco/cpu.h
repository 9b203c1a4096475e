/* cpu: what this CPU can run, and that loco's computing uses it: the vector units and
 * bf16 features (cpuid), the OpenBLAS kernel set (a choice over a table, applied once at
 * start by re-executing the program) and flush-to-zero in every thread that computes. */
#ifndef LOCO_CPU_H
#define LOCO_CPU_H

#include <stddef.h>

#include "loco/base.h"

typedef enum { LOCO_VENDOR_OTHER, LOCO_VENDOR_INTEL, LOCO_VENDOR_AMD } loco_vendor;
extern const loco_enum loco_vendor_names[];   /* "other", "intel", "amd" */

/* the widest vector units a BLAS kernel set may use, lowest first */
typedef enum { LOCO_VEC_SSE, LOCO_VEC_AVX, LOCO_VEC_AVX2, LOCO_VEC_AVX512 } loco_vec;
extern const loco_enum loco_vec_names[];      /* "SSE", "AVX", "AVX2 + FMA", "AVX-512" */

typedef struct {
    loco_vendor vendor;
    int family, model;           /* cpuid leaf 1, extended fields folded in */
    char brand[64];              /* cpuid's brand string, e.g. "AMD EPYC 9R14" */
    loco_vec vec;                /* AVX-512 = F, BW, VL and DQ; AVX2 = AVX2 and FMA; each
                                    only where the OS saves its registers (xgetbv) */
    int avx512_bf16, amx_bf16;   /* cpuid leaf 7 (subleaf 1 EAX bit 5; subleaf 0 EDX bit 22),
                                    and the OS enables the state */
    char isa[48];                /* the ISA oneDNN will use, e.g. "avx512_core_amx" */
} loco_cpu;
void loco_cpu_detect(loco_cpu *c);
/* "avx512_bf16 amx_bf16" or "none"; returns buf */
const char *loco_cpu_features(const loco_cpu *c, char *buf, size_t n);
/* "AMD EPYC 9R14 (AMD family 25 model 17, AVX-512)"; returns buf */
const char *loco_cpu_name(const loco_cpu *c, char *buf, size_t n);

/* ---- the OpenBLAS kernel set ----
 * OpenBLAS picks its kernels from a table of CPU models; a model newer than the table
 * gets its SSE3 fallback ("Prescott"), a quarter of the speed. loco compares the pick with
 * the vector units the CPU has and, where the pick is below them and the user set nothing,
 * sets OPENBLAS_CORETYPE (which OpenBLAS reads only when it loads) and re-executes the
 * program once, before any work. docs/design.md, "The BLAS kernel set". */

/* What the choice is made from. */
typedef struct {
    loco_vendor vendor;
    loco_vec vec;                /* the CPU's */
    const char *running;         /* the kernel set in use (openblas_get_corename) */
    const char *coretype;        /* OPENBLAS_CORETYPE, or NULL when unset */
    const char *loco_picked;     /* LOCO_BLAS_DETECTED: loco set OPENBLAS_CORETYPE after
                                    OpenBLAS picked this; NULL when loco set nothing */
    int automatic;               /* 0: LOCO_BLAS_AUTO=0, loco only reports */
} loco_blas_facts;

typedef enum { LOCO_BLAS_BY_OPENBLAS, LOCO_BLAS_BY_LOCO, LOCO_BLAS_BY_USER } loco_blas_by;
extern const loco_enum loco_blas_by_names[];  /* "openblas", "loco", "user" */

typedef struct {
    const char *best;            /* the kernel set for this CPU's units; NULL: no rule */
    const char *reexec;          /* set OPENBLAS_CORETYPE to this and re-execute; NULL: keep */
    const char *detected;        /* what OpenBLAS picked by itself; NULL when the user chose */
    loco_blas_by by;             /* who chose the kernel set in use */
    char warning[320];           /* why the set in use is below the CPU, and the fix; "" */
} loco_blas_choice;

/* The choice, a pure function of f (tested case by case). A user's OPENBLAS_CORETYPE is
 * always kept; loco re-executes only when it set nothing yet, so never twice. */
void loco_blas_choose(const loco_blas_facts *f, loco_blas_choice *out);
/* The vector units a kernel set of OpenBLAS uses (case-insensitive name); -1 when the name
 * is not one loco knows. */
int loco_blas_kernel_vec(const char *name);

/* This process's BLAS as chosen at start: the kernel set in use, the choice, and the
 * OpenBLAS build ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."). Made before main. */
typedef struct {
    const char *core;            /* in use */
    const char *config;          /* openblas_get_config() */
    loco_blas_choice choice;
} loco_blas_state;
const loco_blas_state *loco_blas(void);
/* One line for people: "BLAS: OpenBLAS 0.3.21, kernels SkylakeX (chosen by loco for
 * AVX-512; OpenBLAS picked Prescott); oneDNN ISA avx512_core_amx"; returns buf. */
const char *loco_blas_describe(char *buf, size_t n);
/* loco_blas_describe, then the warning when there is one, each line prefixed by who. */
void loco_blas_say(FILE *f, const char *who);

/* ---- floating point ----
 * Flush-to-zero and denormals-are-zero (MXCSR) in the calling thread: a float below
 * 2^-126 counts as zero. Each thread that computes sets it first; the main thread's is set
 * before main, and threads inherit it. Returns 1 when both bits are set. */
void loco_fp_flush_denormals(void);
int loco_fp_flushing(void);

#endif
