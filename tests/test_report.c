/* The numbers of the results tables: time to a target loss on synthetic curves (reached
 * between two evaluations, at one, at the start, never), mean and spread. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "loco/report.h"

static loco_point pt(double t, double loss) {
    return (loco_point){.time_s = t, .val_loss = loss};
}

Test(report, the_target_reached_between_two_evaluations_is_interpolated) {
    loco_point p[] = {pt(0, 3.0), pt(10, 2.5), pt(20, 2.0), pt(30, 1.8)};
    /* 2.2 lies 60% of the way from 2.5 (t = 10) to 2.0 (t = 20) */
    cr_assert_float_eq(loco_time_to_target(p, 4, 2.2), 16.0, 1e-12);
    cr_assert_float_eq(loco_time_to_target(p, 4, 2.0), 20.0, 1e-12, "reached at an evaluation");
    cr_assert_float_eq(loco_time_to_target(p, 4, 1.8), 30.0, 1e-12, "at the last one");
}

Test(report, a_target_never_reached_gives_minus_one) {
    loco_point p[] = {pt(0, 3.0), pt(10, 2.5), pt(20, 2.1)};
    cr_assert_eq(loco_time_to_target(p, 3, 2.0), -1.0);
    cr_assert_eq(loco_time_to_target(p, 0, 2.0), -1.0, "no evaluations");
}

Test(report, a_curve_that_goes_back_up_counts_its_first_crossing) {
    loco_point p[] = {pt(0, 3.0), pt(10, 1.9), pt(20, 2.4), pt(30, 1.5)};
    cr_assert_float_eq(loco_time_to_target(p, 4, 2.0), 10.0 * 1.0 / 1.1, 1e-12);
    cr_assert_eq(loco_time_to_target(p, 4, 3.5), 0.0, "the start is already below");
}

Test(report, mean_and_spread) {
    double x[] = {2, 4, 4, 4, 5, 5, 7, 9}, m, s;
    loco_mean_sd(x, 8, &m, &s);
    cr_assert_float_eq(m, 5.0, 1e-12);
    cr_assert_float_eq(s, sqrt(32.0 / 7.0), 1e-12, "sample standard deviation");
    loco_mean_sd(x, 1, &m, &s);
    cr_assert_eq(s, 0.0, "one value has no spread");
    char buf[64];
    loco_format_mean(x, 2, buf, sizeof buf);
    cr_assert_str_eq(buf, "3.00 ± 1.41");
    loco_format_mean(x + 4, 1, buf, sizeof buf);
    cr_assert_str_eq(buf, "5.00");
}
