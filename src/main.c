/* loco: the command line. Parses arguments, calls the modules, prints errors, exits. */
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loco/bench.h"
#include "loco/modelfile.h"
#include "loco/config.h"
#include "loco/data.h"
#include "loco/evaluator.h"
#include "loco/memplan.h"
#include "loco/metrics.h"
#include "loco/model.h"
#include "loco/plot.h"
#include "loco/runlog.h"
#include "loco/settings.h"
#include "loco/sample.h"
#include "loco/topo.h"
#include "loco/checkpoint.h"
#include "loco/sweep.h"
#include "loco/train.h"

extern const char loco_default_ini[];
extern const char loco_default_ini_name[];

static const char usage_main[] =
    "usage: loco <command> [options]\n"
    "\n"
    "  train    train a model:            loco train [-c FILE] [--set KEY=VALUE]... [--out DIR] [--dry-run]\n"
    "  eval     loss of a model on a file: loco eval --model FILE --data PATH [--format text|llmc]\n"
    "  sample   generate text:            loco sample --model FILE [--prompt TEXT] [--tokens N]\n"
    "  export   to llm.c's format:        loco export --llmc MODEL OUT\n"
    "  check    verify a model file:      loco check FILE\n"
    "  bench    benchmarks:               loco bench step|apply|scale|soak [-c FILE] [--set KEY=VALUE]...\n"
    "  sweep    run an experiment grid:   loco sweep SPEC [--quick] [--out DIR] [--jobs N] [--plan]\n"
    "  topo     the machine and the plan: loco topo [-c FILE] [--set KEY=VALUE]...\n"
    "  plot     pictures of runs (PNG):   loco plot RUN_DIR... [--x steps|time|updates] [--timeline] [--lr]\n"
    "  help     this text; 'loco help config' lists every config key\n"
    "\n"
    "'loco COMMAND --help' describes a command's options.\n";

static const char usage_train[] =
    "usage: loco train [-c FILE] [--set SECTION.KEY=VALUE]... [--out DIR] [--init MODEL]\n"
    "                  [--dry-run]\n"
    "       loco train --resume DIR\n"
    "\n"
    "Trains a model as the config says and writes, in DIR (default runs/NAME-DATE):\n"
    "metrics.jsonl (one JSON event per line), summary.json, config.ini (the resolved\n"
    "config) and model.bin. Without -c, the built-in default config is used.\n"
    "\n"
    "  -c, --config FILE   INI config (see configs/ and 'loco help config')\n"
    "  --set KEY=VALUE     override one key, e.g. --set train.lr=3e-4 (repeatable)\n"
    "  --out DIR           output directory\n"
    "  --init MODEL        start from a model file (loco's or an llm.c checkpoint); its\n"
    "                      shape replaces the config's model.layers/heads/dim/vocab\n"
    "  --dry-run           check everything a run checks (config, data, init file, memory),\n"
    "                      print the run, the threads' plan and the memory it needs, part\n"
    "                      by part, against what is available; write nothing\n"
    "  --resume DIR        continue the run in DIR from its last checkpoint (with its\n"
    "                      config.ini; appends to its metrics.jsonl)\n"
    "\n"
    "Before anything is written, the memory the run needs is compared with what this\n"
    "process may use (MemAvailable, and the cgroup's limit where there is one); a run that\n"
    "does not fit is refused with both figures, its biggest parts and what to lower.\n"
    "The run checkpoints every train.checkpoint_every into DIR/checkpoint.bin (keeping the\n"
    "one before as checkpoint.prev.bin). Ctrl-C (or SIGTERM) checkpoints, stops the run\n"
    "early and still writes the summary and the model. One process writes DIR at a time\n"
    "(DIR/lock); a second is refused. --resume of a finished run changes nothing.\n"
    "\n"
    "Exit codes: 0 finished, 1 failed or an error, 2 a bad command line or config,\n"
    "3 incomplete (every worker failed for good), 128 + the signal when stopped (130\n"
    "for Ctrl-C).\n";

static const char usage_eval[] =
    "usage: loco eval --model FILE --data PATH [--format text|llmc] [--batch B] [--threads N]\n"
    "\n"
    "Mean cross-entropy of the model over every consecutive, non-overlapping window of\n"
    "model.seq_len tokens of PATH (each predicting its next tokens), printed as one JSON\n"
    "line with loss, ppl, bpb (text only) and tokens. --format defaults to the model's\n"
    "training data format (text for llm.c checkpoints with vocabulary 256, else llmc).\n"
    "Windows are shared out over N threads (default: every core); the result does not\n"
    "depend on N.\n";

static const char usage_sample[] =
    "usage: loco sample --model FILE [--prompt TEXT] [--tokens N] [--seed S]\n"
    "                   [--temperature T]\n"
    "\n"
    "Generates N tokens (default 256) after the prompt and prints them; the model sees\n"
    "the last model.seq_len tokens at most. Temperature 0 picks the most likely token;\n"
    "the default is 0.8. Byte-level models only take a text prompt; models over other\n"
    "vocabularies print token ids.\n";

static const char usage_export[] =
    "usage: loco export --llmc MODEL OUT\n"
    "\n"
    "Writes MODEL (either format) as an llm.c fp32 checkpoint (version 3) that llm.c's\n"
    "train_gpt2.c can load.\n";

static const char usage_check[] =
    "usage: loco check FILE\n"
    "\n"
    "Reads a model file (loco's or llm.c's) completely, verifies its header, size and\n"
    "checksum, and prints its shape. Exits non-zero when the file is damaged.\n";

static const char usage_bench[] =
    "usage: loco bench step|apply|scale [-c FILE] [--set KEY=VALUE]...\n"
    "       loco bench soak [-c FILE] [--set KEY=VALUE]... [--seconds S] [--out DIR]\n"
    "\n"
    "step   times the full training step (forward, backward, AdamW) on one thread and, in\n"
    "       the same run, cblas_sgemm on the step's own matrix shapes; prints one JSON\n"
    "       line with tokens_per_s, step_gflops, sgemm_gflops and mfu_vs_sgemm.\n"
    "apply  the global buffer's push-add, pull and sweep bandwidth for 1..cores threads,\n"
    "       three stripe sizes and the three lock kinds, against memcpy and a STREAM-style\n"
    "       triad; the last line has push_gbs, triad_gbs and push_vs_triad.\n"
    "scale  aggregate training tokens/s for W = 1..cores workers (real clock, no slowdown),\n"
    "       worker time spent waiting, and the virtual clock's throughput on the same run;\n"
    "       the last line has efficiency = tokens/s at the most workers / (W x one worker).\n"
    "soak   16 workers on the real clock for S seconds (default 300) with jitter, speed\n"
    "       changes, failures and returns, poisoned and diverging rounds and a checkpoint\n"
    "       every 3 s; checks every checkpoint as it appears and the resident memory, that a\n"
    "       second 'train --resume' of the run is refused while it runs; then cuts the newest\n"
    "       checkpoint short and resumes for S/10 s (at least 3) from the one before; then\n"
    "       that every arrival was applied or rejected and is in metrics.jsonl once, theta is\n"
    "       finite and no thread is left; exits 1 when a check fails. Without -c the model\n"
    "       is 2 layers x 64 wide; the run is kept in DIR with --out, else removed.\n";

static int fail(const char *msg) {
    fprintf(stderr, "loco: %s\n", msg);
    return 1;
}

/* a bad command line: the message and where to read more */
static int fail_usage(const char *what, const char *cmd) {
    fprintf(stderr, "loco: %s\n(see 'loco %s --help')\n", what, cmd);
    return 2;
}

static int wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

/* A number for a flag: the whole string, within [min, max]. */
static int parse_long(const char *flag, const char *s, long min, long max, long *out,
                      loco_err *e) {
    long v;
    if (loco_parse_long(s, &v) != 0 || v < min || v > max)
        return loco_errf(e, "%s: expected an integer in [%ld, %ld], got '%s'", flag, min, max, s);
    *out = v;
    return 0;
}

static int parse_double(const char *flag, const char *s, double min, double max, double *out,
                        loco_err *e) {
    double v;
    if (loco_parse_double(s, &v) != 0 || !(v >= min && v <= max))
        return loco_errf(e, "%s: expected a number in [%g, %g], got '%s'", flag, min, max, s);
    *out = v;
    return 0;
}

/* The value after argv[*i], or NULL with a message. */
static const char *flag_value(int argc, char **argv, int *i, loco_err *e) {
    if (*i + 1 >= argc) {
        loco_errf(e, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* ------------------------------------------------------------- configs */

/* Options shared by train and bench: -c FILE, --set KEY=VALUE; others go to extra(). */
typedef struct {
    loco_config cfg;
    char name[LOCO_PATH_LEN];   /* the config's name, for run directories and reports */
} cli_config;

typedef int (*extra_flag)(void *ctx, int argc, char **argv, int *i, loco_err *e);

static int load_config(cli_config *cc, int argc, char **argv, extra_flag extra, void *ctx,
                       loco_err *e) {
    const char *file = NULL;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            if (!(file = flag_value(argc, argv, &i, e))) return -1;
        }
    loco_config_default(&cc->cfg);
    int rc = file ? loco_config_load_file(&cc->cfg, file, e)
                  : loco_config_load_string(&cc->cfg, loco_default_ini, loco_default_ini_name, e);
    if (rc != 0) return -1;
    char base[LOCO_PATH_LEN];
    snprintf(base, sizeof base, "%s", file ? file : loco_default_ini_name);
    snprintf(cc->name, sizeof cc->name, "%s", basename(base));
    char *dot = strrchr(cc->name, '.');
    if (dot) *dot = '\0';
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            i++;
        } else if (!strcmp(argv[i], "--set")) {
            const char *v = flag_value(argc, argv, &i, e);
            if (!v || loco_config_set(&cc->cfg, v, e) != 0) return -1;
        } else {
            int rc = loco_config_flag(&cc->cfg, argv[i], i + 1 < argc ? argv[i + 1] : NULL, e);
            if (rc < 0) return -1;
            if (rc == 0) {
                i++;
            } else if (!extra || extra(ctx, argc, argv, &i, e) != 0) {
                if (!extra || !e->msg[0]) loco_errf(e, "unknown option '%s'", argv[i]);
                return -1;
            }
        }
    }
    return loco_config_validate(&cc->cfg, e);
}

static int has_config_flag(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) return 1;
    return 0;
}

/* ---------------------------------------------------------------- train */

typedef struct {
    const char *out, *init, *resume;
    int dry_run;
} train_flags;

static int train_extra(void *ctx, int argc, char **argv, int *i, loco_err *e) {
    train_flags *f = ctx;
    e->msg[0] = '\0';
    if (!strcmp(argv[*i], "--dry-run")) return f->dry_run = 1, 0;
    if (!strcmp(argv[*i], "--out")) return (f->out = flag_value(argc, argv, i, e)) ? 0 : -1;
    if (!strcmp(argv[*i], "--init")) return (f->init = flag_value(argc, argv, i, e)) ? 0 : -1;
    return -1;
}

/* train --resume DIR: the run's own config.ini, and nothing else on the command line */
static int resume_config(cli_config *cc, int argc, char **argv, train_flags *f, loco_err *e) {
    if (argc != 2) return loco_errf(e, "--resume DIR takes nothing else (the run's config is DIR/config.ini)");
    f->resume = f->out = argv[1];
    char path[LOCO_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/config.ini", f->out);
    loco_config_default(&cc->cfg);
    snprintf(cc->name, sizeof cc->name, "resume");
    if (loco_config_load_file(&cc->cfg, path, e) != 0) return -1;
    return loco_config_validate(&cc->cfg, e);
}

static volatile sig_atomic_t stop_requested;

/* the signal's number: a stopped run's exit code is 128 + it */
static void on_interrupt(int sig) {
    stop_requested = sig;
}

static int cmd_train(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(usage_train, stdout);
        fputs("\nShorthands (also for bench and topo):\n", stdout);
        loco_config_flags_help(stdout);
        return 0;
    }
    cli_config cc;
    train_flags f = {0};
    loco_err e;
    int resume = argc >= 1 && !strcmp(argv[0], "--resume");
    if (resume ? resume_config(&cc, argc, argv, &f, &e) != 0
               : load_config(&cc, argc, argv, train_extra, &f, &e) != 0)
        return fail_usage(e.msg, "train");
    char out[LOCO_PATH_LEN];
    if (f.out) {
        snprintf(out, sizeof out, "%s", f.out);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(out, sizeof out, "runs/%.200s-%s", cc.name, stamp);
    }
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = out;
    o.init_path = f.init;
    o.resume = resume;
    o.stop = &stop_requested;
    o.dry_run = f.dry_run;
    if (f.dry_run) {
        if (loco_train(&cc.cfg, &o, &e) != 0) return fail(e.msg);
        fprintf(stderr, "loco: dry run: every check passed; nothing was written\n");
        return 0;
    }
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    loco_train_result res;
    o.result = &res;
    if (loco_train(&cc.cfg, &o, &e) != 0) return fail(e.msg);
    if (res.untouched) return 0;
    fprintf(stderr, "loco: wrote %s/{metrics.jsonl,summary.json,config.ini,model.bin}\n", out);
    return loco_run_exit_code(res.status, (int)stop_requested);
}

/* ------------------------------------------------------- model commands */

/* The training config stored in a loco model file (defaults for llm.c files). A stored
 * config that does not parse is an error: defaults in its place could give eval and
 * sample another model.seq_len than the model was trained with. */
static int model_config(const char *path, const loco_model_file *f, loco_config *c,
                        loco_err *e) {
    loco_config_default(c);
    loco_err why;
    if (f->config && loco_config_load_string(c, f->config, "config", &why) != 0)
        return loco_errf(e, "%s: the model's stored config does not parse: %s", path, why.msg);
    if (f->format == LOCO_FILE_LLMC) {
        c->model.seq_len = f->m.s.maxT;
        c->data.format = f->m.s.V == 256 ? LOCO_FORMAT_TEXT : LOCO_FORMAT_LLMC;
    }
    return 0;
}

/* A model file and the config it was trained with. */
static int read_model(const char *path, loco_model_file *mf, loco_config *c, loco_err *e) {
    if (loco_model_read(path, mf, e) != 0) return -1;
    if (model_config(path, mf, c, e) == 0) return 0;
    loco_model_file_free(mf);
    return -1;
}

typedef struct {
    const char *model, *data, *prompt;
    long format, batch, tokens, seed, threads;
    double temperature;
} model_flags;

static int is_one_of(const char *s, const char *const *names) {
    for (; *names; names++)
        if (!strcmp(s, *names)) return 1;
    return 0;
}

static int model_flag(model_flags *f, int argc, char **argv, int *i, loco_err *e) {
    static const char *const valued[] = {"--format", "--batch", "--threads", "--tokens",
                                         "--seed",   "--temperature", NULL};
    const char *a = argv[*i], *v;
    if (!strcmp(a, "--model")) return (f->model = flag_value(argc, argv, i, e)) ? 0 : -1;
    if (!strcmp(a, "--data")) return (f->data = flag_value(argc, argv, i, e)) ? 0 : -1;
    if (!strcmp(a, "--prompt")) return (f->prompt = flag_value(argc, argv, i, e)) ? 0 : -1;
    /* before taking a value, so a stray last word is not "missing its value" */
    if (!is_one_of(a, valued)) return loco_errf(e, "unknown option '%s'", a);
    if (!(v = flag_value(argc, argv, i, e))) return -1;
    if (!strcmp(a, "--format")) {
        if (!strcmp(v, "text")) return f->format = LOCO_FORMAT_TEXT, 0;
        if (!strcmp(v, "llmc")) return f->format = LOCO_FORMAT_LLMC, 0;
        return loco_errf(e, "--format: expected text or llmc, got '%s'", v);
    }
    if (!strcmp(a, "--batch")) return parse_long(a, v, 1, 4096, &f->batch, e);
    if (!strcmp(a, "--threads")) return parse_long(a, v, 1, 4096, &f->threads, e);
    if (!strcmp(a, "--tokens")) return parse_long(a, v, 0, 1L << 30, &f->tokens, e);
    if (!strcmp(a, "--seed")) return parse_long(a, v, 0, 1L << 62, &f->seed, e);
    return parse_double(a, v, 0, 100, &f->temperature, e);   /* --temperature */
}

static int parse_model_flags(model_flags *f, int argc, char **argv, loco_err *e) {
    *f = (model_flags){.format = -1, .batch = 8, .tokens = 256, .seed = 1, .temperature = 0.8,
                       .threads = sysconf(_SC_NPROCESSORS_ONLN)};
    for (int i = 0; i < argc; i++)
        if (model_flag(f, argc, argv, &i, e) != 0) return -1;
    if (!f->model) return loco_errf(e, "--model FILE is required");
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_eval, stdout), 0;
    model_flags f;
    loco_err e;
    if (parse_model_flags(&f, argc, argv, &e) != 0) return fail_usage(e.msg, "eval");
    if (!f.data) return fail_usage("--data PATH is required", "eval");
    loco_model_file mf;
    loco_config c;
    if (read_model(f.model, &mf, &c, &e) != 0) return fail(e.msg);
    int format = f.format >= 0 ? (int)f.format : c.data.format;
    int T = (int)c.model.seq_len < mf.m.s.maxT ? (int)c.model.seq_len : mf.m.s.maxT;
    loco_data d;
    int rc = 1;
    long tokens;
    if (loco_data_open(&d, f.data, format, mf.m.s.V, 1 << 16, 0, &e) != 0) goto out_model;
    double loss = loco_eval_file(&mf.m, mf.params, &d, (int)f.batch, T, (int)f.threads, &tokens, &e);
    if (isnan(loss)) goto out_data;
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "model", f.model);
    loco_json_str(&j, "data", f.data);
    loco_json_num(&j, "loss", loss);
    loco_json_num(&j, "ppl", exp(loss));
    loco_json_num(&j, "bpb", format == LOCO_FORMAT_TEXT ? loco_bits_per_byte(loss) : NAN);
    loco_json_int(&j, "tokens", tokens);
    loco_json_int(&j, "seq_len", T);
    puts(loco_json_end(&j));
    loco_json_free(&j);
    rc = 0;
out_data:
    loco_data_close(&d);
out_model:
    loco_model_file_free(&mf);
    return rc ? fail(e.msg) : 0;
}

static void emit_token(void *byte_level, int tok) {
    if (*(const int *)byte_level)
        putchar(tok);
    else
        printf("%d ", tok);
    fflush(stdout);
}

/* The prompt as tokens (bytes); other vocabularies and an empty prompt start from token 0. */
static int *prompt_tokens(const char *prompt, int byte_level, int *n) {
    *n = byte_level && *prompt ? (int)strlen(prompt) : 1;
    int *toks = malloc(sizeof(int) * (size_t)*n);
    for (int i = 0; toks && i < *n; i++) toks[i] = byte_level ? (unsigned char)prompt[i] : 0;
    return toks;
}

static int cmd_sample(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_sample, stdout), 0;
    model_flags f;
    loco_err e;
    if (parse_model_flags(&f, argc, argv, &e) != 0) return fail_usage(e.msg, "sample");
    loco_model_file mf;
    loco_config c;
    if (read_model(f.model, &mf, &c, &e) != 0) return fail(e.msg);
    int byte_level = mf.m.s.V == 256, n;
    if (f.prompt && !byte_level) {
        loco_model_file_free(&mf);
        return fail("--prompt needs a byte-level model (vocabulary 256); this one is not");
    }
    int *prompt = prompt_tokens(f.prompt ? f.prompt : "\n", byte_level, &n);
    if (f.prompt) fputs(f.prompt, stdout);
    /* positions past the trained sequence length were never trained (llm.c files
     * loaded with --init keep their 1024) */
    loco_sample_opts o = {.temperature = f.temperature, .seed = (uint64_t)f.seed,
                          .context = (int)c.model.seq_len, .emit = emit_token,
                          .emit_arg = &byte_level};
    int rc = prompt ? loco_sample_generate(&mf.m, mf.params, prompt, n, NULL, (int)f.tokens, &o, &e)
                    : loco_errf(&e, "out of memory");
    putchar('\n');
    free(prompt);
    loco_model_file_free(&mf);
    return rc ? fail(e.msg) : 0;
}

static int cmd_export(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_export, stdout), 0;
    if (argc != 3 || strcmp(argv[0], "--llmc"))
        return fail_usage("expected: export --llmc MODEL OUT", "export");
    loco_model_file mf;
    loco_err e;
    if (loco_model_read(argv[1], &mf, &e) != 0) return fail(e.msg);
    int rc = loco_model_write_llmc(argv[2], &mf.m, mf.params, &e);
    loco_model_file_free(&mf);
    if (rc != 0) return fail(e.msg);
    fprintf(stderr, "loco: wrote %s (llm.c checkpoint, version %d)\n", argv[2],
            LOCO_LLMC_MODEL_VERSION);
    return 0;
}

/* a file that starts with a checkpoint's magic */
static int is_checkpoint(const char *path) {
    FILE *f = fopen(path, "rb");
    uint64_t magic = 0;
    if (f && fread(&magic, sizeof magic, 1, f) != 1) magic = 0;
    if (f) fclose(f);
    return magic == LOCO_STATE_MAGIC;
}

static int cmd_check(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_check, stdout), 0;
    if (argc != 1) return fail_usage("expected: check FILE", "check");
    loco_model_file mf;
    loco_err e;
    if (is_checkpoint(argv[0])) {
        char what[2 * LOCO_ERR_LEN];
        if (loco_checkpoint_describe(argv[0], what, sizeof what, &e) != 0) return fail(e.msg);
        puts(what);
        return 0;
    }
    if (loco_model_read(argv[0], &mf, &e) != 0) return fail(e.msg);
    const loco_shape *s = &mf.m.s;
    printf("%s: %s model, %zu parameters, L=%d NH=%d C=%d V=%d Vp=%d maxT=%d%s\n", argv[0],
           mf.format == LOCO_FILE_LOCO ? "loco" : "llm.c", mf.m.ntrue, s->L, s->NH, s->C, s->V,
           s->Vp, s->maxT, mf.format == LOCO_FILE_LOCO ? ", checksum ok" : "");
    loco_model_file_free(&mf);
    return 0;
}

static int soak_extra(void *ctx, int argc, char **argv, int *i, loco_err *e) {
    loco_soak_opts *so = ctx;
    e->msg[0] = '\0';
    if (!strcmp(argv[*i], "--out")) return (so->out = flag_value(argc, argv, i, e)) ? 0 : -1;
    if (strcmp(argv[*i], "--seconds")) return -1;
    const char *v = flag_value(argc, argv, i, e);
    char *end;
    if (v) so->seconds = strtod(v, &end);
    if (!v || *end || !(so->seconds >= 1 && so->seconds <= 1e6))
        return v ? loco_errf(e, "--seconds: expected a number of seconds from 1 to 1e6, not '%s'", v) : -1;
    return 0;
}

static int cmd_soak(int argc, char **argv) {
    cli_config cc;
    loco_err e;
    loco_soak_opts so = {.seconds = 300};
    if (load_config(&cc, argc, argv, soak_extra, &so, &e) != 0) return fail_usage(e.msg, "bench");
    so.small_model = !has_config_flag(argc, argv);
    return loco_bench_soak(&cc.cfg, cc.name, &so, &e) != 0 ? fail(e.msg) : 0;
}

static int cmd_bench(int argc, char **argv) {
    if (argc < 1 || wants_help(argc, argv)) return fputs(usage_bench, stdout), argc < 1 ? 2 : 0;
    if (!strcmp(argv[0], "soak")) return cmd_soak(argc - 1, argv + 1);
    cli_config cc;
    loco_err e;
    struct {
        const char *name;
        int (*run)(const loco_config *, const char *, loco_err *);
    } benches[] = {{"step", loco_bench_step}, {"apply", loco_bench_apply},
                   {"scale", loco_bench_scale}};
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) {
        if (strcmp(argv[0], benches[i].name)) continue;
        if (load_config(&cc, argc - 1, argv + 1, NULL, NULL, &e) != 0)
            return fail_usage(e.msg, "bench");
        return benches[i].run(&cc.cfg, cc.name, &e) != 0 ? fail(e.msg) : 0;
    }
    return fail_usage("unknown benchmark", "bench");
}

static const char usage_topo[] =
    "usage: loco topo [-c FILE] [--set KEY=VALUE]... [--workers W] [--pin compact|scatter|none]\n"
    "\n"
    "Prints the run the config describes in one line, this machine as hwloc sees it\n"
    "(packages, NUMA nodes, cores, hardware threads, caches), where the run would pin its\n"
    "workers, server and evaluator, and the memory it would need, part by part (each\n"
    "worker's replica, gradients, AdamW moments, theta_start and delta, activations; the\n"
    "global buffer; the evaluator; the data), against what this process may use.\n";

/* the data file's size, 0 when it cannot be read (loco topo reports; train checks) */
static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int cmd_topo(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_topo, stdout), 0;
    cli_config cc;
    loco_err e;
    if (load_config(&cc, argc, argv, NULL, NULL, &e) != 0) return fail_usage(e.msg, "topo");
    loco_shape s = loco_shape_from_config(&cc.cfg);
    loco_model m;
    if (loco_model_init(&m, &s, &e) != 0) return fail(e.msg);
    uint64_t data = file_size(cc.cfg.data.path);
    return loco_memplan_report(stdout, &cc.cfg, &m, data, 0, &e) != 0 ? fail(e.msg) : 0;
}

static const char usage_sweep[] =
    "usage: loco sweep SPEC [--quick] [--out DIR] [--jobs N] [--plan]\n"
    "\n"
    "Runs the experiment SPEC describes (an INI file, see configs/paper-table1.ini): trains\n"
    "theta(0) once with one worker ([pretrain]), tunes the outer learning rate per variant\n"
    "and column on short runs ([tune]), then runs every cell of [grid] from theta(0), for\n"
    "every seed, and writes DIR/results.md, DIR/results.json and the plots. Every run has\n"
    "its own directory under DIR (default runs/sweep-NAME): a run that ended (finished,\n"
    "incomplete or failed) is skipped and a run cut short resumes from its checkpoint, so a\n"
    "sweep that was stopped goes on where it was when run again. Every run's config and\n"
    "data file is checked before the first run starts (a relative data.path is read from\n"
    "the current directory). One sweep at a time writes DIR: a second is refused.\n"
    "\n"
    "  --quick     apply the spec's [quick] section (a smaller version of the same sweep)\n"
    "  --out DIR   output directory\n"
    "  --jobs N    runs at once (default 1: each run already uses every worker thread)\n"
    "  --plan      check the spec and every run's config, list the runs and the local steps\n"
    "              they train, and stop: nothing is run or written\n"
    "Ctrl-C stops the sweep: running runs save what they did, no new run starts.\n"
    "\n"
    "Exit status: 0 when every run of the grid finished; 3 when the sweep completed but some\n"
    "of them ended incomplete or failed, crashed or were not run (the results list them,\n"
    "marked); 128 + the signal when stopped (130 for Ctrl-C); 1 on an error; 2 on a bad\n"
    "command line.\n";

static int cmd_sweep(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_sweep, stdout), 0;
    loco_sweep_opts o = {.jobs = 1, .stop = &stop_requested};
    loco_err e;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        long jobs = 1;
        if (!strcmp(a, "--quick")) {
            o.quick = 1;
        } else if (!strcmp(a, "--plan")) {
            o.plan = 1;
        } else if (!strcmp(a, "--out") || !strcmp(a, "--jobs")) {
            if (!(v = flag_value(argc, argv, &i, &e))) return fail_usage(e.msg, "sweep");
            if (a[2] == 'o') {
                o.out = v;
            } else if (parse_long(a, v, 1, 64, &jobs, &e) != 0) {
                return fail_usage(e.msg, "sweep");
            } else {
                o.jobs = (int)jobs;
            }
        } else if (a[0] == '-' || o.spec) {
            loco_errf(&e, a[0] == '-' ? "unknown option '%s'" : "one SPEC only, got '%s' too", a);
            return fail_usage(e.msg, "sweep");
        } else {
            o.spec = a;
        }
    }
    if (!o.spec) return fail_usage("expected: sweep SPEC", "sweep");
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = loco_sweep_run(&o, &e);
    if (rc < 0 && stop_requested) {
        fprintf(stderr, "loco: %s\n", e.msg);
        return loco_run_exit_code(LOCO_RUN_STOPPED, (int)stop_requested);
    }
    if (rc < 0) return fail(e.msg);
    return rc > 0 ? loco_run_exit_code(LOCO_RUN_INCOMPLETE, 0) : 0;
}

static const char usage_plot[] =
    "usage: loco plot RUN_DIR... [--x steps|time|updates] [--out FILE.png] [--title T]\n"
    "       loco plot --timeline RUN_DIR [--out FILE.png] [--title T]\n"
    "       loco plot --lr RUN_DIR [--out FILE.png] [--title T]\n"
    "\n"
    "Draws runs that train wrote, as PNG pictures made by gnuplot, and prints where.\n"
    "\n"
    "Curves (the default): validation perplexity of each run, labelled with its\n"
    "directory's name, against --x: steps (the default) = local steps summed over\n"
    "workers, at the marks of eval.every_local_steps when the run has them; time =\n"
    "time_s, virtual seconds on the virtual clock, wall seconds otherwise; updates =\n"
    "server updates. --out defaults to RUN_DIR/curve.png for one run, ./curves.png for\n"
    "several.\n"
    "\n"
    "--timeline: one asynchronous run, one row per worker: each round as bars (computing,\n"
    "emulated slowdown, waiting for the next round) and each arrival as a marker coloured\n"
    "by its staleness, rejected arrivals crossed; past 300 rounds, only the start of the\n"
    "run. --out defaults to RUN_DIR/timeline.png.\n"
    "\n"
    "--lr: one asynchronous run, the inner learning rate at the end of each worker's\n"
    "rounds against time, one line per worker: whether the workers anneal together\n"
    "(train.lr_progress). --out defaults to RUN_DIR/lr.png.\n";

typedef struct {
    const char **dirs;
    int ndirs, x, x_given;
    int timeline, lr;          /* one run's rounds: as a timeline, or their learning rates */
    const char *out, *title;
} plot_flags;

static int plot_flag(plot_flags *f, int argc, char **argv, int *i, loco_err *e) {
    const char *a = argv[*i], *v;
    if (!strcmp(a, "--timeline")) return f->timeline = 1, 0;
    if (!strcmp(a, "--lr")) return f->lr = 1, 0;
    if (a[0] != '-' || !a[1]) return f->dirs[f->ndirs++] = a, 0;
    if (strcmp(a, "--x") && strcmp(a, "--out") && strcmp(a, "--title"))
        return loco_errf(e, "unknown option '%s'", a);
    if (!(v = flag_value(argc, argv, i, e))) return -1;
    if (!strcmp(a, "--out")) return f->out = v, 0;
    if (!strcmp(a, "--title")) return f->title = v, 0;
    f->x_given = 1;
    if (loco_enum_value(loco_plot_axes, v, &f->x) == 0) return 0;
    char names[128];
    loco_enum_names(loco_plot_axes, "|", names, sizeof names);
    return loco_errf(e, "--x: expected %s, got '%s'", names, v);
}

/* f->dirs has room for argc entries; free it */
static int parse_plot_flags(plot_flags *f, int argc, char **argv, loco_err *e) {
    *f = (plot_flags){.dirs = calloc((size_t)argc + 1, sizeof *f->dirs), .x = LOCO_PLOT_STEPS};
    if (!f->dirs) return loco_errf(e, "out of memory");
    for (int i = 0; i < argc; i++)
        if (plot_flag(f, argc, argv, &i, e) != 0) return -1;
    if (f->ndirs == 0) return loco_errf(e, "expected at least one RUN_DIR");
    const char *one = f->timeline ? "--timeline" : f->lr ? "--lr" : NULL;
    if (f->timeline && f->lr) return loco_errf(e, "--timeline and --lr are two pictures: one at a time");
    if (one && f->ndirs != 1)
        return loco_errf(e, "%s draws one run; got %d run directories", one, f->ndirs);
    if (one && f->x_given) return loco_errf(e, "--x is for curves, not %s", one);
    return 0;
}

/* Reads each run; -1 with a message naming the one that cannot be read or drawn. */
static int read_runs(const plot_flags *f, loco_runlog *runs, loco_err *e) {
    for (int i = 0; i < f->ndirs; i++) {
        if (loco_runlog_read(f->dirs[i], &runs[i], e) != 0) return -1;
        if ((f->timeline || f->lr) && runs[i].nrounds == 0)
            return loco_errf(e, "%s: no arrivals in metrics.jsonl: %s needs an asynchronous "
                             "run", f->dirs[i], f->lr ? "--lr" : "a timeline");
        if (!f->timeline && !f->lr && runs[i].nevals == 0)
            return loco_errf(e, "%s: no evaluations in metrics.jsonl: nothing to draw a "
                             "curve from", f->dirs[i]);
    }
    return 0;
}

/* The curves of every run in one panel, each labelled with its directory's last name. */
static int draw_curves(const plot_flags *f, const loco_runlog *runs, const char *png,
                       loco_err *e) {
    loco_curve *c = calloc((size_t)f->ndirs, sizeof *c);
    char(*labels)[256] = calloc((size_t)f->ndirs, sizeof *labels);
    int rc = c && labels ? 0 : loco_errf(e, "out of memory");
    for (int i = 0; rc == 0 && i < f->ndirs; i++) {
        char dir[LOCO_PATH_LEN];
        snprintf(dir, sizeof dir, "%s", f->dirs[i]);
        snprintf(labels[i], sizeof labels[i], "%s", basename(dir));
        c[i] = (loco_curve){.run = &runs[i], .label = labels[i]};
    }
    if (rc == 0) rc = loco_plot_curves(c, f->ndirs, f->x, f->title, 1000, 600, png, e);
    free(c);
    free(labels);
    return rc;
}

static int draw_timeline(const plot_flags *f, const loco_runlog *run, const char *png,
                         loco_err *e) {
    int workers = run->workers > 1 ? run->workers : 1;
    int height = 200 + 40 * workers;
    height = height < 400 ? 400 : height > 1600 ? 1600 : height;
    return loco_plot_timeline(run, f->title, 1200, height, png, e);
}

static int cmd_plot(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(usage_plot, stdout), 0;
    plot_flags f;
    loco_err e;
    if (parse_plot_flags(&f, argc, argv, &e) != 0) {
        free(f.dirs);
        return fail_usage(e.msg, "plot");
    }
    char png[LOCO_PATH_LEN];
    if (f.out) snprintf(png, sizeof png, "%s", f.out);
    else if (f.ndirs > 1) snprintf(png, sizeof png, "curves.png");
    else snprintf(png, sizeof png, "%s/%s", f.dirs[0],
                  f.timeline ? "timeline.png" : f.lr ? "lr.png" : "curve.png");
    loco_runlog *runs = calloc((size_t)f.ndirs, sizeof *runs);
    int rc = runs ? read_runs(&f, runs, &e) : loco_errf(&e, "out of memory");
    if (rc == 0)
        rc = f.timeline ? draw_timeline(&f, runs, png, &e)
             : f.lr     ? loco_plot_lr(runs, f.title, 1000, 500, png, &e)
                        : draw_curves(&f, runs, png, &e);
    for (int i = 0; runs && i < f.ndirs; i++) loco_runlog_free(&runs[i]);
    free(runs);
    free(f.dirs);
    if (rc != 0) return fail(e.msg);
    fprintf(stderr, "loco: wrote %s\n", png);
    return 0;
}

static int cmd_help(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "config")) {
        loco_config_help(stdout);
        return 0;
    }
    fputs(usage_main, stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return fputs(usage_main, stderr), 2;
    const char *cmd = argv[1];
    struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {{"train", cmd_train},   {"eval", cmd_eval},   {"sample", cmd_sample},
                {"export", cmd_export}, {"check", cmd_check}, {"bench", cmd_bench},
                {"topo", cmd_topo},     {"plot", cmd_plot},   {"sweep", cmd_sweep},
                {"help", cmd_help}};
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) return cmd_help(0, NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name)) return cmds[i].run(argc - 2, argv + 2);
    fprintf(stderr, "loco: unknown command '%s'\n\n%s", cmd, usage_main);
    return 2;
}
