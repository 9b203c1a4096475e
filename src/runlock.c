#include "loco/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* what the holder wrote, without its newline ("" when it wrote nothing yet) */
static void holder_of(int fd, char *buf, size_t n) {
    ssize_t got = pread(fd, buf, n - 1, 0);
    buf[got > 0 ? got : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

int loco_runlock_take(loco_runlock *l, const char *dir, const char *what, loco_err *e) {
    char path[LOCO_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/" LOCO_RUNLOCK_FILE, dir);
    /* close-on-exec: a child that runs another program must not keep the run locked */
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) return loco_errf(e, "%s: cannot open the run's lock: %s", path, strerror(errno));
    l->held = 1;
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char holder[256];
        holder_of(l->fd, holder, sizeof holder);
        loco_runlock_release(l);
        if (err != EWOULDBLOCK)
            return loco_errf(e, "%s: cannot lock: %s", path, strerror(err));
        return loco_errf(e, "%s is in use by another loco process (%s); one process writes a "
                         "run directory at a time", dir, holder[0] ? holder : "it has not said which");
    }
    char line[512], stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&now));
    int k = snprintf(line, sizeof line, "pid %ld: %s, since %s\n", (long)getpid(), what, stamp);
    if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, line, (size_t)k, 0) != k) {
        int err = errno;
        loco_runlock_release(l);
        return loco_errf(e, "%s: cannot write: %s", path, strerror(err));
    }
    return 0;
}

void loco_runlock_release(loco_runlock *l) {
    if (l->held) close(l->fd);
    l->held = 0;
}
