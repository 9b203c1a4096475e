/* checkpoint: model files on disk. Owns loco's own model format (header with magic,
 * version and shape, the resolved config text, the tensors, a CRC-32) and llm.c's fp32
 * checkpoint format (256-int32 header, magic 20240326, version 3, tensors in llm.c's
 * order), reading either and writing both atomically (temp file, fsync, rename). */
#ifndef LOCO_MODELFILE_H
#define LOCO_MODELFILE_H

#include "loco/base.h"
#include "loco/model.h"

#define LOCO_MODEL_MAGIC 20261125
#define LOCO_MODEL_VERSION 1
#define LOCO_LLMC_MODEL_MAGIC 20240326
#define LOCO_LLMC_MODEL_VERSION 3

enum { LOCO_FILE_LOCO, LOCO_FILE_LLMC };

typedef struct {
    int format;          /* LOCO_FILE_* */
    loco_model m;
    float *params;       /* m.nparams floats in loco's padded layout */
    char *config;        /* the resolved config of the run that wrote it; NULL for llm.c files */
} loco_model_file;

/* Reads a model in either format (told apart by the magic). Errors name the file and
 * what is wrong: unreadable, unknown magic, unsupported version, bad shape, truncated
 * or trailing bytes (with the sizes), checksum mismatch. */
int loco_model_read(const char *path, loco_model_file *f, loco_err *e);
void loco_model_file_free(loco_model_file *f);

/* Writes loco's format; config is the resolved INI text (may be NULL). */
int loco_model_write(const char *path, const loco_model *m, const float *params,
                     const char *config, loco_err *e);

/* Writes llm.c's format, readable by llm.c's train_gpt2.c. */
int loco_model_write_llmc(const char *path, const loco_model *m, const float *params,
                          loco_err *e);

#endif
