/* What the fuzz targets share: a NUL-terminated copy of an input, the input as a file
 * (the loaders read paths), and a check that aborts so libFuzzer reports the input.
 * Header-only: each target is one .c file linked against loco's library objects. */
#ifndef LOCO_FUZZ_H
#define LOCO_FUZZ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A property the target asserts; a failure is a finding, like a crash. */
#define FUZZ_ASSERT(cond, ...)                                                     \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* data[0..size) as a C string (cut at its first NUL); free() it. */
static inline char *fuzz_string(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    FUZZ_ASSERT(s, "out of memory");
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static char fuzz_path[64];

static void fuzz_remove_file(void) {
    unlink(fuzz_path);
}

/* Writes data to this process's scratch file (one per target process, rewritten for
 * every input, removed at exit) and returns its path. In /dev/shm when there is one,
 * and never truncated to 0 and refilled, which on ext4 costs a flush to disk at close
 * (a few thousand inputs a second become a few hundred). */
static inline const char *fuzz_file(const char *tag, const uint8_t *data, size_t size) {
    if (!fuzz_path[0]) {
        struct stat st;
        const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(fuzz_path, sizeof fuzz_path, "%s/loco-fuzz-%s-%d", dir, tag, (int)getpid());
        atexit(fuzz_remove_file);
    }
    int fd = open(fuzz_path, O_WRONLY | O_CREAT, 0600);
    FUZZ_ASSERT(fd >= 0, "cannot write %s", fuzz_path);
    FUZZ_ASSERT(pwrite(fd, data, size, 0) == (ssize_t)size, "short write to %s", fuzz_path);
    FUZZ_ASSERT(ftruncate(fd, (off_t)size) == 0, "cannot truncate %s", fuzz_path);
    close(fd);
    return fuzz_path;
}

#endif
