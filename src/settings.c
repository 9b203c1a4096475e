/* settings: the one place the config becomes each module's settings. */
#include "loco/settings.h"

#include "loco/protocol.h"

loco_shape loco_shape_from_config(const loco_config *c) {
    loco_shape s = {.V = (int)c->model.vocab, .Vp = loco_padded_vocab((int)c->model.vocab),
                    .maxT = (int)c->model.seq_len, .L = (int)c->model.layers,
                    .NH = (int)c->model.heads, .C = (int)c->model.dim};
    return s;
}

void loco_replica_opts_from_config(const loco_config *c, loco_replica_opts *o) {
    *o = (loco_replica_opts){
        .precision = (loco_precision)loco_config_precision(c, NULL, 0),
        .B = (int)c->train.batch,
        .T = (int)c->model.seq_len,
        .seed = (uint64_t)c->run.seed,
        .hp = {.lr = c->train.lr, .lr_min = c->train.lr_min, .warmup = c->train.warmup,
               .steps = c->train.steps, .beta1 = c->train.beta1, .beta2 = c->train.beta2,
               .eps = c->train.eps, .weight_decay = c->train.weight_decay,
               .grad_clip = c->train.grad_clip},
        .lr_progress = c->train.lr_progress,
        .first_stream = (uint64_t)c->data.first_stream,
        .budget = loco_config_total_local_steps(c),
    };
}

void loco_protocol_settings_from_config(const loco_config *c, long batch_tokens,
                                        loco_protocol_settings *st) {
    *st = (loco_protocol_settings){
        .method = c->outer.method,
        .workers = (int)c->run.workers,
        .clock = c->run.clock,
        .staleness = c->outer.staleness,
        .stale_max = c->outer.stale_max,
        .dylu = c->outer.dylu,
        .N = c->outer.dn_period, /* 0: the live workers (server.c) */
        .H = c->outer.local_steps,
        .budget = loco_config_total_local_steps(c),
        .hp = {.lr = (float)c->outer.lr, .beta = (float)c->outer.momentum,
               .c = (float)c->outer.dn_c, .gscale = 1.0f},
        .lambda = (float)c->outer.delay_comp,
        .grace_s = c->outer.grace_s,
        .grace_close = c->outer.grace_close,
        .sync_timeout_s = c->outer.sync_timeout_s,
        .eval_every = c->eval.every_updates,
        .eval_every_steps = c->eval.every_local_steps,
        .batch_tokens = batch_tokens,
        .seed = (uint64_t)c->run.seed,
        .max_delta_norm = c->outer.max_delta_norm,
    };
}

void loco_hetero_settings_from_config(const loco_config *c, loco_hetero_settings *st) {
    *st = (loco_hetero_settings){.workers = (int)c->run.workers, .level = c->hetero.level,
                                 .slowdown = c->hetero.slowdown, .jitter = c->hetero.jitter,
                                 .changes = c->hetero.speed_change,
                                 .step_s = c->run.virtual_step_s};
}
