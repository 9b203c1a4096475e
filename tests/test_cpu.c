/* cpu: the OpenBLAS kernel choice case by case (CPU units, vendor, OpenBLAS's pick, the
 * user's setting), the kernel set this process runs, and flush-to-zero. */
#include <criterion/criterion.h>
#include <cblas.h>
#include <pthread.h>
#include <string.h>
#include <xmmintrin.h>

#include "loco/cpu.h"

enum { INTEL = LOCO_VENDOR_INTEL, AMD = LOCO_VENDOR_AMD, OTHER = LOCO_VENDOR_OTHER };
enum { SSE = LOCO_VEC_SSE, AVX = LOCO_VEC_AVX, AVX2 = LOCO_VEC_AVX2, AVX512 = LOCO_VEC_AVX512 };

/* One row: the facts, and what must come of them. */
typedef struct {
    const char *what;
    int vendor, vec;
    const char *running, *coretype, *loco_picked;
    int automatic;
    const char *reexec;      /* NULL: keep */
    int by;
    const char *detected;
    const char *warning;     /* a part of it, or NULL for none */
} row;

static const row rows[] = {
    {"Emerald Rapids: OpenBLAS 0.3.21 falls back to SSE3", INTEL, AVX512, "Prescott", NULL,
     NULL, 1, "SkylakeX", LOCO_BLAS_BY_OPENBLAS, "Prescott", NULL},
    {"Sapphire Rapids: OpenBLAS's own AVX-512 pick", INTEL, AVX512, "SkylakeX", NULL, NULL, 1,
     NULL, LOCO_BLAS_BY_OPENBLAS, "SkylakeX", NULL},
    {"Zen 4: Cooperlake is of the AVX-512 row", AMD, AVX512, "Cooperlake", NULL, NULL, 1,
     NULL, LOCO_BLAS_BY_OPENBLAS, "Cooperlake", NULL},
    {"Zen 3: Zen", AMD, AVX2, "Zen", NULL, NULL, 1, NULL, LOCO_BLAS_BY_OPENBLAS, "Zen", NULL},
    {"an AMD AVX2 CPU OpenBLAS does not know", AMD, AVX2, "Barcelona", NULL, NULL, 1, "Zen",
     LOCO_BLAS_BY_OPENBLAS, "Barcelona", NULL},
    {"a newer AMD with AVX-512", AMD, AVX512, "Barcelona", NULL, NULL, 1, "SkylakeX",
     LOCO_BLAS_BY_OPENBLAS, "Barcelona", NULL},
    {"an Intel AVX2 CPU OpenBLAS does not know", INTEL, AVX2, "Prescott", NULL, NULL, 1,
     "Haswell", LOCO_BLAS_BY_OPENBLAS, "Prescott", NULL},
    {"an AVX CPU", OTHER, AVX, "Nehalem", NULL, NULL, 1, "Sandybridge", LOCO_BLAS_BY_OPENBLAS,
     "Nehalem", NULL},
    {"an SSE-only CPU: nothing better", INTEL, SSE, "Prescott", NULL, NULL, 1, NULL,
     LOCO_BLAS_BY_OPENBLAS, "Prescott", NULL},
    {"names without case", INTEL, AVX512, "skylakex", NULL, NULL, 1, NULL,
     LOCO_BLAS_BY_OPENBLAS, "skylakex", NULL},
    {"a kernel set loco does not know is left alone", INTEL, AVX512, "GraniteRapids", NULL,
     NULL, 1, NULL, LOCO_BLAS_BY_OPENBLAS, "GraniteRapids", NULL},
    {"the user's setting is kept, and warned of", INTEL, AVX512, "Prescott", "Prescott", NULL, 1,
     NULL, LOCO_BLAS_BY_USER, NULL, "set OPENBLAS_CORETYPE=SkylakeX"},
    {"the user's right setting: no warning", INTEL, AVX512, "SkylakeX", "skylakex", NULL, 1,
     NULL, LOCO_BLAS_BY_USER, NULL, NULL},
    {"the user's setting above the CPU faults", INTEL, AVX2, "SkylakeX", "SkylakeX", NULL, 1,
     NULL, LOCO_BLAS_BY_USER, NULL, "will fault"},
    {"after loco's re-execution", INTEL, AVX512, "SkylakeX", "SkylakeX", "Prescott", 1, NULL,
     LOCO_BLAS_BY_LOCO, "Prescott", NULL},
    {"OpenBLAS did not take loco's setting: no second re-execution", INTEL, AVX512, "Prescott",
     "SkylakeX", "Prescott", 1, NULL, LOCO_BLAS_BY_LOCO, "Prescott", "did not take"},
    {"LOCO_BLAS_AUTO=0 only reports", INTEL, AVX512, "Prescott", NULL, NULL, 0, NULL,
     LOCO_BLAS_BY_OPENBLAS, "Prescott", "LOCO_BLAS_AUTO=0"},
};

static void expect_str(const char *got, const char *want, const char *what, const char *field) {
    if (!want)
        cr_assert_null(got, "%s: %s is %s, want none", what, field, got);
    else
        cr_assert(got && !strcmp(got, want), "%s: %s is %s, want %s", what, field,
                  got ? got : "none", want);
}

Test(cpu, the_kernel_choice_case_by_case) {
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row *r = &rows[i];
        loco_blas_facts f = {.vendor = (loco_vendor)r->vendor, .vec = (loco_vec)r->vec,
                             .running = r->running, .coretype = r->coretype,
                             .loco_picked = r->loco_picked, .automatic = r->automatic};
        loco_blas_choice c;
        loco_blas_choose(&f, &c);
        expect_str(c.reexec, r->reexec, r->what, "the re-execution");
        expect_str(c.detected, r->detected, r->what, "OpenBLAS's pick");
        cr_assert_eq((int)c.by, r->by, "%s: chosen by %s", r->what,
                     loco_enum_name(loco_blas_by_names, (int)c.by));
        if (r->warning)
            cr_assert(strstr(c.warning, r->warning), "%s: warning '%s' lacks '%s'", r->what,
                      c.warning, r->warning);
        else
            cr_assert(c.warning[0] == '\0', "%s: warns '%s'", r->what, c.warning);
    }
}

/* Whatever the vendor and units, loco's choice is a kernel set of exactly those units. */
Test(cpu, every_choice_uses_the_units_it_is_chosen_for) {
    for (int v = OTHER; v <= AMD; v++)
        for (int vec = AVX; vec <= AVX512; vec++) {
            loco_blas_facts f = {.vendor = (loco_vendor)v, .vec = (loco_vec)vec,
                                 .running = "Prescott", .automatic = 1};
            loco_blas_choice c;
            loco_blas_choose(&f, &c);
            cr_assert_not_null(c.reexec, "vendor %d units %d: a choice", v, vec);
            cr_assert_eq(loco_blas_kernel_vec(c.reexec), vec, "%s for units %d", c.reexec, vec);
        }
    cr_assert_eq(loco_blas_kernel_vec("NoSuchCore"), -1);
    cr_assert_eq(loco_blas_kernel_vec(NULL), -1);
}

/* This process (the test runner went through the same start as ./loco): the kernel set in
 * use is the one OpenBLAS reports, and on a CPU with AVX2 or AVX-512 it is not a fallback
 * below them, unless the user set one, which then is warned of. */
Test(cpu, the_kernel_in_use_is_not_a_fallback) {
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    const loco_blas_state *s = loco_blas();
    const char *pretend = getenv("LOCO_BLAS_PRETEND");
    if (!pretend || s->choice.by != LOCO_BLAS_BY_OPENBLAS)
        cr_assert_str_eq(s->core, openblas_get_corename(), "the state says what runs");
    int in_use = loco_blas_kernel_vec(openblas_get_corename());
    char name[160];
    loco_cpu_name(&cpu, name, sizeof name);
    if (s->choice.by == LOCO_BLAS_BY_USER) {
        cr_assert_eq(in_use >= 0 && in_use < (int)cpu.vec && cpu.vec >= LOCO_VEC_AVX,
                     s->choice.warning[0] != '\0', "a user's set below the CPU is warned of "
                     "(%s on %s: '%s')", s->core, name, s->choice.warning);
    } else if (cpu.vec >= LOCO_VEC_AVX2) {
        cr_assert_geq(in_use, (int)cpu.vec, "kernels %s on %s (OpenBLAS picked %s)", s->core,
                      name, s->choice.detected);
    }
    char line[512];
    loco_blas_describe(line, sizeof line);
    cr_assert(strstr(line, s->core) && strstr(line, "OpenBLAS 0."), "%s", line);
}

static void *mxcsr_of_new_thread(void *arg) {
    *(unsigned *)arg = _mm_getcsr();
    return NULL;
}

/* The main thread flushes from the start; threads inherit it (POSIX), and a subnormal
 * product comes out zero. */
Test(cpu, the_main_thread_flushes_denormals_and_threads_inherit_it) {
    cr_assert(loco_fp_flushing(), "set before main: MXCSR %#x", _mm_getcsr());
    volatile float tiny = 1e-30f, scale = 1e-10f;
    cr_assert_eq(tiny * scale, 0.0f, "1e-40 is subnormal: flushed");
    volatile float sub = 1e-39f, big = 1e10f;
    cr_assert_eq(sub * big, 0.0f, "a subnormal input counts as zero (DAZ)");
    unsigned csr = 0;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, mxcsr_of_new_thread, &csr), 0);
    pthread_join(t, NULL);
    cr_assert_eq(csr & 0x8040, 0x8040, "the new thread's MXCSR %#x", csr);
    _mm_setcsr(_mm_getcsr() & ~0x8040u);
    cr_assert(!loco_fp_flushing(), "cleared");
    loco_fp_flush_denormals();
    cr_assert(loco_fp_flushing(), "set again");
}
