/* globalbuf: the global parameters theta, the outer momentum m and the DN accumulator
 * a, each n floats in the model's layout, split into stripes with one turn word each
 * on its own cache line. Every operation holds a ticket and walks the stripes in
 * ascending order, entering a stripe only when its turn comes (all operations with
 * smaller tickets have left it): so every stripe sees the operations in ticket order,
 * operations pipeline along the stripes without passing each other, and a pull with
 * ticket p sees exactly the operations before p. Any thread may carry out any ticket,
 * which is what lets the server thread sweep for a worker. Knows no optimizer: an
 * operation is a function applied to one stripe. */
#ifndef LOCO_GLOBALBUF_H
#define LOCO_GLOBALBUF_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "loco/base.h"
#include "loco/topo.h"

/* How a thread waits for its turn on a stripe: a mutex and condition variable, a pure
 * spin, or a spin then a futex sleep ("ticket", the default: see bench apply). */
enum { LOCO_LOCK_MUTEX, LOCO_LOCK_SPIN, LOCO_LOCK_TICKET };
extern const loco_enum loco_lock_kinds[];

/* One stripe's turn word and its contention counters (updated on the slow path only,
 * by the thread that waited), padded to two cache lines so neighbours never share. */
typedef struct {
    _Alignas(128) atomic_uint turn;   /* the ticket allowed in (mod 2^32) */
    atomic_uint sleepers;             /* threads in futex_wait on turn */
    pthread_mutex_t mu;               /* the mutex kind waits here */
    pthread_cond_t cv;
    atomic_ulong waits;               /* entries that found another ticket in */
    atomic_ulong wait_ns;
} loco_stripe;

typedef struct {
    size_t n;               /* floats in each of theta, m, a */
    size_t stripe_len;      /* floats per stripe, a multiple of 16 (64 bytes) */
    int nstripes;
    int lock;               /* LOCO_LOCK_*: how a thread waits for its turn */
    float *theta, *m, *a;
    loco_stripe *stripes;
    atomic_ulong next;      /* the next ticket */
    const loco_topo *topo;  /* for interleaved memory; may be NULL */
} loco_globalbuf;

/* What an operation does to stripe s, floats [lo, hi) of theta, m, a; runs with the
 * stripe's turn held. */
typedef void (*loco_stripe_fn)(void *ctx, loco_globalbuf *gb, int s, size_t lo, size_t hi);

/* theta is a copy of init (n floats); m and a start at 0. Memory is interleaved over the
 * NUMA nodes when topo has several. */
int loco_globalbuf_init(loco_globalbuf *gb, const float *init, size_t n, long stripe_kib,
                        int lock, const loco_topo *topo, loco_err *e);
void loco_globalbuf_free(loco_globalbuf *gb);

/* The bytes loco_globalbuf_init asks for: theta, m and a, and the stripes' turn words
 * (interleaved memory comes in whole pages: a page more per array at most). Saturates. */
uint64_t loco_globalbuf_bytes(size_t n, long stripe_kib);

/* Reserves count consecutive tickets and returns the first. Callers that need tickets
 * in a particular order with respect to other state take them under their own lock. */
uint64_t loco_globalbuf_tickets(loco_globalbuf *gb, int count);

/* Carries out ticket t: for each stripe in order, waits for its turn, calls fn (NULL:
 * nothing), and passes the turn to t + 1. Returns the seconds spent waiting. Every
 * reserved ticket must be walked, exactly once, or later tickets wait forever. */
double loco_globalbuf_walk(loco_globalbuf *gb, uint64_t t, loco_stripe_fn fn, void *ctx);

/* A walk with ticket t that copies theta into dst (n floats). Returns seconds waited. */
double loco_globalbuf_pull(loco_globalbuf *gb, uint64_t t, float *dst);

/* Contention summed over stripes: entries that had to wait, and the time they waited. */
void loco_globalbuf_contention(const loco_globalbuf *gb, unsigned long *waits, double *wait_s);

#endif
