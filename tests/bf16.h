/* Shared by the tests that run bf16 products: whether this CPU runs them (as loco itself
 * decides: the instructions present and oneDNN allowed to use them, so that
 * ONEDNN_MAX_CPU_ISA=AVX512_CORE counts as "no bf16"), and a skip that says why. */
#ifndef LOCO_TESTS_BF16_H
#define LOCO_TESTS_BF16_H

#include <stdio.h>
#include <stdlib.h>

#include "loco/mm.h"

/* 1 when model.precision = bf16 would be accepted here */
static inline int loco_test_has_bf16(void) {
    loco_precision p;
    loco_err e;
    return loco_precision_resolve(LOCO_PREC_BF16, &p, NULL, 0, &e) == 0 && p == LOCO_PREC_BF16;
}

/* The bf16 tests run only where the CPU has bf16 products. */
#define SKIP_WITHOUT_BF16()                                                                   \
    do {                                                                                      \
        if (!loco_test_has_bf16())                                                            \
            cr_skip_test("this CPU has neither AVX512-BF16 nor AMX-BF16 that oneDNN will use: " \
                         "no bf16 products");                                                 \
    } while (0)

#endif
