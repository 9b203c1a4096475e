#include "loco/clock.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


const loco_enum loco_clock_kinds[] = {
    {"real", LOCO_CLOCK_REAL, NULL},
    {"virtual", LOCO_CLOCK_VIRTUAL, NULL},
    {NULL, 0, NULL},
};

int loco_clock_init(loco_clock *c, int kind, int workers, loco_err *e) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->workers = workers;
    c->at = malloc(sizeof(double) * (size_t)workers);
    c->what = calloc((size_t)workers, sizeof(int));
    if (!c->at || !c->what) {
        loco_clock_free(c);
        return loco_errf(e, "out of memory for the clock");
    }
    for (int i = 0; i < workers; i++) c->at[i] = INFINITY;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timed waits against loco_now() */
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->start = loco_now();
    return 0;
}

void loco_clock_free(loco_clock *c) {
    if (c->at) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
    }
    free(c->at);
    free(c->what);
    memset(c, 0, sizeof *c);
}

double loco_clock_wall(const loco_clock *c) {
    return c->offset + loco_now() - c->start;
}

double loco_clock_time(loco_clock *c) {
    if (c->kind == LOCO_CLOCK_REAL) return loco_clock_wall(c);
    pthread_mutex_lock(&c->mu);
    double t = c->now;
    pthread_mutex_unlock(&c->mu);
    return t;
}

void loco_clock_schedule(loco_clock *c, int worker, double at, int what) {
    LOCO_CHECK(worker >= 0 && worker < c->workers, "worker %d of %d", worker, c->workers);
    pthread_mutex_lock(&c->mu);
    /* virtual time never runs backwards: an event is never due before the latest turn */
    LOCO_CHECK(c->kind == LOCO_CLOCK_REAL || !(at < c->now), "worker %d: event at %.17g < now %.17g",
               worker, at, c->now);
    c->at[worker] = at;
    c->what[worker] = what;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void loco_clock_park(loco_clock *c, int worker) {
    loco_clock_schedule(c, worker, INFINITY, LOCO_EVENT_FINISH);
}

/* worker i's event comes before worker j's */
static int earlier(const loco_clock *c, int i, int j) {
    if (c->at[i] != c->at[j]) return c->at[i] < c->at[j];
    if (c->what[i] != c->what[j]) return c->what[i] < c->what[j];
    return i < j;
}

static int is_first(const loco_clock *c, int worker) {
    for (int j = 0; j < c->workers; j++)
        if (j != worker && isfinite(c->at[j]) && earlier(c, j, worker)) return 0;
    return 1;
}

/* whether worker may take its turn now (under mu) */
static int may_go(const loco_clock *c, int worker) {
    return !c->paused && (c->kind == LOCO_CLOCK_REAL || is_first(c, worker));
}

int loco_clock_turn_for(loco_clock *c, int worker, int what, double at, double *t,
                        double *waited) {
    double t0 = loco_now();
    pthread_mutex_lock(&c->mu);
    int real = c->kind == LOCO_CLOCK_REAL;
    /* a worker with no event would wait for a turn that never comes (one parked since it
     * was scheduled returns at once: no longer its event) */
    LOCO_CHECK(real || isfinite(at), "worker %d waits for its turn with no event", worker);
    c->waiting++;
    int mine;
    while ((mine = real || (c->at[worker] == at && c->what[worker] == what)) && !may_go(c, worker))
        pthread_cond_wait(&c->cv, &c->mu);
    c->waiting--;
    if (mine && !real) c->now = c->at[worker];
    *t = real ? loco_clock_wall(c) : c->now;
    pthread_mutex_unlock(&c->mu);
    *waited = loco_now() - t0;
    return mine;
}

double loco_clock_turn(loco_clock *c, int worker, double *waited) {
    pthread_mutex_lock(&c->mu);
    double at = c->at[worker];
    int what = c->what[worker];
    pthread_mutex_unlock(&c->mu);
    double t;
    loco_clock_turn_for(c, worker, what, at, &t, waited);
    return t;
}

void loco_clock_sleep_until(loco_clock *c, double t) {
    pthread_mutex_lock(&c->mu);
    c->waiting++;
    for (;;) {
        double left = t - loco_clock_wall(c);
        if (left <= 0 && !c->paused) break;
        /* a timed wait on the clock's condition: woken by resume, or after at most 50 ms */
        double until = loco_now() + (left > 0 && left < 0.05 ? left : 0.05);
        struct timespec ts = loco_timespec(until);
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    c->waiting--;
    pthread_mutex_unlock(&c->mu);
}

void loco_clock_pause(loco_clock *c) {
    pthread_mutex_lock(&c->mu);
    c->paused = 1;
    pthread_mutex_unlock(&c->mu);
}

void loco_clock_resume(loco_clock *c) {
    pthread_mutex_lock(&c->mu);
    c->paused = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int loco_clock_waiting(loco_clock *c) {
    pthread_mutex_lock(&c->mu);
    int n = c->waiting;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void loco_clock_save(loco_clock *c, loco_pack *p) {
    pthread_mutex_lock(&c->mu);
    loco_pack_f64(p, c->now);
    loco_pack_f64(p, loco_clock_wall(c));
    for (int w = 0; w < c->workers; w++) {
        loco_pack_f64(p, c->at[w]);
        loco_pack_i64(p, c->what[w]);
    }
    pthread_mutex_unlock(&c->mu);
}

int loco_clock_load(loco_clock *c, loco_unpack *u) {
    c->now = loco_unpack_f64(u);
    c->offset = loco_unpack_f64(u);
    c->start = loco_now();
    for (int w = 0; w < c->workers; w++) {
        c->at[w] = loco_unpack_f64(u);
        c->what[w] = (int)loco_unpack_range(u, LOCO_EVENT_FINISH, LOCO_EVENT_BACK);
    }
    return u->bad ? -1 : 0;
}

double loco_clock_pay(double *owed, int spin) {
    if (*owed <= 0) return 0;
    double start = loco_now(), end = start + *owed;
    if (spin) {
        while (loco_now() < end) {
        }
    } else {
        /* an absolute deadline: a signal (Ctrl-C) does not cut the wait short */
        struct timespec ts = loco_timespec(end);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
    double spent = loco_now() - start;
    *owed -= spent;
    return spent;
}
