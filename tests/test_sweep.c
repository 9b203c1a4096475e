/* The experiment runner on a micro spec (a few seconds): the results have the rows and
 * columns the spec asks for, a second sweep skips every finished run, a run cut short is
 * run again and not counted, and a bad spec is refused before anything is written. Then
 * `./loco sweep` as users run it: values listed twice, runs that end incomplete (listed,
 * marked, exit 3), a stopped sweep resumed, a data file missing from the current
 * directory, two sweeps into one directory. */
#include <glob.h>

#include "cli.h"
#include "loco/cpu.h"
#include "loco/runlock.h"
#include "loco/runlog.h"
#include "loco/sweep.h"

/* the micro model: every run trains in well under a second */
#define MICRO_SET                                                                              \
    "[set]\nmodel.layers = 1\nmodel.dim = 32\nmodel.heads = 2\nmodel.seq_len = 32\n"         \
    "train.batch = 4\ntrain.steps = 20\ntrain.warmup = 5\neval.batches = 2\n"                \
    "eval.every_updates = 0\neval.every_local_steps = 20\nouter.local_steps = 5\n"            \
    "run.clock = virtual\nrun.workers = 2\n"

static const char micro[] =
    "[sweep]\nname = micro\nseeds = 1\ntarget = sync\ntable = hetero.level\ntimeline = dn\n"
    MICRO_SET
    "[pretrain]\ntrain.steps = 10\n"
    "[variant sync]\nouter.method = sync\n"
    "[variant dn]\nouter.method = async-dn\nouter.dylu = on\n"
    "[variant single]\nouter.method = single\n"
    "[grid]\nvariant = single, sync, dn\nhetero.level = no, very\n"
    "[tune]\nouter.lr = 0.1, 0.5\nouter.total_local_steps = 10\n"
    "[repeat]\nvariant = dn\nhetero.level = very\nseeds = 2\n"
    "[quick]\ngrid.hetero.level = very\n";

typedef struct {
    char dir[64], spec[96], out[96], err[96];
} fixture;

/* text as the whole of path */
static void write_spec(const char *path, const char *text) {
    write_file(path, text, strlen(text));
}

static void setup(fixture *f, const char *spec_text) {
    snprintf(f->dir, sizeof f->dir, "/tmp/loco-sweep-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->spec, sizeof f->spec, "%s/spec.ini", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out", f->dir);
    snprintf(f->err, sizeof f->err, "%s/stderr", f->dir);
    write_spec(f->spec, spec_text);
}

static void teardown(fixture *f) {
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int sweep(const fixture *f, int quick, loco_err *e) {
    loco_sweep_opts o = {.spec = f->spec, .out = f->out, .quick = quick, .jobs = 2};
    return loco_sweep_run(&o, e);
}

static char *read_or_fail(const char *path) {
    char *b = slurp(path);
    cr_assert_not_null(b, "%s is missing", path);
    return b;
}

/* the file that matches pattern (one run), or "" while there is none */
static void find_file(const char *pattern, char *out, size_t n) {
    glob_t g;
    out[0] = '\0';
    if (glob(pattern, 0, NULL, &g) == 0) snprintf(out, n, "%s", g.gl_pathv[0]);
    globfree(&g);
}

/* the run directories under out/runs, and when their summaries were written */
typedef struct {
    char name[64][128];
    struct timespec when[64];
    int n;
} listing;

static void list_runs(const fixture *f, listing *l) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s/runs", f->out);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    l->n = 0;
    while (l->n < 64 && fscanf(p, "%127s", l->name[l->n]) == 1) {
        char path[320];
        struct stat st;
        snprintf(path, sizeof path, "%s/runs/%s/summary.json", f->out, l->name[l->n]);
        cr_assert_eq(stat(path, &st), 0, "%s has no summary", l->name[l->n]);
        l->when[l->n++] = st.st_mtim;
    }
    pclose(p);
}

static int same_time(struct timespec a, struct timespec b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

Test(sweep, results_have_the_rows_and_columns_of_the_spec, .timeout = 180) {
    fixture f;
    setup(&f, micro);
    loco_err e;
    cr_assert_eq(sweep(&f, 0, &e), 0, "%s", e.msg);
    char path[160];
    snprintf(path, sizeof path, "%s/results.md", f.out);
    char *md = read_or_fail(path);
    cr_assert_not_null(strstr(md, "| variant | no | very |"), "the columns:\n%s", md);
    const char *rows[] = {"| single |", "| sync |", "| dn |"};
    for (int i = 0; i < 3; i++) cr_assert_not_null(strstr(md, rows[i]), "row %s:\n%s", rows[i], md);
    cr_assert_not_null(strstr(md, "(2 seeds)"), "dn at very has two seeds:\n%s", md);
    cr_assert_not_null(strstr(md, "Time to `sync`'s final loss"), "%s", md);
    /* the runs are children of this process: the same kernel set, CPU and build */
    char made[400], cpu_name[160];
    loco_cpu cpu;
    loco_cpu_detect(&cpu);
    snprintf(made, sizeof made, "Products in fp32. OpenBLAS kernels: %s. CPU: %s. loco commit: %s.",
             loco_blas()->core, loco_cpu_name(&cpu, cpu_name, sizeof cpu_name), loco_commit);
    cr_assert_not_null(strstr(md, made), "'%s' in:\n%s", made, md);
    cr_assert_not_null(strstr(md, "the even-numbered validation windows (standard error"), "%s", md);
    cr_assert_not_null(strstr(md, "scored on the odd-numbered validation windows"), "%s", md);
    snprintf(path, sizeof path, "%s/results.json", f.out);
    char *json = read_or_fail(path);
    cr_assert_not_null(strstr(json, "\"columns\":[\"no\",\"very\"]"), "%.300s", json);
    cr_assert_not_null(strstr(json, "\"rows\":[\"single\",\"sync\",\"dn\"]"), "%.300s", json);
    cr_assert_not_null(strstr(md, "![timeline](timeline.png)"), "%s", md);
    cr_assert_not_null(strstr(md, "![learning rates](lr.png)"), "%s", md);
    const char *pngs[] = {"curves_steps.png", "curves_time.png", "timeline.png", "lr.png"};
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", f.out, pngs[i]);
        FILE *p = fopen(path, "rb");
        unsigned char sig[8] = {0};
        cr_assert(p && fread(sig, 1, 8, p) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8),
                  "%s is not a PNG", path);
        fclose(p);
    }
    /* the rerun commands name the paths as the sweep was given them: the rest is relative */
    char dir_key[160];
    snprintf(dir_key, sizeof dir_key, "\"dir\":\"%s", f.out);
    cr_assert_null(strstr(json, dir_key), "results.json names run directories relative to it");
    cr_assert_not_null(strstr(json, "\"dir\":\"runs/"), "%.300s", json);
    free(md), free(json);
    /* single runs once for both levels (its config does not depend on them): 1 + 2 + 3 */
    listing l;
    list_runs(&f, &l);
    cr_assert_eq(l.n, 6, "%d run directories", l.n);
    /* theta(0) is trained on a data stream no worker of the runs draws */
    char pattern[160], pre[256];
    snprintf(pattern, sizeof pattern, "%s/pretrain-*/config.ini", f.out);
    find_file(pattern, pre, sizeof pre);
    cr_assert(pre[0], "no pre-training config under %s", f.out);
    char *ini = read_or_fail(pre);
    cr_assert_not_null(strstr(ini, "first_stream = 1048576"), "%s", ini);
    free(ini);
    /* a rate is chosen on validation windows the reported figures never use */
    const char *sets[][2] = {{"tune/dn-*/config.ini", "set = tune"},
                             {"runs/dn-*/config.ini", "set = report"}};
    for (int i = 0; i < 2; i++) {
        snprintf(pattern, sizeof pattern, "%s/%s", f.out, sets[i][0]);
        find_file(pattern, pre, sizeof pre);
        cr_assert(pre[0], "no %s under %s", sets[i][0], f.out);
        ini = read_or_fail(pre);
        cr_assert_not_null(strstr(ini, sets[i][1]), "%s: no '%s' in\n%s", pre, sets[i][1], ini);
        free(ini);
    }
    teardown(&f);
}

/* [tune] extend: with two rates a cell's best is always at an end, so with extend = 1 each
 * tuned cell tries exactly one rate beyond it (the grid's ratio, 5x, again: 0.02 or 2.5),
 * the page gives every cell's range, and a second sweep runs nothing. */
static const char extended[] =
    "[sweep]\nname = ext\nseeds = 1\ntable = hetero.level\n" MICRO_SET
    "[pretrain]\ntrain.steps = 10\n"
    "[variant dn]\nouter.method = async-dn\n"
    "[grid]\nvariant = dn\nhetero.level = no, very\n"
    "[tune]\nouter.lr = 0.1, 0.5\nouter.total_local_steps = 10\nextend = 1\n";

/* how many files match pattern */
static int count_files(const char *pattern) {
    glob_t g;
    int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    globfree(&g);
    return n;
}

Test(sweep, a_best_rate_at_the_end_of_the_grid_gets_the_next_rate_tried, .timeout = 180) {
    fixture f;
    setup(&f, extended);
    loco_err e;
    cr_assert_eq(sweep(&f, 0, &e), 0, "%s", e.msg);
    char pattern[200];
    snprintf(pattern, sizeof pattern, "%s/tune/dn-lr*/summary.json", f.out);
    cr_assert_eq(count_files(pattern), 6, "2 cells x (2 rates + 1 beyond)");
    snprintf(pattern, sizeof pattern, "%s/tune/dn-lr0.02-*/summary.json", f.out);
    int low = count_files(pattern);
    snprintf(pattern, sizeof pattern, "%s/tune/dn-lr2.5-*/summary.json", f.out);
    cr_assert_eq(low + count_files(pattern), 2, "one rate beyond per cell");
    char path[160];
    snprintf(path, sizeof path, "%s/results.md", f.out);
    char *md = read_or_fail(path);
    const char *ranges[] = {"(of 0.02–0.5", "(of 0.1–2.5"};
    int shown = 0;
    for (const char *p = md; (p = strstr(p, "(of ")); p++)
        shown += !strncmp(p, ranges[0], strlen(ranges[0])) || !strncmp(p, ranges[1], strlen(ranges[1]));
    cr_assert_eq(shown, 2, "each cell's range:\n%s", md);
    free(md);
    /* the same sweep again finds every run done, the extended ones too, and adds none */
    cr_assert_eq(sweep(&f, 0, &e), 0, "%s", e.msg);
    snprintf(pattern, sizeof pattern, "%s/tune/dn-lr*/summary.json", f.out);
    cr_assert_eq(count_files(pattern), 6);
    teardown(&f);
}

Test(sweep, a_second_sweep_skips_finished_runs_and_redoes_one_cut_short, .timeout = 180) {
    fixture f;
    setup(&f, micro);
    loco_err e;
    cr_assert_eq(sweep(&f, 1, &e), 0, "%s", e.msg);
    listing before, after;
    list_runs(&f, &before);
    cr_assert_geq(before.n, 3);
    /* cut one short: its summary says it was stopped */
    char path[320];
    snprintf(path, sizeof path, "%s/runs/%s/summary.json", f.out, before.name[0]);
    char *s = read_or_fail(path), *at = strstr(s, "\"status\":\"finished\"");
    cr_assert_not_null(at);
    memcpy(at, "\"status\":\"stopped\" ", 19);
    write_spec(path, s);
    free(s);
    sleep(1); /* distinct modification times */
    cr_assert_eq(sweep(&f, 1, &e), 0, "%s", e.msg);
    list_runs(&f, &after);
    cr_assert_eq(after.n, before.n);
    for (int i = 0; i < after.n; i++) {
        cr_assert_str_eq(after.name[i], before.name[i]);
        int redone = !same_time(after.when[i], before.when[i]);
        cr_assert_eq(redone, i == 0, "%s: %s", after.name[i], redone ? "run again" : "skipped");
    }
    s = read_or_fail(path);
    cr_assert_not_null(strstr(s, "\"status\":\"finished\""), "run again to its end: %s", s);
    free(s);
    teardown(&f);
}

/* the micro spec with text `from` replaced by `to` (from NULL: `to` appended) */
static char *edited(const char *from, const char *to) {
    size_t n = sizeof micro + strlen(to) + 1;
    char *t = malloc(n);
    if (!from) {
        snprintf(t, n, "%s%s", micro, to);
        return t;
    }
    const char *at = strstr(micro, from);
    cr_assert_not_null(at, "%s not in the spec", from);
    snprintf(t, n, "%.*s%s%s", (int)(at - micro), micro, to, at + strlen(from));
    return t;
}

/* Every spec in configs/ plans: `loco sweep SPEC --plan` checks its every run's config
 * (data file and memory too), lists the main runs and writes nothing, so a spec a later
 * session is to run is known to be well-formed now. */
Test(sweep, every_spec_in_configs_plans_and_writes_nothing, .timeout = 120) {
    cli c;
    cli_open(&c);
    glob_t g;
    cr_assert_eq(glob("configs/*.ini", 0, NULL, &g), 0, "no configs/*.ini (run from the root)");
    int specs = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *text = slurp(g.gl_pathv[i]);
        int is_spec = text && strstr(text, "\n[sweep]") != NULL;
        free(text);
        if (!is_spec) continue;
        specs++;
        const char *out = in_dir(&c, "plan");
        cr_assert_eq(run(&c, "sweep", g.gl_pathv[i], "--plan", "--out", out, NULL), 0, "%s: %s",
                     g.gl_pathv[i], c.err);
        expect_out(&c, "main: ");
        cr_assert_neq(access(out, F_OK), 0, "%s: --plan wrote %s", g.gl_pathv[i], out);
    }
    globfree(&g);
    cr_assert_geq(specs, 6, "only %d sweep specs", specs);
    cli_close(&c);
}

/* [repeat] KEY = a list: the extra seeds go to every listed value's cells, no others */
Test(sweep, repeat_takes_a_list_of_an_axis_values, .timeout = 60) {
    fixture f;
    char *text = edited("level = very\nseeds", "level = no, very\nseeds");
    setup(&f, text);
    free(text);
    cli c;
    cli_open(&c);
    cr_assert_eq(run(&c, "sweep", f.spec, "--plan", "--out", f.out, NULL), 0, "%s", c.err);
    expect_out(&c, "dn-no-s2:");
    expect_out(&c, "dn-very-s2:");
    cr_assert_null(strstr(c.out, "sync-no-s2"), "only [repeat]'s variants: %s", c.out);
    cli_close(&c);
    teardown(&f);
}

Test(sweep, a_bad_spec_is_refused_before_anything_is_written, .timeout = 60) {
    struct {
        const char *from, *to, *want1, *want2;
    } cases[] = {
        {"variant = single, sync, dn", "variant = sync, nosuch", "spec.ini:", "no [variant nosuch] section"},
        {NULL, "[bogus]\nx = 1\n", "unknown section [bogus]", "spec.ini:"},
        {NULL, "[set]\nmodel.nosuch = 3\n", "spec.ini:", "unknown key 'nosuch'"},
        {NULL, "[variant sync]\nouter.grace_s = 1\n", "outer.grace_s = 1", "sync round"},
        {"outer.lr = 0.1, 0.5\n", "outer.lr = 0.1, 0.5\nextend = 9\n", "spec.ini:", "extend = 9: expected a count of rates from 0 to 4"},
        {NULL, "[sweep]\ntable = run.workers\n", "duplicate key", "line 5"},
        {"table = hetero.level", "table = run.nosuch", "table = run.nosuch", "not a key of [grid]"},
        {"seeds = 1\n", "seeds = 1, x\n", "seeds", "'x' is not an integer"},
        {"level = very\nseeds", "level = vrey\nseeds", "spec.ini:", "'vrey' is not one of [grid]'s values"},
        {"hetero.level = very\nseeds", "hetero.lvl = very\nseeds", "[repeat] hetero.lvl", "not a key of [grid]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f;
        char *text = edited(cases[i].from, cases[i].to);
        setup(&f, text);
        free(text);
        loco_err e;
        cr_assert_eq(sweep(&f, 0, &e), -1, "case %zu accepted", i);
        cr_assert(strstr(e.msg, cases[i].want1) && strstr(e.msg, cases[i].want2), "case %zu: %s",
                  i, e.msg);
        cr_assert_neq(access(f.out, F_OK), 0, "case %zu: %s was created", i, f.out);
        teardown(&f);
    }
}

/* ---------------------------------------------------------- ./loco sweep */

/* Starts `./loco sweep SPEC --out OUT` (and more args, NULL-terminated) from the
 * repository root; stdout to /dev/null, stderr into f->err. */
static pid_t start_sweep(const fixture *f, const char *more) {
    const char *argv[] = {LOCO_BIN, "sweep", f->spec, "--out", f->out, more, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, f->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, LOCO_BIN, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start " LOCO_BIN " (run from the repository root)");
    return pid;
}

/* its exit code (128 + N when signal N ended it) */
static int wait_sweep(pid_t pid) {
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_sweep(const fixture *f, char **err) {
    int code = wait_sweep(start_sweep(f, NULL));
    *err = read_or_fail(f->err);
    return code;
}


/* the second sweep says it found theta(0) rather than that it pre-trains again */
Test(sweep, a_second_sweep_says_theta0_was_made_before, .timeout = 120) {
    fixture f;
    setup(&f, micro);
    char *err;
    cr_assert_eq(run_sweep(&f, &err), 0, "%s", err);
    cr_assert_not_null(strstr(err, "sweep: pre-training theta(0): 10 steps"), "%s", err);
    free(err);
    cr_assert_eq(run_sweep(&f, &err), 0, "%s", err);
    cr_assert(strstr(err, "sweep: theta(0) made before: ") && !strstr(err, "pre-training theta(0)"), "%s", err);
    free(err);
    teardown(&f);
}

/* A finished cell's recorded command, run by a shell, makes its model again bit for bit. */
Test(sweep, a_finished_run_reruns_bit_for_bit_from_its_recorded_command, .timeout = 120) {
    fixture f;
    setup(&f, micro);
    char *err, path[256];
    cr_assert_eq(run_sweep(&f, &err), 0, "%s", err);
    free(err);
    snprintf(path, sizeof path, "%s/results.json", f.out);
    char *json = read_or_fail(path);
    const char *at = strstr(json, "\"variant\":\"dn\",\"column\":\"very\",\"seed\":2");
    cr_assert_not_null(at, "%s", json);
    const char *dir = strstr(at, "\"dir\":\""), *cmd = strstr(at, "\"rerun\":\"");
    cr_assert(dir && cmd && cmd < strchr(at, '}'), "the run has a rerun: %.400s", at);
    char name[128], line[1024], orig[512], again[512];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(dir + 7, "\""), dir + 7);
    /* the command names ./loco; a sanitizer build's runs are its own binary's bits */
    const char *c0 = cmd + 9, *bin = strstr(c0, "./loco train");
    cr_assert(bin && bin < strchr(c0, '"'), "%.200s", c0);
    snprintf(line, sizeof line, "%.*s%s%.*s 2>/dev/null", (int)(bin - c0), c0, LOCO_BIN,
             (int)strcspn(bin + 6, "\""), bin + 6);
    cr_assert_not_null(strstr(line, "OPENBLAS_CORETYPE="), "the kernels are part of it: %s", line);
    cr_assert_not_null(strstr(line, "--init "), "theta(0) is part of it: %s", line);
    cr_assert_eq(system(line), 0, "%s", line);
    snprintf(orig, sizeof orig, "%s/%s/model.bin", f.out, name);
    snprintf(again, sizeof again, "%s/rerun/%s/model.bin", f.out, strrchr(name, '/') + 1);
    cr_assert(same_bytes(orig, again), "%s and %s differ", orig, again);
    free(json);
    teardown(&f);
}

/* waits until the file matching pattern has text in it; fails if pid ends first */
static void wait_for(pid_t pid, const char *pattern, const char *text) {
    for (int i = 0; i < 12000; i++) {
        char path[256];
        find_file(pattern, path, sizeof path);
        FILE *p = path[0] ? fopen(path, "rb") : NULL;
        char buf[1 << 16];
        size_t got = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
        if (p) fclose(p);
        buf[got] = '\0';
        if (strstr(buf, text)) return;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the sweep ended before %s had %s", pattern, text);
        sleep_ms(5);
    }
    cr_assert(0, "%s never had %s", pattern, text);
}

/* the line number in micro where `from` starts */
static int line_of(const char *from) {
    const char *at = strstr(micro, from);
    int line = 1;
    for (const char *p = micro; p < at; p++) line += *p == '\n';
    return line;
}

Test(sweep, a_value_listed_twice_is_refused_with_its_line, .timeout = 60) {
    struct {
        const char *from, *to, *value;
    } cases[] = {
        {"variant = single, sync, dn", "variant = single, sync, sync", "'sync'"},
        {"hetero.level = no, very", "hetero.level = no, no", "'no'"},
        {"seeds = 1\n", "seeds = 1, 2, 1\n", "'1'"},
        {"outer.lr = 0.1, 0.5", "outer.lr = 0.5, 0.5", "'0.5'"},
        {"variant = dn\n", "variant = dn, dn\n", "'dn'"},     /* [repeat] */
        {"seeds = 2\n", "seeds = 2, 02\n", "'2'"},            /* [repeat]: one number */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f;
        char *text = edited(cases[i].from, cases[i].to), *err, where[32];
        setup(&f, text);
        free(text);
        cr_assert_eq(run_sweep(&f, &err), 1, "case %zu: exit code:\n%s", i, err);
        snprintf(where, sizeof where, "spec.ini:%d: ", line_of(cases[i].from));
        cr_assert(strstr(err, where) && strstr(err, cases[i].value) && strstr(err, "listed twice"),
                  "case %zu: %s and %s in:\n%s", i, where, cases[i].value, err);
        cr_assert_neq(access(f.out, F_OK), 0, "case %zu: %s was created", i, f.out);
        free(err);
        teardown(&f);
    }
}

/* every worker of `broken` fails for good at once: its runs end incomplete */
static const char with_incomplete[] =
    "[sweep]\nname = inc\nseeds = 1, 2\ntarget = sync\ntable = hetero.level\n" MICRO_SET
    "[variant sync]\nouter.method = sync\n"
    "[variant broken]\nouter.method = async-dn\nfaults.fail = 0@0, 1@0\n"
    "[grid]\nvariant = sync, broken\nhetero.level = no\n";

Test(sweep, runs_that_end_incomplete_are_listed_marked_and_exit_3, .timeout = 120) {
    fixture f;
    setup(&f, with_incomplete);
    char *err, path[160];
    cr_assert_eq(run_sweep(&f, &err), 3, "exit code:\n%s", err);
    cr_assert_not_null(strstr(err, "broken-no-s1 (incomplete)"), "%s", err);
    snprintf(path, sizeof path, "%s/results.json", f.out);
    char *json = read_or_fail(path);
    const char *b = strstr(json, "\"variant\":\"broken\"");
    cr_assert_not_null(b, "the broken variant is in results.json: %s", json);
    const char *next = strstr(b, "}");
    const char *st = strstr(b, "\"status\":\"incomplete\"");
    cr_assert(st && st < next, "its run says incomplete: %s", json);
    cr_assert_not_null(strstr(json, "\"status\":\"finished\""), "%s", json);
    snprintf(path, sizeof path, "%s/results.md", f.out);
    char *md = read_or_fail(path), *row = strstr(md, "| broken | ");
    cr_assert_not_null(row, "a row for broken:\n%s", md);
    *strchr(row, '\n') = '\0';
    cr_assert_not_null(strstr(row, "\\* (incomplete, none finished) |"), "marked: %s", row);
    row[strlen(row)] = '\n';
    cr_assert_not_null(strstr(md, "\\* Not every run of the cell finished"), "the legend:\n%s", md);
    cr_assert_not_null(strstr(md, "(2 seeds) |"), "sync's two seeds both finished:\n%s", md);
    free(err), free(json), free(md);
    teardown(&f);
}

/* one asynchronous run long enough to be stopped part-way, with checkpoints */
static const char long_run[] =
    "[sweep]\nname = long\nseeds = 1\n" MICRO_SET
    "[variant dn]\nouter.method = async-dn\ntrain.steps = 1500\ntrain.checkpoint_every = 10\n"
    "[grid]\nvariant = dn\n";

Test(sweep, a_stopped_sweep_resumes_its_cut_run_from_the_checkpoint, .timeout = 180) {
    fixture f;
    setup(&f, long_run);
    char pattern[160], metrics[256], err_path[300];
    snprintf(pattern, sizeof pattern, "%s/runs/dn-*/metrics.jsonl", f.out);
    pid_t pid = start_sweep(&f, NULL);
    wait_for(pid, pattern, "\"ticket\":40,");
    cr_assert_eq(kill(pid, SIGINT), 0);
    cr_assert_eq(wait_sweep(pid), 128 + SIGINT, "a stopped sweep exits 130");
    char *err = read_or_fail(f.err);
    cr_assert_not_null(strstr(err, "dn-s1: stopped"), "the progress line says stopped:\n%s", err);
    cr_assert_not_null(strstr(err, "stopped: 0 runs done"), "a stopped run is not done:\n%s", err);
    free(err);
    cr_assert_eq(run_sweep(&f, &err), 0, "the second sweep:\n%s", err);
    cr_assert_not_null(strstr(err, "1 runs done now, 0 done before"), "%s", err);
    free(err);
    find_file(pattern, metrics, sizeof metrics);
    snprintf(err_path, sizeof err_path, "%.*s/log.txt", (int)(strrchr(metrics, '/') - metrics), metrics);
    char *log = read_or_fail(err_path);
    cr_assert_not_null(strstr(log, "resuming the run from its checkpoint"), "%s", log);
    free(log);
    /* each applied update once: 2 workers x 1500 steps / H = 5 is 600 */
    char *m = read_or_fail(metrics), *p = m;
    static char seen[601];
    int n = 0;
    while ((p = strstr(p, "\"ticket\":"))) {
        long t = strtol(p + 9, &p, 10);
        if (t == 0) continue;
        cr_assert(t > 0 && t <= 600 && !seen[t], "ticket %ld twice or out of range", t);
        seen[t] = 1;
        n++;
    }
    cr_assert_eq(n, 600, "%d applied updates", n);
    free(m);
    snprintf(err_path, sizeof err_path, "%.*s/summary.json", (int)(strrchr(metrics, '/') - metrics), metrics);
    m = read_or_fail(err_path);
    cr_assert_not_null(strstr(m, "\"local_steps\":3000,"), "%s", m);
    free(m);
    teardown(&f);
}

Test(sweep, a_data_path_missing_from_the_current_directory_is_refused_first, .timeout = 60) {
    fixture f;
    char *text = edited(NULL, "[set]\ndata.path = nosuch/corpus.txt\n"), *err, cwd[256];
    setup(&f, text);
    free(text);
    cr_assert_eq(run_sweep(&f, &err), 1, "exit code:\n%s", err);
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert(strstr(err, "run pretrain: nosuch/corpus.txt: cannot open: No such file") &&
              strstr(err, cwd) && strstr(err, "current directory"), "%s", err);
    cr_assert_neq(access(f.out, F_OK), 0, "%s was created", f.out);
    free(err);
    teardown(&f);
}

Test(sweep, a_second_sweep_into_a_directory_in_use_is_refused, .timeout = 120) {
    fixture f;
    setup(&f, long_run);
    char pattern[160], holder[64], *err;
    snprintf(pattern, sizeof pattern, "%s/runs/dn-*/metrics.jsonl", f.out);
    pid_t first = start_sweep(&f, NULL);
    wait_for(first, pattern, "\"ticket\":1,");
    fixture second = f;
    snprintf(second.err, sizeof second.err, "%s/stderr2", f.dir);
    cr_assert_eq(run_sweep(&second, &err), 1, "the second sweep:\n%s", err);
    snprintf(holder, sizeof holder, "(pid %ld: sweep ", (long)first);
    cr_assert(strstr(err, "is in use by another loco process") && strstr(err, holder),
              "refused, naming %s:\n%s", holder, err);
    free(err);
    kill(first, SIGINT);
    cr_assert_eq(wait_sweep(first), 128 + SIGINT);
    err = read_or_fail(f.err);
    cr_assert_not_null(strstr(err, "dn-s1: stopped"), "the first sweep's run went on:\n%s", err);
    free(err);
    teardown(&f);
}

/* A run whose directory another process holds is not run, and its directory is left as
 * it was: here a finished run made to look stopped, with this process holding its lock. */
Test(sweep, a_run_whose_directory_is_in_use_is_left_alone_and_not_done, .timeout = 120) {
    fixture f;
    setup(&f, with_incomplete);
    char *err, pattern[160], dir[256], path[320];
    cr_assert_eq(run_sweep(&f, &err), 3, "%s", err);
    free(err);
    snprintf(pattern, sizeof pattern, "%s/runs/sync-*", f.out);
    find_file(pattern, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/summary.json", dir);
    char *s = read_or_fail(path), *at = strstr(s, "\"status\":\"finished\"");
    cr_assert_not_null(at);
    memcpy(at, "\"status\":\"stopped\" ", 19);
    write_spec(path, s);
    loco_runlock lock = {0};
    loco_err e;
    cr_assert_eq(loco_runlock_take(&lock, dir, "the test", &e), 0, "%s", e.msg);
    cr_assert_eq(run_sweep(&f, &err), 3, "%s", err);
    cr_assert(strstr(err, "not run: its directory is in use") && strstr(err, "the test, since"),
              "%s", err);
    cr_assert_not_null(strstr(err, "0 runs done now, 3 done before"), "%s", err);
    loco_runlock_release(&lock);
    char *after = read_or_fail(path);
    cr_assert_str_eq(after, s, "the held directory was touched");
    snprintf(path, sizeof path, "%s/results.json", f.out);
    char *json = read_or_fail(path);
    cr_assert_not_null(strstr(json, "\"status\":\"not run\""), "%s", json);
    free(err), free(s), free(after), free(json);
    teardown(&f);
}
