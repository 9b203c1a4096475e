/* A stand-in for the part of Criterion's API loco's tests use, for the ThreadSanitizer
 * build only: Criterion itself aborts at start-up under TSan (Snaipe/Criterion#274, its
 * arena allocator collides with TSan's memory layout). Same test sources, a plain
 * runner (runner.c) that forks one process per test. Messages must start with a string
 * literal, as they all do. */
#ifndef LOCO_CRITERION_SHIM_H
#define LOCO_CRITERION_SHIM_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct shim_test *next;
};

void shim_register(struct shim_test *t);
/* a skip: said and counted as one, never as a pass */
void shim_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define SHIM_SKIPPED 77
#define cr_skip_test(...) shim_skip("" __VA_ARGS__)
void shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Test(suite, name, .options) defines the test and registers it before main */
#define Test(suite, name, ...)                                                             \
    static void suite##_##name(void);                                                      \
    static struct shim_test suite##_##name##_entry = {#suite, #name, suite##_##name, 0};   \
    __attribute__((constructor)) static void suite##_##name##_register(void) {             \
        shim_register(&suite##_##name##_entry);                                            \
    }                                                                                      \
    static void suite##_##name(void)

#define cr_assert(cond, ...) \
    ((cond) ? (void)0 : shim_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__))
#define cr_expect(cond, ...) cr_assert(cond, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...) cr_assert(fabs((double)(a) - (double)(b)) <= (eps), __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert_eq(a, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_assert_str_eq(a, b, __VA_ARGS__)

#endif
