/* base: what every module shares: error messages, aligned buffers, monotonic time,
 * the seeded random generator and crash-safe file writing. Depends on nothing else
 * in loco. */
#ifndef LOCO_BASE_H
#define LOCO_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LOCO_ERR_LEN 1024
#define LOCO_PATH_LEN 1024
#define LOCO_ALIGN 64

/* A user error: functions that can fail return 0 on success, -1 with a message here. */
typedef struct {
    char msg[LOCO_ERR_LEN];
} loco_err;

/* Formats a message into e (when e is not NULL); always returns -1. */
int loco_errf(loco_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 64-byte aligned, zeroed allocation of n bytes; NULL when out of memory. Free with free(). */
void *loco_alloc(size_t n);

/* Seconds on CLOCK_MONOTONIC: for every duration. */
double loco_now(void);

/* Seeded generator (splitmix64): one per stream, so streams are independent of
 * thread timing. seed and stream are mixed, so (seed, 0) and (seed, 1) differ. */
typedef struct {
    uint64_t s;
} loco_rng;

void loco_rng_seed(loco_rng *r, uint64_t seed, uint64_t stream);
uint64_t loco_rng_u64(loco_rng *r);
/* uniform in [0, 1) with 24 random bits */
float loco_rng_uniform(loco_rng *r);
/* uniform integer in [0, n), n > 0 */
uint64_t loco_rng_below(loco_rng *r, uint64_t n);
/* standard normal (Box-Muller) */
double loco_rng_normal(loco_rng *r);

/* A file written crash-safely: to path.tmp, then fflush, fsync, rename over path and
 * fsync of the directory, so path is always either the old file or the whole new one. */
typedef struct {
    FILE *f;
    char path[LOCO_PATH_LEN];
    char tmp[LOCO_PATH_LEN + 8];
    int failed;   /* errno of the first failed write */
} loco_outfile;

int loco_outfile_open(loco_outfile *o, const char *path, loco_err *e);
void loco_outfile_write(loco_outfile *o, const void *p, size_t n);
/* Puts the file in place; on any failure removes the temp file and returns -1. */
int loco_outfile_commit(loco_outfile *o, loco_err *e);

/* mkdir -p */
int loco_mkdirs(const char *path, loco_err *e);

#endif
