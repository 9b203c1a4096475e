/* The checkpoint file and the byte streams in it: field tables write, read and bound a
 * struct's scalars; a committed checkpoint reads back; the previous one is kept; a
 * truncated, flipped or foreign one is refused with its reason and the older one used;
 * when a checkpoint is due. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loco/checkpoint.h"

#include "files.h"

typedef struct {
    long count;
    int flag;
    atomic_long steps;
    uint64_t seed;
    double time_s;
    float loss;
} sample;

static const loco_field sample_fields[] = {
    {offsetof(sample, count), LOCO_FIELD_LONG, 0, LOCO_BIG},
    {offsetof(sample, flag), LOCO_FIELD_INT, 0, -1},  /* bounded by the caller's limit */
    {offsetof(sample, steps), LOCO_FIELD_ATOMIC_LONG, 0, LOCO_BIG},
    {offsetof(sample, seed), LOCO_FIELD_U64, 0, 0},
    {offsetof(sample, time_s), LOCO_FIELD_F64, 0, 0},
    {offsetof(sample, loss), LOCO_FIELD_F32, 0, 0},
};
enum { NSAMPLE = sizeof sample_fields / sizeof sample_fields[0] };

/* packs s into a memory buffer *buf of *len bytes */
static void pack_sample(const sample *s, char **buf, size_t *len) {
    FILE *f = open_memstream(buf, len);
    cr_assert_not_null(f);
    loco_pack p;
    loco_pack_begin(&p, f);
    loco_pack_fields(&p, s, sample_fields, NSAMPLE);
    cr_assert_eq(p.bytes, (uint64_t)NSAMPLE * LOCO_FIELD_BYTES, "8 bytes a field");
    fclose(f);
}

Test(checkpoint, a_field_table_round_trips_and_bounds_what_it_reads) {
    sample s = {.count = 123456789012L, .flag = 3, .seed = 0xfeedfacecafebeefULL,
                .time_s = 91840.25, .loss = 1.4977f};
    atomic_init(&s.steps, 64000);
    char *buf;
    size_t len;
    pack_sample(&s, &buf, &len);
    sample back;
    memset(&back, 0, sizeof back);
    loco_unpack u;
    loco_unpack_begin(&u, buf, len);
    loco_unpack_fields(&u, &back, sample_fields, NSAMPLE, 4);
    cr_assert_eq(u.bad, 0);
    cr_assert_eq(back.count, s.count);
    cr_assert_eq(back.flag, 3);
    cr_assert_eq(atomic_load(&back.steps), 64000);
    cr_assert_eq(back.seed, s.seed);
    cr_assert_eq(back.time_s, s.time_s);
    cr_assert_eq(back.loss, s.loss, "a float comes back as it went");
    /* the flag above the caller's limit: the stream is bad */
    loco_unpack_begin(&u, buf, len);
    loco_unpack_fields(&u, &back, sample_fields, NSAMPLE, 2);
    cr_assert_eq(u.bad, 1, "3 is above the limit 2");
    /* short by one byte: bad, never a read past the end */
    loco_unpack_begin(&u, buf, len - 1);
    loco_unpack_fields(&u, &back, sample_fields, NSAMPLE, 4);
    cr_assert_eq(u.bad, 1, "a short stream");
    free(buf);
}

static void make_dir(char *dir) {
    strcpy(dir, "/tmp/loco-ckpt-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(const char *dir) {
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* a checkpoint of dir holding the one number x */
static void commit_one(const char *dir, int64_t x, uint64_t hash) {
    loco_state_writer w;
    loco_err e = {{0}};
    cr_assert_eq(loco_state_begin(&w, dir, LOCO_STATE_ASYNC, hash, &e), 0, "%s", e.msg);
    loco_pack_i64(&w.p, x);
    cr_assert_eq(loco_state_commit(&w, &e), 0, "%s", e.msg);
}

static int64_t latest(const char *dir, uint64_t hash, char *note, size_t n, loco_err *e) {
    loco_state_file f;
    if (loco_state_latest(dir, hash, &f, note, n, e) != 0) return -1;
    int64_t x = loco_unpack_i64(&f.u);
    loco_state_close(&f);
    return x;
}

Test(checkpoint, the_newest_that_reads_is_used_and_a_damaged_one_is_refused_with_why) {
    char dir[32], cur[64], prev[64], note[256];
    make_dir(dir);
    snprintf(cur, sizeof cur, "%s/checkpoint.bin", dir);
    snprintf(prev, sizeof prev, "%s/checkpoint.prev.bin", dir);
    loco_err e = {{0}};
    commit_one(dir, 11, 77);
    commit_one(dir, 22, 77);
    cr_assert_eq(access(prev, F_OK), 0, "the previous one is kept");
    cr_assert_eq(latest(dir, 77, note, sizeof note, &e), 22, "%s", e.msg);
    cr_assert_eq(note[0], '\0', "nothing to say: %s", note);
    /* a flipped payload byte: refused for its checksum, the previous one is used */
    flip_byte(cur, 33);
    cr_assert_eq(latest(dir, 77, note, sizeof note, &e), 11, "%s", e.msg);
    cr_assert_not_null(strstr(note, "checksum"), "says why: %s", note);
    /* truncated as well as the previous one from another config: neither reads */
    cr_assert_eq(truncate(cur, 20), 0);
    cr_assert_eq(latest(dir, 78, note, sizeof note, &e), -1, "neither reads");
    cr_assert_not_null(strstr(e.msg, "another config"), "names the foreign one: %s", e.msg);
    /* set aside, the refused one stops shadowing the next commit */
    loco_state_file f;
    cr_assert_eq(loco_state_latest(dir, 77, &f, note, sizeof note, &e), 0, "%s", e.msg);
    cr_assert_eq(loco_state_set_aside(dir, &f, &e), 0, "%s", e.msg);
    loco_state_close(&f);
    char bad[64];
    snprintf(bad, sizeof bad, "%s/checkpoint.bad.bin", dir);
    cr_assert_eq(access(bad, F_OK), 0, "set aside as checkpoint.bad.bin");
    commit_one(dir, 33, 77);
    cr_assert_eq(latest(dir, 77, note, sizeof note, &e), 33, "%s", e.msg);
    remove_dir(dir);
}

Test(checkpoint, a_checkpoint_is_due_at_multiples_or_after_its_interval) {
    cr_assert(loco_state_due(30, 10, 0, 0, 0));
    cr_assert(!loco_state_due(31, 10, 0, 0, 0));
    cr_assert(!loco_state_due(30, 0, 0, 0, 0), "every 0: never by count");
    cr_assert(loco_state_due(1, 0, 100.0, 40.0, 60.0), "60 s passed");
    cr_assert(!loco_state_due(1, 0, 99.0, 40.0, 60.0), "59 s only");
    cr_assert(!loco_state_due(1, 0, 1e9, 0, 0), "every_s 0: never by time");
}
