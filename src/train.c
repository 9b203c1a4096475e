#include "loco/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/checkpoint.h"
#include "loco/data.h"
#include "loco/engine.h"
#include "loco/evaluator.h"
#include "loco/metrics.h"
#include "loco/model.h"
#include "loco/worker.h"

void loco_train_opts_default(loco_train_opts *o) {
    memset(o, 0, sizeof *o);
}

/* Everything one run holds. */
typedef struct {
    loco_config *c;
    const loco_train_opts *o;
    loco_data data;
    loco_model m;
    float *init;              /* starting parameters */
    float *final;             /* the parameters to save (points into w or engine output) */
    loco_metrics mt;
    char *config_text;        /* the resolved config, as written to config.ini */
    double t0, last_val;
    long tokens, steps;
    double train_s;
    int byte_level, stopped;
    /* the single path */
    loco_worker w;
    loco_evaluator ev;
    double last_progress;
    /* the asynchronous path */
    loco_engine_out eo;
} run;

/* ------------------------------------------------------------------ setup */

static int shape_from_config(run *r, loco_err *e) {
    const loco_config *c = r->c;
    loco_shape s = loco_shape_from_config(c);
    if (loco_model_init(&r->m, &s, e) != 0) return -1;
    r->init = loco_alloc(r->m.nparams * sizeof(float));
    if (!r->init) return loco_errf(e, "out of memory for %zu parameters", r->m.nparams);
    loco_model_init_params(&r->m, r->init, (uint64_t)c->run.seed);
    return 0;
}

/* The init file's shape wins over the config's; say so where they differ. */
static void adopt_shape(run *r, const loco_shape *s) {
    struct {
        const char *key;
        long *field;
        long value;
    } keys[] = {{"model.layers", &r->c->model.layers, s->L},
                {"model.heads", &r->c->model.heads, s->NH},
                {"model.dim", &r->c->model.dim, s->C},
                {"model.vocab", &r->c->model.vocab, s->V}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (*keys[i].field != keys[i].value && !r->o->quiet)
            fprintf(stderr, "loco: note: %s = %ld from %s (the config said %ld)\n", keys[i].key,
                    keys[i].value, r->o->init_path, *keys[i].field);
        *keys[i].field = keys[i].value;
    }
}

static int shape_from_file(run *r, loco_err *e) {
    loco_model_file f;
    if (loco_model_read(r->o->init_path, &f, e) != 0) return -1;
    adopt_shape(r, &f.m.s);
    if (r->c->model.seq_len > f.m.s.maxT) {
        long maxT = f.m.s.maxT;
        loco_model_file_free(&f);
        return loco_errf(e, "model.seq_len = %ld is longer than the %ld positions of %s",
                         r->c->model.seq_len, maxT, r->o->init_path);
    }
    r->m = f.m;
    r->init = f.params;
    f.params = NULL;
    loco_model_file_free(&f);
    return 0;
}

static int resolved_config(run *r, loco_err *e) {
    size_t len = 0;
    FILE *f = open_memstream(&r->config_text, &len);
    if (!f) return loco_errf(e, "out of memory");
    int rc = loco_config_write(r->c, f);
    fclose(f);
    if (rc != 0) return loco_errf(e, "the resolved config cannot be written back");
    return 0;
}

static int setup(run *r, loco_err *e) {
    loco_config *c = r->c;
    if (r->o->init_path ? shape_from_file(r, e) : shape_from_config(r, e)) return -1;
    if (loco_config_validate(c, e) != 0) return -1;
    if (loco_data_open(&r->data, c->data.path, c->data.format, (int)c->model.vocab,
                       (size_t)c->data.block, c->data.val_every, e) != 0)
        return -1;
    r->byte_level = c->data.format == LOCO_FORMAT_TEXT;
    int T = (int)c->model.seq_len;
    if (loco_data_train_windows(&r->data, T) == 0)
        return loco_errf(e, "%s: no train span holds model.seq_len + 1 = %d tokens", c->data.path,
                         T + 1);
    if (resolved_config(r, e) != 0) return -1;
    if (loco_metrics_open(&r->mt, r->o->out_dir, r->o->quiet, e) != 0) return -1;
    if (r->o->out_dir && loco_write_text(r->o->out_dir, "config.ini", r->config_text, e) != 0)
        return -1;
    return 0;
}

static void teardown(run *r) {
    loco_metrics_close(&r->mt);
    loco_evaluator_free(&r->ev);
    loco_worker_free(&r->w);
    loco_data_close(&r->data);
    free(r->init);
    free(r->eo.theta);
    free(r->config_text);
}

/* ------------------------------------------------- single-worker training */

static void train_event(run *r, double step_s, long step_tokens) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "train");
    loco_json_int(&j, "step", r->w.steps);
    loco_json_int(&j, "tokens", r->tokens);
    loco_json_num(&j, "wall_s", loco_now() - r->t0);
    loco_json_num(&j, "loss", r->w.loss);
    loco_json_num(&j, "lr", loco_adamw_lr(&r->w.hp, r->w.steps - 1));
    loco_json_num(&j, "grad_norm", r->w.grad_norm);
    loco_json_num(&j, "tokens_per_s", (double)step_tokens / step_s);
    loco_json_end(&j);
    loco_metrics_event(&r->mt, &j);
    loco_json_free(&j);
}

static void evaluate(run *r) {
    r->last_val = loco_evaluator_val_loss(&r->ev, r->w.params);
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "eval");
    loco_json_int(&j, "step", r->w.steps);
    loco_json_int(&j, "tokens", r->tokens);
    loco_json_num(&j, "wall_s", loco_now() - r->t0);
    loco_json_val(&j, "", r->last_val, r->byte_level);
    loco_json_end(&j);
    loco_metrics_event(&r->mt, &j);
    loco_json_free(&j);
}

static void progress(run *r, int force) {
    double now = loco_now();
    if (!force && now - r->last_progress < 0.1) return;
    r->last_progress = now;
    long steps = r->c->train.steps;
    double rate = r->train_s > 0 ? (double)r->tokens / r->train_s : 0;
    double eta = r->w.steps > 0 ? r->train_s / (double)r->w.steps * (double)(steps - r->w.steps) : 0;
    char eta_s[32], val[32] = "";
    loco_format_duration(eta, eta_s, sizeof eta_s);
    if (isfinite(r->last_val)) snprintf(val, sizeof val, " | val %.4f", r->last_val);
    loco_metrics_progress(&r->mt, force, "step %ld/%ld | loss %.4f%s | %.0f tok/s | ETA %s",
                          r->w.steps, steps, r->w.loss, val, rate, eta_s);
}

/* One step of the `single` method: k = run.workers accumulated batches (the paper's
 * one worker with a k-times batch), then one update on their mean. */
static float single_step(run *r, int k) {
    double loss = 0;
    for (int i = 0; i < k; i++) loss += loco_worker_grad(&r->w, i > 0);
    loco_worker_update(&r->w, 1.0f / (float)k);
    r->w.loss = (float)(loss / k);
    return r->w.loss;
}

static int single_run(run *r, loco_err *e) {
    const loco_config *c = r->c;
    int k = (int)c->run.workers;
    if (loco_worker_init(&r->w, 0, &r->m, &r->data, c, r->init, e) != 0) return -1;
    if (loco_evaluator_init(&r->ev, &r->m, &r->data, r->w.B, r->w.T, (int)c->eval.batches, e) != 0)
        return -1;
    long every = c->eval.every, step_tokens = (long)k * r->w.B * r->w.T;
    evaluate(r);
    while (r->w.steps < c->train.steps && !(r->o->stop && *r->o->stop)) {
        double t = loco_now();
        float loss = single_step(r, k);
        double dt = loco_now() - t;
        r->train_s += dt;
        r->tokens += step_tokens;
        if (!isfinite(loss))
            return loco_errf(e, "training diverged at step %ld (loss %g); try a lower train.lr "
                             "or a stricter train.grad_clip", r->w.steps, (double)loss);
        train_event(r, dt, step_tokens);
        int eval_now = every > 0 && r->w.steps % every == 0;
        if (eval_now) evaluate(r);
        progress(r, eval_now);
    }
    r->stopped = r->w.steps < c->train.steps;
    if (every == 0 || r->w.steps % every != 0) {
        evaluate(r);
        progress(r, 1);
    }
    r->steps = r->w.steps;
    r->final = r->w.params;
    return 0;
}

/* ------------------------------------------------ the asynchronous path */

static int async_run(run *r, loco_json *summary, loco_err *e) {
    loco_engine_in in = {.c = r->c, .m = &r->m, .d = &r->data, .init = r->init, .mt = &r->mt,
                         .stop = r->o->stop, .byte_level = r->byte_level};
    if (loco_engine_run(&in, summary, &r->eo, e) != 0) return -1;
    r->final = r->eo.theta;
    r->last_val = r->eo.final_val;
    r->tokens = r->eo.tokens;
    r->steps = r->eo.local_steps;
    r->train_s = r->eo.wall_s;
    r->stopped = r->eo.stopped;
    return 0;
}

/* ------------------------------------------------------------ the outputs */

static int write_outputs(run *r, loco_json *j, const char *status, loco_err *e) {
    double wall = loco_now() - r->t0;
    loco_json_str(j, "status", status);
    loco_json_val(j, "final_", r->last_val, r->byte_level);
    loco_json_int(j, "steps", r->steps);
    loco_json_int(j, "tokens", r->tokens);
    loco_json_num(j, "wall_s", wall);
    loco_json_num(j, "train_s", r->train_s);
    loco_json_num(j, "tokens_per_s", r->train_s > 0 ? (double)r->tokens / r->train_s : 0);
    loco_json_int(j, "params", (long)r->m.ntrue);
    loco_json_end(j);
    char wall_s[32];
    loco_format_duration(wall, wall_s, sizeof wall_s);
    loco_metrics_say(&r->mt, "%s: %ld steps, %ld tokens in %s (%.0f tokens/s); val loss %.4f, "
                     "ppl %.2f", status, r->steps, r->tokens, wall_s,
                     r->train_s > 0 ? (double)r->tokens / r->train_s : 0, r->last_val,
                     exp(r->last_val));
    if (r->byte_level)
        loco_metrics_say(&r->mt, "  %.3f bits per byte; %zu parameters",
                         loco_bits_per_byte(r->last_val), r->m.ntrue);
    if (!r->o->out_dir) return 0;
    if (loco_write_text(r->o->out_dir, "summary.json", j->buf, e) != 0) return -1;
    if (!r->final) return 0;
    char path[LOCO_PATH_LEN];
    snprintf(path, sizeof path, "%s/model.bin", r->o->out_dir);
    return loco_model_write(path, &r->m, r->final, r->config_text, e);
}

int loco_train(loco_config *c, const loco_train_opts *o, loco_err *e) {
    run r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.o = o;
    r.last_val = NAN;
    int rc = setup(&r, e);
    if (rc == 0) {
        loco_metrics_say(&r.mt, "loco: %zu parameters, %s, batches of %ld x %ld tokens from %s%s%s",
                         r.m.ntrue, c->outer.method == LOCO_METHOD_SINGLE ? "one worker" : "asynchronous",
                         c->train.batch, c->model.seq_len, c->data.path,
                         o->out_dir ? ", writing to " : "", o->out_dir ? o->out_dir : "");
        loco_json summary;
        loco_json_begin(&summary);
        r.t0 = loco_now();
        rc = c->outer.method == LOCO_METHOD_SINGLE ? single_run(&r, e) : async_run(&r, &summary, e);
        /* a diverged single run still reports what it did, but saves no model */
        if (rc != 0) r.final = NULL;
        const char *status = rc != 0 ? "failed" : r.stopped ? "stopped" : "finished";
        loco_err we;
        if (write_outputs(&r, &summary, status, rc == 0 ? e : &we) != 0 && rc == 0) rc = -1;
        loco_json_free(&summary);
    }
    teardown(&r);
    return rc;
}
