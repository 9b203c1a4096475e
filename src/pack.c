#include "loco/pack.h"

#include <stdatomic.h>
#include <string.h>

/* the fields are written as the machine holds them: loco runs on little-endian x86-64
 * and aarch64, and a state file is read back by the same build on the same machine */

void loco_pack_begin(loco_pack *p, FILE *f) {
    *p = (loco_pack){.f = f, .crc = 0};
}

void loco_pack_bytes(loco_pack *p, const void *x, size_t n) {
    if (p->failed || n == 0) return;
    if (fwrite(x, 1, n, p->f) != n) p->failed = 1;
    p->crc = loco_crc32(p->crc, x, n);
    p->bytes += n;
}

void loco_pack_u64(loco_pack *p, uint64_t x) {
    loco_pack_bytes(p, &x, sizeof x);
}

void loco_pack_i64(loco_pack *p, int64_t x) {
    loco_pack_bytes(p, &x, sizeof x);
}

void loco_pack_f64(loco_pack *p, double x) {
    loco_pack_bytes(p, &x, sizeof x);
}

void loco_pack_floats(loco_pack *p, const float *x, size_t n) {
    loco_pack_bytes(p, x, n * sizeof *x);
}

void loco_unpack_begin(loco_unpack *u, const void *buf, size_t len) {
    *u = (loco_unpack){.buf = buf, .len = len};
}

void loco_unpack_bytes(loco_unpack *u, void *x, size_t n) {
    if (u->bad || n > u->len - u->pos) {
        u->bad = 1;
        memset(x, 0, n);
        return;
    }
    memcpy(x, u->buf + u->pos, n);
    u->pos += n;
}

void loco_unpack_skip(loco_unpack *u, size_t n) {
    if (u->bad || n > u->len - u->pos) u->bad = 1;
    else u->pos += n;
}

uint64_t loco_unpack_u64(loco_unpack *u) {
    uint64_t x;
    loco_unpack_bytes(u, &x, sizeof x);
    return x;
}

int64_t loco_unpack_i64(loco_unpack *u) {
    int64_t x;
    loco_unpack_bytes(u, &x, sizeof x);
    return x;
}

double loco_unpack_f64(loco_unpack *u) {
    double x;
    loco_unpack_bytes(u, &x, sizeof x);
    return x;
}

void loco_unpack_floats(loco_unpack *u, float *x, size_t n) {
    loco_unpack_bytes(u, x, n * sizeof *x);
}

int64_t loco_unpack_range(loco_unpack *u, int64_t lo, int64_t hi) {
    int64_t x = loco_unpack_i64(u);
    if (x < lo || x > hi) {
        u->bad = 1;
        return lo;
    }
    return x;
}

/* ------------------------------------------------------------ field tables */

void loco_pack_fields(loco_pack *p, const void *base, const loco_field *f, int n) {
    const char *b = base;
    for (int i = 0; i < n; i++) {
        const void *x = b + f[i].offset;
        switch (f[i].kind) {
        case LOCO_FIELD_LONG: loco_pack_i64(p, *(const long *)x); break;
        case LOCO_FIELD_INT: loco_pack_i64(p, *(const int *)x); break;
        case LOCO_FIELD_ATOMIC_LONG: loco_pack_i64(p, atomic_load((const atomic_long *)x)); break;
        case LOCO_FIELD_U64: loco_pack_u64(p, *(const uint64_t *)x); break;
        case LOCO_FIELD_F64: loco_pack_f64(p, *(const double *)x); break;
        case LOCO_FIELD_F32: loco_pack_f64(p, *(const float *)x); break;
        }
    }
}

void loco_unpack_fields(loco_unpack *u, void *base, const loco_field *f, int n, int64_t limit) {
    char *b = base;
    for (int i = 0; i < n; i++) {
        void *x = b + f[i].offset;
        int64_t hi = f[i].hi < f[i].lo ? limit : f[i].hi;
        switch (f[i].kind) {
        case LOCO_FIELD_LONG: *(long *)x = (long)loco_unpack_range(u, f[i].lo, hi); break;
        case LOCO_FIELD_INT: *(int *)x = (int)loco_unpack_range(u, f[i].lo, hi); break;
        case LOCO_FIELD_ATOMIC_LONG:
            atomic_store((atomic_long *)x, (long)loco_unpack_range(u, f[i].lo, hi));
            break;
        case LOCO_FIELD_U64: *(uint64_t *)x = loco_unpack_u64(u); break;
        case LOCO_FIELD_F64: *(double *)x = loco_unpack_f64(u); break;
        case LOCO_FIELD_F32: *(float *)x = (float)loco_unpack_f64(u); break;
        }
    }
}
