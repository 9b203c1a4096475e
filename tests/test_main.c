/* The loco binary as a user runs it: every command, the argument errors with their exit
 * codes and messages, and Ctrl-C during single and asynchronous training. Runs the
 * binary this build makes (LOCO_BIN, set by the Makefile) from the repository root. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loco/modelfile.h"
#include "loco/cpu.h"
#include "loco/model.h"
#include "bf16.h"
#include "cli.h"

/* ------------------------------------------------------------ help texts */

Test(main, no_arguments_prints_the_usage_on_stderr_and_exits_2, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, NULL), 2, "exit status");
    expect_err(&c, "usage: loco <command>");
    cr_assert_str_eq(c.out, "", "nothing on stdout");
    cli_close(&c);
}

Test(main, help_and_dash_dash_help_print_the_usage, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "help", NULL), 0, "help");
    expect_out(&c, "usage: loco <command>");
    cr_assert_eq(run(&c, "--help", NULL), 0, "--help");
    expect_out(&c, "usage: loco <command>");
    cr_assert_eq(run(&c, "help", "config", NULL), 0, "help config");
    expect_out(&c, "outer.method");
    expect_out(&c, "model.seq_len");
    cli_close(&c);
}

Test(main, every_command_has_a_help_text, .timeout = 60) {
    const char *cmds[] = {"train", "eval", "sample", "export", "check", "bench", "topo", "plot"};
    cli c;
    cli_open(&c);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        cr_assert_eq(run(&c, cmds[i], "--help", NULL), 0, "%s --help: exit status", cmds[i]);
        char want[64];
        snprintf(want, sizeof want, "usage: loco %s", cmds[i]);
        expect_out(&c, want);
    }
    cli_close(&c);
}

/* -------------------------------------------------------------- commands */

Test(main, train_writes_metrics_summary_config_and_model, .timeout = 120) {
    cli c;
    cli_open(&c);
    train_tiny(&c);
    expect_err(&c, "{metrics.jsonl,summary.json,config.ini,model.bin}");
    expect_file_has(in_dir(&c, "run/summary.json"), "\"status\":\"finished\"");
    expect_file_has(in_dir(&c, "run/summary.json"), "\"steps\":20,");
    expect_file_has(in_dir(&c, "run/metrics.jsonl"), "{\"event\":\"eval\",\"step\":10,");
    expect_file_has(in_dir(&c, "run/metrics.jsonl"), "{\"event\":\"train\",\"step\":20,");
    expect_file_has(in_dir(&c, "run/config.ini"), "steps = 20");
    cr_assert_eq(run(&c, "check", in_dir(&c, "run/model.bin"), NULL), 0, "check: %s", c.err);
    expect_out(&c, "loco model, ");
    expect_out(&c, "L=2 NH=2 C=64 V=256 Vp=256 maxT=64, checksum ok");
    cli_close(&c);
}

Test(main, eval_prints_one_json_line, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *model = train_tiny(&c);
    /* 3000 bytes: floor(2999 / 64) windows of model.seq_len = 64 */
    const char *text = write_text(&c, "small.txt", 3000);
    cr_assert_eq(run(&c, "eval", "--model", model, "--data", text, NULL), 0, "eval: %s", c.err);
    cr_assert_eq(c.out[0], '{', "JSON: %s", c.out);
    const char *nl = strchr(c.out, '\n');
    cr_assert(nl && nl[1] == '\0', "one line: %s", c.out);
    double loss = json_number(c.out, "loss");
    cr_assert(loss > 0 && loss < 6, "loss %g", loss);
    cr_assert_float_eq(json_number(c.out, "ppl"), exp(loss), 1e-3 * exp(loss), "ppl");
    cr_assert_float_eq(json_number(c.out, "bpb"), loss / log(2), 1e-4, "bpb");
    cr_assert_eq(json_number(c.out, "tokens"), 46 * 64, "tokens");
    cli_close(&c);
}

Test(main, sample_prints_text_and_repeats_itself_with_a_seed, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *model = train_tiny(&c);
    cr_assert_eq(run(&c, "sample", "--model", model, "--prompt", "The ", "--tokens", "40",
                     "--seed", "3", NULL),
                 0, "sample: %s", c.err);
    cr_assert_eq(strncmp(c.out, "The ", 4), 0, "starts with the prompt: %s", c.out);
    cr_assert_eq(strlen(c.out), (size_t)4 + 40 + 1, "prompt, 40 bytes, newline: '%s'", c.out);
    char *first = strdup(c.out);
    cr_assert_eq(run(&c, "sample", "--model", model, "--prompt", "The ", "--tokens", "40",
                     "--seed", "3", NULL),
                 0, "sample: %s", c.err);
    cr_assert_str_eq(c.out, first, "the same seed prints the same text");
    free(first);
    cli_close(&c);
}

Test(main, export_writes_an_llmc_checkpoint_that_check_and_eval_read, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *model = train_tiny(&c);
    const char *text = write_text(&c, "small.txt", 3000);
    cr_assert_eq(run(&c, "eval", "--model", model, "--data", text, NULL), 0, "eval: %s", c.err);
    double loss = json_number(c.out, "loss");
    const char *llmc = in_dir(&c, "gpt2.bin");
    cr_assert_eq(run(&c, "export", "--llmc", model, llmc, NULL), 0, "export: %s", c.err);
    expect_err(&c, "llm.c checkpoint, version 3");
    cr_assert_eq(run(&c, "check", llmc, NULL), 0, "check: %s", c.err);
    expect_out(&c, "llm.c model, ");
    expect_out(&c, "maxT=64");
    /* the same parameters, sequence length and format: the same loss */
    cr_assert_eq(run(&c, "eval", "--model", llmc, "--data", text, NULL), 0, "eval: %s", c.err);
    cr_assert_eq(json_number(c.out, "loss"), loss, "loss of the export");
    cli_close(&c);
}

Test(main, topo_prints_the_machine_and_the_plan, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "topo", "--workers", "2", NULL), 0, "topo: %s", c.err);
    expect_out(&c, "machine:");
    expect_out(&c, "plan: compact, 2 workers");
    cli_close(&c);
}

/* More workers than PUs on the virtual clock: the run seats them unpinned, and topo and
 * train --dry-run print that plan, not run.pin's */
Test(main, topo_and_a_dry_run_print_the_plan_the_run_uses, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "topo", NULL), 0, "topo: %s", c.err);
    const char *m = strstr(c.out, " PUs\n");
    cr_assert_not_null(m, "no PU count in: %s", c.out);
    while (m > c.out && m[-1] >= '0' && m[-1] <= '9') m--;
    int pus = atoi(m);
    char workers[16];
    snprintf(workers, sizeof workers, "%d", pus + 1);
    const char *modes[][2] = {{"run.clock=virtual", "plan: none"}, {"run.clock=real", "plan: compact"}};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(run(&c, "topo", "--workers", workers, "--set", modes[i][0], NULL), 0, "%s", c.err);
        expect_out(&c, modes[i][1]);
        int seated = strstr(c.out, "the virtual clock seats them unpinned") != NULL;
        cr_assert_eq(seated, i == 0, "%s: %s", modes[i][0], c.out);
        cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--dry-run", "--workers", workers,
                         "--set", modes[i][0], "--set", "outer.method=async", NULL), 0, "%s", c.err);
        expect_out(&c, modes[i][1]);
        cr_assert_eq(strstr(c.out, "the virtual clock seats them unpinned") != NULL, i == 0,
                     "dry run, %s: %s", modes[i][0], c.out);
    }
    cli_close(&c);
}

/* the memory breakdown of configs/demo.ini, part by part, and the verdict */
Test(main, topo_prints_the_memory_the_config_needs, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "topo", "-c", "configs/demo.ini", NULL), 0, "topo: %s", c.err);
    expect_out(&c, "run: async-dn, 4 workers, real clock, 3257856 parameters, batches of 8 x 128");
    expect_out(&c, "memory: needs 850.1 MiB of the ");
    expect_out(&c, "4 workers x 160.6 MiB");
    expect_out(&c, "    AdamW moments (m, v)                                   24.9 MiB\n");
    expect_out(&c, "    theta_start and delta ");
    expect_out(&c, "    activations                                            86.1 MiB\n");
    expect_out(&c, "  global buffer: theta, momentum m and accumulator a       37.3 MiB\n");
    expect_out(&c, "    snapshots of theta                                     49.7 MiB\n");
    expect_out(&c, "  data: the mapped file");
    expect_out(&c, "file-backed, not counted");
    cli_close(&c);
}

/* What loco selects here when OpenBLAS picks Prescott by itself (as 0.3.21 does on Emerald
 * Rapids): the kernel set, or Prescott where the CPU has nothing better. */
static const char *choice_over_prescott(void) {
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    loco_blas_facts f = {.vendor = cpu.vendor, .vec = cpu.vec, .running = "Prescott",
                         .automatic = 1};
    loco_blas_choice ch;
    loco_blas_choose(&f, &ch);
    return ch.reexec ? ch.reexec : "Prescott";
}

/* OpenBLAS's own pick taken as Prescott (LOCO_BLAS_PRETEND, as on a CPU newer than its
 * table): loco sets OPENBLAS_CORETYPE, re-executes itself once, and the benchmark's JSON
 * says which kernels ran, what OpenBLAS picked and who chose. */
Test(main, bench_step_ends_with_a_json_line, .timeout = 120) {
    cli c;
    cli_open(&c);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("LOCO_BLAS_DETECTED");
    cr_assert_eq(setenv("LOCO_BLAS_PRETEND", "Prescott", 1), 0);
    cr_assert_eq(run(&c, "bench", "step", "-c", "configs/tiny.ini", "--set", "model.dim=32",
                     "--set", "model.seq_len=16", "--set", "train.batch=2", NULL),
                 0, "bench step: %s", c.err);
    size_t n = strlen(c.out);
    cr_assert(n > 1 && c.out[n - 1] == '\n', "a last line: %s", c.out);
    c.out[n - 1] = '\0';
    const char *last = strrchr(c.out, '\n') ? strrchr(c.out, '\n') + 1 : c.out;
    cr_assert(last[0] == '{' && last[strlen(last) - 1] == '}', "JSON: %s", last);
    cr_assert_gt(json_number(last, "tokens_per_s"), 0, "tokens_per_s");
    const char *want = choice_over_prescott();
    char key[96];
    snprintf(key, sizeof key, "\"blas_core\":\"%s\"", want);
    cr_assert(strstr(last, key), "%s in %s", key, last);
    cr_assert(strstr(last, "\"blas_core_detected\":\"Prescott\""), "%s", last);
    cr_assert(strstr(last, strcmp(want, "Prescott") ? "\"blas_core_by\":\"loco\""
                                                    : "\"blas_core_by\":\"openblas\""), "%s", last);
    expect_err(&c, "OpenBLAS picked Prescott");
    unsetenv("LOCO_BLAS_PRETEND");
    cli_close(&c);
}

/* A user's OPENBLAS_CORETYPE is kept (never replaced, no re-execution), named by topo, by
 * train at its start and in summary.json; below the CPU's units it is warned of. */
Test(main, a_users_openblas_coretype_is_kept_and_named, .timeout = 120) {
    cli c;
    cli_open(&c);
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    const char *mine = cpu.vec >= LOCO_VEC_AVX2 ? "Haswell" : "Prescott";
    cr_assert_eq(setenv("OPENBLAS_CORETYPE", mine, 1), 0);
    unsetenv("LOCO_BLAS_DETECTED");
    cr_assert_eq(run(&c, "topo", "-c", "configs/tiny.ini", NULL), 0, "%s", c.err);
    char line[128];
    snprintf(line, sizeof line, "kernels %s (OPENBLAS_CORETYPE as set)", mine);
    expect_out(&c, line);
    expect_out(&c, "CPU: ");
    int below = cpu.vec > (loco_vec)loco_blas_kernel_vec(mine);
    cr_assert_eq(strstr(c.out, "warning: OPENBLAS_CORETYPE=") != NULL, below,
                 "warned iff below the CPU's units:\n%s", c.out);
    train_tiny(&c);
    expect_err(&c, line);
    char key[96];
    snprintf(key, sizeof key, "\"blas_core\":\"%s\",\"blas_core_detected\":null", mine);
    expect_file_has(in_dir(&c, "run/summary.json"), key);
    unsetenv("OPENBLAS_CORETYPE");
    cli_close(&c);
}

/* summary.json says what made the run (the build's commit, the CPU) and measures its final
 * figure on eval.final_batches, with the standard error; a final set too large for the
 * validation part (eval.set's half) is refused before anything is written. */
Test(main, the_summary_names_the_build_and_cpu_and_the_final_figures_error, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=20", "--set",
                     "eval.batches=2", "--set", "eval.final_batches=64", "--set",
                     "eval.set=report", "--out", out, NULL), 0, "%s", c.err);
    char *sum = slurp(in_dir(&c, "run/summary.json"));
    cr_assert_eq(json_number(sum, "final_val_windows"), 64 * 8, "%s", sum);
    double se = json_number(sum, "final_val_se"), loss = json_number(sum, "final_val_loss");
    cr_assert(se > 0 && se < 0.05 * loss, "se %g of a loss of %g", se, loss);
    loco_cpu cpu;
    char name[160], key[256];
    loco_cpu_detect(&cpu);
    snprintf(key, sizeof key, "\"commit\":\"%s\",\"cpu\":\"%s\"", loco_commit,
             loco_cpu_name(&cpu, name, sizeof name));
    cr_assert_not_null(strstr(sum, key), "%s in %s", key, sum);
    free(sum);
    const char *big = in_dir(&c, "big");
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--set", "eval.final_batches=100000",
                     "--set", "eval.set=tune", "--out", big, NULL), 1, "%s", c.err);
    expect_err(&c, "eval.final_batches * train.batch");
    expect_err(&c, "in eval.set's half");
    cr_assert_neq(access(in_dir(&c, "big/summary.json"), F_OK), 0, "nothing is written");
    cli_close(&c);
}

/* ------------------------------------------------------ argument errors */

Test(main, unknown_commands_and_options_exit_2_and_name_them, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "frobnicate", NULL), 2, "unknown command");
    expect_err(&c, "unknown command 'frobnicate'");
    expect_err(&c, "usage: loco <command>");
    cr_assert_eq(run(&c, "train", "--frob", NULL), 2, "unknown option");
    expect_err(&c, "unknown option '--frob'");
    expect_err(&c, "see 'loco train --help'");
    cr_assert_eq(run(&c, "sample", "--model", "m.bin", "--frob", NULL), 2, "unknown option");
    expect_err(&c, "unknown option '--frob'");
    expect_err(&c, "see 'loco sample --help'");
    cr_assert_eq(run(&c, "bench", "nosuch", NULL), 2, "unknown benchmark");
    expect_err(&c, "unknown benchmark");
    cli_close(&c);
}

Test(main, a_flag_without_its_value_exits_2, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "train", "--out", NULL), 2, "--out");
    expect_err(&c, "--out needs a value");
    cr_assert_eq(run(&c, "train", "-c", NULL), 2, "-c");
    expect_err(&c, "-c needs a value");
    cr_assert_eq(run(&c, "train", "--set", NULL), 2, "--set");
    expect_err(&c, "--set needs a value");
    cr_assert_eq(run(&c, "sample", "--model", "m.bin", "--tokens", NULL), 2, "--tokens");
    expect_err(&c, "--tokens needs a value");
    cr_assert_eq(run(&c, "eval", "--model", NULL), 2, "--model");
    expect_err(&c, "--model needs a value");
    cr_assert_eq(run(&c, "train", "--workers", NULL), 2, "--workers");
    expect_err(&c, "--workers needs a value");
    cli_close(&c);
}

Test(main, bad_values_and_config_files_exit_2_and_say_where, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "train", "--set", "train.nosuch=1", NULL), 2, "unknown key");
    expect_err(&c, "unknown key 'nosuch' in section [train]");
    cr_assert_eq(run(&c, "train", "--set", "train.lr=fast", NULL), 2, "bad value");
    expect_err(&c, "train.lr");
    expect_err(&c, "'fast'");
    cr_assert_eq(run(&c, "sample", "--model", "m.bin", "--tokens", "many", NULL), 2, "--tokens");
    expect_err(&c, "--tokens: expected an integer");
    const char bad[] = "[model]\nlayers = 2\nheads = lots\n";
    write_file(in_dir(&c, "bad.ini"), bad, strlen(bad));
    cr_assert_eq(run(&c, "train", "-c", in_dir(&c, "bad.ini"), NULL), 2, "bad config file");
    expect_err(&c, "bad.ini:3: model.heads");
    cr_assert_eq(run(&c, "train", "-c", in_dir(&c, "none.ini"), NULL), 2, "missing config");
    expect_err(&c, in_dir(&c, "none.ini"));
    expect_err(&c, "cannot open");
    cli_close(&c);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Every check of the input comes before anything is written: a run that fails one leaves
 * no run directory, and says which key, with its value and where it was set. */
Test(main, a_run_that_fails_validation_writes_nothing, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--workers", "4", "--slowdown",
                     "1,2", "--out", out, NULL), 2, "short slowdown list");
    expect_err(&c, "hetero.slowdown = 1,2 (--set)");
    expect_err(&c, "2 factors for 4 workers");
    cr_assert(!exists(out), "%s was created", out);
    const char ini[] = "[run]\nworkers = 3\n[outer]\nmethod = sync\ngrace_s = 1\n";
    write_file(in_dir(&c, "sync.ini"), ini, strlen(ini));
    cr_assert_eq(run(&c, "train", "-c", in_dir(&c, "sync.ini"), "--out", out, NULL), 2,
                 "sync with a grace period");
    expect_err(&c, "outer.grace_s = 1 (");
    expect_err(&c, "sync.ini:5)");
    expect_err(&c, "outer.method = sync");
    cr_assert(!exists(out), "%s was created", out);
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--set", "eval.batches=100000",
                     "--out", out, NULL), 1, "too little validation data");
    expect_err(&c, "eval.batches");
    cr_assert(!exists(out), "%s was created", out);
    cli_close(&c);
}

/* --dry-run checks what a run checks, prints the run, the plan and the memory, and
 * writes nothing */
Test(main, a_dry_run_prints_the_breakdown_and_writes_nothing, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--dry-run", "--out", out, NULL), 0,
                 "dry run: %s", c.err);
    expect_out(&c, "run: single, 1 worker, real clock, ");
    expect_out(&c, "machine:");
    expect_out(&c, "CPU: ");
    expect_out(&c, "BLAS: OpenBLAS ");
    expect_out(&c, "; oneDNN ISA ");
    expect_out(&c, "memory: needs ");
    expect_out(&c, "): fits\n");
    expect_out(&c, "  worker  ");
    expect_out(&c, "  evaluator  ");
    expect_out(&c, "    activations  ");
    expect_err(&c, "dry run: every check passed; nothing was written");
    cr_assert(!exists(out), "%s was created", out);
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--dry-run", "--workers", "3",
                     "--method", "async-dn", "--out", out, NULL), 0, "dry run: %s", c.err);
    expect_out(&c, "plan: compact, 3 workers");
    expect_out(&c, "3 workers x ");
    expect_out(&c, "global buffer: theta, momentum m and accumulator a");
    cr_assert(!exists(out), "%s was created", out);
    /* it checks what a run checks: the data */
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--dry-run", "--set",
                     "eval.batches=100000", "--out", out, NULL), 1, "too little validation data");
    expect_err(&c, "eval.batches");
    cr_assert(!exists(out), "%s was created", out);
    cli_close(&c);
}

/* The brief's example (dim 4096, 64 layers, batches of 64 x 1024: terabytes), which the
 * kernel used to kill: refused at once with both figures, the biggest parts and what to
 * lower, before any directory exists; a dry run shows the breakdown and fails the same. */
Test(main, a_run_that_does_not_fit_in_memory_is_refused_at_once, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    double t0 = now_s();
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--set", "model.dim=4096", "--set",
                     "model.layers=64", "--set", "model.heads=32", "--set", "train.batch=64",
                     "--set", "model.seq_len=1024", "--out", out, NULL),
                 1, "exit status:\n%s", c.err);
    cr_assert_lt(now_s() - t0, 10.0, "refused after %.1f s", now_s() - t0);
    expect_err(&c, "loco: not enough memory: the run needs 3.3 TiB: worker 1.7 TiB (activations ");
    expect_err(&c, "evaluator 1.5 TiB");
    expect_err(&c, " are available (");
    expect_err(&c, "to fit, lower train.batch or model.seq_len (activations: ");
    expect_err(&c, "model.dim or model.layers");
    cr_assert(!exists(out), "%s was created", out);
    cr_assert_eq(run(&c, "train", "-c", "configs/tiny.ini", "--set", "model.dim=4096", "--set",
                     "model.layers=64", "--set", "model.heads=32", "--set", "train.batch=64",
                     "--set", "model.seq_len=1024", "--dry-run", "--out", out, NULL), 1, "dry run");
    expect_out(&c, "memory: needs 3.3 TiB of the ");
    expect_out(&c, "does NOT fit");
    expect_err(&c, "not enough memory");
    cr_assert(!exists(out), "%s was created", out);
    cli_close(&c);
}

#ifndef LOCO_SANITIZE
/* Runs loco with its address space limited to `limit` bytes (as ulimit -v does), so an
 * allocation fails that the memory check let through; returns its exit status. */
static int run_limited(cli *c, size_t limit, const char *const *args) {
    const char *argv[64] = {LOCO_BIN};
    for (int n = 1; (argv[n] = args[n - 1]); n++) cr_assert_lt(n, 62, "too many arguments");
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork");
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        int in = open("/dev/null", O_RDONLY);
        int o = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int er = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || er < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(er, 2) < 0 ||
            setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(99);
        execv(LOCO_BIN, (char *const *)argv);
        _exit(98);
    }
    cli_wait(c, pid);
    return c->status;
}

/* An allocation that fails anyway (the estimate is wrong, another process took the
 * memory: here a 600 MiB address-space limit) ends the run with a message that says how
 * much it wanted and what for, never a crash. */
Test(main, an_allocation_that_fails_anyway_is_reported, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *args[] = {"train", "-c", "configs/tiny.ini", "--set", "train.batch=64", "--set",
                          "model.seq_len=256", "--set", "train.steps=2", "--out",
                          in_dir(&c, "run"), NULL};
    cr_assert_eq(run_limited(&c, 600UL << 20, args), 1, "exit status:\n%s", c.err);
    expect_err(&c, ": cannot allocate 264.7 MiB for activations of 64 x 256 tokens (the ");
    cli_close(&c);
}
#endif

Test(main, eval_needs_a_model_and_data, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "eval", "--data", "data/corpus.txt", NULL), 2, "no --model");
    expect_err(&c, "--model FILE is required");
    cr_assert_eq(run(&c, "eval", "--model", "m.bin", NULL), 2, "no --data");
    expect_err(&c, "--data PATH is required");
    cr_assert_eq(run(&c, "sample", NULL), 2, "sample without --model");
    expect_err(&c, "--model FILE is required");
    cli_close(&c);
}

Test(main, missing_and_damaged_model_files_exit_1_and_name_the_file, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *none = in_dir(&c, "none.bin");
    cr_assert_eq(run(&c, "check", none, NULL), 1, "check of a missing file");
    expect_err(&c, none);
    cr_assert_eq(run(&c, "sample", "--model", none, NULL), 1, "sample of a missing file");
    expect_err(&c, none);
    cr_assert_eq(run(&c, "eval", "--model", none, "--data", "data/corpus.txt", NULL), 1, "eval");
    expect_err(&c, none);
    /* one flipped bit in the parameters */
    const char *model = write_model(&c, "model.bin", NULL);
    char *bytes = slurp(model);
    struct stat st;
    cr_assert_eq(stat(model, &st), 0, "stat");
    bytes[st.st_size / 2] ^= 0x10;
    write_file(model, bytes, (size_t)st.st_size);
    cr_assert_eq(run(&c, "check", model, NULL), 1, "check of a damaged file");
    expect_err(&c, model);
    expect_err(&c, "checksum mismatch");
    write_file(model, bytes, (size_t)st.st_size - 100);
    cr_assert_eq(run(&c, "check", model, NULL), 1, "check of a truncated file");
    expect_err(&c, "truncated");
    free(bytes);
    cli_close(&c);
}

Test(main, export_takes_exactly_llmc_model_out, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *model = write_model(&c, "model.bin", NULL);
    cr_assert_eq(run(&c, "export", NULL), 2, "no arguments");
    expect_err(&c, "expected: export --llmc MODEL OUT");
    cr_assert_eq(run(&c, "export", "--llmc", model, NULL), 2, "no OUT");
    expect_err(&c, "expected: export --llmc MODEL OUT");
    cr_assert_eq(run(&c, "export", "--onnx", model, in_dir(&c, "out.bin"), NULL), 2, "--onnx");
    expect_err(&c, "see 'loco export --help'");
    cr_assert_eq(run(&c, "check", NULL), 2, "check without a file");
    expect_err(&c, "expected: check FILE");
    cli_close(&c);
}

/* A stored config that does not parse would leave eval and sample on the default
 * config, with another model.seq_len than the model's. */
Test(main, a_model_whose_stored_config_does_not_parse_is_an_error, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *model = write_model(&c, "model.bin", "[model]\nseq_len = 16\nlayers = lots\n");
    const char *text = write_text(&c, "small.txt", 1000);
    cr_assert_eq(run(&c, "eval", "--model", model, "--data", text, NULL), 1, "eval");
    expect_err(&c, model);
    expect_err(&c, "stored config does not parse");
    expect_err(&c, "config:3: model.layers: expected an integer, got 'lots'");
    cr_assert_eq(run(&c, "sample", "--model", model, NULL), 1, "sample");
    expect_err(&c, model);
    expect_err(&c, "model.layers");
    /* the same model with a good config works */
    model = write_model(&c, "good.bin", "[model]\nseq_len = 16\n");
    cr_assert_eq(run(&c, "eval", "--model", model, "--data", text, NULL), 0, "%s", c.err);
    cr_assert_eq(json_number(c.out, "tokens"), 62 * 16, "windows of the stored seq_len");
    cli_close(&c);
}

/* ----------------------------------------------------------------- plot */

/* A single-worker run of configs/tiny.ini into dir/NAME, evaluated at marks of 10 local
 * steps: a few tenths of a second. */
static const char *train_marked(cli *c, const char *name) {
    const char *out = in_dir(c, name);
    int rc = run(c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=20", "--set",
                 "eval.every=10", "--set", "eval.every_local_steps=10", "--set", "eval.batches=2",
                 "--out", out, NULL);
    cr_assert_eq(rc, 0, "train failed (%d):\n%s", rc, c->err);
    return out;
}

/* Two asynchronous workers on the virtual clock, one twice as slow, into dir/async. */
static const char *train_async(cli *c) {
    const char *out = in_dir(c, "async");
    int rc = run(c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=20", "--set",
                 "eval.batches=2", "--set", "eval.every_local_steps=10", "--set",
                 "run.workers=2", "--set", "outer.method=async-dn", "--set", "run.clock=virtual",
                 "--set", "outer.local_steps=5", "--slowdown", "1,2", "--out", out, NULL);
    cr_assert_eq(rc, 0, "train failed (%d):\n%s", rc, c->err);
    return out;
}

static unsigned be32(const unsigned char *p) {
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

/* a PNG (signature, then IHDR's width and height) that loco said it wrote */
static void expect_png(const cli *c, const char *path, unsigned width, unsigned height) {
    char said[LOCO_PATH_LEN + 16];
    snprintf(said, sizeof said, "loco: wrote %s\n", path);
    expect_err(c, said);
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s is missing", path);
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    cr_assert_eq(got, sizeof b, "%s: %zu bytes", path, got);
    cr_assert_eq(memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0, "%s: not a PNG", path);
    cr_assert_eq(memcmp(b + 12, "IHDR", 4), 0, "%s: no IHDR first", path);
    cr_assert_eq(be32(b + 16), width, "%s: width %u", path, be32(b + 16));
    cr_assert_eq(be32(b + 20), height, "%s: height %u", path, be32(b + 20));
}

Test(main, plot_draws_curves_on_each_x_axis, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *single = train_marked(&c, "single"), *async = train_async(&c);
    cr_assert_eq(run(&c, "plot", single, NULL), 0, "plot: %s", c.err);
    expect_png(&c, in_dir(&c, "single/curve.png"), 1000, 600);
    const char *axes[] = {"steps", "time", "updates"};
    for (size_t i = 0; i < sizeof axes / sizeof axes[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s.png", axes[i]);
        const char *png = in_dir(&c, name);
        cr_assert_eq(run(&c, "plot", single, async, "--x", axes[i], "--out", png, "--title",
                         "single and async", NULL),
                     0, "plot --x %s: %s", axes[i], c.err);
        expect_png(&c, png, 1000, 600);
    }
    cli_close(&c);
}

/* --timeline and --lr: pictures of one asynchronous run's rounds; a run without
 * arrivals has none to draw */
Test(main, plot_timeline_and_lr_draw_one_asynchronous_run, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *async = train_async(&c);
    cr_assert_eq(run(&c, "plot", "--timeline", async, NULL), 0, "plot --timeline: %s", c.err);
    expect_png(&c, in_dir(&c, "async/timeline.png"), 1200, 400);
    const char *png = in_dir(&c, "t.png");
    cr_assert_eq(run(&c, "plot", async, "--timeline", "--out", png, NULL), 0, "%s", c.err);
    expect_png(&c, png, 1200, 400);
    cr_assert_eq(run(&c, "plot", "--lr", async, NULL), 0, "plot --lr: %s", c.err);
    expect_png(&c, in_dir(&c, "async/lr.png"), 1000, 500);
    expect_err(&c, "async/lr.png");
    const char *single = train_marked(&c, "single");
    cr_assert_eq(run(&c, "plot", "--lr", single, NULL), 1, "a run without arrivals");
    expect_err(&c, "no arrivals in metrics.jsonl: --lr needs an asynchronous run");
    cli_close(&c);
}

Test(main, plot_argument_errors_exit_2, .timeout = 60) {
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "plot", NULL), 2, "no run directory");
    expect_err(&c, "expected at least one RUN_DIR");
    expect_err(&c, "see 'loco plot --help'");
    cr_assert_eq(run(&c, "plot", c.dir, "--x", "wall", NULL), 2, "--x wall");
    expect_err(&c, "--x: expected steps|time|updates, got 'wall'");
    expect_err(&c, "see 'loco plot --help'");
    cr_assert_eq(run(&c, "plot", c.dir, "--x", NULL), 2, "--x without a value");
    expect_err(&c, "--x needs a value");
    cr_assert_eq(run(&c, "plot", c.dir, "--frob", NULL), 2, "unknown option");
    expect_err(&c, "unknown option '--frob'");
    cr_assert_eq(run(&c, "plot", "--timeline", c.dir, c.dir, NULL), 2, "two timelines");
    expect_err(&c, "--timeline draws one run; got 2");
    cr_assert_eq(run(&c, "plot", "--timeline", c.dir, "--x", "time", NULL), 2, "--x timeline");
    expect_err(&c, "--x is for curves");
    cr_assert_eq(run(&c, "plot", "--lr", c.dir, c.dir, NULL), 2, "two --lr runs");
    expect_err(&c, "--lr draws one run; got 2");
    cr_assert_eq(run(&c, "plot", "--lr", "--timeline", c.dir, NULL), 2, "--lr and --timeline");
    expect_err(&c, "one at a time");
    cli_close(&c);
}

Test(main, plot_of_runs_it_cannot_draw_exits_1_and_names_them, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *none = in_dir(&c, "none");
    cr_assert_eq(mkdir(none, 0700), 0, "mkdir");
    cr_assert_eq(run(&c, "plot", none, NULL), 1, "no metrics.jsonl");
    expect_err(&c, in_dir(&c, "none/metrics.jsonl"));
    const char *quiet = in_dir(&c, "quiet");
    cr_assert_eq(mkdir(quiet, 0700), 0, "mkdir");
    const char events[] = "{\"event\":\"train\",\"step\":1,\"loss\":5.5}\n";
    write_file(in_dir(&c, "quiet/metrics.jsonl"), events, strlen(events));
    cr_assert_eq(run(&c, "plot", quiet, NULL), 1, "no evaluations");
    expect_err(&c, quiet);
    expect_err(&c, "no evaluations");
    cr_assert(!exists(in_dir(&c, "quiet/curve.png")), "a picture was written");
    const char *single = train_marked(&c, "single");
    cr_assert_eq(run(&c, "plot", "--timeline", single, NULL), 1, "timeline of a single run");
    expect_err(&c, "no arrivals");
    cr_assert_eq(run(&c, "plot", single, "--out", in_dir(&c, "no/such/dir/c.png"), NULL), 1,
                 "unwritable --out");
    expect_err(&c, in_dir(&c, "no/such/dir/c.png"));
    cli_close(&c);
}

/* --------------------------------------------------------------- Ctrl-C */

/* Starts a long training run, waits until its metrics.jsonl has the event that shows
 * training under way, sends SIGINT and checks it stopped cleanly and saved. */
static void interrupt_training(const char *started, const char *const *extra) {
    cli c;
    cli_open(&c);
    const char *args[40] = {"train", "-c", "configs/tiny.ini", "--set", "train.steps=1000000",
                            "--out"};
    int n = 6;
    args[n++] = in_dir(&c, "run");
    for (; *extra; extra++) args[n++] = *extra;
    args[n] = NULL;
    pid_t pid = cli_start(&c, args);
    await_text(&c, pid, in_dir(&c, "run/metrics.jsonl"), started);
    cr_assert_eq(kill(pid, SIGINT), 0, "kill");
    cli_wait(&c, pid);
    cr_assert_eq(c.status, 128 + SIGINT, "exit status after Ctrl-C (128 + SIGINT):\n%s", c.err);
    expect_file_has(in_dir(&c, "run/summary.json"), "\"status\":\"stopped\"");
    expect_file_has(in_dir(&c, "run/config.ini"), "[model]");
    cr_assert_eq(run(&c, "check", in_dir(&c, "run/model.bin"), NULL), 0, "check: %s", c.err);
    expect_out(&c, "checksum ok");
    cli_close(&c);
}

Test(main, ctrl_c_stops_single_worker_training_and_saves, .timeout = 120) {
    const char *extra[] = {NULL};
    interrupt_training("{\"event\":\"train\"", extra);
}

Test(main, ctrl_c_stops_asynchronous_training_and_saves, .timeout = 120) {
    const char *extra[] = {"--set", "run.workers=2",        "--set", "outer.method=async-dn",
                           "--set", "run.clock=real",       "--set", "outer.local_steps=10",
                           NULL};
    interrupt_training("{\"event\":\"arrival\"", extra);
}

/* A worker away for a long outage does not hold up the end: stopped, the run ends. */
Test(main, ctrl_c_stops_a_run_with_a_worker_away, .timeout = 120) {
    const char *extra[] = {"--set", "run.workers=2", "--set", "outer.method=async-dn",
                           "--set", "run.clock=real", "--set", "outer.local_steps=10",
                           "--fail", "1@0+1000", NULL};
    interrupt_training("{\"event\":\"fault\"", extra);
}

/* Stopped by Ctrl-C, then `train --resume DIR`: the run goes on from its checkpoint to the
 * end of its budget, and metrics.jsonl holds each arrival once. In the virtual clock a
 * worker's failure and return, planned in the config, happen after the resume. */
static void stop_then_resume(const char *clock, const char *fail, int comes_back,
                             const char *every) {
    cli c;
    cli_open(&c);
    const char *dir = in_dir(&c, "run");
    const char *args[] = {"train", "-c", "configs/tiny.ini", "--set", "train.steps=300",
                          "--set", "run.workers=2", "--set", "outer.method=async-dn",
                          "--set", clock, "--set", "outer.local_steps=10",
                          "--set", "eval.every_updates=0", "--set", every,
                          "--fail", fail, "--out", dir, NULL};
    pid_t pid = cli_start(&c, args);
    const char *metrics = in_dir(&c, "run/metrics.jsonl");
    await_text(&c, pid, metrics, "\"ticket\":3,");
    kill(pid, SIGINT);
    cli_wait(&c, pid);
    cr_assert_eq(c.status, 128 + SIGINT, "%s", c.err);
    expect_file_has(in_dir(&c, "run/summary.json"), "\"status\":\"stopped\"");
    cr_assert_eq(run(&c, "check", in_dir(&c, "run/checkpoint.bin"), NULL), 0, "%s", c.err);
    expect_out(&c, "checkpoint ok");
    cr_assert_eq(run(&c, "train", "--resume", dir, NULL), 0, "resume: %s", c.err);
    expect_file_has(in_dir(&c, "run/summary.json"), "\"status\":\"finished\"");
    expect_file_has(in_dir(&c, "run/summary.json"), "\"local_steps\":600,");
    char *m = slurp(metrics);
    long last = 0;
    int n = 0;
    for (const char *p = strstr(m, "\"status\":\"applied\""); p; p = strstr(p + 1, "\"status\":\"applied\"")) {
        const char *line = p;
        while (line > m && line[-1] != '\n') line--;
        long t = (long)json_number(line, "ticket");
        cr_assert_eq(t, last + 1, "applied arrival %ld after %ld: duplicated or missing", t, last);
        last = t, n++;
    }
    cr_assert_geq(n, 50, "%d applied arrivals", n);
    if (comes_back) cr_assert(strstr(m, "\"kind\":\"back\""), "the failed worker came back");
    free(m);
    cli_close(&c);
}

Test(main, a_stopped_virtual_run_resumes_to_its_end, .timeout = 120) {
    stop_then_resume("run.clock=virtual", "1@100+50", 1, "train.checkpoint_every=10m");
}

/* the real clock resumes from the checkpoint's state too (what follows depends on timing) */
Test(main, a_stopped_real_clock_run_resumes_to_its_end, .timeout = 120) {
    stop_then_resume("run.clock=real", "1@1000+1", 0, "train.checkpoint_every=10m");
}

/* Checkpoints on every update: the rounds under way after Ctrl-C arrive as updates, but a
 * stopped run (its budget gone) takes no more checkpoints, so the newest is the stop's and
 * the resumed run does all of its budget. */
/* a checkpoint per update, twice over: about 100 s of the suite's time under TSan alone */
Test(main, a_run_stopped_while_checkpointing_every_update_resumes_to_its_end, .timeout = 300) {
    stop_then_resume("run.clock=virtual", "1@100+50", 1, "train.checkpoint_every=1");
    stop_then_resume("run.clock=real", "1@1000+1", 0, "train.checkpoint_every=1");
}

/* ------------------------------------------------------------ precision */

Test(main, train_in_bf16_says_so_in_the_summary, .timeout = 120) {
    SKIP_WITHOUT_BF16();
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--precision", "bf16", "--set",
                 "train.steps=20", "--set", "eval.batches=2", "--out", out, NULL);
    cr_assert_eq(rc, 0, "train failed (%d):\n%s", rc, c.err);
    expect_file_has(in_dir(&c, "run/summary.json"), "\"precision\":\"bf16\"");
    expect_file_has(in_dir(&c, "run/summary.json"), "\"status\":\"finished\"");
    char *s = slurp(in_dir(&c, "run/summary.json"));
    double loss = json_number(s, "final_val_loss");
    free(s);
    cr_assert(isfinite(loss) && loss > 0 && loss < 6.0, "val loss %g after 20 bf16 steps", loss);
    cli_close(&c);
}

/* auto says on stderr what it picked (bf16 where the CPU has it, else fp32), and the
 * summary agrees */
Test(main, train_with_precision_auto_says_what_it_picked, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--precision", "auto", "--set",
                 "train.steps=10", "--set", "eval.batches=2", "--out", out, NULL);
    cr_assert_eq(rc, 0, "train failed (%d):\n%s", rc, c.err);
    const char *picked = loco_test_has_bf16() ? "bf16" : "fp32";
    char line[64], key[64];
    snprintf(line, sizeof line, "precision auto -> %s", picked);
    snprintf(key, sizeof key, "\"precision\":\"%s\"", picked);
    expect_err(&c, line);
    expect_file_has(in_dir(&c, "run/summary.json"), key);
    cli_close(&c);
}

/* ONEDNN_MAX_CPU_ISA=AVX512_CORE keeps oneDNN off the bf16 instructions: loco counts the
 * CPU as without bf16 and refuses bf16 at once (exit 2, naming the key, saying fp32
 * works), writing nothing; fp32 still runs under the same cap. */
Test(main, bf16_where_onednn_cannot_use_it_is_refused_and_writes_nothing, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    cr_assert_eq(setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", 1), 0);
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--precision", "bf16", "--out", out, NULL);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, c.err);
    expect_err(&c, "model.precision");
    expect_err(&c, "fp32 works");
    cr_assert(!exists(out), "%s was created", out);
    rc = run(&c, "train", "-c", "configs/tiny.ini", "--precision", "fp32", "--set",
             "train.steps=5", "--set", "eval.batches=1", "--out", out, NULL);
    unsetenv("ONEDNN_MAX_CPU_ISA");
    cr_assert_eq(rc, 0, "fp32 under the cap (%d):\n%s", rc, c.err);
    expect_file_has(in_dir(&c, "run/summary.json"), "\"precision\":\"fp32\"");
    cli_close(&c);
}

Test(main, an_unknown_precision_is_refused_with_the_choices, .timeout = 60) {
    cli c;
    cli_open(&c);
    const char *out = in_dir(&c, "run");
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--precision", "fp16", "--out", out, NULL);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, c.err);
    expect_err(&c, "model.precision");
    expect_err(&c, "fp16");
    expect_err(&c, "fp32|bf16|auto");
    cr_assert(!exists(out), "%s was created", out);
    cli_close(&c);
}

/* The virtual clock is reproducible bit for bit in bf16 too: two asynchronous runs of
 * two workers (one twice as slow) write byte-identical models. */
Test(main, a_virtual_clock_bf16_run_is_reproducible, .timeout = 120) {
    SKIP_WITHOUT_BF16();
    cli c;
    cli_open(&c);
    const char *dirs[2] = {in_dir(&c, "a"), in_dir(&c, "b")};
    for (int i = 0; i < 2; i++) {
        int rc = run(&c, "train", "-c", "configs/tiny.ini", "--precision", "bf16", "--set",
                     "train.steps=20", "--set", "eval.batches=2", "--set", "run.workers=2",
                     "--set", "outer.method=async-dn", "--set", "run.clock=virtual", "--set",
                     "outer.local_steps=5", "--slowdown", "1,2", "--out", dirs[i], NULL);
        cr_assert_eq(rc, 0, "run %d failed (%d):\n%s", i, rc, c.err);
    }
    expect_file_has(in_dir(&c, "a/summary.json"), "\"precision\":\"bf16\"");
    cr_assert(same_bytes(in_dir(&c, "a/model.bin"), in_dir(&c, "b/model.bin")),
              "two virtual-clock bf16 runs wrote different models");
    cli_close(&c);
}

/* ------------------------------------------ how a run ended, in its exit code */

/* 0 finished, 3 incomplete (every worker failed for good), 1 failed (diverged), 128 +
 * the signal when stopped (SIGINT above; SIGTERM here), each with the summary's status. */
Test(main, the_exit_code_says_how_the_run_ended, .timeout = 240) {
    cli c;
    cli_open(&c);
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=40", "--set",
                 "run.workers=4", "--set", "outer.method=async-dn", "--set", "run.clock=virtual",
                 "--set", "outer.local_steps=5", "--fail", "0@0", "--fail", "1@0", "--fail", "2@0",
                 "--fail", "3@0", "--out", in_dir(&c, "gone"), NULL);
    cr_assert_eq(rc, 3, "every worker failed: exit %d, not 3:\n%s", rc, c.err);
    expect_file_has(in_dir(&c, "gone/summary.json"), "\"status\":\"incomplete\"");
    rc = run(&c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=40", "--set",
             "train.lr=10", "--set", "train.warmup=0", "--set", "train.grad_clip=0", "--set",
             "train.beta1=0", "--set", "train.beta2=0", "--set", "train.eps=0", /* 0 / 0 */
             "--out", in_dir(&c, "diverged"), NULL);
    cr_assert_eq(rc, 1, "a diverged run: exit %d, not 1:\n%s", rc, c.err);
    expect_err(&c, "diverged");
    expect_file_has(in_dir(&c, "diverged/summary.json"), "\"status\":\"failed\"");
    const char *args[] = {"train", "-c", "configs/tiny.ini", "--set", "train.steps=1000000",
                          "--out", in_dir(&c, "stopped"), NULL};
    pid_t pid = cli_start(&c, args);
    await_text(&c, pid, in_dir(&c, "stopped/metrics.jsonl"), "{\"event\":\"train\"");
    kill(pid, SIGTERM);
    cli_wait(&c, pid);
    cr_assert_eq(c.status, 128 + SIGTERM, "stopped by SIGTERM: exit %d:\n%s", c.status, c.err);
    expect_file_has(in_dir(&c, "stopped/summary.json"), "\"status\":\"stopped\"");
    cli_close(&c);
}

/* `train --resume` of a run that finished says so and changes nothing: not a byte of its
 * summary, events, model or checkpoint. */
Test(main, resuming_a_finished_run_changes_nothing, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *dir = in_dir(&c, "run");
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=20", "--set",
                 "train.checkpoint_every=8", "--set", "run.workers=2", "--set",
                 "outer.method=async-dn", "--set", "run.clock=virtual", "--set",
                 "outer.local_steps=2", "--out", dir, NULL);
    cr_assert_eq(rc, 0, "%s", c.err);
    const char *names[] = {"summary.json", "metrics.jsonl", "model.bin", "checkpoint.bin"};
    char *before[4];
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "run/%s", names[i]);
        before[i] = slurp(in_dir(&c, name));
        cr_assert_not_null(before[i], "%s is missing", names[i]);
    }
    cr_assert_eq(run(&c, "train", "--resume", dir, NULL), 0, "%s", c.err);
    expect_err(&c, "the run finished already");
    expect_err(&c, "nothing changed");
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "run/%s", names[i]);
        char *after = slurp(in_dir(&c, name));
        cr_assert(after && !strcmp(after, before[i]), "%s changed", names[i]);
        free(after), free(before[i]);
    }
    cli_close(&c);
}

/* train.checkpoint_every = N (updates; single: steps) writes one checkpoint at each
 * multiple of N, the last update's included, in either clock: the count is the summary's
 * and the newest checkpoint stands at the last multiple. */
static void expect_exact_checkpoints(const char *clock, const char *method, long every) {
    cli c;
    cli_open(&c);
    const char *dir = in_dir(&c, "run");
    char n[32], m[48], k[48];
    snprintf(n, sizeof n, "train.checkpoint_every=%ld", every);
    snprintf(m, sizeof m, "outer.method=%s", method);
    snprintf(k, sizeof k, "run.clock=%s", clock);
    int single = !strcmp(method, "single");
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--set", "train.steps=24", "--set",
                 single ? "run.workers=1" : "run.workers=4", "--set", m, "--set", k, "--set",
                 "outer.local_steps=4", "--set", "eval.every=0", "--set", n, "--out", dir, NULL);
    cr_assert_eq(rc, 0, "%s", c.err);
    char *summary = slurp(in_dir(&c, "run/summary.json"));
    long updates = single ? (long)json_number(summary, "steps") : (long)json_number(summary, "updates");
    long written = (long)json_number(summary, "checkpoints");
    free(summary);
    cr_assert_eq(written, updates / every, "%s %s, every %ld over %ld: %ld checkpoints", method,
                 clock, every, updates, written);
    char want[64];
    if (single) snprintf(want, sizeof want, "at step %ld;", updates / every * every);
    else snprintf(want, sizeof want, "at %ld server updates", updates / every * every);
    cr_assert_eq(run(&c, "check", in_dir(&c, "run/checkpoint.bin"), NULL), 0, "%s", c.err);
    expect_out(&c, want);
    cli_close(&c);
}

Test(main, checkpoints_on_update_counts_are_exact, .timeout = 240) {
    const long every[] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
        expect_exact_checkpoints("virtual", "async-dn", every[i]);
        expect_exact_checkpoints("real", "async", every[i]);
        expect_exact_checkpoints("virtual", "sync", every[i]);
        expect_exact_checkpoints("real", "single", every[i]);
    }
}

/* `loco check` of a real-clock checkpoint gives the wall seconds the run had run. */
Test(main, check_of_a_real_clock_checkpoint_gives_its_time, .timeout = 120) {
    cli c;
    cli_open(&c);
    const char *dir = in_dir(&c, "run");
    const char *args[] = {"train", "-c", "configs/tiny.ini", "--set", "train.steps=1000000",
                          "--set", "run.workers=2", "--set", "outer.method=async-dn",
                          "--set", "run.clock=real", "--set", "outer.local_steps=5",
                          "--out", dir, NULL};
    pid_t pid = cli_start(&c, args);
    await_text(&c, pid, in_dir(&c, "run/metrics.jsonl"), "\"ticket\":1,");
    sleep_ms(1000);
    kill(pid, SIGINT);
    cli_wait(&c, pid);
    cr_assert_eq(c.status, 128 + SIGINT, "%s", c.err);
    char *summary = slurp(in_dir(&c, "run/summary.json"));
    double ran = json_number(summary, "train_s");
    free(summary);
    cr_assert_eq(run(&c, "check", in_dir(&c, "run/checkpoint.bin"), NULL), 0, "%s", c.err);
    const char *t = strstr(c.out, "time ");
    cr_assert_not_null(t, "%s", c.out);
    double secs = strtod(t + 5, NULL);
    cr_assert(secs >= 1 && secs <= ran, "stopped a second after its first update, %.3g s in "
              "all: check says %s", ran, t);
    cli_close(&c);
}

Test(main, a_failure_time_out_of_range_is_said_so, .timeout = 60) {
    cli c;
    cli_open(&c);
    int rc = run(&c, "train", "-c", "configs/tiny.ini", "--set", "run.workers=2", "--set",
                 "outer.method=async", "--fail", "0@1e400", "--dry-run", NULL);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, c.err);
    expect_err(&c, "\"0@1e400\": the time is out of range");
    cli_close(&c);
}
