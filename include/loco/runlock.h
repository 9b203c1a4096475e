/* runlock: one writer per run directory. Owns DIR/lock, an flock(2) lock held for the
 * life of the process that writes the run, with that process's pid and what it is doing
 * written in the file; a second taker is refused with them. The kernel drops a lock when
 * its process ends, however it ends, so a lock file left behind is no obstacle. */
#ifndef LOCO_RUNLOCK_H
#define LOCO_RUNLOCK_H

#include "loco/base.h"

#define LOCO_RUNLOCK_FILE "lock"

typedef struct {
    int held;                /* 0 (as zeroed): not held */
    int fd;
} loco_runlock;

/* Takes dir's lock (dir must exist) and writes "pid PID: WHAT, since TIME" into it.
 * Refused at once, without waiting, when another process holds it: the message names the
 * directory and the holder's line. */
int loco_runlock_take(loco_runlock *l, const char *dir, const char *what, loco_err *e);

/* Releases it (the file stays); a lock never taken or released already is fine. */
void loco_runlock_release(loco_runlock *l);

#endif
