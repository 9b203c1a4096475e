/* The real clock's emulated slowdown: a worker of factor f that computes for t seconds
 * takes f t in all, whatever the waits' wake-up delays. */
#include <criterion/criterion.h>
#include <math.h>

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
