/* hetero: level tables, list parsing and its error messages, speed changes in time,
 * round durations with and without jitter, DyLU step counts. Reference values are
 * written out by hand or recomputed from the formulas here, not taken from hetero.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loco/base.h"
#include "loco/hetero.h"

static void init_ok(loco_hetero *h, int workers, int level, const char *slowdown, double jitter,
                    const char *changes) {
    loco_err e = {{0}};
    loco_hetero_settings st = {.workers = workers, .level = level, .slowdown = slowdown,
                               .jitter = jitter, .changes = changes, .step_s = 1};
    int rc = loco_hetero_init(h, &st, &e);
    cr_assert_eq(rc, 0, "init(%d, \"%s\", \"%s\") failed: %s", workers, slowdown, changes, e.msg);
}

/* init must fail with a message holding both needles, and leave nothing allocated */
static void init_fails(int workers, const char *slowdown, double jitter, const char *changes,
                       const char *needle1, const char *needle2) {
    loco_hetero h;
    loco_err e = {{0}};
    memset(&h, 0x5a, sizeof h);
    loco_hetero_settings st = {.workers = workers, .level = LOCO_LEVEL_NO, .slowdown = slowdown,
                               .jitter = jitter, .changes = changes, .step_s = 1};
    int rc = loco_hetero_init(&h, &st, &e);
    cr_assert_eq(rc, -1, "init(\"%s\", \"%s\") should fail", slowdown, changes);
    cr_assert(strstr(e.msg, needle1) != NULL, "message \"%s\" lacks \"%s\"", e.msg, needle1);
    cr_assert(strstr(e.msg, needle2) != NULL, "message \"%s\" lacks \"%s\"", e.msg, needle2);
    cr_assert_null(h.slowdown, "slowdown freed and cleared after \"%s\"", e.msg);
    cr_assert_null(h.changes, "changes freed and cleared after \"%s\"", e.msg);
    cr_assert_eq(h.nchanges, 0, "no changes left after \"%s\"", e.msg);
    loco_hetero_free(&h);   /* safe after a failed init */
}

/* ---- levels ---- */

Test(hetero, level_for_four_workers_is_the_paper_table_exactly) {
    const double want[4][4] = {
        {1, 1, 1, 1}, {1, 1.1, 1.3, 1.5}, {1, 1.3, 2.0, 3.0}, {1, 1.29, 2.60, 5.74}};
    for (int level = LOCO_LEVEL_NO; level <= LOCO_LEVEL_VERY; level++) {
        double out[4];
        loco_hetero_level(level, 4, out);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(out[i], want[level][i], "level %d worker %d: %.17g, want %g", level, i, out[i],
                         want[level][i]);
    }
}

Test(hetero, level_for_other_worker_counts_spreads_the_ratio_geometrically) {
    const double ratio[4] = {1.0, 1.5, 3.0, 5.74};
    for (int level = LOCO_LEVEL_NO; level <= LOCO_LEVEL_VERY; level++) {
        double one[1], two[2], eight[8];
        loco_hetero_level(level, 1, one);
        cr_assert_eq(one[0], 1.0, "k = 1 is just the fastest worker (level %d)", level);
        loco_hetero_level(level, 2, two);
        cr_assert_eq(two[0], 1.0, "k = 2 first (level %d)", level);
        cr_assert_float_eq(two[1], ratio[level], 1e-15, "k = 2 last is the ratio (level %d)", level);
        loco_hetero_level(level, 8, eight);
        cr_assert_eq(eight[0], 1.0, "k = 8 first (level %d)", level);
        cr_assert_float_eq(eight[7], ratio[level], 1e-12, "k = 8 last is the ratio (level %d)", level);
        double step = eight[1] / eight[0];
        for (int i = 1; i < 8; i++)
            cr_assert_float_eq(eight[i] / eight[i - 1], step, 1e-12, "k = 8 constant ratio at %d (level %d)",
                               i, level);
        /* seven equal steps make up the whole ratio */
        cr_assert_float_eq(pow(step, 7), ratio[level], 1e-12, "k = 8 step^7 (level %d)", level);
    }
    double three[3];
    loco_hetero_level(LOCO_LEVEL_MODERATE, 3, three);
    cr_assert_float_eq(three[1], 1.7320508075688772, 1e-15, "moderate, 3 workers: middle is sqrt(3)");
    cr_assert_float_eq(three[2], 3.0, 1e-15, "moderate, 3 workers: last is 3");
}

Test(hetero, init_takes_the_level_and_an_explicit_list_overrides_it) {
    loco_hetero h;
    init_ok(&h, 4, LOCO_LEVEL_VERY, "", 0, "");
    cr_assert_eq(h.workers, 4);
    cr_assert_eq(h.slowdown[3], 5.74, "very, 4 workers");
    cr_assert_eq(h.nchanges, 0);
    cr_assert_eq(h.jitter, 0.0);
    loco_hetero_free(&h);
    cr_assert_null(h.slowdown, "free clears the struct");

    init_ok(&h, 4, LOCO_LEVEL_VERY, " 1, 2 ,3.5 ,  4 ", 0.1, NULL);
    const double want[4] = {1, 2, 3.5, 4};
    for (int i = 0; i < 4; i++) cr_assert_eq(h.slowdown[i], want[i], "explicit factor %d", i);
    cr_assert_eq(h.jitter, 0.1);
    loco_hetero_free(&h);

    init_ok(&h, 3, LOCO_LEVEL_SLIGHT, "   ", 0, "  ");
    cr_assert_eq(h.slowdown[0], 1.0, "a blank list means no override");
    cr_assert_float_eq(h.slowdown[2], 1.5, 1e-15, "slight, 3 workers: last is 1.5");
    cr_assert_eq(h.nchanges, 0, "a blank change list means no changes");
    loco_hetero_free(&h);

    init_ok(&h, 1, LOCO_LEVEL_VERY, NULL, 0, NULL);
    cr_assert_eq(h.slowdown[0], 1.0, "one worker is the fastest");
    loco_hetero_free(&h);
}

/* ---- errors ---- */

/* The messages quote the item and say what is wrong with it; the config names the key,
 * its value and where it was set (test_config.c). */
Test(hetero, slowdown_list_errors_quote_the_item) {
    init_fails(4, "1,2,3", 0, "", "3 factors for 4 workers", "factors");
    init_fails(4, "1,2,3,4,", 0, "", "5 factors for 4 workers", "factors");
    init_fails(2, "1,2,3", 0, "", "3 factors for 2 workers", "factors");
    init_fails(4, "1,x,3,4", 0, "", "\"x\" (item 2)", "not a finite number");
    init_fails(4, "1, ,3,4", 0, "", "\"\" (item 2)", "not a finite number");
    init_fails(4, "1,2,3,2x", 0, "", "\"2x\" (item 4)", "not a finite number");
    init_fails(4, "1,inf,3,4", 0, "", "\"inf\" (item 2)", "not a finite number");
    init_fails(4, "nan,1,3,4", 0, "", "\"nan\" (item 1)", "not a finite number");
    init_fails(4, "1,2,3,1e999", 0, "", "\"1e999\" (item 4)", "not a finite number");
    init_fails(4, "1,0.5,3,4", 0, "", "factor 0.5 (item 2) is below 1",
               "seconds per step relative to the fastest worker");
    init_fails(2, "1,-3", 0, "", "factor -3 (item 2)", "below 1");
}

Test(hetero, speed_change_errors_quote_the_item) {
    init_fails(4, "", 0, "7@10:2", "\"7@10:2\"", "worker 7 does not exist (4 workers)");
    init_fails(4, "", 0, "0@1:2, 4@10:2", "\"4@10:2\"", "worker 4 does not exist");
    init_fails(4, "", 0, "-1@10:2", "\"-1@10:2\"", "worker -1 does not exist");
    init_fails(4, "", 0, "1@x:2", "\"1@x:2\": expected W@T:F", "W@T:F");
    const char *malformed[] = {"1@10", "1:2@3", "@1:2", "1@2:3:4", "1.5@2:3", "1@2:x", "x@1:2",
                               "1@2:", "1@:2", "1 2@3:4"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", malformed[i]);
        init_fails(4, "", 0, malformed[i], quoted, "expected W@T:F");
    }
    init_fails(4, "", 0, "0@1:2,,1@2:3", "\"\": expected W@T:F", "expected W@T:F");
    init_fails(4, "", 0, "1@-3:2", "\"1@-3:2\"", "time -3");
    init_fails(4, "", 0, "1@nan:2", "\"1@nan:2\"", "not a finite number of seconds");
    init_fails(4, "", 0, "1@1e400:2", "\"1@1e400:2\"", "the time is out of range");
    init_fails(4, "", 0, "1@3:0.5", "\"1@3:0.5\"", "factor 0.5");
    init_fails(4, "", 0, "1@3:inf", "\"1@3:inf\"", "factor inf");
}

Test(hetero, other_init_errors_are_reported_not_asserted) {
    init_fails(4, "", -0.1, "", "jitter", "-0.1");
    init_fails(4, "", NAN, "", "jitter", "nan");
    init_fails(0, "", 0, "", "0 workers", "at least 1");
    /* a bad change after a good list must still free the list */
    init_fails(4, "1,2,3,4", 0, "1@x:2", "\"1@x:2\"", "W@T:F");
}

/* ---- speed changes ---- */

Test(hetero, changes_are_sorted_by_time_and_equal_times_keep_their_order) {
    loco_hetero h;
    init_ok(&h, 4, LOCO_LEVEL_NO, "", 0, "2@30:2, 0@10:3,1@10:4 , 0@10:5,3@0:1.5,1@2.5:7");
    const loco_speed_change want[6] = {{3, 0, 1.5}, {1, 2.5, 7}, {0, 10, 3},
                                       {1, 10, 4},  {0, 10, 5},  {2, 30, 2}};
    cr_assert_eq(h.nchanges, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(h.changes[i].worker, want[i].worker, "change %d worker", i);
        cr_assert_eq(h.changes[i].time_s, want[i].time_s, "change %d time", i);
        cr_assert_eq(h.changes[i].factor, want[i].factor, "change %d factor", i);
    }
    cr_assert_eq(loco_hetero_slowdown_at(&h, 0, 10), 5.0, "of two changes at one time the later one wins");
    loco_hetero_free(&h);
}

Test(hetero, slowdown_at_applies_changes_from_their_time_on_and_only_to_their_worker) {
    loco_hetero h;
    init_ok(&h, 4, LOCO_LEVEL_MODERATE, "", 0, "1@5:4, 1@2:2.5, 0@3:1.5");
    /* worker 1: 1.3 until 2, then 2.5 until 5, then 4 */
    cr_assert_eq(loco_hetero_slowdown_at(&h, 1, 0), 1.3, "before any change");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 1, 1.999), 1.3, "just before the first change");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 1, 2), 2.5, "exactly at the first change");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 1, 4.999), 2.5, "between the changes");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 1, 5), 4.0, "exactly at the second change");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 1, 1e9), 4.0, "long after");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 0, 2.9), 1.0, "worker 0 before its change");
    cr_assert_eq(loco_hetero_slowdown_at(&h, 0, 3), 1.5, "worker 0 at its change");
    double t[] = {0, 2, 3, 5, 100};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(loco_hetero_slowdown_at(&h, 2, t[i]), 2.0, "worker 2 unaffected at %g", t[i]);
        cr_assert_eq(loco_hetero_slowdown_at(&h, 3, t[i]), 3.0, "worker 3 unaffected at %g", t[i]);
    }
    loco_hetero_free(&h);
}

/* ---- round durations ---- */

/* a round's length with steps of step_s at slowdown 1, checked to be its parts' sum */
static double round_s(loco_hetero *h, int w, double start, long n, double step_s, loco_rng *r) {
    h->step_s = step_s;
    loco_round_cost c = loco_hetero_round_cost(h, w, start, n, r);
    cr_assert_eq(c.compute_s, (double)n * step_s, "compute part");
    cr_assert_float_eq(c.compute_s + c.slowdown_s, c.total_s, 1e-12, "parts and total");
    return c.total_s;
}


Test(hetero, round_without_jitter_is_steps_times_base_times_factor) {
    loco_hetero h;
    init_ok(&h, 4, LOCO_LEVEL_VERY, "", 0, "");
    const double factor[4] = {1, 1.29, 2.60, 5.74};
    for (int w = 0; w < 4; w++) {
        cr_assert_eq(round_s(&h, w, 0, 0, 0.1, NULL), 0.0, "no steps take no time");
        double got = round_s(&h, w, 12.5, 50, 0.02, NULL);
        cr_assert_float_eq(got, 50 * 0.02 * factor[w], 1e-12, "worker %d: %.17g", w, got);
    }
    loco_hetero_free(&h);
}

Test(hetero, a_change_inside_a_round_applies_from_the_next_step_that_starts_after_it) {
    loco_hetero h;
    init_ok(&h, 2, LOCO_LEVEL_NO, "2,1", 0, "0@0.5:3, 1@100:9");
    /* worker 0, base 0.1: steps start at 0, 0.2, 0.4 at 0.2 s each (the one from 0.4 runs
     * across the change at 0.5 at the old speed), then 0.6, 0.9 at 0.3 s each */
    cr_assert_float_eq(round_s(&h, 0, 0, 5, 0.1, NULL), 3 * 0.2 + 2 * 0.3, 1e-12, "split round");
    /* started after the change: all new speed */
    cr_assert_float_eq(round_s(&h, 0, 0.7, 4, 0.1, NULL), 4 * 0.3, 1e-12, "after the change");
    /* worker 1's change is far away */
    cr_assert_float_eq(round_s(&h, 1, 0, 5, 0.1, NULL), 0.5, 1e-12, "other worker unaffected");
    loco_hetero_free(&h);

    /* exact binary times: steps of 0.5 s start at 0, 0.5, 1.0; the one starting exactly at
     * the change (1.0) already runs at the new factor 4, i.e. 1.0 s per step */
    init_ok(&h, 1, LOCO_LEVEL_NO, "2", 0, "0@1:4");
    cr_assert_eq(round_s(&h, 0, 0, 4, 0.25, NULL), 0.5 + 0.5 + 1.0 + 1.0, "change at a step start");
    cr_assert_eq(round_s(&h, 0, 0.5, 2, 0.25, NULL), 0.5 + 1.0, "round starting before it");
    loco_hetero_free(&h);
}

Test(hetero, jitter_zero_draws_nothing_and_multiplies_by_exactly_one) {
    loco_hetero h;
    init_ok(&h, 2, LOCO_LEVEL_MODERATE, "", 0, "");
    loco_rng r;
    loco_rng_seed(&r, 42, 7);
    uint64_t before = r.s;
    cr_assert_eq(loco_hetero_jitter(&h, &r), 1.0);
    double got = round_s(&h, 1, 0, 100, 0.01, &r);
    cr_assert_eq(r.s, before, "the generator was not advanced");
    cr_assert_float_eq(got, 100 * 0.01 * 3.0, 1e-12, "2 workers, moderate: worker 1 is 3x slower");
    loco_hetero_free(&h);
}

Test(hetero, round_with_jitter_draws_one_normal_per_step_and_is_reproducible) {
    const double sigma = 0.2, base = 0.05;
    loco_hetero h;
    init_ok(&h, 2, LOCO_LEVEL_NO, "1,2", sigma, "1@0.6:4");
    loco_rng r, ref, other;
    loco_rng_seed(&r, 9, 1);
    loco_rng_seed(&ref, 9, 1);
    loco_rng_seed(&other, 10, 1);
    double got = round_s(&h, 1, 0, 20, base, &r);

    /* the same round recomputed from the contract: factor 2 before t = 0.6, 4 from then on */
    double t = 0;
    for (int j = 0; j < 20; j++) {
        double f = t < 0.6 ? 2.0 : 4.0;
        t += base * f * exp(sigma * loco_rng_normal(&ref));
    }
    cr_assert_float_eq(got, t, 1e-12, "jittered round %.17g vs reference %.17g", got, t);
    cr_assert_eq(r.s, ref.s, "exactly one normal draw per step");

    loco_rng_seed(&r, 9, 1);
    cr_assert_eq(round_s(&h, 1, 0, 20, base, &r), got, "same seed, same round");
    double diff = round_s(&h, 1, 0, 20, base, &other);
    cr_assert_neq(diff, got, "another seed gives another round");
    loco_hetero_free(&h);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Test(hetero, jitter_is_log_normal_with_median_one_and_log_sd_sigma) {
    enum { N = 20001 };
    const double sigma = 0.3;
    loco_hetero h;
    init_ok(&h, 1, LOCO_LEVEL_NO, "", sigma, "");
    loco_rng r;
    loco_rng_seed(&r, 1234, 0);
    double *m = malloc(N * sizeof *m);
    cr_assert_not_null(m);
    double sum = 0, sumsq = 0;
    for (int i = 0; i < N; i++) {
        m[i] = round_s(&h, 0, 0, 1, 1.0, &r);   /* one step of 1 s: the multiplier */
        cr_assert_gt(m[i], 0.0, "a step never takes zero or negative time");
        double l = log(m[i]);
        sum += l;
        sumsq += l * l;
    }
    qsort(m, N, sizeof *m, cmp_double);
    double mean = sum / N, sd = sqrt(sumsq / N - mean * mean);
    /* standard errors at N = 20001: median ~0.0027 in log, sd ~0.0015 */
    cr_assert_float_eq(m[N / 2], 1.0, 0.015, "median multiplier %g", m[N / 2]);
    cr_assert_float_eq(mean, 0.0, 0.01, "mean of the log %g", mean);
    cr_assert_float_eq(sd, sigma, 0.01, "sd of the log %g, want %g", sd, sigma);
    free(m);
    loco_hetero_free(&h);
}

/* ---- DyLU ---- */

Test(hetero, dylu_gives_the_fastest_H_and_slower_workers_proportionally_fewer_never_zero) {
    cr_assert_eq(loco_dylu_steps(1.0, 1.0, 50), 50, "the fastest does H");
    cr_assert_eq(loco_dylu_steps(3.7, 3.7, 50), 50, "the fastest does H at any speed");
    cr_assert_eq(loco_dylu_steps(1.0 / 5.74, 1.0, 50), 8, "5.74x slower: floor(50 / 5.74) = 8");
    cr_assert_eq(loco_dylu_steps(2.0, 4.0, 50), 25, "half speed");
    cr_assert_eq(loco_dylu_steps(1.0 / 3.0, 1.0, 50), 16, "floor(50 / 3)");
    cr_assert_eq(loco_dylu_steps(1.0 / 1.3, 1.0, 65), 50, "65 / 1.3 is 50 on paper");
    cr_assert_eq(loco_dylu_steps(0.019, 1.0, 50), 1, "floor(0.95) = 0 becomes 1");
    cr_assert_eq(loco_dylu_steps(1e-9, 1.0, 50), 1, "very slow: 1");
    cr_assert_eq(loco_dylu_steps(0.0, 1.0, 50), 1, "not yet measured: 1");
    cr_assert_eq(loco_dylu_steps(1.5, 1.0, 50), 50, "faster than vmax is clamped to H");
    cr_assert_eq(loco_dylu_steps(1.0, 0.0, 50), 50, "no vmax yet: H");
    cr_assert_eq(loco_dylu_steps(1.0, -1.0, 50), 50, "negative vmax: H");
    cr_assert_eq(loco_dylu_steps(0.1, 1.0, 1), 1, "H = 1 stays 1");
}

Test(hetero, dylu_matches_exact_integer_floors_for_profile_speeds) {
    /* speeds 1/s with s in hundredths: floor(H / s) = (100 H) / (100 s) in integers */
    const long hundredths[] = {100, 110, 129, 130, 150, 200, 260, 300, 574, 10000};
    for (size_t i = 0; i < sizeof hundredths / sizeof hundredths[0]; i++) {
        double s = (double)hundredths[i] / 100.0;
        for (long H = 1; H <= 200; H++) {
            long want = 100 * H / hundredths[i];
            if (want < 1) want = 1;
            long got = loco_dylu_steps(1.0 / s, 1.0, H);
            cr_assert_eq(got, want, "slowdown %g, H %ld: %ld steps, want %ld", s, H, got, want);
        }
    }
}

/* The real clock's part of the cost model: what a step owes is (factor x jitter - 1) x its
 * measured time, nothing for a worker at the fastest speed, and it draws the jitter as
 * the virtual clock does (one normal per step). */
Test(hetero, a_real_step_owes_its_slowdown_times_its_measured_time) {
    loco_hetero h;
    init_ok(&h, 2, LOCO_LEVEL_NO, "1,2.5", 0, "1@10:4");
    cr_assert_eq(loco_hetero_step_owed(&h, 0, 0, 0.3, NULL), 0.0, "the fastest owes nothing");
    cr_assert_float_eq(loco_hetero_step_owed(&h, 1, 0, 0.2, NULL), 1.5 * 0.2, 1e-15, "before");
    cr_assert_float_eq(loco_hetero_step_owed(&h, 1, 10, 0.2, NULL), 3.0 * 0.2, 1e-15, "after");
    loco_hetero_free(&h);
    init_ok(&h, 1, LOCO_LEVEL_NO, "2", 0.3, "");
    loco_rng r, ref;
    loco_rng_seed(&r, 5, 2);
    loco_rng_seed(&ref, 5, 2);
    for (int i = 0; i < 100; i++) {
        double f = 2 * exp(0.3 * loco_rng_normal(&ref));
        double want = f > 1 ? (f - 1) * 0.01 : 0;
        double got = loco_hetero_step_owed(&h, 0, 0, 0.01, &r);
        cr_assert_float_eq(got, want, 1e-15, "step %d: %.17g, want %.17g", i, got, want);
    }
    cr_assert_eq(r.s, ref.s, "one draw per step");
    loco_hetero_free(&h);
}
