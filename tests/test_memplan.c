/* The memory plan against the allocations it stands for (jemalloc's per-thread counter
 * around the real inits), the verdict and its message with a given "available" figure,
 * reading MemAvailable and cgroup v2 and v1 limits from a made-up /proc and /sys, and
 * allocations that fail anyway, which must say their size and what they were for. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loco/config.h"
#include "loco/settings.h"
#include "loco/evaluator.h"
#include "loco/globalbuf.h"
#include "loco/memplan.h"
#include "loco/train.h"
#include "loco/worker.h"

static const loco_mem_group *group_of(const loco_memplan *p, const char *name) {
    for (int i = 0; i < p->ngroups; i++)
        if (!strcmp(p->group[i].name, name)) return &p->group[i];
    cr_assert(0, "no group '%s' in the plan", name);
    return NULL;
}

static uint64_t part_of(const loco_mem_group *g, const char *what) {
    for (int i = 0; i < g->nparts; i++)
        if (!strcmp(g->part[i].what, what)) return g->part[i].bytes;
    cr_assert(0, "no part '%s' in %s", what, g->name);
    return 0;
}

/* configs/tiny.ini's model and data, and its plan with `workers` asynchronous workers
 * (0: the single path) */
typedef struct {
    loco_config c;
    loco_model m;
    loco_data d;
    loco_memplan p;
    float *init;
} fixture;

static void setup(fixture *f, int workers) {
    loco_err e;
    loco_config_default(&f->c);
    cr_assert_eq(loco_config_load_file(&f->c, "configs/tiny.ini", &e), 0, "%s", e.msg);
    if (workers > 0) {
        f->c.run.workers = workers;
        f->c.outer.method = LOCO_METHOD_ASYNC_DN;
    }
    loco_shape s = loco_shape_from_config(&f->c);
    cr_assert_eq(loco_model_init(&f->m, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_data_open(&f->d, f->c.data.path, LOCO_FORMAT_TEXT, 256,
                                (size_t)f->c.data.block, f->c.data.val_every, &e), 0, "%s", e.msg);
    loco_memplan_in in;
    loco_memplan_in_from_config(&in, &f->c, &f->m, f->d.map_len);
    loco_memplan_make(&f->p, &in);
    f->init = loco_alloc(f->m.nparams * sizeof(float));
    loco_model_init_params(&f->m, f->init, 1);
}

static void teardown(fixture *f) {
    loco_data_close(&f->d);
    free(f->init);
}

/* ------------------------------------------------ the plan and the formula */

/* The activations as model.h documents them, buffer by buffer, from the shape: the count
 * must be this whatever the allocator. */
Test(memplan, acts_bytes_follows_the_documented_layout) {
    loco_shape s = {.V = 100, .Vp = 128, .maxT = 40, .L = 3, .NH = 2, .C = 24};
    loco_model m;
    loco_err e;
    cr_assert_eq(loco_model_init(&m, &s, &e), 0, "%s", e.msg);
    uint64_t B = 5, T = 40, L = 3, C = 24, NH = 2, N = B * T, Vp = 128;
    uint64_t floats[] = {(L + 1) * N * C, L * N * C, L * N, L * N, L * N * 3 * C,
                         L * NH * N * T, L * N * C, L * N * C, L * N * C, L * N, L * N,
                         L * N * 4 * C, L * N * 4 * C, N * C, N, N, N * Vp, N, N * C, N * C,
                         N * C, N * 4 * C, N * 3 * C, B * NH * 40 * T};   /* datt: min(T, 64) rows */
    uint64_t want = 0;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        want += (floats[i] * 4 + 63) / 64 * 64;   /* loco_alloc's whole 64-byte lines */
    cr_assert_eq(loco_acts_bytes(&m, (int)B, (int)T), want, "%lu bytes, want %lu",
                 (unsigned long)loco_acts_bytes(&m, (int)B, (int)T), (unsigned long)want);
}

/* Every part the brief of a run names, with its multiplicity; the data is shown but not
 * counted. */
Test(memplan, an_asynchronous_plan_has_every_part) {
    fixture f;
    setup(&f, 3);
    uint64_t P = (f.m.nparams * 4 + 63) / 64 * 64, A = loco_acts_bytes(&f.m, 8, 64);
    const loco_mem_group *w = group_of(&f.p, "workers");
    cr_assert_eq(w->copies, 3);
    cr_assert_eq(part_of(w, "parameters"), P);
    cr_assert_eq(part_of(w, "gradients"), P);
    cr_assert_eq(part_of(w, "AdamW moments (m, v)"), 2 * P);
    cr_assert_eq(part_of(w, "theta_start and delta"), 2 * P);
    cr_assert_eq(part_of(w, "activations"), A);
    cr_assert_eq(part_of(w, "batch tokens"), 2 * 8 * 64 * 4);
    const loco_mem_group *ev = group_of(&f.p, "evaluator");
    cr_assert_eq(part_of(ev, "activations"), A);
    cr_assert_eq(part_of(ev, "snapshots of theta"), LOCO_SNAPSHOTS * P);
    cr_assert_eq(group_of(&f.p, "global buffer")->bytes,
                 loco_globalbuf_bytes(f.m.nparams, f.c.buffer.stripe_kib));
    cr_assert_eq(group_of(&f.p, "starting parameters")->bytes, P);
    const loco_mem_group *d = group_of(&f.p, "data");
    cr_assert(d->file_backed && d->bytes == f.d.map_len, "data: %lu bytes",
              (unsigned long)d->bytes);
    uint64_t sum = 0;
    for (int i = 0; i < f.p.ngroups; i++)
        if (!f.p.group[i].file_backed) sum += f.p.group[i].bytes * (uint64_t)f.p.group[i].copies;
    cr_assert_eq(f.p.need, sum, "need is the counted groups times their copies");
    teardown(&f);
}

Test(memplan, the_single_path_has_one_replica_and_no_engine_parts) {
    fixture f;
    setup(&f, 0);
    f.c.run.workers = 4;   /* single: 4 batches accumulated, still one replica */
    loco_memplan_in in;
    loco_memplan_in_from_config(&in, &f.c, &f.m, f.d.map_len);
    loco_memplan_make(&f.p, &in);
    const loco_mem_group *w = group_of(&f.p, "worker");
    cr_assert_eq(w->copies, 1);
    cr_assert_eq(w->nparts, 5, "parameters, gradients, AdamW, activations, tokens");
    cr_assert_eq(group_of(&f.p, "evaluator")->nparts, 2, "no snapshots");
    for (int i = 0; i < f.p.ngroups; i++)
        cr_assert(strcmp(f.p.group[i].name, "global buffer"), "a global buffer");
    teardown(&f);
}

/* --------------------------------------- the plan against the allocations */

#ifndef LOCO_SANITIZE
/* jemalloc (linked into the normal build) counts each thread's allocations in usable
 * bytes: the request rounded up to its size class (at most a quarter more) */
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
size_t nallocx(size_t size, int flags);
#define ALIGN64 6   /* MALLOCX_LG_ALIGN(6): loco_alloc's 64-byte alignment */

static uint64_t allocated(void) {
    uint64_t v = 0;
    size_t n = sizeof v;
    cr_assert_eq(mallctl("thread.allocated", &v, &n, NULL, 0), 0, "jemalloc's counter");
    return v;
}

/* What jemalloc adds to a request of n bytes. */
static uint64_t rounding(uint64_t n) {
    return nallocx((size_t)n, ALIGN64) - n;
}

/* tiny's shape (L 2, NH 2, C 64, T 64, B 8, Vp 256) makes every activation buffer a power
 * of two or 3 x one (3C, 3N): jemalloc size classes, so nothing is rounded and the counter
 * must equal the count to the byte. */
Test(memplan, acts_bytes_is_what_loco_acts_alloc_allocates) {
    fixture f;
    setup(&f, 0);
    loco_acts a;
    loco_err e;
    uint64_t before = allocated();
    cr_assert_eq(loco_acts_alloc(&a, &f.m, 8, 64, &e), 0, "%s", e.msg);
    uint64_t got = allocated() - before;
    cr_assert_eq(got, loco_acts_bytes(&f.m, 8, 64), "allocated %lu, counted %lu",
                 (unsigned long)got, (unsigned long)loco_acts_bytes(&f.m, 8, 64));
    loco_acts_free(&a);
    teardown(&f);
}

/* loco_replica_init makes what the plan's worker part lists but theta_start and delta
 * (made on the worker's thread, setup_thread). The only difference allowed is jemalloc's
 * rounding of the four parameter-sized buffers (P = 471 KiB rounds up to 512 KiB) and of
 * the two token buffers: computed with nallocx, so the tolerance is exact, not a guess. */
Test(memplan, the_worker_part_is_what_loco_worker_init_allocates) {
    fixture f;
    setup(&f, 2);
    loco_replica_opts o;
    loco_replica_opts_from_config(&f.c, &o);
    const loco_mem_group *g = group_of(&f.p, "workers");
    uint64_t P = part_of(g, "parameters"), tokens = part_of(g, "batch tokens");
    uint64_t planned = g->bytes - part_of(g, "theta_start and delta");
    uint64_t slack = 4 * rounding(P) + 2 * rounding(tokens / 2);
    loco_replica w;
    loco_err e;
    uint64_t before = allocated();
    cr_assert_eq(loco_replica_init(&w, 1, &f.m, &f.d, &o, f.init, &e), 0, "%s", e.msg);
    uint64_t got = allocated() - before;
    cr_assert_eq(got, planned + slack, "allocated %lu, planned %lu + jemalloc's rounding %lu",
                 (unsigned long)got, (unsigned long)planned, (unsigned long)slack);
    loco_replica_free(&w);
    teardown(&f);
}

Test(memplan, the_global_buffer_part_is_what_loco_globalbuf_init_allocates) {
    fixture f;
    setup(&f, 2);
    loco_globalbuf gb;
    loco_err e;
    uint64_t planned = group_of(&f.p, "global buffer")->bytes;
    uint64_t P = (f.m.nparams * 4 + 63) / 64 * 64, stripes = planned - 3 * P;
    uint64_t slack = 3 * rounding(P) + (nallocx((size_t)stripes, 7) - stripes); /* 128-aligned */
    uint64_t before = allocated();
    cr_assert_eq(loco_globalbuf_init(&gb, f.init, f.m.nparams, f.c.buffer.stripe_kib,
                                     LOCO_LOCK_TICKET, NULL, &e), 0, "%s", e.msg);
    uint64_t got = allocated() - before;
    cr_assert_eq(got, planned + slack, "allocated %lu, planned %lu + rounding %lu",
                 (unsigned long)got, (unsigned long)planned, (unsigned long)slack);
    loco_globalbuf_free(&gb);
    teardown(&f);
}

/* the evaluator's activations and batch (its snapshots are made on its thread) */
Test(memplan, the_evaluator_part_is_what_loco_evaluator_init_allocates) {
    fixture f;
    setup(&f, 0);
    const loco_mem_group *g = group_of(&f.p, "evaluator");
    uint64_t tokens = part_of(g, "batch tokens");
    loco_evaluator ev;
    loco_err e;
    uint64_t before = allocated();
    cr_assert_eq(loco_evaluator_init(&ev, &f.m, &f.d, 8, 64, 4, &e), 0, "%s", e.msg);
    uint64_t got = allocated() - before;
    cr_assert_eq(got, g->bytes + 2 * rounding(tokens / 2), "allocated %lu, planned %lu",
                 (unsigned long)got, (unsigned long)g->bytes);
    loco_evaluator_free(&ev);
    teardown(&f);
}
#endif

/* ------------------------------------------------------------- the verdict */

static loco_mem_avail given(uint64_t bytes) {
    return (loco_mem_avail){.bytes = bytes, .meminfo = bytes};
}

static void expect_in(const char *msg, const char *text) {
    cr_assert_not_null(strstr(msg, text), "message lacks '%s':\n%s", text, msg);
}

/* A run that needs more than is available is refused with both figures, its biggest
 * parts and the keys to lower; one that needs exactly what is available is not. */
Test(memplan, a_plan_that_does_not_fit_is_refused_with_both_figures) {
    fixture f;
    setup(&f, 4);
    loco_err e;
    loco_mem_avail a = given(f.p.need);
    cr_assert_eq(loco_memplan_check(&f.p, &a, &e), 0, "exactly what is available fits");
    a = given(f.p.need - 1);
    cr_assert_eq(loco_memplan_check(&f.p, &a, &e), -1, "a byte short");
    /* a config at the brief's scale, against a machine of 22.8 GiB */
    f.c.model.dim = 4096, f.c.model.layers = 64, f.c.model.heads = 32;
    f.c.train.batch = 64, f.c.model.seq_len = 1024;
    loco_shape s = loco_shape_from_config(&f.c);
    cr_assert_eq(loco_model_init(&f.m, &s, &e), 0, "%s", e.msg);
    loco_memplan_in in;
    loco_memplan_in_from_config(&in, &f.c, &f.m, f.d.map_len);
    loco_memplan_make(&f.p, &in);
    a = given((uint64_t)(22.8 * (1ULL << 30)));
    cr_assert_eq(loco_memplan_check(&f.p, &a, &e), -1, "refused");
    char need[32];
    loco_size_str(f.p.need, need, sizeof need);
    expect_in(e.msg, "not enough memory: the run needs ");
    expect_in(e.msg, need);
    expect_in(e.msg, "4 workers x ");
    expect_in(e.msg, "(activations 1.5 TiB, ");
    expect_in(e.msg, "evaluator ");
    expect_in(e.msg, "global buffer 144.2 GiB");
    expect_in(e.msg, "but 22.8 GiB are available (MemAvailable; no cgroup limit)");
    expect_in(e.msg, "lower train.batch or model.seq_len (activations: 83%)");
    expect_in(e.msg, "model.dim or model.layers");
    expect_in(e.msg, "or run.workers (4 replicas)");
    teardown(&f);
}

/* Every key at its maximum: sizes beyond 2^64 bytes saturate instead of wrapping round
 * to something small that would fit. */
Test(memplan, a_config_far_beyond_any_machine_saturates_and_is_refused) {
    fixture f;
    setup(&f, 1024);
    f.c.model.dim = 65536, f.c.model.layers = 256, f.c.model.heads = 256;
    f.c.train.batch = 65536, f.c.model.seq_len = 65536;
    loco_shape s = loco_shape_from_config(&f.c);
    loco_err e;
    cr_assert_eq(loco_model_init(&f.m, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_acts_bytes(&f.m, 65536, 65536), UINT64_MAX, "saturated");
    loco_memplan_in in;
    loco_memplan_in_from_config(&in, &f.c, &f.m, f.d.map_len);
    loco_memplan_make(&f.p, &in);
    cr_assert_eq(f.p.need, UINT64_MAX);
    loco_mem_avail a = given(1ULL << 50);
    cr_assert_eq(loco_memplan_check(&f.p, &a, &e), -1);
    expect_in(e.msg, "needs more than 16 EiB");
    expect_in(e.msg, "but 1 PiB are available");
    teardown(&f);
}

/* ------------------------------------------- what is available: /proc and /sys */

typedef struct {
    char root[64];
} fake;

static void fake_open(fake *fk) {
    snprintf(fk->root, sizeof fk->root, "/tmp/loco-mem-XXXXXX");
    cr_assert_not_null(mkdtemp(fk->root), "mkdtemp");
}

/* root/path with text, directories made */
static void put(fake *fk, const char *path, const char *text) {
    char full[512], dir[512];
    snprintf(full, sizeof full, "%s%s", fk->root, path);
    snprintf(dir, sizeof dir, "%s", full);
    *strrchr(dir, '/') = '\0';
    loco_err e;
    cr_assert_eq(loco_mkdirs(dir, &e), 0, "%s", e.msg);
    FILE *f = fopen(full, "w");
    cr_assert_not_null(f, "%s", full);
    fputs(text, f);
    fclose(f);
}

static void fake_close(fake *fk) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fk->root);
    cr_assert_eq(system(cmd), 0);
}

static const char meminfo[] = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\n"
                              "MemAvailable:    8388608 kB\nBuffers:           3936 kB\n";

#define GIB (1ULL << 30)
#define MIB (1ULL << 20)

Test(memplan, without_a_cgroup_limit_meminfo_decides) {
    fake fk;
    fake_open(&fk);
    put(&fk, "/proc/meminfo", meminfo);
    put(&fk, "/proc/self/cgroup", "0::/user.slice/app\n");
    put(&fk, "/proc/self/mountinfo",
        "24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    put(&fk, "/sys/fs/cgroup/user.slice/app/memory.max", "max\n");
    put(&fk, "/sys/fs/cgroup/user.slice/app/memory.current", "123456\n");
    loco_mem_avail a;
    loco_mem_available(&a, fk.root);
    cr_assert_eq(a.meminfo, 8 * GIB);
    cr_assert_eq(a.cgroup, 0);
    cr_assert_eq(a.bytes, 8 * GIB);
    char src[256];
    cr_assert_str_eq(loco_mem_avail_str(&a, src, sizeof src), "MemAvailable; no cgroup limit");
    fake_close(&fk);
}

/* v2: memory.max minus memory.current, the tightest on the way up to the root */
Test(memplan, a_cgroup_v2_limit_below_meminfo_decides) {
    fake fk;
    fake_open(&fk);
    put(&fk, "/proc/meminfo", meminfo);
    put(&fk, "/proc/self/cgroup", "0::/user.slice/app\n");
    put(&fk, "/proc/self/mountinfo",
        "22 1 0:20 / /proc rw - proc proc rw\n"
        "24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    put(&fk, "/sys/fs/cgroup/user.slice/app/memory.max", "2147483648\n");
    put(&fk, "/sys/fs/cgroup/user.slice/app/memory.current", "536870912\n");
    put(&fk, "/sys/fs/cgroup/user.slice/memory.max", "max\n");
    put(&fk, "/sys/fs/cgroup/user.slice/memory.current", "999\n");
    loco_mem_avail a;
    loco_mem_available(&a, fk.root);
    cr_assert_eq(a.cgroup, 1);
    cr_assert_eq(a.bytes, 1536 * MIB, "2 GiB - 512 MiB: %lu", (unsigned long)a.bytes);
    cr_assert_str_eq(a.cg_path, "/sys/fs/cgroup/user.slice/app");
    char src[256];
    const char *want = "cgroup v2 /sys/fs/cgroup/user.slice/app: limit 2 GiB, 512 MiB in use";
    cr_assert_not_null(strstr(loco_mem_avail_str(&a, src, sizeof src), want), "%s", src);
    /* a parent that leaves less wins */
    put(&fk, "/sys/fs/cgroup/user.slice/memory.max", "1073741824\n");
    put(&fk, "/sys/fs/cgroup/user.slice/memory.current", "805306368\n");
    loco_mem_available(&a, fk.root);
    cr_assert_eq(a.bytes, 256 * MIB, "%lu", (unsigned long)a.bytes);
    cr_assert_str_eq(a.cg_path, "/sys/fs/cgroup/user.slice");
    fake_close(&fk);
}

/* v1 when the unified hierarchy has no memory controller (hybrid systems), as a container
 * sees it: the memory hierarchy's mount root is the container's own cgroup */
Test(memplan, cgroup_v1_is_the_fallback) {
    fake fk;
    fake_open(&fk);
    put(&fk, "/proc/meminfo", meminfo);
    put(&fk, "/proc/self/cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n");
    put(&fk, "/proc/self/mountinfo",
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
    put(&fk, "/sys/fs/cgroup/unified/cgroup.procs", "1\n");
    put(&fk, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n");
    put(&fk, "/sys/fs/cgroup/memory/memory.usage_in_bytes", "104857600\n");
    loco_mem_avail a;
    loco_mem_available(&a, fk.root);
    cr_assert_eq(a.cgroup, 2);
    cr_assert_eq(a.bytes, 924 * MIB, "%lu", (unsigned long)a.bytes);
    /* v1's "no limit" is 2^63 less a page */
    put(&fk, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    loco_mem_available(&a, fk.root);
    cr_assert_eq(a.cgroup, 0);
    cr_assert_eq(a.bytes, 8 * GIB);
    fake_close(&fk);
}

/* nothing readable: no limit known, so nothing is refused */
Test(memplan, without_proc_nothing_is_refused) {
    fake fk;
    fake_open(&fk);
    loco_mem_avail a;
    loco_mem_available(&a, fk.root);
    cr_assert_eq(a.bytes, UINT64_MAX);
    char src[256];
    cr_assert_str_eq(loco_mem_avail_str(&a, src, sizeof src),
                     "MemAvailable unknown; no cgroup limit");
    fake_close(&fk);
}

Test(memplan, this_machine_has_a_figure) {
    loco_mem_avail a;
    loco_mem_available(&a, "");
    cr_assert(a.meminfo > 0 && a.meminfo < UINT64_MAX, "MemAvailable %lu",
              (unsigned long)a.meminfo);
    cr_assert(a.bytes > 0 && a.bytes <= a.meminfo, "available %lu", (unsigned long)a.bytes);
}

/* ------------------------------------------- allocations that fail anyway */

#ifndef LOCO_SANITIZE
/* Runs fn in a child whose address space may grow by `room` bytes more; returns the
 * message fn reports (on a pipe), "" when it succeeded. AddressSanitizer needs terabytes
 * of address space, hence not under sanitizers. */
static void in_limited_child(size_t room, void (*fn)(char *msg, void *ctx), void *ctx, char *msg,
                             size_t n) {
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork");
    if (pid == 0) {
        close(fd[0]);
        char vm[64] = "", buf[LOCO_ERR_LEN] = "";
        FILE *st = fopen("/proc/self/status", "r");
        unsigned long kb = 0;
        while (st && fgets(vm, sizeof vm, st))
            if (sscanf(vm, "VmSize: %lu kB", &kb) == 1) break;
        if (st) fclose(st);
        struct rlimit rl = {kb * 1024 + room, kb * 1024 + room};
        if (kb == 0 || setrlimit(RLIMIT_AS, &rl) != 0) snprintf(buf, sizeof buf, "no limit set");
        else fn(buf, ctx);
        ssize_t w = write(fd[1], buf, strlen(buf) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], msg, n - 1);
    msg[got > 0 ? got : 0] = '\0';
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child crashed (%d)", status);
}

/* a model whose parameters take 48 MiB (C 1024, L 1: 12.6M floats) */
static void big_model(loco_model *m) {
    loco_shape s = {.V = 256, .Vp = 256, .maxT = 64, .L = 1, .NH = 8, .C = 1024};
    loco_err e;
    cr_assert_eq(loco_model_init(m, &s, &e), 0, "%s", e.msg);
}

typedef struct {
    loco_model m;
    fixture *f;
} big;

static void init_worker(char *msg, void *ctx) {
    big *b = ctx;
    loco_replica_opts o;
    loco_replica_opts_from_config(&b->f->c, &o);
    float *init = calloc(b->m.nparams, sizeof(float));
    loco_replica w;
    loco_err e;
    if (init && loco_replica_init(&w, 3, &b->m, &b->f->d, &o, init, &e) != 0)
        snprintf(msg, LOCO_ERR_LEN, "%s", e.msg);
}

static void init_globalbuf(char *msg, void *ctx) {
    big *b = ctx;
    float *init = calloc(b->m.nparams, sizeof(float));
    loco_globalbuf gb;
    loco_err e;
    if (init && loco_globalbuf_init(&gb, init, b->m.nparams, 256, LOCO_LOCK_TICKET, NULL, &e) != 0)
        snprintf(msg, LOCO_ERR_LEN, "%s", e.msg);
}

/* The message names the size and the purpose of the buffer that failed: which one fails
 * first depends on how jemalloc reserves address space, so any of the parameter-sized
 * ones will do, with the size it really asked for. */
static void expect_failure(const char *msg, const char *prefix, const char *const *purposes) {
    cr_assert_eq(strncmp(msg, prefix, strlen(prefix)), 0, "'%s' does not start '%s'", msg, prefix);
    for (; *purposes; purposes++)
        if (!strcmp(msg + strlen(prefix), *purposes)) return;
    cr_assert(0, "'%s': not one of the purposes expected", msg);
}

/* Room for the parameters three times and a bit: the worker and the global buffer each
 * need four or three copies more than the init copy. */
Test(memplan, a_failed_allocation_says_its_size_and_purpose) {
    fixture f;
    setup(&f, 0);
    big b = {.f = &f};
    big_model(&b.m);
    char sz[32], prefix[96], msg[LOCO_ERR_LEN];
    loco_size_str(b.m.nparams * sizeof(float), sz, sizeof sz);
    size_t room = 3 * b.m.nparams * sizeof(float) + (16 << 20);
    in_limited_child(room, init_worker, &b, msg, sizeof msg);
    snprintf(prefix, sizeof prefix, "worker 3: cannot allocate %s for ", sz);
    const char *worker[] = {"its parameters", "its gradients", "its AdamW first moment m",
                            "its AdamW second moment v", NULL};
    expect_failure(msg, prefix, worker);
    in_limited_child(room, init_globalbuf, &b, msg, sizeof msg);
    snprintf(prefix, sizeof prefix, "cannot allocate %s for the global buffer's ", sz);
    char names[3][64];
    const char *arrays[] = {"theta", "momentum m", "accumulator a"};
    for (int i = 0; i < 3; i++)
        snprintf(names[i], sizeof names[i], "%s (%zu parameters)", arrays[i], b.m.nparams);
    const char *gb[] = {names[0], names[1], names[2], NULL};
    expect_failure(msg, prefix, gb);
    teardown(&f);
}
#endif
