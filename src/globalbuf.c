#include "loco/globalbuf.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>


/* Spins before a ticket-kind waiter sleeps: a stripe is held for ~1-10 us, so a
 * short spin usually sees the turn come without a system call. */
enum { SPINS_BEFORE_SLEEP = 4000 };

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long futex(atomic_uint *addr, int op, unsigned val) {
    return syscall(SYS_futex, (unsigned *)addr, op, val, NULL, NULL, 0);
}

static int my_turn(loco_stripe *st, uint32_t t) {
    return atomic_load_explicit(&st->turn, memory_order_acquire) == t;
}

const loco_enum loco_lock_kinds[] = {
    {"mutex", LOCO_LOCK_MUTEX, NULL},
    {"spin", LOCO_LOCK_SPIN, NULL},
    {"ticket", LOCO_LOCK_TICKET, NULL},
    {NULL, 0, NULL},
};

/* ------------------------------------------------------------ the waits */

static void wait_spin(loco_stripe *st, uint32_t t) {
    while (!my_turn(st, t)) cpu_relax();
}

/* spin, then sleep on the turn word; the releaser wakes sleepers only when there are
 * some (both sides sequentially consistent: a waiter either sees the new turn or is
 * seen as a sleeper) */
static void wait_ticket(loco_stripe *st, uint32_t t) {
    for (int i = 0; i < SPINS_BEFORE_SLEEP; i++) {
        if (my_turn(st, t)) return;
        cpu_relax();
    }
    while (!my_turn(st, t)) {
        atomic_fetch_add(&st->sleepers, 1);
        unsigned cur = atomic_load(&st->turn);
        if (cur != t) futex(&st->turn, FUTEX_WAIT_PRIVATE, cur);
        atomic_fetch_sub(&st->sleepers, 1);
    }
}

static void wait_mutex(loco_stripe *st, uint32_t t) {
    pthread_mutex_lock(&st->mu);
    while (atomic_load(&st->turn) != t) pthread_cond_wait(&st->cv, &st->mu);
    pthread_mutex_unlock(&st->mu);
}

/* waits for turn t on a stripe; returns the nanoseconds waited (0 on the fast path) */
static uint64_t enter(const loco_globalbuf *gb, loco_stripe *st, uint32_t t) {
    if (my_turn(st, t)) return 0;
    double t0 = loco_now();
    switch (gb->lock) {
    case LOCO_LOCK_SPIN: wait_spin(st, t); break;
    case LOCO_LOCK_MUTEX: wait_mutex(st, t); break;
    case LOCO_LOCK_TICKET: wait_ticket(st, t); break;
    }
    uint64_t ns = (uint64_t)((loco_now() - t0) * 1e9);
    atomic_fetch_add_explicit(&st->waits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->wait_ns, ns, memory_order_relaxed);
    return ns;
}

static void leave(const loco_globalbuf *gb, loco_stripe *st, uint32_t t) {
    LOCO_CHECK(atomic_load_explicit(&st->turn, memory_order_relaxed) == t,
               "left a stripe whose turn is %u, not ours (%u)", atomic_load(&st->turn), t);
    switch (gb->lock) {
    case LOCO_LOCK_SPIN:
        atomic_store_explicit(&st->turn, t + 1, memory_order_release);
        break;
    case LOCO_LOCK_MUTEX:
        pthread_mutex_lock(&st->mu);
        atomic_store(&st->turn, t + 1);
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        break;
    case LOCO_LOCK_TICKET:
        atomic_store(&st->turn, t + 1);
        if (atomic_load(&st->sleepers) > 0) futex(&st->turn, FUTEX_WAKE_PRIVATE, INT_MAX);
        break;
    }
}

/* ------------------------------------------------------------ lifecycle */

/* one of theta, m, a; NULL with its size and name in e */
static float *alloc_floats(const loco_globalbuf *gb, size_t n, const char *name, loco_err *e) {
    size_t bytes = n * sizeof(float);
    float *p = gb->topo ? loco_topo_alloc_interleaved(gb->topo, bytes) : loco_alloc(bytes);
    if (!p) {
        char sz[32];
        loco_errf(e, "cannot allocate %s for the global buffer's %s (%zu parameters)",
                  loco_size_str(bytes, sz, sizeof sz), name, n);
    }
    return p;
}

/* the stripes' turn words, zeroed; NULL with the size in e */
static loco_stripe *alloc_stripes(int nstripes, loco_err *e) {
    size_t bytes = sizeof(loco_stripe) * (size_t)nstripes;
    loco_stripe *s = aligned_alloc(128, bytes);
    if (s) {
        memset(s, 0, bytes);
    } else {
        char sz[32];
        loco_errf(e, "cannot allocate %s for the global buffer's %d stripe turns",
                  loco_size_str(bytes, sz, sizeof sz), nstripes);
    }
    return s;
}

static void free_floats(const loco_globalbuf *gb, float *p) {
    if (!p) return;
    if (gb->topo)
        loco_topo_free_interleaved(gb->topo, p, gb->n * sizeof(float));
    else
        free(p);
}

static size_t stripe_len_of(long stripe_kib) {
    return ((size_t)stripe_kib * 1024 / sizeof(float) + 15) / 16 * 16;
}

static int nstripes_of(size_t n, size_t stripe_len) {
    int s = (int)((n + stripe_len - 1) / stripe_len);
    return s < 1 ? 1 : s;
}

uint64_t loco_globalbuf_bytes(size_t n, long stripe_kib) {
    uint64_t array = loco_mul_sat(n, sizeof(float));
    if (array <= UINT64_MAX - LOCO_ALIGN)
        array = (array + LOCO_ALIGN - 1) / LOCO_ALIGN * LOCO_ALIGN;
    uint64_t stripes = (uint64_t)nstripes_of(n, stripe_len_of(stripe_kib)) * sizeof(loco_stripe);
    return loco_add_sat(loco_mul_sat(array, 3), stripes);
}

int loco_globalbuf_init(loco_globalbuf *gb, const float *init, size_t n, long stripe_kib,
                        int lock, const loco_topo *topo, loco_err *e) {
    memset(gb, 0, sizeof *gb);
    LOCO_CHECK(lock == LOCO_LOCK_MUTEX || lock == LOCO_LOCK_SPIN || lock == LOCO_LOCK_TICKET,
               "lock kind %d", lock);
    LOCO_CHECK(stripe_kib >= 1, "stripe_kib %ld", stripe_kib);
    gb->n = n;
    gb->lock = lock;
    gb->topo = topo;
    gb->stripe_len = stripe_len_of(stripe_kib);
    gb->nstripes = nstripes_of(n, gb->stripe_len);
    gb->theta = alloc_floats(gb, n, "theta", e);
    gb->m = gb->theta ? alloc_floats(gb, n, "momentum m", e) : NULL;
    gb->a = gb->m ? alloc_floats(gb, n, "accumulator a", e) : NULL;
    gb->stripes = gb->a ? alloc_stripes(gb->nstripes, e) : NULL;
    if (!gb->stripes) {
        loco_globalbuf_free(gb);
        return -1;
    }
    for (int s = 0; s < gb->nstripes; s++) {
        pthread_mutex_init(&gb->stripes[s].mu, NULL);
        pthread_cond_init(&gb->stripes[s].cv, NULL);
    }
    memcpy(gb->theta, init, n * sizeof(float));
    return 0;
}

void loco_globalbuf_free(loco_globalbuf *gb) {
    for (int s = 0; gb->stripes && s < gb->nstripes; s++) {
        pthread_mutex_destroy(&gb->stripes[s].mu);
        pthread_cond_destroy(&gb->stripes[s].cv);
    }
    free(gb->stripes);
    free_floats(gb, gb->theta);
    free_floats(gb, gb->m);
    free_floats(gb, gb->a);
    memset(gb, 0, sizeof *gb);
}

/* ------------------------------------------------------------ operations */

uint64_t loco_globalbuf_tickets(loco_globalbuf *gb, int count) {
    return atomic_fetch_add(&gb->next, (unsigned long)count);
}

double loco_globalbuf_walk(loco_globalbuf *gb, uint64_t t, loco_stripe_fn fn, void *ctx) {
    /* a ticket never handed out would wait for a turn that never comes */
    LOCO_CHECK(t < atomic_load(&gb->next), "ticket %lu walked, only %lu issued",
               (unsigned long)t, (unsigned long)atomic_load(&gb->next));
    uint32_t turn = (uint32_t)t;
    /* turns only grow: one already past t means t was walked before, and would wait forever */
    LOCO_CHECK((int32_t)(atomic_load(&gb->stripes[0].turn) - turn) <= 0,
               "ticket %lu walked twice", (unsigned long)t);
    uint64_t waited = 0;
    for (int s = 0; s < gb->nstripes; s++) {
        loco_stripe *st = &gb->stripes[s];
        size_t lo = (size_t)s * gb->stripe_len;
        size_t hi = lo + gb->stripe_len < gb->n ? lo + gb->stripe_len : gb->n;
        waited += enter(gb, st, turn);
        if (fn) fn(ctx, gb, s, lo, hi);
        leave(gb, st, turn);
    }
    return (double)waited * 1e-9;
}

static void copy_out(void *ctx, loco_globalbuf *gb, int s, size_t lo, size_t hi) {
    (void)s;
    memcpy((float *)ctx + lo, gb->theta + lo, (hi - lo) * sizeof(float));
}

double loco_globalbuf_pull(loco_globalbuf *gb, uint64_t t, float *dst) {
    return loco_globalbuf_walk(gb, t, copy_out, dst);
}

void loco_globalbuf_contention(const loco_globalbuf *gb, unsigned long *waits, double *wait_s) {
    unsigned long w = 0, ns = 0;
    for (int s = 0; s < gb->nstripes; s++) {
        w += atomic_load(&gb->stripes[s].waits);
        ns += atomic_load(&gb->stripes[s].wait_ns);
    }
    *waits = w;
    *wait_s = (double)ns * 1e-9;
}
