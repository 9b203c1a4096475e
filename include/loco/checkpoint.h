/* statefile: the file a checkpoint lives in, around whatever state its writer packs: a
 * header (magic, version, kind, hash of the run's resolved config), the payload, and a
 * trailer (payload bytes, CRC-32). Written crash-safely, keeping the previous one as
 * checkpoint.prev.bin; read back through a memory map with every field checked, so a
 * truncated, corrupt or foreign file is refused with a message saying which; a refused one
 * is set aside as checkpoint.bad.bin, never rotated into checkpoint.prev.bin. */
#ifndef LOCO_CHECKPOINT_H
#define LOCO_CHECKPOINT_H

#include <stdint.h>

#include "loco/base.h"
#include "loco/pack.h"

#define LOCO_STATE_MAGIC 0x54504b434f434f4cULL   /* "LOCOCKPT" */
#define LOCO_STATE_VERSION 2   /* 2: rounds carry their schedule position */

enum { LOCO_STATE_SINGLE = 1, LOCO_STATE_ASYNC = 2 };

typedef struct {
    loco_outfile out;
    loco_pack p;
    char dir[LOCO_PATH_LEN];
} loco_state_writer;

/* Starts dir/checkpoint.bin (as a temporary file) and writes its header; the caller packs
 * the payload into w->p, then commits. */
int loco_state_begin(loco_state_writer *w, const char *dir, int kind, uint64_t config_hash,
                     loco_err *e);
/* Writes the trailer, syncs, moves the current checkpoint.bin to checkpoint.prev.bin and
 * puts this one in its place. On error nothing changes but the temporary file's removal. */
int loco_state_commit(loco_state_writer *w, loco_err *e);

typedef struct {
    char path[LOCO_PATH_LEN + 32];
    void *map;
    size_t len;
    int kind;
    uint64_t config_hash;
    loco_unpack u;           /* over the payload */
    char refused[32];        /* loco_state_latest: the name of the dir's other checkpoint
                                when it exists but is refused, else "" */
} loco_state_file;

/* Maps path and checks it: magic, version, kind, trailer, CRC-32; and, when config_hash
 * is not 0, that it belongs to that config. */
int loco_state_read(const char *path, uint64_t config_hash, loco_state_file *f, loco_err *e);
void loco_state_close(loco_state_file *f);

/* The newest checkpoint of dir that reads: checkpoint.bin, or checkpoint.prev.bin when
 * that one is refused (why it was goes into note, "" otherwise). The other one is checked
 * too: f->refused names it when it exists and is refused (why, into note). Errors when
 * neither reads (both reasons in the message). */
int loco_state_latest(const char *dir, uint64_t config_hash, loco_state_file *f, char *note,
                      size_t n, loco_err *e);

/* Moves the checkpoint f->refused names (if any) to dir/checkpoint.bad.bin, so that the
 * next commit keeps the one that reads. Call holding the run's lock, before the first
 * commit. */
int loco_state_set_aside(const char *dir, loco_state_file *f, loco_err *e);

/* Whether a checkpoint is due: count has reached a multiple of every (0: never), or
 * every_s seconds (0: never) have passed since last_s. The protocol holds the run by the
 * first rule (the update count), the engine and the single trainer take the second. */
int loco_state_due(long count, long every, double now_s, double last_s, double every_s);

#endif
