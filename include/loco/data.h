/* data: the token data. Owns mapping a corpus (text file: one token per byte) or an
 * llm.c token shard (uint16 tokens after a 256-int32 header) into memory, the
 * deterministic train/validation split in interleaved blocks, per-stream seeded
 * sampling of training windows and the fixed validation batches. Read-only after
 * open, so any number of threads may sample from one loco_data. */
#ifndef LOCO_DATA_H
#define LOCO_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "loco/base.h"

/* How a file holds its tokens. */
enum { LOCO_FORMAT_TEXT, LOCO_FORMAT_LLMC };
extern const loco_enum loco_data_formats[];   /* "text", "llmc" */

#define LOCO_LLMC_SHARD_MAGIC 20240520
#define LOCO_LLMC_SHARD_VERSION 1
#define LOCO_LLMC_HEADER_INTS 256

/* Which validation windows a run evaluates on (eval.set): all of them, or the even- or
 * odd-numbered ones, so that a sweep's tuning runs are scored on windows its reported
 * figures never use. */
enum { LOCO_VAL_ALL, LOCO_VAL_REPORT, LOCO_VAL_TUNE };
extern const loco_enum loco_val_sets[];       /* "all", "report", "tune" */

/* A run of consecutive tokens [start, start + len) of one kind (train or val). */
typedef struct {
    size_t start, len;
} loco_span;

typedef struct {
    char path[LOCO_PATH_LEN];
    int format;               /* LOCO_FORMAT_* */
    int vocab;
    void *map;                /* the whole file, mmapped read-only */
    size_t map_len;
    const uint8_t *u8;        /* text: the tokens are the bytes */
    const uint16_t *u16;      /* llmc: the tokens after the header */
    size_t n;                 /* tokens in the file */
    /* split: block b (block tokens each) is validation when b % val_every == val_every - 1;
     * train and val are the maximal runs of consecutive blocks of each kind */
    size_t block;
    long val_every;
    loco_span *train, *val;
    int ntrain, nval;
    size_t train_tokens, val_tokens;
    int val_set;              /* LOCO_VAL_*: the validation windows evaluated (set after open) */
} loco_data;

/* Maps path and splits it (val_every = 0: no split, the whole file is one train span,
 * as `loco eval` reads it). format and vocab as in config; every token must be < vocab
 * (checked here, once). Errors name the file: unreadable, empty, llmc header with a
 * bad magic or version, token count that disagrees with the file size, token out of
 * range (with its offset), or too little data for a train and a val part. */
int loco_data_open(loco_data *d, const char *path, int format, int vocab, size_t block,
                   long val_every, loco_err *e);
void loco_data_close(loco_data *d);

/* Token i of the file, i < n. */
static inline int loco_data_token(const loco_data *d, size_t i) {
    return d->u8 ? (int)d->u8[i] : (int)d->u16[i];
}

/* How many windows of T+1 tokens fit in the train part; 0 means T is too long. */
size_t loco_data_train_windows(const loco_data *d, int T);

/* The window of T+1 tokens at position p (p + T < n): inputs (T) = tok[p..p+T-1],
 * targets (T) = tok[p+1..p+T]. */
void loco_data_window(const loco_data *d, size_t p, int T, int *inputs, int *targets);

/* One worker's stream of training batches: seeded, independent of other streams. */
typedef struct {
    const loco_data *d;
    loco_rng rng;
} loco_stream;

/* Worker `worker`'s stream of the run seeded with seed. */
void loco_stream_init(loco_stream *s, const loco_data *d, uint64_t seed, uint64_t worker);

/* Fills inputs and targets (B*T each, row-major (B,T)) with B windows of T+1 tokens
 * drawn uniformly from all windows that lie inside one train span:
 * inputs[b,t] = tok[p+t], targets[b,t] = tok[p+t+1]. */
void loco_stream_next(loco_stream *s, int B, int T, int *inputs, int *targets);

/* The validation part as consecutive non-overlapping windows of T+1 tokens (stride T,
 * never crossing a span): how many there are in the run's set (d->val_set). */
size_t loco_data_val_windows(const loco_data *d, int T);

/* 0 when the validation part (the run's set) holds nbatches * B windows of T+1 tokens;
 * otherwise -1 with a message that says what to lower (key: the key nbatches came from). */
int loco_data_check_val(const loco_data *d, int nbatches, int B, int T, const char *key,
                        loco_err *e);

/* Fixed validation batch i of nbatches: B windows spread evenly over all validation
 * windows (window j = (i*B + b) * nwin / (nbatches*B)); the same on every call.
 * Returns -1 (message in e) when the validation part holds fewer than nbatches*B windows. */
int loco_data_val_batch(const loco_data *d, int i, int nbatches, int B, int T, int *inputs,
                        int *targets, loco_err *e);

#endif
