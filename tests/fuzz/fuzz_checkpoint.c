/* The checkpoint loader on an arbitrary file: loco_checkpoint_describe, which `loco check`
 * runs and which reads every section a resumed run reads (header, trailer and checksum,
 * the run's counts, then the single worker's state or the engine's: global buffer,
 * clock, protocol, waiting events, every worker's part). A checkpoint belongs to the
 * config.ini beside it: the target keeps one directory per kind of run, with the resolved
 * config its seeds were written by (checkpoint.single.ini, checkpoint.async.ini), and
 * picks the directory by the kind in the input's header. Each input is tried as it is
 * and, so that mutations get past the checks of the frame, with the config hash, the
 * trailer's length and its CRC-32 made right. A load that succeeds must describe the
 * run; one that fails must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "loco/checkpoint.h"
#include "loco/train.h"

enum { HEADER = 32, TRAILER = 16 };

typedef struct {
    char dir[64], path[96];
    uint64_t hash;
} run_dir;

static run_dir dirs[2]; /* [0] single, [1] asynchronous */

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    FUZZ_ASSERT(f, "cannot read %s (run from the repository's root)", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    FUZZ_ASSERT(b && fread(b, 1, *n, f) == *n, "cannot read %s", path);
    b[*n] = '\0';
    fclose(f);
    return b;
}

static void make_dir(run_dir *d, const char *tag, const char *ini) {
    size_t n;
    char *text = read_all(ini, &n);
    snprintf(d->dir, sizeof d->dir, "/dev/shm/loco-fuzz-ckpt-%s-%d", tag, (int)getpid());
    mkdir(d->dir, 0700);
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/config.ini", d->dir);
    FILE *f = fopen(cfg, "wb");
    FUZZ_ASSERT(f && fwrite(text, 1, n, f) == n, "cannot write %s", cfg);
    fclose(f);
    snprintf(d->path, sizeof d->path, "%s/checkpoint.bin", d->dir);
    d->hash = loco_hash64(text, n);
    free(text);
}

static void remove_dirs(void) {
    for (int i = 0; i < 2; i++) {
        char cfg[sizeof dirs[0].dir + 16];
        if (snprintf(cfg, sizeof cfg, "%s/config.ini", dirs[i].dir) < (int)sizeof cfg) unlink(cfg);
        unlink(dirs[i].path);
        rmdir(dirs[i].dir);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    atexit(remove_dirs);
    make_dir(&dirs[0], "single", "tests/fuzz/checkpoint.single.ini");
    make_dir(&dirs[1], "async", "tests/fuzz/checkpoint.async.ini");
    return 0;
}

static void describe(const run_dir *d, const uint8_t *data, size_t size) {
    FILE *f = fopen(d->path, "wb");
    FUZZ_ASSERT(f && fwrite(data, 1, size, f) == size, "cannot write %s", d->path);
    fclose(f);
    char what[1024];
    loco_err e;
    e.msg[0] = '\0';
    if (loco_checkpoint_describe(d->path, what, sizeof what, &e) == 0)
        FUZZ_ASSERT(strstr(what, "checkpoint ok"), "described as: %s", what);
    else
        FUZZ_ASSERT(strlen(e.msg) > 0, "a refusal without a message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t kind = 0;
    if (size >= HEADER) memcpy(&kind, data + 16, 8);
    const run_dir *d = &dirs[kind == LOCO_STATE_ASYNC];
    describe(d, data, size);
    if (size < HEADER + TRAILER) return 0;
    uint8_t *fixed = malloc(size);
    FUZZ_ASSERT(fixed, "out of memory");
    memcpy(fixed, data, size);
    uint64_t payload = size - HEADER - TRAILER;
    uint64_t crc = crc32(crc32(0L, Z_NULL, 0), fixed + HEADER, (uInt)payload);
    memcpy(fixed + 24, &d->hash, 8);
    memcpy(fixed + size - TRAILER, &payload, 8);
    memcpy(fixed + size - 8, &crc, 8);
    describe(d, fixed, size);
    free(fixed);
    return 0;
}
