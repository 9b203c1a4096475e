/* Whole runs of configs/tiny.ini: it learns, it is reproducible, and it writes its outputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loco/checkpoint.h"
#include "loco/config.h"
#include "loco/train.h"

/* the unigram entropy of data/corpus.txt in nats (byte frequencies) */
static double unigram_entropy(void) {
    FILE *f = fopen("data/corpus.txt", "rb");
    cr_assert(f, "data/corpus.txt missing: run make deps");
    double count[256] = {0}, n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) count[c]++, n++;
    fclose(f);
    double h = 0;
    for (int i = 0; i < 256; i++)
        if (count[i] > 0) h -= count[i] / n * log(count[i] / n);
    return h;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return b;
}

static double json_number(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    cr_assert(p, "%s not in %s", key, json);
    return strtod(p + strlen(pat), NULL);
}

/* trains configs/tiny.ini with the given seed into dir; returns the final val loss */
static double train_tiny(const char *dir, long seed, const char *set) {
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_file(&c, "configs/tiny.ini", &e), 0, "%s", e.msg);
    c.run.seed = seed;
    /* set: assignments separated by ';' */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", set ? set : "");
    for (char *tok = strtok(buf, ";"); tok; tok = strtok(NULL, ";"))
        cr_assert_eq(loco_config_set(&c, tok, &e), 0, "%s", e.msg);
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    cr_assert_eq(loco_train(&c, &o, &e), 0, "%s", e.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    char *s = slurp(path);
    double loss = json_number(s, "final_val_loss");
    cr_assert_eq(json_number(s, "steps"), (double)c.train.steps);
    free(s);
    return loss;
}

static void rm_run(const char *dir) {
    const char *files[] = {"metrics.jsonl", "summary.json", "config.ini", "model.bin"};
    char path[512];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

Test(train, tiny_learns_well_below_the_unigram_entropy, .timeout = 120) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/loco-train-%d", (int)getpid());
    double loss = train_tiny(dir, 1, NULL), h = unigram_entropy();
    cr_assert_lt(loss, h - 0.5, "val loss %.4f is not clearly below the unigram entropy %.4f",
                 loss, h);
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *events = slurp(path);
    cr_assert(strstr(events, "{\"event\":\"eval\",\"step\":0,"), "eval before training");
    cr_assert(strstr(events, "{\"event\":\"eval\",\"step\":100,"), "eval every 100 steps");
    cr_assert(strstr(events, "{\"event\":\"train\",\"step\":200,"), "train events");
    free(events);
    snprintf(path, sizeof path, "%s/model.bin", dir);
    loco_model_file mf;
    loco_err e;
    cr_assert_eq(loco_model_read(path, &mf, &e), 0, "%s", e.msg);
    cr_assert(strstr(mf.config, "layers = 2"), "the model carries its config");
    loco_model_file_free(&mf);
    rm_run(dir);
}

/* the whole file and its length */
static char *slurp_n(const char *dir, const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    cr_assert_gt(n, 0, "%s is empty", path);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Cuts ,"key":value (up to the next ',' or '}') out of a JSON line. */
static void cut_field(char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, ",\"%s\":", key);
    char *p = strstr(line, pat);
    if (!p) return;
    char *end = p + strlen(pat) + strcspn(p + strlen(pat), ",}");
    memmove(p, end, strlen(end) + 1);
}

/* metrics.jsonl's train and eval lines, in order, without their wall-clock fields (wall_s,
 * tokens_per_s): what the same seed must reproduce exactly. *lines gets their count. */
static char *train_and_eval_lines(const char *dir, int *lines) {
    size_t len;
    char *text = slurp_n(dir, "metrics.jsonl", &len);
    char *out = calloc(1, len + 1), *o = out;
    *lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "{\"event\":\"train\",", 17) != 0 &&
            strncmp(line, "{\"event\":\"eval\",", 16) != 0)
            continue;
        cr_assert(strstr(line, "\"wall_s\":"), "no wall_s in %s", line);
        cut_field(line, "wall_s");
        cut_field(line, "tokens_per_s");
        cut_field(line, "time_s"); /* the real clock's time is wall time */
        cr_assert(!strstr(line, "wall_s") && !strstr(line, "tokens_per_s"), "%s", line);
        o += sprintf(o, "%s\n", line);
        (*lines)++;
    }
    free(text);
    return out;
}

Test(train, same_seed_same_run_other_seed_other_run, .timeout = 120) {
    char a[64], b[64], c[64];
    snprintf(a, sizeof a, "/tmp/loco-seed-a-%d", (int)getpid());
    snprintf(b, sizeof b, "/tmp/loco-seed-b-%d", (int)getpid());
    snprintf(c, sizeof c, "/tmp/loco-seed-c-%d", (int)getpid());
    const char *shorter = "train.steps=60;eval.every=20";
    double la = train_tiny(a, 7, shorter), lb = train_tiny(b, 7, shorter);
    double lc = train_tiny(c, 8, shorter);
    cr_assert_eq(la, lb, "same seed: %.9g vs %.9g", la, lb);
    cr_assert_neq(la, lc, "another seed gave the very same loss");
    /* the whole model file, byte for byte: header, config, every tensor, CRC */
    size_t na, nb, nc;
    char *ma = slurp_n(a, "model.bin", &na), *mb = slurp_n(b, "model.bin", &nb);
    char *mc = slurp_n(c, "model.bin", &nc);
    cr_assert_eq(na, nb, "same seed: model.bin of %zu and %zu bytes", na, nb);
    size_t first = 0;
    while (first < na && ma[first] == mb[first]) first++;
    cr_assert_eq(first, na, "same seed: model.bin differs from byte %zu of %zu", first, na);
    cr_assert(na != nc || memcmp(ma, mc, na) != 0, "another seed: the same model.bin");
    free(ma), free(mb), free(mc);
    /* every train and eval event, but for the wall-clock fields */
    int ka, kb, kc;
    char *ea = train_and_eval_lines(a, &ka), *eb = train_and_eval_lines(b, &kb);
    char *ec = train_and_eval_lines(c, &kc);
    cr_assert_eq(ka, 60 + 4, "60 train events and 4 evals (steps 0, 20, 40, 60): %d lines", ka);
    cr_assert_eq(ka, kb, "same seed: %d and %d lines", ka, kb);
    cr_assert_str_eq(ea, eb, "same seed: metrics.jsonl differs");
    cr_assert(strcmp(ea, ec) != 0, "another seed: the same metrics");
    free(ea), free(eb), free(ec);
    rm_run(a), rm_run(b), rm_run(c);
}

Test(train, init_from_a_model_file_continues_from_it, .timeout = 120) {
    char a[64], b[64], model[600];
    snprintf(a, sizeof a, "/tmp/loco-init-a-%d", (int)getpid());
    snprintf(b, sizeof b, "/tmp/loco-init-b-%d", (int)getpid());
    double first = train_tiny(a, 3, NULL);
    snprintf(model, sizeof model, "%s/model.bin", a);
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_file(&c, "configs/tiny.ini", &e), 0);
    c.model.layers = 5; /* the file's shape wins */
    c.train.steps = 1;
    c.train.lr = 1e-9;
    c.train.lr_min = 1e-9;
    c.eval.every = 0;
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = b;
    o.quiet = 1;
    o.init_path = model;
    cr_assert_eq(loco_train(&c, &o, &e), 0, "%s", e.msg);
    cr_assert_eq(c.model.layers, 2, "shape taken from the init file");
    char path[512];
    snprintf(path, sizeof path, "%s/summary.json", b);
    char *s = slurp(path);
    double loss = json_number(s, "final_val_loss");
    cr_assert_float_eq(loss, first, 1e-3, "one tiny step from the trained model: %g vs %g", loss,
                       first);
    free(s);
    rm_run(a), rm_run(b);
}

Test(train, single_with_k_workers_is_one_worker_with_a_k_times_batch, .timeout = 120) {
    char a[64], b[64];
    snprintf(a, sizeof a, "/tmp/loco-single-a-%d", (int)getpid());
    snprintf(b, sizeof b, "/tmp/loco-single-b-%d", (int)getpid());
    /* two accumulated batches of 8 against one batch of 16: the same windows in the same
     * order, the same mean gradient up to float rounding */
    const char *steps = "train.steps=8;eval.every=0";
    char sa[128], sb[128];
    snprintf(sa, sizeof sa, "%s;run.workers=2", steps);
    snprintf(sb, sizeof sb, "%s;train.batch=16", steps);
    /* (their validation losses differ: the validation batches are train.batch wide) */
    train_tiny(a, 5, sa);
    train_tiny(b, 5, sb);
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/model.bin", a);
    snprintf(pb, sizeof pb, "%s/model.bin", b);
    loco_model_file fa, fb;
    loco_err e;
    cr_assert_eq(loco_model_read(pa, &fa, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_model_read(pb, &fb, &e), 0, "%s", e.msg);
    double diff = 0;
    for (size_t i = 0; i < fa.m.nparams; i++) diff = fmax(diff, fabs(fa.params[i] - fb.params[i]));
    cr_assert_lt(diff, 1e-4, "parameters differ by %g", diff);
    loco_model_file_free(&fa);
    loco_model_file_free(&fb);
    rm_run(a), rm_run(b);
}

/* A write to metrics.jsonl that fails (here: a full device) is an error of the run, said
 * with the file and the reason, not silently lost; the summary and the model are still
 * written. */
Test(train, a_failed_write_of_the_events_is_reported, .timeout = 120) {
    char dir[64], link_path[128], model[128];
    snprintf(dir, sizeof dir, "/tmp/loco-full-%d", (int)getpid());
    snprintf(link_path, sizeof link_path, "%s/metrics.jsonl", dir);
    snprintf(model, sizeof model, "%s/model.bin", dir);
    mkdir(dir, 0777);
    unlink(link_path);
    cr_assert_eq(symlink("/dev/full", link_path), 0, "cannot link %s to /dev/full", link_path);
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_file(&c, "configs/tiny.ini", &e), 0, "%s", e.msg);
    c.train.steps = 5;
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    cr_assert_eq(loco_train(&c, &o, &e), -1, "the run reports the failed writes");
    cr_assert(strstr(e.msg, "metrics.jsonl") && strstr(e.msg, "No space left"), "%s", e.msg);
    cr_assert_eq(access(model, R_OK), 0, "the model was still saved");
    unlink(link_path);
    rm_run(dir);
}
