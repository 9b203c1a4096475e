/* bench scale: aggregate training throughput against the number of workers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/bench.h"
#include "loco/settings.h"
#include "loco/cpu.h"
#include "loco/data.h"
#include "loco/engine.h"
#include "loco/model.h"
#include "loco/clock.h"
#include "loco/hetero.h"
#include "loco/outer.h"
#include "loco/topo.h"
#include "loco/train.h"

enum { STEPS_PER_WORKER = 30, ROUND = 10 };

typedef struct {
    double tokens_per_s, wait_frac;
} result;

/* one asynchronous run of W workers with no slowdown and no evaluations */
static int run_once(const loco_config *base, int W, int clock, const loco_model *m,
                    const loco_data *d, const float *init, result *res, loco_err *e) {
    loco_config c = *base;
    c.run.workers = W;
    c.run.clock = clock;
    if (c.outer.method == LOCO_METHOD_SINGLE) c.outer.method = LOCO_METHOD_ASYNC_DN;
    c.outer.local_steps = ROUND;
    c.outer.total_local_steps = (long)W * STEPS_PER_WORKER;
    c.outer.grace_s = 0;
    c.hetero.level = LOCO_LEVEL_NO;
    c.hetero.mode = LOCO_SLOW_SLEEP;
    c.hetero.slowdown[0] = c.hetero.speed_change[0] = '\0';
    c.hetero.jitter = 0;
    c.eval.every_updates = 0;
    c.outer.staleness = LOCO_STALE_NONE;
    c.outer.delay_comp = 0;
    c.outer.dn_c = 0;
    c.outer.dn_period = 0;
    if (loco_config_validate(&c, e) != 0) return -1;
    loco_metrics mt;
    loco_metrics_open(&mt, NULL, 1, 0, NULL);
    loco_engine_in in = {.c = &c, .m = m, .d = d, .init = init, .mt = &mt};
    loco_engine_out out;
    int rc = loco_engine_run(&in, &out, e);
    loco_metrics_close(&mt, NULL);
    if (rc == 0) {
        res->tokens_per_s = (double)out.tokens / out.wall_s;
        res->wait_frac = out.wait_s / (W * out.wall_s);
    }
    loco_engine_out_free(&out);
    return rc;
}

int loco_bench_scale(const loco_config *c, const char *config_name, loco_err *e) {
    loco_shape s = loco_shape_from_config(c);
    loco_model m;
    loco_data d;
    loco_topo topo;
    if (loco_model_init(&m, &s, e) != 0 || loco_topo_open(&topo, NULL, e) != 0) return -1;
    int cores = topo.ncores;
    loco_topo_close(&topo);
    if (loco_data_open(&d, c->data.path, c->data.format, s.V, (size_t)c->data.block,
                       c->data.val_every, e) != 0)
        return -1;
    float *init = loco_alloc(m.nparams * sizeof(float));
    loco_model_init_params(&m, init, (uint64_t)c->run.seed);
    fprintf(stderr, "bench scale: %s, %zu parameters, %d local steps per worker, 1..%d workers\n",
            config_name, m.ntrue, STEPS_PER_WORKER, cores);
    loco_blas_say(stderr, "  ");
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "bench", "scale");
    loco_json_str(&j, "config", config_name);
    loco_json_str(&j, "blas_core", loco_blas()->core);
    loco_json_open(&j, "by_workers", '[');
    result one = {0}, r = {0}, virt = {0};
    int rc = 0;
    for (int W = 1; W <= cores && rc == 0; W++) {
        rc = run_once(c, W, LOCO_CLOCK_REAL, &m, &d, init, &r, e);
        if (rc != 0) break;
        if (W == 1) one = r;
        double eff = r.tokens_per_s / (W * one.tokens_per_s);
        fprintf(stderr, "  %2d workers: %8.0f tokens/s, efficiency %.3f, waiting %.2f%%\n", W,
                r.tokens_per_s, eff, 100 * r.wait_frac);
        loco_json_open(&j, NULL, '{');
        loco_json_int(&j, "workers", W);
        loco_json_num(&j, "tokens_per_s", r.tokens_per_s);
        loco_json_num(&j, "efficiency", eff);
        loco_json_num(&j, "wait_frac", r.wait_frac);
        loco_json_close(&j, '}');
    }
    loco_json_close(&j, ']');
    if (rc == 0) rc = run_once(c, cores, LOCO_CLOCK_VIRTUAL, &m, &d, init, &virt, e);
    if (rc == 0) {
        fprintf(stderr, "  virtual clock, %d workers: %8.0f tokens/s, %.3f of the real clock\n",
                cores, virt.tokens_per_s, virt.tokens_per_s / r.tokens_per_s);
        loco_json_int(&j, "workers", cores);
        loco_json_num(&j, "tokens_per_s_1", one.tokens_per_s);
        loco_json_num(&j, "tokens_per_s", r.tokens_per_s);
        loco_json_num(&j, "efficiency", r.tokens_per_s / (cores * one.tokens_per_s));
        loco_json_num(&j, "wait_frac", r.wait_frac);
        loco_json_num(&j, "virtual_tokens_per_s", virt.tokens_per_s);
        loco_json_num(&j, "virtual_vs_real", virt.tokens_per_s / r.tokens_per_s);
        puts(loco_json_end(&j));
    }
    loco_json_free(&j);
    free(init);
    loco_data_close(&d);
    return rc;
}
