#include <criterion/criterion.h>
#include <float.h>

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/clock.h"
#include "loco/outer.h"
#include "loco/config.h"
#include "loco/data.h"
#include "loco/hetero.h"

/* ---- helpers ---- */

/* Writes text to a fresh file in /tmp; path receives its name. */
static void temp_file(const char *text, char *path, size_t n) {
    snprintf(path, n, "/tmp/loco_test_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Every needle must be in msg. */
static void expect_has(const char *msg, const char *a, const char *b, const char *c) {
    const char *needles[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (needles[i]) cr_expect(strstr(msg, needles[i]), "'%s' not in: %s", needles[i], msg);
}

static int same_real(double a, double b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Every field, reals bit for bit. */
static void expect_same(const loco_config *a, const loco_config *b) {
    cr_expect_eq(a->run.seed, b->run.seed);
    cr_expect_eq(a->run.workers, b->run.workers);
    cr_expect_eq(a->model.layers, b->model.layers);
    cr_expect_eq(a->model.heads, b->model.heads);
    cr_expect_eq(a->model.dim, b->model.dim);
    cr_expect_eq(a->model.seq_len, b->model.seq_len);
    cr_expect_eq(a->model.vocab, b->model.vocab);
    cr_expect_str_eq(a->data.path, b->data.path);
    cr_expect_eq(a->data.format, b->data.format);
    cr_expect_eq(a->data.block, b->data.block);
    cr_expect_eq(a->data.val_every, b->data.val_every);
    cr_expect_eq(a->train.batch, b->train.batch);
    cr_expect_eq(a->train.steps, b->train.steps);
    cr_expect_eq(a->train.warmup, b->train.warmup);
    cr_expect(same_real(a->train.lr, b->train.lr), "lr %.17g %.17g", a->train.lr, b->train.lr);
    cr_expect(same_real(a->train.lr_min, b->train.lr_min), "lr_min");
    cr_expect(same_real(a->train.weight_decay, b->train.weight_decay), "weight_decay");
    cr_expect(same_real(a->train.grad_clip, b->train.grad_clip), "grad_clip");
    cr_expect(same_real(a->train.beta1, b->train.beta1), "beta1");
    cr_expect(same_real(a->train.beta2, b->train.beta2), "beta2");
    cr_expect(same_real(a->train.eps, b->train.eps), "eps %.17g %.17g", a->train.eps,
              b->train.eps);
    cr_expect_eq(a->eval.every, b->eval.every);
    cr_expect_eq(a->eval.batches, b->eval.batches);
}

/* Loads text as "configs/x.ini", expecting failure; the message must name the place. */
static void expect_load_error(const char *text, int line, const char *k, const char *what) {
    loco_config c, before;
    loco_err e = {{0}};
    char where[64];
    loco_config_default(&c);
    before = c;
    cr_assert_eq(loco_config_load_string(&c, text, "configs/x.ini", &e), -1, "accepted: %s", text);
    snprintf(where, sizeof where, "configs/x.ini:%d: ", line);
    expect_has(e.msg, where, k, what);
    /* a failed load changes nothing */
    cr_expect(memcmp(&c, &before, sizeof c) == 0, "config changed by a failed load: %s", text);
}

/* The text f received, as a malloc'd string. */
static char *capture_write(const loco_config *c, int *rc) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert(f);
    *rc = loco_config_write(c, f);
    fclose(f);
    return buf;
}

/* ---- defaults and good input ---- */

Test(config, defaults_match_table) {
    loco_config c;
    loco_err e = {{0}};
    loco_config_default(&c);
    cr_expect_eq(c.run.seed, 1);
    cr_expect_eq(c.run.workers, 1);
    cr_expect_eq(c.model.layers, 4);
    cr_expect_eq(c.model.heads, 4);
    cr_expect_eq(c.model.dim, 256);
    cr_expect_eq(c.model.seq_len, 128);
    cr_expect_eq(c.model.vocab, 256);
    cr_expect_str_eq(c.data.path, "data/corpus.txt");
    cr_expect_eq(c.data.format, LOCO_FORMAT_TEXT);
    cr_expect_eq(c.data.block, 65536);
    cr_expect_eq(c.data.val_every, 20);
    cr_expect_eq(c.train.batch, 8);
    cr_expect_eq(c.train.steps, 1000);
    cr_expect_eq(c.train.warmup, 100);
    cr_expect(same_real(c.train.lr, 1e-3));
    cr_expect(same_real(c.train.lr_min, 1e-4));
    cr_expect(same_real(c.train.weight_decay, 0.1));
    cr_expect(same_real(c.train.grad_clip, 1.0));
    cr_expect(same_real(c.train.beta1, 0.9));
    cr_expect(same_real(c.train.beta2, 0.95));
    cr_expect(same_real(c.train.eps, 1e-8));
    cr_expect_eq(c.eval.every, 100);
    cr_expect_eq(c.eval.batches, 8);
    cr_expect_eq(loco_config_validate(&c, &e), 0, "%s", e.msg);
}

Test(config, good_file_applies) {
    char path[64];
    temp_file("; a comment\n# another\n\n[model]\ndim = 384\nheads: 6\n"
              "[data]\npath = /data/shard 01.bin\nformat = llmc ; inline comment\n"
              "[train]\r\nlr = 3e-4\r\nsteps = 1099511627776\n[run]\nseed = 0\n",
              path, sizeof path);
    loco_config c;
    loco_err e = {{0}};
    loco_config_default(&c);
    int rc = loco_config_load_file(&c, path, &e);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_expect_eq(c.model.dim, 384);
    cr_expect_eq(c.model.heads, 6);
    cr_expect_str_eq(c.data.path, "/data/shard 01.bin");
    cr_expect_eq(c.data.format, LOCO_FORMAT_LLMC);
    cr_expect(same_real(c.train.lr, 3e-4));
    cr_expect_eq(c.train.steps, 1099511627776L);
    cr_expect_eq(c.run.seed, 0);
    cr_expect_eq(c.model.layers, 4, "keys not in the file keep their value");
    cr_expect_eq(loco_config_validate(&c, &e), 0, "%s", e.msg);
}

Test(config, later_sources_override) {
    loco_config c;
    loco_err e = {{0}};
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_string(&c, "[train]\nlr = 0.01\nbatch = 4\n", "a.ini", &e), 0);
    cr_assert_eq(loco_config_load_string(&c, "[train]\nlr = 0.02\n", "b.ini", &e), 0);
    cr_expect(same_real(c.train.lr, 0.02));
    cr_expect_eq(c.train.batch, 4);
    cr_assert_eq(loco_config_set(&c, "train.lr=0.005", &e), 0, "%s", e.msg);
    cr_expect(same_real(c.train.lr, 0.005));
    cr_assert_eq(loco_config_set(&c, " data.format = llmc ", &e), 0, "%s", e.msg);
    cr_expect_eq(c.data.format, LOCO_FORMAT_LLMC);
    cr_assert_eq(loco_config_set(&c, "data.path=x=y.txt", &e), 0, "%s", e.msg);
    cr_expect_str_eq(c.data.path, "x=y.txt");
    /* a file loaded after --set overrides it too */
    cr_assert_eq(loco_config_load_string(&c, "[train]\nlr = 0.03\n", "c.ini", &e), 0);
    cr_expect(same_real(c.train.lr, 0.03));
}

/* ---- load errors ---- */

Test(config, bad_values_name_file_line_key) {
    expect_load_error("[train]\nlr = abc\n", 2, "train.lr", "expected a real number, got 'abc'");
    expect_load_error("[train]\n\nlr = 20\n", 3, "train.lr", "20 is out of range [0, 10]");
    expect_load_error("[train]\nlr =\n", 2, "train.lr", "got ''");
    expect_load_error("[train]\neps = nan\n", 2, "train.eps", "finite");
    expect_load_error("[train]\nlr = 1e999\n", 2, "train.lr", "finite");
    expect_load_error("[train]\nbeta1 = 1\n", 2, "train.beta1", "out of range [0, 1)");
    expect_load_error("[train]\nbeta2 = -0.5\n", 2, "train.beta2", "out of range");
    expect_load_error("[model]\ndim = 12x\n", 2, "model.dim", "expected an integer, got '12x'");
    expect_load_error("[model]\ndim = 1.5\n", 2, "model.dim", "expected an integer");
    expect_load_error("[model]\nheads = 0\n", 2, "model.heads", "0 is out of range [1, 256]");
    expect_load_error("[run]\nseed = 99999999999999999999\n", 2, "run.seed", "out of range");
    expect_load_error("[run]\nseed = -1\n", 2, "run.seed", "out of range [0, 2^62]");
    expect_load_error("[data]\nval_every = 1\n", 2, "data.val_every", "out of range [2,");
    expect_load_error("[run]\nseed = 2\n[data]\nformat = csv\n", 4, "data.format",
                      "expected one of text|llmc, got 'csv'");
    expect_load_error("[data]\nformat = TEXT\n", 2, "data.format", "got 'TEXT'");
}

Test(config, structure_errors_name_file_line_key) {
    expect_load_error("[train]\nsteps = 5\nlrr = 1\n", 3, "'lrr'",
                      "unknown key 'lrr' in section [train] (see 'loco help config')");
    expect_load_error("[run]\nseed = 2\n[trian]\nlr = 1\n", 3, "[trian]", "unknown section");
    expect_load_error("lr = 1\n[train]\n", 1, "'lr'", "outside any [section]");
    expect_load_error("[train]\nlr = 1e-3\nsteps = 5\nlr = 2e-3\n", 4, "train.lr",
                      "duplicate key (first set on line 2)");
    expect_load_error("[train]\nlr = 1e-3\n\nthis line has no equals\n", 4, NULL,
                      "syntax error");
    expect_load_error("[train\nlr = 1e-3\n", 1, NULL, "syntax error");
    /* continuation lines are off: an indented line is an error, not part of lr */
    expect_load_error("[train]\nlr = 1e-3\n  2e-3\n", 3, NULL, "syntax error");
}

Test(config, first_error_wins) {
    expect_load_error("[train]\nnonsense\nlrr = 1\n", 2, NULL, "syntax error");
    expect_load_error("[train]\nlrr = 1\nnonsense\n", 2, "'lrr'", "unknown key");
    expect_load_error("[train]\nlr = x\nlr = y\n", 2, "train.lr", "got 'x'");
}

Test(config, long_line_is_an_error) {
    char text[600], name[300];
    memset(name, 'x', 250);
    name[250] = '\0';
    snprintf(text, sizeof text, "[data]\npath = %s\n[train]\nlr = 0.5\n", name);
    expect_load_error(text, 2, NULL, "line is longer than");
}

Test(config, string_limits) {
    loco_config c;
    loco_err e = {{0}};
    char arg[400];
    loco_config_default(&c);
    memset(arg, 0, sizeof arg);
    memcpy(arg, "data.path=", 10);
    memset(arg + 10, 'p', 250);
    cr_expect_eq(loco_config_set(&c, arg, &e), -1, "a path too long to write back");
    expect_has(e.msg, "data.path", "characters", NULL);
    cr_expect_eq(loco_config_set(&c, "data.path=a ;b", &e), -1);
    expect_has(e.msg, "data.path", "' ;'", NULL);
    cr_expect_eq(loco_config_set(&c, "data.path=", &e), -1);
    expect_has(e.msg, "--set data.path=", "data.path", NULL);
    cr_expect_str_eq(c.data.path, "data/corpus.txt", "failed sets change nothing");
}

Test(config, file_errors_name_the_file) {
    loco_config c;
    loco_err e = {{0}};
    char path[64], where[160];
    loco_config_default(&c);
    cr_expect_eq(loco_config_load_file(&c, "/tmp/loco-no-such-dir/x.ini", &e), -1);
    cr_expect_str_eq(e.msg, "/tmp/loco-no-such-dir/x.ini: cannot open: No such file or directory");
    cr_expect_eq(loco_config_load_file(&c, "/tmp", &e), -1);
    expect_has(e.msg, "/tmp: cannot read", NULL, NULL);

    temp_file("[model]\nlayers = 2\n\n[train]\nlr = abc\n", path, sizeof path);
    int rc = loco_config_load_file(&c, path, &e);
    unlink(path);
    cr_expect_eq(rc, -1);
    snprintf(where, sizeof where, "%s:5: train.lr: expected a real number, got 'abc'", path);
    cr_expect_str_eq(e.msg, where);
    cr_expect_eq(c.model.layers, 4, "a failed file changes nothing");
}

Test(config, too_many_files) {
    loco_config c;
    loco_err e = {{0}};
    char name[32];
    loco_config_default(&c);
    for (int i = 0; i < LOCO_CONFIG_MAX_FILES; i++) {
        snprintf(name, sizeof name, "f%d.ini", i);
        cr_assert_eq(loco_config_load_string(&c, "[run]\nseed = 3\n", name, &e), 0, "%s", e.msg);
    }
    /* loading a file again reuses its slot */
    cr_expect_eq(loco_config_load_string(&c, "[run]\nseed = 4\n", "f0.ini", &e), 0, "%s", e.msg);
    cr_expect_eq(loco_config_load_string(&c, "[run]\nseed = 5\n", "extra.ini", &e), -1);
    expect_has(e.msg, "extra.ini", "too many", NULL);
    cr_expect_eq(c.run.seed, 4);
}

/* ---- --set ---- */

Test(config, set_errors) {
    loco_config c;
    loco_err e = {{0}};
    loco_config_default(&c);
    cr_expect_eq(loco_config_set(&c, "train.lr=abc", &e), -1);
    cr_expect_str_eq(e.msg, "--set train.lr=abc: train.lr: expected a real number, got 'abc'");
    cr_expect_eq(loco_config_set(&c, "train.lr=20", &e), -1);
    expect_has(e.msg, "--set train.lr=20: ", "train.lr", "out of range [0, 10]");
    const char *malformed[] = {"foo", "foo=1", "train.lr", ".lr=1", "train.=1", "=1"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        cr_expect_eq(loco_config_set(&c, malformed[i], &e), -1, "accepted %s", malformed[i]);
        expect_has(e.msg, "--set ", malformed[i], "expected section.key=value");
    }
    cr_expect_eq(loco_config_set(&c, "train.lrr=1", &e), -1);
    expect_has(e.msg, "--set train.lrr=1", "unknown key 'lrr' in section [train]", NULL);
    cr_expect_eq(loco_config_set(&c, "trian.lr=1", &e), -1);
    expect_has(e.msg, "--set trian.lr=1", "unknown section [trian]", NULL);
    cr_expect(same_real(c.train.lr, 1e-3), "failed sets change nothing");
}

/* ---- relations between keys ---- */

Test(config, validate_names_both_keys_and_origins) {
    loco_config c;
    loco_err e = {{0}};
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_string(&c, "[run]\nseed = 1\n\n[model]\n\ndim = 100\n",
                                         "configs/x.ini", &e), 0, "%s", e.msg);
    cr_assert_eq(loco_config_set(&c, "model.heads=3", &e), 0);
    cr_expect_eq(loco_config_validate(&c, &e), -1);
    cr_expect_str_eq(e.msg, "model.dim = 100 (configs/x.ini:6) must be divisible by "
                            "model.heads = 3 (--set)");

    loco_config_default(&c);
    cr_assert_eq(loco_config_load_string(&c, "[train]\nlr_min = 0.01\n", "y.ini", &e), 0);
    cr_expect_eq(loco_config_validate(&c, &e), -1);
    expect_has(e.msg, "train.lr_min = 0.01 (y.ini:2)", "train.lr = 0.001 (default)", NULL);

    loco_config_default(&c);
    cr_assert_eq(loco_config_set(&c, "model.vocab=100", &e), 0);
    cr_expect_eq(loco_config_validate(&c, &e), -1);
    expect_has(e.msg, "model.vocab = 100 (--set)", "data.format = text (default)", NULL);
    cr_assert_eq(loco_config_set(&c, "data.format=llmc", &e), 0);
    cr_expect_eq(loco_config_validate(&c, &e), 0, "llmc may have a small vocab: %s", e.msg);
}

Test(config, validate_accepts_edge_cases) {
    loco_config c;
    loco_err e = {{0}};
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_string(&c, "[train]\nsteps = 10\nwarmup = 50\nlr = 1e-4\n",
                                         "z.ini", &e), 0, "%s", e.msg);
    cr_expect_eq(loco_config_validate(&c, &e), 0, "warmup > steps and lr_min == lr: %s", e.msg);
}

/* A grace period is a setting of every asynchronous method (the paper's Algorithm 2), so
 * the baselines can be compared with DN + DyLU at the same grace; only sync (which waits
 * for everyone) and single (no arrivals) refuse it. */
Test(config, every_asynchronous_method_takes_a_grace_period) {
    int accepted = 0;
    for (const loco_enum *m = loco_outer_methods; m->name; m++) {
        loco_config c;
        loco_err e = {{0}};
        char set[64];
        loco_config_default(&c);
        snprintf(set, sizeof set, "outer.method=%s", m->name);
        cr_assert_eq(loco_config_set(&c, set, &e), 0, "%s", e.msg);
        cr_assert_eq(loco_config_set(&c, "run.workers=4", &e), 0, "%s", e.msg);
        cr_assert_eq(loco_config_set(&c, "outer.grace_s=5", &e), 0, "%s", e.msg);
        const loco_outer_method *om = m->data;
        int want = om->engine && !om->barrier;
        cr_expect_eq(loco_config_validate(&c, &e) == 0, want, "%s: %s", m->name, e.msg);
        accepted += want;
    }
    cr_assert_geq(accepted, 4, "only %d asynchronous methods", accepted);
}

/* ---- writing and help ---- */

Test(config, write_load_round_trip_is_exact) {
    loco_config c, back;
    loco_err e = {{0}};
    int rc;
    loco_config_default(&c);
    c.run.seed = (1L << 62) - 1;
    c.run.workers = 7;
    c.model.layers = 3, c.model.heads = 5, c.model.dim = 640, c.model.seq_len = 77;
    c.model.vocab = 50257;
    snprintf(c.data.path, sizeof c.data.path, "runs/a b;c/shard_000001.bin");
    c.data.format = LOCO_FORMAT_LLMC;
    c.data.block = 12345, c.data.val_every = 999;
    c.train.batch = 3, c.train.steps = 1L << 40, c.train.warmup = 0;
    c.train.lr = 0.1 + 0.2;            /* needs 17 digits */
    c.train.lr_min = 1.0 / 3.0;
    c.train.weight_decay = 0.0;
    c.train.grad_clip = 123456789.125;
    c.train.beta1 = 0.0;
    c.train.beta2 = nextafter(1.0, 0.0); /* the largest value below the open bound */
    c.train.eps = DBL_MIN; /* the smallest normal double (subnormals are refused: below) */
    c.eval.every = 0, c.eval.batches = 1000000;
    char *text = capture_write(&c, &rc);
    cr_assert_eq(rc, 0);
    loco_config_default(&back);
    cr_assert_eq(loco_config_load_string(&back, text, "written.ini", &e), 0, "%s\n%s", e.msg, text);
    expect_same(&c, &back);
    expect_has(text, "[train]\n", "; peak learning rate", "lr = 0.30000000000000004\n");
    free(text);
    /* loco computes with subnormals flushed to zero (cpu.h): such a value is refused */
    cr_assert_eq(loco_config_set(&back, "train.eps=4.9406564584124654e-324", &e), -1);
    cr_assert(strstr(e.msg, "too small to compute with"), "%s", e.msg);
    cr_assert_eq(back.train.eps, DBL_MIN, "unchanged");
}

Test(config, write_defaults_round_trip) {
    loco_config c, back;
    loco_err e = {{0}};
    int rc;
    loco_config_default(&c);
    char *text = capture_write(&c, &rc);
    cr_assert_eq(rc, 0);
    loco_config_default(&back);
    back.train.lr = 5; /* must be overwritten by the file */
    cr_assert_eq(loco_config_load_string(&back, text, "written.ini", &e), 0, "%s", e.msg);
    expect_same(&c, &back);
    expect_has(text, "lr = 0.001\n", "eps = 1e-08\n", "format = text\n");
    free(text);
}

Test(config, write_refuses_what_would_not_read_back) {
    loco_config c;
    int rc;
    loco_config_default(&c);
    snprintf(c.data.path, sizeof c.data.path, "a\nb");
    free(capture_write(&c, &rc));
    cr_expect_eq(rc, -1, "a newline in a string");
    snprintf(c.data.path, sizeof c.data.path, "a ;b");
    free(capture_write(&c, &rc));
    cr_expect_eq(rc, -1, "a comment in a string");
    loco_config_default(&c);
    c.data.format = 7;
    char *text = capture_write(&c, &rc);
    cr_expect_eq(rc, -1, "a choice index past the choices");
    cr_expect_str_eq(text, "", "nothing written when refusing");
    free(text);
    loco_config_default(&c);
    c.model.heads = 0;
    free(capture_write(&c, &rc));
    cr_expect_eq(rc, -1, "an integer out of range");
}

Test(config, help_lists_every_key) {
    const char *keys[] = {
        "run.seed", "run.workers", "model.layers", "model.heads", "model.dim", "model.seq_len",
        "model.vocab", "data.path", "data.format", "data.block", "data.val_every", "train.batch",
        "train.steps", "train.warmup", "train.lr ", "train.lr_min", "train.weight_decay",
        "train.grad_clip", "train.beta1", "train.beta2", "train.eps", "eval.every",
        "eval.batches",
    };
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert(f);
    loco_config_help(f);
    fclose(f);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_expect(strstr(buf, keys[i]), "help lacks %s", keys[i]);
    expect_has(buf, "text|llmc", "[0, 1)", "data/corpus.txt");
    expect_has(buf, "no clipping", "real", "choice");
    free(buf);
}

Test(config, shorthand_flags_set_their_keys_and_speed_changes_add_up) {
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    cr_assert_eq(loco_config_flag(&c, "--hetero", "very", &e), 0, "%s", e.msg);
    cr_assert_eq(c.hetero.level, LOCO_LEVEL_VERY);
    cr_assert_eq(loco_config_flag(&c, "--workers", "6", &e), 0);
    cr_assert_eq(c.run.workers, 6);
    cr_assert_eq(loco_config_flag(&c, "--clock", "virtual", &e), 0);
    cr_assert_eq(c.run.clock, LOCO_CLOCK_VIRTUAL);
    cr_assert_eq(loco_config_flag(&c, "--slowdown-mode", "spin", &e), 0);
    cr_assert_eq(c.hetero.mode, LOCO_SLOW_SPIN);
    cr_assert_eq(loco_config_flag(&c, "--speed-change", "1@10:2", &e), 0);
    cr_assert_eq(loco_config_flag(&c, "--speed-change", "2@20:3", &e), 0);
    cr_assert_str_eq(c.hetero.speed_change, "1@10:2,2@20:3", "repeated flags add to the list");
    cr_assert_eq(loco_config_flag(&c, "--bogus", "1", &e), 1, "not a shorthand");
    cr_assert_eq(loco_config_flag(&c, "--hetero", "extreme", &e), -1);
    cr_assert(strstr(e.msg, "--hetero extreme") && strstr(e.msg, "no|slight|moderate|very"),
              "unknown level: %s", e.msg);
    cr_assert_eq(c.hetero.level, LOCO_LEVEL_VERY, "a bad value changes nothing");
}

Test(config, unknown_heterogeneity_level_in_a_file_names_file_line_key) {
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_string(&c, "[hetero]\nlevel = extreme\n", "h.ini", &e), -1);
    cr_assert(strstr(e.msg, "h.ini:2") && strstr(e.msg, "hetero.level"), "%s", e.msg);
}

/* ---- every key, discovered from the help and the written config ----
 *
 * The keys are not listed here: they come from what loco_config_write and loco_config_help
 * print, so a key added to the table is covered without touching this file. */

enum { MAX_KEYS = 128, VAL_LEN = 256 };

/* One key as `loco help config` lists it. */
typedef struct {
    char key[64];           /* section.name */
    char type[16];          /* int, real, string or choice */
    char def[VAL_LEN];      /* the default ("" for the help's "\"\"") */
    char range[VAL_LEN];    /* "[lo, hi]", "[lo, hi)", "lo..hi chars" or "a|b|c" */
    char help[VAL_LEN];     /* the indented line under it */
} help_key;

/* One "key = value" line of a written config, with its section. */
typedef struct {
    char key[64];
    char line[VAL_LEN + 64];  /* "name = value" as written */
    char value[VAL_LEN];
} written_key;

static char *capture_help(void) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert(f, "open_memstream failed");
    loco_config_help(f);
    fclose(f);
    return buf;
}

/* The next line of *p into line (without its newline); 0 at the end of the text. */
static int next_line(const char **p, char *line, size_t n) {
    if (!**p) return 0;
    size_t len = strcspn(*p, "\n");
    cr_assert_lt(len, n, "a line longer than %zu characters: %.80s", n, *p);
    memcpy(line, *p, len);
    line[len] = '\0';
    *p += len + ((*p)[len] == '\n');
    return 1;
}

static void rtrim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
}

/* The keys of the help text: the lines after the "key type default range" header, each
 * "section.key type default range" and then an indented help line. */
static int parse_help(const char *text, help_key *out, int max) {
    char line[1024];
    int n = 0, in_table = 0;
    const char *p = text;
    while (next_line(&p, line, sizeof line)) {
        if (!in_table) {
            in_table = !strncmp(line, "key ", 4);
            continue;
        }
        if (line[0] == ' ') {
            cr_assert_gt(n, 0, "help: an indented line before any key: %s", line);
            const char *h = line + strspn(line, " ");
            cr_assert(!out[n - 1].help[0], "help: %s has two help lines", out[n - 1].key);
            snprintf(out[n - 1].help, VAL_LEN, "%s", h);
            continue;
        }
        if (!line[0]) continue;
        cr_assert_lt(n, max, "help: more than %d keys", max);
        help_key *k = &out[n++];
        memset(k, 0, sizeof *k);
        int pos = 0;
        cr_assert_eq(sscanf(line, "%63s %15s %255s %n", k->key, k->type, k->def, &pos), 3,
                     "help: not 'key type default range': %s", line);
        if (!strcmp(k->def, "\"\"")) k->def[0] = '\0';
        snprintf(k->range, VAL_LEN, "%s", line + pos);
        rtrim(k->range);
    }
    cr_assert(in_table, "help: no 'key type default range' header");
    return n;
}

/* The keys of a written config, in file order. */
static int parse_written(const char *text, written_key *out, int max) {
    char line[1024], section[64] = "";
    int n = 0;
    const char *p = text;
    while (next_line(&p, line, sizeof line)) {
        if (!line[0] || line[0] == ';' || line[0] == '#') continue;
        if (line[0] == '[') {
            cr_assert_eq(sscanf(line, "[%63[^]]]", section), 1, "written: bad header %s", line);
            continue;
        }
        const char *eq = strstr(line, " = ");
        cr_assert(eq, "written: not 'key = value': %s", line);
        cr_assert(section[0], "written: a key before any section: %s", line);
        cr_assert_lt(n, max, "written: more than %d keys", max);
        written_key *k = &out[n++];
        size_t sl = strlen(section), nl = (size_t)(eq - line);
        cr_assert_lt(sl + 1 + nl, sizeof k->key, "written: a long key: %s", line);
        memcpy(k->key, section, sl);
        k->key[sl] = '.';
        memcpy(k->key + sl + 1, line, nl);
        k->key[sl + 1 + nl] = '\0';
        cr_assert_lt(strlen(eq + 3), sizeof k->value, "written: a long value: %s", line);
        snprintf(k->line, sizeof k->line, "%.319s", line);
        snprintf(k->value, sizeof k->value, "%.255s", eq + 3);
    }
    return n;
}

/* c as written, parsed; returns the number of keys. */
static int written_keys(const loco_config *c, written_key *out, int max, char **text) {
    int rc;
    char *t = capture_write(c, &rc);
    cr_assert_eq(rc, 0, "loco_config_write failed");
    int n = parse_written(t, out, max);
    if (text)
        *text = t;
    else
        free(t);
    return n;
}

static const written_key *find_written(const written_key *w, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(w[i].key, key)) return &w[i];
    return NULL;
}

/* Integer bounds as the help prints them: decimal, or 2^n. */
static long long parse_bound(const char *s) {
    char *end;
    if (!strncmp(s, "2^", 2)) {
        long e = strtol(s + 2, &end, 10);
        cr_assert(*end == '\0' && e >= 0 && e < 63, "bad bound %s", s);
        return 1LL << e;
    }
    long long v = strtoll(s, &end, 10);
    cr_assert(end != s && *end == '\0', "bad integer bound '%s'", s);
    return v;
}

typedef struct {
    long long ilo, ihi;     /* int */
    double rlo, rhi;        /* real */
    int open;               /* real: the upper bound is excluded */
    long slo, shi;          /* string: lengths */
} range;

/* The range the help prints for key k, checked against its type. */
static range parse_range(const help_key *k) {
    range r = {0};
    char lo[64], hi[64], close = 0;
    if (!strcmp(k->type, "int") || !strcmp(k->type, "real")) {
        cr_assert_eq(sscanf(k->range, "[%63[^,], %63[^])]%c", lo, hi, &close), 3,
                     "%s: range '%s' is not [lo, hi] or [lo, hi)", k->key, k->range);
        cr_assert(close == ']' || close == ')', "%s: range '%s'", k->key, k->range);
        if (!strcmp(k->type, "int")) {
            cr_assert_eq(close, ']', "%s: an integer range is closed: %s", k->key, k->range);
            r.ilo = parse_bound(lo), r.ihi = parse_bound(hi);
            cr_assert_lt(r.ilo, r.ihi, "%s: empty range %s", k->key, k->range);
        } else {
            char *e1, *e2;
            r.rlo = strtod(lo, &e1), r.rhi = strtod(hi, &e2);
            cr_assert(*e1 == '\0' && *e2 == '\0', "%s: range '%s'", k->key, k->range);
            cr_assert_lt(r.rlo, r.rhi, "%s: empty range %s", k->key, k->range);
            r.open = close == ')';
        }
    } else if (!strcmp(k->type, "string")) {
        char tail[16];
        cr_assert_eq(sscanf(k->range, "%ld..%ld %15s", &r.slo, &r.shi, tail), 3,
                     "%s: range '%s' is not 'lo..hi chars'", k->key, k->range);
        cr_assert_str_eq(tail, "chars", "%s: range '%s'", k->key, k->range);
        cr_assert(r.slo >= 0 && r.slo < r.shi && r.shi < VAL_LEN - 2, "%s: range %s", k->key,
                  k->range);
    } else if (!strcmp(k->type, "choice")) {
        cr_assert(k->range[0] && !strchr(k->range, ' ') && k->range[0] != '|' &&
                      k->range[strlen(k->range) - 1] != '|' && !strstr(k->range, "||"),
                  "%s: choices '%s' are not a|b|c", k->key, k->range);
    } else {
        cr_assert(0, "%s: unknown type '%s'", k->key, k->type);
    }
    return r;
}

/* Whether choice v is one of "a|b|c". */
static int is_choice(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; p; p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL)
        if (strcspn(p, "|") == n && !strncmp(p, v, n)) return 1;
    return 0;
}

static int parses_int(const char *s, long long *v) {
    char *end;
    *v = strtoll(s, &end, 10);
    return end != s && *end == '\0';
}

static int parses_real(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0';
}

/* a and b are the same value of a key of type t: integers and reals by value (reals bit
 * for bit), strings and choices as text. */
static int same_value(const char *t, const char *a, const char *b) {
    if (!strcmp(t, "int")) {
        long long x, y;
        return parses_int(a, &x) && parses_int(b, &y) && x == y;
    }
    if (!strcmp(t, "real")) {
        double x, y;
        return parses_real(a, &x) && parses_real(b, &y) && same_real(x, y);
    }
    return !strcmp(a, b);
}

/* Values, for a key of type t: up to 12. */
typedef struct {
    int n;
    char v[12][VAL_LEN];
} value_list;

static void add_value(value_list *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_value(value_list *l, const char *fmt, ...) {
    cr_assert_lt(l->n, 12, "too many values");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->v[l->n], VAL_LEN, fmt, ap);
    va_end(ap);
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], l->v[l->n])) return; /* no duplicates */
    l->n++;
}

/* A string of exactly len characters, none of them a space at an end, a control
 * character or ';' after a space: only what a config file reads back unchanged. */
static void string_of(char *out, long len) {
    static const char pat[] = "runs/a b;c=d,1.5@2:3#x[y]";
    for (long i = 0; i < len; i++) out[i] = pat[i % (sizeof pat - 1)];
    if (len > 0 && out[len - 1] == ' ') out[len - 1] = '_';
    out[len] = '\0';
}

/* Valid values of key k other than its default d: both ends of the range and one inside,
 * each choice, the longest string. */
static value_list good_values(const help_key *k, const char *d) {
    range r = parse_range(k);
    value_list l = {0};
    if (!strcmp(k->type, "int")) {
        add_value(&l, "%lld", r.ilo);
        add_value(&l, "%lld", r.ihi);
        add_value(&l, "%lld", r.ilo + (r.ihi - r.ilo) / 3);
        long long dv;
        cr_assert(parses_int(d, &dv), "%s: default '%s' is not an integer", k->key, d);
        if (dv < r.ihi) add_value(&l, "%lld", dv + 1);
    } else if (!strcmp(k->type, "real")) {
        add_value(&l, "%.17g", r.rlo);
        add_value(&l, "%.17g", r.open ? nextafter(r.rhi, r.rlo) : r.rhi);
        add_value(&l, "%.17g", r.rlo + (r.rhi - r.rlo) / 3); /* needs all 17 digits */
        add_value(&l, "%.17g", r.rlo + (r.rhi - r.rlo) * 0.75);
    } else if (!strcmp(k->type, "string")) {
        char s[VAL_LEN];
        string_of(s, r.shi);
        add_value(&l, "%s", s);
        string_of(s, r.slo > 12 ? r.slo : 12);
        add_value(&l, "%s", s);
        if (r.slo <= 1) add_value(&l, "x");
    } else {
        char choice[VAL_LEN];
        for (const char *p = k->range; p; p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL) {
            snprintf(choice, sizeof choice, "%.*s", (int)strcspn(p, "|"), p);
            add_value(&l, "%s", choice);
        }
    }
    /* the default itself is no test of a set */
    value_list out = {0};
    for (int i = 0; i < l.n; i++)
        if (!same_value(k->type, l.v[i], d)) add_value(&out, "%s", l.v[i]);
    cr_assert_gt(out.n, 0, "%s: no value other than the default", k->key);
    return out;
}

/* Values key k must refuse: out of range, or not of its type. */
static value_list bad_values(const help_key *k) {
    range r = parse_range(k);
    value_list l = {0};
    if (!strcmp(k->type, "int")) {
        add_value(&l, "%lld", r.ilo - 1);
        add_value(&l, "%lld", r.ihi + 1);
        add_value(&l, "99999999999999999999");
        add_value(&l, "1.5");
        add_value(&l, "12x");
        add_value(&l, "0x10");
        add_value(&l, "abc");
        add_value(&l, "%s", "");
    } else if (!strcmp(k->type, "real")) {
        add_value(&l, "%.17g", nextafter(r.rlo, -INFINITY));
        add_value(&l, "%.17g", r.rlo - 1);
        add_value(&l, "%.17g", r.open ? r.rhi : nextafter(r.rhi, INFINITY));
        add_value(&l, "%.17g", r.rhi * 2 + 1);
        add_value(&l, "nan");
        add_value(&l, "inf");
        add_value(&l, "1e999");
        add_value(&l, "0.5x");
        add_value(&l, "abc");
        add_value(&l, "%s", "");
    } else if (!strcmp(k->type, "string")) {
        char s[VAL_LEN];
        string_of(s, r.shi + 1);
        add_value(&l, "%s", s);
        if (r.slo > 0) add_value(&l, "%s", "");
        add_value(&l, "a ;b");   /* a comment in a config file */
        add_value(&l, "a\tb");   /* a control character */
        add_value(&l, "a\nb");
    } else {
        char upper[VAL_LEN];
        snprintf(upper, sizeof upper, "%.*s", (int)strcspn(k->range, "|"), k->range);
        for (char *p = upper; *p; p++) *p = (char)toupper((unsigned char)*p);
        add_value(&l, "%s", upper);
        add_value(&l, "%s", k->range); /* all the choices at once */
        add_value(&l, "bogus");
        add_value(&l, "%s", "");
    }
    return l;
}

/* The help's keys and the written default config's keys: the same keys, in the same
 * order, at least the 46 of today. */
static int discover(help_key *h, written_key *w) {
    char *help = capture_help();
    int nh = parse_help(help, h, MAX_KEYS);
    free(help);
    loco_config c;
    loco_config_default(&c);
    int nw = written_keys(&c, w, MAX_KEYS, NULL);
    cr_assert_geq(nw, 46, "only %d keys found in the written config", nw);
    cr_assert_eq(nh, nw, "help lists %d keys, the written config %d", nh, nw);
    for (int i = 0; i < nw; i++)
        cr_assert_str_eq(h[i].key, w[i].key, "key %d: help has %s, the written config %s", i,
                         h[i].key, w[i].key);
    return nw;
}

Test(config, help_gives_every_key_a_type_default_range_and_help_line) {
    static help_key h[MAX_KEYS];
    static written_key w[MAX_KEYS];
    int n = discover(h, w);
    for (int i = 0; i < n; i++) {
        const help_key *k = &h[i];
        cr_assert(strchr(k->key, '.') && k->key[0] != '.',
                  "help: '%s' is not section.key", k->key);
        cr_assert(!strcmp(k->type, "int") || !strcmp(k->type, "real") ||
                      !strcmp(k->type, "string") || !strcmp(k->type, "choice"),
                  "help: %s has type '%s'", k->key, k->type);
        cr_assert(k->range[0], "help: %s has no range", k->key);
        range r = parse_range(k); /* a range of the key's type */
        cr_assert_geq(strlen(k->help), 8, "help: %s has no help line", k->key);
        /* the default is a value the range allows */
        if (!strcmp(k->type, "int")) {
            long long v;
            cr_assert(parses_int(k->def, &v) && v >= r.ilo && v <= r.ihi,
                      "help: %s default '%s' not in %s", k->key, k->def, k->range);
        } else if (!strcmp(k->type, "real")) {
            double v;
            cr_assert(parses_real(k->def, &v) && v >= r.rlo &&
                          (r.open ? v < r.rhi : v <= r.rhi),
                      "help: %s default '%s' not in %s", k->key, k->def, k->range);
        } else if (!strcmp(k->type, "string")) {
            long len = (long)strlen(k->def);
            cr_assert(len >= r.slo && len <= r.shi, "help: %s default '%s' not %s", k->key,
                      k->def, k->range);
        } else {
            cr_assert(is_choice(k->range, k->def), "help: %s default '%s' not one of %s",
                      k->key, k->def, k->range);
        }
    }
}

Test(config, every_key_written_default_is_the_help_default) {
    static help_key h[MAX_KEYS];
    static written_key w[MAX_KEYS];
    int n = discover(h, w);
    for (int i = 0; i < n; i++)
        cr_assert(same_value(h[i].type, h[i].def, w[i].value),
                  "%s: loco_config_write of the defaults says '%s', the help says '%s'",
                  w[i].key, w[i].value, h[i].def);
}

/* Sets key k to v on a default config, writes it, loads the text into a fresh default
 * config and writes that: k's line must carry v both times, every other line the
 * default's. */
static void expect_set_round_trips(const help_key *k, const written_key *defaults, int n,
                                   const char *v) {
    static written_key w1[MAX_KEYS], w2[MAX_KEYS];
    char assignment[VAL_LEN + 80], *text;
    loco_config c, back;
    loco_err e = {{0}};
    loco_config_default(&c);
    snprintf(assignment, sizeof assignment, "%.63s=%.255s", k->key, v);
    cr_assert_eq(loco_config_set(&c, assignment, &e), 0, "--set %s refused: %s", assignment,
                 e.msg);
    cr_assert_eq(written_keys(&c, w1, MAX_KEYS, &text), n, "%s: keys written", k->key);
    loco_config_default(&back);
    int rc = loco_config_load_string(&back, text, "written.ini", &e);
    cr_assert_eq(rc, 0, "%s = %s: the written config does not load: %s", k->key, v, e.msg);
    free(text);
    cr_assert_eq(written_keys(&back, w2, MAX_KEYS, NULL), n, "%s: keys written back", k->key);
    for (int i = 0; i < n; i++) {
        if (strcmp(w1[i].key, k->key) != 0) {
            cr_assert_str_eq(w1[i].line, defaults[i].line,
                             "setting %s changed %s: '%s', default '%s'", k->key, w1[i].key,
                             w1[i].line, defaults[i].line);
            cr_assert_str_eq(w2[i].line, defaults[i].line,
                             "after setting %s, %s read back as '%s', default '%s'", k->key,
                             w2[i].key, w2[i].line, defaults[i].line);
            continue;
        }
        cr_assert(same_value(k->type, w1[i].value, v), "%s: set to '%s', written as '%s'",
                  k->key, v, w1[i].value);
        cr_assert(strcmp(w1[i].line, defaults[i].line) != 0,
                  "%s: set to '%s' but written as the default: %s", k->key, v, w1[i].line);
        cr_assert_str_eq(w2[i].line, w1[i].line, "%s: written as '%s', read back as '%s'",
                         k->key, w1[i].line, w2[i].line);
    }
}

Test(config, every_key_set_to_other_values_writes_and_reads_back) {
    static help_key h[MAX_KEYS];
    static written_key w[MAX_KEYS];
    int n = discover(h, w), tried = 0;
    for (int i = 0; i < n; i++) {
        value_list good = good_values(&h[i], w[i].value);
        for (int j = 0; j < good.n; j++, tried++) expect_set_round_trips(&h[i], w, n, good.v[j]);
    }
    cr_assert_geq(tried, 2 * n, "only %d values tried for %d keys", tried, n);
}

Test(config, every_key_at_once_set_to_other_values_round_trips) {
    static help_key h[MAX_KEYS];
    static written_key w[MAX_KEYS], w1[MAX_KEYS], w2[MAX_KEYS];
    int n = discover(h, w);
    loco_config c, back;
    loco_err e = {{0}};
    loco_config_default(&c);
    for (int i = 0; i < n; i++) {
        value_list good = good_values(&h[i], w[i].value);
        char assignment[VAL_LEN + 80];
        snprintf(assignment, sizeof assignment, "%.63s=%.255s", h[i].key, good.v[good.n - 1]);
        cr_assert_eq(loco_config_set(&c, assignment, &e), 0, "%s", e.msg);
    }
    char *text;
    cr_assert_eq(written_keys(&c, w1, MAX_KEYS, &text), n, "keys written");
    loco_config_default(&back);
    cr_assert_eq(loco_config_load_string(&back, text, "written.ini", &e), 0, "%s", e.msg);
    cr_assert_eq(written_keys(&back, w2, MAX_KEYS, NULL), n, "keys written back");
    for (int i = 0; i < n; i++) {
        cr_assert(strcmp(w1[i].line, w[i].line) != 0, "%s still at its default", w1[i].key);
        cr_assert_str_eq(w1[i].line, w2[i].line, "%s: written '%s', read back '%s'", w1[i].key,
                         w1[i].line, w2[i].line);
    }
    free(text);
}

/* v for key k is refused by --set and by a config file, with a message naming the key,
 * and changes nothing. */
static void expect_refused(const help_key *k, const char *v) {
    char assignment[VAL_LEN + 80], *before, *after;
    loco_config c;
    loco_err e = {{0}};
    int rc;
    loco_config_default(&c);
    before = capture_write(&c, &rc);
    snprintf(assignment, sizeof assignment, "%.63s=%.255s", k->key, v);
    cr_assert_eq(loco_config_set(&c, assignment, &e), -1, "--set accepted %s (%s %s)",
                 assignment, k->type, k->range);
    cr_assert(strstr(e.msg, k->key), "--set %s: the message does not name %s: %s", assignment,
              k->key, e.msg);
    cr_assert(!strncmp(e.msg, "--set ", 6), "--set %s: message '%s'", assignment, e.msg);
    after = capture_write(&c, &rc);
    cr_assert_str_eq(before, after, "--set %s: refused but the config changed", assignment);
    free(after);
    /* a config file line, for what a file line can hold (not a string's tab or ' ;') */
    if (strcmp(k->type, "string") != 0) {
        char text[VAL_LEN + 200];
        const char *dot = strchr(k->key, '.');
        snprintf(text, sizeof text, "[%.*s]\n%s = %s\n", (int)(dot - k->key), k->key, dot + 1, v);
        cr_assert_eq(loco_config_load_string(&c, text, "bad.ini", &e), -1,
                     "a file accepted %s = '%s'", k->key, v);
        cr_assert(strstr(e.msg, "bad.ini:2: ") && strstr(e.msg, k->key),
                  "file: %s = '%s': the message does not name bad.ini:2 and the key: %s", k->key,
                  v, e.msg);
        after = capture_write(&c, &rc);
        cr_assert_str_eq(before, after, "file: %s = '%s': refused but the config changed",
                         k->key, v);
        free(after);
    }
    free(before);
}

Test(config, every_key_refuses_values_out_of_range_or_of_the_wrong_type) {
    static help_key h[MAX_KEYS];
    static written_key w[MAX_KEYS];
    int n = discover(h, w), tried = 0;
    for (int i = 0; i < n; i++) {
        value_list bad = bad_values(&h[i]);
        for (int j = 0; j < bad.n; j++, tried++) expect_refused(&h[i], bad.v[j]);
    }
    cr_assert_geq(tried, 4 * n, "only %d bad values tried for %d keys", tried, n);
}

/* A string --set accepts must come back the same from the written config, or the writer
 * must refuse it: loco_config_write promises text that loads back to the same config. */
Test(config, string_values_accepted_by_set_read_back_from_the_written_config) {
    static help_key h[MAX_KEYS];
    static written_key w[MAX_KEYS], w2[MAX_KEYS];
    const char *edge[] = {";x", "x;y", "x ;y", "#x", "[x]", "x=y", "x\\", "\"x\"", "a\xc3\xa9",
                          " x", "x ", "x # y"};
    int n = discover(h, w), strings = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(h[i].type, "string") != 0) continue;
        strings++;
        for (size_t j = 0; j < sizeof edge / sizeof edge[0]; j++) {
            char assignment[VAL_LEN + 80], *text;
            loco_config c, back;
            loco_err e = {{0}};
            int rc;
            loco_config_default(&c);
            snprintf(assignment, sizeof assignment, "%.63s=%.255s", h[i].key, edge[j]);
            if (loco_config_set(&c, assignment, &e) != 0) {
                cr_assert(strstr(e.msg, h[i].key), "--set %s: message '%s'", assignment, e.msg);
                continue;
            }
            text = capture_write(&c, &rc);
            if (rc != 0) { /* refused: fine, it would not read back */
                free(text);
                continue;
            }
            loco_config_default(&back);
            cr_assert_eq(loco_config_load_string(&back, text, "written.ini", &e), 0,
                         "--set %s was accepted and written, but the written config does not "
                         "load: %s", assignment, e.msg);
            free(text);
            cr_assert_eq(written_keys(&back, w2, MAX_KEYS, NULL), n, "keys written back");
            const written_key *k = find_written(w2, n, h[i].key);
            cr_assert(k, "%s not written", h[i].key);
            /* --set trims the value's ends, as a file line does */
            char want[64];
            snprintf(want, sizeof want, "%s", edge[j] + strspn(edge[j], " "));
            rtrim(want);
            cr_assert_str_eq(k->value, want,
                             "--set %s was accepted and written, but reads back as '%s'",
                             assignment, k->value);
        }
    }
    cr_assert_gt(strings, 0, "no string keys");
}
