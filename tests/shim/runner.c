/* The runner of the Criterion stand-in (see criterion/criterion.h): every test in its
 * own forked process, as Criterion does, so one crash or failed assert fails one test. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criterion/criterion.h"

static struct shim_test *tests;

void shim_register(struct shim_test *t) {
    t->next = tests;
    tests = t;
}

void shim_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fputs("  ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    exit(1);
}

static int run_one(const struct shim_test *t) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        t->fn();
        exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    fprintf(stderr, "[%s] %s::%s\n", ok ? "PASS" : "FAIL", t->suite, t->name);
    return ok;
}

int main(int argc, char **argv) {
    (void)argc, (void)argv; /* Criterion's flags (--jobs ...) are accepted and ignored */
    int run = 0, passed = 0;
    for (struct shim_test *t = tests; t; t = t->next) {
        run++;
        passed += run_one(t);
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", run, passed,
            run - passed);
    return passed == run ? 0 : 1;
}
