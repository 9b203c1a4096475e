#include "loco/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/modelfile.h"
#include "loco/clock.h"
#include "loco/cpu.h"
#include "loco/data.h"
#include "loco/engine.h"
#include "loco/evaluator.h"
#include "loco/memplan.h"
#include "loco/metrics.h"
#include "loco/outer.h"
#include "loco/runlock.h"
#include "loco/settings.h"
#include "loco/runlog.h"
#include "loco/checkpoint.h"

static const int exit_finished = 0, exit_stopped = 128, exit_incomplete = 3, exit_failed = 1;
const loco_enum loco_run_statuses[] = {
    {"finished", LOCO_RUN_FINISHED, &exit_finished},
    {"stopped", LOCO_RUN_STOPPED, &exit_stopped},
    {"incomplete", LOCO_RUN_INCOMPLETE, &exit_incomplete},
    {"failed", LOCO_RUN_FAILED, &exit_failed},
    {NULL, 0, NULL},
};

int loco_run_exit_code(int status, int signal) {
    int code = *(const int *)loco_enum_row(loco_run_statuses, status)->data;
    return status == LOCO_RUN_STOPPED ? code + signal : code;
}

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
    int mt_open;
    uint64_t config_hash;     /* of config_text: what a checkpoint belongs to */
    loco_state_file state;    /* resuming: the checkpoint read at the start */
    loco_runlock lock;        /* of out_dir, while this process writes it */
    long ckpt_every;          /* checkpoint every this many steps (single) or updates */
    double ckpt_seconds, last_ckpt;
    long nckpt;               /* single: checkpoints written, and their seconds */
    double ckpt_s;
    char *config_text;        /* the resolved config, as written to config.ini */
    double t0, last_val;
    double final_se;          /* the final figure's standard error */
    char cpu[160];            /* loco_cpu_name, for the summary */
    long tokens, steps;
    double train_s;
    int byte_level, stopped;
    /* the single path */
    loco_replica w;
    loco_evaluator ev;
    double last_progress;
    /* the asynchronous path */
    loco_engine_out eo;
} run;

/* ------------------------------------------------------------------ setup */

static int shape_from_config(run *r, loco_err *e) {
    loco_shape s = loco_shape_from_config(r->c);
    return loco_model_init(&r->m, &s, e);
}

/* theta(0) from the seed, once the memory check has passed (a file's came with it) */
static int start_params(run *r, loco_err *e) {
    if (r->init) return 0;
    r->init = loco_alloc_for(r->m.nparams * sizeof(float), NULL, "the starting parameters", e);
    if (!r->init) return -1;
    loco_model_init_params(&r->m, r->init, (uint64_t)r->c->run.seed);
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

/* Resuming: the newest checkpoint of the run that reads, of this config and this kind of
 * run; a refused newer one is said. */
static int open_checkpoint(run *r, loco_err *e) {
    char note[2 * LOCO_ERR_LEN];
    if (loco_state_latest(r->o->out_dir, r->config_hash, &r->state, note, sizeof note, e) != 0)
        return -1;
    int want = !loco_config_on_engine(r->c) ? LOCO_STATE_SINGLE : LOCO_STATE_ASYNC;
    if (r->state.kind != want)
        return loco_errf(e, "%s: a checkpoint of another kind of run", r->state.path);
    if (note[0] && !r->o->quiet) fprintf(stderr, "loco: %s\n", note);
    return 0;
}

/* Every check of the input; nothing is written yet. */
static int check_input(run *r, loco_err *e) {
    loco_config *c = r->c;
    if (r->o->init_path ? shape_from_file(r, e) : shape_from_config(r, e)) return -1;
    if (loco_config_validate(c, e) != 0) return -1;
    char why[160] = "";
    loco_config_precision(c, why, sizeof why);
    if (c->model.precision == LOCO_PREC_AUTO && !r->o->quiet) fprintf(stderr, "loco: %s\n", why);
    /* a dry run's report says it with the machine */
    if (!r->o->quiet && !r->o->dry_run) loco_blas_say(stderr, "loco: ");
    if (loco_data_open(&r->data, c->data.path, c->data.format, (int)c->model.vocab,
                       (size_t)c->data.block, c->data.val_every, e) != 0)
        return -1;
    r->data.val_set = c->eval.set;
    r->byte_level = c->data.format == LOCO_FORMAT_TEXT;
    int T = (int)c->model.seq_len;
    if (loco_data_train_windows(&r->data, T) == 0)
        return loco_errf(e, "%s: no train span holds model.seq_len + 1 = %d tokens", c->data.path,
                         T + 1);
    if (loco_data_check_val(&r->data, (int)c->eval.batches, (int)c->train.batch, T,
                            "eval.batches", e) != 0 ||
        loco_data_check_val(&r->data, (int)loco_config_final_batches(c), (int)c->train.batch, T,
                            "eval.final_batches", e) != 0)
        return -1;
    /* the memory last: it needs the shape, the batch and the data; a dry run shows it
     * whether it fits or not */
    if (r->o->dry_run &&
        loco_memplan_report(stdout, c, &r->m, r->data.map_len, r->init != NULL, e) != 0)
        return -1;
    if (loco_memplan_check_run(c, &r->m, r->data.map_len, r->init != NULL, e) != 0) return -1;
    if (resolved_config(r, e) != 0) return -1;
    r->config_hash = loco_hash64(r->config_text, strlen(r->config_text));
    loco_config_checkpoint_every(c, &r->ckpt_every, &r->ckpt_seconds);
    return r->o->resume ? open_checkpoint(r, e) : 0;
}

/* The part of a checkpoint every kind of run has, first: where metrics.jsonl was, and
 * the run's counts so far. */
static void pack_run(run *r, loco_pack *p) {
    loco_pack_i64(p, loco_metrics_length(&r->mt));
    loco_pack_i64(p, r->tokens);
    loco_pack_f64(p, r->train_s);
    loco_pack_f64(p, r->last_val);
}

static long unpack_run(run *r, loco_unpack *u) {
    long length = (long)loco_unpack_range(u, 0, INT64_MAX / 2);
    r->tokens = (long)loco_unpack_range(u, 0, INT64_MAX / 2);
    r->train_s = loco_unpack_f64(u);
    r->last_val = loco_unpack_f64(u);
    return length;
}

static int lock_dir(run *r, loco_err *e) {
    if (!r->o->out_dir || r->o->locked) return 0;
    return loco_runlock_take(&r->lock, r->o->out_dir, r->o->resume ? "train --resume" : "train", e);
}

/* Resuming a run whose summary says it finished (and whose model is there) would run its
 * tail again and rewrite its outputs: it is left as it is. */
static int finished_before(run *r, loco_err *e) {
    char status[16], model[LOCO_PATH_LEN + 16];
    if (loco_runlog_status(r->o->out_dir, status, sizeof status, e) != 0) return -1;
    snprintf(model, sizeof model, "%s/model.bin", r->o->out_dir);
    return !strcmp(status, "finished") && access(model, F_OK) == 0;
}

static int setup(run *r, loco_err *e) {
    if (check_input(r, e) != 0 || start_params(r, e) != 0) return -1;
    const char *dir = r->o->out_dir;
    if (r->o->resume) {
        if (r->state.refused[0] && !r->o->quiet)
            fprintf(stderr, "loco: %s/%s is set aside as checkpoint.bad.bin\n", dir, r->state.refused);
        if (loco_state_set_aside(dir, &r->state, e) != 0) return -1;
        long length = unpack_run(r, &r->state.u);
        if (r->state.u.bad) return loco_errf(e, "%s: truncated", r->state.path);
        if (loco_metrics_reopen(&r->mt, dir, length, r->o->quiet, r->byte_level, e) != 0) return -1;
        r->mt_open = 1;
        return 0;
    }
    if (dir && loco_mkdirs(dir, e) != 0) return -1;
    if (lock_dir(r, e) != 0) return -1;
    if (loco_metrics_open(&r->mt, dir, r->o->quiet, r->byte_level, e) != 0) return -1;
    r->mt_open = 1;
    if (dir && loco_write_text(dir, "config.ini", r->config_text, e) != 0) return -1;
    return 0;
}

static void teardown(run *r) {
    if (r->mt_open) loco_metrics_close(&r->mt, NULL);
    loco_runlock_release(&r->lock);
    loco_state_close(&r->state);
    loco_evaluator_free(&r->ev);
    loco_replica_free(&r->w);
    loco_data_close(&r->data);
    free(r->init);
    loco_engine_out_free(&r->eo);
    free(r->config_text);
}

/* ------------------------------------------------- single-worker training */

static void train_event(run *r, double step_s, long step_tokens) {
    loco_train_event ev = {.step = r->w.steps, .tokens = r->tokens, .wall_s = loco_now() - r->t0,
                           .loss = r->w.loss, .lr = loco_adamw_lr(&r->w.hp, r->w.steps - 1),
                           .grad_norm = r->w.grad_norm,
                           .tokens_per_s = (double)step_tokens / step_s};
    loco_metrics_train(&r->mt, &ev);
}

/* Evaluates the worker's parameters: one event, or one per mark of the local-step
 * schedule in [first, last] (period E). A single step counts run.workers local steps;
 * in the virtual clock they take run.virtual_step_s each, on one fastest worker. */
static void evaluate(run *r, long first, long last) {
    const loco_config *c = r->c;
    r->last_val = loco_evaluator_val_loss(&r->ev, r->w.params);
    long local = r->w.steps * c->run.workers, E = c->eval.every_local_steps;
    double wall = loco_now() - r->t0;
    loco_eval_event ev = {.step = r->w.steps, .local_steps = local, .tokens = r->tokens,
                          .wall_s = wall, .val_loss = r->last_val, .at_local_steps = first,
                          .last_mark = last, .every = E, .place = -1,
                          .time_s = c->run.clock == LOCO_CLOCK_VIRTUAL
                                        ? (double)local * c->run.virtual_step_s : wall};
    loco_metrics_eval(&r->mt, &ev);
}

/* The marks of eval.every_local_steps that the last step passed: [*first, *last], or 0 */
static int passed_marks(const run *r, long *first, long *last) {
    long k = r->c->run.workers, now = r->w.steps * k;
    return loco_eval_marks(now - k, now, r->c->eval.every_local_steps, first, last);
}

static void progress(run *r, int force) {
    double now = loco_now();
    if (!force && now - r->last_progress < 0.1) return;
    r->last_progress = now;
    long steps = r->c->train.steps, done = r->w.steps;
    loco_progress p = {.step = done, .steps = steps, .updates = -1, .loss = r->w.loss,
                       .val = r->last_val,
                       .tokens_per_s = r->train_s > 0 ? (double)r->tokens / r->train_s : 0,
                       .eta_s = done > 0 ? r->train_s / (double)done * (double)(steps - done) : 0};
    loco_metrics_progress(&r->mt, force, &p);
}

/* whether the last step was evaluated already */
static int eval_now_at_end(const run *r) {
    long every = r->c->eval.every, first, last;
    return passed_marks(r, &first, &last) || (every > 0 && r->w.steps % every == 0);
}

/* One step of the `single` method: k = run.workers accumulated batches (the paper's
 * one worker with a k-times batch), then one update on their mean. */
static float single_step(run *r, int k) {
    double loss = 0;
    for (int i = 0; i < k; i++) loss += loco_replica_grad(&r->w, i > 0);
    loco_replica_update(&r->w, 1.0f / (float)k);
    r->w.loss = (float)(loss / k);
    return r->w.loss;
}

/* whether a checkpoint is due after the step: at every multiple of ckpt_every (the last
 * step's too, as the engine's updates), or once the interval has passed (not after the
 * last step: the model is saved then) */
static int checkpoint_due(const run *r) {
    long steps = r->w.steps;
    if (steps == r->c->train.steps) return r->ckpt_every > 0 && steps % r->ckpt_every == 0;
    return loco_state_due(steps, r->ckpt_every, loco_now(), r->last_ckpt, r->ckpt_seconds);
}

static int single_checkpoint(run *r, loco_err *e) {
    if (!r->o->out_dir) return 0;
    loco_state_writer w;
    double t0 = loco_now();
    if (loco_state_begin(&w, r->o->out_dir, LOCO_STATE_SINGLE, r->config_hash, e) != 0) return -1;
    pack_run(r, &w.p);
    loco_replica_save(&r->w, &w.p);
    int rc = loco_state_commit(&w, e);
    r->nckpt++;
    r->ckpt_s += loco_now() - t0;
    r->last_ckpt = loco_now();
    return rc;
}

static int single_resume(run *r, loco_err *e) {
    if (loco_replica_load(&r->w, &r->state.u) != 0 || r->state.u.pos != r->state.u.len)
        return loco_errf(e, "%s: its state does not fit this run's model", r->state.path);
    return 0;
}

static int single_run(run *r, loco_err *e) {
    const loco_config *c = r->c;
    int k = (int)c->run.workers;
    loco_replica_opts wo;
    loco_replica_opts_from_config(c, &wo);
    if (loco_replica_init(&r->w, 0, &r->m, &r->data, &wo, r->init, e) != 0) return -1;
    if (loco_evaluator_init(&r->ev, &r->m, &r->data, r->w.B, r->w.T, (int)c->eval.batches, e) != 0)
        return -1;
    long every = c->eval.every, step_tokens = (long)k * r->w.B * r->w.T, first, last;
    if (r->o->resume ? single_resume(r, e) != 0 : (evaluate(r, 0, 0), 0)) return -1;
    while (r->w.steps < c->train.steps) {
        if (r->o->stop && *r->o->stop) {
            if (single_checkpoint(r, e) != 0) return -1;
            break;
        }
        double t = loco_now();
        float loss = single_step(r, k);
        double dt = loco_now() - t;
        r->train_s += dt;
        r->tokens += step_tokens;
        if (!isfinite(loss)) {
            r->steps = r->w.steps;
            return loco_errf(e, "training diverged at step %ld (loss %g); try a lower train.lr "
                             "or a stricter train.grad_clip", r->w.steps, (double)loss);
        }
        train_event(r, dt, step_tokens);
        int marks = passed_marks(r, &first, &last);
        int eval_now = marks || (every > 0 && r->w.steps % every == 0);
        if (eval_now) evaluate(r, first, last);
        loco_metrics_flush(&r->mt);
        progress(r, eval_now);
        if (checkpoint_due(r) && single_checkpoint(r, e) != 0) return -1;
    }
    r->stopped = r->w.steps < c->train.steps;
    if (!eval_now_at_end(r)) {
        evaluate(r, 0, 0);
        progress(r, 1);
    }
    r->steps = r->w.steps;
    r->final = r->w.params;
    /* the final figure on eval.final_batches, as an asynchronous run's */
    return loco_eval_final(&r->m, &r->data, r->w.B, r->w.T, (int)loco_config_final_batches(c),
                           r->final, &r->last_val, &r->final_se, e);
}

/* ------------------------------------------------ the asynchronous path */

/* an asynchronous run's checkpoint: the file, and the run's own part first */
static int begin_checkpoint(void *ctx, loco_state_writer *w, loco_err *e) {
    run *r = ctx;
    if (loco_state_begin(w, r->o->out_dir, LOCO_STATE_ASYNC, r->config_hash, e) != 0) return -1;
    pack_run(r, &w->p);
    return 0;
}

static int async_run(run *r, loco_err *e) {
    loco_engine_in in = {.c = r->c, .m = &r->m, .d = &r->data, .init = r->init, .mt = &r->mt,
                         .stop = r->o->stop, .begin = r->o->out_dir ? begin_checkpoint : NULL,
                         .ctx = r, .ckpt_updates = r->ckpt_every,
                         .ckpt_seconds = r->ckpt_seconds,
                         .resume = r->o->resume ? &r->state.u : NULL};
    if (loco_engine_run(&in, &r->eo, e) != 0) return -1;
    r->final = r->eo.theta;
    r->last_val = r->eo.final_val;
    r->final_se = r->eo.final_se;
    r->tokens = r->eo.tokens;
    r->steps = r->eo.local_steps;
    r->train_s = r->eo.wall_s;
    r->stopped = r->eo.stopped;
    return 0;
}

/* ------------------------------------------------------------ the outputs */

static void summarise(run *r, int status, loco_summary *s) {
    *s = !loco_config_on_engine(r->c) ? (loco_summary){0} : r->eo.summary;
    s->status = loco_enum_name(loco_run_statuses, status);
    s->final_val = r->last_val;
    s->final_se = r->final_se;
    s->final_windows = loco_config_final_batches(r->c) * r->c->train.batch;
    s->steps = r->steps;
    s->tokens = r->tokens;
    s->params = (long)r->m.ntrue;
    s->wall_s = loco_now() - r->t0;
    s->train_s = r->train_s;
    s->precision = loco_enum_row(loco_precision_names, loco_config_precision(r->c, NULL, 0))->name;
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    s->cpu = loco_cpu_name(&cpu, r->cpu, sizeof r->cpu);
    s->commit = loco_commit;
    s->blas_core = loco_blas()->core;
    s->blas_core_detected = loco_blas()->choice.detected;
    if (!s->rows) s->method = NULL; /* the engine did not get as far as its summary */
    if (!loco_config_on_engine(r->c)) {
        s->local_steps = r->steps * r->c->run.workers;
        s->time_s = r->c->run.clock == LOCO_CLOCK_VIRTUAL
                        ? (double)s->local_steps * r->c->run.virtual_step_s : r->train_s;
        s->checkpoints = r->nckpt;
        s->checkpoint_s = s->checkpoint_write_s = r->ckpt_s;
    }
}

/* The outputs, summary.json last: a summary that says finished has its model.bin and
 * every event of metrics.jsonl beside it. A run whose model or events cannot be written
 * is failed. rc is the run's own (-1: it failed, e says why). */
static int write_outputs(run *r, int status, int rc, loco_err *e) {
    loco_err mine;
    loco_err *we = rc == 0 ? e : &mine; /* the first error is the one reported */
    char path[LOCO_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/model.bin", r->o->out_dir ? r->o->out_dir : ".");
    if (r->o->out_dir && r->final && loco_model_write(path, &r->m, r->final, r->config_text, we) != 0)
        rc = -1, we = &mine;
    loco_summary s;
    summarise(r, rc != 0 ? LOCO_RUN_FAILED : status, &s);
    loco_metrics_say_summary(&r->mt, &s);
    r->mt_open = 0;
    if (loco_metrics_close(&r->mt, we) != 0) rc = -1, we = &mine;
    if (rc != 0) s.status = loco_enum_name(loco_run_statuses, LOCO_RUN_FAILED);
    if (!r->o->out_dir) return rc;
    loco_json j;
    loco_summary_json(&s, r->byte_level, &j);
    if (loco_write_text(r->o->out_dir, "summary.json", j.buf, we) != 0) rc = -1;
    loco_json_free(&j);
    return rc;
}

/* the config.ini beside path, and its hash as a checkpoint's header holds it */
static int config_beside(const char *path, loco_config *c, uint64_t *hash, loco_err *e) {
    char dir[LOCO_PATH_LEN], ini[LOCO_PATH_LEN + 16];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    snprintf(ini, sizeof ini, "%s/config.ini", slash ? (*slash = '\0', dir) : ".");
    loco_config_default(c);
    if (loco_config_load_file(c, ini, e) != 0) return -1;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return loco_errf(e, "out of memory");
    int rc = loco_config_write(c, f);
    fclose(f);
    *hash = loco_hash64(text, strlen(text));
    free(text);
    return rc != 0 ? loco_errf(e, "%s: cannot be written back", ini) : 0;
}

static int describe_single(loco_unpack *u, size_t nparams, char *buf, size_t n) {
    const float *params = (const float *)(u->buf + u->pos);
    if (u->len - u->pos != 3 * nparams * sizeof(float) + 40) return -1;
    int finite = loco_all_finite(params, nparams);
    loco_unpack_skip(u, 3 * nparams * sizeof(float));
    long step = (long)loco_unpack_range(u, 0, INT64_MAX / 2);
    snprintf(buf, n, "single-worker run at step %ld; its parameters are %s", step,
             finite ? "finite" : "NOT all finite");
    return finite && !u->bad ? 0 : -1;
}

int loco_checkpoint_describe(const char *path, char *buf, size_t n, loco_err *e) {
    loco_config c;
    uint64_t hash = 0;
    if (config_beside(path, &c, &hash, e) != 0) return -1;
    loco_model m;
    loco_shape s = loco_shape_from_config(&c);
    if (loco_model_init(&m, &s, e) != 0) return -1;
    loco_state_file f;
    if (loco_state_read(path, hash, &f, e) != 0) return -1;
    run r = {.c = &c};
    long length = unpack_run(&r, &f.u);
    char what[LOCO_ERR_LEN];
    loco_err why;
    int rc = f.kind == LOCO_STATE_SINGLE ? describe_single(&f.u, m.nparams, what, sizeof what)
                                         : loco_engine_describe(&c, m.nparams, &f.u, what, sizeof what, &why);
    if (rc != 0 && f.kind == LOCO_STATE_SINGLE) loco_errf(&why, "its state is short, mangled or not finite");
    if (rc == 0)
        snprintf(buf, n, "%s: checkpoint ok (checksum, config): %s; metrics.jsonl at %ld bytes",
                 path, what, length);
    else
        loco_errf(e, "%s: %.900s", path, why.msg);
    loco_state_close(&f);
    return rc;
}

/* resuming: the lock before anything is read, and nothing to do for a finished run */
static int open_resumed(run *r, loco_err *e) {
    if (lock_dir(r, e) != 0) return -1;
    int done = finished_before(r, e);
    if (done < 0) return -1;
    if (done && r->o->result) r->o->result->untouched = 1;
    if (done && !r->o->quiet)
        fprintf(stderr, "loco: %s: the run finished already (its summary.json says so); "
                "nothing to resume, nothing changed\n", r->o->out_dir);
    return done;
}

int loco_train(loco_config *c, const loco_train_opts *o, loco_err *e) {
    run r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.o = o;
    r.last_val = r.final_se = NAN;
    if (o->result) *o->result = (loco_train_result){.status = LOCO_RUN_FAILED};
    if (o->dry_run) {
        int rc = check_input(&r, e);
        teardown(&r);
        return rc;
    }
    int rc = o->resume ? open_resumed(&r, e) : 0;
    if (rc != 0) {
        if (rc > 0 && o->result) o->result->status = LOCO_RUN_FINISHED;
        teardown(&r);
        return rc > 0 ? 0 : -1;
    }
    rc = setup(&r, e);
    if (rc == 0) {
        int single = !loco_config_on_engine(c);
        loco_metrics_say(&r.mt, "loco: %zu parameters, %s, batches of %ld x %ld tokens from %s%s%s",
                         r.m.ntrue, single ? "one worker" : "asynchronous", c->train.batch,
                         c->model.seq_len, c->data.path, o->out_dir ? ", writing to " : "",
                         o->out_dir ? o->out_dir : "");
        r.t0 = r.last_ckpt = loco_now();
        rc = single ? single_run(&r, e) : async_run(&r, e);
        /* a diverged single run still reports what it did, but saves no model */
        if (rc != 0) r.final = NULL;
        int status = r.stopped ? LOCO_RUN_STOPPED
                     : r.eo.incomplete ? LOCO_RUN_INCOMPLETE : LOCO_RUN_FINISHED;
        rc = write_outputs(&r, status, rc, e);
        if (o->result) o->result->status = rc != 0 ? LOCO_RUN_FAILED : status;
    }
    teardown(&r);
    return rc;
}

/* The checks of a dry run without its report: the same check_input, quiet, writing
 * nothing (a sweep checks every run this way before the first starts). */
int loco_train_check(loco_config *c, const loco_train_opts *o, loco_err *e) {
    loco_train_opts quiet = *o;
    quiet.quiet = 1, quiet.dry_run = 0, quiet.resume = 0, quiet.out_dir = NULL;
    run r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.o = &quiet;
    r.last_val = r.final_se = NAN;
    int rc = check_input(&r, e);
    teardown(&r);
    return rc;
}
