#include "loco/job.h"

#include <string.h>

/* stripe [lo, hi) of every array: the rule, then the copies out */
static void run_stripe(void *ctx, loco_globalbuf *gb, int s, size_t lo, size_t hi) {
    (void)s;
    const loco_job *j = ctx;
    const loco_outer_rule *rule = loco_outer_rule_of(j->rule);
    size_t n = hi - lo;
    float *th = gb->theta + lo;
    if (rule->apply) {
        float *g = j->g ? j->g + lo : NULL;
        if (g && j->lambda > 0) {
            size_t held = loco_outer_delay_comp(g, th, j->theta_start + lo, n, j->lambda);
            if (j->dc_held) {
                atomic_fetch_add_explicit(j->dc_held, (long)held, memory_order_relaxed);
                atomic_fetch_add_explicit(j->dc_all, (long)n, memory_order_relaxed);
            }
        }
        rule->apply(th, gb->m + lo, gb->a + lo, g, n, &j->hp);
#ifdef LOCO_SANITIZE
        /* sanitizer builds: the deltas let in (loco_all_sane) never make theta non-finite */
        LOCO_CHECK(loco_all_finite(th, n), "rule %d left theta non-finite in [%zu, %zu)",
                   (int)j->rule, lo, hi);
#endif
    }
    size_t bytes = n * sizeof(float);
    if (j->out0) memcpy(j->out0 + lo, th, bytes);
    if (j->out1) memcpy(j->out1 + lo, th, bytes);
    if (j->snap) memcpy(j->snap->params + lo, th, bytes);
}

double loco_job_walk(loco_globalbuf *gb, const loco_job *j) {
    double waited = loco_globalbuf_walk(gb, j->ticket, run_stripe, (void *)j);
    if (j->snap) loco_eval_thread_ready(j->ev, j->snap);
    return waited;
}
