/* Whole asynchronous runs through loco_train: the equivalences of DESIGN.md section 3,
 * and the virtual clock's bit-for-bit reproducibility whatever the core count. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/checkpoint.h"
#include "loco/config.h"
#include "loco/train.h"

/* a tiny model, short rounds, every arrival counted */
static const char base_ini[] =
    "[model]\nlayers = 2\nheads = 2\ndim = 32\nseq_len = 32\n"
    "[train]\nbatch = 4\nsteps = 40\nwarmup = 5\nlr = 2e-3\nlr_min = 2e-4\n"
    "[eval]\nbatches = 2\nevery_updates = 4\n"
    "[outer]\nlocal_steps = 5\nlr = 0.5\nmomentum = 0.9\n"
    "[run]\nclock = virtual\n";

/* runs base_ini + the --set assignments (NULL-terminated) into dir */
static void run_into(const char *dir, const char **sets) {
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    cr_assert_eq(loco_config_load_string(&c, base_ini, "base", &e), 0, "%s", e.msg);
    for (int i = 0; sets[i]; i++) cr_assert_eq(loco_config_set(&c, sets[i], &e), 0, "%s", e.msg);
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    cr_assert_eq(loco_train(&c, &o, &e), 0, "%s", e.msg);
}

static void dir_for(char *buf, const char *tag) {
    snprintf(buf, 128, "/tmp/loco-engine-%s-%d", tag, (int)getpid());
}

static void rm_run(const char *dir) {
    const char *files[] = {"metrics.jsonl", "summary.json", "config.ini", "model.bin"};
    char path[256];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static loco_model_file model_of(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/model.bin", dir);
    loco_model_file f;
    loco_err e;
    cr_assert_eq(loco_model_read(path, &f, &e), 0, "%s", e.msg);
    return f;
}

/* largest |a - b| over the parameters, and the largest |a| */
static void compare(const char *da, const char *db, double *diff, double *scale) {
    loco_model_file a = model_of(da), b = model_of(db);
    cr_assert_eq(a.m.nparams, b.m.nparams);
    *diff = 0, *scale = 0;
    for (size_t i = 0; i < a.m.nparams; i++) {
        *diff = fmax(*diff, fabs((double)a.params[i] - b.params[i]));
        *scale = fmax(*scale, fabs((double)a.params[i]));
    }
    loco_model_file_free(&a);
    loco_model_file_free(&b);
}

Test(engine, delayed_nesterov_with_a_full_grace_window_is_sync, .timeout = 300) {
    char a[128], b[128];
    dir_for(a, "dn-grace");
    dir_for(b, "sync");
    const char *dn[] = {"run.workers=4", "outer.method=async-dn", "outer.dn_period=4",
                        "outer.grace_s=0.5", NULL};
    const char *sync[] = {"run.workers=4", "outer.method=sync", NULL};
    run_into(a, dn);
    run_into(b, sync);
    double diff, scale;
    compare(a, b, &diff, &scale);
    cr_assert_lt(diff, 1e-4 * scale, "DN + grace vs sync: parameters differ by %g (scale %g)",
                 diff, scale);
    cr_assert_gt(scale, 0.0);
    rm_run(a), rm_run(b);
}

Test(engine, delayed_nesterov_with_period_1_is_nesterov_on_every_arrival, .timeout = 300) {
    char a[128], b[128];
    dir_for(a, "dn1");
    dir_for(b, "async");
    const char *dn[] = {"run.workers=3", "outer.method=async-dn", "outer.dn_period=1",
                        "outer.dn_c=0", "hetero.level=moderate", NULL};
    const char *nes[] = {"run.workers=3", "outer.method=async", "hetero.level=moderate", NULL};
    run_into(a, dn);
    run_into(b, nes);
    double diff, scale;
    compare(a, b, &diff, &scale);
    cr_assert_lt(diff, 1e-4 * scale, "DN(N=1) vs async Nesterov: differ by %g", diff);
    rm_run(a), rm_run(b);
}

Test(engine, one_worker_async_sgd_with_lr_1_is_plain_training, .timeout = 300) {
    char a[128], b[128];
    dir_for(a, "sgd1");
    dir_for(b, "plain");
    const char *sgd[] = {"run.workers=1", "outer.method=async-sgd", "outer.lr=1", NULL};
    const char *plain[] = {"run.workers=1", "outer.method=single", NULL};
    run_into(a, sgd);
    run_into(b, plain);
    double diff, scale;
    compare(a, b, &diff, &scale);
    cr_assert_lt(diff, 1e-5 * scale, "async-sgd(1 worker, lr 1) vs plain: differ by %g", diff);
    rm_run(a), rm_run(b);
}

/* the lines of one kind of event, with their wall_s field cut out */
static char *events_of(const char *dir, const char *kind) {
    char path[256], line[4096], want[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(want, sizeof want, "{\"event\":\"%s\"", kind);
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want)) != 0) continue;
        char *w = strstr(line, ",\"wall_s\":");
        if (w) {
            char *end = strchr(w + 1, ',');
            memmove(w, end, strlen(end) + 1);
        }
        size_t n = strlen(line);
        if (len + n + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + len, line, n + 1);
        len += n;
    }
    fclose(f);
    return out;
}

static char *file_bytes(const char *dir, const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*len + 1); /* NUL-terminated: callers search it as text */
    cr_assert_eq(fread(b, 1, *len, f), *len);
    b[*len] = '\0';
    fclose(f);
    return b;
}

Test(engine, virtual_clock_runs_are_bit_for_bit_reproducible, .timeout = 300) {
    char a[128], b[128], c[128];
    dir_for(a, "v1");
    dir_for(b, "v2");
    dir_for(c, "v3");
    /* six workers on this 2-core machine: heterogeneous, jittered, DyLU, a grace period */
    const char *s1[] = {"run.workers=6", "outer.method=async-dn", "outer.dylu=on",
                        "hetero.level=very", "hetero.jitter=0.3", "outer.grace_s=0.3",
                        "run.seed=11", NULL};
    const char *s2[] = {"run.workers=6", "outer.method=async-dn", "outer.dylu=on",
                        "hetero.level=very", "hetero.jitter=0.3", "outer.grace_s=0.3",
                        "run.seed=12", NULL};
    run_into(a, s1);
    run_into(b, s1);
    run_into(c, s2);
    size_t la, lb, lc;
    char *ma = file_bytes(a, "model.bin", &la), *mb = file_bytes(b, "model.bin", &lb);
    char *mc = file_bytes(c, "model.bin", &lc);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(ma, mb, la), 0, "same seed: model.bin differs");
    cr_assert(la != lc || memcmp(ma, mc, la) != 0, "another seed: the same model.bin");
    char *ea = events_of(a, "eval"), *eb = events_of(b, "eval"), *ec = events_of(c, "eval");
    cr_assert_gt(strlen(ea), 100, "eval events were written");
    cr_assert_str_eq(ea, eb, "same seed: eval lines differ");
    cr_assert(strcmp(ea, ec) != 0, "another seed: the same eval lines");
    char *aa = events_of(a, "arrival"), *ab = events_of(b, "arrival");
    cr_assert_str_eq(aa, ab, "same seed: arrivals differ");
    free(ma), free(mb), free(mc), free(ea), free(eb), free(ec), free(aa), free(ab);
    rm_run(a), rm_run(b), rm_run(c);
}

/* the sum of every "key":N in a JSON text */
static long sum_field(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    long total = 0;
    for (const char *p = strstr(json, pat); p; p = strstr(p + 1, pat)) total += strtol(p + strlen(pat), NULL, 10);
    return total;
}

/* The real clock's paths (emulated slowdowns, measured DyLU speeds, a grace window that
 * closes on a deadline, the sync barrier): they run to the end, every local step of the
 * budget is done and arrives, and the result has learnt something. Under ThreadSanitizer
 * this is where the threads really race. */
Test(engine, real_clock_runs_finish_their_budget, .timeout = 300) {
    const char *methods[][6] = {
        {"outer.method=async-dn", "outer.dylu=on", "hetero.level=moderate", "outer.grace_s=0.002", NULL},
        {"outer.method=sync", "hetero.slowdown=1,1.5,2", "hetero.mode=spin", NULL},
        {"outer.method=async-buffer", "outer.staleness=polythres", "outer.stale_max=3", NULL},
        {"outer.method=async", "outer.delay_comp=0.1", "outer.staleness=poly", NULL},
    };
    for (int k = 0; k < 4; k++) {
        char dir[128];
        dir_for(dir, "real");
        const char *sets[10] = {"run.clock=real", "run.workers=3", "train.steps=20"};
        int n = 3;
        for (int i = 0; methods[k][i]; i++) sets[n++] = methods[k][i];
        sets[n] = NULL;
        run_into(dir, sets);
        size_t len;
        char *summary = file_bytes(dir, "summary.json", &len);
        cr_assert(strstr(summary, "\"local_steps\":60,"), "method %d: all 3 x 20 steps arrived: %.300s", k, summary);
        cr_assert(strstr(summary, "\"status\":\"finished\""), "%.200s", summary);
        /* no push is lost: every round's arrival was applied or rejected */
        long rounds = sum_field(summary, "rounds"), applied = sum_field(summary, "updates");
        long rejected = sum_field(summary, "rejected_nonfinite") + sum_field(summary, "rejected_stale");
        cr_assert_eq(rounds, applied + rejected, "method %d: %ld arrivals, %ld applied + %ld rejected",
                     k, rounds, applied, rejected);
        free(summary);
        rm_run(dir);
    }
}
