/* Driving the loco binary as a user runs it, for the tests of the command line: a scratch
 * directory per test, runs with their exit codes and output, files read back. Runs the
 * binary this build makes (LOCO_BIN, set by the Makefile) from the repository root. */
#ifndef LOCO_TESTS_CLI_H
#define LOCO_TESTS_CLI_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loco/modelfile.h"
#include "loco/model.h"

#ifndef LOCO_BIN
#define LOCO_BIN "./loco"
#endif

extern char **environ;

/* Generous: sanitizer builds run the binary ten or more times slower. */
enum { RUN_TIMEOUT_S = 120 };

/* One test's scratch directory and the outcome of the last run in it. */
typedef struct {
    char dir[64];
    int status;        /* exit code; 128 + N when killed by signal N */
    char *out, *err;   /* what it printed on stdout and stderr */
    char out_path[96], err_path[96];
    char *paths[64];   /* made by in_dir(), freed by cli_close() */
    int npaths;
} cli;

static inline void cli_open(cli *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/loco-main-XXXXXX");
    cr_assert_not_null(mkdtemp(c->dir), "mkdtemp failed");
    snprintf(c->out_path, sizeof c->out_path, "%s/stdout", c->dir);
    snprintf(c->err_path, sizeof c->err_path, "%s/stderr", c->dir);
}

static inline int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void cli_close(cli *c) {
    free(c->out);
    free(c->err);
    nftw(c->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (int i = 0; i < c->npaths; i++) free(c->paths[i]);
}

/* name inside the test's directory, until cli_close() */
static inline const char *in_dir(cli *c, const char *name) {
    cr_assert_lt(c->npaths, 64, "too many paths");
    char *p = malloc(strlen(c->dir) + strlen(name) + 2);
    cr_assert_not_null(p, "out of memory");
    sprintf(p, "%s/%s", c->dir, name);
    return c->paths[c->npaths++] = p;
}

/* 1 when the two files hold the same bytes (both must exist) */
static inline int same_bytes(const char *p, const char *q) {
    FILE *a = fopen(p, "rb"), *b = fopen(q, "rb");
    cr_assert(a && b, "%s or %s missing", p, q);
    int same = 1, x, y;
    do {
        x = getc(a), y = getc(b);
        if (x != y) same = 0;
    } while (same && x != EOF);
    fclose(a), fclose(b);
    return same;
}

/* the whole file, NUL-terminated; NULL when it cannot be read */
static inline char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (cap - n < 4096) b = realloc(b, cap = 2 * cap + 4096);
        cr_assert_not_null(b, "out of memory");
        got = fread(b + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    fclose(f);
    b[n] = '\0';
    return b;
}

static inline void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n, "cannot write %s", path);
    fclose(f);
}

/* Starts LOCO_BIN with args (NULL-terminated, without argv[0]); stdout and stderr go to
 * files in the test's directory, stdin is /dev/null. */
static inline pid_t cli_start(cli *c, const char *const *args) {
    const char *argv[64] = {LOCO_BIN};
    int n = 1;
    while (args[n - 1]) {
        cr_assert_lt(n, 63, "too many arguments");
        argv[n] = args[n - 1];
        n++;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, c->out_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, 2, c->err_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid;
    int rc = posix_spawn(&pid, LOCO_BIN, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start " LOCO_BIN " (run from the repository root): %s",
                 strerror(rc));
    return pid;
}

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, ms % 1000 * 1000000L};
    nanosleep(&t, NULL);
}

/* 1 when pid has ended (its status in c->status), 0 while it runs */
static inline int cli_poll(cli *c, pid_t pid) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    cr_assert_neq(r, -1, "waitpid failed");
    if (r == 0) return 0;
    c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 1;
}

/* A sanitizer build of the binary reports into the stderr we captured, where the grep of
 * `make sanitize` cannot see it: fail here instead. */
static inline void check_no_sanitizer_report(const cli *c) {
    const char *reports[] = {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                             "ERROR: LeakSanitizer", "runtime error:"};
    for (size_t i = 0; i < sizeof reports / sizeof reports[0]; i++)
        cr_assert_null(strstr(c->err, reports[i]), "sanitizer report from loco:\n%s", c->err);
}

/* Waits for pid (killing it after the timeout), then reads what it printed. */
static inline void cli_wait(cli *c, pid_t pid) {
    double deadline = now_s() + RUN_TIMEOUT_S;
    while (!cli_poll(c, pid)) {
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            cr_assert(0, "loco did not end within %d s", RUN_TIMEOUT_S);
        }
        sleep_ms(5);
    }
    free(c->out);
    free(c->err);
    c->out = slurp(c->out_path);
    c->err = slurp(c->err_path);
    cr_assert(c->out && c->err, "lost the output files");
    check_no_sanitizer_report(c);
}

/* Runs loco with the arguments (NULL-terminated) to the end; returns its exit status. */
static inline int run(cli *c, ...) {
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, c);
    do {
        cr_assert_lt(n, 64, "too many arguments");
        args[n] = va_arg(ap, const char *);
    } while (args[n++]);
    va_end(ap);
    cli_wait(c, cli_start(c, args));
    return c->status;
}

static inline void expect_err(const cli *c, const char *text) {
    cr_assert_not_null(strstr(c->err, text), "stderr lacks '%s':\n%s", text, c->err);
}

static inline void expect_out(const cli *c, const char *text) {
    cr_assert_not_null(strstr(c->out, text), "stdout lacks '%s':\n%s", text, c->out);
}

static inline void expect_file_has(const char *path, const char *text) {
    char *s = slurp(path);
    cr_assert_not_null(s, "%s is missing", path);
    cr_assert_not_null(strstr(s, text), "%s lacks '%s':\n%.2000s", path, text, s);
    free(s);
}

/* A short run of configs/tiny.ini into dir/run: a few tenths of a second. */
static inline const char *train_tiny(cli *c) {
    const char *out = in_dir(c, "run");
    int rc = run(c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=20", "--set",
                 "eval.every=10", "--set", "eval.batches=2", "--out", out, NULL);
    cr_assert_eq(rc, 0, "train failed (%d):\n%s", rc, c->err);
    return in_dir(c, "run/model.bin");
}

/* An untrained byte-level model written directly, with the given stored config. */
static inline const char *write_model(cli *c, const char *name, const char *config) {
    loco_shape s = {.V = 256, .Vp = 256, .maxT = 16, .L = 1, .NH = 2, .C = 16};
    loco_model m;
    loco_err e;
    cr_assert_eq(loco_model_init(&m, &s, &e), 0, "%s", e.msg);
    float *params = loco_alloc(m.nparams * sizeof(float));
    cr_assert_not_null(params, "out of memory");
    loco_model_init_params(&m, params, 1);
    const char *path = in_dir(c, name);
    cr_assert_eq(loco_model_write(path, &m, params, config, &e), 0, "%s", e.msg);
    free(params);
    return path;
}

/* n bytes of English text in the test's directory */
static inline const char *write_text(cli *c, const char *name, size_t n) {
    const char *line = "It was the best of times, it was the worst of times; ";
    char *b = malloc(n);
    cr_assert_not_null(b, "out of memory");
    for (size_t i = 0; i < n; i++) b[i] = line[i % strlen(line)];
    const char *path = in_dir(c, name);
    write_file(path, b, n);
    free(b);
    return path;
}

static inline double json_number(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    cr_assert_not_null(p, "'%s' not in %s", key, json);
    return strtod(p + strlen(pat), NULL);
}


/* waits until file has text (the process pid must not end first) */
static inline void await_text(cli *c, pid_t pid, const char *file, const char *text) {
    double deadline = now_s() + RUN_TIMEOUT_S;
    for (;;) {
        char *m = slurp(file);
        int there = m && strstr(m, text);
        free(m);
        if (there) return;
        if (cli_poll(c, pid) || now_s() > deadline) {
            kill(pid, SIGKILL);
            cr_assert(0, "no '%s' in %s before the run ended (%d)", text, file, c->status);
        }
        sleep_ms(10);
    }
}

#endif
