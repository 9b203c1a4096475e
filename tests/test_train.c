/* Whole runs of configs/tiny.ini: it learns, it is reproducible, and it writes its outputs. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <sys/wait.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "files.h"
#include "loco/modelfile.h"
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
    const char *files[] = {"metrics.jsonl", "summary.json", "config.ini", "model.bin", "lock"};
    char path[512];
    for (int i = 0; i < 5; i++) {
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

/* ---- checkpoints and exact resume ---- */

/* configs/tiny.ini with `sets` (';'-separated) into dir; resume: from dir's checkpoint */
static void run_sets(const char *dir, const char *sets, int resume) {
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    if (resume) {
        char ini[512];
        snprintf(ini, sizeof ini, "%s/config.ini", dir);
        cr_assert_eq(loco_config_load_file(&c, ini, &e), 0, "%s", e.msg);
    } else {
        cr_assert_eq(loco_config_load_file(&c, "configs/tiny.ini", &e), 0, "%s", e.msg);
        char buf[512];
        snprintf(buf, sizeof buf, "%s", sets);
        for (char *tok = strtok(buf, ";"); tok; tok = strtok(NULL, ";"))
            cr_assert_eq(loco_config_set(&c, tok, &e), 0, "%s", e.msg);
    }
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    o.resume = resume;
    cr_assert_eq(loco_train(&c, &o, &e), 0, "%s", e.msg);
}

/* runs `sets` into dir (or resumes dir's run) in a child process that the kernel kills
 * (SIGKILL) right after its k-th checkpoint; returns whether it died so */
static int crash_run(const char *dir, const char *sets, int resume, int k) {
    pid_t pid = fork();
    if (pid == 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", k);
        setenv("LOCO_CRASH_AFTER_CHECKPOINT", v, 1);
        run_sets(dir, sets, resume);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

static int crash_after(const char *dir, const char *sets, int k) {
    return crash_run(dir, sets, 0, k);
}

/* summary.json without what depends on the wall clock */
static char *summary_sans_times(const char *dir) {
    size_t len;
    char *text = slurp_n(dir, "summary.json", &len);
    cJSON *j = cJSON_Parse(text);
    cr_assert_not_null(j, "summary.json of %s is not JSON", dir);
    const char *top[] = {"wall_s", "train_s", "tokens_per_s", "server_busy", "evaluator_busy",
                         "stripe_waits", "stripe_wait_s", "checkpoints", "checkpoint_s",
                         "checkpoint_write_s"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) cJSON_DeleteItemFromObject(j, top[i]);
    const cJSON *clock = cJSON_GetObjectItem(j, "clock");
    if (!cJSON_IsString(clock) || strcmp(clock->valuestring, "virtual"))
        cJSON_DeleteItemFromObject(j, "time_s"); /* wall time then */
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(j, "per_worker")) {
        const char *per[] = {"compute_s", "slowdown_s", "lockwait_s", "idle_s"};
        for (size_t i = 0; i < 4; i++) cJSON_DeleteItemFromObject((cJSON *)w, per[i]);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    free(text);
    return out;
}

/* metrics.jsonl without wall_s and tokens_per_s */
static char *events_sans_times(const char *dir) {
    size_t len;
    char *text = slurp_n(dir, "metrics.jsonl", &len);
    char *out = calloc(1, len + 1), *o = out;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cut_field(line, "wall_s");
        cut_field(line, "tokens_per_s");
        o += sprintf(o, "%s\n", line);
    }
    free(text);
    return out;
}

static void expect_same_run(const char *a, const char *b, const char *what) {
    size_t la, lb;
    char *ma = slurp_n(a, "model.bin", &la), *mb = slurp_n(b, "model.bin", &lb);
    cr_assert(la == lb && !memcmp(ma, mb, la), "%s: model.bin differs", what);
    char *sa = summary_sans_times(a), *sb = summary_sans_times(b);
    cr_assert_str_eq(sa, sb, "%s: summary.json differs:\n%s\n%s", what, sa, sb);
    char *ea = events_sans_times(a), *eb = events_sans_times(b);
    cr_assert_str_eq(ea, eb, "%s: metrics.jsonl differs", what);
    free(ma), free(mb), free(sa), free(sb), free(ea), free(eb);
}

static void rm_checkpointed(const char *dir) {
    const char *more[] = {"checkpoint.bin", "checkpoint.prev.bin", "checkpoint.bin.tmp",
                          "checkpoint.bad.bin"};
    char path[512];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, more[i]);
        unlink(path);
    }
    rm_run(dir);
}

/* where the checkpoint dir/name found its run */
static void describe_file(const char *dir, const char *name, char *buf, size_t n) {
    char path[512];
    loco_err e;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(loco_checkpoint_describe(path, buf, n, &e), 0, "%s", e.msg);
}

static void describe(const char *dir, char *buf, size_t n) {
    describe_file(dir, "checkpoint.bin", buf, n);
}

/* Killed right after checkpoint k (for the first k whose description contains `want`),
 * then resumed: the same model.bin, summary.json and metrics.jsonl (wall times aside) as
 * the run that was never stopped. */
static void resume_is_exact(const char *sets, const char *want, const char *tag) {
    char ref[64], cut[64], what[2 * LOCO_ERR_LEN];
    snprintf(ref, sizeof ref, "/tmp/loco-resume-ref-%s-%d", tag, (int)getpid());
    snprintf(cut, sizeof cut, "/tmp/loco-resume-cut-%s-%d", tag, (int)getpid());
    run_sets(ref, sets, 0);
    int k = 1, found = 0;
    for (; k <= 12 && !found; k++) {
        rm_checkpointed(cut);
        cr_assert(crash_after(cut, sets, k), "%s: the run was not killed after checkpoint %d", tag, k);
        describe(cut, what, sizeof what);
        found = strstr(what, want) != NULL;
    }
    cr_assert(found, "%s: no checkpoint caught the run with '%s' (last: %s)", tag, want, what);
    run_sets(cut, sets, 1);
    expect_same_run(ref, cut, what);
    rm_checkpointed(ref), rm_checkpointed(cut);
}

Test(train, a_killed_asynchronous_run_resumes_exactly_even_in_a_grace_window, .timeout = 300) {
    resume_is_exact("run.workers=4;outer.method=async-dn;outer.dylu=on;outer.grace_s=3;"
                    "hetero.level=very;run.clock=virtual;outer.local_steps=10;"
                    "train.checkpoint_every=2;eval.every_updates=3;train.steps=60",
                    "(with a deadline)", "grace");
}

Test(train, a_killed_sync_run_resumes_exactly_in_the_middle_of_a_round, .timeout = 300) {
    resume_is_exact("run.workers=3;outer.method=sync;hetero.level=moderate;run.clock=virtual;"
                    "outer.local_steps=10;train.checkpoint_every=2;eval.every_updates=2;"
                    "train.steps=60",
                    "2 in a window", "sync");
}

Test(train, a_killed_run_resumes_exactly_while_a_worker_is_away, .timeout = 300) {
    resume_is_exact("run.workers=3;outer.method=async-dn;hetero.level=moderate;run.clock=virtual;"
                    "outer.local_steps=10;train.checkpoint_every=2;eval.every_updates=2;"
                    "train.steps=60;faults.fail=1@15+40,2@30;faults.inject_nan=0@3",
                    "1 failed or away", "away");
}

Test(train, a_killed_single_worker_run_resumes_exactly, .timeout = 300) {
    resume_is_exact("train.checkpoint_every=40;train.steps=150;eval.every=25;run.clock=virtual",
                    "step 80", "single");
}

static void flip_byte_in(const char *dir, const char *name, long at) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    flip_byte(path, at);
}

static int resume_fails(const char *dir, loco_err *e) {
    loco_config c;
    char ini[512];
    snprintf(ini, sizeof ini, "%s/config.ini", dir);
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_file(&c, ini, e), 0, "%s", e->msg);
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    o.resume = 1;
    return loco_train(&c, &o, e) != 0;
}

/* A corrupt newest checkpoint is refused and the one before is used (the run still ends
 * exactly as if never stopped); with both refused, or with another config, resuming is
 * an error that says what is wrong. */
Test(train, a_bad_checkpoint_is_refused_and_the_one_before_is_used, .timeout = 300) {
    const char *sets = "run.workers=3;outer.method=async-dn;hetero.level=moderate;"
                       "run.clock=virtual;outer.local_steps=10;train.checkpoint_every=2;"
                       "train.steps=40";
    char ref[64], cut[64];
    snprintf(ref, sizeof ref, "/tmp/loco-badckpt-ref-%d", (int)getpid());
    snprintf(cut, sizeof cut, "/tmp/loco-badckpt-cut-%d", (int)getpid());
    run_sets(ref, sets, 0);
    rm_checkpointed(cut);
    cr_assert(crash_after(cut, sets, 3));
    flip_byte_in(cut, "checkpoint.bin", 4000);
    loco_err e;
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.bin", cut);
    cr_assert_neq(loco_checkpoint_describe(path, path, sizeof path, &e), 0);
    cr_assert(strstr(e.msg, "checksum mismatch"), "%s", e.msg);
    run_sets(cut, sets, 1); /* from checkpoint.prev.bin */
    expect_same_run(ref, cut, "resumed from the checkpoint before");
    /* both bad: an error naming both */
    rm_checkpointed(cut);
    cr_assert(crash_after(cut, sets, 3));
    flip_byte_in(cut, "checkpoint.bin", 100);
    snprintf(path, sizeof path, "%s/checkpoint.prev.bin", cut);
    truncate(path, 5000);
    cr_assert(resume_fails(cut, &e));
    cr_assert(strstr(e.msg, "checkpoint.bin: checksum mismatch") &&
              strstr(e.msg, "checkpoint.prev.bin: truncated"), "%s", e.msg);
    /* another config */
    rm_checkpointed(cut);
    cr_assert(crash_after(cut, sets, 2));
    snprintf(path, sizeof path, "%s/config.ini", cut);
    loco_config changed;
    loco_config_default(&changed);
    cr_assert_eq(loco_config_load_file(&changed, path, &e), 0, "%s", e.msg);
    changed.train.lr *= 2;
    FILE *f = fopen(path, "w");
    cr_assert_eq(loco_config_write(&changed, f), 0);
    fclose(f);
    cr_assert(resume_fails(cut, &e));
    cr_assert(strstr(e.msg, "another config"), "%s", e.msg);
    rm_checkpointed(ref), rm_checkpointed(cut);
}

/* damages dir/name: "flip" a byte inside, "cut" it short, make it "gone"; NULL: none */
static void damage(const char *dir, const char *name, const char *how) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!how) return;
    if (!strcmp(how, "flip")) flip_byte_in(dir, name, 4000);
    else if (!strcmp(how, "cut")) cr_assert_eq(truncate(path, 5000), 0, "%s", path);
    else cr_assert_eq(unlink(path), 0, "%s", path);
}

static void expect_at(const char *dir, const char *name, const char *want) {
    char what[2 * LOCO_ERR_LEN];
    describe_file(dir, name, what, sizeof what);
    cr_assert(strstr(what, want), "%s: expected %s in: %s", name, want, what);
}

/* Killed after its third checkpoint (at update 6, the one before at 4), one or both of
 * the two checkpoints damaged as cur and prev say, then resumed and killed again after
 * the resumed run's first checkpoint: the refused one is set aside as checkpoint.bad.bin
 * byte for byte and never becomes checkpoint.prev.bin, the one resumed from is kept
 * beside the new one, and the run, resumed to its end, is the run never stopped. */
static void damage_then_resume(const char *ref, const char *cut, const char *cur,
                               const char *prev, const char *prev_at, const char *cur_at) {
    const char *sets = "run.workers=3;outer.method=async-dn;hetero.level=moderate;"
                       "run.clock=virtual;outer.local_steps=10;train.checkpoint_every=2;"
                       "train.steps=40";
    rm_checkpointed(cut);
    cr_assert(crash_after(cut, sets, 3));
    expect_at(cut, "checkpoint.bin", "at 6 server updates");
    damage(cut, "checkpoint.bin", cur);
    damage(cut, "checkpoint.prev.bin", prev);
    const char *bad = cur && strcmp(cur, "gone") ? "checkpoint.bin"
                      : prev && strcmp(prev, "gone") ? "checkpoint.prev.bin" : NULL;
    size_t bad_len = 0, aside_len = 0;
    char *bad_bytes = bad ? slurp_n(cut, bad, &bad_len) : NULL;
    cr_assert(crash_run(cut, sets, 1, 1), "the resumed run was not killed after its checkpoint");
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.bad.bin", cut);
    if (bad) {
        char *aside = slurp_n(cut, "checkpoint.bad.bin", &aside_len);
        cr_assert(aside_len == bad_len && !memcmp(aside, bad_bytes, bad_len),
                  "checkpoint.bad.bin is not the damaged %s", bad);
        free(aside);
    } else {
        cr_assert_neq(access(path, F_OK), 0, "nothing was refused, yet a checkpoint.bad.bin");
    }
    expect_at(cut, "checkpoint.prev.bin", prev_at);
    expect_at(cut, "checkpoint.bin", cur_at);
    run_sets(cut, sets, 1);
    expect_same_run(ref, cut, "resumed after damage");
    free(bad_bytes);
}

Test(train, a_refused_checkpoint_is_set_aside_and_never_rotated_over_the_good_one,
     .timeout = 300) {
    char ref[64], cut[64];
    snprintf(ref, sizeof ref, "/tmp/loco-aside-ref-%d", (int)getpid());
    snprintf(cut, sizeof cut, "/tmp/loco-aside-cut-%d", (int)getpid());
    run_sets(ref, "run.workers=3;outer.method=async-dn;hetero.level=moderate;"
                  "run.clock=virtual;outer.local_steps=10;train.checkpoint_every=2;"
                  "train.steps=40", 0);
    /* the newest damaged (cut short, or a byte changed): resumed from the one before */
    damage_then_resume(ref, cut, "cut", NULL, "at 4 server updates", "at 6 server updates");
    damage_then_resume(ref, cut, "flip", NULL, "at 4 server updates", "at 6 server updates");
    /* the one before damaged: resumed from the newest, which becomes the one before */
    damage_then_resume(ref, cut, NULL, "cut", "at 6 server updates", "at 8 server updates");
    /* the newest gone (a crash between the two renames): nothing to set aside */
    damage_then_resume(ref, cut, "gone", NULL, "at 4 server updates", "at 6 server updates");
    /* both refused: an error, and not a file moved or changed */
    rm_checkpointed(cut);
    const char *sets = "run.workers=3;outer.method=async-dn;hetero.level=moderate;"
                       "run.clock=virtual;outer.local_steps=10;train.checkpoint_every=2;"
                       "train.steps=40";
    cr_assert(crash_after(cut, sets, 3));
    damage(cut, "checkpoint.bin", "flip");
    damage(cut, "checkpoint.prev.bin", "cut");
    size_t la, lb, la2, lb2;
    char *a = slurp_n(cut, "checkpoint.bin", &la), *b = slurp_n(cut, "checkpoint.prev.bin", &lb);
    loco_err e;
    cr_assert(resume_fails(cut, &e));
    char *a2 = slurp_n(cut, "checkpoint.bin", &la2), *b2 = slurp_n(cut, "checkpoint.prev.bin", &lb2);
    cr_assert(la == la2 && lb == lb2 && !memcmp(a, a2, la) && !memcmp(b, b2, lb),
              "a refused resume changed a checkpoint");
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.bad.bin", cut);
    cr_assert_neq(access(path, F_OK), 0, "a refused resume set a checkpoint aside");
    free(a), free(b), free(a2), free(b2);
    rm_checkpointed(ref), rm_checkpointed(cut);
}

/* dir/checkpoint.bin cut (or grown) to a payload of n bytes, with its trailer (length and
 * CRC-32) made right again: a frame that passes, around a state that is short. */
static void reframe(const char *dir, size_t payload) {
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
    size_t len;
    unsigned char *b = (unsigned char *)slurp_n(dir, "checkpoint.bin", &len);
    cr_assert_geq(len, 32 + payload + 16);
    uint64_t trailer[2] = {payload, crc32(crc32(0L, Z_NULL, 0), b + 32, (uInt)payload)};
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(b, 1, 32 + payload, f);
    fwrite(trailer, sizeof trailer, 1, f);
    fclose(f);
    free(b);
}

/* Found by the checkpoint fuzz target (tests/fuzz/fuzz_checkpoint.c): a file whose length
 * is not a multiple of 8 had its trailer read misaligned; a state cut short inside the
 * global buffer was stepped over past its end and read beyond the file. Both are refused,
 * with the reason, by `loco check` and by a resume. */
Test(train, checkpoints_damaged_inside_are_refused_without_reading_past_them, .timeout = 120) {
    const char *sets = "run.workers=2;outer.method=async-dn;run.clock=virtual;"
                       "outer.local_steps=5;train.checkpoint_every=2;train.steps=40";
    char dir[64], path[512];
    snprintf(dir, sizeof dir, "/tmp/loco-ckpt-inside-%d", (int)getpid());
    snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
    rm_checkpointed(dir);
    cr_assert(crash_after(dir, sets, 2));
    FILE *f = fopen(path, "ab");
    fputs("xyz", f); /* now misaligned */
    fclose(f);
    loco_err e;
    char what[1024];
    cr_assert_neq(loco_checkpoint_describe(path, what, sizeof what, &e), 0);
    cr_assert(strstr(e.msg, "truncated or extended"), "%s", e.msg);
    reframe(dir, 32 + 8 + 4000); /* the run's part, then a few floats of theta */
    cr_assert_neq(loco_checkpoint_describe(path, what, sizeof what, &e), 0);
    cr_assert(strstr(e.msg, "short or mangled"), "%s", e.msg);
    /* a resume reads it as describe does (its checksum is right, so it is the one used) */
    cr_assert(resume_fails(dir, &e));
    cr_assert(strstr(e.msg, "short or mangled"), "%s", e.msg);
    rm_checkpointed(dir);
}
