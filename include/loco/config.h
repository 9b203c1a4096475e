/* config: the run configuration, in the run layer. Owns the one table of keys (section,
 * name, type, default, allowed range, help) from which the INI parser (libinih), --set,
 * validation, `loco help config` and the resolved config.ini all come, and the one list
 * of checks between keys; a key is added in one place. Choices take their names from the
 * modules that own them (outer, clock, topo, hetero, globalbuf, data, mm). Nothing below the
 * run layer includes this header. */
#ifndef LOCO_CONFIG_H
#define LOCO_CONFIG_H

#include <stdio.h>

#include "loco/base.h"

#define LOCO_LIST_LEN 192   /* list-valued keys: one config line */

/* Room for the origin record below: keys in the table (checked when config.c compiles)
 * and config files stacked onto one config (loading more is an error). */
#define LOCO_CONFIG_MAX_KEYS 64
#define LOCO_CONFIG_MAX_FILES 8

/* Field names mirror the keys: section.key is cfg.section.key. Integer keys are long,
 * real keys double, string keys char arrays, choice keys int (the owner's enum value). */
typedef struct {
    struct {
        long seed;
        long workers;
        int clock;            /* LOCO_CLOCK_* (clock.h) */
        int pin;              /* LOCO_PIN_* (topo.h) */
        double virtual_step_s;
    } run;
    struct {
        long layers, heads, dim, seq_len, vocab;
        int precision;        /* LOCO_PREC_* (mm.h) */
    } model;
    struct {
        char path[LOCO_PATH_LEN];
        int format;           /* LOCO_FORMAT_* (data.h) */
        long block;           /* tokens per split block */
        long val_every;       /* every val_every-th block is validation */
        long first_stream;    /* worker k's batches come from data stream first_stream + k */
    } data;
    struct {
        long batch, steps, warmup;
        double lr, lr_min, weight_decay, grad_clip, beta1, beta2, eps;
        int lr_progress;      /* LOCO_LR_* (adamw.h) */
        char checkpoint_every[32]; /* "N" server updates (single: steps), "Ns|m|h", "0" */
    } train;
    struct {
        long every, batches;
        long final_batches;   /* the final figure's validation batches; 0 = batches */
        int set;              /* LOCO_VAL_* (data.h): which validation windows */
        long every_updates;   /* asynchronous runs: evaluate every this many arrivals */
        long every_local_steps; /* evaluate each time the local steps pass a multiple */
    } eval;
    struct {
        int method;           /* LOCO_METHOD_* (outer.h) */
        double lr, momentum;
        long local_steps;     /* H */
        int dylu;             /* 0 off, 1 on */
        long dn_period;       /* N; 0 = run.workers */
        double dn_c;
        double grace_s;
        int grace_close;      /* LOCO_GRACE_* (outer.h) */
        int staleness;        /* LOCO_STALE_* (outer.h) */
        long stale_max;
        double delay_comp;    /* lambda; 0 = off */
        long total_local_steps; /* 0 = run.workers x train.steps */
        double max_delta_norm;  /* reject deltas with a larger L2 norm; 0 = off */
        double sync_timeout_s;  /* sync waits at most this for a round; 0 = for every worker */
    } outer;
    struct {
        int level;            /* LOCO_LEVEL_* (hetero.h) */
        char slowdown[LOCO_LIST_LEN];
        double jitter;
        int mode;             /* LOCO_SLOW_* (hetero.h) */
        char speed_change[LOCO_LIST_LEN];
    } hetero;
    struct {
        long stripe_kib;
        int lock;             /* LOCO_LOCK_* (globalbuf.h) */
    } buffer;
    struct {
        char fail[LOCO_LIST_LEN];           /* W@T+D (away D seconds) or W@T (gone), ... */
        char inject_nan[LOCO_LIST_LEN];     /* W@R: worker W's round R sends a NaN delta */
        char inject_diverge[LOCO_LIST_LEN]; /* W@R: worker W's round R has its lr blow up */
    } faults;
    /* Where each key was last set, so messages can name it ("configs/x.ini:6", "--set",
     * "default"). Kept by config.c only: key i of its table was set by source src[i]
     * (0 default, 1 --set, 2 + j files[j]) at line[i]. */
    struct {
        unsigned char src[LOCO_CONFIG_MAX_KEYS];
        int line[LOCO_CONFIG_MAX_KEYS];
        int nfiles;
        char files[LOCO_CONFIG_MAX_FILES][LOCO_PATH_LEN];
    } origin;
} loco_config;

/* INI text read line by line (libinih): h gets every key = value with its section and
 * line; it returns 0, or -1 with a message, and may point *line elsewhere (the section
 * header, say) for the message. The first error comes back as "name:line: message";
 * syntax errors and overlong lines are reported the same way. */
typedef int (*loco_ini_handler)(void *ctx, const char *section, const char *key,
                                const char *value, int *line, int section_line, loco_err *e);
int loco_ini_parse(const char *text, const char *name, loco_ini_handler h, void *ctx,
                   loco_err *e);
int loco_ini_parse_file(const char *path, loco_ini_handler h, void *ctx, loco_err *e);

/* Every key at its default. */
void loco_config_default(loco_config *c);

/* Applies an INI file on top of c. Errors name the file, the line and the key:
 * unknown section or key, bad value, value out of range, duplicate key, unreadable file. */
int loco_config_load_file(loco_config *c, const char *path, loco_err *e);

/* Same for INI text in memory; name stands for the file in messages. */
int loco_config_load_string(loco_config *c, const char *text, const char *name, loco_err *e);

/* Applies one "section.key=value" (the --set flag), through the same parser as a file line. */
int loco_config_set(loco_config *c, const char *assignment, loco_err *e);

/* Applies a command-line shorthand ("--hetero", "very"): each stands for one key
 * (--speed-change adds to the list instead of replacing it). Returns 1 when flag is not
 * a shorthand, 0 when applied, -1 with a message for a bad or missing (NULL) value. */
int loco_config_flag(loco_config *c, const char *flag, const char *value, loco_err *e);

/* The shorthands, for help texts. */
void loco_config_flags_help(FILE *f);

/* Checks between keys and of list values (dim divisible by heads, lr_min <= lr, the
 * slowdown list, combinations that mean nothing, ...): every check of user input that
 * does not need the data. Messages name each key's value and where it was set. */
int loco_config_validate(const loco_config *c, loco_err *e);

/* Values the config implies: the DN period N (outer.dn_period, or run.workers when 0)
 * and the run's length in local steps summed over workers (outer.total_local_steps, or
 * run.workers x train.steps when 0), and the final figure's validation batches
 * (eval.final_batches, or eval.batches when 0). */
long loco_config_dn_period(const loco_config *c);
/* Whether the method runs on the asynchronous engine (workers, a server), as the method
 * table says; single does not. */
int loco_config_on_engine(const loco_config *c);
long loco_config_total_local_steps(const loco_config *c);
long loco_config_final_batches(const loco_config *c);

/* train.checkpoint_every: every *updates server updates (single: steps), or every
 * *seconds; both 0: never (the run still checkpoints when it is stopped). */
void loco_config_checkpoint_every(const loco_config *c, long *updates, double *seconds);

/* model.precision as it runs on this CPU: auto resolved (validation refused a precision
 * the CPU lacks, so this always resolves); why, when given, says what auto chose */
int loco_config_precision(const loco_config *c, char *why, size_t n);

/* Writes every key with its value as an INI file that loads back to the same c. */
int loco_config_write(const loco_config *c, FILE *f);

/* The keys whose value is not the default, one "section.key = value" line each in the
 * table's order: what a config is, independent of keys added later at their defaults. */
int loco_config_write_changes(const loco_config *c, FILE *f);

/* The table as help text: section.key, type, default, range, help. */
void loco_config_help(FILE *f);

#endif
