/* The runner of the Criterion stand-in (see criterion/criterion.h): every test in its
 * own forked process, as Criterion does, so one crash or failed assert fails one test. */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void shim_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("  skipped: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(SHIM_SKIPPED);
}

/* 1 passed, 0 failed, -1 skipped */
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
    int skipped = WIFEXITED(status) && WEXITSTATUS(status) == SHIM_SKIPPED;
    fprintf(stderr, "[%s] %s::%s\n", ok ? "PASS" : skipped ? "SKIP" : "FAIL", t->suite, t->name);
    return skipped ? -1 : ok;
}

/* Criterion's --filter PATTERN (on "suite/name", extended globs such as "@(a|b)/x*") is honoured;
 * its other flags (--jobs ...) are accepted and ignored. */
static const char *filter_of(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--filter")) return argv[i + 1];
    return NULL;
}

int main(int argc, char **argv) {
    const char *filter = filter_of(argc, argv);
    int run = 0, passed = 0, skipped = 0;
    for (struct shim_test *t = tests; t; t = t->next) {
        char name[256];
        snprintf(name, sizeof name, "%s/%s", t->suite, t->name);
        if (filter && fnmatch(filter, name, FNM_EXTMATCH) != 0) continue;
        run++;
        int r = run_one(t);
        passed += r > 0;
        skipped += r < 0;
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Skipped: %d | Failing: %d\n", run,
            passed, skipped, run - passed - skipped);
    return passed + skipped == run ? 0 : 1;
}
