/* Validation loss and whole-file evaluation against direct forwards of the same windows. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/config.h"
#include "loco/evaluator.h"

enum { T = 16 };

typedef struct {
    loco_model m;
    float *params;
    loco_data d;
    char path[64];
} fixture;

/* a 5,000-byte text file and a small random model */
static void setup(fixture *f, long val_every) {
    snprintf(f->path, sizeof f->path, "/tmp/loco-eval-%d.txt", (int)getpid());
    FILE *out = fopen(f->path, "wb");
    for (int i = 0; i < 5000; i++) fputc("the quick brown fox jumps over a lazy dog\n"[i % 42], out);
    fclose(out);
    loco_err e;
    loco_shape s = {.V = 256, .Vp = 256, .maxT = T, .L = 1, .NH = 2, .C = 16};
    cr_assert_eq(loco_model_init(&f->m, &s, &e), 0);
    f->params = loco_alloc(f->m.nparams * sizeof(float));
    loco_model_init_params(&f->m, f->params, 9);
    cr_assert_eq(loco_data_open(&f->d, f->path, LOCO_FORMAT_TEXT, 256, 500, val_every, &e), 0,
                 "%s", e.msg);
}

static void teardown(fixture *f) {
    loco_data_close(&f->d);
    free(f->params);
    unlink(f->path);
}

/* mean loss of windows at the given starts, one forward each */
static double direct_mean(fixture *f, const size_t *starts, size_t n) {
    loco_acts a;
    cr_assert_eq(loco_acts_alloc(&a, &f->m, 1, T, NULL), 0);
    int inp[T], tgt[T];
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        loco_data_window(&f->d, starts[i], T, inp, tgt);
        total += loco_model_forward(&f->m, f->params, &a, inp, tgt, 1, T);
    }
    loco_acts_free(&a);
    return total / (double)n;
}

Test(evaluator, file_loss_is_the_mean_over_consecutive_windows_whatever_the_threads) {
    fixture f;
    setup(&f, 0);
    size_t nwin = (f.d.n - 1) / T;
    size_t *starts = malloc(nwin * sizeof *starts);
    for (size_t i = 0; i < nwin; i++) starts[i] = i * T;
    double ref = direct_mean(&f, starts, nwin);
    long tokens = 0;
    loco_err e;
    double one = loco_eval_file(&f.m, f.params, &f.d, 1, T, 1, &tokens, &e);
    cr_assert_eq(tokens, (long)(nwin * T), "every window predicts T tokens");
    cr_assert_float_eq(one, ref, 1e-5, "file loss %g vs direct %g", one, ref);
    double three = loco_eval_file(&f.m, f.params, &f.d, 7, T, 3, &tokens, &e);
    double again = loco_eval_file(&f.m, f.params, &f.d, 7, T, 2, &tokens, &e);
    cr_assert_eq(three, again, "the thread count does not change the result");
    cr_assert_float_eq(three, ref, 1e-5, "batched %g vs direct %g", three, ref);
    free(starts);
    teardown(&f);
}

Test(evaluator, val_loss_uses_the_same_fixed_windows_every_time) {
    fixture f;
    setup(&f, 3);
    loco_evaluator ev;
    loco_err e;
    cr_assert_eq(loco_evaluator_init(&ev, &f.m, &f.d, 2, T, 3, &e), 0, "%s", e.msg);
    double a = loco_evaluator_val_loss(&ev, f.params), b = loco_evaluator_val_loss(&ev, f.params);
    cr_assert_eq(a, b, "same parameters, same windows, same loss");
    /* the windows val_batch picks, evaluated one by one */
    size_t starts[6];
    int inp[2 * T], tgt[2 * T];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(loco_data_val_batch(&f.d, i, 3, 2, T, inp, tgt, &e), 0);
        for (int r = 0; r < 2; r++) {
            /* find the window's position from its first T+1 bytes */
            const char *hay = (const char *)f.d.u8;
            for (size_t p = 0; p + T < f.d.n; p++) {
                int same = 1;
                for (int t = 0; t < T && same; t++) same = (unsigned char)hay[p + t] == inp[r * T + t];
                if (same && (unsigned char)hay[p + T] == tgt[r * T + T - 1]) {
                    starts[i * 2 + r] = p;
                    break;
                }
            }
        }
    }
    cr_assert_float_eq(a, direct_mean(&f, starts, 6), 1e-5, "val loss is the mean of its windows");
    loco_evaluator_free(&ev);
    cr_assert_eq(loco_evaluator_init(&ev, &f.m, &f.d, 2, T, 1000, &e), -1, "too many batches");
    cr_assert(strstr(e.msg, "eval.batches"), "%s", e.msg);
    teardown(&f);
}

/* The final figure's standard error against a scalar reference: the windows' mean losses,
 * one forward each, their sample standard deviation over the square root of their count;
 * the loss is the same as the plain validation loss on the same batches. */
Test(evaluator, the_final_figure_has_the_standard_error_of_its_windows) {
    fixture f;
    setup(&f, 3);
    loco_err e;
    enum { B = 2, NB = 4 };
    double loss, se;
    cr_assert_eq(loco_eval_final(&f.m, &f.d, B, T, NB, f.params, &loss, &se, &e), 0, "%s", e.msg);
    loco_evaluator ev;
    cr_assert_eq(loco_evaluator_init(&ev, &f.m, &f.d, B, T, NB, &e), 0, "%s", e.msg);
    cr_assert_eq(loss, loco_evaluator_val_loss(&ev, f.params), "the same loss as val_loss");
    loco_evaluator_free(&ev);
    loco_acts a;
    cr_assert_eq(loco_acts_alloc(&a, &f.m, 1, T, NULL), 0);
    int inp[B * T], tgt[B * T];
    double w[B * NB], mean = 0, var = 0;
    for (int i = 0; i < NB; i++) {
        cr_assert_eq(loco_data_val_batch(&f.d, i, NB, B, T, inp, tgt, &e), 0);
        for (int r = 0; r < B; r++) {
            w[i * B + r] = loco_model_forward(&f.m, f.params, &a, inp + r * T, tgt + r * T, 1, T);
            mean += w[i * B + r] / (B * NB);
        }
    }
    for (int i = 0; i < B * NB; i++) var += (w[i] - mean) * (w[i] - mean) / (B * NB - 1);
    loco_acts_free(&a);
    cr_assert_float_eq(loss, mean, 1e-5, "loss %g, windows' mean %g", loss, mean);
    cr_assert_gt(sqrt(var), 1e-3, "the windows' losses differ");
    cr_assert_float_eq(se, sqrt(var / (B * NB)), 1e-5, "se %g, reference %g", se,
                       sqrt(var / (B * NB)));
    teardown(&f);
}
