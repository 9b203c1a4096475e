#include "loco/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/checkpoint.h"
#include "loco/data.h"
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
    loco_worker w;
    loco_evaluator ev;
    loco_metrics mt;
    char *config_text;        /* the resolved config, as written to config.ini */
    double t0, train_s, last_val, last_progress;
    long tokens;
    int byte_level;
} run;

/* ------------------------------------------------------------------ setup */

static int shape_from_config(run *r, loco_err *e) {
    const loco_config *c = r->c;
    loco_shape s = {.V = (int)c->model.vocab, .Vp = loco_padded_vocab((int)c->model.vocab),
                    .maxT = (int)c->model.seq_len, .L = (int)c->model.layers,
                    .NH = (int)c->model.heads, .C = (int)c->model.dim};
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
        if (*keys[i].field != keys[i].value)
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
    int T = (int)c->model.seq_len, B = (int)c->train.batch;
    if (loco_data_train_windows(&r->data, T) == 0)
        return loco_errf(e, "%s: no train span holds model.seq_len + 1 = %d tokens", c->data.path,
                         T + 1);
    if (loco_worker_init(&r->w, 0, &r->m, &r->data, c, r->init, e) != 0) return -1;
    if (loco_evaluator_init(&r->ev, &r->m, &r->data, B, T, (int)c->eval.batches, e) != 0)
        return -1;
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
    free(r->config_text);
}

/* -------------------------------------------------------------- reporting */

static void train_event(run *r, double step_s) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "train");
    loco_json_int(&j, "step", r->w.steps);
    loco_json_int(&j, "tokens", r->tokens);
    loco_json_num(&j, "wall_s", loco_now() - r->t0);
    loco_json_num(&j, "loss", r->w.loss);
    loco_json_num(&j, "lr", loco_adamw_lr(&r->w.hp, r->w.steps - 1));
    loco_json_num(&j, "grad_norm", r->w.grad_norm);
    loco_json_num(&j, "tokens_per_s", (double)r->w.B * r->w.T / step_s);
    loco_json_end(&j);
    loco_metrics_event(&r->mt, &j);
    loco_json_free(&j);
}

/* val loss, perplexity and (for bytes) bits per byte of one loss */
static void put_val(loco_json *j, const char *prefix, double loss, int byte_level) {
    char k[64];
    snprintf(k, sizeof k, "%sval_loss", prefix);
    loco_json_num(j, k, loss);
    snprintf(k, sizeof k, "%sval_ppl", prefix);
    loco_json_num(j, k, exp(loss));
    snprintf(k, sizeof k, "%sval_bpb", prefix);
    loco_json_num(j, k, byte_level ? loco_bits_per_byte(loss) : NAN);
}

static void evaluate(run *r) {
    r->last_val = loco_evaluator_val_loss(&r->ev, r->w.params);
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "eval");
    loco_json_int(&j, "step", r->w.steps);
    loco_json_int(&j, "tokens", r->tokens);
    loco_json_num(&j, "wall_s", loco_now() - r->t0);
    put_val(&j, "", r->last_val, r->byte_level);
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

static int write_summary(run *r, const char *status) {
    loco_json j;
    double wall = loco_now() - r->t0;
    loco_json_begin(&j);
    loco_json_str(&j, "status", status);
    put_val(&j, "final_", r->last_val, r->byte_level);
    loco_json_int(&j, "steps", r->w.steps);
    loco_json_int(&j, "tokens", r->tokens);
    loco_json_num(&j, "wall_s", wall);
    loco_json_num(&j, "train_s", r->train_s);
    loco_json_num(&j, "tokens_per_s", r->train_s > 0 ? (double)r->tokens / r->train_s : 0);
    loco_json_int(&j, "params", (long)r->m.ntrue);
    loco_json_end(&j);
    loco_err e;
    int rc = r->o->out_dir ? loco_write_text(r->o->out_dir, "summary.json", j.buf, &e) : 0;
    if (rc != 0) loco_metrics_say(&r->mt, "loco: %s", e.msg);
    char wall_s[32];
    loco_format_duration(wall, wall_s, sizeof wall_s);
    loco_metrics_say(&r->mt,
                     "%s: %ld steps, %ld tokens in %s (%.0f tokens/s); val loss %.4f, ppl %.2f",
                     status, r->w.steps, r->tokens, wall_s,
                     r->train_s > 0 ? (double)r->tokens / r->train_s : 0, r->last_val,
                     exp(r->last_val));
    if (r->byte_level)
        loco_metrics_say(&r->mt, "  %.3f bits per byte; %zu parameters",
                         loco_bits_per_byte(r->last_val), r->m.ntrue);
    loco_json_free(&j);
    return rc;
}

/* ------------------------------------------------------------------- loop */

static int train_loop(run *r, loco_err *e) {
    const loco_config *c = r->c;
    long every = c->eval.every;
    while (r->w.steps < c->train.steps && !(r->o->stop && *r->o->stop)) {
        double t = loco_now();
        float loss = loco_worker_step(&r->w);
        double dt = loco_now() - t;
        r->train_s += dt;
        r->tokens += (long)r->w.B * r->w.T;
        if (!isfinite(loss))
            return loco_errf(e, "training diverged at step %ld (loss %g); try a lower train.lr "
                             "or a stricter train.grad_clip", r->w.steps, (double)loss);
        train_event(r, dt);
        int eval_now = every > 0 && r->w.steps % every == 0;
        if (eval_now) evaluate(r);
        progress(r, eval_now);
    }
    return 0;
}

int loco_train(loco_config *c, const loco_train_opts *o, loco_err *e) {
    run r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.o = o;
    r.last_val = NAN;
    int rc = setup(&r, e);
    if (rc == 0) {
        loco_metrics_say(&r.mt, "loco: %zu parameters, %ld steps of %ld x %ld tokens on %s%s%s",
                         r.m.ntrue, c->train.steps, c->train.batch, c->model.seq_len,
                         c->data.path, o->out_dir ? ", writing to " : "",
                         o->out_dir ? o->out_dir : "");
        r.t0 = loco_now();
        evaluate(&r);
        rc = train_loop(&r, e);
        int stopped = r.w.steps < c->train.steps;
        if (rc == 0 && (c->eval.every == 0 || r.w.steps % c->eval.every != 0)) {
            evaluate(&r);
            progress(&r, 1);
        }
        const char *status = rc != 0 ? "diverged" : stopped ? "stopped" : "finished";
        if (write_summary(&r, status) != 0 && rc == 0) rc = loco_errf(e, "summary not written");
        if (rc == 0 && o->out_dir) {
            char path[LOCO_PATH_LEN];
            snprintf(path, sizeof path, "%s/model.bin", o->out_dir);
            rc = loco_model_write(path, &r.m, r.w.params, r.config_text, e);
        }
    }
    teardown(&r);
    return rc;
}
