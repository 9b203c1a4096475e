/* The real clock's emulated slowdown: a worker of factor f that computes for t seconds
 * takes f t in all, whatever the waits' wake-up delays. The virtual clock's turns: in
 * event order (time, then kind, then worker) whatever the threads' timing. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>

#include "loco/clock.h"

/* a step's compute: t seconds of work on this core */
static void busy(double t) {
    double end = loco_now() + t;
    while (loco_now() < end) {
    }
}

/* Steps of 2 ms, each owing (f - 1) x its measured time, paid as the worker pays it. */
static void pace(int spin, double f, int steps, double *computed, double *spent, double *wall) {
    double owed = 0, t0 = loco_now();
    *computed = *spent = 0;
    for (int i = 0; i < steps; i++) {
        double s = loco_now();
        busy(0.002);
        double dt = loco_now() - s;
        *computed += dt;
        owed += (f - 1) * dt;
        *spent += loco_clock_pay(&owed, spin);
    }
    *wall = loco_now() - t0;
}

/* Each wait ends late by a wake-up delay (0.05 to 0.1 ms idle, milliseconds on a loaded
 * machine, against waits of 1 to 4 ms here): paid back on the next wait, so what is left
 * at the end is the last wait's overrun, one wake-up delay. 20 ms covers a loaded 2-core
 * machine; unpaid overruns (each wait on its own, as before) add up past it as soon as
 * wake-ups are late. And spent is wall time: the loop is nothing but steps and waits. */
/* 1 when one paced run of factor f is within the bounds above; why says how it missed */
static int paced_within(int spin, double f, char *why, size_t n) {
    double computed, spent, wall;
    pace(spin, f, 50, &computed, &spent, &wall);
    snprintf(why, n, "%s, f = %g: %.4f s in all for %.4f s of compute (want %.4f), %.4f s of "
             "slowdown", spin ? "spin" : "sleep", f, wall, computed, f * computed, spent);
    return fabs(wall - f * computed) <= 0.02 && fabs(spent - (f - 1) * computed) <= 0.02 &&
           fabs(wall - computed - spent) <= 0.005;
}

/* A machine busy with other work can preempt the last wait past any bound: each case
 * gets three tries, and a systematic error (an overrun not paid back, a wrong factor)
 * misses all three. */
Test(clock, a_slowed_worker_takes_f_times_its_compute_time, .timeout = 60) {
    const double factors[] = {1.5, 3};
    char why[256];
    for (int spin = 0; spin <= 1; spin++) {
        for (int k = 0; k < 2; k++) {
            int ok = 0;
            for (int attempt = 0; attempt < 3 && !ok; attempt++)
                ok = paced_within(spin, factors[k], why, sizeof why);
            cr_assert(ok, "three tries missed; the last: %s", why);
        }
    }
}

Test(clock, nothing_owed_takes_no_time) {
    double owed = 0;
    cr_assert_eq(loco_clock_pay(&owed, 0), 0.0);
    owed = -0.5;   /* an overrun not yet paid back */
    cr_assert_eq(loco_clock_pay(&owed, 1), 0.0);
    cr_assert_eq(owed, -0.5);
}

/* ---- the virtual clock's turn order ---- */

enum { TURN_WORKERS = 4, TURNS = 6 };

typedef struct {
    loco_clock *c;
    int id;
    double *at;                 /* this worker's event times, TURNS of them */
    pthread_mutex_t *mu;
    int *log, *nlog;            /* who took each turn, in order */
    double *times;              /* the clock's time at each turn */
} turner;

/* takes TURNS turns: each time it is its event's turn, logs it and schedules the next */
static void *take_turns(void *arg) {
    turner *t = arg;
    for (int k = 0; k < TURNS; k++) {
        double waited, now = loco_clock_turn(t->c, t->id, &waited);
        pthread_mutex_lock(t->mu);
        t->times[*t->nlog] = now;
        t->log[(*t->nlog)++] = t->id;
        pthread_mutex_unlock(t->mu);
        if (k + 1 < TURNS) loco_clock_schedule(t->c, t->id, t->at[k + 1], LOCO_EVENT_FINISH);
        else loco_clock_park(t->c, t->id);
    }
    return NULL;
}

/* Workers on threads take their turns in the order of their events' times, ties broken
 * by worker index, whatever the threads' timing: the order is that of a merge of the
 * event lists, and the clock's time is each event's. */
Test(clock, virtual_turns_come_in_event_order_whatever_the_threads) {
    double at[TURN_WORKERS][TURNS] = {{0}};
    for (int w = 0; w < TURN_WORKERS; w++)
        for (int k = 0; k < TURNS; k++) at[w][k] = (k + 1) * (1.0 + 0.5 * w) + (w == 2 ? 0.5 : 0);
    at[3][0] = at[0][0]; /* a tie: worker 0 first */
    int want[TURN_WORKERS * TURNS];
    double want_t[TURN_WORKERS * TURNS];
    int next[TURN_WORKERS] = {0};
    for (int i = 0; i < TURN_WORKERS * TURNS; i++) { /* the merge, by hand */
        int best = 0;
        while (next[best] == TURNS) best++;
        for (int w = best + 1; w < TURN_WORKERS; w++)
            if (next[w] < TURNS && at[w][next[w]] < at[best][next[best]]) best = w;
        want_t[i] = at[best][next[best]++];
        want[i] = best;
    }
    for (int rep = 0; rep < 20; rep++) {
        loco_clock c;
        loco_err e;
        cr_assert_eq(loco_clock_init(&c, LOCO_CLOCK_VIRTUAL, TURN_WORKERS, &e), 0);
        for (int w = 0; w < TURN_WORKERS; w++) loco_clock_schedule(&c, w, at[w][0], LOCO_EVENT_FINISH);
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        int log[TURN_WORKERS * TURNS], nlog = 0;
        double times[TURN_WORKERS * TURNS];
        turner t[TURN_WORKERS];
        pthread_t th[TURN_WORKERS];
        for (int w = TURN_WORKERS - 1; w >= 0; w--) { /* started in reverse, to tempt a race */
            t[w] = (turner){&c, w, at[w], &mu, log, &nlog, times};
            cr_assert_eq(pthread_create(&th[w], NULL, take_turns, &t[w]), 0);
        }
        for (int w = 0; w < TURN_WORKERS; w++) pthread_join(th[w], NULL);
        cr_assert_eq(nlog, TURN_WORKERS * TURNS);
        for (int i = 0; i < nlog; i++) {
            cr_assert_eq(log[i], want[i], "repeat %d, turn %d: worker %d, want %d", rep, i, log[i], want[i]);
            cr_assert_eq(times[i], want_t[i], "repeat %d, turn %d: time %g, want %g", rep, i, times[i],
                         want_t[i]);
        }
        loco_clock_free(&c);
    }
}

/* At one time a round's end comes before a window's close, which comes before a failure
 * and a return; a turn waited for an event that was replaced is not the worker's. */
Test(clock, events_at_one_time_go_by_kind_and_a_replaced_event_is_not_a_turn) {
    loco_clock c;
    loco_err e;
    cr_assert_eq(loco_clock_init(&c, LOCO_CLOCK_VIRTUAL, 2, &e), 0);
    loco_clock_schedule(&c, 0, 5.0, LOCO_EVENT_BACK);
    loco_clock_schedule(&c, 1, 5.0, LOCO_EVENT_CLOSE);
    double t, waited;
    cr_assert_eq(loco_clock_turn_for(&c, 1, LOCO_EVENT_CLOSE, 5.0, &t, &waited), 1, "close first");
    cr_assert_eq(t, 5.0);
    loco_clock_schedule(&c, 1, 7.0, LOCO_EVENT_FINISH);
    cr_assert_eq(loco_clock_turn_for(&c, 1, LOCO_EVENT_CLOSE, 5.0, &t, &waited), 0,
                 "the close was replaced by a round's end: not a turn");
    cr_assert_eq(loco_clock_turn_for(&c, 0, LOCO_EVENT_BACK, 5.0, &t, &waited), 1, "then the return");
    loco_clock_park(&c, 0);
    cr_assert_eq(loco_clock_turn(&c, 1, &waited), 7.0, "then the round's end at 7");
    cr_assert_eq(loco_clock_time(&c), 7.0);
    loco_clock_free(&c);
}
