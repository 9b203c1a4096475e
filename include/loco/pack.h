/* pack: the byte streams of state files. A packer appends little-endian fields to a file
 * as it goes (with a running CRC-32 and count); an unpacker reads them back from memory
 * with bounds checks, so a truncated or mangled file is an error, never a read past the
 * end. Knows nothing of what the fields mean. */
#ifndef LOCO_PACK_H
#define LOCO_PACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "loco/base.h"

typedef struct {
    FILE *f;
    uint32_t crc;
    uint64_t bytes;
    int failed;              /* a write failed: the caller's commit reports it */
} loco_pack;

void loco_pack_begin(loco_pack *p, FILE *f);
void loco_pack_bytes(loco_pack *p, const void *x, size_t n);
void loco_pack_u64(loco_pack *p, uint64_t x);
void loco_pack_i64(loco_pack *p, int64_t x);
void loco_pack_f64(loco_pack *p, double x);
void loco_pack_floats(loco_pack *p, const float *x, size_t n);

typedef struct {
    const unsigned char *buf;
    size_t len, pos;
    int bad;                 /* read past the end: every later read gives 0 */
} loco_unpack;

void loco_unpack_begin(loco_unpack *u, const void *buf, size_t len);
/* Steps over n bytes (bad when fewer are left). */
void loco_unpack_skip(loco_unpack *u, size_t n);
void loco_unpack_bytes(loco_unpack *u, void *x, size_t n);
uint64_t loco_unpack_u64(loco_unpack *u);
int64_t loco_unpack_i64(loco_unpack *u);
double loco_unpack_f64(loco_unpack *u);
void loco_unpack_floats(loco_unpack *u, float *x, size_t n);
/* an int64 that must lie in [lo, hi]: out of range marks the stream bad */
int64_t loco_unpack_range(loco_unpack *u, int64_t lo, int64_t hi);

/* ---- field tables: a struct's saved scalars, one row each, in the stream's order ---- */

/* How a field is held in its struct; every kind takes 8 bytes in the stream (an int or a
 * long as an int64, a float as a double). */
typedef enum {
    LOCO_FIELD_LONG, LOCO_FIELD_INT, LOCO_FIELD_ATOMIC_LONG, LOCO_FIELD_U64, LOCO_FIELD_F64,
    LOCO_FIELD_F32
} loco_field_kind;

/* A field at offset in its struct; integers must lie in [lo, hi] when loaded, where a hi
 * below lo stands for the caller's limit (a worker count known only at run time). */
typedef struct {
    size_t offset;
    loco_field_kind kind;
    int64_t lo, hi;
} loco_field;

enum { LOCO_FIELD_BYTES = 8 };
#define LOCO_BIG (INT64_MAX / 2)  /* the bound of counts that only grow */

void loco_pack_fields(loco_pack *p, const void *base, const loco_field *f, int n);
/* Into base; a value out of its bounds marks the stream bad (and stores lo). */
void loco_unpack_fields(loco_unpack *u, void *base, const loco_field *f, int n, int64_t limit);

#endif
