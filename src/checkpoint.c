#include "loco/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { HEADER_BYTES = 32, TRAILER_BYTES = 16 };

int loco_state_begin(loco_state_writer *w, const char *dir, int kind, uint64_t config_hash,
                     loco_err *e) {
    memset(w, 0, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
    if (loco_outfile_open(&w->out, path, e) != 0) return -1;
    uint64_t header[4] = {LOCO_STATE_MAGIC, LOCO_STATE_VERSION, (uint64_t)kind, config_hash};
    loco_outfile_write(&w->out, header, sizeof header);
    loco_pack_begin(&w->p, w->out.f);
    return 0;
}

/* For the tests of exact resume: LOCO_CRASH_AFTER_CHECKPOINT=K kills the process (SIGKILL,
 * as the kernel's OOM killer or a power cut would) right after its K-th checkpoint. */
static void crash_if_asked(void) {
    static int written;
    const char *k = getenv("LOCO_CRASH_AFTER_CHECKPOINT");
    if (k && atoi(k) == ++written) raise(SIGKILL);
}

int loco_state_commit(loco_state_writer *w, loco_err *e) {
    uint64_t trailer[2] = {w->p.bytes, w->p.crc};
    if (w->p.failed && !w->out.failed) w->out.failed = errno ? errno : EIO;
    loco_outfile_write(&w->out, trailer, sizeof trailer);
    /* the previous checkpoint stays as checkpoint.prev.bin: if this one turns out bad,
     * resuming falls back to it */
    char cur[LOCO_PATH_LEN + 32], prev[LOCO_PATH_LEN + 32];
    snprintf(cur, sizeof cur, "%s/checkpoint.bin", w->dir);
    snprintf(prev, sizeof prev, "%s/checkpoint.prev.bin", w->dir);
    if (!w->out.failed && rename(cur, prev) != 0 && errno != ENOENT) w->out.failed = errno;
    int rc = loco_outfile_commit(&w->out, e);
    crash_if_asked();
    return rc;
}

static int refuse(loco_state_file *f, loco_err *e, const char *why) {
    loco_errf(e, "%s: %s", f->path, why);
    loco_state_close(f);
    return -1;
}

int loco_state_read(const char *path, uint64_t config_hash, loco_state_file *f, loco_err *e) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return loco_errf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < HEADER_BYTES + TRAILER_BYTES) {
        close(fd);
        return loco_errf(e, "%s: truncated (%lld bytes, not even a header and a trailer)", path,
                         (long long)st.st_size);
    }
    f->len = (size_t)st.st_size;
    f->map = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return loco_errf(e, "%s: cannot map: %s", path, strerror(errno));
    }
    uint64_t h[4], t[2]; /* copied: a damaged file's trailer need not be aligned */
    memcpy(h, f->map, sizeof h);
    memcpy(t, (const char *)f->map + f->len - TRAILER_BYTES, sizeof t);
    if (h[0] != LOCO_STATE_MAGIC) return refuse(f, e, "not a loco checkpoint (bad magic)");
    if (h[1] != LOCO_STATE_VERSION) {
        char why[96];
        snprintf(why, sizeof why, "checkpoint version %llu, this loco reads version %d",
                 (unsigned long long)h[1], LOCO_STATE_VERSION);
        return refuse(f, e, why);
    }
    size_t payload = f->len - HEADER_BYTES - TRAILER_BYTES;
    if (t[0] != payload) return refuse(f, e, "truncated or extended (its length disagrees with its trailer)");
    const unsigned char *body = (const unsigned char *)f->map + HEADER_BYTES;
    if (loco_crc32(0, body, payload) != (uint32_t)t[1])
        return refuse(f, e, "checksum mismatch: the file is corrupt");
    if (h[2] != LOCO_STATE_SINGLE && h[2] != LOCO_STATE_ASYNC) return refuse(f, e, "unknown kind of run");
    if (config_hash && h[3] != config_hash)
        return refuse(f, e, "written by a run of another config (its config.ini changed?)");
    f->kind = (int)h[2];
    f->config_hash = h[3];
    loco_unpack_begin(&f->u, body, payload);
    return 0;
}

void loco_state_close(loco_state_file *f) {
    if (f->map) munmap(f->map, f->len);
    f->map = NULL;
}

/* whether dir/name exists but does not read (why into e) */
static int refused(const char *dir, const char *name, uint64_t config_hash, loco_err *e) {
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, F_OK) != 0) return 0;
    loco_state_file f;
    if (loco_state_read(path, config_hash, &f, e) != 0) return 1;
    loco_state_close(&f);
    return 0;
}

int loco_state_latest(const char *dir, uint64_t config_hash, loco_state_file *f, char *note,
                      size_t n, loco_err *e) {
    static const char cur[] = "checkpoint.bin", prev[] = "checkpoint.prev.bin";
    char path[LOCO_PATH_LEN + 32];
    loco_err first, second;
    note[0] = '\0';
    snprintf(path, sizeof path, "%s/%s", dir, cur);
    if (loco_state_read(path, config_hash, f, &first) == 0) {
        if (refused(dir, prev, config_hash, &second)) {
            snprintf(f->refused, sizeof f->refused, "%s", prev);
            snprintf(note, n, "%s", second.msg);
        }
        return 0;
    }
    int cur_exists = access(path, F_OK) == 0;
    snprintf(path, sizeof path, "%s/%s", dir, prev);
    if (loco_state_read(path, config_hash, f, &second) == 0) {
        if (cur_exists) snprintf(f->refused, sizeof f->refused, "%s", cur);
        snprintf(note, n, "%s; resuming from the one before", first.msg);
        return 0;
    }
    return loco_errf(e, "no checkpoint to resume from: %s; %s", first.msg, second.msg);
}

int loco_state_set_aside(const char *dir, loco_state_file *f, loco_err *e) {
    if (!f->refused[0]) return 0;
    char from[LOCO_PATH_LEN + 32], to[LOCO_PATH_LEN + 32];
    snprintf(from, sizeof from, "%s/%s", dir, f->refused);
    snprintf(to, sizeof to, "%s/checkpoint.bad.bin", dir);
    if (rename(from, to) != 0)
        return loco_errf(e, "%s: cannot set it aside as %s: %s", from, to, strerror(errno));
    return 0;
}

int loco_state_due(long count, long every, double now_s, double last_s, double every_s) {
    if (every > 0 && count % every == 0) return 1;
    return every_s > 0 && now_s - last_s >= every_s;
}
