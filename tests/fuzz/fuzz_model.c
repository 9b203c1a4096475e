/* The model loaders on an arbitrary file: loco_model_read tells loco's format from
 * llm.c's by the magic, so one target covers both. When a file loads, its layout must
 * be the one the shape implies (tensors in llm.c's order, aligned, inside the array,
 * of the right sizes), every parameter must be readable, and the config text a loco file
 * stores is parsed as eval and sample parse it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "loco/modelfile.h"
#include "loco/config.h"
#include "loco/model.h"

/* Each tensor's dimensions as the shape gives them (model.c's table, restated). */
static void expected_dims(const loco_shape *s, int id, long d[3]) {
    long L = s->L, C = s->C;
    static const int kind[LOCO_NTENSORS] = {0, 1, 2, 2, 3, 4, 5, 2, 2, 2, 6, 7, 8, 2, 9, 9};
    long table[10][3] = {{s->Vp, C, 0}, {s->maxT, C, 0}, {L, C, 0},     {L, 3 * C, C},
                         {L, 3 * C, 0}, {L, C, C},       {L, 4 * C, C}, {L, 4 * C, 0},
                         {L, C, 4 * C}, {C, 0, 0}};
    memcpy(d, table[kind[id]], sizeof table[0]);
}

static void check_layout(const loco_model_file *f) {
    const loco_model *m = &f->m;
    const loco_shape *s = &m->s;
    FUZZ_ASSERT(s->V >= 2 && s->Vp >= s->V && s->maxT >= 1 && s->L >= 1 && s->NH >= 1 &&
                    s->C >= 1 && s->C % s->NH == 0,
                "loaded a shape the model cannot run");
    size_t end = 0, total = 0;
    for (int i = 0; i < LOCO_NTENSORS; i++) {
        const loco_tensor *t = &m->t[i];
        long d[3];
        expected_dims(s, i, d);
        size_t count = 1;
        for (int k = 0; k < t->ndim; k++) {
            FUZZ_ASSERT(t->dims[k] == d[k], "tensor %s dim %d is %ld, not %ld", t->name, k,
                        t->dims[k], d[k]);
            count *= (size_t)d[k];
        }
        FUZZ_ASSERT(t->count == count, "tensor %s holds %zu floats, not %zu", t->name,
                    t->count, count);
        FUZZ_ASSERT(t->offset % 16 == 0 && t->offset >= end, "tensor %s at %zu", t->name,
                    t->offset);
        end = t->offset + t->count;
        FUZZ_ASSERT(end <= m->nparams, "tensor %s ends past the array", t->name);
        total += t->count;
    }
    FUZZ_ASSERT(total == m->ntrue, "tensors hold %zu floats, ntrue is %zu", total, m->ntrue);
    FUZZ_ASSERT((f->format == LOCO_FILE_LLMC) == (f->config == NULL), "config text");
}

/* Reads every parameter, so that the sanitizer sees a short array. */
static void touch_params(const loco_model_file *f) {
    volatile float sink = 0;
    for (int i = 0; i < LOCO_NTENSORS; i++)
        for (size_t k = 0; k < f->m.t[i].count; k++) sink += f->params[f->m.t[i].offset + k];
    (void)sink;
}

static void read_and_check(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model", data, size);
    loco_model_file f;
    loco_err e;
    if (loco_model_read(path, &f, &e) != 0) {
        FUZZ_ASSERT(strlen(e.msg) > 0, "an error without a message");
        FUZZ_ASSERT(f.params == NULL && f.config == NULL, "a failed read left memory");
        return;
    }
    check_layout(&f);
    touch_params(&f);
    if (f.config) { /* as eval and sample read it: the run's config, stored in the file */
        loco_config c;
        loco_config_default(&c);
        loco_config_load_string(&c, f.config, "config", &e);
    }
    loco_model_file_free(&f);
}

/* The input as it is, and, when it has loco's magic, with its last 4 bytes made the
 * CRC-32 of the rest, so that mutations get past the checksum to the config and tensors. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    read_and_check(data, size);
    int32_t magic;
    if (size < 1028 || (memcpy(&magic, data, 4), magic != LOCO_MODEL_MAGIC)) return 0;
    uint8_t *fixed = malloc(size);
    FUZZ_ASSERT(fixed, "out of memory");
    memcpy(fixed, data, size - 4);
    uint32_t crc = (uint32_t)crc32(0L, fixed, (uInt)(size - 4));
    memcpy(fixed + size - 4, &crc, 4);
    read_and_check(fixed, size);
    free(fixed);
    return 0;
}
