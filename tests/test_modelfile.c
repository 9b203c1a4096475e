/* Model files: llm.c's checkpoint layout written here by hand, loco's own format, and the
 * damaged files both must refuse. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/modelfile.h"
#include "loco/model.h"

enum { L = 2, NH = 2, C = 16, V = 100, VP = 128, MAXT = 24 };

/* llm.c's tensor sizes in its order (train_gpt2.c, fill_in_parameter_sizes) */
static size_t llmc_sizes(size_t *sz) {
    size_t s[16] = {VP * C, MAXT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                    L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
    size_t total = 0;
    for (int i = 0; i < 16; i++) total += sz[i] = s[i];
    return total;
}

static void tmp_path(char *buf, const char *tag) {
    snprintf(buf, 256, "/tmp/loco-test-%s-%d.bin", tag, (int)getpid());
}

/* Writes a checkpoint the way llm.c lays it out: 256 int32 header, then all floats. */
static float *write_llmc_by_hand(const char *path, size_t *nfloats) {
    size_t sz[16];
    *nfloats = llmc_sizes(sz);
    int32_t h[256] = {20240326, 3, MAXT, V, L, NH, C, VP};
    float *p = malloc(*nfloats * sizeof(float));
    loco_rng r;
    loco_rng_seed(&r, 11, 0);
    for (size_t i = 0; i < *nfloats; i++) p[i] = (float)(0.05 * loco_rng_normal(&r));
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(h, sizeof h, 1, f);
    fwrite(p, sizeof(float), *nfloats, f);
    fclose(f);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    cr_assert_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static float loss_of(const loco_model_file *mf) {
    loco_acts a;
    cr_assert_eq(loco_acts_alloc(&a, &mf->m, 2, MAXT, NULL), 0);
    int inp[2 * MAXT], tgt[2 * MAXT];
    for (int i = 0; i < 2 * MAXT; i++) inp[i] = (i * 7) % V, tgt[i] = (i * 13 + 5) % V;
    float loss = loco_model_forward(&mf->m, mf->params, &a, inp, tgt, 2, MAXT);
    loco_acts_free(&a);
    return loss;
}

Test(modelfile, llmc_file_loads_exports_byte_identical_and_matches_loco_format) {
    char in[256], out[256], own[256];
    tmp_path(in, "llmc-in");
    tmp_path(out, "llmc-out");
    tmp_path(own, "loco");
    size_t n;
    float *ref = write_llmc_by_hand(in, &n);
    loco_model_file mf;
    loco_err e;
    cr_assert_eq(loco_model_read(in, &mf, &e), 0, "%s", e.msg);
    cr_assert_eq(mf.format, LOCO_FILE_LLMC);
    cr_assert_eq(mf.m.s.L, L);
    cr_assert_eq(mf.m.s.Vp, VP);
    cr_assert_eq(mf.m.s.maxT, MAXT);
    cr_assert_eq(mf.m.ntrue, n, "every float of the file is a parameter");
    cr_assert_eq(memcmp(mf.params + mf.m.t[LOCO_QKVW].offset, ref + VP * C + MAXT * C + 2 * L * C,
                        L * 3 * C * C * sizeof(float)), 0, "qkvw where llm.c puts it");
    cr_assert_eq(loco_model_write_llmc(out, &mf.m, mf.params, &e), 0, "%s", e.msg);
    size_t la, lb;
    unsigned char *a = slurp(in, &la), *b = slurp(out, &lb);
    cr_assert_eq(la, lb, "exported size %zu vs %zu", lb, la);
    cr_assert_eq(memcmp(a, b, la), 0, "export is byte-identical to the llm.c file");
    cr_assert_eq(loco_model_write(own, &mf.m, mf.params, "[run]\nseed = 3\n", &e), 0, "%s", e.msg);
    loco_model_file mine;
    cr_assert_eq(loco_model_read(own, &mine, &e), 0, "%s", e.msg);
    cr_assert_eq(mine.format, LOCO_FILE_LOCO);
    cr_assert_str_eq(mine.config, "[run]\nseed = 3\n");
    cr_assert_eq(loss_of(&mf), loss_of(&mine), "same loss from both formats");
    cr_assert_eq(memcmp(mf.params, mine.params, mf.m.nparams * sizeof(float)), 0);
    loco_model_file_free(&mf);
    loco_model_file_free(&mine);
    free(a), free(b), free(ref);
    unlink(in), unlink(out), unlink(own);
}

/* Writes a loco model file, damages it with fn, and expects an error containing want. */
static void expect_damage(void (*fn)(unsigned char *, size_t *), const char *want) {
    char path[256];
    tmp_path(path, "damaged");
    loco_shape s = {.V = V, .Vp = VP, .maxT = MAXT, .L = L, .NH = NH, .C = C};
    loco_model m;
    loco_err e;
    cr_assert_eq(loco_model_init(&m, &s, &e), 0);
    float *p = loco_alloc(m.nparams * sizeof(float));
    loco_model_init_params(&m, p, 1);
    cr_assert_eq(loco_model_write(path, &m, p, "x", &e), 0, "%s", e.msg);
    size_t len;
    unsigned char *b = slurp(path, &len);
    fn(b, &len);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    loco_model_file mf;
    cr_assert_eq(loco_model_read(path, &mf, &e), -1, "damaged file accepted (%s)", want);
    cr_assert(strstr(e.msg, want), "expected '%s' in: %s", want, e.msg);
    cr_assert(strstr(e.msg, path), "message names the file: %s", e.msg);
    cr_assert_null(mf.params, "nothing left allocated");
    free(b);
    free(p);
    unlink(path);
}

static void flip_param_byte(unsigned char *b, size_t *len) { b[*len / 2] ^= 0x40; }
static void truncate_half(unsigned char *b, size_t *len) { (void)b; *len /= 2; }
static void bad_magic(unsigned char *b, size_t *len) { (void)len; b[0] ^= 1; }
static void bad_version(unsigned char *b, size_t *len) { (void)len; b[4] = 9; }
static void bad_shape(unsigned char *b, size_t *len) { (void)len; b[6 * 4] = 3; } /* NH = 3 */
static void tiny_file(unsigned char *b, size_t *len) { (void)b; *len = 100; }

Test(modelfile, damaged_loco_files_are_refused_with_their_own_message) {
    expect_damage(flip_param_byte, "checksum mismatch");
    expect_damage(truncate_half, "truncated");
    expect_damage(bad_magic, "not a model file");
    expect_damage(bad_version, "version 9");
    expect_damage(bad_shape, "bad model shape");
    expect_damage(tiny_file, "shorter than a model header");
}

Test(modelfile, trailing_bytes_and_truncated_llmc_files_are_refused) {
    char path[256];
    tmp_path(path, "llmc-trail");
    size_t n;
    free(write_llmc_by_hand(path, &n));
    FILE *f = fopen(path, "ab");
    fputs("junk", f);
    fclose(f);
    loco_model_file mf;
    loco_err e;
    cr_assert_eq(loco_model_read(path, &mf, &e), -1);
    cr_assert(strstr(e.msg, "4 trailing bytes"), "%s", e.msg);
    cr_assert_eq(truncate(path, 1024 + 100), 0);
    cr_assert_eq(loco_model_read(path, &mf, &e), -1);
    cr_assert(strstr(e.msg, "truncated"), "%s", e.msg);
    unlink(path);
}

/* Found by reading the loader: an llm.c header whose shape (C = 2^30, Vp = 2^31 - 1) makes
 * the implied file size wrap around to exactly this 1024-byte file; the loader then
 * copied about 2^62 bytes. Such a shape is refused before any size is computed. The same
 * file is a seed of the model fuzz target (tests/fuzz/model/wrapping-shape.bin). */
Test(modelfile, a_header_whose_sizes_would_wrap_is_refused) {
    char path[256];
    tmp_path(path, "llmc-wrap");
    int32_t h[256] = {20240326, 3, 2147483634, 2, 1, 1, 1073741824, 2147483647};
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(h, sizeof h, 1, f);
    fclose(f);
    loco_model_file mf;
    loco_err e;
    cr_assert_eq(loco_model_read(path, &mf, &e), -1);
    cr_assert(strstr(e.msg, "bad model shape"), "%s", e.msg);
    unlink(path);
}

Test(modelfile, writing_is_atomic_and_leaves_no_temp_file) {
    char path[256], tmp[300];
    tmp_path(path, "atomic");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    loco_shape s = {.V = V, .Vp = VP, .maxT = MAXT, .L = L, .NH = NH, .C = C};
    loco_model m;
    cr_assert_eq(loco_model_init(&m, &s, NULL), 0);
    float *p = loco_alloc(m.nparams * sizeof(float));
    loco_err e;
    cr_assert_eq(loco_model_write(path, &m, p, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(access(tmp, F_OK), -1, "temp file left behind");
    cr_assert_eq(loco_model_write("/nonexistent-dir/x.bin", &m, p, NULL, &e), -1);
    cr_assert(strstr(e.msg, "/nonexistent-dir/x.bin"), "%s", e.msg);
    free(p);
    unlink(path);
}
