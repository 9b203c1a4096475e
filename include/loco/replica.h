/* replica: one model replica and its inner optimizer. Owns the replica's parameters,
 * gradients, AdamW moments (kept across rounds), activations and its seeded data
 * stream, and its products' context (mm: fp32, or bf16 with the weights' bf16 mirror);
 * a step samples a batch, runs forward and backward, clips and applies AdamW. All
 * buffers (and in bf16 every oneDNN primitive) are made at init: a step allocates
 * nothing. */
#ifndef LOCO_REPLICA_H
#define LOCO_REPLICA_H

#include "loco/adamw.h"
#include "loco/data.h"
#include "loco/model.h"
#include "loco/pack.h"

/* A worker's settings: batch shape, the run's seed (its data stream is (seed, id)) and
 * the inner optimizer. */
typedef struct {
    int B, T;
    uint64_t seed;
    loco_adamw_hp hp;
    loco_precision precision;  /* of the products: fp32 or bf16 (resolved) */
    int lr_progress;           /* LOCO_LR_* (adamw.h): the asynchronous workers' schedule */
    uint64_t first_stream;     /* worker id draws data stream first_stream + id */
    long budget;               /* the run's local steps summed over workers, for `run` */
} loco_replica_opts;

typedef struct {
    int id;
    const loco_model *m;
    loco_adamw_hp hp;
    loco_stream stream;
    float *params, *grads, *adam_m, *adam_v;   /* m->nparams floats each */
    loco_acts acts;                            /* acts.mm: its products' context */
    int *inputs, *targets;                     /* (B,T) */
    int B, T;
    long steps;          /* inner steps taken: AdamW's t (and the schedule's position) */
    double lr_pos;       /* the next step's position in the schedule when >= 0 (set per
                            step by an asynchronous worker under lr_progress = run) */
    float loss;          /* of the last step */
    double lr;           /* the inner learning rate of the last step */
    double grad_norm;    /* of the last step, before clipping */
} loco_replica;

/* Allocates the worker for batches of o->B x o->T; params start as a copy of init. */
int loco_replica_init(loco_replica *w, int id, const loco_model *m, const loco_data *d,
                     const loco_replica_opts *o, const float *init, loco_err *e);
void loco_replica_free(loco_replica *w);

/* One inner step: loco_replica_grad then loco_replica_update. Returns the loss before the
 * update (NaN or Inf when it diverged: the caller decides what to do; the update has
 * then poisoned params). */
float loco_replica_step(loco_replica *w);

/* The step's two halves: the next batch's loss and gradients (returns the loss; with
 * accumulate, the gradients add to those already there), and the clipped AdamW update
 * from the gradients times scale (1/k after k accumulated batches; advances steps). */
float loco_replica_grad(loco_replica *w, int accumulate);
void loco_replica_update(loco_replica *w, float scale);

/* Clears the AdamW moments (a worker whose delta was not finite starts them afresh). */
void loco_replica_reset_optimizer(loco_replica *w);

/* The worker's state that outlives a step: parameters, AdamW moments and step count, the
 * data stream's position, the last loss and norm. Load checks what it reads (0, or -1
 * when the stream is short or mangled). */
size_t loco_replica_state_bytes(size_t nparams);   /* what save writes */
void loco_replica_save(const loco_replica *w, loco_pack *p);
int loco_replica_load(loco_replica *w, loco_unpack *u);

#endif
