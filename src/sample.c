/* sample: the next-token choice and the generation loop (see sample.h). */
#include "loco/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int loco_sample_pick(const float *p, int V, double temperature, loco_rng *r) {
    int best = 0;
    for (int i = 1; i < V; i++) best = p[i] > p[best] ? i : best;
    if (temperature <= 0 || !(p[best] > 0)) return best;
    /* weights relative to the largest: a low temperature underflows the small ones to 0
     * but never the largest, and nothing overflows */
    double inv = 1.0 / temperature, total = 0;
    for (int i = 0; i < V; i++) total += pow(p[i] / p[best], inv);
    double u = loco_rng_uniform(r) * total;
    /* strict: a zero weight is never picked, even when the draw is exactly 0 */
    for (int i = 0; i < V; i++) {
        u -= pow(p[i] / p[best], inv);
        if (u < 0) return i;
    }
    return best;   /* rounding left u a hair above the sum */
}

/* The latest tokens, with room to append: the model is fed the last min(len, ctx). Twice
 * the context, so the tail is moved back once every ctx tokens. */
typedef struct {
    int *buf;   /* (cap) */
    int len, cap, ctx;
} window;

static void window_push(window *w, int token) {
    w->buf[w->len++] = token;
    if (w->len == w->cap) {
        memmove(w->buf, w->buf + w->len - w->ctx, sizeof(int) * (size_t)w->ctx);
        w->len = w->ctx;
    }
}

static int check_args(const loco_model *m, const int *prompt, int n_prompt, int n,
                      const loco_sample_opts *o, loco_err *e) {
    if (n_prompt < 1) return loco_errf(e, "sample: the prompt needs at least one token");
    if (n < 0) return loco_errf(e, "sample: %d tokens to generate", n);
    if (!(o->temperature >= 0 && isfinite(o->temperature)))
        return loco_errf(e, "sample: temperature %g is not a finite number >= 0", o->temperature);
    if (o->context < 0) return loco_errf(e, "sample: context %d is negative", o->context);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->s.V)
            return loco_errf(e, "sample: prompt token %d (at %d) is outside the vocabulary [0, %d)",
                             prompt[i], i, m->s.V);
    return 0;
}

int loco_sample_generate(const loco_model *m, const float *params, const int *prompt,
                         int n_prompt, int *out, int n, const loco_sample_opts *o, loco_err *e) {
    if (check_args(m, prompt, n_prompt, n, o, e) != 0) return -1;
    if (n == 0) return 0;
    int ctx = o->context > 0 && o->context < m->s.maxT ? o->context : m->s.maxT;
    int keep = n_prompt < ctx ? n_prompt : ctx;
    /* the longest window fed: the kept prompt and all but the last token */
    long longest = (long)keep + n - 1;
    int maxT = longest < ctx ? (int)longest : ctx;
    window w = {.buf = malloc(sizeof(int) * 2 * (size_t)ctx), .cap = 2 * ctx, .ctx = ctx};
    if (!w.buf) return loco_errf(e, "sample: out of memory for %d tokens of context", ctx);
    loco_acts a;
    if (loco_acts_alloc(&a, m, 1, maxT, e) != 0) {
        free(w.buf);
        return -1;
    }
    for (int i = n_prompt - keep; i < n_prompt; i++) window_push(&w, prompt[i]);
    loco_rng r;
    loco_rng_seed(&r, o->seed, 0);
    for (int k = 0; k < n; k++) {
        int T = w.len < ctx ? w.len : ctx;
        loco_model_forward(m, params, &a, w.buf + w.len - T, NULL, 1, T);
        int token = loco_sample_pick(a.probs + (size_t)(T - 1) * m->s.Vp, m->s.V, o->temperature,
                                     &r);
        if (out) out[k] = token;
        if (o->emit) o->emit(o->emit_arg, token);
        window_push(&w, token);
    }
    loco_acts_free(&a);
    free(w.buf);
    return 0;
}
