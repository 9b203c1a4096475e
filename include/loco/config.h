/* config: the run configuration. Owns the one table of keys (section, name, type,
 * default, allowed range, help) from which the INI parser (libinih), --set,
 * validation, `loco help config` and the resolved config.ini all come; a key is
 * added in one place. Knows nothing of training. */
#ifndef LOCO_CONFIG_H
#define LOCO_CONFIG_H

#include <stdio.h>

#include "loco/base.h"

enum { LOCO_FORMAT_TEXT, LOCO_FORMAT_LLMC };

/* Room for the origin record below: keys in the table (checked when config.c compiles)
 * and config files stacked onto one config (loading more is an error). */
#define LOCO_CONFIG_MAX_KEYS 64
#define LOCO_CONFIG_MAX_FILES 8

/* Field names mirror the keys: section.key is cfg.section.key. Integer keys are long,
 * real keys double, string keys char arrays, choice keys int (index into the choices). */
typedef struct {
    struct {
        long seed;
        long workers;
    } run;
    struct {
        long layers, heads, dim, seq_len, vocab;
    } model;
    struct {
        char path[LOCO_PATH_LEN];
        int format;           /* LOCO_FORMAT_* */
        long block;           /* tokens per split block */
        long val_every;       /* every val_every-th block is validation */
    } data;
    struct {
        long batch, steps, warmup;
        double lr, lr_min, weight_decay, grad_clip, beta1, beta2, eps;
    } train;
    struct {
        long every, batches;
    } eval;
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

/* Every key at its default. */
void loco_config_default(loco_config *c);

/* Applies an INI file on top of c. Errors name the file, the line and the key:
 * unknown section or key, bad value, value out of range, duplicate key, unreadable file. */
int loco_config_load_file(loco_config *c, const char *path, loco_err *e);

/* Same for INI text in memory; name stands for the file in messages. */
int loco_config_load_string(loco_config *c, const char *text, const char *name, loco_err *e);

/* Applies one "section.key=value" (the --set flag), through the same parser as a file line. */
int loco_config_set(loco_config *c, const char *assignment, loco_err *e);

/* Checks between keys (dim divisible by heads, lr_min <= lr, ...). */
int loco_config_validate(const loco_config *c, loco_err *e);

/* Writes every key with its value as an INI file that loads back to the same c. */
int loco_config_write(const loco_config *c, FILE *f);

/* The table as help text: section.key, type, default, range, help. */
void loco_config_help(FILE *f);

#endif
