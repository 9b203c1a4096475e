#include "loco/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/adamw.h"
#include "loco/clock.h"
#include "loco/data.h"
#include "loco/globalbuf.h"
#include "loco/hetero.h"
#include "loco/mm.h"
#include "loco/outer.h"
#include "loco/topo.h"

/* Loading goes through libinih, whose options are process globals: load configs from one
 * thread (at start-up). A load either applies the whole file or leaves c untouched. */

typedef enum { T_INT, T_REAL, T_STRING, T_CHOICE } key_type;

/* One key. Bounds: imin/imax for int (and the length of a string), rmin/rmax for real
 * (rmax excluded when open_max), the owner's names and values for a choice. */
typedef struct {
    const char *section, *name;
    key_type type;
    size_t offset;
    const char *def;
    long imin, imax;
    double rmin, rmax;
    int open_max;
    const loco_enum *choices;
    const char *help;
} key;

static const loco_enum onoff[] = {{"off", 0, NULL}, {"on", 1, NULL}, {NULL, 0, NULL}};

#define P40 (1L << 40)

/* Sections are contiguous so the writer emits each [section] once. */
static const key table[] = {
    {"run", "seed", T_INT, offsetof(loco_config, run.seed), "1", .imin = 0, .imax = 1L << 62,
     .help = "seed for initial weights and data order: same seed, same run"},
    {"run", "workers", T_INT, offsetof(loco_config, run.workers), "1", .imin = 1, .imax = 1024,
     .help = "worker threads, each training its own replica"},
    {"run", "clock", T_CHOICE, offsetof(loco_config, run.clock), "real", .choices = loco_clock_kinds,
     .help = "real: wall-clock; virtual: simulated time, bit-for-bit reproducible"},
    {"run", "pin", T_CHOICE, offsetof(loco_config, run.pin), "compact",
     .choices = loco_pin_kinds, .help = "pin threads to cores: fill in order, spread, or not"},
    {"run", "virtual_step_s", T_REAL, offsetof(loco_config, run.virtual_step_s), "1", .rmin = 1e-6,
     .rmax = 1e6, .help = "virtual clock: seconds per inner step of a worker with slowdown 1"},
    {"model", "layers", T_INT, offsetof(loco_config, model.layers), "4", .imin = 1, .imax = 256,
     .help = "transformer blocks (L)"},
    {"model", "heads", T_INT, offsetof(loco_config, model.heads), "4", .imin = 1, .imax = 256,
     .help = "attention heads per block (NH); must divide model.dim"},
    {"model", "dim", T_INT, offsetof(loco_config, model.dim), "256", .imin = 1, .imax = 65536,
     .help = "width of the residual stream (C)"},
    {"model", "seq_len", T_INT, offsetof(loco_config, model.seq_len), "128", .imin = 1,
     .imax = 65536, .help = "context length in tokens (T)"},
    {"model", "vocab", T_INT, offsetof(loco_config, model.vocab), "256", .imin = 2,
     .imax = 65536, .help = "vocabulary size (V); at least 256 for text, whose tokens are bytes"},
    {"model", "precision", T_CHOICE, offsetof(loco_config, model.precision), "fp32",
     .choices = loco_precision_names,
     .help = "matrix products: fp32 (OpenBLAS); bf16 (oneDNN, bf16 inputs, fp32 accumulation, "
             "needs AVX512-BF16 or AMX); auto: bf16 where the CPU has it"},
    {"data", "path", T_STRING, offsetof(loco_config, data.path), "data/corpus.txt", .imin = 1,
     .imax = LOCO_PATH_LEN - 1, .help = "corpus file to train on"},
    {"data", "format", T_CHOICE, offsetof(loco_config, data.format), "text",
     .choices = loco_data_formats, .help = "text: one token per byte; llmc: llm.c uint16 token shard"},
    {"data", "block", T_INT, offsetof(loco_config, data.block), "65536", .imin = 1, .imax = P40,
     .help = "tokens per block when splitting the corpus into train and validation"},
    {"data", "val_every", T_INT, offsetof(loco_config, data.val_every), "20", .imin = 2,
     .imax = 1000000, .help = "every val_every-th block is validation, the rest is training"},
    {"data", "first_stream", T_INT, offsetof(loco_config, data.first_stream), "0", .imin = 0,
     .imax = 1L << 40, .help = "worker k draws its batches from data stream first_stream + k "
                               "(a sweep's pre-training uses 2^20: not a worker's)"},
    {"train", "batch", T_INT, offsetof(loco_config, train.batch), "8", .imin = 1, .imax = 65536,
     .help = "sequences per batch (B)"},
    {"train", "steps", T_INT, offsetof(loco_config, train.steps), "1000", .imin = 1, .imax = P40,
     .help = "optimizer steps to train for"},
    {"train", "warmup", T_INT, offsetof(loco_config, train.warmup), "100", .imin = 0, .imax = P40,
     .help = "steps of linear learning-rate warmup (may exceed train.steps)"},
    {"train", "lr", T_REAL, offsetof(loco_config, train.lr), "1e-3", .rmin = 0, .rmax = 10,
     .help = "peak learning rate, reached at the end of warmup"},
    {"train", "lr_min", T_REAL, offsetof(loco_config, train.lr_min), "1e-4", .rmin = 0,
     .rmax = 10, .help = "learning rate at the end of the decay; at most train.lr"},
    {"train", "weight_decay", T_REAL, offsetof(loco_config, train.weight_decay), "0.1",
     .rmin = 0, .rmax = 10, .help = "AdamW decoupled weight decay"},
    {"train", "lr_progress", T_CHOICE, offsetof(loco_config, train.lr_progress), "run",
     .choices = loco_lr_progress_names,
     .help = "async workers' inner schedule follows: run = the run's progress (all reach "
             "lr_min at its end), worker = each one's own steps (the old default)"},
    {"train", "grad_clip", T_REAL, offsetof(loco_config, train.grad_clip), "1.0", .rmin = 0,
     .rmax = 1e9, .help = "clip the global gradient norm to this; 0 = no clipping"},
    {"train", "beta1", T_REAL, offsetof(loco_config, train.beta1), "0.9", .rmin = 0, .rmax = 1,
     .open_max = 1, .help = "AdamW decay of the first moment (mean of gradients)"},
    {"train", "beta2", T_REAL, offsetof(loco_config, train.beta2), "0.95", .rmin = 0, .rmax = 1,
     .open_max = 1, .help = "AdamW decay of the second moment (mean of squared gradients)"},
    {"train", "eps", T_REAL, offsetof(loco_config, train.eps), "1e-8", .rmin = 0, .rmax = 1,
     .help = "AdamW epsilon added to the denominator"},
    {"train", "checkpoint_every", T_STRING, offsetof(loco_config, train.checkpoint_every), "10m",
     .imin = 1, .imax = 31,
     .help = "checkpoint every N server updates (single: steps), or every Ns, Nm, Nh; 0 = only "
             "when stopped"},
    {"eval", "every", T_INT, offsetof(loco_config, eval.every), "100", .imin = 0, .imax = P40,
     .help = "evaluate validation loss every this many steps; 0 = only at the end"},
    {"eval", "batches", T_INT, offsetof(loco_config, eval.batches), "8", .imin = 1,
     .imax = 1000000, .help = "validation batches per evaluation"},
    {"eval", "final_batches", T_INT, offsetof(loco_config, eval.final_batches), "0", .imin = 0,
     .imax = 1000000, .help = "validation batches of the final figure (summary.json, with its "
     "standard error); 0 = eval.batches"},
    {"eval", "set", T_CHOICE, offsetof(loco_config, eval.set), "all", .choices = loco_val_sets,
     .help = "validation windows evaluated: all, the even-numbered (report) or the odd-numbered "
     "(tune: a sweep's tuning runs)"},
    {"eval", "every_updates", T_INT, offsetof(loco_config, eval.every_updates), "16", .imin = 0,
     .imax = P40, .help = "asynchronous runs: evaluate every this many server updates (arrivals)"},
    {"eval", "every_local_steps", T_INT, offsetof(loco_config, eval.every_local_steps), "0",
     .imin = 0, .imax = P40,
     .help = "evaluate each time the local steps summed over workers pass a multiple of this "
             "(the same x for every method; 0 = off)"},
    {"outer", "method", T_CHOICE, offsetof(loco_config, outer.method), "single",
     .choices = loco_outer_methods,
     .help = "outer method; single = plain training of one worker with a workers-times batch"},
    {"outer", "lr", T_REAL, offsetof(loco_config, outer.lr), "0.7", .rmin = 0, .rmax = 100,
     .help = "outer learning rate (epsilon)"},
    {"outer", "momentum", T_REAL, offsetof(loco_config, outer.momentum), "0.9", .rmin = 0,
     .rmax = 1, .open_max = 1, .help = "outer Nesterov momentum (beta)"},
    {"outer", "local_steps", T_INT, offsetof(loco_config, outer.local_steps), "50", .imin = 1,
     .imax = 1000000, .help = "H: inner steps per round (the fastest worker's, under DyLU)"},
    {"outer", "dylu", T_CHOICE, offsetof(loco_config, outer.dylu), "off", .choices = onoff,
     .help = "Dynamic Local Updates: slower workers run proportionally fewer steps"},
    {"outer", "dn_period", T_INT, offsetof(loco_config, outer.dn_period), "0", .imin = 0,
     .imax = 1000000, .help = "N of Delayed Nesterov and of async-buffer; 0 = run.workers"},
    {"outer", "dn_c", T_REAL, offsetof(loco_config, outer.dn_c), "0", .rmin = 0, .rmax = 1,
     .help = "Delayed Nesterov momentum activation c, in [0, 1/N]"},
    {"outer", "grace_s", T_REAL, offsetof(loco_config, outer.grace_s), "0", .rmin = 0,
     .rmax = 1e9, .help = "grace period: arrivals this close after the first restart together"},
    {"outer", "grace_close", T_CHOICE, offsetof(loco_config, outer.grace_close), "all",
     .choices = loco_grace_close_names, .help = "a grace window closes when every live worker "
     "has joined it or at the deadline (all), or always at the deadline (deadline)"},
    {"outer", "staleness", T_CHOICE, offsetof(loco_config, outer.staleness), "none",
     .choices = loco_stale_modes, .help = "staleness treatment of pseudo-gradients"},
    {"outer", "stale_max", T_INT, offsetof(loco_config, outer.stale_max), "10", .imin = 0,
     .imax = 1000000, .help = "polythres: arrivals staler than this are dropped"},
    {"outer", "delay_comp", T_REAL, offsetof(loco_config, outer.delay_comp), "0", .rmin = 0,
     .rmax = 1e6, .help = "delay compensation lambda; 0 = off"},
    {"outer", "total_local_steps", T_INT, offsetof(loco_config, outer.total_local_steps), "0",
     .imin = 0, .imax = P40, .help = "run length in inner steps summed over workers; 0 = workers x train.steps"},
    {"outer", "max_delta_norm", T_REAL, offsetof(loco_config, outer.max_delta_norm), "0",
     .rmin = 0, .rmax = 1e30, .help = "reject a pushed delta whose L2 norm is larger; 0 = off"},
    {"outer", "sync_timeout_s", T_REAL, offsetof(loco_config, outer.sync_timeout_s), "0",
     .rmin = 0, .rmax = 1e9,
     .help = "sync: a round steps on the arrivals it has after this long; 0 = waits for every "
             "live worker"},
    {"hetero", "level", T_CHOICE, offsetof(loco_config, hetero.level), "no",
     .choices = loco_hetero_levels, .help = "worker heterogeneity level (docs/method.md)"},
    {"hetero", "slowdown", T_STRING, offsetof(loco_config, hetero.slowdown), "", .imin = 0,
     .imax = LOCO_LIST_LEN - 1, .help = "explicit per-worker slowdowns, e.g. 1,1.3,2,3 (overrides level)"},
    {"hetero", "jitter", T_REAL, offsetof(loco_config, hetero.jitter), "0", .rmin = 0, .rmax = 10,
     .help = "per-step log-normal noise on step times (sigma); 0 = none"},
    {"hetero", "mode", T_CHOICE, offsetof(loco_config, hetero.mode), "sleep",
     .choices = loco_slowdown_modes, .help = "real clock: emulate slowdown by sleeping or by spinning"},
    {"hetero", "speed_change", T_STRING, offsetof(loco_config, hetero.speed_change), "",
     .imin = 0, .imax = LOCO_LIST_LEN - 1,
     .help = "W@T:F,...: worker W's slowdown becomes F at time T seconds"},
    {"buffer", "stripe_kib", T_INT, offsetof(loco_config, buffer.stripe_kib), "64", .imin = 1,
     .imax = 1 << 20, .help = "stripe size of the global parameter buffer, KiB"},
    {"buffer", "lock", T_CHOICE, offsetof(loco_config, buffer.lock), "ticket",
     .choices = loco_lock_kinds, .help = "how an operation waits its turn on a stripe"},
    {"faults", "fail", T_STRING, offsetof(loco_config, faults.fail), "", .imin = 0,
     .imax = LOCO_LIST_LEN - 1,
     .help = "W@T+D,...: worker W is gone from time T for D seconds (its round is lost); W@T: "
             "for good"},
    {"faults", "inject_nan", T_STRING, offsetof(loco_config, faults.inject_nan), "", .imin = 0,
     .imax = LOCO_LIST_LEN - 1, .help = "W@R,...: worker W's round R sends a delta with a NaN"},
    {"faults", "inject_diverge", T_STRING, offsetof(loco_config, faults.inject_diverge), "",
     .imin = 0, .imax = LOCO_LIST_LEN - 1,
     .help = "W@R,...: worker W's round R runs at a learning rate 1e4 times too high"},
};

enum { NKEYS = sizeof table / sizeof table[0] };
_Static_assert(NKEYS <= LOCO_CONFIG_MAX_KEYS, "raise LOCO_CONFIG_MAX_KEYS in config.h");
_Static_assert(sizeof(long) == 8, "integer keys need a 64-bit long");

enum {
    SRC_DEFAULT = 0,
    SRC_SET = 1,
    SRC_FILE0 = 2,
    LINE_MAX_CHARS = INI_MAX_LINE - 3, /* inih splits longer lines (room for \r\n\0) */
    MAX_FILE_BYTES = 1 << 20,
    VALUE_LEN = LOCO_PATH_LEN + 64,
    RANGE_LEN = 96,
};

/* ---- the table ---- */

static void *field(loco_config *c, const key *k) {
    return (char *)c + k->offset;
}

static const void *cfield(const loco_config *c, const key *k) {
    return (const char *)c + k->offset;
}

static int find_key(const char *section, const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(table[i].section, section) && !strcmp(table[i].name, name)) return i;
    return -1;
}

static int section_known(const char *section) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(table[i].section, section)) return 1;
    return 0;
}

/* "model.dim" -> its index; the name comes from our own code, so a miss is a bug. */
static int key_named(const char *full) {
    for (int i = 0; i < NKEYS; i++) {
        size_t n = strlen(table[i].section);
        if (!strncmp(full, table[i].section, n) && full[n] == '.' &&
            !strcmp(full + n + 1, table[i].name))
            return i;
    }
    loco_check_failed(__FILE__, __LINE__, "key in table", "config key '%s' is not in the table",
                      full);
}

/* ---- values: text to field ---- */

/* Longest value: the table's limit, or less so that "name = value" fits on one line. */
static long string_max(const key *k) {
    long max = LINE_MAX_CHARS - (long)strlen(k->name) - 3;
    return k->imax < max ? k->imax : max;
}

/* Big powers of two read better as 2^n in ranges. */
static void format_bound(long v, char *buf, size_t n) {
    if (v >= (1L << 20) && (v & (v - 1)) == 0)
        snprintf(buf, n, "2^%d", __builtin_ctzl((unsigned long)v));
    else
        snprintf(buf, n, "%ld", v);
}

static void format_range(const key *k, char *buf, size_t n) {
    char lo[24], hi[24];
    switch (k->type) {
    case T_INT:
        format_bound(k->imin, lo, sizeof lo);
        format_bound(k->imax, hi, sizeof hi);
        snprintf(buf, n, "[%s, %s]", lo, hi);
        break;
    case T_REAL:
        snprintf(buf, n, "[%g, %g%s", k->rmin, k->rmax, k->open_max ? ")" : "]");
        break;
    case T_STRING:
        snprintf(buf, n, "%ld..%ld chars", k->imin, string_max(k));
        break;
    case T_CHOICE:
        loco_enum_names(k->choices, "|", buf, n);
        break;
    }
}

static int out_of_range(const key *k, const char *v, loco_err *e) {
    char range[RANGE_LEN];
    format_range(k, range, sizeof range);
    return loco_errf(e, "%s.%s: %s is out of range %s", k->section, k->name, v, range);
}

static int parse_int(const key *k, const char *v, long *out, loco_err *e) {
    long x;
    int rc = loco_parse_long(v, &x);
    if (rc == LOCO_PARSE_BAD)
        return loco_errf(e, "%s.%s: expected an integer, got '%s'", k->section, k->name, v);
    if (rc != 0 || x < k->imin || x > k->imax) return out_of_range(k, v, e);
    *out = x;
    return 0;
}

static int parse_real(const key *k, const char *v, double *out, loco_err *e) {
    double x;
    int rc = loco_parse_double(v, &x);
    if (rc == LOCO_PARSE_BAD)
        return loco_errf(e, "%s.%s: expected a real number, got '%s'", k->section, k->name, v);
    if (rc == LOCO_PARSE_RANGE)
        return loco_errf(e, "%s.%s: expected a finite number, got '%s'", k->section, k->name, v);
    /* below DBL_MIN in magnitude: loco's threads count such a number as zero (flush-to-zero,
     * cpu.h), and so would the range check below */
    if (rc == LOCO_PARSE_TINY)
        return loco_errf(e, "%s.%s: '%s' is too small to compute with (magnitude below "
                         "2.2e-308); write 0", k->section, k->name, v);
    if (x < k->rmin || x > k->rmax || (k->open_max && x == k->rmax))
        return out_of_range(k, v, e);
    *out = x;
    return 0;
}

/* A string must come back unchanged from a written config file: inih strips whitespace
 * at the ends and cuts at " ;" (comment), lines end at control characters, and a line
 * longer than LINE_MAX_CHARS is split. */
static int string_char_ok(const char *v, long i, long len) {
    unsigned char ch = (unsigned char)v[i];
    if (iscntrl(ch)) return 0;
    if ((i == 0 || i == len - 1) && isspace(ch)) return 0;
    /* the writer puts a space before the value, so a ';' first would start a comment */
    return !(ch == ';' && (i == 0 || isspace((unsigned char)v[i - 1])));
}

static int check_string(const key *k, const char *v, loco_err *e) {
    long len = (long)strlen(v), max = string_max(k);
    if (len < k->imin || len > max)
        return loco_errf(e, "%s.%s: value is %ld characters, allowed %ld..%ld", k->section,
                         k->name, len, k->imin, max);
    for (long i = 0; i < len; i++)
        if (!string_char_ok(v, i, len))
            return loco_errf(e, "%s.%s: '%s' has a control character, a space at an end or"
                             " ' ;' (would not read back from a config file)", k->section,
                             k->name, v);
    return 0;
}

static int parse_string(const key *k, const char *v, char *out, loco_err *e) {
    if (check_string(k, v, e) != 0) return -1;
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

static int parse_choice(const key *k, const char *v, int *out, loco_err *e) {
    if (loco_enum_value(k->choices, v, out) == 0) return 0;
    char names[RANGE_LEN];
    loco_enum_names(k->choices, "|", names, sizeof names);
    return loco_errf(e, "%s.%s: expected one of %s, got '%s'", k->section, k->name, names, v);
}

/* Parses v into key i of c and records where it came from; c is unchanged on error.
 * The message names the key but not the place: callers prefix that. */
static int apply(loco_config *c, int i, const char *v, int src, int line, loco_err *e) {
    const key *k = &table[i];
    int rc = -1;
    switch (k->type) {
    case T_INT: rc = parse_int(k, v, field(c, k), e); break;
    case T_REAL: rc = parse_real(k, v, field(c, k), e); break;
    case T_STRING: rc = parse_string(k, v, field(c, k), e); break;
    case T_CHOICE: rc = parse_choice(k, v, field(c, k), e); break;
    }
    if (rc != 0) return -1;
    c->origin.src[i] = (unsigned char)src;
    c->origin.line[i] = line;
    return 0;
}

/* Index of section.name, or -1 with the message for an unknown one. */
static int lookup(const char *section, const char *name, loco_err *e) {
    if (!*section) return loco_errf(e, "key '%s' is outside any [section]", name);
    if (!section_known(section))
        return loco_errf(e, "unknown section [%s] (see 'loco help config')", section);
    int i = find_key(section, name);
    if (i < 0)
        return loco_errf(e, "unknown key '%s' in section [%s] (see 'loco help config')", name,
                         section);
    return i;
}

/* ---- values: field to text ---- */

/* Shortest text that reads back to exactly x: as exact as %.17g, easier to read. */
static void format_real(double x, char *buf, size_t n) {
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, x);
        if (strtod(buf, NULL) == x) return;
    }
}

/* The name of a choice value; one set directly in the struct may have none ("?", which
 * then does not read back). */
static const char *choice_text(const key *k, int v) {
    for (const loco_enum *t = k->choices; t->name; t++)
        if (t->value == v) return t->name;
    return "?";
}

static void format_value(const loco_config *c, const key *k, char *buf, size_t n) {
    switch (k->type) {
    case T_INT: snprintf(buf, n, "%ld", *(const long *)cfield(c, k)); break;
    case T_REAL: format_real(*(const double *)cfield(c, k), buf, n); break;
    case T_STRING: snprintf(buf, n, "%s", (const char *)cfield(c, k)); break;
    case T_CHOICE: snprintf(buf, n, "%s", choice_text(k, *(const int *)cfield(c, k))); break;
    }
}

static void format_origin(const loco_config *c, int i, char *buf, size_t n) {
    int src = c->origin.src[i];
    if (src == SRC_DEFAULT)
        snprintf(buf, n, "default");
    else if (src == SRC_SET)
        snprintf(buf, n, "--set");
    else
        snprintf(buf, n, "%s:%d", c->origin.files[src - SRC_FILE0], c->origin.line[i]);
}

/* "model.dim = 100 (configs/x.ini:6)" for messages about relations between keys. */
static const char *describe(const loco_config *c, const char *full, char *buf, size_t n) {
    int i = key_named(full);
    char value[VALUE_LEN], origin[LOCO_PATH_LEN + 16];
    format_value(c, &table[i], value, sizeof value);
    format_origin(c, i, origin, sizeof origin);
    snprintf(buf, n, "%s = %.200s (%.250s)", full, value, origin);
    return buf;
}

/* ---- defaults and --set ---- */

void loco_config_default(loco_config *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NKEYS; i++) {
        loco_err e;
        if (apply(c, i, table[i].def, SRC_DEFAULT, 0, &e) != 0) {
            /* the table contradicts itself: a programmer error */
            loco_check_failed(__FILE__, __LINE__, "default applies", "bad default: %s", e.msg);
        }
    }
}

/* ---- command-line shorthands ---- */

/* Each flag stands for one key; append: the value is added to a list, not put in its place. */
static const struct {
    const char *flag, *key;
    int append;
} shorthands[] = {
    {"--workers", "run.workers", 0},         {"--clock", "run.clock", 0},
    {"--pin", "run.pin", 0},                 {"--method", "outer.method", 0},
    {"--hetero", "hetero.level", 0},         {"--slowdown", "hetero.slowdown", 0},
    {"--jitter", "hetero.jitter", 0},        {"--speed-change", "hetero.speed_change", 1},
    {"--slowdown-mode", "hetero.mode", 0},   {"--fail", "faults.fail", 1},
    {"--inject-nan", "faults.inject_nan", 1}, {"--inject-diverge", "faults.inject_diverge", 1},
    {"--precision", "model.precision", 0},
};

int loco_config_flag(loco_config *c, const char *flag, const char *value, loco_err *e) {
    for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++) {
        if (strcmp(flag, shorthands[i].flag) != 0) continue;
        if (!value) return loco_errf(e, "%s needs a value", flag);
        int k = key_named(shorthands[i].key);
        char v[VALUE_LEN + LOCO_LIST_LEN];
        const char *old = table[k].type == T_STRING ? (const char *)cfield(c, &table[k]) : "";
        if (shorthands[i].append && old[0])
            snprintf(v, sizeof v, "%s,%s", old, value);
        else
            snprintf(v, sizeof v, "%s", value);
        loco_err why;
        if (apply(c, k, v, SRC_SET, 0, &why) != 0)
            return loco_errf(e, "%s %s: %s", flag, value, why.msg);
        return 0;
    }
    return 1;
}

void loco_config_flags_help(FILE *f) {
    for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++)
        fprintf(f, "  %-18s = --set %s=VALUE%s\n", shorthands[i].flag, shorthands[i].key,
                shorthands[i].append ? " (repeatable: adds to the list)" : "");
}

/* Copies s[0..n) into out without the whitespace at its ends, as inih does for a line. */
static void trim_copy(const char *s, size_t n, char *out) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    memcpy(out, s, n);
    out[n] = '\0';
}

int loco_config_set(loco_config *c, const char *assignment, loco_err *e) {
    char name[VALUE_LEN], value[VALUE_LEN], *dot;
    const char *eq = strchr(assignment, '=');
    if (strlen(assignment) >= VALUE_LEN)
        return loco_errf(e, "--set %.40s...: longer than %d characters", assignment,
                         VALUE_LEN - 1);
    if (eq) trim_copy(assignment, (size_t)(eq - assignment), name);
    if (!eq || !(dot = strchr(name, '.')) || dot == name || !dot[1])
        return loco_errf(e, "--set %s: expected section.key=value, e.g. --set train.lr=3e-4",
                         assignment);
    trim_copy(eq + 1, strlen(eq + 1), value);
    *dot = '\0';
    loco_err why;
    int i = lookup(name, dot + 1, &why);
    if (i < 0 || apply(c, i, value, SRC_SET, 0, &why) != 0)
        return loco_errf(e, "--set %s: %s", assignment, why.msg);
    return 0;
}

/* ---- reading INI text ---- */

/* State of one read, shared by the line reader and inih's handler. Our reader counts
 * lines, because this inih build does not pass the line number to the handler. */
typedef struct {
    const char *name;            /* the file, for messages */
    const char *text;            /* next unread line */
    int line;                    /* line the reader returned last */
    int section_line;            /* line of the last [section] header */
    int long_line;               /* first line too long for inih, 0 if none */
    int err_line;                /* first handler error: inih's line */
    loco_err err;                /* its message, with the line to report */
    loco_ini_handler handler;
    void *ctx;
} read_state;

/* fgets-like reader over the text; stops at a line inih would split in two. */
static char *read_line(char *buf, int num, void *stream) {
    read_state *s = stream;
    if (!*s->text || s->long_line) return NULL;
    size_t len = strcspn(s->text, "\n");
    size_t chars = len;
    if (chars && s->text[chars - 1] == '\r') chars--;
    if (s->text[len] == '\n') len++;
    s->line++;
    if (chars > LINE_MAX_CHARS || len + 1 > (size_t)num) {
        s->long_line = s->line;
        return NULL;
    }
    memcpy(buf, s->text, len);
    buf[len] = '\0';
    s->text += len;
    const char *p = buf + strspn(buf, " \t");
    if (*p == '[') s->section_line = s->line;
    return buf;
}

static int on_entry(void *user, const char *section, const char *name, const char *value) {
    read_state *s = user;
    loco_err e;
    int line = s->line;
    if (s->handler(s->ctx, section, name, value, &line, s->section_line, &e) == 0) return 1;
    if (!s->err_line) {
        s->err_line = s->line;
        loco_errf(&s->err, "%s:%d: %s", s->name, line, e.msg);
    }
    return 0;
}

/* Turns inih's result (0, line of the first error, or < 0) into our message. */
static int finish(const read_state *s, int ret, loco_err *e) {
    if (ret > 0 && ret == s->err_line) return loco_errf(e, "%s", s->err.msg);
    if (ret > 0)
        return loco_errf(e, "%s:%d: syntax error (expected [section] or key = value)", s->name,
                         ret);
    if (ret < 0) return loco_errf(e, "%s: the INI parser failed (%d)", s->name, ret);
    if (s->long_line)
        return loco_errf(e, "%s:%d: line is longer than %d characters", s->name, s->long_line,
                         LINE_MAX_CHARS);
    return 0;
}

int loco_ini_parse(const char *text, const char *name, loco_ini_handler h, void *ctx,
                   loco_err *e) {
    read_state s = {.name = name, .text = text, .handler = h, .ctx = ctx};
    ini_allow_multiline = false; /* an indented line continuing a value is a surprise */
    ini_allow_no_value = false;
    int ret = ini_parse_stream(read_line, &s, on_entry, &s);
    return finish(&s, ret, e);
}

/* The whole file as a string (caller frees), or NULL with a message. */
static char *read_file(const char *path, loco_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        loco_errf(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int err = errno;
    const char *why = !buf ? "out of memory"
                      : ferror(f) ? strerror(err)
                      : n > MAX_FILE_BYTES ? "larger than 1 MiB, not a config file"
                      : memchr(buf, '\0', n) ? "contains a NUL byte, not a config file"
                      : NULL;
    fclose(f);
    if (why) {
        loco_errf(e, "%s: cannot read: %s", path, why);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int loco_ini_parse_file(const char *path, loco_ini_handler h, void *ctx, loco_err *e) {
    char *text = read_file(path, e);
    if (!text) return -1;
    int rc = loco_ini_parse(text, path, h, ctx, e);
    free(text);
    return rc;
}

/* ---- loading a config ---- */

typedef struct {
    loco_config *c;
    int src;                        /* the file's origin source */
    int seen[LOCO_CONFIG_MAX_KEYS]; /* line that set each key in this file, 0 if none */
} load_state;

static int on_key(void *user, const char *section, const char *name, const char *value,
                  int *line, int section_line, loco_err *e) {
    load_state *s = user;
    int i = lookup(section, name, e);
    if (i < 0 && *section && !section_known(section)) *line = section_line;
    if (i >= 0 && s->seen[i])
        i = loco_errf(e, "%s.%s: duplicate key (first set on line %d)", section, name,
                      s->seen[i]);
    if (i < 0 || apply(s->c, i, value, s->src, *line, e) != 0) return -1;
    s->seen[i] = *line;
    return 0;
}

/* Origin source id for file name (one slot per distinct name), or -1. */
static int add_source(loco_config *c, const char *name, loco_err *e) {
    for (int j = 0; j < c->origin.nfiles; j++)
        if (!strncmp(c->origin.files[j], name, LOCO_PATH_LEN - 1)) return SRC_FILE0 + j;
    if (c->origin.nfiles == LOCO_CONFIG_MAX_FILES)
        return loco_errf(e, "%s: too many config files (at most %d)", name,
                         LOCO_CONFIG_MAX_FILES);
    snprintf(c->origin.files[c->origin.nfiles], LOCO_PATH_LEN, "%s", name);
    return SRC_FILE0 + c->origin.nfiles++;
}

int loco_config_load_string(loco_config *c, const char *text, const char *name, loco_err *e) {
    loco_config tmp = *c; /* applied to a copy, so a bad file changes nothing */
    load_state s = {.c = &tmp};
    s.src = add_source(&tmp, name, e);
    if (s.src < 0 || loco_ini_parse(text, name, on_key, &s, e) != 0) return -1;
    *c = tmp;
    return 0;
}

int loco_config_load_file(loco_config *c, const char *path, loco_err *e) {
    char *text = read_file(path, e);
    if (!text) return -1;
    int rc = loco_config_load_string(c, text, path, e);
    free(text);
    return rc;
}

/* ---- relations between keys ---- */

enum { DESC_LEN = 512 };

static int check_heads(const loco_config *c, loco_err *e) {
    if (c->model.dim % c->model.heads == 0) return 0;
    char a[DESC_LEN], b[DESC_LEN];
    return loco_errf(e, "%s must be divisible by %s", describe(c, "model.dim", a, DESC_LEN),
                     describe(c, "model.heads", b, DESC_LEN));
}

static int check_lr(const loco_config *c, loco_err *e) {
    if (c->train.lr_min <= c->train.lr) return 0;
    char a[DESC_LEN], b[DESC_LEN];
    return loco_errf(e, "%s must not exceed %s", describe(c, "train.lr_min", a, DESC_LEN),
                     describe(c, "train.lr", b, DESC_LEN));
}

static int check_text_vocab(const loco_config *c, loco_err *e) {
    if (c->data.format != LOCO_FORMAT_TEXT || c->model.vocab >= 256) return 0;
    char a[DESC_LEN], b[DESC_LEN];
    return loco_errf(e, "%s must be at least 256 with %s, whose tokens are bytes",
                     describe(c, "model.vocab", a, DESC_LEN),
                     describe(c, "data.format", b, DESC_LEN));
}

/* bf16 on a CPU without AVX512-BF16 or AMX is refused here, before anything is written */
static int check_precision(const loco_config *c, loco_err *e) {
    loco_precision p;
    loco_err why;
    if (loco_precision_resolve(c->model.precision, &p, NULL, 0, &why) == 0) return 0;
    char a[DESC_LEN];
    return loco_errf(e, "%s: %s", describe(c, "model.precision", a, DESC_LEN), why.msg);
}

/* "A with B: why", naming both keys' values and where they were set */
static int reject_pair(const loco_config *c, const char *k1, const char *k2, const char *why,
                       loco_err *e) {
    char a[DESC_LEN], b[DESC_LEN];
    return loco_errf(e, "%s with %s: %s", describe(c, k1, a, DESC_LEN), describe(c, k2, b, DESC_LEN),
                     why);
}

static const loco_outer_method *method_of(const loco_config *c) {
    return loco_outer_method_of(c->outer.method);
}

static int check_dn_c(const loco_config *c, loco_err *e) {
    if (c->outer.dn_c == 0) return 0;
    if (!method_of(c)->activates)
        return reject_pair(c, "outer.dn_c", "outer.method", "only async-dn has a momentum "
                           "activation c", e);
    long N = loco_config_dn_period(c);
    if (c->outer.dn_c * (double)N <= 1.0 + 1e-9) return 0;
    char a[DESC_LEN], msg[DESC_LEN];
    snprintf(msg, sizeof msg, "c must be at most 1/N = 1/%ld (N is outer.dn_period, or "
             "run.workers when that is 0)", N);
    return loco_errf(e, "%s: %s", describe(c, "outer.dn_c", a, DESC_LEN), msg);
}

static int check_dn_period(const loco_config *c, loco_err *e) {
    if (c->outer.dn_period == 0 || method_of(c)->periodic) return 0;
    return reject_pair(c, "outer.dn_period", "outer.method", "only async-dn and async-buffer "
                       "have a period N", e);
}

static int check_grace(const loco_config *c, loco_err *e) {
    const loco_outer_method *m = method_of(c);
    if (c->outer.grace_s == 0 || (m->engine && !m->barrier)) return 0;
    return reject_pair(c, "outer.grace_s", "outer.method", m->barrier
                       ? "a sync round already waits for every worker"
                       : "one worker has no arrivals to group", e);
}

/* Every arrival of a sync round starts from the same theta (and single has none):
 * staleness is always 0 and theta_now - theta_start is 0, so these would do nothing. */
static int check_fresh(const loco_config *c, loco_err *e) {
    if (!method_of(c)->fresh_rounds) return 0;
    if (c->outer.staleness != LOCO_STALE_NONE)
        return reject_pair(c, "outer.staleness", "outer.method", "its arrivals are never stale", e);
    if (c->outer.delay_comp > 0)
        return reject_pair(c, "outer.delay_comp", "outer.method", "theta does not move while "
                           "its rounds run, so there is no delay to compensate", e);
    if (c->outer.dylu && !method_of(c)->engine)
        return reject_pair(c, "outer.dylu", "outer.method", "one worker has no slower peers", e);
    return 0;
}

static int check_spin(const loco_config *c, loco_err *e) {
    if (c->hetero.mode != LOCO_SLOW_SPIN || c->run.clock != LOCO_CLOCK_VIRTUAL) return 0;
    return reject_pair(c, "hetero.mode", "run.clock", "the virtual clock emulates no slowdown "
                       "in real time (its rounds just last longer)", e);
}

/* a list value, parsed the way the run will parse it */
static int check_list(const loco_config *c, const char *full, int rc, const loco_err *why,
                      loco_err *e) {
    if (rc == 0) return 0;
    char a[DESC_LEN];
    return loco_errf(e, "%s: %s", describe(c, full, a, DESC_LEN), why->msg);
}

static int check_slowdown(const loco_config *c, loco_err *e) {
    if (!c->hetero.slowdown[0]) return 0;
    double *f = calloc((size_t)c->run.workers, sizeof *f);
    if (!f) return loco_errf(e, "out of memory");
    loco_err why;
    int rc = loco_hetero_parse_slowdown(c->hetero.slowdown, (int)c->run.workers, f, &why);
    free(f);
    return check_list(c, "hetero.slowdown", rc, &why, e);
}

static int check_speed_change(const loco_config *c, loco_err *e) {
    loco_speed_change *changes;
    int n;
    loco_err why;
    int rc = loco_hetero_parse_changes(c->hetero.speed_change, (int)c->run.workers, &changes,
                                       &n, &why);
    if (rc == 0) free(changes);
    return check_list(c, "hetero.speed_change", rc, &why, e);
}

static int check_faults(const loco_config *c, loco_err *e) {
    loco_fault *f;
    loco_injection *in;
    int n;
    loco_err why;
    if (loco_hetero_parse_faults(c->faults.fail, (int)c->run.workers, &f, &n, &why) != 0)
        return check_list(c, "faults.fail", -1, &why, e);
    free(f);
    const char *keys[] = {"faults.inject_nan", "faults.inject_diverge"};
    const char *lists[] = {c->faults.inject_nan, c->faults.inject_diverge};
    for (int i = 0; i < 2; i++) {
        if (loco_hetero_parse_injections(lists[i], (int)c->run.workers, &in, &n, &why) != 0)
            return check_list(c, keys[i], -1, &why, e);
        free(in);
    }
    int any = c->faults.fail[0] || c->faults.inject_nan[0] || c->faults.inject_diverge[0];
    if (any && !method_of(c)->engine)
        return reject_pair(c, c->faults.fail[0] ? "faults.fail" : c->faults.inject_nan[0]
                           ? "faults.inject_nan" : "faults.inject_diverge", "outer.method",
                           "single has no workers that could fail or send a delta", e);
    return 0;
}

static int check_outer_limits(const loco_config *c, loco_err *e) {
    if (c->outer.sync_timeout_s > 0 && !method_of(c)->barrier)
        return reject_pair(c, "outer.sync_timeout_s", "outer.method", "only sync waits for a "
                           "round to be complete", e);
    if (c->outer.max_delta_norm > 0 && !method_of(c)->engine)
        return reject_pair(c, "outer.max_delta_norm", "outer.method", "single sends no deltas", e);
    return 0;
}

/* "N", "Ns", "Nm", "Nh" with N >= 0: -1 when not */
static int parse_every(const char *s, long *updates, double *seconds) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    *updates = 0;
    *seconds = 0;
    if (end == s || errno || !(x >= 0) || !isfinite(x)) return -1;
    if (!*end) {
        if (x != floor(x) || x > 1e15) return -1;
        *updates = (long)x;
        return 0;
    }
    const double unit = end[1] ? 0 : *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 0;
    if (unit == 0) return -1;
    *seconds = x * unit;
    return 0;
}

static int check_checkpoint_every(const loco_config *c, loco_err *e) {
    long u;
    double s;
    if (parse_every(c->train.checkpoint_every, &u, &s) == 0) return 0;
    char a[DESC_LEN];
    return loco_errf(e, "%s: expected a number of server updates (single: steps), or of "
                     "seconds, minutes or hours (30s, 10m, 2h); 0 = only when stopped",
                     describe(c, "train.checkpoint_every", a, DESC_LEN));
}

void loco_config_checkpoint_every(const loco_config *c, long *updates, double *seconds) {
    if (parse_every(c->train.checkpoint_every, updates, seconds) != 0) *updates = 0, *seconds = 0;
}

/* Every relation between keys is one function above and one line in this list. */
static int (*const checks[])(const loco_config *, loco_err *) = {
    check_heads,
    check_lr,
    check_text_vocab,
    check_precision,
    check_dn_c,
    check_dn_period,
    check_grace,
    check_fresh,
    check_spin,
    check_slowdown,
    check_speed_change,
    check_faults,
    check_outer_limits,
    check_checkpoint_every,
};

int loco_config_precision(const loco_config *c, char *why, size_t n) {
    loco_precision p = LOCO_PREC_FP32;
    loco_precision_resolve((loco_precision)c->model.precision, &p, why, n, NULL);
    return p;
}

int loco_config_validate(const loco_config *c, loco_err *e) {
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (checks[i](c, e) != 0) return -1;
    return 0;
}

int loco_config_on_engine(const loco_config *c) {
    return method_of(c)->engine;
}

long loco_config_dn_period(const loco_config *c) {
    return c->outer.dn_period > 0 ? c->outer.dn_period : c->run.workers;
}

long loco_config_total_local_steps(const loco_config *c) {
    return c->outer.total_local_steps > 0 ? c->outer.total_local_steps
                                          : c->run.workers * c->train.steps;
}

long loco_config_final_batches(const loco_config *c) {
    return c->eval.final_batches > 0 ? c->eval.final_batches : c->eval.batches;
}

/* ---- writing and help ---- */

/* Whether every value reads back: one set directly in the struct may be out of range or,
 * for a string, change when read (a newline, " ;"). */
static int writable(const loco_config *c) {
    loco_config scratch = *c;
    for (int i = 0; i < NKEYS; i++) {
        char value[VALUE_LEN];
        loco_err e;
        format_value(c, &table[i], value, sizeof value);
        if (apply(&scratch, i, value, SRC_DEFAULT, 0, &e) != 0) return 0;
    }
    return 1;
}

int loco_config_write(const loco_config *c, FILE *f) {
    if (!writable(c)) {
        errno = EINVAL; /* nothing written: the file would not load back to c */
        return -1;
    }
    const char *section = "";
    fprintf(f, "; loco configuration: every key at its value (see 'loco help config')\n");
    for (int i = 0; i < NKEYS; i++) {
        const key *k = &table[i];
        char value[VALUE_LEN];
        format_value(c, k, value, sizeof value);
        if (strcmp(section, k->section)) fprintf(f, "\n[%s]\n", k->section);
        section = k->section;
        fprintf(f, "; %s\n%s = %s\n", k->help, k->name, value);
    }
    return ferror(f) ? -1 : 0;
}

int loco_config_write_changes(const loco_config *c, FILE *f) {
    loco_config d;
    loco_config_default(&d);
    for (int i = 0; i < NKEYS; i++) {
        char value[VALUE_LEN], def[VALUE_LEN];
        format_value(c, &table[i], value, sizeof value);
        format_value(&d, &table[i], def, sizeof def);
        if (strcmp(value, def)) fprintf(f, "%s.%s = %s\n", table[i].section, table[i].name, value);
    }
    return ferror(f) ? -1 : 0;
}

static const char *type_name(key_type t) {
    static const char *names[] = {"int", "real", "string", "choice"};
    return names[t];
}

void loco_config_help(FILE *f) {
    fprintf(f, "Config keys: set them in an INI file ([section] then key = value) or with\n"
               "--set section.key=value; later files and --set override earlier ones.\n\n");
    fprintf(f, "%-25s %-7s %-16s %s\n", "key", "type", "default", "range");
    for (int i = 0; i < NKEYS; i++) {
        const key *k = &table[i];
        char full[64], range[RANGE_LEN];
        snprintf(full, sizeof full, "%s.%s", k->section, k->name);
        format_range(k, range, sizeof range);
        fprintf(f, "%-25s %-7s %-16s %s\n    %s\n", full, type_name(k->type),
                k->def[0] ? k->def : "\"\"", range, k->help);
    }
}
