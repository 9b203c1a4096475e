/* cpu: the CPU's features, the OpenBLAS kernel set and the floating-point mode. The
 * kernel choice is a pure function over two tables (what each kernel set of OpenBLAS
 * uses; which set loco wants for each kind of CPU); applying it is the one impure step,
 * done before main by the constructor at the bottom. */
#include "loco/cpu.h"

#include <cblas.h>
#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const loco_enum loco_vendor_names[] = {
    {"other", LOCO_VENDOR_OTHER, NULL},
    {"intel", LOCO_VENDOR_INTEL, NULL},
    {"amd", LOCO_VENDOR_AMD, NULL},
    {NULL, 0, NULL},
};

const loco_enum loco_vec_names[] = {
    {"SSE", LOCO_VEC_SSE, NULL},
    {"AVX", LOCO_VEC_AVX, NULL},
    {"AVX2 + FMA", LOCO_VEC_AVX2, NULL},
    {"AVX-512", LOCO_VEC_AVX512, NULL},
    {NULL, 0, NULL},
};

const loco_enum loco_blas_by_names[] = {
    {"openblas", LOCO_BLAS_BY_OPENBLAS, NULL},
    {"loco", LOCO_BLAS_BY_LOCO, NULL},
    {"user", LOCO_BLAS_BY_USER, NULL},
    {NULL, 0, NULL},
};

/* ---- CPU features ---- */

/* XCR0: which register states the OS saves on context switch; without them the
 * instructions fault even where cpuid lists them. Only valid when OSXSAVE is set. */
static uint64_t xcr0(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void vendor_and_model(loco_cpu *c) {
    unsigned a, b, cx, d;
    char v[13] = "";
    if (__get_cpuid(0, &a, &b, &cx, &d)) {
        memcpy(v, &b, 4), memcpy(v + 4, &d, 4), memcpy(v + 8, &cx, 4);
    }
    c->vendor = !strcmp(v, "GenuineIntel") ? LOCO_VENDOR_INTEL
              : !strcmp(v, "AuthenticAMD") || !strcmp(v, "HygonGenuine") ? LOCO_VENDOR_AMD
                                                                          : LOCO_VENDOR_OTHER;
    if (__get_cpuid(1, &a, &b, &cx, &d)) {
        int family = a >> 8 & 0xf, model = a >> 4 & 0xf;
        if (family == 0xf) family += a >> 20 & 0xff;
        if (family >= 6) model += (a >> 16 & 0xf) << 4;
        c->family = family, c->model = model;
    }
    unsigned regs[12];
    if (__get_cpuid(0x80000000, &a, &b, &cx, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                        &regs[4 * i + 3]);
        char s[49];
        memcpy(s, regs, 48);
        s[48] = '\0';
        char *p = s;
        while (*p == ' ') p++;
        size_t n = strlen(p);
        while (n > 0 && p[n - 1] == ' ') p[--n] = '\0';
        snprintf(c->brand, sizeof c->brand, "%s", p);
    }
}

/* the widest vector units the CPU has and the OS enables */
static loco_vec vector_units(void) {
    uint64_t x = xcr0();
    unsigned a, b, c1, d, b7 = 0, c7;
    if (!__get_cpuid(1, &a, &b, &c1, &d)) return LOCO_VEC_SSE;
    __get_cpuid_count(7, 0, &a, &b7, &c7, &d);   /* leaves b7 at 0 without leaf 7 */
    int avx = (c1 >> 28 & 1) && (x & 0x6) == 0x6;
    int avx2 = avx && (b7 >> 5 & 1) && (c1 >> 12 & 1);
    /* F, DQ, BW, VL (bits 16, 17, 30, 31); opmask and ZMM states (XCR0 bits 5-7) */
    unsigned need = 1u << 16 | 1u << 17 | 1u << 30 | 1u << 31;
    int avx512 = avx2 && (b7 & need) == need && (x & 0xe6) == 0xe6;
    return avx512 ? LOCO_VEC_AVX512 : avx2 ? LOCO_VEC_AVX2 : avx ? LOCO_VEC_AVX : LOCO_VEC_SSE;
}

static void cpu_units(loco_cpu *c) {
    memset(c, 0, sizeof *c);
    vendor_and_model(c);
    c->vec = vector_units();
    uint64_t x = xcr0();
    /* AMX TILECFG and TILEDATA (bits 17, 18) */
    int avx512_os = (x & 0xe6) == 0xe6, amx_os = (x & 0x60000) == 0x60000;
    unsigned a, b, cx, d;
    if (__get_cpuid_count(7, 1, &a, &b, &cx, &d)) c->avx512_bf16 = avx512_os && (a >> 5 & 1);
    if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) c->amx_bf16 = amx_os && (d >> 22 & 1);
}

void loco_cpu_detect(loco_cpu *c) {
    cpu_units(c);
    snprintf(c->isa, sizeof c->isa, "%s", dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
}

const char *loco_cpu_features(const loco_cpu *c, char *buf, size_t n) {
    snprintf(buf, n, "%s%s%s", c->avx512_bf16 ? "avx512_bf16" : "",
             c->avx512_bf16 && c->amx_bf16 ? " " : "", c->amx_bf16 ? "amx_bf16" : "");
    if (n > 0 && !buf[0]) snprintf(buf, n, "none");
    return buf;
}

const char *loco_cpu_name(const loco_cpu *c, char *buf, size_t n) {
    static const char *vendor[] = {"", "Intel ", "AMD "};
    snprintf(buf, n, "%s (%sfamily %d model %d, %s)", c->brand[0] ? c->brand : "unnamed CPU",
             vendor[c->vendor], c->family, c->model, loco_enum_name(loco_vec_names, (int)c->vec));
    return buf;
}

/* ---- the kernel set ---- */

/* OpenBLAS's x86-64 kernel sets (the names openblas_get_corename gives and
 * OPENBLAS_CORETYPE takes) and the vector units their kernels use */
static const struct {
    const char *name;
    loco_vec vec;
} kernel_sets[] = {
    {"Katmai", LOCO_VEC_SSE},        {"Coppermine", LOCO_VEC_SSE},  {"Northwood", LOCO_VEC_SSE},
    {"Prescott", LOCO_VEC_SSE},      {"Banias", LOCO_VEC_SSE},      {"Atom", LOCO_VEC_SSE},
    {"Core2", LOCO_VEC_SSE},         {"Penryn", LOCO_VEC_SSE},      {"Dunnington", LOCO_VEC_SSE},
    {"Nehalem", LOCO_VEC_SSE},       {"Athlon", LOCO_VEC_SSE},      {"Opteron", LOCO_VEC_SSE},
    {"Opteron_SSE3", LOCO_VEC_SSE},  {"Barcelona", LOCO_VEC_SSE},   {"Nano", LOCO_VEC_SSE},
    {"Bobcat", LOCO_VEC_SSE},        {"Sandybridge", LOCO_VEC_AVX}, {"Bulldozer", LOCO_VEC_AVX},
    {"Piledriver", LOCO_VEC_AVX},    {"Steamroller", LOCO_VEC_AVX}, {"Excavator", LOCO_VEC_AVX},
    {"Haswell", LOCO_VEC_AVX2},      {"Zen", LOCO_VEC_AVX2},        {"SkylakeX", LOCO_VEC_AVX512},
    {"Cooperlake", LOCO_VEC_AVX512}, {"SapphireRapids", LOCO_VEC_AVX512},
};

/* The set loco selects for a CPU's units when OpenBLAS fell below them. Sets of one row
 * of units run the same sgemm kernels, so any of them counts as right: on Zen 4, bench
 * step measured OpenBLAS's own Cooperlake, SkylakeX, Zen and Haswell within 5% of each
 * other. SkylakeX rather than Cooperlake (its bf16 additions are for sbgemm, which loco
 * does not call): OpenBLAS 0.3.21 cannot select Cooperlake by name. */
static const struct {
    int vendor;                  /* loco_vendor, or -1 for any */
    loco_vec vec;
    const char *set;
} best_sets[] = {
    {-1, LOCO_VEC_AVX512, "SkylakeX"},
    {LOCO_VENDOR_AMD, LOCO_VEC_AVX2, "Zen"},
    {-1, LOCO_VEC_AVX2, "Haswell"},
    {-1, LOCO_VEC_AVX, "Sandybridge"},
};

int loco_blas_kernel_vec(const char *name) {
    for (size_t i = 0; name && i < sizeof kernel_sets / sizeof kernel_sets[0]; i++)
        if (!strcasecmp(name, kernel_sets[i].name)) return (int)kernel_sets[i].vec;
    return -1;
}

static const char *best_set(loco_vendor v, loco_vec vec) {
    for (size_t i = 0; i < sizeof best_sets / sizeof best_sets[0]; i++)
        if ((best_sets[i].vendor < 0 || best_sets[i].vendor == (int)v) && best_sets[i].vec == vec)
            return best_sets[i].set;
    return NULL;
}

static const char *vec_name(int v) { return loco_enum_name(loco_vec_names, v); }

void loco_blas_choose(const loco_blas_facts *f, loco_blas_choice *o) {
    memset(o, 0, sizeof *o);
    o->best = best_set(f->vendor, f->vec);
    o->by = !f->coretype ? LOCO_BLAS_BY_OPENBLAS
          : f->loco_picked ? LOCO_BLAS_BY_LOCO : LOCO_BLAS_BY_USER;
    o->detected = o->by == LOCO_BLAS_BY_OPENBLAS ? f->running
                : o->by == LOCO_BLAS_BY_LOCO ? f->loco_picked : NULL;
    int in_use = loco_blas_kernel_vec(f->running);
    /* a set loco does not know (a newer OpenBLAS's) is that OpenBLAS's business */
    if (in_use < 0) return;
    char *w = o->warning;
    size_t n = sizeof o->warning;
    if (in_use > (int)f->vec) {
        snprintf(w, n, "OpenBLAS runs its %s kernels, which use %s; this CPU has %s only: "
                 "its products will fault. Unset OPENBLAS_CORETYPE", f->running,
                 vec_name(in_use), vec_name(f->vec));
        return;
    }
    if (!o->best || in_use == (int)f->vec) return;
    switch (o->by) {
    case LOCO_BLAS_BY_OPENBLAS:
        if (f->automatic) {
            o->reexec = o->best;
        } else {
            snprintf(w, n, "OpenBLAS picked its %s kernels (%s) on this %s CPU and "
                     "LOCO_BLAS_AUTO=0 keeps them: unset LOCO_BLAS_AUTO, or set "
                     "OPENBLAS_CORETYPE=%s", f->running, vec_name(in_use), vec_name(f->vec),
                     o->best);
        }
        break;
    case LOCO_BLAS_BY_LOCO:
        snprintf(w, n, "this OpenBLAS did not take OPENBLAS_CORETYPE=%s (it lacks that kernel "
                 "set, or was built for one CPU) and runs its %s kernels (%s) on this %s CPU: "
                 "an OpenBLAS built with DYNAMIC_ARCH runs at full speed",
                 f->coretype, f->running, vec_name(in_use), vec_name(f->vec));
        break;
    case LOCO_BLAS_BY_USER:
        snprintf(w, n, "OPENBLAS_CORETYPE=%s runs OpenBLAS's %s kernels (%s) on this %s CPU: "
                 "set OPENBLAS_CORETYPE=%s, or unset it and loco chooses", f->coretype,
                 f->running, vec_name(in_use), vec_name(f->vec), o->best);
        break;
    }
}

/* ---- applying it, once, before main ---- */

static loco_blas_state blas_state;
static char blas_detected[32];   /* what OpenBLAS picked, kept across the re-execution */

static void blas_facts(loco_blas_facts *f) {
    loco_cpu c;
    cpu_units(&c);
    f->vendor = c.vendor, f->vec = c.vec;
    f->running = openblas_get_corename();
    f->coretype = getenv("OPENBLAS_CORETYPE");
    if (f->coretype && !f->coretype[0]) f->coretype = NULL;
    f->loco_picked = f->coretype ? getenv("LOCO_BLAS_DETECTED") : NULL;
    const char *autom = getenv("LOCO_BLAS_AUTO");
    f->automatic = !(autom && !strcmp(autom, "0"));
    /* for the tests of the re-execution on a CPU whose model OpenBLAS knows: the kernel set
     * to take as OpenBLAS's own pick (docs/design.md) */
    const char *pretend = getenv("LOCO_BLAS_PRETEND");
    if (!f->coretype && pretend && pretend[0]) f->running = pretend;
}

/* Sets OPENBLAS_CORETYPE and replaces the process with a fresh copy of the program, which
 * OpenBLAS then initialises with that kernel set. Returns only when that cannot be done. */
static void reexec(const loco_blas_facts *f, char **argv) {
    const char *preload = getenv("LD_PRELOAD");
    char *w = blas_state.choice.warning;
    size_t n = sizeof blas_state.choice.warning;
    /* under valgrind the new program would run outside it */
    if (!argv || (preload && strstr(preload, "vgpreload"))) {
        snprintf(w, n, "OpenBLAS picked its %s kernels, below this CPU's %s, and loco did not "
                 "restart itself (%s): set OPENBLAS_CORETYPE=%s", f->running, vec_name(f->vec),
                 argv ? "under valgrind" : "no argv", blas_state.choice.reexec);
        return;
    }
    setenv("LOCO_BLAS_DETECTED", f->running, 1);
    setenv("OPENBLAS_CORETYPE", blas_state.choice.reexec, 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    int err = errno;
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("LOCO_BLAS_DETECTED");
    snprintf(w, n, "OpenBLAS picked its %s kernels, below this CPU's %s, and loco could not "
             "restart itself (%s): set OPENBLAS_CORETYPE=%s", f->running, vec_name(f->vec),
             strerror(err), blas_state.choice.reexec);
}

static void blas_start(char **argv) {
    loco_blas_facts f;
    blas_facts(&f);
    loco_blas_choose(&f, &blas_state.choice);
    blas_state.core = f.running;   /* OpenBLAS's, unless a test pretends */
    if (blas_state.choice.reexec) reexec(&f, argv);
    blas_state.config = openblas_get_config();
    /* the facts' strings live in the environment, which a later setenv may move */
    if (blas_state.choice.detected) {
        snprintf(blas_detected, sizeof blas_detected, "%s", blas_state.choice.detected);
        blas_state.choice.detected = blas_detected;
    }
    blas_state.choice.reexec = NULL;
}

const loco_blas_state *loco_blas(void) {
    if (!blas_state.core) blas_start(NULL);
    return &blas_state;
}

const char *loco_blas_describe(char *buf, size_t n) {
    const loco_blas_state *s = loco_blas();
    loco_cpu c;
    cpu_units(&c);
    char who[128];
    switch (s->choice.by) {
    case LOCO_BLAS_BY_OPENBLAS: snprintf(who, sizeof who, "OpenBLAS's own pick"); break;
    case LOCO_BLAS_BY_LOCO:
        snprintf(who, sizeof who, "chosen by loco for %s; OpenBLAS picked %s",
                 vec_name(c.vec), s->choice.detected);
        break;
    case LOCO_BLAS_BY_USER: snprintf(who, sizeof who, "OPENBLAS_CORETYPE as set"); break;
    }
    /* "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64": name, version */
    int len = 0;
    sscanf(s->config, "%*s %*s%n", &len);
    snprintf(buf, n, "BLAS: %.*s, kernels %s (%s); oneDNN ISA %s", len ? len : 8, s->config,
             s->core, who, dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
    return buf;
}

void loco_blas_say(FILE *f, const char *who) {
    char line[512];
    fprintf(f, "%s%s\n", who, loco_blas_describe(line, sizeof line));
    if (loco_blas()->choice.warning[0])
        fprintf(f, "%swarning: %s\n", who, loco_blas()->choice.warning);
}

/* ---- floating point ---- */

enum { MXCSR_DAZ = 1 << 6, MXCSR_FTZ = 1 << 15 };

void loco_fp_flush_denormals(void) { _mm_setcsr(_mm_getcsr() | MXCSR_DAZ | MXCSR_FTZ); }

int loco_fp_flushing(void) {
    return (_mm_getcsr() & (MXCSR_DAZ | MXCSR_FTZ)) == (MXCSR_DAZ | MXCSR_FTZ);
}

/* Before main, in every program linked with loco (./loco, the tests, the fuzz targets):
 * shared libraries are initialised first, so OpenBLAS has made its pick when this runs.
 * glibc hands constructors the program's argv. */
__attribute__((constructor)) static void cpu_start(int argc, char **argv, char **envp) {
    (void)argc, (void)envp;
    loco_fp_flush_denormals();
    blas_start(argv);
}
