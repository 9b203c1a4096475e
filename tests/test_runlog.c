/* runlog: a run directory read back: the summary's figures, the evaluations in file order
 * (the marked ones for the shared x-axis), arrivals as rounds (a rate not recorded is
 * NaN), a run without a summary, and a broken line named by file and line. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/runlog.h"

static void write_file(const char *dir, const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void remove_dir(const char *dir) {
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char events[] =
    "{\"event\":\"eval\",\"updates\":0,\"local_steps\":0,\"time_s\":0,\"val_loss\":5.5}\n"
    "{\"event\":\"arrival\",\"worker\":1,\"ticket\":1,\"staleness\":0,\"local_steps\":10,"
    "\"updates\":1,\"time_s\":12.5,\"status\":\"applied\",\"start_s\":0,\"slowdown_s\":2.5,"
    "\"lr\":0.002}\n"
    "{\"event\":\"arrival\",\"worker\":0,\"ticket\":0,\"staleness\":3,\"local_steps\":10,"
    "\"updates\":1,\"time_s\":14,\"status\":\"stale\",\"start_s\":4,\"slowdown_s\":0}\n"
    "{\"event\":\"eval\",\"updates\":1,\"local_steps\":20,\"at_local_steps\":20,\"time_s\":14,"
    "\"val_loss\":4.25}\n";

Test(runlog, a_run_directory_reads_back_figures_curve_and_rounds) {
    char dir[] = "/tmp/loco-runlog-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    write_file(dir, "metrics.jsonl", events);
    write_file(dir, "summary.json",
               "{\"status\":\"finished\",\"final_val_loss\":4.25,\"final_val_ppl\":70.1,"
               "\"final_val_se\":0.01,\"final_val_windows\":400,\"method\":\"async\","
               "\"clock\":\"virtual\",\"workers\":2,\"updates\":1,\"rejected_stale\":1,"
               "\"local_steps\":20,\"time_s\":14,\"blas_core\":\"SkylakeX\",\"commit\":\"abc\","
               "\"cpu\":\"a CPU\"}\n");
    loco_runlog r;
    loco_err e = {{0}};
    cr_assert_eq(loco_runlog_read(dir, &r, &e), 0, "%s", e.msg);
    cr_assert_str_eq(r.status, "finished");
    cr_assert_str_eq(r.method, "async");
    cr_assert_str_eq(r.blas_core, "SkylakeX");
    cr_assert_str_eq(r.cpu, "a CPU");
    cr_assert_eq(r.workers, 2);
    cr_assert_eq(r.final_val_se, 0.01);
    cr_assert_eq(r.final_val_windows, 400);
    cr_assert_eq(r.rejected_stale, 1);
    cr_assert_eq(r.nevals, 2);
    cr_assert_eq(r.evals[1].val_loss, 4.25);
    cr_assert_eq(r.nrounds, 2);
    cr_assert_eq(r.rounds[0].worker, 1);
    cr_assert_eq(r.rounds[0].end_s, 12.5);
    cr_assert_eq(r.rounds[0].slowdown_s, 2.5);
    cr_assert_eq(r.rounds[0].lr, 0.002);
    cr_assert(r.rounds[0].applied && !r.rounds[1].applied, "the stale one is not applied");
    cr_assert(isnan(r.rounds[1].lr), "a rate not recorded is NaN");
    cr_assert_eq(r.rounds[1].staleness, 3);
    loco_point marked[2];
    cr_assert_eq(loco_runlog_marked(&r, marked), 2, "theta(0) and the mark");
    cr_assert_eq(marked[1].at_local_steps, 20);
    loco_runlog_free(&r);
    remove_dir(dir);
}

Test(runlog, a_run_without_a_summary_reads_and_a_broken_line_is_named) {
    char dir[] = "/tmp/loco-runlog-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    write_file(dir, "metrics.jsonl", events);
    loco_runlog r;
    loco_err e = {{0}};
    cr_assert_eq(loco_runlog_read(dir, &r, &e), 0, "%s", e.msg);
    cr_assert_str_eq(r.status, "", "no summary: no status");
    cr_assert_eq(r.nevals, 2);
    loco_runlog_free(&r);
    char status[16];
    cr_assert_eq(loco_runlog_status(dir, status, sizeof status, &e), 0, "%s", e.msg);
    cr_assert_str_eq(status, "");
    write_file(dir, "metrics.jsonl", "{\"event\":\"eval\",\"val_loss\":5}\n{\"event\": broken\n");
    cr_assert_eq(loco_runlog_read(dir, &r, &e), -1, "a broken line");
    cr_assert_not_null(strstr(e.msg, "metrics.jsonl"), "names the file: %s", e.msg);
    cr_assert_not_null(strstr(e.msg, "2"), "names the line: %s", e.msg);
    remove_dir(dir);
}
