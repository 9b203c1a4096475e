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
    pthread_cond_init(&c->cv, NULL);
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
    return loco_now() - c->start;
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

double loco_clock_turn(loco_clock *c, int worker, double *waited) {
    *waited = 0;
    if (c->kind == LOCO_CLOCK_REAL) return loco_clock_wall(c);
    double t0 = loco_now();
    pthread_mutex_lock(&c->mu);
    /* a worker with no event would wait for a turn that never comes */
    LOCO_CHECK(isfinite(c->at[worker]), "worker %d waits for its turn with no event", worker);
    while (!is_first(c, worker)) pthread_cond_wait(&c->cv, &c->mu);
    c->now = c->at[worker];
    double t = c->now;
    pthread_mutex_unlock(&c->mu);
    *waited = loco_now() - t0;
    return t;
}

double loco_clock_pay(double *owed, int spin) {
    if (*owed <= 0) return 0;
    double start = loco_now(), end = start + *owed;
    if (spin) {
        while (loco_now() < end) {
        }
    } else {
        /* an absolute deadline: a signal (Ctrl-C) does not cut the wait short */
        struct timespec ts = {(time_t)end, (long)((end - (double)(time_t)end) * 1e9)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
    double spent = loco_now() - start;
    *owed -= spent;
    return spent;
}
