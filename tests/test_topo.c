/* The pinning plan on synthetic machines we do not have (hwloc describes them), checked
 * against hwloc's own answers; binding and memory on the real machine. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/base.h"
#include "loco/config.h"
#include "loco/topo.h"

#define BIG "pack:2 numa:2 core:8 pu:2" /* 32 cores, 64 PUs, 4 NUMA nodes */
#define SMALL "pack:1 core:2 pu:1"

static void open_synthetic(loco_topo *t, const char *desc) {
    loco_err e = {{0}};
    cr_assert_eq(loco_topo_open(t, desc, &e), 0, "open \"%s\": %s", desc, e.msg);
    cr_assert(t->synthetic, "a described machine is synthetic");
}

static loco_plan plan_of(const loco_topo *t, int workers, int pin) {
    loco_plan p;
    loco_err e = {{0}};
    cr_assert_eq(loco_topo_plan(t, workers, pin, &p, &e), 0, "plan of %d workers: %s", workers, e.msg);
    cr_assert_eq(p.workers, workers, "plan records its workers");
    cr_assert_eq(p.nplaces, workers + 2, "workers, then the server and the evaluator");
    return p;
}

static hwloc_obj_t pu_obj(const loco_topo *t, int pu) {
    hwloc_obj_t o = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_PU, (unsigned)pu);
    cr_assert_not_null(o, "PU %d exists", pu);
    return o;
}

/* the PU is the first of its core's PUs: not an SMT sibling */
static int first_pu_of_core(const loco_topo *t, int pu) {
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t->topo, HWLOC_OBJ_CORE, pu_obj(t, pu));
    return hwloc_get_obj_inside_cpuset_by_type(t->topo, core->cpuset, HWLOC_OBJ_PU, 0)->logical_index ==
           (unsigned)pu;
}

/* Every pinned place's core, NUMA node and package are those hwloc puts its PU in, roles
 * and indexes are in order, and shared says whether another place has the same PU. */
static void check_places(const loco_topo *t, const loco_plan *p) {
    for (int i = 0; i < p->nplaces; i++) {
        const loco_place *pl = &p->places[i];
        int role = i < p->workers    ? LOCO_ROLE_WORKER
                   : i == p->workers ? LOCO_ROLE_SERVER
                                     : LOCO_ROLE_EVALUATOR;
        cr_assert_eq(pl->role, role, "place %d role", i);
        cr_assert_eq(pl->index, i < p->workers ? i : 0, "place %d index", i);
        if (pl->pu < 0) {
            cr_assert(pl->core == -1 && pl->numa == -1 && pl->package == -1 && !pl->shared,
                      "place %d not pinned: everything -1", i);
            continue;
        }
        cr_assert_lt(pl->pu, t->npus, "place %d PU in range", i);
        hwloc_obj_t pu = pu_obj(t, pl->pu);
        hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t->topo, HWLOC_OBJ_CORE, pu);
        hwloc_obj_t pack = hwloc_get_ancestor_obj_by_type(t->topo, HWLOC_OBJ_PACKAGE, pu);
        hwloc_obj_t node = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, (unsigned)pl->numa);
        cr_assert_eq((unsigned)pl->core, core->logical_index, "place %d: core of PU %d", i, pl->pu);
        cr_assert_eq(pl->package, pack ? (int)pack->logical_index : 0, "place %d: package of PU %d", i,
                     pl->pu);
        cr_assert_not_null(node, "place %d: NUMA node %d exists", i, pl->numa);
        cr_assert(hwloc_bitmap_isset(node->cpuset, pu->os_index), "place %d: NUMA %d holds PU %d", i,
                  pl->numa, pl->pu);
        int same = 0;
        for (int j = 0; j < p->nplaces; j++) same += j != i && p->places[j].pu == pl->pu;
        cr_assert_eq(pl->shared, same > 0, "place %d: shared iff another place has PU %d", i, pl->pu);
    }
}

/* The server and the evaluator take PUs no worker has, or are not pinned. */
static void check_helpers(const loco_topo *t, const loco_plan *p) {
    int w = p->workers, free_pus = w < t->npus ? t->npus - w : 0;
    for (int k = 0; k < 2; k++) {
        const loco_place *pl = &p->places[w + k];
        if (k < free_pus) {
            cr_assert_geq(pl->pu, 0, "%s gets one of the %d free PUs", k ? "evaluator" : "server",
                          free_pus);
            for (int i = 0; i < w; i++)
                cr_assert_neq(p->places[i].pu, pl->pu, "%s: PU %d is worker %d's",
                              k ? "evaluator" : "server", pl->pu, i);
        } else {
            cr_assert_eq(pl->pu, -1, "%s not pinned when no PU is free", k ? "evaluator" : "server");
        }
    }
    if (free_pus >= 2)
        cr_assert_neq(p->places[w].pu, p->places[w + 1].pu, "server and evaluator apart");
}

/* Holds for every pin and W: one worker per core first, SMT siblings after, then wrap. */
static void check_common(const loco_topo *t, const loco_plan *p) {
    check_places(t, p);
    check_helpers(t, p);
    int w = p->workers;
    cr_assert_eq(p->oversubscribed, w > t->npus, "oversubscribed iff %d workers > %d PUs", w, t->npus);
    for (int i = 0; i < w; i++) {
        const loco_place *pl = &p->places[i];
        if (i < t->ncores)
            cr_assert(first_pu_of_core(t, pl->pu),
                      "worker %d of %d: a core's first PU, no SMT sibling yet", i, w);
        else if (i < t->npus)
            cr_assert(!first_pu_of_core(t, pl->pu), "worker %d: every core has one, now a sibling", i);
        else
            cr_assert_eq(pl->pu, p->places[i - t->npus].pu, "worker %d wraps to worker %d's PU", i,
                         i - t->npus);
        for (int j = 0; j < i && i < t->npus; j++)
            cr_assert_neq(p->places[j].pu, pl->pu, "workers %d and %d apart", j, i);
        for (int j = 0; j < i && i < t->ncores; j++)
            cr_assert_neq(p->places[j].core, pl->core, "workers %d and %d on distinct cores", j, i);
    }
}

Test(topo, open_counts_a_synthetic_machine) {
    loco_topo t;
    open_synthetic(&t, BIG);
    cr_assert_eq(t.npackages, 2, "packages");
    cr_assert_eq(t.nnuma, 4, "NUMA nodes");
    cr_assert_eq(t.ncores, 32, "cores");
    cr_assert_eq(t.npus, 64, "PUs");
    loco_topo_close(&t);
    open_synthetic(&t, SMALL);
    cr_assert(t.npackages == 1 && t.nnuma == 1 && t.ncores == 2 && t.npus == 2, "small machine counts");
    loco_topo_close(&t);
}

Test(topo, a_machine_without_packages_counts_one) {
    loco_topo t;
    open_synthetic(&t, "core:3 pu:2");
    cr_assert_eq(t.npackages, 1, "no package objects: one package");
    cr_assert(t.ncores == 3 && t.npus == 6, "cores and PUs");
    loco_plan p = plan_of(&t, 4, LOCO_PIN_SCATTER);
    check_common(&t, &p);
    for (int i = 0; i < 4; i++) cr_assert_eq(p.places[i].package, 0, "worker %d on package 0", i);
    loco_plan_free(&p);
    loco_topo_close(&t);
}

Test(topo, open_rejects_a_bad_description_and_quotes_it) {
    loco_topo t;
    loco_err e = {{0}};
    cr_assert_eq(loco_topo_open(&t, "pack:2 bogus:7", &e), -1, "bad description fails");
    cr_assert_not_null(strstr(e.msg, "\"pack:2 bogus:7\""), "message quotes it: %s", e.msg);
    cr_assert_null(t.topo, "nothing left open");
}

Test(topo, compact_below_the_cores_takes_cores_in_order) {
    loco_topo t;
    open_synthetic(&t, BIG);
    loco_plan p = plan_of(&t, 4, LOCO_PIN_COMPACT);
    check_common(&t, &p);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(p.places[i].core, i, "worker %d on core %d", i, i);
        cr_assert(p.places[i].package == 0 && p.places[i].numa == 0,
                  "worker %d packed on package 0, node 0", i);
        cr_assert(!p.places[i].shared, "worker %d alone", i);
    }
    cr_assert_eq(p.places[4].core, 4, "server on the next core");
    cr_assert_eq(p.places[5].core, 5, "evaluator on the one after");
    cr_assert(!p.oversubscribed, "4 workers on 64 PUs");
    loco_plan_free(&p);
    loco_topo_close(&t);
}

Test(topo, compact_at_and_above_the_cores_uses_siblings_last) {
    loco_topo t;
    open_synthetic(&t, BIG);
    int ws[] = {32, 40};
    for (int k = 0; k < 2; k++) {
        loco_plan p = plan_of(&t, ws[k], LOCO_PIN_COMPACT);
        check_common(&t, &p);
        for (int i = 0; i < 32; i++)
            cr_assert_eq(p.places[i].core, i, "W=%d: worker %d on core %d", ws[k], i, i);
        for (int i = 32; i < ws[k]; i++)
            cr_assert_eq(p.places[i].core, i - 32, "W=%d: worker %d on core %d's sibling", ws[k], i,
                         i - 32);
        cr_assert_eq(p.places[ws[k]].core, ws[k] - 32, "W=%d: server on the next free sibling", ws[k]);
        cr_assert(!p.oversubscribed, "W=%d fits in 64 PUs", ws[k]);
        for (int i = 0; i < p.nplaces; i++)
            cr_assert(!p.places[i].shared, "W=%d: place %d alone", ws[k], i);
        loco_plan_free(&p);
    }
    loco_topo_close(&t);
}

Test(topo, above_the_pus_places_wrap_and_are_shared) {
    loco_topo t;
    open_synthetic(&t, BIG);
    for (int pin = LOCO_PIN_COMPACT; pin <= LOCO_PIN_SCATTER; pin++) {
        loco_plan p = plan_of(&t, 70, pin);
        check_common(&t, &p);
        cr_assert(p.oversubscribed, "pin %d: 70 workers on 64 PUs", pin);
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(p.places[64 + i].pu, p.places[i].pu, "pin %d: worker %d wraps onto worker %d",
                         pin, 64 + i, i);
            cr_assert(p.places[i].shared && p.places[64 + i].shared, "pin %d: workers %d and %d shared",
                      pin, i, 64 + i);
        }
        for (int i = 6; i < 64; i++) cr_assert(!p.places[i].shared, "pin %d: worker %d alone", pin, i);
        cr_assert(p.places[70].pu == -1 && p.places[71].pu == -1,
                  "pin %d: no free PU for server, evaluator", pin);
        loco_plan_free(&p);
    }
    loco_topo_close(&t);
}

Test(topo, scatter_alternates_packages_then_numa_nodes) {
    loco_topo t;
    open_synthetic(&t, BIG);
    loco_plan p = plan_of(&t, 4, LOCO_PIN_SCATTER);
    check_common(&t, &p);
    int pack[] = {0, 1, 0, 1}, numa[] = {0, 2, 1, 3};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(p.places[i].package, pack[i], "worker %d on package %d", i, pack[i]);
        cr_assert_eq(p.places[i].numa, numa[i], "worker %d on NUMA node %d", i, numa[i]);
    }
    cr_assert_eq(p.places[4].numa, 0, "server: next pick, back on node 0");
    cr_assert_eq(p.places[5].numa, 2, "evaluator: node 2");
    loco_plan_free(&p);
    loco_topo_close(&t);
}

Test(topo, scatter_fills_every_core_evenly_before_siblings) {
    loco_topo t;
    open_synthetic(&t, BIG);
    int ws[] = {32, 40};
    for (int k = 0; k < 2; k++) {
        loco_plan p = plan_of(&t, ws[k], LOCO_PIN_SCATTER);
        check_common(&t, &p);
        for (int i = 0; i < 32; i++) {
            cr_assert_eq(p.places[i].package, i % 2, "W=%d: worker %d on package %d", ws[k], i, i % 2);
            cr_assert_eq(p.places[i].numa, (i % 2) * 2 + (i / 2) % 2, "W=%d: worker %d round the nodes",
                         ws[k], i);
        }
        /* within a node, workers take its cores in order */
        for (int i = 4; i < 32; i++)
            cr_assert_eq(p.places[i].core, p.places[i - 4].core + 1,
                         "W=%d: worker %d on the next core of its node", ws[k], i);
        /* siblings come round in the same order */
        for (int i = 32; i < ws[k]; i++)
            cr_assert_eq(p.places[i].core, p.places[i - 32].core, "W=%d: worker %d on worker %d's core",
                         ws[k], i, i - 32);
        loco_plan_free(&p);
    }
    loco_topo_close(&t);
}

Test(topo, small_machine_with_one_two_and_six_workers) {
    loco_topo t;
    open_synthetic(&t, SMALL);
    for (int pin = LOCO_PIN_COMPACT; pin <= LOCO_PIN_SCATTER; pin++) {
        loco_plan p = plan_of(&t, 1, pin);
        check_common(&t, &p);
        cr_assert(p.places[0].pu == 0 && p.places[1].pu == 1 && p.places[2].pu == -1,
                  "pin %d, W=1: worker PU 0, server PU 1, evaluator not pinned", pin);
        loco_plan_free(&p);

        p = plan_of(&t, 2, pin);
        check_common(&t, &p);
        cr_assert(p.places[0].core == 0 && p.places[1].core == 1, "pin %d, W=2: one core each", pin);
        cr_assert(p.places[2].pu == -1 && p.places[3].pu == -1, "pin %d, W=2: helpers not pinned", pin);
        cr_assert(!p.oversubscribed, "pin %d: 2 workers on 2 PUs", pin);
        loco_plan_free(&p);

        p = plan_of(&t, 6, pin);
        check_common(&t, &p);
        cr_assert(p.oversubscribed, "pin %d: 6 workers on 2 PUs", pin);
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(p.places[i].pu, i % 2, "pin %d, W=6: worker %d on PU %d", pin, i, i % 2);
            cr_assert(p.places[i].shared, "pin %d, W=6: worker %d shared", pin, i);
        }
        cr_assert(p.places[6].pu == -1 && p.places[7].pu == -1, "pin %d, W=6: helpers not pinned", pin);
        loco_plan_free(&p);
    }
    loco_topo_close(&t);
}

Test(topo, pin_none_pins_nothing) {
    loco_topo t;
    open_synthetic(&t, BIG);
    int ws[] = {1, 32, 70};
    for (int k = 0; k < 3; k++) {
        loco_plan p = plan_of(&t, ws[k], LOCO_PIN_NONE);
        check_places(&t, &p);
        for (int i = 0; i < p.nplaces; i++)
            cr_assert_eq(p.places[i].pu, -1, "W=%d: place %d not pinned", ws[k], i);
        cr_assert_eq(p.oversubscribed, ws[k] > 64, "W=%d: oversubscribed is about the machine", ws[k]);
        loco_plan_free(&p);
    }
    loco_topo_close(&t);
}

Test(topo, binding_on_a_synthetic_machine_is_a_no_op) {
    loco_topo t;
    open_synthetic(&t, BIG);
    loco_plan p = plan_of(&t, 40, LOCO_PIN_SCATTER);
    loco_err e = {{0}};
    for (int i = 0; i < p.nplaces; i++)
        cr_assert_eq(loco_topo_bind(&t, &p.places[i], &e), 0, "place %d: %s", i, e.msg);
    loco_plan_free(&p);
    loco_topo_close(&t);
}

Test(topo, real_machine_binds_worker_zero_and_names_failed_places) {
    loco_topo t;
    loco_err e = {{0}};
    cr_assert_eq(loco_topo_open(&t, NULL, &e), 0, "open this machine: %s", e.msg);
    cr_assert(!t.synthetic, "this machine is real");
    cr_assert(t.npackages > 0 && t.nnuma > 0 && t.ncores > 0 && t.npus > 0, "counts");
    cr_assert_leq(t.ncores, t.npus, "no more cores than PUs");
    loco_plan p = plan_of(&t, 1, LOCO_PIN_COMPACT);
    check_common(&t, &p);
    cr_assert_eq(loco_topo_bind(&t, &p.places[0], &e), 0, "bind to worker 0's place: %s", e.msg);
    hwloc_cpuset_t now = hwloc_bitmap_alloc();
    cr_assert_eq(hwloc_get_cpubind(t.topo, now, HWLOC_CPUBIND_THREAD), 0, "read the binding back");
    cr_assert(hwloc_bitmap_isequal(now, pu_obj(&t, p.places[0].pu)->cpuset),
              "bound to exactly that PU");
    hwloc_bitmap_free(now);

    loco_place bad = {
        .role = LOCO_ROLE_WORKER, .index = 3, .pu = t.npus, .core = 0, .numa = 0, .package = 0};
    cr_assert_eq(loco_topo_bind(&t, &bad, &e), -1, "a PU the machine lacks");
    cr_assert_not_null(strstr(e.msg, "worker 3: cannot bind to PU"), "names the place: %s", e.msg);
    loco_place none = {.role = LOCO_ROLE_SERVER, .pu = -1, .core = -1, .numa = -1, .package = -1};
    cr_assert_eq(loco_topo_bind(&t, &none, &e), 0, "not pinned: nothing to do");
    loco_plan_free(&p);
    loco_topo_close(&t);
}

static void check_interleaved(const loco_topo *t, size_t bytes) {
    unsigned char *m = loco_topo_alloc_interleaved(t, bytes);
    cr_assert_not_null(m, "%zu bytes", bytes);
    cr_assert_eq((uintptr_t)m % 64, 0, "64-byte aligned");
    for (size_t i = 0; i < bytes; i++) cr_assert_eq(m[i], 0, "byte %zu of %zu zeroed", i, bytes);
    memset(m, 0xab, bytes);
    loco_topo_free_interleaved(t, m, bytes);
}

Test(topo, interleaved_memory_is_zeroed_and_aligned) {
    loco_topo t;
    loco_err e = {{0}};
    cr_assert_eq(loco_topo_open(&t, NULL, &e), 0, "open this machine: %s", e.msg);
    check_interleaved(&t, 3 << 20);
    check_interleaved(&t, 100);
    loco_topo_close(&t);
    open_synthetic(&t, BIG);
    check_interleaved(&t, 1 << 20);
    check_interleaved(&t, 1);
    loco_topo_close(&t);
}

static char *print_to_string(const loco_topo *t, const loco_plan *p) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f, "memstream");
    loco_topo_print(t, p, f);
    fclose(f);
    return buf;
}

Test(topo, print_shows_machine_caches_places_and_oversubscription) {
    loco_topo t;
    open_synthetic(&t, "pack:1 l2:2 core:1 pu:1");
    loco_plan p = plan_of(&t, 6, LOCO_PIN_COMPACT);
    char *s = print_to_string(&t, &p);
    cr_assert_not_null(strstr(s, "1 package, 1 NUMA node, 2 cores, 2 PUs"), "machine line:\n%s", s);
    cr_assert_not_null(strstr(s, "L2 2 x 4 MiB"), "cache level and size:\n%s", s);
    cr_assert_not_null(strstr(s, "0: 1 GiB"), "NUMA memory:\n%s", s);
    cr_assert_not_null(strstr(s, "worker 0    PU 0  core 0  NUMA 0  package 0"), "worker line:\n%s", s);
    cr_assert_not_null(strstr(s, "worker 5    PU 1  core 1  NUMA 0  package 0"), "wrapped worker:\n%s",
                       s);
    cr_assert_not_null(strstr(s, "server      not pinned"), "server line:\n%s", s);
    cr_assert_not_null(strstr(s, "evaluator   not pinned"), "evaluator line:\n%s", s);
    cr_assert_not_null(strstr(s, "6 workers on 2 PUs: oversubscribed, workers share cores"),
                       "warning:\n%s", s);
    free(s);
    loco_plan_free(&p);

    p = plan_of(&t, 1, LOCO_PIN_COMPACT);
    s = print_to_string(&t, &p);
    cr_assert_not_null(strstr(s, "server      PU 1  core 1"), "server pinned:\n%s", s);
    cr_assert_null(strstr(s, "oversubscribed"), "no warning when it fits:\n%s", s);
    free(s);
    loco_plan_free(&p);
    loco_topo_close(&t);
}
