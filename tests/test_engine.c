/* Whole asynchronous runs through loco_train: the equivalences of docs/method.md (4.6),
 * learning, and the virtual clock's commit order and bit-for-bit reproducibility whatever
 * the core count. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/modelfile.h"
#include "loco/config.h"
#include "loco/outer.h"
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
    const char *files[] = {"metrics.jsonl", "summary.json", "config.ini", "model.bin", "lock"};
    char path[256];
    for (int i = 0; i < 5; i++) {
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

/* largest |a - b| over the parameters of two runs */
static double max_diff(const char *da, const char *db) {
    double diff, scale;
    compare(da, db, &diff, &scale);
    return diff;
}

/* The parameters every run of base_ini (seed 1) starts from: one step at learning rate 0
 * leaves them as they were initialised. */
static void initial_params_into(const char *dir) {
    const char *init[] = {"run.workers=1", "outer.method=single", "train.steps=1",
                          "train.lr=0", "train.lr_min=0", NULL};
    run_into(dir, init);
}

/* metrics.jsonl of dir, NUL-terminated */
static char *metrics_of(const char *dir);

/* The number after "key": in a JSON line (which must have it). */
static double num_field(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    cr_assert(p, "no %s in %.200s", key, line);
    char *end;
    double v = strtod(p + strlen(pat), &end);
    cr_assert(end != p + strlen(pat), "%s is not a number in %.200s", key, line);
    return v;
}

/* The lines of one kind of event, in file order: up to max, pointing into text (which the
 * call cuts into lines). Returns their count. */
static int lines_of(char *text, const char *kind, char **out, int max) {
    char want[64], *save = NULL;
    snprintf(want, sizeof want, "{\"event\":\"%s\",", kind);
    int n = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, want, strlen(want)) != 0) continue;
        cr_assert_lt(n, max, "more than %d %s events", max, kind);
        out[n++] = line;
    }
    return n;
}

/* DN with N = k workers and c = 0, and a grace window that holds every worker's arrival,
 * is sync (DiLoCo): in each window the k arrivals start from the same theta, the k - 1
 * in-between ones move theta by -lr g / N and accumulate g, and the N-th applies the
 * momentum: together one Nesterov step on the mean, as sync's barrier does. The workers' finishing times are spread out inside the
 * window (slowdowns 1 .. 1.15 on the virtual clock: 5, 5.25, 5.5, 5.75 s after the round
 * starts, a grace of 1 s), so the window, not a tie, holds them together. The parameters
 * agree to float rounding (the two sum the same deltas in a different order), while both
 * moved from the initial parameters by far more than that: a run that did nothing cannot
 * pass. */
Test(engine, delayed_nesterov_with_a_full_grace_window_is_sync, .timeout = 300) {
    char a[128], b[128], z[128];
    dir_for(a, "dn-grace");
    dir_for(b, "sync");
    dir_for(z, "init");
    const char *dn[] = {"run.workers=4", "outer.method=async-dn", "outer.dn_period=4",
                        "outer.dn_c=0", "outer.grace_s=1", "hetero.slowdown=1,1.05,1.1,1.15",
                        NULL};
    const char *sync[] = {"run.workers=4", "outer.method=sync", "hetero.slowdown=1,1.05,1.1,1.15",
                          NULL};
    run_into(a, dn);
    run_into(b, sync);
    initial_params_into(z);

    /* the premise: 4 x 40 steps = 32 rounds of 5 steps arrive in 8 windows of 4, each
     * window's arrivals at 4 distinct times no more than grace_s after its first, the next
     * window's first after the close */
    char *text = metrics_of(a), *arr[64];
    int n = lines_of(text, "arrival", arr, 64);
    cr_assert_eq(n, 32, "%d arrivals, expected 32", n);
    double close = -1;
    for (int w = 0; w < n / 4; w++) {
        double t0 = num_field(arr[4 * w], "time_s");
        cr_assert_gt(t0, close, "window %d opens at %g, before the last one closed at %g", w,
                     t0, close);
        int seen = 0;
        for (int i = 0; i < 4; i++) {
            const char *line = arr[4 * w + i];
            double t = num_field(line, "time_s");
            cr_assert(strstr(line, "\"status\":\"applied\""), "not applied: %s", line);
            seen |= 1 << (int)num_field(line, "worker");
            cr_assert_leq(t - t0, 1.0, "window %d: an arrival %g s after the first", w, t - t0);
            if (i > 0)
                cr_assert_gt(t, num_field(arr[4 * w + i - 1], "time_s"),
                             "window %d: arrivals %d and %d at the same time", w, i - 1, i);
        }
        cr_assert_eq(seen, 15, "window %d does not hold every worker", w);
        cr_assert_geq(num_field(arr[4 * w + 3], "time_s") - t0, 0.7,
                      "window %d: finishing times not spread out", w);
        close = t0 + 1.0;
    }
    free(text);

    double diff, scale;
    compare(a, b, &diff, &scale);
    double tol = 1e-4 * scale, moved_dn = max_diff(a, z), moved_sync = max_diff(b, z);
    cr_assert_gt(scale, 0.1, "parameters of scale %g", scale);
    cr_assert_leq(diff, tol, "DN + grace vs sync: parameters differ by %g (tolerance %g)", diff,
                  tol);
    cr_assert_gt(moved_sync, 100 * tol, "sync moved only %g from the initial parameters "
                 "(tolerance %g)", moved_sync, tol);
    cr_assert_gt(moved_dn, 100 * tol, "DN moved only %g from the initial parameters "
                 "(tolerance %g)", moved_dn, tol);
    rm_run(a), rm_run(b), rm_run(z);
}

/* DN with N = 1 and c = 0 activates on every arrival: m = beta m + g, theta -= lr (g +
 * beta m), which is async Nesterov; so is async-buffer with N = 1. Other outer rules on the
 * same settings (DN with N = 3, async SGD) end far away, so the agreement cannot come from
 * outer.method or outer.dn_period being ignored. Outer lr 0.1: these runs learn (at 0.5
 * Nesterov on every arrival diverges). */
Test(engine, delayed_nesterov_with_period_1_is_nesterov_on_every_arrival, .timeout = 300) {
    char a[128], b[128], buf[128], dn3[128], sgd[128], z[128];
    dir_for(a, "dn1");
    dir_for(b, "async");
    dir_for(buf, "buf1");
    dir_for(dn3, "dn3");
    dir_for(sgd, "asgd");
    dir_for(z, "init1");
#define SAME "run.workers=3", "hetero.level=moderate", "outer.lr=0.1"
    const char *dn[] = {SAME, "outer.method=async-dn", "outer.dn_period=1", "outer.dn_c=0", NULL};
    const char *nes[] = {SAME, "outer.method=async", NULL};
    const char *buffer[] = {SAME, "outer.method=async-buffer", "outer.dn_period=1", NULL};
    const char *dn_3[] = {SAME, "outer.method=async-dn", "outer.dn_period=3", "outer.dn_c=0", NULL};
    const char *sgd_[] = {SAME, "outer.method=async-sgd", NULL};
#undef SAME
    run_into(a, dn);
    run_into(b, nes);
    run_into(buf, buffer);
    run_into(dn3, dn_3);
    run_into(sgd, sgd_);
    initial_params_into(z);
    double diff, scale;
    compare(a, b, &diff, &scale);
    double tol = 1e-4 * scale;
    cr_assert_gt(scale, 0.1, "parameters of scale %g", scale);
    cr_assert_leq(diff, tol, "DN(N=1) vs async Nesterov: differ by %g (tolerance %g)", diff, tol);
    double d_buf = max_diff(buf, b);
    cr_assert_leq(d_buf, tol, "async-buffer(N=1) vs async Nesterov: differ by %g", d_buf);
    double moved = max_diff(b, z), d_dn3 = max_diff(a, dn3), d_sgd = max_diff(a, sgd);
    cr_assert_gt(moved, 100 * tol, "async moved only %g from the initial parameters", moved);
    cr_assert_gt(d_dn3, 100 * tol, "DN(N=1) vs DN(N=3): only %g apart (tolerance %g)", d_dn3,
                 tol);
    cr_assert_gt(d_sgd, 100 * tol, "DN(N=1) vs async SGD: only %g apart (tolerance %g)", d_sgd,
                 tol);
    rm_run(a), rm_run(b), rm_run(buf), rm_run(dn3), rm_run(sgd), rm_run(z);
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

static char *metrics_of(const char *dir) {
    size_t len;
    return file_bytes(dir, "metrics.jsonl", &len);
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

/* outer.grace_close: a grace window that every live worker has joined closes then (all,
 * the default), not at its deadline. Four workers at 5, 5.25, 5.5 and 5.75 s per round and
 * a grace of 1 s: every window holds all four, so the two settings apply the same arrivals
 * to the same theta (the same bits), but `all` restarts at the last arrival, 5.75 s after
 * the first, as sync's barrier does (8 rounds: 46 s), and `deadline` after the full 1 s
 * (48 s). Before the setting, every window lasted its whole grace period. */
Test(engine, a_grace_window_closes_when_every_live_worker_has_joined, .timeout = 300) {
    char all[128], dl[128], sy[128];
    dir_for(all, "grace-all");
    dir_for(dl, "grace-deadline");
    dir_for(sy, "grace-sync");
    const char *a[] = {"run.workers=4", "outer.method=async-dn", "outer.grace_s=1",
                       "hetero.slowdown=1,1.05,1.1,1.15", NULL};
    const char *d[] = {"run.workers=4", "outer.method=async-dn", "outer.grace_s=1",
                       "outer.grace_close=deadline", "hetero.slowdown=1,1.05,1.1,1.15", NULL};
    const char *s[] = {"run.workers=4", "outer.method=sync", "hetero.slowdown=1,1.05,1.1,1.15",
                       NULL};
    run_into(all, a);
    run_into(dl, d);
    run_into(sy, s);
    size_t la, ld, ls;
    char *ja = file_bytes(all, "summary.json", &la), *jd = file_bytes(dl, "summary.json", &ld);
    char *js = file_bytes(sy, "summary.json", &ls);
    double ta = num_field(ja, "time_s"), td = num_field(jd, "time_s"), ts = num_field(js, "time_s");
    cr_assert_float_eq(ts, 46.0, 1e-9, "sync: %g simulated seconds", ts);
    cr_assert_float_eq(ta, ts, 1e-9, "grace_close = all: %g s, sync %g s", ta, ts);
    cr_assert_float_eq(td, 48.0, 1e-9, "grace_close = deadline: %g s", td);
    cr_assert_eq(max_diff(all, dl), 0.0, "the two closes applied different arrivals");
    free(ja), free(jd), free(js);
    rm_run(all), rm_run(dl), rm_run(sy);
}

/* No delay-compensation strength can corrupt the global parameters: at the largest
 * outer.delay_comp (1e6) the corrections are held to |g| and theta stays finite through a
 * whole heterogeneous run (before the hold, theta reached Inf within a few hundred
 * arrivals and the final loss was NaN). */
Test(engine, the_largest_delay_compensation_keeps_theta_finite, .timeout = 300) {
    char d[128];
    dir_for(d, "dc");
    const char *sets[] = {"run.workers=4", "outer.method=async", "outer.delay_comp=1e6",
                          "outer.lr=0.7", "hetero.level=very", "train.steps=80", NULL};
    run_into(d, sets);
    loco_model_file f = model_of(d);
    cr_assert(loco_all_finite(f.params, f.m.nparams), "theta is not finite");
    loco_model_file_free(&f);
    size_t len;
    char *sum = file_bytes(d, "summary.json", &len);
    cr_assert(strstr(sum, "\"status\":\"finished\""), "%.300s", sum);
    cr_assert(isfinite(num_field(sum, "final_val_loss")), "%.300s", sum);
    double share = num_field(sum, "dc_held_share");
    cr_assert(share > 0 && share <= 1, "the share of corrections held: %g", share);
    free(sum);
    rm_run(d);
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

/* Four heterogeneous workers under Delayed Nesterov on the virtual clock learn: the final
 * validation loss is more than a nat below the first evaluation's (after 4 updates, 20
 * local steps). Over seeds 1..10 the drop is 1.82..1.89 nats (first 5.15..5.23, final
 * 3.30..3.34, the unigram entropy of the corpus being 3.15); a broken outer rule (theta
 * not updated, the momentum wrong by a sign or a factor N) stays near the first value or
 * diverges above it. */
Test(engine, four_async_dn_workers_learn, .timeout = 300) {
    char a[128];
    dir_for(a, "learn");
    const char *dn[] = {"run.workers=4", "outer.method=async-dn", "hetero.level=moderate", NULL};
    run_into(a, dn);
    char *text = metrics_of(a), *evals[64];
    int n = lines_of(text, "eval", evals, 64);
    cr_assert_geq(n, 4, "only %d eval events", n);
    double first = num_field(evals[0], "val_loss");
    cr_assert_eq(num_field(evals[0], "updates"), 0.0, "first eval, of theta(0): %s", evals[0]);
    cr_assert_eq(num_field(evals[1], "updates"), 4.0, "then every 4 updates: %s", evals[1]);
    free(text);
    size_t len;
    char *summary = file_bytes(a, "summary.json", &len);
    cr_assert(strstr(summary, "\"method\":\"async-dn\""), "%.200s", summary);
    cr_assert(strstr(summary, "\"local_steps\":160,"), "all 4 x 40 steps: %.300s", summary);
    double final = num_field(summary, "final_val_loss");
    free(summary);
    cr_assert_lt(final, first - 1.0, "final val loss %.4f is not a nat below the first "
                 "evaluation's %.4f", final, first);
    rm_run(a);
}

/* On the virtual clock pushes commit in order of virtual finish time, whatever the
 * threads do: in metrics.jsonl the arrivals' time_s never decrease, nor the evaluations'
 * (each evaluation is of the theta right after update u, stamped with the time of that
 * arrival). Six workers of very different speeds with a heavy per-step jitter (so a round
 * can take far longer or shorter than the last), DyLU, and a grace period that often holds
 * several arrivals, on two cores: the threads' real order is anything. Three seeds, each
 * run a fraction of a second. */
Test(engine, virtual_commit_times_never_decrease, .timeout = 300) {
    for (int seed = 11; seed <= 13; seed++) {
        char a[128], seed_set[32];
        dir_for(a, "times");
        snprintf(seed_set, sizeof seed_set, "run.seed=%d", seed);
        const char *sets[] = {"run.workers=6", "outer.method=async-dn", "outer.dylu=on",
                              "hetero.level=very", "hetero.jitter=2", "outer.grace_s=5",
                              seed_set, NULL};
        run_into(a, sets);
        char *text = metrics_of(a), *copy = strdup(text), *arr[512], *evals[128];
        int na = lines_of(text, "arrival", arr, 512), ne = lines_of(copy, "eval", evals, 128);
        cr_assert_geq(na, 60, "seed %d: only %d arrivals", seed, na);
        cr_assert_geq(ne, 10, "seed %d: only %d evaluations", seed, ne);
        for (int i = 1; i < na; i++)
            cr_assert_geq(num_field(arr[i], "time_s"), num_field(arr[i - 1], "time_s"),
                          "seed %d: arrival %d (of %d) committed at time_s %g, after one at %g:"
                          "\n%s\n%s", seed, i, na, num_field(arr[i], "time_s"),
                          num_field(arr[i - 1], "time_s"), arr[i - 1], arr[i]);
        cr_assert_eq(num_field(evals[0], "updates"), 0.0, "seed %d: theta(0) first", seed);
        double last_updates = 0;
        for (int i = 1; i < ne; i++) {
            double t = num_field(evals[i], "time_s"), u = num_field(evals[i], "updates");
            cr_assert_geq(t, num_field(evals[i - 1], "time_s"),
                              "seed %d: eval %d at time_s %g after eval %d at %g", seed, i, t,
                              i - 1, num_field(evals[i - 1], "time_s"));
            cr_assert_gt(u, last_updates, "seed %d: eval %d of update %g after update %g", seed,
                         i, u, last_updates);
            last_updates = u;
            /* stamped with the time of the arrival that made update u */
            int found = 0;
            for (int j = 0; j < na && !found; j++)
                if (strstr(arr[j], "\"status\":\"applied\"") && num_field(arr[j], "ticket") == u) {
                    cr_assert_eq(num_field(arr[j], "time_s"), t,
                                 "seed %d: eval of update %g at time_s %g, its arrival at %g",
                                 seed, u, t, num_field(arr[j], "time_s"));
                    found = 1;
                }
            cr_assert(found, "seed %d: no arrival made update %g", seed, u);
        }
        free(text), free(copy);
        rm_run(a);
    }
}

/* ---- the measurements are fair to sync ---- */

/* An evaluation sees every outer step its x-coordinate counts. A sync run of exactly one
 * round (4 workers x 5 steps) evaluated at update 4: that is the round's last arrival,
 * whose outer step (the round's Nesterov step on the mean) is applied when the round
 * closes; the evaluation must see it, so it equals the final model's loss. */
Test(engine, a_sync_evaluation_sees_the_round_it_closes, .timeout = 120) {
    char dir[128];
    dir_for(dir, "sync-eval");
    const char *sets[] = {"run.workers=4", "outer.method=sync", "outer.total_local_steps=20",
                          "eval.every_updates=4", NULL};
    run_into(dir, sets);
    char *text = metrics_of(dir), *evals[8];
    int n = lines_of(text, "eval", evals, 8);
    cr_assert_eq(n, 2, "theta(0), then update 4 (%d)", n);
    cr_assert_eq(num_field(evals[1], "updates"), 4.0, "%s", evals[1]);
    size_t len;
    char *summary = file_bytes(dir, "summary.json", &len);
    double at4 = num_field(evals[1], "val_loss"), final = num_field(summary, "final_val_loss");
    cr_assert_neq(at4, num_field(evals[0], "val_loss"), "theta moved in the round");
    cr_assert_eq(at4, final, "the evaluation at update 4 shows theta after the round: %.9g, "
                 "final %.9g", at4, final);
    free(text), free(summary);
    rm_run(dir);
}

/* Staleness counts the changes of theta since the worker's pull, not the arrivals: every
 * worker of a sync round starts from the same theta, so every arrival is fresh. */
Test(engine, sync_arrivals_are_never_stale, .timeout = 120) {
    char dir[128];
    dir_for(dir, "sync-stale");
    const char *sets[] = {"run.workers=4", "outer.method=sync", "hetero.level=very", NULL};
    run_into(dir, sets);
    size_t len;
    char *summary = file_bytes(dir, "summary.json", &len);
    cr_assert(strstr(summary, "\"staleness_hist\":[32,0,0,"), "all 32 arrivals at staleness 0: "
              "%.600s", strstr(summary, "staleness_hist"));
    free(summary);
    rm_run(dir);
}

/* The comparable schedule: whatever the method, evaluations stand at the same marks of
 * total local steps (a mark an arrival jumps over gets the same evaluation). */
Test(engine, every_method_is_evaluated_at_the_same_local_step_marks, .timeout = 300) {
    const char *methods[] = {"outer.method=sync", "outer.method=async", "outer.method=async-dn",
                             "outer.method=async-buffer"};
    char *first = NULL;
    for (int k = 0; k < 4; k++) {
        char dir[128];
        dir_for(dir, "marks");
        const char *sets[] = {"run.workers=3", methods[k], "hetero.level=moderate",
                              "outer.dylu=on", "eval.every_updates=0",
                              "eval.every_local_steps=15", NULL};
        if (k == 0) sets[3] = "outer.dylu=off";
        run_into(dir, sets);
        char *text = metrics_of(dir), *evals[64], marks[1024] = "";
        int n = lines_of(text, "eval", evals, 64) - 1; /* the first is theta(0)'s */
        cr_assert_eq(num_field(evals[0], "local_steps"), 0.0, "%s", evals[0]);
        for (int i = 1; i <= n; i++) {
            char m[32];
            snprintf(m, sizeof m, "%.0f,", num_field(evals[i], "at_local_steps"));
            strcat(marks, m);
            cr_assert_geq(num_field(evals[i], "local_steps"), num_field(evals[i], "at_local_steps"),
                          "%s: an evaluation counts every step of its mark", methods[k]);
        }
        cr_assert_eq(n, 120 / 15, "%s: %d evaluations, marks %s", methods[k], n, marks);
        if (!first) first = strdup(marks);
        cr_assert_str_eq(marks, first, "%s: marks differ", methods[k]);
        free(text);
        rm_run(dir);
    }
    cr_assert_str_eq(first, "15,30,45,60,75,90,105,120,");
    free(first);
}

/* ---- faults and poisoned updates ---- */

/* every parameter of dir's model.bin is finite */
static void expect_finite_model(const char *dir) {
    loco_model_file f = model_of(dir);
    for (size_t i = 0; i < f.m.nparams; i++)
        cr_assert(isfinite(f.params[i]), "%s: parameter %zu is %g", dir, i, (double)f.params[i]);
    loco_model_file_free(&f);
}

/* the value of "key": in dir's summary.json */
static double summary_num(const char *dir, const char *key) {
    size_t len;
    char *s = file_bytes(dir, "summary.json", &len);
    double v = num_field(s, key);
    free(s);
    return v;
}

/* Three workers, of which worker 1 fails and comes back and worker 2 fails for good
 * (each inside a round, which is lost): asynchronous DN and sync both go on with the
 * workers left, in both clocks, and finish the whole budget of 3 x 60 local steps;
 * each failure and the return is an event; every arrival is applied or rejected. The
 * real clock's workers are slowed ten times (sleeping) so the run outlasts the faults. */
Test(engine, runs_go_on_after_worker_failures_in_both_clocks, .timeout = 300) {
    const char *clocks[][4] = {
        {"run.clock=virtual", "faults.fail=1@7+10,2@12", "hetero.level=moderate", NULL},
        {"run.clock=real", "faults.fail=1@0.1+0.2,2@0.2", "hetero.slowdown=10,10,10", NULL},
    };
    const char *methods[] = {"outer.method=async-dn", "outer.method=sync"};
    for (int c = 0; c < 2; c++) {
        for (int k = 0; k < 2; k++) {
            char dir[128];
            dir_for(dir, "faults");
            const char *sets[] = {"run.workers=3", "train.steps=60", methods[k], clocks[c][0],
                                  clocks[c][1], clocks[c][2], NULL};
            run_into(dir, sets);
            size_t len;
            char *summary = file_bytes(dir, "summary.json", &len);
            cr_assert(strstr(summary, "\"status\":\"finished\""), "%s %s: %.200s", clocks[c][0],
                      methods[k], summary);
            cr_assert_eq(num_field(summary, "local_steps"), 180.0, "%s %s: the whole budget",
                         clocks[c][0], methods[k]);
            cr_assert_eq(num_field(summary, "faults"), 2.0, "%s %s", clocks[c][0], methods[k]);
            cr_assert_eq(num_field(summary, "returns"), 1.0, "%s %s", clocks[c][0], methods[k]);
            long rounds = sum_field(summary, "rounds"), applied = sum_field(summary, "updates");
            long rejected = sum_field(summary, "rejected");
            cr_assert_eq(rounds, applied + rejected, "%s %s: %ld arrivals, %ld applied, %ld "
                         "rejected", clocks[c][0], methods[k], rounds, applied, rejected);
            free(summary);
            char *faults = events_of(dir, "fault");
            cr_assert(strstr(faults, "{\"event\":\"fault\",\"worker\":1,\"kind\":\"fail\""), "%s", faults);
            cr_assert(strstr(faults, "{\"event\":\"fault\",\"worker\":2,\"kind\":\"gone\""), "%s", faults);
            cr_assert(strstr(faults, "{\"event\":\"fault\",\"worker\":1,\"kind\":\"back\""), "%s", faults);
            free(faults);
            expect_finite_model(dir);
            rm_run(dir);
        }
    }
}

/* The virtual clock's failures fall at the same virtual times whatever the threads do:
 * a run with failures is reproducible bit for bit. */
Test(engine, virtual_runs_with_failures_are_reproducible, .timeout = 300) {
    char a[128], b[128];
    dir_for(a, "vf1");
    dir_for(b, "vf2");
    const char *sets[] = {"run.workers=5", "outer.method=async-dn", "outer.dylu=on",
                          "hetero.level=very", "hetero.jitter=0.3", "outer.grace_s=0.5",
                          "faults.fail=1@7+10,2@12,4@3+30,1@40+2", NULL};
    run_into(a, sets);
    run_into(b, sets);
    size_t la, lb;
    char *ma = file_bytes(a, "model.bin", &la), *mb = file_bytes(b, "model.bin", &lb);
    cr_assert(la == lb && memcmp(ma, mb, la) == 0, "same seed and faults: model.bin differs");
    char *ea = events_of(a, "fault"), *eb = events_of(b, "fault");
    cr_assert_str_eq(ea, eb);
    cr_assert_eq(summary_num(a, "faults"), 4.0);
    free(ma), free(mb), free(ea), free(eb);
    rm_run(a), rm_run(b);
}

/* sync waits at most outer.sync_timeout_s for a late worker, then steps on what has
 * arrived: with a worker four times slower (rounds of 5 s and 20 s), a timeout of 2 s
 * lets the fast worker's rounds follow each other at most 7 s apart, where without it
 * each waits for the slow one; both runs do the whole budget. */
Test(engine, sync_steps_on_the_arrivals_it_has_after_its_timeout, .timeout = 120) {
    char a[128], b[128];
    dir_for(a, "sync-wait");
    dir_for(b, "sync-timeout");
    const char *wait[] = {"run.workers=2", "outer.method=sync", "hetero.slowdown=1,4", NULL};
    const char *timeout[] = {"run.workers=2", "outer.method=sync", "hetero.slowdown=1,4",
                             "outer.sync_timeout_s=2", NULL};
    run_into(a, wait);
    run_into(b, timeout);
    cr_assert_eq(summary_num(a, "local_steps"), 80.0);
    cr_assert_eq(summary_num(b, "local_steps"), 80.0);
    char *text = metrics_of(b), *arr[64];
    int n = lines_of(text, "arrival", arr, 64);
    double last = 0;
    int fast = 0;
    for (int i = 0; i < n; i++) {
        if (num_field(arr[i], "worker") != 0) continue;
        double t = num_field(arr[i], "time_s");
        cr_assert_leq(t - last, 7.0, "fast worker's arrival at %g, its last at %g", t, last);
        last = t;
        fast++;
    }
    cr_assert_geq(fast, 5, "the fast worker arrived %d times", fast);
    cr_assert_lt(summary_num(b, "time_s"), 0.7 * summary_num(a, "time_s"),
                 "the timeout saves time: %g s against %g s", summary_num(b, "time_s"),
                 summary_num(a, "time_s"));
    free(text);
    rm_run(a), rm_run(b);
}

/* A NaN pushed by worker 0 (its round 2) and worker 1's loss driven to NaN (its inner
 * lr blown up in round 2) are both rejected and counted; the diverged round gives the
 * steps it did not take back to the budget, which is done in full; theta stays finite;
 * and both workers' later rounds are applied again: their AdamW moments were reset (kept
 * NaN, every later delta would be rejected too). */
Test(engine, poisoned_deltas_and_diverged_losses_are_rejected_and_theta_stays_finite,
     .timeout = 120) {
    char dir[128];
    dir_for(dir, "poison");
    const char *sets[] = {"run.workers=3", "outer.method=async-dn", "hetero.level=slight",
                          "faults.inject_nan=0@2", "faults.inject_diverge=1@2", NULL};
    run_into(dir, sets);
    cr_assert_eq(summary_num(dir, "rejected_nonfinite"), 1.0);
    cr_assert_eq(summary_num(dir, "rejected_diverged"), 1.0);
    cr_assert_eq(summary_num(dir, "local_steps"), 120.0, "the whole budget");
    cr_assert(isfinite(summary_num(dir, "final_val_loss")));
    expect_finite_model(dir);
    char *text = metrics_of(dir), *arr[128];
    int n = lines_of(text, "arrival", arr, 128);
    int seen[2] = {0}, after[2] = {0};
    const char *want[2] = {"\"status\":\"nonfinite\"", "\"status\":\"diverged\""};
    for (int i = 0; i < n; i++) {
        int w = (int)num_field(arr[i], "worker");
        if (w > 1) continue;
        if (strstr(arr[i], want[w])) {
            seen[w]++;
            cr_assert_eq(seen[w], 1);
        } else if (seen[w]) {
            cr_assert(strstr(arr[i], "\"status\":\"applied\""), "after the rejection: %s", arr[i]);
            after[w]++;
        }
    }
    for (int w = 0; w < 2; w++)
        cr_assert(seen[w] == 1 && after[w] >= 3, "worker %d: %d rejected, %d applied after",
                  w, seen[w], after[w]);
    free(text);
    rm_run(dir);
}

/* outer.max_delta_norm below any real delta's norm: every arrival is rejected (status
 * "norm") before it touches the global buffer, which ends as it began. */
Test(engine, deltas_above_the_norm_limit_never_touch_theta, .timeout = 120) {
    char init[128], dir[128];
    dir_for(init, "norm-init");
    dir_for(dir, "norm");
    initial_params_into(init);
    const char *sets[] = {"run.workers=3", "outer.method=async-dn", "outer.max_delta_norm=1e-6",
                          NULL};
    run_into(dir, sets);
    cr_assert_eq(summary_num(dir, "updates"), 0.0);
    cr_assert_eq(summary_num(dir, "rejected_norm"), 24.0, "3 workers x 8 rounds");
    cr_assert_eq(max_diff(init, dir), 0.0, "theta moved");
    rm_run(init), rm_run(dir);
}

/* train.lr_progress: under sync, `run` is each worker's own step count, so the two give
 * the same parameters bit for bit; under DN + DyLU at `very`, where the workers take very
 * different numbers of steps, `run` brings every worker to lr_min as the budget ends,
 * while under `worker` the slowest is far from it (and the fastest sat at it for long). */
Test(engine, the_inner_schedule_follows_the_run, .timeout = 300) {
    char a[128], b[128];
    dir_for(a, "lr-run");
    dir_for(b, "lr-worker");
    const char *sync_run[] = {"run.workers=3", "outer.method=sync", "hetero.level=very",
                              "train.lr_progress=run", NULL};
    const char *sync_worker[] = {"run.workers=3", "outer.method=sync", "hetero.level=very",
                                 "train.lr_progress=worker", NULL};
    run_into(a, sync_run);
    run_into(b, sync_worker);
    cr_assert_eq(max_diff(a, b), 0.0, "sync: run and worker differ");
    rm_run(a), rm_run(b);
    const char *dn[] = {"run.workers=4", "outer.method=async-dn", "outer.dylu=on",
                        "hetero.level=very", "train.steps=120", "train.lr_progress=run", NULL};
    run_into(a, dn);
    const char *dn_worker[] = {"run.workers=4", "outer.method=async-dn", "outer.dylu=on",
                               "hetero.level=very", "train.steps=120", "train.lr_progress=worker",
                               NULL};
    run_into(b, dn_worker);
    size_t len;
    char *sa = file_bytes(a, "summary.json", &len), *sb = file_bytes(b, "summary.json", &len);
    double lr_min = 2e-4, worst_run = 0, worst_worker = 0; /* base_ini's train.lr_min */
    for (const char *p = sa; (p = strstr(p, "\"last_lr\":")); p++)
        worst_run = fmax(worst_run, num_field(p, "last_lr") / lr_min - 1);
    for (const char *p = sb; (p = strstr(p, "\"last_lr\":")); p++)
        worst_worker = fmax(worst_worker, num_field(p, "last_lr") / lr_min - 1);
    cr_assert_lt(worst_run, 0.05, "run: a worker's last rate is %.1f%% above lr_min:\n%s",
                 100 * worst_run, sa);
    cr_assert_gt(worst_worker, 0.5, "worker: the slowest should end far above lr_min:\n%s", sb);
    free(sa), free(sb);
    rm_run(a), rm_run(b);
    /* a run shorter than its schedule (a sweep's tuning run: half the budget) anneals
     * within its own budget under `run`; under `worker` it stops half-way down */
    const char *short_run[] = {"run.workers=3", "outer.method=sync", "outer.total_local_steps=60",
                               "train.lr_progress=run", NULL};
    const char *short_worker[] = {"run.workers=3", "outer.method=sync",
                                  "outer.total_local_steps=60", "train.lr_progress=worker", NULL};
    run_into(a, short_run);
    run_into(b, short_worker);
    sa = file_bytes(a, "summary.json", &len), sb = file_bytes(b, "summary.json", &len);
    double end_run = num_field(strstr(sa, "\"last_lr\":"), "last_lr");
    double end_worker = num_field(strstr(sb, "\"last_lr\":"), "last_lr");
    /* (its last step stands at (budget - workers) / budget of the schedule: 38 of 40) */
    cr_assert_lt(end_run / lr_min - 1, 0.1, "run: a short run ends at %g, not near lr_min", end_run);
    cr_assert_gt(end_worker / lr_min - 1, 1, "worker: a short run ends at %g", end_worker);
    free(sa), free(sb);
    rm_run(a), rm_run(b);
}
