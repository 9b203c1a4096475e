/* sample: text generation. Owns the choice of the next token from the model's
 * probabilities at a temperature, and the autoregressive loop that feeds the model at
 * most its context of the latest tokens. Knows no files, text or terminals. */
#ifndef LOCO_SAMPLE_H
#define LOCO_SAMPLE_H

#include <stdint.h>

#include "loco/base.h"
#include "loco/model.h"

/* The next token from probabilities p (V): drawn from p^(1/temperature) renormalised,
 * with one draw of r; temperature 0 takes the most likely token (the first of equals)
 * and draws nothing. */
int loco_sample_pick(const float *p, int V, double temperature, loco_rng *r);

typedef struct {
    double temperature;   /* >= 0; 0 = greedy */
    uint64_t seed;        /* of the one random stream the whole generation draws from */
    int context;          /* tokens fed at most (the latest); 0 or more than the model's
                             maxT = maxT */
    /* called with each token as soon as it is picked, e.g. to print it; may be NULL */
    void (*emit)(void *arg, int token);
    void *emit_arg;
} loco_sample_opts;

/* Generates n tokens after prompt (n_prompt >= 1 tokens in [0, V)) into out (n; may be
 * NULL when emit takes them). A prompt longer than the context is cut to its latest
 * tokens. Errors: empty prompt, token outside the vocabulary, bad options, no memory. */
int loco_sample_generate(const loco_model *m, const float *params, const int *prompt,
                         int n_prompt, int *out, int n, const loco_sample_opts *o, loco_err *e);

#endif
