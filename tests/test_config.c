#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/clock.h"
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
    c.train.eps = 4.9406564584124654e-324; /* the smallest subnormal */
    c.eval.every = 0, c.eval.batches = 1000000;
    char *text = capture_write(&c, &rc);
    cr_assert_eq(rc, 0);
    loco_config_default(&back);
    cr_assert_eq(loco_config_load_string(&back, text, "written.ini", &e), 0, "%s\n%s", e.msg, text);
    expect_same(&c, &back);
    expect_has(text, "[train]\n", "; peak learning rate", "lr = 0.30000000000000004\n");
    free(text);
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
