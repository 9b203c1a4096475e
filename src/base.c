#include "loco/base.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

int loco_errf(loco_err *e, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void loco_check_failed(const char *file, int line, const char *cond, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: broken invariant: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

const loco_enum *loco_enum_row(const loco_enum *t, int value) {
    for (; t->name; t++)
        if (t->value == value) return t;
    loco_check_failed(__FILE__, __LINE__, "value in table", "value %d has no row", value);
}

const char *loco_enum_name(const loco_enum *t, int value) {
    return loco_enum_row(t, value)->name;
}

int loco_enum_value(const loco_enum *t, const char *name, int *value) {
    for (; t->name; t++) {
        if (strcmp(t->name, name) == 0) {
            *value = t->value;
            return 0;
        }
    }
    return -1;
}

void loco_enum_names(const loco_enum *t, const char *sep, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; t[i].name && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? sep : "", t[i].name);
}

void *loco_alloc(size_t n) {
    size_t rounded = (n + LOCO_ALIGN - 1) / LOCO_ALIGN * LOCO_ALIGN;
    if (rounded == 0) rounded = LOCO_ALIGN;
    void *p = aligned_alloc(LOCO_ALIGN, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void *loco_alloc_for(size_t n, const char *who, const char *what, loco_err *e) {
    void *p = loco_alloc(n);
    if (!p) {
        char sz[32];
        loco_errf(e, "%s%scannot allocate %s for %s", who ? who : "", who ? ": " : "",
                  loco_size_str(n, sz, sizeof sz), what);
    }
    return p;
}

const char *loco_size_str(uint64_t bytes, char *buf, size_t n) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes == UINT64_MAX) return snprintf(buf, n, "more than 16 EiB"), buf;   /* saturated */
    int u = 0;
    uint64_t scale = 1;
    while (u < 6 && bytes / 1024 >= scale) scale *= 1024, u++;
    if (bytes % scale == 0) snprintf(buf, n, "%" PRIu64 " %s", bytes / scale, unit[u]);
    else snprintf(buf, n, "%.1f %s", (double)bytes / (double)scale, unit[u]);
    return buf;
}

double loco_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void loco_rng_seed(loco_rng *r, uint64_t seed, uint64_t stream) {
    r->s = mix64(seed ^ mix64(stream + 0x9e3779b97f4a7c15ULL));
}

uint64_t loco_stream_id(loco_stream_kind kind, uint64_t index) {
    return (uint64_t)kind << 40 | index;
}

uint64_t loco_rng_u64(loco_rng *r) {
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

float loco_rng_uniform(loco_rng *r) {
    return (float)(loco_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t loco_rng_below(loco_rng *r, uint64_t n) {
    /* Lemire's multiply-shift; the tiny bias is irrelevant at our n */
    return (uint64_t)(((unsigned __int128)loco_rng_u64(r) * n) >> 64);
}

double loco_rng_normal(loco_rng *r) {
    double u1 = ((double)(loco_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(loco_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int loco_outfile_open(loco_outfile *o, const char *path, loco_err *e) {
    memset(o, 0, sizeof *o);
    if (snprintf(o->path, sizeof o->path, "%s", path) >= (int)sizeof o->path)
        return loco_errf(e, "%s: path too long", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    o->f = fopen(o->tmp, "wb");
    if (!o->f) return loco_errf(e, "%s: cannot create: %s", o->tmp, strerror(errno));
    return 0;
}

void loco_outfile_write(loco_outfile *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->failed = errno ? errno : EIO;
}

/* fsync the directory so that the rename itself survives a crash; errno or 0 */
static int sync_dir(const char *path) {
    char buf[LOCO_PATH_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return errno;
    int rc = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return rc;
}

int loco_outfile_commit(loco_outfile *o, loco_err *e) {
    if (!o->failed && fflush(o->f) != 0) o->failed = errno;
    if (!o->failed && fsync(fileno(o->f)) != 0) o->failed = errno;
    if (fclose(o->f) != 0 && !o->failed) o->failed = errno;
    o->f = NULL;
    if (!o->failed && rename(o->tmp, o->path) != 0) o->failed = errno;
    if (o->failed) {
        unlink(o->tmp);
        return loco_errf(e, "%s: cannot write: %s", o->path, strerror(o->failed));
    }
    int err = sync_dir(o->path);
    if (err) return loco_errf(e, "%s: written, but syncing its directory failed: %s", o->path,
                              strerror(err));
    return 0;
}

int loco_mkdirs(const char *path, loco_err *e) {
    char buf[LOCO_PATH_LEN];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return loco_errf(e, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return loco_errf(e, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = saved;
        if (!saved) return 0;
    }
}

/* ------------------------------------------------------- checksums, hashes */

uint32_t loco_crc32(uint32_t crc, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n > 0) { /* zlib counts in uInt: 1 GiB a call */
        size_t k = n < (1u << 30) ? n : (1u << 30);
        crc = (uint32_t)crc32(crc, b, (uInt)k);
        b += k;
        n -= k;
    }
    return crc;
}

uint64_t loco_hash64_more(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t loco_hash64(const void *p, size_t n) {
    return loco_hash64_more(0xcbf29ce484222325ULL, p, n);
}

struct timespec loco_timespec(double s) {
    time_t whole = (time_t)s;
    return (struct timespec){whole, (long)((s - (double)whole) * 1e9)};
}

/* ------------------------------------------------------- numbers, lists */

int loco_parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end) return LOCO_PARSE_BAD;
    if (errno == ERANGE) return LOCO_PARSE_RANGE;
    *out = x;
    return 0;
}

int loco_parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end) return LOCO_PARSE_BAD;
    if (!isfinite(x)) return LOCO_PARSE_RANGE;
    if (errno == ERANGE && fabs(x) < 1) return LOCO_PARSE_TINY;
    *out = x;
    return 0;
}

static int blank(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int loco_list_count(const char *list) {
    const char *s = list;
    while (blank((unsigned char)*s)) s++;
    if (!*s) return 0;
    int n = 1;
    for (; *s; s++) n += *s == ',';
    return n;
}

int loco_list_next(const char **p, char *item, size_t len) {
    const char *a = *p, *comma = strchr(a, ',');
    const char *b = comma ? comma : a + strlen(a);
    *p = comma ? comma + 1 : NULL;
    while (a < b && blank((unsigned char)*a)) a++;
    while (b > a && blank((unsigned char)b[-1])) b--;
    if ((size_t)(b - a) >= len) return -1;
    memcpy(item, a, (size_t)(b - a));
    item[b - a] = '\0';
    return 0;
}
