/* Picking tokens and generating: greedy is the argmax, seeds reproduce, a long prompt is
 * cut to the context, and draws follow the probabilities. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/model.h"
#include "loco/sample.h"

/* An untrained model: its next-token distributions are close to uniform over V = 100,
 * so tokens drawn at temperature 1 depend on the seed at almost every position. */
typedef struct {
    loco_model m;
    float *params;
} tiny;

static void tiny_make(tiny *t, int maxT) {
    loco_shape s = {.V = 100, .Vp = loco_padded_vocab(100), .maxT = maxT, .L = 2, .NH = 2,
                    .C = 16};
    loco_err e;
    cr_assert_eq(loco_model_init(&t->m, &s, &e), 0, "%s", e.msg);
    t->params = loco_alloc(t->m.nparams * sizeof(float));
    cr_assert_not_null(t->params, "out of memory");
    loco_model_init_params(&t->m, t->params, 42);
}

static void generate(const tiny *t, const int *prompt, int n_prompt, int *out, int n,
                     double temperature, uint64_t seed) {
    loco_sample_opts o = {.temperature = temperature, .seed = seed};
    loco_err e;
    cr_assert_eq(loco_sample_generate(&t->m, t->params, prompt, n_prompt, out, n, &o, &e), 0,
                 "%s", e.msg);
}

Test(sample, temperature_zero_picks_the_argmax) {
    const float p[6] = {0.1f, 0.05f, 0.2f, 0.4f, 0.0f, 0.25f};
    const float tie[3] = {0.4f, 0.2f, 0.4f};
    loco_rng r;
    loco_rng_seed(&r, 1, 0);
    for (int i = 0; i < 10; i++) cr_assert_eq(loco_sample_pick(p, 6, 0, &r), 3, "argmax");
    cr_assert_eq(loco_sample_pick(tie, 3, 0, &r), 0, "the first of equals");
    /* a temperature near 0 leaves only the largest a weight */
    for (int i = 0; i < 10; i++) cr_assert_eq(loco_sample_pick(p, 6, 1e-3, &r), 3, "cold");
}

/* the greedy loop written out with loco_model_forward */
Test(sample, greedy_generation_is_the_hand_rolled_greedy_loop) {
    tiny t;
    tiny_make(&t, 16);
    enum { P = 3, N = 30 };
    int toks[P + N] = {5, 17, 99}, got[N];
    loco_acts a;
    loco_err e;
    cr_assert_eq(loco_acts_alloc(&a, &t.m, 1, t.m.s.maxT, &e), 0, "%s", e.msg);
    for (int n = P; n < P + N; n++) {
        int start = n > t.m.s.maxT ? n - t.m.s.maxT : 0, T = n - start;
        loco_model_forward(&t.m, t.params, &a, toks + start, NULL, 1, T);
        const float *p = a.probs + (size_t)(T - 1) * t.m.s.Vp;
        int best = 0;
        for (int i = 1; i < t.m.s.V; i++) best = p[i] > p[best] ? i : best;
        toks[n] = best;
    }
    generate(&t, toks, P, got, N, 0, 1);
    for (int i = 0; i < N; i++) cr_assert_eq(got[i], toks[P + i], "token %d", i);
    loco_acts_free(&a);
    free(t.params);
}

Test(sample, a_seed_gives_the_same_tokens_and_another_seed_others) {
    tiny t;
    tiny_make(&t, 32);
    enum { N = 64 };
    int prompt[1] = {0}, a[N], b[N], c[N];
    generate(&t, prompt, 1, a, N, 1.0, 7);
    generate(&t, prompt, 1, b, N, 1.0, 7);
    generate(&t, prompt, 1, c, N, 1.0, 8);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "same seed, same tokens");
    int differ = 0;
    for (int i = 0; i < N; i++) differ += a[i] != c[i];
    /* near-uniform over 100 tokens: about 63 of 64 positions differ */
    cr_assert_gt(differ, N / 2, "another seed changed only %d of %d tokens", differ, N);
    free(t.params);
}

Test(sample, a_prompt_longer_than_the_context_continues_its_last_maxT_tokens) {
    tiny t;
    tiny_make(&t, 16);
    enum { LONG = 16 * 3 + 5, N = 40 };
    int prompt[LONG], whole[N], tail[N];
    for (int i = 0; i < LONG; i++) prompt[i] = (i * 37 + 11) % t.m.s.V;
    /* at temperature 0.8, the draws must line up too */
    generate(&t, prompt, LONG, whole, N, 0.8, 3);
    generate(&t, prompt + LONG - 16, 16, tail, N, 0.8, 3);
    cr_assert_eq(memcmp(whole, tail, sizeof whole), 0, "the same continuation");
    for (int i = 0; i < N; i++) cr_assert(whole[i] >= 0 && whole[i] < t.m.s.V, "in vocabulary");
    free(t.params);
}

typedef struct {
    int tokens[8], n;
} collected;

static void collect(void *arg, int token) {
    collected *c = arg;
    c->tokens[c->n++] = token;
}

Test(sample, the_callback_sees_every_token_in_order_and_a_context_cuts_the_window) {
    tiny t;
    tiny_make(&t, 32);
    int prompt[20], out[8];
    for (int i = 0; i < 20; i++) prompt[i] = i;
    collected c = {.n = 0};
    loco_sample_opts o = {.temperature = 1.0, .seed = 5, .emit = collect, .emit_arg = &c};
    loco_err e;
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt, 20, NULL, 8, &o, &e), 0, "%s",
                 e.msg);
    generate(&t, prompt, 20, out, 8, 1.0, 5);
    cr_assert_eq(c.n, 8, "one call per token");
    cr_assert_eq(memcmp(c.tokens, out, sizeof out), 0, "the same tokens as out");
    /* context 8 on a maxT 32 model feeds what a maxT 8 window would */
    int cut[8], last8[8];
    loco_sample_opts o8 = {.temperature = 1.0, .seed = 5, .context = 8};
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt, 20, cut, 8, &o8, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt + 12, 8, last8, 8, &o8, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(memcmp(cut, last8, sizeof cut), 0, "context 8");
    free(t.params);
}

Test(sample, bad_arguments_are_errors) {
    tiny t;
    tiny_make(&t, 16);
    int prompt[2] = {3, 100}, out[4];
    loco_sample_opts o = {.temperature = 1.0};
    loco_err e;
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt, 0, out, 4, &o, &e), -1, "empty");
    cr_assert(strstr(e.msg, "prompt"), "names the prompt: %s", e.msg);
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt, 2, out, 4, &o, &e), -1, "V");
    cr_assert(strstr(e.msg, "vocabulary"), "names the vocabulary: %s", e.msg);
    o.temperature = -1;
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt, 1, out, 4, &o, &e), -1, "t < 0");
    cr_assert(strstr(e.msg, "temperature"), "names the temperature: %s", e.msg);
    o.temperature = 0;
    cr_assert_eq(loco_sample_generate(&t.m, t.params, prompt, 1, out, 0, &o, &e), 0, "none");
    free(t.params);
}

/* Each frequency of n independent draws has standard deviation sqrt(q (1 - q) / n), at
 * most 0.0016 for n = 100000; six of those (0.0095 at most) is exceeded with probability
 * 2e-9, so the bound fails only for a wrong sampler, not an unlucky seed. The 24-bit
 * uniform adds a bias below 1e-7. */
static void check_frequencies(const float *p, const double *want, int V, double temperature) {
    enum { N = 100000 };
    long count[8] = {0};
    loco_rng r;
    loco_rng_seed(&r, 2024, 0);
    for (int i = 0; i < N; i++) count[loco_sample_pick(p, V, temperature, &r)]++;
    for (int i = 0; i < V; i++) {
        double f = (double)count[i] / N, tol = 6 * sqrt(want[i] * (1 - want[i]) / N);
        cr_assert_float_eq(f, want[i], tol, "token %d: frequency %.4f, want %.4f +- %.4f", i, f,
                           want[i], tol);
    }
}

Test(sample, draws_at_temperature_one_follow_the_probabilities) {
    const float p[3] = {0.5f, 0.3f, 0.2f};
    const double want[3] = {0.5, 0.3, 0.2};
    check_frequencies(p, want, 3, 1.0);
}

/* temperature t draws from p^(1/t) renormalised: at 0.5, (0.25, 0.09, 0.04) / 0.38; a zero
 * probability is never drawn */
Test(sample, draws_at_temperature_one_half_follow_the_squared_probabilities) {
    const float p[4] = {0.5f, 0.3f, 0.0f, 0.2f};
    const double want[4] = {0.25 / 0.38, 0.09 / 0.38, 0, 0.04 / 0.38};
    check_frequencies(p, want, 4, 0.5);
}
