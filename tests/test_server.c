/* The server thread: the jobs pushed are walked in ticket order, each rule landing on
 * theta and the momentum as the outer functions say when applied one after another (a
 * scalar reference), a pull behind them sees every one of them, and the thread stops
 * with its queue empty. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/server.h"

enum { N = 3000, JOBS = 40 };

Test(server, jobs_are_walked_in_ticket_order_and_a_pull_behind_them_sees_them_all,
     .timeout = 60) {
    float *init = malloc(N * sizeof(float)), *g = malloc(JOBS * N * sizeof(float));
    float *theta = malloc(N * sizeof(float)), *m = calloc(N, sizeof(float));
    float *a = calloc(N, sizeof(float)), *pulled = malloc(N * sizeof(float));
    cr_assert(init && g && theta && m && a && pulled);
    for (int i = 0; i < N; i++) init[i] = theta[i] = 0.01f * (float)(i % 97);
    for (int k = 0; k < JOBS; k++)
        for (int i = 0; i < N; i++) g[k * N + i] = 0.001f * (float)((i * 7 + k * 13) % 29) - 0.014f;
    loco_globalbuf gb;
    loco_server sw;
    loco_err e = {{0}};
    cr_assert_eq(loco_globalbuf_init(&gb, init, N, 1, LOCO_LOCK_TICKET, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_server_init(&sw, &gb, JOBS + 1, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_server_start(&sw, NULL, NULL, &e), 0, "%s", e.msg);
    loco_outer_hp hp = {.lr = 0.7f, .beta = 0.9f, .gscale = 1.0f, .N = 1};
    for (int k = 0; k < JOBS; k++) { /* Nesterov and SGD steps in turn */
        loco_job j = {.ticket = loco_globalbuf_tickets(&gb, 1),
                      .rule = k % 3 ? LOCO_RULE_NESTEROV : LOCO_RULE_SGD, .hp = hp, .g = g + k * N};
        loco_server_push(&sw, &j);
        const loco_outer_rule *rule = loco_outer_rule_of(j.rule);
        rule->apply(theta, m, a, g + k * N, N, &hp); /* the reference, one after another */
    }
    loco_job pull = {.ticket = loco_globalbuf_tickets(&gb, 1), .rule = LOCO_RULE_NONE, .out0 = pulled};
    loco_job_walk(&gb, &pull); /* on this thread, right behind the sweeps */
    for (int i = 0; i < N; i++)
        cr_assert_eq(pulled[i], theta[i], "theta[%d]: %.9g, want %.9g", i, pulled[i], theta[i]);
    for (int i = 0; i < N; i++) cr_assert_eq(gb.m[i], m[i], "m[%d]", i);
    loco_server_stop(&sw);
    cr_assert(loco_server_idle(&sw), "the queue is empty once stopped");
    cr_assert(loco_server_busy(&sw) > 0, "the thread's walking time is counted");
    loco_server_free(&sw);
    loco_globalbuf_free(&gb);
    free(init), free(g), free(theta), free(m), free(a), free(pulled);
}
