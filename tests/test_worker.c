/* The worker's step: allocation-free, deterministic, and the same as the model + AdamW
 * pieces composed by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xmmintrin.h>

#include "loco/config.h"
#include "loco/settings.h"
#include "loco/cpu.h"
#include "loco/train.h"
#include "loco/worker.h"
#include "bf16.h"

typedef struct {
    loco_config c;
    loco_replica_opts o;
    loco_model m;
    loco_data d;
    float *init;
} fixture;

static void setup(fixture *f) {
    loco_err e;
    loco_config_default(&f->c);
    cr_assert_eq(loco_config_load_file(&f->c, "configs/tiny.ini", &e), 0, "%s", e.msg);
    loco_shape s = {.V = 256, .Vp = 256, .maxT = (int)f->c.model.seq_len,
                    .L = (int)f->c.model.layers, .NH = (int)f->c.model.heads,
                    .C = (int)f->c.model.dim};
    cr_assert_eq(loco_model_init(&f->m, &s, &e), 0);
    cr_assert_eq(loco_data_open(&f->d, f->c.data.path, LOCO_FORMAT_TEXT, 256,
                                (size_t)f->c.data.block, f->c.data.val_every, &e), 0, "%s", e.msg);
    f->init = loco_alloc(f->m.nparams * sizeof(float));
    loco_model_init_params(&f->m, f->init, 5);
    loco_replica_opts_from_config(&f->c, &f->o);
}

static void teardown(fixture *f) {
    loco_data_close(&f->d);
    free(f->init);
}

#ifndef LOCO_SANITIZE
/* jemalloc (linked into the normal build) counts each thread's allocations */
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

static uint64_t allocated_by_this_thread(void) {
    uint64_t v = 0;
    size_t n = sizeof v;
    cr_assert_eq(mallctl("thread.allocated", &v, &n, NULL, 0), 0, "jemalloc's counter");
    return v;
}

static uint64_t freed_by_this_thread(void) {
    uint64_t v = 0;
    size_t n = sizeof v;
    cr_assert_eq(mallctl("thread.deallocated", &v, &n, NULL, 0), 0, "jemalloc's counter");
    return v;
}

Test(worker, a_step_allocates_nothing) {
    fixture f;
    setup(&f);
    loco_replica w;
    loco_err e;
    cr_assert_eq(loco_replica_init(&w, 0, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    loco_replica_step(&w); /* first use of every buffer */
    uint64_t before = allocated_by_this_thread();
    for (int i = 0; i < 5; i++) loco_replica_step(&w);
    uint64_t after = allocated_by_this_thread();
    cr_assert_eq(after, before, "5 steps allocated %lu bytes", (unsigned long)(after - before));
    loco_replica_free(&w);
    teardown(&f);
}
#endif

Test(worker, step_is_forward_backward_clip_and_adamw_composed) {
    fixture f;
    setup(&f);
    loco_replica w, ref;
    loco_err e;
    cr_assert_eq(loco_replica_init(&w, 3, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_replica_init(&ref, 3, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    for (int step = 0; step < 3; step++) {
        float loss = loco_replica_step(&w);
        /* the same step by hand on the twin */
        loco_stream_next(&ref.stream, ref.B, ref.T, ref.inputs, ref.targets);
        memset(ref.grads, 0, f.m.nparams * sizeof(float));
        float l2 = loco_model_forward(&f.m, ref.params, &ref.acts, ref.inputs, ref.targets, ref.B, ref.T);
        loco_model_backward(&f.m, ref.params, ref.grads, &ref.acts, ref.inputs, ref.targets, ref.B, ref.T);
        double norm = sqrt(loco_sumsq(ref.grads, f.m.nparams));
        float lr = (float)loco_adamw_lr(&ref.hp, step), scale = loco_clip_scale(&ref.hp, norm);
        for (int i = 0; i < LOCO_NTENSORS; i++) {
            const loco_tensor *t = &f.m.t[i];
            loco_adamw_update(ref.params + t->offset, ref.grads + t->offset, ref.adam_m + t->offset,
                              ref.adam_v + t->offset, t->count, step + 1, lr,
                              t->decay ? (float)f.c.train.weight_decay : 0.0f, scale, &ref.hp);
        }
        cr_assert_eq(loss, l2, "step %d loss", step);
        cr_assert_eq(memcmp(w.params, ref.params, f.m.nparams * sizeof(float)), 0,
                     "step %d parameters", step);
    }
    cr_assert_eq(w.steps, 3);
    loco_replica_free(&w);
    loco_replica_free(&ref);
    teardown(&f);
}

/* ------------------------------------------------ the real clock's slowdown */

/* summary.json's number after "key": in the text from p */
static double number_after(const char *p, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(p, pat);
    cr_assert_not_null(q, "no %s in %.300s", key, p);
    return strtod(q + strlen(pat), NULL);
}

/* configs/tiny.ini with the settings (NULL-terminated) */
static void tiny_with(loco_config *c, const char *const *sets) {
    loco_err e;
    loco_config_default(c);
    cr_assert_eq(loco_config_load_file(c, "configs/tiny.ini", &e), 0, "%s", e.msg);
    for (int i = 0; sets[i]; i++) cr_assert_eq(loco_config_set(c, sets[i], &e), 0, "%s", e.msg);
}

/* a finished run's directory, gone */
static void remove_run(const char *dir) {
    const char *files[] = {"metrics.jsonl", "summary.json", "config.ini", "model.bin", "lock"};
    for (int i = 0; i < 5; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* the whole file, NUL-terminated */
static char *slurp(const char *dir, const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    b[fread(b, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return b;
}

/* Worker w's rounds in metrics.jsonl, start to arrival, summed */
static double rounds_s(const char *metrics, int w) {
    char who[64];
    snprintf(who, sizeof who, "{\"event\":\"arrival\",\"worker\":%d,", w);
    double sum = 0;
    for (const char *p = strstr(metrics, who); p; p = strstr(p + 1, who))
        sum += number_after(p, "time_s") - number_after(p, "start_s");
    return sum;
}

/* Two workers of factors 1 and 2.5 in sync rounds on the real clock, sleeping then
 * spinning. The slowed one must spend 1.5 x its compute time in emulated slowdown
 * (summary.json's per_worker rows), and that must be time it really spent. The check of
 * the second: each round runs from the window's close (start_s) to the worker's arrival
 * (time_s); less its steps' compute and its slowdown, what is left (waking at the close,
 * the pull, the delta, the thread's start in the first round) is the same work for both
 * workers: +-21 ms apart in 16 runs on 2 busy cores. Waits that overran unreported (each
 * wait on its own, before) add to the slowed worker's only: 80 to 900 ms in this run on
 * the same machine, a fifth to twice the slowdown asked for (on an idle machine about a
 * tenth of a millisecond per wait, some 30 ms). Tolerances: 50 ms between the workers;
 * the last wait's overrun, 20 ms plus 2% (test_clock.c), on the slowdown. A small model
 * with steps under a millisecond and waits about as long: a second or so per mode. */
/* Under a sanitizer every lock, wake-up and copy of that other work costs many times what
 * it does in the normal build (ThreadSanitizer: 0.1-0.2 s over a run, either worker), so
 * there the two workers' rest may differ by 5% of the run's time as well. */
static double rest_tolerance(double wall) {
#ifdef LOCO_SANITIZE
    return 0.05 + 0.05 * wall;
#else
    (void)wall;
    return 0.05;
#endif
}

/* One sync run of two workers (x 1 and x 2.5) in the given slowdown mode on the real
 * clock: 1 when each worker's slowdown is (f - 1) x its compute and both workers' rounds
 * have the same time besides; why says how it missed. */
static int slowdown_within(const char *mode, char *why, size_t n) {
    const char *sets[] = {"model.layers=2", "model.heads=2", "model.dim=32", "model.seq_len=32",
                          "train.batch=4", "train.steps=300", "run.workers=2", "run.clock=real",
                          "outer.method=sync", "outer.local_steps=50", "hetero.slowdown=1,2.5",
                          "eval.every_updates=0", "eval.batches=2", mode, NULL};
    loco_config c;
    loco_err e;
    tiny_with(&c, sets);
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/loco-slow-%d", (int)getpid());
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    cr_assert_eq(loco_train(&c, &o, &e), 0, "%s", e.msg);
    char *s = slurp(dir, "summary.json"), *metrics = slurp(dir, "metrics.jsonl");
    double wall = number_after(s, "train_s"), rest[2];
    const char *row = strstr(s, "\"per_worker\":");
    cr_assert_not_null(row, "%.300s", s);
    int ok = 1;
    why[0] = '\0';
    for (int w = 0; w < 2; w++) {
        row = strstr(row + 1, "{\"worker\":");
        cr_assert_not_null(row, "row %d: %.600s", w, s);
        double f = number_after(row, "slowdown"), compute = number_after(row, "compute_s");
        double slow = number_after(row, "slowdown_s"), want = (f - 1) * compute;
        double waits = number_after(row, "lockwait_s") + number_after(row, "idle_s");
        /* an accounting error, not a timing one: no tries for it */
        cr_assert_leq(compute + slow + waits, wall + 0.001, "%s, worker %d: more time "
                      "accounted than the run's %.4f s", mode, w, wall);
        if (fabs(slow - want) > 0.02 + 0.02 * want) {
            ok = 0;
            snprintf(why, n, "%s, worker %d (x %g): %.4f s of slowdown for %.4f s of compute, "
                     "want %.4f", mode, w, f, slow, compute, want);
        }
        rest[w] = rounds_s(metrics, w) - compute - slow;
    }
    if (ok && fabs(rest[1] - rest[0]) > rest_tolerance(wall)) {
        ok = 0;
        snprintf(why, n, "%s: the slowed worker's rounds have %.4f s besides compute and "
                 "slowdown, the other's %.4f s", mode, rest[1], rest[0]);
    }
    free(s);
    free(metrics);
    remove_run(dir);
    return ok;
}

/* Three tries per mode, as in test_clock.c: other work on a busy machine can preempt a
 * spin or a wake-up past the bounds once; a wrong factor misses every time. */
Test(worker, the_real_clock_slowdown_is_f_minus_1_times_the_compute_time, .timeout = 240) {
    const char *modes[] = {"hetero.mode=sleep", "hetero.mode=spin"};
    char why[256];
    for (int k = 0; k < 2; k++) {
        int ok = 0;
        for (int attempt = 0; attempt < 3 && !ok; attempt++)
            ok = slowdown_within(modes[k], why, sizeof why);
        cr_assert(ok, "three tries missed; the last: %s", why);
    }
}

/* ------------------------------------------------------- the floating-point mode */

/* Each worker thread sets flush-to-zero and denormals-are-zero itself: with both cleared
 * in the thread that starts the run (new threads inherit its mode), every worker still
 * computes with them, as summary.json's rows say. */
Test(worker, a_worker_thread_computes_with_ftz_and_daz, .timeout = 120) {
    _mm_setcsr(_mm_getcsr() & ~0x8040u);
    cr_assert(!loco_fp_flushing(), "cleared in the starting thread");
    const char *sets[] = {"model.layers=1", "model.heads=2", "model.dim=32", "model.seq_len=16",
                          "train.batch=2", "train.steps=20", "run.workers=3",
                          "run.clock=virtual", "outer.method=async-dn", "outer.local_steps=5",
                          "eval.every_updates=0", "eval.batches=1", NULL};
    loco_config c;
    loco_err e;
    tiny_with(&c, sets);
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/loco-ftz-%d", (int)getpid());
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = dir;
    o.quiet = 1;
    cr_assert_eq(loco_train(&c, &o, &e), 0, "%s", e.msg);
    char *s = slurp(dir, "summary.json");
    int set = 0;
    for (const char *p = s; (p = strstr(p, "\"ftz_daz\":1")); p++) set++;
    cr_assert_eq(set, 3, "three workers with both bits: %s", s);
    cr_assert_null(strstr(s, "\"ftz_daz\":0"), "%s", s);
    free(s);
    remove_run(dir);
}

/* ------------------------------------------------------------ bf16 products */

/* A bf16 worker makes its oneDNN primitives at init (one per product shape); its steps
 * reuse them all, keep no memory, and its loss stays finite. */
Test(worker, a_bf16_worker_makes_its_primitives_at_init_and_a_step_allocates_nothing) {
    SKIP_WITHOUT_BF16();
    fixture f;
    setup(&f);
    f.o.precision = LOCO_PREC_BF16;
    loco_replica w;
    loco_err e;
    cr_assert_eq(loco_replica_init(&w, 0, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    cr_assert_not_null(w.acts.mm, "the worker has a products' context");
    cr_assert_eq(loco_mm_precision(w.acts.mm), LOCO_PREC_BF16);
    long made = loco_mm_primitives(w.acts.mm);
    cr_assert_gt(made, 0, "the primitives are made at init");
    loco_stream fresh;
    loco_stream_init(&fresh, &f.d, f.o.seed, 0);
    cr_assert_eq(w.stream.rng.s, fresh.rng.s, "the warm-up did not move the data stream");
#ifndef LOCO_SANITIZE
    uint64_t before = allocated_by_this_thread(), freed = freed_by_this_thread();
#endif
    for (int i = 0; i < 6; i++) {
        float loss = loco_replica_step(&w);
        cr_assert(isfinite(loss), "step %d: loss %g", i, (double)loss);
        cr_assert_eq(loco_mm_primitives(w.acts.mm), made, "step %d: %ld primitives, %ld at init",
                     i, loco_mm_primitives(w.acts.mm), made);
    }
#ifndef LOCO_SANITIZE
    /* oneDNN's execute builds its argument map on the heap and frees it at once (about
     * 10 KiB a step, ours to accept); what the step keeps must be nothing */
    uint64_t got = allocated_by_this_thread() - before, back = freed_by_this_thread() - freed;
    cr_assert_eq(got, back, "6 bf16 steps kept %ld bytes (allocated %lu, freed %lu)",
                 (long)(got - back), (unsigned long)got, (unsigned long)back);
#endif
    loco_replica_free(&w);
    teardown(&f);
}

/* Two bf16 workers from the same seed and start are bit-identical after 3 steps (oneDNN's
 * products are deterministic on one thread); an fp32 worker from the same start is not
 * (the precision option reaches the products). */
Test(worker, bf16_workers_from_the_same_seed_are_bit_identical) {
    SKIP_WITHOUT_BF16();
    fixture f;
    setup(&f);
    loco_replica w32;
    loco_err e;
    f.o.precision = LOCO_PREC_FP32;
    cr_assert_eq(loco_replica_init(&w32, 1, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    f.o.precision = LOCO_PREC_BF16;
    loco_replica a, b;
    cr_assert_eq(loco_replica_init(&a, 1, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_replica_init(&b, 1, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    for (int i = 0; i < 3; i++) {
        float la = loco_replica_step(&a), lb = loco_replica_step(&b);
        loco_replica_step(&w32);
        cr_assert(isfinite(la), "step %d: loss %g", i, (double)la);
        cr_assert_eq(memcmp(&la, &lb, sizeof la), 0, "step %d: losses %.9g and %.9g", i,
                     (double)la, (double)lb);
    }
    size_t n = f.m.nparams * sizeof(float);
    cr_assert_eq(memcmp(a.params, b.params, n), 0, "parameters after 3 steps");
    cr_assert_eq(memcmp(a.adam_m, b.adam_m, n), 0, "AdamW m after 3 steps");
    cr_assert_eq(memcmp(a.adam_v, b.adam_v, n), 0, "AdamW v after 3 steps");
    cr_assert_neq(memcmp(a.params, w32.params, n), 0, "bf16 and fp32 workers identical");
    loco_replica_free(&a);
    loco_replica_free(&b);
    loco_replica_free(&w32);
    teardown(&f);
}

/* data.first_stream: worker id draws stream first_stream + id, so worker 1 of a run and
 * worker 0 of a run with first_stream = 1 see the same batches, and a sweep's
 * pre-training (first_stream 2^20) none of worker 0's. */
Test(worker, a_worker_draws_the_data_stream_first_stream_plus_its_id) {
    fixture f;
    setup(&f);
    loco_err e;
    loco_replica a, b, c;
    loco_replica_opts shifted = f.o, pre = f.o;
    shifted.first_stream = 1;
    pre.first_stream = 1u << 20;
    cr_assert_eq(loco_replica_init(&a, 1, &f.m, &f.d, &f.o, f.init, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_replica_init(&b, 0, &f.m, &f.d, &shifted, f.init, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_replica_init(&c, 0, &f.m, &f.d, &pre, f.init, &e), 0, "%s", e.msg);
    size_t n = (size_t)a.B * (size_t)a.T * sizeof(int);
    for (int step = 0; step < 3; step++) {
        loco_stream_next(&a.stream, a.B, a.T, a.inputs, a.targets);
        loco_stream_next(&b.stream, b.B, b.T, b.inputs, b.targets);
        loco_stream_next(&c.stream, c.B, c.T, c.inputs, c.targets);
        cr_assert(!memcmp(a.inputs, b.inputs, n), "batch %d: stream 1 is not stream 1", step);
        cr_assert(memcmp(a.inputs, c.inputs, n), "batch %d: the pre-training's stream repeats", step);
    }
    loco_replica_free(&a), loco_replica_free(&b), loco_replica_free(&c);
    teardown(&f);
}
