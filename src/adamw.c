#include "loco/adamw.h"

#include <math.h>

const loco_enum loco_lr_progress_names[] = {
    {"run", LOCO_LR_RUN, NULL}, {"worker", LOCO_LR_WORKER, NULL}, {NULL, 0, NULL}};

double loco_adamw_run_position(long committed, long live, long j, long steps, long budget) {
    /* integers until the one division: where the true quotient is whole (sync), a
     * correctly rounded division gives it exactly */
    return (double)(committed + live * j) * (double)steps / (double)budget;
}

double loco_adamw_lr(const loco_adamw_hp *hp, long s) {
    return loco_adamw_lr_at(hp, (double)s);
}

double loco_adamw_lr_at(const loco_adamw_hp *hp, double s) {
    if (s < (double)hp->warmup) return hp->lr * (s + 1) / (double)hp->warmup;
    double span = (double)(hp->steps - hp->warmup);
    double x = span > 0 ? (s - (double)hp->warmup) / span : 1.0;
    x = x < 0 ? 0 : (x > 1 ? 1 : x);
    return hp->lr_min + (hp->lr - hp->lr_min) * 0.5 * (1.0 + cos(M_PI * x));
}

double loco_sumsq(const float *x, size_t n) {
    /* float partial sums over short blocks, double across them: vectorised and exact enough */
    double total = 0.0;
    for (size_t i = 0; i < n; i += 1024) {
        size_t end = i + 1024 < n ? i + 1024 : n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (size_t j = i; j < end; j++) s += x[j] * x[j];
        total += s;
    }
    return total;
}

float loco_clip_scale(const loco_adamw_hp *hp, double norm) {
    if (hp->grad_clip <= 0 || !(norm > hp->grad_clip)) return 1.0f;
    return (float)(hp->grad_clip / norm);
}

void loco_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long t, float lr,
                       float wd, float gscale, const loco_adamw_hp *hp) {
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps;
    float c1 = (float)(1.0 / (1.0 - pow(hp->beta1, (double)t)));
    float c2 = (float)(1.0 / (1.0 - pow(hp->beta2, (double)t)));
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + wd * p[i]);
    }
}
