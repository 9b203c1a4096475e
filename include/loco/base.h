/* base: what every module shares: error messages, aligned buffers, monotonic time,
 * the seeded random generator and crash-safe file writing. Depends on nothing else
 * in loco. */
#ifndef LOCO_BASE_H
#define LOCO_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define LOCO_ERR_LEN 1024
#define LOCO_PATH_LEN 1024
#define LOCO_ALIGN 64

/* The commit the binary was built from (git describe; "-dirty" with uncommitted changes;
 * "unknown" outside a git checkout), written by the Makefile into build/commit.c. */
extern const char loco_commit[];

/* A user error: functions that can fail return 0 on success, -1 with a message here. */
typedef struct {
    char msg[LOCO_ERR_LEN];
} loco_err;

/* Formats a message into e (when e is not NULL); always returns -1. */
int loco_errf(loco_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A broken invariant is a programmer error, never a user's: always checked, even in
 * optimised builds, because the alternative is a hang or silently wrong numbers. Prints
 * file:line, the condition and the values the message gives, then aborts. (A macro only
 * for __FILE__ and __LINE__; the work is loco_check_failed.) */
#define LOCO_CHECK(cond, ...) \
    ((cond) ? (void)0 : loco_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__))
_Noreturn void loco_check_failed(const char *file, int line, const char *cond, const char *fmt,
                                 ...) __attribute__((format(printf, 4, 5)));

/* A choice's names: each module that owns an enum keeps one of these arrays beside it,
 * ended by {NULL, 0}; the config table points at it, and anything that prints a choice
 * asks the array, so every name is written once. data, when the owner sets it, points at
 * what the choice means (a method's behaviour, for instance). */
typedef struct {
    const char *name;
    int value;
    const void *data;
} loco_enum;

/* The row of value in t; a value missing from t is a broken invariant. */
const loco_enum *loco_enum_row(const loco_enum *t, int value);

/* The name of value in t; a value missing from t is a broken invariant. */
const char *loco_enum_name(const loco_enum *t, int value);
/* The value called name in t: 0, or -1 when there is none. */
int loco_enum_value(const loco_enum *t, const char *name, int *value);
/* The names joined by sep ("real|virtual") into buf. */
void loco_enum_names(const loco_enum *t, const char *sep, char *buf, size_t n);

/* 64-byte aligned, zeroed allocation of n bytes; NULL when out of memory. Free with free(). */
void *loco_alloc(size_t n);

/* loco_alloc, or NULL with "WHO: cannot allocate SIZE for WHAT" in e (who may be NULL):
 * a failed allocation says how much it wanted and what for, since the estimate of
 * memplan can be wrong and another process can take the memory meanwhile. */
void *loco_alloc_for(size_t n, const char *who, const char *what, loco_err *e);

/* bytes as people read them: "512 B", "2 MiB", "15.1 GiB" (binary units, one decimal
 * unless exact; UINT64_MAX, a saturated count, is "more than 16 EiB"); returns buf. */
const char *loco_size_str(uint64_t bytes, char *buf, size_t n);

/* Byte counts that saturate at UINT64_MAX instead of wrapping, for sizes computed from
 * a config before anything checks that they fit anywhere. */
static inline uint64_t loco_mul_sat(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
static inline uint64_t loco_add_sat(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* Seconds on CLOCK_MONOTONIC: for every duration. */
double loco_now(void);

/* Seeded generator (splitmix64): one per stream, so streams are independent of
 * thread timing. seed and stream are mixed, so (seed, 0) and (seed, 1) differ. */
typedef struct {
    uint64_t s;
} loco_rng;

void loco_rng_seed(loco_rng *r, uint64_t seed, uint64_t stream);

/* The run's random streams, one kind per use, so that no two uses ever share a stream
 * and adding one changes none of the others: stream (kind, index) for worker or tensor
 * index. */
typedef enum {
    LOCO_STREAM_DATA = 1,       /* worker's training batches */
    LOCO_STREAM_INIT = 2,       /* tensor's initial weights */
    LOCO_STREAM_DURATION = 3,   /* worker's virtual round durations */
    LOCO_STREAM_JITTER = 4,     /* worker's real-clock step jitter */
    LOCO_STREAM_SAMPLE = 5,     /* text generation */
} loco_stream_kind;

uint64_t loco_stream_id(loco_stream_kind kind, uint64_t index);
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

/* CRC-32 (zlib's) of n bytes, continuing crc (0 to start): of any length, where zlib
 * takes at most 4 GiB a call. */
uint32_t loco_crc32(uint32_t crc, const void *p, size_t n);

/* FNV-1a, 64 bits: loco_hash64 of n bytes, loco_hash64_more to continue a hash. Names
 * files and checks configs; not for adversaries. */
uint64_t loco_hash64(const void *p, size_t n);
uint64_t loco_hash64_more(uint64_t h, const void *p, size_t n);

/* seconds (of loco_now's clock, or a duration) as a struct timespec, for the waits that
 * take one */
struct timespec loco_timespec(double s);

/* The whole of s as one number: 0; LOCO_PARSE_BAD (-1) when s is empty or has anything
 * after the number; LOCO_PARSE_RANGE when it overflows (a double: or is inf or nan);
 * LOCO_PARSE_TINY when a double's magnitude is below DBL_MIN, which loco's threads would
 * count as zero. *out is set only on success. */
enum { LOCO_PARSE_BAD = -1, LOCO_PARSE_RANGE = -2, LOCO_PARSE_TINY = -3 };
int loco_parse_long(const char *s, long *out);
int loco_parse_double(const char *s, double *out);

/* Comma-separated lists: items are trimmed of blanks, and empty ones stay (so "1,,2" is
 * reported rather than read as "1,2"). loco_list_count: the items of list, 0 for a blank
 * one. loco_list_next copies the item *p starts with into item (len bytes) and moves *p
 * past its comma (NULL after the last); -1 when it does not fit. */
int loco_list_count(const char *list);
int loco_list_next(const char **p, char *item, size_t len);

#endif
