/* memplan: a run's memory, part by part, and whether it fits (memplan.h). */
#include "loco/memplan.h"

#include <stdlib.h>
#include <string.h>

#include "loco/clock.h"
#include "loco/cpu.h"
#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/outer.h"
#include "loco/topo.h"

/* ------------------------------------------------------------------ the plan */

enum { RUNTIME_BASE = 8 << 20, RUNTIME_PER_THREAD = 2 << 20 };

/* what loco_alloc takes for n bytes: whole 64-byte lines */
static uint64_t lines(uint64_t bytes) {
    if (bytes > UINT64_MAX - LOCO_ALIGN) return UINT64_MAX;
    return (bytes + LOCO_ALIGN - 1) / LOCO_ALIGN * LOCO_ALIGN;
}

static loco_mem_group *add_group(loco_memplan *p, const char *name, int copies) {
    LOCO_CHECK(p->ngroups < LOCO_MEM_GROUPS, "%d groups", p->ngroups);
    loco_mem_group *g = &p->group[p->ngroups++];
    *g = (loco_mem_group){.name = name, .copies = copies};
    return g;
}

static void add_part(loco_mem_group *g, const char *what, uint64_t bytes, int activations) {
    LOCO_CHECK(g->nparts < LOCO_MEM_PARTS, "%d parts in %s", g->nparts, g->name);
    g->part[g->nparts++] =
        (loco_mem_part){.what = what, .bytes = bytes, .activations = activations};
    g->bytes = loco_add_sat(g->bytes, bytes);
}

static uint64_t group_total(const loco_mem_group *g) {
    return loco_mul_sat(g->bytes, (uint64_t)g->copies);
}

/* What worker.c allocates: loco_replica_init (replica, gradients, AdamW, activations,
 * the batch's inputs and targets) and, in the engine, the thread's theta_start and delta.
 * tests/test_memplan.c holds these to the real allocations. */
static void plan_worker(loco_memplan *p, const loco_memplan_in *in, uint64_t P, uint64_t acts,
                        uint64_t tokens) {
    int copies = in->async ? in->workers : 1;
    loco_mem_group *g = add_group(p, copies > 1 ? "workers" : "worker", copies);
    add_part(g, "parameters", P, 0);
    add_part(g, "gradients", P, 0);
    add_part(g, "AdamW moments (m, v)", loco_mul_sat(P, 2), 0);
    if (in->async) add_part(g, "theta_start and delta", loco_mul_sat(P, 2), 0);
    add_part(g, "activations", acts, 1);
    add_part(g, "batch tokens", tokens, 1);
    if (in->bf16)
        add_part(g, "bf16 copies (weights, products' inputs)",
                 loco_acts_bf16_bytes(in->m, in->B, in->T), 1);
}

/* evaluator.c: its activations and batch (loco_evaluator_init) and, on the evaluator
 * thread, the snapshot copies of theta. */
static void plan_evaluator(loco_memplan *p, const loco_memplan_in *in, uint64_t P, uint64_t acts,
                           uint64_t tokens) {
    loco_mem_group *g = add_group(p, "evaluator", 1);
    add_part(g, "activations", acts, 1);
    add_part(g, "batch tokens", tokens, 1);
    if (in->async) add_part(g, "snapshots of theta", loco_mul_sat(P, LOCO_SNAPSHOTS), 0);
}

void loco_memplan_make(loco_memplan *p, const loco_memplan_in *in) {
    memset(p, 0, sizeof *p);
    p->workers = in->async ? in->workers : 1;
    uint64_t P = lines(loco_mul_sat(in->m->nparams, sizeof(float)));
    uint64_t acts = loco_acts_bytes(in->m, in->B, in->T);
    uint64_t tokens = loco_mul_sat(lines(loco_mul_sat((uint64_t)in->B * (uint64_t)in->T,
                                                      sizeof(int))), 2);
    plan_worker(p, in, P, acts, tokens);
    if (in->async) {
        loco_mem_group *g = add_group(p, "global buffer", 1);
        add_part(g, "theta, momentum m and accumulator a",
                 loco_globalbuf_bytes(in->m->nparams, in->stripe_kib), 0);
    }
    plan_evaluator(p, in, P, acts, tokens);
    if (!in->init_held) add_part(add_group(p, "starting parameters", 1), "theta(0)", P, 0);
    /* measured (peak RSS less the parts above and the data's pages): the binary and its
     * libraries about 7 MiB, each thread 1.5 to 2 MiB of stack, BLAS packing buffers and
     * allocator caches; a rounded-up estimate */
    int threads = in->async ? in->workers + 3 : 1;   /* + main, server, evaluator */
    add_part(add_group(p, "runtime, estimated", 1), "code, stacks, BLAS buffers",
             loco_add_sat(RUNTIME_BASE, loco_mul_sat(RUNTIME_PER_THREAD, (uint64_t)threads)), 0);
    loco_mem_group *d = add_group(p, "data", 1);
    d->file_backed = 1;
    add_part(d, "the mapped file", in->data_bytes, 0);
    for (int i = 0; i < p->ngroups; i++)
        if (!p->group[i].file_backed) p->need = loco_add_sat(p->need, group_total(&p->group[i]));
}

void loco_memplan_in_from_config(loco_memplan_in *in, const loco_config *c, const loco_model *m,
                                 uint64_t data_bytes) {
    int async = loco_config_on_engine(c);
    *in = (loco_memplan_in){.m = m, .async = async, .workers = async ? (int)c->run.workers : 1,
                            .B = (int)c->train.batch, .T = (int)c->model.seq_len,
                            .stripe_kib = c->buffer.stripe_kib, .data_bytes = data_bytes};
    in->bf16 = loco_config_precision(c, NULL, 0) == LOCO_PREC_BF16;
}

/* --------------------------------------------------------------- the verdict */

/* the groups by their total, largest first (file-backed ones excluded) */
static int by_total(const loco_memplan *p, int *order) {
    int n = 0;
    for (int i = 0; i < p->ngroups; i++)
        if (!p->group[i].file_backed) order[n++] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && group_total(&p->group[order[j]]) >
                                      group_total(&p->group[order[j - 1]]); j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return n;
}

/* "4 workers x 15.1 GiB (activations 12.8 GiB, AdamW moments (m, v) 1.1 GiB, ...)" */
static size_t describe_group(const loco_mem_group *g, char *buf, size_t n) {
    char sz[32], one[32];
    size_t k;
    if (g->copies > 1)
        k = (size_t)snprintf(buf, n, "%d %s x %s", g->copies, g->name,
                             loco_size_str(g->bytes, sz, sizeof sz));
    else
        k = (size_t)snprintf(buf, n, "%s %s", g->name, loco_size_str(g->bytes, sz, sizeof sz));
    if (g->nparts < 2) return k;
    /* the three largest parts, leaving out those under 1% of the group */
    int used[LOCO_MEM_PARTS] = {0}, shown = 0, left = g->nparts;
    for (; shown < 3 && k < n; shown++, left--) {
        int best = -1;
        for (int i = 0; i < g->nparts; i++)
            if (!used[i] && (best < 0 || g->part[i].bytes > g->part[best].bytes)) best = i;
        if (g->part[best].bytes < g->bytes / 100) break;
        used[best] = 1;
        k += (size_t)snprintf(buf + k, n - k, "%s%s %s", shown ? ", " : " (", g->part[best].what,
                              loco_size_str(g->part[best].bytes, one, sizeof one));
    }
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "%s)", left > 0 ? ", ..." : "");
    return k;
}

/* the bytes that grow with train.batch x model.seq_len */
static uint64_t activation_bytes(const loco_memplan *p) {
    uint64_t s = 0;
    for (int i = 0; i < p->ngroups; i++) {
        const loco_mem_group *g = &p->group[i];
        for (int j = 0; !g->file_backed && j < g->nparts; j++)
            if (g->part[j].activations)
                s = loco_add_sat(s, loco_mul_sat(g->part[j].bytes, (uint64_t)g->copies));
    }
    return s;
}

static int percent(uint64_t part, uint64_t whole) {
    return whole ? (int)((double)part / (double)whole * 100 + 0.5) : 0;
}

/* Which keys to lower, the larger share first. */
static void advice(const loco_memplan *p, char *buf, size_t n) {
    uint64_t acts = activation_bytes(p), weights = p->need - acts;
    char a[96], w[96], k[64] = "";
    snprintf(a, sizeof a, "train.batch or model.seq_len (activations: %d%%)",
             percent(acts, p->need));
    snprintf(w, sizeof w, "model.dim or model.layers (the parameters and their copies: %d%%)",
             percent(weights, p->need));
    if (p->workers > 1) snprintf(k, sizeof k, ", or run.workers (%d replicas)", p->workers);
    snprintf(buf, n, "to fit, lower %s, %s%s", acts >= weights ? a : w, acts >= weights ? w : a, k);
}

int loco_memplan_check(const loco_memplan *p, const loco_mem_avail *a, loco_err *e) {
    if (p->need <= a->bytes) return 0;
    char msg[LOCO_ERR_LEN], need[32], have[32], src[320], adv[320];
    int order[LOCO_MEM_GROUPS], n = by_total(p, order);
    size_t k = (size_t)snprintf(msg, sizeof msg, "not enough memory: the run needs %s: ",
                                loco_size_str(p->need, need, sizeof need));
    for (int i = 0; i < n && i < 3 && k < sizeof msg; i++) {
        if (i) k += (size_t)snprintf(msg + k, sizeof msg - k, ", ");
        if (k < sizeof msg) k += describe_group(&p->group[order[i]], msg + k, sizeof msg - k);
    }
    if (n > 3 && k < sizeof msg) k += (size_t)snprintf(msg + k, sizeof msg - k, ", ...");
    advice(p, adv, sizeof adv);
    return loco_errf(e, "%s; but %s are available (%s); %s", msg,
                     loco_size_str(a->bytes, have, sizeof have),
                     loco_mem_avail_str(a, src, sizeof src), adv);
}

static void print_line(FILE *f, int indent, const char *what, uint64_t bytes, const char *note) {
    char sz[32];
    fprintf(f, "%*s%-*s %10s%s\n", indent, "", 56 - indent, what,
            loco_size_str(bytes, sz, sizeof sz), note);
}

void loco_memplan_print(const loco_memplan *p, const loco_mem_avail *a, FILE *f) {
    char need[32], have[32], one[32], src[320], name[96];
    loco_size_str(p->need, need, sizeof need);
    loco_mem_avail_str(a, src, sizeof src);
    if (a->bytes == UINT64_MAX)
        fprintf(f, "memory: needs %s; what is available is unknown (%s)\n", need, src);
    else
        fprintf(f, "memory: needs %s of the %s available (%s): %s\n", need,
                loco_size_str(a->bytes, have, sizeof have), src,
                p->need <= a->bytes ? "fits" : "does NOT fit");
    for (int i = 0; i < p->ngroups; i++) {
        const loco_mem_group *g = &p->group[i];
        if (g->copies > 1)
            snprintf(name, sizeof name, "%d %s x %s", g->copies, g->name,
                     loco_size_str(g->bytes, one, sizeof one));
        else if (g->nparts == 1)
            snprintf(name, sizeof name, "%s: %s", g->name, g->part[0].what);
        else
            snprintf(name, sizeof name, "%s", g->name);
        print_line(f, 2, name, group_total(g),
                   g->file_backed ? "  file-backed, not counted: the kernel can drop and "
                                    "reread its pages" : "");
        for (int j = 0; g->nparts > 1 && j < g->nparts; j++)
            print_line(f, 4, g->part[j].what, g->part[j].bytes, "");
    }
}

/* "4 workers, async-dn, real clock, 3.2M parameters, batches of 8 x 128 tokens" */
static void print_run(FILE *f, const loco_config *c, const loco_model *m, uint64_t data_bytes) {
    char sz[32];
    int async = loco_config_on_engine(c);
    fprintf(f, "run: %s, %ld worker%s, %s clock, %zu parameters, batches of %ld x %ld tokens, "
            "%s (%s)\n", loco_enum_name(loco_outer_methods, c->outer.method), c->run.workers,
            c->run.workers == 1 ? "" : "s", loco_enum_name(loco_clock_kinds, c->run.clock),
            m->ntrue, c->train.batch, c->model.seq_len, c->data.path,
            loco_size_str(data_bytes, sz, sizeof sz));
    if (!async && c->run.workers > 1)
        fprintf(f, "  (single: one replica, %ld batches accumulated per step)\n", c->run.workers);
}

/* the plan of the run c describes, and what is available */
static void plan_run(const loco_config *c, const loco_model *m, uint64_t data_bytes,
                     int init_held, loco_memplan *p, loco_mem_avail *a) {
    loco_memplan_in in;
    loco_memplan_in_from_config(&in, c, m, data_bytes);
    in.init_held = init_held;
    loco_memplan_make(p, &in);
    loco_mem_available(a, "");
}

int loco_memplan_report(FILE *f, const loco_config *c, const loco_model *m, uint64_t data_bytes,
                        int init_held, loco_err *e) {
    loco_topo t;
    loco_plan plan;
    int async = loco_config_on_engine(c);
    if (loco_topo_open(&t, NULL, e) != 0) return -1;
    int virtual_ = c->run.clock == LOCO_CLOCK_VIRTUAL;
    if (async && loco_topo_run_plan(&t, (int)c->run.workers, c->run.pin, virtual_, &plan, e) != 0) {
        loco_topo_close(&t);
        return -1;
    }
    print_run(f, c, m, data_bytes);
    loco_topo_print(&t, async ? &plan : NULL, f);
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    char name[160];
    fprintf(f, "CPU: %s\n", loco_cpu_name(&cpu, name, sizeof name));
    loco_blas_say(f, "");
    if (async) loco_plan_free(&plan);
    loco_topo_close(&t);
    loco_memplan p;
    loco_mem_avail a;
    plan_run(c, m, data_bytes, init_held, &p, &a);
    loco_memplan_print(&p, &a, f);
    return 0;
}

int loco_memplan_check_run(const loco_config *c, const loco_model *m, uint64_t data_bytes,
                           int init_held, loco_err *e) {
    loco_memplan p;
    loco_mem_avail a;
    plan_run(c, m, data_bytes, init_held, &p, &a);
    return loco_memplan_check(&p, &a, e);
}
