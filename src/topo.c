/* topo: the hwloc topology, the pinning plan, binding threads and memory (topo.h). */
#include "loco/topo.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>


/* ---------------------------------------------------------------- the machine */

int loco_topo_open(loco_topo *t, const char *synthetic, loco_err *e) {
    memset(t, 0, sizeof *t);
    if (hwloc_topology_init(&t->topo) < 0) {
        t->topo = NULL;
        return loco_errf(e, "topology: hwloc cannot start: %s", strerror(errno));
    }
    if (synthetic && hwloc_topology_set_synthetic(t->topo, synthetic) < 0) {
        loco_errf(e, "synthetic topology \"%s\": not a valid hwloc description "
                     "(e.g. \"pack:2 numa:2 core:8 pu:2\")", synthetic);
        goto fail;
    }
    if (hwloc_topology_load(t->topo) < 0) {
        loco_errf(e, "topology: hwloc cannot load %s: %s",
                  synthetic ? "the synthetic description" : "this machine", strerror(errno));
        goto fail;
    }
    /* an XML or synthetic topology from HWLOC_* environment variables is not this machine
     * either: binding to it would bind to the wrong PUs */
    t->synthetic = synthetic != NULL || !hwloc_topology_is_thissystem(t->topo);
    t->npackages = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PACKAGE);
    if (t->npackages == 0) t->npackages = 1;
    t->nnuma = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_NUMANODE);
    t->npus = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU);
    t->ncores = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_CORE);
    if (t->ncores == 0) t->ncores = t->npus;
    if (t->npus <= 0) {
        loco_errf(e, "topology: hwloc finds no processing units");
        goto fail;
    }
    return 0;
fail:
    hwloc_topology_destroy(t->topo);
    t->topo = NULL;
    return -1;
}

void loco_topo_close(loco_topo *t) {
    if (t->topo) hwloc_topology_destroy(t->topo);
    memset(t, 0, sizeof *t);
}

/* What the plan spreads workers over: cores, or PUs on a machine that reports no cores. */
static hwloc_obj_type_t unit_type(const loco_topo *t) {
    return hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
}

/* The first NUMA node whose CPUs include set: with several memory kinds near the same
 * cores (DRAM and HBM), that is the ordinary DRAM node. -1 when none holds them. */
static int numa_of(const loco_topo *t, hwloc_const_cpuset_t set) {
    hwloc_obj_t node = NULL;
    while ((node = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, node)))
        if (!hwloc_bitmap_iszero(node->cpuset) && hwloc_bitmap_isincluded(set, node->cpuset))
            return (int)node->logical_index;
    return -1;
}

/* A machine without package objects is one package. */
static int package_of(const loco_topo *t, hwloc_obj_t obj) {
    hwloc_obj_t pack = hwloc_get_ancestor_obj_by_type(t->topo, HWLOC_OBJ_PACKAGE, obj);
    return pack ? (int)pack->logical_index : 0;
}

/* ---------------------------------------------------------------- the plan */

typedef struct {
    int package, numa, unit, pick;
} unit_key;

static int cmp_int(int a, int b) {
    return (a > b) - (a < b);
}

static int by_package_numa(const void *a, const void *b) {
    const unit_key *x = a, *y = b;
    if (x->package != y->package) return cmp_int(x->package, y->package);
    if (x->numa != y->numa) return cmp_int(x->numa, y->numa);
    return cmp_int(x->unit, y->unit);
}

static int by_pick_package(const void *a, const void *b) {
    const unit_key *x = a, *y = b;
    if (x->pick != y->pick) return cmp_int(x->pick, y->pick);
    if (x->package != y->package) return cmp_int(x->package, y->package);
    return cmp_int(x->unit, y->unit);
}

/* Ranks the units of one package: with G NUMA nodes in it, the r-th unit of its g-th
 * node is the package's pick r*G + g, so the package's picks go round its nodes. */
static void rank_package(unit_key *k, int n) {
    int groups = 1;
    for (int i = 1; i < n; i++) groups += k[i].numa != k[i - 1].numa;
    for (int i = 0, g = 0, r = 0; i < n; i++) {
        if (i > 0 && k[i].numa != k[i - 1].numa) g++, r = 0;
        k[i].pick = r++ * groups + g;
    }
}

/* Scatter order of the n units: the packages take turns (pick 0 of every package, then
 * pick 1 of every package, ...), and a package's picks go round its NUMA nodes. On an
 * irregular machine the packages or nodes with more cores simply run on alone. */
static int scatter_units(const loco_topo *t, hwloc_obj_type_t type, int *units, int n) {
    unit_key *k = malloc((size_t)n * sizeof *k);
    if (!k) return -1;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t u = hwloc_get_obj_by_type(t->topo, type, (unsigned)i);
        k[i] = (unit_key){package_of(t, u), numa_of(t, u->cpuset), i, 0};
    }
    qsort(k, (size_t)n, sizeof *k, by_package_numa);
    for (int s = 0, end; s < n; s = end) {
        for (end = s; end < n && k[end].package == k[s].package; end++) {}
        rank_package(k + s, end - s);
    }
    qsort(k, (size_t)n, sizeof *k, by_pick_package);
    for (int i = 0; i < n; i++) units[i] = k[i].unit;
    free(k);
    return 0;
}

/* Every PU once, in the order workers take them: the first PU of each unit in unit order,
 * then the second PU of each (SMT siblings), and so on. order has t->npus entries. */
static int pu_order(const loco_topo *t, int scatter, int *order) {
    hwloc_obj_type_t type = unit_type(t);
    int nunits = t->ncores, n = 0;   /* the cores, or the PUs when there are none */
    LOCO_CHECK(nunits > 0, "%d units", nunits);
    int *units = malloc((size_t)nunits * sizeof *units);
    char *taken = calloc((size_t)t->npus, 1);
    if (!units || !taken) goto fail;
    for (int i = 0; i < nunits; i++) units[i] = i;
    if (scatter && scatter_units(t, type, units, nunits) < 0) goto fail;
    for (unsigned rank = 0, added = 1; added; rank++) {
        added = 0;
        for (int i = 0; i < nunits; i++) {
            hwloc_obj_t u = hwloc_get_obj_by_type(t->topo, type, (unsigned)units[i]);
            hwloc_obj_t pu = hwloc_get_obj_inside_cpuset_by_type(t->topo, u->cpuset, HWLOC_OBJ_PU, rank);
            if (!pu || taken[pu->logical_index]) continue;
            taken[pu->logical_index] = 1;
            order[n++] = (int)pu->logical_index;
            added = 1;
        }
    }
    /* PUs outside every core: hwloc does not build such machines, but none is lost */
    for (int i = 0; i < t->npus; i++)
        if (!taken[i]) order[n++] = i;
    LOCO_CHECK(n == t->npus, "%d PUs of %d", n, t->npus);
    free(units);
    free(taken);
    return 0;
fail:
    free(units);
    free(taken);
    return -1;
}

static void place_at(const loco_topo *t, int pu_index, loco_place *pl) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_PU, (unsigned)pu_index);
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t->topo, HWLOC_OBJ_CORE, pu);
    pl->pu = pu_index;
    pl->core = core ? (int)core->logical_index : pu_index;
    pl->numa = numa_of(t, pu->cpuset);
    pl->package = package_of(t, pu);
}

static void unpin(loco_place *pl) {
    pl->pu = pl->core = pl->numa = pl->package = -1;
}

/* Workers take order[i mod npus]; the server and the evaluator only PUs left over. */
static void assign(const loco_topo *t, const int *order, loco_plan *p, int *count) {
    int w = p->workers, next = w;
    for (int i = 0; i < w; i++) place_at(t, order[i % t->npus], &p->places[i]);
    for (int i = w; i < p->nplaces; i++) {
        if (next < t->npus) place_at(t, order[next++], &p->places[i]);
        else unpin(&p->places[i]);
    }
    for (int i = 0; i < p->nplaces; i++)
        if (p->places[i].pu >= 0) count[p->places[i].pu]++;
    for (int i = 0; i < p->nplaces; i++)
        p->places[i].shared = p->places[i].pu >= 0 && count[p->places[i].pu] > 1;
}

const loco_enum loco_pin_kinds[] = {
    {"compact", LOCO_PIN_COMPACT, NULL},
    {"scatter", LOCO_PIN_SCATTER, NULL},
    {"none", LOCO_PIN_NONE, NULL},
    {NULL, 0, NULL},
};

int loco_topo_plan(const loco_topo *t, int workers, int pin, loco_plan *p, loco_err *e) {
    LOCO_CHECK(workers >= 1 && workers <= INT_MAX - 2, "%d workers", workers);
    LOCO_CHECK(pin == LOCO_PIN_COMPACT || pin == LOCO_PIN_SCATTER || pin == LOCO_PIN_NONE, "pin %d",
               pin);
    memset(p, 0, sizeof *p);
    p->pin = pin;
    p->workers = workers;
    p->nplaces = workers + 2;
    p->oversubscribed = workers > t->npus;
    p->places = calloc((size_t)p->nplaces, sizeof *p->places);
    int *order = malloc((size_t)t->npus * sizeof *order);
    int *count = calloc((size_t)t->npus, sizeof *count);
    if (!p->places || !order || !count) goto oom;
    for (int i = 0; i < p->nplaces; i++) {
        p->places[i].role = i < workers ? LOCO_ROLE_WORKER
                          : i == workers ? LOCO_ROLE_SERVER : LOCO_ROLE_EVALUATOR;
        p->places[i].index = i < workers ? i : 0;
        unpin(&p->places[i]);
    }
    if (pin != LOCO_PIN_NONE) {
        if (pu_order(t, pin == LOCO_PIN_SCATTER, order) < 0) goto oom;
        assign(t, order, p, count);
    }
    free(order);
    free(count);
    return 0;
oom:
    free(order);
    free(count);
    loco_plan_free(p);
    return loco_errf(e, "out of memory for the pinning plan of %d workers", workers);
}

void loco_plan_free(loco_plan *p) {
    free(p->places);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------- binding */

static const char *place_name(const loco_place *pl, char *buf, size_t n) {
    if (pl->role == LOCO_ROLE_WORKER) snprintf(buf, n, "worker %d", pl->index);
    else snprintf(buf, n, "%s", pl->role == LOCO_ROLE_SERVER ? "server" : "evaluator");
    return buf;
}

/* The memory policy follows the CPU binding, so a thread's replica and optimizer state,
 * first touched after this, live on its own node. Unsupported (ENOSYS, EXDEV: kernels
 * without NUMA support, containers without mbind) only costs locality. */
static int bind_memory(const loco_topo *t, const loco_place *pl, const char *name, loco_err *e) {
    if (t->nnuma <= 1 || pl->numa < 0) return 0;
    hwloc_obj_t node = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, (unsigned)pl->numa);
    if (!node) return loco_errf(e, "%s: no NUMA node %d on this machine", name, pl->numa);
    int flags = HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET;
    if (hwloc_set_membind(t->topo, node->nodeset, HWLOC_MEMBIND_BIND, flags) < 0 &&
        errno != ENOSYS && errno != EXDEV)
        return loco_errf(e, "%s: cannot bind memory to NUMA node %d: %s", name, pl->numa,
                         strerror(errno));
    return 0;
}

int loco_topo_bind(const loco_topo *t, const loco_place *pl, loco_err *e) {
    if (!t || !pl || pl->pu < 0 || t->synthetic) return 0;
    char name[32];
    place_name(pl, name, sizeof name);
    hwloc_obj_t pu = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_PU, (unsigned)pl->pu);
    if (!pu)
        return loco_errf(e, "%s: cannot bind to PU %d: this machine has %d PUs", name, pl->pu, t->npus);
    if (hwloc_set_cpubind(t->topo, pu->cpuset, HWLOC_CPUBIND_THREAD) < 0)
        return loco_errf(e, "%s: cannot bind to PU %d: %s", name, pl->pu, strerror(errno));
    return bind_memory(t, pl, name, e);
}

/* ---------------------------------------------------------------- interleaved memory */

/* hwloc's path: only a real machine with several nodes; alloc and free must agree. */
static int interleaves(const loco_topo *t) {
    return !t->synthetic && t->nnuma > 1;
}

void *loco_topo_alloc_interleaved(const loco_topo *t, size_t bytes) {
    if (!interleaves(t)) return loco_alloc(bytes);
    size_t len = bytes ? bytes : 1;
    hwloc_const_nodeset_t all = hwloc_topology_get_topology_nodeset(t->topo);
    int flags = HWLOC_MEMBIND_STRICT | HWLOC_MEMBIND_BYNODESET;
    void *p = hwloc_alloc_membind(t->topo, len, all, HWLOC_MEMBIND_INTERLEAVE, flags);
#ifdef __linux__
    /* hwloc maps fresh anonymous pages on Linux: already zero, and not touching them here
     * leaves each page to be placed by the interleave policy when first written */
    if (p) return p;
#else
    if (p) return memset(p, 0, len);
#endif
    /* interleaving unsupported or refused (ENOSYS, EXDEV, a container without mbind):
     * plain pages, still from hwloc so that hwloc_free releases them */
    p = hwloc_alloc(t->topo, len);
    return p ? memset(p, 0, len) : NULL;
}

void loco_topo_free_interleaved(const loco_topo *t, void *p, size_t bytes) {
    if (!p) return;
    if (!interleaves(t)) free(p);
    else hwloc_free(t->topo, p, bytes ? bytes : 1);
}

/* ---------------------------------------------------------------- printing */

static const char *plural(int n) {
    return n == 1 ? "" : "s";
}

static void print_numa(const loco_topo *t, FILE *f) {
    char sz[32];
    hwloc_obj_t node = NULL;
    fprintf(f, "NUMA nodes:");
    while ((node = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, node))) {
        uint64_t mem = node->attr ? node->attr->numanode.local_memory : 0;
        fprintf(f, "%s %u: %s", node->logical_index ? "," : "", node->logical_index,
                mem ? loco_size_str(mem, sz, sizeof sz) : "memory unknown");
    }
    fprintf(f, "\n");
}

/* One entry per cache level: "L2 2 x 2 MiB", or "L2 12 x 1.3 MiB to 2 MiB" where the
 * caches of a level differ (hybrid cores). */
static void print_cache(const loco_topo *t, hwloc_obj_type_t type, int *first, FILE *f) {
    int n = hwloc_get_nbobjs_by_type(t->topo, type);
    if (n <= 0) return;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < n; i++) {
        uint64_t s = hwloc_get_obj_by_type(t->topo, type, (unsigned)i)->attr->cache.size;
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    char name[16], a[32], b[32];
    hwloc_obj_type_snprintf(name, sizeof name, hwloc_get_obj_by_type(t->topo, type, 0), 0);
    fprintf(f, "%s%s %d x %s", *first ? " " : ", ", name, n, loco_size_str(lo, a, sizeof a));
    if (hi != lo) fprintf(f, " to %s", loco_size_str(hi, b, sizeof b));
    *first = 0;
}

static void print_machine(const loco_topo *t, FILE *f) {
    static const hwloc_obj_type_t caches[] = {
        HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L1ICACHE, HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L2ICACHE,
        HWLOC_OBJ_L3CACHE, HWLOC_OBJ_L3ICACHE, HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L5CACHE};
    fprintf(f, "machine: %d package%s, %d NUMA node%s, %d core%s, %d PU%s%s\n", t->npackages,
            plural(t->npackages), t->nnuma, plural(t->nnuma), t->ncores, plural(t->ncores),
            t->npus, plural(t->npus), t->synthetic ? " (synthetic: nothing is bound)" : "");
    print_numa(t, f);
    int first = 1;
    fprintf(f, "caches:");
    for (size_t i = 0; i < sizeof caches / sizeof caches[0]; i++) print_cache(t, caches[i], &first, f);
    fprintf(f, "%s\n", first ? " unknown" : "");
}

static void print_place(const loco_place *pl, FILE *f) {
    char name[32];
    fprintf(f, "%-12s", place_name(pl, name, sizeof name));
    if (pl->pu < 0) {
        fprintf(f, "not pinned\n");
        return;
    }
    fprintf(f, "PU %d  core %d  ", pl->pu, pl->core);
    if (pl->numa >= 0) fprintf(f, "NUMA %d  ", pl->numa);
    else fprintf(f, "NUMA ?  ");
    fprintf(f, "package %d%s\n", pl->package, pl->shared ? "  (shared)" : "");
}

int loco_topo_run_plan(const loco_topo *t, int workers, int pin, int virtual_clock, loco_plan *p,
                       loco_err *e) {
    int seated = virtual_clock && workers > t->npus;
    if (loco_topo_plan(t, workers, seated ? LOCO_PIN_NONE : pin, p, e) != 0) return -1;
    p->seated = seated;
    return 0;
}

void loco_topo_print(const loco_topo *t, const loco_plan *p, FILE *f) {
    print_machine(t, f);
    if (!p) return;   /* the machine alone */
    fprintf(f, "plan: %s, %d worker%s\n", loco_enum_name(loco_pin_kinds, p->pin), p->workers, plural(p->workers));
    for (int i = 0; i < p->nplaces; i++) print_place(&p->places[i], f);
    if (p->seated)
        fprintf(f, "%d workers on %d PUs: the virtual clock seats them unpinned, %d rounds at a "
                "time\n", p->workers, t->npus, t->npus);
    else if (p->oversubscribed)
        fprintf(f, "%d workers on %d PUs: oversubscribed, workers share cores\n", p->workers, t->npus);
}
